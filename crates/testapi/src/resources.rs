//! The resource table: built-in kinds, kinds registered by CustomResourceDefinitions, and the
//! discovery and OpenAPI documents derived from it.

use serde_json::{Value, json};

/// How the stored form of an object maps to what clients of this group/version see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    /// Stored as served (only `apiVersion` is relabelled for multi-version CRDs).
    Identity,
    /// `events.k8s.io/v1` Event, stored as a core v1 Event (one store, like the real server).
    EventsV1,
}

/// A printer column: a name and a JSON path into the object (CRD `additionalPrinterColumns`).
#[derive(Debug, Clone, PartialEq)]
pub struct PrinterColumn {
    pub name: String,
    pub kind: String,
    pub json_path: String,
}

/// One served resource of one group/version.
#[derive(Debug, Clone, PartialEq)]
pub struct ResourceDef {
    pub group: String,
    pub version: String,
    pub plural: String,
    pub singular: String,
    pub kind: String,
    pub namespaced: bool,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    /// Has a `/status` subresource: main-resource writes keep the stored status.
    pub status_subresource: bool,
    /// `metadata.generation` is bumped when anything outside metadata and status changes.
    pub generation: bool,
    /// Group and plural of the store these objects live in.
    pub storage_group: String,
    pub storage_plural: String,
    pub view: View,
    pub printer_columns: Vec<PrinterColumn>,
    /// The CRD version's `openAPIV3Schema` (custom resources), served in `/openapi/v3` for
    /// `kubectl explain`.
    pub schema: Option<Value>,
}

impl ResourceDef {
    /// `apiVersion` of objects of this resource.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `ingresses.networking.k8s.io` (or `services` for the core group), as in API messages.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn builtin(
    group: &str,
    version: &str,
    plural: &str,
    kind: &str,
    namespaced: bool,
    short: &[&str],
    status: bool,
    generation: bool,
) -> ResourceDef {
    ResourceDef {
        group: group.into(),
        version: version.into(),
        plural: plural.into(),
        singular: kind.to_lowercase(),
        kind: kind.into(),
        namespaced,
        short_names: short.iter().map(|s| s.to_string()).collect(),
        categories: Vec::new(),
        status_subresource: status,
        generation,
        storage_group: group.into(),
        storage_plural: plural.into(),
        view: View::Identity,
        printer_columns: Vec::new(),
        schema: None,
    }
}

/// The built-in resources served.
pub fn builtins() -> Vec<ResourceDef> {
    let mut events_v1 = builtin(
        "events.k8s.io",
        "v1",
        "events",
        "Event",
        true,
        &["ev"],
        false,
        false,
    );
    events_v1.storage_group = String::new();
    events_v1.view = View::EventsV1;
    let mut all = vec![
        builtin(
            "",
            "v1",
            "namespaces",
            "Namespace",
            false,
            &["ns"],
            true,
            false,
        ),
        builtin("", "v1", "services", "Service", true, &["svc"], true, false),
        builtin("", "v1", "secrets", "Secret", true, &[], false, false),
        builtin(
            "",
            "v1",
            "configmaps",
            "ConfigMap",
            true,
            &["cm"],
            false,
            false,
        ),
        builtin("", "v1", "nodes", "Node", false, &["no"], true, false),
        builtin(
            "",
            "v1",
            "endpoints",
            "Endpoints",
            true,
            &["ep"],
            false,
            false,
        ),
        builtin("", "v1", "pods", "Pod", true, &["po"], true, true),
        builtin(
            "",
            "v1",
            "serviceaccounts",
            "ServiceAccount",
            true,
            &["sa"],
            false,
            false,
        ),
        builtin("", "v1", "events", "Event", true, &["ev"], false, false),
        builtin(
            "discovery.k8s.io",
            "v1",
            "endpointslices",
            "EndpointSlice",
            true,
            &[],
            false,
            false,
        ),
        builtin(
            "networking.k8s.io",
            "v1",
            "ingresses",
            "Ingress",
            true,
            &["ing"],
            true,
            true,
        ),
        builtin(
            "networking.k8s.io",
            "v1",
            "ingressclasses",
            "IngressClass",
            false,
            &[],
            false,
            true,
        ),
        builtin(
            "coordination.k8s.io",
            "v1",
            "leases",
            "Lease",
            true,
            &[],
            false,
            false,
        ),
        events_v1,
        builtin(
            "apiextensions.k8s.io",
            "v1",
            "customresourcedefinitions",
            "CustomResourceDefinition",
            false,
            &["crd", "crds"],
            true,
            true,
        ),
    ];
    for r in &mut all {
        if r.plural == "endpoints" {
            r.singular = "endpoints".into();
        }
        if matches!(r.plural.as_str(), "services" | "pods") {
            r.categories = vec!["all".into()];
        }
    }
    all
}

