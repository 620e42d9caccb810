//! Endpoint grace: when a Service's endpoints drop to none while the Service itself stays the
//! same (its EndpointSlice is being replaced: deleted before its successor is written, or
//! written empty for a moment), the model is fed the Service's last non-empty slices for a
//! bounded period instead of nothing, so its CLB rules keep their targets. After the period
//! empty is empty. The state and the clock live here, in the controller; the model stays pure.
//!
//! No grace is given when it would serve the wrong thing or nothing needs it:
//! - the Service is gone from the cache (deleted): its paths are unserved at once, as asked;
//! - its selector or ports changed: the old endpoints are not the Service's any more;
//! - an Ingress stops referencing it: the model no longer asks for its targets at all.
//!
//! A Service deleted and re-created with the same selector and ports within one pass keeps its
//! grace (its old pods are what the new one selects).

use crate::model::build::{LABEL_SERVICE_NAME, endpoint_usable};
use k8s_openapi::api::core::v1::{Service, ServicePort};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::ResourceExt;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// (namespace, Service name).
pub type ServiceKey = (String, String);

/// What of a Service decides which endpoints and ports its slices hold.
#[derive(Debug, Clone, PartialEq)]
struct Shape {
    selector: Option<BTreeMap<String, String>>,
    ports: Vec<ServicePort>,
}

impl Shape {
    fn of(svc: &Service) -> Self {
        let spec = svc.spec.as_ref();
        Self {
            selector: spec.and_then(|s| s.selector.clone()),
            ports: spec.and_then(|s| s.ports.clone()).unwrap_or_default(),
        }
    }
}

/// What is remembered of one Service.
struct Memo {
    shape: Shape,
    /// Its last slices that had a usable endpoint.
    slices: Vec<Arc<EndpointSlice>>,
    /// When its endpoints were first seen empty (None: they are not).
    empty_since: Option<Instant>,
    /// A requeue at the end of the current grace has been asked for.
    requeued: bool,
}

/// Per-Service memory of the last non-empty endpoints.
pub struct EndpointGrace {
    period: Duration,
    memos: HashMap<ServiceKey, Memo>,
}

/// The slices to give the model, and what the grace did this pass.
#[derive(Debug, Default)]
pub struct Applied {
    pub slices: Vec<Arc<EndpointSlice>>,
    /// Services currently served from remembered endpoints.
    pub active: usize,
    /// Services whose grace started in this pass.
    pub started: Vec<ServiceKey>,
    /// Services to requeue at the given instant (when their grace ends); each grace is listed
    /// once.
    pub expiring: Vec<(ServiceKey, Instant)>,
}

/// The Service an EndpointSlice belongs to (its `kubernetes.io/service-name` label).
pub(super) fn slice_service(s: &EndpointSlice) -> ServiceKey {
    (
        s.namespace().unwrap_or_default(),
        s.labels()
            .get(LABEL_SERVICE_NAME)
            .cloned()
            .unwrap_or_default(),
    )
}

fn has_endpoints(slices: &[Arc<EndpointSlice>]) -> bool {
    slices.iter().any(|s| {
        s.endpoints
            .iter()
            .any(|e| endpoint_usable(e) && !e.addresses.is_empty())
    })
}

impl EndpointGrace {
    /// A grace of `period` (zero: none).
    pub fn new(period: Duration) -> Self {
        Self {
            period,
            memos: HashMap::new(),
        }
    }

    /// Services currently remembered (for tests and memory checks).
    pub fn remembered(&self) -> usize {
        self.memos.len()
    }

