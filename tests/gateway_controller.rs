//! Gateway API through the controller (`run --gateway-api`): the test API server serving the
//! pinned v1.3.0 standard-channel CRDs, the emulator's data plane answering requests. A
//! GatewayClass, a Gateway with HTTP and HTTPS listeners, HTTPRoutes from two namespaces (one
//! refused by `allowedRoutes`), a weighted split, a redirect, a header-match rule refused;
//! status checked field by field; a no-change resync writes nothing (cloud or status);
//! deleting the Gateway deletes its CLB.

use clb_test_support::cluster::env;
use clb_test_support::cluster::get;
use clb_test_support::emulator::TlsSecret;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject};
use serde_json::{Value, json};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

const V1: &str = "10.1.0.1:8080";
const V2: &str = "10.1.0.2:8080";
const OTHER: &str = "10.2.0.1:8080";
const CONTROLLER: &str = "clb-ingress.io/gateway-controller";

fn gateway_api(kind: &str, plural: &str) -> ApiResource {
    ApiResource {
        group: "gateway.networking.k8s.io".into(),
        version: "v1".into(),
        api_version: "gateway.networking.k8s.io/v1".into(),
        kind: kind.into(),
        plural: plural.into(),
    }
}

async fn get_obj(
    kube: &kube::Client,
    kind: &str,
    plural: &str,
    ns: Option<&str>,
    name: &str,
) -> Option<DynamicObject> {
    let ar = gateway_api(kind, plural);
    let api: Api<DynamicObject> = match ns {
        Some(ns) => Api::namespaced_with(kube.clone(), ns, &ar),
        None => Api::all_with(kube.clone(), &ar),
    };
    api.get_opt(name).await.unwrap()
}

/// The condition of `type_` in a conditions list.
fn cond<'a>(conditions: &'a Value, type_: &str) -> &'a Value {
    conditions
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == type_))
        .unwrap_or_else(|| panic!("no {type_} condition in {conditions:#}"))
}

/// (status, reason, observedGeneration) of a condition.
fn srg(c: &Value) -> (&str, &str, i64) {
    (
        c["status"].as_str().unwrap_or(""),
        c["reason"].as_str().unwrap_or(""),
        c["observedGeneration"].as_i64().unwrap_or(-1),
    )
}

