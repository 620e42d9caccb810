//! The emulator's HTTP server: the Tencent Cloud API 3.0 endpoint (`POST /`, TC3 verified,
//! dispatched on `X-TC-Action`, always HTTP 200 with the §1.6 envelope) and the JSON admin
//! endpoint under `/_emulator/` (settings, faults, pause, counters, state dump, reset).
//!
//! Admin writes (any method but GET/HEAD) need the admin token and a JSON content type, so a web
//! page (cross-site or by DNS rebinding) cannot change the emulator; reads stay open on loopback
//! unless secrets are shown. Served with [`clb_http_limits`] (header-read timeout, connection
//! cap, body cap).

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State as AxState};
use axum::http::{HeaderMap, Method, StatusCode, header as hdr};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::actions::common::to_value;
use crate::actions::{self, Service};
use crate::config::{Faults, SIGNATURE_MAX_SKEW_SECS, Settings};
use crate::core::{Clock, Core};
use crate::dataplane::{BoundListener, DataPlane, DataPlaneConfig};
use crate::error::{ApiFailure, codes};
use crate::state::State;
use crate::sts;
use clb_api::sign;
use clb_http_limits::Limits;

/// Largest accepted request body (TC3 POST limit, clb-api.md §1.2).
pub const MAX_BODY_BYTES: usize = 10 * 1024 * 1024;
/// Header that may carry the admin token (instead of `Authorization: Bearer <token>`).
pub const ADMIN_TOKEN_HEADER: &str = "x-emulator-admin-token";
/// The admin path that never needs the token (readiness checks).
const ADMIN_HEALTHZ: &str = "/_emulator/healthz";
/// How long in-flight requests may finish when the server stops.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);
/// The algorithm's payload marker for unsigned bodies.
const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";

/// Where the control plane sends the data plane configuration after every change.
pub trait PlaneSink: Send + Sync + 'static {
    /// Apply `cfg`; answers the failures (listeners that could not be served) as text.
    fn apply(&self, cfg: DataPlaneConfig)
    -> Pin<Box<dyn Future<Output = Vec<String>> + Send + '_>>;

    /// The listeners being served and the port offset in use; `None` without a data plane.
    fn report(&self) -> Option<PlaneReport> {
        None
    }

    /// The health-check results of the data plane; `None` when nothing probes targets.
    fn health(&self) -> Option<Arc<crate::health::HealthTable>> {
        None
    }
}

/// What a data plane serves, for `GET /_emulator/dataplane`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlaneReport {
    pub port_offset: u16,
    pub listeners: Vec<BoundListener>,
}

/// No data plane (API-only runs and tests).
#[derive(Debug, Default)]
pub struct NoPlane;

impl PlaneSink for NoPlane {
    fn apply(
        &self,
        _cfg: DataPlaneConfig,
    ) -> Pin<Box<dyn Future<Output = Vec<String>> + Send + '_>> {
        Box::pin(async { Vec::new() })
    }
}

impl PlaneSink for DataPlane {
    fn apply(
        &self,
        cfg: DataPlaneConfig,
    ) -> Pin<Box<dyn Future<Output = Vec<String>> + Send + '_>> {
        Box::pin(async move {
            match DataPlane::apply(self, cfg).await {
                Ok(()) => Vec::new(),
                Err(e) => {
                    tracing::warn!(error = %e, "data plane could not apply every listener");
                    e.failures().iter().map(ToString::to_string).collect()
                }
            }
        })
    }

    fn health(&self) -> Option<Arc<crate::health::HealthTable>> {
        Some(self.health_table())
    }

    fn report(&self) -> Option<PlaneReport> {
        Some(PlaneReport {
            port_offset: self.settings().port_offset,
            listeners: self.bound_listeners(),
        })
    }
}

/// The last configuration the data plane finished applying.
#[derive(Debug, Default)]
struct Applied {
    /// Generation of that configuration (0 = none applied yet; the initial one is 1).
    generation: u64,
    /// Its failures.
    errors: Vec<String>,
}

