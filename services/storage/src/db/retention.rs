//! SQL of retention policies and legal holds (see [`crate::retention`]).

use kordon_objects::time::now_micros;
use sqlx::Row;

use super::{Index, dispatch};
use crate::StorageError;
use crate::retention::{HOLD_ACTIVE, HOLD_RELEASED, LegalHold, NewHold, RetentionPolicy};

macro_rules! hold_columns {
    () => {
        "id, site, request_id, start_us, end_us, state, case_id, reason, created_by, \
         created_at_us, released_by, released_at_us, release_reason"
    };
}

macro_rules! hold_from_row {
    ($row:expr) => {{
        let r = &$row;
        LegalHold {
            id: r.try_get("id")?,
            site: r.try_get("site")?,
            cameras: Vec::new(),
            start_us: r.try_get("start_us")?,
            end_us: r.try_get("end_us")?,
            state: i32::try_from(r.try_get::<i64, _>("state")?)
                .map_err(|_| StorageError::Internal("stored hold state out of range".into()))?,
            case_id: r.try_get("case_id")?,
            reason: r.try_get("reason")?,
            created_by: r.try_get("created_by")?,
            created_at_us: r.try_get("created_at_us")?,
            released_by: r.try_get("released_by")?,
            released_at_us: r.try_get("released_at_us")?,
            release_reason: r.try_get("release_reason")?,
        }
    }};
}

impl Index {
    /// The stored policy of exactly (site, camera); `camera` empty for the site default.
    pub async fn retention_policy(
        &self,
        site: &str,
        camera: &str,
    ) -> Result<Option<RetentionPolicy>, StorageError> {
        dispatch!(self, pool, _b => {
            let row = sqlx::query(
                "SELECT site, camera, retention_us, updated_at_us, updated_by \
                 FROM retention_policies WHERE site = $1 AND camera = $2",
            )
            .bind(site)
            .bind(camera)
            .fetch_optional(pool)
            .await?;
            match row {
                Some(r) => Ok(Some(RetentionPolicy {
                    site: r.try_get("site")?,
                    camera: r.try_get("camera")?,
                    retention_us: r.try_get("retention_us")?,
                    updated_at_us: r.try_get("updated_at_us")?,
                    updated_by: r.try_get("updated_by")?,
                })),
                None => Ok(None),
            }
        })
    }

    /// Sets (`Some`) or removes (`None`) the policy of (site, camera).
    pub async fn set_retention_policy(
        &self,
        site: &str,
        camera: &str,
        retention_us: Option<i64>,
        by: &str,
    ) -> Result<(), StorageError> {
        let now = now_micros();
        dispatch!(self, pool, _b => {
            match retention_us {
                Some(r) => {
                    sqlx::query(
                        "INSERT INTO retention_policies \
                         (site, camera, retention_us, updated_at_us, updated_by) \
                         VALUES ($1, $2, $3, $4, $5) \
                         ON CONFLICT (site, camera) DO UPDATE SET \
                         retention_us = excluded.retention_us, \
                         updated_at_us = excluded.updated_at_us, \
                         updated_by = excluded.updated_by",
                    )
                    .bind(site)
                    .bind(camera)
                    .bind(r)
                    .bind(now)
                    .bind(by)
                    .execute(pool)
                    .await?;
                }
                None => {
                    sqlx::query("DELETE FROM retention_policies WHERE site = $1 AND camera = $2")
                        .bind(site)
                        .bind(camera)
                        .execute(pool)
                        .await?;
                }
            }
            Ok(())
        })
    }

    /// Every (site, camera) that has records.
    pub async fn all_cameras(&self) -> Result<Vec<(String, String)>, StorageError> {
        dispatch!(self, pool, _b => {
            let rows = sqlx::query("SELECT site, camera FROM chain_heads ORDER BY site, camera")
                .fetch_all(pool)
                .await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in rows {
                out.push((r.try_get("site")?, r.try_get("camera")?));
            }
            Ok(out)
        })
    }

    async fn hold_cameras(&self, id: &str) -> Result<Vec<String>, StorageError> {
        dispatch!(self, pool, _b => {
            let rows = sqlx::query(
                "SELECT camera FROM legal_hold_cameras WHERE hold_id = $1 ORDER BY camera",
            )
            .bind(id)
            .fetch_all(pool)
            .await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in rows {
                out.push(r.try_get("camera")?);
            }
            Ok(out)
        })
    }

    /// The hold with `id`, with its cameras.
    pub async fn hold(&self, id: &str) -> Result<Option<LegalHold>, StorageError> {
        let hold = dispatch!(self, pool, _b => {
            let row = sqlx::query(concat!("SELECT ", hold_columns!(), " FROM legal_holds WHERE id = $1"))
                .bind(id)
                .fetch_optional(pool)
                .await?;
            match row {
                Some(r) => Ok::<_, StorageError>(Some(hold_from_row!(r))),
                None => Ok(None),
            }
        })?;
        match hold {
            Some(mut h) => {
                h.cameras = self.hold_cameras(&h.id).await?;
                Ok(Some(h))
            }
            None => Ok(None),
        }
    }

    async fn hold_by_request(
        &self,
        site: &str,
        request_id: &str,
    ) -> Result<Option<LegalHold>, StorageError> {
        let id: Option<String> = dispatch!(self, pool, _b => {
            let row = sqlx::query("SELECT id FROM legal_holds WHERE site = $1 AND request_id = $2")
                .bind(site)
                .bind(request_id)
                .fetch_optional(pool)
                .await?;
            match row {
                Some(r) => Ok::<_, StorageError>(Some(r.try_get("id")?)),
                None => Ok(None),
            }
        })?;
        match id {
            Some(id) => self.hold(&id).await,
            None => Ok(None),
        }
    }

