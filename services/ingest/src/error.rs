//! The ingest crate's one error type, and its mapping to gRPC codes.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("invalid configuration: `{key}`: {message}")]
    Config { key: String, message: String },

    #[error("spool I/O on {path}: {source}")]
    Spool {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("GStreamer: {0}")]
    Gstreamer(String),

    #[error("camera {0} is not in this shard")]
    UnknownCamera(String),

    #[error("invalid request: {0}")]
    InvalidArgument(String),

    #[error("segment writer: {0}")]
    Segment(#[from] crate::fmp4::Fmp4Error),

    #[error("object storage: {0}")]
    Objects(String),

    #[error("storage service: {0}")]
    Storage(String),

    #[error("internal error: {0}")]
    Internal(String),
}

impl IngestError {
    pub fn spool(path: &Path, source: std::io::Error) -> Self {
        IngestError::Spool {
            path: path.to_path_buf(),
            source,
        }
    }
}

impl From<IngestError> for tonic::Status {
    fn from(e: IngestError) -> Self {
        match &e {
            IngestError::Config { .. } | IngestError::InvalidArgument(_) => {
                tonic::Status::invalid_argument(e.to_string())
            }
            IngestError::UnknownCamera(_) => tonic::Status::not_found(e.to_string()),
            // Paths and library messages stay in the logs.
            _ => {
                tracing::error!(error = %e, "ingest request failed");
                tonic::Status::internal("ingest failed; see the ingest logs")
            }
        }
    }
}
