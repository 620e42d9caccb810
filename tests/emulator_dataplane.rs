//! End-to-end tests of the emulator's data plane: real sockets on random 127.x VIPs, echo
//! backends on 127.0.0.1, real HTTP and HTTPS requests through reqwest.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use clb_ingress::emulator::dataplane::{
    CertPem, DataPlane, DataPlaneConfig, DataPlaneError, DataPlaneSettings, DomainPlane, LbPlane,
    ListenerPlane, PlaneProtocol, RulePlane, TargetPlane,
};
use clb_ingress::emulator::health::{Health, HealthPlane};
use rand::Rng;
use serde_json::{Value, json};

/// How long any single test request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the echo backend's `/slow` endpoint takes to answer.
const SLOW_BACKEND_DELAY: Duration = Duration::from_millis(400);
/// Largest request body the echo backend reads.
const ECHO_BODY_LIMIT: usize = 1 << 20;
/// Requests sent to measure a weighted split.
const WEIGHT_SAMPLES: usize = 400;

// ---------------------------------------------------------------------------------------------
// Fixtures

/// A random VIP in 127.0.0.0/8 (never 127.0.0.x, where the echo backends live), so parallel
/// tests and test processes don't share addresses.
fn random_vip() -> Ipv4Addr {
    let mut rng = rand::rng();
    Ipv4Addr::new(
        127,
        rng.random_range(1..=254),
        rng.random_range(0..=255),
        rng.random_range(1..=254),
    )
}

fn target(ip: &str, port: u16, weight: u32) -> TargetPlane {
    TargetPlane {
        instance_id: None,
        ip: ip.to_owned(),
        port,
        weight,
    }
}

fn backend(addr: SocketAddr, weight: u32) -> TargetPlane {
    target(&addr.ip().to_string(), addr.port(), weight)
}

fn rule(location_id: &str, url: &str, targets: Vec<TargetPlane>) -> RulePlane {
    RulePlane {
        rewrite: None,
        location_id: location_id.to_owned(),
        url: url.to_owned(),
        targets,
        health: None,
    }
}

fn domain(name: &str, default_server: bool, rules: Vec<RulePlane>) -> DomainPlane {
    DomainPlane {
        domain: name.to_owned(),
        default_server,
        certificate: None,
        rules,
    }
}

fn http_listener(listener_id: &str, port: u16, domains: Vec<DomainPlane>) -> ListenerPlane {
    ListenerPlane {
        listener_id: listener_id.to_owned(),
        protocol: PlaneProtocol::Http,
        port,
        certificate: None,
        sni: false,
        domains,
    }
}

fn one_lb(lb_id: &str, vip: Ipv4Addr, listeners: Vec<ListenerPlane>) -> DataPlaneConfig {
    DataPlaneConfig {
        lbs: vec![LbPlane {
            lb_id: lb_id.to_owned(),
            vip,
            listeners,
        }],
    }
}

/// A data plane binding ephemeral ports with a fixed seed.
fn data_plane() -> DataPlane {
    DataPlane::new(DataPlaneSettings::ephemeral().with_seed(7))
}

/// Start an echo backend on 127.0.0.1 that answers JSON naming itself and the request it got.
/// Paths starting with `/slow` answer after [`SLOW_BACKEND_DELAY`].
async fn echo_backend(name: &'static str) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("bind an echo backend");
    let addr = listener.local_addr().expect("echo backend address");
    let app = axum::Router::new().fallback(move |req: axum::extract::Request| echo(name, req));
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

async fn echo(name: &'static str, req: axum::extract::Request) -> axum::Json<Value> {
    let (parts, body) = req.into_parts();
    if parts.uri.path().starts_with("/slow") {
        tokio::time::sleep(SLOW_BACKEND_DELAY).await;
    }
    let body = axum::body::to_bytes(body, ECHO_BODY_LIMIT)
        .await
        .unwrap_or_default();
    let headers: serde_json::Map<String, Value> = parts
        .headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                Value::from(v.to_str().unwrap_or_default()),
            )
        })
        .collect();
    axum::Json(json!({
        "backend": name,
        "method": parts.method.as_str(),
        "uri": parts.uri.to_string(),
        "headers": headers,
        "body": String::from_utf8_lossy(&body),
    }))
}

/// A client that sends every named host to `addr`, trusts `ca` (if any), never uses a proxy and
/// never follows redirects.
fn client(hosts: &[&str], addr: SocketAddr, ca: Option<&str>) -> reqwest::Client {
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .no_proxy()
        .timeout(REQUEST_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .tls_info(true)
        .tls_built_in_root_certs(false);
    for host in hosts {
        builder = builder.resolve(host, addr);
    }
    if let Some(ca) = ca {
        builder = builder
            .add_root_certificate(reqwest::Certificate::from_pem(ca.as_bytes()).expect("CA PEM"));
    }
    builder.build().expect("build a reqwest client")
}

async fn get(client: &reqwest::Client, url: &str) -> reqwest::Response {
    client
        .get(url)
        .send()
        .await
        .expect("request through the data plane")
}

fn header<'r>(response: &'r reqwest::Response, name: &str) -> &'r str {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

async fn json_body(response: reqwest::Response) -> Value {
    response.json().await.expect("a JSON body")
}

