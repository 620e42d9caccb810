//! The long-running controller (`clb-ingress run`): watches Kubernetes, reconciles each CLB
//! stack (snapshot -> model -> observe -> plan -> deploy), and reports status, Events and the
//! per-Ingress sync state. Only this module speaks the Kubernetes API.
//!
//! Work is per stack: an event on any object requeues only the stacks that use it; bursts are
//! coalesced by a short debounce; a periodic drift resync (with pruning of CLBs whose stack is
//! gone) runs separately and never delays user changes.

pub mod report;
pub mod stores;

use crate::cli::cloud::CloudArgs;
use crate::deploy::Deployer;
use crate::model::{self, Index, Snapshot, StackId};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::api::networking::v1::Ingress;
use kube::{Api, Client, ResourceExt};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{Mutex, mpsc};
use tracing::{debug, info, instrument, warn};

/// Finalizer put on every Ingress clb-ingress manages.
pub const FINALIZER: &str = "clb-ingress.io/finalizer";
/// User-Agent of every request to Kubernetes.
pub const USER_AGENT: &str = concat!("clb-ingress/", env!("CARGO_PKG_VERSION"));
/// Field manager for every write to Kubernetes.
pub const FIELD_MANAGER: &str = "clb-ingress";
pub const DEFAULT_DEBOUNCE_MS: u64 = 50;
pub const DEFAULT_RESYNC_SECS: u64 = 300;
pub const DEFAULT_CONCURRENCY: usize = 32;
/// CLBs a drift resync reconciles at once: resyncs run beside user changes and must leave them
/// most of the API rate limit.
pub const RESYNC_CONCURRENCY: usize = 2;
/// Delay before retrying a stack whose reconcile failed (doubles up to the cap).
pub const RETRY_BASE: Duration = Duration::from_secs(1);
pub const RETRY_CAP: Duration = Duration::from_secs(60);

/// What changed (from the watchers) or what to redo.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Dirty {
    Ingress(String, String),
    Service(String, String),
    Secret(String, String),
    Nodes,
    Stack(StackId),
    All,
}

#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// kubeconfig file (default: $KUBECONFIG, ~/.kube/config, or the in-cluster service account).
    #[arg(long, env = "KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// Only watch this namespace (default: all namespaces).
    #[arg(long, env = "CLB_INGRESS_WATCH_NAMESPACE")]
    pub watch_namespace: Option<String>,
    /// Only handle this IngressClass (default: every IngressClass with our controller name).
    #[arg(long, env = "CLB_INGRESS_CLASS")]
    pub ingress_class: Option<String>,
    /// The IngressClass `spec.controller` value this controller answers to.
    #[arg(long, default_value = model::build::DEFAULT_CONTROLLER_NAME)]
    pub controller_name: String,
    /// Cluster id used in CLB names and ownership tags (must be unique per cluster).
    #[arg(long, env = "CLB_INGRESS_CLUSTER_ID", default_value = "default")]
    pub cluster_id: String,
    /// Drift resync period in seconds (each resync costs about 3-4 read calls per CLB).
    #[arg(long, default_value_t = DEFAULT_RESYNC_SECS)]
    pub resync_seconds: u64,
    /// Coalesce bursts of events for this long before reconciling.
    #[arg(long, default_value_t = DEFAULT_DEBOUNCE_MS)]
    pub debounce_ms: u64,
    /// CLBs reconciled in parallel (each CLB always has a single writer).
    #[arg(long, default_value_t = DEFAULT_CONCURRENCY)]
    pub concurrency: usize,
    /// Do not watch Nodes (only Direct target mode then works).
    #[arg(long)]
    pub no_node_watch: bool,
    /// Elect a leader through a coordination.k8s.io Lease; only the leader writes.
    #[arg(long)]
    pub leader_elect: bool,
    /// Namespace of the leader-election Lease.
    #[arg(long, env = "POD_NAMESPACE", default_value = "kube-system")]
    pub leader_election_namespace: String,
    /// Name of the leader-election Lease.
    #[arg(long, default_value = "clb-ingress-leader")]
    pub leader_election_name: String,
    /// This replica's identity (default: $POD_NAME or the host name plus a random suffix).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// Address of /metrics, /healthz and /readyz.
    #[arg(long, default_value = "0.0.0.0:8080")]
    pub metrics_addr: std::net::SocketAddr,
    #[command(flatten)]
    pub cloud: CloudArgs,
}

