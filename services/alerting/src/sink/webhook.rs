//! Webhooks signed per the Standard Webhooks specification: `webhook-id`, `webhook-timestamp`
//! and `webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">`, keyed by the
//! base64 part of a `whsec_…` secret. 2xx is delivered; 408, 429, 5xx and transport errors
//! are retried; 410 Gone disables the sink; any other answer is refused for good.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::Failure;
use crate::config::WebhookYaml;

/// A webhook endpoint with its key.
pub struct Webhook {
    url: String,
    key: Vec<u8>,
    /// A mounted Secret is updated in place when it changes: re-read when its mtime moves.
    secret_file: Option<(std::path::PathBuf, Option<std::time::SystemTime>)>,
    client: reqwest::Client,
}

fn mtime(p: &std::path::Path) -> Option<std::time::SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

/// The key of a `whsec_…` secret (a secret without the prefix is taken as base64 too).
pub fn key_of(secret: &str) -> Result<Vec<u8>, String> {
    let b = secret.trim();
    let b = b.strip_prefix("whsec_").unwrap_or(b);
    let key = B64
        .decode(b)
        .map_err(|e| format!("the signing secret is not whsec_<base64>: {e}"))?;
    if key.len() < 16 {
        return Err("the signing secret is shorter than 16 bytes".into());
    }
    Ok(key)
}

/// The certificates of a webhook's `ca_file` (at least one), or why not.
pub fn read_ca(path: &std::path::Path) -> Result<Vec<reqwest::Certificate>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem)
        .map_err(|e| format!("{}: not PEM certificates: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: holds no certificate", path.display()));
    }
    Ok(certs)
}

/// The `webhook-signature` value of one message.
pub fn sign(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1,{}", B64.encode(mac.finalize().into_bytes()))
}

impl Webhook {
    pub fn new(c: &WebhookYaml) -> Result<Webhook, String> {
        let secret = match (&c.secret, &c.secret_file) {
            (Some(s), _) => s.clone(),
            (None, Some(f)) => std::fs::read_to_string(f)
                .map_err(|e| format!("secret_file {}: {e}", f.display()))?,
            (None, None) => return Err("no signing secret".into()),
        };
        let mut builder = reqwest::Client::builder();
        if let Some(f) = &c.ca_file {
            // Only the receiver's own CA: a public CA cannot stand in for the desk.
            builder = builder.tls_certs_only(read_ca(f)?);
        }
        let client = builder
            .timeout(c.timeout)
            .connect_timeout(c.timeout.min(Duration::from_secs(5)))
            .pool_idle_timeout(Duration::from_secs(60))
            .user_agent(concat!("kordon-alerting/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("HTTP client: {e}"))?;
        Ok(Webhook {
            url: c.url.clone(),
            key: key_of(&secret)?,
            secret_file: c.secret_file.clone().map(|f| {
                let m = mtime(&f);
                (f, m)
            }),
            client,
        })
    }

    /// Takes a rotated secret (the file changed since it was read).
    fn reload(&mut self) {
        let Some((path, seen)) = &mut self.secret_file else {
            return;
        };
        let now = mtime(path);
        if now == *seen {
            return;
        }
        match std::fs::read_to_string(&*path)
            .map_err(|e| e.to_string())
            .and_then(|s| key_of(&s))
        {
            Ok(k) => {
                self.key = k;
                *seen = now;
                tracing::info!(file = %path.display(), "webhook signing secret rotated");
            }
            Err(e) => tracing::warn!(file = %path.display(), error = %e,
                                     "webhook signing secret changed but is unreadable; keeping the old one"),
        }
    }

    /// Posts one message; `id` is the same on every retry of it.
    pub async fn post(&mut self, id: &str, body: Vec<u8>) -> Result<(), Failure> {
        self.reload();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let signature = sign(&self.key, id, now, &body);
        let r = self
            .client
            .post(&self.url)
            .header("content-type", "application/json")
            .header("webhook-id", id)
            .header("webhook-timestamp", now.to_string())
            .header("webhook-signature", signature)
            .body(body)
            .send()
            .await
            .map_err(|e| Failure::Transient(e.without_url().to_string()))?;
        let status = r.status();
        match status.as_u16() {
            200..=299 => Ok(()),
            410 => Err(Failure::Gone),
            408 | 429 | 500..=599 => Err(Failure::Transient(format!("HTTP {status}"))),
            _ => Err(Failure::Permanent(format!("HTTP {status}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_like_the_specification_example() {
        // The example of the Standard Webhooks specification (and its reference libraries).
        let key = key_of("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            sign(&key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
        assert!(key_of("whsec_short").is_err());
    }
}
