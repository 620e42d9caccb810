//! The emulator's mutable core: state, async tasks and per-CLB locks, rate limits, fault
//! rolls, call counters, and the injected clock and seeded RNG that make it deterministic.
//!
//! Task model: a write's state change is applied immediately when the call returns; only the
//! task status lags (2 until `task_delay_ms` has passed, then 0, or 1 for an injected failure,
//! whose change is then *not* applied at all). While a task runs, its CLBs refuse further writes
//! with `FailedOperation.ResourceInOperating`. `pause_tasks` holds every task in status 2.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::config::{Faults, Settings};
use crate::error::{ApiFailure, codes};
use crate::state::State;
use clb_api::types::{TASK_FAILED, TASK_RUNNING, TASK_SUCCEEDED};

/// Tasks kept for DescribeTaskStatus; the oldest finished ones are dropped beyond this.
pub const MAX_TASKS: usize = 100_000;
/// Length of the random part of resource ids (`lb-xxxxxxxx`).
pub const ID_LEN: usize = 8;
/// Length of a DealName.
pub const DEAL_NAME_LEN: usize = 15;
/// Beijing time offset, used for `CreateTime` strings as the real API reports them.
pub const TIME_OFFSET_HOURS: i8 = 8;

const ID_CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
const CERT_ID_CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";

/// Wall-clock time in milliseconds since the Unix epoch, injectable for tests.
pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now_ms(&self) -> i64;
}

/// The real clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        jiff::Timestamp::now().as_millisecond()
    }
}

/// A clock that only moves when told to.
#[derive(Debug, Default)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    pub fn new(ms: i64) -> Self {
        Self(AtomicI64::new(ms))
    }
    pub fn advance_ms(&self, ms: i64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// One async task (keyed by the RequestId of the call that created it).
#[derive(Debug, Clone, Serialize)]
pub struct Task {
    pub id: String,
    pub action: String,
    pub lbs: Vec<String>,
    pub created_ms: i64,
    pub done_ms: i64,
    pub status: i64,
    pub will_fail: bool,
    pub message: Option<String>,
    pub load_balancer_ids: Option<Vec<String>>,
    pub deal_name: Option<String>,
}

/// Per-action call counters, reads and writes separately, plus error codes.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Counters {
    pub reads: BTreeMap<String, u64>,
    pub writes: BTreeMap<String, u64>,
    pub total_reads: u64,
    pub total_writes: u64,
    /// Error responses by code.
    pub errors: BTreeMap<String, u64>,
    /// Error responses by action and code (`Action/Code`).
    pub action_errors: BTreeMap<String, u64>,
    /// Every layer-7 listener's DefaultServer domain over time, by listener id: a new entry
    /// each time a write leaves it different (`null`: rules but no default). Shows whether a
    /// sequence of calls ever let CLB move the default to another domain.
    pub default_domains: BTreeMap<String, Vec<Option<String>>>,
}

impl Counters {
    /// Record the default domain of every layer-7 listener of `lb` after a write.
    pub fn note_default_domains(&mut self, lb: &crate::state::Lb) {
        for l in &lb.listeners {
            if l.rules.is_empty() {
                continue;
            }
            let now = l.default_domain();
            let history = self.default_domains.entry(l.id.clone()).or_default();
            if history.last() != Some(&now) {
                history.push(now);
            }
        }
    }
}

/// Whether an action only reads.
pub fn is_read(action: &str) -> bool {
    action.starts_with("Describe")
}

/// The mutable heart of the emulator, guarded by one mutex in the server.
#[derive(Debug)]
pub struct Core {
    pub settings: Settings,
    pub state: State,
    pub tasks: HashMap<String, Task>,
    pub deals: HashMap<String, String>,
    running: BTreeSet<String>,
    task_order: Vec<String>,
    pub client_tokens: HashMap<String, Vec<String>>,
    pub counters: Counters,
    rate: HashMap<String, (i64, u32)>,
    rng: StdRng,
    clock: Arc<dyn Clock>,
    /// The data plane's probe results (`None` without a data plane: every target is reported
    /// `Alive`, as nothing probes it).
    pub health: Option<Arc<crate::health::HealthTable>>,
}

