//! Our own data-plane runner for the core HTTPRoute scenarios of the Gateway API conformance
//! suite (kubernetes-sigs/gateway-api v1.3.0, `conformance/tests/httproute-*`), which itself
//! needs a live cluster and Go. Each test is one upstream scenario, rewritten here in our own
//! manifests: `plan -o json` gives the computed status (checked condition by condition), then
//! `apply -f` programs an in-process CLB emulator and every expected request is sent through
//! its data plane (eventually consistent, as upstream, within `SETTLE`).
//!
//! What CLB cannot express (header matches, redirects that change the host) is checked to be
//! refused with the spec's reason, and its requests to reach no backend. docs/gateway-api.md
//! has the table: pass / refused as expected / differs, per scenario and test name.

use clb_test_support::emulator::{TlsSecret, command};
use clb_test_support::gateway::{Plane, cond, gateway_address, service_with_pod};
use serde_json::Value;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// How long a request may take to get its expected answer after `apply` (upstream waits for
/// eventual consistency too).
const SETTLE: Duration = Duration::from_secs(5);
/// Requests repeated after a request got its expected answer: all must get it too.
const CONFIRM: usize = 8;
/// Requests sampled by the weight scenario.
const WEIGHT_SAMPLES: usize = 300;

const INFRA: &str = "gateway-conformance-infra";

/// Backends by name: (namespace, Service, pod IP). Every pod listens on 8080.
const BACKENDS: [(&str, &str, &str); 6] = [
    (INFRA, "infra-backend-v1", "10.9.1.1"),
    (INFRA, "infra-backend-v2", "10.9.1.2"),
    (INFRA, "infra-backend-v3", "10.9.1.3"),
    (
        "gateway-conformance-app-backend",
        "app-backend-v1",
        "10.9.2.1",
    ),
    (
        "gateway-conformance-app-backend",
        "app-backend-v2",
        "10.9.2.2",
    ),
    ("gateway-conformance-web-backend", "web-backend", "10.9.3.1"),
];

/// The Services of the service-types scenario and the IPv4 target each must reach.
const SERVICE_TYPE_TARGETS: [(&str, &str); 2] = [
    ("manual-endpointslices", "10.9.4.1:3000"),
    ("headless-manual-endpointslices", "10.9.4.2:3000"),
];

/// The shared world: class, namespaces, Services with one pod each.
fn base() -> String {
    let mut docs = vec![
        "apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: clb}
spec:
  controllerName: clb-ingress.io/gateway-controller
  parametersRef: {group: clb-ingress.io, kind: ClbClassParameters, name: direct}
---
apiVersion: clb-ingress.io/v1alpha1
kind: ClbClassParameters
metadata: {name: direct}
spec: {targetMode: Direct}
---
apiVersion: v1
kind: Namespace
metadata: {name: gateway-conformance-infra, labels: {role: infra}}
---
apiVersion: v1
kind: Namespace
metadata: {name: gateway-conformance-app-backend, labels: {gateway-conformance: backend}}
---
apiVersion: v1
kind: Namespace
metadata: {name: gateway-conformance-web-backend, labels: {gateway-conformance: backend}}
"
        .to_string(),
    ];
    for (ns, name, ip) in BACKENDS {
        docs.push(service_with_pod(ns, name, ("http", 8080), ip));
    }
    docs.join("---\n")
}

/// A Gateway with one HTTP listener on port 80 admitting routes `from` (`Same`, `All`, or a
/// selector on the backend namespaces).
fn gateway(name: &str, from: &str) -> String {
    let namespaces = match from {
        "Selector" => {
            "{from: Selector, selector: {matchLabels: {gateway-conformance: backend}}}".to_string()
        }
        f => format!("{{from: {f}}}"),
    };
    format!(
        "apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: {name}, namespace: {INFRA}}}
spec:
  gatewayClassName: clb
  listeners:
  - name: http
    port: 80
    protocol: HTTP
    allowedRoutes: {{namespaces: {namespaces}}}
"
    )
}

/// What a request must get.
#[derive(Debug, Clone, Copy)]
enum Want {
    /// 200 from this backend (by Service name).
    Backend(&'static str),
    /// This status code, answered by CLB itself (no backend).
    Status(u16),
}

struct Req {
    gateway: &'static str,
    scheme: &'static str,
    host: &'static str,
    path: &'static str,
    want: Want,
}

fn req(gateway: &'static str, host: &'static str, path: &'static str, want: Want) -> Req {
    Req {
        gateway,
        scheme: "http",
        host,
        path,
        want,
    }
}

/// One route parent condition to check: (route namespace/name, parent index, type, status,
/// reason).
type Check = (
    &'static str,
    usize,
    &'static str,
    &'static str,
    &'static str,
);

struct Scenario {
    /// A distinct cluster id, so scenarios never share a CLB.
    id: &'static str,
    yaml: String,
    checks: Vec<Check>,
    requests: Vec<Req>,
    /// The root certificate of HTTPS listeners, if any.
    tls: Option<TlsSecret>,
}

/// The route status entries of `plan -o json` by `namespace/name`.
fn route_status(json: &Value) -> BTreeMap<String, Value> {
    json["gatewayApi"]["routes"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            (
                format!(
                    "{}/{}",
                    r["namespace"].as_str().unwrap_or(""),
                    r["name"].as_str().unwrap_or("")
                ),
                r.clone(),
            )
        })
        .collect()
}

