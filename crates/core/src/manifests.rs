//! Manifest text -> Kubernetes objects: YAML multi-doc, JSON, `kind: List` flattened, and
//! objects sorted into a `model::Snapshot`. Pure (the CLI's `manifests` module reads the files).

use crate::crd::{ClbBackendConfig, ClbClassParameters, TkeServiceConfig};
use crate::model::Snapshot;
use serde_json::Value;

/// Why manifests could not be loaded: the file, and the document and object when known.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("{path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not valid YAML or JSON: {message}")]
    Parse { path: String, message: String },
    #[error("{path}: document {doc}: {kind} {name}: {message}")]
    Object {
        path: String,
        doc: usize,
        kind: String,
        name: String,
        message: String,
    },
}

/// Parse one file's text into its documents (`kind: List` flattened).
pub fn parse_documents(path: &str, text: &str) -> Result<Vec<Value>, ManifestError> {
    let docs: Vec<Value> = if path.ends_with(".json") {
        vec![
            serde_json::from_str(text).map_err(|e| ManifestError::Parse {
                path: path.to_string(),
                message: e.to_string(),
            })?,
        ]
    } else {
        serde_saphyr::from_multiple::<Value>(text).map_err(|e| ManifestError::Parse {
            path: path.to_string(),
            message: e.to_string(),
        })?
    };
    let mut out = Vec::new();
    for d in docs {
        if d.is_null() {
            continue;
        }
        if d.get("kind").and_then(Value::as_str) == Some("List") {
            out.extend(
                d.get("items")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default(),
            );
        } else {
            out.push(d);
        }
    }
    Ok(out)
}

/// Add one object to the snapshot. Returns false if its kind is not one the model reads.
pub fn add_object(snap: &mut Snapshot, obj: Value) -> Result<bool, String> {
    fn de<T: serde::de::DeserializeOwned>(v: Value) -> Result<T, String> {
        serde_json::from_value(v).map_err(|e| e.to_string())
    }
    let api = obj
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let kind = obj
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    match (api.as_str(), kind.as_str()) {
        ("networking.k8s.io/v1", "Ingress") => snap.ingresses.push(de(obj)?),
        ("networking.k8s.io/v1", "IngressClass") => snap.ingress_classes.push(de(obj)?),
        ("v1", "Service") => snap.services.push(std::sync::Arc::new(de(obj)?)),
        ("v1", "Secret") => snap.secrets.push(de(obj)?),
        ("v1", "Node") => snap.nodes.push(de(obj)?),
        ("v1", "Namespace") => snap.namespaces.push(de(obj)?),
        ("discovery.k8s.io/v1", "EndpointSlice") => {
            snap.endpoint_slices.push(std::sync::Arc::new(de(obj)?))
        }
        (a, "ClbClassParameters") if a.starts_with("clb-ingress.io/") => {
            snap.class_params.push(de::<ClbClassParameters>(obj)?)
        }
        (a, "ClbBackendConfig") if a.starts_with("clb-ingress.io/") => {
            snap.backend_configs.push(de::<ClbBackendConfig>(obj)?)
        }
        // Manifests given to `plan`/`apply` are read as they are: a TkeServiceConfig among
        // them is used (the controller reads them only with --tke-service-configs).
        ("cloud.tencent.com/v1alpha1", "TkeServiceConfig") => snap
            .tke_service_configs
            .get_or_insert_with(Vec::new)
            .push(de::<TkeServiceConfig>(obj)?),
        ("gateway.networking.k8s.io/v1", "GatewayClass") => snap.gateway_classes.push(de(obj)?),
        ("gateway.networking.k8s.io/v1", "Gateway") => snap.gateways.push(de(obj)?),
        ("gateway.networking.k8s.io/v1", "HTTPRoute") => snap.http_routes.push(de(obj)?),
        ("gateway.networking.k8s.io/v1", "GRPCRoute") => snap.grpc_routes.push(de(obj)?),
        ("gateway.networking.k8s.io/v1beta1", "ReferenceGrant") => {
            snap.reference_grants.push(de(obj)?)
        }
        (a, "GatewayClass" | "Gateway" | "HTTPRoute" | "GRPCRoute" | "ReferenceGrant")
            if a.starts_with("gateway.networking.k8s.io/") =>
        {
            return Err(format!(
                "apiVersion {api:?} is not served for {kind}; use gateway.networking.k8s.io/v1 (ReferenceGrant: v1beta1)"
            ));
        }
        (_, "Ingress") if api != "networking.k8s.io/v1" => {
            return Err(format!(
                "apiVersion {api:?} is not served; use networking.k8s.io/v1"
            ));
        }
        _ => return Ok(false),
    }
    Ok(true)
}
