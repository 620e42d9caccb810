//! `clb-ingress plan -f`: the examples plan cleanly; bad manifests fail naming object and field.

use std::process::Command;

fn plan(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(clb_test_support::emulator::bin())
        .arg("plan")
        .args(args)
        .output()
        .expect("run clb-ingress");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> String {
    let p = dir.path().join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

#[test]
fn the_examples_plan_without_problems_and_show_the_changes() {
    let (code, out, err) = plan(&["-f", "examples/"]);
    assert_eq!(code, 0, "stderr: {err}");
    assert!(err.is_empty(), "{err}");
    for want in [
        "CreateLoadBalancer",
        "CreateListener HTTPS 443",
        "shop.example.com",
        "=/healthz",
        "RegisterTargets",
    ] {
        assert!(out.contains(want), "missing {want:?} in\n{out}");
    }
    // The terminating pod 10.0.1.12 is never a target.
    assert!(!out.contains("10.0.1.12"), "{out}");
}

#[test]
fn json_output_parses_and_lists_stacks_and_changes() {
    let (code, out, _) = plan(&["-f", "examples/", "-o", "json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    let stacks = v["stacks"].as_array().unwrap();
    assert_eq!(stacks.len(), 1);
    assert!(stacks[0]["api_calls"].as_u64().unwrap() >= 5);
    assert!(stacks[0]["plan"]["changes"].as_array().unwrap().len() >= 5);
    assert!(
        !out.contains("PRIVATE KEY"),
        "the key must never be printed"
    );
}

const CLASS: &str = "apiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata: {name: clb}\nspec: {controller: clb-ingress.io/ingress-controller}\n";

#[test]
fn a_missing_service_is_reported_with_object_and_field_and_exit_code_one() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(
        &dir,
        "bad.yaml",
        &format!(
            "{CLASS}---\napiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {{name: web, namespace: shop}}\nspec:\n  ingressClassName: clb\n  rules:\n  - host: a.com\n    http:\n      paths:\n      - {{path: /, pathType: Prefix, backend: {{service: {{name: nope, port: {{number: 80}}}}}}}}\n"
        ),
    );
    let (code, _, err) = plan(&["-f", &f]);
    assert_eq!(code, 1);
    assert!(err.contains("Ingress shop/web"), "{err}");
    assert!(
        err.contains("spec.rules[0].http.paths[0].backend.service.name"),
        "{err}"
    );
    assert!(err.contains("ServiceNotFound"), "{err}");
}

#[test]
fn a_path_clb_cannot_express_parks_the_ingress_and_names_the_path_field() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(
        &dir,
        "bad.yaml",
        &format!(
            "{CLASS}---\napiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {{name: web}}\nspec:\n  ingressClassName: clb\n  rules:\n  - host: a.com\n    http:\n      paths:\n      - {{path: /ok, pathType: Prefix, backend: {{service: {{name: s, port: {{number: 80}}}}}}}}\n      - {{path: '/caf%C3%A9', pathType: Prefix, backend: {{service: {{name: s, port: {{number: 80}}}}}}}}\n"
        ),
    );
    let (code, out, err) = plan(&["-f", &f]);
    assert_eq!(code, 1);
    assert!(err.contains("spec.rules[0].http.paths[1].path"), "{err}");
    assert!(err.contains("InvalidPath (Parked)"), "{err}");
    assert!(
        out.contains("No Ingress"),
        "a parked Ingress creates nothing: {out}"
    );
}

#[test]
fn unparseable_yaml_fails_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(&dir, "broken.yaml", "kind: [unclosed\n");
    let (code, _, err) = plan(&["-f", &f]);
    assert_eq!(code, 2);
    assert!(err.contains("broken.yaml"), "{err}");
}

#[test]
fn an_object_of_the_wrong_shape_fails_naming_document_kind_and_name() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(
        &dir,
        "shape.yaml",
        "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {ports: \"eighty\"}\n",
    );
    let (code, _, err) = plan(&["-f", &f]);
    assert_eq!(code, 2);
    assert!(err.contains("document 1: Service s"), "{err}");
}

