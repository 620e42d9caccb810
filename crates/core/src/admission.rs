//! Admission verdicts for Ingresses and `ClbClassParameters`, from the model itself: the
//! Ingress is built into its stack exactly as the controller would build it, and what the
//! model would park because of the Ingress's own content is refused; everything else the model
//! says about it (a missing Service, a conflict with another Ingress, an unknown annotation)
//! becomes an admission warning. Annotations of other ingress controllers get a warning too:
//! clb-ingress ignores them.
//!
//! The caller (the webhook server) supplies the cluster as a [`Snapshot`] holding the candidate
//! Ingress; this module is pure.

use crate::crd::ClbClassParametersSpec;
use crate::model::build::{self, Index, OurClasses, Snapshot};
use crate::model::translate;
use crate::model::{Effect, ObjectRef, Problem, Reason};
use k8s_openapi::api::networking::v1::Ingress;

/// Annotation prefixes of other ingress controllers, with the controller's name. clb-ingress
/// reads none of them: an Ingress of our class carrying one gets a warning (it was probably
/// written for another controller and will not behave as its author expects).
pub const FOREIGN_ANNOTATION_PREFIXES: [(&str, &str); 14] = [
    ("nginx.ingress.kubernetes.io/", "ingress-nginx"),
    ("nginx.org/", "NGINX Ingress Controller"),
    (
        "alb.ingress.kubernetes.io/",
        "AWS Load Balancer Controller or Alibaba ALB Ingress",
    ),
    (
        "service.beta.kubernetes.io/aws-load-balancer-",
        "AWS Load Balancer Controller",
    ),
    (
        "appgw.ingress.kubernetes.io/",
        "Azure Application Gateway Ingress Controller",
    ),
    ("ingress.gcp.kubernetes.io/", "GKE Ingress"),
    ("networking.gke.io/", "GKE Ingress"),
    ("traefik.ingress.kubernetes.io/", "Traefik"),
    ("haproxy.org/", "HAProxy Kubernetes Ingress"),
    ("haproxy.router.openshift.io/", "OpenShift router"),
    ("konghq.com/", "Kong"),
    ("projectcontour.io/", "Contour"),
    ("ingress.kubernetes.io/", "a legacy ingress controller"),
    ("kubernetes.io/ingress.global-static-ip-name", "GKE Ingress"),
];

/// Reasons that depend only on the Ingress itself and its class's policy: when the model
/// parks (part of) an Ingress for one of them, the Ingress is refused at admission. Every
/// other reason depends on objects that may still come or change (Services, Secrets, other
/// Ingresses, quotas) and is a warning, so that `kubectl apply -f dir/` works in any order.
pub const REFUSED_REASONS: [Reason; 7] = [
    Reason::InvalidHost,
    Reason::InvalidPath,
    Reason::InvalidPathType,
    Reason::InvalidAnnotation,
    Reason::AdoptionNotAllowed,
    Reason::CatchAllNotAllowed,
    Reason::CertificateNotAllowed,
];

/// Reasons left to the caller: they need Secret data, which admission does not read (the
/// caller checks that the named Secrets exist instead).
pub const SECRET_REASONS: [Reason; 2] = [Reason::TlsSecretNotFound, Reason::TlsSecretInvalid];

/// Longest admission warning kept whole (the API server may cut longer ones).
pub const MAX_WARNING_CHARS: usize = 256;
/// At most this many warnings per answer (kubectl prints each on its own line).
pub const MAX_WARNINGS: usize = 20;

/// Does the model's Problem refuse the Ingress at admission?
pub fn refuses(p: &Problem) -> bool {
    REFUSED_REASONS.contains(&p.reason)
        && matches!(
            p.effect,
            Effect::Parked | Effect::HostParked | Effect::Ignored
        )
}

/// What admission says about one Ingress.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IngressVerdict {
    /// The Ingress belongs to one of our IngressClasses (otherwise nothing else is set).
    pub ours: bool,
    /// Problems that refuse it.
    pub refused: Vec<Problem>,
    /// Admission warnings (already cut to [`MAX_WARNING_CHARS`]).
    pub warnings: Vec<String>,
}

impl IngressVerdict {
    pub fn allowed(&self) -> bool {
        self.refused.is_empty()
    }

