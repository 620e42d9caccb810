//! Minimal calls, measured by the emulator's own counters: for each kind of user change, the
//! number of API write calls the deploy engine makes equals the minimum for that change, and a
//! no-change resync makes no writes and at most 4 reads per CLB (DescribeLoadBalancers,
//! DescribeListeners, DescribeTargets, and DescribeCertificates only when PEM certificates are
//! used).
use clb_test_support as support;

use clb_ingress::clb::credentials::SecretString;
use clb_ingress::clb::{ClbClient, ClientConfig, Credentials, Endpoint};
use clb_ingress::cli::apply::apply_snapshot;
use clb_ingress::deploy::Deployer;
use clb_ingress::emulator::config::Settings;
use clb_ingress::emulator::core::SystemClock;
use clb_ingress::emulator::server::{self, NoPlane, Running};
use clb_ingress::model;
use serde_json::Value;
use std::sync::Arc;
use support::snapshot;
use support::worlds::*;

/// Reads a no-change resync may make per CLB.
const RESYNC_READ_BOUND_PER_CLB: u64 = 4;

struct Env {
    emu: Running,
    deployer: Deployer,
    http: reqwest::Client,
}

async fn env() -> Env {
    let s = Settings {
        listen: "127.0.0.1:0".parse().unwrap(),
        seed: Some(5),
        task_delay_ms: 5,
        ..Settings::default()
    };
    let id = s.credentials[0].secret_id.clone();
    let key = s.credentials[0].secret_key.clone();
    let emu = server::start(s, Arc::new(SystemClock), Arc::new(NoPlane))
        .await
        .expect("emulator");
    let cfg = ClientConfig::new(
        "ap-guangzhou",
        Endpoint::parse(&format!("http://{}", emu.addr)).unwrap(),
    );
    let client = ClbClient::new(
        cfg,
        Credentials::new(id, SecretString::new(key), None).unwrap(),
    )
    .unwrap();
    Env {
        emu,
        deployer: Deployer::new(client, "test"),
        http: reqwest::Client::builder().no_proxy().build().unwrap(),
    }
}

impl Env {
    async fn apply(&self, yaml: &str) -> Vec<clb_ingress::cli::apply::StackResult> {
        let out = model::build(&snapshot(yaml));
        assert!(out.problems.is_empty(), "{:?}", out.problems);
        let results = apply_snapshot(&self.deployer, &out, true, 4, None).await;
        for r in &results {
            assert!(r.error.is_none(), "{}: {:?}", r.stack, r.error);
        }
        results
    }

    async fn counters(&self) -> Value {
        self.http
            .get(format!("http://{}/_emulator/counters", self.emu.addr))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    async fn reset_counters(&self) {
        self.http
            .post(format!("http://{}/_emulator/counters/reset", self.emu.addr))
            .bearer_auth(self.emu.admin_token())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .send()
            .await
            .unwrap()
            .error_for_status()
            .unwrap();
    }

    /// Apply `before`, then `after`; return the write calls of the second apply by action.
    async fn writes_for_change(&self, before: &str, after: &str) -> Vec<(String, u64)> {
        self.apply(before).await;
        self.reset_counters().await;
        self.apply(after).await;
        let c = self.counters().await;
        let mut w: Vec<(String, u64)> = c["writes"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_u64().unwrap()))
            .filter(|(_, n)| *n > 0)
            .collect();
        // Besides the CLB writes, the Tag service records a new desired-state digest once
        // (none when the stack is gone).
        if let Some(i) = w.iter().position(|(a, _)| a == "ModifyResourceTags") {
            assert_eq!(w.remove(i).1, 1, "{c}");
        }
        w.sort();
        // Every reconcile must also leave the CLB converged: a resync makes no writes.
        self.reset_counters().await;
        self.apply(after).await;
        let c = self.counters().await;
        assert_eq!(c["total_writes"], 0, "resync after the change wrote: {c}");
        w
    }
}

fn w(pairs: &[(&str, u64)]) -> Vec<(String, u64)> {
    let mut v: Vec<(String, u64)> = pairs.iter().map(|(a, n)| (a.to_string(), *n)).collect();
    v.sort();
    v
}

fn base() -> String {
    world(
        &ingress(&[("/app", "Prefix", "web")]),
        &[("web", pods("10.0.0", 10))],
    )
}

#[tokio::test]
async fn a_no_change_resync_makes_no_writes_and_a_bounded_number_of_reads() {
    let e = env().await;
    e.apply(&base()).await;
    e.reset_counters().await;
    let results = e.apply(&base()).await;
    let c = e.counters().await;
    assert_eq!(c["total_writes"], 0, "{c}");
    let reads = c["total_reads"].as_u64().unwrap();
    assert!(
        reads <= RESYNC_READ_BOUND_PER_CLB * results.len() as u64,
        "{reads} reads for {} CLB(s): {c}",
        results.len()
    );
    // The prune listing of owned CLBs is one more DescribeLoadBalancers.
    assert!(reads >= 3, "{c}");
}

