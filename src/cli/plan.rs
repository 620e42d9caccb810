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
    /// Manifest files or directories (YAML multi-doc, JSON, `kind: List`); repeatable; `-`
    /// reads standard input.
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
    /// `spec.controllerName` of the GatewayClasses handled (Gateway API).
    #[arg(long, default_value = clb_ingress_core::gateway::DEFAULT_GATEWAY_CONTROLLER_NAME)]
    pub gateway_controller_name: String,
    /// Treat Ingresses that name no IngressClass as of class NAME, and NAME as ours when the
    /// input does not define it (plan a single Ingress file without its IngressClass).
    #[arg(long, value_name = "NAME")]
    pub assume_class: Option<String>,
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
    /// The CLB the plan was diffed against (`--clb-endpoint`), when one exists.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub observed_lb: Option<String>,
    /// Readable names of the observed CLB's ids (listener id -> `HTTP:80`, location id ->
    /// `domain url`), used by the table.
    #[serde(skip)]
    pub names: Vec<(String, String)>,
    /// Rules per listener against the account's rules-per-listener quota.
    pub rules: Vec<model::ListenerRules>,
    #[serde(rename = "rulesPerListenerQuota")]
    pub rules_quota: usize,
    /// What each Ingress path costs on each listener ([`model::rule_costs`]); `plan` fills it.
    #[serde(rename = "ruleCosts", skip_serializing_if = "Vec::is_empty")]
    pub costs: Vec<model::ListenerCost>,
}

/// Readable names for the ids of an observed CLB: listeners as `PROTO:PORT`, rules as
/// `PROTO:PORT domain url`.
pub fn readable_names(obs: &ObservedLb) -> Vec<(String, String)> {
    let mut names = Vec::new();
    for l in &obs.listeners {
        let listener = format!("{}:{}", l.protocol.as_str(), l.port);
        for r in &l.rules {
            names.push((r.location_id.clone(), format!("{} {}", r.domain, r.url)));
        }
        names.push((l.id.clone(), listener));
    }
    names
}

/// `text` with every id of `names` replaced by its readable name.
pub fn with_names(text: &str, names: &[(String, String)]) -> String {
    let mut out = text.to_string();
    for (id, name) in names.iter().filter(|(id, _)| !id.is_empty()) {
        out = out.replace(id.as_str(), name);
    }
    out
}

/// The class name an Ingress names (`spec.ingressClassName`, else the legacy annotation).
pub(crate) fn named_class(ing: &k8s_openapi::api::networking::v1::Ingress) -> Option<&str> {
    ing.spec
        .as_ref()
        .and_then(|s| s.ingress_class_name.as_deref())
        .or_else(|| {
            ing.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(model::build::ANN_INGRESS_CLASS))
                .map(String::as_str)
        })
}

/// `--assume-class NAME`: Ingresses that name no class get NAME, and NAME becomes an
/// IngressClass of ours when the input has none of that name.
pub fn assume_class(snap: &mut Snapshot, name: &str) {
    for ing in &mut snap.ingresses {
        let ing = std::sync::Arc::make_mut(ing);
        if named_class(ing).is_none() {
            ing.spec
                .get_or_insert_with(Default::default)
                .ingress_class_name = Some(name.to_string());
        }
    }
    if !snap
        .ingress_classes
        .iter()
        .any(|c| c.metadata.name.as_deref() == Some(name))
    {
        snap.ingress_classes
            .push(k8s_openapi::api::networking::v1::IngressClass {
                metadata: kube::api::ObjectMeta {
                    name: Some(name.to_string()),
                    ..Default::default()
                },
                spec: Some(k8s_openapi::api::networking::v1::IngressClassSpec {
                    controller: Some(snap.controller_name.clone()),
                    ..Default::default()
                }),
            });
    }
}

