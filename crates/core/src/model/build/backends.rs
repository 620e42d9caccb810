//! Backends -> targets: Service ports, EndpointSlices, Nodes (NodePort) and Pods (Direct), the
//! per-stack backend slots and target weights.

use super::*;

impl<'a> Index<'a> {
    pub(super) fn resolve_backend(
        &self,
        ns: &str,
        backend: &IngressBackend,
        mode: TargetMode,
        weights: Weights<'_>,
        field: BackendField,
        object: &ObjectRef,
    ) -> Result<Resolved, Problem> {
        let problem = |reason, field: String, message: String| Problem {
            object: object.clone(),
            field,
            reason,
            effect: Effect::PathUnserved,
            message,
        };
        let Some(svc_ref) = backend.service.as_ref() else {
            return Err(problem(
                Reason::UnsupportedBackend,
                field.at(".resource"),
                "Resource backends are not supported by CLB; the path serves no target".into(),
            ));
        };
        if svc_ref.name.contains('/') {
            return Err(problem(
                Reason::UnsupportedBackend,
                field.at(".service.name"),
                format!(
                    "{:?}: an Ingress can only route to Services in its own namespace",
                    svc_ref.name
                ),
            ));
        }
        let entry = self.services.get(ns, &svc_ref.name);
        let Some(svc) = entry.and_then(|e| e.service) else {
            return Err(problem(
                Reason::ServiceNotFound,
                field.at(".service.name"),
                format!("Service {ns}/{} not found", svc_ref.name),
            ));
        };
        let default_spec = Default::default();
        let spec: &k8s_openapi::api::core::v1::ServiceSpec =
            svc.spec.as_ref().unwrap_or(&default_spec);
        if spec.type_.as_deref() == Some("ExternalName") {
            return Err(problem(
                Reason::UnsupportedServiceType,
                field.at(".service.name"),
                format!(
                    "Service {ns}/{} is of type ExternalName, which CLB cannot target",
                    svc_ref.name
                ),
            ));
        }
        let want = svc_ref.port.as_ref();
        let port = find_port(spec, want);
        let port_label = match want {
            Some(w) => match (&w.name, w.number) {
                (Some(n), _) if !n.is_empty() => n.clone(),
                (_, Some(num)) => num.to_string(),
                _ => String::new(),
            },
            None => String::new(),
        };
        let Some(port) = port else {
            return Err(problem(
                Reason::ServicePortNotFound,
                field.at(".service.port"),
                format!("Service {ns}/{} has no port {port_label:?}", svc_ref.name),
            ));
        };
        if port.protocol.as_deref().is_some_and(|p| p != "TCP") {
            return Err(problem(
                Reason::UnsupportedProtocol,
                field.at(".service.port"),
                format!(
                    "port {port_label:?} of Service {ns}/{} is {}; layer-7 CLB needs TCP",
                    svc_ref.name,
                    port.protocol.as_deref().unwrap_or("")
                ),
            ));
        }
        let slices = entry.map(ServiceEntry::slices).unwrap_or_default();
        let port_name = port.name.as_deref().unwrap_or_default();
        let mut targets: Vec<Target> = Vec::new();
        match mode {
            TargetMode::Direct => {
                for slice in slices {
                    if slice.address_type != "IPv4" {
                        continue;
                    }
                    let Some(ep_port) = slice.ports.iter().flatten().find(|p| {
                        p.name.as_deref().unwrap_or_default() == port_name
                            && p.protocol.as_deref().unwrap_or("TCP") == "TCP"
                    }) else {
                        continue;
                    };
                    let Some(num) = ep_port.port.and_then(|p| u16::try_from(p).ok()) else {
                        continue;
                    };
                    targets.reserve(slice.endpoints.len());
                    for ep in &slice.endpoints {
                        let usable = endpoint_usable(ep);
                        let terminating = ep
                            .conditions
                            .as_ref()
                            .and_then(|c| c.terminating)
                            .unwrap_or(false);
                        let weight = weights.for_pod(
                            ep.target_ref
                                .as_ref()
                                .filter(|r| r.kind.as_deref().is_none_or(|k| k == "Pod"))
                                .and_then(|r| r.name.as_deref()),
                        );
                        for addr in &ep.addresses {
                            let key = (ns.to_string(), addr.clone());
                            let weight =
                                if usable || (!terminating && self.snap.gated.contains(&key)) {
                                    weight
                                } else if self.snap.draining.contains(&key) {
                                    0
                                } else {
                                    continue;
                                };
                            targets.push(Target {
                                addr: TargetAddr::Ip(addr.clone()),
                                port: num,
                                weight,
                            });
                        }
                    }
                }
            }
            TargetMode::NodePort => {
                let Some(node_port) = port.node_port.and_then(|p| u16::try_from(p).ok()) else {
                    return Err(problem(
                        Reason::NoNodePort,
                        field.at(".service.port"),
                        format!(
                            "Service {ns}/{} port {} has no nodePort (type {}); use type NodePort or LoadBalancer, or direct mode",
                            svc_ref.name,
                            port_label,
                            spec.type_.as_deref().unwrap_or("ClusterIP")
                        ),
                    ));
                };
                if spec.external_traffic_policy.as_deref() == Some("Local") {
                    // Only nodes running ready pods receive traffic, weighted by pod count.
                    let mut per_node: BTreeMap<&str, u32> = BTreeMap::new();
                    for slice in slices {
                        for ep in slice.endpoints.iter().filter(|e| endpoint_usable(e)) {
                            if let Some(n) = ep.node_name.as_deref() {
                                *per_node.entry(n).or_default() += 1;
                            }
                        }
                    }
                    for (node, inst) in &self.nodes {
                        if let Some(count) = per_node.get(node) {
                            targets.push(Target {
                                addr: TargetAddr::Instance(inst.clone()),
                                port: node_port,
                                weight: (weights.default * count).min(MAX_WEIGHT),
                            });
                        }
                    }
                } else {
                    targets.reserve(self.nodes.len());
                    for (_, inst) in &self.nodes {
                        targets.push(Target {
                            addr: TargetAddr::Instance(inst.clone()),
                            port: node_port,
                            weight: weights.default,
                        });
                    }
                }
            }
        }
        // Sorted and without duplicates, as a set of targets.
        targets.sort_unstable();
        targets.dedup();
        Ok(Resolved {
            backend: BackendRef {
                namespace: ns.to_string(),
                service: svc_ref.name.clone(),
                port: port_label,
                mode,
            },
            targets,
            settings: RuleSettings::default(),
            path_settings: settings::PathSettings::default(),
        })
    }
}

