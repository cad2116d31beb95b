//! One camera: how its stream is pulled, and the supervisor that keeps it recording.
//!
//! H.264 over RTSP/TCP goes through Kordon's own client ([`crate::rtsp`]) on a thread of its
//! own, unless `ingest.rtsp_client` is `gstreamer`; when the camera turns out to need what that
//! client does not do (H.265, another codec), the camera switches to the GStreamer pipeline at
//! once and stays on it. GStreamer pipeline: `rtspsrc` (TCP by default; only the first video stream is selected) →
//! `rtph264depay`/`rtph265depay` → `h264parse`/`h265parse` → `appsink` with
//! `stream-format=avc|hvc1, alignment=au`. No decoding, no re-encoding: the camera's own access
//! units go into the segments byte for byte.
//!
//! The supervisor restarts the pipeline when the stream errors, ends, or stalls (no media for
//! `stall_timeout`), waiting with capped exponential backoff; a configuration change restarts it
//! at once. On stop it tears the pipeline down and closes the open segment into the spool.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::IngestError;
use crate::config::{CameraConfig, IngestConfig, RtspClient, Transport};
use crate::metrics;
use crate::recorder::{GapReason, Recorder, TrackInfo};
use crate::rtsp::{self, NativeEnd, NativeParams, UnitSink};
use crate::status::{CameraState, StatusBoard};

/// Shared between the streaming thread and the supervisor.
struct SessionShared {
    recorder: Arc<Mutex<Recorder>>,
    /// Milliseconds since `epoch` of the last sample.
    last_sample_ms: AtomicU64,
    epoch: Instant,
    got_sample: AtomicBool,
    /// A failure found on the streaming thread (unsupported codec, spool write error).
    error: Mutex<Option<String>>,
    track: Mutex<Option<(gst::Caps, Arc<TrackInfo>)>>,
}

impl SessionShared {
    fn new(recorder: Arc<Mutex<Recorder>>) -> Arc<SessionShared> {
        Arc::new(SessionShared {
            recorder,
            last_sample_ms: AtomicU64::new(0),
            epoch: Instant::now(),
            got_sample: AtomicBool::new(false),
            error: Mutex::new(None),
            track: Mutex::new(None),
        })
    }

