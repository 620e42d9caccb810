//! Snapshot of Kubernetes objects -> `DesiredLb` per stack + `Problem`s. Pure and deterministic.
//!
//! Order of work: class selection -> stack assignment -> per stack, oldest Ingress first:
//! validate, resolve backends to targets, merge (oldest wins conflicts), check CLB limits (an
//! Ingress that would exceed one is parked whole, never truncated) -> translate each listener.

use super::translate::{self, HostKey, SyntaxProblem};
use super::types::*;
use crate::crd::{ClbClassParameters, ClbClassParametersSpec, TargetMode};
use crate::matching::ingress::PathKind;
use k8s_openapi::api::core::v1::{Namespace, Node, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressBackend, IngressClass};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use rustc_hash::FxHashMap as HashMap;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

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
/// Written by the controller itself (see `controller::report`).
pub const ANN_SYNC_STATE: &str = "clb-ingress.io/sync-state";
/// Annotation prefixes clb-ingress owns: an unknown key under them gets a Warning.
pub const OWN_ANNOTATION_PREFIXES: [&str; 2] = ["ingress.cloud.tencent.com/", "clb-ingress.io/"];
/// Every annotation under `OWN_ANNOTATION_PREFIXES` clb-ingress understands.
pub const KNOWN_ANNOTATIONS: [&str; 8] = [
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
    pub ingresses: Vec<Ingress>,
    pub services: Vec<Service>,
    pub endpoint_slices: Vec<EndpointSlice>,
    pub secrets: Vec<Secret>,
    pub nodes: Vec<Node>,
    pub namespaces: Vec<Namespace>,
}

