//! The GStreamer source, for what retina cannot do (`rtsps://`), or for every camera when
//! [`SourceConfig::rtsp_client`] is `gstreamer`.
//!
//! Pipeline: `rtspsrc` (the camera's configured transport; only the first video stream) →
//! `rtph264depay`/`rtph265depay` → `h264parse`/`h265parse` → `appsink` with
//! `stream-format=avc|hvc1, alignment=au`. No decoding, no re-encoding. The appsink callback
//! (GStreamer's streaming thread) only copies each access unit into a bounded channel; the
//! camera's task takes them from there. Decode times are derived from the presentation times
//! exactly as for retina ([`DecodeTimes`]): whatever DTS the parsers guess is ignored, so both
//! sources follow one convention. A buffer GStreamer marks `DISCONT` after the first (a loss)
//! starts a [`LossGate`] wait for the next keyframe. Wall clock: the pipeline runs on a realtime
//! clock, so `base_time + running_time` is when a frame arrived.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use futures::future::BoxFuture;
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use tokio::sync::mpsc;

use super::retina::DEFAULT_REORDER;
use super::{DecodeTimes, Frame, LossGate, OpenContext, Source, SourceError, SourceKind};
use crate::MediaError;
use crate::config::{SourceConfig, StreamConfig, Transport};
use crate::track::TrackInfo;

/// Access units buffered between the streaming thread and the camera's task (~10 s at 25 fps).
const CHANNEL_FRAMES: usize = 256;

/// One access unit from the appsink.
struct Raw {
    pts: i64,
    keyframe: bool,
    discont: bool,
    /// H.264 Baseline (caps `profile`): no B-frames.
    baseline: bool,
    data: bytes::Bytes,
    wall_clock: SystemTime,
    track: Arc<TrackInfo>,
}

struct Held {
    keyframe: bool,
    data: bytes::Bytes,
    wall_clock: SystemTime,
    track: Arc<TrackInfo>,
}

pub struct GstSource {
    pipeline: Option<gst::Pipeline>,
    rx: mpsc::Receiver<Result<Raw, SourceError>>,
    bus: gst::bus::BusStream,
    transport: Transport,
    order: Option<DecodeTimes<Held>>,
    ready: VecDeque<Frame>,
    gate: LossGate,
    first: bool,
    end: Option<String>,
}

/// A realtime clock for all camera pipelines: running time + base time = wall-clock time.
pub fn realtime_clock() -> gst::Clock {
    let clock: gst::SystemClock = gst::glib::Object::builder()
        .property("clock-type", gst::ClockType::Realtime)
        .build();
    clock.upcast()
}

impl GstSource {
    pub fn open(spec: &StreamConfig, ctx: &OpenContext) -> Result<Self, SourceError> {
        let (tx, rx) = mpsc::channel(CHANNEL_FRAMES);
        let pipeline = build_pipeline(spec, &ctx.config, tx, &ctx.clock)
            .map_err(|e| SourceError::Refused(e.to_string()))?;
        let bus = pipeline
            .bus()
            .ok_or_else(|| SourceError::Refused("pipeline without bus".into()))?;
        let bus = bus.stream();
        if let Err(e) = pipeline.set_state(gst::State::Playing) {
            let _ = pipeline.set_state(gst::State::Null);
            return Err(SourceError::Lost(format!("cannot start stream: {e}")));
        }
        Ok(GstSource {
            pipeline: Some(pipeline),
            rx,
            bus,
            transport: spec.transport,
            order: None,
            ready: VecDeque::new(),
            gate: LossGate::default(),
            first: true,
            end: None,
        })
    }

    fn on_raw(&mut self, raw: Raw) {
        let loss = u16::from(raw.discont && !self.first);
        self.first = false;
        if !self.gate.keep(raw.keyframe, loss) {
            return;
        }
        let order = self.order.get_or_insert_with(|| {
            DecodeTimes::new(if raw.baseline { 0 } else { DEFAULT_REORDER })
        });
        let held = Held {
            keyframe: raw.keyframe,
            data: raw.data,
            wall_clock: raw.wall_clock,
            track: raw.track,
        };
        if let Some(r) = order.push(raw.pts, held) {
            self.release(r);
        }
    }

    fn release(&mut self, (dts, pts, held): (i64, i64, Held)) {
        self.ready.push_back(Frame {
            dts,
            pts,
            keyframe: held.keyframe,
            data: held.data,
            wall_clock: held.wall_clock,
            track: held.track,
        });
    }

    fn finish(&mut self, why: String) {
        if let Some(order) = self.order.as_mut() {
            let drained = order.drain();
            for r in drained {
                self.release(r);
            }
        }
        self.end = Some(why);
    }

