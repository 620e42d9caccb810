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
//! - Two Prefix paths differing only by trailing slashes (`/foo`, `/foo/`) make the same CLB
//!   rules; the longer string's backend serves them (it has priority for every request both
//!   match), then the older definition's.
//!
//! Rule economy ([`Economy`], used by the model and by [`translate`]): a path whose every
//! request the rest of its host already answers with the same backend makes no rules, and a
//! one-rule host domain identical to the catch-all is left to the catch-all. Both keep every
//! Ingress answer (the dual-matcher property test checks it); [`cost_report`] says what each
//! path costs and why.

use crate::matching::ingress::{IngressView, PathKind};

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

/// An Ingress host as written, borrowed; orders exactly like the `HostKey` it stands for
/// (`*.suffix` hosts share the `*.` prefix, so they order by suffix).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum HostRef<'s> {
    CatchAll,
    Exact(&'s str),
    /// The whole host, `*.suffix`.
    Wildcard(&'s str),
}

impl<'s> HostRef<'s> {
    /// Same mapping as `HostKey::from_host`.
    pub(crate) fn of(host: Option<&'s str>) -> Self {
        match host {
            None => HostRef::CatchAll,
            Some(h) if h.starts_with("*.") => HostRef::Wildcard(h),
            Some(h) => HostRef::Exact(h),
        }
    }

    /// The Ingress spelling (`*` for the catch-all), as `HostKey::display`.
    pub(crate) fn display(self) -> &'s str {
        match self {
            HostRef::CatchAll => "*",
            HostRef::Exact(h) | HostRef::Wildcard(h) => h,
        }
    }

    fn to_key(self) -> HostKey {
        match self {
            HostRef::CatchAll => HostKey::CatchAll,
            HostRef::Exact(h) => HostKey::Exact(h.to_string()),
            HostRef::Wildcard(h) => HostKey::Wildcard(h[2..].to_string()),
        }
    }

    /// Same string as `HostKey::clb_domain`.
    fn clb_domain(self) -> String {
        match self {
            HostRef::CatchAll => CATCH_ALL_DOMAIN.to_string(),
            HostRef::Exact(h) => h.to_string(),
            HostRef::Wildcard(h) => wildcard_domain(&h[2..]),
        }
    }
}

fn wildcard_domain(suffix: &str) -> String {
    format!("~^[^.]+\\.{}$", suffix.replace('.', "\\."))
}

/// Label used for the explicit health-check host of a wildcard rule.
pub const HEALTH_CHECK_LABEL: &str = "health-check";

/// CLB's health-check domain cannot be a regex or a wildcard: for a rule on our wildcard regex
/// domain (`~^[^.]+\.suffix$`) or a native wildcard domain (`*.suffix`) this is the literal
/// host its health checks send (`health-check.suffix`, which the domain matches). None for any
/// other domain, or when the host would be longer than CLB allows.
pub fn health_check_domain(domain: &str) -> Option<String> {
    let suffix = match domain.strip_prefix("*.") {
        // A native CLB wildcard (class parameter `wildcardHosts: Native`): no more `*`.
        Some(s) if !s.is_empty() && !s.contains('*') && !s.starts_with('.') => s.to_string(),
        Some(_) => return None,
        None => {
            // `~^[^.]+\.suffix$` (an Ingress wildcard) or `~^.+\.suffix$` (a Gateway API
            // wildcard that contains another one).
            let (escaped, form): (&str, fn(&str) -> String) =
                match domain.strip_prefix("~^[^.]+\\.") {
                    Some(rest) => (rest, wildcard_domain),
                    None => (domain.strip_prefix("~^.+\\.")?, deep_wildcard_domain),
                };
            let escaped = escaped.strip_suffix('$')?;
            let suffix = escaped.replace("\\.", ".");
            if suffix.is_empty() || suffix.contains('\\') || form(&suffix) != domain {
                return None;
            }
            suffix
        }
    };
    let host = format!("{HEALTH_CHECK_LABEL}.{suffix}");
    (host.len() <= MAX_DOMAIN_LEN).then_some(host)
}

/// The regex domain of a wildcard over one or more labels (`*.suffix` in Gateway API).
pub fn deep_wildcard_domain(suffix: &str) -> String {
    format!("~^.+\\.{}$", suffix.replace('.', "\\."))
}

