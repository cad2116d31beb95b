//! The gRPC surface through a real in-process server (the runtime's `GrpcServer` on a loopback
//! port, with its authentication gate): registration, reads with their access-log entries,
//! refusals that change nothing, verification.

mod support;

use kordon_objects::ObjectStoreExt;
use kordon_proto::common::v1::{AuditContext, CameraRef, PageRequest, TimeRange, VideoCodec};
use kordon_proto::storage::v1 as pb;
use kordon_proto::storage::v1::list_recordings_request::Scope;
use prost_types::Timestamp;
use support::*;
use tonic::Code;

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

fn cam(camera: &str) -> Option<CameraRef> {
    Some(CameraRef {
        site: SITE.into(),
        camera: camera.into(),
    })
}

fn why() -> Option<AuditContext> {
    Some(AuditContext {
        reason: "review of incident at gate 3".into(),
        case_id: "BG-HSK-2026-0117".into(),
        recipient: String::new(),
    })
}

fn register_request(s: &kordon_storage::index::NewSegment) -> pb::RegisterSegmentRequest {
    pb::RegisterSegmentRequest {
        camera: cam(&s.camera),
        range: range(s.start_us, s.end_us),
        size_bytes: s.size_bytes,
        sha256: s.sha256.to_vec(),
        codec: VideoCodec::H264 as i32,
        width: s.width,
        height: s.height,
        object_key: s.object_key.clone(),
        ingest_replica: s.ingest_replica.clone(),
        init_size: s.init_size,
    }
}

async fn access_entries(running: &Running) -> u64 {
    running.storage.index().access_head(SITE).await.unwrap()
}

