//! Hooks through which the metrics layer (and tests) learn about API calls: one callback per
//! finished attempt (action x bounded result), per scheduled retry, per client-side rate-limit
//! wait, per finished task wait and per credentials reload. Labels handed out are bounded: action names are the fixed
//! set of `&'static str` this client calls, results are `"Success"` or an `ErrorCategory`.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use super::error::ErrorCategory;

/// The bounded result label of a call: `Success` or the error category.
pub const RESULT_SUCCESS: &str = "Success";

/// The outcome of one attempt (one HTTP exchange).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CallResult {
    Success,
    Failed(ErrorCategory),
}

impl CallResult {
    /// Bounded PascalCase label.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Success => RESULT_SUCCESS,
            Self::Failed(c) => c.as_str(),
        }
    }
}

/// What made the client re-read its credentials file or fetch role credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ReloadTrigger {
    /// The periodic check saw the file change (or the full re-read interval passed).
    Watch,
    /// A call failed with a credentials error (`AuthFailure.TokenFailure`, ...).
    AuthFailure,
    /// Role credentials (web identity, instance role) were due: none yet, or a third of their
    /// lifetime (at most 5 minutes) left.
    Expiry,
}

impl ReloadTrigger {
    pub const ALL: [ReloadTrigger; 3] = [Self::Watch, Self::AuthFailure, Self::Expiry];

    /// Bounded PascalCase label.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Watch => "Watch",
            Self::AuthFailure => "AuthFailure",
            Self::Expiry => "Expiry",
        }
    }
}

/// How a credentials reload ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ReloadOutcome {
    /// The file (or the role provider) gave other credentials; they are used from the next call on.
    Changed,
    /// The file (or the role provider) gave the credentials already in use.
    Unchanged,
    /// The file could not be read or parsed, or the provider's answer was refused; the current
    /// credentials stay.
    Failed,
    /// Not read: an auth-failure reload ran less than the minimum interval ago.
    Skipped,
}

impl ReloadOutcome {
    pub const ALL: [ReloadOutcome; 4] =
        [Self::Changed, Self::Unchanged, Self::Failed, Self::Skipped];

    /// Bounded PascalCase label.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Changed => "Changed",
            Self::Unchanged => "Unchanged",
            Self::Failed => "Failed",
            Self::Skipped => "Skipped",
        }
    }
}

/// Receives client events. All methods default to doing nothing.
///
/// `code` is the raw cloud error code (`RequestLimitExceeded`, ...): fine for logs, but metric
/// labels should use `result` (bounded) unless the metrics layer bounds codes itself.
pub trait ClbObserver: Send + Sync + std::fmt::Debug {
    /// One attempt finished (successfully or not).
    fn call_finished(
        &self,
        _action: &'static str,
        _result: CallResult,
        _code: Option<&str>,
        _elapsed: Duration,
    ) {
    }
    /// A failed attempt will be retried after `delay`; `attempt` is the one that failed (1-based).
    fn retry_scheduled(
        &self,
        _action: &'static str,
        _category: ErrorCategory,
        _attempt: u32,
        _delay: Duration,
    ) {
    }
    /// The client-side token bucket made a call wait.
    fn rate_limit_wait(&self, _action: &'static str, _waited: Duration) {}
    /// A `wait_task` finished: `result` is Success, TaskFailed, or the error's category.
    fn task_finished(&self, _result: CallResult, _polls: u32, _elapsed: Duration) {}
    /// The credentials file was re-read or role credentials fetched (or a re-read was skipped
    /// by the rate limit).
    fn credentials_reloaded(&self, _trigger: ReloadTrigger, _outcome: ReloadOutcome) {}
}

/// Does nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoopObserver;

impl ClbObserver for NoopObserver {}

/// Plain counters, for tests and for a quick `--debug` summary.
#[derive(Debug, Default)]
pub struct CountingObserver {
    inner: Mutex<Counts>,
}

/// A snapshot of [`CountingObserver`].
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Counts {
    /// (action, result label) -> attempts.
    pub calls: BTreeMap<(String, String), u64>,
    /// (action, category) -> retries scheduled.
    pub retries: BTreeMap<(String, String), u64>,
    /// action -> calls that waited for a token.
    pub rate_limit_waits: BTreeMap<String, u64>,
    /// result label -> finished task waits.
    pub tasks: BTreeMap<String, u64>,
    /// (trigger, outcome) -> credentials reloads.
    pub reloads: BTreeMap<(ReloadTrigger, ReloadOutcome), u64>,
}

impl Counts {
    pub fn calls_of(&self, action: &str) -> u64 {
        self.calls
            .iter()
            .filter(|((a, _), _)| a == action)
            .map(|(_, n)| n)
            .sum()
    }

    pub fn calls_with(&self, action: &str, result: &str) -> u64 {
        self.calls
            .get(&(action.to_string(), result.to_string()))
            .copied()
            .unwrap_or(0)
    }

    pub fn reloads_of(&self, trigger: ReloadTrigger, outcome: ReloadOutcome) -> u64 {
        self.reloads.get(&(trigger, outcome)).copied().unwrap_or(0)
    }

    pub fn retries_of(&self, action: &str) -> u64 {
        self.retries
            .iter()
            .filter(|((a, _), _)| a == action)
            .map(|(_, n)| n)
            .sum()
    }
}

impl CountingObserver {
    pub fn snapshot(&self) -> Counts {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn with(&self, f: impl FnOnce(&mut Counts)) {
        f(&mut self.inner.lock().unwrap_or_else(|p| p.into_inner()));
    }
}

impl ClbObserver for CountingObserver {
    fn call_finished(
        &self,
        action: &'static str,
        result: CallResult,
        _code: Option<&str>,
        _elapsed: Duration,
    ) {
        self.with(|c| {
            *c.calls
                .entry((action.to_string(), result.as_str().to_string()))
                .or_default() += 1
        });
    }

    fn retry_scheduled(
        &self,
        action: &'static str,
        category: ErrorCategory,
        _attempt: u32,
        _delay: Duration,
    ) {
        self.with(|c| {
            *c.retries
                .entry((action.to_string(), category.as_str().to_string()))
                .or_default() += 1
        });
    }

    fn rate_limit_wait(&self, action: &'static str, _waited: Duration) {
        self.with(|c| *c.rate_limit_waits.entry(action.to_string()).or_default() += 1);
    }

    fn task_finished(&self, result: CallResult, _polls: u32, _elapsed: Duration) {
        self.with(|c| *c.tasks.entry(result.as_str().to_string()).or_default() += 1);
    }

    fn credentials_reloaded(&self, trigger: ReloadTrigger, outcome: ReloadOutcome) {
        self.with(|c| *c.reloads.entry((trigger, outcome)).or_default() += 1);
    }
}
