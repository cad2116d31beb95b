//! Letterbox pre-processing: scale the frame to fit the model's square input keeping its aspect
//! ratio (bilinear, half-pixel centres, as OpenCV's `INTER_LINEAR`), centre it, pad with black,
//! and write BGR planes normalised as `(pixel - MEAN) / STD` straight into the NCHW tensor.
//!
//! [`Letterbox`] holds the mapping so boxes can be taken back to the original frame.

use crate::image::Image;

/// Per-channel (B, G, R) mean and standard deviation of the model's training data.
pub const MEAN: [f32; 3] = [103.53, 116.28, 123.675];
pub const STD: [f32; 3] = [57.375, 57.12, 58.395];

/// Where a frame sits inside the model input.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Letterbox {
    /// Model pixels per frame pixel.
    pub scale: f32,
    /// Left and top padding, in model pixels.
    pub pad_x: u32,
    pub pad_y: u32,
    /// Size of the scaled frame inside the input.
    pub width: u32,
    pub height: u32,
    /// Size of the original frame.
    pub src_width: u32,
    pub src_height: u32,
}

impl Letterbox {
    /// The letterbox of a `src_width x src_height` frame in a `dst_width x dst_height` input.
    pub fn fit(src_width: u32, src_height: u32, dst_width: u32, dst_height: u32) -> Letterbox {
        let scale =
            (dst_width as f32 / src_width as f32).min(dst_height as f32 / src_height as f32);
        let width = ((src_width as f32 * scale).round() as u32).clamp(1, dst_width);
        let height = ((src_height as f32 * scale).round() as u32).clamp(1, dst_height);
        Letterbox {
            scale,
            pad_x: (dst_width - width) / 2,
            pad_y: (dst_height - height) / 2,
            width,
            height,
            src_width,
            src_height,
        }
    }

    /// Maps a box in model pixels to the original frame, normalised to 0..1 and clamped.
    pub fn unmap(&self, [x1, y1, x2, y2]: [f32; 4]) -> [f32; 4] {
        let sx = self.scale * self.src_width as f32;
        let sy = self.scale * self.src_height as f32;
        let nx = |x: f32| ((x - self.pad_x as f32) / sx).clamp(0.0, 1.0);
        let ny = |y: f32| ((y - self.pad_y as f32) / sy).clamp(0.0, 1.0);
        [nx(x1), ny(y1), nx(x2), ny(y2)]
    }
}

/// One axis of a bilinear resize: for each destination index the two source indices and the
/// weight of the second.
fn taps(src: u32, dst: u32) -> Vec<(usize, usize, f32)> {
    let ratio = src as f32 / dst as f32;
    (0..dst)
        .map(|i| {
            let s = ((i as f32 + 0.5) * ratio - 0.5).max(0.0);
            let i0 = (s.floor() as usize).min(src as usize - 1);
            let i1 = (i0 + 1).min(src as usize - 1);
            (i0, i1, s - i0 as f32)
        })
        .collect()
}

