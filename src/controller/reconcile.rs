//! One stack at a time: build its desired CLB, deploy it, report to its Ingresses, remember it,
//! release the finalizers of Ingresses that left it; and, on full passes, prune CLBs no stack
//! uses and release Ingresses no longer managed. `mode: skip` stacks are frozen: only a skipped
//! Ingress being deleted gets its CLB marked retained before its finalizer goes.

use super::Controller;
use super::error::{ControllerError, Retry};
use super::memory::{CACHE_LAG_GRACE, Key, StackMemo};
use super::queue::{Dirty, Job, earliest, retry_delay, retry_later};
use crate::deploy::DeployError;
use crate::model::{self, Index, StackId};
use k8s_openapi::api::networking::v1::Ingress;
use kube::ResourceExt;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Instant;
use tracing::{debug, info, instrument};

/// An Ingress being deleted and the stack it belonged to (if it can still be worked out).
pub type Deleted = (Arc<Ingress>, Option<StackId>);

/// Marked `ingress.cloud.tencent.com/mode: skip` and being deleted.
pub(super) fn is_deleted_skip(ing: &Ingress) -> bool {
    ing.metadata.deletion_timestamp.is_some()
        && ing
            .annotations()
            .get(model::build::ANN_MODE)
            .map(String::as_str)
            == Some("skip")
}

/// The Problems about Ingresses, by Ingress.
fn by_ingress(problems: &[model::Problem]) -> BTreeMap<Key, Vec<&model::Problem>> {
    let mut out: BTreeMap<Key, Vec<&model::Problem>> = BTreeMap::new();
    for p in problems.iter().filter(|p| p.object.kind == "Ingress") {
        out.entry((
            p.object.namespace.clone().unwrap_or_default(),
            p.object.name.clone(),
        ))
        .or_default()
        .push(p);
    }
    out
}

/// A digest of what Ingress `ing` is served on: the CLB, and the domains of its own hosts
/// (`*` for host-less rules and the default backend) on the listeners it uses. Equal digests
/// mean a reconcile changed nothing of this Ingress, even when it changed its shared CLB.
pub(super) fn served_digest(
    desired: Option<&model::DesiredLb>,
    ing: &Ingress,
    outcome: &crate::deploy::Outcome,
) -> u64 {
    use std::hash::{Hash, Hasher};
    let (ns, name) = (ing.namespace().unwrap_or_default(), ing.name_any());
    let mut hosts: BTreeSet<String> = BTreeSet::new();
    if let Some(spec) = &ing.spec {
        if spec.default_backend.is_some() {
            hosts.insert("*".into());
        }
        for r in spec.rules.iter().flatten() {
            hosts.insert(r.host.clone().unwrap_or_else(|| "*".into()));
        }
    }
    let mut h = std::hash::DefaultHasher::new();
    outcome.lb_id.hash(&mut h);
    outcome.vips.hash(&mut h);
    if let Some(d) = desired {
        let Some(member) = d.members.iter().find(|m| {
            m.ingress.namespace.as_deref() == Some(ns.as_str()) && m.ingress.name == name
        }) else {
            return h.finish();
        };
        for l in &d.listeners {
            if !member.ports.contains(&(l.protocol, l.port)) {
                continue;
            }
            for dom in l.domains.iter().filter(|dom| hosts.contains(&dom.host)) {
                (l.protocol.as_str(), l.port).hash(&mut h);
                serde_json::to_string(dom).unwrap_or_default().hash(&mut h);
            }
        }
    }
    h.finish()
}

/// Tries to add or remove the finalizer while other writers keep changing the Ingress (409).
const FINALIZER_ATTEMPTS: usize = 3;
/// Wait before retrying on a conflict, for the watch cache to see the other write.
const FINALIZER_RETRY: std::time::Duration = std::time::Duration::from_millis(100);

