//! Per-kind behaviour: defaults the real API server fills in (Secret `stringData`, Service
//! cluster IPs and node ports, Namespace phase, CRD conditions) and the `events.k8s.io/v1` view
//! of core Events.

use crate::resources::{ResourceDef, View};
use base64::Engine;
use serde_json::{Map, Value, json};

/// Counters for values the server allocates.
#[derive(Debug, Default)]
pub struct Allocator {
    next_cluster_ip: u32,
    next_node_port: u32,
    used_node_ports: std::collections::BTreeSet<u64>,
}

impl Allocator {
    fn cluster_ip(&mut self) -> String {
        self.next_cluster_ip += 1;
        let n = self.next_cluster_ip;
        format!("10.96.{}.{}", (n / 250) % 256, n % 250 + 1)
    }

    fn node_port(&mut self) -> u64 {
        loop {
            let p = 30000 + u64::from(self.next_node_port % 2768);
            self.next_node_port += 1;
            if self.used_node_ports.insert(p) {
                return p;
            }
            if self.used_node_ports.len() >= 2768 {
                return p;
            }
        }
    }
}

/// The few validations the server makes beyond names: CRDs must be well formed (their name
/// is `<plural>.<group>`, the group has a dot, names and at least one version are given), and
/// Leases, Ingresses and Services must have an object `spec` when they have one at all.
pub fn validate(def: &ResourceDef, obj: &Value) -> Result<(), String> {
    if let Some(spec) = obj.get("spec")
        && !spec.is_object()
        && !spec.is_null()
    {
        return Err("spec: Invalid value: must be an object".into());
    }
    if def.group != "apiextensions.k8s.io" || def.plural != "customresourcedefinitions" {
        return Ok(());
    }
    let spec = &obj["spec"];
    let group = spec["group"].as_str().unwrap_or("");
    let plural = spec["names"]["plural"].as_str().unwrap_or("");
    let kind = spec["names"]["kind"].as_str().unwrap_or("");
    let name = obj["metadata"]["name"].as_str().unwrap_or("");
    if !group.contains('.') {
        return Err(format!(
            "spec.group: Invalid value: {group:?}: should be a domain with at least one dot"
        ));
    }
    if plural.is_empty() || kind.is_empty() {
        return Err("spec.names: Required value: plural and kind are required".into());
    }
    if name != format!("{plural}.{group}") {
        return Err(format!(
            "metadata.name: Invalid value: {name:?}: must be spec.names.plural+\".\"+spec.group"
        ));
    }
    if !matches!(spec["scope"].as_str(), Some("Namespaced" | "Cluster")) {
        return Err("spec.scope: Unsupported value: must be Namespaced or Cluster".into());
    }
    let versions = spec["versions"].as_array().map_or(0, Vec::len);
    if versions == 0
        || spec["versions"]
            .as_array()
            .is_some_and(|vs| vs.iter().any(|v| v["name"].as_str().is_none()))
    {
        return Err("spec.versions: Invalid value: at least one named version is required".into());
    }
    Ok(())
}

/// Fill in server-side defaults on a create or update of `def` (stored form).
pub fn normalize(def: &ResourceDef, obj: &mut Value, old: Option<&Value>, alloc: &mut Allocator) {
    match (def.group.as_str(), def.plural.as_str()) {
        ("", "secrets") => secret(obj),
        ("", "services") => service(obj, old, alloc),
        ("", "namespaces") => {
            if obj.pointer("/status/phase").is_none() {
                obj["status"] = json!({"phase": "Active"});
            }
            let name = obj["metadata"]["name"].clone();
            let labels = obj["metadata"]
                .as_object_mut()
                .map(|m| m.entry("labels").or_insert_with(|| json!({})));
            if let Some(Value::Object(l)) = labels {
                l.insert("kubernetes.io/metadata.name".into(), name);
            }
        }
        ("apiextensions.k8s.io", "customresourcedefinitions") => crd(obj),
        _ => {}
    }
}

fn secret(obj: &mut Value) {
    if obj.get("type").is_none() {
        obj["type"] = json!("Opaque");
    }
    let Some(Value::Object(string_data)) = obj.as_object_mut().and_then(|m| m.remove("stringData"))
    else {
        return;
    };
    if !obj["data"].is_object() {
        obj["data"] = json!({});
    }
    for (k, v) in string_data {
        let text = v.as_str().map_or_else(|| v.to_string(), String::from);
        obj["data"][k] = json!(base64::engine::general_purpose::STANDARD.encode(text));
    }
}

