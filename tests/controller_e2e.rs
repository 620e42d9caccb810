//! The whole product: the real `clb-ingress run` binary against the in-repo test API server and
//! the CLB emulator (with its data plane), driven by Kubernetes objects and checked with real
//! HTTP requests through the emulated CLB.

#[path = "support/emulator.rs"]
#[allow(dead_code)]
mod emu_support;

use clb_ingress::clb::credentials::SecretString;
use clb_ingress::clb::types::DescribeLoadBalancersRequest;
use clb_ingress::clb::{ClbClient, ClientConfig, Credentials, Endpoint};
use clb_ingress::crd::ClbClassParameters;
use clb_ingress::emulator::config::Settings;
use clb_ingress::emulator::core::SystemClock;
use clb_ingress::emulator::dataplane::{DataPlane, DataPlaneSettings};
use clb_ingress::emulator::server;
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::discovery::ApiResource;
use kube::{Api, Client, CustomResourceExt};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The goal: an Ingress change is live on the CLB within this time.
const LIVE_WITHIN: Duration = Duration::from_secs(2);
/// Generous bound for slower steps (deletion, restarts) on a loaded 2-core machine.
const SLOW: Duration = Duration::from_secs(20);

struct Controller {
    child: Child,
    log: PathBuf,
    metrics: String,
}

impl Controller {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        self.kill();
    }
}

struct Env {
    api: clb_ingress::testapi::Running,
    emu: server::Running,
    kube: Client,
    kubeconfig: PathBuf,
    offset: u16,
    dir: tempfile::TempDir,
    http: reqwest::Client,
    clb: ClbClient,
}

async fn env() -> Env {
    let api = clb_ingress::testapi::start("127.0.0.1:0".parse().unwrap())
        .await
        .expect("test API server");
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, api.kubeconfig_yaml()).unwrap();
    let kube = clb_ingress::controller::kube_client(Some(&kubeconfig))
        .await
        .unwrap();
    Api::<CustomResourceDefinition>::all(kube.clone())
        .create(&PostParams::default(), &ClbClassParameters::crd())
        .await
        .expect("CRD");
    let offset: u16 = rand::random_range(20_000..50_000);
    let settings = Settings {
        listen: "127.0.0.1:0".parse().unwrap(),
        vip_base: emu_support::random_vip_base(),
        port_offset: offset,
        task_delay_ms: 0,
        ..Settings::default()
    };
    let (id, key) = (
        settings.credentials[0].secret_id.clone(),
        settings.credentials[0].secret_key.clone(),
    );
    let plane = Arc::new(DataPlane::new(DataPlaneSettings {
        port_offset: offset,
        ..DataPlaneSettings::default()
    }));
    let emu = server::start(settings, Arc::new(SystemClock), plane)
        .await
        .expect("emulator");
    let clb = ClbClient::new(
        ClientConfig::new(
            "ap-guangzhou",
            Endpoint::parse(&format!("http://{}", emu.addr)).unwrap(),
        ),
        Credentials::new(id, SecretString::new(key), None).unwrap(),
    )
    .unwrap();
    Env {
        api,
        emu,
        kube,
        kubeconfig,
        offset,
        dir,
        http: reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap(),
        clb,
    }
}

