//! Snapshot of Kubernetes objects -> `DesiredLb` per stack + `Problem`s. Pure and deterministic.
//!
//! Order of work: class selection -> stack assignment -> per stack, oldest Ingress first:
//! validate, resolve backends to targets, merge (oldest wins conflicts), check CLB limits (an
//! Ingress that would exceed one is parked whole, never truncated) -> translate each listener.

mod annotations;
mod backends;
pub mod canary;
mod gateway;
mod index;
pub mod settings;
mod shard;
mod stack;
mod tls;

pub use annotations::{
    MixEntry, MixRewrite, RewriteCodes, RsWeightGroup, RsWeights, RuleMix, TKE_REFUSED_ANNOTATIONS,
    parse_certificates, parse_listen_ports, parse_mix_rules, parse_rewrite_codes, parse_rs_weights,
};
pub use backends::{endpoint_usable, instance_id};
pub use index::{Index, OurClasses, class_parameters, is_lb_id, shared_class_names};
pub use shard::{Placement, host_cost};
pub use tls::{cert_from_secret, cert_from_secret_dropped};

use backends::*;
use index::*;
use stack::*;

use super::translate::{self, HostKey, SyntaxProblem};
use super::types::*;
use crate::crd::{
    ClbBackendConfig, ClbClassParameters, ClbClassParametersSpec, TargetMode, TkeServiceConfig,
};
use crate::matching::ingress::PathKind;
use k8s_openapi::api::core::v1::{Namespace, Node, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressBackend, IngressClass};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use rustc_hash::FxHashMap as HashMap;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};

/// The `spec.controller` value of IngressClasses handled by clb-ingress.
pub const DEFAULT_CONTROLLER_NAME: &str = "clb-ingress.io/ingress-controller";
pub const ANN_INGRESS_CLASS: &str = "kubernetes.io/ingress.class";
pub const ANN_DEFAULT_CLASS: &str = "ingressclass.kubernetes.io/is-default-class";
pub const ANN_EXIST_LB_ID: &str = "kubernetes.io/ingress.existLbId";
pub const ANN_DIRECT_ACCESS: &str = "ingress.cloud.tencent.com/direct-access";
pub const ANN_LISTEN_PORTS: &str = "ingress.cloud.tencent.com/listen-ports";
pub const ANN_SUBNET_ID: &str = "kubernetes.io/ingress.subnetId";
pub const ANN_AUTO_REWRITE: &str = "ingress.cloud.tencent.com/auto-rewrite";
pub const ANN_AUTO_REWRITE_CODE: &str = "ingress.cloud.tencent.com/auto-rewrite-code";
pub const ANN_RS_WEIGHT: &str = "ingress.cloud.tencent.com/lb-rs-weight";
pub const ANN_RETAIN: &str = "ingress.cloud.tencent.com/loadbalance-retain";
pub const ANN_MODE: &str = "ingress.cloud.tencent.com/mode";
/// TKE: host -> Tencent Cloud certificate id, beside `spec.tls`.
pub const ANN_CERTIFICATE: &str = "ingress.cloud.tencent.com/certificate";
/// TKE's mixed HTTP/HTTPS rules: `rule-mix: "true"` with per-protocol rule lists.
pub const ANN_RULE_MIX: &str = "kubernetes.io/ingress.rule-mix";
pub const ANN_HTTP_RULES: &str = "kubernetes.io/ingress.http-rules";
pub const ANN_HTTPS_RULES: &str = "kubernetes.io/ingress.https-rules";
/// Read-only on TKE: the id of the CLB the Ingress uses (written back by the controller).
pub const ANN_QCLOUD_LB_ID: &str = "kubernetes.io/ingress.qcloud-loadbalance-id";
/// Hosts TKE refuses in a rule (clb-ingress refuses them too, so a migrated Ingress behaves alike).
pub const TKE_REFUSED_HOSTS: [&str; 1] = ["localhost"];
/// Written by the controller itself (see `controller::report`).
pub const ANN_SYNC_STATE: &str = "clb-ingress.io/sync-state";
/// Annotation prefixes clb-ingress owns: an unknown key under them gets a Warning.
pub const OWN_ANNOTATION_PREFIXES: [&str; 2] = ["ingress.cloud.tencent.com/", "clb-ingress.io/"];
/// Every annotation under `OWN_ANNOTATION_PREFIXES` clb-ingress understands.
pub const KNOWN_ANNOTATIONS: [&str; 9] = [
    ANN_CERTIFICATE,
    ANN_DIRECT_ACCESS,
    ANN_LISTEN_PORTS,
    ANN_AUTO_REWRITE,
    ANN_AUTO_REWRITE_CODE,
    ANN_RS_WEIGHT,
    ANN_RETAIN,
    ANN_MODE,
    ANN_SYNC_STATE,
];
/// TKE's default redirect code for `auto-rewrite`.
pub const DEFAULT_REWRITE_CODE: u16 = 301;
pub const LABEL_SERVICE_NAME: &str = "kubernetes.io/service-name";
pub const SECRET_QCLOUD_CERT_ID: &str = "qcloud_cert_id";
pub const DEFAULT_HTTP_PORT: u16 = 80;
pub const DEFAULT_HTTPS_PORT: u16 = 443;
/// CLB's default target weight.
pub const DEFAULT_WEIGHT: u32 = 10;
pub const MAX_WEIGHT: u32 = 100;

