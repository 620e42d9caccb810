//! `clb-ingress preflight`: check, against a real account (or the emulator), every assumption
//! about CLB that the Ingress translation relies on, on one temporary CLB made for the purpose.
//!
//! It creates one tagged, pay-as-you-go CLB with an HTTP and an HTTPS listener, makes the
//! rules our translation makes (exact `=` URLs, `/p/` prefixes, single-label regex domains with
//! an explicit health-check domain, per-domain SNI certificates on regex domains, the catch-all
//! default domain and DefaultServer switching, target weights), reads each back and compares,
//! then deletes everything it made: also after a failure or Ctrl-C, and idempotently by its tag
//! and names (a run killed hard is cleaned up by the next run). It never touches anything else:
//! clean-up only deletes CLBs that carry the preflight tag *and* the preflight name prefix, and
//! certificates with the preflight alias prefix.

use super::cloud::CloudArgs;
use crate::clb::ClbClient;
use crate::clb::types::*;
use crate::model::translate::CATCH_ALL_DOMAIN;
use serde::Serialize;
use std::time::Duration;

/// Tag key on everything preflight creates (its value is the run id).
pub const PREFLIGHT_TAG: &str = "clb-ingress.io/preflight";
/// Name and alias prefix of what preflight creates.
pub const PREFLIGHT_PREFIX: &str = "clb-ingress-preflight-";
/// A self-signed certificate for `*.preflight.clb-ingress.invalid` (a reserved name) and its
/// key, made for preflight only: public test material, not a secret.
const CERT_PEM: &str = include_str!("preflight/preflight.crt");
const KEY_PEM: &str = include_str!("preflight/preflight.key");

/// The host names preflight routes (under the reserved `.invalid` top-level domain).
const HOST: &str = "app.preflight.clb-ingress.invalid";
const REGEX_DOMAIN: &str = r"~^[^.]+\.preflight\.clb-ingress\.invalid$";
const HEALTH_DOMAIN: &str = "health.preflight.clb-ingress.invalid";

#[derive(Debug, Clone, clap::Args)]
pub struct PreflightArgs {
    /// VPC of the temporary CLB (default: the account's default VPC).
    #[arg(long)]
    pub vpc_id: Option<String>,
    /// An IP address in that VPC (an ENI or CVM private IP) to check target weights with;
    /// without it that check is skipped.
    #[arg(long)]
    pub target_ip: Option<String>,
    /// Output: a table, or JSON.
    #[arg(short = 'o', long = "output", value_enum, default_value = "table")]
    pub output: super::plan::OutputFormat,
    #[command(flatten)]
    pub cloud: CloudArgs,
}

/// The verdict on one assumption.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Verdict {
    Pass,
    Fail,
    Skip,
}

impl Verdict {
    fn as_str(self) -> &'static str {
        match self {
            Self::Pass => "PASS",
            Self::Fail => "FAIL",
            Self::Skip => "SKIP",
        }
    }
}

/// One row of the report.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub assumption: &'static str,
    pub verdict: Verdict,
    /// What was seen: the API's code and message on failure, or what was read back.
    pub detail: String,
}

/// What the checks share: the client, the run id, what was made so far.
struct Run {
    clb: ClbClient,
    run_id: String,
    lb: Option<String>,
    http: Option<String>,
    https: Option<String>,
    cert: Option<String>,
    checks: Vec<Check>,
}

type Step = Result<String, String>;

fn api_error(e: &crate::clb::ClbError) -> String {
    match (e.code(), e.request_id()) {
        (Some(code), Some(id)) => format!("{code}: {e} (RequestId {id})"),
        _ => e.to_string(),
    }
}

impl Run {
    fn record(&mut self, name: &'static str, assumption: &'static str, r: Option<Step>) {
        let (verdict, detail) = match r {
            Some(Ok(d)) => (Verdict::Pass, d),
            Some(Err(d)) => (Verdict::Fail, d),
            None => (Verdict::Skip, "an earlier step failed".to_string()),
        };
        self.checks.push(Check {
            name,
            assumption,
            verdict,
            detail,
        });
    }

    async fn wait(&self, request_id: &str) -> Result<(), String> {
        self.clb
            .wait_task(request_id)
            .await
            .map(|_| ())
            .map_err(|e| api_error(&e))
    }

    async fn listeners(&self) -> Result<Vec<Listener>, String> {
        let lb = self.lb.clone().ok_or("no CLB")?;
        self.clb
            .describe_listeners(&DescribeListenersRequest {
                load_balancer_id: lb,
                ..Default::default()
            })
            .await
            .map_err(|e| api_error(&e))
    }

