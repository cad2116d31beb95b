//! The storage service's configuration section.
//!
//! ```yaml
//! storage:
//!   database_url: postgres://kordon@db:5432/kordon   # default: SQLite in the data directory
//!   objects: {kind: s3, bucket: kordon-burgas, endpoint: https://s3.example, ...}
//!   http_listen: 0.0.0.0:8472
//!   public_base_url: https://footage.burgas.example  # what playback URLs start with
//!   url_lifetime: 15m
//!   playback_key_file: /secrets/playback.key         # shared by every replica
//!   signing_key_file: /secrets/site-signing.pem
//!   transcode: { url: https://transcode.burgas.svc:8470, ca_file: …, cert_file: …, key_file: … }
//!   gateway: { ingest: https://burgas-ingest.burgas.svc:8470, alerting: …, ca_file: … }  # console
//! ```
//!
//! Every field has a documented default, so an empty section runs a self-contained service in
//! the data directory.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use kordon_objects::ObjectStoreConfig;
use serde::{Deserialize, Serialize};

use crate::StorageError;

/// File name of the default SQLite index inside the data directory.
pub const DEFAULT_SQLITE_FILE: &str = "index.sqlite";
/// Directory of the default local object store inside the data directory.
pub const DEFAULT_MEDIA_DIR: &str = "media";
/// File of the default checkpoint-signing key inside the data directory.
pub const DEFAULT_SIGNING_KEY_FILE: &str = "keys/storage-signing-key.pem";
/// Default lifetime of playback and media URLs.
pub const DEFAULT_URL_LIFETIME: Duration = Duration::from_secs(15 * 60);
/// Longest lifetime a request may ask for.
pub const MAX_URL_LIFETIME: Duration = Duration::from_secs(60 * 60);
/// Segments closer than this are one recorded range.
pub const DEFAULT_MERGE_TOLERANCE: Duration = Duration::from_secs(1);
/// Largest merge tolerance a request may ask for.
pub const MAX_MERGE_TOLERANCE: Duration = Duration::from_secs(60);
/// Retention where neither the site nor the camera sets one.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(30 * 86_400);
/// How often retention sweeps run.
pub const DEFAULT_RETENTION_INTERVAL: Duration = Duration::from_secs(600);
/// Default size of the database connection pool.
pub const DEFAULT_DB_CONNECTIONS: u32 = 8;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// `sqlite://PATH` or `postgres://USER@HOST:PORT/DB`. Default: SQLite file
    /// `<data_dir>/index.sqlite`, created if missing.
    pub database_url: Option<String>,
    /// Connections in the database pool (default 8).
    pub database_max_connections: u32,
    /// Where media objects live. Default: local files under `<data_dir>/media`.
    pub objects: Option<ObjectStoreConfig>,
    /// The folder of the bucket the site's media is written under (ingest's and transcode's
    /// `object_prefix`; default empty: the bucket's root). A registration is accepted only
    /// for an object inside `<object_prefix>/<site>/<camera>/`, the record's own camera.
    pub object_prefix: String,
    /// Listener of the playback HTTP server (default `127.0.0.1:8472`).
    pub http_listen: SocketAddr,
    /// Base of the playback URLs handed to clients, e.g. `https://footage.example`.
    /// Default: `http://<http_listen>` (with `127.0.0.1` for an unspecified address).
    pub public_base_url: Option<String>,
    /// Lifetime of playback URLs when a request does not ask (default 15 min, at most 1 h).
    #[serde(with = "humantime_serde")]
    pub url_lifetime: Duration,
    /// File holding the HMAC key that signs playback tokens (at least 32 bytes). Default: a
    /// random key per process — URLs then work only on the replica that issued them and
    /// until it restarts; set a shared key when running several replicas.
    pub playback_key_file: Option<PathBuf>,
    /// Ed25519 key (PKCS#8 PEM) that signs access-log checkpoints. Default:
    /// `<data_dir>/keys/storage-signing-key.pem`, generated on first start.
    pub signing_key_file: Option<PathBuf>,
    /// Default merge tolerance of ListRecordings (default 1 s, at most 1 min).
    #[serde(with = "humantime_serde")]
    pub merge_tolerance: Duration,
    /// Whether each camera's segments continue one media timeline (default true: Kordon's
    /// ingest continues `tfdt` from segment to segment and starts each session at the wall
    /// clock), so playlists mark only gaps `EXT-X-DISCONTINUITY`. Set false for recorders that
    /// restart timestamps in every file (ffmpeg's segment muxer, splitmuxsink): every segment
    /// boundary is then marked.
    pub continuous_timestamps: bool,
    /// Retention where neither the site nor the camera has a policy (default 30 days, at
    /// least 1 h).
    #[serde(with = "humantime_serde")]
    pub default_retention: Duration,
    /// How often the retention sweep runs (default 10 min).
    #[serde(with = "humantime_serde")]
    pub retention_interval: Duration,
    /// The site's transcode service, which makes the viewer copies of evidence bundles
    /// (`ExportEvidence` with `rendering`). Default: none — such exports are refused naming
    /// `storage.transcode.url` (standalone may use its own listener).
    pub transcode: kordon_runtime::client::ServiceClientConfig,
    /// The site's ingest, detection and alerting, for the web console served on the HTTP
    /// listener ([`crate::gateway`]). Default: none — standalone serves them itself; on its
    /// own, storage then answers the console's calls to them with UNIMPLEMENTED.
    pub gateway: crate::gateway::GatewayConfig,
    /// Partner installations and the agreements with them (footage grants). Not part of the
    /// `storage:` section: the binary copies the top-level `partners:` section here.
    #[serde(skip)]
    pub partners: kordon_runtime::partner::PartnersConfig,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            database_url: None,
            database_max_connections: DEFAULT_DB_CONNECTIONS,
            objects: None,
            object_prefix: String::new(),
            http_listen: kordon_runtime::config::DEFAULT_HTTP_LISTEN
                .parse()
                .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 8472))),
            public_base_url: None,
            url_lifetime: DEFAULT_URL_LIFETIME,
            playback_key_file: None,
            signing_key_file: None,
            merge_tolerance: DEFAULT_MERGE_TOLERANCE,
            continuous_timestamps: true,
            default_retention: DEFAULT_RETENTION,
            retention_interval: DEFAULT_RETENTION_INTERVAL,
            transcode: Default::default(),
            gateway: Default::default(),
            partners: Default::default(),
        }
    }
}

