//! The central correctness property: for random Ingress sets and random requests, CLB's own
//! matching over the translated configuration gives exactly the Ingress answer.
//!
//! `clb_match(translate(ingresses), req) == ingress_match(ingresses, req)` for 10,000+ cases.

use clb_ingress::matching::clb::{ClbRoute, CompiledListener, DomainConf, UrlConf};
use clb_ingress::matching::ingress::{self, HostRules, IngressView, PathKind, PathRule};
use clb_ingress::model::translate::{self, TDomain};
use proptest::prelude::*;

/// Backends are small integers; the answer is `Some(backend)` or `None` (no backend).
type B = u8;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Answer {
    Backend(Option<B>),
    Redirect(String),
}

fn clb_answer(domains: &[TDomain<B>], host: &str, path: &str) -> Answer {
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
    match CompiledListener::new(conf).route(host, path) {
        ClbRoute::Rule { domain, rule } => Answer::Backend(domains[domain].rules[rule].backend),
        ClbRoute::Redirect { location } => Answer::Redirect(location),
        ClbRoute::NotFound => Answer::Backend(None),
    }
}

fn check(view: &IngressView<B>, host: &str, path: &str) -> Result<(), TestCaseError> {
    let domains = translate::translate(view);
    let want = Answer::Backend(ingress::route(view, host, path));
    let got = clb_answer(&domains, host, path);
    prop_assert_eq!(
        &got,
        &want,
        "request host={:?} path={:?}\nview={:#?}\nclb={:#?}",
        host,
        path,
        view,
        domains
    );
    Ok(())
}

const HOSTS: &[&str] = &[
    "a.com",
    "b.a.com",
    "*.a.com",
    "*.b.a.com",
    "x.org",
    "*.x.org",
];
const SEGMENTS: &[&str] = &["a", "b", "ab", "a.b", "A", "x_y", "v1", "v1.2", "c-d"];

fn path_strategy() -> impl Strategy<Value = String> {
    (
        proptest::collection::vec(proptest::sample::select(SEGMENTS), 0..4),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(segs, trailing, double)| {
            let mut p = String::new();
            for s in &segs {
                p.push('/');
                if double && s.len() == 1 {
                    p.push('/');
                }
                p.push_str(s);
            }
            if trailing || p.is_empty() {
                p.push('/');
            }
            p
        })
}

fn view_strategy() -> impl Strategy<Value = IngressView<B>> {
    let path = (
        path_strategy(),
        prop_oneof![Just(PathKind::Exact), Just(PathKind::Prefix)],
        0u8..6,
    )
        .prop_map(|(path, kind, backend)| PathRule {
            path,
            kind,
            backend,
        });
    let host_rule = (
        proptest::option::weighted(0.8, proptest::sample::select(HOSTS)),
        proptest::collection::vec(path, 0..5),
    )
        .prop_map(|(host, paths)| HostRules {
            host: host.map(str::to_string),
            paths,
        });
    (
        proptest::collection::vec(host_rule, 0..6),
        proptest::option::weighted(0.4, 100u8..103),
    )
        .prop_map(|(rules, default_backend)| IngressView {
            rules,
            default_backend,
        })
}

fn host_strategy() -> impl Strategy<Value = String> {
    prop_oneof![
        proptest::sample::select(vec![
            "a.com",
            "A.COM",
            "a.com:8080",
            "a.com.",
            "b.a.com",
            "c.a.com",
            "x.b.a.com",
            "y.x.b.a.com",
            "x.org",
            "q.x.org",
            "q.r.x.org",
            "com",
            "other.net",
            "unmatched.clb-ingress.invalid",
        ])
        .prop_map(str::to_string),
    ]
}

fn request_strategy() -> impl Strategy<Value = String> {
    (path_strategy(), any::<bool>(), any::<bool>()).prop_map(|(p, strip_slash, query)| {
        let mut p = if strip_slash && p.len() > 1 {
            p.trim_end_matches('/').to_string()
        } else {
            p
        };
        if p.is_empty() {
            p.push('/');
        }
        if query {
            p.push_str("?q=/a/b&x=1");
        }
        p
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 10_000, .. ProptestConfig::default() })]

    #[test]
    fn clb_matching_of_the_translation_equals_the_ingress_answer(
        view in view_strategy(),
        requests in proptest::collection::vec((host_strategy(), request_strategy()), 1..8),
    ) {
        for (host, path) in &requests {
            check(&view, host, path)?;
        }
    }
}

fn rules(host: Option<&str>, paths: &[(&str, PathKind, B)]) -> HostRules<B> {
    HostRules {
        host: host.map(str::to_string),
        paths: paths
            .iter()
            .map(|(p, k, b)| PathRule {
                path: p.to_string(),
                kind: *k,
                backend: *b,
            })
            .collect(),
    }
}

#[test]
fn a_request_for_an_unknown_host_never_reaches_another_hosts_backend() {
    let view = IngressView {
        rules: vec![rules(Some("a.com"), &[("/", PathKind::Prefix, 1)])],
        default_backend: None,
    };
    for path in ["/", "/x", "/.clb-ingress/no-route"] {
        assert_eq!(
            clb_answer(&translate::translate(&view), "evil.com", path),
            Answer::Backend(None)
        );
    }
    check(&view, "evil.com", "/").unwrap();
}

#[test]
fn prefix_foo_does_not_route_foobar_through_clb() {
    let view = IngressView {
        rules: vec![rules(
            Some("a.com"),
            &[("/foo", PathKind::Prefix, 1), ("/", PathKind::Prefix, 2)],
        )],
        default_backend: None,
    };
    let d = translate::translate(&view);
    assert_eq!(clb_answer(&d, "a.com", "/foobar"), Answer::Backend(Some(2)));
    assert_eq!(clb_answer(&d, "a.com", "/foo"), Answer::Backend(Some(1)));
    assert_eq!(clb_answer(&d, "a.com", "/foo/"), Answer::Backend(Some(1)));
    assert_eq!(
        clb_answer(&d, "a.com", "/foo/bar?x=1"),
        Answer::Backend(Some(1))
    );
}

#[test]
fn a_deeper_host_does_not_match_a_single_label_wildcard_through_clb() {
    let view = IngressView {
        rules: vec![rules(Some("*.a.com"), &[("/", PathKind::Prefix, 1)])],
        default_backend: Some(9),
    };
    let d = translate::translate(&view);
    assert_eq!(clb_answer(&d, "x.a.com", "/"), Answer::Backend(Some(1)));
    assert_eq!(clb_answer(&d, "y.x.a.com", "/"), Answer::Backend(Some(9)));
    assert_eq!(clb_answer(&d, "a.com", "/"), Answer::Backend(Some(9)));
}

#[test]
fn an_exact_path_with_a_trailing_slash_does_not_cause_a_redirect_through_clb() {
    let view = IngressView {
        rules: vec![rules(Some("a.com"), &[("/a/", PathKind::Exact, 1)])],
        default_backend: None,
    };
    let d = translate::translate(&view);
    assert_eq!(clb_answer(&d, "a.com", "/a/"), Answer::Backend(Some(1)));
    assert_eq!(clb_answer(&d, "a.com", "/a"), Answer::Backend(None));
}
