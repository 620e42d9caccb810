//! Fenced leader election on a `coordination.k8s.io/v1` Lease.
//!
//! A replica is the leader only while it holds the Lease with a *local* deadline in the future:
//! the deadline is the instant this replica sent its last successful acquire or renew, plus the
//! lease duration, minus a safety margin. Every cloud write checks the [`Fence`] first
//! (through the CLB client's write gate), so a replica whose renewals fail stops writing before
//! any other replica can take the Lease:
//!
//! - the holder's deadline is `sent + duration - margin`, measured on its own monotonic clock
//!   from *before* the renewing request left;
//! - a challenger takes the Lease only after it has watched the same record (holder,
//!   renewTime, resourceVersion) stay unchanged for the full announced duration, measured on
//!   its monotonic clock from when it first saw that record, which was after the holder sent it.
//!
//! So the holder stops at least `margin` before a challenger may start, whatever the two wall
//! clocks say. Writes that are in flight when the fence closes were started with at least the
//! margin left. The Lease is updated with optimistic concurrency (resourceVersion), so two
//! challengers never both win.

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Api;
use kube::api::PostParams;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{debug, info, warn};

/// How long one Lease read or write may take before the attempt counts as failed.
pub const LEASE_CALL_TIMEOUT: Duration = Duration::from_secs(4);

/// Proof of leadership: writes are allowed while the deadline is in the future.
#[derive(Debug, Default)]
pub struct Fence {
    deadline: Mutex<Option<Instant>>,
}

impl Fence {
    /// A fence that is always open (no leader election: this replica is the only writer).
    pub fn open() -> Arc<Self> {
        Arc::new(Self {
            deadline: Mutex::new(Some(
                Instant::now() + Duration::from_secs(100 * 365 * 86_400),
            )),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Instant>> {
        self.deadline
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The instant until which this replica may write, if it may write at all.
    pub fn deadline(&self) -> Option<Instant> {
        *self.lock()
    }

    /// May this replica write now?
    pub fn holds(&self) -> bool {
        self.deadline().is_some_and(|d| Instant::now() < d)
    }

    fn extend(&self, until: Instant) {
        let mut d = self.lock();
        *d = Some(d.map_or(until, |old| old.max(until)));
    }

    /// Close the fence: no write passes until the Lease is renewed again.
    pub fn close(&self) {
        *self.lock() = None;
    }
}

impl crate::clb::client::WriteGate for Fence {
    fn check(&self) -> Result<(), String> {
        if self.holds() {
            Ok(())
        } else {
            Err("this replica does not hold the leader lease".into())
        }
    }
}

/// Timings of the election.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// How long a Lease record is valid after its renewal (announced in the Lease).
    pub duration: Duration,
    /// How much earlier than that the holder stops writing.
    pub margin: Duration,
    /// How often the Lease is read and renewed.
    pub retry: Duration,
}

impl Timing {
    /// `duration`/`margin` from the settings; retries a fifth of the duration apart.
    pub fn new(duration_secs: u64, margin_secs: u64) -> Self {
        let duration = Duration::from_secs(duration_secs.max(2));
        let margin = Duration::from_secs(margin_secs).min(duration / 2);
        Self {
            duration,
            margin,
            retry: (duration / 5).max(Duration::from_millis(200)),
        }
    }
}

/// What a challenger remembers of the current holder's record.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    key: (Option<String>, Option<String>, Option<String>),
    since: Instant,
}

/// The elector: reads and renews the Lease, keeps the [`Fence`] and tells the loop whether
/// this replica leads.
pub struct Elector {
    api: Api<Lease>,
    name: String,
    identity: String,
    timing: Timing,
    fence: Arc<Fence>,
    seen: Option<Seen>,
}

impl Elector {
    pub fn new(
        client: kube::Client,
        namespace: &str,
        name: &str,
        identity: &str,
        timing: Timing,
        fence: Arc<Fence>,
    ) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            name: name.to_string(),
            identity: identity.to_string(),
            timing,
            fence,
            seen: None,
        }
    }

    /// Run until the receiver is dropped: `true` on the channel while this replica leads.
    /// Leadership turns `false` exactly when the fence closes.
    pub fn spawn(mut self) -> (watch::Receiver<bool>, tokio::task::JoinHandle<()>) {
        let (tx, rx) = watch::channel(false);
        let task = tokio::spawn(async move {
            loop {
                let sent = Instant::now();
                match tokio::time::timeout(LEASE_CALL_TIMEOUT, self.try_acquire_or_renew()).await {
                    Ok(Ok(true)) => self
                        .fence
                        .extend(sent + self.timing.duration - self.timing.margin),
                    Ok(Ok(false)) => {}
                    Ok(Err(e)) => debug!(error = %e, "leader lease not renewed"),
                    Err(_) => debug!("leader lease call timed out"),
                }
                // Wake at the next retry, or when the fence closes, whichever comes first.
                let mut wake = Instant::now() + self.timing.retry;
                let leading = self.fence.holds();
                if leading && let Some(d) = self.fence.deadline() {
                    wake = wake.min(d);
                }
                if tx.send_if_modified(|v| std::mem::replace(v, leading) != leading) {
                    if leading {
                        info!(identity = %self.identity, "acquired the leader lease");
                    } else {
                        warn!(identity = %self.identity, "leader lease not renewed in time: stopping writes");
                    }
                }
                tokio::select! {
                    _ = tokio::time::sleep_until(wake) => {}
                    _ = tx.closed() => return,
                }
                if !self.fence.holds() {
                    self.fence.close();
                    if *tx.borrow() {
                        tx.send_replace(false);
                        warn!(identity = %self.identity, "leader lease expired locally: stopping writes");
                    }
                }
            }
        });
        (rx, task)
    }

