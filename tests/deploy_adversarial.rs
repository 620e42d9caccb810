//! Property: whatever the CLB API answers (a CLB listed twice, another cluster's CLB under our
//! stack tag, a CLB of another stack, foreign listeners on the ports we want, near-miss listener
//! names, filters ignored, an adopted CLB that clb-ingress created elsewhere or that lacks the
//! required tags), one reconcile pass of the deploy engine writes only to what clb-ingress can
//! prove it owns. The CLB API is the in-memory `FakeClb` (no HTTP); the oracle below decides
//! ownership from the scripted CLBs alone, independently of `model::ids::ownership`.

use clb_ingress::clb::types::{Listener, LoadBalancer, RuleOutput, TagInfo};
use clb_ingress::deploy::Deployer;
use clb_ingress::model::ids::{TAG_CLUSTER, TAG_CREATED_BY, TAG_STACK};
use clb_ingress::model::{self, DesiredLb, StackId};
use clb_test_support as support;
use clb_test_support::fake_clb::{FakeClb, Script, Write};
use proptest::prelude::*;
use std::collections::BTreeSet;

const CLUSTER: &str = "c1";
const ADOPTED: &str = "lb-adopt001";

const BACKEND: &str = r#"
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec: {ports: [{name: http, port: 80}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-1, namespace: shop, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
ports: [{name: http, port: 8080}]
endpoints:
- {addresses: [10.0.0.1]}
---
apiVersion: v1
kind: Secret
metadata: {name: cert, namespace: shop}
type: Opaque
data: {qcloud_cert_id: Y2VydC1hYWFh}
"#;

fn class(spec: &str) -> String {
    format!(
        r#"
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: {{name: clb, annotations: {{ingressclass.kubernetes.io/is-default-class: "true"}}}}
spec:
  controller: clb-ingress.io/ingress-controller
  parameters: {{apiGroup: clb-ingress.io, kind: ClbClassParameters, name: p}}
---
apiVersion: clb-ingress.io/v1alpha1
kind: ClbClassParameters
metadata: {{name: p}}
spec: {spec}
"#
    )
}

fn ingress(annotations: &str) -> String {
    format!(
        r#"
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {{name: web, namespace: shop, annotations: {{{annotations}}}}}
spec:
  tls: [{{hosts: [a.example.com], secretName: cert}}]
  rules:
  - host: a.example.com
    http:
      paths:
      - {{path: /, pathType: Prefix, backend: {{service: {{name: web, port: {{number: 80}}}}}}}}
"#
    )
}

/// The desired state of the one stack of these manifests, built with the cluster id `c1`. The
/// adopted CLB is allowed by tag selector only (`team: web`), so deploy must check its tags.
fn desired(adopted: bool) -> DesiredLb {
    let yaml = if adopted {
        class("{targetMode: Direct, adoption: {namespaces: [\"*\"], tagSelector: {team: web}}}")
            + BACKEND
            + &ingress(&format!("kubernetes.io/ingress.existLbId: {ADOPTED}"))
    } else {
        class("{targetMode: Direct}") + BACKEND + &ingress("")
    };
    let mut snap = support::snapshot(&yaml);
    snap.cluster_id = CLUSTER.into();
    let out = model::build(&snap);
    assert!(out.problems.is_empty(), "{:?}", out.problems);
    out.stacks.into_values().next().expect("one stack")
}

/// A foreign listener: (port, HTTPS?, name kind: 0 = a person's name, 1 = another stack's
/// clb-ingress name, 2 = a near miss of ours).
type ForeignListener = (u16, bool, u8);

/// The adversarial CLB account around one stack.
#[derive(Debug, Clone)]
struct World {
    adopted: bool,
    /// Created stack: how many CLBs carry our cluster and stack tags (0 = none yet).
    ours: usize,
    /// List our first CLB twice.
    repeat_ours: bool,
    /// A CLB of another cluster under our stack tag.
    other_cluster: bool,
    /// A CLB of this cluster and another stack.
    other_stack: bool,
    /// Tags on the adopted CLB: 0 = the required `team: web`, 1 = none, 2 = another cluster's
    /// clb-ingress tags (and `team: web`).
    adopted_tags: u8,
    /// Foreign listeners on every CLB.
    listeners: Vec<ForeignListener>,
    ignore_filters: bool,
}

fn world() -> impl Strategy<Value = World> {
    (
        any::<bool>(),
        0usize..3,
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        0u8..3,
        prop::collection::vec(
            (
                prop::sample::select(vec![80u16, 443, 8080]),
                any::<bool>(),
                0u8..3,
            ),
            0..4,
        ),
        any::<bool>(),
    )
        .prop_map(
            |(
                adopted,
                ours,
                repeat_ours,
                other_cluster,
                other_stack,
                adopted_tags,
                listeners,
                ignore_filters,
            )| World {
                adopted,
                ours,
                repeat_ours,
                other_cluster,
                other_stack,
                adopted_tags,
                listeners,
                ignore_filters,
            },
        )
}

fn tag(k: &str, v: &str) -> TagInfo {
    TagInfo {
        tag_key: k.into(),
        tag_value: v.into(),
    }
}

fn lb(id: &str, tags: Vec<TagInfo>) -> LoadBalancer {
    LoadBalancer {
        load_balancer_id: id.into(),
        load_balancer_name: format!("name-of-{id}"),
        load_balancer_vips: vec!["127.9.9.9".into()],
        create_time: Some(format!("2026-01-01 00:00:0{}", id.len() % 10)),
        tags,
        ..Default::default()
    }
}

/// The scripted account, and the oracle: (CLBs clb-ingress owns whole, the CLB whose
/// `clb-ingress-<hash>` listeners it owns, if any).
fn script(w: &World, stack: &StackId) -> (Script, BTreeSet<String>, Option<String>) {
    let hash = stack.hash(CLUSTER);
    let ours = |i: usize| {
        lb(
            &format!("lb-ours000{i}"),
            vec![
                tag(TAG_CLUSTER, CLUSTER),
                tag(TAG_STACK, &hash),
                tag(TAG_CREATED_BY, "clb-ingress"),
            ],
        )
    };
    let mut lbs = Vec::new();
    let mut owned = BTreeSet::new();
    let mut listener_owner = None;
    if w.adopted {
        let tags = match w.adopted_tags {
            0 => vec![tag("team", "web")],
            1 => vec![],
            _ => vec![
                tag("team", "web"),
                tag(TAG_CLUSTER, "c2"),
                tag(TAG_STACK, &hash),
                tag(TAG_CREATED_BY, "clb-ingress"),
            ],
        };
        if w.adopted_tags == 0 {
            listener_owner = Some(ADOPTED.to_string());
        }
        lbs.push(lb(ADOPTED, tags));
    } else {
        for i in 0..w.ours {
            lbs.push(ours(i));
            owned.insert(format!("lb-ours000{i}"));
        }
        if w.repeat_ours && w.ours > 0 {
            lbs.push(ours(0));
        }
    }
    if w.other_cluster {
        lbs.push(lb(
            "lb-othercl1",
            vec![
                tag(TAG_CLUSTER, "c2"),
                tag(TAG_STACK, &hash),
                tag(TAG_CREATED_BY, "clb-ingress"),
            ],
        ));
    }
    if w.other_stack {
        lbs.push(lb(
            "lb-otherst1",
            vec![
                tag(TAG_CLUSTER, CLUSTER),
                tag(TAG_STACK, "0123456789ab"),
                tag(TAG_CREATED_BY, "clb-ingress"),
            ],
        ));
    }
    let our_name = stack.listener_name(CLUSTER);
    let mut listeners = Vec::new();
    let mut seen = BTreeSet::new();
    for l in &lbs {
        if !seen.insert(l.load_balancer_id.clone()) {
            continue;
        }
        let mut ls = Vec::new();
        let mut ports = BTreeSet::new();
        for (i, &(port, https, name)) in w.listeners.iter().enumerate() {
            if !ports.insert(port) {
                continue;
            }
            let id = format!("lbl-{}-{i}", l.load_balancer_id);
            let name = match name {
                0 => "ops-team".to_string(),
                1 => "clb-ingress-0123456789ab".to_string(),
                _ => format!("{our_name}x"),
            };
            ls.push(Listener {
                listener_id: id.clone(),
                listener_name: name,
                protocol: if https { "HTTPS" } else { "HTTP" }.into(),
                port: i64::from(port),
                rules: vec![RuleOutput {
                    location_id: format!("loc-{id}"),
                    domain: "x.example.com".into(),
                    url: "/".into(),
                    ..Default::default()
                }],
                ..Default::default()
            });
        }
        listeners.push((l.load_balancer_id.clone(), ls));
    }
    (
        Script {
            lbs,
            listeners,
            certificates: Vec::new(),
            ignore_filters: w.ignore_filters,
        },
        owned,
        listener_owner,
    )
}

/// Every write names only owned CLBs, listeners and rules, or ones this pass created.
fn check(writes: &[Write], script: &Script, owned: &BTreeSet<String>, adopted: Option<&str>) {
    let new = |id: &str| id.contains("-new");
    let lb_ok = |id: &str| new(id) || owned.contains(id) || Some(id) == adopted;
    // Listeners and rules we may touch: all of an owned CLB's; none of an adopted CLB's (the
    // scripted ones all carry foreign names).
    let ours_lbl = |id: &str| {
        new(id)
            || script
                .listeners
                .iter()
                .any(|(lb, ls)| owned.contains(lb) && ls.iter().any(|l| l.listener_id == id))
    };
    let ours_loc = |id: &str| {
        new(id)
            || script.listeners.iter().any(|(lb, ls)| {
                owned.contains(lb)
                    && ls
                        .iter()
                        .any(|l| l.rules.iter().any(|r| r.location_id == id))
            })
    };
    for w in writes {
        if let Some(lb) = &w.lb {
            assert!(lb_ok(lb), "{w:?} writes to a CLB it does not own");
            if w.action == "DeleteLoadBalancer" {
                assert!(owned.contains(lb), "{w:?} deletes a CLB it does not own");
            }
        }
        for l in &w.listeners {
            assert!(ours_lbl(l), "{w:?} touches a listener it does not own");
        }
        for r in &w.rules {
            assert!(ours_loc(r), "{w:?} touches a rule it does not own");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn one_pass_writes_only_what_clb_ingress_owns_whatever_the_cloud_answers(w in world()) {
        let desired = desired(w.adopted);
        let (script, owned, listener_owner) = script(&w, &desired.stack);
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        for gone in [false, true] {
            let fake = FakeClb::new(script.clone());
            let deployer = Deployer::new(fake, CLUSTER);
            let _ = rt.block_on(deployer.reconcile(&desired.stack, (!gone).then_some(&desired)));
            let writes = deployer.client().writes();
            check(&writes, &script, &owned, listener_owner.as_deref());
            if w.adopted && w.adopted_tags != 0 {
                prop_assert!(writes.is_empty(), "an unadoptable CLB was written: {writes:?}");
            }
        }
    }
}

#[test]
fn a_clb_listed_twice_is_kept_and_never_deleted_as_its_own_duplicate() {
    let desired = desired(false);
    let w = World {
        adopted: false,
        ours: 1,
        repeat_ours: true,
        other_cluster: false,
        other_stack: false,
        adopted_tags: 0,
        listeners: vec![],
        ignore_filters: false,
    };
    let (script, _, _) = script(&w, &desired.stack);
    assert_eq!(script.lbs.len(), 2, "the listing repeats the CLB");
    let deployer = Deployer::new(FakeClb::new(script), CLUSTER);
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(deployer.reconcile(&desired.stack, Some(&desired)))
        .expect("reconcile");
    let writes = deployer.client().writes();
    assert!(
        !writes.iter().any(|w| w.action == "DeleteLoadBalancer"),
        "{writes:?}"
    );
    assert!(
        writes.iter().any(|w| w.action == "CreateListener"),
        "the kept CLB is synced: {writes:?}"
    );
}

#[test]
fn an_adopted_clb_that_clb_ingress_created_elsewhere_is_refused_without_a_write() {
    let desired = desired(true);
    let w = World {
        adopted: true,
        ours: 0,
        repeat_ours: false,
        other_cluster: false,
        other_stack: false,
        adopted_tags: 2,
        listeners: vec![(8080, false, 0)],
        ignore_filters: false,
    };
    let (script, _, _) = script(&w, &desired.stack);
    let deployer = Deployer::new(FakeClb::new(script), CLUSTER);
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let err = rt
        .block_on(deployer.reconcile(&desired.stack, Some(&desired)))
        .expect_err("refused");
    assert_eq!(err.category(), "AdoptionRefused", "{err}");
    assert!(!err.to_string().contains("127.9.9.9"), "{err}");
    assert!(deployer.client().writes().is_empty());
}
