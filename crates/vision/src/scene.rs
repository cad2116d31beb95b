//! One camera's scene: filters, tracker, zones, lines, masks and motion
//! gate together, turning each analysed frame's raw detections into track
//! events.
//!
//! Guarantees (the emission rule of `ListDetections`):
//! - Every reported track has exactly one `Started` event and, unless it is
//!   still alive, one `Ended` event (its last frame's box and time).
//! - An `Updated` event is emitted on every frame where a reported track
//!   enters or leaves a zone or crosses a line, and otherwise on at most one
//!   frame per `event_interval` (1 s) per track: for a better score, a
//!   stationary change, or its position. A stationary track is not
//!   re-announced: after its `StationaryChange` it gets only a `Periodic`
//!   event every `periodic_interval` (60 s).
//! - A track is reported only once it is confirmed by the tracker and the
//!   median of its scores has reached its class's threshold; a single-frame
//!   false positive never yields an event. Line crossings seen before that
//!   are carried by the `Started` event, so none is lost.
//! - Events of one frame are ordered by track id, ended tracks included.
//! - Deterministic: times come from the caller; nothing reads a clock.
//!
//! Assumes `update` is called once per analysed frame in time order, with
//! the detector's boxes in normalised coordinates.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, unit};
use crate::filter::{ClassFilter, Masks, ScoreHistory};
use crate::geometry::{BBox, Point, Polygon, reference_point};
use crate::motion::{Frame, MotionConfig, MotionDetector, MotionResult};
use crate::tracker::{Observation, Tracker, TrackerConfig};
use crate::zones::{Direction, Line, LineConfig, LineState, Membership, Zone, ZoneConfig};

/// Default minimum score (`DetectionConfig.min_confidence` 0).
pub const DEFAULT_MIN_SCORE: f32 = 0.5;
/// Default spacing of events that are not starts, ends, zone changes or
/// crossings.
pub const DEFAULT_EVENT_INTERVAL: Duration = Duration::from_secs(1);
/// Default spacing of events for a track that has nothing new.
pub const DEFAULT_PERIODIC_INTERVAL: Duration = Duration::from_secs(60);

/// Everything that configures one camera's scene.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SceneConfig {
    /// Labels reported; empty means every label.
    pub classes: Vec<String>,
    /// Detections below this are dropped (classes without a filter).
    pub min_score: f32,
    /// Per-label filters; a label without one gets
    /// `ClassFilter::with_min_score(min_score)`.
    pub filters: BTreeMap<String, ClassFilter>,
    pub zones: Vec<ZoneConfig>,
    pub lines: Vec<LineConfig>,
    /// Polygons where nothing is reported and no motion counts.
    pub masks: Vec<Vec<Point>>,
    pub tracker: TrackerConfig,
    pub motion: MotionConfig,
    /// See [`DEFAULT_EVENT_INTERVAL`].
    pub event_interval: Duration,
    /// See [`DEFAULT_PERIODIC_INTERVAL`].
    pub periodic_interval: Duration,
}

impl Default for SceneConfig {
    fn default() -> Self {
        SceneConfig {
            classes: Vec::new(),
            min_score: DEFAULT_MIN_SCORE,
            filters: BTreeMap::new(),
            zones: Vec::new(),
            lines: Vec::new(),
            masks: Vec::new(),
            tracker: TrackerConfig::default(),
            motion: MotionConfig::default(),
            event_interval: DEFAULT_EVENT_INTERVAL,
            periodic_interval: DEFAULT_PERIODIC_INTERVAL,
        }
    }
}

impl SceneConfig {
    /// Checks that every label in `classes` and `filters` is one of the
    /// model's `labels` (the scene itself accepts any label).
    pub fn check_labels(&self, labels: &[&str]) -> Result<(), Error> {
        let unknown = |field: String, label: &str| Error::UnknownClass {
            field,
            label: label.to_owned(),
        };
        for (i, c) in self.classes.iter().enumerate() {
            if !labels.contains(&c.as_str()) {
                return Err(unknown(format!("classes[{i}]"), c));
            }
        }
        for label in self.filters.keys() {
            if !labels.contains(&label.as_str()) {
                return Err(unknown(format!("filters.{label}"), label));
            }
        }
        Ok(())
    }
}

/// One detection from the object detector.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RawDetection<'a> {
    pub class_id: u16,
    pub label: &'a str,
    pub score: f32,
    pub bbox: BBox,
}

/// A track's phase, as `kordon.detection.v1.TrackPhase`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase {
    Started,
    Updated,
    Ended,
}

/// Why an event was emitted (the first that applies, in this order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reason {
    /// The track's first reported frame.
    Start,
    /// The track was lost (its last frame), or the scene ended it.
    End,
    LineCrossing,
    ZoneChange,
    /// The track became or stopped being stationary.
    StationaryChange,
    /// A better score than any emitted so far.
    BetterScore,
    /// Nothing new for `periodic_interval`.
    Periodic,
    /// A moving track, at most once per `event_interval`.
    Position,
}

