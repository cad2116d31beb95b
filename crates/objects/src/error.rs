//! The crate's one error type.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ObjectsError {
    /// A configuration value is wrong; `key` is the dotted key inside the object-store section.
    #[error("invalid object store configuration: `{key}`: {message}")]
    Config { key: String, message: String },

    /// A site or camera name cannot be part of an object key.
    #[error("invalid {what} `{value}`: {why}")]
    InvalidName {
        what: &'static str,
        value: String,
        why: &'static str,
    },

    /// A time cannot be placed in the key layout (before 1970 or past year 9999).
    #[error("time {0} µs is outside the supported range (1970..10000)")]
    TimeOutOfRange(i64),

    #[error("cannot create {path}: {source}")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// Reading or linking a local file failed ([`crate::immutable::link_immutable`]).
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The bytes handed to [`crate::put_immutable`] do not hash to the expected SHA-256.
    #[error("payload for `{key}` has SHA-256 {actual}, expected {expected}")]
    PayloadMismatch {
        key: String,
        expected: String,
        actual: String,
    },

    /// A different object already exists under the key: nothing was written.
    #[error("`{key}` already holds a different object (SHA-256 {existing}, expected {expected})")]
    ConflictingObject {
        key: String,
        expected: String,
        existing: String,
    },

    /// The object store failed (network, permissions, missing object, ...).
    #[error("object store: {0}")]
    Store(#[from] object_store::Error),
}

impl ObjectsError {
    pub fn config(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Config {
            key: key.into(),
            message: message.into(),
        }
    }

    /// Whether the error means "no such object".
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::Store(object_store::Error::NotFound { .. }))
    }
}
