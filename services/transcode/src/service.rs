//! The transcode process: a queue of jobs in the database, `workers` of them run at once.
//!
//! # A job's run
//! 1. The spec is checked again ([`crate::spec::parse`]) and the camera's segments in the range
//!    are listed through storage's `ListSegments` with the job's audit context (the reason,
//!    the case, and the person who submitted the job, so the access log names them).
//! 2. Each segment is one unit: its object is read from the bucket and its SHA-256 checked
//!    against the index (a job never works from altered footage), then the unit's pipeline
//!    runs on a blocking thread and its output is written and registered. Finished units are
//!    recorded, so a job interrupted at any point (SIGKILL, a lost pod, an outage) resumes from
//!    the first unfinished unit; with the same encoder settings every unit gives the same bytes,
//!    so a resumed job's outputs equal an uninterrupted one's.
//! 3. A viewer copy's units are parts in the scratch directory (one fMP4 fragment each, placed
//!    on the copy's timeline); the last step joins them under one `moov`, writes the file to the
//!    bucket and records it. A part whose file is gone (another pod) is made again.
//!
//! Originals are never modified: every output is a new object with its own hash.
//!
//! # Failures
//! An outage (storage, the bucket, the database) puts the job back in the queue, and it runs
//! again up to `max_attempts`; anything else (a damaged segment, nothing recorded) fails it
//! with a message that says what. Cancellation is checked twice a second, also inside a unit.
//! On shutdown the running units stop and their jobs go back to the queue without using up an
//! attempt.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use kordon_media::Codec;
use kordon_objects::time::now_micros;
use kordon_objects::{ObjectPath, ObjectStore, ObjectStoreExt};
use kordon_proto::common::v1 as common;
use kordon_proto::storage::v1 as spb;
use kordon_proto::storage::v1::storage_service_client::StorageServiceClient;
use kordon_proto::time::{micros_from_timestamp, timestamp_from_micros};
use kordon_proto::transcode::v1 as pb;
use kordon_runtime::client::AuthedChannel;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::TranscodeError;
use crate::config::TranscodeConfig;
use crate::metrics::{self, kind_label};
use crate::overlay;
use crate::pipeline::{self, Codecs, EncodeSettings, Encoded, FrameEncoder, Picture};
use crate::spec::{self, Kind, Work};
use crate::store::{JobRow, OutputRow, ProgressUpdate, Store, UnitRow};

/// A running job that has not said so for this long is taken back by another replica.
const STALE_AFTER: Duration = Duration::from_secs(60);
/// How often a running job writes its progress (and reads whether it was cancelled).
const HEARTBEAT: Duration = Duration::from_millis(500);
/// How often idle workers look at the queue without being woken (other replicas' jobs).
const IDLE_POLL: Duration = Duration::from_secs(2);
/// JPEG quality of thumbnails.
const JPEG_QUALITY: u8 = 80;

/// Where outputs go and where footage comes from.
#[derive(Clone)]
pub struct Destinations {
    pub objects: Arc<dyn ObjectStore>,
    pub object_prefix: String,
    pub storage: StorageServiceClient<AuthedChannel>,
}

/// The person detector used for `blur_people`, loaded on first use.
enum DetectorSlot {
    NotLoaded,
    Loaded(Box<kordon_infer::Detector>),
    Failed(String),
}

/// A transcode process.
pub struct Transcode {
    pub(crate) config: TranscodeConfig,
    pub(crate) store: Store,
    pub(crate) codecs: Codecs,
    dest: Destinations,
    scratch: PathBuf,
    models_dir: PathBuf,
    replica: String,
    wake: Notify,
    detector: Mutex<DetectorSlot>,
    running: AtomicU32,
    shutdown: CancellationToken,
    tracker: TaskTracker,
}

impl Transcode {
    /// Checks the config, probes the encoders, opens the database, takes back this replica's
    /// interrupted jobs and starts the workers.
    pub async fn start(
        config: TranscodeConfig,
        data_dir: &Path,
        replica: &str,
        dest: Destinations,
        shutdown: CancellationToken,
    ) -> Result<Arc<Transcode>, TranscodeError> {
        config.validate()?;
        let choice = config.encoder.clone();
        let codecs = tokio::task::spawn_blocking(move || Codecs::probe(&choice))
            .await
            .map_err(|e| TranscodeError::Unavailable(format!("encoder probe panicked: {e}")))??;
        tracing::info!(
            h264 = codecs.h264.as_deref().unwrap_or("none"),
            h265 = codecs.h265.as_deref().unwrap_or("none"),
            encoders = ?codecs.encoders.iter().map(|e| e.name.as_str()).collect::<Vec<_>>(),
            "transcode encoders"
        );
        if codecs.h264.is_none() {
            return Err(TranscodeError::config(
                "encoder",
                "no H.264 encoder is usable (install GStreamer's x264enc: \
                 gstreamer1.0-plugins-ugly)",
            ));
        }
        let scratch = config.scratch_dir(data_dir);
        std::fs::create_dir_all(&scratch).map_err(|e| {
            TranscodeError::config("scratch_dir", format!("{}: {e}", scratch.display()))
        })?;
        std::fs::create_dir_all(data_dir).map_err(|e| {
            TranscodeError::config("data_dir", format!("{}: {e}", data_dir.display()))
        })?;
        let store = Store::open(&config.database_url(data_dir)).await?;
        let replica = if replica.is_empty() {
            "transcode".to_string()
        } else {
            replica.to_string()
        };
        let recovered = store
            .requeue_stale(
                &replica,
                "",
                now_micros() - STALE_AFTER.as_micros() as i64,
                config.max_attempts,
                now_micros(),
            )
            .await?;
        if !recovered.requeued.is_empty() || !recovered.failed.is_empty() {
            tracing::warn!(requeued = ?recovered.requeued, failed = ?recovered.failed,
                           "jobs interrupted by a restart: queued again (or failed after too many tries)");
        }
        let t = Arc::new(Transcode {
            models_dir: data_dir.join("models"),
            config,
            store,
            codecs,
            dest,
            scratch,
            replica,
            wake: Notify::new(),
            detector: Mutex::new(DetectorSlot::NotLoaded),
            running: AtomicU32::new(0),
            shutdown,
            tracker: TaskTracker::new(),
        });
        for i in 0..t.config.workers {
            let w = t.clone();
            t.tracker.spawn(async move { w.worker(i).await });
        }
        {
            let w = t.clone();
            t.tracker.spawn(async move { w.housekeeping().await });
        }
        if t.config.thumbnails.automatic {
            let w = t.clone();
            t.tracker.spawn(async move { crate::auto::run(w).await });
        }
        t.tracker.close();
        Ok(t)
    }

