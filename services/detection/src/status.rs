//! Per-camera detector status: state, rates over the last 10 s, tracks and errors, shared
//! between a camera's pipeline (writer) and `GetDetectorStatus` (reader).

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

/// Window of the rates in the status.
pub const RATE_WINDOW: Duration = Duration::from_secs(10);

/// A camera's detector state, as `kordon.detection.v1.DetectorState`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Starting,
    Running,
    Reconnecting,
    Offline,
    Disabled,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Starting => "starting",
            State::Running => "running",
            State::Reconnecting => "reconnecting",
            State::Offline => "offline",
            State::Disabled => "disabled",
        }
    }
}

/// Cumulative counts (the pipeline adds; rates are differences over [`RATE_WINDOW`]).
#[derive(Debug, Default)]
pub struct Counters {
    pub analysed: AtomicU64,
    pub inferred: AtomicU64,
    /// Sum of inference times, microseconds.
    pub inference_us: AtomicU64,
    pub detections: AtomicU64,
}

/// What changes less often than every frame.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub state: State,
    pub state_since: SystemTime,
    pub last_error: Option<String>,
    pub width: u32,
    pub height: u32,
    pub active_tracks: u32,
    pub motion_gated: bool,
    pub last_frame_time: Option<SystemTime>,
    pub last_detection_time: Option<SystemTime>,
    pub generation: i64,
}

/// Rates over the last [`RATE_WINDOW`].
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Rates {
    pub decoded_fps: f64,
    pub analysed_fps: f64,
    pub inferred_fps: f64,
    /// Mean inference time per inferred frame.
    pub inference_time: Duration,
}

#[derive(Debug)]
pub struct CameraStatus {
    pub counters: Counters,
    /// Frames decoded (kept by the decoder).
    pub decode: std::sync::Arc<kordon_media::decode::DecodeCounters>,
    inner: Mutex<Snapshot>,
    samples: Mutex<VecDeque<(Instant, [u64; 4])>>,
}

impl CameraStatus {
    pub fn new(generation: i64) -> Self {
        CameraStatus {
            counters: Counters::default(),
            decode: Default::default(),
            inner: Mutex::new(Snapshot {
                state: State::Starting,
                state_since: SystemTime::now(),
                last_error: None,
                width: 0,
                height: 0,
                active_tracks: 0,
                motion_gated: false,
                last_frame_time: None,
                last_detection_time: None,
                generation,
            }),
            samples: Mutex::new(VecDeque::new()),
        }
    }

    /// Moves to `state` (the time changes only on a real change); `error` replaces the last
    /// error when given, and entering `Running` clears it.
    pub fn set_state(&self, state: State, error: Option<String>) {
        let mut s = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if s.state != state {
            s.state = state;
            s.state_since = SystemTime::now();
            if state == State::Running {
                s.last_error = None;
            }
        }
        if error.is_some() {
            s.last_error = error;
        }
    }

    pub fn update(&self, f: impl FnOnce(&mut Snapshot)) {
        f(&mut self.inner.lock().unwrap_or_else(|p| p.into_inner()))
    }

    pub fn snapshot(&self) -> Snapshot {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn counts(&self) -> [u64; 4] {
        [
            self.decode.decoded(),
            self.counters.analysed.load(Ordering::Relaxed),
            self.counters.inferred.load(Ordering::Relaxed),
            self.counters.inference_us.load(Ordering::Relaxed),
        ]
    }

    /// Takes a sample of the counters (at most one a second is kept) and returns the rates
    /// since the oldest sample within the window. The pipeline calls it on every analysed
    /// frame, so the window is full whenever status is asked.
    pub fn rates(&self) -> Rates {
        self.rates_at(Instant::now())
    }

    fn rates_at(&self, now: Instant) -> Rates {
        let counts = self.counts();
        let mut samples = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        while samples
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) > RATE_WINDOW)
        {
            samples.pop_front();
        }
        if samples
            .back()
            .is_none_or(|(t, _)| now.duration_since(*t) >= Duration::from_secs(1))
        {
            samples.push_back((now, counts));
        }
        let Some(&(t0, c0)) = samples.front() else {
            return Rates::default();
        };
        let dt = now.duration_since(t0).as_secs_f64();
        if dt < 0.5 {
            return Rates::default();
        }
        let d = |i: usize| counts[i].saturating_sub(c0[i]);
        Rates {
            decoded_fps: d(0) as f64 / dt,
            analysed_fps: d(1) as f64 / dt,
            inferred_fps: d(2) as f64 / dt,
            inference_time: Duration::from_micros(d(3).checked_div(d(2)).unwrap_or(0)),
        }
    }

    /// Counts of the camera's metric label for its state (for the cameras gauge).
    pub fn state(&self) -> State {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).state
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_differences_over_the_window() {
        let s = CameraStatus::new(1);
        let t0 = Instant::now();
        assert_eq!(s.rates_at(t0), Rates::default());
        s.counters.analysed.fetch_add(50, Ordering::Relaxed);
        s.counters.inferred.fetch_add(10, Ordering::Relaxed);
        s.counters
            .inference_us
            .fetch_add(200_000, Ordering::Relaxed);
        let r = s.rates_at(t0 + Duration::from_secs(10));
        assert!((r.analysed_fps - 5.0).abs() < 1e-9, "{r:?}");
        assert!((r.inferred_fps - 1.0).abs() < 1e-9, "{r:?}");
        assert_eq!(r.inference_time, Duration::from_millis(20));
    }

    #[test]
    fn running_clears_the_last_error() {
        let s = CameraStatus::new(1);
        s.set_state(State::Reconnecting, Some("connection refused".into()));
        assert_eq!(
            s.snapshot().last_error.as_deref(),
            Some("connection refused")
        );
        s.set_state(State::Running, None);
        assert!(s.snapshot().last_error.is_none());
    }
}
