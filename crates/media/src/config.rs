//! What opening a camera's stream needs: which stream ([`StreamConfig`]) and how
//! ([`SourceConfig`]), and the reconnect policy ([`Backoff`]) every user of a stream follows.
//!
//! Services map their own configuration into these (ingest: a camera's record stream;
//! detection: its detect stream). Credentials live here and nowhere else on the way to the
//! camera; `Debug` output redacts them and every URL in a log or status goes through
//! [`redact_url`].

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// First reconnect delay after a stream fails.
pub const DEFAULT_RECONNECT_INITIAL: Duration = Duration::from_millis(250);
/// Reconnect delays double up to this cap, so a camera that returns is seen again within
/// about this long (plus connection set-up and the wait for its next keyframe).
pub const DEFAULT_RECONNECT_MAX: Duration = Duration::from_secs(1);
/// A stream that delivers no media for this long is treated as broken and reconnected.
pub const DEFAULT_STALL_TIMEOUT: Duration = Duration::from_secs(5);
/// RTSP jitter-buffer latency (GStreamer's `rtspsrc`).
pub const DEFAULT_RTSP_LATENCY: Duration = Duration::from_millis(200);
/// Consecutive failed sessions after which a camera is reported offline (not just reconnecting).
pub const OFFLINE_AFTER_FAILURES: u64 = 3;
/// Before the first frame of a session, this much longer than the stall timeout is allowed for
/// connection set-up and the first keyframe.
pub const FIRST_FRAME_GRACE: Duration = Duration::from_secs(5);

/// Which RTSP client opens a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum RtspClient {
    /// The `retina` crate for `rtsp://` (TCP, UDP when the camera refuses TCP; H.264, H.265);
    /// GStreamer only for what retina cannot do (`rtsps://`).
    #[default]
    #[serde(alias = "native", alias = "retina")]
    Auto,
    /// GStreamer's `rtspsrc` for every camera.
    Gstreamer,
}

/// How RTP packets travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// Interleaved in the RTSP connection; UDP when the camera refuses it.
    #[default]
    Tcp,
    Udp,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Udp => "udp",
        }
    }
}

/// One stream of one camera. `Debug` leaves out the password and any credentials in the URL.
#[derive(Clone, PartialEq, Eq)]
pub struct StreamConfig {
    /// The camera's identity in logs and GStreamer pipeline names, e.g. `edirne-gate-1`.
    pub name: String,
    /// `rtsp://` or `rtsps://` URL; credentials in it are accepted but `username`/`password`
    /// win.
    pub url: String,
    pub transport: Transport,
    pub username: Option<String>,
    pub password: Option<String>,
}

impl std::fmt::Debug for StreamConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamConfig")
            .field("name", &self.name)
            .field("url", &redact_url(&self.url))
            .field("transport", &self.transport)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl StreamConfig {
    /// The URL with any `user:password@` removed, for logs and status.
    pub fn redacted_url(&self) -> String {
        redact_url(&self.url)
    }
}

/// How streams are opened, the same for every camera of a process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceConfig {
    pub rtsp_client: RtspClient,
    /// Jitter-buffer latency of GStreamer's `rtspsrc`.
    pub rtsp_latency: Duration,
    /// No media for this long ends a session (GStreamer's TCP/UDP timeouts use it too).
    pub stall_timeout: Duration,
    /// Reconnect backoff: first delay and cap.
    pub reconnect_initial: Duration,
    pub reconnect_max: Duration,
}

impl Default for SourceConfig {
    fn default() -> Self {
        SourceConfig {
            rtsp_client: RtspClient::Auto,
            rtsp_latency: DEFAULT_RTSP_LATENCY,
            stall_timeout: DEFAULT_STALL_TIMEOUT,
            reconnect_initial: DEFAULT_RECONNECT_INITIAL,
            reconnect_max: DEFAULT_RECONNECT_MAX,
        }
    }
}

impl SourceConfig {
    /// How long a session may wait for its first frame.
    pub fn first_frame_timeout(&self) -> Duration {
        self.stall_timeout + FIRST_FRAME_GRACE
    }

    pub fn backoff(&self) -> Backoff {
        Backoff::new(self.reconnect_initial, self.reconnect_max)
    }
}

/// `url` with any `user:password@` removed, for logs and status.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            if !u.username().is_empty() || u.password().is_some() {
                let _ = u.set_username("");
                let _ = u.set_password(None);
            }
            u.to_string()
        }
        Err(_) => "(invalid URL)".to_string(),
    }
}

/// Capped exponential backoff between sessions.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        Backoff {
            initial,
            max,
            next: initial,
        }
    }

    /// The delay before the next attempt; doubles each call up to the cap.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(self.max);
        d
    }

    /// Back to the first delay (after a session that worked, or a configuration change).
    pub fn reset(&mut self) {
        self.next = self.initial;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_its_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(250), Duration::from_secs(1));
        let d: Vec<u128> = (0..4).map(|_| b.next().as_millis()).collect();
        assert_eq!(d, [250, 500, 1000, 1000]);
        b.reset();
        assert_eq!(b.next(), Duration::from_millis(250));
    }

    #[test]
    fn credentials_never_appear_in_debug_or_redacted_urls() {
        let s = StreamConfig {
            name: "edirne-gate-1".into(),
            url: "rtsp://admin:s3cret@10.0.0.1:554/sub".into(),
            transport: Transport::Tcp,
            username: Some("op".into()),
            password: Some("hunter2".into()),
        };
        let dbg = format!("{s:?}");
        assert!(!dbg.contains("s3cret") && !dbg.contains("hunter2"), "{dbg}");
        assert_eq!(s.redacted_url(), "rtsp://10.0.0.1:554/sub");
    }
}
