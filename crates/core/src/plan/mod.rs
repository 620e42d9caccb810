//! PURE: `DesiredLb` x `ObservedLb` x ownership -> an ordered, minimal list of `Change`s.
//!
//! Creates and updates come in dependency order (CLB, certificates, listeners, rules, domain
//! attributes, targets), deletes in reverse. A rule whose backend changes keeps its CLB rule and
//! only has its targets re-pointed (new targets registered before old ones go), so there is no
//! 404 window; a renamed path whose targets stay the same is a `ModifyRule` of its URL.
//! Objects clb-ingress cannot prove it owns are never touched.

mod diff;

pub use diff::diff;

use crate::model::{
    CertSource, DesiredLb, DesiredListener, HealthCheckSettings, LbSource, Protocol, RuleSettings,
    Target,
};
use rustc_hash::{FxHashMap, FxHashSet};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// Certificates uploaded by clb-ingress are named with this prefix and the PEM's sha256.
pub const CERT_NAME_PREFIX: &str = "clb-ingress-";
/// Per-call caps of the batch actions (clb-api.md §6).
pub const BATCH_TARGETS_PER_CALL: usize = 500;
pub const DELETE_LISTENERS_PER_CALL: usize = 20;

/// The name under which a PEM certificate is uploaded.
pub fn cert_name(fingerprint: &str) -> String {
    format!(
        "{CERT_NAME_PREFIX}{}",
        &fingerprint[..fingerprint.len().min(24)]
    )
}

/// What `Describe*` returned for one CLB.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ObservedLb {
    pub id: String,
    pub name: String,
    pub vips: Vec<String>,
    pub domain: Option<String>,
    pub tags: BTreeMap<String, String>,
    pub listeners: Vec<ObservedListener>,
    /// Certificates uploaded by clb-ingress: certificate name (`cert_name(fingerprint)`) -> id.
    pub certificates: BTreeMap<String, String>,
}