    fn touch(&self) {
        self.last_sample_ms
            .store(self.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
        self.got_sample.store(true, Ordering::Relaxed);
    }

    fn idle_for(&self) -> Duration {
        let last = self.last_sample_ms.load(Ordering::Relaxed);
        self.epoch
            .elapsed()
            .saturating_sub(Duration::from_millis(last))
    }

    fn set_error(&self, e: String) {
        if let Ok(mut slot) = self.error.lock()
            && slot.is_none()
        {
            *slot = Some(e);
        }
    }
}

/// A realtime clock for all camera pipelines: running time + base time = wall-clock time.
pub fn realtime_clock() -> gst::Clock {
    let clock: gst::SystemClock = gst::glib::Object::builder()
        .property("clock-type", gst::ClockType::Realtime)
        .build();
    clock.upcast()
}

fn make(factory: &str) -> Result<gst::Element, IngestError> {
    gst::ElementFactory::make(factory)
        .build()
        .map_err(|_| IngestError::Gstreamer(format!("GStreamer element `{factory}` is missing")))
}

/// Builds the camera's pipeline; elements after `rtspsrc` are added when its video pad appears.
fn build_pipeline(
    spec: &CameraConfig,
    cfg: &IngestConfig,
    shared: Arc<SessionShared>,
    clock: &gst::Clock,
) -> Result<gst::Pipeline, IngestError> {
    let pipeline = gst::Pipeline::with_name(&format!("{}-{}", spec.site, spec.name));
    pipeline.use_clock(Some(clock));
    let src = make("rtspsrc")?;
    src.set_property("location", &spec.record);
    src.set_property(
        "latency",
        cfg.rtsp_latency.as_millis().min(u32::MAX as u128) as u32,
    );
    src.set_property_from_str(
        "protocols",
        match spec.transport {
            Transport::Tcp => "tcp",
            Transport::Udp => "udp",
        },
    );
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
        .map_err(|e| IngestError::Gstreamer(e.to_string()))?;

    let weak = pipeline.downgrade();
    src.connect_pad_added(move |_, pad| {
        let Some(pipeline) = weak.upgrade() else {
            return;
        };
        if let Err(e) = link_video(&pipeline, pad, shared.clone()) {
            shared.set_error(e.to_string());
        }
    });
    Ok(pipeline)
}

fn link_video(
    pipeline: &gst::Pipeline,
    pad: &gst::Pad,
    shared: Arc<SessionShared>,
) -> Result<(), IngestError> {
    let caps = pad
        .current_caps()
        .ok_or_else(|| IngestError::Gstreamer("RTP pad without caps".into()))?;
    let s = caps
        .structure(0)
        .ok_or_else(|| IngestError::Gstreamer("RTP caps without structure".into()))?;
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
            return Err(IngestError::Gstreamer(format!(
                "camera sends {other}, but only H.264 and H.265 can be recorded without re-encoding"
            )));
        }
    };
    let depay = make(depay)?;
    let parse = make(parse)?;
    let filter = make("capsfilter")?;
    let caps: gst::Caps = format
        .parse()
        .map_err(|_| IngestError::Gstreamer("bad caps string".into()))?;
    filter.set_property("caps", &caps);
    let sink = gst_app::AppSink::builder()
        .sync(false)
        .max_buffers(200)
        .build();
    let callbacks = {
        let shared = shared.clone();
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |sink| {
                let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                handle_sample(&shared, sink, &sample);
                Ok(gst::FlowSuccess::Ok)
            })
            .build()
    };
    sink.set_callbacks(callbacks);
    let sink_el: gst::Element = sink.upcast();
    let chain = [&depay, &parse, &filter, &sink_el];
    pipeline
        .add_many(chain)
        .map_err(|e| IngestError::Gstreamer(e.to_string()))?;
    gst::Element::link_many(chain).map_err(|e| IngestError::Gstreamer(e.to_string()))?;
    for el in chain {
        el.sync_state_with_parent()
            .map_err(|e| IngestError::Gstreamer(e.to_string()))?;
    }
    let sinkpad = depay
        .static_pad("sink")
        .ok_or_else(|| IngestError::Gstreamer("depayloader without sink pad".into()))?;
    pad.link(&sinkpad)
        .map_err(|e| IngestError::Gstreamer(format!("cannot link RTP pad: {e:?}")))?;
    Ok(())
}

fn handle_sample(shared: &SessionShared, sink: &gst_app::AppSink, sample: &gst::Sample) {
    shared.touch();
    let (Some(buffer), Some(caps)) = (sample.buffer(), sample.caps()) else {
        return;
    };
    let info = {
        let Ok(mut cached) = shared.track.lock() else {
            return;
        };
        // Caps rarely change: re-parse only when GStreamer hands different caps.
        let fresh = match cached.as_ref() {
            Some((c, _)) => !c.as_ref().is_strictly_equal(caps),
            None => true,
        };
        if fresh {
            match TrackInfo::from_caps(caps) {
                Ok(t) => *cached = Some((caps.to_owned(), Arc::new(t))),
                Err(e) => {
                    shared.set_error(e.to_string());
                    return;
                }
            }
        }
        match cached.as_ref() {
            Some((_, t)) => Arc::clone(t),
            None => return,
        }
    };
    let segment = sample
        .segment()
        .and_then(|s| s.downcast_ref::<gst::ClockTime>());
    let Some(pts) = buffer.pts() else {
        return;
    };
    let dts = buffer.dts().unwrap_or(pts);
    let to_running = |t: gst::ClockTime| {
        segment
            .and_then(|s| s.to_running_time(t))
            .unwrap_or(t)
            .nseconds()
    };
    let (pts_rt, dts_rt) = (to_running(pts), to_running(dts));
    let base = sink.base_time().map(|b| b.nseconds()).unwrap_or(0);
    let keyframe = !buffer.flags().contains(gst::BufferFlags::DELTA_UNIT);
    let data = match buffer.map_readable() {
        Ok(map) => bytes::Bytes::copy_from_slice(map.as_slice()),
        Err(_) => return,
    };
    let Ok(mut rec) = shared.recorder.lock() else {
        return;
    };
    if let Err(e) = rec.on_sample(&info, dts_rt, pts_rt, keyframe, data, base + pts_rt) {
        shared.set_error(e.to_string());
    }
}

