//! Drains the spool: stores each segment in object storage, then registers it (or a gap, or the
//! gap before a resume point) with the storage service, strictly in order per camera.
//!
//! Guarantees:
//! - Both steps are idempotent (the object is written create-only and compared by hash when it
//!   exists; storage registration is keyed by camera and hash, gaps by camera and start), so an
//!   entry whose registration failed after a successful upload is simply tried again.
//! - Failures are typed ([`IngestError::is_permanent`]). A transient one (storage unreachable,
//!   overloaded, busy) keeps the entry at the head of its camera's queue and backs that camera
//!   off (capped exponential), without holding up the others. A permanent one (storage refuses
//!   the record as it is, or the spool entry is unusable) moves the entry with its media to the
//!   dead-letter folder ([`Spool::dead_letter`]), counts `kordon_ingest_dead_letter_total`, marks
//!   the camera's status, and the camera's queue goes on: one bad record never blocks a camera.
//! - An entry leaves the spool only once registered or dead-lettered.
//! - A resume point ([`ResumeMeta`]) reaches the head only after every earlier record of its
//!   camera was registered; the uploader then asks storage for the camera's chain head and
//!   registers the hole from there to the resume point as an `ingest_restart` gap — however
//!   long storage took to answer, even across restarts (the resume point is in the spool).
//!
//! On shutdown the uploader keeps draining for a grace period; whatever is left stays in the
//! spool for the next start.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use kordon_proto::storage::v1::storage_service_client::StorageServiceClient;
use kordon_runtime::client::AuthedChannel;
use object_store::ObjectStore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::IngestError;
use crate::error::Refusal;
use crate::metrics;
use crate::segment::{GapMeta, GapReason, Record, ResumeMeta, SegmentMeta, UnixMicros};
use crate::spool::{Entry, Spool};
use crate::status::StatusBoard;

/// A segment queued by this process less than this long ago is linked on the hash its recorder
/// computed while writing it (see [`kordon_objects::Check`]).
pub const TRUST_FRESH_SEGMENTS_FOR: Duration = Duration::from_secs(60);

/// A spooled segment file that cannot be read: gone is a refusal for good (its entry goes to
/// dead-letter), anything else a spool error to retry.
fn unreadable(path: &std::path::Path, e: std::io::Error) -> IngestError {
    if e.kind() == std::io::ErrorKind::NotFound {
        IngestError::refused(
            Refusal::CorruptSpool,
            "the segment's media file is missing from the spool",
        )
    } else {
        IngestError::spool(path, e)
    }
}

/// The spooled file must be as large as the segment's metadata says.
fn check_size(actual: u64, recorded: u64) -> Result<(), IngestError> {
    if actual == recorded {
        return Ok(());
    }
    Err(IngestError::refused(
        Refusal::CorruptSpool,
        format!("spooled file has {actual} bytes, its metadata says {recorded}"),
    ))
}

/// How an object-store failure counts: refusals that no retry can change go to dead-letter.
fn objects_error(e: kordon_objects::ObjectsError) -> IngestError {
    match e {
        // The spooled bytes are not what was hashed while recording.
        kordon_objects::ObjectsError::PayloadMismatch { .. } => {
            IngestError::refused(Refusal::CorruptSpool, e.to_string())
        }
        kordon_objects::ObjectsError::ConflictingObject { .. } => {
            IngestError::refused(Refusal::Conflict, e.to_string())
        }
        kordon_objects::ObjectsError::Config { .. } => {
            IngestError::refused(Refusal::InvalidArgument, e.to_string())
        }
        _ => IngestError::Objects(e.to_string()),
    }
}

/// One finished attempt to store a camera's head entry.
type Attempt = ((String, String), Result<(), IngestError>, Entry);

const RETRY_INITIAL: Duration = Duration::from_millis(500);
const RETRY_MAX: Duration = Duration::from_secs(15);

pub struct Uploader {
    pub spool: Arc<Spool>,
    pub objects: Arc<dyn ObjectStore>,
    /// `objects` when it is a store of local files: segments are linked, not copied.
    pub local_objects: Option<Arc<kordon_objects::object_store::local::LocalFileSystem>>,
    pub storage: StorageServiceClient<AuthedChannel>,
    pub board: Arc<StatusBoard>,
    pub concurrency: usize,
}

