//! Playback as a player sees it: real fragmented-MP4 segments (made by ffmpeg) are written and
//! registered, GetPlaybackUrl issues a URL, and ffprobe — a player that is not Kordon — reads
//! the HLS playlist and every frame over HTTP. Run on SQLite + local files always, and on
//! PostgreSQL + S3 (Ceph RGW) when their variables are set.

mod support;

use std::sync::Arc;

use kordon_objects::{ObjectStore, ObjectStoreExt};
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

/// The HLS playlist at `url` (on the storage's HTTP server) and its text.
async fn playlist_at(running: &Running, url: &str) -> (u16, String) {
    let path = url.split_once(&running.http.to_string()).unwrap().1;
    let (status, _, body) = http_get(running.http, path, None).await;
    (status, String::from_utf8(body).unwrap())
}

/// `(uri, length, offset)` of a playlist's `EXT-X-BYTERANGE` media line.
type MediaRange = (String, u64, u64);
/// `(uri, length)` of a playlist's `EXT-X-MAP`.
type MapRange = (String, u64);

/// Each media byte range of a playlist, and each of its maps, in order.
fn byte_ranges(playlist: &str) -> (Vec<MediaRange>, Vec<MapRange>) {
    let mut media = Vec::new();
    let mut maps = Vec::new();
    let mut lines = playlist.lines().peekable();
    while let Some(l) = lines.next() {
        if let Some(r) = l.strip_prefix("#EXT-X-BYTERANGE:") {
            let (len, off) = r.split_once('@').unwrap();
            let uri = lines.next().unwrap().to_string();
            media.push((uri, len.parse().unwrap(), off.parse().unwrap()));
        } else if let Some(m) = l.strip_prefix("#EXT-X-MAP:URI=\"") {
            let (uri, rest) = m.split_once('"').unwrap();
            let len = rest
                .strip_prefix(",BYTERANGE=\"")
                .unwrap()
                .split_once('@')
                .unwrap()
                .0;
            maps.push((uri.to_string(), len.parse().unwrap()));
        }
    }
    (media, maps)
}

