//! GRPCRoute on CLB, end to end through `apply -f` and the emulator's data plane: service and
//! method matches become exact CLB URLs `=/pkg.Service/Method`, service matches the prefix
//! `/pkg.Service/`, a rule without matches `/`; the rules forward over gRPC (ForwardType GRPC)
//! on an HTTP/2 domain of the HTTPS listener; header and RegularExpression matches are dropped
//! with `UnsupportedValue`; an HTTP listener does not take GRPCRoutes; an HTTPRoute sharing a
//! hostname with an older GRPCRoute on a listener is not accepted there. And a rule whose
//! backend protocol must become GRPCS (which `ModifyRule` cannot set) is deleted and created
//! again, never skipped: in the plan, and on the emulator through `apply -f`.
//!
//! The emulator's data plane speaks HTTP/1.1 only, so routing is proven with HTTP/1.1 POSTs of
//! gRPC's shape (`content-type: application/grpc`, path `/pkg.Service/Method`) plus the URL
//! rules and ForwardType the emulator holds (docs/gateway-api.md says so).

use clb_ingress::model::{self, DesiredLb};
use clb_ingress::plan::{self, Change};
use clb_test_support::emulator::{TlsSecret, command};
use clb_test_support::gateway::{Plane, cond, gateway_address, service_with_pod};
use clb_test_support::{observe, ownership, snapshot};
use serde_json::Value;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

const SAY: &str = "10.3.0.1:9000";
const ECHO: &str = "10.3.0.2:9000";
const ANY: &str = "10.3.0.3:9000";

fn service(name: &str, ip: &str) -> String {
    service_with_pod("app", name, ("grpc", 9000), ip)
}

fn manifests(secret: &TlsSecret) -> String {
    let indent = |t: &str| t.lines().map(|l| format!("    {l}\n")).collect::<String>();
    [
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
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: grpc-tls, namespace: app}}\ntype: kubernetes.io/tls\nstringData:\n  tls.crt: |\n{}  tls.key: |\n{}",
            indent(&secret.cert_pem),
            indent(&secret.key_pem)
        ),
        "apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: edge, namespace: app}
spec:
  gatewayClassName: clb
  listeners:
  - {name: http, port: 80, protocol: HTTP, hostname: '*.example.com'}
  - name: https
    port: 443
    protocol: HTTPS
    hostname: '*.example.com'
    tls: {certificateRefs: [{name: grpc-tls}]}
"
        .to_string(),
        service("say", "10.3.0.1"),
        service("echo", "10.3.0.2"),
        service("any", "10.3.0.3"),
        "apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: echo, namespace: app, generation: 3, creationTimestamp: '2024-01-01T00:00:00Z'}
spec:
  parentRefs: [{name: edge, sectionName: https}]
  hostnames: [grpc.example.com]
  rules:
  - matches: [{method: {service: echo.v1.Echo, method: Say}}]
    backendRefs: [{name: say, port: 9000}]
  - matches: [{method: {service: echo.v1.Echo}}]
    backendRefs: [{name: echo, port: 9000}]
  - backendRefs: [{name: any, port: 9000}]
  - matches: [{headers: [{name: x-canary, value: '1'}]}]
    backendRefs: [{name: say, port: 9000}]
  - matches: [{method: {type: RegularExpression, service: 'echo\\..*', method: Say}}]
    backendRefs: [{name: say, port: 9000}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: cleartext, namespace: app}
spec:
  parentRefs: [{name: edge, sectionName: http}]
  hostnames: [plain.example.com]
  rules:
  - backendRefs: [{name: any, port: 9000}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web, namespace: app, creationTimestamp: '2025-01-01T00:00:00Z'}
spec:
  parentRefs: [{name: edge, sectionName: https}]
  hostnames: ['*.example.com']
  rules:
  - backendRefs: [{name: any, port: 9000}]
"
        .to_string(),
    ]
    .join("---\n")
}

fn write_manifests(dir: &Path) -> (std::path::PathBuf, TlsSecret) {
    let file = dir.join("grpc.yaml");
    let secret = TlsSecret::generate("grpc-tls", "grpc.example.com");
    std::fs::write(&file, manifests(&secret)).unwrap();
    (file, secret)
}