/// A test CA and leaf certificates it signs.
struct TestPki {
    ca_pem: String,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

/// A leaf certificate: PEM for the data plane, DER to compare with what the client saw.
struct Leaf {
    pem: CertPem,
    der: Vec<u8>,
}

impl TestPki {
    fn new() -> Self {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "clb-ingress test CA");
        let key = rcgen::KeyPair::generate().expect("CA key");
        let cert = params.self_signed(&key).expect("CA certificate");
        Self {
            ca_pem: cert.pem(),
            issuer: rcgen::Issuer::new(params, key),
        }
    }

    fn leaf(&self, cert_id: &str, names: &[&str]) -> Leaf {
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let params = rcgen::CertificateParams::new(names).expect("leaf params");
        let key = rcgen::KeyPair::generate().expect("leaf key");
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("leaf certificate");
        Leaf {
            pem: CertPem {
                cert_id: cert_id.to_owned(),
                cert_pem: cert.pem(),
                key_pem: key.serialize_pem(),
            },
            der: cert.der().to_vec(),
        }
    }
}

/// The DER certificate the server presented on `response`'s connection.
fn peer_certificate(response: &reqwest::Response) -> Vec<u8> {
    response
        .extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|info| info.peer_certificate())
        .map(<[u8]>::to_vec)
        .unwrap_or_default()
}

/// An SNI HTTPS listener on port 443 with `a.example.com` (default, cert A) and
/// `*.b.example.com` (cert B), plus a listener certificate L; each domain's `/` goes to a
/// synthetic 10.x target.
fn sni_listener(a: &Leaf, b: &Leaf, l: &Leaf) -> ListenerPlane {
    let mut domain_a = domain(
        "a.example.com",
        true,
        vec![rule("loc-a", "/", vec![target("10.0.0.1", 80, 10)])],
    );
    domain_a.certificate = Some(a.pem.clone());
    let mut domain_b = domain(
        "*.b.example.com",
        false,
        vec![rule("loc-b", "/", vec![target("10.0.0.2", 80, 10)])],
    );
    domain_b.certificate = Some(b.pem.clone());
    ListenerPlane {
        listener_id: "lbl-https".into(),
        protocol: PlaneProtocol::Https,
        port: 443,
        certificate: Some(l.pem.clone()),
        sni: true,
        domains: vec![domain_a, domain_b],
    }
}

// ---------------------------------------------------------------------------------------------
// Sockets and reconciliation (independent of the matcher)

#[tokio::test]
async fn listener_port_is_served_at_the_vip_and_port_plus_offset() {
    let vip = random_vip();
    let plane = DataPlane::new(DataPlaneSettings::default());
    plane
        .apply(one_lb(
            "lb-1",
            vip,
            vec![http_listener("lbl-1", 80, vec![])],
        ))
        .await
        .expect("apply");
    let expected = SocketAddr::from((
        vip,
        80 + clb_ingress::emulator::dataplane::DEFAULT_PORT_OFFSET,
    ));
    assert_eq!(plane.bound_addr("lb-1", 80), Some(expected));
    assert!(tokio::net::TcpStream::connect(expected).await.is_ok());
}

#[tokio::test]
async fn port_map_overrides_the_offset_and_zero_means_ephemeral() {
    let vip = random_vip();
    let mut settings = DataPlaneSettings::default();
    settings.port_map.insert(443, 0);
    let plane = DataPlane::new(settings);
    plane
        .apply(one_lb(
            "lb-1",
            vip,
            vec![http_listener("lbl-1", 443, vec![])],
        ))
        .await
        .expect("apply");
    let addr = plane.bound_addr("lb-1", 443).expect("bound");
    assert_eq!(addr.ip(), vip);
    assert_ne!(
        addr.port(),
        443 + clb_ingress::emulator::dataplane::DEFAULT_PORT_OFFSET
    );
    assert_ne!(addr.port(), 0);
}

#[tokio::test]
async fn non_loopback_vip_is_refused_without_binding_while_other_lbs_still_apply() {
    let vip = random_vip();
    let cfg = DataPlaneConfig {
        lbs: vec![
            LbPlane {
                lb_id: "lb-bad".into(),
                vip: Ipv4Addr::new(10, 0, 0, 1),
                listeners: vec![http_listener("lbl-bad", 80, vec![])],
            },
            LbPlane {
                lb_id: "lb-good".into(),
                vip,
                listeners: vec![http_listener("lbl-good", 80, vec![])],
            },
        ],
    };
    let plane = data_plane();
    let err = plane
        .apply(cfg)
        .await
        .expect_err("a non-loopback VIP fails");
    assert!(
        matches!(&err, DataPlaneError::NonLoopbackVip { lb_id, .. } if lb_id == "lb-bad"),
        "{err}"
    );
    assert_eq!(plane.bound_addr("lb-bad", 80), None);
    assert!(plane.bound_addr("lb-good", 80).is_some());
}

#[tokio::test]
async fn removed_listener_stops_serving_and_can_be_bound_again() {
    let vip = random_vip();
    let plane = DataPlane::new(DataPlaneSettings::default());
    let cfg = one_lb("lb-1", vip, vec![http_listener("lbl-1", 8080, vec![])]);
    plane.apply(cfg.clone()).await.expect("apply");
    let addr = plane.bound_addr("lb-1", 8080).expect("bound");

    plane
        .apply(DataPlaneConfig::default())
        .await
        .expect("remove");
    assert_eq!(plane.bound_addr("lb-1", 8080), None);
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());

    plane
        .apply(cfg)
        .await
        .expect("re-add on the same fixed address");
    assert_eq!(plane.bound_addr("lb-1", 8080), Some(addr));
}