impl Env {
    fn controller(&self, name: &str, extra: &[&str]) -> Controller {
        let log = self.dir.path().join(format!("{name}.log"));
        let mut child = emu_support::command()
            .args(["run", "--kubeconfig"])
            .arg(&self.kubeconfig)
            .args(["--clb-endpoint", &format!("http://{}", self.emu.addr)])
            .args(["--metrics-addr", "127.0.0.1:0", "--cluster-id", "e2e"])
            .args(["--debounce-ms", "20", "--no-node-watch", "--log"])
            .arg(std::env::var("E2E_LOG").unwrap_or_else(|_| "info".into()))
            .args(["--identity", name])
            .args(extra)
            .env_remove("KUBECONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("spawn controller");
        let mut first = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        let metrics = first
            .split("http://")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .map(|a| format!("http://{a}"))
            .unwrap_or_else(|| panic!("no metrics address in {first:?}"));
        Controller {
            child,
            log,
            metrics,
        }
    }

    async fn apply(&self, obj: Value) {
        let api_version = obj["apiVersion"].as_str().unwrap().to_string();
        let kind = obj["kind"].as_str().unwrap().to_string();
        let (group, version) = api_version.split_once('/').unwrap_or(("", &api_version));
        let plural = match kind.as_str() {
            "IngressClass" => "ingressclasses".to_string(),
            "Ingress" => "ingresses".to_string(),
            "ClbClassParameters" => "clbclassparameters".to_string(),
            "EndpointSlice" => "endpointslices".to_string(),
            k => format!("{}s", k.to_lowercase()),
        };
        let ar = ApiResource {
            group: group.into(),
            version: version.into(),
            api_version: api_version.clone(),
            kind: kind.clone(),
            plural,
        };
        let name = obj["metadata"]["name"].as_str().unwrap().to_string();
        let api: Api<DynamicObject> = match obj["metadata"]["namespace"].as_str() {
            Some(ns) => Api::namespaced_with(self.kube.clone(), ns, &ar),
            None => Api::all_with(self.kube.clone(), &ar),
        };
        api.patch(
            &name,
            &PatchParams::apply("e2e-test").force(),
            &Patch::Apply(&obj),
        )
        .await
        .unwrap_or_else(|e| panic!("apply {kind} {name}: {e}"));
    }

    async fn class(&self, sharing: &str) {
        self.apply(json!({"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
            "metadata": {"name": "clb", "annotations": {"ingressclass.kubernetes.io/is-default-class": "true"}},
            "spec": {"controller": "clb-ingress.io/ingress-controller",
                     "parameters": {"apiGroup": "clb-ingress.io", "kind": "ClbClassParameters", "name": "p"}}}))
        .await;
        self.apply(
            json!({"apiVersion": "clb-ingress.io/v1alpha1", "kind": "ClbClassParameters",
            "metadata": {"name": "p"}, "spec": {"targetMode": "Direct", "sharing": sharing}}),
        )
        .await;
    }

    async fn service(&self, name: &str, pods: &[&str]) {
        self.apply(json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}]}}))
            .await;
        let eps: Vec<Value> = pods
            .iter()
            .map(|ip| json!({"addresses": [ip], "conditions": {"ready": true}}))
            .collect();
        self.apply(
            json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": format!("{name}-1"), "namespace": "default",
                         "labels": {"kubernetes.io/service-name": name}},
            "addressType": "IPv4", "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            "endpoints": eps}),
        )
        .await;
    }

    async fn ingress(&self, name: &str, host: &str, paths: &[(&str, &str, &str)]) {
        let ps: Vec<Value> = paths
            .iter()
            .map(|(p, t, svc)| {
                json!({"path": p, "pathType": t,
                "backend": {"service": {"name": svc, "port": {"number": 80}}}})
            })
            .collect();
        self.apply(
            json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"rules": [{"host": host, "http": {"paths": ps}}]}}),
        )
        .await;
    }

    async fn get_ingress(&self, name: &str) -> Option<Ingress> {
        Api::<Ingress>::namespaced(self.kube.clone(), "default")
            .get_opt(name)
            .await
            .unwrap()
    }

    async fn vip(&self, name: &str) -> Option<String> {
        self.get_ingress(name)
            .await?
            .status?
            .load_balancer?
            .ingress?
            .first()?
            .ip
            .clone()
    }

    /// One request through the data plane: (status, x-clb-target).
    async fn request(&self, vip: &str, host: &str, path: &str) -> (u16, String) {
        let url = format!("http://{vip}:{}{path}", 80 + self.offset);
        match self.http.get(&url).header("Host", host).send().await {
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

    /// Wait until `ingress` has an address and `host` + `path` reaches `target`.
    async fn until_routed(
        &self,
        ingress: &str,
        host: &str,
        path: &str,
        target: &str,
        within: Duration,
    ) -> Duration {
        let start = Instant::now();
        loop {
            if let Some(vip) = self.vip(ingress).await
                && self.request(&vip, host, path).await == (200, target.to_string())
            {
                return start.elapsed();
            }
            assert!(
                start.elapsed() < within,
                "{host}{path} did not reach {target} within {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn lb_count(&self) -> usize {
        self.clb
            .describe_load_balancers(&DescribeLoadBalancersRequest::default())
            .await
            .unwrap()
            .len()
    }

    async fn events_for(&self, name: &str) -> Vec<(String, String, String)> {
        let ar = ApiResource {
            group: "events.k8s.io".into(),
            version: "v1".into(),
            api_version: "events.k8s.io/v1".into(),
            kind: "Event".into(),
            plural: "events".into(),
        };
        let api: Api<DynamicObject> = Api::namespaced_with(self.kube.clone(), "default", &ar);
        api.list(&Default::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|e| e.data["regarding"]["name"] == name)
            .map(|e| {
                (
                    e.data["type"].as_str().unwrap_or("").to_string(),
                    e.data["reason"].as_str().unwrap_or("").to_string(),
                    e.data["note"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect()
    }
}

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
    let ing = e.get_ingress("shop").await.unwrap();
    assert!(
        ing.metadata
            .finalizers
            .unwrap_or_default()
            .contains(&"clb-ingress.io/finalizer".to_string())
    );
    let state: Value = serde_json::from_str(
        ing.metadata.annotations.unwrap()["clb-ingress.io/sync-state"].as_str(),
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
    let evs = e.events_for("shop").await;
    assert!(
        evs.iter().any(|(t, r, _)| t == "Normal" && r == "Synced"),
        "{evs:?}"
    );
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
    assert_eq!(e.request(&vip, "shop.example.com", "/web/x").await.0, 404);

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
    assert_eq!(e.request(&vip, "shop.example.com", "/site").await.0, 404);

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
        assert!(start.elapsed() < SLOW, "finalizer never removed");
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

async fn metric(url: &str, name: &str) -> Option<f64> {
    let text = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .get(format!("{url}/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
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
    assert!(leader.log().contains("applying plan"), "{}", leader.log());
    assert!(
        !follower.log().contains("applying plan"),
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
