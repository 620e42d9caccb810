//! TKE annotations: `listen-ports`, `lb-rs-weight` (their parsers) and every annotation the
//! model reads, through `model::build` (`auto-rewrite`, `auto-rewrite-code`, `direct-access`,
//! `loadbalance-retain`, `mode`).

use clb_ingress_core::model::build::{
    self, ANN_AUTO_REWRITE, ANN_AUTO_REWRITE_CODE, ANN_DIRECT_ACCESS, ANN_LISTEN_PORTS, ANN_MODE,
    ANN_RETAIN, ANN_RS_WEIGHT, MAX_WEIGHT, RsWeightGroup, RsWeights, parse_certificates,
    parse_listen_ports, parse_mix_rules, parse_rewrite_codes, parse_rs_weights,
};
use clb_ingress_core::model::{Effect, Protocol, Reason, Snapshot};
use proptest::prelude::*;
use serde_json::{Value, json};
use std::collections::BTreeMap;

fn protocol_name() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => Just("HTTP".to_string()),
        6 => Just("HTTPS".to_string()),
        1 => Just("http".to_string()),
        1 => "[A-Z]{0,6}",
    ]
}

fn port_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        8 => (1u32..=65_535).prop_map(Value::from),
        1 => Just(json!(0)),
        1 => (65_536u64..u64::MAX).prop_map(Value::from),
        1 => any::<i64>().prop_map(Value::from),
        1 => any::<f64>().prop_map(|f| json!(f)),
        1 => "[0-9]{1,5}".prop_map(Value::from),
        1 => Just(Value::Null),
    ]
}

/// A `listen-ports` value: a JSON list of one-key objects, as TKE documents, or arbitrary text.
fn listen_ports() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => proptest::collection::vec(
            proptest::collection::vec((protocol_name(), port_value()), 0..3), 0..4)
            .prop_map(|list| {
                let entries: Vec<Value> = list
                    .into_iter()
                    .map(|e| Value::Object(e.into_iter().collect()))
                    .collect();
                Value::Array(entries).to_string()
            }),
        1 => any::<String>(),
        1 => "[\\[\\]{}\":, 0-9A-Z]{0,30}",
    ]
}

fn weight_value() -> impl Strategy<Value = (Value, bool)> {
    prop_oneof![
        8 => (0..=MAX_WEIGHT).prop_map(|w| (Value::from(w), true)),
        1 => (MAX_WEIGHT + 1..=u32::MAX).prop_map(|w| (Value::from(w), false)),
        1 => any::<i64>().prop_filter("negative", |w| *w < 0).prop_map(|w| (Value::from(w), false)),
        1 => "[0-9]{1,3}".prop_map(|w| (Value::from(w), false)),
    ]
}

fn rs_weights() -> impl Strategy<Value = RsWeights> {
    let group = (
        proptest::option::of(prop_oneof![Just(Protocol::Http), Just(Protocol::Https)]),
        proptest::option::of("[a-z.*]{0,12}"),
        proptest::option::of("/[a-z/]{0,12}"),
        proptest::collection::vec(("[a-z0-9-]{1,10}", 0..=MAX_WEIGHT), 0..3),
        proptest::collection::vec("[a-z0-9-]{1,10}", 0..2),
        proptest::option::of(1u16..=65_535),
    )
        .prop_map(
            |(proto, host, path, stateful_sets, deployments, port)| RsWeightGroup {
                proto,
                port,
                host,
                path,
                stateful_sets,
                deployments,
            },
        );
    (
        proptest::option::of(0..=MAX_WEIGHT),
        proptest::collection::vec(group, 0..4),
    )
        .prop_map(|(default_weight, groups)| RsWeights {
            default_weight,
            groups,
        })
}

