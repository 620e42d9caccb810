//! Patch semantics: JSON merge patch (RFC 7386), JSON patch (RFC 6902), a strategic-merge
//! approximation, and the server-side-apply approximation (per-manager last applied config).

use serde_json::{Map, Value};

/// RFC 7386 JSON merge patch.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch_map) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    if let Value::Object(t) = target {
        for (k, v) in patch_map {
            if v.is_null() {
                t.remove(k);
            } else {
                merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
    }
}

fn unescape(token: &str) -> String {
    token.replace("~1", "/").replace("~0", "~")
}

fn split_pointer(path: &str) -> Result<Vec<String>, String> {
    if path.is_empty() {
        return Ok(Vec::new());
    }
    let Some(rest) = path.strip_prefix('/') else {
        return Err(format!("invalid JSON pointer {path:?}"));
    };
    Ok(rest.split('/').map(unescape).collect())
}

fn parent_mut<'a>(doc: &'a mut Value, tokens: &[String]) -> Result<&'a mut Value, String> {
    let mut cur = doc;
    for t in tokens {
        cur = match cur {
            Value::Object(m) => m
                .get_mut(t)
                .ok_or_else(|| format!("path segment {t:?} not found"))?,
            Value::Array(a) => {
                let i: usize = t
                    .parse()
                    .map_err(|_| format!("invalid array index {t:?}"))?;
                a.get_mut(i)
                    .ok_or_else(|| format!("array index {i} out of range"))?
            }
            _ => {
                return Err(format!(
                    "path segment {t:?} is not inside an object or array"
                ));
            }
        };
    }
    Ok(cur)
}

fn get_at(doc: &Value, path: &str) -> Result<Value, String> {
    let tokens = split_pointer(path)?;
    let mut cur = doc;
    for t in &tokens {
        cur = match cur {
            Value::Object(m) => m.get(t).ok_or_else(|| format!("path {path:?} not found"))?,
            Value::Array(a) => {
                let i: usize = t
                    .parse()
                    .map_err(|_| format!("invalid array index {t:?}"))?;
                a.get(i).ok_or_else(|| format!("path {path:?} not found"))?
            }
            _ => return Err(format!("path {path:?} not found")),
        };
    }
    Ok(cur.clone())
}

fn add_at(doc: &mut Value, path: &str, value: Value) -> Result<(), String> {
    let tokens = split_pointer(path)?;
    let Some((last, parents)) = tokens.split_last() else {
        *doc = value;
        return Ok(());
    };
    match parent_mut(doc, parents)? {
        Value::Object(m) => {
            m.insert(last.clone(), value);
        }
        Value::Array(a) => {
            if last == "-" {
                a.push(value);
            } else {
                let i: usize = last
                    .parse()
                    .map_err(|_| format!("invalid array index {last:?}"))?;
                if i > a.len() {
                    return Err(format!("array index {i} out of range"));
                }
                a.insert(i, value);
            }
        }
        _ => return Err(format!("cannot add at {path:?}")),
    }
    Ok(())
}

fn remove_at(doc: &mut Value, path: &str) -> Result<Value, String> {
    let tokens = split_pointer(path)?;
    let Some((last, parents)) = tokens.split_last() else {
        return Err("cannot remove the whole document".into());
    };
    match parent_mut(doc, parents)? {
        Value::Object(m) => m
            .remove(last)
            .ok_or_else(|| format!("path {path:?} not found")),
        Value::Array(a) => {
            let i: usize = last
                .parse()
                .map_err(|_| format!("invalid array index {last:?}"))?;
            if i >= a.len() {
                return Err(format!("array index {i} out of range"));
            }
            Ok(a.remove(i))
        }
        _ => Err(format!("path {path:?} not found")),
    }
}

