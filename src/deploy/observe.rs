//! Observing a CLB: one listing of its listeners, rules, targets (and our uploaded
//! certificates) turned into the `ObservedLb` the plan diffs against.

use super::*;
use crate::model::{Protocol, TargetAddr};
use crate::plan::{ObservedListener, ObservedRule};
use std::collections::{BTreeMap, HashMap};

impl<A: ClbApi> Deployer<A> {
    /// Every listener of CLB `lb_id`, with its rules (one DescribeListeners).
    pub(super) async fn listeners(&self, lb_id: &str) -> Result<Vec<Listener>, DeployError> {
        self.client
            .describe_listeners(&DescribeListenersRequest {
                load_balancer_id: lb_id.to_string(),
                ..Default::default()
            })
            .await
            .map_err(cloud(format!("DescribeListeners {lb_id}")))
    }

    /// Read a CLB's listeners, rules, targets (and, if asked, our uploaded certificates).
    #[instrument(level = "debug", skip_all, fields(lb = %lb.load_balancer_id))]
    pub async fn observe(
        &self,
        lb: &LoadBalancer,
        with_certificates: bool,
    ) -> Result<ObservedLb, DeployError> {
        let lb_id = &lb.load_balancer_id;
        let listeners = self.listeners(lb_id).await?;
        let l7: Vec<&Listener> = listeners
            .iter()
            .filter(|l| l.protocol == "HTTP" || l.protocol == "HTTPS")
            .collect();
        let mut targets: HashMap<String, Vec<crate::model::Target>> = HashMap::new();
        let with_rules: Vec<String> = l7
            .iter()
            .filter(|l| !l.rules.is_empty())
            .map(|l| l.listener_id.clone())
            .collect();
        if !with_rules.is_empty() {
            let backends = self
                .client
                .describe_targets(&DescribeTargetsRequest {
                    load_balancer_id: lb_id.clone(),
                    listener_ids: with_rules,
                    ..Default::default()
                })
                .await
                .map_err(cloud(format!("DescribeTargets {lb_id}")))?;
            for lb_backend in backends {
                for rule in lb_backend.rules {
                    let ts = rule.targets.iter().filter_map(backend_to_target).collect();
                    targets.insert(rule.location_id, ts);
                }
            }
        }
        check_listing(lb_id, &l7)?;
        let mut out_listeners = Vec::new();
        for l in l7 {
            let protocol = if l.protocol == "HTTPS" {
                Protocol::Https
            } else {
                Protocol::Http
            };
            let rules = l
                .rules
                .iter()
                .map(|r| ObservedRule {
                    location_id: r.location_id.clone(),
                    domain: r.domain.clone(),
                    url: r.url.clone(),
                    default_server: r.default_server,
                    certificate_id: r.certificate.as_ref().and_then(|c| c.cert_id.clone()),
                    targets: targets.remove(&r.location_id).unwrap_or_default(),
                    rewrite: r.rewrite_target.as_ref().and_then(|w| {
                        Some(plan::ObservedRewrite {
                            target_listener: w.target_listener_id.clone()?,
                            target_location: w.target_location_id.clone()?,
                            code: u16::try_from(w.rewrite_code.unwrap_or(302)).unwrap_or(302),
                        })
                    }),
                    settings: super::settings::observed_settings(r),
                })
                .collect();
            out_listeners.push(ObservedListener {
                id: l.listener_id.clone(),
                name: l.listener_name.clone(),
                protocol,
                port: u16::try_from(l.port).unwrap_or_default(),
                sni: l.sni_switch == 1,
                rules,
            });
        }
        let mut certificates = BTreeMap::new();
        if with_certificates {
            // This cluster's uploads only, under the plan's names.
            for c in self.own_certificates().await? {
                certificates.entry(c.name).or_insert(c.id);
            }
        }
        Ok(ObservedLb {
            id: lb_id.clone(),
            name: lb.load_balancer_name.clone(),
            vips: lb.load_balancer_vips.clone(),
            domain: lb
                .load_balancer_domain
                .clone()
                .or_else(|| lb.domain.clone()),
            tags: lb
                .tags
                .iter()
                .map(|t| (t.tag_key.clone(), t.tag_value.clone()))
                .collect(),
            listeners: out_listeners,
            certificates,
        })
    }
}

fn backend_to_target(b: &Backend) -> Option<crate::model::Target> {
    let addr = match (&b.instance_id, b.backend_type.to_ascii_uppercase().as_str()) {
        (Some(id), "CVM") => TargetAddr::Instance(id.clone()),
        _ => TargetAddr::Ip(b.private_ip_addresses.first()?.clone()),
    };
    Some(crate::model::Target {
        addr,
        port: u16::try_from(b.port).ok()?,
        weight: u32::try_from(b.weight).unwrap_or(0),
    })
}

/// Refuse a listing that cannot be right: listener or rule ids missing or repeated, two
/// listeners on one port, a port outside 1-65535. Planning on it could delete or re-point the
/// wrong object.
fn check_listing(lb_id: &str, listeners: &[&Listener]) -> Result<(), DeployError> {
    let malformed = |what: String| DeployError::Malformed {
        step: format!("DescribeListeners {lb_id}"),
        what,
    };
    let mut ids = std::collections::HashSet::new();
    let mut ports = std::collections::HashSet::new();
    let mut rules = std::collections::HashSet::new();
    for l in listeners {
        if l.listener_id.is_empty() || !ids.insert(l.listener_id.as_str()) {
            return Err(malformed(format!(
                "listener id {:?} is empty or repeated",
                l.listener_id
            )));
        }
        if !(1..=65535).contains(&l.port) || !ports.insert(l.port) {
            return Err(malformed(format!(
                "listener {} has port {}, out of range or repeated",
                l.listener_id, l.port
            )));
        }
        for r in &l.rules {
            if r.location_id.is_empty() || !rules.insert(r.location_id.as_str()) {
                return Err(malformed(format!(
                    "rule id {:?} on listener {} is empty or repeated",
                    r.location_id, l.listener_id
                )));
            }
        }
    }
    Ok(())
}
