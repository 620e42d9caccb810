//! TLS: certificates from Secrets (PEM or `qcloud_cert_id`), the default certificate, and the
//! certificate each domain serves.

use super::*;

impl<'a> Index<'a> {
    pub(super) fn certificate_from_secret(
        &self,
        ns: &str,
        name: &str,
        object: &ObjectRef,
        field: &str,
    ) -> Result<CertSource, Problem> {
        let problem = |reason, message| Problem {
            object: object.clone(),
            field: field.to_string(),
            reason,
            effect: Effect::Degraded,
            message,
        };
        let Some(secret) = self.secrets.get(&(ns, name)) else {
            return Err(problem(
                Reason::TlsSecretNotFound,
                format!("Secret {ns}/{name} not found"),
            ));
        };
        let dropped = self
            .snap
            .dropped_keys
            .get(&(ns.to_string(), name.to_string()));
        cert_from_secret_dropped(secret, dropped.map(String::as_str))
            .map_err(|m| problem(Reason::TlsSecretInvalid, m))
    }
}

/// [`cert_from_secret`] for a Secret whose private key the controller dropped after upload:
/// `dropped` is the fingerprint it computed when it had the key. Without `tls.key`, a PEM
/// certificate and that fingerprint give a certificate with no key material (its upload, should
/// it be needed again, reads the Secret again).
pub fn cert_from_secret_dropped(
    secret: &Secret,
    dropped: Option<&str>,
) -> Result<CertSource, String> {
    let has_key = secret
        .data
        .as_ref()
        .is_some_and(|d| d.contains_key("tls.key"))
        || secret
            .string_data
            .as_ref()
            .is_some_and(|d| d.contains_key("tls.key"));
    match dropped {
        Some(fingerprint) if !has_key => {
            let (ns, name) = meta_name(&secret.metadata);
            let cert = secret
                .data
                .as_ref()
                .and_then(|d| d.get("tls.crt"))
                .map(|b| String::from_utf8_lossy(&b.0).into_owned())
                .filter(|c| c.contains("-----BEGIN CERTIFICATE-----"))
                .ok_or_else(|| format!("Secret {ns}/{name} tls.crt is not a PEM certificate"))?;
            Ok(CertSource::Pem {
                secret: ObjectRef::namespaced("Secret", ns, name),
                fingerprint: fingerprint.to_string(),
                cert_pem: cert,
                key_pem: PrivateKeyPem::dropped(),
            })
        }
        _ => cert_from_secret(secret),
    }
}

/// A certificate from a `kubernetes.io/tls` Secret (PEM) or an Opaque one with `qcloud_cert_id`.
pub fn cert_from_secret(secret: &Secret) -> Result<CertSource, String> {
    let (ns, name) = meta_name(&secret.metadata);
    let get = |k: &str| -> Option<String> {
        secret
            .data
            .as_ref()
            .and_then(|d| d.get(k))
            .map(|b| String::from_utf8_lossy(&b.0).into_owned())
            .or_else(|| secret.string_data.as_ref().and_then(|d| d.get(k)).cloned())
    };
    if let Some(id) = get(SECRET_QCLOUD_CERT_ID) {
        let id = id.trim().to_string();
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err(format!(
                "Secret {ns}/{name} key {SECRET_QCLOUD_CERT_ID} is not a certificate id"
            ));
        }
        return Ok(CertSource::Id(id));
    }
    let (Some(cert), Some(key)) = (get("tls.crt"), get("tls.key")) else {
        return Err(format!(
            "Secret {ns}/{name} has neither {SECRET_QCLOUD_CERT_ID} nor tls.crt and tls.key"
        ));
    };
    if !cert.contains("-----BEGIN CERTIFICATE-----") {
        return Err(format!(
            "Secret {ns}/{name} tls.crt is not a PEM certificate"
        ));
    }
    if !key.contains("PRIVATE KEY-----") {
        return Err(format!(
            "Secret {ns}/{name} tls.key is not a PEM private key"
        ));
    }
    let fingerprint = hex::encode(Sha256::digest(format!("{cert}\n{key}").as_bytes()));
    Ok(CertSource::Pem {
        secret: ObjectRef::namespaced("Secret", ns, name),
        fingerprint,
        cert_pem: cert,
        key_pem: PrivateKeyPem::new(key),
    })
}

