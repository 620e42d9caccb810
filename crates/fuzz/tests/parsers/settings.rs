//! Small user inputs: the emulator's config file (`Settings::parse_text`, YAML or JSON), the
//! cloud endpoint flag (`Endpoint::parse`) and a Node's `spec.providerID` (`instance_id`).

use clb_api::Endpoint;
use clb_emulator::config::{Credential, Settings};
use clb_ingress_core::model::build::instance_id;
use proptest::prelude::*;

fn settings() -> impl Strategy<Value = Settings> {
    (
        proptest::collection::vec(("[A-Za-z0-9]{1,20}", "[ -~]{1,20}"), 1..3),
        "[a-z]{2}-[a-z]{1,10}",
        any::<u16>(),
        0u64..100_000,
        any::<u32>(),
        proptest::collection::btree_map("[A-Za-z]{1,12}", any::<u32>(), 0..3),
        proptest::option::of(any::<u64>()),
        proptest::collection::btree_map("ins-[a-z0-9]{8}", any::<[u8; 4]>(), 0..3),
    )
        .prop_map(
            |(
                creds,
                region,
                port_offset,
                task_delay_ms,
                rate_limit,
                rate_limits,
                seed,
                instances,
            )| Settings {
                credentials: creds
                    .into_iter()
                    .map(|(secret_id, secret_key)| Credential::permanent(secret_id, secret_key))
                    .collect(),
                region,
                port_offset,
                task_delay_ms,
                rate_limit,
                rate_limits,
                seed,
                instances: instances
                    .into_iter()
                    .map(|(k, ip)| (k, ip.into()))
                    .collect(),
                ..Settings::default()
            },
        )
}

fn yaml_like() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        Just("region: ".to_string()),
        Just("credentials:\n".to_string()),
        Just("- secret_id: ".to_string()),
        Just("  secret_key: ".to_string()),
        Just("rate_limit: ".to_string()),
        Just("rate_limits: {".to_string()),
        Just("quotas:\n  open_clb: ".to_string()),
        Just("faults:\n  latency_ms: {".to_string()),
        Just("listen: ".to_string()),
        Just("127.0.0.1:9000".to_string()),
        Just("[::1]:1".to_string()),
        Just("seed: ".to_string()),
        Just("-1".to_string()),
        Just("18446744073709551616".to_string()),
        Just("1e3".to_string()),
        Just("}".to_string()),
        Just("\n".to_string()),
        Just("&a ".to_string()),
        Just("*a".to_string()),
        Just("\"".to_string()),
        "[ -~]{0,6}",
    ];
    prop_oneof![
        4 => proptest::collection::vec(token, 0..16).prop_map(|t| t.concat()),
        1 => any::<String>(),
    ]
}

proptest! {
    #![proptest_config(clb_fuzz::config())]

    #[test]
    fn an_emulator_config_file_round_trips_and_any_text_parses_without_panicking(
        s in settings(),
        text in yaml_like(),
    ) {
        let json = serde_json::to_string(&s).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(Settings::parse_text(&json), Ok(s));
        if let Ok(parsed) = Settings::parse_text(&text) {
            // Whatever parses is settings the emulator can check without panicking.
            let _ = parsed.validate();
        }
    }

    #[test]
    fn any_endpoint_flag_parses_without_panicking_into_an_http_url_at_the_root(
        text in prop_oneof![
            any::<String>(),
            "(https?://|ftp://|//)?[a-z0-9.:\\[\\]@-]{0,30}(/[a-z?#]{0,6})?",
        ],
    ) {
        if let Ok(Endpoint::Url(url)) = Endpoint::parse(&text) {
            prop_assert!(matches!(url.scheme(), "http" | "https"), "{}", url);
            prop_assert!(url.host_str().is_some_and(|h| !h.is_empty()), "{}", url);
            prop_assert_eq!(url.path(), "/");
            prop_assert!(url.query().is_none());
        }
    }

    #[test]
    fn any_provider_id_gives_an_instance_id_or_none_without_panicking(
        text in prop_oneof![any::<String>(), "(qcloud:///[a-z0-9-]{0,12}/)?(ins-)?[a-z0-9/]{0,10}"],
    ) {
        if let Some(id) = instance_id(&text) {
            prop_assert!(id.starts_with("ins-") && id.len() > 4 && !id.contains('/'), "{}", id);
            prop_assert!(text.ends_with(&id));
        }
    }
}
