//! Handing each detection replica its shard of a site's cameras, and reading how they are
//! analysed.
//!
//! Cameras are placed on detection replicas with the same rendezvous hashing as on ingest
//! replicas ([`crate::placement`]), over `spec.detection.replicas`, so a camera's detection
//! replica does not depend on its ingest replica. On each Site reconcile, every replica is
//! asked for its cameras (`GetDetectorStatus`) and, when what it holds is not what it should,
//! told its exact shard (`ApplyCameras` with `replace`): moved and deleted cameras leave the
//! replica in the same call that brings the new ones, so there is no separate removal step.
//! Detection keeps no footage, so unlike ingest's handover nothing waits for the new replica.
//!
//! Guarantees:
//! - a replica is sent its shard when the set of cameras it holds differs from its placement,
//!   when it holds a camera at an older generation, or when the shard differs from the last
//!   one it accepted from this operator process (a site-wide setting such as
//!   `framesPerSecond` changes no camera's generation); otherwise nothing is sent;
//! - a replica that cannot be asked, or refuses its shard, is recorded with the reason in the
//!   site's observation (its cameras' `Detecting` condition and the Site's `Degraded` say so)
//!   and is tried again on the next reconcile;
//! - a camera's RTSP credentials are read from its Secret only when its replica is sent a shard
//!   ([`ResolveCredentials`], as for ingest) and travel only in that `ApplyCameras` call; a
//!   camera whose Secret cannot be used is left out of the shard (its replica would only fail
//!   at the camera), logged, and the shard is sent again on the next reconcile.
//!
//! Assumes the caller passes the complete set of the site's cameras (the camera cache is
//! synced): a `replace` with a partial list would drop the missing cameras.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use kordon_proto::common::v1 as common;
use kordon_proto::detection::v1 as pb;
use kordon_proto::detection::v1::detection_service_client::DetectionServiceClient;
use kordon_runtime::client::TlsPem;
use kube::ResourceExt;
use prost::Message;
use sha2::{Digest, Sha256};

use crate::config::{DetectionClientConfig, IngestClientConfig};
use crate::crd::{Camera, CredentialsRef, LineDirection, Point, Site};
use crate::placement;
use crate::replicas::{self, Channels, Replica};

/// Reads the credentials a Camera's `spec.credentials` names (see [`crate::credentials`]); the
/// error names the Secret and key, never a value.
pub type ResolveCredentials = Arc<
    dyn Fn(CredentialsRef) -> BoxFuture<'static, Result<common::RtspCredentials, String>>
        + Send
        + Sync,
>;

/// How a camera is analysed, as its detection replica reported it.
#[derive(Debug, Clone, PartialEq)]
pub struct Detector {
    pub status: pb::CameraDetectorStatus,
    /// The model the replica runs, e.g. `nanodet-m-416`.
    pub model: String,
    /// Where its inference runs, e.g. `cpu`.
    pub provider: String,
}

pub type ReplicaObservation = replicas::ReplicaObservation<Detector>;
pub type SiteObservation = replicas::SiteObservation<Detector>;
pub type CameraObservation = replicas::CameraObservation<Detector>;
pub type Observations = replicas::Observations<Detector>;

/// The calls the operator makes to a detection replica. A trait so that reconciler tests can
/// stand in for detection.
pub trait DetectionClient: Send + Sync + 'static {
    /// The detector status of the replica's cameras of `site`, and the model it runs.
    fn status(
        &self,
        replica: Replica,
        site: String,
    ) -> BoxFuture<'static, Result<pb::GetDetectorStatusResponse, String>>;
    /// Makes the replica's shard exactly `cameras` (`ApplyCameras` with `replace`).
    fn replace(
        &self,
        replica: Replica,
        cameras: Vec<pb::DetectionCamera>,
    ) -> BoxFuture<'static, Result<pb::ApplyCamerasResponse, String>>;
}

/// The real client, over the same channels and credentials as ingest's
/// ([`crate::replicas::Channels`]).
pub struct GrpcDetection {
    channels: Channels,
}

impl GrpcDetection {
    /// `config` is the ingest client's: deadline and the files for `tlsSecret` sites.
    pub fn new(config: IngestClientConfig) -> Self {
        Self {
            channels: Channels::new(config),
        }
    }
}