impl Snapshot {
    pub fn new(cluster_id: &str) -> Self {
        Self {
            cluster_id: cluster_id.to_string(),
            controller_name: DEFAULT_CONTROLLER_NAME.to_string(),
            ..Default::default()
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct BuildOutput {
    pub stacks: BTreeMap<StackId, DesiredLb>,
    pub problems: Vec<Problem>,
}

/// Build every stack.
pub fn build(snap: &Snapshot) -> BuildOutput {
    let index = Index::new(snap);
    let mut out = BuildOutput {
        problems: index.problems.clone(),
        ..Default::default()
    };
    for stack in index.stack_ids() {
        let (lb, problems) = index.build_stack(stack);
        out.problems.extend(problems);
        if let Some(lb) = lb {
            out.stacks.insert(stack.clone(), lb);
        }
    }
    out.problems.sort();
    out
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

/// How one managed Ingress is handled.
#[derive(Debug, Clone)]
struct Managed<'a> {
    ing: &'a Ingress,
    key: ObjectRef,
    params: Option<&'a ClbClassParametersSpec>,
    source: LbSource,
}

/// Lookups built once per snapshot; `build_stack` then works on one stack at a time.
pub struct Index<'a> {
    snap: &'a Snapshot,
    /// Services and their EndpointSlices (sorted by name), by (namespace, service name).
    services: ServiceIndex<'a>,
    secrets: HashMap<(&'a str, &'a str), &'a Secret>,
    /// Ready nodes with a CVM instance id: (node name, instance id).
    nodes: Vec<(&'a str, String)>,
    stacks: BTreeMap<StackId, Vec<Managed<'a>>>,
    /// Stacks of Ingresses marked `ingress.cloud.tencent.com/mode: skip`: never written to,
    /// never deleted or pruned.
    frozen: std::collections::BTreeSet<StackId>,
    problems: Vec<Problem>,
}

impl<'a> Index<'a> {
    pub fn new(snap: &'a Snapshot) -> Self {
        let mut services = ServiceIndex::with_capacity(snap.services.len());
        for s in &snap.services {
            let (ns, name) = meta_name(&s.metadata);
            services.entry(ns, name).service = Some(s);
        }
        for s in &snap.endpoint_slices {
            let ns = s.metadata.namespace.as_deref().unwrap_or("default");
            if let Some(svc) = s
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(LABEL_SERVICE_NAME))
            {
                services.entry(ns, svc).add_slice(s);
            }
        }
        services.sort_slices();
        let mut secrets = HashMap::default();
        for s in &snap.secrets {
            secrets.insert(meta_name(&s.metadata), s);
        }
        let mut nodes: Vec<(&str, String)> = snap
            .nodes
            .iter()
            .filter(|n| node_ready(n))
            .filter_map(|n| {
                let inst = instance_id(n.spec.as_ref()?.provider_id.as_deref()?)?;
                Some((n.metadata.name.as_deref().unwrap_or(""), inst))
            })
            .collect();
        nodes.sort();
        let mut index = Index {
            snap,
            services,
            secrets,
            nodes,
            stacks: BTreeMap::new(),
            frozen: Default::default(),
            problems: Vec::new(),
        };
        index.assign_stacks();
        index
    }

    pub fn stack_ids(&self) -> impl Iterator<Item = &StackId> {
        self.stacks.keys()
    }

    /// Stacks left alone because their Ingress says `ingress.cloud.tencent.com/mode: skip`.
    pub fn frozen_ids(&self) -> impl Iterator<Item = &StackId> {
        self.frozen.iter()
    }

    pub fn is_frozen(&self, id: &StackId) -> bool {
        self.frozen.contains(id)
    }

    /// The stack an Ingress belongs to, if clb-ingress manages it.
    pub fn stack_of(&self, namespace: &str, name: &str) -> Option<&StackId> {
        self.stacks.iter().find_map(|(id, ms)| {
            ms.iter()
                .any(|m| m.key.namespace.as_deref() == Some(namespace) && m.key.name == name)
                .then_some(id)
        })
    }

    /// Look up the Services of these rules' backends in one tight loop, so that their cache
    /// misses overlap instead of being paid one by one while the paths are resolved.
    fn warm_up(&self, ns: &str, rules: &[k8s_openapi::api::networking::v1::IngressRule]) {
        let mut touched = 0usize;
        for p in rules
            .iter()
            .filter_map(|r| r.http.as_ref())
            .flat_map(|h| &h.paths)
        {
            if let Some(e) = p
                .backend
                .service
                .as_ref()
                .and_then(|s| self.services.get(ns, &s.name))
            {
                touched += e.service.map_or(0, |s| {
                    s.spec
                        .as_ref()
                        .map_or(0, |s| s.ports.as_ref().map_or(0, Vec::len))
                });
                touched += e.slices().first().map_or(0, |s| s.endpoints.len());
            }
        }
        std::hint::black_box(touched);
    }

    /// Problems found while selecting classes (not tied to one stack).
    pub fn global_problems(&self) -> &[Problem] {
        &self.problems
    }

    fn assign_stacks(&mut self) {
        let snap = self.snap;
        let ours: Vec<&IngressClass> = snap
            .ingress_classes
            .iter()
            .filter(|c| {
                c.spec.as_ref().and_then(|s| s.controller.as_deref())
                    == Some(snap.controller_name.as_str())
            })
            .collect();
        let default_class = ours
            .iter()
            .filter(|c| {
                c.metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(ANN_DEFAULT_CLASS))
                    .map(String::as_str)
                    == Some("true")
            })
            .min_by_key(|c| c.metadata.name.as_deref())
            .copied();
        let ns_labels: HashMap<&str, &BTreeMap<String, String>> = snap
            .namespaces
            .iter()
            .filter_map(|n| Some((n.metadata.name.as_deref()?, n.metadata.labels.as_ref()?)))
            .collect();
        let empty = BTreeMap::new();
        for ing in &snap.ingresses {
            let (ns, name) = meta_name(&ing.metadata);
            let spec_class = ing
                .spec
                .as_ref()
                .and_then(|s| s.ingress_class_name.as_deref());
            let class_name = spec_class.or_else(|| annotation(ing, ANN_INGRESS_CLASS));
            let class = match class_name {
                Some(cn) => ours
                    .iter()
                    .find(|c| c.metadata.name.as_deref() == Some(cn))
                    .copied(),
                None => default_class,
            };
            let Some(class) = class else { continue };
            let class_name = class.metadata.name.as_deref().unwrap_or("");
            let key = ObjectRef::namespaced("Ingress", ns, name);
            let params = match class.spec.as_ref().and_then(|s| s.parameters.as_ref()) {
                None => None,
                Some(p) => {
                    let found = (p.kind == crate::crd::CLASS_PARAMETERS_KIND)
                        .then(|| {
                            snap.class_params
                                .iter()
                                .find(|cp| cp.metadata.name.as_deref() == Some(p.name.as_str()))
                        })
                        .flatten();
                    match found {
                        Some(cp) => Some(&cp.spec),
                        None => {
                            self.problems.push(Problem {
                                object: key.clone(),
                                field: "spec.ingressClassName".into(),
                                reason: Reason::ClassParametersNotFound,
                                effect: Effect::Ignored,
                                message: format!(
                                    "IngressClass {class_name} refers to {} {:?}, which does not exist; its Ingresses are not synced until it does",
                                    p.kind, p.name
                                ),
                            });
                            continue;
                        }
                    }
                }
            };
            if let Some(sel) = params.and_then(|p| p.namespace_selector.as_ref())
                && !selector_matches(sel, ns_labels.get(ns).copied().unwrap_or(&empty))
            {
                continue;
            }
            let (stack, source) = if let Some(lb) = annotation(ing, ANN_EXIST_LB_ID) {
                (
                    StackId::Adopted(lb.to_string()),
                    LbSource::Existing { id: lb.to_string() },
                )
            } else if let Some(lb) = params.and_then(|p| p.load_balancer_id.as_ref()) {
                (
                    StackId::Adopted(lb.clone()),
                    LbSource::Existing { id: lb.clone() },
                )
            } else if params.is_some_and(|p| p.sharing == crate::crd::Sharing::Shared) {
                let id = StackId::Class(class_name.to_string());
                let lb_name = id.clb_name(&snap.cluster_id).unwrap_or_default();
                (
                    id,
                    LbSource::Create {
                        name: lb_name,
                        settings: params.map(|p| p.create.clone()).unwrap_or_default(),
                    },
                )
            } else {
                let id = StackId::ingress(ns, name);
                let lb_name = id.clb_name(&snap.cluster_id).unwrap_or_default();
                let mut settings: crate::crd::CreateSettings =
                    params.map(|p| p.create.clone()).unwrap_or_default();
                if let Some(subnet) = annotation(ing, ANN_SUBNET_ID) {
                    // TKE: an internal (private) CLB in that subnet of the class's VPC.
                    settings.network_type = crate::crd::NetworkType::Internal;
                    settings.subnet_id = Some(subnet.to_string());
                }
                (
                    id,
                    LbSource::Create {
                        name: lb_name,
                        settings,
                    },
                )
            };
            if annotation(ing, ANN_MODE) == Some("skip") {
                // TKE: nothing is changed for this Ingress, not even on deletion. Its own CLB is
                // frozen; on a shared CLB it is simply left out.
                if matches!(stack, StackId::Ingress { .. }) {
                    self.frozen.insert(stack);
                }
                continue;
            }
            self.stacks.entry(stack).or_default().push(Managed {
                ing,
                key,
                params,
                source,
            });
        }
        for members in self.stacks.values_mut() {
            members.sort_by(|a, b| {
                let ta = a.ing.metadata.creation_timestamp.as_ref().map(|t| t.0);
                let tb = b.ing.metadata.creation_timestamp.as_ref().map(|t| t.0);
                ta.cmp(&tb).then_with(|| a.key.cmp(&b.key))
            });
        }
    }

    /// Build one stack: the desired CLB (None if no Ingress could be placed) and its Problems.
    pub fn build_stack(&self, id: &StackId) -> (Option<DesiredLb>, Vec<Problem>) {
        let Some(members) = self.stacks.get(id) else {
            return (None, Vec::new());
        };
        StackBuilder::new(self, id, members).run()
    }

    fn resolve_backend(
        &self,
        ns: &str,
        backend: &IngressBackend,
        mode: TargetMode,
        weights: Weights<'_>,
        field: BackendField,
        object: &ObjectRef,
    ) -> Result<Resolved, Problem> {
        let problem = |reason, field: String, message: String| Problem {
            object: object.clone(),
            field,
            reason,
            effect: Effect::PathUnserved,
            message,
        };
        let Some(svc_ref) = backend.service.as_ref() else {
            return Err(problem(
                Reason::UnsupportedBackend,
                field.at(".resource"),
                "Resource backends are not supported by CLB; the path serves no target".into(),
            ));
        };
        if svc_ref.name.contains('/') {
            return Err(problem(
                Reason::UnsupportedBackend,
                field.at(".service.name"),
                format!(
                    "{:?}: an Ingress can only route to Services in its own namespace",
                    svc_ref.name
                ),
            ));
        }
        let entry = self.services.get(ns, &svc_ref.name);
        let Some(svc) = entry.and_then(|e| e.service) else {
            return Err(problem(
                Reason::ServiceNotFound,
                field.at(".service.name"),
                format!("Service {ns}/{} not found", svc_ref.name),
            ));
        };
        let default_spec = Default::default();
        let spec: &k8s_openapi::api::core::v1::ServiceSpec =
            svc.spec.as_ref().unwrap_or(&default_spec);
        if spec.type_.as_deref() == Some("ExternalName") {
            return Err(problem(
                Reason::UnsupportedServiceType,
                field.at(".service.name"),
                format!(
                    "Service {ns}/{} is of type ExternalName, which CLB cannot target",
                    svc_ref.name
                ),
            ));
        }
        let want = svc_ref.port.as_ref();
        let port = spec.ports.iter().flatten().find(|p| match want {
            Some(w) => match (&w.name, w.number) {
                (Some(n), _) if !n.is_empty() => p.name.as_deref() == Some(n.as_str()),
                (_, Some(num)) => p.port == num,
                _ => false,
            },
            None => false,
        });
        let port_label = match want {
            Some(w) => match (&w.name, w.number) {
                (Some(n), _) if !n.is_empty() => n.clone(),
                (_, Some(num)) => num.to_string(),
                _ => String::new(),
            },
            None => String::new(),
        };
        let Some(port) = port else {
            return Err(problem(
                Reason::ServicePortNotFound,
                field.at(".service.port"),
                format!("Service {ns}/{} has no port {port_label:?}", svc_ref.name),
            ));
        };
        if port.protocol.as_deref().is_some_and(|p| p != "TCP") {
            return Err(problem(
                Reason::UnsupportedProtocol,
                field.at(".service.port"),
                format!(
                    "port {port_label:?} of Service {ns}/{} is {}; layer-7 CLB needs TCP",
                    svc_ref.name,
                    port.protocol.as_deref().unwrap_or("")
                ),
            ));
        }
        let slices = entry.map(ServiceEntry::slices).unwrap_or_default();
        let port_name = port.name.as_deref().unwrap_or_default();
        let mut targets: Vec<Target> = Vec::new();
        match mode {
            TargetMode::Direct => {
                for slice in slices {
                    if slice.address_type != "IPv4" {
                        continue;
                    }
                    let Some(ep_port) = slice.ports.iter().flatten().find(|p| {
                        p.name.as_deref().unwrap_or_default() == port_name
                            && p.protocol.as_deref().unwrap_or("TCP") == "TCP"
                    }) else {
                        continue;
                    };
                    let Some(num) = ep_port.port.and_then(|p| u16::try_from(p).ok()) else {
                        continue;
                    };
                    targets.reserve(slice.endpoints.len());
                    for ep in slice.endpoints.iter().filter(|e| endpoint_usable(e)) {
                        let weight = weights.for_pod(
                            ep.target_ref
                                .as_ref()
                                .filter(|r| r.kind.as_deref().is_none_or(|k| k == "Pod"))
                                .and_then(|r| r.name.as_deref()),
                        );
                        for addr in &ep.addresses {
                            targets.push(Target {
                                addr: TargetAddr::Ip(addr.clone()),
                                port: num,
                                weight,
                            });
                        }
                    }
                }
            }
            TargetMode::NodePort => {
                let Some(node_port) = port.node_port.and_then(|p| u16::try_from(p).ok()) else {
                    return Err(problem(
                        Reason::NoNodePort,
                        field.at(".service.port"),
                        format!(
                            "Service {ns}/{} port {} has no nodePort (type {}); use type NodePort or LoadBalancer, or direct mode",
                            svc_ref.name,
                            port_label,
                            spec.type_.as_deref().unwrap_or("ClusterIP")
                        ),
                    ));
                };
                if spec.external_traffic_policy.as_deref() == Some("Local") {
                    // Only nodes running ready pods receive traffic, weighted by pod count.
                    let mut per_node: BTreeMap<&str, u32> = BTreeMap::new();
                    for slice in slices {
                        for ep in slice.endpoints.iter().filter(|e| endpoint_usable(e)) {
                            if let Some(n) = ep.node_name.as_deref() {
                                *per_node.entry(n).or_default() += 1;
                            }
                        }
                    }
                    for (node, inst) in &self.nodes {
                        if let Some(count) = per_node.get(node) {
                            targets.push(Target {
                                addr: TargetAddr::Instance(inst.clone()),
                                port: node_port,
                                weight: (weights.default * count).min(MAX_WEIGHT),
                            });
                        }
                    }
                } else {
                    targets.reserve(self.nodes.len());
                    for (_, inst) in &self.nodes {
                        targets.push(Target {
                            addr: TargetAddr::Instance(inst.clone()),
                            port: node_port,
                            weight: weights.default,
                        });
                    }
                }
            }
        }
        // Sorted and without duplicates, as a set of targets.
        targets.sort_unstable();
        targets.dedup();
        Ok(Resolved {
            backend: BackendRef {
                namespace: ns.to_string(),
                service: svc_ref.name.clone(),
                port: port_label,
                mode,
            },
            targets,
        })
    }

    fn certificate_from_secret(
        &self,
        ns: &str,
        name: &str,
        object: &ObjectRef,
        field: &str,
    ) -> Result<CertSource, Problem> {
        let problem = |reason, message| Problem {
            object: object.clone(),
            field: field.to_string(),
            reason,
            effect: Effect::Degraded,
            message,
        };
        let Some(secret) = self.secrets.get(&(ns, name)) else {
            return Err(problem(
                Reason::TlsSecretNotFound,
                format!("Secret {ns}/{name} not found"),
            ));
        };
        cert_from_secret(secret).map_err(|m| problem(Reason::TlsSecretInvalid, m))
    }
}

/// A certificate from a `kubernetes.io/tls` Secret (PEM) or an Opaque one with `qcloud_cert_id`.
pub fn cert_from_secret(secret: &Secret) -> Result<CertSource, String> {
    let (ns, name) = meta_name(&secret.metadata);
    let get = |k: &str| -> Option<String> {
        secret
            .data
            .as_ref()
            .and_then(|d| d.get(k))
            .map(|b| String::from_utf8_lossy(&b.0).into_owned())
            .or_else(|| secret.string_data.as_ref().and_then(|d| d.get(k)).cloned())
    };
    if let Some(id) = get(SECRET_QCLOUD_CERT_ID) {
        let id = id.trim().to_string();
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err(format!(
                "Secret {ns}/{name} key {SECRET_QCLOUD_CERT_ID} is not a certificate id"
            ));
        }
        return Ok(CertSource::Id(id));
    }
    let (Some(cert), Some(key)) = (get("tls.crt"), get("tls.key")) else {
        return Err(format!(
            "Secret {ns}/{name} has neither {SECRET_QCLOUD_CERT_ID} nor tls.crt and tls.key"
        ));
    };
    if !cert.contains("-----BEGIN CERTIFICATE-----") {
        return Err(format!(
            "Secret {ns}/{name} tls.crt is not a PEM certificate"
        ));
    }
    if !key.contains("PRIVATE KEY-----") {
        return Err(format!(
            "Secret {ns}/{name} tls.key is not a PEM private key"
        ));
    }
    let fingerprint = hex::encode(Sha256::digest(format!("{cert}\n{key}").as_bytes()));
    Ok(CertSource::Pem {
        secret: ObjectRef::namespaced("Secret", ns, name),
        fingerprint,
        cert_pem: cert,
        key_pem: key,
    })
}

