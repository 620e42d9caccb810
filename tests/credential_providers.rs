//! The credential provider chain against the emulator: OIDC web identity (STS
//! `AssumeRoleWithWebIdentity`, unsigned) and the CVM instance role (metadata paths), each
//! signing real CLB calls; a refresh before expiry with short-lived credentials during which no
//! call fails; a rotated token file; the emulator's strict STS errors; hostile provider answers
//! that keep the current credentials; and the real controller routing with each role provider.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::http::StatusCode;
use axum::response::IntoResponse;
use clb_ingress::clb::observe::{CountingObserver, ReloadOutcome, ReloadTrigger};
use clb_ingress::clb::providers::{
    InstanceRoleConfig, ProviderError, RoleProvider, RoleSource, WebIdentityConfig,
};
use clb_ingress::clb::types::DescribeLoadBalancersRequest;
use clb_ingress::clb::{ClbClient, ClientConfig, Endpoint, ErrorCategory};
use clb_ingress::emulator::config::{Credential, Settings, WebIdentityRole};
use clb_ingress::emulator::core::SystemClock;
use clb_ingress::emulator::server::{self, NoPlane, Running};
use clb_test_support::cluster::{self, SLOW};
use serde_json::{Value, json};

const REGION: &str = "ap-guangzhou";
const ROLE_ARN: &str = "qcs::cam::uin/100000000001:roleName/clb-ingress";
const PROVIDER_ID: &str = "cls-oidc-e2e";
const OIDC_TOKEN: &str = "eyJhbGciOiJSUzI1NiJ9.first-token.signature";
const OIDC_TOKEN_2: &str = "eyJhbGciOiJSUzI1NiJ9.rotated-token.signature";
const INSTANCE_ROLE: &str = "CVM_QcsRole";

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn role(token: &str) -> WebIdentityRole {
    WebIdentityRole {
        role_arn: ROLE_ARN.into(),
        provider_id: PROVIDER_ID.into(),
        web_identity_token: token.into(),
    }
}

/// The emulator in-process (no data plane) with the web identity role and the instance role,
/// issuing credentials that live `lifetime` seconds.
async fn emulator(lifetime: Option<u64>) -> Running {
    let mut settings = Settings {
        listen: "127.0.0.1:0".parse().expect("addr"),
        task_delay_ms: 0,
        ..Settings::default()
    };
    settings.sts.roles.push(role(OIDC_TOKEN));
    settings.sts.lifetime_secs = lifetime;
    settings.sts.instance_role = Some(INSTANCE_ROLE.into());
    server::start(settings, Arc::new(SystemClock), Arc::new(NoPlane))
        .await
        .expect("emulator starts")
}

fn write_token(path: &Path, token: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, token).expect("write token");
    std::fs::rename(&tmp, path).expect("rename token");
}

fn web_identity(emu: &Running, token_file: &Path, duration_secs: u32) -> RoleSource {
    RoleSource::WebIdentity(WebIdentityConfig {
        role_arn: ROLE_ARN.into(),
        token_file: token_file.to_path_buf(),
        provider_id: PROVIDER_ID.into(),
        region: REGION.into(),
        endpoint: reqwest::Url::parse(&format!("http://{}", emu.addr)).expect("url"),
        session_name: "clb-ingress-test".into(),
        duration_secs,
    })
}

fn instance_role(base: &str) -> RoleSource {
    RoleSource::InstanceRole(InstanceRoleConfig {
        endpoint: reqwest::Url::parse(base).expect("url"),
    })
}

fn client(emu: &Running, source: RoleSource, observer: Arc<CountingObserver>) -> ClbClient {
    let config = ClientConfig::new(
        REGION,
        Endpoint::parse(&format!("http://{}", emu.addr)).expect("endpoint"),
    );
    ClbClient::builder_with_role(config, RoleProvider::new(source).expect("provider"))
        .observer(observer)
        .http_client(reqwest::Client::builder().no_proxy().build().expect("http"))
        .build()
        .expect("client")
}

async fn describe(c: &ClbClient) -> Result<(), clb_ingress::clb::ClbError> {
    c.describe_load_balancers(&DescribeLoadBalancersRequest::default())
        .await
        .map(|_| ())
}

/// An emulator, a token directory (`token` holds the first OIDC token), and a web identity
/// client asking for one-hour credentials.
async fn web_identity_client() -> (Running, tempfile::TempDir, Arc<CountingObserver>, ClbClient) {
    let emu = emulator(None).await;
    let dir = tempfile::tempdir().expect("tempdir");
    write_token(&dir.path().join("token"), OIDC_TOKEN);
    let observer = Arc::new(CountingObserver::default());
    let c = client(
        &emu,
        web_identity(&emu, &dir.path().join("token"), 3600),
        observer.clone(),
    );
    (emu, dir, observer, c)
}

