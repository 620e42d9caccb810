//! Host and path validation, their translation into CLB domains and URLs, the CLB domain/URL
//! checks and the PCRE translation (`clb_ingress_core::model::translate`, `matching::clb`), with
//! the Ingress-spec matcher (`matching::ingress`) as the oracle.

use clb_ingress_core::matching::clb::{
    self, ClbRoute, CompiledListener, DomainConf, DomainForm, UrlConf, UrlForm,
};
use clb_ingress_core::matching::ingress::{self, HostRules, IngressView, PathKind, PathRule};
use clb_ingress_core::model::translate::{self, HostKey, TDomain};
use proptest::prelude::*;

/// A DNS-like label from a small alphabet (so generated hosts collide), sometimes invalid.
fn label() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => "[ab]{1,2}",
        2 => "[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?",
        1 => "[A-Z_*~-]{1,3}",
        1 => Just(String::new()),
        1 => "[a-z]{60,66}",
    ]
}

/// An Ingress host: labels, maybe a `*.` wildcard, sometimes arbitrary text.
fn host_like() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => (any::<bool>(), proptest::collection::vec(label(), 1..4)).prop_map(|(wild, labels)| {
            let h = labels.join(".");
            if wild { format!("*.{h}") } else { h }
        }),
        1 => any::<String>(),
        1 => "[a-z0-9.*-]{0,90}",
        1 => Just(translate::CATCH_ALL_DOMAIN.to_string()),
    ]
}

fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => "[ab]{1,2}",
        2 => "[a-zA-Z0-9._=?-]{1,6}",
        1 => Just(".".to_string()),
        1 => Just("..".to_string()),
        1 => Just(String::new()),
        1 => "[ %~*^$#]{1,2}",
    ]
}

/// An Ingress path (or request path): segments joined by `/`, sometimes arbitrary text.
fn path_like() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => (proptest::collection::vec(segment(), 0..4), any::<bool>()).prop_map(|(segs, trailing)| {
            let mut p = String::new();
            for s in &segs {
                p.push('/');
                p.push_str(s);
            }
            if trailing || p.is_empty() {
                p.push('/');
            }
            p
        }),
        1 => any::<String>(),
        1 => "/[a-z/]{190,210}",
    ]
}

fn kind() -> impl Strategy<Value = PathKind> {
    prop_oneof![Just(PathKind::Exact), Just(PathKind::Prefix)]
}

/// The translated domains as CLB compiles them; an error if CLB would refuse one of them.
fn compile(domains: &[TDomain<u8>]) -> Result<CompiledListener, String> {
    let conf: Vec<DomainConf> = domains
        .iter()
        .map(|d| DomainConf {
            domain: d.domain.clone(),
            default_server: d.default_server,
            rules: d
                .rules
                .iter()
                .map(|r| UrlConf { url: r.url.clone() })
                .collect(),
        })
        .collect();
    let listener = CompiledListener::new(conf);
    match listener.validate() {
        Ok(()) => Ok(listener),
        Err(problems) => Err(format!("the translation does not validate: {problems:?}")),
    }
}

/// CLB's answer for one request: `Ok(backend)`, or the redirect it answers with instead.
fn clb_answer(
    listener: &CompiledListener,
    domains: &[TDomain<u8>],
    host: &str,
    path: &str,
) -> Result<Option<u8>, String> {
    match listener.route(host, path) {
        ClbRoute::Rule { domain, rule } => Ok(domains[domain].rules[rule].backend),
        ClbRoute::Redirect { location } => Err(format!("redirect to {location}")),
        ClbRoute::NotFound => Ok(None),
        // Refused with 400 before routing: no backend (the oracle answers None too).
        ClbRoute::BadRequest(_) => Ok(None),
    }
}

/// Generated Ingress rules: (host, [(path, kind, backend)]).
type Rules = Vec<(Option<String>, Vec<(String, PathKind, u8)>)>;

/// A view of what the model would keep: invalid hosts and paths are refused with a Problem
/// before translation, so the oracle only sees valid ones.
fn valid_view(rules: Rules, default: Option<u8>) -> IngressView<u8> {
    IngressView {
        rules: rules
            .into_iter()
            .filter(|(h, _)| {
                h.as_deref()
                    .is_none_or(|h| translate::check_host(h).is_ok())
            })
            .map(|(host, paths)| HostRules {
                host,
                paths: paths
                    .into_iter()
                    .filter(|(p, k, _)| translate::clb_urls(p, *k).is_ok())
                    .map(|(path, kind, backend)| PathRule {
                        path,
                        kind,
                        backend,
                    })
                    .collect(),
            })
            .collect(),
        default_backend: default,
    }
}

/// A request Host header: a generated host, in upper case, with a port or a trailing dot.
fn request_host() -> impl Strategy<Value = String> {
    (host_like(), 0u8..4).prop_map(|(h, form)| {
        let h = h.replace('*', "x");
        match form {
            0 => h.to_ascii_uppercase(),
            1 => format!("{h}:8080"),
            2 => format!("{h}."),
            _ => h,
        }
    })
}

fn request_path() -> impl Strategy<Value = String> {
    (path_like(), any::<bool>(), any::<bool>()).prop_map(|(p, strip, query)| {
        let mut p = if strip && p.len() > 1 {
            p.trim_end_matches('/').to_string()
        } else {
            p
        };
        if !p.starts_with('/') {
            p.insert(0, '/');
        }
        if query {
            p.push_str("?q=/a/b");
        }
        p
    })
}

