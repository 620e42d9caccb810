//! The object store: objects as JSON keyed by (group, resource, namespace, name), one global
//! resourceVersion, a bounded change history for watches, finalizer-aware deletion, and the
//! audit log of requests.

use crate::kinds::{self, Allocator};
use crate::patch;
use crate::resources::{self, ResourceDef};
use crate::selector::{FieldSelector, LabelSelector};
use serde::Serialize;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::broadcast;

/// How many changes are kept by default for watches that resume from a resourceVersion;
/// older versions get `410 Gone` (`Expired`).
pub const DEFAULT_HISTORY: usize = 10_000;

/// The current time as the API server writes timestamps (RFC 3339, whole seconds, UTC).
pub fn now_rfc3339() -> String {
    let now = jiff::Timestamp::now();
    jiff::Timestamp::from_second(now.as_second())
        .unwrap_or(now)
        .to_string()
}

/// A Kubernetes API error, answered as a `kind: Status` object.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    pub details: Value,
}

impl ApiError {
    fn with(code: u16, reason: &'static str, message: String) -> Self {
        Self {
            code,
            reason,
            message,
            details: Value::Null,
        }
    }

    fn about(mut self, def: &ResourceDef, name: &str) -> Self {
        self.details = json!({"name": name, "group": def.group, "kind": def.plural});
        self
    }

    /// A 500, as an overloaded or failing API server answers (test fault injection).
    pub fn injected(message: impl Into<String>) -> Self {
        Self::with(500, "InternalError", message.into())
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::with(400, "BadRequest", message.into())
    }

    pub fn not_found(def: &ResourceDef, name: &str) -> Self {
        Self::with(
            404,
            "NotFound",
            format!("{} \"{name}\" not found", def.qualified()),
        )
        .about(def, name)
    }

    pub fn plain_not_found(message: impl Into<String>) -> Self {
        Self::with(404, "NotFound", message.into())
    }

    pub fn already_exists(def: &ResourceDef, name: &str) -> Self {
        Self::with(
            409,
            "AlreadyExists",
            format!("{} \"{name}\" already exists", def.qualified()),
        )
        .about(def, name)
    }

    pub fn conflict(def: &ResourceDef, name: &str) -> Self {
        Self::with(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; \
                 please apply your changes to the latest version and try again",
                def.qualified()
            ),
        )
        .about(def, name)
    }

    pub fn invalid(def: &ResourceDef, name: &str, why: &str) -> Self {
        Self::with(
            422,
            "Invalid",
            format!("{} \"{name}\" is invalid: {why}", def.kind),
        )
        .about(def, name)
    }

    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        Self::with(405, "MethodNotAllowed", message.into())
    }

    /// Server-side apply conflicts: `(field, manager)` pairs.
    pub fn apply_conflict(def: &ResourceDef, name: &str, conflicts: &[(String, String)]) -> Self {
        let list: Vec<String> = conflicts
            .iter()
            .map(|(f, m)| format!("conflict with \"{m}\": {f}"))
            .collect();
        let causes: Vec<Value> = conflicts
            .iter()
            .map(|(f, m)| {
                json!({"reason": "FieldManagerConflict",
                    "message": format!("conflict with \"{m}\""), "field": f})
            })
            .collect();
        let mut e = Self::with(
            409,
            "Conflict",
            format!(
                "Apply failed with {} conflict{}: {}",
                conflicts.len(),
                if conflicts.len() == 1 { "" } else { "s" },
                list.join(", ")
            ),
        )
        .about(def, name);
        e.details["causes"] = json!(causes);
        e
    }

    pub fn unsupported_media_type(message: impl Into<String>) -> Self {
        Self::with(415, "UnsupportedMediaType", message.into())
    }

    pub fn gone(message: impl Into<String>) -> Self {
        Self::with(410, "Expired", message.into())
    }

    /// The `Status` body.
    pub fn status(&self) -> Value {
        let mut s = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if !self.details.is_null() {
            s["details"] = self.details.clone();
        }
        s
    }
}

/// Result of a store operation.
pub type ApiResult<T> = Result<T, ApiError>;

/// Where an object lives.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key {
    pub group: String,
    pub plural: String,
    pub namespace: String,
    pub name: String,
}

impl Key {
    fn of(def: &ResourceDef, namespace: &str, name: &str) -> Self {
        Self {
            group: def.storage_group.clone(),
            plural: def.storage_plural.clone(),
            namespace: if def.namespaced {
                namespace.to_string()
            } else {
                String::new()
            },
            name: name.to_string(),
        }
    }
}

/// What happened to an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeType {
    Added,
    Modified,
    Deleted,
}

impl ChangeType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Added => "ADDED",
            Self::Modified => "MODIFIED",
            Self::Deleted => "DELETED",
        }
    }
}

/// One change, as watches see it (stored forms).
#[derive(Debug)]
pub struct Change {
    pub rv: u64,
    pub key: Key,
    pub ty: ChangeType,
    pub old: Option<Value>,
    pub object: Value,
}

