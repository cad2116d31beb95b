//! One behaviour suite for the index and the domain operations over it, run against SQLite
//! (always) and PostgreSQL (when `KORDON_TEST_POSTGRES_URL` is set; in CI it must be). Each
//! test gets a fresh database (a temporary SQLite file, or a PostgreSQL schema of its own).

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use kordon_objects::ObjectStoreExt;
use kordon_storage::audit::{AccessFilter, AccessFindingKind, AccessObjectRec, NewAccessEntry};
use kordon_storage::chain::{self, FindingKind};
use kordon_storage::index::{Index, NewGap};
use kordon_storage::recordings::{GAP_REASON_UNEXPLAINED, RangeKind};
use kordon_storage::{Storage, StorageError};
use support::*;

fn no_progress() -> impl Fn(u64, u64, &str) + Send + Sync {
    |_, _, _| {}
}

async fn chain_is_intact(index: &Index, camera: &str) -> bool {
    let head = index.chain_head(SITE, camera).await.unwrap().unwrap();
    let batch = index
        .chain_records(SITE, camera, 1, head.sequence)
        .await
        .unwrap();
    chain::verify(&chain::Window {
        first: 1,
        last: head.sequence,
        records: &batch.records,
        predecessor: None,
        head: Some((head.sequence, head.hash)),
    })
    .is_empty()
}

// ---------------------------------------------------------------------------------------------
// The behaviours
// ---------------------------------------------------------------------------------------------

async fn segments_and_gaps_share_one_gapless_chain(index: Index) {
    let a = index
        .register_segment(&new_segment(CAMERA, 1, T0, T0 + 6 * SEC))
        .await
        .unwrap();
    assert!(a.created);
    assert_eq!(a.record.sequence, 1);
    assert_eq!(a.record.prev_hash, [0; 32]);
    let gap = index
        .register_gap(&NewGap {
            site: SITE.into(),
            camera: CAMERA.into(),
            start_us: T0 + 6 * SEC,
            end_us: T0 + 20 * SEC,
            reason: 1,
            detail: "connection refused".into(),
            ingest_replica: "ingest-0".into(),
        })
        .await
        .unwrap();
    assert_eq!(gap.record.sequence, 2);
    assert_eq!(gap.record.prev_hash, a.record.record_hash);
    let b = index
        .register_segment(&new_segment(CAMERA, 2, T0 + 20 * SEC, T0 + 26 * SEC))
        .await
        .unwrap();
    assert_eq!(b.record.sequence, 3);
    assert_eq!(b.record.prev_hash, gap.record.record_hash);
    assert_eq!(b.record.record_hash, b.record.chain_record().compute_hash());
    // Another camera has its own chain.
    let other = index
        .register_segment(&new_segment("gate-4", 3, T0, T0 + 6 * SEC))
        .await
        .unwrap();
    assert_eq!(other.record.sequence, 1);

    let head = index.chain_head(SITE, CAMERA).await.unwrap().unwrap();
    assert_eq!(head.sequence, 3);
    assert_eq!(head.hash, b.record.record_hash);
    assert_eq!(head.recorded_until_us, T0 + 26 * SEC);
    assert!(index.chain_head(SITE, "nobody").await.unwrap().is_none());
    assert_eq!(
        index.cameras(SITE).await.unwrap(),
        vec![CAMERA.to_string(), "gate-4".to_string()]
    );
    assert!(chain_is_intact(&index, CAMERA).await);
}

