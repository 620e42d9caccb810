//! The Helm chart in `helm/clb-ingress/`: rendered by real Helm (the Helm v4 Go engine bundled in
//! the `helm-python-sdk` wheel, driven by `tests/helm/render.py` in a venv that
//! `tests/helm/venv.sh` makes under `target/`), with default and non-default values; every object
//! validated against the Kubernetes 1.33 schemas twice (kubernetes-validate's strict JSON schemas
//! in Python, and here by deserializing into the k8s-openapi `v1_33` types, refusing any field
//! they drop); and its RBAC compared with the API calls the real controller makes, started with
//! the chart's own arguments against the in-repo test API server.

use clb_test_support::cluster;

use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Secret, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::IngressClass;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const CHART: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/helm/clb-ingress");
const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const KUBE_VERSION: &str = "1.33.0";
const RELEASE: &str = "clb-ingress";
const NAMESPACE: &str = "clb-system";

// ---------------------------------------------------------------------------------------------
// Rendering

/// The venv's python (made once per test process; `venv.sh` also locks across processes).
fn python() -> &'static Path {
    static PY: OnceLock<PathBuf> = OnceLock::new();
    PY.get_or_init(|| {
        let out = Command::new("bash")
            .arg(format!("{ROOT}/tests/helm/venv.sh"))
            .stderr(Stdio::inherit())
            .output()
            .expect("run tests/helm/venv.sh");
        assert!(out.status.success(), "tests/helm/venv.sh failed");
        PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
    })
}

struct Rendered {
    out: Value,
}

impl Rendered {
    fn objects(&self) -> Vec<(&str, &Value)> {
        self.out["objects"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| (o["template"].as_str().unwrap(), &o["object"]))
            .collect()
    }
    fn all(&self, kind: &str) -> Vec<&Value> {
        self.objects()
            .into_iter()
            .filter(|(_, o)| o["kind"] == kind)
            .map(|(_, o)| o)
            .collect()
    }
    fn one(&self, kind: &str) -> &Value {
        let all = self.all(kind);
        assert_eq!(all.len(), 1, "expected one {kind}, got {}", all.len());
        all[0]
    }
    fn kinds(&self) -> BTreeSet<String> {
        self.objects()
            .iter()
            .map(|(_, o)| o["kind"].as_str().unwrap().to_string())
            .collect()
    }
    fn typed<T: DeserializeOwned>(&self, kind: &str) -> T {
        serde_json::from_value(self.one(kind).clone()).unwrap()
    }
    fn notes(&self) -> &str {
        self.out["notes"].as_str().unwrap()
    }
    fn args(&self) -> Vec<String> {
        let d: Deployment = self.typed("Deployment");
        d.spec.unwrap().template.spec.unwrap().containers[0]
            .args
            .clone()
            .unwrap()
    }
}

/// Render the chart with `values` (merged over values.yaml by Helm); panics on a schema or
/// template error.
fn render(values: Value) -> Rendered {
    let out = try_render(values.clone());
    assert!(
        out["schemaError"].is_null(),
        "values {values} rejected by values.schema.json: {}",
        out["schemaError"]
    );
    assert!(
        out["renderError"].is_null(),
        "render failed with {values}: {}",
        out["renderError"]
    );
    Rendered { out }
}

/// The cluster id every render gets unless the values name one (it is required).
const CLUSTER_ID: &str = "cls-test0001";

/// `values` with [`CLUSTER_ID`] when they set no `controller.clusterId`.
fn with_cluster_id(mut values: Value) -> Value {
    if values["controller"]["clusterId"].is_null() {
        if !values["controller"].is_object() {
            values["controller"] = json!({});
        }
        values["controller"]["clusterId"] = json!(CLUSTER_ID);
    }
    values
}

fn try_render(values: Value) -> Value {
    try_render_exact(with_cluster_id(values))
}

/// Render `values` as given.
fn try_render_exact(values: Value) -> Value {
    let mut child = Command::new(python())
        .arg(format!("{ROOT}/tests/helm/render.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start render.py");
    let req = json!({"chart": CHART, "values": values, "release": RELEASE,
        "namespace": NAMESPACE, "kubeVersion": KUBE_VERSION});
    child
        .stdin
        .take()
        .unwrap()
        .write_all(req.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "render.py failed");
    serde_json::from_slice(&out.stdout).expect("render.py output")
}

// ---------------------------------------------------------------------------------------------
// Validation

/// Every field of `orig` must be in `back` with the same value (`back` may add defaults): a
/// field the typed struct does not know is dropped on the way through and reported here.
fn dropped_fields(orig: &Value, back: &Value, path: &str, out: &mut Vec<String>) {
    match (orig, back) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in a {
                match b.get(k) {
                    Some(w) => dropped_fields(v, w, &format!("{path}/{k}"), out),
                    None if v.is_null() => {}
                    None => out.push(format!("{path}/{k} (unknown field)")),
                }
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (v, w)) in a.iter().zip(b).enumerate() {
                dropped_fields(v, w, &format!("{path}/{i}"), out);
            }
        }
        (a, b) if a == b => {}
        (a, b) => out.push(format!("{path}: {a} became {b}")),
    }
}

fn typed_check<T: DeserializeOwned + serde::Serialize>(obj: &Value) -> Vec<String> {
    match serde_json::from_value::<T>(obj.clone()) {
        Err(e) => vec![format!("does not deserialize: {e}")],
        Ok(t) => {
            let back = serde_json::to_value(&t).unwrap();
            let mut out = Vec::new();
            dropped_fields(obj, &back, "", &mut out);
            out
        }
    }
}

