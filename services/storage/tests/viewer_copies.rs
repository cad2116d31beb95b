//! Evidence bundles with viewer copies (`ExportEvidence` with `rendering`): storage asks the
//! transcode service for one export job per camera — here an in-process kordon.transcode.v1
//! server that writes its output into the bucket like the real one — and packs each copy
//! beside the untouched originals. The bundle verifies offline, reports the copies apart, and a
//! tampered copy is named; a failed job fails the bundle naming the job's error, and a retry
//! re-attaches to the job; without a transcode service the export is refused; a copy whose
//! bytes do not match what its maker reported never ships. Run on SQLite + local files
//! always, and on PostgreSQL + S3 (Ceph RGW) when their variables are set.

mod support;

use std::collections::HashMap;
use std::io::Read;
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use kordon_objects::{ObjectStore, ObjectStoreExt};
use kordon_proto::common::v1 as common;
use kordon_proto::common::v1::{AuditContext, CameraRef, TimeRange};
use kordon_proto::storage::v1 as pb;
use kordon_proto::transcode::v1 as tpb;
use kordon_proto::transcode::v1::transcode_service_server::{
    TranscodeService, TranscodeServiceServer,
};
use kordon_storage::evidence::{self, BundleReport, MANIFEST_FILE, Manifest};
use kordon_storage::service::Progress;
use kordon_storage::viewer::{ViewerCopies, ViewerCopy, ViewerCopyRequest};
use kordon_storage::{Storage, StorageError};
use prost_types::Timestamp;
use support::*;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

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

fn cam(c: &str) -> CameraRef {
    CameraRef {
        site: SITE.into(),
        camera: c.into(),
    }
}

fn case() -> Option<AuditContext> {
    Some(AuditContext {
        reason: "smuggling investigation".into(),
        case_id: "BG-2026-0142".into(),
        recipient: "Burgas District Prosecutor".into(),
    })
}

fn polygon(points: &[(f32, f32)]) -> common::Polygon {
    common::Polygon {
        points: points
            .iter()
            .map(|&(x, y)| common::Point { x, y })
            .collect(),
    }
}

/// Burned-in time (Sofia) and two masks on gate-3.
fn rendering() -> pb::ExportRendering {
    pb::ExportRendering {
        burn_in_timestamp: true,
        time_zone: "Europe/Sofia".into(),
        privacy_masks: vec![pb::CameraPrivacyMasks {
            camera: Some(cam(CAMERA)),
            masks: vec![
                polygon(&[(0.0, 0.0), (0.3, 0.0), (0.3, 0.2)]),
                polygon(&[(0.5, 0.5), (0.9, 0.5), (0.9, 0.9), (0.5, 0.9)]),
            ],
        }],
        blur_people: false,
    }
}

fn verify(bytes: &[u8], key: [u8; 32]) -> BundleReport {
    let trusted = [evidence::TrustedKey {
        key,
        label: "burgas".into(),
    }];
    evidence::verify_bundle(bytes, &trusted, &mut |_| {}).unwrap()
}

/// The archive's file `path`.
fn file(tar_bytes: &[u8], path: &str) -> Vec<u8> {
    let mut ar = tar::Archive::new(tar_bytes);
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        if e.path().unwrap().to_string_lossy() == path {
            let mut out = Vec::new();
            e.read_to_end(&mut out).unwrap();
            return out;
        }
    }
    panic!("no `{path}` in the archive")
}

/// The archive with one byte of `path` flipped.
fn flipped(tar_bytes: &[u8], path: &str) -> Vec<u8> {
    let mut ar = tar::Archive::new(tar_bytes);
    let mut out = tar::Builder::new(Vec::new());
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let p = e.path().unwrap().to_string_lossy().into_owned();
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        if p == path {
            let mid = data.len() / 2;
            data[mid] ^= 1;
        }
        let mut h = e.header().clone();
        out.append_data(&mut h, &p, data.as_slice()).unwrap();
    }
    out.into_inner().unwrap()
}

