//! Rules, alerts, alert events and delivery queues, in SQLite or PostgreSQL (`kordon-db`).
//!
//! An alert change, its event and the event's place in each sink's queue are written in one
//! transaction ([`Store::commit`]), so a restart loses no alert and no pending delivery. Rules
//! and alerts are kept as their protos (`body`) beside the columns lists filter and sort on;
//! events are numbered (`seq`), which is the `WatchAlerts` cursor and the delivery order.

use kordon_db::{Migration, Pool, dispatch};
use kordon_proto::alerting::v1 as pb;
use prost::Message;
use sqlx::Row;

use crate::AlertingError;

const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    description: "alerting",
    sqlite: include_str!("../migrations/sqlite/0001_alerting.sql"),
    postgres: include_str!("../migrations/postgres/0001_alerting.sql"),
}];

/// Longest page of a list.
pub const MAX_PAGE: u32 = 1000;

/// A rule as stored; `managed` rules come from the config (AlertRule resources) and are
/// changed there, not through the API.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredRule {
    pub rule: pb::Rule,
    pub managed: bool,
}

/// One alert change to commit: the alert after it, what happened, and where it goes.
#[derive(Debug, Clone)]
pub struct Change {
    pub alert: pb::Alert,
    pub dedup_key: String,
    pub kind: pb::AlertEventKind,
    pub time_us: i64,
    /// Sinks whose queue gets the event.
    pub sinks: Vec<String>,
}

/// A committed event.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub seq: i64,
    pub time_us: i64,
    pub response: pb::WatchAlertsResponse,
}

/// One queued delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Queued {
    pub seq: i64,
    pub attempts: u32,
    pub next_us: i64,
}

/// What to list; empty means no filter.
#[derive(Debug, Clone, Default)]
pub struct AlertFilter {
    pub site: String,
    pub cameras: Vec<(String, String)>,
    pub states: Vec<i32>,
    pub min_severity: i32,
    pub rule_id: String,
    pub from_us: Option<i64>,
    pub to_us: Option<i64>,
    /// `Some(false)`: local only; `Some(true)`: partner only.
    pub partner: Option<bool>,
}

impl AlertFilter {
    /// The same rules as the SQL of [`Store::list_alerts`], for live events.
    pub fn matches(&self, a: &pb::Alert) -> bool {
        let (site, camera) = a
            .camera
            .as_ref()
            .map(|c| (c.site.as_str(), c.camera.as_str()))
            .unwrap_or(("", ""));
        (self.site.is_empty() || self.site == a.site)
            && (self.cameras.is_empty()
                || self.cameras.iter().any(|(s, c)| s == site && c == camera))
            && (self.states.is_empty() || self.states.contains(&a.state))
            && a.severity >= self.min_severity
            && (self.rule_id.is_empty() || self.rule_id == a.rule_id)
            && self.partner.is_none_or(|p| p == a.origin.is_some())
    }
}

enum Bind {
    Text(String),
    Int(i64),
}

#[derive(Clone, Debug)]
pub struct Store {
    pool: Pool,
}

fn decode<M: Message + Default>(b: &[u8], what: &str) -> Result<M, AlertingError> {
    M::decode(b).map_err(|e| AlertingError::Corrupt(format!("{what}: {e}")))
}

pub(crate) fn micros(t: &Option<prost_types::Timestamp>) -> i64 {
    t.as_ref()
        .and_then(kordon_proto::time::micros_from_timestamp)
        .unwrap_or(0)
}

impl Store {
    /// Opens (creating if needed) and migrates the database at `url`.
    pub async fn open(url: &str) -> Result<Store, AlertingError> {
        let pool = Pool::connect(url, 4, "kordon-alerting").await?;
        // Its own bookkeeping table: alerting may share the site's PostgreSQL with storage.
        pool.migrate_in(MIGRATIONS, "_kordon_alerting_migrations")
            .await?;
        Ok(Store { pool })
    }

