//! The emulator's API 3.0 control plane driven over real HTTP with a TC3-signing test client:
//! resources, tasks and locks, limits, faults, auth errors, admin endpoint, persistence.

use std::sync::Arc;
use std::time::Duration;

use clb_ingress::clb::sign;
use clb_ingress::emulator::config::Settings;
use clb_ingress::emulator::core::SystemClock;
use clb_ingress::emulator::server::{self, NoPlane, Running};
use serde_json::{Value, json};

const ID: &str = "AKIDTEST000000000000000000000000000001";
const KEY: &str = "TESTsecretKEY0000000000000000000001";
const REGION: &str = "ap-guangzhou";
/// How long tests wait for a task before failing.
const TASK_WAIT: Duration = Duration::from_secs(10);
/// Task polling interval: stays under the default 20 rps limit of DescribeTaskStatus.
const POLL_INTERVAL: Duration = Duration::from_millis(60);

fn settings() -> Settings {
    let mut s = Settings {
        listen: "127.0.0.1:0".parse().expect("addr"),
        seed: Some(7),
        task_delay_ms: 30,
        ..Settings::default()
    };
    s.credentials[0].secret_id = ID.into();
    s.credentials[0].secret_key = KEY.into();
    s
}

async fn start(s: Settings) -> Running {
    server::start(s, Arc::new(SystemClock), Arc::new(NoPlane))
        .await
        .expect("emulator starts")
}

/// Knobs for one signed call.
#[derive(Clone)]
struct Opts {
    id: String,
    key: String,
    service: String,
    version: String,
    ts_offset: i64,
    tamper: bool,
}

impl Default for Opts {
    fn default() -> Self {
        Self {
            id: ID.into(),
            key: KEY.into(),
            service: "clb".into(),
            version: "2018-03-17".into(),
            ts_offset: 0,
            tamper: false,
        }
    }
}

struct Api {
    base: String,
    host: String,
    admin_token: String,
    http: reqwest::Client,
}

impl Api {
    fn new(r: &Running) -> Self {
        Self {
            base: format!("http://{}/", r.addr),
            host: r.addr.to_string(),
            admin_token: r.admin_token().to_string(),
            http: reqwest::Client::new(),
        }
    }

    async fn call_with(&self, action: &str, body: Value, o: &Opts) -> Value {
        let payload = serde_json::to_vec(&body).expect("json");
        let ts = jiff::Timestamp::now().as_second() + o.ts_offset;
        let sig = sign::sign(
            &sign::SigningInput {
                method: "POST",
                query: "",
                headers: &[("content-type", "application/json"), ("host", &self.host)],
                payload: &payload,
                service: &o.service,
                timestamp: ts,
            },
            &o.key,
        );
        let mut auth = sign::authorization(&o.id, &sig);
        if o.tamper {
            let last = auth.pop().expect("non-empty");
            auth.push(if last == '0' { '1' } else { '0' });
        }
        let resp = self
            .http
            .post(&self.base)
            .header("Content-Type", "application/json")
            .header("Authorization", auth)
            .header("X-TC-Action", action)
            .header("X-TC-Version", &o.version)
            .header("X-TC-Timestamp", ts.to_string())
            .header("X-TC-Region", REGION)
            .body(payload)
            .send()
            .await
            .expect("request");
        assert_eq!(resp.status(), 200, "the API always answers HTTP 200");
        let v: Value = resp.json().await.expect("json body");
        let r = v["Response"].clone();
        assert!(
            r["RequestId"].as_str().is_some_and(|s| s.len() == 36),
            "every response has a UUID RequestId: {v}"
        );
        r
    }

    async fn call(&self, action: &str, body: Value) -> Value {
        self.call_with(action, body, &Opts::default()).await
    }

    /// Call and require success.
    async fn ok(&self, action: &str, body: Value) -> Value {
        let r = self.call(action, body).await;
        assert!(r.get("Error").is_none(), "{action} failed: {r}");
        r
    }

    /// Call and return the error code ("" on success).
    async fn code(&self, action: &str, body: Value) -> String {
        let r = self.call(action, body).await;
        r["Error"]["Code"].as_str().unwrap_or_default().to_string()
    }

