//! Figures of warm restart at scale (measurements, not pass/fail timing tests): run with
//! `WARM_STACKS=1000 cargo test --release --test warm_restart_scale -- --ignored --nocapture`.
//! One Ingress per CLB (`PerIngress`), each with its own host, over 100 Services of 10 pods:
//! - restart: reads by action and the time until the restarted controller is quiet, with every
//!   stack unchanged (goal: one DescribeLoadBalancers per page of 100 CLBs, under 5 s for
//!   10,000);
//! - edit -> live p50/p99 of one Ingress while the full drift sweep reads every CLB;
//! - controller RSS after each phase.
//!
//! The first sync only builds the world to restart into: it runs with neither the emulator's
//! nor the controller's rate limit (10,000 CLBs at 20 requests/s per action would take half an
//! hour); the restart and the sweep run with both at their defaults.

use clb_test_support::cluster::{Env, SLOW, env};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

fn stacks() -> usize {
    std::env::var("WARM_STACKS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000)
}

fn rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Until the emulator's counters stop moving for `still` (after at least one call): the
/// counters, when they last moved and when the first call was seen (both from the start).
async fn until_quiet(e: &Env, still: Duration, limit: Duration) -> (Value, Duration, Duration) {
    let start = Instant::now();
    let (mut last, mut since) = (Value::Null, Instant::now());
    let mut first = None;
    loop {
        let c = e.counters().await;
        if first.is_none() && c["total_reads"].as_u64().unwrap_or(0) > 0 {
            first = Some(start.elapsed());
        }
        if c != last {
            last = c;
            since = Instant::now();
        } else if last["total_reads"].as_u64().unwrap_or(0) > 0 && since.elapsed() >= still {
            return (last, since.duration_since(start), first.unwrap_or_default());
        }
        assert!(start.elapsed() < limit, "never quiet: {last}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Patch the emulator's settings; the settings after the patch.
async fn settings(e: &Env, patch: Value) -> Value {
    let r = reqwest::Client::new()
        .patch(format!("http://{}/_emulator/settings", e.emu.addr))
        .bearer_auth(e.emu.admin_token())
        .json(&patch)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{patch}: {}", r.status());
    r.json().await.unwrap()
}

fn ingress(i: usize, svc: usize) -> Value {
    json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": format!("ing{i}"), "namespace": "default"},
        "spec": {"rules": [{"host": format!("h{i}.example.com"), "http": {"paths": [
            {"path": "/", "pathType": "Prefix",
             "backend": {"service": {"name": format!("svc{svc}"), "port": {"number": 80}}}}]}}]}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement; run with --ignored --nocapture (WARM_STACKS=10000 for the large figure)"]
async fn restart_with_unchanged_stacks_and_edits_during_a_full_sweep() {
    const SERVICES: usize = 100;
    let n = stacks();
    let e = env().await;
    // Room for one CLB per Ingress (the emulator's default is the account default, 100).
    let before = settings(&e, json!({})).await;
    settings(
        &e,
        json!({"quotas": {"open_clb": n + 10}, "rate_limit": 0, "task_delay_ms": 0}),
    )
    .await;
    let mut first = e.controller(
        "c1",
        &["--clb-requests-per-second", "0", "--concurrency", "32"],
    );
    e.class("PerIngress").await;
    for s in 0..SERVICES {
        let ips: Vec<String> = (0..10)
            .map(|p| format!("10.{}.{s}.{}", 100, p + 1))
            .collect();
        let refs: Vec<&str> = ips.iter().map(String::as_str).collect();
        e.service(&format!("svc{s}"), &refs).await;
    }
    let started = Instant::now();
    for i in 0..n {
        e.apply_value(ingress(i, i % SERVICES)).await;
    }
    // Converged: every CLB tagged with its digest.
    let req = clb_ingress::clb::types::DescribeLoadBalancersRequest::default();
    loop {
        let lbs = e.clb().describe_load_balancers(&req).await.unwrap();
        let tagged = lbs
            .iter()
            .filter(|l| l.tags.iter().any(|t| t.tag_key == "clb-ingress.io/desired"))
            .count();
        if tagged == n {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(3600),
            "not converged: {tagged}/{n}"
        );
        // Each check reads every CLB (the pages at once): not so often that it slows the sync.
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    let cold = started.elapsed();
    // Every stack tagged is not yet every Ingress's status written: stop the first controller
    // only once it has made no CLB call for 3 s, so the restart finds every stack unchanged.
    until_quiet(&e, Duration::from_secs(3), Duration::from_secs(600)).await;
    eprintln!(
        "{n} Ingresses on {n} CLBs: cold sync {:.1} s; controller RSS {:.1} MiB",
        cold.as_secs_f64(),
        rss_mib(first.child.id())
    );
    first.kill();
    // Back to the test emulator's settings (CLB's 20 requests/s per action).
    settings(
        &e,
        json!({"rate_limit": before["rate_limit"], "task_delay_ms": before["task_delay_ms"]}),
    )
    .await;
    eprintln!(
        "restart against {} requests/s per action, tasks of {} ms",
        before["rate_limit"], before["task_delay_ms"]
    );

    // Restart with nothing changed.
    e.reset_counters().await;
    let second = e.controller("c2", &[]);
    let (c, busy, first_call) =
        until_quiet(&e, Duration::from_secs(2), Duration::from_secs(600)).await;
    eprintln!(
        "restart with {n} unchanged stacks: reads {} ({}), writes {}; first call {:.2} s, calls done {:.2} s after start; controller RSS {:.1} MiB",
        c["total_reads"],
        c["reads"],
        c["total_writes"],
        first_call.as_secs_f64(),
        busy.as_secs_f64(),
        rss_mib(second.child.id())
    );
    eprintln!("  writes by action: {}", c["writes"]);
    // Why a stack was not skipped (E2E_LOG=info,clb_ingress::deploy::warm=debug shows it).
    for line in second
        .log()
        .lines()
        .filter(|l| l.contains("desired state changed"))
        .take(3)
    {
        eprintln!("  {line}");
    }
    // Passes other than the first full one (E2E_LOG=...,clb_ingress::controller::queue=debug).
    for line in second
        .log()
        .lines()
        .filter(|l| l.contains("preparing a pass") && !l.contains("full=true"))
        .take(5)
    {
        eprintln!("  {line}");
    }
    drop(second);

    // Edits while the full drift sweep runs (every CLB read at 20 per second, two at a time).
    let third = e.controller(
        "c3",
        &[
            "--full-resync-seconds",
            "1",
            "--full-resync-stacks-per-second",
            "20",
        ],
    );
    // The sweep never stops (a new one each second), so the counters never go quiet: give
    // the first (warm) pass a moment, then edit while CLBs are being read.
    tokio::time::sleep(Duration::from_secs(5)).await;
    e.reset_counters().await;
    let mut took = Vec::new();
    for k in 0..60 {
        let svc = if k % 2 == 0 { 1 } else { 0 };
        let target = format!("10.100.{svc}.1:8080");
        let t = Instant::now();
        e.apply_value(ingress(0, svc)).await;
        let start = Instant::now();
        // Live: 5 answers in a row from the new Service (one could come from a target of the
        // old Service still registered while the change is under way).
        let mut in_a_row = 0;
        loop {
            if let Some(vip) = e.vip("ing0").await {
                let (code, body) = e.request(&vip, "h0.example.com", "/").await;
                if code == 200 && body.starts_with(&format!("10.100.{svc}.")) {
                    in_a_row += 1;
                    if in_a_row == 5 {
                        break;
                    }
                    continue;
                }
                in_a_row = 0;
            }
            assert!(start.elapsed() < SLOW, "edit {k} not live ({target})");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        took.push(t.elapsed());
    }
    let c = e.counters().await;
    took.sort();
    eprintln!(
        "edit -> live over {} edits during the full sweep (DescribeListeners meanwhile: {}): p50 {:?}, p99 {:?}, max {:?}; controller RSS {:.1} MiB",
        took.len(),
        c["reads"]["DescribeListeners"],
        percentile(&took, 0.5),
        percentile(&took, 0.99),
        took[took.len() - 1],
        rss_mib(third.child.id())
    );
    assert!(percentile(&took, 0.5) < SLOW);
}
