//! Prometheus metrics of the controller: one [`Metrics`] struct owning one `Registry`, every
//! label value drawn from a bounded set (results, reasons, CLB action names, error categories,
//! and stack ids, which are bounded by the number of CLBs and removed with [`Metrics::forget_stack`]).
//! `docs/metrics.md` lists every family with example queries.

mod listeners;
use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::Duration;

use prometheus::{
    CounterVec, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec,
    IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::clb::actions::ops;
use crate::clb::error::ErrorCategory;
use crate::clb::observe::{CallResult, ClbObserver, ReloadOutcome, ReloadTrigger};

/// Prefix of every metric name.
pub const NAMESPACE: &str = "clb_ingress";
/// Action label used for an action name outside [`ops::ALL`].
pub const OTHER_ACTION: &str = "Other";
/// Histogram buckets (seconds) of one reconcile: from a no-op resync to a slow cold create.
pub const RECONCILE_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];
/// Histogram buckets (seconds) of one CLB task wait (CLB tasks usually take 1-10 s).
pub const TASK_WAIT_BUCKETS: &[f64] = &[
    0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0,
];

/// Histogram buckets (seconds) from a watch event to its stack live on the CLB: a debounce and
/// a few CLB tasks (seconds) up to retries after failures and throttling (minutes).
pub const EVENT_TO_LIVE_BUCKETS: &[f64] = &[
    0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0,
];

/// Label names, shared by the families and the tests.
mod label {
    pub const RESULT: &str = "result";
    pub const STACK: &str = "stack";
    pub const REASON: &str = "reason";
    pub const ACTION: &str = "action";
    pub const CODE: &str = "code";
    pub const CATEGORY: &str = "category";
    pub const VERSION: &str = "version";
}

/// How one reconcile of one stack ended (the `result` label of the reconcile families).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ReconcileResult {
    /// The CLB now matches the desired state (possibly with parked problems).
    Success,
    /// A cloud or Kubernetes call failed; the stack will be retried.
    Error,
    /// Nothing was done (not the leader, stack not ours, or already in sync and not due).
    Skipped,
}

impl ReconcileResult {
    /// Every result, for series initialisation.
    pub const ALL: [ReconcileResult; 3] = [Self::Success, Self::Error, Self::Skipped];

    /// The bounded label value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Error => "error",
            Self::Skipped => "skipped",
        }
    }
}

/// A metric family could not be created or registered (a programming error: duplicate or
/// invalid name).
#[derive(Debug, thiserror::Error)]
#[error("registering metric family {name}")]
pub struct MetricsError {
    name: &'static str,
    #[source]
    source: prometheus::Error,
}

/// Every metric of the process, registered in one `Registry`. Share it as `Arc<Metrics>`; it is
/// also the CLB client's [`ClbObserver`].
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    reconciles: IntCounterVec,
    reconcile_duration: HistogramVec,
    queue_depth: IntGauge,
    stack_last_success: GaugeVec,
    pending_changes: IntGaugeVec,
    problems: IntGaugeVec,
    /// Reasons ever set in `problems`, so a reason that went away is set back to 0.
    problem_reasons: Mutex<BTreeSet<&'static str>>,
    api_calls: IntCounterVec,
    api_retries: IntCounterVec,
    throttle_wait: CounterVec,
    task_wait: HistogramVec,
    leader: IntGauge,
    errors: IntCounterVec,
    watch_errors: IntCounterVec,
    certificates_collected: IntCounterVec,
    endpoint_grace_active: IntGauge,
    endpoint_grace: IntCounter,
    endpoints_draining: IntGauge,
    readiness_gates_set: IntCounter,
    cluster_info: IntGaugeVec,
    credential_reloads: IntCounterVec,
    leader_transitions: IntCounter,
    certificate_expiry: IntGaugeVec,
    event_to_live: Histogram,
    /// Rules used versus quota per listener.
    pub listener_rules: listeners::ListenerRules,
}

/// Metric family names, without the namespace prefix.
mod name {
    pub const RECONCILES: &str = "reconciles_total";
    pub const RECONCILE_DURATION: &str = "reconcile_duration_seconds";
    pub const QUEUE_DEPTH: &str = "queue_depth";
    pub const STACK_LAST_SUCCESS: &str = "stack_last_success_timestamp_seconds";
    pub const PENDING_CHANGES: &str = "pending_changes";
    pub const PROBLEMS: &str = "problems";
    pub const API_CALLS: &str = "clb_api_calls_total";
    pub const API_RETRIES: &str = "clb_api_retries_total";
    pub const THROTTLE_WAIT: &str = "clb_api_throttle_wait_seconds_total";
    pub const TASK_WAIT: &str = "clb_task_wait_seconds";
    pub const LEADER: &str = "leader";
    pub const ENDPOINT_GRACE_ACTIVE: &str = "endpoint_grace_active";
    pub const ENDPOINT_GRACE: &str = "endpoint_grace_total";
    pub const ENDPOINTS_DRAINING: &str = "endpoints_draining";
    pub const READINESS_GATES_SET: &str = "readiness_gates_set_total";
    pub const ERRORS: &str = "controller_errors_total";
    pub const WATCH_ERRORS: &str = "watch_errors_total";
    pub const CERTIFICATES_COLLECTED: &str = "certificates_collected_total";
    pub const BUILD_INFO: &str = "build_info";
    pub const CLUSTER_INFO: &str = "cluster_info";
    pub const CREDENTIAL_RELOADS: &str = "credential_reloads_total";
    pub const LEADER_TRANSITIONS: &str = "leader_transitions_total";
    pub const CERTIFICATE_EXPIRY: &str = "certificate_expiry_timestamp_seconds";
    pub const EVENT_TO_LIVE: &str = "event_to_live_seconds";
}

