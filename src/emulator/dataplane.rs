//! The emulator's data plane: serves each HTTP/HTTPS listener of each CLB on the CLB's loopback
//! VIP and routes requests with CLB's own matching (`crate::matching::clb`).
//!
//! INTERFACE (agreed between the control plane and the data plane): the control plane builds a
//! full `DataPlaneConfig` from its state after every change and hands it to `DataPlane::apply`.

use std::net::Ipv4Addr;

/// The whole data plane configuration: every CLB with its listeners.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DataPlaneConfig {
    pub lbs: Vec<LbPlane>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LbPlane {
    pub lb_id: String,
    /// The loopback VIP reported in DescribeLoadBalancers (127.x.y.z).
    pub vip: Ipv4Addr,
    pub listeners: Vec<ListenerPlane>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlaneProtocol {
    Http,
    Https,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerPlane {
    pub listener_id: String,
    pub protocol: PlaneProtocol,
    /// The CLB listener port (80, 443, ...); the socket binds `port + port_offset`.
    pub port: u16,
    /// Listener-level certificate (HTTPS without SNI, or the fallback with SNI).
    pub certificate: Option<CertPem>,
    pub sni: bool,
    /// Domains in creation order.
    pub domains: Vec<DomainPlane>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainPlane {
    pub domain: String,
    pub default_server: bool,
    /// Per-domain certificate (SNI listeners only).
    pub certificate: Option<CertPem>,
    /// Rules in creation order.
    pub rules: Vec<RulePlane>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RulePlane {
    pub location_id: String,
    pub url: String,
    pub targets: Vec<TargetPlane>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetPlane {
    /// `ins-...` for CVM targets (never connected to), or None for EniIp targets.
    pub instance_id: Option<String>,
    /// The target's IP (the EniIp, or the CVM's private IP as the emulator records it).
    pub ip: String,
    pub port: u16,
    pub weight: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertPem {
    pub cert_id: String,
    pub cert_pem: String,
    pub key_pem: String,
}