    async fn next_frame(&mut self) -> Result<Frame, SourceError> {
        loop {
            if let Some(f) = self.ready.pop_front() {
                return Ok(f);
            }
            if let Some(end) = &self.end {
                return Err(if end.is_empty() {
                    SourceError::Ended
                } else {
                    SourceError::Lost(end.clone())
                });
            }
            tokio::select! {
                raw = self.rx.recv() => match raw {
                    Some(Ok(raw)) => self.on_raw(raw),
                    Some(Err(e)) => return Err(e),
                    None => self.finish("pipeline stopped".into()),
                },
                msg = self.bus.next() => {
                    use gst::MessageView;
                    let Some(msg) = msg else {
                        self.finish("pipeline bus closed".into());
                        continue;
                    };
                    match msg.view() {
                        MessageView::Error(err) => {
                            // Source element and message only: the URL (with credentials) stays out.
                            let from = msg.src().map(|s| s.name().to_string()).unwrap_or_default();
                            self.finish(format!("{from}: {}", err.error()));
                        }
                        MessageView::Eos(_) => self.finish(String::new()),
                        _ => {}
                    }
                }
            }
        }
    }
}

impl Source for GstSource {
    fn next(&mut self) -> BoxFuture<'_, Result<Frame, SourceError>> {
        Box::pin(self.next_frame())
    }

    fn kind(&self) -> SourceKind {
        SourceKind::Gstreamer
    }

    fn transport(&self) -> Transport {
        self.transport
    }

    fn close(mut self: Box<Self>) -> BoxFuture<'static, ()> {
        let pipeline = self.pipeline.take();
        Box::pin(async move {
            if let Some(pipeline) = pipeline {
                // Off the async threads: rtspsrc may wait for the camera's TEARDOWN answer.
                let _ = tokio::task::spawn_blocking(move || {
                    let _ = pipeline.set_state(gst::State::Null);
                })
                .await;
            }
        })
    }
}

impl Drop for GstSource {
    fn drop(&mut self) {
        if let Some(p) = self.pipeline.take() {
            let _ = p.set_state(gst::State::Null);
        }
    }
}

fn make(factory: &str) -> Result<gst::Element, MediaError> {
    gst::ElementFactory::make(factory)
        .build()
        .map_err(|_| MediaError::Gstreamer(format!("GStreamer element `{factory}` is missing")))
}

type Tx = mpsc::Sender<Result<Raw, SourceError>>;

/// Builds the camera's pipeline; elements after `rtspsrc` are added when its video pad appears.
fn build_pipeline(
    spec: &StreamConfig,
    cfg: &SourceConfig,
    tx: Tx,
    clock: &gst::Clock,
) -> Result<gst::Pipeline, MediaError> {
    let pipeline = gst::Pipeline::with_name(&spec.name);
    pipeline.use_clock(Some(clock));
    let src = make("rtspsrc")?;
    src.set_property("location", &spec.url);
    src.set_property(
        "latency",
        cfg.rtsp_latency.as_millis().min(u32::MAX as u128) as u32,
    );
    src.set_property_from_str("protocols", spec.transport.as_str());
    // Connection and UDP timeouts, in microseconds.
    let timeout_us = cfg.stall_timeout.as_micros().min(u64::MAX as u128) as u64;
    src.set_property("tcp-timeout", timeout_us);
    src.set_property("timeout", timeout_us);
    src.set_property("do-retransmission", false);
    if let Some(u) = &spec.username {
        src.set_property("user-id", u);
    }
    if let Some(p) = &spec.password {
        src.set_property("user-pw", p);
    }
    // Only the first video stream: audio and metadata are not recorded (yet).
    let video_selected = Arc::new(AtomicBool::new(false));
    {
        let video_selected = video_selected.clone();
        src.connect("select-stream", false, move |args| {
            let caps = args.get(2).and_then(|v| v.get::<gst::Caps>().ok());
            let is_video = caps
                .as_ref()
                .and_then(|c| c.structure(0))
                .and_then(|s| s.get::<&str>("media").ok())
                .is_some_and(|m| m == "video");
            let take = is_video && !video_selected.swap(true, Ordering::AcqRel);
            Some(take.to_value())
        });
    }
    pipeline
        .add(&src)
        .map_err(|e| MediaError::Gstreamer(e.to_string()))?;

    let weak = pipeline.downgrade();
    src.connect_pad_added(move |_, pad| {
        let Some(pipeline) = weak.upgrade() else {
            return;
        };
        if let Err(e) = link_video(&pipeline, pad, tx.clone()) {
            let _ = tx.try_send(Err(SourceError::Refused(e.to_string())));
        }
    });
    Ok(pipeline)
}

