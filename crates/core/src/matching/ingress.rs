//! The Kubernetes Ingress matching semantics (the oracle): which backend the Ingress API says a
//! request goes to, given every rule of the Ingresses sharing one load balancer.
//!
//! Sources: the Kubernetes Ingress concept page (path types, examples table, multiple matches,
//! hostname wildcards), `networking/v1` `IngressRule.Host` and `HTTPIngressPath` docs, KEP-1453,
//! and the `kubernetes-sigs/ingress-controller-conformance` feature files. Where they are silent,
//! the choice made here is stated and is clb-ingress's documented behaviour.
//!
//! # The request
//! - Host: [`normalize_host`]: lower-cased, port dropped, one trailing dot dropped.
//! - Path: [`request_path`]. The Ingress API says rule paths match "the path of an incoming
//!   request" without defining it; clb-ingress's oracle takes the normalised path, as
//!   ingress-nginx (nginx) and most controllers do: the request target up to the first raw `?`
//!   or `#`, percent-decoded once (all of `%XX`, `%2F` included), then split on `/` with empty
//!   segments (`//`) and `.` dropped and `..` removing the segment before it; the result keeps a
//!   trailing `/` when the target's last segment was empty, `.` or `..`. A request that cannot be
//!   normalised (not starting with `/`, a bad `%` escape, `%00`, `..` above the root) is refused
//!   ([`BadRequest`], HTTP 400): it reaches no backend, not even the default backend.
//!   Rule paths are compared byte-for-byte and case-sensitively with the normalised path, as
//!   written (they are not normalised: a rule path containing `//`, `.` or `..` segments, which
//!   the Kubernetes API refuses for Exact and Prefix, matches no request). `.` and `*` in rule
//!   paths are literal characters.
//!
//! # Host selection (host first, most specific wins, no fallback)
//! 1. If some rule has a precise host equal to the request host, only the paths of the rules
//!    with exactly that host are considered.
//! 2. Else, if some wildcard rule `*.suffix` matches (the request host is one non-empty label
//!    without dots, a `.`, then `suffix`; `*.foo.com` matches neither `foo.com` nor
//!    `a.b.foo.com`), only the paths of the rules with that wildcard host are considered.
//! 3. Else the paths of the host-less rules (no host, or an empty host) are considered.
//!
//! A chosen host never falls back to a less specific one, even when none of its paths matches,
//! and a host present with no paths at all (a rule without `http`) still claims its requests.
//!
//! # Path selection within the chosen rules
//! - An `Exact` path matches iff it equals the request path.
//! - A `Prefix` path is normalised by stripping trailing `/` (`/foo/` is `/foo`, `/` becomes the
//!   empty match-everything prefix); it matches iff it is empty, equals the request path, or the
//!   request path starts with it followed by `/` (element-wise: `/foo` never matches `/foobar`).
//! - The longest match wins (an `Exact` path counts its full length, a `Prefix` its normalised
//!   length); at equal length `Exact` beats `Prefix`; then, of two `Prefix` paths differing only
//!   by trailing slashes (`/foo`, `/foo/`), the longer string wins for every request both match
//!   (networking/v1: "the longest matching path is given priority"); remaining ties (the same
//!   path twice) go to the first path in `IngressView::rules` order (oldest Ingress first, then
//!   rule order, then path order).
//! - No path matches (or no rule was chosen): the view's `default_backend`, which may be `None`
//!   (404).

/// A request the oracle refuses before routing (HTTP 400): its path cannot be normalised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadRequest;

/// The request host as Ingress hosts are compared with it: lower-cased, without the port (after
/// the first `:` that is not inside an IPv6 `[...]` literal) and without one trailing dot.
pub fn normalize_host(host: &str) -> String {
    let host = host.trim();
    let without_port = match host.strip_prefix('[') {
        Some(literal) => match literal.find(']') {
            Some(close) => &host[..close + 2],
            None => host,
        },
        None => host.split(':').next().unwrap_or(host),
    };
    let without_dot = without_port.strip_suffix('.').unwrap_or(without_port);
    without_dot.to_ascii_lowercase()
}

