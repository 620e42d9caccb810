//! The long-running controller (`clb-ingress run`): watches Kubernetes, reconciles each CLB
//! stack (snapshot -> model -> observe -> plan -> deploy), and reports status, Events and the
//! per-Ingress sync state. Only this module speaks the Kubernetes API.
//!
//! Work is per stack: an event on any object requeues only the stacks that use it; bursts are
//! coalesced by a short debounce; a periodic resync (one listing of our CLBs: stacks whose CLB
//! carries the digest of their desired state are not read; CLBs whose stack is gone are
//! pruned) and a slow, paced full drift sweep (every CLB read) run separately and never delay
//! user changes (see docs/operations.md "Warm restart").
//!
//! This file is the wiring ([`run`]: watchers, leader election, the event loop, shutdown). The
//! parts: `config` (settings), `stores` (watch caches), `snapshot` (model input, Secret
//! cache), `memory` (what is remembered of stacks and Ingresses), `queue` (events, debounce,
//! workers, retries), `reconcile` (one stack, pruning, finalizer release), `report` (writes
//! to Ingresses), `error` (what can fail, its category and retry policy).

pub mod certgc;
pub mod config;
pub mod error;
pub mod gate;
pub mod gateway;
pub mod lease;
pub mod memory;
pub mod queue;
pub mod reconcile;
pub mod report;
pub mod snapshot;
pub mod stores;
pub mod throttle;

pub use config::{ControllerConfig, LeaderElection};
pub use error::{ControllerError, Retry};
pub use queue::Dirty;

use crate::deploy::Deployer;
use crate::model::StackId;
use kube::Client;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Mutex, mpsc};
use tracing::{debug, info, warn};

/// Finalizer put on every Ingress clb-ingress manages.
pub const FINALIZER: &str = "clb-ingress.io/finalizer";
/// User-Agent of every request to Kubernetes.
pub const USER_AGENT: &str = concat!("clb-ingress/", env!("CARGO_PKG_VERSION"));
/// Field manager for every write to Kubernetes.
pub const FIELD_MANAGER: &str = "clb-ingress";

/// The running controller.
pub struct Controller {
    config: ControllerConfig,
    deployer: Deployer,
    snapshots: snapshot::Snapshots,
    memory: Mutex<memory::Memory>,
    reporter: report::Reporter,
    tx: mpsc::UnboundedSender<Dirty>,
    pub hooks: Arc<dyn Hooks>,
    locks: queue::StackLocks,
    /// Snapshot sequence numbers: the next one, and the last reconciled per stack.
    seq: std::sync::atomic::AtomicU64,
    done: std::sync::Mutex<std::collections::HashMap<StackId, u64>>,
    /// Certificates the GC found unused, and since when.
    unused_certs: certgc::Unused,
    /// Problems by reason of each stack as last prepared (the problems gauge is their sum plus
    /// the stack assignment's, set after every pass).
    /// The Gateway stacks of the last pass (those gone since are reconciled as gone).
    gateway_stacks: std::sync::Mutex<BTreeSet<StackId>>,
    /// Gateway API status and Events (`--gateway-api`).
    gateway_reporter: Option<gateway::GatewayReporter>,
    stack_problems: std::sync::Mutex<BTreeMap<StackId, BTreeMap<&'static str, usize>>>,
    /// When pending watch events arrived (event-to-live latency).
    event_times: Arc<queue::EventTimes>,
    /// Per stack, the earliest watch event whose job failed or was superseded before its
    /// changes went live: the stack's next successful apply is measured from it.
    unapplied_events: std::sync::Mutex<std::collections::HashMap<StackId, std::time::Instant>>,
    /// What each stack routes to, for the readiness gate checker.
    gates: Arc<gate::Gates>,
    /// The gated pods (None: readiness gates off).
    pods: Option<kube::runtime::reflector::Store<k8s_openapi::api::core::v1::Pod>>,
}

