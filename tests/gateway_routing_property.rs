//! The Gateway API routing property: for random HTTPRoute sets on one HTTP listener and random
//! requests, CLB's own matching (`matching::clb`) over the CLB listener `model::build` makes
//! gives exactly the answer of an independent Gateway API oracle written here from the spec:
//! the route hostnames intersected with the listener's, `*.suffix` matching one or more labels,
//! the most specific matching hostname first (exact, then the longer wildcard, then none),
//! then `Exact` before the longest element-wise `PathPrefix`, then the oldest route (here: by
//! name), then the first rule and match.

use clb_ingress::matching::clb::{ClbRoute, CompiledListener, DomainConf, UrlConf};
use clb_ingress::model::{self, DesiredListener, TargetAddr};
use proptest::prelude::*;

/// Route hostnames: at most two nested wildcard levels (CLB can order two, see
/// docs/gateway-api.md), exact names inside and outside them.
const ROUTE_HOSTS: [&str; 6] = [
    "*.example.com",
    "*.a.example.com",
    "a.example.com",
    "b.a.example.com",
    "c.example.com",
    "other.org",
];
const REQUEST_HOSTS: [&str; 7] = [
    "a.example.com",
    "b.a.example.com",
    "x.b.a.example.com",
    "c.example.com",
    "example.com",
    "d.c.example.com",
    "other.org",
];
const SEGMENTS: [&str; 4] = ["a", "b", "ab", "a.b"];
/// Backends: Service `s<i>` has the one pod IP `10.0.0.<i+1>`.
const BACKENDS: u8 = 4;

#[derive(Debug, Clone)]
struct Match {
    exact: bool,
    path: String,
}

#[derive(Debug, Clone)]
struct Rule {
    matches: Vec<Match>,
    backend: u8,
}

#[derive(Debug, Clone)]
struct Route {
    hostnames: Vec<&'static str>,
    rules: Vec<Rule>,
}

fn wildcard_matches(suffix: &str, host: &str) -> bool {
    host.strip_suffix(suffix)
        .and_then(|r| r.strip_suffix('.'))
        .is_some_and(|label| !label.is_empty())
}

/// Does hostname pattern `p` (`None`: any) match `host`?
fn pattern_matches(p: Option<&str>, host: &str) -> bool {
    match p {
        None => true,
        Some(p) => match p.strip_prefix("*.") {
            Some(s) => wildcard_matches(s, host),
            None => p == host,
        },
    }
}

/// Does every host pattern `b` matches also match pattern `a`?
fn covers(a: &str, b: &str) -> bool {
    match (a.strip_prefix("*."), b.strip_prefix("*.")) {
        (Some(s), Some(t)) => s == t || wildcard_matches(s, t),
        (Some(s), None) => wildcard_matches(s, b),
        (None, Some(_)) => false,
        (None, None) => a == b,
    }
}

/// Specificity of a matching hostname: (exact?, characters), any host lowest.
fn specificity(p: Option<&str>) -> (u8, usize) {
    match p {
        None => (0, 0),
        Some(p) if p.starts_with("*.") => (1, p.len()),
        Some(p) => (2, p.len()),
    }
}

/// The specificity of the most specific effective hostname of a route (its hostnames, each
/// intersected with the listener's; none: the listener's) that matches `host`.
fn hostname_specificity(
    listener: Option<&str>,
    hostnames: &[&str],
    host: &str,
) -> Option<(u8, usize)> {
    let effective: Vec<Option<&str>> = if hostnames.is_empty() {
        vec![listener]
    } else {
        hostnames
            .iter()
            .filter_map(|h| match listener {
                None => Some(Some(*h)),
                Some(l) if covers(l, h) => Some(Some(*h)),
                Some(l) if covers(h, l) => Some(Some(l)),
                Some(_) => None,
            })
            .collect()
    };
    effective
        .into_iter()
        .filter(|p| pattern_matches(*p, host))
        .map(specificity)
        .max()
}

/// CLB's own matching over a built listener.
fn compile(l: &DesiredListener) -> CompiledListener {
    CompiledListener::new(
        l.domains
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
            .collect(),
    )
}

/// (hostname specificity, exact?, prefix key length, written length, route, rule, match,
/// backend) of a matching route match.
type Candidate = ((u8, usize), bool, usize, usize, usize, usize, usize, u8);

