//! Golden tests of the model: for every case directory under `tests/golden/model/`, the
//! manifests in `input.yaml` are built with `model::build` and the output (`stacks` keyed by the
//! stack id's display form, and `problems`) must equal `expected.json` byte for byte.
//!
//! To add or change a case, write its `input.yaml` (and optionally `limits.json`), then rewrite
//! the expected files with
//!
//! ```text
//! UPDATE_GOLDEN=1 cargo test -p clb-ingress --test model_golden
//! ```
//!
//! and review every changed `expected.json` with `git diff tests/golden/` against the Ingress
//! spec, `docs/routing.md` and `docs/annotations.md` before committing. Never commit output you
//! have not read. See `tests/golden/README.md`.
//!
//! Input conventions: the cluster id is always `golden`; Ingresses without a
//! `creationTimestamp` get one in document order (so the first Ingress in the file is the oldest
//! and wins conflicts); every document must be a kind the model reads. An optional `limits.json`
//! (`{"listeners_per_lb": 50, "rules_per_listener": 50, "targets_per_rule": 100}`, any subset)
//! replaces the default CLB limits, so limit cases stay small.

use clb_ingress::model::{self, BuildOutput, DesiredLb, Limits, Problem, Reason, Snapshot};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const CLUSTER_ID: &str = "golden";

fn cases_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/model")
}

/// Every case directory, sorted by name.
fn case_dirs() -> Vec<PathBuf> {
    let root = cases_root();
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("{}: {e}", root.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    assert!(!dirs.is_empty(), "no golden cases under {}", root.display());
    dirs
}

fn case_name(dir: &Path) -> String {
    dir.file_name()
        .expect("case directory name")
        .to_string_lossy()
        .into_owned()
}

/// The snapshot of one case: its manifests in document order, the fixed cluster id, and its
/// limits.
fn snapshot(dir: &Path) -> Snapshot {
    let name = case_name(dir);
    let input = dir.join("input.yaml");
    let text = std::fs::read_to_string(&input)
        .unwrap_or_else(|e| panic!("case {name}: {}: {e}", input.display()));
    let mut snap = Snapshot::new(CLUSTER_ID);
    let docs = clb_ingress::manifests::parse_documents("input.yaml", &text)
        .unwrap_or_else(|e| panic!("case {name}: {e}"));
    for (i, doc) in docs.into_iter().enumerate() {
        let kind = doc["kind"].as_str().unwrap_or("?").to_string();
        match clb_ingress::manifests::add_object(&mut snap, doc) {
            Ok(true) => {}
            Ok(false) => panic!(
                "case {name}: document {} ({kind}) is not a kind the model reads",
                i + 1
            ),
            Err(e) => panic!("case {name}: document {} ({kind}): {e}", i + 1),
        }
    }
    for (i, ing) in snap.ingresses.iter_mut().enumerate() {
        let ing = std::sync::Arc::make_mut(ing);
        if ing.metadata.creation_timestamp.is_none() {
            ing.metadata.creation_timestamp =
                Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                    jiff::Timestamp::UNIX_EPOCH + jiff::SignedDuration::from_secs(i as i64),
                ));
        }
    }
    snap.limits = limits(dir);
    snap
}

/// `limits.json` of a case, over the default limits.
fn limits(dir: &Path) -> Limits {
    let mut limits = Limits::default();
    let path = dir.join("limits.json");
    let Ok(text) = std::fs::read_to_string(&path) else {
        return limits;
    };
    let name = case_name(dir);
    let v: serde_json::Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("case {name}: limits.json: {e}"));
    for (k, n) in v.as_object().expect("limits.json is an object") {
        let n = n.as_u64().expect("limits are numbers") as usize;
        match k.as_str() {
            "listeners_per_lb" => limits.listeners_per_lb = n,
            "rules_per_listener" => limits.rules_per_listener = n,
            "targets_per_rule" => limits.targets_per_rule = n,
            other => panic!("case {name}: limits.json: unknown limit {other:?}"),
        }
    }
    limits
}

/// The golden form of a `BuildOutput`.
#[derive(Serialize)]
struct Golden<'a> {
    stacks: BTreeMap<String, &'a DesiredLb>,
    problems: &'a [Problem],
    /// Only in cases with Gateway API objects.
    #[serde(rename = "gatewayApi", skip_serializing_if = "Option::is_none")]
    gateway_api: Option<&'a clb_ingress::gateway::GatewayApiStatus>,
}

