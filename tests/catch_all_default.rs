//! Unknown hosts stay isolated only while clb-ingress's catch-all domain is each listener's
//! DefaultServer: CLB moves the default to the earliest remaining domain when the default
//! domain's last rule goes without a new default named. These tests drive a sequence of
//! changes through `apply` and read, from the emulator's record of every listener's default
//! domain after every write, that no step ever let the default leave the catch-all.

use clb_test_support::emulator::{Emulator, TlsSecret, command};
use std::path::Path;

/// `plan -f <file> -o json` offline, which exits non-zero when the model has problems: its
/// JSON output as text.
fn plan_text(file: &Path) -> String {
    let out = command()
        .arg("plan")
        .arg("-f")
        .arg(file)
        .args(["-o", "json", "--cluster-id", "c1"])
        .output()
        .expect("run clb-ingress plan");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

const DEFAULT_CATCH_ALL: &str = "unmatched.clb-ingress.invalid";

/// A Shared class (all Ingresses on one CLB) with an optional `catchAllDomain`.
fn class(catch_all: Option<&str>) -> String {
    let extra = catch_all
        .map(|d| format!(", catchAllDomain: {d}"))
        .unwrap_or_default();
    format!(
        "apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: {{name: c}}
spec:
  controller: clb-ingress.io/ingress-controller
  parameters: {{apiGroup: clb-ingress.io, kind: ClbClassParameters, name: c}}
---
apiVersion: clb-ingress.io/v1alpha1
kind: ClbClassParameters
metadata: {{name: c}}
spec: {{targetMode: Direct, sharing: Shared, tenancy: {{catchAll: {{namespaces: ['*']}}}}{extra}}}
---
apiVersion: v1
kind: Service
metadata: {{name: web, namespace: default}}
spec: {{ports: [{{name: http, port: 80}}]}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: web-1, namespace: default, labels: {{kubernetes.io/service-name: web}}}}
addressType: IPv4
ports: [{{name: http, port: 8080}}]
endpoints:
- {{addresses: [10.0.0.1]}}
"
    )
}

fn secret(s: &TlsSecret) -> String {
    let indent = |t: &str| t.lines().map(|l| format!("    {l}\n")).collect::<String>();
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: {}, namespace: default}}\ntype: kubernetes.io/tls\nstringData:\n  tls.crt: |\n{}  tls.key: |\n{}",
        s.name,
        indent(&s.cert_pem),
        indent(&s.key_pem)
    )
}

/// One Ingress named after its host, with `/` and `/api`, TLS when `tls` names a Secret, and
/// the class's `defaultBackend` when `default_backend`.
fn ingress(host: &str, tls: Option<&str>, default_backend: bool) -> String {
    let name = host.split('.').next().unwrap_or(host);
    let tls = tls
        .map(|s| format!("  tls:\n  - hosts: [{host}]\n    secretName: {s}\n"))
        .unwrap_or_default();
    let default_backend = if default_backend {
        "  defaultBackend: {service: {name: web, port: {number: 80}}}\n"
    } else {
        ""
    };
    format!(
        "apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {{name: {name}, namespace: default}}
spec:
  ingressClassName: c
{tls}{default_backend}  rules:
  - host: {host}
    http:
      paths:
      - {{path: /, pathType: Prefix, backend: {{service: {{name: web, port: {{number: 80}}}}}}}}
      - {{path: /api, pathType: Prefix, backend: {{service: {{name: web, port: {{number: 80}}}}}}}}
"
    )
}

fn apply_step(emu: &Emulator, dir: &Path, step: usize, docs: &[String]) {
    let file = dir.join(format!("step{step}.yaml"));
    std::fs::write(&file, docs.join("---\n")).unwrap();
    emu.apply(&[&file], &["--cluster-id", "c1", "--prune"])
        .expect_ok(&format!("apply step {step}"));
}

/// Every default domain any listener had after any write, with the listener id.
fn defaults_seen(emu: &Emulator) -> Vec<(String, Option<String>)> {
    emu.counters()
        .default_domains
        .into_iter()
        .flat_map(|(l, h)| h.into_iter().map(move |d| (l.clone(), d)))
        .collect()
}

