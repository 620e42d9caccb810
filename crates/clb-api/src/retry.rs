//! Retry policy for API calls: which categories are retried, how many attempts each, and the
//! capped exponential backoff with injected jitter between attempts. Pure arithmetic; the
//! client does the sleeping.

use std::time::Duration;

use super::clock::Jitter;
use super::error::ErrorCategory;

/// Attempts (first call included) for `RequestLimitExceeded*`. The token buckets keep us under
/// the limit, so a throttle means another client shares the account budget: be patient.
pub const DEFAULT_THROTTLED_ATTEMPTS: u32 = 8;
/// Attempts for `ResourceInOperating`. With one writer per LB this only happens when someone
/// else (console, another tool) runs a task on the LB.
pub const DEFAULT_BUSY_ATTEMPTS: u32 = 10;
/// Attempts for transient server/network errors (`InternalError`, 5xx, resets): a few only.
pub const DEFAULT_TRANSIENT_ATTEMPTS: u32 = 3;
/// First retry delay for throttling (the limit window is one second).
pub const DEFAULT_THROTTLED_BASE: Duration = Duration::from_millis(100);
/// Longest delay between throttled attempts.
pub const DEFAULT_THROTTLED_CAP: Duration = Duration::from_secs(2);
/// First retry delay for a busy LB (tasks take ~100 ms to seconds).
pub const DEFAULT_BUSY_BASE: Duration = Duration::from_millis(200);
/// Longest delay between busy attempts.
pub const DEFAULT_BUSY_CAP: Duration = Duration::from_secs(3);
/// First retry delay for transient errors.
pub const DEFAULT_TRANSIENT_BASE: Duration = Duration::from_millis(100);
/// Longest delay between transient attempts.
pub const DEFAULT_TRANSIENT_CAP: Duration = Duration::from_secs(1);
/// Fraction of each delay that is randomised: the delay is uniform in
/// `[(1 - JITTER) * d, d]`, so it never exceeds the cap and never drops below half of it.
pub const DEFAULT_JITTER_FRACTION: f64 = 0.5;

/// Exponential backoff for one category: `min(cap, base * 2^(retry-1))`, then jittered down.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    pub base: Duration,
    pub cap: Duration,
    /// In `[0, 1]`: how much of the delay is random.
    pub jitter_fraction: f64,
}

impl Backoff {
    pub const fn new(base: Duration, cap: Duration) -> Self {
        Self {
            base,
            cap,
            jitter_fraction: DEFAULT_JITTER_FRACTION,
        }
    }

    /// The un-jittered delay before retry number `retry` (1 = the first retry).
    pub fn ceiling(&self, retry: u32) -> Duration {
        let shift = retry.saturating_sub(1).min(31);
        self.base
            .checked_mul(1u32 << shift)
            .unwrap_or(self.cap)
            .min(self.cap)
    }

    /// The delay before retry number `retry`, with `unit` a jitter sample in `[0, 1)`.
    pub fn delay(&self, retry: u32, unit: f64) -> Duration {
        let ceiling = self.ceiling(retry);
        let fraction = self.jitter_fraction.clamp(0.0, 1.0);
        let unit = unit.clamp(0.0, 1.0);
        ceiling.mul_f64(1.0 - fraction * unit)
    }

    /// Convenience: sample the jitter source.
    pub fn delay_with(&self, retry: u32, jitter: &dyn Jitter) -> Duration {
        self.delay(retry, jitter.unit())
    }
}

/// Which categories are retried, how often and how long to wait.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Total attempts (first included) for Throttled errors; 1 disables retries.
    pub throttled_attempts: u32,
    pub busy_attempts: u32,
    pub transient_attempts: u32,
    pub throttled: Backoff,
    pub busy: Backoff,
    pub transient: Backoff,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            throttled_attempts: DEFAULT_THROTTLED_ATTEMPTS,
            busy_attempts: DEFAULT_BUSY_ATTEMPTS,
            transient_attempts: DEFAULT_TRANSIENT_ATTEMPTS,
            throttled: Backoff::new(DEFAULT_THROTTLED_BASE, DEFAULT_THROTTLED_CAP),
            busy: Backoff::new(DEFAULT_BUSY_BASE, DEFAULT_BUSY_CAP),
            transient: Backoff::new(DEFAULT_TRANSIENT_BASE, DEFAULT_TRANSIENT_CAP),
        }
    }
}

