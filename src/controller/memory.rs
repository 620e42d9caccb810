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
        let mut services: BTreeSet<Key> = desired
            .iter()
            .flat_map(|d| &d.listeners)
            .flat_map(|l| &l.domains)
            .flat_map(|dom| &dom.rules)
            .filter_map(|r| r.backend.as_ref())
            .map(|b| (b.namespace.clone(), b.service.clone()))
            .collect();
        // Every Service a member names, also those that do not exist (yet): their creation
        // must requeue the stack at once, not at the next resync.
        services.extend(
            members
                .iter()
                .filter_map(|(ns, name)| find(ns, name))
                .flat_map(|i| referenced_services(&i)),
        );
        let secrets = members
            .iter()
            .filter_map(|(ns, name)| find(ns, name))
            .flat_map(|i| {
                let ns = i.namespace().unwrap_or_default();
                tls_secret_names(&i)
                    .map(|n| (ns.clone(), n.to_string()))
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
    /// Last processed fingerprint of each Ingress (skips our own status/annotation writes): a
    /// SHA-256 digest, 32 bytes per Ingress whatever the size of its spec.
    fingerprints: HashMap<Key, Fingerprint>,
    /// Warnings already published per Ingress (so a resync does not repeat them).
    warned: HashMap<Key, BTreeSet<String>>,
    /// Problems that may only be watch-cache lag (see [`may_be_cache_lag`]), not published
    /// yet, and when each was first seen.
    withheld: HashMap<Key, HashMap<String, std::time::Instant>>,
    /// Digest of each Ingress's own part of its CLB when it was last reported (see
    /// [`Memory::served_changed`]).
    served: HashMap<Key, u64>,
}

/// How long a Problem that may only be watch-cache lag (an Ingress seen before its Service or
/// Secret) must persist before its Warning Event is published.
pub const CACHE_LAG_GRACE: std::time::Duration = std::time::Duration::from_secs(3);

/// A Problem that a watch cache lagging behind another produces for a moment: an Ingress
/// created together with its Service or TLS Secret may be seen first.
pub fn may_be_cache_lag(p: &Problem) -> bool {
    matches!(
        p.reason,
        crate::model::Reason::ServiceNotFound | crate::model::Reason::TlsSecretNotFound
    )
}

impl Memory {
    /// Every stack remembered (reconciled at least once and not gone).
    pub fn stack_ids(&self) -> Vec<StackId> {
        self.stacks.keys().cloned().collect()
    }

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
        self.affected_by(dirty, index, current, stack_of_deleted, |_, _| {})
    }

    /// [`Memory::affected`], telling `caused` which item of `dirty` requeued which stack
    /// (not called when everything is requeued by `Dirty::All` or `Dirty::Nodes`).
    pub fn affected_by(
        &mut self,
        dirty: &BTreeSet<Dirty>,
        index: &Index<'_>,
        current: impl Fn(&str, &str) -> Option<Arc<Ingress>>,
        stack_of_deleted: impl Fn(&Ingress) -> Option<StackId>,
        mut caused: impl FnMut(&Dirty, &StackId),
    ) -> BTreeSet<StackId> {
        let mut out = BTreeSet::new();
        if dirty.contains(&Dirty::All) || dirty.contains(&Dirty::Nodes) {
            out.extend(index.stack_ids().cloned());
            out.extend(self.stacks.keys().cloned());
            return out;
        }
        for d in dirty {
            let mut hit: BTreeSet<StackId> = BTreeSet::new();
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
                        // Gone: forget what was published about it (a new Ingress of the same
                        // name starts afresh, and the maps do not grow with deleted objects).
                        self.fingerprints.remove(&key);
                        self.warned.remove(&key);
                        self.withheld.remove(&key);
                        self.served.remove(&key);
                    }
                    if let Some(s) = index.stack_of(ns, name) {
                        hit.insert(s.clone());
                    }
                    if let Some(s) = self.ingress_stack.get(&key) {
                        hit.insert(s.clone());
                    } else if let Some(ing) =
                        current.filter(|i| i.metadata.deletion_timestamp.is_some())
                    {
                        // Deleted while we had no memory of it: find its stack from itself.
                        if let Some(s) = stack_of_deleted(&ing) {
                            hit.insert(s);
                        }
                    }
                }
                Dirty::Service(ns, name) => {
                    hit.extend(self.users(&(ns.clone(), name.clone()), |m| &m.services));
                }
                Dirty::Secret(ns, name) => {
                    hit.extend(self.users(&(ns.clone(), name.clone()), |m| &m.secrets));
                }
                Dirty::Stack(id) => {
                    hit.insert(id.clone());
                }
                Dirty::Nodes | Dirty::All | Dirty::GatewayApi => {}
            }
            for s in hit {
                caused(d, &s);
                out.insert(s);
            }
        }
        out
    }

    /// Record the fingerprint of every Ingress a full pass builds its jobs from: its watch
    /// events that change nothing that matters (our own status and sync-state writes after a
    /// restart above all) are then skipped instead of reconciling their stacks again (without
    /// the warm-restart listing, reading their CLBs in full).
    pub fn seen_in_full_pass<'a>(&mut self, ingresses: impl IntoIterator<Item = &'a Arc<Ingress>>) {
        for ing in ingresses {
            let key = (
                ing.metadata.namespace.clone().unwrap_or_default(),
                ing.metadata.name.clone().unwrap_or_default(),
            );
            self.fingerprints.insert(key, fingerprint(ing));
        }
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
        self.fresh_warnings_after(
            key,
            now,
            std::time::Instant::now(),
            std::time::Duration::ZERO,
        )
        .0
    }

    /// Like [`Memory::fresh_warnings`], but a Problem that [`may_be_cache_lag`] is withheld
    /// until it has persisted for `grace` (measured from its first sighting to `at`). Also
    /// returns when to look again for the withheld ones (None: nothing withheld).
    pub fn fresh_warnings_after<'p>(
        &mut self,
        key: &Key,
        now: &[&'p Problem],
        at: std::time::Instant,
        grace: std::time::Duration,
    ) -> (Vec<&'p Problem>, Option<std::time::Duration>) {
        let seen = self.warned.entry(key.clone()).or_default();
        let withheld = self.withheld.entry(key.clone()).or_default();
        let texts: BTreeSet<String> = now.iter().map(|p| p.to_string()).collect();
        withheld.retain(|t, _| texts.contains(t));
        let mut published = BTreeSet::new();
        let mut fresh = Vec::new();
        let mut recheck: Option<std::time::Duration> = None;
        for p in now {
            let text = p.to_string();
            if !seen.contains(&text) && may_be_cache_lag(p) && !grace.is_zero() {
                let since = *withheld.entry(text.clone()).or_insert(at);
                let waited = at.saturating_duration_since(since);
                if waited < grace {
                    let left = grace - waited;
                    recheck = Some(recheck.map_or(left, |r| r.min(left)));
                    continue;
                }
            }
            withheld.remove(&text);
            if !seen.contains(&text) {
                fresh.push(*p);
            }
            published.insert(text);
        }
        *seen = published;
        if withheld.is_empty() {
            self.withheld.remove(key);
        }
        (fresh, recheck)
    }

    /// Record `digest` as what Ingress `key` is served on now; true when it differs from the
    /// one recorded before (or none was).
    pub fn served_changed(&mut self, key: &Key, digest: u64) -> bool {
        self.served.insert(key.clone(), digest) != Some(digest)
    }
}