/// A zone the track is in, and since when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ZonePresence {
    pub zone: String,
    /// The first frame of the current stay; dwell is `time - entered_at`.
    pub entered_at: Duration,
}

/// A line crossed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LineCrossing {
    pub line: String,
    pub direction: Direction,
}

/// One tracked object on one frame: what the service stores and streams.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrackEvent {
    pub track_id: u64,
    pub class_id: u16,
    pub label: String,
    pub score: f32,
    pub bbox: BBox,
    /// The frame's time (for `Ended`, the track's last matched frame).
    pub time: Duration,
    pub phase: Phase,
    /// The track's first frame (its tentative frames included).
    pub started_at: Duration,
    /// Ordered as the configured zones.
    pub zones: Vec<ZonePresence>,
    /// Crossings since the track's previous event (for `Started`, since the
    /// track's first frame).
    pub crossings: Vec<LineCrossing>,
    pub stationary: bool,
    pub reason: Reason,
    /// This frame's score beats every earlier event of the track: a snapshot
    /// candidate. Always true for `Started`.
    pub best: bool,
}

/// A reported track that is alive.
#[derive(Debug, Clone, PartialEq)]
pub struct ActiveTrack {
    pub track_id: u64,
    pub class_id: u16,
    pub label: String,
    pub score: f32,
    pub bbox: BBox,
    pub started_at: Duration,
    pub last_seen: Duration,
    pub zones: Vec<ZonePresence>,
    pub stationary: bool,
}

/// The validated form of a [`SceneConfig`].
#[derive(Debug, Clone)]
struct Compiled {
    cfg: SceneConfig,
    classes: HashSet<String>,
    zones: Vec<Zone>,
    lines: Vec<Line>,
    masks: Masks,
}

fn compile(cfg: SceneConfig) -> Result<Compiled, Error> {
    for (i, c) in cfg.classes.iter().enumerate() {
        if c.trim().is_empty() {
            return Err(Error::Invalid {
                field: format!("classes[{i}]"),
                reason: "must not be empty",
            });
        }
    }
    unit(|| "min_score".to_owned(), cfg.min_score)?;
    for (label, f) in &cfg.filters {
        f.validate(&format!("filters.{label}"))?;
    }
    let mut zones = Vec::with_capacity(cfg.zones.len());
    let mut names = HashSet::new();
    for (i, z) in cfg.zones.iter().enumerate() {
        let zone = Zone::new(z, &format!("zones[{i}]"))?;
        if !names.insert(z.name.as_str()) {
            return Err(Error::DuplicateName {
                field: format!("zones[{i}].name"),
                name: z.name.clone(),
            });
        }
        zones.push(zone);
    }
    let mut lines = Vec::with_capacity(cfg.lines.len());
    let mut names = HashSet::new();
    for (i, l) in cfg.lines.iter().enumerate() {
        let line = Line::new(l, &format!("lines[{i}]"))?;
        if !names.insert(l.name.as_str()) {
            return Err(Error::DuplicateName {
                field: format!("lines[{i}].name"),
                name: l.name.clone(),
            });
        }
        lines.push(line);
    }
    let masks = cfg
        .masks
        .iter()
        .enumerate()
        .map(|(i, m)| Polygon::new(m.clone(), &format!("masks[{i}]")))
        .collect::<Result<Vec<_>, _>>()?;
    cfg.tracker.validate("tracker")?;
    cfg.motion.validate("motion")?;
    if cfg.event_interval > cfg.periodic_interval {
        return Err(Error::Invalid {
            field: "periodic_interval".to_owned(),
            reason: "must not be shorter than event_interval",
        });
    }
    Ok(Compiled {
        classes: cfg.classes.iter().cloned().collect(),
        zones,
        lines,
        masks: Masks::new(masks),
        cfg,
    })
}

/// What the scene keeps per track.
#[derive(Debug, Clone)]
struct TrackState {
    class_id: u16,
    label: String,
    scores: ScoreHistory,
    /// The score median reached the threshold (latched).
    true_positive: bool,
    started: bool,
    first_seen: Duration,
    zones: Vec<(String, Membership)>,
    lines: Vec<(String, LineState)>,
    pending_crossings: Vec<LineCrossing>,
    last_emit: Duration,
    best_emitted: f32,
    announced_stationary: bool,
    /// The last matched frame.
    time: Duration,
    score: f32,
    bbox: BBox,
    stationary: bool,
}

impl TrackState {
    fn presence(&self) -> Vec<ZonePresence> {
        self.zones
            .iter()
            .filter_map(|(name, m)| {
                m.entered_at().map(|entered_at| ZonePresence {
                    zone: name.clone(),
                    entered_at,
                })
            })
            .collect()
    }

