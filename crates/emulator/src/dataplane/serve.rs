//! Request handling: CLB routing of one request, weighted target choice, the real HTTP/1.1
//! proxy to loopback targets, and the emulator's own answers (synthetic 200 for non-loopback
//! targets, 301, 400, 404, 502, 503, 504), all tagged with `x-clb-*` headers.
//!
//! Safety rule: a target is only ever connected to when its IP parses as an IPv4 address in
//! 127.0.0.0/8; the upstream URL is built from that parsed address, never from the raw string.

use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, Uri, Version};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;

use super::listener::ListenerState;
use super::{PlaneProtocol, RulePlane, TargetPlane};
use crate::health::{Health, HealthTable};
use clb_ingress_core::matching::clb::{ClbRoute, normalize_host, normalize_path};

/// Connect timeout towards a loopback target; a failure answers 502.
const PROXY_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a loopback target may take to answer with its response head; then 504.
const PROXY_RESPONSE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long idle pooled connections to targets are kept.
const PROXY_POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Names of the routing facts headers added to every response the data plane can attribute.
pub const HEADER_LB: &str = "x-clb-lb";
pub const HEADER_LISTENER: &str = "x-clb-listener";
pub const HEADER_DOMAIN: &str = "x-clb-domain";
pub const HEADER_URL: &str = "x-clb-url";
pub const HEADER_LOCATION: &str = "x-clb-location";
pub const HEADER_TARGET: &str = "x-clb-target";
/// Set on responses the emulator wrote itself (not proxied): `synthetic`, `not-found`, ...
pub const HEADER_ANSWERED_BY: &str = "x-clb-answered-by";

/// Hop-by-hop headers (RFC 9110 §7.6.1) that are not forwarded in either direction.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

pub type Body = BoxBody<Bytes, hyper::Error>;

/// The scheme a listener protocol serves.
pub fn scheme(protocol: PlaneProtocol) -> &'static str {
    match protocol {
        PlaneProtocol::Http => "http",
        PlaneProtocol::Https => "https",
    }
}

/// Shared by all listeners of one data plane: the target-choice RNG and the proxy client.
#[derive(Debug)]
pub struct Handler {
    rng: Mutex<StdRng>,
    client: Client<HttpConnector, Incoming>,
    health: Arc<HealthTable>,
}

