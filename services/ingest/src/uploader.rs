//! Drains the spool: stores each segment in object storage, then registers it (or a gap) with
//! the storage service, strictly in order per camera.
//!
//! Both steps are idempotent (the object is written create-only and compared by hash when it
//! exists; storage registration is keyed by camera and hash), so an entry whose registration
//! failed after a successful upload is simply tried again. A failing camera backs off without
//! holding up the others. On shutdown the uploader keeps draining for a grace period; whatever is
//! left stays in the spool for the next start.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kordon_proto::common::v1 as common;
use kordon_proto::storage::v1 as spb;
use kordon_proto::storage::v1::storage_service_client::StorageServiceClient;
use kordon_runtime::client::AuthedChannel;
use object_store::ObjectStore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::IngestError;
use crate::metrics;
use crate::spool::{Entry, EntryKind, Spool};
use crate::status::StatusBoard;

/// One finished attempt to store a camera's head entry.
type Attempt = ((String, String), Result<(), IngestError>, Entry);

const RETRY_INITIAL: Duration = Duration::from_millis(500);
const RETRY_MAX: Duration = Duration::from_secs(15);

pub struct Uploader {
    pub spool: Arc<Spool>,
    pub objects: Arc<dyn ObjectStore>,
    pub storage: StorageServiceClient<AuthedChannel>,
    pub board: Arc<StatusBoard>,
    pub concurrency: usize,
}

use kordon_proto::time::timestamp_from_micros as timestamp;

fn codec(name: &str) -> common::VideoCodec {
    match name {
        "h264" => common::VideoCodec::H264,
        "h265" => common::VideoCodec::H265,
        _ => common::VideoCodec::Unspecified,
    }
}

fn gap_reason(name: &str) -> spb::GapReason {
    match name {
        "stream_lost" => spb::GapReason::StreamLost,
        "stream_error" => spb::GapReason::StreamError,
        "ingest_restart" => spb::GapReason::IngestRestart,
        "spool_overflow" => spb::GapReason::SpoolOverflow,
        _ => spb::GapReason::StreamError,
    }
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
                let key = (head.meta.site.clone(), head.meta.camera.clone());
                if in_flight.contains(&key) || retry_at.get(&key).is_some_and(|(t, _)| *t > now) {
                    continue;
                }
                in_flight.insert(key.clone());
                let me = this.clone();
                tasks.spawn(async move {
                    let r = me.store(&head).await;
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

    async fn store(&self, entry: &Entry) -> Result<(), IngestError> {
        let m = &entry.meta;
        let camera = Some(common::CameraRef {
            site: m.site.clone(),
            camera: m.camera.clone(),
        });
        let range = Some(common::TimeRange {
            start: Some(timestamp(m.start_us)),
            end: Some(timestamp(m.end_us)),
        });
        let mut storage = self.storage.clone();
        match &m.kind {
            EntryKind::Segment {
                size,
                sha256,
                init_size,
                codec: c,
                width,
                height,
                object_key,
            } => {
                let path = entry
                    .media_path
                    .as_ref()
                    .ok_or_else(|| IngestError::Internal("segment entry without media".into()))?;
                let bytes = tokio::fs::read(path)
                    .await
                    .map_err(|e| IngestError::spool(path, e))?;
                let mut digest = [0u8; 32];
                hex::decode_to_slice(sha256, &mut digest)
                    .map_err(|_| IngestError::Internal("bad hash in spool metadata".into()))?;
                if bytes.len() as u64 != *size {
                    return Err(IngestError::Internal(format!(
                        "spooled file {} has {} bytes, metadata says {size}",
                        path.display(),
                        bytes.len()
                    )));
                }
                let key = object_store::path::Path::from(object_key.as_str());
                kordon_objects::put_immutable(&*self.objects, &key, bytes.into(), &digest)
                    .await
                    .map_err(|e| IngestError::Objects(e.to_string()))?;
                storage
                    .register_segment(spb::RegisterSegmentRequest {
                        camera,
                        range,
                        size_bytes: *size,
                        sha256: digest.to_vec(),
                        codec: codec(c) as i32,
                        width: *width,
                        height: *height,
                        object_key: object_key.clone(),
                        ingest_replica: m.replica.clone(),
                        init_size: *init_size,
                    })
                    .await
                    .map_err(|s| {
                        IngestError::Storage(format!("{:?}: {}", s.code(), s.message()))
                    })?;
                metrics::get()
                    .segments_stored
                    .with_label_values(&[&m.site])
                    .inc();
            }
            EntryKind::Gap { reason, detail } => {
                storage
                    .register_gap(spb::RegisterGapRequest {
                        camera,
                        range,
                        reason: gap_reason(reason) as i32,
                        detail: detail.clone(),
                        ingest_replica: m.replica.clone(),
                    })
                    .await
                    .map_err(|s| {
                        IngestError::Storage(format!("{:?}: {}", s.code(), s.message()))
                    })?;
            }
        }
        Ok(())
    }
}
