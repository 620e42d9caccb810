//! One stack: each Ingress's contribution (oldest first), merged per listener (oldest wins
//! conflicts), checked against CLB limits, translated, with redirects applied.

use super::*;

pub(super) struct TlsEntry<'a> {
    pub(super) hosts: std::borrow::Cow<'a, [String]>,
    pub(super) cert: CertSource,
}

/// One path of an Ingress, borrowed from it.
pub(super) struct PathEntry<'a> {
    pub(super) path: &'a str,
    pub(super) kind: PathKind,
    pub(super) ri: usize,
    pub(super) pi: usize,
    pub(super) slot: usize,
    /// `rule-mix`: the only protocol whose listeners serve this path (None: every listener).
    pub(super) only: Option<Protocol>,
}

/// Said of a Problem that leaves one host out while the Ingress's other hosts serve.
const HOST_PARKED_NOTE: &str = "; this host is not served (the Ingress's other hosts are)";

/// What one Ingress brings to its stack.
pub(super) struct Contribution<'a> {
    /// Index of the member (Ingress) in the stack.
    pub(super) mi: usize,
    /// The Ingress's namespace (host ownership).
    pub(super) ns: &'a str,
    pub(super) listeners: Vec<(Protocol, u16)>,
    /// (host, paths)
    pub(super) rules: Vec<(Option<&'a str>, Vec<PathEntry<'a>>)>,
    pub(super) default_backend: Option<usize>,
    pub(super) tls: Vec<TlsEntry<'a>>,
    /// `auto-rewrite`: HTTP requests for this Ingress's hosts are redirected with this code
    /// to the HTTPS listener on this port.
    pub(super) redirect: Option<Redirect>,
    /// Hosts whose redirect has its own code (`auto-rewrite-code` `rewriteCodeInfos`).
    pub(super) redirect_hosts: Vec<(String, u16)>,
    /// `rule-mix` redirect entries: (host, the CLB URLs of the path, redirect).
    pub(super) path_redirects: Vec<(Option<String>, Vec<String>, Redirect)>,
    /// `loadbalance-retain: "true"`.
    pub(super) retain: bool,
    /// TkeServiceConfig `l7Listeners[].defaultServer`: per listener, the host to make the
    /// listener's default domain (with `unmatchedHosts: ListenerDefaultDomain`).
    pub(super) default_servers: Vec<((Protocol, u16), String)>,
}

pub(super) struct StackBuilder<'i, 'a> {
    pub(super) index: &'i Index<'a>,
    pub(super) id: &'i StackId,
    pub(super) members: &'i [Managed<'a>],
    pub(super) slots: Vec<Slot>,
    /// Backends already resolved in this stack, and their slot.
    pub(super) resolved: HashMap<ResolveKey<'a>, usize>,
    pub(super) problems: Vec<Problem>,
    /// Several Ingresses may share this stack's CLB (a class's shared CLB or an adopted one):
    /// hosts are owned by namespaces and catch-all routes need the class's permission.
    pub(super) shared: bool,
    /// On a shared CLB, host -> namespace of the oldest Ingress that names it in a rule.
    pub(super) host_owner: HashMap<&'a str, &'a str>,
    /// Some: also report what each path costs (`Index::stack_rule_costs`).
    pub(super) costs: Option<Vec<crate::model::ListenerCost>>,
}

/// (path, kind, backend slot) of the merged view.
pub(super) type ViewPath<'a> = (&'a str, PathKind, usize);

/// Listener-level merge state.
#[derive(Default)]
pub(super) struct ListenerAcc<'a> {
    /// The translation of `view`, kept from the limit check.
    pub(super) translated: Vec<translate::TDomainRef<'a, usize>>,
    /// The merged rules, oldest Ingress first: (host, paths).
    pub(super) view: Vec<(Option<&'a str>, Vec<ViewPath<'a>>)>,
    /// (slot, member index of the Ingress that set it)
    pub(super) default_backend: Option<(usize, usize)>,
    /// (host, kind, match key) -> member index of the Ingress that defined it.
    /// (host, kind, match key, Prefix with a trailing slash) -> the member that claimed it.
    /// `/foo` and `/foo/` are different paths (the longer one wins the requests both match),
    /// not a conflict.
    pub(super) claimed: HashMap<(Option<&'a str>, PathKind, &'a str, bool), usize>,
    pub(super) members: Vec<usize>,
}

impl<'a> ListenerAcc<'a> {
    /// A copy to merge one more Ingress into; `translated` is left out, as the limit check
    /// translates every listener the Ingress touches before a trial is kept.
    pub(super) fn fork(&self) -> Self {
        Self {
            translated: Vec::new(),
            view: self.view.clone(),
            default_backend: self.default_backend,
            claimed: self.claimed.clone(),
            members: self.members.clone(),
        }
    }
}

impl<'i, 'a> StackBuilder<'i, 'a> {
    pub(super) fn new(index: &'i Index<'a>, id: &'i StackId, members: &'i [Managed<'a>]) -> Self {
        let shared = !matches!(id, StackId::Ingress { .. });
        let mut host_owner = HashMap::default();
        if shared {
            // Members are sorted oldest first: the first to name a host owns it.
            for m in members {
                let (ns, _) = meta_name(&m.ing.metadata);
                for rule in m
                    .ing
                    .spec
                    .as_ref()
                    .and_then(|s| s.rules.as_deref())
                    .unwrap_or_default()
                {
                    if let Some(h) = rule.host.as_deref().filter(|h| !h.is_empty()) {
                        host_owner.entry(h).or_insert(ns);
                    }
                }
            }
        }
        Self {
            index,
            id,
            members,
            slots: Vec::new(),
            resolved: HashMap::default(),
            problems: Vec::new(),
            shared,
            host_owner,
            costs: None,
        }
    }

    /// The tenancy rules of this stack: those of its oldest Ingress's class.
    fn tenancy(&self) -> Option<&'a crate::crd::TenancyPolicy> {
        self.members
            .first()
            .and_then(|m| m.params)
            .map(|p| &p.tenancy)
    }

