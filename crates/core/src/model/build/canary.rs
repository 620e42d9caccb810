//! Canary across Services (AWS Load Balancer Controller's convention): a path whose backend is
//! `service: {name: <action>, port: {name: use-annotation}}` forwards to the target groups of
//! the Ingress annotation `clb-ingress.io/actions.<action>`, each Service getting its weight's
//! share of the requests whatever its number of targets.
//!
//! Rounding: CLB weights are integers 0-100 per target. The ideal weight of a target is its
//! Service's share divided among the Service's targets (by their own weights); the largest
//! ideal is scaled to every top weight from 100 down to 1, each target rounded to the nearest
//! integer, and the scaling whose Service shares are closest to the configured ones (largest
//! deviation first, then the larger top) is kept. A Service whose share rounds to 0 on every
//! target keeps weight 1 on one of them; a Service with a small share over many targets may
//! so leave some of its targets at weight 0 (the share is kept, not the spread).

use super::*;

/// Ingress annotation prefix of a forward action; the rest of the key is the action's name.
pub const ANN_ACTIONS_PREFIX: &str = "clb-ingress.io/actions.";
/// The port name that points a path backend at its action annotation.
pub const USE_ANNOTATION: &str = "use-annotation";
/// Largest action annotation read (longer ones are refused, not parsed).
pub const MAX_ACTION_BYTES: usize = 8 * 1024;
/// Most target groups in one action.
pub const MAX_TARGET_GROUPS: usize = 10;
/// A target group's weight is 0-100 (0: the Service gets no new requests).
pub const MAX_GROUP_WEIGHT: u32 = 100;

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ActionJson {
    #[serde(rename = "type")]
    type_: String,
    #[serde(default)]
    forward_config: Option<ForwardJson>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ForwardJson {
    target_groups: Vec<TargetGroupJson>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct TargetGroupJson {
    #[serde(default)]
    service_name: Option<String>,
    #[serde(default)]
    service_port: Option<serde_json::Value>,
    #[serde(default)]
    weight: Option<serde_json::Value>,
}

/// One Service of a forward action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetGroup {
    pub service: String,
    /// A port number, or a port name.
    pub port: k8s_openapi::apimachinery::pkg::util::intstr::IntOrString,
    pub weight: u32,
}

/// Parse a `clb-ingress.io/actions.<name>` annotation: a forward action over 1-10 Services.
pub fn parse_action(v: &str) -> Result<Vec<TargetGroup>, String> {
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    if v.len() > MAX_ACTION_BYTES {
        return Err(format!(
            "{} bytes; at most {MAX_ACTION_BYTES} are read",
            v.len()
        ));
    }
    let a: ActionJson = serde_json::from_str(v).map_err(|e| {
        format!("not {{\"type\":\"forward\",\"forwardConfig\":{{\"targetGroups\":[...]}}}}: {e}")
    })?;
    if a.type_ != "forward" {
        return Err(format!(
            "type {:?} is not supported; only \"forward\" is",
            a.type_
        ));
    }
    let Some(f) = a.forward_config else {
        return Err("forwardConfig is missing".into());
    };
    if f.target_groups.is_empty() || f.target_groups.len() > MAX_TARGET_GROUPS {
        return Err(format!(
            "forwardConfig.targetGroups has {} entries; 1-{MAX_TARGET_GROUPS} are allowed",
            f.target_groups.len()
        ));
    }
    let mut out: Vec<TargetGroup> = Vec::with_capacity(f.target_groups.len());
    for (i, g) in f.target_groups.into_iter().enumerate() {
        let at = format!("forwardConfig.targetGroups[{i}]");
        let service = match g.service_name {
            Some(s) if !s.is_empty() && !s.contains('/') && s.len() <= 253 => s,
            Some(s) => {
                return Err(format!(
                    "{at}.serviceName {s:?} is not a Service name of this namespace"
                ));
            }
            None => return Err(format!("{at}.serviceName is missing")),
        };
        let port = match g.service_port {
            Some(serde_json::Value::Number(n)) => n
                .as_u64()
                .filter(|p| (1..=65535).contains(p))
                .map(|p| IntOrString::Int(p as i32)),
            Some(serde_json::Value::String(s)) => match s.parse::<u32>() {
                Ok(p) => (1..=65535)
                    .contains(&p)
                    .then_some(IntOrString::Int(p as i32)),
                Err(_) => (!s.is_empty() && s.len() <= 63 && s != USE_ANNOTATION)
                    .then_some(IntOrString::String(s)),
            },
            _ => None,
        };
        let Some(port) = port else {
            return Err(format!(
                "{at}.servicePort must be a port number (1-65535) or a port name"
            ));
        };
        let weight = match g.weight {
            None => return Err(format!("{at}.weight is missing")),
            Some(w) => match w.as_u64() {
                Some(w) if w <= u64::from(MAX_GROUP_WEIGHT) => w as u32,
                _ => {
                    return Err(format!(
                        "{at}.weight {w} must be an integer 0-{MAX_GROUP_WEIGHT}"
                    ));
                }
            },
        };
        if out.iter().any(|o| o.service == service && o.port == port) {
            return Err(format!("{at} names Service {service} port {port:?} twice"));
        }
        out.push(TargetGroup {
            service,
            port,
            weight,
        });
    }
    if out.iter().all(|g| g.weight == 0) {
        return Err("the weights of forwardConfig.targetGroups add up to 0".into());
    }
    Ok(out)
}

/// Integer CLB weights (0-100) for the targets of each group so that group `i` gets
/// `weights[i] / sum` of the requests. `groups[i]` = (group weight, its targets' own weights).
/// Groups without targets are left out of the sum (their share goes to the others).
pub fn split_weights(groups: &[(u32, Vec<u32>)]) -> Vec<Vec<u32>> {
    let live = |g: &(u32, Vec<u32>)| g.1.iter().any(|w| *w > 0);
    let total: f64 = groups
        .iter()
        .filter(|g| live(g))
        .map(|g| f64::from(g.0))
        .sum();
    if total == 0.0 {
        return groups.iter().map(|g| vec![0; g.1.len()]).collect();
    }
    // Ideal fraction of all requests for each target.
    let ideal: Vec<Vec<f64>> = groups
        .iter()
        .map(|(w, ts)| {
            let own: f64 = ts.iter().map(|t| f64::from(*t)).sum();
            ts.iter()
                .map(|t| {
                    if own == 0.0 {
                        0.0
                    } else {
                        f64::from(*w) / total * f64::from(*t) / own
                    }
                })
                .collect()
        })
        .collect();
    let max = ideal.iter().flatten().copied().fold(0.0, f64::max);
    let mut best: Option<(f64, Vec<Vec<u32>>)> = None;
    for top in (1..=MAX_WEIGHT).rev() {
        let scale = f64::from(top) / max;
        let weights: Vec<Vec<u32>> = ideal
            .iter()
            .map(|ts| {
                let mut ws: Vec<u32> = ts
                    .iter()
                    .map(|x| ((x * scale).round() as u32).min(MAX_WEIGHT))
                    .collect();
                // A Service with a share keeps at least one target with weight 1.
                if ws.iter().all(|w| *w == 0)
                    && let Some(i) = ts
                        .iter()
                        .enumerate()
                        .filter(|(_, x)| **x > 0.0)
                        .max_by(|a, b| a.1.total_cmp(b.1))
                        .map(|(i, _)| i)
                {
                    ws[i] = 1;
                }
                ws
            })
            .collect();
        let sum: u32 = weights.iter().flatten().sum();
        let err = groups
            .iter()
            .zip(&weights)
            .filter(|(g, _)| live(g))
            .map(|(g, ws)| {
                let got = f64::from(ws.iter().sum::<u32>()) / f64::from(sum.max(1));
                (got - f64::from(g.0) / total).abs()
            })
            .fold(0.0, f64::max);
        if best.as_ref().is_none_or(|(e, _)| err < *e - 1e-12) {
            best = Some((err, weights));
        }
    }
    best.map(|b| b.1).unwrap_or_default()
}

impl<'i, 'a> StackBuilder<'i, 'a> {
    /// The slot of a `use-annotation` backend: the action's Services' targets with weights
    /// that give each Service its share. A slot without targets (503) and a Warning when the
    /// action cannot be used as written; never a partial split.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn canary_slot(
        &mut self,
        m: &Managed<'a>,
        action: &str,
        mode: TargetMode,
        field: BackendField,
        over: &settings::PathSettings,
    ) -> Option<usize> {
        let ns = m.key.namespace.clone().unwrap_or_default();
        let key = format!("{ANN_ACTIONS_PREFIX}{action}");
        let ann_field = format!("metadata.annotations[{key}]");
        let unserved = |field: String, reason: Reason, message: String| Problem {
            object: m.key.clone(),
            field,
            reason,
            effect: Effect::PathUnserved,
            message: format!("{message}; the path serves no target"),
        };
        let groups = match annotation(m.ing, &key) {
            None => Err(unserved(
                field.at(".service.port.name"),
                Reason::InvalidAnnotation,
                format!("port {USE_ANNOTATION} needs the annotation {key}, which is missing"),
            )),
            Some(v) => parse_action(v)
                .map_err(|e| unserved(ann_field.clone(), Reason::InvalidAnnotation, e)),
        };
        let resolved = groups.and_then(|groups| {
            let mut parts = Vec::with_capacity(groups.len());
            for (gi, g) in groups.iter().enumerate() {
                use k8s_openapi::api::networking::v1::{IngressServiceBackend, ServiceBackendPort};
                use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
                let backend = IngressBackend {
                    resource: None,
                    service: Some(IngressServiceBackend {
                        name: g.service.clone(),
                        port: Some(match &g.port {
                            IntOrString::Int(n) => ServiceBackendPort {
                                number: Some(*n),
                                name: None,
                            },
                            IntOrString::String(s) => ServiceBackendPort {
                                number: None,
                                name: Some(s.clone()),
                            },
                        }),
                    }),
                };
                match self.index.resolve_backend(
                    &ns,
                    &backend,
                    mode,
                    Weights::DEFAULT,
                    field,
                    &m.key,
                ) {
                    Ok(r) => parts.push((g.weight, r, backend)),
                    Err(p) => {
                        return Err(unserved(
                            ann_field.clone(),
                            p.reason,
                            format!("forwardConfig.targetGroups[{gi}]: {}", p.message),
                        ));
                    }
                }
            }
            Ok(parts)
        });
        let parts = match resolved {
            Ok(p) => p,
            Err(p) => {
                self.problems.push(p);
                self.slots.push(None);
                return Some(self.slots.len() - 1);
            }
        };
        let input: Vec<(u32, Vec<u32>)> = parts
            .iter()
            .map(|(w, r, _)| (*w, r.targets.iter().map(|t| t.weight).collect()))
            .collect();
        let weights = split_weights(&input);
        let mut merged: BTreeMap<(TargetAddr, u16), u32> = BTreeMap::new();
        for ((_, r, _), ws) in parts.iter().zip(&weights) {
            for (t, w) in r.targets.iter().zip(ws) {
                let e = merged.entry((t.addr.clone(), t.port)).or_default();
                *e = (*e + w).min(MAX_WEIGHT);
            }
        }
        let targets: Vec<Target> = merged
            .into_iter()
            .map(|((addr, port), weight)| Target { addr, port, weight })
            .collect();
        let limit = self.index.snap.limits.targets_per_rule;
        if targets.len() > limit {
            self.park(
                &m.key,
                ann_field,
                Reason::TooManyTargets,
                format!(
                    "action {action} has {} targets; a CLB rule takes at most {limit}",
                    targets.len()
                ),
            );
            return None;
        }
        // Settings: the path's own, else those of the first target group's Service port.
        let base = self.port_settings(&ns, &parts[0].2, &m.key, &field.at(""));
        let mut r = Resolved {
            backend: BackendRef {
                namespace: ns.clone(),
                service: format!("{ANN_ACTIONS_PREFIX}{action}"),
                port: USE_ANNOTATION.into(),
                mode,
            },
            targets,
            settings: base,
            path_settings: settings::PathSettings::default(),
        };
        r.apply_path_settings(over);
        self.slots.push(Some(r));
        Some(self.slots.len() - 1)
    }
}

