//! The emulator's admin endpoint guard (token and JSON content type on every write, secrets shown
//! only on request) and the API server's limits (header-read timeout, connection cap, body cap),
//! over real loopback HTTP.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use clb_ingress::emulator::config::{AdminToken, DEFAULT_SECRET_KEY, Settings};
use clb_ingress::emulator::core::SystemClock;
use clb_ingress::emulator::server::{self, MAX_BODY_BYTES, NoPlane, Running};
use clb_test_support::emulator::{self as harness, random_admin_token};
use reqwest::StatusCode;
use reqwest::header::CONTENT_TYPE;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A bound no passing case comes near.
const GENEROUS: Duration = Duration::from_secs(10);
const TOKEN: &str = "admin-test-token-0123456789";

fn settings() -> Settings {
    Settings {
        listen: "127.0.0.1:0".parse().expect("addr"),
        admin_token: Some(AdminToken::new(TOKEN)),
        ..Settings::default()
    }
}

async fn start(s: Settings) -> Running {
    server::start(s, Arc::new(SystemClock), Arc::new(NoPlane))
        .await
        .expect("emulator starts")
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(GENEROUS)
        .build()
        .expect("client")
}

fn url(r: &Running, path: &str) -> String {
    format!("http://{}/_emulator/{path}", r.addr)
}

async fn status(req: reqwest::RequestBuilder) -> StatusCode {
    req.send().await.expect("admin request").status()
}

async fn json_of(req: reqwest::RequestBuilder) -> Value {
    let resp = req.send().await.expect("admin request");
    assert!(resp.status().is_success(), "{}", resp.status());
    resp.json().await.expect("json")
}

#[tokio::test]
async fn an_admin_write_without_the_admin_token_is_refused_with_401() {
    let r = start(settings()).await;
    let c = http();
    for (method, path) in [
        (reqwest::Method::POST, "pause"),
        (reqwest::Method::POST, "resume"),
        (reqwest::Method::POST, "reset"),
        (reqwest::Method::POST, "counters/reset"),
        (reqwest::Method::PUT, "faults"),
        (reqwest::Method::PATCH, "settings"),
    ] {
        let no_token = c.request(method.clone(), url(&r, path)).json(&json!({}));
        assert_eq!(status(no_token).await, 401, "{method} {path}");
        let wrong = c
            .request(method.clone(), url(&r, path))
            .bearer_auth("not-the-token")
            .json(&json!({}));
        assert_eq!(
            status(wrong).await,
            401,
            "{method} {path} with a wrong token"
        );
    }
    let faults = json_of(c.get(url(&r, "faults"))).await;
    assert_eq!(
        faults["pause_tasks"], false,
        "a refused pause changed nothing"
    );
}

#[tokio::test]
async fn an_admin_write_with_a_text_or_form_content_type_is_refused_with_415() {
    let r = start(settings()).await;
    let c = http();
    for content_type in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
    ] {
        let req = c
            .post(url(&r, "pause"))
            .bearer_auth(TOKEN)
            .header(CONTENT_TYPE, content_type)
            .body("{}");
        assert_eq!(status(req).await, 415, "{content_type}");
    }
    let none = c.post(url(&r, "pause")).bearer_auth(TOKEN);
    assert_eq!(status(none).await, 415, "no content type");
    let faults = json_of(c.get(url(&r, "faults"))).await;
    assert_eq!(
        faults["pause_tasks"], false,
        "a refused pause changed nothing"
    );
}

#[tokio::test]
async fn an_admin_write_with_the_token_as_bearer_or_in_its_header_and_json_is_applied() {
    let r = start(settings()).await;
    let c = http();
    let paused = c
        .post(url(&r, "pause"))
        .bearer_auth(TOKEN)
        .header(CONTENT_TYPE, "application/json; charset=utf-8");
    assert_eq!(json_of(paused).await["pause_tasks"], true);
    assert_eq!(json_of(c.get(url(&r, "faults"))).await["pause_tasks"], true);
    let resumed = c
        .post(url(&r, "resume"))
        .header("X-Emulator-Admin-Token", TOKEN)
        .header(CONTENT_TYPE, "application/json");
    assert_eq!(json_of(resumed).await["pause_tasks"], false);
}

#[tokio::test]
async fn admin_reads_are_open_and_redacted_without_show_secrets() {
    let r = start(settings()).await;
    let c = http();
    let shown = json_of(c.get(url(&r, "settings"))).await;
    assert_eq!(shown["credentials"][0]["secret_key"], server::REDACTED);
    let text = shown.to_string();
    assert!(
        !text.contains(DEFAULT_SECRET_KEY) && !text.contains(TOKEN),
        "{text}"
    );
    assert_eq!(status(c.get(url(&r, "state"))).await, 200);
}

#[tokio::test]
async fn show_secrets_shows_the_secret_key_and_then_every_admin_read_but_healthz_needs_the_token() {
    let r = start(Settings {
        admin_show_secrets: true,
        ..settings()
    })
    .await;
    let c = http();
    assert_eq!(status(c.get(url(&r, "settings"))).await, 401);
    assert_eq!(status(c.get(url(&r, "state"))).await, 401);
    assert_eq!(status(c.get(url(&r, "healthz"))).await, 200);
    let shown = json_of(c.get(url(&r, "settings")).bearer_auth(TOKEN)).await;
    assert_eq!(shown["credentials"][0]["secret_key"], DEFAULT_SECRET_KEY);
    assert!(
        !shown.to_string().contains(TOKEN),
        "the admin token is never shown"
    );
}

