//! HTTP: routing Kubernetes REST paths to the store, discovery, OpenAPI, Tables, watch streams
//! and the audit log.

use crate::resources::{self, ResourceDef};
use crate::selector::{FieldSelector, LabelSelector};
use crate::store::{
    ApiError, AuditEntry, Filter, PatchKind, Store, WatchStart, WriteOptions, bookmark,
};
use crate::table;
use axum::body::{Body, Bytes};
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::SinkExt;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, watch};

/// Largest request body accepted.
const MAX_BODY: usize = 16 << 20;
/// Default watch duration when the client gives no `timeoutSeconds`.
const DEFAULT_WATCH: Duration = Duration::from_secs(1800);
/// How often a watch with `allowWatchBookmarks` gets a BOOKMARK.
const BOOKMARK_EVERY: Duration = Duration::from_secs(5);

/// Shared by every request.
pub struct App {
    pub store: Arc<Store>,
    pub shutdown: watch::Receiver<bool>,
}

fn json_response(code: u16, body: &Value) -> Response {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::to_vec(body).unwrap_or_default(),
    )
        .into_response()
}

fn error_response(e: &ApiError) -> Response {
    json_response(e.code, &e.status())
}

/// What a path names.
struct Target {
    def: ResourceDef,
    /// `None`: all namespaces (or a cluster-scoped resource).
    namespace: Option<String>,
    name: Option<String>,
    subresource: Option<String>,
}

fn not_found_path() -> ApiError {
    ApiError::plain_not_found("the server could not find the requested resource")
}

fn resolve(store: &Store, group: &str, version: &str, rest: &[&str]) -> Result<Target, ApiError> {
    let find = |plural: &str| {
        store
            .find(group, version, plural)
            .ok_or_else(not_found_path)
    };
    let target =
        |def: ResourceDef, namespace: Option<&str>, tail: &[&str]| -> Result<Target, ApiError> {
            let (name, sub) = match tail {
                [] => (None, None),
                [n] => (Some(n.to_string()), None),
                [n, s] => (Some(n.to_string()), Some(s.to_string())),
                _ => return Err(not_found_path()),
            };
            Ok(Target {
                def,
                namespace: namespace.map(String::from),
                name,
                subresource: sub,
            })
        };
    match rest {
        ["namespaces", ns, plural, tail @ ..]
            if !(group.is_empty()
                && tail.is_empty()
                && matches!(*plural, "status" | "finalize")) =>
        {
            let def = find(plural)?;
            if !def.namespaced {
                return Err(not_found_path());
            }
            target(def, Some(ns), tail)
        }
        [plural, tail @ ..] => {
            let def = find(plural)?;
            if def.namespaced && !tail.is_empty() {
                return Err(not_found_path());
            }
            target(def, None, tail)
        }
        [] => Err(not_found_path()),
    }
}

fn q_bool(q: &HashMap<String, String>, k: &str) -> bool {
    matches!(q.get(k).map(String::as_str), Some("true" | "1"))
}

fn selectors(q: &HashMap<String, String>) -> Result<(LabelSelector, FieldSelector), ApiError> {
    let labels = LabelSelector::parse(q.get("labelSelector").map_or("", String::as_str))
        .map_err(|e| ApiError::bad_request(format!("unable to parse requirement: {e}")))?;
    let fields = FieldSelector::parse(q.get("fieldSelector").map_or("", String::as_str))
        .map_err(|e| ApiError::bad_request(format!("invalid field selector: {e}")))?;
    Ok((labels, fields))
}

fn write_options(q: &HashMap<String, String>) -> WriteOptions {
    WriteOptions {
        dry_run: q.get("dryRun").is_some_and(|v| v == "All"),
        field_manager: q.get("fieldManager").cloned(),
        default_manager: String::new(),
        force: q_bool(q, "force"),
    }
}

fn parse_body(bytes: &Bytes, yaml_ok: bool) -> Result<Value, ApiError> {
    if bytes.is_empty() {
        return Err(ApiError::bad_request("the request body is empty"));
    }
    match serde_json::from_slice::<Value>(bytes) {
        Ok(v) => Ok(v),
        Err(e) if !yaml_ok => Err(ApiError::bad_request(format!("invalid JSON body: {e}"))),
        Err(_) => {
            let text = std::str::from_utf8(bytes)
                .map_err(|_| ApiError::bad_request("the request body is not UTF-8"))?;
            serde_saphyr::from_str::<Value>(text)
                .map_err(|e| ApiError::bad_request(format!("invalid YAML body: {e}")))
        }
    }
}

