//! What can fail in the controller: [`ControllerError`], one variant per failed action, and the
//! one classification ([`ControllerError::category`] with its [`Retry`] policy) that the Event
//! reason, the `clb_ingress_controller_errors_total{category}` metric and the retry queue share.

use crate::deploy::DeployError;
use crate::model::StackId;
use tracing::warn;

/// An error in words, for logs, Events and the CLI: its message, then each cause whose text
/// the message does not already contain (so no context is said twice), joined by `: `. A
/// Kubernetes API error says its message, reason and code, never a `Debug` dump.
pub fn describe(error: &(dyn std::error::Error + 'static)) -> String {
    let mut out = String::new();
    let mut next = Some(error);
    while let Some(e) = next {
        let text = match e.downcast_ref::<kube::Error>() {
            Some(kube::Error::Api(ae)) => {
                format!("{} ({}, HTTP {})", ae.message, ae.reason, ae.code)
            }
            _ => e.to_string(),
        };
        if !text.is_empty() && !out.contains(&text) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&text);
        }
        // A kube API error has said everything; its source is the same response again.
        next = match e.downcast_ref::<kube::Error>() {
            Some(kube::Error::Api(_)) => None,
            _ => e.source(),
        };
    }
    out
}

/// Whether `error` is a Kubernetes 404 (the object is gone: expected when it was deleted).
pub fn is_kube_not_found(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(ae) if ae.code == 404)
}

/// What the controller does about a failure once it is logged and counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Requeue the stack after an exponential backoff (`queue::retry_delay`).
    Backoff,
    /// Nothing now: the next event on the objects involved, or the next drift resync, redoes it.
    NextResync,
}

/// A Kubernetes write the controller makes about an Ingress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KubeWrite {
    /// `metadata.finalizers` (adding or removing ours).
    Finalizer,
    /// `status.loadBalancer`.
    Status,
    /// The sync-state annotation.
    SyncState,
    /// An Event about the Ingress.
    Event,
}

impl KubeWrite {
    /// The bounded category of a failed write.
    pub const fn category(self) -> &'static str {
        match self {
            Self::Finalizer => "FinalizerUpdate",
            Self::Status => "StatusUpdate",
            Self::SyncState => "SyncStateUpdate",
            Self::Event => "EventPublish",
        }
    }

    /// What the log line says.
    const fn failure(self) -> &'static str {
        match self {
            Self::Finalizer => "cannot update finalizers",
            Self::Status => "cannot write status",
            Self::SyncState => "cannot write sync state",
            Self::Event => "cannot publish Event",
        }
    }
}