    /// One round: create the Lease, renew it, or take it over once it expired. `true` when
    /// this replica holds it after the round (the caller measured when the round started).
    async fn try_acquire_or_renew(&mut self) -> Result<bool, kube::Error> {
        let now = MicroTime(jiff::Timestamp::now());
        let secs = i32::try_from(self.timing.duration.as_secs()).unwrap_or(i32::MAX);
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    ..Default::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.identity.clone()),
                    lease_duration_seconds: Some(secs),
                    acquire_time: Some(now.clone()),
                    renew_time: Some(now),
                    lease_transitions: Some(0),
                    ..Default::default()
                }),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(ae)) if ae.code == 409 => Ok(false),
                Err(e) => Err(e),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
        let key = (
            holder.clone(),
            spec.renew_time.as_ref().map(|t| t.0.to_string()),
            lease.metadata.resource_version.clone(),
        );
        // The record was written before this answer arrived, so "now" is no earlier than
        // when its holder sent it.
        let observed = Instant::now();
        if self.seen.as_ref().is_none_or(|s| s.key != key) {
            self.seen = Some(Seen {
                key,
                since: observed,
            });
        }
        let mine = holder.as_deref() == Some(self.identity.as_str());
        let announced = spec
            .lease_duration_seconds
            .and_then(|s| u64::try_from(s).ok())
            .filter(|s| *s > 0)
            .map_or(self.timing.duration, Duration::from_secs);
        let expired = holder.is_none()
            || self
                .seen
                .as_ref()
                .is_some_and(|s| observed.duration_since(s.since) >= announced);
        if !mine && !expired {
            self.fence.close();
            return Ok(false);
        }
        let transitions = spec.lease_transitions.unwrap_or(0);
        let transitions = if mine {
            transitions
        } else {
            transitions.saturating_add(1)
        };
        lease.spec = Some(LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(secs),
            acquire_time: if mine {
                spec.acquire_time
            } else {
                Some(now.clone())
            },
            renew_time: Some(now),
            lease_transitions: Some(transitions),
            ..spec
        });
        lease.metadata.managed_fields = None;
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => {
                if !mine {
                    info!(identity = %self.identity, previous = ?holder, "took over the leader lease");
                }
                Ok(true)
            }
            Err(kube::Error::Api(ae)) if ae.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }
}

/// Give the Lease up on shutdown so that another replica takes over at once instead of
/// after the lease duration (close the fence first); the record is cleared only if it is
/// still ours.
pub async fn release(client: kube::Client, namespace: &str, name: &str, identity: &str) {
    let api: Api<Lease> = Api::namespaced(client, namespace);
    let attempt = async {
        let Some(mut lease) = api.get_opt(name).await? else {
            return Ok::<_, kube::Error>(());
        };
        let Some(spec) = lease.spec.as_mut() else {
            return Ok(());
        };
        if spec.holder_identity.as_deref() != Some(identity) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        lease.metadata.managed_fields = None;
        api.replace(name, &PostParams::default(), &lease).await?;
        Ok(())
    };
    match tokio::time::timeout(Duration::from_secs(1), attempt).await {
        Ok(Ok(())) => info!(identity, "released the leader lease"),
        Ok(Err(e)) => debug!(error = %e, "could not release the leader lease"),
        Err(_) => debug!("releasing the leader lease timed out"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_fence_holds_until_its_deadline_and_never_moves_back() {
        let fence = Fence::default();
        assert!(!fence.holds(), "a new fence is closed");
        fence.extend(Instant::now() + Duration::from_secs(10));
        assert!(fence.holds());
        fence.extend(Instant::now() + Duration::from_secs(5));
        tokio::time::advance(Duration::from_secs(7)).await;
        assert!(
            fence.holds(),
            "an earlier deadline does not shorten a later one"
        );
        tokio::time::advance(Duration::from_secs(4)).await;
        assert!(!fence.holds(), "past its deadline the fence is closed");
        fence.extend(Instant::now() + Duration::from_secs(5));
        fence.close();
        assert!(!fence.holds(), "close wins over any deadline");
    }

    #[test]
    fn the_margin_never_exceeds_half_the_lease() {
        let t = Timing::new(4, 10);
        assert_eq!(t.margin, Duration::from_secs(2));
        assert!(t.retry < t.duration - t.margin);
        let d = Timing::new(15, 5);
        assert_eq!(d.retry, Duration::from_secs(3));
    }
}