/// CLB quotas checked before any call (clb-api.md §6); DescribeQuota can override them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub listeners_per_lb: usize,
    pub rules_per_listener: usize,
    pub targets_per_rule: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            listeners_per_lb: 50,
            rules_per_listener: 50,
            targets_per_rule: 100,
        }
    }
}

/// Every object the model reads.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub cluster_id: String,
    pub controller_name: String,
    pub limits: Limits,
    pub ingress_classes: Vec<IngressClass>,
    pub class_params: Vec<ClbClassParameters>,
    /// Shared with the controller's watch cache, as the Services and EndpointSlices are (a
    /// deep copy of 10,000 Ingresses per pass was 21 MB of the peak of a sync burst).
    pub ingresses: Vec<std::sync::Arc<Ingress>>,
    /// Shared with the controller's watch cache (a snapshot per reconcile costs one pointer per
    /// object, not a deep copy of every Service and endpoint).
    pub services: Vec<std::sync::Arc<Service>>,
    pub endpoint_slices: Vec<std::sync::Arc<EndpointSlice>>,
    pub secrets: Vec<Secret>,
    /// TLS Secrets (namespace, name) whose private key the controller dropped from memory after
    /// its certificate reached the account, with the fingerprint of the certificate and key it
    /// read: their entry in `secrets` keeps `tls.crt` only. Filled by the controller alone
    /// (never from manifests), so a Secret cannot claim another's fingerprint.
    pub dropped_keys: BTreeMap<(String, String), String>,
    pub nodes: Vec<Node>,
    pub namespaces: Vec<Namespace>,
    /// Where the hosts of shared classes live now (class -> CLB domain -> shard), as the CLBs
    /// serve them or as the last build placed them: placement is sticky ([`shard`]).
    pub placement: Placement,
    /// Direct mode: pod IPs `(namespace, IP)` whose endpoint is not usable but stay
    /// registered with weight 0 (graceful drain: no new requests, in-flight ones finish).
    /// Filled by the controller alone, which also re-adds endpoints that left their slice
    /// while their drain delay runs.
    pub draining: BTreeSet<(String, String)>,
    /// Direct mode: pod IPs `(namespace, IP)` of pods carrying the readiness gate whose
    /// containers are ready and that wait only for the gate: registered with their weight
    /// although their endpoint is not ready yet, so the CLB can health-check them. Filled by
    /// the controller alone.
    pub gated: BTreeSet<(String, String)>,
    /// `ClbBackendConfig`s (backend settings named by Services and Ingress paths).
    pub backend_configs: Vec<ClbBackendConfig>,
    /// TKE's `TkeServiceConfig`s; `None`: not read (the controller runs without
    /// `--tke-service-configs`), and an Ingress naming one gets a Warning.
    pub tke_service_configs: Option<Vec<TkeServiceConfig>>,
    /// `spec.controllerName` of the GatewayClasses handled (empty: Gateway API off).
    pub gateway_controller_name: String,
    pub gateway_classes: Vec<crate::gateway::GatewayClass>,
    pub gateways: Vec<crate::gateway::Gateway>,
    pub http_routes: Vec<crate::gateway::HttpRoute>,
    pub grpc_routes: Vec<crate::gateway::GrpcRoute>,
    pub reference_grants: Vec<crate::gateway::ReferenceGrant>,
}

