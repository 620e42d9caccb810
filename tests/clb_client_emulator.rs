//! The typed `clb` client against the in-process emulator over real HTTP on loopback: signing
//! accepted, a full LB / listener / rule / target / certificate lifecycle, task polling, and
//! retries under injected RequestLimitExceeded, ResourceInOperating and InternalError faults.

use std::sync::Arc;
use std::time::Duration;

use clb_ingress::clb::client::TaskWaitConfig;
use clb_ingress::clb::credentials::SecretString;
use clb_ingress::clb::observe::CountingObserver;
use clb_ingress::clb::types::{
    BatchModifyTargetWeightRequest, BatchTarget, BatchTargetsRequest, CreateListenerRequest,
    CreateLoadBalancerRequest, CreateRuleRequest, DeleteLoadBalancerRequest,
    DescribeCertificatesRequest, DescribeListenersRequest, DescribeLoadBalancersRequest,
    DescribeTargetsRequest, RsWeightRule, RuleInput, Target, UploadCertificateRequest,
};
use clb_ingress::clb::{ClbClient, ClientConfig, Credentials, Endpoint, ErrorCategory};
use clb_ingress::emulator::config::Settings;
use clb_ingress::emulator::core::SystemClock;
use clb_ingress::emulator::server::{self, NoPlane, Running};

const ID: &str = "AKIDCLIENT00000000000000000000000000001";
const KEY: &str = "CLIENTsecretKEY00000000000000000001";
const REGION: &str = "ap-guangzhou";

async fn start(faults: bool) -> Running {
    let mut s = Settings {
        listen: "127.0.0.1:0".parse().expect("addr"),
        seed: Some(11),
        task_delay_ms: 20,
        ..Settings::default()
    };
    s.credentials[0].secret_id = ID.into();
    s.credentials[0].secret_key = KEY.into();
    if faults {
        s.faults.request_limit_exceeded.insert("*".into(), 0.10);
        s.faults.resource_in_operating.insert("*".into(), 0.05);
        s.faults.internal_error.insert("*".into(), 0.02);
    }
    server::start(s, Arc::new(SystemClock), Arc::new(NoPlane))
        .await
        .expect("emulator starts")
}

fn client(r: &Running, observer: Arc<CountingObserver>) -> ClbClient {
    let mut config = ClientConfig::new(
        REGION,
        Endpoint::parse(&format!("http://{}", r.addr)).expect("endpoint"),
    );
    config.task_wait = TaskWaitConfig {
        timeout: Duration::from_secs(20),
        ..TaskWaitConfig::default()
    };
    let creds = Credentials::new(ID, SecretString::new(KEY), None).expect("creds");
    ClbClient::builder(config, creds)
        .observer(observer)
        .http_client(reqwest::Client::builder().no_proxy().build().expect("http"))
        .build()
        .expect("client")
}

