//! Gateway API in the controller (`run --gateway-api`): watches of GatewayClass, Gateway,
//! HTTPRoute, GRPCRoute and ReferenceGrant (as dynamic objects: the CRDs may be missing, and
//! their status is compared before it is written), the snapshot's Gateway API part, and the
//! status subresource writes of the pure status `model::build` computes, made only when they
//! change something.

use super::error::{ControllerError, describe};
use super::memory::Key;
use super::queue::Dirty;
use super::stores::{WatchErrors, slim};
use crate::model::Snapshot;
use clb_ingress_core::gateway::status::{
    ClassStatus, Condition, GatewayStatus, RouteParentStatus, RouteStatus,
};
use clb_ingress_core::gateway::{self as gwapi, GROUP};
use futures::{FutureExt, StreamExt};
use kube::api::{ApiResource, DynamicObject, Patch, PatchParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use serde_json::{Value, json};
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use tokio::sync::mpsc::UnboundedSender;

/// The version read of every kind of the pinned standard channel but ReferenceGrant.
pub const VERSION: &str = "v1";
/// ReferenceGrant's version (v1.3.0 serves it as v1beta1 only).
pub const REFERENCE_GRANT_VERSION: &str = "v1beta1";
/// `status.addresses[].type` of a CLB VIP.
const ADDRESS_TYPE: &str = "IPAddress";

/// A watched Gateway API kind: its kind, plural and scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GatewayKind {
    pub kind: &'static str,
    pub plural: &'static str,
    pub namespaced: bool,
    /// Has a status clb-ingress writes (the controller patches `<plural>/status`).
    pub status: bool,
}

/// Every kind watched, in the order of [`GatewayStores`].
pub const KINDS: [GatewayKind; 5] = [
    GatewayKind {
        kind: "GatewayClass",
        plural: "gatewayclasses",
        namespaced: false,
        status: true,
    },
    GatewayKind {
        kind: "Gateway",
        plural: "gateways",
        namespaced: true,
        status: true,
    },
    GatewayKind {
        kind: "HTTPRoute",
        plural: "httproutes",
        namespaced: true,
        status: true,
    },
    GatewayKind {
        kind: "GRPCRoute",
        plural: "grpcroutes",
        namespaced: true,
        status: true,
    },
    GatewayKind {
        kind: "ReferenceGrant",
        plural: "referencegrants",
        namespaced: true,
        status: false,
    },
];

impl GatewayKind {
    pub fn api_resource(&self) -> ApiResource {
        let version = self.version();
        ApiResource {
            group: GROUP.into(),
            version: version.into(),
            api_version: format!("{GROUP}/{version}"),
            kind: self.kind.into(),
            plural: self.plural.into(),
        }
    }

    pub fn version(&self) -> &'static str {
        if self.kind == "ReferenceGrant" {
            REFERENCE_GRANT_VERSION
        } else {
            VERSION
        }
    }

    fn of(kind: &str) -> Option<&'static GatewayKind> {
        KINDS.iter().find(|k| k.kind == kind)
    }
}

/// The watch caches of the Gateway API kinds (see [`KINDS`]).
#[derive(Clone)]
pub struct GatewayStores {
    classes: Store<DynamicObject>,
    gateways: Store<DynamicObject>,
    http_routes: Store<DynamicObject>,
    grpc_routes: Store<DynamicObject>,
    grants: Store<DynamicObject>,
}

impl GatewayStores {
    /// Have all of them listed once? Until then (a CRD missing, or the first list still
    /// running) Gateway stacks are neither built nor pruned.
    pub fn ready(&self) -> bool {
        self.all().iter().all(|s| {
            s.wait_until_ready()
                .now_or_never()
                .is_some_and(|r| r.is_ok())
        })
    }

    fn all(&self) -> [&Store<DynamicObject>; 5] {
        [
            &self.classes,
            &self.gateways,
            &self.http_routes,
            &self.grpc_routes,
            &self.grants,
        ]
    }

    /// The cached object of `kind` named so.
    pub fn get(&self, kind: &str, ns: Option<&str>, name: &str) -> Option<Arc<DynamicObject>> {
        let (i, k) = KINDS.iter().enumerate().find(|(_, k)| k.kind == kind)?;
        let mut r = reflector::ObjectRef::new_with(name, k.api_resource());
        if let Some(ns) = ns.filter(|_| k.namespaced) {
            r = r.within(ns);
        }
        self.all()[i].get(&r)
    }

