//! Reading Kubernetes manifests from files: YAML multi-doc, JSON, `kind: List`, directories.
//! Objects are sorted into a `model::Snapshot`; kinds the model does not read are skipped.

use crate::model::Snapshot;
pub use clb_ingress_core::manifests::{ManifestError, add_object, parse_documents};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// Largest manifest file read (a YAML or JSON file of Kubernetes objects is far smaller); a
/// larger one is an error instead of gigabytes of memory.
pub const MAX_MANIFEST_BYTES: u64 = 8 * 1024 * 1024;

/// All manifest files under `path` (a file, or a directory searched recursively), sorted.
/// Each directory is entered once, however many links lead to it, so a symlink loop cannot make
/// the walk repeat or hang.
pub fn files(path: &Path) -> Result<Vec<PathBuf>, ManifestError> {
    if path == Path::new(STDIN) {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut visited = std::collections::HashSet::new();
    let mut out = Vec::new();
    walk(path, &mut visited, &mut out)?;
    out.sort();
    out.dedup();
    Ok(out)
}

fn walk(
    path: &Path,
    visited: &mut std::collections::HashSet<PathBuf>,
    out: &mut Vec<PathBuf>,
) -> Result<(), ManifestError> {
    let read_error = |e| ManifestError::Read {
        path: path.display().to_string(),
        source: e,
    };
    let meta = std::fs::metadata(path).map_err(read_error)?;
    if meta.is_file() {
        out.push(path.to_path_buf());
        return Ok(());
    }
    let real = std::fs::canonicalize(path).map_err(read_error)?;
    if !visited.insert(real) {
        return Ok(());
    }
    for entry in std::fs::read_dir(path).map_err(read_error)?.flatten() {
        let p = entry.path();
        if p.is_dir() {
            walk(&p, visited, out)?;
        } else if matches!(
            p.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml" | "json")
        ) {
            out.push(p);
        }
    }
    Ok(())
}

/// The path that means standard input (`-f -`).
pub const STDIN: &str = "-";

/// A manifest file's text (standard input for [`STDIN`]), refused past [`MAX_MANIFEST_BYTES`].
pub fn read_manifest(file: &Path) -> Result<String, ManifestError> {
    let stdin = file == Path::new(STDIN);
    let name = if stdin {
        "<stdin>".to_string()
    } else {
        file.display().to_string()
    };
    let read_error = |e| ManifestError::Read {
        path: name.clone(),
        source: e,
    };
    let reader: Box<dyn std::io::Read> = if stdin {
        Box::new(std::io::stdin())
    } else {
        Box::new(std::fs::File::open(file).map_err(read_error)?)
    };
    let mut text = String::new();
    std::io::Read::read_to_string(
        &mut std::io::Read::take(reader, MAX_MANIFEST_BYTES + 1),
        &mut text,
    )
    .map_err(read_error)?;
    if text.len() as u64 > MAX_MANIFEST_BYTES {
        return Err(ManifestError::Parse {
            path: name,
            message: format!("larger than {MAX_MANIFEST_BYTES} bytes"),
        });
    }
    Ok(text)
}

/// Load every manifest under the given paths into a snapshot. Objects without a
/// `creationTimestamp` get one in file order, so "oldest wins" means "first in the files wins".
pub fn load(paths: &[PathBuf], snap: &mut Snapshot) -> Result<usize, ManifestError> {
    let mut count = 0usize;
    for root in paths {
        for file in files(root)? {
            let name = file.display().to_string();
            let text = read_manifest(&file)?;
            for (i, doc) in parse_documents(&name, &text)?.into_iter().enumerate() {
                let kind = doc
                    .get("kind")
                    .and_then(Value::as_str)
                    .unwrap_or("?")
                    .to_string();
                let obj_name = doc
                    .pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .unwrap_or("?")
                    .to_string();
                if add_object(snap, doc).map_err(|message| ManifestError::Object {
                    path: name.clone(),
                    doc: i + 1,
                    kind,
                    name: obj_name,
                    message,
                })? {
                    count += 1;
                }
            }
        }
    }
    let base = jiff::Timestamp::UNIX_EPOCH;
    for (i, ing) in snap.ingresses.iter_mut().enumerate() {
        let ing = std::sync::Arc::make_mut(ing);
        if ing.metadata.creation_timestamp.is_none() {
            let t = base + jiff::SignedDuration::from_secs(i as i64);
            ing.metadata.creation_timestamp = Some(Time(t));
        }
        if ing.metadata.namespace.is_none() {
            ing.metadata.namespace = Some("default".into());
        }
    }
    // Gateway API objects alike: routes' "oldest wins" follows the file order.
    let metas = snap
        .gateways
        .iter_mut()
        .map(|g| &mut g.metadata)
        .chain(snap.http_routes.iter_mut().map(|r| &mut r.metadata))
        .chain(snap.grpc_routes.iter_mut().map(|r| &mut r.metadata))
        .chain(snap.reference_grants.iter_mut().map(|r| &mut r.metadata));
    for (i, m) in metas.enumerate() {
        if m.creation_timestamp.is_none() {
            let t = base + jiff::SignedDuration::from_secs(i as i64);
            m.creation_timestamp = Some(Time(t));
        }
        if m.namespace.is_none() {
            m.namespace = Some("default".into());
        }
    }
    Ok(count)
}

/// The API resource (group, version, kind, plural) of a manifest document, for dynamic clients.
pub fn api_resource(doc: &Value) -> kube::discovery::ApiResource {
    let api_version = doc["apiVersion"].as_str().unwrap_or("").to_string();
    let kind = doc["kind"].as_str().unwrap_or("").to_string();
    let (group, version) = api_version.split_once('/').unwrap_or(("", &api_version));
    let plural = match kind.as_str() {
        "Ingress" => "ingresses".to_string(),
        "IngressClass" => "ingressclasses".to_string(),
        "ClbClassParameters" => "clbclassparameters".to_string(),
        "GatewayClass" => "gatewayclasses".to_string(),
        k => format!("{}s", k.to_lowercase()),
    };
    kube::discovery::ApiResource {
        group: group.into(),
        version: version.into(),
        api_version: api_version.clone(),
        kind,
        plural,
    }
}

#[cfg(test)]
mod walk_tests {
    use super::*;

    #[test]
    fn a_symlink_loop_is_walked_once_and_each_file_listed_once() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("m");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(root.join("a.yaml"), "kind: List\nitems: []\n").unwrap();
        std::fs::write(root.join("sub/b.yaml"), "kind: List\nitems: []\n").unwrap();
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(&root, root.join("sub/loop")).unwrap();
            std::os::unix::fs::symlink(&root, root.join("again")).unwrap();
        }
        let found = files(&root).unwrap();
        let names: Vec<String> = found
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["a.yaml", "b.yaml"], "{found:?}");
    }

    #[test]
    fn a_manifest_over_the_size_cap_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("big.json");
        let file = std::fs::File::create(&f).unwrap();
        file.set_len(MAX_MANIFEST_BYTES + 1).unwrap();
        let err = read_manifest(&f).unwrap_err().to_string();
        assert!(
            err.contains("big.json") && err.contains("larger than"),
            "{err}"
        );
    }
}
