//! Viewer copies: the transformed copies of a camera's footage that an evidence bundle can
//! carry beside the originals (`ExportEvidence` with `rendering`) — time burned in, privacy
//! masks and people blurred. The transcode service makes them; storage only asks, checks and
//! packs them.
//!
//! # What this module guarantees
//! - [`Rendering`] is what an export asked for, validated before anything is created
//!   ([`Rendering::validate`]): masks only for cameras of the bundle, each a polygon of 3 to
//!   [`MAX_MASK_POINTS`] points inside the picture (normalised 0..1), a time zone that is at
//!   least shaped like an IANA name. It is stored with the bundle (JSON), so a retried export
//!   must ask for the same rendering.
//! - [`ViewerCopies`] is the one seam between storage and the transcode service: the real one
//!   is [`crate::transcode::TranscodeViewerCopies`] (kordon.transcode.v1), tests use their own.
//!   An implementation makes (or re-attaches to: [`ViewerCopyRequest::request_id`] is stable
//!   per bundle and camera) one viewer copy and returns where it is and its SHA-256 as the
//!   maker computed it; [`crate::evidence`] then reads the object, re-hashes it and refuses a
//!   bundle whose copy does not match.
//! - A viewer copy is never evidence of what the camera recorded: the manifest lists it apart
//!   from the chain records, with the transformation named ([`Rendering::summary`]).
//!
//! # What it assumes
//! - The copy's object lies in the camera's own folder of the site's bucket (as every object
//!   of a camera does; see [`crate::service::Storage::owns_key`]); another key is refused.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::StorageError;
use crate::service::{Progress, Storage};

/// Most privacy masks per camera.
pub const MAX_MASKS: usize = 32;
/// Most points of one mask.
pub const MAX_MASK_POINTS: usize = 64;

/// A point in normalised picture coordinates (0,0 top left; 1,1 bottom right).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Point {
    pub x: f32,
    pub y: f32,
}

/// A closed polygon in normalised picture coordinates: the area a privacy mask blurs.
pub type Polygon = Vec<Point>;

/// What an export's viewer copies show: the `rendering` of ExportEvidence.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rendering {
    /// Burn the wall-clock time into every frame.
    pub burn_in_timestamp: bool,
    /// IANA zone of the burned-in time; empty: the site's.
    pub time_zone: String,
    /// Privacy masks by camera (cameras of the bundle only; a camera absent has none).
    pub privacy_masks: BTreeMap<String, Vec<Polygon>>,
    /// Blur every detected person's box.
    pub blur_people: bool,
}