fn node_ready(n: &Node) -> bool {
    if n.spec.as_ref().and_then(|s| s.unschedulable) == Some(true) {
        return false;
    }
    n.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
        .is_some_and(|c| c.status == "True")
}

/// The CVM instance id from a TKE node's `spec.providerID` (`qcloud:///<zone>/ins-xxxxxxxx`).
pub fn instance_id(provider_id: &str) -> Option<String> {
    let last = provider_id.rsplit('/').next()?;
    (last.starts_with("ins-") && last.len() > 4).then(|| last.to_string())
}

fn endpoint_usable(e: &k8s_openapi::api::discovery::v1::Endpoint) -> bool {
    match e.conditions.as_ref() {
        None => true,
        Some(c) => match c.ready {
            Some(true) | None => c.terminating != Some(true) || c.ready == Some(true),
            Some(false) => c.serving == Some(true) && c.terminating != Some(true),
        },
    }
}

/// A Service and its EndpointSlices (sorted by name).
struct ServiceEntry<'a> {
    namespace: &'a str,
    name: &'a str,
    service: Option<&'a Service>,
    /// The only slice (most Services have one), without a Vec of its own.
    one_slice: Option<&'a EndpointSlice>,
    /// All slices once there is more than one.
    more_slices: Vec<&'a EndpointSlice>,
    /// The next entry whose key has the same 64-bit hash (u32::MAX: none).
    next: u32,
}

impl<'a> ServiceEntry<'a> {
    fn add_slice(&mut self, s: &'a EndpointSlice) {
        match self.one_slice.take() {
            None if self.more_slices.is_empty() => self.one_slice = Some(s),
            None => self.more_slices.push(s),
            Some(one) => self.more_slices = vec![one, s],
        }
    }

    fn slices(&self) -> &[&'a EndpointSlice] {
        match &self.one_slice {
            Some(_) => self.one_slice.as_slice(),
            None => &self.more_slices,
        }
    }
}

/// (namespace, name) -> `ServiceEntry`. A compact table of full key hashes to entry numbers
/// (16 bytes a slot, so lookups in big clusters stay cache- and TLB-friendly) over a dense
/// entry list; keys whose 64-bit hashes collide are chained.
struct ServiceIndex<'a> {
    table: std::collections::HashMap<u64, u32, PassThrough>,
    entries: Vec<ServiceEntry<'a>>,
}

/// The keys are already FxHash values.
#[derive(Default, Clone, Copy)]
struct PassThrough;

impl std::hash::BuildHasher for PassThrough {
    type Hasher = PassThroughHasher;
    fn build_hasher(&self) -> PassThroughHasher {
        PassThroughHasher(0)
    }
}

struct PassThroughHasher(u64);

impl std::hash::Hasher for PassThroughHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | u64::from(b);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

fn service_key_hash(ns: &str, name: &str) -> u64 {
    use std::hash::BuildHasher;
    rustc_hash::FxBuildHasher.hash_one((ns, name))
}

impl<'a> ServiceIndex<'a> {
    fn with_capacity(n: usize) -> Self {
        Self {
            table: std::collections::HashMap::with_capacity_and_hasher(n, PassThrough),
            entries: Vec::with_capacity(n),
        }
    }

