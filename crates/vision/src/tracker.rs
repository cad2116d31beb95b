//! A ByteTrack-style multi-object tracker.
//!
//! Each analysed frame, every track's constant-velocity Kalman filter on
//! (cx, cy, aspect, h) predicts its box; then detections are associated in
//! three stages, each an optimal assignment on 1 − IoU (see `assign` for why
//! not greedy), never across classes:
//! 1. high-score detections with confirmed tracks, lost ones included
//!    (IoU ≥ `match_iou`);
//! 2. low-score detections with the confirmed tracks still unmatched that
//!    were seen on the previous frame (IoU ≥ `low_match_iou`): a person half
//!    hidden behind a post keeps their track without low scores ever
//!    starting one;
//! 3. the remaining high-score detections with tentative tracks
//!    (IoU ≥ `tentative_match_iou`).
//!
//! Unmatched high-score detections start tentative tracks. Guarantees:
//! - A track is confirmed after `min_initialized` consecutive matched frames;
//!   a tentative track that misses one frame is dropped, so a single-frame
//!   false positive never becomes a confirmed track.
//! - A confirmed track survives up to `max_disappeared` frames without a
//!   match (and at most `max_lost_time`), then is removed; while lost it
//!   keeps its id and can be matched again.
//! - Track ids are unique for the life of one [`Tracker`] (they count up from
//!   1 and are never reused, not even after [`Tracker::clear`]).
//! - A track whose measured box stays within IoU `stationary_iou` of where it
//!   was anchored for `stationary_after` becomes stationary; it stops being
//!   stationary (and re-anchors) once `stationary_exit_frames` consecutive
//!   measured boxes leave that IoU, so one jittery box of a parked car does
//!   not make it "move".
//!
//! Assumes one call per analysed frame, in time order.

mod assign;
mod kalman;

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, unit};
use crate::geometry::{BBox, iou};
use assign::hungarian;
use kalman::Kalman;

/// Tracker settings. Defaults are ByteTrack's, with confirmation and loss
/// counted in analysed frames (5 per second by default).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TrackerConfig {
    /// Consecutive matched frames before a track is confirmed. Default 2.
    pub min_initialized: u32,
    /// Frames a confirmed track may go unmatched before it ends. Default 10.
    pub max_disappeared: u32,
    /// Time a track may go unmatched before it ends, whatever the frame
    /// count. Default 5 s.
    pub max_lost_time: Duration,
    /// Minimum IoU for stage 1 (high scores, confirmed tracks). Default 0.2.
    pub match_iou: f32,
    /// Minimum IoU for stage 2 (low scores). Default 0.5.
    pub low_match_iou: f32,
    /// Minimum IoU for stage 3 (tentative tracks). Default 0.3.
    pub tentative_match_iou: f32,
    /// Detections below their class's `min_score` but at least this are
    /// "low-score": they can only continue a track. Default 0.1.
    pub low_score: f32,
    /// IoU with the anchored box above which a track counts as not moving.
    /// Default 0.9.
    pub stationary_iou: f32,
    /// How long a track must not move to be stationary. Default 10 s.
    pub stationary_after: Duration,
    /// Consecutive matched frames away from the anchored box that count as
    /// moving (0 counts as 1). Default 3.
    pub stationary_exit_frames: u32,
}

impl Default for TrackerConfig {
    fn default() -> Self {
        TrackerConfig {
            min_initialized: 2,
            max_disappeared: 10,
            max_lost_time: Duration::from_secs(5),
            match_iou: 0.2,
            low_match_iou: 0.5,
            tentative_match_iou: 0.3,
            low_score: 0.1,
            stationary_iou: 0.9,
            stationary_after: Duration::from_secs(10),
            stationary_exit_frames: 3,
        }
    }
}

impl TrackerConfig {
    /// Checks the settings; `field` is e.g. `tracker`.
    pub fn validate(&self, field: &str) -> Result<(), Error> {
        if self.min_initialized == 0 {
            return Err(Error::Invalid {
                field: format!("{field}.min_initialized"),
                reason: "must be at least 1",
            });
        }
        unit(|| format!("{field}.match_iou"), self.match_iou)?;
        unit(|| format!("{field}.low_match_iou"), self.low_match_iou)?;
        unit(
            || format!("{field}.tentative_match_iou"),
            self.tentative_match_iou,
        )?;
        unit(|| format!("{field}.low_score"), self.low_score)?;
        unit(|| format!("{field}.stationary_iou"), self.stationary_iou)
    }
}

