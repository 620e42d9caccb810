//! The account's real CLB quotas (DescribeQuota) as the model's [`Limits`], instead of the
//! documented defaults: accounts can have them raised (or lowered).

use super::*;
use crate::model::build::Limits;

/// Quota ids (clb-api.md §6) and the limit each sets.
pub const LISTENERS_PER_LB: &str = "TOTAL_LISTENER_QUOTA";
pub const RULES_PER_LISTENER: &str = "TOTAL_LISTENER_RULE_QUOTA";
pub const TARGETS_PER_RULE: &str = "TOTAL_TARGET_BIND_QUOTA";

/// A quota above this is taken as a malformed answer (the documented values are 50 and 100;
/// raised quotas stay in the hundreds or low thousands).
pub const MAX_SANE_QUOTA: i64 = 100_000;

/// The limits `quotas` give; a quota missing or out of range keeps the default.
pub fn limits_from(quotas: &[Quota]) -> Limits {
    let mut limits = Limits::default();
    for q in quotas {
        let Some(v) = usize::try_from(q.quota_limit)
            .ok()
            .filter(|v| *v >= 1 && (*v as i64) <= MAX_SANE_QUOTA)
        else {
            continue;
        };
        match q.quota_id.as_str() {
            LISTENERS_PER_LB => limits.listeners_per_lb = v,
            RULES_PER_LISTENER => limits.rules_per_listener = v,
            TARGETS_PER_RULE => limits.targets_per_rule = v,
            _ => {}
        }
    }
    limits
}

impl<A: ClbApi> Deployer<A> {
    /// The account's limits, read from DescribeQuota.
    pub async fn limits(&self) -> Result<Limits, DeployError> {
        let quotas = self
            .client
            .describe_quota()
            .await
            .map_err(cloud("DescribeQuota"))?;
        Ok(limits_from(&quotas))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(id: &str, limit: i64) -> Quota {
        Quota {
            quota_id: id.into(),
            quota_current: None,
            quota_limit: limit,
        }
    }

    #[test]
    fn raised_quotas_become_the_limits_and_nonsense_keeps_the_default() {
        let l = limits_from(&[
            q(RULES_PER_LISTENER, 200),
            q(LISTENERS_PER_LB, 0),
            q(TARGETS_PER_RULE, 10_000_000),
            q("TOTAL_OPEN_CLB_QUOTA", 3),
        ]);
        assert_eq!(l.rules_per_listener, 200);
        assert_eq!(l.listeners_per_lb, Limits::default().listeners_per_lb);
        assert_eq!(l.targets_per_rule, Limits::default().targets_per_rule);
        assert_eq!(limits_from(&[]), Limits::default());
    }
}