impl ObservedLb {
    /// What the ownership rule ([`ownership`]) looks at.
    pub fn facts(&self) -> ClbFacts<'_> {
        ClbFacts {
            name: &self.name,
            tags: &self.tags,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ObservedListener {
    pub id: String,
    pub name: String,
    pub protocol: Protocol,
    pub port: u16,
    pub sni: bool,
    pub rules: Vec<ObservedRule>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ObservedRule {
    pub location_id: String,
    pub domain: String,
    pub url: String,
    pub default_server: bool,
    pub certificate_id: Option<String>,
    pub targets: Vec<Target>,
    /// The redirect set on this rule (DescribeListeners `RuleOutput.RewriteTarget`).
    pub rewrite: Option<ObservedRewrite>,
    /// Health check, scheduler, session, forward type as CLB reports them, and the domain's
    /// `http2`/`quic` (None where CLB said nothing).
    #[serde(default, skip_serializing_if = "RuleSettings::is_empty")]
    pub settings: RuleSettings,
}

/// A redirect from one rule to a rule of another listener.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ObservedRewrite {
    pub target_listener: String,
    pub target_location: String,
    pub code: u16,
}

/// One redirect to set with ManualRewrite.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NewRewrite {
    pub source: RuleRef,
    pub target: RuleRef,
    pub domain: String,
    pub url: String,
    pub code: u16,
}

pub use crate::model::ids::{ClbFacts, Ownership, ownership};

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum ListenerRef {
    Id(String),
    New { protocol: Protocol, port: u16 },
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum RuleRef {
    Id(String),
    New { domain: String, url: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum CertRef {
    Id(String),
    /// Uploaded earlier in the same plan.
    Uploaded {
        fingerprint: String,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NewRule {
    pub domain: String,
    pub url: String,
    pub default_server: bool,
    pub certificate: Option<CertRef>,
    /// Backend settings, and the domain's `http2`/`quic` (set with a new domain's first rule).
    #[serde(default, skip_serializing_if = "RuleSettings::is_empty")]
    pub settings: RuleSettings,
}

/// A target on one rule.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct RuleTarget {
    pub listener: ListenerRef,
    pub rule: RuleRef,
    pub target: Target,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Change {
    CreateLoadBalancer {
        name: String,
        settings: crate::crd::CreateSettings,
        tags: Vec<(String, String)>,
    },
    /// Rename a CLB clb-ingress created (marks or unmarks it as retained).
    RenameLoadBalancer {
        id: String,
        name: String,
    },
    UploadCertificate {
        fingerprint: String,
        name: String,
        secret: String,
        #[serde(skip)]
        cert_pem: String,
        #[serde(skip)]
        key_pem: crate::model::PrivateKeyPem,
    },
    CreateListener {
        protocol: Protocol,
        port: u16,
        name: String,
        sni: bool,
    },
    EnableSni {
        listener: String,
        port: u16,
    },
    CreateRules {
        listener: ListenerRef,
        rules: Vec<NewRule>,
    },
    ModifyRuleUrl {
        listener: String,
        location_id: String,
        domain: String,
        from: String,
        to: String,
    },
    ModifyDomain {
        listener: ListenerRef,
        domain: String,
        certificate: Option<CertRef>,
        make_default: bool,
        /// HTTP/2 and QUIC of the domain, when they change.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        http2: Option<bool>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        quic: Option<bool>,
    },
    /// Change the backend settings of one rule (one `ModifyRule`); a health check is sent
    /// whole (what CLB has, with the wanted fields over it).
    ModifyRuleSettings {
        listener: String,
        location_id: String,
        domain: String,
        url: String,
        settings: RuleSettings,
    },
    /// Remove redirects (before their rules change or go).
    DeleteRewrites {
        source_listener: String,
        target_listener: String,
        /// (source location id, target location id, domain, url)
        rewrites: Vec<(String, String, String, String)>,
    },
    /// Redirect HTTP rules to the HTTPS rules with the same domain and URL (after both exist).
    CreateRewrites {
        source_listener: ListenerRef,
        target_listener: ListenerRef,
        rewrites: Vec<NewRewrite>,
    },
    RegisterTargets {
        targets: Vec<RuleTarget>,
    },
    ModifyTargetWeights {
        targets: Vec<RuleTarget>,
    },
    DeregisterTargets {
        targets: Vec<RuleTarget>,
    },
    DeleteRules {
        listener: String,
        /// (location id, domain, url)
        rules: Vec<(String, String, String)>,
    },
    DeleteListeners {
        /// (listener id, protocol, port)
        listeners: Vec<(String, Protocol, u16)>,
    },
    DeleteLoadBalancer {
        id: String,
    },
}

impl Change {
    /// The number of API write calls this change takes.
    pub fn api_calls(&self) -> usize {
        match self {
            Change::RegisterTargets { targets }
            | Change::ModifyTargetWeights { targets }
            | Change::DeregisterTargets { targets } => {
                targets.len().div_ceil(BATCH_TARGETS_PER_CALL)
            }
            Change::DeleteListeners { listeners } => {
                listeners.len().div_ceil(DELETE_LISTENERS_PER_CALL)
            }
            _ => 1,
        }
    }

    /// A short bounded name (for metrics and tables).
    pub fn kind(&self) -> &'static str {
        match self {
            Change::CreateLoadBalancer { .. } => "CreateLoadBalancer",
            Change::RenameLoadBalancer { .. } => "RenameLoadBalancer",
            Change::DeleteRewrites { .. } => "DeleteRewrites",
            Change::CreateRewrites { .. } => "CreateRewrites",
            Change::UploadCertificate { .. } => "UploadCertificate",
            Change::CreateListener { .. } => "CreateListener",
            Change::EnableSni { .. } => "EnableSni",
            Change::CreateRules { .. } => "CreateRules",
            Change::ModifyRuleUrl { .. } => "ModifyRuleUrl",
            Change::ModifyDomain { .. } => "ModifyDomain",
            Change::ModifyRuleSettings { .. } => "ModifyRuleSettings",
            Change::RegisterTargets { .. } => "RegisterTargets",
            Change::ModifyTargetWeights { .. } => "ModifyTargetWeights",
            Change::DeregisterTargets { .. } => "DeregisterTargets",
            Change::DeleteRules { .. } => "DeleteRules",
            Change::DeleteListeners { .. } => "DeleteListeners",
            Change::DeleteLoadBalancer { .. } => "DeleteLoadBalancer",
        }
    }
}

fn fmt_listener(l: &ListenerRef) -> String {
    match l {
        ListenerRef::Id(id) => id.clone(),
        ListenerRef::New { protocol, port } => format!("(new {} {port})", protocol.as_str()),
    }
}

fn fmt_rule(r: &RuleRef) -> String {
    match r {
        RuleRef::Id(id) => id.clone(),
        RuleRef::New { domain, url } => format!("{domain} {url}"),
    }
}

fn fmt_cert(c: &CertRef) -> String {
    match c {
        CertRef::Id(id) => id.clone(),
        CertRef::Uploaded { fingerprint } => cert_name(fingerprint),
    }
}

/// Settings in one line: `scheduler=LEAST_CONN health(interval=10 path=/healthz)`.
fn fmt_settings(s: &RuleSettings) -> String {
    let mut parts = Vec::new();
    if let Some(h) = &s.health_check {
        let mut hp = Vec::new();
        let ints = [
            ("enabled", h.enabled.map(u32::from)),
            ("timeout", h.timeout),
            ("interval", h.interval),
            ("healthy", h.healthy_threshold),
            ("unhealthy", h.unhealthy_threshold),
            ("httpCode", h.http_code),
        ];
        for (k, v) in ints {
            if let Some(v) = v {
                hp.push(format!("{k}={v}"));
            }
        }
        for (k, v) in [
            ("path", &h.path),
            ("domain", &h.domain),
            ("method", &h.method),
        ] {
            if let Some(v) = v {
                hp.push(format!("{k}={v}"));
            }
        }
        parts.push(format!("health({})", hp.join(" ")));
    }
    if let Some(v) = &s.scheduler {
        parts.push(format!("scheduler={v}"));
    }
    if let Some(v) = s.session_expire_time {
        parts.push(format!("session={v}s"));
    }
    if let Some(v) = &s.forward_type {
        parts.push(format!("forward={v}"));
    }
    parts.join(" ")
}

/// The `ForwardType`s `ModifyRule` accepts (api.json 2018-03-17); `CreateRule` also takes GRPCS.
pub const MODIFY_RULE_FORWARD_TYPES: [&str; 3] = ["HTTP", "HTTPS", "GRPC"];

/// CLB's documented defaults of a rule's health check (what an unset field means).
pub const HC_DEFAULTS: HealthCheckSettings = HealthCheckSettings {
    enabled: Some(true),
    timeout: Some(2),
    interval: Some(5),
    healthy_threshold: Some(3),
    unhealthy_threshold: Some(3),
    http_code: Some(31),
    path: None,
    domain: None,
    method: None,
};

/// Does CLB's health check `have` already give every field `want` sets?
fn health_check_matches(want: &HealthCheckSettings, have: Option<&HealthCheckSettings>) -> bool {
    let have = have.cloned().unwrap_or_default();
    let d = &HC_DEFAULTS;
    let int = |w: Option<u32>, h: Option<u32>, def: Option<u32>| w.is_none() || h.or(def) == w;
    int(want.timeout, have.timeout, d.timeout)
        && int(want.interval, have.interval, d.interval)
        && int(
            want.healthy_threshold,
            have.healthy_threshold,
            d.healthy_threshold,
        )
        && int(
            want.unhealthy_threshold,
            have.unhealthy_threshold,
            d.unhealthy_threshold,
        )
        && int(want.http_code, have.http_code, d.http_code)
        && (want.enabled.is_none() || have.enabled.or(d.enabled) == want.enabled)
        && (want.path.is_none() || have.path == want.path)
        && (want.domain.is_none() || have.domain == want.domain)
        && (want.method.is_none()
            || have.method.as_deref().unwrap_or("HEAD") == want.method.as_deref().unwrap_or(""))
}

/// What `ModifyRule` must send so a rule with settings `have` gets `want` (None: nothing).
/// Fields `want` leaves out are not managed and never sent.
pub fn settings_delta(want: &RuleSettings, have: &RuleSettings) -> Option<RuleSettings> {
    let mut out = RuleSettings::default();
    if let Some(w) = &want.health_check
        && !health_check_matches(w, have.health_check.as_ref())
    {
        out.health_check = Some(have.health_check.clone().unwrap_or_default().overlay(w));
    }
    if let Some(w) = &want.scheduler
        && have.scheduler.as_deref().unwrap_or("WRR") != w
    {
        out.scheduler = Some(w.clone());
    }
    if let Some(w) = want.session_expire_time
        && have.session_expire_time.unwrap_or(0) != w
    {
        out.session_expire_time = Some(w);
    }
    // ModifyRule takes ForwardType HTTP, HTTPS or GRPC (api.json): a rule that must become
    // GRPCS is deleted and created again by the rules diff (`needs_recreate`).
    if let Some(w) = &want.forward_type
        && have.forward_type.as_deref().unwrap_or("HTTP") != w
        && MODIFY_RULE_FORWARD_TYPES.contains(&w.as_str())
    {
        out.forward_type = Some(w.clone());
    }
    (!out.is_empty()).then_some(out)
}

fn fmt_targets(f: &mut fmt::Formatter<'_>, ts: &[RuleTarget]) -> fmt::Result {
    for t in ts {
        write!(
            f,
            "\n    {} {} -> {}:{} w{}",
            fmt_listener(&t.listener),
            fmt_rule(&t.rule),
            t.target.addr,
            t.target.port,
            t.target.weight
        )?;
    }
    Ok(())
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::CreateLoadBalancer { name, settings, .. } => {
                write!(f, "CreateLoadBalancer {name} ({:?})", settings.network_type)
            }
            Change::RenameLoadBalancer { id, name } => {
                write!(f, "ModifyLoadBalancerAttributes {id} name={name}")
            }
            Change::DeleteRewrites {
                source_listener,
                target_listener,
                rewrites,
            } => {
                write!(f, "DeleteRewrite {source_listener} -> {target_listener}")?;
                for (_, _, d, u) in rewrites {
                    write!(f, "\n    {d} {u}")?;
                }
                Ok(())
            }
            Change::CreateRewrites {
                source_listener,
                target_listener,
                rewrites,
            } => {
                write!(
                    f,
                    "ManualRewrite {} -> {}",
                    fmt_listener(source_listener),
                    fmt_listener(target_listener)
                )?;
                for r in rewrites {
                    write!(f, "\n    {} {} -> https ({})", r.domain, r.url, r.code)?;
                }
                Ok(())
            }
            Change::UploadCertificate { name, secret, .. } => {
                write!(f, "UploadCertificate {name} from {secret}")
            }
            Change::CreateListener {
                protocol,
                port,
                name,
                sni,
            } => write!(
                f,
                "CreateListener {} {port} name={name}{}",
                protocol.as_str(),
                if *sni { " sni" } else { "" }
            ),
            Change::EnableSni { listener, port } => write!(f, "EnableSni {listener} ({port})"),
            Change::CreateRules { listener, rules } => {
                write!(f, "CreateRules on {}", fmt_listener(listener))?;
                for r in rules {
                    write!(f, "\n    {} {}", r.domain, r.url)?;
                    if r.default_server {
                        write!(f, " [default]")?;
                    }
                    if let Some(c) = &r.certificate {
                        write!(f, " cert={}", fmt_cert(c))?;
                    }
                }
                Ok(())
            }
            Change::ModifyRuleUrl {
                listener,
                location_id,
                domain,
                from,
                to,
            } => write!(
                f,
                "ModifyRule {listener} {location_id} {domain}: {from} -> {to}"
            ),
            Change::ModifyDomain {
                listener,
                domain,
                certificate,
                make_default,
                http2,
                quic,
            } => {
                write!(
                    f,
                    "ModifyDomainAttributes {} {domain}",
                    fmt_listener(listener)
                )?;
                if let Some(c) = certificate {
                    write!(f, " cert={}", fmt_cert(c))?;
                }
                if *make_default {
                    write!(f, " default=true")?;
                }
                if let Some(h) = http2 {
                    write!(f, " http2={h}")?;
                }
                if let Some(q) = quic {
                    write!(f, " quic={q}")?;
                }
                Ok(())
            }
            Change::ModifyRuleSettings {
                listener,
                location_id,
                domain,
                url,
                settings,
            } => write!(
                f,
                "ModifyRule {listener} {location_id} {domain} {url}: {}",
                fmt_settings(settings)
            ),
            Change::RegisterTargets { targets } => {
                write!(f, "RegisterTargets ({})", targets.len())?;
                fmt_targets(f, targets)
            }
            Change::ModifyTargetWeights { targets } => {
                write!(f, "ModifyTargetWeights ({})", targets.len())?;
                fmt_targets(f, targets)
            }
            Change::DeregisterTargets { targets } => {
                write!(f, "DeregisterTargets ({})", targets.len())?;
                fmt_targets(f, targets)
            }
            Change::DeleteRules { listener, rules } => {
                write!(f, "DeleteRules on {listener}")?;
                for (id, d, u) in rules {
                    write!(f, "\n    {id} {d} {u}")?;
                }
                Ok(())
            }
            Change::DeleteListeners { listeners } => {
                write!(f, "DeleteListeners")?;
                for (id, p, port) in listeners {
                    write!(f, " {id} ({} {port})", p.as_str())?;
                }
                Ok(())
            }
            Change::DeleteLoadBalancer { id } => write!(f, "DeleteLoadBalancer {id}"),
        }
    }
}

/// Why no plan could be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("existing CLB {0} was not found")]
    LoadBalancerNotFound(String),
}

/// A plan for one CLB, plus what it could not do.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Plan {
    pub changes: Vec<Change>,
    /// Listener ports held by objects clb-ingress does not own (left alone).
    pub conflicts: Vec<String>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }
    /// API write calls the plan takes.
    pub fn api_calls(&self) -> usize {
        self.changes.iter().map(Change::api_calls).sum()
    }
}

