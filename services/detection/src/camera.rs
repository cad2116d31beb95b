//! One camera's analysis: decode → motion gate → object detector → tracker, zones and lines →
//! stored and streamed detections, snapshots.
//!
//! Per camera there are two tasks. The decode task ([`kordon_media::decode::run_decoded`]) owns
//! the stream: it opens the same `Source` ingest records from, decodes every frame and hands
//! on pictures at the camera's analysis rate; it reconnects with backoff on its own. This task
//! analyses them. Between the two is a channel of two pictures: when analysis falls behind
//! (the shared detector is busy), newer pictures are dropped at the decoder and counted —
//! analysis never works on a backlog of stale frames.
//!
//! A config change that keeps the stream (zones, lines, classes, thresholds) applies from the
//! next picture with the tracks kept; a stream change (URL, transport, credentials, rate)
//! ends the open tracks and reconnects. A lost stream ends the open tracks too: a track never
//! spans a hole in what was seen.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use kordon_media::decode::{DecodeEvent, DecodedFrame, StreamState};
use kordon_proto::common::v1 as common;
use kordon_proto::detection::v1 as pb;
use kordon_proto::time::timestamp_from_micros;
use kordon_vision::{Phase, RawDetection, Reason, Scene, TrackEvent};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::service::Shared;
use crate::settings::CameraSettings;
use crate::snapshot::{Still, encode_jpeg};
use crate::status::{CameraStatus, State};

/// Snapshots per track at most (its first frame, then better ones).
const MAX_SNAPSHOTS_PER_TRACK: u32 = 4;
/// A better snapshot of a track is taken at most this often.
const SNAPSHOT_INTERVAL: Duration = Duration::from_secs(3);

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

fn phase(p: Phase) -> pb::TrackPhase {
    match p {
        Phase::Started => pb::TrackPhase::Started,
        Phase::Updated => pb::TrackPhase::Updated,
        Phase::Ended => pb::TrackPhase::Ended,
    }
}

fn bbox(b: [f32; 4]) -> common::BoundingBox {
    common::BoundingBox {
        left: b[0],
        top: b[1],
        right: b[2],
        bottom: b[3],
    }
}

fn zones(z: &[kordon_vision::ZonePresence]) -> Vec<pb::ZonePresence> {
    z.iter()
        .map(|z| pb::ZonePresence {
            zone: z.zone.clone(),
            entered_at: Some(timestamp_from_micros(micros(z.entered_at))),
        })
        .collect()
}

/// What a track's snapshots have been so far.
#[derive(Default)]
struct TrackSnaps {
    id: String,
    taken: u32,
    last: Option<Duration>,
}

