//! Tenancy, end to end: the real `clb-ingress run` (and `apply`) against the test API server and
//! the CLB emulator with its data plane. Team B tries to reach what is team A's: its CLB (by
//! `existLbId`), its host, every host (a host-less rule, `defaultBackend`), its certificate; and
//! one Ingress tries to flood the API server with Events. Each attempt is refused with a Warning
//! on team B's Ingress only, and team A's traffic and CLB objects stay exactly as they were.

use clb_test_support::cluster::{self, Env, SLOW};
use clb_test_support::emulator::bin;
use k8s_openapi::api::networking::v1::Ingress;
use kube::Api;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const A_POD: &str = "10.1.0.1";
const B_POD: &str = "10.2.0.1";

async fn namespace_with_backend(e: &Env, ns: &str, pod: &str) {
    e.apply(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}))
        .await;
    e.apply(json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "web", "namespace": ns},
        "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}]}}))
        .await;
    e.apply(json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "web-1", "namespace": ns, "labels": {"kubernetes.io/service-name": "web"}},
        "addressType": "IPv4", "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": [{"addresses": [pod], "conditions": {"ready": true}}]}))
    .await;
}

fn path(p: &str) -> Value {
    json!({"path": p, "pathType": "Prefix",
        "backend": {"service": {"name": "web", "port": {"number": 80}}}})
}

async fn ingress(e: &Env, ns: &str, name: &str, annotations: Value, spec: Value) {
    e.apply(
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": name, "namespace": ns, "annotations": annotations},
        "spec": spec}),
    )
    .await;
}

async fn get(e: &Env, ns: &str, name: &str) -> Ingress {
    Api::<Ingress>::namespaced(e.kube.clone(), ns)
        .get(name)
        .await
        .unwrap()
}

async fn vip(e: &Env, ns: &str, name: &str) -> Option<String> {
    get(e, ns, name)
        .await
        .status?
        .load_balancer?
        .ingress?
        .first()?
        .ip
        .clone()
}

async fn sync_state(e: &Env, ns: &str, name: &str) -> Option<Value> {
    let anns = get(e, ns, name).await.metadata.annotations?;
    serde_json::from_str(anns.get("clb-ingress.io/sync-state")?).ok()
}

/// (type, reason, note) of the Events about Ingress `ns/name`.
async fn events(e: &Env, ns: &str, name: &str) -> Vec<(String, String, String)> {
    e.events_in(ns, name).await
}

async fn until<T, Fut: std::future::Future<Output = Option<T>>>(
    what: &str,
    mut f: impl FnMut() -> Fut,
) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(start.elapsed() < SLOW, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
}

async fn until_warning(e: &Env, ns: &str, name: &str, reason: &str) -> String {
    until(&format!("Warning {reason} on {ns}/{name}"), || async {
        events(e, ns, name)
            .await
            .into_iter()
            .find(|(t, r, _)| t == "Warning" && r == reason)
            .map(|(_, _, note)| note)
    })
    .await
}

