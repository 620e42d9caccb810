//! CLB's own layer-7 matching (clb-api.md §7.1-§7.6), nginx-compatible where CLB is silent, plus
//! the syntax checks for CLB domains and URLs that the emulator and the model share.
//!
//! # The request (nginx `ngx_http_validate_host` and `ngx_http_parse_complex_uri`)
//! - Host: [`normalize_host`]: everything from the first `:` outside an IPv6 `[...]` literal is
//!   the port and dropped, then one trailing dot, then ASCII lower-case.
//! - Path: [`normalize_path`], what nginx puts in `$uri` and matches `location`s against, with
//!   `merge_slashes on` (nginx's default): the request target up to the first raw `?` or `#`,
//!   every `%XX` decoded once (`%2F` too, which then acts as a `/`; `%2E` acts as a `.`), except
//!   that a decoded `%`, `#` or `?` is an ordinary character; runs of `/` merged into one; `.`
//!   segments removed and `..` segments removed with the segment before them (a trailing `.` or
//!   `..` leaves a trailing `/`). nginx answers 400 ([`ClbRoute::BadRequest`]) for a target not
//!   starting with `/`, a `%` not followed by two hex digits, a decoded `%00`, and a `..` that
//!   climbs above the root. `+` stays `+`; nothing else is rewritten. Upstreams still receive the
//!   request target as the client sent it.
//!
//! # Domain choice (nginx `server_name` order, clb-api.md §7.2/§7.3)
//! With the normalised host, first hit wins:
//! 1. an exact domain equal to the host (compared lower-cased);
//! 2. the longest leading wildcard `*.suffix` whose `.suffix` ends the host, at any depth
//!    (`*.a.com` matches `x.y.a.com`, not `a.com`);
//! 3. the longest trailing wildcard `prefix.*` whose `prefix.` starts the host, at any depth;
//! 4. the first regex domain `~...` (in creation order) that matches the host, case-insensitive;
//! 5. the listener's `default_server` domain (the first one flagged, should there be several);
//! 6. else `NotFound`.
//!
//! Ties between wildcards of equal length go to the earliest-created domain (CLB: undocumented).
//!
//! # URL choice within the domain (nginx `location` order, clb-api.md §7.4-§7.6)
//! URLs are compared byte for byte with the normalised path.
//! 1. `=url` equal to the request path wins at once.
//! 2. The longest plain (`/p`) or `^~/p` URL that is a *string* prefix of the path is the best
//!    prefix (not segment-aware: `/ab` matches `/abc`; equal URLs: earliest rule).
//! 3. Trailing-slash redirect (nginx `auto_redirect`): when the path does not end with `/`, no
//!    prefix rule equals the path and some non-regex URL (`=`, `^~` or plain) equals the path plus
//!    `/`, the answer is a 301 to that URL (nginx's escaped location name: `?` becomes `%3F`)
//!    plus the original non-empty `?query`.
//! 4. A best prefix of the `^~` kind wins without consulting regexes.
//! 5. Regex URLs (`~` case-sensitive, `~*` case-insensitive; the pattern follows the modifier and
//!    optional spaces) in creation order: the first that matches anywhere in the path wins.
//! 6. The best plain prefix; else `NotFound`.
//!
//! # Regexes
//! CLB regexes are nginx (PCRE) regexes. They are compiled once, in [`CompiledListener::new`],
//! with the `regex` crate over bytes, ASCII-only classes (`\d` is `[0-9]`), unanchored like
//! nginx. [`translate_pcre`] bridges the PCRE constructs reachable with the character sets of
//! clb-api.md §7.1/§7.4 (`\h`, `\v`, `\e`; `[`, `&`, `~` and `--` inside classes, which the
//! `regex` crate would read as set operations) and rejects what PCRE rejects there (nested
//! quantifiers, quantified anchors) or what the crate cannot do (possessive quantifiers,
//! look-around, back-references). A regex that does not compile never matches; the listener
//! reports it in [`CompiledListener::problems`] instead of panicking.
use regex::bytes::{Regex, RegexBuilder};

/// Length limits of clb-api.md §7.1 and §7.4.
pub const MAX_DOMAIN_LEN: usize = 80;
/// ModifyDomain's `NewDomain`: 1-120 characters (api.json), unlike a rule's domain.
pub const MAX_NEW_DOMAIN_LEN: usize = 120;
pub const MAX_URL_LEN: usize = 200;

/// One domain of a listener: its rules in creation order. Domains are given in creation order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainConf {
    /// The CLB domain string: exact (`www.a.com`), wildcard (`*.a.com`, `www.a.*`) or regex (`~^...$`).
    pub domain: String,
    /// Whether this domain is the listener's DefaultServer.
    pub default_server: bool,
    /// The URL rules of the domain, in creation order.
    pub rules: Vec<UrlConf>,
}

/// One URL rule: `=/exact`, `^~/prefix`, `~regex`, `~*regex` or a plain prefix `/prefix`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlConf {
    pub url: String,
}

/// Where CLB sends a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClbRoute {
    /// The rule `rules[rule]` of `domains[domain]`.
    Rule { domain: usize, rule: usize },
    /// The trailing-slash 301 redirect to `location` (path plus the original query string).
    Redirect { location: String },
    /// No domain or no URL matched: 404.
    NotFound,
    /// nginx refuses the request target before routing it: 400.
    BadRequest(InvalidPath),
}

/// Why nginx refuses a request target with 400 (see [`normalize_path`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvalidPath {
    /// The target does not start with `/`.
    NotAbsolute,
    /// A `%` not followed by two hex digits.
    BadEscape,
    /// `%00`.
    NulByte,
    /// A `..` segment above the root (`/../a`, `/a/../..`).
    AboveRoot,
}

impl std::fmt::Display for InvalidPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            InvalidPath::NotAbsolute => "the request path does not start with `/`",
            InvalidPath::BadEscape => "a `%` is not followed by two hex digits",
            InvalidPath::NulByte => "the request path contains `%00`",
            InvalidPath::AboveRoot => "a `..` segment climbs above the root",
        })
    }
}

/// The `Host` header as nginx's `ngx_http_validate_host` leaves it for `server_name` matching:
/// the port (from the first `:` outside an IPv6 literal `[...]`, which keeps its brackets) and
/// one trailing dot removed, ASCII lower-cased. Surrounding whitespace is ignored.
pub fn normalize_host(host: &str) -> String {
    let host = host.trim().as_bytes();
    let mut end = host.len();
    let mut in_literal = false;
    for (i, &b) in host.iter().enumerate() {
        match b {
            b'[' if i == 0 => in_literal = true,
            b']' if in_literal => {
                end = i + 1;
                break;
            }
            b':' if !in_literal => {
                end = i;
                break;
            }
            _ => {}
        }
    }
    let mut name = &host[..end];
    if let [rest @ .., b'.'] = name {
        name = rest;
    }
    String::from_utf8_lossy(name).to_ascii_lowercase()
}

/// nginx's parser state between bytes of the path (`ngx_http_parse_complex_uri`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PathState {
    Usual,
    /// Just after a `/`.
    Slash,
    /// After `/.`.
    Dot,
    /// After `/..`.
    DotDot,
}

