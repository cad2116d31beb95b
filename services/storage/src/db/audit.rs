//! SQL of the access log (see [`crate::audit`] for the chain and its hashing).

use kordon_objects::time::now_micros;
use sqlx::{AssertSqlSafe, Row};

use super::{Index, dispatch, hash32, to_i64, to_u64};
use crate::StorageError;
use crate::audit::{AccessEntry, AccessFilter, NewAccessEntry};
use crate::chain::ZERO_HASH;

const MAX_ATTEMPTS: u32 = 50;

macro_rules! access_columns {
    () => {
        "site, sequence, time_us, principal, principal_name, via_service, action, objects, \
         reason, case_id, recipient, method, prev_hash, hash, source"
    };
}

macro_rules! access_from_row {
    ($row:expr) => {{
        let r = &$row;
        AccessEntry {
            site: r.try_get("site")?,
            sequence: to_u64(r.try_get("sequence")?, "sequence")?,
            time_us: r.try_get("time_us")?,
            principal: r.try_get("principal")?,
            principal_name: r.try_get("principal_name")?,
            via_service: r.try_get("via_service")?,
            action: i32::try_from(r.try_get::<i64, _>("action")?)
                .map_err(|_| StorageError::Internal("stored action out of range".into()))?,
            objects_json: r.try_get("objects")?,
            reason: r.try_get("reason")?,
            case_id: r.try_get("case_id")?,
            recipient: r.try_get("recipient")?,
            method: r.try_get("method")?,
            prev_hash: hash32(r.try_get("prev_hash")?, "prev_hash")?,
            hash: hash32(r.try_get("hash")?, "hash")?,
            source: r.try_get("source")?,
        }
    }};
}

fn unique(e: &sqlx::Error) -> bool {
    e.as_database_error().is_some_and(|d| {
        d.is_unique_violation()
            || matches!(d.code().as_deref(), Some("40001" | "40P01" | "5" | "517"))
    })
}

