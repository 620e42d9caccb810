//! Lookups built once per snapshot: classes, stacks (which Ingresses share which CLB), Services,
//! Secrets, Nodes; `Index::build_stack` then builds one stack at a time.

use super::*;

/// How one managed Ingress is handled.
#[derive(Debug, Clone)]
pub(super) struct Managed<'a> {
    pub(super) ing: &'a Ingress,
    pub(super) key: ObjectRef,
    pub(super) params: Option<&'a ClbClassParametersSpec>,
    pub(super) source: LbSource,
}

/// Lookups built once per snapshot; `build_stack` then works on one stack at a time.
pub struct Index<'a> {
    pub(super) snap: &'a Snapshot,
    /// Services and their EndpointSlices (sorted by name), by (namespace, service name).
    pub(super) services: ServiceIndex<'a>,
    pub(super) secrets: HashMap<(&'a str, &'a str), &'a Secret>,
    /// Ready nodes with a CVM instance id: (node name, instance id).
    pub(super) nodes: Vec<(&'a str, String)>,
    /// Namespace labels, for class namespace selectors and tenancy scopes.
    pub(super) ns_labels: HashMap<&'a str, &'a BTreeMap<String, String>>,
    /// `ClbBackendConfig`s by (namespace, name).
    pub(super) backend_configs: HashMap<(&'a str, &'a str), &'a ClbBackendConfig>,
    /// `TkeServiceConfig`s by (namespace, name); None: not read.
    pub(super) tke_configs: Option<HashMap<(&'a str, &'a str), &'a TkeServiceConfig>>,
    pub(super) stacks: BTreeMap<StackId, Vec<Managed<'a>>>,
    /// Stacks of Ingresses marked `ingress.cloud.tencent.com/mode: skip`: never written to,
    /// never deleted or pruned.
    pub(super) frozen: std::collections::BTreeSet<StackId>,
    pub(super) problems: Vec<Problem>,
    /// Where this build placed the hosts of shared classes (see [`super::shard`]).
    pub(super) placement: Placement,
}