#[tokio::test]
async fn unusable_certificate_is_reported_and_leaves_that_listener_unbound() {
    let vip = random_vip();
    let mut https = http_listener("lbl-tls", 443, vec![]);
    https.protocol = PlaneProtocol::Https;
    https.certificate = Some(CertPem {
        cert_id: "cert-broken".into(),
        cert_pem: "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".into(),
        key_pem: "garbage".into(),
    });
    let plane = data_plane();
    let err = plane
        .apply(one_lb(
            "lb-1",
            vip,
            vec![https, http_listener("lbl-80", 80, vec![])],
        ))
        .await
        .expect_err("a broken certificate fails");
    assert!(
        matches!(&err, DataPlaneError::Certificate { cert_id, port: 443, .. } if cert_id == "cert-broken"),
        "{err}"
    );
    assert_eq!(plane.bound_addr("lb-1", 443), None);
    assert!(plane.bound_addr("lb-1", 80).is_some());
}

#[tokio::test]
async fn request_matching_no_rule_answers_404_naming_the_lb_and_listener() {
    let vip = random_vip();
    let plane = data_plane();
    let cfg = one_lb(
        "lb-404",
        vip,
        vec![http_listener(
            "lbl-404",
            80,
            vec![domain(
                "a.example.com",
                true,
                vec![rule("loc-api", "/api", vec![target("10.0.0.1", 80, 10)])],
            )],
        )],
    );
    plane.apply(cfg).await.expect("apply");
    let addr = plane.bound_addr("lb-404", 80).expect("bound");
    let client = client(&["a.example.com"], addr, None);
    let response = get(
        &client,
        &format!("http://a.example.com:{}/other", addr.port()),
    )
    .await;
    assert_eq!(response.status(), 404);
    assert_eq!(header(&response, "x-clb-lb"), "lb-404");
    assert_eq!(header(&response, "x-clb-listener"), "lbl-404");
    // The domain was found, its URLs did not match.
    assert_eq!(header(&response, "x-clb-domain"), "a.example.com");
    assert_eq!(header(&response, "x-clb-url"), "");
}

#[tokio::test]
async fn slow_clients_beyond_the_connection_cap_do_not_stop_a_data_plane_request() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let vip = random_vip();
    let plane = DataPlane::new(DataPlaneSettings {
        max_connections: 2,
        header_read_timeout: Duration::from_millis(300),
        ..DataPlaneSettings::ephemeral().with_seed(7)
    });
    let cfg = one_lb(
        "lb-cap",
        vip,
        vec![http_listener(
            "lbl-cap",
            80,
            vec![domain("a.example.com", true, vec![])],
        )],
    );
    plane.apply(cfg).await.expect("apply");
    let addr = plane.bound_addr("lb-cap", 80).expect("bound");
    let mut slow = Vec::new();
    for _ in 0..6 {
        let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: a.example.com\r\n")
            .await
            .expect("write");
        slow.push(stream);
    }
    let response = get(
        &client(&["a.example.com"], addr, None),
        &format!("http://a.example.com:{}/x", addr.port()),
    )
    .await;
    assert_eq!(response.status(), 404);
    // Each stalled client was cut off after the header timeout.
    let mut rest = Vec::new();
    let closed =
        tokio::time::timeout(Duration::from_secs(10), slow[0].read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "a stalled client is still connected");
}

