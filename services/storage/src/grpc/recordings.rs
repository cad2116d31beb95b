//! Footage reads: ListRecordings, ListSegments, GetSegment and GetPlaybackUrl
//! (`ReadFootage`, each logged before it answers).

use kordon_objects::time::now_micros;
use kordon_proto::common::v1 as common;
use kordon_proto::storage::v1 as pb;
use kordon_runtime::auth::{Permission, authorize_request};
use tonic::{Request, Response, Status};

use super::convert::{
    audit_of, camera_of, camera_ref, duration_of, media_url_pb, page_size, page_token, range_of,
    recording_object, segment_pb, time_range,
};
use super::{StorageApi, invalid};
use crate::StorageError;
use crate::audit::AccessObjectRec;
use crate::config::{MAX_MERGE_TOLERANCE, MAX_URL_LIFETIME};
use crate::playback::LIVE;
use crate::recordings::RangeKind;

pub(super) async fn list_recordings(
    api: &StorageApi,
    req: Request<pb::ListRecordingsRequest>,
) -> Result<Response<pb::ListRecordingsResponse>, Status> {
    use pb::list_recordings_request::Scope;
    let (site, one_camera) = match &req.get_ref().scope {
        Some(Scope::Camera(c)) => {
            let (s, c) = camera_of(&Some(c.clone()), "camera")?;
            (s, Some(c))
        }
        Some(Scope::Site(s)) => {
            kordon_objects::validate_name("site", s).map_err(|e| invalid(e.to_string()))?;
            (s.clone(), None)
        }
        None => return Err(invalid("scope: camera or site required")),
    };
    let who = authorize_request(&req, &site, Permission::ReadFootage)?.clone();
    let r = req.into_inner();
    let (from_us, to) = range_of(&r.range)?;
    let to_us = to.unwrap_or_else(now_micros);
    if to_us <= from_us {
        return Err(invalid("range: starts in the future"));
    }
    let defaults = api.storage.options();
    let tolerance = duration_of(
        &r.merge_tolerance,
        "merge_tolerance",
        defaults.merge_tolerance,
        MAX_MERGE_TOLERANCE,
    )?;
    let ttl = duration_of(
        &r.url_ttl,
        "url_ttl",
        defaults.url_lifetime,
        MAX_URL_LIFETIME,
    )?;
    let offset: usize = match page_token(&r.page) {
        "" => 0,
        t => t
            .parse()
            .map_err(|_| invalid("page.page_token: not a token of this list"))?,
    };
    let audit = audit_of(&r.audit)?;
    api.log(
        &who,
        &site,
        pb::AccessAction::List,
        vec![recording_object(
            &site,
            one_camera.as_deref().unwrap_or(""),
            from_us,
            to_us,
        )],
        &audit,
        "ListRecordings",
    )
    .await?;

    let cameras = match one_camera {
        Some(c) => vec![c],
        None => api.storage.index().cameras(&site).await?,
    };
    let mut ranges = Vec::new();
    for camera in &cameras {
        for t in api
            .storage
            .timeline(&site, camera, from_us, to_us, tolerance)
            .await?
        {
            let mut out = pb::RecordingRange {
                camera: Some(camera_ref(&site, camera)),
                range: Some(time_range(t.start_us, t.end_us)),
                ..Default::default()
            };
            match t.kind {
                RangeKind::Recorded {
                    segment_count,
                    size_bytes,
                } => {
                    out.kind = pb::RecordingRangeKind::Recorded as i32;
                    out.segment_count = segment_count;
                    out.size_bytes = size_bytes;
                    out.playback = Some(media_url_pb(
                        api.storage
                            .playback_url(&site, camera, t.start_us, t.end_us, ttl),
                    ));
                }
                RangeKind::Gap { reason, detail } => {
                    out.kind = pb::RecordingRangeKind::Gap as i32;
                    out.gap_reason = reason as i32;
                    out.gap_detail = detail;
                }
            }
            ranges.push(out);
        }
    }
    let size = page_size(&r.page) as usize;
    let total = ranges.len();
    let page: Vec<_> = ranges.into_iter().skip(offset).take(size).collect();
    let next = offset + page.len();
    Ok(Response::new(pb::ListRecordingsResponse {
        ranges: page,
        page: Some(common::PageResponse {
            next_page_token: if next < total {
                next.to_string()
            } else {
                String::new()
            },
        }),
    }))
}

