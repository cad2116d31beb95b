//! Renditions (lower-bitrate copies of one original segment, made by transcode) and snapshots
//! (stills: detection snapshots and timeline thumbnails). Both are copies, not evidence: they
//! are registered only after their object is found in the bucket with the stated size, are
//! idempotent, and are deleted by retention with the footage they belong to — but they are
//! not in the hash chain. Reads go through signed download URLs like evidence bundles.

use std::time::Duration;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use crate::StorageError;
use crate::index::ObjectUser;
use crate::playback::Download;
use crate::service::{Storage, check_camera};

/// A rendition to register.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRendition {
    pub site: String,
    pub camera: String,
    pub source_sequence: u64,
    pub profile: String,
    pub start_us: i64,
    pub end_us: i64,
    pub codec: i32,
    pub width: u32,
    pub height: u32,
    pub bitrate_bps: u64,
    pub object_key: String,
    pub size_bytes: u64,
    pub sha256: [u8; 32],
    pub job_id: String,
    /// Size of the init section (ftyp+moov): the offset of the first moof box. 0 only on rows
    /// registered before it was recorded (never accepted now); playlists skip those.
    pub init_size: u64,
}

/// A stored rendition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendition {
    pub new: NewRendition,
    pub registered_at_us: i64,
}

/// A snapshot to register.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSnapshot {
    pub site: String,
    pub camera: String,
    /// `kordon.storage.v1.SnapshotKind` value.
    pub kind: i32,
    pub captured_at_us: i64,
    pub content_type: String,
    pub width: u32,
    pub height: u32,
    pub size_bytes: u64,
    pub sha256: [u8; 32],
    pub object_key: String,
    pub detection_id: String,
    pub source_sequence: u64,
}

/// A stored snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub id: String,
    pub new: NewSnapshot,
    pub registered_at_us: i64,
}

/// A camera over `[from_us, to_us)`, for lists.
#[derive(Debug, Clone, Copy)]
pub struct CameraWindow<'a> {
    pub site: &'a str,
    pub camera: &'a str,
    pub from_us: i64,
    pub to_us: i64,
}

/// Escaped in each segment of an object key in a URL: all but unreserved characters.
const PATH_SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

const KIND_DETECTION: i32 = 1;
pub(crate) const KIND_THUMBNAIL: i32 = 2;

/// What registering `n` over the stored `existing` does.
pub(crate) enum Reregistration {
    /// The same rendition: nothing to do.
    Same(Rendition),
    /// The same rendition, stored before its init size was recorded: record it.
    AddInitSize(Rendition),
}

pub(crate) fn same_or_conflict(
    existing: Rendition,
    n: &NewRendition,
) -> Result<Reregistration, StorageError> {
    if existing.new == *n {
        Ok(Reregistration::Same(existing))
    } else if existing.new.init_size == 0 && n.init_size > 0 && {
        let with_init = NewRendition {
            init_size: n.init_size,
            ..existing.new.clone()
        };
        with_init == *n
    } {
        Ok(Reregistration::AddInitSize(Rendition {
            new: n.clone(),
            ..existing
        }))
    } else {
        Err(StorageError::AlreadyExists(format!(
            "rendition `{}` of {}/{} segment {} is already registered with other fields \
             (object `{}`)",
            n.profile, n.site, n.camera, n.source_sequence, existing.new.object_key
        )))
    }
}

pub(crate) fn same_snapshot_or_conflict(
    existing: Snapshot,
    n: &NewSnapshot,
) -> Result<(Snapshot, bool), StorageError> {
    if existing.new == *n {
        Ok((existing, false))
    } else {
        Err(StorageError::AlreadyExists(format!(
            "object `{}` is already registered as snapshot {} with other fields",
            n.object_key, existing.id
        )))
    }
}

pub(crate) fn valid_profile(p: &str) -> Result<(), StorageError> {
    if p.is_empty()
        || p.len() > 64
        || !p
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err(StorageError::invalid(
            "profile: 1 to 64 letters, digits, `-`, `_` or `.`",
        ));
    }
    Ok(())
}

