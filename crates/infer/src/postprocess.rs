//! NanoDet post-processing: decode each cell's box as the expectation of a softmax over its bins
//! (distance from the cell centre to each side, times the stride), keep class scores above the
//! threshold, and suppress overlaps per class (greedy NMS).
//!
//! Coordinates here are model-input pixels; [`crate::preprocess::Letterbox::unmap`] takes them
//! back to the frame.

/// Bins per box side (`reg_max + 1`).
pub const BINS: usize = 11;

/// One output level of the head for one sample: `cells` rows of class scores (already sigmoid-ed)
/// and of `4 * BINS` box logits, cells row-major over a `cols`-wide grid.
#[derive(Debug, Clone, Copy)]
pub struct Level<'a> {
    pub stride: u32,
    pub cols: usize,
    pub classes: usize,
    pub scores: &'a [f32],
    pub boxes: &'a [f32],
}

/// A box before NMS, in model pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    pub class_id: u16,
    pub score: f32,
    pub bbox: [f32; 4],
}

/// The expectation of a softmax over `logits`.
fn expectation(logits: &[f32]) -> f32 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let (mut sum, mut weighted) = (0.0f32, 0.0f32);
    for (i, &l) in logits.iter().enumerate() {
        let e = (l - max).exp();
        sum += e;
        weighted += e * i as f32;
    }
    weighted / sum
}

/// Every (cell, class) whose score is at least `threshold`, with its decoded box.
pub fn decode(levels: &[Level<'_>], threshold: f32, out: &mut Vec<Candidate>) {
    for lv in levels {
        let cells = lv.scores.len() / lv.classes;
        for cell in 0..cells {
            let scores = &lv.scores[cell * lv.classes..(cell + 1) * lv.classes];
            let mut bbox = None;
            for (class, &score) in scores.iter().enumerate() {
                if score < threshold {
                    continue;
                }
                // Decode lazily: most cells have no class above the threshold.
                let b = *bbox.get_or_insert_with(|| {
                    let reg = &lv.boxes[cell * 4 * BINS..(cell + 1) * 4 * BINS];
                    let s = lv.stride as f32;
                    let cx = ((cell % lv.cols) as f32 + 0.5) * s;
                    let cy = ((cell / lv.cols) as f32 + 0.5) * s;
                    let d = |side: usize| expectation(&reg[side * BINS..(side + 1) * BINS]) * s;
                    [cx - d(0), cy - d(1), cx + d(2), cy + d(3)]
                });
                out.push(Candidate {
                    class_id: class as u16,
                    score,
                    bbox: b,
                });
            }
        }
    }
}

/// Intersection over union of two `x1,y1,x2,y2` boxes.
pub fn iou(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    let w = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let h = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = w * h;
    let area = |r: &[f32; 4]| (r[2] - r[0]).max(0.0) * (r[3] - r[1]).max(0.0);
    let union = area(a) + area(b) - inter;
    if union <= 0.0 { 0.0 } else { inter / union }
}

/// Greedy per-class NMS: highest score first, dropping any later box of the same class that
/// overlaps a kept one by more than `iou_threshold`. Returns the kept boxes, best first.
pub fn nms(mut candidates: Vec<Candidate>, iou_threshold: f32) -> Vec<Candidate> {
    // Ties broken by class then position so the result does not depend on input order.
    candidates.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then(a.class_id.cmp(&b.class_id))
            .then(a.bbox[0].total_cmp(&b.bbox[0]))
            .then(a.bbox[1].total_cmp(&b.bbox[1]))
    });
    let mut kept: Vec<Candidate> = Vec::new();
    for c in candidates {
        if kept
            .iter()
            .all(|k| k.class_id != c.class_id || iou(&k.bbox, &c.bbox) <= iou_threshold)
        {
            kept.push(c);
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Box logits whose softmax puts (nearly) all weight on `bins[side]`.
    fn peaked(bins: [usize; 4]) -> Vec<f32> {
        let mut v = vec![-30.0f32; 4 * BINS];
        for (side, &b) in bins.iter().enumerate() {
            v[side * BINS + b] = 30.0;
        }
        v
    }

    #[test]
    fn expectation_of_softmax() {
        assert!((expectation(&[0.0; BINS]) - 5.0).abs() < 1e-5);
        let mut l = [-50.0f32; BINS];
        l[3] = 50.0;
        assert!((expectation(&l) - 3.0).abs() < 1e-4);
        // Two equal peaks average.
        l[7] = 50.0;
        assert!((expectation(&l) - 5.0).abs() < 1e-4);
    }

    #[test]
    fn decode_places_boxes_around_cell_centres() {
        // A 2x2 grid at stride 8, 3 classes; cell 3 (row 1, col 1) has class 2 at 0.9 and
        // class 0 at 0.4 (below threshold 0.5); cell 0 has nothing.
        let mut scores = vec![0.0f32; 4 * 3];
        scores[3 * 3 + 2] = 0.9;
        scores[3 * 3] = 0.4;
        let mut boxes = vec![0.0f32; 4 * 4 * BINS];
        boxes[3 * 4 * BINS..].copy_from_slice(&peaked([1, 2, 3, 4]));
        let level = Level {
            stride: 8,
            cols: 2,
            classes: 3,
            scores: &scores,
            boxes: &boxes,
        };
        let mut out = Vec::new();
        decode(&[level], 0.5, &mut out);
        assert_eq!(out.len(), 1);
        let c = out[0];
        assert_eq!((c.class_id, c.score), (2, 0.9));
        // Centre (12, 12); sides 1, 2, 3, 4 bins of 8 px.
        let want = [12.0 - 8.0, 12.0 - 16.0, 12.0 + 24.0, 12.0 + 32.0];
        for (g, w) in c.bbox.iter().zip(want) {
            assert!((g - w).abs() < 1e-3, "{:?}", c.bbox);
        }
    }

    #[test]
    fn iou_of_known_boxes() {
        assert_eq!(iou(&[0.0, 0.0, 2.0, 2.0], &[0.0, 0.0, 2.0, 2.0]), 1.0);
        assert_eq!(iou(&[0.0, 0.0, 1.0, 1.0], &[2.0, 2.0, 3.0, 3.0]), 0.0);
        assert!((iou(&[0.0, 0.0, 2.0, 2.0], &[1.0, 0.0, 3.0, 2.0]) - 1.0 / 3.0).abs() < 1e-6);
        assert_eq!(iou(&[0.0, 0.0, 0.0, 0.0], &[0.0, 0.0, 0.0, 0.0]), 0.0);
    }

    #[test]
    fn nms_suppresses_overlaps_within_a_class_only() {
        let c = |class_id, score, x: f32| Candidate {
            class_id,
            score,
            bbox: [x, 0.0, x + 10.0, 10.0],
        };
        let kept = nms(
            vec![
                c(0, 0.6, 1.0),  // overlaps the 0.9 person by 9/11: suppressed
                c(0, 0.9, 0.0),  // kept
                c(2, 0.5, 0.0),  // same place, other class: kept
                c(0, 0.7, 50.0), // far away: kept
                c(0, 0.8, 5.0),  // IoU 5/15 = 0.33 with the 0.9: kept at 0.6 threshold
            ],
            0.6,
        );
        let got: Vec<(u16, f32)> = kept.iter().map(|k| (k.class_id, k.score)).collect();
        assert_eq!(got, vec![(0, 0.9), (0, 0.8), (0, 0.7), (2, 0.5)]);
    }
}
