//! `kordon detections`: what the cameras saw — stored detections, a live watch that resumes
//! after a dropped connection, and snapshots (a footage read: a reason is required and logged).

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use futures::StreamExt;
use kordon_proto::common::v1 as common;
use kordon_proto::detection::v1 as pb;
use kordon_proto::detection::v1::detection_service_client::DetectionServiceClient;
use kordon_proto::time::{micros_from_timestamp, timestamp_from_system_time as ts};
use kordon_runtime::client;
use sha2::Digest;

use crate::client::{ClientFlags, Output, rfc3339, status_error};
use crate::footage::{TimeWindow, camera_ref};

#[derive(Debug, clap::Subcommand)]
pub enum DetectionsCommand {
    /// List stored detections: track starts and ends, zone entries and exits, line crossings.
    List(ListArgs),
    /// Follow detections as they happen (reconnects and resumes where it left off).
    Watch(WatchArgs),
    /// Save a detection snapshot as JPEG, with the object's box drawn (a footage read).
    Snapshot(SnapshotArgs),
}

#[derive(Debug, Clone, clap::Args)]
pub struct Which {
    /// Only this camera, as SITE/CAMERA (repeatable).
    #[arg(long = "camera")]
    pub cameras: Vec<String>,
    /// Only cameras of this site.
    #[arg(long)]
    pub site: Option<String>,
    /// Only these classes, e.g. person, car (repeatable).
    #[arg(long = "class")]
    pub classes: Vec<String>,
    /// Only detections at or above this confidence (0..1).
    #[arg(long, default_value_t = 0.0)]
    pub min_confidence: f32,
}

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub client: ClientFlags,
    #[command(flatten)]
    pub which: Which,
    /// Only detections inside this zone (repeatable).
    #[arg(long = "zone")]
    pub zones: Vec<String>,
    #[command(flatten)]
    pub window: TimeWindow,
    /// At most this many detections.
    #[arg(long, default_value_t = 1000)]
    pub limit: usize,
}

#[derive(Debug, clap::Args)]
pub struct WatchArgs {
    #[command(flatten)]
    pub client: ClientFlags,
    #[command(flatten)]
    pub which: Which,
    /// Replay stored detections from this long ago first (at most 10m).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub since: Option<Duration>,
    /// Stop after this many detections (default: until interrupted).
    #[arg(long)]
    pub count: Option<usize>,
}

#[derive(Debug, clap::Args)]
pub struct SnapshotArgs {
    #[command(flatten)]
    pub client: ClientFlags,
    /// The snapshot id (a detection's SNAPSHOT column).
    pub id: String,
    /// Where to write the JPEG.
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output_file: PathBuf,
    /// Why you view this image (required; recorded in the access log).
    #[arg(long)]
    pub reason: String,
    /// Case or file number.
    #[arg(long, default_value = "")]
    pub case: String,
    /// Write the image as stored, without the box.
    #[arg(long)]
    pub no_box: bool,
}

pub async fn run(cmd: DetectionsCommand) -> anyhow::Result<()> {
    match cmd {
        DetectionsCommand::List(a) => list(a).await,
        DetectionsCommand::Watch(a) => watch(a).await,
        DetectionsCommand::Snapshot(a) => snapshot(a).await,
    }
}

fn cameras(w: &Which) -> anyhow::Result<Vec<common::CameraRef>> {
    w.cameras.iter().map(|c| camera_ref(c)).collect()
}

fn phase(p: i32) -> &'static str {
    match pb::TrackPhase::try_from(p) {
        Ok(pb::TrackPhase::Started) => "started",
        Ok(pb::TrackPhase::Updated) => "updated",
        Ok(pb::TrackPhase::Ended) => "ended",
        _ => "unknown",
    }
}

fn direction(d: i32) -> &'static str {
    match pb::LineDirection::try_from(d) {
        Ok(pb::LineDirection::LeftToRight) => "left-to-right",
        Ok(pb::LineDirection::RightToLeft) => "right-to-left",
        _ => "both",
    }
}

fn json(d: &pb::Detection) -> serde_json::Value {
    let b = d.r#box.unwrap_or_default();
    let c = d.camera.clone().unwrap_or_default();
    serde_json::json!({
        "id": d.id,
        "camera": format!("{}/{}", c.site, c.camera),
        "time": rfc3339(&d.time),
        "class": d.class_label,
        "confidence": d.confidence,
        "box": [b.left, b.top, b.right, b.bottom],
        "track_id": d.track_id,
        "phase": phase(d.phase),
        "track_started_at": rfc3339(&d.track_started_at),
        "zones": d.zones.iter().map(|z| serde_json::json!({
            "zone": z.zone, "entered_at": rfc3339(&z.entered_at)
        })).collect::<Vec<_>>(),
        "crossings": d.crossings.iter().map(|x| serde_json::json!({
            "line": x.line, "direction": direction(x.direction)
        })).collect::<Vec<_>>(),
        "snapshot_id": d.snapshot_id,
        "segment_sequence": d.segment_sequence,
    })
}

