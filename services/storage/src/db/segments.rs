//! SQL of segments, gaps and chain heads: registration (idempotent, gapless per-camera
//! sequences; see [`crate::index`]) and the reads over them.

use std::time::Duration;

use kordon_objects::time::now_micros;
use sqlx::Row;

use super::{Index, dispatch, hash32, to_i64, to_u32, to_u64};
use crate::StorageError;
use crate::chain::{ChainRecord, RecordKind, ZERO_HASH};
use crate::index::{
    ChainBatch, ChainHead, GapRecord, MAX_SEGMENT_US, NewGap, NewSegment, ObjectUser, Registered,
    SegmentRecord,
};

/// Attempts of one registration before giving up under contention.
const MAX_ATTEMPTS: u32 = 20;

/// The outcome of one registration attempt.
enum Attempt {
    /// Another writer got there first; start again.
    Conflict,
    Failed(StorageError),
}

fn is_conflict(e: &sqlx::Error) -> bool {
    match e.as_database_error() {
        Some(d) => {
            d.is_unique_violation()
                || matches!(
                    d.code().as_deref(),
                    // PostgreSQL serialization failure and deadlock; SQLite BUSY and LOCKED.
                    Some("40001" | "40P01" | "5" | "6" | "517")
                )
        }
        None => false,
    }
}

impl From<sqlx::Error> for Attempt {
    fn from(e: sqlx::Error) -> Self {
        if is_conflict(&e) {
            Attempt::Conflict
        } else {
            Attempt::Failed(e.into())
        }
    }
}

impl From<StorageError> for Attempt {
    fn from(e: StorageError) -> Self {
        Attempt::Failed(e)
    }
}

macro_rules! segment_columns {
    () => {
        "site, camera, sequence, start_us, end_us, size_bytes, sha256, init_size, codec, width, \
         height, object_key, ingest_replica, prev_hash, record_hash, registered_at_us, \
         deleted_at_us"
    };
}

macro_rules! gap_columns {
    () => {
        "site, camera, sequence, start_us, end_us, reason, detail, ingest_replica, prev_hash, \
         record_hash, registered_at_us"
    };
}

macro_rules! segment_from_row {
    ($row:expr) => {{
        let r = &$row;
        SegmentRecord {
            site: r.try_get("site")?,
            camera: r.try_get("camera")?,
            sequence: to_u64(r.try_get("sequence")?, "sequence")?,
            start_us: r.try_get("start_us")?,
            end_us: r.try_get("end_us")?,
            size_bytes: to_u64(r.try_get("size_bytes")?, "size")?,
            sha256: hash32(r.try_get("sha256")?, "sha256")?,
            init_size: to_u64(r.try_get("init_size")?, "init_size")?,
            codec: i32::try_from(r.try_get::<i64, _>("codec")?)
                .map_err(|_| StorageError::Internal("stored codec out of range".into()))?,
            width: to_u32(r.try_get("width")?, "width")?,
            height: to_u32(r.try_get("height")?, "height")?,
            object_key: r.try_get("object_key")?,
            ingest_replica: r.try_get("ingest_replica")?,
            prev_hash: hash32(r.try_get("prev_hash")?, "prev_hash")?,
            record_hash: hash32(r.try_get("record_hash")?, "record_hash")?,
            registered_at_us: r.try_get("registered_at_us")?,
            deleted_at_us: r.try_get("deleted_at_us")?,
        }
    }};
}

macro_rules! gap_from_row {
    ($row:expr) => {{
        let r = &$row;
        GapRecord {
            site: r.try_get("site")?,
            camera: r.try_get("camera")?,
            sequence: to_u64(r.try_get("sequence")?, "sequence")?,
            start_us: r.try_get("start_us")?,
            end_us: r.try_get("end_us")?,
            reason: to_u32(r.try_get("reason")?, "reason")?,
            detail: r.try_get("detail")?,
            ingest_replica: r.try_get("ingest_replica")?,
            prev_hash: hash32(r.try_get("prev_hash")?, "prev_hash")?,
            record_hash: hash32(r.try_get("record_hash")?, "record_hash")?,
            registered_at_us: r.try_get("registered_at_us")?,
        }
    }};
}

