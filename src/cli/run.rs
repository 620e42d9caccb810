//! `clb-ingress run`: the long-running controller with its operations endpoint. [`RunArgs`]
//! are its flags; they become a [`ControllerConfig`], a Kubernetes client and a [`Deployer`].

use crate::cli::cloud::CloudArgs;
use crate::controller::config::{self as defaults, ControllerConfig, LeaderElection};
use crate::controller::{self, ControllerError, Hooks};
use crate::deploy::Deployer;
use crate::http::{self, HttpState};
use crate::metrics::{Metrics, ReconcileResult};
use crate::model::{self, StackId};
use crate::webhook;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

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
    /// Cluster id used in CLB names and ownership tags (must be unique among the clusters that
    /// share a Tencent Cloud account and region). Default: the UID of the `kube-system`
    /// Namespace, which no other cluster has.
    #[arg(long, env = "CLB_INGRESS_CLUSTER_ID")]
    pub cluster_id: Option<String>,
    /// Resync period in seconds: one listing of this cluster's CLBs (one read per 100 CLBs);
    /// only stacks whose CLB's desired-state tag differs from their desired state are read
    /// and repaired; CLBs no stack uses are deleted.
    #[arg(long, default_value_t = defaults::DEFAULT_RESYNC_SECS)]
    pub resync_seconds: u64,
    /// Read the account's CLB quotas (DescribeQuota: rules per listener, listeners per CLB,
    /// targets per rule) again this often, besides at the start of every resync.
    #[arg(long, default_value_t = defaults::DEFAULT_QUOTA_REFRESH_SECS, value_parser = clap::value_parser!(u64).range(1..))]
    pub quota_refresh_seconds: u64,
    /// Full drift sweep period in seconds: every CLB is read (2-3 reads each) and repaired, at
    /// `--full-resync-stacks-per-second`; finds changes made to CLBs outside clb-ingress.
    /// 0 turns it off.
    #[arg(long, default_value_t = defaults::DEFAULT_FULL_RESYNC_SECS)]
    pub full_resync_seconds: u64,
    /// CLBs the full drift sweep reads per second (a budget left to user changes).
    #[arg(long, default_value_t = defaults::DEFAULT_FULL_RESYNC_STACKS_PER_SECOND,
          value_parser = positive_rate)]
    pub full_resync_stacks_per_second: f64,
    /// Coalesce bursts of events for this long before reconciling.
    #[arg(long, default_value_t = defaults::DEFAULT_DEBOUNCE_MS)]
    pub debounce_ms: u64,
    /// CLBs reconciled in parallel (each CLB always has a single writer).
    #[arg(long, default_value_t = defaults::DEFAULT_CONCURRENCY)]
    pub concurrency: usize,
    /// Seconds a Service whose endpoints dropped to none (an EndpointSlice being replaced)
    /// keeps its last endpoints on the CLB; 0 turns the grace off.
    #[arg(long, default_value_t = defaults::DEFAULT_ENDPOINT_GRACE_SECS)]
    pub endpoint_grace_seconds: u64,
    /// Do not watch gated pods nor set their readiness gate (docs/zero-downtime.md); the
    /// controller then needs no access to pods.
    #[arg(long)]
    pub no_readiness_gates: bool,
    /// Do not watch Nodes (only Direct target mode then works).
    #[arg(long)]
    pub no_node_watch: bool,
    /// Read TKE's TkeServiceConfig objects (cloud.tencent.com/v1alpha1; needs get/list/watch
    /// on them) for Ingresses that name one with ingress.cloud.tencent.com/tke-service-config.
    #[arg(long)]
    pub tke_service_configs: bool,
    /// Elect a leader through a coordination.k8s.io Lease; only the leader writes.
    #[arg(long)]
    pub leader_elect: bool,
    /// Namespace of the leader-election Lease.
    #[arg(long, env = "POD_NAMESPACE", default_value = defaults::DEFAULT_LEASE_NAMESPACE)]
    pub leader_election_namespace: String,
    /// Name of the leader-election Lease.
    #[arg(long, default_value = defaults::DEFAULT_LEASE_NAME)]
    pub leader_election_name: String,
    /// Seconds a leader Lease stays valid after its last renewal; another replica takes over
    /// only after watching it unrenewed this long.
    #[arg(long, default_value_t = defaults::LEASE_DURATION_SECS)]
    pub lease_duration_seconds: u64,
    /// Seconds before its lease would end at which the leader stops writing when it could not
    /// renew (at most half the lease duration).
    #[arg(long, default_value_t = defaults::LEASE_GRACE_SECS)]
    pub lease_margin_seconds: u64,
    /// Delete certificates this cluster uploaded once no CLB has used them for this long
    /// (checked on every drift resync).
    #[arg(long, default_value_t = 3600)]
    pub certificate_gc_grace_seconds: u64,
    /// Never delete uploaded certificates.
    #[arg(long)]
    pub no_certificate_gc: bool,
    /// This replica's identity (default: $POD_NAME or the host name plus a random suffix).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// Address of /metrics, /healthz and /readyz.
    #[arg(long, default_value = "0.0.0.0:8080")]
    pub metrics_addr: std::net::SocketAddr,
    /// Serve the validating admission webhook (HTTPS, path /validate) on this address
    /// (default: off). Needs --webhook-cert-file and --webhook-key-file.
    #[arg(long, requires_all = ["webhook_cert_file", "webhook_key_file"])]
    pub webhook_addr: Option<std::net::SocketAddr>,
    /// PEM certificate (chain) of the webhook; re-read when it changes.
    #[arg(long, requires = "webhook_addr")]
    pub webhook_cert_file: Option<PathBuf>,
    /// PEM private key of the webhook; re-read when it changes.
    #[arg(long, requires = "webhook_addr")]
    pub webhook_key_file: Option<PathBuf>,
    /// Also handle Gateway API (GatewayClass, Gateway, HTTPRoute, GRPCRoute, ReferenceGrant of
    /// the v1 standard channel): watch them and write their status (docs/gateway-api.md).
    /// Without the CRDs installed, one error is logged and Ingresses are served as usual.
    #[arg(long, env = "CLB_INGRESS_GATEWAY_API")]
    pub gateway_api: bool,
    /// The GatewayClass `spec.controllerName` this controller answers to (with --gateway-api).
    #[arg(long, default_value = clb_ingress_core::gateway::DEFAULT_GATEWAY_CONTROLLER_NAME)]
    pub gateway_controller_name: String,
    #[command(flatten)]
    pub cloud: CloudArgs,
}

