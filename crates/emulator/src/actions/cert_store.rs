//! The certificate store the CLB actions and the SSL service share: checking and storing PEM
//! certificates, and resolving a CLB `Certificate` / `MultiCertInfo` (a CertId or inline PEM,
//! which is uploaded) into the `CertRef` a listener or rule keeps.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::core::Core;
use crate::error::{ApiFailure, codes};
use crate::state::{Cert, CertRef};
use clb_api::types::*;

/// The SSL service's `FailedOperation.CertificateNotFound` for a certificate id (ssl api
/// errorcodes; DescribeCertificate, DeleteCertificate).
pub fn cert_not_found(id: &str) -> ApiFailure {
    ApiFailure::new(
        codes::CERTIFICATE_NOT_FOUND,
        format!("certificate {id} not found"),
    )
}

/// What a CLB action answers for a CertId that does not exist: `InvalidParameter` with a
/// message. The CLB service documents no certificate code (its errorcodes list has none;
/// `FailedOperation.CertificateNotFound` belongs to the SSL service).
pub fn clb_cert_not_found(id: &str) -> ApiFailure {
    ApiFailure::new(
        codes::INVALID_PARAMETER,
        format!("Certificate {id} does not exist."),
    )
}

/// The SSL service's code for a private key that is not the certificate's (ssl errorcodes).
pub const KEY_MISMATCH: &str = "InvalidParameter.MissMatchPrivateKey";

/// A `store` failure as a CLB action answers it: the SSL-only key-mismatch code becomes the
/// CLB's `InvalidParameter` (same message).
fn for_clb(e: ApiFailure) -> ApiFailure {
    if e.code == KEY_MISMATCH {
        ApiFailure::new(codes::INVALID_PARAMETER, e.message)
    } else {
        e
    }
}

/// Check PEM text and store a certificate; returns its new id.
pub fn store(
    core: &mut Core,
    cert_pem: &str,
    key_pem: Option<&str>,
    kind: &str,
    alias: &str,
) -> Result<String, ApiFailure> {
    let certs = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ApiFailure::invalid_value(format!("certificate PEM does not parse: {e}")))?;
    if certs.is_empty() {
        return Err(ApiFailure::invalid_value(
            "certificate PEM has no CERTIFICATE block",
        ));
    }
    if kind == "SVR" {
        let Some(key) = key_pem else {
            return Err(ApiFailure::missing("private key"));
        };
        let der = PrivateKeyDer::from_pem_slice(key.as_bytes()).map_err(|e| {
            ApiFailure::invalid_value(format!("private key PEM does not parse: {e}"))
        })?;
        // The key must be the certificate's (CertifiedKey::from_der compares the public keys).
        let provider = rustls::crypto::ring::default_provider();
        rustls::sign::CertifiedKey::from_der(certs.clone(), der, &provider).map_err(|e| {
            ApiFailure::new(
                KEY_MISMATCH,
                format!("the private key does not match the certificate: {e}"),
            )
        })?;
    }
    let id = core.new_cert_id();
    let cert = Cert {
        id: id.clone(),
        alias: alias.to_string(),
        kind: kind.to_string(),
        cert_pem: cert_pem.to_string(),
        key_pem: key_pem.map(str::to_string),
        insert_time: core.time_string(),
    };
    core.state.certs.insert(id.clone(), cert);
    Ok(id)
}

/// A stored certificate of the given kind (`SVR` or `CA`), or the CLB's `InvalidParameter`.
pub fn require_cert(core: &Core, id: &str, kind: &str) -> Result<(), ApiFailure> {
    match core.state.certs.get(id) {
        Some(c) if c.kind == kind => Ok(()),
        Some(c) => Err(ApiFailure::invalid_value(format!(
            "certificate {id} is a {} certificate, {kind} is needed",
            c.kind
        ))),
        None => Err(clb_cert_not_found(id)),
    }
}

