//! Client-side pacing, one limiter per API action, shared by every task in the process (one
//! `Arc<RateLimiter>` registry), so that the controller stays within CLB's 20 requests per
//! second per action instead of discovering the limit through `RequestLimitExceeded`.
//!
//! CLB counts an action's calls per second of its own clock ("Your current request times
//! equals to 21 in a second"). A limit of `n` per second is kept as `n` *slots*: a call takes a
//! slot before it is sent and the slot is free again one second after the call's answer
//! arrived. Whatever the network delays, two calls of one slot reach the server more than one
//! second apart, so no second of the server's clock (nor any one-second span) ever counts more
//! than `n` calls of this process, while a burst of up to `n` calls (the pages of a listing)
//! goes out at once. Waiters are served in arrival order (a fair semaphore).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// Default rate per action: CLB's documented 20 requests per second per action.
pub const DEFAULT_RATE_PER_SECOND: f64 = 20.0;

/// The rate of one action's limiter.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    /// Calls per second; non-finite or <= 0 disables limiting. Below 1, one call per
    /// `1 / per_second` seconds.
    pub per_second: f64,
}

impl RateLimit {
    pub const fn new(per_second: f64) -> Self {
        Self { per_second }
    }

    /// No limiting.
    pub const fn unlimited() -> Self {
        Self {
            per_second: f64::INFINITY,
        }
    }

    fn is_limited(&self) -> bool {
        self.per_second.is_finite() && self.per_second > 0.0
    }

    /// How many calls may be under way or cooling down at once, and for how long a slot
    /// cools down after its call's answer: `n` slots per `n / per_second` seconds, `n` the
    /// whole calls per second (at least 1).
    fn slots(&self) -> (usize, Duration) {
        let n = self.per_second.floor().clamp(1.0, 1e6);
        (n as usize, Duration::from_secs_f64(n / self.per_second))
    }
}

impl Default for RateLimit {
    fn default() -> Self {
        Self::new(DEFAULT_RATE_PER_SECOND)
    }
}

/// Default plus per-action overrides (keys are action names such as `DescribeTargets`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RateLimitConfig {
    pub default: RateLimit,
    pub per_action: BTreeMap<String, RateLimit>,
}

impl RateLimitConfig {
    pub fn unlimited() -> Self {
        Self {
            default: RateLimit::unlimited(),
            per_action: BTreeMap::new(),
        }
    }

    pub fn for_action(&self, action: &str) -> RateLimit {
        self.per_action.get(action).copied().unwrap_or(self.default)
    }
}

#[derive(Debug)]
struct Slots {
    /// Slots never used yet (free now).
    unused: usize,
    /// When each used, idle slot is free again.
    cooling: BinaryHeap<Reverse<Instant>>,
}

/// A pool of slots, each free again `window` after its call's answer.
#[derive(Debug)]
struct Pool {
    /// Slots in the pool.
    n: usize,
    window: Duration,
    /// One permit per slot whose call is under way (or about to be sent).
    permits: Arc<Semaphore>,
    slots: Mutex<Slots>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The critical sections below cannot panic half-way; a poisoned lock holds valid state.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A slot taken for one call: dropping it (when the call's answer arrived, or the call was
/// abandoned) starts the slot's cool-down.
#[must_use = "the slot is returned when this is dropped: hold it until the call's answer"]
#[derive(Debug)]
pub struct Slot {
    owner: Option<Arc<Pool>>,
    permit: Option<OwnedSemaphorePermit>,
    /// A background call's ticket, held until its slot has cooled down.
    ticket: Option<OwnedSemaphorePermit>,
}

impl Slot {
    fn free() -> Self {
        Self {
            owner: None,
            permit: None,
            ticket: None,
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(owner) = &self.owner {
            let ready = Instant::now() + owner.window;
            // Recorded before the permit is released, so the next waiter finds it.
            lock(&owner.slots).cooling.push(Reverse(ready));
            if let Some(ticket) = self.ticket.take()
                && let Ok(runtime) = tokio::runtime::Handle::try_current()
            {
                runtime.spawn(async move {
                    tokio::time::sleep_until(ready).await;
                    drop(ticket);
                });
            }
        }
        drop(self.permit.take());
    }
}

/// Gives back a slot whose wait was cancelled, free at the time it was going to be.
struct Waiting<'a> {
    owner: &'a Pool,
    ready: Option<Instant>,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if let Some(at) = self.ready.take() {
            lock(&self.owner.slots).cooling.push(Reverse(at));
        }
    }
}

impl Pool {
    fn new(n: usize, window: Duration) -> Arc<Self> {
        Arc::new(Self {
            n,
            window,
            permits: Arc::new(Semaphore::new(n)),
            slots: Mutex::new(Slots {
                unused: n,
                cooling: BinaryHeap::new(),
            }),
        })
    }

