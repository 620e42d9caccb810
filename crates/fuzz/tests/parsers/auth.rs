//! TC3 `Authorization` header parsing (`clb_api::sign::parse_authorization`) and signing.

use clb_api::sign::{self, ParsedAuthorization, SigningInput};
use proptest::prelude::*;

/// The header a parsed value stands for, in the canonical spelling.
fn render(p: &ParsedAuthorization) -> String {
    format!(
        "{} Credential={}/{}/{}/{}, SignedHeaders={}, Signature={}",
        sign::ALGORITHM,
        p.secret_id,
        p.date,
        p.service,
        p.terminator,
        p.signed_headers.join(";"),
        p.signature
    )
}

/// Header values near the grammar: the algorithm (or not), then `key=value` parts with keys
/// from the grammar and values from a small alphabet that includes every separator.
fn near_valid_header() -> impl Strategy<Value = String> {
    let key = prop_oneof![
        Just("Credential"),
        Just("SignedHeaders"),
        Just("Signature"),
        Just("credential"),
        Just(" Signature "),
        Just(""),
    ];
    let value = prop_oneof![
        "[a-zA-Z0-9/;=, _\t-]{0,24}",
        "[0-9a-fA-F]{62,66}",
        "[A-Za-z0-9]{1,8}/[0-9-]{0,10}/[a-z]{0,4}/(tc3_request|x)?",
    ];
    let part = (key, value, any::<bool>()).prop_map(|(k, v, eq)| {
        if eq {
            format!("{k}={v}")
        } else {
            format!("{k}{v}")
        }
    });
    (
        prop_oneof![
            Just(sign::ALGORITHM.to_string()),
            Just(format!("{} ", sign::ALGORITHM)),
            "[A-Z0-9-]{0,16} ?",
        ],
        proptest::collection::vec(part, 0..5),
        prop_oneof![Just(", "), Just(","), Just(" , ")],
    )
        .prop_map(|(alg, parts, sep)| format!("{alg}{}", parts.join(sep)))
}

fn check_parse(header: &str) -> Result<(), TestCaseError> {
    let Some(p) = sign::parse_authorization(header) else {
        return Ok(());
    };
    prop_assert!(!p.secret_id.is_empty(), "empty SecretId from {header:?}");
    prop_assert_eq!(p.signature.len(), 64, "signature of {:?}", header);
    prop_assert!(p.signature.bytes().all(|b| b.is_ascii_hexdigit()));
    // What the parser accepts, rendered canonically, parses to the same fields.
    let again = sign::parse_authorization(&render(&p));
    prop_assert_eq!(again.as_ref(), Some(&p), "from {:?}", header);
    Ok(())
}

proptest! {
    #![proptest_config(clb_fuzz::config())]

    #[test]
    fn any_authorization_header_parses_without_panicking_and_a_parse_renders_back_to_itself(
        header in prop_oneof![any::<String>(), near_valid_header()],
    ) {
        check_parse(&header)?;
    }

    #[test]
    fn signing_then_parsing_the_authorization_gives_back_every_field(
        secret_id in "[A-Za-z0-9]{1,48}",
        secret_key in "[ -~]{1,48}",
        service in "[a-z]{1,12}",
        headers in proptest::collection::vec(("[A-Za-z][A-Za-z0-9-]{0,20}", "[ -~]{0,40}"), 1..5),
        payload in proptest::collection::vec(any::<u8>(), 0..256),
        timestamp in any::<i64>(),
    ) {
        let pairs: Vec<(&str, &str)> =
            headers.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        let input = SigningInput {
            method: "POST",
            query: "",
            headers: &pairs,
            payload: &payload,
            service: &service,
            timestamp,
        };
        let sig = sign::sign(&input, &secret_key);
        let header = sign::authorization(&secret_id, &sig);
        let p = sign::parse_authorization(&header);
        prop_assert!(p.is_some(), "{header:?} does not parse");
        let p = p.unwrap_or_else(|| unreachable!());
        let mut names: Vec<String> = headers.iter().map(|(n, _)| n.to_ascii_lowercase()).collect();
        names.sort();
        prop_assert_eq!(&p.secret_id, &secret_id);
        prop_assert_eq!(p.date, sign::utc_date(timestamp));
        prop_assert_eq!(&p.service, &service);
        prop_assert_eq!(p.terminator.as_str(), sign::SCOPE_TERMINATOR);
        prop_assert_eq!(&p.signed_headers, &names);
        prop_assert_eq!(&p.signature, &sig.signature);
        // The signature depends on the key.
        let other = sign::sign(&input, &format!("{secret_key}x"));
        prop_assert_ne!(other.signature, sig.signature);
    }

    #[test]
    fn the_credential_date_is_the_utc_calendar_date_of_the_timestamp(
        timestamp in prop_oneof![
            any::<i64>(),
            jiff::Timestamp::MIN.as_second()..=jiff::Timestamp::MAX.as_second(),
        ],
    ) {
        let date = sign::utc_date(timestamp);
        if let Ok(t) = jiff::Timestamp::from_second(timestamp) {
            let want = t.to_zoned(jiff::tz::TimeZone::UTC).date();
            prop_assert_eq!(date, format!("{:04}-{:02}-{:02}", want.year(), want.month(), want.day()));
        } else {
            prop_assert!(date.len() >= 10, "{date:?}");
        }
    }
}
