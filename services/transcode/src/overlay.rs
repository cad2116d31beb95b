//! What a viewer copy changes in a picture: burned-in text, and areas made unrecognisable.
//!
//! Pictures are packed BGR8 (`stride == width * 3`). Everything here is plain integer
//! arithmetic on the pixels, so the same input gives the same output on every machine — a
//! resumed job's viewer copy is byte-identical to an uninterrupted one.
//!
//! - [`draw_text`]: ASCII text in the public-domain 8x8 bitmap font (`font8x8`), scaled by an
//!   integer factor, white on a dark box, so it stays readable on any scene.
//! - [`pixelate_polygon`] and [`pixelate_box`]: every pixel inside the area is replaced by the
//!   mean of its block (blocks of about 1/24 of the picture's width). A mosaic that coarse
//!   leaves no face or plate readable, and unlike a blur it cannot be partly undone.

use kordon_infer::Detection;

/// A polygon in normalised coordinates (x, y in 0..1).
pub type Polygon = Vec<(f32, f32)>;

/// Side of a mosaic block for a picture `width` pixels wide.
pub fn block_size(width: u32) -> u32 {
    (width / 24).max(8)
}

/// Writes `text` at (`x`, `y`) pixels, each font pixel `scale`x`scale`, white on near-black.
/// Characters outside printable ASCII are drawn as `?`; text is clipped at the picture's edge.
pub fn draw_text(bgr: &mut [u8], width: u32, height: u32, x: u32, y: u32, scale: u32, text: &str) {
    let scale = scale.max(1);
    let glyph = 8 * scale;
    let pad = scale * 2;
    let chars: Vec<u8> = text
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c as u8
            } else {
                b'?'
            }
        })
        .collect();
    let box_w = chars.len() as u32 * glyph + 2 * pad;
    let box_h = glyph + 2 * pad;
    fill_rect(bgr, width, height, x, y, box_w, box_h, [16, 16, 16]);
    for (i, c) in chars.iter().enumerate() {
        let rows = font8x8::legacy::BASIC_LEGACY[usize::from(*c & 0x7f)];
        let gx = x + pad + i as u32 * glyph;
        for (ry, row) in rows.iter().enumerate() {
            for rx in 0..8u32 {
                if row & (1 << rx) != 0 {
                    fill_rect(
                        bgr,
                        width,
                        height,
                        gx + rx * scale,
                        y + pad + ry as u32 * scale,
                        scale,
                        scale,
                        [255, 255, 255],
                    );
                }
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn fill_rect(bgr: &mut [u8], width: u32, height: u32, x: u32, y: u32, w: u32, h: u32, c: [u8; 3]) {
    let (x2, y2) = ((x + w).min(width), (y + h).min(height));
    for yy in y.min(height)..y2 {
        let row = yy as usize * width as usize * 3;
        for xx in x.min(width)..x2 {
            let i = row + xx as usize * 3;
            if let Some(px) = bgr.get_mut(i..i + 3) {
                px.copy_from_slice(&c);
            }
        }
    }
}

/// Whether (`x`, `y`) lies inside `poly` (even-odd rule); all in pixels.
fn inside(poly: &[(f32, f32)], x: f32, y: f32) -> bool {
    let mut c = false;
    let n = poly.len();
    let mut j = n.wrapping_sub(1);
    for i in 0..n {
        let (xi, yi) = poly[i];
        let (xj, yj) = poly[j];
        if (yi > y) != (yj > y) && x < (xj - xi) * (y - yi) / (yj - yi) + xi {
            c = !c;
        }
        j = i;
    }
    c
}

/// The mean colour of the block at (`bx`, `by`) (block units), clipped to the picture.
fn block_mean(bgr: &[u8], width: u32, height: u32, bx: u32, by: u32, block: u32) -> [u8; 3] {
    let (x1, y1) = (bx * block, by * block);
    let (x2, y2) = ((x1 + block).min(width), (y1 + block).min(height));
    let mut sum = [0u64; 3];
    let mut n = 0u64;
    for y in y1..y2 {
        let row = y as usize * width as usize * 3;
        for x in x1..x2 {
            let i = row + x as usize * 3;
            for c in 0..3 {
                sum[c] += u64::from(bgr[i + c]);
            }
            n += 1;
        }
    }
    if n == 0 {
        return [0; 3];
    }
    [(sum[0] / n) as u8, (sum[1] / n) as u8, (sum[2] / n) as u8]
}

/// Replaces every pixel whose centre lies inside `poly` (normalised) by its block's mean.
pub fn pixelate_polygon(bgr: &mut [u8], width: u32, height: u32, poly: &[(f32, f32)]) {
    if poly.len() < 3 || width == 0 || height == 0 || bgr.len() < (width * height * 3) as usize {
        return;
    }
    let px: Vec<(f32, f32)> = poly
        .iter()
        .map(|(x, y)| {
            (
                x.clamp(0.0, 1.0) * width as f32,
                y.clamp(0.0, 1.0) * height as f32,
            )
        })
        .collect();
    let (mut x1, mut y1, mut x2, mut y2) = (f32::MAX, f32::MAX, f32::MIN, f32::MIN);
    for (x, y) in &px {
        x1 = x1.min(*x);
        y1 = y1.min(*y);
        x2 = x2.max(*x);
        y2 = y2.max(*y);
    }
    let block = block_size(width);
    // Means are taken from the untouched picture, block by block.
    let (bx1, by1) = (x1 as u32 / block, y1 as u32 / block);
    let (bx2, by2) = (
        (x2.ceil() as u32).min(width.saturating_sub(1)) / block,
        (y2.ceil() as u32).min(height.saturating_sub(1)) / block,
    );
    for by in by1..=by2 {
        for bx in bx1..=bx2 {
            let mean = block_mean(bgr, width, height, bx, by, block);
            let (sx, sy) = (bx * block, by * block);
            for y in sy..(sy + block).min(height) {
                for x in sx..(sx + block).min(width) {
                    if inside(&px, x as f32 + 0.5, y as f32 + 0.5) {
                        let i = (y as usize * width as usize + x as usize) * 3;
                        bgr[i..i + 3].copy_from_slice(&mean);
                    }
                }
            }
        }
    }
}

/// Pixelates a box (normalised `x1, y1, x2, y2`), grown by `margin` of its size on each side.
pub fn pixelate_box(bgr: &mut [u8], width: u32, height: u32, b: [f32; 4], margin: f32) {
    let (w, h) = (b[2] - b[0], b[3] - b[1]);
    let (x1, y1) = (b[0] - w * margin, b[1] - h * margin);
    let (x2, y2) = (b[2] + w * margin, b[3] + h * margin);
    pixelate_polygon(
        bgr,
        width,
        height,
        &[(x1, y1), (x2, y1), (x2, y2), (x1, y2)],
    );
}

/// The person boxes among `detections` scoring at least `min_score`.
pub fn people(detections: &[Detection], min_score: f32) -> Vec<[f32; 4]> {
    detections
        .iter()
        .filter(|d| d.label == "person" && d.score >= min_score)
        .map(|d| d.bbox)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gradient(w: u32, h: u32) -> Vec<u8> {
        let mut v = Vec::with_capacity((w * h * 3) as usize);
        for y in 0..h {
            for x in 0..w {
                v.extend_from_slice(&[
                    (x * 7 % 256) as u8,
                    (y * 5 % 256) as u8,
                    ((x ^ y) % 256) as u8,
                ]);
            }
        }
        v
    }

    #[test]
    fn a_polygon_is_pixelated_inside_only() {
        let (w, h) = (320u32, 180u32);
        let orig = gradient(w, h);
        let mut p = orig.clone();
        pixelate_polygon(
            &mut p,
            w,
            h,
            &[(0.25, 0.25), (0.75, 0.25), (0.75, 0.75), (0.25, 0.75)],
        );
        let at = |v: &[u8], x: u32, y: u32| {
            let i = ((y * w + x) * 3) as usize;
            [v[i], v[i + 1], v[i + 2]]
        };
        // Outside: untouched.
        assert_eq!(at(&p, 10, 10), at(&orig, 10, 10));
        assert_eq!(at(&p, 300, 170), at(&orig, 300, 170));
        // Inside: one colour per block, and not the original detail.
        let b = block_size(w);
        let (x0, y0) = (b * 8, b * 4);
        assert_eq!(at(&p, x0, y0), at(&p, x0 + b - 1, y0 + b - 1));
        assert_ne!(p, orig);
        // Same input, same output.
        let mut q = orig.clone();
        pixelate_polygon(
            &mut q,
            w,
            h,
            &[(0.25, 0.25), (0.75, 0.25), (0.75, 0.75), (0.25, 0.75)],
        );
        assert_eq!(p, q);
        // Degenerate input changes nothing and does not panic.
        let mut r = orig.clone();
        pixelate_polygon(&mut r, w, h, &[(0.1, 0.1), (0.2, 0.2)]);
        pixelate_polygon(&mut r, w, h, &[(-5.0, -5.0), (9.0, -1.0), (2.0, 7.0)]);
        pixelate_polygon(&mut r[..10], w, h, &[(0.0, 0.0), (1.0, 0.0), (1.0, 1.0)]);
    }

    #[test]
    fn text_is_drawn_and_clipped() {
        let (w, h) = (200u32, 40u32);
        let mut p = vec![128u8; (w * h * 3) as usize];
        draw_text(
            &mut p,
            w,
            h,
            2,
            2,
            2,
            "2026-12-02 10:00:00 EET burgas/gate-1 ü",
        );
        let white = p.chunks(3).filter(|c| c == &[255, 255, 255]).count();
        let dark = p.chunks(3).filter(|c| c == &[16, 16, 16]).count();
        assert!(white > 100 && dark > 1000, "white {white} dark {dark}");
        // Far outside: nothing written, no panic.
        draw_text(&mut p, w, h, 5000, 5000, 3, "x");
    }
}
