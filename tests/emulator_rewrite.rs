//! The emulator's data plane answers rewritten rules (ManualRewrite) with the redirect, to the
//! target listener's port on the same host, instead of forwarding to targets.

use clb_ingress::clb::credentials::SecretString;
use clb_ingress::clb::types::*;
use clb_ingress::clb::{ClbClient, ClientConfig, Credentials, Endpoint};
use clb_ingress::emulator::config::Settings;
use clb_ingress::emulator::core::SystemClock;
use clb_ingress::emulator::dataplane::{DataPlane, DataPlaneSettings};
use clb_ingress::emulator::server;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manually_rewritten_http_rule_redirects_to_the_https_listener() {
    let offset: u16 = rand::random_range(20_000..50_000);
    let vip = std::net::Ipv4Addr::new(127, rand::random_range(2..=254), rand::random(), 1);
    let settings = Settings {
        listen: "127.0.0.1:0".parse().unwrap(),
        vip_base: vip,
        port_offset: offset,
        task_delay_ms: 0,
        ..Settings::default()
    };
    let (id, key) = (
        settings.credentials[0].secret_id.clone(),
        settings.credentials[0].secret_key.clone(),
    );
    let plane = Arc::new(DataPlane::new(DataPlaneSettings {
        port_offset: offset,
        ..DataPlaneSettings::default()
    }));
    let emu = server::start(settings, Arc::new(SystemClock), plane)
        .await
        .unwrap();
    let c = ClbClient::new(
        ClientConfig::new(
            "ap-guangzhou",
            Endpoint::parse(&format!("http://{}", emu.addr)).unwrap(),
        ),
        Credentials::new(id, SecretString::new(key), None).unwrap(),
    )
    .unwrap();
    let lb = c
        .create_load_balancer_and_wait(&CreateLoadBalancerRequest {
            load_balancer_type: "OPEN".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .remove(0);
    let listener = |protocol: &'static str, port: i64| {
        let c = c.clone();
        let lb = lb.clone();
        async move {
            let r = c
                .create_listener(&CreateListenerRequest {
                    load_balancer_id: lb,
                    ports: vec![port],
                    protocol: protocol.into(),
                    sni_switch: (protocol == "HTTPS").then_some(1),
                    ..Default::default()
                })
                .await
                .unwrap();
            c.wait_task(&r.request_id).await.unwrap();
            r.data.listener_ids[0].clone()
        }
    };
    let http = listener("HTTP", 80).await;
    let https = listener("HTTPS", 443).await;
    let cert = rcgen::generate_simple_self_signed(vec!["a.example.com".to_string()]).unwrap();
    let cert_id = c
        .upload_certificate(&UploadCertificateRequest {
            certificate_public_key: cert.cert.pem(),
            certificate_private_key: Some(cert.signing_key.serialize_pem()),
            certificate_type: Some("SVR".into()),
            alias: Some("rewrite-test".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let rule = |listener: String, tls: bool| {
        let c = c.clone();
        let lb = lb.clone();
        let cert_id = cert_id.clone();
        async move {
            let r = c
                .create_rule(&CreateRuleRequest {
                    load_balancer_id: lb,
                    listener_id: listener,
                    rules: vec![RuleInput {
                        url: "/".into(),
                        domain: Some("a.example.com".into()),
                        certificate: tls.then(|| CertificateInput {
                            ssl_mode: Some("UNIDIRECTIONAL".into()),
                            cert_id: Some(cert_id),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }],
                })
                .await
                .unwrap();
            c.wait_task(&r.request_id).await.unwrap();
            r.data.location_ids[0].clone()
        }
    };
    let src = rule(http.clone(), false).await;
    let dst = rule(https.clone(), true).await;
    let r = c
        .manual_rewrite(&ManualRewriteRequest {
            load_balancer_id: lb.clone(),
            source_listener_id: http,
            target_listener_id: https,
            rewrite_infos: vec![RewriteLocationMap {
                source_location_id: src,
                target_location_id: dst,
                rewrite_code: Some(301),
                take_url: Some(true),
                source_domain: Some("a.example.com".into()),
            }],
        })
        .await
        .unwrap();
    c.wait_task(&r.request_id).await.unwrap();
    let client = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let url = format!("http://{vip}:{}/cart?x=1", 80 + offset);
    let started = Instant::now();
    loop {
        if let Ok(resp) = client
            .get(&url)
            .header("Host", "a.example.com")
            .send()
            .await
            && resp.status() == 301
        {
            let loc = resp.headers()["location"].to_str().unwrap().to_string();
            assert_eq!(
                loc,
                format!("https://a.example.com:{}/cart?x=1", 443 + offset)
            );
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(5), "no redirect");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