/// Runs ExportEvidence to its end: (progress stages, the final bundle or the error).
async fn export(
    client: &mut pb::storage_service_client::StorageServiceClient<tonic::transport::Channel>,
    req: pb::ExportEvidenceRequest,
) -> (Vec<String>, Result<pb::EvidenceBundle, Status>) {
    let mut stream = match client.export_evidence(req).await {
        Ok(s) => s.into_inner(),
        Err(e) => return (vec![], Err(e)),
    };
    let mut stages = Vec::new();
    while let Some(msg) = stream.next().await {
        match msg {
            Ok(m) => match m.event {
                Some(pb::export_evidence_response::Event::Progress(p)) => stages.push(p.stage),
                Some(pb::export_evidence_response::Event::Bundle(b)) => return (stages, Ok(b)),
                None => panic!("an empty message"),
            },
            Err(e) => return (stages, Err(e)),
        }
    }
    panic!("the stream ended without a bundle")
}

async fn download(running: &Running, client_bundle: &str) -> Vec<u8> {
    let mut client = running.client().await;
    let got = client
        .get_evidence_bundle(pb::GetEvidenceBundleRequest {
            bundle_id: client_bundle.to_string(),
            audit: case(),
            url_ttl: None,
        })
        .await
        .unwrap()
        .into_inner();
    let url = got.download.unwrap().url;
    let path = url.split_once(&running.http.to_string()).unwrap().1;
    let (status, _, archive) = http_get(running.http, path, None).await;
    assert_eq!(status, 200);
    archive
}

/// Registers `n` 2-second segments of `camera` from `base`.
async fn record(storage: &Storage, camera: &str, base: i64, n: u64) {
    for i in 0..n {
        let start = base + i as i64 * 2 * SEC;
        let s = put_segment(
            storage.objects().as_ref(),
            camera,
            start,
            start + 2 * SEC,
            fake_bytes(base as u64 ^ (i + 1), 3000),
            100,
        )
        .await;
        storage.register_segment(&s).await.unwrap();
    }
}

// ---------------------------------------------------------------------------------------------
// A transcode service: kordon.transcode.v1 in process
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq)]
enum Outcome {
    /// Writes `burgas/<camera>/exports/<job>.mp4` and succeeds.
    Succeed,
    /// Fails with "decoder error in segment 3".
    Fail,
}

#[derive(Clone)]
struct FakeTranscode {
    objects: Arc<dyn ObjectStore>,
    outcome: Outcome,
    /// Every SubmitJob request, in order.
    submitted: Arc<Mutex<Vec<tpb::SubmitJobRequest>>>,
    /// Jobs by request id (idempotent) and by id.
    jobs: Arc<Mutex<HashMap<String, tpb::Job>>>,
}

impl FakeTranscode {
    fn new(objects: Arc<dyn ObjectStore>, outcome: Outcome) -> Self {
        Self {
            objects,
            outcome,
            submitted: Default::default(),
            jobs: Default::default(),
        }
    }

    fn submitted(&self) -> Vec<tpb::SubmitJobRequest> {
        self.submitted.lock().unwrap().clone()
    }

    /// Serves it on a loopback port; returns its URL.
    async fn serve(&self) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let svc = TranscodeServiceServer::new(self.clone());
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(svc)
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        format!("http://{addr}")
    }
}