    async fn acquire(self: &Arc<Self>) -> Slot {
        // The semaphore is never closed.
        let Ok(permit) = self.permits.clone().acquire_owned().await else {
            return Slot::free();
        };
        // A permit is held: an unused slot or a cooling one is there for it.
        let ready = {
            let mut s = lock(&self.slots);
            let now = Instant::now();
            match s.cooling.peek() {
                Some(Reverse(at)) if *at <= now => s.cooling.pop().map(|r| r.0),
                _ if s.unused > 0 => {
                    s.unused -= 1;
                    None
                }
                _ => s.cooling.pop().map(|r| r.0),
            }
        };
        let mut waiting = Waiting { owner: self, ready };
        if let Some(at) = ready {
            tokio::time::sleep_until(at).await;
        }
        waiting.ready = None;
        Slot {
            owner: Some(self.clone()),
            permit: Some(permit),
            ticket: None,
        }
    }

    /// After a throttled answer: the slots free now (never used, or cooled down) are spread
    /// over the next `window`, one every `window / n`, instead of going out at once.
    fn spread(&self) {
        let now = Instant::now();
        let step = self.window.div_f64(self.n.max(1) as f64);
        let mut s = lock(&self.slots);
        let mut free = std::mem::take(&mut s.unused);
        while s.cooling.peek().is_some_and(|Reverse(at)| *at <= now) {
            s.cooling.pop();
            free += 1;
        }
        for k in 1..=free {
            let at = now + step.mul_f64(k as f64);
            s.cooling.push(Reverse(at));
        }
    }
}

tokio::task_local! {
    static BACKGROUND: bool;
}

/// Run `work` with its CLB calls in the background lane: they leave a few slots of every
/// action (a tenth, at least one, when there are two or more) to the other calls, so that
/// background work such as the full drift sweep never makes a user's change wait for the
/// rate limit. Tasks spawned by `work` are not in the lane.
pub async fn in_background<F: std::future::Future>(work: F) -> F::Output {
    BACKGROUND.scope(true, work).await
}

/// The calls of the current task are in the background lane.
pub fn is_background() -> bool {
    BACKGROUND.try_with(|b| *b).unwrap_or(false)
}

/// The slots of one action (tokio time, so `tokio::time::pause` drives it in tests). Calls in
/// the background lane also need a ticket, held until their slot has cooled down: there are a
/// tenth fewer tickets than slots (at least one fewer when there are two slots or more).
#[derive(Debug)]
pub struct ActionLimiter {
    limit: RateLimit,
    pool: Arc<Pool>,
    tickets: Arc<Semaphore>,
}

impl ActionLimiter {
    pub fn new(limit: RateLimit) -> Self {
        let (n, window) = limit.slots();
        let reserved = if n >= 2 { (n / 10).max(1) } else { 0 };
        Self {
            limit,
            pool: Pool::new(n, window),
            tickets: Arc::new(Semaphore::new(n - reserved)),
        }
    }

    pub fn limit(&self) -> RateLimit {
        self.limit
    }