    /// Put the cached Gateway API objects into `snap`. Objects that do not parse as their
    /// kind (the CRD's schema is the API server's job) are left out with a warning.
    pub fn fill(&self, snap: &mut Snapshot) {
        snap.gateway_classes = typed(&self.classes);
        snap.gateways = typed(&self.gateways);
        snap.http_routes = typed(&self.http_routes);
        snap.grpc_routes = typed(&self.grpc_routes);
        snap.reference_grants = typed(&self.grants);
    }
}

fn typed<T: serde::de::DeserializeOwned>(store: &Store<DynamicObject>) -> Vec<T> {
    store
        .state()
        .into_iter()
        .filter_map(|o| {
            let v = serde_json::to_value(&*o).ok()?;
            match serde_json::from_value(v) {
                Ok(t) => Some(t),
                Err(e) => {
                    tracing::warn!(
                        object = %format!("{}/{}", o.namespace().unwrap_or_default(), o.name_any()),
                        error = %e,
                        "a Gateway API object does not parse; left out"
                    );
                    None
                }
            }
        })
        .collect()
}

/// What a watch event of a Gateway API object changes for clb-ingress: everything but its
/// status and bookkeeping metadata. Our own status writes so make no pass.
fn fingerprint(o: &DynamicObject) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::hash::DefaultHasher::new();
    let mut data = o.data.clone();
    if let Some(m) = data.as_object_mut() {
        m.remove("status");
    }
    data.to_string().hash(&mut h);
    format!(
        "{:?}{:?}{:?}{:?}",
        o.metadata.labels,
        o.metadata.deletion_timestamp,
        o.metadata.uid,
        o.metadata.creation_timestamp
    )
    .hash(&mut h);
    h.finish()
}

static CRDS_MISSING_LOGGED: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

/// Start the watches. `namespace` (`--watch-namespace`) limits the namespaced kinds; the
/// cluster-scoped GatewayClasses are always watched cluster-wide.
pub fn start(
    client: &Client,
    namespace: Option<&str>,
    tx: UnboundedSender<Dirty>,
    errors: WatchErrors,
) -> GatewayStores {
    let mut stores = KINDS.iter().map(|k| {
        let ar = k.api_resource();
        let api: Api<DynamicObject> = match namespace.filter(|_| k.namespaced) {
            Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
            None => Api::all_with(client.clone(), &ar),
        };
        watch(k.kind, api, ar, tx.clone(), errors.clone())
    });
    let mut next = || stores.next().expect("one store per kind");
    GatewayStores {
        classes: next(),
        gateways: next(),
        http_routes: next(),
        grpc_routes: next(),
        grants: next(),
    }
}

fn watch(
    kind: &'static str,
    api: Api<DynamicObject>,
    ar: ApiResource,
    tx: UnboundedSender<Dirty>,
    errors: WatchErrors,
) -> Store<DynamicObject> {
    let writer = reflector::store::Writer::new(ar);
    let reader = writer.as_reader();
    let stream = watcher(api, watcher::Config::default().any_semantic())
        .default_backoff()
        .modify(slim);
    let stream = reflector::reflector(writer, stream);
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        let mut seen: HashMap<(String, String), u64> = HashMap::new();
        while let Some(ev) = stream.next().await {
            match ev {
                Ok(watcher::Event::Apply(o)) => {
                    let key = (o.namespace().unwrap_or_default(), o.name_any());
                    let fp = fingerprint(&o);
                    if seen.insert(key, fp) != Some(fp) {
                        let _ = tx.send(Dirty::GatewayApi);
                    }
                }
                Ok(watcher::Event::Delete(o)) => {
                    seen.remove(&(o.namespace().unwrap_or_default(), o.name_any()));
                    let _ = tx.send(Dirty::GatewayApi);
                }
                Ok(watcher::Event::InitApply(o)) => {
                    seen.insert(
                        (o.namespace().unwrap_or_default(), o.name_any()),
                        fingerprint(&o),
                    );
                }
                // Listed (first time or again): the Gateway stacks are built from it now.
                Ok(watcher::Event::InitDone) => {
                    let _ = tx.send(Dirty::GatewayApi);
                }
                Ok(watcher::Event::Init) => {}
                Err(e) => report_error(kind, &e, &errors),
            }
        }
    });
    reader
}

