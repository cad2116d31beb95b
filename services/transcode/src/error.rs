//! The transcode service's one error type, mapped once to gRPC status codes.

use tonic::Status;

#[derive(Debug, thiserror::Error)]
pub enum TranscodeError {
    /// A configuration value is invalid; `key` is its dotted path.
    #[error("{key}: {message}")]
    Config { key: String, message: String },
    /// A request is invalid; the message names the field.
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    /// The request is valid but the job's state does not allow it (cancelling a finished job).
    #[error("{0}")]
    FailedPrecondition(String),
    /// Temporarily impossible (storage or the bucket is down); a job retries.
    #[error("{0}")]
    Unavailable(String),
    /// The footage itself cannot be transcoded (a damaged segment, a codec with no decoder):
    /// retrying would fail the same way.
    #[error("{0}")]
    Media(String),
    /// The job was cancelled while it ran.
    #[error("cancelled")]
    Cancelled,
    #[error(transparent)]
    Db(#[from] kordon_db::DbError),
    #[error("transcode database: {0}")]
    Sqlx(#[from] sqlx::Error),
    #[error(transparent)]
    Objects(#[from] kordon_objects::ObjectsError),
    #[error("storage service: {}", .0.message())]
    Storage(#[from] Status),
}

impl TranscodeError {
    pub fn config(key: &str, message: impl Into<String>) -> Self {
        TranscodeError::Config {
            key: format!("transcode.{key}"),
            message: message.into(),
        }
    }

    /// Whether running the job again may succeed: an outage, not the footage or the spec.
    pub fn is_transient(&self) -> bool {
        match self {
            TranscodeError::Unavailable(_) | TranscodeError::Db(_) | TranscodeError::Sqlx(_) => {
                true
            }
            TranscodeError::Objects(o) => !o.is_not_found(),
            TranscodeError::Storage(s) => matches!(
                s.code(),
                tonic::Code::Unavailable
                    | tonic::Code::DeadlineExceeded
                    | tonic::Code::ResourceExhausted
                    | tonic::Code::Aborted
                    | tonic::Code::Unknown
                    | tonic::Code::Internal
            ),
            _ => false,
        }
    }
}

impl From<TranscodeError> for Status {
    fn from(e: TranscodeError) -> Status {
        match e {
            TranscodeError::Config { .. } => Status::failed_precondition(e.to_string()),
            TranscodeError::Invalid(m) => Status::invalid_argument(m),
            TranscodeError::NotFound(m) => Status::not_found(m),
            TranscodeError::FailedPrecondition(m) => Status::failed_precondition(m),
            TranscodeError::Unavailable(m) => Status::unavailable(m),
            TranscodeError::Media(m) => Status::failed_precondition(m),
            TranscodeError::Cancelled => Status::cancelled("the job was cancelled"),
            TranscodeError::Db(_) | TranscodeError::Sqlx(_) => {
                tracing::error!(error = %e, "transcode database error");
                Status::unavailable("transcode database unavailable")
            }
            TranscodeError::Objects(ref o) if o.is_not_found() => Status::not_found(e.to_string()),
            TranscodeError::Objects(_) => Status::unavailable(e.to_string()),
            // A storage refusal keeps its code (e.g. NOT_FOUND, PERMISSION_DENIED).
            TranscodeError::Storage(s) => s,
        }
    }
}
