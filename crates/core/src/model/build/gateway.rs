//! Gateway API -> CLB stacks: each Gateway of a clb-ingress GatewayClass is one CLB it creates;
//! its listeners are CLB listeners (one per port), the HTTPRoutes and GRPCRoutes attached to
//! them become domains and URL rules, and every object gets its computed status.
//!
//! How Gateway API semantics map onto CLB (docs/gateway-api.md explains it for users):
//! - Route hostnames are intersected with listener hostnames (the more specific wins; none in
//!   common: not attached there). Each effective hostname is a CLB domain: exact -> exact
//!   domain; `*.suffix` (one or more labels) -> CLB's own wildcard `*.suffix`, or, when that
//!   wildcard contains another wildcard of the same Gateway, the regex `~^.+\.suffix$` (CLB
//!   consults regexes after wildcards, so the deeper wildcard keeps its hosts); no hostname ->
//!   the listener's DefaultServer catch-all domain.
//! - A request gets the rules of the most specific matching hostname first, then of each less
//!   specific one (Gateway API: precedence by hostname, then path). Every CLB URL of a domain
//!   carries the answer those layered rules give for the requests CLB sends to it, so CLB's
//!   own matching (exact, then longest string prefix) gives the Gateway API answer.
//! - `PathPrefix` is element-wise like Ingress `Prefix` (`=/p` and `/p/`), `Exact` is `=/p`;
//!   Exact beats any prefix; the longer prefix wins; ties go to the oldest route, then
//!   `namespace/name`, then the first rule and match.
//! - What CLB cannot express (header, query and method matches, filters other than an HTTPS
//!   `RequestRedirect`, `RegularExpression` paths, unknown rule fields) drops the rule, never a
//!   part of it: the route's parent gets `PartiallyInvalid` (or `Accepted: False` when every
//!   rule is dropped) with reason `UnsupportedValue` and a message naming the field.
//! - GRPCRoutes attach to HTTPS listeners only (CLB forwards gRPC there only): service+method
//!   is the exact URL `=/pkg.Service/Method`, a service alone the prefix `/pkg.Service/` (never
//!   `/pkg.Service` itself), no method `/`; their rules get ForwardType GRPC on HTTP/2 domains.
//!   An HTTPRoute and a GRPCRoute sharing a hostname on a listener: the older one wins there.

use super::*;
use crate::gateway::status::{
    ClassStatus, Condition, GatewayApiStatus, GatewayStatus, ListenerStatus, RouteParentStatus,
    RouteStatus, condition,
};
use crate::gateway::{self as gwapi, HostPattern};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::Value;

const KIND_GATEWAY: &str = "Gateway";
const KIND_HTTP_ROUTE: &str = "HTTPRoute";
const KIND_GRPC_ROUTE: &str = "GRPCRoute";
/// The CLB backend protocol of GRPCRoute rules.
const FORWARD_GRPC: &str = "GRPC";
/// Redirect status codes of the v1 standard channel that CLB's rewrite can send.
const REDIRECT_CODES: [i32; 2] = [301, 302];
const DEFAULT_REDIRECT_CODE: u16 = 302;

pub(super) struct GatewayBuild {
    pub(super) stacks: Vec<(StackId, DesiredLb)>,
    pub(super) problems: Vec<Problem>,
    pub(super) status: GatewayApiStatus,
}

/// One listener of a Gateway, checked.
struct ListenerCtx<'a> {
    name: &'a str,
    pattern: HostPattern,
    port: u16,
    protocol: Protocol,
    cert: Option<CertSource>,
    supported: Vec<gwapi::RouteGroupKind>,
    allowed: Option<&'a gwapi::AllowedRoutes>,
    conditions: Vec<Condition>,
    attached: i32,
}

impl ListenerCtx<'_> {
    fn usable(&self) -> bool {
        condition(&self.conditions, "Accepted").is_some_and(Condition::is_true)
            && condition(&self.conditions, "ResolvedRefs").is_some_and(Condition::is_true)
            && !condition(&self.conditions, "Conflicted").is_some_and(Condition::is_true)
    }
}

/// What a CLB rule does.
#[derive(Debug, Clone)]
enum Action {
    Forward {
        backend: Option<BackendRef>,
        targets: Vec<Target>,
        /// A GRPCRoute rule: CLB forwards to the targets over gRPC.
        grpc: bool,
    },
    /// Redirect to the same host and URL on the HTTPS listener of this port.
    Redirect { https_port: u16, code: u16 },
}

/// One path match of an attached route rule, on one listener.
#[derive(Debug, Clone)]
struct Entry {
    listener: usize,
    host: HostPattern,
    kind: PathKind,
    /// The Exact path, or the prefix's element-wise key (trailing slashes removed).
    key: String,
    /// Length of the prefix as written (the longer one wins a tie on the key).
    written: usize,
    /// Does a prefix match its key itself (`/p` for `PathPrefix /p`)? A GRPCRoute service
    /// match covers only the paths under `/pkg.Service/`.
    bare: bool,
    /// (route rank, rule, match): lower wins ties.
    rank: (usize, usize, usize),
    action: usize,
}

struct GatewayCtx<'a> {
    gw: &'a gwapi::Gateway,
    ns: &'a str,
    name: &'a str,
    generation: Option<i64>,
    params: Option<&'a ClbClassParametersSpec>,
    /// Accepted (with the reason and message of the condition).
    accepted: (bool, &'static str, String),
    listeners: Vec<ListenerCtx<'a>>,
    entries: Vec<Entry>,
    actions: Vec<Action>,
}

/// Oldest first, then `namespace/name` (Gateway API's tie-break between routes).
fn age_order(a: &ObjectMeta, b: &ObjectMeta) -> std::cmp::Ordering {
    let ta = a.creation_timestamp.as_ref().map(|t| t.0);
    let tb = b.creation_timestamp.as_ref().map(|t| t.0);
    ta.cmp(&tb).then_with(|| meta_name(a).cmp(&meta_name(b)))
}

pub(super) fn build(index: &Index<'_>) -> GatewayBuild {
    let snap = index.snap;
    let mut out = GatewayBuild {
        stacks: Vec::new(),
        problems: Vec::new(),
        status: GatewayApiStatus::default(),
    };
    if snap.gateway_controller_name.is_empty() {
        return out;
    }
    // Classes: ours, accepted or not, with their parameters.
    let mut classes: BTreeMap<&str, Result<Option<&ClbClassParametersSpec>, String>> =
        BTreeMap::new();
    for c in &snap.gateway_classes {
        if c.spec.controller_name != snap.gateway_controller_name {
            continue;
        }
        let name = c.metadata.name.as_deref().unwrap_or("");
        let params = match &c.spec.parameters_ref {
            None => Ok(None),
            Some(p)
                if p.group != crate::crd::API_GROUP
                    || p.kind != crate::crd::CLASS_PARAMETERS_KIND =>
            {
                Err(format!(
                    "parametersRef must name a {}.{} (got {}.{})",
                    crate::crd::CLASS_PARAMETERS_KIND,
                    crate::crd::API_GROUP,
                    p.kind,
                    p.group
                ))
            }
            Some(p) => snap
                .class_params
                .iter()
                .find(|cp| cp.metadata.name.as_deref() == Some(p.name.as_str()))
                .map(|cp| Some(&cp.spec))
                .ok_or_else(|| format!("ClbClassParameters {:?} not found", p.name)),
        };
        let params = params.and_then(|p| match p.and_then(|s| s.load_balancer_id.as_deref()) {
            Some(lb) => Err(format!(
                "loadBalancerId {lb:?}: a Gateway always gets a CLB of its own; adopting an existing CLB is not supported for Gateways"
            )),
            None => Ok(p),
        });
        let cond = match &params {
            Ok(_) => Condition::new(
                "Accepted",
                true,
                "Accepted",
                "handled by clb-ingress",
                c.metadata.generation,
            ),
            Err(m) => Condition::new(
                "Accepted",
                false,
                "InvalidParameters",
                m.clone(),
                c.metadata.generation,
            ),
        };
        if let Err(m) = &params {
            out.problems.push(Problem {
                object: ObjectRef::cluster("GatewayClass", name),
                field: "spec.parametersRef".into(),
                reason: Reason::InvalidClassParameters,
                effect: Effect::Ignored,
                message: m.clone(),
            });
        }
        out.status.classes.push(ClassStatus {
            name: name.to_string(),
            conditions: vec![cond],
        });
        classes.insert(name, params);
    }
    let mut gateways: Vec<&gwapi::Gateway> = snap
        .gateways
        .iter()
        .filter(|g| classes.contains_key(g.spec.gateway_class_name.as_str()))
        .collect();
    gateways.sort_by(|a, b| age_order(&a.metadata, &b.metadata));
    let mut ctxs: Vec<GatewayCtx<'_>> = gateways
        .into_iter()
        .map(|g| gateway_ctx(index, g, &classes[g.spec.gateway_class_name.as_str()]))
        .collect();
    attach_routes(index, &mut ctxs, &mut out);
    // A rule refused for each of a route's parents is one problem.
    out.problems.sort();
    out.problems.dedup();
    for ctx in ctxs {
        let key = ObjectRef::namespaced(KIND_GATEWAY, ctx.ns, ctx.name);
        if !ctx.accepted.0 {
            out.problems.push(Problem {
                object: key.clone(),
                field: "spec".into(),
                reason: Reason::InvalidGateway,
                effect: Effect::Parked,
                message: ctx.accepted.2.clone(),
            });
        }
        for (li, l) in ctx.listeners.iter().enumerate() {
            if let Some(bad) = l
                .conditions
                .iter()
                .find(|c| (c.type_ == "Conflicted") == c.is_true() && c.type_ != "Programmed")
            {
                out.problems.push(Problem {
                    object: key.clone(),
                    field: format!("spec.listeners[{li}]"),
                    reason: Reason::InvalidListener,
                    effect: Effect::Parked,
                    message: format!("listener {:?}: {}: {}", l.name, bad.reason, bad.message),
                });
            }
        }
        let status = GatewayStatus {
            namespace: ctx.ns.to_string(),
            name: ctx.name.to_string(),
            addresses: Vec::new(),
            conditions: vec![Condition::new(
                "Accepted",
                ctx.accepted.0,
                ctx.accepted.1,
                ctx.accepted.2.clone(),
                ctx.generation,
            )],
            listeners: ctx
                .listeners
                .iter()
                .map(|l| ListenerStatus {
                    name: l.name.to_string(),
                    supported_kinds: l.supported.clone(),
                    attached_routes: l.attached,
                    conditions: l.conditions.clone(),
                })
                .collect(),
        }
        .programmed(&[], "Pending", "the CLB is not programmed yet");
        out.status.gateways.push(status);
        if ctx.accepted.0 {
            let (lb, problems) = stack_of(index, ctx);
            out.problems.extend(problems);
            if let Some(lb) = lb {
                out.stacks.push((lb.stack.clone(), lb));
            }
        }
    }
    out
}

