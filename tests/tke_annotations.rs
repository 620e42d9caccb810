//! TKE's Ingress annotations, end to end: the real `clb-ingress run` against the test API
//! server and the CLB emulator (with its data plane). Each test shows the annotation's effect
//! on the CLB or on real requests through it.

use clb_test_support::cluster;

use clb_ingress::clb::types::{DescribeLoadBalancersRequest, DescribeTargetsRequest, LoadBalancer};
use cluster::*;
use k8s_openapi::api::networking::v1::Ingress;
use kube::Api;
use kube::api::DeleteParams;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// An Ingress `name` for `host` -> Service `svc` port 80, with these annotations (and TLS
/// from Secret `tls` when given).
async fn ingress(e: &Env, name: &str, host: &str, svc: &str, anns: Value, tls: Option<&str>) {
    let mut spec = json!({"rules": [{"host": host, "http": {"paths": [{"path": "/", "pathType": "Prefix",
        "backend": {"service": {"name": svc, "port": {"number": 80}}}}]}}]});
    if let Some(secret) = tls {
        spec["tls"] = json!([{"hosts": [host], "secretName": secret}]);
    }
    e.apply(
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": name, "namespace": "default", "annotations": anns},
        "spec": spec}),
    )
    .await;
}

async fn lbs(e: &Env) -> Vec<LoadBalancer> {
    e.clb()
        .describe_load_balancers(&DescribeLoadBalancersRequest::default())
        .await
        .unwrap()
}

async fn sync_state(e: &Env, name: &str) -> Option<Value> {
    let ing = e.get_ingress(name).await?;
    let anns = ing.metadata.annotations?;
    serde_json::from_str(anns.get("clb-ingress.io/sync-state")?).ok()
}

/// Poll `f` until it returns Some, at most `SLOW`.
async fn until<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(start.elapsed() < SLOW, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
}

async fn delete_ingress(e: &Env, name: &str) {
    Api::<Ingress>::namespaced(e.kube.clone(), "default")
        .delete(name, &DeleteParams::default())
        .await
        .unwrap();
    until("the Ingress to be gone", || async {
        e.get_ingress(name).await.is_none().then_some(())
    })
    .await;
}