#[tokio::test]
async fn a_data_plane_connection_beyond_the_cap_waits_until_an_open_one_ends() {
    use tokio::io::AsyncWriteExt;
    let vip = random_vip();
    let plane = DataPlane::new(DataPlaneSettings {
        max_connections: 1,
        header_read_timeout: Duration::from_secs(3600),
        ..DataPlaneSettings::ephemeral().with_seed(7)
    });
    let cfg = one_lb(
        "lb-wait",
        vip,
        vec![http_listener(
            "lbl-wait",
            80,
            vec![domain("a.example.com", true, vec![])],
        )],
    );
    plane.apply(cfg).await.expect("apply");
    let addr = plane.bound_addr("lb-wait", 80).expect("bound");
    let mut stalled = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stalled
        .write_all(b"GET / HTTP/1.1\r\n")
        .await
        .expect("write");
    let c = client(&["a.example.com"], addr, None);
    let url = format!("http://a.example.com:{}/x", addr.port());
    let waiting = tokio::spawn(async move { c.get(url).send().await.map(|r| r.status()) });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiting.is_finished(), "served beyond the cap of 1");
    drop(stalled);
    let answered = tokio::time::timeout(Duration::from_secs(10), waiting).await;
    assert!(
        matches!(&answered, Ok(Ok(Ok(status))) if status.as_u16() == 404),
        "{answered:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// TLS and SNI (certificate choice does not depend on the matcher)

#[tokio::test]
async fn https_listener_serves_the_certificate_of_the_domain_named_by_sni() {
    let pki = TestPki::new();
    let a = pki.leaf("cert-a", &["a.example.com"]);
    let b = pki.leaf("cert-b", &["*.b.example.com"]);
    let l = pki.leaf("cert-l", &["listener.example.com"]);
    let plane = data_plane();
    plane
        .apply(one_lb(
            "lb-tls",
            random_vip(),
            vec![sni_listener(&a, &b, &l)],
        ))
        .await
        .expect("apply");
    let addr = plane.bound_addr("lb-tls", 443).expect("bound");
    let client = client(
        &["a.example.com", "x.b.example.com"],
        addr,
        Some(&pki.ca_pem),
    );

    let to_a = get(&client, &format!("https://a.example.com:{}/", addr.port())).await;
    assert_eq!(peer_certificate(&to_a), a.der);
    let to_b = get(
        &client,
        &format!("https://x.b.example.com:{}/", addr.port()),
    )
    .await;
    assert_eq!(peer_certificate(&to_b), b.der);
}

#[tokio::test]
async fn sni_certificate_follows_routing_precedence_exact_then_wildcard_then_regex() {
    let pki = TestPki::new();
    let wildcard = pki.leaf("cert-w", &["*.example.com"]);
    let exact = pki.leaf("cert-e", &["api.example.com"]);
    let regex = pki.leaf("cert-r", &["img7.cdn.net"]);
    let l = pki.leaf("cert-l", &["listener.example.com"]);
    let with_cert = |name: &str, default_server: bool, leaf: &Leaf| {
        let mut d = domain(
            name,
            default_server,
            vec![rule("loc", "/", vec![target("10.0.0.1", 80, 1)])],
        );
        d.certificate = Some(leaf.pem.clone());
        d
    };
    let mut listener = sni_listener(&wildcard, &exact, &l);
    // Creation order puts the regex first and the exact domain last: order must not matter.
    listener.domains = vec![
        with_cert("~^img\\d+\\.cdn\\.net$", false, &regex),
        with_cert("*.example.com", true, &wildcard),
        with_cert("api.example.com", false, &exact),
    ];
    let plane = data_plane();
    plane
        .apply(one_lb("lb-tls", random_vip(), vec![listener]))
        .await
        .expect("apply");
    let addr = plane.bound_addr("lb-tls", 443).expect("bound");
    let hosts = ["api.example.com", "www.example.com", "img7.cdn.net"];
    let client = client(&hosts, addr, Some(&pki.ca_pem));
    for (host, expected) in hosts.iter().zip([&exact, &wildcard, &regex]) {
        let response = get(&client, &format!("https://{host}:{}/", addr.port())).await;
        assert_eq!(peer_certificate(&response), expected.der, "{host}");
    }
}

#[tokio::test]
async fn sni_name_matching_no_domain_gets_the_default_domain_certificate() {
    let pki = TestPki::new();
    // The default domain's certificate also covers other.example.org, so the client accepts it.
    let a = pki.leaf("cert-a", &["a.example.com", "other.example.org"]);
    let b = pki.leaf("cert-b", &["*.b.example.com"]);
    let l = pki.leaf("cert-l", &["other.example.org"]);
    let plane = data_plane();
    plane
        .apply(one_lb(
            "lb-tls",
            random_vip(),
            vec![sni_listener(&a, &b, &l)],
        ))
        .await
        .expect("apply");
    let addr = plane.bound_addr("lb-tls", 443).expect("bound");
    let client = client(&["other.example.org"], addr, Some(&pki.ca_pem));
    let response = get(
        &client,
        &format!("https://other.example.org:{}/", addr.port()),
    )
    .await;
    assert_eq!(peer_certificate(&response), a.der);
}

#[tokio::test]
async fn listener_without_sni_serves_the_listener_certificate_for_every_name() {
    let pki = TestPki::new();
    let a = pki.leaf("cert-a", &["a.example.com"]);
    let b = pki.leaf("cert-b", &["*.b.example.com"]);
    let l = pki.leaf("cert-l", &["a.example.com", "x.b.example.com"]);
    let mut listener = sni_listener(&a, &b, &l);
    listener.sni = false;
    let plane = data_plane();
    plane
        .apply(one_lb("lb-tls", random_vip(), vec![listener]))
        .await
        .expect("apply");
    let addr = plane.bound_addr("lb-tls", 443).expect("bound");
    let client = client(
        &["a.example.com", "x.b.example.com"],
        addr,
        Some(&pki.ca_pem),
    );
    for host in ["a.example.com", "x.b.example.com"] {
        let response = get(&client, &format!("https://{host}:{}/", addr.port())).await;
        assert_eq!(peer_certificate(&response), l.der, "{host}");
    }
}

#[tokio::test]
async fn certificate_change_applies_to_new_handshakes_without_rebinding() {
    let pki = TestPki::new();
    let a = pki.leaf("cert-a", &["a.example.com"]);
    let a2 = pki.leaf("cert-a2", &["a.example.com"]);
    let b = pki.leaf("cert-b", &["*.b.example.com"]);
    let l = pki.leaf("cert-l", &["listener.example.com"]);
    let vip = random_vip();
    let plane = data_plane();
    plane
        .apply(one_lb("lb-tls", vip, vec![sni_listener(&a, &b, &l)]))
        .await
        .expect("apply");
    let addr = plane.bound_addr("lb-tls", 443).expect("bound");
    let url = format!("https://a.example.com:{}/", addr.port());
    let before = get(&client(&["a.example.com"], addr, Some(&pki.ca_pem)), &url).await;
    assert_eq!(peer_certificate(&before), a.der);

    plane
        .apply(one_lb("lb-tls", vip, vec![sni_listener(&a2, &b, &l)]))
        .await
        .expect("apply the new certificate");
    assert_eq!(plane.bound_addr("lb-tls", 443), Some(addr));
    // A fresh client: a fresh connection and handshake.
    let after = get(&client(&["a.example.com"], addr, Some(&pki.ca_pem)), &url).await;
    assert_eq!(peer_certificate(&after), a2.der);
}

// ---------------------------------------------------------------------------------------------
// Routing (these need the CLB matcher)

/// Two domains on one HTTP listener: `a.example.com` (default) with `/` → echo A and `/api` →
/// echo B, `/static/` → 10.0.0.7:8080; `~^img\d+\.example\.com$` with `/` → CVM ins-img:80.
fn two_domain_config(vip: Ipv4Addr, a: SocketAddr, b: SocketAddr) -> DataPlaneConfig {
    let mut cvm = target("10.0.3.3", 80, 10);
    cvm.instance_id = Some("ins-img".into());
    one_lb(
        "lb-route",
        vip,
        vec![http_listener(
            "lbl-route",
            80,
            vec![
                domain(
                    "a.example.com",
                    true,
                    vec![
                        rule("loc-root", "/", vec![backend(a, 10)]),
                        rule("loc-api", "/api", vec![backend(b, 10)]),
                        rule("loc-static", "/static/", vec![target("10.0.0.7", 8080, 10)]),
                    ],
                ),
                domain(
                    "~^img\\d+\\.example\\.com$",
                    false,
                    vec![rule("loc-img", "/", vec![cvm])],
                ),
            ],
        )],
    )
}

#[tokio::test]
async fn requests_land_on_the_backend_of_the_matching_domain_and_url() {
    let (a, b) = (echo_backend("A").await, echo_backend("B").await);
    let plane = data_plane();
    plane
        .apply(two_domain_config(random_vip(), a, b))
        .await
        .expect("apply");
    let addr = plane.bound_addr("lb-route", 80).expect("bound");
    let port = addr.port();
    let client = client(
        &["a.example.com", "img7.example.com", "unknown.example.net"],
        addr,
        None,
    );

    let api = get(&client, &format!("http://a.example.com:{port}/api/v1?q=1")).await;
    assert_eq!(api.status(), 200);
    assert_eq!(header(&api, "x-clb-url"), "/api");
    assert_eq!(header(&api, "x-clb-location"), "loc-api");
    assert_eq!(
        header(&api, "x-clb-target"),
        format!("127.0.0.1:{}", b.port())
    );
    let api = json_body(api).await;
    assert_eq!(api["backend"], "B");
    assert_eq!(api["uri"], "/api/v1?q=1");

    let root = json_body(get(&client, &format!("http://a.example.com:{port}/other")).await).await;
    assert_eq!(root["backend"], "A");

    // No domain matches the host: the DefaultServer domain answers.
    let default = get(&client, &format!("http://unknown.example.net:{port}/api")).await;
    assert_eq!(header(&default, "x-clb-domain"), "a.example.com");
    assert_eq!(json_body(default).await["backend"], "B");

    // A regex domain routes to a CVM target, answered by the emulator itself.
    let img = get(&client, &format!("http://img7.example.com:{port}/x.png")).await;
    assert_eq!(img.status(), 200);
    assert_eq!(header(&img, "x-clb-domain"), "~^img\\d+\\.example\\.com$");
    assert_eq!(header(&img, "x-clb-target"), "ins-img:80");
    assert_eq!(header(&img, "x-clb-answered-by"), "synthetic");
}

#[tokio::test]
async fn proxied_request_forwards_method_path_headers_and_body_with_forwarded_headers() {
    let (a, b) = (echo_backend("A").await, echo_backend("B").await);
    let plane = data_plane();
    plane
        .apply(two_domain_config(random_vip(), a, b))
        .await
        .expect("apply");
    let addr = plane.bound_addr("lb-route", 80).expect("bound");
    let client = client(&["a.example.com"], addr, None);
    let host = format!("a.example.com:{}", addr.port());
    let response = client
        .post(format!("http://{host}/api/items?x=1&y=2"))
        .header("x-custom", "kept")
        .header("x-forwarded-for", "203.0.113.9")
        .body("hello backend")
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "x-clb-lb"), "lb-route");
    assert_eq!(header(&response, "x-clb-listener"), "lbl-route");
    assert_eq!(header(&response, "x-clb-answered-by"), "");
    let echoed = json_body(response).await;
    assert_eq!(echoed["method"], "POST");
    assert_eq!(echoed["uri"], "/api/items?x=1&y=2");
    assert_eq!(echoed["body"], "hello backend");
    assert_eq!(echoed["headers"]["x-custom"], "kept");
    assert_eq!(echoed["headers"]["host"], host.as_str());
    assert_eq!(
        echoed["headers"]["x-forwarded-for"],
        "203.0.113.9, 127.0.0.1"
    );
    assert_eq!(echoed["headers"]["x-forwarded-proto"], "http");
    assert_eq!(echoed["headers"]["x-forwarded-host"], host.as_str());
}