/// What a registration appends to a chain.
enum NewRecord<'a> {
    Segment(&'a NewSegment),
    Gap(&'a NewGap),
}

impl NewRecord<'_> {
    fn site_camera(&self) -> (&str, &str) {
        match self {
            NewRecord::Segment(s) => (&s.site, &s.camera),
            NewRecord::Gap(g) => (&g.site, &g.camera),
        }
    }

    fn end_us(&self) -> i64 {
        match self {
            NewRecord::Segment(s) => s.end_us,
            NewRecord::Gap(g) => g.end_us,
        }
    }

    fn chain_record(&self, sequence: u64, prev_hash: [u8; 32]) -> ChainRecord {
        let mut r = match self {
            NewRecord::Segment(s) => ChainRecord {
                kind: RecordKind::Segment,
                site: s.site.clone(),
                camera: s.camera.clone(),
                sequence,
                start_us: s.start_us,
                end_us: s.end_us,
                size_bytes: s.size_bytes,
                sha256: s.sha256,
                object_key: s.object_key.clone(),
                gap_reason: 0,
                prev_hash,
                record_hash: ZERO_HASH,
            },
            NewRecord::Gap(g) => ChainRecord {
                kind: RecordKind::Gap,
                site: g.site.clone(),
                camera: g.camera.clone(),
                sequence,
                start_us: g.start_us,
                end_us: g.end_us,
                size_bytes: 0,
                sha256: [0; 32],
                object_key: String::new(),
                gap_reason: g.reason,
                prev_hash,
                record_hash: ZERO_HASH,
            },
        };
        r.record_hash = r.compute_hash();
        r
    }
}

impl Index {
    /// Registers a segment; see the module docs for idempotency and ordering.
    pub async fn register_segment(
        &self,
        s: &NewSegment,
    ) -> Result<Registered<SegmentRecord>, StorageError> {
        for attempt in 0..MAX_ATTEMPTS {
            if let Some(existing) = self.segment_by_hash(&s.site, &s.camera, &s.sha256).await? {
                return if existing.same_registration(s) {
                    Ok(Registered {
                        record: existing,
                        created: false,
                    })
                } else {
                    Err(StorageError::AlreadyExists(format!(
                        "segment with sha256 {} is already registered as sequence {} with a \
                         different time range, size or object key",
                        hex::encode(s.sha256),
                        existing.sequence
                    )))
                };
            }
            match self.append(NewRecord::Segment(s)).await {
                Ok(seq) => {
                    let record = self
                        .segment(&s.site, &s.camera, seq)
                        .await?
                        .ok_or_else(|| {
                            StorageError::Internal("registered segment vanished".into())
                        })?;
                    return Ok(Registered {
                        record,
                        created: true,
                    });
                }
                Err(Attempt::Conflict) => backoff(attempt).await,
                Err(Attempt::Failed(e)) => return Err(e),
            }
        }
        Err(StorageError::Contention(format!(
            "could not register on camera {}/{} after {MAX_ATTEMPTS} attempts; retry",
            s.site, s.camera
        )))
    }

    /// Registers a gap; idempotent by (site, camera, start).
    pub async fn register_gap(&self, g: &NewGap) -> Result<Registered<GapRecord>, StorageError> {
        for attempt in 0..MAX_ATTEMPTS {
            if let Some(existing) = self.gap_by_start(&g.site, &g.camera, g.start_us).await? {
                return if existing.same_registration(g) {
                    Ok(Registered {
                        record: existing,
                        created: false,
                    })
                } else {
                    Err(StorageError::AlreadyExists(format!(
                        "a gap starting at {} is already registered as sequence {} with a \
                         different end or reason",
                        kordon_objects::time::rfc3339_micros(g.start_us),
                        existing.sequence
                    )))
                };
            }
            match self.append(NewRecord::Gap(g)).await {
                Ok(seq) => {
                    let record = self
                        .gap(&g.site, &g.camera, seq)
                        .await?
                        .ok_or_else(|| StorageError::Internal("registered gap vanished".into()))?;
                    return Ok(Registered {
                        record,
                        created: true,
                    });
                }
                Err(Attempt::Conflict) => backoff(attempt).await,
                Err(Attempt::Failed(e)) => return Err(e),
            }
        }
        Err(StorageError::Contention(format!(
            "could not register on camera {}/{} after {MAX_ATTEMPTS} attempts; retry",
            g.site, g.camera
        )))
    }

