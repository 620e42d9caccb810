//! Computed Gateway API status: GatewayClass `Accepted`; Gateway `Accepted`/`Programmed` and
//! addresses; per listener `Accepted`, `ResolvedRefs`, `Conflicted`, `Programmed` and
//! `attachedRoutes`; per route parent `Accepted`, `ResolvedRefs` (and `PartiallyInvalid` when
//! some rules are dropped). Plain data, built by `model::build`; the controller writes it.

use super::types::{ParentReference, RouteGroupKind};
use serde::Serialize;

pub const TRUE: &str = "True";
pub const FALSE: &str = "False";

/// One status condition (the controller adds `lastTransitionTime`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(rename = "type")]
    pub type_: &'static str,
    pub status: &'static str,
    pub reason: &'static str,
    pub message: String,
    pub observed_generation: Option<i64>,
}

impl Condition {
    pub fn new(
        type_: &'static str,
        ok: bool,
        reason: &'static str,
        message: impl Into<String>,
        generation: Option<i64>,
    ) -> Self {
        Self {
            type_,
            status: if ok { TRUE } else { FALSE },
            reason,
            message: message.into(),
            observed_generation: generation,
        }
    }

    pub fn is_true(&self) -> bool {
        self.status == TRUE
    }
}

/// The condition of this type in a list.
pub fn condition<'c>(conditions: &'c [Condition], type_: &str) -> Option<&'c Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClassStatus {
    pub name: String,
    pub conditions: Vec<Condition>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ListenerStatus {
    pub name: String,
    pub supported_kinds: Vec<RouteGroupKind>,
    pub attached_routes: i32,
    pub conditions: Vec<Condition>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GatewayStatus {
    pub namespace: String,
    pub name: String,
    /// VIPs of the CLB (filled by [`GatewayStatus::programmed`]).
    pub addresses: Vec<String>,
    pub conditions: Vec<Condition>,
    pub listeners: Vec<ListenerStatus>,
}

impl GatewayStatus {
    /// The status once the CLB is known: with its VIPs the Gateway and each usable listener
    /// are `Programmed`; without (not created yet, or the sync failed) they are not, with
    /// `reason` (`Pending`, `AddressNotAssigned`) and `message`.
    pub fn programmed(&self, vips: &[String], reason: &'static str, message: &str) -> Self {
        let mut out = self.clone();
        let generation =
            condition(&self.conditions, "Accepted").and_then(|c| c.observed_generation);
        let accepted = condition(&self.conditions, "Accepted").is_some_and(Condition::is_true);
        let live = accepted && !vips.is_empty();
        out.addresses = if live { vips.to_vec() } else { Vec::new() };
        set(
            &mut out.conditions,
            if live {
                Condition::new(
                    "Programmed",
                    true,
                    "Programmed",
                    "the CLB serves this Gateway",
                    generation,
                )
            } else if !accepted {
                Condition::new(
                    "Programmed",
                    false,
                    "Invalid",
                    "the Gateway is not accepted",
                    generation,
                )
            } else {
                Condition::new("Programmed", false, reason, message, generation)
            },
        );
        for l in &mut out.listeners {
            let usable = ["Accepted", "ResolvedRefs"]
                .iter()
                .all(|t| condition(&l.conditions, t).is_some_and(Condition::is_true))
                && !condition(&l.conditions, "Conflicted").is_some_and(Condition::is_true);
            let c = if !usable || !accepted {
                Condition::new(
                    "Programmed",
                    false,
                    "Invalid",
                    if accepted {
                        "the listener is not valid (see its other conditions)"
                    } else {
                        "the Gateway is not accepted"
                    },
                    generation,
                )
            } else if live {
                Condition::new(
                    "Programmed",
                    true,
                    "Programmed",
                    "the CLB listener serves it",
                    generation,
                )
            } else {
                Condition::new("Programmed", false, reason, message, generation)
            };
            set(&mut l.conditions, c);
        }
        out
    }
}

/// Replace the condition of the same type, or add it.
pub fn set(conditions: &mut Vec<Condition>, c: Condition) {
    match conditions.iter_mut().find(|x| x.type_ == c.type_) {
        Some(x) => *x = c,
        None => conditions.push(c),
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteParentStatus {
    pub parent_ref: ParentReference,
    pub controller_name: String,
    pub conditions: Vec<Condition>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RouteStatus {
    /// `HTTPRoute` or `GRPCRoute`.
    pub kind: &'static str,
    pub namespace: String,
    pub name: String,
    /// Only the parents that are Gateways of clb-ingress's classes.
    pub parents: Vec<RouteParentStatus>,
}

/// Every status the Gateway API objects of a snapshot should have.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct GatewayApiStatus {
    pub classes: Vec<ClassStatus>,
    pub gateways: Vec<GatewayStatus>,
    pub routes: Vec<RouteStatus>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gw(listener_ok: bool) -> GatewayStatus {
        GatewayStatus {
            namespace: "ns".into(),
            name: "gw".into(),
            addresses: vec![],
            conditions: vec![Condition::new("Accepted", true, "Accepted", "", Some(3))],
            listeners: vec![ListenerStatus {
                name: "http".into(),
                supported_kinds: vec![],
                attached_routes: 1,
                conditions: vec![
                    Condition::new("Accepted", true, "Accepted", "", Some(3)),
                    Condition::new(
                        "ResolvedRefs",
                        listener_ok,
                        if listener_ok {
                            "ResolvedRefs"
                        } else {
                            "InvalidCertificateRef"
                        },
                        "",
                        Some(3),
                    ),
                    Condition::new("Conflicted", false, "NoConflicts", "", Some(3)),
                ],
            }],
        }
    }

    #[test]
    fn a_gateway_with_vips_is_programmed_with_its_addresses_and_valid_listeners() {
        let s = gw(true).programmed(&["127.1.0.1".into()], "Pending", "");
        assert_eq!(s.addresses, ["127.1.0.1"]);
        let p = condition(&s.conditions, "Programmed").unwrap();
        assert_eq!(
            (p.status, p.reason, p.observed_generation),
            (TRUE, "Programmed", Some(3))
        );
        let l = condition(&s.listeners[0].conditions, "Programmed").unwrap();
        assert_eq!((l.status, l.reason), (TRUE, "Programmed"));
    }

    #[test]
    fn a_listener_with_an_unresolved_certificate_is_not_programmed_on_a_live_gateway() {
        let s = gw(false).programmed(&["127.1.0.1".into()], "Pending", "");
        let l = condition(&s.listeners[0].conditions, "Programmed").unwrap();
        assert_eq!((l.status, l.reason), (FALSE, "Invalid"));
    }

    #[test]
    fn a_gateway_without_vips_is_pending_and_has_no_addresses() {
        let s = gw(true).programmed(&[], "Pending", "the CLB is being created");
        assert!(s.addresses.is_empty());
        let p = condition(&s.conditions, "Programmed").unwrap();
        assert_eq!(
            (p.status, p.reason, p.message.as_str()),
            (FALSE, "Pending", "the CLB is being created")
        );
    }
}