    pub fn backend(&self) -> &'static str {
        self.pool.backend()
    }

    pub async fn close(&self) {
        self.pool.close().await
    }

    // ---- rules ----

    pub async fn rules(&self) -> Result<Vec<StoredRule>, AlertingError> {
        let rows = dispatch!(&self.pool, pool => {
            let rows = sqlx::query("SELECT managed, body FROM rules ORDER BY site, name")
                .fetch_all(pool)
                .await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in rows {
                out.push((r.try_get::<i64, _>("managed")?, r.try_get::<Vec<u8>, _>("body")?));
            }
            out
        });
        rows.into_iter()
            .map(|(m, b)| {
                Ok(StoredRule {
                    rule: decode(&b, "rule")?,
                    managed: m != 0,
                })
            })
            .collect()
    }

    /// Writes a rule (insert or replace by id).
    pub async fn put_rule(&self, rule: &pb::Rule, managed: bool) -> Result<(), AlertingError> {
        let body = rule.encode_to_vec();
        dispatch!(&self.pool, pool => {
            sqlx::query(
                "INSERT INTO rules (id, site, name, managed, version, body) VALUES ($1, $2, $3, \
                 $4, $5, $6) ON CONFLICT (id) DO UPDATE SET site = $2, name = $3, managed = $4, \
                 version = $5, body = $6",
            )
            .bind(&rule.id)
            .bind(&rule.site)
            .bind(&rule.name)
            .bind(i64::from(managed))
            .bind(rule.version as i64)
            .bind(body)
            .execute(pool)
            .await
            .map_err(|e| match &e {
                sqlx::Error::Database(d) if d.is_unique_violation() => AlertingError::AlreadyExists(
                    format!("site {} already has a rule named {}", rule.site, rule.name),
                ),
                _ => AlertingError::from(e),
            })?;
        });
        Ok(())
    }

    pub async fn delete_rule(&self, id: &str) -> Result<bool, AlertingError> {
        let n = dispatch!(&self.pool, pool => {
            sqlx::query("DELETE FROM rules WHERE id = $1")
                .bind(id)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(n > 0)
    }

    // ---- alerts and events ----

    /// Writes alert changes, their events and their deliveries in one transaction; returns the
    /// events in order.
    pub async fn commit(&self, changes: Vec<Change>) -> Result<Vec<Event>, AlertingError> {
        if changes.is_empty() {
            return Ok(Vec::new());
        }
        let events = dispatch!(&self.pool, pool => {
            let mut tx = pool.begin().await?;
            let mut out = Vec::with_capacity(changes.len());
            for c in changes {
                let a = &c.alert;
                let cam = a.camera.clone().unwrap_or_default();
                sqlx::query(
                    "INSERT INTO alerts (id, site, camera, rule_id, dedup_key, state, severity, \
                     partner, opened_us, last_seen_us, ended_us, version, body) VALUES ($1, $2, \
                     $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) ON CONFLICT (id) DO UPDATE \
                     SET state = $6, severity = $7, last_seen_us = $10, ended_us = $11, \
                     version = $12, body = $13",
                )
                .bind(&a.id)
                .bind(&a.site)
                .bind(&cam.camera)
                .bind(&a.rule_id)
                .bind(&c.dedup_key)
                .bind(i64::from(a.state))
                .bind(i64::from(a.severity))
                .bind(i64::from(a.origin.is_some()))
                .bind(micros(&a.opened_at))
                .bind(micros(&a.last_seen_at))
                .bind(micros(&a.ended_at))
                .bind(a.version as i64)
                .bind(a.encode_to_vec())
                .execute(&mut *tx)
                .await?;
                let mut response = pb::WatchAlertsResponse {
                    kind: c.kind as i32,
                    alert: Some(c.alert.clone()),
                    event_time: Some(kordon_proto::time::timestamp_from_micros(c.time_us)),
                    cursor: String::new(),
                };
                let seq: i64 = sqlx::query_scalar(
                    "INSERT INTO events (alert_id, kind, time_us, body) VALUES ($1, $2, $3, $4) \
                     RETURNING seq",
                )
                .bind(&a.id)
                .bind(c.kind as i64)
                .bind(c.time_us)
                .bind(response.encode_to_vec())
                .fetch_one(&mut *tx)
                .await?;
                for s in &c.sinks {
                    sqlx::query(
                        "INSERT INTO deliveries (sink, seq, attempts, next_us, last_error) \
                         VALUES ($1, $2, 0, 0, '')",
                    )
                    .bind(s)
                    .bind(seq)
                    .execute(&mut *tx)
                    .await?;
                }
                response.cursor = seq.to_string();
                out.push(Event { seq, time_us: c.time_us, response });
            }
            tx.commit().await?;
            out
        });
        Ok(events)
    }

    /// Queues each alert's latest event for `sink` (an agreement that came into force gets the
    /// alerts already going on); an alert already queued there is left alone. Returns how many
    /// were queued.
    pub async fn queue_latest(
        &self,
        sink: &str,
        alert_ids: &[String],
    ) -> Result<u64, AlertingError> {
        let mut n = 0;
        dispatch!(&self.pool, pool => {
            let mut tx = pool.begin().await?;
            for id in alert_ids {
                n += sqlx::query(
                    "INSERT INTO deliveries (sink, seq, attempts, next_us, last_error) \
                     SELECT $1, MAX(seq), 0, 0, '' FROM events WHERE alert_id = $2 \
                     HAVING MAX(seq) IS NOT NULL ON CONFLICT (sink, seq) DO NOTHING",
                )
                .bind(sink)
                .bind(id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            }
            tx.commit().await?;
        });
        Ok(n)
    }

    pub async fn alert(&self, id: &str) -> Result<Option<pb::Alert>, AlertingError> {
        let body = dispatch!(&self.pool, pool => {
            sqlx::query_scalar::<_, Vec<u8>>("SELECT body FROM alerts WHERE id = $1")
                .bind(id)
                .fetch_optional(pool)
                .await?
        });
        body.map(|b| decode(&b, "alert")).transpose()
    }

    /// Alerts an incident may still fold into after a restart: ongoing ones, and those whose
    /// last match is after `since_us` (the longest cooldown back). With their dedup keys.
    pub async fn recent_alerts(
        &self,
        since_us: i64,
    ) -> Result<Vec<(String, pb::Alert)>, AlertingError> {
        let rows = dispatch!(&self.pool, pool => {
            let rows = sqlx::query(
                "SELECT dedup_key, body FROM alerts WHERE partner = 0 AND (ended_us = 0 OR \
                 last_seen_us >= $1) ORDER BY opened_us",
            )
            .bind(since_us)
            .fetch_all(pool)
            .await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in rows {
                out.push((r.try_get::<String, _>("dedup_key")?, r.try_get::<Vec<u8>, _>("body")?));
            }
            out
        });
        rows.into_iter()
            .map(|(k, b)| Ok((k, decode(&b, "alert")?)))
            .collect()
    }

    /// Alerts matching `f`, newest first (by opened time), after the page position `after`
    /// (`(opened_us, id)` of the last one seen), at most `limit`.
    pub async fn list_alerts(
        &self,
        f: &AlertFilter,
        after: Option<(i64, String)>,
        limit: u32,
    ) -> Result<Vec<pb::Alert>, AlertingError> {
        let mut sql = String::from("SELECT body FROM alerts WHERE 1 = 1");
        let mut binds: Vec<Bind> = Vec::new();
        let arg = |binds: &mut Vec<Bind>, b: Bind| {
            binds.push(b);
            format!("${}", binds.len())
        };
        if let Some((t, id)) = after {
            let pt = arg(&mut binds, Bind::Int(t));
            let pi = arg(&mut binds, Bind::Text(id));
            sql.push_str(&format!(
                " AND (opened_us < {pt} OR (opened_us = {pt} AND id < {pi}))"
            ));
        }
        if !f.site.is_empty() {
            let p = arg(&mut binds, Bind::Text(f.site.clone()));
            sql.push_str(&format!(" AND site = {p}"));
        }
        if !f.cameras.is_empty() {
            let mut ors = Vec::new();
            for (s, c) in &f.cameras {
                let ps = arg(&mut binds, Bind::Text(s.clone()));
                let pc = arg(&mut binds, Bind::Text(c.clone()));
                ors.push(format!("(site = {ps} AND camera = {pc})"));
            }
            sql.push_str(&format!(" AND ({})", ors.join(" OR ")));
        }
        if !f.states.is_empty() {
            let ps: Vec<String> = f
                .states
                .iter()
                .map(|s| arg(&mut binds, Bind::Int(i64::from(*s))))
                .collect();
            sql.push_str(&format!(" AND state IN ({})", ps.join(", ")));
        }
        if f.min_severity > 0 {
            let p = arg(&mut binds, Bind::Int(i64::from(f.min_severity)));
            sql.push_str(&format!(" AND severity >= {p}"));
        }
        if !f.rule_id.is_empty() {
            let p = arg(&mut binds, Bind::Text(f.rule_id.clone()));
            sql.push_str(&format!(" AND rule_id = {p}"));
        }
        if let Some(t) = f.from_us {
            let p = arg(&mut binds, Bind::Int(t));
            sql.push_str(&format!(" AND opened_us >= {p}"));
        }
        if let Some(t) = f.to_us {
            let p = arg(&mut binds, Bind::Int(t));
            sql.push_str(&format!(" AND opened_us < {p}"));
        }
        if let Some(p) = f.partner {
            sql.push_str(if p {
                " AND partner = 1"
            } else {
                " AND partner = 0"
            });
        }
        let p = arg(&mut binds, Bind::Int(i64::from(limit.min(MAX_PAGE))));
        sql.push_str(&format!(" ORDER BY opened_us DESC, id DESC LIMIT {p}"));
        let bodies = dispatch!(&self.pool, pool => {
            let mut q = sqlx::query_scalar::<_, Vec<u8>>(sqlx::AssertSqlSafe(sql));
            for b in binds {
                q = match b {
                    Bind::Text(s) => q.bind(s),
                    Bind::Int(i) => q.bind(i),
                };
            }
            q.fetch_all(pool).await?
        });
        bodies.iter().map(|b| decode(b, "alert")).collect()
    }

    /// Events after `seq`, in order, at most `limit`.
    pub async fn events_after(&self, seq: i64, limit: u32) -> Result<Vec<Event>, AlertingError> {
        let rows = dispatch!(&self.pool, pool => {
            let rows = sqlx::query(
                "SELECT seq, time_us, body FROM events WHERE seq > $1 ORDER BY seq LIMIT $2",
            )
            .bind(seq)
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in rows {
                out.push((
                    r.try_get::<i64, _>("seq")?,
                    r.try_get::<i64, _>("time_us")?,
                    r.try_get::<Vec<u8>, _>("body")?,
                ));
            }
            out
        });
        rows.into_iter()
            .map(|(seq, time_us, b)| {
                let mut response: pb::WatchAlertsResponse = decode(&b, "event")?;
                response.cursor = seq.to_string();
                Ok(Event {
                    seq,
                    time_us,
                    response,
                })
            })
            .collect()
    }

    /// The last event before `time_us` (0 when none): a replay from a time starts after it.
    pub async fn seq_before(&self, time_us: i64) -> Result<i64, AlertingError> {
        let seq = dispatch!(&self.pool, pool => {
            sqlx::query_scalar::<_, Option<i64>>("SELECT MAX(seq) FROM events WHERE time_us < $1")
                .bind(time_us)
                .fetch_one(pool)
                .await?
        });
        Ok(seq.unwrap_or(0))
    }

    /// The time of event `seq`, if it is still kept.
    pub async fn event_time(&self, seq: i64) -> Result<Option<i64>, AlertingError> {
        let t = dispatch!(&self.pool, pool => {
            sqlx::query_scalar::<_, i64>("SELECT time_us FROM events WHERE seq = $1")
                .bind(seq)
                .fetch_optional(pool)
                .await?
        });
        Ok(t)
    }

    pub async fn last_seq(&self) -> Result<i64, AlertingError> {
        let seq = dispatch!(&self.pool, pool => {
            sqlx::query_scalar::<_, Option<i64>>("SELECT MAX(seq) FROM events")
                .fetch_one(pool)
                .await?
        });
        Ok(seq.unwrap_or(0))
    }

    // ---- deliveries ----

    /// The head of a sink's queue, in order.
    pub async fn queue(&self, sink: &str, limit: u32) -> Result<Vec<Queued>, AlertingError> {
        let rows = dispatch!(&self.pool, pool => {
            let rows = sqlx::query(
                "SELECT seq, attempts, next_us FROM deliveries WHERE sink = $1 ORDER BY seq \
                 LIMIT $2",
            )
            .bind(sink)
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in rows {
                out.push(Queued {
                    seq: r.try_get("seq")?,
                    attempts: r.try_get::<i64, _>("attempts")? as u32,
                    next_us: r.try_get("next_us")?,
                });
            }
            out
        });
        Ok(rows)
    }

    pub async fn pending(&self, sink: &str) -> Result<u64, AlertingError> {
        let n = dispatch!(&self.pool, pool => {
            sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM deliveries WHERE sink = $1")
                .bind(sink)
                .fetch_one(pool)
                .await?
        });
        Ok(n as u64)
    }

    pub async fn event(&self, seq: i64) -> Result<Option<Event>, AlertingError> {
        Ok(self
            .events_after(seq - 1, 1)
            .await?
            .into_iter()
            .find(|e| e.seq == seq))
    }

    /// Removes delivered events from a sink's queue.
    pub async fn delivered(&self, sink: &str, seqs: &[i64]) -> Result<(), AlertingError> {
        if seqs.is_empty() {
            return Ok(());
        }
        dispatch!(&self.pool, pool => {
            let mut tx = pool.begin().await?;
            for s in seqs {
                sqlx::query("DELETE FROM deliveries WHERE sink = $1 AND seq = $2")
                    .bind(sink)
                    .bind(*s)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// Records a failed attempt and when to try again.
    pub async fn retry_later(
        &self,
        sink: &str,
        seq: i64,
        attempts: u32,
        next_us: i64,
        error: &str,
    ) -> Result<(), AlertingError> {
        dispatch!(&self.pool, pool => {
            sqlx::query(
                "UPDATE deliveries SET attempts = $1, next_us = $2, last_error = $3 WHERE sink \
                 = $4 AND seq = $5",
            )
            .bind(i64::from(attempts))
            .bind(next_us)
            .bind(error)
            .bind(sink)
            .bind(seq)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// Moves a delivery that will not succeed to the dead letters, with the reason.
    pub async fn dead_letter(
        &self,
        sink: &str,
        seq: i64,
        attempts: u32,
        reason: &str,
    ) -> Result<(), AlertingError> {
        let now = crate::now_us();
        dispatch!(&self.pool, pool => {
            let mut tx = pool.begin().await?;
            sqlx::query(
                "INSERT INTO dead_letters (sink, seq, attempts, failed_us, reason) VALUES ($1, \
                 $2, $3, $4, $5) ON CONFLICT (sink, seq) DO NOTHING",
            )
            .bind(sink)
            .bind(seq)
            .bind(i64::from(attempts))
            .bind(now)
            .bind(reason)
            .execute(&mut *tx)
            .await?;
            sqlx::query("DELETE FROM deliveries WHERE sink = $1 AND seq = $2")
                .bind(sink)
                .bind(seq)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// Dead letters of a sink, oldest first: `(seq, attempts, reason)`.
    pub async fn dead_letters(&self, sink: &str) -> Result<Vec<(i64, u32, String)>, AlertingError> {
        let rows = dispatch!(&self.pool, pool => {
            let rows = sqlx::query(
                "SELECT seq, attempts, reason FROM dead_letters WHERE sink = $1 ORDER BY seq",
            )
            .bind(sink)
            .fetch_all(pool)
            .await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in rows {
                out.push((
                    r.try_get::<i64, _>("seq")?,
                    r.try_get::<i64, _>("attempts")? as u32,
                    r.try_get::<String, _>("reason")?,
                ));
            }
            out
        });
        Ok(rows)
    }

    /// Drops the queues of sinks no longer configured (or disabled).
    pub async fn drop_queues_except(&self, keep: &[String]) -> Result<u64, AlertingError> {
        let sinks = dispatch!(&self.pool, pool => {
            sqlx::query_scalar::<_, String>("SELECT DISTINCT sink FROM deliveries")
                .fetch_all(pool)
                .await?
        });
        let mut n = 0;
        for s in sinks.iter().filter(|s| !keep.contains(s)) {
            n += dispatch!(&self.pool, pool => {
                sqlx::query("DELETE FROM deliveries WHERE sink = $1")
                    .bind(s)
                    .execute(pool)
                    .await?
                    .rows_affected()
            });
        }
        Ok(n)
    }

    // ---- detection watermarks, retention ----

    pub async fn watermark(&self, source: &str) -> Result<Option<i64>, AlertingError> {
        let t = dispatch!(&self.pool, pool => {
            sqlx::query_scalar::<_, i64>("SELECT time_us FROM watermarks WHERE source = $1")
                .bind(source)
                .fetch_optional(pool)
                .await?
        });
        Ok(t)
    }

    pub async fn set_watermark(&self, source: &str, time_us: i64) -> Result<(), AlertingError> {
        dispatch!(&self.pool, pool => {
            sqlx::query(
                "INSERT INTO watermarks (source, time_us) VALUES ($1, $2) ON CONFLICT (source) \
                 DO UPDATE SET time_us = $2",
            )
            .bind(source)
            .bind(time_us)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// Deletes ended alerts, events and dead letters older than `before_us`; keeps every event
    /// still queued for a sink. Returns how many alerts went.
    pub async fn delete_before(&self, before_us: i64) -> Result<u64, AlertingError> {
        let n = dispatch!(&self.pool, pool => {
            let n = sqlx::query(
                "DELETE FROM alerts WHERE ended_us <> 0 AND last_seen_us < $1 AND state = $2",
            )
            .bind(before_us)
            .bind(pb::AlertState::Resolved as i64)
            .execute(pool)
            .await?
            .rows_affected();
            sqlx::query(
                "DELETE FROM events WHERE time_us < $1 AND seq NOT IN (SELECT seq FROM \
                 deliveries)",
            )
            .bind(before_us)
            .execute(pool)
            .await?;
            sqlx::query("DELETE FROM dead_letters WHERE failed_us < $1")
                .bind(before_us)
                .execute(pool)
                .await?;
            n
        });
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kordon_proto::common::v1 as common;
    use kordon_proto::time::timestamp_from_micros;

    pub(crate) async fn sqlite() -> (Store, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("a.db").display());
        (Store::open(&url).await.unwrap(), dir)
    }

    fn alert(id: &str, opened_us: i64) -> pb::Alert {
        pb::Alert {
            id: id.into(),
            site: "burgas".into(),
            rule_id: "r1".into(),
            camera: Some(common::CameraRef {
                site: "burgas".into(),
                camera: "port-gate".into(),
            }),
            state: pb::AlertState::Open as i32,
            severity: pb::AlertSeverity::High as i32,
            opened_at: Some(timestamp_from_micros(opened_us)),
            last_seen_at: Some(timestamp_from_micros(opened_us)),
            version: 1,
            ..Default::default()
        }
    }

    fn change(a: pb::Alert, kind: pb::AlertEventKind, sinks: &[&str]) -> Change {
        Change {
            time_us: micros(&a.last_seen_at),
            alert: a,
            dedup_key: "port-gate".into(),
            kind,
            sinks: sinks.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[tokio::test]
    async fn commits_number_events_and_queue_deliveries() {
        let (s, _dir) = sqlite().await;
        let a = alert("a1", 1_000);
        let ev = s
            .commit(vec![
                change(a.clone(), pb::AlertEventKind::Opened, &["hook", "mqtt"]),
                change(
                    pb::Alert {
                        occurrences: 2,
                        version: 2,
                        ..a.clone()
                    },
                    pb::AlertEventKind::Updated,
                    &[],
                ),
            ])
            .await
            .unwrap();
        assert_eq!(ev.len(), 2);
        assert!(ev[1].seq > ev[0].seq);
        assert_eq!(ev[0].response.cursor, ev[0].seq.to_string());
        assert_eq!(s.alert("a1").await.unwrap().unwrap().occurrences, 2);
        assert_eq!(s.events_after(0, 10).await.unwrap(), ev);
        assert_eq!(s.queue("hook", 10).await.unwrap().len(), 1);
        assert_eq!(s.pending("mqtt").await.unwrap(), 1);

        // A failed attempt, then the dead-letter table; the queue goes on.
        s.retry_later("hook", ev[0].seq, 1, 5, "connection refused")
            .await
            .unwrap();
        assert_eq!(s.queue("hook", 1).await.unwrap()[0].attempts, 1);
        s.dead_letter("hook", ev[0].seq, 8, "HTTP 400")
            .await
            .unwrap();
        assert!(s.queue("hook", 10).await.unwrap().is_empty());
        assert_eq!(
            s.dead_letters("hook").await.unwrap(),
            [(ev[0].seq, 8, "HTTP 400".to_string())]
        );
        s.delivered("mqtt", &[ev[0].seq]).await.unwrap();
        assert_eq!(s.pending("mqtt").await.unwrap(), 0);
        assert_eq!(s.seq_before(1_000).await.unwrap(), 0);
        assert_eq!(s.seq_before(1_001).await.unwrap(), ev[1].seq);
    }

    #[tokio::test]
    async fn alerts_list_newest_first_with_filters_and_pages() {
        let (s, _dir) = sqlite().await;
        let mut changes = Vec::new();
        for i in 0..5 {
            let mut a = alert(&format!("a{i}"), 1_000 + i);
            if i == 4 {
                a.state = pb::AlertState::Resolved as i32;
            }
            changes.push(change(a, pb::AlertEventKind::Opened, &[]));
        }
        s.commit(changes).await.unwrap();
        let f = AlertFilter::default();
        let page = s.list_alerts(&f, None, 2).await.unwrap();
        let ids: Vec<_> = page.iter().map(|a| a.id.as_str()).collect();
        assert_eq!(ids, ["a4", "a3"]);
        let last = page.last().unwrap();
        let rest = s
            .list_alerts(&f, Some((micros(&last.opened_at), last.id.clone())), 10)
            .await
            .unwrap();
        assert_eq!(rest.len(), 3);
        let open = AlertFilter {
            states: vec![pb::AlertState::Open as i32],
            cameras: vec![("burgas".into(), "port-gate".into())],
            min_severity: pb::AlertSeverity::High as i32,
            partner: Some(false),
            ..Default::default()
        };
        let got = s.list_alerts(&open, None, 10).await.unwrap();
        assert_eq!(got.len(), 4);
        assert!(got.iter().all(|a| open.matches(a)));
        assert_eq!(s.recent_alerts(0).await.unwrap().len(), 5);
    }

    #[tokio::test]
    async fn rules_and_watermarks_round_trip() {
        let (s, _dir) = sqlite().await;
        let r = pb::Rule {
            id: "r1".into(),
            site: "burgas".into(),
            name: "road".into(),
            version: 1,
            ..Default::default()
        };
        s.put_rule(&r, true).await.unwrap();
        let dup = pb::Rule {
            id: "r2".into(),
            ..r.clone()
        };
        let e = s.put_rule(&dup, false).await.unwrap_err();
        assert!(matches!(e, AlertingError::AlreadyExists(_)), "{e}");
        assert_eq!(
            s.rules().await.unwrap(),
            [StoredRule {
                rule: r,
                managed: true
            }]
        );
        assert!(s.delete_rule("r1").await.unwrap());
        assert_eq!(s.watermark("d0").await.unwrap(), None);
        s.set_watermark("d0", 42).await.unwrap();
        s.set_watermark("d0", 43).await.unwrap();
        assert_eq!(s.watermark("d0").await.unwrap(), Some(43));
    }
}