async fn objects(e: &clb_test_support::cluster::Env, secret: &TlsSecret) {
    for (ns, team) in [("infra", "infra"), ("app-a", "a"), ("app-b", "b")] {
        e.apply(json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": ns, "labels": {"team": team}}}))
            .await;
    }
    e.apply(
        json!({"apiVersion": "clb-ingress.io/v1alpha1", "kind": "ClbClassParameters",
        "metadata": {"name": "gw"}, "spec": {"targetMode": "Direct"}}),
    )
    .await;
    e.apply(json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
        "metadata": {"name": "clb"},
        "spec": {"controllerName": CONTROLLER,
                 "parametersRef": {"group": "clb-ingress.io", "kind": "ClbClassParameters", "name": "gw"}}}))
        .await;
    e.apply(json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "web-tls", "namespace": "infra"}, "type": "kubernetes.io/tls",
        "stringData": {"tls.crt": secret.cert_pem, "tls.key": secret.key_pem}}))
        .await;
    for (ns, name, ip) in [
        ("app-a", "v1", "10.1.0.1"),
        ("app-a", "v2", "10.1.0.2"),
        ("app-b", "other", "10.2.0.1"),
    ] {
        e.apply(json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}]}}))
            .await;
        e.apply(
            json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": format!("{name}-1"), "namespace": ns,
                         "labels": {"kubernetes.io/service-name": name}},
            "addressType": "IPv4", "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            "endpoints": [{"addresses": [ip], "conditions": {"ready": true}}]}),
        )
        .await;
    }
    let allowed =
        json!({"namespaces": {"from": "Selector", "selector": {"matchLabels": {"team": "a"}}}});
    e.apply(
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
        "metadata": {"name": "web", "namespace": "infra"},
        "spec": {"gatewayClassName": "clb", "listeners": [
            {"name": "http", "port": 80, "protocol": "HTTP", "hostname": "*.example.com",
             "allowedRoutes": allowed},
            {"name": "https", "port": 443, "protocol": "HTTPS", "hostname": "*.example.com",
             "tls": {"certificateRefs": [{"name": "web-tls"}]}, "allowedRoutes": allowed}]}}),
    )
    .await;
    let route = |ns: &str, name: &str, spec: Value| {
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"name": name, "namespace": ns}, "spec": spec})
    };
    e.apply(route("app-a", "shop", json!({
        "parentRefs": [{"name": "web", "namespace": "infra", "sectionName": "https"}],
        "hostnames": ["shop.example.com"],
        "rules": [
            {"backendRefs": [{"name": "v1", "port": 80, "weight": 90}, {"name": "v2", "port": 80, "weight": 10}]},
            {"matches": [{"path": {"type": "PathPrefix", "value": "/admin"},
                          "headers": [{"name": "x-admin", "value": "1"}]}],
             "backendRefs": [{"name": "v2", "port": 80}]}]})))
    .await;
    e.apply(route(
        "app-a",
        "to-https",
        json!({
        "parentRefs": [{"name": "web", "namespace": "infra", "sectionName": "http"}],
        "hostnames": ["shop.example.com"],
        "rules": [{"filters": [{"type": "RequestRedirect",
                                "requestRedirect": {"scheme": "https", "statusCode": 301}}]}]}),
    ))
    .await;
    e.apply(route("app-a", "api", json!({
        "parentRefs": [{"name": "web", "namespace": "infra", "sectionName": "http"}],
        "hostnames": ["api.example.com"],
        "rules": [
            {"matches": [{"path": {"type": "Exact", "value": "/v1"}}], "backendRefs": [{"name": "v2", "port": 80}]},
            {"matches": [{"path": {"type": "PathPrefix", "value": "/"}}], "backendRefs": [{"name": "v1", "port": 80}]}]})))
    .await;
    e.apply(route(
        "app-b",
        "intruder",
        json!({
        "parentRefs": [{"name": "web", "namespace": "infra"}],
        "hostnames": ["evil.example.com"],
        "rules": [{"backendRefs": [{"name": "other", "port": 80}]}]}),
    ))
    .await;
}

