//! Links stored detections to the recorded segment their frame lies in
//! (`Detection.segment_sequence`).
//!
//! A live detection cannot name its segment: ingest is still writing it, and storage learns of
//! it only when it is closed and registered, seconds later (minutes when the spool drains after
//! an outage). So detections are stored unlinked and [`Linker::run_once`] links them
//! afterwards: per camera, the oldest unlinked detections go to storage's `LocateSegments`
//! (metadata only, nothing in the access log) in batches of up to 1,000; a found segment is
//! written to the row. A detection no segment covers stays unlinked while its time may still
//! be recorded, and is marked not recorded (0) when it lies more than [`GAP_SETTLE`] before the
//! camera's recorded-until time (a gap, or events-mode recording that did not cover it) or is
//! older than [`GIVE_UP`].

use std::time::Duration;

use kordon_proto::common::v1 as common;
use kordon_proto::storage::v1 as spb;
use kordon_proto::storage::v1::storage_service_client::StorageServiceClient;
use kordon_proto::time::{micros_from_timestamp, timestamp_from_micros};
use kordon_runtime::client::AuthedChannel;

use crate::DetectionError;
use crate::store::Store;

/// How often the linker runs.
pub const EVERY: Duration = Duration::from_secs(5);
/// Detections younger than this are left for the next run (their segment is surely open).
pub const SETTLE: Duration = Duration::from_secs(2);
/// An unlinked time this far before the camera's recorded-until time was not recorded.
pub const GAP_SETTLE: Duration = Duration::from_secs(5 * 60);
/// Detections still unlinked after this are marked not recorded.
pub const GIVE_UP: Duration = Duration::from_secs(60 * 60);
/// Detections per LocateSegments call (storage's limit).
pub const BATCH: u32 = 1000;
/// Batches per camera per run, so one camera's backlog cannot hold the others up for long.
const BATCHES_PER_CAMERA: usize = 10;

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

/// What one run did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Linked {
    /// Detections given their segment.
    pub segment: u64,
    /// Detections marked not recorded.
    pub not_recorded: u64,
}

/// Links detections of `store` through storage.
#[derive(Clone)]
pub struct Linker {
    pub store: Store,
    pub storage: StorageServiceClient<AuthedChannel>,
}

impl Linker {
    /// Links what can be linked now (`now_us`: the wall clock).
    pub async fn run_once(&self, now_us: i64) -> Result<Linked, DetectionError> {
        let mut done = Linked::default();
        let before = now_us - micros(SETTLE);
        let mut first_error = None;
        for (site, camera) in self.store.unlinked_cameras(before).await? {
            match self.camera(&site, &camera, before).await {
                Ok(l) => {
                    done.segment += l.segment;
                    done.not_recorded += l.not_recorded;
                }
                Err(e) => {
                    tracing::debug!(%site, %camera, error = %e, "detections not linked yet");
                    first_error.get_or_insert(e);
                }
            }
        }
        let old = self.store.unlink_before(now_us - micros(GIVE_UP)).await?;
        done.not_recorded += old;
        match first_error {
            Some(e) if done == Linked::default() => Err(e),
            _ => Ok(done),
        }
    }

    async fn camera(
        &self,
        site: &str,
        camera: &str,
        before: i64,
    ) -> Result<Linked, DetectionError> {
        let metrics = crate::metrics::get();
        let mut done = Linked::default();
        for _ in 0..BATCHES_PER_CAMERA {
            let rows = self.store.unlinked(site, camera, before, BATCH).await?;
            if rows.is_empty() {
                break;
            }
            let answer = self
                .storage
                .clone()
                .locate_segments(spb::LocateSegmentsRequest {
                    camera: Some(common::CameraRef {
                        site: site.to_string(),
                        camera: camera.to_string(),
                    }),
                    times: rows
                        .iter()
                        .map(|&(_, t)| timestamp_from_micros(t))
                        .collect(),
                })
                .await?
                .into_inner();
            if answer.sequences.len() != rows.len() {
                return Err(DetectionError::Unavailable(format!(
                    "storage located {} of {} detections",
                    answer.sequences.len(),
                    rows.len()
                )));
            }
            let settled = answer
                .recorded_until
                .as_ref()
                .and_then(micros_from_timestamp)
                .map(|u| u - micros(GAP_SETTLE));
            let mut links = Vec::with_capacity(rows.len());
            let (mut found, mut missing) = (0, 0);
            for (&(seq, time_us), &segment) in rows.iter().zip(&answer.sequences) {
                if segment > 0 {
                    links.push((seq, segment));
                    found += 1;
                } else if settled.is_some_and(|s| time_us < s) {
                    links.push((seq, 0));
                    missing += 1;
                }
            }
            self.store.link(&links).await?;
            metrics
                .segment_links
                .with_label_values(&[site, "segment"])
                .inc_by(found);
            metrics
                .segment_links
                .with_label_values(&[site, "not_recorded"])
                .inc_by(missing);
            done.segment += found;
            done.not_recorded += missing;
            // The rest of this batch may still be recorded; later rows too.
            if links.len() < rows.len() {
                break;
            }
        }
        Ok(done)
    }
}
