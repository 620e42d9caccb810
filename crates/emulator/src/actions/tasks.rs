//! The CLB task action: DescribeTaskStatus, by TaskId or by the DealName of a CreateLoadBalancer
//! (the tasks themselves are made by `dispatch` for the async writes of clb-api.md §4).

use crate::core::Core;
use crate::error::ApiFailure;
use clb_api::types::*;

use super::common::{Handled, reply};

pub fn describe_task_status(core: &mut Core, r: DescribeTaskStatusRequest) -> Handled {
    let id = match (&r.task_id, &r.deal_name) {
        (Some(t), _) => t.clone(),
        (None, Some(d)) => core
            .deals
            .get(d)
            .cloned()
            .ok_or_else(|| ApiFailure::invalid(format!("DealName {d} not found")))?,
        (None, None) => return Err(ApiFailure::missing("TaskId")),
    };
    let t = core
        .tasks
        .get(&id)
        .ok_or_else(|| ApiFailure::invalid(format!("TaskId {id} not found")))?;
    reply(
        &DescribeTaskStatusResponse {
            status: t.status,
            load_balancer_ids: t.load_balancer_ids.clone(),
            message: t.message.clone(),
        },
        vec![],
    )
}