async fn registration_is_idempotent(index: Index) {
    let s = new_segment(CAMERA, 1, T0, T0 + 6 * SEC);
    let first = index.register_segment(&s).await.unwrap();
    let again = index.register_segment(&s).await.unwrap();
    assert!(first.created && !again.created);
    assert_eq!(
        first.record, again.record,
        "a retry returns the stored record"
    );
    let mut moved = s.clone();
    moved.start_us += SEC;
    assert!(matches!(
        index.register_segment(&moved).await,
        Err(StorageError::AlreadyExists(_))
    ));

    let g = NewGap {
        site: SITE.into(),
        camera: CAMERA.into(),
        start_us: T0 + 6 * SEC,
        end_us: T0 + 9 * SEC,
        reason: 3,
        detail: String::new(),
        ingest_replica: "ingest-1".into(),
    };
    let g1 = index.register_gap(&g).await.unwrap();
    let g2 = index.register_gap(&g).await.unwrap();
    assert!(g1.created && !g2.created);
    assert_eq!(g1.record, g2.record);
    let mut longer = g.clone();
    longer.end_us += SEC;
    assert!(matches!(
        index.register_gap(&longer).await,
        Err(StorageError::AlreadyExists(_))
    ));
    assert_eq!(
        index
            .chain_head(SITE, CAMERA)
            .await
            .unwrap()
            .unwrap()
            .sequence,
        2,
        "retries added nothing to the chain"
    );
}

async fn concurrent_registrations_stay_gapless(index: Index) {
    const N: u64 = 24;
    let mut tasks = Vec::new();
    for n in 0..N {
        let index = index.clone();
        tasks.push(tokio::spawn(async move {
            let start = T0 + n as i64 * 6 * SEC;
            if n % 6 == 5 {
                index
                    .register_gap(&NewGap {
                        site: SITE.into(),
                        camera: CAMERA.into(),
                        start_us: start,
                        end_us: start + 6 * SEC,
                        reason: 1,
                        detail: String::new(),
                        ingest_replica: "r".into(),
                    })
                    .await
                    .map(|r| r.record.sequence)
            } else {
                index
                    .register_segment(&new_segment(CAMERA, n, start, start + 6 * SEC))
                    .await
                    .map(|r| r.record.sequence)
            }
        }));
    }
    // The same segment from two replicas at once: stored once.
    let dup = new_segment(CAMERA, 1000, T0 - 60 * SEC, T0 - 54 * SEC);
    let (d1, d2) = tokio::join!(index.register_segment(&dup), index.register_segment(&dup));
    let (d1, d2) = (d1.unwrap(), d2.unwrap());
    assert_eq!(d1.record.sequence, d2.record.sequence);
    assert!(d1.created ^ d2.created, "exactly one created it");

    let mut seqs = BTreeSet::new();
    for t in tasks {
        assert!(
            seqs.insert(t.await.unwrap().unwrap()),
            "a sequence was reused"
        );
    }
    seqs.insert(d1.record.sequence);
    assert_eq!(seqs, (1..=N + 1).collect::<BTreeSet<u64>>(), "gapless");
    assert!(chain_is_intact(&index, CAMERA).await);
}

