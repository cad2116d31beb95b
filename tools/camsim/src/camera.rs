//! One simulated camera's run state, as the control endpoint and the handle report it.

use std::{
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::{Duration, Instant},
};

use gstreamer_rtsp_server as rtsp_server;
use serde::Serialize;

use crate::{
    CamsimError,
    config::{Codec, FPS, StreamKind},
    media::EncodedStream,
};

/// A camera's state as reported by [`crate::CamsimHandle::cameras`] and `GET /cameras`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CameraState {
    /// Serving media.
    Running,
    /// Sessions stay open but no media flows.
    Stalled,
    /// Not serving: requests get `404 Not Found`.
    Stopped,
}

/// One camera's status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CameraStatus {
    /// 1-based camera number.
    pub index: usize,
    /// `cam<index>`, the first path segment of its URLs.
    pub name: String,
    pub state: CameraState,
    /// Time left of a timed stall; `None` when not stalled or stalled until started.
    pub stall_remaining_ms: Option<u64>,
    pub streams: Vec<StreamStatus>,
}

/// One stream of a camera.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StreamStatus {
    pub kind: StreamKind,
    pub url: String,
    pub codec: Codec,
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    /// Average bitrate of the encoded loop.
    pub bitrate_kbps: u64,
    /// RTSP sessions on this stream.
    pub clients: usize,
}

#[derive(Debug, Clone, Copy)]
enum Mode {
    Running,
    Stalled { until: Option<Instant> },
    Stopped,
}

struct Inner {
    mode: Mode,
    /// Identifies the latest stall, so that an old stall's timer does not end a newer one.
    stall_generation: u64,
    /// Sessions whose transports this camera's stall switched off.
    stalled: Vec<rtsp_server::RTSPSessionMedia>,
}

pub(crate) struct Camera {
    pub index: usize,
    pub name: String,
    /// Channel (shared pipeline) serving each stream, by [`StreamKind`] order.
    pub channels: [usize; 2],
    streams: [Arc<EncodedStream>; 2],
    inner: Mutex<Inner>,
}

