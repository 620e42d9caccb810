//! Wire-format tests of the client against a tiny in-process axum server on 127.0.0.1:0 that
//! records each request and answers canned API 3.0 envelopes.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use bytes::Bytes;
use serde_json::{Value, json};

use super::actions::ops;
use super::client::{ClbClient, ClientConfig, Endpoint, TaskWaitConfig};
use super::clock::{FixedClock, FixedJitter};
use super::credentials::{Credentials, SecretString};
use super::error::{ClbError, ErrorCategory};
use super::observe::{CountingObserver, ReloadOutcome, ReloadTrigger};
use super::ratelimit::RateLimitConfig;
use super::retry::{Backoff, RetryPolicy};
use super::sign::{SigningInput, parse_authorization, sign};
use super::types::{
    BatchTarget, BatchTargetsRequest, DescribeLoadBalancersRequest, DescribeTargetsRequest, Empty,
    UploadCertificateRequest,
};

const SECRET_ID: &str = "AKIDwiretest0123456789";
const SECRET_KEY: &str = "WIREsecretKEYmustNeverLeak0123456";
const TOKEN: &str = "WIREsessionTOKENvalue987";
const TS: i64 = 1_700_000_000;
const REGION: &str = "ap-guangzhou";

#[derive(Debug, Clone)]
struct Recorded {
    headers: HeaderMap,
    body: Bytes,
}