    /// Resolves when every worker has stopped (after the shutdown token fired).
    pub async fn stopped(&self) {
        self.tracker.wait().await;
        self.store.close().await;
    }

    pub(crate) fn shutdown_token(&self) -> &CancellationToken {
        &self.shutdown
    }

    pub(crate) fn destinations(&self) -> &Destinations {
        &self.dest
    }

    pub(crate) fn running(&self) -> u32 {
        self.running.load(Ordering::Relaxed)
    }

    /// Whether the person detector is loaded, and why not.
    pub(crate) fn detector_state(&self) -> (bool, String) {
        match &*self.detector.lock().unwrap_or_else(|e| e.into_inner()) {
            DetectorSlot::Loaded(_) => (true, String::new()),
            DetectorSlot::Failed(e) => (false, e.clone()),
            DetectorSlot::NotLoaded => (
                false,
                "not loaded yet (loaded by the first export that blurs people)".into(),
            ),
        }
    }

    /// Queues a job (or returns the submitter's earlier one with the same request id).
    pub async fn submit(
        &self,
        work: &Work,
        spec: pb::JobSpec,
        priority: pb::JobPriority,
        audit: common::AuditContext,
        submitted_by: &str,
        request_id: &str,
    ) -> Result<(JobRow, bool), TranscodeError> {
        if let Kind::Rendition { codec, .. } | Kind::Export { codec, .. } = &work.kind {
            self.codecs.encoder(*codec)?;
        }
        let row = JobRow {
            id: uuid::Uuid::now_v7().to_string(),
            request_id: request_id.to_string(),
            submitted_by: submitted_by.to_string(),
            site: work.site.clone(),
            camera: work.camera.clone(),
            kind: work.job_kind(),
            spec,
            audit,
            priority: match priority {
                pb::JobPriority::Unspecified => pb::JobPriority::Normal,
                p => p,
            },
            state: pb::JobState::Queued,
            created_us: now_micros(),
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
        };
        let (job, created) = self.store.insert(&row).await?;
        if created {
            tracing::info!(job = %job.id, kind = kind_label(job.kind), site = %job.site,
                           camera = %job.camera, by = %submitted_by, "job queued");
            self.wake.notify_one();
        }
        Ok((job, created))
    }

