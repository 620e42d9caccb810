//! The in-repo test API server against its two clients: kube-rs (typed `Api`, patches, status,
//! finalizers, watcher) and the installed kubectl (apply, get, describe, delete).

use clb_ingress::testapi::{self, Running};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Event as CoreEvent, Service};
use k8s_openapi::api::events::v1::Event as EventV1;
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, DynamicObject, GroupVersionKind};
use kube::runtime::watcher;
use serde_json::{Value, json};
use std::time::Duration;

async fn server() -> Running {
    testapi::start("127.0.0.1:0".parse().unwrap())
        .await
        .expect("start the test API server")
}

fn ingress(name: &str) -> Ingress {
    serde_json::from_value(json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": name, "namespace": "default", "labels": {"team": "shop"}},
        "spec": {"rules": [{"host": "shop.example.com", "http": {"paths": [
            {"path": "/", "pathType": "Prefix",
             "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}}]},
    }))
    .unwrap()
}

fn status_code(err: &kube::Error) -> Option<u16> {
    match err {
        kube::Error::Api(s) => Some(s.code),
        _ => None,
    }
}

#[tokio::test]
async fn an_ingress_goes_through_create_get_list_patch_apply_status_and_finalized_delete() {
    let srv = server().await;
    let api: Api<Ingress> = Api::namespaced(srv.client().unwrap(), "default");

    let created = api
        .create(&PostParams::default(), &ingress("shop"))
        .await
        .unwrap();
    let meta = &created.metadata;
    assert!(meta.uid.as_deref().is_some_and(|u| !u.is_empty()));
    assert!(meta.creation_timestamp.is_some());
    assert_eq!(meta.generation, Some(1));
    let err = api
        .create(&PostParams::default(), &ingress("shop"))
        .await
        .unwrap_err();
    assert_eq!(status_code(&err), Some(409), "AlreadyExists: {err}");

    let got = api.get("shop").await.unwrap();
    assert_eq!(
        got.metadata.resource_version,
        created.metadata.resource_version
    );
    let listed = api.list(&ListParams::default()).await.unwrap();
    assert_eq!(listed.items.len(), 1);
    assert!(listed.metadata.resource_version.is_some());

    // Merge patch on metadata does not bump the generation.
    let patched = api
        .patch(
            "shop",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"tier": "edge"}}})),
        )
        .await
        .unwrap();
    assert_eq!(patched.metadata.labels.as_ref().unwrap()["tier"], "edge");
    assert_eq!(patched.metadata.generation, Some(1));

    // Server-side apply changes the spec: generation bumps.
    let applied = api
        .patch(
            "shop",
            &PatchParams::apply("test-manager").force(),
            &Patch::Apply(json!({
                "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
                "metadata": {"name": "shop"},
                "spec": {"ingressClassName": "clb"},
            })),
        )
        .await
        .unwrap();
    assert_eq!(
        applied.spec.as_ref().unwrap().ingress_class_name.as_deref(),
        Some("clb")
    );
    assert_eq!(applied.metadata.generation, Some(2));
    assert_eq!(
        applied.spec.as_ref().unwrap().rules.as_ref().unwrap().len(),
        1
    );

    // Status goes through the subresource only.
    let mut with_status = applied.clone();
    with_status.status = serde_json::from_value(
        json!({"loadBalancer": {"ingress": [{"ip": "127.0.0.2", "ports": [{"port": 80, "protocol": "TCP"}]}]}}),
    )
    .unwrap();
    let replaced = api
        .replace_status("shop", &PostParams::default(), &with_status)
        .await
        .unwrap();
    let ip = |i: &Ingress| {
        i.status
            .as_ref()
            .and_then(|s| s.load_balancer.as_ref())
            .and_then(|l| l.ingress.as_ref())
            .and_then(|v| v.first())
            .and_then(|x| x.ip.clone())
    };
    assert_eq!(ip(&replaced).as_deref(), Some("127.0.0.2"));
    assert_eq!(
        replaced.metadata.generation,
        Some(2),
        "status writes keep the generation"
    );
    let status_patched = api
        .patch_status(
            "shop",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"ingressClassName": "ignored"},
                "status": {"loadBalancer": {"ingress": [{"ip": "127.0.0.3"}]}}})),
        )
        .await
        .unwrap();
    assert_eq!(ip(&status_patched).as_deref(), Some("127.0.0.3"));
    assert_eq!(
        status_patched
            .spec
            .as_ref()
            .unwrap()
            .ingress_class_name
            .as_deref(),
        Some("clb"),
        "a /status write ignores the spec"
    );
    let mut stale_status = status_patched.clone();
    stale_status.status = None;
    stale_status.metadata.resource_version = None;
    let after_main_write = api
        .replace("shop", &PostParams::default(), &stale_status)
        .await
        .unwrap();
    assert_eq!(
        ip(&after_main_write).as_deref(),
        Some("127.0.0.3"),
        "main writes keep the status"
    );

    // Delete with a finalizer: marked, kept, then gone once the finalizer is removed.
    api.patch(
        "shop",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": ["clb-ingress.io/cleanup"]}})),
    )
    .await
    .unwrap();
    let deleted = api.delete("shop", &DeleteParams::default()).await.unwrap();
    let marked = deleted
        .left()
        .expect("the object comes back while a finalizer holds it");
    assert!(marked.metadata.deletion_timestamp.is_some());
    assert!(
        api.get("shop")
            .await
            .unwrap()
            .metadata
            .deletion_timestamp
            .is_some()
    );
    let err = api
        .patch(
            "shop",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": ["clb-ingress.io/cleanup", "new"]}})),
        )
        .await
        .unwrap_err();
    assert_eq!(
        status_code(&err),
        Some(422),
        "no new finalizers while deleting: {err}"
    );
    api.patch(
        "shop",
        &PatchParams::default(),
        &Patch::Json::<()>(
            serde_json::from_value(json!([{"op": "remove", "path": "/metadata/finalizers"}]))
                .unwrap(),
        ),
    )
    .await
    .unwrap();
    let err = api.get("shop").await.unwrap_err();
    assert_eq!(status_code(&err), Some(404), "{err}");
    srv.stop().await;
}