/// The resources a stored CustomResourceDefinition serves (one per served version).
pub fn from_crd(crd: &Value) -> Vec<ResourceDef> {
    let spec = &crd["spec"];
    let (Some(group), Some(plural), Some(kind)) = (
        spec["group"].as_str(),
        spec["names"]["plural"].as_str(),
        spec["names"]["kind"].as_str(),
    ) else {
        return Vec::new();
    };
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    let singular = spec["names"]["singular"]
        .as_str()
        .map_or_else(|| kind.to_lowercase(), String::from);
    let namespaced = spec["scope"].as_str() != Some("Cluster");
    let versions = spec["versions"].as_array().cloned().unwrap_or_default();
    versions
        .iter()
        .filter(|v| v["served"].as_bool().unwrap_or(true))
        .filter_map(|v| {
            let version = v["name"].as_str()?;
            let columns = v["additionalPrinterColumns"]
                .as_array()
                .map(|cols| {
                    cols.iter()
                        .filter_map(|c| {
                            Some(PrinterColumn {
                                name: c["name"].as_str()?.to_string(),
                                kind: c["type"].as_str().unwrap_or("string").to_string(),
                                json_path: c["jsonPath"].as_str()?.to_string(),
                            })
                        })
                        .collect()
                })
                .unwrap_or_default();
            Some(ResourceDef {
                group: group.into(),
                version: version.into(),
                plural: plural.into(),
                singular: singular.clone(),
                kind: kind.into(),
                namespaced,
                short_names: strings(&spec["names"]["shortNames"]),
                categories: strings(&spec["names"]["categories"]),
                status_subresource: v["subresources"].get("status").is_some(),
                generation: true,
                storage_group: group.into(),
                storage_plural: plural.into(),
                view: View::Identity,
                printer_columns: columns,
                schema: v["schema"]["openAPIV3Schema"]
                    .as_object()
                    .map(|o| Value::Object(o.clone())),
            })
        })
        .collect()
}

/// Group/versions in serving order, each with its resources.
pub fn group_versions(defs: &[ResourceDef]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for d in defs {
        let gv = (d.group.clone(), d.version.clone());
        if !out.contains(&gv) {
            out.push(gv);
        }
    }
    out
}

const VERBS: [&str; 8] = [
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

/// `/api/v1` or `/apis/<g>/<v>`: the legacy `APIResourceList`.
pub fn resource_list(defs: &[ResourceDef], group: &str, version: &str) -> Option<Value> {
    let mut resources = Vec::new();
    for d in defs
        .iter()
        .filter(|d| d.group == group && d.version == version)
    {
        let mut r = json!({
            "name": d.plural,
            "singularName": d.singular,
            "namespaced": d.namespaced,
            "kind": d.kind,
            "verbs": VERBS,
        });
        if !d.short_names.is_empty() {
            r["shortNames"] = json!(d.short_names);
        }
        if !d.categories.is_empty() {
            r["categories"] = json!(d.categories);
        }
        resources.push(r);
        if d.status_subresource {
            resources.push(json!({
                "name": format!("{}/status", d.plural),
                "singularName": "",
                "namespaced": d.namespaced,
                "kind": d.kind,
                "verbs": ["get", "patch", "update"],
            }));
        }
    }
    if resources.is_empty() {
        return None;
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": gv,
        "resources": resources,
    }))
}

fn api_group(defs: &[ResourceDef], group: &str) -> Value {
    let versions: Vec<Value> = group_versions(defs)
        .into_iter()
        .filter(|(g, _)| g == group)
        .map(|(g, v)| json!({"groupVersion": format!("{g}/{v}"), "version": v}))
        .collect();
    let preferred = versions.first().cloned().unwrap_or(Value::Null);
    json!({"name": group, "versions": versions, "preferredVersion": preferred})
}

/// `/apis/<g>`: one `APIGroup`.
pub fn group_doc(defs: &[ResourceDef], group: &str) -> Option<Value> {
    if group.is_empty() || !defs.iter().any(|d| d.group == group) {
        return None;
    }
    let mut g = api_group(defs, group);
    g["kind"] = json!("APIGroup");
    g["apiVersion"] = json!("v1");
    Some(g)
}

