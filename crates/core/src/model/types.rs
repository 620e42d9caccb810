//! Plain data the model produces: the desired state of each CLB stack, and Problems.

use crate::crd::{CreateSettings, TargetMode};
use serde::Serialize;
use std::fmt;

pub use super::ids::StackId;

/// `namespace/name` of a namespaced object, or `name` of a cluster-scoped one.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct ObjectRef {
    pub kind: &'static str,
    pub namespace: Option<String>,
    pub name: String,
}

impl ObjectRef {
    pub fn namespaced(kind: &'static str, namespace: &str, name: &str) -> Self {
        Self {
            kind,
            namespace: Some(namespace.to_string()),
            name: name.to_string(),
        }
    }
    pub fn cluster(kind: &'static str, name: &str) -> Self {
        Self {
            kind,
            namespace: None,
            name: name.to_string(),
        }
    }
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{} {ns}/{}", self.kind, self.name),
            None => write!(f, "{} {}", self.kind, self.name),
        }
    }
}

/// What a Problem does to the object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum Effect {
    /// The whole Ingress is left out of its CLB (it cannot be expressed correctly).
    Parked,
    /// One path keeps its CLB rule but serves no target (503), so it never routes elsewhere.
    PathUnserved,
    /// The rules of one host of the Ingress are left out (its requests get the catch-all's
    /// answer); the Ingress's other hosts serve.
    HostParked,
    /// The newer of two conflicting definitions is ignored; the older one serves.
    Overridden,
    /// Served, with a fallback (for example a default certificate); worth a Warning.
    Degraded,
    /// The object is not handled at all (for example a misconfigured IngressClass).
    Ignored,
}