#[tonic::async_trait]
impl TranscodeService for FakeTranscode {
    async fn submit_job(
        &self,
        req: Request<tpb::SubmitJobRequest>,
    ) -> Result<Response<tpb::SubmitJobResponse>, Status> {
        let r = req.into_inner();
        self.submitted.lock().unwrap().push(r.clone());
        if let Some(job) = self.jobs.lock().unwrap().get(&r.request_id) {
            return Ok(Response::new(tpb::SubmitJobResponse {
                job: Some(job.clone()),
            }));
        }
        let Some(tpb::job_spec::Kind::Export(spec)) = r.spec.as_ref().and_then(|s| s.kind.clone())
        else {
            return Err(Status::invalid_argument("spec: an export, please"));
        };
        let camera = spec.camera.clone().unwrap();
        let id = format!("job-{}", self.submitted.lock().unwrap().len());
        let mut job = tpb::Job {
            id: id.clone(),
            spec: r.spec.clone(),
            state: tpb::JobState::Queued as i32,
            audit: r.audit.clone(),
            encoder: "x264enc".into(),
            ..Default::default()
        };
        match self.outcome {
            Outcome::Succeed => {
                let bytes = format!(
                    "viewer copy of {}/{} by {id}: {} masks, time zone {}",
                    camera.site,
                    camera.camera,
                    spec.privacy_masks.len(),
                    spec.time_zone
                )
                .into_bytes();
                let key = format!("{}/{}/exports/{id}.mp4", camera.site, camera.camera);
                self.objects
                    .put(
                        &kordon_objects::ObjectPath::parse(&key).unwrap(),
                        bytes.clone().into(),
                    )
                    .await
                    .unwrap();
                job.outputs.push(tpb::JobOutput {
                    object_key: key,
                    content_type: "video/mp4".into(),
                    size_bytes: bytes.len() as u64,
                    sha256: kordon_objects::sha256(&bytes).to_vec(),
                    range: spec.range,
                    source_sequence: 0,
                });
            }
            Outcome::Fail => job.error = "decoder error in segment 3".into(),
        }
        self.jobs
            .lock()
            .unwrap()
            .insert(r.request_id.clone(), job.clone());
        Ok(Response::new(tpb::SubmitJobResponse { job: Some(job) }))
    }

    /// The job's state, running with progress, then its end.
    async fn watch_job(
        &self,
        req: Request<tpb::WatchJobRequest>,
    ) -> Result<Response<tonic::codegen::BoxStream<tpb::WatchJobResponse>>, Status> {
        let id = req.into_inner().job_id;
        let job = self
            .jobs
            .lock()
            .unwrap()
            .values()
            .find(|j| j.id == id)
            .cloned()
            .ok_or_else(|| Status::not_found(format!("no job {id}")))?;
        let progress = |done: u64, state: tpb::JobState| tpb::WatchJobResponse {
            job: Some(tpb::Job {
                state: state as i32,
                progress: Some(common::Progress {
                    fraction: done as f64 / 4.0,
                    done_units: done,
                    total_units: 4,
                    stage: "encoding".into(),
                }),
                ..job.clone()
            }),
        };
        let end = match self.outcome {
            Outcome::Succeed => tpb::JobState::Succeeded,
            Outcome::Fail => tpb::JobState::Failed,
        };
        let msgs = vec![
            Ok(progress(0, tpb::JobState::Queued)),
            Ok(progress(2, tpb::JobState::Running)),
            Ok(progress(4, end)),
        ];
        Ok(Response::new(Box::pin(tokio_stream::iter(msgs))))
    }
}

async fn with_transcode(running: &Running, fake: &FakeTranscode) {
    let url = fake.serve().await;
    let maker =
        kordon_storage::transcode::TranscodeViewerCopies::connect(&Default::default(), &url)
            .unwrap();
    running.storage.set_viewer_copies(Arc::new(maker));
}

// ---------------------------------------------------------------------------------------------
// The tests
// ---------------------------------------------------------------------------------------------

