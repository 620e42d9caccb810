//! `clb-ingress migrate --from-tke -f PATH`: a preview, with no writes, of switching Ingresses
//! from TKE's controller to clb-ingress: per Ingress, what behaves as on TKE, what differs and
//! why, then the CLB plan (diffed read-only against the CLB in use with `--clb-endpoint`).

use super::plan::{StackReport, plan_all, render_table};
use crate::model::build::{
    ANN_AUTO_REWRITE, ANN_AUTO_REWRITE_CODE, ANN_CERTIFICATE, ANN_DIRECT_ACCESS, ANN_EXIST_LB_ID,
    ANN_HTTP_RULES, ANN_HTTPS_RULES, ANN_INGRESS_CLASS, ANN_LISTEN_PORTS, ANN_MODE,
    ANN_QCLOUD_LB_ID, ANN_RETAIN, ANN_RS_WEIGHT, ANN_RULE_MIX, ANN_SUBNET_ID,
    TKE_REFUSED_ANNOTATIONS,
};
use crate::model::{self, Effect, ObjectRef, Snapshot};
use crate::plan::ObservedLb;
use serde::Serialize;
use std::io::Write;
use std::path::PathBuf;

/// The class TKE's controller answers to.
pub const TKE_CLASS: &str = "qcloud";

#[derive(Debug, Clone, clap::Args)]
pub struct MigrateArgs {
    /// Preview a switch from TKE's Ingress controller (the only source supported).
    #[arg(long = "from-tke", required = true)]
    pub from_tke: bool,
    /// Manifest files or directories: the Ingresses (and the Services, EndpointSlices,
    /// Secrets, IngressClass and ClbClassParameters they use); repeatable.
    #[arg(short = 'f', long = "filename", required = true)]
    pub files: Vec<PathBuf>,
    /// The clb-ingress IngressClass the Ingresses will be switched to.
    #[arg(long = "class", default_value = "clb")]
    pub class: String,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value = "table")]
    pub output: super::plan::OutputFormat,
    /// Cluster id, used in CLB names and ownership tags.
    #[arg(long, env = "CLB_INGRESS_CLUSTER_ID", default_value = "local")]
    pub cluster_id: String,
    /// Diff against the CLBs as they are (read-only); without `--clb-endpoint`, plan from empty.
    #[command(flatten)]
    pub cloud: super::cloud::CloudArgs,
}

/// What the switch means for one Ingress.
#[derive(Debug, Default, Serialize)]
pub struct IngressReport {
    pub ingress: String,
    /// Annotations and behaviour that carry over with TKE's meaning.
    pub same: Vec<String>,
    /// What behaves differently, and why.
    pub differs: Vec<String>,
}

#[derive(Debug, Serialize)]
struct Report<'a> {
    ingresses: Vec<IngressReport>,
    stacks: Vec<StackReport<'a>>,
    problems: &'a [model::Problem],
}

/// TKE annotations clb-ingress implements with TKE's meaning.
const SAME: [&str; 14] = [
    ANN_EXIST_LB_ID,
    ANN_SUBNET_ID,
    ANN_DIRECT_ACCESS,
    ANN_LISTEN_PORTS,
    ANN_AUTO_REWRITE,
    ANN_AUTO_REWRITE_CODE,
    ANN_RS_WEIGHT,
    ANN_RETAIN,
    ANN_MODE,
    ANN_CERTIFICATE,
    ANN_RULE_MIX,
    ANN_HTTP_RULES,
    ANN_HTTPS_RULES,
    ANN_QCLOUD_LB_ID,
];

/// Switch every Ingress TKE would handle (class `qcloud`, or no class at all) to `class`.
/// Returns how many were switched.
pub fn switch_to(snap: &mut Snapshot, class: &str) -> usize {
    let mut n = 0;
    for ing in &mut snap.ingresses {
        let by_name = ing.spec.as_ref().and_then(|s| s.ingress_class_name.clone());
        let by_annotation = ing
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(ANN_INGRESS_CLASS).cloned());
        let tke = match (by_name.as_deref(), by_annotation.as_deref()) {
            (Some(c), _) => c == TKE_CLASS,
            (None, Some(c)) => c == TKE_CLASS,
            (None, None) => true,
        };
        if !tke {
            continue;
        }
        if let Some(a) = ing.metadata.annotations.as_mut() {
            a.remove(ANN_INGRESS_CLASS);
        }
        ing.spec
            .get_or_insert_with(Default::default)
            .ingress_class_name = Some(class.to_string());
        n += 1;
    }
    n
}