impl Handler {
    pub fn new(rng_seed: Option<u64>, health: Arc<HealthTable>) -> Self {
        let rng = rng_seed.map_or_else(StdRng::from_os_rng, StdRng::seed_from_u64);
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(PROXY_CONNECT_TIMEOUT));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(PROXY_POOL_IDLE_TIMEOUT)
            .build(connector);
        Self {
            rng: Mutex::new(rng),
            client,
            health,
        }
    }

    /// Route and answer one request of `state`'s listener.
    pub async fn handle(
        &self,
        state: &ListenerState,
        protocol: PlaneProtocol,
        peer: SocketAddr,
        req: Request<Incoming>,
    ) -> Result<Response<Body>, Infallible> {
        let host = request_host(&req);
        let path_and_query = req
            .uri()
            .path_and_query()
            .map_or_else(|| "/".to_owned(), |pq| pq.as_str().to_owned());
        let mut facts = Facts {
            lb_id: &state.lb_id,
            listener_id: &state.listener_id,
            domain: None,
            rule: None,
            target: None,
        };
        let response = match state.matcher.route(&host, &path_and_query) {
            ClbRoute::Redirect { location } => redirect(scheme(protocol), &host, &location, &facts),
            // nginx refuses the target while parsing it, before any domain is chosen.
            ClbRoute::BadRequest(_) => emulator_answer(
                StatusCode::BAD_REQUEST,
                "bad-request",
                &facts,
                &host,
                &path_and_query,
            ),
            ClbRoute::NotFound => {
                // The domain that had no matching URL, if any did serve the host.
                facts.domain = state
                    .matcher
                    .pick_domain(&normalize_host(&host))
                    .and_then(|d| state.domains.get(d))
                    .map(|d| d.domain.as_str());
                emulator_answer(
                    StatusCode::NOT_FOUND,
                    "not-found",
                    &facts,
                    &host,
                    &path_and_query,
                )
            }
            ClbRoute::Rule { domain, rule } => {
                let found = state
                    .domains
                    .get(domain)
                    .and_then(|d| d.rules.get(rule).map(|r| (d.domain.as_str(), r)));
                let Some((domain, rule)) = found else {
                    // The matcher named a rule that does not exist: treat as no match.
                    return Ok(emulator_answer(
                        StatusCode::NOT_FOUND,
                        "not-found",
                        &facts,
                        &host,
                        &path_and_query,
                    ));
                };
                facts.domain = Some(domain);
                facts.rule = Some(rule);
                if let Some(rw) = &rule.rewrite {
                    return Ok(rewrite(state, rw, &host, &path_and_query, &facts));
                }
                let Some(target) = self.choose_target(rule) else {
                    return Ok(emulator_answer(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "no-target",
                        &facts,
                        &host,
                        &path_and_query,
                    ));
                };
                facts.target = Some(target);
                match loopback_target(target) {
                    Some(ip) => {
                        let upstream = SocketAddrV4::new(ip, target.port);
                        self.proxy(req, upstream, (protocol, peer), &host, &facts)
                            .await
                    }
                    None => synthetic(state, protocol, &facts, &req, &host, &path_and_query),
                }
            }
        };
        Ok(response)
    }

    /// A weighted random choice among the rule's targets with weight > 0 that its health
    /// check lets through (all of them with the check off). As CLB (214/6097): when every
    /// weighted target was found unhealthy (`Dead`), requests go to all of them; targets still
    /// being checked (`Unknown`) get none.
    fn choose_target<'t>(&self, rule: &'t RulePlane) -> Option<&'t TargetPlane> {
        let check = rule.health.is_some();
        let health: Vec<Health> = rule
            .targets
            .iter()
            .map(|t| self.health.health(&rule.location_id, &t.ip, t.port, check))
            .collect();
        let mut weighted = rule
            .targets
            .iter()
            .zip(&health)
            .filter(|(t, _)| t.weight > 0)
            .peekable();
        let all_dead = weighted.peek().is_some() && weighted.all(|(_, h)| *h == Health::Dead);
        let eligible = || {
            rule.targets
                .iter()
                .zip(&health)
                .filter(move |(_, h)| all_dead || h.routable())
                .map(|(t, _)| t)
        };
        let total = total_weight(eligible());
        if total == 0 {
            return None;
        }
        let roll = self
            .rng
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .random_range(0..total);
        pick_weighted(eligible(), roll)
    }

    /// Forward `req` to the loopback `upstream` over HTTP/1.1.
    async fn proxy(
        &self,
        req: Request<Incoming>,
        upstream: SocketAddrV4,
        client: (PlaneProtocol, SocketAddr),
        host: &str,
        facts: &Facts<'_>,
    ) -> Response<Body> {
        let (protocol, peer) = client;
        let (mut parts, body) = req.into_parts();
        let path_and_query = parts
            .uri
            .path_and_query()
            .map_or("/", |pq| pq.as_str())
            .to_owned();
        let Ok(uri) = format!("http://{upstream}{path_and_query}").parse::<Uri>() else {
            return emulator_answer(StatusCode::BAD_REQUEST, "bad-request", facts, host, "");
        };
        parts.uri = uri;
        parts.version = Version::HTTP_11;
        strip_hop_by_hop(&mut parts.headers);
        add_forwarded(&mut parts.headers, peer, protocol, host);
        let forwarded = Request::from_parts(parts, body);
        match tokio::time::timeout(PROXY_RESPONSE_TIMEOUT, self.client.request(forwarded)).await {
            Ok(Ok(response)) => {
                let (mut parts, body) = response.into_parts();
                strip_hop_by_hop(&mut parts.headers);
                facts.write(&mut parts.headers);
                Response::from_parts(parts, body.boxed())
            }
            Ok(Err(err)) => {
                tracing::debug!(%upstream, error = %err, "data plane proxy failed");
                emulator_answer(
                    StatusCode::BAD_GATEWAY,
                    "bad-gateway",
                    facts,
                    host,
                    &path_and_query,
                )
            }
            Err(_) => emulator_answer(
                StatusCode::GATEWAY_TIMEOUT,
                "gateway-timeout",
                facts,
                host,
                &path_and_query,
            ),
        }
    }
}

