//! The operations HTTP server (axum): `/metrics` (Prometheus text format), `/healthz` (liveness:
//! 200 while the process serves) and `/readyz` (readiness: caches synced and, with leader
//! election, leadership known). [`HttpState`] is the cheap-clone handle the controller flips.
//! Served with [`clb_http_limits`]: slow clients are cut off after [`HEADER_READ_TIMEOUT`], at
//! most [`MAX_CONNECTIONS`] are open at once (more wait in the listen backlog), bodies are capped
//! (413) and shutdown drains for at most [`SHUTDOWN_GRACE`].

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use clb_http_limits::Limits;
use tokio::net::TcpListener;

use crate::metrics::Metrics;

/// Path of the Prometheus scrape endpoint.
pub const METRICS_PATH: &str = "/metrics";
/// Path of the liveness probe.
pub const HEALTHZ_PATH: &str = "/healthz";
/// Path of the readiness probe.
pub const READYZ_PATH: &str = "/readyz";
/// Default listen address of the operations server (all interfaces, as probes need).
pub const DEFAULT_ADDR: &str = "0.0.0.0:8080";

/// How long a client may take to send a request head (and to start the next one on a kept-alive
/// connection) before it is disconnected.
pub const HEADER_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// Connections open at once; more wait in the listen backlog until one ends.
pub const MAX_CONNECTIONS: usize = 128;
/// Largest request body: every route is a GET, so anything bigger is refused with 413.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// From the request head to the response head.
pub const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
/// How long in-flight requests may finish after shutdown is asked for.
pub const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

/// The limits the operations server runs with.
pub fn limits() -> Limits {
    Limits {
        header_read_timeout: HEADER_READ_TIMEOUT,
        max_connections: MAX_CONNECTIONS,
        max_body_bytes: MAX_BODY_BYTES,
        request_timeout: REQUEST_TIMEOUT,
        shutdown_grace: SHUTDOWN_GRACE,
    }
}

/// Body of a passing probe.
const OK_BODY: &str = "ok\n";
/// Body of `/readyz` before the informer caches have synced.
const NOT_SYNCED_BODY: &str = "not ready: caches not synced\n";
/// Body of `/readyz` while leader election has not yet decided leader or follower.
const LEADERSHIP_UNKNOWN_BODY: &str = "not ready: leadership not known\n";

/// The operations server failed to bind or to serve.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("binding the operations server to {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("reading the bound address of the operations server")]
    LocalAddr(#[source] std::io::Error),
}

/// Shared state of the operations server: the metrics and the readiness flags. Cloning is cheap
/// (reference counts only); every clone sees the same flags.
#[derive(Debug, Clone)]
pub struct HttpState {
    metrics: Arc<Metrics>,
    flags: Arc<Flags>,
}

#[derive(Debug)]
struct Flags {
    leader_election: bool,
    synced: AtomicBool,
    leadership_known: AtomicBool,
}

/// Why the process is not ready (or that it is).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readiness {
    Ready,
    CachesNotSynced,
    LeadershipUnknown,
}

impl HttpState {
    /// Not ready until [`HttpState::set_synced`] (and, when `leader_election` is on,
    /// [`HttpState::set_leadership_known`]) are called with `true`.
    pub fn new(metrics: Arc<Metrics>, leader_election: bool) -> Self {
        Self {
            metrics,
            flags: Arc::new(Flags {
                leader_election,
                synced: AtomicBool::new(false),
                leadership_known: AtomicBool::new(false),
            }),
        }
    }

    /// The metrics served on `/metrics`.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The informer caches have (or no longer have) completed their initial list.
    pub fn set_synced(&self, synced: bool) {
        self.flags.synced.store(synced, Ordering::Release);
    }

    /// Leader election has decided whether this replica leads or follows (either counts).
    pub fn set_leadership_known(&self, known: bool) {
        self.flags.leadership_known.store(known, Ordering::Release);
    }

    /// The readiness verdict and its reason.
    pub fn readiness(&self) -> Readiness {
        if !self.flags.synced.load(Ordering::Acquire) {
            Readiness::CachesNotSynced
        } else if self.flags.leader_election && !self.flags.leadership_known.load(Ordering::Acquire)
        {
            Readiness::LeadershipUnknown
        } else {
            Readiness::Ready
        }
    }

    /// Caches synced and (leader election off or leadership known).
    pub fn ready(&self) -> bool {
        self.readiness() == Readiness::Ready
    }
}

/// The routes, for embedding in another server or testing without a socket.
pub fn router(state: HttpState) -> Router {
    Router::new()
        .route(METRICS_PATH, get(metrics_handler))
        .route(HEALTHZ_PATH, get(healthz_handler))
        .route(READYZ_PATH, get(readyz_handler))
        .with_state(state)
}

async fn metrics_handler(State(state): State<HttpState>) -> Response {
    let body = state.metrics.encode();
    ([(header::CONTENT_TYPE, state.metrics.content_type())], body).into_response()
}

