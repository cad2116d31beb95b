//! Kordon's object detector: NanoDet-m 416 (80 COCO classes) through ONNX Runtime, with one
//! batched inference queue per process. Proto-free; the detection service maps it to its API.
//!
//! # API
//! - [`Engine::start`]`(EngineConfig) -> Result<Engine, InferError>` loads ONNX Runtime and the
//!   model on a dedicated inference thread. [`Engine`] is `Clone` (an `Arc`); every clone feeds
//!   the same bounded queue.
//! - [`Engine::detect`]`(&self, OwnedImage) -> Result<Vec<Detection>, InferError>` (async): one
//!   packed BGR8 frame in, its detections out. The thread batches frames from all callers (up to
//!   `max_batch` or `max_wait`) into one session call.
//! - [`Engine::info`] → [`ModelInfo`] (name, SHA-256, input size, labels, batch);
//!   [`Engine::provider`] → the execution provider that actually runs (`cpu` after a fallback).
//! - [`Detector`]: the same work, synchronous, for one caller (benchmarks, tests):
//!   [`Detector::detect_batch`]`(&mut self, &[Image]) -> Result<Vec<Vec<Detection>>, InferError>`.
//! - [`Detection`]: class id, COCO label, score, box `x1,y1,x2,y2` normalised to 0..1 in the
//!   original frame.
//!
//! # Guarantees and assumptions
//! - Pre-processing: bilinear letterbox into the model's input (aspect kept, centred, black
//!   padding), BGR planes normalised by the model's mean and deviation ([`preprocess`]).
//! - Post-processing: softmax-expectation box decode, pre-NMS score threshold, greedy NMS per class
//!   ([`postprocess`]).
//! - A batch of frames gives the same detections as the frames one by one (the vendored model has
//!   a symbolic batch, verified by `scripts/nanodet_batch.py`; a model with a fixed batch of 1 is
//!   run at batch 1).
//! - The ONNX Runtime library is loaded at run time (`ort` with `load-dynamic`) from
//!   [`EngineConfig::library`], `ORT_DYLIB_PATH`, or the project venv; a missing library is
//!   [`InferError::LibraryNotFound`], which says how to install it. A requested execution provider
//!   the library lacks is logged and replaced by CPU.
//! - Metrics (`kordon_detection_*`, labelled by provider) go to the process registry of
//!   `kordon-runtime`.

pub mod config;
mod detector;
mod engine;
pub mod error;
pub mod image;
mod metrics;
pub mod model;
pub mod postprocess;
pub mod preprocess;
mod session;

pub use config::{EngineConfig, Provider};
pub use detector::Detector;
pub use engine::Engine;
pub use error::InferError;
pub use image::{Image, OwnedImage};
pub use model::{COCO_LABELS, Detection, ModelInfo};

/// The vendored model, relative to the workspace root.
pub const MODEL_PATH: &str = "assets/models/nanodet-m-416-dynbatch.onnx";
