//! Decoding a camera's stream for analysis (detection): packed BGR pictures at a few frames per
//! second, from the same [`Source`] ingest records from — no second RTSP client.
//!
//! # API
//! - [`Decoder`] — one session's decoder: [`Decoder::push`] every [`Frame`] the source yields
//!   (non-blocking), [`Decoder::pull`] the [`DecodedFrame`]s that are ready (non-blocking),
//!   [`Decoder::ready`] to wait for the next one.
//! - [`run_decoded`] — the whole loop for one camera: opens the source, decodes, hands each
//!   picture to a callback, reconnects with the acquisition layer's [`Backoff`] and reports
//!   [`StreamState`] changes, until cancelled. [`DecodeCounters`] count decoded and analysed
//!   frames (for `decoded_fps`/`analysed_fps` in a detector's status) and describe the latest
//!   session ([`SessionInfo`]: client, transport, codec, size, stream fps).
//!
//! # Pipeline
//! `appsrc (video/x-h264,stream-format=avc | video/x-h265,stream-format=hvc1; alignment=au;
//! codec_data from the frame's TrackInfo) ! decodebin ! videoconvert ! videoscale !
//! video/x-raw,format=BGR,width=[1,max_width],pixel-aspect-ratio=1/1 ! appsink`.
//! `decodebin` picks the best decoder present (hardware where the host has one). The frames
//! are pushed exactly as the source gives them (length-prefixed NAL units, parameter sets in
//! the caps), with the source's decode and presentation times.
//!
//! # What it guarantees
//! - **Every frame is decoded** (a GOP needs all of them); only frames picked for analysis are
//!   converted and scaled: a frame is picked when its presentation time reaches the next
//!   `1/fps` boundary ([`FramePicker`]), so the analysed rate is `min(fps, stream fps)` by the
//!   stream's own clock, whatever the load.
//! - Pictures are at most `max_width` wide, scaled down keeping the aspect ratio (never up),
//!   packed BGR8 with `stride == width * 3`.
//! - `pts` is the frame's presentation time on the source's 90 kHz timeline, `wall_clock` the
//!   source's wall-clock time of that frame.
//! - Nothing blocks the async runtime: pushing and pulling only queue and dequeue (GStreamer
//!   decodes on its own streaming thread); building and stopping a pipeline happen in
//!   `spawn_blocking`.
//! - When decoding falls behind by more than [`MAX_QUEUED`] frames, frames are dropped until the
//!   next keyframe (a whole GOP skipped, never a damaged picture); counted in
//!   [`DecodeCounters::dropped`].
//! - Credentials never appear in a [`StreamState`]'s error text.
//!
//! # What it assumes
//! - GStreamer with `decodebin` and a decoder for the stream's codec (`avdec_h264`,
//!   `avdec_h265` from gst-libav here).
//! - One [`Decoder`] per source session: a reconnect starts a new timeline and a new decoder.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::config::OFFLINE_AFTER_FAILURES;
use crate::source::{self, Frame, OpenContext, Source, SourceError, SourceKind};
use crate::track::{Codec, TIMESCALE, TrackInfo};
use crate::{Backoff, MediaError, StreamConfig, Transport};

/// Analysed frames per second by default.
pub const DEFAULT_FPS: f64 = 5.0;
/// Most analysed frames per second.
pub const MAX_FPS: f64 = 15.0;
/// Pictures wider than this are scaled down by default.
pub const DEFAULT_MAX_WIDTH: u32 = 1280;
/// Frames waiting to be decoded before the decoder is considered behind (about 2.5 s at 25 fps).
pub const MAX_QUEUED: u64 = 64;
/// Decoded pictures waiting to be pulled; older ones are dropped beyond this.
const MAX_READY: u32 = 8;

/// How a stream is decoded for analysis.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DecodeConfig {
    /// Analysed frames per second, `(0, MAX_FPS]`.
    pub fps: f64,
    /// Pictures wider than this are scaled down, keeping the aspect ratio (`16..=7680`).
    pub max_width: u32,
}