fn report_error(kind: &'static str, error: &watcher::Error, errors: &WatchErrors) {
    let missing = match error {
        watcher::Error::InitialListFailed(e) | watcher::Error::WatchStartFailed(e) => {
            super::error::is_kube_not_found(e)
        }
        _ => false,
    };
    if missing {
        (errors.count)(kind);
        // Ingresses keep being served; the watch retries with backoff until it is there.
        if !CRDS_MISSING_LOGGED.swap(true, std::sync::atomic::Ordering::Relaxed) {
            tracing::error!(
                kind,
                fix = "helm upgrade --set gatewayAPI.installCRDs=true, or kubectl apply the Gateway API v1.3.0 standard-channel CRDs",
                "--gateway-api is on but the {kind} CRD is not installed (the API server answers 404); \
                 Ingresses are served as usual, Gateway API objects once the CRDs are installed"
            );
        }
        return;
    }
    errors.report(kind, error);
}

/// One condition as written: `lastTransitionTime` kept from the current condition of the same
/// type while its status stays, `now` otherwise.
fn condition_json(c: &Condition, current: &Value, now: &str) -> Value {
    let kept = current
        .as_array()
        .into_iter()
        .flatten()
        .find(|x| x["type"] == c.type_ && x["status"] == c.status)
        .and_then(|x| x["lastTransitionTime"].as_str())
        .unwrap_or(now);
    let mut v = json!({
        "type": c.type_,
        "status": c.status,
        "reason": c.reason,
        "message": c.message,
        "lastTransitionTime": kept,
    });
    if let Some(g) = c.observed_generation {
        v["observedGeneration"] = json!(g);
    }
    v
}

fn conditions_json(cs: &[Condition], current: &Value, now: &str) -> Value {
    Value::Array(cs.iter().map(|c| condition_json(c, current, now)).collect())
}

/// The status a GatewayClass should have.
pub fn class_status(s: &ClassStatus, current: &Value, now: &str) -> Value {
    json!({"conditions": conditions_json(&s.conditions, &current["conditions"], now)})
}

/// The status a Gateway should have (after [`GatewayStatus::programmed`]).
pub fn gateway_status(s: &GatewayStatus, current: &Value, now: &str) -> Value {
    let listeners: Vec<Value> = s
        .listeners
        .iter()
        .map(|l| {
            let cur = current["listeners"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|x| x["name"] == l.name.as_str())
                .map(|x| x["conditions"].clone())
                .unwrap_or(Value::Null);
            json!({
                "name": l.name,
                "supportedKinds": l.supported_kinds,
                "attachedRoutes": l.attached_routes,
                "conditions": conditions_json(&l.conditions, &cur, now),
            })
        })
        .collect();
    let addresses: Vec<Value> = s
        .addresses
        .iter()
        .map(|a| json!({"type": ADDRESS_TYPE, "value": a}))
        .collect();
    json!({
        "addresses": addresses,
        "conditions": conditions_json(&s.conditions, &current["conditions"], now),
        "listeners": listeners,
    })
}

/// The status a route should have: other controllers' `parents[]` entries kept as they are,
/// ours (`controller`) replaced by `s.parents`.
pub fn route_status(s: &RouteStatus, controller: &str, current: &Value, now: &str) -> Value {
    let current_parents = current["parents"].as_array().cloned().unwrap_or_default();
    let mut parents: Vec<Value> = current_parents
        .iter()
        .filter(|p| p["controllerName"] != controller)
        .cloned()
        .collect();
    for p in &s.parents {
        parents.push(parent_json(p, &current_parents, now));
    }
    json!({"parents": parents})
}

fn parent_json(p: &RouteParentStatus, current: &[Value], now: &str) -> Value {
    let parent_ref = serde_json::to_value(&p.parent_ref).unwrap_or(Value::Null);
    let cur = current
        .iter()
        .find(|x| x["controllerName"] == p.controller_name.as_str() && x["parentRef"] == parent_ref)
        .map(|x| x["conditions"].clone())
        .unwrap_or(Value::Null);
    json!({
        "parentRef": parent_ref,
        "controllerName": p.controller_name,
        "conditions": conditions_json(&p.conditions, &cur, now),
    })
}

/// A Warning published: object kind, namespace, name, field and reason.
type WarningKey = (String, String, String, String, String);

/// Writes the Gateway API status and Events.
pub struct GatewayReporter {
    client: Client,
    recorder: kube::runtime::events::Recorder,
    controller_name: String,
    /// The Warning Events published for Problems still present (kind, ns, name, field, reason).
    warned: std::sync::Mutex<BTreeSet<WarningKey>>,
}

