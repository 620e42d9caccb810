//! Health checks of the emulator's data plane: every rule's `HealthCheck` settings (as CLB
//! stores them, defaults filled in), the prober that checks each loopback target of each rule
//! over HTTP on its own schedule, and the table of results that target choice and
//! `DescribeTargetHealth` read.
//!
//! As the real CLB: a target is probed per rule; it starts `Unknown` (not healthy: it gets no
//! traffic) and turns `Alive` after `HealthNum` successes in a row, then `Dead` after
//! `UnHealthNum` failures in a row (and `Alive` again after `HealthNum` successes). A probe
//! succeeds when the target answers within `TimeOut` with a status whose class is in the
//! `HttpCode` bitmask (1 = 1xx, 2 = 2xx, 4 = 3xx, 8 = 4xx, 16 = 5xx). A rule whose check is off
//! reports `Close` and forwards to every target with weight > 0; when every weighted target of
//! a rule is `Dead`, CLB forwards to all of them (see the data plane's target choice).
//!
//! The emulator never connects to a non-loopback address, so targets outside 127.0.0.0/8 are
//! never probed and always count as `Alive` (routing tests with pod IPs such as 10.x keep
//! working). Probe timing can be shortened for tests with [`HealthTiming`].

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode, header};
use http_body_util::Empty;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::task::JoinHandle;

use clb_api::types::HealthCheck;

/// CLB's defaults for a layer-7 rule's health check (clb-api.md §3.8).
pub const DEFAULT_TIME_OUT_SECS: i64 = 2;
pub const DEFAULT_INTERVAL_SECS: i64 = 5;
pub const DEFAULT_HEALTH_NUM: i64 = 3;
pub const DEFAULT_UN_HEALTH_NUM: i64 = 3;
/// Every status class counts as healthy (1xx..5xx).
pub const DEFAULT_HTTP_CODE: i64 = 31;
pub const DEFAULT_CHECK_PATH: &str = "/";
pub const DEFAULT_CHECK_METHOD: &str = "HEAD";
/// How long idle pooled probe connections are kept.
const PROBE_POOL_IDLE: Duration = Duration::from_secs(10);

/// The health check a rule stores: `given` laid over `base` (the rule's current settings, or
/// CLB's defaults for a new rule), field by field, as CreateRule and ModifyRule do.
pub fn merged(base: Option<&HealthCheck>, given: Option<&HealthCheck>) -> HealthCheck {
    let base = base.cloned().unwrap_or_else(rule_defaults);
    let Some(g) = given else { return base };
    HealthCheck {
        health_switch: g.health_switch.or(base.health_switch),
        time_out: g.time_out.or(base.time_out),
        interval_time: g.interval_time.or(base.interval_time),
        health_num: g.health_num.or(base.health_num),
        un_health_num: g.un_health_num.or(base.un_health_num),
        http_code: g.http_code.or(base.http_code),
        http_check_path: g.http_check_path.clone().or(base.http_check_path),
        http_check_domain: g.http_check_domain.clone().or(base.http_check_domain),
        http_check_method: g.http_check_method.clone().or(base.http_check_method),
        check_port: g.check_port.or(base.check_port),
        check_type: g.check_type.clone().or(base.check_type),
        http_version: g.http_version.clone().or(base.http_version),
        source_ip_type: g.source_ip_type.or(base.source_ip_type),
        context_type: g.context_type.clone().or(base.context_type),
        send_context: g.send_context.clone().or(base.send_context),
        recv_context: g.recv_context.clone().or(base.recv_context),
        extended_code: g.extended_code.clone().or(base.extended_code),
    }
}

/// What a layer-7 rule created without a `HealthCheck` has: the check on, CLB's defaults.
pub fn rule_defaults() -> HealthCheck {
    HealthCheck {
        health_switch: Some(1),
        time_out: Some(DEFAULT_TIME_OUT_SECS),
        interval_time: Some(DEFAULT_INTERVAL_SECS),
        health_num: Some(DEFAULT_HEALTH_NUM),
        un_health_num: Some(DEFAULT_UN_HEALTH_NUM),
        http_code: Some(DEFAULT_HTTP_CODE),
        http_check_path: Some(DEFAULT_CHECK_PATH.into()),
        http_check_method: Some(DEFAULT_CHECK_METHOD.into()),
        check_type: Some("HTTP".into()),
        source_ip_type: Some(0),
        ..HealthCheck::default()
    }
}

