//! The work queue: [`Dirty`] events from the watchers, coalesced by a debounce window into
//! passes; a pass ([`Controller::prepare`]) builds one snapshot and a [`Job`] per stack it
//! touches; [`Workers`] run the jobs (bounded concurrency, one job per stack at a time, a
//! stuck stack never delays another); the drift resync ([`Controller::sweep`]) runs beside
//! them. A stack whose reconcile failed is requeued after an exponential backoff.

use super::Controller;
use super::memory::Key;
use super::reconcile::{Deleted, is_deleted_skip};
use crate::model::{self, Index, StackId};
use futures::StreamExt;
use k8s_openapi::api::networking::v1::Ingress;
use kube::ResourceExt;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};
use tracing::{debug, instrument};

/// CLBs a drift resync reconciles at once: resyncs run beside user changes and must leave them
/// most of the API rate limit.
pub const RESYNC_CONCURRENCY: usize = 2;
/// Passes being prepared at once. Preparing (snapshot, model) runs in its own task, so intake,
/// leadership changes and shutdown never wait; its stack jobs then go to the per-stack
/// [`Workers`]. One at a time, so that jobs reach the workers in snapshot order.
pub const MAX_EVENT_PASSES: usize = 1;
/// Stacks the full drift sweep prepares from one snapshot (it reads them one by one, slowly:
/// a small batch keeps each job's desired state fresh and memory flat).
pub const FULL_SWEEP_BATCH: usize = 32;
/// Bounds of the full drift sweep's pace (stacks per second).
pub const MIN_FULL_SWEEP_RATE: f64 = 0.001;
pub const MAX_FULL_SWEEP_RATE: f64 = 10_000.0;
/// Delay before retrying a stack whose reconcile failed (doubles up to the cap).
pub const RETRY_BASE: Duration = Duration::from_secs(1);
pub const RETRY_CAP: Duration = Duration::from_secs(60);

/// What changed (from the watchers) or what to redo.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Dirty {
    Ingress(String, String),
    Service(String, String),
    Secret(String, String),
    Nodes,
    Stack(StackId),
    /// A Gateway API object changed (spec, labels or deletion; not status): the Gateway
    /// stacks are built again.
    GatewayApi,
    All,
}

/// Watch events of Ingresses, Services and EndpointSlices waiting for their stack to go live:
/// when the first event of each pending [`Dirty`] arrived, for `clb_ingress_event_to_live_seconds`.
/// A pass takes the times of the changes it handles ([`EventTimes::take`]); a replica that is
/// not the leader drops them ([`EventTimes::clear`]), so the map never outgrows the queue.
#[derive(Debug, Default)]
pub struct EventTimes(std::sync::Mutex<HashMap<Dirty, Instant>>);

impl EventTimes {
    /// A watch event produced `d` now (kept: the earliest time of a change not yet handled).
    pub fn seen(&self, d: &Dirty) {
        if matches!(d, Dirty::Ingress(..) | Dirty::Service(..)) {
            self.lock().entry(d.clone()).or_insert_with(Instant::now);
        }
    }

    /// The event times of the changes in `dirty`, removed from the map.
    pub fn take(&self, dirty: &BTreeSet<Dirty>) -> HashMap<Dirty, Instant> {
        let mut times = self.lock();
        dirty
            .iter()
            .filter_map(|d| Some((d.clone(), times.remove(d)?)))
            .collect()
    }

    /// Forget every pending time (this replica does not reconcile them).
    pub fn clear(&self) {
        self.lock().clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Dirty, Instant>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Add `first` and everything else that arrives on `rx` within `window` to `pending`.
pub async fn debounce(
    rx: &mut UnboundedReceiver<Dirty>,
    first: Dirty,
    window: Duration,
    pending: &mut BTreeSet<Dirty>,
) {
    pending.insert(first);
    let until = tokio::time::Instant::now() + window;
    while let Ok(Some(d)) = tokio::time::timeout_at(until, rx.recv()).await {
        pending.insert(d);
    }
}

/// One writer per CLB: user changes and the resync sweep may reconcile concurrently, but never
/// the same stack at once.
#[derive(Default)]
pub struct StackLocks(std::sync::Mutex<HashMap<StackId, Arc<Mutex<()>>>>);

impl StackLocks {
    /// The lock of stack `id`.
    pub fn get(&self, id: &StackId) -> Arc<Mutex<()>> {
        let mut locks = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        locks.entry(id.clone()).or_default().clone()
    }
}

/// How long a stack that failed `failures` times in a row waits before its next try.
pub fn retry_delay(failures: u32) -> Duration {
    RETRY_BASE
        .saturating_mul(1 << failures.min(6))
        .min(RETRY_CAP)
}

/// `delay` spread by ±20% so that stacks that failed together (a cloud outage) do not all
/// retry in the same instant.
pub fn jittered(delay: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let frac = f64::from(nanos % 1_000_000) / 1_000_000.0;
    delay.mul_f64(0.8 + 0.4 * frac)
}

/// Requeue stack `id` after `delay` (with jitter).
pub fn retry_later(tx: &UnboundedSender<Dirty>, id: StackId, delay: Duration) {
    let delay = jittered(delay);
    let tx = tx.clone();
    tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        let _ = tx.send(Dirty::Stack(id));
    });
}

