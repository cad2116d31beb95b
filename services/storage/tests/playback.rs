//! Playback as a player sees it: real fragmented-MP4 segments (made by ffmpeg) are written and
//! registered, GetPlaybackUrl issues a URL, and ffprobe — a player that is not Kordon — reads
//! the HLS playlist and every frame over HTTP. Run on SQLite + local files always, and on
//! PostgreSQL + S3 (Ceph RGW) when their variables are set.

mod support;

use std::sync::Arc;

use kordon_objects::ObjectStore;
use kordon_proto::common::v1::{AuditContext, CameraRef, TimeRange, VideoCodec};
use kordon_proto::storage::v1 as pb;
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

fn why() -> Option<AuditContext> {
    Some(AuditContext {
        reason: "playback test".into(),
        ..Default::default()
    })
}

struct Probe {
    codec: String,
    width: u64,
    height: u64,
    frames: u64,
}

/// ffprobe decodes every frame of `url` and reports the stream.
fn ffprobe(url: &str) -> Probe {
    let out = std::process::Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0", "-count_frames"])
        .args([
            "-show_entries",
            "stream=codec_name,width,height,nb_read_frames",
        ])
        .args(["-of", "json"])
        .arg(url)
        .output()
        .expect("ffprobe is installed");
    assert!(
        out.status.success(),
        "ffprobe failed on {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let s = &v["streams"][0];
    Probe {
        codec: s["codec_name"].as_str().unwrap_or("").to_string(),
        width: s["width"].as_u64().unwrap_or(0),
        height: s["height"].as_u64().unwrap_or(0),
        frames: s["nb_read_frames"]
            .as_str()
            .and_then(|n| n.parse().ok())
            .unwrap_or(0),
    }
}

async fn played_back_by_ffprobe(index: kordon_storage::Index, objects: Arc<dyn ObjectStore>) {
    let dir = tempfile::tempdir().unwrap();
    let running = serve(
        index,
        objects.clone(),
        &common_config(dir.path(), Default::default(), true),
    )
    .await;
    let mut client = running.client().await;

    // 3 × 2 s recorded, a registered 4 s gap, 2 × 2 s recorded. A unique wall-clock base per
    // run keeps keys apart in a shared bucket.
    let base = T0 + (uuid::Uuid::new_v4().as_u128() % 1_000_000) as i64 * 60 * SEC;
    let mut media = Vec::new();
    let recorded = ffmpeg_segments(dir.path(), 5, 2);
    for (bytes, offset) in recorded.into_iter().zip([0i64, 2, 4, 10, 12]) {
        let init = init_size(&bytes);
        let start = base + offset * SEC;
        let s = put_segment(
            objects.as_ref(),
            CAMERA,
            start,
            start + 2 * SEC,
            bytes.clone(),
            init,
        )
        .await;
        let resp = client
            .register_segment(pb::RegisterSegmentRequest {
                camera: Some(CameraRef {
                    site: SITE.into(),
                    camera: CAMERA.into(),
                }),
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
            .into_inner();
        media.push((resp.segment.unwrap(), bytes));
    }
    client
        .register_gap(pb::RegisterGapRequest {
            camera: Some(CameraRef {
                site: SITE.into(),
                camera: CAMERA.into(),
            }),
            range: range(base + 6 * SEC, base + 10 * SEC),
            reason: pb::GapReason::StreamLost as i32,
            detail: "camera rebooted".into(),
            ingest_replica: "ingest-0".into(),
        })
        .await
        .unwrap();

    let url = client
        .get_playback_url(pb::GetPlaybackUrlRequest {
            camera: Some(CameraRef {
                site: SITE.into(),
                camera: CAMERA.into(),
            }),
            range: range(base, base + 14 * SEC),
            audit: why(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .playback
        .unwrap()
        .url;

    // The playlist as written.
    let path = url
        .split_once(&running.http.to_string())
        .unwrap()
        .1
        .to_string();
    let (status, headers, body) = http_get(running.http, &path, None).await;
    assert_eq!(status, 200);
    assert_eq!(
        header(&headers, "content-type"),
        Some("application/vnd.apple.mpegurl")
    );
    let playlist = String::from_utf8(body).unwrap();
    assert!(playlist.contains("#EXT-X-VERSION:7"), "{playlist}");
    assert!(playlist.contains("#EXT-X-PLAYLIST-TYPE:VOD"), "{playlist}");
    assert_eq!(playlist.matches("#EXT-X-MAP:").count(), 5, "{playlist}");
    // Media timestamps continue from segment to segment: only the gap is a discontinuity.
    assert_eq!(
        playlist.matches("#EXT-X-DISCONTINUITY").count(),
        1,
        "{playlist}"
    );
    let disc = playlist.find("#EXT-X-DISCONTINUITY").unwrap();
    let seq = |i: usize| format!("/{}.mp4", media[i].0.link.as_ref().unwrap().sequence);
    assert!(disc > playlist.rfind(&seq(2)).unwrap() && disc < playlist.find(&seq(3)).unwrap());
    assert_eq!(playlist.matches("#EXT-X-PROGRAM-DATE-TIME:").count(), 5);
    assert!(playlist.ends_with("#EXT-X-ENDLIST\n"));

    // A player that is not Kordon decodes every frame: 5 segments × 2 s × 25 fps.
    let probe = ffprobe(&url);
    assert_eq!(probe.codec, "h264");
    assert_eq!((probe.width, probe.height), (320, 240));
    assert_eq!(probe.frames, 250);

    // One segment's media URL plays on its own too.
    let seg = client
        .get_segment(pb::GetSegmentRequest {
            camera: Some(CameraRef {
                site: SITE.into(),
                camera: CAMERA.into(),
            }),
            sequence: media[1].0.link.as_ref().unwrap().sequence,
            audit: why(),
            url_ttl: None,
        })
        .await
        .unwrap()
        .into_inner();
    let seg_url = seg.media.unwrap().url;
    assert_eq!(ffprobe(&seg_url).frames, 50);

    // Range requests on the media endpoint.
    let seg_path = seg_url
        .split_once(&running.http.to_string())
        .unwrap()
        .1
        .to_string();
    let whole = &media[1].1;
    let (status, headers, body) = http_get(running.http, &seg_path, None).await;
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "accept-ranges"), Some("bytes"));
    assert_eq!(&body[..], &whole[..]);
    let (status, headers, body) = http_get(running.http, &seg_path, Some("bytes=10-109")).await;
    assert_eq!(status, 206);
    assert_eq!(
        header(&headers, "content-range"),
        Some(format!("bytes 10-109/{}", whole.len()).as_str())
    );
    assert_eq!(&body[..], &whole[10..110]);
    let (status, _, body) = http_get(running.http, &seg_path, Some("bytes=-16")).await;
    assert_eq!(status, 206);
    assert_eq!(&body[..], &whole[whole.len() - 16..]);
    let (status, headers, _) = http_get(
        running.http,
        &seg_path,
        Some(&format!("bytes={}-", whole.len())),
    )
    .await;
    assert_eq!(status, 416);
    assert_eq!(
        header(&headers, "content-range"),
        Some(format!("bytes */{}", whole.len()).as_str())
    );

    // Forged, widened or foreign grants are refused.
    let (dir_part, file) = seg_path.rsplit_once('/').unwrap();
    let (prefix, grant) = dir_part.rsplit_once('/').unwrap();
    let (from, rest) = grant.split_once('.').unwrap();
    let from: i64 = from.parse().unwrap();
    // `from` one second earlier, not re-signed.
    let widened = format!("{prefix}/{}.{rest}/{file}", from - SEC);
    assert_eq!(http_get(running.http, &widened, None).await.0, 403);
    let other_camera = seg_path.replacen(&format!("/{CAMERA}/"), "/gate-4/", 1);
    assert_eq!(http_get(running.http, &other_camera, None).await.0, 403);
    let tampered_playlist = path.replacen("token=", "token=A", 1);
    assert_eq!(
        http_get(running.http, &tampered_playlist, None).await.0,
        403
    );
    let no_token = path.split_once('?').unwrap().0.to_string();
    assert_eq!(http_get(running.http, &no_token, None).await.0, 403);
    // A segment outside the grant's range is not served with it.
    let outside = seg_path.replacen(
        &format!("/{}.mp4", media[1].0.link.as_ref().unwrap().sequence),
        &format!("/{}.mp4", media[4].0.link.as_ref().unwrap().sequence),
        1,
    );
    assert_eq!(http_get(running.http, &outside, None).await.0, 404);

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
    played_back_by_ffprobe(db.index.clone(), objects).await;
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_and_s3() {
    let Some(s3) = kordon_objects::testenv::s3_config("playback on PostgreSQL + S3") else {
        return;
    };
    let Some(db) = postgres("playback on PostgreSQL + S3").await else {
        return;
    };
    let objects = kordon_objects::build(&s3).unwrap();
    played_back_by_ffprobe(db.index.clone(), objects).await;
    db.cleanup().await;
}