/// Why a rule's health check settings are refused (beyond the per-field ranges of the spec).
pub fn check_rule_settings(hc: &HealthCheck) -> Result<(), String> {
    let timeout = hc.time_out.unwrap_or(DEFAULT_TIME_OUT_SECS);
    let interval = hc.interval_time.unwrap_or(DEFAULT_INTERVAL_SECS);
    if timeout >= interval {
        return Err(format!(
            "HealthCheck.TimeOut ({timeout}) must be less than HealthCheck.IntervalTime ({interval})"
        ));
    }
    if let Some(p) = &hc.http_check_path
        && (!p.starts_with('/') || p.len() > 200 || p.chars().any(|c| c.is_control()))
    {
        return Err(format!(
            "HealthCheck.HttpCheckPath {p:?} must start with `/`, be at most 200 characters and have no control characters"
        ));
    }
    if let Some(d) = &hc.http_check_domain
        && (d.is_empty()
            || d.len() > 80
            || d.starts_with('~')
            || d.contains('*')
            || !d
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_'))
    {
        return Err(format!(
            "HealthCheck.HttpCheckDomain {d:?} must be a literal host name of 1-80 characters (no regex, no wildcard)"
        ));
    }
    Ok(())
}

/// The probe schedule and request of one rule, as the data plane runs it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HealthPlane {
    pub interval: Duration,
    pub timeout: Duration,
    /// Successes in a row that make a target `Alive`.
    pub healthy_threshold: u32,
    /// Failures in a row that make an `Alive` (or `Unknown`) target `Dead`.
    pub unhealthy_threshold: u32,
    /// Bitmask of healthy status classes: 1 = 1xx, 2 = 2xx, 4 = 3xx, 8 = 4xx, 16 = 5xx.
    pub http_codes: u8,
    pub path: String,
    /// The probe's Host header; `None` sends the target's own address.
    pub host: Option<String>,
    /// `HEAD` or `GET`.
    pub get: bool,
}

impl HealthPlane {
    /// The data plane view of a rule's stored check; `None` when the check is off. The Host of
    /// the probe is `HttpCheckDomain`, else the rule's (first) domain unless it is a regex or
    /// wildcard.
    pub fn from_rule(hc: Option<&HealthCheck>, domain: Option<&str>) -> Option<Self> {
        let hc = merged(hc, None);
        if hc.health_switch == Some(0) {
            return None;
        }
        let secs =
            |v: Option<i64>, d: i64| Duration::from_secs(v.unwrap_or(d).max(1).unsigned_abs());
        let count =
            |v: Option<i64>, d: i64| u32::try_from(v.unwrap_or(d).clamp(1, 10)).unwrap_or(3);
        let host = hc.http_check_domain.clone().or_else(|| {
            domain
                .filter(|d| !d.starts_with('~') && !d.contains('*'))
                .map(str::to_owned)
        });
        Some(Self {
            interval: secs(hc.interval_time, DEFAULT_INTERVAL_SECS),
            timeout: secs(hc.time_out, DEFAULT_TIME_OUT_SECS),
            healthy_threshold: count(hc.health_num, DEFAULT_HEALTH_NUM),
            unhealthy_threshold: count(hc.un_health_num, DEFAULT_UN_HEALTH_NUM),
            http_codes: u8::try_from(hc.http_code.unwrap_or(DEFAULT_HTTP_CODE).clamp(1, 31))
                .unwrap_or(31),
            path: hc
                .http_check_path
                .clone()
                .unwrap_or_else(|| DEFAULT_CHECK_PATH.into()),
            host,
            get: hc.http_check_method.as_deref() == Some("GET"),
        })
    }

    /// Whether an answer with `status` counts as healthy.
    pub fn healthy_status(&self, status: StatusCode) -> bool {
        let bit = match status.as_u16() / 100 {
            1 => 1,
            2 => 2,
            3 => 4,
            4 => 8,
            5 => 16,
            _ => 0,
        };
        self.http_codes & bit != 0
    }
}

/// Shorter probe timing for tests and demos: overrides every rule's interval and timeout (the
/// thresholds still apply). `None` keeps the rules' own seconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HealthTiming {
    pub interval: Option<Duration>,
    pub timeout: Option<Duration>,
}