/// What the controller remembers about a stack between reconciles (rebuilt after a restart by
/// the initial full sync).
#[derive(Debug, Clone, Default)]
struct StackMemo {
    members: BTreeSet<(String, String)>,
    services: BTreeSet<(String, String)>,
    secrets: BTreeSet<(String, String)>,
    failures: u32,
}

#[derive(Default)]
struct Memory {
    stacks: BTreeMap<StackId, StackMemo>,
    ingress_stack: HashMap<(String, String), StackId>,
    /// Last processed fingerprint of each Ingress (skips our own status/annotation writes).
    fingerprints: HashMap<(String, String), String>,
    /// Warnings already published per Ingress (so a resync does not repeat them).
    warned: HashMap<(String, String), BTreeSet<String>>,
    /// Secret data cache keyed by (namespace, name), with the resourceVersion it was read at.
    secrets: HashMap<(String, String), (String, Secret)>,
}

/// The running controller.
pub struct Controller {
    client: Client,
    deployer: Deployer,
    args: RunArgs,
    stores: stores::Stores,
    namespaces: kube::runtime::reflector::Store<kube::core::PartialObjectMeta<Namespace>>,
    memory: Mutex<Memory>,
    reporter: report::Reporter,
    tx: mpsc::UnboundedSender<Dirty>,
    pub hooks: Arc<dyn Hooks>,
    /// One writer per CLB: user changes and the resync sweep may reconcile concurrently, but
    /// never the same stack at once.
    stack_locks: std::sync::Mutex<HashMap<StackId, Arc<Mutex<()>>>>,
}

/// Observability hooks (metrics), called by the loop.
pub trait Hooks: Send + Sync {
    fn reconciled(&self, _stack: &StackId, _ok: bool, _elapsed: Duration, _pending: usize) {}
    fn stack_gone(&self, _stack: &StackId) {}
    fn queue_depth(&self, _n: usize) {}
    fn synced(&self) {}
    fn leader(&self, _is_leader: bool) {}
    fn problems(&self, _by_reason: &BTreeMap<&'static str, usize>) {}
}

/// Hooks that do nothing.
pub struct NoHooks;
impl Hooks for NoHooks {}

/// Build a kube client from a kubeconfig path, or infer one.
pub async fn kube_client(path: Option<&std::path::Path>) -> anyhow::Result<Client> {
    let config = match path {
        Some(p) => {
            let kc = kube::config::Kubeconfig::read_from(p)?;
            kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?
        }
        None => kube::Config::infer().await?,
    };
    let mut config = config;
    // A recognisable User-Agent in API server audit logs.
    config.headers.push((
        http::header::USER_AGENT,
        http::HeaderValue::from_static(USER_AGENT),
    ));
    Ok(Client::try_from(config)?)
}

fn fingerprint(ing: &Ingress) -> String {
    let mut anns: Vec<(&String, &String)> = ing
        .annotations()
        .iter()
        .filter(|(k, _)| k.as_str() != report::ANN_SYNC_STATE)
        .collect();
    anns.sort();
    format!(
        "{:?}|{:?}|{:?}|{:?}|{}",
        ing.metadata.generation,
        ing.metadata
            .deletion_timestamp
            .as_ref()
            .map(|t| t.0.to_string()),
        ing.finalizers().iter().any(|f| f == FINALIZER),
        anns,
        serde_json::to_string(&ing.spec).unwrap_or_default()
    )
}

fn clone_all<K: Clone>(v: Vec<Arc<K>>) -> Vec<K> {
    v.into_iter().map(|a| (*a).clone()).collect()
}

/// An Ingress being deleted and the stack it belonged to (if it can still be worked out).
type Deleted = (Arc<Ingress>, Option<StackId>);

impl Controller {
    pub async fn new(
        client: Client,
        deployer: Deployer,
        args: RunArgs,
        tx: mpsc::UnboundedSender<Dirty>,
        hooks: Arc<dyn Hooks>,
    ) -> anyhow::Result<Self> {
        let stores = stores::start(
            &client,
            args.watch_namespace.as_deref(),
            !args.no_node_watch,
            tx.clone(),
        );
        let namespaces = {
            let (reader, writer) = kube::runtime::reflector::store();
            let s = kube::runtime::reflector::reflector(
                writer,
                kube::runtime::watcher(
                    Api::<kube::core::PartialObjectMeta<Namespace>>::all(client.clone()),
                    kube::runtime::watcher::Config::default().any_semantic(),
                ),
            );
            let tx2 = tx.clone();
            tokio::spawn(async move {
                let mut s = std::pin::pin!(s);
                while let Some(ev) = s.next().await {
                    if let Ok(kube::runtime::watcher::Event::Apply(_)) = ev {
                        let _ = tx2.send(Dirty::All);
                    }
                }
            });
            reader
        };
        let identity = args.identity.clone().unwrap_or_else(|| {
            let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "clb-ingress".into());
            format!("{host}-{}", &uuid::Uuid::new_v4().simple().to_string()[..8])
        });
        let reporter = report::Reporter::new(client.clone(), identity);
        Ok(Self {
            client,
            deployer,
            args,
            stores,
            namespaces,
            memory: Mutex::new(Memory::default()),
            reporter,
            tx,
            hooks,
            stack_locks: Default::default(),
        })
    }