/// One detection as the tracker sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Observation {
    pub class_id: u16,
    pub score: f32,
    pub bbox: BBox,
    /// At or above its class's `min_score`: may start a track.
    pub high: bool,
}

/// A track's life stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrackStatus {
    Tentative,
    Confirmed,
}

/// One tracked object.
#[derive(Debug, Clone, PartialEq)]
pub struct Track {
    id: u64,
    class_id: u16,
    status: TrackStatus,
    kalman: Kalman,
    hits: u32,
    missed: u32,
    bbox: BBox,
    score: f32,
    first_seen: Duration,
    last_seen: Duration,
    stationary: bool,
    anchor: (BBox, Duration),
    /// Consecutive matches away from the anchor.
    away: u32,
}

impl Track {
    pub fn id(&self) -> u64 {
        self.id
    }
    pub fn class_id(&self) -> u16 {
        self.class_id
    }
    pub fn status(&self) -> TrackStatus {
        self.status
    }
    pub fn confirmed(&self) -> bool {
        self.status == TrackStatus::Confirmed
    }
    /// The box of the last matched detection.
    pub fn bbox(&self) -> BBox {
        self.bbox
    }
    /// Where the filter puts the object now (after the last predict/update).
    pub fn predicted_bbox(&self) -> BBox {
        self.kalman.bbox()
    }
    /// The score of the last matched detection.
    pub fn score(&self) -> f32 {
        self.score
    }
    pub fn first_seen(&self) -> Duration {
        self.first_seen
    }
    /// The time of the last matched frame.
    pub fn last_seen(&self) -> Duration {
        self.last_seen
    }
    /// Frames since the last match.
    pub fn missed(&self) -> u32 {
        self.missed
    }
    pub fn stationary(&self) -> bool {
        self.stationary
    }

    fn matched(&mut self, o: &Observation, time: Duration, cfg: &TrackerConfig) -> Matched {
        self.kalman.update(&o.bbox);
        self.hits += 1;
        self.missed = 0;
        self.bbox = o.bbox;
        self.score = o.score;
        self.last_seen = time;
        let confirmed_now =
            self.status == TrackStatus::Tentative && self.hits >= cfg.min_initialized;
        if confirmed_now {
            self.status = TrackStatus::Confirmed;
        }
        let was = self.stationary;
        if iou(&o.bbox, &self.anchor.0) >= cfg.stationary_iou {
            self.away = 0;
            if time.saturating_sub(self.anchor.1) >= cfg.stationary_after {
                self.stationary = true;
            }
        } else {
            self.away += 1;
            if self.away >= cfg.stationary_exit_frames.max(1) {
                self.away = 0;
                self.anchor = (o.bbox, time);
                self.stationary = false;
            }
        }
        Matched {
            track_id: self.id,
            detection: 0,
            confirmed_now,
            stationary_changed: was != self.stationary,
        }
    }
}

/// A track matched to a detection on this frame (new tracks included).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Matched {
    pub track_id: u64,
    /// Index into the observations passed to [`Tracker::update`].
    pub detection: usize,
    /// The track became confirmed on this frame.
    pub confirmed_now: bool,
    /// The track became or stopped being stationary on this frame.
    pub stationary_changed: bool,
}

/// What one frame did to the tracks.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TrackerUpdate {
    /// Ordered by track id.
    pub matched: Vec<Matched>,
    /// Tracks that ended on this frame (tentative ones included), as they
    /// were at their last match.
    pub removed: Vec<Track>,
}

/// The tracker of one camera.
#[derive(Debug, Clone)]
pub struct Tracker {
    cfg: TrackerConfig,
    tracks: Vec<Track>,
    next_id: u64,
}

/// Cost of a pair that must not match: larger than any sum of real costs,
/// so the assignment first maximises the number of allowed pairs.
const FORBIDDEN: f64 = 1e9;

impl Tracker {
    pub fn new(cfg: TrackerConfig) -> Self {
        Tracker {
            cfg,
            tracks: Vec::new(),
            next_id: 1,
        }
    }

    pub fn config(&self) -> &TrackerConfig {
        &self.cfg
    }