async fn bundles_carry_viewer_copies(index: kordon_storage::Index, objects: Arc<dyn ObjectStore>) {
    let dir = tempfile::tempdir().unwrap();
    let running = serve(
        index,
        objects.clone(),
        &common_config(dir.path(), Default::default(), true),
    )
    .await;
    let fake = FakeTranscode::new(objects.clone(), Outcome::Succeed);
    with_transcode(&running, &fake).await;
    let mut client = running.client().await;
    let site_key = running.storage.signing_public_key();
    // gate-3 recorded 3 segments; pier-1 nothing in the range (so no copy is asked of it).
    let base = T0 + (uuid::Uuid::new_v4().as_u128() % 1_000_000) as i64 * 60 * SEC;
    record(&running.storage, CAMERA, base, 3).await;
    record(&running.storage, "pier-1", base + 3600 * SEC, 1).await;

    let request = pb::ExportEvidenceRequest {
        cameras: vec![cam(CAMERA), cam("pier-1")],
        range: range(base, base + 6 * SEC),
        audit: case(),
        rendering: Some(rendering()),
        description: "gate with burned-in time".into(),
        request_id: format!("viewer-{base}"),
    };
    let (stages, bundle) = export(&mut client, request.clone()).await;
    let bundle = bundle.unwrap();
    assert!(bundle.includes_rendering);
    assert_eq!(bundle.segment_count, 3, "the originals, as always");
    assert!(
        stages
            .iter()
            .any(|s| s == &format!("viewer copy of {CAMERA}: encoding")),
        "{stages:?}"
    );
    assert_eq!(stages.last().unwrap(), "copying viewer copies");

    // One job, for the camera that recorded something: the export's audit context, the
    // rendering, and a request id that a retry repeats.
    let submitted = fake.submitted();
    assert_eq!(submitted.len(), 1, "{submitted:#?}");
    let s = &submitted[0];
    assert_eq!(s.request_id, format!("{}/{CAMERA}", bundle.id));
    assert_eq!(s.audit, case());
    let Some(tpb::job_spec::Kind::Export(spec)) = s.spec.clone().unwrap().kind else {
        panic!("not an export job")
    };
    assert_eq!(spec.camera, Some(cam(CAMERA)));
    assert_eq!(spec.range, range(base, base + 6 * SEC));
    assert!(spec.burn_in_timestamp);
    assert_eq!(spec.time_zone, "Europe/Sofia");
    assert_eq!(spec.privacy_masks.len(), 2);
    assert_eq!(
        spec.privacy_masks[1].area,
        Some(polygon(&[(0.5, 0.5), (0.9, 0.5), (0.9, 0.9), (0.5, 0.9)]))
    );
    assert_eq!(spec.evidence_bundle_id, bundle.id);
    assert_eq!((spec.target_bitrate_bps, spec.codec), (0, 0));

    // The archive verifies offline, the copy reported apart from the originals.
    let archive = download(&running, &bundle.id).await;
    let report = verify(&archive, site_key);
    assert!(report.intact(), "{:?}", report.problems);
    assert_eq!(report.segments_checked, 3);
    assert_eq!(report.viewer_copies.len(), 1);
    assert!(report.viewer_copies[0].intact);
    assert_eq!(report.viewer_copies[0].file, format!("viewer/{CAMERA}.mp4"));
    let copy = file(&archive, &format!("viewer/{CAMERA}.mp4"));
    assert!(
        String::from_utf8_lossy(&copy).starts_with(&format!("viewer copy of {SITE}/{CAMERA}")),
        "the job's output, byte for byte"
    );

    // The manifest names the copy and its transformation, and keeps the originals exactly as
    // an export without rendering lists them.
    let manifest: Manifest = serde_json::from_slice(&file(&archive, MANIFEST_FILE)).unwrap();
    assert_eq!(manifest.format, evidence::FORMAT);
    let v = &manifest.viewer_copies[0];
    assert_eq!(v.camera, CAMERA);
    assert_eq!(v.transcode_job, "job-1");
    assert_eq!(v.encoder, "x264enc");
    assert_eq!(v.size_bytes, copy.len() as u64);
    assert_eq!(v.sha256, hex::encode(kordon_objects::sha256(&copy)));
    assert_eq!(
        v.transformation.summary,
        "time burned in (Europe/Sofia); 2 privacy masks blurred; people not blurred"
    );
    assert_eq!(v.transformation.privacy_masks.len(), 2);
    assert!(v.note.contains("not evidence of what the camera recorded"));
    let (_, plain) = export(
        &mut client,
        pb::ExportEvidenceRequest {
            rendering: None,
            request_id: format!("plain-{base}"),
            ..request.clone()
        },
    )
    .await;
    let plain = plain.unwrap();
    assert!(!plain.includes_rendering);
    let plain_manifest: Manifest =
        serde_json::from_slice(&file(&download(&running, &plain.id).await, MANIFEST_FILE)).unwrap();
    assert_eq!(plain_manifest.cameras, manifest.cameras);
    assert!(plain_manifest.viewer_copies.is_empty());

    // A tampered viewer copy is named (and the originals still check).
    let tampered = verify(
        &flipped(&archive, &format!("viewer/{CAMERA}.mp4")),
        site_key,
    );
    assert!(!tampered.intact());
    assert_eq!(tampered.problems.len(), 1, "{:?}", tampered.problems);
    assert!(
        tampered.problems[0].starts_with(&format!(
            "viewer copy of {SITE}/{CAMERA}: file `viewer/{CAMERA}.mp4` was altered"
        )),
        "{}",
        tampered.problems[0]
    );

    // A retry is the same bundle, without another job; the same request id with another
    // rendering is refused.
    let (_, again) = export(&mut client, request.clone()).await;
    assert_eq!(again.unwrap().id, bundle.id);
    assert_eq!(fake.submitted().len(), 1);
    let mut other = request.clone();
    other.rendering.as_mut().unwrap().time_zone = "Europe/Istanbul".into();
    let (_, refused) = export(&mut client, other).await;
    let refused = refused.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::AlreadyExists);
    assert!(
        refused.message().contains("rendering"),
        "{}",
        refused.message()
    );

    // Bad renderings are refused before anything is created, naming the field.
    for (bad, field) in [
        (
            pb::ExportRendering {
                privacy_masks: vec![pb::CameraPrivacyMasks {
                    camera: Some(cam("gate-9")),
                    masks: vec![polygon(&[(0.0, 0.0), (1.0, 0.0), (1.0, 1.0)])],
                }],
                ..Default::default()
            },
            "rendering.privacy_masks: camera `gate-9` is not in the bundle",
        ),
        (
            pb::ExportRendering {
                privacy_masks: vec![pb::CameraPrivacyMasks {
                    camera: Some(cam(CAMERA)),
                    masks: vec![polygon(&[(0.0, 0.0), (1.2, 0.0), (1.0, 1.0)])],
                }],
                ..Default::default()
            },
            "outside the picture",
        ),
        (
            pb::ExportRendering {
                time_zone: "Europe/Sofia".into(),
                ..Default::default()
            },
            "rendering.time_zone",
        ),
    ] {
        let (_, e) = export(
            &mut client,
            pb::ExportEvidenceRequest {
                rendering: Some(bad),
                request_id: format!("bad-{}", uuid::Uuid::new_v4()),
                ..request.clone()
            },
        )
        .await;
        let e = e.unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{}", e.message());
        assert!(e.message().contains(field), "{}", e.message());
    }
    assert_eq!(fake.submitted().len(), 1);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn viewer_copies_on_sqlite_and_local_files() {
    let db = sqlite().await;
    let media = tempfile::tempdir().unwrap();
    let objects = kordon_objects::build(&kordon_objects::ObjectStoreConfig::Local {
        root: media.path().to_path_buf(),
    })
    .unwrap();
    bundles_carry_viewer_copies(db.index.clone(), objects).await;
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn viewer_copies_on_postgres_and_s3() {
    let Some(s3) = kordon_objects::testenv::s3_config("viewer copies on PostgreSQL + S3") else {
        return;
    };
    let Some(db) = postgres("viewer copies on PostgreSQL + S3").await else {
        return;
    };
    let objects = kordon_objects::build(&s3).unwrap();
    bundles_carry_viewer_copies(db.index.clone(), objects).await;
    db.cleanup().await;
}

/// A failed transcode job fails the bundle with the job's error named; a retry with the same
/// request id re-attaches to that job (no second encode) and fails the same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_job_fails_the_bundle() {
    let db = sqlite().await;
    let objects = kordon_objects::build(&kordon_objects::ObjectStoreConfig::Memory).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let running = serve(
        db.index.clone(),
        objects.clone(),
        &common_config(dir.path(), Default::default(), true),
    )
    .await;
    let fake = FakeTranscode::new(objects.clone(), Outcome::Fail);
    with_transcode(&running, &fake).await;
    let mut client = running.client().await;
    record(&running.storage, CAMERA, T0, 2).await;
    let request = pb::ExportEvidenceRequest {
        cameras: vec![cam(CAMERA)],
        range: range(T0, T0 + 4 * SEC),
        audit: case(),
        rendering: Some(rendering()),
        request_id: "fails".into(),
        ..Default::default()
    };
    for attempt in 1..=2 {
        let (_, e) = export(&mut client, request.clone()).await;
        let e = e.unwrap_err();
        assert_eq!(e.code(), tonic::Code::FailedPrecondition);
        assert!(
            e.message().contains(&format!(
                "the viewer copy of {SITE}/{CAMERA} (transcode job job-1) failed: decoder \
                 error in segment 3"
            )),
            "attempt {attempt}: {}",
            e.message()
        );
        let submitted = fake.submitted();
        assert_eq!(submitted.len(), attempt);
        assert!(
            submitted
                .iter()
                .all(|s| s.request_id == submitted[0].request_id)
        );
    }
    // The bundle is failed with that error, and no archive was written.
    let id = fake.submitted()[0]
        .request_id
        .split_once('/')
        .unwrap()
        .0
        .to_string();
    let b = running.storage.index().bundle(&id).await.unwrap().unwrap();
    assert_eq!(b.state, evidence::STATE_FAILED);
    assert!(
        b.error.contains("decoder error in segment 3"),
        "{}",
        b.error
    );
    assert!(
        objects
            .head(&kordon_objects::ObjectPath::parse(&b.object_key).unwrap())
            .await
            .is_err()
    );
    running.stop().await;
    db.cleanup().await;
}

