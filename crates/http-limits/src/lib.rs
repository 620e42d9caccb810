//! Serving an axum [`Router`] with the limits every server of this project needs, so that slow
//! or hostile clients cannot hold it: a header-read timeout (which is also the keep-alive idle
//! timeout), a cap on open connections, a request-body cap answered with 413, a per-request
//! timeout answered with 408, and a bounded drain at shutdown.
//!
//! Connections beyond the cap are not accepted: they wait in the kernel's listen backlog (no file
//! descriptor, no memory in this process) until an open connection ends. As a client that stalls
//! is cut off after the header-read timeout, a well-behaved client waits at most about that long
//! even when every slot is held by slow clients.
#![forbid(unsafe_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// SIGTERM (unix) or Ctrl-C. The SIGTERM handler is installed by this call, not when the
/// future is first polled: a SIGTERM that arrives in between (say, right after a server
/// printed that it serves) is a clean stop, not the default action (killed by the signal).
/// A handler that cannot be installed is logged and leaves Ctrl-C.
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate());
    async move {
        #[cfg(unix)]
        match term {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {},
                    _ = tokio::signal::ctrl_c() => {},
                }
                return;
            }
            Err(e) => tracing::warn!(error = %e, "no SIGTERM handler: stopping on Ctrl-C only"),
        }
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Default time a client has to send a request's headers, and to start the next request on a
/// kept-alive connection.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Default cap on connections open at once.
pub const DEFAULT_MAX_CONNECTIONS: usize = 256;
/// Default largest request body (1 MiB).
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;
/// Default time from the request's headers to the handler's response (body upload included).
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Default time in-flight requests get to finish after shutdown is asked for.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(1);
/// Highest accepted connection cap (beyond it, the file descriptor limit bites first anyway).
pub const MAX_CONNECTIONS_CEILING: usize = 65_536;
/// How long to wait after a failed `accept` (e.g. out of file descriptors) before retrying.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(50);

/// Body of a 413 answer.
const TOO_LARGE_BODY: &str = "request body too large\n";
/// Body of a 408 answer.
const TIMEOUT_BODY: &str = "request timed out\n";

/// The limits of one server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// A client that has not sent a complete request head this long after the connection opened
    /// (or after the previous response, on a kept-alive connection) is disconnected.
    pub header_read_timeout: Duration,
    /// Connections open at once; further ones wait in the listen backlog (clamped to
    /// 1..=[`MAX_CONNECTIONS_CEILING`]).
    pub max_connections: usize,
    /// Largest request body: a larger `Content-Length` is answered 413 before the body is read,
    /// and a handler reading a longer chunked body gets 413 too.
    pub max_body_bytes: usize,
    /// From the request head to the response head, body upload included; answered 408 past it.
    pub request_timeout: Duration,
    /// After shutdown is asked for, in-flight requests get this long before their connections
    /// are dropped.
    pub shutdown_grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
        }
    }
}

impl Limits {
    /// The connection cap as enforced.
    pub fn connection_cap(&self) -> usize {
        self.max_connections.clamp(1, MAX_CONNECTIONS_CEILING)
    }

    /// `router` with the body cap and the request timeout applied to every route and the
    /// fallback.
    pub fn apply(&self, router: Router) -> Router {
        router
            .layer(DefaultBodyLimit::max(self.max_body_bytes))
            .layer(middleware::from_fn_with_state(*self, guard))
    }
}

/// Refuses a declared body over the cap (413) and answers 408 when the handler takes too long.
async fn guard(State(limits): State<Limits>, request: Request, next: Next) -> Response {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let cap = u64::try_from(limits.max_body_bytes).unwrap_or(u64::MAX);
    if declared.is_some_and(|n| n > cap) {
        return too_large();
    }
    match tokio::time::timeout(limits.request_timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => (
            StatusCode::REQUEST_TIMEOUT,
            [(header::CONNECTION, "close")],
            TIMEOUT_BODY,
        )
            .into_response(),
    }
}

fn too_large() -> Response {
    (
        StatusCode::PAYLOAD_TOO_LARGE,
        [(header::CONNECTION, "close")],
        Body::from(TOO_LARGE_BODY),
    )
        .into_response()
}

/// Serves `router` (with [`Limits::apply`]) on `listener` until `shutdown` completes; then stops
/// accepting, lets in-flight requests finish for up to `shutdown_grace` and drops whatever is
/// left. Accept errors (such as running out of file descriptors) are logged and retried.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    serve_with(listener, router, limits, None, shutdown).await;
}

/// [`serve`] over TLS: each connection first completes a handshake with `tls` (within the
/// header-read timeout; a client that stalls or fails it is dropped), then is served as
/// [`serve`] serves plain connections.
pub async fn serve_tls(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    tls: tokio_rustls::TlsAcceptor,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    serve_with(listener, router, limits, Some(tls), shutdown).await;
}