/// The oracle: the backend Gateway API gives `host` + `path` on a listener with `listener`
/// hostname, or None (404).
fn oracle(listener: Option<&str>, routes: &[Route], host: &str, path: &str) -> Option<u8> {
    if !pattern_matches(listener, host) {
        return None;
    }
    let mut best: Option<Candidate> = None;
    for (ri, r) in routes.iter().enumerate() {
        let Some(hs) = hostname_specificity(listener, &r.hostnames, host) else {
            continue;
        };
        for (rui, rule) in r.rules.iter().enumerate() {
            for (mi, m) in rule.matches.iter().enumerate() {
                let key = if m.exact {
                    m.path.as_str()
                } else {
                    m.path.trim_end_matches('/')
                };
                let hit = if m.exact {
                    path == key
                } else {
                    key.is_empty()
                        || path == key
                        || (path.starts_with(key) && path.as_bytes().get(key.len()) == Some(&b'/'))
                };
                if !hit {
                    continue;
                }
                let cand = (
                    hs,
                    m.exact,
                    key.len(),
                    m.path.len(),
                    ri,
                    rui,
                    mi,
                    rule.backend,
                );
                let better = match &best {
                    None => true,
                    Some(b) => {
                        // Higher hostname, exact, longer key, longer written; lower route/rule/match.
                        (cand.0, cand.1, cand.2, cand.3).cmp(&(b.0, b.1, b.2, b.3))
                            == std::cmp::Ordering::Greater
                            || ((cand.0, cand.1, cand.2, cand.3) == (b.0, b.1, b.2, b.3)
                                && (cand.4, cand.5, cand.6) < (b.4, b.5, b.6))
                    }
                };
                if better {
                    best = Some(cand);
                }
            }
        }
    }
    best.map(|b| b.7)
}

/// A route of `kind` named `r<ri>` on the Gateway, with its rules as (matches, backend).
fn route_yaml(kind: &str, ri: usize, hostnames: &[&str], rules: &[(Vec<String>, u8)]) -> String {
    let hostnames: Vec<String> = hostnames.iter().map(|h| format!("'{h}'")).collect();
    let mut text = format!(
        "apiVersion: gateway.networking.k8s.io/v1
kind: {kind}
metadata: {{name: r{ri:02}, namespace: default}}
spec:
  parentRefs: [{{name: gw}}]
  hostnames: [{}]
  rules:
",
        hostnames.join(", ")
    );
    for (matches, backend) in rules {
        text.push_str(&format!(
            "  - matches: [{}]\n    backendRefs: [{{name: s{backend}, port: 80}}]\n",
            matches.join(", ")
        ));
    }
    text
}

/// The class, a Gateway with one listener (`listener_yaml`, inside `listeners:`) and the
/// Services `s<i>`.
fn world(listener_yaml: &str) -> Vec<String> {
    let mut docs = vec![
        "apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: clb}
spec:
  controllerName: clb-ingress.io/gateway-controller
  parametersRef: {group: clb-ingress.io, kind: ClbClassParameters, name: gw}
---
apiVersion: clb-ingress.io/v1alpha1
kind: ClbClassParameters
metadata: {name: gw}
spec: {targetMode: Direct}
"
        .to_string(),
        format!(
            "apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: gw, namespace: default}}
spec:
  gatewayClassName: clb
  listeners:
  - {listener_yaml}
"
        ),
    ];
    for i in 0..BACKENDS {
        docs.push(format!(
            "apiVersion: v1
kind: Service
metadata: {{name: s{i}, namespace: default}}
spec: {{ports: [{{name: http, port: 80}}]}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: s{i}-1, namespace: default, labels: {{kubernetes.io/service-name: s{i}}}}}
addressType: IPv4
ports: [{{name: http, port: 8080}}]
endpoints:
- {{addresses: [10.0.0.{}]}}
",
            i + 1
        ));
    }
    docs
}

fn manifests(listener: Option<&str>, routes: &[Route]) -> String {
    let mut docs = world(&format!(
        "{{name: http, port: 80, protocol: HTTP{}}}",
        listener
            .map(|l| format!(", hostname: '{l}'"))
            .unwrap_or_default()
    ));
    for (ri, r) in routes.iter().enumerate() {
        let rules: Vec<(Vec<String>, u8)> = r
            .rules
            .iter()
            .map(|rule| {
                let matches: Vec<String> = rule
                    .matches
                    .iter()
                    .map(|m| {
                        format!(
                            "{{path: {{type: {}, value: '{}'}}}}",
                            if m.exact { "Exact" } else { "PathPrefix" },
                            m.path
                        )
                    })
                    .collect();
                (matches, rule.backend)
            })
            .collect();
        docs.push(route_yaml("HTTPRoute", ri, &r.hostnames, &rules));
    }
    docs.join("---\n")
}

