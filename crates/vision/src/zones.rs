//! Zones (polygons where presence matters) and lines (directed tripwires).
//!
//! Guarantees:
//! - Membership is decided by the reference point (bottom centre of the box)
//!   with inertia: a track enters a zone only after `inertia` consecutive
//!   observations inside, and leaves only after `inertia` consecutive
//!   observations outside, so a box jittering on the edge does not flap.
//!   `entered_at` is the time of the first of those inside observations (the
//!   first frame of the current stay), so dwell time is `now - entered_at`.
//! - A line is crossed when the reference point moves from one side of the
//!   segment a-b to the other *and* the movement intersects the segment (a
//!   point passing beyond an end of the segment does not count). A point that
//!   lands exactly on the line is not a side: the crossing is counted when it
//!   leaves to the other side.
//! - Left and right are as seen standing on point a facing point b in the
//!   image (y pointing down), matching `kordon.detection.v1.LineDirection`.
//!
//! Assumes the caller feeds observations of one track in time order.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::geometry::{Point, Polygon, check_point, cross};

/// Default zone inertia, in observations.
pub const DEFAULT_INERTIA: u32 = 3;

/// A zone as configured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ZoneConfig {
    /// Unique per camera.
    pub name: String,
    /// At least 3 points inside 0..1.
    pub area: Vec<Point>,
    /// Consecutive observations needed to enter or leave; 0 means
    /// [`DEFAULT_INERTIA`].
    #[serde(default)]
    pub inertia: u32,
}

/// Which crossings of a line count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum LineDirection {
    #[default]
    Both,
    LeftToRight,
    RightToLeft,
}

impl LineDirection {
    /// Whether a crossing in `d` is reported.
    pub fn accepts(self, d: Direction) -> bool {
        match self {
            LineDirection::Both => true,
            LineDirection::LeftToRight => d == Direction::LeftToRight,
            LineDirection::RightToLeft => d == Direction::RightToLeft,
        }
    }
}

/// The direction of one crossing, as seen standing on a facing b.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Direction {
    LeftToRight,
    RightToLeft,
}

/// A line as configured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LineConfig {
    /// Unique per camera.
    pub name: String,
    pub a: Point,
    pub b: Point,
    #[serde(default)]
    pub direction: LineDirection,
}

/// A validated zone.
#[derive(Debug, Clone, PartialEq)]
pub struct Zone {
    name: String,
    area: Polygon,
    inertia: u32,
}

/// A zone membership changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ZoneChange {
    Entered,
    Left,
}

/// One track's membership of one zone.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Membership {
    entered_at: Option<Duration>,
    /// Consecutive observations contradicting the current state, and the
    /// time of the first of them.
    streak: u32,
    streak_start: Duration,
}

impl Membership {
    /// Since when the track has been inside; `None` when outside.
    pub fn entered_at(&self) -> Option<Duration> {
        self.entered_at
    }
}

