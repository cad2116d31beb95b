//! Motion gating, in the manner of Frigate's improved motion detector.
//!
//! Per frame: the packed BGR8 frame is converted to grayscale and
//! downscaled by area averaging to about [`MotionConfig::height`] rows;
//! each pixel is compared with a running-average background (weight
//! `alpha`), pixels differing by more than `pixel_threshold` grey levels
//! count as changed, the changed map is dilated and split into 8-connected
//! components; components with fewer than `min_area` (fraction of the frame)
//! changed pixels are noise. Masked pixels never count.
//!
//! Guarantees:
//! - `changed` is the fraction of unmasked pixels, in components that are
//!   not noise, that changed; `motion` is `changed >= threshold`.
//! - When more than `recalibrate_fraction` of the unmasked pixels change at
//!   once (an IR switch, lightning, a camera repositioned), the background is
//!   reset to the frame and for `calibration_frames` frames (that one
//!   included) the result is `calibrating` with no motion. The first frame
//!   (and the first after a size change) calibrates the same way.
//! - The gate (`active`) is open while motion was seen within `hold`, or
//!   always when motion gating is disabled.
//! - Deterministic: no clock is read; the caller passes each frame's time.
//!
//! Masks are rasterised once per downscaled size, at pixel centres.
//! Cost is linear in the frame's pixels (one pass for the grayscale
//! downscale) plus a few passes over the ~100-row image; measure it with
//! `cargo run --release -p kordon-vision --example motion_bench`.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, unit};
use crate::geometry::{BBox, Point, Polygon};

/// Motion settings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MotionConfig {
    /// Run the detector on every frame; nothing is computed.
    pub disabled: bool,
    /// Fraction (0..1) of the unmasked frame that must change. Default 0.002.
    pub threshold: f32,
    /// Keep the gate open this long after motion stops. Default 2 s.
    pub hold: Duration,
    /// Rows of the downscaled image (fewer if the frame has fewer). Default 100.
    pub height: u32,
    /// Background weight of each new frame, 0..1. Default 0.01.
    pub alpha: f32,
    /// Grey levels a pixel must differ from the background by. Default 30.
    pub pixel_threshold: u8,
    /// Dilation radius in downscaled pixels (a (2r+1)² square). Default 2.
    pub dilate: u32,
    /// Minimum changed pixels of one component, as a fraction of the frame.
    /// Default 0.0005 (about 9 pixels of a 178x100 image).
    pub min_area: f32,
    /// Fraction of unmasked pixels changing at once that means "the whole
    /// picture changed", not motion. Default 0.6.
    pub recalibrate_fraction: f32,
    /// Frames reported as calibrating after such a change. Default 5.
    pub calibration_frames: u32,
}

impl Default for MotionConfig {
    fn default() -> Self {
        MotionConfig {
            disabled: false,
            threshold: 0.002,
            hold: Duration::from_secs(2),
            height: 100,
            alpha: 0.01,
            pixel_threshold: 30,
            dilate: 2,
            min_area: 0.0005,
            recalibrate_fraction: 0.6,
            calibration_frames: 5,
        }
    }
}

impl MotionConfig {
    /// Checks the settings; `field` is e.g. `motion`.
    pub fn validate(&self, field: &str) -> Result<(), Error> {
        unit(|| format!("{field}.threshold"), self.threshold)?;
        unit(|| format!("{field}.alpha"), self.alpha)?;
        unit(|| format!("{field}.min_area"), self.min_area)?;
        unit(
            || format!("{field}.recalibrate_fraction"),
            self.recalibrate_fraction,
        )?;
        if self.height == 0 {
            return Err(Error::Invalid {
                field: format!("{field}.height"),
                reason: "must be at least 1",
            });
        }
        Ok(())
    }
}

/// A packed BGR8 frame: `height` rows of `width` pixels, rows `stride`
/// bytes apart.
#[derive(Debug, Clone, Copy)]
pub struct Frame<'a> {
    pub width: u32,
    pub height: u32,
    pub stride: usize,
    pub data: &'a [u8],
}

