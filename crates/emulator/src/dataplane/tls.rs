//! TLS for HTTPS listeners: PEM certificates parsed into rustls keys, and the SNI certificate
//! resolver that picks a domain's certificate with CLB's domain precedence (clb-api.md §7.2, §8).
//!
//! Certificate choice for a ClientHello with server name `n` on an SNI listener: the
//! certificate of the domain that routing would pick for host `n`
//! (`CompiledListener::pick_domain`: exact → longest `*.suffix` → longest `prefix.*` → first
//! matching `~regex` → DefaultServer); if that domain has none (or no SNI was sent), the
//! DefaultServer domain's certificate; then the listener certificate.
//! A listener without SNI always serves its listener certificate. CLB does not document which
//! certificate an SNI listener serves for an unknown name (clb-api.md §10 q4); falling back to
//! the default domain and then the listener is this emulator's choice.

use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::CertPem;
use super::listener::SharedState;
use clb_ingress_core::matching::clb::{CompiledListener, normalize_host};

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

/// A listener's certificates, laid out for the resolver.
#[derive(Debug, Default)]
pub struct CertTable {
    pub sni: bool,
    pub listener: Option<Arc<CertifiedKey>>,
    /// Per domain, in the listener's domain order (the matcher's indices).
    pub domains: Vec<Option<Arc<CertifiedKey>>>,
    /// Index of the DefaultServer domain.
    pub default_domain: Option<usize>,
}

impl CertTable {
    /// The certificate to present for a ClientHello carrying `server_name` (if any), choosing
    /// the domain with the listener's own matcher so TLS and routing agree.
    pub fn choose(
        &self,
        matcher: &CompiledListener,
        server_name: Option<&str>,
    ) -> Option<Arc<CertifiedKey>> {
        if self.sni {
            let selected = server_name.and_then(|name| matcher.pick_domain(&normalize_host(name)));
            let domain_cert = |index: Option<usize>| {
                index
                    .and_then(|i| self.domains.get(i))
                    .and_then(Option::clone)
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
        let state = self.state.load();
        state
            .certs
            .choose(&state.matcher, client_hello.server_name())
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