fn render(out: &BuildOutput) -> String {
    let golden = Golden {
        stacks: out
            .stacks
            .iter()
            .map(|(id, lb)| (id.to_string(), lb))
            .collect(),
        problems: &out.problems,
        gateway_api: (!out.gateway.classes.is_empty()).then_some(&out.gateway),
    };
    serde_json::to_string_pretty(&golden).expect("serialize") + "\n"
}

/// The first block of differing lines of two texts, with line numbers and a little context.
/// Lines changed in place (same line count) give one block per run of changed lines; a
/// different line count gives the block between the common first and last lines. At most
/// `MAX` lines of each side are shown.
fn first_differences(expected: &str, actual: &str) -> String {
    const CONTEXT: usize = 3;
    const MAX: usize = 25;
    let e: Vec<&str> = expected.lines().collect();
    let a: Vec<&str> = actual.lines().collect();
    let head = e.iter().zip(&a).take_while(|(x, y)| x == y).count();
    let (e_end, a_end, more) = if e.len() == a.len() {
        let run = e[head..]
            .iter()
            .zip(&a[head..])
            .take_while(|(x, y)| x != y)
            .count();
        let more = e[head + run..]
            .iter()
            .zip(&a[head + run..])
            .filter(|(x, y)| x != y)
            .count();
        (head + run, head + run, more)
    } else {
        let tail = e[head..]
            .iter()
            .rev()
            .zip(a[head..].iter().rev())
            .take_while(|(x, y)| x == y)
            .count();
        (e.len() - tail, a.len() - tail, 0)
    };
    let mut out = format!(
        "first difference at line {} (- expected.json, + actual):\n",
        head + 1
    );
    let context = |out: &mut String, from: usize, to: usize| {
        for (i, l) in e.iter().enumerate().take(to).skip(from) {
            *out += &format!("  {:>5}   {l}\n", i + 1);
        }
    };
    context(&mut out, head.saturating_sub(CONTEXT), head);
    let side = |out: &mut String, block: &[&str], mark: char| {
        for (i, l) in block.iter().enumerate().take(MAX) {
            *out += &format!("{mark} {:>5}   {l}\n", head + i + 1);
        }
        if block.len() > MAX {
            *out += &format!("{mark}   ... {} more lines\n", block.len() - MAX);
        }
    };
    side(&mut out, &e[head..e_end], '-');
    side(&mut out, &a[head..a_end], '+');
    context(&mut out, e_end, (e_end + CONTEXT).min(e.len()));
    if more > 0 {
        out += &format!("  ... and {more} more differing line(s) further down\n");
    }
    out
}

fn updating() -> bool {
    std::env::var("UPDATE_GOLDEN").is_ok_and(|v| v == "1")
}