impl Frame<'_> {
    /// Checks that the buffer holds the frame.
    pub fn validate(&self) -> Result<(), Error> {
        let row = self.width as usize * 3;
        let needed = if self.height == 0 {
            0
        } else {
            self.stride
                .saturating_mul(self.height as usize - 1)
                .saturating_add(row)
        };
        if self.width == 0 || self.height == 0 || self.stride < row || self.data.len() < needed {
            return Err(Error::Frame {
                width: self.width,
                height: self.height,
                stride: self.stride,
                needed,
                len: self.data.len(),
            });
        }
        Ok(())
    }
}

/// What one frame showed.
#[derive(Debug, Clone, PartialEq)]
pub struct MotionResult {
    /// Fraction of unmasked pixels that changed (noise excluded).
    pub changed: f32,
    /// Boxes around the moving areas, normalised.
    pub boxes: Vec<BBox>,
    /// `changed >= threshold`.
    pub motion: bool,
    /// The background is being rebuilt; no motion is reported.
    pub calibrating: bool,
    /// The gate: motion within `hold`, or gating disabled.
    pub active: bool,
}

/// Per-size working state.
#[derive(Debug, Clone, Default)]
struct Plane {
    src: (u32, u32),
    w: usize,
    h: usize,
    /// First source column/row of each downscaled column/row, plus the end.
    xs: Vec<usize>,
    ys: Vec<usize>,
    gray: Vec<f32>,
    background: Vec<f32>,
    mask: Vec<bool>,
    unmasked: usize,
    changed: Vec<u8>,
    dilated: Vec<u8>,
    tmp: Vec<u8>,
    /// Prefix counts for the dilation: a row's, then (h + 1) rows of
    /// column sums.
    prefix: Vec<u32>,
    seen: Vec<bool>,
    stack: Vec<usize>,
    /// Per-byte sums of the source rows of one output row.
    rows: Vec<u32>,
}

/// The motion detector of one camera.
#[derive(Debug, Clone)]
pub struct MotionDetector {
    cfg: MotionConfig,
    masks: Vec<Polygon>,
    plane: Option<Plane>,
    calibrating_left: u32,
    last_motion: Option<Duration>,
}

impl MotionDetector {
    /// `masks` are areas where no motion counts.
    pub fn new(cfg: MotionConfig, masks: Vec<Polygon>) -> Result<Self, Error> {
        cfg.validate("motion")?;
        Ok(MotionDetector {
            cfg,
            masks,
            plane: None,
            calibrating_left: 0,
            last_motion: None,
        })
    }

    pub fn config(&self) -> &MotionConfig {
        &self.cfg
    }

    /// New settings from the next frame. The background survives unless the
    /// downscaled height changes or gating is turned back on; the gate's hold
    /// survives.
    pub fn reconfigure(&mut self, cfg: MotionConfig, masks: Vec<Polygon>) -> Result<(), Error> {
        cfg.validate("motion")?;
        // A new height, or gating turned back on (the background has not
        // followed the scene meanwhile): start over with a calibration.
        if cfg.height != self.cfg.height || (self.cfg.disabled && !cfg.disabled) {
            self.plane = None;
        }
        if masks != self.masks {
            if let Some(p) = &mut self.plane {
                rasterise(p, &masks);
            }
            self.masks = masks;
        }
        self.cfg = cfg;
        Ok(())
    }

