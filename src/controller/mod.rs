//! The long-running controller (`clb-ingress run`): watches Kubernetes, reconciles each CLB
//! stack (snapshot -> model -> observe -> plan -> deploy), and reports status, Events and the
//! per-Ingress sync state. Only this module speaks the Kubernetes API.
//!
//! Work is per stack: an event on any object requeues only the stacks that use it; bursts are
//! coalesced by a short debounce; a periodic drift resync (with pruning of CLBs whose stack is
//! gone) runs separately and never delays user changes.
//!
//! This file is the wiring ([`run`]: watchers, leader election, the event loop, shutdown). The
//! parts: `config` (settings), `stores` (watch caches), `snapshot` (model input, Secret
//! cache), `memory` (what is remembered of stacks and Ingresses), `queue` (events, debounce,
//! workers, retries), `reconcile` (one stack, pruning, finalizer release), `report` (writes
//! to Ingresses), `error` (what can fail, its category and retry policy).

pub mod config;
pub mod error;
pub mod memory;
pub mod queue;
pub mod reconcile;
pub mod report;
pub mod snapshot;
pub mod stores;

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
use tracing::{debug, info};

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
    /// After each snapshot: `active` Services are served from their last endpoints (endpoint
    /// grace), `started` of them began their grace in this snapshot.
    fn endpoint_grace(&self, _active: usize, _started: usize) {}
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
        let stores = stores::start(
            &client,
            config.watch_namespace.as_deref(),
            config.watch_nodes,
            tx.clone(),
        );
        let reporter = report::Reporter::new(client.clone(), config.identity.clone());
        Self {
            snapshots: snapshot::Snapshots::new(client, stores, &config, tx.clone(), hooks.clone()),
            config,
            deployer,
            memory: Mutex::default(),
            reporter,
            tx,
            hooks,
            locks: queue::StackLocks::default(),
        }
    }

    pub fn identity(&self) -> &str {
        self.reporter.identity()
    }

    pub async fn wait_ready(&self) -> Result<(), ControllerError> {
        self.snapshots.wait_ready().await
    }
}

/// Run the controller until SIGTERM/Ctrl-C: `client` reads and writes Kubernetes, `deployer`
/// the CLBs; `ready` is told when the caches have synced and when the controller stops.
pub async fn run(
    config: ControllerConfig,
    client: Client,
    deployer: Deployer,
    hooks: Arc<dyn Hooks>,
    ready: Arc<dyn Fn(bool) + Send + Sync>,
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
    let (leader_rx, _lease_task) = match &config.leader_election {
        Some(le) => {
            let manager = kube_lease_manager::LeaseManagerBuilder::new(client.clone(), &le.name)
                .with_namespace(&le.namespace)
                .with_identity(ctl.identity())
                .with_duration(le.lease_duration_secs)
                .with_grace(le.grace_secs)
                .build()
                .await
                .map_err(ControllerError::LeaderElection)?;
            let (rx, task) = manager.watch().await;
            (Some(rx), Some(task))
        }
        None => (None, None),
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
    let mut resync = tokio::time::interval(config.resync.max(Duration::from_secs(1)));
    resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut pending: BTreeSet<Dirty> = BTreeSet::new();
    // Event passes in flight (at most `queue::MAX_EVENT_PASSES`).
    let mut passes = tokio::task::JoinSet::new();
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
            sweep = Some(start_sweep(config.concurrency));
            resync.reset();
        } else if !leader && was_leader {
            info!("lost leadership: stopping writes");
            if let Some(s) = sweep.take() {
                s.abort();
            }
            passes.abort_all();
            pending.clear();
        }
        if leader && !pending.is_empty() && passes.len() < queue::MAX_EVENT_PASSES {
            let ctl = ctl.clone();
            let batch = std::mem::take(&mut pending);
            let concurrency = config.concurrency;
            passes.spawn(async move { ctl.process(batch, false, concurrency).await });
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
                if !changed {
                    // Never "leader for good": without a lease watch there is no proof of
                    // leadership. Stop every writer now and exit (the pod restarts and
                    // re-elects).
                    if let Some(s) = sweep.take() {
                        s.abort();
                    }
                    passes.abort_all();
                    hooks.leader(false);
                    ready(false);
                    return Err(ControllerError::LeaseLost);
                }
            }
            _ = resync.tick() => {
                let busy = sweep.as_ref().is_some_and(|s| !s.is_finished());
                if leader && !busy {
                    debug!("drift resync");
                    sweep = Some(start_sweep(queue::RESYNC_CONCURRENCY));
                }
            }
            d = rx.recv() => {
                let Some(d) = d else { break };
                // Debounce: gather everything that arrives within the window. The pass starts
                // at the top of the loop, in its own task.
                queue::debounce(&mut rx, d, config.debounce, &mut pending).await;
                if !leader {
                    pending.clear();
                }
            }
            Some(_) = passes.join_next(), if !passes.is_empty() => {}
        }
    }
    if let Some(s) = sweep.take() {
        s.abort();
    }
    // Every step is idempotent: a pass stopped mid-way is finished by the next leader.
    passes.abort_all();
    info!("shutting down");
    ready(false);
    drop(leader_rx);
    Ok(())
}

/// SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
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
