//! Gateway API end to end through `apply -f` and the emulator's data plane: a Gateway with an
//! HTTP and an HTTPS listener, HTTPRoutes from two namespaces (one refused by `allowedRoutes`),
//! a weighted split, an HTTPS redirect, a header-match rule refused with its reason, and a
//! wildcard hostname over several labels; the computed status is checked field by field from
//! `plan -o json`.

use clb_ingress::emulator::config::Settings;
use clb_ingress::emulator::core::SystemClock;
use clb_ingress::emulator::dataplane::{DataPlane, DataPlaneSettings};
use clb_ingress::emulator::server;
use clb_test_support::cluster::get;
use clb_test_support::emulator::{TlsSecret, command};
use serde_json::Value;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

const V1: &str = "10.1.0.1:8080";
const V2: &str = "10.1.0.2:8080";
const OTHER: &str = "10.2.0.1:8080";

fn service(ns: &str, name: &str, ip: &str) -> String {
    format!(
        "apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: {ns}}}
spec: {{ports: [{{name: http, port: 80}}]}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: {name}-1, namespace: {ns}, labels: {{kubernetes.io/service-name: {name}}}}}
addressType: IPv4
ports: [{{name: http, port: 8080}}]
endpoints:
- {{addresses: [{ip}]}}
"
    )
}

fn manifests(secret: &TlsSecret) -> String {
    let indent = |t: &str| t.lines().map(|l| format!("    {l}\n")).collect::<String>();
    let docs = [
        "apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: clb}
spec:
  controllerName: clb-ingress.io/gateway-controller
  parametersRef: {group: clb-ingress.io, kind: ClbClassParameters, name: gw}
"
        .to_string(),
        "apiVersion: clb-ingress.io/v1alpha1
kind: ClbClassParameters
metadata: {name: gw}
spec: {targetMode: Direct}
"
        .to_string(),
        "apiVersion: v1
kind: Namespace
metadata: {name: app-a, labels: {team: a}}
---
apiVersion: v1
kind: Namespace
metadata: {name: app-b, labels: {team: b}}
"
        .to_string(),
        format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: web-tls, namespace: infra}}\ntype: kubernetes.io/tls\nstringData:\n  tls.crt: |\n{}  tls.key: |\n{}",
            indent(&secret.cert_pem),
            indent(&secret.key_pem)
        ),
        "apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: web, namespace: infra, generation: 2}
spec:
  gatewayClassName: clb
  listeners:
  - name: http
    port: 80
    protocol: HTTP
    hostname: '*.example.com'
    allowedRoutes:
      namespaces: {from: Selector, selector: {matchLabels: {team: a}}}
  - name: https
    port: 443
    protocol: HTTPS
    hostname: '*.example.com'
    tls: {certificateRefs: [{name: web-tls}]}
    allowedRoutes:
      namespaces: {from: Selector, selector: {matchLabels: {team: a}}}
"
        .to_string(),
        service("app-a", "v1", "10.1.0.1"),
        service("app-a", "v2", "10.1.0.2"),
        service("app-b", "other", "10.2.0.1"),
        "apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: shop, namespace: app-a, generation: 5}
spec:
  parentRefs: [{name: web, namespace: infra, sectionName: https}]
  hostnames: [shop.example.com]
  rules:
  - backendRefs:
    - {name: v1, port: 80, weight: 90}
    - {name: v2, port: 80, weight: 10}
  - matches:
    - path: {type: PathPrefix, value: /admin}
      headers: [{name: x-admin, value: '1'}]
    backendRefs: [{name: v2, port: 80}]
"
        .to_string(),
        "apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: to-https, namespace: app-a}
spec:
  parentRefs: [{name: web, namespace: infra, sectionName: http}]
  hostnames: [shop.example.com]
  rules:
  - filters:
    - type: RequestRedirect
      requestRedirect: {scheme: https, statusCode: 301}
"
        .to_string(),
        "apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: api, namespace: app-a}
spec:
  parentRefs: [{name: web, namespace: infra, sectionName: http}]
  hostnames: [api.example.com, '*.apps.example.com', api.example.net]
  rules:
  - matches: [{path: {type: Exact, value: /v1}}]
    backendRefs: [{name: v2, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /}}]
    backendRefs: [{name: v1, port: 80}]
"
        .to_string(),
        "apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: intruder, namespace: app-b, generation: 1}
spec:
  parentRefs: [{name: web, namespace: infra}]
  hostnames: [evil.example.com]
  rules:
  - backendRefs: [{name: other, port: 80}]