    fn event(&mut self, id: u64, phase: Phase, reason: Reason) -> TrackEvent {
        let best =
            phase == Phase::Started || (phase != Phase::Ended && self.score > self.best_emitted);
        if phase != Phase::Ended {
            self.best_emitted = self.best_emitted.max(self.score);
            self.last_emit = self.time;
            self.announced_stationary = self.stationary;
        }
        TrackEvent {
            track_id: id,
            class_id: self.class_id,
            label: self.label.clone(),
            score: self.score,
            bbox: self.bbox,
            time: self.time,
            phase,
            started_at: self.first_seen,
            zones: self.presence(),
            crossings: std::mem::take(&mut self.pending_crossings),
            stationary: self.stationary,
            reason,
            best,
        }
    }

    /// Re-keys zone and line state after a reconfiguration, by name.
    fn remap(&mut self, zones: &[Zone], lines: &[Line]) {
        let mut old: HashMap<String, Membership> = self.zones.drain(..).collect();
        self.zones = zones
            .iter()
            .map(|z| {
                (
                    z.name().to_owned(),
                    old.remove(z.name()).unwrap_or_default(),
                )
            })
            .collect();
        let mut old: HashMap<String, LineState> = self.lines.drain(..).collect();
        self.lines = lines
            .iter()
            .map(|l| {
                (
                    l.name().to_owned(),
                    old.remove(l.name()).unwrap_or_default(),
                )
            })
            .collect();
    }
}

/// One camera's scene.
#[derive(Debug)]
pub struct Scene {
    c: Compiled,
    tracker: Tracker,
    motion: MotionDetector,
    states: BTreeMap<u64, TrackState>,
    frame_aspect: f32,
}

impl Scene {
    /// Validates `cfg`; errors name the field.
    pub fn new(cfg: SceneConfig) -> Result<Self, Error> {
        let c = compile(cfg)?;
        let motion = MotionDetector::new(c.cfg.motion, c.masks.polygons().to_vec())?;
        Ok(Scene {
            tracker: Tracker::new(c.cfg.tracker),
            motion,
            c,
            states: BTreeMap::new(),
            frame_aspect: 1.0,
        })
    }

    pub fn config(&self) -> &SceneConfig {
        &self.c.cfg
    }

    /// Applies a new config from the next frame. Tracks, their ids, zone
    /// stays (by zone name) and the motion background are kept. On error
    /// nothing changes.
    pub fn reconfigure(&mut self, cfg: SceneConfig) -> Result<(), Error> {
        let c = compile(cfg)?;
        self.motion
            .reconfigure(c.cfg.motion, c.masks.polygons().to_vec())?;
        self.tracker.set_config(c.cfg.tracker);
        for st in self.states.values_mut() {
            st.remap(&c.zones, &c.lines);
        }
        self.c = c;
        Ok(())
    }

    /// Motion analysis of one frame. Also records the frame's aspect ratio,
    /// which the per-class ratio filters use (1.0 until the first frame).
    pub fn motion(&mut self, time: Duration, frame: &Frame<'_>) -> Result<MotionResult, Error> {
        let r = self.motion.process(time, frame)?;
        self.frame_aspect = frame.width as f32 / frame.height as f32;
        Ok(r)
    }

    /// Whether the object detector should run on the frame `m` was computed
    /// for: the motion gate is open or a track (tentative ones included) is
    /// alive.
    pub fn run_detector(&self, m: &MotionResult) -> bool {
        m.active || self.tracker.has_tracks()
    }

