//! Retention by age, and legal holds that stop it.
//!
//! - The retention in effect for a camera is its override, else its site's default, else the
//!   service default (`StorageConfig::default_retention`, 30 days).
//! - A sweep ([`Storage::apply_retention`], run every `retention_interval` by
//!   [`Storage::run_retention`]) deletes segments whose end is older than the retention, except
//!   those overlapping an active legal hold on their camera. For each camera and sweep, one
//!   access-log entry (action DELETE, principal `kordon-storage`) naming every segment is
//!   committed *before* any object is deleted; then each object is deleted and its record kept
//!   as a tombstone (`deleted_at_us`), so the hash chain still verifies and verification counts
//!   it as deleted by retention rather than missing.
//! - Under S3 Object Lock, deleting a version that is still retained only adds a delete
//!   marker: the bytes stay in the bucket until their retain-until date, whatever the index says.
//! - Legal holds are idempotent by (site, request_id), cover cameras × a time range (open-ended
//!   while `end` is unset), and are released, never deleted.

use std::time::Duration;

use kordon_objects::time::{MICROS, now_micros};
use kordon_objects::{ObjectPath, ObjectStoreExt};

use crate::StorageError;
use crate::audit::{AccessObjectRec, NewAccessEntry};
use crate::index::{Index, SegmentRecord};
use crate::metrics::StorageMetrics;
use crate::service::{Storage, duration_us};

/// The principal of retention's access-log entries.
pub const RETENTION_PRINCIPAL: &str = "kordon-storage";
/// `kordon.storage.v1.LegalHoldState` values.
pub const HOLD_ACTIVE: i32 = 1;
pub const HOLD_RELEASED: i32 = 2;
/// Shortest retention accepted.
pub const MIN_RETENTION: Duration = Duration::from_secs(3600);
/// Segments examined per query during a sweep.
const SWEEP_BATCH: u32 = 500;

/// A stored retention policy (a site default when `camera` is empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionPolicy {
    pub site: String,
    pub camera: String,
    pub retention_us: i64,
    pub updated_at_us: i64,
    pub updated_by: String,
}

/// The policy in effect, and whether it comes from a wider scope than the one asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EffectivePolicy {
    pub policy: RetentionPolicy,
    pub inherited: bool,
}

/// A legal hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegalHold {
    pub id: String,
    pub site: String,
    pub cameras: Vec<String>,
    pub start_us: i64,
    pub end_us: Option<i64>,
    pub state: i32,
    pub case_id: String,
    pub reason: String,
    pub created_by: String,
    pub created_at_us: i64,
    pub released_by: String,
    pub released_at_us: Option<i64>,
    pub release_reason: String,
}

impl LegalHold {
    /// Whether the hold (if active) covers the segment's time.
    pub fn covers(&self, s: &SegmentRecord) -> bool {
        self.state == HOLD_ACTIVE
            && s.end_us > self.start_us
            && self.end_us.is_none_or(|end| s.start_us < end)
    }
}

/// A hold to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewHold {
    pub site: String,
    pub cameras: Vec<String>,
    pub start_us: i64,
    pub end_us: Option<i64>,
    pub case_id: String,
    pub reason: String,
    pub created_by: String,
    pub request_id: String,
}

/// What one sweep did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetentionRun {
    /// Segments deleted (objects removed, records tombstoned).
    pub deleted: u64,
    /// Expired segments kept because a legal hold covers them.
    pub held: u64,
    /// Segments whose object could not be deleted (retried next sweep).
    pub failed: u64,
}

impl Index {
    /// Live (not tombstoned) segments of a camera that ended by `cutoff_us`, oldest first,
    /// after the `(start_us, sequence)` cursor.
    pub async fn expired_segments(
        &self,
        site: &str,
        camera: &str,
        cutoff_us: i64,
        after: (i64, u64),
        limit: u32,
    ) -> Result<Vec<SegmentRecord>, StorageError> {
        let mut out = Vec::new();
        // list_segments covers [from, to); segments ending by the cutoff start before it.
        for s in self
            .list_segments(site, camera, i64::MIN / 2, cutoff_us, Some(after), limit)
            .await?
        {
            if s.end_us <= cutoff_us {
                out.push(s);
            }
        }
        Ok(out)
    }
}

impl Storage {
    /// What retention will do to the camera's segments: a function giving each segment's
    /// `(retain_until_us, on_legal_hold)`.
    pub async fn segment_fate(
        &self,
        site: &str,
        camera: &str,
    ) -> Result<impl Fn(&SegmentRecord) -> (i64, bool) + use<>, StorageError> {
        let retention_us = self
            .effective_policy(site, camera)
            .await?
            .policy
            .retention_us;
        let holds = self.index().active_holds(site, camera).await?;
        Ok(move |s: &SegmentRecord| {
            (
                s.end_us.saturating_add(retention_us),
                holds.iter().any(|h| h.covers(s)),
            )
        })
    }

    /// The retention in effect for a site default (`camera` empty) or a camera.
    pub async fn effective_policy(
        &self,
        site: &str,
        camera: &str,
    ) -> Result<EffectivePolicy, StorageError> {
        let idx = self.index();
        if !camera.is_empty()
            && let Some(p) = idx.retention_policy(site, camera).await?
        {
            return Ok(EffectivePolicy {
                policy: p,
                inherited: false,
            });
        }
        if let Some(mut p) = idx.retention_policy(site, "").await? {
            p.camera = camera.to_string();
            return Ok(EffectivePolicy {
                policy: p,
                inherited: !camera.is_empty(),
            });
        }
        Ok(EffectivePolicy {
            policy: RetentionPolicy {
                site: site.to_string(),
                camera: camera.to_string(),
                retention_us: duration_us(self.options().default_retention),
                updated_at_us: 0,
                updated_by: String::new(),
            },
            inherited: true,
        })
    }