    /// The catch-all domain of this stack's listeners: its oldest Ingress's class parameter,
    /// else [`translate::CATCH_ALL_DOMAIN`].
    pub(super) fn catch_all_domain(&self) -> &'a str {
        self.members
            .first()
            .and_then(|m| m.params)
            .and_then(|p| p.catch_all_domain.as_deref())
            .unwrap_or(translate::CATCH_ALL_DOMAIN)
    }

    /// The rule economy of this stack's listeners by protocol. Off where redirects are at
    /// work (`auto-rewrite`, `rule-mix`: a redirect belongs to one rule, and a left-out rule
    /// would hand its requests to a rule that may forward instead). Host domains are left to
    /// the catch-all on HTTP listeners only (an HTTPS domain carries its certificate), and
    /// only while the catch-all is the default domain (`unmatchedHosts: NotFound`), and not
    /// on a shared class's CLBs.
    fn economy(&self) -> impl Fn(Protocol) -> translate::Economy + use<> {
        let redirects = self.members.iter().any(|m| {
            m.ing.metadata.annotations.as_ref().is_some_and(|a| {
                a.contains_key(super::ANN_AUTO_REWRITE) || a.contains_key(super::ANN_RULE_MIX)
            })
        });
        let tke_default = self
            .members
            .first()
            .and_then(|m| m.params)
            .is_some_and(|p| {
                p.unmatched_hosts == crate::crd::UnmatchedHosts::ListenerDefaultDomain
            });
        // A shared class's placement is read back from the hosts' domains on its CLBs: every
        // host there keeps its domain, so a restart finds where it lives.
        let sharded = matches!(self.id, StackId::Class(_) | StackId::Shard { .. });
        move |proto| translate::Economy {
            redundant_paths: !redirects,
            catch_all_copies: !redirects && !tke_default && !sharded && proto == Protocol::Http,
        }
    }

    /// May namespace `ns` use `host` (and its certificates, redirects) on this stack's CLB?
    /// Always on a CLB of its own; on a shared one, when `ns` owns the host.
    pub(super) fn owns_host(&self, ns: &str, host: &str) -> bool {
        !self.shared || self.host_owner.get(host).is_none_or(|owner| *owner == ns)
    }

    /// May namespace `ns` add paths to `host` although another namespace owns it?
    fn may_share_host(&self, ns: &str) -> bool {
        self.tenancy()
            .is_some_and(|t| self.index.scope_allows(&t.host_sharing, ns))
    }

    /// May namespace `ns` publish host-less rules and a default backend on this CLB?
    pub(super) fn may_catch_all(&self, ns: &str) -> bool {
        !self.shared
            || self
                .tenancy()
                .is_some_and(|t| self.index.scope_allows(&t.catch_all, ns))
    }

    pub(super) fn run(self) -> (Option<DesiredLb>, Vec<Problem>) {
        let (lb, problems, _) = self.run_with_costs();
        (lb, problems)
    }

    /// `run`, plus what each path costs when `self.costs` asks for it.
    pub(super) fn run_with_costs(
        mut self,
    ) -> (
        Option<DesiredLb>,
        Vec<Problem>,
        Vec<crate::model::ListenerCost>,
    ) {
        let limits = self.index.snap.limits;
        let economy = self.economy();
        let mut accs: BTreeMap<(u16, Protocol), ListenerAcc<'a>> = BTreeMap::new();
        let mut contributions: Vec<Contribution<'a>> = Vec::new();
        for (mi, m) in self.members.iter().enumerate() {
            let Some(c) = self.contribution(mi, m) else {
                continue;
            };
            // Tentatively merge; keep the merge only if every limit still holds.
            // Only the listeners this Ingress touches are copied for the trial.
            let mut trial: BTreeMap<(u16, Protocol), ListenerAcc<'a>> = BTreeMap::new();
            let mut local_problems = Vec::new();
            for &(proto, port) in &c.listeners {
                let mut acc = accs
                    .get(&(port, proto))
                    .map(ListenerAcc::fork)
                    .unwrap_or_default();
                merge(&mut acc, &c, proto, self.members, &mut local_problems);
                trial.insert((port, proto), acc);
            }
            let mut all_keys: Vec<(u16, Protocol)> =
                accs.keys().chain(trial.keys()).copied().collect();
            all_keys.sort_unstable();
            all_keys.dedup();
            let port_clash = all_keys
                .iter()
                .zip(all_keys.iter().skip(1))
                .find(|(a, b)| a.0 == b.0)
                .map(|(a, _)| a.0);
            let over = if let Some(port) = port_clash {
                Some((
                    Reason::ListenerPortConflict,
                    format!("port {port} is wanted as both HTTP and HTTPS on this CLB"),
                ))
            } else if all_keys.len() > limits.listeners_per_lb {
                Some((
                    Reason::TooManyListeners,
                    format!(
                        "the CLB would need {} listeners; at most {} are allowed",
                        all_keys.len(),
                        limits.listeners_per_lb
                    ),
                ))
            } else {
                c.listeners.iter().find_map(|&(proto, port)| {
                    let acc = trial.get_mut(&(port, proto))?;
                    acc.translated = translate::translate_rules_with(
                        acc.view
                            .iter()
                            .map(|(h, ps)| (*h, ps.iter().map(|(p, k, b)| (*p, *k, b)))),
                        acc.default_backend.as_ref().map(|d| &d.0),
                        economy(proto),
                    );
                    let n: usize = acc.translated.iter().map(|d| d.rules.len()).sum();
                    (n > limits.rules_per_listener).then(|| {
                        (
                            Reason::TooManyRules,
                            format!(
                                "listener {} {port} would need {n} CLB rules; at most {} are allowed (a Prefix path other than / takes two; `plan -f` shows what each path costs)",
                                proto.as_str(),
                                limits.rules_per_listener
                            ),
                        )
                    })
                })
            };
            if let Some((reason, message)) = over {
                self.problems.push(Problem {
                    object: self.members[c.mi].key.clone(),
                    field: "spec".into(),
                    reason,
                    effect: Effect::Parked,
                    message,
                });
                continue;
            }
            self.problems.extend(local_problems);
            accs.extend(trial);
            contributions.push(c);
        }
        if accs.is_empty() {
            return (None, std::mem::take(&mut self.problems), Vec::new());
        }
        if let Some(costs) = self.costs.as_mut() {
            for (&(port, proto), acc) in &accs {
                costs.push(listener_cost(proto, port, acc, economy(proto)));
            }
        }
        let first = &self.members[0];
        let cluster_id = &self.index.snap.cluster_id;
        let stack_hash = self.id.hash(cluster_id);
        let listener_name = crate::model::ids::listener_name(&stack_hash);
        let default_cert = self.default_certificate(&contributions);
        // How many rules use each slot: the last one takes it, the others clone it.
        let mut uses = vec![0u32; self.slots.len()];
        for r in accs
            .values()
            .flat_map(|a| &a.translated)
            .flat_map(|d| &d.rules)
        {
            if let Some(i) = r.backend {
                uses[i] += 1;
            }
        }
        let mut listeners = Vec::with_capacity(accs.len());
        let mut member_ports: BTreeMap<&ObjectRef, Vec<(Protocol, u16)>> = BTreeMap::new();
        for ((port, proto), acc) in accs {
            for &mi in &acc.members {
                member_ports
                    .entry(&self.members[mi].key)
                    .or_default()
                    .push((proto, port));
            }
            let mut domains = Vec::with_capacity(acc.translated.len());
            for d in acc.translated {
                let certificate = (proto == Protocol::Https)
                    .then(|| self.cert_for(d.host, &contributions, &acc.members, &default_cert))
                    .flatten();
                let (mut http2, mut quic) = (None, None);
                let mut refused_protocol: Option<(BackendRef, String)> = None;
                let rules = d
                    .rules
                    .into_iter()
                    .map(|r| {
                        let (backend, targets, mut settings) = match r.backend {
                            Some(i) => take_slot(&mut self.slots, &mut uses, i, (proto, port)),
                            None => (None, Vec::new(), RuleSettings::default()),
                        };
                        // HTTP/2 and QUIC belong to the domain, on HTTPS listeners only: the
                        // first rule of the domain that asks decides.
                        if proto == Protocol::Https {
                            http2 = http2.or(settings.http2);
                            quic = quic.or(settings.quic);
                        }
                        settings.http2 = None;
                        settings.quic = None;
                        // CLB forwards HTTP listeners' requests over HTTP only.
                        if proto == Protocol::Http
                            && settings
                                .forward_type
                                .as_deref()
                                .is_some_and(|f| f != "HTTP")
                        {
                            if let (None, Some(b)) = (&refused_protocol, &backend) {
                                refused_protocol = Some((
                                    b.clone(),
                                    settings.forward_type.clone().unwrap_or_default(),
                                ));
                            }
                            settings.forward_type = None;
                        }
                        DesiredRule {
                            url: r.url,
                            backend,
                            targets,
                            redirect: None,
                            settings,
                        }
                    })
                    .collect();
                if let Some((b, f)) = refused_protocol
                    && let Some(&mi) = acc.members.iter().find(|&&mi| {
                        self.members[mi].key.namespace.as_deref() == Some(b.namespace.as_str())
                    })
                {
                    self.problems.push(Problem {
                        object: self.members[mi].key.clone(),
                        field: "spec.rules".into(),
                        reason: Reason::InvalidBackendConfig,
                        effect: Effect::Degraded,
                        message: format!(
                            "backend protocol {f} of {b} applies to HTTPS listeners only; on the HTTP listener {port} (host {}) CLB forwards over HTTP",
                            d.host.display()
                        ),
                    });
                }
                let native_wildcards = self
                    .members
                    .first()
                    .and_then(|m| m.params)
                    .is_some_and(|p| p.wildcard_hosts == crate::crd::WildcardHosts::Native);
                domains.push(DesiredDomain {
                    domain: match d.host {
                        _ if d.default_server => self.catch_all_domain().to_string(),
                        translate::HostRef::Wildcard(h) if native_wildcards => h.to_string(),
                        _ => d.domain,
                    },
                    host: d.host.display().to_string(),
                    default_server: d.default_server,
                    certificate,
                    rules,
                    http2,
                    quic,
                });
            }
            listeners.push(DesiredListener {
                protocol: proto,
                port,
                name: listener_name.clone(),
                sni: proto == Protocol::Https,
                domains,
            });
        }
        // TkeServiceConfig `defaultServer`s that are not applied, by member, and why.
        let unapplied: Vec<(usize, String)> = if first
            .params
            .is_some_and(|p| p.unmatched_hosts == crate::crd::UnmatchedHosts::ListenerDefaultDomain)
        {
            tke_default_domains(&mut listeners, &contributions)
                .into_iter()
                .map(|(c, host)| (c.mi, format!(
                    "TkeServiceConfig defaultServer {host:?} is not applied: this Ingress serves no such host on that listener, a host-less rule already answers unmatched hosts there, or another Ingress's defaultServer holds the listener; the listener's default domain is the oldest Ingress's first host"
                )))
                .collect()
        } else {
            contributions
                .iter()
                .filter(|c| !c.default_servers.is_empty())
                .map(|c| (c.mi, "TkeServiceConfig defaultServer is not applied: requests whose Host matches no rule are answered 404 (Ingress semantics); set unmatchedHosts: ListenerDefaultDomain in the class's ClbClassParameters for TKE's default domain".to_string()))
                .collect()
        };
        for (mi, message) in unapplied {
            self.problems.push(Problem {
                object: self.members[mi].key.clone(),
                field: format!(
                    "metadata.annotations[{}]",
                    super::settings::ANN_TKE_SERVICE_CONFIG
                ),
                reason: Reason::InvalidBackendConfig,
                effect: Effect::Degraded,
                message,
            });
        }
        if contributions
            .iter()
            .any(|c| c.redirect.is_some() || !c.path_redirects.is_empty())
        {
            apply_redirects(&mut listeners, &contributions, |ns, host| {
                self.owns_host(ns, host)
            });
        }
        let retain = matches!(first.source, LbSource::Create { .. })
            && contributions.iter().any(|c| c.retain);
        let lb = DesiredLb {
            retain,
            stack: self.id.clone(),
            source: first.source.clone(),
            tags: self.id.tags(cluster_id),
            listeners,
            members: member_ports
                .into_iter()
                .map(|(ingress, ports)| Member {
                    ingress: ingress.clone(),
                    ports,
                })
                .collect(),
        };
        let costs = self.costs.take().unwrap_or_default();
        (Some(lb), std::mem::take(&mut self.problems), costs)
    }

    /// One host of an Ingress cannot be served as written: its rules are left out.
    /// (See [`HOST_PARKED_NOTE`].)
    pub(super) fn park_host(
        &mut self,
        object: &ObjectRef,
        field: String,
        reason: Reason,
        message: String,
    ) {
        self.problems.push(Problem {
            object: object.clone(),
            field,
            reason,
            effect: Effect::HostParked,
            message: format!("{message}{HOST_PARKED_NOTE}"),
        });
    }

    pub(super) fn park(
        &mut self,
        object: &ObjectRef,
        field: String,
        reason: Reason,
        message: String,
    ) {
        self.problems.push(Problem {
            object: object.clone(),
            field,
            reason,
            effect: Effect::Parked,
            message,
        });
    }

    /// Validate one Ingress and resolve its backends; None if it must be parked.
    pub(super) fn contribution(&mut self, mi: usize, m: &Managed<'a>) -> Option<Contribution<'a>> {
        let ing: &'a Ingress = m.ing;
        let (ns, _) = meta_name(&ing.metadata);
        let spec: Option<&'a k8s_openapi::api::networking::v1::IngressSpec> = ing.spec.as_ref();
        self.check_unknown_annotations(m);
        let tke = self.tke_annotations(m)?;
        let tke_rules = self.tke_rules(m);
        let default_servers = self.tke_default_servers(m);
        self.check_path_backend_configs(m);
        let direct = match annotation(ing, ANN_DIRECT_ACCESS) {
            None => None,
            Some("true") => Some(true),
            Some("false") => Some(false),
            Some(other) => {
                self.park(
                    &m.key,
                    format!("metadata.annotations[{ANN_DIRECT_ACCESS}]"),
                    Reason::InvalidAnnotation,
                    format!("{other:?} is not \"true\" or \"false\""),
                );
                return None;
            }
        };
        let mode = match direct {
            Some(true) => TargetMode::Direct,
            Some(false) => TargetMode::NodePort,
            None => m.params.map(|p| p.target_mode).unwrap_or_default(),
        };
        let http_port = m
            .params
            .and_then(|p| p.http_port)
            .unwrap_or(DEFAULT_HTTP_PORT);
        let https_port = m
            .params
            .and_then(|p| p.https_port)
            .unwrap_or(DEFAULT_HTTPS_PORT);
        let has_tls = spec
            .and_then(|s| s.tls.as_ref())
            .is_some_and(|t| !t.is_empty())
            || !tke.certificates.is_empty();
        let mut listeners = match annotation(ing, ANN_LISTEN_PORTS) {
            Some(v) => match parse_listen_ports(v) {
                Ok(l) => l,
                Err(e) => {
                    self.park(
                        &m.key,
                        format!("metadata.annotations[{ANN_LISTEN_PORTS}]"),
                        Reason::InvalidAnnotation,
                        e,
                    );
                    return None;
                }
            },
            // rule-mix: both, and the listeners no path uses are dropped below.
            None if has_tls || tke.mix.is_some() => {
                vec![(Protocol::Http, http_port), (Protocol::Https, https_port)]
            }
            None => vec![(Protocol::Http, http_port)],
        };
        // Hosts with a path that cannot be expressed: all their rules are left out.
        let mut parked_hosts: Vec<Option<&'a str>> = Vec::new();
        let problems_before = self.problems.len();
        let mut group_used = vec![false; tke.weights.as_ref().map_or(0, |w| w.groups.len())];
        let spec_rules = spec.and_then(|s| s.rules.as_deref()).unwrap_or_default();
        self.index.warm_up(ns, spec_rules);
        let mut rules = Vec::with_capacity(spec_rules.len());
        for (ri, rule) in spec_rules.iter().enumerate() {
            let host = rule.host.as_deref().filter(|h| !h.is_empty());
            if let Some(h) = host
                && TKE_REFUSED_HOSTS.contains(&h.to_ascii_lowercase().as_str())
            {
                self.park_host(
                    &m.key,
                    format!("spec.rules[{ri}].host"),
                    Reason::InvalidHost,
                    format!("host {h:?} names the client's own machine, not a site; TKE refuses it and so does clb-ingress (use a real domain, or no host)"),
                );
                continue;
            }
            if let Some(h) = host
                && let Err(SyntaxProblem::Host(msg) | SyntaxProblem::Path(msg)) =
                    translate::check_host_syntax(h)
            {
                // Only this rule's host is left out: the Ingress's other hosts serve.
                self.park_host(
                    &m.key,
                    format!("spec.rules[{ri}].host"),
                    Reason::InvalidHost,
                    msg,
                );
                continue;
            }
            if host == Some(self.catch_all_domain()) {
                self.park_host(
                    &m.key,
                    format!("spec.rules[{ri}].host"),
                    Reason::InvalidHost,
                    format!(
                        "host {:?} is the catch-all domain of this CLB's listeners (class parameter catchAllDomain)",
                        self.catch_all_domain()
                    ),
                );
                continue;
            }
            let http_paths = rule.http.as_ref().map(|h| h.paths.as_slice());
            let http_paths = http_paths.unwrap_or_default();
            let mut paths = Vec::with_capacity(http_paths.len());
            for (pi, p) in http_paths.iter().enumerate() {
                let kind = match p.path_type.as_str() {
                    "Exact" => PathKind::Exact,
                    "Prefix" | "ImplementationSpecific" => PathKind::Prefix,
                    other => {
                        // The path cannot be placed, and leaving it out would let its
                        // requests fall through to a shorter path of the host: the host's
                        // rules are left out instead.
                        self.park_host(
                            &m.key,
                            format!("{}.pathType", path_field(ri, pi)),
                            Reason::InvalidPathType,
                            format!("{other:?} is not Exact, Prefix or ImplementationSpecific"),
                        );
                        parked_hosts.push(host);
                        continue;
                    }
                };
                let path: &'a str = p.path.as_deref().unwrap_or("/");
                if let Err(SyntaxProblem::Path(msg) | SyntaxProblem::Host(msg)) =
                    translate::check_path(path, kind)
                {
                    self.park_host(
                        &m.key,
                        format!("{}.path", path_field(ri, pi)),
                        Reason::InvalidPath,
                        msg,
                    );
                    parked_hosts.push(host);
                    continue;
                }
                let (weight_key, weights) = match &tke.weights {
                    None => ((DEFAULT_WEIGHT, None), Weights::DEFAULT),
                    Some(w) => {
                        let default = w.default_weight.unwrap_or(DEFAULT_WEIGHT);
                        match w.groups.iter().position(|g| {
                            g.host.as_deref().is_none_or(|h| Some(h) == host)
                                && g.port.is_none_or(|gp| listeners.iter().any(|l| l.1 == gp))
                                && g.path.as_deref().is_none_or(|gp| gp == path)
                        }) {
                            Some(gi) => {
                                group_used[gi] = true;
                                (
                                    (default, Some((mi, gi))),
                                    Weights {
                                        default,
                                        stateful_sets: &w.groups[gi].stateful_sets,
                                    },
                                )
                            }
                            None => (
                                (default, None),
                                Weights {
                                    default,
                                    stateful_sets: &[],
                                },
                            ),
                        }
                    }
                };
                let over = self.path_settings(m, host, path, &path_field(ri, pi), &tke_rules);
                let slot = match canary::action_of(&p.backend) {
                    Some(action) => {
                        self.canary_slot(m, action, mode, BackendField::Path { ri, pi }, &over)?
                    }
                    None => self.slot(
                        ns,
                        &p.backend,
                        mode,
                        (weight_key, weights),
                        BackendField::Path { ri, pi },
                        &m.key,
                        (Some((mi, ri, pi)), &over),
                    )?,
                };
                let only = tke.mix.as_ref().map(|mix| {
                    let svc = p.backend.service.as_ref();
                    let number = svc.and_then(|s| s.port.as_ref()).and_then(|p| p.number);
                    let name = svc
                        .and_then(|s| s.port.as_ref())
                        .and_then(|p| p.name.as_deref());
                    let svc = svc.map(|s| s.name.as_str());
                    let on =
                        |l: &[MixEntry]| l.iter().any(|e| e.matches(host, path, svc, number, name));
                    // TKE: a rule in neither list is served on HTTPS.
                    match (on(&mix.http), on(&mix.https)) {
                        (true, true) => None,
                        (true, false) => Some(Protocol::Http),
                        _ => Some(Protocol::Https),
                    }
                });
                paths.push(PathEntry {
                    path,
                    kind,
                    ri,
                    pi,
                    slot,
                    only: only.flatten(),
                });
            }
            rules.push((host, paths));
        }
        rules.retain(|(h, _)| !parked_hosts.contains(h));
        let mut path_redirects = Vec::new();
        if let Some(mix) = &tke.mix {
            let code = tke.auto_rewrite.unwrap_or(DEFAULT_REWRITE_CODE);
            path_redirects = self.mix_redirects(m, mix, &mut rules, &listeners, code);
            let uses = |proto: Protocol| {
                rules
                    .iter()
                    .flat_map(|(_, ps)| ps)
                    .any(|p| p.only.is_none_or(|o| o == proto))
            };
            let (http, https) = (uses(Protocol::Http), uses(Protocol::Https));
            if annotation(ing, ANN_LISTEN_PORTS).is_none() && (http || https) {
                listeners.retain(|l| match l.0 {
                    Protocol::Http => http,
                    Protocol::Https => https || has_tls,
                });
            }
        }
        let host_parked = self.problems[problems_before..]
            .iter()
            .any(|p| p.effect == Effect::HostParked);
        if host_parked
            && rules.is_empty()
            && spec.and_then(|s| s.default_backend.as_ref()).is_none()
        {
            // Nothing of the Ingress is left to serve: it is parked as a whole.
            for p in &mut self.problems[problems_before..] {
                if p.effect == Effect::HostParked {
                    p.effect = Effect::Parked;
                    p.message = p.message.replace(HOST_PARKED_NOTE, "");
                }
            }
            return None;
        }
        if self.shared {
            rules = self.drop_foreign_hosts(m, ns, rules);
        }
        if let Some(w) = &tke.weights {
            self.check_weight_groups(m, w, &group_used, mode, &listeners);
        }
        let default_weight = tke
            .weights
            .as_ref()
            .and_then(|w| w.default_weight)
            .unwrap_or(DEFAULT_WEIGHT);
        let default_backend = match spec.and_then(|s| s.default_backend.as_ref()) {
            Some(_) if !self.may_catch_all(ns) => {
                self.problems.push(Problem {
                    object: m.key.clone(),
                    field: "spec.defaultBackend".into(),
                    reason: Reason::CatchAllNotAllowed,
                    effect: Effect::Overridden,
                    message: format!(
                        "this CLB is shared and the class does not let namespace {ns} set the default backend for every host (ClbClassParameters spec.tenancy.catchAll); it is ignored"
                    ),
                });
                None
            }
            Some(b) => Some(self.slot(
                ns,
                b,
                mode,
                (
                    (default_weight, None),
                    Weights {
                        default: default_weight,
                        stateful_sets: &[],
                    },
                ),
                BackendField::Default,
                &m.key,
                (None, &settings::PathSettings::default()),
            )?),
            None => None,
        };
        let redirect = match tke.auto_rewrite {
            None => None,
            Some(code) => {
                let https = listeners.iter().find(|l| l.0 == Protocol::Https);
                let http = listeners.iter().any(|l| l.0 == Protocol::Http);
                match https {
                    Some(&(_, https_port)) if http => Some(Redirect { https_port, code }),
                    _ => {
                        self.problems.push(Problem {
                            object: m.key.clone(),
                            field: format!("metadata.annotations[{ANN_AUTO_REWRITE}]"),
                            reason: Reason::InvalidAnnotation,
                            effect: Effect::Degraded,
                            message: "auto-rewrite needs both an HTTP and an HTTPS listener (spec.tls, or listen-ports with both); nothing is redirected".into(),
                        });
                        None
                    }
                }
            }
        };
        let mut tls = Vec::new();
        for (ti, t) in spec
            .and_then(|s| s.tls.as_deref())
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            let Some(secret) = t.secret_name.as_deref().filter(|s| !s.is_empty()) else {
                continue;
            };
            match self.index.certificate_from_secret(
                ns,
                secret,
                &m.key,
                &format!("spec.tls[{ti}].secretName"),
            ) {
                Ok(CertSource::Id(id)) if !cert_id_allowed(m.params, &id) => {
                    self.problems.push(Problem {
                        object: m.key.clone(),
                        field: format!("spec.tls[{ti}].secretName"),
                        reason: Reason::CertificateNotAllowed,
                        effect: Effect::Degraded,
                        message: format!(
                            "Secret {ns}/{secret} names a certificate id that the class does not allow (ClbClassParameters spec.allowedCertificateIds); it is not used"
                        ),
                    });
                }
                Ok(cert) => tls.push(TlsEntry {
                    hosts: std::borrow::Cow::Borrowed(t.hosts.as_deref().unwrap_or_default()),
                    cert,
                }),
                Err(p) => self.problems.push(p),
            }
        }
        if !tke.certificates.is_empty() {
            let field = format!("metadata.annotations[{ANN_CERTIFICATE}]");
            let hosts: Vec<&str> = spec_rules
                .iter()
                .filter_map(|r| r.host.as_deref())
                .collect();
            let mut from_annotation = Vec::new();
            for (host, id) in &tke.certificates {
                if !cert_id_allowed(m.params, id) {
                    self.problems.push(Problem {
                        object: m.key.clone(),
                        field: field.clone(),
                        reason: Reason::CertificateNotAllowed,
                        effect: Effect::Degraded,
                        message: format!("certificate {id} for {host} is not in the class's allowedCertificateIds; it is not used"),
                    });
                    continue;
                }
                if !hosts.contains(&host.as_str()) {
                    self.problems.push(Problem {
                        object: m.key.clone(),
                        field: field.clone(),
                        reason: Reason::InvalidAnnotation,
                        effect: Effect::Degraded,
                        message: format!(
                            "names {host:?}, which is not a host of this Ingress; it has no effect"
                        ),
                    });
                    continue;
                }
                from_annotation.push(TlsEntry {
                    hosts: std::borrow::Cow::Owned(vec![host.clone()]),
                    cert: CertSource::Id(id.clone()),
                });
            }
            // The annotation names one host exactly: it comes before spec.tls.
            from_annotation.append(&mut tls);
            tls = from_annotation;
        }
        Some(Contribution {
            mi,
            ns,
            listeners,
            rules,
            default_backend,
            tls,
            redirect,
            redirect_hosts: tke.rewrite_hosts,
            path_redirects,
            retain: tke.retain,
            default_servers,
        })
    }
}

