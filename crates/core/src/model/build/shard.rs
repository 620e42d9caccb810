//! Auto-sharding of shared classes (`sharing: Shared`): which of the class's CLBs ("shards")
//! each host lives on. Pure and deterministic.
//!
//! - A *unit* is a set of Ingresses that share hosts (transitively): a host with all its rules
//!   lives on exactly one shard, and an Ingress is never split, so every Ingress has one
//!   address. Ingresses with a host-less rule or a `defaultBackend` (the class's catch-all)
//!   live on shard 0.
//! - A unit costs the CLB rules its hosts translate to (`host_cost`) on one listener; a shard
//!   holds units while the sum, with its catch-all domain, stays within the account's rules
//!   per listener.
//! - Placement is sticky: a unit whose hosts a shard already serves (`Snapshot::placement`,
//!   read from the CLBs or remembered from the last build) stays there while it fits. Sticky
//!   units are placed first, oldest first; then new units (catch-alls first), oldest first, on
//!   the lowest shard with room, opening the lowest free shard number while the class has
//!   fewer than `maxLoadBalancers` CLBs. What fits nowhere is parked with a Warning.

use super::*;
use std::collections::BTreeSet;

/// Where the hosts of shared classes live: class -> CLB domain -> shard.
pub type Placement = BTreeMap<String, BTreeMap<String, u32>>;

/// The CLB rules one host with these paths costs on a listener, without its share of the
/// catch-all domain; with `default_backend`, the `/` copy of the class's default backend too.
pub fn host_cost(host: &str, paths: &[(&str, PathKind)], default_backend: bool) -> usize {
    let unit = ();
    let default = default_backend.then_some(&unit);
    translate::translate_rules(
        [(Some(host), paths.iter().map(|&(p, k)| (p, k, &unit)))],
        default,
    )
    .iter()
    .filter(|d| !d.default_server)
    .map(|d| d.rules.len())
    .sum()
}

/// The rules of the catch-all domain with these host-less paths (and default backend).
fn catch_all_cost(paths: &[(&str, PathKind)], default_backend: bool) -> usize {
    let unit = ();
    let default = default_backend.then_some(&unit);
    let rules = [(None, paths.iter().map(|&(p, k)| (p, k, &unit)))];
    translate::translate_rules(rules, default)
        .iter()
        .filter(|d| d.default_server)
        .map(|d| d.rules.len())
        .sum::<usize>()
        .max(1)
}

/// The key of a host in a [`Placement`]: its CLB domain.
pub fn placement_key(host: &str) -> String {
    translate::HostKey::from_host(Some(host)).clb_domain()
}

fn path_kind(path_type: &str) -> Option<PathKind> {
    match path_type {
        "Exact" => Some(PathKind::Exact),
        "Prefix" | "ImplementationSpecific" => Some(PathKind::Prefix),
        _ => None,
    }
}

/// Ingresses that share hosts, placed together.
struct Unit<'a> {
    /// Indices into the class's members (oldest first), ascending.
    members: Vec<usize>,
    hosts: BTreeSet<&'a str>,
    catch_all: bool,
    /// Rules on a shard without / with the class's default backend.
    cost: usize,
    cost_with_default: usize,
}

/// The shards of one shared class.
pub(super) struct Sharded<'a> {
    pub(super) shards: BTreeMap<u32, Vec<Managed<'a>>>,
    /// CLB domain -> shard of every placed host.
    pub(super) placement: BTreeMap<String, u32>,
    pub(super) problems: Vec<Problem>,
}

fn find(parent: &mut [usize], mut i: usize) -> usize {
    while parent[i] != i {
        parent[i] = parent[parent[i]];
        i = parent[i];
    }
    i
}