    fn get(&self, ns: &str, name: &str) -> Option<&ServiceEntry<'a>> {
        let mut i = *self.table.get(&service_key_hash(ns, name))?;
        loop {
            let e = &self.entries[i as usize];
            if e.namespace == ns && e.name == name {
                return Some(e);
            }
            if e.next == u32::MAX {
                return None;
            }
            i = e.next;
        }
    }

    fn entry(&mut self, ns: &'a str, name: &'a str) -> &mut ServiceEntry<'a> {
        let new = u32::try_from(self.entries.len()).expect("fewer than 2^32 Services");
        let mut at = match self.table.entry(service_key_hash(ns, name)) {
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(new);
                None
            }
            std::collections::hash_map::Entry::Occupied(o) => Some(*o.get()),
        };
        // Walk the chain of this hash; append a new entry at its end if the key is not there.
        while let Some(i) = at {
            let e = &self.entries[i as usize];
            if e.namespace == ns && e.name == name {
                return &mut self.entries[i as usize];
            }
            if e.next == u32::MAX {
                self.entries[i as usize].next = new;
                break;
            }
            at = Some(e.next);
        }
        self.entries.push(ServiceEntry {
            namespace: ns,
            name,
            service: None,
            one_slice: None,
            more_slices: Vec::new(),
            next: u32::MAX,
        });
        self.entries.last_mut().expect("just pushed")
    }

    fn sort_slices(&mut self) {
        for e in &mut self.entries {
            if e.more_slices.len() > 1 {
                e.more_slices.sort_by_key(|s| s.metadata.name.as_deref());
            }
        }
    }
}

/// Target weights of one backend (TKE's `ingress.cloud.tencent.com/lb-rs-weight`).
#[derive(Debug, Clone, Copy)]
struct Weights<'w> {
    default: u32,
    /// (StatefulSet name, weight): pods `<name>-<ordinal>` get that weight (Direct mode).
    stateful_sets: &'w [(String, u32)],
}

impl Weights<'_> {
    const DEFAULT: Weights<'static> = Weights {
        default: DEFAULT_WEIGHT,
        stateful_sets: &[],
    };

    fn for_pod(&self, pod: Option<&str>) -> u32 {
        if self.stateful_sets.is_empty() {
            return self.default;
        }
        let Some(pod) = pod else { return self.default };
        self.stateful_sets
            .iter()
            .find(|(sts, _)| {
                pod.strip_prefix(sts.as_str())
                    .and_then(|r| r.strip_prefix('-'))
                    .is_some_and(|ord| !ord.is_empty() && ord.bytes().all(|b| b.is_ascii_digit()))
            })
            .map_or(self.default, |(_, w)| *w)
    }
}

/// A parsed `lb-rs-weight` annotation.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RsWeights {
    pub default_weight: Option<u32>,
    pub groups: Vec<RsWeightGroup>,
}

/// One group of `lb-rs-weight`: the rules it applies to and the weights of its workloads.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RsWeightGroup {
    pub proto: Option<Protocol>,
    pub host: Option<String>,
    pub path: Option<String>,
    pub stateful_sets: Vec<(String, u32)>,
    /// Deployments cannot be told apart from EndpointSlices alone: refused with a Problem.
    pub deployments: Vec<String>,
}

/// Parse TKE's `ingress.cloud.tencent.com/lb-rs-weight`:
/// `{"defaultWeight": 10, "groups": [{"key": {"proto": "HTTP", "host": "a.com", "path": "/"},
///   "statefulSets": [{"name": "web", "weight": 20}]}]}`.
pub fn parse_rs_weights(v: &str) -> Result<RsWeights, String> {
    let root: serde_json::Value = serde_json::from_str(v).map_err(|e| {
        format!("{v:?} is not JSON like {{\"defaultWeight\": 10, \"groups\": [...]}}: {e}")
    })?;
    let obj = root
        .as_object()
        .ok_or_else(|| format!("{v:?} is not a JSON object"))?;
    let weight = |x: &serde_json::Value, what: &str| -> Result<u32, String> {
        x.as_u64()
            .and_then(|w| u32::try_from(w).ok())
            .filter(|w| *w <= MAX_WEIGHT)
            .ok_or_else(|| format!("{what} {x} is not a weight in 0-{MAX_WEIGHT}"))
    };
    let mut out = RsWeights::default();
    for (k, val) in obj {
        match k.as_str() {
            "defaultWeight" => out.default_weight = Some(weight(val, "defaultWeight")?),
            "groups" => {
                let groups = val
                    .as_array()
                    .ok_or_else(|| "groups is not a list".to_string())?;
                for (gi, g) in groups.iter().enumerate() {
                    let g = g
                        .as_object()
                        .ok_or_else(|| format!("groups[{gi}] is not an object"))?;
                    let mut group = RsWeightGroup::default();
                    for (gk, gv) in g {
                        match gk.as_str() {
                            "key" => {
                                let key = gv
                                    .as_object()
                                    .ok_or_else(|| format!("groups[{gi}].key is not an object"))?;
                                for (kk, kv) in key {
                                    let text = kv.as_str().ok_or_else(|| {
                                        format!("groups[{gi}].key.{kk} is not a string")
                                    })?;
                                    match kk.as_str() {
                                        "proto" => {
                                            group.proto = Some(match text {
                                                "HTTP" => Protocol::Http,
                                                "HTTPS" => Protocol::Https,
                                                other => {
                                                    return Err(format!(
                                                        "groups[{gi}].key.proto {other:?} is not HTTP or HTTPS"
                                                    ));
                                                }
                                            })
                                        }
                                        "host" => group.host = Some(text.to_string()),
                                        "path" => group.path = Some(text.to_string()),
                                        other => {
                                            return Err(format!(
                                                "groups[{gi}].key.{other} is not proto, host or path"
                                            ));
                                        }
                                    }
                                }
                            }
                            "statefulSets" | "deployments" => {
                                let list = gv
                                    .as_array()
                                    .ok_or_else(|| format!("groups[{gi}].{gk} is not a list"))?;
                                for (wi, w) in list.iter().enumerate() {
                                    let name = w
                                        .get("name")
                                        .and_then(|n| n.as_str())
                                        .filter(|n| !n.is_empty())
                                        .ok_or_else(|| {
                                            format!("groups[{gi}].{gk}[{wi}].name is missing")
                                        })?;
                                    let wt = weight(
                                        w.get("weight").unwrap_or(&serde_json::Value::Null),
                                        &format!("groups[{gi}].{gk}[{wi}].weight"),
                                    )?;
                                    if gk == "statefulSets" {
                                        group.stateful_sets.push((name.to_string(), wt));
                                    } else {
                                        group.deployments.push(name.to_string());
                                    }
                                }
                            }
                            other => {
                                return Err(format!(
                                    "groups[{gi}].{other} is not key, statefulSets or deployments"
                                ));
                            }
                        }
                    }
                    out.groups.push(group);
                }
            }
            other => return Err(format!("{other} is not defaultWeight or groups")),
        }
    }
    Ok(out)
}

#[derive(Debug, Clone)]
struct Resolved {
    backend: BackendRef,
    targets: Vec<Target>,
}

/// A backend slot of one listener: resolved targets, or nothing (the path serves no target).
type Slot = Option<Resolved>;

/// Where a backend is in its Ingress; the field path is only formatted for a Problem.
#[derive(Debug, Clone, Copy)]
enum BackendField {
    /// `spec.rules[ri].http.paths[pi].backend`
    Path { ri: usize, pi: usize },
    /// `spec.defaultBackend`
    Default,
}

impl BackendField {
    /// The backend's field path followed by `suffix`.
    fn at(self, suffix: &str) -> String {
        match self {
            BackendField::Path { ri, pi } => {
                format!("{}.backend{suffix}", path_field(ri, pi))
            }
            BackendField::Default => format!("spec.defaultBackend{suffix}"),
        }
    }
}

fn path_field(ri: usize, pi: usize) -> String {
    format!("spec.rules[{ri}].http.paths[{pi}]")
}

/// What makes two backends resolve alike within a stack: (namespace, service, port, mode).
type ResolveKey<'a> = (
    &'a str,
    &'a str,
    Option<(Option<&'a str>, Option<i32>)>,
    TargetMode,
    WeightKey,
);

/// What makes two backends weighted alike: (default weight, (member, lb-rs-weight group)).
type WeightKey = (u32, Option<(usize, usize)>);

/// TKE annotations of one Ingress, parsed.
#[derive(Debug, Default)]
struct TkeAnnotations {
    retain: bool,
    /// The redirect code when `auto-rewrite` is on.
    auto_rewrite: Option<u16>,
    weights: Option<RsWeights>,
}

struct TlsEntry<'a> {
    hosts: &'a [String],
    cert: CertSource,
}