/// Bounded reasons: used as Kubernetes Event reasons and metric labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Reason {
    InvalidHost,
    InvalidPath,
    InvalidPathType,
    InvalidAnnotation,
    ServiceNotFound,
    ServicePortNotFound,
    UnsupportedServiceType,
    UnsupportedProtocol,
    UnsupportedBackend,
    NoNodePort,
    RuleConflict,
    DefaultBackendConflict,
    TooManyRules,
    TooManyListeners,
    TooManyTargets,
    TlsSecretNotFound,
    TlsSecretInvalid,
    ClassParametersNotFound,
    ListenerPortConflict,
    /// An annotation under `ingress.cloud.tencent.com/` or `clb-ingress.io/` that clb-ingress
    /// does not know, or a part of a known one it does not implement.
    UnknownAnnotation,
    UnsupportedAnnotation,
    /// `existLbId` names a CLB the Ingress's class does not let its namespace adopt.
    AdoptionNotAllowed,
    /// A host on a shared CLB belongs to another namespace (the oldest Ingress claiming it).
    HostOwnedByOtherNamespace,
    /// A host-less rule or `defaultBackend` on a shared CLB from a namespace the class does
    /// not allow to catch every host.
    CatchAllNotAllowed,
    /// A certificate id not in the class's `allowedCertificateIds`.
    CertificateNotAllowed,
    /// A class parameter that cannot be used (for example a malformed `loadBalancerId`).
    InvalidClassParameters,
    /// A `ClbBackendConfig` or `TkeServiceConfig` that is missing or has a value CLB refuses.
    InvalidBackendConfig,
    /// Gateway API: a match, filter or field CLB cannot express (the rule is dropped).
    UnsupportedValue,
    /// Gateway API: no listener of the parent Gateway allows this route.
    NotAllowedByListeners,
    /// Gateway API: no route hostname intersects the listeners' hostnames.
    NoMatchingListenerHostname,
    /// Gateway API: the parentRef names no listener of the Gateway (or the Gateway is not valid).
    NoMatchingParent,
    /// Gateway API: a cross-namespace reference without a ReferenceGrant.
    RefNotPermitted,
    /// Gateway API: a reference to a kind clb-ingress does not support.
    InvalidKind,
    /// Gateway API: a listener that cannot be served (protocol, port, conflict, certificate).
    InvalidListener,
    /// Gateway API: a Gateway that cannot be served at all.
    InvalidGateway,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::InvalidHost => "InvalidHost",
            Reason::InvalidPath => "InvalidPath",
            Reason::InvalidPathType => "InvalidPathType",
            Reason::InvalidAnnotation => "InvalidAnnotation",
            Reason::ServiceNotFound => "ServiceNotFound",
            Reason::ServicePortNotFound => "ServicePortNotFound",
            Reason::UnsupportedServiceType => "UnsupportedServiceType",
            Reason::UnsupportedProtocol => "UnsupportedProtocol",
            Reason::UnsupportedBackend => "UnsupportedBackend",
            Reason::NoNodePort => "NoNodePort",
            Reason::RuleConflict => "RuleConflict",
            Reason::DefaultBackendConflict => "DefaultBackendConflict",
            Reason::TooManyRules => "TooManyRules",
            Reason::TooManyListeners => "TooManyListeners",
            Reason::TooManyTargets => "TooManyTargets",
            Reason::TlsSecretNotFound => "TlsSecretNotFound",
            Reason::TlsSecretInvalid => "TlsSecretInvalid",
            Reason::ClassParametersNotFound => "ClassParametersNotFound",
            Reason::ListenerPortConflict => "ListenerPortConflict",
            Reason::UnknownAnnotation => "UnknownAnnotation",
            Reason::UnsupportedAnnotation => "UnsupportedAnnotation",
            Reason::AdoptionNotAllowed => "AdoptionNotAllowed",
            Reason::HostOwnedByOtherNamespace => "HostOwnedByOtherNamespace",
            Reason::CatchAllNotAllowed => "CatchAllNotAllowed",
            Reason::CertificateNotAllowed => "CertificateNotAllowed",
            Reason::InvalidClassParameters => "InvalidClassParameters",
            Reason::InvalidBackendConfig => "InvalidBackendConfig",
            Reason::UnsupportedValue => "UnsupportedValue",
            Reason::NotAllowedByListeners => "NotAllowedByListeners",
            Reason::NoMatchingListenerHostname => "NoMatchingListenerHostname",
            Reason::NoMatchingParent => "NoMatchingParent",
            Reason::RefNotPermitted => "RefNotPermitted",
            Reason::InvalidKind => "InvalidKind",
            Reason::InvalidListener => "InvalidListener",
            Reason::InvalidGateway => "InvalidGateway",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Something in the input that cannot be applied as written.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Problem {
    pub object: ObjectRef,
    /// JSON path of the offending field, e.g. `spec.rules[0].http.paths[1].backend.service.port`.
    pub field: String,
    pub reason: Reason,
    pub effect: Effect,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {}: {} ({:?}): {}",
            self.object, self.field, self.reason, self.effect, self.message
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Protocol {
    #[serde(rename = "HTTP")]
    Http,
    #[serde(rename = "HTTPS")]
    Https,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Http => "HTTP",
            Protocol::Https => "HTTPS",
        }
    }
}

/// Which CLB a stack lives on.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum LbSource {
    /// Adopt an existing CLB: never delete it, only touch listeners we created. When
    /// `required_tags` is not empty the CLB is adopted only if it carries all these tags (the
    /// class allowed it by tag selector, not by id); deploy checks them before any write.
    Existing {
        id: String,
        #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
        required_tags: std::collections::BTreeMap<String, String>,
    },
    /// Create (and own) a CLB with these settings.
    Create {
        name: String,
        settings: CreateSettings,
    },
}

/// A backend target: a CVM instance (NodePort mode) or an IP (direct mode).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum TargetAddr {
    Instance(String),
    Ip(String),
}

impl fmt::Display for TargetAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TargetAddr::Instance(i) | TargetAddr::Ip(i) => f.write_str(i),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Target {
    pub addr: TargetAddr,
    pub port: u16,
    pub weight: u32,
}

/// PEM private key material from a TLS Secret. It never prints (`Debug` says `<redacted>`) and
/// never serializes; [`PrivateKeyPem::expose`] is the one way to read it (for the upload).
/// The controller drops a key from memory once its certificate is in the account
/// ([`PrivateKeyPem::dropped`]); an upload that needs it again reads the Secret again.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct PrivateKeyPem(Option<String>);

