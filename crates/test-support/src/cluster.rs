//! A whole local cluster for tests: the in-repo test API server, the CLB emulator with its data
//! plane, and `clb-ingress run` child processes, plus helpers to create objects and send requests.

use crate::emulator as emu_support;
use clb_ingress::clb::credentials::SecretString;
use clb_ingress::clb::types::DescribeLoadBalancersRequest;
use clb_ingress::clb::{ClbClient, ClientConfig, Credentials, Endpoint};
use clb_ingress::crd::{ClbBackendConfig, ClbClassParameters};
use clb_ingress::emulator::config::Settings;
use clb_ingress::emulator::core::SystemClock;
use clb_ingress::emulator::dataplane::{DataPlane, DataPlaneSettings};
use clb_ingress::emulator::server;
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{DynamicObject, Patch, PatchParams, PostParams};
use kube::discovery::ApiResource;
use kube::{Api, Client, CustomResourceExt};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The goal: an Ingress change is live on the CLB within this time.
pub const LIVE_WITHIN: Duration = Duration::from_secs(2);
/// Generous bound for slower steps (deletion, restarts) on a loaded 2-core machine.
pub const SLOW: Duration = Duration::from_secs(20);

pub struct Controller {
    pub child: Child,
    log: PathBuf,
    pub metrics: String,
    /// The first line the controller printed (its listening addresses).
    pub banner: String,
    /// Run under `E2E_CONTROLLER_WRAPPER`, in a process group of its own.
    wrapped: bool,
}

