//! PURE: `DesiredLb` x `ObservedLb` x ownership -> an ordered, minimal list of `Change`s.
//!
//! Creates and updates come in dependency order (CLB, certificates, listeners, rules, domain
//! attributes, targets), deletes in reverse. A rule whose backend changes keeps its CLB rule and
//! only has its targets re-pointed (new targets registered before old ones go), so there is no
//! 404 window; a renamed path whose targets stay the same is a `ModifyRule` of its URL.
//! Objects clb-ingress cannot prove it owns are never touched.

use crate::model::{CertSource, DesiredLb, LbSource, Protocol, Target};
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
        key_pem: String,
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
                Ok(())
            }
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

fn target_key(t: &Target) -> (&crate::model::TargetAddr, u16) {
    (&t.addr, t.port)
}

fn resolve_cert(c: &CertSource, observed: Option<&ObservedLb>) -> CertRef {
    match c {
        CertSource::Id(id) => CertRef::Id(id.clone()),
        CertSource::Pem { fingerprint, .. } => {
            match observed.and_then(|o| o.certificates.get(&cert_name(fingerprint))) {
                Some(id) => CertRef::Id(id.clone()),
                None => CertRef::Uploaded {
                    fingerprint: fingerprint.clone(),
                },
            }
        }
    }
}

