//! `kordon footage`: find recorded footage (and gaps) by camera or site and time, with the
//! playback URL of each recorded range. Every call states a reason; storage logs it.

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use sha2::{Digest, Sha256};

use kordon_proto::common::v1 as common;
use kordon_proto::storage::v1 as spb;
use kordon_proto::storage::v1::storage_service_client::StorageServiceClient;
use kordon_runtime::client;

use crate::client::{ClientFlags, Output, bar, rfc3339, status_error};

#[derive(Debug, clap::Subcommand)]
pub enum FootageCommand {
    /// List recorded ranges and gaps, each recorded range with its HLS playback URL.
    List(ListArgs),
    /// Download a camera's original footage over a time range: one MP4 file, or the segment
    /// files and an index in a directory. Every segment is checked against its recorded
    /// SHA-256.
    Get(GetArgs),
    /// Print an HLS URL of a camera's footage (the originals, or a rendition profile made by
    /// `kordon transcode submit rendition`) for a player such as ffplay, VLC or a browser.
    Play(PlayArgs),
    /// Ask a partner site for footage of its cameras (relayed by this site's storage over the
    /// partner link; the partner's people decide).
    Request(RequestArgs),
    /// Footage grants: those partners asked of this site, and those this site asked of
    /// partners (their state refreshed from the partner).
    Grants(GrantsArgs),
    /// Approve a partner's pending request (optionally a narrower range): builds the signed
    /// evidence bundle the partner may fetch.
    Approve(ApproveArgs),
    /// Refuse a partner's pending request.
    Refuse(RefuseArgs),
    /// Fetch the bundle of an approved grant from the partner: this site's storage verifies
    /// it with the partner's pinned evidence key and keeps a copy.
    Fetch(FetchArgs),
}

#[derive(Debug, clap::Args)]
pub struct RequestArgs {
    #[command(flatten)]
    pub client: ClientFlags,
    /// The partner site whose footage you ask for.
    #[arg(long)]
    pub partner: String,
    /// A camera of the partner (its name, or PARTNER/CAMERA); repeat for several.
    #[arg(long = "camera", required = true)]
    pub cameras: Vec<String>,
    /// Start, RFC 3339.
    #[arg(long, value_parser = humantime::parse_rfc3339_weak)]
    pub from: SystemTime,
    /// End, RFC 3339.
    #[arg(long, value_parser = humantime::parse_rfc3339_weak)]
    pub to: SystemTime,
    /// Case or file number (required).
    #[arg(long)]
    pub case: String,
    /// The law or agreement article the request rests on (required).
    #[arg(long)]
    pub legal_basis: String,
    /// Why you need this footage (required; logged at both sites).
    #[arg(long)]
    pub reason: String,
    /// Idempotency key: repeating the command with it returns the same grant.
    #[arg(long, default_value = "")]
    pub request_id: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum GrantState {
    Pending,
    Approved,
    Denied,
    Expired,
}

#[derive(Debug, clap::Args)]
pub struct GrantsArgs {
    #[command(flatten)]
    pub client: ClientFlags,
    /// Only grants asked by this site.
    #[arg(long)]
    pub partner: Option<String>,
    /// Only grants in this state.
    #[arg(long, value_enum)]
    pub state: Option<GrantState>,
}

#[derive(Debug, clap::Args)]
pub struct ApproveArgs {
    #[command(flatten)]
    pub client: ClientFlags,
    /// The grant id.
    pub grant: String,
    /// Approve from here only (RFC 3339; within the requested range).
    #[arg(long, value_parser = humantime::parse_rfc3339_weak, requires = "to")]
    pub from: Option<SystemTime>,
    /// Approve until here only (RFC 3339; within the requested range).
    #[arg(long, value_parser = humantime::parse_rfc3339_weak, requires = "from")]
    pub to: Option<SystemTime>,
    /// How long the partner may fetch it (default 7d, at most 90d).
    #[arg(long = "for", value_parser = humantime::parse_duration)]
    pub access_for: Option<Duration>,
    /// Why it is approved (required; logged).
    #[arg(long)]
    pub reason: String,
}

#[derive(Debug, clap::Args)]
pub struct RefuseArgs {
    #[command(flatten)]
    pub client: ClientFlags,
    /// The grant id.
    pub grant: String,
    /// Why it is refused (required; the partner sees it).
    #[arg(long)]
    pub reason: String,
}

#[derive(Debug, clap::Args)]
pub struct FetchArgs {
    #[command(flatten)]
    pub client: ClientFlags,
    /// The grant id.
    pub grant: String,
    /// The partner site that owns the footage.
    #[arg(long)]
    pub partner: String,
    /// Why you fetch it (required; logged at both sites).
    #[arg(long)]
    pub reason: String,
    /// Where to write the bundle (default `<grant>.tar`).
    #[arg(long, short = 'o', value_name = "FILE")]
    pub out: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct GetArgs {
    #[command(flatten)]
    pub client: ClientFlags,
    /// The camera, as SITE/CAMERA.
    #[arg(long)]
    pub camera: String,
    #[command(flatten)]
    pub window: TimeWindow,
    /// Why you read this footage (required; recorded in the access log).
    #[arg(long)]
    pub reason: String,
    /// Case or file number.
    #[arg(long, default_value = "")]
    pub case: String,
    /// Write one playable MP4 file (the segments joined; gaps stay gaps in its timeline).
    #[arg(
        long,
        short = 'o',
        value_name = "FILE",
        required_unless_present = "dir",
        conflicts_with = "dir"
    )]
    pub file: Option<PathBuf>,
    /// Write each segment as its own file plus `index.json` into this directory.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
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
    #[command(flatten)]
    pub window: TimeWindow,
    /// Why you read this footage (required; recorded in the access log).
    #[arg(long)]
    pub reason: String,
    /// Case or file number.
    #[arg(long, default_value = "")]
    pub case: String,
}

