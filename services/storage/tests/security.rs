//! Regression tests for the storage findings of the security review (issue 9): each replays
//! an attack that worked before the fix.

mod support;

use kordon_objects::{ObjectStore, ObjectStoreExt};
use kordon_storage::StorageError;
use kordon_storage::media::NewSnapshot;
use support::*;

const OTHER_SITE: &str = "edirne";

/// Writes `bytes` at `key` as ingest would.
async fn put(objects: &dyn ObjectStore, key: &str, bytes: bytes::Bytes) {
    objects
        .put(
            &kordon_objects::ObjectPath::parse(key).unwrap(),
            bytes.into(),
        )
        .await
        .unwrap();
}

/// Edirne's segment object, written as its ingest would: its bytes, their SHA-256, its key.
async fn victim_object(
    objects: &dyn ObjectStore,
    seed: u64,
    len: usize,
) -> (bytes::Bytes, [u8; 32], kordon_objects::ObjectPath) {
    let bytes = fake_bytes(seed, len);
    let sha = kordon_objects::sha256(&bytes);
    let key = kordon_objects::segment_key("", OTHER_SITE, "gate-1", T0, &sha).unwrap();
    put(objects, key.as_ref(), bytes.clone()).await;
    (bytes, sha, key)
}

/// Records `count` consecutive 6 s segments of burgas/gate-3 from T0 (objects written, then
/// registered), their bytes from `seed` on.
async fn record_segments(storage: &kordon_storage::Storage, count: i64, seed: u64, len: usize) {
    for i in 0..count {
        let s = put_segment(
            storage.objects().as_ref(),
            CAMERA,
            T0 + i * 6 * SEC,
            T0 + (i + 1) * 6 * SEC,
            fake_bytes(seed + i as u64, len),
            100,
        )
        .await;
        storage.register_segment(&s).await.unwrap();
    }
}

async fn exists(objects: &dyn ObjectStore, key: &str) -> bool {
    objects
        .head(&kordon_objects::ObjectPath::parse(key).unwrap())
        .await
        .is_ok()
}

/// Finding 1: a caller with WriteMedia on `burgas` registers a record naming an object of
/// `edirne`, to read it through burgas (edirne's access log never hears of it) or to have
/// burgas's retention delete it. Registration refuses, and the refusal is the same whether
/// or not the foreign key exists, so it reveals nothing about other keys.
#[tokio::test]
async fn a_record_cannot_name_another_sites_or_cameras_object() {
    let db = sqlite().await;
    let storage = storage(db.index.clone(), "http://127.0.0.1:1");
    let objects = storage.objects().clone();

    // Edirne's real segment, and what the attacker registers on burgas to reach it.
    let (bytes, sha, victim) = victim_object(objects.as_ref(), 1, 4000).await;
    let mut attack = new_segment(CAMERA, 1, T0, T0 + 6 * SEC);
    attack.sha256 = sha;
    attack.size_bytes = bytes.len() as u64;
    attack.object_key = victim.to_string();

    let refused = storage.register_segment(&attack).await.unwrap_err();
    assert!(
        matches!(refused, StorageError::InvalidArgument(_)),
        "{refused:?}"
    );
    let text = refused.to_string();
    assert!(text.contains("must lie under `burgas/gate-3/`"), "{text}");
    assert!(!text.contains("4000"), "the refusal leaks the size: {text}");

    // The same request for a key that does not exist gets the very same answer: no oracle.
    let mut probe = attack.clone();
    probe.object_key = format!("{OTHER_SITE}/gate-1/2026/11/27/10/nothing-here.mp4");
    assert_eq!(
        storage
            .register_segment(&probe)
            .await
            .unwrap_err()
            .to_string(),
        text
    );
    // A sibling camera whose name extends ours, and a path that climbs out, are foreign too.
    for key in [
        format!("{SITE}/{CAMERA}0/2026/x.mp4"),
        format!("{SITE}/{CAMERA}/../../{OTHER_SITE}/gate-1/x.mp4"),
    ] {
        let mut p = attack.clone();
        p.object_key = key.clone();
        assert!(
            matches!(
                storage.register_segment(&p).await,
                Err(StorageError::InvalidArgument(_))
            ),
            "{key}"
        );
    }
    // Snapshots (and renditions, through the same check) are bound alike.
    let snap = NewSnapshot {
        site: SITE.into(),
        camera: CAMERA.into(),
        kind: kordon_proto::storage::v1::SnapshotKind::Detection as i32,
        captured_at_us: T0,
        content_type: "image/jpeg".into(),
        width: 320,
        height: 240,
        size_bytes: bytes.len() as u64,
        sha256: sha,
        object_key: victim.to_string(),
        detection_id: "det-1".into(),
        source_sequence: 0,
    };
    assert!(matches!(
        storage.register_snapshot(&snap).await,
        Err(StorageError::InvalidArgument(_))
    ));
    assert!(
        storage
            .index()
            .chain_head(SITE, CAMERA)
            .await
            .unwrap()
            .is_none()
    );
    db.cleanup().await;
}