/// A ServiceMonitor (prometheus-operator CRD; no schema here): it must select the metrics
/// Service by its labels, in its namespace, on a port the Service names.
fn service_monitor_check(r: &Rendered, sm: &Value) -> Vec<String> {
    let mut errs = Vec::new();
    let Some(svc) = r.all("Service").into_iter().next() else {
        return vec!["no Service to scrape".into()];
    };
    for (k, v) in sm["spec"]["selector"]["matchLabels"].as_object().unwrap() {
        if svc["metadata"]["labels"][k] != *v {
            errs.push(format!("selector {k}={v} does not match the Service"));
        }
    }
    if sm["spec"]["namespaceSelector"]["matchNames"] != json!([svc["metadata"]["namespace"]]) {
        errs.push("namespaceSelector is not the Service's namespace".into());
    }
    let ports: Vec<&Value> = svc["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| &p["name"])
        .collect();
    for ep in sm["spec"]["endpoints"].as_array().unwrap() {
        if !ports.contains(&&ep["port"]) {
            errs.push(format!(
                "endpoint port {} is not a Service port",
                ep["port"]
            ));
        }
    }
    errs
}

/// Kinds of operators' CRDs (prometheus-operator, cert-manager): no schema here; checked by
/// hand below.
const OPERATOR_KINDS: [&str; 4] = ["ServiceMonitor", "PrometheusRule", "Certificate", "Issuer"];

/// A PrometheusRule: every rule has a name (`alert` or `record`) and an `expr`, and only
/// prometheus-operator Rule fields.
fn prometheus_rule_check(rule: &Value) -> Vec<String> {
    let mut errs = Vec::new();
    let Some(groups) = rule["spec"]["groups"].as_array() else {
        return vec!["no spec.groups".into()];
    };
    for g in groups {
        for r in g["rules"].as_array().into_iter().flatten() {
            let named = r["alert"].is_string() != r["record"].is_string();
            if !named || !r["expr"].is_string() {
                errs.push(format!("rule without a name or expr: {r}"));
            }
            for k in r.as_object().unwrap().keys() {
                if ![
                    "alert",
                    "record",
                    "expr",
                    "for",
                    "labels",
                    "annotations",
                    "keep_firing_for",
                ]
                .contains(&k.as_str())
                {
                    errs.push(format!("unknown rule field {k}"));
                }
            }
        }
    }
    errs
}

/// cert-manager objects: a Certificate writes the Secret the Deployment mounts, for the
/// webhook Service's names, from an Issuer that exists (or one named by the user).
fn cert_manager_check(r: &Rendered, obj: &Value) -> Vec<String> {
    let mut errs = Vec::new();
    if obj["kind"] == "Issuer" {
        if obj["spec"].as_object().is_none_or(|s| s.len() != 1) {
            errs.push(format!("an Issuer has exactly one type: {}", obj["spec"]));
        }
        return errs;
    }
    let secret = obj["spec"]["secretName"].as_str().unwrap_or_default();
    let mounted = r.one("Deployment")["spec"]["template"]["spec"]["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|v| v["secret"]["secretName"] == secret);
    if !mounted {
        errs.push(format!("Secret {secret} is not mounted"));
    }
    let issuer = &obj["spec"]["issuerRef"];
    if issuer["name"].as_str().is_none_or(str::is_empty) {
        errs.push("no issuerRef.name".into());
    }
    for k in obj["spec"].as_object().unwrap().keys() {
        if ![
            "secretName",
            "dnsNames",
            "issuerRef",
            "duration",
            "renewBefore",
        ]
        .contains(&k.as_str())
        {
            errs.push(format!("unexpected Certificate field {k}"));
        }
    }
    errs
}

/// Both validations of every object; panics listing every problem.
fn assert_all_valid(r: &Rendered) {
    let mut problems = Vec::new();
    for v in r.out["validation"].as_array().unwrap() {
        let what = format!("{} {} ({})", v["kind"], v["name"], v["template"]);
        for e in v["errors"].as_array().unwrap() {
            problems.push(format!("{what}: schema {}: {e}", v["schema"]));
        }
        if v["schema"] == "none" && !OPERATOR_KINDS.contains(&v["kind"].as_str().unwrap_or("")) {
            problems.push(format!("{what}: no schema to validate against"));
        }
    }
    for (template, obj) in r.objects() {
        let errs = match (
            obj["apiVersion"].as_str().unwrap(),
            obj["kind"].as_str().unwrap(),
        ) {
            ("apps/v1", "Deployment") => typed_check::<Deployment>(obj),
            ("v1", "ServiceAccount") => typed_check::<ServiceAccount>(obj),
            ("v1", "Service") => typed_check::<Service>(obj),
            ("rbac.authorization.k8s.io/v1", "ClusterRole") => typed_check::<ClusterRole>(obj),
            ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding") => {
                typed_check::<ClusterRoleBinding>(obj)
            }
            ("rbac.authorization.k8s.io/v1", "Role") => typed_check::<Role>(obj),
            ("rbac.authorization.k8s.io/v1", "RoleBinding") => typed_check::<RoleBinding>(obj),
            ("networking.k8s.io/v1", "IngressClass") => typed_check::<IngressClass>(obj),
            ("policy/v1", "PodDisruptionBudget") => typed_check::<PodDisruptionBudget>(obj),
            ("clb-ingress.io/v1alpha1", "ClbClassParameters") => {
                typed_check::<clb_ingress::crd::ClbClassParameters>(obj)
            }
            ("monitoring.coreos.com/v1", "ServiceMonitor") => service_monitor_check(r, obj),
            ("monitoring.coreos.com/v1", "PrometheusRule") => prometheus_rule_check(obj),
            ("cert-manager.io/v1", "Certificate" | "Issuer") => cert_manager_check(r, obj),
            ("networking.k8s.io/v1", "NetworkPolicy") => typed_check::<NetworkPolicy>(obj),
            ("v1", "Secret") => typed_check::<Secret>(obj),
            ("admissionregistration.k8s.io/v1", "ValidatingWebhookConfiguration") => {
                typed_check::<ValidatingWebhookConfiguration>(obj)
            }
            (a, k) => vec![format!("unexpected kind {a} {k}")],
        };
        for e in errs {
            problems.push(format!(
                "{} {} ({template}): {e}",
                obj["kind"], obj["metadata"]["name"]
            ));
        }
        // Namespaced objects go to the release namespace (or the watched one); cluster-scoped
        // ones have none.
        let cluster_scoped = matches!(
            obj["kind"].as_str().unwrap(),
            "ClusterRole"
                | "ClusterRoleBinding"
                | "IngressClass"
                | "ClbClassParameters"
                | "ValidatingWebhookConfiguration"
        );
        if cluster_scoped != obj["metadata"]["namespace"].is_null() {
            problems.push(format!(
                "{} {}: wrong scope",
                obj["kind"], obj["metadata"]["name"]
            ));
        }
    }
    let lint = &r.out["lint"];
    for m in lint["messages"].as_array().unwrap() {
        // 1 = info ("icon is recommended"); warnings and errors fail (lint runs --strict).
        if m["severity"].as_i64().unwrap() >= 2 {
            problems.push(format!("helm lint: {m}"));
        }
    }
    for e in lint["errors"].as_array().unwrap() {
        problems.push(format!("helm lint: {e}"));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(!r.objects().is_empty());
}

/// The objects refer to each other correctly: selectors match the pod labels, the Deployment
/// runs as the ServiceAccount the bindings name, the IngressClass points at the parameters.
fn assert_consistent(r: &Rendered) {
    let d: Deployment = r.typed("Deployment");
    let spec = d.spec.unwrap();
    let pod_labels = spec.template.metadata.unwrap().labels.unwrap();
    let selects =
        |sel: &BTreeMap<String, String>| sel.iter().all(|(k, v)| pod_labels.get(k) == Some(v));
    assert!(selects(spec.selector.match_labels.as_ref().unwrap()));
    for svc in r.all("Service") {
        let s: Service = serde_json::from_value(svc.clone()).unwrap();
        assert!(
            selects(&s.spec.unwrap().selector.unwrap()),
            "Service selector"
        );
    }
    for pdb in r.all("PodDisruptionBudget") {
        let p: PodDisruptionBudget = serde_json::from_value(pdb.clone()).unwrap();
        assert!(
            selects(&p.spec.unwrap().selector.unwrap().match_labels.unwrap()),
            "PDB selector"
        );
    }
    let sa = spec.template.spec.unwrap().service_account_name.unwrap();
    if r.kinds().contains("ServiceAccount") {
        assert_eq!(r.one("ServiceAccount")["metadata"]["name"], sa.as_str());
    }
    for kind in ["ClusterRoleBinding", "RoleBinding"] {
        for b in r.all(kind) {
            let subject = &b["subjects"][0];
            assert_eq!(subject["kind"], "ServiceAccount");
            assert_eq!(subject["name"], sa.as_str(), "{kind} subject");
            assert_eq!(subject["namespace"], NAMESPACE, "{kind} subject namespace");
            let role_kind = b["roleRef"]["kind"].as_str().unwrap();
            assert!(
                r.all(role_kind)
                    .iter()
                    .any(|role| role["metadata"]["name"] == b["roleRef"]["name"]
                        && role["metadata"]["namespace"] == b["metadata"]["namespace"]),
                "{kind} {} refers to a missing {role_kind}",
                b["metadata"]["name"]
            );
        }
    }
    if let Some(class) = r.all("IngressClass").first() {
        assert_eq!(
            class["spec"]["controller"],
            "clb-ingress.io/ingress-controller"
        );
        if let Some(p) = class["spec"].get("parameters") {
            assert!(
                r.all("ClbClassParameters")
                    .iter()
                    .any(|o| o["metadata"]["name"] == p["name"])
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Rendering tests

#[test]
fn default_values_render_two_leader_electing_hardened_replicas_and_every_object_validates() {
    let r = render(json!({}));
    assert_all_valid(&r);
    assert_consistent(&r);
    assert_eq!(
        r.kinds(),
        [
            "ClbClassParameters",
            "ClusterRole",
            "ClusterRoleBinding",
            "Deployment",
            "IngressClass",
            "PodDisruptionBudget",
            "Role",
            "RoleBinding",
            "Service",
            "ServiceAccount",
        ]
        .map(String::from)
        .into()
    );
    let d: Deployment = r.typed("Deployment");
    let spec = d.spec.unwrap();
    assert_eq!(spec.replicas, Some(2));
    let pod = spec.template.spec.unwrap();
    let c = &pod.containers[0];
    assert_eq!(c.image.as_deref(), Some("clb-ingress:0.1.0"));
    let args = c.args.clone().unwrap();
    assert_eq!(args[0], "run", "the image's ENTRYPOINT is the binary");
    for a in [
        "--leader-elect",
        "--leader-election-name=clb-ingress-leader",
        "--metrics-addr=0.0.0.0:8080",
    ] {
        assert!(args.contains(&a.to_string()), "{a} in {args:?}");
    }
    assert!(
        !args
            .iter()
            .any(|a| a.starts_with("--no-node-watch") || a.starts_with("--watch-namespace"))
    );
    let env: BTreeMap<String, Value> = c
        .env
        .clone()
        .unwrap()
        .into_iter()
        .map(|e| (e.name.clone(), serde_json::to_value(&e.value_from).unwrap()))
        .collect();
    assert_eq!(env["POD_NAME"]["fieldRef"]["fieldPath"], "metadata.name");
    assert_eq!(
        env["POD_NAMESPACE"]["fieldRef"]["fieldPath"],
        "metadata.namespace"
    );
    assert_eq!(
        env["TENCENTCLOUD_SECRET_ID"]["secretKeyRef"]["name"],
        "clb-ingress-credentials"
    );
    assert_eq!(
        env["TENCENTCLOUD_SECRET_KEY"]["secretKeyRef"]["key"],
        "secretKey"
    );
    assert_eq!(
        env["TENCENTCLOUD_SESSION_TOKEN"]["secretKeyRef"]["optional"],
        true
    );
    let live = c.liveness_probe.clone().unwrap().http_get.unwrap();
    let ready = c.readiness_probe.clone().unwrap().http_get.unwrap();
    assert_eq!(
        (live.path.as_deref(), ready.path.as_deref()),
        (Some("/healthz"), Some("/readyz"))
    );
    let sc = c.security_context.clone().unwrap();
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_eq!(sc.run_as_non_root, Some(true));
    assert_eq!(sc.capabilities.unwrap().drop, Some(vec!["ALL".to_string()]));
    assert_eq!(sc.seccomp_profile.unwrap().type_, "RuntimeDefault");
    let psc = pod.security_context.unwrap();
    assert_eq!(
        (psc.run_as_non_root, psc.run_as_user),
        (Some(true), Some(65532))
    );
    let res = c.resources.clone().unwrap();
    assert_eq!(res.requests.as_ref().unwrap()["memory"].0, "96Mi");
    assert_eq!(res.requests.as_ref().unwrap()["cpu"].0, "100m");
    assert_eq!(res.limits.as_ref().unwrap()["memory"].0, "256Mi");
    let class: IngressClass = r.typed("IngressClass");
    assert_eq!(class.metadata.name.as_deref(), Some("clb"));
    assert!(
        class.metadata.annotations.is_none(),
        "not the default class unless asked"
    );
    assert_eq!(
        r.one("ClbClassParameters")["spec"],
        json!({"targetMode": "Direct", "sharing": "PerIngress"})
    );
    let pdb: PodDisruptionBudget = r.typed("PodDisruptionBudget");
    assert!(pdb.spec.unwrap().max_unavailable.is_some());
    // Leases: only in the release namespace.
    let role = r.one("Role");
    assert_eq!(role["metadata"]["namespace"], NAMESPACE);
    assert!(r.notes().contains("ingressClassName: clb"), "{}", r.notes());
    assert!(
        r.notes().contains(&format!("Cluster id: {CLUSTER_ID}")),
        "{}",
        r.notes()
    );
    assert!(
        r.args().contains(&format!("--cluster-id={CLUSTER_ID}")),
        "{:?}",
        r.args()
    );
    assert_eq!(
        pod.priority_class_name.as_deref(),
        Some("system-cluster-critical")
    );
    assert_eq!(pod.automount_service_account_token, Some(true));
    assert!(spec.strategy.is_none(), "Kubernetes' default strategy");
}

#[test]
fn an_adopted_clb_in_nodeport_mode_as_the_default_class_renders_and_validates() {
    let r = render(json!({
        "controller": {"clusterId": "cls-abcd1234", "region": "ap-shanghai"},
        "ingressClass": {"name": "tencent", "default": true, "parameters": {"name": "tencent-params",
            "spec": {"loadBalancerId": "lb-0a1b2c3d", "targetMode": "NodePort", "sharing": "Shared",
                     "httpPort": 8080, "httpsPort": 8443,
                     "defaultCertificate": {"certId": "cert-123"},
                     "namespaceSelector": {"matchLabels": {"clb": "on"}}}}}
    }));
    assert_all_valid(&r);
    assert_consistent(&r);
    let class: IngressClass = r.typed("IngressClass");
    assert_eq!(
        class.metadata.annotations.unwrap()["ingressclass.kubernetes.io/is-default-class"],
        "true"
    );
    assert_eq!(
        class.spec.unwrap().parameters.unwrap().name,
        "tencent-params"
    );
    let params: clb_ingress::crd::ClbClassParameters =
        serde_json::from_value(r.one("ClbClassParameters").clone()).unwrap();
    assert_eq!(params.spec.load_balancer_id.as_deref(), Some("lb-0a1b2c3d"));
    let args = r.args();
    assert!(
        args.contains(&"--cluster-id=cls-abcd1234".to_string()),
        "{args:?}"
    );
    assert!(
        args.contains(&"--region=ap-shanghai".to_string()),
        "{args:?}"
    );
    let cr: ClusterRole = r.typed("ClusterRole");
    assert!(
        cr.rules.unwrap().iter().any(|r| r
            .resources
            .as_ref()
            .unwrap()
            .contains(&"nodes".to_string())),
        "NodePort mode needs Nodes"
    );
    assert!(
        r.notes().contains("no ingressClassName at all"),
        "{}",
        r.notes()
    );
    assert!(!r.notes().contains("WARNING"));
}

#[test]
fn the_clb_request_rate_reaches_the_controller_and_the_schema_refuses_a_rate_that_is_not_sane() {
    let default = render(json!({}));
    assert!(
        default
            .args()
            .contains(&"--clb-requests-per-second=20".to_string()),
        "{:?}",
        default.args()
    );
    let r = render(json!({"controller": {"clbRequestsPerSecond": 12.5}}));
    assert_all_valid(&r);
    assert!(
        r.args()
            .contains(&"--clb-requests-per-second=12.5".to_string()),
        "{:?}",
        r.args()
    );
    for bad in [json!(0), json!(-1), json!(5000), json!("fast")] {
        let values = json!({"controller": {"clbRequestsPerSecond": bad}});
        let out = try_render(values.clone());
        assert!(out["schemaError"].is_string(), "{values} was accepted");
    }
}

#[test]
fn a_watched_namespace_moves_the_namespaced_permissions_into_a_role_there() {
    let r = render(json!({"controller": {"watchNamespace": "apps"}}));
    assert_all_valid(&r);
    assert_consistent(&r);
    assert!(r.args().contains(&"--watch-namespace=apps".to_string()));
    let cr: ClusterRole = r.typed("ClusterRole");
    let cluster: BTreeSet<String> = cr
        .rules
        .unwrap()
        .iter()
        .flat_map(|r| r.resources.clone().unwrap())
        .collect();
    assert_eq!(
        cluster,
        [
            "clbclassparameters",
            "ingressclasses",
            "namespaces",
            "nodes"
        ]
        .map(String::from)
        .into()
    );
    let apps = r
        .all("Role")
        .into_iter()
        .find(|o| o["metadata"]["namespace"] == "apps")
        .expect("a Role in apps");
    let role: Role = serde_json::from_value(apps.clone()).unwrap();
    let names: BTreeSet<String> = role
        .rules
        .unwrap()
        .iter()
        .flat_map(|r| r.resources.clone().unwrap())
        .collect();
    assert!(names.contains("ingresses") && names.contains("secrets") && names.contains("events"));
    assert!(
        r.all("RoleBinding")
            .iter()
            .any(|b| b["metadata"]["namespace"] == "apps"),
        "bound in apps"
    );
}

#[test]
fn one_replica_without_leader_election_has_no_lease_role_and_no_disruption_budget() {
    let r = render(
        json!({"replicaCount": 1, "leaderElection": {"enabled": false},
        "controller": {"nodeWatch": false}}),
    );
    assert_all_valid(&r);
    assert_consistent(&r);
    let kinds = r.kinds();
    assert!(
        !kinds.contains("Role") && !kinds.contains("RoleBinding"),
        "{kinds:?}"
    );
    assert!(
        !kinds.contains("PodDisruptionBudget"),
        "a 1-replica PDB would block drains"
    );
    let args = r.args();
    assert!(
        !args.iter().any(|a| a.starts_with("--leader-elect")),
        "{args:?}"
    );
    assert!(args.contains(&"--no-node-watch".to_string()));
    let cr: ClusterRole = r.typed("ClusterRole");
    assert!(
        !cr.rules.unwrap().iter().any(|r| r
            .resources
            .as_ref()
            .unwrap()
            .contains(&"nodes".to_string()))
    );
}

#[test]
fn service_monitor_credentials_keys_and_an_emulator_endpoint_render_and_validate() {
    let r = render(json!({
        "image": {"repository": "registry.example.com/clb-ingress", "digest": format!("sha256:{}", "a".repeat(64))},
        "imagePullSecrets": [{"name": "regcred"}],
        "controller": {"clbEndpoint": "http://clb-emulator.ci.svc:9000", "logFormat": "text",
                       "ingressClass": "clb", "extraArgs": ["--debounce-ms=10"],
                       "extraEnv": [{"name": "EXTRA", "value": "1"}]},
        "credentials": {"existingSecret": "tc-api", "secretIdKey": "id", "secretKeyKey": "key", "sessionTokenKey": ""},
        "metrics": {"port": 9100, "serviceMonitor": {"enabled": true, "labels": {"release": "prom"}}},
        "serviceAccount": {"name": "clb", "annotations": {"team": "net"}},
        "podAnnotations": {"a": "b"}, "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [{"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}],
        "priorityClassName": "system-cluster-critical",
    }));
    assert_all_valid(&r);
    assert_consistent(&r);
    let sm = r.one("ServiceMonitor");
    assert_eq!(sm["metadata"]["labels"]["release"], "prom");
    assert_eq!(sm["spec"]["endpoints"][0]["path"], "/metrics");
    let d: Deployment = r.typed("Deployment");
    let pod = d.spec.unwrap().template.spec.unwrap();
    let c = &pod.containers[0];
    assert_eq!(
        c.image.as_deref(),
        Some(format!("registry.example.com/clb-ingress@sha256:{}", "a".repeat(64)).as_str())
    );
    assert_eq!(pod.service_account_name.as_deref(), Some("clb"));
    let env = serde_json::to_value(c.env.clone().unwrap()).unwrap();
    let by_name = |n: &str| {
        env.as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == n)
            .cloned()
    };
    assert_eq!(
        by_name("TENCENTCLOUD_SECRET_ID").unwrap()["valueFrom"]["secretKeyRef"],
        json!({"name": "tc-api", "key": "id"})
    );
    assert!(
        by_name("TENCENTCLOUD_SESSION_TOKEN").is_none(),
        "no token key configured"
    );
    assert_eq!(by_name("EXTRA").unwrap()["value"], "1");
    let args = r.args();
    for a in [
        "--clb-endpoint=http://clb-emulator.ci.svc:9000",
        "--ingress-class=clb",
        "--log-format=text",
        "--debounce-ms=10",
        "--metrics-addr=0.0.0.0:9100",
    ] {
        assert!(args.contains(&a.to_string()), "{a} in {args:?}");
    }
    assert_eq!(c.ports.as_ref().unwrap()[0].container_port, 9100);
}

#[test]
fn without_a_credentials_secret_no_cloud_key_reaches_the_pod() {
    let r = render(json!({"credentials": {"existingSecret": ""},
        "controller": {"clbEndpoint": "http://127.0.0.1:9000"},
        "ingressClass": {"create": false, "parameters": {"create": false}},
        "metrics": {"service": {"enabled": false}}, "rbac": {"create": true}}));
    assert_all_valid(&r);
    assert_consistent(&r);
    let text = serde_json::to_string(r.one("Deployment")).unwrap();
    assert!(!text.contains("TENCENTCLOUD_"), "{text}");
    assert!(!r.kinds().contains("IngressClass") && !r.kinds().contains("Service"));
    assert!(r.notes().contains("Credentials: none"), "{}", r.notes());
}

#[test]
fn credentials_mounted_as_files_reach_the_controller_as_a_credentials_file_not_as_env() {
    let r = render(json!({"credentials": {"existingSecret": "tc-sts", "mountAsFile": true}}));
    assert_all_valid(&r);
    assert_consistent(&r);
    let d: Deployment = r.typed("Deployment");
    let pod = d.spec.unwrap().template.spec.unwrap();
    let c = &pod.containers[0];
    let env = serde_json::to_string(&c.env).unwrap();
    assert!(
        !env.contains("TENCENTCLOUD_"),
        "no key in the environment: {env}"
    );
    assert!(
        r.args()
            .contains(&"--credentials-file=/etc/clb-ingress/credentials".to_string()),
        "{:?}",
        r.args()
    );
    let mount = &c.volume_mounts.as_ref().expect("volumeMounts")[0];
    assert_eq!(mount.mount_path, "/etc/clb-ingress/credentials");
    assert_eq!(mount.read_only, Some(true));
    assert!(
        mount.sub_path.is_none(),
        "a subPath mount is never updated by the kubelet"
    );
    let volume = pod
        .volumes
        .as_ref()
        .expect("volumes")
        .iter()
        .find(|v| v.name == mount.name)
        .expect("the mounted volume");
    let secret = volume.secret.as_ref().expect("a Secret volume");
    assert_eq!(secret.secret_name.as_deref(), Some("tc-sts"));
    assert_eq!(secret.default_mode, Some(0o440));
    let security = pod.security_context.expect("pod securityContext");
    assert_eq!(
        security.fs_group,
        Some(65532),
        "the files are readable by the controller's group"
    );
    assert_eq!(security.run_as_user, Some(65532));
    assert!(
        r.notes().contains("/etc/clb-ingress/credentials"),
        "{}",
        r.notes()
    );

    // Key names the controller would not find in the directory are refused at render time.
    let out = try_render(
        json!({"credentials": {"existingSecret": "tc-sts", "mountAsFile": true,
        "secretIdKey": "id"}}),
    );
    let err = out["renderError"].as_str().expect("refused");
    assert!(
        err.contains("credentials.mountAsFile needs credentials.secretIdKey"),
        "{err}"
    );
    // Without mountAsFile nothing is mounted.
    let r = render(json!({"credentials": {"existingSecret": "tc-sts"}}));
    let d: Deployment = r.typed("Deployment");
    let pod = d.spec.unwrap().template.spec.unwrap();
    assert!(pod.volumes.is_none() && pod.containers[0].volume_mounts.is_none());
    assert!(!r.args().iter().any(|a| a.starts_with("--credentials-file")));
}

#[test]
fn each_credentials_provider_renders_its_annotations_token_volume_and_flags() {
    const ROLE: &str = "qcs::cam::uin/100000000001:roleName/clb-ingress";
    // TKE pod identity through the webhook: ServiceAccount annotations, no key, no volume.
    let r = render(json!({"credentials": {"provider": "webIdentity",
        "webIdentity": {"roleArn": ROLE}}}));
    assert_all_valid(&r);
    assert_consistent(&r);
    let sa: ServiceAccount = r.typed("ServiceAccount");
    let ann = sa.metadata.annotations.expect("annotations");
    assert_eq!(ann["tke.cloud.tencent.com/role-arn"], ROLE);
    assert_eq!(
        ann["tke.cloud.tencent.com/audience"],
        "sts.cloud.tencent.com"
    );
    assert_eq!(ann["tke.cloud.tencent.com/token-expiration"], "86400");
    let args = r.args();
    assert!(
        args.contains(&"--credentials-provider=web-identity".to_string()),
        "{args:?}"
    );
    assert!(
        args.contains(&"--role-duration-seconds=7200".to_string()),
        "{args:?}"
    );
    let d: Deployment = r.typed("Deployment");
    let pod = d.spec.unwrap().template.spec.unwrap();
    let env = serde_json::to_string(&pod.containers[0].env).unwrap();
    assert!(!env.contains("TENCENTCLOUD_SECRET"), "no key: {env}");
    assert!(pod.volumes.is_none());

    // Without the webhook: the chart projects the token and passes every setting as a flag.
    let r = render(
        json!({"credentials": {"provider": "webIdentity", "webIdentity": {
        "roleArn": ROLE, "podIdentityWebhook": false, "providerId": "cls-oidc"}}}),
    );
    assert_all_valid(&r);
    let args = r.args();
    for want in [
        format!("--role-arn={ROLE}"),
        "--oidc-provider-id=cls-oidc".to_string(),
        "--web-identity-token-file=/var/run/secrets/tke.cloud.tencent.com/serviceaccount/token"
            .to_string(),
        "--sts-region=ap-guangzhou".to_string(),
    ] {
        assert!(args.contains(&want), "{want} in {args:?}");
    }
    let d: Deployment = r.typed("Deployment");
    let pod = d.spec.unwrap().template.spec.unwrap();
    let volume = &pod.volumes.as_ref().expect("volumes")[0];
    let token = volume
        .projected
        .as_ref()
        .expect("projected")
        .sources
        .as_ref()
        .unwrap()[0]
        .service_account_token
        .clone()
        .expect("serviceAccountToken");
    assert_eq!(token.audience.as_deref(), Some("sts.cloud.tencent.com"));
    assert_eq!(token.path, "token");
    let mount = &pod.containers[0].volume_mounts.as_ref().expect("mounts")[0];
    assert_eq!(mount.name, volume.name);
    let sa: ServiceAccount = r.typed("ServiceAccount");
    assert!(sa.metadata.annotations.is_none(), "no webhook annotations");

    // The instance role needs nothing but the flag.
    let r = render(json!({"credentials": {"provider": "instanceRole"}}));
    assert_all_valid(&r);
    assert!(
        r.args()
            .contains(&"--credentials-provider=instance-role".to_string())
    );

    // Missing settings are refused when the chart renders.
    for (values, want) in [
        (
            json!({"credentials": {"provider": "webIdentity"}}),
            "needs credentials.webIdentity.roleArn",
        ),
        (
            json!({"credentials": {"provider": "webIdentity", "webIdentity": {"roleArn": ROLE,
                "podIdentityWebhook": false}}}),
            "needs credentials.webIdentity.providerId",
        ),
    ] {
        let out = try_render(values);
        let err = out["renderError"].as_str().unwrap_or_default();
        assert!(err.contains(want), "{err}");
    }
    let out = try_render(json!({"credentials": {"provider": "role"}}));
    assert!(
        !out["schemaError"].is_null(),
        "an unknown provider is refused"
    );
}

#[test]
fn the_values_schema_and_the_templates_refuse_unsafe_or_mistyped_values() {
    for (values, why) in [
        (json!({"replicaCount": 0}), "replicaCount >= 1"),
        (json!({"replicas": 2}), "unknown top-level key"),
        (
            json!({"controller": {"logFormat": "yaml"}}),
            "logFormat enum",
        ),
        (
            json!({"controller": {"clbEndpoint": "clb.example.com"}}),
            "endpoint form",
        ),
        (
            json!({"ingressClass": {"parameters": {"spec": {"targetMode": "Pod"}}}}),
            "targetMode enum",
        ),
        (
            json!({"ingressClass": {"parameters": {"spec": {"loadBalancerId": "lb-1"}}}}),
            "CLB id form",
        ),
        (
            json!({"ingressClass": {"parameters": {"spec": {"sharingg": "Shared"}}}}),
            "unknown parameter",
        ),
    ] {
        let out = try_render(values.clone());
        assert!(
            out["schemaError"].is_string(),
            "{why}: {values} was accepted"
        );
    }
    for (values, message) in [
        (
            json!({"leaderElection": {"enabled": false}}),
            "needs leaderElection.enabled",
        ),
        (
            json!({"controller": {"nodeWatch": false}, "ingressClass": {"parameters": {"spec": {"targetMode": "NodePort"}}}}),
            "NodePort needs controller.nodeWatch",
        ),
        (
            json!({"metrics": {"service": {"enabled": false}, "serviceMonitor": {"enabled": true}}}),
            "needs metrics.service.enabled",
        ),
    ] {
        let out = try_render(values.clone());
        let err = out["renderError"]
            .as_str()
            .unwrap_or_else(|| panic!("{values} rendered"));
        assert!(err.contains(message), "{err}");
    }
}

#[test]
fn the_cluster_id_is_required_by_the_schema() {
    // (The Deployment template also has a `required` for installs that skip the schema; Helm's
    // render here always applies the schema first.)
    let out = try_render_exact(json!({}));
    assert!(
        out["schemaError"]
            .as_str()
            .or(out["renderError"].as_str())
            .unwrap_or_default()
            .contains("/controller/clusterId"),
        "{out}"
    );
    assert!(out["objects"].as_array().unwrap().is_empty());
    for bad in ["", "-x", "has space", &"a".repeat(64)] {
        let out = try_render_exact(json!({"controller": {"clusterId": bad}}));
        assert!(
            out["objects"].as_array().unwrap().is_empty(),
            "{bad:?} accepted"
        );
    }
    // No Namespace read for a default id any more.
    let cr: ClusterRole = render(json!({})).typed("ClusterRole");
    assert!(
        !cr.rules
            .unwrap()
            .iter()
            .any(|r| r.verbs.contains(&"get".to_string())
                && r.resources
                    .as_ref()
                    .unwrap()
                    .contains(&"namespaces".to_string())),
        "no get on Namespaces"
    );
}

#[test]
fn every_operations_value_reaches_its_object_and_validates() {
    let r = render(json!({
        "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
        "extraVolumes": [{"name": "proxy-ca", "configMap": {"name": "proxy-ca"}}],
        "extraVolumeMounts": [{"name": "proxy-ca", "mountPath": "/etc/ssl/proxy", "readOnly": true}],
        "controller": {"extraEnvFrom": [{"secretRef": {"name": "proxy-env"}}, {"configMapRef": {"name": "tuning"}, "prefix": "CLB_"}]},
        "deploymentAnnotations": {"reloader.stakater.com/auto": "true"},
        "deploymentLabels": {"team": "net"},
        "priorityClassName": "",
        "serviceAccount": {"automountServiceAccountToken": false},
        "metrics": {"serviceMonitor": {"enabled": true, "namespace": "monitoring",
            "relabelings": [{"sourceLabels": ["__meta_kubernetes_pod_node_name"], "targetLabel": "node"}],
            "metricRelabelings": [{"sourceLabels": ["__name__"], "regex": "process_.*", "action": "drop"}]},
            "prometheusRule": {"enabled": true, "namespace": "monitoring", "labels": {"release": "prom"},
                "certificateExpiryDays": 21,
                "additionalRules": [{"alert": "Extra", "expr": "vector(1)", "for": "5m"}]}},
        "networkPolicy": {"enabled": true, "metricsFrom": [{"namespaceSelector": {"matchLabels": {"name": "monitoring"}}}],
            "extraEgress": [{"ports": [{"port": 3128, "protocol": "TCP"}]}]},
    }));
    assert_all_valid(&r);
    assert_consistent(&r);
    let d: Deployment = r.typed("Deployment");
    let meta = d.metadata.clone();
    assert_eq!(meta.labels.unwrap()["team"], "net");
    assert_eq!(
        meta.annotations.unwrap()["reloader.stakater.com/auto"],
        "true"
    );
    let spec = d.spec.unwrap();
    let strategy = spec.strategy.unwrap();
    assert_eq!(strategy.type_.as_deref(), Some("RollingUpdate"));
    assert!(strategy.rolling_update.unwrap().max_surge.is_some());
    let pod = spec.template.spec.unwrap();
    assert_eq!(pod.priority_class_name, None, "\"\" means none");
    let c = &pod.containers[0];
    let env_from = serde_json::to_value(c.env_from.clone().unwrap()).unwrap();
    assert_eq!(env_from[0]["secretRef"]["name"], "proxy-env");
    assert_eq!(env_from[1]["prefix"], "CLB_");
    let mounts = c.volume_mounts.clone().unwrap();
    let volumes = pod.volumes.clone().unwrap();
    assert!(mounts.iter().any(|m| m.mount_path == "/etc/ssl/proxy"));
    assert!(
        volumes
            .iter()
            .any(|v| v.name == "proxy-ca" && v.config_map.is_some())
    );
    // No automounted token: the chart mounts the same credentials for the controller only.
    assert_eq!(pod.automount_service_account_token, Some(false));
    assert_eq!(
        r.one("ServiceAccount")["automountServiceAccountToken"],
        false
    );
    let api = mounts
        .iter()
        .find(|m| m.mount_path == "/var/run/secrets/kubernetes.io/serviceaccount")
        .expect("the API credentials are mounted");
    let projected = volumes
        .iter()
        .find(|v| v.name == api.name)
        .and_then(|v| v.projected.clone())
        .expect("a projected volume");
    let sources = serde_json::to_value(projected.sources.unwrap()).unwrap();
    assert_eq!(sources[0]["serviceAccountToken"]["path"], "token");
    assert_eq!(sources[1]["configMap"]["name"], "kube-root-ca.crt");
    assert_eq!(sources[2]["downwardAPI"]["items"][0]["path"], "namespace");
    // ServiceMonitor in the monitoring namespace, still selecting the release's Service.
    let sm = r.one("ServiceMonitor");
    assert_eq!(sm["metadata"]["namespace"], "monitoring");
    assert_eq!(
        sm["spec"]["endpoints"][0]["relabelings"][0]["targetLabel"],
        "node"
    );
    assert_eq!(
        sm["spec"]["endpoints"][0]["metricRelabelings"][0]["action"],
        "drop"
    );
    // The alerts, on the metrics the controller exports.
    let rule = r.one("PrometheusRule");
    assert_eq!(rule["metadata"]["namespace"], "monitoring");
    assert_eq!(rule["metadata"]["labels"]["release"], "prom");
    let rules = rule["spec"]["groups"][0]["rules"].as_array().unwrap();
    let alerts: BTreeSet<&str> = rules.iter().filter_map(|r| r["alert"].as_str()).collect();
    assert_eq!(
        alerts,
        [
            "ClbIngressCertificateExpiresSoon",
            "ClbIngressCloudApiErrors",
            "ClbIngressNoLeader",
            "ClbIngressSyncFailing",
            "ClbIngressThrottled",
            "Extra"
        ]
        .into()
    );
    let metrics_rs = std::fs::read_to_string(format!("{ROOT}/src/metrics.rs")).unwrap();
    let family_re = regex::Regex::new(r"clb_ingress_([a-z_]+)").unwrap();
    for r in rules.iter().filter(|r| r["alert"] != "Extra") {
        let expr = r["expr"].as_str().unwrap();
        assert!(
            expr.contains("service=\"clb-ingress-metrics\"")
                && expr.contains("namespace=\"clb-system\""),
            "{expr}"
        );
        for name in family_re.captures_iter(expr) {
            let family = name[1].trim_end_matches("_bucket").to_string();
            assert!(
                metrics_rs.contains(&format!("\"{family}\"")),
                "{expr} uses clb_ingress_{family}, which the controller does not export"
            );
        }
    }
    let expiry = rules
        .iter()
        .find(|r| r["alert"] == "ClbIngressCertificateExpiresSoon")
        .unwrap();
    assert!(
        expiry["expr"]
            .as_str()
            .unwrap()
            .contains(&(21 * 86400).to_string()),
        "{expiry}"
    );
    // The NetworkPolicy: metrics from monitoring only, DNS, the API server, HTTPS, the extra rule.
    let np: NetworkPolicy = r.typed("NetworkPolicy");
    let np = np.spec.unwrap();
    let ingress = serde_json::to_value(np.ingress.unwrap()).unwrap();
    assert_eq!(
        ingress.as_array().unwrap().len(),
        1,
        "no webhook port: {ingress}"
    );
    assert_eq!(ingress[0]["ports"][0]["port"], "metrics");
    assert_eq!(
        ingress[0]["from"][0]["namespaceSelector"]["matchLabels"]["name"],
        "monitoring"
    );
    let egress = serde_json::to_string(&np.egress.unwrap()).unwrap();
    for port in ["53", "443", "6443", "3128"] {
        assert!(
            egress.contains(&format!("\"port\":{port}")),
            "{port}: {egress}"
        );
    }
}

#[test]
fn the_webhook_renders_with_a_helm_generated_certificate_the_controller_can_serve() {
    let r = render(json!({"webhook": {"enabled": true}, "networkPolicy": {"enabled": true}}));
    assert_all_valid(&r);
    assert_consistent(&r);
    let args = r.args();
    for a in [
        "--webhook-addr=0.0.0.0:9443",
        "--webhook-cert-file=/etc/clb-ingress/webhook/tls.crt",
        "--webhook-key-file=/etc/clb-ingress/webhook/tls.key",
    ] {
        assert!(args.contains(&a.to_string()), "{a} in {args:?}");
    }
    let secret: Secret = r.typed("Secret");
    assert_eq!(secret.type_.as_deref(), Some("kubernetes.io/tls"));
    let data = secret.data.unwrap();
    let vwc: ValidatingWebhookConfiguration = r.typed("ValidatingWebhookConfiguration");
    let hooks = vwc.webhooks.unwrap();
    assert_eq!(hooks.len(), 2);
    for h in &hooks {
        assert_eq!(
            h.failure_policy.as_deref(),
            Some("Ignore"),
            "off-safe default"
        );
        assert_eq!(h.side_effects, "None");
        assert_eq!(h.admission_review_versions, ["v1"]);
        let svc = h.client_config.service.clone().unwrap();
        assert_eq!(svc.path.as_deref(), Some("/validate"));
        assert_eq!(
            h.client_config.ca_bundle.as_ref().unwrap().0,
            data["ca.crt"].0,
            "the API server trusts the CA that signed the serving certificate"
        );
        let service = r
            .all("Service")
            .into_iter()
            .find(|s| s["metadata"]["name"] == svc.name.as_str())
            .expect("the webhook Service");
        assert_eq!(service["spec"]["ports"][0]["targetPort"], "webhook");
    }
    let resources: BTreeSet<String> = hooks
        .iter()
        .flat_map(|h| h.rules.clone().unwrap())
        .flat_map(|r| r.resources.unwrap())
        .collect();
    assert_eq!(
        resources,
        ["clbclassparameters", "ingresses"].map(String::from).into()
    );
    // The generated certificate names the Service and is served by the controller's own loader.
    let (_, cert) = x509_parser::pem::parse_x509_pem(&data["tls.crt"].0).unwrap();
    let cert = cert.parse_x509().unwrap();
    let names = format!(
        "{:?}",
        cert.subject_alternative_name().unwrap().unwrap().value
    );
    assert!(
        names.contains("clb-ingress-webhook.clb-system.svc"),
        "{names}"
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("tls.crt"), &data["tls.crt"].0).unwrap();
    std::fs::write(dir.path().join("tls.key"), &data["tls.key"].0).unwrap();
    clb_ingress::webhook::CertFiles::load(&dir.path().join("tls.crt"), &dir.path().join("tls.key"))
        .expect("the controller loads the generated pair");
    // Mounted group-readable for the controller, and reachable through the NetworkPolicy.
    let d: Deployment = r.typed("Deployment");
    let pod = d.spec.unwrap().template.spec.unwrap();
    assert_eq!(pod.security_context.unwrap().fs_group, Some(65532));
    let np = serde_json::to_string(r.one("NetworkPolicy")).unwrap();
    assert!(np.contains("\"port\":\"webhook\""), "{np}");
    assert!(r.notes().contains("Admission webhook: on"), "{}", r.notes());
}

#[test]
fn with_cert_manager_the_webhook_certificate_and_its_ca_come_from_cert_manager() {
    let r = render(
        json!({"webhook": {"enabled": true, "failurePolicy": "Fail", "timeoutSeconds": 10,
        "certManager": {"enabled": true}, "namespaceSelector": {"matchLabels": {"clb": "on"}}}}),
    );
    assert_all_valid(&r);
    assert_consistent(&r);
    assert!(
        !r.kinds().contains("Secret"),
        "cert-manager writes the Secret"
    );
    let cert = r.one("Certificate");
    assert_eq!(cert["spec"]["secretName"], "clb-ingress-webhook-tls");
    assert_eq!(
        cert["spec"]["issuerRef"]["name"],
        r.one("Issuer")["metadata"]["name"]
    );
    let vwc = r.one("ValidatingWebhookConfiguration");
    assert_eq!(
        vwc["metadata"]["annotations"]["cert-manager.io/inject-ca-from"],
        "clb-system/clb-ingress-webhook"
    );
    for h in vwc["webhooks"].as_array().unwrap() {
        assert!(
            h["clientConfig"]["caBundle"].is_null(),
            "injected by cert-manager"
        );
        assert_eq!(h["failurePolicy"], "Fail");
        assert_eq!(h["timeoutSeconds"], 10);
    }
    assert_eq!(
        vwc["webhooks"][0]["namespaceSelector"]["matchLabels"]["clb"],
        "on"
    );
    assert!(
        vwc["webhooks"][1]["namespaceSelector"].is_null(),
        "ClbClassParameters are cluster-scoped"
    );
    // A user's issuer: no Issuer of ours.
    let r = render(
        json!({"webhook": {"enabled": true, "certManager": {"enabled": true,
        "issuerRef": {"kind": "ClusterIssuer", "name": "corp-ca"}}}}),
    );
    assert_all_valid(&r);
    assert!(!r.kinds().contains("Issuer"));
    assert_eq!(
        r.one("Certificate")["spec"]["issuerRef"]["kind"],
        "ClusterIssuer"
    );
}

#[test]
fn the_new_values_are_schema_checked_and_combinations_refused() {
    for (values, why) in [
        (json!({"updateStrategy": {"type": "Blue"}}), "strategy type"),
        (
            json!({"webhook": {"enabled": true, "failurePolicy": "Retry"}}),
            "failurePolicy",
        ),
        (
            json!({"webhook": {"enabled": true, "timeoutSeconds": 31}}),
            "timeout",
        ),
        (
            json!({"networkPolicy": {"enabled": true, "apiServerPorts": []}}),
            "no API port",
        ),
        (
            json!({"metrics": {"prometheusRule": {"enabled": true, "certificateExpiryDays": 0}}}),
            "days",
        ),
        (json!({"extraVolumeMounts": [{"name": "x"}]}), "mountPath"),
        (
            json!({"serviceAccount": {"automountServiceAccountToken": "no"}}),
            "boolean",
        ),
        (json!({"deploymentLabels": {"a": 1}}), "label value type"),
    ] {
        let out = try_render(values.clone());
        assert!(
            out["schemaError"].is_string(),
            "{why}: {values} was accepted"
        );
    }
    let out = try_render(json!({"metrics": {"prometheusRule": {"enabled": true}}}));
    assert!(
        out["renderError"]
            .as_str()
            .unwrap_or_default()
            .contains("needs metrics.serviceMonitor.enabled"),
        "{out}"
    );
}

#[test]
fn a_value_that_makes_an_invalid_object_is_caught_by_the_kubernetes_schema_check() {
    // The schemas are really applied: a mistyped pod security context slips past values.schema
    // (it is free-form there) but not past the Kubernetes schemas or the typed check.
    let r = render(json!({"podSecurityContext": {"runAsUser": "root", "runAsNonRoot": true}}));
    let errs: Vec<&Value> = r.out["validation"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| !v["errors"].as_array().unwrap().is_empty())
        .collect();
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!(errs[0]["kind"], "Deployment");
    assert!(!typed_check::<Deployment>(r.one("Deployment")).is_empty());
    let r = render(json!({"tolerations": [{"key": "k", "operatr": "Exists"}]}));
    assert!(
        typed_check::<Deployment>(r.one("Deployment"))
            .iter()
            .any(|e| e.contains("operatr (unknown field)")),
        "unknown fields are refused"
    );
}

#[test]
fn the_charts_crds_are_the_repositorys_generated_crds() {
    let r = render(json!({}));
    let chart: BTreeMap<String, String> = serde_json::from_value(r.out["crds"].clone()).unwrap();
    let mut repo = BTreeMap::new();
    for e in std::fs::read_dir(format!("{ROOT}/crds")).unwrap() {
        let p = e.unwrap().path();
        repo.insert(
            p.file_name().unwrap().to_string_lossy().into_owned(),
            std::fs::read_to_string(&p).unwrap(),
        );
    }
    assert_eq!(
        chart, repo,
        "helm/clb-ingress/crds/ differs from crds/: cp crds/*.yaml helm/clb-ingress/crds/"
    );
}

#[test]
fn the_values_schema_knows_exactly_the_crds_parameter_fields() {
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{CHART}/values.schema.json")).unwrap(),
    )
    .unwrap();
    let in_values: BTreeSet<String> = schema["properties"]["ingressClass"]["properties"]
        ["parameters"]["properties"]["spec"]["properties"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    let crd = serde_json::to_value(
        <clb_ingress::crd::ClbClassParameters as kube::CustomResourceExt>::crd(),
    )
    .unwrap();
    let in_crd: BTreeSet<String> =
        crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
    assert_eq!(in_values, in_crd);
}

// ---------------------------------------------------------------------------------------------
// RBAC == the calls the controller makes

/// The test's own requests carry this User-Agent and are left out of the comparison.
const TEST_UA: &str = "clb-ingress-helm-rbac-test";

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Call {
    group: String,
    resource: String,
    verb: String,
    namespace: String,
    name: String,
}

/// One (rule, resource, verb) of a role, where it applies (None: every namespace).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Grant {
    role: String,
    namespace: Option<String>,
    group: String,
    resource: String,
    verb: String,
    names: Vec<String>,
}

impl Grant {
    fn allows(&self, c: &Call) -> bool {
        self.namespace.as_ref().is_none_or(|ns| *ns == c.namespace)
            && self.group == c.group
            && self.resource == c.resource
            && self.verb == c.verb
            && (self.names.is_empty() || self.names.contains(&c.name))
    }
}

/// What the rendered roles grant to the chart's ServiceAccount, through the rendered bindings.
fn grants(r: &Rendered) -> Vec<Grant> {
    let mut out = Vec::new();
    let mut add = |role: String, namespace: Option<String>, rules: Vec<PolicyRule>| {
        for rule in rules {
            assert!(
                rule.non_resource_urls.is_none(),
                "no non-resource URLs are needed"
            );
            for g in rule.api_groups.clone().unwrap() {
                for res in rule.resources.clone().unwrap() {
                    for v in &rule.verbs {
                        assert!(g != "*" && res != "*" && v != "*", "no wildcards: {rule:?}");
                        out.push(Grant {
                            role: role.clone(),
                            namespace: namespace.clone(),
                            group: g.clone(),
                            resource: res.clone(),
                            verb: v.clone(),
                            names: rule.resource_names.clone().unwrap_or_default(),
                        });
                    }
                }
            }
        }
    };
    for b in r.all("ClusterRoleBinding") {
        let b: ClusterRoleBinding = serde_json::from_value(b.clone()).unwrap();
        let role = r
            .all("ClusterRole")
            .into_iter()
            .find(|o| o["metadata"]["name"] == b.role_ref.name.as_str())
            .unwrap();
        let role: ClusterRole = serde_json::from_value(role.clone()).unwrap();
        add(
            format!("ClusterRole {}", b.role_ref.name),
            None,
            role.rules.unwrap(),
        );
    }
    for b in r.all("RoleBinding") {
        let b: RoleBinding = serde_json::from_value(b.clone()).unwrap();
        let ns = b.metadata.namespace.clone().unwrap();
        assert_eq!(b.role_ref.kind, "Role");
        let role = r
            .all("Role")
            .into_iter()
            .find(|o| {
                o["metadata"]["name"] == b.role_ref.name.as_str()
                    && o["metadata"]["namespace"] == ns.as_str()
            })
            .unwrap();
        let role: Role = serde_json::from_value(role.clone()).unwrap();
        add(
            format!("Role {ns}/{}", b.role_ref.name),
            Some(ns),
            role.rules.unwrap(),
        );
    }
    out
}

/// A replica of the chart's Deployment as a local process: its container args and environment,
/// with the in-cluster bits swapped for the test's (kubeconfig, emulator URL, loopback metrics).
fn replica(r: &Rendered, kubeconfig: &Path, endpoint: &str, pod: &str, log: &Path) -> Child {
    let mut cmd = Command::new(clb_test_support::emulator::bin());
    cmd.env_clear().env("NO_PROXY", "*");
    let d: Deployment = r.typed("Deployment");
    let c = d.spec.unwrap().template.spec.unwrap().containers[0].clone();
    for e in c.env.unwrap_or_default() {
        let field = e
            .value_from
            .as_ref()
            .and_then(|v| v.field_ref.as_ref())
            .map(|f| f.field_path.as_str());
        match (e.name.as_str(), field) {
            ("POD_NAME", Some("metadata.name")) => {
                cmd.env("POD_NAME", pod);
            }
            ("POD_NAMESPACE", Some("metadata.namespace")) => {
                cmd.env("POD_NAMESPACE", NAMESPACE);
            }
            // Credentials: the emulator on loopback takes the controller's built-in test key.
            (n, _) if n.starts_with("TENCENTCLOUD_") => {}
            (n, _) => panic!("unexpected env {n}"),
        }
    }
    for a in c.args.unwrap() {
        if a.starts_with("--metrics-addr=") {
            cmd.arg("--metrics-addr=127.0.0.1:0");
        } else if a.starts_with("--clb-endpoint=") {
            cmd.arg(format!("--clb-endpoint={endpoint}"));
        } else if a.starts_with("--debounce-ms=") {
            cmd.arg("--debounce-ms=20");
        } else {
            cmd.arg(a);
        }
    }
    cmd.arg("--kubeconfig").arg(kubeconfig);
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .expect("spawn controller");
    // The first stdout line announces the operations endpoint: the process is up.
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(
        first.contains("http://"),
        "controller said {first:?}: {}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
    child
}

/// On a failing test, print the tail of each replica's log (the temp dir goes with the test).
struct DumpLogsOnPanic(Vec<PathBuf>);
impl Drop for DumpLogsOnPanic {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        for log in &self.0 {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = lines[lines.len().saturating_sub(150)..].join("\n");
            eprintln!("--- last lines of {} ---\n{tail}", log.display());
        }
    }
}

struct Kill(Vec<Child>);
impl Drop for Kill {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

async fn test_client(kubeconfig: &Path) -> kube::Client {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig).unwrap();
    let mut cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .unwrap();
    cfg.headers.push((
        http::header::USER_AGENT,
        http::HeaderValue::from_static(TEST_UA),
    ));
    kube::Client::try_from(cfg).unwrap()
}

async fn apply(kube: &kube::Client, obj: &Value) {
    use kube::api::{DynamicObject, Patch, PatchParams};
    use kube::discovery::ApiResource;
    let api_version = obj["apiVersion"].as_str().unwrap();
    let kind = obj["kind"].as_str().unwrap();
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let plural = match kind {
        "IngressClass" => "ingressclasses".to_string(),
        "Ingress" => "ingresses".to_string(),
        "ClbClassParameters" => "clbclassparameters".to_string(),
        k if k.ends_with('s') => format!("{}es", k.to_lowercase()),
        k => format!("{}s", k.to_lowercase()),
    };
    let ar = ApiResource {
        group: group.into(),
        version: version.into(),
        api_version: api_version.into(),
        kind: kind.into(),
        plural,
    };
    let api: kube::Api<DynamicObject> = match obj["metadata"]["namespace"].as_str() {
        Some(ns) => kube::Api::namespaced_with(kube.clone(), ns, &ar),
        None => kube::Api::all_with(kube.clone(), &ar),
    };
    let name = obj["metadata"]["name"].as_str().unwrap();
    api.patch(
        name,
        &PatchParams::apply("helm-rbac-test").force(),
        &Patch::Apply(obj),
    )
    .await
    .unwrap_or_else(|e| panic!("apply {kind} {name}: {e}"));
}

async fn until<F: std::future::Future<Output = bool>>(
    what: &str,
    within: Duration,
    mut f: impl FnMut() -> F,
) {
    let start = Instant::now();
    while !f().await {
        assert!(start.elapsed() < within, "{what} not within {within:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rbac_grants_exactly_the_api_calls_the_controller_makes() {
    // Defaults: two leader-electing replicas, all namespaces, Nodes watched.
    rbac_equals_calls(json!({}), 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_one_watched_namespace_the_rbac_still_grants_exactly_the_calls_made() {
    // One replica, no election, no Nodes, namespaced permissions in a Role in `default`.
    rbac_equals_calls(
        json!({"replicaCount": 1, "leaderElection": {"enabled": false},
               "controller": {"watchNamespace": "default", "nodeWatch": false}}),
        1,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_gateway_api_enabled_the_rbac_still_grants_exactly_the_calls_made() {
    // The chart's Gateway API CRDs installed; a Gateway, an HTTPRoute and a GRPCRoute get
    // their status written besides the Ingress flow.
    rbac_equals_calls(
        json!({"replicaCount": 1, "leaderElection": {"enabled": false},
               "gatewayAPI": {"enabled": true, "installCRDs": true}}),
        1,
    )
    .await;
}

/// Render with `values`, run `replicas` copies of the chart's Deployment against the test API
/// server and the emulator, drive an Ingress with TLS through create, two edits and delete, and
/// compare the controller's calls from the audit log with what the rendered roles grant.
async fn rbac_equals_calls(values: Value, replicas: usize) {
    use k8s_openapi::api::networking::v1::Ingress;
    let r = render(values);
    let leader_election = r.args().iter().any(|a| a == "--leader-elect");
    let e = cluster::env().await;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, e.api.kubeconfig_yaml()).unwrap();
    let kube = test_client(&kubeconfig).await;
    apply(
        &kube,
        &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}),
    )
    .await;
    let gateway_api = r.args().iter().any(|a| a == "--gateway-api");
    if gateway_api {
        let crds = r.all("CustomResourceDefinition");
        assert_eq!(crds.len(), 5, "the pinned standard-channel CRDs");
        for crd in crds {
            apply(&kube, crd).await;
        }
    }
    // From here on, every request without the test's User-Agent is the controller's.
    e.api.clear_audit();
    let endpoint = format!("http://{}", e.emu.addr);
    let _dump = DumpLogsOnPanic(
        (0..replicas)
            .map(|i| dir.path().join(format!("clb-ingress-{i}.log")))
            .collect(),
    );
    let _replicas = Kill(
        (0..replicas)
            .map(|i| {
                let pod = format!("clb-ingress-{i}");
                let log = dir.path().join(format!("{pod}.log"));
                replica(&r, &kubeconfig, &endpoint, &pod, &log)
            })
            .collect(),
    );
    // The chart's own IngressClass and parameters, a backend, a TLS Secret, an Ingress.
    for obj in [r.one("IngressClass"), r.one("ClbClassParameters")] {
        apply(&kube, obj).await;
    }
    apply(
        &kube,
        &json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}]}}),
    )
    .await;
    // A second pod waits for its readiness gate (watched pods, pods/status patch).
    apply(
        &kube,
        &json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web-gated", "namespace": "default",
                     "labels": {"clb-ingress.io/readiness-gate": "true"}},
        "spec": {"containers": [{"name": "web", "image": "web"}],
                 "readinessGates": [{"conditionType": "clb-ingress.io/target-healthy"}]}}),
    )
    .await;
    kube::Api::<k8s_openapi::api::core::v1::Pod>::namespaced(kube.clone(), "default")
        .patch_status(
            "web-gated",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({"status": {"podIP": "10.1.0.2", "conditions": [
                {"type": "ContainersReady", "status": "True"}, {"type": "Ready", "status": "False"}]}})),
        )
        .await
        .unwrap();
    apply(&kube, &json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "web-1", "namespace": "default", "labels": {"kubernetes.io/service-name": "web"}},
        "addressType": "IPv4", "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": [{"addresses": ["10.1.0.1"], "conditions": {"ready": true}},
                      {"addresses": ["10.1.0.2"], "conditions": {"ready": false},
                       "targetRef": {"kind": "Pod", "namespace": "default", "name": "web-gated"}}]})).await;
    let cert = rcgen::generate_simple_self_signed(vec!["shop.example.com".to_string()]).unwrap();
    apply(
        &kube,
        &json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
        "metadata": {"name": "shop-tls", "namespace": "default"},
        "stringData": {"tls.crt": cert.cert.pem(), "tls.key": cert.signing_key.serialize_pem()}}),
    )
    .await;
    let ingress = |path: &str| {
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": "shop", "namespace": "default"},
        "spec": {"ingressClassName": "clb",
            "tls": [{"hosts": ["shop.example.com"], "secretName": "shop-tls"}],
            "rules": [{"host": "shop.example.com", "http": {"paths": [{"path": path, "pathType": "Prefix",
                "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}}]}})
    };
    apply(&kube, &ingress("/")).await;
    let ings: kube::Api<Ingress> = kube::Api::namespaced(kube.clone(), "default");
    let synced_generation = |g: i64| {
        let ings = ings.clone();
        async move {
            let Some(i) = ings.get_opt("shop").await.unwrap() else {
                return false;
            };
            let st = i
                .metadata
                .annotations
                .unwrap_or_default()
                .get("clb-ingress.io/sync-state")
                .cloned();
            let st: Value = st
                .and_then(|s| serde_json::from_str(&s).ok())
                .unwrap_or_default();
            st["synced"] == true
                && st["observedGeneration"] == g
                && i.status
                    .and_then(|s| s.load_balancer)
                    .and_then(|l| l.ingress)
                    .is_some()
        }
    };
    until(
        "created Ingress synced with an address",
        Duration::from_secs(30),
        || synced_generation(1),
    )
    .await;
    until(
        "the gated pod's readiness gate set",
        Duration::from_secs(30),
        || {
            let pods =
                kube::Api::<k8s_openapi::api::core::v1::Pod>::namespaced(kube.clone(), "default");
            async move {
                pods.get("web-gated")
                    .await
                    .ok()
                    .and_then(|p| p.status?.conditions)
                    .unwrap_or_default()
                    .iter()
                    .any(|c| c.type_ == "clb-ingress.io/target-healthy" && c.status == "True")
            }
        },
    )
    .await;
    apply(&kube, &ingress("/shop")).await;
    until("edited Ingress synced", Duration::from_secs(30), || {
        synced_generation(2)
    })
    .await;
    apply(&kube, &ingress("/")).await;
    until("re-edited Ingress synced", Duration::from_secs(30), || {
        synced_generation(3)
    })
    .await;
    // A Warning that comes back within 6 minutes adds to its first Event's series (a patch;
    // each Synced Event is its own): an unknown annotation of ours, removed, then added again.
    // Listed with this test's own client, not `Env::events_in`: the audit log counts the
    // environment's client as the controller (its Event list is no call the chart grants).
    let unknown_annotation_count = || {
        let events: kube::Api<kube::api::DynamicObject> = kube::Api::namespaced_with(
            kube.clone(),
            "default",
            &kube::discovery::ApiResource {
                group: "events.k8s.io".into(),
                version: "v1".into(),
                api_version: "events.k8s.io/v1".into(),
                kind: "Event".into(),
                plural: "events".into(),
            },
        );
        async move {
            events
                .list(&Default::default())
                .await
                .unwrap()
                .items
                .iter()
                .filter(|e| {
                    e.data["regarding"]["name"] == "shop" && e.data["reason"] == "UnknownAnnotation"
                })
                .map(|e| e.data["series"]["count"].as_u64().unwrap_or(1))
                .sum::<u64>()
        }
    };
    // Annotations do not bump the generation: wait on the sync state's Problems.
    let names_the_annotation = || {
        let ings = ings.clone();
        async move {
            let i = ings.get("shop").await.unwrap();
            let st = i
                .metadata
                .annotations
                .unwrap_or_default()
                .get("clb-ingress.io/sync-state")
                .cloned()
                .unwrap_or_default();
            (!st.is_empty()).then(|| st.contains("no-such-setting"))
        }
    };
    let set_annotation = |v: Value| {
        let ings = ings.clone();
        async move {
            ings.patch(
                "shop",
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(
                    json!({"metadata": {"annotations": {"clb-ingress.io/no-such-setting": v}}}),
                ),
            )
            .await
            .unwrap();
        }
    };
    set_annotation(json!("x")).await;
    until(
        "the UnknownAnnotation Warning",
        Duration::from_secs(30),
        || async { unknown_annotation_count().await >= 1 },
    )
    .await;
    set_annotation(Value::Null).await;
    until(
        "annotation removed, its Problem gone",
        Duration::from_secs(30),
        || async { names_the_annotation().await == Some(false) },
    )
    .await;
    set_annotation(json!("x")).await;
    until(
        "the UnknownAnnotation Warning again, in its series",
        Duration::from_secs(30),
        || async { unknown_annotation_count().await >= 2 },
    )
    .await;
    ings.delete("shop", &Default::default()).await.unwrap();
    until("deleted Ingress released", Duration::from_secs(30), || {
        let ings = ings.clone();
        async move { ings.get_opt("shop").await.unwrap().is_none() }
    })
    .await;
    if gateway_api {
        gateway_flow(&kube, &r).await;
    }
    // Leases are renewed every few seconds: wait for a renewal by the leader.
    let renewals = || {
        e.api
            .audit()
            .into_iter()
            .filter(|a| {
                a.user_agent != TEST_UA
                    && a.resource == "leases"
                    && a.verb != "get"
                    && a.verb != "create"
            })
            .count()
    };
    if leader_election {
        until("a Lease renewal", Duration::from_secs(30), || {
            let n = renewals();
            async move { n > 0 }
        })
        .await;
    }

    let calls: BTreeSet<Call> = e
        .api
        .audit()
        .into_iter()
        .filter(|a| a.user_agent != TEST_UA)
        .map(|a| {
            assert!(a.non_resource_url.is_empty(), "non-resource call {a:?}");
            Call {
                group: a.group,
                resource: if a.subresource.is_empty() {
                    a.resource
                } else {
                    format!("{}/{}", a.resource, a.subresource)
                },
                verb: a.verb,
                namespace: a.namespace,
                name: a.name,
            }
        })
        .collect();
    let grants = grants(&r);
    let denied: Vec<&Call> = calls
        .iter()
        .filter(|c| !grants.iter().any(|g| g.allows(c)))
        .collect();
    let unused: Vec<&Grant> = grants
        .iter()
        .filter(|g| !calls.iter().any(|c| g.allows(c)))
        .collect();
    let summary: BTreeSet<(String, String, String)> = calls
        .iter()
        .map(|c| (c.group.clone(), c.resource.clone(), c.verb.clone()))
        .collect();
    eprintln!("controller calls (group, resource, verb): {summary:#?}");
    assert!(
        denied.is_empty() && unused.is_empty(),
        "calls the chart's RBAC does not allow: {denied:#?}\ngrants never used: {unused:#?}"
    );
}

/// A GatewayClass of the chart's controllerName, a Gateway, an HTTPRoute and a GRPCRoute
/// attached to it, until each has the status the controller writes.
async fn gateway_flow(kube: &kube::Client, r: &Rendered) {
    let params = r.one("ClbClassParameters")["metadata"]["name"].clone();
    let gw = "gateway.networking.k8s.io/v1";
    apply(kube, &json!({"apiVersion": gw, "kind": "GatewayClass", "metadata": {"name": "clb-gw"},
        "spec": {"controllerName": "clb-ingress.io/gateway-controller",
                 "parametersRef": {"group": "clb-ingress.io", "kind": "ClbClassParameters", "name": params}}}))
    .await;
    apply(
        kube,
        &json!({"apiVersion": gw, "kind": "Gateway",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"gatewayClassName": "clb-gw",
                 "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}]}}),
    )
    .await;
    apply(
        kube,
        &json!({"apiVersion": gw, "kind": "HTTPRoute",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"parentRefs": [{"name": "web"}], "hostnames": ["gw.example.com"],
                 "rules": [{"backendRefs": [{"name": "web", "port": 80}]}]}}),
    )
    .await;
    apply(
        kube,
        &json!({"apiVersion": gw, "kind": "GRPCRoute",
        "metadata": {"name": "rpc", "namespace": "default"},
        "spec": {"parentRefs": [{"name": "web"}],
                 "rules": [{"backendRefs": [{"name": "web", "port": 80}]}]}}),
    )
    .await;
    let get =
        |kind: &'static str, plural: &'static str, ns: Option<&'static str>, name: &'static str| {
            let ar = kube::discovery::ApiResource {
                group: "gateway.networking.k8s.io".into(),
                version: "v1".into(),
                api_version: "gateway.networking.k8s.io/v1".into(),
                kind: kind.into(),
                plural: plural.into(),
            };
            let api: kube::Api<kube::api::DynamicObject> = match ns {
                Some(ns) => kube::Api::namespaced_with(kube.clone(), ns, &ar),
                None => kube::Api::all_with(kube.clone(), &ar),
            };
            async move {
                api.get_opt(name)
                    .await
                    .unwrap()
                    .map(|o| o.data["status"].clone())
            }
        };
    until(
        "the GatewayClass accepted",
        Duration::from_secs(30),
        || async {
            get("GatewayClass", "gatewayclasses", None, "clb-gw")
                .await
                .is_some_and(|s| s["conditions"].is_array())
        },
    )
    .await;
    until(
        "the Gateway programmed with an address",
        Duration::from_secs(30),
        || async {
            get("Gateway", "gateways", Some("default"), "web")
                .await
                .is_some_and(|s| s["addresses"][0]["value"].is_string())
        },
    )
    .await;
    for (kind, plural, name) in [
        ("HTTPRoute", "httproutes", "web"),
        ("GRPCRoute", "grpcroutes", "rpc"),
    ] {
        until(
            "a route's parents status",
            Duration::from_secs(30),
            || async move {
                get(kind, plural, Some("default"), name)
                    .await
                    .is_some_and(|s| s["parents"][0]["controllerName"].is_string())
            },
        )
        .await;
    }
}

#[test]
fn the_testing_only_emulator_sidecar_renders_validates_and_its_arguments_start_the_emulator() {
    let r = render(
        json!({"replicaCount": 1, "emulator": {"enabled": true, "extraArgs": ["--seed=1"]},
        "controller": {"region": "ap-shanghai"}}),
    );
    assert_all_valid(&r);
    assert_consistent(&r);
    assert!(
        r.args()
            .contains(&"--clb-endpoint=http://127.0.0.1:9000".to_string())
    );
    let d: Deployment = r.typed("Deployment");
    let pod = d.spec.unwrap().template.spec.unwrap();
    assert_eq!(pod.containers.len(), 2);
    let text = serde_json::to_string(&pod.containers[0]).unwrap();
    assert!(
        !text.contains("TENCENTCLOUD_"),
        "no cloud key with the emulator: {text}"
    );
    let emu = &pod.containers[1];
    assert_eq!(emu.security_context, pod.containers[0].security_context);
    // Its arguments start the real emulator (on a free port instead of 9000).
    let args: Vec<String> = emu
        .args
        .clone()
        .unwrap()
        .into_iter()
        .map(|a| {
            if a.starts_with("--listen=") {
                "--listen=127.0.0.1:0".into()
            } else {
                a
            }
        })
        .collect();
    let mut child = Command::new(clb_test_support::emulator::bin())
        .env_clear()
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        first.contains("listening on http://127.0.0.1:") && first.contains("region ap-shanghai"),
        "{first:?} from {args:?}"
    );
    assert!(r.notes().contains("port-forward"), "{}", r.notes());
    let out = try_render(json!({"emulator": {"enabled": true}}));
    assert!(
        out["renderError"]
            .as_str()
            .unwrap_or_default()
            .contains("replicaCount: 1"),
        "{out}"
    );
}
