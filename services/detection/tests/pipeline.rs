//! The detection service end to end on real parts: camsim serving the real street clip over
//! RTSP, GStreamer decoding, the NanoDet model through ONNX Runtime, the storage service (in
//! process) indexing snapshots and keeping the access log — all through the gRPC API.
//!
//! Needs ONNX Runtime (`ORT_DYLIB_PATH`, set by `scripts/lib.sh`): skipped with a notice
//! without it, a failure when `CI` is set.

#[path = "../../ingest/tests/support/mod.rs"]
mod support;

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::StreamExt;
use kordon_camsim::{Camsim, CamsimConfig, ClipSource, Codec, Source, StreamKind};
use kordon_objects::ObjectStoreConfig;
use kordon_proto::common::v1 as common;
use kordon_proto::detection::v1 as pb;
use kordon_proto::detection::v1::detection_service_client::DetectionServiceClient;
use kordon_proto::storage::v1 as spb;
use kordon_proto::storage::v1::storage_service_client::StorageServiceClient;
use kordon_proto::time::timestamp_from_system_time as ts;
use kordon_runtime::admin::Readiness;
use kordon_runtime::client::{self, AuthedChannel, ClientOptions};
use kordon_runtime::config::{AuthConfig, CommonConfig, LogConfig};
use kordon_runtime::server::GrpcServer;
use support::{free_addr, start_storage};
use tokio_util::sync::CancellationToken;

fn channel(addr: std::net::SocketAddr) -> AuthedChannel {
    client::connect_lazy(&ClientOptions {
        server: format!("http://{addr}"),
        ..Default::default()
    })
    .unwrap()
}

struct Running {
    detection: Arc<kordon_detection::Detection>,
    client: DetectionServiceClient<AuthedChannel>,
    storage: StorageServiceClient<AuthedChannel>,
    stop: CancellationToken,
    server: tokio::task::JoinHandle<()>,
    storage_server: support::StorageServer,
}

async fn start(dir: &Path) -> Option<Running> {
    kordon_objects::testenv::require("detection pipeline", &["ORT_DYLIB_PATH"])?;
    kordon_media::init().unwrap();
    let objects_cfg = ObjectStoreConfig::Local {
        root: dir.join("media"),
    };
    let storage_server = start_storage(dir, &objects_cfg, "", free_addr()).await;
    let storage = StorageServiceClient::new(channel(storage_server.addr));
    let config = kordon_detection::config::DetectionServiceConfig {
        replica: "burgas-detection-0".into(),
        ..Default::default()
    };
    let engine = {
        let (c, d) = (config.clone(), dir.to_path_buf());
        tokio::task::spawn_blocking(move || kordon_detection::service::start_engine(&c, &d))
            .await
            .unwrap()
            .expect("the detector starts with the embedded model")
    };
    let stop = CancellationToken::new();
    let detection = kordon_detection::Detection::start(
        config,
        dir,
        Ok(engine),
        Some(kordon_detection::Destinations {
            objects: kordon_objects::build(&objects_cfg).unwrap(),
            object_prefix: String::new(),
            storage: storage.clone(),
        }),
        kordon_media::OpenContext::new(kordon_media::SourceConfig::default()),
        stop.clone(),
    )
    .await
    .unwrap();
    let addr = free_addr();
    let common = CommonConfig {
        grpc_listen: addr,
        admin_listen: free_addr(),
        data_dir: dir.to_path_buf(),
        log: LogConfig::default(),
        tls: None,
        auth: AuthConfig::default(),
        dev_identity: true,
    };
    let server = GrpcServer::new("detection", &common)
        .unwrap()
        .add_service(kordon_detection::grpc_service(
            kordon_detection::DetectionApi::new(detection.clone()),
        ))
        .bind(addr)
        .await
        .unwrap();
    let s = stop.clone();
    let server = tokio::spawn(async move { server.serve(Readiness::new(), s).await.unwrap() });
    Some(Running {
        detection,
        client: DetectionServiceClient::new(channel(addr)),
        storage,
        stop,
        server,
        storage_server,
    })
}

fn pt(x: f32, y: f32) -> common::Point {
    common::Point { x, y }
}

fn camera(name: &str, url: String) -> pb::DetectionCamera {
    pb::DetectionCamera {
        camera: Some(common::CameraRef {
            site: "burgas".into(),
            camera: name.into(),
        }),
        detect_url: url,
        generation: 1,
        config: Some(pb::DetectionConfig {
            zones: vec![pb::Zone {
                name: "road".into(),
                area: Some(common::Polygon {
                    points: vec![pt(0.0, 0.45), pt(1.0, 0.45), pt(1.0, 1.0), pt(0.0, 1.0)],
                }),
            }],
            lines: vec![pb::Line {
                name: "crossing".into(),
                a: Some(pt(0.5, 0.2)),
                b: Some(pt(0.5, 1.0)),
                direction: pb::LineDirection::Both as i32,
            }],
            ..Default::default()
        }),
        ..Default::default()
    }
}