/// The backend CLB picks (by the target's pod IP), None for 404 or a target-less rule.
fn clb_answer(
    l: &DesiredListener,
    compiled: &CompiledListener,
    host: &str,
    path: &str,
) -> Result<Option<u8>, String> {
    match compiled.route(host, path) {
        ClbRoute::Rule { domain, rule } => {
            let r = &l.domains[domain].rules[rule];
            Ok(r.targets.first().map(|t| match &t.addr {
                TargetAddr::Ip(ip) => ip.rsplit('.').next().unwrap().parse::<u8>().unwrap() - 1,
                TargetAddr::Instance(i) => panic!("instance target {i}"),
            }))
        }
        ClbRoute::NotFound => Ok(None),
        other => Err(format!("{other:?}")),
    }
}

fn path_strategy() -> impl Strategy<Value = String> {
    (
        prop::collection::vec(prop::sample::select(SEGMENTS.to_vec()), 0..3),
        any::<bool>(),
    )
        .prop_map(|(segs, slash)| {
            let mut p = format!("/{}", segs.join("/"));
            if slash && p.len() > 1 {
                p.push('/');
            }
            p
        })
}

/// A route's hostnames: up to two of `ROUTE_HOSTS`, sorted, no repeats.
fn hostnames_strategy() -> impl Strategy<Value = Vec<&'static str>> {
    prop::collection::vec(prop::sample::select(ROUTE_HOSTS.to_vec()), 0..3).prop_map(|mut h| {
        h.sort();
        h.dedup();
        h
    })
}

fn route_strategy() -> impl Strategy<Value = Route> {
    let rule = (
        prop::collection::vec(
            (any::<bool>(), path_strategy()).prop_map(|(exact, path)| Match { exact, path }),
            1..3,
        ),
        0..BACKENDS,
    )
        .prop_map(|(matches, backend)| Rule { matches, backend });
    (hostnames_strategy(), prop::collection::vec(rule, 1..3))
        .prop_map(|(hostnames, rules)| Route { hostnames, rules })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]
    #[test]
    fn clb_answers_every_request_as_the_gateway_api_oracle(
        listener in prop::option::of(prop::sample::select(vec!["*.example.com", "a.example.com"])),
        routes in prop::collection::vec(route_strategy(), 1..4),
        requests in prop::collection::vec((prop::sample::select(REQUEST_HOSTS.to_vec()), path_strategy()), 1..12),
    ) {
        let snap = clb_test_support::snapshot(&manifests(listener, &routes));
        let out = model::build(&snap);
        let lb = out.stacks.values().next();
        for (host, path) in &requests {
            let want = oracle(listener, &routes, host, path);
            let got = match lb.and_then(|lb| lb.listeners.iter().find(|l| l.port == 80)) {
                None => Ok(None),
                Some(l) => {
                    let compiled = compile(l);
                    clb_answer(l, &compiled, host, path)
                }
            };
            prop_assert_eq!(got, Ok(want), "{} {} with listener {:?}\n{:#?}\nproblems: {:?}", host, path, listener, routes, out.problems);
        }
    }
}

// ---- GRPCRoute: the same property over gRPC method matches on an HTTPS listener. ----

/// gRPC services and methods of the generated matches and requests (`a.S` is a string prefix
/// of `a.SX`: a service match must not take the other service's calls).
const SERVICES: [&str; 3] = ["a.S", "a.SX", "b.S"];
const METHODS: [&str; 2] = ["M", "N"];