async fn healthz_handler() -> &'static str {
    OK_BODY
}

async fn readyz_handler(State(state): State<HttpState>) -> (StatusCode, &'static str) {
    match state.readiness() {
        Readiness::Ready => (StatusCode::OK, OK_BODY),
        Readiness::CachesNotSynced => (StatusCode::SERVICE_UNAVAILABLE, NOT_SYNCED_BODY),
        Readiness::LeadershipUnknown => (StatusCode::SERVICE_UNAVAILABLE, LEADERSHIP_UNKNOWN_BODY),
    }
}

/// Binds `addr` (port 0 picks a free port) and returns the listener with its real address.
pub async fn bind(addr: SocketAddr) -> Result<(TcpListener, SocketAddr), HttpError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| HttpError::Bind { addr, source })?;
    let local = listener.local_addr().map_err(HttpError::LocalAddr)?;
    Ok((listener, local))
}

/// Binds `addr` and serves until `shutdown` completes, then finishes in-flight requests.
pub async fn serve(
    addr: SocketAddr,
    state: HttpState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), HttpError> {
    let (listener, _) = bind(addr).await?;
    serve_listener(listener, state, shutdown).await
}

/// Serves on an already bound `listener` (see [`bind`]) with [`limits`] until `shutdown`
/// completes.
pub async fn serve_listener(
    listener: TcpListener,
    state: HttpState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), HttpError> {
    serve_listener_with_limits(listener, state, limits(), shutdown).await
}

