//! Ingress annotations: TKE's (`listen-ports`, `lb-rs-weight`, `auto-rewrite`, `mode`, ...)
//! parsed and checked, and unknown ones under the prefixes clb-ingress owns.

use super::*;

/// TKE annotations of one Ingress, parsed.
#[derive(Debug, Default)]
pub(super) struct TkeAnnotations {
    pub(super) retain: bool,
    /// The redirect code when `auto-rewrite` is on.
    pub(super) auto_rewrite: Option<u16>,
    /// Per-host redirect codes (`auto-rewrite-code` as JSON, `rewriteCodeInfos`).
    pub(super) rewrite_hosts: Vec<(String, u16)>,
    pub(super) weights: Option<RsWeights>,
}

/// A parsed `auto-rewrite-code` annotation: the default code and per-host codes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RewriteCodes {
    pub default: u16,
    pub hosts: Vec<(String, u16)>,
}

fn redirect_code(v: &serde_json::Value, what: &str) -> Result<u16, String> {
    match v.as_u64() {
        Some(c @ (301 | 302 | 307)) => Ok(c as u16),
        _ => Err(format!("{what} {v} is not 301, 302 or 307")),
    }
}

/// `auto-rewrite-code`: a bare code (`307`), or TKE's JSON form
/// `{"defaultRewriteCode": 307, "rewriteCodeInfos": [{"host": "a.com", "rewriteCode": 302}]}`
/// (both keys optional; the default code is 301 when not given). Codes are 301, 302 or 307.
pub fn parse_rewrite_codes(v: &str) -> Result<RewriteCodes, String> {
    let t = v.trim();
    if !t.starts_with('{') {
        return match t.parse::<u16>() {
            Ok(c @ (301 | 302 | 307)) => Ok(RewriteCodes {
                default: c,
                hosts: Vec::new(),
            }),
            _ => Err(format!("{v:?} is not 301, 302 or 307")),
        };
    }
    let obj: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(t).map_err(|e| format!("not a JSON object: {e}"))?;
    let mut out = RewriteCodes {
        default: DEFAULT_REWRITE_CODE,
        hosts: Vec::new(),
    };
    for (k, val) in &obj {
        match k.as_str() {
            "defaultRewriteCode" => out.default = redirect_code(val, "defaultRewriteCode")?,
            "rewriteCodeInfos" => {
                let infos = val.as_array().ok_or("rewriteCodeInfos is not an array")?;
                if infos.len() > MAX_REWRITE_HOSTS {
                    return Err(format!(
                        "rewriteCodeInfos has {} entries (at most {MAX_REWRITE_HOSTS})",
                        infos.len()
                    ));
                }
                for (i, info) in infos.iter().enumerate() {
                    let o = info
                        .as_object()
                        .ok_or_else(|| format!("rewriteCodeInfos[{i}] is not an object"))?;
                    if let Some(extra) = o.keys().find(|k| *k != "host" && *k != "rewriteCode") {
                        return Err(format!("rewriteCodeInfos[{i}] has unknown key {extra:?}"));
                    }
                    let host = o
                        .get("host")
                        .and_then(|h| h.as_str())
                        .filter(|h| !h.is_empty())
                        .ok_or_else(|| format!("rewriteCodeInfos[{i}].host is missing"))?;
                    let code = redirect_code(
                        o.get("rewriteCode").ok_or_else(|| {
                            format!("rewriteCodeInfos[{i}].rewriteCode is missing")
                        })?,
                        &format!("rewriteCodeInfos[{i}].rewriteCode"),
                    )?;
                    if out.hosts.iter().any(|(h, _)| h == host) {
                        return Err(format!("rewriteCodeInfos names {host:?} twice"));
                    }
                    out.hosts.push((host.to_string(), code));
                }
            }
            other => return Err(format!("unknown key {other:?}")),
        }
    }
    Ok(out)
}

/// Per-host codes one `auto-rewrite-code` may list (an Ingress rarely has more hosts).
pub const MAX_REWRITE_HOSTS: usize = 1000;

/// A parsed `lb-rs-weight` annotation.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RsWeights {
    pub default_weight: Option<u32>,
    pub groups: Vec<RsWeightGroup>,
}