impl Controller {
    /// Add our finalizer (see [`Controller::finalizer_write`]).
    async fn ensure_finalizer(&self, ing: Arc<Ingress>) -> Result<(), ControllerError> {
        self.finalizer_write(ing, true).await
    }

    /// Add (`add`) or remove our finalizer. The write is guarded by the resourceVersion; on a
    /// conflict (another writer changed the Ingress since this pass read it) it is retried
    /// with the watch cache's newer copy.
    async fn finalizer_write(&self, ing: Arc<Ingress>, add: bool) -> Result<(), ControllerError> {
        let (ns, name) = (ing.namespace().unwrap_or_default(), ing.name_any());
        let mut current = ing;
        let mut attempt = 1;
        loop {
            let result = if add {
                self.reporter.ensure_finalizer(&current).await
            } else {
                self.reporter.remove_finalizer(&current).await
            };
            match result {
                Err(e) if e.is_conflict() && attempt < FINALIZER_ATTEMPTS => {
                    attempt += 1;
                    tokio::time::sleep(FINALIZER_RETRY).await;
                    match self.snapshots.ingress(&ns, &name) {
                        Some(latest) if latest.metadata.uid == current.metadata.uid => {
                            current = latest;
                        }
                        // Gone, or replaced by another object of that name (whose own pass
                        // handles it): nothing left to do for this one.
                        _ => return Ok(()),
                    }
                }
                other => return other,
            }
        }
    }

    /// Report the Ingresses of our classes that are on no CLB because of a Problem found
    /// while assigning stacks (an adoption the class does not allow, a malformed class
    /// parameter): bounded Warnings for the new ones, and the sync state.
    pub async fn report_unplaced(&self, index: &Index<'_>, seen: &[Arc<Ingress>]) {
        let by_ingress = by_ingress(index.global_problems());
        if by_ingress.is_empty() {
            return;
        }
        let ingresses: BTreeMap<Key, &Arc<Ingress>> = seen
            .iter()
            .map(|i| ((i.namespace().unwrap_or_default(), i.name_any()), i))
            .collect();
        for (key, problems) in by_ingress {
            let Some(ing) = ingresses.get(&key) else {
                continue;
            };
            let fresh = self.memory.lock().await.fresh_warnings(&key, &problems);
            for e in self.reporter.report_unplaced(ing, &problems, &fresh).await {
                self.failed(&e);
            }
        }
    }

    /// Log a failure and count it by category.
    pub(super) fn failed(&self, error: &ControllerError) {
        error.log();
        self.hooks.failed(error);
    }

    /// Remove our finalizer from `ing`, logging a failure.
    async fn release(&self, ing: &Ingress) {
        match self.finalizer_write(Arc::new(ing.clone()), false).await {
            // Already gone: its deletion finished without us; nothing failed.
            Err(e) if e.is_not_found() => e.log(),
            Err(e) => self.failed(&e),
            Ok(()) => {}
        }
    }