/// Diff the desired state of a stack against what the CLB has.
pub fn diff(
    desired: Option<&DesiredLb>,
    observed: Option<&ObservedLb>,
    own: &Ownership,
) -> Result<Plan, PlanError> {
    let mut plan = Plan::default();
    let Some(desired) = desired else {
        if let Some(o) = observed {
            if own.lb_owned {
                plan.changes
                    .push(Change::DeleteLoadBalancer { id: o.id.clone() });
            } else {
                let ours: Vec<_> = o
                    .listeners
                    .iter()
                    .filter(|l| l.name == own.listener_name)
                    .map(|l| (l.id.clone(), l.protocol, l.port))
                    .collect();
                if !ours.is_empty() {
                    plan.changes
                        .push(Change::DeleteListeners { listeners: ours });
                }
            }
        }
        return Ok(plan);
    };
    if observed.is_none() {
        match &desired.source {
            LbSource::Existing { id } => return Err(PlanError::LoadBalancerNotFound(id.clone())),
            LbSource::Create { name, settings } => plan.changes.push(Change::CreateLoadBalancer {
                name: if desired.retain {
                    crate::model::ids::retained_name(name)
                } else {
                    name.clone()
                },
                settings: settings.clone(),
                tags: desired.tags.clone(),
            }),
        }
    }
    if let (Some(o), LbSource::Create { name, .. }) = (observed, &desired.source)
        && desired
            .tags
            .iter()
            .any(|(k, v)| k == crate::model::ids::TAG_STACK && o.tags.get(k) == Some(v))
        && crate::model::ids::is_retained_name(&o.name) != desired.retain
    {
        plan.changes.push(Change::RenameLoadBalancer {
            id: o.id.clone(),
            name: if desired.retain {
                crate::model::ids::retained_name(&o.name)
            } else {
                name.clone()
            },
        });
    }
    let owns_listener = |l: &ObservedListener| own.lb_owned || l.name == own.listener_name;

    // Certificates to upload (each PEM once).
    let mut uploads: BTreeSet<String> = BTreeSet::new();
    for d in desired.listeners.iter().flat_map(|l| &l.domains) {
        if let Some(
            c @ CertSource::Pem {
                fingerprint,
                secret,
                cert_pem,
                key_pem,
            },
        ) = &d.certificate
            && matches!(resolve_cert(c, observed), CertRef::Uploaded { .. })
            && uploads.insert(fingerprint.clone())
        {
            plan.changes.push(Change::UploadCertificate {
                fingerprint: fingerprint.clone(),
                name: cert_name(fingerprint),
                secret: format!(
                    "{}/{}",
                    secret.namespace.as_deref().unwrap_or(""),
                    secret.name
                ),
                cert_pem: cert_pem.clone(),
                key_pem: key_pem.clone(),
            });
        }
    }

    let observed_listeners: &[ObservedListener] =
        observed.map(|o| o.listeners.as_slice()).unwrap_or_default();
    let mut replace_deletes = Vec::new();
    let mut creates = Vec::new();
    let mut sni = Vec::new();
    let mut rule_creates = Vec::new();
    let mut url_mods = Vec::new();
    let mut domain_mods = Vec::new();
    let mut register = Vec::new();
    let mut reweight = Vec::new();
    let mut deregister = Vec::new();
    let mut rule_deletes = Vec::new();
    let mut stale_listeners = Vec::new();
    // (port, protocol, listener, its observed rules) of every listener we sync.
    let mut lrefs: Vec<(u16, Protocol, ListenerRef, &[ObservedRule])> =
        Vec::with_capacity(desired.listeners.len());
    // Rules kept under a new URL: (port, domain, new url) -> location id.
    let mut renamed: Vec<(u16, &str, &str, String)> = Vec::new();

    for dl in &desired.listeners {
        let existing = observed_listeners.iter().find(|l| l.port == dl.port);
        let (lref, obs_rules): (ListenerRef, &[ObservedRule]) = match existing {
            Some(ol) if !owns_listener(ol) => {
                plan.conflicts.push(format!(
                    "port {} is used by listener {} ({}), which clb-ingress did not create; {} {} is not synced",
                    dl.port,
                    ol.id,
                    ol.name,
                    dl.protocol.as_str(),
                    dl.port
                ));
                continue;
            }
            Some(ol) if ol.protocol == dl.protocol => {
                if dl.sni && !ol.sni {
                    sni.push(Change::EnableSni {
                        listener: ol.id.clone(),
                        port: ol.port,
                    });
                }
                (ListenerRef::Id(ol.id.clone()), ol.rules.as_slice())
            }
            other => {
                if let Some(ol) = other {
                    replace_deletes.push((ol.id.clone(), ol.protocol, ol.port));
                }
                creates.push(Change::CreateListener {
                    protocol: dl.protocol,
                    port: dl.port,
                    name: dl.name.clone(),
                    sni: dl.sni,
                });
                (
                    ListenerRef::New {
                        protocol: dl.protocol,
                        port: dl.port,
                    },
                    &[],
                )
            }
        };
        let listener_id = match &lref {
            ListenerRef::Id(id) => id.clone(),
            ListenerRef::New { .. } => String::new(),
        };
        lrefs.push((dl.port, dl.protocol, lref.clone(), obs_rules));
        // Observed rules by (domain, url); the last of duplicates wins, as in a map.
        let mut obs_by_key: FxHashMap<(&str, &str), &ObservedRule> =
            FxHashMap::with_capacity_and_hasher(obs_rules.len(), Default::default());
        for r in obs_rules {
            obs_by_key.insert((r.domain.as_str(), r.url.as_str()), r);
        }
        let want_count = dl.domains.iter().map(|d| d.rules.len()).sum();
        let mut want_keys: FxHashSet<(&str, &str)> =
            FxHashSet::with_capacity_and_hasher(want_count, Default::default());
        for d in &dl.domains {
            for r in &d.rules {
                want_keys.insert((d.domain.as_str(), r.url.as_str()));
            }
        }
        // Stale rules, per domain, available for re-use by a renamed path.
        let mut stale: BTreeMap<&str, Vec<&ObservedRule>> = BTreeMap::new();
        for r in obs_rules {
            if !want_keys.contains(&(r.domain.as_str(), r.url.as_str())) {
                stale.entry(r.domain.as_str()).or_default().push(r);
            }
        }
        let has_default = obs_rules.iter().any(|r| r.default_server);
        let mut new_rules = Vec::new();
        for d in &dl.domains {
            let cert = d.certificate.as_ref().map(|c| resolve_cert(c, observed));
            let obs_domain: Vec<&ObservedRule> =
                obs_rules.iter().filter(|r| r.domain == d.domain).collect();
            let domain_survives = obs_domain
                .iter()
                .any(|r| want_keys.contains(&(r.domain.as_str(), r.url.as_str())));
            let mut domain_is_new = !domain_survives;
            for r in &d.rules {
                let existing_rule = obs_by_key
                    .get(&(d.domain.as_str(), r.url.as_str()))
                    .copied();
                let reused = if existing_rule.is_none() {
                    // A stale rule of this domain with exactly these targets: rename it.
                    stale.get_mut(d.domain.as_str()).and_then(|cands| {
                        let pos = cands.iter().position(|o| {
                            !r.targets.is_empty() && same_targets(&o.targets, &r.targets)
                        })?;
                        Some(cands.remove(pos))
                    })
                } else {
                    None
                };
                if let Some(o) = reused {
                    renamed.push((
                        dl.port,
                        d.domain.as_str(),
                        r.url.as_str(),
                        o.location_id.clone(),
                    ));
                    url_mods.push(Change::ModifyRuleUrl {
                        listener: listener_id.clone(),
                        location_id: o.location_id.clone(),
                        domain: d.domain.clone(),
                        from: o.url.clone(),
                        to: r.url.clone(),
                    });
                    domain_is_new = false;
                    continue;
                }
                match existing_rule {
                    Some(o) => {
                        diff_targets(
                            &lref,
                            || RuleRef::Id(o.location_id.clone()),
                            &o.targets,
                            &r.targets,
                            &mut register,
                            &mut reweight,
                            &mut deregister,
                        );
                    }
                    None => {
                        new_rules.push(NewRule {
                            domain: d.domain.clone(),
                            url: r.url.clone(),
                            default_server: false,
                            certificate: if domain_is_new { cert.clone() } else { None },
                        });
                        diff_targets(
                            &lref,
                            || RuleRef::New {
                                domain: d.domain.clone(),
                                url: r.url.clone(),
                            },
                            &[],
                            &r.targets,
                            &mut register,
                            &mut reweight,
                            &mut deregister,
                        );
                    }
                }
            }
            // Domain-level attributes of a domain that already exists on the listener.
            if !domain_is_new {
                let current_cert = obs_domain.iter().find_map(|r| r.certificate_id.clone());
                let cert_change = match &cert {
                    Some(CertRef::Id(id)) if current_cert.as_deref() != Some(id) => cert.clone(),
                    Some(CertRef::Uploaded { .. }) => cert.clone(),
                    _ => None,
                };
                let is_default = obs_domain.iter().any(|r| r.default_server);
                let make_default = d.default_server && !is_default;
                if cert_change.is_some() || make_default {
                    domain_mods.push(Change::ModifyDomain {
                        listener: lref.clone(),
                        domain: d.domain.clone(),
                        certificate: cert_change,
                        make_default,
                    });
                }
            } else if d.default_server {
                if has_default {
                    domain_mods.push(Change::ModifyDomain {
                        listener: lref.clone(),
                        domain: d.domain.clone(),
                        certificate: None,
                        make_default: true,
                    });
                } else if let Some(first) = new_rules.iter_mut().find(|n| n.domain == d.domain) {
                    first.default_server = true;
                }
            }
        }
        if !new_rules.is_empty() {
            // The default domain's rules first, so CLB never picks another domain as default.
            new_rules.sort_by_key(|n| !n.default_server);
            rule_creates.push(Change::CreateRules {
                listener: lref.clone(),
                rules: new_rules,
            });
        }
        let dels: Vec<(String, String, String)> = stale
            .values()
            .flatten()
            .map(|r| (r.location_id.clone(), r.domain.clone(), r.url.clone()))
            .collect();
        if !dels.is_empty() {
            rule_deletes.push(Change::DeleteRules {
                listener: listener_id.clone(),
                rules: dels,
            });
        }
    }
    for ol in observed_listeners {
        let wanted = desired.listeners.iter().any(|d| d.port == ol.port);
        if !wanted && owns_listener(ol) {
            stale_listeners.push((ol.id.clone(), ol.protocol, ol.port));
        }
    }
    if !replace_deletes.is_empty() {
        plan.changes.push(Change::DeleteListeners {
            listeners: replace_deletes,
        });
    }
    plan.changes.extend(creates);
    plan.changes.extend(sni);
    plan.changes.extend(rule_creates);
    plan.changes.extend(url_mods);
    plan.changes.extend(domain_mods);
    diff_rewrites(desired, &lrefs, &renamed, &mut plan.changes);
    if !register.is_empty() {
        plan.changes
            .push(Change::RegisterTargets { targets: register });
    }
    if !reweight.is_empty() {
        plan.changes
            .push(Change::ModifyTargetWeights { targets: reweight });
    }
    if !deregister.is_empty() {
        plan.changes.push(Change::DeregisterTargets {
            targets: deregister,
        });
    }
    plan.changes.extend(rule_deletes);
    if !stale_listeners.is_empty() {
        plan.changes.push(Change::DeleteListeners {
            listeners: stale_listeners,
        });
    }
    Ok(plan)
}

