//! What the controller is told to do: [`ControllerConfig`], a plain struct with every setting
//! the controller reads (no clap; `clb-ingress run` builds one from its flags in `cli::run`).

use std::time::Duration;

pub const DEFAULT_DEBOUNCE_MS: u64 = 50;
pub const DEFAULT_RESYNC_SECS: u64 = 300;
/// How often the account's CLB quotas (DescribeQuota) are read again besides every resync.
pub const DEFAULT_QUOTA_REFRESH_SECS: u64 = 600;
pub const DEFAULT_CONCURRENCY: usize = 32;
/// Period of the full drift sweep, which reads every CLB (6 hours).
pub const DEFAULT_FULL_RESYNC_SECS: u64 = 6 * 3600;
/// CLBs the full drift sweep reads per second (each costs 2-3 reads).
pub const DEFAULT_FULL_RESYNC_STACKS_PER_SECOND: f64 = 1.0;
/// Seconds a Service whose endpoints dropped to none keeps its last endpoints on the CLB.
pub const DEFAULT_ENDPOINT_GRACE_SECS: u64 = 30;
pub const DEFAULT_ENDPOINT_GRACE: Duration = Duration::from_secs(DEFAULT_ENDPOINT_GRACE_SECS);
/// The Namespace whose UID is the default cluster id: every cluster has one, and its UID is
/// unique to that cluster.
pub const CLUSTER_ID_NAMESPACE: &str = "kube-system";
pub const DEFAULT_LEASE_NAMESPACE: &str = "kube-system";
pub const DEFAULT_LEASE_NAME: &str = "clb-ingress-leader";
/// Seconds a leader Lease is held without renewal before another replica may take it.
pub const LEASE_DURATION_SECS: u64 = 15;
/// Seconds before the end of the lease at which the holder renews it.
pub const LEASE_GRACE_SECS: u64 = 5;

/// Every setting of one controller.
#[derive(Debug, Clone)]
pub struct ControllerConfig {
    /// Cluster id used in CLB names and ownership tags (unique per cluster).
    pub cluster_id: String,
    /// Only watch this namespace (`None`: all namespaces).
    pub watch_namespace: Option<String>,
    /// Only handle this IngressClass (`None`: every IngressClass with `controller_name`).
    pub ingress_class: Option<String>,
    /// The IngressClass `spec.controller` value this controller answers to.
    pub controller_name: String,
    /// Resync period (a zero period is taken as one second): one listing of this cluster's
    /// CLBs; stacks whose CLB's desired-state tag differs from their digest (or whose CLB is
    /// gone) are reconciled, the others are not read; CLBs no stack uses are pruned.
    pub resync: Duration,
    /// Full drift sweep period: every CLB is read and repaired, paced (zero: never).
    pub full_resync: Duration,
    /// CLBs the full drift sweep reconciles per second.
    pub full_resync_stacks_per_second: f64,
    /// Events arriving within this window are coalesced into one pass.
    pub debounce: Duration,
    /// Stacks (CLBs) reconciled in parallel; each stack always has a single writer.
    pub concurrency: usize,
    /// Watch Nodes (needed by every target mode but Direct).
    pub watch_nodes: bool,
    /// Read TKE's `TkeServiceConfig`s (`--tke-service-configs`): Ingresses naming one with
    /// `ingress.cloud.tencent.com/tke-service-config` get its rule settings.
    pub tke_service_configs: bool,
    /// Elect a leader through a Lease (`None`: this replica always leads).
    pub leader_election: Option<LeaderElection>,
    /// This replica's identity: the Lease holder and the Event reporter instance.
    pub identity: String,
    /// Delete this cluster's uploaded certificates once unused this long (`None`: never).
    pub certificate_gc_grace: Option<Duration>,
    /// How long a Service whose endpoints dropped to none keeps its last endpoints on the CLB
    /// (an EndpointSlice being replaced); zero: no grace.
    pub endpoint_grace: Duration,
    /// Watch pods labelled `clb-ingress.io/readiness-gate=true` and set their readiness gate
    /// condition once their target is healthy (needs pods get/list/watch and pods/status patch).
    pub readiness_gates: bool,
    /// How often the account's CLB quotas are read again (DescribeQuota); a change requeues
    /// every stack. They are also read at the start of every resync.
    pub quota_refresh: Duration,
    /// Gateway API (`--gateway-api`): the `spec.controllerName` of the GatewayClasses
    /// handled; `None` when off (no Gateway API kind is watched).
    pub gateway_api: Option<String>,
}

