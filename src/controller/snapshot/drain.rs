//! Graceful drain (Direct mode, class parameter `drainDelaySeconds`): a pod target whose
//! endpoint stops being usable (terminating, not ready) or leaves its EndpointSlice is not
//! deregistered at once. The model is told to keep it with weight 0 (CLB sends it no new
//! requests; requests in flight finish) while its endpoint is still listed, and for at least
//! the drain delay after it was set to weight 0; only when both are over is it deregistered.
//! An endpoint that left its slice during the delay is given back to the model (in its last
//! slice, marked terminating) so the model still sees its port.
//!
//! Only endpoints that were usable (or registered for the readiness gate) are drained: a pod
//! that never served gets no weight-0 target. The state and the clock live here, in the
//! controller; the model stays pure.

use super::grace::{ServiceKey, slice_service};
use crate::model::build::endpoint_usable;
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointSlice};
use kube::ResourceExt;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// `(namespace, pod IP)`.
pub type IpKey = (String, String);

/// What is remembered of one endpoint address of a drained Service.
struct Memo {
    service: ServiceKey,
    /// When it was first seen unusable or gone (None: it is usable).
    since: Option<Instant>,
    /// The endpoint and its slice as last listed (to give it back to the model once gone).
    endpoint: Endpoint,
    slice: Arc<EndpointSlice>,
    /// A requeue at the end of its delay has been asked for.
    requeued: bool,
}

/// Per-address memory of the endpoints of Services that drain.
#[derive(Default)]
pub struct Drain {
    memos: HashMap<IpKey, Memo>,
}

/// The slices to give the model, the addresses that drain, and when to look again.
#[derive(Debug, Default)]
pub struct Drained {
    pub slices: Vec<Arc<EndpointSlice>>,
    /// Addresses to keep registered with weight 0.
    pub draining: BTreeSet<IpKey>,
    /// Services to requeue at the given instant (when a drain delay of theirs ends).
    pub expiring: Vec<(ServiceKey, Instant)>,
}

fn terminating(e: &Endpoint) -> bool {
    e.conditions
        .as_ref()
        .and_then(|c| c.terminating)
        .unwrap_or(false)
}

/// An endpoint given back to the model after it left its slice: not ready, terminating.
fn gone(e: &Endpoint) -> Endpoint {
    Endpoint {
        conditions: Some(EndpointConditions {
            ready: Some(false),
            serving: Some(false),
            terminating: Some(true),
        }),
        ..e.clone()
    }
}

impl Drain {
    /// Addresses remembered (for tests and memory checks).
    pub fn remembered(&self) -> usize {
        self.memos.len()
    }

