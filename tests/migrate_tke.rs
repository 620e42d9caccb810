//! `clb-ingress migrate --from-tke`: a preview of switching TKE Ingresses, with no writes.

use clb_ingress::clb::types::CreateLoadBalancerRequest;
use clb_test_support::emulator::{self, Emulator, Run};
use std::path::Path;
use std::time::Instant;

const BASE: &str = "apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: {name: clb}
spec:
  controller: clb-ingress.io/ingress-controller
  parameters: {apiGroup: clb-ingress.io, kind: ClbClassParameters, name: p}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec: {ports: [{name: http, port: 80}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-1, namespace: default, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
ports: [{name: http, port: 8080}]
endpoints:
- {addresses: [10.0.0.1]}
";

/// A TKE Ingress (class `qcloud`) with these annotation lines, and class parameters `params`.
fn manifest(params: &str, annotations: &str) -> String {
    format!(
        "{BASE}---
apiVersion: clb-ingress.io/v1alpha1
kind: ClbClassParameters
metadata: {{name: p}}
spec: {params}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: shop
  namespace: default
  annotations:
    kubernetes.io/ingress.class: qcloud
{annotations}
spec:
  rules:
  - host: shop.example.com
    http: {{paths: [{{path: /api, pathType: ImplementationSpecific, backend: {{service: {{name: web, port: {{number: 80}}}}}}}}]}}
"
    )
}

fn migrate(file: &Path, extra: &[&str]) -> Run {
    let started = Instant::now();
    let out = emulator::command()
        .args(["migrate", "--from-tke", "-f"])
        .arg(file)
        .args(extra)
        .output()
        .expect("run clb-ingress migrate");
    Run::new(out, started.elapsed())
}

#[test]
fn migrate_from_tke_says_what_carries_over_what_differs_and_plans_from_empty() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("shop.yaml");
    std::fs::write(
        &file,
        manifest(
            "{targetMode: Direct}",
            "    ingress.cloud.tencent.com/direct-access: \"true\"
    kubernetes.io/ingress.internetMaxBandwidthOut: \"20\"",
        ),
    )
    .unwrap();
    let run = migrate(&file, &[]);
    run.expect_ok("migrate");
    let out = &run.stdout;
    assert!(out.contains("Preview only: nothing is written"), "{out}");
    assert!(
        out.contains("1 Ingress(es) of TKE's controller switched"),
        "{out}"
    );
    assert!(
        out.contains("same:    ingress.cloud.tencent.com/direct-access: as on TKE"),
        "{out}"
    );
    assert!(
        out.contains(
            "differs: metadata.annotations[kubernetes.io/ingress.internetMaxBandwidthOut]"
        ) && out.contains("bandwidthMbps"),
        "{out}"
    );
    assert!(out.contains("differs: the CLB: a new CLB"), "{out}");
    assert!(
        out.contains("differs: a Host no rule names gets 404"),
        "{out}"
    );
    assert!(out.contains("differs: paths match element-wise"), "{out}");
    assert!(out.contains("CreateLoadBalancer"), "{out}");

    // A class with TKE's unmatched-host answer: that difference is gone.
    std::fs::write(
        &file,
        manifest(
            "{targetMode: Direct, unmatchedHosts: ListenerDefaultDomain}",
            "",
        ),
    )
    .unwrap();
    let out = migrate(&file, &[]).stdout;
    assert!(
        out.contains("same:    a Host no rule names: answered as on TKE"),
        "{out}"
    );
    assert!(!out.contains("gets 404"), "{out}");
}

#[test]
fn migrate_from_tke_marks_what_would_not_be_served_and_exits_one() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("shop.yaml");
    std::fs::write(
        &file,
        manifest(
            "{targetMode: Direct}",
            "    ingress.cloud.tencent.com/lb-rs-weight: 'not json'",
        ),
    )
    .unwrap();
    let run = migrate(&file, &[]);
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert!(
        run.stdout
            .contains("NOT SERVED: metadata.annotations[ingress.cloud.tencent.com/lb-rs-weight]"),
        "{}",
        run.stdout
    );
}