/// Shared state of a running emulator.
pub struct App {
    core: Mutex<Core>,
    /// The generation of the state (counting from 1, bumped by every change): the data plane
    /// task builds the configuration of the latest state when it is ready for one, so a burst
    /// of writes costs one build, not one per write (a build reads every CLB).
    plane: watch::Sender<u64>,
    sink: Arc<dyn PlaneSink>,
    applied: Arc<Mutex<Applied>>,
    state_file: Option<PathBuf>,
    /// The token admin writes need (configured or generated at start).
    admin_token: String,
    /// Admin answers show SecretKeys and private keys; reads need the token too.
    show_secrets: bool,
}

impl App {
    /// The token admin writes need.
    pub fn admin_token(&self) -> &str {
        &self.admin_token
    }

    fn lock(&self) -> MutexGuard<'_, Core> {
        self.core.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Change the settings in place (tests and embedders; over HTTP, `/_emulator/settings`),
    /// e.g. add a temporary credential or expire its token. Start-only fields are not re-read.
    pub fn update_settings<R>(&self, f: impl FnOnce(&mut Settings) -> R) -> R {
        f(&mut self.lock().settings)
    }

    /// After a state change: push the data plane config and persist.
    fn publish(&self, core: &Core) {
        self.plane.send_modify(|generation| *generation += 1);
        if let Some(path) = &self.state_file
            && let Err(e) = core.state.save(path)
        {
            tracing::error!(error = %e, "cannot persist emulator state");
        }
    }
}

/// A started emulator API server.
pub struct Running {
    pub addr: SocketAddr,
    pub app: Arc<App>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Stop serving and wait for the server task.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let _ = (&mut self.task).await;
    }

    /// The token admin writes need (configured, or generated at start).
    pub fn admin_token(&self) -> &str {
        self.app.admin_token()
    }

    /// Wait until the server ends (Ctrl-C is handled by the caller).
    pub async fn wait(self) {
        let _ = self.task.await;
    }
}

/// Why the emulator could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    State(#[from] crate::state::StateFileError),
    #[error("cannot bind the API address {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// Data plane builds that took longer than this are followed by a rest as long (see `start`).
const PLANE_BUILD_REST_ABOVE: Duration = Duration::from_millis(10);

