//! Burns text into raw I420 frames with a built-in 5x7 bitmap font.
//!
//! The simulator draws its own text instead of using `textoverlay`/`timeoverlay`, which live in
//! a GStreamer package (pango) that servers often lack. Only ASCII letters, digits and `:.-/_`
//! are drawn (lower case as upper case); anything else is drawn as `?`.

/// Glyph rows, top to bottom, 5 bits each (bit 4 is the leftmost pixel).
fn glyph(c: char) -> [u8; 7] {
    match c.to_ascii_uppercase() {
        '0' => [0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E],
        '1' => [0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E],
        '2' => [0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F],
        '3' => [0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E],
        '4' => [0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02],
        '5' => [0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E],
        '6' => [0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E],
        '7' => [0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08],
        '8' => [0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E],
        '9' => [0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C],
        'A' => [0x0E, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11],
        'B' => [0x1E, 0x11, 0x11, 0x1E, 0x11, 0x11, 0x1E],
        'C' => [0x0E, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0E],
        'D' => [0x1C, 0x12, 0x11, 0x11, 0x11, 0x12, 0x1C],
        'E' => [0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x1F],
        'F' => [0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x10],
        'G' => [0x0E, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0F],
        'H' => [0x11, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11],
        'I' => [0x0E, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E],
        'J' => [0x07, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0C],
        'K' => [0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11],
        'L' => [0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1F],
        'M' => [0x11, 0x1B, 0x15, 0x15, 0x11, 0x11, 0x11],
        'N' => [0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11],
        'O' => [0x0E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E],
        'P' => [0x1E, 0x11, 0x11, 0x1E, 0x10, 0x10, 0x10],
        'Q' => [0x0E, 0x11, 0x11, 0x11, 0x15, 0x12, 0x0D],
        'R' => [0x1E, 0x11, 0x11, 0x1E, 0x14, 0x12, 0x11],
        'S' => [0x0F, 0x10, 0x10, 0x0E, 0x01, 0x01, 0x1E],
        'T' => [0x1F, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04],
        'U' => [0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E],
        'V' => [0x11, 0x11, 0x11, 0x11, 0x11, 0x0A, 0x04],
        'W' => [0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0A],
        'X' => [0x11, 0x11, 0x0A, 0x04, 0x0A, 0x11, 0x11],
        'Y' => [0x11, 0x11, 0x11, 0x0A, 0x04, 0x04, 0x04],
        'Z' => [0x1F, 0x01, 0x02, 0x04, 0x08, 0x10, 0x1F],
        ':' => [0x00, 0x0C, 0x0C, 0x00, 0x0C, 0x0C, 0x00],
        '.' => [0x00, 0x00, 0x00, 0x00, 0x00, 0x0C, 0x0C],
        '-' => [0x00, 0x00, 0x00, 0x1F, 0x00, 0x00, 0x00],
        '/' => [0x00, 0x01, 0x02, 0x04, 0x08, 0x10, 0x00],
        '_' => [0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x1F],
        ' ' => [0; 7],
        _ => [0x0E, 0x11, 0x01, 0x02, 0x04, 0x00, 0x04],
    }
}

/// Luma of the text and of the box behind it (video range).
const INK: u8 = 235;
const PAPER: u8 = 16;
const NEUTRAL_CHROMA: u8 = 128;

/// A mutable view of one I420 frame in GStreamer's default layout.
pub(crate) struct I420<'a> {
    data: &'a mut [u8],
    width: usize,
    height: usize,
    y_stride: usize,
    c_stride: usize,
    u_offset: usize,
    v_offset: usize,
}

fn round_up(value: usize, to: usize) -> usize {
    value.div_ceil(to) * to
}

