//! Where a camera's frames come from: one [`Source`] trait, two implementations behind it.
//!
//! The shape is Moonfire NVR's (`server/src/stream.rs`): one opener ([`open`]) that picks the
//! implementation and connects, and one stream of [`Frame`]s per session. Everything after the
//! source — segmenting, hashing, spooling — sees the same frames whichever client produced them.
//!
//! - [`retina`](self::retina) — the `retina` crate, RTSP over TCP or UDP, H.264 and H.265, on the
//!   camera's own tokio task. The default for `rtsp://`.
//! - [`gst`] — GStreamer's `rtspsrc`, only for what retina cannot do (`rtsps://`), or for every
//!   camera when [`SourceConfig::rtsp_client`] is `gstreamer`.
//!
//! # What every source guarantees
//! - Frames come in decode order, one access unit each, as 4-byte length-prefixed NAL units
//!   exactly as the camera sent them (parameter sets travel in [`TrackInfo`], not in-band).
//! - `dts` and `pts` are 90 kHz ticks on the session's timeline; `dts` strictly increases and,
//!   unless the camera reorders deeper than it declares, `dts <= pts`. RTP carries presentation
//!   times only, so the decode times are derived from them by [`DecodeTimes`] (B-frames).
//! - A frame damaged by packet loss is never handed on: after a loss, frames are dropped until the
//!   next whole keyframe ([`LossGate`]), so a loss shows as a held picture, never as corruption.
//! - `wall_clock` is the wall-clock time of the frame's `pts`: from the camera's RTCP sender
//!   reports when they agree with this host's clock, else from the arrival of the first frame.

pub mod gst;
pub mod retina;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures::future::BoxFuture;

use crate::config::{RtspClient, SourceConfig, StreamConfig, Transport};
use crate::track::{TIMESCALE, TrackInfo};

/// One access unit.
#[derive(Debug, Clone)]
pub struct Frame {
    /// Decode time, 90 kHz ticks.
    pub dts: i64,
    /// Presentation time, 90 kHz ticks.
    pub pts: i64,
    pub keyframe: bool,
    /// 4-byte length-prefixed NAL units.
    pub data: Bytes,
    /// Wall-clock time of `pts`.
    pub wall_clock: SystemTime,
    /// The stream's format (shared; a new value means new parameters).
    pub track: Arc<TrackInfo>,
}

/// Which client records a camera, for status and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SourceKind {
    Retina,
    Gstreamer,
}

impl SourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::Retina => "retina",
            SourceKind::Gstreamer => "gstreamer",
        }
    }
}

/// Why a source failed, and so whether to expect a retry to help.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The camera could not be reached or dropped the connection: retry.
    #[error("{0}")]
    Lost(String),
    /// The camera answered, but not with something recordable (status code, codec, protocol):
    /// a retry helps only if the camera changes; retried with backoff all the same.
    #[error("{0}")]
    Refused(String),
    /// The camera ended the stream.
    #[error("camera ended the stream")]
    Ended,
}

impl SourceError {
    /// Whether the camera answered with something unusable (rather than being unreachable or
    /// ending the stream): ingest records such a hole as a stream error, not a lost stream.
    pub fn is_refusal(&self) -> bool {
        matches!(self, SourceError::Refused(_))
    }
}

/// One session's stream of frames.
pub trait Source: Send {
    /// The next frame. Cancel-safe: dropping the future loses nothing but a wait.
    fn next(&mut self) -> BoxFuture<'_, Result<Frame, SourceError>>;

    fn kind(&self) -> SourceKind;

    /// How the RTP packets travel.
    fn transport(&self) -> Transport;

    /// Ends the session (TEARDOWN where the protocol has one); never blocks an async thread.
    fn close(self: Box<Self>) -> BoxFuture<'static, ()>;
}

/// What opening a source needs besides the stream's own configuration.
#[derive(Clone)]
pub struct OpenContext {
    pub config: Arc<SourceConfig>,
    /// The pipeline clock for GStreamer sources (a realtime clock: [`gst::realtime_clock`]).
    pub clock: ::gstreamer::Clock,
}

impl OpenContext {
    /// A context on a fresh realtime clock.
    pub fn new(config: SourceConfig) -> Self {
        OpenContext {
            config: Arc::new(config),
            clock: gst::realtime_clock(),
        }
    }
}

