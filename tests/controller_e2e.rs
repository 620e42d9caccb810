//! The whole product: the real `clb-ingress run` binary against the in-repo test API server and
//! the CLB emulator (with its data plane), driven by Kubernetes objects and checked with real
//! HTTP requests through the emulated CLB.

use clb_ingress::clb::types::DescribeLoadBalancersRequest;
use clb_test_support::cluster;

use cluster::*;
use k8s_openapi::api::networking::v1::Ingress;
use kube::Api;
use kube::api::DeleteParams;
use serde_json::Value;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ingress_is_served_within_two_seconds_with_its_address_state_and_event() {
    let e = env().await;
    let _ctl = e.controller("c1", &[]);
    e.class("PerIngress").await;
    e.service("web", &["10.1.0.1"]).await;
    // Give the controller its caches before timing the user's change.
    tokio::time::sleep(Duration::from_millis(500)).await;
    e.ingress("shop", "shop.example.com", &[("/", "Prefix", "web")])
        .await;
    let took = e
        .until_routed(
            "shop",
            "shop.example.com",
            "/cart",
            "10.1.0.1:8080",
            LIVE_WITHIN,
        )
        .await;
    eprintln!("create -> live in {took:?}");
    // Traffic flows as soon as the CLB has the rule; the status and annotation writes follow
    // the cloud calls, so wait for them (bounded) rather than racing them.
    let start = Instant::now();
    let ing = loop {
        let ing = e.get_ingress("shop").await.unwrap();
        let stated = ing
            .metadata
            .annotations
            .as_ref()
            .is_some_and(|a| a.contains_key("clb-ingress.io/sync-state"));
        let addressed = ing
            .status
            .as_ref()
            .and_then(|s| s.load_balancer.as_ref())
            .and_then(|l| l.ingress.as_ref())
            .is_some_and(|i| !i.is_empty());
        if stated && addressed {
            break ing;
        }
        assert!(
            start.elapsed() < LIVE_WITHIN,
            "no sync-state annotation and address within {LIVE_WITHIN:?} of going live: {:?}",
            ing.metadata.annotations
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        ing.metadata
            .finalizers
            .clone()
            .unwrap_or_default()
            .contains(&"clb-ingress.io/finalizer".to_string())
    );
    let state: Value = serde_json::from_str(
        ing.metadata.annotations.clone().unwrap()["clb-ingress.io/sync-state"].as_str(),
    )
    .unwrap();
    assert_eq!(state["synced"], true, "{state}");
    assert_eq!(state["observedGeneration"], 1, "{state}");
    assert!(state["loadBalancerId"].as_str().unwrap().starts_with("lb-"));
    let ports: Vec<i32> = ing.status.unwrap().load_balancer.unwrap().ingress.unwrap()[0]
        .ports
        .clone()
        .unwrap()
        .iter()
        .map(|p| p.port)
        .collect();
    assert_eq!(ports, vec![80]);
    let start = Instant::now();
    loop {
        let evs = e.events_for("shop").await;
        if evs.iter().any(|(t, r, _)| t == "Normal" && r == "Synced") {
            break;
        }
        assert!(start.elapsed() < LIVE_WITHIN, "no Synced event: {evs:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A host nobody declared is not routed to shop's backend.
    let vip = e.vip("shop").await.unwrap();
    assert_eq!(e.request(&vip, "other.example.com", "/").await.0, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_to_path_backend_host_and_endpoints_are_followed_by_traffic() {
    let e = env().await;
    let _ctl = e.controller("c1", &[]);
    e.class("PerIngress").await;
    e.service("web", &["10.1.0.1"]).await;
    e.service("api", &["10.2.0.1"]).await;
    e.ingress("shop", "shop.example.com", &[("/web", "Prefix", "web")])
        .await;
    e.until_routed("shop", "shop.example.com", "/web/x", "10.1.0.1:8080", SLOW)
        .await;
    let vip = e.vip("shop").await.unwrap();

    // Path edit: /web -> /site; the old path stops matching.
    e.ingress("shop", "shop.example.com", &[("/site", "Prefix", "web")])
        .await;
    e.until_routed(
        "shop",
        "shop.example.com",
        "/site",
        "10.1.0.1:8080",
        LIVE_WITHIN,
    )
    .await;
    e.until_status(&vip, "shop.example.com", "/web/x", 404, LIVE_WITHIN)
        .await;

    // Backend edit: traffic moves to api.
    e.ingress("shop", "shop.example.com", &[("/site", "Prefix", "api")])
        .await;
    e.until_routed(
        "shop",
        "shop.example.com",
        "/site",
        "10.2.0.1:8080",
        LIVE_WITHIN,
    )
    .await;

    // Host edit: the old host is no longer routed.
    e.ingress("shop", "store.example.com", &[("/site", "Prefix", "api")])
        .await;
    e.until_routed(
        "shop",
        "store.example.com",
        "/site",
        "10.2.0.1:8080",
        LIVE_WITHIN,
    )
    .await;
    // New rules go live before old ones are deleted (no gap), so wait for the old one to go.
    e.until_status(&vip, "shop.example.com", "/site", 404, LIVE_WITHIN)
        .await;

    // Endpoints: scale api from one pod to another; the targets follow.
    e.service("api", &["10.2.0.9"]).await;
    e.until_routed(
        "shop",
        "store.example.com",
        "/site",
        "10.2.0.9:8080",
        LIVE_WITHIN,
    )
    .await;
    for _ in 0..10 {
        assert_eq!(
            e.request(&vip, "store.example.com", "/site").await.1,
            "10.2.0.9:8080"
        );
    }
}

/// The controller learns which Services a stack uses when the stack's reconcile ends; an
/// EndpointSlice change that arrives while that first reconcile still runs (from a snapshot
/// without the endpoints) must requeue the stack at once, not wait for the resync (300 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_that_arrive_while_the_first_sync_of_their_ingress_runs_are_applied_at_once() {
    let e = env().await;
    // Every CLB task takes 1.5 s: the first sync (CLB, listener, rule) runs for seconds.
    e.emu.app.update_settings(|s| s.task_delay_ms = 1500);
    let _ctl = e.controller("c1", &[]);
    e.class("PerIngress").await;
    e.service("web", &[]).await;
    e.ingress("late", "late.example.com", &[("/", "Prefix", "web")])
        .await;
    // The CLB exists, so the first sync is under way and its listener and rule are still to
    // come: the pod becomes ready now.
    let start = Instant::now();
    while e
        .clb()
        .describe_load_balancers(&DescribeLoadBalancersRequest::default())
        .await
        .unwrap()
        .is_empty()
    {
        assert!(start.elapsed() < SLOW, "no CLB was created");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    e.service("web", &["10.1.0.7"]).await;
    e.until_routed(
        "late",
        "late.example.com",
        "/",
        "10.1.0.7:8080",
        Duration::from_secs(30),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_an_ingress_removes_its_clb_and_then_its_finalizer() {
    let e = env().await;
    let ctl = e.controller("c1", &[]);
    e.class("PerIngress").await;
    e.service("web", &["10.1.0.1"]).await;
    e.ingress("shop", "shop.example.com", &[("/", "Prefix", "web")])
        .await;
    e.until_routed("shop", "shop.example.com", "/", "10.1.0.1:8080", SLOW)
        .await;
    assert_eq!(e.lb_count().await, 1);
    Api::<Ingress>::namespaced(e.kube.clone(), "default")
        .delete("shop", &DeleteParams::default())
        .await
        .unwrap();
    let start = Instant::now();
    while e.get_ingress("shop").await.is_some() {
        assert!(
            start.elapsed() < SLOW,
            "finalizer never removed:\n{}",
            ctl.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        e.lb_count().await,
        0,
        "the CLB we created is deleted:\n{}",
        ctl.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_ingress_gets_a_warning_while_a_good_one_on_the_same_clb_keeps_serving() {
    let e = env().await;
    let _ctl = e.controller("c1", &[]);
    e.class("Shared").await;
    e.service("web", &["10.1.0.1"]).await;
    e.ingress("good", "good.example.com", &[("/", "Prefix", "web")])
        .await;
    e.until_routed("good", "good.example.com", "/", "10.1.0.1:8080", SLOW)
        .await;
    // A path CLB cannot express ('~') parks the bad Ingress only.
    e.ingress("bad", "bad.example.com", &[("/~user", "Prefix", "web")])
        .await;
    let start = Instant::now();
    loop {
        let evs = e.events_for("bad").await;
        if let Some((_, _, note)) = evs
            .iter()
            .find(|(t, r, _)| t == "Warning" && r == "InvalidPath")
        {
            assert!(note.contains("spec.rules[0].http.paths[0].path"), "{note}");
            break;
        }
        assert!(start.elapsed() < SLOW, "no Warning event: {evs:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let vip = e.vip("good").await.unwrap();
    assert_eq!(
        e.request(&vip, "good.example.com", "/").await,
        (200, "10.1.0.1:8080".to_string())
    );
    let bad = e.get_ingress("bad").await.unwrap();
    let state: Value = serde_json::from_str(
        bad.metadata.annotations.unwrap()["clb-ingress.io/sync-state"].as_str(),
    )
    .unwrap();
    assert_eq!(state["synced"], false);
    assert_eq!(state["reason"], "InvalidPath");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_two_replicas_only_the_leader_writes() {
    let e = env().await;
    let lease = ["--leader-elect", "--leader-election-namespace", "default"];
    let a = e.controller("replica-a", &lease);
    let b = e.controller("replica-b", &lease);
    e.class("PerIngress").await;
    e.service("web", &["10.1.0.1"]).await;
    e.ingress("shop", "shop.example.com", &[("/", "Prefix", "web")])
        .await;
    e.until_routed("shop", "shop.example.com", "/", "10.1.0.1:8080", SLOW)
        .await;
    let la = metric(&a.metrics, "clb_ingress_leader")
        .await
        .unwrap_or(-1.0);
    let lb = metric(&b.metrics, "clb_ingress_leader")
        .await
        .unwrap_or(-1.0);
    assert_eq!(la + lb, 1.0, "exactly one leader: a={la} b={lb}");
    let (leader, follower) = if la == 1.0 { (&a, &b) } else { (&b, &a) };
    assert!(
        leader.log().contains("outcome=\"applied\""),
        "{}",
        leader.log()
    );
    assert!(
        !follower.log().contains("outcome=\"applied\""),
        "the follower wrote:\n{}",
        follower.log()
    );
    let writes: BTreeSet<String> = e
        .api
        .audit()
        .iter()
        .filter(|a| a.verb != "get" && a.verb != "list" && a.verb != "watch")
        .map(|a| a.resource.clone())
        .collect();
    assert!(writes.contains("leases"), "{writes:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controller_killed_mid_sync_converges_after_restart() {
    let e = env().await;
    e.class("PerIngress").await;
    e.service("web", &["10.1.0.1"]).await;
    for i in 0..12 {
        e.ingress(
            &format!("ing{i}"),
            &format!("h{i}.example.com"),
            &[("/", "Prefix", "web")],
        )
        .await;
    }
    let mut first = e.controller("c1", &[]);
    tokio::time::sleep(Duration::from_millis(700)).await;
    first.kill();
    let _second = e.controller("c2", &[]);
    for i in 0..12 {
        e.until_routed(
            &format!("ing{i}"),
            &format!("h{i}.example.com"),
            "/",
            "10.1.0.1:8080",
            SLOW,
        )
        .await;
    }
    assert_eq!(e.lb_count().await, 12, "one CLB per Ingress, no duplicates");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_the_controller_at_once_even_while_a_cloud_task_is_stuck() {
    let e = env().await;
    let mut ctl = e.controller("c1", &[]);
    e.class("PerIngress").await;
    e.service("web", &["10.1.0.1"]).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Every async task of the CLB stays "running": the controller's CreateLoadBalancer waits.
    let admin = reqwest::Client::builder().no_proxy().build().unwrap();
    let paused = admin
        .post(format!("http://{}/_emulator/pause", e.emu.addr))
        .bearer_auth(e.emu.admin_token())
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .send()
        .await
        .unwrap();
    assert!(paused.status().is_success());
    e.ingress("shop", "shop.example.com", &[("/", "Prefix", "web")])
        .await;
    // A later change arrives while the first pass is stuck on the task.
    tokio::time::sleep(Duration::from_millis(500)).await;
    e.ingress("shop2", "shop2.example.com", &[("/", "Prefix", "web")])
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let log = ctl.log_path();
    let (exit, took) = sigterm_and_wait(&mut ctl.child, Duration::from_secs(5), || {
        std::fs::read_to_string(&log).unwrap_or_default()
    })
    .await;
    eprintln!("stopped {took:?} after SIGTERM with a stuck cloud task ({exit})");
    assert!(exit.success(), "{exit}\n{}", ctl.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_that_cannot_be_read_is_not_reported_missing_and_its_certificate_stays() {
    use serde_json::json;
    let e = env().await;
    let ctl = e.controller("c1", &[]);
    e.class("PerIngress").await;
    e.service("web", &["10.1.0.1"]).await;
    let cert = rcgen::generate_simple_self_signed(vec!["a.example.com".to_string()]).unwrap();
    let secret = |note: &str| {
        json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
            "metadata": {"name": "a-tls", "namespace": "default", "annotations": {"note": note}},
            "stringData": {"tls.crt": cert.cert.pem(), "tls.key": cert.signing_key.serialize_pem()}})
    };
    e.apply(secret("one")).await;
    e.apply(json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": "shop", "namespace": "default"},
        "spec": {"tls": [{"hosts": ["a.example.com"], "secretName": "a-tls"}],
                 "rules": [{"host": "a.example.com", "http": {"paths": [{"path": "/", "pathType": "Prefix",
                     "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}}]}}))
    .await;
    // Synced with its certificate first (the Secret may reach the controller's cache after the
    // Ingress: that early "not found" is not what this test is about).
    let sync_state = || async {
        let ing = e.get_ingress("shop").await?;
        let v: Value =
            serde_json::from_str(ing.metadata.annotations?.get("clb-ingress.io/sync-state")?)
                .ok()?;
        Some(v)
    };
    let start = Instant::now();
    loop {
        if let Some(s) = sync_state().await
            && s["synced"] == true
            && s.get("problems").is_none()
        {
            break;
        }
        assert!(start.elapsed() < SLOW, "never synced:\n{}", ctl.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let certs_before = e
        .clb()
        .describe_certificates(&Default::default())
        .await
        .unwrap()
        .len();
    // The API server now fails every read of the Secret, and the Secret changes (so the
    // controller must read it again).
    e.api.fail_gets("secrets", "default", "a-tls", true);
    e.apply(secret("two")).await;
    e.ingress("other", "b.example.com", &[("/", "Prefix", "web")])
        .await;
    e.until_routed("other", "b.example.com", "/", "10.1.0.1:8080", SLOW)
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let state = sync_state().await.expect("sync state");
    assert!(
        state["synced"] == true && state.get("problems").is_none(),
        "a read failure was taken for a missing Secret: {state}\n{}",
        ctl.log()
    );
    // HTTPS keeps its certificate (nothing new uploaded, nothing taken away): still served.
    let vip = e.vip("shop").await.unwrap();
    assert_eq!(e.request(&vip, "a.example.com", "/").await.0, 200);
    assert_eq!(
        e.clb()
            .describe_certificates(&Default::default())
            .await
            .unwrap()
            .len(),
        certs_before
    );
    e.api.fail_gets("secrets", "default", "a-tls", false);
}
