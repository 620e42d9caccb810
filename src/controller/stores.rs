//! Watchers and reflector stores for the kinds the controller reads. Stores keep slim objects
//! (no managedFields, no last-applied annotation; see [`slim`], and for the large kinds
//! [`slim_slice`] and [`slim_secret`]). Secrets are watched as metadata only and keep only their
//! identity and resourceVersion; their data is fetched on demand for the Secrets Ingresses
//! reference.

use super::queue::{Dirty, EventTimes};
use super::throttle::LogLimiter;
use crate::crd::{ClbBackendConfig, ClbClassParameters, TkeServiceConfig};
use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{Namespace, Node, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use std::fmt::Debug;
use std::sync::Arc;
use tokio::sync::mpsc::UnboundedSender;
use tracing::warn;

const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// All stores, cheap to clone.
#[derive(Clone)]
pub struct Stores {
    pub ingresses: Store<Ingress>,
    pub classes: Store<IngressClass>,
    pub params: Store<ClbClassParameters>,
    /// Not waited for at start: a missing CRD (a chart upgrade does not install new CRDs)
    /// only leaves backend settings unmanaged until it is installed.
    pub backend_configs: Store<ClbBackendConfig>,
    /// With `--tke-service-configs` only; not waited for either.
    pub tke_configs: Option<Store<TkeServiceConfig>>,
    pub services: Store<Service>,
    pub slices: Store<EndpointSlice>,
    pub nodes: Option<Store<Node>>,
    pub secrets: Store<PartialObjectMeta<Secret>>,
    /// Namespaces, metadata only (the model reads their labels).
    pub namespaces: Store<PartialObjectMeta<Namespace>>,
    /// Pods carrying the readiness gate label (None: readiness gates off).
    pub pods: Option<Store<k8s_openapi::api::core::v1::Pod>>,
    /// The Gateway API kinds (`--gateway-api`); not waited for (their CRDs may be missing).
    pub gateway: Option<super::gateway::GatewayStores>,
}

impl Stores {
    /// Wait until every store has its initial listing.
    pub async fn wait_ready(&self) -> Result<(), reflector::store::WriterDropped> {
        self.ingresses.wait_until_ready().await?;
        self.classes.wait_until_ready().await?;
        self.params.wait_until_ready().await?;
        self.services.wait_until_ready().await?;
        self.slices.wait_until_ready().await?;
        if let Some(n) = &self.nodes {
            n.wait_until_ready().await?;
        }
        self.secrets.wait_until_ready().await?;
        self.namespaces.wait_until_ready().await?;
        if let Some(p) = &self.pods {
            p.wait_until_ready().await?;
        }
        Ok(())
    }
}

pub fn slim<K: Resource>(o: &mut K) {
    let meta = o.meta_mut();
    meta.managed_fields = None;
    if let Some(a) = meta.annotations.as_mut() {
        a.remove(LAST_APPLIED);
    }
}

/// An EndpointSlice as the model reads it: per endpoint, its addresses, conditions, node and
/// the kind and name of its target (the pod). Hints, zones, hostnames and the rest of the
/// target reference are dropped: with 100,000 endpoints they are most of the cache.
pub(super) fn slim_slice(s: &mut EndpointSlice) {
    slim(s);
    for ep in &mut s.endpoints {
        ep.hints = None;
        ep.zone = None;
        ep.hostname = None;
        ep.deprecated_topology = None;
        if let Some(r) = ep.target_ref.as_mut() {
            *r = k8s_openapi::api::core::v1::ObjectReference {
                kind: r.kind.take(),
                name: r.name.take(),
                ..Default::default()
            };
        }
    }
}

/// A Secret's metadata as the controller reads it: whether it exists and its resourceVersion
/// (its data is read on demand). Labels, annotations and owners are dropped.
pub(super) fn slim_secret(s: &mut PartialObjectMeta<Secret>) {
    let m = &mut s.metadata;
    *m = kube::api::ObjectMeta {
        name: m.name.take(),
        namespace: m.namespace.take(),
        resource_version: m.resource_version.take(),
        uid: m.uid.take(),
        ..Default::default()
    };
}

fn api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Where watch errors go: a rate-limited log and a counter per kind.
#[derive(Clone)]
pub struct WatchErrors {
    pub limiter: Arc<LogLimiter>,
    pub count: Arc<dyn Fn(&'static str) + Send + Sync>,
}

/// Whether the "CRD not installed" error was logged (it is logged once per process).
static CRD_MISSING_LOGGED: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

/// The kinds whose CRDs clb-ingress installs (`clb-ingress crd`).
const OUR_CRD_KINDS: [&str; 2] = ["ClbClassParameters", "ClbBackendConfig"];

/// A watch error in words: what failed, then the API server's message, reason and code (never
/// a `Debug` dump of the response).
pub fn watch_error_text(error: &watcher::Error) -> String {
    use super::error::describe;
    match error {
        watcher::Error::InitialListFailed(e) => format!("initial list failed: {}", describe(e)),
        watcher::Error::WatchStartFailed(e) => format!("watch start failed: {}", describe(e)),
        watcher::Error::WatchFailed(e) => format!("watch failed: {}", describe(e)),
        watcher::Error::WatchError(st) => format!(
            "the API server ended the watch: {} ({}, HTTP {})",
            st.message, st.reason, st.code
        ),
        other => other.to_string(),
    }
}

/// Whether a watch error says the kind does not exist on the API server (404 on list).
fn is_missing_kind(error: &watcher::Error) -> bool {
    match error {
        watcher::Error::InitialListFailed(e) | watcher::Error::WatchStartFailed(e) => {
            super::error::is_kube_not_found(e)
        }
        _ => false,
    }
}

impl WatchErrors {
    pub(super) fn report(&self, kind: &'static str, error: &watcher::Error) {
        (self.count)(kind);
        if OUR_CRD_KINDS.contains(&kind) && is_missing_kind(error) {
            // Retried with backoff until it is installed; said once, with the fix.
            if !CRD_MISSING_LOGGED.swap(true, std::sync::atomic::Ordering::Relaxed) {
                tracing::error!(
                    kind,
                    fix = "clb-ingress crd | kubectl apply -f -",
                    "the {kind} CRD is not installed (the API server answers 404); \
                     install it with `clb-ingress crd | kubectl apply -f -` or the Helm chart; \
                     the controller retries until it is there"
                );
            } else {
                tracing::debug!(kind, error = %watch_error_text(error), "CRD still missing");
            }
            return;
        }
        let text = watch_error_text(error);
        if let Some(suppressed) = self.limiter.allow(&format!("{kind}: {text}")) {
            warn!(kind, error = %text, suppressed, "watch error (retrying with backoff)");
        }
    }
}

/// Where watch events go: the queue, and the event times of the event-to-live histogram.
#[derive(Clone)]
pub struct Intake {
    pub tx: UnboundedSender<Dirty>,
    pub times: Arc<EventTimes>,
}

/// Run one reflector; every applied/deleted object becomes a `Dirty` via `to_dirty`.
fn run<K>(
    name: &'static str,
    stream: impl Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static,
    intake: Intake,
    errors: WatchErrors,
    to_dirty: fn(&K) -> Dirty,
) -> Store<K>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    run_trimmed(name, stream, intake, errors, to_dirty, slim)
}

/// [`run`], keeping of each object only what `trim` leaves (it must also do what [`slim`]
/// does).
fn run_trimmed<K>(
    name: &'static str,
    stream: impl Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static,
    intake: Intake,
    errors: WatchErrors,
    to_dirty: fn(&K) -> Dirty,
    trim: fn(&mut K),
) -> Store<K>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    let (reader, writer) = reflector::store();
    let stream = reflector::reflector(writer, stream.modify(trim));
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        // The first list is what the caches are ready with; the full sync that follows
        // readiness covers it (a restart must not reconcile every stack again, without the
        // warm-restart listing). Only a later re-list (after the watch lost track) needs a pass.
        let mut listed = false;
        while let Some(ev) = stream.next().await {
            match ev {
                Ok(watcher::Event::Apply(o) | watcher::Event::Delete(o)) => {
                    let d = to_dirty(&o);
                    intake.times.seen(&d);
                    let _ = intake.tx.send(d);
                }
                Ok(watcher::Event::InitDone) => {
                    if listed {
                        let _ = intake.tx.send(Dirty::All);
                    }
                    listed = true;
                }
                Ok(_) => {}
                Err(e) => errors.report(name, &e),
            }
        }
    });
    reader
}

