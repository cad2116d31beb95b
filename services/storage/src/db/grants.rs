//! SQL of footage grants (see [`crate::grants`]).

use sqlx::Row;

use super::{Index, dispatch, to_i64, to_u64};
use crate::StorageError;
use crate::grants::{Grant, GrantFilter, STATE_PENDING};

macro_rules! grant_columns {
    () => {
        "id, owner_site, requesting_site, request_id, mirror, requested_by, requested_by_name, \
         cameras, requested_start_us, requested_end_us, start_us, end_us, reason, case_id, \
         recipient, legal_basis, form, keep_for_us, state, created_at_us, decided_by, \
         decided_at_us, decision_reason, access_until_us, bundle_id, bundle_sha256, \
         bundle_size, decision_logged"
    };
}

macro_rules! grant_from_row {
    ($row:expr) => {{
        let r = &$row;
        let cameras: String = r.try_get("cameras")?;
        Grant {
            id: r.try_get("id")?,
            owner_site: r.try_get("owner_site")?,
            requesting_site: r.try_get("requesting_site")?,
            request_id: r.try_get("request_id")?,
            mirror: r.try_get::<i64, _>("mirror")? != 0,
            requested_by: r.try_get("requested_by")?,
            requested_by_name: r.try_get("requested_by_name")?,
            cameras: serde_json::from_str(&cameras)
                .map_err(|e| StorageError::Internal(format!("stored grant cameras: {e}")))?,
            requested_from_us: r.try_get("requested_start_us")?,
            requested_to_us: r.try_get("requested_end_us")?,
            from_us: r.try_get("start_us")?,
            to_us: r.try_get("end_us")?,
            reason: r.try_get("reason")?,
            case_id: r.try_get("case_id")?,
            recipient: r.try_get("recipient")?,
            legal_basis: r.try_get("legal_basis")?,
            form: r.try_get("form")?,
            keep_for_us: r.try_get("keep_for_us")?,
            state: r.try_get("state")?,
            created_at_us: r.try_get("created_at_us")?,
            decided_by: r.try_get("decided_by")?,
            decided_at_us: r.try_get("decided_at_us")?,
            decision_reason: r.try_get("decision_reason")?,
            access_until_us: r.try_get("access_until_us")?,
            bundle_id: r.try_get("bundle_id")?,
            bundle_sha256: r.try_get("bundle_sha256")?,
            bundle_size: to_u64(r.try_get("bundle_size")?, "bundle_size")?,
            decision_logged: r.try_get::<i64, _>("decision_logged")? != 0,
        }
    }};
}

fn unique(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .is_some_and(|d| d.is_unique_violation())
}