impl Default for DecodeConfig {
    fn default() -> Self {
        DecodeConfig {
            fps: DEFAULT_FPS,
            max_width: DEFAULT_MAX_WIDTH,
        }
    }
}

impl DecodeConfig {
    /// Checks the values; errors name the key under `prefix` (e.g. `detection.decode`).
    pub fn validate(&self, prefix: &str) -> Result<(), MediaError> {
        if !(self.fps.is_finite() && self.fps > 0.0 && self.fps <= MAX_FPS) {
            return Err(MediaError::Config {
                key: format!("{prefix}.fps"),
                message: format!("must be more than 0 and at most {MAX_FPS}"),
            });
        }
        if !(16..=7680).contains(&self.max_width) {
            return Err(MediaError::Config {
                key: format!("{prefix}.max_width"),
                message: "must be between 16 and 7680".into(),
            });
        }
        Ok(())
    }
}

/// One decoded picture, packed BGR8.
#[derive(Clone)]
pub struct DecodedFrame {
    /// Wall-clock time of the frame (the source's, see [`Frame::wall_clock`]).
    pub wall_clock: SystemTime,
    /// Presentation time, 90 kHz ticks on the source session's timeline.
    pub pts: i64,
    pub width: u32,
    pub height: u32,
    /// Bytes per row; always `width * 3`.
    pub stride: usize,
    /// `height` rows of `width` pixels, 3 bytes each (blue, green, red).
    pub bgr: Bytes,
}

impl std::fmt::Debug for DecodedFrame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DecodedFrame")
            .field("wall_clock", &self.wall_clock)
            .field("pts", &self.pts)
            .field("width", &self.width)
            .field("height", &self.height)
            .field("stride", &self.stride)
            .field("bgr", &format_args!("{} bytes", self.bgr.len()))
            .finish()
    }
}

/// Frame counts of one camera's decoding, cumulative; share it (`Arc`) with whatever reports
/// status and take differences over time for rates. [`run_decoded`] also records here what
/// the latest session receives ([`DecodeCounters::session`]).
#[derive(Debug, Default)]
pub struct DecodeCounters {
    decoded: AtomicU64,
    analysed: AtomicU64,
    dropped: AtomicU64,
    session: Mutex<Option<SessionInfo>>,
}

/// What a session of [`run_decoded`] receives, for a detector's status.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionInfo {
    /// Which RTSP client opened the stream.
    pub source: SourceKind,
    pub transport: Transport,
    pub codec: Codec,
    /// The stream's own picture size (before scaling) and declared frame rate (0 if none).
    pub width: u32,
    pub height: u32,
    pub fps: f64,
}

impl DecodeCounters {
    /// The latest session's stream, once its first frame arrived; kept after the session ends.
    pub fn session(&self) -> Option<SessionInfo> {
        self.session.lock().ok().and_then(|s| s.clone())
    }

    fn set_session(&self, info: SessionInfo) {
        if let Ok(mut s) = self.session.lock() {
            *s = Some(info);
        }
    }

    /// Frames the decoder turned into pictures.
    pub fn decoded(&self) -> u64 {
        self.decoded.load(Ordering::Relaxed)
    }

    /// Pictures handed on for analysis (at most `fps` per second of stream time).
    pub fn analysed(&self) -> u64 {
        self.analysed.load(Ordering::Relaxed)
    }

    /// Frames dropped before decoding because the decoder fell behind.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// Picks frames for analysis by presentation time: a frame is kept when its time reaches the
/// next boundary, boundaries `1/fps` apart. After a jump (a gap in the stream, or a clock
/// reset) the boundaries restart at the frame that crossed it, so there is no burst.
#[derive(Debug, Clone)]
pub struct FramePicker {
    interval: i64,
    next: Option<i64>,
}

impl FramePicker {
    pub fn new(fps: f64) -> Self {
        let fps = if fps.is_finite() && fps > 0.0 {
            fps
        } else {
            DEFAULT_FPS
        };
        FramePicker {
            interval: ((f64::from(TIMESCALE) / fps).round() as i64).max(1),
            next: None,
        }
    }

