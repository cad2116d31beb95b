//! Where media objects live, and how to reach them.
//!
//! ```yaml
//! # S3-compatible bucket (production; Ceph RGW in tests)
//! kind: s3
//! bucket: kordon-burgas
//! endpoint: http://127.0.0.1:7480   # unset: AWS, region's endpoint
//! region: us-east-1
//! access_key_id: ...                # unset: AWS_ACCESS_KEY_ID and friends
//! secret_access_key: ...
//! allow_http: true                  # required for an http:// endpoint
//! object_lock: {mode: compliance, retain_days: 30}   # optional
//! ---
//! kind: local                       # the embedded default
//! root: /var/lib/kordon/media
//! ---
//! kind: memory                      # tests only: gone when the process ends
//! ```

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use object_store::ObjectStore;
use object_store::aws::{AmazonS3Builder, Checksum};
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use serde::{Deserialize, Serialize};

use crate::ObjectsError;

/// Default S3 region when none is configured (Ceph RGW and most S3-compatible stores accept
/// any region; AWS needs the bucket's).
pub const DEFAULT_REGION: &str = "us-east-1";

/// Longest Object Lock retention accepted, in days (100 years).
pub const MAX_RETAIN_DAYS: u32 = 36_500;

/// An object store: an S3-compatible bucket, a local directory, or memory.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum ObjectStoreConfig {
    /// Files under `root` (created if missing). The embedded default.
    Local { root: PathBuf },
    /// An S3-compatible bucket.
    S3 {
        bucket: String,
        /// Base URL of the store, e.g. `http://127.0.0.1:7480` (path-style addressing).
        /// Unset: AWS S3 in `region`.
        #[serde(default)]
        endpoint: Option<String>,
        #[serde(default = "default_region")]
        region: String,
        /// Unset: taken from the standard `AWS_*` environment variables.
        #[serde(default)]
        access_key_id: Option<String>,
        #[serde(default)]
        secret_access_key: Option<String>,
        /// Allow an `http://` endpoint (loopback test stores); refused otherwise.
        #[serde(default)]
        allow_http: bool,
        /// Write every object with an Object Lock retention (the bucket must have Object
        /// Lock enabled).
        #[serde(default)]
        object_lock: Option<ObjectLockConfig>,
    },
    /// In memory, for tests.
    Memory,
}

fn default_region() -> String {
    DEFAULT_REGION.to_string()
}

/// S3 Object Lock retention applied to every object written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectLockConfig {
    pub mode: ObjectLockMode,
    /// Days from the write until the store allows deleting the object version (1..=36500).
    /// The date is rounded up to the next UTC midnight.
    pub retain_days: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ObjectLockMode {
    /// Nobody, not even the bucket owner, can delete or shorten it until it expires.
    Compliance,
    /// Users with `s3:BypassGovernanceRetention` can delete it early.
    Governance,
}

impl ObjectLockMode {
    /// The value of the `x-amz-object-lock-mode` header.
    pub fn as_header(self) -> &'static str {
        match self {
            ObjectLockMode::Compliance => "COMPLIANCE",
            ObjectLockMode::Governance => "GOVERNANCE",
        }
    }
}

impl Default for ObjectStoreConfig {
    /// A `media` directory under the current directory; services override `root` with their
    /// data directory.
    fn default() -> Self {
        ObjectStoreConfig::Local {
            root: PathBuf::from("media"),
        }
    }
}

impl fmt::Debug for ObjectStoreConfig {
    /// Never prints the secret key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ObjectStoreConfig::Local { root } => {
                f.debug_struct("Local").field("root", root).finish()
            }
            ObjectStoreConfig::S3 {
                bucket,
                endpoint,
                region,
                access_key_id,
                secret_access_key,
                allow_http,
                object_lock,
            } => f
                .debug_struct("S3")
                .field("bucket", bucket)
                .field("endpoint", endpoint)
                .field("region", region)
                .field("access_key_id", access_key_id)
                .field(
                    "secret_access_key",
                    &secret_access_key.as_ref().map(|_| "<redacted>"),
                )
                .field("allow_http", allow_http)
                .field("object_lock", object_lock)
                .finish(),
            ObjectStoreConfig::Memory => f.write_str("Memory"),
        }
    }
}

