//! The bad day, end to end: the real `clb-ingress run` binary against the test API server and
//! the CLB emulator while leadership, the cloud or the API server fail.

use clb_test_support::cluster;

use cluster::*;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// Timestamps (µs since the epoch) of the successful CLB writes in a JSON controller log.
fn write_times(log: &str) -> Vec<i64> {
    log.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["fields"]["message"] == "call succeeded")
        .filter(|v| {
            v["span"]["action"]
                .as_str()
                .is_some_and(|a| !a.starts_with("Describe"))
        })
        .filter_map(|v| {
            v["timestamp"]
                .as_str()?
                .parse::<jiff::Timestamp>()
                .ok()
                .map(|t| t.as_microsecond())
        })
        .collect()
}

async fn leader_metric(c: &Controller) -> f64 {
    metric(&c.metrics, "clb_ingress_leader")
        .await
        .unwrap_or(-1.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_cut_off_from_the_api_server_stops_writing_before_another_replica_starts() {
    let e = env().await;
    let flags = [
        "--leader-elect",
        "--leader-election-namespace",
        "default",
        "--lease-duration-seconds",
        "4",
        "--lease-margin-seconds",
        "1",
        "--log-format",
        "json",
    ];
    let filter = "info,clb_api::client=debug";
    let mut a = e.controller_logging("replica-a", filter, &flags);
    let mut b = e.controller_logging("replica-b", filter, &flags);
    e.class("PerIngress").await;
    e.service("web", &["10.1.0.1"]).await;
    e.ingress("shop", "shop.example.com", &[("/", "Prefix", "web")])
        .await;
    e.until_routed("shop", "shop.example.com", "/", "10.1.0.1:8080", SLOW)
        .await;
    let (la, lb) = (leader_metric(&a).await, leader_metric(&b).await);
    assert_eq!(la + lb, 1.0, "exactly one leader: a={la} b={lb}");
    let a_leads = la == 1.0;
    let old_identity = if a_leads { "replica-a" } else { "replica-b" };
    // The leader can no longer renew its Lease (everything else still works for it).
    e.api.fail_holder_writes(
        "leases",
        "default",
        "clb-ingress-leader",
        old_identity,
        true,
    );
    // Keep giving both replicas work while leadership moves.
    let started = Instant::now();
    let mut n = 0;
    let new_leads = loop {
        n += 1;
        e.ingress(
            &format!("w{n}"),
            &format!("w{n}.example.com"),
            &[("/", "Prefix", "web")],
        )
        .await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let (old, new) = if a_leads { (&a, &b) } else { (&b, &a) };
        if leader_metric(new).await == 1.0 {
            break true;
        }
        assert!(
            started.elapsed() < SLOW,
            "no takeover:\nold:\n{}\nnew:\n{}",
            old.log(),
            new.log()
        );
    };
    assert!(new_leads);
    // Whatever was created meanwhile is served by the new leader.
    e.until_routed(
        &format!("w{n}"),
        &format!("w{n}.example.com"),
        "/",
        "10.1.0.1:8080",
        SLOW,
    )
    .await;
    let (old, new) = if a_leads {
        (&mut a, &mut b)
    } else {
        (&mut b, &mut a)
    };
    // The old leader stopped by itself (it exits to rebuild its caches on restart).
    let exit = loop {
        if let Some(status) = old.child.try_wait().unwrap() {
            break status;
        }
        assert!(started.elapsed() < SLOW, "the old leader still runs");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(!exit.success(), "losing the lease is an error exit: {exit}");
    let (old_log, new_log) = (old.log(), new.log());
    let old_writes = write_times(&old_log);
    let new_writes = write_times(&new_log);
    assert!(
        !old_writes.is_empty(),
        "the old leader wrote first:\n{old_log}"
    );
    assert!(!new_writes.is_empty(), "the new leader wrote:\n{new_log}");
    let last_old = *old_writes.iter().max().unwrap();
    let first_new = *new_writes.iter().min().unwrap();
    eprintln!(
        "old leader's last write {:.3} s before the new leader's first",
        (first_new - last_old) as f64 / 1e6
    );
    assert!(
        last_old < first_new,
        "two writers overlapped: old wrote until {last_old}, new from {first_new}"
    );
    assert!(old_log.contains("stopping writes"), "{old_log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_cloud_call_of_one_clb_delays_neither_another_clb_nor_shutdown() {
    let e = env().await;
    let mut ctl = e.controller("c1", &[]);
    e.class("PerIngress").await;
    e.service("web", &["10.1.0.1"]).await;
    e.ingress("first", "first.example.com", &[("/", "Prefix", "web")])
        .await;
    e.until_routed("first", "first.example.com", "/", "10.1.0.1:8080", SLOW)
        .await;
    // Uploading a certificate now hangs for a minute: only the TLS Ingress needs one.
    let admin = reqwest::Client::builder().no_proxy().build().unwrap();
    let put = admin
        .put(format!("http://{}/_emulator/faults", e.emu.addr))
        .bearer_auth(e.emu.admin_token())
        .json(&json!({"latency_ms": {"UploadCertificate": 60_000}}))
        .send()
        .await
        .unwrap();
    assert!(put.status().is_success(), "{:?}", put.text().await);
    let cert = rcgen::generate_simple_self_signed(vec!["tls.example.com".to_string()]).unwrap();
    e.apply(
        json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
        "metadata": {"name": "tls", "namespace": "default"},
        "stringData": {"tls.crt": cert.cert.pem(), "tls.key": cert.signing_key.serialize_pem()}}),
    )
    .await;
    e.apply(json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": "stuck", "namespace": "default"},
        "spec": {"tls": [{"hosts": ["tls.example.com"], "secretName": "tls"}],
                 "rules": [{"host": "tls.example.com", "http": {"paths": [{"path": "/", "pathType": "Prefix",
                     "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}}]}}))
    .await;
    // Wait until its CLB exists: the certificate upload comes right after, and hangs.
    let started = Instant::now();
    while e.lb_count().await < 2 {
        assert!(started.elapsed() < SLOW, "no second CLB:\n{}", ctl.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Another CLB's change goes through while that call hangs.
    let t = Instant::now();
    e.ingress("second", "second.example.com", &[("/", "Prefix", "web")])
        .await;
    e.until_routed("second", "second.example.com", "/", "10.1.0.1:8080", SLOW)
        .await;
    let took = t.elapsed();
    eprintln!("another CLB's Ingress served after {took:?} while an upload hung");
    assert!(
        took < Duration::from_secs(10),
        "waited behind the stuck call: {took:?}"
    );
    // And SIGTERM still stops the controller at once.
    let log = ctl.log_path();
    let (exit, took) = sigterm_and_wait(&mut ctl.child, Duration::from_secs(2), || {
        std::fs::read_to_string(&log).unwrap_or_default()
    })
    .await;
    eprintln!("stopped {took:?} after SIGTERM");
    assert!(exit.success(), "{exit}\n{}", ctl.log());
}

/// CPU seconds (user + system) a process has used so far, from /proc.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_api_server_costs_little_cpu_few_log_lines_and_sigterm_still_stops_it() {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        clb_ingress::testapi::kubeconfig_yaml(&format!("http://127.0.0.1:{port}")),
    )
    .unwrap();
    let log = dir.path().join("controller.log");
    let mut child = clb_test_support::emulator::command()
        .args(["run", "--kubeconfig"])
        .arg(&kubeconfig)
        .args(["--clb-endpoint", "http://127.0.0.1:9"])
        .args(["--metrics-addr", "127.0.0.1:0", "--cluster-id", "outage"])
        .args(["--log", "info"])
        .env_remove("KUBECONFIG")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let pid = child.id();
    tokio::time::sleep(Duration::from_secs(15)).await;
    assert!(
        child.try_wait().unwrap().is_none(),
        "the controller waits for the API server instead of exiting:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let cpu = cpu_seconds(pid);
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let lines = text.lines().count();
    let (exit, took) = sigterm_and_wait(&mut child, Duration::from_secs(2), || {
        std::fs::read_to_string(&log).unwrap_or_default()
    })
    .await;
    eprintln!(
        "15 s without an API server: {cpu:.2} s CPU, {lines} log lines; stopped {took:?} after SIGTERM ({exit})"
    );
    assert!(cpu < 1.5, "{cpu} s CPU in 15 s");
    assert!(lines < 300, "{lines} log lines in 15 s:\n{text}");
    assert!(
        text.contains("watch error"),
        "the outage is visible in the log:\n{text}"
    );
}