    /// Whether to analyse the frame presented at `pts` (90 kHz ticks; frames in presentation
    /// order).
    pub fn pick(&mut self, pts: i64) -> bool {
        match self.next {
            Some(next) if pts < next => {
                // A clock going backwards by more than an interval is a new timeline.
                if next - pts > 2 * self.interval {
                    self.next = Some(pts + self.interval);
                    return true;
                }
                false
            }
            Some(next) if pts - next < self.interval => {
                self.next = Some(next + self.interval);
                true
            }
            _ => {
                self.next = Some(pts + self.interval);
                true
            }
        }
    }
}

/// What the pipeline's streaming thread shares with the [`Decoder`].
struct Shared {
    picker: Mutex<FramePicker>,
    counters: Arc<DecodeCounters>,
    /// Nanosecond origin: buffer time 0 is this many 90 kHz ticks on the source's timeline.
    origin: Mutex<Option<i64>>,
    ready: Arc<Notify>,
}

/// One session's decoder. See the [module documentation](self).
pub struct Decoder {
    pipeline: gst::Pipeline,
    appsrc: gst_app::AppSrc,
    appsink: gst_app::AppSink,
    shared: Arc<Shared>,
    /// The track whose caps the appsrc has.
    track: Option<Arc<TrackInfo>>,
    /// Presentation time → wall clock of frames pushed and not yet pulled.
    wall: BTreeMap<i64, SystemTime>,
    /// Dropping frames until a keyframe (decoder behind, or nothing decodable yet).
    waiting_for_keyframe: bool,
}

fn make(factory: &str) -> Result<gst::Element, MediaError> {
    gst::ElementFactory::make(factory)
        .build()
        .map_err(|_| MediaError::Gstreamer(format!("GStreamer element `{factory}` is missing")))
}

fn gst_err(e: impl std::fmt::Display) -> MediaError {
    MediaError::Gstreamer(e.to_string())
}

/// 90 kHz ticks to nanoseconds (floor, as GStreamer converts).
fn ticks_to_ns(ticks: i64) -> u64 {
    (i128::from(ticks.max(0)) * 100_000 / 9) as u64
}

/// Nanoseconds to 90 kHz ticks, rounded (exact for times that came from ticks).
fn ns_to_ticks(ns: u64) -> i64 {
    ((u128::from(ns) * 9 + 50_000) / 100_000).min(i64::MAX as u128) as i64
}

impl Decoder {
    /// Builds and starts the pipeline. May block briefly (GStreamer state change): call it from
    /// `spawn_blocking` in async code.
    pub fn new(cfg: &DecodeConfig) -> Result<Self, MediaError> {
        Self::with_counters(cfg, Arc::new(DecodeCounters::default()))
    }