    /// One retention sweep over every camera at `now_us`; see the module docs.
    pub async fn apply_retention(&self, now_us: i64) -> Result<RetentionRun, StorageError> {
        let mut run = RetentionRun::default();
        for (site, camera) in self.index().all_cameras().await? {
            let policy = self.effective_policy(&site, &camera).await?.policy;
            let cutoff = now_us.saturating_sub(policy.retention_us);
            let holds = self.index().active_holds(&site, &camera).await?;
            let mut after = (i64::MIN, 0u64);
            loop {
                let batch = self
                    .index()
                    .expired_segments(&site, &camera, cutoff, after, SWEEP_BATCH)
                    .await?;
                let Some(last) = batch.last() else { break };
                after = (last.start_us, last.sequence);
                let (held, expired): (Vec<SegmentRecord>, Vec<SegmentRecord>) = batch
                    .into_iter()
                    .partition(|s| holds.iter().any(|h| h.covers(s)));
                run.held += held.len() as u64;
                if !expired.is_empty() {
                    let r = self
                        .delete_segments(&site, &camera, &expired, &policy)
                        .await?;
                    run.deleted += r.deleted;
                    run.failed += r.failed;
                }
            }
        }
        if run.deleted > 0 || run.failed > 0 {
            tracing::info!(
                deleted = run.deleted,
                held = run.held,
                failed = run.failed,
                "retention sweep"
            );
        }
        Ok(run)
    }

    async fn delete_segments(
        &self,
        site: &str,
        camera: &str,
        segments: &[SegmentRecord],
        policy: &RetentionPolicy,
    ) -> Result<RetentionRun, StorageError> {
        let days = policy.retention_us / (86_400 * MICROS);
        // The deletion is logged, and durable, before anything is deleted.
        self.record_access(&NewAccessEntry {
            site: site.to_string(),
            principal: RETENTION_PRINCIPAL.to_string(),
            principal_name: "retention".to_string(),
            via_service: String::new(),
            source: String::new(),
            action: kordon_proto::storage::v1::AccessAction::Delete as i32,
            objects: segments
                .iter()
                .map(|s| AccessObjectRec {
                    kind: kordon_proto::storage::v1::AccessObjectKind::Segment as i32,
                    site: site.to_string(),
                    camera: camera.to_string(),
                    start_us: Some(s.start_us),
                    end_us: Some(s.end_us),
                    id: s.sequence.to_string(),
                })
                .collect(),
            reason: format!(
                "retention: recorded more than {days} days ({} s) ago and not on legal hold \
                 (with the segments' renditions and thumbnails)",
                policy.retention_us / MICROS
            ),
            case_id: String::new(),
            recipient: String::new(),
            method: "retention".to_string(),
        })
        .await?;
        let mut run = RetentionRun::default();
        let now = now_micros();
        for s in segments {
            // Copies first: a copy never outlives its original.
            let mut copies_gone = true;
            for copy in self
                .index()
                .copies_of_segment(site, camera, s.sequence)
                .await?
            {
                if !self.owns_key(site, camera, &copy) {
                    // Never registered lawfully (registration binds keys to the camera since
                    // index version 5): the record goes, the object is not this camera's.
                    foreign_key(site, camera, s.sequence, &copy);
                    continue;
                }
                match self
                    .objects()
                    .delete(&ObjectPath::from(copy.as_str()))
                    .await
                {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => {
                        tracing::warn!(site, camera, segment = s.sequence, object = %copy,
                                       error = %e, "retention could not delete a copy; retried \
                                       next sweep");
                        copies_gone = false;
                    }
                }
            }
            if !copies_gone {
                run.failed += 1;
                continue;
            }
            self.index()
                .mark_copies_deleted(site, camera, s.sequence, now)
                .await?;
            if !self.owns_key(site, camera, &s.object_key) {
                foreign_key(site, camera, s.sequence, &s.object_key);
                self.index()
                    .mark_segment_deleted(site, camera, s.sequence, now)
                    .await?;
                run.deleted += 1;
                continue;
            }
            let key = ObjectPath::from(s.object_key.as_str());
            match self.objects().delete(&key).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {
                    self.index()
                        .mark_segment_deleted(site, camera, s.sequence, now)
                        .await?;
                    run.deleted += 1;
                }
                Err(e) => {
                    tracing::warn!(site, camera, segment = s.sequence, error = %e,
                                   "retention could not delete the object; retried next sweep");
                    run.failed += 1;
                }
            }
        }
        Ok(run)
    }

    /// Runs [`Storage::apply_retention`] every `retention_interval` until `shutdown`.
    pub async fn run_retention(self, shutdown: impl Future<Output = ()> + Send) {
        let interval = self.options().retention_interval;
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                _ = tokio::time::sleep(interval) => {
                    if let Err(e) = self.apply_retention(now_micros()).await {
                        tracing::error!(error = %e, "retention sweep failed; retried next interval");
                    }
                }
            }
        }
    }
}

/// `retention_us` of a request, at least [`MIN_RETENTION`].
pub fn check_retention(d: Duration) -> Result<i64, StorageError> {
    if d < MIN_RETENTION {
        return Err(StorageError::invalid("retention: at least 1 hour"));
    }
    Ok(duration_us(d))
}

/// A record that names an object outside its camera's folder: retention ends the record but
/// leaves the object alone, since it may be another camera's or another site's footage.
fn foreign_key(site: &str, camera: &str, sequence: u64, key: &str) {
    tracing::error!(site, camera, segment = sequence, object = %key,
                    "retention: the record names an object outside its camera's folder; the \
                     record expires, the object is left untouched");
    StorageMetrics::get().retention_foreign_keys.inc();
}
