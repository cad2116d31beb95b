//! Credentials: the `authorization` header (JWTs) and a client certificate's names, through
//! the same [`Authenticator`] every service builds from its configuration.

use std::collections::BTreeMap;

use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::{EncodePrivateKey, EncodePublicKey};
use kordon_runtime::auth::Authenticator;
use kordon_runtime::config::{
    AuthConfig, CommonConfig, JwtAlgorithm, JwtConfig, JwtKeyConfig, LogConfig, MtlsConfig,
    TlsConfig,
};

const ISSUER: &str = "https://idp.burgas.example";
const AUDIENCE: &str = "kordon";

fn issuer_key() -> SigningKey {
    SigningKey::from_bytes(&[0x2a; 32])
}

pub struct AuthHarness {
    auth: Authenticator,
    /// Holds the public key file for the life of the harness.
    _dir: tempfile::TempDir,
    certificate: bool,
}

impl AuthHarness {
    /// `certificate`: the input is a client certificate (DER); otherwise the header's value.
    pub fn new(certificate: bool) -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let public = dir.path().join("issuer.pem");
        let pem = issuer_key()
            .verifying_key()
            .to_public_key_pem(Default::default())
            .expect("public key PEM");
        std::fs::write(&public, pem).expect("write the issuer's key");
        let config = CommonConfig {
            grpc_listen: "127.0.0.1:0".parse().expect("address"),
            admin_listen: "127.0.0.1:0".parse().expect("address"),
            data_dir: dir.path().to_path_buf(),
            log: LogConfig::default(),
            // Only whether a client CA is configured matters here: the TLS layer has already
            // checked the chain when the Authenticator reads the names.
            tls: Some(TlsConfig {
                cert_file: dir.path().join("unused.crt"),
                key_file: dir.path().join("unused.key"),
                client_ca_file: Some(dir.path().join("unused-ca.crt")),
            }),
            auth: AuthConfig {
                jwt: Some(JwtConfig {
                    issuer: ISSUER.into(),
                    audience: AUDIENCE.into(),
                    keys: vec![JwtKeyConfig {
                        id: None,
                        algorithm: JwtAlgorithm::EdDSA,
                        public_key_file: public,
                    }],
                    roles_claim: "kordon_roles".into(),
                    leeway_seconds: 30,
                }),
                mtls: MtlsConfig {
                    subjects: BTreeMap::from([(
                        "CN=console.burgas".to_string(),
                        vec!["burgas".to_string()],
                    )]),
                },
            },
            dev_identity: false,
        };
        AuthHarness {
            auth: Authenticator::from_config(&config).expect("authenticator"),
            _dir: dir,
            certificate,
        }
    }
}

impl crate::targets::Harness for AuthHarness {
    fn run(&mut self, input: &[u8]) -> String {
        let result = if self.certificate {
            self.auth
                .authenticate(&http::HeaderMap::new(), &[input.to_vec()])
        } else {
            let mut headers = http::HeaderMap::new();
            match http::HeaderValue::from_bytes(input) {
                Ok(v) => {
                    headers.insert(http::header::AUTHORIZATION, v);
                }
                Err(_) => return "not a header value".into(),
            }
            self.auth.authenticate(&headers, &[])
        };
        match result {
            Ok(p) => format!(
                "ok: {} with roles on {} sites",
                p.subject.split(['/', ':']).next().unwrap_or(""),
                p.roles.len()
            ),
            Err(e) => format!("refused: {e}"),
        }
    }
}

/// A token from the configured issuer.
pub fn token(claims: &serde_json::Value) -> String {
    let der = issuer_key().to_pkcs8_der().expect("PKCS#8");
    let key = jsonwebtoken::EncodingKey::from_ed_der(der.as_bytes());
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA),
        claims,
        &key,
    )
    .expect("sign")
}

pub fn bearer_seeds() -> Vec<Vec<u8>> {
    use serde_json::json;
    // 2100-01-01 and 2001-01-01
    let (later, earlier) = (4_102_444_800u64, 978_307_200u64);
    let good = json!({
        "iss": ISSUER, "aud": AUDIENCE, "sub": "officer-7", "name": "Officer Seven",
        "exp": later, "nbf": earlier,
        "kordon_roles": {"burgas": ["viewer", "operator"], "edirne": ["auditor"]},
    });
    let mut expired = good.clone();
    expired["exp"] = json!(earlier);
    let mut not_yet = good.clone();
    not_yet["nbf"] = json!(later - 10);
    let mut odd_roles = good.clone();
    odd_roles["kordon_roles"] = json!({"burgas": "admin", "yambol": [1, null, "admin"]});
    let mut many_audiences = good.clone();
    many_audiences["aud"] = json!([AUDIENCE, "other"]);
    [good, expired, not_yet, odd_roles, many_audiences]
        .iter()
        .map(|c| format!("Bearer {}", token(c)).into_bytes())
        .chain([
            b"Bearer ".to_vec(),
            b"Basic b2ZmaWNlcjpwYXNz".to_vec(),
            b"bearer a.b.c".to_vec(),
        ])
        .collect()
}

pub fn certificate_seeds() -> Vec<Vec<u8>> {
    use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, SanType};
    let make = |uri: Option<&str>, dns: &[&str], cn: &str| -> Vec<u8> {
        let key = KeyPair::generate().expect("key");
        let mut params =
            CertificateParams::new(dns.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .expect("params");
        if let Some(uri) = uri {
            params
                .subject_alt_names
                .insert(0, SanType::URI(uri.try_into().expect("URI")));
        }
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, cn);
        params.distinguished_name = dn;
        params
            .self_signed(&key)
            .expect("certificate")
            .der()
            .to_vec()
    };
    vec![
        make(
            Some("spiffe://kordon.io/ns/kordon/site/burgas/ingest"),
            &["burgas-ingest.kordon.svc"],
            "burgas-ingest",
        ),
        make(
            Some("spiffe://kordon.io/ns/kordon/site/burgas/operator"),
            &[],
            "operator",
        ),
        make(Some("spiffe://kordon.io/ns/a/site/../../x"), &[], "x"),
        make(None, &["console.burgas"], "console.burgas"),
    ]
}

pub const BEARER_WORDS: &[&[u8]] = &[
    b"Bearer ",
    b"eyJhbGciOiJFZERTQSJ9",
    b"eyJhbGciOiJub25lIn0",
    b"eyJhbGciOiJIUzI1NiJ9",
    b".",
    b"==",
];

pub const CERTIFICATE_WORDS: &[&[u8]] = &[
    b"spiffe://kordon.io/ns/",
    b"/site/",
    b"/ingest",
    b"/operator",
    // DER: SEQUENCE with long lengths, OID of subjectAltName, context tag 6 (URI)
    b"\x30\x82\xff\xff",
    b"\x30\x84\xff\xff\xff\xff",
    b"\x06\x03\x55\x1d\x11",
    b"\x86\x20",
];