/// The emulator's whole state (CLBs, listeners, rules, targets, certificates) as JSON.
async fn emulator_state(e: &Env) -> Value {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .get(format!("http://{}/_emulator/state", e.emu.addr))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// The emulator's state of the CLB with this id.
async fn clb_state(e: &Env, id: &str) -> Value {
    let state = emulator_state(e).await;
    state["state"]["lbs"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|lb| lb["id"] == id)
        .cloned()
        .unwrap_or_else(|| panic!("CLB {id} in the emulator state: {state}"))
}

/// Team A's Ingress `shop` (host a.example.com) served, and its CLB's id and VIP.
/// Warning Events of Ingress `ns/name` so far (team A may get one while it is set up, when a
/// watch cache sees its Ingress before its Service: an attack must add none).
async fn warnings(e: &Env, ns: &str, name: &str) -> usize {
    events(e, ns, name)
        .await
        .iter()
        .filter(|(t, _, _)| t == "Warning")
        .count()
}

async fn team_a(e: &Env) -> (String, String) {
    ingress(
        e,
        "team-a",
        "shop",
        json!({}),
        json!({"rules": [{"host": "a.example.com", "http": {"paths": [path("/")]}}]}),
    )
    .await;
    let vip = until("team A's address", || vip(e, "team-a", "shop")).await;
    let target = format!("{A_POD}:8080");
    until("team A routed", || async {
        (e.request(&vip, "a.example.com", "/").await == (200, target.clone())).then_some(())
    })
    .await;
    let lb = until("team A's CLB id", || async {
        sync_state(e, "team-a", "shop").await?["loadBalancerId"]
            .as_str()
            .map(str::to_string)
    })
    .await;
    (lb, vip)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ingress_cannot_adopt_another_teams_clb_and_learns_nothing_about_it() {
    let e = cluster::env().await;
    let _ctl = e.controller("c1", &[]);
    e.class("PerIngress").await;
    namespace_with_backend(&e, "team-a", A_POD).await;
    namespace_with_backend(&e, "team-b", B_POD).await;
    let (lb, a_vip) = team_a(&e).await;
    let before = clb_state(&e, &lb).await;
    // Warnings team A got while it was being set up (a watch cache can see the Ingress before
    // its Service): the attack must add none.
    let a_warnings_before = warnings(&e, "team-a", "shop").await;

    // Adoption is not allowed by the class: refused in the model.
    let attack = json!({"kubernetes.io/ingress.existLbId": lb,
        "ingress.cloud.tencent.com/listen-ports": "[{\"HTTP\": 8080}]"});
    ingress(
        &e,
        "team-b",
        "intruder",
        attack.clone(),
        json!({"rules": [{"host": "b.example.com", "http": {"paths": [path("/")]}}]}),
    )
    .await;
    let note = until_warning(&e, "team-b", "intruder", "AdoptionNotAllowed").await;
    assert!(
        note.contains("kubernetes.io/ingress.existLbId"),
        "the field is named: {note}"
    );
    assert!(
        !note.contains(&a_vip) && !note.contains("lbl-"),
        "nothing of team A's CLB is revealed: {note}"
    );
    let state = until("the intruder's sync state", || {
        sync_state(&e, "team-b", "intruder")
    })
    .await;
    assert_eq!(state["synced"], false, "{state}");
    assert_eq!(state["reason"], "AdoptionNotAllowed", "{state}");
    assert_eq!(vip(&e, "team-b", "intruder").await, None);

    // Allowed by the class, but the CLB was created by clb-ingress for another stack: deploy
    // refuses before any write.
    e.class_with(json!({"targetMode": "Direct", "sharing": "PerIngress",
        "tenancy": {"catchAll": {"namespaces": ["*"]}},
        "adoption": {"namespaces": ["team-b"], "loadBalancerIds": [lb]}}))
        .await;
    let note = until_warning(&e, "team-b", "intruder", "AdoptionRefused").await;
    assert!(!note.contains(&a_vip), "{note}");
    assert_eq!(vip(&e, "team-b", "intruder").await, None);

    // Team A: same CLB objects, same answers, no Warning.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(clb_state(&e, &lb).await, before, "team A's CLB changed");
    assert_eq!(
        e.request(&a_vip, "a.example.com", "/").await,
        (200, format!("{A_POD}:8080"))
    );
    assert_eq!(
        warnings(&e, "team-a", "shop").await,
        a_warnings_before,
        "team A got a Warning from the attack"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_shared_clb_hosts_belong_to_the_oldest_namespace_and_catch_all_needs_the_class() {
    let e = cluster::env().await;
    let _ctl = e.controller("c1", &[]);
    // A shared class with the default tenancy: no namespace may catch every host.
    e.class_with(json!({"targetMode": "Direct", "sharing": "Shared"}))
        .await;
    namespace_with_backend(&e, "team-a", A_POD).await;
    namespace_with_backend(&e, "team-b", B_POD).await;
    let (lb, vip) = team_a(&e).await;
    let before_rules: Vec<Value> = clb_state(&e, &lb).await["listeners"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let a_warnings_before = warnings(&e, "team-a", "shop").await;

    ingress(
        &e,
        "team-b",
        "intruder",
        json!({"ingress.cloud.tencent.com/auto-rewrite": "true"}),
        json!({
            "defaultBackend": {"service": {"name": "web", "port": {"number": 80}}},
            "rules": [
                {"host": "a.example.com", "http": {"paths": [path("/admin")]}},
                {"http": {"paths": [path("/")]}},
                {"host": "b.example.com", "http": {"paths": [path("/")]}},
            ]
        }),
    )
    .await;
    // Team B's own host serves.
    let b_target = format!("{B_POD}:8080");
    until("team B's own host routed", || async {
        (e.request(&vip, "b.example.com", "/").await == (200, b_target.clone())).then_some(())
    })
    .await;
    let note = until_warning(&e, "team-b", "intruder", "HostOwnedByOtherNamespace").await;
    assert!(note.contains("a.example.com"), "{note}");
    until_warning(&e, "team-b", "intruder", "CatchAllNotAllowed").await;

    // Team A's host, all of it, is still team A's; unknown hosts reach nobody.
    let a_target = format!("{A_POD}:8080");
    for p in ["/", "/admin", "/admin/x"] {
        assert_eq!(
            e.request(&vip, "a.example.com", p).await,
            (200, a_target.clone()),
            "a.example.com{p}"
        );
    }
    assert_eq!(e.request(&vip, "unknown.example.com", "/").await.0, 404);
    assert_eq!(
        warnings(&e, "team-a", "shop").await,
        a_warnings_before,
        "team A got a Warning from the intruder"
    );
    // The rules of team A's domain are the same objects as before (ids, urls, targets).
    let after = clb_state(&e, &lb).await;
    let a_rules = |listeners: &[Value]| -> Vec<Value> {
        listeners
            .iter()
            .flat_map(|l| l["rules"].as_array().cloned().unwrap_or_default())
            .filter(|r| {
                r["domains"]
                    .as_array()
                    .is_some_and(|d| d.iter().any(|d| d == "a.example.com"))
            })
            .collect()
    };
    assert_eq!(
        a_rules(after["listeners"].as_array().unwrap()),
        a_rules(&before_rules),
        "team A's rules changed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_bad_annotation_entries_make_at_most_three_warning_events() {
    let e = cluster::env().await;
    let _ctl = e.controller("c1", &[]);
    e.class("PerIngress").await;
    namespace_with_backend(&e, "team-b", B_POD).await;
    let groups: Vec<Value> = (0..2000)
        .map(|i| {
            json!({"key": {"proto": "HTTP", "host": format!("h{i}.example.com"), "path": "/"},
                "statefulSets": [{"name": "web", "weight": 20}]})
        })
        .collect();
    let weights = json!({"defaultWeight": 10, "groups": groups}).to_string();
    ingress(
        &e,
        "team-b",
        "flood",
        json!({"ingress.cloud.tencent.com/lb-rs-weight": weights}),
        json!({"rules": [{"host": "b.example.com", "http": {"paths": [path("/")]}}]}),
    )
    .await;
    let state = until("the sync state lists the problems", || async {
        let s = sync_state(&e, "team-b", "flood").await?;
        (s["problemCount"].as_u64()? >= 2000).then_some(s)
    })
    .await;
    assert!(
        state["problems"].as_array().unwrap().len() <= 50,
        "the listed problems are bounded"
    );
    until_warning(&e, "team-b", "flood", "MultipleProblems").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let warnings = events(&e, "team-b", "flood")
        .await
        .into_iter()
        .filter(|(t, _, _)| t == "Warning")
        .count();
    assert!(
        warnings <= 3,
        "{warnings} Warning Events for one Ingress in one pass"
    );
}

#[test]
fn apply_prune_needs_an_explicit_cluster_id() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("class.yaml"),
        "apiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata: {name: clb}\nspec: {controller: clb-ingress.io/ingress-controller}\n",
    )
    .unwrap();
    let out = std::process::Command::new(bin())
        .args(["apply", "--prune", "-f"])
        .arg(dir.path())
        .args(["--clb-endpoint", "http://127.0.0.1:9"])
        .env_remove("CLB_INGRESS_CLUSTER_ID")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--cluster-id"), "{err}");
}

/// Manifests of team A (namespace team-a, host a.example.com) and optionally team B's
/// intruder naming CLB `attack` by `existLbId`, for `apply`.
fn manifests(dir: &std::path::Path, attack: Option<&str>) -> std::path::PathBuf {
    let mut yaml = String::from(
        r#"
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: {name: clb, annotations: {ingressclass.kubernetes.io/is-default-class: "true"}}
spec:
  controller: clb-ingress.io/ingress-controller
  parameters: {apiGroup: clb-ingress.io, kind: ClbClassParameters, name: p}
---
apiVersion: clb-ingress.io/v1alpha1
kind: ClbClassParameters
metadata: {name: p}
spec: {targetMode: Direct}
"#,
    );
    for (ns, pod) in [("team-a", A_POD), ("team-b", B_POD)] {
        yaml += &format!(
            r#"---
apiVersion: v1
kind: Service
metadata: {{name: web, namespace: {ns}}}
spec: {{ports: [{{name: http, port: 80, targetPort: 8080}}]}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: web-1, namespace: {ns}, labels: {{kubernetes.io/service-name: web}}}}
addressType: IPv4
ports: [{{name: http, port: 8080}}]
endpoints: [{{addresses: ["{pod}"], conditions: {{ready: true}}}}]
"#
        );
    }
    yaml += r#"---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: shop, namespace: team-a}
spec:
  rules:
  - host: a.example.com
    http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}]}
"#;
    if let Some(lb) = attack {
        yaml += &format!(
            r#"---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: intruder
  namespace: team-b
  annotations:
    kubernetes.io/ingress.existLbId: {lb}
    ingress.cloud.tencent.com/listen-ports: '[{{"HTTP": 8080}}]'
spec:
  rules:
  - host: b.example.com
    http: {{paths: [{{path: /, pathType: Prefix, backend: {{service: {{name: web, port: {{number: 80}}}}}}}}]}}
"#
        );
    }
    let path = dir.join(if attack.is_some() {
        "attack.yaml"
    } else {
        "a.yaml"
    });
    std::fs::write(&path, yaml).unwrap();
    path
}

