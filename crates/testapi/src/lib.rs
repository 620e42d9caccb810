//! The in-repo TEST Kubernetes API server (test support, not product; DESIGN.md §4).
//!
//! No kube-apiserver can be installed on the build machines, so tests of the controller and of
//! `kubectl` use this server. It speaks the real REST + watch protocol over plain HTTP on
//! loopback for the kinds clb-ingress needs (Namespace, Service, Secret, ConfigMap, Node,
//! Endpoints, Event in `v1` and `events.k8s.io/v1`, EndpointSlice, Ingress, IngressClass,
//! Lease, CustomResourceDefinition) and for custom resources of any CRD created in it.
//!
//! Semantics kept: one global monotonically increasing `resourceVersion`, `uid`,
//! `creationTimestamp`, `generation` (bumped on changes outside metadata and status), 409
//! `AlreadyExists` / `Conflict`, status subresources (main writes keep the status, `/status`
//! writes change only the status), finalizers (`deletionTimestamp`, removal once they are
//! empty), label and field selectors, watches from a resourceVersion with `410 Expired`,
//! bookmarks, `sendInitialEvents`, and Tables for `kubectl get`.
//!
//! Approximations (see `docs/testapi.md`): strategic merge patch is a merge patch that knows
//! the common keyed lists; server-side apply remembers each manager's last applied
//! configuration instead of `managedFields` and never reports field conflicts; there is no
//! schema validation, admission, authentication, pagination or garbage collection by owner.

pub mod cli;
pub mod kinds;
pub mod patch;
pub mod protobuf;
pub mod resources;
pub mod selector;
pub mod server;
pub mod store;
pub mod table;

pub use store::AuditEntry;

use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::watch;

/// A running test API server.
pub struct Running {
    /// The address it listens on.
    pub addr: SocketAddr,
    store: Arc<store::Store>,
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

/// Settings of a test API server.
#[derive(Debug, Clone)]
pub struct Options {
    /// Changes kept for watches resuming from a resourceVersion; a watch from an older
    /// version gets a `410 Expired` ERROR event (a small value lets tests provoke relists).
    pub history: usize,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            history: store::DEFAULT_HISTORY,
        }
    }
}

/// Start serving on `listen` (a loopback address; port 0 picks a free port).
pub async fn start(listen: SocketAddr) -> std::io::Result<Running> {
    start_with(listen, Options::default()).await
}

/// [`start`] with [`Options`].
pub async fn start_with(listen: SocketAddr, options: Options) -> std::io::Result<Running> {
    if !listen.ip().is_loopback() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("the test API server listens on loopback only, not {listen}"),
        ));
    }
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| std::io::Error::new(e.kind(), format!("binding {listen}: {e}")))?;
    let addr = listener.local_addr()?;
    let store = store::Store::new(options.history);
    let (shutdown, shutdown_rx) = watch::channel(false);
    let app = Arc::new(server::App {
        store: store.clone(),
        shutdown: shutdown_rx.clone(),
    });
    let router = axum::Router::new().fallback(server::handle).with_state(app);
    let mut stop_rx = shutdown_rx;
    let task = tokio::spawn(async move {
        let served = axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                let _ = stop_rx.wait_for(|stop| *stop).await;
            })
            .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "test API server stopped");
        }
    });
    Ok(Running {
        addr,
        store,
        shutdown,
        task,
    })
}

impl Running {
    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A kubeconfig for kubectl and kube-rs (context `clb-ingress-testapi`, namespace
    /// `default`, no credentials).
    pub fn kubeconfig_yaml(&self) -> String {
        kubeconfig_yaml(&self.url())
    }

    /// A kube-rs client for this server (default namespace `default`).
    pub fn client(&self) -> Result<kube::Client, kube::Error> {
        let mut config = kube::Config::new(
            self.url()
                .parse()
                .map_err(|e| kube::Error::Service(Box::new(e)))?,
        );
        config.default_namespace = "default".into();
        kube::Client::try_from(config)
    }

    /// Every request served so far (also at `GET /_testapi/audit`).
    pub fn audit(&self) -> Vec<AuditEntry> {
        self.store.audit()
    }

    /// Make `get` of `plural` `namespace/name` answer 500 until turned off (fault injection).
    pub fn fail_gets(&self, plural: &str, namespace: &str, name: &str, on: bool) {
        self.store.fail_gets(plural, namespace, name, on);
    }

    /// Make writes to `plural` `namespace/name` whose body holds `spec.holderIdentity: holder`
    /// answer 500 until turned off: that Lease holder can no longer renew (fault injection).
    pub fn fail_holder_writes(
        &self,
        plural: &str,
        namespace: &str,
        name: &str,
        holder: &str,
        on: bool,
    ) {
        self.store
            .fail_holder_writes(plural, namespace, name, holder, on);
    }

    /// Forget the requests recorded so far (also `DELETE /_testapi/audit`).
    pub fn clear_audit(&self) {
        self.store.clear_audit();
    }

    /// The current global resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.store.resource_version()
    }

    /// Stop serving: open watches end, then the listener closes.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
    }
}

/// The kubeconfig YAML for a server at `url`.
pub fn kubeconfig_yaml(url: &str) -> String {
    format!(
        "apiVersion: v1\n\
         kind: Config\n\
         clusters:\n\
         - name: clb-ingress-testapi\n  cluster:\n    server: {url}\n\
         contexts:\n\
         - name: clb-ingress-testapi\n  context:\n    cluster: clb-ingress-testapi\n    user: clb-ingress-testapi\n    namespace: default\n\
         current-context: clb-ingress-testapi\n\
         users:\n\
         - name: clb-ingress-testapi\n  user: {{}}\n\
         preferences: {{}}\n"
    )
}
