//! Reading Kubernetes manifests from files: YAML multi-doc, JSON, `kind: List`, directories.