#[tokio::test]
async fn creating_from_nothing_takes_one_call_per_object_kind() {
    let e = env().await;
    e.apply(&base()).await;
    let c = e.counters().await;
    let writes = c["writes"].as_object().unwrap();
    let get = |a: &str| writes.get(a).and_then(Value::as_u64).unwrap_or(0);
    assert_eq!(get("CreateLoadBalancer"), 1, "{c}");
    assert_eq!(get("CreateListener"), 1, "{c}");
    assert_eq!(
        get("CreateRule"),
        1,
        "all rules of a listener in one call: {c}"
    );
    assert_eq!(
        get("BatchRegisterTargets"),
        1,
        "all targets in one batch: {c}"
    );
    // And the desired-state digest on the CLB, once everything is in place (Tag service).
    assert_eq!(get("ModifyResourceTags"), 1, "{c}");
    assert_eq!(c["total_writes"], 5, "{c}");
}

#[tokio::test]
async fn adding_a_path_takes_one_create_rule_and_one_batch_register() {
    let e = env().await;
    let after = world(
        &ingress(&[("/app", "Prefix", "web"), ("/api", "Exact", "api")]),
        &[("web", pods("10.0.0", 10)), ("api", pods("10.0.9", 2))],
    );
    let got = e.writes_for_change(&base(), &after).await;
    assert_eq!(got, w(&[("CreateRule", 1), ("BatchRegisterTargets", 1)]));
}

#[tokio::test]
async fn removing_a_path_takes_one_delete_rule() {
    let e = env().await;
    let before = world(
        &ingress(&[("/app", "Prefix", "web"), ("/old", "Prefix", "web")]),
        &[("web", pods("10.0.0", 10))],
    );
    let got = e.writes_for_change(&before, &base()).await;
    assert_eq!(got, w(&[("DeleteRule", 1)]));
}

#[tokio::test]
async fn changing_a_backend_takes_one_batch_register_and_one_batch_deregister() {
    let e = env().await;
    let after = world(
        &ingress(&[("/app", "Prefix", "v2")]),
        &[("web", pods("10.0.0", 10)), ("v2", pods("10.0.5", 3))],
    );
    let got = e.writes_for_change(&base(), &after).await;
    assert_eq!(
        got,
        w(&[("BatchRegisterTargets", 1), ("BatchDeregisterTargets", 1)])
    );
}

#[tokio::test]
async fn scaling_ten_to_twelve_pods_takes_one_batch_register() {
    let e = env().await;
    let after = world(
        &ingress(&[("/app", "Prefix", "web")]),
        &[("web", pods("10.0.0", 12))],
    );
    let got = e.writes_for_change(&base(), &after).await;
    assert_eq!(got, w(&[("BatchRegisterTargets", 1)]));
}

fn cert(host: &str) -> (String, String) {
    let c = rcgen::generate_simple_self_signed(vec![host.to_string()]).unwrap();
    (c.cert.pem(), c.signing_key.serialize_pem())
}

#[tokio::test]
async fn adding_a_host_with_its_certificate_takes_a_rule_per_listener_and_one_batch_register() {
    let e = env().await;
    let (c, k) = cert("a.example.com");
    let before = tls_world(&["a.example.com"], &c, &k);
    let after = tls_world(&["a.example.com", "b.example.com"], &c, &k);
    let got = e.writes_for_change(&before, &after).await;
    assert_eq!(got, w(&[("CreateRule", 2), ("BatchRegisterTargets", 1)]));
}

#[tokio::test]
async fn rotating_a_certificate_uploads_once_and_repoints_each_domain_once() {
    let e = env().await;
    let (c1, k1) = cert("a.example.com");
    let (c2, k2) = cert("a.example.com");
    let before = tls_world(&["a.example.com"], &c1, &k1);
    let after = tls_world(&["a.example.com"], &c2, &k2);
    let got = e.writes_for_change(&before, &after).await;
    // The host's domain and the catch-all domain (default certificate) both use it.
    assert_eq!(
        got,
        w(&[("UploadCertificate", 1), ("ModifyDomainAttributes", 2)])
    );
}

#[tokio::test]
async fn deleting_the_ingress_takes_one_delete_load_balancer() {
    let e = env().await;
    let got = e.writes_for_change(&base(), CLASS).await;
    assert_eq!(got, w(&[("DeleteLoadBalancer", 1)]));
    let c = e.counters().await;
    assert_eq!(c["total_writes"], 0);
}