/// Spread `members` (one shared class's Ingresses, oldest first) over shards.
pub(super) fn shard_class<'a>(
    class: &str,
    members: Vec<Managed<'a>>,
    observed: Option<&BTreeMap<String, u32>>,
    limits: Limits,
    max_lbs: u32,
) -> Sharded<'a> {
    // Hosts, paths and catch-alls of each member.
    let mut parent: Vec<usize> = (0..members.len()).collect();
    let mut host_first: BTreeMap<&'a str, usize> = BTreeMap::new();
    let mut host_paths: BTreeMap<&'a str, Vec<(&'a str, PathKind)>> = BTreeMap::new();
    let mut catch_all_paths: Vec<(&'a str, PathKind)> = Vec::new();
    let mut catch_all = vec![false; members.len()];
    let mut default_backend = false;
    for (mi, m) in members.iter().enumerate() {
        let spec = m.ing.spec.as_ref();
        if spec.is_some_and(|s| s.default_backend.is_some()) {
            catch_all[mi] = true;
            default_backend = true;
        }
        for rule in spec.and_then(|s| s.rules.as_deref()).unwrap_or_default() {
            let paths =
                rule.http.iter().flat_map(|h| &h.paths).filter_map(|p| {
                    Some((p.path.as_deref().unwrap_or("/"), path_kind(&p.path_type)?))
                });
            match rule.host.as_deref().filter(|h| !h.is_empty()) {
                None => {
                    catch_all[mi] = true;
                    catch_all_paths.extend(paths);
                }
                Some(h) => {
                    host_paths.entry(h).or_default().extend(paths);
                    match host_first.get(h) {
                        Some(&first) => {
                            let (a, b) = (find(&mut parent, first), find(&mut parent, mi));
                            parent[a.max(b)] = a.min(b);
                        }
                        None => {
                            host_first.insert(h, mi);
                        }
                    }
                }
            }
        }
    }
    let mut units: BTreeMap<usize, Unit<'a>> = BTreeMap::new();
    for (mi, &has_catch_all) in catch_all.iter().enumerate() {
        let root = find(&mut parent, mi);
        let u = units.entry(root).or_insert_with(|| Unit {
            members: Vec::new(),
            hosts: BTreeSet::new(),
            catch_all: false,
            cost: 0,
            cost_with_default: 0,
        });
        u.members.push(mi);
        u.catch_all |= has_catch_all;
    }
    for (&h, &first) in &host_first {
        let root = find(&mut parent, first);
        if let Some(u) = units.get_mut(&root) {
            u.hosts.insert(h);
            let mut paths = host_paths.remove(h).unwrap_or_default();
            paths.sort_unstable();
            paths.dedup();
            u.cost += host_cost(h, &paths, false);
            u.cost_with_default += host_cost(h, &paths, default_backend);
        }
    }
    catch_all_paths.sort_unstable();
    catch_all_paths.dedup();
    let base0 = catch_all_cost(&catch_all_paths, default_backend);
    let cap = limits.rules_per_listener;
    let sticky_of = |u: &Unit<'_>| -> Option<u32> {
        let observed = observed?;
        u.hosts
            .iter()
            .filter_map(|h| {
                observed
                    .get(&placement_key(h))
                    .or_else(|| observed.get(*h))
                    .copied()
            })
            .min()
    };
    // Sticky units first, then new ones (those that must be on shard 0 first, so that new
    // hosts do not take its room); each group oldest first (by its oldest member).
    let mut order: Vec<(bool, bool, usize, Option<u32>)> = units
        .iter()
        .map(|(&root, u)| {
            let sticky = if u.catch_all { None } else { sticky_of(u) };
            (sticky.is_none(), !u.catch_all, root, sticky)
        })
        .collect();
    order.sort_unstable();
    let mut used: BTreeMap<u32, usize> = BTreeMap::new();
    let base = |s: u32| if s == 0 { base0 } else { 1 };
    let mut assigned: Vec<Option<u32>> = vec![None; members.len()];
    let mut placement = BTreeMap::new();
    let mut problems = Vec::new();
    for (_, _, root, sticky) in order {
        let u = &units[&root];
        let cost = |s: u32| if s == 0 { u.cost_with_default } else { u.cost };
        let fits = |used: &BTreeMap<u32, usize>, s: u32| {
            used.get(&s).copied().unwrap_or_else(|| base(s)) + cost(s) <= cap
        };
        let chosen = if u.catch_all {
            let open = used.contains_key(&0) || used.len() < max_lbs as usize;
            (open && fits(&used, 0)).then_some(0)
        } else {
            sticky
                .filter(|&s| {
                    fits(&used, s) && (used.contains_key(&s) || used.len() < max_lbs as usize)
                })
                .or_else(|| used.keys().copied().find(|&s| fits(&used, s)))
                .or_else(|| {
                    let free = (0..).find(|s| !used.contains_key(s))?;
                    (used.len() < max_lbs as usize && fits(&used, free)).then_some(free)
                })
        };
        let Some(s) = chosen else {
            // The rules the unit needs on a shard of its own (with that shard's catch-all).
            let alone = if u.catch_all {
                base0 + cost(0)
            } else {
                base(1) + cost(1)
            };
            let message = if alone > cap {
                format!(
                    "its hosts need {alone} CLB rules on a listener; at most {cap} are allowed (each Prefix path takes two), so no CLB of class {class} can hold them"
                )
            } else if u.catch_all {
                format!(
                    "it has a host-less rule or a defaultBackend, which live on the first CLB of class {class}, and that CLB has no room for its {} more CLB rules (at most {cap} per listener)",
                    cost(0)
                )
            } else {
                format!(
                    "no CLB of class {class} has room for its {} CLB rules (at most {cap} per listener) and the class already uses its maxLoadBalancers ({max_lbs}) CLBs",
                    cost(1)
                )
            };
            for &mi in &u.members {
                problems.push(Problem {
                    object: members[mi].key.clone(),
                    field: "spec".into(),
                    reason: Reason::TooManyRules,
                    effect: Effect::Parked,
                    message: message.clone(),
                });
            }
            continue;
        };
        let now = used.get(&s).copied().unwrap_or_else(|| base(s));
        used.insert(s, now + cost(s));
        for &mi in &u.members {
            assigned[mi] = Some(s);
        }
        for h in &u.hosts {
            placement.insert(placement_key(h), s);
        }
    }
    let mut shards: BTreeMap<u32, Vec<Managed<'a>>> = BTreeMap::new();
    for (m, s) in members.into_iter().zip(assigned) {
        if let Some(s) = s {
            shards.entry(s).or_default().push(m);
        }
    }
    Sharded {
        shards,
        placement,
        problems,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prefix_path_costs_two_rules_and_the_default_backend_adds_a_root_rule() {
        assert_eq!(host_cost("a.com", &[("/a", PathKind::Prefix)], false), 2);
        assert_eq!(host_cost("a.com", &[("/a", PathKind::Prefix)], true), 3);
        assert_eq!(host_cost("a.com", &[("/", PathKind::Prefix)], true), 1);
        assert_eq!(
            host_cost("a.com", &[], false),
            1,
            "the no-route placeholder"
        );
        assert_eq!(catch_all_cost(&[], false), 1);
        assert_eq!(catch_all_cost(&[("/x", PathKind::Exact)], true), 2);
    }
}
