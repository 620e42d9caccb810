//! The validating admission webhook (`clb-ingress run --webhook-addr`): AdmissionReview
//! (`admission.k8s.io/v1`) requests for Ingresses and `ClbClassParameters` over HTTPS, answered
//! with the model's own verdicts (`crate::admission`): what the controller would park because
//! of the object's own content is refused, the rest of what it would report is returned as
//! warnings. The serving certificate and key are files, re-read when they change (a mounted
//! Secret rotated by cert-manager or Helm reaches the running pod without a restart).
//!
//! Every replica serves it, leader or not: verdicts use the watch caches every replica keeps.
//! Until the caches have synced, requests are allowed with a warning saying they were not
//! checked.

use crate::admission::{self, IngressVerdict};
use crate::crd::ClbClassParameters;
use crate::model::Snapshot;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use clb_http_limits::Limits;
use k8s_openapi::api::networking::v1::Ingress;
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;

/// The one path the webhook configurations call.
pub const PATH: &str = "/validate";
/// Largest AdmissionReview accepted: an object and its old version at the API server's 1.5 MiB
/// object limit, with room for the envelope. Larger bodies are answered 413.
pub const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;
/// The API server gives a webhook at most 30 s (10 s by default); answer well within it.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(8);
/// The certificate files are checked (a `stat`) for changes at most this often.
pub const CERT_CHECK_INTERVAL: Duration = Duration::from_secs(1);
/// Warning given while the caches have not synced.
pub const NOT_CHECKED: &str =
    "clb-ingress has not synced its caches yet: this object was not checked";

/// The cluster as the controller's watch caches hold it, for verdicts.
pub trait ClusterView: Send + Sync {
    /// A snapshot with `candidate` in place of the cached Ingress of its name; `None` when the
    /// controller does not watch the candidate's namespace.
    fn snapshot_with(&self, candidate: &Ingress) -> Option<Snapshot>;
    /// Does Secret `namespace/name` exist (in the metadata watch cache)?
    fn secret_exists(&self, namespace: &str, name: &str) -> bool;
}

/// Where the controller publishes its caches once they have synced.
pub type ViewSlot = Arc<OnceLock<Arc<dyn ClusterView>>>;

/// Why the webhook could not start.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("reading the webhook certificate {path}")]
    ReadCert {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the webhook certificate or key is not usable ({cert} / {key}): {reason}")]
    BadCert {
        cert: PathBuf,
        key: PathBuf,
        reason: String,
    },
    #[error("binding the admission webhook to {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("TLS configuration of the admission webhook")]
    Tls(#[source] rustls::Error),
}

// ---------------------------------------------------------------------------------------------
// Verdicts

/// Answer one AdmissionReview body: 400 for a body that is not one.
pub fn answer(body: &[u8], view: Option<&dyn ClusterView>) -> Response {
    let review: AdmissionReview<DynamicObject> = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(e) => return bad_request(format!("not an admission.k8s.io/v1 AdmissionReview: {e}")),
    };
    let request: AdmissionRequest<DynamicObject> = match review.try_into() {
        Ok(r) => r,
        Err(e) => return bad_request(format!("the AdmissionReview has no request: {e}")),
    };
    let response = review_request(&request, view);
    axum::Json(response.into_review()).into_response()
}

fn bad_request(message: String) -> Response {
    (StatusCode::BAD_REQUEST, format!("{message}\n")).into_response()
}

/// The response to one admission request.
pub fn review_request(
    req: &AdmissionRequest<DynamicObject>,
    view: Option<&dyn ClusterView>,
) -> AdmissionResponse {
    let allow = AdmissionResponse::from(req);
    if !matches!(req.operation, Operation::Create | Operation::Update) {
        return allow;
    }
    let Some(object) = req.object.as_ref() else {
        return allow;
    };
    let group = req.kind.group.as_str();
    let kind = req.kind.kind.as_str();
    match (group, kind) {
        ("networking.k8s.io", "Ingress") => {
            let Some(view) = view else {
                return with_warnings(allow, vec![NOT_CHECKED.to_string()]);
            };
            review_ingress(req, object, view)
        }
        (crate::crd::API_GROUP, crate::crd::CLASS_PARAMETERS_KIND) => review_params(req, object),
        _ => allow,
    }
}

fn with_warnings(mut r: AdmissionResponse, warnings: Vec<String>) -> AdmissionResponse {
    if !warnings.is_empty() {
        r.warnings = Some(warnings);
    }
    r
}

/// The object as a typed `T`, or the deny message naming it.
fn typed<T: serde::de::DeserializeOwned>(
    object: &DynamicObject,
    what: &str,
    namespace: &str,
    name: &str,
) -> Result<T, String> {
    let value = serde_json::to_value(object).map_err(|e| e.to_string())?;
    serde_path_to_error::deserialize(value).map_err(|e| {
        format!(
            "clb-ingress cannot read {what} {namespace}{}{name}: {}: {}",
            if namespace.is_empty() { "" } else { "/" },
            e.path(),
            e.inner()
        )
    })
}