#[tokio::test]
async fn a_kube_runtime_watcher_sees_added_modified_and_deleted() {
    let srv = server().await;
    let api: Api<Ingress> = Api::namespaced(srv.client().unwrap(), "default");
    let mut stream = watcher(api.clone(), watcher::Config::default().labels("team=shop")).boxed();
    // Initial listing of an empty collection.
    let mut seen = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(5), stream.next()).await {
            Ok(Some(Ok(watcher::Event::InitDone))) => break,
            Ok(Some(Ok(_))) => {}
            other => panic!("unexpected during the initial list: {other:?}"),
        }
    }
    api.create(&PostParams::default(), &ingress("a"))
        .await
        .unwrap();
    api.patch(
        "a",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"ingressClassName": "clb"}})),
    )
    .await
    .unwrap();
    api.delete("a", &DeleteParams::default()).await.unwrap();
    while seen.len() < 3 {
        match tokio::time::timeout(Duration::from_secs(5), stream.next()).await {
            Ok(Some(Ok(watcher::Event::Apply(i)))) => seen.push(format!(
                "apply {} class={}",
                i.metadata.name.unwrap_or_default(),
                i.spec
                    .and_then(|s| s.ingress_class_name)
                    .unwrap_or_default()
            )),
            Ok(Some(Ok(watcher::Event::Delete(i)))) => {
                seen.push(format!("delete {}", i.metadata.name.unwrap_or_default()))
            }
            Ok(Some(Ok(other))) => panic!("unexpected event {other:?}"),
            other => panic!("watch ended or failed: {other:?}; seen {seen:?}"),
        }
    }
    assert_eq!(seen, ["apply a class=", "apply a class=clb", "delete a"]);
    srv.stop().await;
}

#[tokio::test]
async fn a_watch_from_a_resource_version_gets_only_later_changes_and_bookmarks() {
    let srv = server().await;
    let api: Api<Ingress> = Api::namespaced(srv.client().unwrap(), "default");
    api.create(&PostParams::default(), &ingress("before"))
        .await
        .unwrap();
    let rv = srv.resource_version();
    api.create(&PostParams::default(), &ingress("after"))
        .await
        .unwrap();
    let url = format!(
        "{}/apis/networking.k8s.io/v1/namespaces/default/ingresses?watch=true&resourceVersion={rv}&timeoutSeconds=1",
        srv.url()
    );
    let body = reqwest::get(&url).await.unwrap().text().await.unwrap();
    let events: Vec<Value> = body
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events.len(), 1, "{body}");
    assert_eq!(events[0]["type"], "ADDED");
    assert_eq!(events[0]["object"]["metadata"]["name"], "after");

    let url = format!(
        "{}/apis/networking.k8s.io/v1/ingresses?watch=1&timeoutSeconds=1",
        srv.url()
    );
    let body = reqwest::get(&url).await.unwrap().text().await.unwrap();
    assert_eq!(
        body.lines().count(),
        2,
        "no resourceVersion: current objects as ADDED\n{body}"
    );

    let url = format!(
        "{}/apis/networking.k8s.io/v1/ingresses?watch=1&sendInitialEvents=true&allowWatchBookmarks=true&resourceVersionMatch=NotOlderThan&timeoutSeconds=1",
        srv.url()
    );
    let body = reqwest::get(&url).await.unwrap().text().await.unwrap();
    let last: Value = serde_json::from_str(body.lines().last().unwrap()).unwrap();
    assert_eq!(last["type"], "BOOKMARK");
    assert_eq!(
        last["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"],
        "true"
    );
    srv.stop().await;
}

