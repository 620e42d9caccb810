//! A `clb-ingress emulator` child process for integration tests (started on a free loopback
//! port with a random `--vip-base`, killed by its PID on drop), its admin endpoint, a typed
//! client for it, `clb-ingress apply` runs against it, and a small manifest world to render.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use clb_ingress::clb::credentials::SecretString;
use clb_ingress::clb::{ClbClient, ClientConfig, Credentials, Endpoint};
use serde_json::Value;

/// The `clb-ingress` binary of this build: cargo builds it next to the integration tests
/// (`target/<profile>/deps/<test>` -> `target/<profile>/clb-ingress`).
pub fn bin() -> PathBuf {
    static BIN: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        let exe = std::env::current_exe().expect("current_exe");
        let dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("target/<profile>");
        let bin = dir.join(format!("clb-ingress{}", std::env::consts::EXE_SUFFIX));
        assert!(
            bin.exists(),
            "{} is missing: run the tests with cargo",
            bin.display()
        );
        bin
    })
    .clone()
}
pub const REGION: &str = "ap-guangzhou";
/// The emulator's documented default credentials (what `apply` uses on loopback by default).
pub const DEFAULT_SECRET_ID: &str = clb_ingress::emulator::config::DEFAULT_SECRET_ID;
pub const DEFAULT_SECRET_KEY: &str = clb_ingress::emulator::config::DEFAULT_SECRET_KEY;

/// Environment variables a child must not inherit: credentials, endpoints, log settings, and
/// proxies (so that loopback traffic can never be routed elsewhere).
const SCRUBBED_ENV: &[&str] = &[
    "TENCENTCLOUD_SECRET_ID",
    "TENCENTCLOUD_SECRET_KEY",
    "TENCENTCLOUD_SESSION_TOKEN",
    "TENCENTCLOUD_CREDENTIALS_FILE",
    "CLB_INGRESS_CREDENTIALS_PROVIDER",
    "CLB_INGRESS_STS_ENDPOINT",
    "CLB_INGRESS_METADATA_ENDPOINT",
    "TKE_ROLE_ARN",
    "TKE_WEB_IDENTITY_TOKEN_FILE",
    "TKE_PROVIDER_ID",
    "TKE_REGION",
    "TENCENTCLOUD_REGION",
    "CLB_INGRESS_ENDPOINT",
    "CLB_INGRESS_CLUSTER_ID",
    "CLB_INGRESS_LOG",
    "CLB_EMULATOR_SECRET_ID",
    "CLB_EMULATOR_SECRET_KEY",
    "CLB_EMULATOR_ADMIN_TOKEN",
    "RUST_LOG",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
];

/// A `clb-ingress` command with a scrubbed environment.
pub fn command() -> Command {
    let mut c = Command::new(bin());
    for v in SCRUBBED_ENV {
        c.env_remove(v);
    }
    c.env("NO_PROXY", "*");
    c
}

/// A random first VIP 127.R.S.1 (R in 2..=254), so that parallel emulators never share VIPs.
pub fn random_vip_base() -> Ipv4Addr {
    let r: u8 = rand::random_range(2..=254);
    let s: u8 = rand::random();
    Ipv4Addr::new(127, r, s, 1)
}

/// Per-action call counters from `GET /_emulator/counters`. Every call that passed
/// authentication is counted, including those then refused by the rate limit or a fault.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct Counters {
    #[serde(default)]
    pub reads: BTreeMap<String, u64>,
    #[serde(default)]
    pub writes: BTreeMap<String, u64>,
    #[serde(default)]
    pub total_reads: u64,
    #[serde(default)]
    pub total_writes: u64,
    #[serde(default)]
    pub errors: BTreeMap<String, u64>,
    #[serde(default)]
    pub action_errors: BTreeMap<String, u64>,
    /// Each layer-7 listener's DefaultServer domain after every write that changed it.
    #[serde(default)]
    pub default_domains: BTreeMap<String, Vec<Option<String>>>,
}

impl Counters {
    /// Calls per action, reads and writes together.
    pub fn per_action(&self) -> BTreeMap<String, u64> {
        let mut all = self.reads.clone();
        for (k, v) in &self.writes {
            *all.entry(k.clone()).or_default() += v;
        }
        all
    }

    /// Errors of one action with one code.
    pub fn errors_of(&self, action: &str, code: &str) -> u64 {
        self.action_errors
            .get(&format!("{action}/{code}"))
            .copied()
            .unwrap_or(0)
    }
}