proptest! {
    #![proptest_config(clb_fuzz::config())]

    #[test]
    fn any_host_is_checked_without_panicking_and_an_accepted_host_gives_a_valid_clb_domain(
        host in host_like(),
    ) {
        let Ok(key) = translate::check_host(&host) else { return Ok(()) };
        let domain = key.clb_domain();
        prop_assert!(domain.len() <= translate::MAX_DOMAIN_LEN, "{domain:?}");
        let form = clb::check_domain(&domain);
        match &key {
            HostKey::Exact(_) => prop_assert_eq!(form, Ok(DomainForm::Exact), "{:?}", domain),
            HostKey::Wildcard(_) => prop_assert_eq!(form, Ok(DomainForm::Regex), "{:?}", domain),
            HostKey::CatchAll => prop_assert!(false, "a host became the catch-all"),
        }
        // The Ingress spelling of the key re-validates to the same key.
        prop_assert_eq!(translate::check_host(&key.display()), Ok(key));
    }

    #[test]
    fn a_wildcard_host_routes_exactly_the_hosts_one_label_deeper(
        labels in proptest::collection::vec("[a-z0-9]([a-z0-9-]{0,6}[a-z0-9])?", 1..4),
        first in "[a-z0-9-]{1,8}",
        extra in "[a-z0-9]{1,4}",
    ) {
        let suffix = labels.join(".");
        let host = format!("*.{suffix}");
        prop_assume!(translate::check_host(&host).is_ok());
        let view = valid_view(vec![(Some(host), vec![("/".into(), PathKind::Prefix, 1)])], None);
        let domains = translate::translate(&view);
        let listener = compile(&domains).map_err(TestCaseError::fail)?;
        for req in [
            format!("{first}.{suffix}"),
            suffix.clone(),
            format!("{extra}.{first}.{suffix}"),
            format!("{}.{suffix}", first.to_ascii_uppercase()),
            format!("{first}{suffix}"),
            format!("{first}.x{suffix}"),
        ] {
            let want = ingress::route(&view, &req, "/");
            prop_assert_eq!(clb_answer(&listener, &domains, &req, "/"), Ok(want), "host {:?}", req);
        }
        prop_assert_eq!(ingress::route(&view, &format!("{first}.{suffix}"), "/"), Some(1));
    }

    #[test]
    fn any_path_is_checked_without_panicking_and_an_accepted_path_gives_valid_clb_urls(
        path in path_like(),
        kind in kind(),
    ) {
        let Ok(urls) = translate::clb_urls(&path, kind) else { return Ok(()) };
        prop_assert!(!urls.is_empty());
        for u in &urls {
            prop_assert!(u.len() <= translate::MAX_URL_LEN, "{u:?}");
            let form = clb::check_url(u);
            prop_assert!(matches!(form, Ok(UrlForm::Exact | UrlForm::Prefix)), "{:?} of {:?}: {:?}", u, path, form);
        }
        if kind == PathKind::Exact {
            prop_assert_eq!(urls, vec![format!("={path}")]);
        }
    }

    #[test]
    fn the_translation_routes_every_request_as_the_ingress_spec_does(
        rules in proptest::collection::vec(
            (proptest::option::weighted(0.85, host_like()),
             proptest::collection::vec((path_like(), kind(), 0u8..6), 0..5)),
            0..6),
        default in proptest::option::weighted(0.3, 100u8..103),
        requests in proptest::collection::vec((request_host(), request_path()), 1..8),
    ) {
        let view = valid_view(rules, default);
        let domains = translate::translate(&view);
        let listener = compile(&domains).map_err(TestCaseError::fail)?;
        for (host, path) in &requests {
            let want = ingress::route(&view, host, path);
            let got = clb_answer(&listener, &domains, host, path);
            prop_assert_eq!(&got, &Ok(want), "request host={:?} path={:?}\nview={:#?}\nclb={:#?}", host, path, view, domains);
        }
    }

    #[test]
    fn any_clb_domain_url_or_regex_is_checked_and_compiled_without_panicking(
        domain in prop_oneof![any::<String>(), "~?[a-z0-9.?=~_+\\\\^*!$&|()\\[\\]{},-]{0,30}", "\\*?\\.?[a-z.*]{0,10}"],
        url in prop_oneof![any::<String>(), "(=|\\^~|~\\*?|~ )?[a-zA-Z0-9./_=?~^*$:()\\[\\]|+\\\\{},-]{0,30}"],
        host in any::<String>(),
        path in any::<String>(),
    ) {
        let _ = clb::check_domain(&domain);
        let _ = clb::check_url(&url);
        let _ = clb::domain_form(&domain);
        let (_, body) = clb::url_form(&url);
        if let Ok(translated) = clb::translate_pcre(body) {
            let _ = clb::compile_regex(body, false);
            prop_assert!(!translated.is_empty() || body.is_empty());
        }
        let listener = CompiledListener::new(vec![DomainConf {
            domain: domain.clone(),
            default_server: true,
            rules: vec![UrlConf { url: url.clone() }, UrlConf { url: "/".into() }],
        }]);
        let route = listener.route(&host, &path);
        if let ClbRoute::Rule { domain: d, rule } = route {
            prop_assert!(d == 0 && rule < 2);
        }
        let _ = listener.pick_domain(&host);
    }

    #[test]
    fn a_literal_pcre_pattern_matches_exactly_the_strings_that_contain_it(
        pattern in "[a-zA-Z0-9/_=-]{1,20}",
        text in "[a-zA-Z0-9/_=-]{0,30}",
    ) {
        let re = clb::compile_regex(&pattern, false);
        prop_assert!(re.is_ok(), "{:?}", re.err());
        let re = re.unwrap_or_else(|_| unreachable!());
        prop_assert_eq!(re.is_match(text.as_bytes()), text.contains(&pattern), "{} in {}", pattern, text);
    }
}