impl Snapshot {
    pub fn new(cluster_id: &str) -> Self {
        Self {
            cluster_id: cluster_id.to_string(),
            controller_name: DEFAULT_CONTROLLER_NAME.to_string(),
            gateway_controller_name: crate::gateway::DEFAULT_GATEWAY_CONTROLLER_NAME.to_string(),
            ..Default::default()
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct BuildOutput {
    pub stacks: BTreeMap<StackId, DesiredLb>,
    pub problems: Vec<Problem>,
    /// Where the hosts of shared classes were placed (class -> CLB domain -> shard).
    pub placement: Placement,
    /// The status of every Gateway API object of the snapshot that clb-ingress handles.
    pub gateway: crate::gateway::GatewayApiStatus,
}

/// What each Ingress path costs in CLB rules, per stack and listener (`plan -f` prints it).
pub fn rule_costs(snap: &Snapshot) -> BTreeMap<StackId, Vec<crate::model::ListenerCost>> {
    let index = Index::new(snap);
    index
        .stack_ids()
        .map(|id| (id.clone(), index.stack_rule_costs(id)))
        .filter(|(_, c)| !c.is_empty())
        .collect()
}

/// Build every stack.
pub fn build(snap: &Snapshot) -> BuildOutput {
    let index = Index::new(snap);
    let mut out = BuildOutput {
        problems: index.problems.clone(),
        placement: index.placement().clone(),
        ..Default::default()
    };
    for stack in index.stack_ids() {
        let (lb, problems) = index.build_stack(stack);
        out.problems.extend(problems);
        if let Some(lb) = lb {
            out.stacks.insert(stack.clone(), lb);
        }
    }
    if !snap.gateways.is_empty() || !snap.gateway_classes.is_empty() {
        let gw = gateway::build(&index);
        out.stacks.extend(gw.stacks);
        out.problems.extend(gw.problems);
        out.gateway = gw.status;
    }
    out.problems.sort();
    out
}

/// The Gateway API part of [`build`] alone: the Gateway stacks, their Problems and the
/// computed status (the controller builds Ingress stacks one at a time and these beside them).
pub fn build_gateways(
    index: &Index<'_>,
) -> (
    BTreeMap<StackId, DesiredLb>,
    Vec<Problem>,
    crate::gateway::GatewayApiStatus,
) {
    let gw = gateway::build(index);
    (gw.stacks.into_iter().collect(), gw.problems, gw.status)
}

fn meta_name(m: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> (&str, &str) {
    (
        m.namespace.as_deref().unwrap_or("default"),
        m.name.as_deref().unwrap_or(""),
    )
}

fn annotation<'a>(ing: &'a Ingress, key: &str) -> Option<&'a str> {
    ing.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .map(String::as_str)
}

/// Does a label selector match these labels (matchLabels and matchExpressions)?
pub fn selector_matches(sel: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let labels_ok = sel
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let exprs_ok = sel.match_expressions.iter().flatten().all(|e| {
        let values = e.values.as_deref().unwrap_or_default();
        match e.operator.as_str() {
            "In" => labels.get(&e.key).is_some_and(|v| values.contains(v)),
            "NotIn" => labels.get(&e.key).is_none_or(|v| !values.contains(v)),
            "Exists" => labels.contains_key(&e.key),
            "DoesNotExist" => !labels.contains_key(&e.key),
            _ => false,
        }
    });
    labels_ok && exprs_ok
}