/// A fresh random admin token.
pub fn random_admin_token() -> String {
    format!("test-{:032x}", rand::random::<u128>())
}

/// A running emulator child process. Dropping it kills the process (SIGKILL to its PID).
pub struct Emulator {
    child: Child,
    pub addr: SocketAddr,
    /// The admin token the emulator was started with (`CLB_EMULATOR_ADMIN_TOKEN`); every admin
    /// call of this helper sends it.
    pub admin_token: String,
    pub endpoint: String,
    pub vip_base: Ipv4Addr,
    rt: tokio::runtime::Runtime,
    http: reqwest::Client,
    stderr_path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Emulator {
    /// Start `clb-ingress emulator --listen 127.0.0.1:0 --vip-base <random> --no-data-plane`
    /// plus `extra` flags, with a random admin token in `CLB_EMULATOR_ADMIN_TOKEN`, and wait
    /// for its "listening on" line.
    pub fn start(extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let stderr_path = dir.path().join("emulator.stderr");
        let stderr = std::fs::File::create(&stderr_path).expect("stderr file");
        let vip_base = random_vip_base();
        let admin_token = random_admin_token();
        let mut child = command()
            .env("CLB_EMULATOR_ADMIN_TOKEN", &admin_token)
            .args(["emulator", "--listen", "127.0.0.1:0", "--no-data-plane"])
            .args(["--vip-base", &vip_base.to_string()])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr))
            .spawn()
            .expect("spawn clb-ingress emulator");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout);
        let mut first = String::new();
        let read = lines.read_line(&mut first);
        if read.is_err() || first.is_empty() {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "emulator did not start: {}",
                std::fs::read_to_string(&stderr_path).unwrap_or_default()
            );
        }
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut sink = Vec::new();
            let _ = lines.read_to_end(&mut sink);
        });
        let addr: SocketAddr = first
            .split("http://")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no address in {first:?}"));
        assert!(addr.ip().is_loopback(), "emulator bound {addr}");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("http client");
        let emu = Self {
            child,
            addr,
            admin_token,
            endpoint: format!("http://{addr}"),
            vip_base,
            rt,
            http,
            stderr_path,
            _dir: dir,
        };
        assert_eq!(emu.admin_get("healthz")["ok"], true);
        emu
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What the emulator wrote to stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// Run a future on this helper's runtime.
    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    fn admin(&self, method: reqwest::Method, path: &str, body: Option<&Value>) -> Value {
        let url = format!("{}/_emulator/{path}", self.endpoint);
        self.rt.block_on(async {
            let mut req = self
                .http
                .request(method.clone(), &url)
                .bearer_auth(&self.admin_token);
            req = match body {
                Some(b) => req.json(b),
                None => req.header(reqwest::header::CONTENT_TYPE, "application/json"),
            };
            let resp = req
                .send()
                .await
                .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
            let status = resp.status();
            let text = resp.text().await.expect("admin body");
            assert!(status.is_success(), "{method} {url}: {status} {text}");
            serde_json::from_str(&text).unwrap_or(Value::Null)
        })
    }

    pub fn admin_get(&self, path: &str) -> Value {
        self.admin(reqwest::Method::GET, path, None)
    }

    pub fn admin_post(&self, path: &str, body: Option<&Value>) -> Value {
        self.admin(reqwest::Method::POST, path, body)
    }

    pub fn admin_put(&self, path: &str, body: &Value) -> Value {
        self.admin(reqwest::Method::PUT, path, Some(body))
    }

    pub fn admin_patch(&self, path: &str, body: &Value) -> Value {
        self.admin(reqwest::Method::PATCH, path, Some(body))
    }

    pub fn counters(&self) -> Counters {
        serde_json::from_value(self.admin_get("counters")).expect("counters")
    }

    pub fn reset_counters(&self) {
        self.admin_post("counters/reset", None);
    }

    /// Replace the injected faults (`{}` clears them).
    pub fn set_faults(&self, faults: &Value) {
        self.admin_put("faults", faults);
    }

    /// `state` of `GET /_emulator/state`: `lbs` and `certs`.
    pub fn state(&self) -> Value {
        self.admin_get("state")["state"].clone()
    }

    /// A typed client with the default credentials and no client-side rate limit.
    pub fn client(&self) -> ClbClient {
        self.client_with(DEFAULT_SECRET_ID, DEFAULT_SECRET_KEY)
    }

    pub fn client_with(&self, id: &str, key: &str) -> ClbClient {
        let mut config = ClientConfig::new(REGION, Endpoint::parse(&self.endpoint).expect("url"));
        config.rate_limits = clb_ingress::clb::ratelimit::RateLimitConfig::unlimited();
        let creds = Credentials::new(id, SecretString::new(key), None).expect("credentials");
        ClbClient::builder(config, creds)
            .http_client(
                reqwest::Client::builder()
                    .no_proxy()
                    .build()
                    .expect("http client"),
            )
            .build()
            .expect("client")
    }

    /// `clb-ingress apply -f <files> --clb-endpoint <this emulator>` plus `extra`, not started.
    pub fn apply_command(&self, files: &[&Path], extra: &[&str]) -> Command {
        let mut c = command();
        c.arg("apply");
        for f in files {
            c.arg("-f").arg(f);
        }
        c.args(["--clb-endpoint", &self.endpoint]).args(extra);
        c.stdin(Stdio::null());
        c
    }

    /// Run `apply` to completion.
    pub fn apply(&self, files: &[&Path], extra: &[&str]) -> Run {
        let started = Instant::now();
        let out = self
            .apply_command(files, extra)
            .output()
            .expect("run clb-ingress apply");
        Run::new(out, started.elapsed())
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        // Child::kill sends SIGKILL to this child's PID only.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Emulator {
    /// `clb-ingress plan -f <files> --clb-endpoint <this emulator> -o json` plus `extra`, parsed.
    pub fn plan_json(&self, files: &[&Path], extra: &[&str]) -> Value {
        let mut args: Vec<&str> = vec!["--clb-endpoint", &self.endpoint];
        args.extend_from_slice(extra);
        plan_json_with(files, &args)
    }
}