/// Finding 1: one object never backs two records, so deleting one record's copy cannot
/// remove another record's footage.
#[tokio::test]
async fn an_object_belongs_to_one_record() {
    let db = sqlite().await;
    let storage = storage(db.index.clone(), "http://127.0.0.1:1");
    let objects = storage.objects().clone();
    let bytes = fake_bytes(2, 3000);
    let seg = put_segment(
        objects.as_ref(),
        CAMERA,
        T0,
        T0 + 6 * SEC,
        bytes.clone(),
        100,
    )
    .await;
    storage.register_segment(&seg).await.unwrap();
    // A retry of the same registration stays idempotent.
    assert!(!storage.register_segment(&seg).await.unwrap().created);

    // A thumbnail naming the segment's object (retention would delete it with the thumbnail).
    let snap = NewSnapshot {
        site: SITE.into(),
        camera: CAMERA.into(),
        kind: kordon_proto::storage::v1::SnapshotKind::Thumbnail as i32,
        captured_at_us: T0,
        content_type: "image/jpeg".into(),
        width: 320,
        height: 240,
        size_bytes: seg.size_bytes,
        sha256: seg.sha256,
        object_key: seg.object_key.clone(),
        detection_id: String::new(),
        source_sequence: 1,
    };
    let e = storage.register_snapshot(&snap).await.unwrap_err();
    assert!(matches!(e, StorageError::AlreadyExists(_)), "{e:?}");
    assert!(
        e.to_string().contains("already belongs to a segment"),
        "{e}"
    );

    // A second segment (other bytes, other time) claiming the same object.
    let mut twin = seg.clone();
    twin.sha256 = kordon_objects::sha256(b"other bytes");
    twin.start_us += 6 * SEC;
    twin.end_us += 6 * SEC;
    let e = storage.register_segment(&twin).await.unwrap_err();
    assert!(matches!(e, StorageError::AlreadyExists(_)), "{e:?}");
    db.cleanup().await;
}

/// Finding 1: a record that names a foreign object (written before registration was bound,
/// or straight into the database) expires without retention touching that object, even
/// though the object's own site holds it under a legal hold.
#[tokio::test]
async fn retention_deletes_only_objects_of_the_records_own_camera() {
    let db = sqlite().await;
    let storage = storage(db.index.clone(), "http://127.0.0.1:1");
    let objects = storage.objects().clone();
    let (bytes, _, victim) = victim_object(objects.as_ref(), 3, 2500).await;
    // Straight into the index, as an old record would be.
    let mut forged = new_segment(CAMERA, 3, T0, T0 + 6 * SEC);
    forged.object_key = victim.to_string();
    forged.size_bytes = bytes.len() as u64;
    storage.index().register_segment(&forged).await.unwrap();
    // And one honest, expired segment of the same camera, which retention does delete.
    let own = put_segment(
        objects.as_ref(),
        CAMERA,
        T0 + 6 * SEC,
        T0 + 12 * SEC,
        fake_bytes(4, 2500),
        100,
    )
    .await;
    storage.index().register_segment(&own).await.unwrap();
    storage
        .index()
        .set_retention_policy(SITE, CAMERA, Some(3_600 * SEC), "test")
        .await
        .unwrap();

    let run = storage
        .apply_retention(kordon_objects::time::now_micros())
        .await
        .unwrap();
    assert_eq!(run.deleted, 2, "{run:?}");
    assert!(
        exists(objects.as_ref(), victim.as_ref()).await,
        "retention deleted another site's object"
    );
    assert!(!exists(objects.as_ref(), &own.object_key).await);
    db.cleanup().await;
}

