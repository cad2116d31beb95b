//! The operator's one error type.

/// Why a reconcile or the operator itself failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A call to the Kubernetes API failed.
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),

    /// The finalizer helper failed (adding or removing the finalizer, or the wrapped step).
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),

    /// A resource lacks something the API server always sets (name, namespace, uid).
    #[error("resource has no {0}")]
    MissingField(&'static str),

    /// A rendered object could not be serialised.
    #[error("rendering {what}: {message}")]
    Render { what: String, message: String },

    /// The operator's configuration is invalid; `key` names the setting.
    #[error("invalid configuration `{key}`: {message}")]
    Config { key: String, message: String },

    /// A site's CA or a certificate could not be made or read.
    #[error("certificates: {0}")]
    Certificate(String),

    /// Leader election could not proceed.
    #[error("leader election: {0}")]
    Lease(String),

    /// A Site's `spec.auth` token keys cannot be read (the ConfigMap and key are named).
    #[error("people's sign-in keys: {0}")]
    AuthKeys(String),
}

impl Error {
    pub fn config(key: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Config {
            key: key.into(),
            message: message.into(),
        }
    }

    /// A short, fixed label for metrics (never the error text).
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(kube::Error::Api(s)) if s.code == 409 => "conflict",
            Error::Kube(kube::Error::Api(s)) if s.code == 404 => "not_found",
            Error::Kube(kube::Error::Api(s)) if s.code == 403 => "forbidden",
            Error::Kube(kube::Error::Api(s)) if s.code == 422 => "invalid",
            Error::Kube(kube::Error::Api(_)) => "api",
            Error::Kube(_) => "transport",
            Error::Finalizer(inner) => match inner.as_ref() {
                kube::runtime::finalizer::Error::ApplyFailed(e)
                | kube::runtime::finalizer::Error::CleanupFailed(e) => e.metric_label(),
                _ => "finalizer",
            },
            Error::MissingField(_) => "missing_field",
            Error::Render { .. } => "render",
            Error::Config { .. } => "config",
            Error::Certificate(_) => "certificate",
            Error::Lease(_) => "lease",
            Error::AuthKeys(_) => "auth_keys",
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
