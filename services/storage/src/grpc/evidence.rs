//! Evidence export: ExportEvidence and GetEvidenceBundle (`ExportEvidence`, logged).
//! With `rendering`, the bundle also carries viewer copies made by the transcode service
//! ([`crate::viewer`]); without a transcode service configured, that is refused up front.

use kordon_proto::storage::v1 as pb;
use kordon_runtime::auth::{Permission, authorize_request};
use tonic::codegen::BoxStream;
use tonic::{Request, Response, Status};

use super::convert::{
    audit_of, bundle_pb, camera_of, closed_range, duration_of, media_url_pb, progress_pb,
    recording_object, rendering_of,
};
use super::{StorageApi, invalid};
use crate::audit::AccessObjectRec;
use crate::config::MAX_URL_LIFETIME;
use crate::evidence::{self, ExportRequest};

pub(super) async fn export_evidence(
    api: &StorageApi,
    req: Request<pb::ExportEvidenceRequest>,
) -> Result<Response<BoxStream<pb::ExportEvidenceResponse>>, Status> {
    let g = req.get_ref();
    let mut site = String::new();
    let mut cameras = Vec::with_capacity(g.cameras.len());
    for (i, c) in g.cameras.iter().enumerate() {
        let (s, cam) = camera_of(&Some(c.clone()), &format!("cameras[{i}]"))?;
        if i == 0 {
            site = s;
        } else if s != site {
            return Err(invalid("cameras: a bundle holds cameras of one site"));
        }
        cameras.push(cam);
    }
    if cameras.is_empty() {
        return Err(invalid("cameras: at least one camera is needed"));
    }
    let who = authorize_request(&req, &site, Permission::ExportEvidence)?.clone();
    let r = req.into_inner();
    let (from_us, to_us) = closed_range(&r.range)?;
    let audit = audit_of(&r.audit)?;
    let rendering = rendering_of(&r.rendering, &site)?;
    if rendering.is_some() && api.storage.viewer_copies().is_none() {
        return Err(crate::viewer::not_configured().into());
    }
    let export = ExportRequest {
        site: site.clone(),
        cameras,
        from_us,
        to_us,
        case_id: audit.case_id.trim().to_string(),
        reason: audit.reason.trim().to_string(),
        recipient: audit.recipient.trim().to_string(),
        description: r.description.trim().to_string(),
        request_id: r.request_id.trim().to_string(),
        exported_by: who.subject.clone(),
        exported_by_name: who.display_name.clone().unwrap_or_default(),
        rendering,
    };
    let (bundle, fresh) = api.storage.start_export(&export).await?;
    let id = bundle.id.clone();
    let objects: Vec<AccessObjectRec> = std::iter::once(AccessObjectRec {
        kind: pb::AccessObjectKind::EvidenceBundle as i32,
        site: site.clone(),
        camera: String::new(),
        start_us: Some(from_us),
        end_us: Some(to_us),
        id: id.clone(),
    })
    .chain(
        export
            .cameras
            .iter()
            .map(|c| recording_object(&site, c, from_us, to_us)),
    )
    .collect();
    if !fresh {
        // A retry of the same export (same principal and request, see
        // `Bundle::same_request`): hand out the bundle, logged like the first time.
        if bundle.state != evidence::STATE_READY {
            return Err(Status::failed_precondition(format!(
                "evidence bundle {id} for this request id is still being built; call \
                 GetEvidenceBundle for its state"
            )));
        }
        api.log(
            &who,
            &site,
            pb::AccessAction::Export,
            objects,
            &audit,
            "ExportEvidence (retry)",
        )
        .await?;
        let msg = Ok(pb::ExportEvidenceResponse {
            bundle_id: id.clone(),
            event: Some(pb::export_evidence_response::Event::Bundle(bundle_pb(
                &bundle,
            ))),
        });
        return Ok(Response::new(Box::pin(tokio_stream::once(msg))));
    }
    let entry = match api
        .log(
            &who,
            &site,
            pb::AccessAction::Export,
            objects,
            &audit,
            "ExportEvidence",
        )
        .await
    {
        Ok(e) => e,
        Err(status) => {
            let _ = api
                .storage
                .index()
                .fail_bundle(&id, "the access log could not record the export")
                .await;
            return Err(status);
        }
    };
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    let storage = api.storage.clone();
    let name = export.exported_by_name.clone();
    tokio::spawn(async move {
        let progress_tx = tx.clone();
        let progress_id = id.clone();
        let progress = move |done: u64, total: u64, stage: &str| {
            let _ = progress_tx.try_send(Ok(pb::ExportEvidenceResponse {
                bundle_id: progress_id.clone(),
                event: Some(pb::export_evidence_response::Event::Progress(progress_pb(
                    done, total, stage,
                ))),
            }));
        };
        // A client that goes away cancels the build: the upload is aborted and the bundle
        // marked failed, so an export again with the same request id rebuilds it.
        let cancel = tokio_util::sync::CancellationToken::new();
        let watch = {
            let cancel = cancel.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                tx.closed().await;
                cancel.cancel();
            })
        };
        let result = storage
            .build_bundle(
                &bundle,
                &name,
                (entry.sequence, entry.hash),
                &progress,
                &cancel,
            )
            .await;
        watch.abort();
        let msg = match result {
            Ok(b) => Ok(pb::ExportEvidenceResponse {
                bundle_id: id,
                event: Some(pb::export_evidence_response::Event::Bundle(bundle_pb(&b))),
            }),
            Err(e) => Err(Status::from(e)),
        };
        let _ = tx.send(msg).await;
    });
    Ok(Response::new(Box::pin(
        tokio_stream::wrappers::ReceiverStream::new(rx),
    )))
}