/// One request, for comparing what clients did with the RBAC they are granted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditEntry {
    /// Kubernetes verb (`get`, `list`, `watch`, `create`, `update`, `patch`, `delete`,
    /// `deletecollection`); for non-resource URLs the lower-case HTTP method.
    pub verb: String,
    pub group: String,
    pub version: String,
    pub resource: String,
    pub subresource: String,
    pub namespace: String,
    pub name: String,
    /// Set for requests that are not about a resource (`/version`, `/apis`, `/openapi/v3`).
    pub non_resource_url: String,
    pub user_agent: String,
    /// HTTP status code answered (for watches: the code the stream started with).
    pub code: u16,
}

/// Which objects a list or watch is about.
#[derive(Debug, Clone)]
pub struct Filter {
    pub def: ResourceDef,
    pub namespace: Option<String>,
    pub labels: LabelSelector,
    pub fields: FieldSelector,
}

impl Filter {
    fn covers(&self, key: &Key) -> bool {
        key.group == self.def.storage_group
            && key.plural == self.def.storage_plural
            && self
                .namespace
                .as_ref()
                .is_none_or(|ns| &key.namespace == ns)
    }

    /// The client's view of a stored object, if it passes the selectors.
    fn view_if_matches(&self, stored: &Value) -> Option<Value> {
        let view = kinds::to_view(&self.def, stored);
        (self.labels.matches(&view) && self.fields.matches(&view)).then_some(view)
    }

    /// The watch event a change means for this filter, if any (objects moving into or out of
    /// the selection are ADDED or DELETED, as on the real server).
    pub fn event_for(&self, change: &Change) -> Option<Value> {
        if !self.covers(&change.key) {
            return None;
        }
        let now = self.view_if_matches(&change.object);
        let before = change.old.as_ref().and_then(|o| self.view_if_matches(o));
        let (ty, obj) = match (change.ty, before.is_some(), now) {
            (ChangeType::Deleted, true, _) => {
                ("DELETED", kinds::to_view(&self.def, &change.object))
            }
            (ChangeType::Deleted, false, Some(v)) => ("DELETED", v),
            (ChangeType::Deleted, false, None) => return None,
            (ChangeType::Added, _, Some(v)) => ("ADDED", v),
            (ChangeType::Modified, true, Some(v)) => ("MODIFIED", v),
            (ChangeType::Modified, false, Some(v)) => ("ADDED", v),
            (ChangeType::Modified, true, None) => {
                ("DELETED", kinds::to_view(&self.def, &change.object))
            }
            _ => return None,
        };
        Some(json!({"type": ty, "object": obj}))
    }
}

/// What a watch starts with.
pub struct WatchStart {
    /// Events to send first (initial ADDED objects or history after the requested version).
    pub backlog: Vec<Value>,
    /// Live changes after the backlog.
    pub live: broadcast::Receiver<Arc<Change>>,
    /// The resourceVersion the watch is at after the backlog.
    pub rv: u64,
}

/// How a PATCH body is to be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchKind {
    Json,
    Merge,
    Strategic,
    Apply,
}

/// Options of a write request.
#[derive(Debug, Clone, Default)]
pub struct WriteOptions {
    pub dry_run: bool,
    pub field_manager: Option<String>,
    /// Manager recorded for non-apply writes without `fieldManager` (from the user agent).
    pub default_manager: String,
    pub force: bool,
}

struct State {
    rv: u64,
    objects: BTreeMap<Key, Value>,
    history: VecDeque<Arc<Change>>,
    /// Highest resourceVersion no longer in `history`.
    compacted: u64,
    history_limit: usize,
    applied: HashMap<(Key, String, bool), Value>,
    /// Field ownership for server-side apply conflicts: leaf JSON pointer -> manager.
    owners: HashMap<Key, BTreeMap<String, String>>,
    alloc: Allocator,
    builtins: Vec<ResourceDef>,
    custom: Vec<ResourceDef>,
    audit: Vec<AuditEntry>,
    /// (resource plural, namespace, name) whose `get` answers 500 (test fault injection).
    failing_gets: std::collections::BTreeSet<(String, String, String)>,
    /// (resource plural, namespace, name, holder): writes whose body has this
    /// `spec.holderIdentity` answer 500 (a Lease holder cut off from the API server).
    failing_holder_writes: std::collections::BTreeSet<(String, String, String, String)>,
    /// Changes whenever the set of served resources changes (OpenAPI hash).
    schema_generation: u64,
}

/// The shared store.
pub struct Store {
    state: Mutex<State>,
    tx: broadcast::Sender<Arc<Change>>,
}

fn random_suffix() -> String {
    use rand::Rng;
    const CHARS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut rng = rand::rng();
    (0..5)
        .map(|_| CHARS[rng.random_range(0..CHARS.len())] as char)
        .collect()
}