const HEADER: &str = "TIME                      CAMERA                 TRACK  PHASE    CLASS        CONF  ZONES / CROSSINGS                 SEGMENT  SNAPSHOT";

fn row(d: &pb::Detection) -> String {
    let c = d.camera.clone().unwrap_or_default();
    let mut notes: Vec<String> = d.zones.iter().map(|z| format!("in {}", z.zone)).collect();
    notes.extend(
        d.crossings
            .iter()
            .map(|x| format!("crossed {} {}", x.line, direction(x.direction))),
    );
    format!(
        "{:<25} {:<22} {:>5}  {:<8} {:<11} {:>5.2}  {:<33} {:>7}  {}",
        rfc3339(&d.time),
        format!("{}/{}", c.site, c.camera),
        d.track_id,
        phase(d.phase),
        d.class_label,
        d.confidence,
        notes.join(", "),
        // Not linked yet (or not recorded): a dash, not a sequence.
        match d.segment_sequence {
            0 => "-".to_string(),
            n => n.to_string(),
        },
        d.snapshot_id
    )
}

async fn connect(
    flags: &ClientFlags,
) -> anyhow::Result<DetectionServiceClient<client::AuthedChannel>> {
    Ok(DetectionServiceClient::new(
        client::connect(&flags.options()).await?,
    ))
}

