//! `kordon.detection.v1.DetectionService` over the running [`Detection`].
//!
//! Reads need ROLE_VIEWER (view status) on the camera's site; a request without a site sees
//! only the sites the caller holds a role on. Shard management needs ROLE_ADMIN or
//! ROLE_SERVICE on every site it touches. `GetSnapshot` is a footage read: the reason is
//! required and the read is recorded in storage's access log under the caller before the
//! image is returned.

use std::sync::Arc;
use std::time::Duration;

use kordon_proto::common::v1 as common;
use kordon_proto::detection::v1 as pb;
use kordon_proto::detection::v1::detection_service_server::DetectionService;
use kordon_proto::storage::v1 as spb;
use kordon_proto::time::{
    micros_from_timestamp, timestamp_from_micros, timestamp_from_system_time as ts,
};
use kordon_runtime::auth::{self, Permission, Principal};
use kordon_runtime::watch::WatchLimit;
use tokio::sync::broadcast::error::RecvError;
use tonic::codegen::BoxStream;
use tonic::{Request, Response, Status};

use crate::hub::Replayed;
use crate::service::{Detection, Outcome};
use crate::status::State;
use crate::store::{Filter, MAX_PAGE};

/// Page size when a request names none.
const DEFAULT_PAGE: u32 = 100;
/// How far back `WatchDetections.since` may reach.
const MAX_REPLAY: Duration = Duration::from_secs(600);

/// Most WatchDetections streams one process serves at once; more are RESOURCE_EXHAUSTED.
pub const MAX_WATCHES: usize = kordon_runtime::watch::DEFAULT_MAX_WATCHES;

/// The gRPC implementation of `kordon.detection.v1.DetectionService`.
#[derive(Clone)]
pub struct DetectionApi {
    detection: Arc<Detection>,
    watches: WatchLimit,
}

impl DetectionApi {
    pub fn new(detection: Arc<Detection>) -> Self {
        DetectionApi {
            detection,
            watches: WatchLimit::new("WatchDetections", MAX_WATCHES),
        }
    }

    /// At most `max` WatchDetections streams at once (tests use a small one).
    pub fn with_max_watches(mut self, max: usize) -> Self {
        self.watches = WatchLimit::new("WatchDetections", max);
        self
    }
}

fn invalid(m: impl Into<String>) -> Status {
    Status::invalid_argument(m.into())
}

fn principal<T>(req: &Request<T>) -> Result<Principal, Status> {
    Ok(auth::principal(req)?.clone())
}

fn can(p: &Principal, site: &str, perm: Permission) -> bool {
    auth::authorize(p, site, perm).is_ok()
}

/// Checks that the caller may view what a filter names; with no site and no cameras, results
/// are filtered per detection instead (see [`visible`]).
fn authorize_filter(p: &Principal, f: &Filter) -> Result<(), Status> {
    if !f.site.is_empty() {
        auth::authorize(p, &f.site, Permission::ViewStatus)?;
    }
    for (site, _) in &f.cameras {
        auth::authorize(p, site, Permission::ViewStatus)?;
    }
    Ok(())
}

fn visible(p: &Principal, d: &pb::Detection) -> bool {
    d.camera
        .as_ref()
        .is_some_and(|c| can(p, &c.site, Permission::ViewStatus))
}

fn state(s: State) -> pb::DetectorState {
    match s {
        State::Starting => pb::DetectorState::Starting,
        State::Running => pb::DetectorState::Running,
        State::Reconnecting => pb::DetectorState::Reconnecting,
        State::Offline => pb::DetectorState::Offline,
        State::Disabled => pb::DetectorState::Disabled,
    }
}

