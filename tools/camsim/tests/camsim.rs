//! The simulator as a player sees it: real GStreamer RTSP clients decode what it serves.
//!
//! Encodes are cached under the target directory, so only the first run pays for them.

use std::{
    net::SocketAddr,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use gstreamer::{self as gst, prelude::*};
use gstreamer_app as gst_app;
use kordon_camsim::{
    CameraState, Camsim, CamsimConfig, CamsimError, CamsimHandle, ClipSource, Codec, Source,
    StreamKind,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const FRAME: Duration = Duration::from_millis(40);

fn cache_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("camsim-cache")
}

fn config(cameras: usize, codec: Codec, source: Source) -> CamsimConfig {
    CamsimConfig {
        cameras,
        listen: "127.0.0.1:0".parse().expect("address"),
        control_listen: None,
        codec,
        source,
        clip: ClipSource::Embedded,
        cache_dir: cache_dir(),
        bframes: 0,
        refuse_tcp: false,
    }
}

async fn camsim(cameras: usize, codec: Codec) -> CamsimHandle {
    Camsim::start(config(cameras, codec, Source::Clip))
        .await
        .expect("camsim starts")
}

#[derive(Debug, Clone)]
struct Frame {
    at: Instant,
    pts: Option<gst::ClockTime>,
    width: i32,
    height: i32,
    /// The luma plane, kept when asked for.
    luma: Option<Vec<u8>>,
}

#[derive(Debug, Clone, PartialEq)]
enum End {
    Eos,
    Error(String),
}

/// A player: `rtspsrc ! depay ! parse ! avdec ! appsink` over RTSP/TCP.
struct Client {
    url: String,
    pipeline: gst::Pipeline,
    frames: Arc<Mutex<Vec<Frame>>>,
    end: Option<End>,
}

impl Client {
    fn pull(url: &str, codec: Codec) -> Client {
        Client::start(url, codec, false)
    }

    fn start(url: &str, codec: Codec, keep_luma: bool) -> Client {
        gst::init().expect("gstreamer");
        let chain = match codec {
            Codec::H264 => "rtph264depay ! h264parse ! avdec_h264",
            Codec::H265 => "rtph265depay ! h265parse ! avdec_h265",
        };
        let pipeline = gst::parse::launch(&format!(
            "rtspsrc name=src protocols=tcp latency=100 buffer-mode=none ! {chain} ! videoconvert ! \
             video/x-raw,format=I420 ! appsink name=sink sync=false"
        ))
        .expect("client pipeline")
        .downcast::<gst::Pipeline>()
        .expect("pipeline");
        pipeline
            .by_name("src")
            .expect("rtspsrc")
            .set_property("location", url);
        let frames = Arc::new(Mutex::new(Vec::new()));
        let sink = pipeline
            .by_name("sink")
            .expect("appsink")
            .downcast::<gst_app::AppSink>()
            .expect("appsink");
        let recorded = frames.clone();
        sink.set_callbacks(
            gst_app::AppSinkCallbacks::builder()
                .new_sample(move |sink| {
                    let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                    let structure = sample
                        .caps()
                        .and_then(|c| c.structure(0).map(|s| s.to_owned()));
                    let (width, height) = structure
                        .map(|s| {
                            (
                                s.get::<i32>("width").unwrap_or(0),
                                s.get::<i32>("height").unwrap_or(0),
                            )
                        })
                        .unwrap_or((0, 0));
                    let buffer = sample.buffer();
                    let luma = keep_luma
                        .then(|| {
                            let map = buffer?.map_readable().ok()?;
                            let plane = (width as usize) * (height as usize);
                            map.as_slice().get(..plane).map(<[u8]>::to_vec)
                        })
                        .flatten();
                    recorded.lock().expect("frames").push(Frame {
                        at: Instant::now(),
                        pts: buffer.and_then(|b| b.pts()),
                        width,
                        height,
                        luma,
                    });
                    Ok(gst::FlowSuccess::Ok)
                })
                .build(),
        );
        pipeline
            .set_state(gst::State::Playing)
            .expect("client starts");
        Client {
            url: url.to_owned(),
            pipeline,
            frames,
            end: None,
        }
    }

    fn frames(&self) -> Vec<Frame> {
        self.frames.lock().expect("frames").clone()
    }

    fn poll_bus(&mut self) {
        let bus = self.pipeline.bus().expect("bus");
        while let Some(message) = bus.pop() {
            match message.view() {
                gst::MessageView::Eos(_) => self.end = self.end.clone().or(Some(End::Eos)),
                gst::MessageView::Error(e) => {
                    self.end = self.end.clone().or(Some(End::Error(e.error().to_string())))
                }
                _ => {}
            }
        }
    }

    /// Waits until `n` frames arrived; fails on EOS, error or timeout.
    async fn wait_frames(&mut self, n: usize, timeout: Duration) -> Vec<Frame> {
        let deadline = Instant::now() + timeout;
        loop {
            self.poll_bus();
            let frames = self.frames();
            if frames.len() >= n {
                return frames;
            }
            assert!(
                self.end.is_none(),
                "{}: stream ended after {} frames: {:?}",
                self.url,
                frames.len(),
                self.end
            );
            assert!(
                Instant::now() < deadline,
                "{}: only {} of {n} frames within {timeout:?}",
                self.url,
                frames.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits for EOS or an error.
    async fn wait_end(&mut self, timeout: Duration) -> End {
        let deadline = Instant::now() + timeout;
        loop {
            self.poll_bus();
            if let Some(end) = &self.end {
                return end.clone();
            }
            assert!(
                Instant::now() < deadline,
                "stream did not end within {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

fn assert_25_fps(frames: &[Frame], what: &str) {
    // The stream's own timestamps: exactly one frame apart.
    for pair in frames.windows(2) {
        let (Some(a), Some(b)) = (pair[0].pts, pair[1].pts) else {
            panic!("{what}: frame without timestamp");
        };
        let delta = Duration::from_nanos((b - a).nseconds());
        assert!(
            delta.abs_diff(FRAME) <= Duration::from_millis(2),
            "{what}: frames {delta:?} apart"
        );
    }
    // Paced in real time (loosely: this machine is shared), not bursted.
    let start = frames[0].at + Duration::from_millis(500);
    let window = Duration::from_secs(2);
    let in_window = frames
        .iter()
        .filter(|f| f.at >= start && f.at < start + window)
        .count();
    assert!(
        (35..=65).contains(&in_window),
        "{what}: {in_window} frames in {window:?}, expected about 50"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn main_and_sub_decode_at_25_fps() {
    let sim = camsim(2, Codec::H264).await;
    let mut main = Client::pull(&sim.url(1, StreamKind::Main).expect("url"), Codec::H264);
    let mut sub = Client::pull(&sim.url(2, StreamKind::Sub).expect("url"), Codec::H264);

    let main_frames = main.wait_frames(75, Duration::from_secs(15)).await;
    let sub_frames = sub.wait_frames(75, Duration::from_secs(15)).await;
    assert!(
        main_frames
            .iter()
            .all(|f| (f.width, f.height) == (1920, 1080))
    );
    assert!(sub_frames.iter().all(|f| (f.width, f.height) == (640, 360)));
    assert_25_fps(&main_frames, "cam1/main");
    assert_25_fps(&sub_frames, "cam2/sub");

    let status = sim.cameras();
    assert_eq!(status.len(), 2);
    assert_eq!(status[0].streams[0].kind, StreamKind::Main);
    assert_eq!(status[0].streams[0].clients, 1);
    assert_eq!(status[0].streams[1].clients, 0);
    assert_eq!(status[1].streams[1].clients, 1);
    let main_kbps = status[0].streams[0].bitrate_kbps;
    let sub_kbps = status[0].streams[1].bitrate_kbps;
    assert!(
        (3600..=4400).contains(&main_kbps),
        "main at {main_kbps} kbit/s"
    );
    assert!((450..=570).contains(&sub_kbps), "sub at {sub_kbps} kbit/s");
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_camera_ends_streams_and_refuses_clients_until_started() {
    let sim = camsim(2, Codec::H264).await;
    let url = sim.url(1, StreamKind::Sub).expect("url");
    let mut before = Client::pull(&url, Codec::H264);
    before.wait_frames(10, Duration::from_secs(10)).await;

    let status = sim.stop_camera(1).expect("stop");
    assert_eq!(status.state, CameraState::Stopped);
    // The RTCP BYE ends the stream cleanly before the connection is closed.
    assert_eq!(before.wait_end(Duration::from_secs(5)).await, End::Eos);

    let mut refused = Client::pull(&url, Codec::H264);
    match refused.wait_end(Duration::from_secs(5)).await {
        End::Error(message) => assert!(message.contains("Not found"), "{message}"),
        End::Eos => panic!("a stopped camera must refuse new clients"),
    }
    assert!(refused.frames().is_empty());

    // Other cameras are unaffected.
    let mut other = Client::pull(&sim.url(2, StreamKind::Sub).expect("url"), Codec::H264);
    other.wait_frames(5, Duration::from_secs(10)).await;

    assert_eq!(
        sim.start_camera(1).expect("start").state,
        CameraState::Running
    );
    let mut after = Client::pull(&url, Codec::H264);
    let frames = after.wait_frames(10, Duration::from_secs(10)).await;
    assert!(frames.iter().all(|f| (f.width, f.height) == (640, 360)));
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stall_sends_nothing_but_keeps_the_session() {
    let sim = camsim(1, Codec::H264).await;
    let mut client = Client::pull(&sim.url(1, StreamKind::Sub).expect("url"), Codec::H264);
    client.wait_frames(10, Duration::from_secs(10)).await;

    // A timed stall.
    let stalled_at = Instant::now();
    let status = sim
        .stall_camera(1, Some(Duration::from_secs(2)))
        .expect("stall");
    assert_eq!(status.state, CameraState::Stalled);
    tokio::time::sleep(Duration::from_millis(1800)).await;
    let during = client.frames();
    let quiet_from = stalled_at + Duration::from_millis(400);
    assert_eq!(
        during.iter().filter(|f| f.at > quiet_from).count(),
        0,
        "frames arrived during the stall"
    );
    let count = during.len();
    let frames = client
        .wait_frames(count + 25, Duration::from_secs(10))
        .await;
    let resumed = &frames[count];
    assert!(resumed.at >= stalled_at + Duration::from_millis(1900));
    // Timestamps move on by the stall, as a real camera's would.
    let gap = resumed.pts.expect("pts") - frames[count - 1].pts.expect("pts");
    assert!(gap >= gst::ClockTime::from_mseconds(1500), "gap {gap}");
    assert_eq!(sim.camera(1).expect("status").state, CameraState::Running);

    // A stall until started.
    sim.stall_camera(1, None).expect("stall");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let count = client.frames().len();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(
        client.frames().len(),
        count,
        "frames arrived during the stall"
    );
    assert_eq!(sim.camera(1).expect("status").state, CameraState::Stalled);
    sim.start_camera(1).expect("start");
    client
        .wait_frames(count + 10, Duration::from_secs(10))
        .await;
    assert!(client.end.is_none());
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_spare_other_cameras_on_the_same_channel() {
    // With six cameras, cam1 and cam6 share the clip's first phase: one pipeline serves both.
    let sim = camsim(6, Codec::H264).await;
    let url1 = sim.url(1, StreamKind::Sub).expect("url");
    let mut cam1 = Client::pull(&url1, Codec::H264);
    let mut cam6 = Client::pull(&sim.url(6, StreamKind::Sub).expect("url"), Codec::H264);
    cam1.wait_frames(5, Duration::from_secs(10)).await;
    cam6.wait_frames(5, Duration::from_secs(10)).await;

    // Stalling cam1 leaves cam6 running, and a client joining cam1 during the stall waits too.
    sim.stall_camera(1, None).expect("stall");
    tokio::time::sleep(Duration::from_millis(400)).await;
    let mut joined = Client::pull(&url1, Codec::H264);
    let (stalled_count, other_count) = (cam1.frames().len(), cam6.frames().len());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        cam1.frames().len(),
        stalled_count,
        "cam1 got frames while stalled"
    );
    assert!(
        joined.frames().is_empty(),
        "a client joining a stalled camera got frames"
    );
    cam6.wait_frames(other_count + 25, Duration::from_secs(10))
        .await;
    assert_eq!(sim.camera(1).expect("status").streams[1].clients, 2);

    sim.start_camera(1).expect("start");
    cam1.wait_frames(stalled_count + 10, Duration::from_secs(10))
        .await;
    // The joined client waits for the next keyframe (at most a GOP, 2 s) before it decodes.
    joined.wait_frames(5, Duration::from_secs(10)).await;

    // Stopping cam6 ends its stream and leaves cam1's.
    sim.stop_camera(6).expect("stop");
    assert_eq!(cam6.wait_end(Duration::from_secs(5)).await, End::Eos);
    let count = cam1.frames().len();
    cam1.wait_frames(count + 25, Duration::from_secs(10)).await;
    sim.shutdown().await;
}

/// A one-second clip (25 frames), made once with GStreamer.
fn short_clip() -> PathBuf {
    let path = cache_dir().join("short-clip-1s.mp4");
    if !path.exists() {
        gst::init().expect("gstreamer");
        std::fs::create_dir_all(cache_dir()).expect("cache dir");
        let tmp = cache_dir().join(format!("short-clip-{}.tmp", std::process::id()));
        let pipeline = gst::parse::launch(&format!(
            "videotestsrc num-buffers=25 pattern=ball ! video/x-raw,width=320,height=240,framerate=25/1 \
             ! x264enc ! h264parse ! mp4mux ! filesink location={}",
            tmp.display()
        ))
        .expect("clip pipeline");
        pipeline.set_state(gst::State::Playing).expect("play");
        let bus = pipeline.bus().expect("bus");
        let message = bus
            .timed_pop_filtered(
                gst::ClockTime::from_seconds(30),
                &[gst::MessageType::Eos, gst::MessageType::Error],
            )
            .expect("clip written");
        assert!(
            matches!(message.view(), gst::MessageView::Eos(_)),
            "{message:?}"
        );
        pipeline.set_state(gst::State::Null).expect("stop");
        std::fs::rename(&tmp, &path).expect("rename");
    }
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_clip_loops_without_gaps_or_eos() {
    let mut config = config(1, Codec::H264, Source::Clip);
    config.clip = ClipSource::File(short_clip());
    let sim = Camsim::start(config).await.expect("camsim starts");
    assert_eq!(sim.cameras()[0].streams[1].width, 640);
    let mut client = Client::pull(&sim.url(1, StreamKind::Sub).expect("url"), Codec::H264);
    // 70 frames of a 25-frame loop cross the loop point at least twice.
    let frames = client.wait_frames(70, Duration::from_secs(10)).await;
    assert!(frames.iter().all(|f| (f.width, f.height) == (640, 360)));
    assert_25_fps(&frames, "looped clip");
    assert!(client.end.is_none());
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h265_main_decodes() {
    let sim = camsim(1, Codec::H265).await;
    let mut client = Client::pull(&sim.url(1, StreamKind::Main).expect("url"), Codec::H265);
    let frames = client.wait_frames(25, Duration::from_secs(15)).await;
    assert!(frames.iter().all(|f| (f.width, f.height) == (1920, 1080)));
    assert_eq!(sim.cameras()[0].streams[0].codec, Codec::H265);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pattern_burns_in_a_running_clock() {
    let sim = Camsim::start(config(1, Codec::H264, Source::Pattern))
        .await
        .expect("camsim starts");
    let mut client = Client::start(
        &sim.url(1, StreamKind::Sub).expect("url"),
        Codec::H264,
        true,
    );
    let frames = client.wait_frames(30, Duration::from_secs(10)).await;
    assert!(frames.iter().all(|f| (f.width, f.height) == (640, 360)));
    let first = frames[0].luma.as_ref().expect("luma");
    let later = frames[26].luma.as_ref().expect("luma");
    let at = |luma: &[u8], x: usize, y: usize| luma[y * 640 + x];
    // Sub stream: font pixels are 2x2, boxes start 8 pixels from the edges with 2 pixels of
    // padding. Name box at the top-left: black padding, white ink of the `C` of `CAM1`.
    for frame in [first, later] {
        assert!(at(frame, 9, 10) < 60, "no black name box");
        assert!(at(frame, 13, 10) > 170, "no white text in the name box");
    }
    // The clock box at the bottom-left covers the moving bars, so a change inside it is the
    // clock running: 26 frames later, at least one digit differs.
    let clock_box = |luma: &[u8]| -> Vec<u8> {
        (336..350)
            .flat_map(|y| (10..150).map(move |x| (x, y)))
            .map(|(x, y)| at(luma, x, y))
            .collect()
    };
    assert!(at(first, 9, 340) < 60, "no black clock box");
    assert_ne!(clock_box(first), clock_box(later), "the clock does not run");
    sim.shutdown().await;
}

/// A minimal HTTP/1.1 client: returns status and body.
async fn http(addr: SocketAddr, method: &str, path: &str) -> (u16, serde_json::Value) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: camsim\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("receive");
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let body = response.split("\r\n\r\n").nth(1).unwrap_or_default();
    (
        status,
        serde_json::from_str(body).unwrap_or(serde_json::Value::Null),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_control_endpoint() {
    let mut config = config(2, Codec::H264, Source::Clip);
    config.control_listen = Some("127.0.0.1:0".parse().expect("address"));
    let sim = Camsim::start(config).await.expect("camsim starts");
    let addr = sim.control_addr().expect("control endpoint");

    let (status, body) = http(addr, "GET", "/cameras").await;
    assert_eq!(status, 200);
    let cameras = body.as_array().expect("array");
    assert_eq!(cameras.len(), 2);
    assert_eq!(cameras[1]["name"], "cam2");
    assert_eq!(cameras[1]["state"], "running");
    assert_eq!(
        cameras[1]["streams"][1]["url"],
        sim.url(2, StreamKind::Sub).expect("url")
    );

    let (status, body) = http(addr, "POST", "/cameras/1/stall?seconds=1.5").await;
    assert_eq!((status, &body["state"]), (200, &"stalled".into()));
    assert!(
        body["stall_remaining_ms"]
            .as_u64()
            .is_some_and(|ms| ms <= 1500)
    );

    let (status, body) = http(addr, "POST", "/cameras/1/stop").await;
    assert_eq!((status, &body["state"]), (200, &"stopped".into()));
    assert_eq!(sim.camera(1).expect("status").state, CameraState::Stopped);
    let mut refused = Client::pull(&sim.url(1, StreamKind::Sub).expect("url"), Codec::H264);
    assert!(matches!(
        refused.wait_end(Duration::from_secs(5)).await,
        End::Error(_)
    ));

    let (status, body) = http(addr, "POST", "/cameras/1/stall?seconds=2").await;
    assert_eq!(status, 409, "{body}");
    let (status, body) = http(addr, "POST", "/cameras/3/stop").await;
    assert_eq!(status, 404);
    assert!(body["error"].as_str().is_some_and(|e| e.contains("1 to 2")));
    let (status, _) = http(addr, "POST", "/cameras/2/stall?seconds=-1").await;
    assert_eq!(status, 400);
    let (status, _) = http(addr, "POST", "/cameras/2/stall?seconds=soon").await;
    assert_eq!(status, 400);
    let (status, _) = http(addr, "GET", "/cameras/first").await;
    assert_eq!(status, 400);

    let (status, body) = http(addr, "POST", "/cameras/1/start").await;
    assert_eq!((status, &body["state"]), (200, &"running".into()));
    let (status, body) = http(addr, "GET", "/cameras/1").await;
    assert_eq!((status, &body["state"]), (200, &"running".into()));
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_configuration_is_refused_before_serving() {
    let err = Camsim::start(config(0, Codec::H264, Source::Clip))
        .await
        .err()
        .expect("zero cameras");
    assert!(
        matches!(
            err,
            CamsimError::InvalidConfig {
                key: "--cameras",
                ..
            }
        ),
        "{err}"
    );

    let mut missing_clip = config(1, Codec::H264, Source::Clip);
    missing_clip.clip = ClipSource::File("/nonexistent/clip.mp4".into());
    let err = Camsim::start(missing_clip)
        .await
        .err()
        .expect("missing clip");
    assert!(err.to_string().contains("--clip"), "{err}");

    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let mut busy = config(1, Codec::H264, Source::Clip);
    busy.listen = taken.local_addr().expect("addr");
    let err = Camsim::start(busy).await.err().expect("port in use");
    assert!(
        matches!(err, CamsimError::Bind { what: "RTSP", .. }),
        "{err}"
    );
}
