//! Rules and domains of one listener: rules created, kept, renamed (a stale rule with the same
//! targets gets the new URL), deleted; domain attributes (certificate, default domain); and the
//! targets of each rule (through `targets`).

use super::*;

/// Diff the rules of one synced listener (`lref`, with its observed rules).
pub(super) fn diff_rules<'d>(
    dl: &'d DesiredListener,
    lref: &ListenerRef,
    obs_rules: &[ObservedRule],
    observed: Option<&ObservedLb>,
    phases: &mut Phases,
    renamed: &mut Vec<Renamed<'d>>,
) {
    let listener_id = match lref {
        ListenerRef::Id(id) => id.clone(),
        ListenerRef::New { .. } => String::new(),
    };
    // Observed rules by (domain, url); the last of duplicates wins, as in a map.
    let mut obs_by_key: FxHashMap<(&str, &str), &ObservedRule> =
        FxHashMap::with_capacity_and_hasher(obs_rules.len(), Default::default());
    for r in obs_rules {
        obs_by_key.insert((r.domain.as_str(), r.url.as_str()), r);
    }
    let want_count = dl.domains.iter().map(|d| d.rules.len()).sum();
    let mut want_keys: FxHashSet<(&str, &str)> =
        FxHashSet::with_capacity_and_hasher(want_count, Default::default());
    for d in &dl.domains {
        for r in &d.rules {
            want_keys.insert((d.domain.as_str(), r.url.as_str()));
        }
    }
    // Stale rules, per domain, available for re-use by a renamed path.
    let mut stale: BTreeMap<&str, Vec<&ObservedRule>> = BTreeMap::new();
    for r in obs_rules {
        if !want_keys.contains(&(r.domain.as_str(), r.url.as_str())) {
            stale.entry(r.domain.as_str()).or_default().push(r);
        }
    }
    let has_default = obs_rules.iter().any(|r| r.default_server);
    let mut new_rules = Vec::new();
    // Rules whose backend protocol ModifyRule cannot set: deleted, then created anew.
    let mut recreated: Vec<&ObservedRule> = Vec::new();
    for d in &dl.domains {
        let cert = d.certificate.as_ref().map(|c| resolve_cert(c, observed));
        let obs_domain: Vec<&ObservedRule> =
            obs_rules.iter().filter(|r| r.domain == d.domain).collect();
        let domain_survives = obs_domain
            .iter()
            .any(|r| want_keys.contains(&(r.domain.as_str(), r.url.as_str())));
        let mut domain_is_new = !domain_survives;
        // A new HTTPS domain without a certificate cannot be created (CLB refuses its rules:
        // MissingParameter Rules.Certificate). Its Secret is not in the cache yet, or missing
        // (a Problem of the model): its new rules are withheld until the certificate is known,
        // when the Secret's arrival requeues the stack. Its rules that exist are kept.
        let withheld = dl.protocol == Protocol::Https && cert.is_none();
        // Rules whose backend protocol ModifyRule cannot set, and whether they are all the
        // domain keeps (then the domain is made again, which needs its certificate: without it
        // they wait).
        let mut recreate_here: Vec<&ObservedRule> = d
            .rules
            .iter()
            .filter_map(|r| {
                obs_by_key
                    .get(&(d.domain.as_str(), r.url.as_str()))
                    .copied()
                    .filter(|o| needs_recreate(r, o))
            })
            .collect();
        let domain_recreated = !recreate_here.is_empty()
            && !obs_domain.iter().any(|x| {
                want_keys.contains(&(x.domain.as_str(), x.url.as_str()))
                    && !recreate_here.iter().any(|o| o.location_id == x.location_id)
            });
        if domain_recreated && withheld {
            recreate_here.clear();
        }
        for r in &d.rules {
            let mut existing_rule = obs_by_key
                .get(&(d.domain.as_str(), r.url.as_str()))
                .copied();
            // The rule is recreated in the same place; when no other rule of its domain
            // stays, the domain itself is made again and the new rules carry its attributes.
            let mut recreate_alone = false;
            if let Some(o) = existing_rule
                .filter(|o| recreate_here.iter().any(|x| x.location_id == o.location_id))
            {
                recreate_alone = domain_recreated;
                recreated.push(o);
                existing_rule = None;
            }
            let reused = if existing_rule.is_none() && !recreate_alone {
                // A stale rule of this domain with exactly these targets: rename it.
                stale.get_mut(d.domain.as_str()).and_then(|cands| {
                    let pos = cands.iter().position(|o| {
                        !r.targets.is_empty()
                            && same_targets(&o.targets, &r.targets)
                            && !needs_recreate(r, o)
                    })?;
                    Some(cands.remove(pos))
                })
            } else {
                None
            };
            if let Some(o) = reused.or(existing_rule) {
                modify_settings(&listener_id, d.domain.as_str(), r, o, phases);
            }
            if let Some(o) = reused {
                renamed.push((
                    dl.port,
                    d.domain.as_str(),
                    r.url.as_str(),
                    o.location_id.clone(),
                ));
                phases.url_mods.push(Change::ModifyRuleUrl {
                    listener: listener_id.clone(),
                    location_id: o.location_id.clone(),
                    domain: d.domain.clone(),
                    from: o.url.clone(),
                    to: r.url.clone(),
                });
                domain_is_new = false;
                continue;
            }
            match existing_rule {
                Some(o) => {
                    diff_targets(
                        lref,
                        || RuleRef::Id(o.location_id.clone()),
                        &o.targets,
                        &r.targets,
                        &mut phases.register,
                        &mut phases.reweight,
                        &mut phases.deregister,
                    );
                }
                None if withheld && domain_is_new => {}
                None => {
                    // A new domain's first rule carries the domain's HTTP/2 and QUIC.
                    let first_of_domain = (domain_is_new || recreate_alone)
                        && !new_rules.iter().any(|n: &NewRule| n.domain == d.domain);
                    new_rules.push(NewRule {
                        domain: d.domain.clone(),
                        url: r.url.clone(),
                        default_server: recreate_alone
                            && obs_domain.iter().any(|x| x.default_server),
                        certificate: if domain_is_new || recreate_alone {
                            cert.clone()
                        } else {
                            None
                        },
                        settings: RuleSettings {
                            http2: d.http2.filter(|_| first_of_domain),
                            quic: d.quic.filter(|_| first_of_domain),
                            ..r.settings.clone()
                        },
                    });
                    diff_targets(
                        lref,
                        || RuleRef::New {
                            domain: d.domain.clone(),
                            url: r.url.clone(),
                        },
                        &[],
                        &r.targets,
                        &mut phases.register,
                        &mut phases.reweight,
                        &mut phases.deregister,
                    );
                }
            }
        }
        // Domain-level attributes of a domain that already exists on the listener.
        if !domain_is_new {
            let current_cert = obs_domain.iter().find_map(|r| r.certificate_id.clone());
            let cert_change = match &cert {
                Some(CertRef::Id(id)) if current_cert.as_deref() != Some(id) => cert.clone(),
                Some(CertRef::Uploaded { .. }) => cert.clone(),
                _ => None,
            };
            let is_default = obs_domain.iter().any(|r| r.default_server);
            let make_default = d.default_server && !is_default;
            let flag = |want: Option<bool>, have: fn(&ObservedRule) -> Option<bool>| {
                want.filter(|w| obs_domain.iter().find_map(|r| have(r)).unwrap_or(false) != *w)
            };
            let http2 = flag(d.http2, |r| r.settings.http2);
            let quic = flag(d.quic, |r| r.settings.quic);
            if cert_change.is_some() || make_default || http2.is_some() || quic.is_some() {
                phases.domain_mods.push(Change::ModifyDomain {
                    listener: lref.clone(),
                    domain: d.domain.clone(),
                    certificate: cert_change,
                    make_default,
                    http2,
                    quic,
                });
            }
        } else if d.default_server && !withheld {
            if has_default {
                phases.domain_mods.push(Change::ModifyDomain {
                    listener: lref.clone(),
                    domain: d.domain.clone(),
                    certificate: None,
                    make_default: true,
                    http2: None,
                    quic: None,
                });
            } else if let Some(first) = new_rules.iter_mut().find(|n| n.domain == d.domain) {
                first.default_server = true;
            }
        }
    }
    let creates = !new_rules.is_empty();
    if creates {
        // The default domain's rules first, so CLB never picks another domain as default.
        new_rules.sort_by_key(|n| !n.default_server);
        phases.rule_creates.push(Change::CreateRules {
            listener: lref.clone(),
            rules: new_rules,
        });
    }
    // Rules of domains that leave the listener altogether (their hosts are gone from it, or
    // moved to another shard) are deleted before anything is created: they make room under the
    // rules-per-listener quota, so a nearly full listener never answers LimitExceeded for the
    // new rules. No host that stays loses anything by it. Everything else stale (rules of
    // staying domains, the default domain) goes last, after its replacement serves.
    // A host that stays under another domain form (regex <-> native wildcard) is not leaving.
    let staying_hosts: FxHashSet<String> = dl
        .domains
        .iter()
        .flat_map(|d| {
            [
                d.host.clone(),
                crate::model::translate::HostKey::from_host(Some(&d.host)).clb_domain(),
            ]
        })
        .collect();
    let departs = |domain: &str| {
        !dl.domains.iter().any(|d| d.domain == domain)
            && !staying_hosts.contains(domain)
            && !obs_rules
                .iter()
                .any(|r| r.domain == domain && r.default_server)
    };
    let (early, late): (Vec<&ObservedRule>, Vec<&ObservedRule>) = stale
        .values()
        .flatten()
        .copied()
        .partition(|r| creates && departs(&r.domain));
    let as_change = |rules: Vec<&ObservedRule>| {
        (!rules.is_empty()).then(|| Change::DeleteRules {
            listener: listener_id.clone(),
            rules: rules
                .into_iter()
                .map(|r| (r.location_id.clone(), r.domain.clone(), r.url.clone()))
                .collect(),
        })
    };
    // A recreated rule must be gone before its replacement (same domain and URL) is created.
    phases
        .early_rule_deletes
        .extend(as_change(early.into_iter().chain(recreated).collect()));
    phases.rule_deletes.extend(as_change(late));
}

/// Must rule `have` be deleted and created again to get `want`'s backend protocol? ModifyRule
/// sets ForwardType HTTP, HTTPS or GRPC only (api.json 2018-03-17); GRPCS is given at creation.
fn needs_recreate(want: &crate::model::DesiredRule, have: &ObservedRule) -> bool {
    want.settings.forward_type.as_deref().is_some_and(|w| {
        have.settings.forward_type.as_deref().unwrap_or("HTTP") != w
            && !MODIFY_RULE_FORWARD_TYPES.contains(&w)
    })
}

/// One `ModifyRule` when an existing rule's backend settings differ from the wanted ones.
fn modify_settings(
    listener_id: &str,
    domain: &str,
    want: &crate::model::DesiredRule,
    have: &ObservedRule,
    phases: &mut Phases,
) {
    if want.settings.is_empty() {
        return;
    }
    if let Some(delta) = settings_delta(&want.settings, &have.settings) {
        phases.setting_mods.push(Change::ModifyRuleSettings {
            listener: listener_id.to_string(),
            location_id: have.location_id.clone(),
            domain: domain.to_string(),
            url: want.url.clone(),
            settings: delta,
        });
    }
}
