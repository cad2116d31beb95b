//! SQL of evidence bundles (see [`crate::evidence`]).

use kordon_objects::time::now_micros;
use sqlx::Row;

use super::{Index, dispatch, hash32, to_i64, to_u64};
use crate::StorageError;
use crate::evidence::{
    BUNDLE_PREFIX, Bundle, ExportRequest, STATE_BUILDING, STATE_FAILED, STATE_READY,
    reused_request_id,
};
use crate::viewer::Rendering;

macro_rules! bundle_columns {
    () => {
        "id, site, request_id, state, cameras, start_us, end_us, case_id, reason, recipient, \
         description, exported_by, created_at_us, completed_at_us, segment_count, gap_count, \
         object_key, size_bytes, sha256, manifest, manifest_sha256, signature, signing_key, error, \
         rendering"
    };
}

macro_rules! bundle_from_row {
    ($row:expr) => {{
        let r = &$row;
        let cameras: String = r.try_get("cameras")?;
        let opt_hash = |v: Option<Vec<u8>>, what: &str| -> Result<Option<[u8; 32]>, StorageError> {
            v.map(|v| hash32(v, what)).transpose()
        };
        Bundle {
            id: r.try_get("id")?,
            site: r.try_get("site")?,
            request_id: r.try_get("request_id")?,
            state: r.try_get("state")?,
            cameras: serde_json::from_str(&cameras)
                .map_err(|e| StorageError::Internal(format!("stored bundle cameras: {e}")))?,
            from_us: r.try_get("start_us")?,
            to_us: r.try_get("end_us")?,
            case_id: r.try_get("case_id")?,
            reason: r.try_get("reason")?,
            recipient: r.try_get("recipient")?,
            description: r.try_get("description")?,
            exported_by: r.try_get("exported_by")?,
            created_at_us: r.try_get("created_at_us")?,
            completed_at_us: r.try_get("completed_at_us")?,
            segment_count: to_u64(r.try_get("segment_count")?, "segment_count")?,
            gap_count: to_u64(r.try_get("gap_count")?, "gap_count")?,
            object_key: r.try_get("object_key")?,
            size_bytes: to_u64(r.try_get("size_bytes")?, "size_bytes")?,
            sha256: opt_hash(r.try_get("sha256")?, "sha256")?,
            manifest: r
                .try_get::<Option<Vec<u8>>, _>("manifest")?
                .unwrap_or_default(),
            manifest_sha256: opt_hash(r.try_get("manifest_sha256")?, "manifest_sha256")?,
            signature: r
                .try_get::<Option<Vec<u8>>, _>("signature")?
                .unwrap_or_default(),
            signing_key: r
                .try_get::<Option<Vec<u8>>, _>("signing_key")?
                .unwrap_or_default(),
            error: r.try_get("error")?,
            rendering: rendering_of(r.try_get("rendering")?)?,
        }
    }};
}

/// A bundle's stored rendering: JSON, or '' for originals only.
fn rendering_of(stored: String) -> Result<Option<Rendering>, StorageError> {
    if stored.is_empty() {
        return Ok(None);
    }
    serde_json::from_str(&stored)
        .map(Some)
        .map_err(|e| StorageError::Internal(format!("stored bundle rendering: {e}")))
}

impl Index {
    /// The bundle with `id`.
    pub async fn bundle(&self, id: &str) -> Result<Option<Bundle>, StorageError> {
        dispatch!(self, pool, _b => {
            let row = sqlx::query(concat!("SELECT ", bundle_columns!(), " FROM evidence_bundles WHERE id = $1"))
                .bind(id)
                .fetch_optional(pool)
                .await?;
            match row {
                Some(r) => Ok(Some(bundle_from_row!(r))),
                None => Ok(None),
            }
        })
    }

    /// Bundles of `site` (of `case_id`, when not empty), newest first, starting after
    /// `after` (the `(created_at_us, id)` of the last one of the previous page): at most
    /// `limit`. Manifests are left out (empty).
    pub async fn list_bundles(
        &self,
        site: &str,
        case_id: &str,
        after: Option<(i64, String)>,
        limit: u32,
    ) -> Result<Vec<Bundle>, StorageError> {
        let (after_us, after_id) = after.unwrap_or((i64::MAX, String::new()));
        dispatch!(self, pool, _b => {
            let rows = sqlx::query(concat!(
                "SELECT ", bundle_columns!(),
                " FROM evidence_bundles WHERE site = $1 AND ($2 = '' OR case_id = $2)",
                " AND (created_at_us < $3 OR (created_at_us = $3 AND ($4 = '' OR id < $4)))",
                " ORDER BY created_at_us DESC, id DESC LIMIT $5"
            ))
            .bind(site)
            .bind(case_id)
            .bind(after_us)
            .bind(&after_id)
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in rows {
                let mut b = bundle_from_row!(r);
                b.manifest = Vec::new();
                out.push(b);
            }
            Ok(out)
        })
    }

    async fn bundle_by_request(
        &self,
        site: &str,
        request_id: &str,
    ) -> Result<Option<Bundle>, StorageError> {
        dispatch!(self, pool, _b => {
            let row = sqlx::query(concat!(
                "SELECT ", bundle_columns!(),
                " FROM evidence_bundles WHERE site = $1 AND request_id = $2"
            ))
            .bind(site)
            .bind(request_id)
            .fetch_optional(pool)
            .await?;
            match row {
                Some(r) => Ok(Some(bundle_from_row!(r))),
                None => Ok(None),
            }
        })
    }

