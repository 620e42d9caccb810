//! The heart of clb-ingress: choose CLB domains and URL rules so that CLB's own matching
//! (`matching::clb`) gives exactly the Ingress answer (`matching::ingress`) for every request.
//!
//! How the Ingress semantics map onto CLB (docs/routing.md explains it for users):
//! - Precise host `a.com` -> exact CLB domain `a.com`. Wildcard host `*.a.com` (exactly one
//!   label) -> regex domain `~^[^.]+\.a\.com$`, because a CLB wildcard matches any depth.
//!   Single-label wildcards can never both match one host, so regex order does not matter.
//! - Host-less rules and `defaultBackend` live in a reserved catch-all domain that is the
//!   listener's DefaultServer, so an unmatched Host never lands on some other host's rules.
//!   Without either, the catch-all domain holds one target-less placeholder rule (no backend).
//! - `Exact /p` -> `=/p`. `Prefix /p` (element-wise, trailing slash ignored) -> `=/p` plus the
//!   plain prefix `/p/`; `Prefix /` -> `/`. CLB's longest string prefix then equals the Ingress
//!   longest element-wise match, and `=` beats prefixes as Exact beats Prefix.
//! - An Exact path ending in `/` would make CLB answer the path without the slash with a 301;
//!   a filler rule `=/p` carries the Ingress answer for `/p` instead.
//! - `defaultBackend` becomes the `/` rule of every domain that has no `Prefix /`.

use crate::matching::ingress::{IngressView, PathKind};
use std::collections::BTreeMap;

/// The reserved domain that catches requests whose Host matches no Ingress host.
/// `.invalid` is reserved (RFC 2606), so no real host can collide with it.
pub const CATCH_ALL_DOMAIN: &str = "unmatched.clb-ingress.invalid";
/// The placeholder URL of the catch-all domain when nothing should catch unmatched hosts.
pub const NO_ROUTE_URL: &str = "=/.clb-ingress/no-route";
/// CLB limits on domain and URL length (clb-api.md §7.1, §7.4).
pub const MAX_DOMAIN_LEN: usize = 80;
pub const MAX_URL_LEN: usize = 200;

/// Which Ingress host a CLB domain stands for.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum HostKey {
    /// Host-less rules and the default backend.
    CatchAll,
    Exact(String),
    /// `*.suffix`, holding the suffix.
    Wildcard(String),
}

impl HostKey {
    pub fn from_host(host: Option<&str>) -> Self {
        match host {
            None => HostKey::CatchAll,
            Some(h) => match h.strip_prefix("*.") {
                Some(suffix) => HostKey::Wildcard(suffix.to_string()),
                None => HostKey::Exact(h.to_string()),
            },
        }
    }

    /// The CLB domain string for this host.
    pub fn clb_domain(&self) -> String {
        match self {
            HostKey::CatchAll => CATCH_ALL_DOMAIN.to_string(),
            HostKey::Exact(h) => h.clone(),
            HostKey::Wildcard(suffix) => format!("~^[^.]+\\.{}$", suffix.replace('.', "\\.")),
        }
    }

    /// The Ingress spelling (`*` for the catch-all).
    pub fn display(&self) -> String {
        match self {
            HostKey::CatchAll => "*".to_string(),
            HostKey::Exact(h) => h.clone(),
            HostKey::Wildcard(s) => format!("*.{s}"),
        }
    }
}

/// One translated CLB domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TDomain<B> {
    pub host: HostKey,
    pub domain: String,
    pub default_server: bool,
    /// Rules sorted by URL (no URL is a regex, so CLB's order does not matter).
    pub rules: Vec<TRule<B>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TRule<B> {
    pub url: String,
    /// None: the rule exists to stop a request from falling through, and serves no target.
    pub backend: Option<B>,
}

/// Why a host or path cannot be expressed on CLB.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyntaxProblem {
    Host(String),
    Path(String),
}

