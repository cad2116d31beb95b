//! SQL of renditions and snapshots (see [`crate::media`]).

use kordon_objects::time::now_micros;
use sqlx::Row;

use super::{Index, dispatch, hash32, to_i64, to_u64};
use crate::StorageError;
use crate::index::MAX_SEGMENT_US;
use crate::media::{
    CameraWindow, KIND_THUMBNAIL, NewRendition, NewSnapshot, Rendition, Reregistration, Snapshot,
    same_or_conflict, same_snapshot_or_conflict,
};

macro_rules! rendition_columns {
    () => {
        "site, camera, source_sequence, profile, start_us, end_us, codec, width, height, \
         bitrate_bps, object_key, size_bytes, sha256, job_id, registered_at_us, init_size"
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
                init_size: to_u64(r.try_get("init_size")?, "init_size")?,
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
    /// The live rendition of `profile` of a camera's segment `source_sequence`.
    pub async fn rendition(
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

    /// Settles a registration of `n` over the stored `existing`: nothing new, or the init size
    /// of a rendition stored before it was recorded.
    async fn reregister_rendition(
        &self,
        existing: Rendition,
        n: &NewRendition,
    ) -> Result<(Rendition, bool), StorageError> {
        match same_or_conflict(existing, n)? {
            Reregistration::Same(r) => Ok((r, false)),
            Reregistration::AddInitSize(r) => {
                let seq = to_i64(n.source_sequence, "source_sequence")?;
                let init = to_i64(n.init_size, "init_size")?;
                dispatch!(self, pool, _b => {
                    sqlx::query(
                        "UPDATE renditions SET init_size = $5 WHERE site = $1 AND camera = $2 \
                         AND source_sequence = $3 AND profile = $4 AND init_size = 0 \
                         AND deleted_at_us IS NULL",
                    )
                    .bind(&n.site)
                    .bind(&n.camera)
                    .bind(seq)
                    .bind(&n.profile)
                    .bind(init)
                    .execute(pool)
                    .await?;
                    Ok::<_, StorageError>(())
                })?;
                tracing::info!(site = %n.site, camera = %n.camera, segment = n.source_sequence,
                               profile = %n.profile,
                               "rendition registered before init sizes were recorded: init size added");
                Ok((r, false))
            }
        }
    }

    /// Stores a rendition; `false` when the same one was already stored (a rendition stored
    /// before init sizes were recorded gets the one `n` states).
    pub async fn register_rendition(
        &self,
        n: &NewRendition,
    ) -> Result<(Rendition, bool), StorageError> {
        if let Some(existing) = self
            .rendition(&n.site, &n.camera, n.source_sequence, &n.profile)
            .await?
        {
            return self.reregister_rendition(existing, n).await;
        }
        let now = now_micros();
        let done: Result<_, sqlx::Error> = dispatch!(self, pool, _b => {
            sqlx::query(concat!(
                "INSERT INTO renditions (", rendition_columns!(), ") VALUES \
                 ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)"
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
            .bind(to_i64(n.init_size, "init_size")?)
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
                    Some(existing) => self.reregister_rendition(existing, n).await,
                    None => Err(StorageError::Contention(
                        "a rendition with this key was registered and deleted concurrently".into(),
                    )),
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The live renditions of `profile` overlapping `[from_us, to_us)` as playlist items
    /// (`sequence` is the source segment's), by (start, source sequence), at most `limit`.
    /// Rows stored before init sizes were recorded come with `init_size` 0.
    pub async fn rendition_playlist_segments(
        &self,
        site: &str,
        camera: &str,
        profile: &str,
        from_us: i64,
        to_us: i64,
        limit: u32,
    ) -> Result<Vec<crate::playback::PlaylistSegment>, StorageError> {
        // A rendition lies within its source segment, so it starts at most MAX_SEGMENT_US
        // before the window when it overlaps it: the bound keeps the start index useful.
        const INNER: &str = "SELECT source_sequence, start_us, end_us, size_bytes, init_size \
             FROM renditions WHERE site = $1 AND camera = $2 AND profile = $3 \
             AND start_us >= $4 AND start_us < $5 AND end_us > $6 AND deleted_at_us IS NULL \
             ORDER BY start_us, source_sequence LIMIT $7";
        let lower = from_us.saturating_sub(MAX_SEGMENT_US);
        match self {
            Index::Sqlite(pool) => super::segments::unpack_playlist(
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT group_concat(printf('%d,%d,%d,%d,%d', source_sequence, start_us, \
                     end_us, size_bytes, init_size), ';' ORDER BY start_us, source_sequence) \
                     AS v FROM ({INNER})"
                )))
                .bind(site)
                .bind(camera)
                .bind(profile)
                .bind(lower)
                .bind(to_us)
                .bind(from_us)
                .bind(i64::from(limit))
                .fetch_one(pool)
                .await?
                .try_get("v")?,
            ),
            Index::Postgres(pool) => {
                let row = sqlx::query(sqlx::AssertSqlSafe(super::segments::pg_playlist_arrays(
                    INNER,
                )))
                .bind(site)
                .bind(camera)
                .bind(profile)
                .bind(lower)
                .bind(to_us)
                .bind(from_us)
                .bind(i64::from(limit))
                .fetch_one(pool)
                .await?;
                super::segments::playlist_from_arrays(&row)
            }
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