async fn lifecycle(c: &ClbClient) {
    let lb = c
        .create_load_balancer_and_wait(&CreateLoadBalancerRequest {
            load_balancer_type: "OPEN".into(),
            load_balancer_name: Some("client-test".into()),
            ..Default::default()
        })
        .await
        .expect("create LB")
        .remove(0);
    let lbs = c
        .describe_load_balancers(&DescribeLoadBalancersRequest {
            load_balancer_ids: vec![lb.clone()],
            ..Default::default()
        })
        .await
        .expect("describe LB");
    assert_eq!(lbs.len(), 1);

    let listener = c
        .create_listener(&CreateListenerRequest {
            load_balancer_id: lb.clone(),
            ports: vec![80],
            protocol: "HTTP".into(),
            ..Default::default()
        })
        .await
        .expect("create listener");
    c.wait_task(&listener.request_id)
        .await
        .expect("listener task");
    let listener_id = listener.data.listener_ids[0].clone();

    let rules = c
        .create_rule(&CreateRuleRequest {
            load_balancer_id: lb.clone(),
            listener_id: listener_id.clone(),
            rules: vec![
                RuleInput {
                    domain: Some("www.example.com".into()),
                    url: "/api".into(),
                    ..Default::default()
                },
                RuleInput {
                    domain: Some("www.example.com".into()),
                    url: "/".into(),
                    ..Default::default()
                },
            ],
        })
        .await
        .expect("create rules");
    c.wait_task(&rules.request_id).await.expect("rule task");
    let location = rules.data.location_ids[0].clone();

    let targets: Vec<BatchTarget> = (0..30)
        .map(|i| BatchTarget {
            listener_id: listener_id.clone(),
            port: 8080,
            eni_ip: Some(format!("10.0.0.{}", i + 1)),
            weight: Some(10),
            location_id: Some(location.clone()),
            ..Default::default()
        })
        .collect();
    c.batch_register_targets(&BatchTargetsRequest {
        load_balancer_id: lb.clone(),
        targets,
    })
    .await
    .expect("register targets");

    c.batch_modify_target_weight(&BatchModifyTargetWeightRequest {
        load_balancer_id: lb.clone(),
        modify_list: vec![RsWeightRule {
            listener_id: listener_id.clone(),
            location_id: Some(location.clone()),
            targets: (0..30)
                .map(|i| Target {
                    port: 8080,
                    eni_ip: Some(format!("10.0.0.{}", i + 1)),
                    weight: Some(50),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }],
    })
    .await
    .expect("modify weights");

    let backends = c
        .describe_targets(&DescribeTargetsRequest {
            load_balancer_id: lb.clone(),
            listener_ids: vec![listener_id.clone()],
            ..Default::default()
        })
        .await
        .expect("describe targets");
    let rule = backends[0]
        .rules
        .iter()
        .find(|r| r.location_id == location)
        .expect("rule has targets");
    assert_eq!(rule.targets.len(), 30);
    assert!(rule.targets.iter().all(|t| t.weight == 50));

    let listeners = c
        .describe_listeners(&DescribeListenersRequest {
            load_balancer_id: lb.clone(),
            ..Default::default()
        })
        .await
        .expect("describe listeners");
    assert_eq!(listeners[0].rules.len(), 2);

    let replies = c
        .delete_load_balancers(&DeleteLoadBalancerRequest {
            load_balancer_ids: vec![lb.clone()],
            force_delete: Some(true),
        })
        .await
        .expect("delete LB");
    c.wait_task(&replies[0].request_id)
        .await
        .expect("delete task");
    let gone = c
        .describe_load_balancers(&DescribeLoadBalancersRequest {
            load_balancer_ids: vec![lb],
            ..Default::default()
        })
        .await
        .expect("describe deleted LB");
    assert!(gone.is_empty());
}

#[tokio::test]
async fn the_client_runs_a_full_lifecycle_against_the_emulator() {
    let running = start(false).await;
    let observer = Arc::new(CountingObserver::default());
    let c = client(&running, observer.clone());
    lifecycle(&c).await;
    let counts = observer.snapshot();
    let failures: u64 = counts
        .calls
        .iter()
        .filter(|((_, result), _)| result != "Success")
        .map(|(_, n)| n)
        .sum();
    assert_eq!(failures, 0, "{counts:?}");
    running.stop().await;
}

#[tokio::test]
async fn the_client_survives_injected_throttling_busy_and_internal_errors() {
    let running = start(true).await;
    let observer = Arc::new(CountingObserver::default());
    let c = client(&running, observer.clone());
    for _ in 0..3 {
        lifecycle(&c).await;
    }
    let counts = observer.snapshot();
    let retried: u64 = counts.retries.values().sum();
    assert!(retried > 0, "faults were injected and retried: {counts:?}");
    running.stop().await;
}

#[tokio::test]
async fn ssl_certificates_round_trip_and_a_wrong_key_is_an_auth_error() {
    let running = start(false).await;
    let c = client(&running, Arc::default());
    let cert = rcgen::generate_simple_self_signed(vec!["www.example.com".to_string()])
        .expect("self-signed cert");
    let id = c
        .upload_certificate(&UploadCertificateRequest {
            certificate_public_key: cert.cert.pem(),
            certificate_private_key: Some(cert.signing_key.serialize_pem()),
            alias: Some("client-test".into()),
            ..Default::default()
        })
        .await
        .expect("upload");
    let all = c
        .describe_certificates(&DescribeCertificatesRequest::default())
        .await
        .expect("describe certificates");
    assert!(all.iter().any(|d| d.certificate_id == id));
    assert!(c.delete_certificate(&id).await.expect("delete"));

    let bad = Credentials::new(ID, SecretString::new("wrong-key"), None).expect("creds");
    c.set_credentials(bad);
    let err = c.describe_quota().await.expect_err("bad key is refused");
    assert_eq!(err.category(), ErrorCategory::Auth);
    running.stop().await;
}