    /// Analyses one frame taken at `time`.
    pub fn process(&mut self, time: Duration, frame: &Frame<'_>) -> Result<MotionResult, Error> {
        frame.validate()?;
        if self.cfg.disabled {
            return Ok(MotionResult {
                changed: 0.0,
                boxes: Vec::new(),
                motion: false,
                calibrating: false,
                active: true,
            });
        }
        let cfg = self.cfg;
        let fresh = self
            .plane
            .as_ref()
            .is_none_or(|p| p.src != (frame.width, frame.height));
        if fresh {
            self.plane = Some(new_plane(
                frame.width,
                frame.height,
                cfg.height,
                &self.masks,
            ));
        }
        let Some(p) = self.plane.as_mut() else {
            unreachable!("plane set above")
        };
        downscale(p, frame);

        let calibrating = if fresh || self.calibrating_left > 0 {
            p.background.copy_from_slice(&p.gray);
            if fresh {
                self.calibrating_left = cfg.calibration_frames.max(1);
            }
            self.calibrating_left -= 1;
            true
        } else {
            let raw = threshold(p, &cfg);
            let sudden =
                p.unmasked > 0 && raw as f32 > cfg.recalibrate_fraction * p.unmasked as f32;
            if sudden {
                p.background.copy_from_slice(&p.gray);
                self.calibrating_left = cfg.calibration_frames.max(1) - 1;
            }
            sudden
        };

        let (changed, boxes) = if calibrating {
            (0.0, Vec::new())
        } else {
            let (count, boxes) = components(p, &cfg);
            let changed = if p.unmasked == 0 {
                0.0
            } else {
                count as f32 / p.unmasked as f32
            };
            (changed, boxes)
        };
        let motion = !boxes.is_empty() && changed >= cfg.threshold;
        if motion {
            self.last_motion = Some(time);
        }
        let active = self
            .last_motion
            .is_some_and(|t| time.saturating_sub(t) <= cfg.hold);
        Ok(MotionResult {
            changed,
            boxes,
            motion,
            calibrating,
            active,
        })
    }
}

fn new_plane(sw: u32, sh: u32, height: u32, masks: &[Polygon]) -> Plane {
    let h = height.min(sh) as usize;
    let w = ((sw as f64 * h as f64 / sh as f64).round() as usize).clamp(1, sw as usize);
    let (swu, shu) = (sw as usize, sh as usize);
    let xs = (0..=w).map(|i| (i * swu).div_ceil(w)).collect();
    let ys = (0..=h).map(|i| (i * shu).div_ceil(h)).collect();
    let n = w * h;
    let mut p = Plane {
        src: (sw, sh),
        w,
        h,
        xs,
        ys,
        gray: vec![0.0; n],
        background: vec![0.0; n],
        mask: vec![false; n],
        unmasked: n,
        changed: vec![0; n],
        dilated: vec![0; n],
        tmp: vec![0; n],
        prefix: vec![0; (w + 1).max(n + w)],
        seen: vec![false; n],
        stack: Vec::new(),
        rows: vec![0; swu * 3],
    };
    rasterise(&mut p, masks);
    p
}

fn rasterise(p: &mut Plane, masks: &[Polygon]) {
    for y in 0..p.h {
        for x in 0..p.w {
            let c = Point::new((x as f32 + 0.5) / p.w as f32, (y as f32 + 0.5) / p.h as f32);
            p.mask[y * p.w + x] = masks.iter().any(|m| m.contains(c));
        }
    }
    p.unmasked = p.mask.iter().filter(|m| !**m).count();
}

/// Grayscale (BT.601 weights in 8-bit fixed point) and area-average
/// downscale. The source rows of one output row are first summed per byte
/// (a contiguous, vectorisable pass over the frame), so the weights and the
/// horizontal runs are applied once per output row, not once per source row.
fn downscale(p: &mut Plane, f: &Frame<'_>) {
    let row_bytes = f.width as usize * 3;
    for dy in 0..p.h {
        let (y0, y1) = (p.ys[dy], p.ys[dy + 1]);
        p.rows.fill(0);
        for y in y0..y1 {
            let row = &f.data[y * f.stride..y * f.stride + row_bytes];
            for (a, &b) in p.rows.iter_mut().zip(row) {
                *a += u32::from(b);
            }
        }
        let rows = (y1 - y0) as f32;
        let out = &mut p.gray[dy * p.w..(dy + 1) * p.w];
        for (o, xs) in out.iter_mut().zip(p.xs.windows(2)) {
            let mut s = 0u64;
            for px in p.rows[xs[0] * 3..xs[1] * 3].chunks_exact(3) {
                s += u64::from(29 * px[0] + 150 * px[1] + 77 * px[2]);
            }
            *o = s as f32 / (256.0 * rows * (xs[1] - xs[0]) as f32);
        }
    }
}

