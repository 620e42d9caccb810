//! `clb-ingress apply -f PATH --clb-endpoint URL`: one-shot reconcile of manifests into CLBs.

use super::cloud::CloudArgs;
use super::plan::OutputFormat;
use crate::clb::types::LoadBalancer;
use crate::deploy::{Deployer, Outcome};
use crate::model::{self, Effect, Snapshot, StackId};
use futures::StreamExt;
use serde::Serialize;
use std::collections::BTreeSet;
use std::path::PathBuf;

/// Stacks reconciled at once (each CLB still has a single writer).
pub const DEFAULT_CONCURRENCY: usize = 64;

/// The cluster id of `apply` when none is given (never for `--prune`).
pub const DEFAULT_APPLY_CLUSTER_ID: &str = "local";

#[derive(Debug, Clone, clap::Args)]
pub struct ApplyArgs {
    /// Manifest files or directories; repeatable; `-` reads standard input.
    #[arg(short = 'f', long = "filename", required = true)]
    pub files: Vec<PathBuf>,
    #[arg(short = 'o', long = "output", value_enum, default_value = "table")]
    pub output: OutputFormat,
    /// Cluster id in CLB names and ownership tags (default `local`; `--prune` needs it given:
    /// with a shared default, pruning could delete another cluster's CLBs).
    #[arg(long, env = "CLB_INGRESS_CLUSTER_ID")]
    pub cluster_id: Option<String>,
    #[arg(long, default_value = model::build::DEFAULT_CONTROLLER_NAME)]
    pub controller_name: String,
    /// `spec.controllerName` of the GatewayClasses handled (Gateway API).
    #[arg(long, default_value = clb_ingress_core::gateway::DEFAULT_GATEWAY_CONTROLLER_NAME)]
    pub gateway_controller_name: String,
    /// Treat Ingresses that name no IngressClass as of class NAME, and NAME as ours when the
    /// input does not define it.
    #[arg(long, value_name = "NAME")]
    pub assume_class: Option<String>,
    /// Also delete CLBs that clb-ingress created for this cluster id and that no manifest
    /// wants any more (adopted CLBs are never deleted).
    #[arg(long)]
    pub prune: bool,
    /// How many CLBs to reconcile in parallel.
    #[arg(long, default_value_t = DEFAULT_CONCURRENCY)]
    pub concurrency: usize,
    #[command(flatten)]
    pub cloud: CloudArgs,
}

#[derive(Debug, Serialize)]
pub struct StackResult {
    pub stack: String,
    /// Each Ingress of the stack with the listeners it is served on.
    pub ingresses: Vec<(String, Vec<String>)>,
    pub outcome: Option<Outcome>,
    pub error: Option<String>,
}