    /// Creates a bundle in state building for `req`, or returns the bundle of the same
    /// request id (`false`). A failed bundle of the same request id is started again. A
    /// request id names one export: a retry must be the same request by the same principal
    /// (see [`Bundle::same_request`]), or it is refused without saying what the first was.
    pub async fn create_bundle(&self, req: &ExportRequest) -> Result<(Bundle, bool), StorageError> {
        if !req.request_id.is_empty()
            && let Some(existing) = self.bundle_by_request(&req.site, &req.request_id).await?
        {
            if !existing.same_request(req) {
                return Err(reused_request_id(&req.request_id));
            }
            if existing.state != STATE_FAILED {
                return Ok((existing, false));
            }
            dispatch!(self, pool, _b => {
                sqlx::query(
                    "UPDATE evidence_bundles SET state = $2, error = '', created_at_us = $3 \
                     WHERE id = $1 AND state = $4",
                )
                .bind(&existing.id)
                .bind(STATE_BUILDING)
                .bind(now_micros())
                .bind(STATE_FAILED)
                .execute(pool)
                .await?;
                Ok::<_, StorageError>(())
            })?;
            let again = self
                .bundle(&existing.id)
                .await?
                .ok_or_else(|| StorageError::Internal("a restarted bundle vanished".into()))?;
            return Ok((again, true));
        }
        let id = uuid::Uuid::now_v7().to_string();
        // Without a client key, every export is its own bundle.
        let request_id = if req.request_id.is_empty() {
            id.clone()
        } else {
            req.request_id.clone()
        };
        let cameras = serde_json::to_string(&req.cameras)
            .map_err(|e| StorageError::Internal(format!("encoding cameras: {e}")))?;
        let object_key = format!("{BUNDLE_PREFIX}/{}/{id}.tar", req.site);
        let rendering = match &req.rendering {
            Some(r) => serde_json::to_string(r)
                .map_err(|e| StorageError::Internal(format!("encoding the rendering: {e}")))?,
            None => String::new(),
        };
        let inserted: Result<(), sqlx::Error> = dispatch!(self, pool, _b => {
            sqlx::query(concat!(
                "INSERT INTO evidence_bundles (", bundle_columns!(), ") VALUES \
                 ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, NULL, 0, 0, $14, 0, \
                 NULL, NULL, NULL, NULL, NULL, '', $15)"
            ))
            .bind(&id)
            .bind(&req.site)
            .bind(&request_id)
            .bind(STATE_BUILDING)
            .bind(&cameras)
            .bind(req.from_us)
            .bind(req.to_us)
            .bind(req.case_id.trim())
            .bind(req.reason.trim())
            .bind(req.recipient.trim())
            .bind(req.description.trim())
            .bind(&req.exported_by)
            .bind(now_micros())
            .bind(&object_key)
            .bind(&rendering)
            .execute(pool)
            .await
            .map(|_| ())
        });
        match inserted {
            Ok(()) => {}
            // A concurrent retry with the same key won the race.
            Err(e)
                if e.as_database_error()
                    .is_some_and(|d| d.is_unique_violation()) =>
            {
                if let Some(b) = self.bundle_by_request(&req.site, &request_id).await? {
                    if !b.same_request(req) {
                        return Err(reused_request_id(&request_id));
                    }
                    return Ok((b, false));
                }
                return Err(e.into());
            }
            Err(e) => return Err(e.into()),
        }
        let b = self
            .bundle(&id)
            .await?
            .ok_or_else(|| StorageError::Internal("a new bundle vanished".into()))?;
        Ok((b, true))
    }

    pub(crate) async fn finish_bundle(&self, b: &Bundle) -> Result<(), StorageError> {
        let seg = to_i64(b.segment_count, "segment_count")?;
        let gaps = to_i64(b.gap_count, "gap_count")?;
        let size = to_i64(b.size_bytes, "size_bytes")?;
        dispatch!(self, pool, _b => {
            sqlx::query(
                "UPDATE evidence_bundles SET state = $2, completed_at_us = $3, segment_count = $4, \
                 gap_count = $5, size_bytes = $6, sha256 = $7, manifest = $8, manifest_sha256 = $9, \
                 signature = $10, signing_key = $11, error = '' WHERE id = $1",
            )
            .bind(&b.id)
            .bind(STATE_READY)
            .bind(b.completed_at_us)
            .bind(seg)
            .bind(gaps)
            .bind(size)
            .bind(b.sha256.map(|h| h.to_vec()))
            .bind(&b.manifest)
            .bind(b.manifest_sha256.map(|h| h.to_vec()))
            .bind(&b.signature)
            .bind(&b.signing_key)
            .execute(pool)
            .await?;
            Ok(())
        })
    }

    pub(crate) async fn fail_bundle(&self, id: &str, error: &str) -> Result<(), StorageError> {
        dispatch!(self, pool, _b => {
            sqlx::query(
                "UPDATE evidence_bundles SET state = $2, completed_at_us = $3, error = $4 \
                 WHERE id = $1",
            )
            .bind(id)
            .bind(STATE_FAILED)
            .bind(now_micros())
            .bind(error)
            .execute(pool)
            .await?;
            Ok(())
        })
    }

    /// Marks bundles left building by a previous process as failed (their archive upload was
    /// aborted with the process); a retry with the same request id builds them again.
    pub async fn fail_interrupted_bundles(&self) -> Result<u64, StorageError> {
        dispatch!(self, pool, _b => {
            let done = sqlx::query(
                "UPDATE evidence_bundles SET state = $1, completed_at_us = $2, \
                 error = 'the storage service restarted while building this bundle; export again' \
                 WHERE state = $3",
            )
            .bind(STATE_FAILED)
            .bind(now_micros())
            .bind(STATE_BUILDING)
            .execute(pool)
            .await?;
            Ok(done.rows_affected())
        })
    }
}
