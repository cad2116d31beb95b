//! Stored detections and snapshots, in SQLite or PostgreSQL (`kordon-db`).
//!
//! Every query is written once with `$N` placeholders and compiled for both backends by
//! [`kordon_db::dispatch!`]. Rows keep the facts of a [`pb::Detection`] in columns (times in
//! microseconds since the Unix epoch), zones and crossings as JSON; `seq` orders rows that share
//! a time, so page tokens (`<time_us>:<seq>`) are stable however many rows arrive meanwhile.

use kordon_db::{Migration, Pool, dispatch};
use kordon_proto::common::v1 as common;
use kordon_proto::detection::v1 as pb;
use kordon_proto::time::{micros_from_timestamp, timestamp_from_micros};
use serde::{Deserialize, Serialize};
use sqlx::Row;

use crate::DetectionError;

const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        description: "detections",
        sqlite: include_str!("../migrations/sqlite/0001_detections.sql"),
        postgres: include_str!("../migrations/postgres/0001_detections.sql"),
    },
    Migration {
        version: 2,
        description: "segments",
        sqlite: include_str!("../migrations/sqlite/0002_segments.sql"),
        postgres: include_str!("../migrations/postgres/0002_segments.sql"),
    },
];

/// Longest page of a list.
pub const MAX_PAGE: u32 = 1000;

/// What to list; empty means no filter.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub site: String,
    pub cameras: Vec<(String, String)>,
    pub classes: Vec<String>,
    pub min_confidence: f32,
    pub zones: Vec<String>,
    /// Inclusive.
    pub from_us: i64,
    /// Exclusive; `None` means no end.
    pub to_us: Option<i64>,
}

impl Filter {
    /// Whether a live detection passes (the same rules as the SQL below).
    pub fn matches(&self, d: &pb::Detection) -> bool {
        let cam = d.camera.as_ref();
        let (site, camera) = cam
            .map(|c| (c.site.as_str(), c.camera.as_str()))
            .unwrap_or(("", ""));
        (self.site.is_empty() || self.site == site)
            && (self.cameras.is_empty()
                || self.cameras.iter().any(|(s, c)| s == site && c == camera))
            && (self.classes.is_empty() || self.classes.contains(&d.class_label))
            && d.confidence >= self.min_confidence
            && (self.zones.is_empty() || d.zones.iter().any(|z| self.zones.contains(&z.zone)))
    }
}

/// A snapshot detection took.
#[derive(Debug, Clone, PartialEq)]
pub struct SnapshotRow {
    pub id: String,
    pub site: String,
    pub camera: String,
    pub captured_us: i64,
    pub detection_id: String,
    pub object_key: String,
    pub content_type: String,
    pub width: u32,
    pub height: u32,
    pub size_bytes: u64,
    pub sha256: [u8; 32],
    /// Storage's id once registered; empty while pending.
    pub storage_id: String,
}

#[derive(Serialize, Deserialize)]
struct ZoneJson {
    zone: String,
    entered_us: i64,
}

#[derive(Serialize, Deserialize)]
struct CrossingJson {
    line: String,
    direction: i32,
}

enum Bind {
    Text(String),
    Int(i64),
    Real(f32),
}

/// The detection database.
#[derive(Clone, Debug)]
pub struct Store {
    pool: Pool,
}

fn us(t: &Option<prost_types::Timestamp>) -> i64 {
    t.as_ref().and_then(micros_from_timestamp).unwrap_or(0)
}

impl Store {
    /// Opens (creating if needed) and migrates the database at `url`.
    pub async fn open(url: &str) -> Result<Store, DetectionError> {
        let pool = Pool::connect(url, 4, "kordon-detection").await?;
        pool.migrate(MIGRATIONS).await?;
        Ok(Store { pool })
    }