    /// Reconcile one stack ([`Job`]): finalizers, deploy, report, remember, release. A job
    /// built from an older snapshot than one already reconciled for its stack is dropped.
    #[instrument(level = "info", skip_all, fields(stack = %job.id))]
    pub(super) async fn reconcile_stack(&self, job: Job) {
        let id = &job.id;
        let lock = self.locks.get(id);
        let _writer = lock.lock().await;
        if !self.newest(id, job.seq) {
            debug!(seq = job.seq, "superseded by a newer snapshot");
            self.carry_events(id, job.since);
            return;
        }
        // The earliest watch event this job makes live, counting ones of failed earlier jobs.
        let since = earliest(job.since, self.take_carried_events(id));
        let started = Instant::now();
        let view = job.view.clone();
        let deleted = &view.deleted;
        // mode: skip — nothing is written for a frozen stack; a skipped Ingress being deleted
        // only gets its CLB marked retained, then its finalizer released.
        let deleted_skipped: Vec<&Arc<Ingress>> = deleted
            .iter()
            .filter(|(i, s)| is_deleted_skip(i) && s.as_ref() == Some(id))
            .map(|(i, _)| i)
            .collect();
        if job.frozen || !deleted_skipped.is_empty() {
            // Nothing is written for a frozen stack: its events never go live.
            for ing in deleted_skipped {
                if self.keep_frozen_clb(Some(id)).await {
                    self.release(ing).await;
                }
            }
            // Forget the stack: a frozen stack is never reconciled, not even as "gone".
            self.memory.lock().await.forget(id);
            debug!("frozen (mode: skip)");
            return;
        }
        let (desired, problems) = (job.desired, job.problems);
        let memo = self.memory.lock().await.stack(id);
        let find = |ns: &str, name: &str| view.find(ns, name);
        // A Gateway stack's member is its Gateway, no Ingress.
        let members: BTreeSet<Key> = desired
            .iter()
            .flat_map(|d| &d.members)
            .filter(|m| m.ingress.kind == "Ingress")
            .map(|m| {
                (
                    m.ingress.namespace.clone().unwrap_or_default(),
                    m.ingress.name.clone(),
                )
            })
            .collect();
        // Finalizers go on before any cloud object exists for an Ingress: no cloud write for a
        // stack while one of its Ingresses lacks ours (retried with backoff).
        let mut finalizer_missing = None;
        for (ns, name) in &members {
            if let Some(ing) = find(ns, name)
                && let Err(e) = self.ensure_finalizer(ing).await
            {
                match finalizer_missing {
                    None => finalizer_missing = Some(e),
                    Some(_) => self.failed(&e),
                }
            }
        }
        let result = match finalizer_missing {
            Some(e) => Err(e),
            None => match job
                .listing
                .as_ref()
                .and_then(|l| self.deployer.warm_outcome(id, desired.as_ref(), l))
            {
                // Its CLB's desired-state tag proves it is in sync: nothing is read.
                Some(outcome) => Ok(outcome),
                None => self
                    .deployer
                    .reconcile(id, desired.as_ref())
                    .await
                    .map_err(ControllerError::Deploy),
            },
        };
        // The certificate must be uploaded again but its key left memory after the first
        // upload: read the Secret again (a Secret change does that) and retry; nothing to
        // report, nothing failed.
        if let Err(ControllerError::Deploy(DeployError::KeyDropped { secret, .. })) = &result {
            info!(%secret, "a certificate is gone from the account: reading its Secret again to upload it");
            self.carry_events(id, since);
            if let Some((ns, name)) = secret.split_once('/') {
                let _ = self
                    .tx
                    .send(Dirty::Secret(ns.to_string(), name.to_string()));
            }
            return;
        }
        if let (Ok(_), Some(d)) = (&result, desired.as_ref()) {
            let rules: Vec<(String, usize)> = d
                .listeners
                .iter()
                .map(|l| {
                    let n = l.domains.iter().map(|dom| dom.rules.len()).sum();
                    (format!("{}:{}", l.protocol.as_str(), l.port), n)
                })
                .collect();
            self.hooks.listener_rules(id, &rules);
            let n = self.snapshots.drop_uploaded_keys(d).await;
            if n > 0 {
                debug!(keys = n, "private keys dropped from memory after upload");
            }
        }
        if let Ok(o) = &result {
            self.gates.record(id, o.lb_id.as_deref(), desired.as_ref());
        }
        let ok = result.is_ok();
        match &result {
            // Live: the CLB now serves what the events asked for.
            Ok(o) if o.changes > 0 => {
                if let Some(t) = since {
                    self.hooks.event_live(t.elapsed());
                }
            }
            // Nothing to change: the events asked for nothing new on the CLB (or an earlier
            // job made it live and was measured).
            Ok(_) => {}
            Err(_) => self.carry_events(id, since),
        }
        let pending = match &result {
            Ok(_) => 0,
            Err(_) => 1,
        };
        // Report on every Ingress of the stack (and those that just left it). A status or
        // sync-state write that failed requeues the stack with backoff.
        let mut report_failed = false;
        // When to look again at Problems whose Warning is withheld as possible cache lag.
        let mut recheck: Option<std::time::Duration> = None;
        let by_ingress = by_ingress(&problems);
        for (ns, name) in members.iter().chain(by_ingress.keys()) {
            let Some(ing) = find(ns, name) else { continue };
            let ports = desired
                .iter()
                .flat_map(|d| &d.members)
                .find(|m| m.ingress.namespace.as_deref() == Some(ns) && m.ingress.name == *name)
                .map(|m| m.ports.clone())
                .unwrap_or_default();
            let key = (ns.clone(), name.clone());
            let mine = by_ingress.get(&key).cloned().unwrap_or_default();
            let (new_warnings, own_change) = {
                let mut mem = self.memory.lock().await;
                let (fresh, again) = mem.fresh_warnings_after(
                    &key,
                    &mine,
                    std::time::Instant::now(),
                    CACHE_LAG_GRACE,
                );
                recheck = match (recheck, again) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                // Only an Ingress whose own part of the CLB changed hears about the change.
                let own_change = match &result {
                    Ok(o) => mem.served_changed(&key, served_digest(desired.as_ref(), &ing, o)),
                    Err(_) => false,
                };
                (fresh, own_change)
            };
            for e in self
                .reporter
                .report(&ing, &result, &ports, &mine, &new_warnings, own_change)
                .await
            {
                report_failed |= e.retry() == Retry::Backoff;
                self.failed(&e);
            }
        }
        if let Some(gs) = &job.gateway {
            report_failed |= !self.report_gateway(gs, &result).await;
        }
        // Ingresses that left the stack (deleted, moved, unmanaged): release them.
        if ok {
            for (ns, name) in memo.members.difference(&members) {
                if let Some(ing) = find(ns, name)
                    && (ing.metadata.deletion_timestamp.is_some() || !view.is_placed(ns, name))
                {
                    self.release(&ing).await;
                }
            }
            for (ing, _) in deleted.iter().filter(|(_, s)| s.as_ref() == Some(id)) {
                self.release(ing).await;
            }
        }
        let ingresses = members
            .iter()
            .map(|(ns, name)| format!("{ns}/{name}"))
            .collect::<Vec<_>>()
            .join(",");
        let mut mem = self.memory.lock().await;
        if desired.is_none() && ok {
            mem.forget(id);
            self.hooks.stack_gone(id);
        } else {
            let failures = if ok && !report_failed {
                0
            } else {
                memo.failures + 1
            };
            mem.remember(
                id,
                StackMemo::new(desired.as_ref(), members, find, failures),
            );
            let deploy_retry = matches!(&result, Err(e) if e.retry() == Retry::Backoff);
            if deploy_retry || report_failed {
                retry_later(&self.tx, id.clone(), retry_delay(failures));
            } else if let Some(after) = recheck {
                retry_later(&self.tx, id.clone(), after);
            }
        }
        drop(mem);
        // One structured line per reconcile: INFO when it changed the CLB or failed, DEBUG
        // when the CLB was already in sync (a resync of many stacks stays quiet).
        let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        match &result {
            Ok(o) if o.changes > 0 || !o.conflicts.is_empty() => info!(
                ingresses = %ingresses,
                lb = o.lb_id.as_deref().unwrap_or(""),
                changes = o.changes,
                calls = o.write_calls,
                conflicts = o.conflicts.len(),
                problems = problems.len(),
                duration_ms,
                outcome = "applied",
                "reconciled"
            ),
            Ok(o) => debug!(
                ingresses = %ingresses,
                lb = o.lb_id.as_deref().unwrap_or(""),
                problems = problems.len(),
                duration_ms,
                outcome = "in-sync",
                "reconciled"
            ),
            Err(e) => info!(
                ingresses = %ingresses,
                duration_ms,
                outcome = "failed",
                category = e.category(),
                "reconciled"
            ),
        }
        if let Err(e) = &result {
            self.failed(e);
        }
        self.hooks.reconciled(id, ok, started.elapsed(), pending);
    }