fn is_custom(def: &ResourceDef) -> bool {
    !resources::builtins().iter().any(|b| b.group == def.group)
}

/// Serve one request.
pub async fn handle(State(app): State<Arc<App>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let bytes = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(_) => {
            return error_response(&ApiError::bad_request(
                "request body too large or unreadable",
            ));
        }
    };
    let query: HashMap<String, String> = Query::try_from_uri(&parts.uri)
        .map(|Query(q)| q)
        .unwrap_or_default();
    let path = parts.uri.path().trim_end_matches('/').to_string();
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let user_agent = parts
        .headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let (group, version, rest): (&str, &str, &[&str]) = match segments.as_slice() {
        ["api", v, rest @ ..] if !rest.is_empty() => ("", v, rest),
        ["apis", g, v, rest @ ..] if !rest.is_empty() => (g, v, rest),
        _ => {
            let (code, resp) = non_resource(&app, &parts.method, &segments, &query);
            app.store.record(AuditEntry {
                verb: parts.method.as_str().to_lowercase(),
                non_resource_url: if path.is_empty() {
                    "/".into()
                } else {
                    path.clone()
                },
                user_agent,
                code,
                ..AuditEntry::default()
            });
            return resp;
        }
    };
    let target = match resolve(&app.store, group, version, rest) {
        Ok(t) => t,
        Err(e) => {
            app.store.record(AuditEntry {
                verb: parts.method.as_str().to_lowercase(),
                group: group.into(),
                version: version.into(),
                resource: rest.first().copied().unwrap_or("").into(),
                non_resource_url: String::new(),
                user_agent,
                code: e.code,
                ..AuditEntry::default()
            });
            return error_response(&e);
        }
    };
    let verb = match (&parts.method, &target.name) {
        (&Method::GET, Some(_)) => "get",
        (&Method::GET, None) if q_bool(&query, "watch") => "watch",
        (&Method::GET, None) => "list",
        (&Method::POST, _) => "create",
        (&Method::PUT, _) => "update",
        (&Method::PATCH, _) => "patch",
        (&Method::DELETE, Some(_)) => "delete",
        (&Method::DELETE, None) => "deletecollection",
        _ => "unknown",
    };
    let mut entry = AuditEntry {
        verb: verb.into(),
        group: group.into(),
        version: version.into(),
        resource: target.def.plural.clone(),
        subresource: target.subresource.clone().unwrap_or_default(),
        namespace: target.namespace.clone().unwrap_or_default(),
        name: target.name.clone().unwrap_or_default(),
        non_resource_url: String::new(),
        user_agent,
        code: 0,
    };
    let (plural, ns, name) = (
        target.def.plural.as_str(),
        target.namespace.as_deref().unwrap_or(""),
        target.name.as_deref().unwrap_or(""),
    );
    let injected = (verb == "get" && app.store.get_fails(plural, ns, name))
        || (matches!(verb, "create" | "update" | "patch")
            && app.store.holder_write_fails(plural, ns, name, &bytes));
    let result = if injected {
        Err(ApiError::injected("injected failure (test)"))
    } else {
        resource_request(&app, verb, &target, &query, &parts.headers, &bytes)
    };
    let response = match result {
        Ok(Reply::Json(code, v)) => {
            entry.code = code;
            json_response(code, &v)
        }
        Ok(Reply::Watch(resp)) => {
            entry.code = 200;
            resp
        }
        Err(e) => {
            entry.code = e.code;
            error_response(&e)
        }
    };
    app.store.record(entry);
    response
}

/// The representation a client asked for in its Accept header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Full,
    /// `as=Table` (kubectl get).
    Table,
    /// `as=PartialObjectMetadata` (metadata-only watchers).
    Metadata,
}

fn partial_metadata(obj: &Value) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": obj["metadata"],
    })
}

