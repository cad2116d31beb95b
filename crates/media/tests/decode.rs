//! Decoding for analysis against real parts: simulated RTSP cameras (`kordon-camsim`) serving
//! the real street clip, H.264 and H.265, with and without B-frames, through the same
//! [`Source`](kordon_media::Source) ingest records from.
//!
//! Asserts what an analysis would see: the analysed rate by the stream's own clock (frames
//! counted by presentation time, never by wall time), the picture size (scaled down keeping the
//! aspect ratio), a real picture (not blank, not uniform), every frame decoded, and a camera that
//! goes away shows as reconnecting and comes back running.

use std::sync::Arc;
use std::time::Duration;

use kordon_camsim::{Camsim, CamsimConfig, CamsimHandle, ClipSource, Codec, Source, StreamKind};
use kordon_media::{
    DecodeConfig, DecodeCounters, DecodeEvent, DecodedFrame, OpenContext, RtspClient, SourceConfig,
    StreamConfig, StreamState, Transport, run_decoded,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const TICKS_PER_SECOND: i64 = 90_000;

async fn camsim(codec: Codec, bframes: u32) -> CamsimHandle {
    Camsim::start(CamsimConfig {
        cameras: 1,
        listen: "127.0.0.1:0".parse().unwrap(),
        control_listen: None,
        codec,
        source: Source::Clip,
        clip: ClipSource::Embedded,
        cache_dir: kordon_camsim::default_cache_dir(),
        bframes,
        refuse_tcp: false,
    })
    .await
    .expect("camsim starts")
}

fn stream(sim: &CamsimHandle, kind: StreamKind) -> StreamConfig {
    StreamConfig {
        name: "test-cam1".into(),
        url: sim.url(1, kind).unwrap(),
        transport: Transport::Tcp,
        username: None,
        password: None,
    }
}

/// A running decode loop whose events arrive on a channel.
struct Running {
    events: mpsc::UnboundedReceiver<DecodeEvent>,
    counters: Arc<DecodeCounters>,
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

fn start(stream: StreamConfig, cfg: DecodeConfig) -> Running {
    start_with(stream, cfg, RtspClient::Auto)
}

fn start_with(stream: StreamConfig, cfg: DecodeConfig, client: RtspClient) -> Running {
    let (tx, events) = mpsc::unbounded_channel();
    let counters = Arc::new(DecodeCounters::default());
    let cancel = CancellationToken::new();
    let source = SourceConfig {
        rtsp_client: client,
        reconnect_initial: Duration::from_millis(250),
        reconnect_max: Duration::from_secs(1),
        ..SourceConfig::default()
    };
    let task = tokio::spawn(run_decoded(
        stream,
        OpenContext::new(source),
        cfg,
        counters.clone(),
        cancel.clone(),
        move |e| {
            let _ = tx.send(e);
        },
    ));
    Running {
        events,
        counters,
        cancel,
        task,
    }
}

impl Running {
    /// Analysed frames until their presentation times span `span_s` seconds; fails after
    /// `limit`.
    async fn frames_spanning(&mut self, span_s: i64, limit: Duration) -> Vec<DecodedFrame> {
        let mut frames: Vec<DecodedFrame> = Vec::new();
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let event = tokio::time::timeout_at(deadline, self.events.recv())
                .await
                .unwrap_or_else(|_| {
                    panic!(
                        "only {} frames within {limit:?} (decoded {})",
                        frames.len(),
                        self.counters.decoded()
                    )
                })
                .expect("decode loop running");
            match event {
                DecodeEvent::Frame(f) => {
                    if let Some(first) = frames.first()
                        && f.pts - first.pts >= span_s * TICKS_PER_SECOND
                    {
                        return frames;
                    }
                    frames.push(f);
                }
                DecodeEvent::State(StreamState::Reconnecting { error })
                | DecodeEvent::State(StreamState::Offline { error }) => {
                    panic!("stream failed while decoding: {error}")
                }
                DecodeEvent::State(_) => {}
            }
        }
    }

    /// Waits for a state matching `want`; returns it.
    async fn state(&mut self, want: fn(&StreamState) -> bool, limit: Duration) -> StreamState {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let event = tokio::time::timeout_at(deadline, self.events.recv())
                .await
                .unwrap_or_else(|_| panic!("no such state within {limit:?}"))
                .expect("decode loop running");
            if let DecodeEvent::State(s) = event
                && want(&s)
            {
                return s;
            }
        }
    }

    async fn stop(self) {
        self.cancel.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("decode loop stops when cancelled")
            .unwrap();
    }
}