    fn stack_lock(&self, id: &StackId) -> Arc<Mutex<()>> {
        let mut locks = self
            .stack_locks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        locks.entry(id.clone()).or_default().clone()
    }

    pub fn identity(&self) -> &str {
        self.reporter.identity()
    }

    pub async fn wait_ready(&self) -> anyhow::Result<()> {
        self.stores.wait_ready().await?;
        self.namespaces.wait_until_ready().await?;
        Ok(())
    }

    /// Build a snapshot from the stores; Secrets referenced by Ingresses are read on demand.
    async fn snapshot(&self, ingresses: &[Arc<Ingress>]) -> Snapshot {
        let mut snap = Snapshot::new(&self.args.cluster_id);
        snap.controller_name = self.args.controller_name.clone();
        snap.ingress_classes = clone_all(self.stores.classes.state());
        if let Some(only) = &self.args.ingress_class {
            snap.ingress_classes
                .retain(|c| c.metadata.name.as_deref() == Some(only.as_str()));
        }
        snap.class_params = clone_all(self.stores.params.state());
        snap.ingresses = ingresses
            .iter()
            .filter(|i| i.metadata.deletion_timestamp.is_none())
            .map(|i| (**i).clone())
            .collect();
        snap.services = clone_all(self.stores.services.state());
        snap.endpoint_slices = clone_all(self.stores.slices.state());
        if let Some(n) = &self.stores.nodes {
            snap.nodes = clone_all(n.state());
        }
        snap.namespaces = self
            .namespaces
            .state()
            .into_iter()
            .map(|m| Namespace {
                metadata: m.metadata.clone(),
                ..Default::default()
            })
            .collect();
        snap.secrets = self.referenced_secrets(&snap).await;
        snap
    }