/// Start the API server on `settings.listen` (port 0 = ephemeral) with the given clock and
/// data plane. Loads `settings.state_file` if set.
pub async fn start(
    settings: Settings,
    clock: Arc<dyn Clock>,
    plane: Arc<dyn PlaneSink>,
) -> Result<Running, StartError> {
    settings.validate()?;
    let state = match &settings.state_file {
        Some(p) => State::load(p)?,
        None => State::new(),
    };
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .map_err(|source| StartError::Bind {
            addr: settings.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| StartError::Bind {
        addr: settings.listen,
        source,
    })?;
    let state_file = settings.state_file.clone();
    let admin_token = match &settings.admin_token {
        Some(token) => token.expose().to_string(),
        None => uuid::Uuid::new_v4().simple().to_string(),
    };
    let show_secrets = settings.admin_show_secrets;
    let limits = limits(&settings);
    let (tx, mut rx) = watch::channel(1u64);
    let applied = Arc::new(Mutex::new(Applied::default()));
    let mut core = Core::new(settings, state, clock);
    core.health = plane.health();
    let app = Arc::new(App {
        core: Mutex::new(core),
        plane: tx,
        sink: plane.clone(),
        applied: applied.clone(),
        state_file,
        admin_token,
        show_secrets,
    });
    // The data plane follows the latest state; intermediate ones are skipped. The generation
    // is read before the state: the configuration built holds at least that generation.
    let weak = Arc::downgrade(&app);
    tokio::spawn(async move {
        loop {
            let generation = *rx.borrow_and_update();
            let Some(app) = weak.upgrade() else { break };
            let started = std::time::Instant::now();
            let cfg = app.lock().state.to_plane();
            drop(app);
            let errors = plane.apply(cfg).await;
            *applied.lock().unwrap_or_else(PoisonError::into_inner) =
                Applied { generation, errors };
            // A build reads every CLB: with thousands of them, back-to-back builds during a
            // burst of writes would take a whole core from the API. Rest as long as the build
            // took (at most half the time building; nothing when it is quick).
            let took = started.elapsed();
            if took > PLANE_BUILD_REST_ABOVE {
                tokio::time::sleep(took.min(Duration::from_millis(500))).await;
            }
            if rx.changed().await.is_err() {
                break;
            }
        }
    });
    let (stx, srx) = tokio::sync::oneshot::channel::<()>();
    let router = router(app.clone());
    let task = tokio::spawn(clb_http_limits::serve(listener, router, limits, async {
        let _ = srx.await;
    }));
    Ok(Running {
        addr,
        app,
        shutdown: Some(stx),
        task,
    })
}

/// The limits the API server runs with: `settings.server`, and the TC3 body cap.
pub fn limits(settings: &Settings) -> Limits {
    Limits {
        header_read_timeout: Duration::from_millis(settings.server.header_read_timeout_ms),
        max_connections: settings.server.max_connections,
        max_body_bytes: MAX_BODY_BYTES,
        request_timeout: Duration::from_millis(settings.server.request_timeout_ms),
        shutdown_grace: SHUTDOWN_GRACE,
    }
}

/// The router: API on `/`, admin under `/_emulator/` behind [`admin_guard`].
pub fn router(app: Arc<App>) -> Router {
    let admin = Router::new()
        .route(
            ADMIN_HEALTHZ,
            get(|| async { axum::Json(json!({"ok": true})) }),
        )
        .route(
            "/_emulator/settings",
            get(get_settings).patch(patch_settings).post(patch_settings),
        )
        .route(
            "/_emulator/faults",
            get(get_faults).put(put_faults).post(put_faults),
        )
        .route("/_emulator/pause", post(pause))
        .route("/_emulator/resume", post(resume))
        .route("/_emulator/counters", get(get_counters))
        .route("/_emulator/counters/reset", post(reset_counters))
        .route("/_emulator/state", get(get_state))
        .route("/_emulator/tasks", get(get_tasks))
        .route("/_emulator/dataplane", get(get_dataplane))
        .route("/_emulator/reset", post(reset))
        .route_layer(middleware::from_fn_with_state(app.clone(), admin_guard));
    Router::new()
        .route("/", post(api).get(api))
        .route(sts::METADATA_ROLE_PATH, get(metadata_roles))
        .route(
            &format!("{}{{role}}", sts::METADATA_ROLE_PATH),
            get(metadata_role),
        )
        .merge(admin)
        .with_state(app)
}

/// Admin writes (every method but GET and HEAD) need the admin token (401 without it) and a
/// JSON content type (415 otherwise: a web page can send `text/plain` or form bodies to any
/// origin without a preflight, never `application/json`). With secrets shown, reads need the
/// token too. `healthz` is always open.
async fn admin_guard(AxState(app): AxState<Arc<App>>, request: Request, next: Next) -> Response {
    let write = !matches!(*request.method(), Method::GET | Method::HEAD);
    let needs_token = write || (app.show_secrets && request.uri().path() != ADMIN_HEALTHZ);
    if needs_token && !has_admin_token(request.headers(), &app.admin_token) {
        return (
            StatusCode::UNAUTHORIZED,
            [(hdr::WWW_AUTHENTICATE, "Bearer")],
            axum::Json(json!({
                "error": "this admin call needs the admin token (Authorization: Bearer <token> or X-Emulator-Admin-Token), printed at start or set with --admin-token"
            })),
        )
            .into_response();
    }
    if write && !is_json(request.headers()) {
        return (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            axum::Json(json!({ "error": "admin writes need Content-Type: application/json" })),
        )
            .into_response();
    }
    next.run(request).await
}

/// The request carries `token` as a bearer token or in [`ADMIN_TOKEN_HEADER`].
fn has_admin_token(headers: &HeaderMap, token: &str) -> bool {
    let bearer = header(headers, "authorization").and_then(|v| {
        let (scheme, value) = v.trim().split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| value.trim())
    });
    [bearer, header(headers, ADMIN_TOKEN_HEADER).map(str::trim)]
        .into_iter()
        .flatten()
        .any(|sent| same_secret(sent.as_bytes(), token.as_bytes()))
}