    /// Wait for a free slot; returns it with the time waited. Hold the slot until the call's
    /// answer arrived. A `background` call first waits for a ticket.
    pub async fn acquire(&self, background: bool) -> (Slot, Duration) {
        if !self.limit.is_limited() {
            return (Slot::free(), Duration::ZERO);
        }
        let start = Instant::now();
        let ticket = if background {
            // The semaphore is never closed.
            self.tickets.clone().acquire_owned().await.ok()
        } else {
            None
        };
        let mut slot = self.pool.acquire().await;
        slot.ticket = ticket;
        (slot, start.elapsed())
    }

    /// The server said we were throttled (other callers share the account's budget): the
    /// next calls of this action go out at the sustained rate, not as a burst.
    pub fn penalize(&self) {
        if self.limit.is_limited() {
            self.pool.spread();
        }
    }
}

/// The process-wide registry of limiters, one per action, created on first use.
#[derive(Debug, Default)]
pub struct RateLimiter {
    config: RateLimitConfig,
    actions: Mutex<HashMap<&'static str, Arc<ActionLimiter>>>,
}

impl RateLimiter {
    pub fn new(config: RateLimitConfig) -> Self {
        Self {
            config,
            actions: Mutex::new(HashMap::new()),
        }
    }

    pub fn config(&self) -> &RateLimitConfig {
        &self.config
    }

    /// The limiter of `action` (created with the configured limit on first use).
    pub fn action(&self, action: &'static str) -> Arc<ActionLimiter> {
        let mut actions = lock(&self.actions);
        actions
            .entry(action)
            .or_insert_with(|| Arc::new(ActionLimiter::new(self.config.for_action(action))))
            .clone()
    }

    /// Wait for a slot of `action`; returns it with the time waited. In the background lane
    /// (see [`in_background`]) when the calling task is.
    pub async fn acquire(&self, action: &'static str) -> (Slot, Duration) {
        self.action(action).acquire(is_background()).await
    }