async fn time_queries_and_paging(index: Index) {
    for n in 0..20u64 {
        let start = T0 + n as i64 * 6 * SEC;
        index
            .register_segment(&new_segment(CAMERA, n, start, start + 6 * SEC))
            .await
            .unwrap();
        index
            .register_segment(&new_segment("gate-4", 100 + n, start, start + 6 * SEC))
            .await
            .unwrap();
    }
    // [T0+10s, T0+40s) overlaps segments 1 (6-12) .. 6 (36-42).
    let got = index
        .list_segments(SITE, CAMERA, T0 + 10 * SEC, T0 + 40 * SEC, None, 100)
        .await
        .unwrap();
    let starts: Vec<i64> = got.iter().map(|s| (s.start_us - T0) / SEC).collect();
    assert_eq!(starts, vec![6, 12, 18, 24, 30, 36]);
    assert!(got.iter().all(|s| s.camera == CAMERA));
    // A playlist reads the same segments, in the same order, with what it renders.
    let items = index
        .playlist_segments(SITE, CAMERA, T0 + 10 * SEC, T0 + 40 * SEC, 100)
        .await
        .unwrap();
    let fields = |s: &kordon_storage::playback::PlaylistSegment| {
        (s.sequence, s.start_us, s.end_us, s.size_bytes, s.init_size)
    };
    assert_eq!(
        items.iter().map(fields).collect::<Vec<_>>(),
        got.iter()
            .map(|s| (s.sequence, s.start_us, s.end_us, s.size_bytes, s.init_size))
            .collect::<Vec<_>>()
    );
    let first_two = index
        .playlist_segments(SITE, CAMERA, T0 + 10 * SEC, T0 + 40 * SEC, 2)
        .await
        .unwrap();
    assert_eq!(
        first_two.iter().map(fields).collect::<Vec<_>>(),
        items.iter().take(2).map(fields).collect::<Vec<_>>()
    );
    assert!(
        index
            .playlist_segments(SITE, CAMERA, T0 + 2000 * SEC, T0 + 3000 * SEC, 100)
            .await
            .unwrap()
            .is_empty()
    );
    // Paging with a (start, sequence) cursor returns each segment once.
    let mut all = Vec::new();
    let mut after = None;
    loop {
        let page = index
            .list_segments(SITE, CAMERA, T0, T0 + 1000 * SEC, after, 7)
            .await
            .unwrap();
        if page.is_empty() {
            break;
        }
        after = page.last().map(|s| (s.start_us, s.sequence));
        all.extend(page);
    }
    assert_eq!(all.len(), 20);
    assert_eq!(
        index
            .sequence_span(SITE, CAMERA, T0 + 10 * SEC, T0 + 40 * SEC)
            .await
            .unwrap(),
        Some((2, 7))
    );
    assert!(index.recorded_before(SITE, CAMERA, T0 + SEC).await.unwrap());
    assert!(!index.recorded_before(SITE, CAMERA, T0).await.unwrap());
}

async fn timeline_merges_and_reports_gaps(index: Index) {
    let storage = storage(index.clone(), "http://playback.test");
    let objects = storage.objects().clone();
    // 0-18 recorded, 18-30 hole, 30-36 recorded, registered gap 36-40, 40-46 recorded.
    for (n, (a, b)) in [(0, 6), (6, 12), (12, 18), (30, 36), (40, 46)]
        .into_iter()
        .enumerate()
    {
        let s = put_segment(
            objects.as_ref(),
            CAMERA,
            T0 + a * SEC,
            T0 + b * SEC,
            fake_bytes(n as u64, 500),
            100,
        )
        .await;
        storage.register_segment(&s).await.unwrap();
    }
    storage
        .register_gap(&NewGap {
            site: SITE.into(),
            camera: CAMERA.into(),
            start_us: T0 + 36 * SEC,
            end_us: T0 + 40 * SEC,
            reason: 3,
            detail: "replica restarted".into(),
            ingest_replica: "ingest-0".into(),
        })
        .await
        .unwrap();
    let t = storage
        .timeline(SITE, CAMERA, T0, T0 + 3600 * SEC, Duration::from_secs(1))
        .await
        .unwrap();
    let shape: Vec<(i64, i64, String)> = t
        .iter()
        .map(|r| {
            (
                (r.start_us - T0) / SEC,
                (r.end_us - T0) / SEC,
                match &r.kind {
                    RangeKind::Recorded { segment_count, .. } => format!("rec{segment_count}"),
                    RangeKind::Gap { reason, .. } if *reason == GAP_REASON_UNEXPLAINED => {
                        "hole".into()
                    }
                    RangeKind::Gap { reason, detail } => format!("gap{reason}:{detail}"),
                },
            )
        })
        .collect();
    assert_eq!(
        shape,
        vec![
            (0, 18, "rec3".into()),
            (18, 30, "hole".into()),
            (30, 36, "rec1".into()),
            (36, 40, "gap3:replica restarted".into()),
            (40, 46, "rec1".into()),
        ]
    );
}

