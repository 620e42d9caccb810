//! The emulator's data plane: serves each HTTP/HTTPS listener of each CLB on the CLB's loopback
//! VIP and routes requests with CLB's own matching (`clb_ingress_core::matching::clb`).
//!
//! INTERFACE (agreed between the control plane and the data plane): the control plane builds a
//! full `DataPlaneConfig` from its state after every change and hands it to `DataPlane::apply`.
//!
//! Sockets: listener port `P` of a CLB with VIP `V` (which must be in 127.0.0.0/8) is served on
//! `V:(P + port_offset)` (default offset [`DEFAULT_PORT_OFFSET`]), unless `port_map` names a
//! socket port for `P`; a socket port of 0 (or `ephemeral_ports`) binds an ephemeral port.
//! [`DataPlane::bound_addr`] tells where a listener actually serves.
//!
//! Each apply reconciles: listeners no longer configured are closed (open connections finish
//! their in-flight requests, then close); new ones are bound; existing ones keep their socket and
//! get the new routes and certificates atomically (each request and each TLS handshake uses one
//! consistent snapshot). Listeners are applied independently: one that cannot be served (a
//! non-loopback VIP, a bad certificate, a bind failure) is left unbound and reported in the
//! error, while the others are still applied.
//!
//! Answers: a rule's target is chosen by weighted random among targets with weight > 0 (weight 0
//! is never chosen; no such target → 503). Targets on 127.0.0.0/8 are proxied to over HTTP/1.1
//! (connection error → 502); any other target is never connected to: the data plane answers 200
//! itself with the routing facts. No rule → 404. The trailing-slash redirect is a 301 whose
//! `Location` is absolute (`scheme://Host/path?query`, the request's scheme and Host header)
//! when the request carries a Host, path-only otherwise. Every response the data plane can
//! attribute carries `x-clb-lb`, `x-clb-listener` and, once known, `x-clb-domain`, `x-clb-url`,
//! `x-clb-location` and `x-clb-target`; responses it wrote itself carry `x-clb-answered-by`.

mod listener;
mod serve;
mod tls;

use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, PoisonError, RwLock};

use rustls::crypto::CryptoProvider;

pub use serve::{
    HEADER_ANSWERED_BY, HEADER_DOMAIN, HEADER_LB, HEADER_LISTENER, HEADER_LOCATION, HEADER_TARGET,
    HEADER_URL,
};
pub use tls::CertError;

use crate::health::{HealthPlane, HealthTable, HealthTiming, ProbeJob, Prober};
use listener::{ListenerRuntime, ListenerState};
use serve::Handler;

/// The default distance between a CLB listener port and the local socket port (80 → 10080).
pub const DEFAULT_PORT_OFFSET: u16 = 10000;

