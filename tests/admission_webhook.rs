//! The admission webhook of `clb-ingress run --webhook-addr`, end to end: the real binary with
//! its watch caches on the test API server, sent AdmissionReview (admission.k8s.io/v1)
//! requests over HTTPS as the API server sends them. Verdicts are the model's: a value the
//! controller would park is refused, the rest comes back as warnings; other classes' Ingresses
//! pass untouched; bad bodies get clean HTTP errors; the serving certificate is re-read.

use clb_test_support::cluster;

use cluster::*;
use serde_json::{Value, json};
use std::path::Path;
use std::time::{Duration, Instant};

const NOT_CHECKED: &str = "has not synced its caches";

struct Webhook {
    url: String,
    client: reqwest::Client,
    /// The certificate it was started with.
    pem: String,
}

fn self_signed(dir: &Path, stem: &str) -> String {
    let cert =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
    std::fs::write(dir.join(format!("{stem}.crt")), cert.cert.pem()).unwrap();
    std::fs::write(
        dir.join(format!("{stem}.key")),
        cert.signing_key.serialize_pem(),
    )
    .unwrap();
    cert.cert.pem()
}

fn client_trusting(pem: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(pem.as_bytes()).unwrap())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// A controller serving the webhook with a fresh self-signed certificate in `dir`.
fn start(e: &Env, dir: &Path) -> (Controller, Webhook) {
    let pem = self_signed(dir, "tls");
    let (cert, key) = (dir.join("tls.crt"), dir.join("tls.key"));
    let ctl = e.controller(
        "c1",
        &[
            "--webhook-addr",
            "127.0.0.1:0",
            "--webhook-cert-file",
            cert.to_str().unwrap(),
            "--webhook-key-file",
            key.to_str().unwrap(),
        ],
    );
    let addr = ctl
        .banner
        .split("https://")
        .nth(1)
        .and_then(|r| r.split(['/', ' ']).next())
        .unwrap_or_else(|| panic!("no webhook address in {:?}", ctl.banner))
        .to_string();
    let webhook = Webhook {
        url: format!("https://{addr}"),
        client: client_trusting(&pem),
        pem,
    };
    (ctl, webhook)
}

fn review(operation: &str, object: Value, old: Option<Value>) -> Value {
    let kind = object["kind"].as_str().unwrap().to_string();
    let (group, resource) = match kind.as_str() {
        "Ingress" => ("networking.k8s.io", "ingresses"),
        "ClbClassParameters" => ("clb-ingress.io", "clbclassparameters"),
        _ => ("", "configmaps"),
    };
    let version = object["apiVersion"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_string();
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
    "request": {
        "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
        "kind": {"group": group, "version": version, "kind": kind},
        "resource": {"group": group, "version": version, "resource": resource},
        "name": object["metadata"]["name"],
        "namespace": object["metadata"]["namespace"],
        "operation": operation,
        "userInfo": {"username": "admin"},
        "object": object,
        "oldObject": old,
        "dryRun": false,
    }})
}

