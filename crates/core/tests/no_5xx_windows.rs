//! No 5xx windows by construction: over random sequences of desired states, each step's plan is
//! applied ONE change at a time to a simulated CLB (a small pure applier that refuses what the
//! real CLB refuses: two listeners on one port, a new HTTPS domain without a certificate, a
//! second rule with the same domain and URL). After every single change, every (protocol, port,
//! host, path) served both before the step and by the step's desired state still has a rule
//! with at least one target of weight > 0. A listener whose protocol changes on the same port is
//! the one case CLB cannot do without a gap (one listener per port): its keys change protocol,
//! so the new desired state does not serve them (docs/routing.md, "Listener changes").
//! Some states leave a host's certificate unknown (its Secret not seen yet): its new HTTPS
//! rules are withheld, never created without a certificate, and its served rules stay.
//! Every listener also carries the translation's catch-all domain as its DefaultServer; the
//! simulator moves the default as CLB does (the first domain of an empty listener; the earliest
//! remaining domain when the default domain's last rule goes), and after every single change the
//! catch-all must still be the default of every listener that has rules, so unknown hosts never
//! land on some host's rules.

use clb_ingress_core::crd::CreateSettings;
use clb_ingress_core::model::{
    CertSource, DesiredDomain, DesiredLb, DesiredListener, DesiredRule, LbSource, Protocol,
    StackId, Target, TargetAddr,
};
use clb_ingress_core::plan::{
    self, CertRef, Change, ListenerRef, ObservedLb, ObservedListener, ObservedRule, Ownership,
    RuleRef,
};
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};

const PORTS: [u16; 3] = [80, 443, 8080];
const DOMAINS: [&str; 2] = ["a.example.com", "b.example.com"];
const URLS: [&str; 3] = ["/", "/x/", "=/y"];
const LISTENER_NAME: &str = "clb-ingress-test";
/// The catch-all domain every listener carries (the translation's, with its 404 rule).
const CATCH_ALL: &str = clb_ingress_core::model::translate::CATCH_ALL_DOMAIN;
const NO_ROUTE_URL: &str = "=/.clb-ingress/no-route";

/// (protocol, port, domain, url): one thing a client can ask for.
type Key = (Protocol, u16, String, String);

/// A small simulated CLB: refuses what CLB refuses, so a plan that would fail is caught.
#[derive(Default)]
struct Sim {
    lb: Option<ObservedLb>,
    next_id: usize,
}

impl Sim {
    fn id(&mut self, prefix: &str) -> String {
        self.next_id += 1;
        format!("{prefix}-{:08}", self.next_id)
    }

    fn lb(&mut self) -> &mut ObservedLb {
        self.lb
            .as_mut()
            .expect("a change on a CLB that does not exist")
    }

    fn listener(&mut self, r: &ListenerRef) -> &mut ObservedListener {
        let lb = self.lb();
        let found = lb.listeners.iter_mut().find(|l| match r {
            ListenerRef::Id(id) => l.id == *id,
            ListenerRef::New { protocol, port } => l.protocol == *protocol && l.port == *port,
        });
        found.unwrap_or_else(|| panic!("listener {r:?} does not exist"))
    }