async fn serve_with(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let router = limits.apply(router);
    let cap = limits.connection_cap();
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut conns: JoinSet<()> = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        while conns.try_join_next().is_some() {}
        if conns.len() >= cap {
            // At the cap: accept nothing until a connection ends.
            tokio::select! {
                () = &mut shutdown => break,
                _ = conns.join_next() => continue,
            }
        }
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let (router, stop) = (router.clone(), stop_rx.clone());
                    let timeout = limits.header_read_timeout;
                    match tls.clone() {
                        None => {
                            conns.spawn(serve_connection(stream, peer, router, timeout, stop));
                        }
                        Some(tls) => {
                            conns.spawn(async move {
                                match tokio::time::timeout(timeout, tls.accept(stream)).await {
                                    Ok(Ok(stream)) => {
                                        serve_connection(stream, peer, router, timeout, stop).await;
                                    }
                                    Ok(Err(err)) => {
                                        tracing::debug!(%peer, error = %err, "TLS handshake failed");
                                    }
                                    Err(_) => {
                                        tracing::debug!(%peer, "TLS handshake timed out");
                                    }
                                }
                            });
                        }
                    }
                }
                Err(err) => {
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                }
            },
        }
    }
    drop(listener);
    stop_tx.send_replace(true);
    let drained = tokio::time::timeout(limits.shutdown_grace, async {
        while conns.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::debug!(
            open = conns.len(),
            "connections still open after the shutdown grace are dropped"
        );
        conns.shutdown().await;
    }
}

/// Resolves once shutdown is asked for (or the server is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

