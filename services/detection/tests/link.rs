//! Stored detections are linked to the recorded segment their frame lies in, through a real
//! storage service (in process, local files): found segments, gaps, the recording's still open
//! end, a camera storage knows nothing of, and a storage that is down.

#[path = "../../ingest/tests/support/mod.rs"]
mod support;

use bytes::Bytes;
use kordon_detection::link::{GIVE_UP, Linked, Linker};
use kordon_detection::store::{Filter, Store};
use kordon_objects::ObjectStoreConfig;
use kordon_proto::common::v1 as common;
use kordon_proto::detection::v1 as pb;
use kordon_proto::storage::v1 as spb;
use kordon_proto::storage::v1::storage_service_client::StorageServiceClient;
use kordon_proto::time::timestamp_from_micros as ts;
use kordon_runtime::client::{self, AuthedChannel, ClientOptions};
use support::{free_addr, start_storage};

const SEC: i64 = 1_000_000;

fn channel(addr: std::net::SocketAddr) -> AuthedChannel {
    client::connect_lazy(&ClientOptions {
        server: format!("http://{addr}"),
        ..Default::default()
    })
    .unwrap()
}

fn detection(id: &str, camera: &str, time_us: i64) -> pb::Detection {
    pb::Detection {
        id: id.into(),
        camera: Some(common::CameraRef {
            site: "burgas".into(),
            camera: camera.into(),
        }),
        time: Some(ts(time_us)),
        class_label: "person".into(),
        confidence: 0.9,
        track_id: 1,
        phase: pb::TrackPhase::Updated as i32,
        track_started_at: Some(ts(time_us)),
        ..Default::default()
    }
}

/// Writes and registers a segment of `camera` over `[start_us, end_us)`; returns its sequence.
async fn record(
    objects: &dyn kordon_objects::ObjectStore,
    storage: &mut StorageServiceClient<AuthedChannel>,
    camera: &str,
    start_us: i64,
    end_us: i64,
) -> u64 {
    let bytes = Bytes::from(format!("{camera} {start_us} {}", "x".repeat(600)).into_bytes());
    let sha = kordon_objects::sha256(&bytes);
    let key = kordon_objects::segment_key("", "burgas", camera, start_us, &sha).unwrap();
    kordon_objects::put_immutable(objects, &key, bytes.clone(), &sha)
        .await
        .unwrap();
    storage
        .register_segment(spb::RegisterSegmentRequest {
            camera: Some(common::CameraRef {
                site: "burgas".into(),
                camera: camera.into(),
            }),
            range: Some(common::TimeRange {
                start: Some(ts(start_us)),
                end: Some(ts(end_us)),
            }),
            size_bytes: bytes.len() as u64,
            sha256: sha.to_vec(),
            codec: common::VideoCodec::H264 as i32,
            width: 640,
            height: 360,
            object_key: key.to_string(),
            ingest_replica: "burgas-ingest-0".into(),
            init_size: 100,
        })
        .await
        .unwrap()
        .into_inner()
        .segment
        .unwrap()
        .link
        .unwrap()
        .sequence
}

/// Each detection's segment (0: not recorded), `None` while unlinked, by id.
async fn segments(store: &Store) -> Vec<(String, u64)> {
    let rows = store.list(&Filter::default(), None, 100).await.unwrap();
    rows.into_iter()
        .map(|(_, d)| (d.id, d.segment_sequence))
        .collect()
}

/// A detection database URL: SQLite in `dir`, or with `postgres` a schema of its own in
/// `KORDON_TEST_POSTGRES_URL` (skipped without it, a failure when `CI` is set).
async fn database(dir: &std::path::Path, postgres: bool) -> Option<String> {
    if !postgres {
        return Some(format!("sqlite://{}", dir.join("detections.db").display()));
    }
    let url = kordon_objects::testenv::require(
        "detection links on PostgreSQL",
        &["KORDON_TEST_POSTGRES_URL"],
    )?
    .pop()?;
    let schema = format!("kordon_test_{}", uuid::Uuid::new_v4().simple());
    let admin = sqlx::PgPool::connect(&url).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(&admin)
        .await
        .unwrap();
    admin.close().await;
    let sep = if url.contains('?') { '&' } else { '?' };
    Some(format!("{url}{sep}options=-c%20search_path%3D{schema}"))
}

#[tokio::test]
async fn detections_are_linked_to_their_segments_on_sqlite() {
    linked(false).await;
}