fn opts(name: &'static str, help: &str) -> Opts {
    Opts::new(name, help).namespace(NAMESPACE)
}

fn histogram_opts(name: &'static str, help: &str, buckets: &[f64]) -> HistogramOpts {
    HistogramOpts::new(name, help)
        .namespace(NAMESPACE)
        .buckets(buckets.to_vec())
}

/// Registers `collector` (created by `make`) under `name`, naming the family in the error.
fn register<C>(
    registry: &Registry,
    name: &'static str,
    make: impl FnOnce() -> prometheus::Result<C>,
) -> Result<C, MetricsError>
where
    C: prometheus::core::Collector + Clone + 'static,
{
    let wrap = |source| MetricsError { name, source };
    let collector = make().map_err(wrap)?;
    registry
        .register(Box::new(collector.clone()))
        .map_err(wrap)?;
    Ok(collector)
}

/// The bounded action label for an action name: itself when it is one of [`ops::ALL`].
pub fn action_label(action: &str) -> &'static str {
    ops::ALL
        .iter()
        .find(|op| op.name == action)
        .map_or(OTHER_ACTION, |op| op.name)
}

impl Metrics {
    /// Creates and registers every family in a fresh registry, with the crate version as
    /// `build_info{version}`.
    pub fn new() -> Result<Self, MetricsError> {
        Self::with_version(env!("CARGO_PKG_VERSION"))
    }