/// Check a Gateway and its listeners.
fn gateway_ctx<'a>(
    index: &Index<'a>,
    g: &'a gwapi::Gateway,
    class: &Result<Option<&'a ClbClassParametersSpec>, String>,
) -> GatewayCtx<'a> {
    let (ns, name) = meta_name(&g.metadata);
    let generation = g.metadata.generation;
    let gkey = ObjectRef::namespaced(KIND_GATEWAY, ns, name);
    let params = class.as_ref().ok().copied().flatten();
    let mut listeners: Vec<ListenerCtx<'a>> = Vec::new();
    for (li, l) in g.spec.listeners.iter().enumerate() {
        let cond = |t, ok, r, m: String| Condition::new(t, ok, r, m, generation);
        let mut conditions = Vec::new();
        let protocol = match l.protocol.as_str() {
            "HTTP" => Some(Protocol::Http),
            "HTTPS" => Some(Protocol::Https),
            _ => None,
        };
        let port = u16::try_from(l.port).ok().filter(|p| *p > 0);
        let host_err = l
            .hostname
            .as_deref()
            .and_then(|h| gwapi::hosts::check_hostname(h).err());
        let accepted = match (protocol, port, &host_err) {
            (None, _, _) => cond(
                "Accepted",
                false,
                "UnsupportedProtocol",
                format!(
                    "protocol {:?}: a CLB layer-7 listener serves HTTP or HTTPS",
                    l.protocol
                ),
            ),
            (_, None, _) => cond(
                "Accepted",
                false,
                "PortUnavailable",
                format!("port {} is not 1-65535", l.port),
            ),
            (_, _, Some(m)) => cond("Accepted", false, "UnsupportedValue", m.clone()),
            _ => cond("Accepted", true, "Accepted", "accepted".into()),
        };
        conditions.push(accepted);
        // Route kinds.
        let mut supported = Vec::new();
        let mut bad_kinds = Vec::new();
        // CLB forwards gRPC (ForwardType GRPC) on HTTPS listeners only.
        let kinds_here: &[&str] = if protocol == Some(Protocol::Https) {
            &[KIND_HTTP_ROUTE, KIND_GRPC_ROUTE]
        } else {
            &[KIND_HTTP_ROUTE]
        };
        match l
            .allowed_routes
            .as_ref()
            .map(|a| a.kinds.as_slice())
            .unwrap_or_default()
        {
            [] => supported.extend(kinds_here.iter().map(|k| gwapi::RouteGroupKind {
                group: Some(gwapi::GROUP.into()),
                kind: (*k).into(),
            })),
            kinds => {
                for k in kinds {
                    if k.group.as_deref().unwrap_or(gwapi::GROUP) == gwapi::GROUP
                        && kinds_here.contains(&k.kind.as_str())
                    {
                        supported.push(k.clone());
                    } else {
                        bad_kinds.push(format!(
                            "{}.{}",
                            k.kind,
                            k.group.as_deref().unwrap_or(gwapi::GROUP)
                        ));
                    }
                }
            }
        }
        // Certificates.
        let mut cert = None;
        let mut refs = cond(
            "ResolvedRefs",
            true,
            "ResolvedRefs",
            "all references resolved".into(),
        );
        if !bad_kinds.is_empty() {
            refs = cond(
                "ResolvedRefs",
                false,
                "InvalidRouteKinds",
                format!(
                    "route kinds {} are not supported on this listener ({}): CLB serves GRPCRoutes on HTTPS listeners only, as it forwards gRPC (ForwardType GRPC) on HTTPS listeners only",
                    bad_kinds.join(", "),
                    kinds_here.join(" and ")
                ),
            );
        }
        if protocol == Some(Protocol::Https) {
            match check_tls(index, l, ns, &gkey, li) {
                Ok(c) => cert = Some(c),
                Err((reason, m)) if reason == "UnsupportedValue" => {
                    conditions[0] = cond("Accepted", false, reason, m);
                }
                Err((reason, m)) => refs = cond("ResolvedRefs", false, reason, m),
            }
        } else if l.tls.is_some() && protocol.is_some() {
            conditions[0] = cond(
                "Accepted",
                false,
                "UnsupportedValue",
                "tls is only for HTTPS listeners".into(),
            );
        }
        conditions.push(refs);
        listeners.push(ListenerCtx {
            name: &l.name,
            pattern: HostPattern::of(l.hostname.as_deref()),
            port: port.unwrap_or(0),
            protocol: protocol.unwrap_or(Protocol::Http),
            cert,
            supported,
            allowed: l.allowed_routes.as_ref(),
            conditions,
            attached: 0,
        });
    }
    // Conflicts between accepted listeners: one protocol per port, one hostname per port.
    let n = listeners.len();
    for i in 0..n {
        let mut conflict: Option<(&'static str, String)> = None;
        let accepted =
            |l: &ListenerCtx| condition(&l.conditions, "Accepted").is_some_and(Condition::is_true);
        if accepted(&listeners[i]) {
            for j in 0..n {
                if i == j || !accepted(&listeners[j]) || listeners[i].port != listeners[j].port {
                    continue;
                }
                if listeners[i].protocol != listeners[j].protocol {
                    conflict = Some((
                        "ProtocolConflict",
                        format!(
                            "listener {:?} uses port {} with another protocol",
                            listeners[j].name, listeners[j].port
                        ),
                    ));
                    break;
                }
                if listeners[i].pattern == listeners[j].pattern {
                    conflict = Some((
                        "HostnameConflict",
                        format!(
                            "listener {:?} has the same port and hostname",
                            listeners[j].name
                        ),
                    ));
                }
            }
        }
        let c = match conflict {
            Some((r, m)) => Condition::new("Conflicted", true, r, m, generation),
            None => Condition::new(
                "Conflicted",
                false,
                "NoConflicts",
                "no conflicts",
                generation,
            ),
        };
        listeners[i].conditions.push(c);
    }
    let accepted = if let Err(m) = class {
        (
            false,
            "InvalidParameters",
            format!("GatewayClass {:?}: {m}", g.spec.gateway_class_name),
        )
    } else if !g.spec.addresses.is_empty() {
        (
            false,
            "UnsupportedAddress",
            "spec.addresses: CLB assigns the Gateway's VIP itself; remove the requested addresses"
                .to_string(),
        )
    } else if let Some(sel) = params
        .and_then(|p| p.namespace_selector.as_ref())
        .filter(|s| !index.selector_matches_namespace(s, ns))
    {
        let _ = sel;
        (
            false,
            "InvalidParameters",
            format!(
                "the GatewayClass's parameters do not allow namespace {ns} (namespaceSelector)"
            ),
        )
    } else if let Some(field) = g.spec.other.keys().find(|k| k.as_str() != "infrastructure") {
        (
            false,
            "UnsupportedValue",
            format!("spec.{field} is not supported by clb-ingress"),
        )
    } else if listeners.is_empty() || listeners.iter().all(|l| !l.usable()) {
        (
            false,
            "ListenersNotValid",
            "no listener is valid".to_string(),
        )
    } else if listeners.iter().any(|l| !l.usable()) {
        (
            true,
            "ListenersNotValid",
            "some listeners are not valid (see their conditions); the others are served"
                .to_string(),
        )
    } else {
        (true, "Accepted", "accepted".to_string())
    };
    GatewayCtx {
        gw: g,
        ns,
        name,
        generation,
        params,
        accepted,
        listeners,
        entries: Vec::new(),
        actions: Vec::new(),
    }
}