/// Why each Ingress of the input that is on no stack and has no Problem is not handled (its
/// class is not in the input, belongs to another controller, or it names none and there is no
/// default class of ours).
pub fn unhandled(snap: &Snapshot, out: &model::BuildOutput) -> Vec<String> {
    let placed: std::collections::BTreeSet<(String, String)> = out
        .stacks
        .values()
        .flat_map(|d| &d.members)
        .map(|m| {
            (
                m.ingress.namespace.clone().unwrap_or_default(),
                m.ingress.name.clone(),
            )
        })
        .chain(
            out.problems
                .iter()
                .filter(|p| p.object.kind == "Ingress")
                .map(|p| {
                    (
                        p.object.namespace.clone().unwrap_or_default(),
                        p.object.name.clone(),
                    )
                }),
        )
        .collect();
    let ours = &snap.controller_name;
    let mut why = Vec::new();
    for ing in &snap.ingresses {
        let ns = ing.metadata.namespace.clone().unwrap_or_default();
        let name = ing.metadata.name.clone().unwrap_or_default();
        if placed.contains(&(ns.clone(), name.clone())) {
            continue;
        }
        let reason = match named_class(ing) {
            None => format!(
                "it names no IngressClass and the input has no default IngressClass of \
                 controller {ours} (annotated {}: \"true\"); add its IngressClass to the \
                 input (another -f) or pass --assume-class NAME",
                model::build::ANN_DEFAULT_CLASS
            ),
            Some(class) => match snap
                .ingress_classes
                .iter()
                .find(|c| c.metadata.name.as_deref() == Some(class))
            {
                None => format!(
                    "its IngressClass {class} is not in the input; add it (another -f) or \
                     pass --assume-class {class}"
                ),
                Some(c) => {
                    let controller = c
                        .spec
                        .as_ref()
                        .and_then(|s| s.controller.as_deref())
                        .unwrap_or("(none)");
                    if controller == ours {
                        "it is on no CLB (see the problems above)".to_string()
                    } else {
                        format!(
                            "its IngressClass {class} belongs to controller {controller}, not \
                             {ours} (--controller-name)"
                        )
                    }
                }
            },
        };
        why.push(format!("Ingress {ns}/{name} is not handled: {reason}"));
    }
    why
}

#[derive(Debug, Serialize)]
pub struct Report<'a> {
    pub stacks: Vec<StackReport<'a>>,
    pub problems: &'a [model::Problem],
    /// Shared classes: which shard (CLB) each host's CLB domain is placed on.
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub placement: &'a model::Placement,
    /// Computed status of the Gateway API objects (absent when the input has none).
    #[serde(rename = "gatewayApi", skip_serializing_if = "Option::is_none")]
    pub gateway_api: Option<&'a clb_ingress_core::gateway::GatewayApiStatus>,
}

/// Read where the hosts of shared classes live from the CLBs (see
/// [`crate::deploy::Deployer::shard_placement`]) into `snap`, so that the build keeps them
/// there.
pub fn read_placement(
    rt: &tokio::runtime::Runtime,
    deployer: &crate::deploy::Deployer,
    snap: &mut Snapshot,
) -> anyhow::Result<()> {
    // Only Shared classes have shard CLBs: with none, nothing is read.
    let classes = crate::model::build::shared_class_names(snap);
    snap.placement = rt
        .block_on(deployer.shard_placement(&classes))
        .map_err(|e| {
            anyhow::anyhow!(
                "reading where the shared classes' hosts live (their shard CLBs) failed: {}",
                crate::controller::error::describe(&e)
            )
        })?;
    Ok(())
}

/// Notes for Gateways that are not handled (their class is not in the input or not ours).
pub fn unhandled_gateways(snap: &Snapshot) -> Vec<String> {
    snap.gateways
        .iter()
        .filter_map(|g| {
            let class = &g.spec.gateway_class_name;
            let why = match snap
                .gateway_classes
                .iter()
                .find(|c| c.metadata.name.as_deref() == Some(class.as_str()))
            {
                None => format!("its GatewayClass {class:?} is not in the input"),
                Some(c) if c.spec.controller_name != snap.gateway_controller_name => format!(
                    "its GatewayClass {class:?} belongs to controller {:?}",
                    c.spec.controller_name
                ),
                Some(_) => return None,
            };
            Some(format!(
                "Gateway {}/{} is not handled: {why}",
                g.metadata.namespace.as_deref().unwrap_or("default"),
                g.metadata.name.as_deref().unwrap_or("")
            ))
        })
        .collect()
}