    async fn referenced_secrets(&self, snap: &Snapshot) -> Vec<Secret> {
        let mut wanted: BTreeSet<(String, String)> = BTreeSet::new();
        for ing in &snap.ingresses {
            let ns = ing.namespace().unwrap_or_default();
            for t in ing.spec.iter().flat_map(|s| s.tls.iter().flatten()) {
                if let Some(n) = &t.secret_name {
                    wanted.insert((ns.clone(), n.clone()));
                }
            }
        }
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
        let mut mem = self.memory.lock().await;
        for (ns, name) in wanted {
            let meta = self
                .stores
                .secrets
                .get(&kube::runtime::reflector::ObjectRef::new(&name).within(&ns));
            let Some(meta) = meta else { continue };
            let rv = meta.resource_version().unwrap_or_default();
            let key = (ns.clone(), name.clone());
            if let Some((cached_rv, s)) = mem.secrets.get(&key)
                && *cached_rv == rv
            {
                out.push(s.clone());
                continue;
            }
            match Api::<Secret>::namespaced(self.client.clone(), &ns)
                .get_opt(&name)
                .await
            {
                Ok(Some(s)) => {
                    mem.secrets.insert(key, (rv, s.clone()));
                    out.push(s);
                }
                Ok(None) => {}
                Err(e) => warn!(secret = %format!("{ns}/{name}"), error = %e, "cannot read Secret"),
            }
        }
        out
    }

    /// Which stacks a batch of changes touches.
    async fn affected(&self, dirty: &BTreeSet<Dirty>, index: &Index<'_>) -> BTreeSet<StackId> {
        let mut mem = self.memory.lock().await;
        let mut out = BTreeSet::new();
        if dirty.contains(&Dirty::All) || dirty.contains(&Dirty::Nodes) {
            out.extend(index.stack_ids().cloned());
            out.extend(mem.stacks.keys().cloned());
            return out;
        }
        for d in dirty {
            match d {
                Dirty::Ingress(ns, name) => {
                    let key = (ns.clone(), name.clone());
                    let current = self
                        .stores
                        .ingresses
                        .get(&kube::runtime::reflector::ObjectRef::new(name).within(ns));
                    if let Some(ing) = &current {
                        let fp = fingerprint(ing);
                        if mem.fingerprints.get(&key) == Some(&fp) {
                            continue;
                        }
                        mem.fingerprints.insert(key.clone(), fp);
                    } else {
                        mem.fingerprints.remove(&key);
                    }
                    if let Some(s) = index.stack_of(ns, name) {
                        out.insert(s.clone());
                    }
                    if let Some(s) = mem.ingress_stack.get(&key) {
                        out.insert(s.clone());
                    } else if let Some(ing) =
                        current.filter(|i| i.metadata.deletion_timestamp.is_some())
                    {
                        // Deleted while we had no memory of it: find its stack from itself.
                        if let Some(s) = self.stack_of_deleted(&ing) {
                            out.insert(s);
                        }
                    }
                }
                Dirty::Service(ns, name) => {
                    let key = (ns.clone(), name.clone());
                    out.extend(
                        mem.stacks
                            .iter()
                            .filter(|(_, m)| m.services.contains(&key))
                            .map(|(id, _)| id.clone()),
                    );
                }
                Dirty::Secret(ns, name) => {
                    let key = (ns.clone(), name.clone());
                    mem.secrets.remove(&key);
                    out.extend(
                        mem.stacks
                            .iter()
                            .filter(|(_, m)| m.secrets.contains(&key))
                            .map(|(id, _)| id.clone()),
                    );
                }
                Dirty::Stack(id) => {
                    out.insert(id.clone());
                }
                Dirty::Nodes | Dirty::All => {}
            }
        }
        out
    }

    fn stack_of_deleted(&self, ing: &Ingress) -> Option<StackId> {
        let mut snap = Snapshot::new(&self.args.cluster_id);
        snap.controller_name = self.args.controller_name.clone();
        snap.ingress_classes = self
            .stores
            .classes
            .state()
            .iter()
            .map(|c| (**c).clone())
            .collect();
        snap.class_params = self
            .stores
            .params
            .state()
            .iter()
            .map(|c| (**c).clone())
            .collect();
        let mut i = ing.clone();
        i.metadata.deletion_timestamp = None;
        snap.ingresses = vec![i];
        let index = Index::new(&snap);
        index
            .stack_ids()
            .next()
            .or_else(|| index.frozen_ids().next())
            .cloned()
    }

