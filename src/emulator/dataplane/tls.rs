//! TLS for HTTPS listeners: PEM certificates parsed into rustls keys, and the SNI certificate
//! resolver that picks a domain's certificate with CLB's domain precedence (clb-api.md §7.2, §8).
//!
//! Certificate choice for a ClientHello with server name `n` on an SNI listener:
//! the certificate of the domain `n` selects (exact → longest `*.suffix` → longest `prefix.*` →
//! first matching `~regex` in creation order); if that domain has none (or nothing matched, or
//! no SNI was sent), the DefaultServer domain's certificate; then the listener certificate.
//! A listener without SNI always serves its listener certificate. CLB does not document which
//! certificate an SNI listener serves for an unknown name (clb-api.md §10 q4); falling back to
//! the default domain and then the listener is this emulator's choice.

use std::sync::Arc;

use regex::Regex;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::CertPem;
use super::listener::SharedState;

/// ALPN protocols the data plane offers (it speaks HTTP/1.1 only).
const ALPN_HTTP1: &[u8] = b"http/1.1";

/// Why a PEM certificate cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("the certificate PEM holds no CERTIFICATE block")]
    NoCertificate,
    #[error("the certificate PEM is malformed")]
    CertificatePem(#[source] rustls::pki_types::pem::Error),
    #[error("the key PEM holds no private key")]
    KeyPem(#[source] rustls::pki_types::pem::Error),
    #[error("rustls refuses the certificate and key")]
    Rejected(#[source] rustls::Error),
}

/// The crypto provider of the data plane (ring, as the rest of the crate).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Parse a PEM certificate chain and private key into a rustls key, checking they match.
pub fn certified_key(pem: &CertPem, provider: &CryptoProvider) -> Result<CertifiedKey, CertError> {
    let chain = CertificateDer::pem_slice_iter(pem.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(CertError::CertificatePem)?;
    if chain.is_empty() {
        return Err(CertError::NoCertificate);
    }
    let key = PrivateKeyDer::from_pem_slice(pem.key_pem.as_bytes()).map_err(CertError::KeyPem)?;
    CertifiedKey::from_der(chain, key, provider).map_err(CertError::Rejected)
}

/// One CLB domain string, compiled for host (or SNI name) matching.
#[derive(Debug, Clone)]
pub enum DomainPattern {
    /// `www.a.com` (stored lower-case).
    Exact(String),
    /// `*.a.com`, stored as the suffix `.a.com`.
    LeadingWildcard(String),
    /// `www.a.*`, stored as the prefix `www.a.`.
    TrailingWildcard(String),
    /// `~regex` (nginx server_name regex, matched against the lower-cased name).
    Regex(Regex),
    /// A regex that does not compile: matches nothing.
    Invalid,
}

impl DomainPattern {
    pub fn parse(domain: &str) -> Self {
        if let Some(re) = domain.strip_prefix('~') {
            return Regex::new(re).map_or(Self::Invalid, Self::Regex);
        }
        let domain = domain.to_ascii_lowercase();
        if let Some(suffix) = domain.strip_prefix('*') {
            Self::LeadingWildcard(suffix.to_owned())
        } else if let Some(prefix) = domain.strip_suffix('*') {
            Self::TrailingWildcard(prefix.to_owned())
        } else {
            Self::Exact(domain)
        }
    }
}

/// Select the domain a (normalised, lower-case) host name belongs to by CLB's precedence:
/// exact, longest leading wildcard, longest trailing wildcard, first regex. `None` if none
/// matches (the caller then falls back to the DefaultServer domain).
pub fn select_domain(patterns: &[DomainPattern], host: &str) -> Option<usize> {
    let exact = patterns
        .iter()
        .position(|p| matches!(p, DomainPattern::Exact(d) if d == host));
    let leading = || {
        longest(patterns, |p| match p {
            DomainPattern::LeadingWildcard(suffix)
                if host.len() > suffix.len() && host.ends_with(suffix.as_str()) =>
            {
                Some(suffix.len())
            }
            _ => None,
        })
    };
    let trailing = || {
        longest(patterns, |p| match p {
            DomainPattern::TrailingWildcard(prefix)
                if host.len() > prefix.len() && host.starts_with(prefix.as_str()) =>
            {
                Some(prefix.len())
            }
            _ => None,
        })
    };
    let regex = || {
        patterns
            .iter()
            .position(|p| matches!(p, DomainPattern::Regex(re) if re.is_match(host)))
    };
    exact.or_else(leading).or_else(trailing).or_else(regex)
}

/// The index of the pattern with the longest match length; the first one on ties.
fn longest(
    patterns: &[DomainPattern],
    match_len: impl Fn(&DomainPattern) -> Option<usize>,
) -> Option<usize> {
    let mut best: Option<(usize, usize)> = None;
    for (index, pattern) in patterns.iter().enumerate() {
        if let Some(len) = match_len(pattern) {
            if best.is_none_or(|(_, best_len)| len > best_len) {
                best = Some((index, len));
            }
        }
    }
    best.map(|(index, _)| index)
}

/// A listener's certificates, laid out for the resolver.
#[derive(Debug, Default)]
pub struct CertTable {
    pub sni: bool,
    pub listener: Option<Arc<CertifiedKey>>,
    /// Per domain (same order as the listener's domains): its pattern and certificate.
    pub domains: Vec<(DomainPattern, Option<Arc<CertifiedKey>>)>,
    /// Index of the DefaultServer domain.
    pub default_domain: Option<usize>,
}

impl CertTable {
    /// The certificate to present for a ClientHello carrying `server_name` (if any).
    pub fn choose(&self, server_name: Option<&str>) -> Option<Arc<CertifiedKey>> {
        if self.sni {
            let patterns: Vec<DomainPattern> =
                self.domains.iter().map(|(p, _)| p.clone()).collect();
            let selected = server_name
                .map(|name| name.trim_end_matches('.').to_ascii_lowercase())
                .and_then(|name| select_domain(&patterns, &name));
            let domain_cert = |index: Option<usize>| {
                index
                    .and_then(|i| self.domains.get(i))
                    .and_then(|(_, cert)| cert.clone())
            };
            if let Some(cert) = domain_cert(selected).or_else(|| domain_cert(self.default_domain)) {
                return Some(cert);
            }
        }
        self.listener.clone()
    }
}

/// Resolves certificates from the listener's current state, so certificate changes apply to the
/// next handshake without touching the socket.
#[derive(Debug)]
pub struct SniResolver {
    state: SharedState,
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.state.load().certs.choose(client_hello.server_name())
    }
}

/// The rustls server configuration of one listener socket: no client auth, HTTP/1.1, the SNI
/// resolver over the listener's live state.
pub fn server_config(
    provider: Arc<CryptoProvider>,
    state: SharedState,
) -> Result<rustls::ServerConfig, rustls::Error> {
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(SniResolver { state }));
    config.alpn_protocols = vec![ALPN_HTTP1.to_vec()];
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn patterns(domains: &[&str]) -> Vec<DomainPattern> {
        domains.iter().map(|d| DomainPattern::parse(d)).collect()
    }

    #[test]
    fn exact_domain_wins_over_wildcards_and_regexes() {
        let p = patterns(&["~^www", "*.a.com", "www.a.*", "www.a.com"]);
        assert_eq!(select_domain(&p, "www.a.com"), Some(3));
    }

    #[test]
    fn longest_leading_wildcard_wins_over_shorter_and_trailing_ones() {
        let p = patterns(&["www.b.*", "*.com", "*.b.com"]);
        assert_eq!(select_domain(&p, "www.b.com"), Some(2));
    }

    #[test]
    fn trailing_wildcard_wins_over_regex() {
        let p = patterns(&["~.*", "api.*"]);
        assert_eq!(select_domain(&p, "api.example.org"), Some(1));
    }

    #[test]
    fn first_matching_regex_in_creation_order_wins() {
        let p = patterns(&["~^x", "~^img\\d+\\.", "~^img"]);
        assert_eq!(select_domain(&p, "img7.a.com"), Some(1));
    }

    #[test]
    fn leading_wildcard_does_not_match_the_bare_suffix() {
        let p = patterns(&["*.a.com"]);
        assert_eq!(select_domain(&p, "a.com"), None);
    }

    #[test]
    fn unmatched_name_selects_no_domain() {
        let p = patterns(&["a.com", "*.b.com", "~^c"]);
        assert_eq!(select_domain(&p, "zzz.org"), None);
    }

    #[test]
    fn invalid_regex_domain_matches_nothing() {
        let p = patterns(&["~(unclosed"]);
        assert_eq!(select_domain(&p, "(unclosed"), None);
    }

    #[test]
    fn exact_domain_comparison_ignores_case() {
        let p = patterns(&["WWW.A.COM"]);
        assert_eq!(select_domain(&p, "www.a.com"), Some(0));
    }

    #[test]
    fn garbage_pem_is_an_error_not_a_panic() {
        let pem = CertPem {
            cert_id: "c".into(),
            cert_pem: "not a pem".into(),
            key_pem: "nope".into(),
        };
        assert!(matches!(
            certified_key(&pem, &provider()),
            Err(CertError::NoCertificate)
        ));
    }
}
