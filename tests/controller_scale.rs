//! Measurements of the whole controller (not pass/fail timing tests): run with
//! `cargo test --release --test controller_scale -- --ignored --nocapture --test-threads 1`.
//! - edit -> rule live latency over 100 edits (emulator task delay 0), p50 / p99;
//! - controller RSS with 1,000 Ingresses and 10,000 endpoints (goal: under 64 MiB);
//! - controller RSS with 10,000 Ingresses, 100,000 endpoints and 6,000 TLS Secrets (goal: under
//!   256 MiB): `cargo test --release --test controller_scale controller_memory_with_ten_thousand
//!   -- --ignored --nocapture`.
//!
//! Each RSS figure comes with its breakdown from `/proc/PID/status`: anonymous memory (heap,
//! stacks), file-backed pages (the mapped binary), the peak, and the thread count.

use clb_test_support::cluster;

use cluster::*;
use serde_json::json;
use std::time::{Duration, Instant};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement; run with --ignored --nocapture"]
async fn edit_to_live_latency_over_one_hundred_edits() {
    let e = env().await;
    let _ctl = e.controller("c1", &[]);
    e.class("PerIngress").await;
    e.service("web", &["10.1.0.1"]).await;
    e.service("api", &["10.2.0.1"]).await;
    e.ingress("shop", "shop.example.com", &[("/x", "Prefix", "web")])
        .await;
    e.until_routed("shop", "shop.example.com", "/x", "10.1.0.1:8080", SLOW)
        .await;
    let mut took = Vec::new();
    for i in 0..100 {
        let (svc, target) = if i % 2 == 0 {
            ("api", "10.2.0.1:8080")
        } else {
            ("web", "10.1.0.1:8080")
        };
        let started = Instant::now();
        e.ingress("shop", "shop.example.com", &[("/x", "Prefix", svc)])
            .await;
        e.until_routed("shop", "shop.example.com", "/x", target, SLOW)
            .await;
        took.push(started.elapsed());
    }
    took.sort();
    eprintln!(
        "edit -> live over {} edits: p50 {:?}, p90 {:?}, p99 {:?}, max {:?}",
        took.len(),
        percentile(&took, 0.5),
        percentile(&took, 0.9),
        percentile(&took, 0.99),
        took[took.len() - 1]
    );
    assert!(percentile(&took, 0.5) < SLOW);
}

/// The controller's memory as `/proc/PID/status` tells it, in KiB.
#[derive(Debug, Default)]
struct Rss {
    total: u64,
    anon: u64,
    file: u64,
    peak: u64,
    threads: u64,
}

fn rss(pid: u32) -> Rss {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    Rss {
        total: field("VmRSS:"),
        anon: field("RssAnon:"),
        file: field("RssFile:"),
        peak: field("VmHWM:"),
        threads: field("Threads:"),
    }
}

/// With `SCALE_SMAPS=1`: the controller's ten largest mappings by resident size, from
/// `/proc/PID/smaps` (heap arenas, thread stacks, the binary).
fn print_biggest_mappings(pid: u32) {
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap_or_default();
    let mut maps: Vec<(u64, String)> = Vec::new();
    let mut head = String::new();
    for line in smaps.lines() {
        if let Some(v) = line.strip_prefix("Rss:") {
            let kib = v.trim().trim_end_matches(" kB").trim().parse().unwrap_or(0);
            maps.push((kib, head.clone()));
        } else if line
            .split_whitespace()
            .next()
            .is_some_and(|w| w.contains('-'))
        {
            head = line.to_string();
        }
    }
    maps.sort_by_key(|m| std::cmp::Reverse(m.0));
    for (kib, head) in maps.iter().take(10) {
        eprintln!("  {:>8.1} MiB  {head}", mib(*kib));
    }
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// The size of one measurement.
struct Size {
    classes: usize,
    per_class: usize,
    services: usize,
    pods: usize,
    /// TLS Secrets in the namespace (watched as metadata only).
    secrets: usize,
    /// Every `tls_every`-th Ingress names one of the Secrets (0: none does).
    tls_every: usize,
}

/// One certificate for every host of the measurement (`*.example.com`), so the Secrets are
/// realistic in size without generating thousands of keys.
fn wildcard_secret(name: &str, ck: &rcgen::CertifiedKey<rcgen::KeyPair>) -> serde_json::Value {
    json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
        "metadata": {"name": name, "namespace": "default",
                     "labels": {"app.kubernetes.io/managed-by": "cert-manager"}},
        "stringData": {"tls.crt": ck.cert.pem(), "tls.key": ck.signing_key.serialize_pem()}})
}

