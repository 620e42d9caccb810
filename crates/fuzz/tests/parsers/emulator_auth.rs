//! The emulator API's request authentication (`clb_emulator::server::authenticate_request`):
//! TC3 verification of whatever a client sends.

use clb_api::sign;
use clb_emulator::actions::{CLB_ACTIONS, SSL_ACTIONS};
use clb_emulator::config::{SIGNATURE_MAX_SKEW_SECS, Settings};
use clb_emulator::error::codes;
use clb_emulator::server::authenticate_request;
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use proptest::prelude::*;

const NOW: i64 = 1_700_000_000;

/// Every code authentication may answer with.
const AUTH_CODES: &[&str] = &[
    codes::AUTH_SIGNATURE_EXPIRE,
    codes::AUTH_SIGNATURE_FAILURE,
    codes::AUTH_SECRET_ID_NOT_FOUND,
    codes::AUTH_INVALID_AUTHORIZATION,
    codes::INVALID_ACTION,
    codes::NO_SUCH_VERSION,
    codes::MISSING_PARAMETER,
    codes::INVALID_PARAMETER,
    codes::INVALID_PARAMETER_VALUE,
    codes::REGION_NOT_FOUND,
];

/// A request as an SDK builds it: (service, action, body, timestamp offset, signed extra header).
#[derive(Debug, Clone)]
struct Request {
    clb: bool,
    action: String,
    body: Vec<u8>,
    skew: i64,
    host: String,
    lower_case_values: bool,
}

fn request() -> impl Strategy<Value = Request> {
    (
        any::<bool>(),
        any::<prop::sample::Index>(),
        proptest::collection::vec(any::<u8>(), 0..200),
        -SIGNATURE_MAX_SKEW_SECS..=SIGNATURE_MAX_SKEW_SECS,
        "[a-z0-9.]{1,20}(:[0-9]{1,5})?",
        any::<bool>(),
    )
        .prop_map(|(clb, i, body, skew, host, lower_case_values)| {
            let actions = if clb { CLB_ACTIONS } else { SSL_ACTIONS };
            Request {
                clb,
                action: i.get(actions).to_string(),
                body,
                skew,
                host,
                lower_case_values,
            }
        })
}

fn signed_headers(settings: &Settings, r: &Request) -> HeaderMap {
    let service = if r.clb { "clb" } else { "ssl" };
    let ts = NOW + r.skew;
    let content_type = if r.lower_case_values {
        "application/json"
    } else {
        "Application/JSON"
    };
    let signed = [("content-type", content_type), ("host", r.host.as_str())];
    let sig = sign::sign(
        &sign::SigningInput {
            method: "POST",
            query: "",
            headers: &signed,
            payload: &r.body,
            service,
            timestamp: ts,
        },
        &settings.credentials[0].secret_key,
    );
    let mut h = HeaderMap::new();
    let mut put = |name: &'static str, value: String| {
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.insert(name, v);
        }
    };
    put(
        "authorization",
        sign::authorization(&settings.credentials[0].secret_id, &sig),
    );
    put("content-type", content_type.to_string());
    put("host", r.host.clone());
    put("x-tc-action", r.action.clone());
    put("x-tc-timestamp", ts.to_string());
    put(
        "x-tc-version",
        if r.clb { "2018-03-17" } else { "2019-12-05" }.to_string(),
    );
    put("x-tc-region", settings.region.clone());
    h
}

/// Header names authentication reads, and a few it does not.
const NAMES: &[&str] = &[
    "authorization",
    "content-type",
    "host",
    "x-tc-action",
    "x-tc-timestamp",
    "x-tc-version",
    "x-tc-region",
    "x-tc-content-sha256",
    "x-tc-token",
    "x-other",
];

fn header_value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..80),
        "[ -~]{0,80}".prop_map(String::into_bytes),
        any::<i64>().prop_map(|n| n.to_string().into_bytes()),
        "TC3-HMAC-SHA256 Credential=[A-Za-z0-9]{0,40}/[0-9-]{0,10}/(clb|ssl|x)/tc3_request, SignedHeaders=(content-type;host|host|x-tc-action), Signature=[0-9a-f]{64}"
            .prop_map(String::into_bytes),
    ]
}

proptest! {
    #![proptest_config(clb_fuzz::config())]

    #[test]
    fn a_request_signed_as_the_sdk_signs_it_is_accepted_and_names_its_action(r in request()) {
        let settings = Settings::default();
        let headers = signed_headers(&settings, &r);
        let got = authenticate_request(&settings, NOW, &Method::POST, &headers, &r.body);
        prop_assert_eq!(got, Ok(r.action.clone()));
    }

    #[test]
    fn a_signed_request_changed_in_one_byte_of_its_body_or_a_late_timestamp_is_refused(
        r in request(),
        at in any::<prop::sample::Index>(),
        flip in 1u8..=255,
        late in (SIGNATURE_MAX_SKEW_SECS + 1)..i64::MAX,
        early in any::<bool>(),
    ) {
        let settings = Settings::default();
        let headers = signed_headers(&settings, &r);
        if !r.body.is_empty() {
            let mut body = r.body.clone();
            let i = at.index(body.len());
            body[i] ^= flip;
            let got = authenticate_request(&settings, NOW, &Method::POST, &headers, &body);
            prop_assert_eq!(got.map_err(|e| e.code), Err(codes::AUTH_SIGNATURE_FAILURE.to_string()));
        }
        // The server's clock far from the request's: refused as expired, at any distance.
        let now = if early { (NOW + r.skew).saturating_sub(late) } else { (NOW + r.skew).saturating_add(late) };
        if now.abs_diff(NOW + r.skew) > SIGNATURE_MAX_SKEW_SECS.unsigned_abs() {
            let got = authenticate_request(&settings, now, &Method::POST, &headers, &r.body);
            prop_assert_eq!(got.map_err(|e| e.code), Err(codes::AUTH_SIGNATURE_EXPIRE.to_string()));
        }
    }

    #[test]
    fn any_request_headers_are_authenticated_without_panicking_and_refused_with_an_auth_code(
        r in request(),
        replace in proptest::collection::vec((any::<prop::sample::Index>(), header_value()), 0..6),
        remove in proptest::collection::vec(any::<prop::sample::Index>(), 0..3),
        now in prop_oneof![Just(NOW), any::<i64>()],
        post in any::<bool>(),
    ) {
        let settings = Settings::default();
        let mut headers = signed_headers(&settings, &r);
        for (name, value) in &replace {
            if let Ok(v) = HeaderValue::from_bytes(value) {
                headers.insert(HeaderName::from_static(NAMES[name.index(NAMES.len())]), v);
            }
        }
        for name in &remove {
            headers.remove(NAMES[name.index(NAMES.len())]);
        }
        let method = if post { Method::POST } else { Method::GET };
        match authenticate_request(&settings, now, &method, &headers, &r.body) {
            Ok(action) => {
                prop_assert_eq!(Some(action.as_str()), headers.get("x-tc-action").and_then(|v| v.to_str().ok()));
                prop_assert!(CLB_ACTIONS.contains(&action.as_str()) || SSL_ACTIONS.contains(&action.as_str()));
            }
            Err(e) => prop_assert!(AUTH_CODES.contains(&e.code.as_str()), "unexpected code {e:?}"),
        }
    }
}