/// Decode every `%XX` of `raw` once; `None` for a bad escape or `%00`.
fn percent_decode(raw: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(raw.len());
    let mut bytes = raw.bytes();
    while let Some(b) = bytes.next() {
        if b != b'%' {
            out.push(b);
            continue;
        }
        let hi = char::from(bytes.next()?).to_digit(16)?;
        let lo = char::from(bytes.next()?).to_digit(16)?;
        let decoded = u8::try_from(hi << 4 | lo).ok().filter(|&d| d != 0)?;
        out.push(decoded);
    }
    Some(out)
}

/// The normalised path of a request target (see the module docs), as bytes.
pub fn request_path(target: &str) -> Result<Vec<u8>, BadRequest> {
    let end = target.find(['?', '#']).unwrap_or(target.len());
    let raw = &target[..end];
    if !raw.starts_with('/') {
        return Err(BadRequest);
    }
    let decoded = percent_decode(raw).ok_or(BadRequest)?;
    let mut kept: Vec<&[u8]> = Vec::new();
    let mut trailing_slash = false;
    for segment in decoded[1..].split(|&b| b == b'/') {
        trailing_slash = matches!(segment, b"" | b"." | b"..");
        match segment {
            b"" | b"." => {}
            b".." => {
                kept.pop().ok_or(BadRequest)?;
            }
            _ => kept.push(segment),
        }
    }
    let mut path = Vec::with_capacity(decoded.len());
    for segment in &kept {
        path.push(b'/');
        path.extend_from_slice(segment);
    }
    if path.is_empty() || trailing_slash {
        path.push(b'/');
    }
    Ok(path)
}

/// `pathType`: `ImplementationSpecific` is treated as `Prefix` by clb-ingress (documented choice).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PathKind {
    Exact,
    Prefix,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathRule<B> {
    pub path: String,
    pub kind: PathKind,
    pub backend: B,
}

/// One `spec.rules[]` entry: a host (None = host-less rule) and its paths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostRules<B> {
    pub host: Option<String>,
    pub paths: Vec<PathRule<B>>,
}

/// All rules of the Ingresses sharing one load balancer, oldest Ingress first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngressView<B> {
    pub rules: Vec<HostRules<B>>,
    pub default_backend: Option<B>,
}

/// How a rule's host relates to a request host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum HostMatch {
    /// Host-less rule: matches any host, least specific.
    Any,
    /// Wildcard host `*.suffix` covering the request host.
    Wildcard,
    /// Precise host equal to the request host.
    Precise,
}

/// Does a rule host (`None`/empty = host-less) cover the normalised request host, and how?
fn host_match(rule_host: Option<&str>, request_host: &str) -> Option<HostMatch> {
    let rule_host = match rule_host {
        None | Some("") => return Some(HostMatch::Any),
        Some(h) => h.to_ascii_lowercase(),
    };
    if let Some(suffix) = rule_host.strip_prefix("*.") {
        let (label, rest) = request_host.split_once('.')?;
        (!label.is_empty() && rest == suffix).then_some(HostMatch::Wildcard)
    } else {
        (rule_host == request_host).then_some(HostMatch::Precise)
    }
}

/// The strength of a path's match, compared in order: the longer match (an `Exact` path's
/// length, a `Prefix` path's length without trailing `/`), then `Exact` over `Prefix`, then the
/// longer path as written (`Prefix /foo/` over `Prefix /foo`: "the longest matching path is
/// given priority", networking/v1).
fn path_match(rule: &PathRule<impl Sized>, path: &[u8]) -> Option<(usize, bool, usize)> {
    let written = rule.path.len();
    match rule.kind {
        PathKind::Exact => (rule.path.as_bytes() == path).then_some((written, true, written)),
        PathKind::Prefix => {
            let prefix = normalize_prefix(&rule.path);
            let matches = prefix.is_empty()
                || path
                    .strip_prefix(prefix.as_bytes())
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with(b"/"));
            matches.then_some((prefix.len(), false, written))
        }
    }
}

