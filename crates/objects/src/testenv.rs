//! Real parts for tests (this crate's and others'), found through environment variables.
//!
//! The rule: a test that needs a real part (an S3 store, a PostgreSQL server) runs against it
//! when its variables are set. When they are missing the test is skipped with a printed
//! notice — except when `CI` is set: CI must exercise the real parts, so there the test fails.

use crate::config::{DEFAULT_REGION, ObjectStoreConfig};

/// Variables that select the S3 store for tests (`KORDON_TEST_S3_REGION` is optional).
pub const S3_VARS: &[&str] = &[
    "KORDON_TEST_S3_ENDPOINT",
    "KORDON_TEST_S3_ACCESS_KEY_ID",
    "KORDON_TEST_S3_SECRET_ACCESS_KEY",
    "KORDON_TEST_S3_BUCKET",
];

/// The values of `vars` when all are set (non-empty). When some are missing: prints a notice
/// and returns `None`, or panics (failing the test) when `CI` is set.
///
/// # Panics
/// When `CI` is set and a variable is missing: this is how CI fails a skipped real part.
pub fn require(part: &str, vars: &[&str]) -> Option<Vec<String>> {
    let mut values = Vec::new();
    let mut missing = Vec::new();
    for v in vars {
        match std::env::var(v) {
            Ok(s) if !s.is_empty() => values.push(s),
            _ => missing.push(*v),
        }
    }
    if missing.is_empty() {
        return Some(values);
    }
    let msg = format!(
        "{part}: not tested, {} not set (scripts/services.sh starts the real parts)",
        missing.join(", ")
    );
    if std::env::var_os("CI").is_some() {
        panic!("CI is set, so real parts must be tested: {msg}");
    }
    eprintln!("SKIPPED {msg}");
    None
}

/// The S3 test store from `KORDON_TEST_S3_*`, or `None` (see [`require`]).
pub fn s3_config(part: &str) -> Option<ObjectStoreConfig> {
    let v = require(part, S3_VARS)?;
    let [endpoint, key, secret, bucket] = <[String; 4]>::try_from(v).ok()?;
    let region = std::env::var("KORDON_TEST_S3_REGION")
        .ok()
        .filter(|r| !r.is_empty())
        .unwrap_or_else(|| DEFAULT_REGION.to_string());
    Some(ObjectStoreConfig::S3 {
        allow_http: endpoint.starts_with("http://"),
        bucket,
        endpoint: Some(endpoint),
        region,
        access_key_id: Some(key),
        secret_access_key: Some(secret),
        object_lock: None,
    })
}
