//! The model's view of the cluster: a [`Snapshot`] built from the watch caches, with the data
//! of the Secrets Ingresses reference read on demand and cached by resourceVersion, and the
//! endpoints of Services whose slices are being replaced held for a grace period ([`grace`]).

pub mod drain;
pub mod grace;

use super::Hooks;
use super::config::ControllerConfig;
use super::error::ControllerError;
use super::memory::Key;
use super::queue::Dirty;
use super::stores::Stores;
use crate::model::build::{OurClasses, cert_from_secret, class_parameters};
use crate::model::{CertSource, DesiredLb, Index, Placement, Snapshot, StackId};
use grace::{Applied, EndpointGrace};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::api::networking::v1::Ingress;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Client, ResourceExt};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use tokio::sync::Mutex;
use tokio::sync::mpsc::UnboundedSender;
use tracing::info;

/// A snapshot, the failures met while building it, and the Secrets that could not be read
/// (and had no earlier copy).
pub struct Built {
    pub snap: Snapshot,
    /// The certificate `notAfter` (Unix seconds) of each referenced Secret with a PEM
    /// certificate (`namespace/name`).
    pub expiries: Vec<(String, i64)>,
    pub errors: Vec<ControllerError>,
    pub unreadable: BTreeSet<Key>,
}

/// Builds snapshots from the watch caches.
pub struct Snapshots {
    client: Client,
    stores: Stores,
    cluster_id: String,
    controller_name: String,
    ingress_class: Option<String>,
    watch_namespace: Option<String>,
    /// `--gateway-api`: the GatewayClass `spec.controllerName` handled.
    gateway_controller_name: Option<String>,
    /// Secret data keyed by (namespace, name) (see [`CachedSecret`]).
    secrets: Mutex<HashMap<Key, CachedSecret>>,
    /// The last non-empty endpoints of each Service.
    grace: std::sync::Mutex<EndpointGrace>,
    /// Endpoints of draining classes that stopped serving, kept with weight 0 for a while.
    drain: std::sync::Mutex<drain::Drain>,
    /// Requeues a Service when its endpoint grace ends.
    tx: UnboundedSender<Dirty>,
    hooks: Arc<dyn Hooks>,
    /// The account's CLB quotas (DescribeQuota), read at start and on every resync.
    limits: std::sync::RwLock<crate::model::build::Limits>,
    /// Where the hosts of shared classes live (sticky shard placement): read from the CLBs
    /// before the first build (`None` until then), then what the last build placed.
    placement: std::sync::Mutex<Option<Placement>>,
    /// Held while the placement is read from the CLBs (one reader at a time).
    pub(super) placement_read: Mutex<()>,
}

/// One Secret as read: the resourceVersion the watch cache had when it was read; the Secret
/// with only the keys clb-ingress uses (`None`: the read found no such Secret); and, once its
/// certificate reached the account, the fingerprint of its certificate and key, its `tls.key`
/// then being dropped from memory.
struct CachedSecret {
    rv: String,
    secret: Option<Secret>,
    dropped_key: Option<String>,
    /// `notAfter` of its `tls.crt` (the first certificate), parsed once when read.
    not_after: Option<i64>,
}

impl CachedSecret {
    fn read(rv: String, secret: Option<Secret>) -> Self {
        let not_after = secret.as_ref().and_then(certificate_not_after);
        Self {
            rv,
            secret,
            dropped_key: None,
            not_after,
        }
    }
}

/// The `notAfter` (Unix seconds) of the first certificate in a Secret's `tls.crt`, if it is a
/// readable PEM certificate.
fn certificate_not_after(s: &Secret) -> Option<i64> {
    let pem = s.data.as_ref()?.get("tls.crt")?;
    let (_, pem) = x509_parser::pem::parse_x509_pem(&pem.0).ok()?;
    let cert = pem.parse_x509().ok()?;
    Some(cert.validity().not_after.timestamp())
}

fn clone_all<K: Clone>(v: Vec<Arc<K>>) -> Vec<K> {
    v.into_iter().map(|a| (*a).clone()).collect()
}