/// The emulator's CLBs (id -> whole state), from its admin endpoint.
fn clbs(emu: &clb_test_support::emulator::Emulator) -> Vec<Value> {
    emu.state()["lbs"].as_array().cloned().unwrap_or_default()
}

/// An emulator with team A applied by `apply --cluster-id one`: its manifests and the CLBs.
fn team_a_applied(
    dir: &std::path::Path,
) -> (
    clb_test_support::emulator::Emulator,
    std::path::PathBuf,
    Vec<Value>,
) {
    let emu = clb_test_support::emulator::Emulator::start(&[]);
    let a = manifests(dir, None);
    emu.apply(&[&a], &["--cluster-id", "one"])
        .expect_ok("team A");
    let before = clbs(&emu);
    assert_eq!(before.len(), 1, "{before:?}");
    (emu, a, before)
}

#[test]
fn apply_refuses_to_adopt_another_teams_clb_and_leaves_it_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let (emu, _, before) = team_a_applied(dir.path());
    let lb = before[0]["id"].as_str().unwrap().to_string();
    let attack = manifests(dir.path(), Some(&lb));
    let run = emu.apply(&[&attack], &["--cluster-id", "one"]);
    assert_eq!(
        run.code, 1,
        "a refused Ingress fails the run: {}",
        run.stderr
    );
    assert!(
        run.stderr.contains("Ingress team-b/intruder")
            && run.stderr.contains("kubernetes.io/ingress.existLbId")
            && run.stderr.contains("AdoptionNotAllowed"),
        "{}",
        run.stderr
    );
    assert_eq!(clbs(&emu), before, "team A's CLB changed");
}