impl ObjectStoreConfig {
    /// Checks the values without contacting the store. Keys in errors are relative to this
    /// section (e.g. `bucket`); callers prefix them with the section's own key.
    pub fn validate(&self) -> Result<(), ObjectsError> {
        match self {
            ObjectStoreConfig::Local { root } => {
                if root.as_os_str().is_empty() {
                    return Err(ObjectsError::config("root", "must not be empty"));
                }
            }
            ObjectStoreConfig::S3 {
                bucket,
                endpoint,
                region,
                access_key_id,
                secret_access_key,
                allow_http,
                object_lock,
            } => {
                if bucket.trim().is_empty() {
                    return Err(ObjectsError::config("bucket", "must not be empty"));
                }
                if region.trim().is_empty() {
                    return Err(ObjectsError::config("region", "must not be empty"));
                }
                if let Some(endpoint) = endpoint {
                    if endpoint.starts_with("http://") {
                        if !allow_http {
                            return Err(ObjectsError::config(
                                "allow_http",
                                format!(
                                    "endpoint {endpoint} is plain http: set allow_http: true \
                                     (loopback test stores only) or use https"
                                ),
                            ));
                        }
                    } else if !endpoint.starts_with("https://") {
                        return Err(ObjectsError::config(
                            "endpoint",
                            format!("`{endpoint}` must start with http:// or https://"),
                        ));
                    }
                }
                if access_key_id.is_some() != secret_access_key.is_some() {
                    return Err(ObjectsError::config(
                        "secret_access_key",
                        "access_key_id and secret_access_key must be set together",
                    ));
                }
                if let Some(lock) = object_lock
                    && !(1..=MAX_RETAIN_DAYS).contains(&lock.retain_days)
                {
                    return Err(ObjectsError::config(
                        "object_lock.retain_days",
                        format!("must be 1..={MAX_RETAIN_DAYS}, got {}", lock.retain_days),
                    ));
                }
            }
            ObjectStoreConfig::Memory => {}
        }
        Ok(())
    }

    /// The Object Lock retention configured, if any.
    pub fn object_lock(&self) -> Option<ObjectLockConfig> {
        match self {
            ObjectStoreConfig::S3 { object_lock, .. } => *object_lock,
            _ => None,
        }
    }

    /// A short description for logs: kind and bucket or directory, never credentials.
    pub fn describe(&self) -> String {
        match self {
            ObjectStoreConfig::Local { root } => format!("local files in {}", root.display()),
            ObjectStoreConfig::S3 {
                bucket, endpoint, ..
            } => format!(
                "S3 bucket `{bucket}` at {}",
                endpoint.as_deref().unwrap_or("AWS")
            ),
            ObjectStoreConfig::Memory => "memory".to_string(),
        }
    }
}

/// Local files under `root` (created if missing).
fn local_store(root: &std::path::Path) -> Result<LocalFileSystem, ObjectsError> {
    std::fs::create_dir_all(root).map_err(|source| ObjectsError::CreateDir {
        path: root.to_path_buf(),
        source,
    })?;
    // fsync: a segment registered as evidence must survive a crash of the host.
    Ok(LocalFileSystem::new_with_prefix(root)?.with_fsync(true))
}

/// The store of local files `cfg` describes, for a writer that can hand it whole files
/// ([`crate::link_immutable`]); `None` for other kinds. Built like [`build`]'s.
pub fn build_local(cfg: &ObjectStoreConfig) -> Result<Option<Arc<LocalFileSystem>>, ObjectsError> {
    match cfg {
        ObjectStoreConfig::Local { root } => {
            cfg.validate()?;
            Ok(Some(Arc::new(local_store(root)?)))
        }
        _ => Ok(None),
    }
}

/// Builds the store described by `cfg` (validating it first). Nothing is contacted yet; a
/// local root is created if missing.
pub fn build(cfg: &ObjectStoreConfig) -> Result<Arc<dyn ObjectStore>, ObjectsError> {
    cfg.validate()?;
    match cfg {
        ObjectStoreConfig::Local { root } => Ok(Arc::new(local_store(root)?)),
        ObjectStoreConfig::Memory => Ok(Arc::new(InMemory::new())),
        ObjectStoreConfig::S3 { object_lock, .. } => {
            let plain = s3_builder(cfg, None)?.build()?;
            match object_lock {
                None => Ok(Arc::new(plain)),
                Some(lock) => Ok(Arc::new(crate::lock::ObjectLockStore::new(
                    cfg.clone(),
                    *lock,
                    Arc::new(plain),
                ))),
            }
        }
    }
}