/// The routing facts known about a request so far.
struct Facts<'a> {
    lb_id: &'a str,
    listener_id: &'a str,
    /// The domain serving the request's host.
    domain: Option<&'a str>,
    /// The matched URL rule.
    rule: Option<&'a RulePlane>,
    target: Option<&'a TargetPlane>,
}

impl Facts<'_> {
    fn write(&self, headers: &mut HeaderMap) {
        let mut put = |name: &'static str, value: &str| {
            if let Ok(value) = HeaderValue::from_str(value) {
                headers.insert(HeaderName::from_static(name), value);
            }
        };
        put(HEADER_LB, self.lb_id);
        put(HEADER_LISTENER, self.listener_id);
        if let Some(domain) = self.domain {
            put(HEADER_DOMAIN, domain);
        }
        if let Some(rule) = self.rule {
            put(HEADER_URL, &rule.url);
            put(HEADER_LOCATION, &rule.location_id);
        }
        if let Some(target) = self.target {
            put(HEADER_TARGET, &target_label(target));
        }
    }
}

/// `ip:port`, or `instance:port` for CVM targets.
pub fn target_label(target: &TargetPlane) -> String {
    match &target.instance_id {
        Some(instance) => format!("{instance}:{}", target.port),
        None => format!("{}:{}", target.ip, target.port),
    }
}

/// The target's address if it may be connected to: an IPv4 address in 127.0.0.0/8 only.
pub fn loopback_target(target: &TargetPlane) -> Option<Ipv4Addr> {
    target
        .ip
        .trim()
        .parse::<Ipv4Addr>()
        .ok()
        .filter(Ipv4Addr::is_loopback)
}

/// Sum of the weights of a rule's targets (weight 0 contributes nothing).
pub fn total_weight<'t>(targets: impl IntoIterator<Item = &'t TargetPlane>) -> u64 {
    targets.into_iter().map(|t| u64::from(t.weight)).sum()
}

/// The target a roll in `0..total_weight(targets)` lands on; weight-0 targets are never picked.
pub fn pick_weighted<'t>(
    targets: impl IntoIterator<Item = &'t TargetPlane>,
    roll: u64,
) -> Option<&'t TargetPlane> {
    let mut remaining = roll;
    for target in targets.into_iter().filter(|t| t.weight > 0) {
        let weight = u64::from(target.weight);
        if remaining < weight {
            return Some(target);
        }
        remaining -= weight;
    }
    None
}

/// The request's host: the `Host` header, else the request-target's authority, else empty.
fn request_host<B>(req: &Request<B>) -> String {
    req.headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| req.uri().authority().map(|a| a.as_str().to_owned()))
        .unwrap_or_default()
}

/// The `Location` of a trailing-slash 301: absolute (`scheme://Host/path?query`, with the Host
/// header as the client sent it, port included) when the request has a usable Host, otherwise
/// the bare path and query the matcher produced.
pub fn redirect_location(scheme: &str, host: &str, location: &str) -> String {
    let usable_host =
        !host.is_empty() && !host.contains('@') && host.parse::<http::uri::Authority>().is_ok();
    if usable_host {
        format!("{scheme}://{host}{location}")
    } else {
        location.to_owned()
    }
}

fn redirect(scheme: &str, host: &str, location: &str, facts: &Facts<'_>) -> Response<Body> {
    let absolute = redirect_location(scheme, host, location);
    let value = HeaderValue::from_str(&absolute).or_else(|_| HeaderValue::from_str(location));
    let Ok(value) = value else {
        return emulator_answer(
            StatusCode::BAD_REQUEST,
            "bad-request",
            facts,
            host,
            location,
        );
    };
    let mut response = Response::new(full(Bytes::new()));
    *response.status_mut() = StatusCode::MOVED_PERMANENTLY;
    response.headers_mut().insert(header::LOCATION, value);
    tag(&mut response, "redirect", facts);
    response
}