impl PrivateKeyPem {
    pub fn new(pem: String) -> Self {
        Self(Some(pem))
    }
    /// A key that was dropped after its certificate was uploaded.
    pub fn dropped() -> Self {
        Self(None)
    }
    /// The PEM text, for the upload call only (`None`: dropped after upload).
    pub fn expose(&self) -> Option<&str> {
        self.0.as_deref()
    }
}

impl fmt::Debug for PrivateKeyPem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(_) => f.write_str("PrivateKeyPem(<redacted>)"),
            None => f.write_str("PrivateKeyPem(<dropped after upload>)"),
        }
    }
}

/// A certificate as the desired state knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum CertSource {
    /// An existing Tencent Cloud certificate (TKE `qcloud_cert_id` Secret or class setting).
    Id(String),
    /// PEM from a `kubernetes.io/tls` Secret, uploaded once under a name derived from its hash.
    Pem {
        secret: ObjectRef,
        fingerprint: String,
        #[serde(skip)]
        cert_pem: String,
        #[serde(skip)]
        key_pem: PrivateKeyPem,
    },
}

impl CertSource {
    /// A short stable description (never the key).
    pub fn describe(&self) -> String {
        match self {
            CertSource::Id(id) => format!("cert {id}"),
            CertSource::Pem {
                secret,
                fingerprint,
                ..
            } => format!(
                "secret {}/{} (sha256 {})",
                secret.namespace.as_deref().unwrap_or(""),
                secret.name,
                &fingerprint[..12.min(fingerprint.len())]
            ),
        }
    }
}

/// What a rule routes to, for people (the targets are what CLB gets).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct BackendRef {
    pub namespace: String,
    pub service: String,
    pub port: String,
    pub mode: TargetMode,
}

impl fmt::Display for BackendRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}:{}", self.namespace, self.service, self.port)
    }
}

/// An HTTP rule that answers with a redirect to the rule with the same domain and URL on an
/// HTTPS listener (TKE's `ingress.cloud.tencent.com/auto-rewrite`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Redirect {
    /// Port of the HTTPS listener of this stack.
    pub https_port: u16,
    /// 301, 302 or 307.
    pub code: u16,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DesiredRule {
    pub url: String,
    /// None: the rule exists only so the request cannot fall through; it has no targets.
    pub backend: Option<BackendRef>,
    pub targets: Vec<Target>,
    /// Set: the rule redirects to HTTPS instead of forwarding (it then has no targets).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redirect: Option<Redirect>,
    /// Backend settings (health check, scheduler, session, protocol); empty: CLB's own.
    #[serde(default, skip_serializing_if = "RuleSettings::is_empty")]
    pub settings: RuleSettings,
}

/// Backend settings of one CLB rule, as `CreateRule`/`ModifyRule` take them. A field that is
/// `None` is not managed: clb-ingress neither sets nor compares it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize)]
pub struct RuleSettings {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheckSettings>,
    /// `WRR`, `LEAST_CONN` or `IP_HASH`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scheduler: Option<String>,
    /// 0 (off) or 30-86400 seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_expire_time: Option<u32>,
    /// `HTTP`, `HTTPS`, `GRPC` or `GRPCS`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub forward_type: Option<String>,
    /// Domain-level wishes of this rule's backend (lifted onto its domain by the model).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http2: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quic: Option<bool>,
}

impl RuleSettings {
    pub fn is_empty(&self) -> bool {
        *self == RuleSettings::default()
    }
}

/// CLB's `HealthCheck` of a layer-7 rule; `None` fields are not managed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize)]
pub struct HealthCheckSettings {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interval: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub healthy_threshold: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unhealthy_threshold: Option<u32>,
    /// Bit mask: 1 = 1xx, 2 = 2xx, 4 = 3xx, 8 = 4xx, 16 = 5xx.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_code: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// `HEAD` or `GET`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DesiredDomain {
    pub domain: String,
    /// The Ingress host it stands for (`*` for the catch-all domain).
    pub host: String,
    pub default_server: bool,
    pub certificate: Option<CertSource>,
    pub rules: Vec<DesiredRule>,
    /// HTTP/2 and QUIC of the domain (HTTPS listeners); `None`: not managed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http2: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quic: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DesiredListener {
    pub protocol: Protocol,
    pub port: u16,
    /// Listener name; on adopted CLBs it is the proof that clb-ingress owns the listener.
    pub name: String,
    /// HTTPS listeners always use SNI (a certificate per domain).
    pub sni: bool,
    /// Domains, the catch-all (DefaultServer) first.
    pub domains: Vec<DesiredDomain>,
}

