//! Simulated RTSP cameras for demos, tests and benchmarks.
//!
//! `kordon-camsim` serves N simulated cameras over RTSP (gst-rtsp-server):
//! `rtsp://<listen>/cam<i>/main` (1920x1080, ~4 Mbit/s) and `rtsp://<listen>/cam<i>/sub`
//! (640x360, ~512 kbit/s), both 25 fps, H.264 or H.265, for `i` in `1..=N`.
//!
//! # Guarantees
//! - **Encode once.** Each variant (source, codec, resolution, bitrate; for the test pattern also
//!   the camera name) is encoded once, written to a cache directory and reused on later runs. At
//!   run time the encoded access units live in memory and are fed, as shallow copies with new
//!   timestamps, through `appsrc ! rtph26xpay`: no decoding or encoding while serving.
//! - **Shared pipelines.** A *channel* (one such pipeline) serves every client of every camera
//!   mounted on it; the RTP packets are made once and written to each client. The clip's
//!   cameras share `CLIP_PHASES` (5) channels per stream kind, each at another point of the loop
//!   (camera `i` on phase `(i - 1) % 5`); each pattern camera has its own. This is what lets one
//!   core serve hundreds of 1080p cameras (`bench/cpu.sh`).
//! - **Seamless loop.** Every variant is a closed-GOP stream (a keyframe every 2 s; no B-frames
//!   unless `--bframes N` asks for them, in a fixed pattern, decode order then differing from
//!   presentation order as with many real cameras) whose first frame is a keyframe. At the loop point the timestamps simply continue
//!   (loop `n` adds `n` times the loop duration): no EOS, no timestamp jump, no discontinuity.
//! - **Live-like.** A channel starts at the keyframe at or before its current position; a client
//!   joining a running channel gets the packets from then on and, like with a real camera,
//!   decodes from the next keyframe (at most 2 s later).
//! - **Faults on demand, per camera.** [`CamsimHandle`] and the HTTP control endpoint
//!   ([`control`]) stop a camera (its clients get an RTCP BYE, i.e. EOS, and are disconnected;
//!   new requests get `404 Not Found`), start it again, or stall it (sessions stay open, no media
//!   flows; clients joining during the stall wait too). Faults act on the camera's client
//!   transports, so other cameras on the same channel are unaffected. After a stall the media
//!   goes on where the camera is by then: RTP timestamps and sequence numbers jump forward.
//! - **Transport.** RTP over TCP or UDP, as the client asks; `--refuse-tcp` answers a SETUP for
//!   TCP with `461 Unsupported Transport`, like cameras that stream over UDP only.

//! # Sources
//! - `clip`: the vendored street clip (`assets/footage/bikes.mp4`, 640x272, 10 s, embedded in the
//!   binary), letterboxed to 16:9, or any clip given with `--clip`.
//! - `pattern`: SMPTE bars with the camera name, stream and a clock burnt in. The clock shows the
//!   *loop's* running time (`00:00:00.000` to `00:00:09.960`, then again), not wall-clock time:
//!   the pattern is encoded once per camera and replayed, so it cannot show the time of day.
//!
//! # Assumes
//! GStreamer 1.22 or newer with the base, good, bad and ugly plugins (`x264enc`, `x265enc`,
//! `h264parse`, `h265parse`, `rtph264pay`, `rtph265pay`, `videotestsrc`, a decoder for the clip).

mod camera;
mod config;
pub mod control;
mod encode;
mod error;
mod feeder;
mod media;
mod pattern;
mod rtsp;
mod server;

pub use camera::{CameraState, CameraStatus, StreamStatus};
pub use config::{
    CamsimArgs, CamsimConfig, ClipSource, Codec, DEFAULT_CAMERAS, DEFAULT_CONTROL_LISTEN,
    DEFAULT_LISTEN, MAX_CAMERAS, Source, StreamKind, default_cache_dir,
};
pub use error::CamsimError;
pub use server::{Camsim, CamsimHandle};

use tokio_util::sync::CancellationToken;

/// Serves the simulated cameras described by `args` (RTSP and the HTTP control endpoint) until
/// `shutdown` is cancelled, then disconnects every client and returns.
pub async fn run(args: CamsimArgs, shutdown: CancellationToken) -> Result<(), CamsimError> {
    let config = CamsimConfig::try_from(args)?;
    let handle = Camsim::start(config).await?;
    for status in handle.cameras() {
        for stream in &status.streams {
            tracing::debug!(camera = %status.name, url = %stream.url, "serving");
        }
    }
    tracing::info!(
        cameras = handle.camera_count(),
        rtsp = %handle.rtsp_addr(),
        control = ?handle.control_addr(),
        "camsim ready: rtsp://{}/cam<i>/main and /cam<i>/sub",
        handle.rtsp_addr()
    );
    shutdown.cancelled().await;
    tracing::info!("camsim shutting down");
    handle.shutdown().await;
    Ok(())
}