/// Per Ingress: what carries over and what differs (the model's Problems included).
pub fn ingress_reports(snap: &Snapshot, out: &model::BuildOutput) -> Vec<IngressReport> {
    let mut reports = Vec::new();
    for ing in &snap.ingresses {
        let ns = ing.metadata.namespace.as_deref().unwrap_or("default");
        let name = ing.metadata.name.as_deref().unwrap_or("");
        let key = ObjectRef::namespaced("Ingress", ns, name);
        let anns = ing.metadata.annotations.clone().unwrap_or_default();
        let mut r = IngressReport {
            ingress: key.to_string(),
            ..Default::default()
        };
        let params = ing
            .spec
            .as_ref()
            .and_then(|s| s.ingress_class_name.as_deref())
            .and_then(|c| {
                snap.ingress_classes
                    .iter()
                    .find(|ic| ic.metadata.name.as_deref() == Some(c))
            })
            .and_then(|ic| ic.spec.as_ref()?.parameters.as_ref())
            .and_then(|p| {
                snap.class_params
                    .iter()
                    .find(|cp| cp.metadata.name.as_deref() == Some(p.name.as_str()))
            });
        let problems: Vec<&model::Problem> =
            out.problems.iter().filter(|p| p.object == key).collect();
        for a in SAME.iter().filter(|a| anns.contains_key(**a)) {
            if !problems.iter().any(|p| p.field.contains(*a)) {
                r.same.push(format!("{a}: as on TKE"));
            }
        }
        for (a, _) in TKE_REFUSED_ANNOTATIONS
            .iter()
            .filter(|(a, _)| anns.contains_key(*a))
        {
            if !problems.iter().any(|p| p.field.contains(a)) {
                r.differs.push(format!("{a}: not applied"));
            }
        }
        if anns.contains_key(ANN_EXIST_LB_ID) {
            r.same.push(
                "the CLB: the existing CLB named by existLbId (adopted if the class allows it)"
                    .into(),
            );
        } else {
            r.differs.push("the CLB: a new CLB with a new address is created (TKE's CLB carries TKE's tags, not ours); add kubernetes.io/ingress.existLbId to keep the address".into());
        }
        let spec = ing.spec.as_ref();
        let has_default = spec.and_then(|s| s.default_backend.as_ref()).is_some()
            || spec.and_then(|s| s.rules.as_ref()).is_some_and(|rs| {
                rs.iter()
                    .any(|r| r.host.as_deref().unwrap_or("").is_empty())
            });
        let tke_unmatched = params.is_some_and(|p| {
            p.spec.unmatched_hosts == crate::crd::UnmatchedHosts::ListenerDefaultDomain
        });
        if has_default || tke_unmatched {
            r.same
                .push("a Host no rule names: answered as on TKE".into());
        } else {
            r.differs.push("a Host no rule names gets 404 (the Ingress spec); TKE sends it to the listener's default domain: set unmatchedHosts: ListenerDefaultDomain in the class parameters to keep TKE's answer".into());
        }
        let prefix_like = spec
            .and_then(|s| s.rules.as_ref())
            .into_iter()
            .flatten()
            .flat_map(|r| r.http.iter().flat_map(|h| &h.paths))
            .any(|p| p.path_type != "Exact" && p.path.as_deref().is_some_and(|p| p != "/"));
        if prefix_like {
            r.differs.push("paths match element-wise (/api serves /api and /api/..., not /apiary); TKE matches a plain string prefix".into());
        }
        for p in problems {
            let line = format!("{}: {} ({:?}): {}", p.field, p.reason, p.effect, p.message);
            if p.effect == Effect::Degraded || p.effect == Effect::Overridden {
                r.differs.push(line);
            } else {
                r.differs.push(format!("NOT SERVED: {line}"));
            }
        }
        reports.push(r);
    }
    reports
}

/// Run `migrate --from-tke`; exit code 1 if any Ingress or host would not be served.
pub fn run(args: &MigrateArgs) -> anyhow::Result<i32> {
    let mut snap = Snapshot::new(&args.cluster_id);
    crate::manifests::load(&args.files, &mut snap)?;
    let switched = switch_to(&mut snap, &args.class);
    let out = model::build(&snap);
    let observed: std::collections::BTreeMap<model::StackId, Option<ObservedLb>> =
        if args.cloud.is_set() {
            super::plan::observe_all(&args.cloud.deployer(&args.cluster_id)?, &out)?
        } else {
            Default::default()
        };
    let stacks = plan_all(&out, &args.cluster_id, |d| {
        observed.get(&d.stack).cloned().flatten()
    });
    let ingresses = ingress_reports(&snap, &out);
    let stdout = std::io::stdout();
    let mut w = stdout.lock();
    match args.output {
        super::plan::OutputFormat::Table => {
            writeln!(
                w,
                "Preview only: nothing is written. {switched} Ingress(es) of TKE's controller switched to class {:?} for this preview.",
                args.class
            )?;
            for r in &ingresses {
                writeln!(w, "== {}", r.ingress)?;
                for s in &r.same {
                    writeln!(w, "   same:    {s}")?;
                }
                for d in &r.differs {
                    writeln!(w, "   differs: {d}")?;
                }
            }
            render_table(&mut w, &stacks)?;
        }
        super::plan::OutputFormat::Json => {
            serde_json::to_writer_pretty(
                &mut w,
                &Report {
                    ingresses,
                    stacks,
                    problems: &out.problems,
                },
            )?;
            writeln!(w)?;
        }
    }
    Ok(
        if out
            .problems
            .iter()
            .any(|p| matches!(p.effect, Effect::Parked | Effect::HostParked))
        {
            1
        } else {
            0
        },
    )
}