/// Marks changed pixels and updates the background; returns the count.
fn threshold(p: &mut Plane, cfg: &MotionConfig) -> usize {
    let t = f32::from(cfg.pixel_threshold);
    let a = cfg.alpha;
    let mut count = 0;
    for i in 0..p.gray.len() {
        let g = p.gray[i];
        let b = p.background[i];
        let c = (g - b).abs() > t && !p.mask[i];
        p.changed[i] = u8::from(c);
        count += usize::from(c);
        p.background[i] = b + a * (g - b);
    }
    count
}

/// Dilates the changed map and collects its components; returns the changed
/// pixels in components that are not noise, and their boxes.
fn components(p: &mut Plane, cfg: &MotionConfig) -> (usize, Vec<BBox>) {
    let (w, h) = (p.w, p.h);
    let r = cfg.dilate as usize;
    // Separable square dilation by window counts over prefix sums: rows
    // into tmp, then columns into dilated.
    for y in 0..h {
        let row = &p.changed[y * w..(y + 1) * w];
        let pre = &mut p.prefix[..=w];
        pre[0] = 0;
        for x in 0..w {
            pre[x + 1] = pre[x] + u32::from(row[x]);
        }
        let out = &mut p.tmp[y * w..(y + 1) * w];
        for (x, o) in out.iter_mut().enumerate() {
            let (a, b) = (x.saturating_sub(r), (x + r).min(w - 1));
            *o = u8::from(pre[b + 1] > pre[a]);
        }
    }
    p.prefix[..w].fill(0);
    for y in 0..h {
        let (prev, next) = p.prefix.split_at_mut((y + 1) * w);
        let prev = &prev[y * w..];
        for ((n, pv), t) in next[..w]
            .iter_mut()
            .zip(prev)
            .zip(&p.tmp[y * w..(y + 1) * w])
        {
            *n = pv + u32::from(*t);
        }
    }
    for y in 0..h {
        let (a, b) = (y.saturating_sub(r), (y + r).min(h - 1));
        let top = &p.prefix[a * w..(a + 1) * w];
        let bottom = &p.prefix[(b + 1) * w..(b + 2) * w];
        for ((o, t), b) in p.dilated[y * w..(y + 1) * w]
            .iter_mut()
            .zip(top)
            .zip(bottom)
        {
            *o = u8::from(b > t);
        }
    }
    let min_pixels = cfg.min_area * (w * h) as f32;
    p.seen.fill(false);
    let mut total = 0;
    let mut boxes = Vec::new();
    for start in 0..w * h {
        if p.dilated[start] == 0 || p.seen[start] {
            continue;
        }
        p.seen[start] = true;
        p.stack.clear();
        p.stack.push(start);
        let (mut x0, mut y0, mut x1, mut y1) = (w, h, 0, 0);
        let mut raw = 0usize;
        while let Some(i) = p.stack.pop() {
            let (x, y) = (i % w, i / w);
            x0 = x0.min(x);
            x1 = x1.max(x);
            y0 = y0.min(y);
            y1 = y1.max(y);
            raw += usize::from(p.changed[i]);
            for ny in y.saturating_sub(1)..=(y + 1).min(h - 1) {
                for nx in x.saturating_sub(1)..=(x + 1).min(w - 1) {
                    let j = ny * w + nx;
                    if p.dilated[j] == 1 && !p.seen[j] {
                        p.seen[j] = true;
                        p.stack.push(j);
                    }
                }
            }
        }
        if raw > 0 && raw as f32 >= min_pixels {
            total += raw;
            boxes.push([
                x0 as f32 / w as f32,
                y0 as f32 / h as f32,
                (x1 + 1) as f32 / w as f32,
                (y1 + 1) as f32 / h as f32,
            ]);
        }
    }
    (total, boxes)
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: u32 = 640;
    const H: u32 = 360;

    /// A frame of one grey level with optional filled rectangles (pixels).
    fn frame(level: u8, rects: &[(u32, u32, u32, u32, u8)]) -> Vec<u8> {
        let mut v = vec![level; (W * H * 3) as usize];
        for &(x0, y0, x1, y1, l) in rects {
            for y in y0..y1 {
                for x in x0..x1 {
                    let i = ((y * W + x) * 3) as usize;
                    v[i..i + 3].fill(l);
                }
            }
        }
        v
    }

    fn run(m: &mut MotionDetector, t_ms: u64, data: &[u8]) -> MotionResult {
        m.process(
            Duration::from_millis(t_ms),
            &Frame {
                width: W,
                height: H,
                stride: (W * 3) as usize,
                data,
            },
        )
        .unwrap()
    }

    /// A detector past its start-up calibration on a grey scene; returns the
    /// next frame time in ms.
    fn settled(m: &mut MotionDetector) -> u64 {
        let bg = frame(100, &[]);
        let mut t = 0;
        for _ in 0..m.config().calibration_frames + 2 {
            run(m, t, &bg);
            t += 200;
        }
        t
    }

    #[test]
    fn still_scene_has_no_motion_and_closes_the_gate() {
        let mut m = MotionDetector::new(MotionConfig::default(), vec![]).unwrap();
        let r = run(&mut m, 0, &frame(100, &[]));
        assert!(r.calibrating && !r.motion && !r.active);
        let t = settled(&mut m);
        let r = run(&mut m, t, &frame(100, &[]));
        assert_eq!(
            (r.changed, r.motion, r.active, r.calibrating),
            (0.0, false, false, false)
        );
    }

    #[test]
    fn a_moving_object_is_motion_with_a_box_where_it_is() {
        let mut m = MotionDetector::new(MotionConfig::default(), vec![]).unwrap();
        let t = settled(&mut m);
        // A 40x80 px bright "person" at x 320..360, y 200..280.
        let r = run(&mut m, t, &frame(100, &[(320, 200, 360, 280, 220)]));
        assert!(r.motion && r.active && !r.calibrating, "{r:?}");
        assert_eq!(r.boxes.len(), 1);
        let b = r.boxes[0];
        // Dilation grows the box by a couple of downscaled pixels.
        assert!(
            b[0] < 0.5 && b[0] > 0.47 && b[2] > 0.5625 && b[2] < 0.6,
            "{b:?}"
        );
        assert!(
            b[1] < 0.556 && b[1] > 0.5 && b[3] > 0.777 && b[3] < 0.83,
            "{b:?}"
        );
        // About 40*80 / (640*360) of the frame.
        assert!((r.changed - 0.0139).abs() < 0.003, "{}", r.changed);
    }

    #[test]
    fn noise_below_min_area_is_not_motion() {
        let mut m = MotionDetector::new(MotionConfig::default(), vec![]).unwrap();
        let t = settled(&mut m);
        // A 4x4 px speck: one downscaled pixel.
        let r = run(&mut m, t, &frame(100, &[(100, 100, 104, 104, 255)]));
        assert!(!r.motion && r.boxes.is_empty(), "{r:?}");
    }

    #[test]
    fn gate_holds_after_motion_stops() {
        let mut m = MotionDetector::new(MotionConfig::default(), vec![]).unwrap();
        let t = settled(&mut m);
        assert!(run(&mut m, t, &frame(100, &[(320, 200, 360, 280, 220)])).motion);
        let still = frame(100, &[]);
        let r = run(&mut m, t + 1_000, &still);
        assert!(!r.motion && r.active);
        assert!(run(&mut m, t + 2_000, &still).active);
        assert!(!run(&mut m, t + 2_200, &still).active);
    }

    #[test]
    fn ir_switch_recalibrates_instead_of_reporting_motion() {
        let mut m = MotionDetector::new(MotionConfig::default(), vec![]).unwrap();
        let mut t = settled(&mut m);
        // Night mode: everything jumps from 100 to 180.
        let night = frame(180, &[]);
        for i in 0..5 {
            let r = run(&mut m, t, &night);
            assert!(r.calibrating && !r.motion && !r.active, "frame {i}: {r:?}");
            t += 200;
        }
        let r = run(&mut m, t, &night);
        assert!(!r.calibrating && !r.motion, "{r:?}");
        // And motion is seen again against the new background.
        let r = run(&mut m, t + 200, &frame(180, &[(0, 0, 80, 80, 40)]));
        assert!(r.motion && !r.calibrating);
    }

    #[test]
    fn masked_motion_does_not_count() {
        let tree = Polygon::new(
            vec![
                Point::new(0.4, 0.4),
                Point::new(0.7, 0.4),
                Point::new(0.7, 0.9),
                Point::new(0.4, 0.9),
            ],
            "masks[0]",
        )
        .unwrap();
        let mut m = MotionDetector::new(MotionConfig::default(), vec![tree]).unwrap();
        let t = settled(&mut m);
        let waving = frame(100, &[(320, 200, 360, 280, 220)]);
        let r = run(&mut m, t, &waving);
        assert!(!r.motion && r.changed == 0.0, "{r:?}");
        // Unmasked, the same change is motion.
        m.reconfigure(MotionConfig::default(), vec![]).unwrap();
        let r = run(&mut m, t + 200, &waving);
        assert!(r.motion, "{r:?}");
    }

    #[test]
    fn disabled_gate_is_always_open() {
        let cfg = MotionConfig {
            disabled: true,
            ..MotionConfig::default()
        };
        let mut m = MotionDetector::new(cfg, vec![]).unwrap();
        let r = run(&mut m, 0, &frame(100, &[]));
        assert!(r.active && !r.motion);
    }

    #[test]
    fn re_enabling_recalibrates() {
        let mut m = MotionDetector::new(MotionConfig::default(), vec![]).unwrap();
        let t = settled(&mut m);
        let off = MotionConfig {
            disabled: true,
            ..MotionConfig::default()
        };
        m.reconfigure(off, vec![]).unwrap();
        // The scene changes completely while gating is off.
        assert!(run(&mut m, t, &frame(30, &[])).active);
        m.reconfigure(MotionConfig::default(), vec![]).unwrap();
        let r = run(&mut m, t + 200, &frame(30, &[]));
        assert!(r.calibrating && !r.motion, "{r:?}");
    }

    #[test]
    fn bad_frames_are_refused() {
        let mut m = MotionDetector::new(MotionConfig::default(), vec![]).unwrap();
        let data = vec![0u8; 100];
        let e = m
            .process(
                Duration::ZERO,
                &Frame {
                    width: 10,
                    height: 10,
                    stride: 30,
                    data: &data,
                },
            )
            .unwrap_err();
        assert!(
            matches!(
                e,
                Error::Frame {
                    needed: 300,
                    len: 100,
                    ..
                }
            ),
            "{e}"
        );
        let e = m.process(
            Duration::ZERO,
            &Frame {
                width: 10,
                height: 1,
                stride: 20,
                data: &data,
            },
        );
        assert!(e.is_err());
    }

    #[test]
    fn stride_padding_and_odd_sizes() {
        // 101x37 frame with 8 bytes of row padding: downscale keeps all rows.
        let (w, h, stride) = (101u32, 37u32, 101 * 3 + 8);
        let mut data = vec![50u8; stride * h as usize];
        let mut m = MotionDetector::new(MotionConfig::default(), vec![]).unwrap();
        fn f(d: &[u8], w: u32, h: u32, stride: usize) -> Frame<'_> {
            Frame {
                width: w,
                height: h,
                stride,
                data: d,
            }
        }
        for i in 0..6 {
            m.process(Duration::from_millis(i * 200), &f(&data, w, h, stride))
                .unwrap();
        }
        for y in 10..20 {
            for x in 40..60 {
                let i = y * stride + x * 3;
                data[i..i + 3].fill(250);
            }
        }
        let r = m
            .process(Duration::from_secs(2), &f(&data, w, h, stride))
            .unwrap();
        assert!(r.motion, "{r:?}");
    }
}