/// The path CLB (nginx) matches URLs against: the request target's path, percent-decoded,
/// `//` merged, `.` and `..` resolved (see the module docs for every detail), as bytes (a
/// decoded path need not be UTF-8). Written as nginx's byte-by-byte state machine.
pub fn normalize_path(target: &str) -> Result<Vec<u8>, InvalidPath> {
    let raw = target.as_bytes();
    if raw.first() != Some(&b'/') {
        return Err(InvalidPath::NotAbsolute);
    }
    let mut out: Vec<u8> = Vec::with_capacity(raw.len());
    let mut state = PathState::Usual;
    let mut i = 0;
    while let Some(&b) = raw.get(i) {
        i += 1;
        let c = match b {
            b'?' | b'#' => break,
            b'%' => {
                let hex = |at: usize| raw.get(at).and_then(|&h| char::from(h).to_digit(16));
                let (Some(hi), Some(lo)) = (hex(i), hex(i + 1)) else {
                    return Err(InvalidPath::BadEscape);
                };
                i += 2;
                // Both digits are below 16, so the byte fits.
                let decoded = u8::try_from(hi * 16 + lo).unwrap_or(0);
                match decoded {
                    0 => return Err(InvalidPath::NulByte),
                    b'%' | b'#' | b'?' => {
                        out.push(decoded);
                        state = PathState::Usual;
                        continue;
                    }
                    _ => decoded,
                }
            }
            _ => b,
        };
        state = match (state, c) {
            (PathState::Usual, b'/') => {
                out.push(b'/');
                PathState::Slash
            }
            (PathState::Slash, b'/') => PathState::Slash,
            (PathState::Dot, b'/') => {
                out.pop();
                PathState::Slash
            }
            (PathState::DotDot, b'/') => {
                drop_dot_dot(&mut out)?;
                PathState::Slash
            }
            (PathState::Slash, b'.') => {
                out.push(b'.');
                PathState::Dot
            }
            (PathState::Dot, b'.') => {
                out.push(b'.');
                PathState::DotDot
            }
            _ => {
                out.push(c);
                PathState::Usual
            }
        };
    }
    match state {
        PathState::Dot => {
            out.pop();
        }
        PathState::DotDot => drop_dot_dot(&mut out)?,
        PathState::Usual | PathState::Slash => {}
    }
    Ok(out)
}

/// `out` ends with `/..`: remove it and the segment before it, keeping that segment's `/`
/// (nginx: `u -= 4`, then back to the previous `/`; nothing before it is a 400).
fn drop_dot_dot(out: &mut Vec<u8>) -> Result<(), InvalidPath> {
    let last_of_previous = out.len().checked_sub(4).ok_or(InvalidPath::AboveRoot)?;
    let slash = out[..=last_of_previous]
        .iter()
        .rposition(|&b| b == b'/')
        .ok_or(InvalidPath::AboveRoot)?;
    out.truncate(slash + 1);
    Ok(())
}

/// The syntactic form of a CLB domain (clb-api.md §7.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DomainForm {
    /// `www.example.com`
    Exact,
    /// `*.example.com`
    LeadingWildcard,
    /// `www.example.*`
    TrailingWildcard,
    /// `~^www\d+\.example\.com$`
    Regex,
}

/// The syntactic form of a CLB URL (clb-api.md §7.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UrlForm {
    /// `=/path`: exact match.
    Exact,
    /// `^~/path`: string prefix that, when it is the best prefix, stops the regex search.
    PrefixNoRegex,
    /// `~regex` (case-sensitive) or `~*regex` (case-insensitive).
    Regex { case_insensitive: bool },
    /// `/path`: string prefix.
    Prefix,
}

/// A domain or URL of a listener that fails [`check_domain`] / [`check_url`] or cannot be
/// compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompileProblem {
    /// Index into the listener's domains.
    pub domain: usize,
    /// Index into that domain's rules; None when the domain string itself is the problem.
    pub rule: Option<usize>,
    /// What is wrong, naming the offending domain or URL.
    pub message: String,
    /// True when the domain or rule is disabled for routing (a regex that does not compile).
    /// Other problems (charset, length) are reported but the entry still routes as written.
    pub never_matches: bool,
}

#[derive(Debug, Clone)]
enum HostMatcher {
    /// The lower-cased domain.
    Exact(String),
    /// `.suffix`, lower-cased (from `*.suffix`).
    Leading(String),
    /// `prefix.`, lower-cased (from `prefix.*`).
    Trailing(String),
    /// None when the regex does not compile: never matches.
    Regex(Option<Regex>),
}

#[derive(Debug, Clone)]
enum UrlMatcher {
    Exact(String),
    Prefix {
        url: String,
        no_regex: bool,
    },
    /// None when the regex does not compile: never matches.
    Regex(Option<Regex>),
}

impl UrlMatcher {
    /// The literal URL of a non-regex rule.
    fn literal(&self) -> Option<&str> {
        match self {
            UrlMatcher::Exact(u) | UrlMatcher::Prefix { url: u, .. } => Some(u),
            UrlMatcher::Regex(_) => None,
        }
    }
}

#[derive(Debug, Clone)]
struct CompiledDomain {
    host: HostMatcher,
    rules: Vec<UrlMatcher>,
}

/// A listener's domains, pre-compiled for routing many requests.
#[derive(Debug, Clone)]
pub struct CompiledListener {
    domains: Vec<DomainConf>,
    compiled: Vec<CompiledDomain>,
    problems: Vec<CompileProblem>,
}

impl CompiledListener {
    pub fn new(domains: Vec<DomainConf>) -> Self {
        let mut problems = Vec::new();
        let compiled = domains
            .iter()
            .enumerate()
            .map(|(di, d)| CompiledDomain {
                host: compile_domain(&d.domain, di, &mut problems),
                rules: d
                    .rules
                    .iter()
                    .enumerate()
                    .map(|(ri, r)| compile_url(&r.url, di, ri, &mut problems))
                    .collect(),
            })
            .collect();
        Self {
            domains,
            compiled,
            problems,
        }
    }

    pub fn domains(&self) -> &[DomainConf] {
        &self.domains
    }

    /// Every domain or URL that fails CLB's syntax rules or cannot be compiled, in listener order.
    pub fn problems(&self) -> &[CompileProblem] {
        &self.problems
    }

    /// `Ok` when every domain and URL is valid CLB syntax and compiles, else all the problems.
    pub fn validate(&self) -> Result<(), &[CompileProblem]> {
        if self.problems.is_empty() {
            Ok(())
        } else {
            Err(&self.problems)
        }
    }

    /// Route a request by its `Host` header and request target (`/path?query`).
    /// The target is parsed first: a target nginx refuses is a 400 whatever the host.
    pub fn route(&self, host: &str, path_and_query: &str) -> ClbRoute {
        let path = match normalize_path(path_and_query) {
            Ok(path) => path,
            Err(e) => return ClbRoute::BadRequest(e),
        };
        match self.pick_domain(&normalize_host(host)) {
            Some(domain) => self.route_in_domain(domain, &path, path_and_query),
            None => ClbRoute::NotFound,
        }
    }