use kordon_proto::time::timestamp_from_system_time as ts;

#[derive(Debug, clap::Args)]
pub struct PlayArgs {
    #[command(flatten)]
    pub client: ClientFlags,
    /// The camera, as SITE/CAMERA.
    #[arg(long)]
    pub camera: String,
    #[command(flatten)]
    pub window: TimeWindow,
    /// A rendition profile (e.g. 360p-500k) instead of the originals.
    #[arg(long, default_value = "")]
    pub profile: String,
    /// How long the URL works (at most 1h).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "15m")]
    pub ttl: Duration,
    /// Why you view this footage (required; recorded in the access log).
    #[arg(long)]
    pub reason: String,
    /// Case or file number.
    #[arg(long, default_value = "")]
    pub case: String,
}

async fn play(a: PlayArgs) -> anyhow::Result<()> {
    let (from, to) = a.window.resolve()?;
    let mut c = StorageServiceClient::new(client::connect_lazy(&a.client.options())?);
    let r = c
        .get_playback_url(spb::GetPlaybackUrlRequest {
            camera: Some(camera_ref(&a.camera)?),
            range: Some(common::TimeRange {
                start: Some(ts(from)),
                end: Some(ts(to.unwrap_or_else(SystemTime::now))),
            }),
            audit: Some(common::AuditContext {
                reason: a.reason.clone(),
                case_id: a.case.clone(),
                recipient: String::new(),
            }),
            url_ttl: Some(prost_types::Duration {
                seconds: a.ttl.as_secs() as i64,
                nanos: 0,
            }),
            rendition_profile: a.profile.clone(),
        })
        .await
        .map_err(status_error)?
        .into_inner();
    let url = r.playback.map(|p| p.url).unwrap_or_default();
    if a.client.output == Output::Json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "url": url,
                "profile": a.profile,
                "from": rfc3339(&r.covered.as_ref().and_then(|c| c.start)),
                "to": rfc3339(&r.covered.as_ref().and_then(|c| c.end)),
            }))?
        );
    } else {
        println!("{url}");
    }
    Ok(())
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
        FootageCommand::Get(args) => get(args).await,
        FootageCommand::Play(args) => play(args).await,
        FootageCommand::Request(args) => grants::request(args).await,
        FootageCommand::Grants(args) => grants::list(args).await,
        FootageCommand::Approve(args) => grants::approve(args).await,
        FootageCommand::Refuse(args) => grants::refuse(args).await,
        FootageCommand::Fetch(args) => grants::fetch(args).await,
    }
}

