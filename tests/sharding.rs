//! Auto-sharding of a shared class, end to end: the real controller against the test API server
//! and the CLB emulator (default quotas: 50 rules per listener), checked through the emulator's
//! data plane.

use clb_test_support::cluster::*;
use k8s_openapi::api::networking::v1::Ingress;
use kube::Api;
use kube::api::DeleteParams;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const SLOW: Duration = Duration::from_secs(120);
const INGRESSES: usize = 60;
/// Hosts per shard: each host's 3 Prefix paths take 6 rules; the catch-all domain takes one of
/// the 50 rules of a listener, so 8 hosts (49 rules) fit on one CLB.
const HOSTS_PER_SHARD: usize = 8;

fn name(i: usize) -> String {
    format!("ing-{i:02}")
}

fn host(i: usize) -> String {
    format!("h{i:02}.shard.test")
}

/// Ingress `i`: its own host with three Prefix paths to Services a, b and c.
async fn add(e: &Env, i: usize) {
    let paths = [
        ("/a", "Prefix", "a"),
        ("/b", "Prefix", "b"),
        ("/c", "Prefix", "c"),
    ];
    e.ingress(&name(i), &host(i), &paths).await;
}

/// Wait until every Ingress in `which` serves all three paths through its own address.
async fn until_all_served(e: &Env, which: impl Iterator<Item = usize>) {
    for i in which {
        for (path, target) in [
            ("/a/x", "10.1.0.1:8080"),
            ("/b", "10.1.0.2:8080"),
            ("/c/y/z", "10.1.0.3:8080"),
        ] {
            e.until_routed(&name(i), &host(i), path, target, SLOW).await;
        }
    }
}

async fn addresses(e: &Env, which: impl Iterator<Item = usize>) -> BTreeMap<usize, String> {
    let mut out = BTreeMap::new();
    for i in which {
        let vip = e.vip(&name(i)).await.expect("an address");
        out.insert(i, vip);
    }
    out
}

