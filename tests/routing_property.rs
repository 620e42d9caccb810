//! The central correctness property: for random Ingress sets and random requests, CLB's own
//! matching over the translated configuration gives exactly the Ingress answer.
//!
//! `clb_match(translate(ingresses), req) == ingress_match(ingresses, req)` for thousands of
//! cases. Each matcher normalises requests its own way (CLB: nginx's byte parser; the oracle:
//! decode, then resolve segments), so the generators produce what tells them apart: `//`, `.`
//! and `..` segments (also above the root), percent-encoding of any character (`/`, `.`, `?`,
//! `=` and unreserved letters included), broken escapes, paths over 200 characters, and `?` / `=`
//! inside rule paths.

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
    BadRequest,
}

fn compile(domains: &[TDomain<B>]) -> CompiledListener {
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
    CompiledListener::new(conf)
}

fn clb_route(
    domains: &[TDomain<B>],
    listener: &CompiledListener,
    host: &str,
    path: &str,
) -> Answer {
    match listener.route(host, path) {
        ClbRoute::Rule { domain, rule } => Answer::Backend(domains[domain].rules[rule].backend),
        ClbRoute::Redirect { location } => Answer::Redirect(location),
        ClbRoute::NotFound => Answer::Backend(None),
        ClbRoute::BadRequest(_) => Answer::BadRequest,
    }
}

fn clb_answer(domains: &[TDomain<B>], host: &str, path: &str) -> Answer {
    clb_route(domains, &compile(domains), host, path)
}

fn ingress_answer(view: &IngressView<B>, host: &str, path: &str) -> Answer {
    match ingress::route_request(view, host, path) {
        Ok(backend) => Answer::Backend(backend),
        Err(ingress::BadRequest) => Answer::BadRequest,
    }
}

/// Check every request against one view, translating and compiling it once.
fn check_all(view: &IngressView<B>, requests: &[(String, String)]) -> Result<(), TestCaseError> {
    let domains = translate::translate(view);
    let listener = compile(&domains);
    for (host, path) in requests {
        let want = ingress_answer(view, host, path);
        let got = clb_route(&domains, &listener, host, path);
        prop_assert_eq!(
            &got,
            &want,
            "request host={:?} path={:?}\nview={:#?}\nclb={:#?}",
            host,
            path,
            view,
            domains
        );
    }
    Ok(())
}

fn check(view: &IngressView<B>, host: &str, path: &str) -> Result<(), TestCaseError> {
    check_all(view, &[(host.to_owned(), path.to_owned())])
}

const HOSTS: &[&str] = &[
    "a.com",
    "b.a.com",
    "*.a.com",
    "*.b.a.com",
    "x.org",
    "*.x.org",
];
/// A segment long enough that two or three of them pass CLB's 200-character URL limit.
const LONG: &str =
    "long-segment-0123456789-abcdefghijklmnopqrstuvwxyz-ABCDEFGHIJKLMNOPQRSTUVWXYZ-0123456789";
/// Segments of rule paths (and of requests): `.`/`*`-free CLB characters, `?` and `=` included,
/// and the dot segments the Kubernetes API refuses in rule paths (they must match nothing).
const SEGMENTS: &[&str] = &[
    "a", "b", "ab", "a.b", "A", "x_y", "v1", "v1.2", "c-d", "a?b", "x=1", "=", "?", ".", "..", LONG,
];

fn path_strategy(segments: Vec<&'static str>) -> impl Strategy<Value = String> {
    (
        proptest::collection::vec(proptest::sample::select(segments), 0..5),
        any::<bool>(),
    )
        .prop_map(|(segs, trailing)| {
            let mut p = String::new();
            for s in &segs {
                p.push('/');
                p.push_str(s);
            }
            if trailing || p.is_empty() {
                p.push('/');
            }
            p
        })
}

/// After path `i`, when bit `i` of `twins` is set, the same path as a Prefix with its trailing
/// slash toggled and another backend (`/foo` and `/foo/`: the longer string has priority).
fn with_slash_twins(paths: Vec<PathRule<B>>, twins: u8) -> Vec<PathRule<B>> {
    let mut out = Vec::with_capacity(paths.len() * 2);
    for (i, p) in paths.into_iter().enumerate() {
        let twin = (twins >> (i % 8)) & 1 == 1 && p.path.len() > 1;
        let toggled = match p.path.strip_suffix('/') {
            Some(bare) => bare.to_owned(),
            None => format!("{}/", p.path),
        };
        let backend = (p.backend + 1) % 6;
        out.push(p);
        if twin {
            out.push(PathRule {
                path: toggled,
                kind: PathKind::Prefix,
                backend,
            });
        }
    }
    out
}