#[test]
fn the_demo_runs_api_server_emulator_and_controller_and_routes_requests_through_the_clb() {
    let out = Command::new(clb_test_support::emulator::bin())
        .args([
            "demo",
            "--once",
            "--listen",
            "127.0.0.1:0",
            "--vip-base",
            "127.77.0.1",
            "--port-offset",
            "20000",
        ])
        .output()
        .expect("run demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("class:clb: address 127.77.0.1"), "{stdout}");
    assert!(
        stdout.contains("kubectl get ingress -A   (2 Ingresses)"),
        "{stdout}"
    );
    // /api/ of shop.example.com goes to the api pod, over HTTP and HTTPS.
    assert_eq!(
        stdout.matches("200 -> 10.0.2.20:3000").count(),
        2,
        "{stdout}"
    );
    assert!(!stdout.contains("error:"), "{stdout}");
}

/// Run the binary with `args` until it prints a line starting with `ready`, send it SIGTERM at
/// once, and check that it exits cleanly (status 0) within 5 s.
fn stops_cleanly_on_sigterm(args: &[&str], ready: &str) {
    use std::io::{BufRead, BufReader};
    let mut child = Command::new(clb_test_support::emulator::bin())
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("run");
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines().map_while(Result::ok);
    let up = lines.any(|l| l.starts_with(ready));
    assert!(up, "{args:?} did not come up");
    let started = std::time::Instant::now();
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    // Keep reading (a closed pipe would fail a later print, not the signal handling).
    let drain = std::thread::spawn(move || lines.count());
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if started.elapsed() > std::time::Duration::from_secs(5) {
            let _ = child.kill();
            panic!("{args:?} ignored SIGTERM");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let _ = drain.join();
    assert!(status.success(), "{args:?}: {status}");
}

#[test]
fn the_demo_stops_on_sigterm() {
    let kubeconfig = std::env::temp_dir().join(format!(
        "clb-demo-sigterm-{}.kubeconfig",
        std::process::id()
    ));
    stops_cleanly_on_sigterm(
        &[
            "demo",
            "--listen",
            "127.0.0.1:0",
            "--kube-listen",
            "127.0.0.1:0",
            "--metrics-addr",
            "127.0.0.1:0",
            "--kubeconfig-out",
            kubeconfig.to_str().expect("utf-8 path"),
            "--vip-base",
            "127.78.0.1",
            "--port-offset",
            "21000",
        ],
        "Serving until",
    );
}

#[test]
fn the_emulator_and_the_test_api_server_stop_cleanly_on_sigterm() {
    stops_cleanly_on_sigterm(
        &["emulator", "--listen", "127.0.0.1:0", "--no-data-plane"],
        "clb-ingress emulator listening on",
    );
    stops_cleanly_on_sigterm(
        &["test-apiserver", "--listen", "127.0.0.1:0"],
        "test API server:",
    );
}

/// One Ingress and its Service, without any IngressClass (as a team's app repository has it).
const LONE_INGRESS: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: shop}\nspec:\n  type: NodePort\n  ports: [{name: http, port: 80, targetPort: 8080, nodePort: 30080}]\n---\napiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: web, namespace: shop}\nspec:\n  rules:\n  - host: a.com\n    http:\n      paths:\n      - {path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}\n";

#[test]
fn plan_of_a_single_ingress_file_without_its_class_says_why_nothing_is_handled_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(&dir, "web.yaml", LONE_INGRESS);
    let (code, out, err) = plan(&["-f", &f]);
    assert_eq!(code, 1, "stdout: {out}\nstderr: {err}");
    assert!(
        err.contains("Ingress shop/web is not handled: it names no IngressClass"),
        "{err}"
    );
    assert!(err.contains("--assume-class"), "{err}");
    // Naming a class the input lacks is explained too.
    let named = LONE_INGRESS.replace(
        "spec:\n  rules:",
        "spec:\n  ingressClassName: clb\n  rules:",
    );
    let f = write(&dir, "named.yaml", &named);
    let (code, _, err) = plan(&["-f", &f]);
    assert_eq!(code, 1);
    assert!(
        err.contains("its IngressClass clb is not in the input"),
        "{err}"
    );
}

#[test]
fn plan_with_assume_class_plans_a_single_ingress_file() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(&dir, "web.yaml", LONE_INGRESS);
    let (code, out, err) = plan(&["-f", &f, "--assume-class", "clb"]);
    assert_eq!(code, 0, "stdout: {out}\nstderr: {err}");
    assert!(!err.contains("not handled"), "{err}");
    assert!(out.contains("ingresses: Ingress shop/web"), "{out}");
    assert!(out.contains("CreateLoadBalancer"), "{out}");
}