/// Redirects (auto-rewrite): stale ones are deleted, then missing ones created, once the rules
/// at both ends exist. A redirect already in place with the same target and code is left alone.
fn diff_rewrites(
    desired: &DesiredLb,
    lrefs: &[(u16, Protocol, ListenerRef, &[ObservedRule])],
    renamed: &[(u16, &str, &str, String)],
    changes: &mut Vec<Change>,
) {
    let find = |port: u16, proto: Protocol| {
        lrefs
            .iter()
            .find(|(p, pr, _, _)| *p == port && *pr == proto)
    };
    let mut deletes: Vec<Change> = Vec::new();
    let mut creates: Vec<Change> = Vec::new();
    for dl in desired
        .listeners
        .iter()
        .filter(|l| l.protocol == Protocol::Http)
    {
        let Some((_, _, src_ref, src_obs)) = find(dl.port, Protocol::Http) else {
            continue;
        };
        let has_observed = src_obs.iter().any(|o| o.rewrite.is_some());
        let has_desired = dl
            .domains
            .iter()
            .flat_map(|d| &d.rules)
            .any(|r| r.redirect.is_some());
        if !has_observed && !has_desired {
            continue;
        }
        let mut keep: Vec<&str> = Vec::new();
        let mut wanted: BTreeMap<u16, (ListenerRef, Vec<NewRewrite>)> = BTreeMap::new();
        for d in &dl.domains {
            for r in &d.rules {
                let Some(rd) = r.redirect else { continue };
                let Some((_, _, tgt_ref, tgt_obs)) = find(rd.https_port, Protocol::Https) else {
                    continue;
                };
                let src_rule = src_obs
                    .iter()
                    .find(|o| o.domain == d.domain && o.url == r.url);
                let tgt_id = tgt_obs
                    .iter()
                    .find(|o| o.domain == d.domain && o.url == r.url)
                    .map(|o| o.location_id.clone())
                    .or_else(|| {
                        renamed
                            .iter()
                            .find(|(p, dom, u, _)| {
                                *p == rd.https_port && *dom == d.domain && *u == r.url
                            })
                            .map(|x| x.3.clone())
                    });
                if let (Some(s), Some(tid), ListenerRef::Id(tl)) = (src_rule, &tgt_id, tgt_ref)
                    && s.rewrite.as_ref().is_some_and(|w| {
                        w.target_listener == *tl && w.target_location == *tid && w.code == rd.code
                    })
                {
                    keep.push(&s.location_id);
                    continue;
                }
                wanted
                    .entry(rd.https_port)
                    .or_insert_with(|| (tgt_ref.clone(), Vec::new()))
                    .1
                    .push(NewRewrite {
                        source: match src_rule {
                            Some(s) => RuleRef::Id(s.location_id.clone()),
                            None => RuleRef::New {
                                domain: d.domain.clone(),
                                url: r.url.clone(),
                            },
                        },
                        target: match tgt_id {
                            Some(id) => RuleRef::Id(id),
                            None => RuleRef::New {
                                domain: d.domain.clone(),
                                url: r.url.clone(),
                            },
                        },
                        domain: d.domain.clone(),
                        url: r.url.clone(),
                        code: rd.code,
                    });
            }
        }
        if let ListenerRef::Id(src_id) = src_ref {
            let mut stale: BTreeMap<&str, Vec<(String, String, String, String)>> = BTreeMap::new();
            for o in src_obs.iter() {
                if let Some(w) = &o.rewrite
                    && !keep.contains(&o.location_id.as_str())
                {
                    stale.entry(w.target_listener.as_str()).or_default().push((
                        o.location_id.clone(),
                        w.target_location.clone(),
                        o.domain.clone(),
                        o.url.clone(),
                    ));
                }
            }
            for (target, rewrites) in stale {
                deletes.push(Change::DeleteRewrites {
                    source_listener: src_id.clone(),
                    target_listener: target.to_string(),
                    rewrites,
                });
            }
        }
        for (_, (target_listener, rewrites)) in wanted {
            creates.push(Change::CreateRewrites {
                source_listener: src_ref.clone(),
                target_listener,
                rewrites,
            });
        }
    }
    changes.extend(deletes);
    changes.extend(creates);
}