fn view_strategy() -> impl Strategy<Value = IngressView<B>> {
    let path = (
        path_strategy(SEGMENTS.to_vec()),
        prop_oneof![Just(PathKind::Exact), Just(PathKind::Prefix)],
        0u8..6,
    )
        .prop_map(|(path, kind, backend)| PathRule {
            path,
            kind,
            backend,
        });
    // Families: a path and paths under it, often with its backend (the rule economy leaves
    // those out) and sometimes with another one.
    let family = (
        path_strategy(SEGMENTS[..6].to_vec()),
        prop_oneof![Just(PathKind::Exact), Just(PathKind::Prefix)],
        0u8..6,
        proptest::collection::vec(
            (
                proptest::sample::select(&SEGMENTS[..6]),
                any::<bool>(),
                prop_oneof![Just(PathKind::Exact), Just(PathKind::Prefix)],
                proptest::option::weighted(0.3, 0u8..6),
            ),
            0..4,
        ),
    )
        .prop_map(|(base, kind, backend, children)| {
            let mut out = vec![PathRule {
                path: base.clone(),
                kind,
                backend,
            }];
            let stem = base.trim_end_matches('/');
            for (seg, trailing, kind, other) in children {
                out.push(PathRule {
                    path: format!("{stem}/{seg}{}", if trailing { "/" } else { "" }),
                    kind,
                    backend: other.unwrap_or(backend),
                });
            }
            out
        });
    // Hosts without paths copy the catch-all's one rule (the rule economy leaves their domain
    // out unless a wildcard host covers them).
    let paths = prop_oneof![
        Just(Vec::new()),
        proptest::collection::vec(path, 0..5),
        proptest::collection::vec(family, 1..3).prop_map(|f| f.concat()),
    ];
    let host_rule = (
        proptest::option::weighted(0.8, proptest::sample::select(HOSTS)),
        paths,
        any::<u8>(),
    )
        .prop_map(|(host, paths, twins)| HostRules {
            host: host.map(str::to_string),
            paths: with_slash_twins(paths, twins)
                .into_iter()
                // A path CLB cannot express (over 200 characters) parks its Ingress.
                .filter(|p| translate::clb_urls(&p.path, p.kind).is_ok())
                .collect(),
        });
    (
        proptest::collection::vec(host_rule, 0..6),
        // The default backend is sometimes a path's backend too (paths equal to it are cut).
        proptest::option::weighted(0.4, prop_oneof![100u8..103, 0u8..6]),
    )
        .prop_map(|(rules, default_backend)| IngressView {
            rules,
            default_backend,
        })
}

fn host_strategy() -> impl Strategy<Value = String> {
    proptest::sample::select(vec![
        "a.com",
        "A.COM",
        "a.com:8080",
        "a.com.",
        "A.com.:80",
        "a.com..",
        "a.com:x",
        "b.a.com",
        "c.a.com",
        "x.b.a.com",
        "y.x.b.a.com",
        "x.org",
        "q.x.org",
        "q.r.x.org",
        "com",
        "[::1]:80",
        "other.net",
        "unmatched.clb-ingress.invalid",
    ])
    .prop_map(str::to_string)
}

/// Percent-encode `path` (never its leading `/`): byte `i` is encoded when `mask[i % len]` is
/// below 48, in upper- or lower-case hex by its lowest bit.
fn percent_encode(path: &str, mask: &[u8]) -> String {
    let mut out = String::with_capacity(path.len() * 2);
    for (i, c) in path.char_indices() {
        let m = if mask.is_empty() || i == 0 {
            u8::MAX
        } else {
            mask[i % mask.len()]
        };
        if m < 48 && c.is_ascii() {
            let hex = format!("%{:02X}", u32::from(c));
            out.push_str(&if m % 2 == 0 { hex } else { hex.to_lowercase() });
        } else {
            out.push(c);
        }
    }
    out
}

