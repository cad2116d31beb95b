//! Renditions (lower-bitrate copies of one original segment, made by transcode) and snapshots
//! (stills: detection snapshots and timeline thumbnails). Both are copies, not evidence: they
//! are registered only after their object is found in the bucket with the stated size, are
//! idempotent, and are deleted by retention with the footage they belong to — but they are
//! not in the hash chain. Reads go through signed download URLs like evidence bundles.

use std::time::Duration;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use kordon_objects::time::now_micros;
use sqlx::Row;

use crate::StorageError;
use crate::index::{Index, ObjectUser, dispatch, hash32, to_i64, to_u64};
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
const KIND_THUMBNAIL: i32 = 2;

macro_rules! rendition_columns {
    () => {
        "site, camera, source_sequence, profile, start_us, end_us, codec, width, height, \
         bitrate_bps, object_key, size_bytes, sha256, job_id, registered_at_us"
    };
}

macro_rules! snapshot_columns {
    () => {
        "id, site, camera, kind, captured_at_us, content_type, width, height, size_bytes, \
         sha256, object_key, detection_id, source_sequence, registered_at_us"
    };
}

fn u32_of(v: i64, what: &str) -> Result<u32, StorageError> {
    u32::try_from(v).map_err(|_| StorageError::Internal(format!("stored {what} out of range")))
}

macro_rules! rendition_from_row {
    ($row:expr) => {{
        let r = &$row;
        Rendition {
            new: NewRendition {
                site: r.try_get("site")?,
                camera: r.try_get("camera")?,
                source_sequence: to_u64(r.try_get("source_sequence")?, "source_sequence")?,
                profile: r.try_get("profile")?,
                start_us: r.try_get("start_us")?,
                end_us: r.try_get("end_us")?,
                codec: i32::try_from(r.try_get::<i64, _>("codec")?)
                    .map_err(|_| StorageError::Internal("stored codec out of range".into()))?,
                width: u32_of(r.try_get("width")?, "width")?,
                height: u32_of(r.try_get("height")?, "height")?,
                bitrate_bps: to_u64(r.try_get("bitrate_bps")?, "bitrate_bps")?,
                object_key: r.try_get("object_key")?,
                size_bytes: to_u64(r.try_get("size_bytes")?, "size_bytes")?,
                sha256: hash32(r.try_get("sha256")?, "sha256")?,
                job_id: r.try_get("job_id")?,
            },
            registered_at_us: r.try_get("registered_at_us")?,
        }
    }};
}

macro_rules! snapshot_from_row {
    ($row:expr) => {{
        let r = &$row;
        Snapshot {
            id: r.try_get("id")?,
            new: NewSnapshot {
                site: r.try_get("site")?,
                camera: r.try_get("camera")?,
                kind: i32::try_from(r.try_get::<i64, _>("kind")?)
                    .map_err(|_| StorageError::Internal("stored kind out of range".into()))?,
                captured_at_us: r.try_get("captured_at_us")?,
                content_type: r.try_get("content_type")?,
                width: u32_of(r.try_get("width")?, "width")?,
                height: u32_of(r.try_get("height")?, "height")?,
                size_bytes: to_u64(r.try_get("size_bytes")?, "size_bytes")?,
                sha256: hash32(r.try_get("sha256")?, "sha256")?,
                object_key: r.try_get("object_key")?,
                detection_id: r.try_get("detection_id")?,
                source_sequence: to_u64(r.try_get("source_sequence")?, "source_sequence")?,
            },
            registered_at_us: r.try_get("registered_at_us")?,
        }
    }};
}

impl Index {
    async fn rendition(
        &self,
        site: &str,
        camera: &str,
        source_sequence: u64,
        profile: &str,
    ) -> Result<Option<Rendition>, StorageError> {
        let seq = to_i64(source_sequence, "source_sequence")?;
        dispatch!(self, pool, _b => {
            let row = sqlx::query(concat!(
                "SELECT ", rendition_columns!(), " FROM renditions WHERE site = $1 AND camera = $2 \
                 AND source_sequence = $3 AND profile = $4 AND deleted_at_us IS NULL"
            ))
            .bind(site)
            .bind(camera)
            .bind(seq)
            .bind(profile)
            .fetch_optional(pool)
            .await?;
            match row {
                Some(r) => Ok(Some(rendition_from_row!(r))),
                None => Ok(None),
            }
        })
    }