    /// [`Decoder::new`], counting into `counters`.
    pub fn with_counters(
        cfg: &DecodeConfig,
        counters: Arc<DecodeCounters>,
    ) -> Result<Self, MediaError> {
        cfg.validate("decode")?;
        crate::init()?;
        let pipeline = gst::Pipeline::with_name("decode");
        let appsrc = gst_app::AppSrc::builder()
            .format(gst::Format::Time)
            .is_live(false)
            // The decoder's backlog is bounded by `push` (keyframe to keyframe), not here.
            .max_bytes(0)
            .block(false)
            .build();
        let decodebin = make("decodebin")?;
        let convert = make("videoconvert")?;
        let scale = make("videoscale")?;
        let filter = make("capsfilter")?;
        let caps = gst::Caps::builder("video/x-raw")
            .field("format", "BGR")
            .field("width", gst::IntRange::new(1, cfg.max_width as i32))
            .field("pixel-aspect-ratio", gst::Fraction::new(1, 1))
            .build();
        filter.set_property("caps", &caps);
        let appsink = gst_app::AppSink::builder()
            .sync(false)
            .max_buffers(MAX_READY)
            .drop(true)
            .build();

        let shared = Arc::new(Shared {
            picker: Mutex::new(FramePicker::new(cfg.fps)),
            counters,
            origin: Mutex::new(None),
            ready: Arc::new(Notify::new()),
        });
        {
            let ready = shared.ready.clone();
            appsink.set_callbacks(
                gst_app::AppSinkCallbacks::builder()
                    .new_sample(move |_| {
                        ready.notify_one();
                        Ok(gst::FlowSuccess::Ok)
                    })
                    .build(),
            );
        }

        pipeline
            .add_many([
                appsrc.upcast_ref(),
                &decodebin,
                &convert,
                &scale,
                &filter,
                appsink.upcast_ref(),
            ])
            .map_err(gst_err)?;
        appsrc.link(&decodebin).map_err(gst_err)?;
        gst::Element::link_many([&convert, &scale, &filter, appsink.upcast_ref()])
            .map_err(gst_err)?;

        // Every decoded picture passes this probe; only picked ones go on to be converted.
        let sink_pad = convert
            .static_pad("sink")
            .ok_or_else(|| MediaError::Internal("videoconvert without sink pad".into()))?;
        {
            let shared = shared.clone();
            sink_pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
                let Some(buffer) = info.buffer() else {
                    return gst::PadProbeReturn::Ok;
                };
                shared.counters.decoded.fetch_add(1, Ordering::Relaxed);
                let Some(pts) = buffer.pts() else {
                    drop(info.take_buffer());
                    return gst::PadProbeReturn::Handled;
                };
                let ticks = ns_to_ticks(pts.nseconds());
                let picked = shared
                    .picker
                    .lock()
                    .map(|mut p| p.pick(ticks))
                    .unwrap_or(false);
                if picked {
                    gst::PadProbeReturn::Ok
                } else {
                    // Consumed here: the buffer goes no further.
                    drop(info.take_buffer());
                    gst::PadProbeReturn::Handled
                }
            });
        }
        let convert_weak = convert.downgrade();
        decodebin.connect_pad_added(move |_, pad| {
            let is_video = pad
                .current_caps()
                .and_then(|c| c.structure(0).map(|s| s.name().starts_with("video/")))
                .unwrap_or(true);
            let Some(convert) = convert_weak.upgrade() else {
                return;
            };
            if let Some(sink) = convert.static_pad("sink")
                && is_video
                && !sink.is_linked()
                && let Err(e) = pad.link(&sink)
            {
                tracing::warn!(error = ?e, "cannot link the decoder's output");
            }
        });

