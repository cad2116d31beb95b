//! The alerting service's one error type, mapped once to gRPC status codes.

use tonic::Status;

#[derive(Debug, thiserror::Error)]
pub enum AlertingError {
    /// A configuration value is invalid; `key` is its dotted path.
    #[error("{key}: {message}")]
    Config { key: String, message: String },
    /// A request is invalid; the message names the field.
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    /// The object is not in a state that allows it (a resolved alert, a managed rule).
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    PermissionDenied(String),
    /// `expected_version` did not match.
    #[error("{0}")]
    Aborted(String),
    /// A cursor or time before what is kept.
    #[error("{0}")]
    OutOfRange(String),
    #[error("{0}")]
    Unavailable(String),
    /// A stored row that does not decode: a bug or a damaged database, never the caller's.
    #[error("alerting database holds a damaged record: {0}")]
    Corrupt(String),
    /// The caller may not do this (on this site).
    #[error(transparent)]
    Auth(#[from] kordon_runtime::auth::AuthError),
    #[error(transparent)]
    Db(#[from] kordon_db::DbError),
    #[error("alerting database: {0}")]
    Sqlx(#[from] sqlx::Error),
}

impl AlertingError {
    /// A shared configuration error (e.g. of the top-level `partners:` section), key as is.
    pub fn runtime(e: kordon_runtime::RuntimeError) -> Self {
        match e {
            kordon_runtime::RuntimeError::Config { key, message } => {
                AlertingError::Config { key, message }
            }
            other => AlertingError::Config {
                key: "partners".into(),
                message: other.to_string(),
            },
        }
    }

    pub fn config(key: &str, message: impl Into<String>) -> Self {
        AlertingError::Config {
            key: format!("alerting.{key}"),
            message: message.into(),
        }
    }
}

impl From<AlertingError> for Status {
    fn from(e: AlertingError) -> Status {
        match e {
            AlertingError::Config { .. } => Status::failed_precondition(e.to_string()),
            AlertingError::Invalid(m) => Status::invalid_argument(m),
            AlertingError::NotFound(m) => Status::not_found(m),
            AlertingError::AlreadyExists(m) => Status::already_exists(m),
            AlertingError::FailedPrecondition(m) => Status::failed_precondition(m),
            AlertingError::Aborted(m) => Status::aborted(m),
            AlertingError::OutOfRange(m) => Status::out_of_range(m),
            AlertingError::Unavailable(m) => Status::unavailable(m),
            AlertingError::Auth(a) => a.into(),
            AlertingError::PermissionDenied(m) => Status::permission_denied(m),
            AlertingError::Corrupt(_) | AlertingError::Db(_) | AlertingError::Sqlx(_) => {
                tracing::error!(error = %e, "alerting database error");
                Status::unavailable("alerting database unavailable")
            }
        }
    }
}