/// Plan every stack against the CLBs as `observed` returns them (None: nothing exists yet).
pub fn plan_all<'a>(
    out: &'a model::BuildOutput,
    cluster_id: &str,
    limits: &model::Limits,
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
                observed_lb: obs.as_ref().map(|o| o.id.clone()),
                names: obs.as_ref().map(readable_names).unwrap_or_default(),
                rules: d.rule_counts(),
                rules_quota: limits.rules_per_listener,
                costs: Vec::new(),
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
            "No Ingress is handled by this controller (the notes on standard error say why)."
        )?;
    }
    for r in reports {
        let d = r.desired;
        let lb = match (&d.source, &r.observed_lb) {
            (LbSource::Existing { id, .. }, _) => format!("existing CLB {id}"),
            (LbSource::Create { name, .. }, Some(id)) => format!("existing CLB {id} ({name})"),
            (LbSource::Create { name, .. }, None) => format!("new CLB {name}"),
        };
        writeln!(w, "== stack {} -> {lb}", d.stack)?;
        if let Some((class, shard)) = d.stack.class_shard() {
            let hosts: std::collections::BTreeSet<&str> = d
                .listeners
                .iter()
                .flat_map(|l| &l.domains)
                .filter(|dom| !dom.default_server)
                .map(|dom| dom.host.as_str())
                .collect();
            let hosts: Vec<&str> = hosts.into_iter().collect();
            writeln!(
                w,
                "   shard {shard} of class {class}; hosts: {}",
                hosts.join(", ")
            )?;
        }
        let members: Vec<String> = d.members.iter().map(|m| m.ingress.to_string()).collect();
        writeln!(w, "   ingresses: {}", members.join(", "))?;
        for l in &r.rules {
            let cost = r
                .costs
                .iter()
                .find(|c| c.protocol == l.protocol && c.port == l.port);
            let saved = cost
                .filter(|c| c.rules_without_economy > c.rules)
                .map(|c| format!(" ({} without rule economy)", c.rules_without_economy))
                .unwrap_or_default();
            writeln!(
                w,
                "   rules {}/{} on {}:{}{saved}",
                l.rules,
                r.rules_quota,
                l.protocol.as_str(),
                l.port
            )?;
            for p in cost.iter().flat_map(|c| &c.paths) {
                let urls = if p.urls.is_empty() {
                    "no rule".to_string()
                } else {
                    p.urls.join(" ")
                };
                let kind = if p.kind.is_empty() { "" } else { " " };
                writeln!(
                    w,
                    "      {} {}{kind}{}: {urls} - {}",
                    p.host, p.kind, p.path, p.why
                )?;
            }
        }
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
            writeln!(
                w,
                "   {:>3}. {}",
                i + 1,
                with_names(&c.to_string(), &r.names)
            )?;
        }
        for c in &r.plan.conflicts {
            writeln!(w, "   conflict: {c}")?;
        }
    }
    Ok(())
}

/// Run `plan`; returns the process exit code: 1 if any object was refused, or if the input
/// has Ingresses and none of them is handled; 0 otherwise.
pub fn run(args: &PlanArgs) -> anyhow::Result<i32> {
    let mut snap = Snapshot::new(&args.cluster_id);
    snap.controller_name = args.controller_name.clone();
    snap.gateway_controller_name = args.gateway_controller_name.clone();
    crate::manifests::load(&args.files, &mut snap)?;
    if let Some(class) = &args.assume_class {
        assume_class(&mut snap, class);
    }
    let deployer = if args.cloud.is_set() {
        let deployer = args.cloud.deployer(&args.cluster_id)?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        read_placement(&rt, &deployer, &mut snap)?;
        Some(deployer)
    } else {
        None
    };
    let out = model::build(&snap);
    let observed = match &deployer {
        Some(deployer) => observe_all(deployer, &out)?,
        None => Default::default(),
    };
    let mut reports = plan_all(&out, &args.cluster_id, &snap.limits, |d| {
        observed.get(&d.stack).cloned().flatten()
    });
    let mut costs = model::rule_costs(&snap);
    for r in &mut reports {
        r.costs = costs.remove(&r.desired.stack).unwrap_or_default();
    }
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
                    placement: &out.placement,
                    gateway_api: (!snap.gateways.is_empty()).then_some(&out.gateway),
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
    let unhandled = unhandled(&snap, &out);
    for why in unhandled.iter().chain(&unhandled_gateways(&snap)) {
        eprintln!("note: {why}");
    }
    // Ingresses in the input and none of them handled: nothing was planned, say so by the code.
    let none_handled = !snap.ingresses.is_empty() && unhandled.len() == snap.ingresses.len();
    Ok(if refused || none_handled { 1 } else { 0 })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Protocol;
    use crate::plan::{ObservedListener, ObservedRule};

    #[test]
    fn target_changes_name_listeners_and_rules_instead_of_their_ids() {
        let obs = ObservedLb {
            id: "lb-1".into(),
            name: "n".into(),
            vips: vec![],
            domain: None,
            tags: Default::default(),
            listeners: vec![ObservedListener {
                id: "lbl-abc".into(),
                name: "l".into(),
                protocol: Protocol::Http,
                port: 80,
                sni: false,
                rules: vec![ObservedRule {
                    location_id: "loc-xyz".into(),
                    domain: "shop.example.com".into(),
                    url: "/cart".into(),
                    default_server: false,
                    certificate_id: None,
                    targets: vec![],
                    rewrite: None,
                    settings: Default::default(),
                }],
            }],
            certificates: Default::default(),
        };
        let text = "RegisterTargets (1)\n    lbl-abc loc-xyz -> 10.0.0.1:8080 w10";
        assert_eq!(
            with_names(text, &readable_names(&obs)),
            "RegisterTargets (1)\n    HTTP:80 shop.example.com /cart -> 10.0.0.1:8080 w10"
        );
    }
}