impl Recorded {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

/// `(call index, action, request JSON) -> (HTTP status, body)`.
type Responder = Arc<dyn Fn(usize, &str, &Value) -> (u16, String) + Send + Sync>;

#[derive(Clone)]
struct ServerState {
    recorded: Arc<Mutex<Vec<Recorded>>>,
    responder: Responder,
}

struct TestServer {
    addr: SocketAddr,
    recorded: Arc<Mutex<Vec<Recorded>>>,
}

impl TestServer {
    fn requests(&self) -> Vec<Recorded> {
        self.recorded.lock().unwrap().clone()
    }
}

async fn handle(
    State(state): State<ServerState>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    let index = {
        let mut rec = state.recorded.lock().unwrap();
        rec.push(Recorded {
            headers: headers.clone(),
            body: body.clone(),
        });
        rec.len() - 1
    };
    let action = headers
        .get("x-tc-action")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let value: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let (status, text) = (state.responder)(index, &action, &value);
    (StatusCode::from_u16(status).unwrap(), text)
}

async fn serve(
    responder: impl Fn(usize, &str, &Value) -> (u16, String) + Send + Sync + 'static,
) -> TestServer {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let recorded = Arc::new(Mutex::new(Vec::new()));
    let state = ServerState {
        recorded: recorded.clone(),
        responder: Arc::new(responder),
    };
    let app = Router::new().route("/", post(handle)).with_state(state);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    TestServer { addr, recorded }
}

fn ok(fields: Value, index: usize) -> (u16, String) {
    let mut inner = fields.as_object().cloned().unwrap_or_default();
    inner.insert("RequestId".into(), json!(format!("req-{index}")));
    (200, json!({ "Response": inner }).to_string())
}

fn api_error(code: &str, message: &str, index: usize) -> (u16, String) {
    (
        200,
        json!({"Response": {"Error": {"Code": code, "Message": message}, "RequestId": format!("req-{index}")}})
            .to_string(),
    )
}

fn credentials() -> Credentials {
    Credentials::new(
        SECRET_ID,
        SecretString::new(SECRET_KEY),
        Some(SecretString::new(TOKEN)),
    )
    .unwrap()
}

fn fast_policy() -> RetryPolicy {
    let quick = Backoff::new(Duration::from_millis(1), Duration::from_millis(4));
    RetryPolicy {
        throttled: quick,
        busy: quick,
        transient: quick,
        ..RetryPolicy::default()
    }
}

fn config_for(endpoint: &str) -> ClientConfig {
    let mut config = ClientConfig::new(REGION, Endpoint::parse(endpoint).unwrap());
    config.retry = fast_policy();
    config.rate_limits = RateLimitConfig::unlimited();
    config.task_wait = TaskWaitConfig {
        initial: Duration::from_millis(1),
        cap: Duration::from_millis(4),
        timeout: Duration::from_secs(5),
    };
    config
}

fn client_for(server: &TestServer, observer: Arc<CountingObserver>) -> ClbClient {
    ClbClient::builder(
        config_for(&format!("http://{}", server.addr)),
        credentials(),
    )
    .clock(Arc::new(FixedClock::new(TS)))
    .jitter(Arc::new(FixedJitter(0.5)))
    .observer(observer)
    .http_client(reqwest::Client::builder().no_proxy().build().unwrap())
    .build()
    .unwrap()
}

/// Verify the request's Authorization the way a server would, with the shared signer.
fn assert_signature_verifies(r: &Recorded, service: &str) {
    let parsed = parse_authorization(r.header("authorization")).expect("parsable Authorization");
    assert_eq!(parsed.secret_id, SECRET_ID);
    assert_eq!(parsed.date, "2023-11-14");
    assert_eq!(parsed.service, service);
    assert_eq!(parsed.terminator, "tc3_request");
    assert_eq!(parsed.signed_headers, vec!["content-type", "host"]);
    let headers: Vec<(&str, &str)> = parsed
        .signed_headers
        .iter()
        .map(|h| (h.as_str(), r.header(h)))
        .collect();
    let timestamp: i64 = r.header("x-tc-timestamp").parse().unwrap();
    let expected = sign(
        &SigningInput {
            method: "POST",
            query: "",
            headers: &headers,
            payload: &r.body,
            service,
            timestamp,
        },
        SECRET_KEY,
    );
    assert_eq!(parsed.signature, expected.signature, "signature verifies");
}

#[tokio::test]
async fn requests_carry_the_documented_headers_and_a_verifiable_signature() {
    let server = serve(|i, _, _| {
        ok(
            json!({"TotalCount": 1, "LoadBalancerSet": [{"LoadBalancerId": "lb-1"}]}),
            i,
        )
    })
    .await;
    let client = client_for(&server, Arc::default());
    let lbs = client
        .describe_load_balancers(&DescribeLoadBalancersRequest {
            load_balancer_ids: vec!["lb-1".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(lbs.len(), 1);
    let reqs = server.requests();
    assert_eq!(reqs.len(), 1);
    let r = &reqs[0];
    assert_eq!(r.header("host"), server.addr.to_string());
    assert_eq!(r.header("content-type"), "application/json");
    assert_eq!(r.header("x-tc-action"), "DescribeLoadBalancers");
    assert_eq!(r.header("x-tc-version"), "2018-03-17");
    assert_eq!(r.header("x-tc-timestamp"), "1700000000");
    assert_eq!(r.header("x-tc-region"), REGION);
    assert_eq!(r.header("x-tc-token"), TOKEN);
    assert_eq!(
        &r.body[..],
        br#"{"LoadBalancerIds":["lb-1"],"Offset":0,"Limit":100}"#,
        "compact serde_json body, sent unchanged"
    );
    assert_signature_verifies(r, "clb");
}

#[tokio::test]
async fn ssl_actions_use_the_ssl_service_name_and_version() {
    let server = serve(|i, _, _| ok(json!({"CertificateId": "Cert1234"}), i)).await;
    let client = client_for(&server, Arc::default());
    let id = client
        .upload_certificate(&UploadCertificateRequest {
            certificate_public_key: "-----BEGIN CERTIFICATE-----".into(),
            certificate_private_key: Some("-----BEGIN PRIVATE KEY-----".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(id, "Cert1234");
    let r = &server.requests()[0];
    assert_eq!(r.header("x-tc-action"), "UploadCertificate");
    assert_eq!(r.header("x-tc-version"), "2019-12-05");
    assert_signature_verifies(r, "ssl");
}

#[tokio::test]
async fn request_limit_exceeded_is_retried_with_the_same_body_until_success() {
    let server = serve(|i, _, _| {
        if i < 2 {
            api_error("RequestLimitExceeded", "slow down", i)
        } else {
            ok(
                json!({"QuotaSet": [{"QuotaId": "TOTAL_LISTENER_QUOTA", "QuotaLimit": 50}]}),
                i,
            )
        }
    })
    .await;
    let observer = Arc::new(CountingObserver::default());
    let client = client_for(&server, observer.clone());
    let quota = client.describe_quota().await.unwrap();
    assert_eq!(quota[0].quota_limit, 50);
    let reqs = server.requests();
    assert_eq!(reqs.len(), 3);
    assert!(reqs.iter().all(|r| r.body == reqs[0].body));
    let counts = observer.snapshot();
    assert_eq!(counts.calls_with("DescribeQuota", "Throttled"), 2);
    assert_eq!(counts.calls_with("DescribeQuota", "Success"), 1);
    assert_eq!(counts.retries_of("DescribeQuota"), 2);
}

#[tokio::test]
async fn invalid_parameter_is_not_retried_and_keeps_code_message_and_request_id() {
    let server = serve(|i, _, _| api_error("InvalidParameter.FormatError", "bad url", i)).await;
    let observer = Arc::new(CountingObserver::default());
    let client = client_for(&server, observer.clone());
    let err = client
        .call::<_, Empty>(ops::MODIFY_RULE, &json!({"LoadBalancerId": "lb-1"}))
        .await
        .unwrap_err();
    assert_eq!(server.requests().len(), 1);
    assert_eq!(err.category(), ErrorCategory::InvalidInput);
    assert_eq!(err.code(), Some("InvalidParameter.FormatError"));
    assert_eq!(err.request_id(), Some("req-0"));
    assert_eq!(err.action(), Some("ModifyRule"));
    assert_eq!(observer.snapshot().retries_of("ModifyRule"), 0);
}

#[tokio::test]
async fn busy_and_internal_errors_are_retried_up_to_their_caps() {
    let server = serve(|i, _, _| api_error("InternalError", "oops", i)).await;
    let client = client_for(&server, Arc::default());
    let err = client
        .call::<_, Empty>(ops::CREATE_RULE, &json!({}))
        .await
        .unwrap_err();
    assert_eq!(err.category(), ErrorCategory::Transient);
    assert_eq!(
        server.requests().len(),
        crate::retry::DEFAULT_TRANSIENT_ATTEMPTS as usize
    );

    let server = serve(|i, _, _| {
        if i < 3 {
            api_error("FailedOperation.ResourceInOperating", "busy", i)
        } else {
            ok(json!({}), i)
        }
    })
    .await;
    let client = client_for(&server, Arc::default());
    let reply = client
        .call::<_, Empty>(ops::CREATE_RULE, &json!({}))
        .await
        .unwrap();
    assert_eq!(reply.request_id, "req-3");
}

#[tokio::test]
async fn non_200_statuses_are_transient_but_a_write_is_not_repeated_blindly() {
    let server = serve(|_, _, _| (502, "<html>bad gateway</html>".to_string())).await;
    let client = client_for(&server, Arc::default());
    let err = client
        .call::<_, Empty>(ops::CREATE_RULE, &json!({}))
        .await
        .unwrap_err();
    assert!(matches!(err, ClbError::HttpStatus { status: 502, .. }));
    assert_eq!(err.category(), ErrorCategory::Transient);
    assert_eq!(server.requests().len(), 1, "a write may have been applied");
    let err = client
        .call::<_, Empty>(ops::DESCRIBE_LISTENERS, &json!({}))
        .await
        .unwrap_err();
    assert_eq!(err.category(), ErrorCategory::Transient);
    assert_eq!(server.requests().len(), 4, "a read is retried");
}

/// A DescribeLoadBalancers server holding `total(i)` CLBs when it answers its `i`th call.
async fn listing_server(total: impl Fn(usize) -> usize + Send + Sync + 'static) -> TestServer {
    serve(move |i, _, req| {
        let total = total(i);
        let offset = req["Offset"].as_u64().unwrap() as usize;
        let limit = req["Limit"].as_u64().unwrap() as usize;
        let set: Vec<Value> = (offset..(offset + limit).min(total))
            .map(|n| json!({"LoadBalancerId": format!("lb-{n}")}))
            .collect();
        ok(json!({"TotalCount": total, "LoadBalancerSet": set}), i)
    })
    .await
}

#[tokio::test]
async fn paging_collects_every_page() {
    const TOTAL: usize = 250;
    let server = listing_server(|_| TOTAL).await;
    let client = client_for(&server, Arc::default());
    let lbs = client
        .describe_load_balancers(&DescribeLoadBalancersRequest::default())
        .await
        .unwrap();
    assert_eq!(lbs.len(), TOTAL);
    assert_eq!(lbs[TOTAL - 1].load_balancer_id, format!("lb-{}", TOTAL - 1));
    let offsets: Vec<u64> = server
        .requests()
        .iter()
        .map(|r| r.json()["Offset"].as_u64().unwrap())
        .collect();
    // The first page alone, then the others at once (in any order).
    assert_eq!(offsets[0], 0);
    let mut rest = offsets[1..].to_vec();
    rest.sort_unstable();
    assert_eq!(rest, vec![100, 200]);
}

#[tokio::test]
async fn a_count_that_lies_costs_at_most_one_wave_of_pages_not_a_thousand() {
    // Says a million CLBs, holds 150.
    let server = serve(|i, _, req| {
        let offset = req["Offset"].as_u64().unwrap() as usize;
        let limit = req["Limit"].as_u64().unwrap() as usize;
        let set: Vec<Value> = (offset..(offset + limit).min(150))
            .map(|n| json!({"LoadBalancerId": format!("lb-{n}")}))
            .collect();
        ok(json!({"TotalCount": 1_000_000, "LoadBalancerSet": set}), i)
    })
    .await;
    let client = client_for(&server, Arc::default());
    let lbs = client
        .describe_load_balancers(&DescribeLoadBalancersRequest::default())
        .await
        .unwrap();
    assert_eq!(lbs.len(), 150);
    let calls = server.requests().len();
    assert!(
        calls <= 1 + crate::actions::PARALLEL_PAGES + 1,
        "{calls} calls"
    );
}

#[tokio::test]
async fn a_listing_that_grows_while_its_pages_are_read_is_read_to_its_new_end() {
    // 150 CLBs when the first page is read, 320 from then on.
    let server = listing_server(|i| if i == 0 { 150 } else { 320 }).await;
    let client = client_for(&server, Arc::default());
    let lbs = client
        .describe_load_balancers(&DescribeLoadBalancersRequest::default())
        .await
        .unwrap();
    let ids: std::collections::BTreeSet<String> =
        lbs.iter().map(|l| l.load_balancer_id.clone()).collect();
    assert_eq!(ids.len(), 320, "every CLB once");
    assert_eq!(lbs.len(), 320, "no CLB twice");
    assert_eq!(
        server.requests().len(),
        4,
        "pages at 0, 100, then 200 and 300"
    );
}

#[tokio::test]
async fn describe_targets_asks_for_at_most_20_listeners_per_call() {
    let server = serve(|i, _, req| {
        let listeners: Vec<Value> = req["ListenerIds"]
            .as_array()
            .unwrap()
            .iter()
            .map(|id| json!({"ListenerId": id, "Protocol": "HTTP", "Port": 80}))
            .collect();
        ok(json!({"Listeners": listeners}), i)
    })
    .await;
    let client = client_for(&server, Arc::default());
    let ids: Vec<String> = (0..45).map(|i| format!("lbl-{i}")).collect();
    let got = client
        .describe_targets(&DescribeTargetsRequest {
            load_balancer_id: "lb-1".into(),
            listener_ids: ids.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        got.iter()
            .map(|l| l.listener_id.clone())
            .collect::<Vec<_>>(),
        ids
    );
    let sizes: Vec<usize> = server
        .requests()
        .iter()
        .map(|r| r.json()["ListenerIds"].as_array().unwrap().len())
        .collect();
    assert_eq!(sizes, vec![20, 20, 5]);
}

#[tokio::test]
async fn batch_register_targets_chunks_at_500_and_reports_failed_listeners() {
    let server = serve(|i, _, req| {
        let n = req["Targets"].as_array().unwrap().len();
        if n > 500 {
            api_error("InvalidParameter", "too many", i)
        } else if i == 1 {
            ok(
                json!({"FailListenerIdSet": ["lbl-x"], "Message": "Listener lbl-x not exists."}),
                i,
            )
        } else {
            ok(json!({"FailListenerIdSet": []}), i)
        }
    })
    .await;
    let client = client_for(&server, Arc::default());
    let req = BatchTargetsRequest {
        load_balancer_id: "lb-1".into(),
        targets: (0..1200)
            .map(|i| BatchTarget {
                listener_id: "lbl-1".into(),
                port: 8080,
                eni_ip: Some(format!("10.1.{}.{}", i / 250, i % 250)),
                location_id: Some("loc-1".into()),
                ..Default::default()
            })
            .collect(),
    };
    let err = client.batch_register_targets(&req).await.unwrap_err();
    match &err {
        ClbError::BatchPartialFailure { failed, .. } => {
            assert_eq!(failed, &vec!["lbl-x".to_string()])
        }
        other => panic!("unexpected {other:?}"),
    }
    let sizes: Vec<usize> = server
        .requests()
        .iter()
        .map(|r| r.json()["Targets"].as_array().unwrap().len())
        .collect();
    assert_eq!(sizes, vec![500, 500], "stops at the failing chunk");
}

#[tokio::test]
async fn wait_task_polls_until_done_and_reports_the_failure_message() {
    let server = serve(|i, action, req| {
        assert_eq!(action, "DescribeTaskStatus");
        let task = req["TaskId"].as_str().unwrap();
        match (task, i) {
            ("task-ok", 0) | ("task-ok", 1) => ok(json!({"Status": 2}), i),
            ("task-ok", _) => ok(json!({"Status": 0, "LoadBalancerIds": ["lb-new"]}), i),
            _ => ok(json!({"Status": 1, "Message": "listener port conflict"}), i),
        }
    })
    .await;
    let observer = Arc::new(CountingObserver::default());
    let client = client_for(&server, observer.clone());
    let done = client.wait_task("task-ok").await.unwrap();
    assert_eq!(done.load_balancer_ids, Some(vec!["lb-new".to_string()]));
    assert_eq!(server.requests().len(), 3);
    let err = client.wait_task("task-bad").await.unwrap_err();
    assert_eq!(err.category(), ErrorCategory::TaskFailed);
    assert!(err.to_string().contains("listener port conflict"), "{err}");
    let tasks = observer.snapshot().tasks;
    assert_eq!(tasks.get("Success"), Some(&1));
    assert_eq!(tasks.get("TaskFailed"), Some(&1));
}

#[tokio::test]
async fn wait_task_times_out_with_a_transient_error() {
    let server = serve(|i, _, _| ok(json!({"Status": 2}), i)).await;
    let mut config = config_for(&format!("http://{}", server.addr));
    config.task_wait.timeout = Duration::from_millis(30);
    let client = ClbClient::builder(config, credentials())
        .http_client(reqwest::Client::builder().no_proxy().build().unwrap())
        .build()
        .unwrap();
    let err = client.wait_task("t").await.unwrap_err();
    assert!(matches!(err, ClbError::TaskTimeout { .. }), "{err:?}");
    assert_eq!(err.category(), ErrorCategory::Transient);
}

#[tokio::test]
async fn a_refused_connection_is_a_transient_error_retried_even_for_writes() {
    // Bind then drop a listener to get a loopback port with nothing behind it.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let observer = Arc::new(CountingObserver::default());
    let client = ClbClient::builder(
        config_for(&format!("http://127.0.0.1:{port}")),
        credentials(),
    )
    .observer(observer.clone())
    .http_client(reqwest::Client::builder().no_proxy().build().unwrap())
    .build()
    .unwrap();
    let err = client
        .call::<_, Empty>(ops::CREATE_RULE, &json!({}))
        .await
        .unwrap_err();
    assert_eq!(err.category(), ErrorCategory::Transient);
    assert!(err.request_was_rejected());
    assert_eq!(
        observer.snapshot().calls_with("CreateRule", "Transient"),
        u64::from(crate::retry::DEFAULT_TRANSIENT_ATTEMPTS)
    );
}

#[tokio::test]
async fn delete_load_balancer_listeners_refuses_an_empty_list() {
    let server = serve(|i, _, _| ok(json!({}), i)).await;
    let client = client_for(&server, Arc::default());
    let err = client
        .delete_load_balancer_listeners(&crate::types::DeleteLoadBalancerListenersRequest {
            load_balancer_id: "lb-1".into(),
            listener_ids: vec![],
        })
        .await
        .unwrap_err();
    assert_eq!(err.category(), ErrorCategory::InvalidInput);
    assert!(server.requests().is_empty());
}

/// A `MakeWriter` that appends everything to a shared buffer.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Capture {
    type Writer = Capture;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

fn error_chain(err: &dyn std::error::Error) -> String {
    let mut out = format!("{err} | {err:?} | {err:#?}");
    let mut source = err.source();
    while let Some(s) = source {
        out.push_str(&format!(" | {s} | {s:?}"));
        source = s.source();
    }
    out
}

#[tokio::test]
async fn the_secret_key_never_appears_in_logs_errors_or_debug_output_at_trace_level() {
    let capture = Capture::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(capture.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let server = serve(|i, action, _| match action {
        "DescribeQuota" if i == 0 => api_error("RequestLimitExceeded", "slow", i),
        "DescribeQuota" => ok(json!({"QuotaSet": []}), i),
        "DescribeTaskStatus" => ok(json!({"Status": 1, "Message": "failed"}), i),
        "ModifyRule" => api_error("AuthFailure.SignatureFailure", "signature mismatch", i),
        "DescribeListeners" => (200, "not json".to_string()),
        _ => (500, "boom".to_string()),
    })
    .await;
    let observer = Arc::new(CountingObserver::default());
    let client = client_for(&server, observer.clone());
    let mut outputs = vec![
        format!("{client:?}"),
        format!("{client:#?}"),
        format!("{:?}", credentials()),
        format!("{}", credentials()),
    ];
    client.describe_quota().await.unwrap();
    let errors = [
        client.wait_task("t-1").await.unwrap_err(),
        client
            .call::<_, Empty>(ops::MODIFY_RULE, &json!({}))
            .await
            .unwrap_err(),
        client
            .call::<_, Empty>(ops::DESCRIBE_LISTENERS, &json!({}))
            .await
            .unwrap_err(),
        client
            .call::<_, Empty>(ops::CREATE_RULE, &json!({}))
            .await
            .unwrap_err(),
    ];
    let dead = ClbClient::builder(config_for("http://127.0.0.1:9"), credentials())
        .http_client(reqwest::Client::builder().no_proxy().build().unwrap())
        .build()
        .unwrap();
    let transport = dead.describe_quota().await.unwrap_err();
    for err in errors.iter().chain(std::iter::once(&transport)) {
        outputs.push(error_chain(err));
        outputs.push(err.category().as_str().to_string());
    }
    outputs.push(format!("{:?}", observer.snapshot()));
    for r in server.requests() {
        outputs.push(format!("{:?}", r.headers));
        outputs.push(String::from_utf8_lossy(&r.body).to_string());
    }
    let logs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("TRACE") || logs.contains("DEBUG"),
        "verbose logging was captured"
    );
    assert!(logs.contains("DescribeQuota"));
    outputs.push(logs);
    for text in &outputs {
        assert!(!text.contains(SECRET_KEY), "SecretKey leaked: {text}");
    }
    // The token travels in X-TC-Token, but must not show in logs, errors or Debug output.
    for text in &outputs[..outputs.len() - 1] {
        if text.contains("x-tc-token") {
            continue; // the server's own record of the raw headers
        }
        assert!(!text.contains(TOKEN), "session token leaked: {text}");
    }
    assert!(
        !outputs.last().unwrap().contains(TOKEN),
        "session token in logs"
    );
}

#[tokio::test]
async fn a_redirect_is_never_followed_so_the_signed_request_stays_on_its_host() {
    // The "other host": counts what reaches it.
    let other = serve(|i, _, _| ok(json!({}), i)).await;
    let target = format!("http://{}/", other.addr);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new().route(
        "/",
        post(move || {
            let target = target.clone();
            async move {
                (
                    StatusCode::TEMPORARY_REDIRECT,
                    [(axum::http::header::LOCATION, target)],
                    "",
                )
            }
        }),
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let config = config_for(&format!("http://{addr}"));
    let client = ClbClient::builder(config.clone(), credentials())
        .clock(Arc::new(FixedClock::new(TS)))
        .jitter(Arc::new(FixedJitter(0.5)))
        .http_client(
            super::client::http_builder(&config)
                .no_proxy()
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    let err = client
        .describe_load_balancers(&DescribeLoadBalancersRequest::default())
        .await
        .expect_err("a redirect is an error");
    assert!(
        matches!(err, ClbError::HttpStatus { status: 307, .. }),
        "{err:?}"
    );
    assert!(other.requests().is_empty(), "the redirect was followed");
}

#[tokio::test]
async fn a_response_body_over_the_cap_is_refused_not_buffered() {
    let big = "x".repeat(super::client::MAX_RESPONSE_BYTES + 1);
    let server = serve(move |_, _, _| (200, big.clone())).await;
    let client = client_for(&server, Arc::new(CountingObserver::default()));
    let err = client
        .describe_load_balancers(&DescribeLoadBalancersRequest::default())
        .await
        .expect_err("too large");
    assert!(matches!(err, ClbError::ResponseTooLarge { .. }), "{err:?}");
}

#[tokio::test]
async fn a_rotated_credentials_file_is_used_for_the_next_calls() {
    let server = serve(|i, _, _| ok(json!({"TotalCount": 0, "LoadBalancerSet": []}), i)).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("credentials.json");
    std::fs::write(
        &file,
        r#"{"SecretId": "AKIDfirst0000", "SecretKey": "keyONE"}"#,
    )
    .unwrap();
    let client = ClbClient::builder(
        config_for(&format!("http://{}", server.addr)),
        Credentials::from_path(&file).unwrap(),
    )
    .credentials_file(&file)
    .http_client(reqwest::Client::builder().no_proxy().build().unwrap())
    .build()
    .unwrap();
    let watcher = client
        .watch_credentials(Duration::from_millis(10))
        .expect("a client with a credentials file has a watcher");
    let secret_id_of_last = |server: &TestServer| {
        let r = server.requests().last().cloned().unwrap();
        parse_authorization(r.header("authorization"))
            .unwrap()
            .secret_id
            .to_string()
    };
    client
        .describe_load_balancers(&DescribeLoadBalancersRequest::default())
        .await
        .unwrap();
    assert_eq!(secret_id_of_last(&server), "AKIDfirst0000");
    std::fs::write(
        &file,
        r#"{"SecretId": "AKIDsecond000", "SecretKey": "keyTWO"}"#,
    )
    .unwrap();
    let mut seen = String::new();
    for _ in 0..200 {
        tokio::time::sleep(Duration::from_millis(10)).await;
        client
            .describe_load_balancers(&DescribeLoadBalancersRequest::default())
            .await
            .unwrap();
        seen = secret_id_of_last(&server);
        if seen == "AKIDsecond000" {
            break;
        }
    }
    assert_eq!(seen, "AKIDsecond000", "the rotated file was not picked up");
    // A broken file keeps the last good credentials.
    std::fs::write(&file, "not credentials").unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    client
        .describe_load_balancers(&DescribeLoadBalancersRequest::default())
        .await
        .unwrap();
    assert_eq!(secret_id_of_last(&server), "AKIDsecond000");
    watcher.abort();
}

fn write_credentials(path: &std::path::Path, id: &str, token: &str) {
    // Write-and-rename, as the kubelet updates a Secret volume.
    let tmp = path.with_extension("tmp");
    std::fs::write(
        &tmp,
        json!({"SecretId": id, "SecretKey": SECRET_KEY, "Token": token}).to_string(),
    )
    .unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn file_client(
    server: &TestServer,
    file: &std::path::Path,
    observer: Arc<CountingObserver>,
) -> ClbClient {
    ClbClient::builder(
        config_for(&format!("http://{}", server.addr)),
        Credentials::from_path(file).unwrap(),
    )
    .credentials_file(file)
    .observer(observer)
    .http_client(reqwest::Client::builder().no_proxy().build().unwrap())
    .build()
    .unwrap()
}

fn modify_rule() -> super::types::ModifyRuleRequest {
    super::types::ModifyRuleRequest {
        load_balancer_id: "lb-1".into(),
        listener_id: "lbl-1".into(),
        location_id: "loc-1".into(),
        url: Some("/new".into()),
        ..Default::default()
    }
}

#[tokio::test]
async fn a_write_refused_with_token_failure_is_repeated_once_with_the_reloaded_token() {
    // The first request is refused as the real API refuses an expired STS token.
    let server = serve(|i, _, _| match i {
        0 => api_error("AuthFailure.TokenFailure", "token expired", i),
        _ => ok(json!({}), i),
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("credentials.json");
    write_credentials(&file, "AKIDsts1", "TOKENone");
    let observer = Arc::new(CountingObserver::default());
    let client = file_client(&server, &file, observer.clone());
    // The STS agent rotated the file; no watcher runs, so only the failure can notice.
    write_credentials(&file, "AKIDsts2", "TOKENtwo");
    client
        .modify_rule(&modify_rule())
        .await
        .expect("repeated with the new token");
    let requests = server.requests();
    assert_eq!(requests.len(), 2, "one refused attempt, one repeat");
    assert_eq!(requests[0].header("x-tc-token"), "TOKENone");
    assert_eq!(requests[1].header("x-tc-token"), "TOKENtwo");
    let second = parse_authorization(requests[1].header("authorization")).unwrap();
    assert_eq!(second.secret_id, "AKIDsts2");
    assert_eq!(
        requests[0].body, requests[1].body,
        "the same request repeated"
    );
    let counts = observer.snapshot();
    assert_eq!(
        counts.reloads_of(ReloadTrigger::AuthFailure, ReloadOutcome::Changed),
        1
    );
    assert_eq!(counts.calls_with("ModifyRule", "Auth"), 1);
    assert_eq!(counts.calls_with("ModifyRule", "Success"), 1);
}

#[tokio::test]
async fn a_token_failure_with_an_unchanged_file_fails_at_once_and_rereads_are_rate_limited() {
    let server = serve(|i, _, _| api_error("AuthFailure.TokenFailure", "token expired", i)).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("credentials.json");
    write_credentials(&file, "AKIDsts1", "TOKENone");
    let observer = Arc::new(CountingObserver::default());
    let client = file_client(&server, &file, observer.clone());
    for _ in 0..3 {
        let err = client.modify_rule(&modify_rule()).await.unwrap_err();
        assert_eq!(err.code(), Some("AuthFailure.TokenFailure"));
    }
    assert_eq!(
        server.requests().len(),
        3,
        "no call repeated: nothing changed"
    );
    let counts = observer.snapshot();
    assert_eq!(
        counts.reloads_of(ReloadTrigger::AuthFailure, ReloadOutcome::Unchanged),
        1,
        "one re-read per AUTH_RELOAD_MIN_INTERVAL"
    );
    assert_eq!(
        counts.reloads_of(ReloadTrigger::AuthFailure, ReloadOutcome::Skipped),
        2
    );
}

#[tokio::test]
async fn a_signature_expired_error_does_not_reread_the_credentials() {
    let server = serve(|i, _, _| api_error("AuthFailure.SignatureExpire", "clock skew", i)).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("credentials.json");
    write_credentials(&file, "AKIDsts1", "TOKENone");
    let observer = Arc::new(CountingObserver::default());
    let client = file_client(&server, &file, observer.clone());
    write_credentials(&file, "AKIDsts2", "TOKENtwo");
    let err = client.modify_rule(&modify_rule()).await.unwrap_err();
    assert_eq!(err.code(), Some("AuthFailure.SignatureExpire"));
    assert_eq!(server.requests().len(), 1);
    assert!(observer.snapshot().reloads.is_empty());
}

#[tokio::test]
async fn the_watcher_reads_an_unchanged_credentials_file_no_more_than_its_full_reload_period() {
    let server = serve(|i, _, _| ok(json!({}), i)).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("credentials.json");
    write_credentials(&file, "AKIDsts1", "TOKENone");
    let observer = Arc::new(CountingObserver::default());
    let client = file_client(&server, &file, observer.clone());
    let watcher = client.watch_credentials(Duration::from_millis(5)).unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        observer.snapshot().reloads.is_empty(),
        "an unchanged file is only stat-ed: {:?}",
        observer.snapshot().reloads
    );
    write_credentials(&file, "AKIDsts2", "TOKENtwo");
    let changed = || {
        observer
            .snapshot()
            .reloads_of(ReloadTrigger::Watch, ReloadOutcome::Changed)
    };
    for _ in 0..400 {
        if changed() > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(changed(), 1);
    client.modify_rule(&modify_rule()).await.unwrap();
    let last = server.requests().last().cloned().unwrap();
    assert_eq!(last.header("x-tc-token"), "TOKENtwo");
    watcher.abort();
}