impl Uploader {
    /// Runs until `shutdown`, then drains for at most `grace` more.
    pub async fn run(self, shutdown: CancellationToken, grace: Duration) {
        let this = Arc::new(self);
        let mut in_flight: BTreeSet<(String, String)> = BTreeSet::new();
        let mut retry_at: BTreeMap<(String, String), (Instant, Duration)> = BTreeMap::new();
        let mut tasks: JoinSet<Attempt> = JoinSet::new();
        let mut deadline: Option<Instant> = None;
        loop {
            if deadline.is_none() && shutdown.is_cancelled() {
                let pending = this.spool.pending();
                tracing::info!(
                    pending,
                    grace_s = grace.as_secs(),
                    "draining the spool before exit"
                );
                deadline = Some(Instant::now() + grace);
            }
            if let Some(d) = deadline {
                if this.spool.pending() == 0 && tasks.is_empty() {
                    tracing::info!("spool drained");
                    return;
                }
                if Instant::now() >= d {
                    tracing::warn!(
                        pending = this.spool.pending(),
                        "grace period over: the rest stays in the spool for the next start"
                    );
                    return;
                }
            }
            let now = Instant::now();
            for head in this.spool.heads() {
                if tasks.len() >= this.concurrency {
                    break;
                }
                let key = (
                    head.record.site().to_string(),
                    head.record.camera().to_string(),
                );
                if in_flight.contains(&key) || retry_at.get(&key).is_some_and(|(t, _)| *t > now) {
                    continue;
                }
                in_flight.insert(key.clone());
                let me = this.clone();
                let retrying = retry_at.contains_key(&key);
                tasks.spawn(async move {
                    let r = me.store(&head, retrying).await;
                    (key, r, head)
                });
            }
            let m = metrics::get();
            m.spool_bytes.set(this.spool.used_bytes() as i64);
            m.spool_entries.set(this.spool.pending() as i64);

            tokio::select! {
                Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                    let Ok((key, result, entry)) = done else { continue };
                    in_flight.remove(&key);
                    match result {
                        Ok(()) => {
                            retry_at.remove(&key);
                            if let Err(e) = this.spool.complete(&entry) {
                                tracing::error!(error = %e, "stored, but could not remove from the spool (will re-register idempotently)");
                            }
                        }
                        Err(IngestError::Refused { class, message }) => {
                            retry_at.remove(&key);
                            this.refused(&key, &entry, class, &message);
                        }
                        Err(e) => {
                            m.uploads_failed.with_label_values(&[&key.0]).inc();
                            let next = retry_at.get(&key).map(|(_, d)| (*d * 2).min(RETRY_MAX)).unwrap_or(RETRY_INITIAL);
                            retry_at.insert(key.clone(), (Instant::now() + next, next));
                            tracing::warn!(site = %key.0, camera = %key.1, error = %e,
                                retry_in_ms = next.as_millis() as u64, "storing spooled footage failed; kept in the spool");
                            this.board.update(&key.0, &key.1, |s| s.set_error(format!("storing footage: {e}")));
                        }
                    }
                }
                _ = this.spool.wait(Duration::from_millis(250)) => {}
                _ = shutdown.cancelled(), if deadline.is_none() => {}
            }
        }
    }

    /// A permanent refusal: the entry goes to the dead-letter folder and the queue goes on.
    fn refused(&self, key: &(String, String), entry: &Entry, class: Refusal, message: &str) {
        match self.spool.dead_letter(entry, class, message) {
            Ok(_) => {
                metrics::dead_lettered(&key.0, class);
                self.board.update(&key.0, &key.1, |s| {
                    s.dead_letters += 1;
                    s.last_dead_letter = Some((class, SystemTime::now()));
                    s.set_error(format!(
                        "storage refused a record for good ({}); it is kept in the spool's \
                         dead-letter folder",
                        class.as_str()
                    ));
                });
            }
            // Left at the head: retried (and refused again) after the next pass.
            Err(e) => tracing::error!(site = %key.0, camera = %key.1, error = %e,
                "could not move a refused entry to the dead-letter folder; it stays queued"),
        }
    }

    /// Stores one entry. `retrying`: earlier attempts for this camera's head failed.
    async fn store(&self, entry: &Entry, retrying: bool) -> Result<(), IngestError> {
        match &entry.record {
            Record::Segment(m) => self.store_segment(entry, m).await,
            Record::Gap(g) => self.register_gap(g).await,
            Record::Resume(r) => self.resume(r, retrying).await,
        }
    }

    async fn store_segment(&self, entry: &Entry, m: &SegmentMeta) -> Result<(), IngestError> {
        let path = entry.media_path.as_ref().ok_or_else(|| {
            IngestError::refused(Refusal::CorruptSpool, "segment entry without media")
        })?;
        let key = object_store::path::Path::from(m.object_key.as_str());
        if let Some(local) = &self.local_objects {
            let size = tokio::fs::metadata(path)
                .await
                .map_err(|e| unreadable(path, e))?
                .len();
            check_size(size, m.size)?;
            let (local, key2, file, sha) = (local.clone(), key.clone(), path.clone(), m.sha256);
            // A segment this process's recorder hashed as it wrote it and closed moments ago is
            // linked on that hash; one found on disk at start, or queued for long (storage was
            // down), is read and checked first.
            let check = if entry
                .queued_at
                .is_some_and(|t| t.elapsed() < TRUST_FRESH_SEGMENTS_FOR)
            {
                kordon_objects::Check::WrittenHere
            } else {
                kordon_objects::Check::Rehash
            };
            let linked = tokio::task::spawn_blocking(move || {
                kordon_objects::link_immutable(&local, &key2, &file, &sha, check)
            })
            .await
            .map_err(|e| IngestError::Objects(format!("link task: {e}")))?
            .map_err(objects_error)?;
            if linked.is_some() {
                return self.register_segment(m).await;
            }
        }
        let bytes = tokio::fs::read(path)
            .await
            .map_err(|e| unreadable(path, e))?;
        check_size(bytes.len() as u64, m.size)?;
        kordon_objects::put_immutable(&*self.objects, &key, bytes.into(), &m.sha256)
            .await
            .map_err(objects_error)?;
        self.register_segment(m).await
    }

    async fn register_segment(&self, m: &SegmentMeta) -> Result<(), IngestError> {
        self.storage
            .clone()
            .register_segment(m.register_request())
            .await
            .map_err(|s| IngestError::from_storage_status(&s))?;
        metrics::get()
            .segments_stored
            .with_label_values(&[&m.site])
            .inc();
        Ok(())
    }

    async fn register_gap(&self, g: &GapMeta) -> Result<(), IngestError> {
        self.storage
            .clone()
            .register_gap(g.register_request())
            .await
            .map_err(|s| IngestError::from_storage_status(&s))?;
        Ok(())
    }

    /// Registers the hole between what storage holds of the camera and the resume point.
    async fn resume(&self, r: &ResumeMeta, retrying: bool) -> Result<(), IngestError> {
        let head = self
            .storage
            .clone()
            .get_chain_head(r.chain_head_request())
            .await
            .map_err(|s| IngestError::from_storage_status(&s))?
            .into_inner();
        let Some(until) = head
            .recorded_until
            .as_ref()
            .and_then(UnixMicros::from_timestamp)
        else {
            // Nothing recorded before: a new camera has no hole.
            return Ok(());
        };
        if until >= r.at {
            return Ok(());
        }
        let mut detail = format!(
            "recording resumed at {} after an ingest restart or the camera moving between \
             replicas; nothing was recorded since {}",
            r.at, until
        );
        if retrying {
            detail.push_str("; storage was unreachable when recording resumed");
        }
        tracing::warn!(site = %r.site, camera = %r.camera, from = %until, to = %r.at,
            seconds = (r.at.0 - until.0) as f64 / 1e6, "recording gap before this run");
        self.register_gap(&GapMeta {
            site: r.site.clone(),
            camera: r.camera.clone(),
            replica: r.replica.clone(),
            start: until,
            end: r.at,
            reason: GapReason::IngestRestart,
            detail,
        })
        .await?;
        metrics::get().gaps.with_label_values(&[&r.site]).inc();
        self.board.update(&r.site, &r.camera, |s| s.gaps_total += 1);
        Ok(())
    }
}
