//! The diff itself: one entry point, [`diff`], that hands each object kind to its own module
//! (load balancer and certificates here, `listeners`, `rules`, `targets`, `rewrites`) and
//! emits their changes in dependency order through [`Phases`].

mod listeners;
mod rewrites;
mod rules;
mod targets;

use super::*;

use listeners::{diff_listener, stale_listeners};
use rewrites::diff_rewrites;
use rules::diff_rules;
use targets::{diff_targets, same_targets};

/// Changes collected per phase while walking the listeners; [`Phases::emit`] appends them in
/// dependency order (creates and updates first, deletes in reverse).
#[derive(Default)]
struct Phases {
    /// Listeners replaced because their protocol changed on the same port. CLB has one
    /// listener per port, so the old one must go before the new one exists: that is done as
    /// late as possible, after everything else is created, and the replacement is created,
    /// filled and given its targets right after (see [`Phases::emit`]).
    replace_deletes: Vec<(String, Protocol, u16)>,
    listener_creates: Vec<Change>,
    sni: Vec<Change>,
    rule_creates: Vec<Change>,
    url_mods: Vec<Change>,
    setting_mods: Vec<Change>,
    domain_mods: Vec<Change>,
    register: Vec<RuleTarget>,
    reweight: Vec<RuleTarget>,
    deregister: Vec<RuleTarget>,
    /// Rules of domains leaving a listener that also gets new rules: deleted before the new
    /// rules are created, to make room under the rules-per-listener quota.
    early_rule_deletes: Vec<Change>,
    rule_deletes: Vec<Change>,
}

/// A listener the plan syncs: (port, protocol, listener, its observed rules).
type SyncedListener<'o> = (u16, Protocol, ListenerRef, &'o [ObservedRule]);
/// A rule kept under a new URL: (port, domain, new url, location id).
type Renamed<'d> = (u16, &'d str, &'d str, String);

/// Diff the desired state of a stack against what the CLB has.
pub fn diff(
    desired: Option<&DesiredLb>,
    observed: Option<&ObservedLb>,
    own: &Ownership,
) -> Result<Plan, PlanError> {
    let Some(desired) = desired else {
        return Ok(diff_gone(observed, own));
    };
    let mut plan = Plan::default();
    diff_load_balancer(desired, observed, &mut plan)?;
    diff_certificates(desired, observed, &mut plan.changes);

    let observed_listeners: &[ObservedListener] =
        observed.map(|o| o.listeners.as_slice()).unwrap_or_default();
    let mut phases = Phases::default();
    let mut synced: Vec<SyncedListener<'_>> = Vec::with_capacity(desired.listeners.len());
    let mut renamed: Vec<Renamed<'_>> = Vec::new();
    for dl in &desired.listeners {
        let Some((lref, obs_rules)) = diff_listener(
            dl,
            observed_listeners,
            own,
            &mut phases,
            &mut plan.conflicts,
        ) else {
            continue;
        };
        synced.push((dl.port, dl.protocol, lref.clone(), obs_rules));
        diff_rules(dl, &lref, obs_rules, observed, &mut phases, &mut renamed);
    }
    let stale = stale_listeners(desired, observed_listeners, own);
    phases.emit(desired, &synced, &renamed, stale, &mut plan.changes);
    Ok(plan)
}

impl Phases {
    /// Append the changes in dependency order. Everything that can be created before
    /// something is deleted is (but the rules of domains leaving a listener that gets new rules,
    /// deleted first to make room under the quota): new listeners, rules, domain attributes and
    /// targets first; then,
    /// only if a listener changes protocol on its port, the old listener is deleted and its
    /// replacement created, filled and given its targets at once; then redirects, weights,
    /// deregistrations and deletes.
    fn emit(
        self,
        desired: &DesiredLb,
        synced: &[SyncedListener<'_>],
        renamed: &[Renamed<'_>],
        stale_listeners: Vec<(String, Protocol, u16)>,
        changes: &mut Vec<Change>,
    ) {
        let replaced: BTreeSet<u16> = self.replace_deletes.iter().map(|l| l.2).collect();
        let late =
            |l: &ListenerRef| matches!(l, ListenerRef::New { port, .. } if replaced.contains(port));
        let late_change = |c: &Change| match c {
            Change::CreateListener { port, .. } => replaced.contains(port),
            Change::CreateRules { listener, .. } | Change::ModifyDomain { listener, .. } => {
                late(listener)
            }
            _ => false,
        };
        let (late_listeners, listeners): (Vec<Change>, Vec<Change>) =
            self.listener_creates.into_iter().partition(late_change);
        let (late_rules, rules): (Vec<Change>, Vec<Change>) =
            self.rule_creates.into_iter().partition(late_change);
        let (late_domains, domains): (Vec<Change>, Vec<Change>) =
            self.domain_mods.into_iter().partition(late_change);
        let (late_register, register): (Vec<RuleTarget>, Vec<RuleTarget>) =
            self.register.into_iter().partition(|t| late(&t.listener));
        changes.extend(listeners);
        changes.extend(self.sni);
        changes.extend(self.early_rule_deletes);
        changes.extend(rules);
        changes.extend(self.url_mods);
        changes.extend(self.setting_mods);
        changes.extend(domains);
        let register_change = |targets: Vec<RuleTarget>| {
            (!targets.is_empty()).then_some(Change::RegisterTargets { targets })
        };
        if self.replace_deletes.is_empty() {
            diff_rewrites(desired, synced, renamed, changes);
            changes.extend(register_change(register));
        } else {
            changes.extend(register_change(register));
            changes.push(Change::DeleteListeners {
                listeners: self.replace_deletes,
            });
            changes.extend(late_listeners);
            changes.extend(late_rules);
            changes.extend(late_domains);
            changes.extend(register_change(late_register));
            diff_rewrites(desired, synced, renamed, changes);
        }
        if !self.reweight.is_empty() {
            changes.push(Change::ModifyTargetWeights {
                targets: self.reweight,
            });
        }
        if !self.deregister.is_empty() {
            changes.push(Change::DeregisterTargets {
                targets: self.deregister,
            });
        }
        changes.extend(self.rule_deletes);
        if !stale_listeners.is_empty() {
            changes.push(Change::DeleteListeners {
                listeners: stale_listeners,
            });
        }
    }
}

/// The stack is gone: delete its CLB if it owns it whole, else only its own listeners.
fn diff_gone(observed: Option<&ObservedLb>, own: &Ownership) -> Plan {
    let mut plan = Plan::default();
    let Some(o) = observed else {
        return plan;
    };
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
    plan
}

/// The CLB itself: create it when missing (an adopted one must exist), rename it when its
/// `loadbalance-retain` mark changes.
fn diff_load_balancer(
    desired: &DesiredLb,
    observed: Option<&ObservedLb>,
    plan: &mut Plan,
) -> Result<(), PlanError> {
    let Some(o) = observed else {
        match &desired.source {
            LbSource::Existing { id, .. } => {
                return Err(PlanError::LoadBalancerNotFound(id.clone()));
            }
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
        return Ok(());
    };
    if let LbSource::Create { name, .. } = &desired.source
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
    Ok(())
}

/// PEM certificates to upload: each once, unless the CLB account already has it by name.
fn diff_certificates(
    desired: &DesiredLb,
    observed: Option<&ObservedLb>,
    changes: &mut Vec<Change>,
) {
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
            changes.push(Change::UploadCertificate {
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