    /// A deleted Ingress marked `ingress.cloud.tencent.com/mode: skip`: its CLB must outlive
    /// it (TKE deletes nothing of a skipped Ingress), so mark the CLB retained by its name,
    /// the only change made. True when done (the finalizer may then go).
    async fn keep_frozen_clb(&self, stack: Option<&StackId>) -> bool {
        let Some(id) = stack else {
            return true;
        };
        match self.deployer.retain_lbs(id).await {
            Ok(()) => true,
            Err(e) => {
                warn!(stack = %id, error = %e, "cannot mark the CLB of a skipped Ingress retained");
                false
            }
        }
    }

    fn is_deleted_skip(ing: &Ingress) -> bool {
        ing.metadata.deletion_timestamp.is_some()
            && ing
                .annotations()
                .get(model::build::ANN_MODE)
                .map(String::as_str)
                == Some("skip")
    }

    /// Reconcile the given stacks (all of them, plus pruning, when `full`).
    #[instrument(level = "debug", skip_all, fields(full, n = dirty.len()))]
    pub async fn process(&self, dirty: BTreeSet<Dirty>, full: bool, concurrency: usize) {
        debug!(?dirty, full, "processing");
        // One view of the Ingresses for the whole pass: finalizers are only released for what
        // this pass has seen deleted (a deletion after this point gets its own pass).
        let seen = self.stores.ingresses.state();
        // The stack of each Ingress being deleted, worked out once per pass.
        let deleted: Vec<Deleted> = seen
            .iter()
            .filter(|i| i.metadata.deletion_timestamp.is_some())
            .map(|i| (i.clone(), self.stack_of_deleted(i)))
            .collect();
        let snap = self.snapshot(&seen).await;
        let index = Index::new(&snap);
        let mut stacks = self.affected(&dirty, &index).await;
        debug!(?stacks, "affected stacks");
        if full {
            stacks.extend(index.stack_ids().cloned());
        }
        self.hooks.queue_depth(stacks.len());
        let mut problems: BTreeMap<&'static str, usize> = BTreeMap::new();
        for p in index.global_problems() {
            *problems.entry(p.reason.as_str()).or_default() += 1;
        }
        let results: Vec<(StackId, Vec<model::Problem>)> = futures::stream::iter(stacks)
            .map(|id| {
                let index = &index;
                let seen = &seen;
                let deleted = &deleted;
                async move {
                    let p = self.reconcile_stack(index, &id, seen, deleted).await;
                    (id, p)
                }
            })
            .buffer_unordered(concurrency.max(1))
            .collect()
            .await;
        for (_, ps) in &results {
            for p in ps {
                *problems.entry(p.reason.as_str()).or_default() += 1;
            }
        }
        if full {
            self.hooks.problems(&problems);
            self.prune(&index, &deleted).await;
            debug!("pruned");
            self.release_unmanaged(&index, &seen, &deleted).await;
        }
        self.hooks.queue_depth(0);
        debug!("processed");
    }

    /// Delete CLBs clb-ingress created for this cluster whose stack no longer exists.
    async fn prune(&self, index: &Index<'_>, deleted: &[Deleted]) {
        // Frozen stacks (mode: skip), also of skipped Ingresses being deleted, are never pruned.
        let deleted_skipped: Vec<StackId> = deleted
            .iter()
            .filter(|(i, _)| Self::is_deleted_skip(i))
            .filter_map(|(_, s)| s.clone())
            .collect();
        let wanted: BTreeSet<String> = index
            .stack_ids()
            .chain(index.frozen_ids())
            .chain(deleted_skipped.iter())
            .map(|id| id.hash(&self.args.cluster_id))
            .collect();
        let lbs = match self.deployer.owned_lbs().await {
            Ok(l) => l,
            Err(e) => {
                warn!(error = %e, "cannot list owned CLBs for pruning");
                return;
            }
        };
        for lb in lbs {
            let Some(tag) = lb
                .tags
                .iter()
                .find(|t| t.tag_key == model::ids::TAG_STACK)
                .map(|t| t.tag_value.clone())
            else {
                continue;
            };
            if wanted.contains(&tag) || model::ids::is_retained_name(&lb.load_balancer_name) {
                // Retained CLBs (loadbalance-retain) are the user's now.
                continue;
            }
            info!(lb = %lb.load_balancer_id, "deleting a CLB no Ingress uses any more");
            if let Err(e) = self.deployer.prune(&lb, &tag).await {
                warn!(lb = %lb.load_balancer_id, error = %e, "prune failed");
            }
        }
    }