/// The length of `wildcard_domain(suffix)` without building it.
fn wildcard_domain_len(suffix: &str) -> usize {
    "~^[^.]+\\.$".len() + suffix.len() + suffix.bytes().filter(|&b| b == b'.').count()
}

/// A lower-case DNS label: 1-63 of `a-z 0-9 -`, not starting or ending with `-`.
pub(crate) fn dns_label_ok(l: &str) -> bool {
    !l.is_empty()
        && l.len() <= 63
        && l.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !l.starts_with('-')
        && !l.ends_with('-')
}

/// `check_host` without building the key (no allocation unless the host is refused).
pub(crate) fn check_host_syntax(host: &str) -> Result<(), SyntaxProblem> {
    let bare = host.strip_prefix("*.").unwrap_or(host);
    if bare.is_empty() || !bare.split('.').all(dns_label_ok) {
        return Err(SyntaxProblem::Host(format!(
            "host {host:?} is not a lower-case DNS name (or `*.` followed by one)"
        )));
    }
    if host == CATCH_ALL_DOMAIN {
        return Err(SyntaxProblem::Host(format!(
            "host {host:?} is reserved by clb-ingress for unmatched hosts"
        )));
    }
    let domain_len = match host.strip_prefix("*.") {
        Some(suffix) => wildcard_domain_len(suffix),
        None => host.len(),
    };
    if domain_len > MAX_DOMAIN_LEN {
        let domain = HostKey::from_host(Some(host)).clb_domain();
        return Err(SyntaxProblem::Host(format!(
            "host {host:?} needs the CLB domain {domain:?} of {} characters; CLB allows at most {MAX_DOMAIN_LEN}",
            domain.len()
        )));
    }
    Ok(())
}

/// Check a class's `catchAllDomain`: an exact lower-case DNS name CLB accepts as a domain.
pub fn check_catch_all_domain(domain: &str) -> Result<(), String> {
    if domain == CATCH_ALL_DOMAIN {
        return Ok(());
    }
    if domain.starts_with("*.") {
        return Err(format!("{domain:?} is a wildcard, not an exact name"));
    }
    check_host_syntax(domain).map_err(|(SyntaxProblem::Host(m) | SyntaxProblem::Path(m))| m)
}

/// Check that an Ingress host can be expressed as a CLB domain.
pub fn check_host(host: &str) -> Result<HostKey, SyntaxProblem> {
    check_host_syntax(host)?;
    Ok(HostKey::from_host(Some(host)))
}

fn url_char_ok(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'/' | b'=' | b'?')
}

/// Strip trailing slashes of a Prefix path: the element-wise match key (`/` becomes ``).
pub fn prefix_key(path: &str) -> &str {
    path.trim_end_matches('/')
}

fn urls_of(path: &str, kind: PathKind) -> Vec<String> {
    match kind {
        PathKind::Exact => vec![format!("={path}")],
        PathKind::Prefix => {
            let key = prefix_key(path);
            if key.is_empty() {
                vec!["/".to_string()]
            } else {
                vec![format!("={key}"), format!("{key}/")]
            }
        }
    }
}

/// `clb_urls` without building the URLs (no allocation unless the path is refused).
pub(crate) fn check_path(path: &str, kind: PathKind) -> Result<(), SyntaxProblem> {
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
    // Every URL of a path has the same length: `=p` (Exact), `=key` and `key/`, or `/`.
    let longest = match kind {
        PathKind::Exact => path.len() + 1,
        PathKind::Prefix => match prefix_key(path).len() {
            0 => 1,
            n => n + 1,
        },
    };
    if longest > MAX_URL_LEN {
        let urls = urls_of(path, kind);
        let long = urls
            .iter()
            .find(|u| u.len() > MAX_URL_LEN)
            .expect("a URL is over the limit");
        return Err(SyntaxProblem::Path(format!(
            "path {path:?} needs the CLB URL {long:?} of {} characters; CLB allows at most {MAX_URL_LEN}",
            long.len()
        )));
    }
    Ok(())
}

/// The CLB URLs an Ingress path produces (before merging), or why it cannot be expressed.
pub fn clb_urls(path: &str, kind: PathKind) -> Result<Vec<String>, SyntaxProblem> {
    check_path(path, kind)?;
    Ok(urls_of(path, kind))
}

/// One translated CLB domain, with the host borrowed from the input.
#[derive(Debug, Clone)]
pub(crate) struct TDomainRef<'s, B> {
    pub host: HostRef<'s>,
    pub domain: String,
    pub default_server: bool,
    pub rules: Vec<TRule<B>>,
}