/// Which client opens `stream`: GStreamer only for what retina cannot do.
pub fn choose(stream: &StreamConfig, config: &SourceConfig) -> SourceKind {
    if config.rtsp_client == RtspClient::Gstreamer || !stream.url.starts_with("rtsp://") {
        SourceKind::Gstreamer
    } else {
        SourceKind::Retina
    }
}

/// Connects to the camera and starts its stream (initialising GStreamer first when its client
/// is chosen).
pub async fn open(
    stream: &StreamConfig,
    ctx: &OpenContext,
) -> Result<Box<dyn Source>, SourceError> {
    match choose(stream, &ctx.config) {
        SourceKind::Retina => Ok(Box::new(retina::RetinaSource::open(stream).await?)),
        SourceKind::Gstreamer => {
            crate::init().map_err(|e| SourceError::Refused(e.to_string()))?;
            Ok(Box::new(gst::GstSource::open(stream, ctx)?))
        }
    }
}

/// Frames that would need a deeper reorder window than this are beyond any profile.
pub const MAX_REORDER: usize = 16;

/// Derives decode times from presentation times given in decode order.
///
/// With a reorder depth of `R` frames (B-frames: the most frames that are decoded before, but
/// shown after, another), the `i`-th decode time is the `(i - R)`-th smallest presentation time
/// seen: frames are held until `R` later ones are in, then released with that time. The first
/// `R` frames get times before the first presentation time, one frame interval apart. For a
/// stream without B-frames (`R = 0`) `dts == pts` and nothing is held.
///
/// Guarantees: released decode times strictly increase; `dts <= pts` for every frame as long as
/// the stream reorders no deeper than `R` (a deeper one is counted in
/// [`DecodeTimes::too_deep`] and its frames keep a `pts` before their `dts`).
#[derive(Debug)]
pub struct DecodeTimes<T> {
    depth: usize,
    held: VecDeque<(i64, T)>,
    /// Presentation times not yet used as a decode time.
    pending: BinaryHeap<Reverse<i64>>,
    /// Presentation times taken from `pending`, waiting to become decode times.
    sorted: VecDeque<i64>,
    released: u64,
    /// First presentation time and frame interval, for the first `depth` frames.
    lead: Option<(i64, i64)>,
    last_dts: Option<i64>,
    too_deep: u64,
}

impl<T> DecodeTimes<T> {
    pub fn new(depth: usize) -> Self {
        DecodeTimes {
            depth: depth.min(MAX_REORDER),
            held: VecDeque::new(),
            pending: BinaryHeap::new(),
            sorted: VecDeque::new(),
            released: 0,
            lead: None,
            last_dts: None,
            too_deep: 0,
        }
    }

    pub fn depth(&self) -> usize {
        self.depth
    }

    /// Frames that arrived more reordered than the depth allows.
    pub fn too_deep(&self) -> u64 {
        self.too_deep
    }

    /// Takes the next frame (decode order); returns the frame released by it, if any, with its
    /// decode time.
    pub fn push(&mut self, pts: i64, item: T) -> Option<(i64, i64, T)> {
        self.held.push_back((pts, item));
        self.pending.push(Reverse(pts));
        if self.held.len() > self.depth {
            self.release()
        } else {
            None
        }
    }

    /// Releases every held frame (end of the session).
    pub fn drain(&mut self) -> Vec<(i64, i64, T)> {
        let mut out = Vec::with_capacity(self.held.len());
        while let Some(f) = self.release() {
            out.push(f);
        }
        out
    }

    fn release(&mut self) -> Option<(i64, i64, T)> {
        let (pts, item) = self.held.pop_front()?;
        let Reverse(smallest) = self.pending.pop()?;
        if self.lead.is_none() {
            // The `depth` frames after this one are in: the closest two presentation times
            // give the frame interval.
            let mut seen: Vec<i64> = self.pending.iter().map(|r| r.0).collect();
            seen.push(smallest);
            seen.sort_unstable();
            let interval = seen
                .windows(2)
                .map(|w| w[1].saturating_sub(w[0]))
                .filter(|d| *d > 0)
                .min()
                .unwrap_or(1);
            self.lead = Some((smallest, interval));
        }
        self.sorted.push_back(smallest);
        let mut dts = if self.released < self.depth as u64 {
            let (first, interval) = self.lead.unwrap_or((smallest, 1));
            first - (self.depth as i64 - self.released as i64) * interval
        } else {
            self.sorted.pop_front().unwrap_or(smallest)
        };
        if let Some(last) = self.last_dts
            && dts <= last
        {
            dts = last + 1;
        }
        if dts > pts {
            self.too_deep += 1;
        }
        self.released += 1;
        self.last_dts = Some(dts);
        Some((dts, pts, item))
    }
}

