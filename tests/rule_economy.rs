//! Rule economy (issue #14 item 3): what each Ingress path costs in CLB rules, the issue's
//! workloads before and after the cuts, and a CLB holding the rules of the translation before
//! the cuts converging to the new set through the emulator's data plane with no request
//! answered 404 or by another backend on the way.
//!
//! `cargo test --test rule_economy -- --nocapture` prints the figures.

use clb_ingress::cli::apply::apply_snapshot;
use clb_ingress::deploy::Deployer;
use clb_ingress::matching::ingress::{HostRules, IngressView, PathKind, PathRule};
use clb_ingress::model::translate::{self, Economy};
use clb_ingress::model::{self, DesiredDomain, DesiredLb, DesiredRule, Protocol};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// CLB's default rules per listener.
const RULES_PER_LISTENER: usize = 50;

fn prefix(path: &str, backend: u32) -> PathRule<u32> {
    PathRule {
        path: path.to_string(),
        kind: PathKind::Prefix,
        backend,
    }
}

fn rules_of(view: &IngressView<u32>, economy: Economy) -> usize {
    translate::translate_with(view, economy)
        .iter()
        .map(|d| d.rules.len())
        .sum()
}

/// Rules (before, after) of one listener for `view`, printed with whether they fit.
fn figure(name: &str, view: &IngressView<u32>) -> (usize, usize) {
    let (before, after) = (rules_of(view, Economy::NONE), rules_of(view, Economy::FULL));
    let fits = |n: usize| {
        if n <= RULES_PER_LISTENER {
            "fits"
        } else {
            "does not fit"
        }
    };
    println!(
        "{name}: {before} rules before ({}), {after} after ({}) one listener of {RULES_PER_LISTENER}",
        fits(before),
        fits(after)
    );
    (before, after)
}

/// One host with `/p0`..`/p24`, each its own Service (and, with `root`, `Prefix /` too).
fn one_host_25_prefix_paths(shared_backend: bool) -> IngressView<u32> {
    let mut paths: Vec<PathRule<u32>> = (0..25)
        .map(|i| prefix(&format!("/p{i}"), if shared_backend { 0 } else { i + 1 }))
        .collect();
    if shared_backend {
        paths.push(prefix("/", 0));
    }
    IngressView {
        rules: vec![HostRules {
            host: Some("shop.example.com".into()),
            paths,
        }],
        default_backend: None,
    }
}

/// Ten hosts with `/api` and `/web` and a default backend (`web_is_default`: `/web` goes to
/// the default backend's Service).
fn ten_hosts_api_web_default(web_is_default: bool) -> IngressView<u32> {
    IngressView {
        rules: (0..10)
            .map(|i| HostRules {
                host: Some(format!("h{i}.example.com")),
                paths: vec![
                    prefix("/api", 10 + i),
                    prefix("/web", if web_is_default { 0 } else { 30 + i }),
                ],
            })
            .collect(),
        default_backend: Some(0),
    }
}

#[test]
fn the_issue_workloads_cost_two_rules_per_prefix_path_when_every_path_has_its_own_service() {
    // Nothing is redundant here: every `=/p` keeps /p from CLB's 301 to /p/, every `/p/`
    // serves what is under /p, and every host's `/` carries the default backend (CLB never
    // falls back from a host's domain to the default domain).
    assert_eq!(
        figure(
            "one host, 25 Prefix paths, 25 Services",
            &one_host_25_prefix_paths(false)
        ),
        (51, 51)
    );
    assert_eq!(
        figure(
            "10 hosts with /api, /web (own Services) and a defaultBackend",
            &ten_hosts_api_web_default(false)
        ),
        (51, 51)
    );
    // 60 Ingresses x 3 Prefix paths, each its own host: 6 rules a host, one catch-all
    // placeholder per CLB, so 8 hosts a shard.
    let view = IngressView {
        rules: (0..60)
            .map(|i| HostRules {
                host: Some(format!("i{i}.example.com")),
                paths: (0..3)
                    .map(|j| prefix(&format!("/p{j}"), i * 3 + j))
                    .collect(),
            })
            .collect(),
        default_backend: None,
    };
    let (before, after) = figure("60 Ingresses x 3 Prefix paths (one listener)", &view);
    assert_eq!((before, after), (361, 361));
    let per_shard = (RULES_PER_LISTENER - 1) / 6;
    println!(
        "60 Ingresses x 3 Prefix paths on a Shared class: {} CLBs of {per_shard} hosts, before and after",
        60usize.div_ceil(per_shard)
    );
}