impl RunArgs {
    /// The controller settings these flags give (a replica given no identity gets a generated
    /// one).
    pub fn controller_config(&self, cluster_id: String) -> ControllerConfig {
        ControllerConfig {
            cluster_id,
            watch_namespace: self.watch_namespace.clone(),
            ingress_class: self.ingress_class.clone(),
            controller_name: self.controller_name.clone(),
            gateway_api: self
                .gateway_api
                .then(|| self.gateway_controller_name.clone()),
            resync: Duration::from_secs(self.resync_seconds),
            full_resync: Duration::from_secs(self.full_resync_seconds),
            full_resync_stacks_per_second: self.full_resync_stacks_per_second,
            debounce: Duration::from_millis(self.debounce_ms),
            concurrency: self.concurrency,
            endpoint_grace: Duration::from_secs(self.endpoint_grace_seconds),
            quota_refresh: Duration::from_secs(self.quota_refresh_seconds),
            watch_nodes: !self.no_node_watch,
            readiness_gates: !self.no_readiness_gates,
            tke_service_configs: self.tke_service_configs,
            leader_election: self.leader_elect.then(|| LeaderElection {
                lease_duration_secs: self.lease_duration_seconds,
                grace_secs: self.lease_margin_seconds,
                ..LeaderElection::new(&self.leader_election_namespace, &self.leader_election_name)
            }),
            identity: self
                .identity
                .clone()
                .unwrap_or_else(defaults::default_identity),
            certificate_gc_grace: (!self.no_certificate_gc)
                .then(|| Duration::from_secs(self.certificate_gc_grace_seconds)),
        }
    }
}