impl<'a> StackBuilder<'_, 'a> {
    /// `rule-mix` redirect entries of `http-rules`: each puts its path (a path of
    /// `spec.rules` with the same host) on the HTTP listener too, redirecting to the same host
    /// and path on the HTTPS listener of `rewrite.port`. Entries that cannot be applied get a
    /// Warning and are left out.
    fn mix_redirects(
        &mut self,
        m: &Managed<'a>,
        mix: &RuleMix,
        rules: &mut [(Option<&'a str>, Vec<PathEntry<'a>>)],
        listeners: &[(Protocol, u16)],
        code: u16,
    ) -> Vec<(Option<String>, Vec<String>, Redirect)> {
        let mut out = Vec::new();
        for (i, e) in mix.http.iter().enumerate() {
            let Some(rw) = &e.rewrite else { continue };
            let refuse = |problems: &mut Vec<Problem>, why: String| {
                problems.push(Problem {
                    object: m.key.clone(),
                    field: format!("metadata.annotations[{ANN_HTTP_RULES}]"),
                    reason: Reason::UnsupportedAnnotation,
                    effect: Effect::Degraded,
                    message: format!("[{i}] redirects nothing: {why}"),
                })
            };
            if rw.host.as_ref().is_some_and(|h| Some(h) != e.host.as_ref())
                || rw.path.as_ref().is_some_and(|p| *p != e.path)
            {
                refuse(
                    &mut self.problems,
                    "a redirect to another host or path is not supported, only to the same host and path on the HTTPS listener".into(),
                );
                continue;
            }
            if !listeners.contains(&(Protocol::Https, rw.port)) {
                refuse(
                    &mut self.problems,
                    format!("the Ingress has no HTTPS listener on port {}", rw.port),
                );
                continue;
            }
            let found = rules
                .iter_mut()
                .filter(|(h, _)| *h == e.host.as_deref())
                .flat_map(|(_, ps)| ps.iter_mut())
                .find(|p| p.path == e.path);
            let Some(p) = found else {
                refuse(
                    &mut self.problems,
                    format!(
                        "no path of spec.rules has host {} and path {:?} to redirect to",
                        e.host.as_deref().unwrap_or("(none)"),
                        e.path
                    ),
                );
                continue;
            };
            p.only = None;
            let urls = translate::clb_urls(p.path, p.kind).unwrap_or_default();
            out.push((
                e.host.clone(),
                urls,
                Redirect {
                    https_port: rw.port,
                    code,
                },
            ));
        }
        out
    }

    /// On a shared CLB: keep the rules of hosts this Ingress's namespace owns (or may share),
    /// and host-less rules only where the class allows catch-all routes; a Warning for each
    /// host left out. The Ingress's other hosts still serve.
    fn drop_foreign_hosts(
        &mut self,
        m: &Managed<'a>,
        ns: &'a str,
        rules: Vec<(Option<&'a str>, Vec<PathEntry<'a>>)>,
    ) -> Vec<(Option<&'a str>, Vec<PathEntry<'a>>)> {
        let mut kept = Vec::with_capacity(rules.len());
        // `rules` has one entry per `spec.rules` item, in order.
        for (ri, (host, paths)) in rules.into_iter().enumerate() {
            let refusal = match host {
                Some(h) if !self.owns_host(ns, h) && !self.may_share_host(ns) => Some((
                    Reason::HostOwnedByOtherNamespace,
                    format!(
                        "host {h} on this shared CLB belongs to another namespace (the oldest Ingress naming it); its rules from namespace {ns} are ignored (ClbClassParameters spec.tenancy.hostSharing)"
                    ),
                )),
                None if !paths.is_empty() && !self.may_catch_all(ns) => Some((
                    Reason::CatchAllNotAllowed,
                    format!(
                        "a rule without host answers every host of this shared CLB, and the class does not allow that for namespace {ns} (ClbClassParameters spec.tenancy.catchAll); it is ignored"
                    ),
                )),
                _ => None,
            };
            match refusal {
                Some((reason, message)) => {
                    self.problems.push(Problem {
                        object: m.key.clone(),
                        field: format!("spec.rules[{ri}].host"),
                        reason,
                        effect: Effect::Overridden,
                        message,
                    });
                }
                None => kept.push((host, paths)),
            }
        }
        kept
    }
}