/// The certificate of an HTTPS listener, or (condition reason, message).
fn check_tls(
    index: &Index<'_>,
    l: &gwapi::Listener,
    ns: &str,
    gkey: &ObjectRef,
    li: usize,
) -> Result<CertSource, (&'static str, String)> {
    let Some(tls) = &l.tls else {
        return Err((
            "UnsupportedValue",
            "an HTTPS listener needs tls.certificateRefs".into(),
        ));
    };
    if tls.mode.as_deref().is_some_and(|m| m != "Terminate") {
        return Err((
            "UnsupportedValue",
            format!(
                "tls.mode {:?}: CLB terminates TLS on HTTPS listeners (Terminate)",
                tls.mode.as_deref().unwrap_or("")
            ),
        ));
    }
    if !tls.options.is_empty() {
        return Err((
            "UnsupportedValue",
            format!(
                "tls.options {:?} are not supported",
                tls.options.keys().collect::<Vec<_>>()
            ),
        ));
    }
    let Some(r) = tls.certificate_refs.first() else {
        return Err((
            "InvalidCertificateRef",
            "tls.certificateRefs is empty".into(),
        ));
    };
    if tls.certificate_refs.len() > 1 {
        return Err((
            "InvalidCertificateRef",
            "CLB serves one certificate per domain: give exactly one certificateRef".into(),
        ));
    }
    if !r.group.as_deref().unwrap_or("").is_empty()
        || r.kind.as_deref().unwrap_or("Secret") != "Secret"
    {
        return Err((
            "InvalidCertificateRef",
            format!(
                "certificateRefs[0] must be a core Secret (got {}.{})",
                r.kind.as_deref().unwrap_or(""),
                r.group.as_deref().unwrap_or("")
            ),
        ));
    }
    let sns = r.namespace.as_deref().unwrap_or(ns);
    if sns != ns
        && !gwapi::reference_granted(
            &index.snap.reference_grants,
            (gwapi::GROUP, KIND_GATEWAY, ns),
            ("", "Secret", sns, &r.name),
        )
    {
        return Err((
            "RefNotPermitted",
            format!(
                "Secret {sns}/{} is in another namespace and no ReferenceGrant there allows this Gateway to use it",
                r.name
            ),
        ));
    }
    let field = format!("spec.listeners[{li}].tls.certificateRefs[0]");
    index
        .certificate_from_secret(sns, &r.name, gkey, &field)
        .map_err(|p| ("InvalidCertificateRef", p.message))
}

/// Does listener `l` of the Gateway in `gw_ns` admit a route of this kind and namespace?
fn admits(
    index: &Index<'_>,
    l: &ListenerCtx<'_>,
    gw_ns: &str,
    (kind, route_ns): (&str, &str),
) -> bool {
    let kind_ok = l.supported.iter().any(|k| k.kind == kind);
    let ns_ok = match l.allowed.and_then(|a| a.namespaces.as_ref()) {
        None => route_ns == gw_ns,
        Some(n) => match n.from.as_deref().unwrap_or("Same") {
            "All" => true,
            "Selector" => n
                .selector
                .as_ref()
                .is_some_and(|s| index.selector_matches_namespace(s, route_ns)),
            _ => route_ns == gw_ns,
        },
    };
    kind_ok && ns_ok
}

/// The route's default rule when `rules` is absent (the API server's default).
fn default_rules() -> Vec<gwapi::HttpRouteRule> {
    vec![gwapi::HttpRouteRule::default()]
}

/// A route of either kind, as `attach_routes` reads it.
struct RouteIn<'a> {
    kind: &'static str,
    meta: &'a ObjectMeta,
    parent_refs: &'a [gwapi::ParentReference],
    hostnames: &'a [String],
    rules: Vec<RuleIn<'a>>,
}

/// One rule of a route: its HTTPRoute form (redirects depend on the listeners) or its gRPC
/// path matches, checked once.
struct RuleIn<'a> {
    name: Option<&'a str>,
    backend_refs: &'a [gwapi::BackendRef],
    form: RuleForm<'a>,
}

enum RuleForm<'a> {
    Http(&'a gwapi::HttpRouteRule),
    Grpc(Result<Vec<PathMatch>, String>),
}

/// One path match of a rule, in the form `Entry` keeps.
struct PathMatch {
    kind: PathKind,
    key: String,
    written: usize,
    bare: bool,
}

impl<'a> RouteIn<'a> {
    fn http(r: &'a gwapi::HttpRoute, defaults: &'a [gwapi::HttpRouteRule]) -> Self {
        RouteIn {
            kind: KIND_HTTP_ROUTE,
            meta: &r.metadata,
            parent_refs: &r.spec.parent_refs,
            hostnames: &r.spec.hostnames,
            rules: r
                .spec
                .rules
                .as_deref()
                .unwrap_or(defaults)
                .iter()
                .map(|rule| RuleIn {
                    name: rule.name.as_deref(),
                    backend_refs: &rule.backend_refs,
                    form: RuleForm::Http(rule),
                })
                .collect(),
        }
    }

    fn grpc(r: &'a gwapi::GrpcRoute) -> Self {
        // An absent rules list matches every gRPC request of the hostnames.
        static NO_RULES: [gwapi::GrpcRouteRule; 1] = [gwapi::GrpcRouteRule {
            name: None,
            matches: Vec::new(),
            filters: Vec::new(),
            backend_refs: Vec::new(),
            other: BTreeMap::new(),
        }];
        let rules = if r.spec.rules.is_empty() {
            &NO_RULES[..]
        } else {
            &r.spec.rules[..]
        };
        RouteIn {
            kind: KIND_GRPC_ROUTE,
            meta: &r.metadata,
            parent_refs: &r.spec.parent_refs,
            hostnames: &r.spec.hostnames,
            rules: rules
                .iter()
                .map(|rule| RuleIn {
                    name: rule.name.as_deref(),
                    backend_refs: &rule.backend_refs,
                    form: RuleForm::Grpc(grpc_matches(rule)),
                })
                .collect(),
        }
    }
}

/// Is `s` a gRPC service name as GRPCRoute allows it (`^(?i)\.?[a-z_][a-z_0-9]*(\.[a-z_][a-z_0-9]*)*$`)?
fn valid_grpc_service(s: &str) -> bool {
    let s = s.strip_prefix('.').unwrap_or(s);
    !s.is_empty() && s.split('.').all(valid_grpc_ident)
}

/// Is `s` an identifier (`^[A-Za-z_][A-Za-z_0-9]*$`), as gRPC method names are?
fn valid_grpc_ident(s: &str) -> bool {
    let mut b = s.bytes();
    b.next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == b'_')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_')
}

/// The CLB path matches of a GRPCRoute rule: `service` + `method` is the exact path
/// `/service/method`, `service` alone the paths under `/service/` (never `/service` itself),
/// no method match every path. What CLB cannot express is refused with the field named.
fn grpc_matches(rule: &gwapi::GrpcRouteRule) -> Result<Vec<PathMatch>, String> {
    if let Some(field) = rule.other.keys().next() {
        return Err(format!("{field} is not supported by clb-ingress"));
    }
    if let Some((fi, f)) = rule.filters.iter().enumerate().next() {
        let ty = f.get("type").and_then(Value::as_str).unwrap_or("");
        return Err(format!(
            "filters[{fi}]: {ty} is not supported (CLB cannot change headers or mirror requests)"
        ));
    }
    for (bi, b) in rule.backend_refs.iter().enumerate() {
        if !b.filters.is_empty() {
            return Err(format!("backendRefs[{bi}].filters are not supported"));
        }
    }
    let all = || PathMatch {
        kind: PathKind::Prefix,
        key: String::new(),
        written: 1,
        bare: true,
    };
    if rule.matches.is_empty() {
        return Ok(vec![all()]);
    }
    let mut out = Vec::new();
    for (mi, m) in rule.matches.iter().enumerate() {
        if !m.headers.is_empty() {
            return Err(format!(
                "matches[{mi}].headers: CLB cannot match on request headers (gRPC metadata)"
            ));
        }
        let Some(mm) = &m.method else {
            out.push(all());
            continue;
        };
        match mm.type_.as_deref().unwrap_or("Exact") {
            "Exact" => {}
            "RegularExpression" => {
                return Err(format!(
                    "matches[{mi}].method: RegularExpression is not supported (CLB matches gRPC paths by exact URL or prefix only)"
                ));
            }
            other => return Err(format!("matches[{mi}].method.type {other:?} is not known")),
        }
        let service = mm.service.as_deref().filter(|s| !s.is_empty());
        let method = mm.method.as_deref().filter(|s| !s.is_empty());
        if let Some(s) = service.filter(|s| !valid_grpc_service(s)) {
            return Err(format!(
                "matches[{mi}].method.service {s:?} is not a gRPC service name"
            ));
        }
        if let Some(x) = method.filter(|x| !valid_grpc_ident(x)) {
            return Err(format!(
                "matches[{mi}].method.method {x:?} is not a gRPC method name"
            ));
        }
        let (kind, path) = match (service, method) {
            (Some(s), Some(x)) => (PathKind::Exact, format!("/{s}/{x}")),
            (Some(s), None) => (PathKind::Prefix, format!("/{s}")),
            (None, Some(_)) => {
                return Err(format!(
                    "matches[{mi}].method: a method without a service matches /*/Method, which CLB's exact and prefix URLs cannot express"
                ));
            }
            (None, None) => {
                return Err(format!(
                    "matches[{mi}].method: one or both of service and method must be set"
                ));
            }
        };
        if let Err(SyntaxProblem::Path(e) | SyntaxProblem::Host(e)) =
            translate::clb_urls(&format!("{path}/"), kind)
        {
            return Err(format!("matches[{mi}].method: {e}"));
        }
        out.push(PathMatch {
            kind,
            written: path.len(),
            key: path,
            bare: kind == PathKind::Exact,
        });
    }
    Ok(out)
}