    pub fn backend(&self) -> &'static str {
        self.pool.backend()
    }

    pub async fn close(&self) {
        self.pool.close().await
    }

    /// Stores detections (one transaction); a detection already stored (same id) is kept as it
    /// was.
    pub async fn insert(&self, detections: &[pb::Detection]) -> Result<(), DetectionError> {
        if detections.is_empty() {
            return Ok(());
        }
        const SQL: &str = "INSERT INTO detections (id, site, camera, time_us, class_label, \
             confidence, x1, y1, x2, y2, track_id, phase, track_started_us, zone_names, zones, \
             crossings, snapshot_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, \
             $13, $14, $15, $16, $17) ON CONFLICT (id) DO NOTHING";
        dispatch!(&self.pool, pool => {
            let mut tx = pool.begin().await?;
            for d in detections {
                let cam = d.camera.clone().unwrap_or_default();
                let b = d.r#box.unwrap_or_default();
                let zones: Vec<ZoneJson> = d
                    .zones
                    .iter()
                    .map(|z| ZoneJson { zone: z.zone.clone(), entered_us: us(&z.entered_at) })
                    .collect();
                let crossings: Vec<CrossingJson> = d
                    .crossings
                    .iter()
                    .map(|c| CrossingJson { line: c.line.clone(), direction: c.direction })
                    .collect();
                let zone_names = if d.zones.is_empty() {
                    String::new()
                } else {
                    let names: Vec<&str> = d.zones.iter().map(|z| z.zone.as_str()).collect();
                    format!(",{},", names.join(","))
                };
                sqlx::query(SQL)
                    .bind(&d.id)
                    .bind(&cam.site)
                    .bind(&cam.camera)
                    .bind(us(&d.time))
                    .bind(&d.class_label)
                    .bind(d.confidence)
                    .bind(b.left)
                    .bind(b.top)
                    .bind(b.right)
                    .bind(b.bottom)
                    .bind(d.track_id as i64)
                    .bind(d.phase)
                    .bind(us(&d.track_started_at))
                    .bind(zone_names)
                    .bind(serde_json::to_string(&zones).unwrap_or_default())
                    .bind(serde_json::to_string(&crossings).unwrap_or_default())
                    .bind(&d.snapshot_id)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// Detections matching `f`, oldest first, after the page position `after`
    /// (`(time_us, seq)` of the last row seen), at most `limit`. Returns each row's position.
    pub async fn list(
        &self,
        f: &Filter,
        after: Option<(i64, i64)>,
        limit: u32,
    ) -> Result<Vec<((i64, i64), pb::Detection)>, DetectionError> {
        let mut sql = String::from(
            "SELECT seq, id, site, camera, time_us, class_label, confidence, x1, y1, x2, y2, \
             track_id, phase, track_started_us, zones, crossings, snapshot_id, segment_sequence \
             FROM detections WHERE time_us >= $1",
        );
        let mut binds = vec![Bind::Int(f.from_us)];
        let arg = |binds: &mut Vec<Bind>, b: Bind| {
            binds.push(b);
            format!("${}", binds.len())
        };
        if let Some(to) = f.to_us {
            let p = arg(&mut binds, Bind::Int(to));
            sql.push_str(&format!(" AND time_us < {p}"));
        }
        if let Some((t, s)) = after {
            let pt = arg(&mut binds, Bind::Int(t));
            let ps = arg(&mut binds, Bind::Int(s));
            sql.push_str(&format!(
                " AND (time_us > {pt} OR (time_us = {pt} AND seq > {ps}))"
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
        if !f.classes.is_empty() {
            let ps: Vec<String> = f
                .classes
                .iter()
                .map(|c| arg(&mut binds, Bind::Text(c.clone())))
                .collect();
            sql.push_str(&format!(" AND class_label IN ({})", ps.join(", ")));
        }
        if f.min_confidence > 0.0 {
            let p = arg(&mut binds, Bind::Real(f.min_confidence));
            sql.push_str(&format!(" AND confidence >= {p}"));
        }
        if !f.zones.is_empty() {
            let ors: Vec<String> = f
                .zones
                .iter()
                .map(|z| {
                    let p = arg(&mut binds, Bind::Text(format!("%,{z},%")));
                    format!("zone_names LIKE {p}")
                })
                .collect();
            sql.push_str(&format!(" AND ({})", ors.join(" OR ")));
        }
        let p = arg(&mut binds, Bind::Int(i64::from(limit.min(MAX_PAGE))));
        sql.push_str(&format!(" ORDER BY time_us, seq LIMIT {p}"));

        let rows = dispatch!(&self.pool, pool => {
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for b in binds {
                q = match b {
                    Bind::Text(s) => q.bind(s),
                    Bind::Int(i) => q.bind(i),
                    Bind::Real(r) => q.bind(r),
                };
            }
            let rows = q.fetch_all(pool).await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in rows {
                let time_us: i64 = r.try_get("time_us")?;
                let zones: Vec<ZoneJson> =
                    serde_json::from_str(&r.try_get::<String, _>("zones")?).unwrap_or_default();
                let crossings: Vec<CrossingJson> =
                    serde_json::from_str(&r.try_get::<String, _>("crossings")?)
                        .unwrap_or_default();
                let d = pb::Detection {
                    id: r.try_get("id")?,
                    camera: Some(common::CameraRef {
                        site: r.try_get("site")?,
                        camera: r.try_get("camera")?,
                    }),
                    time: Some(timestamp_from_micros(time_us)),
                    class_label: r.try_get("class_label")?,
                    confidence: r.try_get("confidence")?,
                    r#box: Some(common::BoundingBox {
                        left: r.try_get("x1")?,
                        top: r.try_get("y1")?,
                        right: r.try_get("x2")?,
                        bottom: r.try_get("y2")?,
                    }),
                    track_id: r.try_get::<i64, _>("track_id")? as u64,
                    phase: r.try_get("phase")?,
                    track_started_at: Some(timestamp_from_micros(
                        r.try_get("track_started_us")?,
                    )),
                    zones: zones
                        .into_iter()
                        .map(|z| pb::ZonePresence {
                            zone: z.zone,
                            entered_at: Some(timestamp_from_micros(z.entered_us)),
                        })
                        .collect(),
                    crossings: crossings
                        .into_iter()
                        .map(|c| pb::LineCrossing { line: c.line, direction: c.direction })
                        .collect(),
                    snapshot_id: r.try_get("snapshot_id")?,
                    segment_sequence: r
                        .try_get::<Option<i64>, _>("segment_sequence")?
                        .map_or(0, |q| q.max(0) as u64),
                };
                out.push(((time_us, r.try_get::<i64, _>("seq")?), d));
            }
            out
        });
        Ok(rows)
    }

    /// Cameras with detections before `before_us` not yet linked to a segment.
    pub async fn unlinked_cameras(
        &self,
        before_us: i64,
    ) -> Result<Vec<(String, String)>, DetectionError> {
        let cams = dispatch!(&self.pool, pool => {
            sqlx::query_as::<_, (String, String)>(
                "SELECT DISTINCT site, camera FROM detections \
                 WHERE segment_sequence IS NULL AND time_us < $1 ORDER BY site, camera",
            )
            .bind(before_us)
            .fetch_all(pool)
            .await?
        });
        Ok(cams)
    }

    /// A camera's oldest detections before `before_us` not yet linked to a segment:
    /// `(seq, time_us)`, at most `limit`.
    pub async fn unlinked(
        &self,
        site: &str,
        camera: &str,
        before_us: i64,
        limit: u32,
    ) -> Result<Vec<(i64, i64)>, DetectionError> {
        let rows = dispatch!(&self.pool, pool => {
            sqlx::query_as::<_, (i64, i64)>(
                "SELECT seq, time_us FROM detections WHERE site = $1 AND camera = $2 \
                 AND segment_sequence IS NULL AND time_us < $3 ORDER BY time_us, seq LIMIT $4",
            )
            .bind(site)
            .bind(camera)
            .bind(before_us)
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await?
        });
        Ok(rows)
    }

    /// Sets the segment of detections (`(seq, segment sequence)`, 0 for none), in one
    /// transaction.
    pub async fn link(&self, links: &[(i64, u64)]) -> Result<(), DetectionError> {
        if links.is_empty() {
            return Ok(());
        }
        dispatch!(&self.pool, pool => {
            let mut tx = pool.begin().await?;
            for &(seq, segment) in links {
                sqlx::query("UPDATE detections SET segment_sequence = $1 WHERE seq = $2")
                    .bind(i64::try_from(segment).unwrap_or(i64::MAX))
                    .bind(seq)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// Gives up linking detections older than `before_us`: their segment becomes 0 (not
    /// recorded). Returns how many.
    pub async fn unlink_before(&self, before_us: i64) -> Result<u64, DetectionError> {
        let n = dispatch!(&self.pool, pool => {
            sqlx::query(
                "UPDATE detections SET segment_sequence = 0 \
                 WHERE segment_sequence IS NULL AND time_us < $1",
            )
            .bind(before_us)
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(n)
    }

    /// Deletes detections (and snapshot rows) older than `before_us`; returns how many
    /// detections went.
    pub async fn delete_before(&self, before_us: i64) -> Result<u64, DetectionError> {
        let n = dispatch!(&self.pool, pool => {
            let n = sqlx::query("DELETE FROM detections WHERE time_us < $1")
                .bind(before_us)
                .execute(pool)
                .await?
                .rows_affected();
            sqlx::query("DELETE FROM snapshots WHERE captured_us < $1")
                .bind(before_us)
                .execute(pool)
                .await?;
            n
        });
        Ok(n)
    }

    pub async fn insert_snapshot(&self, s: &SnapshotRow) -> Result<(), DetectionError> {
        dispatch!(&self.pool, pool => {
            sqlx::query(
                "INSERT INTO snapshots (id, site, camera, captured_us, detection_id, object_key, \
                 content_type, width, height, size_bytes, sha256, storage_id) VALUES ($1, $2, \
                 $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) ON CONFLICT (id) DO NOTHING",
            )
            .bind(&s.id)
            .bind(&s.site)
            .bind(&s.camera)
            .bind(s.captured_us)
            .bind(&s.detection_id)
            .bind(&s.object_key)
            .bind(&s.content_type)
            .bind(s.width as i32)
            .bind(s.height as i32)
            .bind(s.size_bytes as i64)
            .bind(s.sha256.to_vec())
            .bind(&s.storage_id)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// Records storage's id of a snapshot once it is registered there.
    pub async fn snapshot_registered(
        &self,
        id: &str,
        storage_id: &str,
    ) -> Result<(), DetectionError> {
        dispatch!(&self.pool, pool => {
            sqlx::query("UPDATE snapshots SET storage_id = $1 WHERE id = $2")
                .bind(storage_id)
                .bind(id)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// Marks a snapshot that storage refused for good; it is not retried.
    pub async fn snapshot_failed(&self, id: &str, why: &str) -> Result<(), DetectionError> {
        dispatch!(&self.pool, pool => {
            sqlx::query("UPDATE snapshots SET failure = $1 WHERE id = $2")
                .bind(why)
                .bind(id)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    pub async fn snapshot(&self, id: &str) -> Result<Option<SnapshotRow>, DetectionError> {
        let row = dispatch!(&self.pool, pool => {
            match sqlx::query(
                "SELECT id, site, camera, captured_us, detection_id, object_key, content_type, \
                 width, height, size_bytes, sha256, storage_id FROM snapshots WHERE id = $1",
            )
            .bind(id)
            .fetch_optional(pool)
            .await?
            {
                None => None,
                Some(r) => {
                    let sha: Vec<u8> = r.try_get("sha256")?;
                    Some(SnapshotRow {
                        id: r.try_get("id")?,
                        site: r.try_get("site")?,
                        camera: r.try_get("camera")?,
                        captured_us: r.try_get("captured_us")?,
                        detection_id: r.try_get("detection_id")?,
                        object_key: r.try_get("object_key")?,
                        content_type: r.try_get("content_type")?,
                        width: r.try_get::<i32, _>("width")? as u32,
                        height: r.try_get::<i32, _>("height")? as u32,
                        size_bytes: r.try_get::<i64, _>("size_bytes")? as u64,
                        sha256: sha.try_into().unwrap_or([0; 32]),
                        storage_id: r.try_get("storage_id")?,
                    })
                }
            }
        });
        Ok(row)
    }

    /// Snapshots not yet registered with storage (after a restart), oldest first.
    pub async fn pending_snapshots(&self, limit: u32) -> Result<Vec<String>, DetectionError> {
        let ids = dispatch!(&self.pool, pool => {
            sqlx::query_scalar::<_, String>(
                "SELECT id FROM snapshots WHERE storage_id = '' AND failure = '' \
                 ORDER BY captured_us LIMIT $1",
            )
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await?
        });
        Ok(ids)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn detection(id: &str, camera: &str, time_us: i64, zones: &[&str]) -> pb::Detection {
        pb::Detection {
            id: id.to_string(),
            camera: Some(common::CameraRef {
                site: "burgas".into(),
                camera: camera.into(),
            }),
            time: Some(timestamp_from_micros(time_us)),
            class_label: "person".into(),
            confidence: 0.8,
            r#box: Some(common::BoundingBox {
                left: 0.1,
                top: 0.2,
                right: 0.3,
                bottom: 0.6,
            }),
            track_id: 7,
            phase: pb::TrackPhase::Started as i32,
            track_started_at: Some(timestamp_from_micros(time_us)),
            zones: zones
                .iter()
                .map(|z| pb::ZonePresence {
                    zone: z.to_string(),
                    entered_at: Some(timestamp_from_micros(time_us)),
                })
                .collect(),
            crossings: vec![pb::LineCrossing {
                line: "road".into(),
                direction: pb::LineDirection::LeftToRight as i32,
            }],
            snapshot_id: String::new(),
            segment_sequence: 0,
        }
    }

    async fn sqlite() -> (Store, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("d.db").display());
        (Store::open(&url).await.unwrap(), dir)
    }

    #[tokio::test]
    async fn detections_round_trip_filter_and_page() {
        let (s, _dir) = sqlite().await;
        let mut all = Vec::new();
        for i in 0..5 {
            let zones: &[&str] = if i % 2 == 0 { &["river-bank"] } else { &[] };
            all.push(detection(&format!("d{i}"), "gate-1", 1_000 + i, zones));
        }
        all.push(detection("o", "gate-10", 1_002, &["river-bank"]));
        s.insert(&all).await.unwrap();
        // Inserting again keeps one copy.
        s.insert(&all[..2]).await.unwrap();

        let f = Filter {
            cameras: vec![("burgas".into(), "gate-1".into())],
            ..Default::default()
        };
        let first = s.list(&f, None, 3).await.unwrap();
        assert_eq!(first.len(), 3);
        assert_eq!(first[0].1, all[0], "every field survives the round trip");
        let rest = s.list(&f, Some(first[2].0), 10).await.unwrap();
        let ids: Vec<_> = rest.iter().map(|r| r.1.id.as_str()).collect();
        assert_eq!(ids, ["d3", "d4"]);

        let zoned = Filter {
            zones: vec!["river-bank".into()],
            ..Default::default()
        };
        let z = s.list(&zoned, None, 10).await.unwrap();
        assert_eq!(z.len(), 4, "d0, d2, o, d4");
        assert!(z.iter().all(|r| zoned.matches(&r.1)));
        let none = Filter {
            zones: vec!["river".into()],
            ..Default::default()
        };
        assert!(
            s.list(&none, None, 10).await.unwrap().is_empty(),
            "names match whole"
        );

        let ranged = Filter {
            from_us: 1_001,
            to_us: Some(1_003),
            classes: vec!["person".into()],
            min_confidence: 0.5,
            ..Default::default()
        };
        assert_eq!(s.list(&ranged, None, 10).await.unwrap().len(), 3);
        assert_eq!(s.delete_before(1_003).await.unwrap(), 4);
    }

    #[tokio::test]
    async fn snapshots_are_pending_until_registered() {
        let (s, _dir) = sqlite().await;
        let row = SnapshotRow {
            id: "s1".into(),
            site: "burgas".into(),
            camera: "gate-1".into(),
            captured_us: 5,
            detection_id: "d1".into(),
            object_key: "burgas/gate-1/snapshots/x.jpg".into(),
            content_type: "image/jpeg".into(),
            width: 640,
            height: 360,
            size_bytes: 1234,
            sha256: [7; 32],
            storage_id: String::new(),
        };
        s.insert_snapshot(&row).await.unwrap();
        assert_eq!(s.pending_snapshots(10).await.unwrap(), ["s1"]);
        s.insert_snapshot(&SnapshotRow {
            id: "s2".into(),
            ..row.clone()
        })
        .await
        .unwrap();
        s.snapshot_failed("s2", "refused").await.unwrap();
        s.snapshot_registered("s1", "st-1").await.unwrap();
        assert!(s.pending_snapshots(10).await.unwrap().is_empty());
        let back = s.snapshot("s1").await.unwrap().unwrap();
        assert_eq!(back.storage_id, "st-1");
        assert_eq!(back.sha256, [7; 32]);
        assert!(s.snapshot("nope").await.unwrap().is_none());
    }
}