fn plan_json(file: &std::path::Path, id: &str) -> Value {
    let out = command()
        .arg("plan")
        .arg("-f")
        .arg(file)
        .args(["-o", "json", "--cluster-id", id])
        .output()
        .expect("run clb-ingress plan");
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("plan output: {e}\n{}", String::from_utf8_lossy(&out.stderr)))
}

/// (status, backend Service name or the emulator's own answer) of one request.
async fn send(client: &reqwest::Client, url: &str) -> (u16, String) {
    match client.get(url).send().await {
        Ok(r) => {
            let target = r
                .headers()
                .get("x-clb-target")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            let backend = BACKENDS
                .iter()
                .find(|b| target == format!("{}:8080", b.2))
                .map(|b| b.1)
                .or_else(|| {
                    SERVICE_TYPE_TARGETS
                        .iter()
                        .find(|t| t.1 == target)
                        .map(|t| t.0)
                })
                .map_or_else(|| format!("target {target:?}"), str::to_string);
            (r.status().as_u16(), backend)
        }
        Err(e) => (0, e.to_string()),
    }
}

fn client(s: &Scenario, r: &Req, addr: SocketAddr) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(5))
        .resolve(r.host, addr);
    if let Some(t) = &s.tls {
        b = b.add_root_certificate(reqwest::Certificate::from_pem(t.cert_pem.as_bytes()).unwrap());
    }
    b.build().unwrap()
}

/// Check the scenario's status conditions offline, apply it, then check every request.
async fn run(s: Scenario) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("scenario.yaml");
    std::fs::write(&file, format!("{}---\n{}", base(), s.yaml)).unwrap();
    let json = tokio::task::block_in_place(|| plan_json(&file, s.id));
    let routes = route_status(&json);
    for (route, parent, type_, status, reason) in &s.checks {
        let r = routes
            .get(*route)
            .unwrap_or_else(|| panic!("no status for {route}: {json:#}"));
        let conditions = &r["parents"][*parent]["conditions"];
        let got = cond(conditions, type_);
        assert_eq!(
            (got.0, got.1),
            (*status, *reason),
            "{route} parents[{parent}] {type_}: {}",
            got.2
        );
    }
    let plane = Plane::start().await;
    let (code, stdout, stderr) = plane.apply(&file, s.id);
    assert!(
        code == 0 || code == 1,
        "apply exit {code}\n{stdout}\n{stderr}"
    );
    for r in &s.requests {
        let vip = gateway_address(&stdout, &format!("{INFRA}/{}", r.gateway))
            .unwrap_or_else(|| panic!("no address of {} in {stdout}\n{stderr}", r.gateway));
        let port = if r.scheme == "https" { 443 } else { 80 } + plane.offset;
        let c = client(&s, r, SocketAddr::from((vip, port)));
        let url = format!("{}://{}:{port}{}", r.scheme, r.host, r.path);
        let want = match r.want {
            Want::Backend(b) => (200, b.to_string()),
            Want::Status(code) => (code, "target \"\"".to_string()),
        };
        let started = Instant::now();
        loop {
            let got = send(&c, &url).await;
            if got == want {
                // Settled: the answer must now be stable (no other target shares the rule).
                for _ in 0..CONFIRM {
                    let again = send(&c, &url).await;
                    assert_eq!(again, want, "{} {}{}", r.scheme, r.host, r.path);
                }
                break;
            }
            assert!(
                started.elapsed() < SETTLE,
                "{} {}{}: got {got:?}, want {want:?}",
                r.scheme,
                r.host,
                r.path
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn route(ns: &str, name: &str, parent: &str, body: &str) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: {name}, namespace: {ns}}}
spec:
  parentRefs: [{parent}]
{body}"
    )
}

/// The Accepted and ResolvedRefs checks of a route served as written.
fn served(route: &'static str) -> [Check; 2] {
    [
        (route, 0, "Accepted", "True", "Accepted"),
        (route, 0, "ResolvedRefs", "True", "ResolvedRefs"),
    ]
}

use Want::{Backend, Status};

// ---- Pass: CLB expresses the scenario; status and data plane as upstream expects. ----

/// HTTPRouteSimpleSameNamespace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simple_same_namespace_route_reaches_its_backend() {
    run(Scenario {
        id: "c-simple",
        yaml: gateway("same-namespace", "Same")
            + "---\n"
            + &route(
                INFRA,
                "gateway-conformance-infra-test",
                "{name: same-namespace}",
                "  rules:\n  - backendRefs: [{name: infra-backend-v1, port: 8080}]\n",
            ),
        checks: served("gateway-conformance-infra/gateway-conformance-infra-test").to_vec(),
        requests: vec![req(
            "same-namespace",
            "any.example",
            "/",
            Backend("infra-backend-v1"),
        )],
        tls: None,
    })
    .await;
}