impl GatewayReporter {
    pub fn new(client: Client, identity: &str, controller_name: &str) -> Self {
        let recorder = kube::runtime::events::Recorder::new(
            client.clone(),
            kube::runtime::events::Reporter {
                controller: super::report::REPORTER.into(),
                instance: Some(identity.to_string()),
            },
        );
        Self {
            client,
            recorder,
            controller_name: controller_name.to_string(),
            warned: Default::default(),
        }
    }

    /// Patch the status of `kind` `ns/name` to `status` unless the cached object already has
    /// it (guarded by its resourceVersion: a concurrent writer makes it fail, and it is
    /// retried). True when it wrote.
    pub async fn write_status(
        &self,
        stores: &GatewayStores,
        kind: &'static str,
        ns: Option<&str>,
        name: &str,
        status: impl FnOnce(&Value) -> Value,
    ) -> Result<bool, ControllerError> {
        let Some(k) = GatewayKind::of(kind) else {
            return Ok(false);
        };
        let Some(obj) = stores.get(kind, ns, name) else {
            return Ok(false);
        };
        let current = obj.data.get("status").cloned().unwrap_or(Value::Null);
        let wanted = status(&current);
        if status_equal(&current, &wanted) {
            return Ok(false);
        }
        let ar = k.api_resource();
        let api: Api<DynamicObject> = match ns.filter(|_| k.namespaced) {
            Some(ns) => Api::namespaced_with(self.client.clone(), ns, &ar),
            None => Api::all_with(self.client.clone(), &ar),
        };
        let patch = json!({
            "metadata": {"resourceVersion": obj.resource_version()},
            "status": wanted,
        });
        api.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(|source| ControllerError::GatewayStatus {
                kind,
                namespace: ns.unwrap_or_default().to_string(),
                name: name.to_string(),
                source,
            })?;
        tracing::debug!(
            kind,
            namespace = ns.unwrap_or(""),
            name,
            "Gateway API status written"
        );
        Ok(true)
    }

    /// Warning Events for the Gateway API Problems not reported yet (one per object, field
    /// and reason while it lasts); Problems that are gone are forgotten.
    pub async fn warn(&self, stores: &GatewayStores, problems: &[&crate::model::Problem]) {
        let keys: BTreeSet<WarningKey> = problems
            .iter()
            .map(|p| {
                (
                    p.object.kind.to_string(),
                    p.object.namespace.clone().unwrap_or_default(),
                    p.object.name.clone(),
                    p.field.clone(),
                    p.reason.as_str().to_string(),
                )
            })
            .collect();
        let fresh: Vec<&crate::model::Problem> = {
            let mut warned = self
                .warned
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            warned.retain(|k| keys.contains(k));
            problems
                .iter()
                .filter(|p| {
                    warned.insert((
                        p.object.kind.to_string(),
                        p.object.namespace.clone().unwrap_or_default(),
                        p.object.name.clone(),
                        p.field.clone(),
                        p.reason.as_str().to_string(),
                    ))
                })
                .copied()
                .collect()
        };
        for p in fresh {
            let Some(obj) =
                stores.get(p.object.kind, p.object.namespace.as_deref(), &p.object.name)
            else {
                continue;
            };
            let reference = k8s_openapi::api::core::v1::ObjectReference {
                api_version: Some(format!("{GROUP}/{VERSION}")),
                kind: Some(p.object.kind.to_string()),
                namespace: obj.namespace(),
                name: Some(obj.name_any()),
                uid: obj.uid(),
                resource_version: obj.resource_version(),
                ..Default::default()
            };
            let ev = kube::runtime::events::Event {
                type_: kube::runtime::events::EventType::Warning,
                reason: p.reason.as_str().to_string(),
                note: Some(
                    format!("{}: {}", p.field, p.message)
                        .chars()
                        .take(1000)
                        .collect(),
                ),
                action: "Reconcile".into(),
                secondary: None,
            };
            if let Err(e) = self.recorder.publish(&ev, &reference).await {
                tracing::warn!(error = %describe(&e), object = %p.object, "cannot publish Event");
            }
        }
    }

    pub fn controller_name(&self) -> &str {
        &self.controller_name
    }
}

/// Equal statuses, `lastTransitionTime` included (it is kept while a condition's status stays).
fn status_equal(current: &Value, wanted: &Value) -> bool {
    let Some(w) = wanted.as_object() else {
        return current == wanted;
    };
    // A field our status does not set is not ours to compare (nor to clear).
    w.iter().all(|(k, v)| {
        current.get(k).unwrap_or(&Value::Null) == v
            || (v.as_array().is_some_and(Vec::is_empty)
                && current.get(k).is_none_or(Value::is_null))
    })
}

