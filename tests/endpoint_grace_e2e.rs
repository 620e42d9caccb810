//! Endpoint grace end to end: the real `clb-ingress run` binary, the test API server and the CLB
//! emulator. An EndpointSlice replaced (deleted, then re-created under another name) never
//! empties the rule's targets on the CLB and the data plane keeps answering 200; a Service whose
//! endpoints really stay empty loses its targets once the grace has passed.

use clb_test_support::cluster;

use clb_ingress::clb::types::DescribeTargetsRequest;
use cluster::*;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Api;
use kube::api::DeleteParams;
use serde_json::json;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

async fn kube_client(e: &Env) -> kube::Client {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kubeconfig");
    std::fs::write(&path, e.api.kubeconfig_yaml()).unwrap();
    clb_ingress::controller::kube_client(Some(&path))
        .await
        .unwrap()
}

async fn slice(e: &Env, name: &str, service: &str, pods: &[&str]) {
    let eps: Vec<_> = pods
        .iter()
        .map(|ip| json!({"addresses": [ip], "conditions": {"ready": true}}))
        .collect();
    e.apply(
        json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": name, "namespace": "default",
                     "labels": {"kubernetes.io/service-name": service}},
        "addressType": "IPv4", "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": eps}),
    )
    .await;
}

/// The number of targets on every rule of the CLB (one entry per rule).
async fn target_counts(e: &Env) -> Vec<usize> {
    let lbs = e
        .clb()
        .describe_load_balancers(&Default::default())
        .await
        .unwrap();
    let mut out = Vec::new();
    for lb in lbs {
        let listeners = e
            .clb()
            .describe_targets(&DescribeTargetsRequest {
                load_balancer_id: lb.load_balancer_id.clone(),
                ..Default::default()
            })
            .await
            .unwrap();
        for l in listeners {
            for r in l.rules {
                out.push(r.targets.len());
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_endpoint_slice_never_empties_the_targets_and_traffic_keeps_flowing() {
    let e = env().await;
    let ctl = e.controller("c1", &[]);
    e.class("PerIngress").await;
    e.service("web", &["10.1.0.1"]).await;
    e.ingress("shop", "shop.example.com", &[("/", "Prefix", "web")])
        .await;
    e.until_routed("shop", "shop.example.com", "/a", "10.1.0.1:8080", SLOW)
        .await;
    let vip = e.vip("shop").await.unwrap();
    let kube = kube_client(&e).await;
    // Rules that have targets now (the Ingress's own; a guard rule for unknown paths has none).
    let with_targets = |counts: Vec<usize>| counts.iter().filter(|&&c| c > 0).count();
    let served = with_targets(target_counts(&e).await);
    assert!(served > 0);

    let done = AtomicBool::new(false);
    let watch = async {
        // (requests, failures, times a rule was seen without its targets)
        let (mut n, mut bad, mut empty) = (0, Vec::new(), 0);
        while !done.load(Ordering::SeqCst) {
            let (status, target) = e.request(&vip, "shop.example.com", "/a").await;
            n += 1;
            if status != 200 {
                bad.push((status, target));
            }
            // DescribeTargets sparingly: the emulator rate-limits each action as CLB does.
            if n % 20 == 0 && with_targets(target_counts(&e).await) < served {
                empty += 1;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        (n, bad, empty)
    };
    let replace = async {
        // The slice goes; for a while the Service has no endpoints at all.
        Api::<EndpointSlice>::namespaced(kube.clone(), "default")
            .delete("web-1", &DeleteParams::default())
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(1500)).await;
        // Its successor, with a new pod, arrives.
        slice(&e, "web-2", "web", &["10.1.0.2"]).await;
        e.until_routed("shop", "shop.example.com", "/a", "10.1.0.2:8080", SLOW)
            .await;
        done.store(true, Ordering::SeqCst);
    };
    let ((n, bad, empty), ()) = tokio::join!(watch, replace);
    assert!(n > 10, "only {n} requests were checked");
    assert!(
        bad.is_empty(),
        "{} of {n} requests failed, first: {:?}",
        bad.len(),
        &bad[..bad.len().min(5)]
    );
    assert_eq!(empty, 0, "a rule lost all its targets {empty} times");
    let used = metric(&ctl.metrics, "clb_ingress_endpoint_grace_total").await;
    assert!(used.is_some_and(|v| v >= 1.0), "{used:?}\n{}", ctl.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_that_stay_empty_lose_their_targets_once_the_grace_has_passed() {
    let e = env().await;
    let ctl = e.controller("c1", &["--endpoint-grace-seconds", "2"]);
    e.class("PerIngress").await;
    e.service("web", &["10.1.0.1"]).await;
    e.ingress("shop", "shop.example.com", &[("/", "Prefix", "web")])
        .await;
    e.until_routed("shop", "shop.example.com", "/a", "10.1.0.1:8080", SLOW)
        .await;
    let vip = e.vip("shop").await.unwrap();
    let emptied = Instant::now();
    slice(&e, "web-1", "web", &[]).await;
    // Nothing else happens in the cluster: only the requeue at the end of the grace can
    // deregister the target.
    e.until_status(&vip, "shop.example.com", "/a", 503, SLOW)
        .await;
    let took = emptied.elapsed();
    assert!(
        took >= Duration::from_secs(2),
        "targets went after {took:?}, within the grace\n{}",
        ctl.log()
    );
    let counts = target_counts(&e).await;
    assert!(counts.iter().all(|&c| c == 0), "{counts:?}");
}