/// The `ObservedLb` a CLB would report right after `desired` was fully applied, with
/// deterministic made-up ids. Used to preview steady-state plans and in tests and benchmarks.
pub fn assume_applied(desired: &DesiredLb, lb_id: &str) -> ObservedLb {
    let mut certificates = BTreeMap::new();
    let mut n = 0usize;
    let listeners = desired
        .listeners
        .iter()
        .enumerate()
        .map(|(li, l)| {
            let mut rules = Vec::new();
            for d in &l.domains {
                let certificate_id = d.certificate.as_ref().map(|c| match c {
                    CertSource::Id(id) => id.clone(),
                    CertSource::Pem { fingerprint, .. } => certificates
                        .entry(cert_name(fingerprint))
                        .or_insert_with(|| {
                            format!("cert-{}", &fingerprint[..8.min(fingerprint.len())])
                        })
                        .clone(),
                });
                for r in &d.rules {
                    n += 1;
                    rules.push(ObservedRule {
                        location_id: format!("loc-{n:08}"),
                        domain: d.domain.clone(),
                        url: r.url.clone(),
                        default_server: d.default_server,
                        certificate_id: certificate_id.clone(),
                        targets: r.targets.clone(),
                        rewrite: None,
                        settings: RuleSettings {
                            http2: d.http2,
                            quic: d.quic,
                            ..r.settings.clone()
                        },
                    });
                }
            }
            ObservedListener {
                id: format!("lbl-{li:08}"),
                name: l.name.clone(),
                protocol: l.protocol,
                port: l.port,
                sni: l.sni,
                rules,
            }
        })
        .collect();
    let mut listeners: Vec<ObservedListener> = listeners;
    // Redirects as ManualRewrite leaves them.
    let redirects: Vec<(usize, usize, u16, u16)> = desired
        .listeners
        .iter()
        .enumerate()
        .flat_map(|(li, l)| {
            l.domains
                .iter()
                .flat_map(|d| &d.rules)
                .enumerate()
                .filter_map(move |(ri, r)| r.redirect.map(|x| (li, ri, x.https_port, x.code)))
        })
        .collect();
    for (li, ri, port, code) in redirects {
        let (domain, url) = {
            let r = &listeners[li].rules[ri];
            (r.domain.clone(), r.url.clone())
        };
        let target = listeners
            .iter()
            .find(|l| l.port == port && l.protocol == Protocol::Https)
            .and_then(|l| {
                l.rules
                    .iter()
                    .find(|r| r.domain == domain && r.url == url)
                    .map(|r| (l.id.clone(), r.location_id.clone()))
            });
        if let Some((target_listener, target_location)) = target {
            listeners[li].rules[ri].rewrite = Some(ObservedRewrite {
                target_listener,
                target_location,
                code,
            });
        }
    }
    ObservedLb {
        id: lb_id.to_string(),
        name: match &desired.source {
            LbSource::Create { name, .. } if desired.retain => {
                crate::model::ids::retained_name(name)
            }
            LbSource::Create { name, .. } => name.clone(),
            LbSource::Existing { id, .. } => id.clone(),
        },
        vips: Vec::new(),
        domain: None,
        tags: desired.tags.iter().cloned().collect(),
        listeners,
        certificates,
    }
}