/// A finished `clb-ingress` run.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Run {
    pub fn new(out: Output, elapsed: Duration) -> Self {
        Self {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            elapsed,
        }
    }

    pub fn ok(&self) -> bool {
        self.code == 0
    }

    /// Panic with the output unless the run exited 0.
    #[track_caller]
    pub fn expect_ok(&self, what: &str) -> &Self {
        assert!(
            self.ok(),
            "{what}: exit {}\nstdout:\n{}\nstderr:\n{}",
            self.code,
            self.stdout,
            self.stderr
        );
        self
    }
}

/// `clb-ingress plan -f <files> -o json`, parsed.
pub fn plan_json(files: &[&Path]) -> Value {
    plan_json_with(files, &[])
}

fn plan_json_with(files: &[&Path], extra: &[&str]) -> Value {
    let mut c = command();
    c.arg("plan");
    for f in files {
        c.arg("-f").arg(f);
    }
    let out = c
        .args(["-o", "json"])
        .args(extra)
        .output()
        .expect("run clb-ingress plan");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "plan failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&stdout).expect("plan json")
}

// ---------------------------------------------------------------------------------------------
// A manifest world
// ---------------------------------------------------------------------------------------------

/// An IngressClass with its own ClbClassParameters.
#[derive(Debug, Clone)]
pub struct Class {
    pub name: String,
    /// `Shared` or `PerIngress`.
    pub sharing: &'static str,
}

