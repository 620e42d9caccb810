//! `clb-ingress migrate --from-tke [-f PATH]`: a preview, with no writes, of switching Ingresses
//! from TKE's controller to clb-ingress: per Ingress, what behaves as on TKE, what differs and
//! why, then the CLB plan (diffed read-only against the CLB in use with `--clb-endpoint`). The
//! Ingresses come from manifests (`-f`) or, without `-f`, from the cluster (read-only).

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
    /// Secrets, IngressClass and ClbClassParameters they use); repeatable. Without `-f`, they
    /// are read from the cluster (list/get only).
    #[arg(short = 'f', long = "filename")]
    pub files: Vec<PathBuf>,
    /// Without `-f`: the kubeconfig of the cluster to read (default: $KUBECONFIG,
    /// ~/.kube/config, or the in-cluster service account).
    #[arg(long, conflicts_with = "files")]
    pub kubeconfig: Option<PathBuf>,
    /// Without `-f`: only the Ingresses of this namespace (default: every namespace).
    #[arg(short = 'n', long, conflicts_with = "files")]
    pub namespace: Option<String>,
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
    notes: Vec<String>,
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
        let ing = std::sync::Arc::make_mut(ing);
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

/// Per Ingress of `class` (the switched ones, and any already of that class): what carries
/// over and what differs (the model's Problems included). Other controllers' Ingresses are
/// left out: the switch does not touch them.
pub fn ingress_reports(
    snap: &Snapshot,
    out: &model::BuildOutput,
    class: &str,
) -> Vec<IngressReport> {
    let mut reports = Vec::new();
    for ing in snap
        .ingresses
        .iter()
        .filter(|i| super::plan::named_class(i) == Some(class))
    {
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
    let mut notes = Vec::new();
    let switched = if args.files.is_empty() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        runtime.block_on(cluster::read(args, &mut snap, &mut notes))?
    } else {
        crate::manifests::load(&args.files, &mut snap)?;
        switch_to(&mut snap, &args.class)
    };
    if !snap
        .ingress_classes
        .iter()
        .any(|c| c.metadata.name.as_deref() == Some(args.class.as_str()))
    {
        notes.push(format!(
            "IngressClass {:?} is not in the input: previewed as if clb-ingress were installed with it",
            args.class
        ));
        super::plan::assume_class(&mut snap, &args.class);
    }
    let out = model::build(&snap);
    let observed: std::collections::BTreeMap<model::StackId, Option<ObservedLb>> =
        if args.cloud.is_set() {
            super::plan::observe_all(&args.cloud.deployer(&args.cluster_id)?, &out)?
        } else {
            Default::default()
        };
    let stacks = plan_all(&out, &args.cluster_id, &snap.limits, |d| {
        observed.get(&d.stack).cloned().flatten()
    });
    let ingresses = ingress_reports(&snap, &out, &args.class);
    let stdout = std::io::stdout();
    let mut w = stdout.lock();
    match args.output {
        super::plan::OutputFormat::Table => {
            writeln!(
                w,
                "Preview only: nothing is written. {switched} Ingress(es) of TKE's controller switched to class {:?} for this preview.",
                args.class
            )?;
            for n in &notes {
                writeln!(w, "note: {n}")?;
            }
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
                    notes,
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

/// Reading the preview's input from a live cluster: list and get only, never a write.
mod cluster {
    use super::{MigrateArgs, switch_to};
    use crate::crd::ClbClassParameters;
    use crate::model::Snapshot;
    use anyhow::Context;
    use k8s_openapi::api::core::v1::{Namespace, Node, Secret, Service};
    use k8s_openapi::api::discovery::v1::EndpointSlice;
    use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
    use kube::api::{Api, ListParams};
    use std::collections::BTreeSet;

    /// A list every page of which was read, or the API's refusal (404: no such resource, 403:
    /// not allowed) when `optional`.
    async fn list<K>(api: Api<K>, what: &str) -> anyhow::Result<Result<Vec<K>, u16>>
    where
        K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    {
        let mut out = Vec::new();
        let mut lp = ListParams::default().limit(500);
        loop {
            match api.list(&lp).await {
                Ok(page) => {
                    out.extend(page.items);
                    match page.metadata.continue_.filter(|c| !c.is_empty()) {
                        Some(token) => lp = lp.continue_token(&token),
                        None => return Ok(Ok(out)),
                    }
                }
                Err(kube::Error::Api(e)) if e.code == 403 || e.code == 404 => {
                    return Ok(Err(e.code));
                }
                Err(e) => return Err(e).with_context(|| format!("listing {what}")),
            }
        }
    }

    fn refused(what: &str, code: u16) -> String {
        match code {
            404 => format!("{what}: not served by this cluster"),
            _ => format!("{what}: not allowed to list (403); previewed without them"),
        }
    }

    /// Read the Ingresses (of `args.namespace` or all), the IngressClasses and class
    /// parameters, and in the Ingresses' namespaces the Services and EndpointSlices; switch
    /// TKE's Ingresses to `args.class`, then read only the TLS Secrets those name. Returns
    /// how many Ingresses were switched.
    pub async fn read(
        args: &MigrateArgs,
        snap: &mut Snapshot,
        notes: &mut Vec<String>,
    ) -> anyhow::Result<usize> {
        let client = crate::controller::kube_client(args.kubeconfig.as_deref())
            .await
            .context("connecting to the cluster (give -f to preview manifests instead)")?;
        let ingresses: Api<Ingress> = match &args.namespace {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        };
        snap.ingresses = list(ingresses, "Ingresses")
            .await?
            .map_err(|code| anyhow::anyhow!("{}", refused("Ingresses", code)))?
            .into_iter()
            .map(std::sync::Arc::new)
            .collect();
        snap.ingress_classes = list(Api::<IngressClass>::all(client.clone()), "IngressClasses")
            .await?
            .unwrap_or_else(|code| {
                notes.push(refused("IngressClasses", code));
                Vec::new()
            });
        snap.class_params = list(
            Api::<ClbClassParameters>::all(client.clone()),
            "ClbClassParameters",
        )
        .await?
        .unwrap_or_else(|code| {
            notes.push(refused(
                "ClbClassParameters (the CRD is installed with the chart)",
                code,
            ));
            Vec::new()
        });
        snap.nodes = list(Api::<Node>::all(client.clone()), "Nodes")
            .await?
            .unwrap_or_else(|code| {
                notes.push(refused("Nodes (NodePort backends)", code));
                Vec::new()
            });
        snap.namespaces = list(Api::<Namespace>::all(client.clone()), "Namespaces")
            .await?
            .unwrap_or_else(|code| {
                notes.push(refused("Namespaces", code));
                Vec::new()
            });
        let namespaces: BTreeSet<String> = snap
            .ingresses
            .iter()
            .filter_map(|i| i.metadata.namespace.clone())
            .collect();
        for ns in &namespaces {
            let services = list(Api::<Service>::namespaced(client.clone(), ns), "Services").await?;
            match services {
                Ok(s) => snap.services.extend(s.into_iter().map(std::sync::Arc::new)),
                Err(code) => notes.push(refused(&format!("Services in {ns}"), code)),
            }
            let slices = list(
                Api::<EndpointSlice>::namespaced(client.clone(), ns),
                "EndpointSlices",
            )
            .await?;
            match slices {
                Ok(s) => snap
                    .endpoint_slices
                    .extend(s.into_iter().map(std::sync::Arc::new)),
                Err(code) => notes.push(refused(&format!("EndpointSlices in {ns}"), code)),
            }
        }
        let switched = switch_to(snap, &args.class);
        // Only the TLS Secrets the switched Ingresses name, one get each.
        let wanted: BTreeSet<(String, String)> = snap
            .ingresses
            .iter()
            .filter(|i| {
                i.spec
                    .as_ref()
                    .and_then(|s| s.ingress_class_name.as_deref())
                    == Some(args.class.as_str())
            })
            .flat_map(|i| {
                let ns = i.metadata.namespace.clone().unwrap_or_default();
                i.spec
                    .iter()
                    .flat_map(|s| s.tls.iter().flatten())
                    .filter_map(move |t| t.secret_name.clone().map(|n| (ns.clone(), n)))
            })
            .collect();
        for (ns, name) in wanted {
            match Api::<Secret>::namespaced(client.clone(), &ns)
                .get_opt(&name)
                .await
            {
                Ok(Some(s)) => snap.secrets.push(s),
                Ok(None) => {}
                Err(kube::Error::Api(e)) if e.code == 403 => notes.push(format!(
                    "Secret {ns}/{name}: not allowed to read (403); its hosts are previewed without their certificate"
                )),
                Err(e) => {
                    return Err(e).with_context(|| format!("reading Secret {ns}/{name}"));
                }
            }
        }
        Ok(switched)
    }
}
