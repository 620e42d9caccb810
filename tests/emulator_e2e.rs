//! End to end: the real `clb-ingress emulator` binary with its data plane, programmed only
//! through the signed API 3.0 by the crate's own `ClbClient` (documented test credentials), then
//! real HTTP and HTTPS requests to the VIP that DescribeLoadBalancers reports, on
//! `listener port + --port-offset`, landing on two echo servers on 127.0.0.1 or on the
//! emulator's own answer for a 10.x pod IP target.
//!
//! Each test starts its own emulator on a random `127.R.S.1` VIP base with a random port offset,
//! so tests (and other test binaries) run in parallel without sharing sockets. Nothing leaves
//! 127.0.0.0/8: the pod IP target is never connected to, the emulator answers for it.
//!
//! The CLB every routing test programs (CLB's documented matching, clb-api.md §7):
//!
//! HTTP listener 80, domains in creation order:
//! - `www.example.com` (first rule → DefaultServer): `=/api` → alpha, `/api` → beta,
//!   `^~/static` → alpha, `~*.PNG$` → pod 10.0.0.7:8080, `/docs/` → alpha, `/empty` → no target,
//!   `/mixed` → alpha + beta
//! - `exact.example.org`: `/` → alpha
//! - `*.example.org`: `/` → beta
//!
//! HTTPS listener 443 with SNI, certificates uploaded through the ssl service:
//! - `secure.example.com` (certificate A): `/` → alpha
//! - `*.shop.example.com` (certificate B): `/` → beta

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::process::Stdio;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use clb_ingress::clb::client::TaskWaitConfig;
use clb_ingress::clb::credentials::SecretString;
use clb_ingress::clb::retry::RetryPolicy;
use clb_ingress::clb::types::{
    CertificateInput, CreateListenerRequest, CreateLoadBalancerRequest, CreateRuleRequest,
    DescribeCertificatesRequest, DescribeListenersRequest, DescribeLoadBalancersRequest,
    DescribeTargetHealthRequest, ModifyLoadBalancerAttributesRequest, ModifyRuleRequest,
    RegisterTargetsRequest, RuleInput, Target, UploadCertificateRequest,
};
use clb_ingress::clb::{ClbClient, ClbError, ClientConfig, Credentials, Endpoint};
use clb_ingress::emulator::config::{DEFAULT_REGION, DEFAULT_SECRET_ID, DEFAULT_SECRET_KEY};
use rand::Rng;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

/// How long the emulator may take to print its address.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);
/// How long the data plane may take to apply the latest configuration.
const DATA_PLANE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long any single data plane request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// The emulator's task delay: tasks really are "running" for a while.
const TASK_DELAY_MS: u64 = 50;
/// Requests sent to see both backends of a two-target rule.
const SPLIT_SAMPLES: usize = 40;
/// The CLB listener ports; the data plane serves them at port + offset.
const HTTP_PORT: u16 = 80;
const HTTPS_PORT: u16 = 443;
/// The pod IP target (never connected to).
const POD_IP: &str = "10.0.0.7";
const POD_PORT: u16 = 8080;
/// The emulator's health-check probe interval (CLB's is seconds): a new loopback target is
/// healthy after 3 probes.
const PROBE_INTERVAL_MS: u64 = 20;
/// The admin token the emulator child is started with.
const ADMIN_TOKEN: &str = "emulator-e2e-admin-token";

// ---------------------------------------------------------------------------------------------
// The emulator process