/// RFC 6902 JSON patch. An error names the failing operation (the server answers 422).
pub fn json_patch(doc: &mut Value, ops: &Value) -> Result<(), String> {
    let Value::Array(ops) = ops else {
        return Err("a JSON patch must be an array of operations".into());
    };
    let mut work = doc.clone();
    for (i, op) in ops.iter().enumerate() {
        let name = op.get("op").and_then(Value::as_str).unwrap_or("");
        let path = op
            .get("path")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("operation {i}: missing path"))?;
        let value = || {
            op.get("value")
                .cloned()
                .ok_or_else(|| format!("operation {i}: missing value"))
        };
        let from = || {
            op.get("from")
                .and_then(Value::as_str)
                .ok_or_else(|| format!("operation {i}: missing from"))
        };
        let result = match name {
            "add" => add_at(&mut work, path, value()?),
            "remove" => remove_at(&mut work, path).map(|_| ()),
            "replace" => {
                let v = value()?;
                remove_at(&mut work, path).and_then(|_| add_at(&mut work, path, v))
            }
            "move" => {
                let f = from()?;
                remove_at(&mut work, f).and_then(|v| add_at(&mut work, path, v))
            }
            "copy" => {
                let f = from()?;
                get_at(&work, f).and_then(|v| add_at(&mut work, path, v))
            }
            "test" => {
                let want = value()?;
                let got = get_at(&work, path)?;
                if got == want {
                    Ok(())
                } else {
                    Err(format!("test failed at {path:?}"))
                }
            }
            other => Err(format!("unknown op {other:?}")),
        };
        result.map_err(|e| format!("operation {i} ({name}): {e}"))?;
    }
    *doc = work;
    Ok(())
}

/// Merge key of a list field in strategic merge patch, for the lists kubectl's builtin schemas
/// mark `patchStrategy: merge` (items without that key fall back to replacing the list).
fn merge_key(field: &str, items: &[Value]) -> Option<&'static str> {
    let has = |k: &str| items.iter().all(|i| i.get(k).is_some());
    let key = match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "env"
        | "volumes"
        | "imagePullSecrets" => "name",
        "volumeMounts" => "mountPath",
        "ownerReferences" => "uid",
        "conditions" | "addresses" => "type",
        "ports" if has("containerPort") => "containerPort",
        "ports" => "port",
        "taints" => "key",
        _ => return None,
    };
    has(key).then_some(key)
}

/// Strategic merge patch as the test API server approximates it: a JSON merge patch that
/// understands `$patch: replace|delete`, `$deleteFromPrimitiveList/…`, ignores
/// `$setElementOrder/…` and `$retainKeys`, merges `metadata.finalizers` as a set and merges
/// the well-known keyed lists (containers, env, ports, conditions, ...) by their merge key.
/// Every other list is replaced, as for `listType: atomic`.
pub fn strategic_merge(target: &mut Value, patch: &Value) {
    let Value::Object(pm) = patch else {
        *target = patch.clone();
        return;
    };
    if pm.get("$patch").and_then(Value::as_str) == Some("replace") {
        let mut p = pm.clone();
        p.remove("$patch");
        *target = Value::Object(p);
        return;
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(t) = target else { return };
    for (k, v) in pm {
        if k.starts_with("$setElementOrder/") || k == "$retainKeys" || k == "$patch" {
            continue;
        }
        if let Some(field) = k.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(Value::Array(list)), Value::Array(del)) = (t.get_mut(field), v) {
                list.retain(|x| !del.contains(x));
            }
            continue;
        }
        if v.is_null() {
            t.remove(k);
            continue;
        }
        if v.get("$patch").and_then(Value::as_str) == Some("delete") {
            t.remove(k);
            continue;
        }
        match (t.get_mut(k), v) {
            (Some(Value::Array(cur)), Value::Array(items)) => {
                if k == "finalizers" {
                    for item in items {
                        if !cur.contains(item) {
                            cur.push(item.clone());
                        }
                    }
                } else if let Some(key) = merge_key(k, items) {
                    for item in items {
                        let id = item.get(key);
                        let pos = cur.iter().position(|c| c.get(key) == id);
                        let delete = item.get("$patch").and_then(Value::as_str) == Some("delete");
                        match (pos, delete) {
                            (Some(p), true) => {
                                cur.remove(p);
                            }
                            (Some(p), false) => strategic_merge(&mut cur[p], item),
                            (None, true) => {}
                            (None, false) => {
                                let mut fresh = Value::Null;
                                strategic_merge(&mut fresh, item);
                                cur.push(fresh);
                            }
                        }
                    }
                } else {
                    *cur = items.clone();
                }
            }
            (Some(cur), v) if cur.is_object() && v.is_object() => strategic_merge(cur, v),
            _ => {
                let mut fresh = Value::Null;
                if v.is_object() {
                    strategic_merge(&mut fresh, v);
                } else {
                    fresh = v.clone();
                }
                t.insert(k.clone(), fresh);
            }
        }
    }
}