    /// The slices the model should see at `now`, given the cached `services` and `slices`;
    /// only Services `routed` says an Ingress routes to are remembered and given a grace.
    pub fn apply(
        &mut self,
        now: Instant,
        services: &[Arc<Service>],
        slices: Vec<Arc<EndpointSlice>>,
        routed: impl Fn(&ServiceKey) -> bool,
    ) -> Applied {
        let mut out = Applied::default();
        if self.period.is_zero() {
            self.memos.clear();
            out.slices = slices;
            return out;
        }
        let mut by_service: HashMap<ServiceKey, Vec<Arc<EndpointSlice>>> = HashMap::new();
        for s in slices {
            by_service.entry(slice_service(&s)).or_default().push(s);
        }
        let mut present: HashSet<ServiceKey> = HashSet::with_capacity(services.len());
        out.slices.reserve(by_service.values().map(Vec::len).sum());
        for svc in services {
            let key = (svc.namespace().unwrap_or_default(), svc.name_any());
            let current = by_service.remove(&key).unwrap_or_default();
            if !routed(&key) {
                out.slices.extend(current);
                continue;
            }
            present.insert(key.clone());
            let shape = Shape::of(svc);
            if has_endpoints(&current) {
                self.memos.insert(
                    key,
                    Memo {
                        shape,
                        slices: current.clone(),
                        empty_since: None,
                        requeued: false,
                    },
                );
                out.slices.extend(current);
                continue;
            }
            let keep = match self.memos.get_mut(&key) {
                Some(m) if m.shape == shape => {
                    let since = *m.empty_since.get_or_insert_with(|| {
                        out.started.push(key.clone());
                        now
                    });
                    let end = since + self.period;
                    if now < end {
                        out.active += 1;
                        if !m.requeued {
                            m.requeued = true;
                            out.expiring.push((key.clone(), end));
                        }
                        out.slices.extend(m.slices.iter().cloned());
                        true
                    } else {
                        false
                    }
                }
                _ => false,
            };
            if !keep {
                // Expired, reshaped or never had endpoints: empty is empty.
                self.memos.remove(&key);
                out.slices.extend(current);
            }
        }
        // Slices of Services not in the cache go to the model as they are; what is remembered
        // of deleted Services, and of Services no Ingress routes to any more, is dropped.
        out.slices.extend(by_service.into_values().flatten());
        self.memos.retain(|k, _| present.contains(k));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ServiceSpec;
    use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions};
    use kube::api::ObjectMeta;