/// `/apis`: the legacy `APIGroupList`.
pub fn group_list(defs: &[ResourceDef]) -> Value {
    let mut groups: Vec<String> = Vec::new();
    for d in defs.iter().filter(|d| !d.group.is_empty()) {
        if !groups.contains(&d.group) {
            groups.push(d.group.clone());
        }
    }
    let groups: Vec<Value> = groups.iter().map(|g| api_group(defs, g)).collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `/openapi/v3`: the index of per-group-version documents.
pub fn openapi_index(defs: &[ResourceDef], hash: u64) -> Value {
    let mut paths = serde_json::Map::new();
    for (g, v) in group_versions(defs) {
        let path = if g.is_empty() {
            format!("api/{v}")
        } else {
            format!("apis/{g}/{v}")
        };
        let url = format!("/openapi/v3/{path}?hash={hash:016X}");
        paths.insert(path, json!({"serverRelativeURL": url}));
    }
    json!({"paths": paths})
}

/// `/openapi/v3/<api/v1|apis/g/v>`: a minimal OpenAPI v3 document.
///
/// It has one path per resource whose PATCH operation carries the
/// `x-kubernetes-group-version-kind` extension and a `fieldValidation` query parameter, so
/// kubectl's `--validate=strict` (the default) sees server-side field validation as supported
/// and sends `fieldValidation=Strict` instead of validating against schemas it would need here.
/// The PATCH request bodies do not list strategic merge patch, so `kubectl apply` builds its
/// patches from its compiled-in types (built-in kinds) or as JSON merge patches (custom kinds).
pub fn openapi_doc(defs: &[ResourceDef], group: &str, version: &str) -> Option<Value> {
    let mut paths = serde_json::Map::new();
    let mut schemas = serde_json::Map::new();
    for d in defs
        .iter()
        .filter(|d| d.group == group && d.version == version)
    {
        if let Some(schema) = &d.schema {
            // As the real server publishes a CRD: the version's schema, with the GVK and the
            // fields every object has.
            let mut schema = schema.clone();
            schema["x-kubernetes-group-version-kind"] =
                json!([{"group": group, "version": version, "kind": d.kind}]);
            let props = &mut schema["properties"];
            if !props.is_object() {
                *props = json!({});
            }
            for (field, doc) in [
                (
                    "apiVersion",
                    "APIVersion defines the versioned schema of this representation of an object.",
                ),
                (
                    "kind",
                    "Kind is a string value representing the REST resource this object represents.",
                ),
            ] {
                if props.get(field).is_none() {
                    props[field] = json!({"type": "string", "description": doc});
                }
            }
            if props.get("metadata").is_none() {
                props["metadata"] =
                    json!({"type": "object", "description": "Standard object's metadata."});
            }
            let reversed: Vec<&str> = group.split('.').rev().collect();
            schemas.insert(
                format!("{}.{version}.{}", reversed.join("."), d.kind),
                schema,
            );
        }
        let prefix = if group.is_empty() {
            format!("/api/{version}")
        } else {
            format!("/apis/{group}/{version}")
        };
        let item = if d.namespaced {
            format!("{prefix}/namespaces/{{namespace}}/{}/{{name}}", d.plural)
        } else {
            format!("{prefix}/{}/{{name}}", d.plural)
        };
        let gvk = json!({"group": group, "version": version, "kind": d.kind});
        let param = |name: &str| json!({"name": name, "in": "query", "schema": {"type": "string"}});
        let body = json!({"content": {
            "application/json-patch+json": {"schema": {"type": "object"}},
            "application/merge-patch+json": {"schema": {"type": "object"}},
            "application/apply-patch+yaml": {"schema": {"type": "object"}},
        }});
        let op = |verb: &str| {
            json!({
                "operationId": format!("{verb}{}", d.kind),
                "x-kubernetes-action": verb,
                "x-kubernetes-group-version-kind": gvk,
                "parameters": [param("dryRun"), param("fieldManager"), param("fieldValidation")],
                "responses": {"200": {"description": "OK"}},
            })
        };
        let mut patch = op("patch");
        patch["requestBody"] = body;
        paths.insert(
            item,
            json!({"get": op("get"), "put": op("put"), "patch": patch, "delete": op("delete")}),
        );
    }
    if paths.is_empty() {
        return None;
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes (clb-ingress test API server)", "version": "v1.32.0"},
        "paths": paths,
        "components": {"schemas": schemas},
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crd_registers_one_resource_per_served_version() {
        let crd = json!({"spec": {"group": "clb-ingress.io", "scope": "Cluster",
            "names": {"plural": "clbclassparameters", "kind": "ClbClassParameters",
                "shortNames": ["clbparams"]},
            "versions": [
                {"name": "v1alpha1", "served": true, "storage": true,
                 "subresources": {"status": {}},
                 "additionalPrinterColumns": [{"name": "Mode", "type": "string",
                    "jsonPath": ".spec.targetMode"}]},
                {"name": "v0", "served": false}]}});
        let defs = from_crd(&crd);
        assert_eq!(defs.len(), 1);
        let d = &defs[0];
        assert!(!d.namespaced && d.status_subresource);
        assert_eq!(d.singular, "clbclassparameters");
        assert_eq!(d.printer_columns[0].json_path, ".spec.targetMode");
        let list = resource_list(&defs, "clb-ingress.io", "v1alpha1").unwrap();
        assert_eq!(list["resources"][1]["name"], "clbclassparameters/status");
    }
}