/// The name the object is known by in the request (a `generateName` object has none yet).
fn request_name(req: &AdmissionRequest<DynamicObject>, object: &DynamicObject) -> String {
    object
        .metadata
        .name
        .clone()
        .filter(|n| !n.is_empty())
        .or_else(|| Some(req.name.clone()).filter(|n| !n.is_empty()))
        .unwrap_or_else(|| {
            format!(
                "{}(generated)",
                object.metadata.generate_name.as_deref().unwrap_or("")
            )
        })
}

fn review_ingress(
    req: &AdmissionRequest<DynamicObject>,
    object: &DynamicObject,
    view: &dyn ClusterView,
) -> AdmissionResponse {
    let allow = AdmissionResponse::from(req);
    let namespace = object
        .metadata
        .namespace
        .clone()
        .or_else(|| req.namespace.clone())
        .unwrap_or_else(|| "default".into());
    let name = request_name(req, object);
    let mut ing: Ingress = match typed(object, "Ingress", &namespace, &name) {
        Ok(i) => i,
        Err(msg) => return allow.deny(msg),
    };
    // Being deleted: only finalizers change now; never stand in the way.
    if ing.metadata.deletion_timestamp.is_some() {
        return allow;
    }
    ing.metadata.namespace = Some(namespace.clone());
    ing.metadata.name = Some(name.clone());
    if ing.metadata.creation_timestamp.is_none() {
        // Created now: the newest Ingress, which loses conflicts with older ones.
        ing.metadata.creation_timestamp = Some(
            k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::now()),
        );
    }
    let Some(verdict) = verdict_of(&ing, view) else {
        return allow;
    };
    if !verdict.ours {
        return allow;
    }
    let mut refused = verdict.refused.clone();
    // An update refuses only what it newly breaks: an Ingress admitted before (or before this
    // webhook existed) can still get its status, finalizer and sync-state written.
    if req.operation == Operation::Update
        && let Some(old) = req.old_object.as_ref()
        && let Ok(mut old) = typed::<Ingress>(old, "Ingress", &namespace, &name)
    {
        old.metadata.namespace = Some(namespace.clone());
        old.metadata.name = Some(name.clone());
        if let Some(before) = verdict_of(&old, view) {
            refused.retain(|p| !before.refused.contains(p));
        }
    }
    let mut warnings = verdict.warnings.clone();
    warnings.extend(missing_secrets(&ing, view));
    warnings.truncate(admission::MAX_WARNINGS);
    if refused.is_empty() {
        return with_warnings(allow, warnings);
    }
    let message = IngressVerdict { refused, ..verdict }.refusal_message(&namespace, &name);
    with_warnings(allow.deny(message), warnings)
}

fn verdict_of(ing: &Ingress, view: &dyn ClusterView) -> Option<IngressVerdict> {
    let snap = view.snapshot_with(ing)?;
    Some(admission::review_ingress(
        &snap,
        ing.metadata.namespace.as_deref().unwrap_or_default(),
        ing.metadata.name.as_deref().unwrap_or_default(),
    ))
}

/// Warnings for TLS Secrets the Ingress names that do not exist (the model's own Secret
/// problems need the Secret's data, which admission does not read).
fn missing_secrets(ing: &Ingress, view: &dyn ClusterView) -> Vec<String> {
    let ns = ing.metadata.namespace.as_deref().unwrap_or_default();
    ing.spec
        .iter()
        .flat_map(|s| s.tls.iter().flatten().enumerate())
        .filter_map(|(i, t)| {
            let secret = t.secret_name.as_deref()?;
            (!view.secret_exists(ns, secret)).then(|| {
                format!(
                    "spec.tls[{i}].secretName: Secret {ns}/{secret} does not exist (yet); its hosts get no certificate from it until it does (TlsSecretNotFound)"
                )
            })
        })
        .collect()
}

fn review_params(
    req: &AdmissionRequest<DynamicObject>,
    object: &DynamicObject,
) -> AdmissionResponse {
    let allow = AdmissionResponse::from(req);
    let name = request_name(req, object);
    let params: ClbClassParameters =
        match typed(object, crate::crd::CLASS_PARAMETERS_KIND, "", &name) {
            Ok(p) => p,
            Err(msg) => return allow.deny(msg),
        };
    let problems = admission::review_class_parameters(&params.spec);
    if problems.is_empty() {
        return allow;
    }
    let parts: Vec<String> = problems
        .iter()
        .map(|(field, msg)| format!("{field}: {msg}"))
        .collect();
    allow.deny(format!(
        "clb-ingress refuses ClbClassParameters {name}: {} (every Ingress of its classes would stay unsynced)",
        parts.join("; ")
    ))
}

// ---------------------------------------------------------------------------------------------
// Serving

