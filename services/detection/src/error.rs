//! The detection service's one error type, mapped once to gRPC status codes.

use tonic::Status;

#[derive(Debug, thiserror::Error)]
pub enum DetectionError {
    /// A configuration value is invalid; `key` is its dotted path.
    #[error("{key}: {message}")]
    Config { key: String, message: String },
    /// A request is invalid; the message names the field.
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    /// Temporarily impossible (the store or storage is down, a snapshot is still uploading).
    #[error("{0}")]
    Unavailable(String),
    #[error(transparent)]
    Db(#[from] kordon_db::DbError),
    #[error("detection database: {0}")]
    Sqlx(#[from] sqlx::Error),
    #[error(transparent)]
    Objects(#[from] kordon_objects::ObjectsError),
    #[error("storage service: {0}")]
    Storage(#[from] Status),
}

impl DetectionError {
    pub fn config(key: &str, message: impl Into<String>) -> Self {
        DetectionError::Config {
            key: format!("detection.{key}"),
            message: message.into(),
        }
    }
}

impl From<DetectionError> for Status {
    fn from(e: DetectionError) -> Status {
        match e {
            DetectionError::Config { .. } => Status::failed_precondition(e.to_string()),
            DetectionError::Invalid(m) => Status::invalid_argument(m),
            DetectionError::NotFound(m) => Status::not_found(m),
            DetectionError::Unavailable(m) => Status::unavailable(m),
            DetectionError::Db(_) | DetectionError::Sqlx(_) => {
                tracing::error!(error = %e, "detection database error");
                Status::unavailable("detection database unavailable")
            }
            DetectionError::Objects(ref o) if o.is_not_found() => Status::not_found(e.to_string()),
            DetectionError::Objects(_) => Status::unavailable(e.to_string()),
            // A storage refusal keeps its code (e.g. PERMISSION_DENIED, INVALID_ARGUMENT).
            DetectionError::Storage(s) => s,
        }
    }
}
