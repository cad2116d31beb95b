//! Renditions and snapshots over gRPC and HTTP: registration checks the object and is
//! idempotent, lists page and hand out signed URLs that serve the bytes, reads are logged, and
//! retention deletes a segment's copies with it. Run on SQLite + local files always, and on
//! PostgreSQL + S3 (Ceph RGW) when their variables are set.

mod support;

use std::sync::Arc;

use kordon_objects::{ObjectStore, ObjectStoreExt};
use kordon_proto::common::v1::{AuditContext, CameraRef, PageRequest, TimeRange, VideoCodec};
use kordon_proto::storage::v1 as pb;
use prost_types::Timestamp;
use support::*;

fn ts(us: i64) -> Timestamp {
    Timestamp {
        seconds: us / 1_000_000,
        nanos: ((us % 1_000_000) * 1000) as i32,
    }
}

fn range(a: i64, b: i64) -> Option<TimeRange> {
    Some(TimeRange {
        start: Some(ts(a)),
        end: Some(ts(b)),
    })
}

fn why() -> Option<AuditContext> {
    Some(AuditContext {
        reason: "media test".into(),
        ..Default::default()
    })
}

async fn put(objects: &dyn ObjectStore, key: &str, bytes: &[u8]) {
    objects
        .put(
            &kordon_objects::ObjectPath::parse(key).unwrap(),
            bytes.to_vec().into(),
        )
        .await
        .unwrap();
}

