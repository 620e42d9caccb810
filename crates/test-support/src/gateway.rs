//! Helpers of the Gateway API end-to-end tests: an in-process emulator with its data plane,
//! `apply -f` against it, the Gateway addresses `apply` prints, and status conditions.

use crate::emulator::command;
use clb_ingress::emulator::config::Settings;
use clb_ingress::emulator::core::SystemClock;
use clb_ingress::emulator::dataplane::{DataPlane, DataPlaneSettings};
use clb_ingress::emulator::server;
use serde_json::Value;
use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::Arc;

/// An in-process CLB emulator whose data plane serves listener port `p` on `p + offset`.
pub struct Plane {
    pub endpoint: String,
    pub offset: u16,
    pub emu: server::Running,
}

impl Plane {
    /// Start on a random loopback VIP range and port offset (task delay 0).
    pub async fn start() -> Self {
        let offset: u16 = rand::random_range(20_000..50_000);
        let vip = Ipv4Addr::new(127, rand::random_range(2..=254), rand::random(), 1);
        let settings = Settings {
            listen: "127.0.0.1:0".parse().expect("listen address"),
            vip_base: vip,
            port_offset: offset,
            task_delay_ms: 0,
            ..Settings::default()
        };
        let plane = Arc::new(DataPlane::new(DataPlaneSettings {
            port_offset: offset,
            ..DataPlaneSettings::default()
        }));
        let emu = server::start(settings, Arc::new(SystemClock), plane)
            .await
            .expect("start emulator");
        Plane {
            endpoint: format!("http://{}", emu.addr),
            offset,
            emu,
        }
    }

    /// `clb-ingress apply -f file --cluster-id id` against this emulator (from a
    /// multi-threaded runtime): (exit code, stdout, stderr).
    pub fn apply(&self, file: &Path, cluster_id: &str) -> (i32, String, String) {
        let out = tokio::task::block_in_place(|| {
            command()
                .arg("apply")
                .arg("-f")
                .arg(file)
                .args(["--clb-endpoint", &self.endpoint, "--cluster-id", cluster_id])
                .output()
                .expect("run clb-ingress apply")
        });
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// `GET /_emulator/state`'s `state` (`lbs` and `certs`).
    pub async fn state(&self) -> Value {
        let v: Value = reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("http client")
            .get(format!("{}/_emulator/state", self.endpoint))
            .bearer_auth(self.emu.app.admin_token())
            .send()
            .await
            .expect("emulator state")
            .json()
            .await
            .expect("state json");
        v["state"].clone()
    }
}

/// The VIP `apply` printed for Gateway `ns/name` (`Gateway ns/name: address VIP (...)`).
pub fn gateway_address(stdout: &str, ns_name: &str) -> Option<Ipv4Addr> {
    let prefix = format!("Gateway {ns_name}: address ");
    stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix(prefix.as_str()))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|a| a.parse().ok())
}

/// The condition of `type_` in a JSON conditions list, as (status, reason, message).
pub fn cond<'a>(conditions: &'a Value, type_: &str) -> (&'a str, &'a str, &'a str) {
    let c = conditions
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == type_))
        .unwrap_or_else(|| panic!("no {type_} condition in {conditions:#}"));
    (
        c["status"].as_str().unwrap_or(""),
        c["reason"].as_str().unwrap_or(""),
        c["message"].as_str().unwrap_or(""),
    )
}

/// Manifests of a Service `ns/name` with one named port and one ready pod `ip` serving it
/// on the same port (a Service and its EndpointSlice).
pub fn service_with_pod(ns: &str, name: &str, (port_name, port): (&str, u16), ip: &str) -> String {
    format!(
        "apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: {ns}}}
spec: {{ports: [{{name: {port_name}, port: {port}}}]}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: {name}-a, namespace: {ns}, labels: {{kubernetes.io/service-name: {name}}}}}
addressType: IPv4
ports: [{{name: {port_name}, port: {port}}}]
endpoints:
- {{addresses: [{ip}]}}
"
    )
}