/// The Secrets (certificates) and Services (backends) the Gateway API objects of our classes
/// name: a change to one of them requeues the Gateway stacks.
pub fn referenced(snap: &Snapshot) -> (BTreeSet<Key>, BTreeSet<Key>) {
    let ours: BTreeSet<&str> = snap
        .gateway_classes
        .iter()
        .filter(|c| c.spec.controller_name == snap.gateway_controller_name)
        .filter_map(|c| c.metadata.name.as_deref())
        .collect();
    let mut secrets = BTreeSet::new();
    for g in snap
        .gateways
        .iter()
        .filter(|g| ours.contains(g.spec.gateway_class_name.as_str()))
    {
        let ns = g.metadata.namespace.clone().unwrap_or_default();
        for l in &g.spec.listeners {
            for r in l.tls.iter().flat_map(|t| &t.certificate_refs) {
                let rns = r.namespace.clone().unwrap_or_else(|| ns.clone());
                secrets.insert((rns, r.name.clone()));
            }
        }
    }
    let mut services = BTreeSet::new();
    let http = snap.http_routes.iter().map(|r| {
        (
            &r.metadata,
            r.spec
                .rules
                .iter()
                .flatten()
                .flat_map(|x| &x.backend_refs)
                .collect::<Vec<_>>(),
        )
    });
    let grpc = snap.grpc_routes.iter().map(|r| {
        (
            &r.metadata,
            r.spec
                .rules
                .iter()
                .flat_map(|x| &x.backend_refs)
                .collect::<Vec<_>>(),
        )
    });
    for (meta, refs) in http.chain(grpc) {
        let ns = meta.namespace.clone().unwrap_or_default();
        for b in refs {
            services.insert((
                b.namespace.clone().unwrap_or_else(|| ns.clone()),
                b.name.clone(),
            ));
        }
    }
    (secrets, services)
}

/// The kind of a route status (`HTTPRoute`, `GRPCRoute`) as watched.
pub fn route_kind(s: &RouteStatus) -> &'static str {
    if s.kind == "GRPCRoute" {
        "GRPCRoute"
    } else {
        "HTTPRoute"
    }
}

/// The current time as Kubernetes writes it (RFC 3339, seconds).
pub fn now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// The start of the CLB names of Gateway stacks (`<cluster>-gw-`).
pub fn clb_name_prefix(cluster_id: &str) -> String {
    let probe = crate::model::StackId::Gateway {
        namespace: "n".into(),
        name: "n".into(),
    };
    let name = probe.clb_name(cluster_id).unwrap_or_default();
    name.strip_suffix("n-n").unwrap_or(&name).to_string()
}

/// Wait before a failed Gateway API status write is tried again.
const STATUS_RETRY: std::time::Duration = std::time::Duration::from_secs(2);

impl super::Controller {
    /// After a pass's build: GatewayClass and route status (they do not depend on the CLB)
    /// and Warning Events for the Gateway API Problems. A failed write is retried soon.
    pub(super) async fn report_gateway_api(
        &self,
        stores: &GatewayStores,
        status: &gwapi::GatewayApiStatus,
        problems: &[crate::model::Problem],
    ) {
        let Some(rep) = &self.gateway_reporter else {
            return;
        };
        let now = now();
        let mut failed = false;
        for c in &status.classes {
            let r = rep
                .write_status(stores, "GatewayClass", None, &c.name, |cur| {
                    class_status(c, cur, &now)
                })
                .await;
            failed |= self.gateway_write_failed(r);
        }
        for s in &status.routes {
            let r = rep
                .write_status(stores, route_kind(s), Some(&s.namespace), &s.name, |cur| {
                    route_status(s, rep.controller_name(), cur, &now)
                })
                .await;
            failed |= self.gateway_write_failed(r);
        }
        let gw_problems: Vec<&crate::model::Problem> = problems
            .iter()
            .filter(|p| GatewayKind::of(p.object.kind).is_some())
            .collect();
        rep.warn(stores, &gw_problems).await;
        if failed {
            let tx = self.tx.clone();
            tokio::spawn(async move {
                tokio::time::sleep(super::queue::jittered(STATUS_RETRY)).await;
                let _ = tx.send(Dirty::GatewayApi);
            });
        }
    }

