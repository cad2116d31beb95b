//! Renditions and snapshots: RegisterRendition and RegisterSnapshot (`WriteMedia`);
//! ListRenditions, GetSnapshot and ListSnapshots (`ReadFootage`, logged).

use kordon_objects::time::now_micros;
use kordon_proto::common::v1 as common;
use kordon_proto::storage::v1 as pb;
use kordon_runtime::auth::{Permission, authorize_request};
use tonic::{Request, Response, Status};

use super::convert::{
    audit_of, camera_of, closed_range, duration_of, media_url_pb, micros, outcome, page_size,
    page_token, range_of, recording_object, rendition_pb, sha_of, snapshot_object, snapshot_pb,
};
use super::{StorageApi, invalid};
use crate::config::MAX_URL_LIFETIME;
use crate::media::{CameraWindow, NewRendition, NewSnapshot};

pub(super) async fn register_rendition(
    api: &StorageApi,
    req: Request<pb::RegisterRenditionRequest>,
) -> Result<Response<pb::RegisterRenditionResponse>, Status> {
    let (site, camera) = camera_of(&req.get_ref().camera, "camera")?;
    authorize_request(&req, &site, Permission::WriteMedia)?;
    let r = req.into_inner();
    let (start_us, end_us) = closed_range(&r.range)?;
    let n = NewRendition {
        site,
        camera,
        source_sequence: r.source_sequence,
        profile: r.profile,
        start_us,
        end_us,
        codec: r.codec,
        width: r.width,
        height: r.height,
        bitrate_bps: r.bitrate_bps,
        object_key: r.object_key,
        size_bytes: r.size_bytes,
        sha256: sha_of(&r.sha256)?,
        job_id: r.job_id,
        init_size: r.init_size,
    };
    let (rendition, created) = api.storage.register_rendition(&n).await?;
    Ok(Response::new(pb::RegisterRenditionResponse {
        outcome: outcome(created),
        rendition: Some(rendition_pb(&rendition, None)),
    }))
}

pub(super) async fn register_snapshot(
    api: &StorageApi,
    req: Request<pb::RegisterSnapshotRequest>,
) -> Result<Response<pb::RegisterSnapshotResponse>, Status> {
    let (site, camera) = camera_of(&req.get_ref().camera, "camera")?;
    authorize_request(&req, &site, Permission::WriteMedia)?;
    let r = req.into_inner();
    let captured_at_us = micros(
        r.captured_at
            .as_ref()
            .ok_or_else(|| invalid("captured_at: required"))?,
        "captured_at",
    )?;
    let n = NewSnapshot {
        site,
        camera,
        kind: r.kind,
        captured_at_us,
        content_type: r.content_type,
        width: r.width,
        height: r.height,
        size_bytes: r.size_bytes,
        sha256: sha_of(&r.sha256)?,
        object_key: r.object_key,
        detection_id: r.detection_id,
        source_sequence: r.source_sequence,
    };
    let (snapshot, created) = api.storage.register_snapshot(&n).await?;
    Ok(Response::new(pb::RegisterSnapshotResponse {
        outcome: outcome(created),
        snapshot: Some(snapshot_pb(&snapshot)),
    }))
}

pub(super) async fn list_renditions(
    api: &StorageApi,
    req: Request<pb::ListRenditionsRequest>,
) -> Result<Response<pb::ListRenditionsResponse>, Status> {
    let (site, camera) = camera_of(&req.get_ref().camera, "camera")?;
    let who = authorize_request(&req, &site, Permission::ReadFootage)?.clone();
    let r = req.into_inner();
    let (from_us, to) = range_of(&r.range)?;
    let to_us = to.unwrap_or_else(now_micros);
    let after = match page_token(&r.page) {
        "" => None,
        t => {
            let bad = || invalid("page.page_token: not a token of this list");
            let mut parts = t.splitn(3, ':');
            let start = parts.next().and_then(|p| p.parse::<i64>().ok());
            let seq = parts.next().and_then(|p| p.parse::<u64>().ok());
            let profile = parts.next().map(str::to_string);
            match (start, seq, profile) {
                (Some(a), Some(b), Some(c)) => Some((a, b, c)),
                _ => return Err(bad()),
            }
        }
    };
    let audit = audit_of(&r.audit)?;
    api.log(
        &who,
        &site,
        pb::AccessAction::List,
        vec![recording_object(&site, &camera, from_us, to_us)],
        &audit,
        "ListRenditions",
    )
    .await?;
    let size = page_size(&r.page);
    let mut list = api
        .storage
        .index()
        .list_renditions(
            CameraWindow {
                site: &site,
                camera: &camera,
                from_us,
                to_us,
            },
            r.profile.trim(),
            after,
            size + 1,
        )
        .await?;
    let more = list.len() > size as usize;
    list.truncate(size as usize);
    let next_page_token = match (more, list.last()) {
        (true, Some(x)) => format!(
            "{}:{}:{}",
            x.new.start_us, x.new.source_sequence, x.new.profile
        ),
        _ => String::new(),
    };
    let ttl = api.storage.options().url_lifetime;
    Ok(Response::new(pb::ListRenditionsResponse {
        renditions: list
            .iter()
            .map(|x| {
                let media = media_url_pb(api.storage.object_url(&site, &x.new.object_key, ttl));
                rendition_pb(x, Some(media))
            })
            .collect(),
        page: Some(common::PageResponse { next_page_token }),
    }))
}

