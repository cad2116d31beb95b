//! Ingest configuration: the cameras of this shard and how they are recorded.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::IngestError;

/// Default segment length: long enough for efficient storage, short enough that a moved camera
/// or a crash loses at most this much of the open segment's upload latency.
pub const DEFAULT_SEGMENT_DURATION: Duration = Duration::from_secs(6);
/// Default ceiling of the local spool.
pub const DEFAULT_SPOOL_MAX_BYTES: u64 = 10 * 1024 * 1024 * 1024;
// How streams are opened and reconnected is the acquisition layer's (`kordon-media`); ingest
// maps its configuration into it ([`IngestConfig::source_config`],
// [`CameraConfig::record_stream`]).
pub use kordon_media::config::{
    DEFAULT_RECONNECT_INITIAL, DEFAULT_RECONNECT_MAX, DEFAULT_RTSP_LATENCY, DEFAULT_STALL_TIMEOUT,
};
pub use kordon_media::{RtspClient, Transport, redact_url};

/// One camera of this shard. Its `Debug` output leaves out the password and any credentials
/// in the URLs, so no log line can carry them.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CameraConfig {
    /// Site (a partner district), e.g. `edirne`.
    pub site: String,
    /// Camera name, unique within its site, e.g. `gate-1`.
    pub name: String,
    /// RTSP URL of the record (main) stream. Credentials here are accepted but never logged;
    /// prefer `username`/`password`.
    pub record: String,
    /// RTSP URL of the detect (sub) stream, for the detection service.
    #[serde(default)]
    pub detect: Option<String>,
    #[serde(default)]
    pub transport: Transport,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    /// Overrides the ingest-wide segment length.
    #[serde(default, with = "humantime_serde")]
    pub segment_duration: Option<Duration>,
}

impl std::fmt::Debug for CameraConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CameraConfig")
            .field("site", &self.site)
            .field("name", &self.name)
            .field("record", &redact_url(&self.record))
            .field("detect", &self.detect.as_deref().map(redact_url))
            .field("transport", &self.transport)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("segment_duration", &self.segment_duration)
            .finish()
    }
}

impl CameraConfig {
    /// `site/name`, the camera's identity in logs.
    pub fn id(&self) -> String {
        format!("{}/{}", self.site, self.name)
    }

    /// The record URL with any `user:password@` removed, for logs and status.
    pub fn redacted_record_url(&self) -> String {
        redact_url(&self.record)
    }

    /// The record stream as the acquisition layer opens it.
    pub fn record_stream(&self) -> kordon_media::StreamConfig {
        kordon_media::StreamConfig {
            name: format!("{}-{}", self.site, self.name),
            url: self.record.clone(),
            transport: self.transport,
            username: self.username.clone(),
            password: self.password.clone(),
        }
    }

    pub fn validate(&self, key: &str) -> Result<(), IngestError> {
        validate_name(&format!("{key}.site"), &self.site)?;
        validate_name(&format!("{key}.name"), &self.name)?;
        let url = url::Url::parse(&self.record).map_err(|e| IngestError::Config {
            key: format!("{key}.record"),
            message: format!("not a URL: {e}"),
        })?;
        if !matches!(url.scheme(), "rtsp" | "rtsps") {
            return Err(IngestError::Config {
                key: format!("{key}.record"),
                message: format!("scheme `{}` is not rtsp or rtsps", url.scheme()),
            });
        }
        if let Some(d) = self.segment_duration
            && (d < Duration::from_secs(1) || d > Duration::from_secs(60))
        {
            return Err(IngestError::Config {
                key: format!("{key}.segment_duration"),
                message: "must be between 1s and 60s".into(),
            });
        }
        Ok(())
    }
}

/// Site and camera names become object-key and URL path components: keep them to a safe set.
pub fn validate_name(key: &str, name: &str) -> Result<(), IngestError> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(IngestError::Config {
            key: key.to_string(),
            message: format!(
                "`{name}` must be 1-63 characters of a-z, 0-9 and '-', not starting or ending \
                 with '-'"
            ),
        })
    }
}

/// The storage service as a client sees it. Services authenticate with a client certificate.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageClientConfig {
    /// gRPC URL, e.g. `https://storage.burgas.svc:8470`. Required for `kordon ingest`;
    /// standalone uses its own listener.
    pub url: Option<String>,
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
}