/// `unmatchedHosts: ListenerDefaultDomain` (TKE's answer for an unmatched Host): on each
/// listener where nothing catches unmatched hosts (the catch-all domain only holds its
/// target-less placeholder), the default domain becomes the first TkeServiceConfig
/// `defaultServer` (oldest Ingress first) that names a host its own Ingress serves on that
/// listener, else the first precise host of the oldest Ingress on the listener; the
/// placeholder goes. Returns the `defaultServer`s that could not be applied, by Ingress.
pub(super) fn tke_default_domains<'c, 'a>(
    listeners: &mut [DesiredListener],
    contributions: &'c [Contribution<'a>],
) -> Vec<(&'c Contribution<'a>, String)> {
    let mut applied: Vec<(usize, &str)> = Vec::new();
    for l in listeners.iter_mut() {
        let named = contributions.iter().find_map(|c| {
            let (_, host) = c
                .default_servers
                .iter()
                .find(|(key, _)| *key == (l.protocol, l.port))?;
            let own = c.rules.iter().any(|(h, _)| *h == Some(host.as_str()));
            let di = l.domains.iter().position(|d| d.host == *host)?;
            own.then_some((c.mi, host.as_str(), di))
        });
        let Some(ci) = l.domains.iter().position(|d| {
            d.default_server
                && d.host == "*"
                && d.rules
                    .iter()
                    .all(|r| r.backend.is_none() && r.url == translate::NO_ROUTE_URL)
        }) else {
            continue;
        };
        let first_host = contributions
            .iter()
            .flat_map(|c| c.rules.iter().filter_map(|(h, _)| *h))
            .filter(|h| !h.starts_with("*."))
            .find_map(|h| l.domains.iter().position(|d| d.host == h));
        let chosen = match named {
            Some((mi, host, di)) => {
                applied.push((mi, host));
                Some(di)
            }
            None => first_host,
        };
        if let Some(di) = chosen {
            l.domains[di].default_server = true;
            l.domains.remove(ci);
        }
    }
    contributions
        .iter()
        .flat_map(|c| c.default_servers.iter().map(move |(_, h)| (c, h)))
        .filter(|(c, h)| !applied.contains(&(c.mi, h.as_str())))
        .map(|(c, h)| (c, h.clone()))
        .collect()
}