/// HTTPRouteCrossNamespace: a route in a backend namespace on a Gateway that selects it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_namespace_route_is_admitted_by_the_namespace_selector() {
    run(Scenario {
        id: "c-crossns",
        yaml: gateway("backend-namespaces", "Selector")
            + "---\n"
            + &route(
                "gateway-conformance-web-backend",
                "cross-namespace",
                "{name: backend-namespaces, namespace: gateway-conformance-infra}",
                "  rules:\n  - backendRefs: [{name: web-backend, port: 8080}]\n",
            ),
        checks: served("gateway-conformance-web-backend/cross-namespace").to_vec(),
        requests: vec![req(
            "backend-namespaces",
            "any.example",
            "/",
            Backend("web-backend"),
        )],
        tls: None,
    })
    .await;
}

/// HTTPRouteExactPathMatching.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exact_paths_match_only_themselves() {
    run(Scenario {
        id: "c-exact",
        yaml: gateway("same-namespace", "Same")
            + "---\n"
            + &route(
                INFRA,
                "exact-matching",
                "{name: same-namespace}",
                "  rules:
  - matches: [{path: {type: Exact, value: /one}}]
    backendRefs: [{name: infra-backend-v1, port: 8080}]
  - matches: [{path: {type: Exact, value: /two}}]
    backendRefs: [{name: infra-backend-v2, port: 8080}]
",
            ),
        checks: served("gateway-conformance-infra/exact-matching").to_vec(),
        requests: vec![
            req(
                "same-namespace",
                "h.example",
                "/one",
                Backend("infra-backend-v1"),
            ),
            req(
                "same-namespace",
                "h.example",
                "/two",
                Backend("infra-backend-v2"),
            ),
            req("same-namespace", "h.example", "/", Status(404)),
            req("same-namespace", "h.example", "/one/example", Status(404)),
            req("same-namespace", "h.example", "/two/", Status(404)),
            req("same-namespace", "h.example", "/Two", Status(404)),
        ],
        tls: None,
    })
    .await;
}

/// HTTPRoutePathMatchOrder: Exact before PathPrefix, the longest prefix first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_matches_are_ordered_exact_first_then_longest_prefix() {
    run(Scenario {
        id: "c-order",
        yaml: gateway("same-namespace", "Same")
            + "---\n"
            + &route(
                INFRA,
                "path-matching-order",
                "{name: same-namespace}",
                "  rules:
  - matches: [{path: {type: Exact, value: /match}}]
    backendRefs: [{name: infra-backend-v1, port: 8080}]
  - matches: [{path: {type: Exact, value: /match/exact}}]
    backendRefs: [{name: infra-backend-v2, port: 8080}]
  - matches: [{path: {type: Exact, value: /match/exact/one}}]
    backendRefs: [{name: infra-backend-v3, port: 8080}]
  - matches: [{path: {type: PathPrefix, value: /match/}}]
    backendRefs: [{name: infra-backend-v3, port: 8080}]
  - matches: [{path: {type: PathPrefix, value: /match/prefix/}}]
    backendRefs: [{name: infra-backend-v1, port: 8080}]
  - matches: [{path: {type: PathPrefix, value: /match/prefix/one}}]
    backendRefs: [{name: infra-backend-v2, port: 8080}]
",
            ),
        checks: served("gateway-conformance-infra/path-matching-order").to_vec(),
        requests: vec![
            req(
                "same-namespace",
                "h.example",
                "/match/exact/one",
                Backend("infra-backend-v3"),
            ),
            req(
                "same-namespace",
                "h.example",
                "/match/exact",
                Backend("infra-backend-v2"),
            ),
            req(
                "same-namespace",
                "h.example",
                "/match",
                Backend("infra-backend-v1"),
            ),
            req(
                "same-namespace",
                "h.example",
                "/match/prefix/one/any",
                Backend("infra-backend-v2"),
            ),
            req(
                "same-namespace",
                "h.example",
                "/match/prefix/any",
                Backend("infra-backend-v1"),
            ),
            req(
                "same-namespace",
                "h.example",
                "/match/any",
                Backend("infra-backend-v3"),
            ),
        ],
        tls: None,
    })
    .await;
}

/// HTTPRouteHostnameIntersection: route hostnames meet listener hostnames (a wildcard
/// covers one or more labels); a route meeting none is not accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_hostnames_intersect_listener_hostnames() {
    let gw = "apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: hosts, namespace: gateway-conformance-infra}
spec:
  gatewayClassName: clb
  listeners:
  - {name: listener-1, port: 80, protocol: HTTP, hostname: very.specific.com}
  - {name: listener-2, port: 80, protocol: HTTP, hostname: '*.wildcard.io'}
  - {name: listener-3, port: 80, protocol: HTTP, hostname: '*.anotherwildcard.io'}