/// `SITE/CAMERA` as a camera reference.
pub fn camera_ref(c: &str) -> anyhow::Result<common::CameraRef> {
    let (site, camera) = c
        .split_once('/')
        .filter(|(s, c)| !s.is_empty() && !c.is_empty() && !c.contains('/'))
        .ok_or_else(|| anyhow::anyhow!("--camera must be SITE/CAMERA, got `{c}`"))?;
    Ok(common::CameraRef {
        site: site.to_string(),
        camera: camera.to_string(),
    })
}

/// A time range as client commands take it: `--since DURATION`, or `--from TIME [--to TIME]`.
#[derive(Debug, Clone, clap::Args)]
pub struct TimeWindow {
    /// From this long ago until now, e.g. `1h`, `30m`.
    #[arg(long, value_parser = humantime::parse_duration, conflicts_with_all = ["from", "to"])]
    pub since: Option<Duration>,
    /// Start, RFC 3339 (e.g. 2026-11-27T10:00:00Z).
    #[arg(long, value_parser = humantime::parse_rfc3339_weak)]
    pub from: Option<SystemTime>,
    /// End, RFC 3339; default now.
    #[arg(long, value_parser = humantime::parse_rfc3339_weak)]
    pub to: Option<SystemTime>,
}

impl TimeWindow {
    /// Whether a range was given at all.
    pub fn given(&self) -> bool {
        self.since.is_some() || self.from.is_some()
    }

    /// (from, to); `to` None means now.
    pub fn resolve(&self) -> anyhow::Result<(SystemTime, Option<SystemTime>)> {
        match (self.since, self.from, self.to) {
            (Some(d), _, _) => Ok((SystemTime::now().checked_sub(d).unwrap_or(UNIX_EPOCH), None)),
            (None, Some(f), t) => {
                if let Some(t) = t
                    && t <= f
                {
                    anyhow::bail!("--to must be after --from");
                }
                Ok((f, t))
            }
            (None, None, _) => anyhow::bail!("give --since DURATION or --from TIME [--to TIME]"),
        }
    }
}

/// An HTTP client for playback and download URLs, trusting `--ca-file` when given.
pub fn http_client(flags: &ClientFlags) -> anyhow::Result<reqwest::Client> {
    let mut b = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .user_agent(concat!("kordon/", env!("CARGO_PKG_VERSION")));
    if let Some(ca) = &flags.ca_file {
        let pem = std::fs::read(ca).with_context(|| format!("cannot read {}", ca.display()))?;
        b = b.tls_certs_merge([reqwest::Certificate::from_pem(&pem)
            .with_context(|| format!("{}: not a PEM certificate", ca.display()))?]);
    }
    b.build().context("cannot build the HTTP client")
}

async fn http_bytes(http: &reqwest::Client, url: &str) -> anyhow::Result<bytes::Bytes> {
    let resp = http
        .get(url)
        .send()
        .await
        .map_err(reqwest::Error::without_url)
        .with_context(|| format!("GET {}", redact(url)))?;
    if !resp.status().is_success() {
        anyhow::bail!(
            "GET {}: HTTP {}: {}",
            redact(url),
            resp.status(),
            resp.text().await.unwrap_or_default().trim()
        );
    }
    resp.bytes()
        .await
        .map_err(reqwest::Error::without_url)
        .with_context(|| format!("GET {}", redact(url)))
}