    async fn wait_task(&self, task: &str) -> i64 {
        let deadline = tokio::time::Instant::now() + TASK_WAIT;
        loop {
            let r = self.ok("DescribeTaskStatus", json!({"TaskId": task})).await;
            let s = r["Status"].as_i64().expect("status");
            if s != 2 {
                return s;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "task {task} never finished"
            );
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// Call an async write, require success and wait for its task to succeed.
    async fn write(&self, action: &str, body: Value) -> Value {
        let r = self.ok(action, body).await;
        let id = r["RequestId"].as_str().expect("id").to_string();
        assert_eq!(self.wait_task(&id).await, 0, "{action} task failed");
        r
    }

    async fn admin(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut req = self
            .http
            .request(method, format!("{}_emulator/{path}", self.base))
            .bearer_auth(&self.admin_token);
        req = match body {
            Some(b) => req.json(&b),
            None => req.header(reqwest::header::CONTENT_TYPE, "application/json"),
        };
        let resp = req.send().await.expect("admin request");
        assert!(
            resp.status().is_success(),
            "admin {path}: {}",
            resp.status()
        );
        resp.json().await.expect("admin json")
    }

    async fn new_lb(&self) -> String {
        let r = self
            .write("CreateLoadBalancer", json!({"LoadBalancerType": "OPEN"}))
            .await;
        r["LoadBalancerIds"][0].as_str().expect("id").to_string()
    }

    async fn new_listener(&self, lb: &str, protocol: &str, port: i64) -> String {
        let r = self
            .write(
                "CreateListener",
                json!({"LoadBalancerId": lb, "Ports": [port], "Protocol": protocol}),
            )
            .await;
        r["ListenerIds"][0].as_str().expect("id").to_string()
    }
}

fn is_id(s: &str, prefix: &str) -> bool {
    s.strip_prefix(prefix).is_some_and(|r| {
        r.len() == 8
            && r.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    })
}

#[tokio::test]
async fn a_created_clb_is_described_with_a_loopback_vip_tags_and_running_status() {
    let emu = start(settings()).await;
    let api = Api::new(&emu);
    let r = api
        .write(
            "CreateLoadBalancer",
            json!({"LoadBalancerType": "OPEN", "LoadBalancerName": "web",
                   "Tags": [{"TagKey": "owner", "TagValue": "team-a"}]}),
        )
        .await;
    let lb = r["LoadBalancerIds"][0].as_str().expect("id");
    assert!(is_id(lb, "lb-"), "{lb}");
    let d = api
        .ok("DescribeLoadBalancers", json!({"LoadBalancerIds": [lb]}))
        .await;
    assert_eq!(d["TotalCount"], 1);
    let set = &d["LoadBalancerSet"][0];
    assert_eq!(set["LoadBalancerName"], "web");
    assert_eq!(set["LoadBalancerVips"][0], "127.1.0.1");
    assert_eq!(set["Status"], 1);
    assert_eq!(set["Tags"][0]["TagValue"], "team-a");
    emu.stop().await;
}

#[tokio::test]
async fn describe_load_balancers_filters_by_tag_pages_and_returns_empty_for_unknown_ids() {
    let emu = start(settings()).await;
    let api = Api::new(&emu);
    for owner in ["a", "b", "a"] {
        api.write(
            "CreateLoadBalancer",
            json!({"LoadBalancerType": "OPEN", "Tags": [{"TagKey": "owner", "TagValue": owner}]}),
        )
        .await;
    }
    let tagged = api
        .ok(
            "DescribeLoadBalancers",
            json!({"Filters": [{"Name": "tag:owner", "Values": ["a"]}], "Limit": 1}),
        )
        .await;
    assert_eq!(tagged["TotalCount"], 2, "TotalCount ignores Limit");
    assert_eq!(tagged["LoadBalancerSet"].as_array().map(Vec::len), Some(1));
    let by_key = api
        .ok(
            "DescribeLoadBalancers",
            json!({"Filters": [{"Name": "tag-key", "Values": ["owner"]}]}),
        )
        .await;
    assert_eq!(by_key["TotalCount"], 3);
    let none = api
        .ok(
            "DescribeLoadBalancers",
            json!({"LoadBalancerIds": ["lb-00000000"]}),
        )
        .await;
    assert_eq!(none["TotalCount"], 0);
    assert_eq!(none["LoadBalancerSet"], json!([]));
    emu.stop().await;
}

#[tokio::test]
async fn listeners_rules_and_targets_round_trip_and_the_first_rule_is_the_default_domain() {
    let emu = start(settings()).await;
    let api = Api::new(&emu);
    let lb = api.new_lb().await;
    let lbl = api.new_listener(&lb, "HTTP", 80).await;
    assert!(is_id(&lbl, "lbl-"));
    let rules = api
        .write(
            "CreateRule",
            json!({"LoadBalancerId": lb, "ListenerId": lbl, "Rules": [
                {"Domain": "a.example.com", "Url": "/"},
                {"Domain": "b.example.com", "Url": "/api"}]}),
        )
        .await;
    let locs: Vec<String> = rules["LocationIds"]
        .as_array()
        .expect("ids")
        .iter()
        .map(|v| v.as_str().expect("str").to_string())
        .collect();
    assert_eq!(locs.len(), 2);
    assert!(locs.iter().all(|l| is_id(l, "loc-")));
    api.write(
        "RegisterTargets",
        json!({"LoadBalancerId": lb, "ListenerId": lbl, "LocationId": locs[1],
               "Targets": [{"EniIp": "10.0.0.5", "Port": 8080}, {"InstanceId": "ins-abcdefgh", "Port": 80, "Weight": 0}]}),
    )
    .await;
    let d = api
        .ok("DescribeListeners", json!({"LoadBalancerId": lb}))
        .await;
    let got = &d["Listeners"][0]["Rules"];
    assert_eq!(got[0]["LocationId"], locs[0].as_str());
    assert_eq!(got[0]["DefaultServer"], true);
    assert_eq!(got[1]["DefaultServer"], false);
    let t = api
        .ok("DescribeTargets", json!({"LoadBalancerId": lb}))
        .await;
    let targets = &t["Listeners"][0]["Rules"][1]["Targets"];
    assert_eq!(targets[0]["PrivateIpAddresses"][0], "10.0.0.5");
    assert_eq!(targets[0]["Weight"], 10, "weight defaults to 10");
    assert_eq!(targets[1]["Weight"], 0);
    let ins_ip = targets[1]["PrivateIpAddresses"][0].as_str().expect("ip");
    assert!(
        ins_ip.starts_with("10."),
        "instances get a fake 10.x IP: {ins_ip}"
    );
    // Domain + Url addressing, and the duplicate check.
    assert_eq!(
        api.code(
            "RegisterTargets",
            json!({"LoadBalancerId": lb, "ListenerId": lbl, "Domain": "b.example.com", "Url": "/api",
                   "Targets": [{"EniIp": "10.0.0.5", "Port": 8080}]}),
        )
        .await,
        "InvalidParameterValue.Duplicate"
    );
    assert_eq!(
        api.code(
            "RegisterTargets",
            json!({"LoadBalancerId": lb, "ListenerId": lbl,
                   "Targets": [{"EniIp": "10.0.0.6", "Port": 8080}]}),
        )
        .await,
        "InvalidParameter",
        "L7 target ops need LocationId or Domain+Url"
    );
    assert_eq!(
        api.code(
            "RegisterTargets",
            json!({"LoadBalancerId": lb, "ListenerId": lbl, "LocationId": locs[0],
                   "Targets": [{"EniIp": "10.0.0.6", "InstanceId": "ins-abcdefgh", "Port": 8080}]}),
        )
        .await,
        "InvalidParameterCombination"
    );
    emu.stop().await;
}

#[tokio::test]
async fn deleting_the_default_domain_moves_the_default_to_the_earliest_remaining_domain() {
    let emu = start(settings()).await;
    let api = Api::new(&emu);
    let lb = api.new_lb().await;
    let lbl = api.new_listener(&lb, "HTTP", 80).await;
    api.write(
        "CreateRule",
        json!({"LoadBalancerId": lb, "ListenerId": lbl, "Rules": [
            {"Domain": "a.com", "Url": "/"}, {"Domain": "b.com", "Url": "/"}, {"Domain": "c.com", "Url": "/"}]}),
    )
    .await;
    api.write(
        "DeleteRule",
        json!({"LoadBalancerId": lb, "ListenerId": lbl, "Domain": "a.com", "Url": "/"}),
    )
    .await;
    let d = api
        .ok("DescribeListeners", json!({"LoadBalancerId": lb}))
        .await;
    let rules = d["Listeners"][0]["Rules"]
        .as_array()
        .expect("rules")
        .clone();
    let default: Vec<&str> = rules
        .iter()
        .filter(|r| r["DefaultServer"] == true)
        .map(|r| r["Domain"].as_str().expect("domain"))
        .collect();
    assert_eq!(default, vec!["b.com"]);
    api.write(
        "ModifyDomainAttributes",
        json!({"LoadBalancerId": lb, "ListenerId": lbl, "Domain": "c.com", "DefaultServer": true}),
    )
    .await;
    let d = api
        .ok("DescribeListeners", json!({"LoadBalancerId": lb}))
        .await;
    let defaults: Vec<Value> = d["Listeners"][0]["Rules"]
        .as_array()
        .expect("rules")
        .iter()
        .filter(|r| r["DefaultServer"] == true)
        .map(|r| r["Domain"].clone())
        .collect();
    assert_eq!(defaults, vec![json!("c.com")]);
    emu.stop().await;
}

#[tokio::test]
async fn a_write_while_a_task_runs_gets_resource_in_operating_until_the_task_ends() {
    let emu = start(settings()).await;
    let api = Api::new(&emu);
    let lb = api.new_lb().await;
    api.admin(reqwest::Method::POST, "pause", None).await;
    let r = api
        .ok(
            "CreateListener",
            json!({"LoadBalancerId": lb, "Ports": [80], "Protocol": "HTTP"}),
        )
        .await;
    let task = r["RequestId"].as_str().expect("id").to_string();
    let busy = api
        .call(
            "CreateListener",
            json!({"LoadBalancerId": lb, "Ports": [81], "Protocol": "HTTP"}),
        )
        .await;
    assert_eq!(busy["Error"]["Code"], "FailedOperation.ResourceInOperating");
    assert_eq!(
        busy["Error"]["Message"],
        format!(
            "Loadbalancer({lb}) is not in normal desState, maybe some tasks are being processed, please try later."
        )
    );
    let status = api.ok("DescribeTaskStatus", json!({"TaskId": task})).await;
    assert_eq!(status["Status"], 2, "paused tasks stay running");
    // Batch registration is synchronous but still takes the lock.
    assert_eq!(
        api.code(
            "BatchRegisterTargets",
            json!({"LoadBalancerId": lb, "Targets": [{"ListenerId": "lbl-00000000", "Port": 80, "EniIp": "10.0.0.1"}]}),
        )
        .await,
        "FailedOperation.ResourceInOperating"
    );
    // Reads still work while busy.
    api.ok("DescribeListeners", json!({"LoadBalancerId": lb}))
        .await;
    api.admin(reqwest::Method::POST, "resume", None).await;
    assert_eq!(api.wait_task(&task).await, 0);
    api.write(
        "CreateListener",
        json!({"LoadBalancerId": lb, "Ports": [81], "Protocol": "HTTP"}),
    )
    .await;
    emu.stop().await;
}

#[tokio::test]
async fn the_per_action_rate_limit_refuses_calls_beyond_the_limit_in_one_second() {
    let mut s = settings();
    s.rate_limit = 3;
    let emu = start(s).await;
    let api = Api::new(&emu);
    let mut codes = Vec::new();
    for _ in 0..10 {
        codes.push(api.code("DescribeQuota", json!({})).await);
    }
    assert!(
        codes.iter().any(|c| c == "RequestLimitExceeded"),
        "10 quick calls exceed 3/s: {codes:?}"
    );
    assert!(codes.iter().filter(|c| c.is_empty()).count() >= 3);
    // Another action has its own budget.
    assert_eq!(api.code("DescribeLoadBalancers", json!({})).await, "");
    emu.stop().await;
}

#[tokio::test]
async fn quotas_and_per_call_caps_are_enforced() {
    let mut s = settings();
    s.quotas.listeners_per_lb = 2;
    s.quotas.rules_per_listener = 2;
    s.quotas.targets_per_rule = 2;
    s.quotas.open_clb = 1;
    let emu = start(s).await;
    let api = Api::new(&emu);
    let quota = api.ok("DescribeQuota", json!({})).await;
    let listener_quota = quota["QuotaSet"]
        .as_array()
        .expect("set")
        .iter()
        .find(|q| q["QuotaId"] == "TOTAL_LISTENER_QUOTA")
        .expect("listener quota")
        .clone();
    assert_eq!(listener_quota["QuotaLimit"], 2);
    let lb = api.new_lb().await;
    assert_eq!(
        api.code("CreateLoadBalancer", json!({"LoadBalancerType": "OPEN"}))
            .await,
        "LimitExceeded"
    );
    assert_eq!(
        api.code(
            "CreateListener",
            json!({"LoadBalancerId": lb, "Ports": [80, 81, 82], "Protocol": "HTTP"}),
        )
        .await,
        "LimitExceeded"
    );
    let lbl = api.new_listener(&lb, "HTTP", 80).await;
    assert_eq!(
        api.code(
            "CreateRule",
            json!({"LoadBalancerId": lb, "ListenerId": lbl, "Rules": [
                {"Domain": "a.com", "Url": "/1"}, {"Domain": "a.com", "Url": "/2"}, {"Domain": "a.com", "Url": "/3"}]}),
        )
        .await,
        "LimitExceeded"
    );
    let r = api
        .write(
            "CreateRule",
            json!({"LoadBalancerId": lb, "ListenerId": lbl, "Rules": [{"Domain": "a.com", "Url": "/"}]}),
        )
        .await;
    let loc = r["LocationIds"][0].as_str().expect("loc").to_string();
    let three: Vec<Value> = (1..=3)
        .map(|i| json!({"EniIp": format!("10.0.0.{i}"), "Port": 80}))
        .collect();
    assert_eq!(
        api.code(
            "RegisterTargets",
            json!({"LoadBalancerId": lb, "ListenerId": lbl, "LocationId": loc, "Targets": three}),
        )
        .await,
        "LimitExceeded"
    );
    let twenty_one: Vec<Value> = (1..=21)
        .map(|i| json!({"EniIp": format!("10.0.1.{i}"), "Port": 80}))
        .collect();
    assert_eq!(
        api.code(
            "RegisterTargets",
            json!({"LoadBalancerId": lb, "ListenerId": lbl, "LocationId": loc, "Targets": twenty_one}),
        )
        .await,
        "InvalidParameterValue.Length"
    );
    emu.stop().await;
}

#[tokio::test]
async fn port_conflicts_duplicate_rules_bad_syntax_and_unknown_ids_get_the_documented_codes() {
    let emu = start(settings()).await;
    let api = Api::new(&emu);
    let lb = api.new_lb().await;
    let lbl = api.new_listener(&lb, "HTTP", 80).await;
    assert_eq!(
        api.code(
            "CreateListener",
            json!({"LoadBalancerId": lb, "Ports": [80], "Protocol": "HTTPS", "SniSwitch": 1}),
        )
        .await,
        "InvalidParameter.PortCheckFailed"
    );
    api.write(
        "CreateRule",
        json!({"LoadBalancerId": lb, "ListenerId": lbl, "Rules": [{"Domain": "a.com", "Url": "/x"}]}),
    )
    .await;
    assert_eq!(
        api.code(
            "CreateRule",
            json!({"LoadBalancerId": lb, "ListenerId": lbl, "Rules": [{"Domain": "a.com", "Url": "/x"}]}),
        )
        .await,
        "InvalidParameter"
    );
    assert_eq!(
        api.code(
            "CreateRule",
            json!({"LoadBalancerId": lb, "ListenerId": lbl, "Rules": [{"Domain": "a.*.com", "Url": "/"}]}),
        )
        .await,
        "InvalidParameterValue"
    );
    assert_eq!(
        api.code(
            "CreateRule",
            json!({"LoadBalancerId": lb, "ListenerId": lbl, "Rules": [{"Domain": "b.com", "Url": "no-slash"}]}),
        )
        .await,
        "InvalidParameterValue"
    );
    assert_eq!(
        api.code(
            "CreateListener",
            json!({"LoadBalancerId": "lb-zzzzzzzz", "Ports": [80], "Protocol": "HTTP"}),
        )
        .await,
        "InvalidParameter.LBIdNotFound"
    );
    assert_eq!(
        api.code(
            "DescribeListeners",
            json!({"LoadBalancerId": "lb-zzzzzzzz"})
        )
        .await,
        "InvalidParameter.LBIdNotFound"
    );
    assert_eq!(
        api.code(
            "DeleteListener",
            json!({"LoadBalancerId": lb, "ListenerId": "lbl-zzzzzzzz"}),
        )
        .await,
        "InvalidParameter.ListenerIdNotFound"
    );
    assert_eq!(
        api.code(
            "DeleteRule",
            json!({"LoadBalancerId": lb, "ListenerId": lbl, "LocationIds": ["loc-zzzzzzzz"]}),
        )
        .await,
        "InvalidParameter.LocationNotFound"
    );
    assert_eq!(
        api.code(
            "CreateListener",
            json!({"LoadBalancerId": lb, "Protocol": "HTTP"})
        )
        .await,
        "MissingParameter"
    );
    emu.stop().await;
}

fn self_signed(host: &str) -> (String, String) {
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = rcgen::CertificateParams::new(vec![host.to_string()])
        .expect("params")
        .self_signed(&key)
        .expect("cert");
    (cert.pem(), key.serialize_pem())
}

#[tokio::test]
async fn https_listeners_take_certificates_by_ssl_cert_id_or_inline_pem_and_sni_is_one_way() {
    let emu = start(settings()).await;
    let api = Api::new(&emu);
    let (cert, key) = self_signed("a.example.com");
    let ssl = Opts {
        service: "ssl".into(),
        version: "2019-12-05".into(),
        ..Opts::default()
    };
    let up = api
        .call_with(
            "UploadCertificate",
            json!({"CertificatePublicKey": cert, "CertificatePrivateKey": key, "Alias": "a"}),
            &ssl,
        )
        .await;
    let cert_id = up["CertificateId"].as_str().expect("cert id").to_string();
    let lb = api.new_lb().await;
    assert_eq!(
        api.code(
            "CreateListener",
            json!({"LoadBalancerId": lb, "Ports": [443], "Protocol": "HTTPS"}),
        )
        .await,
        "MissingParameter",
        "HTTPS without SNI needs a certificate"
    );
    assert_eq!(
        api.code(
            "CreateListener",
            json!({"LoadBalancerId": lb, "Ports": [443], "Protocol": "HTTPS",
                   "Certificate": {"CertId": cert_id},
                   "MultiCertInfo": {"SSLMode": "UNIDIRECTIONAL", "CertList": [{"CertId": cert_id}]}}),
        )
        .await,
        "InvalidParameterCombination"
    );
    let r = api
        .write(
            "CreateListener",
            json!({"LoadBalancerId": lb, "Ports": [443], "Protocol": "HTTPS",
                   "Certificate": {"SSLMode": "UNIDIRECTIONAL", "CertId": cert_id}}),
        )
        .await;
    let lbl = r["ListenerIds"][0].as_str().expect("id").to_string();
    let (cert2, key2) = self_signed("b.example.com");
    let r = api
        .write(
            "CreateListener",
            json!({"LoadBalancerId": lb, "Ports": [8443], "Protocol": "HTTPS", "SniSwitch": 1}),
        )
        .await;
    let sni = r["ListenerIds"][0].as_str().expect("id").to_string();
    api.write(
        "CreateRule",
        json!({"LoadBalancerId": lb, "ListenerId": sni, "Rules": [{"Domain": "b.example.com", "Url": "/",
               "Certificate": {"CertName": "b", "CertContent": cert2, "CertKey": key2}}]}),
    )
    .await;
    let d = api
        .ok("DescribeListeners", json!({"LoadBalancerId": lb}))
        .await;
    let listeners = d["Listeners"].as_array().expect("listeners");
    let plain = listeners
        .iter()
        .find(|l| l["ListenerId"] == lbl.as_str())
        .expect("443");
    assert_eq!(plain["Certificate"]["CertId"], cert_id.as_str());
    let sni_l = listeners
        .iter()
        .find(|l| l["ListenerId"] == sni.as_str())
        .expect("8443");
    assert_eq!(sni_l["SniSwitch"], 1);
    assert!(sni_l["Rules"][0]["Certificate"]["CertId"].is_string());
    assert_eq!(
        api.code(
            "ModifyListener",
            json!({"LoadBalancerId": lb, "ListenerId": sni, "SniSwitch": 0}),
        )
        .await,
        "InvalidParameterValue",
        "SniSwitch cannot be turned off"
    );
    let del = api
        .call_with("DeleteCertificate", json!({"CertificateId": cert_id}), &ssl)
        .await;
    assert_eq!(
        del["Error"]["Code"], "FailedOperation",
        "a certificate in use stays"
    );
    emu.stop().await;
}

#[tokio::test]
async fn bad_signature_expired_timestamp_unknown_secret_id_version_and_action_get_their_codes() {
    let emu = start(settings()).await;
    let api = Api::new(&emu);
    let cases = [
        (
            Opts {
                tamper: true,
                ..Opts::default()
            },
            "DescribeQuota",
            "AuthFailure.SignatureFailure",
        ),
        (
            Opts {
                key: "wrong".into(),
                ..Opts::default()
            },
            "DescribeQuota",
            "AuthFailure.SignatureFailure",
        ),
        (
            Opts {
                ts_offset: -301,
                ..Opts::default()
            },
            "DescribeQuota",
            "AuthFailure.SignatureExpire",
        ),
        (
            Opts {
                ts_offset: 400,
                ..Opts::default()
            },
            "DescribeQuota",
            "AuthFailure.SignatureExpire",
        ),
        // A timestamp near the i64 limit is just expired (the skew check cannot overflow).
        (
            Opts {
                ts_offset: i64::MIN + 10_000_000_000,
                ..Opts::default()
            },
            "DescribeQuota",
            "AuthFailure.SignatureExpire",
        ),
        (
            Opts {
                id: "AKIDunknown".into(),
                ..Opts::default()
            },
            "DescribeQuota",
            "AuthFailure.SecretIdNotFound",
        ),
        (
            Opts {
                version: "2017-01-01".into(),
                ..Opts::default()
            },
            "DescribeQuota",
            "NoSuchVersion",
        ),
        (Opts::default(), "DescribeNothing", "InvalidAction"),
    ];
    for (opts, action, want) in cases {
        let r = api.call_with(action, json!({}), &opts).await;
        assert_eq!(r["Error"]["Code"], want, "{r}");
    }
    // A malformed Authorization header.
    let resp = reqwest::Client::new()
        .post(&api.base)
        .header("Content-Type", "application/json")
        .header("Authorization", "Bearer nope")
        .header("X-TC-Action", "DescribeQuota")
        .body("{}")
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.expect("json");
    assert_eq!(
        v["Response"]["Error"]["Code"],
        "AuthFailure.InvalidAuthorization"
    );
    emu.stop().await;
}

#[tokio::test]
async fn each_injected_fault_is_seen_through_the_api() {
    let emu = start(settings()).await;
    let api = Api::new(&emu);
    let lb = api.new_lb().await;
    let set = |faults: Value| api.admin(reqwest::Method::PUT, "faults", Some(faults));
    set(json!({"request_limit_exceeded": {"DescribeQuota": 1.0}})).await;
    assert_eq!(
        api.code("DescribeQuota", json!({})).await,
        "RequestLimitExceeded"
    );
    set(json!({"internal_error": {"*": 1.0}})).await;
    assert_eq!(api.code("DescribeQuota", json!({})).await, "InternalError");
    set(json!({"resource_in_operating": {"CreateListener": 1.0}})).await;
    assert_eq!(
        api.code(
            "CreateListener",
            json!({"LoadBalancerId": lb, "Ports": [80], "Protocol": "HTTP"}),
        )
        .await,
        "FailedOperation.ResourceInOperating"
    );
    set(json!({"task_failure": {"CreateListener": 1.0}})).await;
    let r = api
        .ok(
            "CreateListener",
            json!({"LoadBalancerId": lb, "Ports": [80], "Protocol": "HTTP"}),
        )
        .await;
    let task = r["RequestId"].as_str().expect("id").to_string();
    assert_eq!(api.wait_task(&task).await, 1, "the task fails");
    let status = api.ok("DescribeTaskStatus", json!({"TaskId": task})).await;
    assert!(status["Message"].is_string());
    let d = api
        .ok("DescribeListeners", json!({"LoadBalancerId": lb}))
        .await;
    assert_eq!(d["TotalCount"], 0, "a failed task leaves no change behind");
    set(json!({"latency_ms": {"DescribeQuota": 300}})).await;
    let t0 = std::time::Instant::now();
    assert_eq!(api.code("DescribeQuota", json!({})).await, "");
    assert!(
        t0.elapsed() >= Duration::from_millis(300),
        "latency is added"
    );
    set(json!({})).await;
    let counters = api.admin(reqwest::Method::GET, "counters", None).await;
    assert_eq!(counters["errors"]["RequestLimitExceeded"], 1);
    assert_eq!(counters["action_errors"]["DescribeQuota/InternalError"], 1);
    emu.stop().await;
}

#[tokio::test]
async fn counters_count_reads_and_writes_separately_and_reset_clears_everything() {
    let emu = start(settings()).await;
    let api = Api::new(&emu);
    let lb = api.new_lb().await;
    api.ok("DescribeLoadBalancers", json!({})).await;
    let c = api.admin(reqwest::Method::GET, "counters", None).await;
    assert_eq!(c["writes"]["CreateLoadBalancer"], 1);
    assert_eq!(c["reads"]["DescribeLoadBalancers"], 1);
    assert!(c["reads"]["DescribeTaskStatus"].as_u64().unwrap_or(0) >= 1);
    assert!(c["writes"].get("DescribeLoadBalancers").is_none());
    let dump = api.admin(reqwest::Method::GET, "state", None).await;
    assert_eq!(dump["state"]["lbs"][0]["id"], lb.as_str());
    api.admin(reqwest::Method::POST, "reset", None).await;
    let d = api.ok("DescribeLoadBalancers", json!({})).await;
    assert_eq!(d["TotalCount"], 0);
    let c = api.admin(reqwest::Method::GET, "counters", None).await;
    assert!(c["writes"].get("CreateLoadBalancer").is_none());
    emu.stop().await;
}

#[tokio::test]
async fn the_admin_endpoint_changes_settings_at_run_time() {
    let emu = start(settings()).await;
    let api = Api::new(&emu);
    let s = api
        .admin(
            reqwest::Method::PATCH,
            "settings",
            Some(json!({"task_delay_ms": 5000, "quotas": {"listeners_per_lb": 1}})),
        )
        .await;
    assert_eq!(s["task_delay_ms"], 5000);
    assert_eq!(
        s["quotas"]["rules_per_listener"], 50,
        "a patch keeps other fields"
    );
    let r = api
        .ok("CreateLoadBalancer", json!({"LoadBalancerType": "OPEN"}))
        .await;
    let task = r["RequestId"].as_str().expect("id").to_string();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let status = api.ok("DescribeTaskStatus", json!({"TaskId": task})).await;
    assert_eq!(status["Status"], 2, "the new delay applies");
    assert_eq!(status["LoadBalancerIds"], r["LoadBalancerIds"]);
    let lb = r["LoadBalancerIds"][0].as_str().expect("lb");
    let d = api
        .ok("DescribeLoadBalancers", json!({"LoadBalancerIds": [lb]}))
        .await;
    assert_eq!(d["LoadBalancerSet"][0]["Status"], 0, "creating");
    emu.stop().await;
}

#[tokio::test]
async fn clbs_survive_a_restart_with_a_state_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut s = settings();
    s.state_file = Some(dir.path().join("state.json"));
    let emu = start(s.clone()).await;
    let api = Api::new(&emu);
    let lb = api.new_lb().await;
    let lbl = api.new_listener(&lb, "HTTP", 80).await;
    emu.stop().await;
    let emu = start(s).await;
    let api = Api::new(&emu);
    let d = api
        .ok("DescribeListeners", json!({"LoadBalancerId": lb}))
        .await;
    assert_eq!(d["Listeners"][0]["ListenerId"], lbl.as_str());
    let lbs = api.ok("DescribeLoadBalancers", json!({})).await;
    assert_eq!(
        lbs["LoadBalancerSet"][0]["LoadBalancerVips"][0],
        "127.1.0.1"
    );
    emu.stop().await;
}

#[tokio::test]
async fn batch_register_is_synchronous_and_reports_failed_listeners() {
    let emu = start(settings()).await;
    let api = Api::new(&emu);
    let lb = api.new_lb().await;
    let lbl = api.new_listener(&lb, "HTTP", 80).await;
    let r = api
        .write(
            "CreateRule",
            json!({"LoadBalancerId": lb, "ListenerId": lbl, "Rules": [{"Domain": "a.com", "Url": "/"}]}),
        )
        .await;
    let loc = r["LocationIds"][0].as_str().expect("loc");
    let b = api
        .ok(
            "BatchRegisterTargets",
            json!({"LoadBalancerId": lb, "Targets": [
                {"ListenerId": lbl, "LocationId": loc, "Port": 80, "EniIp": "10.1.0.1"},
                {"ListenerId": "lbl-zzzzzzzz", "Port": 80, "EniIp": "10.1.0.2"}]}),
        )
        .await;
    assert_eq!(b["FailListenerIdSet"], json!(["lbl-zzzzzzzz"]));
    // No task: an immediate further write is accepted.
    api.ok(
        "BatchModifyTargetWeight",
        json!({"LoadBalancerId": lb, "ModifyList": [{"ListenerId": lbl, "LocationId": loc,
               "Targets": [{"EniIp": "10.1.0.1", "Port": 80}], "Weight": 55}]}),
    )
    .await;
    let h = api
        .ok("DescribeTargetHealth", json!({"LoadBalancerIds": [lb]}))
        .await;
    let t = &h["LoadBalancers"][0]["Listeners"][0]["Rules"][0]["Targets"][0];
    assert_eq!(t["IP"], "10.1.0.1");
    assert_eq!(t["Weight"], 55);
    emu.stop().await;
}

#[tokio::test]
async fn manual_and_auto_rewrites_are_described_and_deleted() {
    let emu = start(settings()).await;
    let api = Api::new(&emu);
    let lb = api.new_lb().await;
    let (cert, key) = self_signed("a.com");
    let r = api
        .write(
            "CreateListener",
            json!({"LoadBalancerId": lb, "Ports": [443], "Protocol": "HTTPS",
                   "Certificate": {"CertName": "a", "CertContent": cert, "CertKey": key}}),
        )
        .await;
    let https = r["ListenerIds"][0].as_str().expect("id").to_string();
    api.write(
        "CreateRule",
        json!({"LoadBalancerId": lb, "ListenerId": https, "Rules": [{"Domain": "a.com", "Url": "/"}]}),
    )
    .await;
    api.write(
        "AutoRewrite",
        json!({"LoadBalancerId": lb, "ListenerId": https, "RewriteCodes": [301], "TakeUrls": [true]}),
    )
    .await;
    let d = api
        .ok("DescribeRewrite", json!({"LoadBalancerId": lb}))
        .await;
    let set = d["RewriteSet"].as_array().expect("set");
    assert_eq!(set.len(), 1);
    assert_eq!(set[0]["RewriteTarget"]["RewriteCode"], 301);
    assert_eq!(set[0]["RewriteTarget"]["TargetListenerId"], https.as_str());
    let src_listener = set[0]["ListenerId"].as_str().expect("l").to_string();
    let src_loc = set[0]["LocationId"].as_str().expect("loc").to_string();
    let dst_loc = set[0]["RewriteTarget"]["TargetLocationId"]
        .as_str()
        .expect("loc")
        .to_string();
    let info = json!({"LoadBalancerId": lb, "SourceListenerId": src_listener, "TargetListenerId": https,
                      "RewriteInfos": [{"SourceLocationId": src_loc, "TargetLocationId": dst_loc}]});
    assert_eq!(
        api.code("ManualRewrite", info.clone()).await,
        "InvalidParameter.RewriteAlreadyExist"
    );
    api.write("DeleteRewrite", info.clone()).await;
    assert_eq!(
        api.code("DeleteRewrite", info).await,
        "InvalidParameter.SomeRewriteNotFound"
    );
    emu.stop().await;
}

#[tokio::test]
async fn the_admin_endpoint_never_shows_a_secret_key_or_a_private_key() {
    let emu = start(settings()).await;
    let api = Api::new(&emu);
    let (cert, key) = self_signed("a.example.com");
    let ssl = Opts {
        service: "ssl".into(),
        version: "2019-12-05".into(),
        ..Opts::default()
    };
    api.call_with(
        "UploadCertificate",
        json!({"CertificatePublicKey": cert, "CertificatePrivateKey": key, "Alias": "a"}),
        &ssl,
    )
    .await;
    let state = api.admin(reqwest::Method::GET, "state", None).await;
    let shown = state.to_string();
    assert!(!shown.contains("PRIVATE KEY"), "{shown}");
    assert!(shown.contains("<redacted>"), "the key is marked redacted");
    let settings = api.admin(reqwest::Method::GET, "settings", None).await;
    assert!(!settings.to_string().contains(KEY), "{settings}");
    // Sending the shown settings back (a redacted key) keeps the real key: calls still work.
    let echoed = api
        .admin(reqwest::Method::PATCH, "settings", Some(settings.clone()))
        .await;
    assert!(!echoed.to_string().contains(KEY), "{echoed}");
    assert!(
        api.ok("DescribeQuota", json!({})).await["QuotaSet"].is_array(),
        "the SecretKey survived the round trip"
    );
}

#[tokio::test]
async fn modify_domain_takes_a_new_domain_of_up_to_120_characters_and_rules_keep_80() {
    let emu = start(settings()).await;
    let api = Api::new(&emu);
    let lb = api.new_lb().await;
    let lbl = api.new_listener(&lb, "HTTP", 80).await;
    // A name of `len` characters: labels of 9 letters and dots, ending in `.com`.
    let name = |len: usize| {
        let mut s = String::new();
        while s.len() + 4 < len {
            s.push(if (s.len() + 1) % 10 == 0 { '.' } else { 'a' });
        }
        let s = s.trim_end_matches('.').to_string();
        let s = format!("{s}{}", "a".repeat(len - 4 - s.len()));
        format!("{s}.com")
    };
    let (d80, d81, d120, d121) = (name(80), name(81), name(120), name(121));
    assert_eq!(
        (d80.len(), d81.len(), d120.len(), d121.len()),
        (80, 81, 120, 121)
    );
    api.write(
        "CreateRule",
        json!({"LoadBalancerId": lb, "ListenerId": lbl, "Rules": [{"Domain": d80, "Url": "/"}]}),
    )
    .await;
    // A rule's domain: at most 80.
    assert!(
        api.code(
            "CreateRule",
            json!({"LoadBalancerId": lb, "ListenerId": lbl, "Rules": [{"Domain": d81, "Url": "/"}]}),
        )
        .await
        .starts_with("InvalidParameterValue")
    );
    // ModifyDomain's NewDomain: up to 120 (api.json), not more.
    assert!(
        api.code(
            "ModifyDomain",
            json!({"LoadBalancerId": lb, "ListenerId": lbl, "Domain": d80, "NewDomain": d121}),
        )
        .await
        .starts_with("InvalidParameterValue")
    );
    api.write(
        "ModifyDomain",
        json!({"LoadBalancerId": lb, "ListenerId": lbl, "Domain": d80, "NewDomain": d120}),
    )
    .await;
    let d = api
        .ok("DescribeListeners", json!({"LoadBalancerId": lb}))
        .await;
    assert_eq!(d["Listeners"][0]["Rules"][0]["Domain"], json!(d120));
    emu.stop().await;
}

#[tokio::test]
async fn tag_service_modify_resource_tags_changes_a_clbs_tags_and_refuses_what_the_tag_service_refuses()
 {
    let r = start(settings()).await;
    let api = Api::new(&r);
    let lb = api.new_lb().await;
    let tag = Opts {
        service: "tag".into(),
        version: "2018-08-13".into(),
        ..Opts::default()
    };
    let resource = format!("qcs::clb:{REGION}:uin/:clb/{lb}");
    let call = |body: Value| {
        let (api, tag) = (&api, tag.clone());
        async move { api.call_with("ModifyResourceTags", body, &tag).await }
    };
    let code = |r: Value| r["Error"]["Code"].as_str().unwrap_or_default().to_string();
    let ok = call(json!({"Resource": resource,
        "ReplaceTags": [{"TagKey": "clb-ingress.io/desired", "TagValue": "abc123:0.1.0"}]}))
    .await;
    assert!(ok.get("Error").is_none(), "{ok}");
    let tags = |d: &Value| d["LoadBalancerSet"][0]["Tags"].clone();
    let d = api
        .ok("DescribeLoadBalancers", json!({"LoadBalancerIds": [lb]}))
        .await;
    assert_eq!(
        tags(&d),
        json!([{"TagKey": "clb-ingress.io/desired", "TagValue": "abc123:0.1.0"}])
    );
    // Replacing changes the value in place.
    call(json!({"Resource": resource,
        "ReplaceTags": [{"TagKey": "clb-ingress.io/desired", "TagValue": "def456:0.1.0"}]}))
    .await;
    let d = api
        .ok("DescribeLoadBalancers", json!({"LoadBalancerIds": [lb]}))
        .await;
    assert_eq!(tags(&d)[0]["TagValue"], "def456:0.1.0");
    let t = |k: &str, v: &str| json!([{"TagKey": k, "TagValue": v}]);
    let refused = [
        (json!({"Resource": resource}), "MissingParameter"),
        (
            json!({"Resource": resource, "ReplaceTags": []}),
            "InvalidParameterValue",
        ),
        (
            json!({"Resource": format!("clb/{lb}"), "ReplaceTags": t("k", "v")}),
            "InvalidParameterValue.ResourceDescriptionError",
        ),
        (
            json!({"Resource": format!("qcs::cvm:{REGION}:uin/:instance/{lb}"), "ReplaceTags": t("k", "v")}),
            "InvalidParameterValue.ServiceTypeInvalid",
        ),
        (
            json!({"Resource": format!("qcs::clb:ap-nowhere:uin/:clb/{lb}"), "ReplaceTags": t("k", "v")}),
            "InvalidParameterValue.RegionInvalid",
        ),
        (
            json!({"Resource": format!("qcs::clb:{REGION}:uin/:clb/lb-nothere"), "ReplaceTags": t("k", "v")}),
            "InvalidParameterValue.ResourceIdInvalid",
        ),
        (
            json!({"Resource": resource, "ReplaceTags": t("qcloud:owner", "v")}),
            "InvalidParameterValue.ReservedTagKey",
        ),
        (
            json!({"Resource": resource, "ReplaceTags": t("k", "a b")}),
            "InvalidParameterValue.TagValueCharacterIllegal",
        ),
        (
            json!({"Resource": resource, "ReplaceTags": t(&"k".repeat(128), "v")}),
            "InvalidParameterValue.TagKeyLengthExceeded",
        ),
        (
            json!({"Resource": resource, "ReplaceTags": t("k", &"v".repeat(256))}),
            "InvalidParameterValue.TagValueLengthExceeded",
        ),
        (
            json!({"Resource": resource, "ReplaceTags": t("k", "")}),
            "InvalidParameterValue.TagValueEmpty",
        ),
        (
            json!({"Resource": resource, "ReplaceTags": t("k", "v"), "DeleteTags": [{"TagKey": "k"}]}),
            "InvalidParameterValue.DeleteTagsParamError",
        ),
        (
            json!({"Resource": resource, "DeleteTags": [{"TagKey": "never-set"}]}),
            "ResourceNotFound.AttachedTagKeyNotFound",
        ),
        (
            json!({"Resource": resource, "ReplaceTags": (0..11)
                .map(|i| json!({"TagKey": format!("k{i}"), "TagValue": "v"}))
                .collect::<Vec<_>>()}),
            "LimitExceeded.TagNumPerRequest",
        ),
    ];
    for (body, want) in refused {
        assert_eq!(code(call(body.clone()).await), want, "{body}");
    }
    // A refused call changed nothing.
    let d = api
        .ok("DescribeLoadBalancers", json!({"LoadBalancerIds": [lb]}))
        .await;
    assert_eq!(tags(&d).as_array().map(Vec::len), Some(1), "{d}");
}