/// A `Prefix` path with its trailing slashes removed (`/` becomes the empty prefix).
pub fn normalize_prefix(path: &str) -> &str {
    path.trim_end_matches('/')
}

/// The backend the Ingress spec sends this request to, or None (404); a request refused with
/// 400 ([`route_request`]) also gets None.
pub fn route<B: Clone>(view: &IngressView<B>, host: &str, path_and_query: &str) -> Option<B> {
    route_request(view, host, path_and_query).unwrap_or(None)
}

/// The backend the Ingress spec sends this request to, None (404), or [`BadRequest`] when its
/// path cannot be normalised.
pub fn route_request<B: Clone>(
    view: &IngressView<B>,
    host: &str,
    path_and_query: &str,
) -> Result<Option<B>, BadRequest> {
    let path = request_path(path_and_query)?;
    Ok(route_path(view, &normalize_host(host), &path))
}

fn route_path<B: Clone>(view: &IngressView<B>, host: &str, path: &[u8]) -> Option<B> {
    // The most specific kind of host match any rule offers; only rules of that kind count.
    let best_host = view
        .rules
        .iter()
        .filter_map(|r| host_match(r.host.as_deref(), host))
        .max();
    let Some(best_host) = best_host else {
        return view.default_backend.clone();
    };

    let mut best: Option<((usize, bool, usize), &B)> = None;
    let chosen = view
        .rules
        .iter()
        .filter(|r| host_match(r.host.as_deref(), host) == Some(best_host));
    for rule in chosen {
        for p in &rule.paths {
            if let Some(strength) = path_match(p, path) {
                // Strictly stronger only: ties keep the earliest path.
                if best.is_none_or(|(s, _)| strength > s) {
                    best = Some((strength, &p.backend));
                }
            }
        }
    }
    best.map(|(_, b)| b.clone())
        .or_else(|| view.default_backend.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exact(path: &str, backend: &'static str) -> PathRule<&'static str> {
        PathRule {
            path: path.into(),
            kind: PathKind::Exact,
            backend,
        }
    }

    fn prefix(path: &str, backend: &'static str) -> PathRule<&'static str> {
        PathRule {
            path: path.into(),
            kind: PathKind::Prefix,
            backend,
        }
    }

    fn rule(host: Option<&str>, paths: Vec<PathRule<&'static str>>) -> HostRules<&'static str> {
        HostRules {
            host: host.map(str::to_owned),
            paths,
        }
    }

    /// A view with one host-less rule holding `paths` and no default backend.
    fn paths_only(paths: Vec<PathRule<&'static str>>) -> IngressView<&'static str> {
        IngressView {
            rules: vec![rule(None, paths)],
            default_backend: None,
        }
    }

    fn at(view: &IngressView<&'static str>, path: &str) -> Option<&'static str> {
        route(view, "example.com", path)
    }

    // ---- The "Examples" table of the Kubernetes Ingress docs, row by row. ----

    #[test]
    fn prefix_root_matches_every_path() {
        let v = paths_only(vec![prefix("/", "root")]);
        for p in [
            "/",
            "/foo",
            "/foo/",
            "/foo/bar",
            "/aaa/bbb/ccc",
            "/.well-known/x",
        ] {
            assert_eq!(at(&v, p), Some("root"), "{p}");
        }
    }

    #[test]
    fn exact_path_matches_the_same_path() {
        assert_eq!(
            at(&paths_only(vec![exact("/foo", "foo")]), "/foo"),
            Some("foo")
        );
    }

    #[test]
    fn exact_path_does_not_match_a_different_path() {
        assert_eq!(at(&paths_only(vec![exact("/foo", "foo")]), "/bar"), None);
    }

    #[test]
    fn exact_path_does_not_match_request_with_extra_trailing_slash() {
        assert_eq!(at(&paths_only(vec![exact("/foo", "foo")]), "/foo/"), None);
    }

    #[test]
    fn exact_path_with_trailing_slash_does_not_match_request_without_it() {
        let v = paths_only(vec![exact("/foo/", "foo")]);
        assert_eq!(at(&v, "/foo"), None);
        assert_eq!(at(&v, "/foo/"), Some("foo"));
    }

    #[test]
    fn prefix_path_matches_itself_and_itself_with_trailing_slash() {
        let v = paths_only(vec![prefix("/foo", "foo")]);
        assert_eq!(at(&v, "/foo"), Some("foo"));
        assert_eq!(at(&v, "/foo/"), Some("foo"));
    }

    #[test]
    fn prefix_path_with_trailing_slash_matches_with_and_without_it() {
        let v = paths_only(vec![prefix("/foo/", "foo")]);
        assert_eq!(at(&v, "/foo"), Some("foo"));
        assert_eq!(at(&v, "/foo/"), Some("foo"));
    }

    #[test]
    fn prefix_path_does_not_match_longer_segment() {
        let v = paths_only(vec![prefix("/aaa/bb", "bb")]);
        assert_eq!(at(&v, "/aaa/bbb"), None);
    }

    #[test]
    fn prefix_path_with_several_elements_matches_the_same_path() {
        let v = paths_only(vec![prefix("/aaa/bbb", "bbb")]);
        assert_eq!(at(&v, "/aaa/bbb"), Some("bbb"));
    }

    #[test]
    fn prefix_path_trailing_slash_is_ignored() {
        let v = paths_only(vec![prefix("/aaa/bbb/", "bbb")]);
        assert_eq!(at(&v, "/aaa/bbb"), Some("bbb"));
    }

    #[test]
    fn prefix_path_matches_request_trailing_slash() {
        let v = paths_only(vec![prefix("/aaa/bbb", "bbb")]);
        assert_eq!(at(&v, "/aaa/bbb/"), Some("bbb"));
    }

    #[test]
    fn prefix_path_matches_subpath() {
        let v = paths_only(vec![prefix("/aaa/bbb", "bbb")]);
        assert_eq!(at(&v, "/aaa/bbb/ccc"), Some("bbb"));
    }

    #[test]
    fn prefix_path_does_not_match_string_prefix() {
        let v = paths_only(vec![prefix("/aaa/bbb", "bbb")]);
        assert_eq!(at(&v, "/aaa/bbbxyz"), None);
    }

    #[test]
    fn longer_prefix_beats_root_prefix() {
        let v = paths_only(vec![prefix("/", "root"), prefix("/aaa", "aaa")]);
        assert_eq!(at(&v, "/aaa/ccc"), Some("aaa"));
    }

    #[test]
    fn longest_of_three_prefixes_wins() {
        let v = paths_only(vec![
            prefix("/", "root"),
            prefix("/aaa", "aaa"),
            prefix("/aaa/bbb", "bbb"),
        ]);
        assert_eq!(at(&v, "/aaa/bbb"), Some("bbb"));
    }

    #[test]
    fn root_prefix_catches_what_longer_prefixes_miss() {
        let v = paths_only(vec![
            prefix("/", "root"),
            prefix("/aaa", "aaa"),
            prefix("/aaa/bbb", "bbb"),
        ]);
        assert_eq!(at(&v, "/ccc"), Some("root"));
    }

    #[test]
    fn unmatched_prefix_uses_the_default_backend() {
        let mut v = paths_only(vec![prefix("/aaa", "aaa")]);
        assert_eq!(at(&v, "/ccc"), None);
        v.default_backend = Some("default");
        assert_eq!(at(&v, "/ccc"), Some("default"));
    }

    #[test]
    fn exact_beats_prefix_of_the_same_path() {
        let v = paths_only(vec![prefix("/foo", "prefix"), exact("/foo", "exact")]);
        assert_eq!(at(&v, "/foo"), Some("exact"));
        assert_eq!(at(&v, "/foo/bar"), Some("prefix"));
    }

    // ---- ingress-controller-conformance: features/path_rules.feature ----

    fn conformance_path_rules() -> IngressView<&'static str> {
        IngressView {
            rules: vec![
                rule(Some("exact-path-rules"), vec![exact("/foo", "foo-exact")]),
                rule(
                    Some("prefix-path-rules"),
                    vec![
                        prefix("/foo", "foo-prefix"),
                        prefix("/aaa/bbb", "aaa-slash-bbb-prefix"),
                        prefix("/aaa", "aaa-prefix"),
                    ],
                ),
                rule(
                    Some("mixed-path-rules"),
                    vec![prefix("/foo", "foo-prefix"), exact("/foo", "foo-exact")],
                ),
                rule(
                    Some("trailing-slash-path-rules"),
                    vec![
                        prefix("/aaa/bbb/", "aaa-slash-bbb-slash-prefix"),
                        exact("/foo/", "foo-slash-exact"),
                    ],
                ),
            ],
            default_backend: None,
        }
    }

    fn conformance(host: &str, path: &str) -> Option<&'static str> {
        route(&conformance_path_rules(), host, path)
    }

    #[test]
    fn conformance_exact_rule_sends_matching_request_to_its_backend() {
        assert_eq!(conformance("exact-path-rules", "/foo"), Some("foo-exact"));
    }

    #[test]
    fn conformance_exact_rule_rejects_request_with_trailing_slash() {
        assert_eq!(conformance("exact-path-rules", "/foo/"), None);
    }

    #[test]
    fn conformance_exact_rule_is_case_sensitive() {
        assert_eq!(conformance("exact-path-rules", "/FOO"), None);
    }

    #[test]
    fn conformance_exact_rule_rejects_other_label() {
        assert_eq!(conformance("exact-path-rules", "/bar"), None);
    }

    #[test]
    fn conformance_prefix_rule_sends_matching_request_to_its_backend() {
        assert_eq!(conformance("prefix-path-rules", "/foo"), Some("foo-prefix"));
    }

    #[test]
    fn conformance_prefix_rule_accepts_request_trailing_slash() {
        assert_eq!(
            conformance("prefix-path-rules", "/foo/"),
            Some("foo-prefix")
        );
    }

    #[test]
    fn conformance_prefix_rule_is_case_sensitive() {
        assert_eq!(conformance("prefix-path-rules", "/FOO"), None);
    }

    #[test]
    fn conformance_prefix_rule_matches_several_labels_and_prefers_the_longest() {
        assert_eq!(
            conformance("prefix-path-rules", "/aaa/bbb"),
            Some("aaa-slash-bbb-prefix")
        );
    }

    #[test]
    fn conformance_prefix_rule_matches_subpaths_of_the_longest() {
        assert_eq!(
            conformance("prefix-path-rules", "/aaa/bbb/ccc"),
            Some("aaa-slash-bbb-prefix")
        );
    }

    #[test]
    fn conformance_shorter_prefix_takes_its_other_subpaths() {
        assert_eq!(
            conformance("prefix-path-rules", "/aaa/ccc"),
            Some("aaa-prefix")
        );
    }

    #[test]
    fn conformance_prefix_rule_does_not_match_inside_a_label() {
        assert_eq!(conformance("prefix-path-rules", "/aaaccc"), None);
    }

    #[test]
    fn conformance_mixed_rules_prefer_exact() {
        assert_eq!(conformance("mixed-path-rules", "/foo"), Some("foo-exact"));
    }

    #[test]
    fn conformance_prefix_rule_trailing_slash_is_ignored_for_request_without_it() {
        assert_eq!(
            conformance("trailing-slash-path-rules", "/aaa/bbb"),
            Some("aaa-slash-bbb-slash-prefix")
        );
    }

    #[test]
    fn conformance_prefix_rule_trailing_slash_matches_request_with_it() {
        assert_eq!(
            conformance("trailing-slash-path-rules", "/aaa/bbb/"),
            Some("aaa-slash-bbb-slash-prefix")
        );
    }

    #[test]
    fn conformance_exact_rule_with_trailing_slash_rejects_request_without_it() {
        assert_eq!(conformance("trailing-slash-path-rules", "/foo"), None);
    }

    // ---- ingress-controller-conformance: features/host_rules.feature, and the docs'
    // ---- hostname-wildcard table / IngressRule.Host doc.

    fn conformance_host_rules() -> IngressView<&'static str> {
        IngressView {
            rules: vec![
                rule(Some("*.foo.com"), vec![prefix("/", "wildcard-foo-com")]),
                rule(Some("foo.bar.com"), vec![prefix("/", "foo-bar-com")]),
            ],
            default_backend: None,
        }
    }

    #[test]
    fn conformance_precise_host_sends_traffic_to_its_backend() {
        assert_eq!(
            route(&conformance_host_rules(), "foo.bar.com", "/"),
            Some("foo-bar-com")
        );
    }

    #[test]
    fn conformance_precise_host_does_not_match_a_sibling_host() {
        assert_eq!(
            route(&conformance_host_rules(), "subdomain.bar.com", "/"),
            None
        );
    }

    #[test]
    fn conformance_wildcard_host_matches_one_label_on_the_shared_suffix() {
        assert_eq!(
            route(&conformance_host_rules(), "bar.foo.com", "/"),
            Some("wildcard-foo-com")
        );
    }

    #[test]
    fn conformance_wildcard_host_does_not_match_two_labels() {
        assert_eq!(
            route(&conformance_host_rules(), "baz.bar.foo.com", "/"),
            None
        );
    }

    #[test]
    fn conformance_wildcard_host_does_not_match_the_bare_suffix() {
        assert_eq!(route(&conformance_host_rules(), "foo.com", "/"), None);
    }

    #[test]
    fn wildcard_host_does_not_match_an_empty_label() {
        assert_eq!(route(&conformance_host_rules(), ".foo.com", "/"), None);
    }

    // ---- ingress-controller-conformance: features/default_backend.feature ----

    #[test]
    fn conformance_ingress_without_rules_sends_everything_to_the_default_backend() {
        let v = IngressView {
            rules: vec![],
            default_backend: Some("echo-service"),
        };
        for (host, path) in [
            ("my-host", "/"),
            ("my-host", "/sub-path"),
            ("some-host", "/"),
            ("", "/resource"),
            ("some-host", "/resource"),
        ] {
            assert_eq!(route(&v, host, path), Some("echo-service"), "{host}{path}");
        }
    }

    // ---- clb-ingress's documented choices where the sources are silent. ----

    #[test]
    fn precise_host_beats_wildcard_and_host_less_rules() {
        let v = IngressView {
            rules: vec![
                rule(None, vec![prefix("/", "any")]),
                rule(Some("*.foo.com"), vec![prefix("/", "wild")]),
                rule(Some("a.foo.com"), vec![prefix("/", "precise")]),
            ],
            default_backend: None,
        };
        assert_eq!(route(&v, "a.foo.com", "/x"), Some("precise"));
        assert_eq!(route(&v, "b.foo.com", "/x"), Some("wild"));
        assert_eq!(route(&v, "other.org", "/x"), Some("any"));
    }

    #[test]
    fn chosen_precise_host_does_not_fall_back_to_wildcard_or_host_less_paths() {
        let v = IngressView {
            rules: vec![
                rule(None, vec![prefix("/", "any")]),
                rule(Some("*.foo.com"), vec![prefix("/", "wild")]),
                rule(Some("a.foo.com"), vec![exact("/only", "precise")]),
            ],
            default_backend: Some("default"),
        };
        assert_eq!(route(&v, "a.foo.com", "/other"), Some("default"));
    }

    #[test]
    fn chosen_wildcard_host_does_not_fall_back_to_host_less_paths() {
        let v = IngressView {
            rules: vec![
                rule(None, vec![prefix("/", "any")]),
                rule(Some("*.foo.com"), vec![exact("/only", "wild")]),
            ],
            default_backend: None,
        };
        assert_eq!(route(&v, "b.foo.com", "/other"), None);
    }

    #[test]
    fn host_without_paths_still_claims_its_requests() {
        let v = IngressView {
            rules: vec![
                rule(None, vec![prefix("/", "any")]),
                rule(Some("quiet.example.com"), vec![]),
            ],
            default_backend: Some("default"),
        };
        assert_eq!(route(&v, "quiet.example.com", "/"), Some("default"));
        assert_eq!(route(&v, "loud.example.com", "/"), Some("any"));
    }

    #[test]
    fn paths_of_every_rule_with_the_chosen_host_are_merged() {
        let v = IngressView {
            rules: vec![
                rule(Some("a.com"), vec![prefix("/x", "first")]),
                rule(Some("b.com"), vec![prefix("/y", "other-host")]),
                rule(Some("a.com"), vec![prefix("/y", "second")]),
            ],
            default_backend: None,
        };
        assert_eq!(route(&v, "a.com", "/x/1"), Some("first"));
        assert_eq!(route(&v, "a.com", "/y/1"), Some("second"));
    }

    #[test]
    fn request_host_is_lower_cased_and_loses_port_and_trailing_dot() {
        let v = IngressView {
            rules: vec![rule(Some("foo.bar.com"), vec![prefix("/", "foo")])],
            default_backend: None,
        };
        assert_eq!(route(&v, "FOO.Bar.com:8080", "/"), Some("foo"));
        assert_eq!(route(&v, "foo.bar.com.", "/"), Some("foo"));
        assert_eq!(route(&v, "foo.bar.co", "/"), None);
    }

    #[test]
    fn query_string_and_fragment_are_not_part_of_the_path() {
        let v = paths_only(vec![exact("/foo", "foo")]);
        assert_eq!(at(&v, "/foo?x=1"), Some("foo"));
        assert_eq!(at(&v, "/foo#top"), Some("foo"));
        assert_eq!(at(&v, "/foo/?x=1"), None);
    }

    #[test]
    fn dot_and_star_in_paths_are_literal() {
        let v = paths_only(vec![exact("/a.b", "dot"), prefix("/c*", "star")]);
        assert_eq!(at(&v, "/a.b"), Some("dot"));
        assert_eq!(at(&v, "/aXb"), None);
        assert_eq!(at(&v, "/c*/d"), Some("star"));
        assert_eq!(at(&v, "/cc"), None);
    }

    #[test]
    fn dot_and_star_in_hosts_are_literal() {
        let v = IngressView {
            rules: vec![rule(Some("a.b.com"), vec![prefix("/", "a")])],
            default_backend: None,
        };
        assert_eq!(route(&v, "axb.com", "/"), None);
        assert_eq!(route(&v, "*.b.com", "/"), None);
    }

    #[test]
    fn request_paths_are_percent_decoded_slash_merged_and_dot_resolved() {
        let v = paths_only(vec![prefix("/foo", "foo"), exact("/", "root")]);
        for p in [
            "/%66oo",
            "/%66%6F%6f",
            "//foo",
            "/foo//bar",
            "/./foo",
            "/x/../foo",
            "/x/%2E%2E/foo",
            "/x%2F..%2Ffoo",
            "/foo/bar/..",
            "/%2Ffoo",
        ] {
            assert_eq!(at(&v, p), Some("foo"), "{p}");
        }
        for p in ["/foo/..", "/foo/../", "//", "/.", "/%2E", "/x/.."] {
            assert_eq!(at(&v, p), Some("root"), "{p}");
        }
    }

    #[test]
    fn normalised_path_keeps_a_trailing_slash_after_an_empty_dot_or_dot_dot_segment() {
        let path = |t: &str| request_path(t).map(|p| String::from_utf8_lossy(&p).into_owned());
        assert_eq!(path("/a/b/.."), Ok("/a/".to_owned()));
        assert_eq!(path("/a/."), Ok("/a/".to_owned()));
        assert_eq!(path("/a//"), Ok("/a/".to_owned()));
        assert_eq!(path("/a/b"), Ok("/a/b".to_owned()));
        assert_eq!(path("/a/.b/..c"), Ok("/a/.b/..c".to_owned()));
    }

    #[test]
    fn decoded_percent_hash_and_question_mark_are_ordinary_path_characters() {
        let v = paths_only(vec![
            exact("/a?b", "q"),
            exact("/a#b", "h"),
            exact("/a%41", "p"),
        ]);
        assert_eq!(at(&v, "/a%3Fb"), Some("q"));
        assert_eq!(at(&v, "/a%3fb?x=1"), Some("q"));
        assert_eq!(at(&v, "/a%23b"), Some("h"));
        assert_eq!(at(&v, "/a%2541"), Some("p"));
        assert_eq!(at(&v, "/a?b"), None);
    }

    #[test]
    fn unnormalisable_requests_are_refused_even_with_a_default_backend() {
        let v = IngressView {
            rules: vec![rule(None, vec![prefix("/", "root")])],
            default_backend: Some("default"),
        };
        for p in [
            "/..",
            "/a/../..",
            "/%2E%2E/a",
            "/a%",
            "/a%4",
            "/a%zz",
            "/a%00",
            "a",
            "*",
        ] {
            assert_eq!(route_request(&v, "a.com", p), Err(BadRequest), "{p}");
            assert_eq!(route(&v, "a.com", p), None, "{p}");
        }
        assert_eq!(route_request(&v, "a.com", "/a%4?x"), Err(BadRequest));
        assert_eq!(route_request(&v, "a.com", "/ok?%zz"), Ok(Some("root")));
    }

    #[test]
    fn rule_paths_are_compared_as_written_not_normalised() {
        let v = paths_only(vec![exact("//a", "double"), prefix("/b/./c", "dot")]);
        assert_eq!(at(&v, "//a"), None);
        assert_eq!(at(&v, "/b/./c"), None);
        assert_eq!(at(&v, "/b/c"), None);
    }

    #[test]
    fn ipv6_literal_host_keeps_its_brackets_and_loses_its_port() {
        assert_eq!(normalize_host("[::1]:8080"), "[::1]");
        assert_eq!(normalize_host("A.com:x"), "a.com");
        assert_eq!(normalize_host("a.com.."), "a.com.");
    }

    // ---- Trailing-slash precedence (networking/v1: the longest matching path wins) ----

    #[test]
    fn prefix_with_trailing_slash_beats_the_same_prefix_without_it_in_either_order() {
        for paths in [
            vec![prefix("/foo", "short"), prefix("/foo/", "long")],
            vec![prefix("/foo/", "long"), prefix("/foo", "short")],
        ] {
            let v = paths_only(paths);
            for p in ["/foo", "/foo/", "/foo/x", "/foo//x"] {
                assert_eq!(at(&v, p), Some("long"), "{p}");
            }
            assert_eq!(at(&v, "/foox"), None);
        }
    }

    #[test]
    fn exact_still_beats_a_prefix_with_a_trailing_slash_of_the_same_path() {
        let v = paths_only(vec![prefix("/foo/", "prefix"), exact("/foo", "exact")]);
        assert_eq!(at(&v, "/foo"), Some("exact"));
        assert_eq!(at(&v, "/foo/"), Some("prefix"));
    }

    #[test]
    fn the_same_prefix_twice_goes_to_the_first_in_rule_order() {
        let v = paths_only(vec![prefix("/foo/", "older"), prefix("/foo/", "newer")]);
        assert_eq!(at(&v, "/foo/x"), Some("older"));
    }

    #[test]
    fn equal_exact_paths_go_to_the_first_in_rule_order() {
        let v = IngressView {
            rules: vec![
                rule(None, vec![exact("/e", "older")]),
                rule(None, vec![exact("/e", "newer")]),
            ],
            default_backend: None,
        };
        assert_eq!(at(&v, "/e"), Some("older"));
    }

    #[test]
    fn longer_exact_path_beats_shorter_prefix_and_vice_versa() {
        let v = paths_only(vec![exact("/a", "exact-a"), prefix("/a/b", "prefix-ab")]);
        assert_eq!(at(&v, "/a"), Some("exact-a"));
        assert_eq!(at(&v, "/a/b/c"), Some("prefix-ab"));
    }

    #[test]
    fn unmatched_host_goes_to_default_backend_or_404() {
        let mut v = IngressView {
            rules: vec![rule(Some("a.com"), vec![prefix("/", "a")])],
            default_backend: None,
        };
        assert_eq!(route(&v, "b.com", "/"), None);
        v.default_backend = Some("default");
        assert_eq!(route(&v, "b.com", "/"), Some("default"));
    }
}
