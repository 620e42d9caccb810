//! Credentials files (`clb_api::credentials::parse_file`): JSON as tccli writes it, or
//! `KEY=VALUE` lines with the `TENCENTCLOUD_*` names.

use clb_api::credentials::{
    CredentialsError, ENV_SECRET_ID, ENV_SECRET_KEY, ENV_SESSION_TOKEN, parse_file,
};
use proptest::prelude::*;

/// What a user could write into a credentials file, from JSON and `KEY=VALUE` fragments.
fn file_like() -> impl Strategy<Value = String> {
    let fragment = prop_oneof![
        Just(format!("{ENV_SECRET_ID}=")),
        Just(format!("{ENV_SECRET_KEY}=")),
        Just(format!("export {ENV_SESSION_TOKEN}=")),
        Just("{\"SecretId\": ".to_string()),
        Just("\"secretKey\": ".to_string()),
        Just("\"Token\"".to_string()),
        Just("#".to_string()),
        "[ -~]{0,12}",
        "[\"'{}:,= \n\t]{1,3}",
    ];
    prop_oneof![
        4 => proptest::collection::vec(fragment, 0..8).prop_map(|f| f.concat()),
        1 => any::<String>(),
    ]
}

/// The (id, key, token) a user meant, and the file written in one of the accepted forms.
fn valid_file() -> impl Strategy<Value = (String, String, Option<String>, String)> {
    (
        "[A-Za-z0-9]{1,40}",
        "[A-Za-z0-9+/]{12,40}",
        proptest::option::of("[A-Za-z0-9+/=_.-]{1,60}"),
        0u8..4,
        " {0,2}",
    )
        .prop_map(|(id, key, token, form, pad)| {
            let text = match form {
                0 => serde_json::json!({"SecretId": id, "SecretKey": key, "Token": token}).to_string(),
                1 => serde_json::json!({"secretId": id, "secretKey": key, "token": token}).to_string(),
                2 => {
                    let mut t = format!("# credentials\n{ENV_SECRET_ID}={pad}{id}\nexport {ENV_SECRET_KEY}=\"{key}\"\n");
                    if let Some(tok) = &token {
                        t.push_str(&format!("{ENV_SESSION_TOKEN}='{tok}'{pad}\n"));
                    }
                    t
                }
                _ => {
                    let mut t = format!("\n{pad}{ENV_SECRET_KEY} = {key}\r\n\n{ENV_SECRET_ID}={id}\n");
                    if let Some(tok) = &token {
                        t.push_str(&format!("{ENV_SESSION_TOKEN}={tok}\n"));
                    }
                    t
                }
            };
            (id, key, token, text)
        })
}

proptest! {
    #![proptest_config(clb_fuzz::config())]

    #[test]
    fn any_credentials_file_parses_without_panicking_into_header_safe_credentials(
        text in file_like(),
    ) {
        match parse_file(&text) {
            None => {}
            Some(Ok(c)) => {
                prop_assert!(!c.secret_id().is_empty());
                prop_assert!(c.secret_id().bytes().all(|b| b.is_ascii_graphic()), "{:?}", c.secret_id());
                prop_assert!(!c.secret_key().is_empty());
                if let Some(t) = c.session_token() {
                    prop_assert!(!t.is_empty() && t.expose().bytes().all(|b| b.is_ascii_graphic()));
                }
            }
            Some(Err(e)) => {
                prop_assert!(matches!(e, CredentialsError::Incomplete { .. } | CredentialsError::InvalidCharacters { .. }), "{e:?}");
            }
        }
    }

    #[test]
    fn a_credentials_file_gives_back_what_was_written_and_never_prints_the_key(
        (id, key, token, text) in valid_file(),
    ) {
        let got = parse_file(&text);
        let c = match got {
            Some(Ok(c)) => c,
            other => return Err(TestCaseError::fail(format!("{text:?} gave {other:?}"))),
        };
        prop_assert_eq!(c.secret_id(), id.as_str());
        prop_assert_eq!(c.secret_key().expose(), key.as_str());
        prop_assert_eq!(c.session_token().map(|t| t.expose().to_string()), token.clone());
        let shown = format!("{c:?} {c}");
        prop_assert!(!shown.contains(&key), "the key is in {shown:?}");
        if let Some(t) = token.filter(|t| t.len() >= 8) {
            prop_assert!(!shown.contains(&t), "the token is in {shown:?}");
        }
    }
}
