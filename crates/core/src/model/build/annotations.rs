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
    /// `ingress.cloud.tencent.com/certificate`: (host, certificate id).
    pub(super) certificates: Vec<(String, String)>,
    /// `kubernetes.io/ingress.rule-mix: "true"` and its lists.
    pub(super) mix: Option<RuleMix>,
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
    /// The listener port (TKE's `key.port`).
    pub port: Option<u16>,
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
                                    if kk == "port" {
                                        // TKE writes the listener port as a number; a
                                        // string of digits is taken too.
                                        group.port = Some(
                                            string_or_number(kv)
                                                .and_then(|p| p.parse::<u16>().ok())
                                                .filter(|p| *p > 0)
                                                .ok_or_else(|| {
                                                    format!(
                                                        "groups[{gi}].key.port {kv} is not a port in 1-65535"
                                                    )
                                                })?,
                                        );
                                        continue;
                                    }
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
                                                "groups[{gi}].key.{other} is not proto, port, host or path"
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
        for (a, instead) in TKE_REFUSED_ANNOTATIONS {
            if anns.contains_key(a) {
                self.problems.push(Problem {
                    object: m.key.clone(),
                    field: format!("metadata.annotations[{a}]"),
                    reason: Reason::UnsupportedAnnotation,
                    effect: Effect::Degraded,
                    message: format!("TKE's {a} is not applied: {instead}"),
                });
            }
        }
        let unknown = |k: &&String| {
            OWN_ANNOTATION_PREFIXES.iter().any(|p| k.starts_with(p))
                && !KNOWN_ANNOTATIONS.contains(&k.as_str())
                && !TKE_REFUSED_ANNOTATIONS.iter().any(|(a, _)| a == k)
                && !super::settings::is_backend_annotation(k)
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
        if let Some(v) = annotation(ing, ANN_CERTIFICATE) {
            match parse_certificates(v) {
                Ok(c) => out.certificates = c,
                Err(e) => bad = Some((ANN_CERTIFICATE, e)),
            }
        }
        let mix = parse_bool(ANN_RULE_MIX, &mut bad);
        let lists = [ANN_HTTP_RULES, ANN_HTTPS_RULES]
            .map(|a| annotation(ing, a).map(|v| (a, parse_mix_rules(v))));
        if mix {
            let mut rm = RuleMix::default();
            for (i, l) in lists.into_iter().enumerate() {
                match l {
                    Some((_, Ok(entries))) if i == 0 => rm.http = entries,
                    Some((_, Ok(entries))) => rm.https = entries,
                    Some((a, Err(e))) => bad = Some((a, e)),
                    None => {}
                }
            }
            if let Some((i, _)) = rm
                .https
                .iter()
                .enumerate()
                .find(|(_, e)| e.rewrite.is_some())
            {
                bad = Some((
                    ANN_HTTPS_RULES,
                    format!(
                        "[{i}] is a redirect; redirects from HTTPS are not supported (put it in {ANN_HTTP_RULES})"
                    ),
                ));
            }
            out.mix = Some(rm);
        } else if let Some((a, _)) = lists.iter().flatten().next() {
            self.problems.push(Problem {
                object: m.key.clone(),
                field: field(a),
                reason: Reason::InvalidAnnotation,
                effect: Effect::Degraded,
                message: format!("has no effect without {ANN_RULE_MIX}: \"true\" (as on TKE)"),
            });
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
            }
            // Without create.vpcId in the class, the VPC is the subnet's (looked up with VPC
            // DescribeSubnets when the CLB is created).
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
            if g.port.is_some() && listeners.len() > 1 {
                warn(
                    &mut self.problems,
                    format!(
                        "groups[{gi}].key.port cannot select one listener: the weights apply to the path on every listener of the Ingress"
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

/// TKE annotations clb-ingress does not implement, each with what to use instead. An Ingress
/// carrying one gets an `UnsupportedAnnotation` Warning with this text (the Ingress still syncs).
pub const TKE_REFUSED_ANNOTATIONS: [(&str, &str); 17] = [
    (
        "kubernetes.io/ingress.extensiveParameters",
        "CreateLoadBalancer extras are not read per Ingress; set them in the class's ClbClassParameters spec.create (networkType, vpcId, subnetId, projectId, bandwidthMbps, tags), or create the CLB yourself and name it with kubernetes.io/ingress.existLbId",
    ),
    (
        "kubernetes.io/ingress.internetChargeType",
        "the charge type of created CLBs is not chosen per Ingress; create the CLB with the charge type you want and name it with kubernetes.io/ingress.existLbId",
    ),
    (
        "kubernetes.io/ingress.internetMaxBandwidthOut",
        "set the bandwidth of created CLBs with spec.create.bandwidthMbps in the class's ClbClassParameters",
    ),
    (
        "kubernetes.io/ingress.rule-mix-both",
        "not in TKE's annotation reference; with kubernetes.io/ingress.rule-mix, list a rule in both http-rules and https-rules to serve it on both listeners",
    ),
    (
        "ingress.cloud.tencent.com/security-groups",
        "clb-ingress does not bind security groups; bind them to the CLB in the console and name it with kubernetes.io/ingress.existLbId",
    ),
    (
        "ingress.cloud.tencent.com/pass-to-target",
        "clb-ingress does not change the CLB's security-group pass-through; set it on the CLB in the console (existLbId)",
    ),
    (
        "ingress.cloud.tencent.com/deletion-protection",
        "clb-ingress does not set CLB deletion protection; use ingress.cloud.tencent.com/loadbalance-retain to keep a created CLB, or an existing CLB (existLbId), which is never deleted",
    ),
    (
        "ingress.cloud.tencent.com/modification-protection",
        "a CLB with modification protection cannot be changed by any controller; use ingress.cloud.tencent.com/mode: skip to freeze the Ingress's CLB instead",
    ),
    (
        "ingress.cloud.tencent.com/mix-target-prefer",
        "targets are chosen by ingress.cloud.tencent.com/direct-access or the class's targetMode (Direct or NodePort), never mixed",
    ),
    (
        "ingress.cloud.tencent.com/enable-grace-shutdown",
        "drain is set per IngressClass in clb-ingress: drainDelaySeconds in its ClbClassParameters keeps a terminating or removed pod target at weight 0 before deregistering it (Direct mode, docs/zero-downtime.md)",
    ),
    (
        "ingress.cloud.tencent.com/enable-grace-deletion",
        "drain is set per IngressClass in clb-ingress: drainDelaySeconds in its ClbClassParameters keeps a terminating or removed pod target at weight 0 before deregistering it (Direct mode, docs/zero-downtime.md)",
    ),
    (
        "ingress.cloud.tencent.com/enable-group",
        "CLB target groups are not used; targets are bound to each rule",
    ),
    (
        "ingress.cloud.tencent.com/client-token",
        "not needed: clb-ingress finds the CLBs it created by their tags, so a retried creation never makes a second CLB",
    ),
    (
        "ingress.cloud.tencent.com/cross-region-id",
        "cross-region binding is not supported; run clb-ingress in the CLB's region",
    ),
    (
        "ingress.cloud.tencent.com/cross-vpc-id",
        "cross-VPC binding is not supported; create the CLB in the cluster's VPC (ClbClassParameters spec.create.vpcId)",
    ),
    (
        "ingress.cloud.tencent.com/tke-service-config-auto",
        "clb-ingress does not create a TkeServiceConfig for the Ingress; write the settings yourself, in a ClbBackendConfig named by the Service annotation clb-ingress.io/backend-config or the Ingress annotation clb-ingress.io/path-backend-configs (docs/backend-settings.md) or in a TkeServiceConfig named by ingress.cloud.tencent.com/tke-service-config (read with --tke-service-configs)",
    ),
    (
        "ingress.cloud.tencent.com/rewrite-support",
        "read-only on TKE and not written by clb-ingress; every CLB it creates supports redirects",
    ),
];

/// Is this certificate id well formed (letters, digits, `-`)?
fn cert_id_ok(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// Parse `ingress.cloud.tencent.com/certificate`: host -> Tencent Cloud certificate id, as a
/// JSON object `{"a.example.com": "certid"}` or a list `[{"host": "a.example.com",
/// "certId": "certid"}]`. Returns (host, id) pairs in the order given.
pub fn parse_certificates(v: &str) -> Result<Vec<(String, String)>, String> {
    let root: serde_json::Value = serde_json::from_str(v.trim()).map_err(|e| {
        format!("{v:?} is not JSON like {{\"a.example.com\": \"<certificate id>\"}}: {e}")
    })?;
    let mut out: Vec<(String, String)> = Vec::new();
    let mut push = |host: &str, id: &serde_json::Value, what: String| -> Result<(), String> {
        let id = id
            .as_str()
            .map(str::trim)
            .filter(|i| cert_id_ok(i))
            .ok_or_else(|| format!("{what} {id} is not a certificate id"))?;
        if host.is_empty() {
            return Err(format!("{what}: the host is empty"));
        }
        if out.iter().any(|(h, _)| h == host) {
            return Err(format!("host {host:?} is given twice"));
        }
        out.push((host.to_string(), id.to_string()));
        Ok(())
    };
    match &root {
        serde_json::Value::Object(map) => {
            for (host, id) in map {
                push(host, id, format!("{host:?}:"))?;
            }
        }
        serde_json::Value::Array(list) => {
            for (i, e) in list.iter().enumerate() {
                let o = e
                    .as_object()
                    .ok_or_else(|| format!("[{i}] is not an object"))?;
                if let Some(extra) = o.keys().find(|k| *k != "host" && *k != "certId") {
                    return Err(format!("[{i}] has unknown key {extra:?} (host, certId)"));
                }
                let host = o.get("host").and_then(|h| h.as_str()).unwrap_or("");
                let id = o.get("certId").unwrap_or(&serde_json::Value::Null);
                push(host, id, format!("[{i}].certId"))?;
            }
        }
        _ => return Err(format!("{v:?} is neither a JSON object nor a list")),
    }
    if out.is_empty() {
        return Err("no host is given a certificate".into());
    }
    Ok(out)
}

/// A redirect entry of `http-rules` (`"rewrite": {"port": 443, "host": ..., "path": ...}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MixRewrite {
    pub port: u16,
    pub host: Option<String>,
    pub path: Option<String>,
}

/// One entry of `kubernetes.io/ingress.http-rules` / `https-rules`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MixEntry {
    /// None: the rule without host (TKE: the CLB's VIP).
    pub host: Option<String>,
    /// `/` when not given.
    pub path: String,
    pub service: Option<String>,
    /// The Service port, a number or a port name, as given.
    pub port: Option<String>,
    pub rewrite: Option<MixRewrite>,
}

impl MixEntry {
    /// Does this (forwarding) entry describe `spec.rules` host `host`, path `path` to
    /// Service `service` port (`number` or `name`)?
    pub fn matches(
        &self,
        host: Option<&str>,
        path: &str,
        service: Option<&str>,
        number: Option<i32>,
        name: Option<&str>,
    ) -> bool {
        self.rewrite.is_none()
            && self.host.as_deref() == host
            && self.path == path
            && self.service.as_deref().is_none_or(|s| Some(s) == service)
            && self
                .port
                .as_deref()
                .is_none_or(|p| number.is_some_and(|n| p == n.to_string()) || Some(p) == name)
    }
}

/// `kubernetes.io/ingress.rule-mix: "true"` with its two lists.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuleMix {
    pub http: Vec<MixEntry>,
    pub https: Vec<MixEntry>,
}

/// A JSON string or number (TKE accepts both for ports).
fn string_or_number(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
        serde_json::Value::Number(n) => n.as_u64().map(|n| n.to_string()),
        _ => None,
    }
}

/// Parse one of `http-rules` / `https-rules`: a JSON list (on one line or many) of
/// `{"host": "a.com", "path": "/", "backend": {"serviceName": "web", "servicePort": "80"}}`,
/// where `host` may instead be given inside `backend`, `servicePort` may be a number or a port
/// name, `null` entries and a `null` list mean nothing, and an entry of `http-rules` may be a
/// redirect `{"host": ..., "path": ..., "rewrite": {"port": 443, "host": ..., "path": ...}}`.
pub fn parse_mix_rules(v: &str) -> Result<Vec<MixEntry>, String> {
    let t = v.trim();
    if t.is_empty() || t == "null" {
        return Ok(Vec::new());
    }
    let list: Vec<serde_json::Value> = serde_json::from_str(t).map_err(|e| {
        format!("not a JSON list like [{{\"host\": \"a.com\", \"path\": \"/\", \"backend\": {{\"serviceName\": \"web\", \"servicePort\": \"80\"}}}}]: {e}")
    })?;
    let text = |o: &serde_json::Map<String, serde_json::Value>, k: &str, what: &str| match o.get(k)
    {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(s)) if s.is_empty() => Ok(None),
        Some(serde_json::Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(format!("{what}.{k} {other} is not a string")),
    };
    let mut out = Vec::with_capacity(list.len());
    for (i, e) in list.iter().enumerate() {
        if e.is_null() {
            continue;
        }
        let o = e
            .as_object()
            .ok_or_else(|| format!("[{i}] is not an object"))?;
        let at = format!("[{i}]");
        if let Some(extra) = o
            .keys()
            .find(|k| !["host", "path", "backend", "rewrite"].contains(&k.as_str()))
        {
            return Err(format!(
                "{at} has unknown key {extra:?} (host, path, backend, rewrite)"
            ));
        }
        let mut entry = MixEntry {
            host: text(o, "host", &at)?,
            path: text(o, "path", &at)?.unwrap_or_else(|| "/".into()),
            ..Default::default()
        };
        match o.get("backend") {
            None | Some(serde_json::Value::Null) => {}
            Some(b) => {
                let b = b
                    .as_object()
                    .ok_or_else(|| format!("{at}.backend is not an object"))?;
                let bat = format!("{at}.backend");
                if let Some(extra) = b
                    .keys()
                    .find(|k| !["serviceName", "servicePort", "host"].contains(&k.as_str()))
                {
                    return Err(format!(
                        "{bat} has unknown key {extra:?} (serviceName, servicePort, host)"
                    ));
                }
                entry.service = text(b, "serviceName", &bat)?;
                entry.port = match b.get("servicePort") {
                    None | Some(serde_json::Value::Null) => None,
                    Some(p) => Some(string_or_number(p).ok_or_else(|| {
                        format!("{bat}.servicePort {p} is not a port number or name")
                    })?),
                };
                if let Some(h) = text(b, "host", &bat)? {
                    match &entry.host {
                        Some(eh) if *eh != h => {
                            return Err(format!("{at}.host {eh:?} and {bat}.host {h:?} differ"));
                        }
                        _ => entry.host = Some(h),
                    }
                }
            }
        }
        match o.get("rewrite") {
            None | Some(serde_json::Value::Null) => {}
            Some(r) => {
                let r = r
                    .as_object()
                    .ok_or_else(|| format!("{at}.rewrite is not an object"))?;
                let rat = format!("{at}.rewrite");
                if let Some(extra) = r
                    .keys()
                    .find(|k| !["port", "host", "path"].contains(&k.as_str()))
                {
                    return Err(format!(
                        "{rat} has unknown key {extra:?} (port, host, path)"
                    ));
                }
                let port = r
                    .get("port")
                    .and_then(string_or_number)
                    .and_then(|p| p.parse::<u16>().ok())
                    .filter(|p| *p > 0)
                    .ok_or_else(|| format!("{rat}.port is missing or not in 1-65535"))?;
                entry.rewrite = Some(MixRewrite {
                    port,
                    host: text(r, "host", &rat)?,
                    path: text(r, "path", &rat)?,
                });
            }
        }
        if entry.rewrite.is_some() && entry.service.is_some() {
            return Err(format!("{at} has both backend and rewrite"));
        }
        out.push(entry);
    }
    Ok(out)
}
