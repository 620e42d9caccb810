//! Manifest builders for scenario tests: a Direct-mode class, Services with pods, Ingresses.

pub const CLASS: &str = r#"
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: {name: clb, annotations: {ingressclass.kubernetes.io/is-default-class: "true"}}
spec: {controller: clb-ingress.io/ingress-controller, parameters: {apiGroup: clb-ingress.io, kind: ClbClassParameters, name: p}}
---
apiVersion: clb-ingress.io/v1alpha1
kind: ClbClassParameters
metadata: {name: p}
spec: {targetMode: Direct}
"#;

pub fn service(name: &str, pods: &[&str]) -> String {
    let eps: String = pods
        .iter()
        .map(|ip| format!("  - addresses: [\"{ip}\"]\n    conditions: {{ready: true}}\n"))
        .collect();
    format!(
        r#"
---
apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: default}}
spec: {{ports: [{{name: http, port: 80, targetPort: 8080}}]}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: {name}-1, namespace: default, labels: {{kubernetes.io/service-name: {name}}}}}
addressType: IPv4
ports: [{{name: http, port: 8080, protocol: TCP}}]
endpoints:
{eps}"#
    )
}

pub fn pods(prefix: &str, n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("{prefix}.{i}")).collect()
}

pub fn ingress(paths: &[(&str, &str, &str)]) -> String {
    let ps: String = paths
        .iter()
        .map(|(p, t, svc)| {
            format!(
                "          - {{path: \"{p}\", pathType: {t}, backend: {{service: {{name: {svc}, port: {{number: 80}}}}}}}}\n"
            )
        })
        .collect();
    format!(
        r#"
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {{name: web, namespace: default}}
spec:
  rules:
    - host: a.example.com
      http:
        paths:
{ps}"#
    )
}

pub fn world(ing: &str, services: &[(&str, Vec<String>)]) -> String {
    let mut s = CLASS.to_string();
    for (name, ips) in services {
        let refs: Vec<&str> = ips.iter().map(String::as_str).collect();
        s.push_str(&service(name, &refs));
    }
    s.push_str(ing);
    s
}

/// One Ingress serving `hosts` over HTTP and HTTPS with one kubernetes.io/tls Secret.
pub fn tls_world(hosts: &[&str], cert: &str, key: &str) -> String {
    let rules: String = hosts
        .iter()
        .map(|h| {
            format!(
                "    - host: {h}\n      http:\n        paths:\n          - {{path: /, pathType: Prefix, backend: {{service: {{name: web, port: {{number: 80}}}}}}}}\n"
            )
        })
        .collect();
    let tls_hosts = hosts.join(", ");
    let secret = format!(
        "\n---\napiVersion: v1\nkind: Secret\nmetadata: {{name: tls, namespace: default}}\ntype: kubernetes.io/tls\nstringData:\n  tls.crt: {:?}\n  tls.key: {:?}\n",
        cert, key
    );
    let ing = format!(
        "\n---\napiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {{name: web, namespace: default}}\nspec:\n  tls: [{{hosts: [{tls_hosts}], secretName: tls}}]\n  rules:\n{rules}"
    );
    world(&format!("{secret}{ing}"), &[("web", pods("10.0.0", 2))])
}
