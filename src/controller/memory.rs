//! What the controller remembers between passes: per stack, its member Ingresses, the Services
//! and Secrets it uses and its consecutive failures; per Ingress, its stack, the fingerprint last
//! processed and the warnings already published. All of it is rebuilt after a restart by the
//! initial full sync.

use super::FINALIZER;
use super::queue::Dirty;
use super::report::{ANN_QCLOUD_LB_ID, ANN_SYNC_STATE};
use crate::model::{DesiredLb, Index, Problem, StackId};
use k8s_openapi::api::networking::v1::Ingress;
use kube::ResourceExt;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

/// `(namespace, name)` of a namespaced object.
pub type Key = (String, String);

/// What the controller remembers about a stack between reconciles.
#[derive(Debug, Clone, Default)]
pub struct StackMemo {
    pub members: BTreeSet<Key>,
    pub services: BTreeSet<Key>,
    pub secrets: BTreeSet<Key>,
    /// Reconciles failed in a row (0 after a success).
    pub failures: u32,
}

impl StackMemo {
    /// The memo of a stack just reconciled: `members` (found in `ingresses` by `find`), the
    /// Services its rules route to and the TLS Secrets its members name.
    pub fn new(
        desired: Option<&DesiredLb>,
        members: BTreeSet<Key>,
        find: impl Fn(&str, &str) -> Option<Arc<Ingress>>,
        failures: u32,
    ) -> Self {
        let services = desired
            .iter()
            .flat_map(|d| &d.listeners)
            .flat_map(|l| &l.domains)
            .flat_map(|dom| &dom.rules)
            .filter_map(|r| r.backend.as_ref())
            .map(|b| (b.namespace.clone(), b.service.clone()))
            .collect();
        let secrets = members
            .iter()
            .filter_map(|(ns, name)| find(ns, name))
            .flat_map(|i| {
                let ns = i.namespace().unwrap_or_default();
                i.spec
                    .iter()
                    .flat_map(|s| s.tls.iter().flatten())
                    .filter_map(|t| t.secret_name.clone())
                    .map(|n| (ns.clone(), n))
                    .collect::<Vec<_>>()
            })
            .collect();
        Self {
            members,
            services,
            secrets,
            failures,
        }
    }
}

#[derive(Default)]
pub struct Memory {
    stacks: BTreeMap<StackId, StackMemo>,
    ingress_stack: HashMap<Key, StackId>,
    /// Last processed fingerprint of each Ingress (skips our own status/annotation writes).
    fingerprints: HashMap<Key, String>,
    /// Warnings already published per Ingress (so a resync does not repeat them).
    warned: HashMap<Key, BTreeSet<String>>,
}

impl Memory {
    /// Which stacks a batch of changes touches. `current` looks an Ingress up in the watch
    /// cache; `stack_of_deleted` works out the stack of an Ingress being deleted that was never
    /// seen alive.
    pub fn affected(
        &mut self,
        dirty: &BTreeSet<Dirty>,
        index: &Index<'_>,
        current: impl Fn(&str, &str) -> Option<Arc<Ingress>>,
        stack_of_deleted: impl Fn(&Ingress) -> Option<StackId>,
    ) -> BTreeSet<StackId> {
        let mut out = BTreeSet::new();
        if dirty.contains(&Dirty::All) || dirty.contains(&Dirty::Nodes) {
            out.extend(index.stack_ids().cloned());
            out.extend(self.stacks.keys().cloned());
            return out;
        }
        for d in dirty {
            match d {
                Dirty::Ingress(ns, name) => {
                    let key = (ns.clone(), name.clone());
                    let current = current(ns, name);
                    if let Some(ing) = &current {
                        let fp = fingerprint(ing);
                        if self.fingerprints.get(&key) == Some(&fp) {
                            continue;
                        }
                        self.fingerprints.insert(key.clone(), fp);
                    } else {
                        self.fingerprints.remove(&key);
                    }
                    if let Some(s) = index.stack_of(ns, name) {
                        out.insert(s.clone());
                    }
                    if let Some(s) = self.ingress_stack.get(&key) {
                        out.insert(s.clone());
                    } else if let Some(ing) =
                        current.filter(|i| i.metadata.deletion_timestamp.is_some())
                    {
                        // Deleted while we had no memory of it: find its stack from itself.
                        if let Some(s) = stack_of_deleted(&ing) {
                            out.insert(s);
                        }
                    }
                }
                Dirty::Service(ns, name) => {
                    out.extend(self.users(&(ns.clone(), name.clone()), |m| &m.services));
                }
                Dirty::Secret(ns, name) => {
                    out.extend(self.users(&(ns.clone(), name.clone()), |m| &m.secrets));
                }
                Dirty::Stack(id) => {
                    out.insert(id.clone());
                }
                Dirty::Nodes | Dirty::All => {}
            }
        }
        out
    }