/// A Service with one EndpointSlice of ready pods (port 80 -> 8080).
#[derive(Debug, Clone)]
pub struct Service {
    pub name: String,
    pub pods: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct IngressPath {
    pub path: String,
    /// `Exact` or `Prefix`.
    pub kind: &'static str,
    pub service: String,
}

#[derive(Debug, Clone)]
pub struct Ingress {
    pub name: String,
    pub class: String,
    pub host: String,
    pub paths: Vec<IngressPath>,
    /// Secret name of a TLS section for `host`.
    pub tls: Option<String>,
    /// `kubernetes.io/ingress.existLbId`.
    pub exist_lb: Option<String>,
}

/// A kubernetes.io/tls Secret.
#[derive(Debug, Clone)]
pub struct TlsSecret {
    pub name: String,
    pub cert_pem: String,
    pub key_pem: String,
}

impl TlsSecret {
    /// A fresh self-signed certificate for `host`.
    pub fn generate(name: &str, host: &str) -> Self {
        let ck = rcgen::generate_simple_self_signed(vec![host.to_string()]).expect("rcgen");
        Self {
            name: name.to_string(),
            cert_pem: ck.cert.pem(),
            key_pem: ck.signing_key.serialize_pem(),
        }
    }
}

/// Every object in namespace `default`.
#[derive(Debug, Clone, Default)]
pub struct World {
    pub classes: Vec<Class>,
    pub services: Vec<Service>,
    pub ingresses: Vec<Ingress>,
    pub secrets: Vec<TlsSecret>,
}

fn indent_block(text: &str, pad: &str) -> String {
    text.lines().map(|l| format!("{pad}{l}\n")).collect()
}

impl World {
    pub fn render(&self) -> String {
        let mut docs: Vec<String> = Vec::new();
        for c in &self.classes {
            // A single-tenant world: every namespace may catch all hosts, and may adopt the
            // CLBs this class's Ingresses name by `existLbId`.
            let adopt: Vec<String> = self
                .ingresses
                .iter()
                .filter(|i| i.class == c.name)
                .filter_map(|i| i.exist_lb.clone())
                .collect();
            let adoption = if adopt.is_empty() {
                String::new()
            } else {
                format!(
                    ", adoption: {{namespaces: [\"*\"], loadBalancerIds: [{}]}}",
                    adopt.join(", ")
                )
            };
            docs.push(format!(
                "apiVersion: clb-ingress.io/v1alpha1\nkind: ClbClassParameters\nmetadata: {{name: {n}-params}}\nspec: {{targetMode: Direct, sharing: {s}, tenancy: {{catchAll: {{namespaces: [\"*\"]}}}}{adoption}}}\n",
                n = c.name,
                s = c.sharing
            ));
            docs.push(format!(
                "apiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata: {{name: {n}}}\nspec:\n  controller: clb-ingress.io/ingress-controller\n  parameters: {{apiGroup: clb-ingress.io, kind: ClbClassParameters, name: {n}-params}}\n",
                n = c.name
            ));
        }
        for s in &self.services {
            docs.push(format!(
                "apiVersion: v1\nkind: Service\nmetadata: {{name: {n}, namespace: default}}\nspec:\n  selector: {{app: {n}}}\n  ports: [{{name: http, port: 80, targetPort: 8080, protocol: TCP}}]\n",
                n = s.name
            ));
            let mut eps = String::new();
            for ip in &s.pods {
                let _ = writeln!(
                    eps,
                    "  - addresses: [\"{ip}\"]\n    conditions: {{ready: true}}"
                );
            }
            if s.pods.is_empty() {
                eps.push_str("  []\n");
            }
            docs.push(format!(
                "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: {n}-slice\n  namespace: default\n  labels: {{kubernetes.io/service-name: {n}}}\naddressType: IPv4\nports: [{{name: http, port: 8080, protocol: TCP}}]\nendpoints:\n{eps}",
                n = s.name
            ));
        }
        for s in &self.secrets {
            docs.push(format!(
                "apiVersion: v1\nkind: Secret\nmetadata: {{name: {n}, namespace: default}}\ntype: kubernetes.io/tls\nstringData:\n  tls.crt: |\n{c}  tls.key: |\n{k}",
                n = s.name,
                c = indent_block(&s.cert_pem, "    "),
                k = indent_block(&s.key_pem, "    ")
            ));
        }
        for i in &self.ingresses {
            let mut doc = format!(
                "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: {}\n  namespace: default\n",
                i.name
            );
            if let Some(lb) = &i.exist_lb {
                let _ = writeln!(
                    doc,
                    "  annotations: {{kubernetes.io/ingress.existLbId: {lb}}}"
                );
            }
            let _ = writeln!(doc, "spec:\n  ingressClassName: {}", i.class);
            if let Some(secret) = &i.tls {
                let _ = writeln!(
                    doc,
                    "  tls:\n  - hosts: [{}]\n    secretName: {secret}",
                    i.host
                );
            }
            let _ = writeln!(
                doc,
                "  rules:\n  - host: {}\n    http:\n      paths:",
                i.host
            );
            for p in &i.paths {
                let _ = writeln!(
                    doc,
                    "      - {{path: {}, pathType: {}, backend: {{service: {{name: {}, port: {{number: 80}}}}}}}}",
                    p.path, p.kind, p.service
                );
            }
            docs.push(doc);
        }
        docs.join("---\n")
    }

    /// Render into `path`.
    pub fn write(&self, path: &Path) {
        std::fs::write(path, self.render()).expect("write manifests");
    }
}

/// `n` pod IPs `10.<a>.<b>.<1..=n>`.
pub fn pods(a: u8, b: u8, n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("10.{a}.{b}.{i}")).collect()
}
