//! Kordon's scene analysis: the pure algorithms behind the detection
//! service. No I/O, no async, no clock: the caller passes every frame's time
//! (a [`Duration`] since an epoch of its choosing; the service uses the Unix
//! epoch, the clock of the recorded segments), so everything is
//! deterministic and testable.
//!
//! Coordinates are normalised image coordinates, 0..1 from the left and top,
//! y pointing down; boxes are `[x1, y1, x2, y2]`. An object's reference
//! point, used for masks, zones and lines, is the bottom centre of its box.
//!
//! # Public API
//!
//! Per camera the service holds one [`Scene`]:
//!
//! ```text
//! Scene::new(SceneConfig) -> Result<Scene, Error>          // validated, errors name the field
//! scene.reconfigure(SceneConfig) -> Result<(), Error>      // from the next frame, tracks kept
//! scene.motion(time: Duration, &Frame) -> Result<MotionResult, Error>
//! scene.run_detector(&MotionResult) -> bool                // gate open or tracks alive
//! scene.update(time: Duration, &[RawDetection]) -> Vec<TrackEvent>
//! cfg.check_labels(&[&str]) -> Result<(), Error>             // classes/filters vs model labels
//! scene.active_tracks() -> Vec<ActiveTrack>
//! scene.end_all() -> Vec<TrackEvent>                       // camera removed / stream lost
//! ```
//!
//! Per analysed frame: `let m = scene.motion(t, &frame)?;` then, if
//! `scene.run_detector(&m)`, run the object detector and store/stream
//! `scene.update(t, &detections)`. Frames where the detector did not run
//! are not passed to `update`.
//!
//! Config ([`SceneConfig`], serde, all fields defaulted): `classes`
//! (labels reported; empty = all), `min_score` (0.5), `filters` (label →
//! [`ClassFilter`] {min_score, threshold, min_area, max_area, min_ratio,
//! max_ratio}), `zones` ([`ZoneConfig`] {name, area: `Vec<Point>`, inertia
//! (0 = 3)}), `lines` ([`LineConfig`] {name, a, b, direction:
//! [`LineDirection`]}), `masks` (`Vec<Vec<Point>>`), `tracker`
//! ([`TrackerConfig`]), `motion` ([`MotionConfig`]), `event_interval` (1 s),
//! `periodic_interval` (60 s).
//!
//! Input: [`Frame`] {width, height, stride, data: &[u8]} (packed BGR8) and
//! [`RawDetection`] {class_id: u16, label: &str, score: f32, bbox: BBox}.
//!
//! Output: [`MotionResult`] {changed, boxes, motion, calibrating, active} and
//! [`TrackEvent`] {track_id, class_id, label, score, bbox, time, phase:
//! [`Phase`] (Started/Updated/Ended), started_at, zones: `Vec<ZonePresence>` ([`ZonePresence`]
//! {zone, entered_at}), crossings: `Vec<LineCrossing>` ([`LineCrossing`] {line,
//! direction: [`Direction`]}), stationary, reason: [`Reason`], best}.
//!
//! Mapping onto `kordon.detection.v1`: `DetectionConfig.min_confidence` →
//! `min_score` (0 → 0.5); `classes` empty → the six default labels (the
//! service decides; here empty means all); `MotionGate` → `motion.disabled`,
//! `motion.threshold` (0 → 0.002), `motion.hold` (unset → 2 s);
//! `LINE_DIRECTION_UNSPECIFIED`/`BOTH` → [`LineDirection::Both`];
//! [`Phase`] → `TrackPhase`; a box → `BoundingBox {left: x1, top: y1,
//! right: x2, bottom: y2}`.
//!
//! # Defaults
//!
//! - Scene: `min_score` 0.5 ([`scene::DEFAULT_MIN_SCORE`]), `threshold` =
//!   the class's `min_score`, areas 0..1, ratios 0..`f32::MAX`,
//!   `event_interval` 1 s, `periodic_interval` 60 s; zone `inertia` 3
//!   observations.
//! - Tracker: `min_initialized` 2 frames, `max_disappeared` 10 frames,
//!   `max_lost_time` 5 s, IoU gates 0.2 (high scores) / 0.5 (low scores) /
//!   0.3 (tentative tracks), `low_score` 0.1, stationary when IoU with the
//!   anchored box ≥ 0.9 for 10 s, moving again after 3 boxes away.
//! - Motion: `threshold` 0.002, `hold` 2 s, `height` 100 rows, `alpha` 0.01,
//!   `pixel_threshold` 30, `dilate` 2, `min_area` 0.0005, recalibration
//!   above 0.6 of the pixels changing at once, 5 calibrating frames.
//!
//! The parts are usable alone: [`motion::MotionDetector`],
//! [`tracker::Tracker`], [`zones::Zone`]/[`zones::Line`],
//! [`filter::ClassFilter`]/[`filter::Masks`]/[`filter::ScoreHistory`].

pub mod error;
pub mod filter;
pub mod geometry;
pub mod motion;
pub mod scene;
pub mod tracker;
pub mod zones;

pub use std::time::Duration;

pub use error::Error;
pub use filter::ClassFilter;
pub use geometry::{BBox, Point, Polygon, reference_point};
pub use motion::{Frame, MotionConfig, MotionResult};
pub use scene::{
    ActiveTrack, LineCrossing, Phase, RawDetection, Reason, Scene, SceneConfig, TrackEvent,
    ZonePresence,
};
pub use tracker::TrackerConfig;
pub use zones::{Direction, LineConfig, LineDirection, ZoneConfig};
