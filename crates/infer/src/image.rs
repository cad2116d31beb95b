//! Frames as the decode pipeline hands them over: packed BGR8 rows, possibly padded (`stride`).

use crate::error::InferError;

/// A borrowed packed BGR8 frame: `height` rows of `stride` bytes, of which the first `width * 3`
/// are pixels.
#[derive(Debug, Clone, Copy)]
pub struct Image<'a> {
    pub width: u32,
    pub height: u32,
    pub stride: usize,
    pub bgr: &'a [u8],
}

/// An owned packed BGR8 frame, for handing to the [`crate::Engine`]'s queue.
#[derive(Debug, Clone)]
pub struct OwnedImage {
    pub width: u32,
    pub height: u32,
    pub stride: usize,
    pub bgr: Vec<u8>,
}

impl OwnedImage {
    /// A tightly packed frame (`stride = width * 3`).
    pub fn packed(width: u32, height: u32, bgr: Vec<u8>) -> Self {
        OwnedImage {
            width,
            height,
            stride: width as usize * 3,
            bgr,
        }
    }

    pub fn view(&self) -> Image<'_> {
        Image {
            width: self.width,
            height: self.height,
            stride: self.stride,
            bgr: &self.bgr,
        }
    }
}

impl Image<'_> {
    /// Checks that the buffer holds what the dimensions promise.
    pub fn validate(&self) -> Result<(), InferError> {
        let bad = |reason| Err(InferError::BadImage { reason });
        if self.width == 0 || self.height == 0 {
            return bad("width and height must be positive");
        }
        if self.width > 16384 || self.height > 16384 {
            return bad("width and height must be at most 16384");
        }
        let row = self.width as usize * 3;
        if self.stride < row {
            return bad("stride is smaller than width * 3");
        }
        if self.bgr.len() < self.stride * (self.height as usize - 1) + row {
            return bad("buffer is shorter than stride * height");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_catches_short_buffers_and_strides() {
        let px = vec![0u8; 10 * 4 * 3];
        let ok = Image {
            width: 10,
            height: 4,
            stride: 30,
            bgr: &px,
        };
        assert!(ok.validate().is_ok());
        assert!(Image { stride: 29, ..ok }.validate().is_err());
        assert!(Image { stride: 31, ..ok }.validate().is_err());
        assert!(Image { height: 0, ..ok }.validate().is_err());
        assert!(
            Image {
                bgr: &px[..px.len() - 1],
                ..ok
            }
            .validate()
            .is_err()
        );
    }
}