/// Capped exponential backoff.
struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    fn new(initial: Duration, max: Duration) -> Self {
        Backoff {
            initial,
            max,
            next: initial,
        }
    }

    fn next(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(self.max);
        d
    }

    fn reset(&mut self) {
        self.next = self.initial;
    }
}

/// Everything a camera's supervisor needs.
pub struct CameraContext {
    pub config: Arc<IngestConfig>,
    pub board: Arc<StatusBoard>,
    pub clock: gst::Clock,
}

enum SessionEnd {
    Shutdown,
    Reconfigured,
    Failed(GapReason, String),
    /// The native client cannot record this camera: use GStreamer.
    UseGstreamer(String),
}

/// Runs one camera until `stop` is cancelled. `spec` changes restart the pipeline.
pub async fn supervise(
    ctx: Arc<CameraContext>,
    recorder: Arc<Mutex<Recorder>>,
    mut spec: watch::Receiver<CameraConfig>,
    stop: CancellationToken,
) {
    let mut backoff = Backoff::new(ctx.config.reconnect_initial, ctx.config.reconnect_max);
    let (site, name) = {
        let s = spec.borrow();
        (s.site.clone(), s.name.clone())
    };
    let mut attempt: u64 = 0;
    let mut gstreamer_only = ctx.config.rtsp_client == RtspClient::Gstreamer;
    loop {
        let current = spec.borrow_and_update().clone();
        ctx.board.update(&site, &name, |s| {
            s.set_state(if attempt == 0 {
                CameraState::Starting
            } else {
                CameraState::Reconnecting
            })
        });
        let native =
            !gstreamer_only && rtsp::eligible(&current.record, current.transport == Transport::Tcp);
        let end = if native {
            run_native_session(&ctx, &current, recorder.clone(), &mut spec, &stop).await
        } else {
            run_session(&ctx, &current, recorder.clone(), &mut spec, &stop).await
        };
        if let SessionEnd::UseGstreamer(why) = &end {
            tracing::info!(reason = %why, "recording this camera through GStreamer's RTSP client");
            gstreamer_only = true;
            continue;
        }
        let (reason, detail) = match &end {
            SessionEnd::Shutdown => (GapReason::IngestRestart, "ingest stopped".to_string()),
            SessionEnd::Reconfigured => (
                GapReason::IngestRestart,
                "camera configuration changed".to_string(),
            ),
            SessionEnd::Failed(r, d) => (*r, d.clone()),
            SessionEnd::UseGstreamer(_) => continue,
        };
        let recorded = {
            let Ok(mut rec) = recorder.lock() else {
                return;
            };
            let had_segment = rec.last_end_us().is_some();
            if let Err(e) = rec.end_session(reason, &detail) {
                tracing::error!(error = %e, "closing the open segment failed");
            }
            had_segment
        };
        match end {
            SessionEnd::Shutdown => {
                if let Ok(mut rec) = recorder.lock()
                    && let Err(e) = rec.close_open_gap()
                {
                    tracing::error!(error = %e, "recording the final gap failed");
                }
                ctx.board
                    .update(&site, &name, |s| s.set_state(CameraState::Stopped));
                return;
            }
            SessionEnd::Reconfigured => {
                tracing::info!("configuration changed: restarting the stream");
                backoff.reset();
                attempt = 0;
                continue;
            }
            SessionEnd::UseGstreamer(_) => continue,
            SessionEnd::Failed(_, detail) => {
                attempt += 1;
                metrics::get().reconnects.with_label_values(&[&site]).inc();
                let delay = backoff.next();
                tracing::warn!(error = %detail, retry_in_ms = delay.as_millis() as u64, recorded, "camera stream failed");
                ctx.board.update(&site, &name, |s| {
                    s.reconnects += 1;
                    s.set_error(detail.clone());
                    s.set_state(if attempt >= 3 {
                        CameraState::Offline
                    } else {
                        CameraState::Reconnecting
                    });
                });
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = stop.cancelled() => {}
                    _ = spec.changed() => { backoff.reset(); }
                }
                if stop.is_cancelled() {
                    if let Ok(mut rec) = recorder.lock()
                        && let Err(e) = rec.close_open_gap()
                    {
                        tracing::error!(error = %e, "recording the final gap failed");
                    }
                    ctx.board
                        .update(&site, &name, |s| s.set_state(CameraState::Stopped));
                    return;
                }
            }
        }
        // A session that recorded resets the backoff for the next failure.
        if recorded {
            backoff.reset();
        }
    }
}