        pipeline.set_state(gst::State::Playing).map_err(|e| {
            let _ = pipeline.set_state(gst::State::Null);
            MediaError::Gstreamer(format!("cannot start the decoder: {e}"))
        })?;
        Ok(Decoder {
            pipeline,
            appsrc,
            appsink,
            shared,
            track: None,
            wall: BTreeMap::new(),
            waiting_for_keyframe: true,
        })
    }

    /// The counters this decoder counts into.
    pub fn counters(&self) -> &Arc<DecodeCounters> {
        &self.shared.counters
    }

    /// Queues one frame (decode order, as the source yields it) for decoding. Never blocks.
    ///
    /// Frames before the first keyframe, and frames after the decoder fell [`MAX_QUEUED`]
    /// frames behind until the next keyframe, are dropped. Fails when the decoder failed (a
    /// stream it cannot decode) or the codec changed: start a new decoder.
    pub fn push(&mut self, frame: &Frame) -> Result<(), MediaError> {
        self.check_bus()?;
        let queued = self.appsrc.property::<u64>("current-level-buffers");
        if frame.keyframe {
            if queued < MAX_QUEUED {
                self.waiting_for_keyframe = false;
            }
        } else if queued >= MAX_QUEUED && !self.waiting_for_keyframe {
            tracing::warn!(
                queued,
                "decoder behind the stream: dropping to the next keyframe"
            );
            self.waiting_for_keyframe = true;
        }
        if self.waiting_for_keyframe {
            if self.track.is_some() {
                self.shared.counters.dropped.fetch_add(1, Ordering::Relaxed);
            }
            return Ok(());
        }
        self.set_track(&frame.track)?;
        let origin = {
            let mut origin = self
                .shared
                .origin
                .lock()
                .map_err(|_| MediaError::Internal("decoder state poisoned".into()))?;
            // Decode times increase and never exceed presentation times: the first one is the
            // session's earliest time.
            *origin.get_or_insert(frame.dts.min(frame.pts))
        };
        let mut buffer = gst::Buffer::from_slice(frame.data.clone());
        {
            let b = buffer
                .get_mut()
                .ok_or_else(|| MediaError::Internal("fresh buffer not writable".into()))?;
            b.set_pts(gst::ClockTime::from_nseconds(ticks_to_ns(
                frame.pts - origin,
            )));
            b.set_dts(gst::ClockTime::from_nseconds(ticks_to_ns(
                frame.dts - origin,
            )));
            if !frame.keyframe {
                b.set_flags(gst::BufferFlags::DELTA_UNIT);
            }
        }
        // Keyed by the time the picture will come out with (after the ns round trip).
        let out_pts = origin + ns_to_ticks(ticks_to_ns(frame.pts - origin));
        self.wall.insert(out_pts, frame.wall_clock);
        // Pictures that never come out (not picked) must not pile up.
        while self.wall.len() > 4 * MAX_QUEUED as usize {
            self.wall.pop_first();
        }
        self.appsrc
            .push_buffer(buffer)
            .map_err(|e| MediaError::Decode(format!("decoder refused a frame: {e:?}")))?;
        Ok(())
    }

    /// The next picture ready for analysis, if any. Never blocks.
    pub fn pull(&mut self) -> Option<DecodedFrame> {
        loop {
            let sample = self.appsink.try_pull_sample(gst::ClockTime::ZERO)?;
            match self.picture(&sample) {
                Some(frame) => {
                    self.shared
                        .counters
                        .analysed
                        .fetch_add(1, Ordering::Relaxed);
                    return Some(frame);
                }
                None => continue,
            }
        }
    }

    /// Resolves when a picture may be ready to [`pull`](Self::pull) (no wake-up is lost between
    /// a `pull` that found nothing and this).
    pub async fn ready(&self) {
        self.shared.ready.notified().await;
    }

    /// Signals the end of the stream, waits (bounded) for the pictures still in the decoder and
    /// returns them. Blocks: call from `spawn_blocking` in async code.
    pub fn finish(mut self, timeout: Duration) -> Vec<DecodedFrame> {
        let mut out = Vec::new();
        if self.track.is_none() || self.appsrc.end_of_stream().is_err() {
            return out;
        }
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self
                .appsink
                .try_pull_sample(gst::ClockTime::from_nseconds(left.as_nanos() as u64))
            {
                Some(sample) => {
                    if let Some(f) = self.picture(&sample) {
                        self.shared
                            .counters
                            .analysed
                            .fetch_add(1, Ordering::Relaxed);
                        out.push(f);
                    }
                }
                None => return out,
            }
        }
    }

    fn picture(&mut self, sample: &gst::Sample) -> Option<DecodedFrame> {
        let buffer = sample.buffer()?;
        let s = sample.caps()?.structure(0)?;
        let width = u32::try_from(s.get::<i32>("width").ok()?).ok()?;
        let height = u32::try_from(s.get::<i32>("height").ok()?).ok()?;
        let origin = (*self.shared.origin.lock().ok()?)?;
        let pts = origin + ns_to_ticks(buffer.pts()?.nseconds());
        // The wall clock of this frame; frames before it will not come out any more.
        let wall_clock = match self.wall.get(&pts) {
            Some(w) => *w,
            None => self
                .wall
                .range(..=pts)
                .next_back()
                .map(|(t, w)| offset(*w, pts - t))
                .unwrap_or_else(SystemTime::now),
        };
        self.wall = self.wall.split_off(&(pts + 1));
        let row = width as usize * 3;
        // GStreamer pads BGR rows to 4 bytes.
        let padded = row.div_ceil(4) * 4;
        let map = buffer.map_readable().ok()?;
        let data = map.as_slice();
        let bgr = if data.len() == row * height as usize {
            Bytes::copy_from_slice(data)
        } else if data.len() >= padded * height as usize {
            let mut packed = Vec::with_capacity(row * height as usize);
            for r in 0..height as usize {
                packed.extend_from_slice(&data[r * padded..r * padded + row]);
            }
            Bytes::from(packed)
        } else {
            tracing::warn!(
                len = data.len(),
                width,
                height,
                "decoded picture of unexpected size"
            );
            return None;
        };
        Some(DecodedFrame {
            wall_clock,
            pts,
            width,
            height,
            stride: row,
            bgr,
        })
    }

    /// Gives the appsrc the caps of `track` when it is new.
    fn set_track(&mut self, track: &Arc<TrackInfo>) -> Result<(), MediaError> {
        if let Some(current) = &self.track {
            if Arc::ptr_eq(current, track) || current.track == track.track {
                return Ok(());
            }
            if current.track.codec != track.track.codec {
                return Err(MediaError::Decode(format!(
                    "codec changed from {} to {} mid-session",
                    current.codec_name, track.codec_name
                )));
            }
        }
        let (name, format) = match track.track.codec {
            Codec::H264 => ("video/x-h264", "avc"),
            Codec::H265 => ("video/x-h265", "hvc1"),
        };
        let mut caps = gst::Caps::builder(name)
            .field("stream-format", format)
            .field("alignment", "au")
            .field(
                "codec_data",
                gst::Buffer::from_slice(track.track.codec_data.clone()),
            );
        if track.track.width > 0 && track.track.height > 0 {
            caps = caps
                .field("width", track.track.width as i32)
                .field("height", track.track.height as i32);
        }
        self.appsrc.set_caps(Some(&caps.build()));
        self.track = Some(track.clone());
        Ok(())
    }

    /// A decoder error on the bus, as an error.
    fn check_bus(&self) -> Result<(), MediaError> {
        let Some(bus) = self.pipeline.bus() else {
            return Ok(());
        };
        while let Some(msg) = bus.pop_filtered(&[gst::MessageType::Error]) {
            if let gst::MessageView::Error(err) = msg.view() {
                let from = msg.src().map(|s| s.name().to_string()).unwrap_or_default();
                return Err(MediaError::Decode(format!("{from}: {}", err.error())));
            }
        }
        Ok(())
    }
}