/// A signed URL fit for a message or a log: without its query, and with the signed grant of
/// a media path (`<from>.<to>.<exp>.<token>`) replaced, so no usable token leaks.
pub(crate) fn redact(url: &str) -> String {
    let base = url.split('?').next().unwrap_or(url);
    // Parts 0..3 are the scheme, the empty part and the host (whose dots are no grant).
    base.split('/')
        .enumerate()
        .map(|(i, part)| {
            if i < 3 {
                return part;
            }
            let fields: Vec<&str> = part.split('.').collect();
            let grant = fields.len() == 4
                && !fields[0].is_empty()
                && fields[0].bytes().all(|b| b.is_ascii_digit() || b == b'-');
            if grant { "<grant>" } else { part }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// `kordon footage get`: lists the range's segments (with their hashes), takes their media
/// URLs from the range's HLS playlist (one playback grant, logged once), downloads each and
/// checks its SHA-256.
async fn get(args: GetArgs) -> anyhow::Result<()> {
    if args.reason.trim().is_empty() {
        anyhow::bail!("--reason must say why you read this footage (it is logged)");
    }
    let camera = camera_ref(&args.camera)?;
    let (from, to) = args.window.resolve()?;
    let to = to.unwrap_or_else(SystemTime::now);
    let audit = common::AuditContext {
        reason: args.reason.clone(),
        case_id: args.case.clone(),
        recipient: String::new(),
    };
    let range = common::TimeRange {
        start: Some(ts(from)),
        end: Some(ts(to)),
    };
    let channel = client::connect(&args.client.options()).await?;
    let mut storage = StorageServiceClient::new(channel);
    let mut segments = Vec::new();
    let mut token = String::new();
    loop {
        let resp = storage
            .list_segments(spb::ListSegmentsRequest {
                camera: Some(camera.clone()),
                range: Some(range),
                audit: Some(audit.clone()),
                page: Some(common::PageRequest {
                    page_size: 1000,
                    page_token: token.clone(),
                }),
            })
            .await
            .map_err(status_error)?
            .into_inner();
        segments.extend(resp.segments);
        token = resp.page.map(|p| p.next_page_token).unwrap_or_default();
        if token.is_empty() {
            break;
        }
    }
    if segments.is_empty() {
        anyhow::bail!(
            "{}/{} has no recorded footage between {} and {}",
            camera.site,
            camera.camera,
            humantime::format_rfc3339_seconds(from),
            humantime::format_rfc3339_seconds(to)
        );
    }
    let playback = storage
        .get_playback_url(spb::GetPlaybackUrlRequest {
            camera: Some(camera.clone()),
            range: Some(range),
            audit: Some(audit.clone()),
            ..Default::default()
        })
        .await
        .map_err(status_error)?
        .into_inner()
        .playback
        .ok_or_else(|| anyhow::anyhow!("the server sent no playback URL"))?;
    let http = http_client(&args.client)?;
    let playlist = http_bytes(&http, &playback.url).await?;
    let base = playback
        .url
        .split('?')
        .next()
        .and_then(|u| u.rsplit_once('/'))
        .map(|(b, _)| b.to_string())
        .ok_or_else(|| anyhow::anyhow!("unexpected playback URL"))?;
    // Media URL of each sequence, from the playlist's segment lines.
    let mut media: HashMap<u64, String> = HashMap::new();
    for line in String::from_utf8_lossy(&playlist).lines() {
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        if let Some(seq) = line
            .rsplit('/')
            .next()
            .and_then(|f| f.strip_suffix(".mp4"))
            .and_then(|s| s.parse::<u64>().ok())
        {
            media.insert(seq, format!("{base}/{line}"));
        }
    }
    let total: u64 = segments.iter().map(|s| s.size_bytes).sum();
    let pb = bar(total, "downloading");
    let mut joined: Option<(std::fs::File, PathBuf, Vec<u8>)> = match &args.file {
        Some(f) => {
            let part = f.with_extension("mp4.part");
            let file = std::fs::File::create(&part)
                .with_context(|| format!("cannot create {}", part.display()))?;
            Some((file, part, Vec::new()))
        }
        None => None,
    };
    if let Some(d) = &args.dir {
        std::fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
    }
    let mut index = Vec::new();
    for s in &segments {
        let link = s.link.clone().unwrap_or_default();
        let url = media.get(&link.sequence).ok_or_else(|| {
            anyhow::anyhow!(
                "segment {} is not in the playback playlist (deleted meanwhile?)",
                link.sequence
            )
        })?;
        let bytes = http_bytes(&http, url).await?;
        let sha: [u8; 32] = Sha256::digest(&bytes).into();
        if sha.as_slice() != s.sha256.as_slice() {
            pb.abandon();
            anyhow::bail!(
                "segment {} does not match its record: SHA-256 {}, recorded {}; nothing more                  was written — run `kordon evidence export` or VerifyChain on the range",
                link.sequence,
                hex::encode(sha),
                hex::encode(&s.sha256)
            );
        }
        let init = usize::try_from(s.init_size).unwrap_or(0).min(bytes.len());
        if let Some((file, part, first_init)) = &mut joined {
            if first_init.is_empty() {
                *first_init = bytes[..init].to_vec();
                file.write_all(&bytes)
            } else if bytes[..init] != first_init[..] {
                anyhow::bail!(
                    "the stream format changes at segment {} (codec or frame size): it cannot                      be joined into one file; use --dir",
                    link.sequence
                );
            } else {
                file.write_all(&bytes[init..])
            }
            .with_context(|| format!("writing {}", part.display()))?;
        }
        let range = s.range.unwrap_or_default();
        if let Some(d) = &args.dir {
            let name = format!("{:010}.mp4", link.sequence);
            std::fs::write(d.join(&name), &bytes)
                .with_context(|| format!("writing {}", d.join(&name).display()))?;
            index.push(serde_json::json!({
                "file": name,
                "sequence": link.sequence,
                "from": rfc3339(&range.start),
                "to": rfc3339(&range.end),
                "size_bytes": s.size_bytes,
                "sha256": hex::encode(&s.sha256),
                "record_hash": hex::encode(&link.record_hash),
            }));
        }
        pb.inc(s.size_bytes);
    }
    pb.finish_and_clear();
    if let Some((file, part, _)) = joined {
        file.sync_all()
            .with_context(|| format!("writing {}", part.display()))?;
        let out = args.file.clone().unwrap_or_default();
        std::fs::rename(&part, &out).with_context(|| format!("cannot write {}", out.display()))?;
        println!("{}", out.display());
    }
    if let Some(d) = &args.dir {
        let doc = serde_json::json!({
            "site": camera.site,
            "camera": camera.camera,
            "from": humantime::format_rfc3339_micros(from).to_string(),
            "to": humantime::format_rfc3339_micros(to).to_string(),
            "segments": index,
        });
        std::fs::write(d.join("index.json"), serde_json::to_vec_pretty(&doc)?)
            .with_context(|| format!("writing {}", d.join("index.json").display()))?;
        println!("{}", d.display());
    }
    eprintln!(
        "{} segment(s), {}, every SHA-256 matched its record",
        segments.len(),
        indicatif::HumanBytes(total)
    );
    Ok(())
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
    let (from, to) = args.window.resolve()?;
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

#[path = "footage_grants.rs"]
mod grants;

#[cfg(test)]
mod redact_tests {
    /// Issue 9, finding 9: an error message never carries a usable media token.
    #[test]
    fn tokens_never_reach_a_message() {
        let media = "http://127.0.0.1:8472/v1/hls/burgas/gate-1/1795773600000000.1795773660000000.1795774000.c2VjcmV0/17.mp4";
        assert_eq!(
            super::redact(media),
            "http://127.0.0.1:8472/v1/hls/burgas/gate-1/<grant>/17.mp4"
        );
        let playlist = "http://h/v1/hls/burgas/gate-1.m3u8?from=1&to=2&exp=3&token=c2VjcmV0";
        assert_eq!(
            super::redact(playlist),
            "http://h/v1/hls/burgas/gate-1.m3u8"
        );
        for u in [media, playlist] {
            assert!(!super::redact(u).contains("c2VjcmV0"));
        }
    }
}
