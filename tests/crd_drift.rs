//! The checked-in CRDs under `crds/` are exactly what `clb-ingress crd` generates, and the
//! generated schema is a valid structural schema with descriptions, printer columns, cluster
//! scope and the OpenAPI validation the controller relies on.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;
use serde_json::Value;

const CRD_FILE: &str = "clb-ingress.io_clbclassparameters.yaml";
const REGENERATE: &str = "regenerate with `cargo run -q -- crd --output-dir crds` and commit crds/";

/// Formats the Kubernetes apiserver knows for CRD schemas (apiextensions `format` docs).
const KNOWN_FORMATS: &[&str] = &[
    "bsonobjectid",
    "uri",
    "email",
    "hostname",
    "ipv4",
    "ipv6",
    "cidr",
    "mac",
    "uuid",
    "uuid3",
    "uuid4",
    "uuid5",
    "isbn",
    "isbn10",
    "isbn13",
    "creditcard",
    "ssn",
    "hexcolor",
    "rgbcolor",
    "byte",
    "password",
    "date",
    "duration",
    "datetime",
    "date-time",
    "int32",
    "int64",
    "float",
    "double",
];

/// Keywords a CRD schema may not use at all.
const FORBIDDEN_KEYWORDS: &[&str] = &[
    "$ref",
    "$schema",
    "definitions",
    "$defs",
    "id",
    "dependencies",
    "patternProperties",
    "additionalItems",
    "const",
];

fn crds_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("crds")
}

fn run_crd(args: &[&str]) -> String {
    let out = Command::new(clb_test_support::emulator::bin())
        .arg("crd")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running clb-ingress crd: {e}"));
    assert!(
        out.status.success(),
        "clb-ingress crd failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap_or_else(|e| panic!("crd output is not UTF-8: {e}"))
}

fn read_dir_files(dir: &Path) -> BTreeMap<String, String> {
    std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| {
            let entry = entry.unwrap_or_else(|e| panic!("listing {}: {e}", dir.display()));
            let name = entry.file_name().to_string_lossy().into_owned();
            let text = std::fs::read_to_string(entry.path())
                .unwrap_or_else(|e| panic!("reading {}: {e}", entry.path().display()));
            (name, text)
        })
        .filter(|(name, _)| name.ends_with(".yaml"))
        .collect()
}

fn checked_in() -> String {
    let path = crds_dir().join(CRD_FILE);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}; {REGENERATE}", path.display()))
}

fn checked_in_json() -> Value {
    serde_saphyr::from_str(&checked_in())
        .unwrap_or_else(|e| panic!("crds/{CRD_FILE} is not YAML: {e}"))
}

fn schema() -> Value {
    checked_in_json()["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
}

fn spec_property(path: &[&str]) -> Value {
    let mut node = schema()["properties"]["spec"].clone();
    for key in path {
        node = node["properties"][key].clone();
    }
    assert!(!node.is_null(), "no schema at spec.{}", path.join("."));
    node
}

/// The checked-in `ClbBackendConfig` CRD.
const BACKEND_CRD_FILE: &str = "clb-ingress.io_clbbackendconfigs.yaml";

fn backend_checked_in() -> String {
    let path = crds_dir().join(BACKEND_CRD_FILE);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}; {REGENERATE}", path.display()))
}

#[test]
fn printed_crd_matches_the_checked_in_file() {
    let printed = run_crd(&[]);
    let want = format!("{}---\n{}", checked_in(), backend_checked_in());
    assert!(
        printed == want,
        "crds/{CRD_FILE} or crds/{BACKEND_CRD_FILE} differs from `clb-ingress crd` output; {REGENERATE}"
    );
}