#[test]
fn plan_reads_manifests_from_standard_input_with_dash() {
    use std::io::Write;
    let mut child = Command::new(clb_test_support::emulator::bin())
        .args(["plan", "-f", "-", "--assume-class", "clb"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run clb-ingress");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(LONE_INGRESS.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("ingresses: Ingress shop/web"), "{stdout}");
}

#[test]
fn plan_against_applied_clbs_names_the_existing_clb_and_shows_targets_as_ip_and_port() {
    let emu = clb_test_support::emulator::Emulator::start(&[]);
    let run = |cmd: &str, dir: &str| {
        let out = Command::new(clb_test_support::emulator::bin())
            .args([cmd, "-f", dir, "--clb-endpoint", &emu.endpoint])
            .args(["--cluster-id", "planned"])
            .output()
            .expect("run clb-ingress");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(0), "{cmd}: {text}\n{err}");
        text
    };
    run("apply", "examples/");
    // One pod IP changes: the plan against the applied CLB says which rule gets which target.
    let dir = tempfile::tempdir().unwrap();
    for f in std::fs::read_dir("examples").unwrap() {
        let f = f.unwrap().path();
        let text = std::fs::read_to_string(&f).unwrap();
        write(
            &dir,
            f.file_name().unwrap().to_str().unwrap(),
            &text.replace("10.0.1.10", "10.0.1.99"),
        );
    }
    let out = run("plan", dir.path().to_str().unwrap());
    assert!(out.contains("-> existing CLB lb-"), "{out}");
    assert!(!out.contains("-> new CLB"), "{out}");
    assert!(
        out.contains("HTTP:80 shop.example.com") && out.contains("-> 10.0.1.99:"),
        "{out}"
    );
    assert!(!out.contains(" loc-") && !out.contains(" lbl-"), "{out}");
}

#[test]
fn bind_errors_name_the_address_once() {
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = held.local_addr().unwrap().to_string();
    for args in [
        vec![
            "run",
            "--kubeconfig",
            "/nonexistent",
            "--clb-endpoint",
            "http://127.0.0.1:1",
            "--metrics-addr",
            &addr,
        ],
        vec!["emulator", "--listen", &addr],
        vec!["test-apiserver", "--listen", &addr],
    ] {
        let out = Command::new(clb_test_support::emulator::bin())
            .args(&args)
            .output()
            .expect("run clb-ingress");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(err.matches(addr.as_str()).count(), 1, "{args:?}: {err}");
        assert!(err.contains("in use"), "{args:?}: {err}");
    }
}

#[test]
fn plan_shows_each_listeners_rules_against_the_quota_after_the_rule_economy() {
    // a.example.com: `/` and `=/foo` + `/foo/`; /static and the Exact /foo/health make no
    // rule; b.example.com's copy of the default backend is left to the catch-all's `/`.
    let input =
        "tests/golden/model/rule-economy-leaves-out-paths-and-domains-that-answer-alike/input.yaml";
    let (code, out, err) = plan(&["-f", input]);
    assert_eq!(code, 0, "stderr: {err}");
    assert!(
        out.contains("   rules 4/50 on HTTP:80 (8 without rule economy)\n"),
        "{out}"
    );
    assert!(
        out.contains("      a.example.com Prefix /foo: =/foo /foo/ - "),
        "{out}"
    );
    assert!(
        out.contains("      a.example.com Prefix /static: no rule - no rule (rule economy)"),
        "{out}"
    );
    assert!(
        out.contains("      b.example.com (no path): no rule - no domain"),
        "{out}"
    );
    let (code, out, err) = plan(&["-f", input, "-o", "json"]);
    assert_eq!(code, 0, "stderr: {err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let stack = &v["stacks"][0];
    assert_eq!(stack["rulesPerListenerQuota"], 50, "{stack}");
    assert_eq!(stack["rules"][0]["rules"], 4, "{stack}");
    assert_eq!(stack["rules"][0]["protocol"], "HTTP", "{stack}");
    assert_eq!(stack["ruleCosts"][0]["rulesWithoutEconomy"], 8, "{stack}");
}