/// A running `clb-ingress emulator` child process, killed (by its PID) when dropped.
struct Emulator {
    child: tokio::process::Child,
    api: SocketAddr,
    vip_base: Ipv4Addr,
    port_offset: u16,
    stderr: Arc<Mutex<String>>,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl Emulator {
    /// Start the binary on a free loopback API port, a random VIP base 127.R.S.1 (R >= 2, so
    /// never the default 127.1.x nor 127.0.x where the echo servers live) and a random port
    /// offset. `config` is written to a YAML file passed with `--config`.
    async fn start(config: &str) -> Self {
        let (vip_base, port_offset) = free_vip_and_offset();
        let dir = tempfile::tempdir().expect("a temporary directory");
        let config_path = dir.path().join("emulator.yaml");
        std::fs::write(&config_path, config).expect("write the emulator config");
        let mut child = tokio::process::Command::new(clb_test_support::emulator::bin())
            .arg("emulator")
            .args(["--listen", "127.0.0.1:0"])
            .args(["--vip-base", &vip_base.to_string()])
            .args(["--port-offset", &port_offset.to_string()])
            .args(["--task-delay-ms", &TASK_DELAY_MS.to_string()])
            .args(["--seed", "7"])
            .args(["--health-check-interval-ms", &PROBE_INTERVAL_MS.to_string()])
            .arg("--config")
            .arg(&config_path)
            .env_remove("CLB_EMULATOR_SECRET_ID")
            .env_remove("CLB_EMULATOR_SECRET_KEY")
            .env("CLB_EMULATOR_ADMIN_TOKEN", ADMIN_TOKEN)
            .env("CLB_INGRESS_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn clb-ingress emulator");
        let stderr = Arc::new(Mutex::new(String::new()));
        let err_pipe = child.stderr.take().expect("stderr pipe");
        let sink = stderr.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(err_pipe).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let mut text = sink.lock().unwrap_or_else(PoisonError::into_inner);
                text.push_str(&line);
                text.push('\n');
            }
        });
        let mut out = BufReader::new(child.stdout.take().expect("stdout pipe")).lines();
        let first = tokio::time::timeout(STARTUP_TIMEOUT, out.next_line()).await;
        // Keep reading stdout so the emulator never writes into a closed pipe.
        let line = match first {
            Ok(Ok(Some(line))) => line,
            other => {
                tokio::time::sleep(Duration::from_millis(200)).await;
                panic!(
                    "the emulator printed no address ({other:?}); stderr:\n{}",
                    stderr.lock().unwrap_or_else(PoisonError::into_inner)
                );
            }
        };
        tokio::spawn(async move { while let Ok(Some(_)) = out.next_line().await {} });
        // "clb-ingress emulator listening on http://127.0.0.1:PORT (region ..., ...)"
        let api = line
            .split_once("http://")
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .and_then(|addr| addr.parse().ok())
            .unwrap_or_else(|| panic!("no API address in the start line `{line}`"));
        assert!(
            line.contains(&format!("VIPs from {vip_base}"))
                && line.contains(&format!("CLB port + {port_offset}")),
            "the start line names the VIP base and the port offset: {line}"
        );
        Self {
            child,
            api,
            vip_base,
            port_offset,
            stderr,
            http: reqwest::Client::builder()
                .no_proxy()
                .timeout(REQUEST_TIMEOUT)
                .build()
                .expect("admin HTTP client"),
            _dir: dir,
        }
    }

    /// A typed client with the documented test credentials and the given retry policy.
    fn client(&self, retry: RetryPolicy) -> ClbClient {
        let mut config = ClientConfig::new(
            DEFAULT_REGION,
            Endpoint::parse(&format!("http://{}", self.api)).expect("endpoint"),
        );
        config.retry = retry;
        config.task_wait = TaskWaitConfig {
            initial: Duration::from_millis(20),
            cap: Duration::from_millis(200),
            timeout: Duration::from_secs(20),
        };
        let creds = Credentials::new(
            DEFAULT_SECRET_ID,
            SecretString::new(DEFAULT_SECRET_KEY),
            None,
        )
        .expect("credentials");
        ClbClient::builder(config, creds)
            .http_client(self.http.clone())
            .build()
            .expect("client")
    }

    /// An admin endpoint call (`/_emulator/<path>`), its JSON answer.
    async fn admin(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let url = format!("http://{}/_emulator/{path}", self.api);
        let mut request = self.http.request(method, url).bearer_auth(ADMIN_TOKEN);
        request = match body {
            Some(body) => request.json(&body),
            None => request.header(reqwest::header::CONTENT_TYPE, "application/json"),
        };
        let response = request.send().await.expect("admin request");
        assert!(
            response.status().is_success(),
            "admin {path}: {}",
            response.status()
        );
        response.json().await.expect("admin JSON")
    }

    /// Wait until the data plane has applied the latest configuration (every API change before
    /// this call) and has health-checked every target it has (none is `Unknown`: the data plane
    /// forwards only to healthy targets), and return its report.
    async fn data_plane_settled(&self) -> Value {
        let report = self.data_plane_applied().await;
        self.targets_probed().await;
        report
    }

    /// Wait until no target of any CLB is `Unknown` to the health checks.
    async fn targets_probed(&self) {
        let clb = self.client(RetryPolicy::default());
        let deadline = Instant::now() + DATA_PLANE_TIMEOUT;
        loop {
            let ids: Vec<String> = clb
                .describe_load_balancers(&DescribeLoadBalancersRequest::default())
                .await
                .expect("DescribeLoadBalancers")
                .into_iter()
                .map(|lb| lb.load_balancer_id)
                .collect();
            if ids.is_empty() {
                return;
            }
            let health = clb
                .describe_target_health(&DescribeTargetHealthRequest {
                    load_balancer_ids: ids,
                    ..Default::default()
                })
                .await
                .expect("DescribeTargetHealth");
            let unknown = health
                .iter()
                .flat_map(|lb| &lb.listeners)
                .flat_map(|l| &l.rules)
                .flat_map(|r| &r.targets)
                .any(|t| t.health_status_detail.as_deref() == Some("Unknown"));
            if !unknown {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "targets were not health-checked in time: {health:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Wait until the data plane has applied the latest configuration (every API change before
    /// this call) and return its report.
    async fn data_plane_applied(&self) -> Value {
        let deadline = Instant::now() + DATA_PLANE_TIMEOUT;
        loop {
            let report = self.admin(reqwest::Method::GET, "dataplane", None).await;
            if report["applied_generation"].as_u64() >= report["generation"].as_u64() {
                assert_eq!(
                    report["errors"],
                    json!([]),
                    "every listener is served; stderr:\n{}",
                    self.stderr()
                );
                return report;
            }
            assert!(
                Instant::now() < deadline,
                "the data plane did not apply the latest configuration: {report}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn stderr(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Kill the process (by its PID) and reap it.
    async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }
}

/// A random VIP base 127.R.S.1 and port offset whose data plane sockets (listener ports 80 and
/// 443) are free right now: probed by binding them, on loopback only.
fn free_vip_and_offset() -> (Ipv4Addr, u16) {
    let mut rng = rand::rng();
    for _ in 0..20 {
        let vip = Ipv4Addr::new(127, rng.random_range(2..=254), rng.random_range(0..=255), 1);
        let offset: u16 = rng.random_range(20_000..=50_000);
        let free = [HTTP_PORT, HTTPS_PORT]
            .iter()
            .all(|port| std::net::TcpListener::bind((vip, port + offset)).is_ok());
        if free {
            return (vip, offset);
        }
    }
    panic!("no free data plane ports on any random 127.R.S.1 VIP");
}

/// No retries at all: every injected error reaches the caller as it was answered.
fn no_retries() -> RetryPolicy {
    RetryPolicy {
        throttled_attempts: 1,
        busy_attempts: 1,
        transient_attempts: 1,
        ..RetryPolicy::default()
    }
}

/// The API error code of a failed call.
fn api_code<T: std::fmt::Debug>(result: Result<T, ClbError>) -> String {
    match result {
        Err(ClbError::Api { code, .. }) => code,
        other => panic!("expected an API error, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Echo servers and certificates

/// Start an echo server on 127.0.0.1 answering JSON with its own name and the request path.
async fn echo_server(name: &'static str) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("bind an echo server");
    let addr = listener.local_addr().expect("echo server address");
    let app = axum::Router::new().fallback(move |uri: axum::http::Uri| async move {
        axum::Json(json!({ "backend": name, "uri": uri.to_string() }))
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

/// A test CA (trusted by the HTTPS client) and the leaf certificates it signs.
struct TestPki {
    ca_pem: String,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

/// A leaf: PEM to upload, DER to compare with what the client was shown.
struct Leaf {
    cert_pem: String,
    key_pem: String,
    der: Vec<u8>,
}

impl TestPki {
    fn new() -> Self {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "clb-ingress e2e test CA");
        let key = rcgen::KeyPair::generate().expect("CA key");
        let cert = params.self_signed(&key).expect("CA certificate");
        Self {
            ca_pem: cert.pem(),
            issuer: rcgen::Issuer::new(params, key),
        }
    }

    fn leaf(&self, name: &str) -> Leaf {
        let mut params = rcgen::CertificateParams::new(vec![name.to_owned()]).expect("params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let key = rcgen::KeyPair::generate().expect("leaf key");
        let cert = params.signed_by(&key, &self.issuer).expect("leaf");
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().to_vec(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The programmed CLB

/// Every host name the tests send; all resolve to the CLB's VIP.
const HOSTS: &[&str] = &[
    "www.example.com",
    "unknown.test",
    "exact.example.org",
    "shop.example.org",
    "a.b.example.org",
    "secure.example.com",
    "x.shop.example.com",
];

/// An emulator with the CLB of the module docs programmed through the API.
struct World {
    emu: Emulator,
    api: ClbClient,
    lb: String,
    http_listener: String,
    /// LocationIds by the names used in the module docs.
    locations: BTreeMap<&'static str, String>,
    vip: Ipv4Addr,
    alpha: SocketAddr,
    beta: SocketAddr,
    cert_a: Leaf,
    cert_b: Leaf,
    /// Trusts only the test CA; records the peer certificate.
    web: reqwest::Client,
}

/// One data plane answer.
#[derive(Debug)]
struct Hit {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Value,
    peer_certificate: Vec<u8>,
}

impl Hit {
    /// The echo server that answered, or "" when none did.
    fn backend(&self) -> &str {
        self.body["backend"].as_str().unwrap_or("")
    }

    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

fn eni(addr: SocketAddr) -> Target {
    Target {
        port: i64::from(addr.port()),
        eni_ip: Some(addr.ip().to_string()),
        weight: Some(10),
        ..Default::default()
    }
}

fn rule(domain: &str, url: &str) -> RuleInput {
    RuleInput {
        domain: Some(domain.into()),
        url: url.into(),
        ..Default::default()
    }
}

impl World {
    async fn start() -> Self {
        Self::start_with_config("{}").await
    }

    async fn start_with_config(config: &str) -> Self {
        let emu = Emulator::start(config).await;
        let api = emu.client(RetryPolicy::default());
        let alpha = echo_server("alpha").await;
        let beta = echo_server("beta").await;
        let pki = TestPki::new();
        let cert_a = pki.leaf("secure.example.com");
        let cert_b = pki.leaf("*.shop.example.com");

        let lb = api
            .create_load_balancer_and_wait(&CreateLoadBalancerRequest {
                load_balancer_type: "OPEN".into(),
                load_balancer_name: Some("e2e".into()),
                ..Default::default()
            })
            .await
            .expect("CreateLoadBalancer and its task")
            .remove(0);

        // HTTP listener and its rules.
        let created = api
            .create_listener(&CreateListenerRequest {
                load_balancer_id: lb.clone(),
                ports: vec![i64::from(HTTP_PORT)],
                protocol: "HTTP".into(),
                ..Default::default()
            })
            .await
            .expect("CreateListener HTTP");
        api.wait_task(&created.request_id)
            .await
            .expect("HTTP listener task");
        let http_listener = created.data.listener_ids[0].clone();
        let www = "www.example.com";
        let names = [
            ("exact_api", rule(www, "=/api")),
            ("prefix_api", rule(www, "/api")),
            ("static", rule(www, "^~/static")),
            ("png", rule(www, "~*.PNG$")),
            ("docs", rule(www, "/docs/")),
            ("empty", rule(www, "/empty")),
            ("mixed", rule(www, "/mixed")),
            ("exact_org", rule("exact.example.org", "/")),
            ("wild_org", rule("*.example.org", "/")),
        ];
        let rules = api
            .create_rule(&CreateRuleRequest {
                load_balancer_id: lb.clone(),
                listener_id: http_listener.clone(),
                rules: names.iter().map(|(_, r)| r.clone()).collect(),
            })
            .await
            .expect("CreateRule HTTP");
        api.wait_task(&rules.request_id)
            .await
            .expect("HTTP rule task");
        let mut locations: BTreeMap<&'static str, String> = names
            .iter()
            .map(|(n, _)| *n)
            .zip(rules.data.location_ids)
            .collect();

        // HTTPS listener with SNI, certificates uploaded once through the ssl service.
        let upload = |leaf: &Leaf, alias: &str| UploadCertificateRequest {
            certificate_public_key: leaf.cert_pem.clone(),
            certificate_private_key: Some(leaf.key_pem.clone()),
            certificate_type: Some("SVR".into()),
            alias: Some(alias.into()),
            project_id: None,
        };
        let cert_a_id = api
            .upload_certificate(&upload(&cert_a, "secure"))
            .await
            .expect("UploadCertificate A");
        let cert_b_id = api
            .upload_certificate(&upload(&cert_b, "shop"))
            .await
            .expect("UploadCertificate B");
        let created = api
            .create_listener(&CreateListenerRequest {
                load_balancer_id: lb.clone(),
                ports: vec![i64::from(HTTPS_PORT)],
                protocol: "HTTPS".into(),
                sni_switch: Some(1),
                ..Default::default()
            })
            .await
            .expect("CreateListener HTTPS");
        api.wait_task(&created.request_id)
            .await
            .expect("HTTPS listener task");
        let https_listener = created.data.listener_ids[0].clone();
        let with_cert = |domain: &str, cert_id: &str| RuleInput {
            certificate: Some(CertificateInput {
                ssl_mode: Some("UNIDIRECTIONAL".into()),
                cert_id: Some(cert_id.into()),
                ..Default::default()
            }),
            ..rule(domain, "/")
        };
        let rules = api
            .create_rule(&CreateRuleRequest {
                load_balancer_id: lb.clone(),
                listener_id: https_listener.clone(),
                rules: vec![
                    with_cert("secure.example.com", &cert_a_id),
                    with_cert("*.shop.example.com", &cert_b_id),
                ],
            })
            .await
            .expect("CreateRule HTTPS");
        api.wait_task(&rules.request_id)
            .await
            .expect("HTTPS rule task");
        locations.insert("secure", rules.data.location_ids[0].clone());
        locations.insert("shop", rules.data.location_ids[1].clone());

        // Targets: echo servers on loopback, one pod IP; `/empty` gets none.
        let bind = [
            (http_listener.as_str(), "exact_api", vec![eni(alpha)]),
            (http_listener.as_str(), "prefix_api", vec![eni(beta)]),
            (http_listener.as_str(), "static", vec![eni(alpha)]),
            (
                http_listener.as_str(),
                "png",
                vec![Target {
                    port: i64::from(POD_PORT),
                    eni_ip: Some(POD_IP.into()),
                    weight: Some(10),
                    ..Default::default()
                }],
            ),
            (http_listener.as_str(), "docs", vec![eni(alpha)]),
            (http_listener.as_str(), "mixed", vec![eni(alpha), eni(beta)]),
            (http_listener.as_str(), "exact_org", vec![eni(alpha)]),
            (http_listener.as_str(), "wild_org", vec![eni(beta)]),
            (https_listener.as_str(), "secure", vec![eni(alpha)]),
            (https_listener.as_str(), "shop", vec![eni(beta)]),
        ];
        for (listener, name, targets) in bind {
            // Waits for each RegisterTargets task (DescribeTaskStatus polling).
            api.register_targets(&RegisterTargetsRequest {
                load_balancer_id: lb.clone(),
                listener_id: listener.to_owned(),
                targets,
                location_id: Some(locations[name].clone()),
                ..Default::default()
            })
            .await
            .unwrap_or_else(|e| panic!("RegisterTargets {name}: {e}"));
        }

        // The documented discovery: the VIP from DescribeLoadBalancers.
        let described = api
            .describe_load_balancers(&DescribeLoadBalancersRequest {
                load_balancer_ids: vec![lb.clone()],
                ..Default::default()
            })
            .await
            .expect("DescribeLoadBalancers");
        let vip: Ipv4Addr = described[0].load_balancer_vips[0]
            .parse()
            .expect("the VIP is an IPv4 address");
        emu.data_plane_settled().await;

        let mut web = reqwest::Client::builder()
            .use_rustls_tls()
            .no_proxy()
            .timeout(REQUEST_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .tls_info(true)
            .tls_built_in_root_certs(false)
            .add_root_certificate(
                reqwest::Certificate::from_pem(pki.ca_pem.as_bytes()).expect("CA PEM"),
            );
        for host in HOSTS {
            // reqwest ignores the port here; URLs carry the data plane port.
            web = web.resolve(host, SocketAddr::from((vip, 0)));
        }
        let web = web.build().expect("web client");
        Self {
            emu,
            api,
            lb,
            http_listener,
            locations,
            vip,
            alpha,
            beta,
            cert_a,
            cert_b,
            web,
        }
    }

    /// `VIP:(listener port + offset)`, the documented data plane address.
    fn socket_port(&self, listener_port: u16) -> u16 {
        listener_port + self.emu.port_offset
    }

    async fn send(&self, client: &reqwest::Client, url: String) -> Hit {
        let response = client
            .get(&url)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {url}: {e:?}"));
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let peer_certificate = response
            .extensions()
            .get::<reqwest::tls::TlsInfo>()
            .and_then(|info| info.peer_certificate())
            .map(<[u8]>::to_vec)
            .unwrap_or_default();
        let text = response.text().await.expect("response body");
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Hit {
            status,
            headers,
            body,
            peer_certificate,
        }
    }

    /// GET `http://host:PORT/path` on the HTTP listener.
    async fn http(&self, host: &str, path_and_query: &str) -> Hit {
        let url = format!(
            "http://{host}:{}{path_and_query}",
            self.socket_port(HTTP_PORT)
        );
        self.send(&self.web, url).await
    }

    /// GET `https://host:PORT/path` on the HTTPS listener, trusting only the test CA.
    async fn https(&self, host: &str, path_and_query: &str) -> Hit {
        let url = format!(
            "https://{host}:{}{path_and_query}",
            self.socket_port(HTTPS_PORT)
        );
        self.send(&self.web, url).await
    }

    /// Where requests for `path` on www.example.com land, over `n` requests.
    async fn backends_seen(&self, path: &str, n: usize) -> BTreeMap<String, usize> {
        let mut seen = BTreeMap::new();
        for _ in 0..n {
            let hit = self.http("www.example.com", path).await;
            let key = if hit.status == 200 {
                hit.backend().to_owned()
            } else {
                format!("status {}", hit.status)
            };
            *seen.entry(key).or_insert(0) += 1;
        }
        seen
    }

    async fn modify_rule_url(&self, name: &str, url: &str) -> Result<(), ClbError> {
        let reply = self
            .api
            .modify_rule(&ModifyRuleRequest {
                load_balancer_id: self.lb.clone(),
                listener_id: self.http_listener.clone(),
                location_id: self.locations[name].clone(),
                url: Some(url.into()),
                ..Default::default()
            })
            .await?;
        self.api.wait_task(&reply.request_id).await.map(|_| ())
    }
}

// ---------------------------------------------------------------------------------------------
// Discovery

#[tokio::test]
async fn each_listener_serves_on_the_described_vip_at_the_listener_port_plus_the_port_offset() {
    let w = World::start().await;
    assert_eq!(w.vip, w.emu.vip_base, "the first CLB gets the VIP base");
    let report = w.emu.data_plane_settled().await;
    assert_eq!(report["enabled"], true);
    assert_eq!(report["port_offset"], w.emu.port_offset);
    let mut served: Vec<(u64, String)> = report["listeners"]
        .as_array()
        .expect("listeners")
        .iter()
        .map(|l| {
            assert_eq!(l["lb_id"], w.lb.as_str());
            (
                l["port"].as_u64().expect("port"),
                l["addr"].as_str().expect("addr").to_owned(),
            )
        })
        .collect();
    served.sort();
    assert_eq!(
        served,
        vec![
            (
                u64::from(HTTP_PORT),
                format!("{}:{}", w.vip, w.socket_port(HTTP_PORT))
            ),
            (
                u64::from(HTTPS_PORT),
                format!("{}:{}", w.vip, w.socket_port(HTTPS_PORT))
            ),
        ]
    );
    let hit = w.http("www.example.com", "/api").await;
    assert_eq!(hit.status, 200, "{hit:?}");
    assert_eq!(hit.header("x-clb-lb"), w.lb);
    assert_eq!(hit.header("x-clb-listener"), w.http_listener);
    w.emu.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Domains

#[tokio::test]
async fn an_exact_domain_beats_a_wildcard_which_matches_at_any_depth() {
    let w = World::start().await;
    let exact = w.http("exact.example.org", "/x").await;
    assert_eq!((exact.status, exact.backend()), (200, "alpha"), "{exact:?}");
    assert_eq!(exact.header("x-clb-domain"), "exact.example.org");
    for host in ["shop.example.org", "a.b.example.org"] {
        let wild = w.http(host, "/x").await;
        assert_eq!((wild.status, wild.backend()), (200, "beta"), "{wild:?}");
        assert_eq!(wild.header("x-clb-domain"), "*.example.org");
        assert_eq!(wild.header("x-clb-location"), w.locations["wild_org"]);
    }
    w.emu.stop().await;
}

#[tokio::test]
async fn a_host_no_domain_matches_is_routed_by_the_default_domain() {
    let w = World::start().await;
    let hit = w.http("unknown.test", "/api").await;
    assert_eq!((hit.status, hit.backend()), (200, "alpha"), "{hit:?}");
    assert_eq!(hit.header("x-clb-domain"), "www.example.com");
    assert_eq!(hit.header("x-clb-url"), "=/api");
    w.emu.stop().await;
}

// ---------------------------------------------------------------------------------------------
// URLs

#[tokio::test]
async fn an_exact_url_beats_the_prefix_it_equals() {
    let w = World::start().await;
    let exact = w.http("www.example.com", "/api").await;
    assert_eq!((exact.status, exact.backend()), (200, "alpha"), "{exact:?}");
    assert_eq!(exact.header("x-clb-url"), "=/api");
    let prefix = w.http("www.example.com", "/api/users?page=2").await;
    assert_eq!(
        (prefix.status, prefix.backend()),
        (200, "beta"),
        "{prefix:?}"
    );
    assert_eq!(prefix.header("x-clb-url"), "/api");
    assert_eq!(prefix.body["uri"], "/api/users?page=2", "proxied as sent");
    w.emu.stop().await;
}

#[tokio::test]
async fn a_regex_beats_a_plain_prefix_but_not_a_caret_tilde_prefix() {
    let w = World::start().await;
    let regex = w.http("www.example.com", "/api/logo.png").await;
    assert_eq!(regex.status, 200, "{regex:?}");
    assert_eq!(
        regex.header("x-clb-url"),
        "~*.PNG$",
        "case-insensitive regex"
    );
    assert_eq!(regex.body["target_ip"], POD_IP);
    let stopped = w.http("www.example.com", "/static/logo.png").await;
    assert_eq!(
        (stopped.status, stopped.backend()),
        (200, "alpha"),
        "{stopped:?}"
    );
    assert_eq!(stopped.header("x-clb-url"), "^~/static");
    w.emu.stop().await;
}

#[tokio::test]
async fn a_pod_ip_target_is_answered_by_the_emulator_naming_the_clb_listener_domain_rule_and_target()
 {
    let w = World::start().await;
    let hit = w.http("www.example.com", "/img/a.PNG").await;
    assert_eq!(hit.status, 200, "{hit:?}");
    assert_eq!(hit.header("x-clb-answered-by"), "synthetic");
    assert_eq!(hit.body["answered_by"], "clb-emulator");
    assert_eq!(hit.body["lb_id"], w.lb.as_str());
    assert_eq!(hit.body["listener_id"], w.http_listener.as_str());
    assert_eq!(hit.body["domain"], "www.example.com");
    assert_eq!(hit.body["url"], "~*.PNG$");
    assert_eq!(hit.body["location_id"], w.locations["png"].as_str());
    assert_eq!(hit.body["target_ip"], POD_IP);
    assert_eq!(hit.body["target_port"], POD_PORT);
    assert_eq!(hit.header("x-clb-target"), format!("{POD_IP}:{POD_PORT}"));
    w.emu.stop().await;
}

#[tokio::test]
async fn a_url_missing_only_its_trailing_slash_gets_a_301_to_the_slashed_url() {
    let w = World::start().await;
    let port = w.socket_port(HTTP_PORT);
    let redirect = w.http("www.example.com", "/docs").await;
    assert_eq!(redirect.status, 301, "{redirect:?}");
    assert_eq!(
        redirect.header("location"),
        format!("http://www.example.com:{port}/docs/")
    );
    let with_query = w.http("www.example.com", "/docs?v=1").await;
    assert_eq!(with_query.status, 301, "{with_query:?}");
    assert_eq!(
        with_query.header("location"),
        format!("http://www.example.com:{port}/docs/?v=1"),
        "the query string is kept"
    );
    let slashed = w.http("www.example.com", "/docs/").await;
    assert_eq!(
        (slashed.status, slashed.backend()),
        (200, "alpha"),
        "{slashed:?}"
    );
    w.emu.stop().await;
}

#[tokio::test]
async fn a_path_no_url_matches_gets_404_and_a_rule_without_targets_gets_503() {
    let w = World::start().await;
    let missing = w.http("www.example.com", "/nothing/here").await;
    assert_eq!(missing.status, 404, "{missing:?}");
    assert_eq!(missing.header("x-clb-domain"), "www.example.com");
    let empty = w.http("www.example.com", "/empty").await;
    assert_eq!(empty.status, 503, "{empty:?}");
    assert_eq!(empty.header("x-clb-location"), w.locations["empty"]);
    w.emu.stop().await;
}

// ---------------------------------------------------------------------------------------------
// HTTPS and SNI

#[tokio::test]
async fn sni_presents_each_domains_uploaded_certificate_and_routes_by_the_same_domain() {
    let w = World::start().await;
    let secure = w.https("secure.example.com", "/").await;
    assert_eq!(
        (secure.status, secure.backend()),
        (200, "alpha"),
        "{secure:?}"
    );
    assert!(
        secure.peer_certificate == w.cert_a.der,
        "secure.example.com is served certificate A"
    );
    let shop = w.https("x.shop.example.com", "/").await;
    assert_eq!((shop.status, shop.backend()), (200, "beta"), "{shop:?}");
    assert!(
        shop.peer_certificate == w.cert_b.der,
        "x.shop.example.com is served certificate B"
    );
    assert_eq!(shop.header("x-clb-domain"), "*.shop.example.com");
    w.emu.stop().await;
}

#[tokio::test]
async fn an_unknown_sni_name_gets_the_default_domains_certificate_and_routing() {
    let w = World::start().await;
    // Certificate A does not name unknown.test, so only a client that skips verification can
    // look at it (the emulator's documented choice for a name no domain matches).
    let insecure = reqwest::Client::builder()
        .use_rustls_tls()
        .no_proxy()
        .timeout(REQUEST_TIMEOUT)
        .tls_info(true)
        .danger_accept_invalid_certs(true)
        .resolve("unknown.test", SocketAddr::from((w.vip, 0)))
        .build()
        .expect("client");
    let url = format!("https://unknown.test:{}/", w.socket_port(HTTPS_PORT));
    let hit = w.send(&insecure, url).await;
    assert_eq!((hit.status, hit.backend()), (200, "alpha"), "{hit:?}");
    assert!(hit.peer_certificate == w.cert_a.der, "certificate A");
    // A client that verifies refuses that certificate for this name.
    let verified = w
        .web
        .get(format!(
            "https://unknown.test:{}/",
            w.socket_port(HTTPS_PORT)
        ))
        .send()
        .await;
    assert!(verified.is_err(), "{verified:?}");
    w.emu.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Changes through the API

#[tokio::test]
async fn modify_rule_moves_traffic_to_the_new_url_only_when_its_task_succeeds() {
    let w = World::start().await;
    assert_eq!(w.http("www.example.com", "/v1/users").await.status, 404);

    // An injected task failure: the call is accepted, its task fails, nothing changes.
    w.emu
        .admin(
            reqwest::Method::PUT,
            "faults",
            Some(json!({"task_failure": {"ModifyRule": 1.0}})),
        )
        .await;
    let failed = w.modify_rule_url("prefix_api", "/v1").await;
    assert!(
        matches!(failed, Err(ClbError::TaskFailed { .. })),
        "{failed:?}"
    );
    w.emu.data_plane_settled().await;
    let still = w.http("www.example.com", "/api/users").await;
    assert_eq!((still.status, still.backend()), (200, "beta"), "{still:?}");
    assert_eq!(w.http("www.example.com", "/v1/users").await.status, 404);

    w.emu
        .admin(reqwest::Method::PUT, "faults", Some(json!({})))
        .await;
    w.modify_rule_url("prefix_api", "/v1")
        .await
        .expect("ModifyRule and its task");
    w.emu.data_plane_settled().await;
    let moved = w.http("www.example.com", "/v1/users").await;
    assert_eq!((moved.status, moved.backend()), (200, "beta"), "{moved:?}");
    assert_eq!(moved.header("x-clb-url"), "/v1");
    let gone = w.http("www.example.com", "/api/users").await;
    assert_eq!(
        gone.status, 404,
        "the old prefix no longer routes: {gone:?}"
    );
    w.emu.stop().await;
}

#[tokio::test]
async fn deregister_targets_takes_a_backend_out_of_rotation_and_the_last_one_leaves_503() {
    let w = World::start().await;
    let before = w.backends_seen("/mixed", SPLIT_SAMPLES).await;
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        vec!["alpha", "beta"],
        "both targets serve: {before:?}"
    );
    let deregister = |target: SocketAddr| RegisterTargetsRequest {
        load_balancer_id: w.lb.clone(),
        listener_id: w.http_listener.clone(),
        targets: vec![eni(target)],
        location_id: Some(w.locations["mixed"].clone()),
        ..Default::default()
    };
    w.api
        .deregister_targets(&deregister(w.alpha))
        .await
        .expect("DeregisterTargets alpha");
    w.emu.data_plane_settled().await;
    let after = w.backends_seen("/mixed", SPLIT_SAMPLES).await;
    assert_eq!(
        after,
        BTreeMap::from([("beta".to_owned(), SPLIT_SAMPLES)]),
        "only beta is left"
    );
    w.api
        .deregister_targets(&deregister(w.beta))
        .await
        .expect("DeregisterTargets beta");
    w.emu.data_plane_settled().await;
    assert_eq!(w.http("www.example.com", "/mixed").await.status, 503);
    w.emu.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Faults

#[tokio::test]
async fn each_fault_kind_set_in_the_config_file_reaches_the_typed_client() {
    let emu = Emulator::start(
        r#"
faults:
  pause_tasks: true
  request_limit_exceeded: {DescribeQuota: 1.0}
  internal_error: {DescribeCertificates: 1.0}
  resource_in_operating: {ModifyLoadBalancerAttributes: 1.0}
  task_failure: {CreateListener: 1.0}
  latency_ms: {DescribeLoadBalancers: 300}
"#,
    )
    .await;
    let api = emu.client(no_retries());

    // Pause: the CreateLoadBalancer task stays running well past the task delay.
    let created = api
        .create_load_balancer(&CreateLoadBalancerRequest {
            load_balancer_type: "OPEN".into(),
            ..Default::default()
        })
        .await
        .expect("CreateLoadBalancer");
    let lb = created.data.load_balancer_ids[0].clone();
    tokio::time::sleep(Duration::from_millis(TASK_DELAY_MS * 4)).await;
    let status = api
        .describe_task_status(&created.request_id)
        .await
        .expect("DescribeTaskStatus");
    assert_eq!(status.status, 2, "a paused task stays running");
    emu.admin(reqwest::Method::POST, "resume", None).await;
    api.wait_task(&created.request_id)
        .await
        .expect("the task finishes once resumed");

    assert_eq!(api_code(api.describe_quota().await), "RequestLimitExceeded");
    assert_eq!(
        api_code(
            api.describe_certificates(&DescribeCertificatesRequest::default())
                .await
        ),
        "InternalError"
    );
    assert_eq!(
        api_code(
            api.modify_load_balancer_attributes(&ModifyLoadBalancerAttributesRequest {
                load_balancer_id: lb.clone(),
                load_balancer_name: Some("renamed".into()),
                ..Default::default()
            })
            .await
        ),
        "FailedOperation.ResourceInOperating"
    );

    let listener = api
        .create_listener(&CreateListenerRequest {
            load_balancer_id: lb.clone(),
            ports: vec![i64::from(HTTP_PORT)],
            protocol: "HTTP".into(),
            ..Default::default()
        })
        .await
        .expect("CreateListener is accepted");
    let failed = api.wait_task(&listener.request_id).await;
    assert!(
        matches!(failed, Err(ClbError::TaskFailed { .. })),
        "{failed:?}"
    );
    let listeners = api
        .describe_listeners(&DescribeListenersRequest {
            load_balancer_id: lb.clone(),
            ..Default::default()
        })
        .await
        .expect("DescribeListeners");
    assert!(listeners.is_empty(), "the failed task left no listener");
    let report = emu.data_plane_settled().await;
    assert_eq!(report["listeners"], json!([]), "and nothing is served");

    let t0 = Instant::now();
    api.describe_load_balancers(&DescribeLoadBalancersRequest {
        load_balancer_ids: vec![lb],
        ..Default::default()
    })
    .await
    .expect("DescribeLoadBalancers");
    assert!(
        t0.elapsed() >= Duration::from_millis(300),
        "latency is added: {:?}",
        t0.elapsed()
    );
    emu.stop().await;
}
