//! The Kubernetes Ingress matching semantics (the oracle), straight from the spec.
//! PLACEHOLDER interface: the full implementation replaces the body of `route`.

/// `pathType`: `ImplementationSpecific` is treated as `Prefix` by clb-ingress (documented choice).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PathKind {
    Exact,
    Prefix,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathRule<B> {
    pub path: String,
    pub kind: PathKind,
    pub backend: B,
}

/// One `spec.rules[]` entry: a host (None = host-less rule) and its paths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostRules<B> {
    pub host: Option<String>,
    pub paths: Vec<PathRule<B>>,
}

/// All rules of the Ingresses sharing one load balancer, oldest Ingress first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngressView<B> {
    pub rules: Vec<HostRules<B>>,
    pub default_backend: Option<B>,
}

/// The backend the Ingress spec sends this request to, or None (404).
pub fn route<B: Clone>(_view: &IngressView<B>, _host: &str, _path_and_query: &str) -> Option<B> {
    None
}
