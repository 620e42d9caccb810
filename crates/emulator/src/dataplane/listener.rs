//! One listener socket: its live routing state (swapped atomically on every apply), the accept
//! loop, and per-connection HTTP/1.1 serving over plain TCP or TLS with graceful shutdown.

use std::net::SocketAddr;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use rustls::crypto::CryptoProvider;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use super::serve::Handler;
use super::tls::{self, CertTable};
use super::{DataPlaneError, DomainPlane, LbPlane, ListenerPlane, PlaneProtocol};
use clb_ingress_core::matching::clb::{CompiledListener, DomainConf, UrlConf};

/// How long a TLS handshake may take before the connection is dropped.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long to wait after a failed `accept` (e.g. out of file descriptors) before retrying.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(50);

/// What one listener allows its clients.
#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    /// Connections open at once; further ones wait in the listen backlog until one ends.
    pub max_connections: usize,
    /// How long a client may take to send request headers (and to start the next request).
    pub header_read_timeout: Duration,
}

/// Everything a request on one listener needs, rebuilt from the config on every apply.
#[derive(Debug)]
pub struct ListenerState {
    pub lb_id: String,
    pub listener_id: String,
    pub port: u16,
    pub protocol: PlaneProtocol,
    pub matcher: CompiledListener,
    /// The listener's domains with their rules and targets (indexed by the matcher's answer).
    pub domains: Vec<DomainPlane>,
    pub certs: CertTable,
    /// Socket port of each CLB listener port a rewrite of this listener points at.
    pub rewrite_ports: std::collections::BTreeMap<u16, u16>,
}

impl ListenerState {
    /// Build the state of `listener` of `lb`, parsing its certificates.
    pub fn build(
        lb: &LbPlane,
        listener: &ListenerPlane,
        provider: &CryptoProvider,
        settings: &super::DataPlaneSettings,
    ) -> Result<Self, DataPlaneError> {
        let rewrite_ports = listener
            .domains
            .iter()
            .flat_map(|d| &d.rules)
            .filter_map(|r| r.rewrite.as_ref())
            .filter_map(|rw| Some((rw.port, settings.socket_port(rw.port)?)))
            .collect();
        let domain_confs = listener
            .domains
            .iter()
            .map(|d| DomainConf {
                domain: d.domain.clone(),
                default_server: d.default_server,
                rules: d
                    .rules
                    .iter()
                    .map(|r| UrlConf { url: r.url.clone() })
                    .collect(),
            })
            .collect();
        let parse = |cert: &Option<super::CertPem>| -> Result<_, DataPlaneError> {
            cert.as_ref()
                .map(|pem| {
                    tls::certified_key(pem, provider)
                        .map(Arc::new)
                        .map_err(|source| DataPlaneError::Certificate {
                            lb_id: lb.lb_id.clone(),
                            port: listener.port,
                            cert_id: pem.cert_id.clone(),
                            source,
                        })
                })
                .transpose()
        };
        let mut certs = CertTable {
            sni: listener.sni,
            listener: parse(&listener.certificate)?,
            domains: Vec::with_capacity(listener.domains.len()),
            default_domain: listener.domains.iter().position(|d| d.default_server),
        };
        for domain in &listener.domains {
            let cert = if listener.sni {
                parse(&domain.certificate)?
            } else {
                None
            };
            certs.domains.push(cert);
        }
        let matcher = CompiledListener::new(domain_confs);
        for problem in matcher.problems() {
            tracing::warn!(lb_id = %lb.lb_id, port = listener.port, ?problem, "listener domain or URL is not valid CLB syntax");
        }
        Ok(Self {
            lb_id: lb.lb_id.clone(),
            listener_id: listener.listener_id.clone(),
            port: listener.port,
            protocol: listener.protocol,
            matcher,
            domains: listener.domains.clone(),
            certs,
            rewrite_ports,
        })
    }
}

/// The listener's current state; readers take a snapshot per request or handshake, `apply`
/// swaps in a new one. In-flight requests keep the snapshot they started with.
#[derive(Debug, Clone)]
pub struct SharedState(Arc<RwLock<Arc<ListenerState>>>);

impl SharedState {
    pub fn new(state: ListenerState) -> Self {
        Self(Arc::new(RwLock::new(Arc::new(state))))
    }