/// How this ingest process records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// This replica's name (the pod name in Kubernetes), stored with every segment.
    pub replica: String,
    #[serde(with = "humantime_serde")]
    pub segment_duration: Duration,
    /// Local spool directory; default `<data_dir>/spool`.
    pub spool_dir: Option<PathBuf>,
    /// The spool refuses new footage beyond this many bytes (oldest unsent footage is kept).
    pub spool_max_bytes: u64,
    #[serde(with = "humantime_serde")]
    pub reconnect_initial: Duration,
    #[serde(with = "humantime_serde")]
    pub reconnect_max: Duration,
    #[serde(with = "humantime_serde")]
    pub stall_timeout: Duration,
    /// A jump in a camera's timestamps longer than this (a stall shorter than
    /// `stall_timeout`) ends the segment and is recorded as a `stream_lost` gap, rather than a
    /// frame held across the hole. Raise it for cameras that lower their frame rate when the
    /// scene is still.
    #[serde(with = "humantime_serde")]
    pub max_frame_gap: Duration,
    #[serde(with = "humantime_serde")]
    pub rtsp_latency: Duration,
    /// `auto` (default) or `gstreamer`; see [`RtspClient`].
    pub rtsp_client: RtspClient,
    /// How to reach the storage service that indexes segments.
    pub storage: StorageClientConfig,
    /// Segments uploaded in parallel.
    pub upload_concurrency: usize,
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            replica: "ingest-0".to_string(),
            segment_duration: DEFAULT_SEGMENT_DURATION,
            spool_dir: None,
            spool_max_bytes: DEFAULT_SPOOL_MAX_BYTES,
            reconnect_initial: DEFAULT_RECONNECT_INITIAL,
            reconnect_max: DEFAULT_RECONNECT_MAX,
            stall_timeout: DEFAULT_STALL_TIMEOUT,
            max_frame_gap: crate::recorder::DEFAULT_MAX_FRAME_GAP,
            rtsp_latency: DEFAULT_RTSP_LATENCY,
            rtsp_client: RtspClient::Auto,
            storage: StorageClientConfig::default(),
            upload_concurrency: 8,
        }
    }
}

impl IngestConfig {
    /// How the acquisition layer opens and reconnects this shard's cameras.
    pub fn source_config(&self) -> kordon_media::SourceConfig {
        kordon_media::SourceConfig {
            rtsp_client: self.rtsp_client,
            rtsp_latency: self.rtsp_latency,
            stall_timeout: self.stall_timeout,
            reconnect_initial: self.reconnect_initial,
            reconnect_max: self.reconnect_max,
        }
    }

    pub fn validate(&self) -> Result<(), IngestError> {
        let bad = |key: &str, message: &str| {
            Err(IngestError::Config {
                key: format!("ingest.{key}"),
                message: message.to_string(),
            })
        };
        if self.segment_duration < Duration::from_secs(1)
            || self.segment_duration > Duration::from_secs(60)
        {
            return bad("segment_duration", "must be between 1s and 60s");
        }
        if self.spool_max_bytes < 64 * 1024 * 1024 {
            return bad("spool_max_bytes", "must be at least 64 MiB");
        }
        if self.reconnect_initial.is_zero() || self.reconnect_max < self.reconnect_initial {
            return bad(
                "reconnect_max",
                "reconnect_initial must be > 0 and reconnect_max >= reconnect_initial",
            );
        }
        if self.stall_timeout < Duration::from_secs(1) {
            return bad("stall_timeout", "must be at least 1s");
        }
        if self.max_frame_gap < Duration::from_millis(200)
            || self.max_frame_gap > self.stall_timeout
        {
            return bad(
                "max_frame_gap",
                "must be at least 200ms and at most stall_timeout",
            );
        }
        if self.upload_concurrency == 0 {
            return bad("upload_concurrency", "must be at least 1");
        }
        if self.replica.trim().is_empty() {
            return bad("replica", "must not be empty");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cam(record: &str) -> CameraConfig {
        CameraConfig {
            site: "edirne".into(),
            name: "gate-1".into(),
            record: record.into(),
            detect: None,
            transport: Transport::Tcp,
            username: None,
            password: None,
            segment_duration: None,
        }
    }

    #[test]
    fn camera_validation_names_the_key() {
        assert!(
            cam("rtsp://10.0.0.1/main")
                .validate("sites[0].cameras[0]")
                .is_ok()
        );
        let e = cam("http://x/")
            .validate("sites[0].cameras[0]")
            .unwrap_err();
        assert!(e.to_string().contains("sites[0].cameras[0].record"), "{e}");
        let mut c = cam("rtsp://x/");
        c.name = "Gate 1".into();
        let e = c.validate("k").unwrap_err();
        assert!(e.to_string().contains("k.name"), "{e}");
    }

    #[test]
    fn credentials_never_appear_in_redacted_urls() {
        let c = cam("rtsp://admin:s3cret@10.0.0.1:554/main");
        let r = c.redacted_record_url();
        assert!(!r.contains("s3cret") && !r.contains("admin"), "{r}");
        assert!(r.contains("10.0.0.1:554/main"), "{r}");
    }

    #[test]
    fn defaults_are_valid() {
        IngestConfig::default().validate().unwrap();
    }
}