#[derive(Debug, Clone)]
enum GrpcMatch {
    Method(&'static str, &'static str),
    Service(&'static str),
    All,
}

#[derive(Debug, Clone)]
struct GrpcRule {
    matches: Vec<GrpcMatch>,
    backend: u8,
}

#[derive(Debug, Clone)]
struct GrpcRoute {
    hostnames: Vec<&'static str>,
    rules: Vec<GrpcRule>,
}

/// (hostname specificity, service characters, method characters, route, rule, match, backend).
type GrpcCandidate = ((u8, usize), usize, usize, usize, usize, usize, u8);

/// The oracle from the GRPCRoute spec: among the matches of a call `/service/method`, the
/// most specific hostname, then the most characters of matching service, then of matching
/// method; ties to the oldest route (here: by name), then the first rule and match.
fn grpc_oracle(
    listener: Option<&str>,
    routes: &[GrpcRoute],
    host: &str,
    (service, method): (&str, &str),
) -> Option<u8> {
    if !pattern_matches(listener, host) {
        return None;
    }
    let mut best: Option<GrpcCandidate> = None;
    for (ri, r) in routes.iter().enumerate() {
        let Some(hs) = hostname_specificity(listener, &r.hostnames, host) else {
            continue;
        };
        for (rui, rule) in r.rules.iter().enumerate() {
            for (mi, m) in rule.matches.iter().enumerate() {
                let (sc, mc) = match m {
                    GrpcMatch::Method(s, x) if *s == service && *x == method => (s.len(), x.len()),
                    GrpcMatch::Service(s) if *s == service => (s.len(), 0),
                    GrpcMatch::All => (0, 0),
                    _ => continue,
                };
                let cand = (hs, sc, mc, ri, rui, mi, rule.backend);
                let key = |c: &GrpcCandidate| (c.0, c.1, c.2);
                let better = best.is_none_or(|b| {
                    key(&cand) > key(&b)
                        || (key(&cand) == key(&b) && (ri, rui, mi) < (b.3, b.4, b.5))
                });
                if better {
                    best = Some(cand);
                }
            }
        }
    }
    best.map(|b| b.6)
}

fn grpc_manifests(listener: Option<&str>, routes: &[GrpcRoute]) -> String {
    static CERT: std::sync::OnceLock<clb_test_support::emulator::TlsSecret> =
        std::sync::OnceLock::new();
    let cert = CERT
        .get_or_init(|| clb_test_support::emulator::TlsSecret::generate("tls", "grpc.example.com"));
    let indent = |t: &str| t.lines().map(|l| format!("    {l}\n")).collect::<String>();
    let mut docs = world(&format!(
        "{{name: https, port: 443, protocol: HTTPS, tls: {{certificateRefs: [{{name: tls}}]}}{}}}",
        listener
            .map(|l| format!(", hostname: '{l}'"))
            .unwrap_or_default()
    ));
    docs.push(format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: tls, namespace: default}}\ntype: kubernetes.io/tls\nstringData:\n  tls.crt: |\n{}  tls.key: |\n{}",
        indent(&cert.cert_pem),
        indent(&cert.key_pem)
    ));
    for (ri, r) in routes.iter().enumerate() {
        let rules: Vec<(Vec<String>, u8)> = r
            .rules
            .iter()
            .map(|rule| {
                let matches: Vec<String> = rule
                    .matches
                    .iter()
                    .map(|m| match m {
                        GrpcMatch::Method(s, x) => {
                            format!("{{method: {{service: '{s}', method: '{x}'}}}}")
                        }
                        GrpcMatch::Service(s) => format!("{{method: {{service: '{s}'}}}}"),
                        GrpcMatch::All => "{}".to_string(),
                    })
                    .collect();
                (matches, rule.backend)
            })
            .collect();
        docs.push(route_yaml("GRPCRoute", ri, &r.hostnames, &rules));
    }
    docs.join("---\n")
}

fn grpc_route_strategy() -> impl Strategy<Value = GrpcRoute> {
    let m = prop_oneof![
        (
            prop::sample::select(SERVICES.to_vec()),
            prop::sample::select(METHODS.to_vec())
        )
            .prop_map(|(s, x)| GrpcMatch::Method(s, x)),
        prop::sample::select(SERVICES.to_vec()).prop_map(GrpcMatch::Service),
        Just(GrpcMatch::All),
    ];
    let rule = (prop::collection::vec(m, 1..3), 0..BACKENDS)
        .prop_map(|(matches, backend)| GrpcRule { matches, backend });
    (hostnames_strategy(), prop::collection::vec(rule, 1..3))
        .prop_map(|(hostnames, rules)| GrpcRoute { hostnames, rules })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    #[test]
    fn clb_answers_every_grpc_call_as_the_grpc_route_oracle(
        listener in prop::option::of(prop::sample::select(vec!["*.example.com", "a.example.com"])),
        routes in prop::collection::vec(grpc_route_strategy(), 1..4),
        requests in prop::collection::vec((
            prop::sample::select(REQUEST_HOSTS.to_vec()),
            prop::sample::select(vec!["a.S", "a.SX", "b.S", "c.T"]),
            prop::sample::select(METHODS.to_vec()),
        ), 1..12),
    ) {
        let snap = clb_test_support::snapshot(&grpc_manifests(listener, &routes));
        let out = model::build(&snap);
        let lb = out.stacks.values().next();
        for (host, service, method) in &requests {
            let want = grpc_oracle(listener, &routes, host, (service, method));
            let path = format!("/{service}/{method}");
            let got = match lb.and_then(|lb| lb.listeners.iter().find(|l| l.port == 443)) {
                None => Ok(None),
                Some(l) => {
                    prop_assert!(
                        l.domains.iter().flat_map(|d| &d.rules).filter(|r| !r.targets.is_empty())
                            .all(|r| r.settings.forward_type.as_deref() == Some("GRPC")),
                        "every served rule forwards gRPC"
                    );
                    let compiled = compile(l);
                    clb_answer(l, &compiled, host, &path)
                }
            };
            prop_assert_eq!(got, Ok(want), "{} {} with listener {:?}\n{:#?}\nproblems: {:?}", host, path, listener, routes, out.problems);
        }
    }
}