impl Zone {
    /// Validates a configured zone; `field` is e.g. `zones[2]`.
    pub fn new(cfg: &ZoneConfig, field: &str) -> Result<Self, Error> {
        check_name(&cfg.name, &format!("{field}.name"))?;
        let area = Polygon::new(cfg.area.clone(), &format!("{field}.area"))?;
        let inertia = if cfg.inertia == 0 {
            DEFAULT_INERTIA
        } else {
            cfg.inertia
        };
        Ok(Zone {
            name: cfg.name.clone(),
            area,
            inertia,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn area(&self) -> &Polygon {
        &self.area
    }

    /// Feeds one observation of a track's reference point at `time`.
    pub fn observe(&self, m: &mut Membership, p: Point, time: Duration) -> Option<ZoneChange> {
        let inside_now = self.area.contains(p);
        if inside_now == m.entered_at.is_some() {
            m.streak = 0;
            return None;
        }
        if m.streak == 0 {
            m.streak_start = time;
        }
        m.streak += 1;
        if m.streak < self.inertia {
            return None;
        }
        m.streak = 0;
        if inside_now {
            m.entered_at = Some(m.streak_start);
            Some(ZoneChange::Entered)
        } else {
            m.entered_at = None;
            Some(ZoneChange::Left)
        }
    }
}

/// A validated line.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    name: String,
    a: Point,
    b: Point,
    direction: LineDirection,
}

/// One track's position relative to one line: the last reference point that
/// lay strictly on one side.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LineState {
    last: Option<Point>,
}

impl Line {
    /// Validates a configured line; `field` is e.g. `lines[0]`.
    pub fn new(cfg: &LineConfig, field: &str) -> Result<Self, Error> {
        check_name(&cfg.name, &format!("{field}.name"))?;
        check_point(cfg.a, &format!("{field}.a"))?;
        check_point(cfg.b, &format!("{field}.b"))?;
        if cfg.a == cfg.b {
            return Err(Error::Invalid {
                field: format!("{field}.b"),
                reason: "a line needs two distinct points",
            });
        }
        Ok(Line {
            name: cfg.name.clone(),
            a: cfg.a,
            b: cfg.b,
            direction: cfg.direction,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn direction(&self) -> LineDirection {
        self.direction
    }

    /// The crossing of the movement `from` → `to`, if it crosses the segment,
    /// whatever the configured direction.
    pub fn crossing(&self, from: Point, to: Point) -> Option<Direction> {
        let s0 = cross(self.a, self.b, from);
        let s1 = cross(self.a, self.b, to);
        if s0 == 0.0 || s1 == 0.0 || (s0 < 0.0) == (s1 < 0.0) {
            return None;
        }
        // The ends of the segment must lie on both sides of the movement too.
        let t0 = cross(from, to, self.a);
        let t1 = cross(from, to, self.b);
        if (t0 < 0.0 && t1 < 0.0) || (t0 > 0.0 && t1 > 0.0) {
            return None;
        }
        // cross < 0 is left in image coordinates (see geometry::cross).
        Some(if s0 < 0.0 {
            Direction::LeftToRight
        } else {
            Direction::RightToLeft
        })
    }

    /// Feeds one observation of a track's reference point; a crossing is
    /// returned only when the configured direction accepts it.
    pub fn observe(&self, st: &mut LineState, p: Point) -> Option<Direction> {
        if cross(self.a, self.b, p) == 0.0 {
            return None;
        }
        let crossed = st.last.and_then(|from| self.crossing(from, p));
        st.last = Some(p);
        crossed.filter(|d| self.direction.accepts(*d))
    }
}

fn check_name(name: &str, field: &str) -> Result<(), Error> {
    if name.trim().is_empty() {
        return Err(Error::Invalid {
            field: field.to_owned(),
            reason: "must not be empty",
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(secs: u64) -> Duration {
        Duration::from_secs(secs)
    }

    fn line(a: (f32, f32), b: (f32, f32), direction: LineDirection) -> Line {
        Line::new(
            &LineConfig {
                name: "l".into(),
                a: Point::new(a.0, a.1),
                b: Point::new(b.0, b.1),
                direction,
            },
            "lines[0]",
        )
        .unwrap()
    }

    #[test]
    fn horizontal_line_pointing_right_left_is_up_in_the_image() {
        // Standing on a (left edge) facing b (right edge): with y pointing
        // down, the left hand points to the top of the image.
        let l = line((0.0, 0.5), (1.0, 0.5), LineDirection::Both);
        let up = Point::new(0.5, 0.3);
        let down = Point::new(0.5, 0.7);
        assert_eq!(l.crossing(up, down), Some(Direction::LeftToRight));
        assert_eq!(l.crossing(down, up), Some(Direction::RightToLeft));
    }

    #[test]
    fn vertical_line_pointing_down_left_is_image_right() {
        // Standing at the top facing down the image: left hand points to the
        // image's right (as a person seen from the camera would have it).
        let l = line((0.5, 0.0), (0.5, 1.0), LineDirection::Both);
        let right = Point::new(0.8, 0.5);
        let left = Point::new(0.2, 0.5);
        assert_eq!(l.crossing(right, left), Some(Direction::LeftToRight));
        assert_eq!(l.crossing(left, right), Some(Direction::RightToLeft));
    }

    #[test]
    fn vertical_line_pointing_up_is_mirrored() {
        let l = line((0.5, 1.0), (0.5, 0.0), LineDirection::Both);
        assert_eq!(
            l.crossing(Point::new(0.2, 0.5), Point::new(0.8, 0.5)),
            Some(Direction::LeftToRight)
        );
    }

    #[test]
    fn passing_beyond_the_segment_end_is_no_crossing() {
        let l = line((0.4, 0.5), (0.6, 0.5), LineDirection::Both);
        // Moves from above to below the line's extension, left of a.
        assert_eq!(l.crossing(Point::new(0.2, 0.3), Point::new(0.2, 0.7)), None);
        // Diagonal movement whose side changes but passes right of b.
        assert_eq!(l.crossing(Point::new(0.5, 0.4), Point::new(0.9, 0.6)), None);
        // Same side: nothing.
        assert_eq!(
            l.crossing(Point::new(0.5, 0.4), Point::new(0.5, 0.45)),
            None
        );
        // Through the segment: counted.
        assert_eq!(
            l.crossing(Point::new(0.45, 0.4), Point::new(0.55, 0.6)),
            Some(Direction::LeftToRight)
        );
    }

    #[test]
    fn landing_on_the_line_counts_once_when_leaving() {
        let l = line((0.0, 0.5), (1.0, 0.5), LineDirection::Both);
        let mut st = LineState::default();
        assert_eq!(l.observe(&mut st, Point::new(0.5, 0.4)), None);
        assert_eq!(l.observe(&mut st, Point::new(0.5, 0.5)), None);
        assert_eq!(
            l.observe(&mut st, Point::new(0.5, 0.6)),
            Some(Direction::LeftToRight)
        );
        assert_eq!(l.observe(&mut st, Point::new(0.5, 0.7)), None);
        // Touching and returning to the same side is no crossing.
        assert_eq!(l.observe(&mut st, Point::new(0.5, 0.5)), None);
        assert_eq!(l.observe(&mut st, Point::new(0.5, 0.7)), None);
    }

    #[test]
    fn configured_direction_filters() {
        let l = line((0.0, 0.5), (1.0, 0.5), LineDirection::RightToLeft);
        let mut st = LineState::default();
        l.observe(&mut st, Point::new(0.5, 0.4));
        assert_eq!(l.observe(&mut st, Point::new(0.5, 0.6)), None);
        assert_eq!(
            l.observe(&mut st, Point::new(0.5, 0.4)),
            Some(Direction::RightToLeft)
        );
        assert!(LineDirection::LeftToRight.accepts(Direction::LeftToRight));
        assert!(!LineDirection::LeftToRight.accepts(Direction::RightToLeft));
    }

    proptest::proptest! {
        #[test]
        fn reversed_movement_reverses_the_crossing(
            ax in 0.0f32..1.0, ay in 0.0f32..1.0, bx in 0.0f32..1.0, by in 0.0f32..1.0,
            fx in 0.0f32..1.0, fy in 0.0f32..1.0, tx in 0.0f32..1.0, ty in 0.0f32..1.0,
        ) {
            proptest::prop_assume!((ax, ay) != (bx, by));
            let l = line((ax, ay), (bx, by), LineDirection::Both);
            let (from, to) = (Point::new(fx, fy), Point::new(tx, ty));
            let there = l.crossing(from, to);
            let back = l.crossing(to, from);
            match (there, back) {
                (None, None) => {}
                (Some(d), Some(e)) => {
                    proptest::prop_assert_ne!(d, e);
                    // The sides really differ.
                    let s0 = cross(l.a, l.b, from);
                    let s1 = cross(l.a, l.b, to);
                    proptest::prop_assert!(s0 * s1 < 0.0);
                    // Left (negative side) to right is LeftToRight.
                    proptest::prop_assert_eq!(d == Direction::LeftToRight, s0 < 0.0);
                }
                other => proptest::prop_assert!(false, "asymmetric: {:?}", other),
            }
        }
    }

    #[test]
    fn zone_inertia_and_entered_at() {
        let z = Zone::new(
            &ZoneConfig {
                name: "yard".into(),
                area: vec![
                    Point::new(0.5, 0.0),
                    Point::new(1.0, 0.0),
                    Point::new(1.0, 1.0),
                    Point::new(0.5, 1.0),
                ],
                inertia: 0,
            },
            "zones[0]",
        )
        .unwrap();
        let inside = Point::new(0.7, 0.5);
        let outside = Point::new(0.3, 0.5);
        let mut m = Membership::default();
        assert_eq!(z.observe(&mut m, outside, s(0)), None);
        assert_eq!(z.observe(&mut m, inside, s(1)), None);
        // A one-frame blip back outside resets the streak.
        assert_eq!(z.observe(&mut m, outside, s(2)), None);
        assert_eq!(z.observe(&mut m, inside, s(3)), None);
        assert_eq!(z.observe(&mut m, inside, s(4)), None);
        assert_eq!(m.entered_at(), None);
        assert_eq!(z.observe(&mut m, inside, s(5)), Some(ZoneChange::Entered));
        assert_eq!(m.entered_at(), Some(s(3)));
        assert_eq!(z.observe(&mut m, outside, s(6)), None);
        assert_eq!(z.observe(&mut m, outside, s(7)), None);
        assert_eq!(z.observe(&mut m, outside, s(8)), Some(ZoneChange::Left));
        assert_eq!(m.entered_at(), None);
    }

    #[test]
    fn invalid_lines_and_zones_name_the_field() {
        let bad = LineConfig {
            name: "fence".into(),
            a: Point::new(0.1, 0.1),
            b: Point::new(1.1, 0.1),
            direction: LineDirection::Both,
        };
        assert_eq!(
            Line::new(&bad, "lines[4]").unwrap_err().field(),
            Some("lines[4].b.x")
        );
        let empty = ZoneConfig {
            name: " ".into(),
            area: vec![],
            inertia: 0,
        };
        assert_eq!(
            Zone::new(&empty, "zones[1]").unwrap_err().field(),
            Some("zones[1].name")
        );
    }
}
