//! The crate's one error type.
//!
//! Every configuration error names the field it is about, in the shape of the
//! config types (`zones[1].area[3].x`, `lines[0].name`, `filters.person.max_area`),
//! so the detection service can answer INVALID_ARGUMENT naming camera and field.
//! None of these is worth retrying: the input itself is wrong.

/// What went wrong.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    /// A polygon with fewer than 3 points.
    #[error("{field}: a polygon needs at least 3 points, got {got}")]
    TooFewPoints { field: String, got: usize },
    /// A coordinate or fraction outside 0..1 (or not a number).
    #[error("{field}: {value} is outside 0..1")]
    OutOfRange { field: String, value: f32 },
    /// Two zones or two lines with one name.
    #[error("{field}: duplicate name {name:?}")]
    DuplicateName { field: String, name: String },
    /// A class label the model does not know.
    #[error("{field}: unknown class {label:?}")]
    UnknownClass { field: String, label: String },
    /// Any other invalid setting (an empty name, min above max, a zero height).
    #[error("{field}: {reason}")]
    Invalid { field: String, reason: &'static str },
    /// A frame whose size, stride and buffer do not fit together.
    #[error(
        "frame of {width}x{height} pixels with stride {stride} needs {needed} bytes of BGR8, got {len}"
    )]
    Frame {
        width: u32,
        height: u32,
        stride: usize,
        needed: usize,
        len: usize,
    },
}

impl Error {
    /// The config field the error is about; `None` for frame errors.
    pub fn field(&self) -> Option<&str> {
        match self {
            Error::TooFewPoints { field, .. }
            | Error::OutOfRange { field, .. }
            | Error::DuplicateName { field, .. }
            | Error::UnknownClass { field, .. }
            | Error::Invalid { field, .. } => Some(field),
            Error::Frame { .. } => None,
        }
    }
}

/// Checks that `value` lies in 0..=1 (NaN does not).
pub(crate) fn unit(field: impl FnOnce() -> String, value: f32) -> Result<(), Error> {
    if (0.0..=1.0).contains(&value) {
        Ok(())
    } else {
        Err(Error::OutOfRange {
            field: field(),
            value,
        })
    }
}