    fn rule<'a>(l: &'a mut ObservedListener, r: &RuleRef) -> &'a mut ObservedRule {
        let found = l.rules.iter_mut().find(|o| match r {
            RuleRef::Id(id) => o.location_id == *id,
            RuleRef::New { domain, url } => o.domain == *domain && o.url == *url,
        });
        found.unwrap_or_else(|| panic!("rule {r:?} does not exist"))
    }

    fn cert(&mut self, c: &CertRef) -> String {
        match c {
            CertRef::Id(id) => id.clone(),
            CertRef::Uploaded { fingerprint } => {
                self.lb().certificates[&plan::cert_name(fingerprint)].clone()
            }
        }
    }

    fn apply(&mut self, change: &Change) {
        match change {
            Change::CreateLoadBalancer { name, tags, .. } => {
                assert!(self.lb.is_none(), "CreateLoadBalancer twice");
                self.lb = Some(ObservedLb {
                    id: "lb-00000001".into(),
                    name: name.clone(),
                    tags: tags.iter().cloned().collect(),
                    ..Default::default()
                });
            }
            Change::RenameLoadBalancer { name, .. } => self.lb().name = name.clone(),
            Change::UploadCertificate {
                fingerprint, name, ..
            } => {
                let id = format!("up-{}", &fingerprint[..8]);
                self.lb().certificates.insert(name.clone(), id);
            }
            Change::CreateListener {
                protocol,
                port,
                name,
                sni,
            } => {
                let id = self.id("lbl");
                let lb = self.lb();
                assert!(
                    lb.listeners.iter().all(|l| l.port != *port),
                    "PortCheckFailed: a listener already uses port {port}"
                );
                lb.listeners.push(ObservedListener {
                    id,
                    name: name.clone(),
                    protocol: *protocol,
                    port: *port,
                    sni: *sni,
                    rules: Vec::new(),
                });
            }
            Change::EnableSni { listener, .. } => {
                self.listener(&ListenerRef::Id(listener.clone())).sni = true
            }
            Change::CreateRules { listener, rules } => {
                let mut new = Vec::new();
                for r in rules {
                    let certificate_id = r.certificate.as_ref().map(|c| self.cert(c));
                    new.push((self.id("loc"), r.clone(), certificate_id));
                }
                let l = self.listener(listener);
                let flagged = rules
                    .iter()
                    .find(|r| r.default_server)
                    .map(|r| r.domain.clone());
                for (location_id, r, certificate_id) in new {
                    assert!(
                        !l.rules
                            .iter()
                            .any(|o| o.domain == r.domain && o.url == r.url),
                        "a rule {} {} already exists",
                        r.domain,
                        r.url
                    );
                    let domain_cert = l
                        .rules
                        .iter()
                        .find(|o| o.domain == r.domain)
                        .map(|o| o.certificate_id.clone());
                    let certificate_id = match domain_cert {
                        Some(c) => c,
                        None => {
                            assert!(
                                l.protocol != Protocol::Https || certificate_id.is_some(),
                                "MissingParameter Rules.Certificate: new HTTPS domain {}",
                                r.domain
                            );
                            certificate_id
                        }
                    };
                    // CLB: the first domain of an empty listener is its default; a new rule of
                    // a domain shares the domain's flag.
                    let default_server = l.rules.is_empty()
                        || l.rules
                            .iter()
                            .any(|o| o.domain == r.domain && o.default_server);
                    l.rules.push(ObservedRule {
                        location_id,
                        domain: r.domain,
                        url: r.url,
                        default_server,
                        certificate_id,
                        targets: Vec::new(),
                        rewrite: None,
                        settings: Default::default(),
                    });
                }
                if let Some(d) = flagged {
                    set_default(l, &d);
                }
            }
            Change::ModifyRuleUrl {
                listener,
                location_id,
                to,
                ..
            } => {
                let l = self.listener(&ListenerRef::Id(listener.clone()));
                Self::rule(l, &RuleRef::Id(location_id.clone())).url = to.clone();
            }
            Change::ModifyRuleSettings {
                listener,
                location_id,
                settings,
                ..
            } => {
                let l = self.listener(&ListenerRef::Id(listener.clone()));
                Self::rule(l, &RuleRef::Id(location_id.clone())).settings = settings.clone();
            }
            Change::ModifyDomain {
                listener,
                domain,
                certificate,
                make_default,
                ..
            } => {
                let cert = certificate.as_ref().map(|c| self.cert(c));
                let l = self.listener(listener);
                for r in l.rules.iter_mut().filter(|r| r.domain == *domain) {
                    if cert.is_some() {
                        r.certificate_id = cert.clone();
                    }
                }
                if *make_default {
                    set_default(l, domain);
                }
            }
            Change::DeleteRewrites { .. } | Change::CreateRewrites { .. } => {
                panic!("no redirects are generated: {change}")
            }
            Change::RegisterTargets { targets } => {
                for t in targets {
                    let rule = Self::rule(self.listener(&t.listener), &t.rule);
                    rule.targets
                        .retain(|o| (&o.addr, o.port) != (&t.target.addr, t.target.port));
                    rule.targets.push(t.target.clone());
                }
            }
            Change::ModifyTargetWeights { targets } => {
                for t in targets {
                    let rule = Self::rule(self.listener(&t.listener), &t.rule);
                    let o = rule
                        .targets
                        .iter_mut()
                        .find(|o| (&o.addr, o.port) == (&t.target.addr, t.target.port))
                        .expect("re-weighted target is registered");
                    o.weight = t.target.weight;
                }
            }
            Change::DeregisterTargets { targets } => {
                for t in targets {
                    let rule = Self::rule(self.listener(&t.listener), &t.rule);
                    rule.targets
                        .retain(|o| (&o.addr, o.port) != (&t.target.addr, t.target.port));
                }
            }
            Change::DeleteRules { listener, rules } => {
                let l = self.listener(&ListenerRef::Id(listener.clone()));
                for (id, _, _) in rules {
                    assert!(l.rules.iter().any(|r| r.location_id == *id));
                    l.rules.retain(|r| r.location_id != *id);
                }
                // CLB: with the default domain gone (and no new default named), the earliest
                // remaining domain becomes the default.
                if !l.rules.iter().any(|r| r.default_server)
                    && let Some(first) = l.rules.first().map(|r| r.domain.clone())
                {
                    set_default(l, &first);
                }
            }
            Change::DeleteListeners { listeners } => {
                let lb = self.lb();
                for (id, _, _) in listeners {
                    assert!(lb.listeners.iter().any(|l| l.id == *id));
                    lb.listeners.retain(|l| l.id != *id);
                }
            }
            Change::DeleteLoadBalancer { .. } => self.lb = None,
        }
    }

    /// Everything a client gets a healthy answer for.
    fn served(&self) -> BTreeSet<Key> {
        let mut out = BTreeSet::new();
        for l in self.lb.iter().flat_map(|lb| &lb.listeners) {
            for r in l
                .rules
                .iter()
                .filter(|r| r.targets.iter().any(|t| t.weight > 0))
            {
                out.insert((l.protocol, l.port, r.domain.clone(), r.url.clone()));
            }
        }
        out
    }
}

