//! Scenario tests of `plan::diff`: for each kind of user change, the exact change list.
use clb_test_support as support;

use clb_ingress::model::{self, TargetAddr};
use clb_ingress::plan::{self, Change, ListenerRef, RuleRef};
use support::worlds::*;
use support::{observe, ownership, snapshot};

/// Plan going from `before` (already applied) to `after`.
fn plan_between(before: &str, after: &str) -> plan::Plan {
    let b = model::build(&snapshot(before));
    let a = model::build(&snapshot(after));
    assert!(b.problems.is_empty(), "{:?}", b.problems);
    assert!(a.problems.is_empty(), "{:?}", a.problems);
    let bd = b.stacks.values().next().expect("before stack");
    let observed = observe(bd);
    let ad = a.stacks.values().next();
    plan::diff(ad, Some(&observed), &ownership(bd)).expect("plan")
}

fn kinds(p: &plan::Plan) -> Vec<&'static str> {
    p.changes.iter().map(Change::kind).collect()
}

fn base() -> String {
    world(
        &ingress(&[("/app", "Prefix", "web")]),
        &[("web", pods("10.0.0", 10))],
    )
}

#[test]
fn nothing_changed_makes_an_empty_plan() {
    let p = plan_between(&base(), &base());
    assert!(p.is_empty(), "{:#?}", p.changes);
    assert_eq!(p.api_calls(), 0);
}

