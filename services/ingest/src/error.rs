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

    /// The storage service failed in a way a retry may cure (unreachable, overloaded, busy).
    #[error("storage service: {0}")]
    Storage(String),

    /// Storage (or the spool itself) refused a record for good: retrying cannot succeed, so
    /// the record goes to the dead-letter folder and its camera's queue goes on.
    #[error("refused ({}): {message}", class.as_str())]
    Refused { class: Refusal, message: String },

    #[error("internal error: {0}")]
    Internal(String),
}

/// Why a spooled record can never be registered; the label of
/// `kordon_ingest_dead_letter_total` (a fixed, small set).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// Storage says the request is malformed (`INVALID_ARGUMENT`).
    InvalidArgument,
    /// Storage holds a different record or object under the same identity (`ALREADY_EXISTS`,
    /// or a different object under the key).
    Conflict,
    /// Ingest may not register this camera (`PERMISSION_DENIED`).
    PermissionDenied,
    /// Storage's state contradicts the record (`FAILED_PRECONDITION` other than a missing
    /// object), or storage does not support it (`UNIMPLEMENTED`).
    FailedPrecondition,
    /// The spool entry itself is unusable: media missing or not matching its metadata, or an
    /// unreadable or unknown file format.
    CorruptSpool,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::InvalidArgument => "invalid_argument",
            Refusal::Conflict => "conflict",
            Refusal::PermissionDenied => "permission_denied",
            Refusal::FailedPrecondition => "failed_precondition",
            Refusal::CorruptSpool => "corrupt_spool",
        }
    }
}

impl IngestError {
    pub fn refused(class: Refusal, message: impl Into<String>) -> Self {
        IngestError::Refused {
            class,
            message: message.into(),
        }
    }

    /// A storage service answer as an error: permanent refusals typed as [`Refusal`], the rest
    /// transient ([`IngestError::Storage`], retried with backoff).
    pub fn from_storage_status(s: &tonic::Status) -> Self {
        use tonic::Code;
        let class = match s.code() {
            Code::InvalidArgument | Code::OutOfRange => Some(Refusal::InvalidArgument),
            // Storage answers ALREADY_EXISTS only when the stored record differs; an identical
            // one is success (ALREADY_PRESENT).
            Code::AlreadyExists => Some(Refusal::Conflict),
            Code::PermissionDenied => Some(Refusal::PermissionDenied),
            // "Not in the bucket yet" is cured by writing the object again; a size mismatch
            // and the like are not.
            Code::FailedPrecondition if !s.message().contains("not in the bucket") => {
                Some(Refusal::FailedPrecondition)
            }
            Code::Unimplemented => Some(Refusal::FailedPrecondition),
            // Unavailable, DeadlineExceeded, Aborted, ResourceExhausted, Cancelled, Unknown
            // (transport failures), Internal, NotFound (an object not yet visible),
            // Unauthenticated (certificates being rotated): a retry may help.
            _ => None,
        };
        let message = format!("{:?}: {}", s.code(), s.message());
        match class {
            Some(class) => IngestError::Refused { class, message },
            None => IngestError::Storage(message),
        }
    }

    /// Whether retrying can never succeed.
    pub fn is_permanent(&self) -> bool {
        matches!(self, IngestError::Refused { .. })
    }

    /// Whether the local spool could not be written (a full disk, an I/O error): the
    /// process's problem, not the camera's.
    pub fn is_spool_write(&self) -> bool {
        use crate::fmp4::Fmp4Error;
        matches!(
            self,
            IngestError::Spool { .. } | IngestError::Segment(Fmp4Error::Io(_) | Fmp4Error::Failed)
        )
    }

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

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::{Code, Status};

    #[test]
    fn storage_answers_are_permanent_only_when_a_retry_cannot_help() {
        let permanent = [
            (
                Status::invalid_argument("detail: at most 1024 bytes"),
                Refusal::InvalidArgument,
            ),
            (Status::already_exists("different end"), Refusal::Conflict),
            (Status::permission_denied("no"), Refusal::PermissionDenied),
            (
                Status::failed_precondition("object `k` has 3 bytes, the request says 4"),
                Refusal::FailedPrecondition,
            ),
        ];
        for (s, class) in permanent {
            match IngestError::from_storage_status(&s) {
                IngestError::Refused { class: c, .. } => assert_eq!(c, class, "{s:?}"),
                other => panic!("{s:?} gave {other:?}"),
            }
        }
        let transient = [
            Status::unavailable("down"),
            Status::deadline_exceeded("slow"),
            Status::aborted("contention"),
            Status::resource_exhausted("busy"),
            Status::new(Code::Unknown, "transport error"),
            Status::failed_precondition("object `k` is not in the bucket: write it first"),
        ];
        for s in transient {
            let e = IngestError::from_storage_status(&s);
            assert!(!e.is_permanent(), "{s:?} gave {e:?}");
        }
    }
}