impl Shape {
    fn object(self, def: &ResourceDef, obj: Value) -> Value {
        match self {
            Self::Full => obj,
            Self::Metadata => partial_metadata(&obj),
            Self::Table => {
                let rv = obj["metadata"]["resourceVersion"]
                    .as_str()
                    .and_then(|r| r.parse().ok())
                    .unwrap_or(0);
                table::table(def, &[obj], rv)
            }
        }
    }

    fn list(self, def: &ResourceDef, items: Vec<Value>, rv: u64) -> Value {
        let meta = json!({"resourceVersion": rv.to_string()});
        match self {
            Self::Table => table::table(def, &items, rv),
            Self::Metadata => json!({
                "kind": "PartialObjectMetadataList",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": meta,
                "items": items.iter().map(partial_metadata).collect::<Vec<_>>(),
            }),
            Self::Full => json!({
                "kind": format!("{}List", def.kind),
                "apiVersion": def.api_version(),
                "metadata": meta,
                "items": items,
            }),
        }
    }
}

enum Reply {
    Json(u16, Value),
    Watch(Response),
}

fn resource_request(
    app: &Arc<App>,
    verb: &str,
    t: &Target,
    q: &HashMap<String, String>,
    headers: &HeaderMap,
    bytes: &Bytes,
) -> Result<Reply, ApiError> {
    let store = &app.store;
    let def = &t.def;
    let ns = t.namespace.clone().unwrap_or_default();
    let name = t.name.clone().unwrap_or_default();
    let status = match t.subresource.as_deref() {
        None => false,
        Some("status") if def.status_subresource => true,
        Some(_) => return Err(not_found_path()),
    };
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let shape = if accept.contains("as=Table") {
        Shape::Table
    } else if accept.contains("as=PartialObjectMetadata") {
        Shape::Metadata
    } else {
        Shape::Full
    };
    let mut opts = write_options(q);
    // Like the real server: non-apply writes without a fieldManager are recorded under a
    // manager named after the client's user agent.
    let ua = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    opts.default_manager = ua.split('/').next().unwrap_or("").trim().to_string();
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if content_type.contains("cbor") {
        return Err(ApiError::unsupported_media_type(format!(
            "the test API server reads JSON, YAML and (for a few kinds) protobuf bodies, not \
             {content_type}"
        )));
    }
    // kubectl's `create secret|configmap|namespace` generators send protobuf.
    let protobuf_body;
    let bytes = if content_type.contains("protobuf") && !bytes.is_empty() {
        let v = crate::protobuf::decode(bytes).map_err(ApiError::unsupported_media_type)?;
        protobuf_body = Bytes::from(serde_json::to_vec(&v).unwrap_or_default());
        &protobuf_body
    } else {
        bytes
    };
    match verb {
        "get" => {
            let obj = store.get(def, &ns, &name)?;
            Ok(Reply::Json(200, shape.object(def, obj)))
        }
        "list" => {
            let (labels, fields) = selectors(q)?;
            let filter = Filter {
                def: def.clone(),
                namespace: t.namespace.clone(),
                labels,
                fields,
            };
            let (items, rv) = store.list(&filter);
            Ok(Reply::Json(200, shape.list(def, items, rv)))
        }
        "watch" => {
            let (labels, fields) = selectors(q)?;
            let filter = Filter {
                def: def.clone(),
                namespace: t.namespace.clone(),
                labels,
                fields,
            };
            Ok(Reply::Watch(watch_response(app, filter, q, shape)?))
        }
        "create" => {
            if t.name.is_some() {
                return Err(ApiError::method_not_allowed(format!(
                    "POST is not supported on a named {}",
                    def.kind
                )));
            }
            if def.namespaced && t.namespace.is_none() {
                return Err(ApiError::method_not_allowed(
                    "create needs a namespace in the path for namespaced resources",
                ));
            }
            let body = parse_body(bytes, false)?;
            let obj = store.create(def, &ns, body, &opts)?;
            Ok(Reply::Json(201, obj))
        }
        "update" => {
            if t.name.is_none() {
                return Err(ApiError::method_not_allowed("PUT needs an object name"));
            }
            let body = parse_body(bytes, false)?;
            let obj = store.update(def, &ns, &name, body, status, &opts)?;
            Ok(Reply::Json(200, obj))
        }
        "patch" => {
            if t.name.is_none() {
                return Err(ApiError::method_not_allowed("PATCH needs an object name"));
            }
            let ct = headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            let media = ct.split(';').next().unwrap_or("").trim();
            let kind = match media {
                "application/json-patch+json" => PatchKind::Json,
                "application/merge-patch+json" => PatchKind::Merge,
                "application/strategic-merge-patch+json" if !is_custom(def) => PatchKind::Strategic,
                "application/apply-patch+yaml" => PatchKind::Apply,
                other => {
                    return Err(ApiError::unsupported_media_type(format!(
                        "the body of the request was in an unknown format - accepted media \
                         types include: application/json-patch+json, \
                         application/merge-patch+json, application/apply-patch+yaml{} (got {other:?})",
                        if is_custom(def) {
                            ""
                        } else {
                            ", application/strategic-merge-patch+json"
                        }
                    )));
                }
            };
            let body = parse_body(bytes, kind == PatchKind::Apply)?;
            let (obj, created) = store.patch(def, &ns, &name, kind, &body, status, &opts)?;
            Ok(Reply::Json(if created { 201 } else { 200 }, obj))
        }
        "delete" => {
            let mut options = if bytes.is_empty() {
                json!({})
            } else {
                parse_body(bytes, false)?
            };
            if let Some(dry) = options.get("dryRun").and_then(Value::as_array)
                && dry.iter().any(|d| d == "All")
            {
                options["dryRun"] = Value::Null;
                let opts = WriteOptions {
                    dry_run: true,
                    ..opts
                };
                let (obj, _) = store.delete(def, &ns, &name, &options, &opts)?;
                return Ok(Reply::Json(200, obj));
            }
            let (obj, gone) = store.delete(def, &ns, &name, &options, &opts)?;
            Ok(Reply::Json(if gone { 200 } else { 202 }, obj))
        }
        "deletecollection" => {
            let (labels, fields) = selectors(q)?;
            let filter = Filter {
                def: def.clone(),
                namespace: t.namespace.clone(),
                labels,
                fields,
            };
            let items = store.delete_collection(&filter, &opts);
            Ok(Reply::Json(
                200,
                json!({
                    "kind": format!("{}List", def.kind),
                    "apiVersion": def.api_version(),
                    "metadata": {"resourceVersion": store.resource_version().to_string()},
                    "items": items,
                }),
            ))
        }
        _ => Err(ApiError::method_not_allowed("method not allowed")),
    }
}