#[tokio::test]
async fn a_replace_with_a_stale_resource_version_is_a_409_conflict() {
    let srv = server().await;
    let api: Api<Ingress> = Api::namespaced(srv.client().unwrap(), "default");
    let first = api
        .create(&PostParams::default(), &ingress("shop"))
        .await
        .unwrap();
    let mut one = first.clone();
    one.spec.as_mut().unwrap().ingress_class_name = Some("one".into());
    api.replace("shop", &PostParams::default(), &one)
        .await
        .unwrap();
    let mut two = first.clone();
    two.spec.as_mut().unwrap().ingress_class_name = Some("two".into());
    let err = api
        .replace("shop", &PostParams::default(), &two)
        .await
        .unwrap_err();
    assert_eq!(status_code(&err), Some(409), "{err}");
    let kube::Error::Api(status) = err else {
        unreachable!()
    };
    assert_eq!(status.reason, "Conflict");
    let now = api.get("shop").await.unwrap();
    assert_eq!(now.spec.unwrap().ingress_class_name.as_deref(), Some("one"));
    srv.stop().await;
}

#[tokio::test]
async fn label_and_field_selectors_pick_the_matching_services() {
    let srv = server().await;
    let api: Api<Service> = Api::namespaced(srv.client().unwrap(), "default");
    for (name, labels) in [
        ("web", json!({"app": "web", "tier": "fe"})),
        ("api", json!({"app": "api", "tier": "be"})),
        ("db", json!({"app": "db"})),
    ] {
        let svc: Service = serde_json::from_value(json!({
            "metadata": {"name": name, "labels": labels},
            "spec": {"ports": [{"port": 80}]},
        }))
        .unwrap();
        api.create(&PostParams::default(), &svc).await.unwrap();
    }
    let names = |sel: &'static str| {
        let api = api.clone();
        async move {
            let mut n: Vec<String> = api
                .list(&ListParams::default().labels(sel))
                .await
                .unwrap()
                .items
                .into_iter()
                .map(|s| s.metadata.name.unwrap())
                .collect();
            n.sort();
            n
        }
    };
    assert_eq!(names("app=web").await, ["web"]);
    assert_eq!(names("app!=web").await, ["api", "db"]);
    assert_eq!(names("app in (web,api)").await, ["api", "web"]);
    assert_eq!(names("app notin (web,api)").await, ["db"]);
    assert_eq!(names("tier").await, ["api", "web"]);
    assert_eq!(names("!tier").await, ["db"]);
    assert_eq!(names("tier,app=api").await, ["api"]);
    let by_name = api
        .list(&ListParams::default().fields("metadata.name=db"))
        .await
        .unwrap();
    assert_eq!(by_name.items.len(), 1);
    let err = api
        .list(&ListParams::default().labels("app in web"))
        .await
        .unwrap_err();
    assert_eq!(status_code(&err), Some(400), "{err}");
    let db = api.get("db").await.unwrap();
    assert!(
        db.spec.unwrap().cluster_ip.is_some(),
        "services get a cluster IP"
    );
    srv.stop().await;
}

#[tokio::test]
async fn server_side_apply_creates_then_drops_fields_the_manager_stopped_applying() {
    let srv = server().await;
    let api: Api<Ingress> = Api::namespaced(srv.client().unwrap(), "default");
    let pp = PatchParams::apply("ctl").force();
    let apply = |labels: Value| {
        Patch::Apply(json!({
            "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": {"name": "ssa", "labels": labels},
            "spec": {"defaultBackend": {"service": {"name": "web", "port": {"number": 80}}}},
        }))
    };
    let created = api
        .patch("ssa", &pp, &apply(json!({"a": "1", "b": "2"})))
        .await
        .unwrap();
    assert_eq!(created.metadata.labels.as_ref().unwrap().len(), 2);
    api.patch(
        "ssa",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"other": "x"}}})),
    )
    .await
    .unwrap();
    let again = api
        .patch("ssa", &pp, &apply(json!({"a": "3"})))
        .await
        .unwrap();
    let labels = again.metadata.labels.unwrap();
    assert_eq!(labels.get("a").map(String::as_str), Some("3"));
    assert!(!labels.contains_key("b"), "b is no longer applied by ctl");
    assert_eq!(
        labels.get("other").map(String::as_str),
        Some("x"),
        "other managers' fields stay"
    );
    let err = api
        .patch("ssa", &PatchParams::default(), &apply(json!({})))
        .await
        .unwrap_err();
    assert_eq!(
        status_code(&err),
        Some(400),
        "apply needs a fieldManager: {err}"
    );
    srv.stop().await;
}