#[test]
fn every_golden_case_matches_its_expected_model_output() {
    let mut failures = Vec::new();
    for dir in case_dirs() {
        let name = case_name(&dir);
        let actual = render(&model::build(&snapshot(&dir)));
        let path = dir.join("expected.json");
        let expected = std::fs::read_to_string(&path).ok();
        if expected.as_deref() == Some(actual.as_str()) {
            continue;
        }
        if updating() {
            std::fs::write(&path, &actual).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            eprintln!(
                "updated tests/golden/model/{name}/expected.json: review it before committing"
            );
            continue;
        }
        failures.push(match expected {
            None => format!(
                "case {name}: expected.json is missing (run with UPDATE_GOLDEN=1 and review it)"
            ),
            Some(expected) => format!(
                "case {name}: the model output differs from expected.json\n{}",
                first_differences(&expected, &actual)
            ),
        });
    }
    assert!(
        failures.is_empty(),
        "{} golden case(s) failed; if the change is intended, rerun with UPDATE_GOLDEN=1 and review `git diff tests/golden/`\n\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Every `Reason`. Adding a variant breaks the exhaustive match in `not_produced_by_build`
/// below: list it here too, and add a golden case that produces it.
const ALL_REASONS: [Reason; 35] = [
    Reason::InvalidHost,
    Reason::InvalidPath,
    Reason::InvalidPathType,
    Reason::InvalidAnnotation,
    Reason::ServiceNotFound,
    Reason::ServicePortNotFound,
    Reason::UnsupportedServiceType,
    Reason::UnsupportedProtocol,
    Reason::UnsupportedBackend,
    Reason::NoNodePort,
    Reason::RuleConflict,
    Reason::DefaultBackendConflict,
    Reason::TooManyRules,
    Reason::TooManyListeners,
    Reason::TooManyTargets,
    Reason::TlsSecretNotFound,
    Reason::TlsSecretInvalid,
    Reason::ClassParametersNotFound,
    Reason::ListenerPortConflict,
    Reason::UnknownAnnotation,
    Reason::UnsupportedAnnotation,
    Reason::AdoptionNotAllowed,
    Reason::HostOwnedByOtherNamespace,
    Reason::CatchAllNotAllowed,
    Reason::CertificateNotAllowed,
    Reason::InvalidClassParameters,
    Reason::InvalidBackendConfig,
    Reason::UnsupportedValue,
    Reason::NotAllowedByListeners,
    Reason::NoMatchingListenerHostname,
    Reason::NoMatchingParent,
    Reason::RefNotPermitted,
    Reason::InvalidKind,
    Reason::InvalidListener,
    Reason::InvalidGateway,
];

/// Why a reason cannot appear in a golden: `model::build` never produces it. Exhaustive on
/// purpose, so that a new variant must be placed here.
fn not_produced_by_build(r: Reason) -> Option<&'static str> {
    match r {
        Reason::InvalidHost
        | Reason::InvalidPath
        | Reason::InvalidPathType
        | Reason::InvalidAnnotation
        | Reason::ServiceNotFound
        | Reason::ServicePortNotFound
        | Reason::UnsupportedServiceType
        | Reason::UnsupportedProtocol
        | Reason::UnsupportedBackend
        | Reason::NoNodePort
        | Reason::RuleConflict
        | Reason::DefaultBackendConflict
        | Reason::TooManyRules
        | Reason::TooManyListeners
        | Reason::TooManyTargets
        | Reason::TlsSecretNotFound
        | Reason::TlsSecretInvalid
        | Reason::ClassParametersNotFound
        | Reason::ListenerPortConflict
        | Reason::UnknownAnnotation
        | Reason::UnsupportedAnnotation
        | Reason::AdoptionNotAllowed
        | Reason::HostOwnedByOtherNamespace
        | Reason::CatchAllNotAllowed
        | Reason::CertificateNotAllowed
        | Reason::InvalidClassParameters
        | Reason::InvalidBackendConfig
        | Reason::UnsupportedValue
        | Reason::NotAllowedByListeners
        | Reason::NoMatchingListenerHostname
        | Reason::NoMatchingParent
        | Reason::RefNotPermitted
        | Reason::InvalidKind
        | Reason::InvalidListener
        | Reason::InvalidGateway => None,
    }
}

#[test]
fn the_goldens_cover_every_problem_reason() {
    let mut seen: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for dir in case_dirs() {
        let path = dir.join("expected.json");
        // While the other test rewrites the expected files, read what it writes.
        let text = if updating() {
            render(&model::build(&snapshot(&dir)))
        } else {
            std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{}: {e} (run with UPDATE_GOLDEN=1)", path.display()))
        };
        let v: serde_json::Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        for p in v["problems"].as_array().expect("problems is a list") {
            let reason = p["reason"].as_str().expect("reason is a string");
            seen.entry(reason.to_string())
                .or_default()
                .insert(case_name(&dir));
        }
    }
    let all: BTreeSet<&str> = ALL_REASONS.iter().map(|r| r.as_str()).collect();
    assert_eq!(
        all.len(),
        ALL_REASONS.len(),
        "ALL_REASONS lists a reason twice"
    );
    let unknown: Vec<&String> = seen.keys().filter(|r| !all.contains(r.as_str())).collect();
    assert!(
        unknown.is_empty(),
        "the goldens show reasons missing from ALL_REASONS: {unknown:?}"
    );
    let mut missing = Vec::new();
    let mut produced_after_all = Vec::new();
    for r in ALL_REASONS {
        match (not_produced_by_build(r), seen.get(r.as_str())) {
            (None, None) => missing.push(r.as_str()),
            (Some(_), Some(cases)) => produced_after_all.push(format!("{r} (in {cases:?})")),
            _ => {}
        }
    }
    assert!(
        missing.is_empty(),
        "no golden case produces these reasons; add a case for each: {missing:?}"
    );
    assert!(
        produced_after_all.is_empty(),
        "these reasons are marked as never produced by model::build, but a golden shows them; \
         update not_produced_by_build: {produced_after_all:?}"
    );
}