/// Letterboxes `image` into `out`, one sample of an NCHW float tensor of `dst_width x dst_height`
/// (length `3 * dst_width * dst_height`). The image must be valid ([`Image::validate`]).
pub fn letterbox_into(
    image: &Image<'_>,
    dst_width: u32,
    dst_height: u32,
    out: &mut [f32],
) -> Letterbox {
    let lb = Letterbox::fit(image.width, image.height, dst_width, dst_height);
    let (dw, dh) = (dst_width as usize, dst_height as usize);
    let plane = dw * dh;
    debug_assert_eq!(out.len(), 3 * plane);
    // Padding is black (pixel 0) after normalisation.
    for c in 0..3 {
        out[c * plane..(c + 1) * plane].fill(-MEAN[c] / STD[c]);
    }
    let xs = taps(image.width, lb.width);
    let ys = taps(image.height, lb.height);
    let inv = [1.0 / STD[0], 1.0 / STD[1], 1.0 / STD[2]];
    let mut row = vec![0f32; lb.width as usize * 3];
    for (oy, &(y0, y1, wy)) in ys.iter().enumerate() {
        let r0 = &image.bgr[y0 * image.stride..];
        let r1 = &image.bgr[y1 * image.stride..];
        // Vertical pass then horizontal, both in f32; each output pixel reads four source pixels.
        for (ox, &(x0, x1, wx)) in xs.iter().enumerate() {
            for c in 0..3 {
                let a = r0[x0 * 3 + c] as f32;
                let b = r0[x1 * 3 + c] as f32;
                let p = r1[x0 * 3 + c] as f32;
                let q = r1[x1 * 3 + c] as f32;
                let top = a + (b - a) * wx;
                let bottom = p + (q - p) * wx;
                row[ox * 3 + c] = top + (bottom - top) * wy;
            }
        }
        let base = (lb.pad_y as usize + oy) * dw + lb.pad_x as usize;
        for c in 0..3 {
            let dst = &mut out[c * plane + base..c * plane + base + lb.width as usize];
            for (d, px) in dst.iter_mut().zip(row.chunks_exact(3)) {
                *d = (px[c] - MEAN[c]) * inv[c];
            }
        }
    }
    lb
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wide_frames_are_padded_top_and_bottom() {
        let lb = Letterbox::fit(640, 360, 416, 416);
        assert_eq!((lb.width, lb.height), (416, 234));
        assert_eq!((lb.pad_x, lb.pad_y), (0, 91));
        let lb = Letterbox::fit(640, 272, 416, 416);
        assert_eq!((lb.width, lb.height, lb.pad_y), (416, 177, 119));
        let tall = Letterbox::fit(300, 600, 416, 416);
        assert_eq!(
            (tall.width, tall.height, tall.pad_x, tall.pad_y),
            (208, 416, 104, 0)
        );
    }

    #[test]
    fn unmap_inverts_the_letterbox() {
        let lb = Letterbox::fit(640, 360, 416, 416);
        // The frame's corners in model pixels map to 0 and 1.
        let b = lb.unmap([0.0, 91.0, 416.0, 91.0 + 234.0]);
        for (got, want) in b.iter().zip([0.0, 0.0, 1.0, 1.0]) {
            assert!((got - want).abs() < 1e-3, "{b:?}");
        }
        // A point in the middle of the frame maps to the middle.
        let m = lb.unmap([208.0, 208.0, 208.0, 208.0]);
        assert!(
            (m[0] - 0.5).abs() < 1e-3 && (m[1] - 0.5).abs() < 1e-3,
            "{m:?}"
        );
        // Boxes in the padding clamp to the frame.
        assert_eq!(lb.unmap([-5.0, 0.0, 500.0, 416.0]), [0.0, 0.0, 1.0, 1.0]);
    }

    #[test]
    fn tensor_holds_normalised_planes_and_black_padding() {
        // A 4x2 frame, every pixel B=10 G=20 R=30, with a padded stride.
        let (w, h, stride) = (4u32, 2u32, 14usize);
        let mut bgr = vec![0u8; stride * h as usize];
        for y in 0..h as usize {
            for x in 0..w as usize {
                bgr[y * stride + x * 3..y * stride + x * 3 + 3].copy_from_slice(&[10, 20, 30]);
            }
        }
        let img = Image {
            width: w,
            height: h,
            stride,
            bgr: &bgr,
        };
        let mut out = vec![0f32; 3 * 8 * 8];
        let lb = letterbox_into(&img, 8, 8, &mut out);
        assert_eq!((lb.width, lb.height, lb.pad_x, lb.pad_y), (8, 4, 0, 2));
        for c in 0..3 {
            let plane = &out[c * 64..(c + 1) * 64];
            let inside = ((c as f32 + 1.0) * 10.0 - MEAN[c]) / STD[c];
            let pad = -MEAN[c] / STD[c];
            for y in 0..8 {
                let want = if (2..6).contains(&y) { inside } else { pad };
                for x in 0..8 {
                    assert!((plane[y * 8 + x] - want).abs() < 1e-5, "c{c} y{y} x{x}");
                }
            }
        }
    }

    #[test]
    fn bilinear_interpolates_between_pixels() {
        // Two pixels 0 and 200 (all channels) upscaled to four: half-pixel centres give
        // 0, 50, 150, 200.
        let bgr = [0u8, 0, 0, 200, 200, 200];
        let img = Image {
            width: 2,
            height: 1,
            stride: 6,
            bgr: &bgr,
        };
        let mut out = vec![0f32; 3 * 4 * 2];
        letterbox_into(&img, 4, 2, &mut out);
        let row: Vec<f32> = out[..4].iter().map(|v| v * STD[0] + MEAN[0]).collect();
        for (got, want) in row.iter().zip([0.0, 50.0, 150.0, 200.0]) {
            assert!((got - want).abs() < 1e-3, "{row:?}");
        }
    }
}