async fn run_session(
    ctx: &Arc<CameraContext>,
    spec: &CameraConfig,
    recorder: Arc<Mutex<Recorder>>,
    spec_rx: &mut watch::Receiver<CameraConfig>,
    stop: &CancellationToken,
) -> SessionEnd {
    let shared = SessionShared::new(recorder);
    let pipeline = match build_pipeline(spec, &ctx.config, shared.clone(), &ctx.clock) {
        Ok(p) => p,
        Err(e) => return SessionEnd::Failed(GapReason::StreamError, e.to_string()),
    };
    let Some(bus) = pipeline.bus() else {
        return SessionEnd::Failed(GapReason::StreamError, "pipeline without bus".into());
    };
    let mut messages = bus.stream();
    tracing::debug!(url = %spec.redacted_record_url(), "connecting");
    if let Err(e) = pipeline.set_state(gst::State::Playing) {
        stop_pipeline(pipeline).await;
        return SessionEnd::Failed(GapReason::StreamLost, format!("cannot start stream: {e}"));
    }
    // Before the first sample, allow for connection set-up and the first keyframe.
    let first_sample_timeout = ctx.config.stall_timeout + Duration::from_secs(5);
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let end = loop {
        tokio::select! {
            _ = stop.cancelled() => break SessionEnd::Shutdown,
            changed = spec_rx.changed() => {
                if changed.is_err() { break SessionEnd::Shutdown; }
                break SessionEnd::Reconfigured;
            }
            msg = messages.next() => {
                use gst::MessageView;
                let Some(msg) = msg else {
                    break SessionEnd::Failed(GapReason::StreamError, "pipeline bus closed".into());
                };
                match msg.view() {
                    MessageView::Error(err) => {
                        // Source element and message only: the URL (with credentials) stays out.
                        let from = msg.src().map(|s| s.name().to_string()).unwrap_or_default();
                        break SessionEnd::Failed(
                            GapReason::StreamLost,
                            format!("{from}: {}", err.error()),
                        );
                    }
                    MessageView::Eos(_) => {
                        break SessionEnd::Failed(GapReason::StreamLost, "camera ended the stream".into());
                    }
                    _ => {}
                }
            }
            _ = tick.tick() => {
                if let Some(e) = shared.error.lock().ok().and_then(|mut e| e.take()) {
                    break SessionEnd::Failed(GapReason::StreamError, e);
                }
                let idle = shared.idle_for();
                if shared.got_sample.load(Ordering::Relaxed) {
                    if idle > ctx.config.stall_timeout {
                        break SessionEnd::Failed(
                            GapReason::StreamLost,
                            format!("no media for {:.1}s (stream stalled)", idle.as_secs_f64()),
                        );
                    }
                } else if idle > first_sample_timeout {
                    break SessionEnd::Failed(
                        GapReason::StreamLost,
                        format!("no media within {:.0}s of connecting", first_sample_timeout.as_secs_f64()),
                    );
                }
            }
        }
    };
    stop_pipeline(pipeline).await;
    end
}