async fn verification_reports_each_problem_precisely(index: Index) {
    let storage = storage(index.clone(), "http://playback.test");
    let objects = storage.objects().clone();
    let mut keys = Vec::new();
    for n in 0..8u64 {
        let start = T0 + n as i64 * 6 * SEC;
        let s = put_segment(
            objects.as_ref(),
            CAMERA,
            start,
            start + 6 * SEC,
            fake_bytes(n, 400),
            100,
        )
        .await;
        keys.push(s.object_key.clone());
        storage.register_segment(&s).await.unwrap();
    }
    let verify = |objects_too| {
        let storage: Storage = storage.clone();
        async move {
            storage
                .verify_chain(
                    SITE,
                    CAMERA,
                    T0,
                    T0 + 3600 * SEC,
                    objects_too,
                    &no_progress(),
                )
                .await
                .unwrap()
        }
    };
    let r = verify(true).await;
    assert!(r.intact(), "{:#?}", r.findings);
    assert_eq!((r.first_sequence, r.last_sequence), (1, 8));
    assert_eq!(r.segments_checked, 8);
    let head = index.chain_head(SITE, CAMERA).await.unwrap().unwrap();
    assert_eq!(r.head_hash, Some(head.hash));

    // Object of segment 2 deleted from the bucket; object of segment 3 replaced by other bytes
    // of the same size (only a re-hash sees it).
    objects
        .delete(&kordon_objects::ObjectPath::from(keys[1].as_str()))
        .await
        .unwrap();
    let k3 = kordon_objects::ObjectPath::from(keys[2].as_str());
    objects.delete(&k3).await.unwrap();
    objects.put(&k3, fake_bytes(99, 400).into()).await.unwrap();
    // Index row of segment 5 edited; row of segment 7 deleted.
    let edited = exec(
        &index,
        format!("UPDATE segments SET end_us = end_us + 1000000 WHERE camera = '{CAMERA}' AND sequence = 5"),
    )
    .await;
    assert_eq!(edited, 1);
    exec(
        &index,
        format!("DELETE FROM segments WHERE camera = '{CAMERA}' AND sequence = 7"),
    )
    .await;

    let quick = verify(false).await;
    let kinds: Vec<(FindingKind, u64)> = quick
        .findings
        .iter()
        .map(|f| (f.kind, f.sequence))
        .collect();
    assert_eq!(
        kinds,
        vec![
            (FindingKind::ObjectMissing, 2),
            (FindingKind::RecordAltered, 5),
            (FindingKind::MissingRecord, 7),
        ],
        "{:#?}",
        quick.findings
    );
    let full = verify(true).await;
    let kinds: Vec<(FindingKind, u64)> =
        full.findings.iter().map(|f| (f.kind, f.sequence)).collect();
    assert_eq!(
        kinds,
        vec![
            (FindingKind::ObjectMissing, 2),
            (FindingKind::ObjectAltered, 3),
            (FindingKind::RecordAltered, 5),
            (FindingKind::MissingRecord, 7),
        ],
        "{:#?}",
        full.findings
    );
    let missing = &full.findings[0];
    assert!(
        missing.detail.contains("segment 2") && missing.detail.contains("missing from the bucket"),
        "{}",
        missing.detail
    );

    // Rows 1 and 2 swap sequence numbers: reported as reordering.
    exec(
        &index,
        format!("UPDATE segments SET sequence = 100 WHERE camera = '{CAMERA}' AND sequence = 1"),
    )
    .await;
    exec(
        &index,
        format!("UPDATE segments SET sequence = 1 WHERE camera = '{CAMERA}' AND sequence = 2"),
    )
    .await;
    exec(
        &index,
        format!("UPDATE segments SET sequence = 2 WHERE camera = '{CAMERA}' AND sequence = 100"),
    )
    .await;
    let swapped = verify(false).await;
    assert!(
        swapped
            .findings
            .iter()
            .any(|f| f.kind == FindingKind::Reordered),
        "{:#?}",
        swapped.findings
    );
}

