//! Rules used versus quota per listener: `clb_ingress_listener_rules{stack, listener}` (rules
//! clb-ingress keeps on each listener of a stack's CLB after its last successful reconcile)
//! and `clb_ingress_listener_rules_quota` (the account's rules-per-listener quota in use).
//! Labels are bounded: one series per listener of a live stack, dropped with the stack.

use super::{MetricsError, opts, register, saturating_i64};
use prometheus::{IntGauge, IntGaugeVec, Registry};
use std::collections::HashMap;
use std::sync::Mutex;

pub const LISTENER_RULES: &str = "listener_rules";
pub const LISTENER_RULES_QUOTA: &str = "listener_rules_quota";

#[derive(Debug)]
pub struct ListenerRules {
    rules: IntGaugeVec,
    quota: IntGauge,
    /// The listener labels published per stack, to drop those that go.
    published: Mutex<HashMap<String, Vec<String>>>,
}

impl ListenerRules {
    pub fn register(r: &Registry) -> Result<Self, MetricsError> {
        let rules = register(r, LISTENER_RULES, || {
            IntGaugeVec::new(
                opts(
                    LISTENER_RULES,
                    "CLB rules clb-ingress keeps on each listener (PROTOCOL:PORT) of a stack's CLB, after its last successful reconcile.",
                ),
                &["stack", "listener"],
            )
        })?;
        let quota = register(r, LISTENER_RULES_QUOTA, || {
            IntGauge::with_opts(opts(
                LISTENER_RULES_QUOTA,
                "The account's CLB rules-per-listener quota in use (DescribeQuota TOTAL_LISTENER_RULE_QUOTA, else the documented 50).",
            ))
        })?;
        Ok(Self {
            rules,
            quota,
            published: Mutex::default(),
        })
    }

    /// The listeners of `stack` now hold these rule counts; listeners not listed are dropped.
    pub fn set(&self, stack: &str, listeners: &[(String, usize)]) {
        let mut published = self
            .published
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now: Vec<String> = listeners.iter().map(|(l, _)| l.clone()).collect();
        for gone in published
            .get(stack)
            .into_iter()
            .flatten()
            .filter(|l| !now.contains(l))
        {
            let _ = self.rules.remove_label_values(&[stack, gone]);
        }
        for (listener, n) in listeners {
            self.rules
                .with_label_values(&[stack, listener])
                .set(saturating_i64(*n));
        }
        published.insert(stack.to_string(), now);
    }

    /// `stack` is gone: drop its series.
    pub fn forget(&self, stack: &str) {
        self.set(stack, &[]);
        self.published
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(stack);
    }

    pub fn set_quota(&self, rules_per_listener: usize) {
        self.quota.set(saturating_i64(rules_per_listener));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(r: &Registry) -> Vec<(String, i64)> {
        r.gather()
            .iter()
            .filter(|f| f.name() == "clb_ingress_listener_rules")
            .flat_map(|f| f.get_metric().iter())
            .map(|m| {
                let labels: Vec<String> = m
                    .get_label()
                    .iter()
                    .map(|l| l.value().to_string())
                    .collect();
                (labels.join(" "), m.get_gauge().get_value() as i64)
            })
            .collect()
    }

    #[test]
    fn a_listener_that_goes_and_a_stack_that_goes_leave_no_series_behind() {
        let r = Registry::new();
        let m = ListenerRules::register(&r).unwrap();
        m.set(
            "class:web",
            &[("HTTP:80".into(), 49), ("HTTPS:443".into(), 13)],
        );
        m.set("class:web#1", &[("HTTP:80".into(), 7)]);
        m.set("class:web", &[("HTTP:80".into(), 43)]);
        let mut now = series(&r);
        now.sort();
        assert_eq!(
            now,
            vec![
                ("HTTP:80 class:web".to_string(), 43),
                ("HTTP:80 class:web#1".to_string(), 7)
            ]
        );
        m.forget("class:web");
        assert_eq!(series(&r), vec![("HTTP:80 class:web#1".to_string(), 7)]);
    }
}
