//! Server-side printing: `meta.k8s.io/v1` Tables for `kubectl get` (columns like the real
//! server's for the served kinds, CRD `additionalPrinterColumns`, else NAME and AGE).

use crate::resources::ResourceDef;
use serde_json::{Value, json};

/// Short human duration as kubectl shows ages (`42s`, `5m3s`, `3h`, `2d`).
pub fn human_age(seconds: i64) -> String {
    let s = seconds.max(0);
    match s {
        s if s < 120 => format!("{s}s"),
        s if s < 600 => format!("{}m{}s", s / 60, s % 60),
        s if s < 3 * 3600 => format!("{}m", s / 60),
        s if s < 8 * 3600 => format!("{}h{}m", s / 3600, (s % 3600) / 60),
        s if s < 2 * 86400 => format!("{}h", s / 3600),
        s if s < 8 * 86400 => format!("{}d{}h", s / 86400, (s % 86400) / 3600),
        s => format!("{}d", s / 86400),
    }
}

fn age_of(ts: Option<&str>) -> String {
    let Some(ts) = ts else {
        return "<unknown>".into();
    };
    match ts.parse::<jiff::Timestamp>() {
        Ok(t) => human_age(jiff::Timestamp::now().as_second() - t.as_second()),
        Err(_) => "<invalid>".into(),
    }
}

fn s(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn or_none(v: String) -> String {
    if v.is_empty() { "<none>".into() } else { v }
}

fn arr(v: &Value) -> &[Value] {
    v.as_array().map(Vec::as_slice).unwrap_or(&[])
}

/// Evaluate a simple JSONPath (`.spec.a.b`, `.items[0].x`) as a printer column does.
fn json_path(obj: &Value, path: &str) -> Value {
    let mut cur = obj;
    for seg in path.trim_start_matches('.').split('.') {
        if seg.is_empty() {
            continue;
        }
        let (name, index) = match seg.split_once('[') {
            Some((n, rest)) => (n, rest.trim_end_matches(']').parse::<usize>().ok()),
            None => (seg, None),
        };
        if !name.is_empty() {
            cur = &cur[name];
        }
        if let Some(i) = index {
            cur = &cur[i];
        }
    }
    cur.clone()
}

type Column = (&'static str, fn(&Value) -> String);

fn ingress_hosts(o: &Value) -> String {
    let hosts: Vec<String> = arr(&o["spec"]["rules"])
        .iter()
        .map(|r| r["host"].as_str().unwrap_or("*").to_string())
        .collect();
    if hosts.is_empty() {
        "*".into()
    } else {
        hosts.join(",")
    }
}

fn lb_addresses(o: &Value) -> String {
    arr(&o["status"]["loadBalancer"]["ingress"])
        .iter()
        .filter_map(|i| i["ip"].as_str().or(i["hostname"].as_str()))
        .collect::<Vec<_>>()
        .join(",")
}

fn ingress_ports(o: &Value) -> String {
    if arr(&o["spec"]["tls"]).is_empty() {
        "80".into()
    } else {
        "80, 443".into()
    }
}

fn service_ports(o: &Value) -> String {
    let ports: Vec<String> = arr(&o["spec"]["ports"])
        .iter()
        .map(|p| {
            let proto = p["protocol"].as_str().unwrap_or("TCP");
            match p["nodePort"].as_u64() {
                Some(np) => format!("{}:{np}/{proto}", s(&p["port"])),
                None => format!("{}/{proto}", s(&p["port"])),
            }
        })
        .collect();
    or_none(ports.join(","))
}

fn slice_endpoints(o: &Value) -> String {
    let addrs: Vec<String> = arr(&o["endpoints"])
        .iter()
        .flat_map(|e| arr(&e["addresses"]).iter().map(s))
        .collect();
    match addrs.len() {
        0 => "<unset>".into(),
        n if n > 3 => format!("{} + {} more...", addrs[..3].join(","), n - 3),
        _ => addrs.join(","),
    }
}

fn count_keys(v: &Value) -> String {
    v.as_object().map_or(0, |m| m.len()).to_string()
}

fn builtin_columns(def: &ResourceDef) -> Vec<Column> {
    match (def.group.as_str(), def.plural.as_str()) {
        ("networking.k8s.io", "ingresses") => vec![
            ("Class", |o| or_none(s(&o["spec"]["ingressClassName"]))),
            ("Hosts", ingress_hosts),
            ("Address", lb_addresses),
            ("Ports", ingress_ports),
        ],
        ("networking.k8s.io", "ingressclasses") => vec![
            ("Controller", |o| s(&o["spec"]["controller"])),
            ("Parameters", |o| {
                let p = &o["spec"]["parameters"];
                if p.is_null() {
                    "<none>".into()
                } else {
                    format!("{}/{}", s(&p["kind"]), s(&p["name"]))
                }
            }),
        ],
        ("", "services") => vec![
            ("Type", |o| s(&o["spec"]["type"])),
            ("Cluster-IP", |o| or_none(s(&o["spec"]["clusterIP"]))),
            ("External-IP", |o| or_none(lb_addresses(o))),
            ("Port(s)", service_ports),
        ],
        ("discovery.k8s.io", "endpointslices") => vec![
            ("AddressType", |o| s(&o["addressType"])),
            ("Ports", |o| {
                or_none(
                    arr(&o["ports"])
                        .iter()
                        .map(|p| s(&p["port"]))
                        .collect::<Vec<_>>()
                        .join(","),
                )
            }),
            ("Endpoints", slice_endpoints),
        ],
        ("", "secrets") => vec![
            ("Type", |o| s(&o["type"])),
            ("Data", |o| count_keys(&o["data"])),
        ],
        ("", "configmaps") => vec![("Data", |o| count_keys(&o["data"]))],
        ("", "namespaces") => vec![("Status", |o| s(&o["status"]["phase"]))],
        ("coordination.k8s.io", "leases") => {
            vec![("Holder", |o| s(&o["spec"]["holderIdentity"]))]
        }
        ("", "events") => vec![
            ("Type", |o| s(&o["type"])),
            ("Reason", |o| s(&o["reason"])),
            ("Object", |o| {
                let r = &o["involvedObject"];
                format!("{}/{}", s(&r["kind"]).to_lowercase(), s(&r["name"]))
            }),
            ("Message", |o| s(&o["message"])),
        ],
        _ => Vec::new(),
    }
}

fn partial_metadata(obj: &Value) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": obj["metadata"],
    })
}