#[tokio::test]
async fn events_written_as_events_k8s_io_are_found_as_core_events_by_involved_object() {
    let srv = server().await;
    let client = srv.client().unwrap();
    let v1: Api<EventV1> = Api::namespaced(client.clone(), "default");
    let ev: EventV1 = serde_json::from_value(json!({
        "metadata": {"name": "shop.1"},
        "eventTime": "2025-01-01T00:00:00.000000Z",
        "reportingController": "clb-ingress.io/ingress-controller",
        "reportingInstance": "clb-ingress-0",
        "action": "Sync", "reason": "Synced", "type": "Normal", "note": "rules in sync",
        "regarding": {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "namespace": "default", "name": "shop", "uid": "u-1"},
    }))
    .unwrap();
    v1.create(&PostParams::default(), &ev).await.unwrap();
    v1.patch(
        "shop.1",
        &PatchParams::default(),
        &Patch::Merge(
            json!({"series": {"count": 2, "lastObservedTime": "2025-01-01T00:00:01.000000Z"}}),
        ),
    )
    .await
    .unwrap();
    let core: Api<CoreEvent> = Api::namespaced(client, "default");
    let found = core
        .list(&ListParams::default().fields(
            "involvedObject.name=shop,involvedObject.namespace=default,involvedObject.kind=Ingress,involvedObject.uid=u-1",
        ))
        .await
        .unwrap();
    assert_eq!(found.items.len(), 1);
    let e = &found.items[0];
    assert_eq!(e.message.as_deref(), Some("rules in sync"));
    assert_eq!(
        e.reporting_component.as_deref(),
        Some("clb-ingress.io/ingress-controller")
    );
    assert_eq!(e.series.as_ref().map(|s| s.count), Some(Some(2)));
    let none = core
        .list(&ListParams::default().fields("involvedObject.name=other"))
        .await
        .unwrap();
    assert!(none.items.is_empty());
    srv.stop().await;
}

#[tokio::test]
async fn custom_resources_of_a_registered_crd_are_served_with_their_status_subresource() {
    let srv = server().await;
    let client = srv.client().unwrap();
    let crds: Api<DynamicObject> = Api::all_with(
        client.clone(),
        &ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("apiextensions.k8s.io", "v1", "CustomResourceDefinition"),
            "customresourcedefinitions",
        ),
    );
    let crd: DynamicObject = serde_json::from_value(widget_crd()).unwrap();
    crds.create(&PostParams::default(), &crd).await.unwrap();
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("example.com", "v1", "Widget"),
        "widgets",
    );
    let widgets: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
    let w: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "example.com/v1", "kind": "Widget",
        "metadata": {"name": "w1"}, "spec": {"size": 1}, "status": {"ready": true},
    }))
    .unwrap();
    let created = widgets.create(&PostParams::default(), &w).await.unwrap();
    assert!(
        created.data.get("status").is_none(),
        "status is dropped on create"
    );
    let with_status = widgets
        .patch_status(
            "w1",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"ready": true}})),
        )
        .await
        .unwrap();
    assert_eq!(with_status.data["status"]["ready"], true);
    assert_eq!(with_status.metadata.generation, Some(1));
    let err = widgets
        .patch(
            "w1",
            &PatchParams::default(),
            &Patch::Strategic(json!({"spec": {"size": 2}})),
        )
        .await
        .unwrap_err();
    assert_eq!(
        status_code(&err),
        Some(415),
        "no strategic merge on custom resources: {err}"
    );

    // Deleting the CRD deletes its objects and stops serving the kind.
    crds.delete("widgets.example.com", &DeleteParams::default())
        .await
        .unwrap();
    let err = widgets.get("w1").await.unwrap_err();
    assert_eq!(status_code(&err), Some(404), "{err}");
    srv.stop().await;
}

fn widget_crd() -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": "example.com",
            "scope": "Cluster",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": {"type": "object",
                    "x-kubernetes-preserve-unknown-fields": true}}}],
        },
    })
}

