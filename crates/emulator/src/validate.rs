//! Syntax and range checks of CLB request values (domains, URLs, names, ports, weights) that
//! the emulator applies before touching its state (clb-api.md §3, §6, §7.1, §7.4).
//!
//! Domain and URL syntax (§7.1/§7.4) is `clb_ingress_core::matching::clb::check_domain/check_url`, the same
//! code the data plane compiles rules with, so whatever the API accepts the data plane can route.

use crate::error::{ApiFailure, codes};
use clb_ingress_core::matching::clb::{
    MAX_NEW_DOMAIN_LEN, check_domain, check_domain_up_to, check_url,
};

/// Name length limit of CLBs and listeners.
pub const NAME_MAX_LEN: usize = 80;
/// Target weight range (§3.4).
pub const WEIGHT_MAX: i64 = 100;
/// Default target weight (§3.4).
pub const WEIGHT_DEFAULT: i64 = 10;
/// Largest TCP port.
pub const PORT_MAX: i64 = 65_535;

/// `InvalidParameterValue` for a bad domain.
pub fn domain(d: &str) -> Result<(), ApiFailure> {
    check_domain(d).map(|_| ()).map_err(|m| {
        ApiFailure::new(
            codes::INVALID_PARAMETER_VALUE,
            format!("Domain `{d}` is invalid: {m}"),
        )
    })
}

/// `InvalidParameterValue` for a bad ModifyDomain `NewDomain` (up to 120 characters).
pub fn new_domain(d: &str) -> Result<(), ApiFailure> {
    check_domain_up_to(d, MAX_NEW_DOMAIN_LEN)
        .map(|_| ())
        .map_err(|m| {
            ApiFailure::new(
                codes::INVALID_PARAMETER_VALUE,
                format!("NewDomain `{d}` is invalid: {m}"),
            )
        })
}

/// `InvalidParameterValue` for a bad URL.
pub fn url(u: &str) -> Result<(), ApiFailure> {
    check_url(u).map(|_| ()).map_err(|m| {
        ApiFailure::new(
            codes::INVALID_PARAMETER_VALUE,
            format!("Url `{u}` is invalid: {m}"),
        )
    })
}

/// A CLB or listener name: 1-80 letters (incl. CJK), digits, `-`, `_`, `.`.
pub fn name(field: &str, n: &str) -> Result<(), ApiFailure> {
    let len = n.chars().count();
    if len == 0 || len > NAME_MAX_LEN {
        return Err(ApiFailure::new(
            codes::INVALID_PARAMETER_VALUE_LENGTH,
            format!("{field} length must be 1-{NAME_MAX_LEN}"),
        ));
    }
    if let Some(c) = n
        .chars()
        .find(|c| !(c.is_alphanumeric() || matches!(c, '-' | '_' | '.')) || (*c as u32) > 0xFFFF)
    {
        return Err(ApiFailure::new(
            codes::INVALID_PARAMETER_VALUE,
            format!("{field} contains the character {c:?}"),
        ));
    }
    Ok(())
}

/// A port in 1-65535.
pub fn port(field: &str, p: i64) -> Result<u16, ApiFailure> {
    if (1..=PORT_MAX).contains(&p) {
        Ok(p as u16)
    } else {
        Err(ApiFailure::new(
            codes::INVALID_PARAMETER_VALUE_RANGE,
            format!("{field} must be 1-{PORT_MAX}, got {p}"),
        ))
    }
}

/// A weight in 0-100.
pub fn weight(w: i64) -> Result<u32, ApiFailure> {
    if (0..=WEIGHT_MAX).contains(&w) {
        Ok(w as u32)
    } else {
        Err(ApiFailure::new(
            codes::INVALID_PARAMETER_VALUE_RANGE,
            format!("Weight must be 0-{WEIGHT_MAX}, got {w}"),
        ))
    }
}

/// An array no longer than `max` (per-call caps of §6).
pub fn cap<T>(field: &str, items: &[T], max: usize) -> Result<(), ApiFailure> {
    if items.len() > max {
        Err(ApiFailure::new(
            codes::INVALID_PARAMETER_VALUE_LENGTH,
            format!(
                "{field} has {} elements; at most {max} are allowed",
                items.len()
            ),
        ))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_domains_and_urls_become_invalid_parameter_value() {
        assert!(domain("www.example.com").is_ok());
        assert!(domain("*.example.com").is_ok());
        assert_eq!(
            domain("a.*.com").map_err(|e| e.code),
            Err(codes::INVALID_PARAMETER_VALUE.to_string())
        );
        assert!(url("/api").is_ok());
        assert_eq!(
            url("api").map_err(|e| e.code),
            Err(codes::INVALID_PARAMETER_VALUE.to_string())
        );
        assert!(url(&format!("/{}", "a".repeat(200))).is_err());
    }

    #[test]
    fn ports_and_weights_outside_their_ranges_are_refused() {
        assert!(port("Port", 0).is_err());
        assert!(port("Port", 65_536).is_err());
        assert_eq!(port("Port", 80).ok(), Some(80));
        assert!(weight(101).is_err());
        assert!(weight(-1).is_err());
        assert_eq!(weight(0).ok(), Some(0));
    }
}