    /// The stacks whose memo `uses` contains `key`.
    fn users<'a>(
        &'a self,
        key: &'a Key,
        uses: fn(&StackMemo) -> &BTreeSet<Key>,
    ) -> impl Iterator<Item = StackId> + 'a {
        self.stacks
            .iter()
            .filter(move |(_, m)| uses(m).contains(key))
            .map(|(id, _)| id.clone())
    }

    /// What is remembered of stack `id` (empty when nothing is).
    pub fn stack(&self, id: &StackId) -> StackMemo {
        self.stacks.get(id).cloned().unwrap_or_default()
    }

    /// Remember stack `id` as just reconciled.
    pub fn remember(&mut self, id: &StackId, memo: StackMemo) {
        for m in &memo.members {
            self.ingress_stack.insert(m.clone(), id.clone());
        }
        self.stacks.insert(id.clone(), memo);
    }

    /// Forget stack `id` (gone, or frozen by `mode: skip`).
    pub fn forget(&mut self, id: &StackId) {
        self.stacks.remove(id);
        self.ingress_stack.retain(|_, s| s != id);
    }

    /// Whether the last reconcile of the stack of Ingress `key` failed (its finalizer then
    /// stays until it succeeds).
    /// Is any remembered stack failing (not in its desired state)?
    pub fn any_failing(&self) -> bool {
        self.stacks.values().any(|m| m.failures > 0)
    }

    pub fn stack_failing(&self, key: &Key) -> bool {
        self.ingress_stack
            .get(key)
            .and_then(|s| self.stacks.get(s))
            .is_some_and(|m| m.failures > 0)
    }

    /// Of the problems `now` of Ingress `key`, those not published yet; `now` becomes what is
    /// published.
    pub fn fresh_warnings<'p>(&mut self, key: &Key, now: &[&'p Problem]) -> Vec<&'p Problem> {
        let seen = self.warned.entry(key.clone()).or_default();
        let texts: BTreeSet<String> = now.iter().map(|p| p.to_string()).collect();
        let fresh = now
            .iter()
            .filter(|p| !seen.contains(&p.to_string()))
            .copied()
            .collect();
        *seen = texts;
        fresh
    }
}