/// A full-sweep pace within the bounds the controller accepts (stacks per second).
fn positive_rate(text: &str) -> Result<f64, String> {
    use crate::controller::queue::{MAX_FULL_SWEEP_RATE, MIN_FULL_SWEEP_RATE};
    let v: f64 = text
        .parse()
        .map_err(|e| format!("{text:?} is not a number: {e}"))?;
    if (MIN_FULL_SWEEP_RATE..=MAX_FULL_SWEEP_RATE).contains(&v) {
        Ok(v)
    } else {
        Err(format!(
            "{text} is not a rate in [{MIN_FULL_SWEEP_RATE}, {MAX_FULL_SWEEP_RATE}] per second"
        ))
    }
}

/// Feeds the controller's progress into the Prometheus metrics.
struct MetricsHooks(Arc<Metrics>, HttpState);

impl Hooks for MetricsHooks {
    fn reconciled(&self, stack: &StackId, ok: bool, elapsed: Duration, pending: usize) {
        let result = if ok {
            ReconcileResult::Success
        } else {
            ReconcileResult::Error
        };
        self.0.reconcile_finished(result, elapsed);
        if ok {
            let now = jiff::Timestamp::now().as_millisecond() as f64 / 1000.0;
            self.0.stack_synced(&stack.to_string(), now, pending);
        } else {
            self.0.set_pending_changes(&stack.to_string(), pending);
        }
    }
    fn stack_gone(&self, stack: &StackId) {
        self.0.forget_stack(&stack.to_string());
    }
    fn queue_depth(&self, n: usize) {
        self.0.set_queue_depth(n);
    }
    fn synced(&self) {
        self.1.set_synced(true);
    }
    fn leader(&self, is_leader: bool) {
        self.0.set_leader(is_leader);
        self.1.set_leadership_known(true);
    }
    fn problems(&self, by_reason: &BTreeMap<&'static str, usize>) {
        let v: Vec<(&'static str, usize)> = by_reason.iter().map(|(k, v)| (*k, *v)).collect();
        self.0.set_problems(&v);
    }
    fn failed(&self, error: &ControllerError) {
        self.0.controller_error(error.category());
    }
    fn watch_error(&self, kind: &'static str) {
        self.0.watch_error(kind);
    }
    fn certificate_expiries(&self, expiries: &[(String, i64)]) {
        self.0.set_certificate_expiries(expiries);
    }
    fn certificate_collected(&self, deleted: bool) {
        self.0.certificate_collected(deleted);
    }
    fn endpoint_grace(&self, active: usize, started: usize) {
        self.0.endpoint_grace(active, started);
    }
    fn event_live(&self, elapsed: Duration) {
        self.0.event_live(elapsed);
    }
    fn endpoints_draining(&self, n: usize) {
        self.0.endpoints_draining(n);
    }
    fn readiness_gate_set(&self) {
        self.0.readiness_gate_set();
    }
    fn listener_rules(&self, stack: &StackId, listeners: &[(String, usize)]) {
        self.0.listener_rules.set(&stack.to_string(), listeners);
    }
    fn rule_quota(&self, rules_per_listener: usize) {
        self.0.listener_rules.set_quota(rules_per_listener);
    }
}

pub fn run(args: RunArgs) -> anyhow::Result<i32> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(serve(args, |addr, webhook| {
        match webhook {
            Some(w) => println!(
                "clb-ingress operations endpoint on http://{addr} (/metrics /healthz /readyz), admission webhook on https://{w}{}",
                crate::webhook::PATH
            ),
            None => println!(
                "clb-ingress operations endpoint on http://{addr} (/metrics /healthz /readyz)"
            ),
        }
    }))
}