/// Reconcile every stack of a snapshot (and, with `prune`, delete CLBs of vanished stacks).
/// `shared_held`: why the shared classes' stacks (shard CLBs) must not be touched this time
/// (their placement could not be read back): they are reported failed with it, not written,
/// and still count as wanted for `prune`.
pub async fn apply_snapshot(
    deployer: &Deployer,
    out: &model::BuildOutput,
    prune: bool,
    concurrency: usize,
    shared_held: Option<&str>,
) -> Vec<StackResult> {
    /// A stack to reconcile, or a CLB of a vanished stack to prune (by its stack tag).
    enum Job<'a> {
        Stack(&'a model::DesiredLb),
        Prune(Box<LoadBalancer>, String),
    }
    let mut jobs: Vec<Job<'_>> = out.stacks.values().map(Job::Stack).collect();
    let mut prune_error = None;
    if prune {
        let cluster_id = deployer.cluster_id();
        let wanted: BTreeSet<String> = out.stacks.keys().map(|id| id.hash(cluster_id)).collect();
        match deployer.owned_lbs().await {
            Ok(lbs) => {
                for lb in lbs {
                    let tag = lb
                        .tags
                        .iter()
                        .find(|t| t.tag_key == model::ids::TAG_STACK)
                        .map(|t| t.tag_value.clone());
                    if let Some(tag) = tag
                        && !wanted.contains(&tag)
                        && !model::ids::is_retained_name(&lb.load_balancer_name)
                    {
                        jobs.push(Job::Prune(Box::new(lb), tag));
                    }
                }
            }
            Err(e) => prune_error = Some(crate::controller::error::describe(&e)),
        }
    }
    let mut results: Vec<StackResult> = futures::stream::iter(jobs)
        .map(|job| async move {
            let describe = |e: crate::deploy::DeployError| {
                format!(
                    "{} [{}]",
                    crate::controller::error::describe(&e),
                    e.category()
                )
            };
            let (stack, desired, r) = match job {
                Job::Stack(d) => match shared_held {
                    Some(why) if matches!(d.stack, StackId::Class(_) | StackId::Shard { .. }) => (
                        d.stack.to_string(),
                        Some(d),
                        Err(format!("not applied: {why}")),
                    ),
                    _ => (
                        d.stack.to_string(),
                        Some(d),
                        deployer
                            .reconcile(&d.stack, Some(d))
                            .await
                            .map_err(describe),
                    ),
                },
                Job::Prune(lb, hash) => (
                    format!("(gone) {}", lb.load_balancer_id),
                    None,
                    deployer.prune(&lb, &hash).await.map_err(describe),
                ),
            };
            StackResult {
                ingresses: desired
                    .map(|d| {
                        d.members
                            .iter()
                            .map(|m| {
                                let ports = m
                                    .ports
                                    .iter()
                                    .map(|(p, n)| format!("{} {n}", p.as_str()))
                                    .collect();
                                (m.ingress.to_string(), ports)
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
                stack,
                error: r.as_ref().err().cloned(),
                outcome: r.ok(),
            }
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    if let Some(e) = prune_error {
        results.push(StackResult {
            stack: "(prune)".into(),
            ingresses: vec![],
            outcome: None,
            error: Some(e),
        });
    }
    results.sort_by(|a, b| a.stack.cmp(&b.stack));
    results
}

pub fn run(args: &ApplyArgs) -> anyhow::Result<i32> {
    if args.prune && args.cluster_id.is_none() {
        eprintln!(
            "error: --prune deletes the CLBs this cluster id created that no manifest wants; give \
             the id explicitly with --cluster-id (or CLB_INGRESS_CLUSTER_ID) so that another \
             cluster's CLBs can never be taken for this one's"
        );
        return Ok(2);
    }
    let cluster_id = args
        .cluster_id
        .as_deref()
        .unwrap_or(DEFAULT_APPLY_CLUSTER_ID);
    let mut snap = Snapshot::new(cluster_id);
    snap.controller_name = args.controller_name.clone();
    snap.gateway_controller_name = args.gateway_controller_name.clone();
    crate::manifests::load(&args.files, &mut snap)?;
    if let Some(class) = &args.assume_class {
        super::plan::assume_class(&mut snap, class);
    }
    let deployer = args.cloud.deployer(cluster_id)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    // The account's real quotas (the documented defaults when DescribeQuota fails).
    match rt.block_on(deployer.limits()) {
        Ok(limits) => snap.limits = limits,
        Err(e) => tracing::warn!(
            error = %crate::controller::error::describe(&e),
            "DescribeQuota failed; using the documented quotas"
        ),
    }
    // Hosts of shared classes stay on the shard CLBs that serve them. Without that placement
    // a shared class's hosts could be moved between its CLBs, so its stacks are held (and
    // reported failed); every other stack is applied.
    let shared_held = super::plan::read_placement(&rt, &deployer, &mut snap)
        .err()
        .map(|e| e.to_string());
    let out = model::build(&snap);
    let results = rt.block_on(apply_snapshot(
        &deployer,
        &out,
        args.prune,
        args.concurrency,
        shared_held.as_deref(),
    ));
    match args.output {
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&results)?),
        OutputFormat::Table => {
            for r in &results {
                match (&r.outcome, &r.error) {
                    (Some(o), _) => {
                        let lb = o.lb_id.as_deref().unwrap_or("(none)");
                        let state = if o.changes == 0 {
                            "in sync".to_string()
                        } else {
                            format!("{} change(s), {} write call(s)", o.changes, o.write_calls)
                        };
                        println!("{}: {state}; CLB {lb}", r.stack);
                        if !o.vips.is_empty() {
                            for (ing, ports) in &r.ingresses {
                                println!(
                                    "  {ing}: address {} ({})",
                                    o.vips.join(","),
                                    ports.join(", ")
                                );
                            }
                        }
                        for c in &o.conflicts {
                            println!("  conflict: {c}");
                        }
                    }
                    (None, Some(e)) => println!("{}: FAILED: {e}", r.stack),
                    (None, None) => {}
                }
            }
        }
    }
    let mut code = 0;
    for p in &out.problems {
        eprintln!("problem: {p}");
        if p.effect != Effect::Degraded {
            code = 1;
        }
    }
    let unhandled = super::plan::unhandled(&snap, &out);
    for why in unhandled
        .iter()
        .chain(&super::plan::unhandled_gateways(&snap))
    {
        eprintln!("note: {why}");
    }
    if !snap.ingresses.is_empty() && unhandled.len() == snap.ingresses.len() {
        code = 1;
    }
    if results.iter().any(|r| r.error.is_some()) {
        code = 1;
    }
    Ok(code)
}
