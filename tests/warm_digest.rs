//! The desired-state digest of warm restart, against the in-memory `FakeClb`: which listed CLB
//! proves its stack unchanged (and is then not read at all), and when the deploy engine tags a
//! CLB with the digest of what it just applied.

use clb_ingress::clb::types::{LoadBalancer, TagInfo};
use clb_ingress::deploy::{Deployer, Listing};
use clb_ingress::model::ids::{TAG_CLUSTER, TAG_CREATED_BY, TAG_DESIRED, TAG_STACK};
use clb_ingress::model::{self, DesiredLb, StackId};
use clb_test_support as support;
use clb_test_support::fake_clb::{FakeClb, Script};

const CLUSTER: &str = "c1";

const WORLD: &str = r#"
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: {name: clb, annotations: {ingressclass.kubernetes.io/is-default-class: "true"}}
spec:
  controller: clb-ingress.io/ingress-controller
  parameters: {apiGroup: clb-ingress.io, kind: ClbClassParameters, name: p}
---
apiVersion: clb-ingress.io/v1alpha1
kind: ClbClassParameters
metadata: {name: p}
spec: {targetMode: Direct}
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
- {addresses: [PODIP]}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: web, namespace: shop}
spec:
  rules:
  - host: a.example.com
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}
"#;

/// The one stack's desired state with the Service's one pod at `pod`.
fn desired(pod: &str) -> DesiredLb {
    let mut snap = support::snapshot(&WORLD.replace("PODIP", pod));
    snap.cluster_id = CLUSTER.into();
    let out = model::build(&snap);
    assert!(out.problems.is_empty(), "{:?}", out.problems);
    out.stacks.into_values().next().expect("one stack")
}

fn stack() -> StackId {
    StackId::ingress("shop", "web")
}

/// A CLB of this cluster for `stack()`, tagged with `digest` if given.
fn ours(id: &str, name: &str, digest: Option<&str>) -> LoadBalancer {
    let tag = |k: &str, v: &str| TagInfo {
        tag_key: k.into(),
        tag_value: v.into(),
    };
    let mut tags = vec![
        tag(TAG_CLUSTER, CLUSTER),
        tag(TAG_STACK, &stack().hash(CLUSTER)),
        tag(TAG_CREATED_BY, "clb-ingress"),
    ];
    tags.extend(digest.map(|d| tag(TAG_DESIRED, d)));
    LoadBalancer {
        load_balancer_id: id.into(),
        load_balancer_name: name.into(),
        load_balancer_vips: vec!["127.0.0.9".into()],
        tags,
        ..Default::default()
    }
}

fn deployer(lbs: Vec<LoadBalancer>) -> Deployer<FakeClb> {
    Deployer::new(
        FakeClb::new(Script {
            lbs,
            ..Default::default()
        }),
        CLUSTER,
    )
}

#[test]
fn the_digest_changes_with_any_target_and_names_the_version() {
    let (a, b) = (desired("10.0.0.1"), desired("10.0.0.2"));
    assert_eq!(a.digest(), desired("10.0.0.1").digest());
    assert_ne!(a.digest(), b.digest());
    assert!(
        a.digest()
            .ends_with(&format!(":{}", env!("CARGO_PKG_VERSION")))
    );
}

#[test]
fn a_listed_clb_tagged_with_the_stacks_digest_proves_it_unchanged() {
    let d = desired("10.0.0.1");
    let dep = deployer(vec![]);
    let listing = Listing::new(vec![ours("lb-1", "web", Some(&d.digest()))]);
    let o = dep
        .warm_outcome(&stack(), Some(&d), &listing)
        .expect("unchanged");
    assert_eq!(o.lb_id.as_deref(), Some("lb-1"));
    assert_eq!(o.vips, ["127.0.0.9"]);
    assert_eq!(o.changes, 0);
}

#[test]
fn a_stale_digest_two_clbs_a_retained_clb_an_adopted_stack_or_no_desired_state_are_read() {
    let d = desired("10.0.0.1");
    let stale = desired("10.0.0.2").digest();
    let digest = d.digest();
    let dep = deployer(vec![]);
    let read = |lbs: Vec<LoadBalancer>, stack: &StackId, desired: Option<&DesiredLb>| {
        dep.warm_outcome(stack, desired, &Listing::new(lbs))
            .is_none()
    };
    assert!(read(
        vec![ours("lb-1", "web", Some(&stale))],
        &stack(),
        Some(&d)
    ));
    assert!(read(vec![ours("lb-1", "web", None)], &stack(), Some(&d)));
    assert!(read(vec![], &stack(), Some(&d)));
    assert!(read(
        vec![
            ours("lb-1", "web", Some(&digest)),
            ours("lb-2", "web", Some(&digest))
        ],
        &stack(),
        Some(&d)
    ));
    assert!(read(
        vec![ours("lb-1", "retained-web", Some(&digest))],
        &stack(),
        Some(&d)
    ));
    assert!(read(
        vec![ours("lb-1", "web", Some(&digest))],
        &StackId::Adopted("lb-1".into()),
        Some(&d)
    ));
    assert!(read(
        vec![ours("lb-1", "web", Some(&digest))],
        &stack(),
        None
    ));
}

#[tokio::test]
async fn a_reconcile_tags_its_own_clb_with_the_new_digest_and_only_when_it_differs() {
    let d = desired("10.0.0.1");
    // Tagged with an older state: the digest is written once, on our CLB.
    let stale = deployer(vec![ours(
        "lb-1",
        "web",
        Some(&desired("10.0.0.2").digest()),
    )]);
    let o = stale.reconcile(&stack(), Some(&d)).await.unwrap();
    assert!(o.digest_recorded);
    let tags: Vec<_> = stale
        .client()
        .writes()
        .into_iter()
        .filter(|w| w.action == "ModifyResourceTags")
        .collect();
    assert_eq!(tags.len(), 1, "{tags:?}");
    assert_eq!(tags[0].lb.as_deref(), Some("lb-1"));
    // Already tagged with this state: no tag write.
    let current = deployer(vec![ours("lb-1", "web", Some(&d.digest()))]);
    let o = current.reconcile(&stack(), Some(&d)).await.unwrap();
    assert!(!o.digest_recorded);
    assert!(
        current
            .client()
            .writes()
            .iter()
            .all(|w| w.action != "ModifyResourceTags")
    );
}
