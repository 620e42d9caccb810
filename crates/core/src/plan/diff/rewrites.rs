//! Redirects (`auto-rewrite`): created once the rules at both ends exist, stale ones deleted.

use super::*;

/// Redirects (auto-rewrite): stale ones are deleted, then missing ones created, once the rules
/// at both ends exist. A redirect already in place with the same target and code is left alone.
pub(super) fn diff_rewrites(
    desired: &DesiredLb,
    lrefs: &[(u16, Protocol, ListenerRef, &[ObservedRule])],
    renamed: &[(u16, &str, &str, String)],
    changes: &mut Vec<Change>,
) {
    let find = |port: u16, proto: Protocol| {
        lrefs
            .iter()
            .find(|(p, pr, _, _)| *p == port && *pr == proto)
    };
    let mut deletes: Vec<Change> = Vec::new();
    let mut creates: Vec<Change> = Vec::new();
    for dl in desired
        .listeners
        .iter()
        .filter(|l| l.protocol == Protocol::Http)
    {
        let Some((_, _, src_ref, src_obs)) = find(dl.port, Protocol::Http) else {
            continue;
        };
        let has_observed = src_obs.iter().any(|o| o.rewrite.is_some());
        let has_desired = dl
            .domains
            .iter()
            .flat_map(|d| &d.rules)
            .any(|r| r.redirect.is_some());
        if !has_observed && !has_desired {
            continue;
        }
        let mut keep: Vec<&str> = Vec::new();
        let mut wanted: BTreeMap<u16, (ListenerRef, Vec<NewRewrite>)> = BTreeMap::new();
        for d in &dl.domains {
            for r in &d.rules {
                let Some(rd) = r.redirect else { continue };
                let Some((_, _, tgt_ref, tgt_obs)) = find(rd.https_port, Protocol::Https) else {
                    continue;
                };
                let src_rule = src_obs
                    .iter()
                    .find(|o| o.domain == d.domain && o.url == r.url);
                let tgt_id = tgt_obs
                    .iter()
                    .find(|o| o.domain == d.domain && o.url == r.url)
                    .map(|o| o.location_id.clone())
                    .or_else(|| {
                        renamed
                            .iter()
                            .find(|(p, dom, u, _)| {
                                *p == rd.https_port && *dom == d.domain && *u == r.url
                            })
                            .map(|x| x.3.clone())
                    });
                if let (Some(s), Some(tid), ListenerRef::Id(tl)) = (src_rule, &tgt_id, tgt_ref)
                    && s.rewrite.as_ref().is_some_and(|w| {
                        w.target_listener == *tl && w.target_location == *tid && w.code == rd.code
                    })
                {
                    keep.push(&s.location_id);
                    continue;
                }
                wanted
                    .entry(rd.https_port)
                    .or_insert_with(|| (tgt_ref.clone(), Vec::new()))
                    .1
                    .push(NewRewrite {
                        source: match src_rule {
                            Some(s) => RuleRef::Id(s.location_id.clone()),
                            None => RuleRef::New {
                                domain: d.domain.clone(),
                                url: r.url.clone(),
                            },
                        },
                        target: match tgt_id {
                            Some(id) => RuleRef::Id(id),
                            None => RuleRef::New {
                                domain: d.domain.clone(),
                                url: r.url.clone(),
                            },
                        },
                        domain: d.domain.clone(),
                        url: r.url.clone(),
                        code: rd.code,
                    });
            }
        }
        if let ListenerRef::Id(src_id) = src_ref {
            let mut stale: BTreeMap<&str, Vec<(String, String, String, String)>> = BTreeMap::new();
            for o in src_obs.iter() {
                if let Some(w) = &o.rewrite
                    && !keep.contains(&o.location_id.as_str())
                {
                    stale.entry(w.target_listener.as_str()).or_default().push((
                        o.location_id.clone(),
                        w.target_location.clone(),
                        o.domain.clone(),
                        o.url.clone(),
                    ));
                }
            }
            for (target, rewrites) in stale {
                deletes.push(Change::DeleteRewrites {
                    source_listener: src_id.clone(),
                    target_listener: target.to_string(),
                    rewrites,
                });
            }
        }
        for (_, (target_listener, rewrites)) in wanted {
            creates.push(Change::CreateRewrites {
                source_listener: src_ref.clone(),
                target_listener,
                rewrites,
            });
        }
    }
    changes.extend(deletes);
    changes.extend(creates);
}