impl RetryPolicy {
    /// No retries at all (each call is attempted once).
    pub fn none() -> Self {
        Self {
            throttled_attempts: 1,
            busy_attempts: 1,
            transient_attempts: 1,
            ..Self::default()
        }
    }

    /// Maximum attempts (first included) for a category; 1 for non-retryable ones.
    pub fn attempts(&self, category: ErrorCategory) -> u32 {
        match category {
            ErrorCategory::Throttled => self.throttled_attempts,
            ErrorCategory::Busy => self.busy_attempts,
            ErrorCategory::Transient => self.transient_attempts,
            _ => 1,
        }
        .max(1)
    }

    pub fn backoff(&self, category: ErrorCategory) -> Option<&Backoff> {
        match category {
            ErrorCategory::Throttled => Some(&self.throttled),
            ErrorCategory::Busy => Some(&self.busy),
            ErrorCategory::Transient => Some(&self.transient),
            _ => None,
        }
    }

    /// The delay before the next attempt, or `None` to give up. `failures` is how many attempts
    /// have failed with this category so far (>= 1).
    pub fn next_delay(
        &self,
        category: ErrorCategory,
        failures: u32,
        jitter: &dyn Jitter,
    ) -> Option<Duration> {
        if !category.is_retryable() || failures >= self.attempts(category) {
            return None;
        }
        self.backoff(category)
            .map(|b| b.delay_with(failures, jitter))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{FixedJitter, RngJitter};

    #[test]
    fn backoff_doubles_until_the_cap() {
        let b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let ceilings: Vec<_> = (1..=6).map(|r| b.ceiling(r).as_millis()).collect();
        assert_eq!(ceilings, vec![100, 200, 400, 800, 1000, 1000]);
        assert_eq!(b.ceiling(u32::MAX), Duration::from_secs(1));
    }

    #[test]
    fn jittered_delays_stay_within_half_and_full_ceiling() {
        let policy = RetryPolicy::default();
        let rng = RngJitter::seeded(7);
        for category in [
            ErrorCategory::Throttled,
            ErrorCategory::Busy,
            ErrorCategory::Transient,
        ] {
            let b = policy.backoff(category).unwrap();
            for retry in 1..=20 {
                let d = b.delay_with(retry, &rng);
                let ceiling = b.ceiling(retry);
                assert!(d <= ceiling && d <= b.cap, "{category} {retry} {d:?}");
                assert!(d >= ceiling.mul_f64(1.0 - DEFAULT_JITTER_FRACTION));
            }
        }
        let b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        assert_eq!(
            b.delay_with(1, &FixedJitter(0.0)),
            Duration::from_millis(100)
        );
        assert!(b.delay_with(1, &FixedJitter(1.0)) >= Duration::from_millis(50));
    }

    #[test]
    fn only_retryable_categories_get_a_next_delay_and_caps_are_per_category() {
        let policy = RetryPolicy::default();
        let j = FixedJitter(0.5);
        assert!(
            policy
                .next_delay(ErrorCategory::InvalidInput, 1, &j)
                .is_none()
        );
        assert!(policy.next_delay(ErrorCategory::Auth, 1, &j).is_none());
        assert!(policy.next_delay(ErrorCategory::NotFound, 1, &j).is_none());
        for (category, cap) in [
            (ErrorCategory::Throttled, DEFAULT_THROTTLED_ATTEMPTS),
            (ErrorCategory::Busy, DEFAULT_BUSY_ATTEMPTS),
            (ErrorCategory::Transient, DEFAULT_TRANSIENT_ATTEMPTS),
        ] {
            assert!(policy.next_delay(category, cap - 1, &j).is_some());
            assert!(policy.next_delay(category, cap, &j).is_none());
        }
        assert!(
            RetryPolicy::none()
                .next_delay(ErrorCategory::Throttled, 1, &j)
                .is_none()
        );
    }
}