    /// Feeds one analysed frame's detections; returns the events to store.
    pub fn update(&mut self, time: Duration, detections: &[RawDetection<'_>]) -> Vec<TrackEvent> {
        let c = &self.c;
        let mut kept: Vec<(RawDetection<'_>, ClassFilter)> = Vec::with_capacity(detections.len());
        for d in detections {
            if !c.classes.is_empty() && !c.classes.contains(d.label) {
                continue;
            }
            let f = c
                .cfg
                .filters
                .get(d.label)
                .copied()
                .unwrap_or_else(|| ClassFilter::with_min_score(c.cfg.min_score));
            let low = c.cfg.tracker.low_score.min(f.min_score);
            if d.score.is_nan()
                || d.score < low
                || !f.accepts_box(&d.bbox, self.frame_aspect)
                || c.masks.hides(&d.bbox)
            {
                continue;
            }
            kept.push((*d, f));
        }
        let obs: Vec<Observation> = kept
            .iter()
            .map(|(d, f)| Observation {
                class_id: d.class_id,
                score: d.score,
                bbox: d.bbox,
                high: d.score >= f.min_score,
            })
            .collect();
        let upd = self.tracker.update(time, &obs);

        let mut events = Vec::new();
        for t in upd.removed {
            if let Some(mut st) = self.states.remove(&t.id())
                && st.started
            {
                events.push(st.event(t.id(), Phase::Ended, Reason::End));
            }
        }
        for m in upd.matched {
            let (d, f) = &kept[m.detection];
            let Some(track) = self.tracker.track(m.track_id) else {
                continue;
            };
            let (confirmed, stationary, first_seen) =
                (track.confirmed(), track.stationary(), track.first_seen());
            let c = &self.c;
            let st = self.states.entry(m.track_id).or_insert_with(|| TrackState {
                class_id: d.class_id,
                label: d.label.to_owned(),
                scores: ScoreHistory::default(),
                true_positive: false,
                started: false,
                first_seen,
                zones: c
                    .zones
                    .iter()
                    .map(|z| (z.name().to_owned(), Membership::default()))
                    .collect(),
                lines: c
                    .lines
                    .iter()
                    .map(|l| (l.name().to_owned(), LineState::default()))
                    .collect(),
                pending_crossings: Vec::new(),
                last_emit: time,
                best_emitted: 0.0,
                announced_stationary: false,
                time,
                score: d.score,
                bbox: d.bbox,
                stationary: false,
            });
            st.time = time;
            st.score = d.score;
            st.bbox = d.bbox;
            st.stationary = stationary;
            st.scores.push(d.score);
            if !st.true_positive && st.scores.median() >= f.threshold {
                st.true_positive = true;
            }
            let p = reference_point(&d.bbox);
            let mut zone_changed = false;
            for (zone, (_, mem)) in c.zones.iter().zip(st.zones.iter_mut()) {
                zone_changed |= zone.observe(mem, p, time).is_some();
            }
            for (line, (_, ls)) in c.lines.iter().zip(st.lines.iter_mut()) {
                if let Some(direction) = line.observe(ls, p) {
                    st.pending_crossings.push(LineCrossing {
                        line: line.name().to_owned(),
                        direction,
                    });
                }
            }
            if !st.started {
                if confirmed && st.true_positive {
                    st.started = true;
                    events.push(st.event(m.track_id, Phase::Started, Reason::Start));
                }
                continue;
            }
            let since = time.saturating_sub(st.last_emit);
            let reason = if !st.pending_crossings.is_empty() {
                Some(Reason::LineCrossing)
            } else if zone_changed {
                Some(Reason::ZoneChange)
            } else if since < c.cfg.event_interval {
                None
            } else if st.stationary != st.announced_stationary {
                Some(Reason::StationaryChange)
            } else if since >= c.cfg.periodic_interval {
                Some(Reason::Periodic)
            } else if st.stationary {
                None
            } else if st.score > st.best_emitted {
                Some(Reason::BetterScore)
            } else {
                Some(Reason::Position)
            };
            if let Some(reason) = reason {
                events.push(st.event(m.track_id, Phase::Updated, reason));
            }
        }
        events.sort_by_key(|e| e.track_id);
        events
    }

    /// The reported tracks that are alive, ordered by id.
    pub fn active_tracks(&self) -> Vec<ActiveTrack> {
        self.states
            .iter()
            .filter(|(_, st)| st.started)
            .map(|(&id, st)| ActiveTrack {
                track_id: id,
                class_id: st.class_id,
                label: st.label.clone(),
                score: st.score,
                bbox: st.bbox,
                started_at: st.first_seen,
                last_seen: st.time,
                zones: st.presence(),
                stationary: st.stationary,
            })
            .collect()
    }

    /// Ends every track (camera removed, stream lost): `Ended` events for
    /// the reported ones, at their last frame. Track ids are not reused.
    pub fn end_all(&mut self) -> Vec<TrackEvent> {
        self.tracker.clear();
        std::mem::take(&mut self.states)
            .into_iter()
            .filter(|(_, st)| st.started)
            .map(|(id, mut st)| st.event(id, Phase::Ended, Reason::End))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::zones::LineDirection;

    const PERSON: u16 = 0;
    const CAR: u16 = 2;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    /// A person-sized box whose reference point is (x, y).
    fn at(x: f32, y: f32) -> BBox {
        [x - 0.025, y - 0.2, x + 0.025, y]
    }

    fn person(score: f32, bbox: BBox) -> RawDetection<'static> {
        RawDetection {
            class_id: PERSON,
            label: "person",
            score,
            bbox,
        }
    }

    fn square(name: &str, x0: f32, y0: f32, x1: f32, y1: f32) -> ZoneConfig {
        ZoneConfig {
            name: name.into(),
            area: vec![
                Point::new(x0, y0),
                Point::new(x1, y0),
                Point::new(x1, y1),
                Point::new(x0, y1),
            ],
            inertia: 0,
        }
    }

    fn road_line(direction: LineDirection) -> LineConfig {
        LineConfig {
            name: "road".into(),
            a: Point::new(0.1, 0.5),
            b: Point::new(0.9, 0.5),
            direction,
        }
    }

    /// Runs `frames` frames 200 ms apart; `dets(f)` gives frame f's
    /// detections. Returns every event.
    fn play(
        scene: &mut Scene,
        frames: u64,
        dets: impl Fn(u64) -> Vec<RawDetection<'static>>,
    ) -> Vec<TrackEvent> {
        (0..frames)
            .flat_map(|f| scene.update(ms(200 * f), &dets(f)))
            .collect()
    }

    #[test]
    fn two_people_crossing_a_line_in_opposite_directions() {
        let mut scene = Scene::new(SceneConfig {
            lines: vec![road_line(LineDirection::Both)],
            ..SceneConfig::default()
        })
        .unwrap();
        // A walks down the image at x 0.3, B walks up at x 0.7.
        let events = play(&mut scene, 21, |f| {
            let d = 0.02 * f as f32;
            vec![person(0.8, at(0.3, 0.3 + d)), person(0.8, at(0.7, 0.7 - d))]
        });
        let crossings: Vec<(u64, Duration, &LineCrossing)> = events
            .iter()
            .flat_map(|e| e.crossings.iter().map(move |c| (e.track_id, e.time, c)))
            .collect();
        assert_eq!(crossings.len(), 2, "{crossings:?}");
        let by_track = |id| crossings.iter().find(|c| c.0 == id).unwrap();
        // Standing on a (left) facing b (right), left is up in the image:
        // walking down is left to right.
        assert_eq!(by_track(1).2.direction, Direction::LeftToRight);
        assert_eq!(by_track(2).2.direction, Direction::RightToLeft);
        // Both cross between frame 10 (y = 0.5, on the line) and frame 11.
        assert_eq!(by_track(1).1, ms(2200));
        assert_eq!(by_track(2).1, ms(2200));
        let e = events
            .iter()
            .find(|e| e.track_id == 1 && e.time == ms(2200))
            .unwrap();
        assert_eq!((e.phase, e.reason), (Phase::Updated, Reason::LineCrossing));
    }

    #[test]
    fn line_direction_filter_keeps_only_one_way() {
        let mut scene = Scene::new(SceneConfig {
            lines: vec![road_line(LineDirection::RightToLeft)],
            ..SceneConfig::default()
        })
        .unwrap();
        let events = play(&mut scene, 21, |f| {
            let d = 0.02 * f as f32;
            vec![person(0.8, at(0.3, 0.3 + d)), person(0.8, at(0.7, 0.7 - d))]
        });
        let crossings: Vec<(u64, Direction)> = events
            .iter()
            .flat_map(|e| e.crossings.iter().map(move |c| (e.track_id, c.direction)))
            .collect();
        assert_eq!(crossings, vec![(2, Direction::RightToLeft)]);
    }

    #[test]
    fn crossing_while_tentative_is_carried_by_the_start() {
        let mut scene = Scene::new(SceneConfig {
            lines: vec![road_line(LineDirection::Both)],
            tracker: TrackerConfig {
                min_initialized: 3,
                ..TrackerConfig::default()
            },
            ..SceneConfig::default()
        })
        .unwrap();
        let events = play(&mut scene, 3, |f| {
            vec![person(0.8, at(0.3, 0.46 + 0.04 * f as f32))]
        });
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].phase, Phase::Started);
        assert_eq!(events[0].crossings.len(), 1);
        assert_eq!(events[0].started_at, ms(0));
        assert_eq!(events[0].time, ms(400));
    }