/// TKE's JSON spelling of a parsed `lb-rs-weight`.
fn rs_weights_json(w: &RsWeights) -> Value {
    let mut root = serde_json::Map::new();
    if let Some(d) = w.default_weight {
        root.insert("defaultWeight".into(), json!(d));
    }
    let groups: Vec<Value> = w
        .groups
        .iter()
        .map(|g| {
            let mut key = serde_json::Map::new();
            if let Some(p) = g.proto {
                let name = if p == Protocol::Http { "HTTP" } else { "HTTPS" };
                key.insert("proto".into(), json!(name));
            }
            if let Some(p) = g.port {
                // TKE writes the listener port as a number.
                key.insert("port".into(), json!(p));
            }
            if let Some(h) = &g.host {
                key.insert("host".into(), json!(h));
            }
            if let Some(p) = &g.path {
                key.insert("path".into(), json!(p));
            }
            let sts: Vec<Value> = g
                .stateful_sets
                .iter()
                .map(|(n, wt)| json!({"name": n, "weight": wt}))
                .collect();
            let deps: Vec<Value> = g
                .deployments
                .iter()
                .map(|n| json!({"name": n, "weight": 1}))
                .collect();
            json!({"key": key, "statefulSets": sts, "deployments": deps})
        })
        .collect();
    root.insert("groups".into(), Value::Array(groups));
    Value::Object(root)
}

/// One Ingress of class `clb` with the given annotations, its class and Service.
fn snapshot(annotations: &BTreeMap<String, String>) -> Snapshot {
    let mut snap = Snapshot::new("fuzz");
    let class = json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
        "metadata": {"name": "clb"},
        "spec": {"controller": build::DEFAULT_CONTROLLER_NAME},
    });
    let ingress = json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": "web", "namespace": "default", "annotations": annotations,
                     "creationTimestamp": "2024-01-01T00:00:00Z"},
        "spec": {"ingressClassName": "clb", "rules": [{"host": "a.com", "http": {"paths": [
            {"path": "/", "pathType": "Prefix",
             "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}}]},
    });
    let service = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"type": "NodePort", "ports": [{"port": 80, "nodePort": 30080}]},
    });
    snap.ingress_classes
        .push(serde_json::from_value(class).unwrap_or_default());
    snap.ingresses
        .push(serde_json::from_value(ingress).unwrap_or_default());
    snap.services.push(std::sync::Arc::new(
        serde_json::from_value(service).unwrap_or_default(),
    ));
    snap
}

fn bool_value() -> impl Strategy<Value = Option<String>> {
    proptest::option::of(prop_oneof![
        4 => Just("true".to_string()),
        4 => Just("false".to_string()),
        1 => any::<String>(),
        1 => Just("True".to_string()),
    ])
}

fn annotation_set() -> impl Strategy<Value = BTreeMap<String, String>> {
    (
        bool_value(),
        bool_value(),
        proptest::option::of(prop_oneof![
            Just("301".to_string()),
            Just(" 302 ".to_string()),
            Just("307".to_string()),
            Just("308".to_string()),
            "[0-9]{1,6}",
            Just("{}".to_string()),
            Just("{\"defaultRewriteCode\":307}".to_string()),
            Just(
                "{\"rewriteCodeInfos\":[{\"host\":\"a.example.com\",\"rewriteCode\":302}]}"
                    .to_string()
            ),
            "\\{\"(defaultRewriteCode|rewriteCodeInfos|x)\":[\\[\\]{}\", 0-9a-z]{0,20}\\}",
            any::<String>(),
        ]),
        bool_value(),
        proptest::option::weighted(0.3, listen_ports()),
        proptest::option::weighted(
            0.3,
            prop_oneof![
                rs_weights().prop_map(|w| rs_weights_json(&w).to_string()),
                any::<String>(),
            ],
        ),
        proptest::option::weighted(0.2, prop_oneof![Just("skip".to_string()), any::<String>()]),
    )
        .prop_map(|(retain, rewrite, code, direct, ports, weights, mode)| {
            let mut a = BTreeMap::new();
            let mut put = |k: &str, v: Option<String>| {
                if let Some(v) = v {
                    a.insert(k.to_string(), v);
                }
            };
            put(ANN_RETAIN, retain);
            put(ANN_AUTO_REWRITE, rewrite);
            put(ANN_AUTO_REWRITE_CODE, code);
            put(ANN_DIRECT_ACCESS, direct);
            put(ANN_LISTEN_PORTS, ports);
            put(ANN_RS_WEIGHT, weights);
            put(ANN_MODE, mode);
            a
        })
}