/// The Ingress answer for `path` within one host (used for filler rules). `exact` and `prefix`
/// are (match key, backend), sorted by key, one entry per key.
fn resolve_in_host<B: Clone>(
    exact: &[(&str, &B)],
    prefix: &[(&str, &B)],
    path: &str,
    default: Option<&B>,
) -> Option<B> {
    if let Ok(i) = exact.binary_search_by(|(k, _)| (*k).cmp(path)) {
        return Some(exact[i].1.clone());
    }
    let mut best: Option<(&str, &B)> = None;
    for &(p, b) in prefix {
        let hit = p.is_empty()
            || path == p
            || (path.len() > p.len() && path.starts_with(p) && path.as_bytes()[p.len()] == b'/');
        if hit && best.is_none_or(|(bp, _)| p.len() > bp.len()) {
            best = Some((p, b));
        }
    }
    best.map(|(_, b)| b.clone()).or_else(|| default.cloned())
}

/// Which redundant CLB rules a translation leaves out. Each cut keeps CLB's answer equal to
/// the Ingress answer for every request (docs/routing.md, "What each path costs").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Economy {
    /// Leave out a path when the rest of its host answers all its requests with the same
    /// backend: a `Prefix` whose parent (the longest shorter `Prefix` containing it, else the
    /// default backend) has its backend, an `Exact` whose path the rest answers alike.
    pub redundant_paths: bool,
    /// Leave out a host's domain when it holds exactly one rule, identical (URL and backend)
    /// to the catch-all domain's only rule, and no wildcard host covers the host: its requests
    /// then reach the catch-all (the listener's default domain) and get the same answer.
    /// Only for listeners where a domain carries nothing else (HTTP: no certificate).
    pub catch_all_copies: bool,
}

impl Economy {
    /// No cut: every path and host makes its rules (an upper bound of the cost).
    pub const NONE: Economy = Economy {
        redundant_paths: false,
        catch_all_copies: false,
    };
    /// Every cut (HTTP listeners).
    pub const FULL: Economy = Economy {
        redundant_paths: true,
        catch_all_copies: true,
    };
}

