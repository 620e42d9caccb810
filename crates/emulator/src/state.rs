//! The emulator's resource state (CLBs, listeners, rules, targets, certificates), its JSON
//! persistence, and its projection onto the data plane configuration.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::dataplane::{
    CertPem, DataPlaneConfig, DomainPlane, LbPlane, ListenerPlane, PlaneProtocol, RulePlane,
    TargetPlane,
};
use clb_api::types::{HealthCheck, RewriteTarget, TagInfo};

/// Version of the state file format.
pub const STATE_FILE_VERSION: u32 = 1;

/// Why the state file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StateFileError {
    #[error("cannot read state file {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write state file {path}: {source}")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("state file {path} is not valid: {source}")]
    Parse {
        path: String,
        #[source]
        source: serde_json::Error,
    },
}

/// A certificate reference on a listener or domain (`CertificateOutput`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertRef {
    pub ssl_mode: String,
    pub ssl_verify_client: Option<String>,
    pub cert_id: String,
    pub cert_ca_id: Option<String>,
    pub ext_cert_ids: Vec<String>,
}

/// A stored certificate (SSL service, or an inline upload in `CertificateInput`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cert {
    pub id: String,
    pub alias: String,
    /// `SVR` or `CA`.
    pub kind: String,
    pub cert_pem: String,
    pub key_pem: Option<String>,
    pub insert_time: String,
}

/// A target bound to a rule (L7) or to a listener (L4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bound {
    pub instance_id: Option<String>,
    pub ip: String,
    pub port: u16,
    pub weight: u32,
    pub tag: Option<String>,
    pub registered_time: String,
}

impl Bound {
    /// Whether this is the same backend as `(instance_id | ip, port)`.
    pub fn same(&self, instance_id: Option<&str>, ip: &str, port: u16) -> bool {
        self.port == port
            && match (instance_id, self.instance_id.as_deref()) {
                (Some(a), Some(b)) => a == b,
                (None, None) => self.ip == ip,
                _ => false,
            }
    }
}

/// A forwarding rule (location) of an HTTP/HTTPS listener.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    pub id: String,
    /// The rule's domains: one for a single-domain rule, several for a multi-domain rule.
    pub domains: Vec<String>,
    pub multi_domain: bool,
    pub url: String,
    // Domain-level attributes, kept equal on every rule of a domain.
    pub default_server: bool,
    pub http2: bool,
    pub quic: bool,
    pub certificate: Option<CertRef>,
    // Rule-level attributes.
    pub health_check: Option<HealthCheck>,
    pub scheduler: String,
    pub session_expire_time: i64,
    pub forward_type: String,
    pub target_type: String,
    pub cookie_name: Option<String>,
    pub rewrite: Option<RewriteTarget>,
    pub be_auto_created: bool,
    pub targets: Vec<Bound>,
    pub create_time: String,
}

impl Rule {
    pub fn has_domain(&self, domain: &str) -> bool {
        self.domains.iter().any(|d| d == domain)
    }
}

/// A listener of a CLB.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listener {
    pub id: String,
    pub name: String,
    pub protocol: String,
    pub port: u16,
    pub certificate: Option<CertRef>,
    pub sni: bool,
    pub health_check: Option<HealthCheck>,
    pub scheduler: Option<String>,
    pub session_expire_time: Option<i64>,
    pub keepalive_enable: Option<i64>,
    pub target_type: String,
    /// Rules in creation order (HTTP/HTTPS only).
    pub rules: Vec<Rule>,
    /// Targets bound to the listener itself (L4 only).
    pub targets: Vec<Bound>,
    pub create_time: String,
}

impl Listener {
    pub fn is_l7(&self) -> bool {
        matches!(self.protocol.as_str(), "HTTP" | "HTTPS")
    }

    /// Domains in order of their first rule's creation.
    pub fn domains(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for r in &self.rules {
            for d in &r.domains {
                if !out.contains(d) {
                    out.push(d.clone());
                }
            }
        }
        out
    }

    /// The current DefaultServer domain, if any.
    pub fn default_domain(&self) -> Option<String> {
        self.rules
            .iter()
            .find(|r| r.default_server)
            .and_then(|r| r.domains.first().cloned())
    }

    /// Make `domain` the default (and no other domain).
    pub fn set_default(&mut self, domain: &str) {
        for r in &mut self.rules {
            r.default_server = r.has_domain(domain);
        }
    }
}

/// One load balancer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lb {
    pub id: String,
    pub name: String,
    /// `OPEN` or `INTERNAL`.
    pub lb_type: String,
    pub forward: i64,
    pub vip: Ipv4Addr,
    pub project_id: i64,
    pub vpc_id: String,
    pub subnet_id: Option<String>,
    pub tags: Vec<TagInfo>,
    pub address_ip_version: String,
    pub delete_protect: bool,
    pub pass_to_target: bool,
    pub create_time: String,
    /// Monotonic creation order.
    pub seq: u64,
    /// The creation task; the CLB reports `Status` 0 while it runs.
    pub create_task: Option<String>,
    pub listeners: Vec<Listener>,
}