/// The stacks whose Ingresses in this pass's view (`ingresses`, placed on stacks by `placed`)
/// name a Service or TLS Secret of `dirty`, with the item that names them. [`Memory`] learns what
/// a stack uses only when its reconcile ends: a Service or EndpointSlice event that arrives while
/// a stack's first reconcile (or the one after its Ingress named another Service) still runs
/// from an older snapshot finds no user there, and without this the change would wait for the
/// next resync. Only the namespaces of `dirty`'s Services and Secrets are looked into.
pub fn named_in_view<'a>(
    dirty: &'a BTreeSet<Dirty>,
    ingresses: &[Arc<Ingress>],
    placed: impl Iterator<Item = ((&'a str, &'a str), &'a StackId)>,
) -> Vec<(&'a Dirty, StackId)> {
    let mut wanted: HashMap<(&str, &str, bool), &Dirty> = HashMap::new();
    for d in dirty {
        match d {
            Dirty::Service(ns, n) => wanted.insert((ns, n, false), d),
            Dirty::Secret(ns, n) => wanted.insert((ns, n, true), d),
            _ => None,
        };
    }
    if wanted.is_empty() {
        return Vec::new();
    }
    let namespaces: BTreeSet<&str> = wanted.keys().map(|(ns, _, _)| *ns).collect();
    let mut naming: HashMap<(&str, &str), Vec<&Dirty>> = HashMap::new();
    for ing in ingresses {
        let ns = ing.metadata.namespace.as_deref().unwrap_or_default();
        if !namespaces.contains(ns) || ing.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let services = referenced_services(ing);
        let secrets = tls_secret_names(ing);
        let hits: Vec<&Dirty> = services
            .iter()
            .filter_map(|(_, n)| wanted.get(&(ns, n.as_str(), false)))
            .chain(secrets.filter_map(|n| wanted.get(&(ns, n, true))))
            .copied()
            .collect();
        if !hits.is_empty() {
            let name = ing.metadata.name.as_deref().unwrap_or_default();
            naming.insert((ns, name), hits);
        }
    }
    if naming.is_empty() {
        return Vec::new();
    }
    placed
        .filter_map(|(key, id)| naming.get(&key).map(|ds| (ds, id)))
        .flat_map(|(ds, id)| ds.iter().map(move |d| (*d, id.clone())))
        .collect()
}

