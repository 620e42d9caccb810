//! Secret/PEM parsing: the certificate of a `kubernetes.io/tls` Secret or a `qcloud_cert_id`
//! (`clb_ingress_core::model::build::cert_from_secret`) and its fingerprint.

use clb_ingress_core::model::CertSource;
use clb_ingress_core::model::build::{SECRET_QCLOUD_CERT_ID, cert_from_secret};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use proptest::prelude::*;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

const KEYS: &[&str] = &["tls.crt", "tls.key", SECRET_QCLOUD_CERT_ID, "ca.crt"];

fn pem(label: &'static str) -> impl Strategy<Value = Vec<u8>> {
    "[A-Za-z0-9+/=\n]{0,120}".prop_map(move |body| {
        format!("-----BEGIN {label}-----\n{body}\n-----END {label}-----\n").into_bytes()
    })
}

fn value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => pem("CERTIFICATE"),
        3 => pem("PRIVATE KEY"),
        1 => pem("RSA PRIVATE KEY"),
        2 => "[a-zA-Z0-9-]{0,20}".prop_map(String::into_bytes),
        1 => " *[a-z0-9_-]{0,12} *".prop_map(String::into_bytes),
        2 => proptest::collection::vec(any::<u8>(), 0..200),
    ]
}

fn entries() -> impl Strategy<Value = BTreeMap<String, Vec<u8>>> {
    proptest::collection::btree_map(
        any::<prop::sample::Index>().prop_map(|i| i.get(KEYS).to_string()),
        value(),
        0..4,
    )
}

fn secret(data: BTreeMap<String, Vec<u8>>, string_data: BTreeMap<String, Vec<u8>>) -> Secret {
    Secret {
        metadata: ObjectMeta {
            namespace: Some("ns".into()),
            name: Some("cert".into()),
            ..Default::default()
        },
        data: Some(data.into_iter().map(|(k, v)| (k, ByteString(v))).collect()),
        string_data: Some(
            string_data
                .into_iter()
                .map(|(k, v)| (k, String::from_utf8_lossy(&v).into_owned()))
                .collect(),
        ),
        type_: Some("kubernetes.io/tls".into()),
        ..Default::default()
    }
}

/// The value of a key as the parser reads it: `data` first, then `stringData`.
fn read(s: &Secret, k: &str) -> Option<String> {
    s.data
        .as_ref()
        .and_then(|d| d.get(k))
        .map(|b| String::from_utf8_lossy(&b.0).into_owned())
        .or_else(|| s.string_data.as_ref().and_then(|d| d.get(k)).cloned())
}

proptest! {
    #![proptest_config(clb_fuzz::config())]

    #[test]
    fn any_secret_is_read_without_panicking_into_a_checked_certificate_or_a_named_error(
        data in entries(),
        string_data in entries(),
    ) {
        let s = secret(data, string_data);
        match cert_from_secret(&s) {
            Ok(CertSource::Id(id)) => {
                prop_assert!(!id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'), "{id:?}");
                prop_assert_eq!(Some(id), read(&s, SECRET_QCLOUD_CERT_ID).map(|v| v.trim().to_string()));
            }
            Ok(CertSource::Pem { fingerprint, cert_pem, key_pem, secret }) => {
                prop_assert!(read(&s, SECRET_QCLOUD_CERT_ID).is_none());
                let (crt, key) = (read(&s, "tls.crt"), read(&s, "tls.key"));
                prop_assert_eq!(Some(&cert_pem), crt.as_ref());
                prop_assert_eq!(key_pem.expose(), key.as_deref());
                prop_assert!(cert_pem.contains("-----BEGIN CERTIFICATE-----"));
                prop_assert!(key_pem.expose().is_some_and(|k| k.contains("PRIVATE KEY-----")));
                let want = hex::encode(Sha256::digest(format!("{cert_pem}\n{}", key_pem.expose().unwrap_or_default()).as_bytes()));
                prop_assert_eq!(fingerprint, want);
                prop_assert_eq!(secret.name.as_str(), "cert");
                // The key never shows in Debug output.
                let shown = format!("{key_pem:?}");
                prop_assert!(!shown.contains("PRIVATE KEY-----"), "{}", shown);
            }
            Err(message) => {
                prop_assert!(message.contains("ns/cert"), "{message:?}");
                if let Some(key) = read(&s, "tls.key").filter(|k| k.len() >= 8) {
                    prop_assert!(!message.contains(&key), "the key is in {message:?}");
                }
            }
        }
    }

    #[test]
    fn the_fingerprint_changes_with_the_certificate_or_the_key(
        cert in pem("CERTIFICATE"),
        key in pem("PRIVATE KEY"),
        other in "[A-Za-z0-9+/]{1,20}",
    ) {
        let fp = |c: &[u8], k: &[u8]| {
            let s = secret(BTreeMap::from([("tls.crt".to_string(), c.to_vec()), ("tls.key".to_string(), k.to_vec())]), BTreeMap::new());
            match cert_from_secret(&s) {
                Ok(CertSource::Pem { fingerprint, .. }) => Ok(fingerprint),
                other => Err(format!("{other:?}")),
            }
        };
        let base = fp(&cert, &key);
        prop_assert!(base.is_ok(), "{:?}", base);
        prop_assert_eq!(&fp(&cert, &key), &base);
        let mut cert2 = cert.clone();
        cert2.extend_from_slice(other.as_bytes());
        let mut key2 = key.clone();
        key2.extend_from_slice(other.as_bytes());
        prop_assert_ne!(&fp(&cert2, &key), &base);
        prop_assert_ne!(&fp(&cert, &key2), &base);
    }
}