impl<'a> Index<'a> {
    pub fn new(snap: &'a Snapshot) -> Self {
        let mut services = ServiceIndex::with_capacity(snap.services.len());
        for s in &snap.services {
            let (ns, name) = meta_name(&s.metadata);
            services.entry(ns, name).service = Some(&**s);
        }
        for s in &snap.endpoint_slices {
            let ns = s.metadata.namespace.as_deref().unwrap_or("default");
            if let Some(svc) = s
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(LABEL_SERVICE_NAME))
            {
                services.entry(ns, svc).add_slice(s);
            }
        }
        services.sort_slices();
        let mut secrets = HashMap::default();
        for s in &snap.secrets {
            secrets.insert(meta_name(&s.metadata), s);
        }
        let mut nodes: Vec<(&str, String)> = snap
            .nodes
            .iter()
            .filter(|n| node_ready(n))
            .filter_map(|n| {
                let inst = instance_id(n.spec.as_ref()?.provider_id.as_deref()?)?;
                Some((n.metadata.name.as_deref().unwrap_or(""), inst))
            })
            .collect();
        nodes.sort();
        let ns_labels = snap
            .namespaces
            .iter()
            .filter_map(|n| Some((n.metadata.name.as_deref()?, n.metadata.labels.as_ref()?)))
            .collect();
        let backend_configs = snap
            .backend_configs
            .iter()
            .map(|c| (meta_name(&c.metadata), c))
            .collect();
        let tke_configs = snap
            .tke_service_configs
            .as_ref()
            .map(|v| v.iter().map(|c| (meta_name(&c.metadata), c)).collect());
        let mut index = Index {
            snap,
            backend_configs,
            tke_configs,
            services,
            secrets,
            nodes,
            ns_labels,
            stacks: BTreeMap::new(),
            frozen: Default::default(),
            problems: Vec::new(),
            placement: Placement::new(),
        };
        index.assign_stacks();
        index
    }

    pub fn stack_ids(&self) -> impl Iterator<Item = &StackId> {
        self.stacks.keys()
    }

    /// Stacks left alone because their Ingress says `ingress.cloud.tencent.com/mode: skip`.
    pub fn frozen_ids(&self) -> impl Iterator<Item = &StackId> {
        self.frozen.iter()
    }

    pub fn is_frozen(&self, id: &StackId) -> bool {
        self.frozen.contains(id)
    }

    /// The stack an Ingress belongs to, if clb-ingress manages it.
    pub fn stack_of(&self, namespace: &str, name: &str) -> Option<&StackId> {
        self.stacks.iter().find_map(|(id, ms)| {
            ms.iter()
                .any(|m| m.key.namespace.as_deref() == Some(namespace) && m.key.name == name)
                .then_some(id)
        })
    }

    /// Every Ingress placed on a stack, as (namespace, name), with its stack (one walk; use
    /// this instead of [`Index::stack_of`] in loops over many Ingresses).
    pub fn placed(&self) -> impl Iterator<Item = ((&str, &str), &StackId)> {
        self.stacks.iter().flat_map(|(id, ms)| {
            ms.iter().map(move |m| {
                (
                    (
                        m.key.namespace.as_deref().unwrap_or(""),
                        m.key.name.as_str(),
                    ),
                    id,
                )
            })
        })
    }

    /// Look up the Services of these rules' backends in one tight loop, so that their cache
    /// misses overlap instead of being paid one by one while the paths are resolved.
    pub(super) fn warm_up(
        &self,
        ns: &str,
        rules: &[k8s_openapi::api::networking::v1::IngressRule],
    ) {
        let mut touched = 0usize;
        for p in rules
            .iter()
            .filter_map(|r| r.http.as_ref())
            .flat_map(|h| &h.paths)
        {
            if let Some(e) = p
                .backend
                .service
                .as_ref()
                .and_then(|s| self.services.get(ns, &s.name))
            {
                touched += e.service.map_or(0, |s| {
                    s.spec
                        .as_ref()
                        .map_or(0, |s| s.ports.as_ref().map_or(0, Vec::len))
                });
                touched += e.slices().first().map_or(0, |s| s.endpoints.len());
            }
        }
        std::hint::black_box(touched);
    }

    /// Where this build placed the hosts of shared classes (class -> CLB domain -> shard): the
    /// sticky placement the next build starts from.
    pub fn placement(&self) -> &Placement {
        &self.placement
    }

    /// Problems found while selecting classes (not tied to one stack).
    pub fn global_problems(&self) -> &[Problem] {
        &self.problems
    }

    pub(super) fn assign_stacks(&mut self) {
        let snap = self.snap;
        let classes = OurClasses::new(snap);
        // Members of shared classes, sharded once every Ingress is known.
        let mut shared: BTreeMap<String, Vec<Managed<'a>>> = BTreeMap::new();
        for ing in &snap.ingresses {
            let (ns, name) = meta_name(&ing.metadata);
            let class = classes.of(ing);
            let Some(class) = class else { continue };
            let class_name = class.metadata.name.as_deref().unwrap_or("");
            let key = ObjectRef::namespaced("Ingress", ns, name);
            let params = match class.spec.as_ref().and_then(|s| s.parameters.as_ref()) {
                None => None,
                Some(p) => match class_parameters(snap, class) {
                    Some(spec) => Some(spec),
                    None => {
                        self.problems.push(Problem {
                                object: key.clone(),
                                field: "spec.ingressClassName".into(),
                                reason: Reason::ClassParametersNotFound,
                                effect: Effect::Ignored,
                                message: format!(
                                    "IngressClass {class_name} refers to {} {:?}, which does not exist; its Ingresses are not synced until it does",
                                    p.kind, p.name
                                ),
                            });
                        continue;
                    }
                },
            };
            if let Some(sel) = params.and_then(|p| p.namespace_selector.as_ref())
                && !self.selector_matches_namespace(sel, ns)
            {
                continue;
            }
            if let Some(d) = params.and_then(|p| p.catch_all_domain.as_deref())
                && let Err(msg) = translate::check_catch_all_domain(d)
            {
                self.problems.push(Problem {
                    object: key,
                    field: "spec.ingressClassName".into(),
                    reason: Reason::InvalidClassParameters,
                    effect: Effect::Ignored,
                    message: format!(
                        "the catchAllDomain of IngressClass {class_name}'s parameters is not usable: {msg}; its Ingresses are not synced until it is fixed"
                    ),
                });
                continue;
            }
            let (stack, source) = if let Some(lb) = annotation(ing, ANN_EXIST_LB_ID) {
                match self.check_adoption(lb, params, ns, class_name) {
                    Ok(required_tags) => (
                        StackId::Adopted(lb.to_string()),
                        LbSource::Existing {
                            id: lb.to_string(),
                            required_tags,
                        },
                    ),
                    Err((reason, message)) => {
                        self.problems.push(Problem {
                            object: key,
                            field: format!("metadata.annotations[{ANN_EXIST_LB_ID}]"),
                            reason,
                            effect: Effect::Ignored,
                            message,
                        });
                        continue;
                    }
                }
            } else if let Some(lb) = params.and_then(|p| p.load_balancer_id.as_ref()) {
                if !is_lb_id(lb) {
                    self.problems.push(Problem {
                        object: key,
                        field: "spec.ingressClassName".into(),
                        reason: Reason::InvalidClassParameters,
                        effect: Effect::Ignored,
                        message: format!(
                            "the loadBalancerId of IngressClass {class_name}'s parameters is not a CLB id (lb- and 8 lowercase letters or digits); its Ingresses are not synced until it is fixed"
                        ),
                    });
                    continue;
                }
                (
                    StackId::Adopted(lb.clone()),
                    LbSource::Existing {
                        id: lb.clone(),
                        required_tags: BTreeMap::new(),
                    },
                )
            } else if params.is_some_and(|p| p.sharing == crate::crd::Sharing::Shared) {
                let id = StackId::Class(class_name.to_string());
                let lb_name = id.clb_name(&snap.cluster_id).unwrap_or_default();
                (
                    id,
                    LbSource::Create {
                        name: lb_name,
                        settings: params.map(|p| p.create.clone()).unwrap_or_default(),
                    },
                )
            } else {
                let id = StackId::ingress(ns, name);
                let lb_name = id.clb_name(&snap.cluster_id).unwrap_or_default();
                let mut settings: crate::crd::CreateSettings =
                    params.map(|p| p.create.clone()).unwrap_or_default();
                if let Some(subnet) = annotation(ing, ANN_SUBNET_ID) {
                    // TKE: an internal (private) CLB in that subnet of the class's VPC.
                    settings.network_type = crate::crd::NetworkType::Internal;
                    settings.subnet_id = Some(subnet.to_string());
                }
                (
                    id,
                    LbSource::Create {
                        name: lb_name,
                        settings,
                    },
                )
            };
            if annotation(ing, ANN_MODE) == Some("skip") {
                // TKE: nothing is changed for this Ingress, not even on deletion. Its own CLB is
                // frozen; on a shared CLB it is simply left out.
                if matches!(stack, StackId::Ingress { .. }) {
                    self.frozen.insert(stack);
                }
                continue;
            }
            let m = Managed {
                ing,
                key,
                params,
                source,
            };
            match stack {
                StackId::Class(class) => shared.entry(class).or_default().push(m),
                stack => self.stacks.entry(stack).or_default().push(m),
            }
        }
        for members in self.stacks.values_mut().chain(shared.values_mut()) {
            members.sort_by(|a, b| {
                let ta = a.ing.metadata.creation_timestamp.as_ref().map(|t| t.0);
                let tb = b.ing.metadata.creation_timestamp.as_ref().map(|t| t.0);
                ta.cmp(&tb).then_with(|| a.key.cmp(&b.key))
            });
        }
        for (class, members) in shared {
            let max_lbs = members
                .first()
                .and_then(|m| m.params)
                .and_then(|p| p.max_load_balancers)
                .unwrap_or(crate::crd::DEFAULT_MAX_LOAD_BALANCERS);
            let sharded = super::shard::shard_class(
                &class,
                members,
                snap.placement.get(&class),
                snap.limits,
                max_lbs,
            );
            self.problems.extend(sharded.problems);
            self.placement.insert(class.clone(), sharded.placement);
            for (n, mut members) in sharded.shards {
                let id = StackId::shard(&class, n);
                let name = id.clb_name(&snap.cluster_id).unwrap_or_default();
                for m in &mut members {
                    if let LbSource::Create { name: n, .. } = &mut m.source {
                        n.clone_from(&name);
                    }
                }
                self.stacks.insert(id, members);
            }
        }
    }

    /// Does a label selector match this namespace's labels?
    pub(super) fn selector_matches_namespace(&self, sel: &LabelSelector, ns: &str) -> bool {
        static EMPTY: BTreeMap<String, String> = BTreeMap::new();
        selector_matches(sel, self.ns_labels.get(ns).copied().unwrap_or(&EMPTY))
    }

    /// Is this namespace in the scope (listed by name, `*`, or selected by its labels)?
    pub(super) fn scope_allows(&self, scope: &crate::crd::NamespaceScope, ns: &str) -> bool {
        self.namespace_in(&scope.namespaces, scope.namespace_selector.as_ref(), ns)
    }

    /// Is `ns` listed by name (`*` = all) or selected by its labels?
    fn namespace_in(&self, names: &[String], selector: Option<&LabelSelector>, ns: &str) -> bool {
        names.iter().any(|n| n == ns || n == "*")
            || selector.is_some_and(|sel| self.selector_matches_namespace(sel, ns))
    }

    /// May an Ingress of namespace `ns` in this class adopt CLB `lb` by annotation? Ok gives
    /// the tags the CLB must carry (empty when the id itself is allowed). The refusal never
    /// says anything about the CLB itself.
    fn check_adoption(
        &self,
        lb: &str,
        params: Option<&ClbClassParametersSpec>,
        ns: &str,
        class_name: &str,
    ) -> Result<BTreeMap<String, String>, (Reason, String)> {
        if !is_lb_id(lb) {
            return Err((
                Reason::InvalidAnnotation,
                "not a CLB id (lb- and 8 lowercase letters or digits)".into(),
            ));
        }
        let refused = || {
            (
                Reason::AdoptionNotAllowed,
                format!(
                    "IngressClass {class_name} does not allow Ingresses of namespace {ns} to adopt this CLB (ClbClassParameters spec.adoption); the Ingress is not synced"
                ),
            )
        };
        let Some(policy) = params.and_then(|p| p.adoption.as_ref()) else {
            return Err(refused());
        };
        if !self.namespace_in(&policy.namespaces, policy.namespace_selector.as_ref(), ns) {
            return Err(refused());
        }
        if policy.load_balancer_ids.iter().any(|id| id == lb) {
            Ok(BTreeMap::new())
        } else if !policy.tag_selector.is_empty() {
            Ok(policy.tag_selector.clone())
        } else {
            Err(refused())
        }
    }

    /// Build one stack: the desired CLB (None if no Ingress could be placed) and its Problems.
    pub fn build_stack(&self, id: &StackId) -> (Option<DesiredLb>, Vec<Problem>) {
        let Some(members) = self.stacks.get(id) else {
            return (None, Vec::new());
        };
        StackBuilder::new(self, id, members).run()
    }

    /// What each Ingress path of one stack costs in CLB rules on each of its listeners, and
    /// why (the rules the stack's build makes; parked Ingresses are not counted).
    pub fn stack_rule_costs(&self, id: &StackId) -> Vec<crate::model::ListenerCost> {
        let Some(members) = self.stacks.get(id) else {
            return Vec::new();
        };
        let mut b = StackBuilder::new(self, id, members);
        b.costs = Some(Vec::new());
        b.run_with_costs().2
    }
}