/// What every decoded stream must show: `span_s` seconds of stream at `fps` analysed frames a
/// second, each `width` x `height` packed BGR of a real picture.
fn assert_pictures(frames: &[DecodedFrame], fps: f64, span_s: i64, width: u32, height: u32) {
    let expected = span_s as f64 * fps;
    let n = frames.len() as f64;
    assert!(
        (n - expected).abs() <= 1.0,
        "{n} frames over {span_s} s of stream time, expected {expected} at {fps} fps"
    );
    for w in frames.windows(2) {
        assert!(w[1].pts > w[0].pts, "presentation order");
        assert!(
            w[1].wall_clock >= w[0].wall_clock,
            "wall clock follows presentation time"
        );
    }
    for f in frames {
        assert_eq!((f.width, f.height), (width, height));
        assert_eq!(f.stride, width as usize * 3);
        assert_eq!(f.bgr.len(), f.stride * height as usize);
    }
    // A real picture: not blank, and not one colour (the clip is a street scene).
    let f = &frames[frames.len() / 2];
    let mean = f.bgr.iter().map(|b| f64::from(*b)).sum::<f64>() / f.bgr.len() as f64;
    let var = f
        .bgr
        .iter()
        .map(|b| (f64::from(*b) - mean).powi(2))
        .sum::<f64>()
        / f.bgr.len() as f64;
    assert!(mean > 10.0, "picture is (nearly) black: mean {mean}");
    assert!(
        var.sqrt() > 10.0,
        "picture is flat: standard deviation {}",
        var.sqrt()
    );
    // Consecutive analysed pictures differ (the clip moves).
    assert!(
        frames.windows(2).any(|w| w[0].bgr != w[1].bgr),
        "every picture is the same"
    );
}

async fn decodes(codec: Codec, bframes: u32, kind: StreamKind, want: (u32, u32)) {
    decodes_with(codec, bframes, kind, want, RtspClient::Auto).await;
}

async fn decodes_with(
    codec: Codec,
    bframes: u32,
    kind: StreamKind,
    want: (u32, u32),
    client: RtspClient,
) {
    let sim = camsim(codec, bframes).await;
    let fps = 5.0;
    let mut run = start_with(
        stream(&sim, kind),
        DecodeConfig {
            fps,
            max_width: 1280,
        },
        client,
    );
    let span_s = 4;
    let frames = run.frames_spanning(span_s, Duration::from_secs(60)).await;
    assert_pictures(&frames, fps, span_s, want.0, want.1);
    // Every frame of the stream (25 fps) was decoded, only the analysed ones handed on.
    let (decoded, analysed) = (run.counters.decoded(), run.counters.analysed());
    assert!(
        decoded >= 4 * analysed,
        "decoded {decoded}, analysed {analysed}: every frame is decoded at 25 fps"
    );
    let session = run.counters.session().expect("the session is described");
    let (w, h) = kind.dimensions();
    assert_eq!((session.width, session.height), (w, h), "{session:?}");
    assert_eq!(session.source.as_str(), client_name(client));
    run.stop().await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h264_sub_stream_decodes_at_the_analysis_rate() {
    decodes(Codec::H264, 0, StreamKind::Sub, (640, 360)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h264_with_b_frames_is_scaled_down_keeping_the_aspect_ratio() {
    decodes(Codec::H264, 2, StreamKind::Main, (1280, 720)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h265_decodes() {
    decodes(Codec::H265, 0, StreamKind::Sub, (640, 360)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h265_with_b_frames_decodes() {
    decodes(Codec::H265, 2, StreamKind::Sub, (640, 360)).await;
}

fn client_name(client: RtspClient) -> &'static str {
    match client {
        RtspClient::Auto => "retina",
        RtspClient::Gstreamer => "gstreamer",
    }
}

/// The GStreamer client (what `rtsps://` cameras get) feeds the decoder the same frames.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gstreamer_client_decodes_b_frames_too() {
    decodes_with(
        Codec::H264,
        2,
        StreamKind::Sub,
        (640, 360),
        RtspClient::Gstreamer,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_camera_reconnects_and_runs_again() {
    let sim = camsim(Codec::H264, 0).await;
    let mut run = start(stream(&sim, StreamKind::Sub), DecodeConfig::default());
    run.state(|s| *s == StreamState::Running, Duration::from_secs(30))
        .await;

    sim.stop_camera(1).unwrap();
    let s = run
        .state(
            |s| matches!(s, StreamState::Reconnecting { .. }),
            Duration::from_secs(30),
        )
        .await;
    let StreamState::Reconnecting { error } = s else {
        unreachable!()
    };
    assert!(!error.is_empty());
    tokio::time::sleep(Duration::from_secs(2)).await;

    sim.start_camera(1).unwrap();
    run.state(|s| *s == StreamState::Running, Duration::from_secs(30))
        .await;
    // Pictures flow again.
    let frames = run.frames_spanning(1, Duration::from_secs(30)).await;
    assert!(!frames.is_empty());
    run.stop().await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_camera_goes_offline_and_credentials_stay_out_of_errors() {
    // Nothing listens on port 9 (discard) of localhost: connection refused.
    let mut run = start(
        StreamConfig {
            name: "test-cam1".into(),
            url: "rtsp://admin:s3cret@127.0.0.1:9/cam1/sub".into(),
            transport: Transport::Tcp,
            username: None,
            password: None,
        },
        DecodeConfig::default(),
    );
    let s = run
        .state(
            |s| matches!(s, StreamState::Offline { .. }),
            Duration::from_secs(30),
        )
        .await;
    let StreamState::Offline { error } = s else {
        unreachable!()
    };
    assert!(
        !error.contains("s3cret") && !error.contains("admin"),
        "{error}"
    );
    run.stop().await;
}