/// What each path of a merged listener costs, from the same view the translation used.
fn listener_cost(
    protocol: Protocol,
    port: u16,
    acc: &ListenerAcc<'_>,
    economy: translate::Economy,
) -> crate::model::ListenerCost {
    use crate::matching::ingress::{HostRules, IngressView, PathRule};
    let view = IngressView {
        rules: acc
            .view
            .iter()
            .map(|(host, paths)| HostRules {
                host: host.map(str::to_string),
                paths: paths
                    .iter()
                    .map(|&(path, kind, backend)| PathRule {
                        path: path.to_string(),
                        kind,
                        backend,
                    })
                    .collect(),
            })
            .collect(),
        default_backend: acc.default_backend.map(|d| d.0),
    };
    let report = translate::cost_report(&view, economy);
    crate::model::ListenerCost {
        protocol,
        port,
        paths: report.paths,
        rules: report.rules,
        rules_without_economy: report.rules_without_economy,
    }
}

/// `auto-rewrite`: the HTTP rules of the hosts of Ingresses asking for it redirect to the rule
/// with the same domain and URL on the HTTPS listener (only where that rule exists).
/// Only hosts the asking Ingress's namespace owns (`owns(namespace, host)`) are redirected.
/// (port, domain, URL) of every HTTPS rule a redirect can target: the rules of domains that
/// have a certificate.
pub(super) fn https_rule_keys(
    listeners: &[DesiredListener],
) -> std::collections::HashSet<(u16, String, String)> {
    listeners
        .iter()
        .filter(|l| l.protocol == Protocol::Https)
        .flat_map(|l| {
            l.domains
                .iter()
                .filter(|d| d.certificate.is_some())
                .flat_map(move |d| {
                    d.rules
                        .iter()
                        .map(move |r| (l.port, d.domain.clone(), r.url.clone()))
                })
        })
        .collect()
}

