//! Pod readiness gate (Direct mode): pods that list the readiness gate
//! `clb-ingress.io/target-healthy` in `spec.readinessGates` (and carry the label
//! `clb-ingress.io/readiness-gate: "true"`, which is all that is watched) get that condition
//! set True once their IP is registered and healthy on every CLB rule that routes to it. Until
//! then the pod is not Ready, so a Deployment rollout waits for the CLB instead of outrunning it.
//!
//! A gated pod whose containers are ready is registered although its endpoint is not ready
//! yet (the model's `gated` addresses), so the CLB can health-check it. What routes to it is
//! taken from the last successfully deployed desired state of each stack; its health from
//! `DescribeTargetHealth` on those CLBs. The condition is only ever set True: a pod that turns
//! unhealthy later is handled by its own readiness probe and by the CLB's health check.

use super::Hooks;
use super::queue::Dirty;
use super::stores::WatchErrors;
use crate::clb::ClbClient;
use crate::clb::types::{DescribeTargetHealthRequest, LoadBalancerHealth};
use crate::model::{DesiredLb, StackId, TargetAddr};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Patch, PatchParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::sync::mpsc::UnboundedSender;
use tracing::{debug, info, warn};

/// The readiness gate condition type clb-ingress sets.
pub const READINESS_GATE: &str = "clb-ingress.io/target-healthy";
/// Only pods with this label (value `"true"`) are watched.
pub const READINESS_GATE_LABEL: &str = "clb-ingress.io/readiness-gate";
/// How often gated pods waiting for their condition are checked against the CLB.
pub const GATE_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// Whether the pod lists our readiness gate.
pub fn has_gate(p: &Pod) -> bool {
    p.spec
        .as_ref()
        .and_then(|s| s.readiness_gates.as_ref())
        .is_some_and(|g| g.iter().any(|g| g.condition_type == READINESS_GATE))
}

fn condition_true(p: &Pod, type_: &str) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == type_))
        .is_some_and(|c| c.status == "True")
}

/// Whether the pod's gate is already True.
pub fn gate_true(p: &Pod) -> bool {
    condition_true(p, READINESS_GATE)
}

/// A pod that carries the gate, is not terminating and whose containers are ready: its target
/// is registered (with its weight) even before its endpoint is ready.
pub fn waits_only_for_gate(p: &Pod) -> bool {
    has_gate(p) && p.metadata.deletion_timestamp.is_none() && condition_true(p, "ContainersReady")
}

/// The pod's IPv4 addresses (`status.podIPs`, else `status.podIP`).
pub fn pod_ips(p: &Pod) -> Vec<String> {
    let Some(status) = p.status.as_ref() else {
        return Vec::new();
    };
    let mut ips: Vec<String> = status
        .pod_ips
        .iter()
        .flatten()
        .map(|i| i.ip.clone())
        .collect();
    if ips.is_empty() {
        ips.extend(status.pod_ip.clone());
    }
    ips.retain(|ip| ip.parse::<std::net::Ipv4Addr>().is_ok());
    ips
}

/// A stack's CLB and, per target IP, how many of its rules route to it.
type Routes = (String, BTreeMap<String, usize>);

/// The gated pods' store, and what the Services of one are found in and requeued by.
struct Watched {
    pods: Store<Pod>,
    slices: Store<EndpointSlice>,
    tx: UnboundedSender<Dirty>,
}

/// Per stack, what it routes to (as last deployed), for the gated pods only.
#[derive(Default)]
pub struct Gates {
    stacks: Mutex<HashMap<StackId, Routes>>,
    /// The gated pods (label-selected) and what requeues their Services, once they are
    /// watched; unset: readiness gates are off and nothing is recorded.
    watched: std::sync::OnceLock<Watched>,
    /// The IPs of each gated pod (by UID) whose condition is not True yet, kept by the pod
    /// watch (a record does not read every pod: 10,000 stacks times 10,000 pods).
    waiting: Mutex<HashMap<String, Vec<String>>>,
    /// Waiting pods (by UID) whose Services were requeued because no recorded route led to
    /// them (see [`Gates::requeue_unrouted`]).
    requeued: Mutex<BTreeSet<String>>,
    /// Woken when a deploy may have made a gated pod healthy, or a pod changed.
    pub wake: Notify,
}