/// The path matches of an HTTPRoute rule (checked by `check_rule`).
fn http_matches(rule: &gwapi::HttpRouteRule) -> Vec<PathMatch> {
    let defaults = [gwapi::HttpRouteMatch::default()];
    let matches = if rule.matches.is_empty() {
        &defaults[..]
    } else {
        &rule.matches[..]
    };
    matches
        .iter()
        .map(|m| {
            let (kind, path) = path_of(m);
            let key = match kind {
                PathKind::Exact => path.to_string(),
                PathKind::Prefix => translate::prefix_key(path).to_string(),
            };
            PathMatch {
                kind,
                key,
                written: path.len(),
                bare: true,
            }
        })
        .collect()
}

/// Attach every HTTPRoute and GRPCRoute to the listeners of its parents and write the route
/// statuses. Routes go oldest first: on a listener, a route whose hostnames meet those of an
/// older route of the other kind is not attached there (Gateway API: exactly one of them).
fn attach_routes(index: &Index<'_>, ctxs: &mut [GatewayCtx<'_>], out: &mut GatewayBuild) {
    let snap = index.snap;
    let defaults = default_rules();
    let mut routes: Vec<RouteIn<'_>> = snap
        .http_routes
        .iter()
        .map(|r| RouteIn::http(r, &defaults))
        .chain(snap.grpc_routes.iter().map(RouteIn::grpc))
        .collect();
    routes.sort_by(|a, b| age_order(a.meta, b.meta).then(a.kind.cmp(b.kind)));
    // (gateway index, listener, route kind) -> hostnames attached so far.
    let mut taken: BTreeMap<(usize, usize, &'static str), Vec<HostPattern>> = BTreeMap::new();
    for (rank, route) in routes.iter().enumerate() {
        let (rns, rname) = meta_name(route.meta);
        let rkey = ObjectRef::namespaced(route.kind, rns, rname);
        let generation = route.meta.generation;
        let other_kind = if route.kind == KIND_HTTP_ROUTE {
            KIND_GRPC_ROUTE
        } else {
            KIND_HTTP_ROUTE
        };
        let mut parents = Vec::new();
        // Route hostnames that are not valid names are ignored with a message.
        let mut host_problems = Vec::new();
        let route_hosts: Vec<HostPattern> = route
            .hostnames
            .iter()
            .filter(|h| match gwapi::hosts::check_hostname(h) {
                Ok(()) => true,
                Err(m) => {
                    host_problems.push(m);
                    false
                }
            })
            .map(|h| HostPattern::of(Some(h)))
            .collect();
        for m in &host_problems {
            out.problems.push(Problem {
                object: rkey.clone(),
                field: "spec.hostnames".into(),
                reason: Reason::InvalidHost,
                effect: Effect::HostParked,
                message: format!("{m}; this hostname is ignored"),
            });
        }
        for (pi, pref) in route.parent_refs.iter().enumerate() {
            if !names_a_gateway(pref) {
                continue;
            }
            let pns = pref.namespace.as_deref().unwrap_or(rns);
            let Some(gi) = ctxs.iter().position(|c| c.ns == pns && c.name == pref.name) else {
                continue;
            };
            let ctx = &mut ctxs[gi];
            let cond = |t, ok, r, m: String| Condition::new(t, ok, r, m, generation);
            let mut conditions = Vec::new();
            let candidates: Vec<usize> = (0..ctx.listeners.len())
                .filter(|&i| {
                    let l = &ctx.listeners[i];
                    pref.section_name.as_deref().is_none_or(|s| s == l.name)
                        && pref.port.is_none_or(|p| p == i32::from(l.port))
                })
                .collect();
            // (listener, effective hostnames)
            let mut attached: Vec<(usize, Vec<HostPattern>)> = Vec::new();
            let mut clashes = 0usize;
            let accepted = if !ctx.accepted.0 {
                Err((
                    "NoMatchingParent",
                    format!(
                        "Gateway {pns}/{} is not accepted: {}",
                        pref.name, ctx.accepted.2
                    ),
                ))
            } else if candidates.is_empty() {
                Err((
                    "NoMatchingParent",
                    "the parentRef's sectionName/port names no listener of the Gateway".to_string(),
                ))
            } else {
                let allowed: Vec<usize> = candidates
                    .iter()
                    .copied()
                    .filter(|&i| {
                        ctx.listeners[i].usable()
                            && admits(index, &ctx.listeners[i], ctx.ns, (route.kind, rns))
                    })
                    .collect();
                if allowed.is_empty() {
                    let why = if route.kind == KIND_GRPC_ROUTE
                        && !candidates.iter().any(|&i| {
                            ctx.listeners[i].protocol == Protocol::Https
                                && ctx.listeners[i].usable()
                        }) {
                        "; no valid HTTPS listener is named, and CLB forwards gRPC on HTTPS listeners only"
                    } else {
                        ""
                    };
                    Err((
                        "NotAllowedByListeners",
                        format!(
                            "no valid listener of Gateway {pns}/{} allows {}s from namespace {rns} (allowedRoutes, supportedKinds){why}",
                            pref.name, route.kind
                        ),
                    ))
                } else {
                    for i in allowed {
                        let lp = &ctx.listeners[i].pattern;
                        let mut hosts: Vec<HostPattern> = if route.hostnames.is_empty() {
                            vec![lp.clone()]
                        } else {
                            route_hosts.iter().filter_map(|h| lp.intersect(h)).collect()
                        };
                        hosts.sort();
                        hosts.dedup();
                        if hosts.is_empty() {
                            continue;
                        }
                        let clash = taken
                            .get(&(gi, i, other_kind))
                            .is_some_and(|o| hosts.iter().any(|h| o.iter().any(|x| meets(h, x))));
                        if clash {
                            clashes += 1;
                        } else {
                            attached.push((i, hosts));
                        }
                    }
                    if !attached.is_empty() {
                        Ok(())
                    } else if clashes > 0 {
                        Err((
                            "NotAllowedByListeners",
                            format!(
                                "an older {other_kind} on the same listener serves a hostname this route shares; Gateway API accepts only the older route of the two kinds"
                            ),
                        ))
                    } else {
                        Err((
                            "NoMatchingListenerHostname",
                            "no hostname of the route matches a listener's hostname".to_string(),
                        ))
                    }
                }
            };
            let field = format!("spec.parentRefs[{pi}]");
            if let Err((reason, message)) = accepted {
                out.problems.push(Problem {
                    object: rkey.clone(),
                    field,
                    reason: match reason {
                        "NotAllowedByListeners" => Reason::NotAllowedByListeners,
                        "NoMatchingListenerHostname" => Reason::NoMatchingListenerHostname,
                        _ => Reason::NoMatchingParent,
                    },
                    effect: Effect::Parked,
                    message: message.clone(),
                });
                conditions.push(cond("Accepted", false, reason, message));
                conditions.push(cond(
                    "ResolvedRefs",
                    true,
                    "ResolvedRefs",
                    "all references resolved".into(),
                ));
                parents.push(RouteParentStatus {
                    parent_ref: pref.clone(),
                    controller_name: snap.gateway_controller_name.clone(),
                    conditions,
                });
                continue;
            }
            for (i, hosts) in &attached {
                ctx.listeners[*i].attached += 1;
                taken
                    .entry((gi, *i, route.kind))
                    .or_default()
                    .extend(hosts.iter().cloned());
            }
            // Rules.
            let mut dropped: Vec<String> = Vec::new();
            let mut unresolved: Option<(&'static str, String)> = None;
            let mut kept = 0usize;
            let mode = ctx.params.map(|p| p.target_mode).unwrap_or_default();
            for (ri, rule) in route.rules.iter().enumerate() {
                let rule_field = format!("spec.rules[{ri}]");
                let name = rule.name.map(|n| format!(" ({n})")).unwrap_or_default();
                let listeners_of_rule: Vec<&(usize, Vec<HostPattern>)> = attached.iter().collect();
                let checked = match &rule.form {
                    RuleForm::Http(r) => check_rule(r, &listeners_of_rule, &ctx.listeners)
                        .map(|redirect| (redirect, http_matches(r))),
                    RuleForm::Grpc(m) => m.as_ref().map_err(Clone::clone).map(|m| {
                        let m = m
                            .iter()
                            .map(|p| PathMatch {
                                kind: p.kind,
                                key: p.key.clone(),
                                written: p.written,
                                bare: p.bare,
                            })
                            .collect();
                        (None, m)
                    }),
                };
                let (redirect, matches) = match checked {
                    Err(why) => {
                        out.problems.push(Problem {
                            object: rkey.clone(),
                            field: rule_field.clone(),
                            reason: Reason::UnsupportedValue,
                            effect: Effect::Parked,
                            message: format!("rule dropped: {why}"),
                        });
                        dropped.push(format!("rules[{ri}]{name}: {why}"));
                        continue;
                    }
                    Ok(x) => x,
                };
                kept += 1;
                let action = match redirect {
                    Some(r) => r,
                    None => {
                        let from = (route.kind, rns, &rkey);
                        let (a, bad) = forward(index, rule.backend_refs, from, &rule_field, mode);
                        for p in bad {
                            if unresolved.is_none() {
                                unresolved = Some((p.0, p.1.clone()));
                            }
                            out.problems.push(Problem {
                                object: rkey.clone(),
                                field: p.2,
                                reason: p.3,
                                effect: Effect::PathUnserved,
                                message: p.1,
                            });
                        }
                        a
                    }
                };
                ctx.actions.push(action);
                let ai = ctx.actions.len() - 1;
                for (mi, m) in matches.into_iter().enumerate() {
                    for (li, hosts) in &attached {
                        for h in hosts {
                            ctx.entries.push(Entry {
                                listener: *li,
                                host: h.clone(),
                                kind: m.kind,
                                key: m.key.clone(),
                                written: m.written,
                                bare: m.bare,
                                rank: (rank, ri, mi),
                                action: ai,
                            });
                        }
                    }
                }
            }
            let accepted_msg = if host_problems.is_empty() {
                "accepted".to_string()
            } else {
                format!("accepted; ignored hostnames: {}", host_problems.join("; "))
            };
            if kept == 0 {
                conditions.push(cond(
                    "Accepted",
                    false,
                    "UnsupportedValue",
                    format!("every rule is dropped: {}", dropped.join("; ")),
                ));
            } else {
                conditions.push(cond("Accepted", true, "Accepted", accepted_msg));
            }
            conditions.push(match &unresolved {
                None => cond(
                    "ResolvedRefs",
                    true,
                    "ResolvedRefs",
                    "all references resolved".into(),
                ),
                Some((r, m)) => cond("ResolvedRefs", false, r, m.clone()),
            });
            if kept > 0 && !dropped.is_empty() {
                conditions.push(cond(
                    "PartiallyInvalid",
                    true,
                    "UnsupportedValue",
                    format!("Dropped Rule(s): {}", dropped.join("; ")),
                ));
            }
            parents.push(RouteParentStatus {
                parent_ref: pref.clone(),
                controller_name: snap.gateway_controller_name.clone(),
                conditions,
            });
        }
        if !parents.is_empty() {
            out.status.routes.push(RouteStatus {
                kind: route.kind,
                namespace: rns.to_string(),
                name: rname.to_string(),
                parents,
            });
        }
    }
}

/// Do two hostname patterns have a hostname in common?
fn meets(a: &HostPattern, b: &HostPattern) -> bool {
    a.intersect(b).is_some()
}

/// Is this parentRef a Gateway (the only parent kind clb-ingress serves)?
fn names_a_gateway(pref: &gwapi::ParentReference) -> bool {
    pref.group.as_deref().unwrap_or(gwapi::GROUP) == gwapi::GROUP
        && pref.kind.as_deref().unwrap_or(KIND_GATEWAY) == KIND_GATEWAY
}

/// The path match of a route match (absent: `PathPrefix /`).
fn path_of(m: &gwapi::HttpRouteMatch) -> (PathKind, &str) {
    let value = m
        .path
        .as_ref()
        .and_then(|p| p.value.as_deref())
        .unwrap_or("/");
    match m.path.as_ref().and_then(|p| p.type_.as_deref()) {
        Some("Exact") => (PathKind::Exact, value),
        _ => (PathKind::Prefix, value),
    }
}

/// Can CLB express this rule on these listeners? Ok(Some) for a redirect rule.
fn check_rule(
    rule: &gwapi::HttpRouteRule,
    attached: &[&(usize, Vec<HostPattern>)],
    listeners: &[ListenerCtx<'_>],
) -> Result<Option<Action>, String> {
    if let Some(field) = rule.other.keys().next() {
        return Err(format!("{field} is not supported by clb-ingress"));
    }
    for (mi, m) in rule.matches.iter().enumerate() {
        if !m.headers.is_empty() {
            return Err(format!(
                "matches[{mi}].headers: CLB cannot match on request headers"
            ));
        }
        if !m.query_params.is_empty() {
            return Err(format!(
                "matches[{mi}].queryParams: CLB cannot match on query parameters"
            ));
        }
        if m.method.is_some() {
            return Err(format!(
                "matches[{mi}].method: CLB cannot match on the request method"
            ));
        }
        let ty = m
            .path
            .as_ref()
            .and_then(|p| p.type_.as_deref())
            .unwrap_or("PathPrefix");
        let (kind, path) = path_of(m);
        match ty {
            "Exact" | "PathPrefix" => {}
            "RegularExpression" => {
                return Err(format!(
                    "matches[{mi}].path: RegularExpression paths are not supported (CLB regexes are nginx regexes with a different meaning and precedence)"
                ));
            }
            other => return Err(format!("matches[{mi}].path.type {other:?} is not known")),
        }
        if let Err(SyntaxProblem::Path(m) | SyntaxProblem::Host(m)) =
            translate::clb_urls(path, kind)
        {
            return Err(format!("matches[{mi}].path: {m}"));
        }
    }
    let mut redirect = None;
    for (fi, f) in rule.filters.iter().enumerate() {
        match f.type_.as_str() {
            "RequestRedirect" => {
                let r = f.request_redirect.clone().unwrap_or_default();
                let code = r.status_code.unwrap_or(i32::from(DEFAULT_REDIRECT_CODE));
                if r.scheme.as_deref() != Some("https") {
                    return Err(format!(
                        "filters[{fi}].requestRedirect: CLB redirects only to one of its HTTPS listeners (set scheme: https)"
                    ));
                }
                if r.hostname.is_some() || r.path.is_some() {
                    return Err(format!(
                        "filters[{fi}].requestRedirect: CLB redirects keep the host and path; hostname and path cannot be changed"
                    ));
                }
                if !REDIRECT_CODES.contains(&code) {
                    return Err(format!(
                        "filters[{fi}].requestRedirect.statusCode {code} is not 301 or 302"
                    ));
                }
                let port = r.port.unwrap_or(i32::from(DEFAULT_HTTPS_PORT));
                for (li, hosts) in attached {
                    let l = &listeners[*li];
                    if l.protocol != Protocol::Http {
                        return Err(format!(
                            "filters[{fi}].requestRedirect: CLB redirects from HTTP listeners only (listener {:?} is HTTPS)",
                            l.name
                        ));
                    }
                    for h in hosts {
                        let served = listeners.iter().any(|t| {
                            t.protocol == Protocol::Https
                                && i32::from(t.port) == port
                                && t.usable()
                                && t.pattern.covers(h)
                        });
                        if !served {
                            return Err(format!(
                                "filters[{fi}].requestRedirect: no valid HTTPS listener on port {port} of this Gateway serves hostname {h}"
                            ));
                        }
                    }
                }
                redirect = Some(Action::Redirect {
                    https_port: u16::try_from(port).unwrap_or(DEFAULT_HTTPS_PORT),
                    code: u16::try_from(code).unwrap_or(DEFAULT_REDIRECT_CODE),
                });
            }
            "RequestHeaderModifier" | "ResponseHeaderModifier" => {
                return Err(format!(
                    "filters[{fi}]: {} is not supported (CLB cannot change headers)",
                    f.type_
                ));
            }
            "URLRewrite" => {
                return Err(format!(
                    "filters[{fi}]: URLRewrite is not supported (CLB forwards the path unchanged)"
                ));
            }
            "RequestMirror" => {
                return Err(format!(
                    "filters[{fi}]: RequestMirror is not supported (CLB cannot mirror requests)"
                ));
            }
            other => return Err(format!("filters[{fi}]: {other} is not supported")),
        }
    }
    for (bi, b) in rule.backend_refs.iter().enumerate() {
        if !b.filters.is_empty() {
            return Err(format!("backendRefs[{bi}].filters are not supported"));
        }
    }
    Ok(redirect)
}

/// (status reason, message, field, problem reason) of a backendRef that cannot be resolved.
type BadRef = (&'static str, String, String, Reason);

/// The targets of a rule's backendRefs, weighted as Gateway API says: each backend gets its
/// weight's share of the rule's requests, split over its targets by their own weights. A rule
/// with an unresolvable backendRef serves no target at all (its share cannot be answered with
/// an error on CLB, and giving it to the other backends would send traffic they were not given).
fn forward(
    index: &Index<'_>,
    backend_refs: &[gwapi::BackendRef],
    (route_kind, rns, rkey): (&'static str, &str, &ObjectRef),
    field: &str,
    mode: TargetMode,
) -> (Action, Vec<BadRef>) {
    let mut bad = Vec::new();
    let mut parts: Vec<(u32, Resolved)> = Vec::new();
    let grpc = route_kind == KIND_GRPC_ROUTE;
    for (bi, b) in backend_refs.iter().enumerate() {
        let bfield = format!("{field}.backendRefs[{bi}]");
        let weight = u32::try_from(b.weight.unwrap_or(1)).unwrap_or(0);
        if !b.group.as_deref().unwrap_or("").is_empty()
            || b.kind.as_deref().unwrap_or("Service") != "Service"
        {
            bad.push((
                "InvalidKind",
                format!(
                    "{bfield}: {}.{} is not supported; only Services",
                    b.kind.as_deref().unwrap_or(""),
                    b.group.as_deref().unwrap_or("")
                ),
                bfield,
                Reason::InvalidKind,
            ));
            continue;
        }
        let bns = b.namespace.as_deref().unwrap_or(rns);
        if bns != rns
            && !gwapi::reference_granted(
                &index.snap.reference_grants,
                (gwapi::GROUP, route_kind, rns),
                ("", "Service", bns, &b.name),
            )
        {
            bad.push(("RefNotPermitted", format!("{bfield}: Service {bns}/{} is in another namespace and no ReferenceGrant there allows this route to use it", b.name), bfield, Reason::RefNotPermitted));
            continue;
        }
        let Some(port) = b.port else {
            bad.push((
                "UnsupportedValue",
                format!("{bfield}.port is required for a Service"),
                bfield,
                Reason::ServicePortNotFound,
            ));
            continue;
        };
        let ib = IngressBackend {
            service: Some(k8s_openapi::api::networking::v1::IngressServiceBackend {
                name: b.name.clone(),
                port: Some(k8s_openapi::api::networking::v1::ServiceBackendPort {
                    number: Some(port),
                    name: None,
                }),
            }),
            resource: None,
        };
        match index.resolve_backend(
            bns,
            &ib,
            mode,
            Weights::DEFAULT,
            BackendField::Default,
            rkey,
        ) {
            Ok(r) => parts.push((weight, r)),
            Err(p) => {
                let reason = match p.reason {
                    Reason::UnsupportedProtocol => "UnsupportedProtocol",
                    _ => "BackendNotFound",
                };
                bad.push((reason, format!("{bfield}: {}", p.message), bfield, p.reason));
            }
        }
    }
    if !bad.is_empty() || parts.is_empty() {
        return (
            Action::Forward {
                backend: None,
                targets: Vec::new(),
                grpc,
            },
            bad,
        );
    }
    (weighted(parts, grpc), bad)
}

/// Combine weighted backends into one target list with CLB weights (0-100).
fn weighted(parts: Vec<(u32, Resolved)>, grpc: bool) -> Action {
    let backend = parts
        .iter()
        .filter(|(w, _)| *w > 0)
        .max_by_key(|(w, _)| *w)
        .map(|(_, r)| r.backend.clone());
    if parts.len() == 1 {
        let (w, r) = parts.into_iter().next().expect("one part");
        let targets = if w == 0 {
            r.targets
                .into_iter()
                .map(|t| Target { weight: 0, ..t })
                .collect()
        } else {
            r.targets
        };
        return Action::Forward {
            backend,
            targets,
            grpc,
        };
    }
    // Each target's share of the rule's requests: weight / total * own / sum of own.
    let total: f64 = parts.iter().map(|(w, _)| f64::from(*w)).sum();
    let mut raw: Vec<(TargetAddr, u16, f64)> = Vec::new();
    for (w, r) in &parts {
        let own: f64 = r.targets.iter().map(|t| f64::from(t.weight)).sum();
        for t in &r.targets {
            let share = if total > 0.0 && own > 0.0 {
                f64::from(*w) / total * f64::from(t.weight) / own
            } else {
                0.0
            };
            match raw
                .iter_mut()
                .find(|(a, p, _)| *a == t.addr && *p == t.port)
            {
                Some(x) => x.2 += share,
                None => raw.push((t.addr.clone(), t.port, share)),
            }
        }
    }
    let max = raw.iter().map(|x| x.2).fold(0.0, f64::max);
    let mut targets: Vec<Target> = raw
        .into_iter()
        .map(|(addr, port, share)| {
            let weight = if max > 0.0 && share > 0.0 {
                ((share / max * f64::from(MAX_WEIGHT)).round() as u32).clamp(1, MAX_WEIGHT)
            } else {
                0
            };
            Target { addr, port, weight }
        })
        .collect();
    targets.sort_unstable();
    Action::Forward {
        backend,
        targets,
        grpc,
    }
}

/// The CLB domain of a hostname pattern (`regex`: a wildcard containing another one).
fn domain_of(p: &HostPattern, regex: bool, catch_all: &str) -> String {
    match p {
        HostPattern::Any => catch_all.to_string(),
        HostPattern::Exact(h) => h.clone(),
        HostPattern::Wildcard(s) if regex => translate::deep_wildcard_domain(s),
        HostPattern::Wildcard(s) => format!("*.{s}"),
    }
}

/// Layered resolution: the answer for `path` from the most specific layer that matches it.
fn resolve(layers: &[Vec<&Entry>], path: &str) -> Option<usize> {
    for layer in layers {
        if let Some(e) = layer
            .iter()
            .filter(|e| e.kind == PathKind::Exact && e.key == path)
            .min_by_key(|e| e.rank)
        {
            return Some(e.action);
        }
        let best = layer
            .iter()
            .filter(|e| {
                e.kind == PathKind::Prefix
                    && (e.key.is_empty()
                        || (e.bare && path == e.key)
                        || (path.len() > e.key.len()
                            && path.starts_with(e.key.as_str())
                            && path.as_bytes()[e.key.len()] == b'/'))
            })
            .min_by(|a, b| {
                (b.key.len(), b.written)
                    .cmp(&(a.key.len(), a.written))
                    .then(a.rank.cmp(&b.rank))
            });
        if let Some(e) = best {
            return Some(e.action);
        }
    }
    None
}

/// The CLB URLs of a domain and the answer each carries.
fn domain_rules(layers: &[Vec<&Entry>], extra: &[String]) -> Vec<(String, Option<usize>)> {
    let mut urls: Vec<String> = extra.to_vec();
    for e in layers.iter().flatten() {
        match e.kind {
            PathKind::Exact => {
                urls.push(format!("={}", e.key));
                // A request without the trailing slash must not get CLB's 301 from a
                // neighbouring prefix rule; give it its own answer.
                if e.key.len() > 1
                    && e.key.ends_with('/')
                    && !e.key[..e.key.len() - 1].ends_with('/')
                {
                    urls.push(format!("={}", &e.key[..e.key.len() - 1]));
                }
            }
            PathKind::Prefix if e.key.is_empty() => urls.push("/".to_string()),
            PathKind::Prefix => {
                urls.push(format!("={}", e.key));
                urls.push(format!("{}/", e.key));
            }
        }
    }
    urls.sort();
    urls.dedup();
    urls.into_iter()
        .map(|u| {
            // The requests CLB sends to a prefix URL `p/` are `p/...` not claimed by a longer
            // URL; `\0` stands for a segment no rule names.
            let probe = match u.strip_prefix('=') {
                Some(exact) => exact.to_string(),
                None => format!("{u}\0"),
            };
            let answer = resolve(layers, &probe);
            (u, answer)
        })
        .collect()
}

/// Build one Gateway's CLB stack.
fn stack_of(index: &Index<'_>, ctx: GatewayCtx<'_>) -> (Option<DesiredLb>, Vec<Problem>) {
    let snap = index.snap;
    let mut problems = Vec::new();
    let gkey = ObjectRef::namespaced(KIND_GATEWAY, ctx.ns, ctx.name);
    let id = StackId::Gateway {
        namespace: ctx.ns.to_string(),
        name: ctx.name.to_string(),
    };
    let catch_all = ctx
        .params
        .and_then(|p| p.catch_all_domain.as_deref())
        .unwrap_or(translate::CATCH_ALL_DOMAIN);
    // Gateway API sends a request to the most specific listener hostname that matches it, and
    // to that listener's routes only. A listener whose hostname lies inside another's on the
    // same CLB listener therefore claims its hosts with a domain of its own, routes or not.
    let claims: Vec<(usize, HostPattern)> = ctx
        .listeners
        .iter()
        .enumerate()
        .filter(|(i, l)| {
            l.usable()
                && ctx.listeners.iter().enumerate().any(|(j, o)| {
                    j != *i
                        && o.usable()
                        && (o.port, o.protocol) == (l.port, l.protocol)
                        && o.pattern != l.pattern
                        && o.pattern.covers(&l.pattern)
                })
        })
        .map(|(i, l)| (i, l.pattern.clone()))
        .collect();
    // Wildcards that contain another wildcard of this Gateway become regex domains; a regex
    // that contains another regex could not be ordered on CLB: its hostname is left out.
    let mut wildcards: Vec<&HostPattern> = ctx
        .entries
        .iter()
        .map(|e| &e.host)
        .chain(claims.iter().map(|(_, p)| p))
        .filter(|h| matches!(h, HostPattern::Wildcard(_)))
        .collect();
    wildcards.sort();
    wildcards.dedup();
    let outer = |w: &HostPattern| wildcards.iter().any(|o| *o != w && w.covers(o));
    let regex: Vec<HostPattern> = wildcards
        .iter()
        .filter(|w| outer(w))
        .map(|w| (*w).clone())
        .collect();
    let too_deep: Vec<HostPattern> = regex
        .iter()
        .filter(|w| regex.iter().any(|o| o != *w && w.covers(o)))
        .cloned()
        .collect();
    for h in &too_deep {
        problems.push(Problem {
            object: gkey.clone(),
            field: "spec.listeners".into(),
            reason: Reason::InvalidHost,
            effect: Effect::HostParked,
            message: format!(
                "hostname {h} contains two nested wildcard hostnames of this Gateway; CLB cannot order its wildcard domains that deep, so {h} is not served"
            ),
        });
    }
    // A hostname whose CLB domain is longer than CLB allows is left out, with a problem.
    let mut too_long: Vec<&HostPattern> = ctx
        .entries
        .iter()
        .map(|e| &e.host)
        .chain(claims.iter().map(|(_, p)| p))
        .filter(|h| domain_of(h, regex.contains(h), catch_all).len() > translate::MAX_DOMAIN_LEN)
        .collect();
    too_long.sort();
    too_long.dedup();
    for h in &too_long {
        let domain = domain_of(h, regex.contains(h), catch_all);
        problems.push(Problem {
            object: gkey.clone(),
            field: "spec.listeners".into(),
            reason: Reason::InvalidHost,
            effect: Effect::HostParked,
            message: format!(
                "hostname {h} needs the CLB domain {domain:?} of {} characters; CLB allows at most {}, so {h} is not served",
                domain.len(),
                translate::MAX_DOMAIN_LEN
            ),
        });
    }
    let entries: Vec<&Entry> = ctx
        .entries
        .iter()
        .filter(|e| !too_deep.contains(&e.host) && !too_long.contains(&&e.host))
        .collect();
    // CLB listeners: (port, protocol) of every usable listener.
    let mut ports: BTreeMap<(u16, Protocol), Vec<usize>> = BTreeMap::new();
    for (i, l) in ctx.listeners.iter().enumerate() {
        if l.usable() {
            ports.entry((l.port, l.protocol)).or_default().push(i);
        }
    }
    if ports.len() > snap.limits.listeners_per_lb {
        problems.push(Problem {
            object: gkey,
            field: "spec.listeners".into(),
            reason: Reason::TooManyListeners,
            effect: Effect::Parked,
            message: format!(
                "the CLB would need {} listeners; at most {} are allowed",
                ports.len(),
                snap.limits.listeners_per_lb
            ),
        });
        return (None, problems);
    }
    let stack_hash = id.hash(&snap.cluster_id);
    let listener_name = crate::model::ids::listener_name(&stack_hash);
    // HTTP listeners first: their redirects name URLs the HTTPS listeners must hold.
    let mut order: Vec<(u16, Protocol)> = ports.keys().copied().collect();
    order.sort_by_key(|(port, proto)| (*proto == Protocol::Https, *port));
    let mut needed: BTreeMap<u16, Vec<(HostPattern, String)>> = BTreeMap::new();
    let mut listeners = Vec::new();
    for (port, proto) in order {
        let members = &ports[&(port, proto)];
        let here: Vec<&Entry> = entries
            .iter()
            .copied()
            .filter(|e| members.contains(&e.listener))
            .collect();
        let extra = needed.remove(&port).unwrap_or_default();
        let mut patterns: Vec<HostPattern> = here
            .iter()
            .map(|e| e.host.clone())
            .chain(extra.iter().map(|(h, _)| h.clone()))
            .chain(
                claims
                    .iter()
                    .filter(|(i, p)| {
                        members.contains(i) && !too_deep.contains(p) && !too_long.contains(&p)
                    })
                    .map(|(_, p)| p.clone()),
            )
            .collect();
        patterns.sort();
        patterns.dedup();
        let mut domains = Vec::new();
        if !patterns.contains(&HostPattern::Any) {
            domains.push(DesiredDomain {
                domain: catch_all.to_string(),
                host: "*".into(),
                default_server: true,
                certificate: (proto == Protocol::Https)
                    .then(|| members.iter().find_map(|&i| ctx.listeners[i].cert.clone()))
                    .flatten(),
                rules: vec![DesiredRule {
                    url: translate::NO_ROUTE_URL.to_string(),
                    backend: None,
                    targets: Vec::new(),
                    redirect: None,
                    settings: Default::default(),
                }],
                http2: None,
                quic: None,
            });
        }
        // Most general first, so the catch-all is the first domain.
        patterns.sort_by(|a, b| a.specificity(b).then_with(|| a.cmp(b)));
        for p in &patterns {
            let mut covering: Vec<&HostPattern> = patterns.iter().filter(|q| q.covers(p)).collect();
            covering.sort_by(|a, b| b.specificity(a));
            // The listener this domain's requests belong to: the most specific one covering it.
            let selected = members
                .iter()
                .copied()
                .filter(|&i| ctx.listeners[i].pattern.covers(p))
                .max_by(|&a, &b| {
                    ctx.listeners[a]
                        .pattern
                        .specificity(&ctx.listeners[b].pattern)
                });
            let layers: Vec<Vec<&Entry>> = covering
                .iter()
                .map(|q| {
                    here.iter()
                        .copied()
                        .filter(|e| &e.host == *q && Some(e.listener) == selected)
                        .collect()
                })
                .collect();
            let extra_urls: Vec<String> = extra
                .iter()
                .filter(|(h, _)| h == p)
                .map(|(_, u)| u.clone())
                .collect();
            let mut rules = domain_rules(&layers, &extra_urls);
            if rules.is_empty() {
                rules.push((translate::NO_ROUTE_URL.to_string(), None));
            }
            let domain = domain_of(p, regex.contains(p), catch_all);
            let rules: Vec<DesiredRule> = rules
                .into_iter()
                .map(|(url, a)| match a.map(|i| &ctx.actions[i]) {
                    Some(Action::Redirect { https_port, code }) => {
                        needed
                            .entry(*https_port)
                            .or_default()
                            .push((p.clone(), url.clone()));
                        DesiredRule {
                            url,
                            backend: None,
                            targets: Vec::new(),
                            redirect: Some(Redirect {
                                https_port: *https_port,
                                code: *code,
                            }),
                            settings: Default::default(),
                        }
                    }
                    Some(Action::Forward {
                        backend,
                        targets,
                        grpc,
                    }) => DesiredRule {
                        url,
                        backend: backend.clone(),
                        targets: targets.clone(),
                        redirect: None,
                        settings: RuleSettings {
                            forward_type: grpc.then(|| FORWARD_GRPC.to_string()),
                            ..Default::default()
                        },
                    },
                    None => DesiredRule {
                        url,
                        backend: None,
                        targets: Vec::new(),
                        redirect: None,
                        settings: Default::default(),
                    },
                })
                .collect();
            let certificate = (proto == Protocol::Https)
                .then(|| {
                    members
                        .iter()
                        .map(|&i| &ctx.listeners[i])
                        .filter(|l| l.pattern.covers(p))
                        .max_by(|a, b| a.pattern.specificity(&b.pattern))
                        .and_then(|l| l.cert.clone())
                })
                .flatten();
            // gRPC rides on HTTP/2: a domain with gRPC rules turns CLB's HTTP/2 on.
            let http2 = rules
                .iter()
                .any(|r| r.settings.forward_type.as_deref() == Some(FORWARD_GRPC))
                .then_some(true);
            domains.push(DesiredDomain {
                domain,
                host: p.to_string(),
                default_server: *p == HostPattern::Any,
                certificate,
                rules,
                http2,
                quic: None,
            });
        }
        let n: usize = domains.iter().map(|d| d.rules.len()).sum();
        if n > snap.limits.rules_per_listener {
            problems.push(Problem {
                object: gkey.clone(),
                field: "spec.listeners".into(),
                reason: Reason::TooManyRules,
                effect: Effect::Parked,
                message: format!(
                    "listener {} {port} would need {n} CLB rules; at most {} are allowed (each PathPrefix takes two): the CLB listener is not served",
                    proto.as_str(),
                    snap.limits.rules_per_listener
                ),
            });
            continue;
        }
        listeners.push(DesiredListener {
            protocol: proto,
            port,
            name: listener_name.clone(),
            sni: proto == Protocol::Https,
            domains,
        });
    }
    // A redirect whose HTTPS listener is not served forwards nothing rather than redirecting
    // to a missing rule.
    let https = https_rule_keys(&listeners);
    for l in listeners
        .iter_mut()
        .filter(|l| l.protocol == Protocol::Http)
    {
        for d in &mut l.domains {
            for r in &mut d.rules {
                if let Some(rd) = r.redirect
                    && !https.contains(&(rd.https_port, d.domain.clone(), r.url.clone()))
                {
                    r.redirect = None;
                }
            }
        }
    }
    listeners.sort_by_key(|l| (l.port, l.protocol));
    let ports_of: Vec<(Protocol, u16)> = listeners.iter().map(|l| (l.protocol, l.port)).collect();
    let lb = DesiredLb {
        stack: id.clone(),
        source: LbSource::Create {
            name: id.clb_name(&snap.cluster_id).unwrap_or_default(),
            settings: ctx.params.map(|p| p.create.clone()).unwrap_or_default(),
        },
        tags: crate::model::ids::stack_tags(&snap.cluster_id, stack_hash),
        listeners,
        members: vec![Member {
            ingress: ObjectRef::namespaced(KIND_GATEWAY, ctx.ns, ctx.name),
            ports: ports_of,
        }],
        retain: false,
    };
    let _ = ctx.gw;
    (Some(lb), problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(host: &str, kind: PathKind, key: &str, rank: usize, action: usize) -> Entry {
        Entry {
            listener: 0,
            host: HostPattern::of(Some(host).filter(|h| *h != "*")),
            kind,
            key: key.to_string(),
            written: key.len(),
            bare: true,
            rank: (rank, 0, 0),
            action,
        }
    }

    #[test]
    fn a_more_specific_hostname_wins_before_a_longer_path_of_a_general_one() {
        let specific = [entry("a.example.com", PathKind::Prefix, "/a", 0, 1)];
        let general = [entry("*.example.com", PathKind::Prefix, "/a/b", 1, 2)];
        let layers = vec![specific.iter().collect(), general.iter().collect()];
        assert_eq!(resolve(&layers, "/a/b/c"), Some(1));
        assert_eq!(resolve(&layers, "/x"), None);
        let rules = domain_rules(&layers, &[]);
        let find = |u: &str| rules.iter().find(|(x, _)| x == u).map(|x| x.1);
        assert_eq!(find("/a/b/"), Some(Some(1)), "{rules:?}");
        assert_eq!(find("=/a/b"), Some(Some(1)));
        assert_eq!(find("/a/"), Some(Some(1)));
    }

    #[test]
    fn a_general_hostname_answers_the_paths_the_specific_one_does_not_match() {
        let specific = [entry("a.example.com", PathKind::Exact, "/only", 0, 1)];
        let general = [entry("*", PathKind::Prefix, "", 1, 2)];
        let layers = vec![specific.iter().collect(), general.iter().collect()];
        let rules = domain_rules(&layers, &[]);
        assert_eq!(
            rules,
            vec![("/".into(), Some(2)), ("=/only".into(), Some(1))]
        );
    }

    #[test]
    fn exact_beats_prefix_and_the_oldest_route_wins_a_tie() {
        let l = [
            entry("*", PathKind::Prefix, "/p", 1, 1),
            entry("*", PathKind::Prefix, "/p", 0, 2),
            entry("*", PathKind::Exact, "/p", 2, 3),
        ];
        let layers = vec![l.iter().collect()];
        assert_eq!(resolve(&layers, "/p"), Some(3));
        assert_eq!(resolve(&layers, "/p/x"), Some(2));
        assert_eq!(resolve(&layers, "/px"), None);
    }

    #[test]
    fn weights_split_requests_between_backends_whatever_their_target_counts() {
        let t = |ip: &str| Target {
            addr: TargetAddr::Ip(ip.into()),
            port: 80,
            weight: DEFAULT_WEIGHT,
        };
        let r = |svc: &str, targets: Vec<Target>| Resolved {
            backend: BackendRef {
                namespace: "ns".into(),
                service: svc.into(),
                port: "80".into(),
                mode: TargetMode::Direct,
            },
            targets,
            settings: Default::default(),
            path_settings: Default::default(),
        };
        // 90/10 with one target in the first and three in the second.
        let Action::Forward {
            targets, backend, ..
        } = weighted(
            vec![
                (90, r("a", vec![t("10.0.0.1")])),
                (
                    10,
                    r("b", vec![t("10.0.0.2"), t("10.0.0.3"), t("10.0.0.4")]),
                ),
            ],
            false,
        )
        else {
            panic!("forward")
        };
        assert_eq!(backend.unwrap().service, "a");
        let w: Vec<u32> = targets.iter().map(|t| t.weight).collect();
        assert_eq!(w, vec![100, 4, 4, 4]);
        // A zero weight sends nothing.
        let Action::Forward { targets, .. } = weighted(
            vec![
                (1, r("a", vec![t("10.0.0.1")])),
                (0, r("b", vec![t("10.0.0.2")])),
            ],
            false,
        ) else {
            panic!("forward")
        };
        assert_eq!(
            targets.iter().map(|t| t.weight).collect::<Vec<_>>(),
            vec![100, 0]
        );
    }

    fn grpc_rule(yaml: &str) -> gwapi::GrpcRouteRule {
        serde_json::from_value(yaml_value(yaml)).expect("rule")
    }

    fn yaml_value(yaml: &str) -> Value {
        crate::manifests::parse_documents("rule.yaml", yaml)
            .expect("yaml")
            .remove(0)
    }

    #[test]
    fn grpc_service_and_method_become_an_exact_path_and_a_service_alone_a_slash_prefix() {
        let m = grpc_matches(&grpc_rule(
            "matches: [{method: {service: a.b.Svc, method: Get}}, {method: {service: a.b.Svc}}, {}]",
        ))
        .expect("expressible");
        let got: Vec<(PathKind, &str, bool)> =
            m.iter().map(|p| (p.kind, p.key.as_str(), p.bare)).collect();
        assert_eq!(
            got,
            [
                (PathKind::Exact, "/a.b.Svc/Get", true),
                (PathKind::Prefix, "/a.b.Svc", false),
                (PathKind::Prefix, "", true),
            ]
        );
        // The service prefix covers its methods, never the bare service path or a longer name.
        let e = Entry {
            listener: 0,
            host: HostPattern::Any,
            kind: PathKind::Prefix,
            key: "/a.b.Svc".into(),
            written: 8,
            bare: false,
            rank: (0, 0, 0),
            action: 1,
        };
        let layers = vec![vec![&e]];
        assert_eq!(resolve(&layers, "/a.b.Svc/Get"), Some(1));
        assert_eq!(resolve(&layers, "/a.b.Svc"), None);
        assert_eq!(resolve(&layers, "/a.b.SvcX/Get"), None);
    }

    #[test]
    fn grpc_matches_clb_cannot_express_are_refused_naming_the_field() {
        for (yaml, needle) in [
            (
                "matches: [{headers: [{name: x, value: y}]}]",
                "matches[0].headers",
            ),
            (
                "matches: [{method: {type: RegularExpression, service: a.S, method: M}}]",
                "RegularExpression",
            ),
            (
                "matches: [{method: {method: Get}}]",
                "a method without a service",
            ),
            (
                "matches: [{method: {service: 'a/b'}}]",
                "not a gRPC service",
            ),
            (
                "matches: [{method: {service: a.S, method: 'G-t'}}]",
                "not a gRPC method",
            ),
            (
                "filters: [{type: RequestHeaderModifier}]",
                "filters[0]: RequestHeaderModifier",
            ),
            ("sessionPersistence: {}", "sessionPersistence"),
        ] {
            let err = grpc_matches(&grpc_rule(yaml)).err().unwrap_or_default();
            assert!(err.contains(needle), "{yaml}: {err:?}");
        }
    }

    #[test]
    fn a_wildcard_domain_is_native_unless_it_contains_another_wildcard() {
        let w = HostPattern::of(Some("*.a.com"));
        assert_eq!(domain_of(&w, false, "x"), "*.a.com");
        assert_eq!(domain_of(&w, true, "x"), "~^.+\\.a\\.com$");
        assert_eq!(domain_of(&HostPattern::Any, false, "x"), "x");
    }
}