/// Runs one camera until `cancel`. `settings` carries config changes.
pub async fn run(
    shared: Arc<Shared>,
    status: Arc<CameraStatus>,
    mut settings: watch::Receiver<Arc<CameraSettings>>,
    cancel: CancellationToken,
) {
    let m = crate::metrics::get();
    loop {
        let current = settings.borrow_and_update().clone();
        let site = current.site.clone();
        let name = current.name.clone();
        status.update(|s| s.generation = current.generation);
        if current.disabled {
            status.set_state(State::Disabled, None);
            tokio::select! {
                _ = cancel.cancelled() => return,
                r = settings.changed() => if r.is_err() { return } else { continue },
            }
        }
        status.set_state(State::Starting, None);
        let session = cancel.child_token();
        let (frames_tx, mut frames) = mpsc::channel::<DecodedFrame>(2);
        let (states_tx, mut states) = mpsc::unbounded_channel::<StreamState>();
        let decode = {
            let stream = current.stream.clone();
            let ctx = shared.source.clone();
            let cfg = current.decode;
            let counters = status.decode.clone();
            let session = session.clone();
            let site = site.clone();
            let name = name.clone();
            tokio::spawn(async move {
                kordon_media::decode::run_decoded(stream, ctx, cfg, counters, session, move |e| {
                    match e {
                        DecodeEvent::State(s) => {
                            let _ = states_tx.send(s);
                        }
                        DecodeEvent::Frame(f) => {
                            m.frames_decoded.with_label_values(&[&site, &name]).inc();
                            if frames_tx.try_send(f).is_err() {
                                m.frames_dropped
                                    .with_label_values(&[&site, &name, "behind"])
                                    .inc();
                            }
                        }
                    }
                })
                .await
            })
        };
        let mut scene = match Scene::new(current.scene.clone()) {
            Ok(s) => s,
            Err(e) => {
                // Settings were validated when applied; this is a bug, not bad input.
                tracing::error!(camera = %current.key(), error = %e, "scene refused its settings");
                status.set_state(State::Offline, Some(format!("scene: {e}")));
                session.cancel();
                let _ = decode.await;
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    r = settings.changed() => if r.is_err() { return } else { continue },
                }
            }
        };
        let mut analysis = Analysis {
            shared: shared.clone(),
            status: status.clone(),
            settings: current.clone(),
            snaps: HashMap::new(),
            last_frame: None,
        };
        let restart = loop {
            tokio::select! {
                biased;
                _ = cancel.cancelled() => break false,
                changed = settings.changed() => {
                    if changed.is_err() {
                        break false;
                    }
                    let next = settings.borrow_and_update().clone();
                    if next.stream != analysis.settings.stream
                        || next.decode != analysis.settings.decode
                        || next.disabled != analysis.settings.disabled
                    {
                        // Re-read below, in the outer loop.
                        settings.mark_changed();
                        break true;
                    }
                    match scene.reconfigure(next.scene.clone()) {
                        Ok(()) => {
                            status.update(|s| s.generation = next.generation);
                            analysis.settings = next;
                        }
                        Err(e) => tracing::error!(camera = %next.key(), error = %e,
                                                  "new settings refused by the scene"),
                    }
                }
                state = states.recv() => match state {
                    Some(StreamState::Running) => status.set_state(State::Running, None),
                    Some(StreamState::Starting) => status.set_state(State::Starting, None),
                    Some(StreamState::Reconnecting { error }) => {
                        m.reconnects.with_label_values(&[&site, &name]).inc();
                        status.set_state(State::Reconnecting, Some(error));
                        let ended = scene.end_all();
                        analysis.emit(ended, None).await;
                    }
                    Some(StreamState::Offline { error }) => {
                        status.set_state(State::Offline, Some(error));
                        let ended = scene.end_all();
                        analysis.emit(ended, None).await;
                    }
                    Some(StreamState::Stopped) | None => break false,
                },
                Some(frame) = frames.recv() => analysis.frame(&mut scene, frame).await,
            }
        };
        let ended = scene.end_all();
        analysis.emit(ended, None).await;
        session.cancel();
        let _ = decode.await;
        if !restart {
            return;
        }
    }
}

struct Analysis {
    shared: Arc<Shared>,
    status: Arc<CameraStatus>,
    settings: Arc<CameraSettings>,
    snaps: HashMap<u64, TrackSnaps>,
    last_frame: Option<Duration>,
}

