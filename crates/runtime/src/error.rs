//! The runtime's one error type.

use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// A configuration value is missing or wrong; `key` is the dotted config key.
    #[error("invalid configuration: `{key}`: {message}")]
    Config { key: String, message: String },

    #[error("cannot read {path}: {source}")]
    ReadFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },

    #[error("gRPC server failed: {0}")]
    Serve(#[from] tonic::transport::Error),

    #[error("admin server failed: {0}")]
    Admin(#[source] std::io::Error),

    #[error("cannot reach {server}: {message}")]
    Connect { server: String, message: String },

    #[error("telemetry setup failed: {0}")]
    Telemetry(String),
}

impl RuntimeError {
    pub fn config(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Config {
            key: key.into(),
            message: message.into(),
        }
    }
}
