//! Jobs, their finished units and their outputs, in SQLite or PostgreSQL (`kordon-db`).
//!
//! A job row holds the submitted [`pb::JobSpec`] and [`common::AuditContext`] as protobuf bytes
//! beside the columns lists filter on. Every query is written once with `$N` placeholders and
//! compiled for both backends by [`kordon_db::dispatch!`].
//!
//! # Claiming and recovery
//! Workers claim the next queued job with one conditional `UPDATE … WHERE state = QUEUED`, so
//! replicas sharing a PostgreSQL database never run one job twice. A running job's owner
//! refreshes `heartbeat_us` at least every few seconds; [`Store::requeue_stale`] puts a job whose
//! owner is this replica (after a restart) or whose heartbeat is older than a minute back in the
//! queue — or fails it once it has run `max_attempts` times.

use std::collections::BTreeMap;

use kordon_db::{Migration, Pool, dispatch};
use kordon_proto::common::v1 as common;
use kordon_proto::transcode::v1 as pb;
use prost::Message;
use sqlx::Row;

use crate::TranscodeError;

const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    description: "transcode jobs",
    sqlite: include_str!("../migrations/sqlite/0001_jobs.sql"),
    postgres: include_str!("../migrations/postgres/0001_jobs.sql"),
}];

/// Longest page of a list.
pub const MAX_PAGE: u32 = 500;
/// Page size when the request names none.
pub const DEFAULT_PAGE: u32 = 50;

/// A job as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct JobRow {
    pub id: String,
    pub request_id: String,
    pub submitted_by: String,
    pub site: String,
    pub camera: String,
    pub kind: pb::JobKind,
    pub spec: pb::JobSpec,
    pub audit: common::AuditContext,
    pub priority: pb::JobPriority,
    pub state: pb::JobState,
    pub created_us: i64,
    pub started_us: i64,
    pub finished_us: i64,
    pub done_units: u64,
    pub total_units: u64,
    pub stage: String,
    pub frames: u64,
    pub speed: f64,
    pub encoder: String,
    pub error: String,
    pub attempts: u32,
    pub cancel_requested: bool,
}

/// One file a job wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputRow {
    pub object_key: String,
    pub content_type: String,
    pub size_bytes: u64,
    pub sha256: [u8; 32],
    pub start_us: i64,
    pub end_us: i64,
    pub source_sequence: u64,
}

/// A finished unit (one source segment).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitRow {
    pub frames: u64,
    /// A viewer copy's part: its size and digest.
    pub part: Option<(u64, [u8; 32])>,
}

/// Progress of a running job.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProgressUpdate {
    pub done_units: u64,
    pub total_units: u64,
    pub stage: String,
    pub frames: u64,
    pub speed: f64,
    pub encoder: String,
}

/// Filters of ListJobs.
#[derive(Debug, Clone, Default)]
pub struct JobFilter {
    pub states: Vec<pb::JobState>,
    pub kind: Option<pb::JobKind>,
    pub camera: Option<(String, String)>,
    /// Only these sites (the caller's scope); `None` means every site.
    pub sites: Option<Vec<String>>,
}

/// What [`Store::requeue_stale`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovered {
    pub requeued: Vec<String>,
    pub failed: Vec<String>,
}

#[derive(Clone, Debug)]
pub struct Store {
    pool: Pool,
}

fn sha32(v: Vec<u8>) -> [u8; 32] {
    let mut out = [0u8; 32];
    if v.len() == 32 {
        out.copy_from_slice(&v);
    }
    out
}

/// `<created_us>:<id>` of the last job of a page (lists are newest first).
fn token_of(row: &JobRow) -> String {
    format!("{}:{}", row.created_us, row.id)
}

fn parse_token(t: &str) -> Result<(i64, String), TranscodeError> {
    let bad = || TranscodeError::Invalid("page.page_token: not a token this service issued".into());
    let (us, id) = t.split_once(':').ok_or_else(bad)?;
    Ok((us.parse().map_err(|_| bad())?, id.to_string()))
}