/// Make `domain` the listener's only default domain.
fn set_default(l: &mut ObservedListener, domain: &str) {
    for r in &mut l.rules {
        r.default_server = r.domain == domain;
    }
}

/// Listeners whose default domain is not the catch-all (or that have none), with theirs.
fn default_not_catch_all(sim: &Sim) -> Vec<(u16, Option<String>)> {
    sim.lb
        .iter()
        .flat_map(|lb| &lb.listeners)
        .filter(|l| !l.rules.is_empty())
        .filter_map(|l| {
            let d = l
                .rules
                .iter()
                .find(|r| r.default_server)
                .map(|r| r.domain.clone());
            (d.as_deref() != Some(CATCH_ALL)).then_some((l.port, d))
        })
        .collect()
}

/// What `desired` serves.
fn wanted(desired: &DesiredLb) -> BTreeSet<Key> {
    let mut out = BTreeSet::new();
    for l in &desired.listeners {
        for d in &l.domains {
            for r in d
                .rules
                .iter()
                .filter(|r| r.targets.iter().any(|t| t.weight > 0))
            {
                out.insert((l.protocol, l.port, d.domain.clone(), r.url.clone()));
            }
        }
    }
    out
}

/// One rule's targets: pod index -> weight.
fn targets() -> impl Strategy<Value = BTreeMap<u8, u32>> {
    prop::collection::btree_map(0u8..4, prop_oneof![Just(0u32), Just(10), Just(20)], 0..3)
}

/// A desired listener: (port index, HTTPS?, domain index -> url index -> targets).
type ListenerSpec = (bool, BTreeMap<usize, BTreeMap<usize, BTreeMap<u8, u32>>>);

fn desired_state() -> impl Strategy<Value = BTreeMap<usize, ListenerSpec>> {
    let domain = prop::collection::btree_map(0..URLS.len(), targets(), 0..3);
    let listener = (
        any::<bool>(),
        prop::collection::btree_map(0..DOMAINS.len(), domain, 0..3),
    );
    prop::collection::btree_map(0..PORTS.len(), listener, 0..3)
}

fn desired(spec: &BTreeMap<usize, ListenerSpec>) -> DesiredLb {
    desired_pending(spec, &BTreeSet::new())
}