    /// New settings from the next frame; tracks are kept.
    pub fn set_config(&mut self, cfg: TrackerConfig) {
        self.cfg = cfg;
    }

    /// Every live track, tentative and lost ones included, ordered by id.
    pub fn tracks(&self) -> &[Track] {
        &self.tracks
    }

    pub fn track(&self, id: u64) -> Option<&Track> {
        self.tracks
            .binary_search_by_key(&id, |t| t.id)
            .ok()
            .map(|i| &self.tracks[i])
    }

    /// Whether any track is alive (the detector should keep running).
    pub fn has_tracks(&self) -> bool {
        !self.tracks.is_empty()
    }

    /// Removes every track and returns them; ids are not reused.
    pub fn clear(&mut self) -> Vec<Track> {
        std::mem::take(&mut self.tracks)
    }

    /// Advances every track by one frame at `time` and associates `obs`.
    pub fn update(&mut self, time: Duration, obs: &[Observation]) -> TrackerUpdate {
        let cfg = self.cfg;
        for t in &mut self.tracks {
            t.kalman.predict(t.missed > 0);
        }
        let confirmed: Vec<usize> = (0..self.tracks.len())
            .filter(|&i| self.tracks[i].confirmed())
            .collect();
        let tentative: Vec<usize> = (0..self.tracks.len())
            .filter(|&i| !self.tracks[i].confirmed())
            .collect();
        let high: Vec<usize> = (0..obs.len()).filter(|&j| obs[j].high).collect();
        let low: Vec<usize> = (0..obs.len()).filter(|&j| !obs[j].high).collect();

        let (m1, left_tracks, left_high) = self.associate(&confirmed, &high, obs, cfg.match_iou);
        let recent: Vec<usize> = left_tracks
            .into_iter()
            .filter(|&i| self.tracks[i].missed == 0)
            .collect();
        let (m2, _, _) = self.associate(&recent, &low, obs, cfg.low_match_iou);
        let (m3, _, unmatched) =
            self.associate(&tentative, &left_high, obs, cfg.tentative_match_iou);

        let mut out = TrackerUpdate::default();
        let mut hit = vec![false; self.tracks.len()];
        for (ti, dj) in m1.into_iter().chain(m2).chain(m3) {
            hit[ti] = true;
            let mut m = self.tracks[ti].matched(&obs[dj], time, &cfg);
            m.detection = dj;
            out.matched.push(m);
        }

        let mut kept = Vec::with_capacity(self.tracks.len() + unmatched.len());
        for (t, hit) in std::mem::take(&mut self.tracks).into_iter().zip(hit) {
            if hit {
                kept.push(t);
                continue;
            }
            let mut t = t;
            t.missed += 1;
            t.hits = 0;
            let gone = !t.confirmed()
                || t.missed > cfg.max_disappeared
                || time.saturating_sub(t.last_seen) > cfg.max_lost_time;
            if gone {
                out.removed.push(t);
            } else {
                kept.push(t);
            }
        }
        for dj in unmatched {
            let o = &obs[dj];
            let id = self.next_id;
            self.next_id += 1;
            let status = if cfg.min_initialized <= 1 {
                TrackStatus::Confirmed
            } else {
                TrackStatus::Tentative
            };
            kept.push(Track {
                id,
                class_id: o.class_id,
                status,
                kalman: Kalman::new(&o.bbox),
                hits: 1,
                missed: 0,
                bbox: o.bbox,
                score: o.score,
                first_seen: time,
                last_seen: time,
                stationary: false,
                anchor: (o.bbox, time),
                away: 0,
            });
            out.matched.push(Matched {
                track_id: id,
                detection: dj,
                confirmed_now: status == TrackStatus::Confirmed,
                stationary_changed: false,
            });
        }
        self.tracks = kept;
        self.tracks.sort_by_key(|t| t.id);
        out.matched.sort_by_key(|m| m.track_id);
        out
    }

