//! The storage crate's one error type. [`crate::grpc`] maps it to gRPC codes (and HTTP status
//! for playback) in one table; internal detail (SQL, paths, store messages) is logged there and
//! never sent to a client.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The request is malformed; the message is for the caller and names the field.
    #[error("{0}")]
    InvalidArgument(String),

    /// Nothing matches (no such segment, nothing recorded in the range, ...).
    #[error("{0}")]
    NotFound(String),

    /// A registration conflicts with what is stored (same hash, different fields).
    #[error("{0}")]
    AlreadyExists(String),

    /// The caller may not do this (e.g. a partner asking for footage the agreement does not
    /// share); the message says why.
    #[error("{0}")]
    PermissionDenied(String),

    /// The system is not in the state the call needs (e.g. the object is not in the bucket).
    #[error("{0}")]
    FailedPrecondition(String),

    /// A valid request for something this version does not do yet.
    #[error("{0}")]
    Unimplemented(String),

    /// A playback token is malformed, forged or expired.
    #[error("playback token is invalid or expired")]
    BadToken,

    /// Too many concurrent writers on one chain; the caller may retry.
    #[error("{0}")]
    Contention(String),

    /// A service storage depends on for this call (the transcode service) cannot be reached
    /// now; a retry later may succeed. The message names it.
    #[error("{0}")]
    Unavailable(String),

    /// The caller went away (or the server is shutting down) before long work finished;
    /// nothing half-done is kept.
    #[error("{0}")]
    Cancelled(String),

    /// A configuration value is wrong; `key` is the dotted key.
    #[error("invalid configuration: `{key}`: {message}")]
    Config { key: String, message: String },

    #[error("index database: {0}")]
    Database(#[from] sqlx::Error),

    #[error("index migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),

    #[error("object storage: {0}")]
    Objects(#[from] kordon_objects::ObjectsError),

    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A broken invariant (e.g. a stored hash of the wrong length): never the caller's fault.
    #[error("internal: {0}")]
    Internal(String),
}

impl StorageError {
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::InvalidArgument(message.into())
    }

    pub fn config(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Config {
            key: key.into(),
            message: message.into(),
        }
    }
}

impl From<kordon_db::DbError> for StorageError {
    fn from(e: kordon_db::DbError) -> Self {
        match e {
            kordon_db::DbError::Url(m) => StorageError::config("database_url", m),
            kordon_db::DbError::Sqlx(e) => StorageError::Database(e),
            kordon_db::DbError::Migrate(e) => StorageError::Migrate(e),
        }
    }
}

impl From<object_store::Error> for StorageError {
    fn from(e: object_store::Error) -> Self {
        Self::Objects(e.into())
    }
}