/// 60 Ingresses x 3 Prefix paths (each its own host) on a Shared class, through the model:
/// (CLBs, most rules on one listener); with `root`, each host also has `Prefix /` on the
/// Service of its three paths.
fn shared_class_60_by_3(root: bool) -> (usize, usize) {
    use clb_test_support::worlds::service;
    let mut yaml = clb_test_support::worlds::CLASS.replace(
        "spec: {targetMode: Direct}",
        "spec: {targetMode: Direct, sharing: Shared}",
    );
    yaml.push_str(&service("svc", &["10.0.0.1"]));
    for j in 0..3 {
        yaml.push_str(&service(&format!("p{j}"), &[&format!("10.0.1.{}", j + 1)]));
    }
    for i in 0..60 {
        let mut paths: Vec<String> = (0..3)
            .map(|j| {
                let svc = if root { "svc".to_string() } else { format!("p{j}") };
                format!("      - {{path: /p{j}, pathType: Prefix, backend: {{service: {{name: {svc}, port: {{number: 80}}}}}}}}\n")
            })
            .collect();
        if root {
            paths.push("      - {path: /, pathType: Prefix, backend: {service: {name: svc, port: {number: 80}}}}\n".into());
        }
        yaml.push_str(&format!(
            "---\napiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {{name: i{i}, namespace: default}}\nspec:\n  rules:\n  - host: i{i}.example.com\n    http:\n      paths:\n{}",
            paths.concat()
        ));
    }
    let out = model::build(&clb_test_support::snapshot(&yaml));
    assert!(out.problems.is_empty(), "{:?}", out.problems);
    let most = out
        .stacks
        .values()
        .flat_map(|lb| lb.rule_counts())
        .map(|l| l.rules)
        .max()
        .unwrap_or(0);
    (out.stacks.len(), most)
}

#[test]
fn sixty_ingresses_of_three_prefix_paths_on_a_shared_class_need_eight_clbs_unless_paths_share_a_service()
 {
    let (clbs, most) = shared_class_60_by_3(false);
    println!(
        "Shared class, 60 Ingresses x 3 Prefix paths, 3 Services: {clbs} CLBs, at most {most} rules on a listener"
    );
    assert_eq!((clbs, most), (8, 49));
    // With `Prefix /` on the same Service, the three paths make no rules: 1 rule a host, but
    // shard placement counts hosts without the economy (7 rules), so placement is unchanged.
    let (clbs, most) = shared_class_60_by_3(true);
    println!(
        "Shared class, 60 Ingresses x (/ and 3 Prefix paths) on one Service: {clbs} CLBs, at most {most} rules on a listener"
    );
    assert_eq!(clbs, 9);
    assert!(most <= 8, "{most}");
}

#[test]
fn paths_that_share_their_parents_service_make_no_rules_so_the_issue_workloads_then_fit() {
    assert_eq!(
        figure(
            "one host, Prefix / and 25 Prefix paths of its Service",
            &one_host_25_prefix_paths(true)
        ),
        (52, 2)
    );
    assert_eq!(
        figure(
            "10 hosts with /api and /web on the defaultBackend's Service",
            &ten_hosts_api_web_default(true)
        ),
        (51, 31)
    );
}