    async fn worker(self: Arc<Self>, index: u32) {
        loop {
            if self.shutdown.is_cancelled() {
                return;
            }
            let job = match self.store.claim(&self.replica, now_micros()).await {
                Ok(j) => j,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the job queue; retrying");
                    None
                }
            };
            let Some(job) = job else {
                tokio::select! {
                    _ = self.shutdown.cancelled() => return,
                    _ = self.wake.notified() => {}
                    _ = tokio::time::sleep(IDLE_POLL) => {}
                }
                continue;
            };
            self.running.fetch_add(1, Ordering::Relaxed);
            let backoff = self.run(job, index).await;
            self.running.fetch_sub(1, Ordering::Relaxed);
            if let Some(wait) = backoff {
                tokio::select! {
                    _ = self.shutdown.cancelled() => return,
                    _ = tokio::time::sleep(wait) => {}
                }
            }
        }
    }

    /// Runs one claimed job to an end state (or back to the queue). Returns how long this
    /// worker should wait before taking another job (after a transient failure).
    async fn run(self: &Arc<Self>, job: JobRow, worker: u32) -> Option<Duration> {
        let kind = kind_label(job.kind);
        let span = tracing::info_span!("job", id = %job.id, kind, worker);
        let _g = span.enter();
        tracing::info!(attempt = job.attempts, "job started");
        let cancel = Arc::new(AtomicBool::new(false));
        let progress = Arc::new(Mutex::new(ProgressUpdate {
            done_units: job.done_units,
            total_units: job.total_units,
            stage: "starting".into(),
            frames: job.frames,
            speed: 0.0,
            encoder: job.encoder.clone(),
        }));
        let cancelled_by_user = Arc::new(AtomicBool::new(false));
        let beat = {
            let store = self.store.clone();
            let id = job.id.clone();
            let cancel = cancel.clone();
            let by_user = cancelled_by_user.clone();
            let progress = progress.clone();
            let shutdown = self.shutdown.clone();
            let stop = CancellationToken::new();
            let stop2 = stop.clone();
            tokio::spawn(async move {
                loop {
                    let p = progress.lock().map(|p| p.clone()).unwrap_or_default();
                    match store.progress(&id, &p, now_micros()).await {
                        Ok(true) => {
                            by_user.store(true, Ordering::Relaxed);
                            cancel.store(true, Ordering::Relaxed);
                        }
                        Ok(false) => {}
                        Err(e) => tracing::warn!(error = %e, "cannot record progress"),
                    }
                    tokio::select! {
                        _ = stop2.cancelled() => return,
                        _ = shutdown.cancelled() => cancel.store(true, Ordering::Relaxed),
                        _ = tokio::time::sleep(HEARTBEAT) => {}
                    }
                }
            });
            stop
        };
        let result = self.execute(&job, &cancel, &progress).await;
        beat.cancel();
        // The last progress, written once more so the final row is exact.
        let p = progress.lock().map(|p| p.clone()).unwrap_or_default();
        let _ = self.store.progress(&job.id, &p, now_micros()).await;
        let m = metrics::get();
        let finish = |state: pb::JobState| {
            m.jobs_finished
                .with_label_values(&[
                    kind,
                    match state {
                        pb::JobState::Succeeded => "succeeded",
                        pb::JobState::Failed => "failed",
                        _ => "cancelled",
                    },
                ])
                .inc();
        };
        let end = |to: pb::JobState, error: String| {
            let store = self.store.clone();
            let id = job.id.clone();
            async move {
                if let Err(e) = store
                    .finish_if(&id, pb::JobState::Running, to, &error, now_micros())
                    .await
                {
                    tracing::error!(error = %e, "cannot record the job's end; it will be retried");
                }
            }
        };
        match result {
            Ok(()) => {
                tracing::info!(frames = p.frames, "job succeeded");
                end(pb::JobState::Succeeded, String::new()).await;
                finish(pb::JobState::Succeeded);
                None
            }
            Err(TranscodeError::Cancelled) if cancelled_by_user.load(Ordering::Relaxed) => {
                tracing::info!("job cancelled");
                end(pb::JobState::Cancelled, String::new()).await;
                finish(pb::JobState::Cancelled);
                None
            }
            Err(TranscodeError::Cancelled) => {
                // Shutdown: back to the queue, the attempt not counted.
                tracing::info!("shutting down: job queued again, resumes from its last unit");
                let _ = self
                    .store
                    .requeue(&job.id, "queued again after a shutdown", true)
                    .await;
                None
            }
            Err(e) if e.is_transient() && job.attempts < self.config.max_attempts => {
                tracing::warn!(error = %e, attempt = job.attempts, "job interrupted by an outage; queued again");
                m.retries.with_label_values(&[kind]).inc();
                let _ = self
                    .store
                    .requeue(&job.id, &format!("queued again after: {e}"), false)
                    .await;
                Some(Duration::from_secs(5 * u64::from(job.attempts.max(1))))
            }
            Err(e) => {
                let msg = if e.is_transient() {
                    format!("{e} (after {} attempts)", job.attempts)
                } else {
                    e.to_string()
                };
                tracing::warn!(error = %msg, "job failed");
                end(pb::JobState::Failed, msg).await;
                finish(pb::JobState::Failed);
                None
            }
        }
    }

    /// The audit context storage sees: the job's, with who asked and which job reads.
    fn audit_for(&self, job: &JobRow) -> common::AuditContext {
        let mut a = job.audit.clone();
        a.reason = format!(
            "{} (transcode job {} for {})",
            job.audit.reason, job.id, job.submitted_by
        );
        a
    }

    async fn list_segments(
        &self,
        work: &Work,
        audit: &common::AuditContext,
    ) -> Result<Vec<spb::Segment>, TranscodeError> {
        let mut client = self.dest.storage.clone();
        let mut out = Vec::new();
        let mut token = String::new();
        loop {
            let r = client
                .list_segments(spb::ListSegmentsRequest {
                    camera: Some(camera_ref(work)),
                    range: Some(time_range(work.from_us, work.to_us)),
                    audit: Some(audit.clone()),
                    page: Some(common::PageRequest {
                        page_size: 1000,
                        page_token: token,
                    }),
                })
                .await?
                .into_inner();
            out.extend(r.segments);
            token = r.page.map(|p| p.next_page_token).unwrap_or_default();
            if token.is_empty() {
                break;
            }
        }
        out.sort_by_key(|s| s.link.as_ref().map(|l| l.sequence).unwrap_or(0));
        Ok(out)
    }

    /// The object of a segment, checked against the index's SHA-256.
    async fn read_segment(&self, seg: &spb::Segment) -> Result<Bytes, TranscodeError> {
        let key = ObjectPath::from(seg.object_key.as_str());
        let data = async { self.dest.objects.get(&key).await?.bytes().await }
            .await
            .map_err(kordon_objects::ObjectsError::from)?;
        let sha = kordon_objects::sha256(&data);
        if sha.as_slice() != seg.sha256.as_slice() {
            return Err(TranscodeError::Media(format!(
                "segment {} of {}: its object does not match the SHA-256 the index recorded; \
                 the footage may have been altered (verify the camera's chain)",
                seq_of(seg),
                seg.camera
                    .as_ref()
                    .map(|c| format!("{}/{}", c.site, c.camera))
                    .unwrap_or_default()
            )));
        }
        Ok(data)
    }

    async fn execute(
        self: &Arc<Self>,
        job: &JobRow,
        cancel: &Arc<AtomicBool>,
        progress: &Arc<Mutex<ProgressUpdate>>,
    ) -> Result<(), TranscodeError> {
        let work = spec::parse(&Some(job.spec.clone()))?;
        let audit = self.audit_for(job);
        set_stage(progress, "listing segments");
        let segments = self.list_segments(&work, &audit).await?;
        if segments.is_empty() {
            return Err(TranscodeError::NotFound(format!(
                "nothing is recorded for {}/{} in the range",
                work.site, work.camera
            )));
        }
        let done = self.store.units(&job.id).await?;
        {
            let mut p = progress.lock().map_err(poisoned)?;
            p.total_units = segments.len() as u64;
            p.done_units = segments
                .iter()
                .filter(|s| done.contains_key(&seq_of(s)))
                .count() as u64;
            p.frames = done.values().map(|u| u.frames).sum();
        }
        match &work.kind {
            Kind::Rendition { .. } => {
                self.renditions(job, &work, &audit, &segments, &done, cancel, progress)
                    .await
            }
            Kind::Thumbnails { .. } => {
                self.thumbnails(job, &work, &audit, &segments, &done, cancel, progress)
                    .await
            }
            Kind::Export { .. } => {
                self.export(job, &work, &segments, &done, cancel, progress)
                    .await
            }
        }
    }

    /// Records a unit that needs no work (its output already exists) as done.
    async fn skip(
        &self,
        job: &str,
        seq: u64,
        progress: &Mutex<ProgressUpdate>,
    ) -> Result<(), TranscodeError> {
        let none = UnitRow {
            frames: 0,
            part: None,
        };
        self.store.unit_done(job, seq, &none).await?;
        bump(progress, 0, None);
        Ok(())
    }

    fn settings(
        &self,
        codec: Codec,
        preset: pb::EncoderPreset,
        bitrate: Option<u64>,
    ) -> Result<EncodeSettings, TranscodeError> {
        Ok(EncodeSettings {
            element: self.codecs.encoder(codec)?.to_string(),
            codec,
            preset,
            bitrate_bps: bitrate,
            threads: self.config.threads,
        })
    }

    #[allow(clippy::too_many_arguments)]
    async fn renditions(
        self: &Arc<Self>,
        job: &JobRow,
        work: &Work,
        audit: &common::AuditContext,
        segments: &[spb::Segment],
        done: &BTreeMap<u64, UnitRow>,
        cancel: &Arc<AtomicBool>,
        progress: &Arc<Mutex<ProgressUpdate>>,
    ) -> Result<(), TranscodeError> {
        let Kind::Rendition {
            profile,
            bitrate_bps,
            max_height,
            max_fps,
            codec,
            preset,
        } = work.kind.clone()
        else {
            unreachable!("renditions() runs rendition jobs");
        };
        let settings = self.settings(codec, preset, Some(bitrate_bps))?;
        set_encoder(progress, &settings.element);
        // Segments that already have a rendition of this profile are skipped.
        let mut existing = BTreeSet::new();
        {
            let mut client = self.dest.storage.clone();
            let mut token = String::new();
            loop {
                let r = client
                    .list_renditions(spb::ListRenditionsRequest {
                        camera: Some(camera_ref(work)),
                        range: Some(time_range(work.from_us, work.to_us)),
                        profile: profile.clone(),
                        audit: Some(audit.clone()),
                        page: Some(common::PageRequest {
                            page_size: 1000,
                            page_token: token,
                        }),
                    })
                    .await?
                    .into_inner();
                for x in r.renditions {
                    if x.job_id != job.id {
                        existing.insert(x.source_sequence);
                    }
                }
                token = r.page.map(|p| p.next_page_token).unwrap_or_default();
                if token.is_empty() {
                    break;
                }
            }
        }
        let started = Instant::now();
        let mut footage_s = 0.0;
        for seg in segments {
            let seq = seq_of(seg);
            if done.contains_key(&seq) {
                continue;
            }
            check(cancel)?;
            if existing.contains(&seq) {
                self.skip(&job.id, seq, progress).await?;
                continue;
            }
            set_stage(progress, &format!("segment {seq}"));
            let unit_start = Instant::now();
            let data = self.read_segment(seg).await?;
            let (start_us, end_us) = seg_range(seg);
            let base = pipeline::first_decode_time(&data)
                .map(|(t, ts)| pipeline::to_90k(t, ts))
                .ok_or_else(|| {
                    TranscodeError::Media(format!(
                        "segment {seq} is not a fragmented MP4 this service reads"
                    ))
                })?;
            let (w, h) = source_size(seg, max_height);
            let c = cancel.clone();
            let s = settings.clone();
            let encoded: Encoded =
                blocking(move || pipeline::encode_segment(data, w, h, max_fps, &s, &c)).await?;
            let duration = us_to_90k(end_us - start_us);
            let frames = encoded.frames.len() as u64;
            let (bytes, summary) = encoded.to_fmp4(base, duration, 1, true)?;
            let key = kordon_objects::rendition_key(
                &self.dest.object_prefix,
                &work.site,
                &work.camera,
                &profile,
                start_us,
                &summary.sha256,
            )?;
            let size = bytes.len() as u64;
            kordon_objects::put_immutable(
                self.dest.objects.as_ref(),
                &key,
                Bytes::from(bytes),
                &summary.sha256,
            )
            .await?;
            self.dest
                .storage
                .clone()
                .register_rendition(spb::RegisterRenditionRequest {
                    camera: Some(camera_ref(work)),
                    source_sequence: seq,
                    profile: profile.clone(),
                    range: seg.range,
                    codec: pipeline::codec_proto(codec) as i32,
                    width: w,
                    height: h,
                    bitrate_bps,
                    object_key: key.to_string(),
                    size_bytes: size,
                    sha256: summary.sha256.to_vec(),
                    job_id: job.id.clone(),
                    init_size: summary.init_size,
                })
                .await?;
            self.store
                .add_output(
                    &job.id,
                    &OutputRow {
                        object_key: key.to_string(),
                        content_type: "video/mp4".into(),
                        size_bytes: size,
                        sha256: summary.sha256,
                        start_us,
                        end_us,
                        source_sequence: seq,
                    },
                )
                .await?;
            self.store
                .unit_done(&job.id, seq, &UnitRow { frames, part: None })
                .await?;
            footage_s += (end_us - start_us) as f64 / 1e6;
            let speed = footage_s / started.elapsed().as_secs_f64().max(1e-3);
            bump(progress, frames, Some(speed));
            record_unit(
                pb::JobKind::Rendition,
                &settings.element,
                frames,
                (end_us - start_us) as f64 / 1e6,
                unit_start,
                size,
            );
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn thumbnails(
        self: &Arc<Self>,
        job: &JobRow,
        work: &Work,
        audit: &common::AuditContext,
        segments: &[spb::Segment],
        done: &BTreeMap<u64, UnitRow>,
        cancel: &Arc<AtomicBool>,
        progress: &Arc<Mutex<ProgressUpdate>>,
    ) -> Result<(), TranscodeError> {
        let Kind::Thumbnails { width, interval_us } = work.kind.clone() else {
            unreachable!("thumbnails() runs thumbnail jobs");
        };
        set_encoder(progress, "jpeg");
        // Segments that already have a thumbnail are skipped (per-segment thumbnails only).
        let existing = if interval_us.is_none() {
            self.thumbnailed(work, audit).await?
        } else {
            BTreeSet::new()
        };
        let started = Instant::now();
        let mut footage_s = 0.0;
        for seg in segments {
            let seq = seq_of(seg);
            if done.contains_key(&seq) {
                continue;
            }
            check(cancel)?;
            if existing.contains(&seq) {
                self.skip(&job.id, seq, progress).await?;
                continue;
            }
            set_stage(progress, &format!("segment {seq}"));
            let unit_start = Instant::now();
            let outputs = self
                .thumbnail_segment(work, seg, width, interval_us, cancel)
                .await?;
            let n = outputs.len() as u64;
            let mut size = 0;
            for o in &outputs {
                size += o.size_bytes;
                self.store.add_output(&job.id, o).await?;
            }
            self.store
                .unit_done(
                    &job.id,
                    seq,
                    &UnitRow {
                        frames: n,
                        part: None,
                    },
                )
                .await?;
            let (s, e) = seg_range(seg);
            footage_s += (e - s) as f64 / 1e6;
            bump(
                progress,
                n,
                Some(footage_s / started.elapsed().as_secs_f64().max(1e-3)),
            );
            record_unit(
                pb::JobKind::Thumbnails,
                "jpeg",
                n,
                (e - s) as f64 / 1e6,
                unit_start,
                size,
            );
        }
        Ok(())
    }

    /// Source sequences in the work's range that already have a thumbnail.
    pub(crate) async fn thumbnailed(
        &self,
        work: &Work,
        audit: &common::AuditContext,
    ) -> Result<BTreeSet<u64>, TranscodeError> {
        let mut client = self.dest.storage.clone();
        let mut out = BTreeSet::new();
        let mut token = String::new();
        loop {
            let r = client
                .list_snapshots(spb::ListSnapshotsRequest {
                    camera: Some(camera_ref(work)),
                    range: Some(time_range(work.from_us, work.to_us)),
                    kind: spb::SnapshotKind::Thumbnail as i32,
                    audit: Some(audit.clone()),
                    url_ttl: None,
                    page: Some(common::PageRequest {
                        page_size: 1000,
                        page_token: token,
                    }),
                })
                .await?
                .into_inner();
            for s in r.snapshots {
                if let Some(s) = s.snapshot {
                    out.insert(s.source_sequence);
                }
            }
            token = r.page.map(|p| p.next_page_token).unwrap_or_default();
            if token.is_empty() {
                break;
            }
        }
        Ok(out)
    }

    /// Makes, writes and registers one segment's thumbnails.
    pub(crate) async fn thumbnail_segment(
        &self,
        work: &Work,
        seg: &spb::Segment,
        width: u32,
        interval_us: Option<i64>,
        cancel: &Arc<AtomicBool>,
    ) -> Result<Vec<OutputRow>, TranscodeError> {
        let seq = seq_of(seg);
        let data = self.read_segment(seg).await?;
        let (start_us, end_us) = seg_range(seg);
        let (w, h) = thumb_size(seg, width);
        let c = cancel.clone();
        let stills: Vec<(i64, Vec<u8>)> = blocking(move || {
            let mut out = Vec::new();
            let mut next = match interval_us {
                // The first multiple of the interval at or after the segment's start.
                Some(i) => {
                    start_us.div_euclid(i) * i + if start_us.rem_euclid(i) == 0 { 0 } else { i }
                }
                None => start_us,
            };
            pipeline::decode_segment(data, w, h, &c, |pic| {
                let at = start_us + (pic.pts_ns / 1000) as i64;
                if at >= next || interval_us.is_none() {
                    out.push((at, encode_jpeg(pic.width, pic.height, &pic.bgr)?));
                    match interval_us {
                        None => return Ok(false),
                        Some(i) => {
                            while next <= at {
                                next += i;
                            }
                        }
                    }
                }
                Ok(next < end_us)
            })?;
            Ok(out)
        })
        .await?;
        let mut outputs = Vec::new();
        for (at, jpeg) in stills {
            let sha = kordon_objects::sha256(&jpeg);
            let key = kordon_objects::still_key(
                &self.dest.object_prefix,
                &work.site,
                &work.camera,
                "thumbnails",
                at,
                &sha,
                "jpg",
            )?;
            let size = jpeg.len() as u64;
            kordon_objects::put_immutable(
                self.dest.objects.as_ref(),
                &key,
                Bytes::from(jpeg),
                &sha,
            )
            .await?;
            self.dest
                .storage
                .clone()
                .register_snapshot(spb::RegisterSnapshotRequest {
                    camera: Some(camera_ref(work)),
                    kind: spb::SnapshotKind::Thumbnail as i32,
                    captured_at: Some(timestamp_from_micros(at)),
                    content_type: "image/jpeg".into(),
                    width: w,
                    height: h,
                    size_bytes: size,
                    sha256: sha.to_vec(),
                    object_key: key.to_string(),
                    detection_id: String::new(),
                    source_sequence: seq,
                })
                .await?;
            outputs.push(OutputRow {
                object_key: key.to_string(),
                content_type: "image/jpeg".into(),
                size_bytes: size,
                sha256: sha,
                start_us: at,
                end_us: at,
                source_sequence: seq,
            });
        }
        Ok(outputs)
    }

    fn part_path(&self, job: &str, index: usize, seq: u64) -> PathBuf {
        self.scratch
            .join(job)
            .join(format!("{index:06}-{seq}.part"))
    }

    async fn export(
        self: &Arc<Self>,
        job: &JobRow,
        work: &Work,
        segments: &[spb::Segment],
        done: &BTreeMap<u64, UnitRow>,
        cancel: &Arc<AtomicBool>,
        progress: &Arc<Mutex<ProgressUpdate>>,
    ) -> Result<(), TranscodeError> {
        let Kind::Export {
            burn_in,
            time_zone,
            masks,
            bitrate_bps,
            codec,
            preset,
            blur_people,
            ..
        } = work.kind.clone()
        else {
            unreachable!("export() runs export jobs");
        };
        let settings = self.settings(codec, preset, bitrate_bps)?;
        set_encoder(progress, &settings.element);
        if blur_people {
            self.load_detector().await?;
        }
        let tz = if time_zone.is_empty() {
            self.config
                .time_zones
                .get(&work.site)
                .and_then(|z| jiff::tz::TimeZone::get(z).ok())
                .unwrap_or(jiff::tz::TimeZone::UTC)
        } else {
            jiff::tz::TimeZone::get(&time_zone)
                .map_err(|e| TranscodeError::Invalid(format!("spec.export.time_zone: {e}")))?
        };
        let (w, h) = source_size(&segments[0], 0);
        let origin_us = seg_range(&segments[0]).0;
        let label = format!("{}/{}", work.site, work.camera);
        std::fs::create_dir_all(self.scratch.join(&job.id))
            .map_err(|e| TranscodeError::Unavailable(format!("scratch directory: {e}")))?;
        let started = Instant::now();
        let mut footage_s = 0.0;
        let mut parts = Vec::with_capacity(segments.len());
        for (index, seg) in segments.iter().enumerate() {
            let seq = seq_of(seg);
            let path = self.part_path(&job.id, index, seq);
            parts.push(path.clone());
            if let Some(UnitRow {
                part: Some((size, sha)),
                ..
            }) = done.get(&seq)
                && part_intact(&path, *size, sha)
            {
                continue;
            }
            check(cancel)?;
            set_stage(progress, &format!("segment {seq}"));
            let unit_start = Instant::now();
            let data = self.read_segment(seg).await?;
            let (start_us, end_us) = seg_range(seg);
            let base = us_to_90k(start_us - origin_us);
            let duration = us_to_90k(end_us - start_us);
            let c = cancel.clone();
            let s = settings.clone();
            let masks = masks.clone();
            let tz = tz.clone();
            let label = label.clone();
            let me = self.clone();
            let min_score = self.config.detector.min_score;
            let encoded = blocking(move || {
                let mut enc: Option<FrameEncoder> = None;
                let mut window = Window::default();
                let mut emit =
                    |mut pic: Picture, boxes: Vec<[f32; 4]>| -> Result<(), TranscodeError> {
                        for m in &masks {
                            overlay::pixelate_polygon(&mut pic.bgr, pic.width, pic.height, m);
                        }
                        for b in &boxes {
                            overlay::pixelate_box(&mut pic.bgr, pic.width, pic.height, *b, 0.1);
                        }
                        if burn_in {
                            let at = start_us + (pic.pts_ns / 1000) as i64;
                            let text = format!("{}  {label}", stamp(at, &tz));
                            let scale = (pic.height / 270).max(2);
                            overlay::draw_text(
                                &mut pic.bgr,
                                pic.width,
                                pic.height,
                                scale * 4,
                                scale * 4,
                                scale,
                                &text,
                            );
                        }
                        if enc.is_none() {
                            let fps = if pic.duration_ns > 0 {
                                1e9 / pic.duration_ns as f64
                            } else {
                                25.0
                            };
                            enc = Some(FrameEncoder::new(pic.width, pic.height, fps, &s)?);
                        }
                        enc.as_mut().map(|e| e.push(&pic)).unwrap_or(Ok(()))
                    };
                pipeline::decode_segment(data, w, h, &c, |pic| {
                    let boxes = if blur_people {
                        me.people(&pic, min_score)?
                    } else {
                        Vec::new()
                    };
                    for (p, b) in window.push(pic, boxes) {
                        emit(p, b)?;
                    }
                    Ok(true)
                })?;
                for (p, b) in window.finish() {
                    emit(p, b)?;
                }
                let enc = enc.ok_or_else(|| {
                    TranscodeError::Media(format!("segment {seq} decoded to no pictures"))
                })?;
                enc.finish(&c)
            })
            .await?;
            let frames = encoded.frames.len() as u64;
            let (bytes, summary) = encoded.to_fmp4(base, duration, index as u32 + 1, false)?;
            write_part(&path, &bytes)?;
            self.store
                .unit_done(
                    &job.id,
                    seq,
                    &UnitRow {
                        frames,
                        part: Some((bytes.len() as u64, summary.sha256)),
                    },
                )
                .await?;
            footage_s += (end_us - start_us) as f64 / 1e6;
            bump(
                progress,
                frames,
                Some(footage_s / started.elapsed().as_secs_f64().max(1e-3)),
            );
            record_unit(
                pb::JobKind::Export,
                &settings.element,
                frames,
                (end_us - start_us) as f64 / 1e6,
                unit_start,
                0,
            );
        }
        check(cancel)?;
        set_stage(progress, "joining parts");
        let file = join_parts(&parts)?;
        let sha = kordon_objects::sha256(&file);
        let key = kordon_objects::still_key(
            &self.dest.object_prefix,
            &work.site,
            &work.camera,
            "exports",
            origin_us,
            &sha,
            "mp4",
        )?;
        let size = file.len() as u64;
        set_stage(progress, "uploading");
        kordon_objects::put_immutable(self.dest.objects.as_ref(), &key, Bytes::from(file), &sha)
            .await?;
        metrics::get()
            .bytes_written
            .with_label_values(&["export"])
            .inc_by(size);
        self.store
            .add_output(
                &job.id,
                &OutputRow {
                    object_key: key.to_string(),
                    content_type: "video/mp4".into(),
                    size_bytes: size,
                    sha256: sha,
                    start_us: origin_us,
                    end_us: segments.last().map(|s| seg_range(s).1).unwrap_or(origin_us),
                    source_sequence: 0,
                },
            )
            .await?;
        let _ = std::fs::remove_dir_all(self.scratch.join(&job.id));
        set_stage(progress, "done");
        Ok(())
    }

    async fn load_detector(&self) -> Result<(), TranscodeError> {
        if matches!(
            &*self.detector.lock().map_err(poisoned)?,
            DetectorSlot::Loaded(_)
        ) {
            return Ok(());
        }
        let cfg = self.config.detector.clone();
        let models = self.models_dir.clone();
        let loaded = blocking(move || {
            let model = match &cfg.model {
                Some(p) => p.clone(),
                None => kordon_infer::model::write_embedded(&models)
                    .map_err(|e| TranscodeError::config("detector.model", e))?,
            };
            let ec = kordon_infer::EngineConfig {
                library: cfg.library.clone(),
                threads: cfg.threads,
                max_batch: 1,
                score_threshold: cfg.min_score,
                ..kordon_infer::EngineConfig::new(model)
            };
            kordon_infer::Detector::new(&ec).map_err(|e| {
                TranscodeError::FailedPrecondition(format!(
                    "blur_people needs the person detector, which could not load: {e}"
                ))
            })
        })
        .await;
        let mut slot = self.detector.lock().map_err(poisoned)?;
        match loaded {
            Ok(d) => {
                tracing::info!(
                    provider = d.provider(),
                    "person detector loaded for blurring"
                );
                *slot = DetectorSlot::Loaded(Box::new(d));
                Ok(())
            }
            Err(e) => {
                *slot = DetectorSlot::Failed(e.to_string());
                Err(e)
            }
        }
    }

    /// The people in a picture (blocking; the detector is shared by the process's workers).
    fn people(&self, pic: &Picture, min_score: f32) -> Result<Vec<[f32; 4]>, TranscodeError> {
        let mut slot = self.detector.lock().map_err(poisoned)?;
        let DetectorSlot::Loaded(d) = &mut *slot else {
            return Err(TranscodeError::FailedPrecondition(
                "blur_people needs the person detector, which is not loaded".into(),
            ));
        };
        let img = kordon_infer::Image {
            width: pic.width,
            height: pic.height,
            stride: pic.width as usize * 3,
            bgr: &pic.bgr,
        };
        let found = d
            .detect_batch(&[img])
            .map_err(|e| TranscodeError::Media(format!("person detector: {e}")))?;
        Ok(overlay::people(
            found.first().map(|v| v.as_slice()).unwrap_or(&[]),
            min_score,
        ))
    }

    /// Forgets finished jobs past retention and takes back stale ones, every minute.
    async fn housekeeping(self: Arc<Self>) {
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(60)) => {}
            }
            let cutoff = now_micros() - self.config.retention.as_micros() as i64;
            match self.store.delete_finished_before(cutoff).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(jobs = n, "forgot finished jobs past retention"),
                Err(e) => tracing::warn!(error = %e, "job retention failed"),
            }
            // Another replica's jobs whose heartbeat stopped (this replica's own are running).
            if let Err(e) = self
                .store
                .requeue_stale(
                    "",
                    &self.replica,
                    now_micros() - STALE_AFTER.as_micros() as i64,
                    self.config.max_attempts,
                    now_micros(),
                )
                .await
            {
                tracing::warn!(error = %e, "cannot take back stale jobs");
            }
            if let Ok(counts) = self.store.counts().await {
                for (state, n) in counts {
                    let name = pb::JobState::try_from(state)
                        .map(|s| {
                            s.as_str_name()
                                .trim_start_matches("JOB_STATE_")
                                .to_ascii_lowercase()
                        })
                        .unwrap_or_default();
                    metrics::get()
                        .jobs
                        .with_label_values(&[&name])
                        .set(n as i64);
                }
            }
        }
    }
}

