//! Talking to a site's ingest replicas over gRPC: reading camera status, and handing cameras
//! over when placement changes.
//!
//! Status is read per site, once per reconcile, with `ListCameraStatus` on every replica; the
//! result is kept in [`Observations`] for the Camera reconciler. A replica that cannot be
//! asked is recorded as unreachable with the reason, and its cameras' status says so instead
//! of showing stale or invented values.
//!
//! Handover ([`plan_handover`]) keeps recording continuous when a camera moves: the new replica
//! is told to record it first (`ApplyCameras`), and the old replica lets go (`RemoveCamera`)
//! only once the new one reports it recording. A camera deleted from the cluster is removed at
//! once.
//!
//! Every call names the TLS credentials for its site: the operator's own certificate for that
//! site, minted from the site CA ([`crate::certificates`]), used for `https://` addresses. A
//! site whose certificates come from the user (`tlsSecret`) gets `None`, and the operator then
//! presents `ingest.cert_file`/`key_file` from its configuration, if any.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use kordon_proto::common::v1 as common;
use kordon_proto::ingest::v1 as pb;
use kordon_proto::ingest::v1::ingest_service_client::IngestServiceClient;
use kordon_runtime::client::{AuthedChannel, TlsPem};
use kube::ResourceExt;

use crate::config::IngestClientConfig;
use crate::crd::{Camera, RecordingMode};
pub use crate::replicas::Replica;
use crate::replicas::{self, Channels};

/// What ingest replicas answered: per camera its `CameraStatus`.
pub type ReplicaObservation = replicas::ReplicaObservation<pb::CameraStatus>;
pub type SiteObservation = replicas::SiteObservation<pb::CameraStatus>;
pub type CameraObservation = replicas::CameraObservation<pb::CameraStatus>;
pub type Observations = replicas::Observations<pb::CameraStatus>;

/// The calls the operator makes to an ingest replica. A trait so that reconciler tests can
/// stand in for ingest.
pub trait IngestClient: Send + Sync + 'static {
    /// Every camera status of `site` on the replica.
    fn list(
        &self,
        replica: Replica,
        site: String,
    ) -> BoxFuture<'static, Result<Vec<pb::CameraStatus>, String>>;
    /// Adds or updates cameras on the replica (never removes).
    fn apply(
        &self,
        replica: Replica,
        cameras: Vec<pb::CameraSpec>,
    ) -> BoxFuture<'static, Result<(), String>>;
    /// Stops a camera on the replica once its last segment is safe.
    fn remove(
        &self,
        replica: Replica,
        camera: common::CameraRef,
    ) -> BoxFuture<'static, Result<(), String>>;
}

/// The real client: one lazily connected channel per replica address and credentials (a
/// renewed certificate replaces the channel).
pub struct GrpcIngest {
    channels: Channels,
}

impl GrpcIngest {
    pub fn new(config: IngestClientConfig) -> Self {
        Self {
            channels: Channels::new(config),
        }
    }

    fn client(&self, replica: &Replica) -> Result<IngestServiceClient<AuthedChannel>, String> {
        self.channels.get(replica).map(IngestServiceClient::new)
    }
}

impl IngestClient for GrpcIngest {
    fn list(
        &self,
        replica: Replica,
        site: String,
    ) -> BoxFuture<'static, Result<Vec<pb::CameraStatus>, String>> {
        let client = self.client(&replica);
        let timeout = self.channels.timeout();
        Box::pin(async move {
            let mut client = client?;
            let mut out = Vec::new();
            let mut token = String::new();
            // Bounded: 10,000 pages of 1,000 cameras is far beyond one replica's shard.
            for _ in 0..10_000 {
                let call = client.list_camera_status(pb::ListCameraStatusRequest {
                    site: site.clone(),
                    states: Vec::new(),
                    page: Some(common::PageRequest {
                        page_size: 1000,
                        page_token: token.clone(),
                    }),
                });
                let resp = replicas::call(timeout, "ListCameraStatus", call).await?;
                out.extend(resp.cameras);
                token = resp.page.map(|p| p.next_page_token).unwrap_or_default();
                if token.is_empty() {
                    break;
                }
            }
            Ok(out)
        })
    }

    fn apply(
        &self,
        replica: Replica,
        cameras: Vec<pb::CameraSpec>,
    ) -> BoxFuture<'static, Result<(), String>> {
        let client = self.client(&replica);
        let timeout = self.channels.timeout();
        Box::pin(async move {
            let mut client = client?;
            let call = client.apply_cameras(pb::ApplyCamerasRequest {
                cameras,
                replace: false,
            });
            replicas::call(timeout, "ApplyCameras", call).await?;
            Ok(())
        })
    }

    fn remove(
        &self,
        replica: Replica,
        camera: common::CameraRef,
    ) -> BoxFuture<'static, Result<(), String>> {
        let client = self.client(&replica);
        // RemoveCamera waits for the last segment's upload: allow it a segment's worth more.
        let timeout = self.channels.timeout() + Duration::from_secs(60);
        Box::pin(async move {
            let mut client = client?;
            let call = client.remove_camera(pb::RemoveCameraRequest {
                camera: Some(camera),
            });
            replicas::call(timeout, "RemoveCamera", call).await?;
            Ok(())
        })
    }
}

