//! Ingest end to end against real parts: simulated RTSP cameras (`kordon-camsim`), the real
//! storage service (SQLite index) over gRPC, and object storage on local files or Ceph RGW.
//!
//! Asserts what a player and an auditor would see: every stored segment decodes (ffprobe), its
//! bytes hash to the registered SHA-256, segments of a session are contiguous, a stopped camera
//! leaves a registered gap and recording resumes after it, and footage recorded while storage
//! was unreachable waits in the spool and arrives, in order, once it is back.

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use kordon_camsim::{Camsim, CamsimConfig, CamsimHandle, ClipSource, Codec, Source, StreamKind};
use kordon_ingest::config::{CameraConfig, IngestConfig, Transport};
use kordon_ingest::{Destinations, Ingest};
use kordon_media::SourceKind;
use kordon_objects::{ObjectPath, ObjectStore, ObjectStoreConfig};
use kordon_proto::common::v1 as common;
use kordon_proto::storage::v1 as spb;
use kordon_proto::storage::v1::storage_service_client::StorageServiceClient;
use kordon_runtime::client::{self, ClientOptions};
use support::{free_addr, start_storage};
use tokio_util::sync::CancellationToken;

async fn camsim(cameras: usize) -> CamsimHandle {
    Camsim::start(CamsimConfig {
        cameras,
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
    .expect("camsim starts")
}

/// The object store under test: RGW when the test script started it, else local files.
fn objects_config(dir: &Path) -> (ObjectStoreConfig, String) {
    match std::env::var("KORDON_TEST_S3_ENDPOINT") {
        Ok(endpoint) => {
            let var = |k: &str| std::env::var(k).unwrap_or_else(|_| panic!("{k} must be set"));
            let prefix = format!(
                "ingest-test-{}",
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap()
                    .as_nanos()
            );
            (
                ObjectStoreConfig::S3 {
                    bucket: var("KORDON_TEST_S3_BUCKET"),
                    endpoint: Some(endpoint),
                    region: var("KORDON_TEST_S3_REGION"),
                    access_key_id: Some(var("KORDON_TEST_S3_ACCESS_KEY_ID")),
                    secret_access_key: Some(var("KORDON_TEST_S3_SECRET_ACCESS_KEY")),
                    allow_http: true,
                    object_lock: None,
                },
                prefix,
            )
        }
        Err(_) => {
            assert!(
                std::env::var("CI").is_err(),
                "CI must run this against Ceph RGW: KORDON_TEST_S3_ENDPOINT is not set"
            );
            eprintln!("note: KORDON_TEST_S3_ENDPOINT not set; recording to local files");
            (
                ObjectStoreConfig::Local {
                    root: dir.join("media"),
                },
                String::new(),
            )
        }
    }
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

fn start_ingest(
    dir: &Path,
    objects: Arc<dyn ObjectStore>,
    prefix: &str,
    storage: SocketAddr,
    shutdown: CancellationToken,
) -> Arc<Ingest> {
    let config = IngestConfig {
        segment_duration: Duration::from_secs(2),
        stall_timeout: Duration::from_secs(3),
        spool_max_bytes: 512 * 1024 * 1024,
        ..IngestConfig::default()
    };
    Ingest::start(
        config,
        dir,
        Destinations {
            objects,
            // Segments are copied into the store (the path a bucket takes); the uploader tests
            // cover the local store's links.
            local_objects: None,
            object_prefix: prefix.to_string(),
            storage: storage_client(storage),
        },
        shutdown,
    )
    .unwrap()
}

fn camera(sim: &CamsimHandle, index: usize, name: &str) -> CameraConfig {
    CameraConfig {
        site: "edirne".into(),
        name: name.into(),
        record: sim.url(index, StreamKind::Main).unwrap(),
        detect: None,
        transport: Transport::Tcp,
        username: None,
        password: None,
        segment_duration: None,
    }
}

fn us(t: &prost_types::Timestamp) -> i64 {
    t.seconds * 1_000_000 + i64::from(t.nanos) / 1000
}

fn audit() -> Option<common::AuditContext> {
    Some(common::AuditContext {
        reason: "ingest integration test".into(),
        case_id: "TEST-1".into(),
        recipient: String::new(),
    })
}

async fn segments(addr: SocketAddr, name: &str) -> Vec<spb::Segment> {
    let mut c = storage_client(addr);
    let mut out = Vec::new();
    let mut token = String::new();
    loop {
        let resp = c
            .list_segments(spb::ListSegmentsRequest {
                camera: Some(common::CameraRef {
                    site: "edirne".into(),
                    camera: name.into(),
                }),
                range: Some(common::TimeRange {
                    start: Some(prost_types::Timestamp {
                        seconds: 0,
                        nanos: 0,
                    }),
                    end: None,
                }),
                audit: audit(),
                page: Some(common::PageRequest {
                    page_size: 1000,
                    page_token: token.clone(),
                }),
            })
            .await
            .unwrap()
            .into_inner();
        out.extend(resp.segments);
        token = resp.page.map(|p| p.next_page_token).unwrap_or_default();
        if token.is_empty() {
            return out;
        }
    }
}

async fn recordings(addr: SocketAddr, name: &str) -> Vec<spb::RecordingRange> {
    storage_client(addr)
        .list_recordings(spb::ListRecordingsRequest {
            scope: Some(spb::list_recordings_request::Scope::Camera(
                common::CameraRef {
                    site: "edirne".into(),
                    camera: name.into(),
                },
            )),
            range: Some(common::TimeRange {
                start: Some(prost_types::Timestamp {
                    seconds: 0,
                    nanos: 0,
                }),
                end: None,
            }),
            audit: audit(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .ranges
}

/// Every segment's object hashes to the registered SHA-256, and decodes with ffprobe as 1080p
/// H.264 whose frame count matches the registered duration at 25 fps.
async fn check_objects(objects: &Arc<dyn ObjectStore>, segs: &[spb::Segment], dir: &Path) {
    for (i, s) in segs.iter().enumerate() {
        let key = ObjectPath::from(s.object_key.as_str());
        let bytes = kordon_objects::ObjectStoreExt::get(&**objects, &key)
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(bytes.len() as u64, s.size_bytes);
        assert_eq!(
            kordon_objects::sha256(&bytes).to_vec(),
            s.sha256,
            "segment {i} hash"
        );
        let file = dir.join(format!("probe-{i}.mp4"));
        std::fs::write(&file, &bytes).unwrap();
        let out = std::process::Command::new("ffprobe")
            .args([
                "-v",
                "error",
                "-count_frames",
                "-show_entries",
                "stream=codec_name,width,height,nb_read_frames",
                "-of",
                "csv=p=0",
            ])
            .arg(&file)
            .output()
            .expect("ffprobe runs");
        assert!(out.status.success(), "ffprobe failed on segment {i}");
        let text = String::from_utf8_lossy(&out.stdout);
        let fields: Vec<&str> = text.trim().split(',').collect();
        assert_eq!(
            &fields[..3],
            ["h264", "1920", "1080"],
            "segment {i}: {text}"
        );
        let frames: i64 = fields[3].parse().unwrap();
        let r = s.range.as_ref().unwrap();
        let dur_us = us(r.end.as_ref().unwrap()) - us(r.start.as_ref().unwrap());
        assert_eq!(
            frames,
            (dur_us as f64 / 40_000.0).round() as i64,
            "segment {i} frames vs duration"
        );
    }
}

fn assert_contiguous(segs: &[spb::Segment]) {
    for w in segs.windows(2) {
        let a = us(w[0].range.as_ref().unwrap().end.as_ref().unwrap());
        let b = us(w[1].range.as_ref().unwrap().start.as_ref().unwrap());
        assert!(
            (a - b).abs() <= 1,
            "segments not contiguous: end {a} vs next start {b}"
        );
    }
}

async fn wait_for<F: Fn() -> Fut, Fut: Future<Output = bool>>(what: &str, timeout: Duration, f: F) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_hashes_and_registers_gaps() {
    let dir = tempfile::tempdir().unwrap();
    let (objects_cfg, prefix) = objects_config(dir.path());
    let objects = kordon_objects::build(&objects_cfg).unwrap();
    let sim = camsim(2).await;
    let storage = start_storage(dir.path(), &objects_cfg, &prefix, free_addr()).await;
    let shutdown = CancellationToken::new();
    let ingest = start_ingest(
        dir.path(),
        objects.clone(),
        &prefix,
        storage.addr,
        shutdown.clone(),
    );
    ingest
        .apply(
            vec![camera(&sim, 1, "gate-1"), camera(&sim, 2, "gate-2")],
            true,
        )
        .unwrap();

    wait_for("3 segments of gate-1", Duration::from_secs(40), || async {
        segments(storage.addr, "gate-1").await.len() >= 3
    })
    .await;

    // Camera 1 goes away for 5 s, then comes back.
    sim.stop_camera(1).unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    sim.start_camera(1).unwrap();
    let back_us = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64;
    let before = segments(storage.addr, "gate-1").await.len();
    wait_for(
        "gate-1 recording again",
        Duration::from_secs(30),
        || async { segments(storage.addr, "gate-1").await.len() >= before + 2 },
    )
    .await;

    shutdown.cancel();
    ingest.stopped().await;

    let gate1 = segments(storage.addr, "gate-1").await;
    let gate2 = segments(storage.addr, "gate-2").await;
    assert_contiguous(&gate2);
    check_objects(&objects, &gate1, dir.path()).await;
    check_objects(&objects, &gate2, dir.path()).await;

    // The outage is a gap with a reason, between two recorded ranges.
    let ranges = recordings(storage.addr, "gate-1").await;
    let kinds: Vec<i32> = ranges.iter().map(|r| r.kind).collect();
    let gaps: Vec<&spb::RecordingRange> = ranges
        .iter()
        .filter(|r| r.kind == spb::RecordingRangeKind::Gap as i32)
        .collect();
    assert!(!gaps.is_empty(), "a gap is listed: {kinds:?}");
    let gap = gaps[0];
    assert_eq!(gap.gap_reason, spb::GapReason::StreamLost as i32, "{gap:?}");
    let gap_range = gap.range.as_ref().unwrap();
    let gap_len = us(gap_range.end.as_ref().unwrap()) - us(gap_range.start.as_ref().unwrap());
    assert!(
        (4_000_000..=15_000_000).contains(&gap_len),
        "gap covers the 5 s outage: {gap_len} µs"
    );
    let resumed_after = us(gap_range.end.as_ref().unwrap()) - back_us;
    eprintln!(
        "gate-1: outage gap {:.2}s, recording resumed {:.2}s after the camera returned",
        gap_len as f64 / 1e6,
        resumed_after as f64 / 1e6
    );
    assert!(
        resumed_after < 5_000_000,
        "resumed {resumed_after} µs after return"
    );

    storage.stop().await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn footage_waits_in_the_spool_while_storage_is_down() {
    let dir = tempfile::tempdir().unwrap();
    let (objects_cfg, prefix) = objects_config(dir.path());
    let objects = kordon_objects::build(&objects_cfg).unwrap();
    let sim = camsim(1).await;
    // Storage is not running yet: nothing listens on its address.
    let storage_addr = free_addr();
    let shutdown = CancellationToken::new();
    let ingest = start_ingest(
        dir.path(),
        objects.clone(),
        &prefix,
        storage_addr,
        shutdown.clone(),
    );
    ingest.apply(vec![camera(&sim, 1, "gate-1")], true).unwrap();

    // The recorder's resume point, then 3 segments.
    wait_for("3 spooled segments", Duration::from_secs(40), || async {
        ingest.spool().pending() >= 4
    })
    .await;
    let status = ingest.board().get("edirne", "gate-1").unwrap();
    assert!(
        status.last_error.is_some(),
        "status says why footage is not stored"
    );

    let storage = start_storage(dir.path(), &objects_cfg, &prefix, storage_addr).await;
    wait_for("spool drained", Duration::from_secs(60), || async {
        ingest.spool().pending() <= 1
    })
    .await;
    shutdown.cancel();
    ingest.stopped().await;
    assert_eq!(
        ingest.spool().pending(),
        0,
        "everything stored after shutdown"
    );

    let segs = segments(storage.addr, "gate-1").await;
    assert!(segs.len() >= 3, "{} segments", segs.len());
    assert_contiguous(&segs);
    let seqs: Vec<u64> = segs
        .iter()
        .map(|s| s.link.as_ref().unwrap().sequence)
        .collect();
    let mut sorted = seqs.clone();
    sorted.sort();
    assert_eq!(seqs, sorted, "registered in recording order");
    check_objects(&objects, &segs, dir.path()).await;
    storage.stop().await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_after_a_pause_is_a_gap_also_when_storage_comes_up_later() {
    let dir = tempfile::tempdir().unwrap();
    let (objects_cfg, prefix) = objects_config(dir.path());
    let objects = kordon_objects::build(&objects_cfg).unwrap();
    let sim = camsim(1).await;
    let storage = start_storage(dir.path(), &objects_cfg, &prefix, free_addr()).await;
    let addr = storage.addr;

    // First run, with storage.
    let shutdown = CancellationToken::new();
    let ingest = start_ingest(dir.path(), objects.clone(), &prefix, addr, shutdown.clone());
    ingest.apply(vec![camera(&sim, 1, "gate-1")], true).unwrap();
    wait_for(
        "2 segments of the first run",
        Duration::from_secs(40),
        || async { segments(addr, "gate-1").await.len() >= 2 },
    )
    .await;
    shutdown.cancel();
    ingest.stopped().await;
    let first_run = segments(addr, "gate-1").await;
    let first_end = us(first_run
        .last()
        .unwrap()
        .range
        .as_ref()
        .unwrap()
        .end
        .as_ref()
        .unwrap());
    storage.stop().await;

    // A pause, then ingest starts again while storage is still down.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let shutdown = CancellationToken::new();
    let ingest = start_ingest(dir.path(), objects.clone(), &prefix, addr, shutdown.clone());
    ingest.apply(vec![camera(&sim, 1, "gate-1")], true).unwrap();
    wait_for("a spooled segment", Duration::from_secs(40), || async {
        ingest.spool().pending() >= 2
    })
    .await;
    let storage = start_storage(dir.path(), &objects_cfg, &prefix, addr).await;
    wait_for("the second run stored", Duration::from_secs(60), || async {
        segments(addr, "gate-1").await.len() >= first_run.len() + 2
    })
    .await;
    shutdown.cancel();
    ingest.stopped().await;

    let all = segments(addr, "gate-1").await;
    let second_start = all
        .iter()
        .map(|s| us(s.range.as_ref().unwrap().start.as_ref().unwrap()))
        .find(|&t| t > first_end)
        .unwrap();
    // The pause is a hole. Its length on the recorded timeline follows the camera's clock
    // (its RTCP sender reports), which a loaded machine makes jitter by up to a second or so
    // against the 3 s slept here: the tiling below is the test, not the length.
    assert!(
        second_start > first_end,
        "the pause is a hole: the second run starts {} µs after the first ends",
        second_start - first_end
    );
    let mut spans: Vec<(i64, i64)> = all
        .iter()
        .map(|s| {
            let r = s.range.as_ref().unwrap();
            (us(r.start.as_ref().unwrap()), us(r.end.as_ref().unwrap()))
        })
        .collect();
    spans.sort();
    for w in spans.windows(2) {
        assert!(w[0].1 <= w[1].0, "segments overlap: {w:?}");
    }
    // Between the runs: registered gaps (shutdown, then restart) that tile the hole exactly,
    // nothing unexplained.
    let between: Vec<spb::RecordingRange> = recordings(addr, "gate-1")
        .await
        .into_iter()
        .filter(|r| {
            let start = us(r.range.as_ref().unwrap().start.as_ref().unwrap());
            start >= first_end && start < second_start
        })
        .collect();
    assert!(!between.is_empty());
    let mut at = first_end;
    for r in &between {
        let range = r.range.as_ref().unwrap();
        assert_eq!(r.kind, spb::RecordingRangeKind::Gap as i32, "{between:?}");
        assert_eq!(
            r.gap_reason,
            spb::GapReason::IngestRestart as i32,
            "{between:?}"
        );
        assert_eq!(us(range.start.as_ref().unwrap()), at, "{between:?}");
        at = us(range.end.as_ref().unwrap());
    }
    assert_eq!(
        at, second_start,
        "the gaps reach the second run: {between:?}"
    );
    assert!(
        between.last().unwrap().gap_detail.contains("unreachable"),
        "{between:?}"
    );
    storage.stop().await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cameras_change_at_run_time_without_disturbing_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let (objects_cfg, prefix) = objects_config(dir.path());
    let objects = kordon_objects::build(&objects_cfg).unwrap();
    let sim = camsim(3).await;
    let storage = start_storage(dir.path(), &objects_cfg, &prefix, free_addr()).await;
    let shutdown = CancellationToken::new();
    let ingest = start_ingest(
        dir.path(),
        objects.clone(),
        &prefix,
        storage.addr,
        shutdown.clone(),
    );
    let steady = camera(&sim, 1, "steady");
    let moved = camera(&sim, 2, "moved");
    ingest
        .apply(vec![steady.clone(), moved.clone()], true)
        .unwrap();
    wait_for("both recording", Duration::from_secs(40), || async {
        segments(storage.addr, "steady").await.len() >= 2
            && segments(storage.addr, "moved").await.len() >= 2
    })
    .await;

    // Change one camera's URL, add a third, keep the first untouched.
    let mut moved_now = moved.clone();
    moved_now.record = sim.url(3, StreamKind::Main).unwrap();
    let mut added = camera(&sim, 3, "added");
    added.record = sim.url(3, StreamKind::Sub).unwrap();
    let outcomes = ingest
        .apply(vec![steady.clone(), moved_now, added], true)
        .unwrap();
    let names: Vec<(String, kordon_ingest::ApplyOutcome)> =
        outcomes.into_iter().map(|(c, o)| (c.name, o)).collect();
    assert!(names.contains(&("steady".into(), kordon_ingest::ApplyOutcome::Unchanged)));
    assert!(names.contains(&("moved".into(), kordon_ingest::ApplyOutcome::Updated)));
    assert!(names.contains(&("added".into(), kordon_ingest::ApplyOutcome::Created)));

    // Generations: a newer generation is held and reported (the same spec leaves the camera
    // untouched), an older one is ignored.
    let out = ingest
        .apply_generations(vec![(steady.clone(), 7)], false)
        .unwrap();
    assert_eq!(out[0].1, kordon_ingest::ApplyOutcome::Unchanged);
    let out = ingest
        .apply_generations(vec![(steady.clone(), 6)], false)
        .unwrap();
    assert_eq!(out[0].1, kordon_ingest::ApplyOutcome::Stale);
    assert_eq!(
        ingest.board().get("edirne", "steady").map(|s| s.generation),
        Some(7)
    );
    wait_for(
        "added camera recording",
        Duration::from_secs(40),
        || async { segments(storage.addr, "added").await.len() >= 2 },
    )
    .await;

    // Remove one: its open segment is stored, the others go on.
    assert!(ingest.remove("edirne", "added"));
    tokio::time::sleep(Duration::from_secs(3)).await;
    shutdown.cancel();
    ingest.stopped().await;

    let steady_segs = segments(storage.addr, "steady").await;
    assert_contiguous(&steady_segs);
    let steady_ranges = recordings(storage.addr, "steady").await;
    let last_end = us(steady_segs
        .last()
        .unwrap()
        .range
        .as_ref()
        .unwrap()
        .end
        .as_ref()
        .unwrap());
    // Shutdown itself is recorded as a gap after the last segment; before it, nothing.
    assert!(
        steady_ranges
            .iter()
            .all(|r| r.kind != spb::RecordingRangeKind::Gap as i32
                || us(r.range.as_ref().unwrap().start.as_ref().unwrap()) >= last_end),
        "the untouched camera has no gap while recording: {steady_ranges:?}"
    );
    // The reconfigured camera has a gap for its restart, recorded with that reason.
    let moved_ranges = recordings(storage.addr, "moved").await;
    let gap = moved_ranges
        .iter()
        .find(|r| r.kind == spb::RecordingRangeKind::Gap as i32);
    if let Some(g) = gap {
        assert_eq!(g.gap_reason, spb::GapReason::IngestRestart as i32, "{g:?}");
    }
    // The sub stream of camera 3 was recorded at its own size.
    let added_segs = segments(storage.addr, "added").await;
    assert!(added_segs.iter().all(|s| s.width == 640 && s.height == 360));
    storage.stop().await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h265_is_recorded_without_reencoding() {
    let dir = tempfile::tempdir().unwrap();
    let (objects_cfg, prefix) = objects_config(dir.path());
    let objects = kordon_objects::build(&objects_cfg).unwrap();
    let sim = Camsim::start(CamsimConfig {
        cameras: 1,
        listen: "127.0.0.1:0".parse().unwrap(),
        control_listen: None,
        codec: Codec::H265,
        source: Source::Clip,
        clip: ClipSource::Embedded,
        cache_dir: kordon_camsim::default_cache_dir(),
        bframes: 0,
        refuse_tcp: false,
    })
    .await
    .unwrap();
    let storage = start_storage(dir.path(), &objects_cfg, &prefix, free_addr()).await;
    let shutdown = CancellationToken::new();
    let ingest = start_ingest(
        dir.path(),
        objects.clone(),
        &prefix,
        storage.addr,
        shutdown.clone(),
    );
    ingest.apply(vec![camera(&sim, 1, "hevc")], true).unwrap();
    wait_for("H.265 segments", Duration::from_secs(60), || async {
        segments(storage.addr, "hevc").await.len() >= 2
    })
    .await;
    shutdown.cancel();
    ingest.stopped().await;
    let segs = segments(storage.addr, "hevc").await;
    for (i, s) in segs.iter().enumerate() {
        assert_eq!(s.codec, common::VideoCodec::H265 as i32);
        let bytes = kordon_objects::ObjectStoreExt::get(
            &*objects,
            &ObjectPath::from(s.object_key.as_str()),
        )
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
        assert_eq!(kordon_objects::sha256(&bytes).to_vec(), s.sha256);
        let file = dir.path().join(format!("hevc-{i}.mp4"));
        std::fs::write(&file, &bytes).unwrap();
        let out = std::process::Command::new("ffprobe")
            .args([
                "-v",
                "error",
                "-show_entries",
                "stream=codec_name,width,height",
                "-of",
                "csv=p=0",
            ])
            .arg(&file)
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "hevc,1920,1080"
        );
    }
    storage.stop().await;
    sim.shutdown().await;
}

/// What one camera recorded, and its status just before ingest stopped.
struct Recorded {
    dir: tempfile::TempDir,
    objects: Arc<dyn ObjectStore>,
    segments: Vec<spb::Segment>,
    status: kordon_ingest::status::CameraStatus,
}

/// Records camera 1 of a simulator started with `config` until `count` segments are registered.
async fn record_camera(config: CamsimConfig, transport: Transport, count: usize) -> Recorded {
    let dir = tempfile::tempdir().unwrap();
    let (objects_cfg, prefix) = objects_config(dir.path());
    let objects = kordon_objects::build(&objects_cfg).unwrap();
    let sim = Camsim::start(config).await.unwrap();
    let storage = start_storage(dir.path(), &objects_cfg, &prefix, free_addr()).await;
    let shutdown = CancellationToken::new();
    let ingest = start_ingest(
        dir.path(),
        objects.clone(),
        &prefix,
        storage.addr,
        shutdown.clone(),
    );
    let mut cam = camera(&sim, 1, "cam");
    cam.transport = transport;
    ingest.apply(vec![cam], true).unwrap();
    wait_for("segments", Duration::from_secs(90), || async {
        segments(storage.addr, "cam").await.len() >= count
    })
    .await;
    let status = ingest.board().get("edirne", "cam").unwrap();
    shutdown.cancel();
    ingest.stopped().await;
    let segments = segments(storage.addr, "cam").await;
    storage.stop().await;
    sim.shutdown().await;
    Recorded {
        dir,
        objects,
        segments,
        status,
    }
}

fn sim_config(codec: Codec, bframes: u32, refuse_tcp: bool) -> CamsimConfig {
    CamsimConfig {
        cameras: 1,
        listen: "127.0.0.1:0".parse().unwrap(),
        control_listen: None,
        codec,
        source: Source::Clip,
        clip: ClipSource::Embedded,
        cache_dir: kordon_camsim::default_cache_dir(),
        bframes,
        refuse_tcp,
    }
}

/// A camera with B-frames: every frame of every segment decodes, as many as the segment's
/// registered duration holds, and is shown in presentation order one frame interval apart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b_frames_are_recorded_in_decode_order_and_shown_in_presentation_order() {
    let rec = record_camera(sim_config(Codec::H264, 2, false), Transport::Tcp, 3).await;
    assert_eq!(rec.status.source, Some(SourceKind::Retina));
    assert_eq!(rec.status.transport, Some(Transport::Tcp));
    check_objects(&rec.objects, &rec.segments, rec.dir.path()).await;
    let mut b_frames = 0;
    for (i, s) in rec.segments.iter().enumerate() {
        let file = rec.dir.path().join(format!("probe-{i}.mp4"));
        let out = std::process::Command::new("ffprobe")
            .args([
                "-v",
                "error",
                "-select_streams",
                "v:0",
                "-show_entries",
                "frame=pts,pict_type",
                "-of",
                "csv=p=0",
            ])
            .arg(&file)
            .output()
            .expect("ffprobe runs");
        assert!(out.status.success(), "ffprobe failed on segment {i}");
        let text = String::from_utf8_lossy(&out.stdout);
        let frames: Vec<(i64, String)> = text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                let (pts, kind) = l.split_once(',').unwrap();
                (pts.parse().unwrap(), kind.trim().to_string())
            })
            .collect();
        let r = s.range.as_ref().unwrap();
        let dur_us = us(r.end.as_ref().unwrap()) - us(r.start.as_ref().unwrap());
        assert_eq!(
            frames.len() as i64,
            (dur_us as f64 / 40_000.0).round() as i64,
            "segment {i}: every frame decodes"
        );
        // The last segment was closed by the shutdown, mid-GOP: the B-frames shown before its
        // last anchor come after it in decode order and were never received.
        if i + 1 < rec.segments.len() {
            for w in frames.windows(2) {
                assert_eq!(
                    w[1].0 - w[0].0,
                    3600,
                    "segment {i}: frames shown in order, none missing: {frames:?}"
                );
            }
        }
        b_frames += frames.iter().filter(|f| f.1 == "B").count();
    }
    assert!(b_frames > 0, "the stream really has B-frames");
}

/// A camera that refuses RTP over TCP (461) is recorded over UDP, and says so in its status.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_camera_that_refuses_tcp_is_recorded_over_udp() {
    let rec = record_camera(sim_config(Codec::H264, 0, true), Transport::Tcp, 2).await;
    assert_eq!(rec.status.source, Some(SourceKind::Retina));
    assert_eq!(rec.status.transport, Some(Transport::Udp));
    check_objects(&rec.objects, &rec.segments, rec.dir.path()).await;
}