macro_rules! job_from_row {
    ($r:expr) => {{
        let r = $r;
        let spec: Vec<u8> = r.try_get("spec")?;
        let audit: Vec<u8> = r.try_get("audit")?;
        let kind: i64 = r.try_get("kind")?;
        let priority: i64 = r.try_get("priority")?;
        let state: i64 = r.try_get("state")?;
        let attempts: i64 = r.try_get("attempts")?;
        let cancel: i64 = r.try_get("cancel_requested")?;
        JobRow {
            id: r.try_get("id")?,
            request_id: r.try_get("request_id")?,
            submitted_by: r.try_get("submitted_by")?,
            site: r.try_get("site")?,
            camera: r.try_get("camera")?,
            kind: pb::JobKind::try_from(kind as i32).unwrap_or_default(),
            spec: pb::JobSpec::decode(spec.as_slice()).unwrap_or_default(),
            audit: common::AuditContext::decode(audit.as_slice()).unwrap_or_default(),
            priority: pb::JobPriority::try_from(priority as i32).unwrap_or_default(),
            state: pb::JobState::try_from(state as i32).unwrap_or_default(),
            created_us: r.try_get("created_us")?,
            started_us: r.try_get("started_us")?,
            finished_us: r.try_get("finished_us")?,
            done_units: r.try_get::<i64, _>("done_units")? as u64,
            total_units: r.try_get::<i64, _>("total_units")? as u64,
            stage: r.try_get("stage")?,
            frames: r.try_get::<i64, _>("frames")? as u64,
            speed: r.try_get("speed")?,
            encoder: r.try_get("encoder")?,
            error: r.try_get("error")?,
            attempts: attempts as u32,
            cancel_requested: cancel != 0,
        }
    }};
}

const JOB_COLUMNS: &str = "id, request_id, submitted_by, site, camera, kind, spec, audit, \
     priority, state, created_us, started_us, finished_us, done_units, total_units, stage, \
     frames, speed, encoder, error, attempts, cancel_requested";

fn terminal(s: pb::JobState) -> bool {
    matches!(
        s,
        pb::JobState::Succeeded | pb::JobState::Failed | pb::JobState::Cancelled
    )
}

impl Store {
    /// Opens (and migrates) the database at `url`.
    pub async fn open(url: &str) -> Result<Store, TranscodeError> {
        let pool = Pool::connect(url, 4, "kordon-transcode").await?;
        pool.migrate_in(MIGRATIONS, "_transcode_migrations").await?;
        Ok(Store { pool })
    }

