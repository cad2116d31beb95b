//! The media crate's one error type.

/// What can go wrong building or running a media pipeline (not a camera session: that is
/// [`SourceError`](crate::SourceError), which says whether a retry helps).
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    #[error("invalid configuration: `{key}`: {message}")]
    Config { key: String, message: String },

    #[error("GStreamer: {0}")]
    Gstreamer(String),

    /// The decoder refused the stream or failed on it.
    #[error("decoder: {0}")]
    Decode(String),

    #[error("internal error: {0}")]
    Internal(String),
}
