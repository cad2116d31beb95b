//! Detector configuration: typed, defaulted by documented constants, validated before anything
//! loads.

use std::path::PathBuf;
use std::time::Duration;

use crate::error::InferError;

/// Frames per session call unless configured otherwise (clamped to what the model accepts).
pub const DEFAULT_MAX_BATCH: usize = 8;
/// How long the queue waits for more frames once it holds one.
pub const DEFAULT_MAX_WAIT: Duration = Duration::from_millis(10);
/// Frames waiting for inference before new ones are dropped.
pub const DEFAULT_QUEUE: usize = 64;
/// Class score below which a candidate box is discarded before NMS.
pub const DEFAULT_SCORE_THRESHOLD: f32 = 0.3;
/// Intersection over union above which a lower-scored box of the same class is suppressed.
pub const DEFAULT_NMS_IOU: f32 = 0.6;
/// Intra-op threads of the ONNX Runtime session.
pub const DEFAULT_THREADS: usize = 2;

/// The ONNX Runtime execution provider to ask for. What actually runs is reported by
/// [`crate::Engine::provider`]: an unavailable provider falls back to CPU with a warning.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Provider {
    #[default]
    Cpu,
    Cuda,
    TensorRt,
    OpenVino,
}

impl Provider {
    /// The name used in logs, metrics and status (`cpu`, `cuda`, `tensorrt`, `openvino`).
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Cpu => "cpu",
            Provider::Cuda => "cuda",
            Provider::TensorRt => "tensorrt",
            Provider::OpenVino => "openvino",
        }
    }
}

impl std::str::FromStr for Provider {
    type Err = InferError;
    fn from_str(s: &str) -> Result<Self, InferError> {
        match s {
            "cpu" => Ok(Provider::Cpu),
            "cuda" => Ok(Provider::Cuda),
            "tensorrt" => Ok(Provider::TensorRt),
            "openvino" => Ok(Provider::OpenVino),
            _ => Err(InferError::Config {
                key: "provider",
                reason: "must be one of cpu, cuda, tensorrt, openvino",
            }),
        }
    }
}

/// How to load and run the detector.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// The ONNX model (NanoDet-m 416; `assets/models/`).
    pub model: PathBuf,
    /// The ONNX Runtime shared library; `None` looks at `ORT_DYLIB_PATH`, then the project venv.
    pub library: Option<PathBuf>,
    pub provider: Provider,
    /// Intra-op threads of the session (≥ 1).
    pub threads: usize,
    /// Most frames per session call (≥ 1); clamped to the model's own limit.
    pub max_batch: usize,
    /// How long a partly filled batch waits for more frames.
    pub max_wait: Duration,
    /// Frames waiting for inference (≥ 1); a frame arriving at a full queue is dropped.
    pub queue: usize,
    /// Pre-NMS class score threshold, in (0, 1].
    pub score_threshold: f32,
    /// NMS intersection-over-union threshold, in (0, 1].
    pub nms_iou: f32,
}

impl EngineConfig {
    /// The defaults above for `model`.
    pub fn new(model: impl Into<PathBuf>) -> Self {
        EngineConfig {
            model: model.into(),
            library: None,
            provider: Provider::Cpu,
            threads: DEFAULT_THREADS,
            max_batch: DEFAULT_MAX_BATCH,
            max_wait: DEFAULT_MAX_WAIT,
            queue: DEFAULT_QUEUE,
            score_threshold: DEFAULT_SCORE_THRESHOLD,
            nms_iou: DEFAULT_NMS_IOU,
        }
    }

    /// Checks every value; the error names the first bad key.
    pub fn validate(&self) -> Result<(), InferError> {
        let bad = |key, reason| Err(InferError::Config { key, reason });
        if self.model.as_os_str().is_empty() {
            return bad("model", "must name an ONNX file");
        }
        if self.threads == 0 || self.threads > 1024 {
            return bad("threads", "must be between 1 and 1024");
        }
        if self.max_batch == 0 || self.max_batch > 1024 {
            return bad("max_batch", "must be between 1 and 1024");
        }
        if self.max_wait > Duration::from_secs(1) {
            return bad("max_wait", "must be at most 1s");
        }
        if self.queue == 0 {
            return bad("queue", "must be at least 1");
        }
        if !(self.score_threshold > 0.0 && self.score_threshold <= 1.0) {
            return bad("score_threshold", "must be in (0, 1]");
        }
        if !(self.nms_iou > 0.0 && self.nms_iou <= 1.0) {
            return bad("nms_iou", "must be in (0, 1]");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_bad_values_name_their_key() {
        let ok = EngineConfig::new("m.onnx");
        assert!(ok.validate().is_ok());
        type Spoil = fn(&mut EngineConfig);
        let cases: [(Spoil, &str); 6] = [
            (|c| c.threads = 0, "threads"),
            (|c| c.max_batch = 0, "max_batch"),
            (|c| c.queue = 0, "queue"),
            (|c| c.score_threshold = f32::NAN, "score_threshold"),
            (|c| c.nms_iou = 0.0, "nms_iou"),
            (|c| c.max_wait = Duration::from_secs(5), "max_wait"),
        ];
        for (spoil, key) in cases {
            let mut c = ok.clone();
            spoil(&mut c);
            match c.validate() {
                Err(InferError::Config { key: k, .. }) => assert_eq!(k, key),
                other => panic!("{key}: {other:?}"),
            }
        }
    }

    #[test]
    fn provider_names_round_trip() {
        for p in [
            Provider::Cpu,
            Provider::Cuda,
            Provider::TensorRt,
            Provider::OpenVino,
        ] {
            assert_eq!(p.as_str().parse::<Provider>().ok(), Some(p));
        }
        assert!("gpu".parse::<Provider>().is_err());
    }
}