/// Is `id` a CLB id (`lb-` and 8 lowercase letters or digits)?
pub fn is_lb_id(id: &str) -> bool {
    id.strip_prefix("lb-").is_some_and(|rest| {
        rest.len() == 8
            && rest
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    })
}

/// The IngressClasses this controller answers to, and the default one among them.
/// The `ClbClassParameters` an IngressClass names in `spec.parameters`, if it names ours and
/// it exists.
pub fn class_parameters<'s>(
    snap: &'s Snapshot,
    class: &IngressClass,
) -> Option<&'s crate::crd::ClbClassParametersSpec> {
    let p = class.spec.as_ref()?.parameters.as_ref()?;
    if p.kind != crate::crd::CLASS_PARAMETERS_KIND {
        return None;
    }
    snap.class_params
        .iter()
        .find(|cp| cp.metadata.name.as_deref() == Some(p.name.as_str()))
        .map(|cp| &cp.spec)
}

/// The names of the IngressClasses whose parameters say `sharing: Shared`: only they have
/// shard CLBs whose placement is read back from the cloud.
pub fn shared_class_names(snap: &Snapshot) -> Vec<String> {
    snap.ingress_classes
        .iter()
        .filter(|c| {
            class_parameters(snap, c).is_some_and(|p| p.sharing == crate::crd::Sharing::Shared)
        })
        .filter_map(|c| c.metadata.name.clone())
        .collect()
}