/// A rule redirected by AutoRewrite/ManualRewrite: `code` to the target listener, same host.
fn rewrite(
    state: &ListenerState,
    rw: &super::RewritePlane,
    host: &str,
    path_and_query: &str,
    facts: &Facts<'_>,
) -> Response<Body> {
    let bare_host = host.rsplit_once(':').map_or(host, |(h, p)| {
        if p.bytes().all(|b| b.is_ascii_digit()) {
            h
        } else {
            host
        }
    });
    let port = state
        .rewrite_ports
        .get(&rw.port)
        .copied()
        .unwrap_or(rw.port);
    let path = rw.url.as_deref().unwrap_or(path_and_query);
    let location = format!("{}://{bare_host}:{port}{path}", scheme(rw.protocol));
    let status = StatusCode::from_u16(rw.code).unwrap_or(StatusCode::FOUND);
    let Ok(value) = HeaderValue::from_str(&location) else {
        return emulator_answer(
            StatusCode::BAD_REQUEST,
            "bad-request",
            facts,
            host,
            path_and_query,
        );
    };
    let mut response = Response::new(full(Bytes::new()));
    *response.status_mut() = status;
    response.headers_mut().insert(header::LOCATION, value);
    tag(&mut response, "rewrite", facts);
    response
}

/// A JSON answer written by the emulator (error statuses).
fn emulator_answer(
    status: StatusCode,
    kind: &'static str,
    facts: &Facts<'_>,
    host: &str,
    path_and_query: &str,
) -> Response<Body> {
    let body = json!({
        "status": status.as_u16(),
        "error": kind,
        "lb_id": facts.lb_id,
        "listener_id": facts.listener_id,
        "domain": facts.domain,
        "url": facts.rule.map(|r| r.url.as_str()),
        "location_id": facts.rule.map(|r| r.location_id.as_str()),
        "target": facts.target.map(target_label),
        "host": host,
        "path": path_and_query,
    });
    json_response(status, &body, kind, facts)
}

/// The synthetic 200 for a non-loopback target: the routing decision as headers and JSON.
fn synthetic(
    state: &ListenerState,
    protocol: PlaneProtocol,
    facts: &Facts<'_>,
    req: &Request<Incoming>,
    host: &str,
    path_and_query: &str,
) -> Response<Body> {
    let target = facts.target;
    let body = json!({
        "answered_by": "clb-emulator",
        "lb_id": facts.lb_id,
        "listener_id": facts.listener_id,
        "listener_port": state.port,
        "protocol": scheme(protocol),
        "domain": facts.domain,
        "url": facts.rule.map(|r| r.url.as_str()),
        "location_id": facts.rule.map(|r| r.location_id.as_str()),
        "target": target.map(target_label),
        "target_ip": target.map(|t| t.ip.as_str()),
        "target_port": target.map(|t| t.port),
        "instance_id": target.and_then(|t| t.instance_id.as_deref()),
        "weight": target.map(|t| t.weight),
        "method": req.method().as_str(),
        "host": host,
        "path": raw_path(path_and_query),
        "normalized_path": normalize_path(path_and_query)
            .map(|p| String::from_utf8_lossy(&p).into_owned())
            .ok(),
        "path_and_query": path_and_query,
    });
    json_response(StatusCode::OK, &body, "synthetic", facts)
}

/// The request target's path as the client sent it (up to the first `?` or `#`).
fn raw_path(path_and_query: &str) -> &str {
    let end = path_and_query
        .find(['?', '#'])
        .unwrap_or(path_and_query.len());
    &path_and_query[..end]
}

fn json_response(
    status: StatusCode,
    body: &serde_json::Value,
    kind: &'static str,
    facts: &Facts<'_>,
) -> Response<Body> {
    let mut response = Response::new(full(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    tag(&mut response, kind, facts);
    response
}

fn tag(response: &mut Response<Body>, kind: &'static str, facts: &Facts<'_>) {
    let headers = response.headers_mut();
    facts.write(headers);
    headers.insert(
        HeaderName::from_static(HEADER_ANSWERED_BY),
        HeaderValue::from_static(kind),
    );
}

fn full(bytes: Bytes) -> Body {
    Full::new(bytes).map_err(|never| match never {}).boxed()
}

/// Remove hop-by-hop headers, including those the `Connection` header names.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named.iter().chain(HOP_BY_HOP.iter()) {
        headers.remove(name);
    }
    headers.remove(header::UPGRADE);
}