    /// One attempt to append `rec` to its camera's chain; returns its sequence.
    async fn append(&self, rec: NewRecord<'_>) -> Result<u64, Attempt> {
        let (site, camera) = rec.site_camera();
        let now = now_micros();
        dispatch!(self, pool, begin => {
            let mut tx = pool.begin_with(begin).await?;
            let head = sqlx::query(
                "SELECT head_sequence, head_hash, recorded_until_us FROM chain_heads \
                 WHERE site = $1 AND camera = $2",
            )
            .bind(site)
            .bind(camera)
            .fetch_optional(&mut *tx)
            .await?;
            let (prev_seq, prev_hash, until) = match head {
                Some(row) => (
                    to_u64(row.try_get("head_sequence")?, "head_sequence")?,
                    hash32(row.try_get("head_hash")?, "head_hash")?,
                    row.try_get::<i64, _>("recorded_until_us")?,
                ),
                None => (0, ZERO_HASH, i64::MIN),
            };
            let seq = prev_seq + 1;
            let seq_i = to_i64(seq, "sequence")?;
            let chained = rec.chain_record(seq, prev_hash);
            match &rec {
                NewRecord::Segment(s) => {
                    sqlx::query(concat!(
                        "INSERT INTO segments (", segment_columns!(), ") VALUES ",
                        "($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, NULL)"
                    ))
                    .bind(&s.site)
                    .bind(&s.camera)
                    .bind(seq_i)
                    .bind(s.start_us)
                    .bind(s.end_us)
                    .bind(to_i64(s.size_bytes, "size_bytes")?)
                    .bind(s.sha256.to_vec())
                    .bind(to_i64(s.init_size, "init_size")?)
                    .bind(i64::from(s.codec))
                    .bind(i64::from(s.width))
                    .bind(i64::from(s.height))
                    .bind(&s.object_key)
                    .bind(&s.ingest_replica)
                    .bind(prev_hash.to_vec())
                    .bind(chained.record_hash.to_vec())
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                }
                NewRecord::Gap(g) => {
                    sqlx::query(concat!(
                        "INSERT INTO gaps (", gap_columns!(), ") VALUES ",
                        "($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
                    ))
                    .bind(&g.site)
                    .bind(&g.camera)
                    .bind(seq_i)
                    .bind(g.start_us)
                    .bind(g.end_us)
                    .bind(i64::from(g.reason))
                    .bind(&g.detail)
                    .bind(&g.ingest_replica)
                    .bind(prev_hash.to_vec())
                    .bind(chained.record_hash.to_vec())
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                }
            }
            let until = until.max(rec.end_us());
            if prev_seq == 0 {
                sqlx::query(
                    "INSERT INTO chain_heads (site, camera, head_sequence, head_hash, \
                     recorded_until_us) VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(site)
                .bind(camera)
                .bind(seq_i)
                .bind(chained.record_hash.to_vec())
                .bind(until)
                .execute(&mut *tx)
                .await?;
            } else {
                let moved = sqlx::query(
                    "UPDATE chain_heads SET head_sequence = $3, head_hash = $4, \
                     recorded_until_us = $5 \
                     WHERE site = $1 AND camera = $2 AND head_sequence = $6",
                )
                .bind(site)
                .bind(camera)
                .bind(seq_i)
                .bind(chained.record_hash.to_vec())
                .bind(until)
                .bind(to_i64(prev_seq, "sequence")?)
                .execute(&mut *tx)
                .await?;
                if moved.rows_affected() != 1 {
                    return Err(Attempt::Conflict);
                }
            }
            tx.commit().await?;
            Ok(seq)
        })
    }

    /// Every record (segment, rendition or snapshot, deleted or not) that names `key`.
    pub async fn object_users(&self, key: &str) -> Result<Vec<ObjectUser>, StorageError> {
        dispatch!(self, pool, _b => {
            let rows = sqlx::query(
                "SELECT 's' AS kind, site, camera, sha256, 0 AS source_sequence, '' AS profile \
                 FROM segments WHERE object_key = $1 \
                 UNION ALL SELECT 'r', site, camera, sha256, source_sequence, profile \
                 FROM renditions WHERE object_key = $1 \
                 UNION ALL SELECT 'p', site, camera, sha256, 0, '' \
                 FROM snapshots WHERE object_key = $1",
            )
            .bind(key)
            .fetch_all(pool)
            .await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in rows {
                let kind: String = r.try_get("kind")?;
                let site: String = r.try_get("site")?;
                let camera: String = r.try_get("camera")?;
                out.push(match kind.as_str() {
                    "s" => ObjectUser::Segment { site, camera, sha256: r.try_get("sha256")? },
                    "r" => ObjectUser::Rendition {
                        site,
                        camera,
                        source_sequence: r.try_get("source_sequence")?,
                        profile: r.try_get("profile")?,
                    },
                    _ => ObjectUser::Snapshot { site, camera },
                });
            }
            Ok(out)
        })
    }

    pub async fn segment_by_hash(
        &self,
        site: &str,
        camera: &str,
        sha256: &[u8; 32],
    ) -> Result<Option<SegmentRecord>, StorageError> {
        dispatch!(self, pool, _b => {
            let row = sqlx::query(concat!(
                "SELECT ", segment_columns!(),
                " FROM segments WHERE site = $1 AND camera = $2 AND sha256 = $3"
            ))
            .bind(site)
            .bind(camera)
            .bind(sha256.to_vec())
            .fetch_optional(pool)
            .await?;
            match row {
                Some(r) => Ok(Some(segment_from_row!(r))),
                None => Ok(None),
            }
        })
    }

    /// The segment with `sequence` (also a tombstone), if that record is a segment.
    pub async fn segment(
        &self,
        site: &str,
        camera: &str,
        sequence: u64,
    ) -> Result<Option<SegmentRecord>, StorageError> {
        let seq = to_i64(sequence, "sequence")?;
        dispatch!(self, pool, _b => {
            let row = sqlx::query(concat!(
                "SELECT ", segment_columns!(),
                " FROM segments WHERE site = $1 AND camera = $2 AND sequence = $3"
            ))
            .bind(site)
            .bind(camera)
            .bind(seq)
            .fetch_optional(pool)
            .await?;
            match row {
                Some(r) => Ok(Some(segment_from_row!(r))),
                None => Ok(None),
            }
        })
    }

    async fn gap_by_start(
        &self,
        site: &str,
        camera: &str,
        start_us: i64,
    ) -> Result<Option<GapRecord>, StorageError> {
        dispatch!(self, pool, _b => {
            let row = sqlx::query(concat!(
                "SELECT ", gap_columns!(),
                " FROM gaps WHERE site = $1 AND camera = $2 AND start_us = $3"
            ))
            .bind(site)
            .bind(camera)
            .bind(start_us)
            .fetch_optional(pool)
            .await?;
            match row {
                Some(r) => Ok(Some(gap_from_row!(r))),
                None => Ok(None),
            }
        })
    }

    pub async fn gap(
        &self,
        site: &str,
        camera: &str,
        sequence: u64,
    ) -> Result<Option<GapRecord>, StorageError> {
        let seq = to_i64(sequence, "sequence")?;
        dispatch!(self, pool, _b => {
            let row = sqlx::query(concat!(
                "SELECT ", gap_columns!(),
                " FROM gaps WHERE site = $1 AND camera = $2 AND sequence = $3"
            ))
            .bind(site)
            .bind(camera)
            .bind(seq)
            .fetch_optional(pool)
            .await?;
            match row {
                Some(r) => Ok(Some(gap_from_row!(r))),
                None => Ok(None),
            }
        })
    }

    /// For each of `times_us` (ascending), the sequence of the live segment whose
    /// `[start, end)` holds it, or 0. One indexed lookup per segment found, not per time:
    /// consecutive times in one segment reuse it.
    pub async fn segments_at(
        &self,
        site: &str,
        camera: &str,
        times_us: &[i64],
    ) -> Result<Vec<u64>, StorageError> {
        debug_assert!(times_us.is_sorted());
        dispatch!(self, pool, _b => {
            let mut out = Vec::with_capacity(times_us.len());
            let mut last: Option<(u64, i64, i64)> = None;
            for &t in times_us {
                if let Some((seq, start, end)) = last
                    && (start..end).contains(&t)
                {
                    out.push(seq);
                    continue;
                }
                let row = sqlx::query(
                    "SELECT sequence, start_us, end_us FROM segments \
                     WHERE site = $1 AND camera = $2 AND start_us <= $3 AND start_us > $4 \
                     AND end_us > $3 AND deleted_at_us IS NULL \
                     ORDER BY start_us DESC, sequence DESC LIMIT 1",
                )
                .bind(site)
                .bind(camera)
                .bind(t)
                .bind(t.saturating_sub(MAX_SEGMENT_US))
                .fetch_optional(pool)
                .await?;
                match row {
                    Some(r) => {
                        let seq = to_u64(r.try_get("sequence")?, "sequence")?;
                        last = Some((seq, r.try_get("start_us")?, r.try_get("end_us")?));
                        out.push(seq);
                    }
                    None => out.push(0),
                }
            }
            Ok(out)
        })
    }

    /// The camera's chain head, or `None` when it has no records.
    pub async fn chain_head(
        &self,
        site: &str,
        camera: &str,
    ) -> Result<Option<ChainHead>, StorageError> {
        dispatch!(self, pool, _b => {
            let row = sqlx::query(
                "SELECT head_sequence, head_hash, recorded_until_us FROM chain_heads \
                 WHERE site = $1 AND camera = $2",
            )
            .bind(site)
            .bind(camera)
            .fetch_optional(pool)
            .await?;
            match row {
                Some(r) => Ok(Some(ChainHead {
                    sequence: to_u64(r.try_get("head_sequence")?, "head_sequence")?,
                    hash: hash32(r.try_get("head_hash")?, "head_hash")?,
                    recorded_until_us: r.try_get("recorded_until_us")?,
                })),
                None => Ok(None),
            }
        })
    }

    /// Cameras of `site` that have records, by name.
    pub async fn cameras(&self, site: &str) -> Result<Vec<String>, StorageError> {
        dispatch!(self, pool, _b => {
            let rows = sqlx::query("SELECT camera FROM chain_heads WHERE site = $1 ORDER BY camera")
                .bind(site)
                .fetch_all(pool)
                .await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in rows {
                out.push(r.try_get("camera")?);
            }
            Ok(out)
        })
    }

    /// Segments overlapping `[from_us, to_us)`, by start then sequence, after `after`
    /// (a `(start_us, sequence)` cursor), at most `limit`. Tombstones (objects deleted by
    /// retention) are left out.
    pub async fn list_segments(
        &self,
        site: &str,
        camera: &str,
        from_us: i64,
        to_us: i64,
        after: Option<(i64, u64)>,
        limit: u32,
    ) -> Result<Vec<SegmentRecord>, StorageError> {
        let (after_start, after_seq) = match after {
            Some((s, q)) => (s, to_i64(q, "page token")?),
            None => (i64::MIN, 0),
        };
        dispatch!(self, pool, _b => {
            let rows = sqlx::query(concat!(
                "SELECT ", segment_columns!(), " FROM segments \
                 WHERE site = $1 AND camera = $2 AND start_us >= $3 AND start_us < $4 \
                 AND end_us > $5 AND (start_us > $6 OR (start_us = $6 AND sequence > $7)) \
                 AND deleted_at_us IS NULL \
                 ORDER BY start_us, sequence LIMIT $8"
            ))
            .bind(site)
            .bind(camera)
            .bind(from_us.saturating_sub(MAX_SEGMENT_US))
            .bind(to_us)
            .bind(from_us)
            .bind(after_start)
            .bind(after_seq)
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in rows {
                out.push(segment_from_row!(r));
            }
            Ok(out)
        })
    }

    /// What a playlist needs of the segments overlapping `[from_us, to_us)` (by start, at
    /// most `limit`). The database aggregates the five integer columns into one value (see
    /// [`unpack_playlist`] and [`playlist_from_arrays`]): one row instead of thousands keeps a
    /// day of segments (14,400) to a few milliseconds, where per-row decoding alone took tens.
    /// On PostgreSQL the rows come from an index-only scan of `segments_live_by_start`.
    pub async fn playlist_segments(
        &self,
        site: &str,
        camera: &str,
        from_us: i64,
        to_us: i64,
        limit: u32,
    ) -> Result<Vec<crate::playback::PlaylistSegment>, StorageError> {
        const INNER: &str = "SELECT sequence, start_us, end_us, size_bytes, init_size \
             FROM segments WHERE site = $1 AND camera = $2 AND start_us >= $3 \
             AND start_us < $4 AND end_us > $5 AND deleted_at_us IS NULL \
             ORDER BY start_us, sequence LIMIT $6";
        match self {
            Index::Sqlite(pool) => unpack_playlist(
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT group_concat(printf('%d,%d,%d,%d,%d', sequence, start_us, end_us, \
                     size_bytes, init_size), ';' ORDER BY start_us, sequence) AS v \
                     FROM ({INNER})"
                )))
                .bind(site)
                .bind(camera)
                .bind(from_us.saturating_sub(MAX_SEGMENT_US))
                .bind(to_us)
                .bind(from_us)
                .bind(i64::from(limit))
                .fetch_one(pool)
                .await?
                .try_get("v")?,
            ),
            Index::Postgres(pool) => {
                let row = sqlx::query(sqlx::AssertSqlSafe(pg_playlist_arrays(INNER)))
                    .bind(site)
                    .bind(camera)
                    .bind(from_us.saturating_sub(MAX_SEGMENT_US))
                    .bind(to_us)
                    .bind(from_us)
                    .bind(i64::from(limit))
                    .fetch_one(pool)
                    .await?;
                playlist_from_arrays(&row)
            }
        }
    }

    /// Gaps overlapping `[from_us, to_us)`, by start.
    pub async fn list_gaps(
        &self,
        site: &str,
        camera: &str,
        from_us: i64,
        to_us: i64,
    ) -> Result<Vec<GapRecord>, StorageError> {
        dispatch!(self, pool, _b => {
            let rows = sqlx::query(concat!(
                "SELECT ", gap_columns!(), " FROM gaps \
                 WHERE site = $1 AND camera = $2 AND end_us > $3 AND start_us < $4 \
                 ORDER BY start_us, sequence"
            ))
            .bind(site)
            .bind(camera)
            .bind(from_us)
            .bind(to_us)
            .fetch_all(pool)
            .await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in rows {
                out.push(gap_from_row!(r));
            }
            Ok(out)
        })
    }

    /// Whether the camera has a segment or gap that starts before `t_us`.
    pub async fn recorded_before(
        &self,
        site: &str,
        camera: &str,
        t_us: i64,
    ) -> Result<bool, StorageError> {
        dispatch!(self, pool, _b => {
            let row = sqlx::query(
                "SELECT 1 AS x FROM segments WHERE site = $1 AND camera = $2 AND start_us < $3 \
                 UNION ALL \
                 SELECT 1 AS x FROM gaps WHERE site = $1 AND camera = $2 AND start_us < $3 \
                 LIMIT 1",
            )
            .bind(site)
            .bind(camera)
            .bind(t_us)
            .fetch_optional(pool)
            .await?;
            Ok(row.is_some())
        })
    }

    /// The lowest and highest sequence of the camera's records overlapping `[from_us, to_us)`.
    pub async fn sequence_span(
        &self,
        site: &str,
        camera: &str,
        from_us: i64,
        to_us: i64,
    ) -> Result<Option<(u64, u64)>, StorageError> {
        dispatch!(self, pool, _b => {
            let seg = sqlx::query(
                "SELECT MIN(sequence) AS lo, MAX(sequence) AS hi FROM segments \
                 WHERE site = $1 AND camera = $2 AND start_us >= $3 AND start_us < $4 \
                 AND end_us > $5",
            )
            .bind(site)
            .bind(camera)
            .bind(from_us.saturating_sub(MAX_SEGMENT_US))
            .bind(to_us)
            .bind(from_us)
            .fetch_one(pool)
            .await?;
            let gap = sqlx::query(
                "SELECT MIN(sequence) AS lo, MAX(sequence) AS hi FROM gaps \
                 WHERE site = $1 AND camera = $2 AND end_us > $3 AND start_us < $4",
            )
            .bind(site)
            .bind(camera)
            .bind(from_us)
            .bind(to_us)
            .fetch_one(pool)
            .await?;
            let mut span: Option<(i64, i64)> = None;
            for row in [seg, gap] {
                let lo: Option<i64> = row.try_get("lo")?;
                let hi: Option<i64> = row.try_get("hi")?;
                if let (Some(lo), Some(hi)) = (lo, hi) {
                    span = Some(match span {
                        None => (lo, hi),
                        Some((a, b)) => (a.min(lo), b.max(hi)),
                    });
                }
            }
            match span {
                Some((lo, hi)) => Ok(Some((to_u64(lo, "sequence")?, to_u64(hi, "sequence")?))),
                None => Ok(None),
            }
        })
    }

    /// The camera's records with sequences in `first..=last` (segments, tombstones included,
    /// and gaps), by sequence; `deleted` lists the tombstoned sequences.
    pub async fn chain_records(
        &self,
        site: &str,
        camera: &str,
        first: u64,
        last: u64,
    ) -> Result<ChainBatch, StorageError> {
        let (lo, hi) = (to_i64(first, "sequence")?, to_i64(last, "sequence")?);
        let (segments, gaps) = dispatch!(self, pool, _b => {
            let seg_rows = sqlx::query(concat!(
                "SELECT ", segment_columns!(), " FROM segments \
                 WHERE site = $1 AND camera = $2 AND sequence >= $3 AND sequence <= $4 \
                 ORDER BY sequence"
            ))
            .bind(site)
            .bind(camera)
            .bind(lo)
            .bind(hi)
            .fetch_all(pool)
            .await?;
            let gap_rows = sqlx::query(concat!(
                "SELECT ", gap_columns!(), " FROM gaps \
                 WHERE site = $1 AND camera = $2 AND sequence >= $3 AND sequence <= $4 \
                 ORDER BY sequence"
            ))
            .bind(site)
            .bind(camera)
            .bind(lo)
            .bind(hi)
            .fetch_all(pool)
            .await?;
            let mut segments = Vec::with_capacity(seg_rows.len());
            for r in seg_rows {
                segments.push(segment_from_row!(r));
            }
            let mut gaps = Vec::with_capacity(gap_rows.len());
            for r in gap_rows {
                gaps.push(gap_from_row!(r));
            }
            Ok::<_, StorageError>((segments, gaps))
        })?;
        let mut records: Vec<ChainRecord> = segments
            .iter()
            .map(SegmentRecord::chain_record)
            .chain(gaps.iter().map(GapRecord::chain_record))
            .collect();
        records.sort_by_key(|r| r.sequence);
        Ok(ChainBatch {
            records,
            segments,
            gap_count: gaps.len() as u64,
            gaps,
        })
    }

    /// Marks a segment's object as deleted by retention, keeping the record as the chain's
    /// tombstone. Returns false when it was already marked or does not exist.
    pub async fn mark_segment_deleted(
        &self,
        site: &str,
        camera: &str,
        sequence: u64,
        at_us: i64,
    ) -> Result<bool, StorageError> {
        let seq = to_i64(sequence, "sequence")?;
        dispatch!(self, pool, _b => {
            let done = sqlx::query(
                "UPDATE segments SET deleted_at_us = $4 \
                 WHERE site = $1 AND camera = $2 AND sequence = $3 AND deleted_at_us IS NULL",
            )
            .bind(site)
            .bind(camera)
            .bind(seq)
            .bind(at_us)
            .execute(pool)
            .await?;
            Ok(done.rows_affected() == 1)
        })
    }
}