    async fn rule(&self, listener: &str, domain: &str, url: &str) -> Result<RuleOutput, String> {
        self.listeners()
            .await?
            .into_iter()
            .filter(|l| l.listener_id == listener)
            .flat_map(|l| l.rules)
            .find(|r| r.domain == domain && r.url == url)
            .ok_or_else(|| format!("DescribeListeners does not show the rule {domain} {url}"))
    }

    async fn create_rule(&self, listener: &str, rule: RuleInput) -> Result<String, String> {
        let lb = self.lb.clone().ok_or("no CLB")?;
        let reply = self
            .clb
            .create_rule(&CreateRuleRequest {
                load_balancer_id: lb,
                listener_id: listener.to_string(),
                rules: vec![rule],
            })
            .await
            .map_err(|e| api_error(&e))?;
        self.wait(&reply.request_id).await?;
        reply
            .data
            .location_ids
            .first()
            .cloned()
            .ok_or_else(|| "CreateRule returned no LocationId".into())
    }

    /// A rule is created as given and read back unchanged.
    async fn rule_round_trip(&self, listener: &str, rule: RuleInput) -> Step {
        let (domain, url) = (rule.domain.clone().unwrap_or_default(), rule.url.clone());
        self.create_rule(listener, rule).await?;
        let back = self.rule(listener, &domain, &url).await?;
        Ok(format!(
            "read back: domain {} url {}",
            back.domain, back.url
        ))
    }

    async fn create_clb(&mut self, vpc: Option<String>) -> Step {
        let name = format!("{PREFLIGHT_PREFIX}{}", self.run_id);
        let ids = self
            .clb
            .create_load_balancer_and_wait(&CreateLoadBalancerRequest {
                load_balancer_type: "OPEN".into(),
                forward: Some(1),
                load_balancer_name: Some(name.clone()),
                vpc_id: vpc,
                lb_charge_type: Some("POSTPAID_BY_HOUR".into()),
                internet_accessible: Some(InternetAccessible {
                    internet_charge_type: Some("TRAFFIC_POSTPAID_BY_HOUR".into()),
                    internet_max_bandwidth_out: Some(1),
                    ..Default::default()
                }),
                tags: vec![TagInfo {
                    tag_key: PREFLIGHT_TAG.into(),
                    tag_value: self.run_id.clone(),
                }],
                client_token: Some(name),
                ..Default::default()
            })
            .await
            .map_err(|e| api_error(&e))?;
        let [id] = ids.as_slice() else {
            return Err(format!("expected one CLB id, got {ids:?}"));
        };
        self.lb = Some(id.clone());
        Ok(format!("created {id}"))
    }

    async fn create_listeners(&mut self) -> Step {
        let lb = self.lb.clone().ok_or("no CLB")?;
        let mut made = Vec::new();
        for (protocol, port, sni) in [("HTTP", 80, None), ("HTTPS", 443, Some(1))] {
            let reply = self
                .clb
                .create_listener(&CreateListenerRequest {
                    load_balancer_id: lb.clone(),
                    ports: vec![port],
                    protocol: protocol.into(),
                    listener_names: vec![format!("{PREFLIGHT_PREFIX}{}", protocol.to_lowercase())],
                    sni_switch: sni,
                    ..Default::default()
                })
                .await
                .map_err(|e| api_error(&e))?;
            self.wait(&reply.request_id).await?;
            let id = reply.data.listener_ids.first().cloned().unwrap_or_default();
            made.push(format!("{protocol}:{port} {id}"));
            if protocol == "HTTP" {
                self.http = Some(id);
            } else {
                self.https = Some(id);
            }
        }
        Ok(made.join(", "))
    }

    async fn upload_certificate(&mut self) -> Step {
        let id = self
            .clb
            .upload_certificate(&UploadCertificateRequest {
                certificate_public_key: CERT_PEM.into(),
                certificate_private_key: Some(KEY_PEM.into()),
                certificate_type: Some("SVR".into()),
                alias: Some(format!("{PREFLIGHT_PREFIX}{}", self.run_id)),
                ..Default::default()
            })
            .await
            .map_err(|e| api_error(&e))?;
        self.cert = Some(id.clone());
        Ok(format!("uploaded {id}"))
    }