pub(super) fn apply_redirects(
    listeners: &mut [DesiredListener],
    contributions: &[Contribution],
    owns: impl Fn(&str, &str) -> bool,
) {
    let by_path: Vec<(String, &[String], Redirect)> = contributions
        .iter()
        .flat_map(|c| {
            c.path_redirects
                .iter()
                .filter(|(h, _, _)| h.as_deref().is_none_or(|h| owns(c.ns, h)))
                .map(|(h, urls, r)| {
                    (
                        HostKey::from_host(h.as_deref()).display(),
                        urls.as_slice(),
                        *r,
                    )
                })
        })
        .collect();
    let wanted: Vec<(&str, Redirect)> = contributions
        .iter()
        .filter_map(|c| Some((c, c.redirect?)))
        .flat_map(|(c, r)| {
            c.rules
                .iter()
                .filter_map(move |(h, _)| {
                    let h = (*h)?;
                    let code = c
                        .redirect_hosts
                        .iter()
                        .find(|(rh, _)| rh == h)
                        .map_or(r.code, |(_, code)| *code);
                    Some((h, Redirect { code, ..r }))
                })
                .filter(|(h, _)| owns(c.ns, h))
        })
        .collect();
    // A domain without a certificate has no HTTPS rules yet (the plan withholds them): its
    // HTTP rules keep forwarding instead of redirecting to nothing.
    let https = https_rule_keys(listeners);
    for l in listeners
        .iter_mut()
        .filter(|l| l.protocol == Protocol::Http)
    {
        for d in &mut l.domains {
            let host_wide = wanted.iter().find(|(h, _)| *h == d.host).map(|w| w.1);
            for r in &mut d.rules {
                let Some(redirect) = by_path
                    .iter()
                    .find(|(h, urls, _)| *h == d.host && urls.contains(&r.url))
                    .map(|w| w.2)
                    .or(host_wide)
                else {
                    continue;
                };
                if https.contains(&(redirect.https_port, d.domain.clone(), r.url.clone())) {
                    r.redirect = Some(redirect);
                    r.backend = None;
                    r.targets.clear();
                }
            }
        }
    }
}