/// The TLS Secrets `ing` names (`spec.tls[].secretName`, in its namespace).
pub fn tls_secret_names(ing: &Ingress) -> impl Iterator<Item = &str> {
    ing.spec
        .iter()
        .flat_map(|s| s.tls.iter().flatten())
        .filter_map(|t| t.secret_name.as_deref())
}

/// Every Service `ing` names (default backend and path backends), whether it exists or not.
pub fn referenced_services(ing: &Ingress) -> Vec<Key> {
    let ns = ing.namespace().unwrap_or_default();
    let Some(spec) = ing.spec.as_ref() else {
        return Vec::new();
    };
    let default = spec.default_backend.iter();
    let paths = spec
        .rules
        .iter()
        .flatten()
        .filter_map(|r| r.http.as_ref())
        .flat_map(|h| &h.paths)
        .map(|p| &p.backend);
    default
        .chain(paths)
        .filter_map(|b| b.service.as_ref())
        .map(|s| (ns.clone(), s.name.clone()))
        .chain(
            crate::model::build::canary::action_services(ing)
                .into_iter()
                .map(|s| (ns.clone(), s)),
        )
        .collect()
}

/// The SHA-256 digest of what of an Ingress matters to its CLB (see [`fingerprint`]).
pub type Fingerprint = [u8; 32];