#[tokio::test]
async fn pod_ip_target_is_answered_by_the_emulator_with_the_routing_facts() {
    let (a, b) = (echo_backend("A").await, echo_backend("B").await);
    let plane = data_plane();
    plane
        .apply(two_domain_config(random_vip(), a, b))
        .await
        .expect("apply");
    let addr = plane.bound_addr("lb-route", 80).expect("bound");
    let client = client(&["a.example.com"], addr, None);
    let response = get(
        &client,
        &format!("http://a.example.com:{}/static/app.js?v=3", addr.port()),
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "x-clb-lb"), "lb-route");
    assert_eq!(header(&response, "x-clb-listener"), "lbl-route");
    assert_eq!(header(&response, "x-clb-domain"), "a.example.com");
    assert_eq!(header(&response, "x-clb-url"), "/static/");
    assert_eq!(header(&response, "x-clb-location"), "loc-static");
    assert_eq!(header(&response, "x-clb-target"), "10.0.0.7:8080");
    let body = json_body(response).await;
    assert_eq!(body["target_ip"], "10.0.0.7");
    assert_eq!(body["target_port"], 8080);
    assert_eq!(body["domain"], "a.example.com");
    assert_eq!(body["url"], "/static/");
    assert_eq!(body["host"], format!("a.example.com:{}", addr.port()));
    assert_eq!(body["path"], "/static/app.js");
    assert_eq!(body["path_and_query"], "/static/app.js?v=3");
}