/// One path of an Ingress, borrowed from it.
struct PathEntry<'a> {
    path: &'a str,
    kind: PathKind,
    ri: usize,
    pi: usize,
    slot: usize,
}

/// What one Ingress brings to its stack.
struct Contribution<'a> {
    /// Index of the member (Ingress) in the stack.
    mi: usize,
    listeners: Vec<(Protocol, u16)>,
    /// (host, paths)
    rules: Vec<(Option<&'a str>, Vec<PathEntry<'a>>)>,
    default_backend: Option<usize>,
    tls: Vec<TlsEntry<'a>>,
    /// `auto-rewrite`: HTTP requests for this Ingress's hosts are redirected with this code
    /// to the HTTPS listener on this port.
    redirect: Option<Redirect>,
    /// `loadbalance-retain: "true"`.
    retain: bool,
}

struct StackBuilder<'i, 'a> {
    index: &'i Index<'a>,
    id: &'i StackId,
    members: &'i [Managed<'a>],
    slots: Vec<Slot>,
    /// Backends already resolved in this stack, and their slot.
    resolved: HashMap<ResolveKey<'a>, usize>,
    problems: Vec<Problem>,
}

/// (path, kind, backend slot) of the merged view.
type ViewPath<'a> = (&'a str, PathKind, usize);

/// Listener-level merge state.
#[derive(Default)]
struct ListenerAcc<'a> {
    /// The translation of `view`, kept from the limit check.
    translated: Vec<translate::TDomainRef<'a, usize>>,
    /// The merged rules, oldest Ingress first: (host, paths).
    view: Vec<(Option<&'a str>, Vec<ViewPath<'a>>)>,
    /// (slot, member index of the Ingress that set it)
    default_backend: Option<(usize, usize)>,
    /// (host, kind, match key) -> member index of the Ingress that defined it.
    claimed: HashMap<(Option<&'a str>, PathKind, &'a str), usize>,
    members: Vec<usize>,
}

impl<'a> ListenerAcc<'a> {
    /// A copy to merge one more Ingress into; `translated` is left out, as the limit check
    /// translates every listener the Ingress touches before a trial is kept.
    fn fork(&self) -> Self {
        Self {
            translated: Vec::new(),
            view: self.view.clone(),
            default_backend: self.default_backend,
            claimed: self.claimed.clone(),
            members: self.members.clone(),
        }
    }
}

