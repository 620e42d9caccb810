//! Throughput of `clb-ingress apply` at the CLB rate limit, and the read bound of a no-change
//! resync, both against an emulator child process (see tests/support/emulator.rs).
//!
//! Run with `cargo test --test deploy_throughput -- --nocapture` to see the figures.

use clb_test_support::emulator;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use emulator::{Class, Emulator, Ingress, IngressPath, Service, TlsSecret, World, plan_json, pods};

/// Requests per second per action that the emulator allows (the real CLB's limit).
const RATE: u64 = 20;
/// Wall time may exceed the forced time by this factor (issue 5, "Done when")...
const SLACK: f64 = 1.2;
/// ...plus this fixed allowance for starting the `apply` process, loading and building 200
/// Ingresses and the first round trip (measured at well under 0.2 s on 2 cores).
const STARTUP_ALLOWANCE: Duration = Duration::from_millis(500);

/// 50 IngressClasses (`sharing: Shared`, so 50 CLBs) x 4 Ingresses x 10 Exact paths over 10
/// Services of 3 pods: 40 CLB rules on the HTTP 80 listener of each CLB (the limit is 50).
fn big_world() -> World {
    let classes = (0..50)
        .map(|c| Class {
            name: format!("shared-{c:02}"),
            sharing: "Shared",
        })
        .collect();
    let services = (0..10u8)
        .map(|s| Service {
            name: format!("svc{s}"),
            pods: pods(s, 0, 3),
        })
        .collect();
    let ingresses = (0..200)
        .map(|i| Ingress {
            name: format!("ing{i:03}"),
            class: format!("shared-{:02}", i % 50),
            host: format!("h{i:03}.example.com"),
            paths: (0..10)
                .map(|j| IngressPath {
                    path: format!("/p{j}"),
                    kind: "Exact",
                    service: format!("svc{}", (i + j) % 10),
                })
                .collect(),
            tls: None,
            exist_lb: None,
        })
        .collect();
    World {
        classes,
        services,
        ingresses,
        secrets: vec![],
    }
}

/// Rules per listener of every stack of a `plan -o json` report.
fn rules_per_listener(plan: &serde_json::Value) -> Vec<usize> {
    let mut out = Vec::new();
    for s in plan["stacks"].as_array().expect("stacks") {
        for l in s["desired"]["listeners"].as_array().expect("listeners") {
            let n = l["domains"]
                .as_array()
                .expect("domains")
                .iter()
                .map(|d| d["rules"].as_array().map_or(0, Vec::len))
                .sum();
            out.push(n);
        }
    }
    out
}

#[test]
fn syncing_200_ingresses_of_10_paths_onto_50_shared_clbs_takes_at_most_1_2x_the_time_the_rate_limit_forces()
 {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("world.yaml");
    big_world().write(&file);

    let plan = plan_json(&[&file]);
    assert_eq!(
        plan["problems"].as_array().map_or(0, Vec::len),
        0,
        "{}",
        plan["problems"]
    );
    assert_eq!(plan["stacks"].as_array().map_or(0, Vec::len), 50);
    let rules = rules_per_listener(&plan);
    assert!(
        rules.iter().all(|&n| (40..=50).contains(&n)),
        "rules per listener: {rules:?}"
    );

    let emu = Emulator::start(&["--rate-limit", "20", "--task-delay-ms", "0"]);
    let run = emu.apply(&[&file], &["--cluster-id", "throughput"]);
    run.expect_ok("apply from scratch");
    let wall = run.elapsed;
    let counters = emu.counters();

    let (forced, busiest, total) = forced_time(&counters);
    let ratio = wall.as_secs_f64() / forced.as_secs_f64();
    let bound = forced.mul_f64(SLACK) + STARTUP_ALLOWANCE;
    eprintln!(
        "total calls {total}, writes {}, reads {}; forced by the rate limit: {:.2} s ({busiest}); \
         wall: {:.2} s; ratio {ratio:.3}; bound {:.2} s (1.2x + {:.1} s)",
        counters.total_writes,
        counters.total_reads,
        forced.as_secs_f64(),
        wall.as_secs_f64(),
        bound.as_secs_f64(),
        STARTUP_ALLOWANCE.as_secs_f64()
    );
    assert!(
        counters.errors.is_empty(),
        "errors during the sync: {:?}",
        counters.action_errors
    );
    // The plan is one CreateLoadBalancer, CreateListener, CreateRule and BatchRegisterTargets
    // per CLB, then the desired-state digest tag (Tag service); anything more is wasted writes.
    for action in [
        "CreateLoadBalancer",
        "CreateListener",
        "CreateRule",
        "BatchRegisterTargets",
        "ModifyResourceTags",
    ] {
        assert_eq!(counters.writes.get(action), Some(&50), "{action}");
    }
    assert_eq!(counters.total_writes, 250, "{:?}", counters.writes);
    assert!(
        wall <= bound,
        "wall {wall:?} > {bound:?} (forced {forced:?} by {busiest})"
    );

    let state = emu.state();
    assert_eq!(state["lbs"].as_array().map_or(0, Vec::len), 50);
}