#[tokio::test]
async fn the_audit_log_records_verb_group_resource_subresource_and_namespace() {
    let srv = server().await;
    let api: Api<Ingress> = Api::namespaced(srv.client().unwrap(), "default");
    srv.clear_audit();
    api.create(&PostParams::default(), &ingress("shop"))
        .await
        .unwrap();
    api.patch_status(
        "shop",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"loadBalancer": {}}})),
    )
    .await
    .unwrap();
    let _ = api.get("missing").await;
    let log = srv.audit();
    let brief: Vec<(String, String, String, String, String, u16)> = log
        .iter()
        .map(|e| {
            (
                e.verb.clone(),
                e.group.clone(),
                e.resource.clone(),
                e.subresource.clone(),
                e.namespace.clone(),
                e.code,
            )
        })
        .collect();
    let row = |v: &str, sub: &str, code: u16| {
        (
            v.to_string(),
            "networking.k8s.io".to_string(),
            "ingresses".to_string(),
            sub.to_string(),
            "default".to_string(),
            code,
        )
    };
    assert_eq!(
        brief,
        [
            row("create", "", 201),
            row("patch", "status", 200),
            row("get", "", 404)
        ]
    );
    let over_http: Vec<testapi::AuditEntry> = reqwest::get(format!("{}/_testapi/audit", srv.url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(&over_http[..3], &log[..]);
    srv.stop().await;
}

/// kubectl end to end, with its discovery and HTTP caches in a temporary directory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_applies_gets_describes_and_deletes_the_examples() {
    if std::process::Command::new("kubectl")
        .args(["version", "--client"])
        .output()
        .is_err()
    {
        eprintln!("kubectl is not installed: skipping");
        return;
    }
    let srv = server().await;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, srv.kubeconfig_yaml()).unwrap();
    let crd_file = dir.path().join("crd.json");
    std::fs::write(
        &crd_file,
        serde_json::to_vec_pretty(&class_parameters_crd()).unwrap(),
    )
    .unwrap();
    let examples = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/");
    let kubectl = |args: Vec<String>| {
        let kubeconfig = kubeconfig.clone();
        let cache = dir.path().join("cache");
        async move {
            let out = tokio::process::Command::new("kubectl")
                .arg("--kubeconfig")
                .arg(&kubeconfig)
                .arg("--cache-dir")
                .arg(&cache)
                .args(&args)
                .output()
                .await
                .expect("run kubectl");
            let stdout = String::from_utf8_lossy(&out.stdout).to_string();
            let stderr = String::from_utf8_lossy(&out.stderr).to_string();
            assert!(
                out.status.success(),
                "kubectl {args:?} failed:\n{stdout}\n{stderr}"
            );
            stdout
        }
    };
    let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let crd_path = crd_file.to_string_lossy().to_string();

    let out = kubectl(args(&["apply", "-f", &crd_path])).await;
    assert!(
        out.contains("clbclassparameters.clb-ingress.io created"),
        "{out}"
    );
    let out = kubectl(args(&["apply", "-f", examples])).await;
    for line in [
        "ingressclass.networking.k8s.io/clb created",
        "clbclassparameters.clb-ingress.io/clb-default created",
        "service/web created",
        "endpointslice.discovery.k8s.io/web-abc12 created",
        "ingress.networking.k8s.io/shop created",
        "ingress.networking.k8s.io/tenants created",
        "secret/shop-tls created",
    ] {
        assert!(out.contains(line), "missing {line:?} in:\n{out}");
    }
    let out = kubectl(args(&["apply", "-f", examples])).await;
    assert!(
        out.contains("ingress.networking.k8s.io/shop unchanged"),
        "{out}"
    );

    let out = kubectl(args(&["get", "ingress", "-A"])).await;
    let header = out.lines().next().unwrap_or_default();
    for col in [
        "NAMESPACE",
        "NAME",
        "CLASS",
        "HOSTS",
        "ADDRESS",
        "PORTS",
        "AGE",
    ] {
        assert!(header.contains(col), "column {col} in {out}");
    }
    assert!(
        out.lines().any(|l| l.starts_with("default")
            && l.contains("shop")
            && l.contains("clb")
            && l.contains("shop.example.com")
            && l.contains("80, 443")),
        "{out}"
    );
    assert!(out.contains("*.tenants.example.com"), "{out}");

    let out = kubectl(args(&["get", "clbparams"])).await;
    assert!(
        out.contains("clb-default") && out.contains("Direct") && out.contains("Shared"),
        "{out}"
    );

    let out = kubectl(args(&["describe", "ingress", "shop"])).await;
    for want in [
        "Name:",
        "shop",
        "Ingress Class:",
        "clb",
        "shop-tls terminates shop.example.com",
        "/api",
        "10.0.2.20:3000",
    ] {
        assert!(out.contains(want), "missing {want:?} in describe:\n{out}");
    }

    let out = kubectl(args(&["delete", "-f", examples])).await;
    assert!(
        out.contains("ingress.networking.k8s.io \"shop\" deleted"),
        "{out}"
    );
    assert!(out.contains("secret \"shop-tls\" deleted"), "{out}");
    let out = kubectl(args(&["get", "ingress", "-A", "-o", "name"])).await;
    assert!(out.trim().is_empty(), "{out}");
    kubectl(args(&["delete", "-f", &crd_path])).await;
    srv.stop().await;
}

