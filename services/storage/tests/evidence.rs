//! Evidence export end to end, over gRPC and HTTP: real fragmented-MP4 segments are registered,
//! ExportEvidence builds a bundle (with progress), GetEvidenceBundle issues its download URL,
//! the downloaded archive verifies offline against the site's key, and each tampering the
//! issue names — a flipped byte in a segment, a deleted segment, an edited manifest — makes
//! verification fail with a message that names it. An object altered in the bucket fails the
//! export itself. Run on SQLite + local files always, and on PostgreSQL + S3 (Ceph RGW) when
//! their variables are set (CI sets them).

mod support;

use std::io::Read;

use sha2::Digest;
use std::sync::Arc;

use futures::StreamExt;
use kordon_objects::{ObjectStore, ObjectStoreExt};
use kordon_proto::common::v1::{AuditContext, CameraRef, TimeRange, VideoCodec};
use kordon_proto::storage::v1 as pb;
use kordon_storage::evidence::{self, BundleReport, MANIFEST_FILE};
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

fn verify(bytes: &[u8], key: [u8; 32]) -> BundleReport {
    let trusted = [evidence::TrustedKey {
        key,
        label: "burgas".into(),
    }];
    evidence::verify_bundle(bytes, &trusted, &mut |_| {}).unwrap()
}

/// (path, offset of the data, size) of each archive entry.
fn entries(tar_bytes: &[u8]) -> Vec<(String, u64, u64)> {
    let mut ar = tar::Archive::new(tar_bytes);
    ar.entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.path().unwrap().to_string_lossy().into_owned(),
                e.raw_file_position(),
                e.size(),
            )
        })
        .collect()
}

/// The archive without `drop_path`.
fn without(tar_bytes: &[u8], drop_path: &str) -> Vec<u8> {
    let mut ar = tar::Archive::new(tar_bytes);
    let mut out = tar::Builder::new(Vec::new());
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let path = e.path().unwrap().to_string_lossy().into_owned();
        if path == drop_path {
            continue;
        }
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        let mut h = e.header().clone();
        out.append_data(&mut h, &path, data.as_slice()).unwrap();
    }
    out.into_inner().unwrap()
}

async fn register(
    client: &mut pb::storage_service_client::StorageServiceClient<tonic::transport::Channel>,
    objects: &dyn ObjectStore,
    camera: &str,
    start: i64,
    bytes: bytes::Bytes,
) -> pb::Segment {
    let init = init_size(&bytes);
    let s = put_segment(objects, camera, start, start + 2 * SEC, bytes, init).await;
    client
        .register_segment(pb::RegisterSegmentRequest {
            camera: Some(cam(camera)),
            range: range(s.start_us, s.end_us),
            size_bytes: s.size_bytes,
            sha256: s.sha256.to_vec(),
            codec: VideoCodec::H264 as i32,
            width: 320,
            height: 240,
            object_key: s.object_key.clone(),
            ingest_replica: "ingest-0".into(),
            init_size: init,
        })
        .await
        .unwrap()
        .into_inner()
        .segment
        .unwrap()
}

/// Runs ExportEvidence to its end: (progress messages, the final bundle or the error).
async fn export(
    client: &mut pb::storage_service_client::StorageServiceClient<tonic::transport::Channel>,
    req: pb::ExportEvidenceRequest,
) -> (
    Vec<kordon_proto::common::v1::Progress>,
    Result<pb::EvidenceBundle, tonic::Status>,
) {
    let mut stream = match client.export_evidence(req).await {
        Ok(s) => s.into_inner(),
        Err(e) => return (vec![], Err(e)),
    };
    let mut progress = Vec::new();
    while let Some(msg) = stream.next().await {
        match msg {
            Ok(m) => match m.event {
                Some(pb::export_evidence_response::Event::Progress(p)) => progress.push(p),
                Some(pb::export_evidence_response::Event::Bundle(b)) => return (progress, Ok(b)),
                None => panic!("an empty message"),
            },
            Err(e) => return (progress, Err(e)),
        }
    }
    panic!("the stream ended without a bundle")
}