    /// Our catch-all is the listener's default domain, and the default can be moved to
    /// another domain and back.
    async fn default_server(&self) -> Step {
        let (lb, http) = (
            self.lb.clone().ok_or("no CLB")?,
            self.http.clone().ok_or("no listener")?,
        );
        let default_of = |ls: Vec<Listener>| {
            ls.into_iter()
                .filter(|l| l.listener_id == http)
                .flat_map(|l| l.rules)
                .filter(|r| r.default_server)
                .map(|r| r.domain)
                .collect::<std::collections::BTreeSet<_>>()
        };
        let now = default_of(self.listeners().await?);
        if now.len() != 1 || !now.contains(CATCH_ALL_DOMAIN) {
            return Err(format!(
                "the catch-all created with DefaultServer is not the only default: {now:?}"
            ));
        }
        for domain in [HOST, CATCH_ALL_DOMAIN] {
            let reply = self
                .clb
                .modify_domain_attributes(&ModifyDomainAttributesRequest {
                    load_balancer_id: lb.clone(),
                    listener_id: http.clone(),
                    domain: domain.into(),
                    default_server: Some(true),
                    ..Default::default()
                })
                .await
                .map_err(|e| api_error(&e))?;
            self.wait(&reply.request_id).await?;
            let now = default_of(self.listeners().await?);
            if now.len() != 1 || !now.contains(domain) {
                return Err(format!(
                    "after making {domain} the default, the defaults are {now:?}"
                ));
            }
        }
        Ok(format!(
            "{CATCH_ALL_DOMAIN} default, moved to {HOST} and back"
        ))
    }

    async fn weights(&self, ip: &str) -> Step {
        let (lb, http) = (
            self.lb.clone().ok_or("no CLB")?,
            self.http.clone().ok_or("no listener")?,
        );
        let rule = self.rule(&http, HOST, "=/exact").await?;
        for weight in [0, 37] {
            self.clb
                .register_targets(&RegisterTargetsRequest {
                    load_balancer_id: lb.clone(),
                    listener_id: http.clone(),
                    location_id: Some(rule.location_id.clone()),
                    targets: vec![Target {
                        port: 8000 + weight,
                        eni_ip: Some(ip.to_string()),
                        weight: Some(weight),
                        ..Default::default()
                    }],
                    ..Default::default()
                })
                .await
                .map_err(|e| api_error(&e))?;
        }
        let back = self
            .clb
            .describe_targets(&DescribeTargetsRequest {
                load_balancer_id: lb,
                listener_ids: vec![http],
                ..Default::default()
            })
            .await
            .map_err(|e| api_error(&e))?;
        let mut seen: Vec<(i64, i64)> = back
            .iter()
            .flat_map(|l| &l.rules)
            .filter(|r| r.location_id == rule.location_id)
            .flat_map(|r| &r.targets)
            .map(|t| (t.port, t.weight))
            .collect();
        seen.sort();
        if seen == [(8000, 0), (8037, 37)] {
            Ok("weights 0 and 37 read back".into())
        } else {
            Err(format!("registered weights 0 and 37, read back {seen:?}"))
        }
    }

    async fn quota(&self) -> Step {
        let q = self.clb.describe_quota().await.map_err(|e| api_error(&e))?;
        let find = |id: &str| q.iter().find(|x| x.quota_id == id).map(|x| x.quota_limit);
        let wanted = [
            "TOTAL_OPEN_CLB_QUOTA",
            "TOTAL_LISTENER_QUOTA",
            "TOTAL_LISTENER_RULE_QUOTA",
            "TOTAL_TARGET_BIND_QUOTA",
        ];
        let got: Vec<String> = wanted
            .iter()
            .map(|id| match find(id) {
                Some(n) => format!("{id}={n}"),
                None => format!("{id}=?"),
            })
            .collect();
        if wanted.iter().all(|id| find(id).is_some()) {
            Ok(got.join(" "))
        } else {
            Err(format!("DescribeQuota lacks quotas: {}", got.join(" ")))
        }
    }
}