fn same_targets(a: &[Target], b: &[Target]) -> bool {
    let sa: BTreeSet<&Target> = a.iter().collect();
    let sb: BTreeSet<&Target> = b.iter().collect();
    sa == sb
}

fn diff_targets(
    l: &ListenerRef,
    rule: impl FnOnce() -> RuleRef,
    have: &[Target],
    want: &[Target],
    register: &mut Vec<RuleTarget>,
    reweight: &mut Vec<RuleTarget>,
    deregister: &mut Vec<RuleTarget>,
) {
    if have == want {
        // Same targets, same weights: nothing to do (the common steady state).
        return;
    }
    let r = &rule();
    let have_map: BTreeMap<_, &Target> = have.iter().map(|t| (target_key(t), t)).collect();
    let want_map: BTreeMap<_, &Target> = want.iter().map(|t| (target_key(t), t)).collect();
    let rt = |t: &Target| RuleTarget {
        listener: l.clone(),
        rule: r.clone(),
        target: t.clone(),
    };
    for (k, t) in &want_map {
        match have_map.get(k) {
            None => register.push(rt(t)),
            Some(h) if h.weight != t.weight => reweight.push(rt(t)),
            Some(_) => {}
        }
    }
    for (k, t) in &have_map {
        if !want_map.contains_key(k) {
            deregister.push(rt(t));
        }
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
            LbSource::Existing { id } => id.clone(),
        },
        vips: Vec::new(),
        domain: None,
        tags: desired.tags.iter().cloned().collect(),
        listeners,
        certificates,
    }
}