    /// Like [`Metrics::new`] with an explicit `build_info` version (tests, custom builds).
    pub fn with_version(version: &'static str) -> Result<Self, MetricsError> {
        let registry = Registry::new();
        let r = &registry;
        let reconciles = register(r, name::RECONCILES, || {
            IntCounterVec::new(
                opts(
                    name::RECONCILES,
                    "Reconciles of one CLB stack, by result (success, error, skipped).",
                ),
                &[label::RESULT],
            )
        })?;
        let reconcile_duration = register(r, name::RECONCILE_DURATION, || {
            HistogramVec::new(
                histogram_opts(
                    name::RECONCILE_DURATION,
                    "Wall time of one stack reconcile (snapshot, observe, diff, deploy), by result.",
                    RECONCILE_BUCKETS,
                ),
                &[label::RESULT],
            )
        })?;
        let queue_depth = register(r, name::QUEUE_DEPTH, || {
            IntGauge::with_opts(opts(
                name::QUEUE_DEPTH,
                "Stacks waiting in the reconcile queue.",
            ))
        })?;
        let stack_last_success = register(r, name::STACK_LAST_SUCCESS, || {
            GaugeVec::new(
                opts(
                    name::STACK_LAST_SUCCESS,
                    "Unix time of the last successful reconcile of a stack (one CLB).",
                ),
                &[label::STACK],
            )
        })?;
        let pending_changes = register(r, name::PENDING_CHANGES, || {
            IntGaugeVec::new(
                opts(
                    name::PENDING_CHANGES,
                    "Changes the last plan of a stack still had to apply (0 when in sync).",
                ),
                &[label::STACK],
            )
        })?;
        let problems = register(r, name::PROBLEMS, || {
            IntGaugeVec::new(
                opts(
                    name::PROBLEMS,
                    "Current problems (parked Ingresses or paths) by reason.",
                ),
                &[label::REASON],
            )
        })?;
        let api_calls = register(r, name::API_CALLS, || {
            IntCounterVec::new(
                opts(
                    name::API_CALLS,
                    "CLB API attempts by action and result code (Success or error category).",
                ),
                &[label::ACTION, label::CODE],
            )
        })?;
        let api_retries = register(r, name::API_RETRIES, || {
            IntCounterVec::new(
                opts(
                    name::API_RETRIES,
                    "CLB API retries scheduled by action and error category.",
                ),
                &[label::ACTION, label::CATEGORY],
            )
        })?;
        let throttle_wait = register(r, name::THROTTLE_WAIT, || {
            CounterVec::new(
                opts(
                    name::THROTTLE_WAIT,
                    "Seconds CLB API calls waited for the client-side rate limiter, by action.",
                ),
                &[label::ACTION],
            )
        })?;
        let task_wait = register(r, name::TASK_WAIT, || {
            HistogramVec::new(
                histogram_opts(
                    name::TASK_WAIT,
                    "Time from task submission to its final status, by result \
                     (Success, TaskFailed or the error category).",
                    TASK_WAIT_BUCKETS,
                ),
                &[label::RESULT],
            )
        })?;
        let leader = register(r, name::LEADER, || {
            IntGauge::with_opts(opts(
                name::LEADER,
                "1 while this replica holds the leader lease (or leader election is off).",
            ))
        })?;
        let errors = register(r, name::ERRORS, || {
            IntCounterVec::new(
                opts(
                    name::ERRORS,
                    "Controller failures (deploys, prunes, Kubernetes writes, Secret reads) by \
                     category.",
                ),
                &[label::CATEGORY],
            )
        })?;
        let watch_errors = register(r, name::WATCH_ERRORS, || {
            IntCounterVec::new(
                opts(
                    name::WATCH_ERRORS,
                    "Failed list/watch attempts of the Kubernetes API by kind (each is retried \
                     with backoff; repeats are logged at most once a minute).",
                ),
                &["kind"],
            )
        })?;
        let certificates_collected = register(r, name::CERTIFICATES_COLLECTED, || {
            IntCounterVec::new(
                opts(
                    name::CERTIFICATES_COLLECTED,
                    "Unused certificates this cluster uploaded that the GC deleted (result=\"deleted\") \
                     or that the SSL service refused to delete (result=\"refused\").",
                ),
                &["result"],
            )
        })?;
        let endpoint_grace_active = register(r, name::ENDPOINT_GRACE_ACTIVE, || {
            IntGauge::with_opts(opts(
                name::ENDPOINT_GRACE_ACTIVE,
                "Services with no endpoints whose last endpoints are still served (endpoint grace).",
            ))
        })?;
        let endpoint_grace = register(r, name::ENDPOINT_GRACE, || {
            IntCounter::with_opts(opts(
                name::ENDPOINT_GRACE,
                "Times a Service's endpoints dropped to none and its last endpoints were kept for \
                 the endpoint grace.",
            ))
        })?;
        let endpoints_draining = register(r, name::ENDPOINTS_DRAINING, || {
            IntGauge::with_opts(opts(
                name::ENDPOINTS_DRAINING,
                "Pod targets kept registered with weight 0 while they drain (drainDelaySeconds).",
            ))
        })?;
        let readiness_gates_set = register(r, name::READINESS_GATES_SET, || {
            IntCounter::with_opts(opts(
                name::READINESS_GATES_SET,
                "Pods whose clb-ingress.io/target-healthy readiness gate was set True.",
            ))
        })?;
        let build_info = register(r, name::BUILD_INFO, || {
            IntGaugeVec::new(
                opts(
                    name::BUILD_INFO,
                    "Always 1; the version label names the build.",
                ),
                &[label::VERSION],
            )
        })?;
        build_info.with_label_values(&[version]).set(1);
        let cluster_info = register(r, name::CLUSTER_INFO, || {
            IntGaugeVec::new(
                opts(
                    name::CLUSTER_INFO,
                    "Always 1; the cluster_id label is the id this controller tags and owns CLBs by.",
                ),
                &["cluster_id"],
            )
        })?;
        for result in ReconcileResult::ALL {
            reconciles.with_label_values(&[result.as_str()]);
        }
        let credential_reloads = register(r, name::CREDENTIAL_RELOADS, || {
            IntCounterVec::new(
                opts(
                    name::CREDENTIAL_RELOADS,
                    "Re-reads of the credentials file and fetches of role credentials by trigger (Watch, AuthFailure, Expiry) and outcome (Changed, Unchanged, Failed, Skipped).",
                ),
                &["trigger", "outcome"],
            )
        })?;
        for trigger in ReloadTrigger::ALL {
            for outcome in ReloadOutcome::ALL {
                credential_reloads.with_label_values(&[trigger.as_str(), outcome.as_str()]);
            }
        }
        let leader_transitions = register(r, name::LEADER_TRANSITIONS, || {
            IntCounter::with_opts(opts(
                name::LEADER_TRANSITIONS,
                "Times this replica became leader or stopped being leader.",
            ))
        })?;
        let certificate_expiry = register(r, name::CERTIFICATE_EXPIRY, || {
            IntGaugeVec::new(
                opts(
                    name::CERTIFICATE_EXPIRY,
                    "notAfter (Unix seconds) of the certificate of each TLS Secret that Ingresses of our classes use, by namespace/name.",
                ),
                &["secret"],
            )
        })?;
        let event_to_live = register(r, name::EVENT_TO_LIVE, || {
            Histogram::with_opts(histogram_opts(
                name::EVENT_TO_LIVE,
                "Time from the watch event that changed an Ingress, Service or EndpointSlice to \
                 the successful apply of the changes it caused on its CLB (retries included).",
                EVENT_TO_LIVE_BUCKETS,
            ))
        })?;
        let listener_rules = listeners::ListenerRules::register(r)?;
        // The standard process_* families (CPU seconds, resident and virtual memory, open and
        // maximum file descriptors, start time, threads), read from /proc at each scrape.
        #[cfg(target_os = "linux")]
        r.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))
        .map_err(|source| MetricsError {
            name: "process",
            source,
        })?;
        Ok(Self {
            registry,
            reconciles,
            reconcile_duration,
            queue_depth,
            stack_last_success,
            pending_changes,
            problems,
            problem_reasons: Mutex::new(BTreeSet::new()),
            api_calls,
            api_retries,
            throttle_wait,
            task_wait,
            leader,
            errors,
            watch_errors,
            certificates_collected,
            endpoint_grace_active,
            endpoint_grace,
            endpoints_draining,
            readiness_gates_set,
            cluster_info,
            credential_reloads,
            leader_transitions,
            certificate_expiry,
            event_to_live,
            listener_rules,
        })
    }

    /// Publish the cluster id (`cluster_info{cluster_id}` = 1; one series per process).
    pub fn set_cluster_id(&self, cluster_id: &str) {
        self.cluster_info.reset();
        self.cluster_info.with_label_values(&[cluster_id]).set(1);
    }

    /// The registry, for callers that gather or add their own collectors.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// One stack reconcile ended with `result` after `duration`.
    pub fn reconcile_finished(&self, result: ReconcileResult, duration: Duration) {
        let labels = [result.as_str()];
        self.reconciles.with_label_values(&labels).inc();
        self.reconcile_duration
            .with_label_values(&labels)
            .observe(duration.as_secs_f64());
    }

    /// Stacks now waiting in the queue.
    pub fn set_queue_depth(&self, depth: usize) {
        self.queue_depth.set(saturating_i64(depth));
    }

    /// `stack` reconciled successfully at `unix_ts` (seconds) and `pending` changes remain.
    pub fn stack_synced(&self, stack: &str, unix_ts: f64, pending: usize) {
        self.stack_last_success
            .with_label_values(&[stack])
            .set(unix_ts);
        self.set_pending_changes(stack, pending);
    }

    /// The last plan of `stack` has `pending` changes not yet applied (for example after a
    /// failed deploy), without marking a success.
    pub fn set_pending_changes(&self, stack: &str, pending: usize) {
        self.pending_changes
            .with_label_values(&[stack])
            .set(saturating_i64(pending));
    }

    /// `stack` no longer exists: drop its series so the label set stays bounded.
    pub fn forget_stack(&self, stack: &str) {
        // Err only means the series did not exist, which is what we want.
        let _ = self.stack_last_success.remove_label_values(&[stack]);
        let _ = self.pending_changes.remove_label_values(&[stack]);
        self.listener_rules.forget(stack);
    }

    /// Replaces the current problem counts: listed reasons get their (summed) count, reasons
    /// set before and absent now go back to 0.
    pub fn set_problems(&self, counts: &[(&'static str, usize)]) {
        let mut summed: Vec<(&'static str, usize)> = Vec::with_capacity(counts.len());
        for &(reason, count) in counts {
            match summed.iter_mut().find(|(r, _)| *r == reason) {
                Some((_, total)) => *total = total.saturating_add(count),
                None => summed.push((reason, count)),
            }
        }
        let mut known = self
            .problem_reasons
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for reason in known.iter() {
            if !summed.iter().any(|(r, _)| r == reason) {
                self.problems.with_label_values(&[*reason]).set(0);
            }
        }
        for (reason, count) in summed {
            known.insert(reason);
            self.problems
                .with_label_values(&[reason])
                .set(saturating_i64(count));
        }
    }

    /// The controller failed at something; `category` is the error's bounded category
    /// (`ControllerError::category`).
    pub fn controller_error(&self, category: &'static str) {
        self.errors.with_label_values(&[category]).inc();
    }

    /// The certificate GC deleted a certificate (or was refused).
    pub fn certificate_collected(&self, deleted: bool) {
        let result = if deleted { "deleted" } else { "refused" };
        self.certificates_collected
            .with_label_values(&[result])
            .inc();
    }

    /// A list/watch of `kind` failed.
    pub fn watch_error(&self, kind: &'static str) {
        self.watch_errors.with_label_values(&[kind]).inc();
    }

    /// `active` Services are within their endpoint grace; `started` graces began.
    pub fn endpoint_grace(&self, active: usize, started: usize) {
        self.endpoint_grace_active.set(saturating_i64(active));
        self.endpoint_grace
            .inc_by(u64::try_from(started).unwrap_or(u64::MAX));
    }

    /// `n` pod targets are draining (weight 0).
    pub fn endpoints_draining(&self, n: usize) {
        self.endpoints_draining.set(saturating_i64(n));
    }

    /// A pod's readiness gate was set True.
    pub fn readiness_gate_set(&self) {
        self.readiness_gates_set.inc();
    }

    /// The certificate expiry of each referenced TLS Secret, replacing the previous set (a
    /// Secret no longer referenced loses its series).
    pub fn set_certificate_expiries(&self, expiries: &[(String, i64)]) {
        self.certificate_expiry.reset();
        for (secret, not_after) in expiries {
            self.certificate_expiry
                .with_label_values(&[secret.as_str()])
                .set(*not_after);
        }
    }

    /// A watch event's changes are live on its CLB, `elapsed` after the event arrived.
    pub fn event_live(&self, elapsed: Duration) {
        self.event_to_live.observe(elapsed.as_secs_f64());
    }

    /// Whether this replica is the leader (1) or not (0).
    pub fn set_leader(&self, leader: bool) {
        let now = i64::from(leader);
        if self.leader.get() != now {
            self.leader_transitions.inc();
        }
        self.leader.set(now);
    }

    /// Every family in the Prometheus text exposition format (version 0.0.4).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if let Err(err) = TextEncoder::new().encode_utf8(&self.registry.gather(), &mut out) {
            tracing::warn!(error = %err, "encoding metrics");
        }
        out
    }

    /// The `Content-Type` of [`Metrics::encode`]'s output.
    pub fn content_type(&self) -> &'static str {
        prometheus::TEXT_FORMAT
    }
}

