//! Everything the controller writes to Kubernetes about an Ingress: the finalizer,
//! `status.loadBalancer`, the machine-readable sync state annotation, and Events.
//!
//! Sync state (`clb-ingress.io/sync-state`, JSON): `observedGeneration` (the Ingress generation
//! last reconciled), `synced` (true when everything the Ingress asks for is served as written:
//! the CLB matches it and no Problem leaves a path, host or the Ingress unserved),
//! `lastSyncTime` (RFC 3339, when a change of this Ingress's own part of its CLB was last
//! applied or the Ingress became synced), `reason` and `message` (the current error or problem,
//! if any), `loadBalancerId`, `problems` (every current Problem, `field: reason: message`, at
//! most [`MAX_LISTED_PROBLEMS`]), `problemCount` and `conditions` (`Ready`, `Degraded`, shaped
//! like `metav1.Condition`, see [`conditions`]). It is only rewritten when one of these
//! changes, so a no-op resync writes nothing.
//!
//! The `Synced` Normal Event goes only to Ingresses whose own part of the CLB changed: a
//! change to one Ingress on a shared CLB does not put Events on its neighbours.
//!
//! Warning Events are bounded: at most [`MAX_WARNING_EVENTS`] per Ingress per pass; beyond
//! that one `MultipleProblems` Warning names how many more there are (the full list is in the
//! sync state), so one Ingress with thousands of bad entries cannot flood the API server.
//!
//! Each write returns its failure as a [`ControllerError`]; the caller logs and counts it.

use super::FINALIZER;
use super::error::{ControllerError, KubeWrite};
use crate::deploy::Outcome;
use crate::model::{Effect, Problem, Protocol};
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::{Api, Client, Resource, ResourceExt};
use serde::{Deserialize, Serialize};
use serde_json::json;

/// Annotation holding the per-Ingress sync state.
pub const ANN_SYNC_STATE: &str = "clb-ingress.io/sync-state";
pub use crate::model::build::ANN_QCLOUD_LB_ID;
/// Event reporter name.
pub const REPORTER: &str = "clb-ingress";
const MAX_NOTE: usize = 1000;
/// Warning Events about new Problems published per Ingress per pass (the last one of them
/// aggregates the rest when there are more).
pub const MAX_WARNING_EVENTS: usize = 3;
/// Problems listed in the sync-state annotation (annotations share a 256 KiB budget).
pub const MAX_LISTED_PROBLEMS: usize = 50;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncState {
    pub observed_generation: Option<i64>,
    pub synced: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancer_id: Option<String>,
    /// Every current Problem (`field: reason: message`), the first [`MAX_LISTED_PROBLEMS`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
    /// How many Problems there are in all.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub problem_count: usize,
    /// Kubernetes-style conditions: `Ready` (everything the Ingress asks for is served as
    /// written) and `Degraded` (some Problem applies), see [`conditions`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// Condition type: everything the Ingress asks for is served as written.
pub const CONDITION_READY: &str = "Ready";
/// Condition type: some Problem applies to the Ingress (a part is not served, or is served
/// with a fallback).
pub const CONDITION_DEGRADED: &str = "Degraded";

/// One condition of the sync state, shaped like `metav1.Condition`. Fields serialize in this
/// order (health checks may match on the text).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(rename = "type")]
    pub type_: String,
    /// `True` or `False`.
    pub status: String,
    pub reason: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// RFC 3339; when `status` last changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<String>,
}