#[test]
fn grpc_route_status_names_each_dropped_match_and_the_refused_listeners() {
    let dir = tempfile::tempdir().unwrap();
    let (file, _) = write_manifests(dir.path());
    let out = command()
        .arg("plan")
        .arg("-f")
        .arg(&file)
        .args(["-o", "json", "--cluster-id", "grpc"])
        .output()
        .unwrap();
    let json: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "refusals exit 1: {stderr}");
    let st = &json["gatewayApi"];
    let listeners = st["gateways"][0]["listeners"].as_array().unwrap();
    let l = |name: &str| listeners.iter().find(|l| l["name"] == name).unwrap();
    let kinds = |name: &str| -> Vec<String> {
        l(name)["supportedKinds"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kind"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(kinds("http"), ["HTTPRoute"]);
    assert_eq!(kinds("https"), ["HTTPRoute", "GRPCRoute"]);
    // Only the GRPCRoute `echo` is attached: `web` meets its hostname, `cleartext` is on HTTP.
    assert_eq!(l("https")["attachedRoutes"], 1, "{st:#}");
    assert_eq!(l("http")["attachedRoutes"], 0, "{st:#}");
    let route = |kind: &str, name: &str| {
        st["routes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["kind"] == kind && r["name"] == name)
            .unwrap_or_else(|| panic!("no status for {kind} {name}: {st:#}"))["parents"][0]
            .clone()
    };
    let echo = route("GRPCRoute", "echo");
    assert_eq!(echo["controllerName"], "clb-ingress.io/gateway-controller");
    assert_eq!(echo["parentRef"]["sectionName"], "https");
    assert_eq!(cond(&echo["conditions"], "Accepted").0, "True");
    assert_eq!(cond(&echo["conditions"], "ResolvedRefs").0, "True");
    let (status, reason, message) = cond(&echo["conditions"], "PartiallyInvalid");
    assert_eq!((status, reason), ("True", "UnsupportedValue"));
    assert!(
        message.contains("rules[3]: matches[0].headers")
            && message.contains("rules[4]: matches[0].method: RegularExpression"),
        "{message}"
    );
    assert!(
        echo["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["observedGeneration"] == 3),
        "{echo:#}"
    );
    let cleartext = route("GRPCRoute", "cleartext");
    let (status, reason, message) = cond(&cleartext["conditions"], "Accepted");
    assert_eq!((status, reason), ("False", "NotAllowedByListeners"));
    assert!(message.contains("HTTPS listeners only"), "{message}");
    let web = route("HTTPRoute", "web");
    let (status, reason, message) = cond(&web["conditions"], "Accepted");
    assert_eq!((status, reason), ("False", "NotAllowedByListeners"));
    assert!(message.contains("older GRPCRoute"), "{message}");
    assert!(
        stderr.contains("GRPCRoute app/echo: spec.rules[3]: UnsupportedValue"),
        "{stderr}"
    );
}

/// (status, x-clb-target) of a gRPC-shaped HTTP/1.1 POST through the data plane.
async fn call(client: &reqwest::Client, url: &str) -> (u16, String) {
    match client
        .post(url)
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(vec![0u8, 0, 0, 0, 0])
        .send()
        .await
    {
        Ok(r) => (
            r.status().as_u16(),
            r.headers()
                .get("x-clb-target")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string(),
        ),
        Err(e) => (0, e.to_string()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_route_methods_reach_their_backends_over_grpc_rules_of_the_https_listener() {
    let dir = tempfile::tempdir().unwrap();
    let (file, secret) = write_manifests(dir.path());
    let plane = Plane::start().await;
    let (code, stdout, stderr) = plane.apply(&file, "grpc");
    assert_eq!(code, 1, "refusals exit 1\n{stdout}\n{stderr}");
    let vip = gateway_address(&stdout, "app/edge")
        .unwrap_or_else(|| panic!("no address in {stdout}\n{stderr}"));
    // The CLB holds the gRPC rules: exact method URL, service prefix, catch-all, all GRPC,
    // on an HTTP/2 domain.
    let state = plane.state().await;
    let rules: Vec<&Value> = state["lbs"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|lb| lb["listeners"].as_array().into_iter().flatten())
        .flat_map(|l| l["rules"].as_array().into_iter().flatten())
        .filter(|r| r.to_string().contains("grpc.example.com"))
        .collect();
    let urls: Vec<(&str, &str, bool)> = {
        let mut u: Vec<_> = rules
            .iter()
            .map(|r| {
                (
                    r["url"].as_str().unwrap_or(""),
                    r["forward_type"].as_str().unwrap_or(""),
                    r["http2"].as_bool().unwrap_or(false),
                )
            })
            .collect();
        u.sort();
        u
    };
    assert_eq!(
        urls,
        [
            ("/", "GRPC", true),
            ("/echo.v1.Echo/", "GRPC", true),
            ("=/echo.v1.Echo", "GRPC", true),
            ("=/echo.v1.Echo/Say", "GRPC", true),
        ],
        "{state:#}"
    );
    let https_port = 443 + plane.offset;
    let http_port = 80 + plane.offset;
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .add_root_certificate(reqwest::Certificate::from_pem(secret.cert_pem.as_bytes()).unwrap())
        .resolve("grpc.example.com", SocketAddr::from((vip, https_port)))
        .resolve("plain.example.com", SocketAddr::from((vip, http_port)))
        .build()
        .unwrap();
    let url = |path: &str| format!("https://grpc.example.com:{https_port}{path}");
    let started = Instant::now();
    loop {
        let r = call(&client, &url("/echo.v1.Echo/Say")).await;
        if r.0 == 200 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "not routed: {r:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for (path, want) in [
        ("/echo.v1.Echo/Say", SAY),
        ("/echo.v1.Echo/Shout", ECHO),
        ("/echo.v1.Echo/Say/x", ECHO),
        // The service match covers the paths under `/echo.v1.Echo/` only.
        ("/echo.v1.Echo", ANY),
        ("/echo.v1.EchoTwo/Say", ANY),
        ("/other.Svc/Call", ANY),
    ] {
        assert_eq!(
            call(&client, &url(path)).await,
            (200, want.to_string()),
            "{path}"
        );
    }
    // The GRPCRoute refused on the HTTP listener serves nothing there.
    let plain = call(
        &client,
        &format!("http://plain.example.com:{http_port}/echo.v1.Echo/Say"),
    )
    .await;
    assert_eq!(plain.0, 404, "{plain:?}");
    // A second apply writes nothing.
    let (_, stdout, _) = plane.apply(&file, "grpc");
    assert!(stdout.contains("gw:app/edge: in sync"), "{stdout}");
}

/// The one stack of a GRPCRoute on an HTTPS listener, and its GRPC rule URLs.
fn grpc_stack() -> DesiredLb {
    let secret = TlsSecret::generate("grpc-tls", "grpc.example.com");
    let out = model::build(&snapshot(&manifests(&secret)));
    out.stacks.into_values().next().expect("one stack")
}

fn set_forward(lb: &mut DesiredLb, url: &str, to: &str) {
    let rule = lb
        .listeners
        .iter_mut()
        .flat_map(|l| l.domains.iter_mut())
        .filter(|d| d.domain == "grpc.example.com")
        .flat_map(|d| d.rules.iter_mut())
        .find(|r| r.url == url)
        .unwrap_or_else(|| panic!("no rule {url}"));
    rule.settings.forward_type = Some(to.to_string());
}

#[test]
fn a_rule_that_must_become_grpcs_is_deleted_and_created_again_never_skipped() {
    let before = grpc_stack();
    let mut after = before.clone();
    set_forward(&mut after, "=/echo.v1.Echo/Say", "GRPCS");
    let p = plan::diff(Some(&after), Some(&observe(&before)), &ownership(&before)).unwrap();
    let kinds: Vec<&str> = p.changes.iter().map(Change::kind).collect();
    let delete = kinds.iter().position(|k| *k == "DeleteRules");
    let create = kinds.iter().position(|k| *k == "CreateRules");
    assert!(
        delete.is_some() && create.is_some() && delete < create,
        "{kinds:?}"
    );
    assert!(!kinds.contains(&"ModifyRuleSettings"), "{kinds:?}");
    let Change::CreateRules { rules, .. } = &p.changes[create.unwrap()] else {
        unreachable!()
    };
    assert_eq!(rules.len(), 1);
    assert_eq!(rules[0].url, "=/echo.v1.Echo/Say");
    assert_eq!(rules[0].settings.forward_type.as_deref(), Some("GRPCS"));
    let Change::DeleteRules { rules, .. } = &p.changes[delete.unwrap()] else {
        unreachable!()
    };
    assert_eq!(rules.len(), 1);
    assert_eq!(rules[0].2, "=/echo.v1.Echo/Say");
    // Its targets are registered again on the new rule.
    assert!(kinds.contains(&"RegisterTargets"), "{kinds:?}");
    // From GRPCS back to GRPC, ModifyRule can do it in place.
    let back = plan::diff(Some(&before), Some(&observe(&after)), &ownership(&before)).unwrap();
    let kinds: Vec<&str> = back.changes.iter().map(Change::kind).collect();
    assert_eq!(kinds, ["ModifyRuleSettings"]);
}

/// An Ingress on HTTPS whose Services' backend protocol is `protocol` (a ClbBackendConfig); `/v1`
/// goes to a second Service so the rule economy keeps its rule.
fn backend_protocol_world(secret: &TlsSecret, protocol: &str) -> String {
    let indent = |t: &str| t.lines().map(|l| format!("    {l}\n")).collect::<String>();
    format!(
        "apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: {{name: clb}}
spec:
  controller: clb-ingress.io/ingress-controller
  parameters: {{apiGroup: clb-ingress.io, kind: ClbClassParameters, name: direct}}
---
apiVersion: clb-ingress.io/v1alpha1
kind: ClbClassParameters
metadata: {{name: direct}}
spec: {{targetMode: Direct}}
---
apiVersion: clb-ingress.io/v1alpha1
kind: ClbBackendConfig
metadata: {{name: proto, namespace: app}}
spec: {{backendProtocol: {protocol}}}
---
apiVersion: v1
kind: Service
metadata:
  name: api
  namespace: app
  annotations: {{clb-ingress.io/backend-config: '{{\"ports\": {{\"80\": \"proto\"}}}}'}}
spec: {{ports: [{{name: http, port: 80}}]}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: api-a, namespace: app, labels: {{kubernetes.io/service-name: api}}}}
addressType: IPv4
ports: [{{name: http, port: 8443}}]
endpoints:
- {{addresses: [10.4.0.1]}}
---
apiVersion: v1
kind: Service
metadata:
  name: api-v1
  namespace: app
  annotations: {{clb-ingress.io/backend-config: '{{\"ports\": {{\"80\": \"proto\"}}}}'}}
spec: {{ports: [{{name: http, port: 80}}]}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: api-v1-a, namespace: app, labels: {{kubernetes.io/service-name: api-v1}}}}
addressType: IPv4
ports: [{{name: http, port: 8443}}]
endpoints:
- {{addresses: [10.4.0.2]}}
---
apiVersion: v1
kind: Secret
metadata: {{name: api-tls, namespace: app}}
type: kubernetes.io/tls
stringData:
  tls.crt: |
{}  tls.key: |
{}---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {{name: api, namespace: app}}
spec:
  ingressClassName: clb
  tls: [{{hosts: [api.example.com], secretName: api-tls}}]
  rules:
  - host: api.example.com
    http:
      paths:
      - {{path: /, pathType: Prefix, backend: {{service: {{name: api, port: {{number: 80}}}}}}}}
      - {{path: /v1, pathType: Exact, backend: {{service: {{name: api-v1, port: {{number: 80}}}}}}}}
",
        indent(&secret.cert_pem),
        indent(&secret.key_pem)
    )
}

/// (url, ForwardType) of the HTTPS rules of `host` the emulator holds.
fn forward_types(state: &Value, host: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = state["lbs"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|lb| lb["listeners"].as_array().into_iter().flatten())
        .filter(|l| l["protocol"] == "HTTPS")
        .flat_map(|l| l["rules"].as_array().into_iter().flatten())
        .filter(|r| r.to_string().contains(host))
        .map(|r| {
            (
                r["url"].as_str().unwrap_or("").to_string(),
                r["forward_type"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switching_every_rule_of_a_domain_to_grpcs_recreates_them_on_the_clb_and_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ingress.yaml");
    let secret = TlsSecret::generate("api-tls", "api.example.com");
    let plane = Plane::start().await;
    std::fs::write(&file, backend_protocol_world(&secret, "HTTPS")).unwrap();
    let (code, stdout, stderr) = plane.apply(&file, "proto");
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let host = "api.example.com";
    assert_eq!(
        forward_types(&plane.state().await, host),
        [
            ("/".into(), "HTTPS".into()),
            ("=/v1".into(), "HTTPS".into())
        ]
    );
    std::fs::write(&file, backend_protocol_world(&secret, "GRPCS")).unwrap();
    let (code, stdout, stderr) = plane.apply(&file, "proto");
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert_eq!(
        forward_types(&plane.state().await, host),
        [
            ("/".into(), "GRPCS".into()),
            ("=/v1".into(), "GRPCS".into())
        ],
        "{stdout}"
    );
    // The remade domain kept its certificate and serves each path from its pod.
    let vip: std::net::Ipv4Addr = stdout
        .split_whitespace()
        .find_map(|w| w.parse().ok())
        .unwrap_or_else(|| panic!("no address in {stdout}"));
    let port = 443 + plane.offset;
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .add_root_certificate(reqwest::Certificate::from_pem(secret.cert_pem.as_bytes()).unwrap())
        .resolve(host, SocketAddr::from((vip, port)))
        .build()
        .unwrap();
    for (path, pod) in [
        ("/v1", "10.4.0.2:8443"),
        ("/echo.v1.Echo/Say", "10.4.0.1:8443"),
    ] {
        let url = format!("https://{host}:{port}{path}");
        let started = Instant::now();
        loop {
            let got = call(&client, &url).await;
            if got == (200, pod.to_string()) {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "{path}: {got:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    // And it is in sync afterwards.
    let (_, stdout, _) = plane.apply(&file, "proto");
    assert!(stdout.contains("in sync"), "{stdout}");
}