/// Drops frames damaged by packet loss: the frame that reports a loss and every frame after it
/// until a keyframe that arrived whole.
#[derive(Debug, Default)]
pub struct LossGate {
    waiting: bool,
    dropped: u64,
}

impl LossGate {
    /// Whether to keep a frame that reports `loss` lost packets before it.
    pub fn keep(&mut self, keyframe: bool, loss: u16) -> bool {
        if loss > 0 {
            self.waiting = true;
        } else if keyframe {
            self.waiting = false;
        }
        if self.waiting {
            self.dropped += 1;
        }
        !self.waiting
    }

    /// Frames dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }
}

/// Maps the session's 90 kHz timeline to wall-clock time.
#[derive(Debug, Clone, Copy)]
pub struct WallClock {
    /// A tick and its wall-clock time.
    anchor: Option<(i64, SystemTime)>,
    from_sender_report: bool,
}

/// Sender reports further than this from this host's clock are not believed (an unsynchronised
/// camera clock must not move evidence in time).
pub const MAX_SENDER_REPORT_SKEW: Duration = Duration::from_secs(2);

impl Default for WallClock {
    fn default() -> Self {
        WallClock::new()
    }
}

impl WallClock {
    pub fn new() -> Self {
        WallClock {
            anchor: None,
            from_sender_report: false,
        }
    }

    /// The wall-clock time of `ticks`, anchoring at `now` on the first call.
    pub fn at(&mut self, ticks: i64, now: SystemTime) -> SystemTime {
        let (t0, w0) = *self.anchor.get_or_insert((ticks, now));
        offset(w0, ticks - t0)
    }

    /// A sender report: `ticks` was sent at `wall`, received at `now`. Returns whether it was
    /// believed (and the timeline re-anchored on it).
    pub fn sender_report(&mut self, ticks: i64, wall: SystemTime, now: SystemTime) -> bool {
        let skew = match now.duration_since(wall) {
            Ok(d) => d,
            Err(e) => e.duration(),
        };
        if skew > MAX_SENDER_REPORT_SKEW {
            return false;
        }
        self.anchor = Some((ticks, wall));
        self.from_sender_report = true;
        true
    }

    pub fn from_sender_report(&self) -> bool {
        self.from_sender_report
    }
}