/// A minimal CRD for the class parameters (the project's generated one lives in `crds/`).
fn class_parameters_crd() -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "clbclassparameters.clb-ingress.io"},
        "spec": {
            "group": "clb-ingress.io",
            "scope": "Cluster",
            "names": {"plural": "clbclassparameters", "singular": "clbclassparameters",
                "kind": "ClbClassParameters", "shortNames": ["clbparams"]},
            "versions": [{"name": "v1alpha1", "served": true, "storage": true,
                "subresources": {"status": {}},
                "additionalPrinterColumns": [
                    {"name": "Mode", "type": "string", "jsonPath": ".spec.targetMode"},
                    {"name": "Sharing", "type": "string", "jsonPath": ".spec.sharing"},
                    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}],
                "schema": {"openAPIV3Schema": {"type": "object",
                    "x-kubernetes-preserve-unknown-fields": true}}}],
        },
    })
}

#[tokio::test]
async fn a_watch_from_a_compacted_resource_version_gets_a_410_expired_error_event() {
    let srv = testapi::start_with(
        "127.0.0.1:0".parse().unwrap(),
        testapi::Options { history: 2 },
    )
    .await
    .unwrap();
    let api: Api<Ingress> = Api::namespaced(srv.client().unwrap(), "default");
    let rv = srv.resource_version();
    for name in ["a", "b", "c"] {
        api.create(&PostParams::default(), &ingress(name))
            .await
            .unwrap();
    }
    let url = format!(
        "{}/apis/networking.k8s.io/v1/ingresses?watch=true&resourceVersion={rv}&timeoutSeconds=1",
        srv.url()
    );
    let resp = reqwest::get(&url).await.unwrap();
    assert_eq!(
        resp.status(),
        200,
        "like the real server, the error comes in the stream"
    );
    let body = resp.text().await.unwrap();
    let ev: Value = serde_json::from_str(body.lines().next().unwrap()).unwrap();
    assert_eq!(ev["type"], "ERROR");
    assert_eq!(ev["object"]["code"], 410);
    assert_eq!(ev["object"]["reason"], "Expired");
    let recent = srv.resource_version() - 1;
    let url = format!(
        "{}/apis/networking.k8s.io/v1/ingresses?watch=true&resourceVersion={recent}&timeoutSeconds=1",
        srv.url()
    );
    let body = reqwest::get(&url).await.unwrap().text().await.unwrap();
    assert!(body.contains("\"ADDED\""), "{body}");
    srv.stop().await;
}