pub struct OurClasses<'a> {
    ours: Vec<&'a IngressClass>,
    default_class: Option<&'a IngressClass>,
}

impl<'a> OurClasses<'a> {
    pub fn new(snap: &'a Snapshot) -> Self {
        let ours: Vec<&IngressClass> = snap
            .ingress_classes
            .iter()
            .filter(|c| {
                c.spec.as_ref().and_then(|s| s.controller.as_deref())
                    == Some(snap.controller_name.as_str())
            })
            .collect();
        let default_class = ours
            .iter()
            .filter(|c| {
                c.metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(ANN_DEFAULT_CLASS))
                    .map(String::as_str)
                    == Some("true")
            })
            .min_by_key(|c| c.metadata.name.as_deref())
            .copied();
        Self {
            ours,
            default_class,
        }
    }

    /// The class of ours an Ingress names (`spec.ingressClassName`, else the legacy
    /// annotation), or the default class when it names none; None when it is not ours.
    pub fn of(&self, ing: &Ingress) -> Option<&'a IngressClass> {
        let spec_class = ing
            .spec
            .as_ref()
            .and_then(|s| s.ingress_class_name.as_deref());
        match spec_class.or_else(|| annotation(ing, ANN_INGRESS_CLASS)) {
            Some(cn) => self
                .ours
                .iter()
                .find(|c| c.metadata.name.as_deref() == Some(cn))
                .copied(),
            None => self.default_class,
        }
    }
}