/// The annotations of the set that are invalid on their own (so the Ingress must be parked).
fn invalid_annotations(a: &BTreeMap<String, String>) -> Vec<&'static str> {
    let bool_ok = |v: &String| v == "true" || v == "false";
    let mut bad = Vec::new();
    for name in [ANN_RETAIN, ANN_AUTO_REWRITE, ANN_DIRECT_ACCESS] {
        if a.get(name).is_some_and(|v| !bool_ok(v)) {
            bad.push(name);
        }
    }
    // A bare 301/302/307, or TKE's JSON object form (`{}` included: every key is optional).
    if a.get(ANN_AUTO_REWRITE_CODE)
        .is_some_and(|c| parse_rewrite_codes(c).is_err())
    {
        bad.push(ANN_AUTO_REWRITE_CODE);
    }
    if a.get(ANN_LISTEN_PORTS)
        .is_some_and(|v| parse_listen_ports(v).is_err())
    {
        bad.push(ANN_LISTEN_PORTS);
    }
    if a.get(ANN_RS_WEIGHT)
        .is_some_and(|v| parse_rs_weights(v).is_err())
    {
        bad.push(ANN_RS_WEIGHT);
    }
    bad
}

proptest! {
    #![proptest_config(clb_fuzz::config())]

    #[test]
    fn any_listen_ports_value_parses_without_panicking_into_distinct_valid_listeners(
        v in listen_ports(),
    ) {
        let Ok(listeners) = parse_listen_ports(&v) else { return Ok(()) };
        prop_assert!(!listeners.is_empty());
        for (i, l) in listeners.iter().enumerate() {
            prop_assert!(l.1 > 0);
            prop_assert!(!listeners[..i].contains(l), "{:?} twice in {:?}", l, v);
        }
        // Every listener given is there, in order of first appearance.
        let parsed: Vec<BTreeMap<String, Value>> = serde_json::from_str(&v).unwrap_or_default();
        let mut want = Vec::new();
        for entry in parsed {
            for (proto, port) in entry {
                let proto = if proto == "HTTP" { Protocol::Http } else { Protocol::Https };
                let l = (proto, port.as_u64().and_then(|p| u16::try_from(p).ok()).unwrap_or(0));
                if !want.contains(&l) {
                    want.push(l);
                }
            }
        }
        prop_assert_eq!(listeners, want);
    }

    #[test]
    fn an_lb_rs_weight_value_round_trips_and_a_bad_weight_is_named_by_its_path(
        w in rs_weights(),
        bad in weight_value(),
        at in any::<prop::sample::Index>(),
    ) {
        let mut doc = rs_weights_json(&w);
        prop_assert_eq!(parse_rs_weights(&doc.to_string()), Ok(w.clone()));
        // Replace one weight: a bad one is refused with the JSON path of that weight.
        let slots: Vec<(usize, usize)> = w.groups.iter().enumerate()
            .flat_map(|(gi, g)| (0..g.stateful_sets.len()).map(move |wi| (gi, wi)))
            .collect();
        if slots.is_empty() {
            return Ok(());
        }
        let (gi, wi) = slots[at.index(slots.len())];
        doc["groups"][gi]["statefulSets"][wi]["weight"] = bad.0;
        let got = parse_rs_weights(&doc.to_string());
        if bad.1 {
            prop_assert!(got.is_ok(), "{:?}", got);
        } else {
            let err = got.err().unwrap_or_default();
            let path = format!("groups[{gi}].statefulSets[{wi}].weight");
            prop_assert!(err.contains(&path), "{err:?} does not name {path}");
        }
    }

    #[test]
    fn any_lb_rs_weight_text_parses_without_panicking(
        v in prop_oneof![any::<String>(), "[\\[\\]{}\":, 0-9a-zA-Z]{0,40}",
            Just("{\"groups\":[{\"key\":{},\"statefulSets\":[{\"name\":\"a\"}]}]}".to_string())],
    ) {
        if let Ok(w) = parse_rs_weights(&v) {
            prop_assert!(w.default_weight.is_none_or(|d| d <= MAX_WEIGHT));
            for g in &w.groups {
                prop_assert!(g.stateful_sets.iter().all(|(n, wt)| !n.is_empty() && *wt <= MAX_WEIGHT));
            }
        }
    }

    #[test]
    fn an_ingress_with_any_annotations_is_built_and_parked_exactly_when_one_is_invalid(
        annotations in annotation_set(),
    ) {
        let out = build::build(&snapshot(&annotations));
        let mut bad = invalid_annotations(&annotations);
        if annotations.get(ANN_MODE).is_some_and(|m| m == "skip") {
            // TKE's `mode: skip`: the Ingress is left alone, whatever else it says.
            bad.clear();
        }
        let parked: Vec<&str> = out.problems.iter()
            .filter(|p| p.effect == Effect::Parked && p.reason == Reason::InvalidAnnotation)
            .map(|p| p.field.as_str())
            .collect();
        if bad.is_empty() {
            prop_assert!(parked.is_empty(), "parked {:?} for {:?}", parked, annotations);
        } else {
            prop_assert_eq!(parked.len(), 1, "{:?} for {:?}", out.problems, annotations);
            let named = bad.iter().any(|a| parked[0] == format!("metadata.annotations[{a}]"));
            prop_assert!(named, "{:?} is not one of {:?}", parked[0], bad);
        }
    }
}