fn request_strategy() -> impl Strategy<Value = String> {
    let mut segments = SEGMENTS.to_vec();
    // Requests also carry empty segments (`//`) and more dot segments.
    segments.extend(["", "", ".", "..", "%2e%2E", "a%2Fb", LONG]);
    (
        path_strategy(segments),
        any::<bool>(),
        proptest::collection::vec(any::<u8>(), 0..12),
        proptest::option::weighted(
            0.05,
            (
                0usize..64,
                proptest::sample::select(vec!["%", "%4", "%zz", "%00"]),
            ),
        ),
        proptest::sample::select(vec![
            "",
            "",
            "",
            "?q=/a/b&x=1",
            "?",
            "#frag",
            "?a=%zz#x",
            "?x=../..",
        ]),
    )
        .prop_map(|(p, strip_slash, mask, broken, tail)| {
            let p = if strip_slash && p.len() > 1 {
                p.trim_end_matches('/').to_string()
            } else {
                p
            };
            let mut p = if p.is_empty() {
                "/".to_owned()
            } else {
                percent_encode(&p, &mask)
            };
            if let Some((at, escape)) = broken {
                let at = (1 + at).min(p.len());
                if p.is_char_boundary(at) {
                    p.insert_str(at, escape);
                }
            }
            p.push_str(tail);
            p
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 10_000, .. ProptestConfig::default() })]

    #[test]
    fn clb_matching_of_the_translation_equals_the_ingress_answer(
        view in view_strategy(),
        requests in proptest::collection::vec((host_strategy(), request_strategy()), 1..10),
    ) {
        check_all(&view, &requests)?;
    }
}

#[test]
fn the_generator_often_makes_views_the_rule_economy_shrinks() {
    use proptest::strategy::ValueTree;
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let strategy = view_strategy();
    let (mut paths_cut, mut domains_cut, total) = (0, 0, 2_000);
    for _ in 0..total {
        let view = strategy.new_tree(&mut runner).unwrap().current();
        let full = translate::translate_with(&view, translate::Economy::FULL);
        let none = translate::translate_with(&view, translate::Economy::NONE);
        let count = |d: &[TDomain<B>]| d.iter().map(|d| d.rules.len()).sum::<usize>();
        if full.len() < none.len() {
            domains_cut += 1;
        }
        if count(&full) + (none.len() - full.len()) < count(&none) {
            paths_cut += 1;
        }
    }
    println!("of {total} views: {paths_cut} lose path rules, {domains_cut} lose a domain");
    assert!(paths_cut * 5 > total, "{paths_cut} of {total}");
    assert!(domains_cut * 20 > total, "{domains_cut} of {total}");
}

#[test]
fn the_translation_before_rule_economy_still_equals_the_ingress_answer() {
    use proptest::strategy::ValueTree;
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let (views, requests) = (view_strategy(), (host_strategy(), request_strategy()));
    for _ in 0..1_000 {
        let view = views.new_tree(&mut runner).unwrap().current();
        let domains = translate::translate_with(&view, translate::Economy::NONE);
        let listener = compile(&domains);
        for _ in 0..5 {
            let (host, path) = requests.new_tree(&mut runner).unwrap().current();
            assert_eq!(
                clb_route(&domains, &listener, &host, &path),
                ingress_answer(&view, &host, &path),
                "{host} {path} {view:#?}"
            );
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

#[test]
fn the_issue_examples_reach_prefix_api_through_clb_and_the_oracle() {
    let view = IngressView {
        rules: vec![rules(
            Some("a.com"),
            &[("/api", PathKind::Prefix, 1), ("/", PathKind::Prefix, 2)],
        )],
        default_backend: Some(9),
    };
    let d = translate::translate(&view);
    for path in ["//api/users", "/%61pi/users", "/x/../api/users"] {
        assert_eq!(
            clb_answer(&d, "a.com", path),
            Answer::Backend(Some(1)),
            "{path}"
        );
        assert_eq!(
            ingress_answer(&view, "a.com", path),
            Answer::Backend(Some(1)),
            "{path}"
        );
    }
    for path in ["/../api", "/api%2"] {
        assert_eq!(clb_answer(&d, "a.com", path), Answer::BadRequest, "{path}");
        check(&view, "a.com", path).unwrap();
    }
}

#[test]
fn prefix_with_trailing_slash_wins_through_clb_whatever_the_rule_order() {
    for paths in [
        [
            ("/foo", PathKind::Prefix, 1),
            ("/foo/", PathKind::Prefix, 2),
        ],
        [
            ("/foo/", PathKind::Prefix, 2),
            ("/foo", PathKind::Prefix, 1),
        ],
    ] {
        let view = IngressView {
            rules: vec![rules(Some("a.com"), &paths)],
            default_backend: None,
        };
        let d = translate::translate(&view);
        for path in ["/foo", "/foo/", "/foo/bar"] {
            assert_eq!(
                clb_answer(&d, "a.com", path),
                Answer::Backend(Some(2)),
                "{path}"
            );
            check(&view, "a.com", path).unwrap();
        }
    }
}