/// Without a transcode service, rendering is refused up front, naming the setting.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rendering_without_transcode_is_refused() {
    let db = sqlite().await;
    let objects = kordon_objects::build(&kordon_objects::ObjectStoreConfig::Memory).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let running = serve(
        db.index.clone(),
        objects,
        &common_config(dir.path(), Default::default(), true),
    )
    .await;
    let mut client = running.client().await;
    record(&running.storage, CAMERA, T0, 2).await;
    let (_, e) = export(
        &mut client,
        pb::ExportEvidenceRequest {
            cameras: vec![cam(CAMERA)],
            range: range(T0, T0 + 4 * SEC),
            audit: case(),
            rendering: Some(rendering()),
            request_id: "no-transcode".into(),
            ..Default::default()
        },
    )
    .await;
    let e = e.unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition);
    assert!(
        e.message().contains("storage.transcode.url"),
        "{}",
        e.message()
    );
    // Nothing was started: the request id is still free for an export of the originals.
    let (_, plain) = export(
        &mut client,
        pb::ExportEvidenceRequest {
            cameras: vec![cam(CAMERA)],
            range: range(T0, T0 + 4 * SEC),
            audit: case(),
            rendering: None,
            request_id: "no-transcode".into(),
            ..Default::default()
        },
    )
    .await;
    assert!(!plain.unwrap().includes_rendering);
    running.stop().await;
    db.cleanup().await;
}