pub(super) fn node_ready(n: &Node) -> bool {
    if n.spec.as_ref().and_then(|s| s.unschedulable) == Some(true) {
        return false;
    }
    n.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
        .is_some_and(|c| c.status == "True")
}

/// The CVM instance id from a TKE node's `spec.providerID` (`qcloud:///<zone>/ins-xxxxxxxx`).
pub fn instance_id(provider_id: &str) -> Option<String> {
    let last = provider_id.rsplit('/').next()?;
    (last.starts_with("ins-") && last.len() > 4).then(|| last.to_string())
}

/// Whether an endpoint may receive traffic: ready, or serving and not terminating.
pub fn endpoint_usable(e: &k8s_openapi::api::discovery::v1::Endpoint) -> bool {
    match e.conditions.as_ref() {
        None => true,
        Some(c) => match c.ready {
            Some(true) | None => c.terminating != Some(true) || c.ready == Some(true),
            Some(false) => c.serving == Some(true) && c.terminating != Some(true),
        },
    }
}

/// A Service and its EndpointSlices (sorted by name).
pub(super) struct ServiceEntry<'a> {
    pub(super) namespace: &'a str,
    pub(super) name: &'a str,
    pub(super) service: Option<&'a Service>,
    /// The only slice (most Services have one), without a Vec of its own.
    pub(super) one_slice: Option<&'a EndpointSlice>,
    /// All slices once there is more than one.
    pub(super) more_slices: Vec<&'a EndpointSlice>,
    /// The next entry whose key has the same 64-bit hash (u32::MAX: none).
    pub(super) next: u32,
}