    /// After a Gateway stack's reconcile: the Gateway's status with the CLB's addresses
    /// (`Programmed` once it serves). False when the write failed.
    pub(super) async fn report_gateway(
        &self,
        gs: &GatewayStatus,
        result: &Result<crate::deploy::Outcome, ControllerError>,
    ) -> bool {
        let (Some(rep), Some(stores)) = (&self.gateway_reporter, self.snapshots.gateway_stores())
        else {
            return true;
        };
        let programmed = match result {
            Ok(o) if o.vips.is_empty() => {
                gs.programmed(&[], "AddressNotAssigned", "the CLB has no address yet")
            }
            Ok(o) => gs.programmed(&o.vips, "Pending", ""),
            Err(e) => gs.programmed(
                &[],
                "Pending",
                &format!("the CLB sync failed ({}); retrying", e.category()),
            ),
        };
        let now = now();
        let r = rep
            .write_status(stores, "Gateway", Some(&gs.namespace), &gs.name, |cur| {
                gateway_status(&programmed, cur, &now)
            })
            .await;
        !self.gateway_write_failed(r)
    }

    fn gateway_write_failed(&self, r: Result<bool, ControllerError>) -> bool {
        match r {
            Ok(_) => false,
            Err(e) if matches!(&e, ControllerError::GatewayStatus { source, .. } if super::error::is_kube_not_found(source)) =>
            {
                e.log();
                false
            }
            Err(e) => {
                self.failed(&e);
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cond(status: bool) -> Condition {
        Condition::new("Accepted", status, "Accepted", "ok", Some(2))
    }

    #[test]
    fn the_gateway_clb_name_prefix_starts_every_gateway_stack_name_and_no_other_kind() {
        let p = clb_name_prefix("c1");
        assert_eq!(p, "c1-gw-");
        let gw = crate::model::StackId::Gateway {
            namespace: "apps".into(),
            name: "web".into(),
        };
        assert!(gw.clb_name("c1").unwrap().starts_with(&p));
        let class = crate::model::StackId::Class("gw".into());
        assert!(!class.clb_name("c1").unwrap().starts_with(&p));
    }

    #[test]
    fn a_condition_keeps_its_transition_time_while_its_status_stays() {
        let current = json!([{"type": "Accepted", "status": "True", "lastTransitionTime": "2020-01-01T00:00:00Z"}]);
        let v = condition_json(&cond(true), &current, "2030-01-01T00:00:00Z");
        assert_eq!(v["lastTransitionTime"], "2020-01-01T00:00:00Z");
        assert_eq!(v["observedGeneration"], 2);
        let v = condition_json(&cond(false), &current, "2030-01-01T00:00:00Z");
        assert_eq!(v["lastTransitionTime"], "2030-01-01T00:00:00Z");
    }

    #[test]
    fn route_status_keeps_other_controllers_parents_and_replaces_ours() {
        let current = json!({"parents": [
            {"controllerName": "example.com/other", "parentRef": {"name": "x"}, "conditions": []},
            {"controllerName": "clb-ingress.io/gateway-controller", "parentRef": {"name": "old"}, "conditions": []},
        ]});
        let s = RouteStatus {
            kind: "HTTPRoute",
            namespace: "ns".into(),
            name: "r".into(),
            parents: vec![RouteParentStatus {
                parent_ref: gwapi::ParentReference {
                    name: "gw".into(),
                    ..Default::default()
                },
                controller_name: "clb-ingress.io/gateway-controller".into(),
                conditions: vec![cond(true)],
            }],
        };
        let v = route_status(&s, "clb-ingress.io/gateway-controller", &current, "t");
        let parents = v["parents"].as_array().unwrap();
        assert_eq!(parents.len(), 2);
        assert_eq!(parents[0]["controllerName"], "example.com/other");
        assert_eq!(parents[1]["parentRef"]["name"], "gw");
        assert_eq!(parents[1]["conditions"][0]["reason"], "Accepted");
    }

    #[test]
    fn an_unchanged_status_compares_equal_and_a_changed_one_does_not() {
        let a = json!({"conditions": [{"type": "Accepted", "status": "True"}]});
        assert!(status_equal(&a, &a.clone()));
        let b = json!({"conditions": [{"type": "Accepted", "status": "False"}]});
        assert!(!status_equal(&a, &b));
        assert!(status_equal(
            &json!({"addresses": null}),
            &json!({"addresses": []})
        ));
    }
}
