//! Uploaded certificates: named per cluster, and collected once nothing uses them, without
//! ever touching another cluster's or the user's certificates.

use clb_ingress::clb::types::UploadCertificateRequest;
use clb_test_support::cluster;

use cluster::*;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

fn tls_secret(name: &str, host: &str) -> Value {
    let cert = rcgen::generate_simple_self_signed(vec![host.to_string()]).unwrap();
    json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
        "metadata": {"name": name, "namespace": "default"},
        "stringData": {"tls.crt": cert.cert.pem(), "tls.key": cert.signing_key.serialize_pem()}})
}

fn tls_ingress(name: &str, host: &str, secret: &str) -> Value {
    json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"tls": [{"hosts": [host], "secretName": secret}],
                 "rules": [{"host": host, "http": {"paths": [{"path": "/", "pathType": "Prefix",
                     "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}}]}})
}

/// Certificate id -> alias, as the SSL service lists them.
async fn certificates(e: &Env) -> BTreeMap<String, String> {
    e.clb()
        .describe_certificates(&Default::default())
        .await
        .unwrap()
        .into_iter()
        .map(|c| (c.certificate_id, c.alias))
        .collect()
}

async fn until<F, Fut>(what: &str, ctl: &Controller, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !f().await {
        assert!(
            start.elapsed() < SLOW,
            "timed out waiting for {what}:\n{}",
            ctl.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_certificate_is_collected_and_nobody_elses_ever_is() {
    let e = env().await;
    // Certificates this cluster must never delete: the user's own, one in the pre-cluster
    // naming, and another cluster's upload.
    let foreign = tls_secret("unused", "foreign.example.com");
    let (pem, key) = (
        foreign["stringData"]["tls.crt"]
            .as_str()
            .unwrap()
            .to_string(),
        foreign["stringData"]["tls.key"]
            .as_str()
            .unwrap()
            .to_string(),
    );
    let mut kept = Vec::new();
    for alias in [
        "my-own-certificate",
        "clb-ingress-0123456789abcdef01234567",
        "clb-ingress-ffffffff-0123456789abcdef01234567",
    ] {
        kept.push(
            e.clb()
                .upload_certificate(&UploadCertificateRequest {
                    certificate_public_key: pem.clone(),
                    certificate_private_key: Some(key.clone()),
                    certificate_type: Some("SVR".into()),
                    alias: Some(alias.into()),
                    ..Default::default()
                })
                .await
                .unwrap(),
        );
    }
    let ctl = e.controller(
        "c1",
        &[
            "--resync-seconds",
            "1",
            "--certificate-gc-grace-seconds",
            "0",
        ],
    );
    e.class("PerIngress").await;
    e.service("web", &["10.1.0.1"]).await;
    e.apply(tls_secret("a-tls", "a.example.com")).await;
    e.apply(tls_ingress("shop", "a.example.com", "a-tls")).await;
    // Uploaded under this cluster's prefix.
    let start = Instant::now();
    let first = loop {
        if let Some(f) = certificates(&e)
            .await
            .into_iter()
            .find(|(id, _)| !kept.contains(id))
        {
            break f;
        }
        assert!(start.elapsed() < SLOW, "no upload:\n{}", ctl.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let (first_id, first_alias) = first;
    assert!(
        first_alias.starts_with("clb-ingress-") && first_alias.matches('-').count() == 3,
        "per-cluster alias: {first_alias}"
    );
    // The Secret gets a new certificate: the old upload is no longer used, and goes.
    e.apply(tls_secret("a-tls", "a.example.com")).await;
    until("the old certificate collected", &ctl, || async {
        let now = certificates(&e).await;
        !now.contains_key(&first_id) && now.len() == kept.len() + 1
    })
    .await;
    let now = certificates(&e).await;
    for id in &kept {
        assert!(now.contains_key(id), "{id} was not ours: {now:?}");
    }
    // The new certificate is the one the HTTPS rule uses, and it stays.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let later = certificates(&e).await;
    assert_eq!(later, now, "a certificate in use is never collected");
    // Not even tried (the emulator refuses to delete a certificate in use; the real service
    // deletes it unless asked to check).
    let current = later
        .keys()
        .find(|id| !kept.contains(id))
        .expect("the new upload");
    assert!(
        !ctl.log()
            .lines()
            .any(|l| l.contains("deleting a certificate") && l.contains(current.as_str())),
        "the GC tried to delete the certificate in use:\n{}",
        ctl.log()
    );
    assert!(
        ctl.log().contains("unused certificate collected"),
        "{}",
        ctl.log()
    );
    let collected = metric(&ctl.metrics, "clb_ingress_certificates_collected_total").await;
    assert!(collected.is_some_and(|n| n >= 1.0), "{collected:?}");
}