pub(super) async fn get_snapshot(
    api: &StorageApi,
    req: Request<pb::GetSnapshotRequest>,
) -> Result<Response<pb::GetSnapshotResponse>, Status> {
    let id = req.get_ref().snapshot_id.trim().to_string();
    if id.is_empty() {
        return Err(invalid("snapshot_id: required"));
    }
    let not_found = || Status::not_found(format!("no snapshot {id}"));
    let snap = api
        .storage
        .index()
        .snapshot(&id)
        .await?
        .ok_or_else(not_found)?;
    let who = match authorize_request(&req, &snap.new.site, Permission::ReadFootage) {
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
        &snap.new.site,
        pb::AccessAction::Read,
        vec![snapshot_object(&snap)],
        &audit,
        "GetSnapshot",
    )
    .await?;
    let media = media_url_pb(
        api.storage
            .object_url(&snap.new.site, &snap.new.object_key, ttl),
    );
    Ok(Response::new(pb::GetSnapshotResponse {
        snapshot: Some(snapshot_pb(&snap)),
        media: Some(media),
    }))
}

pub(super) async fn list_snapshots(
    api: &StorageApi,
    req: Request<pb::ListSnapshotsRequest>,
) -> Result<Response<pb::ListSnapshotsResponse>, Status> {
    let (site, camera) = camera_of(&req.get_ref().camera, "camera")?;
    let who = authorize_request(&req, &site, Permission::ReadFootage)?.clone();
    let r = req.into_inner();
    let (from_us, to) = range_of(&r.range)?;
    let to_us = to.unwrap_or_else(now_micros);
    let after = match page_token(&r.page) {
        "" => None,
        t => {
            let bad = || invalid("page.page_token: not a token of this list");
            let (a, b) = t.split_once(':').ok_or_else(bad)?;
            Some((a.parse::<i64>().map_err(|_| bad())?, b.to_string()))
        }
    };
    let ttl = duration_of(
        &r.url_ttl,
        "url_ttl",
        api.storage.options().url_lifetime,
        MAX_URL_LIFETIME,
    )?;
    let audit = audit_of(&r.audit)?;
    api.log(
        &who,
        &site,
        pb::AccessAction::List,
        vec![recording_object(&site, &camera, from_us, to_us)],
        &audit,
        "ListSnapshots",
    )
    .await?;
    let size = page_size(&r.page);
    let mut list = api
        .storage
        .index()
        .list_snapshots(
            CameraWindow {
                site: &site,
                camera: &camera,
                from_us,
                to_us,
            },
            r.kind,
            after,
            size + 1,
        )
        .await?;
    let more = list.len() > size as usize;
    list.truncate(size as usize);
    let next_page_token = match (more, list.last()) {
        (true, Some(x)) => format!("{}:{}", x.new.captured_at_us, x.id),
        _ => String::new(),
    };
    Ok(Response::new(pb::ListSnapshotsResponse {
        snapshots: list
            .iter()
            .map(|x| {
                let media = media_url_pb(api.storage.object_url(&site, &x.new.object_key, ttl));
                pb::ListedSnapshot {
                    snapshot: Some(snapshot_pb(x)),
                    media: Some(media),
                }
            })
            .collect(),
        page: Some(common::PageResponse { next_page_token }),
    }))
}