async fn backoff(attempt: u32) {
    // 1, 2, 4, ... ms up to 64 ms, with jitter so racing writers spread out.
    let base = 1u64 << attempt.min(6);
    let jitter = rand::random::<u64>() % (base + 1);
    tokio::time::sleep(Duration::from_millis(base + jitter)).await;
}

/// The playlist items of a `sequence,start,end,size,init;...` aggregate (see
/// [`Index::playlist_segments`]); `None` (no rows) is no items.
pub(super) fn unpack_playlist(
    packed: Option<String>,
) -> Result<Vec<crate::playback::PlaylistSegment>, StorageError> {
    let Some(packed) = packed else {
        return Ok(Vec::new());
    };
    let bad = || StorageError::Internal("malformed playlist aggregate".into());
    let mut out = Vec::with_capacity(packed.len() / 48);
    for item in packed.split(';') {
        let mut f = item.split(',').map(|v| v.parse::<i64>().map_err(|_| bad()));
        let mut next = || f.next().ok_or_else(bad).and_then(|v| v);
        out.push(crate::playback::PlaylistSegment {
            sequence: to_u64(next()?, "sequence")?,
            start_us: next()?,
            end_us: next()?,
            size_bytes: to_u64(next()?, "size")?,
            init_size: to_u64(next()?, "init_size")?,
            discontinuity: false,
        });
    }
    Ok(out)
}

