//! `kordon.ingest.v1.IngestService` over the running [`Ingest`].

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use kordon_proto::common::v1 as common;
use kordon_proto::ingest::v1 as pb;
use kordon_proto::ingest::v1::ingest_service_server::IngestService;
use kordon_runtime::auth::{self, Permission};
use tonic::{Request, Response, Status};

use crate::config::{CameraConfig, Transport};
use crate::service::{ApplyOutcome, Ingest};
use crate::status::{CameraState, CameraStatus};
use kordon_media::SourceKind;

/// The gRPC implementation of `kordon.ingest.v1.IngestService`.
#[derive(Clone)]
pub struct IngestApi {
    ingest: Arc<Ingest>,
    watches: WatchLimit,
}

/// Most WatchCameraStatus streams one process serves at once; more are RESOURCE_EXHAUSTED.
pub const MAX_WATCHES: usize = kordon_runtime::watch::DEFAULT_MAX_WATCHES;

impl IngestApi {
    pub fn new(ingest: Arc<Ingest>) -> Self {
        IngestApi {
            ingest,
            watches: WatchLimit::new("WatchCameraStatus", MAX_WATCHES),
        }
    }

    /// At most `max` WatchCameraStatus streams at once (tests use a small one).
    pub fn with_max_watches(mut self, max: usize) -> Self {
        self.watches = WatchLimit::new("WatchCameraStatus", max);
        self
    }
}

use kordon_proto::time::timestamp_from_system_time as ts;
use kordon_runtime::watch::WatchLimit;

fn state(s: CameraState) -> pb::CameraState {
    match s {
        CameraState::Starting => pb::CameraState::Starting,
        CameraState::Recording => pb::CameraState::Recording,
        CameraState::Reconnecting => pb::CameraState::Reconnecting,
        CameraState::Offline => pb::CameraState::Offline,
        CameraState::Stopped => pb::CameraState::Stopped,
    }
}

fn to_proto(ingest: &Ingest, s: &CameraStatus) -> pb::CameraStatus {
    let (spooled_segments, spooled_bytes) = ingest.spool().pending_for(&s.site, &s.camera);
    pb::CameraStatus {
        camera: Some(common::CameraRef {
            site: s.site.clone(),
            camera: s.camera.clone(),
        }),
        state: state(s.state) as i32,
        state_since: Some(ts(s.state_since)),
        codec: match s.codec {
            Some("h264") => common::VideoCodec::H264,
            Some("h265") => common::VideoCodec::H265,
            _ => common::VideoCodec::Unspecified,
        } as i32,
        width: s.width,
        height: s.height,
        fps: s.fps,
        bitrate_bps: s.bitrate_bps,
        last_segment_end: s.last_segment_end.map(ts),
        segments_total: s.segments_total,
        reconnects: s.reconnects,
        gaps_total: s.gaps_total,
        spooled_segments,
        spooled_bytes,
        last_error: s.last_error.clone().unwrap_or_default(),
        last_error_time: s.last_error_time.map(ts),
        replica: ingest.config().replica.clone(),
        shard_index: 0,
        spec_generation: s.generation,
        source: match s.source {
            None => pb::RtspSource::Unspecified,
            Some(SourceKind::Retina) => pb::RtspSource::Retina,
            Some(SourceKind::Gstreamer) => pb::RtspSource::Gstreamer,
        } as i32,
        transport: match s.transport {
            None => pb::RtspTransport::Unspecified,
            Some(Transport::Tcp) => pb::RtspTransport::Tcp,
            Some(Transport::Udp) => pb::RtspTransport::Udp,
        } as i32,
        dead_letters: s.dead_letters,
        last_dead_letter: s
            .last_dead_letter
            .map(|(class, _)| class.as_str().to_string())
            .unwrap_or_default(),
        last_dead_letter_time: s.last_dead_letter.map(|(_, t)| ts(t)),
    }
}

fn camera_ref(c: Option<&common::CameraRef>) -> Result<(&str, &str), Status> {
    match c {
        Some(c) if !c.site.is_empty() && !c.camera.is_empty() => Ok((&c.site, &c.camera)),
        _ => Err(Status::invalid_argument(
            "camera.site and camera.camera are required",
        )),
    }
}

