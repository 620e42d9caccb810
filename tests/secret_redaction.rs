//! Neither the SecretKey (nor the session token) nor the private key of a TLS Secret ever
//! appears in anything `clb-ingress apply` / `plan` print at the most verbose log level, in text
//! and JSON log formats, on success and on every kind of failure (injected API errors, a
//! refused SecretId, an endpoint nobody listens on).

use clb_test_support::emulator;

use std::path::Path;

use emulator::{Class, Emulator, Ingress, IngressPath, Run, Service, TlsSecret, World, pods};
use serde_json::json;

const SECRET_ID: &str = "AKIDREDACTIONTEST000000000000000000001";

/// A SecretKey nobody could print by accident: random, and marked.
fn secret_key() -> String {
    let tail: String = (0..24)
        .map(|_| {
            let c = rand::random_range(0..36u8);
            char::from(if c < 10 { b'0' + c } else { b'a' + c - 10 })
        })
        .collect();
    format!("SKredactME{tail}")
}

fn world(secret: &TlsSecret) -> World {
    World {
        classes: vec![Class {
            name: "clb".into(),
            sharing: "Shared",
        }],
        services: vec![Service {
            name: "web".into(),
            pods: pods(3, 0, 2),
        }],
        ingresses: vec![Ingress {
            name: "shop".into(),
            class: "clb".into(),
            host: "shop.example.com".into(),
            paths: vec![IngressPath {
                path: "/".into(),
                kind: "Prefix",
                service: "web".into(),
            }],
            tls: Some(secret.name.clone()),
            exist_lb: None,
        }],
        secrets: vec![secret.clone()],
    }
}

/// Every sensitive string, and each base64 line of the private key on its own.
fn needles(key: &str, token: &str, tls: &TlsSecret) -> Vec<String> {
    let mut out = vec![key.to_string(), token.to_string()];
    out.extend(
        tls.key_pem
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with("-----"))
            .map(str::to_string),
    );
    // The key body without line breaks (a JSON-escaped or re-wrapped print).
    out.push(
        tls.key_pem
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect::<String>(),
    );
    out
}

#[track_caller]
fn assert_clean(what: &str, run: &Run, needles: &[String]) {
    for n in needles {
        assert!(
            !run.stdout.contains(n.as_str()),
            "{what}: a secret ({}...) appears in stdout",
            &n[..8.min(n.len())]
        );
        assert!(
            !run.stderr.contains(n.as_str()),
            "{what}: a secret ({}...) appears in stderr",
            &n[..8.min(n.len())]
        );
    }
}

#[test]
fn the_secret_key_and_tls_private_keys_never_appear_in_trace_output_of_apply_and_plan() {
    let key = secret_key();
    let token = format!("TOKEN{}", secret_key());
    let emu = Emulator::start(&[
        "--secret-id",
        SECRET_ID,
        "--secret-key",
        &key,
        "--task-delay-ms",
        "10",
    ]);
    let tls = TlsSecret::generate("shop-tls", "shop.example.com");
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("world.yaml");
    world(&tls).write(&file);
    let files: [&Path; 1] = [&file];
    let needles = needles(&key, &token, &tls);

    let run_with = |fmt: &str, extra: &[&str], id: &str| -> Run {
        let mut c = emu.apply_command(&files, &["--log", "trace", "--log-format", fmt]);
        c.args(["--secret-id", id])
            .args(extra)
            .env("TENCENTCLOUD_SECRET_KEY", &key)
            .env("TENCENTCLOUD_SESSION_TOKEN", &token);
        let started = std::time::Instant::now();
        Run::new(c.output().expect("run apply"), started.elapsed())
    };

    for fmt in ["json", "text"] {
        emu.admin_post("reset", None);
        // 1. The upload of the TLS key always fails, other calls are throttled now and then.
        emu.set_faults(&json!({
            "internal_error": {"UploadCertificate": 1.0},
            "request_limit_exceeded": {"*": 0.2},
        }));
        let r = run_with(fmt, &[], SECRET_ID);
        assert_eq!(r.code, 1, "the upload must fail:\n{}", r.stdout);
        assert!(
            r.stdout.contains("InternalError"),
            "the failure is reported: {}",
            r.stdout
        );
        assert!(
            r.stderr.contains("UploadCertificate") && r.stderr.len() > 10_000,
            "trace logging is on ({} bytes of stderr)",
            r.stderr.len()
        );
        assert_clean(&format!("{fmt}: failing upload"), &r, &needles);

        // 2. Success: the key is uploaded, rules and targets are made.
        emu.set_faults(&json!({}));
        let r = run_with(fmt, &[], SECRET_ID);
        r.expect_ok("apply");
        let certs = emu.state()["certs"].as_object().map_or(0, |m| m.len());
        assert_eq!(certs, 1, "the certificate was uploaded");
        assert_clean(&format!("{fmt}: successful apply"), &r, &needles);

        // 3. The key given as a flag and a SecretId the API does not know (AuthFailure).
        let r = run_with(
            fmt,
            &["--secret-key", &key],
            "AKIDUNKNOWN0000000000000000000000000",
        );
        assert_eq!(r.code, 1);
        assert!(
            r.stdout.contains("AuthFailure"),
            "auth failure reported: {}",
            r.stdout
        );
        assert_clean(&format!("{fmt}: refused SecretId"), &r, &needles);

        // 4. An endpoint nobody listens on (loopback, port 1).
        let mut c = emulator::command();
        c.args(["apply", "-f"])
            .arg(&file)
            .args(["--clb-endpoint", "http://127.0.0.1:1"])
            .args(["--log", "trace", "--log-format", fmt])
            .args(["--secret-id", SECRET_ID])
            .env("TENCENTCLOUD_SECRET_KEY", &key)
            .env("TENCENTCLOUD_SESSION_TOKEN", &token);
        let r = Run::new(c.output().expect("run apply"), Default::default());
        assert_eq!(r.code, 1, "{}", r.stdout);
        assert_clean(&format!("{fmt}: unreachable endpoint"), &r, &needles);

        // 5. plan against the CLB.
        let mut c = emulator::command();
        c.args(["plan", "-f"])
            .arg(&file)
            .args(["--clb-endpoint", &emu.endpoint])
            .args(["--log", "trace", "--log-format", fmt])
            .args(["--secret-id", SECRET_ID])
            .env("TENCENTCLOUD_SECRET_KEY", &key)
            .env("TENCENTCLOUD_SESSION_TOKEN", &token);
        let r = Run::new(c.output().expect("run plan"), Default::default());
        r.expect_ok("plan");
        assert_clean(&format!("{fmt}: plan"), &r, &needles);
    }
}

#[test]
fn help_never_prints_a_secret_key_given_by_the_environment() {
    let key = secret_key();
    for sub in ["emulator", "apply", "run"] {
        let out = std::process::Command::new(emulator::bin())
            .args([sub, "--help"])
            .env("CLB_EMULATOR_SECRET_KEY", &key)
            .env("TENCENTCLOUD_SECRET_KEY", &key)
            .output()
            .expect("clb-ingress --help");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{sub} --help");
        assert!(!text.contains(&key), "{sub} --help prints the SecretKey");
    }
}