impl Webhook {
    async fn post(&self, body: Vec<u8>) -> (u16, String) {
        let r = self
            .client
            .post(format!("{}/validate", self.url))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    /// The `response` of an AdmissionReview for `op` of `object`.
    async fn ask(&self, op: &str, object: Value, old: Option<Value>) -> Value {
        let (status, text) = self
            .post(review(op, object, old).to_string().into_bytes())
            .await;
        assert_eq!(status, 200, "{text}");
        let answer: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(answer["apiVersion"], "admission.k8s.io/v1", "{answer}");
        assert_eq!(answer["kind"], "AdmissionReview", "{answer}");
        assert_eq!(
            answer["response"]["uid"], "705ab4f5-6393-11e8-b7cc-42010a800002",
            "the request's uid comes back"
        );
        answer["response"].clone()
    }
}

fn warnings(r: &Value) -> Vec<String> {
    r["warnings"]
        .as_array()
        .map(|w| w.iter().map(|s| s.as_str().unwrap().to_string()).collect())
        .unwrap_or_default()
}

fn ingress(class: &str, path: &str, annotations: Value) -> Value {
    json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": "shop", "namespace": "default", "annotations": annotations},
        "spec": {"ingressClassName": class, "rules": [{"host": "shop.example.com",
            "http": {"paths": [{"path": path, "pathType": "ImplementationSpecific",
                "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}}]}})
}

/// Wait until the controller's caches are synced (its answers stop saying "not checked").
async fn until_checked(w: &Webhook, ctl: &Controller) {
    let start = Instant::now();
    loop {
        let r = w.ask("CREATE", ingress("clb", "/", json!({})), None).await;
        if !warnings(&r).iter().any(|x| x.contains(NOT_CHECKED)) {
            return;
        }
        assert!(start.elapsed() < SLOW, "caches never synced\n{}", ctl.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_webhook_refuses_what_the_model_parks_and_warns_about_the_rest() {
    let e = env().await;
    let dir = tempfile::tempdir().unwrap();
    let (ctl, w) = start(&e, dir.path());
    e.class("PerIngress").await;
    e.service("web", &["10.1.0.1"]).await;
    until_checked(&w, &ctl).await;

    // A good Ingress of our class: allowed, nothing to say.
    let r = w.ask("CREATE", ingress("clb", "/", json!({})), None).await;
    assert_eq!(r["allowed"], true, "{r}");
    assert!(warnings(&r).is_empty(), "{r}");

    // A bad value of one of our annotations: refused, naming the object, field and reason.
    let bad = ingress(
        "clb",
        "/",
        json!({"ingress.cloud.tencent.com/direct-access": "yes"}),
    );
    let r = w.ask("CREATE", bad.clone(), None).await;
    assert_eq!(r["allowed"], false, "{r}");
    let msg = r["status"]["message"].as_str().unwrap();
    for part in [
        "Ingress default/shop",
        "metadata.annotations[ingress.cloud.tencent.com/direct-access]",
        "InvalidAnnotation",
    ] {
        assert!(msg.contains(part), "{part} missing: {msg}");
    }
    // The same verdict as the controller's: applied anyway (no webhook registered on the test
    // API server), the Ingress is parked with that reason.
    e.apply(bad.clone()).await;
    let start = Instant::now();
    while !e
        .events_for("shop")
        .await
        .iter()
        .any(|(t, reason, _)| t == "Warning" && reason == "InvalidAnnotation")
    {
        assert!(
            start.elapsed() < SLOW,
            "no InvalidAnnotation Event\n{}",
            ctl.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // An update that keeps an old problem (the controller's own finalizer or status writes on
    // an Ingress admitted before) is not refused; one that introduces it is.
    let mut relabelled = bad.clone();
    relabelled["metadata"]["labels"] = json!({"team": "shop"});
    let r = w.ask("UPDATE", relabelled, Some(bad.clone())).await;
    assert_eq!(r["allowed"], true, "{r}");
    let r = w
        .ask("UPDATE", bad.clone(), Some(ingress("clb", "/", json!({}))))
        .await;
    assert_eq!(r["allowed"], false, "{r}");

    // An ingress-nginx regex path: refused (CLB cannot express it).
    let r = w
        .ask("CREATE", ingress("clb", "/api/(.*)", json!({})), None)
        .await;
    assert_eq!(r["allowed"], false, "{r}");
    assert!(
        r["status"]["message"]
            .as_str()
            .unwrap()
            .contains("InvalidPath"),
        "{r}"
    );

    // Another controller's annotation and an unknown one of ours: allowed, with warnings.
    let r = w
        .ask(
            "CREATE",
            ingress(
                "clb",
                "/",
                json!({"nginx.ingress.kubernetes.io/ssl-redirect": "true",
                       "alb.ingress.kubernetes.io/scheme": "internet-facing",
                       "clb-ingress.io/typo": "1"}),
            ),
            None,
        )
        .await;
    assert_eq!(r["allowed"], true, "{r}");
    let ws = warnings(&r);
    for want in [
        "nginx.ingress.kubernetes.io/ssl-redirect",
        "alb.ingress.kubernetes.io/scheme",
        "clb-ingress.io/typo",
    ] {
        assert!(ws.iter().any(|x| x.contains(want)), "{want} not in {ws:?}");
    }

    // A missing Service and a missing TLS Secret: warnings only (they may be created next).
    let mut late = ingress("clb", "/", json!({}));
    late["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"] = json!("later");
    late["spec"]["tls"] = json!([{"hosts": ["shop.example.com"], "secretName": "shop-tls"}]);
    let r = w.ask("CREATE", late, None).await;
    assert_eq!(r["allowed"], true, "{r}");
    let ws = warnings(&r);
    assert!(ws.iter().any(|x| x.contains("ServiceNotFound")), "{ws:?}");
    assert!(
        ws.iter()
            .any(|x| x.contains("Secret default/shop-tls does not exist")),
        "{ws:?}"
    );

    // Another class's Ingress: untouched, even with a regex path and nginx annotations.
    let r = w
        .ask(
            "CREATE",
            ingress(
                "nginx",
                "/api/(.*)",
                json!({"nginx.ingress.kubernetes.io/use-regex": "true"}),
            ),
            None,
        )
        .await;
    assert_eq!(r["allowed"], true, "{r}");
    assert!(warnings(&r).is_empty(), "{r}");

    // Deletes are never refused.
    let r = w.ask("DELETE", bad, None).await;
    assert_eq!(r["allowed"], true, "{r}");

    // Class parameters the model cannot use: refused with the field.
    let params = json!({"apiVersion": "clb-ingress.io/v1alpha1", "kind": "ClbClassParameters",
        "metadata": {"name": "p2"}, "spec": {"catchAllDomain": "*.example.com"}});
    let r = w.ask("CREATE", params, None).await;
    assert_eq!(r["allowed"], false, "{r}");
    assert!(
        r["status"]["message"]
            .as_str()
            .unwrap()
            .contains("ClbClassParameters p2: spec.catchAllDomain"),
        "{r}"
    );
    let good = json!({"apiVersion": "clb-ingress.io/v1alpha1", "kind": "ClbClassParameters",
        "metadata": {"name": "p3"}, "spec": {"targetMode": "Direct"}});
    assert_eq!(w.ask("CREATE", good, None).await["allowed"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_huge_bodies_are_refused_cleanly_and_the_webhook_keeps_serving() {
    let e = env().await;
    let dir = tempfile::tempdir().unwrap();
    let (ctl, w) = start(&e, dir.path());
    e.class("PerIngress").await;

    let (status, text) = w.post(b"{not json".to_vec()).await;
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("AdmissionReview"), "{text}");
    let (status, text) = w
        .post(
            json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"})
                .to_string()
                .into_bytes(),
        )
        .await;
    assert_eq!(status, 400, "no request: {text}");
    // Over the cap: answered 413 at its Content-Length, and the connection closed; a client
    // still uploading sees the close instead of the answer. Either way nothing is read past
    // the cap.
    let huge = w
        .client
        .post(format!("{}/validate", w.url))
        .body(vec![b' '; 5 * 1024 * 1024])
        .send()
        .await;
    match huge {
        Ok(r) => assert_eq!(r.status().as_u16(), 413, "a body over the cap"),
        Err(e) => assert!(e.is_request() && !e.is_timeout(), "{e:?}"),
    }
    // Still serving, and verdicts still come.
    until_checked(&w, &ctl).await;
    let r = w.ask("CREATE", ingress("clb", "/", json!({})), None).await;
    assert_eq!(r["allowed"], true, "{r}");
    assert!(
        ctl.log().lines().all(|l| !l.contains("panicked")),
        "{}",
        ctl.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_serving_certificate_is_picked_up_without_a_restart() {
    let e = env().await;
    let dir = tempfile::tempdir().unwrap();
    let (ctl, w) = start(&e, dir.path());
    let r = w.ask("CREATE", ingress("clb", "/", json!({})), None).await;
    assert_eq!(r["allowed"], true, "{r}");
    // Written beside, then moved over the old files (as the kubelet swaps a Secret volume).
    let new_pem = self_signed(dir.path(), "new");
    std::fs::rename(dir.path().join("new.key"), dir.path().join("tls.key")).unwrap();
    std::fs::rename(dir.path().join("new.crt"), dir.path().join("tls.crt")).unwrap();
    // New connections get the new certificate within the check interval.
    let reaches = |pem: String| {
        let url = format!("{}/validate", w.url);
        async move {
            client_trusting(&pem)
                .post(url)
                .body(review("CREATE", ingress("clb", "/", json!({})), None).to_string())
                .send()
                .await
                .is_ok_and(|r| r.status() == 200)
        }
    };
    let start = Instant::now();
    while !reaches(new_pem.clone()).await {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the new certificate was never served\n{}",
            ctl.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        !reaches(w.pem.clone()).await,
        "a client that trusts only the old certificate can no longer connect"
    );
    // A pair that does not load (a half-written rotation) keeps the current one in service.
    std::fs::write(dir.path().join("tls.key"), "not a key").unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(reaches(new_pem).await, "{}", ctl.log());
    assert!(ctl.log().contains("not reloaded"), "{}", ctl.log());
}
