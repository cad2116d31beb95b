//! The crate's one error type. Every variant says whether retrying can help
//! ([`InferError::is_transient`]); none carries a path or library message to a remote client
//! unless the caller chooses to show it.

use std::path::PathBuf;
use std::sync::Arc;

/// What can go wrong loading the detector or running it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum InferError {
    /// A configuration value is out of range; `key` names it.
    #[error("invalid detector configuration `{key}`: {reason}")]
    Config {
        key: &'static str,
        reason: &'static str,
    },
    /// No ONNX Runtime library was found.
    #[error(
        "ONNX Runtime library not found (looked at: {searched}); set ORT_DYLIB_PATH (or the \
         detector's `library` setting) to libonnxruntime.so, or install it into the project venv \
         with `source scripts/lib.sh && install_python_tools` (the onnxruntime 1.32 wheel from PyPI \
         carries onnxruntime/capi/libonnxruntime.so.1.32.0)"
    )]
    LibraryNotFound { searched: String },
    /// The ONNX Runtime library exists but could not be loaded.
    #[error("cannot load the ONNX Runtime library {path}: {source}")]
    LibraryLoad {
        path: PathBuf,
        #[source]
        source: Arc<ort::LoadDynamicError>,
    },
    /// The model file could not be read.
    #[error("cannot read the model {path}: {source}")]
    ModelRead {
        path: PathBuf,
        #[source]
        source: Arc<std::io::Error>,
    },
    /// The model is not the detector this crate decodes (inputs/outputs of unexpected shape).
    #[error("unsupported model: {reason}")]
    ModelShape { reason: String },
    /// ONNX Runtime refused an operation (`context` says which).
    #[error("ONNX Runtime failed to {context}: {source}")]
    Runtime {
        context: &'static str,
        #[source]
        source: Arc<ort::Error>,
    },
    /// The frame handed in is inconsistent (size, stride, buffer length).
    #[error("bad image: {reason}")]
    BadImage { reason: &'static str },
    /// The inference queue is full; the frame was dropped (counted in the drop metric).
    #[error("inference queue full; frame dropped")]
    QueueFull,
    /// The engine's inference thread has stopped.
    #[error("inference engine stopped")]
    Stopped,
}

impl InferError {
    /// Whether the same call may succeed later (a full queue drains; nothing else heals itself).
    pub fn is_transient(&self) -> bool {
        matches!(self, InferError::QueueFull)
    }

    pub(crate) fn runtime(context: &'static str) -> impl FnOnce(ort::Error) -> InferError {
        move |e| InferError::Runtime {
            context,
            source: Arc::new(e),
        }
    }
}
