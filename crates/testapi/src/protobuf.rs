//! Kubernetes' protobuf wire form, read for the few kinds kubectl's `create <kind>` generators
//! send that way (`create secret`, `create configmap`, `create namespace`): the `k8s\0` magic,
//! a `runtime.Unknown` envelope (type meta, raw bytes), and the object's own message, turned
//! into the JSON the rest of the server reads. Only the fields those generators set are read
//! (object name, generateName, namespace, labels and annotations; the kind's data); anything
//! else is skipped. Other kinds are refused with a message naming `kubectl apply -f`.

use base64::Engine;
use serde_json::{Map, Value, json};

const MAGIC: &[u8] = b"k8s\0";

/// One protobuf field: its number and value.
enum Field<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed,
}

/// The fields of one message, in order.
fn fields(mut buf: &[u8]) -> Result<Vec<(u64, Field<'_>)>, String> {
    let mut out = Vec::new();
    while !buf.is_empty() {
        let key = varint(&mut buf)?;
        let (number, wire) = (key >> 3, key & 7);
        let value = match wire {
            0 => Field::Varint(varint(&mut buf)?),
            1 | 5 => {
                let n = if wire == 1 { 8 } else { 4 };
                if buf.len() < n {
                    return Err("truncated fixed-size field".into());
                }
                buf = &buf[n..];
                Field::Fixed
            }
            2 => {
                let len = usize::try_from(varint(&mut buf)?).map_err(|_| "length too large")?;
                if buf.len() < len {
                    return Err("truncated length-delimited field".into());
                }
                let (v, rest) = buf.split_at(len);
                buf = rest;
                Field::Bytes(v)
            }
            other => return Err(format!("unsupported wire type {other}")),
        };
        out.push((number, value));
    }
    Ok(out)
}