#[tokio::test]
async fn weight_zero_target_is_never_chosen_and_weights_split_the_traffic() {
    let vip = random_vip();
    let cfg = one_lb(
        "lb-w",
        vip,
        vec![http_listener(
            "lbl-w",
            80,
            vec![domain(
                "w.example.com",
                true,
                vec![rule(
                    "loc-w",
                    "/",
                    vec![
                        target("10.0.0.1", 80, 0),
                        target("10.0.0.2", 80, 3),
                        target("10.0.0.3", 80, 1),
                    ],
                )],
            )],
        )],
    );
    let plane = data_plane();
    plane.apply(cfg).await.expect("apply");
    let addr = plane.bound_addr("lb-w", 80).expect("bound");
    let client = client(&["w.example.com"], addr, None);
    let url = format!("http://w.example.com:{}/", addr.port());
    let mut counts = std::collections::BTreeMap::<String, usize>::new();
    for _ in 0..WEIGHT_SAMPLES {
        let response = get(&client, &url).await;
        *counts
            .entry(header(&response, "x-clb-target").to_owned())
            .or_default() += 1;
    }
    assert_eq!(counts.get("10.0.0.1:80"), None, "{counts:?}");
    let heavy = counts.get("10.0.0.2:80").copied().unwrap_or(0);
    let light = counts.get("10.0.0.3:80").copied().unwrap_or(0);
    assert_eq!(heavy + light, WEIGHT_SAMPLES, "{counts:?}");
    // Expect 300 : 100; allow wide statistical slack.
    assert!((240..=360).contains(&heavy), "{counts:?}");
}

#[tokio::test]
async fn rule_without_a_weighted_target_answers_503_naming_the_rule() {
    let vip = random_vip();
    let cfg = one_lb(
        "lb-503",
        vip,
        vec![http_listener(
            "lbl-503",
            80,
            vec![domain(
                "a.example.com",
                true,
                vec![
                    rule("loc-empty", "/empty", vec![]),
                    rule("loc-zero", "/zero", vec![target("10.0.0.1", 80, 0)]),
                ],
            )],
        )],
    );
    let plane = data_plane();
    plane.apply(cfg).await.expect("apply");
    let addr = plane.bound_addr("lb-503", 80).expect("bound");
    let client = client(&["a.example.com"], addr, None);
    for (path, location) in [("/empty", "loc-empty"), ("/zero", "loc-zero")] {
        let response = get(
            &client,
            &format!("http://a.example.com:{}{path}", addr.port()),
        )
        .await;
        assert_eq!(response.status(), 503, "{path}");
        assert_eq!(header(&response, "x-clb-location"), location);
        assert_eq!(header(&response, "x-clb-domain"), "a.example.com");
        assert_eq!(header(&response, "x-clb-target"), "");
    }
}

#[tokio::test]
async fn missing_trailing_slash_is_redirected_with_301_to_an_absolute_url() {
    let (a, b) = (echo_backend("A").await, echo_backend("B").await);
    let plane = data_plane();
    plane
        .apply(two_domain_config(random_vip(), a, b))
        .await
        .expect("apply");
    let addr = plane.bound_addr("lb-route", 80).expect("bound");
    let client = client(&["a.example.com"], addr, None);
    let host = format!("a.example.com:{}", addr.port());
    let response = get(&client, &format!("http://{host}/static?v=1")).await;
    assert_eq!(response.status(), 301);
    assert_eq!(
        header(&response, "location"),
        format!("http://{host}/static/?v=1")
    );
    assert_eq!(header(&response, "x-clb-lb"), "lb-route");
}

#[tokio::test]
async fn loopback_target_refusing_connections_answers_502() {
    // Reserve a port, then free it: nothing listens there any more.
    let closed = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("bind")
        .local_addr()
        .expect("addr");
    let cfg = one_lb(
        "lb-502",
        random_vip(),
        vec![http_listener(
            "lbl-502",
            80,
            vec![domain(
                "a.example.com",
                true,
                vec![rule("loc-dead", "/", vec![backend(closed, 10)])],
            )],
        )],
    );
    let plane = data_plane();
    plane.apply(cfg).await.expect("apply");
    let addr = plane.bound_addr("lb-502", 80).expect("bound");
    let client = client(&["a.example.com"], addr, None);
    let response = get(&client, &format!("http://a.example.com:{}/", addr.port())).await;
    assert_eq!(response.status(), 502);
    assert_eq!(header(&response, "x-clb-target"), closed.to_string());
}