/// Renditions play through the same HLS endpoint as the originals: real fMP4 renditions (the
/// same recording at 160x120, media timeline continuing the source's) are registered for some
/// segments; the rendition playlist maps and byte-ranges each one, marks the holes (a segment
/// without a rendition, one registered before init sizes were recorded), and ffprobe plays it.
/// A URL of the originals never serves a rendition, nor the reverse.
async fn renditions_play_like_the_originals(
    index: kordon_storage::Index,
    objects: Arc<dyn ObjectStore>,
) {
    let dir = tempfile::tempdir().unwrap();
    let running = serve(
        index,
        objects.clone(),
        &common_config(dir.path(), Default::default(), true),
    )
    .await;
    let mut client = running.client().await;
    let cam = CameraRef {
        site: SITE.into(),
        camera: CAMERA.into(),
    };
    let run = uuid::Uuid::new_v4().simple().to_string();
    let base = T0 + (uuid::Uuid::new_v4().as_u128() % 1_000_000) as i64 * 60 * SEC;
    let originals = ffmpeg_segments_sized(dir.path(), 6, 2, "320x240");
    let small = ffmpeg_segments_sized(dir.path(), 6, 2, "160x120");
    const PROFILE: &str = "120p-100k";
    let mut sequences = Vec::new();
    let mut renditions = std::collections::HashMap::new();
    for (i, (bytes, rendition)) in originals.into_iter().zip(small).enumerate() {
        let start = base + i as i64 * 2 * SEC;
        let s = put_segment(
            objects.as_ref(),
            CAMERA,
            start,
            start + 2 * SEC,
            bytes.clone(),
            init_size(&bytes),
        )
        .await;
        let seq = running
            .storage
            .register_segment(&s)
            .await
            .unwrap()
            .record
            .sequence;
        sequences.push(seq);
        // No rendition of segment 2: a hole.
        if i == 2 {
            continue;
        }
        let key = format!("{SITE}/{CAMERA}/renditions/{PROFILE}/{run}-{seq}.mp4");
        objects
            .put(
                &kordon_objects::ObjectPath::parse(&key).unwrap(),
                rendition.clone().into(),
            )
            .await
            .unwrap();
        client
            .register_rendition(pb::RegisterRenditionRequest {
                camera: Some(cam.clone()),
                source_sequence: seq,
                profile: PROFILE.into(),
                range: range(start, start + 2 * SEC),
                codec: VideoCodec::H264 as i32,
                width: 160,
                height: 120,
                bitrate_bps: 100_000,
                object_key: key,
                size_bytes: rendition.len() as u64,
                sha256: kordon_objects::sha256(&rendition).to_vec(),
                job_id: "job-r".into(),
                init_size: init_size(&rendition),
            })
            .await
            .unwrap();
        renditions.insert(seq, rendition);
    }
    // Segment 4's rendition was registered before init sizes were recorded: left out.
    assert_eq!(
        exec(
            running.storage.index(),
            format!(
                "UPDATE renditions SET init_size = 0 WHERE camera = '{CAMERA}' \
                 AND source_sequence = {}",
                sequences[4]
            ),
        )
        .await,
        1
    );

    let ask = |profile: &str, to: Option<i64>| pb::GetPlaybackUrlRequest {
        camera: Some(cam.clone()),
        range: Some(TimeRange {
            start: Some(ts(base)),
            end: to.map(ts),
        }),
        audit: why(),
        url_ttl: None,
        rendition_profile: profile.into(),
    };
    let got = client
        .get_playback_url(ask(PROFILE, Some(base + 12 * SEC)))
        .await
        .unwrap()
        .into_inner();
    assert!(!got.live);
    let covered = got.covered.unwrap();
    assert_eq!(covered.start, Some(ts(base)));
    assert_eq!(covered.end, Some(ts(base + 12 * SEC)));
    let url = got.playback.unwrap().url;
    assert!(url.contains(&format!("profile={PROFILE}&")), "{url}");
    let (status, playlist) = playlist_at(&running, &url).await;
    assert_eq!(status, 200, "{playlist}");
    // Renditions of segments 0, 1, 3 and 5; holes before 3 (none made) and before 5 (no init
    // size), each a discontinuity.
    let (media, maps) = byte_ranges(&playlist);
    let played: Vec<u64> = [0, 1, 3, 5].iter().map(|&i| sequences[i]).collect();
    assert_eq!(media.len(), 4, "{playlist}");
    assert_eq!(maps.len(), 4, "{playlist}");
    assert_eq!(
        playlist.matches("#EXT-X-DISCONTINUITY").count(),
        2,
        "{playlist}"
    );
    let disc: Vec<usize> = playlist
        .match_indices("#EXT-X-DISCONTINUITY")
        .map(|(i, _)| i)
        .collect();
    let at = |seq: u64| playlist.find(&format!("/{seq}.mp4")).unwrap();
    assert!(
        disc[0] > at(played[1]) && disc[0] < at(played[2]),
        "{playlist}"
    );
    assert!(
        disc[1] > at(played[2]) && disc[1] < at(played[3]),
        "{playlist}"
    );
    // Every URI ends in .mp4 and serves the rendition's bytes in the ranges listed.
    let playlist_dir = url.split_once('?').unwrap().0.rsplit_once('/').unwrap().0;
    let playlist_dir = playlist_dir
        .split_once(&running.http.to_string())
        .unwrap()
        .1;
    for ((uri, len, off), ((map_uri, map_len), seq)) in media.iter().zip(maps.iter().zip(&played)) {
        assert_eq!(uri, map_uri);
        assert!(uri.ends_with(&format!("/{seq}.mp4")), "{uri}");
        let bytes = &renditions[seq];
        assert_eq!(*map_len, init_size(bytes));
        assert_eq!((*off, off + len), (init_size(bytes), bytes.len() as u64));
        let path = format!("{playlist_dir}/{uri}");
        let (status, _, body) = http_get(
            running.http,
            &path,
            Some(&format!("bytes={off}-{}", off + len - 1)),
        )
        .await;
        assert_eq!(status, 206, "{path}");
        assert_eq!(&body[..], &bytes[*off as usize..]);
        let (status, _, body) = http_get(
            running.http,
            &path,
            Some(&format!("bytes=0-{}", map_len - 1)),
        )
        .await;
        assert_eq!(status, 206);
        assert_eq!(&body[..], &bytes[..*map_len as usize]);
    }
    // A player that is not Kordon decodes it: 4 renditions × 2 s × 25 fps at 160x120.
    let probe = ffprobe(&url);
    assert_eq!(
        (probe.codec.as_str(), probe.width, probe.height),
        ("h264", 160, 120)
    );
    assert_eq!(probe.frames, 200);

    // The token binds the profile, both ways.
    let originals_url = client
        .get_playback_url(ask("", Some(base + 12 * SEC)))
        .await
        .unwrap()
        .into_inner()
        .playback
        .unwrap()
        .url;
    let (status, originals) = playlist_at(&running, &originals_url).await;
    assert_eq!(status, 200);
    assert_eq!(byte_ranges(&originals).0.len(), 6);
    let (q_path, q) = originals_url.split_once('?').unwrap();
    let as_rendition = format!("{q_path}?profile={PROFILE}&{q}");
    assert_eq!(playlist_at(&running, &as_rendition).await.0, 403);
    let as_original = url.replacen(&format!("profile={PROFILE}&"), "", 1);
    assert_eq!(playlist_at(&running, &as_original).await.0, 403);
    let as_other = url.replacen(PROFILE, "360p", 1);
    assert_eq!(playlist_at(&running, &as_other).await.0, 403);
    // Media: the rendition's grant without its profile, and the originals' grant with one.
    let rendition_media = format!("{playlist_dir}/{}", media[0].0);
    let stripped = rendition_media.replacen(&format!(".{PROFILE}/"), "/", 1);
    assert_ne!(stripped, rendition_media);
    assert_eq!(http_get(running.http, &stripped, None).await.0, 403);
    let (originals_media, _) = byte_ranges(&originals);
    let original_media = format!("{playlist_dir}/{}", originals_media[0].0);
    let (status, _, body) = http_get(running.http, &original_media, None).await;
    assert_eq!(status, 200);
    assert_ne!(
        &body[..],
        &renditions[&played[0]][..],
        "the originals' grant serves originals"
    );
    let (dir_part, file) = original_media.rsplit_once('/').unwrap();
    let with_profile = format!("{dir_part}.{PROFILE}/{file}");
    assert_eq!(http_get(running.http, &with_profile, None).await.0, 403);
    // Segment 2 has no rendition: its media is not found under the rendition's grant.
    let hole = rendition_media.replacen(
        &format!("/{}.mp4", played[0]),
        &format!("/{}.mp4", sequences[2]),
        1,
    );
    assert_eq!(http_get(running.http, &hole, None).await.0, 404);

    // Refusals: no rendition of the profile, live, a malformed profile.
    let e = client
        .get_playback_url(ask("720p", Some(base + 12 * SEC)))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound);
    assert!(
        e.message().contains("no rendition `720p`"),
        "{}",
        e.message()
    );
    let e = client
        .get_playback_url(ask(PROFILE, None))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(e.message().starts_with("range.end:"), "{}", e.message());
    let e = client
        .get_playback_url(ask("bad/profile", Some(base + 12 * SEC)))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(
        e.message().starts_with("rendition_profile:"),
        "{}",
        e.message()
    );

    // Issuing a rendition URL is logged like the originals': a PLAYBACK of the recording.
    let log = client
        .list_access_log(pb::ListAccessLogRequest {
            camera: Some(cam.clone()),
            actions: vec![pb::AccessAction::Playback as i32],
            audit: why(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let ours: Vec<_> = log
        .entries
        .iter()
        .filter(|e| {
            e.objects
                .iter()
                .any(|o| o.range.as_ref().and_then(|r| r.start) == Some(ts(base)))
        })
        .collect();
    // The rendition URL, the originals' URL and the NOT_FOUND one (logged before the lookup).
    assert_eq!(ours.len(), 3, "{:#?}", log.entries);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn renditions_on_sqlite_and_local_files() {
    let db = sqlite().await;
    let media = tempfile::tempdir().unwrap();
    let objects = kordon_objects::build(&kordon_objects::ObjectStoreConfig::Local {
        root: media.path().to_path_buf(),
    })
    .unwrap();
    renditions_play_like_the_originals(db.index.clone(), objects).await;
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn renditions_on_postgres_and_s3() {
    let Some(s3) = kordon_objects::testenv::s3_config("renditions on PostgreSQL + S3") else {
        return;
    };
    let Some(db) = postgres("renditions on PostgreSQL + S3").await else {
        return;
    };
    let objects = kordon_objects::build(&s3).unwrap();
    renditions_play_like_the_originals(db.index.clone(), objects).await;
    db.cleanup().await;
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