async fn access_log_is_a_verifiable_chain(index: Index) {
    let entry = |principal: &str, action: i32, camera: &str, case: &str| NewAccessEntry {
        site: SITE.into(),
        principal: principal.into(),
        principal_name: String::new(),
        via_service: String::new(),
        action,
        objects: vec![AccessObjectRec {
            kind: 1,
            site: SITE.into(),
            camera: camera.into(),
            start_us: Some(T0),
            end_us: Some(T0 + 60 * SEC),
            id: String::new(),
        }],
        reason: "incident at gate 3".into(),
        case_id: case.into(),
        recipient: String::new(),
        method: "/kordon.storage.v1.StorageService/ListSegments".into(),
        source: String::new(),
    };
    // Concurrent appends stay gapless.
    let mut tasks = Vec::new();
    for i in 0..12 {
        let index = index.clone();
        let e = entry(
            if i % 2 == 0 { "ana" } else { "ivan" },
            if i % 3 == 0 { 3 } else { 1 },
            if i % 4 == 0 { "gate-4" } else { CAMERA },
            if i == 5 { "BG-HSK-2026-0117" } else { "" },
        );
        tasks.push(tokio::spawn(async move { index.append_access(&e).await }));
    }
    let mut seqs = BTreeSet::new();
    for t in tasks {
        seqs.insert(t.await.unwrap().unwrap().sequence);
    }
    assert_eq!(seqs, (1..=12).collect());
    // Another site has its own chain.
    let mut other = entry("ana", 1, CAMERA, "");
    other.site = "edirne".into();
    other.objects[0].site = "edirne".into();
    assert_eq!(index.append_access(&other).await.unwrap().sequence, 1);

    let list = |f: AccessFilter| {
        let index = index.clone();
        async move { index.list_access(&f, 0, 100).await.unwrap() }
    };
    let base = AccessFilter {
        site: SITE.into(),
        ..Default::default()
    };
    assert_eq!(list(base.clone()).await.len(), 12);
    let ana = list(AccessFilter {
        principal: "ana".into(),
        ..base.clone()
    })
    .await;
    assert_eq!(ana.len(), 6);
    assert!(ana.iter().all(|e| e.principal == "ana"));
    let playback = list(AccessFilter {
        actions: vec![3],
        ..base.clone()
    })
    .await;
    assert_eq!(playback.len(), 4);
    let gate4 = list(AccessFilter {
        camera: "gate-4".into(),
        ..base.clone()
    })
    .await;
    assert_eq!(gate4.len(), 3);
    assert!(gate4.iter().all(|e| e.objects()[0].camera == "gate-4"));
    let case = list(AccessFilter {
        case_id: "BG-HSK-2026-0117".into(),
        ..base.clone()
    })
    .await;
    assert_eq!(case.len(), 1);
    let page = index.list_access(&base, 10, 100).await.unwrap();
    assert_eq!(
        page.iter().map(|e| e.sequence).collect::<Vec<_>>(),
        vec![11, 12]
    );

    let key = ed25519_dalek::SigningKey::from_bytes(&[9; 32]);
    let trusted = key.verifying_key().to_bytes();
    let report = index
        .verify_access(SITE, 0, 0, None, &trusted)
        .await
        .unwrap();
    assert!(report.findings.is_empty(), "{:#?}", report.findings);
    assert_eq!((report.first, report.last, report.checked), (1, 12, 12));
    let cp = kordon_storage::audit::Checkpoint::sign(&key, SITE, 12, report.last_hash);
    assert!(cp.signature_valid());
    let ok = index
        .verify_access(SITE, 0, 0, Some(&cp), &trusted)
        .await
        .unwrap();
    assert!(ok.findings.is_empty(), "{:#?}", ok.findings);

    // Tampering: an edited reason, a deleted entry; the checkpoint no longer matches once the
    // head is rewritten.
    exec(
        &index,
        format!(
            "UPDATE access_log SET reason = 'nothing to see' WHERE site = '{SITE}' AND sequence = 4"
        ),
    )
    .await;
    exec(
        &index,
        format!("DELETE FROM access_log WHERE site = '{SITE}' AND sequence = 9"),
    )
    .await;
    exec(
        &index,
        format!("UPDATE access_log SET hash = prev_hash WHERE site = '{SITE}' AND sequence = 12"),
    )
    .await;
    let bad = index
        .verify_access(SITE, 0, 0, Some(&cp), &trusted)
        .await
        .unwrap();
    let kinds: Vec<(AccessFindingKind, u64)> =
        bad.findings.iter().map(|f| (f.kind, f.sequence)).collect();
    assert!(
        kinds.contains(&(AccessFindingKind::EntryAltered, 4)),
        "{kinds:?}"
    );
    assert!(
        kinds.contains(&(AccessFindingKind::MissingEntry, 9)),
        "{kinds:?}"
    );
    assert!(
        kinds.contains(&(AccessFindingKind::EntryAltered, 12)),
        "{kinds:?}"
    );
    assert!(
        kinds.contains(&(AccessFindingKind::CheckpointMismatch, 12)),
        "{kinds:?}"
    );
    assert!(
        !kinds.iter().any(|(_, s)| [1, 2, 3, 6, 7, 8].contains(s)),
        "{kinds:?}"
    );
    // A forged checkpoint (other key) is refused.
    let forged = kordon_storage::audit::Checkpoint::sign(
        &ed25519_dalek::SigningKey::from_bytes(&[1; 32]),
        SITE,
        2,
        report.last_hash,
    );
    let r = index
        .verify_access(SITE, 1, 3, Some(&forged), &trusted)
        .await
        .unwrap();
    assert_eq!(r.findings.len(), 1);
    assert_eq!(r.findings[0].kind, AccessFindingKind::CheckpointMismatch);
}