/// The weights of every target on the CLB, by target IP.
async fn weights(e: &Env, lb: &str) -> Vec<(String, i64)> {
    let mut out: Vec<(String, i64)> = e
        .clb()
        .describe_targets(&DescribeTargetsRequest {
            load_balancer_id: lb.to_string(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_iter()
        .flat_map(|l| l.rules)
        .flat_map(|r| r.targets)
        .map(|t| {
            (
                t.private_ip_addresses.first().cloned().unwrap_or_default(),
                t.weight,
            )
        })
        .collect();
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subnet_id_creates_an_internal_clb_in_that_subnet_of_the_class_vpc() {
    let e = env().await;
    let _ctl = e.controller("c1", &[]);
    e.class("PerIngress").await;
    e.apply(
        json!({"apiVersion": "clb-ingress.io/v1alpha1", "kind": "ClbClassParameters",
        "metadata": {"name": "p"},
        "spec": {"targetMode": "Direct", "create": {"vpcId": "vpc-abcdefgh"}}}),
    )
    .await;
    e.service("web", &["10.1.0.1"]).await;
    ingress(
        &e,
        "private",
        "private.example.com",
        "web",
        json!({"kubernetes.io/ingress.subnetId": "subnet-12345678"}),
        None,
    )
    .await;
    e.until_routed("private", "private.example.com", "/", "10.1.0.1:8080", SLOW)
        .await;
    let all = lbs(&e).await;
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].load_balancer_type, "INTERNAL", "{:?}", all[0]);
    assert_eq!(all[0].subnet_id.as_deref(), Some("subnet-12345678"));
    assert_eq!(all[0].vpc_id.as_deref(), Some("vpc-abcdefgh"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subnet_id_without_a_vpc_in_the_class_creates_the_internal_clb_in_the_subnets_vpc() {
    let e = env().await;
    // The emulator's VPC service knows this subnet (VPC DescribeSubnets).
    e.emu.app.update_settings(|s| {
        s.subnets
            .insert("subnet-87654321".into(), "vpc-fromsubnet".into())
    });
    let _ctl = e.controller("c1", &[]);
    e.class("PerIngress").await;
    e.service("web", &["10.1.0.1"]).await;
    ingress(
        &e,
        "private",
        "private.example.com",
        "web",
        json!({"kubernetes.io/ingress.subnetId": "subnet-87654321"}),
        None,
    )
    .await;
    e.until_routed("private", "private.example.com", "/", "10.1.0.1:8080", SLOW)
        .await;
    let all = lbs(&e).await;
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].load_balancer_type, "INTERNAL", "{:?}", all[0]);
    assert_eq!(all[0].subnet_id.as_deref(), Some("subnet-87654321"));
    assert_eq!(all[0].vpc_id.as_deref(), Some("vpc-fromsubnet"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subnet_id_naming_no_subnet_leaves_the_ingress_unsynced_with_a_reason_and_creates_nothing()
{
    let e = env().await;
    let _ctl = e.controller("c1", &[]);
    e.class("PerIngress").await;
    e.service("web", &["10.1.0.1"]).await;
    ingress(
        &e,
        "private",
        "private.example.com",
        "web",
        json!({"kubernetes.io/ingress.subnetId": "subnet-12345678"}),
        None,
    )
    .await;
    let state = until("an unsynced sync state", || async {
        let s = sync_state(&e, "private").await?;
        (s["reason"] == "SubnetNotFound").then_some(s)
    })
    .await;
    assert_eq!(state["synced"], false, "{state}");
    assert!(
        state["message"]
            .as_str()
            .unwrap()
            .contains("subnet-12345678"),
        "{state}"
    );
    assert_eq!(lbs(&e).await.len(), 0, "no public CLB is created instead");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_rewrite_redirects_http_requests_to_the_https_listener_with_the_given_code() {
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
    ingress(
        &e,
        "shop",
        "a.example.com",
        "web",
        // TKE's JSON form (the bare "307" works too).
        json!({"ingress.cloud.tencent.com/auto-rewrite": "true",
               "ingress.cloud.tencent.com/auto-rewrite-code": r#"{"defaultRewriteCode": 302, "rewriteCodeInfos": [{"host": "a.example.com", "rewriteCode": 307}]}"#}),
        Some("a-tls"),
    )
    .await;
    let vip = until("an address", || e.vip("shop")).await;
    let client = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let url = format!("http://{vip}:{}/cart?x=1", 80 + e.offset());
    let location = until("the redirect", || async {
        let r = client
            .get(&url)
            .header("Host", "a.example.com")
            .send()
            .await
            .ok()?;
        (r.status() == 307).then(|| r.headers()["location"].to_str().unwrap().to_string())
    })
    .await;
    assert_eq!(
        location,
        format!("https://a.example.com:{}/cart?x=1", 443 + e.offset())
    );
    // The redirected HTTP rule has no targets; the HTTPS rule keeps the Service's. (The
    // redirect can answer a moment before the HTTP rule's targets are deregistered.)
    let lb = lbs(&e).await.remove(0).load_balancer_id;
    let want = vec![("10.1.0.1".to_string(), 10)];
    let start = Instant::now();
    let mut got = weights(&e, &lb).await;
    while got != want && start.elapsed() < SLOW {
        tokio::time::sleep(Duration::from_millis(50)).await;
        got = weights(&e, &lb).await;
    }
    assert_eq!(got, want);
    // Steady state: a second full sync changes nothing.
    let state = until("synced", || async {
        let s = sync_state(&e, "shop").await?;
        (s["synced"] == true).then_some(s)
    })
    .await;
    assert_eq!(state["synced"], true, "{}", ctl.log());

    // Turning it off removes the redirect: HTTP is served by the Service again.
    ingress(&e, "shop", "a.example.com", "web", json!({}), Some("a-tls")).await;
    e.until_routed("shop", "a.example.com", "/cart", "10.1.0.1:8080", SLOW)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lb_rs_weight_sets_the_default_weight_and_the_weight_of_statefulset_pods() {
    let e = env().await;
    let _ctl = e.controller("c1", &[]);
    e.class("PerIngress").await;
    e.apply(json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "db", "namespace": "default"},
        "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}]}}))
        .await;
    e.apply(
        json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "db-1", "namespace": "default",
                     "labels": {"kubernetes.io/service-name": "db"}},
        "addressType": "IPv4", "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": [
            {"addresses": ["10.3.0.1"], "conditions": {"ready": true},
             "targetRef": {"kind": "Pod", "name": "db-0", "namespace": "default"}},
            {"addresses": ["10.3.0.2"], "conditions": {"ready": true},
             "targetRef": {"kind": "Pod", "name": "web-7d9c-x2x", "namespace": "default"}}]}),
    )
    .await;
    ingress(
        &e,
        "weighted",
        "w.example.com",
        "db",
        json!({"ingress.cloud.tencent.com/lb-rs-weight":
            r#"{"defaultWeight": 37, "groups": [{"key": {"proto": "HTTP", "host": "w.example.com", "path": "/"},
                "statefulSets": [{"name": "db", "weight": 80}]}]}"#}),
        None,
    )
    .await;
    let vip = until("an address", || e.vip("weighted")).await;
    let lb = lbs(&e).await.remove(0).load_balancer_id;
    let w = until("weighted targets", || async {
        let w = weights(&e, &lb).await;
        (w.len() == 2).then_some(w)
    })
    .await;
    assert_eq!(
        w,
        vec![("10.3.0.1".to_string(), 80), ("10.3.0.2".to_string(), 37)]
    );
    // Both still serve traffic.
    assert_eq!(e.request(&vip, "w.example.com", "/").await.0, 200);

    // Only defaultWeight: every target gets it, re-weighted in place.
    ingress(
        &e,
        "weighted",
        "w.example.com",
        "db",
        json!({"ingress.cloud.tencent.com/lb-rs-weight": r#"{"defaultWeight": 5}"#}),
        None,
    )
    .await;
    until("re-weighted targets", || async {
        let w = weights(&e, &lb).await;
        (w == vec![("10.3.0.1".to_string(), 5), ("10.3.0.2".to_string(), 5)]).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lb_rs_weight_deployment_groups_are_refused_with_a_warning_not_ignored() {
    let e = env().await;
    let _ctl = e.controller("c1", &[]);
    e.class("PerIngress").await;
    e.service("web", &["10.1.0.1"]).await;
    ingress(
        &e,
        "weighted",
        "w.example.com",
        "web",
        json!({"ingress.cloud.tencent.com/lb-rs-weight":
            r#"{"groups": [{"key": {"host": "w.example.com", "path": "/"}, "deployments": [{"name": "web", "weight": 50}]}]}"#}),
        None,
    )
    .await;
    e.until_routed("weighted", "w.example.com", "/", "10.1.0.1:8080", SLOW)
        .await;
    let evs = until("a Warning", || async {
        let evs = e.events_for("weighted").await;
        evs.iter()
            .any(|(t, r, _)| t == "Warning" && r == "UnsupportedAnnotation")
            .then_some(evs)
    })
    .await;
    assert!(
        evs.iter().any(|(_, _, n)| n.contains("deployments")),
        "{evs:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loadbalance_retain_keeps_the_clb_after_the_ingress_is_deleted_and_never_prunes_it() {
    let e = env().await;
    let ctl = e.controller("c1", &["--resync-seconds", "1"]);
    e.class("PerIngress").await;
    e.service("web", &["10.1.0.1"]).await;
    ingress(
        &e,
        "keep",
        "keep.example.com",
        "web",
        json!({"ingress.cloud.tencent.com/loadbalance-retain": "true"}),
        None,
    )
    .await;
    e.until_routed("keep", "keep.example.com", "/", "10.1.0.1:8080", SLOW)
        .await;
    let vip = e.vip("keep").await.unwrap();
    delete_ingress(&e, "keep").await;
    // Our listeners go (TKE removes what it configured), the CLB stays, marked by its name.
    until("the listeners to be removed", || async {
        (e.request(&vip, "keep.example.com", "/").await.0 != 200).then_some(())
    })
    .await;
    // Several drift resyncs (with pruning) later, it is still there.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let all = lbs(&e).await;
    assert_eq!(all.len(), 1, "the retained CLB was deleted:\n{}", ctl.log());
    assert!(
        all[0].load_balancer_name.starts_with("retained-"),
        "{}",
        all[0].load_balancer_name
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mode_skip_leaves_the_clb_untouched_on_edit_and_on_delete() {
    let e = env().await;
    let ctl = e.controller("c1", &["--resync-seconds", "1"]);
    e.class("PerIngress").await;
    e.service("web", &["10.1.0.1"]).await;
    e.service("api", &["10.2.0.1"]).await;
    ingress(&e, "frozen", "f.example.com", "web", json!({}), None).await;
    e.until_routed("frozen", "f.example.com", "/", "10.1.0.1:8080", SLOW)
        .await;
    let vip = e.vip("frozen").await.unwrap();
    // Skip, and change the backend: the CLB keeps the old one.
    ingress(
        &e,
        "frozen",
        "f.example.com",
        "api",
        json!({"ingress.cloud.tencent.com/mode": "skip"}),
        None,
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        e.request(&vip, "f.example.com", "/").await,
        (200, "10.1.0.1:8080".to_string()),
        "{}",
        ctl.log()
    );
    // Deleting it deletes nothing on the CLB, now or at later resyncs.
    delete_ingress(&e, "frozen").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(lbs(&e).await.len(), 1, "{}", ctl.log());
    assert_eq!(
        e.request(&vip, "f.example.com", "/").await,
        (200, "10.1.0.1:8080".to_string())
    );
    // A new Ingress in skip mode gets no CLB at all.
    ingress(
        &e,
        "never",
        "n.example.com",
        "web",
        json!({"ingress.cloud.tencent.com/mode": "skip"}),
        None,
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(lbs(&e).await.len(), 1);
    assert!(
        e.get_ingress("never")
            .await
            .unwrap()
            .metadata
            .finalizers
            .is_none()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_annotation_under_our_prefix_gets_a_warning_and_the_ingress_still_syncs() {
    let e = env().await;
    let _ctl = e.controller("c1", &[]);
    e.class("PerIngress").await;
    e.service("web", &["10.1.0.1"]).await;
    ingress(
        &e,
        "typo",
        "t.example.com",
        "web",
        json!({"ingress.cloud.tencent.com/auto-rewirte": "true",
               "clb-ingress.io/nonsense": "1",
               "clb-ingress.io/sync-state": "{}"}),
        None,
    )
    .await;
    e.until_routed("typo", "t.example.com", "/", "10.1.0.1:8080", SLOW)
        .await;
    let evs = until("a Warning", || async {
        let evs = e.events_for("typo").await;
        evs.iter()
            .any(|(t, r, _)| t == "Warning" && r == "UnknownAnnotation")
            .then_some(evs)
    })
    .await;
    let (_, _, note) = evs
        .iter()
        .find(|(_, r, _)| r == "UnknownAnnotation")
        .unwrap();
    assert!(
        note.contains("ingress.cloud.tencent.com/auto-rewirte"),
        "{note}"
    );
    assert!(note.contains("clb-ingress.io/nonsense"), "{note}");
    assert!(!note.contains("sync-state"), "{note}");
    // The sync state is written just after the Events of the same pass.
    let state = until("the sync state", || async {
        let s = sync_state(&e, "typo").await?;
        s["problems"]
            .as_array()
            .is_some_and(|p| !p.is_empty())
            .then_some(s)
    })
    .await;
    assert_eq!(
        state["synced"], true,
        "a warning does not fail the sync: {state}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exist_lb_id_adopts_that_clb_and_leaves_its_foreign_listener_alone() {
    use clb_ingress::clb::types::{
        CreateListenerRequest, CreateLoadBalancerRequest, DescribeListenersRequest,
    };
    let e = env().await;
    let _ctl = e.controller("c1", &[]);
    e.class("PerIngress").await;
    e.service("web", &["10.1.0.1"]).await;
    let lb: String = e
        .clb()
        .create_load_balancer_and_wait(&CreateLoadBalancerRequest {
            load_balancer_type: "OPEN".into(),
            load_balancer_name: Some("hand-made".into()),
            ..Default::default()
        })
        .await
        .unwrap()
        .remove(0);
    let r = e
        .clb()
        .create_listener(&CreateListenerRequest {
            load_balancer_id: lb.clone(),
            ports: vec![8443],
            protocol: "HTTP".into(),
            listener_names: vec!["ops-team".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    e.clb().wait_task(&r.request_id).await.unwrap();
    // Adoption by annotation is opt-in: the class lets every namespace adopt this CLB.
    e.class_with(json!({"targetMode": "Direct", "sharing": "PerIngress",
        "adoption": {"namespaces": ["*"], "loadBalancerIds": [lb]}}))
        .await;
    ingress(
        &e,
        "adopt",
        "adopt.example.com",
        "web",
        json!({"kubernetes.io/ingress.existLbId": lb}),
        None,
    )
    .await;
    e.until_routed("adopt", "adopt.example.com", "/", "10.1.0.1:8080", SLOW)
        .await;
    let all = lbs(&e).await;
    assert_eq!(all.len(), 1, "no CLB was created: {all:?}");
    assert_eq!(
        e.vip("adopt").await.as_deref(),
        all[0].load_balancer_vips.first().map(String::as_str)
    );
    delete_ingress(&e, "adopt").await;
    let listeners = e
        .clb()
        .describe_listeners(&DescribeListenersRequest {
            load_balancer_id: lb.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    let names: Vec<&str> = listeners.iter().map(|l| l.listener_name.as_str()).collect();
    assert_eq!(
        names,
        vec!["ops-team"],
        "only our listener is removed; the CLB stays"
    );
    assert_eq!(lbs(&e).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_access_sends_traffic_to_pod_ips_even_when_the_class_uses_node_ports() {
    let e = env().await;
    let _ctl = e.controller("c1", &[]);
    e.class("PerIngress").await;
    e.apply(
        json!({"apiVersion": "clb-ingress.io/v1alpha1", "kind": "ClbClassParameters",
        "metadata": {"name": "p"}, "spec": {"targetMode": "NodePort"}}),
    )
    .await;
    e.service("web", &["10.1.0.1"]).await;
    ingress(
        &e,
        "pods",
        "pods.example.com",
        "web",
        json!({"ingress.cloud.tencent.com/direct-access": "true"}),
        None,
    )
    .await;
    e.until_routed("pods", "pods.example.com", "/", "10.1.0.1:8080", SLOW)
        .await;
    // Without the annotation the class's NodePort mode applies: the Service has no nodePort.
    ingress(&e, "nodes", "nodes.example.com", "web", json!({}), None).await;
    let state = until("a NoNodePort sync state", || async {
        sync_state(&e, "nodes")
            .await
            .filter(|s| s["reason"] == "NoNodePort")
    })
    .await;
    assert_eq!(state["reason"], "NoNodePort");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_ports_puts_the_rules_on_the_named_listener_port() {
    let e = env().await;
    let _ctl = e.controller("c1", &[]);
    e.class("PerIngress").await;
    e.service("web", &["10.1.0.1"]).await;
    ingress(
        &e,
        "alt",
        "alt.example.com",
        "web",
        json!({"ingress.cloud.tencent.com/listen-ports": "[{\"HTTP\": 8080}]"}),
        None,
    )
    .await;
    let vip = until("an address", || async { e.vip("alt").await }).await;
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let url = format!("http://{vip}:{}/", 8080 + e.offset());
    let target = until("a route on port 8080", || async {
        let r = http
            .get(&url)
            .header("Host", "alt.example.com")
            .send()
            .await
            .ok()?;
        (r.status() == 200).then(|| {
            r.headers()
                .get("x-clb-target")?
                .to_str()
                .ok()
                .map(str::to_string)
        })?
    })
    .await;
    assert_eq!(target, "10.1.0.1:8080");
    assert_eq!(
        e.request(&vip, "alt.example.com", "/").await.0,
        0,
        "nothing listens on port 80"
    );
    let ing = e.get_ingress("alt").await.unwrap();
    let ports: Vec<i32> = ing.status.unwrap().load_balancer.unwrap().ingress.unwrap()[0]
        .ports
        .clone()
        .unwrap()
        .iter()
        .map(|p| p.port)
        .collect();
    assert_eq!(ports, vec![8080]);
}

/// A self-signed certificate for `host`, uploaded to the emulator; its certificate id.
async fn uploaded_certificate(e: &Env, host: &str) -> String {
    use clb_ingress::clb::types::UploadCertificateRequest;
    let cert = rcgen::generate_simple_self_signed(vec![host.to_string()]).unwrap();
    e.clb()
        .upload_certificate(&UploadCertificateRequest {
            certificate_public_key: cert.cert.pem(),
            certificate_private_key: Some(cert.signing_key.serialize_pem()),
            certificate_type: Some("SVR".into()),
            alias: Some("tke-uploaded".into()),
            ..Default::default()
        })
        .await
        .unwrap()
}

/// One HTTPS request through the data plane (SNI and Host `host`, the emulator's self-signed
/// certificates accepted): (status, x-clb-target).
async fn https_request(e: &Env, vip: &str, host: &str, path: &str) -> (u16, String) {
    let port = 443 + e.offset();
    let addr: std::net::SocketAddr = format!("{vip}:{port}").parse().unwrap();
    let client = reqwest::Client::builder()
        .use_rustls_tls()
        .no_proxy()
        .danger_accept_invalid_certs(true)
        .redirect(reqwest::redirect::Policy::none())
        .resolve(host, addr)
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    match client
        .get(format!("https://{host}:{port}{path}"))
        .send()
        .await
    {
        Ok(r) => (
            r.status().as_u16(),
            r.headers()
                .get("x-clb-target")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string(),
        ),
        Err(_) => (0, String::new()),
    }
}

/// One HTTP request that does not follow redirects: (status, Location).
async fn http_no_follow(e: &Env, vip: &str, host: &str, path: &str) -> (u16, String) {
    let client = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let url = format!("http://{vip}:{}{path}", 80 + e.offset());
    match client.get(&url).header("Host", host).send().await {
        Ok(r) => (
            r.status().as_u16(),
            r.headers()
                .get("location")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string(),
        ),
        Err(_) => (0, String::new()),
    }
}

/// The certificate id of each HTTPS domain of the CLB: (domain, certificate id).
async fn https_certificates(e: &Env, lb: &str) -> Vec<(String, String)> {
    use clb_ingress::clb::types::DescribeListenersRequest;
    let listeners = e
        .clb()
        .describe_listeners(&DescribeListenersRequest {
            load_balancer_id: lb.to_string(),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut out: Vec<(String, String)> = listeners
        .iter()
        .filter(|l| l.protocol == "HTTPS")
        .flat_map(|l| &l.rules)
        .filter_map(|r| {
            let id = r.certificate.as_ref()?.cert_id.clone()?;
            Some((r.domain.clone(), id))
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// A Warning Event of this reason about Ingress `name`: its note.
async fn warning(e: &Env, name: &str, reason: &str) -> String {
    until("a Warning", || async {
        e.events_for(name)
            .await
            .into_iter()
            .find(|(t, r, _)| t == "Warning" && r == reason)
            .map(|(_, _, note)| note)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_annotation_serves_https_for_its_host_with_that_certificate_and_no_spec_tls() {
    let e = env().await;
    let _ctl = e.controller("c1", &[]);
    e.class("PerIngress").await;
    e.service("web", &["10.1.0.1"]).await;
    let id = uploaded_certificate(&e, "c.example.com").await;
    ingress(
        &e,
        "certs",
        "c.example.com",
        "web",
        json!({"ingress.cloud.tencent.com/certificate": format!(r#"{{"c.example.com": "{id}"}}"#)}),
        None,
    )
    .await;
    let vip = until("an address", || e.vip("certs")).await;
    until("HTTPS to serve", || async {
        (https_request(&e, &vip, "c.example.com", "/").await == (200, "10.1.0.1:8080".into()))
            .then_some(())
    })
    .await;
    let lb = lbs(&e).await.remove(0).load_balancer_id;
    // The host's domain serves that certificate (the CLB's catch-all domain gets it as the
    // default certificate too).
    assert!(
        https_certificates(&e, &lb)
            .await
            .contains(&("c.example.com".to_string(), id.clone())),
        "{:?}",
        https_certificates(&e, &lb).await
    );
    // HTTP keeps serving too, as with spec.tls.
    assert_eq!(
        e.request(&vip, "c.example.com", "/").await,
        (200, "10.1.0.1:8080".into())
    );
    // TKE's list form is read the same way.
    ingress(
        &e,
        "certs",
        "c.example.com",
        "web",
        json!({"ingress.cloud.tencent.com/certificate": format!(r#"[{{"host": "c.example.com", "certId": "{id}"}}]"#)}),
        None,
    )
    .await;
    let state = until("the sync state", || sync_state(&e, "certs")).await;
    assert!(
        state["problems"].as_array().is_none_or(|p| p.is_empty()),
        "{state}"
    );
    assert!(
        https_certificates(&e, &lb)
            .await
            .iter()
            .all(|(_, c)| *c == id)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule_mix_serves_each_rule_on_the_protocols_its_lists_name_and_redirects_http_entries() {
    let e = env().await;
    let _ctl = e.controller("c1", &[]);
    e.class("PerIngress").await;
    e.service("web", &["10.1.0.1"]).await;
    e.service("api", &["10.2.0.1"]).await;
    let id = uploaded_certificate(&e, "m.example.com").await;
    // TKE's mixed-protocol example, rewritten: `/` is HTTPS only (HTTP redirects to it), `/api`
    // is HTTP only, with its host inside `backend`, a numeric port, a null entry and the list
    // on several lines; `/static` is in no list, so TKE puts it on HTTPS.
    let http_rules = r#"[
      {"path": "/api", "backend": {"host": "m.example.com", "serviceName": "api", "servicePort": 80}},
      null,
      {"host": "m.example.com", "path": "/", "rewrite": {"port": 443, "host": "m.example.com", "path": "/"}}
    ]"#;
    let https_rules = r#"[{"host":"m.example.com","path":"/","backend":{"serviceName":"web","servicePort":"80"}}]"#;
    e.apply(json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": "mix", "namespace": "default", "annotations": {
            "kubernetes.io/ingress.rule-mix": "true",
            "kubernetes.io/ingress.http-rules": http_rules,
            "kubernetes.io/ingress.https-rules": https_rules,
            "ingress.cloud.tencent.com/certificate": format!(r#"{{"m.example.com": "{id}"}}"#)}},
        "spec": {"rules": [{"host": "m.example.com", "http": {"paths": [
            {"path": "/", "pathType": "ImplementationSpecific", "backend": {"service": {"name": "web", "port": {"number": 80}}}},
            {"path": "/api", "pathType": "ImplementationSpecific", "backend": {"service": {"name": "api", "port": {"number": 80}}}},
            {"path": "/static", "pathType": "ImplementationSpecific", "backend": {"service": {"name": "api", "port": {"number": 80}}}}]}}]}}))
    .await;
    let vip = until("an address", || e.vip("mix")).await;
    until("HTTPS to serve /", || async {
        (https_request(&e, &vip, "m.example.com", "/").await == (200, "10.1.0.1:8080".into()))
            .then_some(())
    })
    .await;
    until("HTTP /api to serve", || async {
        (e.request(&vip, "m.example.com", "/api/v1").await == (200, "10.2.0.1:8080".into()))
            .then_some(())
    })
    .await;
    // `/` on HTTP is the redirect entry.
    let redirected = until("the redirect", || async {
        let (status, location) = http_no_follow(&e, &vip, "m.example.com", "/").await;
        (status == 301).then_some(location)
    })
    .await;
    assert_eq!(
        redirected,
        format!("https://m.example.com:{}/", 443 + e.offset())
    );
    // `/static` is HTTPS only; on HTTP it falls to `/`, which redirects.
    assert_eq!(
        https_request(&e, &vip, "m.example.com", "/static/a.css").await,
        (200, "10.2.0.1:8080".into())
    );
    assert_eq!(
        http_no_follow(&e, &vip, "m.example.com", "/static/a.css")
            .await
            .0,
        301
    );
    // `/api` is HTTP only: on HTTPS it is the `/` rule's.
    assert_eq!(
        https_request(&e, &vip, "m.example.com", "/api/v1").await,
        (200, "10.1.0.1:8080".into())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule_mix_with_null_lists_serves_every_rule_on_https_only_as_tke_does() {
    let e = env().await;
    let _ctl = e.controller("c1", &[]);
    e.class("PerIngress").await;
    e.service("web", &["10.1.0.1"]).await;
    let id = uploaded_certificate(&e, "n.example.com").await;
    ingress(
        &e,
        "nulls",
        "n.example.com",
        "web",
        json!({"kubernetes.io/ingress.rule-mix": "true",
               "kubernetes.io/ingress.http-rules": "null",
               "kubernetes.io/ingress.https-rules": "null",
               "ingress.cloud.tencent.com/certificate": format!(r#"{{"n.example.com": "{id}"}}"#)}),
        None,
    )
    .await;
    let vip = until("an address", || e.vip("nulls")).await;
    until("HTTPS to serve", || async {
        (https_request(&e, &vip, "n.example.com", "/").await == (200, "10.1.0.1:8080".into()))
            .then_some(())
    })
    .await;
    let lb = lbs(&e).await.remove(0).load_balancer_id;
    let listeners = e
        .clb()
        .describe_listeners(&clb_ingress::clb::types::DescribeListenersRequest {
            load_balancer_id: lb,
            ..Default::default()
        })
        .await
        .unwrap();
    let protocols: Vec<&str> = listeners.iter().map(|l| l.protocol.as_str()).collect();
    assert_eq!(
        protocols,
        vec!["HTTPS"],
        "no HTTP listener: no rule is HTTP"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lb_rs_weight_takes_tkes_numeric_listener_port_key() {
    let e = env().await;
    let _ctl = e.controller("c1", &[]);
    e.class("PerIngress").await;
    e.apply(json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "db", "namespace": "default"},
        "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}]}}))
        .await;
    e.apply(
        json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "db-1", "namespace": "default",
                     "labels": {"kubernetes.io/service-name": "db"}},
        "addressType": "IPv4", "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": [
            {"addresses": ["10.3.0.1"], "conditions": {"ready": true},
             "targetRef": {"kind": "Pod", "name": "db-0", "namespace": "default"}},
            {"addresses": ["10.3.0.2"], "conditions": {"ready": true},
             "targetRef": {"kind": "Pod", "name": "web-7d9c-x2x", "namespace": "default"}}]}),
    )
    .await;
    ingress(
        &e,
        "ported",
        "p.example.com",
        "db",
        json!({"ingress.cloud.tencent.com/lb-rs-weight":
            r#"{"defaultWeight": 20, "groups": [{"key": {"proto": "HTTP", "port": 80, "host": "p.example.com", "path": "/"},
                "statefulSets": [{"name": "db", "weight": 60}]}]}"#}),
        None,
    )
    .await;
    let vip = until("an address", || e.vip("ported")).await;
    let lb = lbs(&e).await.remove(0).load_balancer_id;
    let w = until("weighted targets", || async {
        let w = weights(&e, &lb).await;
        (w.len() == 2).then_some(w)
    })
    .await;
    assert_eq!(
        w,
        vec![("10.3.0.1".to_string(), 60), ("10.3.0.2".to_string(), 20)]
    );
    assert_eq!(e.request(&vip, "p.example.com", "/").await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn localhost_is_refused_as_tke_refuses_it_and_the_other_hosts_serve() {
    let e = env().await;
    let _ctl = e.controller("c1", &[]);
    e.class("PerIngress").await;
    e.service("web", &["10.1.0.1"]).await;
    let path = json!({"paths": [{"path": "/", "pathType": "Prefix",
        "backend": {"service": {"name": "web", "port": {"number": 80}}}}]});
    e.apply(json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": "local", "namespace": "default"},
        "spec": {"rules": [{"host": "localhost", "http": path}, {"host": "ok.example.com", "http": path}]}}))
    .await;
    e.until_routed("local", "ok.example.com", "/", "10.1.0.1:8080", SLOW)
        .await;
    let vip = e.vip("local").await.unwrap();
    assert_eq!(e.request(&vip, "localhost", "/").await.0, 404);
    let note = warning(&e, "local", "InvalidHost").await;
    assert!(note.contains("localhost"), "{note}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tke_annotations_without_an_equivalent_get_a_warning_saying_what_to_use_instead() {
    let e = env().await;
    let _ctl = e.controller("c1", &[]);
    e.class("PerIngress").await;
    e.service("web", &["10.1.0.1"]).await;
    ingress(
        &e,
        "extras",
        "x.example.com",
        "web",
        json!({"kubernetes.io/ingress.internetMaxBandwidthOut": "50",
               "ingress.cloud.tencent.com/enable-grace-shutdown": "true"}),
        None,
    )
    .await;
    e.until_routed("extras", "x.example.com", "/", "10.1.0.1:8080", SLOW)
        .await;
    let state = until("both warnings in the sync state", || async {
        let s = sync_state(&e, "extras").await?;
        (s["problems"].as_array()?.len() == 2).then_some(s)
    })
    .await;
    let text = state["problems"].to_string();
    assert!(text.contains("bandwidthMbps"), "{text}");
    assert!(text.contains("drainDelaySeconds"), "{text}");
    assert!(text.contains("UnsupportedAnnotation"), "{text}");
    assert_eq!(state["synced"], true, "{state}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_clb_id_is_written_back_in_tkes_read_only_qcloud_loadbalance_id_annotation() {
    let e = env().await;
    let _ctl = e.controller("c1", &[]);
    e.class("PerIngress").await;
    e.service("web", &["10.1.0.1"]).await;
    // A leftover value from TKE's controller (its old CLB) is replaced by the CLB in use.
    ingress(
        &e,
        "idback",
        "i.example.com",
        "web",
        json!({"kubernetes.io/ingress.qcloud-loadbalance-id": "lb-oldtke00"}),
        None,
    )
    .await;
    e.until_routed("idback", "i.example.com", "/", "10.1.0.1:8080", SLOW)
        .await;
    let lb = lbs(&e).await.remove(0).load_balancer_id;
    let written = until("the annotation", || async {
        let ing = e.get_ingress("idback").await?;
        let v = ing
            .metadata
            .annotations?
            .get("kubernetes.io/ingress.qcloud-loadbalance-id")?
            .clone();
        (v != "lb-oldtke00").then_some(v)
    })
    .await;
    assert_eq!(written, lb);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_class_asking_for_tkes_unmatched_host_answer_sends_unknown_hosts_to_the_first_host() {
    let e = env().await;
    let _ctl = e.controller("c1", &[]);
    e.class_with(json!({"targetMode": "Direct", "unmatchedHosts": "ListenerDefaultDomain"}))
        .await;
    e.service("web", &["10.1.0.1"]).await;
    ingress(&e, "first", "f.example.com", "web", json!({}), None).await;
    e.until_routed("first", "f.example.com", "/", "10.1.0.1:8080", SLOW)
        .await;
    // As on TKE: a Host no rule names lands on the listener's default domain.
    e.until_routed("first", "nobody.example.org", "/x", "10.1.0.1:8080", SLOW)
        .await;

    // The Ingress spec's answer (the default) is 404.
    e.class_with(json!({"targetMode": "Direct"})).await;
    let vip = e.vip("first").await.unwrap();
    e.until_status(&vip, "nobody.example.org", "/x", 404, SLOW)
        .await;
    assert_eq!(
        e.request(&vip, "f.example.com", "/").await,
        (200, "10.1.0.1:8080".into())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tke_service_config_default_server_picks_the_host_unmatched_hosts_land_on() {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    use kube::CustomResourceExt;
    let e = env().await;
    kube::Api::<CustomResourceDefinition>::all(e.kube.clone())
        .create(
            &kube::api::PostParams::default(),
            &clb_ingress::crd::TkeServiceConfig::crd(),
        )
        .await
        .expect("TkeServiceConfig CRD");
    e.class_with(json!({"targetMode": "Direct", "unmatchedHosts": "ListenerDefaultDomain"}))
        .await;
    e.service("web", &["10.1.0.1"]).await;
    e.service("api", &["10.1.0.2"]).await;
    // TKE's form: the listener's defaultServer names the Ingress's second host.
    e.apply(
        json!({"apiVersion": "cloud.tencent.com/v1alpha1", "kind": "TkeServiceConfig",
        "metadata": {"name": "shop-config", "namespace": "default"},
        "spec": {"loadBalancer": {"l7Listeners": [
            {"protocol": "HTTP", "port": 80, "defaultServer": "api.example.com"}]}}}),
    )
    .await;
    e.apply(json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": "shop", "namespace": "default",
                     "annotations": {"ingress.cloud.tencent.com/tke-service-config": "shop-config"}},
        "spec": {"rules": [
            {"host": "www.example.com", "http": {"paths": [{"path": "/", "pathType": "Prefix",
                "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}},
            {"host": "api.example.com", "http": {"paths": [{"path": "/", "pathType": "Prefix",
                "backend": {"service": {"name": "api", "port": {"number": 80}}}}]}}]}}))
    .await;
    let _ctl = e.controller("c1", &["--tke-service-configs"]);
    e.until_routed("shop", "www.example.com", "/", "10.1.0.1:8080", SLOW)
        .await;
    // Without defaultServer the first host would answer; the config names api.example.com.
    e.until_routed("shop", "nobody.example.org", "/x", "10.1.0.2:8080", SLOW)
        .await;

    // A defaultServer naming a host the Ingress does not serve is not applied, with a
    // Warning: the oldest Ingress's first host answers, as without it.
    e.apply(
        json!({"apiVersion": "cloud.tencent.com/v1alpha1", "kind": "TkeServiceConfig",
        "metadata": {"name": "shop-config", "namespace": "default"},
        "spec": {"loadBalancer": {"l7Listeners": [
            {"protocol": "HTTP", "port": 80, "defaultServer": "other.example.com"}]}}}),
    )
    .await;
    e.until_routed("shop", "nobody.example.org", "/x", "10.1.0.1:8080", SLOW)
        .await;
    let evs = until("a Warning on defaultServer", || async {
        let evs = e.events_for("shop").await;
        evs.iter()
            .any(|(t, _, n)| t == "Warning" && n.contains("\"other.example.com\""))
            .then_some(evs)
    })
    .await;
    assert!(
        evs.iter()
            .any(|(_, _, n)| n.contains("defaultServer") && n.contains("not applied")),
        "{evs:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tke_service_config_auto_is_refused_with_what_to_write_instead() {
    let e = env().await;
    let _ctl = e.controller("c1", &[]);
    e.class("PerIngress").await;
    e.service("web", &["10.1.0.1"]).await;
    ingress(
        &e,
        "auto",
        "auto.example.com",
        "web",
        json!({"ingress.cloud.tencent.com/tke-service-config-auto": "true"}),
        None,
    )
    .await;
    e.until_routed("auto", "auto.example.com", "/", "10.1.0.1:8080", SLOW)
        .await;
    let evs = until("a Warning", || async {
        let evs = e.events_for("auto").await;
        evs.iter()
            .any(|(t, _, n)| t == "Warning" && n.contains("tke-service-config-auto"))
            .then_some(evs)
    })
    .await;
    let (_, reason, note) = evs
        .iter()
        .find(|(_, _, n)| n.contains("tke-service-config-auto"))
        .unwrap();
    assert_ne!(reason, "UnknownAnnotation", "{note}");
    assert!(note.contains("ClbBackendConfig"), "{note}");
}