/// Check that an Ingress host can be expressed as a CLB domain.
pub fn check_host(host: &str) -> Result<HostKey, SyntaxProblem> {
    let bare = host.strip_prefix("*.").unwrap_or(host);
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if bare.is_empty() || !bare.split('.').all(label_ok) {
        return Err(SyntaxProblem::Host(format!(
            "host {host:?} is not a lower-case DNS name (or `*.` followed by one)"
        )));
    }
    if host == CATCH_ALL_DOMAIN {
        return Err(SyntaxProblem::Host(format!(
            "host {host:?} is reserved by clb-ingress for unmatched hosts"
        )));
    }
    let key = HostKey::from_host(Some(host));
    let domain = key.clb_domain();
    if domain.len() > MAX_DOMAIN_LEN {
        return Err(SyntaxProblem::Host(format!(
            "host {host:?} needs the CLB domain {domain:?} of {} characters; CLB allows at most {MAX_DOMAIN_LEN}",
            domain.len()
        )));
    }
    Ok(key)
}

fn url_char_ok(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'/' | b'=' | b'?')
}

/// Strip trailing slashes of a Prefix path: the element-wise match key (`/` becomes ``).
pub fn prefix_key(path: &str) -> &str {
    path.trim_end_matches('/')
}

/// The CLB URLs an Ingress path produces (before merging), or why it cannot be expressed.
pub fn clb_urls(path: &str, kind: PathKind) -> Result<Vec<String>, SyntaxProblem> {
    if !path.starts_with('/') {
        return Err(SyntaxProblem::Path(format!(
            "path {path:?} must start with '/'"
        )));
    }
    if let Some(bad) = path.bytes().find(|b| !url_char_ok(*b)) {
        return Err(SyntaxProblem::Path(format!(
            "path {path:?} contains {:?}; CLB URLs allow only letters, digits and . - _ / = ?",
            bad as char
        )));
    }
    let urls = match kind {
        PathKind::Exact => vec![format!("={path}")],
        PathKind::Prefix => {
            let key = prefix_key(path);
            if key.is_empty() {
                vec!["/".to_string()]
            } else {
                vec![format!("={key}"), format!("{key}/")]
            }
        }
    };
    if let Some(long) = urls.iter().find(|u| u.len() > MAX_URL_LEN) {
        return Err(SyntaxProblem::Path(format!(
            "path {path:?} needs the CLB URL {long:?} of {} characters; CLB allows at most {MAX_URL_LEN}",
            long.len()
        )));
    }
    Ok(urls)
}

/// Paths of one host, first (oldest) definition of each match key kept.
struct HostPaths<B> {
    exact: BTreeMap<String, B>,
    /// Keyed by the normalised prefix (`` for `/`).
    prefix: BTreeMap<String, B>,
}

impl<B: Clone> HostPaths<B> {
    /// The Ingress answer for `path` within this host (used for filler rules).
    fn resolve(&self, path: &str, default: Option<&B>) -> Option<B> {
        if let Some(b) = self.exact.get(path) {
            return Some(b.clone());
        }
        let mut best: Option<(&str, &B)> = None;
        for (p, b) in &self.prefix {
            let hit = p.is_empty() || path == p || path.starts_with(&format!("{p}/"));
            if hit && best.is_none_or(|(bp, _)| p.len() > bp.len()) {
                best = Some((p, b));
            }
        }
        best.map(|(_, b)| b.clone()).or_else(|| default.cloned())
    }
}