    /// The index of the domain serving `host` (already normalised), if any.
    pub fn pick_domain(&self, host: &str) -> Option<usize> {
        let exact = self
            .compiled
            .iter()
            .position(|c| matches!(&c.host, HostMatcher::Exact(e) if e == host));
        exact
            .or_else(|| {
                longest(&self.compiled, |c| match &c.host {
                    HostMatcher::Leading(suffix) => (host.len() > suffix.len()
                        && host.ends_with(suffix.as_str()))
                    .then_some(suffix.len()),
                    _ => None,
                })
            })
            .or_else(|| {
                longest(&self.compiled, |c| match &c.host {
                    HostMatcher::Trailing(prefix) => (host.len() > prefix.len()
                        && host.starts_with(prefix.as_str()))
                    .then_some(prefix.len()),
                    _ => None,
                })
            })
            .or_else(|| {
                self.compiled.iter().position(|c| {
                    matches!(&c.host, HostMatcher::Regex(Some(re)) if re.is_match(host.as_bytes()))
                })
            })
            .or_else(|| self.domains.iter().position(|d| d.default_server))
    }

    /// Route a normalised path ([`normalize_path`]) within `domain`; the raw target gives the
    /// redirect's query string.
    fn route_in_domain(&self, domain: usize, path: &[u8], path_and_query: &str) -> ClbRoute {
        let rules = &self.compiled[domain].rules;
        let hit = |rule| ClbRoute::Rule { domain, rule };

        // 1. `=` exact.
        if let Some(rule) = rules
            .iter()
            .position(|r| matches!(r, UrlMatcher::Exact(u) if u.as_bytes() == path))
        {
            return hit(rule);
        }

        // 2. The longest string prefix, plain or `^~` (earliest on equal length).
        let best_prefix = longest(rules, |r| match r {
            UrlMatcher::Prefix { url, .. } if path.starts_with(url.as_bytes()) => Some(url.len()),
            _ => None,
        });

        // 3. nginx auto_redirect: `/abc` when only `/abc/` is configured.
        if !path.ends_with(b"/") {
            let prefix_equals_path = rules
                .iter()
                .any(|r| matches!(r, UrlMatcher::Prefix { url, .. } if url.as_bytes() == path));
            let with_slash = |u: &str| u.strip_suffix('/').is_some_and(|u| u.as_bytes() == path);
            let target = rules
                .iter()
                .filter_map(UrlMatcher::literal)
                .find(|u| with_slash(u));
            if let Some(url) = target.filter(|_| !prefix_equals_path) {
                return ClbRoute::Redirect {
                    location: escape_location(url) + &query_suffix(path_and_query),
                };
            }
        }

        // 4. A best prefix of the `^~` kind stops the search.
        let no_regex = |&r: &usize| matches!(rules[r], UrlMatcher::Prefix { no_regex: true, .. });
        if let Some(rule) = best_prefix.filter(no_regex) {
            return hit(rule);
        }

        // 5. Regexes in creation order.
        if let Some(rule) = rules
            .iter()
            .position(|r| matches!(r, UrlMatcher::Regex(Some(re)) if re.is_match(path)))
        {
            return hit(rule);
        }

        // 6. The best plain prefix.
        best_prefix.map_or(ClbRoute::NotFound, hit)
    }
}

/// The index of the item with the largest key; ties go to the earliest item.
fn longest<T>(items: &[T], key: impl Fn(&T) -> Option<usize>) -> Option<usize> {
    let mut best: Option<(usize, usize)> = None;
    for (i, item) in items.iter().enumerate() {
        match key(item) {
            Some(k) if best.is_none_or(|(bk, _)| k > bk) => best = Some((k, i)),
            _ => {}
        }
    }
    best.map(|(_, i)| i)
}

