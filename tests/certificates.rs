//! Uploaded certificates: named per cluster, and collected once nothing uses them, without
//! ever touching another cluster's or the user's certificates.

use clb_ingress::clb::types::UploadCertificateRequest;
use clb_test_support::cluster;
use k8s_openapi::api::networking::v1::Ingress;
use kube::Api;
use kube::api::DeleteParams;

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

/// #11: a private key leaves the controller's memory once its certificate is in the account.
/// Shown from outside: after the account loses everything (emulator reset), the certificate
/// must be uploaded again, which the controller can only do by reading the Secret again; HTTPS
/// comes back with the same certificate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_key_leaves_memory_after_upload_and_is_read_again_when_the_account_loses_the_certificate()
 {
    let e = env().await;
    let ctl = e.controller_logging("c1", "clb_ingress=debug", &[]);
    e.class("PerIngress").await;
    e.service("web", &["10.1.0.1"]).await;
    e.apply(tls_secret("shop-tls", "a.example.com")).await;
    e.apply(tls_ingress("shop", "a.example.com", "shop-tls"))
        .await;
    until("the certificate upload", &ctl, || async {
        certificates(&e).await.len() == 1
    })
    .await;
    let alias = certificates(&e).await.into_values().next().unwrap();
    until("the key to leave memory", &ctl, || async {
        ctl.log()
            .contains("private keys dropped from memory after upload")
    })
    .await;
    // Jobs built before the drop may still hold the key until they run: let them finish.
    let mut last = ctl.log().len();
    loop {
        tokio::time::sleep(Duration::from_millis(800)).await;
        let now = ctl.log().len();
        if now == last {
            break;
        }
        last = now;
    }
    assert!(
        !ctl.log().contains("reading its Secret again"),
        "{}",
        ctl.log()
    );

    // The account loses everything; a change to the Ingress (a new path) makes the controller
    // apply again.
    let reset = reqwest::Client::new()
        .post(format!("http://{}/_emulator/reset", e.emu.addr))
        .bearer_auth(e.emu.admin_token())
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert!(reset.status().is_success(), "{:?}", reset.status());
    let mut touched = tls_ingress("shop", "a.example.com", "shop-tls");
    touched["spec"]["rules"][0]["http"]["paths"]
        .as_array_mut()
        .unwrap()
        .push(json!({"path": "/v2", "pathType": "Prefix",
            "backend": {"service": {"name": "web", "port": {"number": 80}}}}));
    e.apply(touched).await;
    until("the certificate to be uploaded again", &ctl, || async {
        certificates(&e).await.values().any(|a| *a == alias)
    })
    .await;
    assert!(
        ctl.log().contains("reading its Secret again to upload it"),
        "{}",
        ctl.log()
    );
    e.until_routed("shop", "a.example.com", "/", "10.1.0.1:8080", SLOW)
        .await;
    let log = ctl.log();
    assert!(!log.contains("BEGIN PRIVATE KEY"), "a key reached the log");
}

/// #16: the expiry of each TLS Secret in use is a metric (alert on it before browsers do), and
/// the series goes away with the last Ingress that names the Secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_certificate_expiry_of_a_secret_in_use_is_exported_and_dropped_when_unused() {
    let e = env().await;
    let ctl = e.controller("c1", &[]);
    e.class("PerIngress").await;
    e.service("web", &["10.1.0.1"]).await;
    let mut params = rcgen::CertificateParams::new(vec!["a.example.com".to_string()]).unwrap();
    params.not_after = rcgen::date_time_ymd(2031, 5, 6);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    e.apply(
        json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
        "metadata": {"name": "shop-tls", "namespace": "default"},
        "stringData": {"tls.crt": cert.pem(), "tls.key": key.serialize_pem()}}),
    )
    .await;
    e.apply(tls_ingress("shop", "a.example.com", "shop-tls"))
        .await;
    let series = "clb_ingress_certificate_expiry_timestamp_seconds{secret=\"default/shop-tls\"}";
    // 2031-05-06T00:00:00Z
    let want = 1_935_792_000.0;
    until("the expiry metric", &ctl, || async {
        metric(&ctl.metrics, series).await == Some(want)
    })
    .await;
    Api::<Ingress>::namespaced(e.kube.clone(), "default")
        .delete("shop", &DeleteParams::default())
        .await
        .unwrap();
    until("the series to go", &ctl, || async {
        metric(&ctl.metrics, series).await.is_none()
    })
    .await;
}
