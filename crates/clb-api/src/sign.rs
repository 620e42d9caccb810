//! TC3-HMAC-SHA256 request signing (clb-api.md §1.4), shared by the client and the emulator.
//!
//! Pure: the caller supplies the timestamp; nothing here reads a clock.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// The signing algorithm name, as it appears in the `Authorization` header and string to sign.
pub const ALGORITHM: &str = "TC3-HMAC-SHA256";
/// The request terminator of the credential scope.
pub const SCOPE_TERMINATOR: &str = "tc3_request";

type HmacSha256 = Hmac<Sha256>;

fn hmac(key: &[u8], msg: &[u8]) -> [u8; 32] {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(msg);
    mac.finalize().into_bytes().into()
}

/// Lowercase hex SHA-256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// The UTC calendar date (`YYYY-MM-DD`) of a Unix timestamp, as the credential scope needs it.
pub fn utc_date(timestamp: i64) -> String {
    let days = timestamp.div_euclid(86_400);
    // Civil-from-days (Howard Hinnant's algorithm), valid for the whole proleptic Gregorian range.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!("{y:04}-{m:02}-{d:02}")
}

/// Everything that goes into one signature.
#[derive(Debug, Clone)]
pub struct SigningInput<'a> {
    /// HTTP method, upper case (`POST`).
    pub method: &'a str,
    /// Canonical query string (empty for POST).
    pub query: &'a str,
    /// Signed headers as (name, value) pairs; names in any case, they are lower-cased and sorted.
    pub headers: &'a [(&'a str, &'a str)],
    /// Exact body bytes.
    pub payload: &'a [u8],
    /// Service name in the credential scope (`clb`, `ssl`).
    pub service: &'a str,
    /// `X-TC-Timestamp`.
    pub timestamp: i64,
}

/// The intermediate values of a signature (useful for tests and for the emulator's diagnostics).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    pub canonical_request: String,
    pub string_to_sign: String,
    pub signed_headers: String,
    pub credential_scope: String,
    pub signature: String,
}