/// Remove from `target` every field the manager applied before (`prev`) and no longer
/// applies (`now`): how server-side apply drops fields a manager stops owning.
pub fn remove_unapplied(target: &mut Value, prev: &Value, now: &Value) {
    let (Value::Object(t), Value::Object(p)) = (target, prev) else {
        return;
    };
    for (k, pv) in p {
        match now.get(k) {
            None => {
                t.remove(k);
            }
            Some(nv) => {
                if let Some(tv) = t.get_mut(k)
                    && pv.is_object()
                    && nv.is_object()
                {
                    remove_unapplied(tv, pv, nv);
                }
            }
        }
    }
}

/// Merge an applied configuration: objects merge recursively, everything else (lists
/// included) is replaced. `null` in an applied configuration removes the field.
pub fn apply_merge(target: &mut Value, applied: &Value) {
    merge_patch(target, applied);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch_follows_rfc_7386() {
        let mut doc = json!({"a": {"b": 1, "c": 2}, "l": [1, 2]});
        merge_patch(&mut doc, &json!({"a": {"b": null, "d": 3}, "l": [3]}));
        assert_eq!(doc, json!({"a": {"c": 2, "d": 3}, "l": [3]}));
    }

    #[test]
    fn json_patch_applies_all_ops_or_none() {
        let mut doc = json!({"metadata": {"finalizers": ["a", "b"]}});
        json_patch(
            &mut doc,
            &json!([
                {"op": "test", "path": "/metadata/finalizers/0", "value": "a"},
                {"op": "remove", "path": "/metadata/finalizers/0"},
                {"op": "add", "path": "/metadata/finalizers/-", "value": "c"},
                {"op": "add", "path": "/metadata/labels", "value": {"x~y/z": "1"}},
                {"op": "copy", "from": "/metadata/labels/x~0y~1z", "path": "/n"}
            ]),
        )
        .unwrap();
        assert_eq!(
            doc,
            json!({"metadata": {"finalizers": ["b", "c"], "labels": {"x~y/z": "1"}}, "n": "1"})
        );
        let before = doc.clone();
        let err = json_patch(
            &mut doc,
            &json!([{"op": "remove", "path": "/n"}, {"op": "test", "path": "/n", "value": 1}]),
        );
        assert!(err.is_err());
        assert_eq!(doc, before);
    }

    #[test]
    fn strategic_merge_merges_keyed_lists_and_finalizers() {
        let mut doc = json!({"metadata": {"finalizers": ["a"]},
            "spec": {"ports": [{"port": 80, "name": "http"}, {"port": 443}], "rules": [1, 2]}});
        strategic_merge(
            &mut doc,
            &json!({"$setElementOrder/ports": [{"port": 80}], "metadata": {"finalizers": ["b"]},
                "spec": {"ports": [{"port": 80, "name": "web"}, {"port": 443, "$patch": "delete"}],
                    "rules": [3]}}),
        );
        assert_eq!(
            doc,
            json!({"metadata": {"finalizers": ["a", "b"]},
                "spec": {"ports": [{"port": 80, "name": "web"}], "rules": [3]}})
        );
        strategic_merge(
            &mut doc,
            &json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}}),
        );
        assert_eq!(doc["metadata"]["finalizers"], json!(["b"]));
    }

    #[test]
    fn apply_removes_fields_the_manager_stopped_applying() {
        let mut doc = json!({"metadata": {"labels": {"a": "1", "b": "2", "other": "x"}}});
        let prev = json!({"metadata": {"labels": {"a": "1", "b": "2"}}});
        let now = json!({"metadata": {"labels": {"a": "3"}}});
        remove_unapplied(&mut doc, &prev, &now);
        apply_merge(&mut doc, &now);
        assert_eq!(
            doc,
            json!({"metadata": {"labels": {"a": "3", "other": "x"}}})
        );
    }
}