impl Snapshots {
    /// `tx` gets a `Dirty::Service` when a Service's endpoint grace ends; `hooks` hear how
    /// many Services are within their grace.
    pub fn new(
        client: Client,
        stores: Stores,
        config: &ControllerConfig,
        tx: UnboundedSender<Dirty>,
        hooks: Arc<dyn Hooks>,
    ) -> Self {
        Self {
            client,
            stores,
            cluster_id: config.cluster_id.clone(),
            controller_name: config.controller_name.clone(),
            ingress_class: config.ingress_class.clone(),
            watch_namespace: config.watch_namespace.clone(),
            gateway_controller_name: config.gateway_api.clone(),
            secrets: Mutex::default(),
            grace: std::sync::Mutex::new(EndpointGrace::new(config.endpoint_grace)),
            drain: std::sync::Mutex::default(),
            tx,
            hooks,
            limits: Default::default(),
            placement: Default::default(),
            placement_read: Mutex::default(),
        }
    }

    /// The Gateway API watch caches, when `--gateway-api` is on and all of them have listed
    /// (a missing CRD keeps them unlisted: Gateway stacks are then neither built nor pruned).
    pub fn gateway_stores(&self) -> Option<&super::gateway::GatewayStores> {
        self.stores.gateway.as_ref().filter(|s| s.ready())
    }

    /// Is `--gateway-api` on?
    pub fn gateway_api(&self) -> bool {
        self.stores.gateway.is_some()
    }

    /// Has the shard placement been read from the CLBs yet?
    pub fn placement_known(&self) -> bool {
        self.placement
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .is_some()
    }

    /// Take the placement a build made (only once it started from the CLBs' placement).
    pub fn remember_placement(&self, placement: &Placement) {
        let mut p = self
            .placement
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if p.is_some() {
            *p = Some(placement.clone());
        }
    }

    /// Start from the placement read from the CLBs.
    pub fn set_read_placement(&self, placement: Placement) {
        *self
            .placement
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(placement);
    }

    /// The IngressClasses whose parameters say `sharing: Shared`: only they have shard CLBs
    /// whose placement must be read back (none: nothing is read, so a warm restart of
    /// per-Ingress stacks reads no listener).
    pub fn class_names(&self) -> Vec<String> {
        crate::model::build::shared_class_names(&self.classes_and_namespaces())
    }

    /// Use these quotas from now on; true when they changed.
    pub fn set_limits(&self, limits: crate::model::build::Limits) -> bool {
        let mut l = self
            .limits
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        std::mem::replace(&mut *l, limits) != limits
    }

    /// Wait until every watch cache has its initial listing.
    pub async fn wait_ready(&self) -> Result<(), ControllerError> {
        self.stores
            .wait_ready()
            .await
            .map_err(ControllerError::CacheSync)
    }

    /// Every Ingress in the watch cache.
    pub fn ingresses(&self) -> Vec<Arc<Ingress>> {
        self.stores.ingresses.state()
    }

    /// Ingress `ns/name` from the watch cache.
    pub fn ingress(&self, ns: &str, name: &str) -> Option<Arc<Ingress>> {
        self.stores.ingresses.get(&ObjectRef::new(name).within(ns))
    }

    /// An empty snapshot of this cluster and controller.
    fn empty(&self) -> Snapshot {
        let mut snap = Snapshot::new(&self.cluster_id);
        snap.controller_name = self.controller_name.clone();
        snap.limits = *self
            .limits
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        snap.placement = self
            .placement
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
            .unwrap_or_default();
        snap
    }