/// Everything one stack's reconcile needs, owned, so that it runs in its own task.
pub struct Job {
    pub id: StackId,
    /// Sequence number of the snapshot the job was built from (newer snapshots win).
    pub seq: u64,
    /// `mode: skip`: nothing is written.
    pub frozen: bool,
    pub desired: Option<model::DesiredLb>,
    pub problems: Vec<model::Problem>,
    pub view: Arc<View>,
    /// This cluster's CLBs as listed at the start of a resync: a stack whose CLB carries the
    /// digest of `desired` is not read (see `deploy::Listing`). None: read it.
    pub listing: Option<Arc<crate::deploy::Listing>>,
    /// A Gateway stack: the Gateway's computed status (written once its CLB is known).
    pub gateway: Option<clb_ingress_core::gateway::status::GatewayStatus>,
    /// When the earliest watch event this job carries out arrived (`None` for resyncs and
    /// retries without one): measured to the moment its changes are live.
    pub since: Option<Instant>,
}

/// The earlier of two optional instants.
pub fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// One snapshot's view of the Ingresses, shared by the jobs built from it.
pub struct View {
    pub seen: Vec<Arc<Ingress>>,
    pub deleted: Vec<Deleted>,
    /// Whether each Ingress of `seen` (same order) is on some stack. One byte each, not a
    /// copy of its key: a pass's view lives until its last job has run, and under a burst of
    /// events (10,000 Ingresses applied at once) hundreds of passes wait for the workers.
    placed: Vec<bool>,
    /// Lookups so far; after [`View::LINEAR_LOOKUPS`] of them, the positions of `seen` sorted
    /// by namespace and name (4 bytes per Ingress), so that a pass with many jobs (a full
    /// pass: 10,000 lookups in 10,000 Ingresses) searches instead of scanning, while the many
    /// small passes of a burst never pay for sorting.
    lookups: std::sync::atomic::AtomicUsize,
    sorted: std::sync::OnceLock<Vec<u32>>,
}

impl View {
    /// Lookups made by scanning before a view sorts its Ingresses.
    const LINEAR_LOOKUPS: usize = 16;

    pub fn new(seen: Vec<Arc<Ingress>>, deleted: Vec<Deleted>, placed: Vec<bool>) -> Self {
        Self {
            seen,
            deleted,
            placed,
            lookups: Default::default(),
            sorted: Default::default(),
        }
    }

    fn key(ing: &Ingress) -> (Option<&str>, Option<&str>) {
        (
            ing.metadata.namespace.as_deref(),
            ing.metadata.name.as_deref(),
        )
    }

    fn position(&self, ns: &str, name: &str) -> Option<usize> {
        let wanted = (Some(ns), Some(name));
        let n = self
            .lookups
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if n < Self::LINEAR_LOOKUPS {
            return self.seen.iter().position(|i| Self::key(i) == wanted);
        }
        let sorted = self.sorted.get_or_init(|| {
            let mut order: Vec<u32> = (0..self.seen.len() as u32).collect();
            order.sort_unstable_by(|a, b| {
                Self::key(&self.seen[*a as usize]).cmp(&Self::key(&self.seen[*b as usize]))
            });
            order
        });
        sorted
            .binary_search_by(|i| Self::key(&self.seen[*i as usize]).cmp(&wanted))
            .ok()
            .map(|k| sorted[k] as usize)
    }

    /// The Ingress `ns/name` as this snapshot saw it.
    pub fn find(&self, ns: &str, name: &str) -> Option<Arc<Ingress>> {
        self.position(ns, name).map(|i| self.seen[i].clone())
    }

    /// Whether this snapshot saw Ingress `ns/name` on some stack.
    pub fn is_placed(&self, ns: &str, name: &str) -> bool {
        self.position(ns, name).is_some_and(|i| self.placed[i])
    }
}

/// What a full pass does besides reconciling every stack.
pub struct FullWork {
    /// Stack hashes whose CLBs must stay (every stack, frozen ones included).
    pub wanted: BTreeSet<String>,
    /// CLBs named with this prefix are kept although not wanted: Gateway stacks while the
    /// Gateway API caches have not listed (their Gateways are unknown, not gone).
    pub keep_prefix: Option<String>,
    /// Ingresses with our finalizer that no stack manages any more.
    pub unmanaged: Vec<Arc<Ingress>>,
    /// A stack is frozen (`mode: skip`) on an adopted CLB.
    pub frozen_adopted: bool,
}

