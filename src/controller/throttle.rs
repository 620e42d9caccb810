//! Rate-limited logging of repeated errors: the first occurrence of an error is logged at
//! once, repeats of the same error at most once per period with the number suppressed in
//! between (every occurrence is still counted in a metric by the caller). An API server
//! outage then costs a handful of log lines, not one per retry.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// How often one repeated error is logged.
pub const LOG_EVERY: Duration = Duration::from_secs(60);
/// Distinct errors remembered; beyond this the oldest are forgotten (hostile error texts
/// cannot grow memory).
const MAX_KEYS: usize = 256;

/// Decides which occurrences of repeated errors are logged.
#[derive(Debug)]
pub struct LogLimiter {
    every: Duration,
    seen: Mutex<HashMap<String, (Instant, u64)>>,
}

impl Default for LogLimiter {
    fn default() -> Self {
        Self::new(LOG_EVERY)
    }
}

impl LogLimiter {
    pub fn new(every: Duration) -> Self {
        Self {
            every,
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// `Some(n)` when an occurrence of `key` should be logged now, `n` being how many were
    /// suppressed since the last logged one; `None` to stay quiet.
    pub fn allow(&self, key: &str) -> Option<u64> {
        let now = Instant::now();
        let mut seen = self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((last, suppressed)) = seen.get_mut(key) {
            if now.duration_since(*last) < self.every {
                *suppressed += 1;
                return None;
            }
            let n = *suppressed;
            *last = now;
            *suppressed = 0;
            return Some(n);
        }
        if seen.len() >= MAX_KEYS
            && let Some(oldest) = seen
                .iter()
                .min_by_key(|(_, (t, _))| *t)
                .map(|(k, _)| k.clone())
        {
            seen.remove(&oldest);
        }
        seen.insert(key.to_string(), (now, 0));
        Some(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_repeated_error_is_logged_once_per_period_with_the_count_suppressed() {
        let l = LogLimiter::new(Duration::from_secs(60));
        assert_eq!(l.allow("Ingress: connection refused"), Some(0));
        for _ in 0..10 {
            tokio::time::advance(Duration::from_secs(1)).await;
            assert_eq!(l.allow("Ingress: connection refused"), None);
        }
        assert_eq!(
            l.allow("Service: connection refused"),
            Some(0),
            "another error logs"
        );
        tokio::time::advance(Duration::from_secs(60)).await;
        assert_eq!(l.allow("Ingress: connection refused"), Some(10));
        assert_eq!(l.allow("Ingress: connection refused"), None);
    }

    #[test]
    fn distinct_errors_beyond_the_cap_do_not_grow_memory() {
        let l = LogLimiter::new(Duration::from_secs(60));
        for i in 0..10_000 {
            assert_eq!(l.allow(&format!("error {i}")), Some(0));
        }
        assert!(l.seen.lock().unwrap().len() <= MAX_KEYS);
    }
}