async fn until_lb_count(e: &Env, n: usize) {
    let start = Instant::now();
    while e.lb_count().await != n {
        assert!(
            start.elapsed() < SLOW,
            "{} CLBs instead of {n}",
            e.lb_count().await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_hosts_spread_over_shards_stay_put_when_half_go_and_after_a_restart() {
    let e = env().await;
    e.class("Shared").await;
    for (svc, pod) in [("a", "10.1.0.1"), ("b", "10.1.0.2"), ("c", "10.1.0.3")] {
        e.service(svc, &[pod]).await;
    }
    for i in 0..INGRESSES {
        add(&e, i).await;
    }
    let mut ctl = e.controller("c1", &[]);
    until_all_served(&e, 0..INGRESSES).await;
    let shards = INGRESSES.div_ceil(HOSTS_PER_SHARD);
    until_lb_count(&e, shards).await;
    let before = addresses(&e, 0..INGRESSES).await;
    // Hosts fill shards in age (here: name) order; each shard is one address.
    for i in 0..INGRESSES {
        let first_of_shard = i - i % HOSTS_PER_SHARD;
        assert_eq!(
            before[&i],
            before[&first_of_shard],
            "{} shares its shard",
            host(i)
        );
    }
    let distinct: std::collections::BTreeSet<&String> = before.values().collect();
    assert_eq!(distinct.len(), shards, "one address per shard");
    // A host is served only through its own shard's address.
    let other = &before[&(HOSTS_PER_SHARD)];
    assert_ne!(e.request(other, &host(0), "/a").await.0, 200);

    // Delete the oldest half: shards 0-2 empty out (and go), shard 3 keeps two hosts.
    let api: Api<Ingress> = Api::namespaced(e.kube.clone(), "default");
    let half = INGRESSES / 2;
    for i in 0..half {
        api.delete(&name(i), &DeleteParams::default())
            .await
            .unwrap();
    }
    let left = shards - half / HOSTS_PER_SHARD;
    until_lb_count(&e, left).await;
    until_all_served(&e, half..INGRESSES).await;
    assert_eq!(
        addresses(&e, half..INGRESSES).await,
        before.clone().split_off(&half),
        "no host moved"
    );

    // A restarted controller (empty memory) reads the placement back from the CLBs: nothing
    // moves, and a new host joins the lowest shard with room instead of a new CLB.
    ctl.kill();
    let _ctl = e.controller("c2", &[]);
    add(&e, INGRESSES).await;
    until_all_served(&e, [INGRESSES].into_iter()).await;
    until_all_served(&e, half..INGRESSES).await;
    assert_eq!(
        addresses(&e, half..INGRESSES).await,
        before.clone().split_off(&half),
        "no host moved after the restart"
    );
    assert_eq!(e.lb_count().await, left, "no new CLB for a host that fits");
    let lowest_with_room = half - half % HOSTS_PER_SHARD;
    assert_eq!(
        e.vip(&name(INGRESSES)).await.as_ref(),
        Some(&before[&lowest_with_room])
    );
}

/// The same 60 Ingresses as manifests: the shared class, Services a, b, c and the Ingresses.
fn manifests() -> String {
    let mut s = clb_test_support::worlds::CLASS.replace(
        "spec: {targetMode: Direct}",
        "spec: {targetMode: Direct, sharing: Shared}",
    );
    for (svc, pod) in [("a", "10.1.0.1"), ("b", "10.1.0.2"), ("c", "10.1.0.3")] {
        s.push_str(&clb_test_support::worlds::service(svc, &[pod]));
    }
    for i in 0..INGRESSES {
        let (name, host) = (name(i), host(i));
        let path = |p: &str| {
            format!(
                "      - {{path: /{p}, pathType: Prefix, backend: {{service: {{name: {p}, port: {{number: 80}}}}}}}}\n"
            )
        };
        s.push_str(&format!(
            "---\napiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {{name: {name}, namespace: default}}\nspec:\n  rules:\n  - host: {host}\n    http:\n      paths:\n{}{}{}",
            path("a"),
            path("b"),
            path("c")
        ));
    }
    s
}

/// `clb-ingress apply -f <file> -o json` against the test environment's emulator.
fn apply(e: &Env, file: &std::path::Path) -> serde_json::Value {
    let out = clb_test_support::emulator::command()
        .arg("apply")
        .arg("-f")
        .arg(file)
        .args(["--clb-endpoint", &format!("http://{}", e.emu.addr)])
        .args(["--cluster-id", "apply", "-o", "json"])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run clb-ingress apply");
    assert!(
        out.status.success(),
        "apply failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("apply -o json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_hosts_applied_from_manifests_are_served_on_shards_and_a_second_apply_is_in_sync() {
    let e = env().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sharded.yaml");
    std::fs::write(&file, manifests()).unwrap();
    let first = apply(&e, &file);
    let results = first.as_array().expect("results");
    assert_eq!(
        results.len(),
        INGRESSES.div_ceil(HOSTS_PER_SHARD),
        "one stack per shard"
    );
    let mut served = 0;
    for r in results {
        let vip = r["outcome"]["vips"][0].as_str().expect("an address");
        for ing in r["ingresses"].as_array().unwrap() {
            let i: usize = ing[0].as_str().unwrap()["Ingress default/ing-".len()..]
                .parse()
                .unwrap_or_else(|_| panic!("{ing}"));
            assert_eq!(
                e.request(vip, &host(i), "/b/x").await,
                (200, "10.1.0.2:8080".to_string()),
                "{} through {vip}",
                host(i)
            );
            served += 1;
        }
    }
    assert_eq!(served, INGRESSES);
    let second = apply(&e, &file);
    for r in second.as_array().unwrap() {
        assert_eq!(r["outcome"]["changes"], 0, "in sync: {r}");
    }
    assert_eq!(second.as_array().unwrap().len(), results.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_renamed_on_a_full_listener_is_served_because_the_old_rules_go_first() {
    let e = env().await;
    // One CLB only: 8 hosts x 6 rules + the catch-all domain = 49 of 50 rules.
    e.class_with(
        serde_json::json!({"targetMode": "Direct", "sharing": "Shared",
        "maxLoadBalancers": 1, "tenancy": {"catchAll": {"namespaces": ["*"]}}}),
    )
    .await;
    for (svc, pod) in [("a", "10.1.0.1"), ("b", "10.1.0.2"), ("c", "10.1.0.3")] {
        e.service(svc, &[pod]).await;
    }
    for i in 0..HOSTS_PER_SHARD {
        add(&e, i).await;
    }
    let _ctl = e.controller("c1", &[]);
    until_all_served(&e, 0..HOSTS_PER_SHARD).await;
    // Ingress 0 now names a new host: 6 rules go, 6 come. Created first, they would need 55
    // rules and the CLB would refuse them (LimitExceeded) on every retry.
    let paths = [
        ("/a", "Prefix", "a"),
        ("/b", "Prefix", "b"),
        ("/c", "Prefix", "c"),
    ];
    e.ingress(&name(0), &host(HOSTS_PER_SHARD), &paths).await;
    e.until_routed(
        &name(0),
        &host(HOSTS_PER_SHARD),
        "/c/x",
        "10.1.0.3:8080",
        Duration::from_secs(30),
    )
    .await;
    let vip = e.vip(&name(0)).await.unwrap();
    assert_eq!(e.request(&vip, &host(0), "/a").await.0, 404);
    until_all_served(&e, 1..HOSTS_PER_SHARD).await;
    assert_eq!(e.lb_count().await, 1);
}

/// Wait until metric series `series` (name and labels as exposed) reads `value`.
async fn until_metric(ctl: &Controller, series: &str, value: f64) {
    let start = Instant::now();
    loop {
        let now = metric(&ctl.metrics, series).await;
        if now == Some(value) {
            return;
        }
        assert!(start.elapsed() < SLOW, "{series} is {now:?}, not {value}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_per_listener_are_exported_against_the_quota_which_is_read_again_when_raised() {
    let e = env().await;
    e.class("Shared").await;
    for (svc, pod) in [("a", "10.1.0.1"), ("b", "10.1.0.2"), ("c", "10.1.0.3")] {
        e.service(svc, &[pod]).await;
    }
    // 9 hosts: 8 fill shard 0 (49 rules), the ninth opens shard 1 (1 + 6 rules).
    for i in 0..=HOSTS_PER_SHARD {
        add(&e, i).await;
    }
    let ctl = e.controller("c1", &["--quota-refresh-seconds", "1"]);
    until_all_served(&e, 0..=HOSTS_PER_SHARD).await;
    let rules = |stack: &str| {
        format!("clb_ingress_listener_rules{{listener=\"HTTP:80\",stack=\"{stack}\"}}")
    };
    until_metric(&ctl, "clb_ingress_listener_rules_quota", 50.0).await;
    until_metric(&ctl, &rules("class:clb"), 49.0).await;
    until_metric(&ctl, &rules("class:clb#1"), 7.0).await;
    // The account's quota is raised: read again within the refresh period, without a resync.
    e.emu
        .app
        .update_settings(|s| s.quotas.rules_per_listener = 60);
    until_metric(&ctl, "clb_ingress_listener_rules_quota", 60.0).await;
    // Nothing moves (the ninth host stays on shard 1); a new host now fits on shard 0.
    add(&e, HOSTS_PER_SHARD + 1).await;
    until_all_served(&e, [HOSTS_PER_SHARD + 1].into_iter()).await;
    until_metric(&ctl, &rules("class:clb"), 55.0).await;
    until_metric(&ctl, &rules("class:clb#1"), 7.0).await;
    assert_eq!(
        e.vip(&name(HOSTS_PER_SHARD + 1)).await,
        e.vip(&name(0)).await
    );
    assert_ne!(e.vip(&name(HOSTS_PER_SHARD)).await, e.vip(&name(0)).await);
}

/// A snapshot of a shared class (`extra` class parameters) with `hosts` Ingresses (named by
/// host index, oldest first) of three Prefix paths each, and a listener quota of 13 rules:
/// two hosts (12 rules) and the catch-all domain fill a shard.
fn model_world(
    extra: &str,
    hosts: &[usize],
    default_backend_on: Option<usize>,
) -> clb_ingress::model::Snapshot {
    let mut s = clb_test_support::worlds::CLASS.replace(
        "spec: {targetMode: Direct}",
        &format!("spec: {{targetMode: Direct, sharing: Shared, tenancy: {{catchAll: {{namespaces: ['*']}}}}{extra}}}"),
    );
    for svc in ["a", "b", "c"] {
        s.push_str(&clb_test_support::worlds::service(svc, &["10.1.0.1"]));
    }
    for &i in hosts {
        let default = if default_backend_on == Some(i) {
            "  defaultBackend: {service: {name: a, port: {number: 80}}}\n"
        } else {
            ""
        };
        s.push_str(&format!(
            "---\napiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {{name: {}, namespace: default}}\nspec:\n{default}  rules:\n  - host: {}\n    http:\n      paths:\n      - {{path: /a, pathType: Prefix, backend: {{service: {{name: a, port: {{number: 80}}}}}}}}\n      - {{path: /b, pathType: Prefix, backend: {{service: {{name: b, port: {{number: 80}}}}}}}}\n      - {{path: /c, pathType: Prefix, backend: {{service: {{name: c, port: {{number: 80}}}}}}}}\n",
            name(i),
            host(i)
        ));
    }
    let mut snap = clb_test_support::snapshot(&s);
    snap.limits.rules_per_listener = 13;
    snap
}

/// Shard of each host as the build placed it.
fn shards_of(out: &clb_ingress::model::BuildOutput) -> BTreeMap<String, u32> {
    out.placement.get("clb").cloned().unwrap_or_default()
}

#[test]
fn a_host_keeps_its_shard_and_new_hosts_take_the_lowest_shard_with_room() {
    let fresh = clb_ingress::model::build(&model_world("", &[0, 1, 2], None));
    let placed = shards_of(&fresh);
    assert_eq!(placed[&host(0)], 0);
    assert_eq!(placed[&host(1)], 0);
    assert_eq!(placed[&host(2)], 1);
    assert!(fresh.problems.is_empty(), "{:?}", fresh.problems);
    // Host 0 went away; the CLBs serve host 1 on shard 0 and host 2 on shard 1. A new host 3
    // joins shard 0 (room for one), host 2 stays on shard 1 although shard 0 could take it.
    let mut snap = model_world("", &[1, 2, 3], None);
    snap.placement = fresh.placement.clone();
    let again = clb_ingress::model::build(&snap);
    let placed = shards_of(&again);
    assert_eq!(placed[&host(1)], 0);
    assert_eq!(placed[&host(2)], 1);
    assert_eq!(placed[&host(3)], 0);
    assert_eq!(again.stacks.len(), 2);
}

#[test]
fn past_max_load_balancers_only_the_newest_ingress_is_parked_with_a_warning_naming_the_limit() {
    let out = clb_ingress::model::build(&model_world(
        ", maxLoadBalancers: 2",
        &[0, 1, 2, 3, 4],
        None,
    ));
    assert_eq!(out.stacks.len(), 2);
    let parked: Vec<String> = out.problems.iter().map(|p| p.object.name.clone()).collect();
    assert_eq!(parked, vec![name(4)]);
    assert!(
        out.problems[0].message.contains("maxLoadBalancers (2)"),
        "{}",
        out.problems[0].message
    );
}

#[test]
fn an_ingress_with_a_default_backend_lives_on_shard_zero() {
    // Host 2's Ingress has the class's catch-all: it takes shard 0 (whose hosts then also get
    // the default backend's `/` rule, 7 rules each, so one per shard).
    let out = clb_ingress::model::build(&model_world("", &[0, 1, 2], Some(2)));
    let placed = shards_of(&out);
    assert_eq!(placed[&host(2)], 0);
    assert_ne!(placed[&host(0)], 0);
    assert!(out.problems.is_empty(), "{:?}", out.problems);
}

#[test]
fn plan_shows_which_shard_each_host_is_placed_on() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sharded.yaml");
    std::fs::write(&file, manifests()).unwrap();
    let plan = clb_test_support::emulator::plan_json(&[&file]);
    let placement = &plan["placement"]["clb"];
    for i in 0..INGRESSES {
        assert_eq!(
            placement[host(i)],
            (i / HOSTS_PER_SHARD) as u64,
            "{}",
            host(i)
        );
    }
    let stacks: Vec<&str> = plan["stacks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["desired"]["stack"].as_str().unwrap())
        .collect();
    assert_eq!(stacks.len(), INGRESSES.div_ceil(HOSTS_PER_SHARD));
    assert!(
        stacks.contains(&"class:clb") && stacks.contains(&"class:clb#7"),
        "{stacks:?}"
    );
    let table = clb_test_support::emulator::command()
        .args(["plan", "-f"])
        .arg(&file)
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(
        table.contains("shard 7 of class clb; hosts: h56.shard.test, h57.shard.test, h58.shard.test, h59.shard.test"),
        "{table}"
    );
}

#[test]
fn a_host_too_big_for_any_clb_is_parked_without_opening_a_clb() {
    let mut snap = model_world("", &[0], None);
    // 6 rules per listener: the host's 6 rules and the catch-all domain's one cannot fit.
    snap.limits.rules_per_listener = 6;
    let out = clb_ingress::model::build(&snap);
    assert!(out.stacks.is_empty());
    assert_eq!(out.problems.len(), 1);
    assert!(
        out.problems[0]
            .message
            .contains("need 7 CLB rules on a listener; at most 6"),
        "{}",
        out.problems[0].message
    );
}