/// A ±2-picture window: each picture is blurred with the person boxes of its neighbours too,
/// so a person the detector misses in one frame is not shown in that frame.
#[derive(Default)]
struct Window {
    pending: VecDeque<(Picture, Vec<[f32; 4]>)>,
    past: VecDeque<Vec<[f32; 4]>>,
}

const REACH: usize = 2;

impl Window {
    fn push(&mut self, pic: Picture, boxes: Vec<[f32; 4]>) -> Vec<(Picture, Vec<[f32; 4]>)> {
        self.pending.push_back((pic, boxes));
        let mut out = Vec::new();
        while self.pending.len() > REACH {
            out.push(self.emit());
        }
        out
    }

    fn finish(mut self) -> Vec<(Picture, Vec<[f32; 4]>)> {
        let mut out = Vec::new();
        while !self.pending.is_empty() {
            out.push(self.emit());
        }
        out
    }

    fn emit(&mut self) -> (Picture, Vec<[f32; 4]>) {
        let mut boxes: Vec<[f32; 4]> = self.past.iter().flatten().copied().collect();
        for (_, b) in self.pending.iter().take(REACH + 1) {
            boxes.extend_from_slice(b);
        }
        let (pic, own) = self
            .pending
            .pop_front()
            .expect("emit with a pending picture");
        self.past.push_back(own);
        if self.past.len() > REACH {
            self.past.pop_front();
        }
        (pic, boxes)
    }
}