#[test]
fn the_cost_report_says_what_each_path_costs_and_its_rules_add_up() {
    let mut view = ten_hosts_api_web_default(true);
    view.rules.truncate(1);
    view.rules.push(HostRules {
        host: Some("empty.example.com".into()),
        paths: Vec::new(),
    });
    let report = translate::cost_report(&view, Economy::FULL);
    for p in &report.paths {
        println!("{} {} {}: {:?} ({})", p.host, p.kind, p.path, p.urls, p.why);
    }
    assert_eq!(report.rules, 4, "{report:#?}");
    assert_eq!(report.rules_without_economy, 7, "{report:#?}");
    let counted: usize = report.paths.iter().map(|p| p.urls.len()).sum();
    assert_eq!(counted, report.rules);
    let find = |host: &str, path: &str| {
        report
            .paths
            .iter()
            .find(|p| p.host == host && p.path == path)
            .unwrap_or_else(|| panic!("{host} {path} in {report:#?}"))
    };
    let api = find("h0.example.com", "/api");
    assert_eq!(api.urls, ["=/api", "/api/"]);
    assert!(api.why.contains("301"), "{}", api.why);
    let web = find("h0.example.com", "/web");
    assert!(
        web.urls.is_empty() && web.why.contains("same backend"),
        "{web:?}"
    );
    assert_eq!(find("h0.example.com", "defaultBackend").urls, ["/"]);
    assert_eq!(find("*", "defaultBackend").urls, ["/"]);
    let empty = find("empty.example.com", "(no path)");
    assert!(
        empty.urls.is_empty() && empty.why.contains("no domain"),
        "the path-less host's domain is left to the catch-all: {empty:?}"
    );
}

/// A per-Ingress CLB: a.example.com with `/` and `/static` on Service root, `/foo` and an
/// Exact /foo/health on Service foo; b.example.com without paths; root as defaultBackend.
const MIGRATION: &str = include_str!(
    "golden/model/rule-economy-leaves-out-paths-and-domains-that-answer-alike/input.yaml"
);

const ROOT: &str = "10.0.2.1:8080";
const FOO: &str = "10.0.1.1:8080";

/// The same stack as the translation before rule economy makes it: `=/static` and
/// `/static/` copying `/`, `=/foo/health` copying `/foo/`, and b.example.com copying the
/// catch-all's `/`.
fn before_economy(new: &DesiredLb) -> DesiredLb {
    let mut old = new.clone();
    let listener = old
        .listeners
        .iter_mut()
        .find(|l| l.protocol == Protocol::Http)
        .expect("HTTP listener");
    let copy = |rules: &[DesiredRule], from: &str, url: &str| DesiredRule {
        url: url.to_string(),
        ..rules
            .iter()
            .find(|r| r.url == from)
            .unwrap_or_else(|| panic!("rule {from}"))
            .clone()
    };
    let a = listener
        .domains
        .iter_mut()
        .find(|d| d.domain == "a.example.com")
        .expect("a.example.com");
    let extra = [
        copy(&a.rules, "/", "=/static"),
        copy(&a.rules, "/", "/static/"),
        copy(&a.rules, "/foo/", "=/foo/health"),
    ];
    a.rules.extend(extra);
    a.rules.sort_by(|x, y| x.url.cmp(&y.url));
    let catch_all = listener
        .domains
        .iter()
        .find(|d| d.default_server)
        .expect("catch-all");
    let b = DesiredDomain {
        domain: "b.example.com".into(),
        host: "b.example.com".into(),
        default_server: false,
        certificate: None,
        rules: vec![copy(&catch_all.rules, "/", "/")],
        http2: None,
        quic: None,
    };
    listener.domains.push(b);
    old
}

