//! The account's real quotas (DescribeQuota) decide what fits on a CLB, not hard-coded numbers.

use clb_test_support::emulator::Emulator;
use serde_json::json;

/// One Ingress with one host and `n` Prefix paths (each costs two CLB rules).
fn manifest(n: usize) -> String {
    let paths: String = (0..n)
        .map(|i| {
            format!(
                "      - {{path: /p{i}, pathType: Prefix, backend: {{service: {{name: web, port: {{number: 80}}}}}}}}\n"
            )
        })
        .collect();
    format!(
        "apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: {{name: c}}
spec:
  controller: clb-ingress.io/ingress-controller
  parameters: {{apiGroup: clb-ingress.io, kind: ClbClassParameters, name: c}}
---
apiVersion: clb-ingress.io/v1alpha1
kind: ClbClassParameters
metadata: {{name: c}}
spec: {{targetMode: Direct}}
---
apiVersion: v1
kind: Service
metadata: {{name: web, namespace: default}}
spec: {{ports: [{{name: http, port: 80}}]}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: web-1, namespace: default, labels: {{kubernetes.io/service-name: web}}}}
addressType: IPv4
ports: [{{name: http, port: 8080}}]
endpoints:
- {{addresses: [10.0.0.1]}}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {{name: many, namespace: default}}
spec:
  ingressClassName: c
  rules:
  - host: many.example.com
    http:
      paths:
{paths}"
    )
}

#[test]
fn apply_uses_the_accounts_raised_rule_quota_instead_of_the_documented_fifty() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("many.yaml");
    // 30 Prefix paths: 60 rules, over the documented 50 per listener.
    std::fs::write(&file, manifest(30)).unwrap();
    let emu = Emulator::start(&["--task-delay-ms", "0"]);
    let run = emu.apply(&[&file], &[]);
    assert!(
        run.stdout.contains("TooManyRules") || run.stderr.contains("TooManyRules"),
        "with the default quota the Ingress does not fit:\n{}\n{}",
        run.stdout,
        run.stderr
    );
    // The account's quota is raised: the same Ingress now fits.
    emu.admin_patch("settings", &json!({"quotas": {"rules_per_listener": 80}}));
    let run = emu.apply(&[&file], &[]);
    run.expect_ok("apply with the raised quota");
    assert!(
        !run.stdout.contains("TooManyRules") && !run.stderr.contains("TooManyRules"),
        "{}\n{}",
        run.stdout,
        run.stderr
    );
    let rules: usize = emu.state()["lbs"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|lb| lb["listeners"].as_array().cloned().unwrap_or_default())
        .map(|l| l["rules"].as_array().map_or(0, Vec::len))
        .sum();
    assert!(rules > 50, "{rules} rules on the listener");
}
