//! A Camera's RTSP credentials: read from the Secret its `spec.credentials` names, at the
//! moment the camera is applied to its ingest replica, and sent there over mTLS.
//!
//! Guarantees:
//! - the values live only in the ApplyCameras request (never in a ConfigMap, an event, a log
//!   line or the Camera's status; `RtspCredentials`'s `Debug` is redacted);
//! - a camera whose Secret is missing or incomplete is not applied (a camera recorded without
//!   its credentials would only fail at the camera), and its status says which Secret and key
//!   is wrong ([`Problems`], reason `CredentialsUnavailable`) until it is fixed;
//! - the Secret is read with `get` (the operator's RBAC grants no `list`/`watch` on Secrets).
//!
//! Assumes: a changed password reaches ingest when the camera is next applied (a new Camera
//! generation or a move to another replica), not the moment the Secret changes.

use std::collections::HashMap;
use std::sync::Mutex;

use k8s_openapi::api::core::v1::Secret;
use kordon_proto::common::v1 as common;
use kube::{Api, Client};

use crate::crd::CredentialsRef;

pub const DEFAULT_USERNAME_KEY: &str = "username";
pub const DEFAULT_PASSWORD_KEY: &str = "password";

/// The credentials `r` names, from `secret` (already read). The error says what is wrong in
/// words fit for a Camera's status: the Secret and key names, never a value.
pub fn from_secret(secret: &Secret, r: &CredentialsRef) -> Result<common::RtspCredentials, String> {
    let field = |key: &str| -> Result<String, String> {
        let bytes = secret
            .data
            .as_ref()
            .and_then(|d| d.get(key))
            .map(|b| b.0.clone())
            .or_else(|| {
                secret
                    .string_data
                    .as_ref()
                    .and_then(|d| d.get(key))
                    .map(|s| s.clone().into_bytes())
            })
            .ok_or_else(|| format!("Secret `{}` has no key `{key}`", r.secret_name))?;
        String::from_utf8(bytes)
            .map_err(|_| format!("Secret `{}` key `{key}` is not UTF-8 text", r.secret_name))
    };
    let username = field(r.username_key.as_deref().unwrap_or(DEFAULT_USERNAME_KEY))?;
    let password = field(r.password_key.as_deref().unwrap_or(DEFAULT_PASSWORD_KEY))?;
    if username.is_empty() {
        return Err(format!(
            "Secret `{}`: the user name is empty",
            r.secret_name
        ));
    }
    Ok(common::RtspCredentials { username, password })
}

/// Reads the Secret `r` names in `namespace` and takes the credentials from it.
pub async fn resolve(
    client: &Client,
    namespace: &str,
    r: &CredentialsRef,
) -> Result<common::RtspCredentials, String> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    match api.get_opt(&r.secret_name).await {
        Ok(Some(secret)) => from_secret(&secret, r),
        Ok(None) => Err(format!(
            "Secret `{}` does not exist in namespace `{namespace}`",
            r.secret_name
        )),
        Err(e) => Err(format!("Secret `{}` cannot be read: {e}", r.secret_name)),
    }
}

/// Why cameras could not be given their credentials, by (namespace, camera); written when a
/// site applies its cameras, read when each camera's status is written.
#[derive(Default)]
pub struct Problems(Mutex<HashMap<(String, String), String>>);

impl Problems {
    pub fn set(&self, namespace: &str, camera: &str, problem: Option<String>) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let key = (namespace.to_string(), camera.to_string());
        match problem {
            Some(p) => {
                map.insert(key, p);
            }
            None => {
                map.remove(&key);
            }
        }
    }

    pub fn get(&self, namespace: &str, camera: &str) -> Option<String> {
        let map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.get(&(namespace.to_string(), camera.to_string()))
            .cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;
    use std::collections::BTreeMap;

    fn secret(pairs: &[(&str, &str)]) -> Secret {
        Secret {
            data: Some(
                pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
                    .collect::<BTreeMap<_, _>>(),
            ),
            ..Default::default()
        }
    }

    fn reference(user: Option<&str>, pass: Option<&str>) -> CredentialsRef {
        CredentialsRef {
            secret_name: "gate-1-rtsp".into(),
            username_key: user.map(str::to_string),
            password_key: pass.map(str::to_string),
        }
    }

    #[test]
    fn default_and_named_keys() {
        let c = from_secret(
            &secret(&[("username", "admin"), ("password", "s3cret")]),
            &reference(None, None),
        )
        .unwrap();
        assert_eq!(
            (c.username.as_str(), c.password.as_str()),
            ("admin", "s3cret")
        );
        let c = from_secret(
            &secret(&[("user", "viewer"), ("pass", "x")]),
            &reference(Some("user"), Some("pass")),
        )
        .unwrap();
        assert_eq!(c.username, "viewer");
        // The redacted Debug never shows a value.
        let shown = format!("{c:?}");
        assert!(!shown.contains("viewer") && !shown.contains('x'), "{shown}");
    }

    #[test]
    fn problems_name_the_secret_and_key_never_a_value() {
        let e = from_secret(&secret(&[("username", "admin")]), &reference(None, None)).unwrap_err();
        assert_eq!(e, "Secret `gate-1-rtsp` has no key `password`");
        let e = from_secret(
            &secret(&[("username", ""), ("password", "hunter2")]),
            &reference(None, None),
        )
        .unwrap_err();
        assert!(
            e.contains("user name is empty") && !e.contains("hunter2"),
            "{e}"
        );
        let bad = Secret {
            data: Some(BTreeMap::from([
                ("username".to_string(), ByteString(vec![0xff, 0xfe])),
                ("password".to_string(), ByteString(b"p".to_vec())),
            ])),
            ..Default::default()
        };
        assert!(
            from_secret(&bad, &reference(None, None))
                .unwrap_err()
                .contains("not UTF-8")
        );
    }
}