impl Controller {
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
    /// Where its log is written.
    pub fn log_path(&self) -> PathBuf {
        self.log.clone()
    }
    pub fn kill(&mut self) {
        if self.wrapped && matches!(self.child.try_wait(), Ok(None)) {
            // SIGTERM to the whole group: the controller under the wrapper stops cleanly, and
            // the wrapper (a profiler) writes its results before it exits.
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &format!("-{}", self.child.id())])
                .status();
        } else {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Send SIGTERM to `child` and wait for it to exit; panics (with `log()`) if it still runs
/// after `limit`. Returns its exit status and how long it took.
pub async fn sigterm_and_wait(
    child: &mut Child,
    limit: Duration,
    log: impl Fn() -> String,
) -> (std::process::ExitStatus, Duration) {
    let started = Instant::now();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(killed.success(), "kill -TERM failed");
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return (status, started.elapsed());
        }
        assert!(
            started.elapsed() < limit,
            "still running {:?} after SIGTERM:\n{}",
            started.elapsed(),
            log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Whole-cluster tests of one test binary run one at a time: each runs several processes, and
/// on a 2-core machine running them all at once makes the 2-second liveness checks meaningless.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub struct Env {
    pub api: clb_ingress::testapi::Running,
    pub emu: server::Running,
    pub kube: Client,
    kubeconfig: PathBuf,
    offset: u16,
    dir: tempfile::TempDir,
    http: reqwest::Client,
    clb: ClbClient,
    /// Last, so it is released after everything else of the test environment is dropped.
    _serial: tokio::sync::MutexGuard<'static, ()>,
}

/// Health-check probes of the test emulator: every 100 ms (a new loopback target is `Alive`
/// after CLB's default 3 successes, ~200 ms), so tests need not wait CLB's real seconds.
pub const TEST_HEALTH_TIMING: clb_ingress::emulator::health::HealthTiming =
    clb_ingress::emulator::health::HealthTiming {
        interval: Some(std::time::Duration::from_millis(100)),
        timeout: Some(std::time::Duration::from_millis(80)),
    };
/// Seed of the data plane's weighted target choice in [`env`].
pub const DATA_PLANE_SEED: u64 = 15;

pub async fn env() -> Env {
    env_with_health(TEST_HEALTH_TIMING).await
}

/// An environment whose emulator probes targets with this timing.
pub async fn env_with_health(health: clb_ingress::emulator::health::HealthTiming) -> Env {
    let serial = SERIAL.lock().await;
    let api = clb_ingress::testapi::start("127.0.0.1:0".parse().unwrap())
        .await
        .expect("test API server");
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, api.kubeconfig_yaml()).unwrap();
    let kube = clb_ingress::controller::kube_client(Some(&kubeconfig))
        .await
        .unwrap();
    for crd in [ClbClassParameters::crd(), ClbBackendConfig::crd()] {
        Api::<CustomResourceDefinition>::all(kube.clone())
            .create(&PostParams::default(), &crd)
            .await
            .expect("CRD");
    }
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
    // Seeded: weighted splits measured through the data plane are reproducible.
    let plane = Arc::new(DataPlane::new(DataPlaneSettings {
        port_offset: offset,
        health_timing: health,
        ..DataPlaneSettings::default().with_seed(DATA_PLANE_SEED)
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
        _serial: serial,
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
    /// A CLB API client for the emulator.
    pub fn clb(&self) -> &ClbClient {
        &self.clb
    }

    /// The kubeconfig of the test API server, for commands run against the cluster.
    pub fn kubeconfig(&self) -> &std::path::Path {
        &self.kubeconfig
    }

    /// The emulator's call counters (`/_emulator/counters`: reads and writes by action).
    pub async fn counters(&self) -> Value {
        self.http
            .get(format!("http://{}/_emulator/counters", self.emu.addr))
            .bearer_auth(self.emu.admin_token())
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .expect("emulator counters")
            .json()
            .await
            .expect("counters JSON")
    }

    /// Zero the emulator's call counters.
    pub async fn reset_counters(&self) {
        self.http
            .post(format!("http://{}/_emulator/counters/reset", self.emu.addr))
            .bearer_auth(self.emu.admin_token())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .expect("reset emulator counters");
    }

    /// The emulator's data-plane port offset (listener port P serves on VIP:P+offset).
    pub fn offset(&self) -> u16 {
        self.offset
    }

    pub fn controller(&self, name: &str, extra: &[&str]) -> Controller {
        let filter = std::env::var("E2E_LOG").unwrap_or_else(|_| "info".into());
        self.controller_logging(name, &filter, extra)
    }

    /// A controller logging with this `--log` filter (extra flags may add `--log-format`).
    pub fn controller_logging(&self, name: &str, filter: &str, extra: &[&str]) -> Controller {
        let log = self.dir.path().join(format!("{name}.log"));
        // `E2E_CONTROLLER_WRAPPER=heaptrack` (or `strace -f`, ...) runs the controller under a
        // profiler: the first word is the program, the rest its flags before the binary.
        let wrapper = std::env::var("E2E_CONTROLLER_WRAPPER")
            .ok()
            .filter(|w| !w.trim().is_empty());
        let mut command = match &wrapper {
            Some(w) => {
                use std::os::unix::process::CommandExt;
                let mut words = w.split_whitespace();
                let mut c = Command::new(words.next().unwrap_or_default());
                c.args(words).arg(emu_support::bin()).env("NO_PROXY", "*");
                c.process_group(0);
                c
            }
            None => emu_support::command(),
        };
        let mut child = command
            .args(["run", "--kubeconfig"])
            .arg(&self.kubeconfig)
            .args(["--clb-endpoint", &format!("http://{}", self.emu.addr)])
            .args(["--metrics-addr", "127.0.0.1:0", "--cluster-id", "e2e"])
            .args(["--debounce-ms", "20", "--no-node-watch", "--log", filter])
            .args(["--identity", name])
            .args(extra)
            .env_remove("KUBECONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("spawn controller");
        // The banner (a wrapper may print lines of its own first).
        let mut first = String::new();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        while stdout.read_line(&mut first).unwrap_or(0) > 0 && !first.contains("http://") {
            first.clear();
        }
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
            banner: first,
            wrapped: wrapper.is_some(),
        }
    }

    /// Install the pinned Gateway API standard-channel CRDs the chart ships
    /// ([`GATEWAY_API_CRDS`]); the test API server then serves their kinds, with `/status`.
    pub async fn install_gateway_api_crds(&self) {
        let api = Api::<CustomResourceDefinition>::all(self.kube.clone());
        for file in gateway_api_crd_files() {
            let text = std::fs::read_to_string(&file).expect("read a Gateway API CRD");
            for doc in clb_ingress::manifests::parse_documents(&file.display().to_string(), &text)
                .expect("parse a Gateway API CRD")
            {
                let crd: CustomResourceDefinition =
                    serde_json::from_value(doc).expect("a CustomResourceDefinition");
                api.create(&PostParams::default(), &crd)
                    .await
                    .unwrap_or_else(|e| panic!("create CRD {}: {e}", file.display()));
            }
        }
    }

    pub async fn apply_value(&self, obj: Value) {
        self.apply(obj).await
    }

    pub async fn apply(&self, obj: Value) {
        let ar = clb_ingress::manifests::api_resource(&obj);
        let kind = ar.kind.clone();
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

    /// The default IngressClass `clb` with parameters `p`: Direct targets, this sharing, and
    /// (a single-tenant test cluster) every namespace may catch all hosts.
    pub async fn class(&self, sharing: &str) {
        self.class_with(json!({"targetMode": "Direct", "sharing": sharing,
            "tenancy": {"catchAll": {"namespaces": ["*"]}}}))
            .await;
    }

    /// The default IngressClass `clb` with parameters `p` of this spec.
    pub async fn class_with(&self, spec: Value) {
        self.apply(json!({"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
            "metadata": {"name": "clb", "annotations": {"ingressclass.kubernetes.io/is-default-class": "true"}},
            "spec": {"controller": "clb-ingress.io/ingress-controller",
                     "parameters": {"apiGroup": "clb-ingress.io", "kind": "ClbClassParameters", "name": "p"}}}))
        .await;
        self.apply(
            json!({"apiVersion": "clb-ingress.io/v1alpha1", "kind": "ClbClassParameters",
            "metadata": {"name": "p"}, "spec": spec}),
        )
        .await;
    }

    pub async fn service(&self, name: &str, pods: &[&str]) {
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

    pub async fn ingress(&self, name: &str, host: &str, paths: &[(&str, &str, &str)]) {
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

    pub async fn get_ingress(&self, name: &str) -> Option<Ingress> {
        Api::<Ingress>::namespaced(self.kube.clone(), "default")
            .get_opt(name)
            .await
            .unwrap()
    }

    pub async fn vip(&self, name: &str) -> Option<String> {
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
    pub async fn request(&self, vip: &str, host: &str, path: &str) -> (u16, String) {
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
    pub async fn until_routed(
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

    /// Wait until `host` + `path` answers `status`.
    pub async fn until_status(
        &self,
        vip: &str,
        host: &str,
        path: &str,
        status: u16,
        within: Duration,
    ) {
        let start = Instant::now();
        while self.request(vip, host, path).await.0 != status {
            assert!(
                start.elapsed() < within,
                "{host}{path} did not answer {status} within {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub async fn lb_count(&self) -> usize {
        self.clb
            .describe_load_balancers(&DescribeLoadBalancersRequest::default())
            .await
            .unwrap()
            .len()
    }

    pub async fn events_for(&self, name: &str) -> Vec<(String, String, String)> {
        self.events_in("default", name).await
    }

    /// (type, reason, note) of the Events about object `name` in namespace `ns`.
    pub async fn events_in(&self, ns: &str, name: &str) -> Vec<(String, String, String)> {
        let ar = ApiResource {
            group: "events.k8s.io".into(),
            version: "v1".into(),
            api_version: "events.k8s.io/v1".into(),
            kind: "Event".into(),
            plural: "events".into(),
        };
        let api: Api<DynamicObject> = Api::namespaced_with(self.kube.clone(), ns, &ar);
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

/// The directory of the pinned Gateway API standard-channel CRDs (v1.3.0) in the chart.
pub const GATEWAY_API_CRDS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../helm/clb-ingress/files/gateway-api-v1.3.0"
);

/// The CRD files of [`GATEWAY_API_CRDS`], sorted.
pub fn gateway_api_crd_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(GATEWAY_API_CRDS)
        .expect("the chart's Gateway API CRDs")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    files
}

/// (status, x-clb-target, location) of one request through the emulator's data plane to
/// `scheme://host:port/path` (the client resolves `host` to the VIP; an error gives status 0
/// and the error text).
pub async fn get(
    client: &reqwest::Client,
    scheme: &str,
    port: u16,
    host: &str,
    path: &str,
) -> (u16, String, String) {
    let url = format!("{scheme}://{host}:{port}{path}");
    match client.get(&url).send().await {
        Ok(r) => {
            let h = |k: &str| {
                r.headers()
                    .get(k)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string()
            };
            (r.status().as_u16(), h("x-clb-target"), h("location"))
        }
        Err(e) => (0, e.to_string(), String::new()),
    }
}

pub async fn metric(url: &str, name: &str) -> Option<f64> {
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
