//! Executing a plan: each `Change` in order, one method per change kind, resolving the ids
//! of objects created by earlier steps (listeners, rules, certificates) as it goes.

use super::*;
use crate::model::{Protocol, TargetAddr};
use crate::plan::{CertRef, Change, ListenerRef, Plan, RuleRef, RuleTarget};
use std::collections::{BTreeMap, HashMap};

impl<A: ClbApi> Deployer<A> {
    /// Apply a plan in order. Returns the CLB id (created by the plan, or given).
    pub async fn execute(
        &self,
        lb_id: Option<String>,
        plan: &Plan,
        stack_hash: &str,
    ) -> Result<Option<String>, DeployError> {
        let mut ex = Execution {
            d: self,
            lb_id,
            listeners: HashMap::new(),
            rules: HashMap::new(),
            certs: HashMap::new(),
            stack_hash,
        };
        for change in &plan.changes {
            ex.apply(change).await?;
        }
        Ok(ex.lb_id)
    }
}

fn target_fields(t: &crate::model::Target) -> (Option<String>, Option<String>) {
    match &t.addr {
        TargetAddr::Instance(i) => (Some(i.clone()), None),
        TargetAddr::Ip(ip) => (None, Some(ip.clone())),
    }
}

/// State of one plan execution: ids created by earlier steps.
struct Execution<'a, A: ClbApi> {
    d: &'a Deployer<A>,
    lb_id: Option<String>,
    /// (protocol, port) -> listener id, for listeners created by this plan.
    listeners: HashMap<(Protocol, u16), String>,
    /// (listener id, domain, url) -> location id, for rules created by this plan.
    rules: HashMap<(String, String, String), String>,
    /// certificate fingerprint -> uploaded certificate id.
    certs: HashMap<String, String>,
    stack_hash: &'a str,
}