/// Compares without stopping at the first differing byte.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0_u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The media type is `application/json` (parameters such as `charset` allowed).
fn is_json(headers: &HeaderMap) -> bool {
    header(headers, "content-type")
        .and_then(|v| v.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"))
}

// ---------------------------------------------------------------------------------------------
// API 3.0
// ---------------------------------------------------------------------------------------------

fn envelope(request_id: &str, result: Result<Value, ApiFailure>) -> Response {
    let body = match result {
        Ok(Value::Object(mut map)) => {
            map.insert("RequestId".into(), Value::String(request_id.into()));
            json!({ "Response": Value::Object(map) })
        }
        Ok(_) => json!({ "Response": { "RequestId": request_id } }),
        Err(e) => json!({
            "Response": {
                "Error": { "Code": e.code, "Message": e.message },
                "RequestId": request_id,
            }
        }),
    };
    (StatusCode::OK, axum::Json(body)).into_response()
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// An authenticated, routable call.
struct Call {
    action: String,
    service: Service,
}

/// The API's request authentication alone, for the fuzz suite (`crates/fuzz`): the action of
/// an authenticated request, or the error the API answers with.
#[doc(hidden)]
pub fn authenticate_request(
    settings: &Settings,
    now_s: i64,
    method: &Method,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<String, ApiFailure> {
    authenticate(settings, now_s, method, headers, body).map(|call| call.action)
}

/// `X-TC-Timestamp`, required within [`SIGNATURE_MAX_SKEW_SECS`] of the emulator's clock.
pub(crate) fn fresh_timestamp(headers: &HeaderMap, now_s: i64) -> Result<i64, ApiFailure> {
    let ts_text =
        header(headers, "x-tc-timestamp").ok_or_else(|| ApiFailure::missing("X-TC-Timestamp"))?;
    let ts: i64 = ts_text.trim().parse().map_err(|_| {
        ApiFailure::invalid(format!(
            "X-TC-Timestamp `{ts_text}` is not a Unix timestamp"
        ))
    })?;
    if now_s.abs_diff(ts) > SIGNATURE_MAX_SKEW_SECS.unsigned_abs() {
        return Err(ApiFailure::new(
            codes::AUTH_SIGNATURE_EXPIRE,
            format!(
                "Signature expired. Timestamp: {ts}, server time: {now_s}, allowed skew: {SIGNATURE_MAX_SKEW_SECS}s."
            ),
        ));
    }
    Ok(ts)
}

/// TC3-HMAC-SHA256 verification (clb-api.md §1.4, §1.8, §9) and routing checks.
fn authenticate(
    settings: &Settings,
    now_s: i64,
    method: &Method,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Call, ApiFailure> {
    if method != Method::POST {
        return Err(ApiFailure::invalid(
            "the emulator accepts POST requests with a JSON body only",
        ));
    }
    let action = header(headers, "x-tc-action")
        .filter(|a| !a.is_empty())
        .ok_or_else(|| ApiFailure::missing("X-TC-Action"))?
        .to_string();
    let auth = header(headers, "authorization").ok_or_else(|| {
        ApiFailure::new(
            codes::AUTH_INVALID_AUTHORIZATION,
            "The Authorization header is missing.",
        )
    })?;
    let parsed = sign::parse_authorization(auth).ok_or_else(|| {
        ApiFailure::new(
            codes::AUTH_INVALID_AUTHORIZATION,
            "The Authorization header is not a valid TC3-HMAC-SHA256 authorization.",
        )
    })?;
    if parsed.terminator != sign::SCOPE_TERMINATOR {
        return Err(ApiFailure::new(
            codes::AUTH_INVALID_AUTHORIZATION,
            format!(
                "The credential scope must end with {}.",
                sign::SCOPE_TERMINATOR
            ),
        ));
    }
    let ts = fresh_timestamp(headers, now_s)?;
    let credential = settings.credential(&parsed.secret_id).ok_or_else(|| {
        ApiFailure::new(
            codes::AUTH_SECRET_ID_NOT_FOUND,
            format!("The SecretId `{}` is not found.", parsed.secret_id),
        )
    })?;
    // A temporary (STS) key is valid only with its session token, and only until it expires.
    if let Some(token) = &credential.token {
        if header(headers, "x-tc-token") != Some(token.as_str()) {
            return Err(ApiFailure::new(
                codes::AUTH_TOKEN_FAILURE,
                "The provided token is invalid: the X-TC-Token header is missing or does not belong to this SecretId.",
            ));
        }
        if let Some(expires_at) = credential.expires_at
            && now_s >= expires_at
        {
            return Err(ApiFailure::new(
                codes::AUTH_TOKEN_FAILURE,
                format!(
                    "The provided token has expired. Expired at: {expires_at}, server time: {now_s}."
                ),
            ));
        }
    }
    let secret_key = credential.secret_key.as_str();
    let service = Service::from_scope(&parsed.service).ok_or_else(|| {
        ApiFailure::new(
            codes::AUTH_SIGNATURE_FAILURE,
            format!(
                "The credential scope service `{}` is not served here (clb, ssl, vpc or tag).",
                parsed.service
            ),
        )
    })?;
    if parsed.date != sign::utc_date(ts) {
        return Err(ApiFailure::new(
            codes::AUTH_SIGNATURE_FAILURE,
            format!(
                "The credential scope date {} is not the UTC date of X-TC-Timestamp ({}).",
                parsed.date,
                sign::utc_date(ts)
            ),
        ));
    }
    let mut signed: Vec<(String, String)> = Vec::new();
    for name in &parsed.signed_headers {
        let value = header(headers, name).ok_or_else(|| {
            ApiFailure::new(
                codes::AUTH_INVALID_AUTHORIZATION,
                format!("The signed header `{name}` is not in the request."),
            )
        })?;
        signed.push((name.to_ascii_lowercase(), value.to_string()));
    }
    for required in ["content-type", "host"] {
        if !signed.iter().any(|(n, _)| n == required) {
            return Err(ApiFailure::new(
                codes::AUTH_INVALID_AUTHORIZATION,
                format!("SignedHeaders must include `{required}`."),
            ));
        }
    }
    let payload: &[u8] = if header(headers, "x-tc-content-sha256") == Some(UNSIGNED_PAYLOAD) {
        UNSIGNED_PAYLOAD.as_bytes()
    } else {
        body
    };
    // The doc lower-cases signed header values; SDKs send lower-case values anyway. Accept a
    // signature over the values as sent or lower-cased (clb-api.md §10 q9).
    let variants = [
        signed.clone(),
        signed
            .iter()
            .map(|(n, v)| (n.clone(), v.to_ascii_lowercase()))
            .collect(),
    ];
    let ok = variants.iter().any(|hs| {
        let pairs: Vec<(&str, &str)> = hs.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        let sig = sign::sign(
            &sign::SigningInput {
                method: "POST",
                query: "",
                headers: &pairs,
                payload,
                service: &parsed.service,
                timestamp: ts,
            },
            secret_key,
        );
        sig.signature == parsed.signature.to_ascii_lowercase()
    });
    if !ok {
        return Err(ApiFailure::new(
            codes::AUTH_SIGNATURE_FAILURE,
            "The provided credentials could not be validated. Please check your signature is correct.",
        ));
    }
    let version =
        header(headers, "x-tc-version").ok_or_else(|| ApiFailure::missing("X-TC-Version"))?;
    if version != service.version() {
        return Err(ApiFailure::new(
            codes::NO_SUCH_VERSION,
            format!(
                "The API version `{version}` does not exist for this service (expected {}).",
                service.version()
            ),
        ));
    }
    if !actions::is_known(service, &action) {
        return Err(ApiFailure::new(
            codes::INVALID_ACTION,
            format!("The action `{action}` does not exist."),
        ));
    }
    if service == Service::Clb {
        let region =
            header(headers, "x-tc-region").ok_or_else(|| ApiFailure::missing("X-TC-Region"))?;
        if region != settings.region {
            return Err(ApiFailure::new(
                codes::REGION_NOT_FOUND,
                format!(
                    "The region `{region}` is not served by this emulator (it serves {}).",
                    settings.region
                ),
            ));
        }
    }
    Ok(Call { action, service })
}

async fn api(
    AxState(app): AxState<Arc<App>>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if sts::is_skip_sign(&headers) {
        return unsigned_api(&app, &method, &headers, &body);
    }
    let (request_id, call, latency) = {
        let mut core = app.lock();
        core.settle();
        let request_id = core.request_id();
        let now_s = core.now_ms().div_euclid(1000);
        match authenticate(&core.settings, now_s, &method, &headers, &body) {
            Ok(call) => {
                core.count_call(&call.action);
                let latency = core.settings.faults.latency(&call.action);
                (request_id, call, latency)
            }
            Err(e) => {
                let action = header(&headers, "x-tc-action").unwrap_or("-").to_string();
                core.count_error(&action, &e.code);
                return envelope(&request_id, Err(e));
            }
        }
    };
    if latency > 0 {
        tokio::time::sleep(Duration::from_millis(latency)).await;
    }
    let mut core = app.lock();
    core.settle();
    let result = core
        .check_rate(&call.action)
        .and_then(|()| core.check_internal_error(&call.action))
        .and_then(|()| {
            actions::dispatch(&mut core, call.service, &call.action, &request_id, &body)
        });
    match result {
        Ok(outcome) => {
            if outcome.changed {
                app.publish(&core);
            }
            envelope(&request_id, Ok(outcome.body))
        }
        Err(e) => {
            core.count_error(&call.action, &e.code);
            envelope(&request_id, Err(e))
        }
    }
}

/// An `Authorization: SKIP` request: only STS `AssumeRoleWithWebIdentity` is served unsigned.
fn unsigned_api(app: &App, method: &Method, headers: &HeaderMap, body: &[u8]) -> Response {
    let mut core = app.lock();
    core.settle();
    let request_id = core.request_id();
    let now_s = core.now_ms().div_euclid(1000);
    let action = header(headers, "x-tc-action").unwrap_or("-").to_string();
    let result = if method == Method::POST {
        sts::check_unsigned(headers, now_s)
    } else {
        Err(ApiFailure::invalid(
            "the emulator accepts POST requests with a JSON body only",
        ))
    }
    .and_then(|()| {
        core.count_call(sts::STS_ACTION);
        core.check_rate(sts::STS_ACTION)?;
        sts::assume_role_with_web_identity(&mut core, now_s, body)
    });
    if let Err(e) = &result {
        core.count_error(&action, &e.code);
    }
    envelope(&request_id, result)
}

/// `GET /latest/meta-data/cam/security-credentials/`: the instance role's name.
async fn metadata_roles(AxState(app): AxState<Arc<App>>) -> Response {
    metadata_answer(&app, None)
}

/// `GET /latest/meta-data/cam/security-credentials/<role>`: its temporary credentials.
async fn metadata_role(
    AxState(app): AxState<Arc<App>>,
    axum::extract::Path(role): axum::extract::Path<String>,
) -> Response {
    metadata_answer(&app, Some(&role))
}

fn metadata_answer(app: &App, role: Option<&str>) -> Response {
    let mut core = app.lock();
    core.settle();
    let now_s = core.now_ms().div_euclid(1000);
    match sts::metadata(&mut core, now_s, role) {
        Some(text) => (StatusCode::OK, text).into_response(),
        None => (StatusCode::NOT_FOUND, "Not Found").into_response(),
    }
}

// ---------------------------------------------------------------------------------------------
// Admin endpoint
// ---------------------------------------------------------------------------------------------

fn bad_request(message: impl Into<String>) -> Response {
    (
        StatusCode::BAD_REQUEST,
        axum::Json(json!({ "error": message.into() })),
    )
        .into_response()
}

/// RFC 7386 JSON merge patch.
fn merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (t, p) => *t = p.clone(),
    }
}

/// What admin answers show instead of a SecretKey or a private key.
pub const REDACTED: &str = "<redacted>";

/// Settings as the admin endpoint shows them: every SecretKey and session token redacted
/// unless `show_secrets`.
fn settings_view(settings: &Settings, show_secrets: bool) -> Value {
    let mut v = to_value(settings);
    if show_secrets {
        return v;
    }
    if let Some(creds) = v.get_mut("credentials").and_then(Value::as_array_mut) {
        for c in creds {
            for field in ["secret_key", "token"] {
                if let Some(k) = c.get_mut(field) {
                    *k = json!(REDACTED);
                }
            }
        }
    }
    if let Some(roles) = v.pointer_mut("/sts/roles").and_then(Value::as_array_mut) {
        for r in roles {
            r["web_identity_token"] = json!(REDACTED);
        }
    }
    v
}

/// State as the admin endpoint shows it: private keys of uploaded certificates redacted unless
/// `show_secrets`.
fn state_view(state: &State, show_secrets: bool) -> Value {
    let mut v = to_value(state);
    if show_secrets {
        return v;
    }
    if let Some(certs) = v.get_mut("certs").and_then(Value::as_object_mut) {
        for c in certs.values_mut() {
            if let Some(k) = c.get_mut("key_pem").filter(|k| !k.is_null()) {
                *k = json!(REDACTED);
            }
        }
    }
    v
}

async fn get_settings(AxState(app): AxState<Arc<App>>) -> Response {
    axum::Json(settings_view(&app.lock().settings, app.show_secrets)).into_response()
}

/// Merge-patch the settings. `listen`, `state_file`, `seed`, `port_offset`, `server`,
/// `admin_token` and `admin_show_secrets` only take effect at start.
async fn patch_settings(AxState(app): AxState<Arc<App>>, body: Bytes) -> Response {
    let patch: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return bad_request(format!("body is not JSON: {e}")),
    };
    let mut core = app.lock();
    core.settle();
    let mut current = to_value(&core.settings);
    let keys = core.settings.credentials.clone();
    let roles = core.settings.sts.roles.clone();
    merge(&mut current, &patch);
    // A web identity token sent back as shown (redacted) keeps its current value.
    if let Some(sent) = current
        .pointer_mut("/sts/roles")
        .and_then(Value::as_array_mut)
    {
        for r in sent {
            if r["web_identity_token"] == REDACTED
                && let Some(known) = roles.iter().find(|k| r["role_arn"] == k.role_arn.as_str())
            {
                r["web_identity_token"] = json!(known.web_identity_token);
            }
        }
    }
    // A SecretKey or token sent back as shown (redacted) keeps its current value.
    if let Some(creds) = current.get_mut("credentials").and_then(Value::as_array_mut) {
        for c in creds {
            let Some(known) = keys.iter().find(|k| c["secret_id"] == k.secret_id.as_str()) else {
                continue;
            };
            if c["secret_key"] == REDACTED {
                c["secret_key"] = json!(known.secret_key);
            }
            if c["token"] == REDACTED {
                c["token"] = json!(known.token);
            }
        }
    }
    let mut next: Settings = match serde_json::from_value(current) {
        Ok(s) => s,
        Err(e) => return bad_request(format!("invalid settings: {e}")),
    };
    next.listen = core.settings.listen;
    next.state_file = core.settings.state_file.clone();
    next.seed = core.settings.seed;
    next.port_offset = core.settings.port_offset;
    next.server = core.settings.server;
    next.admin_token = core.settings.admin_token.clone();
    next.admin_show_secrets = core.settings.admin_show_secrets;
    if let Err(e) = next.validate() {
        return bad_request(e.to_string());
    }
    core.settings = next;
    core.settle();
    axum::Json(settings_view(&core.settings, app.show_secrets)).into_response()
}

async fn get_faults(AxState(app): AxState<Arc<App>>) -> Response {
    axum::Json(to_value(&app.lock().settings.faults)).into_response()
}

/// Replace the fault settings as a whole.
async fn put_faults(AxState(app): AxState<Arc<App>>, body: Bytes) -> Response {
    let faults: Faults = match serde_json::from_slice(&body) {
        Ok(f) => f,
        Err(e) => return bad_request(format!("invalid faults: {e}")),
    };
    let mut core = app.lock();
    let mut next = core.settings.clone();
    next.faults = faults;
    if let Err(e) = next.validate() {
        return bad_request(e.to_string());
    }
    core.settle();
    core.settings = next;
    core.settle();
    axum::Json(to_value(&core.settings.faults)).into_response()
}

async fn pause(AxState(app): AxState<Arc<App>>) -> Response {
    let mut core = app.lock();
    core.settle();
    core.settings.faults.pause_tasks = true;
    axum::Json(json!({ "pause_tasks": true })).into_response()
}

async fn resume(AxState(app): AxState<Arc<App>>) -> Response {
    let mut core = app.lock();
    core.settings.faults.pause_tasks = false;
    core.settle();
    axum::Json(json!({ "pause_tasks": false })).into_response()
}

async fn get_counters(AxState(app): AxState<Arc<App>>) -> Response {
    axum::Json(to_value(&app.lock().counters)).into_response()
}

async fn reset_counters(AxState(app): AxState<Arc<App>>) -> Response {
    let mut core = app.lock();
    core.counters = Default::default();
    axum::Json(json!({ "reset": "counters" })).into_response()
}

async fn get_state(AxState(app): AxState<Arc<App>>) -> Response {
    let mut core = app.lock();
    core.settle();
    let tasks: Vec<Value> = core.task_list().into_iter().map(to_value).collect();
    axum::Json(json!({
        "state": state_view(&core.state, app.show_secrets),
        "tasks": tasks,
    }))
    .into_response()
}

async fn get_tasks(AxState(app): AxState<Arc<App>>) -> Response {
    let mut core = app.lock();
    core.settle();
    let tasks: Vec<Value> = core.task_list().into_iter().map(to_value).collect();
    axum::Json(Value::Array(tasks)).into_response()
}

/// Forget every resource, task and counter (settings stay).
async fn reset(AxState(app): AxState<Arc<App>>) -> Response {
    let mut core = app.lock();
    core.reset();
    app.publish(&core);
    axum::Json(json!({ "reset": "all" })).into_response()
}

/// Where the data plane serves: the port offset, every bound listener, and whether the latest
/// configuration (`generation`, bumped by every change) has been applied (`applied_generation`,
/// with the failures of that apply in `errors`).
async fn get_dataplane(AxState(app): AxState<Arc<App>>) -> Response {
    let generation = *app.plane.borrow();
    let (applied, errors) = {
        let a = app.applied.lock().unwrap_or_else(PoisonError::into_inner);
        (a.generation, a.errors.clone())
    };
    let Some(report) = app.sink.report() else {
        return axum::Json(json!({
            "enabled": false,
            "generation": generation,
            "applied_generation": applied,
            "errors": errors,
            "listeners": [],
        }))
        .into_response();
    };
    let listeners: Vec<Value> = report
        .listeners
        .iter()
        .map(|l| {
            json!({
                "lb_id": l.lb_id,
                "listener_id": l.listener_id,
                "port": l.port,
                "vip": l.addr.ip().to_string(),
                "addr": l.addr.to_string(),
            })
        })
        .collect();
    axum::Json(json!({
        "enabled": true,
        "port_offset": report.port_offset,
        "generation": generation,
        "applied_generation": applied,
        "errors": errors,
        "listeners": listeners,
    }))
    .into_response()
}