impl Index {
    /// Stores a new grant; when one with the same (owner, requesting site, request id) exists,
    /// returns that one and `false` instead (the caller decides whether it is a retry).
    pub async fn insert_grant(&self, g: &Grant) -> Result<(Grant, bool), StorageError> {
        let cameras = serde_json::to_string(&g.cameras)
            .map_err(|e| StorageError::Internal(format!("grant cameras: {e}")))?;
        let size = to_i64(g.bundle_size, "bundle_size")?;
        let inserted: Result<(), sqlx::Error> = dispatch!(self, pool, _b => {
            sqlx::query(concat!(
                "INSERT INTO footage_grants (", grant_columns!(), ") VALUES \
                 ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, \
                  $18, $19, $20, $21, $22, $23, $24, $25, $26, $27, $28)"
            ))
            .bind(&g.id)
            .bind(&g.owner_site)
            .bind(&g.requesting_site)
            .bind(&g.request_id)
            .bind(i64::from(g.mirror))
            .bind(&g.requested_by)
            .bind(&g.requested_by_name)
            .bind(&cameras)
            .bind(g.requested_from_us)
            .bind(g.requested_to_us)
            .bind(g.from_us)
            .bind(g.to_us)
            .bind(&g.reason)
            .bind(&g.case_id)
            .bind(&g.recipient)
            .bind(&g.legal_basis)
            .bind(&g.form)
            .bind(g.keep_for_us)
            .bind(g.state)
            .bind(g.created_at_us)
            .bind(&g.decided_by)
            .bind(g.decided_at_us)
            .bind(&g.decision_reason)
            .bind(g.access_until_us)
            .bind(&g.bundle_id)
            .bind(&g.bundle_sha256)
            .bind(size)
            .bind(i64::from(g.decision_logged))
            .execute(pool)
            .await
            .map(|_| ())
        });
        match inserted {
            Ok(()) => Ok((g.clone(), true)),
            Err(e) if unique(&e) => {
                let existing = self
                    .grant_by_request(&g.owner_site, &g.requesting_site, &g.request_id)
                    .await?
                    .ok_or_else(|| {
                        StorageError::Internal("grant id collision without a request".into())
                    })?;
                Ok((existing, false))
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn grant_by_request(
        &self,
        owner_site: &str,
        requesting_site: &str,
        request_id: &str,
    ) -> Result<Option<Grant>, StorageError> {
        dispatch!(self, pool, _b => {
            let row = sqlx::query(concat!(
                "SELECT ", grant_columns!(), " FROM footage_grants \
                 WHERE owner_site = $1 AND requesting_site = $2 AND request_id = $3"
            ))
            .bind(owner_site)
            .bind(requesting_site)
            .bind(request_id)
            .fetch_optional(pool)
            .await?;
            match row {
                Some(r) => Ok(Some(grant_from_row!(r))),
                None => Ok(None),
            }
        })
    }

    /// The grant `id` of `owner_site`.
    pub async fn grant(&self, owner_site: &str, id: &str) -> Result<Option<Grant>, StorageError> {
        dispatch!(self, pool, _b => {
            let row = sqlx::query(concat!(
                "SELECT ", grant_columns!(), " FROM footage_grants WHERE owner_site = $1 AND id = $2"
            ))
            .bind(owner_site)
            .bind(id)
            .fetch_optional(pool)
            .await?;
            match row {
                Some(r) => Ok(Some(grant_from_row!(r))),
                None => Ok(None),
            }
        })
    }

    /// Grants matching `filter`, newest first, skipping `offset`, at most `limit`.
    pub async fn list_grants(
        &self,
        filter: &GrantFilter,
        offset: u64,
        limit: u32,
    ) -> Result<Vec<Grant>, StorageError> {
        // State numbers are values we format ourselves: safe to inline.
        let states = if filter.states.is_empty() {
            String::new()
        } else {
            let list: Vec<String> = filter.states.iter().map(|s| s.to_string()).collect();
            format!(" AND state IN ({})", list.join(", "))
        };
        let mirror = match filter.mirror {
            None => String::new(),
            Some(m) => format!(" AND mirror = {}", i64::from(m)),
        };
        let sql = format!(
            concat!(
                "SELECT ",
                grant_columns!(),
                " FROM footage_grants \
                 WHERE ($1 = '' OR owner_site = $1) AND ($2 = '' OR requesting_site = $2) {} {} \
                 ORDER BY created_at_us DESC, id DESC LIMIT $3 OFFSET $4"
            ),
            states, mirror
        );
        let offset = to_i64(offset, "page token")?;
        dispatch!(self, pool, _b => {
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(&filter.owner_site)
                .bind(&filter.requesting_site)
                .bind(i64::from(limit))
                .bind(offset)
                .fetch_all(pool)
                .await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in rows {
                out.push(grant_from_row!(r));
            }
            Ok(out)
        })
    }

    /// Records the decision of a pending grant (`g` carries it). FAILED_PRECONDITION when the
    /// grant is no longer pending (someone else decided first).
    pub async fn decide_grant(&self, g: &Grant) -> Result<(), StorageError> {
        let size = to_i64(g.bundle_size, "bundle_size")?;
        let n = dispatch!(self, pool, _b => {
            sqlx::query(
                "UPDATE footage_grants SET state = $3, start_us = $4, end_us = $5, \
                 decided_by = $6, decided_at_us = $7, decision_reason = $8, access_until_us = $9, \
                 bundle_id = $10, bundle_sha256 = $11, bundle_size = $12 \
                 WHERE owner_site = $1 AND id = $2 AND state = $13",
            )
            .bind(&g.owner_site)
            .bind(&g.id)
            .bind(g.state)
            .bind(g.from_us)
            .bind(g.to_us)
            .bind(&g.decided_by)
            .bind(g.decided_at_us)
            .bind(&g.decision_reason)
            .bind(g.access_until_us)
            .bind(&g.bundle_id)
            .bind(&g.bundle_sha256)
            .bind(size)
            .bind(STATE_PENDING)
            .execute(pool)
            .await?
            .rows_affected()
        });
        if n == 0 {
            return Err(StorageError::FailedPrecondition(format!(
                "footage grant {} is no longer pending",
                g.id
            )));
        }
        Ok(())
    }

    /// Overwrites a mirror's decision fields with the owner's (its state as the owner reports
    /// it).
    pub async fn refresh_mirror(&self, g: &Grant) -> Result<(), StorageError> {
        let size = to_i64(g.bundle_size, "bundle_size")?;
        dispatch!(self, pool, _b => {
            sqlx::query(
                "UPDATE footage_grants SET state = $3, start_us = $4, end_us = $5, \
                 decided_by = $6, decided_at_us = $7, decision_reason = $8, access_until_us = $9, \
                 bundle_id = $10, bundle_sha256 = $11, bundle_size = $12, form = $13, \
                 keep_for_us = $14 \
                 WHERE owner_site = $1 AND id = $2 AND mirror = 1",
            )
            .bind(&g.owner_site)
            .bind(&g.id)
            .bind(g.state)
            .bind(g.from_us)
            .bind(g.to_us)
            .bind(&g.decided_by)
            .bind(g.decided_at_us)
            .bind(&g.decision_reason)
            .bind(g.access_until_us)
            .bind(&g.bundle_id)
            .bind(&g.bundle_sha256)
            .bind(size)
            .bind(&g.form)
            .bind(g.keep_for_us)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// Marks a mirror's decision as logged; `true` only for the call that marked it (so the
    /// decision is logged once, however many refreshes see it).
    pub async fn claim_decision_log(
        &self,
        owner_site: &str,
        id: &str,
    ) -> Result<bool, StorageError> {
        let n = dispatch!(self, pool, _b => {
            sqlx::query(
                "UPDATE footage_grants SET decision_logged = 1 \
                 WHERE owner_site = $1 AND id = $2 AND mirror = 1 AND decision_logged = 0",
            )
            .bind(owner_site)
            .bind(id)
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(n == 1)
    }

    /// Undoes [`Index::claim_decision_log`] when the log entry could not be written.
    pub async fn release_decision_log(
        &self,
        owner_site: &str,
        id: &str,
    ) -> Result<(), StorageError> {
        dispatch!(self, pool, _b => {
            sqlx::query(
                "UPDATE footage_grants SET decision_logged = 0 \
                 WHERE owner_site = $1 AND id = $2 AND mirror = 1",
            )
            .bind(owner_site)
            .bind(id)
            .execute(pool)
            .await?;
        });
        Ok(())
    }
}
