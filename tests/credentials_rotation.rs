//! Expiring STS credentials end to end: the emulator refuses a missing, wrong or expired session
//! token with `AuthFailure.TokenFailure`; the client re-reads its credentials file after such a
//! refusal and repeats the call once with the new token; and the real controller keeps writing
//! after its mounted credentials file is rewritten, without a restart.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clb_ingress::clb::client::TaskWaitConfig;
use clb_ingress::clb::credentials::SecretString;
use clb_ingress::clb::observe::{CountingObserver, ReloadOutcome, ReloadTrigger};
use clb_ingress::clb::types::{
    CreateListenerRequest, CreateLoadBalancerRequest, DescribeLoadBalancersRequest,
};
use clb_ingress::clb::{ClbClient, ClientConfig, Credentials, Endpoint, ErrorCategory};
use clb_ingress::emulator::config::{Credential, Settings};
use clb_ingress::emulator::core::SystemClock;
use clb_ingress::emulator::server::{self, NoPlane, Running};
use clb_test_support::cluster::{self, SLOW};
use serde_json::{Value, json};

const REGION: &str = "ap-guangzhou";
const STS1: (&str, &str, &str) = (
    "AKIDsts00000000000000000000000000001",
    "STSkeyONE000000000000000000000001",
    "STStokenONE0000000000000000000000000000001",
);
const STS2: (&str, &str, &str) = (
    "AKIDsts00000000000000000000000000002",
    "STSkeyTWO000000000000000000000002",
    "STStokenTWO0000000000000000000000000000002",
);

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn temporary((id, key, token): (&str, &str, &str), expires_at: Option<i64>) -> Credential {
    Credential::temporary(id, key, token, expires_at)
}

/// The emulator in-process (no data plane) with the first temporary key valid for an hour.
async fn emulator() -> Running {
    let mut settings = Settings {
        listen: "127.0.0.1:0".parse().expect("addr"),
        task_delay_ms: 0,
        ..Settings::default()
    };
    settings
        .credentials
        .push(temporary(STS1, Some(unix_now() + 3600)));
    server::start(settings, Arc::new(SystemClock), Arc::new(NoPlane))
        .await
        .expect("emulator starts")
}

/// Expire the first key's token now and accept the second key (what an STS rotation does).
fn rotate_in_emulator(emu: &Running) {
    emu.app.update_settings(|s| {
        for c in &mut s.credentials {
            if c.secret_id == STS1.0 {
                c.expires_at = Some(unix_now() - 1);
            }
        }
        s.credentials.push(temporary(STS2, Some(unix_now() + 3600)));
    });
}

/// Write the file as the kubelet updates a Secret volume: a new file renamed over the old.
fn write_credentials_file(path: &Path, (id, key, token): (&str, &str, &str)) {
    let tmp = path.with_extension("tmp");
    std::fs::write(
        &tmp,
        json!({"SecretId": id, "SecretKey": key, "Token": token}).to_string(),
    )
    .expect("write credentials");
    std::fs::rename(&tmp, path).expect("rename credentials");
}

fn client(
    emu: &Running,
    credentials: Credentials,
    file: Option<&Path>,
    observer: Arc<CountingObserver>,
) -> ClbClient {
    let mut config = ClientConfig::new(
        REGION,
        Endpoint::parse(&format!("http://{}", emu.addr)).expect("endpoint"),
    );
    config.task_wait = TaskWaitConfig {
        timeout: Duration::from_secs(20),
        ..TaskWaitConfig::default()
    };
    let mut b = ClbClient::builder(config, credentials)
        .observer(observer)
        .http_client(reqwest::Client::builder().no_proxy().build().expect("http"));
    if let Some(file) = file {
        b = b.credentials_file(file);
    }
    b.build().expect("client")
}

/// The key pair of `sts`, sending `sent_token` (maybe not its own).
fn sts((id, key, _): (&str, &str, &str), sent_token: Option<&str>) -> Credentials {
    Credentials::new(
        id,
        SecretString::new(key),
        sent_token.map(SecretString::new),
    )
    .expect("credentials")
}