/// Asks every replica of a site for its cameras' status, concurrently, presenting `tls`.
pub async fn collect(
    client: &dyn IngestClient,
    config: &IngestClientConfig,
    tls: Option<Arc<TlsPem>>,
    namespace: &str,
    site: &str,
    replicas: u32,
) -> SiteObservation {
    let ask = |ordinal| -> BoxFuture<'_, Result<BTreeMap<String, pb::CameraStatus>, String>> {
        let replica = Replica {
            address: config.address_of(namespace, site, ordinal),
            tls: tls.clone(),
        };
        let fut = client.list(replica, site.to_string());
        Box::pin(async move {
            Ok(fut
                .await?
                .into_iter()
                .filter_map(|s| {
                    let c = s.camera.as_ref()?;
                    (c.site == site).then(|| (c.camera.clone(), s.clone()))
                })
                .collect())
        })
    };
    replicas::observe(
        replicas,
        |ordinal| crate::placement::replica_name(site, ordinal),
        ask,
        &crate::metrics::Metrics::get().ingest_calls,
    )
    .await
}

/// The ingest view of a Camera resource.
pub fn camera_spec(
    site: &str,
    camera: &Camera,
    site_segment_seconds: Option<i32>,
    credentials: Option<common::RtspCredentials>,
) -> pb::CameraSpec {
    let spec = &camera.spec;
    let secs = |s: i32| prost_types::Duration {
        seconds: i64::from(s),
        nanos: 0,
    };
    pb::CameraSpec {
        camera: Some(common::CameraRef {
            site: site.to_string(),
            camera: camera.name_any(),
        }),
        record_url: spec.streams.record.clone(),
        detect_url: spec.streams.detect.clone().unwrap_or_default(),
        transport: pb::RtspTransport::from(spec.streams.transport) as i32,
        credentials: spec.credentials.as_ref().map(pb::CredentialsRef::from),
        segment_duration: spec
            .recording
            .segment_seconds
            .or(site_segment_seconds)
            .map(secs),
        recording_mode: match spec.recording.mode {
            RecordingMode::Continuous => pb::RecordingMode::Continuous,
            RecordingMode::Events => pb::RecordingMode::Events,
        } as i32,
        pre_roll: spec.recording.pre_roll_seconds.map(secs),
        post_roll: spec.recording.post_roll_seconds.map(secs),
        generation: camera.metadata.generation.unwrap_or(0),
        resolved_credentials: credentials,
    }
}

/// What to tell one replica.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ReplicaPlan {
    /// Cameras placed here that the replica lacks or holds at an older generation.
    pub apply: Vec<String>,
    /// Cameras the replica holds that are placed elsewhere and recording there, or deleted.
    pub remove: Vec<String>,
    /// Cameras placed elsewhere that the replica keeps until their new replica records them.
    pub waiting: Vec<String>,
}