/// Observability hooks (metrics), called by the loop.
pub trait Hooks: Send + Sync {
    fn reconciled(&self, _stack: &StackId, _ok: bool, _elapsed: Duration, _pending: usize) {}
    fn stack_gone(&self, _stack: &StackId) {}
    fn queue_depth(&self, _n: usize) {}
    fn synced(&self) {}
    fn leader(&self, _is_leader: bool) {}
    fn problems(&self, _by_reason: &BTreeMap<&'static str, usize>) {}
    /// Something failed (already logged); `error.category()` is its bounded label.
    fn failed(&self, _error: &ControllerError) {}
    /// A watch of `kind` failed (it is retried with backoff; the log is rate-limited).
    fn watch_error(&self, _kind: &'static str) {}
    /// The certificate GC deleted an unused certificate (`deleted`), or the service refused.
    fn certificate_collected(&self, _deleted: bool) {}
    /// The `notAfter` (Unix seconds) of the certificate of each TLS Secret Ingresses of our
    /// classes use (`namespace/name`), as of this pass.
    fn certificate_expiries(&self, _expiries: &[(String, i64)]) {}
    /// After each snapshot: `active` Services are served from their last endpoints (endpoint
    /// grace), `started` of them began their grace in this snapshot.
    fn endpoint_grace(&self, _active: usize, _started: usize) {}
    /// The changes of a watch event are live on its CLB, `_elapsed` after the event arrived.
    fn event_live(&self, _elapsed: Duration) {}
    /// After each snapshot: this many pod targets are draining (weight 0, graceful drain).
    fn endpoints_draining(&self, _n: usize) {}
    /// A pod's readiness gate condition was set True.
    fn readiness_gate_set(&self) {}
    /// The rules on each listener (`PROTOCOL:PORT`) of `stack`'s CLB after a successful
    /// reconcile.
    fn listener_rules(&self, _stack: &StackId, _listeners: &[(String, usize)]) {}
    /// The account's rules-per-listener quota in use.
    fn rule_quota(&self, _rules_per_listener: usize) {}
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

impl Controller {
    /// Start the watchers (they send to `tx`) and build the controller around them.
    pub fn new(
        client: Client,
        deployer: Deployer,
        config: ControllerConfig,
        tx: mpsc::UnboundedSender<Dirty>,
        hooks: Arc<dyn Hooks>,
    ) -> Self {
        let counter = hooks.clone();
        let event_times = Arc::new(queue::EventTimes::default());
        let errors = stores::WatchErrors {
            limiter: Arc::new(throttle::LogLimiter::default()),
            count: Arc::new(move |kind| counter.watch_error(kind)),
        };
        let mut stores = stores::start(
            &client,
            config.watch_namespace.as_deref(),
            (config.watch_nodes, config.tke_service_configs),
            stores::Intake {
                tx: tx.clone(),
                times: event_times.clone(),
            },
            errors.clone(),
        );
        stores.gateway = config.gateway_api.as_ref().map(|_| {
            gateway::start(
                &client,
                config.watch_namespace.as_deref(),
                tx.clone(),
                errors.clone(),
            )
        });
        let gates = Arc::new(gate::Gates::default());
        stores.pods = config.readiness_gates.then(|| {
            gate::watch_pods(
                &client,
                config.watch_namespace.as_deref(),
                stores.slices.clone(),
                tx.clone(),
                errors,
                gates.clone(),
            )
        });
        let pods = stores.pods.clone();
        let reporter = report::Reporter::new(client.clone(), config.identity.clone());
        let gateway_reporter = config
            .gateway_api
            .as_ref()
            .map(|name| gateway::GatewayReporter::new(client.clone(), &config.identity, name));
        Self {
            snapshots: snapshot::Snapshots::new(client, stores, &config, tx.clone(), hooks.clone()),
            config,
            deployer,
            memory: Mutex::default(),
            reporter,
            tx,
            hooks,
            locks: queue::StackLocks::default(),
            seq: Default::default(),
            done: Default::default(),
            unused_certs: Default::default(),
            stack_problems: Default::default(),
            gateway_stacks: Default::default(),
            gateway_reporter,
            event_times,
            unapplied_events: Default::default(),
            gates,
            pods,
        }
    }

    /// A new snapshot sequence number.
    fn next_seq(&self) -> u64 {
        self.seq.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
    }

    pub fn identity(&self) -> &str {
        self.reporter.identity()
    }

    pub async fn wait_ready(&self) -> Result<(), ControllerError> {
        self.snapshots.wait_ready().await
    }
}

impl crate::webhook::ClusterView for Controller {
    fn snapshot_with(
        &self,
        candidate: &k8s_openapi::api::networking::v1::Ingress,
    ) -> Option<crate::model::Snapshot> {
        self.snapshots.admission_snapshot(candidate)
    }
    fn secret_exists(&self, namespace: &str, name: &str) -> bool {
        self.snapshots.secret_exists(namespace, name)
    }
}

/// Run the controller until SIGTERM/Ctrl-C: `client` reads and writes Kubernetes, `deployer`
/// the CLBs; `ready` is told when the caches have synced and when the controller stops.
/// With leader election, `fence` must be the write gate of the deployer's CLB client: the
/// elector keeps it open only while this replica provably holds the Lease. `admission` gets
/// the watch caches once they have synced (the admission webhook's view of the cluster).
pub async fn run(
    config: ControllerConfig,
    client: Client,
    deployer: Deployer,
    hooks: Arc<dyn Hooks>,
    ready: Arc<dyn Fn(bool) + Send + Sync>,
    fence: Arc<lease::Fence>,
    admission: Option<crate::webhook::ViewSlot>,
) -> Result<(), ControllerError> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let ctl = Arc::new(Controller::new(
        client.clone(),
        deployer,
        config.clone(),
        tx,
        hooks.clone(),
    ));
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);

    // Leadership: without election we are always the leader.
    let (leader_rx, lease_task) = match &config.leader_election {
        Some(le) => {
            let elector = lease::Elector::new(
                client.clone(),
                &le.namespace,
                &le.name,
                ctl.identity(),
                lease::Timing::new(le.lease_duration_secs, le.grace_secs),
                fence.clone(),
            );
            let (rx, task) = elector.spawn();
            (Some(rx), Some(task))
        }
        None => (None, None),
    };
    let is_leader =
        |rx: &Option<tokio::sync::watch::Receiver<bool>>| rx.as_ref().is_none_or(|r| *r.borrow());

    // Once leading, the first full pass's cloud reads (quotas, CLB listing) are made while
    // the caches sync: a restart does not wait for one, then the other.
    let mut early = Some(queue::early_reads(ctl.clone(), leader_rx.clone()));
    tokio::select! {
        r = ctl.wait_ready() => r?,
        _ = &mut shutdown => return Ok(()),
    }
    info!(identity = ctl.identity(), "caches synced");
    if let Some(slot) = &admission {
        // The admission webhook checks objects against the caches from now on.
        let view: Arc<dyn crate::webhook::ClusterView> = ctl.clone();
        let _ = slot.set(view);
    }
    hooks.synced();
    ready(true);
    let mut leader_rx = leader_rx;
    let mut was_leader = false;
    let mut resync = tokio::time::interval(config.resync.max(Duration::from_secs(1)));
    resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut quota_refresh = tokio::time::interval(config.quota_refresh.max(Duration::from_secs(1)));
    quota_refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick is now: the first sweep reads the quotas anyway.
    quota_refresh.reset();
    let mut pending: BTreeSet<Dirty> = BTreeSet::new();
    // Passes being prepared (at most `queue::MAX_EVENT_PASSES`); their jobs go to `workers`.
    let mut passes: tokio::task::JoinSet<queue::Prepared> = tokio::task::JoinSet::new();
    let mut workers = queue::Workers::new(config.concurrency);
    // Full sweeps (the first one when leadership starts, then the drift resyncs) run in the
    // background so that user changes are never queued behind them.
    let mut sweep: Option<tokio::task::JoinHandle<()>> = None;
    let start_sweep = |concurrency: usize, first: Option<queue::EarlyReads>| {
        tokio::spawn(ctl.clone().sweep(concurrency, first))
    };
    // The readiness gate checker writes pod status: it runs on the leader only.
    let mut gate_task: Option<tokio::task::JoinHandle<()>> = None;
    // The full drift sweep (reads every CLB, paced) runs every `full_resync`, the first one a
    // period after leadership starts: a restart reads only the CLBs whose desired state changed.
    let mut full_resync = (!config.full_resync.is_zero()).then(|| {
        let mut t = tokio::time::interval_at(
            tokio::time::Instant::now() + config.full_resync,
            config.full_resync,
        );
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        t
    });
    let mut full_sweep: Option<tokio::task::JoinHandle<()>> = None;
    let result = loop {
        let leader = is_leader(&leader_rx);
        hooks.leader(leader);
        if leader && !was_leader {
            info!("leading: full sync");
            // The full sync reads every object from the caches after this point, so it covers
            // every event so far (the watchers' initial lists above all): drop that backlog
            // instead of reconciling every stack twice, once without the warm-restart listing.
            let mut backlog = std::mem::take(&mut pending);
            while let Ok(d) = rx.try_recv() {
                backlog.insert(d);
            }
            ctl.snapshots.forget_secrets(&backlog).await;
            sweep = Some(start_sweep(config.concurrency, early.take()));
            resync.reset();
            gate_task = ctl.pods.clone().map(|pods| {
                tokio::spawn(gate::run(
                    client.clone(),
                    pods,
                    ctl.gates.clone(),
                    ctl.deployer.client().clone(),
                    hooks.clone(),
                ))
            });
            if let Some(t) = full_resync.as_mut() {
                t.reset();
            }
        } else if !leader && was_leader {
            // The fence is already closed: no write leaves this replica any more. Stop every
            // writer and exit, so that the caches and memory are rebuilt from scratch before
            // this replica writes again (the pod restarts and re-elects).
            warn!("lost leadership: stopping every writer and exiting");
            break Err(ControllerError::LeaseLost);
        }
        if leader && !pending.is_empty() && passes.len() < queue::MAX_EVENT_PASSES {
            let ctl = ctl.clone();
            let batch = std::mem::take(&mut pending);
            passes.spawn(async move { ctl.prepare(batch, false).await });
        }
        was_leader = leader;
        hooks.queue_depth(workers.len());
        tokio::select! {
            _ = &mut shutdown => break Ok(()),
            changed = async {
                match leader_rx.as_mut() {
                    Some(r) => r.changed().await.is_ok(),
                    None => std::future::pending().await,
                }
            } => {
                if !changed {
                    // Never "leader for good": without a lease watch there is no proof of
                    // leadership. Stop every writer now and exit.
                    break Err(ControllerError::LeaseLost);
                }
            }
            _ = resync.tick() => {
                let busy = sweep.as_ref().is_some_and(|s| !s.is_finished());
                if leader && !busy {
                    debug!("drift resync");
                    sweep = Some(start_sweep(queue::RESYNC_CONCURRENCY, None));
                }
            }
            _ = quota_refresh.tick() => {
                if leader {
                    // Quotas raised (or lowered) between resyncs: rebuild every stack with them.
                    let ctl = ctl.clone();
                    tokio::spawn(async move {
                        if ctl.refresh_quotas().await {
                            let _ = ctl.tx.send(Dirty::All);
                        }
                    });
                }
            }
            _ = async {
                match full_resync.as_mut() {
                    Some(t) => t.tick().await,
                    None => std::future::pending().await,
                }
            } => {
                let busy = full_sweep.as_ref().is_some_and(|s| !s.is_finished());
                if leader && !busy {
                    debug!("full drift sweep");
                    full_sweep = Some(tokio::spawn(
                        ctl.clone().full_sweep(config.full_resync_stacks_per_second),
                    ));
                }
            }
            d = rx.recv() => {
                let Some(d) = d else { break Ok(()) };
                // Debounce: gather everything that arrives within the window. The pass is
                // prepared at the top of the loop, in its own task.
                queue::debounce(&mut rx, d, config.debounce, &mut pending).await;
                if !leader {
                    pending.clear();
                    ctl.event_times.clear();
                }
            }
            Some(prepared) = passes.join_next(), if !passes.is_empty() => {
                match prepared {
                    Ok(p) if leader => {
                        for job in p.jobs {
                            workers.submit(&ctl, job);
                        }
                    }
                    Ok(_) => {}
                    Err(e) => tracing::error!(error = %e, "preparing a pass failed"),
                }
            }
            Some(()) = workers.join_next(&ctl), if !workers.is_empty() => {}
        }
    };
    // Every step is idempotent: work stopped mid-way is finished by the next leader.
    fence.close();
    for s in [sweep.take(), full_sweep.take()].into_iter().flatten() {
        s.abort();
    }
    if let Some(g) = gate_task.take() {
        g.abort();
    }
    passes.abort_all();
    workers.abort();
    hooks.leader(false);
    ready(false);
    if let Some(task) = lease_task {
        task.abort();
        if let (Some(le), Ok(())) = (&config.leader_election, &result)
            && was_leader
        {
            lease::release(client, &le.namespace, &le.name, ctl.identity()).await;
        }
    }
    info!("stopped");
    drop(leader_rx);
    result
}

/// SIGTERM or Ctrl-C (the SIGTERM handler is installed by the call).
pub use clb_http_limits::shutdown_signal;