impl DetectionClient for GrpcDetection {
    fn status(
        &self,
        replica: Replica,
        site: String,
    ) -> BoxFuture<'static, Result<pb::GetDetectorStatusResponse, String>> {
        let channel = self.channels.get(&replica);
        let timeout = self.channels.timeout();
        Box::pin(async move {
            let mut client = DetectionServiceClient::new(channel?);
            let call = client.get_detector_status(pb::GetDetectorStatusRequest {
                site,
                cameras: Vec::new(),
            });
            replicas::call(timeout, "GetDetectorStatus", call).await
        })
    }

    fn replace(
        &self,
        replica: Replica,
        cameras: Vec<pb::DetectionCamera>,
    ) -> BoxFuture<'static, Result<pb::ApplyCamerasResponse, String>> {
        let channel = self.channels.get(&replica);
        let timeout = self.channels.timeout();
        Box::pin(async move {
            let mut client = DetectionServiceClient::new(channel?);
            let call = client.apply_cameras(pb::ApplyCamerasRequest {
                cameras,
                replace: true,
            });
            replicas::call(timeout, "ApplyCameras", call).await
        })
    }
}

/// The last shard each replica accepted from this process: (namespace, site, ordinal) →
/// fingerprint of the cameras sent.
#[derive(Default)]
pub struct Applied(Mutex<HashMap<(String, String, u32), [u8; 32]>>);

impl Applied {
    fn get(&self, key: &(String, String, u32)) -> Option<[u8; 32]> {
        self.0.lock().ok().and_then(|m| m.get(key).copied())
    }

    fn set(&self, key: (String, String, u32), fingerprint: [u8; 32]) {
        if let Ok(mut m) = self.0.lock() {
            m.insert(key, fingerprint);
        }
    }

    /// Forgets the site's replicas from `from` on (all of them with 0).
    pub fn forget(&self, namespace: &str, site: &str, from: u32) {
        if let Ok(mut m) = self.0.lock() {
            m.retain(|(n, s, o), _| !(n == namespace && s == site && *o >= from));
        }
    }
}

fn fingerprint(cameras: &[pb::DetectionCamera]) -> [u8; 32] {
    let mut h = Sha256::new();
    for c in cameras {
        // Length-delimited, so two lists never encode alike.
        h.update(c.encode_length_delimited_to_vec());
    }
    h.finalize().into()
}

/// The detection view of a Camera resource. `site_fps` is the site's
/// `detection.framesPerSecond`.
pub fn detection_camera(site: &str, camera: &Camera, site_fps: Option<f64>) -> pb::DetectionCamera {
    let spec = &camera.spec;
    let d = &spec.detection;
    let point = |p: &Point| common::Point {
        x: p[0] as f32,
        y: p[1] as f32,
    };
    let polygon = |points: &[Point]| common::Polygon {
        points: points.iter().map(point).collect(),
    };
    pb::DetectionCamera {
        camera: Some(common::CameraRef {
            site: site.to_string(),
            camera: camera.name_any(),
        }),
        detect_url: spec
            .streams
            .detect
            .clone()
            .unwrap_or_else(|| spec.streams.record.clone()),
        transport: pb::RtspTransport::from(spec.streams.transport) as i32,
        credentials: spec.credentials.as_ref().map(pb::CredentialsRef::from),
        // Filled in by `sync` just before the shard is sent (see `ResolveCredentials`).
        resolved_credentials: None,
        config: Some(pb::DetectionConfig {
            disabled: !d.enabled,
            classes: d.classes.clone(),
            // 0 means detection's default (0.5 confidence, 5 fps, motion threshold 0.002).
            min_confidence: d.min_confidence.unwrap_or(0.0) as f32,
            analysis_fps: d.frames_per_second.or(site_fps).unwrap_or(0.0),
            motion: Some(pb::MotionGate {
                disabled: !d.motion.enabled,
                threshold: d.motion.threshold.unwrap_or(0.0) as f32,
                hold: d.motion.hold_seconds.and_then(|s| {
                    prost_types::Duration::try_from(std::time::Duration::try_from_secs_f64(s).ok()?)
                        .ok()
                }),
            }),
            zones: d
                .zones
                .iter()
                .map(|z| pb::Zone {
                    name: z.name.clone(),
                    area: Some(polygon(&z.points)),
                })
                .collect(),
            masks: d.masks.iter().map(|m| polygon(&m.points)).collect(),
            lines: d
                .lines
                .iter()
                .map(|l| pb::Line {
                    name: l.name.clone(),
                    a: Some(point(&l.from)),
                    b: Some(point(&l.to)),
                    direction: match l.direction {
                        LineDirection::Both => pb::LineDirection::Both,
                        LineDirection::LeftToRight => pb::LineDirection::LeftToRight,
                        LineDirection::RightToLeft => pb::LineDirection::RightToLeft,
                    } as i32,
                })
                .collect(),
            // Unset is 0: detection's default for each field.
            filters: d
                .filters
                .iter()
                .map(|f| pb::ClassFilter {
                    label: f.class.clone(),
                    min_score: f.min_score.unwrap_or(0.0) as f32,
                    threshold: f.threshold.unwrap_or(0.0) as f32,
                    min_area: f.min_area.unwrap_or(0.0) as f32,
                    max_area: f.max_area.unwrap_or(0.0) as f32,
                    min_ratio: f.min_ratio.unwrap_or(0.0) as f32,
                    max_ratio: f.max_ratio.unwrap_or(0.0) as f32,
                })
                .collect(),
        }),
        generation: camera.metadata.generation.unwrap_or(0),
    }
}