fn link_video(pipeline: &gst::Pipeline, pad: &gst::Pad, tx: Tx) -> Result<(), MediaError> {
    let caps = pad
        .current_caps()
        .ok_or_else(|| MediaError::Gstreamer("RTP pad without caps".into()))?;
    let s = caps
        .structure(0)
        .ok_or_else(|| MediaError::Gstreamer("RTP caps without structure".into()))?;
    let encoding = s
        .get::<&str>("encoding-name")
        .unwrap_or("")
        .to_ascii_uppercase();
    let (depay, parse, format) = match encoding.as_str() {
        "H264" => (
            "rtph264depay",
            "h264parse",
            "video/x-h264,stream-format=avc,alignment=au",
        ),
        "H265" => (
            "rtph265depay",
            "h265parse",
            "video/x-h265,stream-format=hvc1,alignment=au",
        ),
        other => {
            return Err(MediaError::Gstreamer(format!(
                "camera sends {other}, but only H.264 and H.265 can be recorded without re-encoding"
            )));
        }
    };
    let depay = make(depay)?;
    let parse = make(parse)?;
    let filter = make("capsfilter")?;
    let caps: gst::Caps = format
        .parse()
        .map_err(|_| MediaError::Gstreamer("bad caps string".into()))?;
    filter.set_property("caps", &caps);
    let sink = gst_app::AppSink::builder()
        .sync(false)
        .max_buffers(200)
        .build();
    let track: Mutex<Option<(gst::Caps, Arc<TrackInfo>)>> = Mutex::new(None);
    let callbacks = gst_app::AppSinkCallbacks::builder()
        .new_sample(move |sink| {
            let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
            match handle_sample(&track, sink, &sample) {
                Ok(Some(raw)) => {
                    // A full channel means the camera's task stopped taking frames: fail the
                    // session rather than block GStreamer's streaming thread.
                    if tx.try_send(Ok(raw)).is_err() {
                        return Err(gst::FlowError::Error);
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    let _ = tx.try_send(Err(SourceError::Refused(e.to_string())));
                    return Err(gst::FlowError::Error);
                }
            }
            Ok(gst::FlowSuccess::Ok)
        })
        .build();
    sink.set_callbacks(callbacks);
    let sink_el: gst::Element = sink.upcast();
    let chain = [&depay, &parse, &filter, &sink_el];
    pipeline
        .add_many(chain)
        .map_err(|e| MediaError::Gstreamer(e.to_string()))?;
    gst::Element::link_many(chain).map_err(|e| MediaError::Gstreamer(e.to_string()))?;
    for el in chain {
        el.sync_state_with_parent()
            .map_err(|e| MediaError::Gstreamer(e.to_string()))?;
    }
    let sinkpad = depay
        .static_pad("sink")
        .ok_or_else(|| MediaError::Gstreamer("depayloader without sink pad".into()))?;
    pad.link(&sinkpad)
        .map_err(|e| MediaError::Gstreamer(format!("cannot link RTP pad: {e:?}")))?;
    Ok(())
}

/// Nanoseconds to 90 kHz ticks, rounded (RTP's 90 kHz times survive the round trip exactly).
fn ns_to_ticks(ns: u64) -> i64 {
    ((u128::from(ns) * 9 + 50_000) / 100_000).min(i64::MAX as u128) as i64
}

fn handle_sample(
    cached: &Mutex<Option<(gst::Caps, Arc<TrackInfo>)>>,
    sink: &gst_app::AppSink,
    sample: &gst::Sample,
) -> Result<Option<Raw>, MediaError> {
    let (Some(buffer), Some(caps)) = (sample.buffer(), sample.caps()) else {
        return Ok(None);
    };
    let track = {
        let mut cached = cached
            .lock()
            .map_err(|_| MediaError::Internal("track cache poisoned".into()))?;
        // Caps rarely change: re-parse only when GStreamer hands different caps.
        let fresh = match cached.as_ref() {
            Some((c, _)) => !c.as_ref().is_strictly_equal(caps),
            None => true,
        };
        if fresh {
            *cached = Some((caps.to_owned(), Arc::new(TrackInfo::from_caps(caps)?)));
        }
        match cached.as_ref() {
            Some((_, t)) => Arc::clone(t),
            None => return Ok(None),
        }
    };
    let Some(pts) = buffer.pts() else {
        return Ok(None);
    };
    let baseline = caps
        .structure(0)
        .and_then(|s| s.get::<&str>("profile").ok())
        .is_some_and(|p| p.ends_with("baseline"));
    let running = sample
        .segment()
        .and_then(|s| s.downcast_ref::<gst::ClockTime>())
        .and_then(|s| s.to_running_time(pts))
        .unwrap_or(pts)
        .nseconds();
    let base = sink.base_time().map(|b| b.nseconds()).unwrap_or(0);
    let data = buffer
        .map_readable()
        .map(|m| bytes::Bytes::copy_from_slice(m.as_slice()))
        .map_err(|_| MediaError::Gstreamer("buffer not readable".into()))?;
    Ok(Some(Raw {
        pts: ns_to_ticks(running),
        keyframe: !buffer.flags().contains(gst::BufferFlags::DELTA_UNIT),
        discont: buffer.flags().contains(gst::BufferFlags::DISCONT),
        baseline,
        data,
        wall_clock: UNIX_EPOCH + Duration::from_nanos(base.saturating_add(running)),
        track,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_survive_the_round_trip_through_nanoseconds() {
        for ticks in [0u64, 1, 3600, 3003, 90_000 * 86_400 * 3 + 1] {
            let ns = (u128::from(ticks) * 100_000 / 9) as u64; // what GStreamer does (floor)
            assert_eq!(ns_to_ticks(ns), ticks as i64);
        }
    }
}