pub(super) async fn get_evidence_bundle(
    api: &StorageApi,
    req: Request<pb::GetEvidenceBundleRequest>,
) -> Result<Response<pb::GetEvidenceBundleResponse>, Status> {
    let id = req.get_ref().bundle_id.trim().to_string();
    if id.is_empty() {
        return Err(invalid("bundle_id: required"));
    }
    // Authorise on the bundle's site; an unknown id and a bundle of a site the caller
    // cannot see answer the same.
    let not_found = || Status::not_found(format!("no evidence bundle {id}"));
    let bundle = api
        .storage
        .index()
        .bundle(&id)
        .await?
        .ok_or_else(not_found)?;
    let who = match authorize_request(&req, &bundle.site, Permission::ExportEvidence) {
        Ok(w) => w.clone(),
        Err(s) if s.code() == tonic::Code::PermissionDenied => return Err(not_found()),
        Err(s) => return Err(s),
    };
    let r = req.into_inner();
    let audit = audit_of(&r.audit)?;
    let ttl = duration_of(
        &r.url_ttl,
        "url_ttl",
        api.storage.options().url_lifetime,
        MAX_URL_LIFETIME,
    )?;
    api.log(
        &who,
        &bundle.site,
        pb::AccessAction::Download,
        vec![AccessObjectRec {
            kind: pb::AccessObjectKind::EvidenceBundle as i32,
            site: bundle.site.clone(),
            camera: String::new(),
            start_us: Some(bundle.from_us),
            end_us: Some(bundle.to_us),
            id: bundle.id.clone(),
        }],
        &audit,
        "GetEvidenceBundle",
    )
    .await?;
    let download = (bundle.state == evidence::STATE_READY)
        .then(|| media_url_pb(api.storage.bundle_download_url(&bundle, ttl)));
    Ok(Response::new(pb::GetEvidenceBundleResponse {
        manifest: if bundle.state == evidence::STATE_READY {
            bundle.manifest.clone()
        } else {
            Vec::new()
        },
        bundle: Some(bundle_pb(&bundle)),
        download,
    }))
}

/// Files a verification request may list: well above the largest export (a day of 4 s
/// segments from a few dozen cameras), well below what would make the check itself a burden.
const MAX_VERIFY_FILES: usize = 1_000_000;
/// Longest path a verification request may name (the archive format's own limit is lower).
const MAX_VERIFY_PATH: usize = 1024;