fn valid_name(name: &str, label_only: bool) -> bool {
    let ok_chars = name.chars().all(|c| {
        c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || (c == '.' && !label_only)
    });
    let max = if label_only { 63 } else { 253 };
    !name.is_empty()
        && name.len() <= max
        && ok_chars
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
}

fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    obj.get("metadata")?.get(field)?.as_str()
}

fn finalizers(obj: &Value) -> Vec<Value> {
    obj.pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

/// Everything but metadata and status (what a generation bump is about).
fn spec_part(obj: &Value) -> Value {
    let mut o = obj.clone();
    if let Value::Object(m) = &mut o {
        m.remove("metadata");
        m.remove("status");
        m.remove("apiVersion");
        m.remove("kind");
    }
    o
}

impl Store {
    /// A store with the built-in kinds and the usual namespaces, keeping `history` changes
    /// for watches that resume from a resourceVersion (at least 1).
    pub fn new(history: usize) -> Arc<Self> {
        let history = history.clamp(1, 1_000_000);
        let (tx, _) = broadcast::channel(history);
        let store = Arc::new(Self {
            state: Mutex::new(State {
                rv: 0,
                objects: BTreeMap::new(),
                history: VecDeque::new(),
                compacted: 0,
                history_limit: history,
                applied: HashMap::new(),
                owners: HashMap::new(),
                alloc: Allocator::default(),
                builtins: resources::builtins(),
                custom: Vec::new(),
                audit: Vec::new(),
                failing_gets: Default::default(),
                failing_holder_writes: Default::default(),
                schema_generation: 1,
            }),
            tx,
        });
        if let Some(ns) = store.find("", "v1", "namespaces") {
            for name in ["default", "kube-system", "kube-public", "kube-node-lease"] {
                let body =
                    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
                // The store is empty and the names valid: creation cannot fail.
                let _ = store.create(&ns, "", body, &WriteOptions::default());
            }
        }
        store
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock would be a bug; keep serving with the data as is.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// All served resources (built-in, then custom).
    pub fn defs(&self) -> Vec<ResourceDef> {
        let st = self.lock();
        st.builtins
            .iter()
            .chain(st.custom.iter())
            .cloned()
            .collect()
    }

    /// Changes when the served resources change.
    pub fn schema_generation(&self) -> u64 {
        self.lock().schema_generation
    }

    /// The resource served at `group/version/plural`.
    pub fn find(&self, group: &str, version: &str, plural: &str) -> Option<ResourceDef> {
        let st = self.lock();
        st.builtins
            .iter()
            .chain(st.custom.iter())
            .find(|d| d.group == group && d.version == version && d.plural == plural)
            .cloned()
    }

    /// The current resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.lock().rv
    }

    /// Record a request.
    pub fn record(&self, entry: AuditEntry) {
        self.lock().audit.push(entry);
    }

    /// Every request so far.
    pub fn audit(&self) -> Vec<AuditEntry> {
        self.lock().audit.clone()
    }

    /// Make `get` of this object answer 500 (`on`), or answer normally again.
    pub fn fail_gets(&self, plural: &str, namespace: &str, name: &str, on: bool) {
        let key = (plural.to_string(), namespace.to_string(), name.to_string());
        let mut inner = self.lock();
        if on {
            inner.failing_gets.insert(key);
        } else {
            inner.failing_gets.remove(&key);
        }
    }

    /// Make writes to this object that carry `spec.holderIdentity: holder` answer 500
    /// (`on`), or answer normally again.
    pub fn fail_holder_writes(
        &self,
        plural: &str,
        namespace: &str,
        name: &str,
        holder: &str,
        on: bool,
    ) {
        let key = (
            plural.to_string(),
            namespace.to_string(),
            name.to_string(),
            holder.to_string(),
        );
        let mut inner = self.lock();
        if on {
            inner.failing_holder_writes.insert(key);
        } else {
            inner.failing_holder_writes.remove(&key);
        }
    }

    /// Does a write of `body` to this object fail by injection?
    pub fn holder_write_fails(
        &self,
        plural: &str,
        namespace: &str,
        name: &str,
        body: &[u8],
    ) -> bool {
        let inner = self.lock();
        if inner.failing_holder_writes.is_empty() {
            return false;
        }
        let Some(holder) = serde_json::from_slice::<serde_json::Value>(body)
            .ok()
            .and_then(|v| v["spec"]["holderIdentity"].as_str().map(str::to_string))
        else {
            return false;
        };
        inner.failing_holder_writes.contains(&(
            plural.to_string(),
            namespace.to_string(),
            name.to_string(),
            holder,
        ))
    }

    /// Does `get` of this object fail by injection?
    pub fn get_fails(&self, plural: &str, namespace: &str, name: &str) -> bool {
        self.lock().failing_gets.contains(&(
            plural.to_string(),
            namespace.to_string(),
            name.to_string(),
        ))
    }

    /// Forget the requests recorded so far.
    pub fn clear_audit(&self) {
        self.lock().audit.clear();
    }

    fn commit(
        &self,
        st: &mut State,
        key: Key,
        ty: ChangeType,
        old: Option<Value>,
        mut object: Value,
    ) -> Value {
        st.rv += 1;
        let rv = st.rv;
        object["metadata"]["resourceVersion"] = json!(rv.to_string());
        match ty {
            ChangeType::Deleted => {
                st.objects.remove(&key);
                st.applied.retain(|(k, _, _), _| k != &key);
                st.owners.remove(&key);
            }
            _ => {
                st.objects.insert(key.clone(), object.clone());
            }
        }
        let change = Arc::new(Change {
            rv,
            key: key.clone(),
            ty,
            old,
            object: object.clone(),
        });
        st.history.push_back(change.clone());
        while st.history.len() > st.history_limit {
            if let Some(dropped) = st.history.pop_front() {
                st.compacted = dropped.rv;
            }
        }
        // No receivers is fine.
        let _ = self.tx.send(change);
        if key.group == "apiextensions.k8s.io" && key.plural == "customresourcedefinitions" {
            self.crds_changed(
                st,
                if ty == ChangeType::Deleted {
                    Some(&object)
                } else {
                    None
                },
            );
        }
        object
    }

    fn crds_changed(&self, st: &mut State, deleted: Option<&Value>) {
        if let Some(crd) = deleted {
            let group = crd
                .pointer("/spec/group")
                .and_then(Value::as_str)
                .unwrap_or("");
            let plural = crd
                .pointer("/spec/names/plural")
                .and_then(Value::as_str)
                .unwrap_or("");
            let doomed: Vec<(Key, Value)> = st
                .objects
                .iter()
                .filter(|(k, _)| k.group == group && k.plural == plural)
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            for (k, v) in doomed {
                self.commit(st, k, ChangeType::Deleted, Some(v.clone()), v);
            }
        }
        st.custom = st
            .objects
            .iter()
            .filter(|(k, _)| {
                k.group == "apiextensions.k8s.io" && k.plural == "customresourcedefinitions"
            })
            .flat_map(|(_, crd)| resources::from_crd(crd))
            .filter(|d| {
                !st.builtins
                    .iter()
                    .any(|b| b.group == d.group && b.plural == d.plural)
            })
            .collect();
        st.schema_generation += 1;
    }

    fn require_namespace(st: &State, def: &ResourceDef, namespace: &str) -> ApiResult<()> {
        if !def.namespaced {
            return Ok(());
        }
        let key = Key {
            group: String::new(),
            plural: "namespaces".into(),
            namespace: String::new(),
            name: namespace.to_string(),
        };
        if st.objects.contains_key(&key) {
            Ok(())
        } else {
            Err(
                ApiError::plain_not_found(format!("namespaces \"{namespace}\" not found"))
                    .about_namespace(namespace),
            )
        }
    }

    /// GET one object.
    pub fn get(&self, def: &ResourceDef, namespace: &str, name: &str) -> ApiResult<Value> {
        let st = self.lock();
        st.objects
            .get(&Key::of(def, namespace, name))
            .map(|o| kinds::to_view(def, o))
            .ok_or_else(|| ApiError::not_found(def, name))
    }

    /// LIST: matching objects (client view) and the list's resourceVersion.
    pub fn list(&self, filter: &Filter) -> (Vec<Value>, u64) {
        let st = self.lock();
        let items = st
            .objects
            .iter()
            .filter(|(k, _)| filter.covers(k))
            .filter_map(|(_, o)| filter.view_if_matches(o))
            .collect();
        (items, st.rv)
    }

    /// Start a watch from `resource_version` ("" or "0": the current objects as ADDED first).
    pub fn watch(
        &self,
        filter: &Filter,
        resource_version: &str,
        send_initial_events: bool,
    ) -> ApiResult<WatchStart> {
        let st = self.lock();
        let live = self.tx.subscribe();
        let from: Option<u64> =
            match resource_version {
                "" | "0" => None,
                rv => Some(rv.parse().map_err(|_| {
                    ApiError::bad_request(format!("invalid resourceVersion {rv:?}"))
                })?),
            };
        let mut backlog = Vec::new();
        let initial = send_initial_events || from.is_none();
        if initial {
            for (k, o) in &st.objects {
                if filter.covers(k)
                    && let Some(v) = filter.view_if_matches(o)
                {
                    backlog.push(json!({"type": "ADDED", "object": v}));
                }
            }
            if send_initial_events {
                backlog.push(bookmark(&filter.def, st.rv, true));
            }
        } else if let Some(from) = from {
            if from < st.compacted {
                return Err(ApiError::gone(format!(
                    "too old resource version: {from} ({})",
                    st.compacted + 1
                )));
            }
            for change in st.history.iter().filter(|c| c.rv > from) {
                if let Some(ev) = filter.event_for(change) {
                    backlog.push(ev);
                }
            }
        }
        Ok(WatchStart {
            backlog,
            live,
            rv: st.rv,
        })
    }

    /// POST: create an object (client view in and out).
    pub fn create(
        &self,
        def: &ResourceDef,
        namespace: &str,
        body: Value,
        opts: &WriteOptions,
    ) -> ApiResult<Value> {
        let mut st = self.lock();
        self.create_locked(&mut st, def, namespace, body, opts)
    }

    fn create_locked(
        &self,
        st: &mut State,
        def: &ResourceDef,
        namespace: &str,
        body: Value,
        opts: &WriteOptions,
    ) -> ApiResult<Value> {
        let mut obj = check_body(def, body, namespace, None)?;
        let name = match meta_str(&obj, "name") {
            Some(n) if !n.is_empty() => n.to_string(),
            _ => match meta_str(&obj, "generateName") {
                Some(prefix) if !prefix.is_empty() => format!("{prefix}{}", random_suffix()),
                _ => {
                    return Err(ApiError::invalid(
                        def,
                        "",
                        "metadata.name: Required value: name or generateName is required",
                    ));
                }
            },
        };
        if !valid_name(&name, def.plural == "namespaces") {
            return Err(ApiError::invalid(
                def,
                &name,
                "metadata.name: Invalid value: a lowercase RFC 1123 name must consist of lower \
                 case alphanumeric characters, '-' or '.', and must start and end with an \
                 alphanumeric character",
            ));
        }
        Self::require_namespace(st, def, namespace)?;
        let key = Key::of(def, namespace, &name);
        if st.objects.contains_key(&key) {
            return Err(ApiError::already_exists(def, &name));
        }
        let mut stored = kinds::from_view(def, &obj);
        if def.status_subresource
            && let Value::Object(m) = &mut stored
        {
            m.remove("status");
        }
        {
            let meta = &mut stored["metadata"];
            meta["name"] = json!(name);
            if def.namespaced {
                meta["namespace"] = json!(namespace);
            }
            meta["uid"] = json!(uuid::Uuid::new_v4().to_string());
            meta["creationTimestamp"] = json!(now_rfc3339());
            if def.generation {
                meta["generation"] = json!(1);
            }
            if let Value::Object(m) = meta {
                for f in [
                    "deletionTimestamp",
                    "deletionGracePeriodSeconds",
                    "managedFields",
                    "resourceVersion",
                ] {
                    m.remove(f);
                }
                if !def.namespaced {
                    m.remove("namespace");
                }
            }
        }
        kinds::validate(def, &stored).map_err(|why| ApiError::invalid(def, &name, &why))?;
        kinds::normalize(def, &mut stored, None, &mut st.alloc);
        if def.group == "networking.k8s.io" && def.plural == "ingresses" {
            default_ingress_class(st, &mut stored);
        }
        if opts.dry_run {
            return Ok(kinds::to_view(def, &stored));
        }
        obj = self.commit(st, key.clone(), ChangeType::Added, None, stored);
        track_owners(
            st,
            &key,
            None,
            &kinds::to_view(def, &obj),
            &manager_of(opts),
        );
        Ok(kinds::to_view(def, &obj))
    }

    /// PUT: replace an object, or its status (`status == true`).
    pub fn update(
        &self,
        def: &ResourceDef,
        namespace: &str,
        name: &str,
        body: Value,
        status: bool,
        opts: &WriteOptions,
    ) -> ApiResult<Value> {
        let mut st = self.lock();
        let key = Key::of(def, namespace, name);
        let current = st
            .objects
            .get(&key)
            .cloned()
            .ok_or_else(|| ApiError::not_found(def, name))?;
        let body = check_body(def, body, namespace, Some(name))?;
        self.update_locked(&mut st, def, key, current, body, status, opts)
            .map(|(v, _)| v)
    }

    /// PATCH an object or its status. Server-side apply creates a missing object; the flag
    /// says whether it did.
    #[allow(clippy::too_many_arguments)]
    pub fn patch(
        &self,
        def: &ResourceDef,
        namespace: &str,
        name: &str,
        kind: PatchKind,
        body: &Value,
        status: bool,
        opts: &WriteOptions,
    ) -> ApiResult<(Value, bool)> {
        let mut st = self.lock();
        let key = Key::of(def, namespace, name);
        let current = st.objects.get(&key).cloned();
        if kind == PatchKind::Apply {
            let manager = opts.field_manager.clone().unwrap_or_default();
            if manager.is_empty() {
                return Err(ApiError::bad_request(
                    "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: \
                     is required for apply patch",
                ));
            }
            if !body.is_object() {
                return Err(ApiError::bad_request("an apply patch must be an object"));
            }
            let mut applied = body.clone();
            if let Some(Value::Object(m)) = applied.get_mut("metadata") {
                m.remove("managedFields");
            }
            let applied = check_body(def, applied, namespace, Some(name))?;
            let memo = (key.clone(), manager, status);
            let Some(current) = current else {
                if status {
                    return Err(ApiError::not_found(def, name));
                }
                let created = self.create_locked(&mut st, def, namespace, applied.clone(), opts)?;
                if !opts.dry_run {
                    st.applied.insert(memo, applied);
                }
                return Ok((created, true));
            };
            let mut merged = kinds::to_view(def, &current);
            if !opts.force {
                let conflicts = apply_conflicts(st.owners.get(&key), &merged, &applied, &memo.1);
                if !conflicts.is_empty() {
                    return Err(ApiError::apply_conflict(def, name, &conflicts));
                }
            }
            if let Some(prev) = st.applied.get(&memo) {
                patch::remove_unapplied(&mut merged, prev, &applied);
            }
            patch::apply_merge(&mut merged, &applied);
            let out =
                self.update_locked(&mut st, def, key.clone(), current, merged, status, opts)?;
            if !opts.dry_run {
                let owned = st.owners.entry(key).or_default();
                owned.retain(|_, m| m != &memo.1);
                for (path, _) in leaves(&applied) {
                    if out.0.pointer(&path).is_some() {
                        owned.insert(path, memo.1.clone());
                    }
                }
                st.applied.insert(memo, applied);
            }
            return Ok((out.0, false));
        }
        let current = current.ok_or_else(|| ApiError::not_found(def, name))?;
        let mut patched = kinds::to_view(def, &current);
        match kind {
            PatchKind::Merge => patch::merge_patch(&mut patched, body),
            PatchKind::Strategic => patch::strategic_merge(&mut patched, body),
            PatchKind::Json => patch::json_patch(&mut patched, body)
                .map_err(|e| ApiError::invalid(def, name, &format!("json patch: {e}")))?,
            PatchKind::Apply => {}
        }
        if !patched.is_object() {
            return Err(ApiError::bad_request("the patch did not produce an object"));
        }
        let patched = check_body(def, patched, namespace, Some(name))?;
        self.update_locked(&mut st, def, key, current, patched, status, opts)
            .map(|(v, _)| (v, false))
    }

    /// The shared update path: immutable and server-managed fields, status subresource
    /// rules, resourceVersion precondition, generation, finalizer-completed deletion.
    /// Returns the object as the client sees it and whether anything changed.
    #[allow(clippy::too_many_arguments)]
    fn update_locked(
        &self,
        st: &mut State,
        def: &ResourceDef,
        key: Key,
        current: Value,
        body: Value,
        status: bool,
        opts: &WriteOptions,
    ) -> ApiResult<(Value, bool)> {
        let name = key.name.clone();
        let current_rv = meta_str(&current, "resourceVersion")
            .unwrap_or("")
            .to_string();
        if let Some(rv) = meta_str(&body, "resourceVersion")
            && !rv.is_empty()
            && rv != current_rv
        {
            return Err(ApiError::conflict(def, &name));
        }
        let incoming = kinds::from_view(def, &body);
        let mut new = if status {
            let mut n = current.clone();
            match incoming.get("status") {
                Some(s) => n["status"] = s.clone(),
                None => {
                    if let Value::Object(m) = &mut n {
                        m.remove("status");
                    }
                }
            }
            n
        } else {
            let mut n = incoming;
            if def.status_subresource {
                match current.get("status") {
                    Some(s) => n["status"] = s.clone(),
                    None => {
                        if let Value::Object(m) = &mut n {
                            m.remove("status");
                        }
                    }
                }
            }
            n
        };
        if !new["metadata"].is_object() {
            new["metadata"] = json!({});
        }
        for f in [
            "name",
            "namespace",
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
            "resourceVersion",
        ] {
            match current["metadata"].get(f) {
                Some(v) => new["metadata"][f] = v.clone(),
                None => {
                    if let Value::Object(m) = &mut new["metadata"] {
                        m.remove(f);
                    }
                }
            }
        }
        if let Value::Object(m) = &mut new["metadata"] {
            m.remove("managedFields");
        }
        let deleting = current.pointer("/metadata/deletionTimestamp").is_some();
        if deleting {
            let before = finalizers(&current);
            if finalizers(&new).iter().any(|f| !before.contains(f)) {
                return Err(ApiError::invalid(
                    def,
                    &name,
                    "metadata.finalizers: Forbidden: no new finalizers can be added if the \
                     object is being deleted",
                ));
            }
        }
        kinds::validate(def, &new).map_err(|why| ApiError::invalid(def, &name, &why))?;
        kinds::normalize(def, &mut new, Some(&current), &mut st.alloc);
        if def.generation && spec_part(&new) != spec_part(&current) {
            let g = current
                .pointer("/metadata/generation")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            new["metadata"]["generation"] = json!(g + 1);
        }
        if new == current {
            return Ok((kinds::to_view(def, &current), false));
        }
        if opts.dry_run {
            return Ok((kinds::to_view(def, &new), true));
        }
        let ty = if deleting && finalizers(&new).is_empty() {
            ChangeType::Deleted
        } else {
            ChangeType::Modified
        };
        let before = kinds::to_view(def, &current);
        let out = self.commit(st, key.clone(), ty, Some(current), new);
        if ty != ChangeType::Deleted {
            track_owners(
                st,
                &key,
                Some(&before),
                &kinds::to_view(def, &out),
                &manager_of(opts),
            );
        }
        Ok((kinds::to_view(def, &out), true))
    }

    /// DELETE: with finalizers, mark (`deletionTimestamp`) and keep; else remove. The flag
    /// says whether the object is gone.
    pub fn delete(
        &self,
        def: &ResourceDef,
        namespace: &str,
        name: &str,
        options: &Value,
        opts: &WriteOptions,
    ) -> ApiResult<(Value, bool)> {
        let mut st = self.lock();
        let key = Key::of(def, namespace, name);
        let current = st
            .objects
            .get(&key)
            .cloned()
            .ok_or_else(|| ApiError::not_found(def, name))?;
        if let Some(pre) = options.get("preconditions") {
            let uid_ok = pre
                .get("uid")
                .and_then(Value::as_str)
                .is_none_or(|u| Some(u) == meta_str(&current, "uid"));
            let rv_ok = pre
                .get("resourceVersion")
                .and_then(Value::as_str)
                .is_none_or(|r| Some(r) == meta_str(&current, "resourceVersion"));
            if !uid_ok || !rv_ok {
                return Err(ApiError::conflict(def, name));
            }
        }
        if opts.dry_run {
            return Ok((
                kinds::to_view(def, &current),
                finalizers(&current).is_empty(),
            ));
        }
        let (out, gone) = self.delete_locked(&mut st, def, key, current);
        Ok((kinds::to_view(def, &out), gone))
    }

    fn delete_locked(
        &self,
        st: &mut State,
        def: &ResourceDef,
        key: Key,
        current: Value,
    ) -> (Value, bool) {
        if !finalizers(&current).is_empty() {
            if current.pointer("/metadata/deletionTimestamp").is_some() {
                return (current, false);
            }
            let mut marked = current.clone();
            marked["metadata"]["deletionTimestamp"] = json!(now_rfc3339());
            marked["metadata"]["deletionGracePeriodSeconds"] = json!(0);
            if def.generation {
                let g = current
                    .pointer("/metadata/generation")
                    .and_then(Value::as_i64)
                    .unwrap_or(0);
                marked["metadata"]["generation"] = json!(g + 1);
            }
            let out = self.commit(st, key, ChangeType::Modified, Some(current), marked);
            return (out, false);
        }
        if key.group.is_empty() && key.plural == "namespaces" {
            let contents: Vec<(Key, Value)> = st
                .objects
                .iter()
                .filter(|(k, _)| k.namespace == key.name)
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            let defs: Vec<ResourceDef> = st
                .builtins
                .iter()
                .chain(st.custom.iter())
                .cloned()
                .collect();
            for (k, v) in contents {
                if let Some(d) = defs
                    .iter()
                    .find(|d| d.group == k.group && d.plural == k.plural)
                {
                    self.delete_locked(st, d, k, v);
                }
            }
        }
        let out = self.commit(st, key, ChangeType::Deleted, Some(current.clone()), current);
        (out, true)
    }

    /// DELETE on a collection: every matching object, as single deletes.
    pub fn delete_collection(&self, filter: &Filter, opts: &WriteOptions) -> Vec<Value> {
        let mut st = self.lock();
        let doomed: Vec<(Key, Value)> = st
            .objects
            .iter()
            .filter(|(k, o)| filter.covers(k) && filter.view_if_matches(o).is_some())
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let mut out = Vec::new();
        for (k, v) in doomed {
            if opts.dry_run {
                out.push(kinds::to_view(&filter.def, &v));
            } else {
                let (o, _) = self.delete_locked(&mut st, &filter.def, k, v);
                out.push(kinds::to_view(&filter.def, &o));
            }
        }
        out
    }
}

impl ApiError {
    fn about_namespace(mut self, namespace: &str) -> Self {
        self.details = json!({"name": namespace, "kind": "namespaces"});
        self
    }
}

/// The `DefaultIngressClass` admission plugin (enabled by default in kube-apiserver): an
/// Ingress created without `spec.ingressClassName` (and without the legacy
/// `kubernetes.io/ingress.class` annotation) gets the default IngressClass, the newest one if
/// several are marked default.
fn default_ingress_class(st: &State, ingress: &mut Value) {
    if ingress.pointer("/spec/ingressClassName").is_some()
        || ingress
            .pointer("/metadata/annotations/kubernetes.io~1ingress.class")
            .is_some()
    {
        return;
    }
    let default = st
        .objects
        .iter()
        .filter(|(k, _)| k.group == "networking.k8s.io" && k.plural == "ingressclasses")
        .map(|(_, v)| v)
        .filter(|c| {
            c.pointer("/metadata/annotations/ingressclass.kubernetes.io~1is-default-class")
                .and_then(Value::as_str)
                == Some("true")
        })
        .max_by_key(|c| {
            (
                meta_str(c, "creationTimestamp").unwrap_or("").to_string(),
                meta_str(c, "resourceVersion")
                    .and_then(|r| r.parse::<u64>().ok())
                    .unwrap_or(0),
            )
        });
    if let Some(name) = default.and_then(|c| meta_str(c, "name")) {
        if !ingress["spec"].is_object() {
            ingress["spec"] = json!({});
        }
        ingress["spec"]["ingressClassName"] = json!(name);
    }
}

/// The manager a write is recorded under (`fieldManager`, else the user-agent default).
fn manager_of(opts: &WriteOptions) -> String {
    opts.field_manager
        .clone()
        .filter(|m| !m.is_empty())
        .or_else(|| Some(opts.default_manager.clone()).filter(|m| !m.is_empty()))
        .unwrap_or_else(|| "unknown".into())
}

fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// Leaf fields of an object as JSON pointers with their values. Lists are atomic leaves;
/// server-managed metadata, `apiVersion` and `kind` are not owned by anyone.
pub fn leaves(obj: &Value) -> Vec<(String, Value)> {
    fn walk(v: &Value, path: String, out: &mut Vec<(String, Value)>) {
        match v {
            Value::Object(m) if !m.is_empty() => {
                for (k, child) in m {
                    walk(child, format!("{path}/{}", escape(k)), out);
                }
            }
            _ => out.push((path, v.clone())),
        }
    }
    let mut out = Vec::new();
    let Value::Object(m) = obj else {
        return out;
    };
    for (k, v) in m {
        match k.as_str() {
            "apiVersion" | "kind" => {}
            "metadata" => {
                for f in ["labels", "annotations", "finalizers", "ownerReferences"] {
                    if let Some(x) = v.get(f) {
                        walk(x, format!("/metadata/{f}"), &mut out);
                    }
                }
            }
            _ => walk(v, format!("/{}", escape(k)), &mut out),
        }
    }
    out
}

/// Record `manager` as the owner of every leaf that a write added or changed, and forget
/// owners of fields that are gone.
fn track_owners(st: &mut State, key: &Key, before: Option<&Value>, after: &Value, manager: &str) {
    let owned = st.owners.entry(key.clone()).or_default();
    for (path, v) in leaves(after) {
        if before.and_then(|b| b.pointer(&path)) != Some(&v) {
            owned.insert(path, manager.to_string());
        }
    }
    owned.retain(|path, _| after.pointer(path).is_some());
}

/// Fields an apply by `manager` would change that another manager owns.
fn apply_conflicts(
    owners: Option<&BTreeMap<String, String>>,
    current: &Value,
    applied: &Value,
    manager: &str,
) -> Vec<(String, String)> {
    let Some(owners) = owners else {
        return Vec::new();
    };
    leaves(applied)
        .into_iter()
        .filter_map(|(path, v)| {
            let owner = owners.get(&path)?;
            let cur = current.pointer(&path)?;
            (owner != manager && cur != &v).then(|| {
                let field = path
                    .split('/')
                    .skip(1)
                    .map(|t| t.replace("~1", "/").replace("~0", "~"))
                    .collect::<Vec<_>>()
                    .join(".");
                (format!(".{field}"), owner.clone())
            })
        })
        .collect()
}

/// A BOOKMARK watch event at `rv`.
pub fn bookmark(def: &ResourceDef, rv: u64, initial_end: bool) -> Value {
    let mut meta = json!({"resourceVersion": rv.to_string()});
    if initial_end {
        meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    json!({"type": "BOOKMARK", "object": {
        "kind": def.kind, "apiVersion": def.api_version(), "metadata": meta}})
}

/// Check a request body against the URL: an object, of this kind, in this namespace, with
/// this name.
fn check_body(
    def: &ResourceDef,
    body: Value,
    namespace: &str,
    name: Option<&str>,
) -> ApiResult<Value> {
    let Value::Object(_) = &body else {
        return Err(ApiError::bad_request(
            "the request body must be a JSON object",
        ));
    };
    if let Some(av) = body.get("apiVersion").and_then(Value::as_str)
        && av != def.api_version()
    {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({av}) does not match the expected API version ({})",
            def.api_version()
        )));
    }
    if let Some(kind) = body.get("kind").and_then(Value::as_str)
        && kind != def.kind
    {
        return Err(ApiError::bad_request(format!(
            "the kind in the data ({kind}) does not match the expected kind ({})",
            def.kind
        )));
    }
    let mut body = body;
    if !body["metadata"].is_object() {
        body["metadata"] = json!({});
    }
    if def.namespaced
        && let Some(ns) = meta_str(&body, "namespace")
        && !ns.is_empty()
        && ns != namespace
    {
        return Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        ));
    }
    if let Some(name) = name {
        match meta_str(&body, "name") {
            Some(n) if !n.is_empty() && n != name => {
                return Err(ApiError::bad_request(format!(
                    "the name of the object ({n}) does not match the name on the URL ({name})"
                )));
            }
            _ => body["metadata"]["name"] = json!(name),
        }
    }
    Ok(body)
}