impl Gates {
    /// Remember what a stack's CLB `lb_id` routes to after a successful deploy of `desired`
    /// (`None`: the stack is gone). Only the IPs of gated pods still waiting for their
    /// condition are kept: all target IPs of every stack took 41 MB at 10,000 Ingresses and
    /// 100,000 endpoints, where no pod had a gate. A pod that starts waiting later changes its
    /// Services' targets (or is requeued by its watch event), so its stacks record it then.
    pub fn record(&self, stack: &StackId, lb_id: Option<&str>, desired: Option<&DesiredLb>) {
        if self.watched.get().is_none() {
            return;
        }
        let waiting: BTreeSet<String> = self
            .waiting
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .flatten()
            .cloned()
            .collect();
        let mut stacks = self.stacks.lock().unwrap_or_else(PoisonError::into_inner);
        let (Some(lb_id), Some(d)) = (lb_id, desired) else {
            stacks.remove(stack);
            return;
        };
        if waiting.is_empty() {
            // Nothing waits: nothing routes to a waiting pod either.
            stacks.remove(stack);
            return;
        }
        let mut rules_by_ip: BTreeMap<String, usize> = BTreeMap::new();
        for rule in d
            .listeners
            .iter()
            .flat_map(|l| &l.domains)
            .flat_map(|dom| &dom.rules)
        {
            let ips: BTreeSet<&str> = rule
                .targets
                .iter()
                .filter_map(|t| match &t.addr {
                    TargetAddr::Ip(ip) if t.weight > 0 && waiting.contains(ip) => Some(ip.as_str()),
                    _ => None,
                })
                .collect();
            for ip in ips {
                *rules_by_ip.entry(ip.to_string()).or_default() += 1;
            }
        }
        stacks.insert(stack.clone(), (lb_id.to_string(), rules_by_ip));
        drop(stacks);
        self.wake.notify_one();
    }

    /// Requeue, once per pod while it waits, the Services of the `waiting` pods that no
    /// recorded route leads to. A stack records the pods that wait when it deploys; one whose
    /// wait began unseen (its watch event lost in a re-list) would otherwise never be checked.
    /// A pod no Ingress routes to is requeued once and then left alone.
    fn requeue_unrouted(&self, waiting: &[Arc<Pod>]) {
        let Some(watched) = self.watched.get() else {
            return;
        };
        let mut requeued = self.requeued.lock().unwrap_or_else(PoisonError::into_inner);
        let uids: BTreeSet<String> = waiting.iter().filter_map(|p| p.uid()).collect();
        requeued.retain(|u| uids.contains(u));
        for p in waiting {
            let unrouted = pod_ips(p).iter().all(|ip| self.routes_to(ip).is_empty());
            if unrouted && p.uid().is_some_and(|u| requeued.insert(u)) {
                for d in services_of(&watched.slices, p) {
                    let _ = watched.tx.send(d);
                }
            }
        }
    }

    /// Follow one event of the gated pods' watch.
    fn pod_event(&self, event: &watcher::Event<Pod>) {
        let mut waiting = self.waiting.lock().unwrap_or_else(PoisonError::into_inner);
        match event {
            watcher::Event::Apply(p) | watcher::Event::InitApply(p) => {
                let Some(uid) = p.uid() else { return };
                if has_gate(p) && !gate_true(p) && p.metadata.deletion_timestamp.is_none() {
                    waiting.insert(uid, pod_ips(p));
                } else {
                    waiting.remove(&uid);
                }
            }
            watcher::Event::Delete(p) => {
                if let Some(uid) = p.uid() {
                    waiting.remove(&uid);
                }
            }
            // A re-list: what it did not list again is gone.
            watcher::Event::Init => {}
            watcher::Event::InitDone => {
                if let Some(w) = self.watched.get() {
                    let listed: BTreeSet<String> =
                        w.pods.state().iter().filter_map(|p| p.uid()).collect();
                    waiting.retain(|uid, _| listed.contains(uid));
                }
            }
        }
    }

    /// The CLBs that route to `ip` and how many rules on each.
    fn routes_to(&self, ip: &str) -> Vec<(String, usize)> {
        self.stacks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .filter_map(|(lb, by_ip)| by_ip.get(ip).map(|n| (lb.clone(), *n)))
            .collect()
    }
}