fn line(v: &Value) -> Result<Bytes, Infallible> {
    let mut bytes = serde_json::to_vec(v).unwrap_or_default();
    bytes.push(b'\n');
    Ok(Bytes::from(bytes))
}

fn watch_response(
    app: &Arc<App>,
    filter: Filter,
    q: &HashMap<String, String>,
    shape: Shape,
) -> Result<Response, ApiError> {
    let rv = q.get("resourceVersion").cloned().unwrap_or_default();
    let initial = q_bool(q, "sendInitialEvents");
    let bookmarks = q_bool(q, "allowWatchBookmarks");
    let timeout = q
        .get("timeoutSeconds")
        .and_then(|s| s.parse::<u64>().ok())
        .map_or(DEFAULT_WATCH, |s| Duration::from_secs(s.min(86_400)));
    let (mut tx, rx) = futures::channel::mpsc::channel::<Result<Bytes, Infallible>>(64);
    let start = app.store.watch(&filter, &rv, initial);
    // Too old a version is reported in the stream (HTTP 200), like the real server; other
    // problems (a malformed version) are answered before streaming.
    if let Err(e) = &start
        && e.code != 410
    {
        return Err(e.clone());
    }
    let mut shutdown = app.shutdown.clone();
    tokio::spawn(async move {
        let start = match start {
            Ok(s) => s,
            Err(e) => {
                let _ = tx
                    .send(line(&json!({"type": "ERROR", "object": e.status()})))
                    .await;
                return;
            }
        };
        let shape = |mut ev: Value| {
            if ev["type"] != "BOOKMARK" && ev["type"] != "ERROR" {
                let obj = ev["object"].take();
                ev["object"] = shape.object(&filter.def, obj);
            }
            ev
        };
        let WatchStart { backlog, live, rv } = start;
        for ev in backlog {
            if tx.send(line(&shape(ev))).await.is_err() {
                return;
            }
        }
        let mut live = live;
        let mut seen = rv;
        let deadline = tokio::time::Instant::now() + timeout;
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut last_bookmark = tokio::time::Instant::now();
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => break,
                _ = shutdown.changed() => break,
                r = live.recv() => match r {
                    Ok(change) => {
                        if change.rv <= seen {
                            continue;
                        }
                        seen = change.rv;
                        if let Some(ev) = filter.event_for(&change)
                            && tx.send(line(&shape(ev))).await.is_err()
                        {
                            break;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        let e = ApiError::gone("the watch fell behind; list again");
                        let _ = tx.send(line(&json!({"type": "ERROR", "object": e.status()}))).await;
                        break;
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                },
                _ = tick.tick() => {
                    if tx.is_closed() {
                        break;
                    }
                    if bookmarks && last_bookmark.elapsed() >= BOOKMARK_EVERY {
                        last_bookmark = tokio::time::Instant::now();
                        if tx.send(line(&bookmark(&filter.def, seen, false))).await.is_err() {
                            break;
                        }
                    }
                }
            }
        }
    });
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(rx),
    )
        .into_response())
}