impl<'i, 'a> StackBuilder<'i, 'a> {
    fn new(index: &'i Index<'a>, id: &'i StackId, members: &'i [Managed<'a>]) -> Self {
        Self {
            index,
            id,
            members,
            slots: Vec::new(),
            resolved: HashMap::default(),
            problems: Vec::new(),
        }
    }

    fn run(mut self) -> (Option<DesiredLb>, Vec<Problem>) {
        let limits = self.index.snap.limits;
        let mut accs: BTreeMap<(u16, Protocol), ListenerAcc<'a>> = BTreeMap::new();
        let mut contributions: Vec<Contribution<'a>> = Vec::new();
        for (mi, m) in self.members.iter().enumerate() {
            let Some(c) = self.contribution(mi, m) else {
                continue;
            };
            // Tentatively merge; keep the merge only if every limit still holds.
            // Only the listeners this Ingress touches are copied for the trial.
            let mut trial: BTreeMap<(u16, Protocol), ListenerAcc<'a>> = BTreeMap::new();
            let mut local_problems = Vec::new();
            for &(proto, port) in &c.listeners {
                let mut acc = accs
                    .get(&(port, proto))
                    .map(ListenerAcc::fork)
                    .unwrap_or_default();
                merge(&mut acc, &c, self.members, &mut local_problems);
                trial.insert((port, proto), acc);
            }
            let mut all_keys: Vec<(u16, Protocol)> =
                accs.keys().chain(trial.keys()).copied().collect();
            all_keys.sort_unstable();
            all_keys.dedup();
            let port_clash = all_keys
                .iter()
                .zip(all_keys.iter().skip(1))
                .find(|(a, b)| a.0 == b.0)
                .map(|(a, _)| a.0);
            let over = if let Some(port) = port_clash {
                Some((
                    Reason::ListenerPortConflict,
                    format!("port {port} is wanted as both HTTP and HTTPS on this CLB"),
                ))
            } else if all_keys.len() > limits.listeners_per_lb {
                Some((
                    Reason::TooManyListeners,
                    format!(
                        "the CLB would need {} listeners; at most {} are allowed",
                        all_keys.len(),
                        limits.listeners_per_lb
                    ),
                ))
            } else {
                c.listeners.iter().find_map(|&(proto, port)| {
                    let acc = trial.get_mut(&(port, proto))?;
                    acc.translated = translate::translate_rules(
                        acc.view
                            .iter()
                            .map(|(h, ps)| (*h, ps.iter().map(|(p, k, b)| (*p, *k, b)))),
                        acc.default_backend.as_ref().map(|d| &d.0),
                    );
                    let n: usize = acc.translated.iter().map(|d| d.rules.len()).sum();
                    (n > limits.rules_per_listener).then(|| {
                        (
                            Reason::TooManyRules,
                            format!(
                                "listener {} {port} would need {n} CLB rules; at most {} are allowed (each Prefix path takes two)",
                                proto.as_str(),
                                limits.rules_per_listener
                            ),
                        )
                    })
                })
            };
            if let Some((reason, message)) = over {
                self.problems.push(Problem {
                    object: self.members[c.mi].key.clone(),
                    field: "spec".into(),
                    reason,
                    effect: Effect::Parked,
                    message,
                });
                continue;
            }
            self.problems.extend(local_problems);
            accs.extend(trial);
            contributions.push(c);
        }
        if accs.is_empty() {
            return (None, std::mem::take(&mut self.problems));
        }
        let first = &self.members[0];
        let cluster_id = &self.index.snap.cluster_id;
        let listener_name = self.id.listener_name(cluster_id);
        let default_cert = self.default_certificate(&contributions);
        // How many rules use each slot: the last one takes it, the others clone it.
        let mut uses = vec![0u32; self.slots.len()];
        for r in accs
            .values()
            .flat_map(|a| &a.translated)
            .flat_map(|d| &d.rules)
        {
            if let Some(i) = r.backend {
                uses[i] += 1;
            }
        }
        let mut listeners = Vec::with_capacity(accs.len());
        let mut member_ports: BTreeMap<&ObjectRef, Vec<(Protocol, u16)>> = BTreeMap::new();
        for ((port, proto), acc) in accs {
            for &mi in &acc.members {
                member_ports
                    .entry(&self.members[mi].key)
                    .or_default()
                    .push((proto, port));
            }
            let mut domains = Vec::with_capacity(acc.translated.len());
            for d in acc.translated {
                let certificate = (proto == Protocol::Https)
                    .then(|| self.cert_for(d.host, &contributions, &acc.members, &default_cert))
                    .flatten();
                let rules = d
                    .rules
                    .into_iter()
                    .map(|r| {
                        let (backend, targets) = match r.backend {
                            Some(i) => take_slot(&mut self.slots, &mut uses, i),
                            None => (None, Vec::new()),
                        };
                        DesiredRule {
                            url: r.url,
                            backend,
                            targets,
                            redirect: None,
                        }
                    })
                    .collect();
                domains.push(DesiredDomain {
                    domain: d.domain,
                    host: d.host.display().to_string(),
                    default_server: d.default_server,
                    certificate,
                    rules,
                });
            }
            listeners.push(DesiredListener {
                protocol: proto,
                port,
                name: listener_name.clone(),
                sni: proto == Protocol::Https,
                domains,
            });
        }
        if contributions.iter().any(|c| c.redirect.is_some()) {
            apply_redirects(&mut listeners, &contributions);
        }
        let retain = matches!(first.source, LbSource::Create { .. })
            && contributions.iter().any(|c| c.retain);
        let lb = DesiredLb {
            retain,
            stack: self.id.clone(),
            source: first.source.clone(),
            tags: self.id.tags(cluster_id),
            listeners,
            members: member_ports
                .into_iter()
                .map(|(ingress, ports)| Member {
                    ingress: ingress.clone(),
                    ports,
                })
                .collect(),
        };
        (Some(lb), std::mem::take(&mut self.problems))
    }

    fn park(&mut self, object: &ObjectRef, field: String, reason: Reason, message: String) {
        self.problems.push(Problem {
            object: object.clone(),
            field,
            reason,
            effect: Effect::Parked,
            message,
        });
    }

    /// Validate one Ingress and resolve its backends; None if it must be parked.
    fn contribution(&mut self, mi: usize, m: &Managed<'a>) -> Option<Contribution<'a>> {
        let ing: &'a Ingress = m.ing;
        let (ns, _) = meta_name(&ing.metadata);
        let spec: Option<&'a k8s_openapi::api::networking::v1::IngressSpec> = ing.spec.as_ref();
        self.check_unknown_annotations(m);
        let tke = self.tke_annotations(m)?;
        let direct = match annotation(ing, ANN_DIRECT_ACCESS) {
            None => None,
            Some("true") => Some(true),
            Some("false") => Some(false),
            Some(other) => {
                self.park(
                    &m.key,
                    format!("metadata.annotations[{ANN_DIRECT_ACCESS}]"),
                    Reason::InvalidAnnotation,
                    format!("{other:?} is not \"true\" or \"false\""),
                );
                return None;
            }
        };
        let mode = match direct {
            Some(true) => TargetMode::Direct,
            Some(false) => TargetMode::NodePort,
            None => m.params.map(|p| p.target_mode).unwrap_or_default(),
        };
        let http_port = m
            .params
            .and_then(|p| p.http_port)
            .unwrap_or(DEFAULT_HTTP_PORT);
        let https_port = m
            .params
            .and_then(|p| p.https_port)
            .unwrap_or(DEFAULT_HTTPS_PORT);
        let has_tls = spec
            .and_then(|s| s.tls.as_ref())
            .is_some_and(|t| !t.is_empty());
        let listeners = match annotation(ing, ANN_LISTEN_PORTS) {
            Some(v) => match parse_listen_ports(v) {
                Ok(l) => l,
                Err(e) => {
                    self.park(
                        &m.key,
                        format!("metadata.annotations[{ANN_LISTEN_PORTS}]"),
                        Reason::InvalidAnnotation,
                        e,
                    );
                    return None;
                }
            },
            None if has_tls => vec![(Protocol::Http, http_port), (Protocol::Https, https_port)],
            None => vec![(Protocol::Http, http_port)],
        };
        let mut parked = false;
        let mut group_used = vec![false; tke.weights.as_ref().map_or(0, |w| w.groups.len())];
        let spec_rules = spec.and_then(|s| s.rules.as_deref()).unwrap_or_default();
        self.index.warm_up(ns, spec_rules);
        let mut rules = Vec::with_capacity(spec_rules.len());
        for (ri, rule) in spec_rules.iter().enumerate() {
            let host = rule.host.as_deref().filter(|h| !h.is_empty());
            if let Some(h) = host
                && let Err(SyntaxProblem::Host(msg) | SyntaxProblem::Path(msg)) =
                    translate::check_host_syntax(h)
            {
                self.park(
                    &m.key,
                    format!("spec.rules[{ri}].host"),
                    Reason::InvalidHost,
                    msg,
                );
                parked = true;
                continue;
            }
            let http_paths = rule.http.as_ref().map(|h| h.paths.as_slice());
            let http_paths = http_paths.unwrap_or_default();
            let mut paths = Vec::with_capacity(http_paths.len());
            for (pi, p) in http_paths.iter().enumerate() {
                let kind = match p.path_type.as_str() {
                    "Exact" => PathKind::Exact,
                    "Prefix" | "ImplementationSpecific" => PathKind::Prefix,
                    other => {
                        self.park(
                            &m.key,
                            format!("{}.pathType", path_field(ri, pi)),
                            Reason::InvalidPathType,
                            format!("{other:?} is not Exact, Prefix or ImplementationSpecific"),
                        );
                        parked = true;
                        continue;
                    }
                };
                let path: &'a str = p.path.as_deref().unwrap_or("/");
                if let Err(SyntaxProblem::Path(msg) | SyntaxProblem::Host(msg)) =
                    translate::check_path(path, kind)
                {
                    self.park(
                        &m.key,
                        format!("{}.path", path_field(ri, pi)),
                        Reason::InvalidPath,
                        msg,
                    );
                    parked = true;
                    continue;
                }
                let (weight_key, weights) = match &tke.weights {
                    None => ((DEFAULT_WEIGHT, None), Weights::DEFAULT),
                    Some(w) => {
                        let default = w.default_weight.unwrap_or(DEFAULT_WEIGHT);
                        match w.groups.iter().position(|g| {
                            g.host.as_deref().is_none_or(|h| Some(h) == host)
                                && g.path.as_deref().is_none_or(|gp| gp == path)
                        }) {
                            Some(gi) => {
                                group_used[gi] = true;
                                (
                                    (default, Some((mi, gi))),
                                    Weights {
                                        default,
                                        stateful_sets: &w.groups[gi].stateful_sets,
                                    },
                                )
                            }
                            None => (
                                (default, None),
                                Weights {
                                    default,
                                    stateful_sets: &[],
                                },
                            ),
                        }
                    }
                };
                let slot = self.slot(
                    ns,
                    &p.backend,
                    mode,
                    (weight_key, weights),
                    BackendField::Path { ri, pi },
                    &m.key,
                )?;
                paths.push(PathEntry {
                    path,
                    kind,
                    ri,
                    pi,
                    slot,
                });
            }
            rules.push((host, paths));
        }
        if parked {
            return None;
        }
        if let Some(w) = &tke.weights {
            self.check_weight_groups(m, w, &group_used, mode, &listeners);
        }
        let default_weight = tke
            .weights
            .as_ref()
            .and_then(|w| w.default_weight)
            .unwrap_or(DEFAULT_WEIGHT);
        let default_backend = match spec.and_then(|s| s.default_backend.as_ref()) {
            Some(b) => Some(self.slot(
                ns,
                b,
                mode,
                (
                    (default_weight, None),
                    Weights {
                        default: default_weight,
                        stateful_sets: &[],
                    },
                ),
                BackendField::Default,
                &m.key,
            )?),
            None => None,
        };
        let redirect = match tke.auto_rewrite {
            None => None,
            Some(code) => {
                let https = listeners.iter().find(|l| l.0 == Protocol::Https);
                let http = listeners.iter().any(|l| l.0 == Protocol::Http);
                match https {
                    Some(&(_, https_port)) if http => Some(Redirect { https_port, code }),
                    _ => {
                        self.problems.push(Problem {
                            object: m.key.clone(),
                            field: format!("metadata.annotations[{ANN_AUTO_REWRITE}]"),
                            reason: Reason::InvalidAnnotation,
                            effect: Effect::Degraded,
                            message: "auto-rewrite needs both an HTTP and an HTTPS listener (spec.tls, or listen-ports with both); nothing is redirected".into(),
                        });
                        None
                    }
                }
            }
        };
        let mut tls = Vec::new();
        for (ti, t) in spec
            .and_then(|s| s.tls.as_deref())
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            let Some(secret) = t.secret_name.as_deref().filter(|s| !s.is_empty()) else {
                continue;
            };
            match self.index.certificate_from_secret(
                ns,
                secret,
                &m.key,
                &format!("spec.tls[{ti}].secretName"),
            ) {
                Ok(cert) => tls.push(TlsEntry {
                    hosts: t.hosts.as_deref().unwrap_or_default(),
                    cert,
                }),
                Err(p) => self.problems.push(p),
            }
        }
        Some(Contribution {
            mi,
            listeners,
            rules,
            default_backend,
            tls,
            redirect,
            retain: tke.retain,
        })
    }

    /// One Warning naming every annotation under our prefixes that clb-ingress does not know.
    fn check_unknown_annotations(&mut self, m: &Managed<'a>) {
        let Some(anns) = m.ing.metadata.annotations.as_ref() else {
            return;
        };
        let unknown = |k: &&String| {
            OWN_ANNOTATION_PREFIXES.iter().any(|p| k.starts_with(p))
                && !KNOWN_ANNOTATIONS.contains(&k.as_str())
        };
        if !anns.keys().any(|k| unknown(&k)) {
            return;
        }
        let names: Vec<&str> = anns.keys().filter(unknown).map(String::as_str).collect();
        self.problems.push(Problem {
            object: m.key.clone(),
            field: format!("metadata.annotations[{}]", names[0]),
            reason: Reason::UnknownAnnotation,
            effect: Effect::Degraded,
            message: format!(
                "{} not implemented by clb-ingress and without effect (see docs/annotations.md)",
                if names.len() == 1 {
                    format!("{} is", names[0])
                } else {
                    format!("{} are", names.join(", "))
                }
            ),
        });
    }

    /// Parse TKE's per-Ingress annotations; None if the Ingress must be parked.
    fn tke_annotations(&mut self, m: &Managed<'a>) -> Option<TkeAnnotations> {
        let ing = m.ing;
        let field = |a: &str| format!("metadata.annotations[{a}]");
        let mut out = TkeAnnotations::default();
        let mut bad: Option<(&str, String)> = None;
        let parse_bool =
            |a: &'static str, bad: &mut Option<(&str, String)>| match annotation(ing, a) {
                None | Some("false") => false,
                Some("true") => true,
                Some(other) => {
                    *bad = Some((a, format!("{other:?} is not \"true\" or \"false\"")));
                    false
                }
            };
        out.retain = parse_bool(ANN_RETAIN, &mut bad);
        let auto_rewrite = parse_bool(ANN_AUTO_REWRITE, &mut bad);
        if let Some(c) = annotation(ing, ANN_AUTO_REWRITE_CODE) {
            match c.trim().parse::<u16>() {
                Ok(code @ (301 | 302 | 307)) if auto_rewrite => out.auto_rewrite = Some(code),
                Ok(301 | 302 | 307) => self.problems.push(Problem {
                    object: m.key.clone(),
                    field: field(ANN_AUTO_REWRITE_CODE),
                    reason: Reason::InvalidAnnotation,
                    effect: Effect::Degraded,
                    message: format!("has no effect without {ANN_AUTO_REWRITE}: \"true\""),
                }),
                _ => {
                    bad = Some((
                        ANN_AUTO_REWRITE_CODE,
                        format!("{c:?} is not 301, 302 or 307"),
                    ))
                }
            }
        } else if auto_rewrite {
            out.auto_rewrite = Some(DEFAULT_REWRITE_CODE);
        }
        if let Some(v) = annotation(ing, ANN_RS_WEIGHT) {
            match parse_rs_weights(v) {
                Ok(w) => out.weights = Some(w),
                Err(e) => bad = Some((ANN_RS_WEIGHT, e)),
            }
        }
        if let Some(v) = annotation(ing, ANN_MODE)
            && v != "skip"
        {
            self.problems.push(Problem {
                object: m.key.clone(),
                field: field(ANN_MODE),
                reason: Reason::InvalidAnnotation,
                effect: Effect::Degraded,
                message: format!("{v:?} is not a mode clb-ingress knows (only \"skip\"); the Ingress is synced normally"),
            });
        }
        if let Some(subnet) = annotation(ing, ANN_SUBNET_ID) {
            let well_formed = subnet
                .strip_prefix("subnet-")
                .is_some_and(|r| !r.is_empty() && r.bytes().all(|b| b.is_ascii_alphanumeric()));
            let own_clb = matches!(self.id, StackId::Ingress { .. });
            if !well_formed {
                bad = Some((
                    ANN_SUBNET_ID,
                    format!("{subnet:?} is not a subnet id (subnet-xxxxxxxx)"),
                ));
            } else if let LbSource::Existing { id } = &m.source {
                self.problems.push(Problem {
                    object: m.key.clone(),
                    field: field(ANN_SUBNET_ID),
                    reason: Reason::UnsupportedAnnotation,
                    effect: Effect::Degraded,
                    message: format!("ignored: the Ingress uses the existing CLB {id}, whose network cannot change"),
                });
            } else if !own_clb {
                self.problems.push(Problem {
                    object: m.key.clone(),
                    field: field(ANN_SUBNET_ID),
                    reason: Reason::UnsupportedAnnotation,
                    effect: Effect::Degraded,
                    message: "ignored: the class shares one CLB; set create.networkType INTERNAL and create.subnetId in its ClbClassParameters".into(),
                });
            } else if m.params.and_then(|p| p.create.vpc_id.as_ref()).is_none() {
                bad = Some((
                    ANN_SUBNET_ID,
                    "an internal CLB needs a VPC: set create.vpcId in the class's ClbClassParameters".into(),
                ));
            }
        }
        if let Some((a, msg)) = bad {
            self.park(&m.key, field(a), Reason::InvalidAnnotation, msg);
            return None;
        }
        Some(out)
    }

