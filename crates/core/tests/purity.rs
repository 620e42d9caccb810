//! The core crate stays pure: its normal dependencies (transitively) contain no async runtime,
//! HTTP stack, Kubernetes client or runtime, or randomness, and its source reads no clock,
//! environment, file system or network. Adding one fails this test (and so `.ci/run`).

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

/// Crates that bring I/O, an async runtime, randomness or a Kubernetes client into the core.
const FORBIDDEN: &[&str] = &[
    "tokio",
    "mio",
    "reqwest",
    "hyper",
    "hyper-util",
    "axum",
    "tower",
    "kube-client",
    "kube-runtime",
    "rand",
    "getrandom",
    "uuid",
];

/// Source patterns that read the clock, the environment, files or the network.
const FORBIDDEN_CALLS: &[&str] = &[
    "SystemTime::now",
    "Instant::now",
    "std::env::",
    "std::fs",
    "std::net",
    "std::process",
    "std::thread",
    "Timestamp::now",
];

/// The crates in the core's normal dependency tree, with features resolved as when the core is
/// built on its own (`cargo tree`; `cargo metadata` would unify features across the workspace).
fn normal_dependency_closure() -> BTreeSet<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
    let out = Command::new(cargo)
        .args(["tree", "--locked", "-e", "normal", "--prefix", "none"])
        .args([
            "--format",
            "{p}",
            "-p",
            "clb-ingress-core",
            "--manifest-path",
        ])
        .arg(&manifest)
        .output()
        .expect("cargo tree runs");
    assert!(
        out.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

#[test]
fn core_normal_dependencies_contain_no_runtime_http_kube_client_or_randomness() {
    let closure = normal_dependency_closure();
    assert!(
        closure.contains("serde"),
        "the closure was computed: {closure:?}"
    );
    let bad: Vec<&str> = FORBIDDEN
        .iter()
        .copied()
        .filter(|c| closure.contains(*c))
        .collect();
    assert!(bad.is_empty(), "clb-ingress-core depends on {bad:?}");
}

#[test]
fn core_source_reads_no_clock_environment_files_or_network() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut offenders = Vec::new();
    let mut dirs = vec![src];
    let mut files = 0;
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("read src") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            files += 1;
            let text = std::fs::read_to_string(&path).expect("read file");
            for (n, line) in text.lines().enumerate() {
                let code = line.split("//").next().unwrap_or("");
                for call in FORBIDDEN_CALLS {
                    if code.contains(call) {
                        offenders.push(format!("{}:{}: {call}", path.display(), n + 1));
                    }
                }
            }
        }
    }
    assert!(files > 5, "the source tree was read ({files} files)");
    assert!(offenders.is_empty(), "impure calls in core: {offenders:#?}");
}