/// A `http-rules` / `https-rules` entry as TKE writes it, or junk; (JSON, host, path, port).
fn mix_entry() -> impl Strategy<Value = (Value, Option<String>, String, Option<String>)> {
    (
        proptest::option::of("[a-z]{1,6}\\.com"),
        proptest::option::of("/[a-z/]{0,8}"),
        any::<bool>(),
        prop_oneof![
            (1u16..=65_535).prop_map(|p| (json!(p), Some(p.to_string()))),
            "[a-z]{1,6}".prop_map(|n| (json!(n), Some(n))),
            Just((Value::Null, None)),
        ],
    )
        .prop_map(|(host, path, host_in_backend, (port, port_text))| {
            let mut backend = json!({"serviceName": "web", "servicePort": port});
            let mut entry = json!({"backend": {}});
            if let Some(h) = &host {
                if host_in_backend {
                    backend["host"] = json!(h);
                } else {
                    entry["host"] = json!(h);
                }
            }
            if let Some(p) = &path {
                entry["path"] = json!(p);
            }
            entry["backend"] = backend;
            (entry, host, path.unwrap_or_else(|| "/".into()), port_text)
        })
}

proptest! {
    #![proptest_config(clb_fuzz::config())]

    #[test]
    fn any_mix_rules_value_parses_without_panicking_and_tkes_forms_keep_host_path_and_port(
        entries in proptest::collection::vec(mix_entry(), 0..4),
        nulls in 0usize..2,
        junk in any::<String>(),
    ) {
        let _ = parse_mix_rules(&junk);
        let mut list: Vec<Value> = entries.iter().map(|e| e.0.clone()).collect();
        list.extend(std::iter::repeat_n(Value::Null, nulls));
        // Multi-line, as TKE users write them.
        let text = serde_json::to_string_pretty(&Value::Array(list)).unwrap();
        let parsed = parse_mix_rules(&text).map_err(|e| TestCaseError::fail(format!("{e}: {text}")))?;
        prop_assert_eq!(parsed.len(), entries.len());
        for (p, (_, host, path, port)) in parsed.iter().zip(&entries) {
            prop_assert_eq!(&p.host, host);
            prop_assert_eq!(&p.path, path);
            prop_assert_eq!(&p.port, port);
            prop_assert_eq!(p.service.as_deref(), Some("web"));
        }
    }

    #[test]
    fn any_certificate_value_parses_without_panicking_into_distinct_hosts_and_clean_ids(
        v in prop_oneof![
            any::<String>(),
            "\\{(\"[a-z.]{0,8}\": \"[A-Za-z0-9 -]{0,10}\",? ?){0,3}\\}",
        ],
    ) {
        if let Ok(certs) = parse_certificates(&v) {
            prop_assert!(!certs.is_empty());
            for (i, (h, id)) in certs.iter().enumerate() {
                prop_assert!(!h.is_empty());
                prop_assert!(id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'), "{:?}", id);
                prop_assert!(!certs[..i].iter().any(|(o, _)| o == h));
            }
        }
    }
}

#[test]
fn the_annotation_fixture_reaches_the_annotation_parsers() {
    let out = build::build(&snapshot(&BTreeMap::new()));
    assert_eq!(out.stacks.len(), 1, "{:?}", out.problems);
    assert!(
        out.problems.iter().all(|p| p.effect != Effect::Parked),
        "{:?}",
        out.problems
    );
    let bad = BTreeMap::from([(ANN_AUTO_REWRITE_CODE.to_string(), "999".to_string())]);
    let out = build::build(&snapshot(&bad));
    let field = format!("metadata.annotations[{ANN_AUTO_REWRITE_CODE}]");
    assert!(
        out.problems
            .iter()
            .any(|p| p.effect == Effect::Parked && p.field == field),
        "{:?}",
        out.problems
    );
}