    /// Warnings for the parts of `lb-rs-weight` that cannot be applied.
    fn check_weight_groups(
        &mut self,
        m: &Managed<'a>,
        w: &RsWeights,
        used: &[bool],
        mode: TargetMode,
        listeners: &[(Protocol, u16)],
    ) {
        let field = format!("metadata.annotations[{ANN_RS_WEIGHT}]");
        let warn = |problems: &mut Vec<Problem>, message: String| {
            problems.push(Problem {
                object: m.key.clone(),
                field: field.clone(),
                reason: Reason::UnsupportedAnnotation,
                effect: Effect::Degraded,
                message,
            })
        };
        let both = listeners.iter().any(|l| l.0 == Protocol::Http)
            && listeners.iter().any(|l| l.0 == Protocol::Https);
        for (gi, g) in w.groups.iter().enumerate() {
            if !used[gi] {
                warn(
                    &mut self.problems,
                    format!(
                        "groups[{gi}] matches no host and path of this Ingress; it has no effect"
                    ),
                );
            }
            if !g.deployments.is_empty() {
                warn(
                    &mut self.problems,
                    format!(
                        "groups[{gi}].deployments cannot be applied (a Deployment's pods cannot be told from EndpointSlices); those pods get the default weight; use statefulSets or a separate Service"
                    ),
                );
            }
            if !g.stateful_sets.is_empty() && mode == TargetMode::NodePort {
                warn(
                    &mut self.problems,
                    format!(
                        "groups[{gi}].statefulSets need direct access (pod targets); in NodePort mode nodes get the default weight"
                    ),
                );
            }
            if g.proto.is_some() && both {
                warn(
                    &mut self.problems,
                    format!(
                        "groups[{gi}].key.proto cannot select one listener: the weights apply to the path on both HTTP and HTTPS"
                    ),
                );
            }
        }
    }