impl Core {
    pub fn new(settings: Settings, state: State, clock: Arc<dyn Clock>) -> Self {
        let rng = match settings.seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => StdRng::from_os_rng(),
        };
        Self {
            settings,
            state,
            tasks: HashMap::new(),
            deals: HashMap::new(),
            running: BTreeSet::new(),
            task_order: Vec::new(),
            client_tokens: HashMap::new(),
            counters: Counters::default(),
            rate: HashMap::new(),
            rng,
            clock,
            health: None,
        }
    }

    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// `YYYY-MM-DD HH:mm:ss` in Beijing time.
    pub fn time_string(&self) -> String {
        let ts =
            jiff::Timestamp::from_millisecond(self.now_ms()).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
        let tz = jiff::tz::TimeZone::fixed(jiff::tz::offset(TIME_OFFSET_HOURS));
        ts.to_zoned(tz).strftime("%Y-%m-%d %H:%M:%S").to_string()
    }

    /// A fresh lowercase UUID from the seeded RNG.
    pub fn request_id(&mut self) -> String {
        let bytes: [u8; 16] = self.rng.random();
        uuid::Builder::from_random_bytes(bytes)
            .into_uuid()
            .hyphenated()
            .to_string()
    }

    fn random_string(&mut self, chars: &[u8], len: usize) -> String {
        (0..len)
            .map(|_| chars[self.rng.random_range(0..chars.len())] as char)
            .collect()
    }

    /// `len` random characters of `A-Za-z0-9` (issued temporary keys and tokens).
    pub fn random_alphanumeric(&mut self, len: usize) -> String {
        const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
        self.random_string(CHARS, len)
    }

    /// A new unused id `prefix-xxxxxxxx`.
    pub fn new_id(&mut self, prefix: &str) -> String {
        loop {
            let id = format!("{prefix}-{}", self.random_string(ID_CHARS, ID_LEN));
            if !self.state.id_in_use(&id) {
                return id;
            }
        }
    }

    /// A new unused certificate id (8 mixed-case alphanumerics).
    pub fn new_cert_id(&mut self) -> String {
        loop {
            let id = self.random_string(CERT_ID_CHARS, ID_LEN);
            if !self.state.id_in_use(&id) {
                return id;
            }
        }
    }

    /// A new DealName (digits).
    pub fn new_deal_name(&mut self) -> String {
        self.random_string(b"0123456789", DEAL_NAME_LEN)
    }

    /// Roll a fault probability.
    pub fn roll(&mut self, p: f64) -> bool {
        p > 0.0 && self.rng.random::<f64>() < p
    }

    /// Count one call (after authentication).
    pub fn count_call(&mut self, action: &str) {
        let c = &mut self.counters;
        if is_read(action) {
            *c.reads.entry(action.to_string()).or_default() += 1;
            c.total_reads += 1;
        } else {
            *c.writes.entry(action.to_string()).or_default() += 1;
            c.total_writes += 1;
        }
    }

    /// Count one error response.
    pub fn count_error(&mut self, action: &str, code: &str) {
        *self.counters.errors.entry(code.to_string()).or_default() += 1;
        *self
            .counters
            .action_errors
            .entry(format!("{action}/{code}"))
            .or_default() += 1;
    }

    /// The per-action rate limit and the injected `RequestLimitExceeded`.
    pub fn check_rate(&mut self, action: &str) -> Result<(), ApiFailure> {
        let limit = self.settings.rate_limit_for(action);
        if limit > 0 {
            let second = self.now_ms().div_euclid(1000);
            let slot = self.rate.entry(action.to_string()).or_insert((second, 0));
            if slot.0 != second {
                *slot = (second, 0);
            }
            slot.1 += 1;
            if slot.1 > limit {
                return Err(ApiFailure::new(
                    codes::REQUEST_LIMIT_EXCEEDED,
                    format!(
                        "Your current request times equals to `{}` in a second, which exceeds the frequency limit `{limit}` for a second. Please reduce the frequency of calls.",
                        slot.1
                    ),
                ));
            }
        }
        let p = Faults::probability(&self.settings.faults.request_limit_exceeded, action);
        if self.roll(p) {
            return Err(ApiFailure::new(
                codes::REQUEST_LIMIT_EXCEEDED,
                "Request limit exceeded (injected by the emulator).",
            ));
        }
        Ok(())
    }

    /// The injected `InternalError`.
    pub fn check_internal_error(&mut self, action: &str) -> Result<(), ApiFailure> {
        let p = Faults::probability(&self.settings.faults.internal_error, action);
        if self.roll(p) {
            return Err(ApiFailure::new(
                codes::INTERNAL_ERROR,
                "An internal error has occurred (injected by the emulator).",
            ));
        }
        Ok(())
    }

    /// Finish every running task whose delay has passed (unless tasks are paused).
    pub fn settle(&mut self) {
        if self.settings.faults.pause_tasks {
            return;
        }
        let now = self.now_ms();
        let done: Vec<String> = self
            .running
            .iter()
            .filter(|id| self.tasks.get(*id).is_none_or(|t| t.done_ms <= now))
            .cloned()
            .collect();
        for id in done {
            self.running.remove(&id);
            if let Some(t) = self.tasks.get_mut(&id) {
                if t.will_fail {
                    t.status = TASK_FAILED;
                    t.message = Some(format!(
                        "task {} ({}) failed (injected by the emulator)",
                        t.id, t.action
                    ));
                } else {
                    t.status = TASK_SUCCEEDED;
                }
            }
        }
    }

    /// Whether a task is running on the CLB.
    pub fn busy(&self, lb: &str) -> bool {
        self.running.iter().any(|id| {
            self.tasks
                .get(id)
                .is_some_and(|t| t.lbs.iter().any(|l| l == lb))
        })
    }

    /// Whether a given task is still running.
    pub fn task_running(&self, id: &str) -> bool {
        self.running.contains(id)
    }

    /// The write check of §4: the CLB exists and has no running task (and no injected busy).
    pub fn writable(&mut self, action: &str, lb: &str) -> Result<(), ApiFailure> {
        if self.state.lb(lb).is_none() {
            return Err(ApiFailure::lb_not_found(lb));
        }
        if self.busy(lb) {
            return Err(ApiFailure::in_operating(lb));
        }
        let p = Faults::probability(&self.settings.faults.resource_in_operating, action);
        if self.roll(p) {
            return Err(ApiFailure::in_operating(lb));
        }
        Ok(())
    }

    /// Decide now whether the task of this call will fail.
    pub fn roll_task_failure(&mut self, action: &str) -> bool {
        let p = Faults::probability(&self.settings.faults.task_failure, action);
        self.roll(p)
    }

    /// Record a new running task.
    pub fn add_task(&mut self, mut task: Task) {
        task.status = TASK_RUNNING;
        task.done_ms = task.created_ms + self.settings.task_delay_ms as i64;
        if let Some(d) = &task.deal_name {
            self.deals.insert(d.clone(), task.id.clone());
        }
        self.running.insert(task.id.clone());
        self.task_order.push(task.id.clone());
        self.tasks.insert(task.id.clone(), task);
        if self.tasks.len() > MAX_TASKS {
            let mut kept = Vec::with_capacity(self.task_order.len());
            let excess = self.tasks.len() - MAX_TASKS;
            let mut dropped = 0;
            for id in std::mem::take(&mut self.task_order) {
                if dropped < excess && !self.running.contains(&id) {
                    if let Some(t) = self.tasks.remove(&id)
                        && let Some(d) = t.deal_name
                    {
                        self.deals.remove(&d);
                    }
                    dropped += 1;
                } else {
                    kept.push(id);
                }
            }
            self.task_order = kept;
        }
    }

    /// Forget all tasks, counters and resources (settings are kept).
    pub fn reset(&mut self) {
        self.state = State::new();
        self.tasks.clear();
        self.deals.clear();
        self.running.clear();
        self.task_order.clear();
        self.client_tokens.clear();
        self.counters = Counters::default();
        self.rate.clear();
    }

    /// Tasks in creation order (for the admin view).
    pub fn task_list(&self) -> Vec<&Task> {
        self.task_order
            .iter()
            .filter_map(|id| self.tasks.get(id))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn core(delay: u64) -> (Core, Arc<ManualClock>) {
        let clock = Arc::new(ManualClock::new(1_700_000_000_000));
        let settings = Settings {
            seed: Some(1),
            task_delay_ms: delay,
            ..Settings::default()
        };
        (Core::new(settings, State::new(), clock.clone()), clock)
    }

    fn task(c: &Core, id: &str, lb: &str, fail: bool) -> Task {
        Task {
            id: id.into(),
            action: "CreateRule".into(),
            lbs: vec![lb.into()],
            created_ms: c.now_ms(),
            done_ms: 0,
            status: 0,
            will_fail: fail,
            message: None,
            load_balancer_ids: None,
            deal_name: None,
        }
    }

    #[test]
    fn a_task_runs_for_the_configured_delay_then_succeeds() {
        let (mut c, clock) = core(100);
        let t = task(&c, "t1", "lb-1", false);
        c.add_task(t);
        assert!(c.busy("lb-1"));
        clock.advance_ms(99);
        c.settle();
        assert_eq!(c.tasks["t1"].status, TASK_RUNNING);
        clock.advance_ms(1);
        c.settle();
        assert_eq!(c.tasks["t1"].status, TASK_SUCCEEDED);
        assert!(!c.busy("lb-1"));
    }

    #[test]
    fn a_failing_task_ends_in_status_one_with_a_message() {
        let (mut c, clock) = core(10);
        let t = task(&c, "t1", "lb-1", true);
        c.add_task(t);
        clock.advance_ms(10);
        c.settle();
        assert_eq!(c.tasks["t1"].status, TASK_FAILED);
        assert!(c.tasks["t1"].message.is_some());
    }

    #[test]
    fn paused_tasks_stay_running_until_resumed() {
        let (mut c, clock) = core(10);
        c.settings.faults.pause_tasks = true;
        let t = task(&c, "t1", "lb-1", false);
        c.add_task(t);
        clock.advance_ms(1_000);
        c.settle();
        assert_eq!(c.tasks["t1"].status, TASK_RUNNING);
        c.settings.faults.pause_tasks = false;
        c.settle();
        assert_eq!(c.tasks["t1"].status, TASK_SUCCEEDED);
    }

    #[test]
    fn the_rate_limit_allows_n_calls_per_second_per_action() {
        let (mut c, clock) = core(0);
        c.settings.rate_limit = 2;
        assert!(c.check_rate("CreateRule").is_ok());
        assert!(c.check_rate("CreateRule").is_ok());
        assert_eq!(
            c.check_rate("CreateRule").map_err(|e| e.code),
            Err(codes::REQUEST_LIMIT_EXCEEDED.to_string())
        );
        assert!(c.check_rate("DeleteRule").is_ok());
        clock.advance_ms(1_000);
        assert!(c.check_rate("CreateRule").is_ok());
    }

    #[test]
    fn the_same_seed_gives_the_same_ids_and_request_ids() {
        let (mut a, _) = core(0);
        let (mut b, _) = core(0);
        assert_eq!(a.new_id("lb"), b.new_id("lb"));
        assert_eq!(a.request_id(), b.request_id());
        let id = a.new_id("loc");
        assert!(id.starts_with("loc-") && id.len() == 12);
    }

    #[test]
    fn time_strings_are_beijing_time() {
        let (c, _) = core(0);
        // 1_700_000_000 = 2023-11-14 22:13:20 UTC
        assert_eq!(c.time_string(), "2023-11-15 06:13:20");
    }
}