#[test]
fn the_backend_config_crd_is_namespaced_documented_and_bounds_clb_ranges() {
    let crd: Value = serde_saphyr::from_str(&backend_checked_in())
        .unwrap_or_else(|e| panic!("crds/{BACKEND_CRD_FILE} is not YAML: {e}"));
    assert_eq!(crd["spec"]["scope"], "Namespaced");
    assert_eq!(crd["spec"]["names"]["kind"], "ClbBackendConfig");
    let spec = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
    let mut missing = Vec::new();
    undocumented(spec, "spec", &mut missing);
    assert!(
        missing.is_empty(),
        "fields without description: {missing:?}"
    );
    let hc = &spec["properties"]["healthCheck"]["properties"];
    let bounds = |v: &Value| (v["minimum"].as_f64(), v["maximum"].as_f64());
    assert_eq!(bounds(&hc["timeoutSeconds"]), (Some(2.0), Some(60.0)));
    assert_eq!(bounds(&hc["intervalSeconds"]), (Some(2.0), Some(300.0)));
    assert_eq!(bounds(&hc["healthyThreshold"]), (Some(2.0), Some(10.0)));
    assert_eq!(bounds(&hc["unhealthyThreshold"]), (Some(2.0), Some(10.0)));
    let enums = |v: &Value| -> Vec<String> {
        v["enum"]
            .as_array()
            .unwrap_or_else(|| panic!("no enum in {v}"))
            .iter()
            // An optional field's enum also lists null (with `nullable: true`).
            .filter_map(|e| e.as_str().map(str::to_string))
            .collect()
    };
    assert_eq!(
        enums(&spec["properties"]["scheduler"]),
        ["WRR", "LEAST_CONN", "IP_HASH"]
    );
    assert_eq!(
        enums(&spec["properties"]["backendProtocol"]),
        ["HTTP", "HTTPS", "GRPC", "GRPCS"]
    );
    assert_eq!(enums(&hc["method"]), ["HEAD", "GET"]);
}

#[test]
fn output_dir_writes_exactly_the_checked_in_files() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let dir_arg = dir.path().to_string_lossy().into_owned();
    run_crd(&["--output-dir", &dir_arg]);
    let generated = read_dir_files(dir.path());
    let committed = read_dir_files(&crds_dir());
    assert_eq!(
        generated.keys().collect::<Vec<_>>(),
        committed.keys().collect::<Vec<_>>(),
        "the set of CRD files differs; {REGENERATE}"
    );
    for (name, text) in &generated {
        assert!(
            committed.get(name) == Some(text),
            "crds/{name} is stale; {REGENERATE}"
        );
    }
}

#[test]
fn checked_in_yaml_parses_back_to_the_derived_crd() {
    let parsed: CustomResourceDefinition = serde_saphyr::from_str(&checked_in())
        .unwrap_or_else(|e| panic!("crds/{CRD_FILE} is not a CustomResourceDefinition: {e}"));
    assert!(
        parsed == clb_ingress::crd::ClbClassParameters::crd(),
        "the YAML does not round-trip to ClbClassParameters::crd()"
    );
}

#[test]
fn crd_is_cluster_scoped_in_the_clb_ingress_group() {
    let crd = checked_in_json();
    assert_eq!(crd["metadata"]["name"], "clbclassparameters.clb-ingress.io");
    assert_eq!(crd["spec"]["group"], "clb-ingress.io");
    assert_eq!(crd["spec"]["scope"], "Cluster");
    assert_eq!(crd["spec"]["names"]["kind"], "ClbClassParameters");
    assert_eq!(crd["spec"]["names"]["shortNames"][0], "clbparams");
    let version = &crd["spec"]["versions"][0];
    assert_eq!(version["name"], "v1alpha1");
    assert_eq!(version["served"], true);
    assert_eq!(version["storage"], true);
}

