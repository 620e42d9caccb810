//! Backend settings and canaries end to end: the real `clb-ingress run` binary, the test API
//! server and the CLB emulator with its data plane (seeded weighted choice).
//!
//! - A canary action (`clb-ingress.io/actions.<name>`) splits requests through the data plane
//!   within 3 points of its weights although the Services have different pod counts, and a
//!   changed split moves the traffic.
//! - A `ClbBackendConfig` named by a Service port, and a `TkeServiceConfig` read with
//!   `--tke-service-configs`, show on the emulator's rules (DescribeListeners).

use clb_test_support::cluster;

use clb_ingress::clb::types::{DescribeListenersRequest, RuleOutput};
use clb_ingress::crd::TkeServiceConfig;
use cluster::*;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::PostParams;
use kube::{Api, CustomResourceExt};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// Requests measured per split.
const SAMPLES: usize = 1_000;
/// Largest allowed distance of a measured share from the configured one, in points.
const TOLERANCE_POINTS: f64 = 3.0;
const WITHIN: Duration = Duration::from_secs(30);

fn action(web: u32, v2: u32) -> String {
    json!({"type": "forward", "forwardConfig": {"targetGroups": [
        {"serviceName": "web", "servicePort": "80", "weight": web},
        {"serviceName": "web-v2", "servicePort": "80", "weight": v2}]}})
    .to_string()
}

async fn canary_ingress(e: &Env, web: u32, v2: u32) {
    e.apply(
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": "shop", "namespace": "default",
                     "annotations": {"clb-ingress.io/actions.split": action(web, v2)}},
        "spec": {"rules": [{"host": "shop.example.com", "http": {"paths": [
            {"path": "/", "pathType": "Prefix",
             "backend": {"service": {"name": "split", "port": {"name": "use-annotation"}}}}]}}]}}),
    )
    .await;
}

/// Share (in %) of `SAMPLES` requests answered by a target whose address starts with `prefix`.
async fn measure(e: &Env, vip: &str, prefix: &str) -> f64 {
    let mut hits = 0usize;
    for _ in 0..SAMPLES {
        let (status, target) = e.request(vip, "shop.example.com", "/").await;
        assert_eq!(status, 200, "target {target}");
        if target.starts_with(prefix) {
            hits += 1;
        }
    }
    100.0 * hits as f64 / SAMPLES as f64
}