/// The time the rate limit alone forces for the calls `counters` saw, the busiest action and the
/// total calls: each action gets RATE calls per second, independently, so the calls of the
/// busiest action alone need calls/RATE seconds. Calls the emulator refused as throttled are
/// left out (they are waste, not work the limit forces). Prints the calls per action.
fn forced_time(counters: &emulator::Counters) -> (Duration, String, u64) {
    eprintln!("calls per action (made / refused as throttled):");
    let mut forced = Duration::ZERO;
    let mut busiest = String::new();
    let mut total = 0;
    for (action, calls) in counters.per_action() {
        let throttled = counters.errors_of(&action, "RequestLimitExceeded");
        let useful = calls - throttled;
        total += calls;
        eprintln!("  {action:<24} {calls:>5} / {throttled}");
        let t = Duration::from_secs_f64(useful as f64 / RATE as f64);
        if t > forced {
            forced = t;
            busiest = action;
        }
    }
    (forced, busiest, total)
}

/// 10,000 Ingresses, each its own host with one `Prefix /` path, on 25 Shared classes: each
/// class spreads its 400 hosts over 9 shard CLBs of 49 hosts and the catch-all domain's rule
/// (225 CLBs; the account's CLB quota is raised to 1,000 as it would be for such a cluster).
fn sharded_world(ingresses: usize, classes: usize) -> World {
    World {
        classes: (0..classes)
            .map(|c| Class {
                name: format!("shard-{c:02}"),
                sharing: "Shared",
            })
            .collect(),
        services: (0..10u8)
            .map(|s| Service {
                name: format!("svc{s}"),
                pods: pods(s, 0, 3),
            })
            .collect(),
        ingresses: (0..ingresses)
            .map(|i| Ingress {
                name: format!("ing{i:05}"),
                class: format!("shard-{:02}", i % classes),
                host: format!("h{i:05}.example.com"),
                paths: vec![IngressPath {
                    path: "/".into(),
                    kind: "Prefix",
                    service: format!("svc{}", i % 10),
                }],
                tls: None,
                exist_lb: None,
            })
            .collect(),
        secrets: vec![],
    }
}

