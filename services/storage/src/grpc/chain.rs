//! Registration into a camera's hash chain and the chain's integrity: RegisterSegment,
//! RegisterGap (`WriteMedia`), GetChainHead and LocateSegments (`ViewStatus`) and VerifyChain
//! (`ExportEvidence`, logged).

use kordon_objects::time::now_micros;
use kordon_proto::common::v1 as common;
use kordon_proto::storage::v1 as pb;
use kordon_runtime::auth::{Permission, authorize_request};
use tonic::codegen::BoxStream;
use tonic::{Request, Response, Status};

use super::convert::{
    audit_of, camera_of, closed_range, gap_pb, link, micros, outcome, progress_pb, range_of,
    recording_object, report_pb, segment_pb, timestamp,
};
use super::{StorageApi, invalid};
use crate::index::{NewGap, NewSegment};

pub(super) async fn register_segment(
    api: &StorageApi,
    req: Request<pb::RegisterSegmentRequest>,
) -> Result<Response<pb::RegisterSegmentResponse>, Status> {
    let (site, camera) = camera_of(&req.get_ref().camera, "camera")?;
    authorize_request(&req, &site, Permission::WriteMedia)?;
    let r = req.into_inner();
    let (start_us, end_us) = closed_range(&r.range)?;
    let sha256: [u8; 32] = r
        .sha256
        .as_slice()
        .try_into()
        .map_err(|_| invalid("sha256: must be 32 bytes"))?;
    match common::VideoCodec::try_from(r.codec) {
        Ok(common::VideoCodec::H264 | common::VideoCodec::H265) => {}
        _ => return Err(invalid("codec: VIDEO_CODEC_H264 or VIDEO_CODEC_H265")),
    }
    let registered = api
        .storage
        .register_segment(&NewSegment {
            site,
            camera,
            start_us,
            end_us,
            size_bytes: r.size_bytes,
            sha256,
            init_size: r.init_size,
            codec: r.codec,
            width: r.width,
            height: r.height,
            object_key: r.object_key,
            ingest_replica: r.ingest_replica,
        })
        .await?;
    Ok(Response::new(pb::RegisterSegmentResponse {
        outcome: outcome(registered.created),
        segment: Some(segment_pb(&registered.record, None)),
    }))
}

pub(super) async fn register_gap(
    api: &StorageApi,
    req: Request<pb::RegisterGapRequest>,
) -> Result<Response<pb::RegisterGapResponse>, Status> {
    let (site, camera) = camera_of(&req.get_ref().camera, "camera")?;
    authorize_request(&req, &site, Permission::WriteMedia)?;
    let r = req.into_inner();
    let (start_us, end_us) = closed_range(&r.range)?;
    match pb::GapReason::try_from(r.reason) {
        Ok(pb::GapReason::Unspecified | pb::GapReason::Unexplained) | Err(_) => {
            return Err(invalid(
                "reason: one of STREAM_LOST, STREAM_ERROR, INGEST_RESTART, SPOOL_OVERFLOW, \
                 OUTSIDE_EVENTS",
            ));
        }
        Ok(_) => {}
    }
    let registered = api
        .storage
        .register_gap(&NewGap {
            site,
            camera,
            start_us,
            end_us,
            reason: r.reason as u32,
            detail: r.detail,
            ingest_replica: r.ingest_replica,
        })
        .await?;
    Ok(Response::new(pb::RegisterGapResponse {
        outcome: outcome(registered.created),
        gap: Some(gap_pb(&registered.record)),
    }))
}