"
        .to_string(),
    ];
    docs.join("---\n")
}

/// `plan -o json` of the file, offline.
fn plan(file: &Path) -> (i32, Value, String) {
    let out = command()
        .arg("plan")
        .arg("-f")
        .arg(file)
        .args(["-o", "json", "--cluster-id", "gw"])
        .output()
        .expect("run clb-ingress plan");
    (
        out.status.code().unwrap_or(-1),
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Null),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The condition of `type_` in a JSON conditions list, as (status, reason, message).
fn cond<'a>(conditions: &'a Value, type_: &str) -> (&'a str, &'a str, &'a str) {
    let c = conditions
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == type_))
        .unwrap_or_else(|| panic!("no {type_} condition in {conditions:#}"));
    (
        c["status"].as_str().unwrap(),
        c["reason"].as_str().unwrap(),
        c["message"].as_str().unwrap(),
    )
}

#[test]
fn gateway_status_is_computed_per_listener_and_route_parent() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gw.yaml");
    let secret = TlsSecret::generate("web-tls", "shop.example.com");
    std::fs::write(&file, manifests(&secret)).unwrap();
    let (code, json, stderr) = plan(&file);
    assert_eq!(
        code, 1,
        "a refused route and a dropped rule exit 1: {stderr}"
    );
    let st = &json["gatewayApi"];
    assert_eq!(
        cond(&st["classes"][0]["conditions"], "Accepted").0,
        "True",
        "{st:#}"
    );
    let gw = &st["gateways"][0];
    assert_eq!(
        (gw["namespace"].as_str(), gw["name"].as_str()),
        (Some("infra"), Some("web"))
    );
    assert_eq!(cond(&gw["conditions"], "Accepted").0, "True");
    let accepted = gw["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Accepted")
        .unwrap();
    assert_eq!(accepted["observedGeneration"], 2);
    // Not programmed before the CLB exists.
    assert_eq!(cond(&gw["conditions"], "Programmed").1, "Pending");
    let listeners = gw["listeners"].as_array().unwrap();
    let l = |name: &str| listeners.iter().find(|l| l["name"] == name).unwrap();
    // http: to-https and api; https: shop. The intruder is not attached anywhere.
    assert_eq!(l("http")["attachedRoutes"], 2);
    assert_eq!(l("https")["attachedRoutes"], 1);
    for name in ["http", "https"] {
        let cs = &l(name)["conditions"];
        assert_eq!(cond(cs, "Accepted").0, "True");
        assert_eq!(cond(cs, "ResolvedRefs").0, "True");
        assert_eq!(
            cond(cs, "Conflicted"),
            ("False", "NoConflicts", "no conflicts")
        );
        assert_eq!(l(name)["supportedKinds"][0]["kind"], "HTTPRoute");
    }
    let route = |name: &str| {
        st["routes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == name)
            .unwrap_or_else(|| panic!("no status for {name}: {st:#}"))
            .clone()
    };
    let shop = route("shop");
    let p = &shop["parents"][0];
    assert_eq!(p["controllerName"], "clb-ingress.io/gateway-controller");
    assert_eq!(p["parentRef"]["sectionName"], "https");
    assert_eq!(cond(&p["conditions"], "Accepted").0, "True");
    assert_eq!(cond(&p["conditions"], "ResolvedRefs").0, "True");
    let (status, reason, message) = cond(&p["conditions"], "PartiallyInvalid");
    assert_eq!((status, reason), ("True", "UnsupportedValue"));
    assert!(
        message.starts_with("Dropped Rule")
            && message.contains("rules[1]")
            && message.contains("headers"),
        "{message}"
    );
    assert!(
        p["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["observedGeneration"] == 5),
        "{p:#}"
    );
    let intruder = route("intruder");
    let (status, reason, message) = cond(&intruder["parents"][0]["conditions"], "Accepted");
    assert_eq!((status, reason), ("False", "NotAllowedByListeners"));
    assert!(message.contains("app-b"), "{message}");
    assert!(stderr.contains("HTTPRoute app-b/intruder"), "{stderr}");
    assert!(
        stderr.contains("HTTPRoute app-a/shop: spec.rules[1]: UnsupportedValue"),
        "{stderr}"
    );
}

struct Plane {
    endpoint: String,
    offset: u16,
    _emu: server::Running,
}

async fn start_emulator() -> Plane {
    let offset: u16 = rand::random_range(20_000..50_000);
    let vip = Ipv4Addr::new(127, rand::random_range(2..=254), rand::random(), 1);
    let settings = Settings {
        listen: "127.0.0.1:0".parse().unwrap(),
        vip_base: vip,
        port_offset: offset,
        task_delay_ms: 0,
        ..Settings::default()
    };
    let plane = Arc::new(DataPlane::new(DataPlaneSettings {
        port_offset: offset,
        ..DataPlaneSettings::default()
    }));
    let emu = server::start(settings, Arc::new(SystemClock), plane)
        .await
        .unwrap();
    Plane {
        endpoint: format!("http://{}", emu.addr),
        offset,
        _emu: emu,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_programs_a_gateway_whose_routes_answer_through_the_data_plane() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gw.yaml");
    let secret = TlsSecret::generate("web-tls", "shop.example.com");
    std::fs::write(&file, manifests(&secret)).unwrap();
    let plane = start_emulator().await;
    let apply = |file: &Path| {
        tokio::task::block_in_place(|| {
            command()
                .arg("apply")
                .arg("-f")
                .arg(file)
                .args(["--clb-endpoint", &plane.endpoint, "--cluster-id", "gw"])
                .output()
                .expect("run apply")
        })
    };
    let out = apply(&file);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(1),
        "the refused route exits 1\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("gw:infra/web:"), "{stdout}\n{stderr}");
    let vip = stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("Gateway infra/web: address "))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no address in {stdout}"))
        .to_string();
    let ip: Ipv4Addr = vip.parse().unwrap();
    let http_port = 80 + plane.offset;
    let https_port = 443 + plane.offset;
    let mut builder = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .add_root_certificate(reqwest::Certificate::from_pem(secret.cert_pem.as_bytes()).unwrap());
    for host in [
        "shop.example.com",
        "api.example.com",
        "a.b.apps.example.com",
        "apps.example.com",
        "evil.example.com",
        "nobody.example.com",
    ] {
        builder = builder
            .resolve(host, SocketAddr::from((ip, http_port)))
            .resolve(host, SocketAddr::from((ip, https_port)));
    }
    let client = builder.build().unwrap();
    // The data plane applies the configuration shortly after the tasks end.
    let started = Instant::now();
    loop {
        let r = get(&client, "http", http_port, "api.example.com", "/v1").await;
        if r.0 == 200 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "not routed: {r:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let http = |host: &'static str, path: &'static str| get(&client, "http", http_port, host, path);
    // Exact /v1 and the prefix / of the api route.
    assert_eq!(http("api.example.com", "/v1").await.1, V2);
    assert_eq!(http("api.example.com", "/v1/x").await.1, V1);
    assert_eq!(http("api.example.com", "/v10").await.1, V1);
    // `*.apps.example.com` covers several labels, never the bare suffix.
    assert_eq!(http("a.b.apps.example.com", "/").await.1, V1);
    assert_eq!(http("apps.example.com", "/").await.0, 404);
    // The refused route and unknown hosts get 404, never another route's backend.
    let evil = http("evil.example.com", "/").await;
    assert_eq!(evil.0, 404, "{evil:?}");
    assert_ne!(evil.1, OTHER);
    assert_eq!(http("nobody.example.com", "/").await.0, 404);
    // The redirect to HTTPS keeps host and path.
    let (code, _, location) = http("shop.example.com", "/cart").await;
    assert_eq!(code, 301);
    assert_eq!(
        location,
        format!("https://shop.example.com:{https_port}/cart")
    );
    // HTTPS: the weighted split 90/10 between v1 and v2 (CLB weights 100 and 11).
    let mut seen = std::collections::BTreeMap::<String, usize>::new();
    for _ in 0..111 {
        let (code, target, _) = get(&client, "https", https_port, "shop.example.com", "/").await;
        assert_eq!(code, 200, "{target}");
        *seen.entry(target).or_default() += 1;
    }
    let v1 = seen.get(V1).copied().unwrap_or(0);
    let v2 = seen.get(V2).copied().unwrap_or(0);
    assert_eq!(v1 + v2, 111, "{seen:?}");
    // v2's share is 11/111 (mean 11 of 111, sd ~3.1): v1 >= 3 * v2 fails only past v2 = 27,
    // five standard deviations out, while an even split (55/56) still fails it.
    assert!(v2 >= 1 && v1 >= 3 * v2, "{seen:?}");
    // The dropped header rule does not take /admin: the split rule answers it.
    let (code, target, _) = get(&client, "https", https_port, "shop.example.com", "/admin").await;
    assert_eq!(code, 200);
    assert!(target == V1 || target == V2, "{target}");
    // A second apply writes nothing.
    let again = apply(&file);
    let stdout = String::from_utf8_lossy(&again.stdout).into_owned();
    assert!(stdout.contains("gw:infra/web: in sync"), "{stdout}");
}

/// The model alone (no CLB): the Gateway's status and its one stack.
fn build(yaml: &str) -> clb_ingress::model::BuildOutput {
    clb_ingress::model::build(&clb_test_support::snapshot(yaml))
}

const CLASS: &str = "apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: clb}
spec: {controllerName: clb-ingress.io/gateway-controller}
";

#[test]
fn listeners_sharing_a_port_conflict_by_protocol_or_hostname_and_are_not_served() {
    let out = build(&format!(
        "{CLASS}---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: gw, namespace: default}}
spec:
  gatewayClassName: clb
  listeners:
  - {{name: a, port: 80, protocol: HTTP, hostname: a.example.com}}
  - {{name: a-again, port: 80, protocol: HTTP, hostname: a.example.com}}
  - {{name: b, port: 80, protocol: HTTP, hostname: b.example.com}}
  - {{name: plain, port: 8080, protocol: HTTP}}
  - {{name: tls-on-8080, port: 8080, protocol: HTTPS, tls: {{certificateRefs: [{{name: none}}]}}}}
"
    ));
    let gw = &out.gateway.gateways[0];
    let conflicted = |name: &str| {
        let l = gw.listeners.iter().find(|l| l.name == name).unwrap();
        let c = l
            .conditions
            .iter()
            .find(|c| c.type_ == "Conflicted")
            .unwrap();
        (c.status, c.reason)
    };
    assert_eq!(conflicted("a"), ("True", "HostnameConflict"));
    assert_eq!(conflicted("a-again"), ("True", "HostnameConflict"));
    assert_eq!(conflicted("b"), ("False", "NoConflicts"));
    assert_eq!(conflicted("plain"), ("True", "ProtocolConflict"));
    assert_eq!(conflicted("tls-on-8080"), ("True", "ProtocolConflict"));
    let accepted = gw
        .conditions
        .iter()
        .find(|c| c.type_ == "Accepted")
        .unwrap();
    assert_eq!(
        (accepted.status, accepted.reason),
        ("True", "ListenersNotValid")
    );
    // Only listener b is served: one HTTP 80 CLB listener, no 8080.
    let lb = out.stacks.values().next().expect("the Gateway's stack");
    let ports: Vec<u16> = lb.listeners.iter().map(|l| l.port).collect();
    assert_eq!(ports, [80]);
}

#[test]
fn a_certificate_in_another_namespace_needs_a_reference_grant_there() {
    let secret = TlsSecret::generate("tls", "a.example.com");
    let indent = |t: &str| t.lines().map(|l| format!("    {l}\n")).collect::<String>();
    let base = format!(
        "{CLASS}---
apiVersion: v1
kind: Secret
metadata: {{name: tls, namespace: certs}}
type: kubernetes.io/tls
stringData:
  tls.crt: |
{}  tls.key: |
{}---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: gw, namespace: infra}}
spec:
  gatewayClassName: clb
  listeners:
  - name: https
    port: 443
    protocol: HTTPS
    tls: {{certificateRefs: [{{name: tls, namespace: certs}}]}}
",
        indent(&secret.cert_pem),
        indent(&secret.key_pem)
    );
    let refs = |out: &clb_ingress::model::BuildOutput| {
        let c = out.gateway.gateways[0].listeners[0]
            .conditions
            .iter()
            .find(|c| c.type_ == "ResolvedRefs")
            .unwrap()
            .clone();
        (c.status, c.reason)
    };
    let without = build(&base);
    assert_eq!(refs(&without), ("False", "RefNotPermitted"));
    assert!(without.stacks.is_empty(), "no listener is valid: no CLB");
    let with = build(&format!(
        "{base}---
apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata: {{name: gateways, namespace: certs}}
spec:
  from: [{{group: gateway.networking.k8s.io, kind: Gateway, namespace: infra}}]
  to: [{{group: '', kind: Secret}}]
"
    ));
    assert_eq!(refs(&with), ("True", "ResolvedRefs"));
    let lb = with.stacks.values().next().expect("the Gateway's stack");
    assert!(
        lb.listeners[0].domains[0].certificate.is_some(),
        "{:#?}",
        lb.listeners[0]
    );
}