mod grpc {
    use super::*;
    use kordon_proto::common::v1::{AuditContext, CameraRef, TimeRange};
    use kordon_proto::storage::v1 as pb;
    use prost_types::Timestamp;
    use tonic::Code;

    fn ts(us: i64) -> Option<Timestamp> {
        Some(Timestamp {
            seconds: us / 1_000_000,
            nanos: ((us % 1_000_000) * 1000) as i32,
        })
    }

    fn export(reason: &str, request_id: &str) -> pb::ExportEvidenceRequest {
        pb::ExportEvidenceRequest {
            cameras: vec![CameraRef {
                site: SITE.into(),
                camera: CAMERA.into(),
            }],
            range: Some(TimeRange {
                start: ts(T0),
                end: ts(T0 + 60 * SEC),
            }),
            audit: Some(AuditContext {
                reason: reason.into(),
                case_id: "BG-2026-17".into(),
                recipient: String::new(),
            }),
            description: String::new(),
            request_id: request_id.into(),
            rendering: None,
        }
    }

    /// Reads an export's stream to its end: the bundle, or the error.
    async fn run_export(
        client: &mut pb::storage_service_client::StorageServiceClient<tonic::transport::Channel>,
        req: tonic::Request<pb::ExportEvidenceRequest>,
    ) -> Result<pb::EvidenceBundle, tonic::Status> {
        let mut stream = client.export_evidence(req).await?.into_inner();
        while let Some(msg) = stream.message().await? {
            if let Some(pb::export_evidence_response::Event::Bundle(b)) = msg.event {
                return Ok(b);
            }
        }
        Err(tonic::Status::internal("the export ended without a bundle"))
    }

    async fn log_len(running: &Running) -> u64 {
        running.storage.index().access_head(SITE).await.unwrap()
    }

    /// Findings 5 and 9: a request id names one export. Another auditor retrying it, or the
    /// same auditor with another reason, is refused (before, they got the first bundle while
    /// the log recorded their own request); an exact retry hands out the bundle and is logged.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_export_retry_must_be_the_same_request_and_is_logged() {
        let dir = tempfile::tempdir().unwrap();
        let (auth, private) = jwt_auth(dir.path());
        let db = sqlite().await;
        let objects = kordon_objects::build(&kordon_objects::ObjectStoreConfig::Memory).unwrap();
        let running = serve(
            db.index.clone(),
            objects.clone(),
            &common_config(dir.path(), auth, false),
        )
        .await;
        record_segments(&running.storage, 3, 10, 600).await;
        let mut client = running.client().await;
        let maria = person_token(
            &private,
            "maria",
            serde_json::json!({"burgas": ["auditor"]}),
        );
        let petar = person_token(
            &private,
            "petar",
            serde_json::json!({"burgas": ["auditor"]}),
        );

        let first = run_export(
            &mut client,
            bearer(export("court order 17", "exp-1"), &maria),
        )
        .await
        .unwrap();
        let logged = log_len(&running).await;