/// Each detection replica's shard of `cameras` (by ordinal), sorted by camera name.
pub fn shards(site: &Site, cameras: &[Arc<Camera>]) -> Vec<Vec<pb::DetectionCamera>> {
    let name = site.name_any();
    let replicas = u32::try_from(site.spec.detection.replicas).unwrap_or(0);
    let by_name: BTreeMap<String, &Camera> =
        cameras.iter().map(|c| (c.name_any(), c.as_ref())).collect();
    placement::shards(&name, by_name.keys().map(String::as_str), replicas)
        .into_iter()
        .map(|shard| {
            shard
                .into_iter()
                .filter_map(|c| by_name.get(c))
                .map(|c| detection_camera(&name, c, site.spec.detection.frames_per_second))
                .collect()
        })
        .collect()
}

/// Whether a replica holding `held` (camera → generation in effect) must be sent `wanted`.
fn differs(held: &BTreeMap<String, i64>, wanted: &[pb::DetectionCamera]) -> bool {
    let names: BTreeSet<&str> = wanted
        .iter()
        .filter_map(|c| c.camera.as_ref().map(|r| r.camera.as_str()))
        .collect();
    if names.len() != held.len() || !held.keys().all(|k| names.contains(k.as_str())) {
        return true;
    }
    wanted.iter().any(|c| {
        let name = c.camera.as_ref().map(|r| r.camera.as_str()).unwrap_or("");
        held.get(name).is_some_and(|g| *g < c.generation)
    })
}

/// The cameras of `site` in a status answer, by name.
fn held(site: &str, resp: pb::GetDetectorStatusResponse) -> BTreeMap<String, Detector> {
    let model = resp.model.unwrap_or_default();
    resp.cameras
        .into_iter()
        .filter_map(|status| {
            let c = status.camera.as_ref()?;
            (c.site == site).then(|| {
                (
                    c.camera.clone(),
                    Detector {
                        status: status.clone(),
                        model: model.name.clone(),
                        provider: model.execution_provider.clone(),
                    },
                )
            })
        })
        .collect()
}