    #[test]
    fn an_object_sitting_still_is_announced_stationary_once() {
        let mut scene = Scene::new(SceneConfig::default()).unwrap();
        // Three minutes still, with a pixel of detector jitter.
        let events = play(&mut scene, 900, |f| {
            vec![person(0.8, at(0.5 + 0.001 * (f % 3) as f32, 0.7))]
        });
        let stationary: Vec<&TrackEvent> = events
            .iter()
            .filter(|e| e.reason == Reason::StationaryChange)
            .collect();
        assert_eq!(stationary.len(), 1, "{stationary:?}");
        assert!(stationary[0].stationary);
        // Still enough at 10 s, announced on the next frame allowed by the
        // one-per-second rule (the last position event was at 9.2 s).
        let since = stationary[0].time;
        assert_eq!(since, ms(10_200));
        // Afterwards only the periodic reminder, every 60 s.
        let after: Vec<(Duration, Reason)> = events
            .iter()
            .filter(|e| e.time > since)
            .map(|e| (e.time, e.reason))
            .collect();
        assert_eq!(
            after,
            vec![
                (ms(70_200), Reason::Periodic),
                (ms(130_200), Reason::Periodic)
            ]
        );
        assert!(events.iter().all(|e| e.track_id == 1));
    }

    #[test]
    fn a_single_frame_false_positive_never_yields_an_event() {
        let mut scene = Scene::new(SceneConfig::default()).unwrap();
        let events = play(&mut scene, 20, |f| {
            if f == 3 {
                vec![person(0.95, at(0.5, 0.5))]
            } else {
                vec![]
            }
        });
        assert!(events.is_empty(), "{events:?}");
        assert!(scene.active_tracks().is_empty());
    }

    #[test]
    fn a_track_keeps_its_id_through_two_missed_frames() {
        let mut scene = Scene::new(SceneConfig::default()).unwrap();
        let events = play(&mut scene, 15, |f| {
            if f == 6 || f == 7 {
                vec![]
            } else {
                vec![person(0.8, at(0.2 + 0.01 * f as f32, 0.6))]
            }
        });
        assert!(events.iter().all(|e| e.track_id == 1), "{events:?}");
        assert!(events.iter().all(|e| e.phase != Phase::Ended));
        assert_eq!(scene.active_tracks().len(), 1);
    }

