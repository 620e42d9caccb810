//! `clb-ingress preflight` against the emulator: every assumption passes, a broken one fails
//! the run, and it deletes exactly what it made (and what earlier runs left), nothing else.

use clb_ingress::clb::types::*;
use clb_test_support::emulator::{Emulator, command};
use serde_json::{Value, json};
use std::collections::BTreeSet;

const TAG: &str = "clb-ingress.io/preflight";

fn preflight(emu: &Emulator, extra: &[&str]) -> (i32, String, String) {
    let out = command()
        .args(["preflight", "--clb-endpoint", &emu.endpoint])
        .args(extra)
        .output()
        .expect("run preflight");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn lb_ids(emu: &Emulator) -> BTreeSet<String> {
    emu.state()["lbs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|lb| lb["id"].as_str().map(str::to_string))
        .collect()
}

fn cert_count(emu: &Emulator) -> usize {
    match &emu.state()["certs"] {
        Value::Array(a) => a.len(),
        Value::Object(o) => o.len(),
        _ => 0,
    }
}

/// A CLB named `name` with `tags`, made directly through the API.
fn make_lb(emu: &Emulator, name: &str, tags: &[(&str, &str)]) -> String {
    let clb = emu.client();
    emu.block_on(async {
        clb.create_load_balancer_and_wait(&CreateLoadBalancerRequest {
            load_balancer_type: "OPEN".into(),
            forward: Some(1),
            load_balancer_name: Some(name.into()),
            tags: tags
                .iter()
                .map(|(k, v)| TagInfo {
                    tag_key: k.to_string(),
                    tag_value: v.to_string(),
                })
                .collect(),
            ..Default::default()
        })
        .await
        .unwrap()
        .remove(0)
    })
}

#[test]
fn preflight_passes_against_the_emulator_and_deletes_only_what_it_made() {
    let emu = Emulator::start(&["--task-delay-ms", "10"]);
    let bystander = make_lb(&emu, "someone-elses", &[]);
    // Carries the preflight tag but not the preflight name: not provably ours, kept.
    let lookalike = make_lb(&emu, "not-preflight", &[(TAG, "x")]);
    let certs_before = cert_count(&emu);
    let (code, out, err) = preflight(&emu, &["--target-ip", "10.0.0.5"]);
    assert_eq!(code, 0, "{out}\n{err}");
    for check in [
        "quota",
        "create-clb",
        "listeners",
        "catch-all-rule",
        "exact-url",
        "prefix-url",
        "regex-domain",
        "default-domain",
        "upload-certificate",
        "sni-regex-certificate",
        "target-weights",
        "clean-up",
    ] {
        let line = out
            .lines()
            .find(|l| l.starts_with(&format!("{check} ")))
            .unwrap_or_else(|| panic!("no {check} row:\n{out}"));
        assert!(line.contains(" PASS "), "{line}\n{out}");
    }
    assert!(!out.contains("FAIL"), "{out}");
    assert_eq!(
        lb_ids(&emu),
        BTreeSet::from([bystander, lookalike]),
        "only what preflight made is gone"
    );
    assert_eq!(cert_count(&emu), certs_before, "its certificate is deleted");
}

#[test]
fn without_a_target_ip_the_weight_check_is_skipped_not_failed() {
    let emu = Emulator::start(&["--task-delay-ms", "10"]);
    let (code, out, err) = preflight(&emu, &["-o", "json"]);
    assert_eq!(code, 0, "{out}\n{err}");
    let checks: Value = serde_json::from_str(&out).unwrap();
    let weights = checks
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "target-weights")
        .unwrap();
    assert_eq!(weights["verdict"], "SKIP");
}

#[test]
fn a_broken_assumption_fails_the_run_and_everything_is_still_cleaned_up() {
    let emu = Emulator::start(&["--task-delay-ms", "10"]);
    // The account refuses to move the default domain.
    emu.set_faults(&json!({"internal_error": {"ModifyDomainAttributes": 1.0}}));
    let (code, out, err) = preflight(&emu, &[]);
    assert_eq!(code, 1, "{out}\n{err}");
    let row = out
        .lines()
        .find(|l| l.starts_with("default-domain "))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(row.contains(" FAIL "), "{row}");
    assert!(
        row.contains("InternalError"),
        "the API's code is shown: {row}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("clean-up ") && l.contains(" PASS ")),
        "{out}"
    );
    assert!(lb_ids(&emu).is_empty(), "nothing left: {}", emu.state());
}

#[test]
fn what_an_interrupted_run_left_is_deleted_by_the_next_run() {
    let emu = Emulator::start(&["--task-delay-ms", "10"]);
    let leftover = make_lb(
        &emu,
        "clb-ingress-preflight-deadbeef0000",
        &[(TAG, "deadbeef0000")],
    );
    assert!(lb_ids(&emu).contains(&leftover));
    let (code, out, err) = preflight(&emu, &[]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(lb_ids(&emu).is_empty(), "{}", emu.state());
}