    pub fn backend(&self) -> &'static str {
        self.pool.backend()
    }

    /// Stores a new queued job, or returns the job this submitter queued first under the same
    /// non-empty `request_id` (`false`: nothing was created).
    pub async fn insert(&self, job: &JobRow) -> Result<(JobRow, bool), TranscodeError> {
        if !job.request_id.is_empty()
            && let Some(existing) = self.by_request(&job.submitted_by, &job.request_id).await?
        {
            return Ok((existing, false));
        }
        let sql = format!(
            "INSERT INTO transcode_jobs ({JOB_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, \
             $9, $10, $11, 0, 0, 0, 0, '', 0, 0, '', '', 0, 0)"
        );
        let inserted = dispatch!(&self.pool, pool => {
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(&job.id)
                .bind(&job.request_id)
                .bind(&job.submitted_by)
                .bind(&job.site)
                .bind(&job.camera)
                .bind(job.kind as i64)
                .bind(job.spec.encode_to_vec())
                .bind(job.audit.encode_to_vec())
                .bind(job.priority as i64)
                .bind(pb::JobState::Queued as i64)
                .bind(job.created_us)
                .execute(pool)
                .await
                .map(|_| ())
        });
        match inserted {
            Ok(_) => {}
            // Two submissions with one request id raced: the first one wins.
            Err(sqlx::Error::Database(e))
                if e.is_unique_violation() && !job.request_id.is_empty() =>
            {
                if let Some(existing) = self.by_request(&job.submitted_by, &job.request_id).await? {
                    return Ok((existing, false));
                }
                return Err(sqlx::Error::Database(e).into());
            }
            Err(e) => return Err(e.into()),
        }
        let stored = self
            .get(&job.id)
            .await?
            .ok_or_else(|| TranscodeError::Unavailable("the job vanished after insert".into()))?;
        Ok((stored, true))
    }

    async fn by_request(
        &self,
        submitted_by: &str,
        request_id: &str,
    ) -> Result<Option<JobRow>, TranscodeError> {
        let sql = format!(
            "SELECT {JOB_COLUMNS} FROM transcode_jobs WHERE submitted_by = $1 AND request_id = $2"
        );
        dispatch!(&self.pool, pool => {
            let row = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(submitted_by)
                .bind(request_id)
                .fetch_optional(pool)
                .await?;
            Ok(match row { Some(r) => Some(job_from_row!(r)), None => None })
        })
    }

    pub async fn get(&self, id: &str) -> Result<Option<JobRow>, TranscodeError> {
        let sql = format!("SELECT {JOB_COLUMNS} FROM transcode_jobs WHERE id = $1");
        dispatch!(&self.pool, pool => {
            let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(pool).await?;
            Ok(match row { Some(r) => Some(job_from_row!(r)), None => None })
        })
    }

    /// Jobs newest first, after `page_token`; returns the next page's token when there is more.
    pub async fn list(
        &self,
        f: &JobFilter,
        page_token: &str,
        page_size: u32,
    ) -> Result<(Vec<JobRow>, String), TranscodeError> {
        enum Bind {
            Text(String),
            Int(i64),
        }
        let mut binds: Vec<Bind> = Vec::new();
        let mut arg = |b: Bind| {
            binds.push(b);
            format!("${}", binds.len())
        };
        let mut sql = format!("SELECT {JOB_COLUMNS} FROM transcode_jobs WHERE 1 = 1");
        if !f.states.is_empty() {
            let list: Vec<String> = f.states.iter().map(|s| arg(Bind::Int(*s as i64))).collect();
            sql.push_str(&format!(" AND state IN ({})", list.join(", ")));
        }
        if let Some(k) = f.kind {
            sql.push_str(&format!(" AND kind = {}", arg(Bind::Int(k as i64))));
        }
        if let Some((site, camera)) = &f.camera {
            let s = arg(Bind::Text(site.clone()));
            let c = arg(Bind::Text(camera.clone()));
            sql.push_str(&format!(" AND site = {s} AND camera = {c}"));
        }
        if let Some(sites) = &f.sites {
            if sites.is_empty() {
                return Ok((Vec::new(), String::new()));
            }
            let list: Vec<String> = sites.iter().map(|s| arg(Bind::Text(s.clone()))).collect();
            sql.push_str(&format!(" AND site IN ({})", list.join(", ")));
        }
        if !page_token.is_empty() {
            let (us, id) = parse_token(page_token)?;
            let a = arg(Bind::Int(us));
            let b = arg(Bind::Int(us));
            let c = arg(Bind::Text(id));
            sql.push_str(&format!(
                " AND (created_us < {a} OR (created_us = {b} AND id < {c}))"
            ));
        }
        let size = match page_size {
            0 => DEFAULT_PAGE,
            n => n.min(MAX_PAGE),
        };
        sql.push_str(&format!(
            " ORDER BY created_us DESC, id DESC LIMIT {}",
            size + 1
        ));
        let mut rows: Vec<JobRow> = dispatch!(&self.pool, pool => {
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for b in binds {
                q = match b {
                    Bind::Text(s) => q.bind(s),
                    Bind::Int(i) => q.bind(i),
                };
            }
            let mut out = Vec::new();
            for r in q.fetch_all(pool).await? {
                out.push(job_from_row!(r));
            }
            Ok::<_, TranscodeError>(out)
        })?;
        let next = if rows.len() > size as usize {
            rows.truncate(size as usize);
            rows.last().map(token_of).unwrap_or_default()
        } else {
            String::new()
        };
        Ok((rows, next))
    }

    /// Claims the next queued job (highest priority, then oldest) for `owner`: it becomes
    /// RUNNING with one more attempt. `None` when the queue is empty.
    pub async fn claim(&self, owner: &str, now_us: i64) -> Result<Option<JobRow>, TranscodeError> {
        for _ in 0..5 {
            let next: Option<String> = dispatch!(&self.pool, pool => {
                sqlx::query_scalar(
                    "SELECT id FROM transcode_jobs WHERE state = $1 \
                     ORDER BY priority DESC, created_us, id LIMIT 1",
                )
                .bind(pb::JobState::Queued as i64)
                .fetch_optional(pool)
                .await?
            });
            let Some(id) = next else { return Ok(None) };
            let n = dispatch!(&self.pool, pool => {
                sqlx::query(
                    "UPDATE transcode_jobs SET state = $1, owner = $2, heartbeat_us = $3, \
                     attempts = attempts + 1, \
                     started_us = CASE WHEN started_us = 0 THEN $3 ELSE started_us END, \
                     error = '' WHERE id = $4 AND state = $5",
                )
                .bind(pb::JobState::Running as i64)
                .bind(owner)
                .bind(now_us)
                .bind(&id)
                .bind(pb::JobState::Queued as i64)
                .execute(pool)
                .await?
                .rows_affected()
            });
            if n == 1 {
                return self.get(&id).await;
            }
            // Another replica took it first; look again.
        }
        Ok(None)
    }

    /// Puts back in the queue the running jobs of `owner` (this replica after a restart) and
    /// those of any replica but `alive` whose heartbeat is older than `stale_before_us` (a
    /// replica never takes back its own running jobs, even when an outage kept it from
    /// writing its heartbeat); a job that has already run `max_attempts` times fails instead,
    /// saying so.
    pub async fn requeue_stale(
        &self,
        owner: &str,
        alive: &str,
        stale_before_us: i64,
        max_attempts: u32,
        now_us: i64,
    ) -> Result<Recovered, TranscodeError> {
        let ids: Vec<(String, i64)> = dispatch!(&self.pool, pool => {
            let rows = sqlx::query(
                "SELECT id, attempts FROM transcode_jobs WHERE state = $1 \
                 AND (owner = $2 OR (owner <> $4 AND heartbeat_us < $3))",
            )
            .bind(pb::JobState::Running as i64)
            .bind(owner)
            .bind(stale_before_us)
            .bind(alive)
            .fetch_all(pool)
            .await?;
            let mut out = Vec::new();
            for r in rows {
                out.push((r.try_get::<String, _>("id")?, r.try_get::<i64, _>("attempts")?));
            }
            Ok::<_, TranscodeError>(out)
        })?;
        let mut done = Recovered::default();
        for (id, attempts) in ids {
            if attempts >= i64::from(max_attempts) {
                let msg = format!(
                    "interrupted {attempts} times (a restart or a lost replica each time); \
                     not retried again (transcode.max_attempts is {max_attempts})"
                );
                if self
                    .finish_if(
                        &id,
                        pb::JobState::Running,
                        pb::JobState::Failed,
                        &msg,
                        now_us,
                    )
                    .await?
                {
                    done.failed.push(id);
                }
            } else {
                let n = dispatch!(&self.pool, pool => {
                    sqlx::query(
                        "UPDATE transcode_jobs SET state = $1, owner = '', stage = 'queued again \
                         after an interruption' WHERE id = $2 AND state = $3",
                    )
                    .bind(pb::JobState::Queued as i64)
                    .bind(&id)
                    .bind(pb::JobState::Running as i64)
                    .execute(pool)
                    .await?
                    .rows_affected()
                });
                if n == 1 {
                    done.requeued.push(id);
                }
            }
        }
        Ok(done)
    }

    /// Stores progress and refreshes the heartbeat; returns whether a cancel was requested.
    pub async fn progress(
        &self,
        id: &str,
        p: &ProgressUpdate,
        now_us: i64,
    ) -> Result<bool, TranscodeError> {
        dispatch!(&self.pool, pool => {
            sqlx::query(
                "UPDATE transcode_jobs SET done_units = $1, total_units = $2, stage = $3, \
                 frames = $4, speed = $5, encoder = $6, heartbeat_us = $7 WHERE id = $8",
            )
            .bind(p.done_units as i64)
            .bind(p.total_units as i64)
            .bind(&p.stage)
            .bind(p.frames as i64)
            .bind(p.speed)
            .bind(&p.encoder)
            .bind(now_us)
            .bind(id)
            .execute(pool)
            .await?;
            let c: Option<i64> =
                sqlx::query_scalar("SELECT cancel_requested FROM transcode_jobs WHERE id = $1")
                    .bind(id)
                    .fetch_optional(pool)
                    .await?;
            Ok(c.unwrap_or(1) != 0)
        })
    }

    /// Moves a job from `from` to a terminal state; `false` when it was not in `from`.
    pub async fn finish_if(
        &self,
        id: &str,
        from: pb::JobState,
        to: pb::JobState,
        error: &str,
        now_us: i64,
    ) -> Result<bool, TranscodeError> {
        debug_assert!(terminal(to));
        let n = dispatch!(&self.pool, pool => {
            sqlx::query(
                "UPDATE transcode_jobs SET state = $1, error = $2, finished_us = $3, owner = '', \
                 speed = 0 WHERE id = $4 AND state = $5",
            )
            .bind(to as i64)
            .bind(error)
            .bind(now_us)
            .bind(id)
            .bind(from as i64)
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(n == 1)
    }

    /// Puts a running job back in the queue (a transient failure, a shutdown); `refund` gives
    /// back the attempt its claim took (a shutdown is not the job's fault).
    pub async fn requeue(&self, id: &str, stage: &str, refund: bool) -> Result<(), TranscodeError> {
        dispatch!(&self.pool, pool => {
            sqlx::query(
                "UPDATE transcode_jobs SET state = $1, owner = '', stage = $2, speed = 0, \
                 attempts = attempts - $5 WHERE id = $3 AND state = $4",
            )
            .bind(pb::JobState::Queued as i64)
            .bind(stage)
            .bind(id)
            .bind(pb::JobState::Running as i64)
            .bind(i64::from(refund))
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// Cancels a job: a queued one at once; a running one is flagged and its worker stops at
    /// the next unit (the returned row is still RUNNING). A cancelled job is returned as is;
    /// a succeeded or failed one is FAILED_PRECONDITION.
    pub async fn cancel(&self, id: &str, now_us: i64) -> Result<JobRow, TranscodeError> {
        let job = self
            .get(id)
            .await?
            .ok_or_else(|| TranscodeError::NotFound(format!("no job `{id}`")))?;
        match job.state {
            pb::JobState::Cancelled => return Ok(job),
            pb::JobState::Succeeded | pb::JobState::Failed => {
                return Err(TranscodeError::FailedPrecondition(format!(
                    "job `{id}` has already {}",
                    if job.state == pb::JobState::Succeeded {
                        "succeeded"
                    } else {
                        "failed"
                    }
                )));
            }
            _ => {}
        }
        dispatch!(&self.pool, pool => {
            sqlx::query("UPDATE transcode_jobs SET cancel_requested = 1 WHERE id = $1")
                .bind(id)
                .execute(pool)
                .await?;
        });
        self.finish_if(
            id,
            pb::JobState::Queued,
            pb::JobState::Cancelled,
            "",
            now_us,
        )
        .await?;
        self.get(id)
            .await?
            .ok_or_else(|| TranscodeError::NotFound(format!("no job `{id}`")))
    }

    /// Records a finished unit (idempotent).
    pub async fn unit_done(
        &self,
        job_id: &str,
        source_sequence: u64,
        unit: &UnitRow,
    ) -> Result<(), TranscodeError> {
        let (size, sha) = match unit.part {
            Some((s, h)) => (s as i64, Some(h.to_vec())),
            None => (0, None),
        };
        dispatch!(&self.pool, pool => {
            sqlx::query(
                "INSERT INTO transcode_units (job_id, source_sequence, frames, part_size, \
                 part_sha256) VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (job_id, source_sequence) DO NOTHING",
            )
            .bind(job_id)
            .bind(source_sequence as i64)
            .bind(unit.frames as i64)
            .bind(size)
            .bind(sha)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// The units a job has finished, by source sequence.
    pub async fn units(&self, job_id: &str) -> Result<BTreeMap<u64, UnitRow>, TranscodeError> {
        dispatch!(&self.pool, pool => {
            let rows = sqlx::query(
                "SELECT source_sequence, frames, part_size, part_sha256 FROM transcode_units \
                 WHERE job_id = $1",
            )
            .bind(job_id)
            .fetch_all(pool)
            .await?;
            let mut out = BTreeMap::new();
            for r in rows {
                let sha: Option<Vec<u8>> = r.try_get("part_sha256")?;
                let size: i64 = r.try_get("part_size")?;
                out.insert(
                    r.try_get::<i64, _>("source_sequence")? as u64,
                    UnitRow {
                        frames: r.try_get::<i64, _>("frames")? as u64,
                        part: sha.map(|s| (size as u64, sha32(s))),
                    },
                );
            }
            Ok(out)
        })
    }

    /// Records an output (idempotent by object key).
    pub async fn add_output(&self, job_id: &str, o: &OutputRow) -> Result<(), TranscodeError> {
        dispatch!(&self.pool, pool => {
            sqlx::query(
                "INSERT INTO transcode_outputs (job_id, object_key, content_type, size_bytes, \
                 sha256, start_us, end_us, source_sequence) VALUES ($1, $2, $3, $4, $5, $6, $7, \
                 $8) ON CONFLICT (job_id, object_key) DO NOTHING",
            )
            .bind(job_id)
            .bind(&o.object_key)
            .bind(&o.content_type)
            .bind(o.size_bytes as i64)
            .bind(o.sha256.to_vec())
            .bind(o.start_us)
            .bind(o.end_us)
            .bind(o.source_sequence as i64)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// A job's outputs in footage-time order.
    pub async fn outputs(&self, job_id: &str) -> Result<Vec<OutputRow>, TranscodeError> {
        dispatch!(&self.pool, pool => {
            let rows = sqlx::query(
                "SELECT object_key, content_type, size_bytes, sha256, start_us, end_us, \
                 source_sequence FROM transcode_outputs WHERE job_id = $1 \
                 ORDER BY start_us, source_sequence, object_key",
            )
            .bind(job_id)
            .fetch_all(pool)
            .await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in rows {
                out.push(OutputRow {
                    object_key: r.try_get("object_key")?,
                    content_type: r.try_get("content_type")?,
                    size_bytes: r.try_get::<i64, _>("size_bytes")? as u64,
                    sha256: sha32(r.try_get("sha256")?),
                    start_us: r.try_get("start_us")?,
                    end_us: r.try_get("end_us")?,
                    source_sequence: r.try_get::<i64, _>("source_sequence")? as u64,
                });
            }
            Ok(out)
        })
    }

    /// How many jobs are in each state (for status and metrics).
    pub async fn counts(&self) -> Result<BTreeMap<i32, u64>, TranscodeError> {
        dispatch!(&self.pool, pool => {
            let rows = sqlx::query("SELECT state, COUNT(*) AS n FROM transcode_jobs GROUP BY state")
                .fetch_all(pool)
                .await?;
            let mut out = BTreeMap::new();
            for r in rows {
                out.insert(r.try_get::<i64, _>("state")? as i32, r.try_get::<i64, _>("n")? as u64);
            }
            Ok(out)
        })
    }

    /// Forgets finished jobs (not their outputs) that ended before `before_us`.
    pub async fn delete_finished_before(&self, before_us: i64) -> Result<u64, TranscodeError> {
        let n = dispatch!(&self.pool, pool => {
            sqlx::query(
                "DELETE FROM transcode_jobs WHERE state IN ($1, $2, $3) AND finished_us < $4",
            )
            .bind(pb::JobState::Succeeded as i64)
            .bind(pb::JobState::Failed as i64)
            .bind(pb::JobState::Cancelled as i64)
            .bind(before_us)
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(n)
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(id: &str, request: &str, created: i64, priority: pb::JobPriority) -> JobRow {
        JobRow {
            id: id.into(),
            request_id: request.into(),
            submitted_by: "person:ana".into(),
            site: "burgas".into(),
            camera: "gate-1".into(),
            kind: pb::JobKind::Thumbnails,
            spec: pb::JobSpec::default(),
            audit: common::AuditContext {
                reason: "timeline".into(),
                ..Default::default()
            },
            priority,
            state: pb::JobState::Queued,
            created_us: created,
            started_us: 0,
            finished_us: 0,
            done_units: 0,
            total_units: 0,
            stage: String::new(),
            frames: 0,
            speed: 0.0,
            encoder: String::new(),
            error: String::new(),
            attempts: 0,
            cancel_requested: false,
        }
    }

    async fn store() -> (Store, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        (Store::open(&url).await.unwrap(), dir)
    }

    /// A store on PostgreSQL in a schema of its own (dropped by the caller), when
    /// `KORDON_TEST_POSTGRES_URL` is set.
    async fn pg_store() -> Option<(Store, sqlx::PgPool, String)> {
        let url = kordon_objects::testenv::require(
            "transcode store on PostgreSQL",
            &["KORDON_TEST_POSTGRES_URL"],
        )
        .and_then(|mut v| v.pop())?;
        let schema = format!("kordon_transcode_test_{}", uuid::Uuid::new_v4().simple());
        let admin = sqlx::PgPool::connect(&url).await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
            .execute(&admin)
            .await
            .unwrap();
        let sep = if url.contains('?') { '&' } else { '?' };
        let scoped = format!("{url}{sep}options=-c%20search_path%3D{schema}");
        let s = Store::open(&scoped).await.unwrap();
        assert_eq!(s.backend(), "postgres");
        Some((s, admin, schema))
    }

    #[tokio::test]
    async fn every_scenario_on_postgresql() {
        let Some((s, admin, schema)) = pg_store().await else {
            return;
        };
        idempotency(&s).await;
        let Some((s2, _, schema2)) = pg_store().await else {
            return;
        };
        claims(&s2).await;
        let Some((s3, _, schema3)) = pg_store().await else {
            return;
        };
        cancels(&s3).await;
        for (st, sc) in [(s, schema), (s2, schema2), (s3, schema3)] {
            st.close().await;
            sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {sc} CASCADE")))
                .execute(&admin)
                .await
                .unwrap();
        }
    }

    #[tokio::test]
    async fn idempotent_by_request_id_per_submitter() {
        let (s, _d) = store().await;
        idempotency(&s).await;
    }

    async fn idempotency(s: &Store) {
        let (a, created) = s
            .insert(&job("a", "r1", 1, pb::JobPriority::Normal))
            .await
            .unwrap();
        assert!(created);
        let (b, created) = s
            .insert(&job("b", "r1", 2, pb::JobPriority::Normal))
            .await
            .unwrap();
        assert!(!created);
        assert_eq!(b.id, a.id);
        let mut other = job("c", "r1", 3, pb::JobPriority::Normal);
        other.submitted_by = "person:bob".into();
        assert!(s.insert(&other).await.unwrap().1);
        // No request id: always a new job.
        assert!(
            s.insert(&job("d", "", 4, pb::JobPriority::Normal))
                .await
                .unwrap()
                .1
        );
        assert!(
            s.insert(&job("e", "", 5, pb::JobPriority::Normal))
                .await
                .unwrap()
                .1
        );
    }

    #[tokio::test]
    async fn claims_by_priority_then_age_and_recovers_interrupted_jobs() {
        let (s, _d) = store().await;
        claims(&s).await;
    }

    async fn claims(s: &Store) {
        s.insert(&job("old", "", 1, pb::JobPriority::Normal))
            .await
            .unwrap();
        s.insert(&job("new-high", "", 2, pb::JobPriority::High))
            .await
            .unwrap();
        s.insert(&job("low", "", 0, pb::JobPriority::Low))
            .await
            .unwrap();
        let first = s.claim("r0", 10).await.unwrap().unwrap();
        assert_eq!(first.id, "new-high");
        assert_eq!(first.state, pb::JobState::Running);
        assert_eq!(first.attempts, 1);
        assert_eq!(s.claim("r0", 10).await.unwrap().unwrap().id, "old");
        assert_eq!(s.claim("r0", 10).await.unwrap().unwrap().id, "low");
        assert!(s.claim("r0", 10).await.unwrap().is_none());
        // A restart of r0: its running jobs go back to the queue; another replica's fresh one
        // stays, a stale one is taken back too.
        s.progress("low", &ProgressUpdate::default(), 1_000_000)
            .await
            .unwrap();
        // A replica never takes back its own running jobs for a stale heartbeat.
        let r = s
            .requeue_stale("", "r0", 500_000, 3, 2_000_000)
            .await
            .unwrap();
        assert!(r.requeued.is_empty(), "{r:?}");
        let r = s
            .requeue_stale("r1", "", 500_000, 3, 2_000_000)
            .await
            .unwrap();
        assert_eq!(r.requeued.len(), 2, "{r:?}");
        let r = s.requeue_stale("r0", "", 0, 3, 2_000_000).await.unwrap();
        assert_eq!(r.requeued, vec!["low".to_string()]);
        // Interrupted max_attempts times: failed, saying why.
        let j = s.claim("r0", 10).await.unwrap().unwrap();
        assert_eq!((j.id.as_str(), j.attempts), ("new-high", 2));
        s.requeue_stale("r0", "", 0, 3, 20).await.unwrap();
        let j = s.claim("r0", 10).await.unwrap().unwrap();
        assert_eq!((j.id.as_str(), j.attempts), ("new-high", 3));
        let r = s.requeue_stale("r0", "", 0, 3, 20).await.unwrap();
        assert!(r.failed.contains(&"new-high".to_string()));
        let j = s.get("new-high").await.unwrap().unwrap();
        assert_eq!(j.state, pb::JobState::Failed);
        assert!(j.error.contains("interrupted 3 times"), "{}", j.error);
    }

    #[tokio::test]
    async fn cancel_rules_units_outputs_and_pages() {
        let (s, _d) = store().await;
        cancels(&s).await;
    }

    async fn cancels(s: &Store) {
        for i in 0..5 {
            s.insert(&job(&format!("j{i}"), "", i, pb::JobPriority::Normal))
                .await
                .unwrap();
        }
        let c = s.cancel("j0", 9).await.unwrap();
        assert_eq!(c.state, pb::JobState::Cancelled);
        assert_eq!(
            s.cancel("j0", 9).await.unwrap().state,
            pb::JobState::Cancelled
        );
        let running = s.claim("r", 1).await.unwrap().unwrap();
        let c = s.cancel(&running.id, 9).await.unwrap();
        assert_eq!(c.state, pb::JobState::Running);
        assert!(c.cancel_requested);
        assert!(
            s.progress(&running.id, &ProgressUpdate::default(), 2)
                .await
                .unwrap()
        );
        let other = s.claim("r", 1).await.unwrap().unwrap();
        s.finish_if(
            &other.id,
            pb::JobState::Running,
            pb::JobState::Succeeded,
            "",
            3,
        )
        .await
        .unwrap();
        assert!(matches!(
            s.cancel(&other.id, 9).await,
            Err(TranscodeError::FailedPrecondition(_))
        ));
        assert!(matches!(
            s.cancel("nope", 9).await,
            Err(TranscodeError::NotFound(_))
        ));

        s.unit_done(
            "j4",
            7,
            &UnitRow {
                frames: 150,
                part: Some((10, [1; 32])),
            },
        )
        .await
        .unwrap();
        s.unit_done(
            "j4",
            7,
            &UnitRow {
                frames: 1,
                part: None,
            },
        )
        .await
        .unwrap();
        s.unit_done(
            "j4",
            8,
            &UnitRow {
                frames: 149,
                part: None,
            },
        )
        .await
        .unwrap();
        let u = s.units("j4").await.unwrap();
        assert_eq!(
            u[&7],
            UnitRow {
                frames: 150,
                part: Some((10, [1; 32]))
            }
        );
        assert_eq!(u[&8].part, None);
        let o = |k: &str, start| OutputRow {
            object_key: k.into(),
            content_type: "video/mp4".into(),
            size_bytes: 3,
            sha256: [2; 32],
            start_us: start,
            end_us: start + 1,
            source_sequence: 1,
        };
        s.add_output("j4", &o("b", 2)).await.unwrap();
        s.add_output("j4", &o("a", 1)).await.unwrap();
        s.add_output("j4", &o("a", 1)).await.unwrap();
        let keys: Vec<String> = s
            .outputs("j4")
            .await
            .unwrap()
            .into_iter()
            .map(|o| o.object_key)
            .collect();
        assert_eq!(keys, ["a", "b"]);

        let (p1, t) = s.list(&JobFilter::default(), "", 2).await.unwrap();
        assert_eq!(
            p1.iter().map(|j| j.id.as_str()).collect::<Vec<_>>(),
            ["j4", "j3"]
        );
        let (p2, t) = s.list(&JobFilter::default(), &t, 2).await.unwrap();
        assert_eq!(
            p2.iter().map(|j| j.id.as_str()).collect::<Vec<_>>(),
            ["j2", "j1"]
        );
        let (p3, t) = s.list(&JobFilter::default(), &t, 2).await.unwrap();
        assert_eq!(p3.len(), 1);
        assert!(t.is_empty());
        let only = JobFilter {
            states: vec![pb::JobState::Cancelled],
            ..Default::default()
        };
        assert_eq!(s.list(&only, "", 10).await.unwrap().0.len(), 1);
        let scoped = JobFilter {
            sites: Some(vec!["edirne".into()]),
            ..Default::default()
        };
        assert!(s.list(&scoped, "", 10).await.unwrap().0.is_empty());
        assert!(s.list(&JobFilter::default(), "x", 10).await.is_err());
        assert_eq!(s.delete_finished_before(100).await.unwrap(), 2);
    }
}
