//! `clb-ingress plan -f PATH`: preview the CLB state and the changes that manifests produce.

use crate::model::{self, DesiredLb, Effect, LbSource, Snapshot};
use crate::plan::{self, ObservedLb, Plan};
use serde::Serialize;
use std::io::Write;
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    Table,
    Json,
}

#[derive(Debug, Clone, clap::Args)]
pub struct PlanArgs {
    /// Manifest files or directories (YAML multi-doc, JSON, `kind: List`); repeatable.
    #[arg(short = 'f', long = "filename", required = true)]
    pub files: Vec<PathBuf>,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value = "table")]
    pub output: OutputFormat,
    /// Cluster id, used in CLB names and ownership tags.
    #[arg(long, env = "CLB_INGRESS_CLUSTER_ID", default_value = "local")]
    pub cluster_id: String,
    /// IngressClass `spec.controller` value handled by this controller.
    #[arg(long, default_value = model::build::DEFAULT_CONTROLLER_NAME)]
    pub controller_name: String,
    /// Diff against the CLBs as they are (read-only); without `--clb-endpoint`, plan from empty.
    #[command(flatten)]
    pub cloud: super::cloud::CloudArgs,
}

/// One stack's result, as printed with `-o json`.
#[derive(Debug, Serialize)]
pub struct StackReport<'a> {
    pub desired: &'a DesiredLb,
    pub plan: Plan,
    pub api_calls: usize,
}

#[derive(Debug, Serialize)]
pub struct Report<'a> {
    pub stacks: Vec<StackReport<'a>>,
    pub problems: &'a [model::Problem],
}

/// Plan every stack against the CLBs as `observed` returns them (None: nothing exists yet).
pub fn plan_all<'a>(
    out: &'a model::BuildOutput,
    cluster_id: &str,
    observed: impl Fn(&DesiredLb) -> Option<ObservedLb>,
) -> Vec<StackReport<'a>> {
    out.stacks
        .values()
        .map(|d| {
            let obs = observed(d);
            let own = plan::ownership(&d.stack, cluster_id, obs.as_ref().map(ObservedLb::facts));
            let plan = match plan::diff(Some(d), obs.as_ref(), &own) {
                Ok(p) => p,
                Err(e) => Plan {
                    changes: Vec::new(),
                    conflicts: vec![e.to_string()],
                },
            };
            StackReport {
                desired: d,
                api_calls: plan.api_calls(),
                plan,
            }
        })
        .collect()
}

/// Read every stack's CLB (read-only calls only).
pub fn observe_all(
    deployer: &crate::deploy::Deployer,
    out: &model::BuildOutput,
) -> anyhow::Result<std::collections::BTreeMap<model::StackId, Option<ObservedLb>>> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let mut map = std::collections::BTreeMap::new();
        for d in out.stacks.values() {
            let lb = deployer.find(&d.stack).await?;
            let observed = match lb.first() {
                Some(lb) => Some(deployer.observe(lb, true).await?),
                None => None,
            };
            map.insert(d.stack.clone(), observed);
        }
        Ok(map)
    })
}

/// Render the desired state and plan of every stack as a table.
pub fn render_table(w: &mut impl Write, reports: &[StackReport<'_>]) -> std::io::Result<()> {
    if reports.is_empty() {
        writeln!(
            w,
            "No Ingress is handled by this controller (check IngressClass spec.controller)."
        )?;
    }
    for r in reports {
        let d = r.desired;
        let lb = match &d.source {
            LbSource::Existing { id, .. } => format!("existing CLB {id}"),
            LbSource::Create { name, .. } => format!("new CLB {name}"),
        };
        writeln!(w, "== stack {} -> {lb}", d.stack)?;
        let members: Vec<String> = d.members.iter().map(|m| m.ingress.to_string()).collect();
        writeln!(w, "   ingresses: {}", members.join(", "))?;
        writeln!(
            w,
            "   {:<6} {:<5} {:<34} {:<28} {:<28} TARGETS",
            "PROTO", "PORT", "DOMAIN", "URL", "BACKEND"
        )?;
        for l in &d.listeners {
            for dom in &l.domains {
                for rule in &dom.rules {
                    let mut domain = dom.domain.clone();
                    if dom.default_server {
                        domain.push_str(" [default]");
                    }
                    let backend = rule
                        .backend
                        .as_ref()
                        .map(|b| b.to_string())
                        .unwrap_or_else(|| "(none: 503/404)".into());
                    let targets: Vec<String> = rule
                        .targets
                        .iter()
                        .map(|t| format!("{}:{}", t.addr, t.port))
                        .collect();
                    writeln!(
                        w,
                        "   {:<6} {:<5} {:<34} {:<28} {:<28} {}",
                        l.protocol.as_str(),
                        l.port,
                        domain,
                        rule.url,
                        backend,
                        if targets.is_empty() {
                            "-".to_string()
                        } else {
                            targets.join(",")
                        }
                    )?;
                }
                if let Some(c) = &dom.certificate {
                    writeln!(
                        w,
                        "   {:<6} {:<5} {:<34} certificate {}",
                        "",
                        "",
                        dom.domain,
                        c.describe()
                    )?;
                }
            }
        }
        writeln!(
            w,
            "   plan: {} change(s), {} API write call(s)",
            r.plan.changes.len(),
            r.api_calls
        )?;
        for (i, c) in r.plan.changes.iter().enumerate() {
            writeln!(w, "   {:>3}. {c}", i + 1)?;
        }
        for c in &r.plan.conflicts {
            writeln!(w, "   conflict: {c}")?;
        }
    }
    Ok(())
}

/// Run `plan`; returns the process exit code (1 if any object was refused).
pub fn run(args: &PlanArgs) -> anyhow::Result<i32> {
    let mut snap = Snapshot::new(&args.cluster_id);
    snap.controller_name = args.controller_name.clone();
    crate::manifests::load(&args.files, &mut snap)?;
    let out = model::build(&snap);
    let observed = if args.cloud.is_set() {
        observe_all(&args.cloud.deployer(&args.cluster_id)?, &out)?
    } else {
        Default::default()
    };
    let reports = plan_all(&out, &args.cluster_id, |d| {
        observed.get(&d.stack).cloned().flatten()
    });
    let stdout = std::io::stdout();
    let mut w = stdout.lock();
    match args.output {
        OutputFormat::Table => render_table(&mut w, &reports)?,
        OutputFormat::Json => {
            serde_json::to_writer_pretty(
                &mut w,
                &Report {
                    stacks: reports,
                    problems: &out.problems,
                },
            )?;
            writeln!(w)?;
        }
    }
    let mut refused = false;
    for p in &out.problems {
        eprintln!("problem: {p}");
        refused |= p.effect != Effect::Degraded;
    }
    Ok(if refused { 1 } else { 0 })
}