#[test]
fn migrate_from_tke_plans_against_the_clb_tke_uses_today_and_writes_nothing() {
    let emu = Emulator::start(&["--task-delay-ms", "0"]);
    let ids = emu
        .block_on(
            emu.client()
                .create_load_balancer_and_wait(&CreateLoadBalancerRequest {
                    load_balancer_type: "OPEN".into(),
                    forward: Some(1),
                    load_balancer_name: Some("tke-made".into()),
                    ..Default::default()
                }),
        )
        .unwrap();
    let lb = &ids[0];
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("shop.yaml");
    std::fs::write(
        &file,
        manifest(
            &format!(
                "{{targetMode: Direct, adoption: {{loadBalancerIds: [{lb}], namespaces: [default]}}}}"
            ),
            &format!("    kubernetes.io/ingress.existLbId: {lb}"),
        ),
    )
    .unwrap();
    emu.reset_counters();
    let run = migrate(&file, &["--clb-endpoint", &emu.endpoint]);
    run.expect_ok("migrate");
    let out = &run.stdout;
    assert!(
        out.contains(&format!("existing CLB {lb}")),
        "the plan is against the CLB in use: {out}"
    );
    assert!(out.contains("same:    the CLB: the existing CLB"), "{out}");
    assert!(out.contains("CreateListener"), "{out}");
    assert!(!out.contains("CreateLoadBalancer"), "{out}");
    let counters = emu.counters();
    assert_eq!(counters.total_writes, 0, "{counters:?}");
    assert!(
        counters.total_reads > 0,
        "it did read the CLB: {counters:?}"
    );
}

/// #18: without `-f`, `migrate --from-tke` reads the Ingresses from the cluster (list and get
/// only): TKE's Ingresses are previewed, another controller's are left alone, the TLS Secret
/// they name is read for the HTTPS plan, `-n` narrows the namespaces, and nothing is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_from_tke_reads_the_ingresses_from_the_cluster_and_writes_nothing() {
    use clb_test_support::cluster;
    use k8s_openapi::api::networking::v1::Ingress;
    use kube::Api;
    use serde_json::json;

    let e = cluster::env().await;
    e.class("PerIngress").await;
    e.service("web", &["10.1.0.1"]).await;
    let cert = rcgen::generate_simple_self_signed(vec!["shop.example.com".to_string()]).unwrap();
    e.apply(
        json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
        "metadata": {"name": "shop-tls", "namespace": "default"},
        "stringData": {"tls.crt": cert.cert.pem(), "tls.key": cert.signing_key.serialize_pem()}}),
    )
    .await;
    let ingress = |name: &str, ns: &str, class: &str, host: &str| {
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": {"name": name, "namespace": ns,
                         "annotations": {"kubernetes.io/ingress.class": class}},
            "spec": {"tls": [{"hosts": [host], "secretName": "shop-tls"}],
                     "rules": [{"host": host, "http": {"paths": [{"path": "/", "pathType": "Prefix",
                         "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}}]}})
    };
    e.apply(ingress("shop", "default", "qcloud", "shop.example.com"))
        .await;
    e.apply(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "other"}}))
        .await;
    e.apply(ingress("blog", "other", "nginx", "blog.example.com"))
        .await;
    let before = Api::<Ingress>::namespaced(e.kube.clone(), "default")
        .get("shop")
        .await
        .unwrap()
        .metadata
        .resource_version;

    let run = |extra: Vec<String>| {
        let kubeconfig = e.kubeconfig().to_path_buf();
        async move {
            let started = Instant::now();
            let out = tokio::task::spawn_blocking(move || {
                emulator::command()
                    .args(["migrate", "--from-tke", "--kubeconfig"])
                    .arg(&kubeconfig)
                    .args(&extra)
                    .env_remove("KUBECONFIG")
                    .output()
                    .expect("run clb-ingress migrate")
            })
            .await
            .unwrap();
            Run::new(out, started.elapsed())
        }
    };
    let all = run(vec![]).await;
    all.expect_ok("migrate from the cluster");
    let out = &all.stdout;
    assert!(
        out.contains("1 Ingress(es) of TKE's controller switched"),
        "{out}"
    );
    assert!(out.contains("== Ingress default/shop"), "{out}");
    assert!(
        !out.contains("other/blog"),
        "another controller's Ingress was previewed:\n{out}"
    );
    assert!(!out.contains("NOT SERVED"), "{out}");
    assert!(out.contains("CreateLoadBalancer"), "{out}");
    assert!(
        out.contains("UploadCertificate") && out.contains("from default/shop-tls"),
        "the certificate from the Secret did not reach the plan:\n{out}"
    );

    let narrowed = run(vec!["-n".into(), "other".into()]).await;
    narrowed.expect_ok("migrate -n other");
    assert!(
        narrowed
            .stdout
            .contains("0 Ingress(es) of TKE's controller switched"),
        "{}",
        narrowed.stdout
    );

    let after = Api::<Ingress>::namespaced(e.kube.clone(), "default")
        .get("shop")
        .await
        .unwrap()
        .metadata
        .resource_version;
    assert_eq!(before, after, "the preview wrote to the Ingress");
    assert_eq!(e.lb_count().await, 0, "the preview created a CLB");
}