impl Lb {
    pub fn listener(&self, id: &str) -> Option<&Listener> {
        self.listeners.iter().find(|l| l.id == id)
    }
    pub fn listener_mut(&mut self, id: &str) -> Option<&mut Listener> {
        self.listeners.iter_mut().find(|l| l.id == id)
    }
    pub fn target_count(&self) -> usize {
        self.listeners
            .iter()
            .map(|l| l.targets.len() + l.rules.iter().map(|r| r.targets.len()).sum::<usize>())
            .sum()
    }
}

/// Everything the emulator persists.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub version: u32,
    /// Shared with the copy a write keeps to undo itself (see `actions::dispatch`): a write
    /// copies only the CLB it changes, not every CLB.
    pub lbs: Vec<Arc<Lb>>,
    pub certs: BTreeMap<String, Cert>,
    pub seq: u64,
}

impl State {
    pub fn new() -> Self {
        Self {
            version: STATE_FILE_VERSION,
            ..Self::default()
        }
    }

    pub fn lb(&self, id: &str) -> Option<&Lb> {
        self.lbs.iter().find(|l| l.id == id).map(Arc::as_ref)
    }

    pub fn lb_mut(&mut self, id: &str) -> Option<&mut Lb> {
        self.lbs.iter_mut().find(|l| l.id == id).map(Arc::make_mut)
    }

    /// Whether an id (of any kind) is already used.
    pub fn id_in_use(&self, id: &str) -> bool {
        self.certs.contains_key(id)
            || self.lbs.iter().any(|lb| {
                lb.id == id
                    || lb
                        .listeners
                        .iter()
                        .any(|l| l.id == id || l.rules.iter().any(|r| r.id == id))
            })
    }