pub(super) async fn verify_evidence_bundle(
    api: &StorageApi,
    req: Request<pb::VerifyEvidenceBundleRequest>,
) -> Result<Response<pb::VerifyEvidenceBundleResponse>, Status> {
    use std::collections::BTreeMap;
    let p = kordon_runtime::auth::principal(&req)?;
    kordon_runtime::auth::authorize_any_site(p, Permission::ViewStatus)?;
    let r = req.into_inner();
    if r.files.len() > MAX_VERIFY_FILES {
        return Err(invalid(format!(
            "files: {} listed, at most {MAX_VERIFY_FILES}",
            r.files.len()
        )));
    }
    let mut files = BTreeMap::new();
    for (i, f) in r.files.into_iter().enumerate() {
        if f.path.is_empty() || f.path.len() > MAX_VERIFY_PATH {
            return Err(invalid(format!(
                "files[{i}].path: 1 to {MAX_VERIFY_PATH} bytes"
            )));
        }
        let sha256: [u8; 32] = f.sha256.as_slice().try_into().map_err(|_| {
            invalid(format!(
                "files[{i}].sha256: 32 bytes, not {}",
                f.sha256.len()
            ))
        })?;
        if files
            .insert(
                f.path.clone(),
                evidence::SeenFile {
                    size: f.size,
                    sha256,
                },
            )
            .is_some()
        {
            return Err(invalid(format!(
                "files[{i}].path: `{}` listed twice",
                f.path
            )));
        }
    }
    // This installation's own key, then its partners' evidence keys.
    let here = &api.storage.partners().site;
    let mut trusted = vec![evidence::TrustedKey {
        key: api.storage.signing_public_key(),
        label: if here.is_empty() {
            "this installation".to_string()
        } else {
            here.clone()
        },
    }];
    for partner in &api.storage.partners().partners {
        if let Ok(key) = kordon_runtime::partner::parse_public_key(&partner.evidence_public_key) {
            trusted.push(evidence::TrustedKey {
                key,
                label: partner.site.clone(),
            });
        }
    }
    let manifest = (!r.manifest.is_empty()).then_some(r.manifest);
    let signature = (!r.signature.is_empty()).then_some(r.signature);
    let report = tokio::task::spawn_blocking(move || {
        let mut report = evidence::BundleReport::default();
        evidence::check_bundle_parts(
            manifest,
            signature.as_deref(),
            &files,
            &trusted,
            &mut report,
        );
        report
    })
    .await
    .map_err(|e| Status::internal(format!("verification stopped: {e}")))?;
    let verdict = match report.verdict() {
        evidence::Verdict::Intact => pb::BundleVerdict::Intact,
        evidence::Verdict::UnknownSigner => pb::BundleVerdict::UnknownSigner,
        evidence::Verdict::NotIntact => pb::BundleVerdict::NotIntact,
    };
    Ok(Response::new(pb::VerifyEvidenceBundleResponse {
        verdict: verdict as i32,
        signer: report.signer.clone().unwrap_or_default(),
        signing_key: report.signing_key,
        bundle_id: report.bundle_id,
        site: report.site,
        case_id: report.case_id,
        exported_by: report.exported_by,
        created_at: report.created_at,
        range_from: report.range_from,
        range_to: report.range_to,
        cameras: report.cameras as u32,
        segments_checked: report.segments_checked,
        gaps: report.gaps,
        problems: report.problems,
        notes: report.notes,
    }))
}

pub(super) async fn list_evidence_bundles(
    api: &StorageApi,
    req: Request<pb::ListEvidenceBundlesRequest>,
) -> Result<Response<pb::ListEvidenceBundlesResponse>, Status> {
    let site = req.get_ref().site.clone();
    kordon_objects::validate_name("site", &site).map_err(|e| invalid(e.to_string()))?;
    authorize_request(&req, &site, Permission::ExportEvidence)?;
    let r = req.into_inner();
    if r.case_id.len() > 256 {
        return Err(invalid("case_id: at most 256 bytes"));
    }
    let token = super::convert::page_token(&r.page);
    let after = if token.is_empty() {
        None
    } else {
        let bad = || {
            invalid(format!(
                "page.page_token: `{token}` is not one this call gave"
            ))
        };
        let (us, id) = token.split_once(':').ok_or_else(bad)?;
        Some((us.parse::<i64>().map_err(|_| bad())?, id.to_string()))
    };
    let size = super::convert::page_size(&r.page);
    let mut bundles = api
        .storage
        .index()
        .list_bundles(&site, &r.case_id, after, size + 1)
        .await?;
    let more = bundles.len() > size as usize;
    bundles.truncate(size as usize);
    let next_page_token = match (more, bundles.last()) {
        (true, Some(b)) => format!("{}:{}", b.created_at_us, b.id),
        _ => String::new(),
    };
    Ok(Response::new(pb::ListEvidenceBundlesResponse {
        bundles: bundles.iter().map(bundle_pb).collect(),
        page: Some(kordon_proto::common::v1::PageResponse { next_page_token }),
    }))
}