/// A pass, prepared: the stack jobs and, for full passes, pruning and releasing.
pub struct Prepared {
    pub jobs: Vec<Job>,
    pub full: Option<FullWork>,
    pub view: Arc<View>,
    /// Problems by reason over the jobs and the stack assignment.
    pub problems: BTreeMap<&'static str, usize>,
}

/// Per-stack workers: at most one job per stack runs at a time; a newer job for a busy stack
/// waits (replacing any older waiting one, whose snapshot it supersedes); `concurrency`
/// stacks reconcile at once. Submitting never waits, so intake is never blocked. A stack has
/// at most two jobs in memory (one running, one waiting), each with its desired state and its
/// pass's view: under a burst (10,000 Ingresses applied one by one) every pass rebuilds the
/// stacks it touches, and a stale job kept waiting would hold both for nothing.
pub struct Workers {
    /// Stacks with a job running or waiting to run.
    running: HashSet<StackId>,
    tasks: HashMap<tokio::task::Id, StackId>,
    /// The job that runs after the one its stack has running.
    next: HashMap<StackId, Job>,
    /// Stacks waiting for a free worker, in arrival order, and their jobs. A job becomes a
    /// task only when it can run: a spawned task reserves its whole future up front (8,984
    /// bytes in a debug build), for every one of 10,000 queued jobs.
    queue: VecDeque<StackId>,
    waiting: HashMap<StackId, Job>,
    set: tokio::task::JoinSet<StackId>,
    concurrency: usize,
}

/// Keep the newer of a stack's two unrun jobs in `slot`, carrying the other's events (the
/// dropped job never runs, so the kept one makes them live).
fn supersede(slot: &mut Job, job: Job) {
    let since = earliest(job.since, slot.since);
    if job.seq >= slot.seq {
        *slot = job;
    }
    slot.since = since;
}

impl Workers {
    pub fn new(concurrency: usize) -> Self {
        Self {
            running: HashSet::new(),
            tasks: HashMap::new(),
            next: HashMap::new(),
            queue: VecDeque::new(),
            waiting: HashMap::new(),
            set: tokio::task::JoinSet::new(),
            concurrency: concurrency.max(1),
        }
    }

    /// Queue `job`, or let it replace the job its stack has waiting, or put it behind the one
    /// its stack has running.
    pub fn submit(&mut self, ctl: &Arc<Controller>, job: Job) {
        if let Some(slot) = self.waiting.get_mut(&job.id) {
            supersede(slot, job);
        } else if self.running.contains(&job.id) {
            match self.next.get_mut(&job.id) {
                Some(slot) => supersede(slot, job),
                None => {
                    self.next.insert(job.id.clone(), job);
                }
            }
        } else {
            self.enqueue(job);
            self.pump(ctl);
        }
    }

    fn enqueue(&mut self, job: Job) {
        self.running.insert(job.id.clone());
        self.queue.push_back(job.id.clone());
        self.waiting.insert(job.id.clone(), job);
    }

    /// Start queued jobs while workers are free.
    fn pump(&mut self, ctl: &Arc<Controller>) {
        while self.set.len() < self.concurrency {
            let Some(id) = self.queue.pop_front() else {
                break;
            };
            let Some(job) = self.waiting.remove(&id) else {
                continue;
            };
            let ctl = ctl.clone();
            let handle = self.set.spawn(async move {
                let id = job.id.clone();
                ctl.reconcile_stack(job).await;
                id
            });
            self.tasks.insert(handle.id(), id);
        }
    }

    /// Wait for a job to finish and start the ones waiting; `None` when idle.
    pub async fn join_next(&mut self, ctl: &Arc<Controller>) -> Option<()> {
        let (task, result) = match self.set.join_next_with_id().await? {
            Ok((task, _)) => (task, None),
            Err(e) => (e.id(), Some(e)),
        };
        let id = self.tasks.remove(&task)?;
        if let Some(e) = result {
            tracing::error!(stack = %id, error = %e, "a stack worker failed");
        }
        self.running.remove(&id);
        if let Some(job) = self.next.remove(&id) {
            self.enqueue(job);
        }
        self.pump(ctl);
        Some(())
    }

    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.queue.is_empty()
    }

    /// Stacks running or waiting.
    pub fn len(&self) -> usize {
        self.running.len() + self.next.len()
    }

    /// Stop every job at once (leadership lost, shutdown). Every step is idempotent: the next
    /// leader finishes what was cut short.
    pub fn abort(&mut self) {
        self.set.abort_all();
        self.tasks.clear();
        self.running.clear();
        self.next.clear();
        self.queue.clear();
        self.waiting.clear();
    }
}

