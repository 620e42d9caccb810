//! `clb-ingress run`: the long-running controller with its operations endpoint.

use crate::controller::{self, Hooks, RunArgs};
use crate::http::{self, HttpState};
use crate::metrics::{Metrics, ReconcileResult};
use crate::model::StackId;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// Feeds the controller's progress into the Prometheus metrics.
struct MetricsHooks(Arc<Metrics>, HttpState);

impl Hooks for MetricsHooks {
    fn reconciled(&self, stack: &StackId, ok: bool, elapsed: Duration, pending: usize) {
        let result = if ok {
            ReconcileResult::Success
        } else {
            ReconcileResult::Error
        };
        self.0.reconcile_finished(result, elapsed);
        if ok {
            let now = jiff::Timestamp::now().as_millisecond() as f64 / 1000.0;
            self.0.stack_synced(&stack.to_string(), now, pending);
        } else {
            self.0.set_pending_changes(&stack.to_string(), pending);
        }
    }
    fn stack_gone(&self, stack: &StackId) {
        self.0.forget_stack(&stack.to_string());
    }
    fn queue_depth(&self, n: usize) {
        self.0.set_queue_depth(n);
    }
    fn synced(&self) {
        self.1.set_synced(true);
    }
    fn leader(&self, is_leader: bool) {
        self.0.set_leader(is_leader);
        self.1.set_leadership_known(true);
    }
    fn problems(&self, by_reason: &BTreeMap<&'static str, usize>) {
        let v: Vec<(&'static str, usize)> = by_reason.iter().map(|(k, v)| (*k, *v)).collect();
        self.0.set_problems(&v);
    }
}

pub fn run(args: RunArgs) -> anyhow::Result<i32> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(serve(args, |addr| {
        println!("clb-ingress operations endpoint on http://{addr} (/metrics /healthz /readyz)");
    }))
}

/// The controller and its operations endpoint, until SIGTERM/Ctrl-C. `on_listen` is told the
/// operations address once it is bound.
pub async fn serve(
    args: RunArgs,
    on_listen: impl FnOnce(std::net::SocketAddr),
) -> anyhow::Result<i32> {
    {
        let metrics = Arc::new(Metrics::with_version(env!("CARGO_PKG_VERSION"))?);
        let state = HttpState::new(metrics.clone(), args.leader_elect);
        let (listener, addr) = http::bind(args.metrics_addr).await?;
        on_listen(addr);
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(http::serve_listener(listener, state.clone(), async move {
            let _ = stop_rx.await;
        }));
        let observer: Arc<dyn crate::clb::observe::ClbObserver> = metrics.clone();
        let client = args.cloud.client_observed(Some(observer))?;
        let hooks: Arc<dyn Hooks> = Arc::new(MetricsHooks(metrics, state.clone()));
        let ready_state = state.clone();
        let result = controller::run(
            args,
            client,
            hooks,
            Arc::new(move |r| ready_state.set_synced(r)),
        )
        .await;
        let _ = stop_tx.send(());
        let _ = server.await;
        result.map(|_| 0)
    }
}