// ---------------------------------------------------------------------------------------------
// Storage's own checks of a copy, with a maker in process (no transcode at all)
// ---------------------------------------------------------------------------------------------

/// What [`FakeCopies`] gets wrong.
#[derive(Clone, Copy)]
enum Fault {
    None,
    /// Reports a SHA-256 the object does not have.
    WrongHash,
    /// Writes its copy outside the camera's folder.
    Outside,
}

struct FakeCopies {
    objects: Arc<dyn ObjectStore>,
    fault: Fault,
    asked: Mutex<Vec<ViewerCopyRequest>>,
}

#[tonic::async_trait]
impl ViewerCopies for FakeCopies {
    async fn make(
        &self,
        req: &ViewerCopyRequest,
        progress: Progress<'_>,
        _cancel: &CancellationToken,
    ) -> Result<ViewerCopy, StorageError> {
        self.asked.lock().unwrap().push(req.clone());
        progress(1, 1, "done");
        let bytes = format!("copy of {} for {}", req.camera, req.request_id).into_bytes();
        let key = match self.fault {
            Fault::Outside => format!("{}/other-camera/exports/x.mp4", req.site),
            _ => format!("{}/{}/exports/{}.mp4", req.site, req.camera, req.bundle_id),
        };
        self.objects
            .put(
                &kordon_objects::ObjectPath::parse(&key).unwrap(),
                bytes.clone().into(),
            )
            .await
            .unwrap();
        let mut sha = kordon_objects::sha256(&bytes);
        if let Fault::WrongHash = self.fault {
            sha[0] ^= 1;
        }
        Ok(ViewerCopy {
            job_id: "job-x".into(),
            encoder: "fake".into(),
            object_key: key,
            size_bytes: bytes.len() as u64,
            sha256: sha,
        })
    }
}