/// The first full pass's cloud reads (the quotas, then this cluster's CLB listing), made as
/// soon as leadership is held, while the caches still sync; with the leadership receiver they
/// waited on (None without election).
pub type EarlyReads = tokio::task::JoinHandle<
    Option<(
        Result<crate::deploy::Listing, crate::deploy::DeployError>,
        Option<tokio::sync::watch::Receiver<bool>>,
    )>,
>;

/// Start the first full pass's cloud reads once `leader` says this replica leads.
pub fn early_reads(
    ctl: Arc<Controller>,
    mut leader: Option<tokio::sync::watch::Receiver<bool>>,
) -> EarlyReads {
    tokio::spawn(async move {
        if let Some(rx) = leader.as_mut() {
            rx.wait_for(|leading| *leading).await.ok()?;
        }
        Some((ctl.quotas_and_listing().await, leader))
    })
}

/// Leadership has not changed since `rx` last saw it held (always, without election): what
/// was read from the cloud then is still only ours to change.
fn leading_since(rx: &Option<tokio::sync::watch::Receiver<bool>>) -> bool {
    rx.as_ref()
        .is_none_or(|r| matches!(r.has_changed(), Ok(false)) && *r.borrow())
}

impl Controller {
    /// Prepare a pass: one snapshot, the stacks `dirty` touches (all of them when `full`),
    /// each as a [`Job`]. Reports Ingresses that are on no stack because of a Problem.
    #[instrument(level = "debug", skip_all, fields(full, n = dirty.len()))]
    pub async fn prepare(&self, dirty: BTreeSet<Dirty>, full: bool) -> Prepared {
        debug!(?dirty, full, "preparing a pass");
        let seq = self.next_seq();
        // One view of the Ingresses for the whole pass: finalizers are only released for what
        // this pass has seen deleted (a deletion after this point gets its own pass).
        let seen = self.snapshots.ingresses();
        let deleted: Vec<Deleted> = seen
            .iter()
            .filter(|i| i.metadata.deletion_timestamp.is_some())
            .map(|i| (i.clone(), self.snapshots.stack_of_deleted(i)))
            .collect();
        let placement_known = self.read_placement().await;
        let built = self.snapshots.build(&seen).await;
        for e in &built.errors {
            self.failed(e);
        }
        self.hooks.certificate_expiries(&built.expiries);
        let snap = built.snap;
        let index = Index::new(&snap);
        self.snapshots.remember_placement(index.placement());
        // Gateway API: built only once its caches listed (see `Snapshots::gateway_stores`).
        let gw_ready = self.snapshots.gateway_stores().is_some();
        let (mut gw_stacks, gw_problems, gw_status) = if gw_ready {
            model::build::build_gateways(&index)
        } else {
            Default::default()
        };
        let (gw_secrets, gw_services) = super::gateway::referenced(&snap);
        self.snapshots.forget_secrets(&dirty).await;
        let times = self.event_times.take(&dirty);
        let mut since: HashMap<StackId, Instant> = HashMap::new();
        // A changed Ingress is looked up in this pass's view, never in the live cache: the
        // cache may already hold a newer version (it changed during the awaits above), and
        // recording that version's fingerprint for a job built from the older one would make
        // the newer version's own event look like nothing changed (a lost update).
        let asked: HashSet<(&str, &str)> = dirty
            .iter()
            .filter_map(|d| match d {
                Dirty::Ingress(ns, name) => Some((ns.as_str(), name.as_str())),
                _ => None,
            })
            .collect();
        let in_view: HashMap<(&str, &str), &Arc<Ingress>> = if asked.is_empty() {
            HashMap::new()
        } else {
            seen.iter()
                .filter_map(|i| {
                    let key = (
                        i.metadata.namespace.as_deref().unwrap_or_default(),
                        i.metadata.name.as_deref().unwrap_or_default(),
                    );
                    asked.contains(&key).then_some((key, i))
                })
                .collect()
        };
        let mut stacks = {
            let mut memory = self.memory.lock().await;
            if full {
                // Every stack is built from this view: later events of these versions are not
                // changes.
                memory.seen_in_full_pass(seen.iter());
            }
            memory.affected_by(
                &dirty,
                &index,
                |ns, name| in_view.get(&(ns, name)).map(|i| Arc::clone(i)),
                |ing| self.snapshots.stack_of_deleted(ing),
                |d, id| {
                    if let Some(t) = times.get(d) {
                        let at = since.entry(id.clone()).or_insert(*t);
                        *at = (*at).min(*t);
                    }
                },
            )
        };
        // Also the stacks whose Ingresses in this view name a changed Service or Secret:
        // memory learns a stack's uses only when its reconcile ends.
        for (d, id) in super::memory::named_in_view(&dirty, &seen, index.placed()) {
            if let Some(t) = times.get(d) {
                let at = since.entry(id.clone()).or_insert(*t);
                *at = (*at).min(*t);
            }
            stacks.insert(id);
        }
        // A class's default certificate serves the HTTPS hosts of every stack of the class,
        // also when it arrives after them: that Secret requeues every stack.
        let default_certs: HashSet<Key> = snap
            .class_params
            .iter()
            .filter_map(|p| p.spec.default_certificate.as_ref())
            .filter_map(|c| c.secret.as_deref())
            .filter_map(|s| s.split_once('/'))
            .map(|(ns, n)| (ns.to_string(), n.to_string()))
            .collect();
        if dirty.iter().any(|d| {
            matches!(d, Dirty::Secret(ns, n) if default_certs.contains(&(ns.clone(), n.clone())))
        }) {
            stacks.extend(index.stack_ids().cloned());
        }
        debug!(?stacks, "affected stacks");
        if full {
            stacks.extend(index.stack_ids().cloned());
        }
        let gw_dirty = full
            || dirty.iter().any(|d| match d {
                Dirty::All | Dirty::Nodes | Dirty::GatewayApi => true,
                Dirty::Service(ns, n) => gw_services.contains(&(ns.clone(), n.clone())),
                Dirty::Secret(ns, n) => gw_secrets.contains(&(ns.clone(), n.clone())),
                _ => false,
            });
        if gw_ready {
            let built: BTreeSet<StackId> = gw_stacks.keys().cloned().collect();
            let mut known = self
                .gateway_stacks
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if gw_dirty {
                // Gateways gone since the last pass are reconciled as gone (CLB deleted).
                stacks.extend(known.iter().cloned());
                stacks.extend(built.iter().cloned());
            }
            *known = built;
        } else {
            // Unknown, not gone: a Gateway stack is not touched before the caches list.
            stacks.retain(|id| !matches!(id, StackId::Gateway { .. }));
        }
        // A stack that needs a Secret that could not be read waits (and is retried) instead of
        // being planned as if the Secret were gone.
        for ing in snap
            .ingresses
            .iter()
            .filter(|_| !built.unreadable.is_empty())
        {
            let ns = ing.metadata.namespace.clone().unwrap_or_default();
            let needs_unreadable = super::memory::tls_secret_names(ing)
                .any(|n| built.unreadable.contains(&(ns.clone(), n.to_string())));
            if needs_unreadable
                && let Some(id) = index.stack_of(&ns, ing.metadata.name.as_deref().unwrap_or(""))
                && stacks.remove(id)
            {
                debug!(stack = %id, "held back: a Secret it needs could not be read");
                retry_later(&self.tx, id.clone(), retry_delay(1));
            }
        }
        if !placement_known {
            // Where the shared classes' hosts live is unknown: building their shards now could
            // move hosts to other CLBs (and addresses). They wait for the next read.
            stacks.retain(|id| {
                let shard = id.class_shard().is_some();
                if shard {
                    retry_later(&self.tx, id.clone(), retry_delay(1));
                }
                !shard
            });
        }
        let mut problems: BTreeMap<&'static str, usize> = BTreeMap::new();
        let mut global: BTreeMap<&'static str, usize> = BTreeMap::new();
        for p in index.global_problems().iter().chain(&gw_problems) {
            *problems.entry(p.reason.as_str()).or_default() += 1;
            *global.entry(p.reason.as_str()).or_default() += 1;
        }
        if let Some(gw) = self.snapshots.gateway_stores() {
            self.report_gateway_api(gw, &gw_status, &gw_problems).await;
        }
        let placed: HashSet<(&str, &str)> = index.placed().map(|(key, _)| key).collect();
        fn key_of(ing: &Ingress) -> (&str, &str) {
            (
                ing.metadata.namespace.as_deref().unwrap_or_default(),
                ing.metadata.name.as_deref().unwrap_or_default(),
            )
        }
        // Pruning needs every stack the cluster wants: without the shard placement, the shard
        // stacks this build made may not be the ones the CLBs are, so nothing is pruned then.
        let full_work = (full && placement_known).then(|| FullWork {
            keep_prefix: (self.snapshots.gateway_api() && !gw_ready)
                .then(|| super::gateway::clb_name_prefix(&self.config.cluster_id)),
            wanted: index
                .stack_ids()
                .chain(gw_stacks.keys())
                .chain(index.frozen_ids())
                .chain(
                    deleted
                        .iter()
                        .filter(|(i, _)| is_deleted_skip(i))
                        .filter_map(|(_, s)| s.as_ref()),
                )
                .map(|id| id.hash(&self.config.cluster_id))
                .collect(),
            unmanaged: seen
                .iter()
                .filter(|ing| {
                    let (ns, name) = key_of(ing);
                    let frozen = index.is_frozen(&StackId::ingress(ns, name));
                    let managed = ing.metadata.deletion_timestamp.is_none()
                        && (placed.contains(&(ns, name)) || frozen);
                    !managed && ing.finalizers().iter().any(|f| f == super::FINALIZER)
                })
                .cloned()
                .collect(),
            frozen_adopted: index.frozen_ids().any(|id| id.adopted_lb().is_some()),
        });
        let placed: Vec<bool> = seen
            .iter()
            .map(|ing| placed.contains(&key_of(ing)))
            .collect();
        let view = Arc::new(View::new(seen, deleted, placed));
        let jobs: Vec<Job> = stacks
            .into_iter()
            .map(|id| {
                let (desired, ps, gateway) = match &id {
                    StackId::Gateway { namespace, name } => (
                        gw_stacks.remove(&id),
                        Vec::new(),
                        gw_status
                            .gateways
                            .iter()
                            .find(|g| g.namespace == *namespace && g.name == *name)
                            .cloned(),
                    ),
                    _ => {
                        let (d, ps) = index.build_stack(&id);
                        (d, ps, None)
                    }
                };
                for p in &ps {
                    *problems.entry(p.reason.as_str()).or_default() += 1;
                }
                Job {
                    frozen: index.is_frozen(&id),
                    since: since.get(&id).copied(),
                    id,
                    seq,
                    desired,
                    problems: ps,
                    view: view.clone(),
                    listing: None,
                    gateway,
                }
            })
            .collect();
        // The problems gauge is current after every pass, not only after a resync.
        let total = self.count_problems(&index, &jobs, global);
        self.hooks.problems(&total);
        self.report_unplaced(&index, &view.seen).await;
        Prepared {
            jobs,
            full: full_work,
            view,
            problems,
        }
    }