/// One group of `lb-rs-weight`: the rules it applies to and the weights of its workloads.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RsWeightGroup {
    pub proto: Option<Protocol>,
    pub host: Option<String>,
    pub path: Option<String>,
    pub stateful_sets: Vec<(String, u32)>,
    /// Deployments cannot be told apart from EndpointSlices alone: refused with a Problem.
    pub deployments: Vec<String>,
}

/// Parse TKE's `ingress.cloud.tencent.com/lb-rs-weight`:
/// `{"defaultWeight": 10, "groups": [{"key": {"proto": "HTTP", "host": "a.com", "path": "/"},
///   "statefulSets": [{"name": "web", "weight": 20}]}]}`.
pub fn parse_rs_weights(v: &str) -> Result<RsWeights, String> {
    let root: serde_json::Value = serde_json::from_str(v).map_err(|e| {
        format!("{v:?} is not JSON like {{\"defaultWeight\": 10, \"groups\": [...]}}: {e}")
    })?;
    let obj = root
        .as_object()
        .ok_or_else(|| format!("{v:?} is not a JSON object"))?;
    let weight = |x: &serde_json::Value, what: &str| -> Result<u32, String> {
        x.as_u64()
            .and_then(|w| u32::try_from(w).ok())
            .filter(|w| *w <= MAX_WEIGHT)
            .ok_or_else(|| format!("{what} {x} is not a weight in 0-{MAX_WEIGHT}"))
    };
    let mut out = RsWeights::default();
    for (k, val) in obj {
        match k.as_str() {
            "defaultWeight" => out.default_weight = Some(weight(val, "defaultWeight")?),
            "groups" => {
                let groups = val
                    .as_array()
                    .ok_or_else(|| "groups is not a list".to_string())?;
                for (gi, g) in groups.iter().enumerate() {
                    let g = g
                        .as_object()
                        .ok_or_else(|| format!("groups[{gi}] is not an object"))?;
                    let mut group = RsWeightGroup::default();
                    for (gk, gv) in g {
                        match gk.as_str() {
                            "key" => {
                                let key = gv
                                    .as_object()
                                    .ok_or_else(|| format!("groups[{gi}].key is not an object"))?;
                                for (kk, kv) in key {
                                    let text = kv.as_str().ok_or_else(|| {
                                        format!("groups[{gi}].key.{kk} is not a string")
                                    })?;
                                    match kk.as_str() {
                                        "proto" => {
                                            group.proto = Some(match text {
                                                "HTTP" => Protocol::Http,
                                                "HTTPS" => Protocol::Https,
                                                other => {
                                                    return Err(format!(
                                                        "groups[{gi}].key.proto {other:?} is not HTTP or HTTPS"
                                                    ));
                                                }
                                            })
                                        }
                                        "host" => group.host = Some(text.to_string()),
                                        "path" => group.path = Some(text.to_string()),
                                        other => {
                                            return Err(format!(
                                                "groups[{gi}].key.{other} is not proto, host or path"
                                            ));
                                        }
                                    }
                                }
                            }
                            "statefulSets" | "deployments" => {
                                let list = gv
                                    .as_array()
                                    .ok_or_else(|| format!("groups[{gi}].{gk} is not a list"))?;
                                for (wi, w) in list.iter().enumerate() {
                                    let name = w
                                        .get("name")
                                        .and_then(|n| n.as_str())
                                        .filter(|n| !n.is_empty())
                                        .ok_or_else(|| {
                                            format!("groups[{gi}].{gk}[{wi}].name is missing")
                                        })?;
                                    let wt = weight(
                                        w.get("weight").unwrap_or(&serde_json::Value::Null),
                                        &format!("groups[{gi}].{gk}[{wi}].weight"),
                                    )?;
                                    if gk == "statefulSets" {
                                        group.stateful_sets.push((name.to_string(), wt));
                                    } else {
                                        group.deployments.push(name.to_string());
                                    }
                                }
                            }
                            other => {
                                return Err(format!(
                                    "groups[{gi}].{other} is not key, statefulSets or deployments"
                                ));
                            }
                        }
                    }
                    out.groups.push(group);
                }
            }
            other => return Err(format!("{other} is not defaultWeight or groups")),
        }
    }
    Ok(out)
}