";
    let r = |name: &str, hosts: &str, prefix: &str, backend: &str| {
        route(
            INFRA,
            name,
            "{name: hosts}",
            &format!(
                "  hostnames: {hosts}
  rules:
  - matches: [{{path: {{type: PathPrefix, value: {prefix}}}}}]
    backendRefs: [{{name: {backend}, port: 8080}}]
"
            ),
        )
    };
    let yaml = [
        gw.to_string(),
        r("specific-specific", "[non.matching.com, '*.nonmatchingwildcard.io', very.specific.com]", "/s1", "infra-backend-v1"),
        r("specific-wildcard", "[non.matching.com, wildcard.io, foo.wildcard.io, bar.wildcard.io, foo.bar.wildcard.io]", "/s2", "infra-backend-v2"),
        r("wildcard-specific", "[non.matching.com, '*.specific.com']", "/s3", "infra-backend-v3"),
        r("wildcard-wildcard", "['*.anotherwildcard.io']", "/s4", "infra-backend-v1"),
        r("no-intersecting-hosts", "[specific.but.wrong.com, wildcard.io]", "/s5", "infra-backend-v2"),
    ]
    .join("---\n");
    let mut checks = Vec::new();
    for name in [
        "gateway-conformance-infra/specific-specific",
        "gateway-conformance-infra/specific-wildcard",
        "gateway-conformance-infra/wildcard-specific",
        "gateway-conformance-infra/wildcard-wildcard",
    ] {
        checks.extend(served(name));
    }
    checks.push((
        "gateway-conformance-infra/no-intersecting-hosts",
        0,
        "Accepted",
        "False",
        "NoMatchingListenerHostname",
    ));
    let g = "hosts";
    run(Scenario {
        id: "c-hosts",
        yaml,
        checks,
        requests: vec![
            req(g, "very.specific.com", "/s1", Backend("infra-backend-v1")),
            req(g, "non.matching.com", "/s1", Status(404)),
            req(g, "foo.nonmatchingwildcard.io", "/s1", Status(404)),
            req(g, "foo.wildcard.io", "/s1", Status(404)),
            req(g, "very.specific.com", "/non-matching-prefix", Status(404)),
            req(g, "foo.wildcard.io", "/s2", Backend("infra-backend-v2")),
            req(g, "bar.wildcard.io", "/s2", Backend("infra-backend-v2")),
            req(g, "foo.bar.wildcard.io", "/s2", Backend("infra-backend-v2")),
            req(g, "wildcard.io", "/s2", Status(404)),
            req(g, "very.specific.com", "/s2", Status(404)),
            req(g, "very.specific.com", "/s3", Backend("infra-backend-v3")),
            req(g, "foo.specific.com", "/s3", Status(404)),
            req(
                g,
                "foo.anotherwildcard.io",
                "/s4",
                Backend("infra-backend-v1"),
            ),
            req(
                g,
                "foo.bar.anotherwildcard.io",
                "/s4",
                Backend("infra-backend-v1"),
            ),
            req(g, "anotherwildcard.io", "/s4", Status(404)),
            req(g, "specific.but.wrong.com", "/s5", Status(404)),
            req(g, "wildcard.io", "/s5", Status(404)),
        ],
        tls: None,
    })
    .await;
}

/// HTTPRouteListenerHostnameMatching: routes bound by sectionName to listeners of one port
/// with different hostnames; the most specific listener hostname wins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listener_hostnames_pick_the_route_of_the_most_specific_listener() {
    let gw = "apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: listeners, namespace: gateway-conformance-infra}
spec:
  gatewayClassName: clb
  listeners:
  - {name: listener-1, port: 80, protocol: HTTP, hostname: bar.com}
  - {name: listener-2, port: 80, protocol: HTTP, hostname: foo.bar.com}
  - {name: listener-3, port: 80, protocol: HTTP, hostname: '*.bar.com'}
  - {name: listener-4, port: 80, protocol: HTTP, hostname: '*.foo.com'}
";
    let body = |b: &str| format!("  rules:\n  - backendRefs: [{{name: {b}, port: 8080}}]\n");
    let yaml = [
        gw.to_string(),
        route(INFRA, "backend-v1", "{name: listeners, sectionName: listener-1}", &body("infra-backend-v1")),
        route(INFRA, "backend-v2", "{name: listeners, sectionName: listener-2}", &body("infra-backend-v2")),
        route(
            INFRA,
            "backend-v3",
            "{name: listeners, sectionName: listener-3}, {name: listeners, sectionName: listener-4}",
            &body("infra-backend-v3"),
        ),
    ]
    .join("---\n");
    let mut checks = Vec::new();
    for name in [
        "gateway-conformance-infra/backend-v1",
        "gateway-conformance-infra/backend-v2",
        "gateway-conformance-infra/backend-v3",
    ] {
        checks.extend(served(name));
    }
    let g = "listeners";
    run(Scenario {
        id: "c-listeners",
        yaml,
        checks,
        requests: vec![
            req(g, "bar.com", "/", Backend("infra-backend-v1")),
            req(g, "foo.bar.com", "/", Backend("infra-backend-v2")),
            req(g, "baz.bar.com", "/", Backend("infra-backend-v3")),
            req(
                g,
                "multiple.prefixes.bar.com",
                "/",
                Backend("infra-backend-v3"),
            ),
            req(
                g,
                "multiple.prefixes.foo.com",
                "/",
                Backend("infra-backend-v3"),
            ),
            req(g, "foo.com", "/", Status(404)),
            req(g, "no.matching.host", "/", Status(404)),
        ],
        tls: None,
    })
    .await;
}

