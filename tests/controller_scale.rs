//! Measurements of the whole controller (not pass/fail timing tests): run with
//! `cargo test --release --test controller_scale -- --ignored --nocapture`.
//! - edit -> rule live latency over 100 edits (emulator task delay 0), p50 / p99;
//! - controller RSS with 1,000 Ingresses and 10,000 endpoints.

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

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement; run with --ignored --nocapture"]
async fn controller_memory_with_1000_ingresses_and_10000_endpoints() {
    const CLASSES: usize = 25;
    const PER_CLASS: usize = 40;
    const SERVICES: usize = 100;
    const PODS: usize = 100;
    let e = env().await;
    let ctl = e.controller("c1", &[]);
    for c in 0..CLASSES {
        e.apply_value(json!({"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
            "metadata": {"name": format!("clb{c}")},
            "spec": {"controller": "clb-ingress.io/ingress-controller",
                     "parameters": {"apiGroup": "clb-ingress.io", "kind": "ClbClassParameters", "name": format!("p{c}")}}}))
            .await;
        e.apply_value(json!({"apiVersion": "clb-ingress.io/v1alpha1", "kind": "ClbClassParameters",
            "metadata": {"name": format!("p{c}")}, "spec": {"targetMode": "Direct", "sharing": "Shared"}}))
            .await;
    }
    for s in 0..SERVICES {
        let ips: Vec<String> = (0..PODS)
            .map(|p| format!("10.{}.{}.{}", 100 + s / 200, s % 200, p + 1))
            .collect();
        let refs: Vec<&str> = ips.iter().map(String::as_str).collect();
        e.service(&format!("svc{s}"), &refs).await;
    }
    let started = Instant::now();
    for i in 0..CLASSES * PER_CLASS {
        e.apply_value(json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": {"name": format!("ing{i}"), "namespace": "default"},
            "spec": {"ingressClassName": format!("clb{}", i % CLASSES),
                     "rules": [{"host": format!("h{i}.example.com"), "http": {"paths": [
                        {"path": "/", "pathType": "Exact",
                         "backend": {"service": {"name": format!("svc{}", i % SERVICES), "port": {"number": 80}}}}]}}]}}))
            .await;
    }
    // Converged when the last Ingress has its address.
    let last = format!("ing{}", CLASSES * PER_CLASS - 1);
    while e.vip(&last).await.is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "not converged"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss = rss_kib(ctl.child.id());
    eprintln!(
        "{} Ingresses, {} endpoints, {} CLBs: converged in {:?}; controller RSS {} KiB ({:.1} MiB)",
        CLASSES * PER_CLASS,
        SERVICES * PODS,
        e.lb_count().await,
        started.elapsed(),
        rss,
        rss as f64 / 1024.0
    );
    assert!(rss > 0);
}
