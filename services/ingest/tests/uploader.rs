//! The uploader against the real storage service (SQLite index, local object files) over gRPC,
//! driven through the spool directly: what storage refuses for good goes to the dead-letter
//! folder and the camera's queue goes on; the hole before a resume point becomes a gap once
//! storage answers, also when storage was unreachable when ingest started.

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kordon_ingest::segment::{
    Codec, GapMeta, GapReason, MAX_GAP_DETAIL_BYTES, ResumeMeta, SegmentMeta, UnixMicros,
};
use kordon_ingest::spool::Spool;
use kordon_ingest::status::StatusBoard;
use kordon_ingest::uploader::Uploader;
use kordon_objects::ObjectStoreConfig;
use kordon_proto::common::v1 as common;
use kordon_proto::storage::v1 as spb;
use kordon_proto::storage::v1::storage_service_client::StorageServiceClient;
use kordon_runtime::client::{self, ClientOptions};
use sha2::{Digest, Sha256};
use support::{StorageServer, free_addr};
use tokio_util::sync::CancellationToken;

const SITE: &str = "haskovo";
const CAMERA: &str = "checkpoint-3";
/// 2025-01-01T00:00:00Z.
const T0: i64 = 1_735_689_600_000_000;
const SECOND: i64 = 1_000_000;

fn objects_config(dir: &Path) -> ObjectStoreConfig {
    ObjectStoreConfig::Local {
        root: dir.join("media"),
    }
}

async fn start_storage(dir: &Path, addr: SocketAddr) -> StorageServer {
    support::start_storage(dir, &objects_config(dir), "", addr).await
}

fn storage_client(addr: SocketAddr) -> StorageServiceClient<client::AuthedChannel> {
    StorageServiceClient::new(
        client::connect_lazy(&ClientOptions {
            server: format!("http://{addr}"),
            ..Default::default()
        })
        .unwrap(),
    )
}

struct Running {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    async fn stop(self) {
        self.stop.cancel();
        self.task.await.unwrap();
    }
}

fn start_uploader(
    dir: &Path,
    spool: Arc<Spool>,
    board: Arc<StatusBoard>,
    storage: SocketAddr,
) -> Running {
    let uploader = Uploader {
        spool,
        objects: kordon_objects::build(&objects_config(dir)).unwrap(),
        // A local store: segments are hard-linked from the spool (record.rs covers copies).
        local_objects: kordon_objects::build_local(&objects_config(dir)).unwrap(),
        storage: storage_client(storage),
        board,
        concurrency: 4,
    };
    let stop = CancellationToken::new();
    let s = stop.clone();
    let task = tokio::spawn(async move { uploader.run(s, Duration::from_secs(5)).await });
    Running { stop, task }
}

/// Spools a segment of `seconds` from `start`; `init_size` as stated (storage requires it
/// below the size).
fn spool_segment(spool: &Spool, start: i64, seconds: i64, init_size: u64) -> SegmentMeta {
    // Each segment's bytes differ (storage identifies a segment by camera and hash).
    let mut media: Vec<u8> = (0..4096u32).map(|i| i as u8).collect();
    media[..8].copy_from_slice(&start.to_be_bytes());
    let sha256: [u8; 32] = Sha256::digest(&media).into();
    let meta = SegmentMeta {
        site: SITE.into(),
        camera: CAMERA.into(),
        replica: "ingest-0".into(),
        start: UnixMicros(start),
        end: UnixMicros(start + seconds * SECOND),
        size: media.len() as u64,
        init_size,
        sha256,
        codec: Codec::H264,
        width: 1920,
        height: 1080,
        object_key: kordon_objects::segment_key("", SITE, CAMERA, start, &sha256)
            .unwrap()
            .to_string(),
    };
    let f = spool
        .begin_segment(SITE, CAMERA, meta.start, meta.size)
        .unwrap()
        .unwrap();
    std::fs::write(&f.path, &media).unwrap();
    spool.commit_segment(f, meta.clone()).unwrap();
    meta
}

fn gap(start: i64, end: i64, detail: &str) -> GapMeta {
    GapMeta {
        site: SITE.into(),
        camera: CAMERA.into(),
        replica: "ingest-0".into(),
        start: UnixMicros(start),
        end: UnixMicros(end),
        reason: GapReason::StreamLost,
        detail: detail.into(),
    }
}

