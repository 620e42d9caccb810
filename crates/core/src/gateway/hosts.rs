//! Gateway API hostnames: a listener's or route's hostname is exact (`a.example.com`), a
//! wildcard (`*.example.com`: one OR MORE labels before `.example.com`, never `example.com`
//! itself; unlike Ingress, where `*` is exactly one label) or absent (any host).

use std::cmp::Ordering;
use std::fmt;

/// A hostname pattern of a listener, a route, or their intersection.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HostPattern {
    /// No hostname: every host.
    Any,
    Exact(String),
    /// `*.suffix`, holding the suffix.
    Wildcard(String),
}

impl HostPattern {
    /// The pattern of an optional hostname as written (`None` or empty: any host).
    pub fn of(hostname: Option<&str>) -> Self {
        match hostname.filter(|h| !h.is_empty()) {
            None => HostPattern::Any,
            Some(h) => match h.strip_prefix("*.") {
                Some(suffix) => HostPattern::Wildcard(suffix.to_string()),
                None => HostPattern::Exact(h.to_string()),
            },
        }
    }

    /// Does a request's host (lower-case, without port) match?
    pub fn matches(&self, host: &str) -> bool {
        match self {
            HostPattern::Any => true,
            HostPattern::Exact(h) => h == host,
            HostPattern::Wildcard(s) => host
                .strip_suffix(s.as_str())
                .and_then(|rest| rest.strip_suffix('.'))
                .is_some_and(|label| !label.is_empty()),
        }
    }

    /// Does every host `other` matches also match `self`?
    pub fn covers(&self, other: &HostPattern) -> bool {
        match (self, other) {
            (HostPattern::Any, _) => true,
            (_, HostPattern::Any) => false,
            (HostPattern::Exact(a), HostPattern::Exact(b)) => a == b,
            (HostPattern::Exact(_), HostPattern::Wildcard(_)) => false,
            (HostPattern::Wildcard(_), HostPattern::Exact(h)) => self.matches(h),
            (HostPattern::Wildcard(a), HostPattern::Wildcard(b)) => {
                a == b || b.strip_suffix(a.as_str()).is_some_and(|r| r.ends_with('.'))
            }
        }
    }

    /// The hosts both patterns match, when that set is itself one pattern (the more specific
    /// of the two), or None when they match no host in common. Gateway API: a route hostname
    /// that does not match its listener's hostname is ignored.
    pub fn intersect(&self, other: &HostPattern) -> Option<HostPattern> {
        if self.covers(other) {
            Some(other.clone())
        } else if other.covers(self) {
            Some(self.clone())
        } else {
            None
        }
    }

    /// Precedence between patterns that both match a host: an exact name first, then the
    /// longer wildcard, then any host (Gateway API: "characters in a matching non-wildcard
    /// hostname, then characters in a matching hostname"). `Greater` = more specific.
    pub fn specificity(&self, other: &HostPattern) -> Ordering {
        fn rank(p: &HostPattern) -> (u8, usize) {
            match p {
                HostPattern::Any => (0, 0),
                HostPattern::Wildcard(s) => (1, s.len()),
                HostPattern::Exact(h) => (2, h.len()),
            }
        }
        rank(self).cmp(&rank(other))
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostPattern::Any => f.write_str("*"),
            HostPattern::Exact(h) => f.write_str(h),
            HostPattern::Wildcard(s) => write!(f, "*.{s}"),
        }
    }
}

/// Check a Gateway API hostname (`hostname` of a listener, `hostnames[]` of a route): a
/// lower-case DNS name, optionally `*.` before it, no IP address, at most 253 characters.
pub fn check_hostname(h: &str) -> Result<(), String> {
    let bare = h.strip_prefix("*.").unwrap_or(h);
    if h.len() > 253
        || bare.is_empty()
        || !bare.split('.').all(crate::model::translate::dns_label_ok)
    {
        return Err(format!(
            "hostname {h:?} is not a lower-case DNS name (or `*.` followed by one)"
        ));
    }
    if bare
        .split('.')
        .all(|l| l.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(format!("hostname {h:?} is an IP address"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> HostPattern {
        HostPattern::of(Some(s))
    }

    #[test]
    fn a_gateway_wildcard_matches_one_or_more_labels_but_not_the_bare_suffix() {
        let w = p("*.example.com");
        assert!(w.matches("a.example.com"));
        assert!(w.matches("a.b.example.com"));
        assert!(!w.matches("example.com"));
        assert!(!w.matches("aexample.com"));
        assert!(!w.matches(".example.com"));
    }

    #[test]
    fn intersection_keeps_the_more_specific_hostname_or_nothing() {
        assert_eq!(
            p("*.example.com").intersect(&p("foo.example.com")),
            Some(p("foo.example.com"))
        );
        assert_eq!(
            p("*.example.com").intersect(&p("*.bar.example.com")),
            Some(p("*.bar.example.com"))
        );
        assert_eq!(p("*.example.com").intersect(&p("example.com")), None);
        assert_eq!(p("a.com").intersect(&p("b.com")), None);
        assert_eq!(
            HostPattern::Any.intersect(&p("*.a.com")),
            Some(p("*.a.com"))
        );
        assert_eq!(p("*.a.com").intersect(&p("*.b.com")), None);
        assert_eq!(p("*.b.com").intersect(&p("*.ab.com")), None);
    }

    #[test]
    fn exact_beats_the_longer_wildcard_which_beats_any_host() {
        assert_eq!(p("a.com").specificity(&p("*.x.y.a.com")), Ordering::Greater);
        assert_eq!(p("*.b.a.com").specificity(&p("*.a.com")), Ordering::Greater);
        assert_eq!(HostPattern::Any.specificity(&p("*.a.com")), Ordering::Less);
    }

    #[test]
    fn hostnames_outside_dns_syntax_are_refused() {
        assert!(check_hostname("Foo.com").is_err());
        assert!(check_hostname("1.2.3.4").is_err());
        assert!(check_hostname("*.*.a.com").is_err());
        assert!(check_hostname("*.a.com").is_ok());
        assert!(check_hostname("a-b.c.com").is_ok());
    }
}