impl std::fmt::Display for KubeWrite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Finalizer => "update the finalizers",
            Self::Status => "write the status",
            Self::SyncState => "write the sync state",
            Self::Event => "publish an Event",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    /// Deploying a stack's desired state to its CLB failed (the message is the deploy error's,
    /// as shown in Events and the sync state).
    #[error(transparent)]
    Deploy(#[from] DeployError),
    /// Listing the CLBs this cluster owns, to prune those no stack uses, failed.
    #[error("cannot list owned CLBs for pruning")]
    ListOwnedLbs(#[source] DeployError),
    /// Deleting a CLB no stack uses any more failed.
    #[error("cannot delete CLB {lb}, which no Ingress uses any more")]
    Prune {
        lb: String,
        #[source]
        source: DeployError,
    },
    /// Marking the CLB of a skipped (`mode: skip`) Ingress being deleted as retained failed.
    #[error("cannot mark the CLB of stack {stack} retained")]
    Retain {
        stack: StackId,
        #[source]
        source: DeployError,
    },
    /// A Kubernetes API write about an Ingress failed.
    #[error("cannot {write} of Ingress {namespace}/{name}")]
    Kube {
        write: KubeWrite,
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    /// Reading a Secret an Ingress or a ClbClassParameters references failed (the snapshot is
    /// built without it).
    #[error("cannot read Secret {namespace}/{name}")]
    ReadSecret {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    /// Writing the status of a Gateway API object failed.
    #[error("cannot write the status of {kind} {namespace}/{name}")]
    GatewayStatus {
        kind: &'static str,
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    /// The watch caches never got their initial listing.
    #[error("the watch caches did not sync")]
    CacheSync(#[source] kube::runtime::reflector::store::WriterDropped),
    /// Leadership was lost (the Lease was not renewed in time) or can no longer be proven
    /// (the elector stopped): the controller stops instead of writing as a possible second
    /// leader, and its restart rebuilds every cache.
    #[error("leadership lost or no longer provable; stopping")]
    LeaseLost,
}

impl ControllerError {
    /// A failed Kubernetes write about `ing`.
    pub fn kube(write: KubeWrite, ing: &impl kube::ResourceExt, source: kube::Error) -> Self {
        Self::Kube {
            write,
            namespace: ing.namespace().unwrap_or_default(),
            name: ing.name_any(),
            source,
        }
    }

    /// A Kubernetes write refused because the object changed since it was read (409).
    pub fn is_conflict(&self) -> bool {
        matches!(self, Self::Kube { source: kube::Error::Api(ae), .. } if ae.code == 409)
    }

    /// The one classification of a failure: its bounded PascalCase category (Event reason,
    /// metric label) and whether it is retried with backoff. Cloud failures keep the deploy
    /// error's category (`Throttled`, `Busy`, `LoadBalancerNotFound`, ...).
    fn classify(&self) -> (&'static str, Retry) {
        match self {
            Self::Deploy(e) => (e.category(), Retry::Backoff),
            // Pruning happens on every full pass; a retained mark is retried on the next pass
            // that sees the Ingress being deleted.
            Self::ListOwnedLbs(e) | Self::Prune { source: e, .. } => {
                (e.category(), Retry::NextResync)
            }
            Self::Retain { source, .. } => (source.category(), Retry::NextResync),
            // A missing finalizer blocks the stack's cloud writes, and a status or sync state
            // that was not written leaves users with a stale picture: try again soon.
            Self::Kube {
                write: write @ (KubeWrite::Finalizer | KubeWrite::Status | KubeWrite::SyncState),
                ..
            } => (write.category(), Retry::Backoff),
            Self::Kube { write, .. } => (write.category(), Retry::NextResync),
            Self::GatewayStatus { .. } => (KubeWrite::Status.category(), Retry::Backoff),
            Self::ReadSecret { .. } => ("SecretRead", Retry::NextResync),
            Self::CacheSync(_) => ("CacheSync", Retry::NextResync),
            Self::LeaseLost => ("LeaderElection", Retry::NextResync),
        }
    }

    /// Bounded PascalCase category: the Event reason, the metric label.
    pub fn category(&self) -> &'static str {
        self.classify().0
    }

    /// Whether the stack that failed so is requeued with backoff.
    pub fn retry(&self) -> Retry {
        self.classify().1
    }

    /// A Kubernetes write about an object that is gone (404): expected once it is deleted.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::Kube { source, .. } if is_kube_not_found(source))
    }

    /// Log the failure (warn; an object already gone at debug) with its context, in words
    /// ([`describe`]).
    pub fn log(&self) {
        match self {
            Self::Deploy(e) => warn!(error = %describe(e), "reconcile failed"),
            Self::ListOwnedLbs(e) => {
                warn!(error = %describe(e), "cannot list owned CLBs for pruning")
            }
            Self::Prune { lb, source } => {
                warn!(lb = %lb, error = %describe(source), "prune failed")
            }
            Self::Retain { stack, source } => warn!(
                stack = %stack,
                error = %describe(source),
                "cannot mark the CLB of a skipped Ingress retained"
            ),
            Self::Kube {
                write,
                namespace,
                name,
                source,
            } if is_kube_not_found(source) => tracing::debug!(
                ingress = %format!("{namespace}/{name}"),
                error = %describe(source),
                "{} (the Ingress is gone)",
                write.failure()
            ),
            Self::Kube {
                write,
                namespace,
                name,
                source,
            } => warn!(
                ingress = %format!("{namespace}/{name}"),
                error = %describe(source),
                "{}",
                write.failure()
            ),
            Self::ReadSecret {
                namespace,
                name,
                source,
            } => {
                warn!(secret = %format!("{namespace}/{name}"), error = %describe(source), "cannot read Secret")
            }
            Self::GatewayStatus { source, .. } if is_kube_not_found(source) => {
                tracing::debug!(error = %describe(source), "{self} (it is gone)")
            }
            Self::GatewayStatus { source, .. } => warn!(error = %describe(source), "{self}"),
            Self::CacheSync(e) => warn!(error = %e, "{self}"),
            Self::LeaseLost => warn!("{self}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clb::ClbError;

    fn cloud_error() -> DeployError {
        DeployError::Missing {
            step: "CreateLoadBalancer".into(),
            what: "an id".into(),
        }
    }

    fn kube_error() -> kube::Error {
        kube::Error::Api(
            kube::core::Status::failure("the object has been modified", "Conflict")
                .with_code(409)
                .boxed(),
        )
    }

    /// An error whose message already repeats its source's text, like a wrapper that prints
    /// its cause inline and also exposes it as `source()`.
    #[derive(Debug, thiserror::Error)]
    #[error("describe CLBs: {0}")]
    struct Wrapper(#[source] Inner);
    #[derive(Debug, thiserror::Error)]
    #[error("DescribeLoadBalancers: transport error")]
    struct Inner(#[source] std::io::Error);

    #[test]
    fn an_error_says_each_context_once_and_keeps_its_root_cause() {
        let e = Wrapper(Inner(std::io::Error::other("connection refused")));
        let text = describe(&e);
        assert_eq!(
            text,
            "describe CLBs: DescribeLoadBalancers: transport error: connection refused"
        );
        assert_eq!(text.matches("transport error").count(), 1, "{text}");
    }

    #[test]
    fn a_kubernetes_api_error_is_described_without_a_debug_dump() {
        let text = describe(&kube_error());
        assert_eq!(text, "the object has been modified (Conflict, HTTP 409)");
        assert!(!text.contains("Status {"), "{text}");
        let gone = kube::Error::Api(
            kube::core::Status::failure("ingresses \"web\" not found", "NotFound")
                .with_code(404)
                .boxed(),
        );
        assert!(is_kube_not_found(&gone));
        assert!(!is_kube_not_found(&kube_error()));
    }

    #[test]
    fn deploy_failures_keep_the_deploy_category_and_are_retried() {
        let e = ControllerError::from(cloud_error());
        assert_eq!(e.category(), "Inconsistent");
        assert_eq!(e.category(), cloud_error().category());
        assert_eq!(e.to_string(), cloud_error().to_string());
        assert_eq!(e.retry(), Retry::Backoff);
    }

    #[test]
    fn kubernetes_writes_are_categorised_by_write_and_all_but_events_back_off() {
        let ing = k8s_openapi::api::networking::v1::Ingress {
            metadata: kube::api::ObjectMeta {
                namespace: Some("ns".into()),
                name: Some("web".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        for (write, category, retry) in [
            // The stack's cloud writes wait for the finalizer, and users read the status and
            // the sync state: retried soon. Events are best effort.
            (KubeWrite::Finalizer, "FinalizerUpdate", Retry::Backoff),
            (KubeWrite::Status, "StatusUpdate", Retry::Backoff),
            (KubeWrite::SyncState, "SyncStateUpdate", Retry::Backoff),
            (KubeWrite::Event, "EventPublish", Retry::NextResync),
        ] {
            let e = ControllerError::kube(write, &ing, kube_error());
            assert_eq!(e.category(), category);
            assert_eq!(e.retry(), retry, "{write}");
            assert!(e.to_string().ends_with("of Ingress ns/web"), "{e}");
            assert!(std::error::Error::source(&e).is_some());
        }
    }

    #[test]
    fn cloud_failures_outside_a_reconcile_wait_for_the_next_pass() {
        let prune = ControllerError::Prune {
            lb: "lb-1".into(),
            source: DeployError::Cloud {
                step: "DeleteLoadBalancer".into(),
                source: ClbError::Api {
                    action: "DeleteLoadBalancer",
                    code: "RequestLimitExceeded".into(),
                    message: "slow down".into(),
                    request_id: "r-1".into(),
                },
            },
        };
        assert_eq!(prune.category(), "Throttled");
        assert_eq!(prune.retry(), Retry::NextResync);
        let list = ControllerError::ListOwnedLbs(cloud_error());
        assert_eq!(list.category(), "Inconsistent");
        assert_eq!(list.retry(), Retry::NextResync);
    }

    #[test]
    fn categories_are_bounded_pascal_case() {
        let all = [
            ControllerError::from(cloud_error()).category(),
            KubeWrite::Finalizer.category(),
            KubeWrite::Status.category(),
            KubeWrite::SyncState.category(),
            KubeWrite::Event.category(),
            ControllerError::ReadSecret {
                namespace: "a".into(),
                name: "b".into(),
                source: kube_error(),
            }
            .category(),
        ];
        for c in all {
            assert!(
                c.starts_with(|ch: char| ch.is_ascii_uppercase())
                    && c.chars().all(|ch| ch.is_ascii_alphanumeric()),
                "{c}"
            );
        }
    }
}