/// Translate the Ingress rules of one listener into CLB domains. The input must already be
/// valid (`check_host`, `clb_urls`); invalid hosts/paths are skipped defensively.
pub fn translate<B: Clone>(view: &IngressView<B>) -> Vec<TDomain<B>> {
    let mut hosts: BTreeMap<HostKey, HostPaths<B>> = BTreeMap::new();
    for rule in &view.rules {
        let key = match rule.host.as_deref() {
            None => HostKey::CatchAll,
            Some(h) => match check_host(h) {
                Ok(k) => k,
                Err(_) => continue,
            },
        };
        let entry = hosts.entry(key).or_insert_with(|| HostPaths {
            exact: BTreeMap::new(),
            prefix: BTreeMap::new(),
        });
        for p in &rule.paths {
            if clb_urls(&p.path, p.kind).is_err() {
                continue;
            }
            let map = match p.kind {
                PathKind::Exact => &mut entry.exact,
                PathKind::Prefix => &mut entry.prefix,
            };
            let k = match p.kind {
                PathKind::Exact => p.path.clone(),
                PathKind::Prefix => prefix_key(&p.path).to_string(),
            };
            map.entry(k).or_insert_with(|| p.backend.clone());
        }
    }
    let default = view.default_backend.as_ref();
    let mut out = Vec::with_capacity(hosts.len() + 1);
    if !hosts.contains_key(&HostKey::CatchAll) && (!hosts.is_empty() || default.is_some()) {
        out.push(catch_all_without_rules(default));
    }
    for (key, paths) in &hosts {
        let mut rules: BTreeMap<String, Option<B>> = BTreeMap::new();
        for (p, b) in &paths.prefix {
            if p.is_empty() {
                rules.insert("/".to_string(), Some(b.clone()));
            } else {
                rules.insert(format!("={p}"), Some(b.clone()));
                rules.insert(format!("{p}/"), Some(b.clone()));
            }
        }
        // Exact beats Prefix at equal length: overwrite `=p` of a Prefix p.
        for (p, b) in &paths.exact {
            rules.insert(format!("={p}"), Some(b.clone()));
        }
        for e in paths.exact.keys() {
            if e.len() > 1 && e.ends_with('/') {
                let stripped = &e[..e.len() - 1];
                if !stripped.ends_with('/') && !rules.contains_key(&format!("={stripped}")) {
                    let answer = paths.resolve(stripped, default);
                    rules.insert(format!("={stripped}"), answer);
                }
            }
        }
        if let Some(d) = default {
            rules
                .entry("/".to_string())
                .or_insert_with(|| Some(d.clone()));
        }
        if rules.is_empty() {
            // A host with no paths still claims its requests: nothing may catch them.
            rules.insert(NO_ROUTE_URL.to_string(), None);
        }
        out.push(TDomain {
            host: key.clone(),
            domain: key.clb_domain(),
            default_server: *key == HostKey::CatchAll,
            rules: rules
                .into_iter()
                .map(|(url, backend)| TRule { url, backend })
                .collect(),
        });
    }
    out
}

