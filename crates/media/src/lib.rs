//! Kordon's acquisition layer: where a camera's frames come from, for every service that
//! needs them.
//!
//! Ingest records the frames as they are; detection decodes them. Both open a camera through
//! the same [`Source`] (the `retina` crate, GStreamer's `rtspsrc` only for what retina cannot
//! do), so a camera behaves the same — transports, credentials, B-frames, loss, wall clock — in
//! the recording and in the detections. This crate sits below the services and knows none of
//! them: each maps its own configuration into a [`StreamConfig`] (which stream) and a
//! [`SourceConfig`] (how streams are opened, the reconnect policy).
//!
//! - [`source`] — the [`Source`] trait, [`Frame`], [`open`], and the pieces behind it
//!   ([`DecodeTimes`], [`LossGate`], [`WallClock`]).
//! - [`track`] — [`TrackInfo`]: codec, parameter sets, size, frame rate; [`TIMESCALE`].
//! - [`config`] — [`StreamConfig`], [`SourceConfig`], [`Transport`], [`RtspClient`],
//!   [`Backoff`], [`redact_url`].
//! - [`decode`] — decoding for analysis: [`Decoder`] (push frames, pull packed BGR
//!   [`DecodedFrame`]s at [`DecodeConfig::fps`], at most [`DecodeConfig::max_width`] wide) and
//!   [`run_decoded`], one camera's whole decode loop with reconnects and [`StreamState`]s.
//! - [`fmp4`] — the fragmented-MP4 segment writer: ingest records originals with it,
//!   transcode writes renditions and viewer copies with it.
//!
//! # Using it
//! ```no_run
//! # async fn demo() {
//! use std::sync::Arc;
//! use kordon_media::{
//!     DecodeConfig, DecodeCounters, DecodeEvent, OpenContext, SourceConfig, StreamConfig,
//!     Transport, run_decoded,
//! };
//! let stream = StreamConfig {
//!     name: "edirne-gate-1".into(),
//!     url: "rtsp://10.0.0.1/sub".into(),
//!     transport: Transport::Tcp,
//!     username: Some("viewer".into()),
//!     password: Some("secret".into()),
//! };
//! let counters = Arc::new(DecodeCounters::default());
//! let cancel = tokio_util::sync::CancellationToken::new();
//! run_decoded(
//!     stream,
//!     OpenContext::new(SourceConfig::default()),
//!     DecodeConfig { fps: 5.0, max_width: 1280 },
//!     counters.clone(),
//!     cancel,
//!     |event| match event {
//!         DecodeEvent::State(state) => println!("{}", state.as_str()),
//!         DecodeEvent::Frame(f) => println!("{}x{} at {}", f.width, f.height, f.pts),
//!     },
//! )
//! .await;
//! # }
//! ```
//!
//! [`open`] and [`Decoder::new`] initialise GStreamer themselves ([`init`], idempotent).

pub mod config;
pub mod decode;
pub mod error;
pub mod fmp4;
pub mod source;
pub mod track;

pub use config::{Backoff, RtspClient, SourceConfig, StreamConfig, Transport, redact_url};
pub use decode::{
    DecodeConfig, DecodeCounters, DecodeEvent, DecodedFrame, Decoder, SessionInfo, StreamState,
    run_decoded,
};
pub use error::MediaError;
pub use source::{
    DecodeTimes, Frame, LossGate, OpenContext, Source, SourceError, SourceKind, WallClock, choose,
    open,
};
pub use track::{Codec, TIMESCALE, TrackConfig, TrackInfo};

/// Initialises GStreamer (idempotent; cheap after the first call).
pub fn init() -> Result<(), MediaError> {
    gstreamer::init().map_err(|e| MediaError::Gstreamer(e.to_string()))
}
