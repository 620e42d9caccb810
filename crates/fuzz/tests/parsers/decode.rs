//! Cloud response decoding (`clb_api::types::decode_response`): the JSON envelope, the
//! response types and the error envelope.

use clb_api::types::{
    self, DecodeError, DescribeListenersResponse, DescribeLoadBalancersResponse,
    DescribeTargetHealthResponse, DescribeTaskStatusResponse, Empty,
};
use proptest::prelude::*;
use serde_json::{Value, json};

/// JSON values of any shape, small.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        "[ -~]{0,8}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map(
                prop_oneof![
                    "[A-Z][a-zA-Z]{0,10}",
                    Just("RequestId".to_string()),
                    Just("Error".to_string()),
                    Just("Code".to_string())
                ],
                inner,
                0..4,
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A response body: an envelope around arbitrary fields, a mangled one, or arbitrary bytes.
fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => json_value().prop_map(|v| json!({"Response": v}).to_string().into_bytes()),
        2 => json_value().prop_map(|v| v.to_string().into_bytes()),
        1 => (json_value(), any::<prop::sample::Index>()).prop_map(|(v, i)| {
            let mut b = json!({"Response": v}).to_string().into_bytes();
            let at = i.index(b.len());
            b.truncate(at);
            b
        }),
        1 => proptest::collection::vec(any::<u8>(), 0..64),
    ]
}

fn check<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<(), TestCaseError> {
    match types::decode_response::<T>(body) {
        Ok((_, request_id)) => {
            let v: Value =
                serde_json::from_slice(body).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(
                Some(request_id.as_str()),
                v["Response"]["RequestId"].as_str()
            );
        }
        Err(DecodeError::Api(e)) => prop_assert!(!e.error.code.is_empty()),
        Err(DecodeError::Malformed(e)) => prop_assert!(!e.to_string().is_empty()),
    }
    Ok(())
}

proptest! {
    #![proptest_config(clb_fuzz::config())]

    #[test]
    fn any_response_body_decodes_without_panicking_for_every_response_type(b in body()) {
        check::<Empty>(&b)?;
        check::<DescribeLoadBalancersResponse>(&b)?;
        check::<DescribeListenersResponse>(&b)?;
        check::<DescribeTargetHealthResponse>(&b)?;
        check::<DescribeTaskStatusResponse>(&b)?;
    }

    #[test]
    fn an_error_envelope_decodes_to_its_code_message_and_request_id(
        code in "[A-Za-z.]{1,40}",
        message in any::<String>(),
        request_id in "[a-f0-9-]{0,36}",
        extra in json_value(),
    ) {
        let b = json!({"Response": {"Error": {"Code": code, "Message": message}, "RequestId": request_id, "TotalCount": extra}});
        match types::decode_response::<DescribeLoadBalancersResponse>(b.to_string().as_bytes()) {
            Err(DecodeError::Api(e)) => {
                prop_assert_eq!(e.error.code, code);
                prop_assert_eq!(e.error.message, message);
                prop_assert_eq!(e.request_id, request_id);
            }
            other => prop_assert!(false, "{other:?}"),
        }
    }

    #[test]
    fn a_success_envelope_round_trips_and_a_field_of_the_wrong_type_is_named_in_the_error(
        status in any::<i64>(),
        ids in proptest::option::of(proptest::collection::vec("lb-[a-z0-9]{8}", 0..3)),
        message in proptest::option::of(any::<String>()),
        request_id in "[a-f0-9-]{1,36}",
        wrong in prop_oneof![Just(json!("x")), Just(json!([1])), Just(json!({"a": 1})), Just(json!(true)), Just(json!(1.5))],
    ) {
        let data = DescribeTaskStatusResponse { status, load_balancer_ids: ids, message };
        let mut inner = serde_json::to_value(&data).map_err(|e| TestCaseError::fail(e.to_string()))?;
        inner["RequestId"] = json!(request_id);
        let b = json!({"Response": inner}).to_string();
        let got = types::decode_response::<DescribeTaskStatusResponse>(b.as_bytes());
        prop_assert!(matches!(&got, Ok((d, r)) if *d == data && *r == request_id), "{:?}", got);
        inner["Status"] = wrong;
        let b = json!({"Response": inner}).to_string();
        match types::decode_response::<DescribeTaskStatusResponse>(b.as_bytes()) {
            Err(DecodeError::Malformed(e)) => prop_assert!(e.to_string().contains("Status"), "{e} does not name Status"),
            other => prop_assert!(false, "{other:?}"),
        }
    }
}