    #[test]
    fn start_updates_at_most_once_a_second_and_end() {
        let mut scene = Scene::new(SceneConfig::default()).unwrap();
        // Walks for 10 s, then disappears.
        let events = play(&mut scene, 70, |f| {
            if f < 50 {
                vec![person(0.8, at(0.1 + 0.01 * f as f32, 0.6))]
            } else {
                vec![]
            }
        });
        assert_eq!(
            events.first().map(|e| (e.phase, e.time)),
            Some((Phase::Started, ms(200)))
        );
        assert!(events[0].best);
        let last = events.last().unwrap();
        assert_eq!((last.phase, last.reason), (Phase::Ended, Reason::End));
        // The last frame's box and time.
        assert_eq!(last.time, ms(49 * 200));
        assert_eq!(last.bbox, at(0.1 + 0.01 * 49.0, 0.6));
        let updates: Vec<Duration> = events
            .iter()
            .filter(|e| e.phase == Phase::Updated)
            .map(|e| e.time)
            .collect();
        assert!(
            updates
                .windows(2)
                .all(|w| w[1] - w[0] >= Duration::from_secs(1))
        );
        assert_eq!(updates.len(), 9, "{updates:?}");
        assert!(
            events
                .iter()
                .filter(|e| e.phase == Phase::Updated)
                .all(|e| e.reason == Reason::Position)
        );
    }

    #[test]
    fn better_score_is_flagged_as_snapshot_candidate() {
        let mut scene = Scene::new(SceneConfig::default()).unwrap();
        let events = play(&mut scene, 20, |f| {
            // Frame 16 is a second after the last position event (2.2 s).
            let score = if f == 16 { 0.95 } else { 0.7 };
            vec![person(score, at(0.1 + 0.01 * f as f32, 0.6))]
        });
        let best: Vec<(Duration, Reason)> = events
            .iter()
            .filter(|e| e.best)
            .map(|e| (e.time, e.reason))
            .collect();
        assert_eq!(
            best,
            vec![(ms(200), Reason::Start), (ms(3200), Reason::BetterScore)]
        );
    }

    #[test]
    fn zone_entry_and_exit_with_dwell_start() {
        let mut scene = Scene::new(SceneConfig {
            zones: vec![square("yard", 0.505, 0.0, 1.0, 1.0)],
            ..SceneConfig::default()
        })
        .unwrap();
        // Walks right from 0.3 to 0.69 and back.
        let x = |f: u64| {
            if f < 40 {
                0.3 + 0.01 * f as f32
            } else {
                0.69 - 0.01 * (f - 40) as f32
            }
        };
        let events = play(&mut scene, 70, |f| vec![person(0.8, at(x(f), 0.6))]);
        assert!(events.iter().all(|e| e.track_id == 1));
        let changes: Vec<(Duration, Vec<ZonePresence>)> = events
            .iter()
            .filter(|e| e.reason == Reason::ZoneChange)
            .map(|e| (e.time, e.zones.clone()))
            .collect();
        // Inside from frame 21 (x = 0.51); entered after 3 frames inside.
        let enter = ZonePresence {
            zone: "yard".into(),
            entered_at: ms(4200),
        };
        assert_eq!(changes.len(), 2, "{changes:?}");
        assert_eq!(changes[0], (ms(4600), vec![enter.clone()]));
        // Outside from frame 59 (x = 0.5); left after 3 frames outside.
        assert_eq!(changes[1], (ms(12_200), vec![]));
        let between = events
            .iter()
            .filter(|e| e.time > changes[0].0 && e.time < changes[1].0);
        assert!(between.into_iter().all(|e| e.zones == vec![enter.clone()]));
        let after = events.iter().filter(|e| e.time > changes[1].0);
        assert!(after.into_iter().all(|e| e.zones.is_empty()));
    }

    #[test]
    fn masks_hide_objects_standing_in_them() {
        let mut scene = Scene::new(SceneConfig {
            masks: vec![square("", 0.0, 0.8, 1.0, 1.0).area],
            ..SceneConfig::default()
        })
        .unwrap();
        let events = play(&mut scene, 10, |f| {
            vec![
                // On the masked road.
                person(0.9, at(0.2 + 0.01 * f as f32, 0.9)),
                // Above it.
                person(0.9, at(0.6, 0.7)),
            ]
        });
        assert!(!events.is_empty());
        assert!(events.iter().all(|e| e.bbox[3] == 0.7), "{events:?}");
    }

    #[test]
    fn low_median_score_is_never_reported() {
        let mut filters = BTreeMap::new();
        filters.insert(
            "person".to_owned(),
            ClassFilter {
                threshold: 0.75,
                ..ClassFilter::with_min_score(0.5)
            },
        );
        let mut scene = Scene::new(SceneConfig {
            filters,
            ..SceneConfig::default()
        })
        .unwrap();
        let walk = |f: u64, s: f32| vec![person(s, at(0.1 + 0.01 * f as f32, 0.6))];
        let events = play(&mut scene, 16, |f| walk(f, if f < 10 { 0.6 } else { 0.8 }));
        // Confirmed from frame 1 but not reported while the median is 0.6;
        // reported once 6 of the last 10 scores are 0.8 (frame 15).
        assert_eq!(events.len(), 1, "{events:?}");
        assert_eq!(
            (events[0].phase, events[0].time),
            (Phase::Started, ms(3000))
        );
        assert_eq!(events[0].started_at, ms(0));
    }