fn catch_all_without_rules<B: Clone>(default: Option<&B>) -> TDomain<B> {
    let rule = match default {
        Some(d) => TRule {
            url: "/".to_string(),
            backend: Some(d.clone()),
        },
        None => TRule {
            url: NO_ROUTE_URL.to_string(),
            backend: None,
        },
    };
    TDomain {
        host: HostKey::CatchAll,
        domain: CATCH_ALL_DOMAIN.to_string(),
        default_server: true,
        rules: vec![rule],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::matching::ingress::{HostRules, PathRule};

    type Paths<'a> = Vec<(&'a str, PathKind, &'static str)>;

    fn view(
        rules: Vec<(Option<&str>, Paths<'_>)>,
        default: Option<&'static str>,
    ) -> IngressView<&'static str> {
        IngressView {
            rules: rules
                .into_iter()
                .map(|(h, ps)| HostRules {
                    host: h.map(str::to_string),
                    paths: ps
                        .into_iter()
                        .map(|(p, k, b)| PathRule {
                            path: p.to_string(),
                            kind: k,
                            backend: b,
                        })
                        .collect(),
                })
                .collect(),
            default_backend: default,
        }
    }

    fn urls(d: &TDomain<&'static str>) -> Vec<(String, Option<&'static str>)> {
        d.rules.iter().map(|r| (r.url.clone(), r.backend)).collect()
    }

    #[test]
    fn prefix_path_becomes_an_exact_rule_and_a_slash_terminated_prefix() {
        let out = translate(&view(
            vec![(Some("a.com"), vec![("/foo", PathKind::Prefix, "s1")])],
            None,
        ));
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].domain, CATCH_ALL_DOMAIN);
        assert!(out[0].default_server);
        assert_eq!(urls(&out[0]), vec![(NO_ROUTE_URL.to_string(), None)]);
        assert_eq!(out[1].domain, "a.com");
        assert!(!out[1].default_server);
        assert_eq!(
            urls(&out[1]),
            vec![
                ("/foo/".to_string(), Some("s1")),
                ("=/foo".to_string(), Some("s1"))
            ]
        );
    }

    #[test]
    fn exact_wins_the_shared_exact_url_over_prefix_of_same_path() {
        let out = translate(&view(
            vec![(
                Some("a.com"),
                vec![
                    ("/foo", PathKind::Prefix, "p"),
                    ("/foo", PathKind::Exact, "e"),
                ],
            )],
            None,
        ));
        assert_eq!(
            urls(&out[1]),
            vec![
                ("/foo/".to_string(), Some("p")),
                ("=/foo".to_string(), Some("e"))
            ]
        );
    }

    #[test]
    fn wildcard_host_becomes_a_single_label_regex_domain() {
        assert_eq!(
            HostKey::from_host(Some("*.foo.com")).clb_domain(),
            r"~^[^.]+\.foo\.com$"
        );
    }

    #[test]
    fn default_backend_fills_the_root_of_every_domain_and_the_catch_all() {
        let out = translate(&view(
            vec![(Some("a.com"), vec![("/x", PathKind::Exact, "x")])],
            Some("d"),
        ));
        assert_eq!(urls(&out[0]), vec![("/".to_string(), Some("d"))]);
        assert_eq!(
            urls(&out[1]),
            vec![("/".to_string(), Some("d")), ("=/x".to_string(), Some("x"))]
        );
    }

    #[test]
    fn exact_path_with_trailing_slash_gets_a_filler_for_the_path_without_it() {
        let out = translate(&view(
            vec![(
                Some("a.com"),
                vec![
                    ("/a/", PathKind::Exact, "e"),
                    ("/", PathKind::Prefix, "root"),
                ],
            )],
            None,
        ));
        assert_eq!(
            urls(&out[1]),
            vec![
                ("/".to_string(), Some("root")),
                ("=/a".to_string(), Some("root")),
                ("=/a/".to_string(), Some("e"))
            ]
        );
    }

    #[test]
    fn oldest_definition_of_a_path_wins() {
        let out = translate(&view(
            vec![
                (Some("a.com"), vec![("/x", PathKind::Prefix, "old")]),
                (Some("a.com"), vec![("/x/", PathKind::Prefix, "new")]),
            ],
            None,
        ));
        assert_eq!(
            urls(&out[1]),
            vec![
                ("/x/".to_string(), Some("old")),
                ("=/x".to_string(), Some("old"))
            ]
        );
    }

    #[test]
    fn hosts_and_paths_outside_clb_syntax_are_refused_with_the_reason() {
        assert!(matches!(check_host("Foo.com"), Err(SyntaxProblem::Host(_))));
        assert!(matches!(check_host("a..com"), Err(SyntaxProblem::Host(_))));
        assert!(matches!(
            check_host(CATCH_ALL_DOMAIN),
            Err(SyntaxProblem::Host(_))
        ));
        let long = format!("{}.com", "a".repeat(60));
        assert!(check_host(&long).is_ok());
        let long_wild = format!("*.{}.{}.com", "a".repeat(35), "b".repeat(35));
        let err = check_host(&long_wild).unwrap_err();
        assert!(
            matches!(&err, SyntaxProblem::Host(m) if m.contains("at most 80")),
            "{err:?}"
        );
        assert!(
            matches!(clb_urls("/a b", PathKind::Prefix), Err(SyntaxProblem::Path(m)) if m.contains("' '"))
        );
        assert!(matches!(
            clb_urls("/~x", PathKind::Exact),
            Err(SyntaxProblem::Path(_))
        ));
        assert!(
            matches!(clb_urls(&format!("/{}", "a".repeat(199)), PathKind::Exact), Err(SyntaxProblem::Path(m)) if m.contains("at most 200"))
        );
        assert_eq!(clb_urls("/", PathKind::Prefix).unwrap(), vec!["/"]);
    }
}