/// A `meta.k8s.io/v1` Table of `objects` (already in the client's view).
pub fn table(def: &ResourceDef, objects: &[Value], resource_version: u64) -> Value {
    let mut defs = vec![json!({"name": "Name", "type": "string", "format": "name",
        "description": "Name must be unique within a namespace.", "priority": 0})];
    let builtin = builtin_columns(def);
    for (name, _) in &builtin {
        defs.push(
            json!({"name": name, "type": "string", "format": "", "description": "",
            "priority": 0}),
        );
    }
    let mut has_age = false;
    for c in &def.printer_columns {
        has_age |= c.name == "Age";
        let kind = if c.kind == "date" {
            "string"
        } else {
            c.kind.as_str()
        };
        defs.push(
            json!({"name": c.name, "type": kind, "format": "", "description": "",
            "priority": 0}),
        );
    }
    if !has_age {
        defs.push(json!({"name": "Age", "type": "string", "format": "",
            "description": "CreationTimestamp", "priority": 0}));
    }
    let rows: Vec<Value> = objects
        .iter()
        .map(|o| {
            let mut cells = vec![o["metadata"]["name"].clone()];
            for (_, f) in &builtin {
                cells.push(json!(f(o)));
            }
            for c in &def.printer_columns {
                let v = json_path(o, &c.json_path);
                let cell = if c.kind == "date" {
                    json!(age_of(v.as_str()))
                } else if v.is_null() {
                    json!("<none>")
                } else {
                    v
                };
                cells.push(cell);
            }
            if !has_age {
                cells.push(json!(age_of(o["metadata"]["creationTimestamp"].as_str())));
            }
            json!({"cells": cells, "object": partial_metadata(o)})
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": resource_version.to_string()},
        "columnDefinitions": defs,
        "rows": rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::builtins;

    #[test]
    fn ingress_table_has_kubectl_columns() {
        let def = builtins()
            .into_iter()
            .find(|d| d.kind == "Ingress")
            .unwrap();
        let ing = json!({"metadata": {"name": "shop", "creationTimestamp": "2020-01-01T00:00:00Z"},
            "spec": {"ingressClassName": "clb", "tls": [{}],
                "rules": [{"host": "a.example.com"}, {}]},
            "status": {"loadBalancer": {"ingress": [{"ip": "127.0.0.2"}]}}});
        let t = table(&def, &[ing], 7);
        let names: Vec<&str> = t["columnDefinitions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["Name", "Class", "Hosts", "Address", "Ports", "Age"]);
        assert_eq!(
            t["rows"][0]["cells"],
            json!([
                "shop",
                "clb",
                "a.example.com,*",
                "127.0.0.2",
                "80, 443",
                t["rows"][0]["cells"][5]
            ])
        );
    }

    #[test]
    fn ages_read_like_kubectl() {
        assert_eq!(human_age(5), "5s");
        assert_eq!(human_age(303), "5m3s");
        assert_eq!(human_age(3 * 86400), "3d0h");
        assert_eq!(human_age(30 * 86400), "30d");
    }
}