/// The resourceVersions of the Gateway API objects (unchanged: no status write).
async fn versions(kube: &kube::Client) -> Vec<String> {
    let mut out = Vec::new();
    let class = get_obj(kube, "GatewayClass", "gatewayclasses", None, "clb").await;
    let gw = get_obj(kube, "Gateway", "gateways", Some("infra"), "web").await;
    out.extend(
        [class, gw]
            .into_iter()
            .flatten()
            .map(|o| o.metadata.resource_version.unwrap_or_default()),
    );
    for (ns, name) in [
        ("app-a", "shop"),
        ("app-a", "to-https"),
        ("app-a", "api"),
        ("app-b", "intruder"),
    ] {
        let r = get_obj(kube, "HTTPRoute", "httproutes", Some(ns), name)
            .await
            .unwrap();
        out.push(r.metadata.resource_version.unwrap_or_default());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_is_programmed_by_the_controller_and_its_status_and_data_plane_answer_per_the_spec()
 {
    let e = env().await;
    e.install_gateway_api_crds().await;
    let secret = TlsSecret::generate("web-tls", "shop.example.com");
    objects(&e, &secret).await;
    let kube = kube::Client::try_from(
        kube::Config::from_custom_kubeconfig(
            kube::config::Kubeconfig::read_from(e.kubeconfig()).unwrap(),
            &Default::default(),
        )
        .await
        .unwrap(),
    )
    .unwrap();
    let mut ctl = e.controller("gw1", &["--gateway-api", "--resync-seconds", "2"]);
    // The Gateway gets its address and Programmed.
    let started = Instant::now();
    let gw = loop {
        let gw = get_obj(&kube, "Gateway", "gateways", Some("infra"), "web")
            .await
            .unwrap();
        if gw.data["status"]["addresses"][0]["value"].is_string() {
            break gw;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no address:\n{}",
            ctl.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let st = &gw.data["status"];
    let generation = gw.metadata.generation.unwrap();
    assert_eq!(st["addresses"][0]["type"], "IPAddress");
    let vip = st["addresses"][0]["value"].as_str().unwrap().to_string();
    assert_eq!(
        srg(cond(&st["conditions"], "Accepted")),
        ("True", "Accepted", generation)
    );
    assert_eq!(
        srg(cond(&st["conditions"], "Programmed")),
        ("True", "Programmed", generation)
    );
    assert!(cond(&st["conditions"], "Programmed")["lastTransitionTime"].is_string());
    let listener = |name: &str| {
        st["listeners"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["name"] == name)
            .unwrap_or_else(|| panic!("no listener {name}: {st:#}"))
            .clone()
    };
    // http: to-https and api; https: shop. The intruder is not attached.
    assert_eq!(listener("http")["attachedRoutes"], 2, "{st:#}");
    assert_eq!(listener("https")["attachedRoutes"], 1, "{st:#}");
    for name in ["http", "https"] {
        let l = listener(name);
        let cs = &l["conditions"];
        assert_eq!(srg(cond(cs, "Accepted")), ("True", "Accepted", generation));
        assert_eq!(
            srg(cond(cs, "ResolvedRefs")),
            ("True", "ResolvedRefs", generation)
        );
        assert_eq!(
            srg(cond(cs, "Conflicted")),
            ("False", "NoConflicts", generation)
        );
        assert_eq!(
            srg(cond(cs, "Programmed")),
            ("True", "Programmed", generation)
        );
        assert_eq!(l["supportedKinds"][0]["kind"], "HTTPRoute");
    }
    let class = get_obj(&kube, "GatewayClass", "gatewayclasses", None, "clb")
        .await
        .unwrap();
    assert_eq!(
        srg(cond(&class.data["status"]["conditions"], "Accepted")),
        ("True", "Accepted", class.metadata.generation.unwrap())
    );
    // Routes: ours only in parents[], with the spec's reasons.
    let route = |ns: &'static str, name: &'static str| {
        let kube = kube.clone();
        async move {
            let started = Instant::now();
            loop {
                let r = get_obj(&kube, "HTTPRoute", "httproutes", Some(ns), name)
                    .await
                    .unwrap();
                if r.data["status"]["parents"]
                    .as_array()
                    .is_some_and(|p| !p.is_empty())
                {
                    return r;
                }
                assert!(
                    started.elapsed() < Duration::from_secs(10),
                    "no status on {ns}/{name}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    let shop = route("app-a", "shop").await;
    let g = shop.metadata.generation.unwrap();
    let p = &shop.data["status"]["parents"][0];
    assert_eq!(p["controllerName"], CONTROLLER);
    assert_eq!(p["parentRef"]["name"], "web");
    assert_eq!(p["parentRef"]["sectionName"], "https");
    assert_eq!(
        srg(cond(&p["conditions"], "Accepted")),
        ("True", "Accepted", g)
    );
    assert_eq!(
        srg(cond(&p["conditions"], "ResolvedRefs")),
        ("True", "ResolvedRefs", g)
    );
    let partial = cond(&p["conditions"], "PartiallyInvalid");
    assert_eq!(srg(partial), ("True", "UnsupportedValue", g));
    let message = partial["message"].as_str().unwrap();
    assert!(
        message.contains("rules[1]") && message.contains("headers"),
        "{message}"
    );
    let intruder = route("app-b", "intruder").await;
    let c = cond(
        &intruder.data["status"]["parents"][0]["conditions"],
        "Accepted",
    );
    assert_eq!(
        srg(c),
        (
            "False",
            "NotAllowedByListeners",
            intruder.metadata.generation.unwrap()
        )
    );
    // Warning Events name the refused rule on its route.
    let started = Instant::now();
    while !e
        .events_in("app-a", "shop")
        .await
        .iter()
        .any(|(t, r, n)| t == "Warning" && r == "UnsupportedValue" && n.contains("rules[1]"))
    {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no Warning on app-a/shop"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The data plane answers per the routes.
    let ip: Ipv4Addr = vip.parse().unwrap();
    let (http_port, https_port) = (80 + e.offset(), 443 + e.offset());
    let mut builder = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .add_root_certificate(reqwest::Certificate::from_pem(secret.cert_pem.as_bytes()).unwrap());
    for host in ["shop.example.com", "api.example.com", "evil.example.com"] {
        builder = builder
            .resolve(host, SocketAddr::from((ip, http_port)))
            .resolve(host, SocketAddr::from((ip, https_port)));
    }
    let client = builder.build().unwrap();
    let started = Instant::now();
    while get(&client, "http", http_port, "api.example.com", "/v1")
        .await
        .1
        != V2
    {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "not routed:\n{}",
            ctl.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        get(&client, "http", http_port, "api.example.com", "/v1/x")
            .await
            .1,
        V1
    );
    let evil = get(&client, "http", http_port, "evil.example.com", "/").await;
    assert_eq!(evil.0, 404, "{evil:?}");
    assert_ne!(evil.1, OTHER);
    let (code, _, location) = get(&client, "http", http_port, "shop.example.com", "/cart").await;
    assert_eq!(code, 301);
    assert_eq!(
        location,
        format!("https://shop.example.com:{https_port}/cart")
    );
    let mut seen = std::collections::BTreeMap::<String, usize>::new();
    for _ in 0..111 {
        let (code, target, _) = get(&client, "https", https_port, "shop.example.com", "/").await;
        assert_eq!(code, 200, "{target}");
        *seen.entry(target).or_default() += 1;
    }
    let (v1, v2) = (
        seen.get(V1).copied().unwrap_or(0),
        seen.get(V2).copied().unwrap_or(0),
    );
    assert_eq!(v1 + v2, 111, "{seen:?}");
    // 90/10 (CLB weights 100 and 11): an even split fails this, the seeded 90/10 passes.
    assert!(v2 >= 1 && v1 >= 3 * v2, "{seen:?}");

    // A no-change resync (every 2 s) makes no cloud write and no status write.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = versions(&kube).await;
    e.reset_counters().await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let counters = e.counters().await;
    let writes: u64 = counters["writes"]
        .as_object()
        .map(|w| w.values().filter_map(Value::as_u64).sum())
        .unwrap_or(0);
    assert_eq!(writes, 0, "{counters:#}");
    assert!(
        counters["reads"].as_object().is_some_and(|r| !r.is_empty()),
        "the resync ran (it reads): {counters:#}"
    );
    assert_eq!(
        versions(&kube).await,
        before,
        "a status was written on a no-change resync"
    );

    // Deleting the Gateway deletes its CLB.
    assert_eq!(e.lb_count().await, 1);
    let api: Api<DynamicObject> =
        Api::namespaced_with(kube.clone(), "infra", &gateway_api("Gateway", "gateways"));
    api.delete("web", &DeleteParams::default()).await.unwrap();
    let started = Instant::now();
    while e.lb_count().await != 0 {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "CLB not deleted:\n{}",
            ctl.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    ctl.kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_gateway_api_crds_the_controller_logs_one_error_and_keeps_serving_ingresses() {
    let e = env().await;
    e.class("PerIngress").await;
    e.service("web", &["10.3.0.1"]).await;
    e.ingress("web", "web.example.com", &[("/", "Prefix", "web")])
        .await;
    let mut ctl = e.controller("gw2", &["--gateway-api"]);
    e.until_routed(
        "web",
        "web.example.com",
        "/",
        "10.3.0.1:8080",
        Duration::from_secs(30),
    )
    .await;
    let log = ctl.log();
    assert_eq!(
        log.matches("--gateway-api is on but the").count(),
        1,
        "one clear error:\n{log}"
    );
    assert!(
        ctl.child.try_wait().unwrap().is_none(),
        "the controller keeps running"
    );
    ctl.kill();
}
