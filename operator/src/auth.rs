//! People's sign-in to a site's services (`spec.auth` of the Site).
//!
//! Every service of a site reads the same `site.yaml`, so every pod gets the same `auth.jwt`
//! section ([`section`], in [`kordon_runtime::config::JwtConfig`]'s shape — the very type the
//! services read) and the same token keys, mounted read-only from their ConfigMaps at
//! `<AUTH_DIR>/key-<i>.pem`.
//!
//! Guarantees:
//! - The keys' ConfigMaps are read by name on every Site reconcile ([`check_keys`]); until each
//!   holds a PEM public key under its key, the Site's objects are not applied at all (the pods
//!   keep running as they are, with the keys they loaded) and the reconcile fails with the
//!   ConfigMap and key named (a Warning event `AuthKeysInvalid` on the Site). Services would
//!   otherwise refuse to start on a missing key file, taking the whole site down.
//! - Every pod template carries [`CONFIG_ANNOTATION`], the SHA-256 of the section and of each
//!   key's contents: services load keys at start, so a changed key or setting rolls them, and
//!   nothing else does.

use k8s_openapi::api::core::v1::ConfigMap;
use kordon_runtime::config::{JwtAlgorithm, JwtConfig, JwtKeyConfig};
use kube::api::Api;

use crate::crd::{PersonTokens, Site, TokenAlgorithm};
use crate::{Error, Result};

/// Where the token keys are mounted in every pod of a site that has `spec.auth`.
pub const AUTH_DIR: &str = "/var/run/kordon/auth";
/// Pod template annotation: SHA-256 (hex) of the `auth.jwt` section and the keys' contents.
pub const CONFIG_ANNOTATION: &str = "kordon.io/auth-config";
/// The roles claim when the Site names none (the services' default).
const DEFAULT_ROLES_CLAIM: &str = "kordon_roles";
const DEFAULT_LEEWAY_SECONDS: u64 = 30;

/// The file key `i` is mounted as.
pub fn key_path(i: usize) -> String {
    format!("{AUTH_DIR}/key-{i}.pem")
}

/// The `auth.jwt` section the services read.
pub fn section(jwt: &PersonTokens) -> JwtConfig {
    JwtConfig {
        issuer: jwt.issuer.clone(),
        audience: jwt.audience.clone(),
        keys: jwt
            .keys
            .iter()
            .enumerate()
            .map(|(i, k)| JwtKeyConfig {
                id: k.id.clone(),
                algorithm: match k.algorithm {
                    TokenAlgorithm::EdDSA => JwtAlgorithm::EdDSA,
                    TokenAlgorithm::RS256 => JwtAlgorithm::RS256,
                    TokenAlgorithm::ES256 => JwtAlgorithm::ES256,
                },
                public_key_file: key_path(i).into(),
            })
            .collect(),
        roles_claim: jwt
            .roles_claim
            .clone()
            .unwrap_or_else(|| DEFAULT_ROLES_CLAIM.to_string()),
        leeway_seconds: jwt
            .leeway_seconds
            .map(u64::from)
            .unwrap_or(DEFAULT_LEEWAY_SECONDS),
    }
}

/// The projected volume of the keys (one directory, `key-<i>.pem` each), for every pod.
pub fn volume(jwt: &PersonTokens) -> serde_json::Value {
    let sources: Vec<_> = jwt
        .keys
        .iter()
        .enumerate()
        .map(|(i, k)| {
            serde_json::json!({ "configMap": {
                "name": k.config_map_name,
                "items": [{ "key": k.key, "path": format!("key-{i}.pem") }],
            }})
        })
        .collect();
    serde_json::json!({ "name": "auth-keys", "projected": { "sources": sources } })
}

/// Each key's SHA-256 (hex), in order, once every key's ConfigMap holds a PEM public key under
/// its key; otherwise the first problem, naming the ConfigMap and key.
pub async fn check_keys(client: &kube::Client, ns: &str, site: &Site) -> Result<Vec<String>> {
    let Some(auth) = &site.spec.auth else {
        return Ok(Vec::new());
    };
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let mut out = Vec::new();
    for (i, k) in auth.jwt.keys.iter().enumerate() {
        let what = format!("spec.auth.jwt.keys[{i}]: ConfigMap `{}`", k.config_map_name);
        let cm = api
            .get_opt(&k.config_map_name)
            .await
            .map_err(|e| Error::AuthKeys(format!("{what} could not be read: {e}")))?
            .ok_or_else(|| Error::AuthKeys(format!("{what} does not exist in namespace {ns}")))?;
        let pem = cm
            .data
            .as_ref()
            .and_then(|d| d.get(&k.key))
            .ok_or_else(|| Error::AuthKeys(format!("{what} has no key `{}`", k.key)))?;
        if !is_public_key_pem(pem) {
            return Err(Error::AuthKeys(format!(
                "{what} key `{}` holds no PEM public key (-----BEGIN PUBLIC KEY-----)",
                k.key
            )));
        }
        out.push(crate::pki::sha256_hex(pem.as_bytes()));
    }
    Ok(out)
}

/// A PEM public key (SubjectPublicKeyInfo, or PKCS#1 for RSA), never a private one.
fn is_public_key_pem(pem: &str) -> bool {
    (pem.contains("-----BEGIN PUBLIC KEY-----") || pem.contains("-----BEGIN RSA PUBLIC KEY-----"))
        && !pem.contains("PRIVATE KEY-----")
}

/// The annotation's value: the section and each key's SHA-256.
pub fn digest(section_yaml: &str, key_sha256: &[String]) -> String {
    let mut text = section_yaml.to_string();
    for (i, k) in key_sha256.iter().enumerate() {
        text.push_str(&format!("key-{i} {k}\n"));
    }
    crate::pki::sha256_hex(text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_keys_are_taken() {
        assert!(is_public_key_pem(
            "-----BEGIN PUBLIC KEY-----\nMCow\n-----END PUBLIC KEY-----\n"
        ));
        assert!(is_public_key_pem("-----BEGIN RSA PUBLIC KEY-----\nx\n"));
        assert!(!is_public_key_pem("-----BEGIN PRIVATE KEY-----\nx\n"));
        assert!(!is_public_key_pem(
            "-----BEGIN PUBLIC KEY-----\nx\n-----BEGIN PRIVATE KEY-----\ny\n"
        ));
        assert!(!is_public_key_pem("-----BEGIN CERTIFICATE-----\nx\n"));
    }

    #[test]
    fn the_digest_changes_with_a_key_and_with_the_section() {
        let a = digest("issuer: a\n", &["k1".into()]);
        assert_ne!(a, digest("issuer: a\n", &["k2".into()]));
        assert_ne!(a, digest("issuer: b\n", &["k1".into()]));
        assert_eq!(a, digest("issuer: a\n", &["k1".into()]));
    }
}