fn stamp(at_us: i64, tz: &jiff::tz::TimeZone) -> String {
    match jiff::Timestamp::from_microsecond(at_us) {
        Ok(t) => t
            .to_zoned(tz.clone())
            .strftime("%Y-%m-%d %H:%M:%S%.3f %Z")
            .to_string(),
        Err(_) => at_us.to_string(),
    }
}

fn part_intact(path: &Path, size: u64, sha: &[u8; 32]) -> bool {
    match std::fs::read(path) {
        Ok(b) => b.len() as u64 == size && &kordon_objects::sha256(&b) == sha,
        Err(_) => false,
    }
}

fn write_part(path: &Path, bytes: &[u8]) -> Result<(), TranscodeError> {
    let io =
        |e: std::io::Error| TranscodeError::Unavailable(format!("scratch {}: {e}", path.display()));
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

/// Offset of the first `moof`: the `ftyp` + `moov` of a part.
fn init_len(b: &[u8]) -> Option<usize> {
    let mut at = 0usize;
    while at + 8 <= b.len() {
        let size = u32::from_be_bytes(b[at..at + 4].try_into().ok()?) as usize;
        if &b[at + 4..at + 8] == b"moof" {
            return Some(at);
        }
        if size < 8 {
            return None;
        }
        at = at.checked_add(size)?;
    }
    None
}

/// One file from the parts: the first part's `ftyp` + `moov`, then every part's fragments.
fn join_parts(parts: &[PathBuf]) -> Result<Vec<u8>, TranscodeError> {
    let mut out = Vec::new();
    let mut init: Option<Vec<u8>> = None;
    for p in parts {
        let b = std::fs::read(p)
            .map_err(|e| TranscodeError::Unavailable(format!("scratch {}: {e}", p.display())))?;
        let n = init_len(&b).ok_or_else(|| {
            TranscodeError::Media(format!("part {} has no fragment", p.display()))
        })?;
        match &init {
            None => {
                out.extend_from_slice(&b[..n]);
                init = Some(b[..n].to_vec());
            }
            Some(i) if i.as_slice() != &b[..n] => {
                return Err(TranscodeError::Media(
                    "the encoder's parameters changed between segments (e.g. the camera's \
                     resolution changed in the range); export the two parts separately"
                        .into(),
                ));
            }
            Some(_) => {}
        }
        out.extend_from_slice(&b[n..]);
    }
    Ok(out)
}

/// Encodes a packed BGR8 picture as a JPEG (thumbnails).
pub fn encode_jpeg(width: u32, height: u32, bgr: &[u8]) -> Result<Vec<u8>, TranscodeError> {
    let (w, h) = match (u16::try_from(width), u16::try_from(height)) {
        (Ok(w), Ok(h)) if w > 0 && h > 0 => (w, h),
        _ => {
            return Err(TranscodeError::Media(format!(
                "a {width}x{height} picture cannot be a JPEG"
            )));
        }
    };
    let mut out = Vec::with_capacity(bgr.len() / 12);
    jpeg_encoder::Encoder::new(&mut out, JPEG_QUALITY)
        .encode(bgr, w, h, jpeg_encoder::ColorType::Bgr)
        .map_err(|e| TranscodeError::Media(format!("JPEG encoding failed: {e}")))?;
    Ok(out)
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, TranscodeError> + Send + 'static,
) -> Result<T, TranscodeError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| TranscodeError::Media(format!("the pipeline panicked: {e}")))?
}

