//! Per-camera recording status, readable at any time and watchable as a stream of changes.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use tokio::sync::broadcast;

use crate::config::Transport;
use kordon_media::SourceKind;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CameraState {
    Starting,
    Recording,
    Reconnecting,
    Offline,
    Stopped,
}

impl CameraState {
    pub fn as_str(self) -> &'static str {
        match self {
            CameraState::Starting => "starting",
            CameraState::Recording => "recording",
            CameraState::Reconnecting => "reconnecting",
            CameraState::Offline => "offline",
            CameraState::Stopped => "stopped",
        }
    }

    pub const ALL: [CameraState; 5] = [
        CameraState::Starting,
        CameraState::Recording,
        CameraState::Reconnecting,
        CameraState::Offline,
        CameraState::Stopped,
    ];
}

/// What is known about one camera's recording.
#[derive(Debug, Clone, PartialEq)]
pub struct CameraStatus {
    pub site: String,
    pub camera: String,
    pub state: CameraState,
    pub state_since: SystemTime,
    /// `h264` or `h265` once the stream was seen.
    pub codec: Option<&'static str>,
    pub width: u32,
    pub height: u32,
    pub fps: f64,
    /// Which client records the camera, once connected.
    pub source: Option<SourceKind>,
    /// How its RTP packets travel, once connected (UDP when the camera refused TCP).
    pub transport: Option<Transport>,
    /// Measured over the last closed segment.
    pub bitrate_bps: u64,
    pub last_segment_end: Option<SystemTime>,
    pub segments_total: u64,
    pub reconnects: u64,
    pub gaps_total: u64,
    pub last_error: Option<String>,
    pub last_error_time: Option<SystemTime>,
    pub generation: i64,
    /// Records of this camera that storage refused for good, moved to the spool's dead-letter
    /// folder (footage kept, not in storage): a condition that needs a person.
    pub dead_letters: u64,
    /// The class and time of the latest.
    pub last_dead_letter: Option<(crate::error::Refusal, SystemTime)>,
}

impl CameraStatus {
    fn new(site: &str, camera: &str) -> Self {
        CameraStatus {
            site: site.to_string(),
            camera: camera.to_string(),
            state: CameraState::Starting,
            state_since: SystemTime::now(),
            codec: None,
            width: 0,
            height: 0,
            fps: 0.0,
            source: None,
            transport: None,
            bitrate_bps: 0,
            last_segment_end: None,
            segments_total: 0,
            reconnects: 0,
            gaps_total: 0,
            last_error: None,
            last_error_time: None,
            generation: 0,
            dead_letters: 0,
            last_dead_letter: None,
        }
    }

    /// Changes state, keeping `state_since` when it does not change.
    pub fn set_state(&mut self, state: CameraState) {
        if self.state != state {
            self.state = state;
            self.state_since = SystemTime::now();
        }
    }

    pub fn set_error(&mut self, error: impl Into<String>) {
        self.last_error = Some(error.into());
        self.last_error_time = Some(SystemTime::now());
    }
}

/// The status of every camera of this process.
pub struct StatusBoard {
    cameras: Mutex<BTreeMap<(String, String), CameraStatus>>,
    changes: broadcast::Sender<CameraStatus>,
}

impl Default for StatusBoard {
    fn default() -> Self {
        StatusBoard {
            cameras: Mutex::new(BTreeMap::new()),
            changes: broadcast::channel(1024).0,
        }
    }
}

impl StatusBoard {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Applies `f` to a camera's status (creating it) and publishes the result.
    pub fn update(&self, site: &str, camera: &str, f: impl FnOnce(&mut CameraStatus)) {
        let snapshot = {
            let Ok(mut map) = self.cameras.lock() else {
                return;
            };
            let s = map
                .entry((site.to_string(), camera.to_string()))
                .or_insert_with(|| CameraStatus::new(site, camera));
            f(s);
            s.clone()
        };
        let _ = self.changes.send(snapshot);
        crate::metrics::refresh_states(self);
    }

    pub fn remove(&self, site: &str, camera: &str) {
        let removed = self
            .cameras
            .lock()
            .ok()
            .and_then(|mut m| m.remove(&(site.to_string(), camera.to_string())));
        if let Some(mut s) = removed {
            s.set_state(CameraState::Stopped);
            let _ = self.changes.send(s);
        }
        crate::metrics::refresh_states(self);
    }

    pub fn get(&self, site: &str, camera: &str) -> Option<CameraStatus> {
        self.cameras
            .lock()
            .ok()
            .and_then(|m| m.get(&(site.to_string(), camera.to_string())).cloned())
    }

    pub fn all(&self) -> Vec<CameraStatus> {
        self.cameras
            .lock()
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }

    pub fn subscribe(&self) -> broadcast::Receiver<CameraStatus> {
        self.changes.subscribe()
    }

    /// Subscriptions open now (one per WatchCameraStatus stream).
    pub fn subscribers(&self) -> usize {
        self.changes.receiver_count()
    }
}