    pub fn load(&self) -> Arc<ListenerState> {
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub fn store(&self, state: ListenerState) {
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(state);
    }
}

/// A bound listener socket and its tasks.
#[derive(Debug)]
pub struct ListenerRuntime {
    /// The address asked for (port 0 for an ephemeral port); a change means a rebind.
    pub requested: SocketAddr,
    /// The address actually bound.
    pub bound: SocketAddr,
    pub state: SharedState,
    /// The listener configuration `state` was built from (to skip rebuilding unchanged ones).
    pub applied: ListenerPlane,
    shutdown: watch::Sender<bool>,
    accept_task: Option<JoinHandle<()>>,
}

impl ListenerRuntime {
    /// Bind `requested` and start serving `state` on it.
    pub async fn bind(
        requested: SocketAddr,
        state: ListenerState,
        applied: ListenerPlane,
        handler: Arc<Handler>,
        provider: Arc<CryptoProvider>,
        limits: ConnLimits,
    ) -> Result<Self, DataPlaneError> {
        let bind_error = |source| DataPlaneError::Bind {
            lb_id: state.lb_id.clone(),
            port: state.port,
            addr: requested,
            source,
        };
        let socket = TcpListener::bind(requested).await.map_err(bind_error)?;
        let bound = socket.local_addr().map_err(bind_error)?;
        let (lb_id, port) = (state.lb_id.clone(), state.port);
        let state = SharedState::new(state);
        let tls =
            tls::server_config(provider, state.clone()).map_err(|source| DataPlaneError::Tls {
                lb_id,
                port,
                source,
            })?;
        let tls = TlsAcceptor::from(Arc::new(tls));
        let (shutdown, shutdown_rx) = watch::channel(false);
        let ctx = Arc::new(ConnCtx {
            state: state.clone(),
            tls,
            handler,
            limits,
        });
        let accept_task = tokio::spawn(accept_loop(socket, ctx, shutdown_rx));
        Ok(Self {
            requested,
            bound,
            state,
            applied,
            shutdown,
            accept_task: Some(accept_task),
        })
    }

    /// Stop accepting, close the socket (awaited, so the address is free on return) and let open
    /// connections finish their in-flight requests before they close.
    pub async fn close(mut self) {
        self.shutdown.send_replace(true);
        if let Some(task) = self.accept_task.take() {
            // The loop exits on the signal; a JoinError only means it panicked or was aborted.
            let _ = task.await;
        }
    }
}

impl Drop for ListenerRuntime {
    fn drop(&mut self) {
        self.shutdown.send_replace(true);
    }
}

/// What every connection of a listener shares.
struct ConnCtx {
    state: SharedState,
    tls: TlsAcceptor,
    handler: Arc<Handler>,
    limits: ConnLimits,
}

/// Resolves when the listener is told to shut down (or its owner is gone).
async fn shutdown_signal(rx: &mut watch::Receiver<bool>) {
    // An error means the sender is dropped: the listener is gone, shut down too.
    let _ = rx.wait_for(|stop| *stop).await;
}

async fn accept_loop(socket: TcpListener, ctx: Arc<ConnCtx>, mut shutdown: watch::Receiver<bool>) {
    let slots = Arc::new(Semaphore::new(ctx.limits.max_connections));
    loop {
        // At the cap, accept nothing until a connection ends.
        let slot = tokio::select! {
            () = shutdown_signal(&mut shutdown) => break,
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
        };
        tokio::select! {
            () = shutdown_signal(&mut shutdown) => break,
            accepted = socket.accept() => match accepted {
                Ok((stream, peer)) => {
                    let (ctx, shutdown) = (ctx.clone(), shutdown.clone());
                    tokio::spawn(async move {
                        serve_connection(stream, peer, ctx, shutdown).await;
                        drop(slot);
                    });
                }
                Err(err) => {
                    tracing::warn!(error = %err, "data plane accept failed");
                    tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                }
            },
        }
    }
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    ctx: Arc<ConnCtx>,
    shutdown: watch::Receiver<bool>,
) {
    // The protocol is fixed per connection; a later config change applies to new connections.
    let protocol = ctx.state.load().protocol;
    match protocol {
        PlaneProtocol::Http => serve_http(stream, peer, protocol, ctx, shutdown).await,
        PlaneProtocol::Https => {
            match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, ctx.tls.accept(stream)).await {
                Ok(Ok(tls_stream)) => serve_http(tls_stream, peer, protocol, ctx, shutdown).await,
                Ok(Err(err)) => tracing::debug!(%peer, error = %err, "TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
        }
    }
}

async fn serve_http<S>(
    stream: S,
    peer: SocketAddr,
    protocol: PlaneProtocol,
    ctx: Arc<ConnCtx>,
    mut shutdown: watch::Receiver<bool>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = {
        let ctx = ctx.clone();
        service_fn(move |req| {
            let state = ctx.state.load();
            let handler = ctx.handler.clone();
            async move { handler.handle(&state, protocol, peer, req).await }
        })
    };
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(ctx.limits.header_read_timeout);
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => log_conn_result(peer, result),
        () = shutdown_signal(&mut shutdown) => {
            conn.as_mut().graceful_shutdown();
            log_conn_result(peer, conn.await);
        }
    }
}

fn log_conn_result(peer: SocketAddr, result: Result<(), hyper::Error>) {
    if let Err(err) = result {
        tracing::debug!(%peer, error = %err, "data plane connection ended with an error");
    }
}
