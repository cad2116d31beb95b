//! `kordon footage`: find recorded footage (and gaps) by camera or site and time, with the
//! playback URL of each recorded range. Every call states a reason; storage logs it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kordon_proto::common::v1 as common;
use kordon_proto::storage::v1 as spb;
use kordon_proto::storage::v1::storage_service_client::StorageServiceClient;
use kordon_runtime::client;

use crate::client::{ClientFlags, Output, status_error};

#[derive(Debug, clap::Subcommand)]
pub enum FootageCommand {
    /// List recorded ranges and gaps, each recorded range with its HLS playback URL.
    List(ListArgs),
}

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub client: ClientFlags,
    /// One camera, as SITE/CAMERA.
    #[arg(long, conflicts_with = "site", required_unless_present = "site")]
    pub camera: Option<String>,
    /// Every camera of a site.
    #[arg(long)]
    pub site: Option<String>,
    /// From this long ago until now, e.g. `1h`, `30m`.
    #[arg(long, value_parser = humantime::parse_duration, conflicts_with_all = ["from", "to"])]
    pub since: Option<Duration>,
    /// Start, RFC 3339 (e.g. 2026-11-27T10:00:00Z).
    #[arg(long, value_parser = humantime::parse_rfc3339_weak)]
    pub from: Option<SystemTime>,
    /// End, RFC 3339; default now.
    #[arg(long, value_parser = humantime::parse_rfc3339_weak)]
    pub to: Option<SystemTime>,
    /// Why you read this footage (required; recorded in the access log).
    #[arg(long)]
    pub reason: String,
    /// Case or file number.
    #[arg(long, default_value = "")]
    pub case: String,
}

use kordon_proto::time::timestamp_from_system_time as ts;

fn rfc3339(t: &Option<prost_types::Timestamp>) -> String {
    match t {
        Some(t) if t.seconds >= 0 => humantime::format_rfc3339_millis(
            UNIX_EPOCH + Duration::new(t.seconds as u64, t.nanos.max(0) as u32),
        )
        .to_string(),
        _ => String::new(),
    }
}

fn gap_reason(r: i32) -> &'static str {
    match spb::GapReason::try_from(r) {
        Ok(spb::GapReason::StreamLost) => "stream lost",
        Ok(spb::GapReason::StreamError) => "stream error",
        Ok(spb::GapReason::IngestRestart) => "ingest restart",
        Ok(spb::GapReason::SpoolOverflow) => "spool overflow",
        _ => "unexplained",
    }
}

pub async fn run(cmd: FootageCommand) -> anyhow::Result<()> {
    match cmd {
        FootageCommand::List(args) => list(args).await,
    }
}

async fn list(args: ListArgs) -> anyhow::Result<()> {
    if args.reason.trim().is_empty() {
        anyhow::bail!("--reason must say why you read this footage (it is logged)");
    }
    let scope = match (&args.camera, &args.site) {
        (Some(c), _) => {
            let (site, camera) = c
                .split_once('/')
                .filter(|(s, c)| !s.is_empty() && !c.is_empty())
                .ok_or_else(|| anyhow::anyhow!("--camera must be SITE/CAMERA, got `{c}`"))?;
            spb::list_recordings_request::Scope::Camera(common::CameraRef {
                site: site.to_string(),
                camera: camera.to_string(),
            })
        }
        (None, Some(s)) => spb::list_recordings_request::Scope::Site(s.clone()),
        (None, None) => anyhow::bail!("give --camera SITE/CAMERA or --site SITE"),
    };
    let now = SystemTime::now();
    let (from, to) = match (args.since, args.from, args.to) {
        (Some(d), _, _) => (now.checked_sub(d).unwrap_or(UNIX_EPOCH), None),
        (None, Some(f), t) => (f, t),
        (None, None, _) => anyhow::bail!("give --since DURATION or --from TIME [--to TIME]"),
    };
    let channel = client::connect(&args.client.options()).await?;
    let mut storage = StorageServiceClient::new(channel);
    let mut ranges = Vec::new();
    let mut token = String::new();
    loop {
        let resp = storage
            .list_recordings(spb::ListRecordingsRequest {
                scope: Some(scope.clone()),
                range: Some(common::TimeRange {
                    start: Some(ts(from)),
                    end: to.map(ts),
                }),
                audit: Some(common::AuditContext {
                    reason: args.reason.clone(),
                    case_id: args.case.clone(),
                    recipient: String::new(),
                }),
                page: Some(common::PageRequest {
                    page_size: 1000,
                    page_token: token.clone(),
                }),
                ..Default::default()
            })
            .await
            .map_err(status_error)?
            .into_inner();
        ranges.extend(resp.ranges);
        token = resp.page.map(|p| p.next_page_token).unwrap_or_default();
        if token.is_empty() {
            break;
        }
    }
    match args.client.output {
        Output::Json => {
            let out: Vec<serde_json::Value> = ranges
                .iter()
                .map(|r| {
                    let cam = r.camera.clone().unwrap_or_default();
                    let range = r.range.unwrap_or_default();
                    let recorded = r.kind == spb::RecordingRangeKind::Recorded as i32;
                    serde_json::json!({
                        "site": cam.site,
                        "camera": cam.camera,
                        "kind": if recorded { "recorded" } else { "gap" },
                        "from": rfc3339(&range.start),
                        "to": rfc3339(&range.end),
                        "segments": r.segment_count,
                        "bytes": r.size_bytes,
                        "gap_reason": (!recorded).then(|| gap_reason(r.gap_reason)),
                        "gap_detail": (!recorded).then(|| r.gap_detail.clone()),
                        "playback_url": r.playback.as_ref().map(|p| p.url.clone()),
                        "playback_expires": r.playback.as_ref().map(|p| rfc3339(&p.expires_at)),
                    })
                })
                .collect();
            println!("{}", serde_json::to_string_pretty(&out)?);
        }
        Output::Table => {
            println!(
                "{:<24} {:<9} {:<25} {:<25} {:>8}  DETAIL",
                "CAMERA", "KIND", "FROM", "TO", "SEGMENTS"
            );
            for r in &ranges {
                let cam = r.camera.clone().unwrap_or_default();
                let range = r.range.unwrap_or_default();
                let recorded = r.kind == spb::RecordingRangeKind::Recorded as i32;
                let detail = if recorded {
                    r.playback
                        .as_ref()
                        .map(|p| p.url.clone())
                        .unwrap_or_default()
                } else {
                    format!("{}: {}", gap_reason(r.gap_reason), r.gap_detail)
                };
                println!(
                    "{:<24} {:<9} {:<25} {:<25} {:>8}  {}",
                    format!("{}/{}", cam.site, cam.camera),
                    if recorded { "recorded" } else { "gap" },
                    rfc3339(&range.start),
                    rfc3339(&range.end),
                    r.segment_count,
                    detail
                );
            }
        }
    }
    Ok(())
}
