//! Model and plan tests of TKE's annotations (the end-to-end tests are in tke_annotations.rs).
use clb_test_support as support;

use clb_ingress::crd::NetworkType;
use clb_ingress::model::{self, Effect, LbSource, Reason, Redirect};
use clb_ingress::plan::{self, Change};
use support::{observe, ownership, snapshot};

const CLASS: &str = r#"
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: {name: clb}
spec:
  controller: clb-ingress.io/ingress-controller
  parameters: {apiGroup: clb-ingress.io, kind: ClbClassParameters, name: p}
---
apiVersion: clb-ingress.io/v1alpha1
kind: ClbClassParameters
metadata: {name: p}
spec: {targetMode: Direct, create: {vpcId: vpc-abcdefgh}}
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
ports: [{name: http, port: 8080, protocol: TCP}]
endpoints:
- {addresses: [10.0.0.1], targetRef: {kind: Pod, name: web-0}}
- {addresses: [10.0.0.2], targetRef: {kind: Pod, name: other-5d8f-abcde}}
---
apiVersion: v1
kind: Secret
metadata: {name: tls, namespace: default}
type: Opaque
stringData: {qcloud_cert_id: cert-abc}
"#;

/// The class above plus one Ingress with these annotations (YAML flow map) and TLS.
fn world(annotations: &str) -> String {
    format!(
        r#"{CLASS}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: shop
  namespace: default
  annotations: {annotations}
spec:
  ingressClassName: clb
  tls: [{{hosts: [a.example.com], secretName: tls}}]
  rules:
  - host: a.example.com
    http:
      paths:
      - {{path: /, pathType: Prefix, backend: {{service: {{name: web, port: {{number: 80}}}}}}}}
"#
    )
}

fn build(annotations: &str) -> model::BuildOutput {
    model::build(&snapshot(&world(annotations)))
}