    /// The refusal as one message naming the object, each field and reason.
    pub fn refusal_message(&self, namespace: &str, name: &str) -> String {
        let parts: Vec<String> = self
            .refused
            .iter()
            .map(|p| format!("{}: {} ({})", p.field, p.message, p.reason))
            .collect();
        format!(
            "clb-ingress refuses Ingress {namespace}/{name}: {}",
            parts.join("; ")
        )
    }
}

/// The verdict on Ingress `namespace/name` of `snap` (which must hold it, as it would be
/// stored): the model builds its stack as the controller would.
pub fn review_ingress(snap: &Snapshot, namespace: &str, name: &str) -> IngressVerdict {
    let Some(ing) = snap.ingresses.iter().find(|i| {
        i.metadata.namespace.as_deref() == Some(namespace)
            && i.metadata.name.as_deref() == Some(name)
    }) else {
        return IngressVerdict::default();
    };
    if OurClasses::new(snap).of(ing).is_none() {
        return IngressVerdict::default();
    }
    let me = ObjectRef::namespaced("Ingress", namespace, name);
    let index = Index::new(snap);
    let mut problems: Vec<Problem> = index
        .global_problems()
        .iter()
        .filter(|p| p.object == me)
        .cloned()
        .collect();
    if let Some(stack) = index.stack_of(namespace, name) {
        let (_, ps) = index.build_stack(stack);
        problems.extend(ps.into_iter().filter(|p| p.object == me));
    }
    problems.sort();
    problems.dedup();
    let mut verdict = IngressVerdict {
        ours: true,
        ..Default::default()
    };
    for p in problems {
        if refuses(&p) {
            verdict.refused.push(p);
        } else if !SECRET_REASONS.contains(&p.reason) {
            verdict
                .warnings
                .push(format!("{}: {} ({})", p.field, p.message, p.reason));
        }
    }
    verdict.warnings.extend(foreign_annotations(ing));
    verdict.warnings = verdict.warnings.into_iter().map(cut).collect();
    verdict.warnings.truncate(MAX_WARNINGS);
    verdict
}

/// Warnings for annotations of other ingress controllers on `ing` (one per annotation).
pub fn foreign_annotations(ing: &Ingress) -> Vec<String> {
    let Some(anns) = ing.metadata.annotations.as_ref() else {
        return Vec::new();
    };
    anns.keys()
        .filter_map(|k| {
            let (_, owner) = FOREIGN_ANNOTATION_PREFIXES
                .iter()
                .find(|(prefix, _)| k.starts_with(prefix))?;
            Some(format!(
                "metadata.annotations[{k}]: an annotation of {owner}; clb-ingress ignores it (see docs/annotations.md for what clb-ingress reads)"
            ))
        })
        .collect()
}

/// Keep a warning within [`MAX_WARNING_CHARS`] characters.
fn cut(w: String) -> String {
    if w.chars().count() <= MAX_WARNING_CHARS {
        return w;
    }
    let mut s: String = w.chars().take(MAX_WARNING_CHARS - 1).collect();
    s.push('…');
    s
}