impl Rendering {
    /// Checks the rendering of an export of `cameras`; the message names the field.
    pub fn validate(&self, cameras: &[String]) -> Result<(), StorageError> {
        let tz = &self.time_zone;
        if tz.len() > 64
            || !tz
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'_' | b'+' | b'-'))
        {
            return Err(StorageError::invalid(format!(
                "rendering.time_zone: `{tz}` is not an IANA time zone name (e.g. Europe/Sofia)"
            )));
        }
        if !tz.is_empty() && !self.burn_in_timestamp {
            return Err(StorageError::invalid(
                "rendering.time_zone: only used with burn_in_timestamp",
            ));
        }
        for (camera, masks) in &self.privacy_masks {
            if !cameras.contains(camera) {
                return Err(StorageError::invalid(format!(
                    "rendering.privacy_masks: camera `{camera}` is not in the bundle"
                )));
            }
            if masks.is_empty() || masks.len() > MAX_MASKS {
                return Err(StorageError::invalid(format!(
                    "rendering.privacy_masks: camera `{camera}` has {} masks; 1 to {MAX_MASKS}",
                    masks.len()
                )));
            }
            for (i, m) in masks.iter().enumerate() {
                if m.len() < 3 || m.len() > MAX_MASK_POINTS {
                    return Err(StorageError::invalid(format!(
                        "rendering.privacy_masks: mask {i} of `{camera}` has {} points; a polygon \
                         has 3 to {MAX_MASK_POINTS}",
                        m.len()
                    )));
                }
                // NaN and infinities are outside the range too.
                let inside = |v: f32| (0.0..=1.0).contains(&v);
                if let Some(p) = m.iter().find(|p| !(inside(p.x) && inside(p.y))) {
                    return Err(StorageError::invalid(format!(
                        "rendering.privacy_masks: mask {i} of `{camera}` has point ({}, {}) \
                         outside the picture: coordinates are normalised, 0 to 1",
                        p.x, p.y
                    )));
                }
            }
        }
        Ok(())
    }

    /// The masks of `camera` (none when it has none).
    pub fn masks_of(&self, camera: &str) -> &[Polygon] {
        self.privacy_masks
            .get(camera)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// The transformation of `camera`'s viewer copy in words, for the manifest and people:
    /// `time burned in (Europe/Sofia); 2 privacy masks blurred; people blurred`.
    pub fn summary(&self, camera: &str) -> String {
        let time = match (self.burn_in_timestamp, self.time_zone.as_str()) {
            (false, _) => "no time burned in".to_string(),
            (true, "") => "time burned in (the site's time zone)".to_string(),
            (true, tz) => format!("time burned in ({tz})"),
        };
        let masks = match self.masks_of(camera).len() {
            0 => "no privacy masks".to_string(),
            1 => "1 privacy mask blurred".to_string(),
            n => format!("{n} privacy masks blurred"),
        };
        let people = if self.blur_people {
            "every detected person blurred"
        } else {
            "people not blurred"
        };
        format!("{time}; {masks}; {people}")
    }
}

/// One viewer copy to make: a camera of a bundle over the bundle's range.
#[derive(Debug, Clone, PartialEq)]
pub struct ViewerCopyRequest {
    pub bundle_id: String,
    pub site: String,
    pub camera: String,
    pub from_us: i64,
    pub to_us: i64,
    pub burn_in_timestamp: bool,
    pub time_zone: String,
    pub privacy_masks: Vec<Polygon>,
    pub blur_people: bool,
    /// The export's audit context: the copy reads footage for the same reason and case.
    pub reason: String,
    pub case_id: String,
    pub recipient: String,
    /// `<bundle id>/<camera>`: stable across retries of the bundle, so a retry (or a storage
    /// restart during an export) re-attaches to the job rather than encoding again.
    pub request_id: String,
}

/// A finished viewer copy, as its maker reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViewerCopy {
    /// The transcode job that made it.
    pub job_id: String,
    /// The encoder used, e.g. `x264enc`.
    pub encoder: String,
    /// Key in the site's bucket.
    pub object_key: String,
    pub size_bytes: u64,
    pub sha256: [u8; 32],
}

/// Makes viewer copies (the transcode service; a fake in tests).
#[tonic::async_trait]
pub trait ViewerCopies: Send + Sync {
    /// Makes the copy `req` asks for, or re-attaches to the one of the same request id, and
    /// waits until it is done, reporting `progress` (done, total, stage). Returns when the
    /// copy is written, or why it cannot be (the maker's error named), or
    /// [`StorageError::Cancelled`] once `cancel` fires (the maker's job may go on; a retry
    /// re-attaches).
    async fn make(
        &self,
        req: &ViewerCopyRequest,
        progress: Progress<'_>,
        cancel: &CancellationToken,
    ) -> Result<ViewerCopy, StorageError>;
}

/// Refusal of `rendering` when no maker is configured.
pub fn not_configured() -> StorageError {
    StorageError::FailedPrecondition(
        "rendering: viewer copies are made by the transcode service, and this storage has none \
         configured (storage.transcode.url); export the originals without rendering, or \
         configure it"
            .into(),
    )
}

impl Storage {
    /// The maker of viewer copies, if one is configured.
    pub fn viewer_copies(&self) -> Option<Arc<dyn ViewerCopies>> {
        self.viewer_copies_slot()
            .read()
            .ok()
            .and_then(|slot| slot.clone())
    }