#[test]
fn another_cluster_id_never_prunes_this_clusters_clbs() {
    let dir = tempfile::tempdir().unwrap();
    let (emu, a, before) = team_a_applied(dir.path());
    // Cluster two, with no Ingress at all, prunes what it created: nothing of cluster one's.
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let class_only: String = std::fs::read_to_string(&a)
        .unwrap()
        .split("---")
        .take(2)
        .collect::<Vec<_>>()
        .join("---");
    std::fs::write(empty.join("only-class.yaml"), class_only).unwrap();
    emu.apply(&[&empty], &["--prune", "--cluster-id", "two"])
        .expect_ok("cluster two prunes");
    assert_eq!(clbs(&emu), before, "cluster one's CLB was touched");
    // Cluster one itself, with the Ingress gone, does prune it.
    emu.apply(&[&empty], &["--prune", "--cluster-id", "one"])
        .expect_ok("cluster one prunes");
    assert!(clbs(&emu).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_named_only_by_other_controllers_ingresses_are_never_read() {
    let e = cluster::env().await;
    let _ctl = e.controller("c1", &[]);
    e.class("PerIngress").await;
    namespace_with_backend(&e, "team-b", B_POD).await;
    for name in ["ours", "theirs"] {
        e.apply(json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": name, "namespace": "team-b"}, "type": "Opaque",
            "data": {"qcloud_cert_id": "Y2VydC1hYWFh", "password": "aHVudGVyMg=="}}))
            .await;
    }
    // Another controller's class, and an Ingress of it naming the Secret `theirs`.
    e.apply(
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
        "metadata": {"name": "nginx"}, "spec": {"controller": "k8s.io/ingress-nginx"}}),
    )
    .await;
    e.api.clear_audit();
    for (name, class, secret) in [("other", "nginx", "theirs"), ("mine", "clb", "ours")] {
        ingress(
            &e,
            "team-b",
            name,
            json!({}),
            json!({"ingressClassName": class,
                "tls": [{"hosts": [format!("{name}.example.com")], "secretName": secret}],
                "rules": [{"host": format!("{name}.example.com"), "http": {"paths": [path("/")]}}]}),
        )
        .await;
    }
    // Its sync state is written after the pass that read its Secret (the certificate id is
    // not in the emulator's account, so it need not sync).
    until("our Ingress reconciled", || {
        sync_state(&e, "team-b", "mine")
    })
    .await;
    let secret_gets: Vec<String> = e
        .api
        .audit()
        .into_iter()
        .filter(|a| a.resource == "secrets" && a.verb == "get")
        .map(|a| a.name)
        .collect();
    assert!(
        secret_gets.iter().any(|n| n == "ours"),
        "our Secret is read: {secret_gets:?}"
    );
    assert!(
        !secret_gets.iter().any(|n| n == "theirs"),
        "another controller's Secret was read: {secret_gets:?}"
    );
}