#[test]
fn subnet_id_makes_the_created_clb_internal_in_that_subnet_and_the_class_vpc() {
    let b = build(r#"{kubernetes.io/ingress.subnetId: subnet-12345678}"#);
    assert!(b.problems.is_empty(), "{:?}", b.problems);
    let d = b.stacks.values().next().unwrap();
    let LbSource::Create { settings, .. } = &d.source else {
        panic!("{:?}", d.source)
    };
    assert_eq!(settings.network_type, NetworkType::Internal);
    assert_eq!(settings.subnet_id.as_deref(), Some("subnet-12345678"));
    assert_eq!(settings.vpc_id.as_deref(), Some("vpc-abcdefgh"));
}

#[test]
fn subnet_id_without_a_class_vpc_leaves_the_vpc_to_the_subnet_and_a_malformed_one_parks() {
    let yaml = world(r#"{kubernetes.io/ingress.subnetId: subnet-12345678}"#)
        .replace("create: {vpcId: vpc-abcdefgh}", "create: {}");
    let b = model::build(&snapshot(&yaml));
    assert!(b.problems.is_empty(), "{:?}", b.problems);
    let d = b.stacks.values().next().unwrap();
    let LbSource::Create { settings, .. } = &d.source else {
        panic!("{:?}", d.source)
    };
    assert_eq!(settings.network_type, NetworkType::Internal);
    assert_eq!(settings.subnet_id.as_deref(), Some("subnet-12345678"));
    assert_eq!(
        settings.vpc_id, None,
        "found from the subnet when the CLB is created"
    );
    let b = build(r#"{kubernetes.io/ingress.subnetId: "12345678"}"#);
    assert!(b.stacks.is_empty(), "a malformed subnet id parks");
    assert_eq!(b.problems[0].reason, Reason::InvalidAnnotation);
    assert_eq!(b.problems[0].effect, Effect::Parked);
    assert!(
        b.problems[0]
            .field
            .contains("kubernetes.io/ingress.subnetId")
    );
}

#[test]
fn auto_rewrite_turns_the_http_rules_of_tls_hosts_into_redirects_without_targets() {
    let b = build(r#"{ingress.cloud.tencent.com/auto-rewrite: "true"}"#);
    assert!(b.problems.is_empty(), "{:?}", b.problems);
    let d = b.stacks.values().next().unwrap();
    let http = d.listeners.iter().find(|l| l.port == 80).unwrap();
    let https = d.listeners.iter().find(|l| l.port == 443).unwrap();
    let host = http
        .domains
        .iter()
        .find(|x| x.domain == "a.example.com")
        .unwrap();
    for r in &host.rules {
        assert_eq!(
            r.redirect,
            Some(Redirect {
                https_port: 443,
                code: 301
            }),
            "TKE's default code"
        );
        assert!(r.targets.is_empty());
    }
    // The catch-all domain of the HTTP listener is not redirected, HTTPS still forwards.
    assert!(
        http.domains
            .iter()
            .filter(|x| x.domain != "a.example.com")
            .all(|x| x.rules.iter().all(|r| r.redirect.is_none()))
    );
    assert!(
        https
            .domains
            .iter()
            .flat_map(|x| &x.rules)
            .all(|r| r.redirect.is_none())
    );
    let b = build(
        r#"{ingress.cloud.tencent.com/auto-rewrite: "true", ingress.cloud.tencent.com/auto-rewrite-code: "302"}"#,
    );
    let d = b.stacks.values().next().unwrap();
    assert!(
        d.listeners[0]
            .domains
            .iter()
            .flat_map(|x| &x.rules)
            .any(|r| r.redirect.map(|x| x.code) == Some(302))
    );
    let b = build(
        r#"{ingress.cloud.tencent.com/auto-rewrite: "true", ingress.cloud.tencent.com/auto-rewrite-code: "308"}"#,
    );
    assert!(b.stacks.is_empty(), "308 is not a CLB redirect code");
}

/// The code of the redirects of a built stack's HTTP rules.
fn redirect_codes(b: &model::BuildOutput) -> Vec<u16> {
    b.stacks
        .values()
        .flat_map(|d| &d.listeners)
        .flat_map(|l| &l.domains)
        .flat_map(|x| &x.rules)
        .filter_map(|r| r.redirect.map(|x| x.code))
        .collect()
}

#[test]
fn auto_rewrite_code_also_takes_tkes_json_form_with_per_host_codes() {
    let on = "ingress.cloud.tencent.com/auto-rewrite: \"true\"";
    let b = build(&format!(
        r#"{{{on}, ingress.cloud.tencent.com/auto-rewrite-code: '{{"defaultRewriteCode": 307}}'}}"#
    ));
    assert!(b.problems.is_empty(), "{:?}", b.problems);
    assert_eq!(redirect_codes(&b), vec![307]);
    let b = build(&format!(
        r#"{{{on}, ingress.cloud.tencent.com/auto-rewrite-code: '{{"defaultRewriteCode": 307, "rewriteCodeInfos": [{{"host": "a.example.com", "rewriteCode": 302}}]}}'}}"#
    ));
    assert!(b.problems.is_empty(), "{:?}", b.problems);
    assert_eq!(redirect_codes(&b), vec![302], "the host's own code wins");
    // A host the Ingress does not have: a warning, the default code applies.
    let b = build(&format!(
        r#"{{{on}, ingress.cloud.tencent.com/auto-rewrite-code: '{{"rewriteCodeInfos": [{{"host": "other.example.com", "rewriteCode": 302}}]}}'}}"#
    ));
    assert_eq!(redirect_codes(&b), vec![301]);
    assert_eq!(b.problems.len(), 1, "{:?}", b.problems);
    assert!(b.problems[0].message.contains("other.example.com"));
    assert_eq!(b.problems[0].effect, Effect::Degraded);
    // Malformed JSON, a bad code, an unknown key: the Ingress is parked with the reason.
    for bad in [
        r#"{"defaultRewriteCode": 308}"#,
        r#"{"defaultRewriteCode": 307"#,
        r#"{"rewriteCodeInfos": [{"host": "a.example.com", "rewriteCode": 200}]}"#,
        r#"{"defaultRewritecode": 307}"#,
    ] {
        let b = build(&format!(
            r#"{{{on}, ingress.cloud.tencent.com/auto-rewrite-code: '{bad}'}}"#
        ));
        assert!(b.stacks.is_empty(), "{bad} is refused");
        assert_eq!(b.problems[0].reason, Reason::InvalidAnnotation, "{bad}");
        assert!(b.problems[0].field.contains("auto-rewrite-code"), "{bad}");
    }
}

#[test]
fn auto_rewrite_is_planned_after_both_rules_exist_and_is_idempotent() {
    let b = build(r#"{ingress.cloud.tencent.com/auto-rewrite: "true"}"#);
    let d = b.stacks.values().next().unwrap();
    let p = plan::diff(Some(d), None, &ownership(d)).unwrap();
    let kinds: Vec<&str> = p.changes.iter().map(Change::kind).collect();
    let rules = kinds.iter().rposition(|k| *k == "CreateRules").unwrap();
    let rewrites = kinds.iter().position(|k| *k == "CreateRewrites").unwrap();
    assert!(rules < rewrites, "{kinds:?}");
    let Change::CreateRewrites { rewrites, .. } = &p.changes[rewrites] else {
        unreachable!()
    };
    assert_eq!(
        rewrites.len(),
        1,
        "Prefix / is the one CLB rule /: {rewrites:?}"
    );
    assert_eq!(rewrites[0].url, "/");
    // Applied: nothing left to do.
    let observed = observe(d);
    assert!(
        plan::diff(Some(d), Some(&observed), &ownership(d))
            .unwrap()
            .is_empty()
    );
    // A different code: delete, then create, of exactly the changed redirects.
    let b2 = build(
        r#"{ingress.cloud.tencent.com/auto-rewrite: "true", ingress.cloud.tencent.com/auto-rewrite-code: "307"}"#,
    );
    let p = plan::diff(b2.stacks.values().next(), Some(&observed), &ownership(d)).unwrap();
    let kinds: Vec<&str> = p.changes.iter().map(Change::kind).collect();
    assert_eq!(kinds, vec!["DeleteRewrites", "CreateRewrites"]);
    // Turned off: the redirects go, before the HTTP rules get their targets back.
    let b3 = build("{}");
    let p = plan::diff(b3.stacks.values().next(), Some(&observed), &ownership(d)).unwrap();
    let kinds: Vec<&str> = p.changes.iter().map(Change::kind).collect();
    assert_eq!(kinds, vec!["DeleteRewrites", "RegisterTargets"]);
}

#[test]
fn lb_rs_weight_sets_default_and_statefulset_pod_weights() {
    let b = build(
        r#"{ingress.cloud.tencent.com/lb-rs-weight: '{"defaultWeight": 25, "groups": [{"key": {"host": "a.example.com", "path": "/"}, "statefulSets": [{"name": "web", "weight": 60}]}]}'}"#,
    );
    assert!(b.problems.is_empty(), "{:?}", b.problems);
    let d = b.stacks.values().next().unwrap();
    let r = d.listeners[0]
        .domains
        .iter()
        .find(|x| x.domain == "a.example.com")
        .unwrap()
        .rules
        .iter()
        .find(|r| !r.targets.is_empty())
        .unwrap();
    let w: Vec<(String, u32)> = r
        .targets
        .iter()
        .map(|t| (t.addr.to_string(), t.weight))
        .collect();
    assert_eq!(w, vec![("10.0.0.1".into(), 60), ("10.0.0.2".into(), 25)]);
}

#[test]
fn lb_rs_weight_refuses_what_it_cannot_apply_and_parks_bad_json() {
    let b = build(
        r#"{ingress.cloud.tencent.com/lb-rs-weight: '{"groups": [{"key": {"host": "b.example.com"}, "deployments": [{"name": "web", "weight": 1}]}]}'}"#,
    );
    assert_eq!(b.stacks.len(), 1, "still synced");
    let msgs: Vec<&str> = b.problems.iter().map(|p| p.message.as_str()).collect();
    assert!(
        b.problems
            .iter()
            .all(|p| p.reason == Reason::UnsupportedAnnotation && p.effect == Effect::Degraded)
    );
    assert!(
        msgs.iter().any(|m| m.contains("matches no host")),
        "{msgs:?}"
    );
    assert!(msgs.iter().any(|m| m.contains("deployments")), "{msgs:?}");
    for bad in [
        r#"'{"defaultWeight": 101}'"#,
        r#"'[1]'"#,
        r#"'{"weights": 1}'"#,
    ] {
        let b = build(&format!(
            "{{ingress.cloud.tencent.com/lb-rs-weight: {bad}}}"
        ));
        assert!(b.stacks.is_empty(), "{bad}");
        assert_eq!(b.problems[0].reason, Reason::InvalidAnnotation);
    }
}

#[test]
fn loadbalance_retain_marks_the_created_clb_by_name_and_it_is_never_deleted() {
    let b = build(r#"{ingress.cloud.tencent.com/loadbalance-retain: "true"}"#);
    let d = b.stacks.values().next().unwrap();
    assert!(d.retain);
    let p = plan::diff(Some(d), None, &ownership(d)).unwrap();
    let Change::CreateLoadBalancer { name, .. } = &p.changes[0] else {
        panic!("{:?}", p.changes[0])
    };
    assert!(model::ids::is_retained_name(name), "{name}");
    // An existing CLB gets marked (and unmarked) by a rename only.
    let plain = build("{}");
    let pd = plain.stacks.values().next().unwrap();
    let observed = observe(pd);
    let p = plan::diff(Some(d), Some(&observed), &ownership(d)).unwrap();
    assert!(
        matches!(&p.changes[..], [Change::RenameLoadBalancer { name, .. }] if name.starts_with("retained-")),
        "{:?}",
        p.changes
    );
    let retained = observe(d);
    let p = plan::diff(Some(pd), Some(&retained), &ownership(pd)).unwrap();
    assert!(
        matches!(&p.changes[..], [Change::RenameLoadBalancer { name, .. }] if !name.starts_with("retained-")),
        "{:?}",
        p.changes
    );
    // Gone: a retained CLB is not deleted, only our listeners are (deploy passes
    // lb_owned = false for a CLB whose name carries the mark).
    let own = plan::Ownership {
        lb_owned: false,
        listener_name: d.listeners[0].name.clone(),
    };
    let p = plan::diff(None, Some(&retained), &own).unwrap();
    assert_eq!(
        p.changes.iter().map(Change::kind).collect::<Vec<_>>(),
        vec!["DeleteListeners"]
    );
}

#[test]
fn mode_skip_freezes_the_ingress_stack_instead_of_building_it() {
    let snap = snapshot(&world(r#"{ingress.cloud.tencent.com/mode: skip}"#));
    let index = model::Index::new(&snap);
    assert_eq!(index.stack_ids().count(), 0);
    let frozen: Vec<_> = index.frozen_ids().collect();
    assert_eq!(frozen.len(), 1);
    assert_eq!(frozen[0], &model::StackId::ingress("default", "shop"));
    let b = build(r#"{ingress.cloud.tencent.com/mode: other}"#);
    assert_eq!(b.stacks.len(), 1, "an unknown mode syncs normally");
    assert_eq!(b.problems[0].reason, Reason::InvalidAnnotation);
    assert_eq!(b.problems[0].effect, Effect::Degraded);
}

#[test]
fn unknown_annotations_under_our_prefixes_get_one_degraded_warning() {
    let b = build(
        r#"{ingress.cloud.tencent.com/foo: "1", clb-ingress.io/bar: "2", clb-ingress.io/sync-state: "{}", example.com/other: "3"}"#,
    );
    assert_eq!(b.stacks.len(), 1);
    assert_eq!(b.problems.len(), 1, "{:?}", b.problems);
    let p = &b.problems[0];
    assert_eq!(
        (p.reason, p.effect),
        (Reason::UnknownAnnotation, Effect::Degraded)
    );
    assert!(
        p.message.contains("ingress.cloud.tencent.com/foo")
            && p.message.contains("clb-ingress.io/bar")
    );
    assert!(!p.message.contains("sync-state") && !p.message.contains("example.com/other"));
}

/// A world with certificate annotation for a.example.com and one Ingress of these paths
/// (path, Service) and annotations, with no spec.tls.
fn mix_world(annotations: &str, paths: &[(&str, &str)]) -> model::BuildOutput {
    let paths: String = paths
        .iter()
        .map(|(p, s)| {
            format!(
                "      - {{path: {p}, pathType: ImplementationSpecific, backend: {{service: {{name: {s}, port: {{number: 80}}}}}}}}\n"
            )
        })
        .collect();
    let yaml = format!(
        r#"{CLASS}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: shop
  namespace: default
  annotations: {annotations}
spec:
  ingressClassName: clb
  rules:
  - host: a.example.com
    http:
      paths:
{paths}"#
    );
    model::build(&snapshot(&yaml))
}

/// (protocol, url, redirect code) of every rule of domain a.example.com.
fn rules_of(b: &model::BuildOutput) -> Vec<(String, String, Option<u16>)> {
    let mut out: Vec<_> = b
        .stacks
        .values()
        .flat_map(|d| &d.listeners)
        .flat_map(|l| {
            l.domains
                .iter()
                .filter(|d| d.domain == "a.example.com")
                .flat_map(move |d| {
                    d.rules.iter().map(move |r| {
                        (
                            l.protocol.as_str().to_string(),
                            r.url.clone(),
                            r.redirect.map(|x| x.code),
                        )
                    })
                })
        })
        .collect();
    out.sort();
    out
}

const CERT: &str = r#"ingress.cloud.tencent.com/certificate: '{"a.example.com": "cert-abc"}'"#;

#[test]
fn certificate_annotation_gives_the_host_an_https_listener_with_that_certificate_id() {
    let b = mix_world(&format!("{{{CERT}}}"), &[("/", "web")]);
    assert!(b.problems.is_empty(), "{:?}", b.problems);
    let d = b.stacks.values().next().unwrap();
    let https = d
        .listeners
        .iter()
        .find(|l| l.protocol == clb_ingress::model::Protocol::Https)
        .expect("an HTTPS listener");
    let dom = https
        .domains
        .iter()
        .find(|x| x.domain == "a.example.com")
        .unwrap();
    assert_eq!(
        dom.certificate,
        Some(clb_ingress::model::CertSource::Id("cert-abc".into()))
    );
    // A host the Ingress does not have: a Warning, nothing else.
    let b = mix_world(
        r#"{ingress.cloud.tencent.com/certificate: '{"a.example.com": "cert-abc", "b.example.com": "cert-b"}'}"#,
        &[("/", "web")],
    );
    assert_eq!(b.problems.len(), 1, "{:?}", b.problems);
    assert!(b.problems[0].message.contains("b.example.com"));
    // Malformed: parked, naming the annotation.
    for bad in [
        r#"'{"a.example.com": 5}'"#,
        "'[1]'",
        "nope",
        r#"'{"a.example.com": "c d"}'"#,
    ] {
        let b = mix_world(
            &format!("{{ingress.cloud.tencent.com/certificate: {bad}}}"),
            &[("/", "web")],
        );
        assert!(b.stacks.is_empty(), "{bad}");
        assert!(b.problems[0].field.contains("certificate"), "{bad}");
    }
}

#[test]
fn rule_mix_puts_each_path_on_the_listeners_its_lists_name_and_https_by_default() {
    let anns = format!(
        r#"{{{CERT}, kubernetes.io/ingress.rule-mix: "true",
  kubernetes.io/ingress.http-rules: '[{{"path": "/api", "backend": {{"host": "a.example.com", "serviceName": "web", "servicePort": 80}}}}, null]',
  kubernetes.io/ingress.https-rules: '[{{"host": "a.example.com", "path": "/", "backend": {{"serviceName": "web", "servicePort": "80"}}}}]'}}"#
    );
    let b = mix_world(&anns, &[("/", "web"), ("/api", "web"), ("/static", "web")]);
    assert!(b.problems.is_empty(), "{:?}", b.problems);
    let rules = rules_of(&b);
    let urls = |proto: &str| -> Vec<String> {
        rules
            .iter()
            .filter(|r| r.0 == proto)
            .map(|r| r.1.clone())
            .collect()
    };
    assert!(
        urls("HTTP")
            .iter()
            .all(|u| u.trim_start_matches('=').starts_with("/api")),
        "{rules:?}"
    );
    assert!(!urls("HTTP").is_empty(), "{rules:?}");
    assert!(
        urls("HTTPS").iter().any(|u| u.starts_with("/static")),
        "{rules:?}"
    );
    assert!(
        urls("HTTPS")
            .iter()
            .all(|u| !u.trim_start_matches('=').starts_with("/api")),
        "{rules:?}"
    );
    // Without rule-mix the lists do nothing, and say so.
    let b = mix_world(
        r#"{kubernetes.io/ingress.http-rules: '[{"path": "/"}]'}"#,
        &[("/", "web")],
    );
    assert_eq!(b.problems.len(), 1, "{:?}", b.problems);
    assert!(b.problems[0].message.contains("rule-mix"));
}

#[test]
fn rule_mix_redirect_entries_make_the_http_rule_redirect_to_the_same_https_rule() {
    let anns = format!(
        r#"{{{CERT}, kubernetes.io/ingress.rule-mix: "true",
  kubernetes.io/ingress.http-rules: '[{{"path": "/api", "backend": {{"host": "a.example.com", "serviceName": "web", "servicePort": 80}}}}, {{"host": "a.example.com", "path": "/", "rewrite": {{"port": 443, "host": "a.example.com", "path": "/"}}}}]',
  kubernetes.io/ingress.https-rules: '[{{"host": "a.example.com", "path": "/", "backend": {{"serviceName": "web", "servicePort": "80"}}}}]'}}"#
    );
    let b = mix_world(&anns, &[("/", "web"), ("/api", "web"), ("/static", "web")]);
    assert!(b.problems.is_empty(), "{:?}", b.problems);
    let rules = rules_of(&b);
    let http: Vec<_> = rules.iter().filter(|r| r.0 == "HTTP").collect();
    assert!(
        http.iter().any(|r| r.1 == "/" && r.2 == Some(301)),
        "{rules:?}"
    );
    assert!(
        http.iter().filter(|r| r.1 != "/").all(|r| r.2.is_none()),
        "/api forwards: {rules:?}"
    );
    // To another path: refused with a Warning, nothing is redirected.
    let other = anns.replace(r#""path": "/"}}}}"#, r#""path": "/new"}}}}"#);
    let other = other.replace(r#""path": "/"}}]'"#, r#""path": "/new"}}]'"#);
    let b = mix_world(&other, &[("/", "web"), ("/api", "web"), ("/static", "web")]);
    assert!(
        b.problems
            .iter()
            .any(|p| p.message.contains("another host or path")),
        "{:?}",
        b.problems
    );
    assert!(rules_of(&b).iter().all(|r| r.2.is_none()));
}

#[test]
fn lb_rs_weight_accepts_a_numeric_port_key_and_refuses_a_bad_one() {
    let ok = build(
        r#"{ingress.cloud.tencent.com/lb-rs-weight: '{"groups": [{"key": {"port": 443, "host": "a.example.com", "path": "/"}, "statefulSets": [{"name": "web", "weight": 50}]}]}'}"#,
    );
    assert!(ok.stacks.len() == 1, "{:?}", ok.problems);
    assert!(
        !ok.problems
            .iter()
            .any(|p| p.message.contains("is not a string")),
        "{:?}",
        ok.problems
    );
    let w = model::build::parse_rs_weights(r#"{"groups": [{"key": {"port": "80"}}]}"#).unwrap();
    assert_eq!(w.groups[0].port, Some(80));
    assert!(model::build::parse_rs_weights(r#"{"groups": [{"key": {"port": 0}}]}"#).is_err());
    assert!(model::build::parse_rs_weights(r#"{"groups": [{"key": {"port": true}}]}"#).is_err());
}

#[test]
fn localhost_is_refused_as_a_host_like_tke_does() {
    let yaml = world("{}").replace("- host: a.example.com", "- host: localhost");
    let b = model::build(&snapshot(&yaml));
    assert!(b.stacks.is_empty(), "its only host is refused");
    assert!(
        b.problems
            .iter()
            .any(|p| p.reason == Reason::InvalidHost && p.message.contains("TKE refuses")),
        "{:?}",
        b.problems
    );
}

#[test]
fn every_refused_tke_annotation_gets_an_unsupported_warning_not_an_unknown_one() {
    for (a, instead) in model::build::TKE_REFUSED_ANNOTATIONS {
        let b = build(&format!("{{{a}: \"x\"}}"));
        assert_eq!(b.stacks.len(), 1, "{a} does not stop the sync");
        assert_eq!(b.problems.len(), 1, "{a}: {:?}", b.problems);
        assert_eq!(b.problems[0].reason, Reason::UnsupportedAnnotation, "{a}");
        assert!(b.problems[0].message.contains(instead), "{a}");
    }
}

#[test]
fn unmatched_hosts_go_to_the_oldest_ingress_first_host_only_when_the_class_asks_for_tkes_answer() {
    let default_server = |b: &model::BuildOutput| -> Vec<String> {
        b.stacks
            .values()
            .flat_map(|d| &d.listeners)
            .flat_map(|l| &l.domains)
            .filter(|d| d.default_server)
            .map(|d| d.domain.clone())
            .collect()
    };
    // Default: the reserved catch-all domain answers unmatched hosts (404).
    let b = build("{}");
    assert!(
        default_server(&b)
            .iter()
            .all(|d| d == "unmatched.clb-ingress.invalid"),
        "{:?}",
        default_server(&b)
    );
    let tke = world("{}").replace(
        "spec: {targetMode: Direct, create: {vpcId: vpc-abcdefgh}}",
        "spec: {targetMode: Direct, unmatchedHosts: ListenerDefaultDomain, create: {vpcId: vpc-abcdefgh}}",
    );
    let b = model::build(&snapshot(&tke));
    assert!(b.problems.is_empty(), "{:?}", b.problems);
    let ds = default_server(&b);
    assert!(!ds.is_empty());
    assert!(ds.iter().all(|d| d == "a.example.com"), "{ds:?}");
    assert!(
        b.stacks
            .values()
            .flat_map(|d| &d.listeners)
            .flat_map(|l| &l.domains)
            .all(|d| d.domain != "unmatched.clb-ingress.invalid"),
        "the placeholder goes"
    );
}