/// What of an Ingress matters to its CLB: a change of anything else (our own sync-state and
/// `qcloud-loadbalance-id` annotations, its status) is not worth a reconcile.
pub fn fingerprint(ing: &Ingress) -> String {
    let mut anns: Vec<(&String, &String)> = ing
        .annotations()
        .iter()
        .filter(|(k, _)| k.as_str() != ANN_SYNC_STATE && k.as_str() != ANN_QCLOUD_LB_ID)
        .collect();
    anns.sort();
    format!(
        "{:?}|{:?}|{:?}|{:?}|{}",
        ing.metadata.generation,
        ing.metadata
            .deletion_timestamp
            .as_ref()
            .map(|t| t.0.to_string()),
        ing.finalizers().iter().any(|f| f == FINALIZER),
        anns,
        serde_json::to_string(&ing.spec).unwrap_or_default()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Effect, ObjectRef, Reason, Snapshot};

    fn key(ns: &str, name: &str) -> Key {
        (ns.to_string(), name.to_string())
    }

    fn memory_with(id: &StackId, memo: StackMemo) -> Memory {
        let mut m = Memory::default();
        m.remember(id, memo);
        m
    }

    fn affected(m: &mut Memory, dirty: &[Dirty]) -> BTreeSet<StackId> {
        let snap = Snapshot::new("c");
        let index = Index::new(&snap);
        let dirty = dirty.iter().cloned().collect();
        m.affected(&dirty, &index, |_, _| None, |_| None)
    }

    #[test]
    fn services_secrets_and_members_lead_to_the_stacks_using_them() {
        let id = StackId::ingress("ns", "web");
        let mut m = memory_with(
            &id,
            StackMemo {
                members: BTreeSet::from([key("ns", "web")]),
                services: BTreeSet::from([key("ns", "svc")]),
                secrets: BTreeSet::from([key("ns", "tls")]),
                failures: 0,
            },
        );
        let one = BTreeSet::from([id.clone()]);
        assert_eq!(
            affected(&mut m, &[Dirty::Service("ns".into(), "svc".into())]),
            one
        );
        assert_eq!(
            affected(&mut m, &[Dirty::Secret("ns".into(), "tls".into())]),
            one
        );
        // A deleted member (no longer in the cache) still requeues its stack.
        assert_eq!(
            affected(&mut m, &[Dirty::Ingress("ns".into(), "web".into())]),
            one
        );
        assert_eq!(affected(&mut m, &[Dirty::All]), one);
        assert!(affected(&mut m, &[Dirty::Service("ns".into(), "other".into())]).is_empty());
        m.forget(&id);
        assert!(affected(&mut m, &[Dirty::Ingress("ns".into(), "web".into())]).is_empty());
        assert!(affected(&mut m, &[Dirty::All]).is_empty());
    }

    #[test]
    fn a_failing_stack_holds_its_members() {
        let id = StackId::ingress("ns", "web");
        let memo = |failures| StackMemo {
            members: BTreeSet::from([key("ns", "web")]),
            failures,
            ..Default::default()
        };
        assert!(memory_with(&id, memo(2)).stack_failing(&key("ns", "web")));
        assert!(!memory_with(&id, memo(0)).stack_failing(&key("ns", "web")));
        assert!(!Memory::default().stack_failing(&key("ns", "web")));
    }

    #[test]
    fn warnings_are_fresh_once() {
        let p = |message: &str| Problem {
            object: ObjectRef::namespaced("Ingress", "ns", "web"),
            field: "spec".into(),
            reason: Reason::InvalidHost,
            effect: Effect::Parked,
            message: message.into(),
        };
        let (a, b) = (p("a"), p("b"));
        let mut m = Memory::default();
        let k = key("ns", "web");
        assert_eq!(m.fresh_warnings(&k, &[&a]).len(), 1);
        assert!(m.fresh_warnings(&k, &[&a]).is_empty());
        assert_eq!(m.fresh_warnings(&k, &[&a, &b]), vec![&b]);
        // Gone, then back: published again.
        assert!(m.fresh_warnings(&k, &[]).is_empty());
        assert_eq!(m.fresh_warnings(&k, &[&a]), vec![&a]);
    }

    #[test]
    fn the_fingerprint_ignores_our_sync_state() {
        let mut ing = Ingress::default();
        ing.metadata.generation = Some(1);
        let before = fingerprint(&ing);
        ing.annotations_mut()
            .insert(ANN_SYNC_STATE.into(), "{}".into());
        assert_eq!(fingerprint(&ing), before);
        ing.annotations_mut().insert("x".into(), "y".into());
        assert_ne!(fingerprint(&ing), before);
        ing.finalizers_mut().push(FINALIZER.into());
        assert_ne!(fingerprint(&ing), fingerprint(&Ingress::default()));
    }
}