/// What of an Ingress matters to its CLB: a change of anything else (our own sync-state and
/// `qcloud-loadbalance-id` annotations, its status) is not worth a reconcile. Kept as a digest
/// so memory does not hold a second copy of every spec.
pub fn fingerprint(ing: &Ingress) -> Fingerprint {
    use sha2::Digest;
    let mut anns: Vec<(&String, &String)> = ing
        .annotations()
        .iter()
        .filter(|(k, _)| k.as_str() != ANN_SYNC_STATE && k.as_str() != ANN_QCLOUD_LB_ID)
        .collect();
    anns.sort();
    let text = format!(
        "{:?}|{:?}|{:?}|{:?}|{}",
        ing.metadata.generation,
        ing.metadata
            .deletion_timestamp
            .as_ref()
            .map(|t| t.0.to_string()),
        ing.finalizers().iter().any(|f| f == FINALIZER),
        anns,
        serde_json::to_string(&ing.spec).unwrap_or_default()
    );
    sha2::Sha256::digest(text.as_bytes()).into()
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
    fn a_missing_service_warning_waits_for_the_grace_and_other_warnings_do_not() {
        let p = |reason| Problem {
            object: ObjectRef::namespaced("Ingress", "ns", "web"),
            field: "spec.rules[0]".into(),
            reason,
            effect: Effect::PathUnserved,
            message: "m".into(),
        };
        let (lag, bad) = (p(Reason::ServiceNotFound), p(Reason::InvalidPath));
        let grace = std::time::Duration::from_secs(3);
        let t0 = std::time::Instant::now();
        let mut m = Memory::default();
        let k = key("ns", "web");
        let (fresh, again) = m.fresh_warnings_after(&k, &[&lag, &bad], t0, grace);
        assert_eq!(fresh, vec![&bad]);
        assert_eq!(again, Some(grace));
        let (fresh, again) = m.fresh_warnings_after(&k, &[&lag, &bad], t0 + grace / 3, grace);
        assert!(fresh.is_empty());
        assert_eq!(again, Some(grace - grace / 3));
        // Persisted for the whole grace: published once.
        let (fresh, again) = m.fresh_warnings_after(&k, &[&lag, &bad], t0 + grace, grace);
        assert_eq!((fresh, again), (vec![&lag], None));
        assert!(
            m.fresh_warnings_after(&k, &[&lag], t0 + grace * 2, grace)
                .0
                .is_empty()
        );
        // Gone within the grace (the Service arrived): never published, nothing to recheck.
        let k2 = key("ns", "other");
        assert!(m.fresh_warnings_after(&k2, &[&lag], t0, grace).0.is_empty());
        assert_eq!(
            m.fresh_warnings_after(&k2, &[], t0 + grace, grace),
            (vec![], None)
        );
        assert!(
            m.fresh_warnings_after(&k2, &[&lag], t0 + grace, grace)
                .0
                .is_empty()
        );
    }

    #[test]
    fn an_ingress_is_told_of_a_change_only_when_its_own_digest_changes() {
        let mut m = Memory::default();
        let k = key("ns", "web");
        assert!(m.served_changed(&k, 1));
        assert!(!m.served_changed(&k, 1));
        assert!(m.served_changed(&k, 2));
        // Deleted (no longer in the cache), then created again: it hears of its first change.
        affected(&mut m, &[Dirty::Ingress("ns".into(), "web".into())]);
        assert!(m.served_changed(&k, 2));
    }

    #[test]
    fn every_named_service_is_a_reference_even_when_it_does_not_exist() {
        let ing: Ingress = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web", "namespace": "ns"},
            "spec": {"defaultBackend": {"service": {"name": "dflt", "port": {"number": 80}}},
                     "rules": [{"http": {"paths": [{"path": "/", "pathType": "Prefix",
                        "backend": {"service": {"name": "ghost", "port": {"number": 80}}}}]}}]}
        }))
        .unwrap();
        assert_eq!(
            referenced_services(&ing),
            vec![key("ns", "dflt"), key("ns", "ghost")]
        );
        let memo = StackMemo::new(
            None,
            BTreeSet::from([key("ns", "web")]),
            |_, _| Some(Arc::new(ing.clone())),
            0,
        );
        let id = StackId::ingress("ns", "web");
        let mut m = memory_with(&id, memo);
        assert_eq!(
            affected(&mut m, &[Dirty::Service("ns".into(), "ghost".into())]),
            BTreeSet::from([id])
        );
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

    #[test]
    fn a_changed_service_or_secret_requeues_the_stacks_of_the_ingresses_naming_it_before_memory_knows_them()
     {
        let ing = |ns: &str, name: &str, svc: &str, tls: &str| -> Arc<Ingress> {
            Arc::new(
                serde_json::from_value(serde_json::json!({
                    "metadata": {"namespace": ns, "name": name},
                    "spec": {"tls": [{"secretName": tls}], "rules": [{"http": {"paths": [
                        {"path": "/", "pathType": "Prefix",
                         "backend": {"service": {"name": svc, "port": {"number": 80}}}}]}}]}
                }))
                .unwrap(),
            )
        };
        let seen = vec![
            ing("a", "web", "db", "web-tls"),
            ing("a", "api", "api", "api-tls"),
            // Same names in another namespace: not the ones that changed.
            ing("b", "web", "db", "web-tls"),
        ];
        let (web, api, other) = (
            StackId::ingress("a", "web"),
            StackId::ingress("a", "api"),
            StackId::ingress("b", "web"),
        );
        let placed = [
            (("a", "web"), &web),
            (("a", "api"), &api),
            (("b", "web"), &other),
        ];
        let dirty = BTreeSet::from([
            Dirty::Service("a".into(), "db".into()),
            Dirty::Secret("a".into(), "api-tls".into()),
            Dirty::Service("a".into(), "nobody".into()),
        ]);
        let mut hits: Vec<(Dirty, StackId)> = named_in_view(&dirty, &seen, placed.into_iter())
            .into_iter()
            .map(|(d, id)| (d.clone(), id))
            .collect();
        hits.sort();
        // (Dirty orders Services before Secrets.)
        assert_eq!(
            hits,
            vec![
                (Dirty::Service("a".into(), "db".into()), web.clone()),
                (Dirty::Secret("a".into(), "api-tls".into()), api.clone()),
            ]
        );
        // Memory alone (nothing reconciled yet) finds none of them.
        let mut m = Memory::default();
        assert!(affected(&mut m, &dirty.iter().cloned().collect::<Vec<_>>()).is_empty());
        // An Ingress event or a Nodes change names no Service: nothing extra.
        let other_dirty = BTreeSet::from([Dirty::Ingress("a".into(), "web".into()), Dirty::Nodes]);
        assert!(named_in_view(&other_dirty, &seen, placed.into_iter()).is_empty());
    }
}