/// The desired state of `spec` where the certificates of the `pending` domains are not known
/// (their Secret not seen yet, or missing).
fn desired_pending(spec: &BTreeMap<usize, ListenerSpec>, pending: &BTreeSet<usize>) -> DesiredLb {
    let listeners = spec
        .iter()
        .map(|(&pi, (https, domains))| {
            let protocol = if *https {
                Protocol::Https
            } else {
                Protocol::Http
            };
            DesiredListener {
                protocol,
                port: PORTS[pi],
                name: LISTENER_NAME.into(),
                sni: *https,
                // The catch-all last: the plan, not the desired order, must make it the
                // default (the translation happens to put it first).
                domains: domains
                    .iter()
                    .map(|(&di, urls)| DesiredDomain {
                        domain: DOMAINS[di].into(),
                        host: DOMAINS[di].into(),
                        default_server: false,
                        certificate: (*https && !pending.contains(&di))
                            .then(|| CertSource::Id(format!("cert{di}"))),
                        rules: urls
                            .iter()
                            .map(|(&ui, ts)| DesiredRule {
                                url: URLS[ui].into(),
                                backend: None,
                                targets: ts
                                    .iter()
                                    .map(|(&pod, &weight)| Target {
                                        addr: TargetAddr::Ip(format!("10.0.0.{pod}")),
                                        port: 8080,
                                        weight,
                                    })
                                    .collect(),
                                redirect: None,
                                settings: Default::default(),
                            })
                            .collect(),
                        http2: None,
                        quic: None,
                    })
                    .chain(std::iter::once(catch_all(*https)))
                    .collect(),
            }
        })
        .collect();
    DesiredLb {
        stack: StackId::ingress("ns", "web"),
        source: LbSource::Create {
            name: "clb-ingress-test".into(),
            settings: CreateSettings::default(),
        },
        tags: Vec::new(),
        listeners,
        members: Vec::new(),
        retain: false,
    }
}

/// The translation's catch-all domain: the DefaultServer, with a target-less rule (404); on
/// HTTPS it serves the class's default certificate.
fn catch_all(https: bool) -> DesiredDomain {
    DesiredDomain {
        domain: CATCH_ALL.into(),
        host: String::new(),
        default_server: true,
        certificate: https.then(|| CertSource::Id("cert-default".into())),
        rules: vec![DesiredRule {
            url: NO_ROUTE_URL.into(),
            backend: None,
            targets: Vec::new(),
            redirect: None,
            settings: Default::default(),
        }],
        http2: None,
        quic: None,
    }
}

fn own() -> Ownership {
    Ownership {
        lb_owned: true,
        listener_name: LISTENER_NAME.into(),
    }
}

/// Apply the plan from the simulated state to `desired` one change at a time, checking the
/// invariant after each; then the CLB is in sync (a second plan is empty).
fn step(sim: &mut Sim, desired: &DesiredLb) -> Result<(), TestCaseError> {
    let before = sim.served();
    let keep: BTreeSet<Key> = before.intersection(&wanted(desired)).cloned().collect();
    let p = plan::diff(Some(desired), sim.lb.as_ref(), &own()).expect("plan");
    for (i, c) in p.changes.iter().enumerate() {
        sim.apply(c);
        let now = sim.served();
        let moved = default_not_catch_all(sim);
        prop_assert!(
            moved.is_empty(),
            "after change {i} ({c}) these listeners' default is not the catch-all: {moved:?}\nplan:\n{}",
            p.changes
                .iter()
                .map(|c| format!("{c}\n"))
                .collect::<String>()
        );
        let lost: Vec<&Key> = keep.difference(&now).collect();
        prop_assert!(
            lost.is_empty(),
            "after change {i} ({c}) these lost every healthy target: {lost:?}\nplan:\n{}",
            p.changes
                .iter()
                .map(|c| format!("{c}\n"))
                .collect::<String>()
        );
    }
    // Everything wanted is served, but new HTTPS hosts without a certificate (withheld).
    let served = sim.served();
    let all = wanted(desired);
    let pending: BTreeSet<(u16, &str)> = desired
        .listeners
        .iter()
        .filter(|l| l.protocol == Protocol::Https)
        .flat_map(|l| {
            l.domains
                .iter()
                .filter(|d| d.certificate.is_none())
                .map(move |d| (l.port, d.domain.as_str()))
        })
        .collect();
    let unserved: Vec<&Key> = all
        .iter()
        .filter(|k| !served.contains(*k) && !pending.contains(&(k.1, k.2.as_str())))
        .collect();
    prop_assert!(unserved.is_empty(), "not served: {:?}", unserved);
    prop_assert!(
        served.is_subset(&all),
        "served but not wanted: {:?}",
        served.difference(&all).collect::<Vec<_>>()
    );
    let again = plan::diff(Some(desired), sim.lb.as_ref(), &own()).expect("plan");
    prop_assert!(again.is_empty(), "not converged: {:?}", again.changes);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn no_intermediate_state_leaves_a_served_path_without_a_healthy_target(
        states in prop::collection::vec(
            (desired_state(), prop::collection::btree_set(0..DOMAINS.len(), 0..2)),
            1..6,
        )
    ) {
        let mut sim = Sim::default();
        for (s, pending) in &states {
            step(&mut sim, &desired_pending(s, pending))?;
        }
    }
}