fn poisoned<T>(_: T) -> TranscodeError {
    TranscodeError::Unavailable("transcode state poisoned".into())
}

fn check(cancel: &AtomicBool) -> Result<(), TranscodeError> {
    if cancel.load(Ordering::Relaxed) {
        Err(TranscodeError::Cancelled)
    } else {
        Ok(())
    }
}

fn set_stage(p: &Mutex<ProgressUpdate>, stage: &str) {
    if let Ok(mut p) = p.lock() {
        p.stage = stage.to_string();
    }
}

fn set_encoder(p: &Mutex<ProgressUpdate>, e: &str) {
    if let Ok(mut p) = p.lock() {
        p.encoder = e.to_string();
    }
}

fn bump(p: &Mutex<ProgressUpdate>, frames: u64, speed: Option<f64>) {
    if let Ok(mut p) = p.lock() {
        p.done_units += 1;
        p.frames += frames;
        if let Some(s) = speed {
            p.speed = s;
        }
    }
}

fn record_unit(
    kind: pb::JobKind,
    encoder: &str,
    frames: u64,
    footage_s: f64,
    started: Instant,
    bytes: u64,
) {
    let m = metrics::get();
    let k = kind_label(kind);
    m.units.with_label_values(&[k]).inc();
    m.frames.with_label_values(&[k, encoder]).inc_by(frames);
    m.footage_seconds
        .with_label_values(&[k, encoder])
        .inc_by(footage_s.round() as u64);
    m.unit_seconds
        .with_label_values(&[k])
        .observe(started.elapsed().as_secs_f64());
    m.bytes_written.with_label_values(&[k]).inc_by(bytes);
}

