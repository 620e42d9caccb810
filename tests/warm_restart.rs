//! Warm restart, end to end (the real `clb-ingress run`, the test API server, the emulator's
//! data plane): every CLB carries the digest of the desired state last applied to it (tag
//! `clb-ingress.io/desired`); a restarted controller lists its CLBs once and reads nothing
//! else of the unchanged ones, applies what changed while it was down, and the slow full
//! sweep still finds changes made to a CLB by hand.

use clb_ingress::clb::types::{
    DeleteRuleRequest, DescribeListenersRequest, DescribeLoadBalancersRequest, LoadBalancer,
};
use clb_test_support::cluster::{Env, SLOW, env};
use serde_json::Value;
use std::time::{Duration, Instant};

const TAG_DESIRED: &str = "clb-ingress.io/desired";

fn reads(c: &Value, action: &str) -> u64 {
    c["reads"][action].as_u64().unwrap_or(0)
}

async fn lbs(e: &Env) -> Vec<LoadBalancer> {
    e.clb()
        .describe_load_balancers(&DescribeLoadBalancersRequest::default())
        .await
        .unwrap()
}

fn digest_of(lb: &LoadBalancer) -> Option<&str> {
    lb.tags
        .iter()
        .find(|t| t.tag_key == TAG_DESIRED)
        .map(|t| t.tag_value.as_str())
}