fn spec_from_proto(s: &pb::CameraSpec) -> Result<CameraConfig, Status> {
    let (site, name) = camera_ref(s.camera.as_ref())?;
    // The operator resolves the Secret a camera names and sends what it holds; a reference
    // alone cannot be used here (ingest reads no Secrets).
    let (username, password) = match (&s.credentials, &s.resolved_credentials) {
        (_, Some(c)) if c.username.is_empty() => {
            return Err(Status::invalid_argument(format!(
                "{site}/{name}: resolved_credentials has an empty user name"
            )));
        }
        (_, Some(c)) => (Some(c.username.clone()), Some(c.password.clone())),
        (Some(r), None) => {
            return Err(Status::invalid_argument(format!(
                "{site}/{name}: credentials name Secret `{}` but resolved_credentials is unset: \
                 the operator resolves it",
                r.secret_name
            )));
        }
        (None, None) => (None, None),
    };
    let segment_duration = match &s.segment_duration {
        None => None,
        Some(d) if d.seconds >= 0 && d.nanos >= 0 => {
            Some(Duration::new(d.seconds as u64, d.nanos as u32))
        }
        Some(_) => {
            return Err(Status::invalid_argument(
                "segment_duration must be positive",
            ));
        }
    };
    Ok(CameraConfig {
        site: site.to_string(),
        name: name.to_string(),
        record: s.record_url.clone(),
        detect: (!s.detect_url.is_empty()).then(|| s.detect_url.clone()),
        transport: match pb::RtspTransport::try_from(s.transport) {
            Ok(pb::RtspTransport::Udp) => Transport::Udp,
            _ => Transport::Tcp,
        },
        username,
        password,
        segment_duration,
    })
}

fn spec_to_proto(c: &CameraConfig) -> pb::CameraSpec {
    pb::CameraSpec {
        camera: Some(common::CameraRef {
            site: c.site.clone(),
            camera: c.name.clone(),
        }),
        record_url: c.redacted_record_url(),
        detect_url: c
            .detect
            .as_deref()
            .map(crate::config::redact_url)
            .unwrap_or_default(),
        transport: match c.transport {
            Transport::Tcp => pb::RtspTransport::Tcp,
            Transport::Udp => pb::RtspTransport::Udp,
        } as i32,
        // Never the secrets; GetShard says only whether the camera has credentials.
        credentials: c.username.as_ref().map(|_| pb::CredentialsRef::default()),
        segment_duration: c.segment_duration.map(|d| prost_types::Duration {
            seconds: d.as_secs() as i64,
            nanos: d.subsec_nanos() as i32,
        }),
        recording_mode: pb::RecordingMode::Continuous as i32,
        pre_roll: None,
        post_roll: None,
        generation: 0,
        resolved_credentials: None,
    }
}