pub(crate) fn seq_of(s: &spb::Segment) -> u64 {
    s.link.as_ref().map(|l| l.sequence).unwrap_or(0)
}

pub(crate) fn seg_range(s: &spb::Segment) -> (i64, i64) {
    let r = s.range.unwrap_or_default();
    let a = r
        .start
        .as_ref()
        .and_then(micros_from_timestamp)
        .unwrap_or(0);
    let b = r.end.as_ref().and_then(micros_from_timestamp).unwrap_or(a);
    (a, b.max(a))
}

fn us_to_90k(us: i64) -> u64 {
    pipeline::to_90k(u64::try_from(us).unwrap_or(0), 1_000_000)
}

/// The output size for a segment: its recorded size capped at `max_height` (0: kept); a
/// segment recorded without a size is treated as 16:9.
fn source_size(seg: &spb::Segment, max_height: u32) -> (u32, u32) {
    let (w, h) = if seg.width > 0 && seg.height > 0 {
        (seg.width, seg.height)
    } else {
        (1280, 720)
    };
    pipeline::output_size(w, h, max_height)
}

fn thumb_size(seg: &spb::Segment, width: u32) -> (u32, u32) {
    let (w, h) = if seg.width > 0 && seg.height > 0 {
        (seg.width, seg.height)
    } else {
        (16, 9)
    };
    let out_h = ((u64::from(width) * u64::from(h) + u64::from(w) / 2) / u64::from(w)) as u32;
    (width & !1, (out_h.max(2)) & !1)
}