impl Analysis {
    async fn frame(&mut self, scene: &mut Scene, frame: DecodedFrame) {
        let m = crate::metrics::get();
        let site = self.settings.site.clone();
        let name = self.settings.name.clone();
        let t = frame
            .wall_clock
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        // A frame older than the previous one (a clock step back) would confuse the tracker.
        if self.last_frame.is_some_and(|last| t <= last) {
            return;
        }
        self.last_frame = Some(t);
        self.status
            .counters
            .analysed
            .fetch_add(1, Ordering::Relaxed);
        // Keeps the status's rate window sampled while frames flow.
        self.status.rates();
        m.frames_analysed.with_label_values(&[&site, &name]).inc();
        self.status.update(|s| {
            s.width = frame.width;
            s.height = frame.height;
            s.last_frame_time = Some(frame.wall_clock);
        });
        let picture = kordon_vision::Frame {
            width: frame.width,
            height: frame.height,
            stride: frame.stride,
            data: &frame.bgr,
        };
        let motion = match scene.motion(t, &picture) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(camera = %self.settings.key(), error = %e, "motion detection failed");
                return;
            }
        };
        if motion.motion {
            m.frames_with_motion
                .with_label_values(&[&site, &name])
                .inc();
        }
        let run = scene.run_detector(&motion);
        self.status.update(|s| s.motion_gated = !run);
        if !run {
            return;
        }
        let Some(engine) = &self.shared.engine else {
            return;
        };
        m.frames_inferred.with_label_values(&[&site, &name]).inc();
        let started = Instant::now();
        let image = kordon_infer::OwnedImage::packed(frame.width, frame.height, frame.bgr.to_vec());
        let found = match engine.detect(image).await {
            Ok(d) => d,
            Err(e) => {
                let reason = if e.is_transient() {
                    "queue_full"
                } else {
                    "error"
                };
                m.frames_dropped
                    .with_label_values(&[&site, &name, reason])
                    .inc();
                if !e.is_transient() {
                    self.status
                        .update(|s| s.last_error = Some(format!("detector: {e}")));
                }
                return;
            }
        };
        self.status
            .counters
            .inferred
            .fetch_add(1, Ordering::Relaxed);
        self.status
            .counters
            .inference_us
            .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        let raw: Vec<RawDetection<'_>> = found
            .iter()
            .map(|d| RawDetection {
                class_id: d.class_id,
                label: d.label,
                score: d.score,
                bbox: d.bbox,
            })
            .collect();
        let events = scene.update(t, &raw);
        let tracks = scene.active_tracks();
        self.status
            .update(|s| s.active_tracks = tracks.len() as u32);
        let stored: HashSet<u64> = events.iter().map(|e| e.track_id).collect();
        self.emit(events, Some(&frame)).await;
        // Live-only: every other tracked object on this frame, for watchers.
        for a in tracks.iter().filter(|a| !stored.contains(&a.track_id)) {
            let d = pb::Detection {
                id: uuid::Uuid::now_v7().to_string(),
                camera: Some(self.camera_ref()),
                time: Some(timestamp_from_micros(micros(t))),
                class_label: a.label.clone(),
                confidence: a.score,
                r#box: Some(bbox(a.bbox)),
                track_id: a.track_id,
                phase: pb::TrackPhase::Updated as i32,
                track_started_at: Some(timestamp_from_micros(micros(a.started_at))),
                zones: zones(&a.zones),
                crossings: Vec::new(),
                snapshot_id: self
                    .snaps
                    .get(&a.track_id)
                    .map(|s| s.id.clone())
                    .unwrap_or_default(),
                // Live: the segment is still being recorded (see `link`).
                segment_sequence: 0,
            };
            self.shared.hub.publish(Arc::new(d));
        }
    }

    fn camera_ref(&self) -> common::CameraRef {
        common::CameraRef {
            site: self.settings.site.clone(),
            camera: self.settings.name.clone(),
        }
    }

    /// Whether to take a snapshot for this event.
    fn wants_snapshot(&self, e: &TrackEvent) -> bool {
        if self.shared.snapshots.is_none() || !self.shared.take_snapshots || e.phase == Phase::Ended
        {
            return false;
        }
        match self.snaps.get(&e.track_id) {
            None => true,
            Some(s) => {
                e.best
                    && matches!(e.reason, Reason::BetterScore)
                    && s.taken < MAX_SNAPSHOTS_PER_TRACK
                    && s.last
                        .is_none_or(|l| e.time.saturating_sub(l) >= SNAPSHOT_INTERVAL)
            }
        }
    }

    /// Stores, snapshots and publishes the events of one frame (`frame` is `None` when tracks
    /// end without a picture).
    async fn emit(&mut self, events: Vec<TrackEvent>, frame: Option<&DecodedFrame>) {
        if events.is_empty() {
            return;
        }
        let m = crate::metrics::get();
        let site = self.settings.site.clone();
        let mut out = Vec::with_capacity(events.len());
        // One picture per frame: tracks that want a snapshot of the same frame share it.
        let mut frame_snapshot: Option<String> = None;
        for e in events {
            let id = uuid::Uuid::now_v7().to_string();
            if let (Some(f), true) = (frame, self.wants_snapshot(&e)) {
                match &frame_snapshot {
                    Some(shared) => {
                        let s = self.snaps.entry(e.track_id).or_default();
                        s.id = shared.clone();
                        s.taken += 1;
                        s.last = Some(e.time);
                    }
                    None => {
                        self.snapshot(&e, &id, f).await;
                        frame_snapshot = self.snaps.get(&e.track_id).map(|s| s.id.clone());
                    }
                }
            }
            let snapshot_id = self
                .snaps
                .get(&e.track_id)
                .map(|s| s.id.clone())
                .unwrap_or_default();
            if e.phase == Phase::Ended {
                self.snaps.remove(&e.track_id);
            }
            m.detections
                .with_label_values(&[&site, phase(e.phase).as_str_name()])
                .inc();
            out.push(pb::Detection {
                id,
                camera: Some(self.camera_ref()),
                time: Some(timestamp_from_micros(micros(e.time))),
                class_label: e.label.clone(),
                confidence: e.score,
                r#box: Some(bbox(e.bbox)),
                track_id: e.track_id,
                phase: phase(e.phase) as i32,
                track_started_at: Some(timestamp_from_micros(micros(e.started_at))),
                zones: zones(&e.zones),
                crossings: e
                    .crossings
                    .iter()
                    .map(|c| pb::LineCrossing {
                        line: c.line.clone(),
                        direction: match c.direction {
                            kordon_vision::Direction::LeftToRight => pb::LineDirection::LeftToRight,
                            kordon_vision::Direction::RightToLeft => pb::LineDirection::RightToLeft,
                        } as i32,
                    })
                    .collect(),
                snapshot_id,
                // Linked once storage has the segment (see `link`).
                segment_sequence: 0,
            });
        }
        self.status
            .counters
            .detections
            .fetch_add(out.len() as u64, Ordering::Relaxed);
        self.status
            .update(|s| s.last_detection_time = Some(SystemTime::now()));
        if let Err(e) = self.shared.store.insert(&out).await {
            // Streamed anyway: a watcher should not miss what happened because the database
            // is down; the history has a hole, which the log and the metric say.
            m.frames_dropped
                .with_label_values(&[&site, &self.settings.name, "not_stored"])
                .inc();
            tracing::error!(camera = %self.settings.key(), error = %e,
                            detections = out.len(), "detections could not be stored");
        }
        for d in out {
            self.shared.hub.publish(Arc::new(d));
        }
    }

    async fn snapshot(&mut self, e: &TrackEvent, detection_id: &str, f: &DecodedFrame) {
        let Some(snapshots) = &self.shared.snapshots else {
            return;
        };
        let (w, h, bgr) = (f.width, f.height, f.bgr.clone());
        let jpeg = match tokio::task::spawn_blocking(move || encode_jpeg(w, h, &bgr)).await {
            Ok(Ok(j)) => j,
            Ok(Err(err)) => {
                tracing::warn!(camera = %self.settings.key(), error = %err, "snapshot not encoded");
                return;
            }
            Err(_) => return,
        };
        let still = Still {
            site: self.settings.site.clone(),
            camera: self.settings.name.clone(),
            captured_us: micros(e.time),
            detection_id: detection_id.to_string(),
            width: w,
            height: h,
            jpeg: Bytes::from(jpeg),
        };
        match snapshots.save(still).await {
            Ok(id) => {
                let s = self.snaps.entry(e.track_id).or_default();
                s.id = id;
                s.taken += 1;
                s.last = Some(e.time);
            }
            Err(err) => {
                crate::metrics::get()
                    .snapshot_failures
                    .with_label_values(&[&self.settings.site])
                    .inc();
                tracing::warn!(camera = %self.settings.key(), error = %err, "snapshot not saved");
            }
        }
    }
}