async fn list(a: ListArgs) -> anyhow::Result<()> {
    let (from, to) = a.window.resolve()?;
    let mut c = connect(&a.client).await?;
    let mut token = String::new();
    let mut all = Vec::new();
    loop {
        let page = c
            .list_detections(pb::ListDetectionsRequest {
                site: a.which.site.clone().unwrap_or_default(),
                cameras: cameras(&a.which)?,
                range: Some(common::TimeRange {
                    start: Some(ts(from)),
                    end: to.map(ts),
                }),
                classes: a.which.classes.clone(),
                min_confidence: a.which.min_confidence,
                zones: a.zones.clone(),
                page: Some(common::PageRequest {
                    page_size: 500,
                    page_token: token.clone(),
                }),
            })
            .await
            .map_err(status_error)?
            .into_inner();
        all.extend(page.detections);
        token = page.page.map(|p| p.next_page_token).unwrap_or_default();
        if token.is_empty() || all.len() >= a.limit {
            break;
        }
    }
    all.truncate(a.limit);
    match a.client.output {
        Output::Json => {
            let v: Vec<_> = all.iter().map(json).collect();
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
        Output::Table => {
            println!("{HEADER}");
            for d in &all {
                println!("{}", row(d));
            }
            eprintln!("{} detections", all.len());
        }
    }
    Ok(())
}

async fn watch(a: WatchArgs) -> anyhow::Result<()> {
    if a.since.is_some_and(|s| s > Duration::from_secs(600)) {
        anyhow::bail!("--since reaches at most 10m back; use `kordon detections list` for older");
    }
    let mut since = a.since.map(|d| SystemTime::now() - d);
    let mut seen = 0usize;
    // The last stored time seen, to resume from after a dropped connection.
    let mut last: Option<SystemTime> = None;
    if a.client.output == Output::Table {
        println!("{HEADER}");
    }
    loop {
        let mut c = match connect(&a.client).await {
            Ok(c) => c,
            Err(e) if last.is_some() => {
                eprintln!("kordon: {e:#}; retrying in 1s");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            Err(e) => return Err(e),
        };
        let req = pb::WatchDetectionsRequest {
            site: a.which.site.clone().unwrap_or_default(),
            cameras: cameras(&a.which)?,
            classes: a.which.classes.clone(),
            min_confidence: a.which.min_confidence,
            since: since.map(ts),
        };
        let mut stream = match c.watch_detections(req).await {
            Ok(s) => s.into_inner(),
            Err(s) if s.code() == tonic::Code::Unavailable && last.is_some() => {
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            Err(s) => return Err(status_error(s)),
        };
        while let Some(item) = stream.next().await {
            match item {
                Ok(m) => {
                    let Some(d) = m.detection else { continue };
                    if let Some(t) = d.time.as_ref().and_then(micros_from_timestamp) {
                        last = Some(UNIX_EPOCH + Duration::from_micros(t.max(0) as u64));
                    }
                    match a.client.output {
                        Output::Json => println!("{}", serde_json::to_string(&json(&d))?),
                        Output::Table => println!("{}", row(&d)),
                    }
                    seen += 1;
                    if a.count.is_some_and(|n| seen >= n) {
                        return Ok(());
                    }
                }
                Err(s)
                    if matches!(
                        s.code(),
                        tonic::Code::ResourceExhausted | tonic::Code::Unavailable
                    ) =>
                {
                    eprintln!("kordon: {}; resuming", s.message());
                    break;
                }
                Err(s) => return Err(status_error(s)),
            }
        }
        // The stream ended (server restart, or we fell behind): resume from the last time
        // seen; the server replays what was stored after it without duplicates.
        since = last.or(since);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn snapshot(a: SnapshotArgs) -> anyhow::Result<()> {
    if a.reason.trim().is_empty() {
        anyhow::bail!("--reason is required: every footage access states why");
    }
    let mut c = connect(&a.client).await?;
    let s = c
        .get_snapshot(pb::GetSnapshotRequest {
            snapshot_id: a.id.clone(),
            audit: Some(common::AuditContext {
                reason: a.reason.clone(),
                case_id: a.case.clone(),
                recipient: String::new(),
            }),
        })
        .await
        .map_err(status_error)?
        .into_inner();
    let sha: [u8; 32] = sha2::Sha256::digest(&s.image).into();
    if sha.as_slice() != s.sha256.as_slice() {
        anyhow::bail!("snapshot {} does not match its recorded SHA-256", a.id);
    }
    let out = if a.no_box {
        s.image.clone()
    } else {
        // Find the detection the snapshot was taken for, to draw its box.
        let when = s
            .captured_at
            .ok_or_else(|| anyhow::anyhow!("snapshot without a capture time"))?;
        let list = c
            .list_detections(pb::ListDetectionsRequest {
                cameras: s.camera.clone().into_iter().collect(),
                range: Some(common::TimeRange {
                    start: Some(when),
                    end: Some(prost_types::Timestamp {
                        seconds: when.seconds + 1,
                        nanos: when.nanos,
                    }),
                }),
                page: Some(common::PageRequest {
                    page_size: 1000,
                    page_token: String::new(),
                }),
                ..Default::default()
            })
            .await
            .map_err(status_error)?
            .into_inner();
        // Every tracked object of that frame that shares the snapshot gets its box.
        let boxes: Vec<common::BoundingBox> = list
            .detections
            .iter()
            .filter(|d| {
                d.id == s.detection_id || (d.snapshot_id == a.id && d.time == s.captured_at)
            })
            .filter_map(|d| d.r#box)
            .collect();
        if boxes.is_empty() {
            eprintln!(
                "kordon: the detection of this snapshot is no longer stored; writing it \
                 without a box"
            );
            s.image.clone()
        } else {
            draw(&s.image, &boxes)?
        }
    };
    std::fs::write(&a.output_file, &out)
        .with_context(|| format!("cannot write {}", a.output_file.display()))?;
    let camera = s.camera.unwrap_or_default();
    eprintln!(
        "{}: {}x{} from {}/{} at {} (sha256 {})",
        a.output_file.display(),
        s.width,
        s.height,
        camera.site,
        camera.camera,
        rfc3339(&s.captured_at),
        hex::encode(&s.sha256[..8])
    );
    Ok(())
}

/// Decodes the JPEG, draws the boxes and encodes it again.
fn draw(jpeg: &[u8], boxes: &[common::BoundingBox]) -> anyhow::Result<Vec<u8>> {
    let mut d = jpeg_decoder::Decoder::new(jpeg);
    let pixels = d
        .decode()
        .context("the snapshot is not a JPEG this tool can read")?;
    let info = d.info().context("JPEG without a header")?;
    let (w, h) = (u32::from(info.width), u32::from(info.height));
    // jpeg-decoder gives RGB; the drawing helper works on 3-byte pixels in either order.
    let mut rgb = pixels;
    if rgb.len() != (w * h * 3) as usize {
        anyhow::bail!("unexpected JPEG pixel format");
    }
    for b in boxes {
        kordon_detection::snapshot::draw_box(
            w,
            h,
            &mut rgb,
            [b.left, b.top, b.right, b.bottom],
            2,
            [255, 64, 0],
        );
    }
    let mut out = Vec::new();
    jpeg_encoder::Encoder::new(&mut out, 90)
        .encode(&rgb, w as u16, h as u16, jpeg_encoder::ColorType::Rgb)
        .context("JPEG encoding failed")?;
    Ok(out)
}