#[tokio::test]
async fn register_list_play_verify_and_audit() {
    let dir = tempfile::tempdir().unwrap();
    let db = sqlite().await;
    let objects = kordon_objects::build(&kordon_objects::ObjectStoreConfig::Memory).unwrap();
    let running = serve(
        db.index.clone(),
        objects.clone(),
        &common_config(dir.path(), Default::default(), true),
    )
    .await;
    let mut client = running.client().await;

    // Three segments, a gap, two more.
    let mut regs = Vec::new();
    for (n, (a, b)) in [(0, 6), (6, 12), (12, 18), (30, 36), (36, 42)]
        .into_iter()
        .enumerate()
    {
        let s = put_segment(
            objects.as_ref(),
            CAMERA,
            T0 + a * SEC,
            T0 + b * SEC,
            fake_bytes(n as u64, 600),
            200,
        )
        .await;
        let resp = client
            .register_segment(register_request(&s))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(resp.outcome, pb::RegisterOutcome::Created as i32);
        regs.push((s, resp.segment.unwrap()));
        if n == 2 {
            let gap = client
                .register_gap(pb::RegisterGapRequest {
                    camera: cam(CAMERA),
                    range: range(T0 + 18 * SEC, T0 + 30 * SEC),
                    reason: pb::GapReason::StreamLost as i32,
                    detail: "connection refused".into(),
                    ingest_replica: "ingest-0".into(),
                })
                .await
                .unwrap()
                .into_inner();
            assert_eq!(gap.gap.unwrap().link.unwrap().sequence, 4);
        }
    }
    // A retry is ALREADY_PRESENT with the same record.
    let retry = client
        .register_segment(register_request(&regs[0].0))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(retry.outcome, pb::RegisterOutcome::AlreadyPresent as i32);
    assert_eq!(retry.segment.as_ref(), Some(&regs[0].1));
    let last = &regs[4].1;
    assert_eq!(last.link.as_ref().unwrap().sequence, 6);
    assert_eq!(last.init_size, 200);

    let head = client
        .get_chain_head(pb::GetChainHeadRequest {
            camera: cam(CAMERA),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(head.head.as_ref(), last.link.as_ref());
    assert_eq!(head.recorded_until, Some(ts(T0 + 42 * SEC)));
    // Which segment holds each moment, answered in the request's order: a gap, the end of the
    // recording and a time between two segments' edges included.
    let located = client
        .locate_segments(pb::LocateSegmentsRequest {
            camera: cam(CAMERA),
            times: [40, 0, 5, 6, 20, 35, 42, 11]
                .map(|s| ts(T0 + s * SEC))
                .to_vec(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(located.sequences, [6, 1, 1, 2, 0, 5, 0, 2]);
    assert_eq!(located.recorded_until, Some(ts(T0 + 42 * SEC)));
    for times in [vec![], vec![ts(T0); 1001]] {
        let n = times.len();
        let e = client
            .locate_segments(pb::LocateSegmentsRequest {
                camera: cam(CAMERA),
                times,
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{n} times: {e}");
    }
    assert_eq!(
        access_entries(&running).await,
        0,
        "registration and locating are not reads"
    );

    // Reads: each is logged before it answers.
    let listed = client
        .list_segments(pb::ListSegmentsRequest {
            camera: cam(CAMERA),
            range: range(T0, T0 + 3600 * SEC),
            audit: why(),
            page: Some(PageRequest {
                page_size: 3,
                page_token: String::new(),
            }),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.segments.len(), 3);
    let next = listed.page.unwrap().next_page_token;
    assert!(!next.is_empty());
    let rest = client
        .list_segments(pb::ListSegmentsRequest {
            camera: cam(CAMERA),
            range: range(T0, T0 + 3600 * SEC),
            audit: why(),
            page: Some(PageRequest {
                page_size: 3,
                page_token: next,
            }),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(rest.segments.len(), 2);
    assert!(rest.page.unwrap().next_page_token.is_empty());
    assert_eq!(access_entries(&running).await, 2);

    let recordings = client
        .list_recordings(pb::ListRecordingsRequest {
            scope: Some(Scope::Site(SITE.into())),
            range: range(T0, T0 + 3600 * SEC),
            audit: why(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let kinds: Vec<(i32, i64, i64)> = recordings
        .ranges
        .iter()
        .map(|r| {
            let rr = r.range.as_ref().unwrap();
            (
                r.kind,
                (rr.start.unwrap().seconds * 1_000_000 - T0) / SEC,
                (rr.end.unwrap().seconds * 1_000_000 - T0) / SEC,
            )
        })
        .collect();
    let rec = pb::RecordingRangeKind::Recorded as i32;
    let gap = pb::RecordingRangeKind::Gap as i32;
    assert_eq!(kinds, vec![(rec, 0, 18), (gap, 18, 30), (rec, 30, 42)]);
    assert_eq!(recordings.ranges[0].segment_count, 3);
    assert_eq!(
        recordings.ranges[1].gap_reason,
        pb::GapReason::StreamLost as i32
    );
    let url = recordings.ranges[0].playback.as_ref().unwrap().url.clone();
    assert!(
        url.starts_with(&format!(
            "http://{}/v1/hls/{SITE}/{CAMERA}.m3u8?",
            running.http
        )),
        "{url}"
    );

    let playback = client
        .get_playback_url(pb::GetPlaybackUrlRequest {
            camera: cam(CAMERA),
            range: range(T0 + 3 * SEC, T0 + 40 * SEC),
            audit: why(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!playback.live);
    assert_eq!(
        playback.covered,
        range(T0, T0 + 42 * SEC),
        "covered runs from the first segment's start to the last one's end"
    );
    let none = client
        .get_playback_url(pb::GetPlaybackUrlRequest {
            camera: cam(CAMERA),
            range: range(T0 - 600 * SEC, T0 - 300 * SEC),
            audit: why(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(none.code(), Code::NotFound);

    let seg = client
        .get_segment(pb::GetSegmentRequest {
            camera: cam(CAMERA),
            sequence: 2,
            audit: why(),
            url_ttl: None,
        })
        .await
        .unwrap()
        .into_inner();
    // Reads add what retention will do: kept 30 days (the default) after its end, no hold.
    let mut read = seg.segment.clone().unwrap();
    let end = read.range.unwrap().end.unwrap();
    assert_eq!(
        read.retain_until,
        Some(prost_types::Timestamp {
            seconds: end.seconds + 30 * 86_400,
            nanos: end.nanos,
        })
    );
    assert!(!read.on_legal_hold);
    read.retain_until = None;
    assert_eq!(Some(&read), Some(&regs[1].1));
    assert!(seg.media.unwrap().url.ends_with("/2.mp4"));

    // Verification streams progress, then one report.
    let mut stream = client
        .verify_chain(pb::VerifyChainRequest {
            camera: cam(CAMERA),
            range: range(T0, T0 + 3600 * SEC),
            verify_objects: true,
            audit: why(),
        })
        .await
        .unwrap()
        .into_inner();
    let mut report = None;
    while let Some(msg) = stream.message().await.unwrap() {
        if let Some(pb::verify_chain_response::Event::Report(r)) = msg.event {
            report = Some(r);
        }
    }
    let report = report.expect("a final report");
    assert!(report.intact, "{:#?}", report.findings);
    assert_eq!((report.first_sequence, report.last_sequence), (1, 6));
    assert_eq!(report.segments_checked, 5);
    assert_eq!(report.gaps_checked, 1);
    assert_eq!(report.head_hash, head.head.unwrap().record_hash);

    // The log: one entry per read, in order, chained; reading it is itself logged.
    let log = client
        .list_access_log(pb::ListAccessLogRequest {
            site: SITE.into(),
            audit: why(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let actions: Vec<i32> = log.entries.iter().map(|e| e.action).collect();
    use pb::AccessAction as A;
    assert_eq!(
        actions,
        vec![
            A::List as i32,
            A::List as i32,
            A::List as i32,
            A::Playback as i32,
            A::Playback as i32,
            A::Read as i32,
            A::Verify as i32,
            A::AuditRead as i32,
        ]
    );
    let e = &log.entries[0];
    assert_eq!(e.principal, "local-developer");
    assert_eq!(e.reason, "review of incident at gate 3");
    assert_eq!(e.case_id, "BG-HSK-2026-0117");
    assert_eq!(e.method, "/kordon.storage.v1.StorageService/ListSegments");
    assert_eq!(e.objects[0].camera, cam(CAMERA));
    for w in log.entries.windows(2) {
        assert_eq!(w[1].prev_hash, w[0].hash);
    }
    let by_camera = client
        .list_access_log(pb::ListAccessLogRequest {
            camera: cam(CAMERA),
            actions: vec![A::Playback as i32],
            audit: why(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(by_camera.entries.len(), 2);

    let verified = client
        .verify_access_log(pb::VerifyAccessLogRequest {
            site: SITE.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(verified.intact, "{:#?}", verified.findings);
    assert_eq!(verified.entries_checked, 9);
    let checkpoint = verified.head.unwrap();
    assert_eq!(checkpoint.sequence, 9);
    assert_eq!(checkpoint.signing_public_key.len(), 32);
    let again = client
        .verify_access_log(pb::VerifyAccessLogRequest {
            site: SITE.into(),
            checkpoint: Some(checkpoint.clone()),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(again.intact, "{:#?}", again.findings);
    let mut forged = checkpoint;
    forged.hash[0] ^= 1;
    let bad = client
        .verify_access_log(pb::VerifyAccessLogRequest {
            site: SITE.into(),
            checkpoint: Some(forged),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!bad.intact);
    assert_eq!(
        bad.findings[0].kind,
        pb::AccessLogFindingKind::CheckpointMismatch as i32
    );

    running.stop().await;
    db.cleanup().await;
}

#[tokio::test]
async fn reads_without_a_reason_are_refused_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = sqlite().await;
    let objects = kordon_objects::build(&kordon_objects::ObjectStoreConfig::Memory).unwrap();
    let running = serve(
        db.index.clone(),
        objects.clone(),
        &common_config(dir.path(), Default::default(), true),
    )
    .await;
    let mut client = running.client().await;
    let s = put_segment(
        objects.as_ref(),
        CAMERA,
        T0,
        T0 + 6 * SEC,
        fake_bytes(1, 300),
        100,
    )
    .await;
    client.register_segment(register_request(&s)).await.unwrap();

    let blank = Some(AuditContext {
        reason: "   ".into(),
        ..Default::default()
    });
    let e = client
        .list_segments(pb::ListSegmentsRequest {
            camera: cam(CAMERA),
            range: range(T0, T0 + 60 * SEC),
            audit: None,
            page: None,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("audit.reason"), "{}", e.message());
    let e = client
        .get_playback_url(pb::GetPlaybackUrlRequest {
            camera: cam(CAMERA),
            range: range(T0, T0 + 60 * SEC),
            audit: blank.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let e = client
        .list_recordings(pb::ListRecordingsRequest {
            scope: Some(Scope::Camera(cam(CAMERA).unwrap())),
            range: range(T0, T0 + 60 * SEC),
            audit: blank,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let e = client
        .list_access_log(pb::ListAccessLogRequest {
            site: SITE.into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert_eq!(access_entries(&running).await, 0, "nothing was logged");

    // Other bad input: specific messages, nothing stored.
    let mut bad = register_request(&s);
    bad.sha256 = vec![1; 31];
    let e = client.register_segment(bad).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("sha256"), "{}", e.message());
    let mut bad = register_request(&s);
    bad.init_size = 0;
    let e = client.register_segment(bad).await.unwrap_err();
    assert!(e.message().contains("init_size"), "{}", e.message());
    let mut bad = register_request(&s);
    bad.camera = Some(CameraRef {
        site: SITE.into(),
        camera: "../etc".into(),
    });
    assert_eq!(
        client.register_segment(bad).await.unwrap_err().code(),
        Code::InvalidArgument
    );
    let mut moved = register_request(&s);
    moved.range = range(T0 + SEC, T0 + 7 * SEC);
    assert_eq!(
        client.register_segment(moved).await.unwrap_err().code(),
        Code::AlreadyExists
    );
    let missing = put_segment(
        kordon_objects::build(&kordon_objects::ObjectStoreConfig::Memory)
            .unwrap()
            .as_ref(),
        CAMERA,
        T0 + 6 * SEC,
        T0 + 12 * SEC,
        fake_bytes(2, 300),
        100,
    )
    .await;
    let e = client
        .register_segment(register_request(&missing))
        .await
        .unwrap_err();
    assert_eq!(
        e.code(),
        Code::FailedPrecondition,
        "object not in the bucket"
    );
    let mut gap = pb::RegisterGapRequest {
        camera: cam(CAMERA),
        range: range(T0 + 6 * SEC, T0 + 8 * SEC),
        reason: pb::GapReason::Unexplained as i32,
        ..Default::default()
    };
    assert_eq!(
        client.register_gap(gap.clone()).await.unwrap_err().code(),
        Code::InvalidArgument
    );
    gap.reason = pb::GapReason::StreamLost as i32;
    gap.range = range(T0 + 8 * SEC, T0 + 6 * SEC);
    assert_eq!(
        client.register_gap(gap).await.unwrap_err().code(),
        Code::InvalidArgument
    );
    let head = running
        .storage
        .index()
        .chain_head(SITE, CAMERA)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(head.sequence, 1, "no refused call changed the chain");

    // Internal failures reach the client as a generic message, never SQL.
    running.storage.index().close().await;
    let e = client
        .list_segments(pb::ListSegmentsRequest {
            camera: cam(CAMERA),
            range: range(T0, T0 + 60 * SEC),
            audit: why(),
            page: None,
        })
        .await
        .unwrap_err();
    assert!(
        matches!(e.code(), Code::Internal | Code::Unavailable),
        "{e:?}"
    );
    assert!(
        !e.message().to_lowercase().contains("select"),
        "{}",
        e.message()
    );
    assert!(!e.message().contains("pool"), "{}", e.message());

    running.stop().await;
    db.cleanup().await;
}

#[tokio::test]
async fn people_without_the_role_are_denied_and_nothing_is_logged() {
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
    // Segments registered directly (no service certificate in this test).
    let s = put_segment(
        objects.as_ref(),
        CAMERA,
        T0,
        T0 + 6 * SEC,
        fake_bytes(1, 300),
        100,
    )
    .await;
    running.storage.register_segment(&s).await.unwrap();
    let mut client = running.client().await;

    let partner = person_token(
        &private,
        "ayse",
        serde_json::json!({"edirne": ["viewer", "auditor"]}),
    );
    let viewer = person_token(&private, "ivan", serde_json::json!({"burgas": ["viewer"]}));
    let auditor = person_token(
        &private,
        "maria",
        serde_json::json!({"burgas": ["auditor"]}),
    );
    let list = || pb::ListSegmentsRequest {
        camera: cam(CAMERA),
        range: range(T0, T0 + 60 * SEC),
        audit: why(),
        page: None,
    };

    let e = client.list_segments(list()).await.unwrap_err();
    assert_eq!(
        e.code(),
        Code::Unauthenticated,
        "no credentials, no dev identity"
    );
    let e = client
        .list_segments(bearer(list(), &partner))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    let e = client
        .list_access_log(bearer(
            pb::ListAccessLogRequest {
                site: SITE.into(),
                audit: why(),
                ..Default::default()
            },
            &viewer,
        ))
        .await
        .unwrap_err();
    assert_eq!(
        e.code(),
        Code::PermissionDenied,
        "viewers may not read the log"
    );
    let e = client
        .verify_chain(bearer(
            pb::VerifyChainRequest {
                camera: cam(CAMERA),
                range: range(T0, T0 + 60 * SEC),
                verify_objects: false,
                audit: why(),
            },
            &viewer,
        ))
        .await
        .expect_err("refused");
    assert_eq!(e.code(), Code::PermissionDenied);
    let e = client
        .register_segment(bearer(register_request(&s), &auditor))
        .await
        .unwrap_err();
    assert_eq!(
        e.code(),
        Code::PermissionDenied,
        "people do not register media"
    );
    assert_eq!(
        access_entries(&running).await,
        0,
        "refusals are not logged as reads"
    );

    // The viewer may read, and that is logged under their name.
    let ok = client
        .list_segments(bearer(list(), &viewer))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ok.segments.len(), 1);
    let log = client
        .list_access_log(bearer(
            pb::ListAccessLogRequest {
                site: SITE.into(),
                audit: why(),
                ..Default::default()
            },
            &auditor,
        ))
        .await
        .unwrap()
        .into_inner();
    let who: Vec<(&str, &str, i32)> = log
        .entries
        .iter()
        .map(|e| (e.principal.as_str(), e.principal_name.as_str(), e.action))
        .collect();
    assert_eq!(
        who,
        vec![
            ("ivan", "ivan (test)", pb::AccessAction::List as i32),
            ("maria", "maria (test)", pb::AccessAction::AuditRead as i32),
        ]
    );

    running.stop().await;
    db.cleanup().await;
}

#[tokio::test]
async fn verify_chain_reports_an_altered_object() {
    let dir = tempfile::tempdir().unwrap();
    let db = sqlite().await;
    let objects = kordon_objects::build(&kordon_objects::ObjectStoreConfig::Memory).unwrap();
    let running = serve(
        db.index.clone(),
        objects.clone(),
        &common_config(dir.path(), Default::default(), true),
    )
    .await;
    let mut client = running.client().await;
    let mut keys = Vec::new();
    for n in 0..3u64 {
        let a = T0 + n as i64 * 6 * SEC;
        let s = put_segment(
            objects.as_ref(),
            CAMERA,
            a,
            a + 6 * SEC,
            fake_bytes(n, 300),
            100,
        )
        .await;
        client.register_segment(register_request(&s)).await.unwrap();
        keys.push(s.object_key);
    }
    // One flipped byte in segment 2.
    let key = kordon_objects::ObjectPath::from(keys[1].as_str());
    let mut bytes = read(objects.as_ref(), &keys[1]).await.to_vec();
    bytes[150] ^= 0xff;
    objects.put(&key, bytes.into()).await.unwrap();

    let mut stream = client
        .verify_chain(pb::VerifyChainRequest {
            camera: cam(CAMERA),
            range: range(T0, T0 + 60 * SEC),
            verify_objects: true,
            audit: why(),
        })
        .await
        .unwrap()
        .into_inner();
    let mut report = None;
    let mut progress = 0;
    while let Some(msg) = stream.message().await.unwrap() {
        match msg.event {
            Some(pb::verify_chain_response::Event::Report(r)) => report = Some(r),
            Some(pb::verify_chain_response::Event::Progress(_)) => progress += 1,
            None => {}
        }
    }
    assert!(progress >= 1);
    let report = report.unwrap();
    assert!(!report.intact);
    assert_eq!(report.findings.len(), 1, "{:#?}", report.findings);
    let f = &report.findings[0];
    assert_eq!(f.kind, pb::ChainFindingKind::ObjectAltered as i32);
    assert_eq!(f.sequence, 2);
    assert!(f.detail.contains("segment 2"), "{}", f.detail);

    running.stop().await;
    db.cleanup().await;
}

#[tokio::test]
async fn retention_and_legal_holds_through_grpc() {
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
    let mut client = running.client().await;
    let admin = person_token(&private, "petar", serde_json::json!({"burgas": ["admin"]}));
    let auditor = person_token(
        &private,
        "maria",
        serde_json::json!({"burgas": ["auditor"]}),
    );
    let viewer = person_token(&private, "ivan", serde_json::json!({"burgas": ["viewer"]}));

    // The default is inherited until a site policy is set; only admins set it.
    let got = client
        .get_retention_policy(bearer(
            pb::GetRetentionPolicyRequest {
                site: SITE.into(),
                camera: CAMERA.into(),
            },
            &viewer,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(got.inherited);
    assert_eq!(got.policy.unwrap().retention.unwrap().seconds, 30 * 86_400);
    let set = |token: &str, camera: &str, days: Option<i64>, reason: &str| {
        bearer(
            pb::SetRetentionPolicyRequest {
                site: SITE.into(),
                camera: camera.into(),
                retention: days.map(|d| prost_types::Duration {
                    seconds: d * 86_400,
                    nanos: 0,
                }),
                audit: Some(AuditContext {
                    reason: reason.into(),
                    ..Default::default()
                }),
            },
            token,
        )
    };
    let e = client
        .set_retention_policy(set(&auditor, "", Some(7), "shorter"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    let e = client
        .set_retention_policy(set(&admin, "", Some(7), ""))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "a change needs a reason");
    let e = client
        .set_retention_policy(set(&admin, "", None, "remove"))
        .await
        .unwrap_err();
    assert_eq!(
        e.code(),
        Code::InvalidArgument,
        "a site default cannot be unset"
    );
    let site = client
        .set_retention_policy(set(&admin, "", Some(7), "data minimisation"))
        .await
        .unwrap()
        .into_inner();
    assert!(!site.inherited);
    assert_eq!(site.policy.as_ref().unwrap().updated_by, "petar");
    let cam_policy = client
        .set_retention_policy(set(&admin, CAMERA, Some(90), "border crossing"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        cam_policy.policy.unwrap().retention.unwrap().seconds,
        90 * 86_400
    );
    let back = client
        .set_retention_policy(set(&admin, CAMERA, None, "back to the site default"))
        .await
        .unwrap()
        .into_inner();
    assert!(back.inherited);
    assert_eq!(back.policy.unwrap().retention.unwrap().seconds, 7 * 86_400);

    // Legal holds: auditors, with a case number; idempotent by request id.
    let hold_req = |token: &str, case: &str| {
        bearer(
            pb::CreateLegalHoldRequest {
                cameras: vec![cam(CAMERA).unwrap()],
                range: Some(TimeRange {
                    start: Some(ts(T0)),
                    end: None,
                }),
                audit: Some(AuditContext {
                    reason: "smuggling investigation".into(),
                    case_id: case.into(),
                    recipient: String::new(),
                }),
                request_id: "hold-1".into(),
            },
            token,
        )
    };
    let e = client
        .create_legal_hold(hold_req(&viewer, "BG-1"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    let e = client
        .create_legal_hold(hold_req(&auditor, ""))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let hold = client
        .create_legal_hold(hold_req(&auditor, "BG-1"))
        .await
        .unwrap()
        .into_inner()
        .hold
        .unwrap();
    assert_eq!(hold.state, pb::LegalHoldState::Active as i32);
    assert_eq!(hold.created_by, "maria");
    let again = client
        .create_legal_hold(hold_req(&auditor, "BG-1"))
        .await
        .unwrap()
        .into_inner()
        .hold
        .unwrap();
    assert_eq!(again.id, hold.id);
    let listed = client
        .list_legal_holds(bearer(pb::ListLegalHoldsRequest::default(), &auditor))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.holds.len(), 1);
    let released = client
        .release_legal_hold(bearer(
            pb::ReleaseLegalHoldRequest {
                hold_id: hold.id.clone(),
                audit: Some(AuditContext {
                    reason: "case closed".into(),
                    ..Default::default()
                }),
            },
            &auditor,
        ))
        .await
        .unwrap()
        .into_inner()
        .hold
        .unwrap();
    assert_eq!(released.state, pb::LegalHoldState::Released as i32);
    assert_eq!(released.release_reason, "case closed");
    let active = client
        .list_legal_holds(bearer(pb::ListLegalHoldsRequest::default(), &auditor))
        .await
        .unwrap()
        .into_inner();
    assert!(active.holds.is_empty());

    // Every change is in the access log.
    let log = client
        .list_access_log(bearer(
            pb::ListAccessLogRequest {
                site: SITE.into(),
                audit: why(),
                ..Default::default()
            },
            &auditor,
        ))
        .await
        .unwrap()
        .into_inner();
    use pb::AccessAction as A;
    let actions: Vec<i32> = log.entries.iter().map(|e| e.action).collect();
    assert_eq!(
        actions,
        vec![
            A::RetentionChange as i32,
            A::RetentionChange as i32,
            A::RetentionChange as i32,
            A::Hold as i32,
            A::Hold as i32,
            A::Release as i32,
            A::AuditRead as i32,
        ]
    );

    running.stop().await;
    db.cleanup().await;
}