impl<'a> I420<'a> {
    /// `None` when `data` is too small for a `width`x`height` I420 frame.
    pub fn new(data: &'a mut [u8], width: usize, height: usize) -> Option<I420<'a>> {
        let y_stride = round_up(width, 4);
        let c_stride = round_up(round_up(width, 2) / 2, 4);
        let c_height = round_up(height, 2) / 2;
        let u_offset = y_stride * round_up(height, 2);
        let v_offset = u_offset + c_stride * c_height;
        if data.len() < v_offset + c_stride * c_height {
            return None;
        }
        Some(I420 {
            data,
            width,
            height,
            y_stride,
            c_stride,
            u_offset,
            v_offset,
        })
    }

    /// Fills a rectangle (clipped to the frame) with luma `y` and neutral chroma.
    fn fill(&mut self, x: usize, y: usize, w: usize, h: usize, luma: u8) {
        let x_end = (x + w).min(self.width);
        let y_end = (y + h).min(self.height);
        if x >= x_end || y >= y_end {
            return;
        }
        for row in y..y_end {
            let start = row * self.y_stride;
            self.data[start + x..start + x_end].fill(luma);
        }
        for row in y / 2..y_end.div_ceil(2) {
            for offset in [self.u_offset, self.v_offset] {
                let start = offset + row * self.c_stride;
                self.data[start + x / 2..start + x_end.div_ceil(2)].fill(NEUTRAL_CHROMA);
            }
        }
    }

    /// Draws `text` in white on a black box whose top-left corner is at (`x`, `y`); each font
    /// pixel is `scale` x `scale` frame pixels.
    pub fn draw_text(&mut self, x: usize, y: usize, scale: usize, text: &str) {
        let scale = scale.max(1);
        let advance = 6 * scale;
        let chars = text.chars().count();
        let pad = scale;
        self.fill(x, y, chars * advance + 2 * pad, 7 * scale + 2 * pad, PAPER);
        for (i, c) in text.chars().enumerate() {
            let left = x + pad + i * advance;
            for (row, bits) in glyph(c).iter().enumerate() {
                for col in 0..5 {
                    if bits & (0x10 >> col) != 0 {
                        self.fill(left + col * scale, y + pad + row * scale, scale, scale, INK);
                    }
                }
            }
        }
    }
}

/// `HH:MM:SS.mmm` for a loop position in nanoseconds.
pub(crate) fn clock_text(ns: u64) -> String {
    let ms = ns / 1_000_000;
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        ms / 3_600_000,
        ms / 60_000 % 60,
        ms / 1000 % 60,
        ms % 1000
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_formats_loop_time() {
        assert_eq!(clock_text(0), "00:00:00.000");
        assert_eq!(clock_text(9_960_000_000), "00:00:09.960");
        assert_eq!(clock_text(3_725_040_000_000), "01:02:05.040");
    }

    #[test]
    fn text_is_drawn_inside_the_frame_only() {
        let (w, h) = (64, 36);
        let mut data = vec![100u8; w * h * 3 / 2];
        let mut frame = I420::new(&mut data, w, h).expect("big enough");
        frame.draw_text(2, 2, 1, "CAM1");
        // Box background at the top-left corner, ink in the first glyph ('C' row 0 col 1).
        assert_eq!(data[2 * w + 2], PAPER);
        assert_eq!(data[(2 + 1) * w + 2 + 1 + 1], INK);
        // Far corner untouched.
        assert_eq!(data[(h - 1) * w + w - 1], 100);
        // Chroma under the box is neutral.
        assert_eq!(data[w * h + w / 2 + 1], NEUTRAL_CHROMA);

        // Drawing past the edges clips instead of panicking.
        let mut frame = I420::new(&mut data, w, h).expect("big enough");
        frame.draw_text(60, 30, 3, "00:00:00.000 WAY TOO LONG");
    }

    #[test]
    fn too_small_buffers_are_refused() {
        let mut data = vec![0u8; 10];
        assert!(I420::new(&mut data, 64, 36).is_none());
    }

    #[test]
    fn every_drawable_char_has_a_distinct_glyph() {
        let chars: Vec<char> = ('0'..='9')
            .chain('A'..='Z')
            .chain(":.-/_ ".chars())
            .collect();
        let unknown = glyph('\u{1F4F7}');
        for (i, a) in chars.iter().enumerate() {
            assert_ne!(glyph(*a), unknown, "{a} falls back to ?");
            for b in &chars[i + 1..] {
                assert_ne!(glyph(*a), glyph(*b), "{a} and {b} look alike");
            }
        }
        assert_eq!(glyph('m'), glyph('M'));
    }
}