    /// Remove our finalizer from Ingresses we no longer manage (deleted or moved to another
    /// class) once their stacks have been reconciled.
    async fn release_unmanaged(
        &self,
        index: &Index<'_>,
        seen: &[Arc<Ingress>],
        deleted: &[Deleted],
    ) {
        for ing in seen {
            let (ns, name) = (ing.namespace().unwrap_or_default(), ing.name_any());
            let frozen = index.is_frozen(&StackId::ingress(&ns, &name));
            let managed = ing.metadata.deletion_timestamp.is_none()
                && (index.stack_of(&ns, &name).is_some() || frozen);
            if !managed && ing.finalizers().iter().any(|f| f == FINALIZER) {
                let stack = deleted
                    .iter()
                    .find(|(d, _)| Arc::ptr_eq(d, ing))
                    .and_then(|(_, s)| s.as_ref());
                if Self::is_deleted_skip(ing) && !self.keep_frozen_clb(stack).await {
                    continue;
                }
                let mem = self.memory.lock().await;
                let pending = mem
                    .ingress_stack
                    .get(&(ns.clone(), name.clone()))
                    .and_then(|s| mem.stacks.get(s))
                    .is_some_and(|m| m.failures > 0);
                drop(mem);
                if !pending {
                    self.reporter.remove_finalizer(ing).await;
                }
            }
        }
    }

