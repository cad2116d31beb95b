//! Transcode jobs end to end on real parts: camsim serving the real street clip over RTSP,
//! ingest recording it into segments, the storage service (in process) indexing them, and the
//! transcode service making renditions, thumbnails and viewer copies through its gRPC API —
//! GStreamer decoding and x264 encoding every frame.

#[path = "../../ingest/tests/support/mod.rs"]
mod support;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use bytes::Bytes;
use kordon_camsim::{Camsim, CamsimConfig, ClipSource, Codec, Source, StreamKind};
use kordon_ingest::config::{CameraConfig, IngestConfig};
use kordon_ingest::{Destinations as IngestDestinations, Ingest};
use kordon_media::Transport;
use kordon_objects::{ObjectPath, ObjectStore, ObjectStoreConfig, ObjectStoreExt};
use kordon_proto::common::v1 as common;
use kordon_proto::storage::v1 as spb;
use kordon_proto::storage::v1::storage_service_client::StorageServiceClient;
use kordon_proto::time::timestamp_from_micros;
use kordon_proto::transcode::v1 as pb;
use kordon_proto::transcode::v1::transcode_service_client::TranscodeServiceClient;
use kordon_runtime::admin::Readiness;
use kordon_runtime::client::{self, AuthedChannel, ClientOptions};
use kordon_runtime::config::{AuthConfig, CommonConfig, LogConfig};
use kordon_runtime::server::GrpcServer;
use kordon_transcode::pipeline;
use support::{free_addr, start_storage};
use tokio_util::sync::CancellationToken;

const SITE: &str = "burgas";
const CAMERA: &str = "port-gate";

fn channel(addr: std::net::SocketAddr) -> AuthedChannel {
    client::connect_lazy(&ClientOptions {
        server: format!("http://{addr}"),
        ..Default::default()
    })
    .unwrap()
}

fn cam() -> Option<common::CameraRef> {
    Some(common::CameraRef {
        site: SITE.into(),
        camera: CAMERA.into(),
    })
}

fn audit(reason: &str) -> Option<common::AuditContext> {
    Some(common::AuditContext {
        reason: reason.into(),
        case_id: "BG-TEST-1".into(),
        ..Default::default()
    })
}

fn us(t: &Option<prost_types::Timestamp>) -> i64 {
    t.as_ref()
        .map(|t| t.seconds * 1_000_000 + i64::from(t.nanos) / 1000)
        .unwrap_or(0)
}

/// The segments of the test camera registered so far.
async fn segments(storage: std::net::SocketAddr) -> Vec<spb::Segment> {
    StorageServiceClient::new(channel(storage))
        .list_segments(spb::ListSegmentsRequest {
            camera: cam(),
            range: Some(common::TimeRange {
                start: Some(timestamp_from_micros(0)),
                end: None,
            }),
            audit: audit("transcode test"),
            page: None,
        })
        .await
        .unwrap()
        .into_inner()
        .segments
}