async fn describe(c: &ClbClient) -> Result<(), clb_ingress::clb::ClbError> {
    c.describe_load_balancers(&DescribeLoadBalancersRequest::default())
        .await
        .map(|_| ())
}

#[tokio::test]
async fn the_emulator_refuses_a_missing_wrong_or_expired_session_token_with_token_failure() {
    let emu = emulator().await;
    let observer = Arc::new(CountingObserver::default());
    let good = client(&emu, sts(STS1, Some(STS1.2)), None, observer.clone());
    describe(&good).await.expect("the right token is accepted");
    for (what, token) in [("no token", None), ("another token", Some(STS2.2))] {
        let c = client(&emu, sts(STS1, token), None, observer.clone());
        let err = describe(&c).await.expect_err(what);
        assert_eq!(
            err.code(),
            Some("AuthFailure.TokenFailure"),
            "{what}: {err}"
        );
        assert_eq!(err.category(), ErrorCategory::Auth);
    }
    rotate_in_emulator(&emu);
    let err = describe(&good).await.expect_err("expired");
    assert_eq!(err.code(), Some("AuthFailure.TokenFailure"), "{err}");
    assert!(err.to_string().contains("expired"), "{err}");
    // A permanent key is unaffected.
    let permanent = client(
        &emu,
        Credentials::new(
            clb_ingress::emulator::config::DEFAULT_SECRET_ID,
            SecretString::new(clb_ingress::emulator::config::DEFAULT_SECRET_KEY),
            None,
        )
        .expect("credentials"),
        None,
        observer,
    );
    describe(&permanent).await.expect("permanent key");
    // The admin view never shows a token.
    let settings: Value = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("http")
        .get(format!("http://{}/_emulator/settings", emu.addr))
        .send()
        .await
        .expect("GET settings")
        .json()
        .await
        .expect("JSON");
    let text = settings.to_string();
    assert!(!text.contains(STS1.2) && !text.contains(STS2.2), "{text}");
    assert!(text.contains(STS1.0), "{text}");
}