/// Issue 14's cold-sync figure: `cargo test --release --test deploy_throughput cold_sync -- \
/// --ignored --nocapture` (`COLD_INGRESSES` overrides the 10,000).
#[test]
#[ignore = "figure (minutes); run with --release --ignored --nocapture"]
fn cold_sync_of_ten_thousand_ingresses_on_sharded_clbs_against_the_rate_limit() {
    let n: usize = std::env::var("COLD_INGRESSES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let classes = n.div_ceil(400);
    let dir = tempfile::tempdir().expect("tempdir");
    // A manifest file holds at most 1,024 documents (the parser's budget): 1,000 per file.
    let docs: Vec<String> = sharded_world(n, classes)
        .render()
        .split("---\n")
        .map(str::to_string)
        .collect();
    let files: Vec<std::path::PathBuf> = docs
        .chunks(1000)
        .enumerate()
        .map(|(i, chunk)| {
            let f = dir.path().join(format!("world-{i:02}.yaml"));
            std::fs::write(&f, chunk.join("---\n")).expect("write manifests");
            f
        })
        .collect();
    let files: Vec<&Path> = files.iter().map(|f| f.as_path()).collect();
    let config = dir.path().join("emulator.yaml");
    std::fs::write(&config, "quotas: {open_clb: 1000}\n").expect("config");
    let emu = Emulator::start(&[
        "--rate-limit",
        "20",
        "--task-delay-ms",
        "0",
        "--config",
        config.to_str().expect("utf-8 path"),
    ]);
    // The client's own pace per action (default 20/s, the server's limit: see
    // `--clb-requests-per-second`); COLD_CLIENT_RATE=19 runs it just under.
    let client_rate: Option<String> = std::env::var("COLD_CLIENT_RATE").ok();
    let mut args = vec!["--cluster-id", "cold"];
    if let Some(r) = &client_rate {
        args.extend(["--clb-requests-per-second", r.as_str()]);
    }
    let pace: f64 = client_rate
        .as_deref()
        .and_then(|r| r.parse().ok())
        .unwrap_or(clb_ingress::clb::ratelimit::DEFAULT_RATE_PER_SECOND);
    let run = emu.apply(&files, &args);
    run.expect_ok("apply from scratch");
    let wall = run.elapsed;
    let counters = emu.counters();
    let (forced, busiest, total) = forced_time(&counters);
    let lbs = emu.state()["lbs"].as_array().map_or(0, Vec::len);
    // The same calls at the client's pace instead of the server's limit.
    let paced = forced.as_secs_f64() * RATE as f64 / pace;
    eprintln!(
        "{n} Ingresses on {classes} Shared classes: {lbs} CLBs; total calls {total}, writes {}, \
         reads {}; forced by the server's rate limit ({RATE}/s): {:.2} s ({busiest}); wall \
         {:.2} s; ratio {:.3} (goal <= 1.05); at the client's pace ({pace}/s) the calls need \
         {paced:.2} s: ratio {:.3}",
        counters.total_writes,
        counters.total_reads,
        forced.as_secs_f64(),
        wall.as_secs_f64(),
        wall.as_secs_f64() / forced.as_secs_f64(),
        wall.as_secs_f64() / paced
    );
    assert!(
        counters.errors.is_empty(),
        "errors during the sync: {:?}",
        counters.action_errors
    );
    // A shard holds 49 hosts of one rule each and its catch-all domain's rule.
    assert_eq!(
        lbs,
        (0..classes)
            .map(|c| (n / classes + usize::from(c < n % classes)).div_ceil(49))
            .sum::<usize>(),
        "one shard CLB per 49 hosts of a class"
    );
    // A second apply finds everything in sync.
    let again = emu.apply(&files, &args);
    again.expect_ok("second apply");
    assert!(again.stdout.contains("in sync"), "{}", again.stdout);
}

/// 2 Shared classes (one with a TLS host from a Secret) and a PerIngress class with 2
/// Ingresses: 4 stacks, one of which needs DescribeCertificates.
fn small_world() -> World {
    let svc = |n: &str, b: u8| Service {
        name: n.into(),
        pods: pods(7, b, 4),
    };
    let ing = |name: &str, class: &str, tls: Option<&str>| Ingress {
        name: name.into(),
        class: class.into(),
        host: format!("{name}.example.com"),
        paths: vec![
            IngressPath {
                path: "/".into(),
                kind: "Prefix",
                service: "web".into(),
            },
            IngressPath {
                path: "/api".into(),
                kind: "Exact",
                service: "api".into(),
            },
        ],
        tls: tls.map(str::to_string),
        exist_lb: None,
    };
    World {
        classes: vec![
            Class {
                name: "alpha".into(),
                sharing: "Shared",
            },
            Class {
                name: "beta".into(),
                sharing: "Shared",
            },
            Class {
                name: "solo".into(),
                sharing: "PerIngress",
            },
        ],
        services: vec![svc("web", 1), svc("api", 2)],
        ingresses: vec![
            ing("a1", "alpha", None),
            ing("a2", "alpha", None),
            ing("b1", "beta", Some("b1-tls")),
            ing("b2", "beta", None),
            ing("s1", "solo", None),
            ing("s2", "solo", None),
        ],
        secrets: vec![TlsSecret::generate("b1-tls", "b1.example.com")],
    }
}

#[test]
fn a_no_change_resync_makes_no_writes_and_at_most_one_read_of_each_kind_per_stack() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("world.yaml");
    small_world().write(&file);
    let files: [&Path; 1] = [&file];
    let stacks = plan_json(&files)["stacks"].as_array().map_or(0, Vec::len) as u64;
    assert_eq!(stacks, 4);
    // Stacks of Shared classes (their `stack` id starts with `class:`): `apply` reads where
    // their hosts live (one CLB listing, one DescribeListeners per shard CLB) before planning.
    let shared = plan_json(&files)["stacks"].as_array().map_or(0, |a| {
        a.iter()
            .filter(|s| {
                s["desired"]["stack"]
                    .as_str()
                    .is_some_and(|id| id.starts_with("class:"))
            })
            .count()
    }) as u64;
    let with_certs = 1;

    let emu = Emulator::start(&["--rate-limit", "0", "--task-delay-ms", "10"]);
    let args = ["--cluster-id", "resync", "--prune"];
    emu.apply(&files, &args).expect_ok("first apply");
    emu.reset_counters();
    let run = emu.apply(&files, &args);
    run.expect_ok("second apply");
    let c = emu.counters();
    eprintln!(
        "resync of {stacks} stacks: reads {:?}, writes {:?}",
        c.reads, c.writes
    );
    assert_eq!(
        c.total_writes, 0,
        "writes on a no-change resync: {:?}",
        c.writes
    );
    assert!(
        run.stdout.lines().filter(|l| l.contains("in sync")).count() == stacks as usize,
        "{}",
        run.stdout
    );
    // The bound: per stack one DescribeLoadBalancers (find), one DescribeListeners, one
    // DescribeTargets (up to 20 listeners per call) and, for stacks with certificates from
    // Secrets, one DescribeCertificates; plus one DescribeLoadBalancers for --prune and one
    // DescribeQuota per run (the account's limits).
    let bound: BTreeMap<&str, u64> = [
        ("DescribeQuota", 1),
        ("DescribeLoadBalancers", stacks + 1 + u64::from(shared > 0)),
        ("DescribeListeners", stacks + shared),
        ("DescribeTargets", stacks),
        ("DescribeCertificates", with_certs),
    ]
    .into();
    for (action, n) in &c.reads {
        let max = bound.get(action.as_str()).copied().unwrap_or(0);
        assert!(
            *n <= max,
            "{action}: {n} reads > bound {max} ({:?})",
            c.reads
        );
    }
    assert!(
        c.total_reads <= bound.values().sum::<u64>(),
        "{:?}",
        c.reads
    );
}