impl<'a> ServiceEntry<'a> {
    pub(super) fn add_slice(&mut self, s: &'a EndpointSlice) {
        match self.one_slice.take() {
            None if self.more_slices.is_empty() => self.one_slice = Some(s),
            None => self.more_slices.push(s),
            Some(one) => self.more_slices = vec![one, s],
        }
    }

    pub(super) fn slices(&self) -> &[&'a EndpointSlice] {
        match &self.one_slice {
            Some(_) => self.one_slice.as_slice(),
            None => &self.more_slices,
        }
    }
}

/// (namespace, name) -> `ServiceEntry`. A compact table of full key hashes to entry numbers
/// (16 bytes a slot, so lookups in big clusters stay cache- and TLB-friendly) over a dense
/// entry list; keys whose 64-bit hashes collide are chained.
pub(super) struct ServiceIndex<'a> {
    pub(super) table: std::collections::HashMap<u64, u32, PassThrough>,
    pub(super) entries: Vec<ServiceEntry<'a>>,
}

/// The keys are already FxHash values.
#[derive(Default, Clone, Copy)]
pub(super) struct PassThrough;

impl std::hash::BuildHasher for PassThrough {
    type Hasher = PassThroughHasher;
    fn build_hasher(&self) -> PassThroughHasher {
        PassThroughHasher(0)
    }
}

pub(super) struct PassThroughHasher(u64);

impl std::hash::Hasher for PassThroughHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | u64::from(b);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

pub(super) fn service_key_hash(ns: &str, name: &str) -> u64 {
    use std::hash::BuildHasher;
    rustc_hash::FxBuildHasher.hash_one((ns, name))
}

impl<'a> ServiceIndex<'a> {
    pub(super) fn with_capacity(n: usize) -> Self {
        Self {
            table: std::collections::HashMap::with_capacity_and_hasher(n, PassThrough),
            entries: Vec::with_capacity(n),
        }
    }

    pub(super) fn get(&self, ns: &str, name: &str) -> Option<&ServiceEntry<'a>> {
        let mut i = *self.table.get(&service_key_hash(ns, name))?;
        loop {
            let e = &self.entries[i as usize];
            if e.namespace == ns && e.name == name {
                return Some(e);
            }
            if e.next == u32::MAX {
                return None;
            }
            i = e.next;
        }
    }

    pub(super) fn entry(&mut self, ns: &'a str, name: &'a str) -> &mut ServiceEntry<'a> {
        let new = u32::try_from(self.entries.len()).expect("fewer than 2^32 Services");
        let mut at = match self.table.entry(service_key_hash(ns, name)) {
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(new);
                None
            }
            std::collections::hash_map::Entry::Occupied(o) => Some(*o.get()),
        };
        // Walk the chain of this hash; append a new entry at its end if the key is not there.
        while let Some(i) = at {
            let e = &self.entries[i as usize];
            if e.namespace == ns && e.name == name {
                return &mut self.entries[i as usize];
            }
            if e.next == u32::MAX {
                self.entries[i as usize].next = new;
                break;
            }
            at = Some(e.next);
        }
        self.entries.push(ServiceEntry {
            namespace: ns,
            name,
            service: None,
            one_slice: None,
            more_slices: Vec::new(),
            next: u32::MAX,
        });
        self.entries.last_mut().expect("just pushed")
    }

    pub(super) fn sort_slices(&mut self) {
        for e in &mut self.entries {
            if e.more_slices.len() > 1 {
                e.more_slices.sort_by_key(|s| s.metadata.name.as_deref());
            }
        }
    }
}

