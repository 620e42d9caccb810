//! The `ClbClassParameters` custom resource: per-IngressClass settings (which CLB, how to create
//! it, listeners, target mode, sharing), referenced from an IngressClass's `spec.parameters`.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub use crate::backend_config::{
    BACKEND_CONFIG_KIND, ClbBackendConfig, ClbBackendConfigSpec, TkeServiceConfig,
    TkeServiceConfigSpec,
};

/// API group of the project's custom resources.
pub const API_GROUP: &str = "clb-ingress.io";
/// Kind of the class-parameters object as referenced from `IngressClass.spec.parameters.kind`.
pub const CLASS_PARAMETERS_KIND: &str = "ClbClassParameters";

/// Settings shared by every Ingress of an IngressClass handled by clb-ingress.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "clb-ingress.io",
    version = "v1alpha1",
    kind = "ClbClassParameters",
    plural = "clbclassparameters",
    shortname = "clbparams",
    doc = "Per-IngressClass settings of clb-ingress (which CLB, how to create it, listeners, \
           target mode, sharing); referenced from an IngressClass's `spec.parameters`.",
    printcolumn = r#"{"name":"LB","type":"string","jsonPath":".spec.loadBalancerId"}"#,
    printcolumn = r#"{"name":"Mode","type":"string","jsonPath":".spec.targetMode"}"#,
    printcolumn = r#"{"name":"Sharing","type":"string","jsonPath":".spec.sharing"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ClbClassParametersSpec {
    /// Adopt this existing CLB (`lb-xxxxxxxx`) instead of creating one. Only listeners that
    /// clb-ingress creates on it are ever changed or deleted; the CLB itself is never deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^lb-[a-z0-9]{8}$"))]
    pub load_balancer_id: Option<String>,
    /// Settings used only when clb-ingress creates a CLB (ignored for an adopted CLB).
    #[serde(default)]
    pub create: CreateSettings,
    /// How targets are bound: `NodePort` (CVM instance + nodePort) or `Direct` (pod IP + port).
    #[serde(default)]
    pub target_mode: TargetMode,
    /// Direct mode, graceful drain: a pod whose endpoint turns terminating or not ready keeps
    /// its target with weight 0 (no new requests; requests in flight finish) and is
    /// deregistered only once it has left the EndpointSlice and this many seconds have passed
    /// since it was set to weight 0, whichever is later. Absent: targets are deregistered as
    /// soon as their endpoint stops being usable. Pair it with a `preStop` delay and
    /// `terminationGracePeriodSeconds` (docs/zero-downtime.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 3600), extend("format" = "int32"))]
    pub drain_delay_seconds: Option<u32>,
    /// `PerIngress` (default, like TKE): each Ingress gets its own CLB. `Shared`: all Ingresses
    /// of the class are merged onto one CLB.
    #[serde(default)]
    pub sharing: Sharing,
    /// Port of the HTTP listener (default 80).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535), extend("format" = "int32"))]
    pub http_port: Option<u16>,
    /// Port of the HTTPS listener (default 443), created when an Ingress has `spec.tls`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535), extend("format" = "int32"))]
    pub https_port: Option<u16>,
    /// Certificate served for hosts without their own `spec.tls` entry (and for unknown SNI).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_certificate: Option<CertificateRef>,
    /// Only Ingresses in namespaces matching this selector are handled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,
    /// Which existing CLBs Ingresses of this class may adopt with the
    /// `kubernetes.io/ingress.existLbId` annotation, and from which namespaces. Absent: the
    /// annotation is refused (adoption is opt-in).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adoption: Option<AdoptionPolicy>,
    /// Who may do what on a CLB several Ingresses share (`sharing: Shared`, `loadBalancerId`,
    /// or an adopted CLB). A host belongs to the namespace of the oldest Ingress that claims it.
    #[serde(default)]
    pub tenancy: TenancyPolicy,
    /// If set, the only Tencent Cloud certificate ids that `qcloud_cert_id` Secrets and
    /// `defaultCertificate.certId` of this class may name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_certificate_ids: Option<Vec<String>>,
    /// The domain name of the catch-all domain clb-ingress puts on every listener as its
    /// DefaultServer (requests whose Host no rule names land there and get 404, or the
    /// `defaultBackend`). Default `unmatched.clb-ingress.invalid` (`.invalid` is reserved by
    /// RFC 2606, so no client sends it). A lower-case DNS name that no Ingress of the class may
    /// use as a host. On an adopted or shared CLB, the oldest Ingress's class decides.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catch_all_domain: Option<String>,
    /// How wildcard hosts (`*.example.com`) become CLB domains. `Regex` (default): the regex
    /// domain `~^[^.]+\.example\.com$`, which matches exactly one more label, as the Ingress
    /// spec says. `Native`: CLB's own wildcard domain `*.example.com`, for accounts where
    /// regex domains fail (`clb-ingress preflight`, check `regex-domain`); it also matches
    /// deeper names (`a.b.example.com`), which the Ingress spec would not route.
    #[serde(default, skip_serializing_if = "is_default")]
    pub wildcard_hosts: WildcardHosts,
    /// Where a request whose Host matches no rule goes. `NotFound` (default): the Ingress
    /// spec's answer, 404 unless a host-less rule or `defaultBackend` catches it.
    /// `ListenerDefaultDomain`: TKE's answer, the listener's default domain (the first host of
    /// the oldest Ingress on the listener).
    #[serde(default)]
    pub unmatched_hosts: UnmatchedHosts,
    /// `sharing: Shared` only: the most CLBs the class's hosts may be spread over when one
    /// CLB's quotas (rules per listener) cannot hold them all (default 10; 1 keeps the class on
    /// one CLB). Past it, the newest Ingresses that do not fit are parked with a Warning.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000), extend("format" = "int32"))]
    pub max_load_balancers: Option<u32>,
}