/// HTTPRouteHTTPSListener: routes on an HTTPS listener with and without a hostname.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_listener_routes_answer_over_tls() {
    let secret = TlsSecret::generate("tls-validity-checks-certificate", "example.org");
    let indent = |t: &str| t.lines().map(|l| format!("    {l}\n")).collect::<String>();
    let yaml = [
        format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: tls-cert, namespace: {INFRA}}}\ntype: kubernetes.io/tls\nstringData:\n  tls.crt: |\n{}  tls.key: |\n{}",
            indent(&secret.cert_pem),
            indent(&secret.key_pem)
        ),
        "apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: with-https, namespace: gateway-conformance-infra}
spec:
  gatewayClassName: clb
  listeners:
  - name: https
    port: 443
    protocol: HTTPS
    tls: {certificateRefs: [{name: tls-cert}]}
"
        .to_string(),
        route(
            INFRA,
            "https-test",
            "{name: with-https}",
            "  hostnames: [example.org]\n  rules:\n  - backendRefs: [{name: infra-backend-v1, port: 8080}]\n",
        ),
        route(
            INFRA,
            "https-test-no-hostname",
            "{name: with-https}",
            "  rules:\n  - backendRefs: [{name: infra-backend-v2, port: 8080}]\n",
        ),
    ]
    .join("---\n");
    let mut checks = served("gateway-conformance-infra/https-test").to_vec();
    checks.extend(served("gateway-conformance-infra/https-test-no-hostname"));
    let https = |host, want| Req {
        gateway: "with-https",
        scheme: "https",
        host,
        path: "/",
        want,
    };
    run(Scenario {
        id: "c-https",
        yaml,
        checks,
        requests: vec![https("example.org", Backend("infra-backend-v1"))],
        tls: Some(secret),
    })
    .await;
}

/// HTTPRouteWeight: 70/30/0 across three backends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weights_split_requests_seventy_thirty_and_zero() {
    let yaml = gateway("same-namespace", "Same")
        + "---\n"
        + &route(
            INFRA,
            "weighted-backends",
            "{name: same-namespace}",
            "  rules:
  - backendRefs:
    - {name: infra-backend-v1, port: 8080, weight: 70}
    - {name: infra-backend-v2, port: 8080, weight: 30}
    - {name: infra-backend-v3, port: 8080, weight: 0}
",
        );
    let s = Scenario {
        id: "c-weight",
        yaml,
        checks: served("gateway-conformance-infra/weighted-backends").to_vec(),
        requests: vec![req("same-namespace", "w.example", "/", Status(200))],
        tls: None,
    };
    // Status and first answer through the runner, then the distribution.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("weights.yaml");
    std::fs::write(&file, format!("{}---\n{}", base(), s.yaml)).unwrap();
    let plane = Plane::start().await;
    let (code, stdout, stderr) = plane.apply(&file, s.id);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let vip = gateway_address(&stdout, &format!("{INFRA}/same-namespace")).unwrap();
    let port = 80 + plane.offset;
    let c = client(&s, &s.requests[0], SocketAddr::from((vip, port)));
    let url = format!("http://w.example:{port}/");
    let started = Instant::now();
    while send(&c, &url).await.0 != 200 {
        assert!(started.elapsed() < SETTLE, "not routed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut seen = BTreeMap::<String, usize>::new();
    for _ in 0..WEIGHT_SAMPLES {
        let (code, backend) = send(&c, &url).await;
        assert_eq!(code, 200, "{backend}");
        *seen.entry(backend).or_default() += 1;
    }
    let v1 = seen.get("infra-backend-v1").copied().unwrap_or(0);
    let v2 = seen.get("infra-backend-v2").copied().unwrap_or(0);
    assert_eq!(v1 + v2, WEIGHT_SAMPLES, "weight 0 gets nothing: {seen:?}");
    // v1's share is 0.7 (sd of the count ~7.9 of 300): within 5 sd, an even split fails.
    let share = v1 as f64 / WEIGHT_SAMPLES as f64;
    assert!((0.57..=0.83).contains(&share), "{seen:?}");
    // And the offline status, as the other scenarios.
    run(Scenario {
        requests: Vec::new(),
        ..s
    })
    .await;
}

/// HTTPRouteReferenceGrant: a backend in another namespace, allowed by a ReferenceGrant there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reference_grant_lets_a_route_use_a_service_of_another_namespace() {
    let yaml = gateway("same-namespace", "Same")
        + "---\n"
        + &route(
            INFRA,
            "reference-grant",
            "{name: same-namespace}",
            "  rules:\n  - backendRefs: [{name: web-backend, namespace: gateway-conformance-web-backend, port: 8080}]\n",
        )
        + "---
apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata: {name: reference-grant, namespace: gateway-conformance-web-backend}
spec:
  from: [{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: gateway-conformance-infra}]
  to: [{group: '', kind: Service, name: web-backend}]
";
    run(Scenario {
        id: "c-grant",
        yaml,
        checks: served("gateway-conformance-infra/reference-grant").to_vec(),
        requests: vec![req(
            "same-namespace",
            "g.example",
            "/",
            Backend("web-backend"),
        )],
        tls: None,
    })
    .await;
}