impl StorageConfig {
    /// Checks values without connecting to anything. Keys in errors are relative to this
    /// section (e.g. `objects.bucket`).
    pub fn validate(&self) -> Result<(), StorageError> {
        kordon_objects::validate_prefix(&self.object_prefix)
            .map_err(|e| StorageError::config("object_prefix", e.to_string()))?;
        if let Some(url) = &self.database_url
            && !(url.starts_with("sqlite:")
                || url.starts_with("postgres:")
                || url.starts_with("postgresql:"))
        {
            return Err(StorageError::config(
                "database_url",
                "must start with sqlite:// or postgres://",
            ));
        }
        if self.database_max_connections == 0 {
            return Err(StorageError::config(
                "database_max_connections",
                "must be at least 1",
            ));
        }
        if let Some(objects) = &self.objects {
            objects.validate().map_err(|e| match e {
                kordon_objects::ObjectsError::Config { key, message } => {
                    StorageError::config(format!("objects.{key}"), message)
                }
                other => StorageError::config("objects", other.to_string()),
            })?;
        }
        if let Some(base) = &self.public_base_url
            && (!(base.starts_with("http://") || base.starts_with("https://"))
                || base.contains('?')
                || base.contains('#'))
        {
            return Err(StorageError::config(
                "public_base_url",
                "must be an http:// or https:// URL without query or fragment",
            ));
        }
        if self.url_lifetime.is_zero() || self.url_lifetime > MAX_URL_LIFETIME {
            return Err(StorageError::config(
                "url_lifetime",
                "must be more than 0 and at most 1h",
            ));
        }
        if self.merge_tolerance > MAX_MERGE_TOLERANCE {
            return Err(StorageError::config("merge_tolerance", "at most 1m"));
        }
        if self.default_retention < crate::retention::MIN_RETENTION {
            return Err(StorageError::config("default_retention", "at least 1h"));
        }
        if let Some(url) = &self.transcode.url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(StorageError::config(
                "transcode.url",
                "must be an http:// or https:// URL of the transcode service",
            ));
        }
        self.gateway.validate()?;
        if self.retention_interval.is_zero() {
            return Err(StorageError::config(
                "retention_interval",
                "must be more than 0",
            ));
        }
        Ok(())
    }

    /// The object store to use, with the default filled in.
    pub fn objects_or_default(&self, data_dir: &Path) -> ObjectStoreConfig {
        self.objects
            .clone()
            .unwrap_or_else(|| ObjectStoreConfig::Local {
                root: data_dir.join(DEFAULT_MEDIA_DIR),
            })
    }

    /// The base of playback URLs, without a trailing `/`.
    pub fn base_url(&self) -> String {
        match &self.public_base_url {
            Some(b) => b.trim_end_matches('/').to_string(),
            None => {
                let mut addr = self.http_listen;
                if addr.ip().is_unspecified() {
                    addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
                }
                format!("http://{addr}")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml(s: &str) -> Result<StorageConfig, Box<figment::Error>> {
        use figment::providers::Format;
        figment::Figment::from(figment::providers::Yaml::string(s))
            .extract()
            .map_err(Box::new)
    }

    #[test]
    fn empty_section_gives_documented_defaults() {
        let c = yaml("{}").unwrap();
        assert_eq!(c, StorageConfig::default());
        assert_eq!(c.url_lifetime, Duration::from_secs(900));
        assert_eq!(c.base_url(), "http://127.0.0.1:8472");
        assert_eq!(
            c.objects_or_default(Path::new("/d")),
            ObjectStoreConfig::Local {
                root: "/d/media".into()
            }
        );
        assert!(c.validate().is_ok());
    }

    #[test]
    fn parses_and_rejects_with_the_key_named() {
        let c = yaml(
            "database_url: postgres://kordon@127.0.0.1:5433/kordon\nurl_lifetime: 5m\n\
             http_listen: 0.0.0.0:9000\nobjects: {kind: memory}\n",
        )
        .unwrap();
        assert_eq!(c.url_lifetime, Duration::from_secs(300));
        assert_eq!(c.base_url(), "http://127.0.0.1:9000");
        assert!(c.validate().is_ok());
        assert!(
            yaml("databse_url: x\n")
                .unwrap_err()
                .to_string()
                .contains("databse_url")
        );
        let key = |s: &str| match yaml(s).unwrap().validate() {
            Err(StorageError::Config { key, .. }) => key,
            other => panic!("{other:?}"),
        };
        assert_eq!(key("database_url: mysql://x\n"), "database_url");
        assert_eq!(key("url_lifetime: 2h\n"), "url_lifetime");
        assert_eq!(key("public_base_url: ftp://x\n"), "public_base_url");
        assert_eq!(key("transcode: {url: 'transcode:8470'}\n"), "transcode.url");
        let c = yaml("transcode: {url: 'https://transcode:8470', ca_file: /ca.pem}\n").unwrap();
        assert_eq!(c.transcode.url.as_deref(), Some("https://transcode:8470"));
        assert!(c.validate().is_ok());
        assert_eq!(
            key("objects: {kind: s3, bucket: ''}\n"),
            "objects.bucket".to_string()
        );
    }
}
