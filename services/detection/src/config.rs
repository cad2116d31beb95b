//! Detection configuration: the `detection:` section of the `kordon` config file.
//!
//! ```yaml
//! detection:
//!   replica: burgas-detection-0        # pod name; shown in status
//!   model:
//!     path: /usr/share/kordon/models/nanodet-m-416-dynbatch.onnx   # default: the embedded model
//!     library: /opt/onnxruntime/libonnxruntime.so.1.32.0           # default: ORT_DYLIB_PATH
//!     provider: cpu                     # cpu | cuda | tensorrt | openvino (falls back to cpu)
//!     threads: 2                        # 0 = one per core
//!     max_batch: 8                      # frames per inference call, across cameras
//!     max_wait: 10ms                    # how long a frame waits for a batch to fill
//!   database_url: postgres://…         # default: SQLite in <data_dir>/detection.db
//!   storage: { url: https://storage:8470, ca_file: …, cert_file: …, key_file: … }
//!   snapshots: true
//!   retention: 30d
//! ```

use std::path::PathBuf;
use std::time::Duration;

use kordon_runtime::client::ServiceClientConfig;
use serde::{Deserialize, Serialize};

use crate::DetectionError;

/// How long stored detections are kept by default.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);
/// First reconnect delay after a detect stream fails.
pub const DEFAULT_RECONNECT_INITIAL: Duration = Duration::from_millis(250);
/// Reconnect delays double up to this cap.
pub const DEFAULT_RECONNECT_MAX: Duration = Duration::from_secs(5);
/// A stream that has failed for this long is reported offline.
pub const DEFAULT_OFFLINE_AFTER: Duration = Duration::from_secs(30);

/// The object detector this process runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    /// The ONNX model file; unset means the NanoDet-m model built into the binary.
    pub path: Option<PathBuf>,
    /// The ONNX Runtime shared library; unset means `ORT_DYLIB_PATH`.
    pub library: Option<PathBuf>,
    /// `cpu` (default), `cuda`, `tensorrt` or `openvino`; one the library lacks falls back to
    /// `cpu` with a log line, and the status says which runs.
    pub provider: String,
    /// Threads of one inference call; 0 means one per core.
    pub threads: usize,
    /// Frames batched into one inference call, across cameras.
    pub max_batch: usize,
    /// How long the first frame of a batch waits for others.
    #[serde(with = "humantime_serde")]
    pub max_wait: Duration,
    /// Frames waiting for inference before new ones are dropped (counted).
    pub queue: usize,
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            path: None,
            library: None,
            provider: "cpu".to_string(),
            threads: 0,
            max_batch: 8,
            max_wait: Duration::from_millis(10),
            queue: 64,
        }
    }
}

/// How this detection process works.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DetectionServiceConfig {
    /// This replica's name (the pod name in Kubernetes).
    pub replica: String,
    /// This replica's shard index (StatefulSet ordinal).
    pub shard_index: u32,
    pub model: ModelConfig,
    /// Where detections are stored; unset means SQLite in the data directory.
    pub database_url: Option<String>,
    /// The storage service, which indexes snapshots and records snapshot reads in the access
    /// log.
    pub storage: ServiceClientConfig,
    /// Save a JPEG snapshot of each track's first and best frames.
    pub snapshots: bool,
    /// Stored detections older than this are deleted.
    #[serde(with = "humantime_serde")]
    pub retention: Duration,
    #[serde(with = "humantime_serde")]
    pub reconnect_initial: Duration,
    #[serde(with = "humantime_serde")]
    pub reconnect_max: Duration,
    /// A detect stream failing for longer than this is reported offline.
    #[serde(with = "humantime_serde")]
    pub offline_after: Duration,
}

impl Default for DetectionServiceConfig {
    fn default() -> Self {
        DetectionServiceConfig {
            replica: "detection-0".to_string(),
            shard_index: 0,
            model: ModelConfig::default(),
            database_url: None,
            storage: ServiceClientConfig::default(),
            snapshots: true,
            retention: DEFAULT_RETENTION,
            reconnect_initial: DEFAULT_RECONNECT_INITIAL,
            reconnect_max: DEFAULT_RECONNECT_MAX,
            offline_after: DEFAULT_OFFLINE_AFTER,
        }
    }
}

impl DetectionServiceConfig {
    /// Checks every value; the error names the key (`detection.<key>`).
    pub fn validate(&self) -> Result<(), DetectionError> {
        let bad = |key: &str, message: &str| Err(DetectionError::config(key, message));
        if !matches!(
            self.model.provider.as_str(),
            "cpu" | "cuda" | "tensorrt" | "openvino"
        ) {
            return bad(
                "model.provider",
                "must be one of cpu, cuda, tensorrt, openvino",
            );
        }
        if self.model.max_batch == 0 || self.model.max_batch > 256 {
            return bad("model.max_batch", "must be between 1 and 256");
        }
        if self.model.max_wait > Duration::from_secs(1) {
            return bad("model.max_wait", "must be at most 1s");
        }
        if self.model.queue == 0 {
            return bad("model.queue", "must be at least 1");
        }
        if let Some(url) = &self.database_url
            && !kordon_db::is_supported_url(url)
        {
            return bad("database_url", "must start with sqlite:// or postgres://");
        }
        if self.retention < Duration::from_secs(3600) {
            return bad("retention", "must be at least 1h");
        }
        if self.reconnect_initial.is_zero() || self.reconnect_max < self.reconnect_initial {
            return bad(
                "reconnect_max",
                "reconnect_initial must be positive and at most reconnect_max",
            );
        }
        if self.offline_after < self.reconnect_max {
            return bad("offline_after", "must be at least reconnect_max");
        }
        Ok(())
    }

    /// The database URL to open: the configured one, or SQLite in `data_dir`.
    pub fn database_url(&self, data_dir: &std::path::Path) -> String {
        match &self.database_url {
            Some(u) => u.clone(),
            None => format!("sqlite://{}", data_dir.join("detection.db").display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        DetectionServiceConfig::default().validate().unwrap();
    }

    #[test]
    fn a_bad_value_names_its_key() {
        let mut c = DetectionServiceConfig::default();
        c.model.provider = "tpu".into();
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("detection.model.provider"), "{e}");
        let c = DetectionServiceConfig {
            database_url: Some("mysql://x".into()),
            ..Default::default()
        };
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("detection.database_url"), "{e}");
    }
}