/// Target weights of one backend (TKE's `ingress.cloud.tencent.com/lb-rs-weight`).
#[derive(Debug, Clone, Copy)]
pub(super) struct Weights<'w> {
    pub(super) default: u32,
    /// (StatefulSet name, weight): pods `<name>-<ordinal>` get that weight (Direct mode).
    pub(super) stateful_sets: &'w [(String, u32)],
}

impl Weights<'_> {
    pub(super) const DEFAULT: Weights<'static> = Weights {
        default: DEFAULT_WEIGHT,
        stateful_sets: &[],
    };

    pub(super) fn for_pod(&self, pod: Option<&str>) -> u32 {
        if self.stateful_sets.is_empty() {
            return self.default;
        }
        let Some(pod) = pod else { return self.default };
        self.stateful_sets
            .iter()
            .find(|(sts, _)| {
                pod.strip_prefix(sts.as_str())
                    .and_then(|r| r.strip_prefix('-'))
                    .is_some_and(|ord| !ord.is_empty() && ord.bytes().all(|b| b.is_ascii_digit()))
            })
            .map_or(self.default, |(_, w)| *w)
    }
}

/// The port of a Service a backend names (by name, else by number).
pub(super) fn find_port<'s>(
    spec: &'s k8s_openapi::api::core::v1::ServiceSpec,
    want: Option<&k8s_openapi::api::networking::v1::ServiceBackendPort>,
) -> Option<&'s k8s_openapi::api::core::v1::ServicePort> {
    spec.ports.iter().flatten().find(|p| match want {
        Some(w) => match (&w.name, w.number) {
            (Some(n), _) if !n.is_empty() => p.name.as_deref() == Some(n.as_str()),
            (_, Some(num)) => p.port == num,
            _ => false,
        },
        None => false,
    })
}

#[derive(Debug, Clone)]
pub(super) struct Resolved {
    pub(super) backend: BackendRef,
    pub(super) targets: Vec<Target>,
    /// Settings of the Service port (its `clb-ingress.io/backend-config`).
    pub(super) settings: RuleSettings,
    /// Settings of the path (path annotation, TkeServiceConfig per listener), over the port's.
    pub(super) path_settings: settings::PathSettings,
}

impl Resolved {
    pub(super) fn apply_path_settings(&mut self, over: &settings::PathSettings) {
        self.path_settings = over.clone();
    }

    /// The settings of this backend's rules on listener (protocol, port): Service port, then
    /// the TkeServiceConfig rule of that listener, then the path annotation.
    pub(super) fn settings_on(&self, listener: (Protocol, u16)) -> RuleSettings {
        let mut s = self.settings.clone();
        for (l, t) in &self.path_settings.per_listener {
            if *l == listener {
                s = s.overlay(t);
            }
        }
        s.overlay(&self.path_settings.all)
    }
}

/// A backend slot of one listener: resolved targets, or nothing (the path serves no target).
pub(super) type Slot = Option<Resolved>;

/// Where a backend is in its Ingress; the field path is only formatted for a Problem.
#[derive(Debug, Clone, Copy)]
pub(super) enum BackendField {
    /// `spec.rules[ri].http.paths[pi].backend`
    Path { ri: usize, pi: usize },
    /// `spec.defaultBackend`
    Default,
}

impl BackendField {
    /// The backend's field path followed by `suffix`.
    pub(super) fn at(self, suffix: &str) -> String {
        match self {
            BackendField::Path { ri, pi } => {
                format!("{}.backend{suffix}", path_field(ri, pi))
            }
            BackendField::Default => format!("spec.defaultBackend{suffix}"),
        }
    }
}

pub(super) fn path_field(ri: usize, pi: usize) -> String {
    format!("spec.rules[{ri}].http.paths[{pi}]")
}

/// What makes two backends resolve alike within a stack: (namespace, service, port, mode).
pub(super) type ResolveKey<'a> = (
    &'a str,
    &'a str,
    Option<(Option<&'a str>, Option<i32>)>,
    TargetMode,
    WeightKey,
    PathKey,
);

/// A path with settings of its own gets its own slot: (member, rule, path) of the Ingress.
pub(super) type PathKey = Option<(usize, usize, usize)>;