impl Drop for Decoder {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

fn offset(t: SystemTime, ticks: i64) -> SystemTime {
    let d = Duration::from_nanos(ticks_to_ns(ticks.abs()));
    if ticks >= 0 {
        t.checked_add(d).unwrap_or(t)
    } else {
        t.checked_sub(d).unwrap_or(t)
    }
}

/// How a camera's decoded stream is doing, as [`run_decoded`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamState {
    /// Connecting for the first time.
    Starting,
    /// Pictures are coming out of the decoder.
    Running,
    /// A session failed; retrying with backoff. `error` is the reason, without credentials.
    Reconnecting { error: String },
    /// [`OFFLINE_AFTER_FAILURES`] sessions in a row failed; still retrying.
    Offline { error: String },
    /// Cancelled; the loop has ended.
    Stopped,
}

impl StreamState {
    /// A fixed label for metrics and status.
    pub fn as_str(&self) -> &'static str {
        match self {
            StreamState::Starting => "starting",
            StreamState::Running => "running",
            StreamState::Reconnecting { .. } => "reconnecting",
            StreamState::Offline { .. } => "offline",
            StreamState::Stopped => "stopped",
        }
    }
}

/// What [`run_decoded`] hands its callback.
#[derive(Debug, Clone)]
pub enum DecodeEvent {
    /// The stream's state changed.
    State(StreamState),
    /// A picture for analysis.
    Frame(DecodedFrame),
}

enum SessionEnd {
    Cancelled,
    Failed(String),
}