/// [`serve_listener`] with other limits (tests use short timeouts).
pub async fn serve_listener_with_limits(
    listener: TcpListener,
    state: HttpState,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), HttpError> {
    let addr = listener.local_addr().map_err(HttpError::LocalAddr)?;
    tracing::info!(%addr, "operations server listening");
    clb_http_limits::serve(listener, router(state), limits, shutdown).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, SocketAddrV4};
    use tokio::sync::oneshot;
    use tokio::task::JoinHandle;

    const LOOPBACK_ANY_PORT: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0));

    struct Running {
        base: String,
        state: HttpState,
        stop: oneshot::Sender<()>,
        task: JoinHandle<Result<(), HttpError>>,
    }

    async fn start(leader_election: bool) -> Running {
        start_with(leader_election, limits()).await
    }

    async fn start_with(leader_election: bool, limits: Limits) -> Running {
        let metrics = match Metrics::with_version("9.9.9") {
            Ok(m) => Arc::new(m),
            Err(err) => panic!("metrics: {err}"),
        };
        let state = HttpState::new(metrics, leader_election);
        let (listener, addr) = match bind(LOOPBACK_ANY_PORT).await {
            Ok(bound) => bound,
            Err(err) => panic!("bind: {err}"),
        };
        assert_ne!(addr.port(), 0, "bind reports the real port");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve_listener_with_limits(
            listener,
            state.clone(),
            limits,
            async move {
                let _ = stopped.await;
            },
        ));
        Running {
            base: format!("http://{addr}"),
            state,
            stop,
            task,
        }
    }

    async fn get_path(base: &str, path: &str) -> reqwest::Response {
        match reqwest::get(format!("{base}{path}")).await {
            Ok(r) => r,
            Err(err) => panic!("GET {path}: {err}"),
        }
    }

    async fn status_of(base: &str, path: &str) -> u16 {
        get_path(base, path).await.status().as_u16()
    }

    #[tokio::test]
    async fn healthz_answers_200_even_before_ready() {
        let server = start(true).await;
        assert_eq!(status_of(&server.base, HEALTHZ_PATH).await, 200);
        assert!(!server.state.ready());
    }

    #[tokio::test]
    async fn metrics_are_served_in_text_format_with_its_content_type() {
        let server = start(false).await;
        server.state.metrics().set_queue_depth(4);
        let response = get_path(&server.base, METRICS_PATH).await;
        assert_eq!(response.status().as_u16(), 200);
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        assert_eq!(content_type.as_deref(), Some("text/plain; version=0.0.4"));
        let body = response.text().await.unwrap_or_default();
        assert!(body.contains("\nclb_ingress_queue_depth 4\n"), "{body}");
        assert!(
            body.contains("clb_ingress_build_info{version=\"9.9.9\"} 1"),
            "{body}"
        );
    }

    #[tokio::test]
    async fn readyz_waits_for_cache_sync_without_leader_election() {
        let server = start(false).await;
        let response = get_path(&server.base, READYZ_PATH).await;
        assert_eq!(response.status().as_u16(), 503);
        assert_eq!(response.text().await.unwrap_or_default(), NOT_SYNCED_BODY);
        server.state.set_synced(true);
        assert_eq!(status_of(&server.base, READYZ_PATH).await, 200);
    }

    #[tokio::test]
    async fn readyz_with_leader_election_needs_sync_and_known_leadership() {
        let server = start(true).await;
        server.state.set_leadership_known(true);
        assert_eq!(status_of(&server.base, READYZ_PATH).await, 503);
        server.state.set_leadership_known(false);
        server.state.set_synced(true);
        let response = get_path(&server.base, READYZ_PATH).await;
        assert_eq!(response.status().as_u16(), 503);
        assert_eq!(
            response.text().await.unwrap_or_default(),
            LEADERSHIP_UNKNOWN_BODY
        );
        server.state.set_leadership_known(true);
        assert_eq!(status_of(&server.base, READYZ_PATH).await, 200);
    }

    #[tokio::test]
    async fn readyz_turns_unready_again_when_caches_are_lost() {
        let server = start(false).await;
        server.state.set_synced(true);
        assert_eq!(status_of(&server.base, READYZ_PATH).await, 200);
        server.state.set_synced(false);
        assert_eq!(status_of(&server.base, READYZ_PATH).await, 503);
    }

    #[tokio::test]
    async fn unknown_paths_are_404() {
        let server = start(false).await;
        assert_eq!(status_of(&server.base, "/nope").await, 404);
    }

    #[tokio::test]
    async fn server_stops_cleanly_when_shutdown_completes() {
        let server = start(false).await;
        assert_eq!(status_of(&server.base, HEALTHZ_PATH).await, 200);
        let _ = server.stop.send(());
        let finished = tokio::time::timeout(std::time::Duration::from_secs(5), server.task).await;
        assert!(
            matches!(finished, Ok(Ok(Ok(())))),
            "serve returned {finished:?}"
        );
        assert!(
            reqwest::get(format!("{}{HEALTHZ_PATH}", server.base))
                .await
                .is_err()
        );
    }

    #[tokio::test]
    async fn serve_reports_a_bind_error_for_a_taken_port() {
        let (_held, addr) = match bind(LOOPBACK_ANY_PORT).await {
            Ok(bound) => bound,
            Err(err) => panic!("bind: {err}"),
        };
        let state = match Metrics::new() {
            Ok(m) => HttpState::new(Arc::new(m), false),
            Err(err) => panic!("metrics: {err}"),
        };
        let result = serve(addr, state, std::future::pending()).await;
        assert!(matches!(result, Err(HttpError::Bind { .. })), "{result:?}");
    }

    /// Writes `bytes` on a new connection to `base` and returns the stream.
    async fn raw(base: &str, bytes: &[u8]) -> tokio::net::TcpStream {
        use tokio::io::AsyncWriteExt;
        let addr = base.trim_start_matches("http://");
        let mut stream = match tokio::net::TcpStream::connect(addr).await {
            Ok(s) => s,
            Err(err) => panic!("connect {addr}: {err}"),
        };
        if let Err(err) = stream.write_all(bytes).await {
            panic!("write: {err}");
        }
        stream
    }

    /// Everything the server writes on `stream` until it closes it, or `None` if it is still
    /// open after a bound no passing case comes near.
    async fn until_closed(stream: &mut tokio::net::TcpStream) -> Option<String> {
        use tokio::io::AsyncReadExt;
        let mut out = Vec::new();
        let read = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            stream.read_to_end(&mut out),
        )
        .await;
        read.ok()
            .map(|_| String::from_utf8_lossy(&out).into_owned())
    }

    #[tokio::test]
    async fn a_client_stalled_mid_header_is_disconnected_after_the_header_timeout() {
        let server = start_with(
            false,
            Limits {
                header_read_timeout: std::time::Duration::from_millis(300),
                ..limits()
            },
        )
        .await;
        let started = tokio::time::Instant::now();
        let mut slow = raw(&server.base, b"GET /healthz HTTP/1.1\r\nHost: x\r\n").await;
        let closed = until_closed(&mut slow).await;
        assert!(closed.is_some(), "still open after {:?}", started.elapsed());
        assert_eq!(status_of(&server.base, HEALTHZ_PATH).await, 200);
    }

    #[tokio::test]
    async fn a_body_declared_larger_than_the_cap_is_refused_with_413() {
        let server = start(false).await;
        let head = format!(
            "GET {HEALTHZ_PATH} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
            MAX_BODY_BYTES + 1
        );
        let mut conn = raw(&server.base, head.as_bytes()).await;
        let answer = until_closed(&mut conn).await.unwrap_or_default();
        assert!(answer.starts_with("HTTP/1.1 413 "), "{answer}");
    }

    #[tokio::test]
    async fn slow_clients_beyond_the_connection_cap_do_not_stop_a_probe_from_getting_healthz() {
        let server = start_with(
            false,
            Limits {
                header_read_timeout: std::time::Duration::from_millis(300),
                max_connections: 2,
                ..limits()
            },
        )
        .await;
        let mut slow = Vec::new();
        for _ in 0..8 {
            slow.push(raw(&server.base, b"GET /metrics HTTP/1.1\r\n").await);
        }
        assert_eq!(status_of(&server.base, HEALTHZ_PATH).await, 200);
    }
}