fn cfg() -> watcher::Config {
    watcher::Config::default().any_semantic()
}

fn backoff<K: Clone + Send + 'static>(
    s: impl Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static,
) -> impl Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static {
    s.default_backoff()
}

/// Start every watcher. `namespace` restricts namespaced kinds.
pub fn start(
    client: &Client,
    namespace: Option<&str>,
    (watch_nodes, watch_tke_configs): (bool, bool),
    intake: Intake,
    errors: WatchErrors,
) -> Stores {
    let ingresses = run(
        "Ingress",
        backoff(watcher(api::<Ingress>(client, namespace), cfg())),
        intake.clone(),
        errors.clone(),
        |o| Dirty::Ingress(o.namespace().unwrap_or_default(), o.name_any()),
    );
    let classes = run(
        "IngressClass",
        backoff(watcher(Api::<IngressClass>::all(client.clone()), cfg())),
        intake.clone(),
        errors.clone(),
        |_| Dirty::All,
    );
    let params = run(
        "ClbClassParameters",
        backoff(watcher(
            Api::<ClbClassParameters>::all(client.clone()),
            cfg(),
        )),
        intake.clone(),
        errors.clone(),
        |_| Dirty::All,
    );
    // Backend settings are rare and small: any change requeues every stack.
    let backend_configs = run(
        "ClbBackendConfig",
        backoff(watcher(api::<ClbBackendConfig>(client, namespace), cfg())),
        intake.clone(),
        errors.clone(),
        |_| Dirty::All,
    );
    let tke_configs = watch_tke_configs.then(|| {
        run(
            "TkeServiceConfig",
            backoff(watcher(api::<TkeServiceConfig>(client, namespace), cfg())),
            intake.clone(),
            errors.clone(),
            |_| Dirty::All,
        )
    });
    let services = run(
        "Service",
        backoff(watcher(api::<Service>(client, namespace), cfg())),
        intake.clone(),
        errors.clone(),
        |o| Dirty::Service(o.namespace().unwrap_or_default(), o.name_any()),
    );
    let slices = run_trimmed(
        "EndpointSlice",
        backoff(watcher(api::<EndpointSlice>(client, namespace), cfg())),
        intake.clone(),
        errors.clone(),
        |o| {
            let svc = o
                .labels()
                .get(crate::model::build::LABEL_SERVICE_NAME)
                .cloned()
                .unwrap_or_default();
            Dirty::Service(o.namespace().unwrap_or_default(), svc)
        },
        slim_slice,
    );
    let nodes = watch_nodes.then(|| {
        run(
            "Node",
            backoff(watcher(Api::<Node>::all(client.clone()), cfg())),
            intake.clone(),
            errors.clone(),
            |_| Dirty::Nodes,
        )
    });
    let secrets = run_trimmed(
        "Secret",
        backoff(watcher(
            api::<PartialObjectMeta<Secret>>(client, namespace),
            cfg(),
        )),
        intake.clone(),
        errors.clone(),
        |o| Dirty::Secret(o.namespace().unwrap_or_default(), o.name_any()),
        slim_secret,
    );
    let namespaces = namespaces(client, intake, errors);
    Stores {
        ingresses,
        classes,
        params,
        backend_configs,
        tke_configs,
        services,
        slices,
        nodes,
        secrets,
        namespaces,
        pods: None,
        gateway: None,
    }
}

/// The Namespace watcher: any Namespace change requeues everything (its labels select classes
/// and tenancy scopes). Backoff like every other watcher: an unreachable API server is retried
/// with growing delays, never in a busy loop.
fn namespaces(
    client: &Client,
    intake: Intake,
    errors: WatchErrors,
) -> Store<PartialObjectMeta<Namespace>> {
    run(
        "Namespace",
        backoff(watcher(
            Api::<PartialObjectMeta<Namespace>>::all(client.clone()),
            cfg(),
        )),
        intake,
        errors,
        |_| Dirty::All,
    )
}