/// An Ingress routed by a stack, for status reporting.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Member {
    pub ingress: ObjectRef,
    pub ports: Vec<(Protocol, u16)>,
}

/// Bytes of sha256 kept in [`DesiredLb::digest`] (128 bits, 32 hex digits).
pub const DIGEST_BYTES: usize = 16;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DesiredLb {
    pub stack: StackId,
    pub source: LbSource,
    /// Tags that identify a CLB created for this stack.
    pub tags: Vec<(String, String)>,
    pub listeners: Vec<DesiredListener>,
    pub members: Vec<Member>,
    /// A CLB created for this stack is kept when the stack goes away (TKE's
    /// `ingress.cloud.tencent.com/loadbalance-retain`); marked on the CLB by its name.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub retain: bool,
}

/// The CLB rules one listener of a stack holds (what counts against the account's rules per
/// listener quota).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ListenerRules {
    pub protocol: Protocol,
    pub port: u16,
    pub rules: usize,
}

/// What the Ingress paths on one listener cost in CLB rules ([`crate::model::rule_costs`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ListenerCost {
    pub protocol: Protocol,
    pub port: u16,
    pub paths: Vec<crate::model::translate::PathCost>,
    /// Rules the listener holds.
    pub rules: usize,
    /// Rules it would hold without the rule economy.
    #[serde(rename = "rulesWithoutEconomy")]
    pub rules_without_economy: usize,
}

impl DesiredLb {
    /// The rules each listener holds, in listener order.
    pub fn rule_counts(&self) -> Vec<ListenerRules> {
        self.listeners
            .iter()
            .map(|l| ListenerRules {
                protocol: l.protocol,
                port: l.port,
                rules: l.domains.iter().map(|d| d.rules.len()).sum(),
            })
            .collect()
    }

    /// The value of the desired-state tag ([`crate::model::ids::TAG_DESIRED`]): a sha256 of
    /// everything this desired state puts on the CLB (its JSON form: listeners, domains, rules,
    /// certificates by fingerprint, targets, weights, members) and the version of clb-ingress
    /// that applies it, so that an upgrade re-reads every CLB once.
    pub fn digest(&self) -> String {
        use sha2::{Digest, Sha256};
        // Serializing plain data cannot fail; an empty digest would never match a tag.
        let json = serde_json::to_vec(self).unwrap_or_default();
        let hash = Sha256::digest(&json);
        format!(
            "{}:{}",
            hex::encode(&hash[..DIGEST_BYTES]),
            env!("CARGO_PKG_VERSION")
        )
    }

    pub fn rule_count(&self) -> usize {
        self.listeners
            .iter()
            .flat_map(|l| &l.domains)
            .map(|d| d.rules.len())
            .sum()
    }
}

#[cfg(test)]
mod redaction_tests {
    use super::*;

    #[test]
    fn a_private_key_never_appears_in_debug_or_json_of_a_certificate() {
        let c = CertSource::Pem {
            secret: ObjectRef::namespaced("Secret", "ns", "tls"),
            fingerprint: "f".repeat(64),
            cert_pem: "-----BEGIN CERTIFICATE-----".into(),
            key_pem: PrivateKeyPem::new("-----BEGIN PRIVATE KEY-----\nSECRETBYTES".into()),
        };
        let debug = format!("{c:?} {c:#?}");
        assert!(!debug.contains("SECRETBYTES"), "{debug}");
        assert!(debug.contains("<redacted>"), "{debug}");
        let json = serde_json::to_string(&c).unwrap();
        assert!(
            !json.contains("SECRETBYTES") && !json.contains("PRIVATE KEY"),
            "{json}"
        );
    }
}
