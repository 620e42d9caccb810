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
    /// Listeners replaced because their protocol changed (deleted before re-creation).
    replace_deletes: Vec<(String, Protocol, u16)>,
    listener_creates: Vec<Change>,
    sni: Vec<Change>,
    rule_creates: Vec<Change>,
    url_mods: Vec<Change>,
    domain_mods: Vec<Change>,
    register: Vec<RuleTarget>,
    reweight: Vec<RuleTarget>,
    deregister: Vec<RuleTarget>,
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
    fn emit(
        self,
        desired: &DesiredLb,
        synced: &[SyncedListener<'_>],
        renamed: &[Renamed<'_>],
        stale_listeners: Vec<(String, Protocol, u16)>,
        changes: &mut Vec<Change>,
    ) {
        if !self.replace_deletes.is_empty() {
            changes.push(Change::DeleteListeners {
                listeners: self.replace_deletes,
            });
        }
        changes.extend(self.listener_creates);
        changes.extend(self.sni);
        changes.extend(self.rule_creates);
        changes.extend(self.url_mods);
        changes.extend(self.domain_mods);
        diff_rewrites(desired, synced, renamed, changes);
        if !self.register.is_empty() {
            changes.push(Change::RegisterTargets {
                targets: self.register,
            });
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