#[tokio::test]
async fn renaming_a_path_with_the_same_backend_takes_one_modify_rule() {
    let e = env().await;
    let before = world(
        &ingress(&[("/a", "Exact", "web")]),
        &[("web", pods("10.0.0", 2))],
    );
    let after = world(
        &ingress(&[("/b", "Exact", "web")]),
        &[("web", pods("10.0.0", 2))],
    );
    let got = e.writes_for_change(&before, &after).await;
    assert_eq!(got, w(&[("ModifyRule", 1)]));
}

// Backend settings and canaries (#15 items 4 and 5).

/// One Exact path whose `ClbBackendConfig` (named by the path annotation) has this interval.
fn settings_world(interval: u32) -> String {
    let mut s = CLASS.to_string();
    s.push_str(&service("web", &["10.0.0.1", "10.0.0.2"]));
    s.push_str(&format!(
        r#"
---
apiVersion: clb-ingress.io/v1alpha1
kind: ClbBackendConfig
metadata: {{name: strict, namespace: default}}
spec: {{healthCheck: {{path: /healthz, intervalSeconds: {interval}}}, scheduler: LEAST_CONN}}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: web
  namespace: default
  annotations:
    clb-ingress.io/path-backend-configs: '[{{"host": "a.example.com", "path": "/app", "backendConfig": "strict"}}]'
spec:
  rules:
    - host: a.example.com
      http:
        paths:
          - {{path: /app, pathType: Exact, backend: {{service: {{name: web, port: {{number: 80}}}}}}}}
"#
    ));
    s
}

/// A Prefix path (two CLB rules) forwarding to action `split`: web (5 pods) and v2 (1 pod).
fn canary_world(web: u32, v2: u32) -> String {
    let mut s = CLASS.to_string();
    s.push_str(&service(
        "web",
        &["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5"],
    ));
    s.push_str(&service("v2", &["10.0.5.1"]));
    s.push_str(&format!(
        r#"
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: web
  namespace: default
  annotations:
    clb-ingress.io/actions.split: '{{"type":"forward","forwardConfig":{{"targetGroups":[{{"serviceName":"web","servicePort":"80","weight":{web}}},{{"serviceName":"v2","servicePort":"80","weight":{v2}}}]}}}}'
spec:
  rules:
    - host: a.example.com
      http:
        paths:
          - {{path: /app, pathType: Prefix, backend: {{service: {{name: split, port: {{name: use-annotation}}}}}}}}
"#
    ));
    s
}

#[tokio::test]
async fn a_rule_created_with_backend_settings_takes_no_extra_call() {
    let e = env().await;
    e.apply(&settings_world(10)).await;
    let c = e.counters().await;
    let writes = c["writes"].as_object().unwrap();
    assert_eq!(
        writes.get("CreateRule").and_then(Value::as_u64),
        Some(1),
        "{c}"
    );
    assert!(
        writes
            .get("ModifyRule")
            .and_then(Value::as_u64)
            .unwrap_or(0)
            == 0,
        "{c}"
    );
}

#[tokio::test]
async fn changing_a_health_check_takes_one_modify_rule() {
    let e = env().await;
    let got = e
        .writes_for_change(&settings_world(10), &settings_world(20))
        .await;
    assert_eq!(got, w(&[("ModifyRule", 1)]));
}

#[tokio::test]
async fn changing_a_canary_split_takes_one_batch_modify_target_weight() {
    let e = env().await;
    let got = e
        .writes_for_change(&canary_world(90, 10), &canary_world(50, 50))
        .await;
    assert_eq!(got, w(&[("BatchModifyTargetWeight", 1)]));
}

/// `tls_world` whose Service `web` names a `ClbBackendConfig` asking for this HTTP/2 setting.
fn http2_world(cert: &str, key: &str, http2: bool) -> String {
    let annotated = "kind: Service\nmetadata: {name: web, namespace: default, annotations: {clb-ingress.io/backend-config: '{\"default\": \"h2\"}'}}";
    let mut s = tls_world(&["a.example.com"], cert, key).replacen(
        "kind: Service\nmetadata: {name: web, namespace: default}",
        annotated,
        1,
    );
    assert!(
        s.contains(annotated),
        "the Service of tls_world changed shape"
    );
    s.push_str(&format!(
        "\n---\napiVersion: clb-ingress.io/v1alpha1\nkind: ClbBackendConfig\nmetadata: {{name: h2, namespace: default}}\nspec: {{http2: {http2}}}\n"
    ));
    s
}

#[tokio::test]
async fn turning_on_http2_for_a_domain_takes_one_modify_domain_attributes() {
    let e = env().await;
    let (c, k) = cert("a.example.com");
    let got = e
        .writes_for_change(&http2_world(&c, &k, false), &http2_world(&c, &k, true))
        .await;
    assert_eq!(got, w(&[("ModifyDomainAttributes", 1)]));
}
