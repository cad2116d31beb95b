//! Per-class filters and masks, applied to detections before tracking, and
//! the score history that decides whether a track is reported.
//!
//! Guarantees:
//! - A detection below its class's `min_score`, outside its area or aspect
//!   bounds, or whose reference point lies in a mask never reaches the
//!   tracker (so it can neither start nor extend a track).
//! - A track is reported once the median of its last [`SCORE_HISTORY`]
//!   scores reaches its class's `threshold`; from then on it stays reported
//!   (as Frigate does), so a track does not flicker in and out of existence.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::error::{Error, unit};
use crate::geometry::{BBox, Polygon, area, reference_point};

/// Scores kept per track for the median.
pub const SCORE_HISTORY: usize = 10;

/// Filters for one class. Areas are fractions of the frame; ratios are box
/// width over height in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ClassFilter {
    /// Detections below this score are dropped.
    pub min_score: f32,
    /// A track is reported once the median of its scores reaches this.
    pub threshold: f32,
    pub min_area: f32,
    pub max_area: f32,
    pub min_ratio: f32,
    pub max_ratio: f32,
}

impl ClassFilter {
    /// A filter on score only: `threshold` equal to `min_score`, any size and
    /// shape (`max_ratio` is `f32::MAX`, which survives a JSON round trip
    /// where infinity would not).
    pub fn with_min_score(min_score: f32) -> Self {
        ClassFilter {
            min_score,
            threshold: min_score,
            min_area: 0.0,
            max_area: 1.0,
            min_ratio: 0.0,
            max_ratio: f32::MAX,
        }
    }

    /// Checks the settings; `field` is e.g. `filters.person`.
    pub fn validate(&self, field: &str) -> Result<(), Error> {
        unit(|| format!("{field}.min_score"), self.min_score)?;
        unit(|| format!("{field}.threshold"), self.threshold)?;
        unit(|| format!("{field}.min_area"), self.min_area)?;
        unit(|| format!("{field}.max_area"), self.max_area)?;
        if self.min_area > self.max_area {
            return Err(Error::Invalid {
                field: format!("{field}.max_area"),
                reason: "must not be below min_area",
            });
        }
        if self.min_ratio.is_nan() || self.min_ratio < 0.0 {
            return Err(Error::Invalid {
                field: format!("{field}.min_ratio"),
                reason: "must be 0 or more",
            });
        }
        if self.max_ratio.is_nan() || self.max_ratio < self.min_ratio {
            return Err(Error::Invalid {
                field: format!("{field}.max_ratio"),
                reason: "must not be below min_ratio",
            });
        }
        Ok(())
    }

    /// Whether a box passes the area and aspect bounds; `frame_aspect` is the
    /// frame's width over height in pixels.
    pub fn accepts_box(&self, b: &BBox, frame_aspect: f32) -> bool {
        let a = area(b);
        if a < self.min_area || a > self.max_area {
            return false;
        }
        let h = b[3] - b[1];
        if h <= 0.0 {
            return false;
        }
        let ratio = (b[2] - b[0]) / h * frame_aspect;
        ratio >= self.min_ratio && ratio <= self.max_ratio
    }
}

/// Areas where nothing is reported (and no motion counted).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Masks {
    polygons: Vec<Polygon>,
}

impl Masks {
    pub fn new(polygons: Vec<Polygon>) -> Self {
        Masks { polygons }
    }

    pub fn polygons(&self) -> &[Polygon] {
        &self.polygons
    }

    /// Whether the box's reference point lies in a mask.
    pub fn hides(&self, b: &BBox) -> bool {
        let p = reference_point(b);
        self.polygons.iter().any(|m| m.contains(p))
    }
}

/// The last [`SCORE_HISTORY`] scores of a track.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ScoreHistory {
    scores: VecDeque<f32>,
}

impl ScoreHistory {
    pub fn push(&mut self, score: f32) {
        if self.scores.len() == SCORE_HISTORY {
            self.scores.pop_front();
        }
        self.scores.push_back(score);
    }

    /// The median (mean of the middle two for an even count); 0 when empty.
    pub fn median(&self) -> f32 {
        let mut v: Vec<f32> = self.scores.iter().copied().collect();
        if v.is_empty() {
            return 0.0;
        }
        v.sort_by(f32::total_cmp);
        let n = v.len();
        if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) * 0.5
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::Point;

    #[test]
    fn area_and_ratio_bounds() {
        let f = ClassFilter {
            min_area: 0.01,
            max_area: 0.5,
            min_ratio: 0.2,
            max_ratio: 1.0,
            ..ClassFilter::with_min_score(0.5)
        };
        // 0.1 x 0.3 of a 16:9 frame: 0.03 area, ratio 0.1/0.3*16/9 = 0.59.
        assert!(f.accepts_box(&[0.1, 0.1, 0.2, 0.4], 16.0 / 9.0));
        // Too small.
        assert!(!f.accepts_box(&[0.1, 0.1, 0.15, 0.15], 16.0 / 9.0));
        // Too wide: 0.4 x 0.2 -> ratio 3.6.
        assert!(!f.accepts_box(&[0.1, 0.1, 0.5, 0.3], 16.0 / 9.0));
        // The same box is tall enough in a square frame's terms? no: ratio 2.
        assert!(!f.accepts_box(&[0.1, 0.1, 0.5, 0.3], 1.0));
        assert!(f.accepts_box(&[0.1, 0.1, 0.2, 0.3], 1.0));
    }

    #[test]
    fn validation_names_the_field() {
        let f = ClassFilter {
            min_area: 0.3,
            max_area: 0.2,
            ..ClassFilter::with_min_score(0.5)
        };
        assert_eq!(
            f.validate("filters.car").unwrap_err().field(),
            Some("filters.car.max_area")
        );
        let f = ClassFilter::with_min_score(1.5);
        assert_eq!(
            f.validate("filters.car").unwrap_err().field(),
            Some("filters.car.min_score")
        );
        ClassFilter::with_min_score(0.5).validate("x").unwrap();
    }

    #[test]
    fn median_of_recent_scores() {
        let mut h = ScoreHistory::default();
        assert_eq!(h.median(), 0.0);
        h.push(0.9);
        h.push(0.1);
        h.push(0.5);
        assert_eq!(h.median(), 0.5);
        h.push(0.6);
        assert!((h.median() - 0.55).abs() < 1e-6);
        for _ in 0..SCORE_HISTORY {
            h.push(0.2);
        }
        assert_eq!(h.median(), 0.2);
    }

    #[test]
    fn masks_use_the_reference_point() {
        let road = Polygon::new(
            vec![
                Point::new(0.0, 0.8),
                Point::new(1.0, 0.8),
                Point::new(1.0, 1.0),
                Point::new(0.0, 1.0),
            ],
            "masks[0]",
        )
        .unwrap();
        let m = Masks::new(vec![road]);
        // Box reaching into the masked road at its bottom: hidden.
        assert!(m.hides(&[0.4, 0.5, 0.5, 0.9]));
        // Box overlapping the mask but standing above it: reported.
        assert!(!m.hides(&[0.4, 0.5, 0.5, 0.7]));
    }
}
