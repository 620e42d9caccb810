//! Build + plan of 10,000 Ingresses x 10 paths (one CLB each), and a one-Ingress change.
//! Run: `cargo bench --bench build_plan`. Figures are reported in the issue notes.

use clb_ingress::model::{self, Snapshot};
use clb_ingress::plan;
use criterion::{Criterion, criterion_group, criterion_main};
use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressBackend, IngressClass, IngressClassSpec,
    IngressRule, IngressServiceBackend, IngressSpec, ServiceBackendPort,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use std::collections::BTreeMap;
use std::hint::black_box;

/// The same allocator as the `clb-ingress` binary.
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const INGRESSES: usize = 10_000;
const PATHS: usize = 10;
const PODS: usize = 3;

fn meta(ns: &str, name: &str) -> ObjectMeta {
    ObjectMeta {
        namespace: Some(ns.into()),
        name: Some(name.into()),
        ..Default::default()
    }
}

fn ingress(i: usize, variant: usize) -> Ingress {
    let paths = (0..PATHS)
        .map(|p| HTTPIngressPath {
            path: Some(format!("/svc{p}/v{variant}")),
            path_type: if p % 2 == 0 { "Prefix" } else { "Exact" }.into(),
            backend: IngressBackend {
                service: Some(IngressServiceBackend {
                    name: format!("s{i}-{p}"),
                    port: Some(ServiceBackendPort {
                        number: Some(80),
                        name: None,
                    }),
                }),
                resource: None,
            },
        })
        .collect();
    let mut m = meta("bench", &format!("ing{i}"));
    m.creation_timestamp = Some(Time(
        jiff::Timestamp::UNIX_EPOCH + jiff::SignedDuration::from_secs(i as i64),
    ));
    Ingress {
        metadata: m,
        spec: Some(IngressSpec {
            ingress_class_name: Some("clb".into()),
            rules: Some(vec![IngressRule {
                host: Some(format!("h{i}.example.com")),
                http: Some(HTTPIngressRuleValue { paths }),
            }]),
            ..Default::default()
        }),
        status: None,
    }
}

fn snapshot() -> Snapshot {
    let mut snap = Snapshot::new("bench");
    snap.ingress_classes.push(IngressClass {
        metadata: ObjectMeta {
            name: Some("clb".into()),
            ..Default::default()
        },
        spec: Some(IngressClassSpec {
            controller: Some(model::build::DEFAULT_CONTROLLER_NAME.into()),
            parameters: None,
        }),
    });
    for i in 0..INGRESSES {
        snap.ingresses.push(std::sync::Arc::new(ingress(i, 0)));
        for p in 0..PATHS {
            let name = format!("s{i}-{p}");
            snap.services.push(std::sync::Arc::new(Service {
                metadata: meta("bench", &name),
                spec: Some(ServiceSpec {
                    ports: Some(vec![ServicePort {
                        name: Some("http".into()),
                        port: 80,
                        node_port: Some(30000 + p as i32),
                        ..Default::default()
                    }]),
                    ..Default::default()
                }),
                status: None,
            }));
            let mut m = meta("bench", &format!("{name}-x"));
            m.labels = Some(BTreeMap::from([(
                "kubernetes.io/service-name".to_string(),
                name.clone(),
            )]));
            snap.endpoint_slices
                .push(std::sync::Arc::new(EndpointSlice {
                    metadata: m,
                    address_type: "IPv4".into(),
                    ports: Some(vec![EndpointPort {
                        name: Some("http".into()),
                        port: Some(8080),
                        protocol: Some("TCP".into()),
                        app_protocol: None,
                    }]),
                    endpoints: (0..PODS)
                        .map(|k| Endpoint {
                            addresses: vec![format!("10.{}.{}.{}", i / 250, i % 250, p * PODS + k)],
                            conditions: Some(EndpointConditions {
                                ready: Some(true),
                                serving: Some(true),
                                terminating: None,
                            }),
                            ..Default::default()
                        })
                        .collect(),
                }));
        }
    }
    // Direct mode so every path has pod targets.
    for ing in &mut snap.ingresses {
        let ing = std::sync::Arc::make_mut(ing);
        ing.metadata.annotations = Some(BTreeMap::from([(
            model::build::ANN_DIRECT_ACCESS.to_string(),
            "true".to_string(),
        )]));
    }
    snap
}

fn full_build_and_noop_plan(
    snap: &Snapshot,
    observed: &BTreeMap<model::StackId, plan::ObservedLb>,
) -> usize {
    let out = model::build(snap);
    let mut changes = 0;
    for (id, d) in &out.stacks {
        let own = plan::ownership(&d.stack, "bench", None);
        changes += plan::diff(Some(d), observed.get(id), &own)
            .unwrap()
            .changes
            .len();
    }
    changes
}

fn benches(c: &mut Criterion) {
    let snap = snapshot();
    let out = model::build(&snap);
    assert_eq!(out.stacks.len(), INGRESSES);
    assert!(
        out.problems.is_empty(),
        "{:?}",
        &out.problems[..3.min(out.problems.len())]
    );
    let observed: BTreeMap<_, _> = out
        .stacks
        .iter()
        .map(|(id, d)| (id.clone(), plan::assume_applied(d, "lb-bench")))
        .collect();
    assert_eq!(full_build_and_noop_plan(&snap, &observed), 0);

    let mut g = c.benchmark_group("10k_ingresses_x_10_paths");
    g.sample_size(10);
    g.bench_function("full_build_and_plan_no_change", |b| {
        b.iter(|| black_box(full_build_and_noop_plan(&snap, &observed)))
    });
    g.bench_function("full_build_and_plan_from_nothing", |b| {
        b.iter(|| {
            let out = model::build(&snap);
            let mut calls = 0;
            for d in out.stacks.values() {
                calls += plan::diff(Some(d), None, &plan::ownership(&d.stack, "bench", None))
                    .unwrap()
                    .api_calls();
            }
            black_box(calls)
        })
    });
    g.finish();

    // One Ingress edited (all its paths renamed): rebuild only its stack and plan it.
    let mut edited = snap.clone();
    edited.ingresses[4242] = std::sync::Arc::new(ingress(4242, 1));
    let index = model::Index::new(&edited);
    let stack = index.stack_of("bench", "ing4242").unwrap().clone();
    let obs = observed.get(&stack).unwrap();
    let (d, _) = index.build_stack(&stack);
    let p = plan::diff(
        d.as_ref(),
        Some(obs),
        &plan::ownership(&d.as_ref().unwrap().stack, "bench", None),
    )
    .unwrap();
    assert!(!p.changes.is_empty());
    c.bench_function("one_ingress_change_build_stack_and_plan", |b| {
        b.iter(|| {
            let (d, _) = index.build_stack(&stack);
            let d = d.unwrap();
            black_box(
                plan::diff(
                    Some(&d),
                    Some(obs),
                    &plan::ownership(&d.stack, "bench", None),
                )
                .unwrap(),
            )
        })
    });
    let mut g = c.benchmark_group("index");
    g.sample_size(10);
    g.bench_function("index_new_10k_ingresses_100k_services", |b| {
        b.iter(|| black_box(model::Index::new(&edited).stack_ids().count()))
    });
    g.finish();
}

criterion_group!(build_plan, benches);
criterion_main!(build_plan);