#[tokio::test]
async fn with_the_health_check_on_only_targets_that_passed_it_get_traffic() {
    let up = echo_backend("UP").await;
    let closed = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("bind")
        .local_addr()
        .expect("addr");
    let mut r = rule("loc-hc", "/", vec![backend(up, 10), backend(closed, 10)]);
    r.health = Some(HealthPlane {
        interval: Duration::from_millis(50),
        timeout: Duration::from_millis(40),
        healthy_threshold: 2,
        unhealthy_threshold: 2,
        http_codes: 2,
        path: "/healthz".into(),
        host: Some("a.example.com".into()),
        get: false,
    });
    let cfg = one_lb(
        "lb-hc",
        random_vip(),
        vec![http_listener(
            "lbl-hc",
            80,
            vec![domain("a.example.com", true, vec![r])],
        )],
    );
    let plane = data_plane();
    plane.apply(cfg).await.expect("apply");
    let addr = plane.bound_addr("lb-hc", 80).expect("bound");
    let client = client(&["a.example.com"], addr, None);
    let url = format!("http://a.example.com:{}/", addr.port());
    // Before its second passing probe no target is healthy: nothing is forwarded.
    let first = get(&client, &url).await;
    assert_eq!(first.status(), 503, "new targets are not healthy yet");
    assert_eq!(header(&first, "x-clb-answered-by"), "no-target");
    let health = plane.health_table();
    let start = std::time::Instant::now();
    while health.health("loc-hc", "127.0.0.1", up.port(), true) != Health::Alive
        || health.health("loc-hc", "127.0.0.1", closed.port(), true) != Health::Dead
    {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "probes did not settle"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for _ in 0..50 {
        let response = get(&client, &url).await;
        assert_eq!(response.status(), 200);
        assert_eq!(header(&response, "x-clb-target"), up.to_string());
    }
}

#[tokio::test]
async fn when_every_target_failed_its_health_check_requests_go_to_all_of_them() {
    let closed = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("bind")
        .local_addr()
        .expect("addr");
    let mut r = rule("loc-dead", "/", vec![backend(closed, 10)]);
    r.health = Some(HealthPlane {
        interval: Duration::from_millis(20),
        timeout: Duration::from_millis(15),
        healthy_threshold: 2,
        unhealthy_threshold: 2,
        http_codes: 31,
        path: "/".into(),
        host: None,
        get: false,
    });
    let cfg = one_lb(
        "lb-dead",
        random_vip(),
        vec![http_listener(
            "lbl-dead",
            80,
            vec![domain("a.example.com", true, vec![r])],
        )],
    );
    let plane = data_plane();
    plane.apply(cfg).await.expect("apply");
    let addr = plane.bound_addr("lb-dead", 80).expect("bound");
    let client = client(&["a.example.com"], addr, None);
    let url = format!("http://a.example.com:{}/", addr.port());
    let health = plane.health_table();
    let start = std::time::Instant::now();
    while health.health("loc-dead", "127.0.0.1", closed.port(), true) != Health::Dead {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "never marked dead"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // CLB forwards to every target when all are unhealthy: the refused connection is a 502.
    let response = get(&client, &url).await;
    assert_eq!(response.status(), 502);
    assert_eq!(header(&response, "x-clb-target"), closed.to_string());
}

#[tokio::test]
async fn https_request_is_routed_by_host_and_proxied_with_forwarded_proto_https() {
    let pki = TestPki::new();
    let a = pki.leaf("cert-a", &["a.example.com"]);
    let b = pki.leaf("cert-b", &["*.b.example.com"]);
    let l = pki.leaf("cert-l", &["listener.example.com"]);
    let echo = echo_backend("TLS-B").await;
    let mut listener = sni_listener(&a, &b, &l);
    listener.domains[1].rules = vec![rule("loc-b-api", "/api", vec![backend(echo, 5)])];
    let plane = data_plane();
    plane
        .apply(one_lb("lb-tls", random_vip(), vec![listener]))
        .await
        .expect("apply");
    let addr = plane.bound_addr("lb-tls", 443).expect("bound");
    let client = client(
        &["a.example.com", "x.b.example.com"],
        addr,
        Some(&pki.ca_pem),
    );

    let to_b = get(
        &client,
        &format!("https://x.b.example.com:{}/api/z", addr.port()),
    )
    .await;
    assert_eq!(to_b.status(), 200);
    assert_eq!(header(&to_b, "x-clb-domain"), "*.b.example.com");
    let echoed = json_body(to_b).await;
    assert_eq!(echoed["backend"], "TLS-B");
    assert_eq!(echoed["headers"]["x-forwarded-proto"], "https");

    let to_a = get(&client, &format!("https://a.example.com:{}/x", addr.port())).await;
    assert_eq!(header(&to_a, "x-clb-target"), "10.0.0.1:80");
    assert_eq!(json_body(to_a).await["protocol"], "https");
}

#[tokio::test]
async fn config_change_swaps_routes_without_rebinding_the_socket() {
    let (a, b) = (echo_backend("A").await, echo_backend("B").await);
    let vip = random_vip();
    let config = |backend_addr| {
        one_lb(
            "lb-swap",
            vip,
            vec![http_listener(
                "lbl-swap",
                80,
                vec![domain(
                    "a.example.com",
                    true,
                    vec![rule("loc-1", "/", vec![backend(backend_addr, 10)])],
                )],
            )],
        )
    };
    let plane = data_plane();
    plane.apply(config(a)).await.expect("apply");
    let addr = plane.bound_addr("lb-swap", 80).expect("bound");
    // One client: its pooled keep-alive connection sees the new routes too.
    let client = client(&["a.example.com"], addr, None);
    let url = format!("http://a.example.com:{}/", addr.port());
    assert_eq!(json_body(get(&client, &url).await).await["backend"], "A");

    plane.apply(config(b)).await.expect("swap");
    assert_eq!(plane.bound_addr("lb-swap", 80), Some(addr));
    assert_eq!(json_body(get(&client, &url).await).await["backend"], "B");
}

#[tokio::test]
async fn in_flight_request_completes_when_its_listener_is_removed() {
    let a = echo_backend("A").await;
    let cfg = one_lb(
        "lb-drain",
        random_vip(),
        vec![http_listener(
            "lbl-drain",
            80,
            vec![domain(
                "a.example.com",
                true,
                vec![rule("loc-1", "/", vec![backend(a, 10)])],
            )],
        )],
    );
    let plane = data_plane();
    plane.apply(cfg).await.expect("apply");
    let addr = plane.bound_addr("lb-drain", 80).expect("bound");
    let client = client(&["a.example.com"], addr, None);
    let url = format!("http://a.example.com:{}/slow", addr.port());
    let in_flight = tokio::spawn(async move { client.get(url).send().await });
    // Let the request reach the slow backend, then remove the listener.
    tokio::time::sleep(SLOW_BACKEND_DELAY / 4).await;
    plane
        .apply(DataPlaneConfig::default())
        .await
        .expect("remove");
    assert_eq!(plane.bound_addr("lb-drain", 80), None);
    let response = in_flight
        .await
        .expect("request task")
        .expect("the in-flight request is answered");
    assert_eq!(response.status(), 200);
    assert_eq!(json_body(response).await["backend"], "A");
}

// ---------------------------------------------------------------------------------------------
// Path normalisation (nginx): routing uses the decoded, merged, dot-resolved path.

/// Send `GET {target}` with `Host: {host}` on a raw connection (reqwest's URL parser would
/// resolve `..` itself) and return the status code and the whole response as text.
async fn raw_get(addr: SocketAddr, host: &str, target: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let connect = tokio::net::TcpStream::connect(addr);
    let mut stream = tokio::time::timeout(REQUEST_TIMEOUT, connect)
        .await
        .expect("connect in time")
        .expect("connect to the data plane");
    let request = format!("GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .expect("send the request");
    let mut response = Vec::new();
    tokio::time::timeout(REQUEST_TIMEOUT, stream.read_to_end(&mut response))
        .await
        .expect("response in time")
        .expect("read the response");
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    (status, text)
}

/// What the translation makes of Prefix `/api` -> api and Prefix `/` -> web on `a.example.com`.
fn api_and_web_config(vip: Ipv4Addr, api: SocketAddr, web: SocketAddr) -> DataPlaneConfig {
    one_lb(
        "lb-norm",
        vip,
        vec![http_listener(
            "lbl-norm",
            80,
            vec![domain(
                "a.example.com",
                true,
                vec![
                    rule("loc-web", "/", vec![backend(web, 10)]),
                    rule("loc-api-exact", "=/api", vec![backend(api, 10)]),
                    rule("loc-api", "/api/", vec![backend(api, 10)]),
                ],
            )],
        )],
    )
}

#[tokio::test]
async fn double_slash_percent_encoded_and_dot_dot_paths_reach_the_api_prefix() {
    let (api, web) = (echo_backend("api").await, echo_backend("web").await);
    let plane = data_plane();
    plane
        .apply(api_and_web_config(random_vip(), api, web))
        .await
        .expect("apply");
    let addr = plane.bound_addr("lb-norm", 80).expect("bound");
    for target in [
        "//api/users",
        "/%61pi/users",
        "/x/../api/users",
        "/api%2Fusers",
        "/./api/./users",
        "/%2E%2E%2Fapi/users/../users",
    ] {
        let (status, text) = raw_get(addr, "a.example.com", target).await;
        // A `..` above the root is refused (checked below); every other target reaches api.
        if target.starts_with("/%2E%2E") {
            assert_eq!(status, 400, "{target}: {text}");
            continue;
        }
        assert_eq!(status, 200, "{target}: {text}");
        assert!(text.contains("x-clb-url: /api/"), "{target}: {text}");
        assert!(text.contains(r#""backend":"api""#), "{target}: {text}");
        // The upstream gets the request target as the client sent it, like nginx's proxy_pass.
        assert!(
            text.contains(&format!(r#""uri":"{target}""#)),
            "{target}: {text}"
        );
    }
    let (status, text) = raw_get(addr, "a.example.com", "/api/../users").await;
    assert_eq!(status, 200, "{text}");
    assert!(text.contains(r#""backend":"web""#), "{text}");
}

#[tokio::test]
async fn targets_nginx_refuses_are_answered_400_before_any_domain_is_chosen() {
    let (api, web) = (echo_backend("api").await, echo_backend("web").await);
    let plane = data_plane();
    plane
        .apply(api_and_web_config(random_vip(), api, web))
        .await
        .expect("apply");
    let addr = plane.bound_addr("lb-norm", 80).expect("bound");
    for target in ["/..", "/api/../../x", "/api%zz", "/api%4", "/a%00b"] {
        let (status, text) = raw_get(addr, "a.example.com", target).await;
        assert_eq!(status, 400, "{target}: {text}");
        assert!(
            text.contains("x-clb-answered-by: bad-request"),
            "{target}: {text}"
        );
        assert!(!text.contains("x-clb-url"), "{target}: {text}");
    }
}