#[test]
fn crd_has_printer_columns_for_lb_mode_sharing_and_age() {
    let crd = checked_in_json();
    let columns: Vec<(String, String)> = crd["spec"]["versions"][0]["additionalPrinterColumns"]
        .as_array()
        .unwrap_or_else(|| panic!("no additionalPrinterColumns"))
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap_or_default().to_owned(),
                c["jsonPath"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let expected = [
        ("LB", ".spec.loadBalancerId"),
        ("Mode", ".spec.targetMode"),
        ("Sharing", ".spec.sharing"),
        ("Age", ".metadata.creationTimestamp"),
    ];
    let expected: Vec<(String, String)> = expected
        .iter()
        .map(|(n, p)| ((*n).to_owned(), (*p).to_owned()))
        .collect();
    assert_eq!(columns, expected);
}

/// Every property under `spec` (recursively) has a non-empty description.
fn undocumented(node: &Value, path: &str, out: &mut Vec<String>) {
    if let Some(props) = node["properties"].as_object() {
        for (key, child) in props {
            let child_path = format!("{path}.{key}");
            if child["description"].as_str().is_none_or(str::is_empty) {
                out.push(child_path.clone());
            }
            undocumented(child, &child_path, out);
        }
    }
    if node["items"].is_object() {
        undocumented(&node["items"], &format!("{path}[]"), out);
    }
}

#[test]
fn every_spec_field_has_a_description() {
    let spec = &schema()["properties"]["spec"];
    assert!(spec["description"].as_str().is_some_and(|d| !d.is_empty()));
    let mut missing = Vec::new();
    undocumented(spec, "spec", &mut missing);
    assert!(
        missing.is_empty(),
        "fields without description: {missing:?}"
    );
    let root = schema()["description"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        !root.contains("Auto-generated"),
        "the kind needs its own description, not kube's placeholder: {root}"
    );
}

#[test]
fn load_balancer_id_must_look_like_a_clb_id() {
    let lb = spec_property(&["loadBalancerId"]);
    assert_eq!(lb["pattern"], "^lb-[a-z0-9]{8}$");
    let pattern = regex::Regex::new(lb["pattern"].as_str().unwrap_or_default())
        .unwrap_or_else(|e| panic!("pattern does not compile: {e}"));
    assert!(pattern.is_match("lb-0a1b2c3d"));
    assert!(!pattern.is_match("lb-123"));
    assert!(!pattern.is_match("xlb-0a1b2c3d"));
}

#[test]
fn listener_ports_are_limited_to_1_through_65535() {
    for field in ["httpPort", "httpsPort"] {
        let port = spec_property(&[field]);
        assert_eq!(port["type"], "integer", "{field}");
        assert_eq!(port["minimum"].as_f64(), Some(1.0), "{field}");
        assert_eq!(port["maximum"].as_f64(), Some(65535.0), "{field}");
    }
}

#[test]
fn bandwidth_and_tags_are_bounded() {
    let bandwidth = spec_property(&["create", "bandwidthMbps"]);
    assert_eq!(bandwidth["minimum"].as_f64(), Some(1.0));
    assert_eq!(bandwidth["maximum"].as_f64(), Some(10240.0));
    assert_eq!(
        spec_property(&["create", "tags"])["maxProperties"].as_u64(),
        Some(17)
    );
}

#[test]
fn enums_list_their_values_and_defaults() {
    for (path, values, default) in [
        (&["targetMode"][..], &["NodePort", "Direct"][..], "NodePort"),
        (
            &["sharing"][..],
            &["PerIngress", "Shared"][..],
            "PerIngress",
        ),
        (
            &["create", "networkType"][..],
            &["OPEN", "INTERNAL"][..],
            "OPEN",
        ),
    ] {
        let node = spec_property(path);
        let listed: Vec<&str> = node["enum"]
            .as_array()
            .unwrap_or_else(|| panic!("{path:?} has no enum"))
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert_eq!(listed, values, "{path:?}");
        assert_eq!(node["default"], default, "{path:?}");
    }
}

#[test]
fn cross_field_rules_are_cel_validations() {
    let rules = |path: &[&str]| -> Vec<String> {
        spec_property(path)["x-kubernetes-validations"]
            .as_array()
            .unwrap_or_else(|| panic!("{path:?} has no x-kubernetes-validations"))
            .iter()
            .map(|r| r["rule"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    assert_eq!(
        rules(&["defaultCertificate"]),
        ["has(self.certId) != has(self.secret)"]
    );
    assert_eq!(
        rules(&["create"]),
        ["self.networkType != 'INTERNAL' || (has(self.vpcId) && has(self.subnetId))"]
    );
}

/// Collects violations of the Kubernetes structural-schema rules (and CRD-forbidden keywords)
/// below `node`. `in_combinator` is true inside allOf/anyOf/oneOf/not, where type, description,
/// default, nullable and additionalProperties may not appear.
fn structural_violations(node: &Value, path: &str, in_combinator: bool, out: &mut Vec<String>) {
    let Some(obj) = node.as_object() else {
        out.push(format!("{path}: schema is not an object"));
        return;
    };
    for key in FORBIDDEN_KEYWORDS {
        if obj.contains_key(*key) {
            out.push(format!("{path}: forbidden keyword {key}"));
        }
    }
    if obj.get("uniqueItems") == Some(&Value::Bool(true)) {
        out.push(format!("{path}: uniqueItems: true is forbidden"));
    }
    if obj.get("additionalProperties") == Some(&Value::Bool(false)) {
        out.push(format!("{path}: additionalProperties: false is forbidden"));
    }
    if obj.contains_key("additionalProperties") && obj.contains_key("properties") {
        out.push(format!(
            "{path}: properties and additionalProperties together"
        ));
    }
    let int_or_string = obj.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true));
    let preserve = obj.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
    if in_combinator {
        for key in [
            "type",
            "description",
            "default",
            "nullable",
            "additionalProperties",
        ] {
            if obj.contains_key(key) {
                out.push(format!("{path}: {key} inside allOf/anyOf/oneOf/not"));
            }
        }
    } else if !int_or_string && !preserve {
        match obj.get("type").and_then(Value::as_str) {
            Some("object" | "array" | "string" | "integer" | "number" | "boolean") => {}
            other => out.push(format!("{path}: missing or invalid type {other:?}")),
        }
    }
    if obj.get("type").and_then(Value::as_str) == Some("array") && !obj.contains_key("items") {
        out.push(format!("{path}: array without items"));
    }
    if let Some(format) = obj.get("format").and_then(Value::as_str)
        && !KNOWN_FORMATS.contains(&format)
    {
        out.push(format!("{path}: format {format} unknown to Kubernetes"));
    }
    if let Some(pattern) = obj.get("pattern").and_then(Value::as_str)
        && regex::Regex::new(pattern).is_err()
    {
        out.push(format!("{path}: pattern {pattern} does not compile"));
    }
    if let Some(props) = obj.get("properties").and_then(Value::as_object) {
        for (key, child) in props {
            structural_violations(child, &format!("{path}.{key}"), in_combinator, out);
        }
    }
    if let Some(items) = obj.get("items") {
        structural_violations(items, &format!("{path}[]"), in_combinator, out);
    }
    if let Some(extra) = obj.get("additionalProperties").filter(|v| v.is_object()) {
        structural_violations(extra, &format!("{path}{{*}}"), in_combinator, out);
    }
    for key in ["allOf", "anyOf", "oneOf"] {
        for (i, child) in obj
            .get(key)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            structural_violations(child, &format!("{path}.{key}[{i}]"), true, out);
        }
    }
    if let Some(not) = obj.get("not") {
        structural_violations(not, &format!("{path}.not"), true, out);
    }
}

#[test]
fn schema_is_a_structural_kubernetes_schema() {
    let root = schema();
    let mut violations = Vec::new();
    structural_violations(&root, "openAPIV3Schema", false, &mut violations);
    assert!(violations.is_empty(), "{violations:#?}");
    assert_eq!(root["type"], "object");
    let metadata = &root["properties"]["metadata"];
    assert!(
        metadata.is_null() || metadata.as_object().is_some_and(|m| m.len() == 1),
        "metadata may only be declared as `type: object`: {metadata}"
    );
}

#[test]
fn structural_check_catches_a_missing_type() {
    let bad = serde_json::json!({
        "type": "object",
        "properties": {"x": {"description": "no type"}, "y": {"$ref": "#/definitions/y"}}
    });
    let mut violations = Vec::new();
    structural_violations(&bad, "root", false, &mut violations);
    assert_eq!(violations.len(), 3, "{violations:#?}");
}