#[tokio::test]
async fn a_write_refused_for_an_expired_token_is_retried_with_the_rewritten_credentials_file() {
    let emu = emulator().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("credentials.json");
    write_credentials_file(&file, STS1);
    let observer = Arc::new(CountingObserver::default());
    // No watcher runs: only the refusal can make the client look at the file again.
    let c = client(
        &emu,
        Credentials::from_path(&file).expect("credentials file"),
        Some(&file),
        observer.clone(),
    );
    let lb = c
        .create_load_balancer_and_wait(&CreateLoadBalancerRequest {
            load_balancer_type: "OPEN".into(),
            load_balancer_name: Some("rotation".into()),
            ..Default::default()
        })
        .await
        .expect("create LB with the first token")
        .remove(0);
    rotate_in_emulator(&emu);
    write_credentials_file(&file, STS2);
    let listener = c
        .create_listener(&CreateListenerRequest {
            load_balancer_id: lb.clone(),
            ports: vec![80],
            protocol: "HTTP".into(),
            ..Default::default()
        })
        .await
        .expect("the refused write is repeated with the new token");
    c.wait_task(&listener.request_id)
        .await
        .expect("listener task");
    let counts = observer.snapshot();
    assert_eq!(
        counts.calls_with("CreateListener", "Auth"),
        1,
        "the first attempt hit TokenFailure: {counts:?}"
    );
    assert_eq!(counts.calls_with("CreateListener", "Success"), 1);
    assert_eq!(
        counts.reloads_of(ReloadTrigger::AuthFailure, ReloadOutcome::Changed),
        1
    );
    // Later calls use the new token from the start.
    describe(&c).await.expect("describe with the new token");
    assert_eq!(
        observer
            .snapshot()
            .calls_with("DescribeLoadBalancers", "Auth"),
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_controller_keeps_writing_after_its_expired_token_is_replaced_in_the_credentials_file()
{
    let e = cluster::env().await;
    e.emu
        .app
        .update_settings(|s| s.credentials.push(temporary(STS1, Some(unix_now() + 3600))));
    let file = tempfile::NamedTempFile::new().expect("tempfile");
    write_credentials_file(file.path(), STS1);
    let path = file.path().to_str().expect("utf-8 path").to_string();
    let ctl = e.controller("c1", &["--credentials-file", &path]);
    e.class("PerIngress").await;
    e.service("web", &["10.1.0.1"]).await;
    e.ingress("first", "first.example.com", &[("/", "Prefix", "web")])
        .await;
    e.until_routed("first", "first.example.com", "/", "10.1.0.1:8080", SLOW)
        .await;

    // The token expires before the STS agent has rewritten the file: writes are refused and
    // the controller's re-read finds nothing new.
    rotate_in_emulator(&e.emu);
    e.ingress("second", "second.example.com", &[("/", "Prefix", "web")])
        .await;
    let unchanged =
        r#"clb_ingress_credential_reloads_total{outcome="Unchanged",trigger="AuthFailure"}"#;
    let started = std::time::Instant::now();
    while cluster::metric(&ctl.metrics, unchanged)
        .await
        .unwrap_or(0.0)
        < 1.0
    {
        assert!(
            started.elapsed() < SLOW,
            "no TokenFailure seen by the controller:\n{}",
            ctl.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The agent writes the new token: the controller uses it without a restart.
    write_credentials_file(file.path(), STS2);
    e.until_routed("second", "second.example.com", "/", "10.1.0.1:8080", SLOW)
        .await;
    let mut changed = 0.0;
    for trigger in ["AuthFailure", "Watch"] {
        let series = format!(
            r#"clb_ingress_credential_reloads_total{{outcome="Changed",trigger="{trigger}"}}"#
        );
        changed += cluster::metric(&ctl.metrics, &series).await.unwrap_or(0.0);
    }
    assert_eq!(changed, 1.0, "one change picked up:\n{}", ctl.log());
    let log = ctl.log();
    assert!(log.contains("credentials reloaded"), "{log}");
    for secret in [STS1.1, STS1.2, STS2.1, STS2.2] {
        assert!(!log.contains(secret), "a secret in the log:\n{log}");
    }
}

#[tokio::test]
async fn a_rotation_through_the_admin_api_keeps_redacted_tokens_and_expires_the_old_one() {
    let emu = emulator().await;
    let http = reqwest::Client::builder().no_proxy().build().expect("http");
    let url = format!("http://{}/_emulator/settings", emu.addr);
    let get = || async {
        let v: Value = http
            .get(&url)
            .send()
            .await
            .expect("GET settings")
            .json()
            .await
            .expect("JSON");
        v["credentials"].as_array().cloned().expect("credentials")
    };
    let token = emu.admin_token().to_string();
    let patch = |credentials: Vec<Value>| {
        let http = http.clone();
        let url = url.clone();
        let token = token.clone();
        async move {
            let resp = http
                .patch(&url)
                .bearer_auth(token)
                .json(&json!({ "credentials": credentials }))
                .send()
                .await
                .expect("PATCH settings");
            assert!(resp.status().is_success(), "{}", resp.status());
        }
    };
    let observer = Arc::new(CountingObserver::default());
    let one = client(&emu, sts(STS1, Some(STS1.2)), None, observer.clone());
    let two = client(&emu, sts(STS2, Some(STS2.2)), None, observer);

    // Add the second key, sending the first back exactly as shown (token redacted).
    let mut shown = get().await;
    assert!(
        shown.iter().any(|c| c["token"] == "<redacted>"),
        "{shown:?}"
    );
    shown.push(
        json!({"secret_id": STS2.0, "secret_key": STS2.1, "token": STS2.2,
        "expires_at": unix_now() + 3600}),
    );
    patch(shown).await;
    describe(&one)
        .await
        .expect("the redacted token kept its value");
    describe(&two).await.expect("the added key works");

    // Expire the first.
    let mut shown = get().await;
    for c in &mut shown {
        if c["secret_id"] == STS1.0 {
            c["expires_at"] = json!(unix_now() - 1);
        }
    }
    patch(shown).await;
    let err = describe(&one).await.expect_err("expired");
    assert_eq!(err.code(), Some("AuthFailure.TokenFailure"), "{err}");
    describe(&two).await.expect("the new key still works");
}