pub(super) async fn list_segments(
    api: &StorageApi,
    req: Request<pb::ListSegmentsRequest>,
) -> Result<Response<pb::ListSegmentsResponse>, Status> {
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
            Some((
                a.parse::<i64>().map_err(|_| bad())?,
                b.parse::<u64>().map_err(|_| bad())?,
            ))
        }
    };
    let audit = audit_of(&r.audit)?;
    api.log(
        &who,
        &site,
        pb::AccessAction::List,
        vec![recording_object(&site, &camera, from_us, to_us)],
        &audit,
        "ListSegments",
    )
    .await?;
    let size = page_size(&r.page);
    let mut segments = api
        .storage
        .index()
        .list_segments(&site, &camera, from_us, to_us, after, size + 1)
        .await?;
    let more = segments.len() > size as usize;
    segments.truncate(size as usize);
    let next_page_token = match (more, segments.last()) {
        (true, Some(s)) => format!("{}:{}", s.start_us, s.sequence),
        _ => String::new(),
    };
    Ok(Response::new(pb::ListSegmentsResponse {
        segments: {
            let fate = api.storage.segment_fate(&site, &camera).await?;
            segments
                .iter()
                .map(|s| segment_pb(s, Some(fate(s))))
                .collect()
        },
        page: Some(common::PageResponse { next_page_token }),
    }))
}

pub(super) async fn get_segment(
    api: &StorageApi,
    req: Request<pb::GetSegmentRequest>,
) -> Result<Response<pb::GetSegmentResponse>, Status> {
    let (site, camera) = camera_of(&req.get_ref().camera, "camera")?;
    let who = authorize_request(&req, &site, Permission::ReadFootage)?.clone();
    let r = req.into_inner();
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
        pb::AccessAction::Read,
        vec![AccessObjectRec {
            kind: pb::AccessObjectKind::Segment as i32,
            site: site.clone(),
            camera: camera.clone(),
            start_us: None,
            end_us: None,
            id: r.sequence.to_string(),
        }],
        &audit,
        "GetSegment",
    )
    .await?;
    let seg = api
        .storage
        .index()
        .segment(&site, &camera, r.sequence)
        .await?
        .filter(|s| s.deleted_at_us.is_none())
        .ok_or_else(|| {
            Status::from(StorageError::NotFound(format!(
                "camera {site}/{camera} has no segment {}",
                r.sequence
            )))
        })?;
    let fate = api.storage.segment_fate(&site, &camera).await?;
    Ok(Response::new(pb::GetSegmentResponse {
        media: Some(api.media_url(&seg, ttl)),
        segment: Some(segment_pb(&seg, Some(fate(&seg)))),
    }))
}

pub(super) async fn get_playback_url(
    api: &StorageApi,
    req: Request<pb::GetPlaybackUrlRequest>,
) -> Result<Response<pb::GetPlaybackUrlResponse>, Status> {
    let (site, camera) = camera_of(&req.get_ref().camera, "camera")?;
    let who = authorize_request(&req, &site, Permission::ReadFootage)?.clone();
    let r = req.into_inner();
    let (from_us, to) = range_of(&r.range)?;
    let to_us = to.unwrap_or(LIVE);
    let ttl = duration_of(
        &r.url_ttl,
        "url_ttl",
        api.storage.options().url_lifetime,
        MAX_URL_LIFETIME,
    )?;
    let profile = r.rendition_profile.trim();
    if !profile.is_empty() {
        crate::media::valid_profile(profile)
            .map_err(|_| invalid("rendition_profile: 1 to 64 letters, digits, `-`, `_` or `.`"))?;
        // Renditions are made after recording and registered in any order: a live (EVENT)
        // playlist, which may only grow at its end, could not show them faithfully.
        if to_us == LIVE {
            return Err(invalid(
                "range.end: rendition playback needs a closed range (renditions are made \
                 after recording); leave rendition_profile empty to play live",
            ));
        }
    }
    let audit = audit_of(&r.audit)?;
    api.log(
        &who,
        &site,
        pb::AccessAction::Playback,
        vec![recording_object(&site, &camera, from_us, to_us)],
        &audit,
        "GetPlaybackUrl",
    )
    .await?;
    let covered = if profile.is_empty() {
        api.storage.covered(&site, &camera, from_us, to_us).await?
    } else {
        let items = api
            .storage
            .rendition_playlist_segments(&site, &camera, profile, from_us, to_us)
            .await?;
        items.first().map(|f| {
            (
                f.start_us,
                items.iter().map(|s| s.end_us).fold(f.end_us, i64::max),
            )
        })
    };
    let Some((first, last)) = covered else {
        return Err(StorageError::NotFound(if profile.is_empty() {
            format!("nothing is recorded for {site}/{camera} in the range")
        } else {
            format!(
                "no rendition `{profile}` of {site}/{camera} covers the range (make one with a \
                 transcode rendition job)"
            )
        })
        .into());
    };
    let playback = media_url_pb(
        api.storage
            .rendition_playback_url(&site, &camera, profile, from_us, to_us, ttl),
    );
    Ok(Response::new(pb::GetPlaybackUrlResponse {
        playback: Some(playback),
        covered: Some(time_range(first, last)),
        live: to_us == LIVE,
    }))
}
