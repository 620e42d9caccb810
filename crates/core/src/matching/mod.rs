//! Two independent request matchers: `ingress` (the Kubernetes Ingress spec, the oracle) and
//! `clb` (Tencent CLB's documented layer-7 matching, clb-api.md §7). Pure code, no I/O.
//!
//! The emulator's data plane routes with `clb`; the property tests check that, for every
//! request, `clb` over the translated configuration gives the same answer as `ingress` over the
//! Ingress objects.
//!
//! Each matcher has its own request handling (host and path normalisation, written
//! independently: `clb` as nginx's byte-by-byte parser, `ingress` as decode-then-resolve
//! segments), so the property test also checks one against the other.
pub mod clb;
pub mod ingress;
