//! What a stream is: its codec, parameter sets, picture size and frame rate.
//!
//! One [`TrackInfo`] travels with every [`Frame`](crate::Frame) (shared, `Arc`); a new value
//! means the camera changed its parameters. The codec data is the `avcC`/`hvcC` record exactly
//! as GStreamer's `codec_data` caps field carries it, so it feeds an MP4 sample entry (ingest)
//! and a decoder's `stream-format=avc|hvc1` caps (detection) unchanged.

use serde::{Deserialize, Serialize};

use crate::MediaError;

/// Ticks per second of every timestamp a source hands out (RTP's video clock).
pub const TIMESCALE: u32 = 90_000;

/// Video codec of a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Codec {
    /// H.264/AVC: `avcC` codec data, `stream-format=avc`.
    H264,
    /// H.265/HEVC: `hvcC` codec data, `stream-format=hvc1`.
    H265,
}

impl Codec {
    pub fn as_str(self) -> &'static str {
        match self {
            Codec::H264 => "h264",
            Codec::H265 => "h265",
        }
    }
}

/// The one video track of a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackConfig {
    pub codec: Codec,
    /// The `avcC` or `hvcC` record exactly as in GStreamer's `codec_data` caps field.
    pub codec_data: Vec<u8>,
    /// Picture width in pixels (1..=65535).
    pub width: u32,
    /// Picture height in pixels (1..=65535).
    pub height: u32,
    /// Ticks per second of every timestamp and duration, e.g. 90 000.
    pub timescale: u32,
}

/// The stream's format, as a source reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct TrackInfo {
    pub track: TrackConfig,
    pub codec_name: &'static str,
    /// Frames per second the stream declares; 0 when it does not.
    pub fps: f64,
}

impl TrackInfo {
    /// Reads codec, codec data, size and frame rate from parsed H.264/H.265 caps.
    pub fn from_caps(caps: &gstreamer::CapsRef) -> Result<TrackInfo, MediaError> {
        let s = caps
            .structure(0)
            .ok_or_else(|| MediaError::Gstreamer("caps without structure".into()))?;
        let codec = match s.name().as_str() {
            "video/x-h264" => Codec::H264,
            "video/x-h265" => Codec::H265,
            other => {
                return Err(MediaError::Gstreamer(format!(
                    "unsupported stream format {other}"
                )));
            }
        };
        let codec_data = s
            .get::<gstreamer::Buffer>("codec_data")
            .map_err(|_| MediaError::Gstreamer("stream has no codec data (SPS/PPS) yet".into()))?;
        let codec_data = codec_data
            .map_readable()
            .map_err(|_| MediaError::Gstreamer("codec data not readable".into()))?
            .to_vec();
        let width = s.get::<i32>("width").unwrap_or(0).max(0) as u32;
        let height = s.get::<i32>("height").unwrap_or(0).max(0) as u32;
        let fps = s
            .get::<gstreamer::Fraction>("framerate")
            .ok()
            .filter(|f| f.denom() > 0 && f.numer() > 0)
            .map(|f| f.numer() as f64 / f.denom() as f64)
            .unwrap_or(0.0);
        Ok(TrackInfo {
            track: TrackConfig {
                codec,
                codec_data,
                width,
                height,
                timescale: TIMESCALE,
            },
            codec_name: codec.as_str(),
            fps,
        })
    }
}