/// Append the client to `X-Forwarded-For`, set `X-Forwarded-Proto` and `X-Forwarded-Host`.
fn add_forwarded(headers: &mut HeaderMap, peer: SocketAddr, protocol: PlaneProtocol, host: &str) {
    let client = peer.ip().to_string();
    let forwarded_for = match headers.get(&X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
        Some(previous) if !previous.trim().is_empty() => format!("{previous}, {client}"),
        _ => client,
    };
    if let Ok(value) = HeaderValue::from_str(&forwarded_for) {
        headers.insert(X_FORWARDED_FOR, value);
    }
    headers.insert(
        X_FORWARDED_PROTO,
        HeaderValue::from_static(scheme(protocol)),
    );
    if let Ok(value) = HeaderValue::from_str(host) {
        if !host.is_empty() {
            headers.insert(X_FORWARDED_HOST, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(ip: &str, weight: u32) -> TargetPlane {
        TargetPlane {
            instance_id: None,
            ip: ip.into(),
            port: 80,
            weight,
        }
    }

    #[test]
    fn weight_zero_targets_are_never_picked_for_any_roll() {
        let targets = [
            target("a", 0),
            target("b", 2),
            target("c", 0),
            target("d", 1),
        ];
        let total = total_weight(&targets);
        assert_eq!(total, 3);
        let picked: Vec<&str> = (0..total)
            .map(|roll| pick_weighted(&targets, roll).map_or("", |t| t.ip.as_str()))
            .collect();
        assert_eq!(picked, ["b", "b", "d"]);
    }

    #[test]
    fn rule_whose_targets_all_weigh_zero_picks_nothing() {
        let targets = [target("a", 0), target("b", 0)];
        assert_eq!(total_weight(&targets), 0);
        assert!(pick_weighted(&targets, 0).is_none());
    }

    #[test]
    fn roll_beyond_the_total_weight_picks_nothing() {
        assert!(pick_weighted(&[target("a", 1)], 1).is_none());
    }

    #[test]
    fn only_ipv4_loopback_targets_may_be_connected_to() {
        assert_eq!(
            loopback_target(&target("127.0.0.1", 1)),
            Some(Ipv4Addr::LOCALHOST)
        );
        assert!(loopback_target(&target("127.9.8.7", 1)).is_some());
        for ip in [
            "10.0.0.1",
            "192.168.1.1",
            "0.0.0.0",
            "::1",
            "localhost",
            "127.0.0.1:80",
            "",
        ] {
            assert!(loopback_target(&target(ip, 1)).is_none(), "{ip}");
        }
    }

    #[test]
    fn cvm_targets_are_labelled_by_instance_and_eni_targets_by_ip() {
        let mut t = target("10.1.2.3", 1);
        assert_eq!(target_label(&t), "10.1.2.3:80");
        t.instance_id = Some("ins-abc".into());
        assert_eq!(target_label(&t), "ins-abc:80");
    }

    #[test]
    fn redirect_location_is_absolute_with_the_request_host_and_scheme() {
        assert_eq!(
            redirect_location("https", "a.com:8443", "/abc/?x=1"),
            "https://a.com:8443/abc/?x=1"
        );
    }

    #[test]
    fn redirect_location_is_path_only_without_a_usable_host() {
        assert_eq!(redirect_location("http", "", "/abc/"), "/abc/");
        assert_eq!(redirect_location("http", "u@evil", "/abc/"), "/abc/");
        assert_eq!(redirect_location("http", "a b", "/abc/"), "/abc/");
    }

    #[test]
    fn hop_by_hop_headers_and_those_named_by_connection_are_stripped() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONNECTION,
            HeaderValue::from_static("x-secret, close"),
        );
        headers.insert("x-secret", HeaderValue::from_static("1"));
        headers.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        headers.insert("x-keep", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut headers);
        assert_eq!(headers.len(), 1);
        assert!(headers.contains_key("x-keep"));
    }

    #[test]
    fn forwarded_for_appends_the_client_to_an_existing_chain() {
        let mut headers = HeaderMap::new();
        headers.insert(X_FORWARDED_FOR, HeaderValue::from_static("1.2.3.4"));
        let peer: SocketAddr = "127.0.0.5:4000".parse().expect("a socket address");
        add_forwarded(&mut headers, peer, PlaneProtocol::Https, "a.com");
        assert_eq!(headers[&X_FORWARDED_FOR], "1.2.3.4, 127.0.0.5");
        assert_eq!(headers[&X_FORWARDED_PROTO], "https");
        assert_eq!(headers[&X_FORWARDED_HOST], "a.com");
    }
}