async fn stored(
    c: &mut DetectionServiceClient<AuthedChannel>,
    since: SystemTime,
) -> Vec<pb::Detection> {
    let mut all = Vec::new();
    let mut token = String::new();
    loop {
        let r = c
            .list_detections(pb::ListDetectionsRequest {
                site: "burgas".into(),
                range: Some(common::TimeRange {
                    start: Some(ts(since)),
                    end: None,
                }),
                page: Some(common::PageRequest {
                    page_size: 7,
                    page_token: token,
                }),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        all.extend(r.detections);
        token = r.page.unwrap().next_page_token;
        if token.is_empty() {
            return all;
        }
    }
}

/// The real clip yields people and vehicles with boxes, tracks that keep their ids, zone
/// presence, snapshots whose reads are logged, a watch that resumes without duplicates, and
/// ended tracks when the camera is removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_clip_is_detected_tracked_stored_and_streamed() {
    let dir = tempfile::tempdir().unwrap();
    let Some(mut r) = start(dir.path()).await else {
        return;
    };
    let sim = Camsim::start(CamsimConfig {
        cameras: 1,
        listen: "127.0.0.1:0".parse().unwrap(),
        control_listen: None,
        codec: Codec::H264,
        source: Source::Clip,
        clip: ClipSource::Embedded,
        cache_dir: kordon_camsim::default_cache_dir(),
        bframes: 0,
        refuse_tcp: false,
    })
    .await
    .unwrap();
    let url = sim.url(1, StreamKind::Sub).unwrap();
    let began = SystemTime::now();

    // All-or-nothing: one invalid camera and nothing is applied.
    let mut bad = camera("gate-2", url.clone());
    bad.config.as_mut().unwrap().zones[0]
        .area
        .as_mut()
        .unwrap()
        .points
        .truncate(2);
    let e = r
        .client
        .apply_cameras(pb::ApplyCamerasRequest {
            cameras: vec![camera("gate-1", url.clone()), bad],
            replace: false,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(
        e.message().starts_with("burgas/gate-2: config"),
        "{}",
        e.message()
    );
    let shard = r
        .client
        .get_shard(pb::GetShardRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(shard.cameras.is_empty());

    let applied = r
        .client
        .apply_cameras(pb::ApplyCamerasRequest {
            cameras: vec![camera("gate-1", url.clone())],
            replace: true,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(applied.results[0].outcome, pb::ApplyOutcome::Created as i32);
    // The same spec again changes nothing; an older generation is ignored.
    let mut older = camera("gate-1", url.clone());
    older.generation = 0;
    let again = r
        .client
        .apply_cameras(pb::ApplyCamerasRequest {
            cameras: vec![camera("gate-1", url.clone())],
            replace: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.results[0].outcome, pb::ApplyOutcome::Unchanged as i32);
    let stale = r
        .client
        .apply_cameras(pb::ApplyCamerasRequest {
            cameras: vec![older],
            replace: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stale.results[0].outcome, pb::ApplyOutcome::Stale as i32);

    // Wait (by what is stored, not by the clock) for people and vehicles in the road zone.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    let found = loop {
        let all = stored(&mut r.client, began).await;
        let people = all.iter().filter(|d| d.class_label == "person").count();
        let vehicles = all
            .iter()
            .filter(|d| {
                matches!(
                    d.class_label.as_str(),
                    "car" | "truck" | "bus" | "motorcycle"
                )
            })
            .count();
        let zoned = all.iter().any(|d| d.zones.iter().any(|z| z.zone == "road"));
        if people >= 3 && vehicles >= 1 && zoned {
            break all;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "after 120 s: {people} person and {vehicles} vehicle detections, road zone seen: {zoned}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    // Boxes are real boxes; every track starts before it updates or ends, under one id.
    let mut started = HashSet::new();
    for d in &found {
        let b = d.r#box.unwrap();
        assert!(0.0 <= b.left && b.left < b.right && b.right <= 1.0, "{d:?}");
        assert!(0.0 <= b.top && b.top < b.bottom && b.bottom <= 1.0, "{d:?}");
        assert!(d.confidence >= 0.5, "{d:?}");
        if d.phase == pb::TrackPhase::Started as i32 {
            assert!(
                started.insert(d.track_id),
                "track {} started twice",
                d.track_id
            );
        } else {
            assert!(
                started.contains(&d.track_id),
                "track {} not started: {d:?}",
                d.track_id
            );
        }
    }
    assert_eq!(
        found.len(),
        found.iter().map(|d| &d.id).collect::<HashSet<_>>().len(),
        "pages overlap"
    );

    // Status: running, the CPU provider, frames analysed.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let status = r
        .client
        .get_detector_status(pb::GetDetectorStatusRequest::default())
        .await
        .unwrap()
        .into_inner();
    let model = status.model.unwrap();
    assert_eq!(model.execution_provider, "cpu");
    assert_eq!(model.input_width, 416);
    assert!(model.classes.iter().any(|c| c == "person"));
    let cam = &status.cameras[0];
    assert_eq!(cam.state, pb::DetectorState::Running as i32, "{cam:?}");
    assert!(
        cam.analysed_fps > 0.0 && cam.detections_total > 0,
        "{cam:?}"
    );
    assert!(cam.width >= 320 && cam.height >= 180, "{cam:?}");

    // A snapshot: refused without a reason; with one, the JPEG, and an access log entry.
    let with_snapshot = found.iter().find(|d| !d.snapshot_id.is_empty()).unwrap();
    let sid = with_snapshot.snapshot_id.clone();
    let e = r
        .client
        .get_snapshot(pb::GetSnapshotRequest {
            snapshot_id: sid.clone(),
            audit: None,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    let snap = loop {
        match r
            .client
            .get_snapshot(pb::GetSnapshotRequest {
                snapshot_id: sid.clone(),
                audit: Some(common::AuditContext {
                    reason: "checking the detector".into(),
                    case_id: "BG-TEST-1".into(),
                    recipient: String::new(),
                }),
            })
            .await
        {
            Ok(s) => break s.into_inner(),
            Err(e) if e.code() == tonic::Code::Unavailable => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "snapshot never stored: {e}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("{e}"),
        }
    };
    assert_eq!(&snap.image[..2], &[0xff, 0xd8]);
    assert_eq!(snap.sha256, kordon_objects::sha256(&snap.image).to_vec());
    assert_eq!((snap.width, snap.height), (cam.width, cam.height));
    let log = r
        .storage
        .list_access_log(spb::ListAccessLogRequest {
            site: "burgas".into(),
            case_id: "BG-TEST-1".into(),
            audit: Some(common::AuditContext {
                reason: "test".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let entry = log
        .entries
        .iter()
        .find(|e| e.method.ends_with("DetectionService/GetSnapshot"))
        .expect("the snapshot read is in the access log");
    assert!(
        entry
            .objects
            .iter()
            .any(|o| o.kind == spb::AccessObjectKind::Snapshot as i32)
    );

    // A watch from the start replays what is stored, then goes live, never twice the same id.
    let mut watch = r
        .client
        .watch_detections(pb::WatchDetectionsRequest {
            site: "burgas".into(),
            since: Some(ts(began)),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut ids = HashSet::new();
    let replayed: HashSet<_> = found.iter().map(|d| d.id.clone()).collect();
    let mut seen_replayed = 0;
    for _ in 0..(found.len() + 20) {
        let d = tokio::time::timeout(Duration::from_secs(60), watch.next())
            .await
            .expect("the watch keeps delivering")
            .unwrap()
            .unwrap()
            .detection
            .unwrap();
        assert!(ids.insert(d.id.clone()), "duplicate {}", d.id);
        if replayed.contains(&d.id) {
            seen_replayed += 1;
        }
    }
    assert_eq!(
        seen_replayed,
        found.len(),
        "every stored detection is replayed"
    );
    drop(watch);

    // Removing the camera ends its open tracks: every track that started has ended.
    let removed = r
        .client
        .remove_camera(pb::RemoveCameraRequest {
            camera: Some(common::CameraRef {
                site: "burgas".into(),
                camera: "gate-1".into(),
            }),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(removed.was_present);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let all = stored(&mut r.client, began).await;
        let starts: HashSet<_> = all
            .iter()
            .filter(|d| d.phase == pb::TrackPhase::Started as i32)
            .map(|d| d.track_id)
            .collect();
        let ends: HashSet<_> = all
            .iter()
            .filter(|d| d.phase == pb::TrackPhase::Ended as i32)
            .map(|d| d.track_id)
            .collect();
        if starts == ends {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "tracks without an end: {:?}",
            starts.difference(&ends).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    r.stop.cancel();
    r.detection.stopped().await;
    r.server.await.unwrap();
    r.storage_server.stop().await;
    sim.shutdown().await;
}