pub(super) fn merge<'a>(
    acc: &mut ListenerAcc<'a>,
    c: &Contribution<'a>,
    proto: Protocol,
    members: &[Managed<'a>],
    problems: &mut Vec<Problem>,
) {
    acc.members.push(c.mi);
    let member = &members[c.mi].key;
    if members.len() == 1 {
        // The only Ingress of its stack: nothing can conflict, no claims to remember.
        acc.view.extend(c.rules.iter().map(|(host, paths)| {
            (
                *host,
                paths
                    .iter()
                    .filter(|p| p.only.is_none_or(|o| o == proto))
                    .map(|p| (p.path, p.kind, p.slot))
                    .collect(),
            )
        }));
        if acc.default_backend.is_none() {
            acc.default_backend = c.default_backend.map(|d| (d, c.mi));
        }
        return;
    }
    for (host, paths) in &c.rules {
        let mut kept = Vec::with_capacity(paths.len());
        for p in paths.iter().filter(|p| p.only.is_none_or(|o| o == proto)) {
            let key = match p.kind {
                PathKind::Exact => p.path,
                PathKind::Prefix => translate::prefix_key(p.path),
            };
            let slash = p.kind == PathKind::Prefix && p.path.len() > 1 && p.path.ends_with('/');
            match acc.claimed.entry((*host, p.kind, key, slash)) {
                std::collections::hash_map::Entry::Occupied(o)
                    if members[*o.get()].key != *member =>
                {
                    let owner = &members[*o.get()].key;
                    problems.push(Problem {
                        object: member.clone(),
                        field: format!("{}.path", path_field(p.ri, p.pi)),
                        reason: Reason::RuleConflict,
                        effect: Effect::Overridden,
                        message: format!(
                            "host {} path {:?} ({:?}) is already defined by the older {owner}, which keeps serving it",
                            HostKey::from_host(*host).display(),
                            p.path,
                            p.kind
                        ),
                    });
                    continue;
                }
                std::collections::hash_map::Entry::Occupied(_) => {}
                std::collections::hash_map::Entry::Vacant(v) => {
                    v.insert(c.mi);
                }
            }
            kept.push((p.path, p.kind, p.slot));
        }
        acc.view.push((*host, kept));
    }
    if let Some(d) = c.default_backend {
        match &acc.default_backend {
            Some((_, owner)) if members[*owner].key != *member => {
                let owner = &members[*owner].key;
                problems.push(Problem {
                    object: member.clone(),
                    field: "spec.defaultBackend".into(),
                    reason: Reason::DefaultBackendConflict,
                    effect: Effect::Overridden,
                    message: format!(
                        "the older {owner} already sets the default backend of this CLB, which keeps serving"
                    ),
                })
            }
            Some(_) => {}
            None => acc.default_backend = Some((d, c.mi)),
        }
    }
}

/// Is this Tencent Cloud certificate id allowed by the class (`allowedCertificateIds`)?
pub(super) fn cert_id_allowed(params: Option<&ClbClassParametersSpec>, id: &str) -> bool {
    params
        .and_then(|p| p.allowed_certificate_ids.as_ref())
        .is_none_or(|ids| ids.iter().any(|a| a == id))
}