/// Brings every detection replica of `site` to its shard (see the module docs) and returns
/// what each then holds, or why it could not be asked or refused.
// One argument per collaborator; tests pass stand-ins for the client and the Secret reader.
#[allow(clippy::too_many_arguments)]
pub async fn sync(
    client: &dyn DetectionClient,
    applied: &Applied,
    config: &DetectionClientConfig,
    tls: Option<Arc<TlsPem>>,
    namespace: &str,
    site: &Site,
    cameras: &[Arc<Camera>],
    resolve: &ResolveCredentials,
) -> SiteObservation {
    let name = site.name_any();
    let shards = shards(site, cameras);
    let refs: BTreeMap<String, CredentialsRef> = cameras
        .iter()
        .filter_map(|c| Some((c.name_any(), c.spec.credentials.clone()?)))
        .collect();
    let refs = &refs;
    applied.forget(namespace, &name, shards.len() as u32);
    let name = name.as_str();
    let ask = |ordinal: u32| -> BoxFuture<'_, Result<BTreeMap<String, Detector>, String>> {
        let replica = Replica {
            address: config.address_of(namespace, name, ordinal),
            tls: tls.clone(),
        };
        let wanted = shards.get(ordinal as usize).cloned().unwrap_or_default();
        let key = (namespace.to_string(), name.to_string(), ordinal);
        Box::pin(async move {
            let now = held(
                name,
                client.status(replica.clone(), name.to_string()).await?,
            );
            let generations = now
                .iter()
                .map(|(c, d)| (c.clone(), d.status.config_generation))
                .collect();
            let fp = fingerprint(&wanted);
            if !differs(&generations, &wanted) && applied.get(&key) == Some(fp) {
                return Ok(now);
            }
            // Credentials are read now, only for a shard about to be sent.
            let mut complete = true;
            let mut sent = Vec::with_capacity(wanted.len());
            for mut c in wanted {
                let cam = c
                    .camera
                    .as_ref()
                    .map(|r| r.camera.clone())
                    .unwrap_or_default();
                if let Some(r) = refs.get(&cam) {
                    match resolve(r.clone()).await {
                        Ok(creds) => c.resolved_credentials = Some(creds),
                        Err(problem) => {
                            tracing::warn!(ordinal, camera = %cam, %problem,
                                           "camera left out of its detection shard: its credentials are unavailable");
                            complete = false;
                            continue;
                        }
                    }
                }
                sent.push(c);
            }
            let count = sent.len();
            client.replace(replica.clone(), sent).await.map_err(|e| {
                tracing::warn!(ordinal, error = %e, "detection refused its shard");
                format!("ApplyCameras: {e}")
            })?;
            if complete {
                applied.set(key, fp);
            }
            tracing::info!(ordinal, cameras = count, "detection shard applied");
            Ok(held(name, client.status(replica, name.to_string()).await?))
        })
    };
    replicas::observe(
        shards.len() as u32,
        |ordinal| placement::pod_name(name, "detection", ordinal),
        ask,
        &crate::metrics::Metrics::get().detection_calls,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{CredentialsRef, Line, MotionGate, RtspTransport, Zone};
    use crate::fixtures::{camera, site};

    #[test]
    fn a_camera_maps_with_its_zones_masks_lines_and_settings() {
        let mut c = camera("gate-1", "burgas");
        c.metadata.generation = Some(4);
        c.spec.streams.detect = Some("rtsp://10.0.0.1:554/gate-1/sub".into());
        c.spec.streams.transport = RtspTransport::Udp;
        c.spec.credentials = Some(CredentialsRef {
            secret_name: "gate-1-rtsp".into(),
            username_key: None,
            password_key: Some("pw".into()),
        });
        let d = &mut c.spec.detection;
        d.classes = vec!["person".into(), "car".into()];
        d.min_confidence = Some(0.6);
        d.frames_per_second = Some(3.0);
        d.motion = MotionGate {
            enabled: true,
            threshold: Some(0.01),
            hold_seconds: Some(1.5),
        };
        d.zones = vec![Zone {
            name: "road".into(),
            points: vec![[0.0, 0.5], [1.0, 0.5], [1.0, 1.0], [0.0, 1.0]],
        }];
        d.masks = vec![Zone {
            name: "tree".into(),
            points: vec![[0.0, 0.0], [0.25, 0.0], [0.0, 0.25]],
        }];
        d.lines = vec![Line {
            name: "fence".into(),
            from: [0.1, 0.8],
            to: [0.9, 0.7],
            direction: LineDirection::LeftToRight,
        }];
        d.filters = vec![crate::crd::ClassFilter {
            class: "person".into(),
            min_score: Some(0.7),
            max_ratio: Some(1.0),
            ..Default::default()
        }];
        let m = detection_camera("burgas", &c, Some(5.0));
        assert_eq!(
            m.camera,
            Some(common::CameraRef {
                site: "burgas".into(),
                camera: "gate-1".into()
            })
        );
        assert_eq!(m.detect_url, "rtsp://10.0.0.1:554/gate-1/sub");
        assert_eq!(m.transport, pb::RtspTransport::Udp as i32);
        let creds = m.credentials.unwrap();
        assert_eq!(
            (
                creds.secret_name.as_str(),
                creds.username_key.as_str(),
                creds.password_key.as_str()
            ),
            ("gate-1-rtsp", "", "pw")
        );
        assert_eq!(m.generation, 4);
        let cfg = m.config.unwrap();
        assert!(!cfg.disabled);
        assert_eq!(cfg.classes, ["person", "car"]);
        assert!((cfg.min_confidence - 0.6).abs() < 1e-6);
        assert_eq!(cfg.analysis_fps, 3.0, "the camera's own rate wins");
        assert_eq!(
            cfg.filters,
            [pb::ClassFilter {
                label: "person".into(),
                min_score: 0.7,
                max_ratio: 1.0,
                ..Default::default()
            }],
            "unset fields are 0: detection's defaults"
        );
        let motion = cfg.motion.unwrap();
        assert!(!motion.disabled);
        assert!((motion.threshold - 0.01).abs() < 1e-6);
        assert_eq!(
            motion.hold,
            Some(prost_types::Duration {
                seconds: 1,
                nanos: 500_000_000
            })
        );
        assert_eq!(cfg.zones.len(), 1);
        assert_eq!(cfg.zones[0].name, "road");
        let area = cfg.zones[0].area.as_ref().unwrap();
        assert_eq!(area.points.len(), 4);
        assert_eq!(area.points[1], common::Point { x: 1.0, y: 0.5 });
        assert_eq!(cfg.masks.len(), 1);
        assert_eq!(cfg.masks[0].points[1], common::Point { x: 0.25, y: 0.0 });
        let line = &cfg.lines[0];
        assert_eq!(line.name, "fence");
        assert_eq!(line.a, Some(common::Point { x: 0.1, y: 0.8 }));
        assert_eq!(line.b, Some(common::Point { x: 0.9, y: 0.7 }));
        assert_eq!(line.direction, pb::LineDirection::LeftToRight as i32);
    }

    #[test]
    fn defaults_leave_detection_its_own_defaults() {
        let mut c = camera("gate-2", "burgas");
        let m = detection_camera("burgas", &c, None);
        assert_eq!(
            m.detect_url, "rtsp://10.0.0.1:554/gate-2/main",
            "record stream"
        );
        assert_eq!(m.transport, pb::RtspTransport::Tcp as i32);
        assert_eq!(m.credentials, None);
        let cfg = m.config.unwrap();
        assert!(!cfg.disabled);
        assert!(cfg.classes.is_empty());
        assert_eq!(cfg.min_confidence, 0.0);
        assert_eq!(cfg.analysis_fps, 0.0);
        assert_eq!(
            cfg.motion,
            Some(pb::MotionGate {
                disabled: false,
                threshold: 0.0,
                hold: None
            })
        );
        assert!(cfg.zones.is_empty() && cfg.masks.is_empty() && cfg.lines.is_empty());

        assert_eq!(
            detection_camera("burgas", &c, Some(2.0))
                .config
                .unwrap()
                .analysis_fps,
            2.0,
            "the site's rate"
        );
        c.spec.detection.enabled = false;
        c.spec.detection.motion.enabled = false;
        c.spec.detection.lines = vec![Line {
            name: "l".into(),
            from: [0.0, 0.0],
            to: [1.0, 1.0],
            direction: LineDirection::default(),
        }];
        let cfg = detection_camera("burgas", &c, None).config.unwrap();
        assert!(cfg.disabled);
        assert!(cfg.motion.unwrap().disabled);
        assert_eq!(cfg.lines[0].direction, pb::LineDirection::Both as i32);
    }

    #[test]
    fn shards_follow_placement_over_detection_replicas() {
        let mut s = site("burgas", 1);
        s.spec.detection.replicas = 3;
        let cams: Vec<Arc<Camera>> = (0..30)
            .map(|i| Arc::new(camera(&format!("c{i:02}"), "burgas")))
            .collect();
        let shards = shards(&s, &cams);
        assert_eq!(shards.len(), 3);
        assert_eq!(shards.iter().map(Vec::len).sum::<usize>(), 30);
        for (ordinal, shard) in shards.iter().enumerate() {
            for c in shard {
                let name = &c.camera.as_ref().unwrap().camera;
                assert_eq!(
                    placement::replica_for("burgas", name, 3),
                    Some(ordinal as u32)
                );
            }
        }
        s.spec.detection.replicas = 0;
        assert!(super::shards(&s, &cams).is_empty(), "detection off");
    }

    #[test]
    fn a_replica_is_resent_only_what_changed() {
        let a = detection_camera("s", &camera("a", "s"), None);
        let mut b = detection_camera("s", &camera("b", "s"), None);
        let held = BTreeMap::from([("a".to_string(), 1), ("b".to_string(), 1)]);
        assert!(!differs(&held, &[a.clone(), b.clone()]));
        assert!(differs(&held, std::slice::from_ref(&a)), "b moved away");
        assert!(
            differs(
                &BTreeMap::from([("a".to_string(), 1)]),
                &[a.clone(), b.clone()]
            ),
            "b is new"
        );
        b.generation = 2;
        assert!(differs(&held, &[a.clone(), b.clone()]), "b changed");
        let newer = BTreeMap::from([("a".to_string(), 1), ("b".to_string(), 3)]);
        assert!(
            !differs(&newer, &[a, b]),
            "a newer spec held is not pushed back (it would be ignored as stale)"
        );
    }
}