/// What a reconcile says about one Ingress, as conditions: `not_ready` is why something it
/// asks for is not served as written (reason, message), None when all of it is.
pub fn conditions(
    previous: &SyncState,
    generation: Option<i64>,
    not_ready: Option<(String, String)>,
    lb_id: Option<&str>,
    problems: &[&Problem],
    now: &str,
) -> Vec<Condition> {
    let condition = |type_: &str, status: bool, reason: String, message: String| {
        let status = if status { "True" } else { "False" }.to_string();
        let before = previous.conditions.iter().find(|c| c.type_ == type_);
        let last_transition_time = match before {
            Some(c) if c.status == status => c.last_transition_time.clone(),
            _ => Some(now.to_string()),
        };
        Condition {
            type_: type_.to_string(),
            status,
            reason,
            message: truncate_note(message),
            observed_generation: generation,
            last_transition_time,
        }
    };
    let ready = match not_ready {
        None => condition(
            CONDITION_READY,
            true,
            "Synced".into(),
            format!("served by {}", lb_id.unwrap_or("the CLB")),
        ),
        Some((reason, message)) => condition(CONDITION_READY, false, reason, message),
    };
    let degraded = if problems.is_empty() {
        condition(
            CONDITION_DEGRADED,
            false,
            "NoProblems".into(),
            "no problem applies".into(),
        )
    } else {
        let mut reasons: Vec<&str> = problems.iter().map(|p| p.reason.as_str()).collect();
        reasons.sort_unstable();
        reasons.dedup();
        let reason = match reasons.as_slice() {
            [one] => (*one).to_string(),
            _ => "MultipleProblems".to_string(),
        };
        condition(
            CONDITION_DEGRADED,
            true,
            reason,
            format!(
                "{} problem(s): {}; {}",
                problems.len(),
                reasons.join(", "),
                problems
                    .iter()
                    .map(|p| format!("{} ({})", p.field, effect_text(p.effect)))
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
        )
    };
    vec![ready, degraded]
}

/// What a Problem's effect means for traffic, in words.
fn effect_text(effect: Effect) -> &'static str {
    match effect {
        Effect::Parked => "the Ingress is not served",
        Effect::PathUnserved => "the path answers 503",
        Effect::HostParked => "the host is not served",
        Effect::Overridden => "an older definition serves instead",
        Effect::Degraded => "served with a fallback",
        Effect::Ignored => "not handled",
    }
}

/// The first Problem that keeps something the Ingress asks for from being served as written
/// (every effect but `Degraded`, which still serves).
fn unserved<'a>(problems: &[&'a Problem]) -> Option<&'a Problem> {
    problems
        .iter()
        .find(|p| p.effect == Effect::Parked)
        .or_else(|| problems.iter().find(|p| p.effect != Effect::Degraded))
        .copied()
}