#[tokio::test]
async fn detections_are_linked_to_their_segments_on_postgres() {
    linked(true).await;
}

async fn linked(postgres: bool) {
    let dir = tempfile::tempdir().unwrap();
    let Some(url) = database(dir.path(), postgres).await else {
        return;
    };
    let objects_cfg = ObjectStoreConfig::Local {
        root: dir.path().join("media"),
    };
    let objects = kordon_objects::build(&objects_cfg).unwrap();
    let storage_dir = dir.path().join("storage");
    std::fs::create_dir_all(&storage_dir).unwrap();
    let addr = free_addr();
    let server = start_storage(&storage_dir, &objects_cfg, "", addr).await;
    let mut storage = StorageServiceClient::new(channel(addr));
    let store = Store::open(&url).await.unwrap();
    let linker = Linker {
        store: store.clone(),
        storage: storage.clone(),
    };

    let now = kordon_objects::time::now_micros();
    // Recorded: [t0, t0 + 6 s) and [t0 + 6 s, t0 + 12 s), twenty minutes ago.
    let t0 = now - 20 * 60 * SEC;
    let first = record(objects.as_ref(), &mut storage, "gate-1", t0, t0 + 6 * SEC).await;
    let second = record(
        objects.as_ref(),
        &mut storage,
        "gate-1",
        t0 + 6 * SEC,
        t0 + 12 * SEC,
    )
    .await;
    store
        .insert(&[
            detection("in-first", "gate-1", t0 + SEC),
            detection("at-edge", "gate-1", t0 + 6 * SEC),
            detection("in-second", "gate-1", t0 + 12 * SEC - 1),
            // Ten minutes before the recording began: well before its end, so not recorded.
            detection("before", "gate-1", t0 - 10 * 60 * SEC),
            // After the recorded end: its segment may still come.
            detection("after-end", "gate-1", t0 + 13 * SEC),
            // Too fresh to ask about.
            detection("fresh", "gate-1", now),
            // A camera storage has no record of, recently and over an hour ago.
            detection("unknown-recent", "gate-9", now - 60 * SEC),
            detection(
                "unknown-old",
                "gate-9",
                now - GIVE_UP.as_micros() as i64 - 60 * SEC,
            ),
        ])
        .await
        .unwrap();

    let done = linker.run_once(now).await.unwrap();
    assert_eq!(
        done,
        Linked {
            segment: 3,
            not_recorded: 2
        }
    );
    let mut linked = segments(&store).await;
    linked.sort();
    let expect = |v: &[(&str, u64)]| {
        let mut v: Vec<(String, u64)> = v.iter().map(|(i, s)| (i.to_string(), *s)).collect();
        v.sort();
        v
    };
    assert_eq!(
        linked,
        expect(&[
            ("in-first", first),
            ("at-edge", second),
            ("in-second", second),
            ("before", 0),
            ("after-end", 0),
            ("fresh", 0),
            ("unknown-recent", 0),
            ("unknown-old", 0),
        ])
    );
    // Unlinked ones are still pending (listed as 0 but asked about again): the recording
    // goes on, and the next run links "after-end".
    let third = record(
        objects.as_ref(),
        &mut storage,
        "gate-1",
        t0 + 12 * SEC,
        t0 + 18 * SEC,
    )
    .await;
    let done = linker.run_once(now + 5 * SEC).await.unwrap();
    assert_eq!(
        done,
        Linked {
            segment: 1,
            not_recorded: 0
        }
    );
    let after = segments(&store).await;
    assert!(after.contains(&("after-end".into(), third)), "{after:?}");
    // Still pending: gate-9's recent detection (no recording yet), and "fresh", now old
    // enough to ask about but after the recorded end.
    assert_eq!(
        store.unlinked_cameras(now + 5 * SEC).await.unwrap(),
        [
            ("burgas".to_string(), "gate-1".to_string()),
            ("burgas".to_string(), "gate-9".to_string())
        ],
    );
    assert_eq!(
        store
            .unlinked("burgas", "gate-1", now + 5 * SEC, 10)
            .await
            .unwrap()
            .len(),
        1
    );

    // Storage down: the run fails and changes nothing.
    server.stop().await;
    let e = linker.run_once(now + 10 * SEC).await.unwrap_err();
    assert!(e.to_string().contains("storage"), "{e}");
    assert_eq!(segments(&store).await, after);
    store.close().await;
}