/// Whether `ip` is healthy on at least `rules` rules of `lb` and unhealthy on none. A rule
/// whose check is off (`Close`) forwards to it, so it counts as healthy.
pub fn healthy_on(health: &[LoadBalancerHealth], lb: &str, ip: &str, rules: usize) -> bool {
    let mut healthy = 0;
    for t in health
        .iter()
        .filter(|h| h.load_balancer_id == lb)
        .flat_map(|h| &h.listeners)
        .flat_map(|l| &l.rules)
        .flat_map(|r| &r.targets)
        .filter(|t| t.ip == ip)
    {
        let detail = t
            .health_status_detail
            .as_deref()
            .or(t.health_status_detial.as_deref());
        if t.health_status || detail == Some("Close") {
            healthy += 1;
        } else {
            return false;
        }
    }
    rules > 0 && healthy >= rules
}

/// Watch the gated pods (label-selected). A pod change requeues the Services whose slices list
/// it and wakes the gate checker.
pub fn watch_pods(
    client: &Client,
    namespace: Option<&str>,
    slices: Store<EndpointSlice>,
    tx: UnboundedSender<Dirty>,
    errors: WatchErrors,
    gates: Arc<Gates>,
) -> Store<Pod> {
    let api: Api<Pod> = match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let cfg = watcher::Config::default()
        .any_semantic()
        .labels(&format!("{READINESS_GATE_LABEL}=true"));
    let (reader, writer) = reflector::store();
    let _ = gates.watched.set(Watched {
        pods: reader.clone(),
        slices: slices.clone(),
        tx: tx.clone(),
    });
    let stream = reflector::reflector(
        writer,
        watcher(api, cfg)
            .default_backoff()
            .modify(super::stores::slim),
    );
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(ev) = stream.next().await {
            if let Ok(ev) = &ev {
                gates.pod_event(ev);
            }
            match ev {
                Ok(watcher::Event::Apply(p) | watcher::Event::Delete(p)) => {
                    for d in services_of(&slices, &p) {
                        let _ = tx.send(d);
                    }
                    gates.wake.notify_one();
                }
                Ok(_) => {}
                Err(e) => errors.report("Pod", &e),
            }
        }
    });
    reader
}

/// The Services whose EndpointSlices list pod `p` (by targetRef).
fn services_of(slices: &Store<EndpointSlice>, p: &Pod) -> BTreeSet<Dirty> {
    let ns = p.namespace().unwrap_or_default();
    let name = p.name_any();
    slices
        .state()
        .iter()
        .filter(|s| s.namespace().as_deref() == Some(ns.as_str()))
        .filter(|s| {
            s.endpoints.iter().any(|e| {
                e.target_ref
                    .as_ref()
                    .is_some_and(|r| r.name.as_deref() == Some(name.as_str()))
            })
        })
        .filter_map(|s| {
            s.labels()
                .get(crate::model::build::LABEL_SERVICE_NAME)
                .cloned()
        })
        .map(|svc| Dirty::Service(ns.clone(), svc))
        .collect()
}

/// Check the gated pods that wait for their condition, on every wake and every
/// [`GATE_CHECK_INTERVAL`], and set it True on those healthy everywhere they are routed.
pub async fn run(
    client: Client,
    pods: Store<Pod>,
    gates: Arc<Gates>,
    clb: ClbClient,
    hooks: Arc<dyn Hooks>,
) {
    loop {
        tokio::select! {
            () = gates.wake.notified() => {}
            () = tokio::time::sleep(GATE_CHECK_INTERVAL) => {}
        }
        let waiting: Vec<Arc<Pod>> = pods
            .state()
            .into_iter()
            .filter(|p| waits_only_for_gate(p) && !gate_true(p))
            .collect();
        if waiting.is_empty() {
            continue;
        }
        gates.requeue_unrouted(&waiting);
        let lbs: BTreeSet<String> = waiting
            .iter()
            .flat_map(|p| pod_ips(p))
            .flat_map(|ip| gates.routes_to(&ip))
            .map(|(lb, _)| lb)
            .collect();
        if lbs.is_empty() {
            continue;
        }
        let req = DescribeTargetHealthRequest {
            load_balancer_ids: lbs.into_iter().collect(),
            ..Default::default()
        };
        let health = match clb.describe_target_health(&req).await {
            Ok(h) => h,
            Err(e) => {
                warn!(error = %e, "DescribeTargetHealth failed; readiness gates are checked again shortly");
                continue;
            }
        };
        for p in &waiting {
            let ips = pod_ips(p);
            let ready = !ips.is_empty()
                && ips.iter().all(|ip| {
                    let r = gates.routes_to(ip);
                    !r.is_empty() && r.iter().all(|(lb, n)| healthy_on(&health, lb, ip, *n))
                });
            if !ready {
                continue;
            }
            match set_gate(&client, p).await {
                Ok(()) => {
                    info!(namespace = %p.namespace().unwrap_or_default(), pod = %p.name_any(), "readiness gate set: the pod's target is healthy on every CLB rule routing to it");
                    hooks.readiness_gate_set();
                }
                Err(e) => {
                    warn!(namespace = %p.namespace().unwrap_or_default(), pod = %p.name_any(), error = %e, "cannot set the readiness gate condition; retrying");
                }
            }
        }
    }
}