#[tokio::test]
async fn a_settings_patch_cannot_change_the_admin_token_or_the_show_secrets_switch() {
    let r = start(settings()).await;
    let c = http();
    let patch = json!({"admin_token": "attacker", "admin_show_secrets": true, "rate_limit": 3});
    let patched = c.patch(url(&r, "settings")).bearer_auth(TOKEN).json(&patch);
    assert_eq!(json_of(patched).await["rate_limit"], 3);
    let with_new = c
        .post(url(&r, "pause"))
        .bearer_auth("attacker")
        .json(&json!({}));
    assert_eq!(status(with_new).await, 401);
    let shown = json_of(c.get(url(&r, "settings"))).await;
    assert_eq!(shown["credentials"][0]["secret_key"], server::REDACTED);
}

#[tokio::test]
async fn a_random_admin_token_is_made_when_none_is_configured() {
    let a = start(Settings {
        admin_token: None,
        ..settings()
    })
    .await;
    let b = start(Settings {
        admin_token: None,
        ..settings()
    })
    .await;
    assert!(a.admin_token().len() >= 32, "{}", a.admin_token());
    assert_ne!(a.admin_token(), b.admin_token());
    let c = http();
    let paused = c
        .post(url(&a, "pause"))
        .bearer_auth(a.admin_token())
        .json(&json!({}));
    assert_eq!(status(paused).await, 200);
}

// ---------------------------------------------------------------------------------------------
// Server limits

async fn raw(r: &Running, bytes: &[u8]) -> TcpStream {
    let mut stream = TcpStream::connect(r.addr).await.expect("connect");
    stream.write_all(bytes).await.expect("write");
    stream
}

/// What the server wrote until it closed the connection; `None` if still open after a while.
async fn until_closed(stream: &mut TcpStream) -> Option<String> {
    let mut out = Vec::new();
    tokio::time::timeout(GENEROUS, stream.read_to_end(&mut out))
        .await
        .ok()
        .map(|_| String::from_utf8_lossy(&out).into_owned())
}

fn short_header_timeout(max_connections: usize) -> Settings {
    let mut s = settings();
    s.server.header_read_timeout_ms = 300;
    s.server.max_connections = max_connections;
    s
}

#[tokio::test]
async fn a_client_stalled_mid_header_is_disconnected_by_the_api_server_after_the_header_timeout() {
    let r = start(short_header_timeout(16)).await;
    let mut slow = raw(&r, b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\n").await;
    assert!(until_closed(&mut slow).await.is_some(), "still open");
}

#[tokio::test]
async fn slow_clients_beyond_the_connection_cap_do_not_stop_the_admin_healthz() {
    let r = start(short_header_timeout(2)).await;
    let mut slow = Vec::new();
    for _ in 0..8 {
        slow.push(raw(&r, b"GET /_emulator/state HTTP/1.1\r\n").await);
    }
    assert_eq!(status(http().get(url(&r, "healthz"))).await, 200);
}

#[tokio::test]
async fn an_api_body_over_the_tc3_cap_is_refused_with_413() {
    let r = start(settings()).await;
    let head = format!(
        "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        MAX_BODY_BYTES + 1
    );
    let mut conn = raw(&r, head.as_bytes()).await;
    let answer = until_closed(&mut conn).await.unwrap_or_default();
    assert!(answer.starts_with("HTTP/1.1 413 "), "{answer}");
}

// ---------------------------------------------------------------------------------------------
// The binary

#[test]
fn emulator_help_never_prints_the_admin_token_given_by_the_environment() {
    let token = random_admin_token();
    let out = harness::command()
        .args(["emulator", "--help"])
        .env("CLB_EMULATOR_ADMIN_TOKEN", &token)
        .output()
        .expect("clb-ingress emulator --help");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(text.contains("--admin-token"), "{text}");
    assert!(!text.contains(&token), "--help prints the admin token");
}

#[tokio::test]
async fn the_emulator_prints_a_generated_admin_token_at_start_that_opens_admin_writes() {
    let mut child = harness::command()
        .args(["emulator", "--listen", "127.0.0.1:0", "--no-data-plane"])
        .args(["--vip-base", &harness::random_vip_base().to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn clb-ingress emulator");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let first = lines.next().and_then(Result::ok).unwrap_or_default();
    let second = lines.next().and_then(Result::ok).unwrap_or_default();
    let addr = first
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .map(str::to_string);
    let token = second
        .strip_prefix("admin token: ")
        .and_then(|rest| rest.split_whitespace().next())
        .map(str::to_string);
    let (with_token, without) = match (&addr, &token) {
        (Some(addr), Some(token)) => {
            let pause = format!("http://{addr}/_emulator/pause");
            let c = http();
            let with_token = c
                .post(&pause)
                .bearer_auth(token)
                .json(&json!({}))
                .send()
                .await;
            let without = c.post(&pause).json(&json!({})).send().await;
            (
                with_token.map(|r| r.status().as_u16()).ok(),
                without.map(|r| r.status().as_u16()).ok(),
            )
        }
        _ => (None, None),
    };
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        token.as_ref().is_some_and(|t| t.len() >= 32),
        "start lines: {first:?} {second:?}"
    );
    assert_eq!((with_token, without), (Some(200), Some(401)));
}