        // Another principal with the same request id.
        let e = run_export(
            &mut client,
            bearer(export("court order 17", "exp-1"), &petar),
        )
        .await
        .unwrap_err();
        assert_eq!(e.code(), Code::AlreadyExists, "{e:?}");
        assert!(
            e.message().contains("already names a different export"),
            "{e:?}"
        );
        assert!(
            !e.message().contains("maria"),
            "the refusal names the first exporter"
        );
        // The same principal with another reason.
        let e = run_export(&mut client, bearer(export("curiosity", "exp-1"), &maria))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::AlreadyExists, "{e:?}");
        assert_eq!(log_len(&running).await, logged, "refusals are not logged");

        // An exact retry gets the same bundle, and the log says it was handed out again.
        let again = run_export(
            &mut client,
            bearer(export("court order 17", "exp-1"), &maria),
        )
        .await
        .unwrap();
        assert_eq!(again.id, first.id);
        assert_eq!(log_len(&running).await, logged + 1, "the retry is logged");
        running.stop().await;
        db.cleanup().await;
    }

    /// Finding 9: RecordAccess. A person (an admin holds WriteMedia) cannot write entries
    /// in someone else's name; a service can, and the entry names it as the one who asserted
    /// the principal.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn recorded_access_says_who_asserted_it() {
        let dir = tempfile::tempdir().unwrap();
        let (auth, private) = jwt_auth(dir.path());
        let db = sqlite().await;
        let objects = kordon_objects::build(&kordon_objects::ObjectStoreConfig::Memory).unwrap();
        // The development identity stands in for a service here (loopback only).
        let running = serve(
            db.index.clone(),
            objects,
            &common_config(dir.path(), auth, true),
        )
        .await;
        let mut client = running.client().await;
        let admin = person_token(&private, "ana", serde_json::json!({"burgas": ["admin"]}));
        let record = |principal: &str| pb::RecordAccessRequest {
            principal: principal.into(),
            principal_name: String::new(),
            action: pb::AccessAction::Read as i32,
            objects: vec![pb::AccessObject {
                kind: pb::AccessObjectKind::Snapshot as i32,
                camera: Some(CameraRef {
                    site: SITE.into(),
                    camera: CAMERA.into(),
                }),
                range: None,
                id: "snap-1".into(),
            }],
            audit: Some(AuditContext {
                reason: "alert review".into(),
                ..Default::default()
            }),
            method: "/kordon.alerting.v1.AlertingService/GetAlert".into(),
            source: String::new(),
        };
        let e = client
            .record_access(bearer(record("ivan"), &admin))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
        // Their own access they may record.
        client
            .record_access(bearer(record("ana"), &admin))
            .await
            .unwrap();
        let entry = client
            .record_access(record("ivan"))
            .await
            .unwrap()
            .into_inner()
            .entry
            .unwrap();
        assert_eq!(entry.principal, "ivan");
        assert_eq!(entry.via_service, "dev:local-developer");
        running.stop().await;
        db.cleanup().await;
    }
}

/// Finding 7: an export whose client went away stops, marks the bundle failed with the
/// reason, leaves no half-written archive, and an export again with the same request id
/// rebuilds it.
#[tokio::test]
async fn an_export_whose_client_left_stops_and_leaves_nothing() {
    use kordon_storage::evidence::{ExportRequest, STATE_FAILED, STATE_READY};
    let db = sqlite().await;
    let storage = storage(db.index.clone(), "http://127.0.0.1:1");
    let objects = storage.objects().clone();
    record_segments(&storage, 3, 20, 800).await;
    let req = ExportRequest {
        site: SITE.into(),
        cameras: vec![CAMERA.into()],
        from_us: T0,
        to_us: T0 + 18 * SEC,
        case_id: "BG-7".into(),
        reason: "court order".into(),
        recipient: String::new(),
        description: String::new(),
        request_id: "exp-cancel".into(),
        exported_by: "maria".into(),
        exported_by_name: String::new(),
        rendering: None,
    };
    let (bundle, fresh) = storage.start_export(&req).await.unwrap();
    assert!(fresh);
    let gone = tokio_util::sync::CancellationToken::new();
    gone.cancel();
    let e = storage
        .build_bundle(&bundle, "maria", (1, [0; 32]), &|_, _, _| {}, &gone)
        .await
        .unwrap_err();
    assert!(matches!(e, StorageError::Cancelled(_)), "{e:?}");
    let failed = storage.index().bundle(&bundle.id).await.unwrap().unwrap();
    assert_eq!(failed.state, STATE_FAILED);
    assert!(failed.error.contains("cancelled"), "{}", failed.error);
    assert!(
        !exists(objects.as_ref(), &failed.object_key).await,
        "a half-written archive was left in the bucket"
    );

    let (again, fresh) = storage.start_export(&req).await.unwrap();
    assert!(fresh, "a failed bundle is started again");
    assert_eq!(again.id, bundle.id);
    let ready = storage
        .build_bundle(
            &again,
            "maria",
            (1, [0; 32]),
            &|_, _, _| {},
            &tokio_util::sync::CancellationToken::new(),
        )
        .await
        .unwrap();
    assert_eq!(ready.state, STATE_READY);
    assert_eq!(ready.segment_count, 3);
    db.cleanup().await;
}