/// A copy whose bytes differ from what its maker reported, or that lies outside the camera's
/// folder, is never packed: the export fails naming it and no archive is left. A good one
/// that blurs people says so in the manifest.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn storage_checks_every_copy_it_packs() {
    for (fault, expect) in [
        (Fault::WrongHash, "does not match the job's output"),
        (Fault::Outside, "outside the camera's folder"),
        (Fault::None, ""),
    ] {
        let db = sqlite().await;
        let storage = storage(db.index.clone(), "http://127.0.0.1:1");
        let maker = Arc::new(FakeCopies {
            objects: storage.objects().clone(),
            fault,
            asked: Mutex::new(Vec::new()),
        });
        storage.set_viewer_copies(maker.clone());
        record(&storage, CAMERA, T0, 2).await;
        let mut rendering = kordon_storage::viewer::Rendering {
            blur_people: true,
            ..Default::default()
        };
        rendering.burn_in_timestamp = true;
        let req = kordon_storage::evidence::ExportRequest {
            site: SITE.into(),
            cameras: vec![CAMERA.into()],
            from_us: T0,
            to_us: T0 + 4 * SEC,
            case_id: "BG-7".into(),
            reason: "court order".into(),
            recipient: String::new(),
            description: String::new(),
            request_id: "checked".into(),
            exported_by: "maria".into(),
            exported_by_name: String::new(),
            rendering: Some(rendering),
        };
        let (bundle, _) = storage.start_export(&req).await.unwrap();
        let built = storage
            .build_bundle(
                &bundle,
                "maria",
                (1, [0; 32]),
                &|_, _, _| {},
                &CancellationToken::new(),
            )
            .await;
        assert_eq!(maker.asked.lock().unwrap().len(), 1);
        let archive_key = kordon_objects::ObjectPath::parse(&bundle.object_key).unwrap();
        match fault {
            Fault::None => {
                let b = built.unwrap();
                let m: Manifest = serde_json::from_slice(&b.manifest).unwrap();
                assert_eq!(
                    m.viewer_copies[0].transformation.summary,
                    "time burned in (the site's time zone); no privacy masks; every detected \
                     person blurred"
                );
                let archive = storage.objects().get(&archive_key).await.unwrap();
                let archive = archive.bytes().await.unwrap();
                let report = verify(&archive, storage.signing_public_key());
                assert!(report.intact(), "{:?}", report.problems);
            }
            _ => {
                let e = built.unwrap_err().to_string();
                assert!(e.contains(expect), "{e}");
                assert!(
                    e.contains(&format!("viewer copy of {SITE}/{CAMERA}")),
                    "{e}"
                );
                let b = storage.index().bundle(&bundle.id).await.unwrap().unwrap();
                assert_eq!(b.state, evidence::STATE_FAILED);
                assert!(storage.objects().head(&archive_key).await.is_err());
            }
        }
        db.cleanup().await;
    }
}