/// The Services a `use-annotation` backend of `ing` forwards to, from its action annotations
/// (for watches and endpoint bookkeeping); malformed actions name none.
pub fn action_services(ing: &Ingress) -> Vec<String> {
    let Some(anns) = ing.metadata.annotations.as_ref() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (k, v) in anns.range(ANN_ACTIONS_PREFIX.to_string()..) {
        if !k.starts_with(ANN_ACTIONS_PREFIX) {
            break;
        }
        if let Ok(groups) = parse_action(v) {
            out.extend(groups.into_iter().map(|g| g.service));
        }
    }
    out.sort();
    out.dedup();
    out
}

/// The action name of a `use-annotation` backend.
pub fn action_of(b: &IngressBackend) -> Option<&str> {
    let s = b.service.as_ref()?;
    (s.port.as_ref()?.name.as_deref()? == USE_ANNOTATION).then_some(s.name.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn share(ws: &[Vec<u32>]) -> Vec<f64> {
        let sum: u32 = ws.iter().flatten().sum();
        ws.iter()
            .map(|g| f64::from(g.iter().sum::<u32>()) / f64::from(sum))
            .collect()
    }

    #[test]
    fn each_service_gets_its_weight_whatever_its_pod_count() {
        // 90/10 over 7 pods and 1 pod.
        let ws = split_weights(&[(90, vec![10; 7]), (10, vec![10; 1])]);
        let s = share(&ws);
        assert!((s[0] - 0.9).abs() < 0.005, "{ws:?} {s:?}");
        assert!(ws.iter().flatten().all(|w| (1..=100).contains(w)), "{ws:?}");
    }

    #[test]
    fn a_tiny_share_over_many_pods_keeps_its_share_on_fewer_pods() {
        let ws = split_weights(&[(99, vec![10; 1]), (1, vec![10; 50])]);
        assert!(ws[1].iter().sum::<u32>() >= 1, "{ws:?}");
        let s = share(&ws);
        assert!((s[1] - 0.01).abs() < 0.001, "{s:?}");
    }

    #[test]
    fn shares_stay_within_half_a_point_for_common_splits() {
        for (a, b) in [(90, 10), (95, 5), (99, 1), (50, 50), (75, 25), (1, 99)] {
            for (na, nb) in [(1, 1), (3, 1), (10, 2), (7, 13), (40, 40)] {
                let ws = split_weights(&[(a, vec![10; na]), (b, vec![10; nb])]);
                let s = share(&ws);
                let want = f64::from(a) / 100.0;
                assert!(
                    (s[0] - want).abs() <= 0.005,
                    "{a}/{b} over {na}/{nb} pods: {ws:?} gives {s:?}"
                );
            }
        }
    }

    #[test]
    fn a_service_without_targets_leaves_its_share_to_the_others() {
        let ws = split_weights(&[(80, vec![]), (20, vec![10, 10])]);
        assert_eq!(ws[0], Vec::<u32>::new());
        assert!(ws[1].iter().all(|w| *w > 0));
    }

    #[test]
    fn weight_zero_gives_a_service_no_requests() {
        let ws = split_weights(&[(100, vec![10, 10]), (0, vec![10])]);
        assert_eq!(ws[1], vec![0]);
        assert_eq!(ws[0], vec![100, 100]);
    }

    #[test]
    fn the_issue_example_parses() {
        let g = parse_action(r#"{"type":"forward","forwardConfig":{"targetGroups":[{"serviceName":"web","servicePort":"80","weight":90},{"serviceName":"web-v2","servicePort":"80","weight":10}]}}"#).unwrap();
        assert_eq!(g.len(), 2);
        assert_eq!(g[1].service, "web-v2");
        assert_eq!(g[1].weight, 10);
    }

    #[test]
    fn hostile_actions_are_refused_with_the_reason() {
        let cases = [
            (
                r#"{"type":"forward","forwardConfig":{"targetGroups":[{"serviceName":"a","servicePort":"80","weight":0}]}}"#,
                "add up to 0",
            ),
            (
                r#"{"type":"forward","forwardConfig":{"targetGroups":[{"serviceName":"a","servicePort":"80","weight":101}]}}"#,
                "0-100",
            ),
            (
                r#"{"type":"forward","forwardConfig":{"targetGroups":[{"serviceName":"a","servicePort":"80","weight":-1}]}}"#,
                "0-100",
            ),
            (
                r#"{"type":"forward","forwardConfig":{"targetGroups":[{"servicePort":"80","weight":1}]}}"#,
                "serviceName is missing",
            ),
            (
                r#"{"type":"forward","forwardConfig":{"targetGroups":[{"serviceName":"a","servicePort":"0","weight":1}]}}"#,
                "servicePort",
            ),
            (
                r#"{"type":"forward","forwardConfig":{"targetGroups":[]}}"#,
                "1-10",
            ),
            (r#"{"type":"redirect"}"#, "only \"forward\""),
            (
                r#"{"type":"forward","forwardConfig":{"targetGroups":[{"serviceName":"a","servicePort":"80","weight":1,"extra":1}]}}"#,
                "unknown field",
            ),
            (
                r#"{"type":"forward","forwardConfig":{"targetGroups":[{"serviceName":"a","servicePort":"80","weight":1},{"serviceName":"a","servicePort":80,"weight":1}]}}"#,
                "twice",
            ),
            ("[1,2", "not {"),
        ];
        for (v, want) in cases {
            let e = parse_action(v).unwrap_err();
            assert!(e.contains(want), "{v}: {e}");
        }
        let huge = format!(
            r#"{{"type":"forward","forwardConfig":{{"targetGroups":[{}]}}}}"#,
            vec![r#"{"serviceName":"a","servicePort":"80","weight":1}"#; 400].join(",")
        );
        assert!(parse_action(&huge).unwrap_err().contains("bytes"));
    }
}
