//! A listener protocol change on one port, end to end (the real controller, the test API
//! server, the CLB emulator): port 8443 turns from HTTP into HTTPS through TKE's `listen-ports`.
//! CLB has one listener per port, so the old listener must go before the new one exists; the
//! change is made in one deploy, the other listener (80) keeps answering 200 throughout, and
//! 8443 ends up HTTPS with its rule and targets.

use clb_test_support::cluster;

use clb_ingress::clb::types::DescribeListenersRequest;
use cluster::*;
use serde_json::{Value, json};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

fn ingress(ports: &str) -> Value {
    json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": "shop", "namespace": "default",
                     "annotations": {"ingress.cloud.tencent.com/listen-ports": ports}},
        "spec": {"tls": [{"hosts": ["a.example.com"], "secretName": "a-tls"}],
                 "rules": [{"host": "a.example.com", "http": {"paths": [{"path": "/", "pathType": "Prefix",
                     "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}}]}})
}

/// (protocol, rules with targets) of the listener on `port`, if any.
async fn listener_on(e: &Env, port: i64) -> Option<(String, usize)> {
    let lbs = e
        .clb()
        .describe_load_balancers(&Default::default())
        .await
        .ok()?;
    let lb = lbs.first()?;
    let listeners = e
        .clb()
        .describe_listeners(&DescribeListenersRequest {
            load_balancer_id: lb.load_balancer_id.clone(),
            ..Default::default()
        })
        .await
        .ok()?;
    let l = listeners.into_iter().find(|l| l.port == port)?;
    let rules = l.rules.len();
    Some((l.protocol, rules))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_protocol_change_on_one_port_is_made_in_one_deploy_while_the_other_listener_keeps_serving()
 {
    let e = env().await;
    let ctl = e.controller("c1", &[]);
    e.class("PerIngress").await;
    e.service("web", &["10.1.0.1"]).await;
    let cert = rcgen::generate_simple_self_signed(vec!["a.example.com".to_string()]).unwrap();
    e.apply(
        json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
        "metadata": {"name": "a-tls", "namespace": "default"},
        "stringData": {"tls.crt": cert.cert.pem(), "tls.key": cert.signing_key.serialize_pem()}}),
    )
    .await;
    e.apply(ingress(r#"[{"HTTP": 80}, {"HTTP": 8443}]"#)).await;
    e.until_routed("shop", "a.example.com", "/", "10.1.0.1:8080", SLOW)
        .await;
    let start = Instant::now();
    while listener_on(&e, 8443).await.is_none_or(|(p, _)| p != "HTTP") {
        assert!(start.elapsed() < SLOW, "no HTTP 8443:\n{}", ctl.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let vip = e.vip("shop").await.unwrap();

    let done = AtomicBool::new(false);
    let watch = async {
        let (mut n, mut bad) = (0, Vec::new());
        while !done.load(Ordering::SeqCst) {
            let (status, target) = e.request(&vip, "a.example.com", "/").await;
            n += 1;
            if status != 200 {
                bad.push((status, target));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        (n, bad)
    };
    let change = async {
        e.apply(ingress(r#"[{"HTTP": 80}, {"HTTPS": 8443}]"#)).await;
        let start = Instant::now();
        while listener_on(&e, 8443)
            .await
            .is_none_or(|(p, rules)| p != "HTTPS" || rules == 0)
        {
            assert!(start.elapsed() < SLOW, "no HTTPS 8443:\n{}", ctl.log());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // A little more traffic after the change.
        tokio::time::sleep(Duration::from_millis(200)).await;
        done.store(true, Ordering::SeqCst);
    };
    let ((n, bad), ()) = tokio::join!(watch, change);
    assert!(n > 10, "only {n} requests were checked");
    assert!(
        bad.is_empty(),
        "{} of {n} requests to port 80 failed, first: {:?}",
        bad.len(),
        &bad[..bad.len().min(5)]
    );
    // One deploy: no failed reconcile on the way.
    let failed = metric(
        &ctl.metrics,
        "clb_ingress_reconciles_total{result=\"error\"}",
    )
    .await;
    assert_eq!(failed, Some(0.0), "{}", ctl.log());
}
