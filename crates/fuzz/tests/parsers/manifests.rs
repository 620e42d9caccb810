//! Manifest loading (`clb_ingress_core::manifests`, used by `plan`/`apply -f`): YAML multi-doc,
//! JSON and `kind: List` parsing, and sorting objects into a snapshot.

use clb_ingress_core::manifests::{add_object, parse_documents};
use clb_ingress_core::model::Snapshot;
use proptest::prelude::*;
use serde_json::{Value, json};

/// YAML-ish text from the tokens that matter to a YAML parser (documents, anchors, aliases,
/// tags, flow and block collections), plus arbitrary text.
fn yaml_like() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        Just("---\n"),
        Just("...\n"),
        Just("kind: List\n"),
        Just("items:\n"),
        Just("- "),
        Just("  "),
        Just(": "),
        Just("\n"),
        Just("{"),
        Just("}"),
        Just("["),
        Just("]"),
        Just(", "),
        Just("&a "),
        Just("*a"),
        Just("<<: *a\n"),
        Just("!!str "),
        Just("!custom "),
        Just("\""),
        Just("'"),
        Just("|\n"),
        Just(">-\n"),
        Just("# c\n"),
        Just("apiVersion: networking.k8s.io/v1\n"),
        Just("kind: Ingress\n"),
        Just("metadata: {name: x}\n"),
        Just("spec:\n"),
        Just("name"),
        Just("1e999"),
        Just("~"),
        Just("\t"),
        Just("\u{feff}"),
    ];
    prop_oneof![
        4 => proptest::collection::vec(token, 0..24).prop_map(|t| t.concat()),
        1 => any::<String>(),
    ]
}

const KINDS: &[(&str, &str)] = &[
    ("networking.k8s.io/v1", "Ingress"),
    ("networking.k8s.io/v1beta1", "Ingress"),
    ("networking.k8s.io/v1", "IngressClass"),
    ("v1", "Service"),
    ("v1", "Secret"),
    ("v1", "Node"),
    ("v1", "Namespace"),
    ("discovery.k8s.io/v1", "EndpointSlice"),
    ("clb-ingress.io/v1alpha1", "ClbClassParameters"),
    ("v1", "ConfigMap"),
    ("apps/v1", "Deployment"),
];

/// A Kubernetes-like object of a known kind, with arbitrary extra fields.
fn object() -> impl Strategy<Value = Value> {
    (
        any::<prop::sample::Index>(),
        "[a-z0-9-]{1,12}",
        proptest::option::of("[a-z0-9-]{1,12}"),
        proptest::collection::btree_map("[a-z]{1,6}", "[ -~]{0,10}", 0..3),
    )
        .prop_map(|(k, name, ns, labels)| {
            let (api, kind) = *k.get(KINDS);
            json!({"apiVersion": api, "kind": kind,
                   "metadata": {"name": name, "namespace": ns, "labels": labels}})
        })
}

/// Any JSON value, to feed `add_object` shapes no schema expects.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        "[ -~]{0,8}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map(
                prop_oneof![
                    "[a-z]{1,8}",
                    Just("metadata".to_string()),
                    Just("spec".to_string()),
                    Just("rules".to_string())
                ],
                inner,
                0..4,
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn known(v: &Value) -> bool {
    let api = v["apiVersion"].as_str().unwrap_or("");
    matches!(
        (api, v["kind"].as_str().unwrap_or("")),
        ("networking.k8s.io/v1", "Ingress" | "IngressClass")
            | ("v1", "Service" | "Secret" | "Node" | "Namespace")
            | ("discovery.k8s.io/v1", "EndpointSlice")
    ) || (v["kind"] == "ClbClassParameters" && api.starts_with("clb-ingress.io/"))
}

proptest! {
    #![proptest_config(clb_fuzz::config())]

    #[test]
    fn any_manifest_text_parses_without_panicking_and_lists_are_flattened(
        text in yaml_like(),
        json_file in any::<bool>(),
    ) {
        let path = if json_file { "m.json" } else { "m.yaml" };
        let Ok(docs) = parse_documents(path, &text) else { return Ok(()) };
        let mut snap = Snapshot::new("fuzz");
        for d in docs {
            prop_assert!(!d.is_null());
            let _ = add_object(&mut snap, d);
        }
    }

    #[test]
    fn generated_objects_come_back_from_yaml_documents_json_and_lists(
        objects in proptest::collection::vec(object(), 0..6),
        split in any::<prop::sample::Index>(),
    ) {
        // One YAML file with a document per object (JSON is YAML), a null document, and a List.
        let at = if objects.is_empty() { 0 } else { split.index(objects.len() + 1) };
        let (single, listed) = objects.split_at(at);
        let mut yaml = String::from("---\n");
        for o in single {
            yaml.push_str(&format!("{o}\n---\n"));
        }
        yaml.push_str(&format!("{}\n", json!({"apiVersion": "v1", "kind": "List", "items": listed})));
        let docs = parse_documents("m.yaml", &yaml);
        prop_assert_eq!(docs.as_ref().ok(), Some(&objects), "{}", yaml);
        let json_list = json!({"apiVersion": "v1", "kind": "List", "items": objects}).to_string();
        let from_json = parse_documents("m.json", &json_list).ok();
        prop_assert_eq!(from_json.as_ref(), Some(&objects));
        // Each known kind lands in the snapshot; an Ingress of another apiVersion is refused.
        let mut snap = Snapshot::new("fuzz");
        for o in &objects {
            let got = add_object(&mut snap, o.clone());
            if o["kind"] == "Ingress" && o["apiVersion"] != "networking.k8s.io/v1" {
                prop_assert!(got.as_ref().is_err_and(|e| e.contains("apiVersion")), "{:?}", got);
            } else if known(o) {
                // A known kind is added, or refused with the reason its schema gives.
                prop_assert!(got.as_ref().is_ok_and(|a| *a) || got.as_ref().is_err_and(|e| !e.is_empty()), "{:?}", got);
            } else {
                prop_assert_eq!(got, Ok(false), "{}", o);
            }
        }
    }

    #[test]
    fn any_object_shape_is_added_or_refused_without_panicking(
        body in json_value(),
        k in any::<prop::sample::Index>(),
    ) {
        let (api, kind) = *k.get(KINDS);
        let mut obj = match body {
            Value::Object(m) => Value::Object(m),
            other => json!({"spec": other}),
        };
        obj["apiVersion"] = json!(api);
        obj["kind"] = json!(kind);
        let mut snap = Snapshot::new("fuzz");
        match add_object(&mut snap, obj.clone()) {
            Ok(added) => prop_assert_eq!(added, known(&obj)),
            Err(e) => prop_assert!(!e.is_empty() && (known(&obj) || kind == "Ingress")),
        }
    }
}