impl<A: ClbApi> Execution<'_, A> {
    fn lb(&self, step: &str) -> Result<String, DeployError> {
        self.lb_id.clone().ok_or_else(|| DeployError::Unresolved {
            step: step.to_string(),
            ref_: "the CLB".into(),
        })
    }

    fn listener(&self, l: &ListenerRef, step: &str) -> Result<String, DeployError> {
        match l {
            ListenerRef::Id(id) => Ok(id.to_string()),
            ListenerRef::New { protocol, port } => self
                .listeners
                .get(&(*protocol, *port))
                .cloned()
                .ok_or_else(|| DeployError::Unresolved {
                    step: step.to_string(),
                    ref_: format!("listener {} {port}", protocol.as_str()),
                }),
        }
    }

    fn rule(&self, listener: &str, r: &RuleRef, step: &str) -> Result<String, DeployError> {
        match r {
            RuleRef::Id(id) => Ok(id.to_string()),
            RuleRef::New { domain, url } => self
                .rules
                .get(&(listener.to_string(), domain.to_string(), url.clone()))
                .cloned()
                .ok_or_else(|| DeployError::Unresolved {
                    step: step.to_string(),
                    ref_: format!("rule {domain} {url}"),
                }),
        }
    }

    fn cert(&self, c: &CertRef, step: &str) -> Result<CertificateInput, DeployError> {
        let id = match c {
            CertRef::Id(id) => id.to_string(),
            CertRef::Uploaded { fingerprint } => {
                self.certs
                    .get(fingerprint)
                    .cloned()
                    .ok_or_else(|| DeployError::Unresolved {
                        step: step.to_string(),
                        ref_: format!("certificate {}", plan::cert_name(fingerprint)),
                    })?
            }
        };
        Ok(CertificateInput {
            ssl_mode: Some("UNIDIRECTIONAL".into()),
            cert_id: Some(id),
            ..Default::default()
        })
    }

    fn batch_targets(
        &self,
        ts: &[RuleTarget],
        step: &str,
    ) -> Result<Vec<BatchTarget>, DeployError> {
        ts.iter()
            .map(|t| {
                let listener_id = self.listener(&t.listener, step)?;
                let location_id = self.rule(&listener_id, &t.rule, step)?;
                let (instance_id, eni_ip) = target_fields(&t.target);
                Ok(BatchTarget {
                    listener_id,
                    port: i64::from(t.target.port),
                    instance_id,
                    eni_ip,
                    weight: Some(i64::from(t.target.weight)),
                    location_id: Some(location_id),
                    tag: None,
                })
            })
            .collect()
    }

    async fn apply(&mut self, change: &Change) -> Result<(), DeployError> {
        let step = change.kind();
        debug!(%change, "applying");
        match change {
            Change::CreateLoadBalancer {
                name,
                settings,
                tags,
            } => self.create_load_balancer(step, name, settings, tags).await,
            Change::RenameLoadBalancer { id, name } => {
                self.rename_load_balancer(step, id, name).await
            }
            Change::DeleteRewrites {
                source_listener,
                target_listener,
                rewrites,
            } => {
                self.delete_rewrites(step, source_listener, target_listener, rewrites)
                    .await
            }
            Change::CreateRewrites {
                source_listener,
                target_listener,
                rewrites,
            } => {
                self.create_rewrites(step, source_listener, target_listener, rewrites)
                    .await
            }
            Change::UploadCertificate {
                fingerprint,
                name,
                secret,
                cert_pem,
                key_pem,
            } => match key_pem.expose() {
                Some(key) => {
                    self.upload_certificate(step, fingerprint, name, cert_pem, key)
                        .await
                }
                // The key was dropped from memory after an earlier upload, and the certificate
                // is gone from the account since: the Secret must be read again.
                None => Err(DeployError::KeyDropped {
                    secret: secret.clone(),
                    fingerprint: fingerprint.clone(),
                }),
            },
            Change::CreateListener {
                protocol,
                port,
                name,
                sni,
            } => {
                self.create_listener(step, *protocol, *port, name, *sni)
                    .await
            }
            Change::EnableSni { listener, .. } => self.enable_sni(step, listener).await,
            Change::CreateRules { listener, rules } => {
                self.create_rules(step, listener, rules).await
            }
            Change::ModifyRuleUrl {
                listener,
                location_id,
                to,
                ..
            } => self.modify_rule_url(step, listener, location_id, to).await,
            Change::ModifyDomain {
                listener,
                domain,
                certificate,
                make_default,
                http2,
                quic,
            } => {
                self.modify_domain(
                    step,
                    listener,
                    domain,
                    certificate.as_ref(),
                    *make_default,
                    (*http2, *quic),
                )
                .await
            }
            Change::ModifyRuleSettings {
                listener,
                location_id,
                settings,
                ..
            } => {
                self.modify_rule_settings(step, listener, location_id, settings)
                    .await
            }
            Change::RegisterTargets { targets } => self.bind_targets(step, targets, true).await,
            Change::DeregisterTargets { targets } => self.bind_targets(step, targets, false).await,
            Change::ModifyTargetWeights { targets } => {
                self.modify_target_weights(step, targets).await
            }
            Change::DeleteRules { listener, rules } => {
                self.delete_rules(step, listener, rules).await
            }
            Change::DeleteListeners { listeners } => self.delete_listeners(step, listeners).await,
            Change::DeleteLoadBalancer { id } => self.delete_load_balancer(id).await,
        }
    }

    /// `Change::CreateLoadBalancer`.
    async fn create_load_balancer(
        &mut self,
        step: &str,
        name: &str,
        settings: &crate::crd::CreateSettings,
        tags: &[(String, String)],
    ) -> Result<(), DeployError> {
        let d = self.d;
        let internal = settings.network_type == crate::crd::NetworkType::Internal;
        // An internal CLB needs its VPC: TKE takes the cluster's, clb-ingress the class's
        // `create.vpcId`, else the VPC of the subnet (VPC DescribeSubnets).
        let mut vpc_id = settings.vpc_id.clone();
        if internal
            && vpc_id.is_none()
            && let Some(subnet) = &settings.subnet_id
        {
            let found = d
                .client
                .describe_subnets(std::slice::from_ref(subnet))
                .await
                .map_err(cloud(step))?;
            vpc_id = Some(
                found
                    .into_iter()
                    .find(|s| s.subnet_id == *subnet && !s.vpc_id.is_empty())
                    .map(|s| s.vpc_id)
                    .ok_or_else(|| DeployError::SubnetNotFound {
                        step: step.into(),
                        subnet: subnet.clone(),
                    })?,
            );
        }
        let req = CreateLoadBalancerRequest {
            load_balancer_type: if internal { "INTERNAL" } else { "OPEN" }.into(),
            forward: Some(1),
            load_balancer_name: Some(name.to_string()),
            vpc_id,
            subnet_id: settings.subnet_id.clone(),
            project_id: settings.project_id,
            internet_accessible: (!internal).then(|| InternetAccessible {
                internet_max_bandwidth_out: Some(
                    settings.bandwidth_mbps.unwrap_or(DEFAULT_BANDWIDTH_MBPS),
                ),
                ..Default::default()
            }),
            tags: tags
                .iter()
                .map(|(k, v)| (k, v))
                .chain(settings.tags.iter())
                .map(|(k, v)| TagInfo {
                    tag_key: k.clone(),
                    tag_value: v.clone(),
                })
                .collect(),
            // Unique per attempt: a token is remembered by CLB after the CLB it made is
            // deleted, so a fixed token would hand back a dead id. Crash safety comes
            // from finding the CLB by its stack tag (and deleting duplicates) instead.
            client_token: Some(format!(
                "clb-ingress-{}-{}",
                self.stack_hash,
                &uuid::Uuid::new_v4().simple().to_string()[..12]
            )),
            ..Default::default()
        };
        let ids = d
            .client
            .create_load_balancer_and_wait(&req)
            .await
            .map_err(cloud(step))?;
        self.lb_id = Some(ids.into_iter().next().ok_or(DeployError::Missing {
            step: step.into(),
            what: "a LoadBalancerId".into(),
        })?);
        Ok(())
    }

    /// `Change::RenameLoadBalancer`.
    async fn rename_load_balancer(
        &mut self,
        step: &str,
        id: &str,
        name: &str,
    ) -> Result<(), DeployError> {
        let d = self.d;
        let reply = d
            .client
            .modify_load_balancer_attributes(&ModifyLoadBalancerAttributesRequest {
                load_balancer_id: id.to_string(),
                load_balancer_name: Some(name.to_string()),
                ..Default::default()
            })
            .await
            .map_err(cloud(format!("{step} {id}")))?;
        d.wait(&reply.request_id, step).await?;
        Ok(())
    }

    /// `Change::DeleteRewrites`.
    async fn delete_rewrites(
        &mut self,
        step: &str,
        source_listener: &str,
        target_listener: &str,
        rewrites: &[(String, String, String, String)],
    ) -> Result<(), DeployError> {
        let d = self.d;
        let reply = d
            .client
            .delete_rewrite(&DeleteRewriteRequest {
                load_balancer_id: self.lb(step)?,
                source_listener_id: source_listener.to_string(),
                target_listener_id: target_listener.to_string(),
                rewrite_infos: rewrites
                    .iter()
                    .map(|(src, dst, _, _)| RewriteLocationMap {
                        source_location_id: src.clone(),
                        target_location_id: dst.clone(),
                        ..Default::default()
                    })
                    .collect(),
            })
            .await;
        match reply {
            // Already gone (with its rule, or by an earlier interrupted run).
            Err(e) if e.category() == crate::clb::ErrorCategory::NotFound => {}
            other => {
                let reply = other.map_err(cloud(step))?;
                d.wait(&reply.request_id, step).await?;
            }
        }
        Ok(())
    }

    /// `Change::CreateRewrites`.
    async fn create_rewrites(
        &mut self,
        step: &str,
        source_listener: &ListenerRef,
        target_listener: &ListenerRef,
        rewrites: &[plan::NewRewrite],
    ) -> Result<(), DeployError> {
        let d = self.d;
        let src = self.listener(source_listener, step)?;
        let dst = self.listener(target_listener, step)?;
        let mut infos = Vec::with_capacity(rewrites.len());
        for r in rewrites {
            infos.push(RewriteLocationMap {
                source_location_id: self.rule(&src, &r.source, step)?,
                target_location_id: self.rule(&dst, &r.target, step)?,
                rewrite_code: Some(i64::from(r.code)),
                take_url: Some(true),
                source_domain: Some(r.domain.clone()),
            });
        }
        let reply = d
            .client
            .manual_rewrite(&ManualRewriteRequest {
                load_balancer_id: self.lb(step)?,
                source_listener_id: src,
                target_listener_id: dst,
                rewrite_infos: infos,
            })
            .await
            .map_err(cloud(step))?;
        d.wait(&reply.request_id, step).await?;
        Ok(())
    }

    /// `Change::UploadCertificate`.
    async fn upload_certificate(
        &mut self,
        step: &str,
        fingerprint: &str,
        name: &str,
        cert_pem: &str,
        key_pem: &str,
    ) -> Result<(), DeployError> {
        let d = self.d;
        let id = d
            .client
            .upload_certificate(&UploadCertificateRequest {
                certificate_public_key: cert_pem.to_string(),
                certificate_private_key: Some(key_pem.to_string()),
                certificate_type: Some("SVR".into()),
                alias: Some(d.cert_alias(name)),
                ..Default::default()
            })
            .await
            .map_err(cloud(format!("{step} {name}")))?;
        self.certs.insert(fingerprint.to_string(), id);
        Ok(())
    }

    /// `Change::CreateListener`.
    async fn create_listener(
        &mut self,
        step: &str,
        protocol: Protocol,
        port: u16,
        name: &str,
        sni: bool,
    ) -> Result<(), DeployError> {
        let d = self.d;
        let lb = self.lb(step)?;
        let reply = d
            .client
            .create_listener(&CreateListenerRequest {
                load_balancer_id: lb,
                ports: vec![i64::from(port)],
                protocol: protocol.as_str().into(),
                listener_names: vec![name.to_string()],
                sni_switch: (protocol == Protocol::Https).then_some(i64::from(sni)),
                ..Default::default()
            })
            .await
            .map_err(cloud(format!("{step} {} {port}", protocol.as_str())))?;
        let id = reply
            .data
            .listener_ids
            .into_iter()
            .next()
            .ok_or(DeployError::Missing {
                step: step.into(),
                what: "a ListenerId".into(),
            })?;
        d.wait(&reply.request_id, step).await?;
        self.listeners.insert((protocol, port), id);
        Ok(())
    }

    /// `Change::EnableSni`.
    async fn enable_sni(&mut self, step: &str, listener: &str) -> Result<(), DeployError> {
        let d = self.d;
        let reply = d
            .client
            .modify_listener(&ModifyListenerRequest {
                load_balancer_id: self.lb(step)?,
                listener_id: listener.to_string(),
                sni_switch: Some(1),
                ..Default::default()
            })
            .await
            .map_err(cloud(step))?;
        d.wait(&reply.request_id, step).await?;
        Ok(())
    }

    /// `Change::CreateRules`.
    async fn create_rules(
        &mut self,
        step: &str,
        listener: &ListenerRef,
        rules: &[plan::NewRule],
    ) -> Result<(), DeployError> {
        let d = self.d;
        let listener_id = self.listener(listener, step)?;
        let mut inputs = Vec::with_capacity(rules.len());
        for r in rules {
            inputs.push(RuleInput {
                url: r.url.clone(),
                domain: Some(r.domain.clone()),
                default_server: r.default_server.then_some(true),
                certificate: match &r.certificate {
                    Some(c) => Some(self.cert(c, step)?),
                    None => None,
                },
                // A regex domain's health checks need a literal host (CLB refuses a regex).
                health_check: crate::model::translate::health_check_domain(&r.domain).map(|host| {
                    HealthCheck {
                        health_switch: Some(1),
                        http_check_domain: Some(host),
                        ..Default::default()
                    }
                }),
                ..Default::default()
            });
            if let Some(input) = inputs.last_mut() {
                super::settings::apply_to_rule_input(&r.settings, input);
            }
        }
        let reply = d
            .client
            .create_rule(&CreateRuleRequest {
                load_balancer_id: self.lb(step)?,
                listener_id: listener_id.clone(),
                rules: inputs,
            })
            .await
            .map_err(cloud(format!("{step} on {listener_id}")))?;
        if reply.data.location_ids.len() != rules.len() {
            return Err(DeployError::Missing {
                step: step.into(),
                what: format!("{} LocationIds", rules.len()),
            });
        }
        d.wait(&reply.request_id, step).await?;
        for (r, loc) in rules.iter().zip(reply.data.location_ids) {
            self.rules
                .insert((listener_id.clone(), r.domain.clone(), r.url.clone()), loc);
        }
        Ok(())
    }

    /// `Change::ModifyRuleUrl`.
    async fn modify_rule_url(
        &mut self,
        step: &str,
        listener: &str,
        location_id: &str,
        to: &str,
    ) -> Result<(), DeployError> {
        let d = self.d;
        let reply = d
            .client
            .modify_rule(&ModifyRuleRequest {
                load_balancer_id: self.lb(step)?,
                listener_id: listener.to_string(),
                location_id: location_id.to_string(),
                url: Some(to.to_string()),
                ..Default::default()
            })
            .await
            .map_err(cloud(step))?;
        d.wait(&reply.request_id, step).await?;
        Ok(())
    }

    /// `Change::ModifyRuleSettings`: one `ModifyRule`.
    async fn modify_rule_settings(
        &mut self,
        step: &str,
        listener: &str,
        location_id: &str,
        settings: &crate::model::RuleSettings,
    ) -> Result<(), DeployError> {
        let d = self.d;
        let mut req = ModifyRuleRequest {
            load_balancer_id: self.lb(step)?,
            listener_id: listener.to_string(),
            location_id: location_id.to_string(),
            ..Default::default()
        };
        super::settings::apply_to_modify_rule(settings, &mut req);
        let reply = d.client.modify_rule(&req).await.map_err(cloud(step))?;
        d.wait(&reply.request_id, step).await?;
        Ok(())
    }

    /// `Change::ModifyDomain`.
    async fn modify_domain(
        &mut self,
        step: &str,
        listener: &ListenerRef,
        domain: &str,
        certificate: Option<&CertRef>,
        make_default: bool,
        (http2, quic): (Option<bool>, Option<bool>),
    ) -> Result<(), DeployError> {
        let d = self.d;
        let certificate = match certificate {
            Some(c) => Some(self.cert(c, step)?),
            None => None,
        };
        let reply = d
            .client
            .modify_domain_attributes(&ModifyDomainAttributesRequest {
                load_balancer_id: self.lb(step)?,
                listener_id: self.listener(listener, step)?,
                domain: domain.to_string(),
                certificate,
                default_server: make_default.then_some(true),
                http2,
                quic,
                ..Default::default()
            })
            .await
            .map_err(cloud(format!("{step} {domain}")))?;
        d.wait(&reply.request_id, step).await?;
        Ok(())
    }

    /// `Change::RegisterTargets` (`register`) and `Change::DeregisterTargets`.
    async fn bind_targets(
        &mut self,
        step: &str,
        targets: &[RuleTarget],
        register: bool,
    ) -> Result<(), DeployError> {
        // One call's worth at a time: a new shard CLB registers thousands of targets, and
        // building every request field for all of them at once held ~1 MB per reconcile
        // (32 at once) while the calls waited for the rate limit.
        let lb = self.lb(step)?;
        let client = &self.d.client;
        for chunk in targets.chunks(crate::clb::actions::BATCH_TARGETS_MAX) {
            let req = BatchTargetsRequest {
                load_balancer_id: lb.clone(),
                targets: self.batch_targets(chunk, step)?,
            };
            let result = if register {
                client.batch_register_targets(&req).await
            } else {
                client.batch_deregister_targets(&req).await
            };
            result.map_err(cloud(step))?;
        }
        Ok(())
    }

    /// `Change::ModifyTargetWeights`.
    async fn modify_target_weights(
        &mut self,
        step: &str,
        targets: &[RuleTarget],
    ) -> Result<(), DeployError> {
        let d = self.d;
        let mut per_rule: BTreeMap<(String, String), Vec<Target>> = BTreeMap::new();
        for bt in self.batch_targets(targets, step)? {
            per_rule
                .entry((
                    bt.listener_id.clone(),
                    bt.location_id.clone().unwrap_or_default(),
                ))
                .or_default()
                .push(Target {
                    port: bt.port,
                    instance_id: bt.instance_id,
                    eni_ip: bt.eni_ip,
                    weight: bt.weight,
                    ..Default::default()
                });
        }
        let req = BatchModifyTargetWeightRequest {
            load_balancer_id: self.lb(step)?,
            modify_list: per_rule
                .into_iter()
                .map(|((listener_id, location_id), targets)| RsWeightRule {
                    listener_id,
                    targets,
                    location_id: Some(location_id),
                    ..Default::default()
                })
                .collect(),
        };
        d.client
            .batch_modify_target_weight(&req)
            .await
            .map_err(cloud(step))?;
        Ok(())
    }

    /// `Change::DeleteRules`.
    async fn delete_rules(
        &mut self,
        step: &str,
        listener: &str,
        rules: &[(String, String, String)],
    ) -> Result<(), DeployError> {
        let d = self.d;
        let reply = d
            .client
            .delete_rule(&DeleteRuleRequest {
                load_balancer_id: self.lb(step)?,
                listener_id: listener.to_string(),
                location_ids: rules.iter().map(|r| r.0.clone()).collect(),
                ..Default::default()
            })
            .await
            .map_err(cloud(format!("{step} on {listener}")))?;
        d.wait(&reply.request_id, step).await?;
        Ok(())
    }

    /// `Change::DeleteListeners`.
    async fn delete_listeners(
        &mut self,
        step: &str,
        listeners: &[(String, Protocol, u16)],
    ) -> Result<(), DeployError> {
        let d = self.d;
        d.client
            .delete_load_balancer_listeners(&DeleteLoadBalancerListenersRequest {
                load_balancer_id: self.lb(step)?,
                listener_ids: listeners.iter().map(|l| l.0.clone()).collect(),
            })
            .await
            .map_err(cloud(step))?;
        Ok(())
    }

    /// `Change::DeleteLoadBalancer`.
    async fn delete_load_balancer(&mut self, id: &str) -> Result<(), DeployError> {
        self.d.delete_lbs(&[id.to_string()]).await
    }
}