/// Tears a pipeline down off the async threads (rtspsrc may wait for the camera's TEARDOWN
/// answer).
async fn stop_pipeline(pipeline: gst::Pipeline) {
    let _ = tokio::task::spawn_blocking(move || {
        let _ = pipeline.set_state(gst::State::Null);
    })
    .await;
}

/// Hands the native client's access units to the recorder.
struct RecorderSink {
    shared: Arc<SessionShared>,
}

impl UnitSink for RecorderSink {
    fn unit(
        &mut self,
        info: &Arc<TrackInfo>,
        pts_ns: u64,
        keyframe: bool,
        data: bytes::Bytes,
        wall_ns: u64,
    ) -> Result<(), String> {
        self.shared.touch();
        let mut rec = self
            .shared
            .recorder
            .lock()
            .map_err(|_| "recorder state poisoned".to_string())?;
        rec.on_sample(info, pts_ns, pts_ns, keyframe, data, wall_ns)
            .map_err(|e| e.to_string())
    }
}

/// One session of the native client, on a thread of its own; see [`crate::rtsp`].
async fn run_native_session(
    ctx: &Arc<CameraContext>,
    spec: &CameraConfig,
    recorder: Arc<Mutex<Recorder>>,
    spec_rx: &mut watch::Receiver<CameraConfig>,
    stop: &CancellationToken,
) -> SessionEnd {
    let shared = SessionShared::new(recorder);
    let stop_flag = Arc::new(AtomicBool::new(false));
    let params = NativeParams {
        url: spec.record.clone(),
        username: spec.username.clone(),
        password: spec.password.clone(),
        stall_timeout: ctx.config.stall_timeout,
        stop: stop_flag.clone(),
    };
    let (tx, mut rx) = tokio::sync::oneshot::channel();
    let mut sink = RecorderSink { shared };
    let span = tracing::Span::current();
    let spawned = std::thread::Builder::new()
        .name(format!("rtsp-{}", spec.name))
        .stack_size(512 * 1024)
        .spawn(move || {
            let _entered = span.enter();
            let _ = tx.send(rtsp::run_session(&params, &mut sink));
        });
    if let Err(e) = spawned {
        return SessionEnd::Failed(
            GapReason::StreamError,
            format!("cannot start a thread: {e}"),
        );
    }
    tracing::debug!(url = %spec.redacted_record_url(), "connecting (native RTSP)");
    let from_thread = |end: Result<NativeEnd, _>| match end {
        Ok(NativeEnd::Stopped) => SessionEnd::Shutdown,
        Ok(NativeEnd::Failed(r, d)) => SessionEnd::Failed(r, d),
        Ok(NativeEnd::Unsupported(why)) => SessionEnd::UseGstreamer(why),
        Err(_) => SessionEnd::Failed(GapReason::StreamError, "the RTSP thread died".into()),
    };
    let end = tokio::select! {
        _ = stop.cancelled() => SessionEnd::Shutdown,
        changed = spec_rx.changed() => {
            if changed.is_err() { SessionEnd::Shutdown } else { SessionEnd::Reconfigured }
        }
        end = &mut rx => return from_thread(end),
    };
    // Stop the thread (it looks at the flag every 250 ms) and wait for its TEARDOWN.
    stop_flag.store(true, Ordering::Relaxed);
    let _ = rx.await;
    end
}