impl SyncState {
    /// The sync state an Ingress carries now (default when it has none or it does not parse).
    pub fn of(ing: &Ingress) -> Self {
        ing.annotations()
            .get(ANN_SYNC_STATE)
            .and_then(|s| serde_json::from_str(s).ok())
            .unwrap_or_default()
    }
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// The listed Problems of a sync state.
fn listed(problems: &[&Problem]) -> Vec<String> {
    problems
        .iter()
        .take(MAX_LISTED_PROBLEMS)
        .map(|p| truncate_note(format!("{}: {}: {}", p.field, p.reason.as_str(), p.message)))
        .collect()
}

pub struct Reporter {
    client: Client,
    /// Warnings: repeats of one within kube's cache TTL (6 minutes) become a series.
    recorder: Recorder,
    /// Who Normal Events are from; each goes through a recorder of its own (see [`Reporter::event`]).
    source: kube::runtime::events::Reporter,
    identity: String,
}

fn truncate_note(s: String) -> String {
    if s.len() <= MAX_NOTE {
        return s;
    }
    let mut end = MAX_NOTE - 3;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

impl Reporter {
    pub fn new(client: Client, identity: String) -> Self {
        let source = kube::runtime::events::Reporter {
            controller: REPORTER.into(),
            instance: Some(identity.clone()),
        };
        let recorder = Recorder::new(client.clone(), source.clone());
        Self {
            client,
            recorder,
            source,
            identity,
        }
    }

    pub fn identity(&self) -> &str {
        &self.identity
    }

    fn api(&self, ing: &Ingress) -> Api<Ingress> {
        Api::namespaced(self.client.clone(), &ing.namespace().unwrap_or_default())
    }

    /// Merge-patch `ing` (its status when `write` is [`KubeWrite::Status`]).
    async fn patch(
        &self,
        ing: &Ingress,
        write: KubeWrite,
        patch: &serde_json::Value,
    ) -> Result<(), ControllerError> {
        let (api, name, params) = (self.api(ing), ing.name_any(), PatchParams::default());
        let patch = Patch::Merge(patch);
        let result = match write {
            KubeWrite::Status => api.patch_status(&name, &params, &patch).await,
            _ => api.patch(&name, &params, &patch).await,
        };
        result
            .map(drop)
            .map_err(|e| ControllerError::kube(write, ing, e))
    }

    async fn set_finalizers(
        &self,
        ing: &Ingress,
        finalizers: Vec<String>,
    ) -> Result<(), ControllerError> {
        let patch = json!({"metadata": {"finalizers": finalizers, "resourceVersion": ing.resource_version()}});
        self.patch(ing, KubeWrite::Finalizer, &patch).await
    }

    pub async fn ensure_finalizer(&self, ing: &Ingress) -> Result<(), ControllerError> {
        if ing.finalizers().iter().any(|f| f == FINALIZER) {
            return Ok(());
        }
        let mut f = ing.finalizers().to_vec();
        f.push(FINALIZER.to_string());
        self.set_finalizers(ing, f).await
    }

    pub async fn remove_finalizer(&self, ing: &Ingress) -> Result<(), ControllerError> {
        if !ing.finalizers().iter().any(|f| f == FINALIZER) {
            return Ok(());
        }
        let f = ing
            .finalizers()
            .iter()
            .filter(|f| *f != FINALIZER)
            .cloned()
            .collect();
        self.set_finalizers(ing, f).await
    }

    async fn event(
        &self,
        ing: &Ingress,
        type_: EventType,
        reason: &str,
        action: &str,
        note: String,
    ) -> Result<(), ControllerError> {
        let ev = Event {
            type_,
            reason: reason.to_string(),
            note: Some(truncate_note(note)),
            action: action.to_string(),
            secondary: None,
        };
        // A recorder keeps every Event it published for 6 minutes (to count repeats) and only
        // evicts them on its next publish: after the first sync of 10,000 Ingresses that is one
        // "Synced" Event each, ~30 MB held by a quiet controller. A Normal Event says what one
        // sync applied (each its own note), so it goes through a recorder that is dropped with
        // it; Warnings keep the shared one, whose repeats become a series.
        let own;
        let recorder = match ev.type_ {
            EventType::Normal => {
                own = Recorder::new(self.client.clone(), self.source.clone());
                &own
            }
            EventType::Warning => &self.recorder,
        };
        recorder
            .publish(&ev, &ing.object_ref(&()))
            .await
            .map_err(|e| ControllerError::kube(KubeWrite::Event, ing, e))
    }

    /// Report one reconcile to one Ingress: status address, sync state, Events. Every write is
    /// attempted; those that failed are returned.
    pub async fn report(
        &self,
        ing: &Ingress,
        result: &Result<Outcome, ControllerError>,
        ports: &[(Protocol, u16)],
        problems: &[&Problem],
        new_warnings: &[&Problem],
        own_change: bool,
    ) -> Vec<ControllerError> {
        let mut failed = Vec::new();
        if ing.metadata.deletion_timestamp.is_some() {
            return failed;
        }
        failed.extend(self.warn(ing, new_warnings).await);
        let previous = SyncState::of(ing);
        let parked = problems.iter().find(|p| p.effect == Effect::Parked);
        let now = jiff::Timestamp::now().to_string();
        let mut state = SyncState {
            observed_generation: ing.metadata.generation,
            problems: listed(problems),
            problem_count: problems.len(),
            ..Default::default()
        };
        match result {
            Ok(o) => {
                state.load_balancer_id = o.lb_id.clone();
                // Synced means served exactly as written: no path answering 503 for a
                // missing Service, no parked host (a Degraded fallback still serves).
                let not_ready = match (unserved(problems), o.conflicts.first()) {
                    (Some(p), _) => Some((
                        p.reason.as_str().to_string(),
                        format!("{}: {} ({})", p.field, p.message, effect_text(p.effect)),
                    )),
                    (None, Some(c)) => Some(("ListenerPortConflict".to_string(), c.clone())),
                    (None, None) => None,
                };
                state.synced = not_ready.is_none();
                if let Some(p) = parked.or(problems.first()) {
                    state.reason = Some(p.reason.as_str().to_string());
                    state.message = Some(truncate_note(format!("{}: {}", p.field, p.message)));
                } else if let Some(c) = o.conflicts.first() {
                    state.reason = Some("ListenerPortConflict".into());
                    state.message = Some(truncate_note(c.clone()));
                }
                state.conditions = conditions(
                    &previous,
                    ing.metadata.generation,
                    not_ready,
                    o.lb_id.as_deref(),
                    problems,
                    &now,
                );
                let applied = o.changes > 0;
                state.last_sync_time =
                    if (applied && own_change) || (state.synced && !previous.synced) {
                        Some(now.clone())
                    } else {
                        previous.last_sync_time.clone()
                    };
                if applied && own_change && parked.is_none() {
                    let r = self
                        .event(
                            ing,
                            EventType::Normal,
                            "Synced",
                            "Sync",
                            format!(
                                "applied {} change(s) with {} CLB API write call(s) to {}",
                                o.changes,
                                o.write_calls,
                                o.lb_id.as_deref().unwrap_or("the CLB")
                            ),
                        )
                        .await;
                    failed.extend(r.err());
                }
                for c in &o.conflicts {
                    if previous.message.as_deref() != Some(c.as_str()) {
                        let r = self
                            .event(
                                ing,
                                EventType::Warning,
                                "ListenerPortConflict",
                                "Sync",
                                c.clone(),
                            )
                            .await;
                        failed.extend(r.err());
                    }
                }
                if parked.is_none() && !o.vips.is_empty() {
                    failed.extend(self.set_address(ing, &o.vips, ports).await.err());
                }
            }
            Err(e) => {
                state.synced = false;
                state.load_balancer_id = previous.load_balancer_id.clone();
                state.last_sync_time = previous.last_sync_time.clone();
                state.reason = Some(e.category().to_string());
                state.message = Some(truncate_note(super::error::describe(e)));
                state.conditions = conditions(
                    &previous,
                    ing.metadata.generation,
                    Some((e.category().to_string(), super::error::describe(e))),
                    previous.load_balancer_id.as_deref(),
                    problems,
                    &now,
                );
                if previous.reason != state.reason || previous.message != state.message {
                    let r = self
                        .event(
                            ing,
                            EventType::Warning,
                            e.category(),
                            "Sync",
                            super::error::describe(e),
                        )
                        .await;
                    failed.extend(r.err());
                }
            }
        }
        failed.extend(self.write_state(ing, &state, &previous).await.err());
        failed
    }

    /// Report an Ingress that is on no CLB because of `problems` (for example an adoption its
    /// class does not allow): Warnings for the new ones, and an unsynced sync state.
    pub async fn report_unplaced(
        &self,
        ing: &Ingress,
        problems: &[&Problem],
        new_warnings: &[&Problem],
    ) -> Vec<ControllerError> {
        let mut failed = Vec::new();
        if ing.metadata.deletion_timestamp.is_some() {
            return failed;
        }
        failed.extend(self.warn(ing, new_warnings).await);
        let previous = SyncState::of(ing);
        let first = problems.first();
        let now = jiff::Timestamp::now().to_string();
        let not_ready = first.map(|p| {
            (
                p.reason.as_str().to_string(),
                format!("{}: {} (on no CLB)", p.field, p.message),
            )
        });
        let state = SyncState {
            conditions: conditions(
                &previous,
                ing.metadata.generation,
                not_ready,
                None,
                problems,
                &now,
            ),
            observed_generation: ing.metadata.generation,
            synced: false,
            last_sync_time: previous.last_sync_time.clone(),
            reason: first.map(|p| p.reason.as_str().to_string()),
            message: first.map(|p| truncate_note(format!("{}: {}", p.field, p.message))),
            load_balancer_id: None,
            problems: listed(problems),
            problem_count: problems.len(),
        };
        failed.extend(self.write_state(ing, &state, &previous).await.err());
        failed
    }

    /// Warning Events for new Problems, at most [`MAX_WARNING_EVENTS`]; the last one sums up
    /// the rest when there are more.
    async fn warn(&self, ing: &Ingress, new_warnings: &[&Problem]) -> Vec<ControllerError> {
        let mut failed = Vec::new();
        let (each, rest) = if new_warnings.len() > MAX_WARNING_EVENTS {
            new_warnings.split_at(MAX_WARNING_EVENTS - 1)
        } else {
            (new_warnings, &[][..])
        };
        for p in each {
            let r = self
                .event(
                    ing,
                    EventType::Warning,
                    p.reason.as_str(),
                    "Sync",
                    format!("{}: {} ({:?})", p.field, p.message, p.effect),
                )
                .await;
            failed.extend(r.err());
        }
        if !rest.is_empty() {
            let mut reasons: Vec<&str> = rest.iter().map(|p| p.reason.as_str()).collect();
            reasons.sort_unstable();
            reasons.dedup();
            let r = self
                .event(
                    ing,
                    EventType::Warning,
                    "MultipleProblems",
                    "Sync",
                    format!(
                        "{} more problem(s) ({}); the annotation {ANN_SYNC_STATE} lists them",
                        rest.len(),
                        reasons.join(", ")
                    ),
                )
                .await;
            failed.extend(r.err());
        }
        failed
    }

    /// Rewrite the sync-state annotation if it changed.
    async fn write_state(
        &self,
        ing: &Ingress,
        state: &SyncState,
        previous: &SyncState,
    ) -> Result<(), ControllerError> {
        // TKE's read-only annotation naming the CLB, for tools that read it.
        let lb_id = state
            .load_balancer_id
            .as_deref()
            .filter(|id| ing.annotations().get(ANN_QCLOUD_LB_ID).map(String::as_str) != Some(*id));
        if state == previous && lb_id.is_none() {
            return Ok(());
        }
        let value = serde_json::to_string(state).unwrap_or_default();
        let mut annotations = serde_json::Map::new();
        annotations.insert(ANN_SYNC_STATE.into(), value.into());
        if let Some(id) = lb_id {
            annotations.insert(ANN_QCLOUD_LB_ID.into(), id.into());
        }
        let patch = json!({"metadata": {"annotations": annotations}});
        self.patch(ing, KubeWrite::SyncState, &patch).await
    }

    async fn set_address(
        &self,
        ing: &Ingress,
        vips: &[String],
        ports: &[(Protocol, u16)],
    ) -> Result<(), ControllerError> {
        let port_status: Vec<serde_json::Value> = ports
            .iter()
            .map(|(_, p)| json!({"port": p, "protocol": "TCP"}))
            .collect();
        let entries: Vec<serde_json::Value> = vips
            .iter()
            .map(|v| {
                if v.parse::<std::net::IpAddr>().is_ok() {
                    json!({"ip": v, "ports": port_status})
                } else {
                    json!({"hostname": v, "ports": port_status})
                }
            })
            .collect();
        let want = json!({"ingress": entries});
        let have = serde_json::to_value(ing.status.as_ref().and_then(|s| s.load_balancer.as_ref()))
            .unwrap_or_default();
        if have == want {
            return Ok(());
        }
        let patch = json!({"status": {"loadBalancer": want}});
        self.patch(ing, KubeWrite::Status, &patch).await
    }
}