/// Wait until `n` CLBs exist and every one carries a desired-state digest.
async fn until_all_tagged(e: &Env, n: usize, log: impl Fn() -> String) -> Vec<LoadBalancer> {
    let start = Instant::now();
    loop {
        let all = lbs(e).await;
        if all.len() == n && all.iter().all(|lb| digest_of(lb).is_some()) {
            return all;
        }
        assert!(
            start.elapsed() < SLOW,
            "CLBs not all tagged with their digest: {:?}\n{}",
            all.iter()
                .map(|l| (&l.load_balancer_id, digest_of(l)))
                .collect::<Vec<_>>(),
            log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Wait until the new controller's first (warm) sweep is over: the listing was made and no
/// call happened for a while.
async fn until_quiet(e: &Env) -> Value {
    let start = Instant::now();
    let mut last = Value::Null;
    let mut since = Instant::now();
    loop {
        let c = e.counters().await;
        let listed = reads(&c, "DescribeLoadBalancers") > 0;
        if c != last {
            last = c;
            since = Instant::now();
        } else if listed && since.elapsed() > Duration::from_millis(1500) {
            return last;
        }
        assert!(start.elapsed() < SLOW, "the controller never went quiet");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn three_routed_ingresses(e: &Env) {
    e.class("PerIngress").await;
    e.service("web", &["10.1.0.1"]).await;
    e.service("api", &["10.2.0.1"]).await;
    for name in ["a", "b", "c"] {
        e.ingress(
            name,
            &format!("{name}.example.com"),
            &[("/", "Prefix", "web")],
        )
        .await;
    }
    for name in ["a", "b", "c"] {
        e.until_routed(
            name,
            &format!("{name}.example.com"),
            "/",
            "10.1.0.1:8080",
            SLOW,
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_makes_no_write_and_reads_no_listener_of_an_unchanged_clb() {
    let e = env().await;
    let mut first = e.controller("c1", &[]);
    three_routed_ingresses(&e).await;
    let before = until_all_tagged(&e, 3, || first.log()).await;
    first.kill();
    e.reset_counters().await;
    let second = e.controller("c2", &[]);
    let c = until_quiet(&e).await;
    assert_eq!(
        c["total_writes"],
        0,
        "writes after a restart: {c}\n{}",
        second.log()
    );
    for action in ["DescribeListeners", "DescribeTargets"] {
        assert_eq!(
            reads(&c, action),
            0,
            "{action} after a restart: {c}\n{}",
            second.log()
        );
    }
    // One page of CLBs (3 < 100); besides, only the quotas (the certificate GC waits for the
    // first resync).
    assert_eq!(reads(&c, "DescribeLoadBalancers"), 1, "{c}");
    assert_eq!(reads(&c, "DescribeQuota"), 1, "{c}");
    assert_eq!(c["total_reads"], 2, "{c}");
    // Everything still served, the digests unchanged.
    for name in ["a", "b", "c"] {
        let vip = e.vip(name).await.unwrap();
        assert_eq!(
            e.request(&vip, &format!("{name}.example.com"), "/").await,
            (200, "10.1.0.1:8080".to_string())
        );
    }
    let after = lbs(&e).await;
    let digests = |l: &[LoadBalancer]| {
        l.iter()
            .map(|x| digest_of(x).map(str::to_string))
            .collect::<Vec<_>>()
    };
    assert_eq!(digests(&before), digests(&after));
}

/// The restarted controller's report rewrites an Ingress's status (here: a status emptied while
/// it was down, as a crash between the CLB write and the status write leaves it). That write's
/// own watch event is not a change: the stack is not reconciled again, so its CLB is still not
/// read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_own_status_write_after_a_restart_does_not_make_the_clb_be_read() {
    use k8s_openapi::api::networking::v1::Ingress;
    use kube::api::{Api, Patch, PatchParams};
    let e = env().await;
    let mut first = e.controller("c1", &[]);
    three_routed_ingresses(&e).await;
    until_all_tagged(&e, 3, || first.log()).await;
    let vip = e.vip("a").await.unwrap();
    first.kill();
    Api::<Ingress>::namespaced(e.kube.clone(), "default")
        .patch_status(
            "a",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"status": {"loadBalancer": {"ingress": null}}})),
        )
        .await
        .unwrap();
    assert_eq!(e.vip("a").await, None);
    e.reset_counters().await;
    let second = e.controller("c2", &[]);
    let start = Instant::now();
    while e.vip("a").await.as_deref() != Some(vip.as_str()) {
        assert!(
            start.elapsed() < SLOW,
            "status not written again\n{}",
            second.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let c = until_quiet(&e).await;
    assert_eq!(c["total_writes"], 0, "{c}\n{}", second.log());
    for action in ["DescribeListeners", "DescribeTargets"] {
        assert_eq!(reads(&c, action), 0, "{action}: {c}\n{}", second.log());
    }
    assert_eq!(
        reads(&c, "DescribeLoadBalancers"),
        1,
        "{c}\n{}",
        second.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_made_while_the_controller_was_down_is_applied_first_and_alone() {
    let e = env().await;
    let mut first = e.controller("c1", &[]);
    three_routed_ingresses(&e).await;
    until_all_tagged(&e, 3, || first.log()).await;
    first.kill();
    // While no controller runs, b moves to another Service.
    e.ingress("b", "b.example.com", &[("/", "Prefix", "api")])
        .await;
    e.reset_counters().await;
    let second = e.controller("c2", &[]);
    e.until_routed("b", "b.example.com", "/", "10.2.0.1:8080", SLOW)
        .await;
    let c = until_quiet(&e).await;
    // Only b's CLB was read: a and c are unchanged (b may be read twice: the status write
    // that follows its change comes back as an event), and b got its new digest.
    assert!(reads(&c, "DescribeListeners") <= 2, "{c}\n{}", second.log());
    assert_eq!(c["writes"]["ModifyResourceTags"], 1, "{c}");
    let vip_a = e.vip("a").await.unwrap();
    assert_eq!(
        e.request(&vip_a, "a.example.com", "/").await,
        (200, "10.1.0.1:8080".to_string())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_on_an_unchanged_clb_is_found_and_repaired_by_the_full_sweep() {
    let e = env().await;
    let ctl = e.controller(
        "c1",
        &[
            "--full-resync-seconds",
            "2",
            "--full-resync-stacks-per-second",
            "20",
        ],
    );
    e.class("PerIngress").await;
    e.service("web", &["10.1.0.1"]).await;
    e.ingress("a", "a.example.com", &[("/", "Prefix", "web")])
        .await;
    e.until_routed("a", "a.example.com", "/", "10.1.0.1:8080", SLOW)
        .await;
    let lb = until_all_tagged(&e, 1, || ctl.log()).await.remove(0);
    // Someone deletes the CLB's rules by hand: the digest tag still says all is well.
    let listeners = e
        .clb()
        .describe_listeners(&DescribeListenersRequest {
            load_balancer_id: lb.load_balancer_id.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    for l in listeners.iter().filter(|l| !l.rules.is_empty()) {
        let reply = e
            .clb()
            .delete_rule(&DeleteRuleRequest {
                load_balancer_id: lb.load_balancer_id.clone(),
                listener_id: l.listener_id.clone(),
                location_ids: l.rules.iter().map(|r| r.location_id.clone()).collect(),
                ..Default::default()
            })
            .await
            .unwrap();
        e.clb().wait_task(&reply.request_id).await.unwrap();
    }
    let vip = e.vip("a").await.unwrap();
    assert_ne!(e.request(&vip, "a.example.com", "/").await.0, 200);
    // The full sweep reads the CLB and puts the rules back.
    e.until_routed("a", "a.example.com", "/", "10.1.0.1:8080", SLOW)
        .await;
}