    pub fn penalize(&self, action: &'static str) {
        self.action(action).penalize();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// At most `n` of `times` in any span of one second.
    fn at_most_per_second(times: &[Duration], n: usize) {
        for (i, t) in times.iter().enumerate() {
            let in_window = times[i..]
                .iter()
                .take_while(|u| **u < *t + Duration::from_secs(1))
                .count();
            assert!(in_window <= n, "{in_window} calls within 1 s from {t:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_of_the_rate_goes_out_at_once_then_each_slot_waits_a_second_after_its_answer() {
        let limiter = Arc::new(ActionLimiter::new(RateLimit::new(10.0)));
        let start = Instant::now();
        let mut sent = Vec::new();
        for _ in 0..25 {
            let (slot, _) = limiter.acquire(false).await;
            sent.push(start.elapsed());
            // Each call takes 30 ms to answer.
            tokio::time::sleep(Duration::from_millis(30)).await;
            drop(slot);
        }
        at_most_per_second(&sent, 10);
        // Sequential calls: the 11th call waits for the first slot, free 1 s after the first
        // answer (30 ms); it is sent at 1.03 s.
        assert_eq!(sent[10], Duration::from_millis(1030), "{sent:?}");
        assert_eq!(sent[9], Duration::from_millis(270), "{sent:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_tasks_share_the_slots_of_an_action_and_never_exceed_the_rate() {
        let limiter = Arc::new(RateLimiter::new(RateLimitConfig::default()));
        let start = Instant::now();
        let mut handles = Vec::new();
        for i in 0..100u64 {
            let limiter = limiter.clone();
            handles.push(tokio::spawn(async move {
                let (slot, _) = limiter.acquire("CreateRule").await;
                let sent = start.elapsed();
                // Answers take between 1 and 80 ms.
                tokio::time::sleep(Duration::from_millis(1 + i * 37 % 80)).await;
                drop(slot);
                sent
            }));
        }
        let mut times = Vec::new();
        for h in handles {
            times.push(h.await.unwrap());
        }
        times.sort();
        at_most_per_second(&times, 20);
        // 100 calls at 20 per second: 5 bursts, the last one a little over 4 s after the
        // first (each second counted from the slowest answers' arrival).
        let last = times.last().unwrap().as_secs_f64();
        assert!((4.0..4.5).contains(&last), "{last} {times:?}");
        // Another action has its own slots: no wait.
        let (_slot, waited) = limiter.acquire("DescribeListeners").await;
        assert_eq!(waited, Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn background_calls_leave_a_tenth_of_the_slots_to_the_others() {
        let limiter = Arc::new(RateLimiter::new(RateLimitConfig::default()));
        let start = Instant::now();
        let mut sweep = Vec::new();
        for _ in 0..100 {
            let limiter = limiter.clone();
            sweep.push(tokio::spawn(in_background(async move {
                assert!(is_background());
                let (slot, _) = limiter.acquire("DescribeListeners").await;
                let sent = start.elapsed();
                tokio::time::sleep(Duration::from_millis(10)).await;
                drop(slot);
                sent
            })));
        }
        // A user's change in the middle of the sweep: two calls, neither waits.
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert!(!is_background());
        for _ in 0..2 {
            let (_slot, waited) = limiter.acquire("DescribeListeners").await;
            assert_eq!(waited, Duration::ZERO);
        }
        let mut times = Vec::new();
        for h in sweep {
            times.push(h.await.unwrap());
        }
        times.sort();
        at_most_per_second(&times, 18);
        // With the two foreground slots cooling too, the sweep still gets its 18 per second.
        let last = times.last().unwrap().as_secs_f64();
        assert!((5.0..5.6).contains(&last), "{last}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_slower_than_a_second_keeps_its_slot_until_it_is_answered() {
        let limiter = Arc::new(ActionLimiter::new(RateLimit::new(1.0)));
        let (slot, _) = limiter.acquire(false).await;
        let waiter = {
            let limiter = limiter.clone();
            tokio::spawn(async move { limiter.acquire(false).await.1 })
        };
        tokio::time::sleep(Duration::from_secs(3)).await;
        drop(slot);
        // Answered at 3 s: the next call goes at 4 s.
        assert_eq!(waiter.await.unwrap(), Duration::from_secs(4));
    }

    #[tokio::test(start_paused = true)]
    async fn fractional_rates_space_single_calls_and_unlimited_ones_never_wait() {
        let mut config = RateLimitConfig::unlimited();
        config
            .per_action
            .insert("DescribeTargets".into(), RateLimit::new(0.5));
        config
            .per_action
            .insert("DescribeListeners".into(), RateLimit::new(2.5));
        let limiter = RateLimiter::new(config);
        for _ in 0..100 {
            let (_slot, waited) = limiter.acquire("CreateRule").await;
            assert_eq!(waited, Duration::ZERO);
        }
        drop(limiter.acquire("DescribeTargets").await);
        assert_eq!(
            limiter.acquire("DescribeTargets").await.1,
            Duration::from_secs(2)
        );
        // 2.5 per second: 2 slots per 0.8 s.
        let start = Instant::now();
        for _ in 0..5 {
            drop(limiter.acquire("DescribeListeners").await);
        }
        assert_eq!(start.elapsed(), Duration::from_millis(1600));
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancelled_wait_gives_its_slot_back() {
        let limiter = Arc::new(ActionLimiter::new(RateLimit::new(1.0)));
        drop(limiter.acquire(false).await);
        // Cancelled half-way through its wait.
        let _ = tokio::time::timeout(Duration::from_millis(400), limiter.acquire(false)).await;
        // The slot is still free at 1 s, not 1 s after the cancellation.
        let (_slot, waited) = limiter.acquire(false).await;
        assert_eq!(waited, Duration::from_millis(600));
    }

    #[tokio::test(start_paused = true)]
    async fn a_throttled_answer_spreads_the_free_slots_at_the_sustained_rate() {
        let limiter = Arc::new(ActionLimiter::new(RateLimit::new(10.0)));
        drop(limiter.acquire(false).await);
        tokio::time::sleep(Duration::from_millis(500)).await;
        limiter.penalize();
        // 9 slots never used: one every 100 ms from now instead of all at once.
        let (_a, waited) = limiter.acquire(false).await;
        assert_eq!(waited, Duration::from_millis(100));
        let (_b, waited) = limiter.acquire(false).await;
        assert_eq!(waited, Duration::from_millis(100));
    }
}