/// Apply `size` against a fresh controller, wait until the last Ingress has its address, and
/// print the controller's RSS with its breakdown. Returns the RSS in KiB.
async fn measure(size: Size) -> u64 {
    let e = env().await;
    // 10,000 hosts at 50 rules per listener take 200 shard CLBs: the account's CLB quota
    // (100 by default) is raised, as it would be for such a cluster.
    e.emu.app.update_settings(|s| s.quotas.open_clb = 1000);
    let ctl = e.controller("c1", &[]);
    for c in 0..size.classes {
        e.apply_value(json!({"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
            "metadata": {"name": format!("clb{c}")},
            "spec": {"controller": "clb-ingress.io/ingress-controller",
                     "parameters": {"apiGroup": "clb-ingress.io", "kind": "ClbClassParameters", "name": format!("p{c}")}}}))
            .await;
        e.apply_value(json!({"apiVersion": "clb-ingress.io/v1alpha1", "kind": "ClbClassParameters",
            "metadata": {"name": format!("p{c}")}, "spec": {"targetMode": "Direct", "sharing": "Shared"}}))
            .await;
    }
    for s in 0..size.services {
        let ips: Vec<String> = (0..size.pods)
            .map(|p| format!("10.{}.{}.{}", 100 + s / 200, s % 200, p + 1))
            .collect();
        let refs: Vec<&str> = ips.iter().map(String::as_str).collect();
        e.service(&format!("svc{s}"), &refs).await;
    }
    if size.secrets > 0 {
        let ck = rcgen::generate_simple_self_signed(vec!["*.example.com".to_string()])
            .expect("certificate");
        for s in 0..size.secrets {
            e.apply_value(wildcard_secret(&format!("tls{s}"), &ck))
                .await;
        }
    }
    let total = size.classes * size.per_class;
    let started = Instant::now();
    for i in 0..total {
        let host = format!("h{i}.example.com");
        let mut spec = json!({"ingressClassName": format!("clb{}", i % size.classes),
            "rules": [{"host": host, "http": {"paths": [
                {"path": "/", "pathType": "Exact",
                 "backend": {"service": {"name": format!("svc{}", i % size.services), "port": {"number": 80}}}}]}}]});
        if size.tls_every > 0 && i % size.tls_every == 0 {
            spec["tls"] =
                json!([{"hosts": [host], "secretName": format!("tls{}", i % size.secrets)}]);
        }
        e.apply_value(
            json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": {"name": format!("ing{i}"), "namespace": "default"}, "spec": spec}),
        )
        .await;
    }
    // Converged when the last Ingress has its address.
    let last = format!("ing{}", total - 1);
    while e.vip(&last).await.is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(3600),
            "not converged"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let converged = started.elapsed();
    // Steady state: the controller has made no CLB call for 5 s (every stack synced, its
    // Events and statuses written), then the figures.
    let (mut last, mut since) = (serde_json::Value::Null, Instant::now());
    while since.elapsed() < Duration::from_secs(5) {
        let c = e.counters().await;
        if c != last {
            (last, since) = (c, Instant::now());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let r = rss(ctl.child.id());
    eprintln!(
        "{total} Ingresses, {} endpoints, {} Secrets ({} named by Ingresses), {} CLBs: \
         converged in {:?}; quiet controller RSS {} KiB ({:.1} MiB): anonymous {:.1} MiB, \
         file-backed {:.1} MiB, peak {:.1} MiB, {} threads",
        size.services * size.pods,
        size.secrets,
        if size.tls_every > 0 {
            total.div_ceil(size.tls_every)
        } else {
            0
        },
        e.lb_count().await,
        converged,
        r.total,
        mib(r.total),
        mib(r.anon),
        mib(r.file),
        mib(r.peak),
        r.threads
    );
    eprintln!(
        "  CLB calls: writes {}, reads {}, errors {}",
        last["writes"], last["reads"], last["action_errors"]
    );
    if std::env::var_os("SCALE_SMAPS").is_some() {
        print_biggest_mappings(ctl.child.id());
    }
    assert!(r.total > 0 && r.anon > 0, "no RSS read for the controller");
    r.total
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement; run with --ignored --nocapture"]
async fn controller_memory_with_1000_ingresses_and_10000_endpoints() {
    measure(Size {
        classes: 25,
        per_class: 40,
        services: 100,
        pods: 100,
        secrets: 0,
        tls_every: 0,
    })
    .await;
}

/// `cargo test --release --test controller_scale controller_memory_with_ten_thousand -- --ignored
/// --nocapture` (several minutes: 17,000 objects are applied one by one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement (minutes); run with --ignored --nocapture"]
async fn controller_memory_with_ten_thousand_ingresses_100000_endpoints_and_6000_secrets() {
    measure(Size {
        classes: 25,
        per_class: 400,
        services: 1000,
        pods: 100,
        secrets: 6000,
        tls_every: 10,
    })
    .await;
}
