//! Client-side token buckets, one per API action, shared by every task in the process (one
//! `Arc<RateLimiter>` registry), so that the controller stays just under CLB's 20 requests per
//! second per action instead of discovering the limit through `RequestLimitExceeded`.
//!
//! Buckets hand out *reservations*: a caller takes a token immediately (the count may go
//! negative) and sleeps until its token is due. Waiters are thus served in arrival order at
//! exactly the configured rate. A cancelled waiter's token is not given back (the rate is then
//! slightly under-used, never exceeded).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

/// Default sustained rate per action: just under CLB's documented 20 requests/second.
pub const DEFAULT_RATE_PER_SECOND: f64 = 19.0;
/// Default bucket size. With one token, any one-second window sees at most 20 calls
/// (1 + 19), even when the server counts in fixed windows.
pub const DEFAULT_BURST: u32 = 1;

/// Rate and burst of one bucket.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    /// Tokens added per second; non-finite or <= 0 disables limiting.
    pub per_second: f64,
    /// Maximum tokens stored (>= 1).
    pub burst: u32,
}

impl RateLimit {
    pub const fn new(per_second: f64, burst: u32) -> Self {
        Self { per_second, burst }
    }

    /// No limiting.
    pub const fn unlimited() -> Self {
        Self {
            per_second: f64::INFINITY,
            burst: 1,
        }
    }

    fn is_limited(&self) -> bool {
        self.per_second.is_finite() && self.per_second > 0.0
    }
}

impl Default for RateLimit {
    fn default() -> Self {
        Self::new(DEFAULT_RATE_PER_SECOND, DEFAULT_BURST)
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
struct BucketState {
    tokens: f64,
    last: Instant,
}

/// One token bucket (tokio time, so `tokio::time::pause` drives it in tests).
#[derive(Debug)]
pub struct TokenBucket {
    limit: RateLimit,
    state: Mutex<BucketState>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The critical sections below cannot panic half-way; a poisoned lock holds valid state.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl TokenBucket {
    pub fn new(limit: RateLimit) -> Self {
        let limit = RateLimit {
            burst: limit.burst.max(1),
            ..limit
        };
        Self {
            state: Mutex::new(BucketState {
                tokens: f64::from(limit.burst),
                last: Instant::now(),
            }),
            limit,
        }
    }

    pub fn limit(&self) -> RateLimit {
        self.limit
    }

    /// Take one token now; returns how long the caller must wait before using it.
    pub fn reserve(&self) -> Duration {
        if !self.limit.is_limited() {
            return Duration::ZERO;
        }
        let rate = self.limit.per_second;
        let now = Instant::now();
        let mut s = lock(&self.state);
        let elapsed = now.saturating_duration_since(s.last).as_secs_f64();
        s.last = now;
        s.tokens = (s.tokens + elapsed * rate).min(f64::from(self.limit.burst)) - 1.0;
        if s.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-s.tokens / rate)
        }
    }

    /// Wait (asynchronously) for a token; returns the time waited.
    pub async fn acquire(&self) -> Duration {
        let wait = self.reserve();
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        wait
    }

    /// The server said we were throttled: drop any stored burst so that the next callers are
    /// spaced at the sustained rate.
    pub fn penalize(&self) {
        let mut s = lock(&self.state);
        if s.tokens > 0.0 {
            s.tokens = 0.0;
        }
    }
}

/// The process-wide registry of buckets, one per action, created on first use.
#[derive(Debug, Default)]
pub struct RateLimiter {
    config: RateLimitConfig,
    buckets: Mutex<HashMap<&'static str, Arc<TokenBucket>>>,
}

impl RateLimiter {
    pub fn new(config: RateLimitConfig) -> Self {
        Self {
            config,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    pub fn config(&self) -> &RateLimitConfig {
        &self.config
    }

    /// The bucket of `action` (created with the configured limit on first use).
    pub fn bucket(&self, action: &'static str) -> Arc<TokenBucket> {
        let mut buckets = lock(&self.buckets);
        buckets
            .entry(action)
            .or_insert_with(|| Arc::new(TokenBucket::new(self.config.for_action(action))))
            .clone()
    }

    /// Wait for a token of `action`; returns the time waited.
    pub async fn acquire(&self, action: &'static str) -> Duration {
        let bucket = self.bucket(action);
        bucket.acquire().await
    }

    pub fn penalize(&self, action: &'static str) {
        self.bucket(action).penalize();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_bucket_spaces_calls_at_the_configured_rate() {
        let bucket = TokenBucket::new(RateLimit::new(10.0, 1));
        let start = Instant::now();
        for _ in 0..11 {
            bucket.acquire().await;
        }
        // The first token is stored; the next 10 come at 100 ms intervals.
        let elapsed = start.elapsed();
        assert!(
            elapsed >= Duration::from_millis(999) && elapsed <= Duration::from_millis(1001),
            "{elapsed:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn burst_tokens_are_free_then_the_rate_applies() {
        let bucket = TokenBucket::new(RateLimit::new(20.0, 5));
        let start = Instant::now();
        for _ in 0..5 {
            assert_eq!(bucket.acquire().await, Duration::ZERO);
        }
        assert_eq!(start.elapsed(), Duration::ZERO);
        let waited = bucket.acquire().await;
        assert!((waited.as_secs_f64() - 0.05).abs() < 1e-6, "{waited:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_tasks_share_one_bucket_per_action_and_never_exceed_the_rate() {
        let limiter = Arc::new(RateLimiter::new(RateLimitConfig::default()));
        let start = Instant::now();
        let mut handles = Vec::new();
        for _ in 0..40 {
            let limiter = limiter.clone();
            handles.push(tokio::spawn(async move {
                limiter.acquire("CreateRule").await;
                start.elapsed()
            }));
        }
        let mut times = Vec::new();
        for h in handles {
            times.push(h.await.unwrap());
        }
        times.sort();
        // In every window of one second there are at most 20 calls.
        for (i, t) in times.iter().enumerate() {
            let in_window = times[i..]
                .iter()
                .take_while(|u| **u < *t + Duration::from_secs(1))
                .count();
            assert!(in_window <= 20, "{in_window} calls within 1 s from {t:?}");
        }
        // 40 calls at 19/s with one stored token take (40 - 1) / 19 s.
        let last = times.last().unwrap().as_secs_f64();
        assert!((last - 39.0 / 19.0).abs() < 1e-3, "{last}");
        // Another action has its own bucket: no wait.
        assert_eq!(limiter.acquire("DescribeListeners").await, Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn per_action_overrides_and_unlimited_buckets() {
        let mut config = RateLimitConfig::unlimited();
        config
            .per_action
            .insert("DescribeTargets".into(), RateLimit::new(2.0, 1));
        let limiter = RateLimiter::new(config);
        for _ in 0..100 {
            assert_eq!(limiter.acquire("CreateRule").await, Duration::ZERO);
        }
        limiter.acquire("DescribeTargets").await;
        let waited = limiter.acquire("DescribeTargets").await;
        assert_eq!(waited, Duration::from_millis(500));
    }

    #[tokio::test(start_paused = true)]
    async fn penalize_drops_the_stored_burst() {
        let bucket = TokenBucket::new(RateLimit::new(10.0, 3));
        bucket.penalize();
        let waited = bucket.acquire().await;
        assert_eq!(waited, Duration::from_millis(100));
    }
}