    /// Optimal assignment of `tracks` to `dets` (indices) on 1 − IoU, same
    /// class and IoU ≥ `min_iou` only. Returns the pairs, the unmatched
    /// tracks and the unmatched detections.
    fn associate(
        &self,
        tracks: &[usize],
        dets: &[usize],
        obs: &[Observation],
        min_iou: f32,
    ) -> (Vec<(usize, usize)>, Vec<usize>, Vec<usize>) {
        let allowed = |ti: usize, dj: usize| -> Option<f32> {
            let t = &self.tracks[ti];
            let o = &obs[dj];
            if t.class_id != o.class_id {
                return None;
            }
            let v = iou(&t.kalman.bbox(), &o.bbox);
            (v >= min_iou && v > 0.0).then_some(v)
        };
        let cost: Vec<Vec<f64>> = tracks
            .iter()
            .map(|&ti| {
                dets.iter()
                    .map(|&dj| allowed(ti, dj).map_or(FORBIDDEN, |v| 1.0 - f64::from(v)))
                    .collect()
            })
            .collect();
        let assignment = hungarian(&cost);
        let mut pairs = Vec::new();
        let mut det_used = vec![false; dets.len()];
        let mut left_tracks = Vec::new();
        for (r, a) in assignment.into_iter().enumerate() {
            match a {
                Some(c) if cost[r][c] < FORBIDDEN => {
                    det_used[c] = true;
                    pairs.push((tracks[r], dets[c]));
                }
                _ => left_tracks.push(tracks[r]),
            }
        }
        let left_dets = dets
            .iter()
            .zip(det_used)
            .filter(|(_, used)| !used)
            .map(|(&d, _)| d)
            .collect();
        (pairs, left_tracks, left_dets)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    fn obs(class_id: u16, score: f32, bbox: BBox) -> Observation {
        Observation {
            class_id,
            score,
            bbox,
            high: score >= 0.5,
        }
    }

    fn person_at(x: f32) -> BBox {
        [x, 0.4, x + 0.05, 0.6]
    }

    #[test]
    fn single_frame_false_positive_is_never_confirmed() {
        let mut t = Tracker::new(TrackerConfig::default());
        let u = t.update(ms(0), &[obs(0, 0.9, person_at(0.5))]);
        assert_eq!(u.matched.len(), 1);
        assert!(!u.matched[0].confirmed_now);
        let u = t.update(ms(200), &[]);
        assert_eq!(u.removed.len(), 1);
        assert!(!u.removed[0].confirmed());
        assert!(!t.has_tracks());
    }

    #[test]
    fn keeps_its_id_through_two_missed_frames() {
        let mut t = Tracker::new(TrackerConfig::default());
        let mut id = None;
        for f in 0..12u64 {
            let x = 0.1 + 0.01 * f as f32;
            let dets = if f == 5 || f == 6 {
                vec![]
            } else {
                vec![obs(0, 0.8, person_at(x))]
            };
            let u = t.update(ms(200 * f), &dets);
            assert!(u.removed.is_empty(), "frame {f}");
            if let Some(m) = u.matched.first() {
                assert_eq!(*id.get_or_insert(m.track_id), m.track_id, "frame {f}");
            }
        }
        let tr = &t.tracks()[0];
        assert!(tr.confirmed());
        assert_eq!(tr.missed(), 0);
    }

    #[test]
    fn ends_after_max_disappeared() {
        let cfg = TrackerConfig {
            max_disappeared: 3,
            ..TrackerConfig::default()
        };
        let mut t = Tracker::new(cfg);
        t.update(ms(0), &[obs(0, 0.8, person_at(0.3))]);
        t.update(ms(200), &[obs(0, 0.8, person_at(0.3))]);
        for f in 2..5 {
            assert!(t.update(ms(200 * f), &[]).removed.is_empty());
        }
        let u = t.update(ms(1000), &[]);
        assert_eq!(u.removed.len(), 1);
        assert_eq!(u.removed[0].last_seen(), ms(200));
    }

    #[test]
    fn ends_after_max_lost_time_whatever_the_frame_count() {
        let mut t = Tracker::new(TrackerConfig::default());
        t.update(ms(0), &[obs(0, 0.8, person_at(0.3))]);
        t.update(ms(200), &[obs(0, 0.8, person_at(0.3))]);
        assert!(t.update(ms(5_200), &[]).removed.is_empty());
        // One missed frame only, but 5.2 s after the last match.
        let u = t.update(ms(5_400), &[]);
        assert_eq!(u.removed.len(), 1);
    }

    #[test]
    fn does_not_match_across_classes() {
        let mut t = Tracker::new(TrackerConfig::default());
        t.update(ms(0), &[obs(0, 0.8, person_at(0.3))]);
        t.update(ms(200), &[obs(0, 0.8, person_at(0.3))]);
        // A car exactly where the person was: a new track, the person misses.
        let u = t.update(ms(400), &[obs(2, 0.8, person_at(0.3))]);
        assert_eq!(u.matched.len(), 1);
        assert_eq!(u.matched[0].track_id, 2);
        assert_eq!(t.track(1).unwrap().missed(), 1);
    }

    #[test]
    fn low_scores_continue_but_never_start_tracks() {
        let mut t = Tracker::new(TrackerConfig::default());
        t.update(ms(0), &[obs(0, 0.8, person_at(0.3))]);
        t.update(ms(200), &[obs(0, 0.8, person_at(0.31))]);
        // Half hidden: low score, same place, plus a stray low score elsewhere.
        let u = t.update(
            ms(400),
            &[obs(0, 0.3, person_at(0.32)), obs(0, 0.3, person_at(0.8))],
        );
        assert_eq!(u.matched.len(), 1);
        assert_eq!(u.matched[0].track_id, 1);
        assert_eq!(u.matched[0].detection, 0);
        assert_eq!(t.tracks().len(), 1);
    }

    #[test]
    fn crossing_people_keep_their_ids() {
        // Two people walking towards each other along one row; their boxes
        // overlap in the middle. The filter's velocities keep them apart.
        let mut t = Tracker::new(TrackerConfig::default());
        let mut ids = (0, 0);
        for f in 0..45u64 {
            // A third of a box width per frame; they pass at frame 27.
            let a = 0.1 + 0.015 * f as f32;
            let b = 0.9 - 0.015 * f as f32;
            let u = t.update(
                ms(200 * f),
                &[obs(0, 0.8, person_at(a)), obs(0, 0.8, person_at(b))],
            );
            let by_det: Vec<u64> = {
                let mut v = u.matched.clone();
                v.sort_by_key(|m| m.detection);
                v.iter().map(|m| m.track_id).collect()
            };
            if f == 0 {
                ids = (by_det[0], by_det[1]);
            }
            assert_eq!((by_det[0], by_det[1]), ids, "frame {f}");
        }
    }

    #[test]
    fn stationary_after_a_while_and_moving_again() {
        let cfg = TrackerConfig {
            stationary_after: Duration::from_secs(2),
            ..TrackerConfig::default()
        };
        let mut t = Tracker::new(cfg);
        let mut changes = Vec::new();
        for f in 0..30u64 {
            // Still for 4 s (with jitter), then walks off.
            let x = if f < 20 {
                0.3 + 0.001 * (f % 2) as f32
            } else {
                0.3 + 0.015 * (f - 19) as f32
            };
            let u = t.update(ms(200 * f), &[obs(0, 0.8, person_at(x))]);
            assert_eq!(u.matched[0].track_id, 1);
            if u.matched[0].stationary_changed {
                changes.push((f, t.tracks()[0].stationary()));
            }
        }
        // Walking off from frame 20; moving once 3 boxes were away.
        assert_eq!(changes, vec![(10, true), (22, false)]);
    }

    #[test]
    fn one_jittery_box_does_not_end_stationary() {
        let cfg = TrackerConfig {
            stationary_after: Duration::from_secs(2),
            ..TrackerConfig::default()
        };
        let mut t = Tracker::new(cfg);
        let mut changes = 0;
        for f in 0..40u64 {
            // Every 7th box is 20 % taller (IoU 0.83 with the anchor).
            let mut b = person_at(0.3);
            if f % 7 == 6 {
                b[1] -= 0.04;
            }
            let u = t.update(ms(200 * f), &[obs(0, 0.8, b)]);
            changes += usize::from(u.matched[0].stationary_changed);
        }
        assert_eq!(changes, 1);
        assert!(t.tracks()[0].stationary());
    }

    #[test]
    fn ids_are_never_reused() {
        let mut t = Tracker::new(TrackerConfig::default());
        t.update(ms(0), &[obs(0, 0.8, person_at(0.3))]);
        t.clear();
        let u = t.update(ms(200), &[obs(0, 0.8, person_at(0.3))]);
        assert_eq!(u.matched[0].track_id, 2);
    }
}