/// HTTPRouteObservedGenerationBump: every condition carries the route's generation.
#[test]
fn route_conditions_carry_the_generation_they_were_computed_for() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gen.yaml");
    for generation in [1, 2] {
        let yaml = gateway("same-namespace", "Same")
            + &format!(
                "---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: observed-generation-bump, namespace: {INFRA}, generation: {generation}}}
spec:
  parentRefs: [{{name: same-namespace}}]
  rules:
  - backendRefs: [{{name: infra-backend-v{generation}, port: 8080}}]
"
            );
        std::fs::write(&file, format!("{}---\n{}", base(), yaml)).unwrap();
        let json = plan_json(&file, "c-gen");
        let routes = route_status(&json);
        let conditions = &routes["gateway-conformance-infra/observed-generation-bump"]["parents"]
            [0]["conditions"];
        assert_eq!(cond(conditions, "Accepted").0, "True");
        let gens: Vec<&Value> = conditions
            .as_array()
            .unwrap()
            .iter()
            .map(|c| &c["observedGeneration"])
            .collect();
        assert!(
            !gens.is_empty() && gens.iter().all(|g| **g == generation),
            "{conditions:#}"
        );
    }
}

// ---- Refused as expected: the spec's status reason, and no backend answers. ----

/// HTTPRouteInvalidCrossNamespaceParentRef: the Gateway admits its own namespace only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_from_another_namespace_is_not_allowed_by_a_same_namespace_listener() {
    run(Scenario {
        id: "c-badparent",
        yaml: gateway("same-namespace", "Same")
            + "---\n"
            + &route(
                "gateway-conformance-web-backend",
                "invalid-cross-namespace-parent-ref",
                "{name: same-namespace, namespace: gateway-conformance-infra}",
                "  rules:\n  - backendRefs: [{name: web-backend, port: 8080}]\n",
            ),
        checks: vec![(
            "gateway-conformance-web-backend/invalid-cross-namespace-parent-ref",
            0,
            "Accepted",
            "False",
            "NotAllowedByListeners",
        )],
        requests: vec![req("same-namespace", "x.example", "/", Status(404))],
        tls: None,
    })
    .await;
}

/// HTTPRouteInvalidParentRefNotMatchingSectionName.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parent_ref_naming_no_listener_is_not_accepted() {
    run(Scenario {
        id: "c-section",
        yaml: gateway("same-namespace", "Same")
            + "---\n"
            + &route(
                INFRA,
                "nonexistent-section-name",
                "{name: same-namespace, sectionName: nonexistent}",
                "  rules:\n  - backendRefs: [{name: infra-backend-v1, port: 8080}]\n",
            ),
        checks: vec![(
            "gateway-conformance-infra/nonexistent-section-name",
            0,
            "Accepted",
            "False",
            "NoMatchingParent",
        )],
        requests: vec![req("same-namespace", "x.example", "/", Status(404))],
        tls: None,
    })
    .await;
}

/// HTTPRouteDisallowedKind: a listener that admits TLSRoutes only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_for_other_route_kinds_does_not_take_an_http_route() {
    let yaml = "apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: tlsroutes-only, namespace: gateway-conformance-infra}
spec:
  gatewayClassName: clb
  listeners:
  - name: http
    port: 80
    protocol: HTTP
    allowedRoutes: {kinds: [{kind: TLSRoute}]}
  - {name: ok, port: 8080, protocol: HTTP}
---
"
    .to_string()
        + &route(
            INFRA,
            "disallowed-kind",
            "{name: tlsroutes-only, sectionName: http}",
            "  rules:\n  - backendRefs: [{name: infra-backend-v1, port: 8080}]\n",
        );
    run(Scenario {
        id: "c-kind",
        yaml,
        checks: vec![(
            "gateway-conformance-infra/disallowed-kind",
            0,
            "Accepted",
            "False",
            "NotAllowedByListeners",
        )],
        requests: vec![],
        tls: None,
    })
    .await;
}

/// HTTPRouteMatching, HTTPRouteMatchingAcrossRoutes and HTTPRouteHeaderMatching: CLB cannot
/// match headers, so a rule with a header match is dropped whole (never served as its path
/// alone), with `UnsupportedValue`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_matches_are_refused_and_never_served_as_a_broader_path_match() {
    let yaml = gateway("same-namespace", "Same")
        + "---\n"
        + &route(
            INFRA,
            "matching",
            "{name: same-namespace}",
            "  hostnames: [example.com]
  rules:
  - matches:
    - path: {type: PathPrefix, value: /}
    - headers: [{name: version, value: one}]
    backendRefs: [{name: infra-backend-v1, port: 8080}]
  - matches:
    - path: {type: PathPrefix, value: /v2}
    - headers: [{name: version, value: two}]
    backendRefs: [{name: infra-backend-v2, port: 8080}]
",
        )
        + "---\n"
        + &route(
            INFRA,
            "header-matching",
            "{name: same-namespace}",
            "  hostnames: [headers.example.com]
  rules:
  - matches: [{headers: [{name: version, value: one}]}]
    backendRefs: [{name: infra-backend-v1, port: 8080}]
  - backendRefs: [{name: infra-backend-v3, port: 8080}]
",
        );
    run(Scenario {
        id: "c-headers",
        yaml,
        checks: vec![
            (
                "gateway-conformance-infra/matching",
                0,
                "Accepted",
                "False",
                "UnsupportedValue",
            ),
            (
                "gateway-conformance-infra/header-matching",
                0,
                "Accepted",
                "True",
                "Accepted",
            ),
            (
                "gateway-conformance-infra/header-matching",
                0,
                "PartiallyInvalid",
                "True",
                "UnsupportedValue",
            ),
        ],
        requests: vec![
            req("same-namespace", "example.com", "/", Status(404)),
            req("same-namespace", "example.com", "/v2", Status(404)),
            // The rule without a header match still serves; the header rule never does.
            req(
                "same-namespace",
                "headers.example.com",
                "/",
                Backend("infra-backend-v3"),
            ),
        ],
        tls: None,
    })
    .await;
}