impl Storage {
    /// Registers a rendition of a live segment after checking its object.
    pub async fn register_rendition(
        &self,
        n: &NewRendition,
    ) -> Result<(Rendition, bool), StorageError> {
        check_camera(&n.site, &n.camera)?;
        valid_profile(&n.profile)?;
        if n.end_us <= n.start_us {
            return Err(StorageError::invalid("range: end must be after start"));
        }
        if n.size_bytes == 0 {
            return Err(StorageError::invalid("size_bytes: must be more than 0"));
        }
        if n.init_size == 0 || n.init_size >= n.size_bytes {
            return Err(StorageError::invalid(
                "init_size: must be more than 0 and less than size_bytes (the offset of the \
                 first moof box)",
            ));
        }
        let source = self
            .index()
            .segment(&n.site, &n.camera, n.source_sequence)
            .await?
            .filter(|s| s.deleted_at_us.is_none())
            .ok_or_else(|| {
                StorageError::FailedPrecondition(format!(
                    "{}/{} has no live segment {} to make a rendition of",
                    n.site, n.camera, n.source_sequence
                ))
            })?;
        if n.start_us < source.start_us || n.end_us > source.end_us {
            return Err(StorageError::invalid(format!(
                "range: a rendition covers its source segment's time or less ({} – {})",
                kordon_objects::time::rfc3339_micros(source.start_us),
                kordon_objects::time::rfc3339_micros(source.end_us)
            )));
        }
        self.check_registered_object(&n.site, &n.camera, &n.object_key, n.size_bytes, |u| {
            matches!(u, ObjectUser::Rendition { site, camera, source_sequence, profile }
                if *site == n.site && *camera == n.camera && *profile == n.profile
                    && u64::try_from(*source_sequence).ok() == Some(n.source_sequence))
        })
        .await?;
        self.index().register_rendition(n).await
    }

    /// Registers a snapshot after checking its object.
    pub async fn register_snapshot(
        &self,
        n: &NewSnapshot,
    ) -> Result<(Snapshot, bool), StorageError> {
        check_camera(&n.site, &n.camera)?;
        match n.kind {
            KIND_DETECTION if n.detection_id.is_empty() => {
                return Err(StorageError::invalid(
                    "detection_id: required for a detection snapshot",
                ));
            }
            KIND_THUMBNAIL if n.source_sequence == 0 => {
                return Err(StorageError::invalid(
                    "source_sequence: required for a thumbnail",
                ));
            }
            KIND_DETECTION | KIND_THUMBNAIL => {}
            _ => return Err(StorageError::invalid("kind: detection or thumbnail")),
        }
        if !n.content_type.starts_with("image/") {
            return Err(StorageError::invalid(
                "content_type: an image type, e.g. image/jpeg",
            ));
        }
        if n.size_bytes == 0 {
            return Err(StorageError::invalid("size_bytes: must be more than 0"));
        }
        self.check_registered_object(&n.site, &n.camera, &n.object_key, n.size_bytes, |u| {
            matches!(u, ObjectUser::Snapshot { site, camera }
                if *site == n.site && *camera == n.camera)
        })
        .await?;
        self.index().register_snapshot(n).await
    }

    /// A signed download URL of object `key` of `site` (renditions, snapshots) and its
    /// expiry (Unix seconds).
    pub fn object_url(&self, site: &str, key: &str, ttl: Duration) -> (String, i64) {
        let exp = crate::service::url_expiry(ttl);
        let token = self
            .playback_signer()
            .sign_object(Download::Object, site, key, exp);
        let path: Vec<String> = key
            .split('/')
            .map(|part| utf8_percent_encode(part, PATH_SEGMENT).to_string())
            .collect();
        let url = format!(
            "{}/v1/objects/{site}/{}?exp={exp}&token={token}",
            self.options().base_url,
            path.join("/")
        );
        (url, exp)
    }
}