/// Decodes one camera's stream until `cancel`: opens the [`Source`] for `stream`, decodes with
/// `cfg`, and calls `on_event` with every picture for analysis and every state change
/// (`Starting` first; `Running` when a session's first picture comes out; `Reconnecting` or,
/// after [`OFFLINE_AFTER_FAILURES`] failures in a row, `Offline` when a session fails; `Stopped`
/// last). A session fails when the source fails, stalls (no frame for
/// `ctx.config.stall_timeout`, more before the first frame) or the decoder fails; the next one
/// starts after the acquisition layer's [`Backoff`] (reset by a session that ran).
///
/// `on_event` runs on this task: hand pictures on without blocking (e.g. `try_send` to a
/// bounded channel, dropping when the analysis is behind).
pub async fn run_decoded(
    stream: StreamConfig,
    ctx: OpenContext,
    cfg: DecodeConfig,
    counters: Arc<DecodeCounters>,
    cancel: CancellationToken,
    mut on_event: impl FnMut(DecodeEvent) + Send,
) {
    let mut backoff: Backoff = ctx.config.backoff();
    let mut failures: u64 = 0;
    on_event(DecodeEvent::State(StreamState::Starting));
    loop {
        let mut ran = false;
        let end = session(&stream, &ctx, &cfg, &counters, &cancel, &mut |e| {
            if matches!(e, DecodeEvent::State(StreamState::Running)) {
                ran = true;
            }
            on_event(e)
        })
        .await;
        match end {
            SessionEnd::Cancelled => break,
            SessionEnd::Failed(error) => {
                if ran {
                    backoff.reset();
                    failures = 0;
                }
                failures += 1;
                let delay = backoff.next();
                tracing::warn!(
                    camera = %stream.name,
                    %error,
                    retry_in_ms = delay.as_millis() as u64,
                    "detect stream failed"
                );
                on_event(DecodeEvent::State(if failures >= OFFLINE_AFTER_FAILURES {
                    StreamState::Offline { error }
                } else {
                    StreamState::Reconnecting { error }
                }));
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = cancel.cancelled() => break,
                }
            }
        }
    }
    on_event(DecodeEvent::State(StreamState::Stopped));
}