#[test]
fn adding_a_path_creates_one_rule_and_registers_its_targets_in_one_batch() {
    let after = world(
        &ingress(&[("/app", "Prefix", "web"), ("/api", "Exact", "api")]),
        &[("web", pods("10.0.0", 10)), ("api", pods("10.0.9", 2))],
    );
    let p = plan_between(&base(), &after);
    assert_eq!(kinds(&p), vec!["CreateRules", "RegisterTargets"]);
    match &p.changes[0] {
        Change::CreateRules { listener, rules } => {
            assert!(matches!(listener, ListenerRef::Id(_)));
            assert_eq!(rules.len(), 1);
            assert_eq!(rules[0].url, "=/api");
            assert_eq!(rules[0].domain, "a.example.com");
        }
        other => panic!("{other:?}"),
    }
    match &p.changes[1] {
        Change::RegisterTargets { targets } => {
            assert_eq!(targets.len(), 2);
            assert!(targets.iter().all(|t| t.rule
                == RuleRef::New {
                    domain: "a.example.com".into(),
                    url: "=/api".into()
                }));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(p.api_calls(), 2);
}

#[test]
fn removing_a_path_deletes_only_its_rules_in_one_call() {
    let before = world(
        &ingress(&[("/app", "Prefix", "web"), ("/old", "Prefix", "web")]),
        &[("web", pods("10.0.0", 10))],
    );
    let p = plan_between(&before, &base());
    // `/old` (Prefix) is the two CLB rules `=/old` and `/old/`, deleted by one DeleteRule.
    assert_eq!(kinds(&p), vec!["DeleteRules"]);
    match &p.changes[0] {
        Change::DeleteRules { rules, .. } => {
            let mut urls: Vec<&str> = rules.iter().map(|r| r.2.as_str()).collect();
            urls.sort();
            assert_eq!(urls, vec!["/old/", "=/old"]);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(p.api_calls(), 1);
}

#[test]
fn changing_a_backend_re_targets_the_rule_in_place_registering_before_deregistering() {
    let after = world(
        &ingress(&[("/app", "Prefix", "v2")]),
        &[("web", pods("10.0.0", 10)), ("v2", pods("10.0.5", 3))],
    );
    let p = plan_between(&base(), &after);
    assert_eq!(kinds(&p), vec!["RegisterTargets", "DeregisterTargets"]);
    let (Change::RegisterTargets { targets: reg }, Change::DeregisterTargets { targets: dereg }) =
        (&p.changes[0], &p.changes[1])
    else {
        panic!("{:?}", p.changes)
    };
    // Two CLB rules (`=/app`, `/app/`) each get the 3 new pods and lose the 10 old ones.
    assert_eq!(reg.len(), 6);
    assert_eq!(dereg.len(), 20);
    assert!(reg.iter().all(|t| matches!(t.rule, RuleRef::Id(_))));
    assert!(
        reg.iter()
            .all(|t| matches!(&t.target.addr, TargetAddr::Ip(ip) if ip.starts_with("10.0.5.")))
    );
    assert_eq!(p.api_calls(), 2);
}

#[test]
fn scaling_from_ten_to_twelve_pods_registers_only_the_two_new_pods() {
    let after = world(
        &ingress(&[("/app", "Prefix", "web")]),
        &[("web", pods("10.0.0", 12))],
    );
    let p = plan_between(&base(), &after);
    assert_eq!(kinds(&p), vec!["RegisterTargets"]);
    let Change::RegisterTargets { targets } = &p.changes[0] else {
        panic!()
    };
    let mut ips: Vec<String> = targets.iter().map(|t| t.target.addr.to_string()).collect();
    ips.sort();
    ips.dedup();
    assert_eq!(ips, vec!["10.0.0.11", "10.0.0.12"]);
    assert_eq!(targets.len(), 4, "two pods on two CLB rules");
    assert_eq!(p.api_calls(), 1);
}

#[test]
fn renaming_a_path_with_the_same_backend_modifies_the_rule_url() {
    let before = world(
        &ingress(&[("/a", "Exact", "web")]),
        &[("web", pods("10.0.0", 2))],
    );
    let after = world(
        &ingress(&[("/b", "Exact", "web")]),
        &[("web", pods("10.0.0", 2))],
    );
    let p = plan_between(&before, &after);
    assert_eq!(kinds(&p), vec!["ModifyRuleUrl"]);
    let Change::ModifyRuleUrl { from, to, .. } = &p.changes[0] else {
        panic!()
    };
    assert_eq!((from.as_str(), to.as_str()), ("=/a", "=/b"));
}

#[test]
fn deleting_the_only_ingress_deletes_the_clb_it_created() {
    let b = model::build(&snapshot(&base()));
    let d = b.stacks.values().next().unwrap();
    let p = plan::diff(None, Some(&observe(d)), &ownership(d)).unwrap();
    assert_eq!(
        p.changes,
        vec![Change::DeleteLoadBalancer {
            id: "lb-00000001".into()
        }]
    );
}

#[test]
fn deleting_the_ingress_of_an_adopted_clb_removes_only_our_listeners() {
    let b = model::build(&snapshot(&base()));
    let d = b.stacks.values().next().unwrap();
    let mut observed = observe(d);
    observed
        .listeners
        .push(clb_ingress::plan::ObservedListener {
            id: "lbl-foreign1".into(),
            name: "someone-else".into(),
            protocol: model::Protocol::Http,
            port: 8080,
            sni: false,
            rules: vec![],
        });
    let own = plan::Ownership {
        lb_owned: false,
        listener_name: d.listeners[0].name.clone(),
    };
    let p = plan::diff(None, Some(&observed), &own).unwrap();
    assert_eq!(kinds(&p), vec!["DeleteListeners"]);
    let Change::DeleteListeners { listeners } = &p.changes[0] else {
        panic!()
    };
    assert_eq!(listeners.len(), 1);
    assert_ne!(listeners[0].0, "lbl-foreign1");
}

#[test]
fn a_foreign_listener_on_our_port_is_reported_and_never_touched() {
    let b = model::build(&snapshot(&base()));
    let d = b.stacks.values().next().unwrap();
    let mut observed = observe(d);
    observed.listeners[0].name = "hand-made".into();
    let own = plan::Ownership {
        lb_owned: false,
        listener_name: d.listeners[0].name.clone(),
    };
    let p = plan::diff(Some(d), Some(&observed), &own).unwrap();
    assert!(p.changes.is_empty(), "{:?}", p.changes);
    assert_eq!(p.conflicts.len(), 1);
    assert!(p.conflicts[0].contains("port 80"), "{}", p.conflicts[0]);
}

#[test]
fn creating_from_nothing_orders_clb_listener_rules_then_targets() {
    let a = model::build(&snapshot(&base()));
    let d = a.stacks.values().next().unwrap();
    let p = plan::diff(Some(d), None, &ownership(d)).unwrap();
    assert_eq!(
        kinds(&p),
        vec![
            "CreateLoadBalancer",
            "CreateListener",
            "CreateRules",
            "RegisterTargets"
        ]
    );
    let Change::CreateRules { rules, .. } = &p.changes[2] else {
        panic!()
    };
    assert!(
        rules[0].default_server,
        "catch-all domain first and default"
    );
    assert_eq!(rules[0].domain, model::translate::CATCH_ALL_DOMAIN);
    assert_eq!(rules.iter().filter(|r| r.default_server).count(), 1);
}

const CERT_A: &str = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
const CERT_B: &str = "-----BEGIN CERTIFICATE-----\nBBBB\n-----END CERTIFICATE-----\n";
const KEY: &str = "-----BEGIN PRIVATE KEY-----\nKKKK\n-----END PRIVATE KEY-----\n";

#[test]
fn adding_a_host_with_its_certificate_creates_rules_with_the_certificate_on_https() {
    let before = tls_world(&["a.example.com"], CERT_A, KEY);
    let after = tls_world(&["a.example.com", "b.example.com"], CERT_A, KEY);
    let p = plan_between(&before, &after);
    assert_eq!(
        kinds(&p),
        vec!["CreateRules", "CreateRules", "RegisterTargets"]
    );
    let mut https_rules = 0;
    for c in &p.changes[..2] {
        let Change::CreateRules { rules, .. } = c else {
            panic!()
        };
        assert_eq!(rules.len(), 1);
        assert_eq!(rules[0].domain, "b.example.com");
        if rules[0].certificate.is_some() {
            https_rules += 1;
        }
    }
    assert_eq!(
        https_rules, 1,
        "only the HTTPS listener's rule carries the certificate"
    );
    assert_eq!(p.api_calls(), 3);
}

#[test]
fn rotating_a_certificate_uploads_it_once_and_repoints_each_domain() {
    let before = tls_world(&["a.example.com"], CERT_A, KEY);
    let after = tls_world(&["a.example.com"], CERT_B, KEY);
    let p = plan_between(&before, &after);
    // The catch-all domain uses the same certificate as the default for unknown SNI names.
    assert_eq!(
        kinds(&p),
        vec!["UploadCertificate", "ModifyDomain", "ModifyDomain"]
    );
    for c in &p.changes[1..] {
        let Change::ModifyDomain {
            certificate,
            make_default,
            ..
        } = c
        else {
            panic!()
        };
        assert!(matches!(certificate, Some(plan::CertRef::Uploaded { .. })));
        assert!(!make_default);
    }
}

#[test]
fn the_plan_never_contains_the_private_key_in_its_json_or_text() {
    let a = model::build(&snapshot(&tls_world(&["a.example.com"], CERT_A, KEY)));
    let d = a.stacks.values().next().unwrap();
    let p = plan::diff(Some(d), None, &ownership(d)).unwrap();
    assert!(kinds(&p).contains(&"UploadCertificate"));
    let json = serde_json::to_string(&p).unwrap() + &serde_json::to_string(d).unwrap();
    let text: String = p.changes.iter().map(|c| c.to_string()).collect();
    assert!(!json.contains("KKKK") && !text.contains("KKKK"));
}

#[test]
fn changing_a_target_weight_modifies_only_that_weight() {
    // NodePort mode with externalTrafficPolicy Local: a node's weight follows its pod count.
    let nodes = r#"
---
apiVersion: v1
kind: Node
metadata: {name: n1}
spec: {providerID: "qcloud:///800002/ins-aaaaaaaa"}
status: {conditions: [{type: Ready, status: "True"}]}
---
apiVersion: v1
kind: Node
metadata: {name: n2}
spec: {providerID: "qcloud:///800002/ins-bbbbbbbb"}
status: {conditions: [{type: Ready, status: "True"}]}
"#;
    let mk = |n2_pods: usize| {
        let eps: String = (0..1 + n2_pods)
            .map(|i| {
                let node = if i == 0 { "n1" } else { "n2" };
                format!("  - {{addresses: [\"10.1.0.{i}\"], nodeName: {node}, conditions: {{ready: true}}}}\n")
            })
            .collect();
        format!(
            "{}{nodes}\n---\napiVersion: v1\nkind: Service\nmetadata: {{name: web, namespace: default}}\nspec: {{type: NodePort, externalTrafficPolicy: Local, ports: [{{name: http, port: 80, nodePort: 30080}}]}}\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: web-1, namespace: default, labels: {{kubernetes.io/service-name: web}}}}\naddressType: IPv4\nports: [{{name: http, port: 8080}}]\nendpoints:\n{eps}{}",
            CLASS.replace("targetMode: Direct", "targetMode: NodePort"),
            ingress(&[("/", "Prefix", "web")])
        )
    };
    let p = plan_between(&mk(1), &mk(2));
    assert_eq!(kinds(&p), vec!["ModifyTargetWeights"]);
    let Change::ModifyTargetWeights { targets } = &p.changes[0] else {
        panic!()
    };
    assert_eq!(targets.len(), 1);
    assert_eq!(
        targets[0].target.addr,
        TargetAddr::Instance("ins-bbbbbbbb".into())
    );
    assert_eq!(targets[0].target.weight, 20);
    assert_eq!(targets[0].target.port, 30080);
}

/// Plan from `base()` applied to the same world whose pod `10.0.0.10` has the endpoint
/// conditions `conditions`, with the controller's `draining` and `gated` addresses.
fn plan_with_endpoint(
    conditions: k8s_openapi::api::discovery::v1::EndpointConditions,
    draining: bool,
    gated: bool,
) -> plan::Plan {
    let b = model::build(&snapshot(&base()));
    let bd = b.stacks.values().next().expect("before stack");
    let mut snap = snapshot(&base());
    for ep in snap
        .endpoint_slices
        .iter_mut()
        .flat_map(|s| std::sync::Arc::make_mut(s).endpoints.iter_mut())
        .filter(|e| e.addresses == ["10.0.0.10"])
    {
        ep.conditions = Some(conditions.clone());
    }
    let key = ("default".to_string(), "10.0.0.10".to_string());
    if draining {
        snap.draining.insert(key.clone());
    }
    if gated {
        snap.gated.insert(key);
    }
    let a = model::build(&snap);
    assert!(a.problems.is_empty(), "{:?}", a.problems);
    plan::diff(a.stacks.values().next(), Some(&observe(bd)), &ownership(bd)).expect("plan")
}

fn terminating() -> k8s_openapi::api::discovery::v1::EndpointConditions {
    k8s_openapi::api::discovery::v1::EndpointConditions {
        ready: Some(false),
        serving: Some(true),
        terminating: Some(true),
    }
}

#[test]
fn a_draining_pod_is_set_to_weight_zero_in_one_call_instead_of_being_deregistered() {
    let p = plan_with_endpoint(terminating(), true, false);
    assert_eq!(kinds(&p), vec!["ModifyTargetWeights"]);
    let Change::ModifyTargetWeights { targets } = &p.changes[0] else {
        panic!()
    };
    // On each rule the Prefix path needs (`=/app` and `/app/`).
    assert_eq!(targets.len(), 2, "{targets:#?}");
    assert!(
        targets
            .iter()
            .all(|t| t.target.addr == TargetAddr::Ip("10.0.0.10".into()) && t.target.weight == 0),
        "{targets:#?}"
    );
    // Without the drain, the terminating pod is deregistered at once.
    let p = plan_with_endpoint(terminating(), false, false);
    assert_eq!(kinds(&p), vec!["DeregisterTargets"]);
    // A terminating pod is never kept at its weight for the readiness gate.
    let p = plan_with_endpoint(terminating(), true, true);
    assert_eq!(kinds(&p), vec!["ModifyTargetWeights"]);
}

#[test]
fn a_gated_pod_waiting_for_its_readiness_gate_stays_registered_with_its_weight() {
    let waiting = k8s_openapi::api::discovery::v1::EndpointConditions {
        ready: Some(false),
        serving: Some(false),
        terminating: Some(false),
    };
    let p = plan_with_endpoint(waiting.clone(), false, true);
    assert!(p.is_empty(), "{:#?}", p.changes);
    // Not gated (its containers are not ready): it is not a target.
    let p = plan_with_endpoint(waiting, false, false);
    assert_eq!(kinds(&p), vec!["DeregisterTargets"]);
}