    /// Installs the maker of viewer copies (the transcode client; [`Storage::open`] installs
    /// one when `transcode.url` is configured, the binary may install one for its own
    /// listener). Without one, exports with `rendering` are refused.
    pub fn set_viewer_copies(&self, maker: Arc<dyn ViewerCopies>) {
        if let Ok(mut slot) = self.viewer_copies_slot().write() {
            *slot = Some(maker);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn square() -> Polygon {
        [(0.1, 0.1), (0.4, 0.1), (0.4, 0.4), (0.1, 0.4)]
            .into_iter()
            .map(|(x, y)| Point { x, y })
            .collect()
    }

    #[test]
    fn validation_names_the_field() {
        let cams = vec!["gate-3".to_string()];
        let mut r = Rendering {
            burn_in_timestamp: true,
            time_zone: "Europe/Sofia".into(),
            ..Default::default()
        };
        r.privacy_masks.insert("gate-3".into(), vec![square()]);
        assert!(r.validate(&cams).is_ok());
        let err = |r: &Rendering| match r.validate(&cams) {
            Err(StorageError::InvalidArgument(m)) => m,
            other => panic!("{other:?}"),
        };
        let mut bad = r.clone();
        bad.time_zone = "Europe/Sofia; rm".into();
        assert!(err(&bad).starts_with("rendering.time_zone:"));
        let mut bad = r.clone();
        bad.burn_in_timestamp = false;
        assert!(err(&bad).contains("only used with burn_in_timestamp"));
        let mut bad = r.clone();
        bad.privacy_masks.insert("gate-4".into(), vec![square()]);
        assert!(err(&bad).contains("`gate-4` is not in the bundle"));
        let mut bad = r.clone();
        bad.privacy_masks
            .insert("gate-3".into(), vec![square()[..2].to_vec()]);
        assert!(err(&bad).contains("has 2 points"));
        let mut bad = r.clone();
        let mut outside = square();
        outside[2].x = 1.5;
        bad.privacy_masks.insert("gate-3".into(), vec![outside]);
        assert!(err(&bad).contains("outside the picture"));
        let mut bad = r.clone();
        let mut nan = square();
        nan[0].y = f32::NAN;
        bad.privacy_masks.insert("gate-3".into(), vec![nan]);
        assert!(err(&bad).contains("outside the picture"));
        let mut bad = r.clone();
        bad.privacy_masks
            .insert("gate-3".into(), vec![square(); MAX_MASKS + 1]);
        assert!(err(&bad).contains("1 to 32"));
    }

    #[test]
    fn the_summary_names_every_transformation() {
        let mut r = Rendering {
            burn_in_timestamp: true,
            time_zone: "Europe/Istanbul".into(),
            blur_people: true,
            ..Default::default()
        };
        r.privacy_masks
            .insert("gate-3".into(), vec![square(), square()]);
        assert_eq!(
            r.summary("gate-3"),
            "time burned in (Europe/Istanbul); 2 privacy masks blurred; every detected person \
             blurred"
        );
        assert_eq!(
            Rendering::default().summary("gate-3"),
            "no time burned in; no privacy masks; people not blurred"
        );
        r.time_zone.clear();
        assert!(
            r.summary("gate-4")
                .starts_with("time burned in (the site's time zone); no")
        );
    }

    #[test]
    fn stored_as_json_it_round_trips_exactly() {
        let mut r = Rendering {
            burn_in_timestamp: true,
            ..Default::default()
        };
        r.privacy_masks.insert(
            "gate-3".into(),
            vec![vec![
                Point { x: 0.1, y: 0.7 },
                Point {
                    x: 1.0 / 3.0,
                    y: 0.0,
                },
                Point {
                    x: 0.999_999,
                    y: 1.0,
                },
            ]],
        );
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(serde_json::from_str::<Rendering>(&json).unwrap(), r);
    }
}