/// Records the real clip into 2-second segments until at least `count` are registered (a
/// deadline, not a fixed time: a loaded machine records as slowly as it must); returns them.
async fn record(
    dir: &Path,
    storage: std::net::SocketAddr,
    objects: Arc<dyn ObjectStore>,
    count: usize,
) -> Vec<spb::Segment> {
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
    .expect("camsim starts");
    let stop = CancellationToken::new();
    let ingest = Ingest::start(
        IngestConfig {
            segment_duration: Duration::from_secs(2),
            ..IngestConfig::default()
        },
        dir,
        IngestDestinations {
            objects,
            local_objects: None,
            object_prefix: String::new(),
            storage: StorageServiceClient::new(channel(storage)),
        },
        stop.clone(),
    )
    .unwrap();
    ingest
        .apply(
            vec![CameraConfig {
                site: SITE.into(),
                name: CAMERA.into(),
                record: sim.url(1, StreamKind::Main).unwrap(),
                detect: None,
                transport: Transport::Tcp,
                username: None,
                password: None,
                segment_duration: None,
            }],
            true,
        )
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(240);
    while segments(storage).await.len() < count {
        assert!(
            tokio::time::Instant::now() < deadline,
            "fewer than {count} segments registered in 240 s"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    stop.cancel();
    ingest.stopped().await;
    sim.shutdown().await;
    segments(storage).await
}

struct Service {
    client: TranscodeServiceClient<AuthedChannel>,
    stop: CancellationToken,
    transcode: Arc<kordon_transcode::Transcode>,
    server: tokio::task::JoinHandle<()>,
}

async fn start(
    dir: &Path,
    storage: std::net::SocketAddr,
    objects: Arc<dyn ObjectStore>,
) -> Service {
    let stop = CancellationToken::new();
    let config = kordon_transcode::TranscodeConfig {
        encoder: kordon_transcode::config::EncoderChoice::Software,
        ..Default::default()
    };
    let transcode = kordon_transcode::Transcode::start(
        config,
        dir,
        "burgas-transcode-0",
        kordon_transcode::Destinations {
            objects,
            object_prefix: String::new(),
            storage: StorageServiceClient::new(channel(storage)),
        },
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
    let server = GrpcServer::new("transcode", &common)
        .unwrap()
        .add_service(kordon_transcode::grpc_service(
            kordon_transcode::TranscodeApi::new(transcode.clone()),
        ))
        .bind(addr)
        .await
        .unwrap();
    let s = stop.clone();
    let server = tokio::spawn(async move { server.serve(Readiness::new(), s).await.unwrap() });
    Service {
        client: TranscodeServiceClient::new(channel(addr)),
        stop,
        transcode,
        server,
    }
}

impl Service {
    async fn stop(self) {
        self.stop.cancel();
        self.transcode.stopped().await;
        self.server.await.unwrap();
    }

    async fn submit(&mut self, spec: pb::job_spec::Kind, request_id: &str) -> pb::Job {
        self.client
            .submit_job(pb::SubmitJobRequest {
                spec: Some(pb::JobSpec { kind: Some(spec) }),
                priority: 0,
                audit: audit("transcode integration test"),
                request_id: request_id.into(),
            })
            .await
            .unwrap()
            .into_inner()
            .job
            .unwrap()
    }

    /// Follows a job to its end through WatchJob; returns the last message.
    async fn wait(&mut self, id: &str) -> pb::Job {
        let mut s = self
            .client
            .watch_job(pb::WatchJobRequest { job_id: id.into() })
            .await
            .unwrap()
            .into_inner();
        let mut last = None;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(600);
        while let Some(m) = tokio::time::timeout_at(deadline, s.message())
            .await
            .expect("job ends within 10 min")
            .unwrap()
        {
            last = m.job;
        }
        last.expect("at least one message")
    }
}

async fn read(objects: &dyn ObjectStore, key: &str) -> Bytes {
    objects
        .get(&ObjectPath::from(key))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap()
}

fn range_of(segs: &[spb::Segment]) -> Option<common::TimeRange> {
    let from = us(&segs.first().unwrap().range.as_ref().unwrap().start);
    let to = us(&segs.last().unwrap().range.as_ref().unwrap().end);
    Some(common::TimeRange {
        start: Some(timestamp_from_micros(from)),
        end: Some(timestamp_from_micros(to)),
    })
}

fn rendition(segs: &[spb::Segment], profile: &str) -> pb::job_spec::Kind {
    pb::job_spec::Kind::Rendition(pb::RenditionSpec {
        camera: cam(),
        range: range_of(segs),
        profile: profile.into(),
        target_bitrate_bps: 300_000,
        max_height: 180,
        ..Default::default()
    })
}

/// Decodes a whole MP4 (one segment or a viewer copy) into BGR pictures.
fn decode(data: Bytes, w: u32, h: u32) -> Vec<pipeline::Picture> {
    let mut out = Vec::new();
    pipeline::decode_segment(data, w, h, &AtomicBool::new(false), |p| {
        out.push(p);
        Ok(true)
    })
    .unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renditions_thumbnails_and_viewer_copies_from_recorded_footage() {
    kordon_media::init().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let objects_cfg = ObjectStoreConfig::Local {
        root: dir.path().join("media"),
    };
    let objects = kordon_objects::build(&objects_cfg).unwrap();
    let storage_server = start_storage(dir.path(), &objects_cfg, "", free_addr()).await;
    let segs = record(dir.path(), storage_server.addr, objects.clone(), 3).await;
    assert!(segs.len() >= 3, "recorded {} segments", segs.len());
    let segs = &segs[..3];
    let mut storage = StorageServiceClient::new(channel(storage_server.addr));
    let mut svc = start(dir.path(), storage_server.addr, objects.clone()).await;

    // The status names the encoders this host has.
    let status = svc
        .client
        .get_status(pb::GetStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(
        status
            .encoders
            .iter()
            .any(|e| e.element == "x264enc" && e.selected),
        "{status:?}"
    );

    // --- A rendition: one output per segment, registered, on the source's timeline.
    let job = svc.submit(rendition(segs, "180p-300k"), "r-1").await;
    let again = svc.submit(rendition(segs, "180p-300k"), "r-1").await;
    assert_eq!(again.id, job.id, "idempotent by request id");
    let done = svc.wait(&job.id).await;
    assert_eq!(done.state, pb::JobState::Succeeded as i32, "{}", done.error);
    assert_eq!(done.outputs.len(), segs.len());
    assert_eq!(done.encoder, "x264enc");
    assert!(done.frames > 0 && done.outputs_sha256.len() == 32);
    let p = done.progress.clone().unwrap();
    assert_eq!(
        (p.done_units, p.total_units),
        (segs.len() as u64, segs.len() as u64)
    );
    let mut original_bytes = 0;
    let mut rendition_bytes = 0;
    for (o, s) in done.outputs.iter().zip(segs) {
        assert_eq!(o.source_sequence, s.link.as_ref().unwrap().sequence);
        let out = read(objects.as_ref(), &o.object_key).await;
        let src = read(objects.as_ref(), &s.object_key).await;
        assert_eq!(kordon_objects::sha256(&out).to_vec(), o.sha256);
        // The rendition continues the original's media timeline.
        assert_eq!(
            pipeline::first_decode_time(&out).map(|(t, ts)| pipeline::to_90k(t, ts)),
            pipeline::first_decode_time(&src).map(|(t, ts)| pipeline::to_90k(t, ts)),
        );
        let pics = decode(out.clone(), 320, 180);
        assert!(
            pics.len() >= 40,
            "a 2 s segment has about 50 pictures, got {}",
            pics.len()
        );
        original_bytes += src.len();
        rendition_bytes += out.len();
    }
    assert!(
        rendition_bytes * 3 < original_bytes,
        "{rendition_bytes} vs {original_bytes}"
    );
    let listed = storage
        .list_renditions(spb::ListRenditionsRequest {
            camera: cam(),
            range: range_of(segs),
            profile: "180p-300k".into(),
            audit: audit("check"),
            page: None,
        })
        .await
        .unwrap()
        .into_inner()
        .renditions;
    assert_eq!(listed.len(), segs.len());
    assert!(
        listed
            .iter()
            .all(|r| r.job_id == job.id && r.width == 320 && r.height == 180)
    );

    // Same spec, another profile name: the same bytes (x264 is deterministic).
    let twin = svc.submit(rendition(segs, "180p-300k-b"), "").await;
    let twin = svc.wait(&twin.id).await;
    assert_eq!(twin.state, pb::JobState::Succeeded as i32, "{}", twin.error);
    assert_eq!(twin.outputs_sha256, done.outputs_sha256);
    // The first profile again: every segment already has one, nothing is encoded.
    let skip = svc.submit(rendition(segs, "180p-300k"), "").await;
    let skip = svc.wait(&skip.id).await;
    assert_eq!(skip.state, pb::JobState::Succeeded as i32);
    assert!(skip.outputs.is_empty() && skip.frames == 0);

    // --- Thumbnails: one JPEG per segment, registered as THUMBNAIL snapshots.
    let th = svc
        .submit(
            pb::job_spec::Kind::Thumbnails(pb::ThumbnailsSpec {
                camera: cam(),
                range: range_of(segs),
                width: 160,
                interval: None,
            }),
            "",
        )
        .await;
    let th = svc.wait(&th.id).await;
    assert_eq!(th.state, pb::JobState::Succeeded as i32, "{}", th.error);
    assert_eq!(th.outputs.len(), segs.len());
    for o in &th.outputs {
        let jpg = read(objects.as_ref(), &o.object_key).await;
        assert_eq!(&jpg[..2], &[0xff, 0xd8], "a JPEG");
    }
    let snaps = storage
        .list_snapshots(spb::ListSnapshotsRequest {
            camera: cam(),
            range: range_of(segs),
            kind: spb::SnapshotKind::Thumbnail as i32,
            audit: audit("check"),
            url_ttl: None,
            page: None,
        })
        .await
        .unwrap()
        .into_inner()
        .snapshots;
    assert_eq!(snaps.len(), segs.len());

    // --- A viewer copy: time burned in, the left third masked; one MP4 over the range.
    let mask = common::Polygon {
        points: vec![
            common::Point { x: 0.0, y: 0.3 },
            common::Point { x: 0.33, y: 0.3 },
            common::Point { x: 0.33, y: 1.0 },
            common::Point { x: 0.0, y: 1.0 },
        ],
    };
    let export = pb::job_spec::Kind::Export(pb::ExportSpec {
        camera: cam(),
        range: range_of(segs),
        burn_in_timestamp: true,
        time_zone: "Europe/Sofia".into(),
        privacy_masks: vec![pb::PrivacyMask { area: Some(mask) }],
        evidence_bundle_id: "test-bundle".into(),
        ..Default::default()
    });
    let ex = svc.submit(export.clone(), "").await;
    let ex = svc.wait(&ex.id).await;
    assert_eq!(ex.state, pb::JobState::Succeeded as i32, "{}", ex.error);
    assert_eq!(ex.outputs.len(), 1);
    let copy = read(objects.as_ref(), &ex.outputs[0].object_key).await;
    let (w, h) = (segs[0].width, segs[0].height);
    let pics = decode(copy.clone(), w, h);
    assert!(
        pics.len() as u64 >= ex.frames - 2 && ex.frames >= 120,
        "{} pictures, {} frames",
        pics.len(),
        ex.frames
    );
    // Inside the mask every block is one colour; outside, the picture keeps its detail.
    let p = &pics[pics.len() / 2];
    let px = |x: u32, y: u32| {
        let i = ((y * p.width + x) * 3) as usize;
        [p.bgr[i], p.bgr[i + 1], p.bgr[i + 2]]
    };
    let block = kordon_transcode::overlay::block_size(w);
    let (bx, by) = (block * 2, (h / 2 / block) * block);
    let inside: Vec<[u8; 3]> = (0..block - 2).map(|d| px(bx + 1 + d, by + 1 + d)).collect();
    let spread = |v: &[[u8; 3]]| {
        v.iter().map(|c| c[1] as i32).max().unwrap() - v.iter().map(|c| c[1] as i32).min().unwrap()
    };
    assert!(
        spread(&inside) <= 12,
        "the mask is flat inside a block: {inside:?}"
    );
    // The same spec again makes the same file.
    let ex2 = svc.submit(export, "").await;
    let ex2 = svc.wait(&ex2.id).await;
    assert_eq!(ex2.outputs_sha256, ex.outputs_sha256);

    // --- Cancelling a job that is queued behind a running one.
    let long = svc.submit(rendition(segs, "180p-cancel"), "").await;
    let c = svc
        .client
        .cancel_job(pb::CancelJobRequest {
            job_id: long.id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .job
        .unwrap();
    let c = if c.state == pb::JobState::Running as i32 {
        svc.wait(&c.id).await
    } else {
        c
    };
    assert_eq!(c.state, pb::JobState::Cancelled as i32);
    let err = svc
        .client
        .cancel_job(pb::CancelJobRequest {
            job_id: done.id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);

    // --- A job without a reason, and with a bad spec, is refused and not queued.
    let before = svc
        .client
        .list_jobs(pb::ListJobsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .jobs
        .len();
    let e = svc
        .client
        .submit_job(pb::SubmitJobRequest {
            spec: Some(pb::JobSpec {
                kind: Some(rendition(segs, "x")),
            }),
            audit: None,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(e.message().contains("audit.reason"), "{}", e.message());
    let e = svc
        .client
        .submit_job(pb::SubmitJobRequest {
            spec: Some(pb::JobSpec {
                kind: Some(rendition(segs, "Bad Profile")),
            }),
            audit: audit("x"),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(
        e.message().contains("spec.rendition.profile"),
        "{}",
        e.message()
    );
    let after = svc
        .client
        .list_jobs(pb::ListJobsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .jobs
        .len();
    assert_eq!(before, after);

    // --- An altered original: the job fails naming it, and writes nothing.
    let victim = &segs[1];
    let path = dir.path().join("media").join(&victim.object_key);
    let mut bytes = std::fs::read(&path).unwrap();
    let n = bytes.len();
    bytes[n - 100] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();
    let bad = svc.submit(rendition(segs, "180p-after-tamper"), "").await;
    let bad = svc.wait(&bad.id).await;
    assert_eq!(bad.state, pb::JobState::Failed as i32);
    assert!(
        bad.error.contains("does not match the SHA-256"),
        "{}",
        bad.error
    );

    svc.stop().await;
    storage_server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_job_resumes_and_ends_with_the_same_bytes() {
    kordon_media::init().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let objects_cfg = ObjectStoreConfig::Local {
        root: dir.path().join("media"),
    };
    let objects = kordon_objects::build(&objects_cfg).unwrap();
    let storage_server = start_storage(dir.path(), &objects_cfg, "", free_addr()).await;
    let segs = record(dir.path(), storage_server.addr, objects.clone(), 4).await;
    assert!(segs.len() >= 4, "recorded {} segments", segs.len());
    let segs = &segs[..4];
    let export = |id: &str| {
        pb::job_spec::Kind::Export(pb::ExportSpec {
            camera: cam(),
            range: range_of(segs),
            burn_in_timestamp: true,
            evidence_bundle_id: id.into(),
            ..Default::default()
        })
    };

    // Uninterrupted, for reference.
    let mut svc = start(&dir.path().join("a"), storage_server.addr, objects.clone()).await;
    let reference = svc.submit(export("a"), "").await;
    let reference = svc.wait(&reference.id).await;
    assert_eq!(
        reference.state,
        pb::JobState::Succeeded as i32,
        "{}",
        reference.error
    );
    svc.stop().await;

    // Interrupted after its first unit: the process stops (as on SIGTERM), the job goes back
    // to the queue, and a new process finishes it from where it was.
    let data = dir.path().join("b");
    let mut svc = start(&data, storage_server.addr, objects.clone()).await;
    let job = svc.submit(export("a"), "").await;
    loop {
        let j = svc
            .client
            .get_job(pb::GetJobRequest {
                job_id: job.id.clone(),
            })
            .await
            .unwrap()
            .into_inner()
            .job
            .unwrap();
        if j.progress.as_ref().unwrap().done_units >= 1 {
            break;
        }
        assert!(j.state() as i32 <= pb::JobState::Running as i32, "{j:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    svc.stop().await;
    let mut svc = start(&data, storage_server.addr, objects.clone()).await;
    let resumed = svc.wait(&job.id).await;
    assert_eq!(
        resumed.state,
        pb::JobState::Succeeded as i32,
        "{}",
        resumed.error
    );
    assert!(resumed.progress.as_ref().unwrap().done_units == 4);
    assert_eq!(
        resumed.outputs_sha256, reference.outputs_sha256,
        "resumed = uninterrupted"
    );
    assert_eq!(resumed.attempts, 1, "a shutdown does not use up an attempt");
    svc.stop().await;
    storage_server.stop().await;
}