#[tokio::test]
async fn server_side_apply_reports_conflicts_on_fields_another_manager_owns() {
    let srv = server().await;
    let api: Api<k8s_openapi::api::coordination::v1::Lease> =
        Api::namespaced(srv.client().unwrap(), "default");
    let holder = |who: &str| {
        Patch::Apply(json!({
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": "leader"},
            "spec": {"holderIdentity": who, "leaseDurationSeconds": 15},
        }))
    };
    api.patch("leader", &PatchParams::apply("mgr-a"), &holder("a"))
        .await
        .unwrap();
    // Another manager changing a field mgr-a owns: conflict.
    let err = api
        .patch("leader", &PatchParams::apply("mgr-b"), &holder("b"))
        .await
        .unwrap_err();
    assert_eq!(status_code(&err), Some(409), "{err}");
    assert!(err.to_string().contains(".spec.holderIdentity"), "{err}");
    // A non-apply write that removes the field releases it; then b may apply.
    api.patch(
        "leader",
        &PatchParams::default(),
        &Patch::Strategic(json!({"spec": {"holderIdentity": null}})),
    )
    .await
    .unwrap();
    api.patch("leader", &PatchParams::apply("mgr-b"), &holder("b"))
        .await
        .unwrap();
    let forced = api
        .patch("leader", &PatchParams::apply("mgr-a").force(), &holder("a"))
        .await
        .unwrap();
    assert_eq!(forced.spec.unwrap().holder_identity.as_deref(), Some("a"));
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_electors_elect_one_leader_and_the_other_takes_over_when_it_stops() {
    use clb_ingress::controller::lease::{Elector, Fence, Timing};
    use std::sync::Arc;
    let srv = server().await;
    let client = srv.client().unwrap();
    let elector = |id: &str| {
        let fence = Arc::new(Fence::default());
        let e = Elector::new(
            client.clone(),
            "default",
            "clb-ingress-leader",
            id,
            Timing::new(2, 1),
            fence.clone(),
        );
        let (rx, task) = e.spawn();
        (rx, task, fence)
    };
    let (rx_a, task_a, fence_a) = elector("a");
    let (rx_b, task_b, fence_b) = elector("b");
    let leaders = |a: &tokio::sync::watch::Receiver<bool>,
                   b: &tokio::sync::watch::Receiver<bool>| {
        (*a.borrow(), *b.borrow())
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while leaders(&rx_a, &rx_b) == (false, false) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (a, b) = leaders(&rx_a, &rx_b);
    assert!(a ^ b, "exactly one leader, got a={a} b={b}");
    assert_eq!(
        (fence_a.holds(), fence_b.holds()),
        (a, b),
        "the fence follows leadership"
    );
    let (leader_task, follower_rx, follower_fence) = if a {
        (task_a, rx_b, fence_b)
    } else {
        (task_b, rx_a, fence_a)
    };
    leader_task.abort();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while !*follower_rx.borrow() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        *follower_rx.borrow(),
        "the follower takes over the expired lease"
    );
    assert!(follower_fence.holds());
    srv.stop().await;
}

#[tokio::test]
async fn metadata_only_lists_and_watches_carry_no_secret_data() {
    let srv = server().await;
    let api: Api<k8s_openapi::api::core::v1::Secret> =
        Api::namespaced(srv.client().unwrap(), "default");
    let secret = serde_json::from_value(json!({
        "metadata": {"name": "tls", "labels": {"a": "b"}},
        "stringData": {"tls.crt": "CERT"},
    }))
    .unwrap();
    let created = api.create(&PostParams::default(), &secret).await.unwrap();
    assert_eq!(
        created.data.unwrap()["tls.crt"].0,
        b"CERT",
        "stringData is stored as data"
    );
    let meta = api.list_metadata(&ListParams::default()).await.unwrap();
    assert_eq!(meta.items.len(), 1);
    assert_eq!(meta.items[0].metadata.name.as_deref(), Some("tls"));
    let accept = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1";
    for url in [
        format!("{}/api/v1/namespaces/default/secrets", srv.url()),
        format!(
            "{}/api/v1/namespaces/default/secrets?watch=1&timeoutSeconds=1",
            srv.url()
        ),
    ] {
        let body = reqwest::Client::new()
            .get(&url)
            .header("Accept", accept)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(body.contains("PartialObjectMetadata"), "{body}");
        assert!(
            !body.contains("tls.crt"),
            "no data in metadata-only answers: {body}"
        );
    }
    srv.stop().await;
}

#[tokio::test]
async fn bad_requests_get_status_errors_with_the_real_reasons_and_the_server_keeps_serving() {
    let srv = server().await;
    let http = reqwest::Client::new();
    let base = srv.url();
    let ing = format!("{base}/apis/networking.k8s.io/v1/namespaces/default/ingresses");
    let cases: Vec<(reqwest::RequestBuilder, u16, &str)> = vec![
        (http.post(&ing).body("{not json"), 400, "BadRequest"),
        (http.post(&ing).body("[1,2]"), 400, "BadRequest"),
        (
            http.post(&ing)
                .body(r#"{"kind":"Service","metadata":{"name":"x"}}"#),
            400,
            "BadRequest",
        ),
        (
            http.post(&ing).body(r#"{"metadata":{"name":"Bad_Name"}}"#),
            422,
            "Invalid",
        ),
        (http.post(&ing).body(r#"{"metadata":{}}"#), 422, "Invalid"),
        (
            http.post(&ing)
                .body(r#"{"metadata":{"name":"x"},"spec":"nope"}"#),
            422,
            "Invalid",
        ),
        (
            http.post(format!(
                "{base}/apis/networking.k8s.io/v1/namespaces/nope/ingresses"
            ))
            .body(r#"{"metadata":{"name":"x"}}"#),
            404,
            "NotFound",
        ),
        (
            http.get(format!("{base}/apis/networking.k8s.io/v1/widgets")),
            404,
            "NotFound",
        ),
        (http.get(format!("{ing}/missing")), 404, "NotFound"),
        (
            http.post(format!("{ing}/x")).body("{}"),
            405,
            "MethodNotAllowed",
        ),
        (
            http.patch(format!("{ing}/missing"))
                .header("Content-Type", "text/plain")
                .body("{}"),
            415,
            "UnsupportedMediaType",
        ),
        (
            http.post(format!(
                "{base}/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
            ))
            .body(r#"{"metadata":{"name":"things.nodot"},"spec":{"group":"nodot"}}"#),
            422,
            "Invalid",
        ),
        (
            http.get(format!("{ing}?labelSelector=a%20in%20b")),
            400,
            "BadRequest",
        ),
        (
            http.get(format!("{ing}?watch=1&resourceVersion=abc")),
            400,
            "BadRequest",
        ),
    ];
    for (i, (req, code, reason)) in cases.into_iter().enumerate() {
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status().as_u16(), code, "case {i}");
        let status: Value = resp.json().await.unwrap();
        assert_eq!(status["kind"], "Status", "case {i}: {status}");
        assert_eq!(status["reason"], reason, "case {i}: {status}");
        assert_eq!(status["code"], code, "case {i}: {status}");
    }
    let api: Api<Ingress> = Api::namespaced(srv.client().unwrap(), "default");
    api.create(&PostParams::default(), &ingress("ok"))
        .await
        .unwrap();
    let err = api
        .patch(
            "ok",
            &PatchParams::default(),
            &Patch::Json::<()>(
                serde_json::from_value(
                    json!([{"op": "test", "path": "/metadata/name", "value": "other"}]),
                )
                .unwrap(),
            ),
        )
        .await
        .unwrap_err();
    assert_eq!(status_code(&err), Some(422), "{err}");
    let body = http
        .get(format!("{ing}?watch=1&timeoutSeconds=99999999999999999"))
        .timeout(Duration::from_millis(300))
        .send()
        .await
        .unwrap();
    assert_eq!(body.status(), 200);
    assert_eq!(
        api.list(&ListParams::default()).await.unwrap().items.len(),
        1
    );
    srv.stop().await;
}

/// kubectl's generators and `explain` against the demo's API server: `create namespace` and
/// `create secret tls` (which send protobuf bodies), and `explain` of our CRD's fields (from the
/// CRD's schema in `/openapi/v3`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_creates_a_tls_secret_and_a_namespace_and_explains_our_crd() {
    if std::process::Command::new("kubectl")
        .args(["version", "--client"])
        .output()
        .is_err()
    {
        eprintln!("kubectl is not installed: skipping");
        return;
    }
    let srv = server().await;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, srv.kubeconfig_yaml()).unwrap();
    let kubectl = |args: Vec<String>| {
        let kubeconfig = kubeconfig.clone();
        let cache = dir.path().join("cache");
        async move {
            let out = tokio::process::Command::new("kubectl")
                .arg("--kubeconfig")
                .arg(&kubeconfig)
                .arg("--cache-dir")
                .arg(&cache)
                .args(&args)
                .output()
                .await
                .expect("run kubectl");
            let stdout = String::from_utf8_lossy(&out.stdout).to_string();
            let stderr = String::from_utf8_lossy(&out.stderr).to_string();
            assert!(
                out.status.success(),
                "kubectl {args:?} failed:\n{stdout}\n{stderr}"
            );
            stdout
        }
    };
    let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let crd = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/crds/clb-ingress.io_clbclassparameters.yaml"
    );
    kubectl(args(&["apply", "-f", crd])).await;
    let out = kubectl(args(&["explain", "clbclassparameters.spec.wildcardHosts"])).await;
    assert!(out.contains("KIND:       ClbClassParameters"), "{out}");
    assert!(out.contains("Native"), "{out}");
    let out = kubectl(args(&["explain", "clbclassparameters.spec"])).await;
    assert!(out.contains("catchAllDomain"), "{out}");

    let out = kubectl(args(&["create", "namespace", "team-a"])).await;
    assert!(out.contains("namespace/team-a created"), "{out}");
    let cert = rcgen::generate_simple_self_signed(vec!["a.example.com".to_string()]).unwrap();
    let (crt, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    std::fs::write(&crt, cert.cert.pem()).unwrap();
    std::fs::write(&key, cert.signing_key.serialize_pem()).unwrap();
    let out = kubectl(args(&[
        "create",
        "secret",
        "tls",
        "shop-tls",
        "-n",
        "team-a",
        "--cert",
        &crt.to_string_lossy(),
        "--key",
        &key.to_string_lossy(),
    ]))
    .await;
    assert!(out.contains("secret/shop-tls created"), "{out}");
    let out = kubectl(args(&[
        "get", "secret", "shop-tls", "-n", "team-a", "-o", "json",
    ]))
    .await;
    let s: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(s["type"], "kubernetes.io/tls");
    // base64 of the PEM: its header, and exactly the PEM's length once decoded.
    let crt_b64 = s["data"]["tls.crt"].as_str().unwrap_or_default();
    assert!(
        crt_b64.starts_with("LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0t"),
        "{crt_b64}"
    );
    let pad = crt_b64.bytes().rev().take_while(|b| *b == b'=').count();
    assert_eq!(crt_b64.len() / 4 * 3 - pad, cert.cert.pem().len());
    srv.stop().await;
}
