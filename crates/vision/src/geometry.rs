//! Points, boxes and polygons in normalised image coordinates.
//!
//! Coordinates run 0..1 from the left and top edge of the image; y points down.
//! A box is `[x1, y1, x2, y2]` (left, top, right, bottom). An object's
//! reference point, used for masks, zones and lines, is the bottom centre of
//! its box: where a person or vehicle touches the ground.

use serde::{Deserialize, Serialize};

use crate::error::{Error, unit};

/// A point in normalised image coordinates.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Point {
    pub x: f32,
    pub y: f32,
}

impl Point {
    pub const fn new(x: f32, y: f32) -> Self {
        Point { x, y }
    }
}

/// An axis-aligned box `[x1, y1, x2, y2]` in normalised image coordinates.
pub type BBox = [f32; 4];

/// The bottom centre of a box.
pub fn reference_point(b: &BBox) -> Point {
    Point::new((b[0] + b[2]) * 0.5, b[3])
}

/// Area of a box (0 for an inverted one).
pub fn area(b: &BBox) -> f32 {
    (b[2] - b[0]).max(0.0) * (b[3] - b[1]).max(0.0)
}

/// Intersection over union of two boxes, 0..1.
pub fn iou(a: &BBox, b: &BBox) -> f32 {
    let w = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let h = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = w * h;
    let union = area(a) + area(b) - inter;
    if union > 0.0 { inter / union } else { 0.0 }
}

/// A closed polygon of at least 3 points inside 0..1, validated on creation.
#[derive(Debug, Clone, PartialEq)]
pub struct Polygon {
    points: Vec<Point>,
}

impl Polygon {
    /// Validates `points`; errors name `field` (e.g. `zones[2].area`) and the
    /// offending point (`zones[2].area[1].y`).
    pub fn new(points: Vec<Point>, field: &str) -> Result<Self, Error> {
        if points.len() < 3 {
            return Err(Error::TooFewPoints {
                field: field.to_owned(),
                got: points.len(),
            });
        }
        for (i, p) in points.iter().enumerate() {
            check_point(*p, &format!("{field}[{i}]"))?;
        }
        Ok(Polygon { points })
    }

    pub fn points(&self) -> &[Point] {
        &self.points
    }

    /// Whether `p` lies inside (even-odd rule; points on an edge may fall
    /// either way).
    pub fn contains(&self, p: Point) -> bool {
        let pts = &self.points;
        let mut inside = false;
        let mut j = pts.len() - 1;
        for i in 0..pts.len() {
            let (a, b) = (pts[i], pts[j]);
            if (a.y > p.y) != (b.y > p.y) && p.x < (b.x - a.x) * (p.y - a.y) / (b.y - a.y) + a.x {
                inside = !inside;
            }
            j = i;
        }
        inside
    }
}

/// Checks that both coordinates of a point lie in 0..1.
pub(crate) fn check_point(p: Point, field: &str) -> Result<(), Error> {
    unit(|| format!("{field}.x"), p.x)?;
    unit(|| format!("{field}.y"), p.y)
}

/// The cross product of (b - a) and (p - a). In image coordinates (y down)
/// it is negative when `p` lies to the left of the ray a→b as seen standing
/// on a facing b, positive to the right, 0 on the line.
pub(crate) fn cross(a: Point, b: Point, p: Point) -> f32 {
    (b.x - a.x) * (p.y - a.y) - (b.y - a.y) * (p.x - a.x)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn square() -> Vec<Point> {
        vec![
            Point::new(0.2, 0.2),
            Point::new(0.6, 0.2),
            Point::new(0.6, 0.6),
            Point::new(0.2, 0.6),
        ]
    }

    #[test]
    fn polygon_contains_inside_not_outside() {
        let p = Polygon::new(square(), "zone").unwrap();
        assert!(p.contains(Point::new(0.4, 0.4)));
        assert!(!p.contains(Point::new(0.7, 0.4)));
        assert!(!p.contains(Point::new(0.4, 0.1)));
    }

    #[test]
    fn concave_polygon() {
        // A "U": the notch between the arms is outside.
        let u = vec![
            Point::new(0.0, 0.0),
            Point::new(0.3, 0.0),
            Point::new(0.3, 0.6),
            Point::new(0.6, 0.6),
            Point::new(0.6, 0.0),
            Point::new(0.9, 0.0),
            Point::new(0.9, 0.9),
            Point::new(0.0, 0.9),
        ];
        let p = Polygon::new(u, "u").unwrap();
        assert!(!p.contains(Point::new(0.45, 0.3)));
        assert!(p.contains(Point::new(0.1, 0.3)));
        assert!(p.contains(Point::new(0.45, 0.8)));
    }

    #[test]
    fn polygon_errors_name_the_field() {
        let e = Polygon::new(square()[..2].to_vec(), "zones[0].area").unwrap_err();
        assert_eq!(
            e,
            Error::TooFewPoints {
                field: "zones[0].area".into(),
                got: 2
            }
        );
        let mut pts = square();
        pts[2].y = 1.5;
        let e = Polygon::new(pts, "masks[3]").unwrap_err();
        assert_eq!(e.field(), Some("masks[3][2].y"));
        let mut pts = square();
        pts[0].x = f32::NAN;
        assert_eq!(Polygon::new(pts, "m").unwrap_err().field(), Some("m[0].x"));
    }

    #[test]
    fn iou_of_boxes() {
        let a = [0.0, 0.0, 0.2, 0.2];
        assert!((iou(&a, &a) - 1.0).abs() < 1e-6);
        assert_eq!(iou(&a, &[0.5, 0.5, 0.6, 0.6]), 0.0);
        let b = [0.1, 0.0, 0.3, 0.2];
        assert!((iou(&a, &b) - 1.0 / 3.0).abs() < 1e-6);
        assert_eq!(reference_point(&[0.2, 0.1, 0.4, 0.5]), Point::new(0.3, 0.5));
    }
}