    /// Reconcile one stack; returns its Problems.
    #[instrument(level = "info", skip_all, fields(stack = %id))]
    async fn reconcile_stack(
        &self,
        index: &Index<'_>,
        id: &StackId,
        seen: &[Arc<Ingress>],
        deleted: &[Deleted],
    ) -> Vec<model::Problem> {
        let lock = self.stack_lock(id);
        let _writer = lock.lock().await;
        let started = Instant::now();
        // mode: skip — nothing is written for a frozen stack; a skipped Ingress being deleted
        // only gets its CLB marked retained, then its finalizer released.
        let deleted_skipped: Vec<&Arc<Ingress>> = deleted
            .iter()
            .filter(|(i, s)| Self::is_deleted_skip(i) && s.as_ref() == Some(id))
            .map(|(i, _)| i)
            .collect();
        if index.is_frozen(id) || !deleted_skipped.is_empty() {
            for ing in deleted_skipped {
                if self.keep_frozen_clb(Some(id)).await {
                    self.reporter.remove_finalizer(ing).await;
                }
            }
            // Forget the stack: a frozen stack is never reconciled, not even as "gone".
            let mut mem = self.memory.lock().await;
            mem.stacks.remove(id);
            mem.ingress_stack.retain(|_, s| s != id);
            drop(mem);
            debug!("frozen (mode: skip)");
            return Vec::new();
        }
        let (desired, problems) = index.build_stack(id);
        let memo = self
            .memory
            .lock()
            .await
            .stacks
            .get(id)
            .cloned()
            .unwrap_or_default();
        let ingresses = seen;
        let find = |ns: &str, name: &str| {
            ingresses
                .iter()
                .find(|i| i.namespace().as_deref() == Some(ns) && i.name_any() == name)
                .cloned()
        };
        let members: BTreeSet<(String, String)> = desired
            .iter()
            .flat_map(|d| &d.members)
            .map(|m| {
                (
                    m.ingress.namespace.clone().unwrap_or_default(),
                    m.ingress.name.clone(),
                )
            })
            .collect();
        // Finalizers go on before any cloud object exists for an Ingress.
        for (ns, name) in &members {
            if let Some(ing) = find(ns, name) {
                self.reporter.ensure_finalizer(&ing).await;
            }
        }
        let result = self.deployer.reconcile(id, desired.as_ref()).await;
        let ok = result.is_ok();
        let pending = match &result {
            Ok(_) => 0,
            Err(_) => 1,
        };
        // Report on every Ingress of the stack (and those that just left it).
        let mut by_ingress: BTreeMap<(String, String), Vec<&model::Problem>> = BTreeMap::new();
        for p in &problems {
            if p.object.kind == "Ingress" {
                by_ingress
                    .entry((
                        p.object.namespace.clone().unwrap_or_default(),
                        p.object.name.clone(),
                    ))
                    .or_default()
                    .push(p);
            }
        }
        for (ns, name) in members.iter().chain(by_ingress.keys()) {
            let Some(ing) = find(ns, name) else { continue };
            let ports = desired
                .iter()
                .flat_map(|d| &d.members)
                .find(|m| m.ingress.namespace.as_deref() == Some(ns) && m.ingress.name == *name)
                .map(|m| m.ports.clone())
                .unwrap_or_default();
            let mine = by_ingress
                .get(&(ns.clone(), name.clone()))
                .cloned()
                .unwrap_or_default();
            let new_warnings: Vec<&model::Problem> = {
                let mut mem = self.memory.lock().await;
                let seen = mem.warned.entry((ns.clone(), name.clone())).or_default();
                let now: BTreeSet<String> = mine.iter().map(|p| p.to_string()).collect();
                let fresh = mine
                    .iter()
                    .filter(|p| !seen.contains(&p.to_string()))
                    .copied()
                    .collect();
                *seen = now;
                fresh
            };
            self.reporter
                .report(&ing, &result, &ports, &mine, &new_warnings)
                .await;
        }
        // Ingresses that left the stack (deleted, moved, unmanaged): release them.
        if ok {
            for (ns, name) in memo.members.difference(&members) {
                if let Some(ing) = find(ns, name)
                    && (ing.metadata.deletion_timestamp.is_some()
                        || index.stack_of(ns, name).is_none())
                {
                    self.reporter.remove_finalizer(&ing).await;
                }
            }
            for (ing, _) in deleted.iter().filter(|(_, s)| s.as_ref() == Some(id)) {
                self.reporter.remove_finalizer(ing).await;
            }
        }
        let mut mem = self.memory.lock().await;
        if desired.is_none() && ok {
            mem.stacks.remove(id);
            mem.ingress_stack.retain(|_, s| s != id);
            self.hooks.stack_gone(id);
        } else {
            let failures = if ok { 0 } else { memo.failures + 1 };
            let services = desired
                .iter()
                .flat_map(|d| &d.listeners)
                .flat_map(|l| &l.domains)
                .flat_map(|dom| &dom.rules)
                .filter_map(|r| r.backend.as_ref())
                .map(|b| (b.namespace.clone(), b.service.clone()))
                .collect();
            let secrets = members
                .iter()
                .filter_map(|(ns, name)| find(ns, name))
                .flat_map(|i| {
                    let ns = i.namespace().unwrap_or_default();
                    i.spec
                        .iter()
                        .flat_map(|s| s.tls.iter().flatten())
                        .filter_map(|t| t.secret_name.clone())
                        .map(|n| (ns.clone(), n))
                        .collect::<Vec<_>>()
                })
                .collect();
            for m in &members {
                mem.ingress_stack.insert(m.clone(), id.clone());
            }
            mem.stacks.insert(
                id.clone(),
                StackMemo {
                    members,
                    services,
                    secrets,
                    failures,
                },
            );
            if !ok {
                let delay = RETRY_BASE
                    .saturating_mul(1 << failures.min(6))
                    .min(RETRY_CAP);
                let tx = self.tx.clone();
                let id = id.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    let _ = tx.send(Dirty::Stack(id));
                });
            }
        }
        drop(mem);
        if let Err(e) = &result {
            warn!(error = %e, "reconcile failed");
        } else {
            debug!("reconciled");
        }
        self.hooks.reconciled(id, ok, started.elapsed(), pending);
        problems
    }
}