impl<'i, 'a> StackBuilder<'i, 'a> {
    /// One Warning naming every annotation under our prefixes that clb-ingress does not know.
    pub(super) fn check_unknown_annotations(&mut self, m: &Managed<'a>) {
        let Some(anns) = m.ing.metadata.annotations.as_ref() else {
            return;
        };
        let unknown = |k: &&String| {
            OWN_ANNOTATION_PREFIXES.iter().any(|p| k.starts_with(p))
                && !KNOWN_ANNOTATIONS.contains(&k.as_str())
        };
        if !anns.keys().any(|k| unknown(&k)) {
            return;
        }
        let names: Vec<&str> = anns.keys().filter(unknown).map(String::as_str).collect();
        self.problems.push(Problem {
            object: m.key.clone(),
            field: format!("metadata.annotations[{}]", names[0]),
            reason: Reason::UnknownAnnotation,
            effect: Effect::Degraded,
            message: format!(
                "{} not implemented by clb-ingress and without effect (see docs/annotations.md)",
                if names.len() == 1 {
                    format!("{} is", names[0])
                } else {
                    format!("{} are", names.join(", "))
                }
            ),
        });
    }

    /// Parse TKE's per-Ingress annotations; None if the Ingress must be parked.
    pub(super) fn tke_annotations(&mut self, m: &Managed<'a>) -> Option<TkeAnnotations> {
        let ing = m.ing;
        let field = |a: &str| format!("metadata.annotations[{a}]");
        let mut out = TkeAnnotations::default();
        let mut bad: Option<(&str, String)> = None;
        let parse_bool =
            |a: &'static str, bad: &mut Option<(&str, String)>| match annotation(ing, a) {
                None | Some("false") => false,
                Some("true") => true,
                Some(other) => {
                    *bad = Some((a, format!("{other:?} is not \"true\" or \"false\"")));
                    false
                }
            };
        out.retain = parse_bool(ANN_RETAIN, &mut bad);
        let auto_rewrite = parse_bool(ANN_AUTO_REWRITE, &mut bad);
        if let Some(c) = annotation(ing, ANN_AUTO_REWRITE_CODE) {
            match parse_rewrite_codes(c) {
                Ok(codes) if auto_rewrite => {
                    let hosts: Vec<&str> = ing
                        .spec
                        .iter()
                        .flat_map(|s| s.rules.iter().flatten())
                        .filter_map(|r| r.host.as_deref())
                        .collect();
                    if let Some((h, _)) = codes
                        .hosts
                        .iter()
                        .find(|(h, _)| !hosts.contains(&h.as_str()))
                    {
                        self.problems.push(Problem {
                            object: m.key.clone(),
                            field: field(ANN_AUTO_REWRITE_CODE),
                            reason: Reason::InvalidAnnotation,
                            effect: Effect::Degraded,
                            message: format!("rewriteCodeInfos names {h:?}, which is not a host of this Ingress; it has no effect"),
                        });
                    }
                    out.auto_rewrite = Some(codes.default);
                    out.rewrite_hosts = codes.hosts;
                }
                Ok(_) => self.problems.push(Problem {
                    object: m.key.clone(),
                    field: field(ANN_AUTO_REWRITE_CODE),
                    reason: Reason::InvalidAnnotation,
                    effect: Effect::Degraded,
                    message: format!("has no effect without {ANN_AUTO_REWRITE}: \"true\""),
                }),
                Err(e) => bad = Some((ANN_AUTO_REWRITE_CODE, e)),
            }
        } else if auto_rewrite {
            out.auto_rewrite = Some(DEFAULT_REWRITE_CODE);
        }
        if let Some(v) = annotation(ing, ANN_RS_WEIGHT) {
            match parse_rs_weights(v) {
                Ok(w) => out.weights = Some(w),
                Err(e) => bad = Some((ANN_RS_WEIGHT, e)),
            }
        }
        if let Some(v) = annotation(ing, ANN_MODE)
            && v != "skip"
        {
            self.problems.push(Problem {
                object: m.key.clone(),
                field: field(ANN_MODE),
                reason: Reason::InvalidAnnotation,
                effect: Effect::Degraded,
                message: format!("{v:?} is not a mode clb-ingress knows (only \"skip\"); the Ingress is synced normally"),
            });
        }
        if let Some(subnet) = annotation(ing, ANN_SUBNET_ID) {
            let well_formed = subnet
                .strip_prefix("subnet-")
                .is_some_and(|r| !r.is_empty() && r.bytes().all(|b| b.is_ascii_alphanumeric()));
            let own_clb = matches!(self.id, StackId::Ingress { .. });
            if !well_formed {
                bad = Some((
                    ANN_SUBNET_ID,
                    format!("{subnet:?} is not a subnet id (subnet-xxxxxxxx)"),
                ));
            } else if let LbSource::Existing { id, .. } = &m.source {
                self.problems.push(Problem {
                    object: m.key.clone(),
                    field: field(ANN_SUBNET_ID),
                    reason: Reason::UnsupportedAnnotation,
                    effect: Effect::Degraded,
                    message: format!("ignored: the Ingress uses the existing CLB {id}, whose network cannot change"),
                });
            } else if !own_clb {
                self.problems.push(Problem {
                    object: m.key.clone(),
                    field: field(ANN_SUBNET_ID),
                    reason: Reason::UnsupportedAnnotation,
                    effect: Effect::Degraded,
                    message: "ignored: the class shares one CLB; set create.networkType INTERNAL and create.subnetId in its ClbClassParameters".into(),
                });
            } else if m.params.and_then(|p| p.create.vpc_id.as_ref()).is_none() {
                bad = Some((
                    ANN_SUBNET_ID,
                    "an internal CLB needs a VPC: set create.vpcId in the class's ClbClassParameters".into(),
                ));
            }
        }
        if let Some((a, msg)) = bad {
            self.park(&m.key, field(a), Reason::InvalidAnnotation, msg);
            return None;
        }
        Some(out)
    }

    /// Warnings for the parts of `lb-rs-weight` that cannot be applied.
    pub(super) fn check_weight_groups(
        &mut self,
        m: &Managed<'a>,
        w: &RsWeights,
        used: &[bool],
        mode: TargetMode,
        listeners: &[(Protocol, u16)],
    ) {
        let field = format!("metadata.annotations[{ANN_RS_WEIGHT}]");
        let warn = |problems: &mut Vec<Problem>, message: String| {
            problems.push(Problem {
                object: m.key.clone(),
                field: field.clone(),
                reason: Reason::UnsupportedAnnotation,
                effect: Effect::Degraded,
                message,
            })
        };
        let both = listeners.iter().any(|l| l.0 == Protocol::Http)
            && listeners.iter().any(|l| l.0 == Protocol::Https);
        for (gi, g) in w.groups.iter().enumerate() {
            if !used[gi] {
                warn(
                    &mut self.problems,
                    format!(
                        "groups[{gi}] matches no host and path of this Ingress; it has no effect"
                    ),
                );
            }
            if !g.deployments.is_empty() {
                warn(
                    &mut self.problems,
                    format!(
                        "groups[{gi}].deployments cannot be applied (a Deployment's pods cannot be told from EndpointSlices); those pods get the default weight; use statefulSets or a separate Service"
                    ),
                );
            }
            if !g.stateful_sets.is_empty() && mode == TargetMode::NodePort {
                warn(
                    &mut self.problems,
                    format!(
                        "groups[{gi}].statefulSets need direct access (pod targets); in NodePort mode nodes get the default weight"
                    ),
                );
            }
            if g.proto.is_some() && both {
                warn(
                    &mut self.problems,
                    format!(
                        "groups[{gi}].key.proto cannot select one listener: the weights apply to the path on both HTTP and HTTPS"
                    ),
                );
            }
        }
    }
}

/// Parse TKE's `ingress.cloud.tencent.com/listen-ports`: `[{"HTTP": 80}, {"HTTPS": 443}]`.
pub fn parse_listen_ports(v: &str) -> Result<Vec<(Protocol, u16)>, String> {
    let parsed: Vec<BTreeMap<String, serde_json::Value>> =
        serde_json::from_str(v).map_err(|e| {
            format!("{v:?} is not a JSON list like [{{\"HTTP\": 80}}, {{\"HTTPS\": 443}}]: {e}")
        })?;
    let mut out = Vec::new();
    for entry in parsed {
        for (proto, port) in entry {
            let proto = match proto.as_str() {
                "HTTP" => Protocol::Http,
                "HTTPS" => Protocol::Https,
                other => return Err(format!("protocol {other:?} is not HTTP or HTTPS")),
            };
            let port = port
                .as_u64()
                .and_then(|p| u16::try_from(p).ok())
                .filter(|p| *p > 0)
                .ok_or_else(|| format!("port {port} is not in 1-65535"))?;
            if !out.contains(&(proto, port)) {
                out.push((proto, port));
            }
        }
    }
    if out.is_empty() {
        return Err("no listener given".into());
    }
    Ok(out)
}