/// A target's health on one rule, as `DescribeTargetHealth` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// Passed `HealthNum` probes in a row.
    Alive,
    /// Failed `UnHealthNum` probes in a row.
    Dead,
    /// Not probed enough yet (a new target): gets no traffic.
    Unknown,
    /// The rule's check is off: forwarded to regardless.
    Close,
}

impl Health {
    /// The `HealthStatusDetail` string.
    pub fn detail(self) -> &'static str {
        match self {
            Self::Alive => "Alive",
            Self::Dead => "Dead",
            Self::Unknown => "Unknown",
            Self::Close => "Close",
        }
    }

    /// Whether the data plane may forward to the target.
    pub fn routable(self) -> bool {
        matches!(self, Self::Alive | Self::Close)
    }
}

/// (location id, target ip, target port).
pub type TargetKey = (String, String, u16);

#[derive(Debug, Clone, Copy)]
struct Record {
    health: Health,
    successes: u32,
    failures: u32,
}

/// The probe results of every probed target, shared by the prober, the data plane's target
/// choice and the API's `DescribeTargetHealth`.
#[derive(Debug, Default)]
pub struct HealthTable {
    records: RwLock<HashMap<TargetKey, Record>>,
}

impl HealthTable {
    /// The health of target `ip:port` on rule `location_id` whose check is `check` (`None`:
    /// off). Non-loopback targets are `Alive`; probed targets not seen yet are `Unknown`.
    pub fn health(&self, location_id: &str, ip: &str, port: u16, check: bool) -> Health {
        if !check {
            return Health::Close;
        }
        if loopback(ip).is_none() {
            return Health::Alive;
        }
        self.records
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&(location_id.to_owned(), ip.to_owned(), port))
            .map_or(Health::Unknown, |r| r.health)
    }

    fn record(&self, key: &TargetKey, ok: bool, plane: &HealthPlane) {
        let mut records = self.records.write().unwrap_or_else(PoisonError::into_inner);
        let r = records.entry(key.clone()).or_insert(Record {
            health: Health::Unknown,
            successes: 0,
            failures: 0,
        });
        if ok {
            r.successes = r.successes.saturating_add(1);
            r.failures = 0;
            if r.successes >= plane.healthy_threshold {
                r.health = Health::Alive;
            }
        } else {
            r.failures = r.failures.saturating_add(1);
            r.successes = 0;
            if r.failures >= plane.unhealthy_threshold {
                r.health = Health::Dead;
            }
        }
    }

    fn forget(&self, key: &TargetKey) {
        self.records
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(key);
    }
}

/// The target's address if it may be probed: an IPv4 address in 127.0.0.0/8 only.
fn loopback(ip: &str) -> Option<Ipv4Addr> {
    ip.trim()
        .parse::<Ipv4Addr>()
        .ok()
        .filter(Ipv4Addr::is_loopback)
}

/// One probed target of one rule.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ProbeJob {
    pub location_id: String,
    pub ip: String,
    pub port: u16,
    pub plane: HealthPlane,
}

type ProbeClient = Client<HttpConnector, Empty<Bytes>>;

/// Runs one probe task per (rule, loopback target) with the check on, started, restarted and
/// stopped as the configuration changes.
#[derive(Debug)]
pub struct Prober {
    table: Arc<HealthTable>,
    timing: HealthTiming,
    client: ProbeClient,
    jobs: Mutex<HashMap<TargetKey, (HealthPlane, JoinHandle<()>)>>,
}