async fn serve_connection<S>(
    stream: S,
    peer: SocketAddr,
    router: Router,
    header_read_timeout: Duration,
    mut stop: watch::Receiver<bool>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout);
    let conn = builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(router));
    tokio::pin!(conn);
    let result = tokio::select! {
        result = conn.as_mut() => result,
        () = stopped(&mut stop) => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(err) = result {
        tracing::debug!(%peer, error = %err, "connection ended with an error");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Bytes;
    use axum::routing::{get, post};
    use std::net::{Ipv4Addr, SocketAddrV4};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;
    use tokio::sync::oneshot;
    use tokio::task::JoinHandle;
    use tokio::time::Instant;

    const LOOPBACK_ANY_PORT: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0));
    /// A bound no passing case comes near; only a broken limit reaches it.
    const GENEROUS: Duration = Duration::from_secs(10);
    /// Half a request head.
    const HALF_A_HEAD: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n";

    struct Server {
        addr: SocketAddr,
        stop: oneshot::Sender<()>,
        task: JoinHandle<()>,
    }

    fn routes() -> Router {
        Router::new()
            .route("/healthz", get(|| async { "ok\n" }))
            .route("/echo", post(|body: Bytes| async move { body }))
            .route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                    "late\n"
                }),
            )
    }

    async fn start(limits: Limits) -> Server {
        let listener = match TcpListener::bind(LOOPBACK_ANY_PORT).await {
            Ok(l) => l,
            Err(err) => panic!("bind: {err}"),
        };
        let addr = match listener.local_addr() {
            Ok(a) => a,
            Err(err) => panic!("local_addr: {err}"),
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve(listener, routes(), limits, async move {
            let _ = stopped.await;
        }));
        Server { addr, stop, task }
    }

    fn client() -> reqwest::Client {
        match reqwest::Client::builder()
            .no_proxy()
            .timeout(GENEROUS)
            .build()
        {
            Ok(c) => c,
            Err(err) => panic!("client: {err}"),
        }
    }

    async fn connect(addr: SocketAddr) -> TcpStream {
        match TcpStream::connect(addr).await {
            Ok(s) => s,
            Err(err) => panic!("connect: {err}"),
        }
    }

    /// A connection that sent half a request head and stalls.
    async fn stalled(addr: SocketAddr) -> TcpStream {
        let mut stream = connect(addr).await;
        if let Err(err) = stream.write_all(HALF_A_HEAD).await {
            panic!("write: {err}");
        }
        stream
    }

    /// Reads until the server closes the connection; `None` if it is still open after `bound`.
    async fn closed_within(stream: &mut TcpStream, bound: Duration) -> Option<Duration> {
        let started = Instant::now();
        let mut buf = [0_u8; 1024];
        let read_to_end = async {
            loop {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        };
        tokio::time::timeout(bound, read_to_end)
            .await
            .ok()
            .map(|()| started.elapsed())
    }

    async fn healthz_status(addr: SocketAddr) -> Option<u16> {
        client()
            .get(format!("http://{addr}/healthz"))
            .send()
            .await
            .ok()
            .map(|r| r.status().as_u16())
    }

    fn limits(header_read_timeout: Duration, max_connections: usize) -> Limits {
        Limits {
            header_read_timeout,
            max_connections,
            ..Limits::default()
        }
    }

    #[tokio::test]
    async fn a_client_that_sends_half_a_header_and_stalls_is_disconnected_after_the_header_timeout()
    {
        let timeout = Duration::from_millis(300);
        let server = start(limits(timeout, 8)).await;
        let mut slow = stalled(server.addr).await;
        let closed = closed_within(&mut slow, GENEROUS).await;
        assert!(
            closed.is_some_and(|after| after >= timeout.mul_f32(0.9)),
            "closed after {closed:?}, the header timeout is {timeout:?}"
        );
    }

    #[tokio::test]
    async fn an_idle_kept_alive_connection_is_closed_after_the_header_timeout() {
        let timeout = Duration::from_millis(300);
        let server = start(limits(timeout, 8)).await;
        let mut conn = connect(server.addr).await;
        let request = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
        if let Err(err) = conn.write_all(request).await {
            panic!("write: {err}");
        }
        let mut buf = [0_u8; 256];
        let n = conn.read(&mut buf).await.unwrap_or(0);
        assert!(
            buf[..n].starts_with(b"HTTP/1.1 200"),
            "{:?}",
            String::from_utf8_lossy(&buf[..n])
        );
        let closed = closed_within(&mut conn, GENEROUS).await;
        assert!(closed.is_some(), "an idle connection stays open");
    }

    #[tokio::test]
    async fn connections_beyond_the_cap_wait_until_an_open_one_ends() {
        let server = start(limits(Duration::from_secs(3600), 2)).await;
        let first = stalled(server.addr).await;
        let _second = stalled(server.addr).await;
        let waiting = tokio::spawn(healthz_status(server.addr));
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            !waiting.is_finished(),
            "a third connection was served while two held the cap of 2"
        );
        drop(first);
        let answered = tokio::time::timeout(GENEROUS, waiting).await;
        assert!(
            matches!(answered, Ok(Ok(Some(200)))),
            "once a slot frees, the waiting client is served: {answered:?}"
        );
    }

    #[tokio::test]
    async fn a_well_behaved_client_is_served_while_slow_clients_hold_every_connection() {
        let server = start(limits(Duration::from_millis(300), 4)).await;
        let mut slow = Vec::new();
        for _ in 0..12 {
            slow.push(stalled(server.addr).await);
        }
        let started = Instant::now();
        let status = healthz_status(server.addr).await;
        assert_eq!(status, Some(200), "after {:?}", started.elapsed());
    }

    #[tokio::test]
    async fn a_body_over_the_cap_is_refused_with_413() {
        let server = start(Limits {
            max_body_bytes: 1024,
            ..Limits::default()
        })
        .await;
        let url = format!("http://{}/echo", server.addr);
        let ok = client().post(&url).body(vec![b'a'; 1024]).send().await;
        assert_eq!(ok.ok().map(|r| r.status().as_u16()), Some(200));
        let declared = client().post(&url).body(vec![b'a'; 1025]).send().await;
        assert_eq!(declared.ok().map(|r| r.status().as_u16()), Some(413));
        // A chunked body declares no length: the handler's extractor stops at the cap.
        let mut conn = connect(server.addr).await;
        let chunk = format!("320\r\n{}\r\n", "a".repeat(800));
        let request = format!(
            "POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n{chunk}{chunk}0\r\n\r\n"
        );
        if let Err(err) = conn.write_all(request.as_bytes()).await {
            panic!("write: {err}");
        }
        assert_eq!(
            first_line(&mut conn).await,
            "HTTP/1.1 413 Payload Too Large"
        );
    }

    /// The status line of the answer on `conn`.
    async fn first_line(conn: &mut TcpStream) -> String {
        let mut buf = [0_u8; 512];
        let n = tokio::time::timeout(GENEROUS, conn.read(&mut buf))
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or(0);
        String::from_utf8_lossy(&buf[..n])
            .lines()
            .next()
            .unwrap_or_default()
            .to_string()
    }

    #[tokio::test]
    async fn a_declared_body_over_the_cap_is_refused_before_it_is_sent() {
        let server = start(Limits {
            max_body_bytes: 1024,
            ..Limits::default()
        })
        .await;
        let mut conn = connect(server.addr).await;
        let head =
            b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000000000\r\n\r\n";
        if let Err(err) = conn.write_all(head).await {
            panic!("write: {err}");
        }
        assert_eq!(
            first_line(&mut conn).await,
            "HTTP/1.1 413 Payload Too Large"
        );
    }

    #[tokio::test]
    async fn a_handler_slower_than_the_request_timeout_is_answered_408() {
        let server = start(Limits {
            request_timeout: Duration::from_millis(200),
            ..Limits::default()
        })
        .await;
        let response = client()
            .get(format!("http://{}/slow", server.addr))
            .send()
            .await;
        assert_eq!(response.ok().map(|r| r.status().as_u16()), Some(408));
    }

    #[tokio::test]
    async fn shutdown_stops_accepting_and_does_not_wait_for_stalled_clients() {
        let server = start(Limits {
            header_read_timeout: Duration::from_secs(3600),
            shutdown_grace: Duration::from_millis(200),
            ..Limits::default()
        })
        .await;
        assert_eq!(healthz_status(server.addr).await, Some(200));
        let _slow = stalled(server.addr).await;
        let _ = server.stop.send(());
        let finished = tokio::time::timeout(GENEROUS, server.task).await;
        assert!(matches!(finished, Ok(Ok(()))), "{finished:?}");
        assert_eq!(healthz_status(server.addr).await, None);
    }
}