    #[test]
    fn classes_and_min_score_filter_detections() {
        let mut scene = Scene::new(SceneConfig {
            classes: vec!["car".into()],
            ..SceneConfig::default()
        })
        .unwrap();
        let events = play(&mut scene, 5, |f| {
            let b = at(0.3 + 0.01 * f as f32, 0.6);
            vec![
                person(0.9, b),
                RawDetection {
                    class_id: CAR,
                    label: "car",
                    score: 0.9,
                    bbox: at(0.7, 0.6),
                },
                // Below min_score: never starts a track.
                RawDetection {
                    class_id: CAR,
                    label: "car",
                    score: 0.3,
                    bbox: at(0.2, 0.9),
                },
            ]
        });
        assert!(
            events
                .iter()
                .all(|e| e.label == "car" && e.bbox == at(0.7, 0.6))
        );
        assert_eq!(scene.active_tracks().len(), 1);
    }

    #[test]
    fn end_all_ends_reported_tracks_and_ids_go_on() {
        let mut scene = Scene::new(SceneConfig::default()).unwrap();
        play(&mut scene, 3, |_| vec![person(0.8, at(0.3, 0.6))]);
        let ended = scene.end_all();
        assert_eq!(ended.len(), 1);
        assert_eq!((ended[0].phase, ended[0].time), (Phase::Ended, ms(400)));
        assert!(scene.active_tracks().is_empty());
        let events = play(&mut scene, 3, |_| vec![person(0.8, at(0.3, 0.6))]);
        assert_eq!(events[0].track_id, 2);
    }

    #[test]
    fn reconfigure_keeps_tracks_and_applies_next_frame() {
        let mut scene = Scene::new(SceneConfig::default()).unwrap();
        play(&mut scene, 5, |_| vec![person(0.8, at(0.7, 0.6))]);
        scene
            .reconfigure(SceneConfig {
                zones: vec![square("yard", 0.5, 0.0, 1.0, 1.0)],
                ..SceneConfig::default()
            })
            .unwrap();
        let events: Vec<TrackEvent> = (5..10)
            .flat_map(|f| scene.update(ms(200 * f), &[person(0.8, at(0.7, 0.6))]))
            .collect();
        let entry = events
            .iter()
            .find(|e| e.reason == Reason::ZoneChange)
            .unwrap();
        assert_eq!(entry.track_id, 1);
        assert_eq!(entry.zones[0].entered_at, ms(1000));
        // A bad config changes nothing.
        let bad = SceneConfig {
            zones: vec![
                square("a", 0.0, 0.0, 0.5, 0.5),
                square("a", 0.5, 0.5, 1.0, 1.0),
            ],
            ..SceneConfig::default()
        };
        assert_eq!(
            scene.reconfigure(bad).unwrap_err(),
            Error::DuplicateName {
                field: "zones[1].name".into(),
                name: "a".into()
            }
        );
        assert_eq!(scene.config().zones.len(), 1);
    }

    #[test]
    fn invalid_configs_name_the_field() {
        let field = |cfg: SceneConfig| Scene::new(cfg).unwrap_err().field().map(str::to_owned);
        let mut z = square("yard", 0.0, 0.0, 0.5, 0.5);
        z.area.truncate(2);
        assert_eq!(
            field(SceneConfig {
                zones: vec![square("ok", 0.0, 0.0, 0.1, 0.1), z],
                ..SceneConfig::default()
            }),
            Some("zones[1].area".into())
        );
        let mut l = road_line(LineDirection::Both);
        l.a.y = -0.1;
        assert_eq!(
            field(SceneConfig {
                lines: vec![l],
                ..SceneConfig::default()
            }),
            Some("lines[0].a.y".into())
        );
        assert_eq!(
            field(SceneConfig {
                lines: vec![
                    road_line(LineDirection::Both),
                    road_line(LineDirection::Both)
                ],
                ..SceneConfig::default()
            }),
            Some("lines[1].name".into())
        );
        assert_eq!(
            field(SceneConfig {
                masks: vec![vec![
                    Point::new(0.0, 0.0),
                    Point::new(2.0, 0.0),
                    Point::new(0.0, 1.0)
                ]],
                ..SceneConfig::default()
            }),
            Some("masks[0][1].x".into())
        );
        assert_eq!(
            field(SceneConfig {
                min_score: 1.2,
                ..SceneConfig::default()
            }),
            Some("min_score".into())
        );
    }