fn offset(t: SystemTime, ticks: i64) -> SystemTime {
    let d = Duration::from_nanos(
        (ticks.unsigned_abs() as u128 * 1_000_000_000 / TIMESCALE as u128).min(u64::MAX as u128)
            as u64,
    );
    if ticks >= 0 {
        t.checked_add(d).unwrap_or(t)
    } else {
        t.checked_sub(d).unwrap_or(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn run(depth: usize, pts: &[i64]) -> Vec<(i64, i64)> {
        let mut d = DecodeTimes::new(depth);
        let mut out: Vec<(i64, i64)> = pts
            .iter()
            .filter_map(|p| d.push(*p, ()).map(|(dts, pts, ())| (dts, pts)))
            .collect();
        out.extend(d.drain().into_iter().map(|(dts, pts, ())| (dts, pts)));
        out
    }

    #[test]
    fn without_b_frames_dts_is_pts() {
        let pts: Vec<i64> = (0..10).map(|i| 1000 + i * 3600).collect();
        let out = run(0, &pts);
        assert!(out.iter().all(|(d, p)| d == p));
        assert_eq!(out.len(), 10);
    }

    #[test]
    fn b_frames_get_decode_times_before_their_references() {
        // I0 P3 B1 B2 P6 B4 B5 (frame numbers are presentation order), 3600 ticks a frame;
        // its reorder depth is 1, so a window of 2 is more than enough.
        let order = [0, 3, 1, 2, 6, 4, 5];
        let pts: Vec<i64> = order.iter().map(|n| n * 3600).collect();
        let out = run(2, &pts);
        let dts: Vec<i64> = out.iter().map(|o| o.0).collect();
        assert_eq!(
            dts,
            [-7200, -3600, 0, 3600, 7200, 10800, 14400],
            "decode times continue one interval apart"
        );
        assert!(out.iter().all(|(d, p)| d <= p), "{out:?}");
        assert_eq!(
            out.iter().map(|o| o.1).collect::<Vec<_>>(),
            pts,
            "frames keep their order"
        );
    }

    #[test]
    fn pyramids_need_their_depth() {
        // I0 P4 B2 b1 b3: b1 waits for P4 and B2, a reorder depth of 2.
        let pts: Vec<i64> = [0, 4, 2, 1, 3].iter().map(|n| n * 3600).collect();
        let out = run(2, &pts);
        assert!(out.iter().all(|(d, p)| d <= p), "{out:?}");
        assert!(out[0].0 < 0);
        let mut too_shallow = DecodeTimes::new(1);
        for p in &pts {
            too_shallow.push(*p, ());
        }
        too_shallow.drain();
        assert!(
            too_shallow.too_deep() > 0,
            "b1 cannot be placed with depth 1"
        );
    }

    proptest! {
        /// Any GOP structure whose reorder depth is at most R: decode times strictly increase,
        /// never exceed presentation times, and every frame comes out once, in order.
        #[test]
        fn decode_times_are_valid_for_reordered_streams(
            groups in proptest::collection::vec(0usize..=3, 1..40),
            depth_extra in 0usize..3,
            start in -1_000_000i64..1_000_000,
        ) {
            // Each group: an anchor followed by `b` B-frames shown before it (reorder depth b).
            let mut pts = Vec::new();
            let mut next = 0i64;
            for b in &groups {
                let anchor = next + *b as i64;
                pts.push(start + anchor * 3000);
                for k in 0..*b {
                    pts.push(start + (next + k as i64) * 3000);
                }
                next = anchor + 1;
            }
            // Every B-frame waits for one anchor only: the reorder depth is 1.
            let depth = usize::from(groups.iter().any(|b| *b > 0)) + depth_extra;
            let out = run(depth, &pts);
            prop_assert_eq!(out.len(), pts.len());
            for w in out.windows(2) {
                prop_assert!(w[0].0 < w[1].0);
            }
            for (d, p) in &out {
                prop_assert!(d <= p);
            }
            prop_assert_eq!(out.iter().map(|o| o.1).collect::<Vec<_>>(), pts);
        }

        #[test]
        fn any_input_keeps_decode_times_increasing(
            pts in proptest::collection::vec(proptest::num::i64::ANY, 0..64),
            depth in 0usize..20,
        ) {
            let pts: Vec<i64> = pts.into_iter().map(|p| p >> 16).collect();
            let out = run(depth, &pts);
            prop_assert_eq!(out.len(), pts.len());
            for w in out.windows(2) {
                prop_assert!(w[0].0 < w[1].0);
            }
        }
    }

    #[test]
    fn a_loss_drops_frames_until_a_whole_keyframe() {
        let mut g = LossGate::default();
        let frames = [
            (true, 0),
            (false, 0),
            (false, 2), // damaged
            (false, 0), // refers to the damaged one
            (true, 1),  // a keyframe with a lost prefix
            (false, 0),
            (true, 0),
            (false, 0),
        ];
        let kept: Vec<bool> = frames.iter().map(|(k, l)| g.keep(*k, *l)).collect();
        assert_eq!(kept, [true, true, false, false, false, false, true, true]);
        assert_eq!(g.dropped(), 4);
    }

    #[test]
    fn sender_reports_are_believed_only_near_this_hosts_clock() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let mut w = WallClock::new();
        assert_eq!(w.at(90_000, now), now);
        assert_eq!(w.at(180_000, now), now + Duration::from_secs(1));
        // A camera clock an hour off is ignored.
        assert!(!w.sender_report(180_000, now + Duration::from_secs(3600), now));
        assert_eq!(w.at(270_000, now), now + Duration::from_secs(2));
        // A synchronised camera re-anchors the timeline (its RTP clock ran 10 ms slow).
        let sr = now + Duration::from_millis(2010);
        assert!(w.sender_report(270_000, sr, now + Duration::from_millis(2015)));
        assert!(w.from_sender_report());
        assert_eq!(w.at(360_000, now), sr + Duration::from_secs(1));
        assert_eq!(w.at(265_500, now), sr - Duration::from_millis(50));
    }
}