/// Delete what preflight runs made: CLBs with the preflight tag and name prefix, certificates
/// with the alias prefix. Safe to run any number of times.
pub async fn clean_up(clb: &ClbClient) -> Step {
    let lbs = clb
        .describe_load_balancers(&DescribeLoadBalancersRequest {
            filters: vec![Filter {
                name: "tag-key".into(),
                values: vec![PREFLIGHT_TAG.into()],
            }],
            ..Default::default()
        })
        .await
        .map_err(|e| api_error(&e))?;
    let ours: Vec<String> = lbs
        .into_iter()
        .filter(|lb| {
            lb.load_balancer_name.starts_with(PREFLIGHT_PREFIX)
                && lb.tags.iter().any(|t| t.tag_key == PREFLIGHT_TAG)
        })
        .map(|lb| lb.load_balancer_id)
        .collect();
    if !ours.is_empty() {
        let replies = clb
            .delete_load_balancers(&DeleteLoadBalancerRequest {
                load_balancer_ids: ours.clone(),
                ..Default::default()
            })
            .await
            .map_err(|e| api_error(&e))?;
        for r in replies {
            clb.wait_task(&r.request_id)
                .await
                .map_err(|e| api_error(&e))?;
        }
    }
    let certs = clb
        .describe_certificates(&DescribeCertificatesRequest {
            search_key: Some(PREFLIGHT_PREFIX.into()),
            ..Default::default()
        })
        .await
        .map_err(|e| api_error(&e))?;
    let mut deleted_certs = 0;
    for c in certs
        .iter()
        .filter(|c| c.alias.starts_with(PREFLIGHT_PREFIX))
    {
        if clb
            .delete_certificate(&c.certificate_id)
            .await
            .map_err(|e| api_error(&e))?
        {
            deleted_certs += 1;
        }
    }
    Ok(format!(
        "deleted {} CLB(s) {:?} and {deleted_certs} certificate(s)",
        ours.len(),
        ours
    ))
}

/// Run every check, in order; a check whose prerequisite failed is skipped.
async fn checks(run: &mut Run, args: &PreflightArgs) {
    let quota = run.quota().await;
    run.record(
        "quota",
        "DescribeQuota reports the CLB, listener, rule and target quotas",
        Some(quota),
    );
    let clb = run.create_clb(args.vpc_id.clone()).await;
    let have_lb = clb.is_ok();
    run.record(
        "create-clb",
        "a tagged pay-as-you-go layer-7 CLB can be created",
        Some(clb),
    );
    let listeners = if have_lb {
        Some(run.create_listeners().await)
    } else {
        None
    };
    let have_listeners = matches!(listeners, Some(Ok(_)));
    run.record(
        "listeners",
        "an HTTP listener and an HTTPS listener with SNI can be created",
        listeners,
    );
    let http = run.http.clone().unwrap_or_default();
    let https = run.https.clone().unwrap_or_default();
    let when = |ok: bool| ok.then_some(());
    // The rules our translation makes, each created and read back. The catch-all goes first,
    // created as the listener's default domain.
    let rule = |domain: &str, url: &str| RuleInput {
        domain: Some(domain.into()),
        url: url.into(),
        ..Default::default()
    };
    let rule_checks: [(&'static str, &'static str, RuleInput); 4] = [
        (
            "catch-all-rule",
            "the catch-all domain is accepted and created as the default domain",
            RuleInput {
                default_server: Some(true),
                ..rule(CATCH_ALL_DOMAIN, "=/.clb-ingress/no-route")
            },
        ),
        (
            "exact-url",
            "`=/path` rules (Exact paths) are accepted and read back unchanged",
            rule(HOST, "=/exact"),
        ),
        (
            "prefix-url",
            "`/p/` rules (Prefix paths) are accepted and read back unchanged",
            rule(HOST, "/p/"),
        ),
        (
            "regex-domain",
            "single-label wildcard hosts as regex domains `~^[^.]+\\.suffix$`, with an explicit health-check domain",
            RuleInput {
                health_check: Some(HealthCheck {
                    health_switch: Some(1),
                    http_check_domain: Some(HEALTH_DOMAIN.into()),
                    http_check_path: Some("/".into()),
                    ..Default::default()
                }),
                ..rule(REGEX_DOMAIN, "/")
            },
        ),
    ];
    let mut passed = std::collections::BTreeSet::new();
    for (name, assumption, input) in rule_checks {
        let r = match when(have_listeners) {
            Some(()) => Some(run.rule_round_trip(&http, input).await),
            None => None,
        };
        if matches!(r, Some(Ok(_))) {
            passed.insert(name);
        }
        run.record(name, assumption, r);
    }
    let (have_catch_all, have_exact) = (
        passed.contains("catch-all-rule"),
        passed.contains("exact-url"),
    );
    let r = match when(have_catch_all && have_exact) {
        Some(()) => Some(run.default_server().await),
        None => None,
    };
    run.record(
        "default-domain",
        "the catch-all stays the only default domain, and DefaultServer can be moved and moved back",
        r,
    );
    let cert = match when(have_listeners) {
        Some(()) => Some(run.upload_certificate().await),
        None => None,
    };
    let have_cert = matches!(cert, Some(Ok(_)));
    run.record(
        "upload-certificate",
        "a PEM certificate and key can be uploaded to the SSL service",
        cert,
    );
    let r = match when(have_cert) {
        Some(()) => {
            let cert_id = run.cert.clone().unwrap_or_default();
            let made = run
                .create_rule(
                    &https,
                    RuleInput {
                        domain: Some(REGEX_DOMAIN.into()),
                        url: "/".into(),
                        certificate: Some(CertificateInput {
                            ssl_mode: Some("UNIDIRECTIONAL".into()),
                            cert_id: Some(cert_id.clone()),
                            ..Default::default()
                        }),
                        health_check: Some(HealthCheck {
                            health_switch: Some(1),
                            http_check_domain: Some(HEALTH_DOMAIN.into()),
                            ..Default::default()
                        }),
                        ..Default::default()
                    },
                )
                .await;
            Some(match made {
                Err(e) => Err(e),
                Ok(_) => match run.rule(&https, REGEX_DOMAIN, "/").await {
                    Ok(rule) => {
                        let got = rule.certificate.and_then(|c| c.cert_id);
                        if got.as_deref() == Some(cert_id.as_str()) {
                            Ok(format!("certificate {cert_id} on {REGEX_DOMAIN}"))
                        } else {
                            Err(format!("the rule reads back certificate {got:?}"))
                        }
                    }
                    Err(e) => Err(e),
                },
            })
        }
        None => None,
    };
    run.record(
        "sni-regex-certificate",
        "an SNI listener takes a per-domain certificate on a regex domain",
        r,
    );
    let r = match (&args.target_ip, have_exact) {
        (Some(ip), true) => Some(run.weights(ip).await),
        (None, _) => {
            run.checks.push(Check {
                name: "target-weights",
                assumption: "target weights (0 and others) are kept as registered",
                verdict: Verdict::Skip,
                detail: "give --target-ip (an IP in the CLB's VPC) to check".into(),
            });
            return;
        }
        (Some(_), false) => None,
    };
    run.record(
        "target-weights",
        "target weights (0 and others) are kept as registered",
        r,
    );
}