/// What the client's role provider answers now, expected to be an error.
async fn fetch_error(c: &ClbClient) -> ProviderError {
    c.role_provider()
        .expect("a role provider")
        .fetch(unix_now())
        .await
        .expect_err("the provider's answer is refused")
}

/// Call DescribeLoadBalancers every 100 ms for `how_long`; every call must succeed.
async fn call_steadily(c: &ClbClient, how_long: Duration) -> usize {
    let started = Instant::now();
    let mut calls = 0;
    while started.elapsed() < how_long {
        describe(c)
            .await
            .unwrap_or_else(|e| panic!("call {calls} failed across a refresh: {e}"));
        calls += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    calls
}

#[tokio::test]
async fn web_identity_credentials_from_sts_sign_clb_calls_and_never_reach_debug_output() {
    let (emu, _dir, observer, c) = web_identity_client().await;
    assert_eq!(
        c.credentials_expiry(),
        None,
        "nothing fetched before a call"
    );
    describe(&c).await.expect("signed with issued credentials");
    let expiry = c.credentials_expiry().expect("an expiry");
    let lifetime = expiry - unix_now();
    assert!(
        (3590..=3600).contains(&lifetime),
        "DurationSeconds 3600 asked, {lifetime} s given"
    );
    let counts = observer.snapshot();
    assert_eq!(
        counts.reloads_of(ReloadTrigger::Expiry, ReloadOutcome::Changed),
        1
    );
    assert_eq!(counts.calls_with("DescribeLoadBalancers", "Success"), 1);
    // The issued key is a temporary one: the emulator shows its id, never its key or token.
    let issued: Vec<Credential> = emu
        .app
        .update_settings(|s| s.credentials.clone())
        .into_iter()
        .filter(|k| k.secret_id.starts_with("AKIDSTS"))
        .collect();
    assert_eq!(issued.len(), 1, "{issued:?}");
    let secret = issued[0].secret_key.clone();
    let token_value = issued[0].token.clone().expect("token");
    for text in [format!("{c:?}"), format!("{observer:?}")] {
        assert!(!text.contains(&secret) && !text.contains(&token_value));
        assert!(!text.contains(OIDC_TOKEN));
    }
    let admin: Value = reqwest::Client::builder()
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
    let text = admin.to_string();
    assert!(
        !text.contains(OIDC_TOKEN) && !text.contains(&token_value),
        "{text}"
    );
}

#[tokio::test]
async fn calls_never_fail_across_refreshes_before_expiry_with_the_watcher_and_without_it() {
    // Six-second credentials are refreshed when two seconds remain.
    let emu = emulator(Some(6)).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let token = dir.path().join("token");
    write_token(&token, OIDC_TOKEN);

    let observer = Arc::new(CountingObserver::default());
    let watched = client(&emu, web_identity(&emu, &token, 3600), observer.clone());
    let watcher = watched
        .watch_credentials(Duration::from_secs(1))
        .expect("a role watcher");
    let unwatched_observer = Arc::new(CountingObserver::default());
    let unwatched = client(
        &emu,
        web_identity(&emu, &token, 3600),
        unwatched_observer.clone(),
    );
    let (a, b) = tokio::join!(
        call_steadily(&watched, Duration::from_secs(14)),
        call_steadily(&unwatched, Duration::from_secs(14)),
    );
    watcher.abort();
    for (name, observer, calls) in [
        ("watched", &observer, a),
        ("unwatched", &unwatched_observer, b),
    ] {
        let counts = observer.snapshot();
        let changed = counts.reloads_of(ReloadTrigger::Expiry, ReloadOutcome::Changed);
        assert!(
            changed >= 3,
            "{name}: 14 s of 6 s credentials need 3 fetches at least: {counts:?}"
        );
        assert_eq!(
            counts.calls_with("DescribeLoadBalancers", "Success") as usize,
            calls,
            "{name}: {counts:?}"
        );
        assert_eq!(
            counts.calls_with("DescribeLoadBalancers", "Auth"),
            0,
            "{name}: no call was refused for expired credentials: {counts:?}"
        );
    }
}

#[tokio::test]
async fn a_rotated_token_file_is_read_on_the_next_exchange_and_a_stale_one_keeps_the_credentials() {
    let (emu, dir, _observer, c) = web_identity_client().await;
    let token = dir.path().join("token");
    describe(&c).await.expect("first token");

    // The identity provider rotates: the old token is no longer accepted, the file not yet
    // rewritten. The refresh fails with STS's error and the current credentials stay.
    emu.app
        .update_settings(|s| s.sts.roles = vec![role(OIDC_TOKEN_2)]);
    assert_eq!(
        c.reload_credentials(ReloadTrigger::Expiry).await,
        Some(ReloadOutcome::Failed)
    );
    describe(&c)
        .await
        .expect("the current credentials stay in use");
    let err = fetch_error(&c).await;
    assert!(
        matches!(&err, ProviderError::Sts { code, .. } if code == "InvalidParameter.WebIdentityTokenError"),
        "{err:?}"
    );

    // The kubelet writes the new token: the next exchange reads it.
    write_token(&token, OIDC_TOKEN_2);
    let before = c.credentials_expiry();
    assert_eq!(
        c.reload_credentials(ReloadTrigger::Expiry).await,
        Some(ReloadOutcome::Changed)
    );
    assert!(c.credentials_expiry() >= before);
    describe(&c).await.expect("new credentials");
}

/// One raw `AssumeRoleWithWebIdentity` request, answered as JSON.
async fn raw_sts(emu: &Running, headers: &[(&str, String)], body: Value) -> Value {
    let mut req = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("http")
        .post(format!("http://{}/", emu.addr))
        .header("content-type", "application/json")
        .body(body.to_string());
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    req.send().await.expect("send").json().await.expect("JSON")
}

fn sts_headers(action: &str) -> Vec<(&'static str, String)> {
    vec![
        ("authorization", "SKIP".into()),
        ("x-tc-action", action.into()),
        ("x-tc-version", "2018-08-13".into()),
        ("x-tc-timestamp", unix_now().to_string()),
        ("x-tc-region", REGION.into()),
    ]
}

fn error_code(v: &Value) -> &str {
    v["Response"]["Error"]["Code"].as_str().unwrap_or("")
}

#[tokio::test]
async fn the_emulator_sts_refuses_unknown_roles_wrong_tokens_bad_durations_and_skip_elsewhere() {
    let emu = emulator(None).await;
    let good = json!({"ProviderId": PROVIDER_ID, "WebIdentityToken": OIDC_TOKEN,
        "RoleArn": ROLE_ARN, "RoleSessionName": "s1"});
    let with = |k: &str, v: Value| {
        let mut b = good.clone();
        b[k] = v;
        b
    };
    let answer = raw_sts(
        &emu,
        &sts_headers("AssumeRoleWithWebIdentity"),
        good.clone(),
    )
    .await;
    let r = &answer["Response"];
    assert!(r["Credentials"]["TmpSecretId"].is_string(), "{answer}");
    assert!(
        r["ExpiredTime"].as_i64().unwrap_or(0) >= unix_now() + 7100,
        "default 7200 s: {answer}"
    );
    assert!(
        r["Expiration"].as_str().unwrap_or("").ends_with('Z'),
        "{answer}"
    );
    let cases = [
        (
            with("RoleArn", json!("qcs::cam::uin/1:roleName/other")),
            "ResourceNotFound.RoleNotFound",
        ),
        (
            with("WebIdentityToken", json!("forged")),
            "InvalidParameter.WebIdentityTokenError",
        ),
        (
            with("DurationSeconds", json!(0)),
            "InvalidParameter.ParamError",
        ),
        (
            with("DurationSeconds", json!(43_201)),
            "InvalidParameter.OverLimit",
        ),
        (
            with("DurationSeconds", json!("60")),
            "InvalidParameter.ParamError",
        ),
        (
            with("ProviderId", json!("other-idp")),
            "InvalidParameter.ParamError",
        ),
        (
            with("RoleSessionName", json!("x")),
            "InvalidParameter.ParamError",
        ),
        (
            json!({"ProviderId": PROVIDER_ID, "RoleArn": ROLE_ARN, "RoleSessionName": "s1"}),
            "MissingParameter",
        ),
    ];
    for (body, want) in cases {
        let v = raw_sts(
            &emu,
            &sts_headers("AssumeRoleWithWebIdentity"),
            body.clone(),
        )
        .await;
        assert_eq!(error_code(&v), want, "{body}: {v}");
    }
    // SKIP is for this action only; a session token or another version is refused.
    let v = raw_sts(&emu, &sts_headers("DescribeLoadBalancers"), json!({})).await;
    assert_eq!(error_code(&v), "AuthFailure.InvalidAuthorization", "{v}");
    let mut h = sts_headers("AssumeRoleWithWebIdentity");
    h.push(("x-tc-token", "anything".into()));
    let v = raw_sts(&emu, &h, good.clone()).await;
    assert_eq!(error_code(&v), "AuthFailure.InvalidAuthorization", "{v}");
    let mut h = sts_headers("AssumeRoleWithWebIdentity");
    h[2].1 = "2018-03-17".into();
    let v = raw_sts(&emu, &h, good.clone()).await;
    assert_eq!(error_code(&v), "NoSuchVersion", "{v}");
    let mut h = sts_headers("AssumeRoleWithWebIdentity");
    h[3].1 = (unix_now() - 3600).to_string();
    let v = raw_sts(&emu, &h, good).await;
    assert_eq!(error_code(&v), "AuthFailure.SignatureExpire", "{v}");
}

#[tokio::test]
async fn instance_role_credentials_come_from_the_metadata_paths_and_are_refreshed() {
    let emu = emulator(Some(6)).await;
    let observer = Arc::new(CountingObserver::default());
    let c = client(
        &emu,
        instance_role(&format!("http://{}", emu.addr)),
        observer.clone(),
    );
    let watcher = c
        .watch_credentials(Duration::from_secs(1))
        .expect("watcher");
    let calls = call_steadily(&c, Duration::from_secs(9)).await;
    watcher.abort();
    let counts = observer.snapshot();
    assert_eq!(
        counts.calls_with("DescribeLoadBalancers", "Success") as usize,
        calls
    );
    assert!(
        counts.reloads_of(ReloadTrigger::Expiry, ReloadOutcome::Changed) >= 2,
        "{counts:?}"
    );
    // Without a role bound, the metadata service has nothing (and the client says so).
    emu.app.update_settings(|s| s.sts.instance_role = None);
    let err = fetch_error(&c).await;
    assert!(
        matches!(err, ProviderError::HttpStatus { status: 404, .. }),
        "{err:?}"
    );
}

/// A metadata service on loopback answering what the test tells it to.
struct Hostile {
    base: String,
    mode: Arc<AtomicUsize>,
    _task: tokio::task::JoinHandle<()>,
}

/// What the hostile metadata service answers for the credentials path, by mode.
fn hostile_answer(mode: usize, good: &Value) -> axum::response::Response {
    let now = unix_now();
    let mut doc = good.clone();
    match mode {
        0 => return (StatusCode::OK, good.to_string()).into_response(),
        1 => return (StatusCode::OK, "x".repeat(1 << 20)).into_response(),
        2 => return (StatusCode::OK, "<html>proxy error</html>").into_response(),
        3 => {
            doc.as_object_mut().map(|o| o.remove("TmpSecretKey"));
        }
        4 => doc["ExpiredTime"] = json!(now - 10),
        5 => return (StatusCode::INTERNAL_SERVER_ERROR, "oops").into_response(),
        6 => doc["Code"] = json!("Failed"),
        _ => doc["ExpiredTime"] = json!(now + 30 * 86_400),
    }
    (StatusCode::OK, doc.to_string()).into_response()
}

async fn hostile_metadata(good: Value) -> Hostile {
    let mode = Arc::new(AtomicUsize::new(0));
    let m = mode.clone();
    let app = axum::Router::new()
        .route(
            "/latest/meta-data/cam/security-credentials/",
            axum::routing::get(|| async { "hostile-role\n" }),
        )
        .route(
            "/latest/meta-data/cam/security-credentials/hostile-role",
            axum::routing::get(move || {
                let mode = m.load(Ordering::SeqCst);
                let good = good.clone();
                async move { hostile_answer(mode, &good) }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Hostile {
        base,
        mode,
        _task: task,
    }
}

#[tokio::test]
async fn hostile_metadata_answers_are_refused_clearly_and_keep_the_current_credentials() {
    let emu = emulator(None).await;
    // A key the emulator accepts, served by the hostile service while it behaves.
    let (id, key, token) = (
        "AKIDhostile000000000000000000000001",
        "HOSTILEkey0000000000000000000001",
        "HOSTILEtoken00000000000000000000000000001",
    );
    let expires = unix_now() + 3600;
    emu.app.update_settings(|s| {
        s.credentials
            .push(Credential::temporary(id, key, token, Some(expires)))
    });
    let good = json!({"TmpSecretId": id, "TmpSecretKey": key, "Token": token,
        "ExpiredTime": expires, "Expiration": "x", "Code": "Success"});
    let hostile = hostile_metadata(good).await;
    let observer = Arc::new(CountingObserver::default());
    let c = client(&emu, instance_role(&hostile.base), observer.clone());
    describe(&c).await.expect("good answer first");
    let wants = [
        (1, "larger than"),
        (2, "not a JSON credentials document"),
        (3, "TmpSecretKey is missing"),
        (4, "not after now"),
        (5, "HTTP 500"),
        (6, "\"Failed\""),
        (7, "claim to live"),
    ];
    for (mode, want) in wants {
        hostile.mode.store(mode, Ordering::SeqCst);
        let err = fetch_error(&c).await;
        let text = clb_ingress::clb::providers::describe_chain(&err);
        assert!(text.contains(want), "mode {mode}: {text}");
        assert!(!text.contains(key) && !text.contains(token), "{text}");
        assert_eq!(
            c.reload_credentials(ReloadTrigger::Expiry).await,
            Some(ReloadOutcome::Failed),
            "mode {mode}"
        );
        describe(&c)
            .await
            .unwrap_or_else(|e| panic!("mode {mode}: the good credentials stay: {e}"));
    }
    assert_eq!(c.credentials_expiry(), Some(expires));
    // With no valid credentials at all, a call fails before sending, saying why.
    let fresh = client(&emu, instance_role(&hostile.base), observer);
    hostile.mode.store(2, Ordering::SeqCst);
    let err = describe(&fresh).await.expect_err("no credentials");
    assert_eq!(err.category(), ErrorCategory::Auth);
    let text = clb_ingress::clb::providers::describe_chain(&err);
    assert!(
        text.contains("no valid instance role credentials") && text.contains("not a JSON"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_controller_routes_with_web_identity_then_instance_role_credentials_refreshed_in_seconds()
 {
    let e = cluster::env().await;
    e.emu.app.update_settings(|s| {
        s.sts.roles.push(role(OIDC_TOKEN));
        s.sts.lifetime_secs = Some(6);
        s.sts.instance_role = Some(INSTANCE_ROLE.into());
    });
    let token = tempfile::NamedTempFile::new().expect("tempfile");
    write_token(token.path(), OIDC_TOKEN);
    let sts = format!("http://{}", e.emu.addr);
    let token_path = token.path().to_str().expect("utf-8").to_string();
    let ctl = e.controller(
        "web-identity",
        &[
            "--role-arn",
            ROLE_ARN,
            "--oidc-provider-id",
            PROVIDER_ID,
            "--web-identity-token-file",
            &token_path,
            "--sts-endpoint",
            &sts,
        ],
    );
    e.class("PerIngress").await;
    e.service("web", &["10.1.0.1"]).await;
    e.ingress("first", "first.example.com", &[("/", "Prefix", "web")])
        .await;
    e.until_routed("first", "first.example.com", "/", "10.1.0.1:8080", SLOW)
        .await;
    // Past the first credentials' lifetime: a change still reaches the CLB.
    tokio::time::sleep(Duration::from_secs(7)).await;
    e.ingress("second", "second.example.com", &[("/", "Prefix", "web")])
        .await;
    e.until_routed("second", "second.example.com", "/", "10.1.0.1:8080", SLOW)
        .await;
    let series = r#"clb_ingress_credential_reloads_total{outcome="Changed",trigger="Expiry"}"#;
    let changed = cluster::metric(&ctl.metrics, series).await.unwrap_or(0.0);
    assert!(changed >= 2.0, "{changed} fetches:\n{}", ctl.log());
    let log = ctl.log();
    assert!(log.contains("credentials reloaded"), "{log}");
    assert!(!log.contains(OIDC_TOKEN), "the OIDC token in the log");
    for k in e.emu.app.update_settings(|s| s.credentials.clone()) {
        assert!(!log.contains(&k.secret_key), "a key in the log");
        if let Some(t) = k.token {
            assert!(!log.contains(&t), "a session token in the log");
        }
    }
    drop(ctl);

    let ctl = e.controller(
        "instance-role",
        &[
            "--credentials-provider",
            "instance-role",
            "--metadata-endpoint",
            &sts,
        ],
    );
    e.ingress("third", "third.example.com", &[("/", "Prefix", "web")])
        .await;
    e.until_routed("third", "third.example.com", "/", "10.1.0.1:8080", SLOW)
        .await;
    assert!(
        cluster::metric(&ctl.metrics, series).await.unwrap_or(0.0) >= 1.0,
        "{}",
        ctl.log()
    );
}