    /// A snapshot of `ingresses` (those being deleted left out) and everything from the caches;
    /// Secrets referenced by Ingresses are read on demand.
    pub async fn build(&self, ingresses: &[Arc<Ingress>]) -> Built {
        let mut snap = self.classes_and_namespaces();
        snap.ingresses = ingresses
            .iter()
            .filter(|i| i.metadata.deletion_timestamp.is_none())
            .cloned()
            .collect();
        let services = self.stores.services.state();
        let routed = routed_services(&snap);
        let applied = self
            .grace
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .apply(
                tokio::time::Instant::now(),
                &services,
                self.stores.slices.state(),
                |k| routed.contains(k),
            );
        snap.services = services;
        let graced = self.graced(applied);
        snap.gated = self.gated_pods();
        let delays = self.drain_delays(&snap);
        let drained = self
            .drain
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .apply(tokio::time::Instant::now(), graced, &delays, &snap.gated);
        self.hooks.endpoints_draining(drained.draining.len());
        for ((ns, name), at) in drained.expiring {
            let tx = self.tx.clone();
            tokio::spawn(async move {
                tokio::time::sleep_until(at).await;
                let _ = tx.send(Dirty::Service(ns, name));
            });
        }
        snap.draining = drained.draining;
        snap.endpoint_slices = drained.slices;
        if let Some(n) = &self.stores.nodes {
            snap.nodes = clone_all(n.state());
        }
        let (secrets, dropped, errors, unreadable) = self.referenced_secrets(&snap).await;
        snap.secrets = secrets;
        snap.dropped_keys = dropped;
        let expiries = self.expiries().await;
        Built {
            snap,
            expiries,
            errors,
            unreadable,
        }
    }

    /// An empty snapshot with the classes (as `--ingress-class` filters them), their parameters
    /// and the Namespaces from the caches.
    fn classes_and_namespaces(&self) -> Snapshot {
        let mut snap = self.empty();
        snap.ingress_classes = clone_all(self.stores.classes.state());
        if let Some(only) = &self.ingress_class {
            snap.ingress_classes
                .retain(|c| c.metadata.name.as_deref() == Some(only.as_str()));
        }
        snap.class_params = clone_all(self.stores.params.state());
        snap.gateway_controller_name = String::new();
        if let (Some(name), Some(gw)) = (&self.gateway_controller_name, self.gateway_stores()) {
            snap.gateway_controller_name = name.clone();
            gw.fill(&mut snap);
        }
        snap.backend_configs = clone_all(self.stores.backend_configs.state());
        snap.tke_service_configs = self
            .stores
            .tke_configs
            .as_ref()
            .map(|s| clone_all(s.state()));
        snap.namespaces = self
            .stores
            .namespaces
            .state()
            .into_iter()
            .map(|m| Namespace {
                metadata: m.metadata.clone(),
                ..Default::default()
            })
            .collect();
        snap
    }

    /// For admission: the cached cluster with `candidate` in place of the Ingress of its name,
    /// the Services and EndpointSlices of its namespace, and no Secret data (the caller checks
    /// that named Secrets exist). `None` when its namespace is not watched.
    pub fn admission_snapshot(&self, candidate: &Ingress) -> Option<Snapshot> {
        let ns = candidate.metadata.namespace.as_deref()?;
        if self.watch_namespace.as_deref().is_some_and(|w| w != ns) {
            return None;
        }
        let name = candidate.metadata.name.as_deref();
        let mut snap = self.classes_and_namespaces();
        snap.ingresses = self
            .stores
            .ingresses
            .state()
            .into_iter()
            .filter(|i| i.metadata.deletion_timestamp.is_none())
            .filter(|i| {
                !(i.metadata.namespace.as_deref() == Some(ns) && i.metadata.name.as_deref() == name)
            })
            .collect();
        snap.ingresses.push(Arc::new(candidate.clone()));
        let in_ns = |m: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta| {
            m.namespace.as_deref() == Some(ns)
        };
        snap.services = self
            .stores
            .services
            .state()
            .into_iter()
            .filter(|s| in_ns(&s.metadata))
            .collect();
        snap.endpoint_slices = self
            .stores
            .slices
            .state()
            .into_iter()
            .filter(|s| in_ns(&s.metadata))
            .collect();
        if let Some(n) = &self.stores.nodes {
            snap.nodes = clone_all(n.state());
        }
        Some(snap)
    }

    /// Does Secret `ns/name` exist in the metadata watch cache?
    pub fn secret_exists(&self, ns: &str, name: &str) -> bool {
        self.stores
            .secrets
            .get(&ObjectRef::new(name).within(ns))
            .is_some()
    }