/// An S3 builder for `cfg`, with `headers` sent (and signed) on every request.
pub(crate) fn s3_builder(
    cfg: &ObjectStoreConfig,
    headers: Option<http::HeaderMap>,
) -> Result<AmazonS3Builder, ObjectsError> {
    let ObjectStoreConfig::S3 {
        bucket,
        endpoint,
        region,
        access_key_id,
        secret_access_key,
        allow_http,
        object_lock,
    } = cfg
    else {
        return Err(ObjectsError::config("kind", "not an S3 configuration"));
    };
    let mut options = object_store::ClientOptions::new().with_allow_http(*allow_http);
    if let Some(h) = headers {
        options = options.with_default_headers(h);
    }
    // Keys in the config win; without them the standard AWS_* variables apply.
    let mut b = match (access_key_id, secret_access_key) {
        (Some(id), Some(secret)) => AmazonS3Builder::new()
            .with_access_key_id(id)
            .with_secret_access_key(secret),
        _ => AmazonS3Builder::from_env(),
    }
    .with_bucket_name(bucket)
    .with_region(region)
    .with_client_options(options);
    if let Some(e) = endpoint {
        b = b.with_endpoint(e);
    }
    if object_lock.is_some() {
        // S3 wants an integrity checksum on every write that carries a retention.
        b = b.with_checksum_algorithm(Checksum::SHA256);
    }
    Ok(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml(s: &str) -> Result<ObjectStoreConfig, Box<figment::Error>> {
        use figment::providers::Format;
        figment::Figment::from(figment::providers::Yaml::string(s))
            .extract()
            .map_err(Box::new)
    }

    #[test]
    fn parses_each_kind_and_rejects_unknown_keys() {
        assert_eq!(
            yaml("kind: local\nroot: /x\n").unwrap(),
            ObjectStoreConfig::Local { root: "/x".into() }
        );
        assert_eq!(yaml("kind: memory\n").unwrap(), ObjectStoreConfig::Memory);
        let s3 = yaml(
            "kind: s3\nbucket: b\nendpoint: http://127.0.0.1:7480\naccess_key_id: k\n\
             secret_access_key: s\nallow_http: true\n\
             object_lock: {mode: compliance, retain_days: 30}\n",
        )
        .unwrap();
        assert_eq!(
            s3.object_lock(),
            Some(ObjectLockConfig {
                mode: ObjectLockMode::Compliance,
                retain_days: 30
            })
        );
        assert!(s3.validate().is_ok());
        let e = yaml("kind: local\nroot: /x\nbukket: y\n").unwrap_err();
        assert!(e.to_string().contains("bukket"), "{e}");
        let e = yaml("kind: s3\nbucket: b\nobject_lock: {mode: forever, retain_days: 1}\n")
            .unwrap_err();
        assert!(e.to_string().contains("forever"), "{e}");
        assert!(yaml("kind: floppy\n").is_err());
    }

    #[test]
    fn debug_never_prints_the_secret() {
        let s3 =
            yaml("kind: s3\nbucket: b\naccess_key_id: k\nsecret_access_key: hunter2\n").unwrap();
        let d = format!("{s3:?}");
        assert!(!d.contains("hunter2"), "{d}");
        assert!(d.contains("redacted"), "{d}");
    }

    #[test]
    fn validation_names_the_key() {
        let key = |s: &str| match yaml(s).unwrap().validate() {
            Err(ObjectsError::Config { key, .. }) => key,
            other => panic!("expected a config error, got {other:?}"),
        };
        assert_eq!(
            key("kind: s3\nbucket: b\nendpoint: http://127.0.0.1:7480\n"),
            "allow_http"
        );
        assert_eq!(key("kind: s3\nbucket: ''\n"), "bucket");
        assert_eq!(key("kind: s3\nbucket: b\nendpoint: ftp://x\n"), "endpoint");
        assert_eq!(
            key("kind: s3\nbucket: b\naccess_key_id: k\n"),
            "secret_access_key"
        );
        assert_eq!(
            key("kind: s3\nbucket: b\nobject_lock: {mode: governance, retain_days: 0}\n"),
            "object_lock.retain_days"
        );
        assert_eq!(key("kind: local\nroot: ''\n"), "root");
    }

    #[test]
    fn builds_local_and_creates_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("a/b/media");
        build(&ObjectStoreConfig::Local { root: root.clone() }).unwrap();
        assert!(root.is_dir());
    }
}