/// The serving certificate, re-read from its files when they change.
#[derive(Debug)]
pub struct CertFiles {
    cert: PathBuf,
    key: PathBuf,
    state: Mutex<CertState>,
}

#[derive(Debug)]
struct CertState {
    current: Arc<CertifiedKey>,
    stamp: Option<FileStamp>,
    checked: Instant,
}

/// What identifies one version of the two files (a Secret volume swaps them atomically).
#[derive(Debug, Clone, PartialEq, Eq)]
struct FileStamp(Vec<(Option<std::time::SystemTime>, u64, u64)>);

fn stamp(paths: [&Path; 2]) -> Option<FileStamp> {
    let mut out = Vec::new();
    for p in paths {
        let m = std::fs::metadata(p).ok()?;
        #[cfg(unix)]
        let ino = std::os::unix::fs::MetadataExt::ino(&m);
        #[cfg(not(unix))]
        let ino = 0;
        out.push((m.modified().ok(), m.len(), ino));
    }
    Some(FileStamp(out))
}

fn load(cert: &Path, key: &Path) -> Result<CertifiedKey, WebhookError> {
    let read = |path: &Path| {
        std::fs::read(path).map_err(|source| WebhookError::ReadCert {
            path: path.to_path_buf(),
            source,
        })
    };
    let (cert_pem, key_pem) = (read(cert)?, read(key)?);
    let bad = |reason: String| WebhookError::BadCert {
        cert: cert.to_path_buf(),
        key: key.to_path_buf(),
        reason,
    };
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(format!("certificate PEM: {e}")))?;
    if chain.is_empty() {
        return Err(bad("no CERTIFICATE block in the certificate file".into()));
    }
    let key_der =
        PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| bad(format!("key PEM: {e}")))?;
    CertifiedKey::from_der(chain, key_der, &rustls::crypto::ring::default_provider())
        .map_err(|e| bad(e.to_string()))
}

impl CertFiles {
    /// Load `cert` and `key` (PEM); an unusable pair is an error naming the files.
    pub fn load(cert: &Path, key: &Path) -> Result<Self, WebhookError> {
        let stamp = stamp([cert, key]);
        let current = Arc::new(load(cert, key)?);
        Ok(Self {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            state: Mutex::new(CertState {
                current,
                stamp,
                checked: Instant::now(),
            }),
        })
    }

    /// The certificate to serve: re-read when the files changed (checked at most every
    /// [`CERT_CHECK_INTERVAL`]); a pair that does not load keeps the previous one in service.
    pub fn current(&self) -> Arc<CertifiedKey> {
        let mut st = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if st.checked.elapsed() >= CERT_CHECK_INTERVAL {
            st.checked = Instant::now();
            let now = stamp([&self.cert, &self.key]);
            if now.is_some() && now != st.stamp {
                match load(&self.cert, &self.key) {
                    Ok(k) => {
                        tracing::info!(cert = %self.cert.display(), "webhook certificate reloaded");
                        st.current = Arc::new(k);
                        st.stamp = now;
                    }
                    Err(e) => {
                        // Often a half-written pair: tried again at the next check.
                        tracing::warn!(error = %e, "webhook certificate not reloaded; serving the previous one");
                    }
                }
            }
        }
        st.current.clone()
    }
}

impl ResolvesServerCert for CertFiles {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

/// The limits of the webhook server.
pub fn limits() -> Limits {
    Limits {
        max_body_bytes: MAX_BODY_BYTES,
        request_timeout: REQUEST_TIMEOUT,
        ..Limits::default()
    }
}

/// The webhook's routes over `slot`.
pub fn router(slot: ViewSlot) -> Router {
    Router::new()
        .route(
            PATH,
            post(|State(slot): State<ViewSlot>, body: Bytes| async move {
                let view = slot.get().cloned();
                // The model is CPU work: keep it off the async workers.
                tokio::task::spawn_blocking(move || answer(&body, view.as_deref()))
                    .await
                    .unwrap_or_else(|e| {
                        (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response()
                    })
            }),
        )
        .with_state(slot)
}

/// Bind `addr` for the webhook; the bound address is returned too (port 0 picks one).
pub async fn bind(addr: SocketAddr) -> Result<(TcpListener, SocketAddr), WebhookError> {
    let bind_err = |source| WebhookError::Bind { addr, source };
    let listener = TcpListener::bind(addr).await.map_err(bind_err)?;
    let local = listener.local_addr().map_err(bind_err)?;
    Ok((listener, local))
}

/// Serve the webhook on `listener` with `certs` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    certs: Arc<CertFiles>,
    slot: ViewSlot,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), WebhookError> {
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(WebhookError::Tls)?
    .with_no_client_auth()
    .with_cert_resolver(certs);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    clb_http_limits::serve_tls(listener, router(slot), limits(), acceptor, shutdown).await;
    Ok(())
}