    /// Read a state file; a missing file is an empty state.
    pub fn load(path: &Path) -> Result<Self, StateFileError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::new()),
            Err(source) => {
                return Err(StateFileError::Read {
                    path: path.display().to_string(),
                    source,
                });
            }
        };
        serde_json::from_str(&text).map_err(|source| StateFileError::Parse {
            path: path.display().to_string(),
            source,
        })
    }

    /// Write the state file atomically (temp file + rename), readable by its owner only: it
    /// holds uploaded private keys.
    pub fn save(&self, path: &Path) -> Result<(), StateFileError> {
        let err = |source| StateFileError::Write {
            path: path.display().to_string(),
            source,
        };
        let text = serde_json::to_vec_pretty(self).map_err(|e| err(std::io::Error::other(e)))?;
        let tmp = path.with_extension("tmp");
        let _ = std::fs::remove_file(&tmp);
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&tmp).map_err(err)?;
        std::io::Write::write_all(&mut file, &text).map_err(err)?;
        drop(file);
        std::fs::rename(&tmp, path).map_err(err)
    }

    fn cert_pem(&self, r: Option<&CertRef>) -> Option<CertPem> {
        let r = r?;
        let c = self.certs.get(&r.cert_id)?;
        Some(CertPem {
            cert_id: c.id.clone(),
            cert_pem: c.cert_pem.clone(),
            key_pem: c.key_pem.clone().unwrap_or_default(),
        })
    }

    /// The data plane configuration: every HTTP/HTTPS listener of every CLB.
    pub fn to_plane(&self) -> DataPlaneConfig {
        let lbs = self
            .lbs
            .iter()
            .map(|lb| LbPlane {
                lb_id: lb.id.clone(),
                vip: lb.vip,
                listeners: lb
                    .listeners
                    .iter()
                    .filter_map(|l| self.listener_plane(l))
                    .collect(),
            })
            .collect();
        DataPlaneConfig { lbs }
    }

    /// The redirect a rewritten rule answers with (its target listener and rule must exist).
    fn rewrite_plane(&self, r: &Rule) -> Option<crate::dataplane::RewritePlane> {
        let rw = r.rewrite.as_ref()?;
        let target_listener = rw.target_listener_id.as_deref()?;
        let (listener, rule) = self.lbs.iter().flat_map(|lb| &lb.listeners).find_map(|l| {
            if l.id != target_listener {
                return None;
            }
            let rule = rw
                .target_location_id
                .as_deref()
                .and_then(|loc| l.rules.iter().find(|x| x.id == loc));
            Some((l, rule))
        })?;
        let protocol = match listener.protocol.as_str() {
            "HTTPS" => PlaneProtocol::Https,
            _ => PlaneProtocol::Http,
        };
        let take_url = rw.take_url.unwrap_or(true);
        Some(crate::dataplane::RewritePlane {
            code: u16::try_from(rw.rewrite_code.unwrap_or(302)).unwrap_or(302),
            protocol,
            port: listener.port,
            url: (!take_url)
                .then(|| rule.map(|x| x.url.trim_start_matches('=').to_string()))
                .flatten(),
        })
    }

    fn listener_plane(&self, l: &Listener) -> Option<ListenerPlane> {
        let protocol = match l.protocol.as_str() {
            "HTTP" => PlaneProtocol::Http,
            "HTTPS" => PlaneProtocol::Https,
            _ => return None,
        };
        let domains = l
            .domains()
            .into_iter()
            .map(|d| {
                let rules: Vec<&Rule> = l.rules.iter().filter(|r| r.has_domain(&d)).collect();
                DomainPlane {
                    default_server: rules.iter().any(|r| r.default_server),
                    certificate: if l.sni {
                        self.cert_pem(rules.iter().find_map(|r| r.certificate.as_ref()))
                    } else {
                        None
                    },
                    rules: rules
                        .iter()
                        .map(|r| RulePlane {
                            rewrite: self.rewrite_plane(r),
                            location_id: r.id.clone(),
                            url: r.url.clone(),
                            health: crate::health::HealthPlane::from_rule(
                                r.health_check.as_ref(),
                                r.domains.first().map(String::as_str),
                            ),
                            targets: r
                                .targets
                                .iter()
                                .map(|t| TargetPlane {
                                    instance_id: t.instance_id.clone(),
                                    ip: t.ip.clone(),
                                    port: t.port,
                                    weight: t.weight,
                                })
                                .collect(),
                        })
                        .collect(),
                    domain: d,
                }
            })
            .collect();
        Some(ListenerPlane {
            listener_id: l.id.clone(),
            protocol,
            port: l.port,
            certificate: self.cert_pem(l.certificate.as_ref()),
            sni: l.sni,
            domains,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(id: &str, domain: &str, url: &str, default_server: bool) -> Rule {
        Rule {
            id: id.into(),
            domains: vec![domain.into()],
            multi_domain: false,
            url: url.into(),
            default_server,
            http2: false,
            quic: false,
            certificate: None,
            health_check: None,
            scheduler: "WRR".into(),
            session_expire_time: 0,
            forward_type: "HTTP".into(),
            target_type: "NODE".into(),
            cookie_name: None,
            rewrite: None,
            be_auto_created: false,
            targets: vec![],
            create_time: String::new(),
        }
    }

    fn listener(rules: Vec<Rule>) -> Listener {
        Listener {
            id: "lbl-1".into(),
            name: String::new(),
            protocol: "HTTP".into(),
            port: 80,
            certificate: None,
            sni: false,
            health_check: None,
            scheduler: None,
            session_expire_time: None,
            keepalive_enable: None,
            target_type: "NODE".into(),
            rules,
            targets: vec![],
            create_time: String::new(),
        }
    }

    #[test]
    fn domains_are_listed_in_first_rule_creation_order_without_repeats() {
        let l = listener(vec![
            rule("loc-1", "b.com", "/", true),
            rule("loc-2", "a.com", "/", false),
            rule("loc-3", "b.com", "/x", true),
        ]);
        assert_eq!(l.domains(), vec!["b.com", "a.com"]);
        assert_eq!(l.default_domain().as_deref(), Some("b.com"));
    }

    #[test]
    fn set_default_moves_the_flag_to_every_rule_of_the_new_domain_only() {
        let mut l = listener(vec![
            rule("loc-1", "b.com", "/", true),
            rule("loc-2", "a.com", "/", false),
            rule("loc-3", "a.com", "/x", false),
        ]);
        l.set_default("a.com");
        let flags: Vec<bool> = l.rules.iter().map(|r| r.default_server).collect();
        assert_eq!(flags, vec![false, true, true]);
    }

    #[test]
    fn plane_groups_rules_by_domain_and_skips_l4_listeners() {
        let mut tcp = listener(vec![]);
        tcp.protocol = "TCP".into();
        tcp.id = "lbl-2".into();
        let state = State {
            lbs: vec![Arc::new(Lb {
                id: "lb-1".into(),
                name: "x".into(),
                lb_type: "OPEN".into(),
                forward: 1,
                vip: Ipv4Addr::new(127, 1, 0, 1),
                project_id: 0,
                vpc_id: String::new(),
                subnet_id: None,
                tags: vec![],
                address_ip_version: "ipv4".into(),
                delete_protect: false,
                pass_to_target: false,
                create_time: String::new(),
                seq: 1,
                create_task: None,
                listeners: vec![
                    listener(vec![
                        rule("loc-1", "b.com", "/", true),
                        rule("loc-2", "a.com", "/", false),
                        rule("loc-3", "b.com", "/x", true),
                    ]),
                    tcp,
                ],
            })],
            ..State::new()
        };
        let plane = state.to_plane();
        assert_eq!(plane.lbs[0].listeners.len(), 1);
        let doms = &plane.lbs[0].listeners[0].domains;
        assert_eq!(doms[0].domain, "b.com");
        assert!(doms[0].default_server);
        assert_eq!(doms[0].rules.len(), 2);
        assert_eq!(doms[1].rules[0].location_id, "loc-2");
    }

    #[test]
    fn state_round_trips_through_the_state_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state.json");
        assert_eq!(State::load(&path).expect("missing is empty"), State::new());
        let mut s = State::new();
        s.seq = 7;
        s.save(&path).expect("saves");
        assert_eq!(State::load(&path).expect("loads"), s);
    }

    #[cfg(unix)]
    #[test]
    fn the_state_file_is_readable_by_its_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        State::new().save(&path).expect("saves");
        State::new()
            .save(&path)
            .expect("saves again over the old file");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{mode:o}");
    }
}
