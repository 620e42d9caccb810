//! CLB's health-check domain cannot be a regex: rules on a wildcard host's regex domain are
//! created with a literal health-check host that the regex matches.

use clb_test_support::emulator::Emulator;

const MANIFEST: &str = "apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: {name: c}
spec:
  controller: clb-ingress.io/ingress-controller
  parameters: {apiGroup: clb-ingress.io, kind: ClbClassParameters, name: c}
---
apiVersion: clb-ingress.io/v1alpha1
kind: ClbClassParameters
metadata: {name: c}
spec: {targetMode: Direct}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec: {ports: [{name: http, port: 80}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-1, namespace: default, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
ports: [{name: http, port: 8080}]
endpoints:
- {addresses: [10.0.0.1]}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: wild, namespace: default}
spec:
  ingressClassName: c
  rules:
  - host: '*.shop.example.com'
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}
  - host: exact.example.com
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}
";

#[test]
fn a_wildcard_hosts_rule_carries_a_literal_health_check_domain_and_exact_hosts_keep_the_default() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("wild.yaml");
    std::fs::write(&file, MANIFEST).unwrap();
    let emu = Emulator::start(&["--task-delay-ms", "0"]);
    emu.apply(&[&file], &[]).expect_ok("apply");
    let clb = emu.client();
    let lbs = emu
        .block_on(clb.describe_load_balancers(&Default::default()))
        .unwrap();
    assert_eq!(lbs.len(), 1);
    let listeners = emu
        .block_on(
            clb.describe_listeners(&clb_ingress::clb::types::DescribeListenersRequest {
                load_balancer_id: lbs[0].load_balancer_id.clone(),
                ..Default::default()
            }),
        )
        .unwrap();
    let rules: Vec<_> = listeners.iter().flat_map(|l| &l.rules).collect();
    let check_domain = |domain: &str| {
        rules
            .iter()
            .find(|r| r.domain == domain)
            .unwrap_or_else(|| panic!("no rule on {domain}: {rules:#?}"))
            .health_check
            .as_ref()
            .and_then(|h| h.http_check_domain.clone())
    };
    assert_eq!(
        check_domain(r"~^[^.]+\.shop\.example\.com$").as_deref(),
        Some("health-check.shop.example.com")
    );
    assert_eq!(check_domain("exact.example.com"), None);
    // A second apply is in sync (the health check is not drift).
    let again = emu.apply(&[&file], &[]);
    again.expect_ok("second apply");
    assert!(again.stdout.contains("in sync"), "{}", again.stdout);
}

/// The fallback for accounts where regex domains fail (`preflight` check `regex-domain`): with
/// `wildcardHosts: Native` a wildcard host becomes CLB's own wildcard domain `*.suffix`, with the
/// same literal health-check domain; it also serves deeper names (the documented difference),
/// while the default `Regex` form serves exactly one more label.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_wildcard_hosts_become_clb_wildcard_domains_with_a_health_check_domain_and_match_deeper_names()
 {
    use clb_test_support::cluster::{SLOW, env};
    use serde_json::json;
    let wild = json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": "wild", "namespace": "default"},
        "spec": {"rules": [{"host": "*.shop.example.com", "http": {"paths": [{"path": "/",
            "pathType": "Prefix", "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}}]}});
    for native in [false, true] {
        let e = env().await;
        let _ctl = e.controller("c1", &[]);
        let mut spec = json!({"targetMode": "Direct", "sharing": "PerIngress"});
        if native {
            spec["wildcardHosts"] = json!("Native");
        }
        e.class_with(spec).await;
        e.service("web", &["10.1.0.1"]).await;
        e.apply(wild.clone()).await;
        e.until_routed("wild", "a.shop.example.com", "/", "10.1.0.1:8080", SLOW)
            .await;
        let lbs = e
            .clb()
            .describe_load_balancers(&Default::default())
            .await
            .unwrap();
        let listeners = e
            .clb()
            .describe_listeners(&clb_ingress::clb::types::DescribeListenersRequest {
                load_balancer_id: lbs[0].load_balancer_id.clone(),
                ..Default::default()
            })
            .await
            .unwrap();
        let rule = listeners
            .iter()
            .flat_map(|l| &l.rules)
            .find(|r| r.domain.contains("shop"))
            .expect("the wildcard's rule");
        let want = if native {
            "*.shop.example.com"
        } else {
            r"~^[^.]+\.shop\.example\.com$"
        };
        assert_eq!(rule.domain, want);
        assert_eq!(
            rule.health_check
                .as_ref()
                .and_then(|h| h.http_check_domain.as_deref()),
            Some("health-check.shop.example.com")
        );
        let vip = e.vip("wild").await.unwrap();
        let deeper = e.request(&vip, "a.b.shop.example.com", "/").await.0;
        assert_eq!(deeper, if native { 200 } else { 404 }, "native={native}");
        assert_eq!(e.request(&vip, "shop.example.com", "/").await.0, 404);
    }
}
