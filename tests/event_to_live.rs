//! `clb_ingress_event_to_live_seconds` end to end (the real binary, the test API server, the
//! emulator): a watch event that changes the CLB is measured from its arrival to the moment
//! its stack's changes are applied; events that change nothing on the CLB are not counted.

use clb_test_support::cluster;

use cluster::*;
use serde_json::json;
use std::time::{Duration, Instant};

const COUNT: &str = "clb_ingress_event_to_live_seconds_count";
const SUM: &str = "clb_ingress_event_to_live_seconds_sum";

/// Wait until the histogram has counted `n` events; its count and sum then.
async fn until_counted(ctl: &Controller, n: f64) -> (f64, f64) {
    let start = Instant::now();
    loop {
        let count = metric(&ctl.metrics, COUNT).await.unwrap_or(-1.0);
        if count >= n {
            return (count, metric(&ctl.metrics, SUM).await.unwrap());
        }
        assert!(
            start.elapsed() < SLOW,
            "event-to-live count stayed {count} (want {n})\n{}",
            ctl.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ingress_and_an_endpoint_change_are_measured_from_their_watch_event_to_live() {
    let e = env().await;
    let ctl = e.controller("c1", &[]);
    e.class("PerIngress").await;
    e.service("web", &["10.1.0.1"]).await;
    // A Service nobody uses and the initial full sync are not events that went live.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        metric(&ctl.metrics, COUNT).await,
        Some(0.0),
        "{}",
        ctl.log()
    );

    // A new Ingress: from its watch event to its CLB serving it.
    let applied = Instant::now();
    e.ingress("shop", "shop.example.com", &[("/", "Prefix", "web")])
        .await;
    e.until_routed("shop", "shop.example.com", "/", "10.1.0.1:8080", SLOW)
        .await;
    let (count, first) = until_counted(&ctl, 1.0).await;
    let bound = applied.elapsed().as_secs_f64();
    assert_eq!(count, 1.0);
    assert!(
        first > 0.0 && first <= bound,
        "measured {first} s, the test saw the whole change take {bound} s"
    );

    // Let the pass that our own finalizer write causes run first: debounced together with
    // the endpoint change below, its earlier event time would be the one measured (a pass is
    // timed from the earliest event it handles).
    tokio::time::sleep(Duration::from_millis(500)).await;

    // A pod replaced in the EndpointSlice: the target changes on the CLB, measured too.
    let changed = Instant::now();
    e.service("web", &["10.1.0.2"]).await;
    e.until_routed("shop", "shop.example.com", "/", "10.1.0.2:8080", SLOW)
        .await;
    let (count, sum) = until_counted(&ctl, 2.0).await;
    let second = sum - first;
    assert_eq!(count, 2.0);
    assert!(
        second > 0.0 && second <= changed.elapsed().as_secs_f64(),
        "measured {second} s for the endpoint change"
    );

    // A Service change that changes nothing on the CLB (a label) is not counted.
    e.apply(json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "web", "namespace": "default", "labels": {"team": "shop"}},
        "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}]}}))
        .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        metric(&ctl.metrics, COUNT).await,
        Some(2.0),
        "{}",
        ctl.log()
    );
}
