//! The SSL certificate service (service `ssl`, version 2019-12-05): UploadCertificate,
//! DescribeCertificate(s) and DeleteCertificate over the store in `cert_store`.

use crate::core::Core;
use crate::error::{ApiFailure, codes};
use crate::state::{Cert, CertRef};
use clb_api::types::*;

use super::cert_store;
use super::common::{Handled, reply};

/// DescribeCertificates paging.
pub const DEFAULT_CERT_LIMIT: i64 = 20;
pub const MAX_CERT_LIMIT: i64 = 1000;

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
            let uses = |c: &Option<CertRef>| {
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

pub fn upload_certificate(core: &mut Core, r: UploadCertificateRequest) -> Handled {
    let kind = r.certificate_type.as_deref().unwrap_or("SVR");
    if kind != "SVR" && kind != "CA" {
        return Err(ApiFailure::invalid_value(format!(
            "CertificateType must be SVR or CA, got {kind}"
        )));
    }
    let id = cert_store::store(
        core,
        &r.certificate_public_key,
        r.certificate_private_key.as_deref(),
        kind,
        r.alias.as_deref().unwrap_or_default(),
    )?;
    reply(&UploadCertificateResponse { certificate_id: id }, vec![])
}

pub fn describe_certificate(core: &mut Core, r: DescribeCertificateRequest) -> Handled {
    let c = core
        .state
        .certs
        .get(&r.certificate_id)
        .ok_or_else(|| cert_store::cert_not_found(&r.certificate_id))?;
    reply(&detail(c), vec![])
}

pub fn describe_certificates(core: &mut Core, r: DescribeCertificatesRequest) -> Handled {
    // ssl api.json: "最大值1000，如超过1000按1000处理" (at most 1000; more is taken as 1000).
    let limit = r.limit.unwrap_or(DEFAULT_CERT_LIMIT).min(MAX_CERT_LIMIT);
    if limit < 0 || r.offset.unwrap_or(0) < 0 {
        return Err(ApiFailure::new(
            codes::INVALID_PARAMETER,
            "Limit and Offset must not be negative",
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
    reply(
        &DescribeCertificatesResponse {
            total_count: all.len() as i64,
            certificates,
        },
        vec![],
    )
}

pub fn delete_certificate(core: &mut Core, r: DeleteCertificateRequest) -> Handled {
    if !core.state.certs.contains_key(&r.certificate_id) {
        return Err(cert_store::cert_not_found(&r.certificate_id));
    }
    if cert_in_use(core, &r.certificate_id) {
        return Err(ApiFailure::new(
            codes::FAILED_OPERATION,
            format!("certificate {} is used by a CLB listener", r.certificate_id),
        ));
    }
    core.state.certs.remove(&r.certificate_id);
    reply(
        &DeleteCertificateResponse {
            delete_result: true,
        },
        vec![],
    )
}
