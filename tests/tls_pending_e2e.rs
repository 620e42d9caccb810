//! A TLS Ingress whose Secret the controller does not know yet: its HTTP rules sync at once and
//! no HTTPS rule is created without a certificate (CLB would refuse it: MissingParameter
//! Rules.Certificate, failing the whole stack); when the Secret arrives the HTTPS host follows.

use clb_test_support::cluster;

use cluster::*;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_ingress_whose_secret_is_not_there_yet_syncs_its_http_rules_and_gets_https_when_it_arrives()
 {
    let e = env().await;
    let ctl = e.controller("c1", &[]);
    e.class("PerIngress").await;
    e.service("web", &["10.1.0.1"]).await;
    e.apply(json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": "shop", "namespace": "default"},
        "spec": {"tls": [{"hosts": ["a.example.com"], "secretName": "a-tls"}],
                 "rules": [{"host": "a.example.com", "http": {"paths": [{"path": "/", "pathType": "Prefix",
                     "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}}]}}))
    .await;
    e.until_routed("shop", "a.example.com", "/", "10.1.0.1:8080", SLOW)
        .await;
    let sync_state = || async {
        let ing = e.get_ingress("shop").await?;
        serde_json::from_str::<Value>(ing.metadata.annotations?.get("clb-ingress.io/sync-state")?)
            .ok()
    };
    // The stack synced (the missing Secret is the Ingress's Problem, not a failed deploy).
    let start = Instant::now();
    while sync_state().await.is_none_or(|s| s["synced"] != true) {
        assert!(
            start.elapsed() < SLOW,
            "never synced: {:?}\n{}",
            sync_state().await,
            ctl.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!ctl.log().contains("MissingParameter"), "{}", ctl.log());

    // The Secret arrives: its certificate is uploaded and the Problem goes.
    let cert = rcgen::generate_simple_self_signed(vec!["a.example.com".to_string()]).unwrap();
    e.apply(
        json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
        "metadata": {"name": "a-tls", "namespace": "default"},
        "stringData": {"tls.crt": cert.cert.pem(), "tls.key": cert.signing_key.serialize_pem()}}),
    )
    .await;
    let start = Instant::now();
    loop {
        let certs = e
            .clb()
            .describe_certificates(&Default::default())
            .await
            .unwrap()
            .len();
        if certs == 1
            && sync_state()
                .await
                .is_some_and(|s| s["synced"] == true && s.get("problems").is_none())
        {
            break;
        }
        assert!(
            start.elapsed() < SLOW,
            "HTTPS never followed: {:?}\n{}",
            sync_state().await,
            ctl.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!ctl.log().contains("MissingParameter"), "{}", ctl.log());
}

/// #13 item 6: a TLS Secret of the wrong type (no certificate in it) never makes an invalid
/// CreateRule: the host stays off HTTPS with a Problem naming the Secret, while its HTTP rules
/// and the Ingress's other host serve; a fixed Secret brings HTTPS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_secret_of_the_wrong_type_keeps_only_its_host_off_https_and_everything_else_serves() {
    let e = env().await;
    let ctl = e.controller("c1", &[]);
    e.class("PerIngress").await;
    e.service("web", &["10.1.0.1"]).await;
    e.apply(
        json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/basic-auth",
        "metadata": {"name": "a-tls", "namespace": "default"},
        "stringData": {"username": "admin", "password": "hunter2"}}),
    )
    .await;
    let path = |host: &str| {
        json!({"host": host, "http": {"paths": [{"path": "/", "pathType": "Prefix",
            "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}})
    };
    e.apply(
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": "shop", "namespace": "default"},
        "spec": {"tls": [{"hosts": ["a.example.com"], "secretName": "a-tls"}],
                 "rules": [path("a.example.com"), path("b.example.com")]}}),
    )
    .await;
    e.until_routed("shop", "a.example.com", "/", "10.1.0.1:8080", SLOW)
        .await;
    e.until_routed("shop", "b.example.com", "/", "10.1.0.1:8080", SLOW)
        .await;
    let sync_state = || async {
        let ing = e.get_ingress("shop").await?;
        serde_json::from_str::<Value>(ing.metadata.annotations?.get("clb-ingress.io/sync-state")?)
            .ok()
    };
    let start = Instant::now();
    loop {
        let s = sync_state().await;
        let named = s.as_ref().is_some_and(|s| {
            s["synced"] == true
                && s["problems"].as_array().is_some_and(|ps| {
                    ps.iter().any(|p| {
                        p.as_str().is_some_and(|t| {
                            t.starts_with("spec.tls[0].secretName: TlsSecretInvalid")
                        })
                    })
                })
        });
        if named {
            break;
        }
        assert!(start.elapsed() < SLOW, "{s:?}\n{}", ctl.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let text = sync_state().await.unwrap().to_string();
    assert!(text.contains("default/a-tls"), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
    // No HTTPS rule for the host, and never a refused call.
    let lbs = e
        .clb()
        .describe_load_balancers(&Default::default())
        .await
        .unwrap();
    assert_eq!(lbs.len(), 1);
    let listeners = e
        .clb()
        .describe_listeners(&clb_ingress::clb::types::DescribeListenersRequest {
            load_balancer_id: lbs[0].load_balancer_id.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    let https_domains: Vec<&str> = listeners
        .iter()
        .filter(|l| l.protocol == "HTTPS")
        .flat_map(|l| l.rules.iter().map(|r| r.domain.as_str()))
        .collect();
    assert!(
        !https_domains.contains(&"a.example.com"),
        "{https_domains:?}"
    );
    let log = ctl.log();
    assert!(!log.contains("MissingParameter"), "{log}");
    assert!(!log.contains("InvalidParameter"), "{log}");

    // The Secret is fixed: HTTPS follows and the Problem goes.
    let cert = rcgen::generate_simple_self_signed(vec!["a.example.com".to_string()]).unwrap();
    e.apply(
        json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
        "metadata": {"name": "a-tls", "namespace": "default"},
        "stringData": {"tls.crt": cert.cert.pem(), "tls.key": cert.signing_key.serialize_pem()}}),
    )
    .await;
    let start = Instant::now();
    while !sync_state()
        .await
        .is_some_and(|s| s["synced"] == true && s.get("problems").is_none())
    {
        assert!(
            start.elapsed() < SLOW,
            "HTTPS never followed: {:?}\n{}",
            sync_state().await,
            ctl.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    e.until_routed("shop", "b.example.com", "/", "10.1.0.1:8080", SLOW)
        .await;
}