    /// Keep the time of a job's earliest watch event for the stack's next job (this one
    /// failed or was superseded before its changes went live).
    fn carry_events(&self, id: &StackId, since: Option<Instant>) {
        let Some(t) = since else { return };
        let mut carried = self
            .unapplied_events
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let at = carried.entry(id.clone()).or_insert(t);
        *at = (*at).min(t);
    }

    /// The carried event time of stack `id`, removed.
    fn take_carried_events(&self, id: &StackId) -> Option<Instant> {
        self.unapplied_events
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(id)
    }

    /// Is a job from snapshot `seq` not older than the last one reconciled for `id`? Records
    /// it as the last one when it is.
    fn newest(&self, id: &StackId, seq: u64) -> bool {
        let mut done = self
            .done
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match done.get(id) {
            Some(last) if *last > seq => false,
            _ => {
                done.insert(id.clone(), seq);
                true
            }
        }
    }

    /// Delete CLBs clb-ingress created for this cluster whose stack hash is not `wanted`.
    /// `listing`: this cluster's CLBs as listed at the start of the pass (None: list them).
    pub(super) async fn prune(
        &self,
        wanted: &BTreeSet<String>,
        keep_prefix: Option<&str>,
        listing: Option<&crate::deploy::Listing>,
    ) {
        let lbs = match listing {
            Some(l) => l.lbs().to_vec(),
            None => match self.deployer.owned_lbs().await {
                Ok(l) => l,
                Err(e) => {
                    self.failed(&ControllerError::ListOwnedLbs(e));
                    return;
                }
            },
        };
        for lb in lbs {
            let Some(tag) = lb
                .tags
                .iter()
                .find(|t| t.tag_key == model::ids::TAG_STACK)
                .map(|t| t.tag_value.clone())
            else {
                continue;
            };
            if wanted.contains(&tag)
                || model::ids::is_retained_name(&lb.load_balancer_name)
                || keep_prefix.is_some_and(|p| lb.load_balancer_name.starts_with(p))
            {
                // Retained CLBs (loadbalance-retain) are the user's now.
                continue;
            }
            info!(lb = %lb.load_balancer_id, "deleting a CLB no Ingress uses any more");
            if let Err(source) = self.deployer.prune(&lb, &tag).await {
                self.failed(&ControllerError::Prune {
                    lb: lb.load_balancer_id.clone(),
                    source,
                });
            }
        }
    }