/// The whole data plane configuration: every CLB with its listeners.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DataPlaneConfig {
    pub lbs: Vec<LbPlane>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LbPlane {
    pub lb_id: String,
    /// The loopback VIP reported in DescribeLoadBalancers (127.x.y.z).
    pub vip: Ipv4Addr,
    pub listeners: Vec<ListenerPlane>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlaneProtocol {
    Http,
    Https,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerPlane {
    pub listener_id: String,
    pub protocol: PlaneProtocol,
    /// The CLB listener port (80, 443, ...); the socket binds `port + port_offset`.
    pub port: u16,
    /// Listener-level certificate (HTTPS without SNI, or the fallback with SNI).
    pub certificate: Option<CertPem>,
    pub sni: bool,
    /// Domains in creation order.
    pub domains: Vec<DomainPlane>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainPlane {
    pub domain: String,
    pub default_server: bool,
    /// Per-domain certificate (SNI listeners only).
    pub certificate: Option<CertPem>,
    /// Rules in creation order.
    pub rules: Vec<RulePlane>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RulePlane {
    pub location_id: String,
    pub url: String,
    pub targets: Vec<TargetPlane>,
    /// The rule's health check (`None`: off, every target with weight > 0 gets traffic).
    /// With it on, loopback targets get traffic only once probed `Alive` (see [`crate::health`]).
    pub health: Option<HealthPlane>,
    /// A redirect set by AutoRewrite/ManualRewrite: the rule answers with it instead of
    /// forwarding to its targets.
    pub rewrite: Option<RewritePlane>,
}

/// Where a rewritten rule redirects to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RewritePlane {
    /// 301, 302 or 307.
    pub code: u16,
    /// The target listener's protocol and CLB port (mapped to its socket port when answering).
    pub protocol: PlaneProtocol,
    pub port: u16,
    /// The target rule's URL, or None to keep the request's path and query (`TakeUrl`).
    pub url: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetPlane {
    /// `ins-...` for CVM targets (never connected to), or None for EniIp targets.
    pub instance_id: Option<String>,
    /// The target's IP (the EniIp, or the CVM's private IP as the emulator records it).
    pub ip: String,
    pub port: u16,
    pub weight: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertPem {
    pub cert_id: String,
    pub cert_pem: String,
    pub key_pem: String,
}

/// How the data plane binds and chooses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataPlaneSettings {
    /// Socket port = listener port + `port_offset` (unless `port_map` or `ephemeral_ports` say
    /// otherwise). A sum above 65535 is an error for that listener.
    pub port_offset: u16,
    /// Explicit socket ports by CLB listener port (same for every CLB, they differ by VIP);
    /// 0 binds an ephemeral port.
    pub port_map: BTreeMap<u16, u16>,
    /// Bind every listener not in `port_map` on an ephemeral port (tests, several emulators).
    pub ephemeral_ports: bool,
    /// Seed of the weighted target choice; `None` seeds from the OS.
    pub rng_seed: Option<u64>,
    /// Connections open at once per listener; further ones wait in the listen backlog.
    pub max_connections: usize,
    /// A client that has not sent a whole request head this long after connecting (or after
    /// the previous answer, on a kept-alive connection) is disconnected.
    pub header_read_timeout: std::time::Duration,
    /// Probe interval and timeout overriding every rule's own (tests, demos).
    pub health_timing: HealthTiming,
}

/// Default cap on open connections per data plane listener.
pub const DEFAULT_MAX_CONNECTIONS_PER_LISTENER: usize = 1024;
/// Default header-read (and keep-alive idle) timeout of the data plane.
pub const DEFAULT_DATA_PLANE_HEADER_READ_TIMEOUT: std::time::Duration =
    std::time::Duration::from_secs(30);

impl Default for DataPlaneSettings {
    fn default() -> Self {
        Self {
            port_offset: DEFAULT_PORT_OFFSET,
            port_map: BTreeMap::new(),
            ephemeral_ports: false,
            rng_seed: None,
            max_connections: DEFAULT_MAX_CONNECTIONS_PER_LISTENER,
            header_read_timeout: DEFAULT_DATA_PLANE_HEADER_READ_TIMEOUT,
            health_timing: HealthTiming::default(),
        }
    }
}

impl DataPlaneSettings {
    /// Settings that bind every listener on an ephemeral port.
    pub fn ephemeral() -> Self {
        Self {
            ephemeral_ports: true,
            ..Self::default()
        }
    }

    /// The same settings with a fixed RNG seed.
    pub fn with_seed(self, seed: u64) -> Self {
        Self {
            rng_seed: Some(seed),
            ..self
        }
    }

    /// The socket port for CLB listener port `port` (0 = ephemeral), or `None` if the offset
    /// pushes it past 65535.
    pub fn socket_port(&self, port: u16) -> Option<u16> {
        if let Some(mapped) = self.port_map.get(&port) {
            return Some(*mapped);
        }
        if self.ephemeral_ports {
            return Some(0);
        }
        port.checked_add(self.port_offset)
    }
}

/// Why (part of) a configuration could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum DataPlaneError {
    #[error(
        "load balancer {lb_id}: VIP {vip} is not in 127.0.0.0/8; the emulator serves on loopback only"
    )]
    NonLoopbackVip { lb_id: String, vip: Ipv4Addr },
    #[error("load balancer {lb_id}: listener port {port} is configured more than once")]
    DuplicateListener { lb_id: String, port: u16 },
    #[error("load balancer {lb_id}: listener port {port} plus offset {offset} exceeds 65535")]
    PortOutOfRange {
        lb_id: String,
        port: u16,
        offset: u16,
    },
    #[error("load balancer {lb_id}: listener port {port}: cannot bind {addr}")]
    Bind {
        lb_id: String,
        port: u16,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("load balancer {lb_id}: listener port {port}: certificate {cert_id} is unusable")]
    Certificate {
        lb_id: String,
        port: u16,
        cert_id: String,
        #[source]
        source: CertError,
    },
    #[error("load balancer {lb_id}: listener port {port}: cannot build the TLS configuration")]
    Tls {
        lb_id: String,
        port: u16,
        #[source]
        source: rustls::Error,
    },
    #[error("{} listeners could not be applied: {}", .0.len(), list(.0))]
    Several(Vec<DataPlaneError>),
}

fn list(errors: &[DataPlaneError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

impl DataPlaneError {
    /// The individual failures (one for a single error).
    pub fn failures(&self) -> Vec<&DataPlaneError> {
        match self {
            Self::Several(errors) => errors.iter().collect(),
            other => vec![other],
        }
    }
}

/// A listener's identity in the data plane: its CLB and its CLB port.
type ListenerKey = (String, u16);

/// What an apply wants per listener: the address to bind, and the new state with the config it
/// was built from (`None` when the listener is already served with this exact config).
type Desired = HashMap<ListenerKey, (SocketAddr, Option<(ListenerState, ListenerPlane)>)>;

/// Where a listener serves, as reported by [`DataPlane::bound_listeners`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoundListener {
    pub lb_id: String,
    pub listener_id: String,
    pub port: u16,
    pub addr: SocketAddr,
}

/// The emulator's data plane: the listener sockets and their routing.
#[derive(Debug)]
pub struct DataPlane {
    settings: DataPlaneSettings,
    provider: Arc<CryptoProvider>,
    handler: Arc<Handler>,
    health: Arc<HealthTable>,
    prober: Prober,
    /// Serialises `apply` calls.
    apply_lock: tokio::sync::Mutex<()>,
    listeners: RwLock<HashMap<ListenerKey, ListenerRuntime>>,
}

impl DataPlane {
    pub fn new(settings: DataPlaneSettings) -> Self {
        let health = Arc::new(HealthTable::default());
        let handler = Arc::new(Handler::new(settings.rng_seed, health.clone()));
        let prober = Prober::new(health.clone(), settings.health_timing);
        Self {
            settings,
            provider: tls::provider(),
            handler,
            health,
            prober,
            apply_lock: tokio::sync::Mutex::new(()),
            listeners: RwLock::new(HashMap::new()),
        }
    }

    pub fn settings(&self) -> &DataPlaneSettings {
        &self.settings
    }

    /// The health-check results the data plane routes by.
    pub fn health_table(&self) -> Arc<HealthTable> {
        self.health.clone()
    }

    /// Make the served listeners match `cfg` (see the module docs). Must run inside a Tokio
    /// runtime. Returns the failures of the listeners that could not be served; all others are
    /// applied regardless.
    pub async fn apply(&self, cfg: DataPlaneConfig) -> Result<(), DataPlaneError> {
        let _serialised = self.apply_lock.lock().await;
        self.prober.set_jobs(probe_jobs(&cfg));
        let mut errors = Vec::new();
        let desired = self.desired(&cfg, &mut errors);

        // Close what is gone or must move (VIP or socket port changed) before binding, so an
        // address handed from one listener to another is free.
        let closing: Vec<ListenerRuntime> = {
            let mut listeners = self.write_listeners();
            let stale: Vec<ListenerKey> = listeners
                .iter()
                .filter(|(key, runtime)| {
                    desired
                        .get(*key)
                        .is_none_or(|(addr, _)| *addr != runtime.requested)
                })
                .map(|(key, _)| key.clone())
                .collect();
            stale
                .iter()
                .filter_map(|key| listeners.remove(key))
                .collect()
        };
        for runtime in closing {
            runtime.close().await;
        }

        for (key, (addr, change)) in desired {
            let Some((state, applied)) = change else {
                continue;
            };
            let unbound = {
                let mut listeners = self.write_listeners();
                match listeners.get_mut(&key) {
                    Some(runtime) => {
                        runtime.state.store(state);
                        runtime.applied = applied;
                        None
                    }
                    None => Some((state, applied)),
                }
            };
            let Some((state, applied)) = unbound else {
                continue;
            };
            let bound = ListenerRuntime::bind(
                addr,
                state,
                applied,
                self.handler.clone(),
                self.provider.clone(),
                listener::ConnLimits {
                    max_connections: self.settings.max_connections.max(1),
                    header_read_timeout: self.settings.header_read_timeout,
                },
            )
            .await;
            match bound {
                Ok(runtime) => {
                    tracing::info!(lb_id = %key.0, port = key.1, addr = %runtime.bound, "data plane listener bound");
                    self.write_listeners().insert(key, runtime);
                }
                Err(err) => errors.push(err),
            }
        }
        match errors.len() {
            0 => Ok(()),
            1 => Err(errors.remove(0)),
            _ => Err(DataPlaneError::Several(errors)),
        }
    }

    /// Close every listener (as `apply` of an empty configuration).
    pub async fn shutdown(&self) {
        // An empty configuration cannot fail.
        let _ = self.apply(DataPlaneConfig::default()).await;
    }

    /// The address listener port `listener_port` of CLB `lb_id` serves on, if it is bound.
    pub fn bound_addr(&self, lb_id: &str, listener_port: u16) -> Option<SocketAddr> {
        self.read_listeners()
            .get(&(lb_id.to_owned(), listener_port))
            .map(|r| r.bound)
    }

    /// Every bound listener, sorted by CLB and port.
    pub fn bound_listeners(&self) -> Vec<BoundListener> {
        let mut all: Vec<BoundListener> = self
            .read_listeners()
            .iter()
            .map(|((lb_id, port), runtime)| BoundListener {
                lb_id: lb_id.clone(),
                listener_id: runtime.state.load().listener_id.clone(),
                port: *port,
                addr: runtime.bound,
            })
            .collect();
        all.sort_by(|a, b| (&a.lb_id, a.port).cmp(&(&b.lb_id, b.port)));
        all
    }

    /// The listeners `cfg` asks for, with the address to bind and, unless the listener is
    /// already served with exactly this configuration, its newly built state; the listeners
    /// that cannot be served go to `errors`.
    fn desired(&self, cfg: &DataPlaneConfig, errors: &mut Vec<DataPlaneError>) -> Desired {
        let mut desired = HashMap::new();
        for lb in &cfg.lbs {
            if !lb.vip.is_loopback() {
                errors.push(DataPlaneError::NonLoopbackVip {
                    lb_id: lb.lb_id.clone(),
                    vip: lb.vip,
                });
                continue;
            }
            for listener in &lb.listeners {
                let key = (lb.lb_id.clone(), listener.port);
                if desired.contains_key(&key) {
                    errors.push(DataPlaneError::DuplicateListener {
                        lb_id: lb.lb_id.clone(),
                        port: listener.port,
                    });
                    continue;
                }
                let Some(socket_port) = self.settings.socket_port(listener.port) else {
                    errors.push(DataPlaneError::PortOutOfRange {
                        lb_id: lb.lb_id.clone(),
                        port: listener.port,
                        offset: self.settings.port_offset,
                    });
                    continue;
                };
                let addr = SocketAddr::from((lb.vip, socket_port));
                let unchanged = self
                    .read_listeners()
                    .get(&key)
                    .is_some_and(|r| r.requested == addr && r.applied == *listener);
                if unchanged {
                    desired.insert(key, (addr, None));
                    continue;
                }
                match ListenerState::build(lb, listener, &self.provider, &self.settings) {
                    Ok(state) => {
                        desired.insert(key, (addr, Some((state, listener.clone()))));
                    }
                    Err(err) => errors.push(err),
                }
            }
        }
        desired
    }

    fn read_listeners(
        &self,
    ) -> std::sync::RwLockReadGuard<'_, HashMap<ListenerKey, ListenerRuntime>> {
        self.listeners
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn write_listeners(
        &self,
    ) -> std::sync::RwLockWriteGuard<'_, HashMap<ListenerKey, ListenerRuntime>> {
        self.listeners
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// Every (rule, target) pair whose rule has its health check on.
fn probe_jobs(cfg: &DataPlaneConfig) -> Vec<ProbeJob> {
    let rules = cfg
        .lbs
        .iter()
        .flat_map(|lb| &lb.listeners)
        .flat_map(|l| &l.domains)
        .flat_map(|d| &d.rules);
    let mut jobs = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for rule in rules {
        // A multi-domain rule appears under each of its domains; probe it once.
        let Some(plane) = rule.health.as_ref() else {
            continue;
        };
        if !seen.insert(&rule.location_id) {
            continue;
        }
        for t in &rule.targets {
            jobs.push(ProbeJob {
                location_id: rule.location_id.clone(),
                ip: t.ip.clone(),
                port: t.port,
                plane: plane.clone(),
            });
        }
    }
    jobs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_port_adds_the_offset_and_refuses_overflow() {
        let settings = DataPlaneSettings::default();
        assert_eq!(settings.socket_port(80), Some(80 + DEFAULT_PORT_OFFSET));
        assert_eq!(
            settings.socket_port(u16::MAX - DEFAULT_PORT_OFFSET + 1),
            None
        );
    }

    #[test]
    fn port_map_wins_over_ephemeral_ports_and_the_offset() {
        let mut settings = DataPlaneSettings::ephemeral();
        settings.port_map.insert(443, 8443);
        assert_eq!(settings.socket_port(443), Some(8443));
        assert_eq!(settings.socket_port(80), Some(0));
    }

    #[test]
    fn several_failures_are_all_listed() {
        let err = DataPlaneError::Several(vec![
            DataPlaneError::DuplicateListener {
                lb_id: "lb-1".into(),
                port: 80,
            },
            DataPlaneError::NonLoopbackVip {
                lb_id: "lb-2".into(),
                vip: Ipv4Addr::new(10, 0, 0, 1),
            },
        ]);
        assert_eq!(err.failures().len(), 2);
        let text = err.to_string();
        assert!(text.contains("lb-1") && text.contains("10.0.0.1"), "{text}");
    }

    #[test]
    fn data_plane_can_be_shared_across_tasks() {
        fn send_sync<T: Send + Sync>(_: &T) {}
        fn send<T: Send>(_: &T) {}
        let plane = DataPlane::new(DataPlaneSettings::default());
        send_sync(&plane);
        let apply = plane.apply(DataPlaneConfig::default());
        send(&apply);
    }

    #[tokio::test]
    async fn duplicate_listener_port_is_reported_and_the_first_one_is_served() {
        let vip = Ipv4Addr::new(127, 77, 0, 1);
        let listener = ListenerPlane {
            listener_id: "lbl-1".into(),
            protocol: PlaneProtocol::Http,
            port: 80,
            certificate: None,
            sni: false,
            domains: vec![],
        };
        let cfg = DataPlaneConfig {
            lbs: vec![LbPlane {
                lb_id: "lb-dup".into(),
                vip,
                listeners: vec![listener.clone(), listener],
            }],
        };
        let plane = DataPlane::new(DataPlaneSettings::ephemeral());
        let err = plane.apply(cfg).await.expect_err("duplicate port");
        assert!(
            matches!(err, DataPlaneError::DuplicateListener { port: 80, .. }),
            "{err}"
        );
        assert!(plane.bound_addr("lb-dup", 80).is_some());
        assert_eq!(plane.bound_listeners().len(), 1);
    }
}