#[tonic::async_trait]
impl DetectionService for DetectionApi {
    async fn list_detections(
        &self,
        req: Request<pb::ListDetectionsRequest>,
    ) -> Result<Response<pb::ListDetectionsResponse>, Status> {
        let who = principal(&req)?;
        let r = req.into_inner();
        let range = r.range.unwrap_or_default();
        let from_us = range
            .start
            .as_ref()
            .and_then(micros_from_timestamp)
            .ok_or_else(|| invalid("range.start: required"))?;
        let to_us = range.end.as_ref().and_then(micros_from_timestamp);
        if to_us.is_some_and(|t| t < from_us) {
            return Err(invalid("range: end before start"));
        }
        let f = Filter {
            site: r.site,
            cameras: common::camera_pairs(&r.cameras)?,
            classes: r.classes,
            min_confidence: r.min_confidence,
            zones: r.zones,
            from_us,
            to_us,
        };
        authorize_filter(&who, &f)?;
        let size = match r.page.as_ref().map(|p| p.page_size).unwrap_or(0) {
            0 => DEFAULT_PAGE,
            n => n.min(MAX_PAGE),
        };
        let token = r.page.as_ref().map(|p| p.page_token.as_str()).unwrap_or("");
        let mut after = match token {
            "" => None,
            t => {
                let bad = || invalid("page.page_token: not a token of this list");
                let (a, b) = t.split_once(':').ok_or_else(bad)?;
                Some((a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?))
            }
        };
        // Rows of sites the caller cannot see are skipped; keep reading until the page is full
        // or the rows run out.
        let mut detections = Vec::new();
        let mut next = String::new();
        loop {
            let rows = self
                .detection
                .shared()
                .store
                .list(&f, after, size + 1)
                .await?;
            let more = rows.len() > size as usize;
            for (pos, d) in rows.into_iter().take(size as usize) {
                after = Some(pos);
                if visible(&who, &d) {
                    detections.push(d);
                    if detections.len() == size as usize {
                        break;
                    }
                }
            }
            let full = detections.len() == size as usize;
            if full || !more {
                if (full || more)
                    && let Some((t, s)) = after
                {
                    next = format!("{t}:{s}");
                }
                break;
            }
        }
        Ok(Response::new(pb::ListDetectionsResponse {
            detections,
            page: Some(common::PageResponse {
                next_page_token: next,
            }),
        }))
    }