/// A URL as nginx writes it in a `Location` (`ngx_escape_uri`, `NGX_ESCAPE_URI`): bytes that
/// would end or break the path (`?`, `#`, `%`, space, controls, non-ASCII) as `%XX`.
fn escape_location(url: &str) -> String {
    let mut out = String::with_capacity(url.len());
    for b in url.bytes() {
        if b.is_ascii_graphic() && !matches!(b, b'?' | b'#' | b'%') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `?query` of a request target when the query is non-empty (nginx appends `?args` only then).
fn query_suffix(path_and_query: &str) -> String {
    let Some(start) = path_and_query.find(['?', '#']) else {
        return String::new();
    };
    let Some(rest) = path_and_query[start..].strip_prefix('?') else {
        // A fragment before any `?`: no query.
        return String::new();
    };
    let query = rest.split('#').next().unwrap_or_default();
    if query.is_empty() {
        String::new()
    } else {
        format!("?{query}")
    }
}

/// The form of a domain string, without validating it.
pub fn domain_form(d: &str) -> DomainForm {
    if d.starts_with('~') {
        DomainForm::Regex
    } else if d.starts_with("*.") {
        DomainForm::LeadingWildcard
    } else if d.ends_with(".*") {
        DomainForm::TrailingWildcard
    } else {
        DomainForm::Exact
    }
}

/// The form of a URL string and the part that is matched (the path, or the regex pattern),
/// without validating it.
pub fn url_form(u: &str) -> (UrlForm, &str) {
    if let Some(rest) = u.strip_prefix('=') {
        (UrlForm::Exact, rest.trim_start_matches(' '))
    } else if let Some(rest) = u.strip_prefix("^~") {
        (UrlForm::PrefixNoRegex, rest.trim_start_matches(' '))
    } else if let Some(rest) = u.strip_prefix("~*") {
        let case_insensitive = true;
        (
            UrlForm::Regex { case_insensitive },
            rest.trim_start_matches(' '),
        )
    } else if let Some(rest) = u.strip_prefix('~') {
        let case_insensitive = false;
        (
            UrlForm::Regex { case_insensitive },
            rest.trim_start_matches(' '),
        )
    } else {
        (UrlForm::Prefix, u)
    }
}

fn compile_domain(d: &str, di: usize, problems: &mut Vec<CompileProblem>) -> HostMatcher {
    let lower = d.to_ascii_lowercase();
    let matcher = match domain_form(d) {
        DomainForm::Exact => HostMatcher::Exact(lower),
        DomainForm::LeadingWildcard => HostMatcher::Leading(lower[1..].to_owned()),
        DomainForm::TrailingWildcard => HostMatcher::Trailing(lower[..lower.len() - 1].to_owned()),
        DomainForm::Regex => match compile_regex(&d[1..], true) {
            Ok(re) => HostMatcher::Regex(Some(re)),
            Err(e) => {
                problems.push(CompileProblem {
                    domain: di,
                    rule: None,
                    message: format!("domain `{d}`: {e}"),
                    never_matches: true,
                });
                return HostMatcher::Regex(None);
            }
        },
    };
    if let Err(message) = check_domain(d) {
        problems.push(CompileProblem {
            domain: di,
            rule: None,
            message,
            never_matches: false,
        });
    }
    matcher
}

fn compile_url(u: &str, di: usize, ri: usize, problems: &mut Vec<CompileProblem>) -> UrlMatcher {
    let (form, body) = url_form(u);
    let matcher = match form {
        UrlForm::Exact => UrlMatcher::Exact(body.to_owned()),
        UrlForm::PrefixNoRegex => UrlMatcher::Prefix {
            url: body.to_owned(),
            no_regex: true,
        },
        UrlForm::Prefix => UrlMatcher::Prefix {
            url: body.to_owned(),
            no_regex: false,
        },
        UrlForm::Regex { case_insensitive } => match compile_regex(body, case_insensitive) {
            Ok(re) => UrlMatcher::Regex(Some(re)),
            Err(e) => {
                problems.push(CompileProblem {
                    domain: di,
                    rule: Some(ri),
                    message: format!("URL `{u}`: {e}"),
                    never_matches: true,
                });
                return UrlMatcher::Regex(None);
            }
        },
    };
    if let Err(message) = check_url(u) {
        problems.push(CompileProblem {
            domain: di,
            rule: Some(ri),
            message,
            never_matches: false,
        });
    }
    matcher
}

/// Compile an nginx (PCRE) regex for matching bytes, unanchored.
pub fn compile_regex(pattern: &str, case_insensitive: bool) -> Result<Regex, String> {
    let translated = translate_pcre(pattern)?;
    RegexBuilder::new(&translated)
        .unicode(false)
        .case_insensitive(case_insensitive)
        .build()
        .map_err(|e| {
            let detail = e.to_string();
            let last = detail.lines().last().unwrap_or_default().trim();
            let last = last.strip_prefix("error: ").unwrap_or(last);
            format!("regex `{pattern}` is not supported: {last}")
        })
}

/// What the previous token outside a character class was, for PCRE's quantifier rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Prev {
    /// Start of pattern, `(`, or `|`: nothing to repeat.
    Nothing,
    /// An assertion (`^`, `$`, `\b`...): PCRE does not repeat it.
    Anchor,
    /// A quantifier (with its optional lazy `?`).
    Quantifier,
    /// A repeatable item.
    Atom,
}

/// Translate an nginx (PCRE) regex into `regex`-crate syntax with the same meaning, for the
/// constructs the CLB character sets allow; refuse those PCRE refuses or the crate cannot do.
pub fn translate_pcre(pattern: &str) -> Result<String, String> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut out = String::with_capacity(pattern.len() + 8);
    let mut prev = Prev::Nothing;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '\\' => {
                let Some(&e) = chars.get(i + 1) else {
                    return Err(format!("regex `{pattern}` ends with a lone `\\`"));
                };
                i += 1;
                prev = if matches!(e, 'b' | 'B' | 'A' | 'z' | 'Z' | 'G') {
                    Prev::Anchor
                } else {
                    Prev::Atom
                };
                out.push_str(&translate_escape(e, false));
            }
            '[' => {
                i = translate_class(&chars, i, &mut out)
                    .ok_or_else(|| format!("regex `{pattern}` has an unterminated `[` class"))?;
                prev = Prev::Atom;
                continue;
            }
            '*' | '+' | '?' => {
                match prev {
                    Prev::Atom => {}
                    Prev::Quantifier => {
                        return Err(format!("regex `{pattern}` has a nested quantifier `{c}`"));
                    }
                    Prev::Nothing | Prev::Anchor => {
                        return Err(format!(
                            "regex `{pattern}`: quantifier `{c}` does not follow a repeatable item"
                        ));
                    }
                }
                out.push(c);
                match chars.get(i + 1) {
                    Some('?') => {
                        out.push('?');
                        i += 1;
                    }
                    Some('+') => {
                        return Err(format!(
                            "regex `{pattern}` uses a possessive quantifier `{c}+`, not supported"
                        ));
                    }
                    _ => {}
                }
                prev = Prev::Quantifier;
            }
            '(' => {
                out.push('(');
                if chars.get(i + 1) == Some(&'?') {
                    // Group modifiers (`(?:`, `(?i)`, `(?=`...) are left to the regex crate.
                    out.push('?');
                    i += 1;
                }
                prev = Prev::Nothing;
            }
            '|' => {
                out.push('|');
                prev = Prev::Nothing;
            }
            ')' => {
                out.push(')');
                prev = Prev::Atom;
            }
            '^' | '$' => {
                out.push(c);
                prev = Prev::Anchor;
            }
            _ => {
                out.push(c);
                prev = Prev::Atom;
            }
        }
        i += 1;
    }
    Ok(out)
}

/// Translate a PCRE escape `\e` (inside a class when `in_class`).
fn translate_escape(e: char, in_class: bool) -> String {
    let body = match e {
        // PCRE horizontal / vertical whitespace (non-UTF mode), escape, backspace in a class.
        'h' => r"\t \xA0",
        'v' => r"\n\x0B\x0C\r\x85",
        'e' => return r"\x1B".to_owned(),
        'b' if in_class => return r"\x08".to_owned(),
        'Z' if !in_class => return r"\z".to_owned(),
        _ if e.is_ascii_punctuation() || e == ' ' => return regex::escape(&e.to_string()),
        // Everything else (`\d`, `\w`, `\s`, `\n`, `\x41`, back-references...) is passed on;
        // the regex crate accepts it with PCRE's meaning or refuses it.
        _ => return format!("\\{e}"),
    };
    if in_class {
        body.to_owned()
    } else {
        format!("[{body}]")
    }
}

/// Translate the PCRE class starting at `chars[start] == '['`; returns the index after its `]`.
fn translate_class(chars: &[char], start: usize, out: &mut String) -> Option<usize> {
    out.push('[');
    let mut i = start + 1;
    if chars.get(i) == Some(&'^') {
        out.push('^');
        i += 1;
    }
    // In PCRE a `]` right after `[` or `[^` is literal.
    if chars.get(i) == Some(&']') {
        out.push_str(r"\]");
        i += 1;
    }
    let mut prev_dash = false;
    while let Some(&c) = chars.get(i) {
        let mut dash = false;
        match c {
            ']' => {
                out.push(']');
                return Some(i + 1);
            }
            '\\' => {
                let e = *chars.get(i + 1)?;
                out.push_str(&translate_escape(e, true));
                i += 1;
            }
            // POSIX class `[:alpha:]`: same syntax in both.
            '[' if chars.get(i + 1) == Some(&':') => out.push('['),
            // Literal in PCRE, nesting or set operators for the regex crate.
            '[' | '&' | '~' => out.push_str(&regex::escape(&c.to_string())),
            '-' if prev_dash => out.push_str(r"\-"),
            '-' => {
                out.push('-');
                dash = true;
            }
            _ => out.push(c),
        }
        prev_dash = dash;
        i += 1;
    }
    None
}

fn describe_len(what: &str, s: &str, max: usize) -> Result<(), String> {
    let len = s.chars().count();
    if len == 0 || len > max {
        Err(format!(
            "{what} `{s}` is {len} characters long; CLB allows 1-{max}"
        ))
    } else {
        Ok(())
    }
}

fn check_charset(
    what: &str,
    s: &str,
    part: &str,
    allowed: impl Fn(char) -> bool,
    set: &str,
) -> Result<(), String> {
    match part.chars().find(|&c| !allowed(c)) {
        Some(bad) => Err(format!(
            "{what} `{s}` contains `{bad}`; allowed characters are {set}"
        )),
        None => Ok(()),
    }
}

fn exact_domain_char(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '-' | '_')
}

fn regex_domain_char(c: char) -> bool {
    exact_domain_char(c) || "?=~+\\^*!$&|()[]".contains(c)
}

fn plain_url_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '/' | '=' | '?')
}