fn service(obj: &mut Value, old: Option<&Value>, alloc: &mut Allocator) {
    if !obj["spec"].is_object() {
        obj["spec"] = json!({});
    }
    let spec = &mut obj["spec"];
    if spec.get("type").is_none() {
        spec["type"] = json!("ClusterIP");
    }
    if spec.get("sessionAffinity").is_none() {
        spec["sessionAffinity"] = json!("None");
    }
    let ty = spec["type"].as_str().unwrap_or("ClusterIP").to_string();
    if ty != "ExternalName"
        && spec
            .get("clusterIP")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
    {
        let ip = old
            .and_then(|o| o.pointer("/spec/clusterIP"))
            .and_then(Value::as_str)
            .map_or_else(|| alloc.cluster_ip(), String::from);
        spec["clusterIP"] = json!(ip);
        spec["clusterIPs"] = json!([ip]);
    }
    if ty != "ExternalName" && spec.get("ipFamilies").is_none() {
        spec["ipFamilies"] = json!(["IPv4"]);
        spec["ipFamilyPolicy"] = json!("SingleStack");
    }
    let old_ports: Vec<Value> = old
        .and_then(|o| o.pointer("/spec/ports"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let wants_node_port = ty == "NodePort" || ty == "LoadBalancer";
    if let Some(Value::Array(ports)) = spec.get_mut("ports") {
        for p in ports.iter_mut() {
            if !p.is_object() {
                continue;
            }
            if p.get("protocol").is_none() {
                p["protocol"] = json!("TCP");
            }
            if p.get("targetPort").is_none() {
                p["targetPort"] = p["port"].clone();
            }
            if wants_node_port && p.get("nodePort").is_none() {
                let reuse = old_ports
                    .iter()
                    .find(|o| o["port"] == p["port"])
                    .and_then(|o| o["nodePort"].as_u64());
                let np = reuse.unwrap_or_else(|| alloc.node_port());
                p["nodePort"] = json!(np);
            }
        }
    }
}

fn crd(obj: &mut Value) {
    let now = crate::store::now_rfc3339();
    let names = obj.pointer("/spec/names").cloned().unwrap_or(json!({}));
    obj["status"] = json!({
        "acceptedNames": names,
        "storedVersions": obj.pointer("/spec/versions")
            .and_then(Value::as_array)
            .map(|vs| vs.iter().filter(|v| v["storage"].as_bool() == Some(true))
                .map(|v| v["name"].clone()).collect::<Vec<_>>())
            .unwrap_or_default(),
        "conditions": [
            {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts",
             "message": "no conflicts found", "lastTransitionTime": now},
            {"type": "Established", "status": "True", "reason": "InitialNamesAccepted",
             "message": "the initial names have been accepted", "lastTransitionTime": now},
        ],
    });
}

const EVENT_RENAMES: [(&str, &str); 7] = [
    ("involvedObject", "regarding"),
    ("message", "note"),
    ("reportingComponent", "reportingController"),
    ("source", "deprecatedSource"),
    ("firstTimestamp", "deprecatedFirstTimestamp"),
    ("lastTimestamp", "deprecatedLastTimestamp"),
    ("count", "deprecatedCount"),
];

fn rename(obj: &Value, core_to_v1: bool) -> Value {
    let Value::Object(m) = obj else {
        return obj.clone();
    };
    let mut out = Map::new();
    for (k, v) in m {
        let key = EVENT_RENAMES
            .iter()
            .find_map(|(core, v1)| {
                if core_to_v1 {
                    (k == core).then_some(*v1)
                } else {
                    (k == v1).then_some(*core)
                }
            })
            .unwrap_or(k.as_str());
        out.insert(key.to_string(), v.clone());
    }
    Value::Object(out)
}

/// The object as clients of `def` see it (stored form in).
pub fn to_view(def: &ResourceDef, stored: &Value) -> Value {
    let mut v = match def.view {
        View::Identity => stored.clone(),
        View::EventsV1 => rename(stored, true),
    };
    if let Value::Object(m) = &mut v {
        m.insert("apiVersion".into(), json!(def.api_version()));
        m.insert("kind".into(), json!(def.kind));
    }
    v
}

/// The stored form of an object a client of `def` sent.
pub fn from_view(def: &ResourceDef, view: &Value) -> Value {
    let mut v = match def.view {
        View::Identity => view.clone(),
        View::EventsV1 => {
            let mut core = rename(view, false);
            if core.get("type").is_none() {
                core["type"] = json!("Normal");
            }
            core
        }
    };
    if let Value::Object(m) = &mut v {
        let api_version = if def.storage_group.is_empty() {
            def.version.clone()
        } else {
            format!("{}/{}", def.storage_group, def.version)
        };
        m.insert("apiVersion".into(), json!(api_version));
        m.insert("kind".into(), json!(def.kind));
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::builtins;

    fn def(group: &str, plural: &str) -> ResourceDef {
        builtins()
            .into_iter()
            .find(|d| d.group == group && d.plural == plural)
            .unwrap()
    }

    #[test]
    fn secret_string_data_becomes_base64_data() {
        let mut s = json!({"metadata": {"name": "s"}, "stringData": {"a": "hi"}});
        normalize(&def("", "secrets"), &mut s, None, &mut Allocator::default());
        assert_eq!(s["data"]["a"], "aGk=");
        assert!(s.get("stringData").is_none());
        assert_eq!(s["type"], "Opaque");
    }

    #[test]
    fn node_port_services_get_ports_that_survive_updates() {
        let mut alloc = Allocator::default();
        let d = def("", "services");
        let mut s = json!({"spec": {"type": "NodePort", "ports": [{"port": 80}]}});
        normalize(&d, &mut s, None, &mut alloc);
        let np = s["spec"]["ports"][0]["nodePort"].as_u64().unwrap();
        assert!((30000..32768).contains(&np));
        let mut again = json!({"spec": {"type": "NodePort", "ports": [{"port": 80}]}});
        normalize(&d, &mut again, Some(&s), &mut alloc);
        assert_eq!(again["spec"]["ports"][0]["nodePort"], np);
        assert_eq!(again["spec"]["clusterIP"], s["spec"]["clusterIP"]);
    }

    #[test]
    fn events_v1_round_trips_through_the_core_form() {
        let d = def("events.k8s.io", "events");
        let v1 = json!({"regarding": {"kind": "Ingress", "name": "shop"}, "note": "n",
            "reportingController": "c", "reason": "Synced", "type": "Normal"});
        let core = from_view(&d, &v1);
        assert_eq!(core["involvedObject"]["name"], "shop");
        assert_eq!(core["message"], "n");
        assert_eq!(core["apiVersion"], "v1");
        let back = to_view(&d, &core);
        assert_eq!(back["note"], "n");
        assert_eq!(back["apiVersion"], "events.k8s.io/v1");
    }
}