async fn wait_for(what: &str, timeout: Duration, f: impl Fn() -> bool) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}

fn micros(t: &Option<prost_types::Timestamp>) -> i64 {
    UnixMicros::from_timestamp(t.as_ref().unwrap()).unwrap().0
}

/// (start, end, kind, reason, detail) of every range storage reports for the camera.
async fn recordings(addr: SocketAddr) -> Vec<(i64, i64, i32, i32, String)> {
    storage_client(addr)
        .list_recordings(spb::ListRecordingsRequest {
            scope: Some(spb::list_recordings_request::Scope::Camera(
                common::CameraRef {
                    site: SITE.into(),
                    camera: CAMERA.into(),
                },
            )),
            range: Some(common::TimeRange {
                start: Some(UnixMicros(T0 - 3600 * SECOND).to_timestamp()),
                end: Some(UnixMicros(T0 + 3600 * SECOND).to_timestamp()),
            }),
            audit: Some(common::AuditContext {
                reason: "ingest uploader test".into(),
                case_id: "TEST-2".into(),
                recipient: String::new(),
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .ranges
        .into_iter()
        .map(|r| {
            let range = r.range.unwrap();
            (
                micros(&range.start),
                micros(&range.end),
                r.kind,
                r.gap_reason,
                r.gap_detail,
            )
        })
        .collect()
}

async fn segment_starts(addr: SocketAddr) -> Vec<i64> {
    storage_client(addr)
        .list_segments(spb::ListSegmentsRequest {
            camera: Some(common::CameraRef {
                site: SITE.into(),
                camera: CAMERA.into(),
            }),
            range: Some(common::TimeRange {
                start: Some(UnixMicros(T0 - 3600 * SECOND).to_timestamp()),
                end: Some(UnixMicros(T0 + 3600 * SECOND).to_timestamp()),
            }),
            audit: Some(common::AuditContext {
                reason: "ingest uploader test".into(),
                case_id: "TEST-2".into(),
                recipient: String::new(),
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .segments
        .iter()
        .map(|s| micros(&s.range.as_ref().unwrap().start))
        .collect()
}

const GAP: i32 = spb::RecordingRangeKind::Gap as i32;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_storage_refuses_for_good_is_dead_lettered_and_the_camera_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let addr = free_addr();
    let storage = start_storage(dir.path(), addr).await;
    let spool = Arc::new(Spool::open(&dir.path().join("spool"), 1 << 30).unwrap());
    let board = StatusBoard::new();
    let refused_before = kordon_ingest::metrics::get()
        .dead_letter
        .with_label_values(&[SITE, "invalid_argument"])
        .get();

    // A segment whose metadata storage can never accept (init part as long as the file).
    let bad = spool_segment(&spool, T0, 2, 4096);
    // The camera's next segment, and a gap whose detail is longer than storage takes
    // (multi-byte characters, so a cut in the wrong place would be invalid UTF-8).
    spool_segment(&spool, T0 + 2 * SECOND, 2, 100);
    let long_detail = "ç".repeat(700);
    spool
        .push_gap(gap(T0 + 4 * SECOND, T0 + 6 * SECOND, &long_detail))
        .unwrap();
    spool_segment(&spool, T0 + 6 * SECOND, 2, 100);

    let up = start_uploader(dir.path(), spool.clone(), board.clone(), addr);
    wait_for("the spool drained", Duration::from_secs(30), || {
        spool.pending() == 0
    })
    .await;
    up.stop().await;

    // The refused segment is kept, media and all, with the reason beside it.
    let dl = spool.dead_letter_root().join(SITE).join(CAMERA);
    let mut kept: Vec<String> = std::fs::read_dir(&dl)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    kept.sort();
    let notes: Vec<String> = kept
        .iter()
        .filter(|n| n.ends_with(".reason.txt"))
        .map(|n| std::fs::read_to_string(dl.join(n)).unwrap())
        .collect();
    assert_eq!(kept.len(), 3, "json, mp4 and reason: {kept:?} {notes:?}");
    let media = kept.iter().find(|n| n.ends_with(".mp4")).unwrap();
    let bytes = std::fs::read(dl.join(media)).unwrap();
    assert_eq!(<[u8; 32]>::from(Sha256::digest(&bytes)), bad.sha256);
    let reason = kept.iter().find(|n| n.ends_with(".reason.txt")).unwrap();
    let reason = std::fs::read_to_string(dl.join(reason)).unwrap();
    assert!(
        reason.contains("invalid_argument") && reason.contains("init_size"),
        "{reason}"
    );
    assert_eq!(
        kordon_ingest::metrics::get()
            .dead_letter
            .with_label_values(&[SITE, "invalid_argument"])
            .get(),
        refused_before + 1
    );
    let status = board.get(SITE, CAMERA).unwrap();
    assert_eq!(status.dead_letters, 1);
    assert!(status.last_dead_letter.is_some());
    assert!(status.last_error.unwrap().contains("dead-letter"));

    // The rest of the camera's queue was registered, the long detail cut to fit.
    assert_eq!(
        segment_starts(addr).await,
        vec![T0 + 2 * SECOND, T0 + 6 * SECOND]
    );
    let ranges = recordings(addr).await;
    let gap = ranges
        .iter()
        .find(|r| r.2 == GAP && r.0 == T0 + 4 * SECOND)
        .unwrap_or_else(|| panic!("the gap is registered: {ranges:?}"));
    assert_eq!(gap.3, spb::GapReason::StreamLost as i32);
    assert_eq!(gap.4, "ç".repeat(MAX_GAP_DETAIL_BYTES / 2));
    storage.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hole_before_a_restart_is_a_gap_also_when_storage_comes_up_later() {
    let dir = tempfile::tempdir().unwrap();
    let addr = free_addr();
    let spool_dir = dir.path().join("spool");

    // First run: two segments stored.
    let storage = start_storage(dir.path(), addr).await;
    {
        let spool = Arc::new(Spool::open(&spool_dir, 1 << 30).unwrap());
        spool_segment(&spool, T0, 2, 100);
        spool_segment(&spool, T0 + 2 * SECOND, 2, 100);
        let up = start_uploader(dir.path(), spool.clone(), StatusBoard::new(), addr);
        wait_for("the first run stored", Duration::from_secs(30), || {
            spool.pending() == 0
        })
        .await;
        up.stop().await;
    }
    storage.stop().await;

    // Second run, 30 s later by the camera's clock: storage is down when it starts. The
    // recorder queues its resume point before its first segment.
    let restart = T0 + 34 * SECOND;
    let spool = Arc::new(Spool::open(&spool_dir, 1 << 30).unwrap());
    spool
        .push_resume(ResumeMeta {
            site: SITE.into(),
            camera: CAMERA.into(),
            replica: "ingest-1".into(),
            at: UnixMicros(restart),
        })
        .unwrap();
    spool_segment(&spool, restart, 2, 100);
    let up = start_uploader(dir.path(), spool.clone(), StatusBoard::new(), addr);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        spool.pending(),
        2,
        "nothing leaves the spool while storage is down"
    );
    // Ingest itself restarts while storage is still down: the resume point is in the spool.
    up.stop().await;
    drop(spool);
    let spool = Arc::new(Spool::open(&spool_dir, 1 << 30).unwrap());
    assert_eq!(spool.pending(), 2);
    let up = start_uploader(dir.path(), spool.clone(), StatusBoard::new(), addr);
    tokio::time::sleep(Duration::from_secs(1)).await;

    let storage = start_storage(dir.path(), addr).await;
    wait_for("the second run stored", Duration::from_secs(40), || {
        spool.pending() == 0
    })
    .await;
    up.stop().await;

    assert_eq!(
        segment_starts(addr).await,
        vec![T0, T0 + 2 * SECOND, restart]
    );
    let ranges = recordings(addr).await;
    let gaps: Vec<_> = ranges.iter().filter(|r| r.2 == GAP).collect();
    assert_eq!(gaps.len(), 1, "{ranges:?}");
    let (start, end, _, reason, detail) = gaps[0];
    assert_eq!(
        (*start, *end),
        (T0 + 4 * SECOND, restart),
        "the gap covers the hole exactly"
    );
    assert_eq!(*reason, spb::GapReason::IngestRestart as i32);
    assert!(detail.contains("unreachable"), "{detail}");
    storage.stop().await;
}