/// Run the controller until SIGTERM/Ctrl-C.
pub async fn run(
    args: RunArgs,
    clb: crate::clb::ClbClient,
    hooks: Arc<dyn Hooks>,
    ready: Arc<dyn Fn(bool) + Send + Sync>,
) -> anyhow::Result<()> {
    let client = kube_client(args.kubeconfig.as_deref()).await?;
    let deployer = Deployer::new(clb, args.cluster_id.clone());
    let (tx, mut rx) = mpsc::unbounded_channel();
    let ctl =
        Arc::new(Controller::new(client.clone(), deployer, args.clone(), tx, hooks.clone()).await?);
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);

    // Leadership: without election we are always the leader.
    let (leader_rx, _lease_task) = if args.leader_elect {
        let manager = kube_lease_manager::LeaseManagerBuilder::new(
            client.clone(),
            &args.leader_election_name,
        )
        .with_namespace(&args.leader_election_namespace)
        .with_identity(ctl.identity())
        .with_duration(15)
        .with_grace(5)
        .build()
        .await?;
        let (rx, task) = manager.watch().await;
        (Some(rx), Some(task))
    } else {
        (None, None)
    };
    let is_leader =
        |rx: &Option<tokio::sync::watch::Receiver<bool>>| rx.as_ref().is_none_or(|r| *r.borrow());

    tokio::select! {
        r = ctl.wait_ready() => r?,
        _ = &mut shutdown => return Ok(()),
    }
    info!(identity = ctl.identity(), "caches synced");
    hooks.synced();
    ready(true);
    let mut leader_rx = leader_rx;
    let mut was_leader = false;
    let mut resync = tokio::time::interval(Duration::from_secs(args.resync_seconds.max(1)));
    resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let debounce = Duration::from_millis(args.debounce_ms);
    let mut pending: BTreeSet<Dirty> = BTreeSet::new();
    // Full sweeps (the first one when leadership starts, then the drift resyncs) run in the
    // background so that user changes are never queued behind them.
    let mut sweep: Option<tokio::task::JoinHandle<()>> = None;
    let start_sweep = |concurrency: usize| {
        let ctl = ctl.clone();
        tokio::spawn(async move {
            ctl.process(BTreeSet::from([Dirty::All]), true, concurrency)
                .await;
        })
    };
    loop {
        let leader = is_leader(&leader_rx);
        hooks.leader(leader);
        if leader && !was_leader {
            info!("leading: full sync");
            pending.clear();
            sweep = Some(start_sweep(args.concurrency));
            resync.reset();
        } else if !leader && was_leader {
            info!("lost leadership: stopping writes");
            if let Some(s) = sweep.take() {
                s.abort();
            }
        }
        was_leader = leader;
        tokio::select! {
            _ = &mut shutdown => break,
            changed = async {
                match leader_rx.as_mut() {
                    Some(r) => r.changed().await.is_ok(),
                    None => std::future::pending().await,
                }
            } => {
                if !changed { warn!("leader election stopped"); leader_rx = None; }
            }
            _ = resync.tick() => {
                let busy = sweep.as_ref().is_some_and(|s| !s.is_finished());
                if leader && !busy {
                    debug!("drift resync");
                    sweep = Some(start_sweep(RESYNC_CONCURRENCY));
                }
            }
            d = rx.recv() => {
                let Some(d) = d else { break };
                pending.insert(d);
                // Debounce: gather everything that arrives within the window.
                let until = tokio::time::Instant::now() + debounce;
                while let Ok(Some(d)) = tokio::time::timeout_at(until, rx.recv()).await {
                    pending.insert(d);
                }
                if leader {
                    ctl.process(std::mem::take(&mut pending), false, args.concurrency).await;
                } else {
                    pending.clear();
                }
            }
        }
    }
    if let Some(s) = sweep.take() {
        s.abort();
    }
    info!("shutting down");
    ready(false);
    drop(leader_rx);
    Ok(())
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler can be installed");
        tokio::select! {
            _ = term.recv() => {},
            _ = tokio::signal::ctrl_c() => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