fn regex_url_char(c: char) -> bool {
    plain_url_char(c) || matches!(c, '~' | '^' | '*' | '$' | ':')
}

/// Check a CLB domain against clb-api.md §7.1 and say which form it has.
pub fn check_domain(d: &str) -> Result<DomainForm, String> {
    check_domain_up_to(d, MAX_DOMAIN_LEN)
}

/// [`check_domain`] with another length limit (ModifyDomain's `NewDomain` takes up to
/// [`MAX_NEW_DOMAIN_LEN`] characters where rules take [`MAX_DOMAIN_LEN`]).
pub fn check_domain_up_to(d: &str, max_len: usize) -> Result<DomainForm, String> {
    describe_len("domain", d, max_len)?;
    if d.starts_with('_') {
        return Err(format!("domain `{d}` must not start with `_`"));
    }
    let form = domain_form(d);
    let exact_set = "a-z 0-9 . - _";
    match form {
        DomainForm::Regex => {
            let pattern = &d[1..];
            if pattern.starts_with('~') {
                return Err(format!("regex domain `{d}` must start with a single `~`"));
            }
            if pattern.is_empty() {
                return Err(format!("regex domain `{d}` has an empty pattern"));
            }
            check_charset(
                "regex domain",
                d,
                pattern,
                regex_domain_char,
                r"a-z 0-9 . - ? = ~ _ + \ ^ * ! $ & | ( ) [ ]",
            )?;
            compile_regex(pattern, true).map_err(|e| format!("regex domain `{d}`: {e}"))?;
        }
        DomainForm::LeadingWildcard | DomainForm::TrailingWildcard => {
            let rest = if form == DomainForm::LeadingWildcard {
                &d[2..]
            } else {
                &d[..d.len() - 2]
            };
            if rest.is_empty() || rest.contains('*') {
                return Err(format!(
                    "wildcard domain `{d}` must have one `*`, as `*.name` or `name.*`"
                ));
            }
            check_charset("wildcard domain", d, rest, exact_domain_char, exact_set)?;
        }
        DomainForm::Exact => {
            if d.contains('*') {
                return Err(format!(
                    "domain `{d}` may contain `*` only as a leading `*.` or a trailing `.*`"
                ));
            }
            check_charset("domain", d, d, exact_domain_char, exact_set)?;
        }
    }
    Ok(form)
}