async fn session(
    stream: &StreamConfig,
    ctx: &OpenContext,
    cfg: &DecodeConfig,
    counters: &Arc<DecodeCounters>,
    cancel: &CancellationToken,
    on_event: &mut (impl FnMut(DecodeEvent) + Send),
) -> SessionEnd {
    let first_frame_timeout = ctx.config.first_frame_timeout();
    let opened = tokio::select! {
        _ = cancel.cancelled() => return SessionEnd::Cancelled,
        opened = tokio::time::timeout(first_frame_timeout, source::open(stream, ctx)) => opened,
    };
    let mut src: Box<dyn Source> = match opened {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return SessionEnd::Failed(e.to_string()),
        Err(_) => {
            return SessionEnd::Failed(format!(
                "no answer within {:.0}s of connecting",
                first_frame_timeout.as_secs_f64()
            ));
        }
    };
    let built = {
        let cfg = *cfg;
        let counters = counters.clone();
        tokio::task::spawn_blocking(move || Decoder::with_counters(&cfg, counters)).await
    };
    let mut decoder = match built {
        Ok(Ok(d)) => d,
        Ok(Err(e)) => {
            src.close().await;
            return SessionEnd::Failed(e.to_string());
        }
        Err(e) => {
            src.close().await;
            return SessionEnd::Failed(format!("decoder start-up panicked: {e}"));
        }
    };
    let mut running = false;
    let mut got_frame = false;
    let mut track: Option<Arc<TrackInfo>> = None;
    let end = loop {
        while let Some(picture) = decoder.pull() {
            if !running {
                running = true;
                on_event(DecodeEvent::State(StreamState::Running));
            }
            on_event(DecodeEvent::Frame(picture));
        }
        let wait = if got_frame {
            ctx.config.stall_timeout
        } else {
            first_frame_timeout
        };
        let next = tokio::select! {
            _ = cancel.cancelled() => break SessionEnd::Cancelled,
            _ = decoder.ready() => continue,
            next = tokio::time::timeout(wait, src.next()) => next,
        };
        let frame = match next {
            Ok(Ok(frame)) => frame,
            Ok(Err(SourceError::Ended)) => {
                break SessionEnd::Failed("camera ended the stream".into());
            }
            Ok(Err(e)) => break SessionEnd::Failed(e.to_string()),
            Err(_) if got_frame => {
                break SessionEnd::Failed(format!(
                    "no media for {:.1}s (stream stalled)",
                    wait.as_secs_f64()
                ));
            }
            Err(_) => {
                break SessionEnd::Failed(format!(
                    "no media within {:.0}s of connecting",
                    wait.as_secs_f64()
                ));
            }
        };
        if track.as_ref().is_none_or(|t| !Arc::ptr_eq(t, &frame.track)) {
            let t = &frame.track;
            counters.set_session(SessionInfo {
                source: src.kind(),
                transport: src.transport(),
                codec: t.track.codec,
                width: t.track.width,
                height: t.track.height,
                fps: t.fps,
            });
            track = Some(t.clone());
        }
        got_frame = true;
        if let Err(e) = decoder.push(&frame) {
            break SessionEnd::Failed(e.to_string());
        }
    };
    src.close().await;
    // Stopping a pipeline waits for its streaming thread.
    let _ = tokio::task::spawn_blocking(move || drop(decoder)).await;
    end
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn picks_every_fifth_frame_of_25_fps_at_5_fps() {
        let mut p = FramePicker::new(5.0);
        let picked: Vec<i64> = (0..50)
            .map(|i| 1000 + i * 3600)
            .filter(|t| p.pick(*t))
            .collect();
        assert_eq!(picked.len(), 10);
        assert!(
            picked.windows(2).all(|w| w[1] - w[0] == 18_000),
            "{picked:?}"
        );
    }

    #[test]
    fn a_gap_restarts_the_boundaries_without_a_burst() {
        let mut p = FramePicker::new(5.0);
        assert!(p.pick(0));
        assert!(!p.pick(3600));
        // 10 s later: one frame, then the next boundary 1/5 s on.
        assert!(p.pick(900_000));
        assert!(!p.pick(903_600));
        assert!(p.pick(918_000));
        // A new timeline (the clock went back) starts over at once.
        assert!(p.pick(0));
    }

    proptest! {
        /// Over any constant-rate stream, the picked count is the span × fps (± 1), never more
        /// than the stream's own frames.
        #[test]
        fn picked_rate_follows_the_stream_clock(
            stream_fps in 1u32..60,
            fps in 0.5f64..15.0,
            frames in 1usize..2000,
            start in -1_000_000i64..1_000_000,
        ) {
            let step = i64::from(TIMESCALE / stream_fps);
            let mut p = FramePicker::new(fps);
            let picked = (0..frames as i64).filter(|i| p.pick(start + i * step)).count();
            let span = (frames as i64 * step) as f64 / f64::from(TIMESCALE);
            let expected = (span * fps.min(f64::from(stream_fps))).max(1.0);
            prop_assert!(picked <= frames);
            prop_assert!((picked as f64 - expected).abs() <= 1.0 + expected * 0.01,
                "picked {picked}, expected {expected}");
        }
    }

    #[test]
    fn config_is_validated_with_key_names() {
        DecodeConfig::default().validate("d").unwrap();
        let e = DecodeConfig {
            fps: 30.0,
            ..Default::default()
        }
        .validate("detection.decode")
        .unwrap_err();
        assert!(e.to_string().contains("detection.decode.fps"), "{e}");
        let e = DecodeConfig {
            max_width: 0,
            ..Default::default()
        }
        .validate("d")
        .unwrap_err();
        assert!(e.to_string().contains("d.max_width"), "{e}");
    }

    #[test]
    fn ticks_survive_the_round_trip() {
        for t in [0i64, 1, 3600, 3003, 90_000 * 86_400 * 3 + 1] {
            assert_eq!(ns_to_ticks(ticks_to_ns(t)), t);
        }
    }
}
