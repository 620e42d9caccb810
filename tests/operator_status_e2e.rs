//! What an operator sees, end to end (the real binary, the test API server, the emulator): a
//! Service created after its Ingress is served at once; an Ingress seen before its Service
//! gets no Warning when the Service follows; Events go only to Ingresses whose own part of a
//! shared CLB changed; the sync state's conditions say what is served; the problems gauge
//! follows every pass.

use clb_test_support::cluster;

use cluster::*;
use kube::Api;
use kube::api::{ApiResource, DynamicObject};
use serde_json::Value;
use std::time::{Duration, Instant};

/// The sync-state annotation of Ingress `name`, parsed.
async fn sync_state(e: &Env, name: &str) -> Option<Value> {
    let ing = e.get_ingress(name).await?;
    serde_json::from_str(ing.metadata.annotations?.get("clb-ingress.io/sync-state")?).ok()
}

/// The condition `type_` of a sync state.
fn condition(state: &Value, type_: &str) -> Value {
    state["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == type_))
        .cloned()
        .unwrap_or(Value::Null)
}

/// Wait until the sync state of `name` satisfies `ok`.
async fn until_state(e: &Env, ctl: &Controller, name: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let start = Instant::now();
    loop {
        if let Some(s) = sync_state(e, name).await
            && ok(&s)
        {
            return s;
        }
        assert!(
            start.elapsed() < SLOW,
            "sync state of {name} never matched: {:?}\n{}",
            sync_state(e, name).await,
            ctl.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `(reason, note, count)` of every Event about Ingress `name` (count: the series count when
/// the recorder folded repeats into one Event, else 1).
async fn events_with_counts(e: &Env, name: &str) -> Vec<(String, String, u64)> {
    let ar = ApiResource {
        group: "events.k8s.io".into(),
        version: "v1".into(),
        api_version: "events.k8s.io/v1".into(),
        kind: "Event".into(),
        plural: "events".into(),
    };
    let api: Api<DynamicObject> = Api::namespaced_with(e.kube.clone(), "default", &ar);
    api.list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|ev| ev.data["regarding"]["name"] == name)
        .map(|ev| {
            (
                ev.data["reason"].as_str().unwrap_or("").to_string(),
                ev.data["note"].as_str().unwrap_or("").to_string(),
                ev.data["series"]["count"].as_u64().unwrap_or(1),
            )
        })
        .collect()
}

fn synced_events(evs: &[(String, String, u64)]) -> u64 {
    evs.iter()
        .filter(|(r, _, _)| r == "Synced")
        .map(|(_, _, n)| n)
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_created_after_its_ingress_is_served_within_one_second() {
    let e = env().await;
    let ctl = e.controller("c1", &[]);
    e.class("PerIngress").await;
    e.ingress("late", "late.example.com", &[("/", "Prefix", "ghost")])
        .await;
    // Reconciled without its Service: the path answers 503, and the sync state says so.
    let state = until_state(&e, &ctl, "late", |s| s["loadBalancerId"].is_string()).await;
    assert_eq!(state["synced"], false, "{state}");
    let ready = condition(&state, "Ready");
    assert_eq!(ready["status"], "False", "{state}");
    assert_eq!(ready["reason"], "ServiceNotFound", "{state}");
    assert_eq!(ready["observedGeneration"], 1, "{state}");
    let degraded = condition(&state, "Degraded");
    assert_eq!(degraded["status"], "True", "{state}");
    assert_eq!(degraded["reason"], "ServiceNotFound", "{state}");
    let vip = {
        let start = Instant::now();
        loop {
            if let Some(v) = e.vip("late").await {
                break v;
            }
            assert!(start.elapsed() < SLOW, "no address\n{}", ctl.log());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    e.until_status(&vip, "late.example.com", "/", 503, SLOW)
        .await;

    // The Service arrives: traffic within a second (not at the next resync).
    let created = Instant::now();
    e.service("ghost", &["10.1.0.7"]).await;
    e.until_routed(
        "late",
        "late.example.com",
        "/",
        "10.1.0.7:8080",
        Duration::from_secs(1),
    )
    .await;
    eprintln!("Service created -> live in {:?}", created.elapsed());
    // One structured INFO line per reconcile that changed the CLB, naming its Ingresses.
    let log = ctl.log();
    let line = log
        .lines()
        .find(|l| l.contains(" INFO ") && l.contains("outcome=\"applied\""))
        .unwrap_or_else(|| panic!("no reconcile summary:\n{log}"));
    for field in [
        "ingresses=default/late",
        "changes=",
        "calls=",
        "duration_ms=",
        "stack",
    ] {
        assert!(line.contains(field), "{field} missing: {line}");
    }
    let state = until_state(&e, &ctl, "late", |s| s["synced"] == true).await;
    let ready = condition(&state, "Ready");
    assert_eq!(ready["status"], "True", "{state}");
    assert_eq!(ready["reason"], "Synced", "{state}");
    assert_eq!(condition(&state, "Degraded")["status"], "False", "{state}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ingress_seen_before_its_service_gets_no_warning_when_the_service_follows_at_once() {
    let e = env().await;
    let ctl = e.controller("c1", &[]);
    e.class("PerIngress").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    e.ingress("shop", "shop.example.com", &[("/", "Prefix", "web")])
        .await;
    // The controller sees the Ingress first and reconciles it without its Service.
    until_state(&e, &ctl, "shop", |s| s["loadBalancerId"].is_string()).await;
    e.service("web", &["10.1.0.1"]).await;
    e.until_routed("shop", "shop.example.com", "/", "10.1.0.1:8080", SLOW)
        .await;
    // Longer than the grace: a withheld Warning would have been published by now.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let warnings: Vec<_> = e
        .events_for("shop")
        .await
        .into_iter()
        .filter(|(t, _, _)| t == "Warning")
        .collect();
    assert!(warnings.is_empty(), "{warnings:?}\n{}", ctl.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_service_that_persists_gets_one_warning_after_the_grace() {
    let e = env().await;
    let ctl = e.controller("c1", &[]);
    e.class("PerIngress").await;
    e.ingress("shop", "shop.example.com", &[("/", "Prefix", "nowhere")])
        .await;
    let start = Instant::now();
    let warnings = loop {
        let w: Vec<_> = e
            .events_for("shop")
            .await
            .into_iter()
            .filter(|(t, r, _)| t == "Warning" && r == "ServiceNotFound")
            .collect();
        if !w.is_empty() {
            break w;
        }
        assert!(start.elapsed() < SLOW, "no Warning\n{}", ctl.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(warnings.len(), 1, "{warnings:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_go_only_to_the_ingresses_whose_own_part_of_a_shared_clb_changed() {
    let e = env().await;
    let ctl = e.controller("c1", &[]);
    e.class("Shared").await;
    e.service("web", &["10.1.0.1"]).await;
    e.service("api", &["10.1.0.2"]).await;
    e.ingress("a", "a.example.com", &[("/", "Prefix", "web")])
        .await;
    e.ingress("b", "b.example.com", &[("/", "Prefix", "web")])
        .await;
    e.until_routed("a", "a.example.com", "/", "10.1.0.1:8080", SLOW)
        .await;
    e.until_routed("b", "b.example.com", "/", "10.1.0.1:8080", SLOW)
        .await;
    until_state(&e, &ctl, "b", |s| s["synced"] == true).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let b_before = synced_events(&events_with_counts(&e, "b").await);
    let a_before = synced_events(&events_with_counts(&e, "a").await);
    let b_state = sync_state(&e, "b").await.unwrap();

    // Two changes to `a` only, each one applied to the shared CLB.
    e.ingress("a", "a.example.com", &[("/", "Prefix", "api")])
        .await;
    e.until_routed("a", "a.example.com", "/", "10.1.0.2:8080", SLOW)
        .await;
    e.ingress("a", "a.example.com", &[("/", "Prefix", "web")])
        .await;
    e.until_routed("a", "a.example.com", "/", "10.1.0.1:8080", SLOW)
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let a_after = synced_events(&events_with_counts(&e, "a").await);
    assert!(a_after > a_before, "a changed: {a_before} -> {a_after}");
    let b_evs = events_with_counts(&e, "b").await;
    assert_eq!(
        synced_events(&b_evs),
        b_before,
        "b did not change, yet: {b_evs:?}"
    );
    // Nor is b's sync state rewritten (its lastSyncTime stays).
    assert_eq!(sync_state(&e, "b").await.unwrap(), b_state);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_problems_gauge_follows_every_pass_not_only_the_resync() {
    let e = env().await;
    let ctl = e.controller("c1", &[]);
    e.class("PerIngress").await;
    e.ingress("bad", "bad.example.com", &[("/x", "Exact", "nowhere")])
        .await;
    let gauge = || {
        metric(
            &ctl.metrics,
            "clb_ingress_problems{reason=\"ServiceNotFound\"}",
        )
    };
    let start = Instant::now();
    while gauge().await != Some(1.0) {
        assert!(start.elapsed() < SLOW, "gauge never 1\n{}", ctl.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    e.service("nowhere", &["10.1.0.3"]).await;
    let start = Instant::now();
    while gauge().await != Some(0.0) {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "gauge still {:?} (the resync is minutes away)\n{}",
            gauge().await,
            ctl.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_crd_is_logged_once_with_the_fix_and_no_debug_dump() {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let e = env().await;
    Api::<CustomResourceDefinition>::all(e.kube.clone())
        .delete(
            "clbclassparameters.clb-ingress.io",
            &kube::api::DeleteParams::default(),
        )
        .await
        .expect("delete the CRD");
    let ctl = e.controller("c1", &[]);
    // Long enough for several retries of the watch (its backoff starts below a second).
    tokio::time::sleep(Duration::from_secs(4)).await;
    let log = ctl.log();
    assert_eq!(
        log.matches("CRD is not installed").count(),
        1,
        "logged once:\n{log}"
    );
    assert!(
        log.contains("clb-ingress crd | kubectl apply -f -"),
        "{log}"
    );
    assert!(
        !log.contains("ErrorResponse") && !log.contains("Status {"),
        "{log}"
    );
}