impl<'i, 'a> StackBuilder<'i, 'a> {
    pub(super) fn default_certificate(
        &mut self,
        contributions: &[Contribution],
    ) -> Option<CertSource> {
        let params = self.members.first().and_then(|m| m.params);
        if let Some(d) = params.and_then(|p| p.default_certificate.as_ref()) {
            if let Some(id) = &d.cert_id {
                if cert_id_allowed(params, id) {
                    return Some(CertSource::Id(id.clone()));
                }
                self.problems.push(Problem {
                    object: ObjectRef::cluster("IngressClass", "defaultCertificate"),
                    field: "spec.defaultCertificate.certId".into(),
                    reason: Reason::CertificateNotAllowed,
                    effect: Effect::Degraded,
                    message: "the default certificate id is not in the class's allowedCertificateIds; it is not used".into(),
                });
            }
            if let Some((ns, name)) = d.secret.as_deref().and_then(|s| s.split_once('/')) {
                let obj = ObjectRef::cluster("IngressClass", "defaultCertificate");
                match self.index.certificate_from_secret(
                    ns,
                    name,
                    &obj,
                    "spec.defaultCertificate.secret",
                ) {
                    Ok(c) => return Some(c),
                    Err(p) => self.problems.push(p),
                }
            }
        }
        // Without a class default, the oldest certificate becomes the CLB's default (served for
        // unknown SNI names, which no rule routes): on a shared CLB one from a namespace allowed
        // to catch all hosts first. An HTTPS listener needs one to answer at all.
        let oldest = |catch_all: bool| {
            contributions
                .iter()
                .filter(|c| !catch_all || self.may_catch_all(c.ns))
                .flat_map(|c| &c.tls)
                .map(|t| t.cert.clone())
                .next()
        };
        oldest(true).or_else(|| oldest(false))
    }

    /// Certificate for a domain: exact tls host, then wildcard tls host, then a host-less tls
    /// entry, oldest Ingress on the listener first; else the stack's default certificate.
    pub(super) fn cert_for(
        &self,
        host: translate::HostRef,
        contributions: &[Contribution],
        acc_members: &[usize],
        default: &Option<CertSource>,
    ) -> Option<CertSource> {
        if host == translate::HostRef::CatchAll {
            return default.clone();
        }
        let name = host.display();
        // Only the certificates of the namespace that owns the host (on a shared CLB).
        let on_listener: Vec<&Contribution> = contributions
            .iter()
            .filter(|c| {
                let key = &self.members[c.mi].key;
                acc_members.iter().any(|&mi| self.members[mi].key == *key)
                    && self.owns_host(c.ns, name)
            })
            .collect();
        let entries = || on_listener.iter().flat_map(|c| &c.tls);
        let exact = || entries().find(|t| t.hosts.iter().any(|h| h == name));
        let wildcard = || {
            entries().find(|t| {
                t.hosts.iter().any(|h| {
                    h.strip_prefix("*.").is_some_and(|suffix| {
                        name.split_once('.')
                            .is_some_and(|(l, rest)| l != "*" && rest == suffix)
                    })
                })
            })
        };
        let hostless = || entries().find(|t| t.hosts.is_empty());
        exact()
            .or_else(wildcard)
            .or_else(hostless)
            .map(|t| t.cert.clone())
            .or_else(|| default.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;

    const CERT: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    const KEY: &str = "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n";

    fn secret(with_key: bool) -> Secret {
        let mut data = BTreeMap::new();
        data.insert("tls.crt".to_string(), ByteString(CERT.as_bytes().to_vec()));
        if with_key {
            data.insert("tls.key".to_string(), ByteString(KEY.as_bytes().to_vec()));
        }
        Secret {
            metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                name: Some("s".into()),
                namespace: Some("ns".into()),
                ..Default::default()
            },
            data: Some(data),
            ..Default::default()
        }
    }

    #[test]
    fn a_secret_without_its_key_is_a_certificate_only_when_the_controller_dropped_that_key() {
        assert!(cert_from_secret_dropped(&secret(false), None).is_err());
        match cert_from_secret_dropped(&secret(false), Some("abc")) {
            Ok(CertSource::Pem {
                fingerprint,
                key_pem,
                cert_pem,
                ..
            }) => {
                assert_eq!(fingerprint, "abc");
                assert_eq!(key_pem.expose(), None);
                assert_eq!(cert_pem, CERT);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_secret_that_has_its_key_is_fingerprinted_from_it_whatever_was_dropped_before() {
        let fresh = cert_from_secret(&secret(true)).unwrap();
        let again = cert_from_secret_dropped(&secret(true), Some("stale")).unwrap();
        assert_eq!(fresh, again);
        match again {
            CertSource::Pem {
                fingerprint,
                key_pem,
                ..
            } => {
                assert_ne!(fingerprint, "stale");
                assert_eq!(key_pem.expose(), Some(KEY));
            }
            other => panic!("{other:?}"),
        }
    }
}