/// Check a CLB URL against clb-api.md §7.4 and say which form it has.
pub fn check_url(u: &str) -> Result<UrlForm, String> {
    describe_len("URL", u, MAX_URL_LEN)?;
    let plain_set = "a-z A-Z 0-9 . - _ / = ?";
    let (form, body) = url_form(u);
    match form {
        UrlForm::Regex { case_insensitive } => {
            let modifier_len = if case_insensitive { 2 } else { 1 };
            let after_modifier = &u[modifier_len..];
            if after_modifier.starts_with('~') {
                return Err(format!("regex URL `{u}` must start with a single `~`"));
            }
            // One optional space may separate the modifier from the pattern (`~* .png$`).
            let pattern = after_modifier.strip_prefix(' ').unwrap_or(after_modifier);
            if pattern.is_empty() {
                return Err(format!("regex URL `{u}` has an empty pattern"));
            }
            check_charset(
                "regex URL",
                u,
                pattern,
                regex_url_char,
                "a-z A-Z 0-9 . - _ / = ? ~ ^ * $ :",
            )?;
            compile_regex(body, case_insensitive).map_err(|e| format!("URL `{u}`: {e}"))?;
        }
        UrlForm::Exact | UrlForm::PrefixNoRegex | UrlForm::Prefix => {
            let literal = match form {
                UrlForm::Exact => &u[1..],
                UrlForm::PrefixNoRegex => &u[2..],
                _ => u,
            };
            if !literal.starts_with('/') {
                return Err(format!("URL `{u}` must be a path starting with `/`"));
            }
            check_charset("URL", u, literal, plain_url_char, plain_set)?;
        }
    }
    Ok(form)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn domain(name: &str, default_server: bool, urls: &[&str]) -> DomainConf {
        DomainConf {
            domain: name.to_owned(),
            default_server,
            rules: urls
                .iter()
                .map(|u| UrlConf {
                    url: (*u).to_owned(),
                })
                .collect(),
        }
    }

    /// A listener with one default domain `a.com` holding `urls`.
    fn urls(urls: &[&str]) -> CompiledListener {
        CompiledListener::new(vec![domain("a.com", true, urls)])
    }

    /// The route written for humans: `domain url`, `301 location` or `404`.
    fn show(l: &CompiledListener, host: &str, target: &str) -> String {
        match l.route(host, target) {
            ClbRoute::Rule { domain, rule } => {
                let d = &l.domains()[domain];
                format!("{} {}", d.domain, d.rules[rule].url)
            }
            ClbRoute::Redirect { location } => format!("301 {location}"),
            ClbRoute::NotFound => "404".to_owned(),
            ClbRoute::BadRequest(_) => "400".to_owned(),
        }
    }

    /// The URL a request to `a.com` lands on (or `301 ...` / `404`).
    fn url_for(l: &CompiledListener, target: &str) -> String {
        show(l, "a.com", target)
            .strip_prefix("a.com ")
            .map_or_else(|| show(l, "a.com", target), str::to_owned)
    }

    // ---- Domain choice ----

    #[test]
    fn exact_domain_beats_wildcards_and_regexes() {
        let l = CompiledListener::new(vec![
            domain("~^www", false, &["/"]),
            domain("*.a.com", false, &["/"]),
            domain("www.a.*", false, &["/"]),
            domain("www.a.com", false, &["/"]),
        ]);
        assert_eq!(show(&l, "www.a.com", "/"), "www.a.com /");
    }

    #[test]
    fn exact_domain_is_compared_case_insensitively_without_port() {
        let l = CompiledListener::new(vec![domain("Www.A.com", false, &["/"])]);
        assert_eq!(show(&l, "WWW.a.COM:8080", "/"), "Www.A.com /");
        assert_eq!(show(&l, "www.a.com.", "/"), "Www.A.com /");
    }

    #[test]
    fn leading_wildcard_matches_any_depth_but_not_the_bare_suffix() {
        let l = CompiledListener::new(vec![domain("*.a.com", false, &["/"])]);
        assert_eq!(show(&l, "x.a.com", "/"), "*.a.com /");
        assert_eq!(show(&l, "x.y.a.com", "/"), "*.a.com /");
        assert_eq!(show(&l, "a.com", "/"), "404");
        assert_eq!(show(&l, "xa.com", "/"), "404");
    }

    #[test]
    fn longest_leading_wildcard_wins() {
        let l = CompiledListener::new(vec![
            domain("*.a.com", false, &["/"]),
            domain("*.b.a.com", false, &["/"]),
        ]);
        assert_eq!(show(&l, "x.b.a.com", "/"), "*.b.a.com /");
        assert_eq!(show(&l, "x.c.a.com", "/"), "*.a.com /");
    }

    #[test]
    fn leading_wildcard_beats_trailing_wildcard() {
        let l = CompiledListener::new(vec![
            domain("www.a.*", false, &["/"]),
            domain("*.a.com", false, &["/"]),
        ]);
        assert_eq!(show(&l, "www.a.com", "/"), "*.a.com /");
    }

    #[test]
    fn trailing_wildcard_matches_any_depth_and_the_longest_wins() {
        let l = CompiledListener::new(vec![
            domain("www.*", false, &["/"]),
            domain("www.a.*", false, &["/"]),
        ]);
        assert_eq!(show(&l, "www.a.co.uk", "/"), "www.a.* /");
        assert_eq!(show(&l, "www.b.com", "/"), "www.* /");
        assert_eq!(show(&l, "www.a", "/"), "www.* /");
        assert_eq!(show(&l, "www", "/"), "404");
    }

    #[test]
    fn trailing_wildcard_beats_regex() {
        let l = CompiledListener::new(vec![
            domain("~^www", false, &["/"]),
            domain("www.*", false, &["/"]),
        ]);
        assert_eq!(show(&l, "www.a.com", "/"), "www.* /");
    }

    #[test]
    fn first_matching_regex_domain_in_creation_order_wins() {
        let l = CompiledListener::new(vec![
            domain(r"~^www\d+\.a\.com$", false, &["/"]),
            domain(r"~\.a\.com$", false, &["/"]),
        ]);
        assert_eq!(show(&l, "www12.a.com", "/"), r"~^www\d+\.a\.com$ /");
        assert_eq!(show(&l, "api.a.com", "/"), r"~\.a\.com$ /");
        assert_eq!(show(&l, "www12.b.com", "/"), "404");
    }

    #[test]
    fn regex_domain_is_case_insensitive_and_unanchored() {
        let l = CompiledListener::new(vec![domain("~API", false, &["/"])]);
        assert_eq!(show(&l, "my-api.example.com", "/"), "~API /");
    }

    #[test]
    fn regex_domain_digit_class_is_ascii_only() {
        let l = CompiledListener::new(vec![domain(r"~^\d+$", false, &["/"])]);
        assert_eq!(show(&l, "123", "/"), r"~^\d+$ /");
        assert_eq!(show(&l, "١٢٣", "/"), "404");
    }

    #[test]
    fn unmatched_host_goes_to_the_default_server_domain() {
        let l = CompiledListener::new(vec![
            domain("a.com", false, &["/"]),
            domain("*.b.com", true, &["/"]),
        ]);
        assert_eq!(show(&l, "other.org", "/x"), "*.b.com /");
    }

    #[test]
    fn unmatched_host_without_default_server_is_not_found() {
        let l = CompiledListener::new(vec![domain("a.com", false, &["/"])]);
        assert_eq!(l.route("other.org", "/"), ClbRoute::NotFound);
    }

    #[test]
    fn chosen_domain_without_matching_url_is_not_found_even_with_a_default_server() {
        let l = CompiledListener::new(vec![
            domain("catch.all", true, &["/"]),
            domain("a.com", false, &["/api"]),
        ]);
        assert_eq!(show(&l, "a.com", "/web"), "404");
    }

    // ---- URL choice: clb-api.md §7.5 examples ----

    #[test]
    fn exact_url_beats_every_other_kind_for_the_same_path() {
        let all = ["=/test1", "^~/test1", "~/test1", "~*/test1", "/test1"];
        assert_eq!(url_for(&urls(&all), "/test1"), "=/test1");
        let reversed = ["/test1", "~*/test1", "~/test1", "^~/test1", "=/test1"];
        assert_eq!(url_for(&urls(&reversed), "/test1"), "=/test1");
    }

    #[test]
    fn first_configured_regex_wins_when_several_match() {
        let l = urls(&["~/11_*", "~/*_1"]);
        assert_eq!(url_for(&l, "/11_1"), "~/11_*");
        let l = urls(&["~/*_1", "~/11_*"]);
        assert_eq!(url_for(&l, "/11_1"), "~/*_1");
    }

    #[test]
    fn shorter_prefix_takes_requests_the_longer_one_does_not_cover() {
        let l = urls(&["/test1", "/test1/test2"]);
        assert_eq!(url_for(&l, "/test1"), "/test1");
        assert_eq!(url_for(&l, "/test1/test2/x"), "/test1/test2");
    }

    #[test]
    fn longest_prefix_wins() {
        let l = urls(&["/test1/test2", "/test3"]);
        assert_eq!(url_for(&l, "/test1/test2/test3"), "/test1/test2");
    }

    #[test]
    fn root_prefix_catches_everything_else() {
        let l = urls(&["/", "/api"]);
        assert_eq!(url_for(&l, "/web/x"), "/");
        assert_eq!(url_for(&l, "/api/x"), "/api");
    }

    #[test]
    fn no_matching_url_and_no_root_is_not_found() {
        assert_eq!(url_for(&urls(&["/api", "=/x"]), "/web"), "404");
    }

    #[test]
    fn plain_prefix_is_a_string_prefix_not_a_segment_prefix() {
        assert_eq!(url_for(&urls(&["/ab"]), "/abc"), "/ab");
    }

    #[test]
    fn plain_prefix_is_case_sensitive() {
        assert_eq!(url_for(&urls(&["/api"]), "/API"), "404");
    }

    #[test]
    fn no_regex_prefix_that_is_the_best_prefix_stops_regexes() {
        let l = urls(&["~\\.png$", "^~/static"]);
        assert_eq!(url_for(&l, "/static/a.png"), "^~/static");
    }

    #[test]
    fn no_regex_prefix_that_is_not_the_best_prefix_does_not_stop_regexes() {
        let l = urls(&["^~/static", "/static/img", "~png$"]);
        assert_eq!(url_for(&l, "/static/img/a.png"), "~png$");
    }

    #[test]
    fn regex_beats_the_best_plain_prefix() {
        let l = urls(&["/static", "~png$"]);
        assert_eq!(url_for(&l, "/static/a.png"), "~png$");
        assert_eq!(url_for(&l, "/static/a.gif"), "/static");
    }

    #[test]
    fn tilde_regex_is_case_sensitive_and_tilde_star_is_not() {
        let l = urls(&["~.PNG$", "~* .jpg$"]);
        assert_eq!(url_for(&l, "/a.PNG"), "~.PNG$");
        assert_eq!(url_for(&l, "/a.png"), "404");
        assert_eq!(url_for(&l, "/a.JPG"), "~* .jpg$");
    }

    #[test]
    fn regex_is_matched_against_the_path_without_query() {
        let l = urls(&["~^/a$"]);
        assert_eq!(url_for(&l, "/a?x=1"), "~^/a$");
        let l = urls(&["~x=1"]);
        assert_eq!(url_for(&l, "/a?x=1"), "404");
    }

    #[test]
    fn exact_url_ignores_the_query_string_and_is_slash_sensitive() {
        let l = urls(&["=/a"]);
        assert_eq!(url_for(&l, "/a?b=c"), "=/a");
        assert_eq!(url_for(&l, "/a/"), "404");
    }

    #[test]
    fn equal_prefixes_go_to_the_earliest_rule() {
        let l = urls(&["/a", "^~/a"]);
        assert_eq!(url_for(&l, "/a/b"), "/a");
    }

    // ---- Path normalisation (nginx ngx_http_parse_complex_uri, merge_slashes on) ----

    fn normalized(target: &str) -> Result<String, InvalidPath> {
        normalize_path(target).map(|p| String::from_utf8_lossy(&p).into_owned())
    }

    #[test]
    fn the_issue_examples_reach_the_api_prefix_not_the_root() {
        let l = urls(&["/", "=/api", "/api/"]);
        for target in [
            "//api/users",
            "/%61pi/users",
            "/x/../api/users",
            "/api/users",
        ] {
            assert_eq!(url_for(&l, target), "/api/", "{target}");
        }
    }

    #[test]
    fn path_is_percent_decoded_once_including_slashes_and_dots() {
        assert_eq!(normalized("/%61%2F%62"), Ok("/a/b".to_owned()));
        assert_eq!(normalized("/a%2F%2Fb"), Ok("/a/b".to_owned()));
        assert_eq!(normalized("/a/%2e%2E/b"), Ok("/b".to_owned()));
        assert_eq!(normalized("/a%252F"), Ok("/a%2F".to_owned()));
        assert_eq!(normalized("/a%3Fb=c"), Ok("/a?b=c".to_owned()));
        assert_eq!(normalized("/a%23b"), Ok("/a#b".to_owned()));
        assert_eq!(normalized("/a+b"), Ok("/a+b".to_owned()));
        assert_eq!(normalize_path("/%FF"), Ok(vec![b'/', 0xFF]));
    }

    #[test]
    fn slashes_are_merged_and_dot_segments_resolved() {
        assert_eq!(normalized("///a//b///"), Ok("/a/b/".to_owned()));
        assert_eq!(normalized("/a/./b/."), Ok("/a/b/".to_owned()));
        assert_eq!(normalized("/a/b/../c"), Ok("/a/c".to_owned()));
        assert_eq!(normalized("/a/b/.."), Ok("/a/".to_owned()));
        assert_eq!(normalized("/a/.."), Ok("/".to_owned()));
        assert_eq!(normalized("/a/..?x/../.."), Ok("/".to_owned()));
        assert_eq!(
            normalized("/.a/..b/.../c."),
            Ok("/.a/..b/.../c.".to_owned())
        );
        assert_eq!(normalized("/a/.#frag"), Ok("/a/".to_owned()));
    }

    #[test]
    fn unparseable_targets_are_bad_requests() {
        assert_eq!(normalized("/.."), Err(InvalidPath::AboveRoot));
        assert_eq!(normalized("/a/../../b"), Err(InvalidPath::AboveRoot));
        assert_eq!(normalized("//..//a"), Err(InvalidPath::AboveRoot));
        assert_eq!(normalized("/a%"), Err(InvalidPath::BadEscape));
        assert_eq!(normalized("/a%4"), Err(InvalidPath::BadEscape));
        assert_eq!(normalized("/a%4?b"), Err(InvalidPath::BadEscape));
        assert_eq!(normalized("/a%g1"), Err(InvalidPath::BadEscape));
        assert_eq!(normalized("/a%00"), Err(InvalidPath::NulByte));
        assert_eq!(normalized("a/b"), Err(InvalidPath::NotAbsolute));
        assert_eq!(normalized("/ok?%zz"), Ok("/ok".to_owned()));
        assert_eq!(url_for(&urls(&["/"]), "/.."), "400");
        let nothing = CompiledListener::new(vec![]);
        assert!(matches!(
            nothing.route("a.com", "/a%zz"),
            ClbRoute::BadRequest(_)
        ));
    }

    #[test]
    fn rule_with_question_mark_or_equals_is_reached_through_percent_encoding() {
        let l = urls(&["/", "=/a?b", "/x=1/"]);
        assert_eq!(url_for(&l, "/a%3Fb"), "=/a?b");
        assert_eq!(url_for(&l, "/a?b"), "/");
        assert_eq!(url_for(&l, "/x%3D1/y"), "/x=1/");
    }

    #[test]
    fn redirect_escapes_a_question_mark_of_the_url_and_keeps_the_raw_query() {
        let l = urls(&["/a?/"]);
        assert_eq!(url_for(&l, "/a%3F?q=%41"), "301 /a%3F/?q=%41");
        assert_eq!(url_for(&urls(&["/abc/"]), "/x/../abc#f?q"), "301 /abc/");
    }

    #[test]
    fn host_port_and_one_trailing_dot_are_dropped_like_nginx() {
        assert_eq!(normalize_host(" A.Com:8080 "), "a.com");
        assert_eq!(normalize_host("a.com:x"), "a.com");
        assert_eq!(normalize_host("a.com.."), "a.com.");
        assert_eq!(normalize_host("[::1]:80"), "[::1]");
    }

    // ---- Trailing-slash 301 ----

    #[test]
    fn prefix_with_trailing_slash_redirects_the_path_without_it() {
        let l = urls(&["/abc/"]);
        assert_eq!(url_for(&l, "/abc"), "301 /abc/");
        assert_eq!(url_for(&l, "/abc/"), "/abc/");
        assert_eq!(url_for(&l, "/abc/d"), "/abc/");
    }

    #[test]
    fn redirect_keeps_the_query_string() {
        let l = urls(&["/abc/"]);
        assert_eq!(
            l.route("a.com", "/abc?x=1&y=2"),
            ClbRoute::Redirect {
                location: "/abc/?x=1&y=2".to_owned()
            }
        );
        assert_eq!(url_for(&l, "/abc?"), "301 /abc/");
    }

    #[test]
    fn prefix_without_trailing_slash_matches_both_forms() {
        let l = urls(&["/abc"]);
        assert_eq!(url_for(&l, "/abc"), "/abc");
        assert_eq!(url_for(&l, "/abc/"), "/abc");
    }

    #[test]
    fn exact_and_no_regex_urls_with_trailing_slash_also_redirect() {
        assert_eq!(url_for(&urls(&["=/abc/"]), "/abc"), "301 /abc/");
        assert_eq!(url_for(&urls(&["^~/abc/"]), "/abc"), "301 /abc/");
    }

    #[test]
    fn regex_url_with_trailing_slash_does_not_redirect() {
        assert_eq!(url_for(&urls(&["~/abc/"]), "/abc"), "404");
    }

    #[test]
    fn no_redirect_when_a_rule_equals_the_path() {
        assert_eq!(url_for(&urls(&["/abc/", "/abc"]), "/abc"), "/abc");
        assert_eq!(url_for(&urls(&["/abc/", "^~/abc"]), "/abc"), "^~/abc");
        assert_eq!(url_for(&urls(&["/abc/", "=/abc"]), "/abc"), "=/abc");
    }

    #[test]
    fn redirect_wins_over_shorter_prefixes_and_regexes() {
        let l = urls(&["/", "~abc", "/abc/"]);
        assert_eq!(url_for(&l, "/abc"), "301 /abc/");
    }

    // ---- Invalid regexes ----

    #[test]
    fn invalid_url_regex_never_matches_and_is_reported() {
        let l = urls(&["~/(a", "/"]);
        assert_eq!(url_for(&l, "/(a"), "/");
        let p = &l.problems()[0];
        assert_eq!((p.domain, p.rule, p.never_matches), (0, Some(0), true));
        assert!(p.message.contains("~/(a"), "{}", p.message);
        assert!(l.validate().is_err());
    }

    #[test]
    fn invalid_domain_regex_never_matches_and_is_reported() {
        let l = CompiledListener::new(vec![
            domain("~^(www", false, &["/"]),
            domain("a.com", true, &["/"]),
        ]);
        assert_eq!(show(&l, "www", "/"), "a.com /");
        assert_eq!(l.problems().len(), 1);
        assert_eq!(l.problems()[0].rule, None);
        assert!(l.problems()[0].never_matches);
    }

    #[test]
    fn lookaround_and_backreference_regexes_are_reported_not_panicking() {
        let l = CompiledListener::new(vec![
            domain("~^(?!www)", false, &["/"]),
            domain(r"~^(a)\1$", false, &["/"]),
        ]);
        assert_eq!(l.route("api", "/"), ClbRoute::NotFound);
        assert_eq!(l.problems().len(), 2);
    }

    #[test]
    fn valid_listener_has_no_problems() {
        let l = CompiledListener::new(vec![
            domain("www.a.com", true, &["/", "=/x", "^~/s", "~* .png$"]),
            domain("*.a.com", false, &["/"]),
            domain(r"~^www\d+\.a\.com$", false, &["/"]),
        ]);
        assert_eq!(l.validate(), Ok(()));
    }

    #[test]
    fn syntax_problem_is_reported_but_still_routes() {
        let l = urls(&["/a b"]);
        assert_eq!(url_for(&l, "/a b/c"), "/a b");
        assert_eq!(l.problems().len(), 1);
        assert!(!l.problems()[0].never_matches);
    }

    // ---- PCRE translation ----

    #[test]
    fn class_operators_of_the_regex_crate_are_literal_like_pcre() {
        let re = compile_regex("^[a&&b]$", false).unwrap();
        assert!(re.is_match(b"&"));
        let re = compile_regex("^[~~]$", false).unwrap();
        assert!(re.is_match(b"~"));
        let re = compile_regex("^[[]$", false).unwrap();
        assert!(re.is_match(b"["));
        let re = compile_regex("^[]a]+$", false).unwrap();
        assert!(re.is_match(b"]a]"));
    }

    #[test]
    fn pcre_horizontal_space_escape_is_translated() {
        let re = compile_regex(r"a\hb", false).unwrap();
        assert!(re.is_match(b"a b"));
        assert!(!re.is_match(b"a\nb"));
    }

    #[test]
    fn nested_or_possessive_quantifiers_are_refused() {
        assert!(compile_regex("a**", false).is_err());
        assert!(compile_regex("a???", false).is_err());
        assert!(compile_regex("a*+", false).is_err());
        assert!(compile_regex("^*", false).is_err());
        assert!(compile_regex("a*?", false).is_ok());
    }

    // ---- check_domain ----

    #[test]
    fn check_domain_accepts_each_documented_form() {
        assert_eq!(check_domain("www.example.com"), Ok(DomainForm::Exact));
        assert_eq!(check_domain("my_host-1.a.com"), Ok(DomainForm::Exact));
        assert_eq!(
            check_domain("*.example.com"),
            Ok(DomainForm::LeadingWildcard)
        );
        assert_eq!(
            check_domain("www.example.*"),
            Ok(DomainForm::TrailingWildcard)
        );
        assert_eq!(
            check_domain(r"~^www\d+\.example\.com$"),
            Ok(DomainForm::Regex)
        );
        assert_eq!(
            check_domain(&format!("{}.com", "a".repeat(76))),
            Ok(DomainForm::Exact)
        );
    }

    #[test]
    fn check_domain_rejects_bad_length() {
        assert!(check_domain("").unwrap_err().contains("1-80"));
        let long = format!("{}.com", "a".repeat(77));
        assert!(check_domain(&long).unwrap_err().contains("81 characters"));
    }

    #[test]
    fn check_domain_rejects_leading_underscore() {
        assert!(check_domain("_a.com").unwrap_err().contains("`_`"));
    }

    #[test]
    fn check_domain_rejects_upper_case_and_foreign_characters() {
        assert!(check_domain("WWW.a.com").unwrap_err().contains("`W`"));
        assert!(check_domain("a b.com").is_err());
        assert!(check_domain("a:80").is_err());
        assert!(check_domain("~^WWW").is_err());
        assert!(check_domain("~^a/b").is_err());
    }

    #[test]
    fn check_domain_rejects_misplaced_or_repeated_wildcards() {
        for d in [
            "*",
            "*.",
            ".*",
            "a*.com",
            "*a.com",
            "www.*.com",
            "*.a.*",
            "*.*.com",
            "a.b*",
        ] {
            assert!(check_domain(d).is_err(), "{d}");
        }
    }

    #[test]
    fn check_domain_rejects_bad_regexes() {
        assert!(check_domain("~").unwrap_err().contains("empty"));
        assert!(check_domain("~~a").unwrap_err().contains("single `~`"));
        assert!(check_domain("~^(a").is_err());
    }

    // ---- check_url ----

    #[test]
    fn check_url_accepts_each_documented_form() {
        assert_eq!(check_url("/"), Ok(UrlForm::Prefix));
        assert_eq!(check_url("/a-b_c.d/E=f?g"), Ok(UrlForm::Prefix));
        assert_eq!(check_url("=/exact"), Ok(UrlForm::Exact));
        assert_eq!(check_url("^~/static/"), Ok(UrlForm::PrefixNoRegex));
        assert_eq!(
            check_url("~/11_*"),
            Ok(UrlForm::Regex {
                case_insensitive: false
            })
        );
        assert_eq!(
            check_url("~* .png$"),
            Ok(UrlForm::Regex {
                case_insensitive: true
            })
        );
        assert_eq!(
            check_url("~*^/a:b$"),
            Ok(UrlForm::Regex {
                case_insensitive: true
            })
        );
        assert_eq!(
            check_url(&format!("/{}", "a".repeat(199))),
            Ok(UrlForm::Prefix)
        );
    }

    #[test]
    fn check_url_rejects_bad_length() {
        assert!(check_url("").unwrap_err().contains("1-200"));
        let long = format!("/{}", "a".repeat(200));
        assert!(check_url(&long).unwrap_err().contains("201 characters"));
    }

    #[test]
    fn check_url_requires_a_leading_slash_for_non_regex_forms() {
        for u in ["abc", "=abc", "^~abc", "= /abc", "^~ /abc", "=", "^~"] {
            assert!(
                check_url(u).unwrap_err().contains("starting with `/`"),
                "{u}"
            );
        }
    }

    #[test]
    fn check_url_rejects_characters_outside_the_charsets() {
        for u in ["/a b", "/a%20", "/a*", "=/a*", "^~/a$", "/a~", "/a:b"] {
            assert!(check_url(u).is_err(), "{u}");
        }
        for u in [r"~/a\d", "~/(a)", "~/a[b]", "~/a+", "~*  .png$"] {
            assert!(check_url(u).is_err(), "{u}");
        }
    }

    #[test]
    fn check_url_rejects_bad_regexes() {
        assert!(check_url("~").unwrap_err().contains("empty"));
        assert!(check_url("~* ").unwrap_err().contains("empty"));
        assert!(check_url("~~/a").unwrap_err().contains("single `~`"));
        assert!(check_url("~*/a**").unwrap_err().contains("nested"));
        assert!(check_url("~*").is_err());
    }
}
