//! A minimal SSL certificate service (service `ssl`, version 2019-12-05): UploadCertificate,
//! DescribeCertificate(s), DeleteCertificate, and the certificate store that CLB
//! `CertificateInput` (CertId or inline PEM) resolves against.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::actions::{Handled, TaskInfo, decode, to_value};
use crate::core::Core;
use crate::error::{ApiFailure, codes};
use crate::state::Cert;
use clb_api::types::*;

/// DescribeCertificates paging.
pub const DEFAULT_CERT_LIMIT: i64 = 20;
pub const MAX_CERT_LIMIT: i64 = 1000;

fn ok<T: serde::Serialize>(v: &T) -> Handled {
    Ok((to_value(v), TaskInfo::default()))
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
        PrivateKeyDer::from_pem_slice(key.as_bytes()).map_err(|e| {
            ApiFailure::invalid_value(format!("private key PEM does not parse: {e}"))
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

/// A stored certificate of the given kind (`SVR` or `CA`), or `FailedOperation.CertificateNotFound`.
pub fn require_cert(core: &Core, id: &str, kind: &str) -> Result<(), ApiFailure> {
    match core.state.certs.get(id) {
        Some(c) if c.kind == kind => Ok(()),
        Some(c) => Err(ApiFailure::invalid_value(format!(
            "certificate {id} is a {} certificate, {kind} is needed",
            c.kind
        ))),
        None => Err(ApiFailure::new(
            codes::CERTIFICATE_NOT_FOUND,
            format!("certificate {id} not found"),
        )),
    }
}

fn detail(c: &Cert) -> CertificateDetail {
    CertificateDetail {
        certificate_id: c.id.clone(),
        alias: c.alias.clone(),
        certificate_type: c.kind.clone(),
        domain: None,
        subject_alt_name: vec![],
        status: Some(1),
        insert_time: Some(c.insert_time.clone()),
    }
}

fn cert_in_use(core: &Core, id: &str) -> bool {
    core.state.lbs.iter().any(|lb| {
        lb.listeners.iter().any(|l| {
            let uses = |c: &Option<crate::state::CertRef>| {
                c.as_ref().is_some_and(|c| {
                    c.cert_id == id
                        || c.cert_ca_id.as_deref() == Some(id)
                        || c.ext_cert_ids.iter().any(|e| e == id)
                })
            };
            uses(&l.certificate) || l.rules.iter().any(|r| uses(&r.certificate))
        })
    })
}

/// Handle one SSL action.
pub fn handle(core: &mut Core, action: &str, body: &[u8]) -> Handled {
    match action {
        "UploadCertificate" => {
            let r: UploadCertificateRequest = decode(body)?;
            let kind = r.certificate_type.as_deref().unwrap_or("SVR");
            if kind != "SVR" && kind != "CA" {
                return Err(ApiFailure::invalid_value(format!(
                    "CertificateType must be SVR or CA, got {kind}"
                )));
            }
            let id = store(
                core,
                &r.certificate_public_key,
                r.certificate_private_key.as_deref(),
                kind,
                r.alias.as_deref().unwrap_or_default(),
            )?;
            ok(&UploadCertificateResponse { certificate_id: id })
        }
        "DescribeCertificate" => {
            let r: DescribeCertificateRequest = decode(body)?;
            let c = core.state.certs.get(&r.certificate_id).ok_or_else(|| {
                ApiFailure::new(
                    codes::CERTIFICATE_NOT_FOUND,
                    format!("certificate {} not found", r.certificate_id),
                )
            })?;
            ok(&detail(c))
        }
        "DescribeCertificates" => {
            let r: DescribeCertificatesRequest = decode(body)?;
            let limit = r.limit.unwrap_or(DEFAULT_CERT_LIMIT);
            if !(0..=MAX_CERT_LIMIT).contains(&limit) || r.offset.unwrap_or(0) < 0 {
                return Err(ApiFailure::new(
                    codes::INVALID_PARAMETER_VALUE_RANGE,
                    format!("Limit must be 0-{MAX_CERT_LIMIT} and Offset not negative"),
                ));
            }
            let all: Vec<&Cert> = core
                .state
                .certs
                .values()
                .filter(|c| {
                    r.search_key
                        .as_ref()
                        .is_none_or(|k| c.id.contains(k.as_str()) || c.alias.contains(k.as_str()))
                })
                .collect();
            let certificates = all
                .iter()
                .skip(r.offset.unwrap_or(0) as usize)
                .take(limit as usize)
                .map(|c| detail(c))
                .collect();
            ok(&DescribeCertificatesResponse {
                total_count: all.len() as i64,
                certificates,
            })
        }
        "DeleteCertificate" => {
            let r: DeleteCertificateRequest = decode(body)?;
            if !core.state.certs.contains_key(&r.certificate_id) {
                return Err(ApiFailure::new(
                    codes::CERTIFICATE_NOT_FOUND,
                    format!("certificate {} not found", r.certificate_id),
                ));
            }
            if cert_in_use(core, &r.certificate_id) {
                return Err(ApiFailure::new(
                    codes::FAILED_OPERATION,
                    format!("certificate {} is used by a CLB listener", r.certificate_id),
                ));
            }
            core.state.certs.remove(&r.certificate_id);
            ok(&DeleteCertificateResponse {
                delete_result: true,
            })
        }
        other => Err(ApiFailure::new(
            codes::INVALID_ACTION,
            format!("The action `{other}` is not supported by the ssl service."),
        )),
    }
}