/// HTTPRouteRedirectHostAndStatus: CLB redirects keep the host, so a hostname redirect is
/// refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_to_another_host_is_refused() {
    run(Scenario {
        id: "c-redirect",
        yaml: gateway("same-namespace", "Same")
            + "---\n"
            + &route(
                INFRA,
                "redirect-host-and-status",
                "{name: same-namespace}",
                "  rules:
  - matches: [{path: {type: PathPrefix, value: /hostname-redirect}}]
    filters:
    - type: RequestRedirect
      requestRedirect: {hostname: example.org}
",
            ),
        checks: vec![(
            "gateway-conformance-infra/redirect-host-and-status",
            0,
            "Accepted",
            "False",
            "UnsupportedValue",
        )],
        requests: vec![req(
            "same-namespace",
            "r.example",
            "/hostname-redirect",
            Status(404),
        )],
        tls: None,
    })
    .await;
}

// ---- Differs: the status is as upstream expects; CLB answers 503, not 500. ----

/// HTTPRouteInvalidNonExistentBackendRef, HTTPRouteInvalidBackendRefUnknownKind,
/// HTTPRouteInvalidCrossNamespaceBackendRef and HTTPRouteInvalidReferenceGrant: the rule keeps
/// its path but has no target, so CLB answers 503 (upstream expects 500; CLB cannot be told
/// which status to answer).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unresolvable_backend_refs_set_resolved_refs_false_and_serve_no_backend() {
    let r = |name: &str, host: &str, backend: &str| {
        route(
            INFRA,
            name,
            "{name: same-namespace}",
            &format!("  hostnames: [{host}]\n  rules:\n  - backendRefs: [{backend}]\n"),
        )
    };
    let yaml = [
        gateway("same-namespace", "Same"),
        r(
            "nonexistent",
            "missing.example",
            "{name: nonexistent, port: 8080}",
        ),
        r(
            "unknown-kind",
            "kind.example",
            "{group: unknown.group, kind: Unknown, name: infra-backend-v1, port: 8080}",
        ),
        r(
            "cross-namespace-backend",
            "cross.example",
            "{name: web-backend, namespace: gateway-conformance-web-backend, port: 8080}",
        ),
        r(
            "grant-for-another-service",
            "grant.example",
            "{name: app-backend-v1, namespace: gateway-conformance-app-backend, port: 8080}",
        ),
        "apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata: {name: other-service, namespace: gateway-conformance-app-backend}
spec:
  from: [{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: gateway-conformance-infra}]
  to: [{group: '', kind: Service, name: app-backend-v2}]
"
        .to_string(),
    ]
    .join("---\n");
    let g = "same-namespace";
    run(Scenario {
        id: "c-badref",
        yaml,
        checks: vec![
            (
                "gateway-conformance-infra/nonexistent",
                0,
                "ResolvedRefs",
                "False",
                "BackendNotFound",
            ),
            (
                "gateway-conformance-infra/nonexistent",
                0,
                "Accepted",
                "True",
                "Accepted",
            ),
            (
                "gateway-conformance-infra/unknown-kind",
                0,
                "ResolvedRefs",
                "False",
                "InvalidKind",
            ),
            (
                "gateway-conformance-infra/cross-namespace-backend",
                0,
                "ResolvedRefs",
                "False",
                "RefNotPermitted",
            ),
            (
                "gateway-conformance-infra/grant-for-another-service",
                0,
                "ResolvedRefs",
                "False",
                "RefNotPermitted",
            ),
        ],
        requests: vec![
            req(g, "missing.example", "/", Status(503)),
            req(g, "kind.example", "/", Status(503)),
            req(g, "cross.example", "/", Status(503)),
            req(g, "grant.example", "/", Status(503)),
        ],
        tls: None,
    })
    .await;
}