/// Where and how the leader-election Lease is held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderElection {
    pub namespace: String,
    pub name: String,
    pub lease_duration_secs: u64,
    pub grace_secs: u64,
}

impl LeaderElection {
    /// The Lease `namespace/name` with the default timings.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
            lease_duration_secs: LEASE_DURATION_SECS,
            grace_secs: LEASE_GRACE_SECS,
        }
    }
}

impl ControllerConfig {
    /// The defaults of `clb-ingress run` for `cluster_id`, with a generated identity.
    pub fn new(cluster_id: impl Into<String>) -> Self {
        Self {
            cluster_id: cluster_id.into(),
            watch_namespace: None,
            ingress_class: None,
            controller_name: crate::model::build::DEFAULT_CONTROLLER_NAME.to_string(),
            resync: Duration::from_secs(DEFAULT_RESYNC_SECS),
            full_resync: Duration::from_secs(DEFAULT_FULL_RESYNC_SECS),
            full_resync_stacks_per_second: DEFAULT_FULL_RESYNC_STACKS_PER_SECOND,
            debounce: Duration::from_millis(DEFAULT_DEBOUNCE_MS),
            concurrency: DEFAULT_CONCURRENCY,
            watch_nodes: true,
            tke_service_configs: false,
            leader_election: None,
            identity: default_identity(),
            certificate_gc_grace: Some(super::certgc::DEFAULT_GRACE),
            endpoint_grace: DEFAULT_ENDPOINT_GRACE,
            readiness_gates: true,
            quota_refresh: Duration::from_secs(DEFAULT_QUOTA_REFRESH_SECS),
            gateway_api: None,
        }
    }
}

/// `$HOSTNAME` (or `clb-ingress`) plus a random suffix, for a replica given no identity.
pub fn default_identity() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "clb-ingress".into());
    format!("{host}-{}", &uuid::Uuid::new_v4().simple().to_string()[..8])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_identities_differ() {
        let (a, b) = (default_identity(), default_identity());
        assert_ne!(a, b);
        assert_eq!(a.len(), b.len());
    }

    #[test]
    fn defaults_match_the_documented_flags() {
        let c = ControllerConfig::new("c1");
        assert_eq!(c.cluster_id, "c1");
        assert_eq!(c.resync, Duration::from_secs(300));
        assert_eq!(c.debounce, Duration::from_millis(50));
        assert_eq!(c.concurrency, 32);
        assert_eq!(c.endpoint_grace, Duration::from_secs(30));
        assert!(c.watch_nodes && c.leader_election.is_none());
        assert_eq!(
            c.controller_name,
            crate::model::build::DEFAULT_CONTROLLER_NAME
        );
    }
}

/// The default cluster id: the UID of the `kube-system` Namespace (unique per cluster, stable
/// for its life).
pub async fn cluster_uid(client: &kube::Client) -> Result<String, ClusterIdError> {
    let ns: k8s_openapi::api::core::v1::Namespace = kube::Api::all(client.clone())
        .get(CLUSTER_ID_NAMESPACE)
        .await?;
    ns.metadata
        .uid
        .filter(|u| !u.is_empty())
        .ok_or(ClusterIdError::NoUid)
}

/// Why the default cluster id could not be found.
#[derive(Debug, thiserror::Error)]
pub enum ClusterIdError {
    #[error(
        "cannot read Namespace {CLUSTER_ID_NAMESPACE} for the default cluster id (give --cluster-id): {0}"
    )]
    Read(#[from] kube::Error),
    #[error("Namespace {CLUSTER_ID_NAMESPACE} has no UID (give --cluster-id)")]
    NoUid,
}