fn varint(buf: &mut &[u8]) -> Result<u64, String> {
    let mut v: u64 = 0;
    for i in 0..10 {
        let Some((&b, rest)) = buf.split_first() else {
            return Err("truncated varint".into());
        };
        *buf = rest;
        v |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err("varint longer than 10 bytes".into())
}

fn text(b: &[u8]) -> Result<String, String> {
    String::from_utf8(b.to_vec()).map_err(|_| "a string field is not UTF-8".to_string())
}

/// A `map<string, string|bytes>` entry: (key, value bytes).
fn entry(b: &[u8]) -> Result<(String, Vec<u8>), String> {
    let (mut k, mut v) = (String::new(), Vec::new());
    for (n, f) in fields(b)? {
        match (n, f) {
            (1, Field::Bytes(x)) => k = text(x)?,
            (2, Field::Bytes(x)) => v = x.to_vec(),
            _ => {}
        }
    }
    Ok((k, v))
}

fn object_meta(b: &[u8]) -> Result<Value, String> {
    let mut meta = Map::new();
    let (mut labels, mut annotations) = (Map::new(), Map::new());
    for (n, f) in fields(b)? {
        let Field::Bytes(x) = f else { continue };
        match n {
            1 => {
                meta.insert("name".into(), json!(text(x)?));
            }
            2 => {
                meta.insert("generateName".into(), json!(text(x)?));
            }
            3 => {
                meta.insert("namespace".into(), json!(text(x)?));
            }
            11 => {
                let (k, v) = entry(x)?;
                labels.insert(k, json!(text(&v)?));
            }
            12 => {
                let (k, v) = entry(x)?;
                annotations.insert(k, json!(text(&v)?));
            }
            _ => {}
        }
    }
    if !labels.is_empty() {
        meta.insert("labels".into(), Value::Object(labels));
    }
    if !annotations.is_empty() {
        meta.insert("annotations".into(), Value::Object(annotations));
    }
    Ok(Value::Object(meta))
}

/// The JSON object of a protobuf-encoded request body.
pub fn decode(body: &[u8]) -> Result<Value, String> {
    let rest = body
        .strip_prefix(MAGIC)
        .ok_or("the body does not start with the k8s protobuf magic")?;
    let (mut api_version, mut kind, mut raw) = (String::new(), String::new(), None);
    for (n, f) in fields(rest)? {
        match (n, f) {
            (1, Field::Bytes(tm)) => {
                for (m, g) in fields(tm)? {
                    match (m, g) {
                        (1, Field::Bytes(x)) => api_version = text(x)?,
                        (2, Field::Bytes(x)) => kind = text(x)?,
                        _ => {}
                    }
                }
            }
            (2, Field::Bytes(x)) => raw = Some(x),
            _ => {}
        }
    }
    let raw = raw.ok_or("the protobuf envelope has no object")?;
    let b64 = |v: &[u8]| json!(base64::engine::general_purpose::STANDARD.encode(v));
    let mut obj = json!({"apiVersion": api_version, "kind": kind});
    match (api_version.as_str(), kind.as_str()) {
        ("v1", "Secret") => {
            let (mut data, mut string_data) = (Map::new(), Map::new());
            for (n, f) in fields(raw)? {
                match (n, f) {
                    (1, Field::Bytes(x)) => obj["metadata"] = object_meta(x)?,
                    (2, Field::Bytes(x)) => {
                        let (k, v) = entry(x)?;
                        data.insert(k, b64(&v));
                    }
                    (3, Field::Bytes(x)) => obj["type"] = json!(text(x)?),
                    (4, Field::Bytes(x)) => {
                        let (k, v) = entry(x)?;
                        string_data.insert(k, json!(text(&v)?));
                    }
                    (5, Field::Varint(v)) => obj["immutable"] = json!(v != 0),
                    _ => {}
                }
            }
            if !data.is_empty() {
                obj["data"] = Value::Object(data);
            }
            if !string_data.is_empty() {
                obj["stringData"] = Value::Object(string_data);
            }
        }
        ("v1", "ConfigMap") => {
            let (mut data, mut binary) = (Map::new(), Map::new());
            for (n, f) in fields(raw)? {
                match (n, f) {
                    (1, Field::Bytes(x)) => obj["metadata"] = object_meta(x)?,
                    (2, Field::Bytes(x)) => {
                        let (k, v) = entry(x)?;
                        data.insert(k, json!(text(&v)?));
                    }
                    (3, Field::Bytes(x)) => {
                        let (k, v) = entry(x)?;
                        binary.insert(k, b64(&v));
                    }
                    (4, Field::Varint(v)) => obj["immutable"] = json!(v != 0),
                    _ => {}
                }
            }
            if !data.is_empty() {
                obj["data"] = Value::Object(data);
            }
            if !binary.is_empty() {
                obj["binaryData"] = Value::Object(binary);
            }
        }
        ("v1", "Namespace") => {
            for (n, f) in fields(raw)? {
                if let (1, Field::Bytes(x)) = (n, f) {
                    obj["metadata"] = object_meta(x)?;
                }
            }
        }
        _ => {
            return Err(format!(
                "the test API server reads protobuf bodies only for v1 Secret, ConfigMap and \
                 Namespace, not {api_version} {kind}: use 'kubectl apply -f' or 'kubectl create -f'"
            ));
        }
    }
    if obj.get("metadata").is_none() {
        obj["metadata"] = json!({});
    }
    Ok(obj)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(n: u64, bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        put_varint(&mut out, (n << 3) | 2);
        put_varint(&mut out, bytes.len() as u64);
        out.extend_from_slice(bytes);
        out
    }

    fn put_varint(out: &mut Vec<u8>, mut v: u64) {
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(b);
                return;
            }
            out.push(b | 0x80);
        }
    }

    fn map_entry(n: u64, k: &str, v: &[u8]) -> Vec<u8> {
        field(n, &[field(1, k.as_bytes()), field(2, v)].concat())
    }

    fn envelope(api_version: &str, kind: &str, raw: &[u8]) -> Vec<u8> {
        let tm = [field(1, api_version.as_bytes()), field(2, kind.as_bytes())].concat();
        [MAGIC.to_vec(), field(1, &tm), field(2, raw)].concat()
    }

    #[test]
    fn a_tls_secret_as_kubectl_create_sends_it_becomes_its_json_object() {
        let meta = [
            field(1, b"shop-tls"),
            field(3, b"team-a"),
            map_entry(11, "app", b"shop"),
        ]
        .concat();
        let raw = [
            field(1, &meta),
            map_entry(2, "tls.crt", b"CERT"),
            map_entry(2, "tls.key", b"\x00KEY"),
            field(3, b"kubernetes.io/tls"),
        ]
        .concat();
        let v = decode(&envelope("v1", "Secret", &raw)).unwrap();
        assert_eq!(v["kind"], "Secret");
        assert_eq!(v["metadata"]["name"], "shop-tls");
        assert_eq!(v["metadata"]["namespace"], "team-a");
        assert_eq!(v["metadata"]["labels"]["app"], "shop");
        assert_eq!(v["type"], "kubernetes.io/tls");
        assert_eq!(v["data"]["tls.crt"], "Q0VSVA==");
        assert_eq!(v["data"]["tls.key"], "AEtFWQ==");
    }

    #[test]
    fn other_kinds_and_broken_bodies_are_refused_with_a_reason_never_a_panic() {
        let err = decode(&envelope("apps/v1", "Deployment", &[])).unwrap_err();
        assert!(err.contains("kubectl apply -f"), "{err}");
        assert!(decode(b"{}").is_err());
        let truncated = &envelope("v1", "Secret", &field(1, &field(1, b"x")))[..12];
        assert!(decode(truncated).is_err());
        let mut long_varint = MAGIC.to_vec();
        long_varint.extend([0xff; 12]);
        assert!(decode(&long_varint).is_err());
    }
}