    /// Stores a rendition; `false` when the same one was already stored.
    pub async fn register_rendition(
        &self,
        n: &NewRendition,
    ) -> Result<(Rendition, bool), StorageError> {
        if let Some(existing) = self
            .rendition(&n.site, &n.camera, n.source_sequence, &n.profile)
            .await?
        {
            return same_or_conflict(existing, n);
        }
        let now = now_micros();
        let done: Result<_, sqlx::Error> = dispatch!(self, pool, _b => {
            sqlx::query(concat!(
                "INSERT INTO renditions (", rendition_columns!(), ") VALUES \
                 ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)"
            ))
            .bind(&n.site)
            .bind(&n.camera)
            .bind(to_i64(n.source_sequence, "source_sequence")?)
            .bind(&n.profile)
            .bind(n.start_us)
            .bind(n.end_us)
            .bind(i64::from(n.codec))
            .bind(i64::from(n.width))
            .bind(i64::from(n.height))
            .bind(to_i64(n.bitrate_bps, "bitrate_bps")?)
            .bind(&n.object_key)
            .bind(to_i64(n.size_bytes, "size_bytes")?)
            .bind(n.sha256.to_vec())
            .bind(&n.job_id)
            .bind(now)
            .execute(pool)
            .await
            .map(|_| ())
        });
        match done {
            Ok(_) => Ok((
                Rendition {
                    new: n.clone(),
                    registered_at_us: now,
                },
                true,
            )),
            Err(e)
                if e.as_database_error()
                    .is_some_and(|d| d.is_unique_violation()) =>
            {
                match self
                    .rendition(&n.site, &n.camera, n.source_sequence, &n.profile)
                    .await?
                {
                    Some(existing) => same_or_conflict(existing, n),
                    None => Err(StorageError::Contention(
                        "a rendition with this key was registered and deleted concurrently".into(),
                    )),
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Live renditions of a camera starting in `[from_us, to_us)`, by (start, sequence,
    /// profile), after the keyset `after`.
    pub async fn list_renditions(
        &self,
        w: CameraWindow<'_>,
        profile: &str,
        after: Option<(i64, u64, String)>,
        limit: u32,
    ) -> Result<Vec<Rendition>, StorageError> {
        let (a_start, a_seq, a_profile) = after.unwrap_or((i64::MIN, 0, String::new()));
        let a_seq = to_i64(a_seq, "page token")?;
        dispatch!(self, pool, _b => {
            let rows = sqlx::query(concat!(
                "SELECT ", rendition_columns!(), " FROM renditions WHERE site = $1 AND camera = $2 \
                 AND start_us >= $3 AND start_us < $4 AND deleted_at_us IS NULL \
                 AND ($5 = '' OR profile = $5) \
                 AND (start_us > $6 OR (start_us = $6 AND (source_sequence > $7 OR \
                      (source_sequence = $7 AND profile > $8)))) \
                 ORDER BY start_us, source_sequence, profile LIMIT $9"
            ))
            .bind(w.site)
            .bind(w.camera)
            .bind(w.from_us)
            .bind(w.to_us)
            .bind(profile)
            .bind(a_start)
            .bind(a_seq)
            .bind(&a_profile)
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in rows {
                out.push(rendition_from_row!(r));
            }
            Ok(out)
        })
    }

    pub async fn snapshot(&self, id: &str) -> Result<Option<Snapshot>, StorageError> {
        dispatch!(self, pool, _b => {
            let row = sqlx::query(concat!(
                "SELECT ", snapshot_columns!(), " FROM snapshots WHERE id = $1 AND deleted_at_us IS NULL"
            ))
            .bind(id)
            .fetch_optional(pool)
            .await?;
            match row {
                Some(r) => Ok(Some(snapshot_from_row!(r))),
                None => Ok(None),
            }
        })
    }

    async fn snapshot_by_object(
        &self,
        site: &str,
        key: &str,
    ) -> Result<Option<Snapshot>, StorageError> {
        dispatch!(self, pool, _b => {
            let row = sqlx::query(concat!(
                "SELECT ", snapshot_columns!(), " FROM snapshots WHERE site = $1 AND object_key = $2"
            ))
            .bind(site)
            .bind(key)
            .fetch_optional(pool)
            .await?;
            match row {
                Some(r) => Ok(Some(snapshot_from_row!(r))),
                None => Ok(None),
            }
        })
    }

    /// Stores a snapshot; `false` when the same object was already registered.
    pub async fn register_snapshot(
        &self,
        n: &NewSnapshot,
    ) -> Result<(Snapshot, bool), StorageError> {
        if let Some(existing) = self.snapshot_by_object(&n.site, &n.object_key).await? {
            return same_snapshot_or_conflict(existing, n);
        }
        let id = uuid::Uuid::now_v7().to_string();
        let now = now_micros();
        let done: Result<_, sqlx::Error> = dispatch!(self, pool, _b => {
            sqlx::query(concat!(
                "INSERT INTO snapshots (", snapshot_columns!(), ") VALUES \
                 ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
            ))
            .bind(&id)
            .bind(&n.site)
            .bind(&n.camera)
            .bind(i64::from(n.kind))
            .bind(n.captured_at_us)
            .bind(&n.content_type)
            .bind(i64::from(n.width))
            .bind(i64::from(n.height))
            .bind(to_i64(n.size_bytes, "size_bytes")?)
            .bind(n.sha256.to_vec())
            .bind(&n.object_key)
            .bind(&n.detection_id)
            .bind(to_i64(n.source_sequence, "source_sequence")?)
            .bind(now)
            .execute(pool)
            .await
            .map(|_| ())
        });
        match done {
            Ok(_) => Ok((
                Snapshot {
                    id,
                    new: n.clone(),
                    registered_at_us: now,
                },
                true,
            )),
            Err(e)
                if e.as_database_error()
                    .is_some_and(|d| d.is_unique_violation()) =>
            {
                match self.snapshot_by_object(&n.site, &n.object_key).await? {
                    Some(existing) => same_snapshot_or_conflict(existing, n),
                    None => Err(e.into()),
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Live snapshots of a camera captured in `[from_us, to_us)`, by (time, id), after the
    /// keyset `after`; `kind` 0 means both kinds.
    pub async fn list_snapshots(
        &self,
        w: CameraWindow<'_>,
        kind: i32,
        after: Option<(i64, String)>,
        limit: u32,
    ) -> Result<Vec<Snapshot>, StorageError> {
        let (a_time, a_id) = after.unwrap_or((i64::MIN, String::new()));
        dispatch!(self, pool, _b => {
            let rows = sqlx::query(concat!(
                "SELECT ", snapshot_columns!(), " FROM snapshots WHERE site = $1 AND camera = $2 \
                 AND captured_at_us >= $3 AND captured_at_us < $4 AND deleted_at_us IS NULL \
                 AND ($5 = 0 OR kind = $5) \
                 AND (captured_at_us > $6 OR (captured_at_us = $6 AND id > $7)) \
                 ORDER BY captured_at_us, id LIMIT $8"
            ))
            .bind(w.site)
            .bind(w.camera)
            .bind(w.from_us)
            .bind(w.to_us)
            .bind(i64::from(kind))
            .bind(a_time)
            .bind(&a_id)
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in rows {
                out.push(snapshot_from_row!(r));
            }
            Ok(out)
        })
    }

    /// Live renditions of a segment and snapshots made from it (retention deletes them with
    /// the segment): their object keys.
    pub async fn copies_of_segment(
        &self,
        site: &str,
        camera: &str,
        sequence: u64,
    ) -> Result<Vec<String>, StorageError> {
        let seq = to_i64(sequence, "sequence")?;
        dispatch!(self, pool, _b => {
            let rows = sqlx::query(
                "SELECT object_key FROM renditions WHERE site = $1 AND camera = $2 \
                 AND source_sequence = $3 AND deleted_at_us IS NULL \
                 UNION ALL SELECT object_key FROM snapshots WHERE site = $1 AND camera = $2 \
                 AND kind = $4 AND source_sequence = $3 AND deleted_at_us IS NULL",
            )
            .bind(site)
            .bind(camera)
            .bind(seq)
            .bind(i64::from(KIND_THUMBNAIL))
            .fetch_all(pool)
            .await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in rows {
                out.push(r.try_get("object_key")?);
            }
            Ok(out)
        })
    }

    /// Marks the copies of a segment deleted (after their objects were deleted).
    pub async fn mark_copies_deleted(
        &self,
        site: &str,
        camera: &str,
        sequence: u64,
        at_us: i64,
    ) -> Result<(), StorageError> {
        let seq = to_i64(sequence, "sequence")?;
        dispatch!(self, pool, _b => {
            sqlx::query(
                "UPDATE renditions SET deleted_at_us = $4 WHERE site = $1 AND camera = $2 \
                 AND source_sequence = $3 AND deleted_at_us IS NULL",
            )
            .bind(site)
            .bind(camera)
            .bind(seq)
            .bind(at_us)
            .execute(pool)
            .await?;
            sqlx::query(
                "UPDATE snapshots SET deleted_at_us = $4 WHERE site = $1 AND camera = $2 \
                 AND kind = $5 AND source_sequence = $3 AND deleted_at_us IS NULL",
            )
            .bind(site)
            .bind(camera)
            .bind(seq)
            .bind(at_us)
            .bind(i64::from(KIND_THUMBNAIL))
            .execute(pool)
            .await?;
            Ok(())
        })
    }
}

fn same_or_conflict(
    existing: Rendition,
    n: &NewRendition,
) -> Result<(Rendition, bool), StorageError> {
    if existing.new == *n {
        Ok((existing, false))
    } else {
        Err(StorageError::AlreadyExists(format!(
            "rendition `{}` of {}/{} segment {} is already registered with other fields \
             (object `{}`)",
            n.profile, n.site, n.camera, n.source_sequence, existing.new.object_key
        )))
    }
}

fn same_snapshot_or_conflict(
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

fn valid_profile(p: &str) -> Result<(), StorageError> {
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