fn saturating_i64(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl ClbObserver for Metrics {
    fn call_finished(
        &self,
        action: &'static str,
        result: CallResult,
        _code: Option<&str>,
        _elapsed: Duration,
    ) {
        self.api_calls
            .with_label_values(&[action_label(action), result.as_str()])
            .inc();
    }

    fn retry_scheduled(
        &self,
        action: &'static str,
        category: ErrorCategory,
        _attempt: u32,
        _delay: Duration,
    ) {
        self.api_retries
            .with_label_values(&[action_label(action), category.as_str()])
            .inc();
    }

    fn rate_limit_wait(&self, action: &'static str, waited: Duration) {
        self.throttle_wait
            .with_label_values(&[action_label(action)])
            .inc_by(waited.as_secs_f64());
    }

    fn task_finished(&self, result: CallResult, _polls: u32, elapsed: Duration) {
        self.task_wait
            .with_label_values(&[result.as_str()])
            .observe(elapsed.as_secs_f64());
    }

    fn credentials_reloaded(&self, trigger: ReloadTrigger, outcome: ReloadOutcome) {
        self.credential_reloads
            .with_label_values(&[trigger.as_str(), outcome.as_str()])
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics() -> Metrics {
        match Metrics::with_version("1.2.3") {
            Ok(m) => m,
            Err(err) => panic!("metrics registry: {err}"),
        }
    }

    /// The sample value of the line `series` (name plus `{labels}` exactly as encoded).
    fn sample(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    fn has_series(text: &str, series: &str) -> bool {
        sample(text, series).is_some()
    }

    #[test]
    fn fresh_registry_exposes_zeroed_reconcile_results_and_build_info() {
        let text = metrics().encode();
        for result in ["success", "error", "skipped"] {
            assert_eq!(
                sample(
                    &text,
                    &format!("clb_ingress_reconciles_total{{result=\"{result}\"}}")
                ),
                Some(0.0),
                "{text}"
            );
        }
        assert_eq!(
            sample(&text, "clb_ingress_build_info{version=\"1.2.3\"}"),
            Some(1.0)
        );
        assert_eq!(sample(&text, "clb_ingress_leader"), Some(0.0));
        assert_eq!(sample(&text, "clb_ingress_queue_depth"), Some(0.0));
    }

    #[test]
    fn every_family_has_help_and_type_lines() {
        let m = metrics();
        m.stack_synced("lb-1", 1.0, 0);
        m.set_problems(&[("InvalidHost", 1)]);
        m.call_finished("CreateRule", CallResult::Success, None, Duration::ZERO);
        m.retry_scheduled("CreateRule", ErrorCategory::Busy, 1, Duration::ZERO);
        m.rate_limit_wait("CreateRule", Duration::from_millis(1));
        m.task_finished(CallResult::Success, 1, Duration::from_millis(1));
        m.reconcile_finished(ReconcileResult::Success, Duration::from_millis(1));
        m.controller_error("Throttled");
        m.set_cluster_id("c1");
        let text = m.encode();
        for (family, kind) in [
            ("clb_ingress_reconciles_total", "counter"),
            ("clb_ingress_reconcile_duration_seconds", "histogram"),
            ("clb_ingress_queue_depth", "gauge"),
            ("clb_ingress_stack_last_success_timestamp_seconds", "gauge"),
            ("clb_ingress_pending_changes", "gauge"),
            ("clb_ingress_problems", "gauge"),
            ("clb_ingress_clb_api_calls_total", "counter"),
            ("clb_ingress_clb_api_retries_total", "counter"),
            ("clb_ingress_clb_api_throttle_wait_seconds_total", "counter"),
            ("clb_ingress_clb_task_wait_seconds", "histogram"),
            ("clb_ingress_leader", "gauge"),
            ("clb_ingress_controller_errors_total", "counter"),
            ("clb_ingress_endpoint_grace_active", "gauge"),
            ("clb_ingress_endpoint_grace_total", "counter"),
            ("clb_ingress_endpoints_draining", "gauge"),
            ("clb_ingress_readiness_gates_set_total", "counter"),
            ("clb_ingress_build_info", "gauge"),
            ("clb_ingress_cluster_info", "gauge"),
        ] {
            assert!(
                text.contains(&format!("# HELP {family} ")),
                "no HELP for {family}:\n{text}"
            );
            assert!(
                text.contains(&format!("# TYPE {family} {kind}\n")),
                "no TYPE {kind} for {family}:\n{text}"
            );
        }
    }

    #[test]
    fn draining_endpoints_set_the_gauge_and_readiness_gates_are_counted() {
        let m = metrics();
        m.endpoints_draining(3);
        m.readiness_gate_set();
        m.readiness_gate_set();
        let text = m.encode();
        assert_eq!(sample(&text, "clb_ingress_endpoints_draining"), Some(3.0));
        assert_eq!(
            sample(&text, "clb_ingress_readiness_gates_set_total"),
            Some(2.0)
        );
    }

    #[test]
    fn endpoint_grace_sets_the_gauge_and_counts_the_graces_started() {
        let m = metrics();
        m.endpoint_grace(2, 2);
        m.endpoint_grace(1, 0);
        let text = m.encode();
        assert_eq!(
            sample(&text, "clb_ingress_endpoint_grace_active"),
            Some(1.0)
        );
        assert_eq!(sample(&text, "clb_ingress_endpoint_grace_total"), Some(2.0));
    }

    #[test]
    fn reconcile_finished_counts_by_result_and_observes_duration() {
        let m = metrics();
        m.reconcile_finished(ReconcileResult::Success, Duration::from_millis(20));
        m.reconcile_finished(ReconcileResult::Success, Duration::from_millis(30));
        m.reconcile_finished(ReconcileResult::Error, Duration::from_secs(3));
        let text = m.encode();
        assert_eq!(
            sample(&text, "clb_ingress_reconciles_total{result=\"success\"}"),
            Some(2.0)
        );
        assert_eq!(
            sample(&text, "clb_ingress_reconciles_total{result=\"error\"}"),
            Some(1.0)
        );
        assert_eq!(
            sample(
                &text,
                "clb_ingress_reconcile_duration_seconds_count{result=\"success\"}"
            ),
            Some(2.0)
        );
        let sum = sample(
            &text,
            "clb_ingress_reconcile_duration_seconds_sum{result=\"success\"}",
        )
        .unwrap_or_default();
        assert!((sum - 0.05).abs() < 1e-9, "sum {sum}");
        assert_eq!(
            sample(
                &text,
                "clb_ingress_reconcile_duration_seconds_bucket{result=\"error\",le=\"2.5\"}"
            ),
            Some(0.0)
        );
        assert_eq!(
            sample(
                &text,
                "clb_ingress_reconcile_duration_seconds_bucket{result=\"error\",le=\"5\"}"
            ),
            Some(1.0)
        );
    }

    #[test]
    fn queue_depth_and_leader_gauges_follow_the_last_value() {
        let m = metrics();
        m.set_queue_depth(7);
        m.set_leader(true);
        let text = m.encode();
        assert_eq!(sample(&text, "clb_ingress_queue_depth"), Some(7.0));
        assert_eq!(sample(&text, "clb_ingress_leader"), Some(1.0));
        m.set_queue_depth(0);
        m.set_leader(false);
        let text = m.encode();
        assert_eq!(sample(&text, "clb_ingress_queue_depth"), Some(0.0));
        assert_eq!(sample(&text, "clb_ingress_leader"), Some(0.0));
    }

    #[test]
    fn stack_synced_sets_timestamp_and_pending_changes_per_stack() {
        let m = metrics();
        m.stack_synced("lb-aaaaaaaa", 1_700_000_000.0, 0);
        m.stack_synced("lb-bbbbbbbb", 1_700_000_005.0, 3);
        let text = m.encode();
        assert_eq!(
            sample(
                &text,
                "clb_ingress_stack_last_success_timestamp_seconds{stack=\"lb-aaaaaaaa\"}"
            ),
            Some(1_700_000_000.0)
        );
        assert_eq!(
            sample(&text, "clb_ingress_pending_changes{stack=\"lb-bbbbbbbb\"}"),
            Some(3.0)
        );
        m.set_pending_changes("lb-aaaaaaaa", 2);
        let text = m.encode();
        assert_eq!(
            sample(&text, "clb_ingress_pending_changes{stack=\"lb-aaaaaaaa\"}"),
            Some(2.0)
        );
        assert_eq!(
            sample(
                &text,
                "clb_ingress_stack_last_success_timestamp_seconds{stack=\"lb-aaaaaaaa\"}"
            ),
            Some(1_700_000_000.0),
            "a pending-changes update does not touch the success time"
        );
    }

    #[test]
    fn forget_stack_removes_only_that_stacks_series() {
        let m = metrics();
        m.stack_synced("gone", 10.0, 1);
        m.stack_synced("kept", 20.0, 0);
        m.forget_stack("gone");
        m.forget_stack("never-seen");
        let text = m.encode();
        assert!(!text.contains("stack=\"gone\""), "{text}");
        assert!(has_series(
            &text,
            "clb_ingress_stack_last_success_timestamp_seconds{stack=\"kept\"}"
        ));
        assert!(has_series(
            &text,
            "clb_ingress_pending_changes{stack=\"kept\"}"
        ));
    }

    #[test]
    fn set_problems_sums_duplicates_and_zeroes_reasons_that_went_away() {
        let m = metrics();
        m.set_problems(&[("InvalidHost", 2), ("RuleConflict", 1), ("InvalidHost", 1)]);
        let text = m.encode();
        assert_eq!(
            sample(&text, "clb_ingress_problems{reason=\"InvalidHost\"}"),
            Some(3.0)
        );
        assert_eq!(
            sample(&text, "clb_ingress_problems{reason=\"RuleConflict\"}"),
            Some(1.0)
        );
        m.set_problems(&[("RuleConflict", 4)]);
        let text = m.encode();
        assert_eq!(
            sample(&text, "clb_ingress_problems{reason=\"InvalidHost\"}"),
            Some(0.0)
        );
        assert_eq!(
            sample(&text, "clb_ingress_problems{reason=\"RuleConflict\"}"),
            Some(4.0)
        );
    }

    #[test]
    fn controller_errors_are_counted_by_category() {
        let m = metrics();
        m.controller_error("Throttled");
        m.controller_error("Throttled");
        m.controller_error("FinalizerUpdate");
        let text = m.encode();
        assert_eq!(
            sample(
                &text,
                "clb_ingress_controller_errors_total{category=\"Throttled\"}"
            ),
            Some(2.0)
        );
        assert_eq!(
            sample(
                &text,
                "clb_ingress_controller_errors_total{category=\"FinalizerUpdate\"}"
            ),
            Some(1.0)
        );
    }

    #[test]
    fn model_reasons_are_valid_problem_labels() {
        let m = metrics();
        let reason = crate::model::Reason::TooManyRules.as_str();
        m.set_problems(&[(reason, 1)]);
        assert_eq!(
            sample(&m.encode(), "clb_ingress_problems{reason=\"TooManyRules\"}"),
            Some(1.0)
        );
    }

    #[test]
    fn api_calls_are_labelled_by_action_and_bounded_code() {
        let m = metrics();
        m.call_finished(
            "DescribeListeners",
            CallResult::Success,
            None,
            Duration::ZERO,
        );
        m.call_finished(
            "CreateRule",
            CallResult::Failed(ErrorCategory::Throttled),
            Some("RequestLimitExceeded.UinLimitExceeded"),
            Duration::ZERO,
        );
        m.call_finished(
            "CreateRule",
            CallResult::Failed(ErrorCategory::Throttled),
            Some("RequestLimitExceeded"),
            Duration::ZERO,
        );
        let text = m.encode();
        assert_eq!(
            sample(
                &text,
                "clb_ingress_clb_api_calls_total{action=\"DescribeListeners\",code=\"Success\"}"
            ),
            Some(1.0)
        );
        assert_eq!(
            sample(
                &text,
                "clb_ingress_clb_api_calls_total{action=\"CreateRule\",code=\"Throttled\"}"
            ),
            Some(2.0)
        );
        assert!(
            !text.contains("RequestLimitExceeded"),
            "raw cloud codes must not become labels:\n{text}"
        );
    }

    #[test]
    fn unknown_action_names_are_counted_as_other() {
        let m = metrics();
        m.call_finished(
            "SomeFutureAction",
            CallResult::Success,
            None,
            Duration::ZERO,
        );
        m.retry_scheduled(
            "SomeFutureAction",
            ErrorCategory::Transient,
            1,
            Duration::ZERO,
        );
        m.rate_limit_wait("SomeFutureAction", Duration::from_secs(1));
        let text = m.encode();
        assert!(!text.contains("SomeFutureAction"), "{text}");
        assert_eq!(
            sample(
                &text,
                "clb_ingress_clb_api_calls_total{action=\"Other\",code=\"Success\"}"
            ),
            Some(1.0)
        );
        assert_eq!(
            sample(
                &text,
                "clb_ingress_clb_api_retries_total{action=\"Other\",category=\"Transient\"}"
            ),
            Some(1.0)
        );
    }

    #[test]
    fn every_known_action_keeps_its_own_label() {
        for op in ops::ALL {
            assert_eq!(action_label(op.name), op.name);
        }
        assert_eq!(action_label(""), OTHER_ACTION);
    }

    #[test]
    fn retries_are_labelled_by_action_and_category() {
        let m = metrics();
        m.retry_scheduled("ModifyRule", ErrorCategory::Busy, 1, Duration::ZERO);
        m.retry_scheduled("ModifyRule", ErrorCategory::Busy, 2, Duration::ZERO);
        m.retry_scheduled("ModifyRule", ErrorCategory::Throttled, 3, Duration::ZERO);
        let text = m.encode();
        assert_eq!(
            sample(
                &text,
                "clb_ingress_clb_api_retries_total{action=\"ModifyRule\",category=\"Busy\"}"
            ),
            Some(2.0)
        );
        assert_eq!(
            sample(
                &text,
                "clb_ingress_clb_api_retries_total{action=\"ModifyRule\",category=\"Throttled\"}"
            ),
            Some(1.0)
        );
    }

    #[test]
    fn throttle_waits_add_up_seconds_per_action() {
        let m = metrics();
        m.rate_limit_wait("RegisterTargets", Duration::from_millis(250));
        m.rate_limit_wait("RegisterTargets", Duration::from_millis(500));
        let text = m.encode();
        let waited = sample(
            &text,
            "clb_ingress_clb_api_throttle_wait_seconds_total{action=\"RegisterTargets\"}",
        )
        .unwrap_or_default();
        assert!((waited - 0.75).abs() < 1e-9, "waited {waited}");
    }

    #[test]
    fn task_waits_are_observed_by_result() {
        let m = metrics();
        m.task_finished(CallResult::Success, 3, Duration::from_millis(1500));
        m.task_finished(
            CallResult::Failed(ErrorCategory::TaskFailed),
            1,
            Duration::from_millis(200),
        );
        let text = m.encode();
        assert_eq!(
            sample(
                &text,
                "clb_ingress_clb_task_wait_seconds_count{result=\"Success\"}"
            ),
            Some(1.0)
        );
        assert_eq!(
            sample(
                &text,
                "clb_ingress_clb_task_wait_seconds_bucket{result=\"Success\",le=\"2\"}"
            ),
            Some(1.0)
        );
        assert_eq!(
            sample(
                &text,
                "clb_ingress_clb_task_wait_seconds_bucket{result=\"Success\",le=\"1\"}"
            ),
            Some(0.0)
        );
        assert_eq!(
            sample(
                &text,
                "clb_ingress_clb_task_wait_seconds_count{result=\"TaskFailed\"}"
            ),
            Some(1.0)
        );
    }

    #[test]
    fn content_type_is_the_text_format_version_0_0_4() {
        assert_eq!(metrics().content_type(), "text/plain; version=0.0.4");
    }

    #[test]
    fn two_metrics_instances_do_not_share_a_registry() {
        let a = metrics();
        let b = metrics();
        a.set_queue_depth(5);
        assert_eq!(sample(&b.encode(), "clb_ingress_queue_depth"), Some(0.0));
    }

    #[test]
    fn credential_reloads_are_counted_by_trigger_and_outcome_from_zero() {
        let m = metrics();
        let series = |trigger: &str, outcome: &str| {
            format!(
                "clb_ingress_credential_reloads_total{{outcome=\"{outcome}\",trigger=\"{trigger}\"}}"
            )
        };
        assert_eq!(
            sample(&m.encode(), &series("AuthFailure", "Changed")),
            Some(0.0)
        );
        m.credentials_reloaded(ReloadTrigger::AuthFailure, ReloadOutcome::Changed);
        m.credentials_reloaded(ReloadTrigger::AuthFailure, ReloadOutcome::Changed);
        m.credentials_reloaded(ReloadTrigger::Watch, ReloadOutcome::Failed);
        let text = m.encode();
        assert_eq!(sample(&text, &series("AuthFailure", "Changed")), Some(2.0));
        assert_eq!(sample(&text, &series("Watch", "Failed")), Some(1.0));
        assert_eq!(sample(&text, &series("Watch", "Changed")), Some(0.0));
    }

    #[test]
    fn leader_changes_are_counted_and_process_metrics_are_exported() {
        let m = metrics();
        m.set_leader(true);
        m.set_leader(true);
        m.set_leader(false);
        m.set_leader(true);
        let text = m.encode();
        assert_eq!(
            sample(&text, "clb_ingress_leader_transitions_total"),
            Some(3.0)
        );
        assert_eq!(sample(&text, "clb_ingress_leader"), Some(1.0));
        #[cfg(target_os = "linux")]
        for family in [
            "process_resident_memory_bytes",
            "process_cpu_seconds_total",
            "process_open_fds",
            "process_start_time_seconds",
        ] {
            assert!(has_series(&text, family), "{family} missing:\n{text}");
        }
    }

    #[test]
    fn certificate_expiries_replace_the_previous_set() {
        let m = metrics();
        m.set_certificate_expiries(&[("a/x".into(), 100), ("b/y".into(), 200)]);
        m.set_certificate_expiries(&[("b/y".into(), 300)]);
        let text = m.encode();
        let series =
            |s: &str| format!("clb_ingress_certificate_expiry_timestamp_seconds{{secret=\"{s}\"}}");
        assert_eq!(sample(&text, &series("b/y")), Some(300.0));
        assert!(!has_series(&text, &series("a/x")), "{text}");
    }
}
