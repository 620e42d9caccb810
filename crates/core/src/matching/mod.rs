//! Two independent request matchers: `ingress` (the Kubernetes Ingress spec, the oracle) and
//! `clb` (Tencent CLB's documented layer-7 matching, clb-api.md §7). Pure code, no I/O.
//!
//! The emulator's data plane routes with `clb`; the property tests check that, for every
//! request, `clb` over the translated configuration gives the same answer as `ingress` over the
//! Ingress objects.
pub mod clb;
pub mod ingress;

/// Split a request target into its path (without query string or fragment).
pub fn request_path(path_and_query: &str) -> &str {
    let end = path_and_query
        .find(['?', '#'])
        .unwrap_or(path_and_query.len());
    &path_and_query[..end]
}

/// Normalise a `Host` header for matching: drop the port and a trailing dot, lower-case it.
pub fn normalize_host(host: &str) -> String {
    let host = host.trim();
    let without_port = if let Some(rest) = host.strip_prefix('[') {
        // IPv6 literal: keep the brackets' content.
        rest.split(']').next().unwrap_or(rest)
    } else {
        host.rsplit_once(':')
            .filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()))
            .map_or(host, |(h, _)| h)
    };
    without_port.trim_end_matches('.').to_ascii_lowercase()
}