/// Compute the TC3 signature of a request with the given secret key.
pub fn sign(input: &SigningInput<'_>, secret_key: &str) -> Signature {
    let mut headers: Vec<(String, String)> = input
        .headers
        .iter()
        .map(|(n, v)| (n.to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    headers.sort();
    let canonical_headers: String = headers.iter().map(|(n, v)| format!("{n}:{v}\n")).collect();
    let signed_headers = headers
        .iter()
        .map(|(n, _)| n.as_str())
        .collect::<Vec<_>>()
        .join(";");
    let canonical_request = format!(
        "{}\n/\n{}\n{}\n{}\n{}",
        input.method,
        input.query,
        canonical_headers,
        signed_headers,
        sha256_hex(input.payload)
    );
    let date = utc_date(input.timestamp);
    let credential_scope = format!("{date}/{}/{SCOPE_TERMINATOR}", input.service);
    let string_to_sign = format!(
        "{ALGORITHM}\n{}\n{credential_scope}\n{}",
        input.timestamp,
        sha256_hex(canonical_request.as_bytes())
    );
    let k_date = hmac(format!("TC3{secret_key}").as_bytes(), date.as_bytes());
    let k_service = hmac(&k_date, input.service.as_bytes());
    let k_signing = hmac(&k_service, SCOPE_TERMINATOR.as_bytes());
    let signature = hex::encode(hmac(&k_signing, string_to_sign.as_bytes()));
    Signature {
        canonical_request,
        string_to_sign,
        signed_headers,
        credential_scope,
        signature,
    }
}

/// The `Authorization` header value for a computed signature.
pub fn authorization(secret_id: &str, sig: &Signature) -> String {
    format!(
        "{ALGORITHM} Credential={secret_id}/{}, SignedHeaders={}, Signature={}",
        sig.credential_scope, sig.signed_headers, sig.signature
    )
}

/// A parsed `Authorization` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedAuthorization {
    pub secret_id: String,
    pub date: String,
    pub service: String,
    pub terminator: String,
    pub signed_headers: Vec<String>,
    pub signature: String,
}

/// Parse an `Authorization: TC3-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=...` value.
pub fn parse_authorization(value: &str) -> Option<ParsedAuthorization> {
    let rest = value.strip_prefix(ALGORITHM)?.trim_start();
    let mut credential = None;
    let mut signed = None;
    let mut signature = None;
    for part in rest.split(',') {
        let (k, v) = part.trim().split_once('=')?;
        match k {
            "Credential" => credential = Some(v),
            "SignedHeaders" => signed = Some(v),
            "Signature" => signature = Some(v),
            _ => return None,
        }
    }
    let mut cred = credential?.split('/');
    let secret_id = cred.next()?.to_string();
    let date = cred.next()?.to_string();
    let service = cred.next()?.to_string();
    let terminator = cred.next()?.to_string();
    if cred.next().is_some() || secret_id.is_empty() {
        return None;
    }
    let signed_headers: Vec<String> = signed?.split(';').map(str::to_string).collect();
    let signature = signature?.to_string();
    if signature.len() != 64 || !signature.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    Some(ParsedAuthorization {
        secret_id,
        date,
        service,
        terminator,
        signed_headers,
        signature,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "AKIDEXAMPLE1234567890abcdefghijklmnop";
    const KEY: &str = "EXAMPLEsecretKEY0123456789abcdef";
    const HOST: &str = "clb.tencentcloudapi.com";

    fn clb(body: &str, ct: &str, host: &str, ts: i64) -> Signature {
        sign(
            &SigningInput {
                method: "POST",
                query: "",
                headers: &[("Content-Type", ct), ("Host", host)],
                payload: body.as_bytes(),
                service: "clb",
                timestamp: ts,
            },
            KEY,
        )
    }

    #[test]
    fn vector_a_describe_load_balancers_matches_the_python_sdk() {
        let s = clb(
            r#"{"LoadBalancerIds": ["lb-abcd1234"], "Limit": 20}"#,
            "application/json",
            HOST,
            1_700_000_000,
        );
        assert_eq!(
            s.canonical_request,
            "POST\n/\n\ncontent-type:application/json\nhost:clb.tencentcloudapi.com\n\ncontent-type;host\ne9de298f230c8a09051901c19f8e35d6ce4b3b2e5a6a77250b82dfdba1e4551e"
        );
        assert_eq!(
            s.string_to_sign,
            "TC3-HMAC-SHA256\n1700000000\n2023-11-14/clb/tc3_request\n62946a5aed955db4b1f5721bd321006628752df1dbdbc85e0bb42223d8e31c08"
        );
        assert_eq!(
            s.signature,
            "b2a9cfd14056c51183d1eddcb4d6065244fce10e93910e431a46ecfa1d3e8f10"
        );
        assert_eq!(
            authorization(ID, &s),
            "TC3-HMAC-SHA256 Credential=AKIDEXAMPLE1234567890abcdefghijklmnop/2023-11-14/clb/tc3_request, SignedHeaders=content-type;host, Signature=b2a9cfd14056c51183d1eddcb4d6065244fce10e93910e431a46ecfa1d3e8f10"
        );
    }

    #[test]
    fn vector_b_create_rule_signature_ignores_the_unsigned_token() {
        let s = clb(
            r#"{"LoadBalancerId": "lb-abcd1234", "ListenerId": "lbl-efgh5678", "Rules": [{"Domain": "www.example.com", "Url": "/api"}]}"#,
            "application/json",
            HOST,
            1_700_000_000,
        );
        assert_eq!(
            s.signature,
            "a372d7e0cc4f14adfb32f865b910784647b23390cbfd5f403835aba21f43a2f8"
        );
    }

    #[test]
    fn vector_c_describe_task_status() {
        let s = clb(
            r#"{"TaskId": "1b2c3d4e-aaaa-bbbb-cccc-0123456789ab"}"#,
            "application/json",
            HOST,
            1_700_000_000,
        );
        assert_eq!(
            s.signature,
            "d519a1de3cdf58085f4112f08159f7c16ef9c2d42ed8cb8c18943f09d6c47f17"
        );
    }

    #[test]
    fn vector_d_signature_depends_on_exact_body_bytes_content_type_and_host() {
        let spaced = r#"{"LoadBalancerIds": ["lb-abcd1234"], "Limit": 20}"#;
        let cases = [
            (
                r#"{"LoadBalancerIds":["lb-abcd1234"],"Limit":20}"#,
                "application/json",
                HOST,
                "5a3e471a4901a1971f1a88579842de9137df2ae830a5dd07eaaea57201530ffc",
            ),
            (
                spaced,
                "application/json; charset=utf-8",
                HOST,
                "92d87b0105379036cedb1d337ac5c867c720cd6a7cba765de91fc77c49424ac6",
            ),
            (
                spaced,
                "application/json",
                "clb.ap-guangzhou.tencentcloudapi.com",
                "be6781cfaf3aef7fe7bbfbeee0a8d6a7ab575401a22366b4bd347d373158618f",
            ),
            (
                "{}",
                "application/json",
                HOST,
                "a943d16b518c0312decaaebf3c9b358331204c87f059b47070eef8eddc3fc794",
            ),
        ];
        for (body, ct, host, want) in cases {
            assert_eq!(
                clb(body, ct, host, 1_700_000_000).signature,
                want,
                "{body} {ct} {host}"
            );
        }
    }

    #[test]
    fn vector_e_credential_date_is_the_utc_date_of_the_timestamp() {
        assert_eq!(
            clb("{}", "application/json", HOST, 1_700_006_399).signature,
            "b1d9d31bed38b0b33ccf6e1637e0907fff548d208d6800c43d3b75b8750deaf2"
        );
        assert_eq!(
            clb("{}", "application/json", HOST, 1_700_006_400).signature,
            "a5eddb8bce1401849b871eae8981927878ff3e5910adae37e5ce8e3b63807cd2"
        );
        assert_eq!(utc_date(1_700_006_399), "2023-11-14");
        assert_eq!(utc_date(1_700_006_400), "2023-11-15");
        assert_eq!(utc_date(0), "1970-01-01");
        assert_eq!(utc_date(951_782_400), "2000-02-29");
    }

    #[test]
    fn vector_f_tencent_published_cvm_examples_reproduce() {
        let body = r#"{"Limit": 1, "Filters": [{"Values": ["\u672a\u547d\u540d"], "Name": "instance-name"}]}"#;
        let base = |key: &str, headers: &[(&str, &str)]| {
            sign(
                &SigningInput {
                    method: "POST",
                    query: "",
                    headers,
                    payload: body.as_bytes(),
                    service: "cvm",
                    timestamp: 1_551_113_065,
                },
                key,
            )
        };
        let two = [
            ("content-type", "application/json; charset=utf-8"),
            ("host", "cvm.tencentcloudapi.com"),
        ];
        let f1 = base("Gu5t9xGARNpq86cd98joQYCN3*******", &two);
        assert_eq!(
            sha256_hex(f1.canonical_request.as_bytes()),
            "5ffe6a04c0664d6b969fab9a13bdab201d63ee709638e2749d62a09ca18d7031"
        );
        assert_eq!(
            f1.signature,
            "2230eefd229f582d8b1b891af7107b91597240707d778ab3738f756258d7652c"
        );
        let f2 = base("Gu5t9xGARNpq86cd98joQYCN3EXAMPLE", &two);
        assert_eq!(
            f2.signature,
            "72e494ea809ad7a8c8f7a4507b9bddcbaa8e581f516e8da2f66e2c5a96525168"
        );
        let three = [
            ("content-type", "application/json; charset=utf-8"),
            ("host", "cvm.tencentcloudapi.com"),
            ("x-tc-action", "describeinstances"),
        ];
        let f3 = base("********************************", &three);
        assert_eq!(
            sha256_hex(f3.canonical_request.as_bytes()),
            "7019a55be8395899b900fb5564e4200d984910f34794a27cb3fb7d10ff6a1e84"
        );
        assert_eq!(
            f3.signature,
            "10b1a37a7301a02ca19a647ad722d5e43b4b3cff309d421d85b46093f6ab6c4f"
        );
    }

    #[test]
    fn authorization_header_round_trips_through_the_parser() {
        let s = clb("{}", "application/json", HOST, 1_700_000_000);
        let parsed = parse_authorization(&authorization(ID, &s)).expect("parses");
        assert_eq!(parsed.secret_id, ID);
        assert_eq!(parsed.date, "2023-11-14");
        assert_eq!(parsed.service, "clb");
        assert_eq!(parsed.signed_headers, vec!["content-type", "host"]);
        assert_eq!(parsed.signature, s.signature);
        assert!(parse_authorization("Bearer abc").is_none());
        assert!(
            parse_authorization(
                "TC3-HMAC-SHA256 Credential=a/b/c/d, SignedHeaders=host, Signature=zz"
            )
            .is_none()
        );
    }
}
