//! Certificates clb-ingress uploads: named per cluster, and garbage-collected.
//!
//! The plan names an uploaded certificate by its content (`plan::cert_name`, the PEM's
//! sha256). In the SSL service, which is account-wide and shared by every cluster and region,
//! the alias also carries a hash of the cluster id: `clb-ingress-<cluster8>-<fingerprint>`.
//! So one cluster only ever finds, reuses and deletes its own uploads, and the garbage
//! collector can tell which certificates are its to judge. Certificates uploaded before this
//! naming (`clb-ingress-<fingerprint>`) are left alone: delete them by hand once unused.

use super::*;
use crate::plan::CERT_NAME_PREFIX;
use std::collections::BTreeSet;

/// One certificate this cluster uploaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnCertificate {
    pub id: String,
    /// The plan's name for it (`plan::cert_name`).
    pub name: String,
}

impl<A: ClbApi> Deployer<A> {
    /// The alias prefix of this cluster's uploads.
    pub fn cert_prefix(&self) -> String {
        let h = crate::model::ids::short_hash(&["certificates", &self.cluster_id]);
        format!("{CERT_NAME_PREFIX}{}-", &h[..8])
    }

    /// The alias under which the plan's certificate `name` is uploaded.
    pub fn cert_alias(&self, name: &str) -> String {
        let fingerprint = name.strip_prefix(CERT_NAME_PREFIX).unwrap_or(name);
        format!("{}{fingerprint}", self.cert_prefix())
    }

    /// The plan's name of a certificate of this cluster, from its alias (None: not ours).
    pub fn cert_name_of(&self, alias: &str) -> Option<String> {
        let fingerprint = alias.strip_prefix(&self.cert_prefix())?;
        (!fingerprint.is_empty() && fingerprint.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| format!("{CERT_NAME_PREFIX}{fingerprint}"))
    }

    /// Every certificate this cluster uploaded (by alias prefix, checked again locally:
    /// the search is a substring match on the server).
    pub async fn own_certificates(&self) -> Result<Vec<OwnCertificate>, DeployError> {
        let certs = self
            .client
            .describe_certificates(&DescribeCertificatesRequest {
                search_key: Some(self.cert_prefix()),
                ..Default::default()
            })
            .await
            .map_err(cloud("DescribeCertificates"))?;
        let mut seen = BTreeSet::new();
        Ok(certs
            .into_iter()
            .filter_map(|c| {
                let name = self.cert_name_of(&c.alias)?;
                seen.insert(c.certificate_id.clone())
                    .then_some(OwnCertificate {
                        id: c.certificate_id,
                        name,
                    })
            })
            .collect())
    }

    /// Certificate ids a CLB's listeners and rules use (any certificate, not only ours).
    pub async fn certificates_in_use(&self, lb_id: &str) -> Result<BTreeSet<String>, DeployError> {
        let listeners = self
            .client
            .describe_listeners(&DescribeListenersRequest {
                load_balancer_id: lb_id.to_string(),
                ..Default::default()
            })
            .await
            .map_err(cloud(format!("DescribeListeners {lb_id}")))?;
        let mut out = BTreeSet::new();
        let mut add = |c: &Option<CertificateOutput>| {
            if let Some(c) = c {
                out.extend(c.cert_id.clone());
                out.extend(c.cert_ca_id.clone());
            }
        };
        for l in &listeners {
            add(&l.certificate);
            for r in &l.rules {
                add(&r.certificate);
            }
        }
        Ok(out)
    }

    /// Delete one of this cluster's certificates, as [`Deployer::own_certificates`] listed it
    /// (`Ok(false)`: the service refused).
    pub async fn delete_own_certificate(&self, cert: &OwnCertificate) -> Result<bool, DeployError> {
        info!(id = %cert.id, name = %cert.name, "deleting a certificate no stack uses any more");
        self.client
            .delete_certificate(&cert.id)
            .await
            .map_err(cloud(format!("DeleteCertificate {}", cert.id)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clb::{ClientConfig, Credentials, Endpoint, credentials::SecretString};

    /// A deployer whose client is never called (naming is pure).
    fn deployer(cluster: &str) -> Deployer {
        let config = ClientConfig::new("ap-x", Endpoint::parse("http://127.0.0.1:1").unwrap());
        let creds = Credentials::new("id", SecretString::new("key"), None).unwrap();
        Deployer::new(ClbClient::new(config, creds).unwrap(), cluster)
    }

    #[test]
    fn certificate_aliases_are_per_cluster_and_map_back_to_the_plans_name() {
        let (a, b) = (deployer("cluster-a"), deployer("cluster-b"));
        let name = crate::plan::cert_name("0123456789abcdef0123456789abcdef");
        let alias = a.cert_alias(&name);
        assert!(alias.starts_with(&a.cert_prefix()), "{alias}");
        assert_ne!(a.cert_prefix(), b.cert_prefix());
        assert_eq!(a.cert_name_of(&alias), Some(name.clone()));
        assert_eq!(
            b.cert_name_of(&alias),
            None,
            "another cluster's upload is not ours"
        );
        // Legacy names (no cluster part) and look-alikes are never ours.
        assert_eq!(a.cert_name_of(&name), None);
        assert_eq!(a.cert_name_of(&a.cert_prefix()), None);
        assert_eq!(a.cert_name_of(&format!("{}x-y", a.cert_prefix())), None);
    }
}