impl Prober {
    pub fn new(table: Arc<HealthTable>, timing: HealthTiming) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(PROBE_POOL_IDLE)
            .build(connector);
        Self {
            table,
            timing,
            client,
            jobs: Mutex::new(HashMap::new()),
        }
    }

    /// Probe exactly `wanted` (loopback targets are kept, others ignored): new jobs start with
    /// an immediate probe, changed settings restart a job (its health is kept), jobs no longer
    /// wanted stop and their targets are forgotten. Must run inside a Tokio runtime.
    pub fn set_jobs(&self, wanted: Vec<ProbeJob>) {
        let mut jobs = self.jobs.lock().unwrap_or_else(PoisonError::into_inner);
        let mut keep: HashMap<TargetKey, HealthPlane> = HashMap::new();
        for job in wanted {
            let Some(ip) = loopback(&job.ip) else {
                continue;
            };
            let key = (job.location_id, job.ip, job.port);
            if jobs.get(&key).is_some_and(|(p, _)| *p == job.plane) {
                keep.insert(key, job.plane);
                continue;
            }
            if let Some((_, old)) = jobs.remove(&key) {
                old.abort();
            }
            let task = tokio::spawn(probe_loop(
                self.table.clone(),
                self.client.clone(),
                key.clone(),
                SocketAddrV4::new(ip, key.2),
                job.plane.clone(),
                self.timing,
            ));
            jobs.insert(key.clone(), (job.plane.clone(), task));
            keep.insert(key, job.plane);
        }
        let gone: Vec<TargetKey> = jobs
            .keys()
            .filter(|k| !keep.contains_key(*k))
            .cloned()
            .collect();
        for key in gone {
            if let Some((_, task)) = jobs.remove(&key) {
                task.abort();
            }
            self.table.forget(&key);
        }
    }

    /// Stop every probe.
    pub fn stop(&self) {
        self.set_jobs(Vec::new());
    }
}

impl Drop for Prober {
    fn drop(&mut self) {
        for (_, (_, task)) in self
            .jobs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain()
        {
            task.abort();
        }
    }
}

async fn probe_loop(
    table: Arc<HealthTable>,
    client: ProbeClient,
    key: TargetKey,
    addr: SocketAddrV4,
    plane: HealthPlane,
    timing: HealthTiming,
) {
    let interval = timing.interval.unwrap_or(plane.interval);
    let timeout = timing.timeout.unwrap_or(plane.timeout).min(interval);
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let ok = probe(&client, addr, &plane, timeout).await;
        table.record(&key, ok, &plane);
    }
}

