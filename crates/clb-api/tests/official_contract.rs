//! The client's wire types against the official API description (pinned tccli, see
//! tests/contract/extract.py): every official sample response of an action the client calls
//! decodes with our response type, and every request field our client can send exists in the
//! action's input model of api.json.

use std::collections::BTreeMap;
use std::path::PathBuf;

use clb_api::types::*;
use serde::de::{self, Deserialize, DeserializeOwned, Visitor};
use serde_json::Value;

fn read_json(rel: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(rel);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

fn decodes<T: DeserializeOwned>(sample: &Value) -> Result<(), String> {
    let body = serde_json::to_vec(sample).map_err(|e| e.to_string())?;
    decode_response::<T>(&body)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Decode one official sample with the response type the client uses for `action`.
fn decode_sample(action: &str, sample: &Value) -> Result<(), String> {
    match action {
        "CreateLoadBalancer" => decodes::<CreateLoadBalancerResponse>(sample),
        "DescribeLoadBalancers" => decodes::<DescribeLoadBalancersResponse>(sample),
        "ModifyLoadBalancerAttributes" => decodes::<ModifyLoadBalancerAttributesResponse>(sample),
        "CreateListener" => decodes::<CreateListenerResponse>(sample),
        "DescribeListeners" => decodes::<DescribeListenersResponse>(sample),
        "CreateRule" => decodes::<CreateRuleResponse>(sample),
        "DescribeTargets" => decodes::<DescribeTargetsResponse>(sample),
        "DescribeTargetHealth" => decodes::<DescribeTargetHealthResponse>(sample),
        "BatchRegisterTargets" => decodes::<BatchRegisterTargetsResponse>(sample),
        "BatchDeregisterTargets" => decodes::<BatchDeregisterTargetsResponse>(sample),
        "DescribeTaskStatus" => decodes::<DescribeTaskStatusResponse>(sample),
        "DescribeQuota" => decodes::<DescribeQuotaResponse>(sample),
        "UploadCertificate" => decodes::<UploadCertificateResponse>(sample),
        "DescribeCertificates" => decodes::<DescribeCertificatesResponse>(sample),
        "DeleteCertificate" => decodes::<DeleteCertificateResponse>(sample),
        "DeleteLoadBalancer"
        | "ModifyListener"
        | "DeleteLoadBalancerListeners"
        | "DeleteRule"
        | "ModifyRule"
        | "ModifyDomainAttributes"
        | "RegisterTargets"
        | "DeregisterTargets"
        | "BatchModifyTargetWeight"
        | "ManualRewrite"
        | "DeleteRewrite" => decodes::<Empty>(sample),
        other => Err(format!("no response type mapped for {other}")),
    }
}

#[test]
fn every_official_sample_response_decodes_with_our_client_types() {
    let mut decoded = 0;
    let mut failures = Vec::new();
    for service in ["clb", "ssl"] {
        let file = read_json(&format!("../../tests/contract/samples/{service}.json"));
        let actions = file["actions"].as_object().expect("actions object");
        assert!(!actions.is_empty(), "{service}: no sample actions");
        for (action, samples) in actions {
            for (i, sample) in samples.as_array().expect("sample list").iter().enumerate() {
                match decode_sample(action, sample) {
                    Ok(()) => decoded += 1,
                    Err(e) => failures.push(format!("{service} {action} sample {i}: {e}")),
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(decoded >= 40, "only {decoded} samples decoded");
}

#[test]
fn the_official_null_rules_targets_and_load_balancer_ids_decode_as_empty_lists() {
    let file = read_json("../../tests/contract/samples/clb.json");
    let tcp = file["actions"]["DescribeListeners"]
        .as_array()
        .and_then(|s| {
            s.iter()
                .find(|v| v["Response"]["Listeners"][0]["Rules"].is_null())
        })
        .expect("an official DescribeListeners sample with \"Rules\": null");
    let body = serde_json::to_vec(tcp).expect("serialises");
    let (resp, _) = decode_response::<DescribeListenersResponse>(&body).expect("decodes");
    assert!(resp.listeners[0].rules.is_empty());

    let (resp, _) = decode_response::<DescribeTargetsResponse>(
        br#"{"Response":{"Listeners":[{"ListenerId":"lbl-1","Protocol":"TCP","Port":80,"Rules":null,"Targets":null}],"RequestId":"r"}}"#,
    )
    .expect("decodes");
    assert!(resp.listeners[0].targets.is_empty() && resp.listeners[0].rules.is_empty());
    let (b, _) = decode_response::<DescribeTargetsResponse>(
        br#"{"Response":{"Listeners":[{"ListenerId":"l","Targets":[{"Type":"CVM","Port":80,"Weight":10,"PublicIpAddresses":null,"PrivateIpAddresses":["10.0.0.1"]}]}],"RequestId":"r"}}"#,
    )
    .expect("decodes");
    assert!(b.listeners[0].targets[0].public_ip_addresses.is_empty());
    let (c, _) = decode_response::<CreateLoadBalancerResponse>(
        br#"{"Response":{"LoadBalancerIds":null,"DealName":"d-1","RequestId":"r"}}"#,
    )
    .expect("decodes");
    assert!(c.load_balancer_ids.is_empty());
    assert_eq!(c.deal_name.as_deref(), Some("d-1"));
}

// ---------------------------------------------------------------------------------------------
// Request field names: a deserializer that only records the field names a struct declares.
// ---------------------------------------------------------------------------------------------

#[derive(Debug)]
struct Probed(Vec<&'static str>);

impl std::fmt::Display for Probed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

impl std::error::Error for Probed {}

impl de::Error for Probed {
    fn custom<T: std::fmt::Display>(_: T) -> Self {
        Probed(Vec::new())
    }
}

struct FieldProbe;

impl<'de> de::Deserializer<'de> for FieldProbe {
    type Error = Probed;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Probed> {
        Err(Probed(Vec::new()))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, Probed> {
        Err(Probed(fields.to_vec()))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}

/// The wire names of the fields `T` declares.
fn wire_fields<T: for<'de> Deserialize<'de>>() -> Vec<&'static str> {
    match T::deserialize(FieldProbe) {
        Ok(_) => Vec::new(),
        Err(Probed(fields)) => fields,
    }
}

/// Each request (and nested input) type of the client with the api.json model it is sent as.
fn request_types() -> Vec<(&'static str, &'static str, Vec<&'static str>)> {
    vec![
        (
            "clb",
            "CreateLoadBalancerRequest",
            wire_fields::<CreateLoadBalancerRequest>(),
        ),
        (
            "clb",
            "DescribeLoadBalancersRequest",
            wire_fields::<DescribeLoadBalancersRequest>(),
        ),
        (
            "clb",
            "DeleteLoadBalancerRequest",
            wire_fields::<DeleteLoadBalancerRequest>(),
        ),
        (
            "clb",
            "ModifyLoadBalancerAttributesRequest",
            wire_fields::<ModifyLoadBalancerAttributesRequest>(),
        ),
        (
            "clb",
            "CreateListenerRequest",
            wire_fields::<CreateListenerRequest>(),
        ),
        (
            "clb",
            "DescribeListenersRequest",
            wire_fields::<DescribeListenersRequest>(),
        ),
        (
            "clb",
            "ModifyListenerRequest",
            wire_fields::<ModifyListenerRequest>(),
        ),
        (
            "clb",
            "DeleteListenerRequest",
            wire_fields::<DeleteListenerRequest>(),
        ),
        (
            "clb",
            "DeleteLoadBalancerListenersRequest",
            wire_fields::<DeleteLoadBalancerListenersRequest>(),
        ),
        (
            "clb",
            "CreateRuleRequest",
            wire_fields::<CreateRuleRequest>(),
        ),
        ("clb", "RuleInput", wire_fields::<RuleInput>()),
        (
            "clb",
            "DeleteRuleRequest",
            wire_fields::<DeleteRuleRequest>(),
        ),
        (
            "clb",
            "ModifyRuleRequest",
            wire_fields::<ModifyRuleRequest>(),
        ),
        (
            "clb",
            "ModifyDomainRequest",
            wire_fields::<ModifyDomainRequest>(),
        ),
        (
            "clb",
            "ModifyDomainAttributesRequest",
            wire_fields::<ModifyDomainAttributesRequest>(),
        ),
        (
            "clb",
            "RegisterTargetsRequest",
            wire_fields::<RegisterTargetsRequest>(),
        ),
        (
            "clb",
            "DeregisterTargetsRequest",
            wire_fields::<DeregisterTargetsRequest>(),
        ),
        ("clb", "Target", wire_fields::<Target>()),
        (
            "clb",
            "ModifyTargetWeightRequest",
            wire_fields::<ModifyTargetWeightRequest>(),
        ),
        (
            "clb",
            "BatchRegisterTargetsRequest",
            wire_fields::<BatchRegisterTargetsRequest>(),
        ),
        (
            "clb",
            "BatchDeregisterTargetsRequest",
            wire_fields::<BatchDeregisterTargetsRequest>(),
        ),
        ("clb", "BatchTarget", wire_fields::<BatchTarget>()),
        (
            "clb",
            "BatchModifyTargetWeightRequest",
            wire_fields::<BatchModifyTargetWeightRequest>(),
        ),
        ("clb", "RsWeightRule", wire_fields::<RsWeightRule>()),
        (
            "clb",
            "DescribeTargetsRequest",
            wire_fields::<DescribeTargetsRequest>(),
        ),
        (
            "clb",
            "DescribeTargetHealthRequest",
            wire_fields::<DescribeTargetHealthRequest>(),
        ),
        (
            "clb",
            "DescribeTaskStatusRequest",
            wire_fields::<DescribeTaskStatusRequest>(),
        ),
        (
            "clb",
            "AutoRewriteRequest",
            wire_fields::<AutoRewriteRequest>(),
        ),
        (
            "clb",
            "ManualRewriteRequest",
            wire_fields::<ManualRewriteRequest>(),
        ),
        (
            "clb",
            "DeleteRewriteRequest",
            wire_fields::<DeleteRewriteRequest>(),
        ),
        (
            "clb",
            "RewriteLocationMap",
            wire_fields::<RewriteLocationMap>(),
        ),
        (
            "clb",
            "DescribeRewriteRequest",
            wire_fields::<DescribeRewriteRequest>(),
        ),
        ("clb", "HealthCheck", wire_fields::<HealthCheck>()),
        ("clb", "CertificateInput", wire_fields::<CertificateInput>()),
        ("clb", "MultiCertInfo", wire_fields::<MultiCertInfo>()),
        ("clb", "CertInfo", wire_fields::<CertInfo>()),
        ("clb", "Filter", wire_fields::<Filter>()),
        ("clb", "TagInfo", wire_fields::<TagInfo>()),
        (
            "clb",
            "InternetAccessible",
            wire_fields::<InternetAccessible>(),
        ),
        ("clb", "TargetRegionInfo", wire_fields::<TargetRegionInfo>()),
        (
            "ssl",
            "UploadCertificateRequest",
            wire_fields::<UploadCertificateRequest>(),
        ),
        (
            "ssl",
            "DescribeCertificateRequest",
            wire_fields::<DescribeCertificateRequest>(),
        ),
        (
            "ssl",
            "DescribeCertificatesRequest",
            wire_fields::<DescribeCertificatesRequest>(),
        ),
        (
            "ssl",
            "DeleteCertificateRequest",
            wire_fields::<DeleteCertificateRequest>(),
        ),
    ]
}

#[test]
fn every_request_field_our_client_sends_exists_in_the_official_input_model() {
    let contract = read_json("../emulator/src/actions/contract.json");
    let mut missing = BTreeMap::new();
    for (service, model, fields) in request_types() {
        assert!(!fields.is_empty(), "{model}: no fields probed");
        let members = contract["services"][service]["objects"][model]
            .as_array()
            .unwrap_or_else(|| panic!("{service} {model} is not in contract.json"));
        let names: Vec<&str> = members.iter().filter_map(|m| m["name"].as_str()).collect();
        let unknown: Vec<&str> = fields.into_iter().filter(|f| !names.contains(f)).collect();
        if !unknown.is_empty() {
            missing.insert(model, unknown);
        }
    }
    assert!(missing.is_empty(), "fields not in api.json: {missing:?}");
}

#[test]
fn the_field_probe_sees_renamed_fields() {
    let fields = wire_fields::<CreateLoadBalancerRequest>();
    assert!(fields.contains(&"AddressIPVersion"), "{fields:?}");
    assert!(fields.contains(&"LBChargeType"), "{fields:?}");
}