/// CLBs a shared class may spread over when `maxLoadBalancers` is not set.
pub const DEFAULT_MAX_LOAD_BALANCERS: u32 = 10;

fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

/// See [`ClbClassParametersSpec::wildcard_hosts`].
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum WildcardHosts {
    #[default]
    Regex,
    Native,
}

/// See `ClbClassParametersSpec::unmatched_hosts`.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum UnmatchedHosts {
    #[default]
    NotFound,
    ListenerDefaultDomain,
}

/// Existing CLBs that may be adopted by annotation, and by whom.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AdoptionPolicy {
    /// CLB ids (`lb-xxxxxxxx`) that may be adopted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(inner(regex(pattern = r"^lb-[a-z0-9]{8}$")))]
    pub load_balancer_ids: Vec<String>,
    /// CLBs carrying all these tags (key: value) may be adopted; checked on the CLB itself
    /// before anything is written to it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tag_selector: BTreeMap<String, String>,
    /// Namespaces whose Ingresses may adopt (in addition to `namespaceSelector`). `*` allows
    /// every namespace.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
    /// Namespaces (by label) whose Ingresses may adopt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,
}

/// Permissions on a shared CLB.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TenancyPolicy {
    /// Namespaces whose Ingresses may add paths to a host owned by another namespace (the
    /// owner's certificate, redirects and other host settings still apply). Default: none.
    #[serde(default)]
    pub host_sharing: NamespaceScope,
    /// Namespaces whose Ingresses may publish host-less rules and `defaultBackend` (which
    /// answer requests for every host no rule names). Default: none on a shared CLB.
    #[serde(default)]
    pub catch_all: NamespaceScope,
}

/// A set of namespaces: listed by name (`*` = all) and/or selected by label.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NamespaceScope {
    /// Namespaces by name; `*` means every namespace.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
    /// Namespaces by label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,
}

/// Creation-only settings of a CLB.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "self.networkType != 'INTERNAL' || (has(self.vpcId) && has(self.subnetId))",
    "message": "an INTERNAL CLB needs vpcId and subnetId"
}]))]
pub struct CreateSettings {
    /// `OPEN` (public, default) or `INTERNAL` (private; needs `vpcId` and `subnetId`).
    #[serde(default)]
    pub network_type: NetworkType,
    /// VPC of the CLB (`vpc-xxxxxxxx`); required for `INTERNAL`, optional for `OPEN`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^vpc-[a-z0-9]{8}$"))]
    pub vpc_id: Option<String>,
    /// Subnet of an `INTERNAL` CLB's VIP (`subnet-xxxxxxxx`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^subnet-[a-z0-9]{8}$"))]
    pub subnet_id: Option<String>,
    /// Tencent Cloud project of the CLB (0 or absent: the default project).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub project_id: Option<i64>,
    /// Maximum outbound bandwidth in Mbps (public CLBs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 10240))]
    pub bandwidth_mbps: Option<i64>,
    /// Extra tags put on the CLB at creation (at most 17: three are clb-ingress's own).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 17))]
    pub tags: BTreeMap<String, String>,
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum NetworkType {
    #[default]
    #[serde(rename = "OPEN")]
    Open,
    #[serde(rename = "INTERNAL")]
    Internal,
}

#[derive(
    Deserialize,
    Serialize,
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    JsonSchema,
)]
pub enum TargetMode {
    #[default]
    NodePort,
    Direct,
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum Sharing {
    #[default]
    PerIngress,
    Shared,
}

/// A certificate: an uploaded Tencent Cloud certificate id, or a Secret (kubernetes.io/tls PEM,
/// or Opaque with `qcloud_cert_id`). Exactly one of the two is set.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "has(self.certId) != has(self.secret)",
    "message": "set exactly one of certId or secret"
}]))]
pub struct CertificateRef {
    /// Id of a certificate already uploaded to Tencent Cloud SSL Certificates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub cert_id: Option<String>,
    /// `namespace/name` of a Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(
        pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?/[a-z0-9]([-.a-z0-9]*[a-z0-9])?$"
    ))]
    pub secret: Option<String>,
}