async fn retention_deletes_old_footage_except_on_hold(index: Index) {
    use kordon_storage::retention::{HOLD_RELEASED, NewHold};
    let storage = storage(index.clone(), "http://playback.test");
    let objects = storage.objects().clone();
    let mut keys = Vec::new();
    for camera in [CAMERA, "gate-4"] {
        for n in 0..10u64 {
            let start = T0 + n as i64 * 6 * SEC;
            let s = put_segment(
                objects.as_ref(),
                camera,
                start,
                start + 6 * SEC,
                fake_bytes(n + if camera == CAMERA { 0 } else { 100 }, 300),
                100,
            )
            .await;
            keys.push(s.object_key.clone());
            storage.register_segment(&s).await.unwrap();
        }
    }
    let day = 86_400 * SEC;
    index
        .set_retention_policy(SITE, "", Some(day), "admin")
        .await
        .unwrap();
    index
        .set_retention_policy(SITE, "gate-4", Some(90 * day), "admin")
        .await
        .unwrap();
    let p = storage.effective_policy(SITE, CAMERA).await.unwrap();
    assert!(p.inherited);
    assert_eq!(p.policy.retention_us, day);
    let p = storage.effective_policy(SITE, "gate-4").await.unwrap();
    assert!(!p.inherited);
    assert_eq!(p.policy.retention_us, 90 * day);

    // A hold over segments 3 and 4 (18 s to 30 s) of the first camera.
    let hold = NewHold {
        site: SITE.into(),
        cameras: vec![CAMERA.into()],
        start_us: T0 + 19 * SEC,
        end_us: Some(T0 + 29 * SEC),
        case_id: "BG-HSK-2026-0117".into(),
        reason: "investigation".into(),
        created_by: "maria".into(),
        request_id: "req-1".into(),
    };
    let (h, created) = index.create_hold(&hold).await.unwrap();
    assert!(created);
    let (again, created) = index.create_hold(&hold).await.unwrap();
    assert!(!created, "idempotent by request id");
    assert_eq!(again, h);
    assert_eq!(h.cameras, vec![CAMERA.to_string()]);

    let run = storage.apply_retention(T0 + 2 * day).await.unwrap();
    assert_eq!((run.deleted, run.held, run.failed), (8, 2, 0));
    let left: Vec<u64> = index
        .list_segments(SITE, CAMERA, T0, T0 + day, None, 100)
        .await
        .unwrap()
        .iter()
        .map(|s| s.sequence)
        .collect();
    assert_eq!(left, vec![4, 5], "only the held segments remain");
    assert!(
        objects
            .head(&kordon_objects::ObjectPath::from(keys[0].as_str()))
            .await
            .is_err(),
        "the object is gone"
    );
    assert_eq!(
        index
            .list_segments(SITE, "gate-4", T0, T0 + day, None, 100)
            .await
            .unwrap()
            .len(),
        10,
        "the camera override keeps its footage"
    );
    // The deletion is in the access log, and the chain still verifies with tombstones.
    let log = index
        .list_access(
            &AccessFilter {
                site: SITE.into(),
                actions: vec![9],
                ..Default::default()
            },
            0,
            10,
        )
        .await
        .unwrap();
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].principal, "kordon-storage");
    assert_eq!(log[0].objects().len(), 8);
    let report = storage
        .verify_chain(SITE, CAMERA, T0, T0 + day, true, &no_progress())
        .await
        .unwrap();
    assert!(report.intact(), "{:#?}", report.findings);
    assert_eq!(report.retention_deleted, 8);
    assert_eq!(report.segments_checked, 2);

    // Nothing more while the hold stands; everything once it is released.
    let run = storage.apply_retention(T0 + 2 * day).await.unwrap();
    assert_eq!((run.deleted, run.held), (0, 2));
    assert!(
        index
            .release_hold(&h.id, "maria", "case closed")
            .await
            .unwrap()
    );
    assert!(!index.release_hold(&h.id, "maria", "again").await.unwrap());
    let released = index.hold(&h.id).await.unwrap().unwrap();
    assert_eq!(released.state, HOLD_RELEASED);
    assert_eq!(released.release_reason, "case closed");
    let run = storage.apply_retention(T0 + 2 * day).await.unwrap();
    assert_eq!((run.deleted, run.held), (2, 0));

    let active = index
        .list_holds(None, Some((SITE, CAMERA)), "", false, 0, 10)
        .await
        .unwrap();
    assert!(active.is_empty());
    let all = index
        .list_holds(
            Some(&[SITE.to_string()]),
            None,
            "BG-HSK-2026-0117",
            true,
            0,
            10,
        )
        .await
        .unwrap();
    assert_eq!(all.len(), 1);
    let other_site = index
        .list_holds(Some(&["edirne".to_string()]), None, "", true, 0, 10)
        .await
        .unwrap();
    assert!(other_site.is_empty());
}

// ---------------------------------------------------------------------------------------------
// Each behaviour on each backend
// ---------------------------------------------------------------------------------------------

macro_rules! on_every_backend {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let db = crate::sqlite().await;
                    crate::$name(db.index.clone()).await;
                    db.cleanup().await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let Some(db) = crate::postgres(stringify!($name)).await else { return };
                    crate::$name(db.index.clone()).await;
                    db.cleanup().await;
                }
            )*
        }
    };
}

on_every_backend!(
    segments_and_gaps_share_one_gapless_chain,
    registration_is_idempotent,
    concurrent_registrations_stay_gapless,
    time_queries_and_paging,
    timeline_merges_and_reports_gaps,
    verification_reports_each_problem_precisely,
    access_log_is_a_verifiable_chain,
    retention_deletes_old_footage_except_on_hold,
);