pub(crate) fn camera_ref(w: &Work) -> common::CameraRef {
    common::CameraRef {
        site: w.site.clone(),
        camera: w.camera.clone(),
    }
}

pub(crate) fn time_range(from_us: i64, to_us: i64) -> common::TimeRange {
    common::TimeRange {
        start: Some(timestamp_from_micros(from_us)),
        end: Some(timestamp_from_micros(to_us)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pic(i: u64) -> Picture {
        Picture {
            width: 2,
            height: 2,
            pts_ns: i,
            duration_ns: 1,
            bgr: vec![0; 12],
        }
    }

    #[test]
    fn the_window_blurs_each_picture_with_its_neighbours_boxes() {
        let mut w = Window::default();
        let mut out = Vec::new();
        for i in 0..6u64 {
            let boxes = if i == 3 {
                vec![[0.1, 0.1, 0.2, 0.2]]
            } else {
                Vec::new()
            };
            out.extend(w.push(pic(i), boxes));
        }
        out.extend(w.finish());
        let with: Vec<u64> = out
            .iter()
            .filter(|(_, b)| !b.is_empty())
            .map(|(p, _)| p.pts_ns)
            .collect();
        assert_eq!(out.len(), 6);
        assert_eq!(
            out.iter().map(|(p, _)| p.pts_ns).collect::<Vec<_>>(),
            [0, 1, 2, 3, 4, 5]
        );
        assert_eq!(with, [1, 2, 3, 4, 5]);
    }

    #[test]
    fn parts_join_under_one_moov_and_refuse_different_ones() {
        let dir = tempfile::tempdir().unwrap();
        let part = |name: &str, moov: &[u8], frag: &[u8]| {
            let mut b = Vec::new();
            b.extend_from_slice(&(8 + moov.len() as u32).to_be_bytes());
            b.extend_from_slice(b"moov");
            b.extend_from_slice(moov);
            b.extend_from_slice(&(8 + frag.len() as u32).to_be_bytes());
            b.extend_from_slice(b"moof");
            b.extend_from_slice(frag);
            let p = dir.path().join(name);
            std::fs::write(&p, &b).unwrap();
            p
        };
        let a = part("a", b"same", b"one");
        let b = part("b", b"same", b"two");
        let joined = join_parts(&[a.clone(), b]).unwrap();
        assert_eq!(joined.len(), 12 + 11 + 11);
        let c = part("c", b"diff", b"two");
        assert!(matches!(join_parts(&[a, c]), Err(TranscodeError::Media(_))));
    }

    #[test]
    fn stamps_are_in_the_zone() {
        let tz = jiff::tz::TimeZone::get("Europe/Sofia").unwrap();
        // 2026-12-02T10:00:00Z is 12:00 in Sofia (EET, UTC+2).
        let s = stamp(1_796_205_600_000_000, &tz);
        assert!(s.starts_with("2026-12-02 12:00:00.000"), "{s}");
    }
}