    /// Read where the shared classes' hosts live from the CLBs, once (before the first
    /// build); false while that read fails.
    async fn read_placement(&self) -> bool {
        if self.snapshots.placement_known() {
            return true;
        }
        let _one = self.snapshots.placement_read.lock().await;
        if self.snapshots.placement_known() {
            return true;
        }
        match self
            .deployer
            .shard_placement(&self.snapshots.class_names())
            .await
        {
            Ok(p) => {
                debug!(classes = p.len(), "shard placement read from the CLBs");
                self.snapshots.set_read_placement(p);
                true
            }
            Err(e) => {
                tracing::warn!(error = %super::error::describe(&e), "reading the shard placement failed; shared classes wait");
                false
            }
        }
    }

    /// Record the Problems of this pass's `jobs` per stack (forgetting stacks the `index` no
    /// longer has) and return the sum over every stack plus the `global` ones.
    fn count_problems(
        &self,
        index: &Index<'_>,
        jobs: &[Job],
        global: BTreeMap<&'static str, usize>,
    ) -> BTreeMap<&'static str, usize> {
        let mut by_stack = self
            .stack_problems
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for job in jobs {
            let mut counts: BTreeMap<&'static str, usize> = BTreeMap::new();
            for p in &job.problems {
                *counts.entry(p.reason.as_str()).or_default() += 1;
            }
            by_stack.insert(job.id.clone(), counts);
        }
        let live: HashSet<&StackId> = index.stack_ids().collect();
        by_stack.retain(|id, _| live.contains(id));
        let mut total = global;
        for counts in by_stack.values() {
            for (reason, n) in counts {
                *total.entry(reason).or_default() += n;
            }
        }
        total
    }

    /// Read the account's quotas (DescribeQuota) and use them from now on; true when they
    /// changed. A failed read keeps the quotas in use.
    pub async fn refresh_quotas(&self) -> bool {
        match self.deployer.limits().await {
            Ok(limits) => {
                self.hooks.rule_quota(limits.rules_per_listener);
                let changed = self.snapshots.set_limits(limits);
                if changed {
                    tracing::info!(?limits, "CLB quotas (DescribeQuota)");
                }
                changed
            }
            Err(e) => {
                debug!(
                    error = %super::error::describe(&e),
                    "DescribeQuota failed; keeping the quotas in use"
                );
                false
            }
        }
    }

    /// The account's quotas (they can be raised at any time: re-read on every sweep) and,
    /// at the same time, one listing of this cluster's CLBs (one read per page of 100): the
    /// stacks whose CLB carries their desired-state digest are not read at all.
    async fn quotas_and_listing(
        &self,
    ) -> Result<crate::deploy::Listing, crate::deploy::DeployError> {
        tokio::join!(self.refresh_quotas(), self.deployer.listing()).1
    }

    /// A full pass: every stack, `concurrency` at a time, then pruning and finalizer release.
    /// `first` (the pass when leadership starts) carries the reads made while the caches
    /// synced; the drift resyncs (None) read again and also run the certificate GC (not the
    /// first pass: a restart then costs one read per page of CLBs, and an unused certificate
    /// waits a grace period anyway).
    pub async fn sweep(self: Arc<Self>, concurrency: usize, first: Option<EarlyReads>) {
        let collect = first.is_none();
        // Read while the caches synced, if leadership held since.
        let early = match first {
            Some(handle) => match handle.await {
                Ok(Some((listing, rx))) if leading_since(&rx) => Some(listing),
                _ => None,
            },
            None => None,
        };
        let listing = match early {
            Some(listing) => listing,
            None => self.quotas_and_listing().await,
        };
        let listing = match listing {
            Ok(l) => Some(Arc::new(l)),
            Err(e) => {
                self.failed(&super::ControllerError::ListOwnedLbs(e));
                None
            }
        };
        let mut prepared = self.prepare(BTreeSet::from([Dirty::All]), true).await;
        if let Some(listing) = &listing {
            for job in &mut prepared.jobs {
                job.listing = Some(listing.clone());
            }
            // Stacks that changed (also while no controller ran) go first.
            prepared.jobs.sort_by_cached_key(|j| {
                self.deployer
                    .warm_outcome(&j.id, j.desired.as_ref(), listing)
                    .is_some()
            });
        }
        // What the certificate GC needs, taken before the jobs are consumed (only when it runs).
        // Certificates of Gateway CLBs are in use although no job names them while the Gateway
        // API caches have not listed: no collection then.
        let gateways_unknown =
            self.snapshots.gateway_api() && self.snapshots.gateway_stores().is_none();
        let grace = self
            .config
            .certificate_gc_grace
            .filter(|_| collect && !gateways_unknown);
        let cert_gc = grace.map(|grace| {
            let facts = super::certgc::SweepFacts {
                in_use: prepared
                    .jobs
                    .iter()
                    .filter_map(|j| j.desired.as_ref())
                    .flat_map(super::certgc::pem_names)
                    .collect(),
                reconciled: prepared
                    .jobs
                    .iter()
                    .map(|j| j.id.hash(&self.config.cluster_id))
                    .collect(),
                frozen_adopted: prepared.full.as_ref().is_some_and(|f| f.frozen_adopted),
            };
            (facts, grace)
        });
        self.hooks.queue_depth(prepared.jobs.len());
        futures::stream::iter(prepared.jobs)
            .for_each_concurrent(concurrency.max(1), |job| {
                let ctl = self.clone();
                async move { ctl.reconcile_stack(job).await }
            })
            .await;
        self.hooks.problems(&prepared.problems);
        if let Some(full) = prepared.full {
            self.prune(
                &full.wanted,
                full.keep_prefix.as_deref(),
                listing.as_deref(),
            )
            .await;
            debug!("pruned");
            self.release_unmanaged(&full.unmanaged, &prepared.view.deleted)
                .await;
            if let Some((facts, grace)) = cert_gc {
                self.collect_certificates(facts, grace).await;
            }
        }
        self.hooks.queue_depth(0);
        debug!("swept");
    }

    /// The full drift sweep: every stack is read and repaired, `per_second` at most (and
    /// [`RESYNC_CONCURRENCY`] at once), in batches of [`FULL_SWEEP_BATCH`] prepared from a
    /// fresh snapshot each. Finds what the desired-state tag cannot: changes made to CLBs
    /// outside clb-ingress. User changes never wait for it (one writer per stack).
    pub async fn full_sweep(self: Arc<Self>, per_second: f64) {
        let ids = self.memory.lock().await.stack_ids();
        debug!(stacks = ids.len(), per_second, "full drift sweep");
        let period = Duration::from_secs_f64(
            1.0 / per_second.clamp(MIN_FULL_SWEEP_RATE, MAX_FULL_SWEEP_RATE),
        );
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let permits = Arc::new(tokio::sync::Semaphore::new(RESYNC_CONCURRENCY));
        let mut running = tokio::task::JoinSet::new();
        for batch in ids.chunks(FULL_SWEEP_BATCH) {
            let dirty = batch.iter().cloned().map(Dirty::Stack).collect();
            let prepared = self.prepare(dirty, false).await;
            for job in prepared.jobs {
                tick.tick().await;
                // The semaphore is never closed.
                let Ok(permit) = permits.clone().acquire_owned().await else {
                    return;
                };
                let ctl = self.clone();
                // Its CLB calls leave a tenth of every action's rate to user changes.
                running.spawn(crate::clb::ratelimit::in_background(async move {
                    ctl.reconcile_stack(job).await;
                    drop(permit);
                }));
            }
        }
        while running.join_next().await.is_some() {}
        debug!("full drift sweep done");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_waiting_job_is_replaced_by_a_newer_one_and_keeps_the_earliest_event_of_both() {
        let view = Arc::new(View::new(Vec::new(), Vec::new(), Vec::new()));
        let t0 = Instant::now();
        let job = |seq: u64, since: Option<Instant>| Job {
            id: StackId::ingress("ns", "web"),
            seq,
            frozen: false,
            desired: None,
            problems: Vec::new(),
            view: view.clone(),
            listing: None,
            gateway: None,
            since,
        };
        let later = t0 + Duration::from_secs(1);
        let mut slot = job(1, Some(later));
        supersede(&mut slot, job(2, Some(t0)));
        assert_eq!((slot.seq, slot.since), (2, Some(t0)));
        // An older job (a snapshot already superseded) never replaces a newer one, but its
        // event still counts.
        let mut slot = job(5, Some(later));
        supersede(&mut slot, job(4, Some(t0)));
        assert_eq!((slot.seq, slot.since), (5, Some(t0)));
        let mut slot = job(5, None);
        supersede(&mut slot, job(6, None));
        assert_eq!((slot.seq, slot.since), (6, None));
    }

    #[test]
    fn a_view_finds_each_ingress_by_scanning_then_by_searching_its_sorted_positions() {
        let ing = |ns: &str, name: &str| {
            let mut i = Ingress::default();
            i.metadata.namespace = Some(ns.into());
            i.metadata.name = Some(name.into());
            Arc::new(i)
        };
        let seen: Vec<Arc<Ingress>> = (0..50)
            .map(|k| {
                ing(
                    &format!("ns{}", (k * 7) % 5),
                    &format!("i{}", (k * 13) % 50),
                )
            })
            .collect();
        let placed = seen.iter().map(|i| View::key(i).1 != Some("i3")).collect();
        let view = View::new(seen.clone(), Vec::new(), placed);
        // More lookups than the scanning ones: the later ones search the sorted positions.
        for round in 0..3 {
            for i in &seen {
                let (Some(ns), Some(name)) = View::key(i) else {
                    unreachable!()
                };
                let found = view.find(ns, name).expect("found");
                assert!(Arc::ptr_eq(&found, i), "round {round}: {ns}/{name}");
                assert_eq!(view.is_placed(ns, name), name != "i3");
            }
            assert!(view.find("ns0", "nothing").is_none());
            assert!(!view.is_placed("elsewhere", "i1"));
        }
        assert!(view.sorted.get().is_some(), "sorted after many lookups");
    }

    #[tokio::test]
    async fn early_reads_count_only_while_the_leadership_they_waited_for_never_lapsed() {
        assert!(
            leading_since(&None),
            "without election this replica always leads"
        );
        let (tx, rx) = tokio::sync::watch::channel(false);
        let mut rx = Some(rx);
        tx.send_replace(true);
        rx.as_mut().unwrap().wait_for(|l| *l).await.unwrap();
        assert!(leading_since(&rx));
        // Lost and taken again: another leader may have written in between.
        tx.send_replace(false);
        tx.send_replace(true);
        assert!(!leading_since(&rx));
        // Lost for good.
        rx.as_mut().unwrap().borrow_and_update();
        tx.send_replace(false);
        assert!(!leading_since(&rx));
        rx.as_mut().unwrap().borrow_and_update();
        assert!(!leading_since(&rx), "seen, but not leading");
    }

    #[test]
    fn retries_back_off_exponentially_up_to_the_cap() {
        let delays: Vec<u64> = (1..=8).map(|f| retry_delay(f).as_secs()).collect();
        assert_eq!(delays, [2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(retry_delay(u32::MAX), RETRY_CAP);
    }

    #[tokio::test(start_paused = true)]
    async fn debounce_coalesces_a_burst_and_leaves_later_events_queued() {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        tx.send(Dirty::Nodes).unwrap();
        tx.send(Dirty::Nodes).unwrap();
        let late = tx.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            late.send(Dirty::All).unwrap();
        });
        let mut pending = BTreeSet::new();
        debounce(
            &mut rx,
            Dirty::Stack(StackId::ingress("ns", "a")),
            Duration::from_millis(50),
            &mut pending,
        )
        .await;
        assert_eq!(
            pending,
            BTreeSet::from([Dirty::Nodes, Dirty::Stack(StackId::ingress("ns", "a"))])
        );
        assert_eq!(rx.recv().await, Some(Dirty::All));
    }

    #[test]
    fn retry_delays_are_jittered_within_a_fifth_of_the_delay() {
        let base = Duration::from_secs(10);
        let seen: Vec<Duration> = (0..200)
            .map(|_| {
                std::thread::sleep(Duration::from_micros(37));
                jittered(base)
            })
            .collect();
        assert!(
            seen.iter()
                .all(|d| *d >= base.mul_f64(0.8) && *d <= base.mul_f64(1.2))
        );
        assert!(
            seen.iter().any(|d| *d != seen[0]),
            "the delays are spread, not all equal"
        );
    }

    #[test]
    fn one_lock_per_stack() {
        let locks = StackLocks::default();
        let (a, b) = (StackId::ingress("ns", "a"), StackId::ingress("ns", "b"));
        assert!(Arc::ptr_eq(&locks.get(&a), &locks.get(&a)));
        assert!(!Arc::ptr_eq(&locks.get(&a), &locks.get(&b)));
    }
}