impl Index {
    /// Appends an entry to its site's chain and returns it once committed.
    pub async fn append_access(&self, new: &NewAccessEntry) -> Result<AccessEntry, StorageError> {
        if new.site.is_empty() {
            return Err(StorageError::Internal("access entry without a site".into()));
        }
        let objects_json = serde_json::to_string(&new.objects)
            .map_err(|e| StorageError::Internal(format!("objects json: {e}")))?;
        let cameras: std::collections::BTreeSet<&str> = new
            .objects
            .iter()
            .filter(|o| !o.camera.is_empty() && (o.site.is_empty() || o.site == new.site))
            .map(|o| o.camera.as_str())
            .collect();
        for attempt in 0..MAX_ATTEMPTS {
            let result: Result<AccessEntry, sqlx::Error> = dispatch!(self, pool, begin => {
                async {
                    let mut tx = pool.begin_with(begin).await?;
                    let head = sqlx::query(
                        "SELECT sequence, hash FROM access_log WHERE site = $1 \
                         ORDER BY sequence DESC LIMIT 1",
                    )
                    .bind(&new.site)
                    .fetch_optional(&mut *tx)
                    .await?;
                    let (prev_seq, prev_hash) = match head {
                        Some(r) => (
                            r.try_get::<i64, _>("sequence")?,
                            r.try_get::<Vec<u8>, _>("hash")?,
                        ),
                        None => (0, ZERO_HASH.to_vec()),
                    };
                    let prev_hash = <[u8; 32]>::try_from(prev_hash.as_slice())
                        .map_err(|_| sqlx::Error::Protocol("stored hash is not 32 bytes".into()))?;
                    let mut entry = AccessEntry {
                        site: new.site.clone(),
                        sequence: u64::try_from(prev_seq + 1)
                            .map_err(|_| sqlx::Error::Protocol("negative sequence".into()))?,
                        time_us: now_micros(),
                        principal: new.principal.clone(),
                        principal_name: new.principal_name.clone(),
                        via_service: new.via_service.clone(),
                        action: new.action,
                        objects_json: objects_json.clone(),
                        reason: new.reason.clone(),
                        case_id: new.case_id.clone(),
                        recipient: new.recipient.clone(),
                        method: new.method.clone(),
                        source: new.source.clone(),
                        prev_hash,
                        hash: ZERO_HASH,
                    };
                    entry.hash = entry.compute_hash();
                    sqlx::query(concat!(
                        "INSERT INTO access_log (", access_columns!(), ") VALUES \
                         ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)"
                    ))
                    .bind(&entry.site)
                    .bind(prev_seq + 1)
                    .bind(entry.time_us)
                    .bind(&entry.principal)
                    .bind(&entry.principal_name)
                    .bind(&entry.via_service)
                    .bind(i64::from(entry.action))
                    .bind(&entry.objects_json)
                    .bind(&entry.reason)
                    .bind(&entry.case_id)
                    .bind(&entry.recipient)
                    .bind(&entry.method)
                    .bind(entry.prev_hash.to_vec())
                    .bind(entry.hash.to_vec())
                    .bind(&entry.source)
                    .execute(&mut *tx)
                    .await?;
                    for camera in &cameras {
                        sqlx::query(
                            "INSERT INTO access_log_cameras (site, camera, sequence) \
                             VALUES ($1, $2, $3)",
                        )
                        .bind(&entry.site)
                        .bind(*camera)
                        .bind(prev_seq + 1)
                        .execute(&mut *tx)
                        .await?;
                    }
                    tx.commit().await?;
                    Ok::<AccessEntry, sqlx::Error>(entry)
                }
                .await
            });
            match result {
                Ok(entry) => return Ok(entry),
                Err(e) if unique(&e) => {
                    let base = 1u64 << attempt.min(6);
                    let jitter = rand::random::<u64>() % (base + 1);
                    tokio::time::sleep(std::time::Duration::from_millis(base + jitter)).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(StorageError::Contention(format!(
            "could not append to the access log of site {} after {MAX_ATTEMPTS} attempts",
            new.site
        )))
    }

    /// Entries matching `filter` with sequence after `after`, oldest first, at most `limit`.
    pub async fn list_access(
        &self,
        filter: &AccessFilter,
        after: u64,
        limit: u32,
    ) -> Result<Vec<AccessEntry>, StorageError> {
        // Action numbers are i32 values we format ourselves: safe to inline.
        let actions = if filter.actions.is_empty() {
            String::new()
        } else {
            let list: Vec<String> = filter.actions.iter().map(|a| a.to_string()).collect();
            format!(" AND action IN ({})", list.join(", "))
        };
        let sql = format!(
            concat!(
                "SELECT ",
                access_columns!(),
                " FROM access_log \
                 WHERE site = $1 AND sequence > $2 \
                 AND ($3 = '' OR principal = $3) AND ($4 = '' OR case_id = $4) \
                 AND time_us >= $5 AND time_us < $6 \
                 AND ($7 = '' OR sequence IN \
                      (SELECT sequence FROM access_log_cameras WHERE site = $1 AND camera = $7)) \
                 {} ORDER BY sequence LIMIT $8"
            ),
            actions
        );
        let after = to_i64(after, "page token")?;
        dispatch!(self, pool, _b => {
            let rows = sqlx::query(AssertSqlSafe(sql))
                .bind(&filter.site)
                .bind(after)
                .bind(&filter.principal)
                .bind(&filter.case_id)
                .bind(filter.from_us.unwrap_or(i64::MIN))
                .bind(filter.to_us.unwrap_or(i64::MAX))
                .bind(&filter.camera)
                .bind(i64::from(limit))
                .fetch_all(pool)
                .await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in rows {
                out.push(access_from_row!(r));
            }
            Ok(out)
        })
    }

    /// The entry `sequence` of `site`'s log.
    pub async fn access_entry(
        &self,
        site: &str,
        sequence: u64,
    ) -> Result<Option<AccessEntry>, StorageError> {
        let seq = to_i64(sequence, "sequence")?;
        dispatch!(self, pool, _b => {
            let row = sqlx::query(concat!(
                "SELECT ", access_columns!(), " FROM access_log WHERE site = $1 AND sequence = $2"
            ))
            .bind(site)
            .bind(seq)
            .fetch_optional(pool)
            .await?;
            match row {
                Some(r) => Ok(Some(access_from_row!(r))),
                None => Ok(None),
            }
        })
    }

    /// The highest sequence of `site`'s log (0 when empty).
    pub async fn access_head(&self, site: &str) -> Result<u64, StorageError> {
        dispatch!(self, pool, _b => {
            let row = sqlx::query("SELECT MAX(sequence) AS hi FROM access_log WHERE site = $1")
                .bind(site)
                .fetch_one(pool)
                .await?;
            let hi: Option<i64> = row.try_get("hi")?;
            to_u64(hi.unwrap_or(0), "sequence")
        })
    }

    pub(crate) async fn access_range(
        &self,
        site: &str,
        first: u64,
        last: u64,
    ) -> Result<Vec<AccessEntry>, StorageError> {
        let (lo, hi) = (to_i64(first, "sequence")?, to_i64(last, "sequence")?);
        dispatch!(self, pool, _b => {
            let rows = sqlx::query(concat!(
                "SELECT ", access_columns!(), " FROM access_log \
                 WHERE site = $1 AND sequence >= $2 AND sequence <= $3 ORDER BY sequence"
            ))
            .bind(site)
            .bind(lo)
            .bind(hi)
            .fetch_all(pool)
            .await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in rows {
                out.push(access_from_row!(r));
            }
            Ok(out)
        })
    }
}