async fn copies_are_indexed(index: kordon_storage::Index, objects: Arc<dyn ObjectStore>) {
    let dir = tempfile::tempdir().unwrap();
    let running = serve(
        index,
        objects.clone(),
        &common_config(dir.path(), Default::default(), true),
    )
    .await;
    let mut client = running.client().await;
    // A camera of its own per run keeps keys apart in a shared bucket; T0 is in the past, so
    // a one-hour retention expires it.
    let camera = format!("cam-{}", uuid::Uuid::new_v4().simple());
    let cam = CameraRef {
        site: SITE.into(),
        camera: camera.clone(),
    };
    let mut segs = Vec::new();
    for i in 0..3u64 {
        let start = T0 + i as i64 * 6 * SEC;
        let s = put_segment(
            objects.as_ref(),
            &camera,
            start,
            start + 6 * SEC,
            fake_bytes(i, 4000),
            100,
        )
        .await;
        running.storage.register_segment(&s).await.unwrap();
        segs.push(s);
    }

    // Renditions: one per segment and profile.
    let rendition = |seq: u64, key: &str, bytes: &[u8], start: i64| pb::RegisterRenditionRequest {
        camera: Some(cam.clone()),
        source_sequence: seq,
        profile: "480p-400k".into(),
        range: range(start, start + 6 * SEC),
        codec: VideoCodec::H264 as i32,
        width: 854,
        height: 480,
        bitrate_bps: 400_000,
        object_key: key.into(),
        size_bytes: bytes.len() as u64,
        sha256: kordon_objects::sha256(bytes).to_vec(),
        job_id: "job-1".into(),
        init_size: 8,
    };
    let mut rendition_bytes = Vec::new();
    for (i, s) in segs.iter().enumerate() {
        let bytes = format!("rendition {i} of {camera}").into_bytes();
        let key = format!("{SITE}/{camera}/renditions/480p-400k/{}.mp4", i + 1);
        put(objects.as_ref(), &key, &bytes).await;
        let req = rendition(i as u64 + 1, &key, &bytes, s.start_us);
        let r = client
            .register_rendition(req.clone())
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.outcome, pb::RegisterOutcome::Created as i32);
        // Idempotent; the same key with other fields is a conflict.
        let again = client
            .register_rendition(req.clone())
            .await
            .unwrap()
            .into_inner();
        assert_eq!(again.outcome, pb::RegisterOutcome::AlreadyPresent as i32);
        let mut other = req.clone();
        other.bitrate_bps = 1;
        assert_eq!(
            client.register_rendition(other).await.unwrap_err().code(),
            tonic::Code::AlreadyExists
        );
        rendition_bytes.push((key, bytes));
    }
    // Refusals: no init size or one that is not inside the object, no object, wrong size, no
    // such segment, a range outside the source.
    let (key0, bytes0) = &rendition_bytes[0];
    for init_size in [0, bytes0.len() as u64, bytes0.len() as u64 + 1] {
        let mut bad = rendition(1, key0, bytes0, segs[0].start_us);
        bad.profile = "240p".into();
        bad.init_size = init_size;
        let e = client.register_rendition(bad).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{init_size}");
        assert!(e.message().starts_with("init_size:"), "{}", e.message());
    }
    // A rendition stored before init sizes were recorded (0) gets one from a re-registration
    // that is otherwise the same, and keeps it.
    let table_camera = format!("'{camera}'");
    assert_eq!(
        exec(
            running.storage.index(),
            format!(
                "UPDATE renditions SET init_size = 0 WHERE camera = {table_camera} \
                 AND source_sequence = 1"
            )
        )
        .await,
        1
    );
    let old = client
        .register_rendition(rendition(1, key0, bytes0, segs[0].start_us))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(old.outcome, pb::RegisterOutcome::AlreadyPresent as i32);
    assert_eq!(old.rendition.unwrap().init_size, 8);
    let mut other_init = rendition(1, key0, bytes0, segs[0].start_us);
    other_init.init_size = 9;
    assert_eq!(
        client
            .register_rendition(other_init)
            .await
            .unwrap_err()
            .code(),
        tonic::Code::AlreadyExists,
        "a recorded init size is not overwritten"
    );
    let nowhere = format!("{SITE}/{camera}/renditions/240p/nowhere.mp4");
    let mut missing = rendition(1, &nowhere, bytes0, segs[0].start_us);
    missing.profile = "240p".into();
    let e = client.register_rendition(missing).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition);
    assert!(e.message().contains("not in the bucket"), "{}", e.message());
    // An object outside the camera's own folder is refused before anything is looked up.
    let mut foreign = rendition(1, "nowhere.mp4", bytes0, segs[0].start_us);
    foreign.profile = "240p".into();
    let e = client.register_rendition(foreign).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(e.message().contains("must lie under"), "{}", e.message());
    let mut no_segment = rendition(99, key0, bytes0, segs[0].start_us);
    no_segment.profile = "240p".into();
    let e = client.register_rendition(no_segment).await.unwrap_err();
    assert!(
        e.message().contains("no live segment 99"),
        "{}",
        e.message()
    );
    let mut outside = rendition(1, key0, bytes0, segs[0].start_us + SEC);
    outside.profile = "240p".into();
    assert_eq!(
        client.register_rendition(outside).await.unwrap_err().code(),
        tonic::Code::InvalidArgument
    );

    // Listed two per page, every URL serves the bytes.
    let mut listed = Vec::new();
    let mut token = String::new();
    loop {
        let page = client
            .list_renditions(pb::ListRenditionsRequest {
                camera: Some(cam.clone()),
                range: range(T0, T0 + 60 * SEC),
                profile: String::new(),
                audit: why(),
                page: Some(PageRequest {
                    page_size: 2,
                    page_token: token.clone(),
                }),
            })
            .await
            .unwrap()
            .into_inner();
        listed.extend(page.renditions);
        token = page.page.unwrap().next_page_token;
        if token.is_empty() {
            break;
        }
    }
    assert_eq!(listed.len(), 3);
    for (r, (_, bytes)) in listed.iter().zip(&rendition_bytes) {
        assert_eq!(r.init_size, 8, "stored, and added to the old row");
        let url = &r.media.as_ref().unwrap().url;
        let path = url.split_once(&running.http.to_string()).unwrap().1;
        let (status, _, body) = http_get(running.http, path, None).await;
        assert_eq!(status, 200, "{url}");
        assert_eq!(&body, bytes);
        // The token is bound to the key.
        let other = path.replacen("/1.mp4", "/2.mp4", 1);
        if other != path {
            assert_eq!(http_get(running.http, &other, None).await.0, 403);
        }
    }

    // Snapshots: a detection still and a thumbnail of segment 2.
    let jpeg = b"\xff\xd8\xff\xe0 not really a jpeg".to_vec();
    let snap_key = format!("{SITE}/{camera}/snapshots/d1.jpg");
    put(objects.as_ref(), &snap_key, &jpeg).await;
    let snap_req = pb::RegisterSnapshotRequest {
        camera: Some(cam.clone()),
        kind: pb::SnapshotKind::Detection as i32,
        captured_at: Some(ts(T0 + 7 * SEC)),
        content_type: "image/jpeg".into(),
        width: 640,
        height: 360,
        size_bytes: jpeg.len() as u64,
        sha256: kordon_objects::sha256(&jpeg).to_vec(),
        object_key: snap_key.clone(),
        detection_id: "det-1".into(),
        source_sequence: 0,
    };
    let snap = client
        .register_snapshot(snap_req.clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(snap.outcome, pb::RegisterOutcome::Created as i32);
    let snap = snap.snapshot.unwrap();
    let again = client
        .register_snapshot(snap_req.clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.snapshot.unwrap().id, snap.id);
    let mut no_detection = snap_req.clone();
    no_detection.detection_id.clear();
    assert_eq!(
        client
            .register_snapshot(no_detection)
            .await
            .unwrap_err()
            .code(),
        tonic::Code::InvalidArgument
    );
    let thumb_key = format!("{SITE}/{camera}/thumbnails/2.jpg");
    put(objects.as_ref(), &thumb_key, &jpeg).await;
    let mut thumb = snap_req.clone();
    thumb.kind = pb::SnapshotKind::Thumbnail as i32;
    thumb.object_key = thumb_key.clone();
    thumb.detection_id.clear();
    thumb.source_sequence = 2;
    thumb.captured_at = Some(ts(T0 + 6 * SEC));
    client.register_snapshot(thumb).await.unwrap();

    let got = client
        .get_snapshot(pb::GetSnapshotRequest {
            snapshot_id: snap.id.clone(),
            audit: why(),
            url_ttl: None,
        })
        .await
        .unwrap()
        .into_inner();
    let url = got.media.unwrap().url;
    let (status, headers, body) = http_get(
        running.http,
        url.split_once(&running.http.to_string()).unwrap().1,
        None,
    )
    .await;
    assert_eq!((status, body), (200, jpeg.clone()));
    assert_eq!(header(&headers, "content-type"), Some("image/jpeg"));
    let listed = client
        .list_snapshots(pb::ListSnapshotsRequest {
            camera: Some(cam.clone()),
            range: range(T0, T0 + 60 * SEC),
            kind: pb::SnapshotKind::Thumbnail as i32,
            audit: why(),
            url_ttl: None,
            page: None,
        })
        .await
        .unwrap()
        .into_inner()
        .snapshots;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].snapshot.as_ref().unwrap().source_sequence, 2);
    assert_eq!(
        client
            .get_snapshot(pb::GetSnapshotRequest {
                snapshot_id: "nope".into(),
                audit: why(),
                url_ttl: None,
            })
            .await
            .unwrap_err()
            .code(),
        tonic::Code::NotFound
    );

    // A hold on segment 1; then each segment says what retention will do to it.
    running
        .storage
        .index()
        .set_retention_policy(SITE, &camera, Some(3_600 * SEC), "test")
        .await
        .unwrap();
    client
        .create_legal_hold(pb::CreateLegalHoldRequest {
            cameras: vec![cam.clone()],
            range: range(T0, T0 + 5 * SEC),
            audit: Some(AuditContext {
                reason: "hold segment 1".into(),
                case_id: "BG-1".into(),
                recipient: String::new(),
            }),
            request_id: format!("hold-{camera}"),
        })
        .await
        .unwrap();
    let listed = client
        .list_segments(pb::ListSegmentsRequest {
            camera: Some(cam.clone()),
            range: range(T0, T0 + 60 * SEC),
            audit: why(),
            page: None,
        })
        .await
        .unwrap()
        .into_inner()
        .segments;
    let fates: Vec<(i64, bool)> = listed
        .iter()
        .map(|s| {
            let t = s.retain_until.unwrap();
            (
                t.seconds * 1_000_000 + i64::from(t.nanos / 1000),
                s.on_legal_hold,
            )
        })
        .collect();
    assert_eq!(
        fates,
        segs.iter()
            .enumerate()
            .map(|(i, s)| (s.end_us + 3_600 * SEC, i == 0))
            .collect::<Vec<_>>()
    );

    // Retention deletes segments 2 and 3 with their renditions and thumbnail; the held
    // segment keeps its rendition, and the detection still stays.
    let run = running
        .storage
        .apply_retention(kordon_objects::time::now_micros())
        .await
        .unwrap();
    assert_eq!((run.deleted, run.held), (2, 1), "{run:?}");
    let head = |k: String| {
        let objects = objects.clone();
        async move {
            objects
                .head(&kordon_objects::ObjectPath::parse(&k).unwrap())
                .await
                .is_ok()
        }
    };
    assert!(
        !head(rendition_bytes[1].0.clone()).await,
        "rendition deleted"
    );
    assert!(!head(thumb_key.clone()).await, "thumbnail deleted");
    assert!(head(snap_key.clone()).await, "detection snapshot kept");
    let after = client
        .list_renditions(pb::ListRenditionsRequest {
            camera: Some(cam.clone()),
            range: range(T0, T0 + 60 * SEC),
            profile: "480p-400k".into(),
            audit: why(),
            page: None,
        })
        .await
        .unwrap()
        .into_inner()
        .renditions;
    assert_eq!(after.len(), 1, "{after:?}");
    assert_eq!(after[0].source_sequence, 1);

    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_and_local_files() {
    let db = sqlite().await;
    let media = tempfile::tempdir().unwrap();
    let objects = kordon_objects::build(&kordon_objects::ObjectStoreConfig::Local {
        root: media.path().to_path_buf(),
    })
    .unwrap();
    copies_are_indexed(db.index.clone(), objects).await;
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_and_s3() {
    let Some(s3) = kordon_objects::testenv::s3_config("media on PostgreSQL + S3") else {
        return;
    };
    let Some(db) = postgres("media on PostgreSQL + S3").await else {
        return;
    };
    let objects = kordon_objects::build(&s3).unwrap();
    copies_are_indexed(db.index.clone(), objects).await;
    db.cleanup().await;
}