    /// Resolve a backend into a slot; None only if the Ingress must be parked. A backend
    /// already resolved in this stack shares its slot.
    fn slot(
        &mut self,
        ns: &'a str,
        b: &'a IngressBackend,
        mode: TargetMode,
        (weight_key, weights): (WeightKey, Weights<'_>),
        field: BackendField,
        object: &ObjectRef,
    ) -> Option<usize> {
        let key: Option<ResolveKey<'a>> = b.service.as_ref().map(|s| {
            (
                ns,
                s.name.as_str(),
                s.port.as_ref().map(|p| (p.name.as_deref(), p.number)),
                mode,
                weight_key,
            )
        });
        if let Some(&i) = key.as_ref().and_then(|k| self.resolved.get(k)) {
            return Some(i);
        }
        let limit = self.index.snap.limits.targets_per_rule;
        let slot = match self
            .index
            .resolve_backend(ns, b, mode, weights, field, object)
        {
            Ok(r) if r.targets.len() > limit => {
                self.park(
                    object,
                    field.at(""),
                    Reason::TooManyTargets,
                    format!(
                        "{} has {} targets; a CLB rule takes at most {limit}",
                        r.backend,
                        r.targets.len()
                    ),
                );
                return None;
            }
            Ok(r) => Some(r),
            Err(p) => {
                self.problems.push(p);
                None
            }
        };
        let ok = slot.is_some();
        self.slots.push(slot);
        let i = self.slots.len() - 1;
        if ok && let Some(k) = key {
            self.resolved.insert(k, i);
        }
        Some(i)
    }

    fn default_certificate(&mut self, contributions: &[Contribution]) -> Option<CertSource> {
        let params = self.members.first().and_then(|m| m.params);
        if let Some(d) = params.and_then(|p| p.default_certificate.as_ref()) {
            if let Some(id) = &d.cert_id {
                return Some(CertSource::Id(id.clone()));
            }
            if let Some((ns, name)) = d.secret.as_deref().and_then(|s| s.split_once('/')) {
                let obj = ObjectRef::cluster("IngressClass", "defaultCertificate");
                match self.index.certificate_from_secret(
                    ns,
                    name,
                    &obj,
                    "spec.defaultCertificate.secret",
                ) {
                    Ok(c) => return Some(c),
                    Err(p) => self.problems.push(p),
                }
            }
        }
        contributions
            .iter()
            .flat_map(|c| &c.tls)
            .map(|t| t.cert.clone())
            .next()
    }

    /// Certificate for a domain: exact tls host, then wildcard tls host, then a host-less tls
    /// entry, oldest Ingress on the listener first; else the stack's default certificate.
    fn cert_for(
        &self,
        host: translate::HostRef,
        contributions: &[Contribution],
        acc_members: &[usize],
        default: &Option<CertSource>,
    ) -> Option<CertSource> {
        if host == translate::HostRef::CatchAll {
            return default.clone();
        }
        let on_listener: Vec<&Contribution> = contributions
            .iter()
            .filter(|c| {
                let key = &self.members[c.mi].key;
                acc_members.iter().any(|&mi| self.members[mi].key == *key)
            })
            .collect();
        let name = host.display();
        let entries = || on_listener.iter().flat_map(|c| &c.tls);
        let exact = || entries().find(|t| t.hosts.iter().any(|h| h == name));
        let wildcard = || {
            entries().find(|t| {
                t.hosts.iter().any(|h| {
                    h.strip_prefix("*.").is_some_and(|suffix| {
                        name.split_once('.')
                            .is_some_and(|(l, rest)| l != "*" && rest == suffix)
                    })
                })
            })
        };
        let hostless = || entries().find(|t| t.hosts.is_empty());
        exact()
            .or_else(wildcard)
            .or_else(hostless)
            .map(|t| t.cert.clone())
            .or_else(|| default.clone())
    }
}

/// `auto-rewrite`: the HTTP rules of the hosts of Ingresses asking for it redirect to the rule
/// with the same domain and URL on the HTTPS listener (only where that rule exists).
fn apply_redirects(listeners: &mut [DesiredListener], contributions: &[Contribution]) {
    let wanted: Vec<(&str, Redirect)> = contributions
        .iter()
        .filter_map(|c| Some((c, c.redirect?)))
        .flat_map(|(c, r)| c.rules.iter().filter_map(move |(h, _)| Some(((*h)?, r))))
        .collect();
    let https: std::collections::HashSet<(u16, String, String)> = listeners
        .iter()
        .filter(|l| l.protocol == Protocol::Https)
        .flat_map(|l| {
            l.domains.iter().flat_map(move |d| {
                d.rules
                    .iter()
                    .map(move |r| (l.port, d.domain.clone(), r.url.clone()))
            })
        })
        .collect();
    for l in listeners
        .iter_mut()
        .filter(|l| l.protocol == Protocol::Http)
    {
        for d in &mut l.domains {
            let Some(&(_, redirect)) = wanted.iter().find(|(h, _)| *h == d.host) else {
                continue;
            };
            for r in &mut d.rules {
                if https.contains(&(redirect.https_port, d.domain.clone(), r.url.clone())) {
                    r.redirect = Some(redirect);
                    r.backend = None;
                    r.targets.clear();
                }
            }
        }
    }
}

/// The backend and targets of a rule using slot `i`: the last user takes the slot, earlier
/// ones get a copy.
fn take_slot(slots: &mut [Slot], uses: &mut [u32], i: usize) -> (Option<BackendRef>, Vec<Target>) {
    uses[i] -= 1;
    let slot = if uses[i] == 0 {
        slots[i].take()
    } else {
        slots[i].clone()
    };
    match slot {
        Some(s) => (Some(s.backend), s.targets),
        None => (None, Vec::new()),
    }
}

fn merge<'a>(
    acc: &mut ListenerAcc<'a>,
    c: &Contribution<'a>,
    members: &[Managed<'a>],
    problems: &mut Vec<Problem>,
) {
    acc.members.push(c.mi);
    let member = &members[c.mi].key;
    if members.len() == 1 {
        // The only Ingress of its stack: nothing can conflict, no claims to remember.
        acc.view.extend(c.rules.iter().map(|(host, paths)| {
            (
                *host,
                paths.iter().map(|p| (p.path, p.kind, p.slot)).collect(),
            )
        }));
        if acc.default_backend.is_none() {
            acc.default_backend = c.default_backend.map(|d| (d, c.mi));
        }
        return;
    }
    for (host, paths) in &c.rules {
        let mut kept = Vec::with_capacity(paths.len());
        for p in paths {
            let key = match p.kind {
                PathKind::Exact => p.path,
                PathKind::Prefix => translate::prefix_key(p.path),
            };
            match acc.claimed.entry((*host, p.kind, key)) {
                std::collections::hash_map::Entry::Occupied(o)
                    if members[*o.get()].key != *member =>
                {
                    let owner = &members[*o.get()].key;
                    problems.push(Problem {
                        object: member.clone(),
                        field: format!("{}.path", path_field(p.ri, p.pi)),
                        reason: Reason::RuleConflict,
                        effect: Effect::Overridden,
                        message: format!(
                            "host {} path {:?} ({:?}) is already defined by the older {owner}, which keeps serving it",
                            HostKey::from_host(*host).display(),
                            p.path,
                            p.kind
                        ),
                    });
                    continue;
                }
                std::collections::hash_map::Entry::Occupied(_) => {}
                std::collections::hash_map::Entry::Vacant(v) => {
                    v.insert(c.mi);
                }
            }
            kept.push((p.path, p.kind, p.slot));
        }
        acc.view.push((*host, kept));
    }
    if let Some(d) = c.default_backend {
        match &acc.default_backend {
            Some((_, owner)) if members[*owner].key != *member => {
                let owner = &members[*owner].key;
                problems.push(Problem {
                    object: member.clone(),
                    field: "spec.defaultBackend".into(),
                    reason: Reason::DefaultBackendConflict,
                    effect: Effect::Overridden,
                    message: format!(
                        "the older {owner} already sets the default backend of this CLB, which keeps serving"
                    ),
                })
            }
            Some(_) => {}
            None => acc.default_backend = Some((d, c.mi)),
        }
    }
}

/// Parse TKE's `ingress.cloud.tencent.com/listen-ports`: `[{"HTTP": 80}, {"HTTPS": 443}]`.
pub fn parse_listen_ports(v: &str) -> Result<Vec<(Protocol, u16)>, String> {
    let parsed: Vec<BTreeMap<String, serde_json::Value>> =
        serde_json::from_str(v).map_err(|e| {
            format!("{v:?} is not a JSON list like [{{\"HTTP\": 80}}, {{\"HTTPS\": 443}}]: {e}")
        })?;
    let mut out = Vec::new();
    for entry in parsed {
        for (proto, port) in entry {
            let proto = match proto.as_str() {
                "HTTP" => Protocol::Http,
                "HTTPS" => Protocol::Https,
                other => return Err(format!("protocol {other:?} is not HTTP or HTTPS")),
            };
            let port = port
                .as_u64()
                .and_then(|p| u16::try_from(p).ok())
                .filter(|p| *p > 0)
                .ok_or_else(|| format!("port {port} is not in 1-65535"))?;
            if !out.contains(&(proto, port)) {
                out.push((proto, port));
            }
        }
    }
    if out.is_empty() {
        return Err("no listener given".into());
    }
    Ok(out)
}