/// Resolve a `CertificateInput` into a stored certificate reference (inline PEM is uploaded).
pub fn resolve_cert(core: &mut Core, c: &CertificateInput) -> Result<CertRef, ApiFailure> {
    let mode = c
        .ssl_mode
        .clone()
        .unwrap_or_else(|| "UNIDIRECTIONAL".into());
    if mode != "UNIDIRECTIONAL" && mode != "MUTUAL" {
        return Err(ApiFailure::invalid_value(format!(
            "SSLMode must be UNIDIRECTIONAL or MUTUAL, got {mode}"
        )));
    }
    let cert_id = match (&c.cert_id, &c.cert_content, &c.cert_key) {
        (Some(id), _, _) => {
            require_cert(core, id, "SVR")?;
            id.clone()
        }
        (None, Some(content), Some(key)) => {
            let alias = c.cert_name.clone().unwrap_or_default();
            store(core, content, Some(key), "SVR", &alias).map_err(for_clb)?
        }
        _ => {
            return Err(ApiFailure::missing(
                "Certificate.CertId (or CertContent + CertKey + CertName)",
            ));
        }
    };
    let cert_ca_id = if mode == "MUTUAL" {
        match (&c.cert_ca_id, &c.cert_ca_content) {
            (Some(id), _) => {
                require_cert(core, id, "CA")?;
                Some(id.clone())
            }
            (None, Some(content)) => {
                let alias = c.cert_ca_name.clone().unwrap_or_default();
                Some(store(core, content, None, "CA", &alias).map_err(for_clb)?)
            }
            _ => return Err(ApiFailure::missing("Certificate.CertCaId")),
        }
    } else {
        None
    };
    Ok(CertRef {
        ssl_verify_client: (mode == "MUTUAL")
            .then(|| c.ssl_verify_client.clone().unwrap_or_else(|| "ON".into())),
        ssl_mode: mode,
        cert_id,
        cert_ca_id,
        ext_cert_ids: vec![],
    })
}

/// Resolve a `MultiCertInfo` (first server certificate is the primary, others ExtCertIds).
pub fn resolve_multi(core: &mut Core, m: &MultiCertInfo) -> Result<CertRef, ApiFailure> {
    let mut server = Vec::new();
    let mut ca = None;
    for c in &m.cert_list {
        let id = match (&c.cert_id, &c.cert_content) {
            (Some(id), _) => {
                if !core.state.certs.contains_key(id) {
                    return Err(clb_cert_not_found(id));
                }
                id.clone()
            }
            (None, Some(content)) => {
                let kind = if c.cert_key.is_some() { "SVR" } else { "CA" };
                let alias = c.cert_name.clone().unwrap_or_default();
                store(core, content, c.cert_key.as_deref(), kind, &alias).map_err(for_clb)?
            }
            _ => return Err(ApiFailure::missing("MultiCertInfo.CertList.CertId")),
        };
        if core.state.certs.get(&id).is_some_and(|c| c.kind == "CA") {
            ca = Some(id);
        } else {
            server.push(id);
        }
    }
    if server.is_empty() {
        return Err(ApiFailure::missing("MultiCertInfo.CertList"));
    }
    let mutual = m.ssl_mode == "MUTUAL";
    if mutual && ca.is_none() {
        return Err(ApiFailure::missing("MultiCertInfo CA certificate"));
    }
    Ok(CertRef {
        ssl_mode: if mutual { "MUTUAL" } else { "UNIDIRECTIONAL" }.into(),
        ssl_verify_client: mutual
            .then(|| m.ssl_verify_client.clone().unwrap_or_else(|| "ON".into())),
        cert_id: server[0].clone(),
        cert_ca_id: ca,
        ext_cert_ids: server[1..].to_vec(),
    })
}

/// Certificate / MultiCertInfo, at most one of them.
pub fn resolve_either(
    core: &mut Core,
    cert: &Option<CertificateInput>,
    multi: &Option<MultiCertInfo>,
) -> Result<Option<CertRef>, ApiFailure> {
    match (cert, multi) {
        (Some(_), Some(_)) => Err(ApiFailure::combination(
            "Certificate and MultiCertInfo cannot both be given",
        )),
        (Some(c), None) => resolve_cert(core, c).map(Some),
        (None, Some(m)) => resolve_multi(core, m).map(Some),
        (None, None) => Ok(None),
    }
}