    fn service(name: &str, selector: &str) -> Arc<Service> {
        Arc::new(Service {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                ..Default::default()
            },
            spec: Some(ServiceSpec {
                selector: Some([("app".to_string(), selector.to_string())].into()),
                ports: Some(vec![ServicePort {
                    name: Some("http".into()),
                    port: 80,
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        })
    }

    fn slice(name: &str, service: &str, ips: &[&str]) -> Arc<EndpointSlice> {
        Arc::new(EndpointSlice {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                labels: Some([(LABEL_SERVICE_NAME.to_string(), service.to_string())].into()),
                ..Default::default()
            },
            address_type: "IPv4".into(),
            endpoints: ips
                .iter()
                .map(|ip| Endpoint {
                    addresses: vec![ip.to_string()],
                    conditions: Some(EndpointConditions {
                        ready: Some(true),
                        ..Default::default()
                    }),
                    ..Default::default()
                })
                .collect(),
            ports: None,
        })
    }

    fn names(a: &Applied) -> Vec<String> {
        let mut v: Vec<String> = a.slices.iter().map(|s| s.name_any()).collect();
        v.sort();
        v
    }

    const PERIOD: Duration = Duration::from_secs(30);

    #[tokio::test(start_paused = true)]
    async fn a_replaced_slice_keeps_the_last_endpoints_until_the_grace_ends() {
        let mut g = EndpointGrace::new(PERIOD);
        let web = vec![service("web", "web")];
        let a = g.apply(
            Instant::now(),
            &web,
            vec![slice("web-1", "web", &["10.0.0.1"])],
            |_| true,
        );
        assert_eq!(
            (names(&a), a.active, a.started.len()),
            (vec!["web-1".into()], 0, 0)
        );

        // The slice is deleted: the model still sees it, and a requeue is asked for its end.
        let t0 = Instant::now();
        let a = g.apply(t0, &web, vec![], |_| true);
        assert_eq!(
            (names(&a), a.active, a.started.len()),
            (vec!["web-1".into()], 1, 1)
        );
        assert_eq!(a.expiring, vec![(("ns".into(), "web".into()), t0 + PERIOD)]);

        // Still within the grace: the same answer, no second requeue.
        tokio::time::advance(PERIOD - Duration::from_secs(1)).await;
        let a = g.apply(
            Instant::now(),
            &web,
            vec![slice("web-2", "web", &[])],
            |_| true,
        );
        assert_eq!(
            (names(&a), a.active, a.started.len()),
            (vec!["web-1".into()], 1, 0)
        );
        assert!(a.expiring.is_empty());

        // After the grace, empty is empty.
        tokio::time::advance(Duration::from_secs(1)).await;
        let a = g.apply(
            Instant::now(),
            &web,
            vec![slice("web-2", "web", &[])],
            |_| true,
        );
        assert_eq!((names(&a), a.active), (vec!["web-2".into()], 0));
        assert_eq!(g.remembered(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn endpoints_that_come_back_end_the_grace_and_a_later_drop_starts_a_new_one() {
        let mut g = EndpointGrace::new(PERIOD);
        let web = vec![service("web", "web")];
        g.apply(
            Instant::now(),
            &web,
            vec![slice("web-1", "web", &["10.0.0.1"])],
            |_| true,
        );
        g.apply(Instant::now(), &web, vec![], |_| true);
        tokio::time::advance(Duration::from_secs(20)).await;
        let a = g.apply(
            Instant::now(),
            &web,
            vec![slice("web-2", "web", &["10.0.0.2"])],
            |_| true,
        );
        assert_eq!((names(&a), a.active), (vec!["web-2".into()], 0));
        tokio::time::advance(Duration::from_secs(20)).await;
        let t = Instant::now();
        let a = g.apply(t, &web, vec![], |_| true);
        assert_eq!(
            (names(&a), a.active, a.started.len()),
            (vec!["web-2".into()], 1, 1)
        );
        assert_eq!(a.expiring, vec![(("ns".into(), "web".into()), t + PERIOD)]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_deleted_or_reshaped_service_gets_no_grace() {
        let mut g = EndpointGrace::new(PERIOD);
        let web = vec![service("web", "web"), service("api", "api")];
        g.apply(
            Instant::now(),
            &web,
            vec![
                slice("web-1", "web", &["10.0.0.1"]),
                slice("api-1", "api", &["10.0.1.1"]),
            ],
            |_| true,
        );
        // api deleted (its slice lingers, empty), web's selector changed.
        let after = vec![service("web", "other")];
        let a = g.apply(
            Instant::now(),
            &after,
            vec![slice("api-1", "api", &[]), slice("web-1", "web", &[])],
            |_| true,
        );
        assert_eq!(
            (names(&a), a.active, a.started.len()),
            (vec!["api-1".into(), "web-1".into()], 0, 0)
        );
        assert!(a.slices.iter().all(|s| s.endpoints.is_empty()));
        assert_eq!(g.remembered(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_service_no_ingress_routes_to_gets_no_grace() {
        let mut g = EndpointGrace::new(PERIOD);
        let web = vec![service("web", "web")];
        let routed = |k: &ServiceKey| k.1 != "web";
        g.apply(
            Instant::now(),
            &web,
            vec![slice("web-1", "web", &["10.0.0.1"])],
            routed,
        );
        assert_eq!(g.remembered(), 0);
        let a = g.apply(Instant::now(), &web, vec![], routed);
        assert!(a.slices.is_empty() && a.active == 0 && a.started.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_zero_period_disables_the_grace() {
        let mut g = EndpointGrace::new(Duration::ZERO);
        let web = vec![service("web", "web")];
        g.apply(
            Instant::now(),
            &web,
            vec![slice("web-1", "web", &["10.0.0.1"])],
            |_| true,
        );
        let a = g.apply(Instant::now(), &web, vec![], |_| true);
        assert!(a.slices.is_empty() && a.active == 0);
    }

    #[tokio::test(start_paused = true)]
    async fn not_ready_endpoints_count_as_none() {
        let mut g = EndpointGrace::new(PERIOD);
        let web = vec![service("web", "web")];
        g.apply(
            Instant::now(),
            &web,
            vec![slice("web-1", "web", &["10.0.0.1"])],
            |_| true,
        );
        let mut unready = (*slice("web-2", "web", &["10.0.0.2"])).clone();
        for e in &mut unready.endpoints {
            e.conditions = Some(EndpointConditions {
                ready: Some(false),
                serving: Some(false),
                terminating: Some(true),
            });
        }
        let a = g.apply(Instant::now(), &web, vec![Arc::new(unready)], |_| true);
        assert_eq!((names(&a), a.active), (vec!["web-1".into()], 1));
    }
}