    /// The slices and draining addresses the model should see at `now`. `delays` holds the
    /// drain delay of each Service an Ingress of a draining class routes to; other Services are
    /// not remembered. `gated` addresses (pods waiting for their readiness gate) count as
    /// serving.
    pub fn apply(
        &mut self,
        now: Instant,
        slices: Vec<Arc<EndpointSlice>>,
        delays: &HashMap<ServiceKey, Duration>,
        gated: &BTreeSet<IpKey>,
    ) -> Drained {
        let mut out = Drained::default();
        if delays.is_empty() {
            self.memos.clear();
            out.slices = slices;
            return out;
        }
        let mut listed: HashSet<IpKey> = HashSet::new();
        for slice in &slices {
            let service = slice_service(slice);
            if !delays.contains_key(&service) {
                continue;
            }
            for ep in &slice.endpoints {
                for addr in &ep.addresses {
                    let key = (service.0.clone(), addr.clone());
                    let serving = endpoint_usable(ep) || (!terminating(ep) && gated.contains(&key));
                    listed.insert(key.clone());
                    match self.memos.get_mut(&key) {
                        Some(m) => {
                            m.endpoint = ep.clone();
                            m.slice = slice.clone();
                            m.service = service.clone();
                            if serving {
                                m.since = None;
                                m.requeued = false;
                            } else if m.since.is_none() {
                                m.since = Some(now);
                            }
                        }
                        None if serving => {
                            self.memos.insert(
                                key,
                                Memo {
                                    service: service.clone(),
                                    since: None,
                                    endpoint: ep.clone(),
                                    slice: slice.clone(),
                                    requeued: false,
                                },
                            );
                        }
                        // Never served: nothing to drain.
                        None => {}
                    }
                }
            }
        }
        // Addresses gone from every slice drain from now; expired ones and those of Services
        // that no longer drain are forgotten.
        let mut back: HashMap<(String, String), Vec<Endpoint>> = HashMap::new();
        let mut remembered_slices: HashMap<(String, String), Arc<EndpointSlice>> = HashMap::new();
        self.memos.retain(|key, m| {
            let Some(delay) = delays.get(&m.service) else {
                return false;
            };
            let is_listed = listed.contains(key);
            if !is_listed && m.since.is_none() {
                m.since = Some(now);
            }
            let Some(since) = m.since else {
                return true;
            };
            let end = since + *delay;
            if is_listed {
                out.draining.insert(key.clone());
                return true;
            }
            if now >= end {
                return false;
            }
            out.draining.insert(key.clone());
            if !m.requeued {
                m.requeued = true;
                out.expiring.push((m.service.clone(), end));
            }
            let slice_key = (m.slice.namespace().unwrap_or_default(), m.slice.name_any());
            let mut e = gone(&m.endpoint);
            e.addresses = vec![key.1.clone()];
            back.entry(slice_key.clone()).or_default().push(e);
            remembered_slices.insert(slice_key, m.slice.clone());
            true
        });
        out.slices = slices;
        if back.is_empty() {
            return out;
        }
        for s in &mut out.slices {
            let k = (s.namespace().unwrap_or_default(), s.name_any());
            if let Some(extra) = back.remove(&k) {
                Arc::make_mut(s).endpoints.extend(extra);
            }
        }
        // Slices that are gone altogether come back with only their draining endpoints.
        for (k, extra) in back {
            if let Some(old) = remembered_slices.get(&k) {
                let mut s = (**old).clone();
                s.endpoints = extra;
                out.slices.push(Arc::new(s));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::build::LABEL_SERVICE_NAME;
    use k8s_openapi::api::discovery::v1::EndpointPort;
    use kube::api::ObjectMeta;

    fn ep(ip: &str, ready: bool, term: bool) -> Endpoint {
        Endpoint {
            addresses: vec![ip.into()],
            conditions: Some(EndpointConditions {
                ready: Some(ready),
                serving: Some(ready),
                terminating: Some(term),
            }),
            ..Default::default()
        }
    }

    fn slice(name: &str, eps: Vec<Endpoint>) -> Arc<EndpointSlice> {
        Arc::new(EndpointSlice {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                labels: Some([(LABEL_SERVICE_NAME.to_string(), "web".to_string())].into()),
                ..Default::default()
            },
            address_type: "IPv4".into(),
            endpoints: eps,
            ports: Some(vec![EndpointPort {
                port: Some(8080),
                ..Default::default()
            }]),
        })
    }

    fn delays(secs: u64) -> HashMap<ServiceKey, Duration> {
        [(
            ("ns".to_string(), "web".to_string()),
            Duration::from_secs(secs),
        )]
        .into()
    }

    fn key(ip: &str) -> IpKey {
        ("ns".into(), ip.into())
    }

    #[test]
    fn a_terminating_endpoint_drains_while_listed_and_until_the_delay_is_over() {
        let mut d = Drain::default();
        let t0 = Instant::now();
        let none = BTreeSet::new();
        let out = d.apply(
            t0,
            vec![slice("s", vec![ep("10.0.0.1", true, false)])],
            &delays(30),
            &none,
        );
        assert!(out.draining.is_empty());
        // Terminating, still listed: drains, even past the delay.
        let terminating = vec![slice("s", vec![ep("10.0.0.1", false, true)])];
        let out = d.apply(
            t0 + Duration::from_secs(1),
            terminating.clone(),
            &delays(30),
            &none,
        );
        assert_eq!(out.draining, [key("10.0.0.1")].into());
        let out = d.apply(
            t0 + Duration::from_secs(100),
            terminating,
            &delays(30),
            &none,
        );
        assert_eq!(
            out.draining,
            [key("10.0.0.1")].into(),
            "listed: still draining"
        );
        // Gone from the slice after the delay: deregistered.
        let out = d.apply(
            t0 + Duration::from_secs(101),
            vec![slice("s", vec![])],
            &delays(30),
            &none,
        );
        assert!(out.draining.is_empty());
        assert_eq!(d.remembered(), 0);
    }

    #[test]
    fn an_endpoint_that_leaves_its_slice_early_comes_back_terminating_until_the_delay_ends() {
        let mut d = Drain::default();
        let t0 = Instant::now();
        let none = BTreeSet::new();
        d.apply(
            t0,
            vec![slice(
                "s",
                vec![ep("10.0.0.1", true, false), ep("10.0.0.2", true, false)],
            )],
            &delays(30),
            &none,
        );
        let out = d.apply(
            t0 + Duration::from_secs(1),
            vec![slice("s", vec![ep("10.0.0.2", true, false)])],
            &delays(30),
            &none,
        );
        assert_eq!(out.draining, [key("10.0.0.1")].into());
        assert_eq!(out.expiring.len(), 1, "a requeue at the end of the delay");
        let eps = &out.slices[0].endpoints;
        assert_eq!(eps.len(), 2, "given back to the model");
        assert!(
            eps.iter()
                .any(|e| e.addresses == ["10.0.0.1"] && terminating(e))
        );
        // The whole slice gone: it comes back with only the draining endpoint.
        let out = d.apply(t0 + Duration::from_secs(2), vec![], &delays(30), &none);
        assert_eq!(out.slices.len(), 1);
        assert_eq!(out.draining.len(), 2);
        let out = d.apply(t0 + Duration::from_secs(32), vec![], &delays(30), &none);
        assert!(out.draining.is_empty() && out.slices.is_empty());
    }

    #[test]
    fn a_pod_that_never_served_is_not_drained_and_services_without_a_delay_are_not_remembered() {
        let mut d = Drain::default();
        let t0 = Instant::now();
        let none = BTreeSet::new();
        let out = d.apply(
            t0,
            vec![slice("s", vec![ep("10.0.0.3", false, false)])],
            &delays(30),
            &none,
        );
        assert!(out.draining.is_empty());
        assert_eq!(d.remembered(), 0);
        d.apply(
            t0,
            vec![slice("s", vec![ep("10.0.0.1", true, false)])],
            &delays(30),
            &none,
        );
        assert_eq!(d.remembered(), 1);
        let out = d.apply(t0, vec![slice("s", vec![])], &HashMap::new(), &none);
        assert!(out.draining.is_empty());
        assert_eq!(d.remembered(), 0);
    }

    #[test]
    fn a_gated_pod_counts_as_serving_and_drains_when_it_turns_terminating() {
        let mut d = Drain::default();
        let t0 = Instant::now();
        let gated: BTreeSet<IpKey> = [key("10.0.0.4")].into();
        d.apply(
            t0,
            vec![slice("s", vec![ep("10.0.0.4", false, false)])],
            &delays(5),
            &gated,
        );
        assert_eq!(d.remembered(), 1);
        let out = d.apply(
            t0,
            vec![slice("s", vec![ep("10.0.0.4", false, true)])],
            &delays(5),
            &gated,
        );
        assert_eq!(out.draining, [key("10.0.0.4")].into());
    }
}