    async fn watch_detections(
        &self,
        req: Request<pb::WatchDetectionsRequest>,
    ) -> Result<Response<BoxStream<pb::WatchDetectionsResponse>>, Status> {
        let who = principal(&req)?;
        let r = req.into_inner();
        let since = match &r.since {
            None => None,
            Some(t) => {
                let us = micros_from_timestamp(t).ok_or_else(|| invalid("since: out of range"))?;
                let oldest = kordon_objects::time::now_micros() - MAX_REPLAY.as_micros() as i64;
                if us < oldest {
                    return Err(Status::out_of_range(
                        "since: at most 10 minutes back; use ListDetections for older history",
                    ));
                }
                Some(us)
            }
        };
        let mut f = Filter {
            site: r.site,
            cameras: common::camera_pairs(&r.cameras)?,
            classes: r.classes,
            min_confidence: r.min_confidence,
            ..Default::default()
        };
        authorize_filter(&who, &f)?;
        let permit = self.watches.try_acquire()?;
        // Subscribe before reading the store, so nothing falls between replay and live.
        let shared = self.detection.shared().clone();
        let mut live = shared.hub.subscribe();
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        tokio::spawn(async move {
            let _permit = permit;
            let mut replayed = Replayed::default();
            if let Some(since) = since {
                f.from_us = since.saturating_add(1);
                let mut after = None;
                loop {
                    let rows = match shared.store.list(&f, after, MAX_PAGE).await {
                        Ok(r) => r,
                        Err(e) => {
                            let _ = tx.send(Err(Status::from(e))).await;
                            return;
                        }
                    };
                    let n = rows.len();
                    for (pos, d) in rows {
                        after = Some(pos);
                        replayed.note(&d.id, pos.0);
                        if visible(&who, &d) {
                            let msg = pb::WatchDetectionsResponse { detection: Some(d) };
                            if tx.send(Ok(msg)).await.is_err() {
                                return;
                            }
                        }
                    }
                    if n < MAX_PAGE as usize {
                        break;
                    }
                }
            }
            loop {
                tokio::select! {
                    _ = tx.closed() => return,
                    got = live.recv() => match got {
                        Ok(d) => {
                            let t = d.time.as_ref().and_then(micros_from_timestamp).unwrap_or(0);
                            if !f.matches(&d) || !visible(&who, &d) || replayed.seen(&d.id, t) {
                                continue;
                            }
                            let msg = pb::WatchDetectionsResponse {
                                detection: Some((*d).clone()),
                            };
                            if tx.send(Ok(msg)).await.is_err() {
                                return;
                            }
                        }
                        Err(RecvError::Lagged(n)) => {
                            let _ = tx
                                .send(Err(Status::resource_exhausted(format!(
                                    "{n} detections behind: resume with since set to the last \
                                     time seen"
                                ))))
                                .await;
                            return;
                        }
                        Err(RecvError::Closed) => return,
                    },
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn get_snapshot(
        &self,
        req: Request<pb::GetSnapshotRequest>,
    ) -> Result<Response<pb::GetSnapshotResponse>, Status> {
        let who = principal(&req)?;
        let r = req.into_inner();
        let id = r.snapshot_id.trim();
        if id.is_empty() {
            return Err(invalid("snapshot_id: required"));
        }
        let not_found = || Status::not_found(format!("no snapshot {id}"));
        let shared = self.detection.shared();
        let row = shared.store.snapshot(id).await?.ok_or_else(not_found)?;
        // A snapshot of a site the caller has no role on does not exist for them.
        if !can(&who, &row.site, Permission::ReadFootage) {
            return Err(not_found());
        }
        let audit = r.audit.unwrap_or_default();
        if audit.reason.trim().is_empty() {
            return Err(invalid(
                "audit.reason: required — every footage access states why",
            ));
        }
        let snapshots = shared
            .snapshots
            .as_ref()
            .ok_or_else(|| Status::unavailable("this replica has no object storage"))?;
        if row.storage_id.is_empty() {
            return Err(Status::unavailable(format!(
                "snapshot {id} is still being stored; try again shortly"
            )));
        }
        // The access log entry comes first: no image leaves without it.
        snapshots
            .storage
            .clone()
            .record_access(spb::RecordAccessRequest {
                principal: who.subject.clone(),
                principal_name: who.display_name.clone().unwrap_or_default(),
                action: spb::AccessAction::Read as i32,
                objects: vec![spb::AccessObject {
                    kind: spb::AccessObjectKind::Snapshot as i32,
                    camera: Some(common::CameraRef {
                        site: row.site.clone(),
                        camera: row.camera.clone(),
                    }),
                    range: None,
                    id: row.storage_id.clone(),
                }],
                audit: Some(audit),
                method: "/kordon.detection.v1.DetectionService/GetSnapshot".into(),
                source: String::new(),
            })
            .await
            .map_err(|s| Status::new(s.code(), format!("access log: {}", s.message())))?;
        let image = snapshots.read(&row).await?;
        Ok(Response::new(pb::GetSnapshotResponse {
            snapshot_id: row.id.clone(),
            camera: Some(common::CameraRef {
                site: row.site.clone(),
                camera: row.camera.clone(),
            }),
            captured_at: Some(timestamp_from_micros(row.captured_us)),
            detection_id: row.detection_id.clone(),
            content_type: row.content_type.clone(),
            image: image.to_vec(),
            width: row.width,
            height: row.height,
            sha256: row.sha256.to_vec(),
        }))
    }

    async fn get_detector_status(
        &self,
        req: Request<pb::GetDetectorStatusRequest>,
    ) -> Result<Response<pb::GetDetectorStatusResponse>, Status> {
        let who = principal(&req)?;
        let r = req.into_inner();
        if !r.site.is_empty() {
            auth::authorize(&who, &r.site, Permission::ViewStatus)?;
        }
        let wanted = common::camera_pairs(&r.cameras)?;
        for (site, _) in &wanted {
            auth::authorize(&who, site, Permission::ViewStatus)?;
        }
        let all = self.detection.statuses();
        for (site, camera) in &wanted {
            if !all.iter().any(|(s, c, _)| s == site && c == camera) {
                return Err(Status::not_found(format!(
                    "{site}/{camera} is not in this replica's shard"
                )));
            }
        }
        let shared = self.detection.shared();
        let model = match &shared.engine {
            Some(e) => {
                let i = e.info();
                pb::ModelInfo {
                    name: i.name.clone(),
                    sha256: i.sha256.to_vec(),
                    input_width: i.input_width,
                    input_height: i.input_height,
                    classes: i.labels.iter().map(|s| s.to_string()).collect(),
                    execution_provider: e.provider().to_string(),
                }
            }
            None => pb::ModelInfo {
                classes: kordon_infer::COCO_LABELS
                    .iter()
                    .map(|s| s.to_string())
                    .collect(),
                execution_provider: "none".into(),
                ..Default::default()
            },
        };
        let cameras = all
            .into_iter()
            .filter(|(s, c, _)| {
                (r.site.is_empty() || *s == r.site)
                    && (wanted.is_empty() || wanted.iter().any(|(ws, wc)| ws == s && wc == c))
                    && can(&who, s, Permission::ViewStatus)
            })
            .map(|(site, camera, st)| {
                let snap = st.snapshot();
                let rates = st.rates();
                let mut last_error = snap.last_error.clone().unwrap_or_default();
                if last_error.is_empty()
                    && let Some(p) = &shared.engine_problem
                {
                    last_error = format!("object detector unavailable: {p}");
                }
                pb::CameraDetectorStatus {
                    camera: Some(common::CameraRef { site, camera }),
                    state: state(snap.state) as i32,
                    state_since: Some(ts(snap.state_since)),
                    decoded_fps: rates.decoded_fps,
                    analysed_fps: rates.analysed_fps,
                    inferred_fps: rates.inferred_fps,
                    motion_gated: snap.motion_gated,
                    inference_time: Some(prost_types::Duration {
                        seconds: rates.inference_time.as_secs() as i64,
                        nanos: rates.inference_time.subsec_nanos() as i32,
                    }),
                    width: snap.width,
                    height: snap.height,
                    active_tracks: snap.active_tracks,
                    detections_total: st
                        .counters
                        .detections
                        .load(std::sync::atomic::Ordering::Relaxed),
                    last_frame_time: snap.last_frame_time.map(ts),
                    last_detection_time: snap.last_detection_time.map(ts),
                    last_error,
                    config_generation: snap.generation,
                }
            })
            .collect();
        Ok(Response::new(pb::GetDetectorStatusResponse {
            model: Some(model),
            replica: self.detection.config().replica.clone(),
            cameras,
        }))
    }

    async fn apply_cameras(
        &self,
        req: Request<pb::ApplyCamerasRequest>,
    ) -> Result<Response<pb::ApplyCamerasResponse>, Status> {
        let who = principal(&req)?;
        let r = req.into_inner();
        for (i, c) in r.cameras.iter().enumerate() {
            let site = c
                .camera
                .as_ref()
                .map(|c| c.site.as_str())
                .filter(|s| !s.is_empty())
                .ok_or_else(|| invalid(format!("cameras[{i}].camera.site: required")))?;
            auth::authorize(&who, site, Permission::WriteMedia)?;
        }
        if r.replace {
            // Replacing removes cameras of every site in the shard: the caller must manage each.
            for c in self.detection.shard() {
                if let Some(site) = c.camera.as_ref().map(|c| c.site.as_str()) {
                    auth::authorize(&who, site, Permission::WriteMedia)?;
                }
            }
        }
        let results = self.detection.apply(r.cameras, r.replace)?;
        for (site, camera, outcome) in &results {
            if *outcome != Outcome::Unchanged {
                tracing::info!(%site, %camera, ?outcome, by = %who, "detection camera applied");
            }
        }
        Ok(Response::new(pb::ApplyCamerasResponse {
            results: results
                .into_iter()
                .map(|(site, camera, o)| pb::CameraApplyResult {
                    camera: Some(common::CameraRef { site, camera }),
                    outcome: match o {
                        Outcome::Created => pb::ApplyOutcome::Created,
                        Outcome::Updated => pb::ApplyOutcome::Updated,
                        Outcome::Unchanged => pb::ApplyOutcome::Unchanged,
                        Outcome::Stale => pb::ApplyOutcome::Stale,
                        Outcome::Removed => pb::ApplyOutcome::Removed,
                    } as i32,
                })
                .collect(),
        }))
    }

    async fn remove_camera(
        &self,
        req: Request<pb::RemoveCameraRequest>,
    ) -> Result<Response<pb::RemoveCameraResponse>, Status> {
        let who = principal(&req)?;
        let c = req.into_inner().camera.unwrap_or_default();
        if c.site.is_empty() || c.camera.is_empty() {
            return Err(invalid("camera.site and camera.camera are required"));
        }
        auth::authorize(&who, &c.site, Permission::WriteMedia)?;
        let was_present = self.detection.remove(&c.site, &c.camera);
        if was_present {
            tracing::info!(site = %c.site, camera = %c.camera, by = %who, "detection camera removed");
        }
        Ok(Response::new(pb::RemoveCameraResponse { was_present }))
    }

    async fn get_shard(
        &self,
        req: Request<pb::GetShardRequest>,
    ) -> Result<Response<pb::GetShardResponse>, Status> {
        let who = principal(&req)?;
        let cameras: Vec<_> = self
            .detection
            .shard()
            .into_iter()
            .filter(|c| {
                c.camera
                    .as_ref()
                    .is_some_and(|c| can(&who, &c.site, Permission::ViewStatus))
            })
            .collect();
        let site = cameras
            .first()
            .and_then(|c| c.camera.as_ref())
            .map(|c| c.site.clone())
            .unwrap_or_default();
        let cfg = self.detection.config();
        Ok(Response::new(pb::GetShardResponse {
            site,
            replica: cfg.replica.clone(),
            shard_index: cfg.shard_index,
            cameras,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn watch(
        api: &DetectionApi,
    ) -> Result<Response<BoxStream<pb::WatchDetectionsResponse>>, Status> {
        let mut req = Request::new(pb::WatchDetectionsRequest {
            site: "burgas".into(),
            ..Default::default()
        });
        req.extensions_mut().insert(Principal::development());
        api.watch_detections(req).await
    }

    #[tokio::test]
    async fn a_watch_beyond_the_limit_is_refused_and_a_closed_one_frees_its_slot() {
        let dir = tempfile::tempdir().unwrap();
        let stop = tokio_util::sync::CancellationToken::new();
        let detection = Detection::start(
            crate::config::DetectionServiceConfig::default(),
            dir.path(),
            Err("no detector in this test".into()),
            None,
            kordon_media::OpenContext::new(kordon_media::SourceConfig::default()),
            stop.clone(),
        )
        .await
        .unwrap();
        let api = DetectionApi::new(detection.clone()).with_max_watches(2);
        let first = watch(&api).await.expect("the first watch is served");
        let _second = watch(&api).await.expect("the second watch is served");
        match watch(&api).await {
            Ok(_) => panic!("a third watch was served beyond a limit of 2"),
            Err(s) => {
                assert_eq!(s.code(), tonic::Code::ResourceExhausted, "{s:?}");
                assert!(
                    s.message().contains("WatchDetections") && s.message().contains(" 2 "),
                    "the refusal names the limit: {s:?}"
                );
            }
        }
        assert_eq!(detection.shared().hub.subscribers(), 2);
        // The client goes away while nothing is detected: its task ends, and with it the
        // subscription and the slot.
        drop(first);
        let mut third = None;
        for _ in 0..200 {
            if detection.shared().hub.subscribers() == 1
                && let Ok(w) = watch(&api).await
            {
                third = Some(w);
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(third.is_some(), "the closed watch's slot was never freed");
        stop.cancel();
    }
}
