use std::{io, net::SocketAddr, path::PathBuf};

/// Everything that can go wrong in the camera simulator.
#[derive(Debug, thiserror::Error)]
pub enum CamsimError {
    /// A configuration value is out of range; `key` names the command-line option.
    #[error("invalid value for {key}: {message}")]
    InvalidConfig { key: &'static str, message: String },

    /// The clip to loop cannot be read.
    #[error("cannot read the clip {path} (choose another with --clip): {source}")]
    Clip {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// GStreamer could not be initialised.
    #[error("cannot initialise GStreamer: {0}")]
    GstInit(#[source] gstreamer::glib::Error),

    /// A GStreamer element the simulator needs is not installed.
    #[error("GStreamer element `{0}` is not installed (install the plugin that provides it)")]
    MissingElement(String),

    /// The one-time encode of a variant failed.
    #[error("encoding {variant} failed: {message}")]
    Encode { variant: String, message: String },

    /// The encode cache could not be read or written.
    #[error("encode cache {path}: {source}")]
    Cache {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// A listening socket could not be opened.
    #[error("cannot listen for {what} on {addr}: {message}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        message: String,
    },

    /// The RTSP server could not be set up.
    #[error("RTSP server: {0}")]
    Server(String),

    /// No camera has this number.
    #[error("no camera {index} (cameras are numbered 1 to {cameras})")]
    UnknownCamera { index: usize, cameras: usize },

    /// The operation needs a running camera.
    #[error("camera {index} is stopped")]
    CameraStopped { index: usize },

    /// A background thread or task could not be run.
    #[error("cannot run {what}: {message}")]
    Runtime { what: &'static str, message: String },
}