    /// Remove our finalizer from Ingresses we no longer manage (deleted or moved to another
    /// class) once their stacks have been reconciled.
    pub(super) async fn release_unmanaged(&self, unmanaged: &[Arc<Ingress>], deleted: &[Deleted]) {
        for ing in unmanaged {
            let (ns, name) = (ing.namespace().unwrap_or_default(), ing.name_any());
            let stack = deleted
                .iter()
                .find(|(d, _)| Arc::ptr_eq(d, ing))
                .and_then(|(_, s)| s.as_ref());
            if is_deleted_skip(ing) && !self.keep_frozen_clb(stack).await {
                continue;
            }
            let pending = self.memory.lock().await.stack_failing(&(ns, name));
            if !pending {
                self.release(ing).await;
            }
        }
    }

    /// A deleted Ingress marked `ingress.cloud.tencent.com/mode: skip`: its CLB must outlive
    /// it (TKE deletes nothing of a skipped Ingress), so mark the CLB retained by its name,
    /// the only change made. True when done (the finalizer may then go).
    async fn keep_frozen_clb(&self, stack: Option<&StackId>) -> bool {
        let Some(id) = stack else {
            return true;
        };
        match self.deployer.retain_lbs(id).await {
            Ok(()) => true,
            Err(source) => {
                self.failed(&ControllerError::Retain {
                    stack: id.clone(),
                    source,
                });
                false
            }
        }
    }
}