async fn exported_bundles_verify(index: kordon_storage::Index, objects: Arc<dyn ObjectStore>) {
    let dir = tempfile::tempdir().unwrap();
    let running = serve(
        index,
        objects.clone(),
        &common_config(dir.path(), Default::default(), true),
    )
    .await;
    let mut client = running.client().await;
    let site_key = running.storage.signing_public_key();

    // gate-3: 2 s, 2 s, a 4 s gap, 2 s. pier-1: 2 s, 2 s. Unique times per run keep keys
    // apart in a shared bucket.
    let base = T0 + (uuid::Uuid::new_v4().as_u128() % 1_000_000) as i64 * 60 * SEC;
    let clips = ffmpeg_segments(dir.path(), 5, 2);
    let mut gate = Vec::new();
    for (bytes, offset) in clips[..3].iter().zip([0i64, 2, 8]) {
        gate.push(
            register(
                &mut client,
                objects.as_ref(),
                CAMERA,
                base + offset * SEC,
                bytes.clone(),
            )
            .await,
        );
    }
    client
        .register_gap(pb::RegisterGapRequest {
            camera: Some(cam(CAMERA)),
            range: range(base + 4 * SEC, base + 8 * SEC),
            reason: pb::GapReason::StreamLost as i32,
            detail: "camera rebooted".into(),
            ingest_replica: "ingest-0".into(),
        })
        .await
        .unwrap();
    for (bytes, offset) in clips[3..].iter().zip([0i64, 2]) {
        register(
            &mut client,
            objects.as_ref(),
            "pier-1",
            base + offset * SEC,
            bytes.clone(),
        )
        .await;
    }

    // Refused before anything is built.
    let mut no_case = case();
    no_case.as_mut().unwrap().case_id.clear();
    let (_, refused) = export(
        &mut client,
        pb::ExportEvidenceRequest {
            cameras: vec![cam(CAMERA)],
            range: range(base, base + 10 * SEC),
            audit: no_case,
            ..Default::default()
        },
    )
    .await;
    let refused = refused.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    assert!(
        refused.message().contains("audit.case_id"),
        "{}",
        refused.message()
    );
    let (_, two_sites) = export(
        &mut client,
        pb::ExportEvidenceRequest {
            cameras: vec![
                cam(CAMERA),
                CameraRef {
                    site: "edirne".into(),
                    camera: "k1".into(),
                },
            ],
            range: range(base, base + 10 * SEC),
            audit: case(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(two_sites.unwrap_err().code(), tonic::Code::InvalidArgument);

    // The export, with progress.
    let request = pb::ExportEvidenceRequest {
        cameras: vec![cam(CAMERA), cam("pier-1")],
        range: range(base, base + 10 * SEC),
        audit: case(),
        description: "gate and pier, 10 s".into(),
        request_id: format!("req-{base}"),
        rendering: None,
    };
    let (progress, bundle) = export(&mut client, request.clone()).await;
    let bundle = bundle.unwrap();
    assert_eq!(bundle.state, pb::EvidenceBundleState::Ready as i32);
    assert_eq!((bundle.segment_count, bundle.gap_count), (5, 1));
    assert_eq!(bundle.case_id, "BG-2026-0142");
    assert_eq!(bundle.signing_public_key, site_key.to_vec());
    let last = progress.last().expect("progress was reported");
    assert_eq!(last.stage, "copying segments");
    assert_eq!(last.done_units, last.total_units);
    let media_bytes: u64 = clips.iter().map(|c| c.len() as u64).sum();
    assert_eq!(last.total_units, media_bytes);

    // A retry with the same request id is the same bundle.
    let (_, again) = export(&mut client, request).await;
    assert_eq!(again.unwrap().id, bundle.id);

    // The download URL serves the archive the bundle describes.
    let got = client
        .get_evidence_bundle(pb::GetEvidenceBundleRequest {
            bundle_id: bundle.id.clone(),
            audit: case(),
            url_ttl: None,
        })
        .await
        .unwrap()
        .into_inner();
    let url = got.download.unwrap().url;
    let path = url
        .split_once(&running.http.to_string())
        .unwrap()
        .1
        .to_string();
    let (status, headers, archive) = http_get(running.http, &path, None).await;
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "content-type"), Some("application/x-tar"));
    assert_eq!(archive.len() as u64, bundle.size_bytes);
    assert_eq!(kordon_objects::sha256(&archive).to_vec(), bundle.sha256);
    assert_eq!(
        http_get(running.http, &path.replacen("token=", "token=A", 1), None)
            .await
            .0,
        403
    );

    // It verifies, and its manifest is the one the service returns.
    let report = verify(&archive, site_key);
    assert!(report.intact(), "{:?}", report.problems);
    assert!(report.signature_valid && report.key_pinned);
    assert_eq!(
        (report.segments_checked, report.gaps, report.cameras),
        (5, 1, 2)
    );
    let list = entries(&archive);
    let (_, m_at, m_len) = list
        .iter()
        .find(|(p, _, _)| p == MANIFEST_FILE)
        .unwrap()
        .clone();
    assert_eq!(
        &archive[m_at as usize..(m_at + m_len) as usize],
        &got.manifest[..]
    );

    // The site's bundles list it (newest first, no manifest), by case too.
    let listed = client
        .list_evidence_bundles(pb::ListEvidenceBundlesRequest {
            site: "burgas".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let ours = got.bundle.as_ref().unwrap();
    assert!(
        listed
            .bundles
            .iter()
            .any(|b| b.id == ours.id && b.case_id == ours.case_id)
    );
    let by_case = client
        .list_evidence_bundles(pb::ListEvidenceBundlesRequest {
            site: "burgas".into(),
            case_id: "no-such-case".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(by_case.bundles.is_empty());
    let bad = client
        .list_evidence_bundles(pb::ListEvidenceBundlesRequest {
            site: "burgas".into(),
            page: Some(kordon_proto::common::v1::PageRequest {
                page_size: 1,
                page_token: "forged".into(),
            }),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);

    // The same archive checked by the server from its digests (as the web console sends it):
    // intact, signed by this installation; one altered digest names its file; without the
    // signature it is not intact.
    let digests = |archive: &[u8]| {
        let mut req = pb::VerifyEvidenceBundleRequest::default();
        let mut ar = tar::Archive::new(archive);
        for e in ar.entries().unwrap() {
            let mut e = e.unwrap();
            let path = e.path().unwrap().to_string_lossy().into_owned();
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            match path.as_str() {
                MANIFEST_FILE => req.manifest = data,
                evidence::SIGNATURE_FILE => req.signature = data,
                _ => req.files.push(pb::BundleFileDigest {
                    path,
                    size: data.len() as u64,
                    sha256: sha2::Sha256::digest(&data).to_vec(),
                }),
            }
        }
        req
    };
    let checked = client
        .verify_evidence_bundle(digests(&archive))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        checked.verdict,
        pb::BundleVerdict::Intact as i32,
        "{:?}",
        checked.problems
    );
    assert_eq!(checked.bundle_id, got.bundle.as_ref().unwrap().id);
    assert_eq!((checked.segments_checked, checked.cameras), (5, 2));
    let mut altered = digests(&archive);
    let victim = altered
        .files
        .iter_mut()
        .find(|f| f.path.starts_with("segments/"))
        .unwrap();
    victim.sha256[0] ^= 1;
    let victim = victim.path.clone();
    let checked = client
        .verify_evidence_bundle(altered)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(checked.verdict, pb::BundleVerdict::NotIntact as i32);
    assert!(
        checked.problems.iter().any(|p| p.contains(&victim)),
        "{victim}: {:?}",
        checked.problems
    );
    let mut unsigned = digests(&archive);
    unsigned.signature.clear();
    let checked = client
        .verify_evidence_bundle(unsigned)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(checked.verdict, pb::BundleVerdict::NotIntact as i32);
    let mut bad = digests(&archive);
    bad.files[0].sha256.truncate(31);
    let refused = client.verify_evidence_bundle(bad).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);

    let manifest: evidence::Manifest = serde_json::from_slice(&got.manifest).unwrap();
    assert_eq!(manifest.recipient, "Burgas District Prosecutor");
    assert_eq!(manifest.exported_by.subject, "local-developer");
    let gate_part = manifest
        .cameras
        .iter()
        .find(|c| c.camera == CAMERA)
        .unwrap();
    assert_eq!(gate_part.records.len(), 4);
    // Records are in chain order (registration order): the gap came last.
    assert_eq!(gate_part.records[3].kind, "gap");
    assert_eq!(gate_part.records[3].gap_detail, "camera rebooted");
    assert_eq!(gate_part.head_sequence, 4);

    // The segments in it are the originals and play in a player that is not Kordon.
    let seg_path = format!(
        "segments/{CAMERA}/{:010}.mp4",
        gate[1].link.as_ref().unwrap().sequence
    );
    let (_, s_at, s_len) = list
        .iter()
        .find(|(p, _, _)| *p == seg_path)
        .unwrap()
        .clone();
    let seg_bytes = &archive[s_at as usize..(s_at + s_len) as usize];
    assert_eq!(kordon_objects::sha256(seg_bytes).to_vec(), gate[1].sha256);
    let file = dir.path().join("extracted.mp4");
    std::fs::write(&file, seg_bytes).unwrap();
    let probe = std::process::Command::new("ffprobe")
        .args(["-v", "error", "-count_frames", "-select_streams", "v:0"])
        .args(["-show_entries", "stream=nb_read_frames", "-of", "csv=p=0"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&probe.stdout).trim(), "50");

    // One flipped byte in a segment.
    let mut flipped = archive.clone();
    flipped[(s_at + s_len / 2) as usize] ^= 0x01;
    let r = verify(&flipped, site_key);
    assert_eq!(r.problems.len(), 1, "{:?}", r.problems);
    assert!(
        r.problems[0].contains(&format!("{SITE}/{CAMERA} segment 2")),
        "{}",
        r.problems[0]
    );
    assert!(
        r.problems[0].contains(&format!("`{seg_path}` was altered")),
        "{}",
        r.problems[0]
    );

    // One segment deleted.
    let r = verify(&without(&archive, &seg_path), site_key);
    assert_eq!(r.problems.len(), 1, "{:?}", r.problems);
    assert!(r.problems[0].contains(&format!("`{seg_path}` is missing from the bundle")));

    // The manifest edited (same length, so the archive stays well formed).
    let mut edited = archive.clone();
    let m = &mut edited[m_at as usize..(m_at + m_len) as usize];
    let text = String::from_utf8(m.to_vec())
        .unwrap()
        .replace("BG-2026-0142", "BG-2026-0143");
    m.copy_from_slice(text.as_bytes());
    let r = verify(&edited, site_key);
    assert!(!r.signature_valid);
    assert!(
        r.problems
            .iter()
            .any(|p| p.contains("manifest.json` was changed after signing")),
        "{:?}",
        r.problems
    );

    // Another site's key.
    let r = verify(&archive, [9; 32]);
    assert!(
        r.problems
            .iter()
            .any(|p| p.contains("not the expected site key"))
    );

    // Both reads are in the access log, with case and recipient.
    let log = client
        .list_access_log(pb::ListAccessLogRequest {
            site: SITE.into(),
            case_id: "BG-2026-0142".into(),
            audit: case(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .entries;
    let actions: Vec<i32> = log.iter().map(|e| e.action).collect();
    assert!(
        actions.contains(&(pb::AccessAction::Export as i32)),
        "{actions:?}"
    );
    assert!(
        actions.contains(&(pb::AccessAction::Download as i32)),
        "{actions:?}"
    );
    let export_entry = log
        .iter()
        .find(|e| e.action == pb::AccessAction::Export as i32)
        .unwrap();
    assert_eq!(export_entry.recipient, "Burgas District Prosecutor");
    assert_eq!(manifest.access_log_entry.sequence, export_entry.sequence);

    // Footage altered in the bucket: the export fails and names the segment.
    let victim = &gate[0];
    let key = kordon_objects::ObjectPath::parse(&victim.object_key).unwrap();
    let mut bad = clips[0].to_vec();
    bad[100] ^= 0xff;
    match objects.delete(&key).await {
        Ok(()) => {}
        // A bucket under Object Lock refuses; nothing to test there.
        Err(_) => {
            running.stop().await;
            return;
        }
    }
    objects.put(&key, bad.into()).await.unwrap();
    let (_, failed) = export(
        &mut client,
        pb::ExportEvidenceRequest {
            cameras: vec![cam(CAMERA)],
            range: range(base, base + 10 * SEC),
            audit: case(),
            ..Default::default()
        },
    )
    .await;
    let failed = failed.unwrap_err();
    assert_eq!(failed.code(), tonic::Code::FailedPrecondition);
    assert!(
        failed.message().contains("segment 1"),
        "{}",
        failed.message()
    );
    assert!(
        failed.message().contains("does not match its record"),
        "{}",
        failed.message()
    );

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
    exported_bundles_verify(db.index.clone(), objects).await;
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_and_s3() {
    let Some(s3) = kordon_objects::testenv::s3_config("evidence on PostgreSQL + S3") else {
        return;
    };
    let Some(db) = postgres("evidence on PostgreSQL + S3").await else {
        return;
    };
    let objects = kordon_objects::build(&s3).unwrap();
    exported_bundles_verify(db.index.clone(), objects).await;
    db.cleanup().await;
}
