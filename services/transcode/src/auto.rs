//! Thumbnails for every new segment, without a job (`transcode.thumbnails.automatic`), so the
//! console's timeline has a picture per segment as soon as it is recorded.
//!
//! Every `poll`, for each configured site: the cameras with footage since the last look
//! (`ListRecordings` of the site), then each camera's segments that started since its cursor
//! (`ListSegments`), each turned into one JPEG, written and registered like a thumbnail job's.
//! Both reads are footage reads and are logged with the reason "automatic timeline
//! thumbnails"; a longer `poll` means fewer access-log entries and later thumbnails.
//!
//! The cursors live in memory: after a restart the loop starts one `poll` back, and a thumbnail
//! made twice is the same bytes under the same key, which storage accepts as already present.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use kordon_objects::time::now_micros;
use kordon_proto::common::v1 as common;
use kordon_proto::storage::v1 as spb;

use crate::TranscodeError;
use crate::metrics;
use crate::service::{Transcode, seg_range, seq_of, time_range};
use crate::spec::{Kind, Work};

const REASON: &str = "automatic timeline thumbnails";

pub async fn run(t: Arc<Transcode>) {
    let cfg = t.config.thumbnails.clone();
    if cfg.sites.is_empty() {
        tracing::warn!(
            "transcode.thumbnails.automatic is on but thumbnails.sites is empty: no automatic thumbnails"
        );
        return;
    }
    tracing::info!(sites = ?cfg.sites, poll = ?cfg.poll, width = cfg.width, "automatic thumbnails for new segments");
    let start = now_micros() - cfg.poll.as_micros() as i64;
    let mut cursors: BTreeMap<(String, String), i64> = BTreeMap::new();
    let mut last_look: BTreeMap<String, i64> = BTreeMap::new();
    let audit = common::AuditContext {
        reason: REASON.into(),
        ..Default::default()
    };
    let never = Arc::new(AtomicBool::new(false));
    loop {
        for site in &cfg.sites {
            let since = *last_look.get(site).unwrap_or(&start);
            let now = now_micros();
            match cameras(&t, site, since, now, &audit).await {
                Ok(cams) => {
                    last_look.insert(site.clone(), now);
                    for camera in cams {
                        let from = *cursors
                            .entry((site.clone(), camera.clone()))
                            .or_insert(start);
                        match one_camera(&t, site, &camera, from, now, cfg.width, &audit, &never)
                            .await
                        {
                            Ok(next) => {
                                cursors.insert((site.clone(), camera), next);
                            }
                            Err(e) => {
                                metrics::get()
                                    .auto_thumbnails
                                    .with_label_values(&["failed"])
                                    .inc();
                                tracing::warn!(site = %site, camera = %camera, error = %e,
                                               "automatic thumbnails failed; retried next poll");
                            }
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(site = %site, error = %e, "cannot list the site's recordings; retried next poll")
                }
            }
        }
        tokio::select! {
            _ = t.shutdown_token().cancelled() => return,
            _ = tokio::time::sleep(cfg.poll) => {}
        }
    }
}

async fn cameras(
    t: &Transcode,
    site: &str,
    from_us: i64,
    to_us: i64,
    audit: &common::AuditContext,
) -> Result<Vec<String>, TranscodeError> {
    let mut client = t.destinations().storage.clone();
    let mut out = std::collections::BTreeSet::new();
    let mut token = String::new();
    loop {
        let r = client
            .list_recordings(spb::ListRecordingsRequest {
                scope: Some(spb::list_recordings_request::Scope::Site(site.to_string())),
                range: Some(time_range(from_us, to_us)),
                audit: Some(audit.clone()),
                page: Some(common::PageRequest {
                    page_size: 1000,
                    page_token: token,
                }),
                ..Default::default()
            })
            .await?
            .into_inner();
        for r in r.ranges {
            if r.kind == spb::RecordingRangeKind::Recorded as i32
                && let Some(c) = r.camera
            {
                out.insert(c.camera);
            }
        }
        token = r.page.map(|p| p.next_page_token).unwrap_or_default();
        if token.is_empty() {
            break;
        }
    }
    Ok(out.into_iter().collect())
}

/// Thumbnails for the camera's segments that started at or after `from_us`; returns the next
/// cursor.
#[allow(clippy::too_many_arguments)]
async fn one_camera(
    t: &Transcode,
    site: &str,
    camera: &str,
    from_us: i64,
    to_us: i64,
    width: u32,
    audit: &common::AuditContext,
    never: &Arc<AtomicBool>,
) -> Result<i64, TranscodeError> {
    let work = Work {
        site: site.to_string(),
        camera: camera.to_string(),
        from_us,
        to_us,
        kind: Kind::Thumbnails {
            width,
            interval_us: None,
        },
    };
    let mut client = t.destinations().storage.clone();
    let r = client
        .list_segments(spb::ListSegmentsRequest {
            camera: Some(crate::service::camera_ref(&work)),
            range: Some(time_range(from_us, to_us)),
            audit: Some(audit.clone()),
            page: Some(common::PageRequest {
                page_size: 1000,
                page_token: String::new(),
            }),
        })
        .await?
        .into_inner();
    let mut next = from_us;
    let mut segments = r.segments;
    segments.sort_by_key(seq_of);
    for seg in segments {
        let (start, _) = seg_range(&seg);
        if start < from_us {
            continue;
        }
        t.thumbnail_segment(&work, &seg, width, None, never).await?;
        metrics::get()
            .auto_thumbnails
            .with_label_values(&["made"])
            .inc();
        next = next.max(start + 1);
    }
    Ok(next)
}