type WatchStream =
    Pin<Box<dyn Stream<Item = Result<pb::WatchCameraStatusResponse, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl IngestService for IngestApi {
    async fn get_camera_status(
        &self,
        request: Request<pb::GetCameraStatusRequest>,
    ) -> Result<Response<pb::GetCameraStatusResponse>, Status> {
        let (site, camera) = camera_ref(request.get_ref().camera.as_ref())?;
        auth::authorize_request(&request, site, Permission::ViewStatus)?;
        let s = self.ingest.board().get(site, camera).ok_or_else(|| {
            Status::not_found(format!("camera {site}/{camera} is not in this shard"))
        })?;
        Ok(Response::new(pb::GetCameraStatusResponse {
            status: Some(to_proto(&self.ingest, &s)),
        }))
    }

    async fn list_camera_status(
        &self,
        request: Request<pb::ListCameraStatusRequest>,
    ) -> Result<Response<pb::ListCameraStatusResponse>, Status> {
        let principal = auth::principal(&request)?;
        let req = request.get_ref();
        if !req.site.is_empty() {
            auth::authorize(principal, &req.site, Permission::ViewStatus)?;
        }
        let scope = principal.scope(Permission::ViewStatus);
        let states: Vec<i32> = req.states.clone();
        let page_size = match req.page.as_ref().map(|p| p.page_size).unwrap_or(0) {
            0 => 100,
            n => n.min(1000),
        } as usize;
        let after = req
            .page
            .as_ref()
            .map(|p| p.page_token.clone())
            .unwrap_or_default();
        let mut all: Vec<CameraStatus> = self
            .ingest
            .board()
            .all()
            .into_iter()
            .filter(|s| req.site.is_empty() || s.site == req.site)
            .filter(|s| scope.contains(&s.site))
            .filter(|s| states.is_empty() || states.contains(&(state(s.state) as i32)))
            .filter(|s| after.is_empty() || format!("{}/{}", s.site, s.camera) > after)
            .collect();
        all.sort_by(|a, b| (&a.site, &a.camera).cmp(&(&b.site, &b.camera)));
        let more = all.len() > page_size;
        all.truncate(page_size);
        let next = if more {
            all.last()
                .map(|s| format!("{}/{}", s.site, s.camera))
                .unwrap_or_default()
        } else {
            String::new()
        };
        Ok(Response::new(pb::ListCameraStatusResponse {
            cameras: all.iter().map(|s| to_proto(&self.ingest, s)).collect(),
            page: Some(common::PageResponse {
                next_page_token: next,
            }),
        }))
    }

    async fn watch_camera_status(
        &self,
        request: Request<pb::WatchCameraStatusRequest>,
    ) -> Result<Response<WatchStream>, Status> {
        let principal = auth::principal(&request)?.clone();
        let req = request.into_inner();
        if !req.site.is_empty() {
            auth::authorize(&principal, &req.site, Permission::ViewStatus)?;
        }
        for c in &req.cameras {
            auth::authorize(&principal, &c.site, Permission::ViewStatus)?;
        }
        let scope = principal.scope(Permission::ViewStatus);
        let wanted = move |s: &CameraStatus| {
            scope.contains(&s.site)
                && (req.site.is_empty() || s.site == req.site)
                && (req.cameras.is_empty()
                    || req
                        .cameras
                        .iter()
                        .any(|c| c.site == s.site && c.camera == s.camera))
        };
        let permit = self.watches.try_acquire()?;
        // Subscribe before the snapshot so no change falls between them.
        let mut rx = self.ingest.board().subscribe();
        let initial: Vec<CameraStatus> = self
            .ingest
            .board()
            .all()
            .into_iter()
            .filter(|s| wanted(s))
            .collect();
        let ingest = self.ingest.clone();
        let stream = async_stream(move |tx| async move {
            let _permit = permit;
            for s in initial {
                let msg = pb::WatchCameraStatusResponse {
                    status: Some(to_proto(&ingest, &s)),
                    initial: true,
                };
                if tx.send(Ok(msg)).await.is_err() {
                    return;
                }
            }
            loop {
                // A client that went away ends the task now, not at the camera's next change
                // (which may never come): its task, subscription and slot go.
                let got = tokio::select! {
                    _ = tx.closed() => return,
                    got = rx.recv() => got,
                };
                match got {
                    Ok(s) if wanted(&s) => {
                        let msg = pb::WatchCameraStatusResponse {
                            status: Some(to_proto(&ingest, &s)),
                            initial: false,
                        };
                        if tx.send(Ok(msg)).await.is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        let _ = tx
                            .send(Err(Status::resource_exhausted(format!(
                                "watcher fell {n} updates behind; watch again for a fresh snapshot"
                            ))))
                            .await;
                        return;
                    }
                    Err(_) => return,
                }
            }
        });
        Ok(Response::new(stream))
    }

    async fn apply_cameras(
        &self,
        request: Request<pb::ApplyCamerasRequest>,
    ) -> Result<Response<pb::ApplyCamerasResponse>, Status> {
        let principal = auth::principal(&request)?;
        let req = request.get_ref();
        let mut specs = Vec::with_capacity(req.cameras.len());
        for c in &req.cameras {
            let spec = spec_from_proto(c)?;
            auth::authorize(principal, &spec.site, Permission::Administer)?;
            specs.push((spec, c.generation));
        }
        if req.replace {
            // Replacing may remove cameras of any site in this shard.
            for c in self.ingest.cameras() {
                auth::authorize(principal, &c.site, Permission::Administer)?;
            }
        }
        let results = self.ingest.apply_generations(specs, req.replace)?;
        Ok(Response::new(pb::ApplyCamerasResponse {
            results: results
                .into_iter()
                .map(|(c, o)| pb::CameraApplyResult {
                    camera: Some(common::CameraRef {
                        site: c.site,
                        camera: c.name,
                    }),
                    outcome: match o {
                        ApplyOutcome::Created => pb::ApplyOutcome::Created,
                        ApplyOutcome::Updated => pb::ApplyOutcome::Updated,
                        ApplyOutcome::Unchanged => pb::ApplyOutcome::Unchanged,
                        ApplyOutcome::Stale => pb::ApplyOutcome::Stale,
                        ApplyOutcome::Removed => pb::ApplyOutcome::Removed,
                    } as i32,
                })
                .collect(),
        }))
    }

    async fn remove_camera(
        &self,
        request: Request<pb::RemoveCameraRequest>,
    ) -> Result<Response<pb::RemoveCameraResponse>, Status> {
        let (site, camera) = camera_ref(request.get_ref().camera.as_ref())?;
        auth::authorize_request(&request, site, Permission::Administer)?;
        let last = self
            .ingest
            .board()
            .get(site, camera)
            .and_then(|s| s.last_segment_end);
        let was_present = self.ingest.remove(site, camera);
        Ok(Response::new(pb::RemoveCameraResponse {
            was_present,
            last_segment_end: last.map(ts),
        }))
    }

    async fn get_shard(
        &self,
        request: Request<pb::GetShardRequest>,
    ) -> Result<Response<pb::GetShardResponse>, Status> {
        let scope = auth::principal(&request)?.scope(Permission::ViewStatus);
        let cameras: Vec<pb::CameraSpec> = self
            .ingest
            .cameras()
            .iter()
            .filter(|c| scope.contains(&c.site))
            .map(spec_to_proto)
            .collect();
        let site = cameras
            .first()
            .and_then(|c| c.camera.as_ref())
            .map(|c| c.site.clone())
            .unwrap_or_default();
        Ok(Response::new(pb::GetShardResponse {
            site,
            replica: self.ingest.config().replica.clone(),
            shard_index: 0,
            cameras,
        }))
    }
}