/// What the model cannot use in a class's parameters (each would leave every Ingress of the
/// class unsynced): `(field, what is wrong)`. Uses the model's own checks.
pub fn review_class_parameters(spec: &ClbClassParametersSpec) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if let Some(d) = spec.catch_all_domain.as_deref()
        && let Err(msg) = translate::check_catch_all_domain(d)
    {
        out.push(("spec.catchAllDomain".to_string(), msg));
    }
    if let Some(lb) = spec.load_balancer_id.as_deref()
        && !build::is_lb_id(lb)
    {
        out.push((
            "spec.loadBalancerId".to_string(),
            format!("{lb:?} is not a CLB id (lb- and 8 lowercase letters or digits)"),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::build::DEFAULT_CONTROLLER_NAME;
    use k8s_openapi::api::networking::v1::IngressClass;
    use serde_json::json;

    fn snapshot(ing: serde_json::Value) -> Snapshot {
        let mut snap = Snapshot::new("c1");
        snap.ingress_classes = vec![
            serde_json::from_value::<IngressClass>(json!({
                "metadata": {"name": "clb"},
                "spec": {"controller": DEFAULT_CONTROLLER_NAME}}))
            .unwrap(),
        ];
        snap.ingresses = vec![serde_json::from_value(ing).unwrap()];
        snap
    }

    fn ingress(class: &str, path: &str, annotations: serde_json::Value) -> serde_json::Value {
        json!({"metadata": {"name": "shop", "namespace": "default", "annotations": annotations},
            "spec": {"ingressClassName": class, "rules": [{"host": "shop.example.com",
                "http": {"paths": [{"path": path, "pathType": "Prefix",
                    "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}}]}})
    }

    #[test]
    fn a_bad_annotation_value_is_refused_with_its_field_and_reason() {
        let snap = snapshot(ingress(
            "clb",
            "/",
            json!({"ingress.cloud.tencent.com/direct-access": "yes"}),
        ));
        let v = review_ingress(&snap, "default", "shop");
        assert!(v.ours && !v.allowed(), "{v:?}");
        let msg = v.refusal_message("default", "shop");
        assert!(
            msg.contains("Ingress default/shop")
                && msg.contains("metadata.annotations[ingress.cloud.tencent.com/direct-access]")
                && msg.contains("InvalidAnnotation"),
            "{msg}"
        );
    }

    #[test]
    fn a_regex_path_is_refused_and_a_missing_service_is_only_a_warning() {
        let v = review_ingress(
            &snapshot(ingress("clb", "/api/(.*)", json!({}))),
            "default",
            "shop",
        );
        assert!(
            v.refused.iter().any(|p| p.reason == Reason::InvalidPath),
            "{v:?}"
        );
        let v = review_ingress(&snapshot(ingress("clb", "/", json!({}))), "default", "shop");
        assert!(v.allowed(), "{v:?}");
        assert!(
            v.warnings.iter().any(|w| w.contains("ServiceNotFound")),
            "{v:?}"
        );
    }

    #[test]
    fn foreign_and_unknown_annotations_are_warnings_not_refusals() {
        let v = review_ingress(
            &snapshot(ingress(
                "clb",
                "/",
                json!({"nginx.ingress.kubernetes.io/rewrite-target": "/",
                       "clb-ingress.io/no-such-thing": "1",
                       "cert-manager.io/cluster-issuer": "letsencrypt"}),
            )),
            "default",
            "shop",
        );
        assert!(v.allowed(), "{v:?}");
        assert!(
            v.warnings
                .iter()
                .any(|w| w.contains("nginx.ingress.kubernetes.io/rewrite-target")
                    && w.contains("ingress-nginx")),
            "{v:?}"
        );
        assert!(
            v.warnings
                .iter()
                .any(|w| w.contains("clb-ingress.io/no-such-thing")),
            "{v:?}"
        );
        assert!(
            !v.warnings.iter().any(|w| w.contains("cert-manager.io")),
            "annotations read by other tools than ingress controllers pass silently: {v:?}"
        );
    }

    #[test]
    fn an_ingress_of_another_class_gets_no_verdict_at_all() {
        let v = review_ingress(
            &snapshot(ingress(
                "nginx",
                "/api/(.*)",
                json!({"nginx.ingress.kubernetes.io/use-regex": "true"}),
            )),
            "default",
            "shop",
        );
        assert_eq!(v, IngressVerdict::default());
    }

    #[test]
    fn class_parameters_the_model_cannot_use_are_named_by_field() {
        let spec: ClbClassParametersSpec = serde_json::from_value(
            json!({"catchAllDomain": "*.example.com", "loadBalancerId": "lb-XYZ"}),
        )
        .unwrap();
        let fields: Vec<String> = review_class_parameters(&spec)
            .into_iter()
            .map(|(f, _)| f)
            .collect();
        assert_eq!(fields, ["spec.catchAllDomain", "spec.loadBalancerId"]);
        assert!(review_class_parameters(&ClbClassParametersSpec::default()).is_empty());
    }

    #[test]
    fn long_warnings_are_cut_to_the_limit() {
        let w = cut("x".repeat(1000));
        assert_eq!(w.chars().count(), MAX_WARNING_CHARS);
        assert!(w.ends_with('…'));
    }
}