fn version_doc() -> Value {
    json!({
        "major": "1",
        "minor": "32",
        "gitVersion": "v1.32.0-clb-ingress-testapi",
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2025-01-01T00:00:00Z",
        "goVersion": "go1.23.0",
        "compiler": "gc",
        "platform": "linux/amd64",
    })
}

fn non_resource(
    app: &Arc<App>,
    method: &Method,
    segments: &[&str],
    query: &HashMap<String, String>,
) -> (u16, Response) {
    let store = &app.store;
    let defs = store.defs();
    let ok = |v: Value| (200, json_response(200, &v));
    let err = |e: ApiError| (e.code, error_response(&e));
    match (method, segments) {
        (&Method::GET, ["version"]) => ok(version_doc()),
        (&Method::GET, ["healthz" | "livez" | "readyz"]) => (200, "ok".into_response()),
        (&Method::GET, ["api"]) => ok(json!({
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}],
        })),
        (&Method::GET, ["apis"]) => ok(resources::group_list(&defs)),
        (&Method::GET, ["api", v]) => match resources::resource_list(&defs, "", v) {
            Some(doc) => ok(doc),
            None => err(not_found_path()),
        },
        (&Method::GET, ["apis", g]) => match resources::group_doc(&defs, g) {
            Some(doc) => ok(doc),
            None => err(not_found_path()),
        },
        (&Method::GET, ["apis", g, v]) => match resources::resource_list(&defs, g, v) {
            Some(doc) => ok(doc),
            None => err(not_found_path()),
        },
        (&Method::GET, ["openapi", "v3"]) => {
            ok(resources::openapi_index(&defs, store.schema_generation()))
        }
        (&Method::GET, ["openapi", "v3", "api", v]) => match resources::openapi_doc(&defs, "", v) {
            Some(doc) => ok(doc),
            None => err(not_found_path()),
        },
        (&Method::GET, ["openapi", "v3", "apis", g, v]) => {
            match resources::openapi_doc(&defs, g, v) {
                Some(doc) => ok(doc),
                None => err(not_found_path()),
            }
        }
        (&Method::GET, ["_testapi", "audit"]) => {
            let entries = store.audit();
            let entries: Vec<&AuditEntry> = match query.get("userAgent") {
                Some(ua) => entries
                    .iter()
                    .filter(|e| e.user_agent.contains(ua.as_str()))
                    .collect(),
                None => entries.iter().collect(),
            };
            ok(serde_json::to_value(entries).unwrap_or(Value::Null))
        }
        (&Method::DELETE, ["_testapi", "audit"]) => {
            store.clear_audit();
            ok(json!({"kind": "Status", "apiVersion": "v1", "status": "Success"}))
        }
        (&Method::GET, _) => err(not_found_path()),
        _ => err(ApiError::method_not_allowed(
            "method not allowed on this path",
        )),
    }
}