#[test]
fn hosts_coming_and_going_never_move_the_default_domain_off_the_catch_all() {
    let dir = tempfile::tempdir().unwrap();
    let emu = Emulator::start(&["--task-delay-ms", "0"]);
    let a = TlsSecret::generate("a-tls", "a.example.com");
    let c = TlsSecret::generate("c-tls", "c.example.com");
    let base = class(None);
    let steps: Vec<Vec<String>> = vec![
        // Two hosts, one on HTTPS, and a default backend on the catch-all.
        vec![
            base.clone(),
            secret(&a),
            ingress("a.example.com", Some("a-tls"), true),
            ingress("b.example.com", None, false),
        ],
        // The first host goes, a new HTTPS host comes.
        vec![
            base.clone(),
            secret(&c),
            ingress("b.example.com", None, false),
            ingress("c.example.com", Some("c-tls"), false),
        ],
        // Only the HTTPS host stays, now with the default backend.
        vec![
            base.clone(),
            secret(&c),
            ingress("c.example.com", Some("c-tls"), true),
        ],
        // Everything returns.
        vec![
            base.clone(),
            secret(&a),
            secret(&c),
            ingress("a.example.com", Some("a-tls"), false),
            ingress("b.example.com", None, true),
            ingress("c.example.com", Some("c-tls"), false),
        ],
    ];
    for (i, docs) in steps.iter().enumerate() {
        apply_step(&emu, dir.path(), i, docs);
    }
    let seen = defaults_seen(&emu);
    // Both listeners (HTTP and HTTPS) were watched.
    let listeners: std::collections::BTreeSet<&String> = seen.iter().map(|(l, _)| l).collect();
    assert_eq!(listeners.len(), 2, "{seen:?}");
    for (listener, d) in &seen {
        assert_eq!(
            d.as_deref(),
            Some(DEFAULT_CATCH_ALL),
            "listener {listener} had default {d:?} after some write: {seen:?}"
        );
    }
    // The last state is in sync: a second apply writes nothing.
    emu.reset_counters();
    apply_step(&emu, dir.path(), 99, steps.last().unwrap());
    assert_eq!(emu.counters().total_writes, 0, "{:?}", emu.counters());
}

#[test]
fn a_class_can_name_its_own_catch_all_domain_and_switching_to_it_keeps_a_catch_all_the_default() {
    let dir = tempfile::tempdir().unwrap();
    let emu = Emulator::start(&["--task-delay-ms", "0"]);
    let custom = "unmatched.example.internal";
    let hosts = |catch_all: Option<&str>| {
        vec![
            class(catch_all),
            ingress("a.example.com", None, true),
            ingress("b.example.com", None, false),
        ]
    };
    apply_step(&emu, dir.path(), 0, &hosts(None));
    apply_step(&emu, dir.path(), 1, &hosts(Some(custom)));
    let seen = defaults_seen(&emu);
    assert!(!seen.is_empty());
    for (listener, d) in &seen {
        assert!(
            d.as_deref() == Some(DEFAULT_CATCH_ALL) || d.as_deref() == Some(custom),
            "listener {listener} had default {d:?} after some write: {seen:?}"
        );
    }
    // It ends on the class's own name, and the old catch-all is gone.
    assert_eq!(seen.last().unwrap().1.as_deref(), Some(custom), "{seen:?}");
    let state = emu.state().to_string();
    assert!(!state.contains(DEFAULT_CATCH_ALL), "{state}");
    // A host equal to the catch-all name is refused (its host parked), the rest serve.
    let mut docs = hosts(Some(custom));
    docs.push(ingress(custom, None, false));
    let file = dir.path().join("clash.yaml");
    std::fs::write(&file, docs.join("---\n")).unwrap();
    let text = plan_text(&file);
    assert!(
        text.contains("is the catch-all domain of this CLB's listeners"),
        "{text}"
    );
}

#[test]
fn an_unusable_catch_all_domain_in_class_parameters_stops_the_class_with_a_named_problem() {
    let dir = tempfile::tempdir().unwrap();
    for bad in ["'*.example.com'", "Upper.Example.com", "'a..b'"] {
        let docs = [class(Some(bad)), ingress("a.example.com", None, false)];
        let file = dir.path().join("bad.yaml");
        std::fs::write(&file, docs.join("---\n")).unwrap();
        let text = plan_text(&file);
        assert!(text.contains("catchAllDomain"), "{bad}: {text}");
        assert!(text.contains("InvalidClassParameters"), "{bad}: {text}");
        assert!(text.contains("\"stacks\": []"), "{bad}: {text}");
    }
}