    /// The slices the endpoint grace chose, as the model takes them; reports the grace to the
    /// hooks and requeues each Service whose grace started at the moment it ends.
    fn graced(&self, applied: Applied) -> Vec<Arc<k8s_openapi::api::discovery::v1::EndpointSlice>> {
        for (ns, name) in &applied.started {
            info!(namespace = %ns, service = %name, "Service has no endpoints: serving its last endpoints for the endpoint grace");
        }
        self.hooks
            .endpoint_grace(applied.active, applied.started.len());
        for ((ns, name), at) in applied.expiring {
            let tx = self.tx.clone();
            tokio::spawn(async move {
                tokio::time::sleep_until(at).await;
                let _ = tx.send(Dirty::Service(ns, name));
            });
        }
        applied.slices
    }

    /// The drain delay of every Service an Ingress of a class with `drainDelaySeconds` routes
    /// to (the longest, when several do). All Ingresses count, not only this snapshot's: a
    /// Service's endpoints are tracked the same whichever stack is being built.
    fn drain_delays(&self, snap: &Snapshot) -> HashMap<Key, std::time::Duration> {
        let mut out: HashMap<Key, std::time::Duration> = HashMap::new();
        if !snap
            .class_params
            .iter()
            .any(|p| p.spec.drain_delay_seconds.is_some())
        {
            return out;
        }
        let classes = OurClasses::new(snap);
        for ing in self.stores.ingresses.state() {
            let Some(delay) = classes
                .of(&ing)
                .and_then(|c| class_parameters(snap, c))
                .and_then(|p| p.drain_delay_seconds)
            else {
                continue;
            };
            let delay = std::time::Duration::from_secs(u64::from(delay));
            for key in super::memory::referenced_services(&ing) {
                let d = out.entry(key).or_default();
                *d = (*d).max(delay);
            }
        }
        out
    }