    /// Creates a hold, or returns the one created first with the same request id
    /// (`created` false).
    pub async fn create_hold(&self, h: &NewHold) -> Result<(LegalHold, bool), StorageError> {
        if let Some(existing) = self.hold_by_request(&h.site, &h.request_id).await? {
            return Ok((existing, false));
        }
        let id = uuid::Uuid::now_v7().to_string();
        let now = now_micros();
        let inserted: Result<(), sqlx::Error> = dispatch!(self, pool, begin => {
            async {
                let mut tx = pool.begin_with(begin).await?;
                sqlx::query(concat!(
                    "INSERT INTO legal_holds (", hold_columns!(), ") VALUES \
                     ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, '', NULL, '')"
                ))
                .bind(&id)
                .bind(&h.site)
                .bind(&h.request_id)
                .bind(h.start_us)
                .bind(h.end_us)
                .bind(i64::from(HOLD_ACTIVE))
                .bind(&h.case_id)
                .bind(&h.reason)
                .bind(&h.created_by)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                for camera in &h.cameras {
                    sqlx::query(
                        "INSERT INTO legal_hold_cameras (hold_id, site, camera) VALUES ($1, $2, $3)",
                    )
                    .bind(&id)
                    .bind(&h.site)
                    .bind(camera)
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
                Ok::<(), sqlx::Error>(())
            }
            .await
        });
        match inserted {
            Ok(()) => {}
            // A concurrent retry with the same request id won: return its hold.
            Err(e)
                if e.as_database_error()
                    .is_some_and(|d| d.is_unique_violation()) =>
            {
                if let Some(existing) = self.hold_by_request(&h.site, &h.request_id).await? {
                    return Ok((existing, false));
                }
                return Err(e.into());
            }
            Err(e) => return Err(e.into()),
        }
        let hold = self
            .hold(&id)
            .await?
            .ok_or_else(|| StorageError::Internal("created hold vanished".into()))?;
        Ok((hold, true))
    }

    /// Releases an active hold; `None` when it was not active (already released).
    pub async fn release_hold(
        &self,
        id: &str,
        by: &str,
        reason: &str,
    ) -> Result<bool, StorageError> {
        let now = now_micros();
        dispatch!(self, pool, _b => {
            let done = sqlx::query(
                "UPDATE legal_holds SET state = $2, released_by = $3, released_at_us = $4, \
                 release_reason = $5 WHERE id = $1 AND state = $6",
            )
            .bind(id)
            .bind(i64::from(HOLD_RELEASED))
            .bind(by)
            .bind(now)
            .bind(reason)
            .bind(i64::from(HOLD_ACTIVE))
            .execute(pool)
            .await?;
            Ok(done.rows_affected() == 1)
        })
    }

    /// Holds, newest first: of `sites` (`None`: every site), only those covering `camera`
    /// (site, camera) or of `case_id` when given, released ones only with `include_released`.
    pub async fn list_holds(
        &self,
        sites: Option<&[String]>,
        camera: Option<(&str, &str)>,
        case_id: &str,
        include_released: bool,
        offset: u64,
        limit: u32,
    ) -> Result<Vec<LegalHold>, StorageError> {
        let (cam_site, cam) = camera.unwrap_or(("", ""));
        let ids: Vec<String> = dispatch!(self, pool, _b => {
            let rows = sqlx::query(
                "SELECT id, site FROM legal_holds \
                 WHERE ($1 = '' OR case_id = $1) AND ($2 OR state = $3) \
                 AND ($4 = '' OR id IN (SELECT hold_id FROM legal_hold_cameras \
                                         WHERE site = $4 AND camera = $5)) \
                 ORDER BY created_at_us DESC, id DESC",
            )
            .bind(case_id)
            .bind(include_released)
            .bind(i64::from(HOLD_ACTIVE))
            .bind(cam_site)
            .bind(cam)
            .fetch_all(pool)
            .await?;
            let mut out = Vec::new();
            for r in rows {
                let site: String = r.try_get("site")?;
                if sites.is_none_or(|s| s.contains(&site)) {
                    out.push(r.try_get("id")?);
                }
            }
            Ok::<_, StorageError>(out)
        })?;
        let mut holds = Vec::new();
        for id in ids
            .iter()
            .skip(usize::try_from(offset).unwrap_or(usize::MAX))
            .take(limit as usize)
        {
            if let Some(h) = self.hold(id).await? {
                holds.push(h);
            }
        }
        Ok(holds)
    }

    /// Active holds on a camera.
    pub async fn active_holds(
        &self,
        site: &str,
        camera: &str,
    ) -> Result<Vec<LegalHold>, StorageError> {
        let holds: Vec<LegalHold> = dispatch!(self, pool, _b => {
            let rows = sqlx::query(concat!(
                "SELECT ", hold_columns!(), " FROM legal_holds WHERE state = $3 AND id IN \
                 (SELECT hold_id FROM legal_hold_cameras WHERE site = $1 AND camera = $2)"
            ))
            .bind(site)
            .bind(camera)
            .bind(i64::from(HOLD_ACTIVE))
            .fetch_all(pool)
            .await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in rows {
                out.push(hold_from_row!(r));
            }
            Ok::<_, StorageError>(out)
        })?;
        Ok(holds)
    }
}