/// Run preflight; the exit code is 1 when an assumption failed or the clean-up did not finish.
pub fn run(args: PreflightArgs) -> anyhow::Result<i32> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let clb = args.cloud.client()?;
        let checks = preflight(&clb, &args).await;
        match args.output {
            super::plan::OutputFormat::Json => {
                println!("{}", serde_json::to_string_pretty(&checks)?)
            }
            _ => print!("{}", table(&checks)),
        }
        Ok(i32::from(checks.iter().any(|c| c.verdict == Verdict::Fail)))
    })
}

/// Clean up after earlier runs, run the checks (stopped by Ctrl-C), clean up again.
pub async fn preflight(clb: &ClbClient, args: &PreflightArgs) -> Vec<Check> {
    let mut early = Vec::new();
    if let Err(e) = clean_up(clb).await {
        early.push(Check {
            name: "clean-up-before",
            assumption: "what earlier preflight runs left is deleted",
            verdict: Verdict::Fail,
            detail: e,
        });
    }
    let mut run = Run {
        clb: clb.clone(),
        run_id: uuid::Uuid::new_v4().simple().to_string()[..12].to_string(),
        lb: None,
        http: None,
        https: None,
        cert: None,
        checks: early,
    };
    let interrupted = tokio::select! {
        _ = checks(&mut run, args) => false,
        _ = crate::controller::shutdown_signal() => true,
    };
    if interrupted {
        run.checks.push(Check {
            name: "interrupted",
            assumption: "the run finishes",
            verdict: Verdict::Fail,
            detail: "stopped by a signal; cleaning up".into(),
        });
    }
    // Deletion can race the last task of a rule: retry a few times.
    let mut last = Err(String::new());
    for attempt in 0..3 {
        last = clean_up(clb).await;
        if last.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1 << attempt)).await;
    }
    run.record(
        "clean-up",
        "everything preflight made is deleted (and nothing else)",
        Some(last),
    );
    run.checks
}

fn table(checks: &[Check]) -> String {
    let w = checks
        .iter()
        .map(|c| c.name.len())
        .max()
        .unwrap_or(4)
        .max(5);
    let mut out = format!("{:<w$}  {:<7} {}\n", "CHECK", "RESULT", "DETAIL");
    for c in checks {
        out.push_str(&format!(
            "{:<w$}  {:<7} {}\n{:<w$}  {:<7} ({})\n",
            c.name,
            c.verdict.as_str(),
            c.detail,
            "",
            "",
            c.assumption
        ));
    }
    let fails = checks.iter().filter(|c| c.verdict == Verdict::Fail).count();
    out.push_str(&if fails == 0 {
        "every checked assumption holds\n".to_string()
    } else {
        format!("{fails} assumption(s) FAILED: see docs/routing.md for the fallbacks\n")
    });
    out
}