pub(super) async fn get_chain_head(
    api: &StorageApi,
    req: Request<pb::GetChainHeadRequest>,
) -> Result<Response<pb::GetChainHeadResponse>, Status> {
    let (site, camera) = camera_of(&req.get_ref().camera, "camera")?;
    authorize_request(&req, &site, Permission::ViewStatus)?;
    let head = api.storage.chain_head(&site, &camera).await?;
    let prev = match head {
        Some(h) if h.sequence > 1 => {
            // The head's own prev_hash, for a complete link.
            let records = api
                .storage
                .index()
                .chain_records(&site, &camera, h.sequence, h.sequence)
                .await?;
            records.records.first().map(|r| r.prev_hash)
        }
        _ => None,
    };
    Ok(Response::new(pb::GetChainHeadResponse {
        head: head.map(|h| link(h.sequence, &prev.unwrap_or([0; 32]), &h.hash)),
        recorded_until: head.map(|h| timestamp(h.recorded_until_us)),
    }))
}

/// Most moments one LocateSegments call may ask about.
const MAX_LOCATE: usize = 1000;

pub(super) async fn locate_segments(
    api: &StorageApi,
    req: Request<pb::LocateSegmentsRequest>,
) -> Result<Response<pb::LocateSegmentsResponse>, Status> {
    let (site, camera) = camera_of(&req.get_ref().camera, "camera")?;
    authorize_request(&req, &site, Permission::ViewStatus)?;
    let times = &req.get_ref().times;
    if times.is_empty() || times.len() > MAX_LOCATE {
        return Err(invalid(format!(
            "times: 1 to {MAX_LOCATE} moments, not {}",
            times.len()
        )));
    }
    let times_us = times
        .iter()
        .enumerate()
        .map(|(i, t)| micros(t, &format!("times[{i}]")))
        .collect::<Result<Vec<_>, _>>()?;
    let (sequences, recorded_until) = api
        .storage
        .locate_segments(&site, &camera, &times_us)
        .await?;
    Ok(Response::new(pb::LocateSegmentsResponse {
        sequences,
        recorded_until: recorded_until.map(timestamp),
    }))
}

pub(super) async fn verify_chain(
    api: &StorageApi,
    req: Request<pb::VerifyChainRequest>,
) -> Result<Response<BoxStream<pb::VerifyChainResponse>>, Status> {
    let (site, camera) = camera_of(&req.get_ref().camera, "camera")?;
    let who = authorize_request(&req, &site, Permission::ExportEvidence)?.clone();
    let r = req.into_inner();
    let (from_us, to) = range_of(&r.range)?;
    let to_us = to.unwrap_or_else(now_micros);
    let audit = audit_of(&r.audit)?;
    api.log(
        &who,
        &site,
        pb::AccessAction::Verify,
        vec![recording_object(&site, &camera, from_us, to_us)],
        &audit,
        "VerifyChain",
    )
    .await?;
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    let storage = api.storage.clone();
    tokio::spawn(async move {
        let progress_tx = tx.clone();
        let progress = move |done: u64, total: u64, stage: &str| {
            // Progress is best effort: a slow reader skips some.
            let _ = progress_tx.try_send(Ok(pb::VerifyChainResponse {
                event: Some(pb::verify_chain_response::Event::Progress(progress_pb(
                    done, total, stage,
                ))),
            }));
        };
        // Verification reads every object in the range: stop as soon as nobody waits.
        let result = tokio::select! {
            r = storage.verify_chain(&site, &camera, from_us, to_us, r.verify_objects, &progress) => r,
            () = tx.closed() => {
                tracing::info!(site = %site, camera = %camera,
                               "chain verification cancelled: the client went away");
                return;
            }
        };
        let msg = match result {
            Ok(report) => {
                tracing::info!(site = %site, camera = %camera, intact = report.intact(),
                               findings = report.findings.len(), "chain verified");
                Ok(pb::VerifyChainResponse {
                    event: Some(pb::verify_chain_response::Event::Report(report_pb(&report))),
                })
            }
            Err(e) => Err(Status::from(e)),
        };
        let _ = tx.send(msg).await;
    });
    Ok(Response::new(Box::pin(
        tokio_stream::wrappers::ReceiverStream::new(rx),
    )))
}