/// A server stream fed by a task through a bounded channel (slow watchers apply backpressure
/// to their own task only).
fn async_stream<F, Fut>(f: F) -> WatchStream
where
    F: FnOnce(tokio::sync::mpsc::Sender<Result<pb::WatchCameraStatusResponse, Status>>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(f(tx));
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> pb::CameraSpec {
        pb::CameraSpec {
            camera: Some(common::CameraRef {
                site: "edirne".into(),
                camera: "gate-1".into(),
            }),
            record_url: "rtsp://10.1.0.1/main".into(),
            ..Default::default()
        }
    }

    /// Issue 10: credentials resolved by the operator are recorded with; a bare reference is
    /// refused with a message that names the Secret; nothing echoes the password.
    #[test]
    fn resolved_credentials_are_used_and_never_echoed() {
        let mut s = spec();
        s.credentials = Some(pb::CredentialsRef {
            secret_name: "gate-1-rtsp".into(),
            ..Default::default()
        });
        let e = spec_from_proto(&s).unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        assert!(e.message().contains("gate-1-rtsp"), "{}", e.message());

        s.resolved_credentials = Some(common::RtspCredentials {
            username: "operator-7".into(),
            password: "Kapikule!2026".into(),
        });
        let c = spec_from_proto(&s).unwrap();
        assert_eq!(c.username.as_deref(), Some("operator-7"));
        assert_eq!(c.password.as_deref(), Some("Kapikule!2026"));
        for shown in [
            format!("{c:?}"),
            format!("{s:?}"),
            format!("{:?}", spec_to_proto(&c)),
        ] {
            assert!(!shown.contains("Kapikule"), "{shown}");
        }
        let back = spec_to_proto(&c);
        assert!(back.resolved_credentials.is_none());
        assert!(
            back.credentials.is_some(),
            "GetShard says the camera has credentials"
        );
    }
}