    #[test]
    fn config_round_trips_through_json() {
        let mut filters = BTreeMap::new();
        filters.insert("car".to_owned(), ClassFilter::with_min_score(0.6));
        let cfg = SceneConfig {
            classes: vec!["person".into(), "car".into()],
            filters,
            zones: vec![square("yard", 0.5, 0.0, 1.0, 1.0)],
            lines: vec![road_line(LineDirection::LeftToRight)],
            ..SceneConfig::default()
        };
        let json = serde_json::to_string(&cfg).unwrap();
        let back: SceneConfig = serde_json::from_str(&json).unwrap();
        assert_eq!(back, cfg);
        // Every field has a default.
        let empty: SceneConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(empty, SceneConfig::default());
    }

    #[test]
    fn unknown_labels_are_named() {
        let labels = ["person", "car"];
        let mut cfg = SceneConfig {
            classes: vec!["person".into(), "tank".into()],
            ..SceneConfig::default()
        };
        assert_eq!(
            cfg.check_labels(&labels).unwrap_err(),
            Error::UnknownClass {
                field: "classes[1]".into(),
                label: "tank".into()
            }
        );
        cfg.classes.pop();
        cfg.check_labels(&labels).unwrap();
        cfg.filters
            .insert("horse".into(), ClassFilter::with_min_score(0.5));
        assert_eq!(
            cfg.check_labels(&labels).unwrap_err().field(),
            Some("filters.horse")
        );
    }

    #[test]
    fn detector_keeps_running_while_tracks_live() {
        let mut scene = Scene::new(SceneConfig::default()).unwrap();
        let idle = MotionResult {
            changed: 0.0,
            boxes: vec![],
            motion: false,
            calibrating: false,
            active: false,
        };
        assert!(!scene.run_detector(&idle));
        scene.update(ms(0), &[person(0.8, at(0.3, 0.6))]);
        assert!(scene.run_detector(&idle));
        scene.update(ms(200), &[]);
        assert!(!scene.run_detector(&idle));
    }

    #[test]
    fn motion_goes_through_the_scene_masks() {
        let mut scene = Scene::new(SceneConfig {
            masks: vec![square("", 0.0, 0.0, 1.0, 1.0).area],
            ..SceneConfig::default()
        })
        .unwrap();
        let (w, h) = (64u32, 36u32);
        let still = vec![10u8; (w * h * 3) as usize];
        let busy = vec![200u8; (w * h * 3) as usize];
        let mut t = 0;
        for data in [&still, &still, &still, &still, &still, &still, &busy] {
            let f = Frame {
                width: w,
                height: h,
                stride: (w * 3) as usize,
                data,
            };
            let r = scene.motion(ms(t), &f).unwrap();
            assert!(!r.motion);
            t += 200;
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

        /// Whatever the detector reports, each track's events form one
        /// lifecycle and respect the emission rule.
        #[test]
        fn every_track_has_one_lifecycle_and_the_rate_limit_holds(
            walks in proptest::collection::vec(
                (0.1f32..0.9, 0.3f32..0.9, -0.02f32..0.02, -0.02f32..0.02, 0u64..60, 1u64..80),
                1..5,
            ),
            drops in proptest::collection::vec(0u64..120, 0..30),
            scores in proptest::collection::vec(0.0f32..1.0, 120),
        ) {
            let mut scene = Scene::new(SceneConfig {
                zones: vec![square("yard", 0.5, 0.0, 1.0, 1.0)],
                lines: vec![road_line(LineDirection::Both)],
                ..SceneConfig::default()
            })
            .unwrap();
            let mut events = play(&mut scene, 120, |f| {
                if drops.contains(&f) {
                    return vec![];
                }
                walks
                    .iter()
                    .enumerate()
                    .filter(|(_, w)| f >= w.4 && f < w.4 + w.5)
                    .map(|(k, w)| {
                        let t = (f - w.4) as f32;
                        let x = (w.0 + w.2 * t).clamp(0.03, 0.97);
                        let y = (w.1 + w.3 * t).clamp(0.25, 1.0);
                        person(scores[(f as usize + k * 17) % scores.len()], at(x, y))
                    })
                    .collect()
            });
            events.extend(scene.end_all());
            let mut by_track: BTreeMap<u64, Vec<&TrackEvent>> = BTreeMap::new();
            for e in &events {
                by_track.entry(e.track_id).or_default().push(e);
            }
            for (id, evs) in by_track {
                proptest::prop_assert_eq!(evs[0].phase, Phase::Started, "track {}", id);
                proptest::prop_assert!(evs[0].best);
                let last = evs[evs.len() - 1];
                proptest::prop_assert_eq!(last.phase, Phase::Ended, "track {}", id);
                let mut prev = evs[0].time;
                for e in &evs[1..evs.len() - 1] {
                    proptest::prop_assert_eq!(e.phase, Phase::Updated);
                    proptest::prop_assert!(e.time > prev);
                    if !matches!(e.reason, Reason::LineCrossing | Reason::ZoneChange) {
                        proptest::prop_assert!(e.time - prev >= DEFAULT_EVENT_INTERVAL);
                    }
                    proptest::prop_assert!(e.started_at == evs[0].started_at);
                    prev = e.time;
                }
                proptest::prop_assert!(last.time >= prev);
            }
        }
    }
}