/// Translate rules given as (host, [(path, kind, backend)]), oldest first; hosts and paths
/// outside CLB syntax are skipped (as `translate` does). No rule economy: the upper bound.
pub(crate) fn translate_rules<'s, 'b, B, R, P>(
    rules: R,
    default: Option<&B>,
) -> Vec<TDomainRef<'s, B>>
where
    B: Clone + 'b,
    R: IntoIterator<Item = (Option<&'s str>, P)>,
    P: IntoIterator<Item = (&'s str, PathKind, &'b B)>,
{
    translate_rules_impl(rules, default, None)
}

/// `translate_rules` with the cuts of `economy`; backends are compared with `==`.
pub(crate) fn translate_rules_with<'s, 'b, B, R, P>(
    rules: R,
    default: Option<&B>,
    economy: Economy,
) -> Vec<TDomainRef<'s, B>>
where
    B: Clone + PartialEq + 'b,
    R: IntoIterator<Item = (Option<&'s str>, P)>,
    P: IntoIterator<Item = (&'s str, PathKind, &'b B)>,
{
    translate_rules_impl(rules, default, Some((economy, B::eq as fn(&B, &B) -> bool)))
}

/// How a translation with rule economy compares backends.
type SameBackend<B> = fn(&B, &B) -> bool;

fn translate_rules_impl<'s, 'b, B, R, P>(
    rules: R,
    default: Option<&B>,
    economy: Option<(Economy, SameBackend<B>)>,
) -> Vec<TDomainRef<'s, B>>
where
    B: Clone + 'b,
    R: IntoIterator<Item = (Option<&'s str>, P)>,
    P: IntoIterator<Item = (&'s str, PathKind, &'b B)>,
{
    let mut hosts: Vec<HostRef<'s>> = Vec::new();
    // (host, kind, match key, path length as written, backend) in input order. Of the paths
    // sharing a key, the longest as written wins (`Prefix /foo/` over `Prefix /foo`,
    // networking/v1: "the longest matching path is given priority"), then the first defined.
    let mut entries: Vec<(HostRef<'s>, PathKind, &'s str, usize, &'b B)> = Vec::new();
    for (host, paths) in rules {
        let key = match host {
            None => HostRef::CatchAll,
            Some(h) => {
                if check_host_syntax(h).is_err() {
                    continue;
                }
                HostRef::of(Some(h))
            }
        };
        hosts.push(key);
        for (path, kind, b) in paths {
            if check_path(path, kind).is_err() {
                continue;
            }
            let k = match kind {
                PathKind::Exact => path,
                PathKind::Prefix => prefix_key(path),
            };
            entries.push((key, kind, k, path.len(), b));
        }
    }
    hosts.sort_unstable();
    hosts.dedup();
    // Stable sort, longest written path first within a key, then keep the first of each key:
    // the longest, and of equal ones the oldest definition.
    entries.sort_by(|a, b| (a.0, a.1, a.2, b.3).cmp(&(b.0, b.1, b.2, a.3)));
    entries.dedup_by(|later, earlier| {
        (later.0, later.1, later.2) == (earlier.0, earlier.1, earlier.2)
    });

    let mut out = Vec::with_capacity(hosts.len() + 1);
    if hosts.first() != Some(&HostRef::CatchAll) && (!hosts.is_empty() || default.is_some()) {
        out.push(catch_all_without_rules(default));
    }
    let mut exact: Vec<(&str, &B)> = Vec::new();
    let mut prefix: Vec<(&str, &B)> = Vec::new();
    let mut at = 0;
    for &key in &hosts {
        exact.clear();
        prefix.clear();
        while at < entries.len() && entries[at].0 == key {
            let (_, kind, k, _, b) = entries[at];
            match kind {
                PathKind::Exact => exact.push((k, b)),
                PathKind::Prefix => prefix.push((k, b)),
            }
            at += 1;
        }
        if let Some((_, eq)) = economy.filter(|(e, _)| e.redundant_paths) {
            drop_redundant_paths(&mut exact, &mut prefix, default, eq);
        }
        // (url, precedence, backend): for one URL the lowest precedence wins. Exact beats
        // Prefix at equal length (the `=p` of a Prefix p); fillers and the default backend's
        // `/` only fill URLs nothing else has.
        let mut urls: Vec<(String, u8, Option<B>)> =
            Vec::with_capacity(2 * prefix.len() + 2 * exact.len() + 1);
        for &(p, b) in &prefix {
            if p.is_empty() {
                urls.push(("/".to_string(), 1, Some(b.clone())));
            } else {
                urls.push((format!("={p}"), 1, Some(b.clone())));
                urls.push((format!("{p}/"), 1, Some(b.clone())));
            }
        }
        for &(p, b) in &exact {
            urls.push((format!("={p}"), 0, Some(b.clone())));
        }
        for &(e, _) in &exact {
            if e.len() > 1 && e.ends_with('/') {
                let stripped = &e[..e.len() - 1];
                let has_rule = |keys: &[(&str, &B)]| {
                    keys.binary_search_by(|(k, _)| (*k).cmp(stripped)).is_ok()
                };
                if !stripped.ends_with('/') && !has_rule(&exact) && !has_rule(&prefix) {
                    let answer = resolve_in_host(&exact, &prefix, stripped, default);
                    urls.push((format!("={stripped}"), 2, answer));
                }
            }
        }
        if let Some(d) = default {
            urls.push(("/".to_string(), 3, Some(d.clone())));
        }
        if urls.is_empty() {
            // A host with no paths still claims its requests: nothing may catch them.
            urls.push((NO_ROUTE_URL.to_string(), 0, None));
        }
        urls.sort_unstable_by(|a, b| (a.0.as_str(), a.1).cmp(&(b.0.as_str(), b.1)));
        urls.dedup_by(|later, earlier| later.0 == earlier.0);
        out.push(TDomainRef {
            host: key,
            domain: key.clb_domain(),
            default_server: key == HostRef::CatchAll,
            rules: urls
                .into_iter()
                .map(|(url, _, backend)| TRule { url, backend })
                .collect(),
        });
    }
    if let Some((_, eq)) = economy.filter(|(e, _)| e.catch_all_copies) {
        drop_catch_all_copies(&mut out, eq);
    }
    out
}

/// The host's answer for `path` from its Prefix paths and the default backend alone.
fn prefix_answer<'b, B>(
    prefix: &[(&str, &'b B)],
    path: &str,
    default: Option<&'b B>,
) -> Option<&'b B> {
    prefix
        .iter()
        .filter(|(p, _)| {
            p.is_empty()
                || path == *p
                || (path.len() > p.len() && path.starts_with(p) && path.as_bytes()[p.len()] == b'/')
        })
        .max_by_key(|(p, _)| p.len())
        .map(|(_, b)| *b)
        .or(default)
}

/// Remove the paths of one host whose requests the rest of the host answers alike (see
/// [`Economy::redundant_paths`]). Each removal keeps the host's Ingress answer for every
/// request, so removing them one after the other (each judged against what is left) is safe.
fn drop_redundant_paths<B>(
    exact: &mut Vec<(&str, &B)>,
    prefix: &mut Vec<(&str, &B)>,
    default: Option<&B>,
    eq: fn(&B, &B) -> bool,
) {
    // A Prefix `/p` wins only requests under `/p` that no longer Prefix wins; without it they
    // go to its parent, the longest remaining Prefix that contains `/p` (or the default).
    let mut order: Vec<usize> = (0..prefix.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(prefix[i].0.len()));
    let mut keep = vec![true; prefix.len()];
    for i in order {
        let (p, b) = prefix[i];
        if p.is_empty() {
            // `Prefix /` and a default backend make the same one `/` rule anyway.
            continue;
        }
        let parent = prefix
            .iter()
            .zip(&keep)
            .filter(|&(&(q, _), &k)| {
                k && q.len() < p.len()
                    && (q.is_empty() || (p.starts_with(q) && p.as_bytes()[q.len()] == b'/'))
            })
            .max_by_key(|&(&(q, _), _)| q.len())
            .map(|(&(_, pb), _)| pb)
            .or(default);
        if parent.is_some_and(|a| eq(a, b)) {
            keep[i] = false;
        }
    }
    let mut k = keep.into_iter();
    prefix.retain(|_| k.next().unwrap_or(true));
    // An Exact path wins only its own path; the rest answers it with the longest Prefix.
    exact.retain(|&(e, b)| !prefix_answer(prefix, e, default).is_some_and(|a| eq(a, b)));
}

/// Remove host domains that only copy the catch-all's single rule (see
/// [`Economy::catch_all_copies`]).
fn drop_catch_all_copies<B: Clone>(out: &mut Vec<TDomainRef<'_, B>>, eq: fn(&B, &B) -> bool) {
    let Some(catch_all) = out.iter().position(|d| d.host == HostRef::CatchAll) else {
        return;
    };
    let [only] = out[catch_all].rules.as_slice() else {
        return;
    };
    let only = (only.url.clone(), only.backend.clone());
    // A host under a wildcard host would fall to the wildcard's domain, not the catch-all
    // (checked at any depth, for native CLB wildcards).
    let suffixes: Vec<String> = out
        .iter()
        .filter_map(|d| match d.host {
            HostRef::Wildcard(h) => Some(h[1..].to_string()),
            _ => None,
        })
        .collect();
    out.retain(|d| {
        let copy = match d.rules.as_slice() {
            [r] => {
                r.url == only.0
                    && match (&r.backend, &only.1) {
                        (Some(a), Some(b)) => eq(a, b),
                        (None, None) => true,
                        _ => false,
                    }
            }
            _ => false,
        };
        let covered = match d.host {
            HostRef::CatchAll => return true,
            HostRef::Exact(h) => suffixes.iter().any(|s| h.ends_with(s.as_str())),
            // With native CLB wildcards (`wildcardHosts: Native`, any depth), `*.b.a.com`
            // left out would send `x.b.a.com` to `*.a.com`'s domain.
            HostRef::Wildcard(h) => suffixes
                .iter()
                .any(|s| h.len() - 1 > s.len() && h[1..].ends_with(s.as_str())),
        };
        !copy || covered
    });
}

/// Translate the Ingress rules of one listener into CLB domains. The input must already be
/// valid (`check_host`, `clb_urls`); invalid hosts/paths are skipped defensively.
pub fn translate<B: Clone + PartialEq>(view: &IngressView<B>) -> Vec<TDomain<B>> {
    translate_with(view, Economy::FULL)
}

/// [`translate`] with the chosen cuts ([`Economy::NONE`]: the translation before rule economy).
pub fn translate_with<B: Clone + PartialEq>(
    view: &IngressView<B>,
    economy: Economy,
) -> Vec<TDomain<B>> {
    translate_rules_with(
        view.rules.iter().map(|r| {
            (
                r.host.as_deref(),
                r.paths
                    .iter()
                    .map(|p| (p.path.as_str(), p.kind, &p.backend)),
            )
        }),
        view.default_backend.as_ref(),
        economy,
    )
    .into_iter()
    .map(|d| TDomain {
        host: d.host.to_key(),
        domain: d.domain,
        default_server: d.default_server,
        rules: d.rules,
    })
    .collect()
}

/// What one Ingress path (or the default backend, or a placeholder) costs in CLB rules.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PathCost {
    /// The Ingress host (`*` for host-less rules and the catch-all domain).
    pub host: String,
    /// The path as written, `defaultBackend`, or `(no path)` for a placeholder rule.
    pub path: String,
    /// `Exact`, `Prefix`, or empty for the default backend and placeholders.
    pub kind: &'static str,
    /// The CLB URLs this entry makes (each a rule).
    pub urls: Vec<String>,
    /// Why it costs that many rules.
    pub why: String,
}

/// The CLB rules a translation costs, per path, with and without rule economy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CostReport {
    pub paths: Vec<PathCost>,
    /// Rules with the economy (what is created).
    pub rules: usize,
    /// Rules of the same view without any cut ([`Economy::NONE`]).
    pub rules_without_economy: usize,
}

/// The URLs of one path: its own rules (first claim of a URL wins) and its filler.
type Claimed = (Vec<String>, Option<String>);

/// The URLs each path claimed (`[rule][path]`, None for paths outside CLB syntax), and the
/// URLs no path claimed, per domain.
type Attribution = (Vec<Vec<Option<Claimed>>>, Vec<(String, Vec<String>)>);

/// Which URLs of `domains` each path of `view` makes.
fn attribute<B>(view: &IngressView<B>, domains: &[TDomain<B>]) -> Attribution {
    let mut left: Vec<(String, Vec<String>)> = domains
        .iter()
        .map(|d| {
            (
                d.domain.clone(),
                d.rules.iter().map(|r| r.url.clone()).collect(),
            )
        })
        .collect();
    let mut take = |domain: &str, url: &str| -> bool {
        left.iter_mut()
            .find(|(d, _)| d == domain)
            .and_then(|(_, urls)| urls.iter().position(|u| u == url).map(|i| urls.remove(i)))
            .is_some()
    };
    let claimed = view
        .rules
        .iter()
        .map(|r| {
            let domain = match r.host.as_deref() {
                Some(h) if check_host_syntax(h).is_err() => None,
                h => Some(HostKey::from_host(h).clb_domain()),
            };
            r.paths
                .iter()
                .map(|p| {
                    let domain = domain.as_deref()?;
                    let wanted = clb_urls(&p.path, p.kind).ok()?;
                    let urls = wanted.into_iter().filter(|u| take(domain, u)).collect();
                    let filler =
                        (p.kind == PathKind::Exact && p.path.len() > 1 && p.path.ends_with('/'))
                            .then(|| format!("={}", &p.path[..p.path.len() - 1]))
                            .filter(|f| take(domain, f));
                    Some((urls, filler))
                })
                .collect()
        })
        .collect();
    (claimed, left)
}

/// What each path of `view` costs on one listener with `economy`, and why. The rules of all
/// entries add up to `rules`, the rules the translation makes.
pub fn cost_report<B: Clone + PartialEq>(view: &IngressView<B>, economy: Economy) -> CostReport {
    let domains = translate_with(view, economy);
    let plain = translate_with(view, Economy::NONE);
    let rules = domains.iter().map(|d| d.rules.len()).sum();
    let rules_without_economy = plain.iter().map(|d| d.rules.len()).sum();
    let (claimed, left) = attribute(view, &domains);
    let (claimed_plain, _) = attribute(view, &plain);
    let mut paths = Vec::new();
    for (ri, r) in view.rules.iter().enumerate() {
        let key = HostKey::from_host(r.host.as_deref());
        let has_domain = domains.iter().any(|d| d.domain == key.clb_domain());
        if r.paths.is_empty() && !has_domain && r.host.is_some() {
            paths.push(PathCost {
                host: key.display(),
                path: "(no path)".to_string(),
                kind: "",
                urls: Vec::new(),
                why: "no domain: it would only copy the catch-all domain's rule, and the catch-all (the listener's default domain) answers the host alike".to_string(),
            });
        }
        for (pi, p) in r.paths.iter().enumerate() {
            let Some((urls, filler)) = claimed[ri][pi].clone() else {
                continue;
            };
            let had_rules = claimed_plain[ri][pi]
                .as_ref()
                .is_some_and(|(u, f)| !u.is_empty() || f.is_some());
            let why = match (p.kind, urls.len(), &filler) {
                _ if !has_domain => "no domain: the host's rules would only copy the catch-all domain's rule, which answers the host alike".to_string(),
                (PathKind::Exact, 1, None) => "one exact rule".to_string(),
                (PathKind::Exact, 1, Some(f)) => format!(
                    "the exact rule plus the filler {f} (CLB would answer the path without the slash with a 301)"
                ),
                (PathKind::Prefix, 1, _) if urls[0] == "/" => "one prefix rule `/`".to_string(),
                (PathKind::Prefix, 2, _) => format!(
                    "{} for the path itself (CLB would answer it with a 301 to {} otherwise) and {} for everything under it",
                    urls[0], urls[1], urls[1]
                ),
                (_, 0, None) if had_rules => "no rule (rule economy): the rest of the host (a shorter Prefix path or the default backend) answers all its requests with the same backend".to_string(),
                (_, 0, None) => "no rule of its own: an older or longer definition of the same path, or an Exact path of the same URL, makes its URLs".to_string(),
                _ => "shares its URLs with another path of the host".to_string(),
            };
            paths.push(PathCost {
                host: key.display(),
                path: p.path.clone(),
                kind: match p.kind {
                    PathKind::Exact => "Exact",
                    PathKind::Prefix => "Prefix",
                },
                urls: urls.into_iter().chain(filler).collect(),
                why,
            });
        }
    }
    // What is left: fillers whose Exact path lost its own rule, the default backend's `/`
    // copies and placeholders.
    for (domain, urls) in left {
        let host = domains
            .iter()
            .find(|d| d.domain == domain)
            .map(|d| d.host.display())
            .unwrap_or_default();
        for url in urls {
            let (path, why) = if url == NO_ROUTE_URL {
                (
                    "(no path)",
                    "placeholder: the domain must exist so that its requests get 404 instead of another host's backend",
                )
            } else if url == "/" && view.default_backend.is_some() {
                (
                    "defaultBackend",
                    "the default backend's `/` (CLB never falls back from a host's domain to the default domain)",
                )
            } else {
                (
                    "(filler)",
                    "carries the Ingress answer where CLB would otherwise answer a 301",
                )
            };
            paths.push(PathCost {
                host: host.clone(),
                path: path.to_string(),
                kind: "",
                urls: vec![url],
                why: why.to_string(),
            });
        }
    }
    CostReport {
        paths,
        rules,
        rules_without_economy,
    }
}

fn catch_all_without_rules<'s, B: Clone>(default: Option<&B>) -> TDomainRef<'s, B> {
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
    TDomainRef {
        host: HostRef::CatchAll,
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
    fn non_allocating_checks_agree_with_the_built_strings() {
        for suffix in ["a", "a.b", "foo.example.com", "x.y.z.w"] {
            assert_eq!(wildcard_domain_len(suffix), wildcard_domain(suffix).len());
            let h = format!("*.{suffix}");
            assert_eq!(
                HostRef::of(Some(&h)).clb_domain(),
                HostKey::from_host(Some(&h)).clb_domain()
            );
            assert_eq!(HostRef::of(Some(&h)).to_key(), HostKey::from_host(Some(&h)));
            assert_eq!(
                HostRef::of(Some(&h)).display(),
                HostKey::from_host(Some(&h)).display()
            );
        }
        for n in [197, 198, 199, 200, 201] {
            let p = format!("/{}", "a".repeat(n));
            for kind in [PathKind::Exact, PathKind::Prefix] {
                let built = urls_of(&p, kind).iter().all(|u| u.len() <= MAX_URL_LEN);
                assert_eq!(check_path(&p, kind).is_ok(), built, "{n} {kind:?}");
                let slash = format!("{p}//");
                let built = urls_of(&slash, kind).iter().all(|u| u.len() <= MAX_URL_LEN);
                assert_eq!(check_path(&slash, kind).is_ok(), built, "{n} {kind:?} //");
            }
        }
    }

    #[test]
    fn a_prefix_path_with_its_parents_backend_makes_no_rules_and_one_with_another_keeps_two() {
        let v = view(
            vec![(
                Some("a.com"),
                vec![
                    ("/", PathKind::Prefix, "root"),
                    ("/static", PathKind::Prefix, "root"),
                    ("/static/v2", PathKind::Prefix, "v2"),
                    ("/static/v2/old", PathKind::Prefix, "root"),
                ],
            )],
            None,
        );
        let full = translate_with(&v, Economy::FULL);
        assert_eq!(
            urls(&full[1]),
            vec![
                ("/".to_string(), Some("root")),
                ("/static/v2/".to_string(), Some("v2")),
                ("/static/v2/old/".to_string(), Some("root")),
                ("=/static/v2".to_string(), Some("v2")),
                ("=/static/v2/old".to_string(), Some("root")),
            ]
        );
        assert_eq!(translate_with(&v, Economy::NONE)[1].rules.len(), 7);
    }

    #[test]
    fn an_exact_path_its_prefix_answers_alike_makes_no_rule_but_its_filler_stays_needed() {
        let out = translate(&view(
            vec![(
                Some("a.com"),
                vec![
                    ("/api", PathKind::Prefix, "api"),
                    ("/api/health", PathKind::Exact, "api"),
                    ("/x/", PathKind::Exact, "x"),
                ],
            )],
            Some("d"),
        ));
        assert_eq!(
            urls(&out[1]),
            vec![
                ("/".to_string(), Some("d")),
                ("/api/".to_string(), Some("api")),
                ("=/api".to_string(), Some("api")),
                ("=/x".to_string(), Some("d")),
                ("=/x/".to_string(), Some("x")),
            ]
        );
    }

    #[test]
    fn a_pathless_host_is_left_to_the_catch_all_unless_a_wildcard_host_covers_it() {
        let out = translate(&view(
            vec![
                (Some("a.com"), vec![]),
                (Some("b.x.com"), vec![]),
                (Some("*.x.com"), vec![("/", PathKind::Prefix, "w")]),
            ],
            Some("d"),
        ));
        let domains: Vec<&str> = out.iter().map(|d| d.domain.as_str()).collect();
        assert_eq!(
            domains,
            vec![CATCH_ALL_DOMAIN, "b.x.com", "~^[^.]+\\.x\\.com$"]
        );
        let none = translate_with(
            &view(vec![(Some("a.com"), vec![])], Some("d")),
            Economy::NONE,
        );
        assert_eq!(none.len(), 2, "without the economy a.com keeps its copy");
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
                (Some("a.com"), vec![("/x/", PathKind::Prefix, "old")]),
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
    fn prefix_with_trailing_slash_serves_both_rules_over_the_same_prefix_without_it() {
        for (first, second) in [
            (("/x", "short"), ("/x/", "long")),
            (("/x/", "long"), ("/x", "short")),
        ] {
            let out = translate(&view(
                vec![(
                    Some("a.com"),
                    vec![
                        (first.0, PathKind::Prefix, first.1),
                        (second.0, PathKind::Prefix, second.1),
                    ],
                )],
                None,
            ));
            assert_eq!(
                urls(&out[1]),
                vec![
                    ("/x/".to_string(), Some("long")),
                    ("=/x".to_string(), Some("long"))
                ]
            );
        }
    }

    #[test]
    fn longer_prefix_string_wins_across_rules_of_different_ages() {
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
                ("/x/".to_string(), Some("new")),
                ("=/x".to_string(), Some("new"))
            ]
        );
    }

    #[test]
    fn wildcard_rules_get_a_literal_health_check_host_their_regex_matches() {
        let d = wildcard_domain("foo.example.com");
        assert_eq!(
            health_check_domain(&d).as_deref(),
            Some("health-check.foo.example.com")
        );
        assert_eq!(health_check_domain("foo.example.com"), None);
        assert_eq!(health_check_domain(CATCH_ALL_DOMAIN), None);
        assert_eq!(
            health_check_domain("~^[^.]+\\.a\\.b.c$"),
            None,
            "not our syntax"
        );
        assert_eq!(
            health_check_domain(&deep_wildcard_domain("a.example.com")).as_deref(),
            Some("health-check.a.example.com")
        );
        let long = wildcard_domain(&format!("{}.com", "a".repeat(70)));
        assert_eq!(health_check_domain(&long), None, "over 80 characters");
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