/// A state with one listener on port 80 serving `a.example.com /` from pod 1.
fn one_listener(https: bool) -> BTreeMap<usize, ListenerSpec> {
    let urls: BTreeMap<usize, BTreeMap<u8, u32>> = [(0, [(1u8, 10u32)].into())].into();
    [(0, (https, [(0, urls)].into()))].into()
}

#[test]
fn a_protocol_change_on_one_port_deletes_the_old_listener_last_and_refills_the_new_one_at_once() {
    let mut sim = Sim::default();
    // HTTP on 80, and 8080 which stays.
    let mut before = one_listener(false);
    before.insert(2, before[&0].clone());
    step(&mut sim, &desired(&before)).unwrap();
    // 80 becomes HTTPS, and 443 is added.
    let mut after = one_listener(true);
    after.insert(1, after[&0].clone());
    after.insert(2, before[&2].clone());
    let p = plan::diff(Some(&desired(&after)), sim.lb.as_ref(), &own()).unwrap();
    let kinds: Vec<String> = p
        .changes
        .iter()
        .map(|c| match c {
            Change::CreateListener { port, .. } => format!("CreateListener {port}"),
            Change::DeleteListeners { listeners } => format!("DeleteListeners {}", listeners[0].2),
            Change::CreateRules { listener, .. } => format!("CreateRules {listener:?}"),
            other => other.kind().to_string(),
        })
        .collect();
    let new = |port| {
        format!(
            "{:?}",
            ListenerRef::New {
                protocol: Protocol::Https,
                port
            }
        )
    };
    assert_eq!(
        kinds,
        [
            "CreateListener 443".to_string(),
            format!("CreateRules {}", new(443)),
            "RegisterTargets".into(),
            "DeleteListeners 80".into(),
            "CreateListener 80".into(),
            format!("CreateRules {}", new(80)),
            "RegisterTargets".into(),
        ]
    );
    step(&mut sim, &desired(&after)).unwrap();
}

#[test]
fn a_new_https_host_whose_certificate_is_not_known_yet_is_withheld_until_it_is() {
    let mut sim = Sim::default();
    let spec = one_listener(true);
    let mut pending = desired(&spec);
    let host = pending.listeners[0]
        .domains
        .iter_mut()
        .find(|d| d.domain != CATCH_ALL)
        .unwrap();
    host.certificate = None;
    // The CLB, the listener and its catch-all are created; the host's rules wait for the
    // certificate (the simulated CLB refuses a new HTTPS domain without one, as CLB does).
    let p = plan::diff(Some(&pending), sim.lb.as_ref(), &own()).unwrap();
    for c in &p.changes {
        sim.apply(c);
    }
    let kinds: Vec<&str> = p.changes.iter().map(Change::kind).collect();
    assert_eq!(
        kinds,
        ["CreateLoadBalancer", "CreateListener", "CreateRules"]
    );
    assert!(sim.served().is_empty());
    // The Secret arrives: the host is created with its certificate.
    step(&mut sim, &desired(&spec)).unwrap();
    assert_eq!(sim.served().len(), 1);
    // A certificate that goes missing later leaves the served host alone.
    let p = plan::diff(Some(&pending), sim.lb.as_ref(), &own()).unwrap();
    assert!(p.is_empty(), "{:?}", p.changes);
}