/// How often `--credentials-file` is checked (a `stat`) for rotated credentials; it is read
/// when it changed, at least every `clb::client::CREDENTIALS_FULL_RELOAD`, and after a call
/// fails with an expired token.
pub const CREDENTIALS_POLL: Duration = Duration::from_secs(2);

/// The controller, its operations endpoint and (with `--webhook-addr`) the admission
/// webhook, until SIGTERM/Ctrl-C. `on_listen` is told the operations address and the
/// webhook's once they are bound.
pub async fn serve(
    args: RunArgs,
    on_listen: impl FnOnce(std::net::SocketAddr, Option<std::net::SocketAddr>),
) -> anyhow::Result<i32> {
    let metrics = Arc::new(Metrics::with_version(env!("CARGO_PKG_VERSION"))?);
    let state = HttpState::new(metrics.clone(), args.leader_elect);
    let webhook = match (
        args.webhook_addr,
        &args.webhook_cert_file,
        &args.webhook_key_file,
    ) {
        (Some(addr), Some(cert), Some(key)) => {
            let certs = Arc::new(webhook::CertFiles::load(cert, key)?);
            let (listener, bound) = webhook::bind(addr).await?;
            Some((listener, bound, certs))
        }
        _ => None,
    };
    let (listener, addr) = http::bind(args.metrics_addr).await?;
    on_listen(addr, webhook.as_ref().map(|w| w.1));
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(http::serve_listener(listener, state.clone(), async move {
        let _ = stop_rx.await;
    }));
    let admission: Option<webhook::ViewSlot> = webhook.as_ref().map(|_| Default::default());
    let (webhook_stop_tx, webhook_stop_rx) = tokio::sync::oneshot::channel::<()>();
    let webhook_server = webhook.map(|(listener, bound, certs)| {
        tracing::info!(addr = %bound, "admission webhook listening");
        tokio::spawn(webhook::serve(
            listener,
            certs,
            admission.clone().unwrap_or_default(),
            async move {
                let _ = webhook_stop_rx.await;
            },
        ))
    });
    let observer: Arc<dyn crate::clb::observe::ClbObserver> = metrics.clone();
    // Without leader election this replica is the only writer; with it, every CLB write first
    // asks the fence, which only the elector opens, while the Lease is provably held.
    let fence = if args.leader_elect {
        Arc::new(controller::lease::Fence::default())
    } else {
        controller::lease::Fence::open()
    };
    let clb = args
        .cloud
        .client_with(Some(observer), Some(fence.clone()))?;
    // A mounted credentials Secret is updated in place by the kubelet: pick up rotations.
    let credentials_watch = clb.watch_credentials(CREDENTIALS_POLL);
    let hooks: Arc<dyn Hooks> = Arc::new(MetricsHooks(metrics.clone(), state.clone()));
    let ready_state = state.clone();
    let result = async {
        let kube = controller::kube_client(args.kubeconfig.as_deref()).await?;
        let cluster_id = match &args.cluster_id {
            Some(id) => id.clone(),
            None => controller::config::cluster_uid(&kube).await?,
        };
        tracing::info!(cluster_id, "cluster id (CLB ownership tags)");
        metrics.set_cluster_id(&cluster_id);
        let config = args.controller_config(cluster_id);
        let deployer = Deployer::new(clb, config.cluster_id.clone());
        controller::run(
            config,
            kube,
            deployer,
            hooks,
            Arc::new(move |r| ready_state.set_synced(r)),
            fence,
            admission,
        )
        .await?;
        anyhow::Ok(0)
    }
    .await;
    if let Some(w) = credentials_watch {
        w.abort();
    }
    let _ = stop_tx.send(());
    let _ = server.await;
    let _ = webhook_stop_tx.send(());
    if let Some(w) = webhook_server {
        let _ = w.await;
    }
    result
}