/// One probe: the configured method and path with the Host header, answered in time with a
/// healthy status class.
async fn probe(
    client: &ProbeClient,
    addr: SocketAddrV4,
    plane: &HealthPlane,
    timeout: Duration,
) -> bool {
    let host = plane.host.clone().unwrap_or_else(|| addr.to_string());
    let Ok(req) = Request::builder()
        .method(if plane.get { Method::GET } else { Method::HEAD })
        .uri(format!("http://{addr}{}", plane.path))
        .header(header::HOST, host)
        .header(header::USER_AGENT, "clb-healthcheck")
        .body(Empty::<Bytes>::new())
    else {
        return false;
    };
    match tokio::time::timeout(timeout, client.request(req)).await {
        Ok(Ok(resp)) => plane.healthy_status(resp.status()),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plane(codes: u8) -> HealthPlane {
        HealthPlane {
            interval: Duration::from_millis(20),
            timeout: Duration::from_millis(10),
            healthy_threshold: 2,
            unhealthy_threshold: 3,
            http_codes: codes,
            path: "/".into(),
            host: None,
            get: false,
        }
    }

    #[test]
    fn a_rule_without_a_health_check_gets_clbs_defaults_with_the_check_on() {
        let hc = merged(None, None);
        assert_eq!(hc.health_switch, Some(1));
        assert_eq!(hc.interval_time, Some(5));
        assert_eq!(hc.time_out, Some(2));
        assert_eq!(hc.health_num, Some(3));
        assert_eq!(hc.http_code, Some(31));
        assert_eq!(hc.http_check_method.as_deref(), Some("HEAD"));
    }

    #[test]
    fn modify_keeps_the_fields_it_does_not_name() {
        let first = merged(
            None,
            Some(&HealthCheck {
                http_check_path: Some("/healthz".into()),
                ..Default::default()
            }),
        );
        let second = merged(
            Some(&first),
            Some(&HealthCheck {
                health_num: Some(2),
                ..Default::default()
            }),
        );
        assert_eq!(second.http_check_path.as_deref(), Some("/healthz"));
        assert_eq!(second.health_num, Some(2));
    }

    #[test]
    fn a_timeout_not_below_the_interval_and_a_regex_check_domain_are_refused() {
        let bad = HealthCheck {
            time_out: Some(5),
            interval_time: Some(5),
            ..Default::default()
        };
        assert!(check_rule_settings(&bad).unwrap_err().contains("TimeOut"));
        let regex = HealthCheck {
            http_check_domain: Some("~^a.com$".into()),
            ..Default::default()
        };
        assert!(
            check_rule_settings(&regex)
                .unwrap_err()
                .contains("HttpCheckDomain")
        );
        let path = HealthCheck {
            http_check_path: Some("healthz".into()),
            ..Default::default()
        };
        assert!(
            check_rule_settings(&path)
                .unwrap_err()
                .contains("HttpCheckPath")
        );
        assert!(check_rule_settings(&rule_defaults()).is_ok());
    }

    #[test]
    fn http_code_bits_select_status_classes() {
        let two_three = plane(2 | 4);
        assert!(two_three.healthy_status(StatusCode::OK));
        assert!(two_three.healthy_status(StatusCode::FOUND));
        assert!(!two_three.healthy_status(StatusCode::NOT_FOUND));
        assert!(!two_three.healthy_status(StatusCode::SERVICE_UNAVAILABLE));
        assert!(plane(16).healthy_status(StatusCode::SERVICE_UNAVAILABLE));
    }

    #[test]
    fn a_target_turns_alive_after_the_healthy_threshold_and_dead_after_the_unhealthy_one() {
        let t = HealthTable::default();
        let p = plane(31);
        let key: TargetKey = ("loc-1".into(), "127.0.0.9".into(), 80);
        let health = || t.health("loc-1", "127.0.0.9", 80, true);
        assert_eq!(health(), Health::Unknown, "not probed yet");
        t.record(&key, true, &p);
        assert_eq!(health(), Health::Unknown, "one success is not enough");
        t.record(&key, true, &p);
        assert_eq!(health(), Health::Alive);
        t.record(&key, false, &p);
        t.record(&key, false, &p);
        assert_eq!(health(), Health::Alive, "two failures of three");
        t.record(&key, false, &p);
        assert_eq!(health(), Health::Dead);
        t.record(&key, true, &p);
        assert_eq!(health(), Health::Dead);
        t.record(&key, true, &p);
        assert_eq!(health(), Health::Alive);
    }

    #[test]
    fn non_loopback_targets_are_alive_and_a_rule_with_the_check_off_is_close() {
        let t = HealthTable::default();
        assert_eq!(t.health("loc-1", "10.0.0.1", 80, true), Health::Alive);
        assert_eq!(t.health("loc-1", "127.0.0.9", 80, false), Health::Close);
        assert!(Health::Close.routable() && !Health::Unknown.routable());
    }

    #[test]
    fn a_check_turned_off_gives_no_probe_plan() {
        let off = HealthCheck {
            health_switch: Some(0),
            ..Default::default()
        };
        assert_eq!(HealthPlane::from_rule(Some(&off), Some("a.com")), None);
        let on = HealthPlane::from_rule(None, Some("~^[^.]+\\.a\\.com$")).unwrap();
        assert_eq!(on.host, None, "a regex domain is not a Host");
        let on = HealthPlane::from_rule(None, Some("a.com")).unwrap();
        assert_eq!(on.host.as_deref(), Some("a.com"));
        assert_eq!(on.interval, Duration::from_secs(5));
    }

    #[tokio::test]
    async fn the_prober_marks_a_listening_target_alive_and_a_closed_port_dead() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = listener.accept().await else {
                    return;
                };
                tokio::spawn(async move {
                    use tokio::io::{AsyncReadExt, AsyncWriteExt};
                    let mut buf = [0u8; 1024];
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 {
                            return;
                        }
                        let _ = s
                            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                            .await;
                    }
                });
            }
        });
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let table = Arc::new(HealthTable::default());
        let prober = Prober::new(table.clone(), HealthTiming::default());
        let job = |port| ProbeJob {
            location_id: "loc-1".into(),
            ip: "127.0.0.1".into(),
            port,
            plane: plane(2),
        };
        prober.set_jobs(vec![job(port), job(closed)]);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let up = table.health("loc-1", "127.0.0.1", port, true);
            let down = table.health("loc-1", "127.0.0.1", closed, true);
            if up == Health::Alive && down == Health::Dead {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "up {up:?}, down {down:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        prober.set_jobs(vec![]);
        assert_eq!(
            table.health("loc-1", "127.0.0.1", port, true),
            Health::Unknown,
            "a target no longer probed is forgotten"
        );
    }
}