/// Wait until the CLB's targets carry the split (the v2 target's weight is `v2_weight`).
async fn until_weights(e: &Env, v2_weight: i64) {
    let start = Instant::now();
    loop {
        let lbs = e
            .clb()
            .describe_load_balancers(&Default::default())
            .await
            .unwrap();
        let mut seen = Vec::new();
        for lb in &lbs {
            let ls = e
                .clb()
                .describe_targets(&clb_ingress::clb::types::DescribeTargetsRequest {
                    load_balancer_id: lb.load_balancer_id.clone(),
                    ..Default::default()
                })
                .await
                .unwrap();
            for t in ls
                .iter()
                .flat_map(|l| &l.rules)
                .flat_map(|r| &r.targets)
                .filter(|t| {
                    t.private_ip_addresses
                        .iter()
                        .any(|a| a.starts_with("10.2."))
                })
            {
                seen.push(t.weight);
            }
        }
        if !seen.is_empty() && seen.iter().all(|w| *w == v2_weight) {
            return;
        }
        assert!(
            start.elapsed() < WITHIN,
            "v2 weights {seen:?}, want {v2_weight}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_canary_split_through_the_data_plane_is_within_three_points_of_its_weights() {
    let e = env().await;
    e.class("PerIngress").await;
    // Four pods of web, one of web-v2: per-pod weights must make up for the counts.
    e.service("web", &["10.1.0.1", "10.1.0.2", "10.1.0.3", "10.1.0.4"])
        .await;
    e.service("web-v2", &["10.2.0.1"]).await;
    canary_ingress(&e, 90, 10).await;
    let _c = e.controller("c1", &[]);
    let start = Instant::now();
    let vip = loop {
        if let Some(vip) = e.vip("shop").await
            && e.request(&vip, "shop.example.com", "/").await.0 == 200
        {
            break vip;
        }
        assert!(start.elapsed() < WITHIN, "not routed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let v2 = measure(&e, &vip, "10.2.").await;
    println!("canary 90/10 over 4+1 pods: web-v2 got {v2:.1}% of {SAMPLES} requests");
    assert!(
        (v2 - 10.0).abs() <= TOLERANCE_POINTS,
        "web-v2 got {v2:.1}%, configured 10%"
    );
    // Shift to 50/50: the per-target weights change (one BatchModifyTargetWeight).
    canary_ingress(&e, 50, 50).await;
    until_weights(&e, 100).await;
    let v2 = measure(&e, &vip, "10.2.").await;
    println!("canary 50/50 over 4+1 pods: web-v2 got {v2:.1}% of {SAMPLES} requests");
    assert!(
        (v2 - 50.0).abs() <= TOLERANCE_POINTS,
        "web-v2 got {v2:.1}%, configured 50%"
    );
}

/// Every rule of every listener of every CLB.
async fn rules(e: &Env) -> Vec<RuleOutput> {
    let lbs = e
        .clb()
        .describe_load_balancers(&Default::default())
        .await
        .unwrap();
    let mut out = Vec::new();
    for lb in lbs {
        let ls = e
            .clb()
            .describe_listeners(&DescribeListenersRequest {
                load_balancer_id: lb.load_balancer_id.clone(),
                ..Default::default()
            })
            .await
            .unwrap();
        out.extend(ls.into_iter().flat_map(|l| l.rules));
    }
    out
}

/// Wait until the rule for `url` satisfies `ok`; returns it.
async fn until_rule(e: &Env, url: &str, ok: impl Fn(&RuleOutput) -> bool) -> RuleOutput {
    let start = Instant::now();
    loop {
        let rs = rules(e).await;
        if let Some(r) = rs.iter().find(|r| r.url == url && ok(r)) {
            return r.clone();
        }
        assert!(
            start.elapsed() < WITHIN,
            "no rule {url} as wanted among {rs:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn web_ingress(annotations: Value) -> Value {
    json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": "web", "namespace": "default", "annotations": annotations},
        "spec": {"rules": [{"host": "a.example.com", "http": {"paths": [
            {"path": "/api", "pathType": "Exact",
             "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}}]}})
}

#[tokio::test]
async fn a_backend_config_named_by_a_service_port_sets_and_changes_the_rules_settings() {
    let e = env().await;
    e.class("PerIngress").await;
    e.service("web", &["10.1.0.1"]).await;
    e.apply(
        json!({"apiVersion": "clb-ingress.io/v1alpha1", "kind": "ClbBackendConfig",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"healthCheck": {"path": "/healthz", "intervalSeconds": 10, "httpCodes": ["2xx"]},
                 "scheduler": "LEAST_CONN", "sessionExpireSeconds": 600}}),
    )
    .await;
    e.apply(json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "web", "namespace": "default",
                     "annotations": {"clb-ingress.io/backend-config": "{\"ports\": {\"80\": \"web\"}}"}},
        "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}]}}))
        .await;
    e.apply(web_ingress(json!({}))).await;
    let _c = e.controller("c1", &[]);
    let r = until_rule(&e, "=/api", |r| {
        r.scheduler.as_deref() == Some("LEAST_CONN")
    })
    .await;
    let h = r.health_check.expect("health check");
    assert_eq!(h.http_check_path.as_deref(), Some("/healthz"));
    assert_eq!(h.interval_time, Some(10));
    assert_eq!(h.http_code, Some(2));
    assert_eq!(r.session_expire_time, Some(600));
    // A changed interval reaches the rule; the other fields stay.
    e.apply(
        json!({"apiVersion": "clb-ingress.io/v1alpha1", "kind": "ClbBackendConfig",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"healthCheck": {"path": "/healthz", "intervalSeconds": 20, "httpCodes": ["2xx"]},
                 "scheduler": "LEAST_CONN", "sessionExpireSeconds": 600}}),
    )
    .await;
    let r = until_rule(&e, "=/api", |r| {
        r.health_check.as_ref().and_then(|h| h.interval_time) == Some(20)
    })
    .await;
    assert_eq!(
        r.health_check.unwrap().http_check_path.as_deref(),
        Some("/healthz")
    );
    assert_eq!(r.scheduler.as_deref(), Some("LEAST_CONN"));
}

#[tokio::test]
async fn tke_service_config_settings_show_on_the_emulators_rules() {
    let e = env().await;
    Api::<CustomResourceDefinition>::all(e.kube.clone())
        .create(&PostParams::default(), &TkeServiceConfig::crd())
        .await
        .expect("TkeServiceConfig CRD");
    e.class("PerIngress").await;
    e.service("web", &["10.1.0.1"]).await;
    e.apply(
        json!({"apiVersion": "cloud.tencent.com/v1alpha1", "kind": "TkeServiceConfig",
        "metadata": {"name": "web-config", "namespace": "default"},
        "spec": {"loadBalancer": {"l7Listeners": [{"protocol": "HTTP", "port": 80, "domains": [
            {"domain": "a.example.com", "rules": [{"url": "/api", "scheduler": "IP_HASH",
              "session": {"enable": true, "sessionExpireTime": 3600},
              "healthCheck": {"enable": true, "intervalTime": 15, "timeout": 4,
                              "healthNum": 2, "unHealthNum": 5, "httpCheckPath": "/ping",
                              "httpCheckMethod": "GET"}}]}]}]}}}),
    )
    .await;
    e.apply(web_ingress(json!({
        "ingress.cloud.tencent.com/tke-service-config": "web-config"})))
        .await;
    let _c = e.controller("c1", &["--tke-service-configs"]);
    let r = until_rule(&e, "=/api", |r| r.scheduler.as_deref() == Some("IP_HASH")).await;
    assert_eq!(r.session_expire_time, Some(3600));
    let h = r.health_check.expect("health check");
    assert_eq!(
        (h.interval_time, h.time_out, h.health_num, h.un_health_num),
        (Some(15), Some(4), Some(2), Some(5))
    );
    assert_eq!(h.http_check_path.as_deref(), Some("/ping"));
    assert_eq!(h.http_check_method.as_deref(), Some("GET"));
    assert_eq!(r.forward_type.as_deref(), Some("HTTP"));
}
