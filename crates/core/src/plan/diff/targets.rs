//! Targets of one rule: what to register, re-weight and deregister (new targets are registered
//! before old ones go, so a rule never serves without a target).

use super::*;

pub(super) fn target_key(t: &Target) -> (&crate::model::TargetAddr, u16) {
    (&t.addr, t.port)
}

pub(super) fn same_targets(a: &[Target], b: &[Target]) -> bool {
    let sa: BTreeSet<&Target> = a.iter().collect();
    let sb: BTreeSet<&Target> = b.iter().collect();
    sa == sb
}

pub(super) fn diff_targets(
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