/// What makes two backends weighted alike: (default weight, (member, lb-rs-weight group)).
pub(super) type WeightKey = (u32, Option<(usize, usize)>);

impl<'i, 'a> StackBuilder<'i, 'a> {
    /// Resolve a backend into a slot; None only if the Ingress must be parked. A backend
    /// already resolved in this stack shares its slot.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn slot(
        &mut self,
        ns: &'a str,
        b: &'a IngressBackend,
        mode: TargetMode,
        (weight_key, weights): (WeightKey, Weights<'_>),
        field: BackendField,
        object: &ObjectRef,
        (path_key, over): (PathKey, &settings::PathSettings),
    ) -> Option<usize> {
        let path_key = if over.is_empty() { None } else { path_key };
        let key: Option<ResolveKey<'a>> = b.service.as_ref().map(|s| {
            (
                ns,
                s.name.as_str(),
                s.port.as_ref().map(|p| (p.name.as_deref(), p.number)),
                mode,
                weight_key,
                path_key,
            )
        });
        if let Some(&i) = key.as_ref().and_then(|k| self.resolved.get(k)) {
            return Some(i);
        }
        let limit = self.index.snap.limits.targets_per_rule;
        let slot = match self
            .index
            .resolve_backend(ns, b, mode, weights, field, object)
        {
            Ok(r) if r.targets.len() > limit => {
                self.park(
                    object,
                    field.at(""),
                    Reason::TooManyTargets,
                    format!(
                        "{} has {} targets; a CLB rule takes at most {limit}",
                        r.backend,
                        r.targets.len()
                    ),
                );
                return None;
            }
            Ok(mut r) => {
                r.settings = self.port_settings(ns, b, object, &field.at(""));
                r.apply_path_settings(over);
                Some(r)
            }
            Err(p) => {
                self.problems.push(p);
                None
            }
        };
        let ok = slot.is_some();
        self.slots.push(slot);
        let i = self.slots.len() - 1;
        if ok && let Some(k) = key {
            self.resolved.insert(k, i);
        }
        Some(i)
    }
}

/// The backend, targets and settings of a rule using slot `i` on listener `listener`: the last
/// user takes the slot, earlier ones get a copy.
pub(super) fn take_slot(
    slots: &mut [Slot],
    uses: &mut [u32],
    i: usize,
    listener: (Protocol, u16),
) -> (Option<BackendRef>, Vec<Target>, RuleSettings) {
    uses[i] -= 1;
    let settings = slots[i]
        .as_ref()
        .map(|s| s.settings_on(listener))
        .unwrap_or_default();
    let slot = if uses[i] == 0 {
        slots[i].take()
    } else {
        slots[i].clone()
    };
    match slot {
        Some(s) => (Some(s.backend), s.targets, settings),
        None => (None, Vec::new(), settings),
    }
}

impl<'a> StackBuilder<'_, 'a> {
    /// The settings of the Service port a backend names (Service annotation
    /// `clb-ingress.io/backend-config`); empty when it has none.
    pub(super) fn port_settings(
        &mut self,
        ns: &str,
        b: &IngressBackend,
        object: &ObjectRef,
        field: &str,
    ) -> RuleSettings {
        let Some(svc_ref) = b.service.as_ref() else {
            return RuleSettings::default();
        };
        let Some(svc) = self
            .index
            .services
            .get(ns, &svc_ref.name)
            .and_then(|e| e.service)
        else {
            return RuleSettings::default();
        };
        if svc
            .metadata
            .annotations
            .as_ref()
            .is_none_or(|a| !a.contains_key(settings::ANN_BACKEND_CONFIG))
        {
            return RuleSettings::default();
        }
        let Some(spec) = svc.spec.as_ref() else {
            return RuleSettings::default();
        };
        let Some(port) = find_port(spec, svc_ref.port.as_ref()) else {
            return RuleSettings::default();
        };
        self.service_settings(ns, svc, port, object, field)
    }
}