    /// Pods that carry the readiness gate, are not terminating and whose containers are ready:
    /// registered although their endpoint is not ready yet, so the CLB can check them.
    fn gated_pods(&self) -> BTreeSet<Key> {
        self.stores
            .pods
            .as_ref()
            .map(|pods| {
                pods.state()
                    .iter()
                    .filter(|p| super::gate::waits_only_for_gate(p))
                    .flat_map(|p| {
                        let ns = p.namespace().unwrap_or_default();
                        super::gate::pod_ips(p)
                            .into_iter()
                            .map(move |ip| (ns.clone(), ip))
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The Secrets that Ingresses of our classes and our class parameters name, read (or taken
    /// from the cache) with only the keys clb-ingress uses; cached Secrets no longer named are
    /// dropped. Secrets named only by other controllers' Ingresses are never read.
    async fn referenced_secrets(
        &self,
        snap: &Snapshot,
    ) -> (
        Vec<Secret>,
        BTreeMap<Key, String>,
        Vec<ControllerError>,
        BTreeSet<Key>,
    ) {
        let mut wanted: BTreeSet<Key> = BTreeSet::new();
        let classes = OurClasses::new(snap);
        for ing in snap.ingresses.iter().filter(|i| classes.of(i).is_some()) {
            let ns = ing.namespace().unwrap_or_default();
            for t in ing.spec.iter().flat_map(|s| s.tls.iter().flatten()) {
                if let Some(n) = &t.secret_name {
                    wanted.insert((ns.clone(), n.clone()));
                }
            }
        }
        wanted.extend(super::gateway::referenced(snap).0);
        for p in &snap.class_params {
            if let Some((ns, n)) = p
                .spec
                .default_certificate
                .as_ref()
                .and_then(|c| c.secret.as_deref())
                .and_then(|s| s.split_once('/'))
            {
                wanted.insert((ns.to_string(), n.to_string()));
            }
        }
        let mut out = Vec::new();
        let mut dropped = BTreeMap::new();
        let mut errors = Vec::new();
        let mut unreadable = BTreeSet::new();
        let mut cache = self.secrets.lock().await;
        cache.retain(|k, _| wanted.contains(k));
        for (ns, name) in wanted {
            let meta = self.stores.secrets.get(&ObjectRef::new(&name).within(&ns));
            let key = (ns.clone(), name.clone());
            // Not in the Secret watch cache: missing or deleted, or created with its Ingress and
            // not seen by the watch yet. It is read rather than planned as missing, which would
            // leave the Ingress's HTTPS hosts without their certificate. A read that found
            // nothing is remembered until the watch sees the Secret (or reports a change), so
            // a Secret that stays missing is not read again on every pass.
            let rv = meta
                .map(|m| m.resource_version().unwrap_or_default())
                .unwrap_or_default();
            if let Some(c) = cache.get(&key)
                && c.rv == rv
            {
                out.extend(c.secret.clone());
                if let Some(fp) = &c.dropped_key {
                    dropped.insert(key, fp.clone());
                }
                continue;
            }
            match Api::<Secret>::namespaced(self.client.clone(), &ns)
                .get_opt(&name)
                .await
            {
                Ok(Some(s)) => {
                    let s = only_used_keys(s);
                    let rv = s.metadata.resource_version.clone().unwrap_or(rv);
                    cache.insert(key, CachedSecret::read(rv, Some(s.clone())));
                    out.push(s);
                }
                Ok(None) => {
                    cache.insert(key, CachedSecret::read(rv, None));
                }
                Err(source) => {
                    // A failed read is not a missing Secret: keep serving the copy read before
                    // (a changed Secret is read again next pass); without one, the caller holds
                    // back the stacks that need it instead of reporting it not found.
                    match cache.get(&key) {
                        Some(CachedSecret {
                            secret: Some(s),
                            dropped_key,
                            ..
                        }) => {
                            out.push(s.clone());
                            if let Some(fp) = dropped_key {
                                dropped.insert(key, fp.clone());
                            }
                        }
                        _ => {
                            unreadable.insert(key);
                        }
                    }
                    errors.push(ControllerError::ReadSecret {
                        namespace: ns,
                        name,
                        source,
                    });
                }
            }
        }
        (out, dropped, errors, unreadable)
    }

    /// The certificate `notAfter` of every cached (so referenced) Secret that has one.
    async fn expiries(&self) -> Vec<(String, i64)> {
        let cache = self.secrets.lock().await;
        let mut out: Vec<(String, i64)> = cache
            .iter()
            .filter_map(|((ns, name), c)| Some((format!("{ns}/{name}"), c.not_after?)))
            .collect();
        out.sort();
        out
    }

    /// After `desired` was applied: its uploaded certificates are in the account, so the
    /// private keys of their Secrets leave memory (the cached Secret keeps `tls.crt` and the
    /// fingerprint). A later upload of the same certificate, should the account lose it, fails
    /// with `DeployError::KeyDropped` and reads the Secret again. Returns how many were dropped.
    pub async fn drop_uploaded_keys(&self, desired: &DesiredLb) -> usize {
        let mut cache = self.secrets.lock().await;
        let mut count = 0;
        for d in desired.listeners.iter().flat_map(|l| &l.domains) {
            let Some(CertSource::Pem {
                secret,
                fingerprint,
                key_pem,
                ..
            }) = &d.certificate
            else {
                continue;
            };
            if key_pem.expose().is_none() {
                continue;
            }
            let key = (
                secret.namespace.clone().unwrap_or_default(),
                secret.name.clone(),
            );
            let Some(c) = cache.get_mut(&key) else {
                continue;
            };
            let Some(s) = c.secret.as_mut() else { continue };
            // Only the copy whose certificate and key this fingerprint was computed from.
            let same = matches!(
                cert_from_secret(s),
                Ok(CertSource::Pem { fingerprint: f, .. }) if f == *fingerprint
            );
            if !same {
                continue;
            }
            if let Some(data) = s.data.as_mut() {
                data.remove("tls.key");
            }
            c.dropped_key = Some(fingerprint.clone());
            count += 1;
        }
        count
    }

    /// Drop the cached data of the Secrets `dirty` says changed.
    pub async fn forget_secrets(&self, dirty: &BTreeSet<Dirty>) {
        let mut cache = self.secrets.lock().await;
        for d in dirty {
            if let Dirty::Secret(ns, name) = d {
                cache.remove(&(ns.clone(), name.clone()));
            }
        }
    }

    /// The stack an Ingress being deleted belonged to, worked out from the Ingress itself (as
    /// if it were not being deleted) and the classes.
    pub fn stack_of_deleted(&self, ing: &Ingress) -> Option<StackId> {
        let mut snap = self.empty();
        snap.ingress_classes = clone_all(self.stores.classes.state());
        snap.class_params = clone_all(self.stores.params.state());
        let mut i = ing.clone();
        i.metadata.deletion_timestamp = None;
        snap.ingresses = vec![Arc::new(i)];
        let index = Index::new(&snap);
        index
            .stack_ids()
            .next()
            .or_else(|| index.frozen_ids().next())
            .cloned()
    }
}

/// The Services the Ingresses of our classes route to (by `spec.defaultBackend` or a path).
fn routed_services(snap: &Snapshot) -> BTreeSet<Key> {
    let classes = OurClasses::new(snap);
    let mut out = BTreeSet::new();
    for ing in snap.ingresses.iter().filter(|i| classes.of(i).is_some()) {
        let ns = ing.namespace().unwrap_or_default();
        let Some(spec) = ing.spec.as_ref() else {
            continue;
        };
        let paths = spec
            .rules
            .iter()
            .flatten()
            .filter_map(|r| r.http.as_ref())
            .flat_map(|h| &h.paths)
            .map(|p| &p.backend);
        for b in spec.default_backend.iter().chain(paths) {
            if let Some(svc) = &b.service {
                out.insert((ns.clone(), svc.name.clone()));
            }
        }
        for svc in crate::model::build::canary::action_services(ing) {
            out.insert((ns.clone(), svc));
        }
    }
    out
}

/// The Secret keys clb-ingress reads: a `kubernetes.io/tls` certificate and key, or TKE's
/// Tencent Cloud certificate ids.
pub const USED_SECRET_KEYS: [&str; 4] =
    ["tls.crt", "tls.key", "qcloud_cert_id", "qcloud_ca_cert_id"];

/// A Secret as clb-ingress keeps it: its name, namespace, type and resourceVersion, and only
/// the data keys it uses (nothing else of the Secret stays in memory).
fn only_used_keys(s: Secret) -> Secret {
    let data = s.data.map(|d| {
        d.into_iter()
            .filter(|(k, _)| USED_SECRET_KEYS.contains(&k.as_str()))
            .collect()
    });
    Secret {
        metadata: kube::api::ObjectMeta {
            name: s.metadata.name,
            namespace: s.metadata.namespace,
            resource_version: s.metadata.resource_version,
            uid: s.metadata.uid,
            ..Default::default()
        },
        data,
        type_: s.type_,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;

    #[test]
    fn a_cached_secret_keeps_only_the_keys_clb_ingress_reads() {
        let mut data = std::collections::BTreeMap::new();
        for k in ["tls.crt", "tls.key", "ca.crt", "password", "qcloud_cert_id"] {
            data.insert(k.to_string(), ByteString(k.as_bytes().to_vec()));
        }
        let s = Secret {
            metadata: kube::api::ObjectMeta {
                name: Some("s".into()),
                namespace: Some("ns".into()),
                annotations: Some([("note".to_string(), "x".to_string())].into()),
                ..Default::default()
            },
            data: Some(data),
            string_data: Some([("password".to_string(), "y".to_string())].into()),
            type_: Some("kubernetes.io/tls".into()),
            ..Default::default()
        };
        let kept = only_used_keys(s);
        let keys: Vec<&str> = kept
            .data
            .as_ref()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys, ["qcloud_cert_id", "tls.crt", "tls.key"]);
        assert!(kept.string_data.is_none());
        assert!(kept.metadata.annotations.is_none());
        assert_eq!(kept.metadata.name.as_deref(), Some("s"));
        assert_eq!(kept.type_.as_deref(), Some("kubernetes.io/tls"));
    }
}
