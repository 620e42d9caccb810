//! The work queue: [`Dirty`] events from the watchers, coalesced by a debounce window into
//! passes; a pass ([`Controller::process`]) fans the stacks it touches out to workers (bounded
//! concurrency, one writer per stack at a time); a stack whose reconcile failed is requeued
//! after an exponential backoff.

use super::Controller;
use super::reconcile::Deleted;
use crate::model::{self, Index, StackId};
use futures::StreamExt;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};
use tracing::{debug, instrument};

/// CLBs a drift resync reconciles at once: resyncs run beside user changes and must leave them
/// most of the API rate limit.
pub const RESYNC_CONCURRENCY: usize = 2;
/// Event passes running at once. A pass runs in its own task, so intake, leadership changes and
/// shutdown never wait behind a slow cloud call; events arriving meanwhile are gathered for the
/// next pass. One at a time, so that a pass with an older snapshot can never write after one
/// with a newer snapshot.
pub const MAX_EVENT_PASSES: usize = 1;
/// Delay before retrying a stack whose reconcile failed (doubles up to the cap).
pub const RETRY_BASE: Duration = Duration::from_secs(1);
pub const RETRY_CAP: Duration = Duration::from_secs(60);

/// What changed (from the watchers) or what to redo.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Dirty {
    Ingress(String, String),
    Service(String, String),
    Secret(String, String),
    Nodes,
    Stack(StackId),
    All,
}

/// Add `first` and everything else that arrives on `rx` within `window` to `pending`.
pub async fn debounce(
    rx: &mut UnboundedReceiver<Dirty>,
    first: Dirty,
    window: Duration,
    pending: &mut BTreeSet<Dirty>,
) {
    pending.insert(first);
    let until = tokio::time::Instant::now() + window;
    while let Ok(Some(d)) = tokio::time::timeout_at(until, rx.recv()).await {
        pending.insert(d);
    }
}

/// One writer per CLB: user changes and the resync sweep may reconcile concurrently, but never
/// the same stack at once.
#[derive(Default)]
pub struct StackLocks(std::sync::Mutex<HashMap<StackId, Arc<Mutex<()>>>>);

impl StackLocks {
    /// The lock of stack `id`.
    pub fn get(&self, id: &StackId) -> Arc<Mutex<()>> {
        let mut locks = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        locks.entry(id.clone()).or_default().clone()
    }
}

/// How long a stack that failed `failures` times in a row waits before its next try.
pub fn retry_delay(failures: u32) -> Duration {
    RETRY_BASE
        .saturating_mul(1 << failures.min(6))
        .min(RETRY_CAP)
}

/// Requeue stack `id` after `delay`.
pub fn retry_later(tx: &UnboundedSender<Dirty>, id: StackId, delay: Duration) {
    let tx = tx.clone();
    tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        let _ = tx.send(Dirty::Stack(id));
    });
}

impl Controller {
    /// One pass: reconcile the stacks `dirty` touches (all of them, plus pruning and finalizer
    /// release, when `full`), `concurrency` stacks at a time.
    #[instrument(level = "debug", skip_all, fields(full, n = dirty.len()))]
    pub async fn process(&self, dirty: BTreeSet<Dirty>, full: bool, concurrency: usize) {
        debug!(?dirty, full, "processing");
        // One view of the Ingresses for the whole pass: finalizers are only released for what
        // this pass has seen deleted (a deletion after this point gets its own pass).
        let seen = self.snapshots.ingresses();
        // The stack of each Ingress being deleted, worked out once per pass.
        let deleted: Vec<Deleted> = seen
            .iter()
            .filter(|i| i.metadata.deletion_timestamp.is_some())
            .map(|i| (i.clone(), self.snapshots.stack_of_deleted(i)))
            .collect();
        let built = self.snapshots.build(&seen).await;
        for e in &built.errors {
            self.failed(e);
        }
        let snap = built.snap;
        let index = Index::new(&snap);
        self.snapshots.forget_secrets(&dirty).await;
        let mut stacks = self.memory.lock().await.affected(
            &dirty,
            &index,
            |ns, name| self.snapshots.ingress(ns, name),
            |ing| self.snapshots.stack_of_deleted(ing),
        );
        debug!(?stacks, "affected stacks");
        if full {
            stacks.extend(index.stack_ids().cloned());
        }
        // A stack that needs a Secret that could not be read waits (and is retried) instead of
        // being planned as if the Secret were gone.
        for ing in snap
            .ingresses
            .iter()
            .filter(|_| !built.unreadable.is_empty())
        {
            let ns = ing.metadata.namespace.clone().unwrap_or_default();
            let needs_unreadable = ing
                .spec
                .iter()
                .flat_map(|s| s.tls.iter().flatten())
                .filter_map(|t| t.secret_name.clone())
                .any(|n| built.unreadable.contains(&(ns.clone(), n)));
            if needs_unreadable
                && let Some(id) = index.stack_of(&ns, ing.metadata.name.as_deref().unwrap_or(""))
                && stacks.remove(id)
            {
                debug!(stack = %id, "held back: a Secret it needs could not be read");
                retry_later(&self.tx, id.clone(), retry_delay(1));
            }
        }
        self.hooks.queue_depth(stacks.len());
        let mut problems: BTreeMap<&'static str, usize> = BTreeMap::new();
        for p in index.global_problems() {
            *problems.entry(p.reason.as_str()).or_default() += 1;
        }
        let results: Vec<(StackId, Vec<model::Problem>)> = futures::stream::iter(stacks)
            .map(|id| {
                let index = &index;
                let seen = &seen;
                let deleted = &deleted;
                async move {
                    let p = self.reconcile_stack(index, &id, seen, deleted).await;
                    (id, p)
                }
            })
            .buffer_unordered(concurrency.max(1))
            .collect()
            .await;
        for (_, ps) in &results {
            for p in ps {
                *problems.entry(p.reason.as_str()).or_default() += 1;
            }
        }
        self.report_unplaced(&index, &seen).await;
        if full {
            self.hooks.problems(&problems);
            self.prune(&index, &deleted).await;
            debug!("pruned");
            self.release_unmanaged(&index, &seen, &deleted).await;
        }
        self.hooks.queue_depth(0);
        debug!("processed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_exponentially_up_to_the_cap() {
        let delays: Vec<u64> = (1..=8).map(|f| retry_delay(f).as_secs()).collect();
        assert_eq!(delays, [2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(retry_delay(u32::MAX), RETRY_CAP);
    }

    #[tokio::test(start_paused = true)]
    async fn debounce_coalesces_a_burst_and_leaves_later_events_queued() {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        tx.send(Dirty::Nodes).unwrap();
        tx.send(Dirty::Nodes).unwrap();
        let late = tx.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            late.send(Dirty::All).unwrap();
        });
        let mut pending = BTreeSet::new();
        debounce(
            &mut rx,
            Dirty::Stack(StackId::ingress("ns", "a")),
            Duration::from_millis(50),
            &mut pending,
        )
        .await;
        assert_eq!(
            pending,
            BTreeSet::from([Dirty::Nodes, Dirty::Stack(StackId::ingress("ns", "a"))])
        );
        assert_eq!(rx.recv().await, Some(Dirty::All));
    }

    #[test]
    fn one_lock_per_stack() {
        let locks = StackLocks::default();
        let (a, b) = (StackId::ingress("ns", "a"), StackId::ingress("ns", "b"));
        assert!(Arc::ptr_eq(&locks.get(&a), &locks.get(&a)));
        assert!(!Arc::ptr_eq(&locks.get(&a), &locks.get(&b)));
    }
}