/// The handover steps for every reachable replica (by ordinal). `wanted` maps each camera of
/// the site to (its ordinal, its generation).
pub fn plan_handover(
    obs: &SiteObservation,
    wanted: &BTreeMap<String, (u32, i64)>,
) -> BTreeMap<u32, ReplicaPlan> {
    let recording_on = |ordinal: u32, camera: &str| {
        obs.replicas.get(ordinal as usize).is_some_and(|r| {
            r.error.is_none()
                && r.cameras
                    .get(camera)
                    .is_some_and(|s| s.state == pb::CameraState::Recording as i32)
        })
    };
    let mut plans = BTreeMap::new();
    for (ordinal, replica) in obs.replicas.iter().enumerate() {
        if replica.error.is_some() {
            continue;
        }
        let ordinal = ordinal as u32;
        let mut plan = ReplicaPlan::default();
        for (camera, (placed, generation)) in wanted {
            if *placed != ordinal {
                continue;
            }
            let current = replica.cameras.get(camera);
            let stopped = current.is_some_and(|s| s.state == pb::CameraState::Stopped as i32);
            if current.is_none_or(|s| s.spec_generation < *generation) || stopped {
                plan.apply.push(camera.clone());
            }
        }
        let held: HashSet<&String> = replica
            .cameras
            .iter()
            .filter(|(_, s)| s.state != pb::CameraState::Stopped as i32)
            .map(|(c, _)| c)
            .collect();
        for camera in held {
            match wanted.get(camera) {
                None => plan.remove.push(camera.clone()),
                Some((placed, _)) if *placed == ordinal => {}
                Some((placed, _)) => {
                    if recording_on(*placed, camera) {
                        plan.remove.push(camera.clone());
                    } else {
                        plan.waiting.push(camera.clone());
                    }
                }
            }
        }
        plan.remove.sort();
        plan.waiting.sort();
        if plan != ReplicaPlan::default() {
            plans.insert(ordinal, plan);
        }
    }
    plans
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(camera: &str, state: pb::CameraState, generation: i64) -> pb::CameraStatus {
        pb::CameraStatus {
            camera: Some(common::CameraRef {
                site: "s".into(),
                camera: camera.into(),
            }),
            state: state as i32,
            spec_generation: generation,
            ..Default::default()
        }
    }

    fn replica(name: &str, cams: &[pb::CameraStatus]) -> ReplicaObservation {
        ReplicaObservation {
            name: name.into(),
            error: None,
            cameras: cams
                .iter()
                .map(|c| (c.camera.as_ref().unwrap().camera.clone(), c.clone()))
                .collect(),
        }
    }

    #[test]
    fn a_moved_camera_is_released_only_once_its_new_replica_records_it() {
        use pb::CameraState::*;
        let wanted = BTreeMap::from([("a".to_string(), (1, 1)), ("b".to_string(), (0, 2))]);
        // `a` moved from 0 to 1; replica 1 does not have it yet.
        let mut obs = SiteObservation {
            replicas: vec![
                replica(
                    "s-ingest-0",
                    &[status("a", Recording, 1), status("b", Recording, 1)],
                ),
                replica("s-ingest-1", &[]),
            ],
        };
        let plans = plan_handover(&obs, &wanted);
        assert_eq!(plans[&0].apply, vec!["b".to_string()], "b's spec is newer");
        assert_eq!(plans[&0].remove, Vec::<String>::new());
        assert_eq!(plans[&0].waiting, vec!["a".to_string()]);
        assert_eq!(plans[&1].apply, vec!["a".to_string()]);

        // Replica 1 is starting it: still wait.
        obs.replicas[1] = replica("s-ingest-1", &[status("a", Starting, 1)]);
        assert_eq!(
            plan_handover(&obs, &wanted)[&0].waiting,
            vec!["a".to_string()]
        );

        // Recording on 1: now 0 lets go.
        obs.replicas[1] = replica("s-ingest-1", &[status("a", Recording, 1)]);
        obs.replicas[0] = replica(
            "s-ingest-0",
            &[status("a", Recording, 1), status("b", Recording, 2)],
        );
        let plans = plan_handover(&obs, &wanted);
        assert_eq!(plans[&0].remove, vec!["a".to_string()]);
        assert!(!plans.contains_key(&1));
    }

    #[test]
    fn deleted_cameras_go_at_once_and_unreachable_replicas_are_left_alone() {
        use pb::CameraState::*;
        let wanted = BTreeMap::new();
        let mut obs = SiteObservation {
            replicas: vec![replica("s-ingest-0", &[status("gone", Recording, 1)])],
        };
        assert_eq!(
            plan_handover(&obs, &wanted)[&0].remove,
            vec!["gone".to_string()]
        );
        obs.replicas[0].error = Some("Unavailable".into());
        assert!(plan_handover(&obs, &wanted).is_empty());
    }
}