/// (host, path, the target that must answer) while the CLB converges.
const PROBES: &[(&str, &str, &str)] = &[
    ("a.example.com", "/static", ROOT),
    ("a.example.com", "/static/app.js", ROOT),
    ("a.example.com", "/foo/health", FOO),
    ("a.example.com", "/foo", FOO),
    ("a.example.com", "/foo/x", FOO),
    ("a.example.com", "/", ROOT),
    ("b.example.com", "/", ROOT),
    ("b.example.com", "/any/where", ROOT),
    ("unknown.example.com", "/x", ROOT),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clb_holding_the_rules_before_economy_converges_with_one_write_and_no_wrong_answer() {
    let e = clb_test_support::cluster::env().await;
    let offset = e.offset();
    let deployer = Deployer::new(e.clb().clone(), "test");
    let new = model::build(&clb_test_support::snapshot(MIGRATION));
    assert!(new.problems.is_empty(), "{:?}", new.problems);
    let mut old = new.clone();
    for lb in old.stacks.values_mut() {
        *lb = before_economy(lb);
    }
    for r in apply_snapshot(&deployer, &old, true, 1, None).await {
        assert!(r.error.is_none(), "{}: {:?}", r.stack, r.error);
    }

    let vip = e
        .clb()
        .describe_load_balancers(&Default::default())
        .await
        .unwrap()
        .iter()
        .flat_map(|lb| lb.load_balancer_vips.clone())
        .next()
        .expect("the CLB's address");
    // Redirects are answers of their own here: a 301 where a rule used to answer is wrong.
    let http = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let ask = {
        let http = http.clone();
        move |host: &'static str, path: &'static str| {
            let http = http.clone();
            let url = format!("http://{vip}:{}{path}", 80 + offset);
            async move {
                let resp = http
                    .get(url)
                    .header("Host", host)
                    .send()
                    .await
                    .map_err(|e| e.to_string())?;
                let target = resp
                    .headers()
                    .get("x-clb-target")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("-")
                    .to_string();
                let url = resp
                    .headers()
                    .get("x-clb-url")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("-")
                    .to_string();
                Ok::<_, String>((resp.status().as_u16(), target, url))
            }
        }
    };
    // The old rules serve (the data plane learns the configuration shortly after a write).
    let started = Instant::now();
    loop {
        match ask("a.example.com", "/static/app.js").await {
            Ok((200, t, url)) if t == ROOT && url == "/static/" => break,
            other => assert!(
                started.elapsed() < Duration::from_secs(10),
                "the old rules never served: {other:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let stop = Arc::new(AtomicBool::new(false));
    let prober = {
        let stop = stop.clone();
        let ask = ask.clone();
        tokio::spawn(async move {
            let (mut sent, mut wrong) = (0u64, Vec::new());
            while !stop.load(Ordering::Relaxed) {
                for &(host, path, want) in PROBES {
                    sent += 1;
                    match ask(host, path).await {
                        Ok((200, t, _)) if t == want => {}
                        other => wrong.push(format!("{host}{path}: {other:?}")),
                    }
                }
            }
            (sent, wrong)
        })
    };
    let writes_before = e.counters().await["writes"].clone();
    for r in apply_snapshot(&deployer, &new, true, 1, None).await {
        assert!(r.error.is_none(), "{}: {:?}", r.stack, r.error);
    }
    let writes_after = e.counters().await["writes"].clone();
    // Let the data plane catch up with the last write while still probing.
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let (sent, wrong) = prober.await.unwrap();
    println!(
        "migration: {sent} requests while converging, {} wrong",
        wrong.len()
    );
    assert!(sent > PROBES.len() as u64, "the prober sent {sent}");
    assert!(
        wrong.is_empty(),
        "{} wrong answers: {:?}",
        wrong.len(),
        &wrong[..wrong.len().min(10)]
    );

    let delta = |action: &str| {
        writes_after[action].as_u64().unwrap_or(0) - writes_before[action].as_u64().unwrap_or(0)
    };
    let actions: Vec<String> = writes_after
        .as_object()
        .unwrap()
        .keys()
        .filter(|a| delta(a) > 0)
        .cloned()
        .collect();
    // One DeleteRules call for the four stale rules; the desired-state digest tag changes.
    assert_eq!(delta("DeleteRule"), 1, "writes: {actions:?}");
    for a in &actions {
        assert!(
            a == "DeleteRule" || a == "ModifyResourceTags",
            "unexpected write {a}: {actions:?}"
        );
    }
    // The stale rules are gone, and their requests are answered by the remaining ones.
    assert_eq!(
        ask("a.example.com", "/static/app.js").await.unwrap(),
        (200, ROOT.to_string(), "/".to_string())
    );
    assert_eq!(
        ask("b.example.com", "/x").await.unwrap(),
        (200, ROOT.to_string(), "/".to_string())
    );
    // Converged: applying again writes nothing.
    let before = e.counters().await["total_writes"].as_u64().unwrap();
    apply_snapshot(&deployer, &new, true, 1, None).await;
    assert_eq!(e.counters().await["total_writes"].as_u64().unwrap(), before);
}