/// Patch `status.conditions` of the pod with our condition True (strategic merge: other
/// conditions are kept, ours is merged by type).
async fn set_gate(client: &Client, p: &Pod) -> Result<(), kube::Error> {
    let ns = p.namespace().unwrap_or_default();
    let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let now = k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::now());
    let patch = json!({"status": {"conditions": [{
        "type": READINESS_GATE,
        "status": "True",
        "reason": "TargetHealthy",
        "message": "the pod's target is healthy on every CLB rule routing to it",
        "lastTransitionTime": now,
    }]}});
    debug!(namespace = %ns, pod = %p.name_any(), "setting the readiness gate");
    api.patch_status(
        &p.name_any(),
        &PatchParams::default(),
        &Patch::Strategic(patch),
    )
    .await
    .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clb::types::{ListenerHealth, RuleHealth, TargetHealth};

    fn pod(yaml: serde_json::Value) -> Pod {
        serde_json::from_value(yaml).unwrap()
    }

    fn gated(containers_ready: bool, gate: Option<&str>) -> Pod {
        let mut conditions = vec![
            json!({"type": "ContainersReady", "status": if containers_ready {"True"} else {"False"}}),
        ];
        if let Some(s) = gate {
            conditions.push(json!({"type": READINESS_GATE, "status": s}));
        }
        pod(json!({
            "metadata": {"name": "p", "namespace": "ns"},
            "spec": {"containers": [], "readinessGates": [{"conditionType": READINESS_GATE}]},
            "status": {"podIP": "10.0.0.1", "conditions": conditions}
        }))
    }

    #[test]
    fn a_pod_waits_only_for_the_gate_once_its_containers_are_ready() {
        assert!(waits_only_for_gate(&gated(true, None)));
        assert!(!waits_only_for_gate(&gated(false, None)));
        assert!(gate_true(&gated(true, Some("True"))));
        assert!(!gate_true(&gated(true, Some("False"))));
        let mut other = gated(true, None);
        other.spec.as_mut().unwrap().readiness_gates = None;
        assert!(!waits_only_for_gate(&other), "no gate: not ours");
        assert_eq!(pod_ips(&gated(true, None)), vec!["10.0.0.1".to_string()]);
    }

    fn routing_to(ips: &[&str]) -> DesiredLb {
        use crate::model::{
            DesiredDomain, DesiredListener, DesiredRule, LbSource, Protocol, Target,
        };
        let rule = |url: &str| DesiredRule {
            url: url.into(),
            backend: None,
            targets: ips
                .iter()
                .map(|ip| Target {
                    addr: TargetAddr::Ip(ip.to_string()),
                    port: 8080,
                    weight: 10,
                })
                .collect(),
            redirect: None,
            settings: Default::default(),
        };
        DesiredLb {
            stack: StackId::ingress("ns", "web"),
            source: LbSource::Existing {
                id: "lb-1".into(),
                required_tags: Default::default(),
            },
            tags: Vec::new(),
            listeners: vec![DesiredListener {
                protocol: Protocol::Http,
                port: 80,
                name: "http".into(),
                sni: false,
                domains: vec![DesiredDomain {
                    domain: "a.example.com".into(),
                    host: "a.example.com".into(),
                    default_server: false,
                    certificate: None,
                    rules: vec![rule("/a"), rule("/b")],
                    http2: None,
                    quic: None,
                }],
            }],
            members: Vec::new(),
            retain: false,
        }
    }

    #[test]
    fn only_the_routes_to_pods_waiting_for_their_gate_are_kept() {
        let id = StackId::ingress("ns", "web");
        let desired = routing_to(&["10.0.0.1", "10.0.0.2"]);
        let off = Gates::default();
        off.record(&id, Some("lb-1"), Some(&desired));
        assert!(
            off.routes_to("10.0.0.1").is_empty(),
            "readiness gates off: nothing kept"
        );

        let on = Gates::default();
        let (pods, _) = reflector::store::<Pod>();
        let (slices, _) = reflector::store::<EndpointSlice>();
        let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
        assert!(on.watched.set(Watched { pods, slices, tx }).is_ok());
        let mut waiting = gated(true, None);
        waiting.metadata.uid = Some("u1".into());
        on.pod_event(&watcher::Event::Apply(waiting.clone()));
        on.record(&id, Some("lb-1"), Some(&desired));
        assert_eq!(on.routes_to("10.0.0.1"), vec![("lb-1".to_string(), 2)]);
        assert!(
            on.routes_to("10.0.0.2").is_empty(),
            "no gated pod has this IP"
        );
        // Its condition set: nothing is kept for it from the next deploy on.
        let mut done = gated(true, Some("True"));
        done.metadata.uid = Some("u1".into());
        on.pod_event(&watcher::Event::Apply(done));
        on.record(&id, Some("lb-1"), Some(&desired));
        assert!(on.routes_to("10.0.0.1").is_empty());
        // Waiting again (a new pod on the same IP), then deleted.
        on.pod_event(&watcher::Event::Apply(waiting.clone()));
        on.record(&id, Some("lb-1"), Some(&desired));
        assert_eq!(on.routes_to("10.0.0.1").len(), 1);
        on.pod_event(&watcher::Event::Delete(waiting));
        on.record(&id, Some("lb-1"), Some(&desired));
        assert!(on.routes_to("10.0.0.1").is_empty());
    }

    #[test]
    fn a_waiting_pod_no_recorded_route_leads_to_gets_its_services_requeued_once() {
        let gates = Gates::default();
        let (pods, _) = reflector::store::<Pod>();
        let (slices, mut writer) = reflector::store::<EndpointSlice>();
        let slice: EndpointSlice = serde_json::from_value(json!({
            "metadata": {"name": "web-1", "namespace": "ns",
                         "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": ["10.0.0.1"],
                           "targetRef": {"kind": "Pod", "name": "p", "namespace": "ns"}}]
        }))
        .unwrap();
        writer.apply_watcher_event(&watcher::Event::Apply(slice));
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        assert!(gates.watched.set(Watched { pods, slices, tx }).is_ok());
        let mut p = gated(true, None);
        p.metadata.uid = Some("u1".into());
        let waiting = vec![Arc::new(p)];
        gates.requeue_unrouted(&waiting);
        assert_eq!(
            rx.try_recv().ok(),
            Some(Dirty::Service("ns".into(), "web".into()))
        );
        gates.requeue_unrouted(&waiting);
        assert!(rx.try_recv().is_err(), "requeued once while it waits");
        // Routed: never requeued.
        gates.requeued.lock().unwrap().clear();
        gates.pod_event(&watcher::Event::Apply((*waiting[0]).clone()));
        gates.record(
            &StackId::ingress("ns", "web"),
            Some("lb-1"),
            Some(&routing_to(&["10.0.0.1"])),
        );
        gates.requeue_unrouted(&waiting);
        assert!(rx.try_recv().is_err());
    }

    fn health(targets: Vec<(&str, bool, &str)>) -> Vec<LoadBalancerHealth> {
        vec![LoadBalancerHealth {
            load_balancer_id: "lb-1".into(),
            listeners: vec![ListenerHealth {
                listener_id: "lbl-1".into(),
                rules: targets
                    .into_iter()
                    .map(|(ip, ok, detail)| RuleHealth {
                        location_id: format!("loc-{ip}-{ok}"),
                        targets: vec![TargetHealth {
                            ip: ip.into(),
                            port: 80,
                            health_status: ok,
                            health_status_detail: Some(detail.into()),
                            ..Default::default()
                        }],
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        }]
    }

    #[test]
    fn a_target_must_be_healthy_on_every_rule_that_routes_to_it() {
        let h = health(vec![
            ("10.0.0.1", true, "Alive"),
            ("10.0.0.1", false, "Unknown"),
        ]);
        assert!(
            !healthy_on(&h, "lb-1", "10.0.0.1", 1),
            "unhealthy on one rule"
        );
        let h = health(vec![("10.0.0.1", true, "Alive")]);
        assert!(healthy_on(&h, "lb-1", "10.0.0.1", 1));
        assert!(
            !healthy_on(&h, "lb-1", "10.0.0.1", 2),
            "not registered on the second rule yet"
        );
        assert!(!healthy_on(&h, "lb-2", "10.0.0.1", 1), "another CLB");
        let h = health(vec![("10.0.0.1", false, "Close")]);
        assert!(
            healthy_on(&h, "lb-1", "10.0.0.1", 1),
            "check off: forwarded to"
        );
    }
}