/// HTTPRoutePartiallyInvalidViaInvalidReferenceGrant: the valid rule serves, the rule with
/// the ungranted backend serves nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ungranted_backend_leaves_the_other_rules_served() {
    let yaml = gateway("same-namespace", "Same")
        + "---\n"
        + &route(
            INFRA,
            "invalid-reference-grant",
            "{name: same-namespace}",
            "  rules:
  - matches: [{path: {type: PathPrefix, value: /v2}}]
    backendRefs: [{name: app-backend-v2, namespace: gateway-conformance-app-backend, port: 8080}]
  - backendRefs: [{name: infra-backend-v1, port: 8080}]
",
        );
    run(Scenario {
        id: "c-partial",
        yaml,
        checks: vec![
            (
                "gateway-conformance-infra/invalid-reference-grant",
                0,
                "ResolvedRefs",
                "False",
                "RefNotPermitted",
            ),
            (
                "gateway-conformance-infra/invalid-reference-grant",
                0,
                "Accepted",
                "True",
                "Accepted",
            ),
        ],
        requests: vec![
            req(
                "same-namespace",
                "p.example",
                "/",
                Backend("infra-backend-v1"),
            ),
            req("same-namespace", "p.example", "/v2", Status(503)),
        ],
        tls: None,
    })
    .await;
}

// ---- Spec rules the upstream scenarios do not isolate. ----

/// Listeners distinct only by hostname: a request goes to the most specific matching listener
/// and to its routes only (GatewaySpec.listeners), never to a broader listener's routes, even
/// when the specific listener's routes do not match the path or it has no routes at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_most_specific_listener_takes_its_hosts_even_where_its_routes_do_not_match() {
    let gw = "apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: nested, namespace: gateway-conformance-infra}
spec:
  gatewayClassName: clb
  listeners:
  - {name: wide, port: 80, protocol: HTTP, hostname: '*.example.com'}
  - {name: narrow, port: 80, protocol: HTTP, hostname: foo.example.com}
  - {name: empty, port: 80, protocol: HTTP, hostname: '*.a.example.com'}
";
    let yaml = [
        gw.to_string(),
        route(
            INFRA,
            "wide",
            "{name: nested, sectionName: wide}",
            "  rules:\n  - backendRefs: [{name: infra-backend-v1, port: 8080}]\n",
        ),
        route(
            INFRA,
            "narrow",
            "{name: nested, sectionName: narrow}",
            "  rules:
  - matches: [{path: {type: Exact, value: /only}}]
    backendRefs: [{name: infra-backend-v2, port: 8080}]
",
        ),
    ]
    .join("---\n");
    let mut checks = served("gateway-conformance-infra/wide").to_vec();
    checks.extend(served("gateway-conformance-infra/narrow"));
    let g = "nested";
    run(Scenario {
        id: "c-nested",
        yaml,
        checks,
        requests: vec![
            req(g, "bar.example.com", "/other", Backend("infra-backend-v1")),
            req(g, "foo.example.com", "/only", Backend("infra-backend-v2")),
            req(g, "foo.example.com", "/other", Status(404)),
            req(g, "x.a.example.com", "/", Status(404)),
            req(g, "x.y.a.example.com", "/", Status(404)),
        ],
        tls: None,
    })
    .await;
}

/// HTTPRouteServiceTypes: a ClusterIP and a headless Service whose EndpointSlices were written
/// by hand (an IPv4 and an IPv6 slice each, target port 3000 behind Service port 8080).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hand_written_endpoint_slices_of_cluster_ip_and_headless_services_are_served() {
    let service = |name: &str, cluster_ip: &str, v4: &str, v6: &str| {
        format!(
            "apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: {INFRA}}}
spec:{cluster_ip}
  ports: [{{name: first-port, port: 8080, targetPort: 3000}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: {name}-ip4, namespace: {INFRA}, labels: {{kubernetes.io/service-name: {name}}}}}
addressType: IPv4
ports: [{{name: first-port, port: 3000}}]
endpoints:
- {{addresses: [{v4}], conditions: {{ready: true}}}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: {name}-ip6, namespace: {INFRA}, labels: {{kubernetes.io/service-name: {name}}}}}
addressType: IPv6
ports: [{{name: first-port, port: 3000}}]
endpoints:
- {{addresses: ['{v6}'], conditions: {{ready: true}}}}
"
        )
    };
    let yaml = [
        gateway("same-namespace", "Same"),
        service("manual-endpointslices", "", "10.9.4.1", "fd00::1"),
        service(
            "headless-manual-endpointslices",
            "\n  clusterIP: None",
            "10.9.4.2",
            "fd00::2",
        ),
        route(
            INFRA,
            "service-types",
            "{name: same-namespace}",
            "  rules:
  - matches: [{path: {type: Exact, value: /manual-endpointslices}}]
    backendRefs: [{name: manual-endpointslices, port: 8080}]
  - matches: [{path: {type: Exact, value: /headless-manual-endpointslices}}]
    backendRefs: [{name: headless-manual-endpointslices, port: 8080}]
",
        ),
    ]
    .join("---\n");
    let g = "same-namespace";
    run(Scenario {
        id: "c-svctypes",
        yaml,
        checks: served("gateway-conformance-infra/service-types").to_vec(),
        requests: vec![
            req(
                g,
                "s.example",
                "/manual-endpointslices",
                Backend("manual-endpointslices"),
            ),
            req(
                g,
                "s.example",
                "/headless-manual-endpointslices",
                Backend("headless-manual-endpointslices"),
            ),
        ],
        tls: None,
    })
    .await;
}