#[test]
fn a_hostname_longer_than_a_clb_domain_is_left_out_with_a_problem_naming_it() {
    let long = format!("{}.{}.example.com", "a".repeat(40), "b".repeat(40));
    let out = build(&format!(
        "{CLASS}---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: gw, namespace: default}}
spec:
  gatewayClassName: clb
  listeners:
  - {{name: http, port: 80, protocol: HTTP}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: r, namespace: default}}
spec:
  parentRefs: [{{name: gw}}]
  hostnames: [{long}, short.example.com]
  rules:
  - matches: [{{path: {{type: Exact, value: /x}}}}]
"
    ));
    let p = out
        .problems
        .iter()
        .find(|p| p.message.contains(&long))
        .unwrap_or_else(|| panic!("{:#?}", out.problems));
    assert!(p.message.contains("at most 80"), "{p}");
    let lb = out.stacks.values().next().unwrap();
    let domains: Vec<&str> = lb.listeners[0]
        .domains
        .iter()
        .map(|d| d.domain.as_str())
        .collect();
    assert_eq!(
        domains,
        ["unmatched.clb-ingress.invalid", "short.example.com"]
    );
}

/// The manifests of the nested-wildcard check: `*.example.com` -> s1, `*.a.example.com` `/in` -> s2.
const NESTED: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: clb}
spec: {controllerName: clb-ingress.io/gateway-controller, parametersRef: {group: clb-ingress.io, kind: ClbClassParameters, name: gw}}
---
apiVersion: clb-ingress.io/v1alpha1
kind: ClbClassParameters
metadata: {name: gw}
spec: {targetMode: Direct}
---
apiVersion: v1
kind: Service
metadata: {name: s1, namespace: default}
spec: {ports: [{name: http, port: 80}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: s1-1, namespace: default, labels: {kubernetes.io/service-name: s1}}
addressType: IPv4
ports: [{name: http, port: 8080}]
endpoints: [{addresses: [10.0.0.1]}]
---
apiVersion: v1
kind: Service
metadata: {name: s2, namespace: default}
spec: {ports: [{name: http, port: 80}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: s2-1, namespace: default, labels: {kubernetes.io/service-name: s2}}
addressType: IPv4
ports: [{name: http, port: 8080}]
endpoints: [{addresses: [10.0.0.2]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: default}
spec:
  gatewayClassName: clb
  listeners: [{name: http, port: 80, protocol: HTTP}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: outer, namespace: default}
spec:
  parentRefs: [{name: gw}]
  hostnames: ['*.example.com']
  rules: [{backendRefs: [{name: s1, port: 80}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: inner, namespace: default}
spec:
  parentRefs: [{name: gw}]
  hostnames: ['*.a.example.com']
  rules: [{matches: [{path: {type: PathPrefix, value: /in}}], backendRefs: [{name: s2, port: 80}]}]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nested_wildcard_hostnames_route_through_the_data_plane_with_the_deeper_one_first() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("nested.yaml");
    std::fs::write(&file, NESTED).unwrap();
    let plane = start_emulator().await;
    let out = tokio::task::block_in_place(|| {
        command()
            .arg("apply")
            .arg("-f")
            .arg(&file)
            .args(["--clb-endpoint", &plane.endpoint, "--cluster-id", "nested"])
            .output()
            .expect("run apply")
    });
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let vip: Ipv4Addr = stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("Gateway default/gw: address "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no address in {stdout}"));
    let port = 80 + plane.offset;
    let hosts = [
        "x.example.com",
        "y.x.example.com",
        "b.a.example.com",
        "c.b.a.example.com",
        "a.example.com",
    ];
    let mut builder = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10));
    for h in hosts {
        builder = builder.resolve(h, SocketAddr::from((vip, port)));
    }
    let client = builder.build().unwrap();
    let started = Instant::now();
    while get(&client, "http", port, "x.example.com", "/").await.0 != 200 {
        assert!(started.elapsed() < Duration::from_secs(10), "not routed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let s1 = "10.0.0.1:8080";
    let s2 = "10.0.0.2:8080";
    for (host, path, want) in [
        ("x.example.com", "/in", s1),
        ("y.x.example.com", "/in/x", s1),
        // The deeper wildcard's rules first, the outer one's for the paths they do not match.
        ("b.a.example.com", "/in", s2),
        ("c.b.a.example.com", "/in/x", s2),
        ("b.a.example.com", "/", s1),
        // `*.a.example.com` does not match `a.example.com`.
        ("a.example.com", "/in", s1),
    ] {
        let got = get(&client, "http", port, host, path).await;
        assert_eq!((got.0, got.1.as_str()), (200, want), "{host}{path}");
    }
}