impl Camera {
    pub fn new(index: usize, channels: [usize; 2], streams: [Arc<EncodedStream>; 2]) -> Camera {
        Camera {
            index,
            name: format!("cam{index}"),
            channels,
            streams,
            inner: Mutex::new(Inner {
                mode: Mode::Running,
                stall_generation: 0,
                stalled: Vec::new(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// URL path of one of the camera's streams.
    pub fn path(&self, kind: StreamKind) -> String {
        format!("/{}/{}", self.name, kind)
    }

    pub fn paths(&self) -> Vec<String> {
        StreamKind::ALL.iter().map(|k| self.path(*k)).collect()
    }

    /// The current state; a timed stall that has run out counts as running.
    pub fn state(&self) -> CameraState {
        state_of(self.lock().mode, Instant::now()).0
    }

    /// Stalls the camera for `duration`, or until started when `None`. Returns the stall's
    /// generation, for [`Camera::end_stall`].
    pub fn stall(&self, duration: Option<Duration>) -> Result<u64, CamsimError> {
        let mut inner = self.lock();
        if matches!(inner.mode, Mode::Stopped) {
            return Err(CamsimError::CameraStopped { index: self.index });
        }
        inner.stall_generation += 1;
        inner.mode = Mode::Stalled {
            until: duration.map(|d| Instant::now() + d),
        };
        Ok(inner.stall_generation)
    }

    /// Ends stall `generation` if it is still the current one; returns the sessions to switch
    /// back on (`None` when that stall is over already).
    pub fn end_stall(&self, generation: u64) -> Option<Vec<rtsp_server::RTSPSessionMedia>> {
        let mut inner = self.lock();
        let current =
            inner.stall_generation == generation && matches!(inner.mode, Mode::Stalled { .. });
        current.then(|| {
            inner.mode = Mode::Running;
            std::mem::take(&mut inner.stalled)
        })
    }

    /// Running again. Returns the previous state and the sessions a stall switched off.
    pub fn start(&self) -> (CameraState, Vec<rtsp_server::RTSPSessionMedia>) {
        let mut inner = self.lock();
        let previous = std::mem::replace(&mut inner.mode, Mode::Running);
        (
            state_of(previous, Instant::now()).0,
            std::mem::take(&mut inner.stalled),
        )
    }

    /// Stopped. Returns whether it was serving before.
    pub fn stop(&self) -> bool {
        let mut inner = self.lock();
        inner.stalled.clear();
        !matches!(
            std::mem::replace(&mut inner.mode, Mode::Stopped),
            Mode::Stopped
        )
    }

    /// Records a session switched off by the stall; `false` (and nothing recorded) when the
    /// camera is not stalled (any more).
    pub fn add_stalled(&self, media: rtsp_server::RTSPSessionMedia) -> bool {
        let mut inner = self.lock();
        let stalled = state_of(inner.mode, Instant::now()).0 == CameraState::Stalled;
        if stalled && !inner.stalled.contains(&media) {
            inner.stalled.push(media);
        }
        stalled
    }

    /// Status with URLs and client counts from the server.
    pub fn status(
        &self,
        url: impl Fn(StreamKind) -> String,
        clients: impl Fn(StreamKind) -> usize,
    ) -> CameraStatus {
        let (state, stall_remaining_ms) = state_of(self.lock().mode, Instant::now());
        let streams = StreamKind::ALL
            .iter()
            .zip(&self.streams)
            .map(|(kind, stream)| StreamStatus {
                kind: *kind,
                url: url(*kind),
                codec: stream.info.codec,
                width: stream.info.width,
                height: stream.info.height,
                fps: FPS,
                bitrate_kbps: stream.info.bitrate / 1000,
                clients: clients(*kind),
            })
            .collect();
        CameraStatus {
            index: self.index,
            name: self.name.clone(),
            state,
            stall_remaining_ms,
            streams,
        }
    }
}

fn state_of(mode: Mode, now: Instant) -> (CameraState, Option<u64>) {
    match mode {
        Mode::Running => (CameraState::Running, None),
        Mode::Stalled { until: Some(until) } if now >= until => (CameraState::Running, None),
        Mode::Stalled { until } => (
            CameraState::Stalled,
            until.map(|u| u64::try_from((u - now).as_millis()).unwrap_or(u64::MAX)),
        ),
        Mode::Stopped => (CameraState::Stopped, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::{RawFrame, RawStream};

    fn camera() -> Camera {
        gstreamer::init().expect("gstreamer");
        let raw = RawStream {
            caps: "video/x-h264, width=(int)640, height=(int)360".into(),
            frames: vec![RawFrame {
                keyframe: true,
                pts_offset: 0,
                data: vec![0, 0, 0, 1, 0x65],
            }],
        };
        let stream = Arc::new(EncodedStream::from_raw(raw, Codec::H264).expect("valid stream"));
        Camera::new(3, [0, 1], [stream.clone(), stream])
    }

    #[test]
    fn state_machine() {
        let camera = camera();
        assert_eq!(camera.state(), CameraState::Running);
        assert_eq!(camera.path(StreamKind::Sub), "/cam3/sub");

        let first = camera.stall(Some(Duration::from_secs(60))).expect("stall");
        assert_eq!(camera.state(), CameraState::Stalled);
        // A newer stall makes the first one's timer a no-op.
        let second = camera.stall(None).expect("stall again");
        assert!(camera.end_stall(first).is_none());
        assert_eq!(camera.state(), CameraState::Stalled);
        assert!(camera.end_stall(second).is_some());
        assert_eq!(camera.state(), CameraState::Running);

        assert!(camera.stop());
        assert!(!camera.stop());
        assert_eq!(camera.state(), CameraState::Stopped);
        assert!(matches!(
            camera.stall(None),
            Err(CamsimError::CameraStopped { index: 3 })
        ));
        assert_eq!(camera.start().0, CameraState::Stopped);
        assert_eq!(camera.state(), CameraState::Running);
    }

    #[test]
    fn timed_stalls_run_out_by_themselves() {
        let camera = camera();
        camera.stall(Some(Duration::from_millis(1))).expect("stall");
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(camera.state(), CameraState::Running);
        let status = camera.status(|_| String::new(), |_| 0);
        assert_eq!(status.state, CameraState::Running);
        assert_eq!(status.stall_remaining_ms, None);
    }

    #[test]
    fn status_reports_streams() {
        let camera = camera();
        camera.stall(Some(Duration::from_secs(10))).expect("stall");
        let status = camera.status(
            |kind| format!("rtsp://x/cam3/{kind}"),
            |kind| usize::from(kind == StreamKind::Main),
        );
        assert_eq!(status.name, "cam3");
        assert_eq!(status.state, CameraState::Stalled);
        assert!(status.stall_remaining_ms.is_some_and(|ms| ms <= 10_000));
        assert_eq!(status.streams[0].url, "rtsp://x/cam3/main");
        assert_eq!(status.streams[0].clients, 1);
        assert_eq!(status.streams[1].clients, 0);
        assert_eq!(
            (status.streams[1].width, status.streams[1].height),
            (640, 360)
        );
    }
}