/// PostgreSQL's form of a playlist query: the rows of `inner` (`sequence, start_us, end_us,
/// size_bytes, init_size`, all `BIGINT`, in playlist order) as one row of five `BIGINT[]`
/// columns, which travel and decode in binary: no per-row text conversion in the database or
/// here, and no sort inside the aggregate (see [`playlist_from_arrays`] for the order).
pub(super) fn pg_playlist_arrays(inner: &str) -> String {
    format!(
        "SELECT array_agg(s.sequence) AS seq, array_agg(s.start_us) AS start_us, \
         array_agg(s.end_us) AS end_us, array_agg(s.size_bytes) AS size_bytes, \
         array_agg(s.init_size) AS init_size FROM ({inner}) s(sequence, start_us, end_us, \
         size_bytes, init_size)"
    )
}

/// The playlist items of a [`pg_playlist_arrays`] row; no rows is `NULL` arrays, no items.
/// The five arrays are aligned (one aggregation step fills all five per row). PostgreSQL
/// aggregates an ordered subquery in its order but does not promise to, so the items are
/// sorted here: already sorted, that is one pass.
pub(super) fn playlist_from_arrays(
    row: &sqlx::postgres::PgRow,
) -> Result<Vec<crate::playback::PlaylistSegment>, StorageError> {
    let column = |name: &str| -> Result<Vec<i64>, StorageError> {
        Ok(row
            .try_get::<Option<Vec<i64>>, _>(name)?
            .unwrap_or_default())
    };
    let (seq, start, end, size, init) = (
        column("seq")?,
        column("start_us")?,
        column("end_us")?,
        column("size_bytes")?,
        column("init_size")?,
    );
    let n = seq.len();
    if [start.len(), end.len(), size.len(), init.len()] != [n; 4] {
        return Err(StorageError::Internal(
            "misaligned playlist aggregate".into(),
        ));
    }
    let mut out = Vec::with_capacity(n);
    for ((((seq, start_us), end_us), size), init) in
        seq.into_iter().zip(start).zip(end).zip(size).zip(init)
    {
        out.push(crate::playback::PlaylistSegment {
            sequence: to_u64(seq, "sequence")?,
            start_us,
            end_us,
            size_bytes: to_u64(size, "size")?,
            init_size: to_u64(init, "init_size")?,
            discontinuity: false,
        });
    }
    out.sort_by_key(|s| (s.start_us, s.sequence));
    Ok(out)
}
