//! `kordon transcode submit|get|list|watch|cancel|status`: transcode jobs for people and
//! scripts. `kordon transcode` without a subcommand runs the service itself.
//!
//! Every job reads footage, so `submit` needs `--reason` (recorded in the access log with the
//! job and who submitted it). `--wait` follows the job with a progress bar to its end and exits
//! non-zero unless it succeeded.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use kordon_proto::common::v1 as common;
use kordon_proto::time::timestamp_from_system_time as ts;
use kordon_proto::transcode::v1 as pb;
use kordon_proto::transcode::v1::transcode_service_client::TranscodeServiceClient;
use kordon_runtime::client;

use crate::client::{ClientFlags, Output, rfc3339, status_error};
use crate::footage::camera_ref;

#[derive(Debug, clap::Subcommand)]
pub enum TranscodeCommand {
    /// Queue a job: a rendition, thumbnails or a viewer copy of a camera's footage.
    #[command(subcommand)]
    Submit(Box<SubmitCommand>),
    /// One job: state, progress, outputs.
    Get(IdArgs),
    /// Jobs, newest first.
    List(ListArgs),
    /// Follow a job with a progress bar until it ends.
    Watch(IdArgs),
    /// Cancel a queued or running job (outputs already written stay).
    Cancel(IdArgs),
    /// The transcode process: encoders and decoders found, workers, queue.
    Status(StatusArgs),
}

#[derive(Debug, clap::Subcommand)]
pub enum SubmitCommand {
    /// A lower-bitrate copy of every segment, playable through storage's HLS under PROFILE.
    Rendition(RenditionArgs),
    /// A JPEG per segment (or every --interval) for the timeline.
    Thumbnails(ThumbnailArgs),
    /// A viewer copy: time burned in, privacy masks, people blurred; one MP4.
    Export(ExportArgs),
}

#[derive(Debug, Clone, clap::Args)]
pub struct Common {
    #[command(flatten)]
    pub client: ClientFlags,
    /// The camera, as SITE/CAMERA.
    #[arg(long)]
    pub camera: String,
    /// Start, RFC 3339 (e.g. 2026-12-02T10:00:00Z).
    #[arg(long, value_parser = humantime::parse_rfc3339_weak, required_unless_present = "since")]
    pub from: Option<SystemTime>,
    /// End, RFC 3339; default now.
    #[arg(long, value_parser = humantime::parse_rfc3339_weak)]
    pub to: Option<SystemTime>,
    /// From this long ago until now, e.g. 10m.
    #[arg(long, value_parser = humantime::parse_duration, conflicts_with_all = ["from", "to"])]
    pub since: Option<Duration>,
    /// Why the footage is read (required; recorded in the access log).
    #[arg(long)]
    pub reason: String,
    /// Case or file number.
    #[arg(long, default_value = "")]
    pub case: String,
    /// Who receives the output, if it leaves the organisation.
    #[arg(long, default_value = "")]
    pub recipient: String,
    /// low, normal or high.
    #[arg(long, default_value = "normal")]
    pub priority: String,
    /// Idempotency key: a retry with the same key returns the job queued first.
    #[arg(long, default_value = "")]
    pub request_id: String,
    /// Follow the job to its end with a progress bar; exit non-zero unless it succeeded.
    #[arg(long)]
    pub wait: bool,
}

#[derive(Debug, clap::Args)]
pub struct RenditionArgs {
    #[command(flatten)]
    pub common: Common,
    /// Name the rendition is registered under, e.g. 360p-500k.
    #[arg(long)]
    pub profile: String,
    /// Average bitrate, e.g. 500k or 1.5M (bits per second).
    #[arg(long, value_parser = parse_bitrate)]
    pub bitrate: u64,
    /// Output height in pixels (never upscaled); default: the source's.
    #[arg(long, default_value_t = 0)]
    pub height: u32,
    /// Frames per second at most; default: the source's.
    #[arg(long, default_value_t = 0.0)]
    pub fps: f64,
    /// h264 or h265.
    #[arg(long, default_value = "h264")]
    pub codec: String,
    /// speed, balanced or quality.
    #[arg(long, default_value = "balanced")]
    pub preset: String,
}

#[derive(Debug, clap::Args)]
pub struct ThumbnailArgs {
    #[command(flatten)]
    pub common: Common,
    /// JPEG width in pixels.
    #[arg(long, default_value_t = 320)]
    pub width: u32,
    /// One every INTERVAL (e.g. 10s) instead of one per segment.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub interval: Option<Duration>,
}

#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    #[command(flatten)]
    pub common: Common,
    /// Burn the wall-clock time and the camera's name into every frame.
    #[arg(long)]
    pub burn_in_time: bool,
    /// IANA time zone of the burned-in time, e.g. Europe/Sofia; default: the site's.
    #[arg(long, default_value = "")]
    pub time_zone: String,
    /// A privacy mask, x1,y1;x2,y2;x3,y3... in 0..1 (repeatable).
    #[arg(long = "mask", value_name = "POLYGON")]
    pub masks: Vec<String>,
    /// Pixelate every person the detector finds.
    #[arg(long)]
    pub blur_people: bool,
    /// Average bitrate, e.g. 4M; default: the encoder's constant quality.
    #[arg(long, value_parser = parse_bitrate)]
    pub bitrate: Option<u64>,
    /// h264 or h265.
    #[arg(long, default_value = "h264")]
    pub codec: String,
    /// speed, balanced or quality.
    #[arg(long, default_value = "balanced")]
    pub preset: String,
}

#[derive(Debug, clap::Args)]
pub struct IdArgs {
    #[command(flatten)]
    pub client: ClientFlags,
    /// The job id.
    pub id: String,
}

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub client: ClientFlags,
    /// Only jobs in this state: queued, running, succeeded, failed, cancelled (repeatable).
    #[arg(long = "state")]
    pub states: Vec<String>,
    /// Only this kind: rendition, thumbnails, export.
    #[arg(long)]
    pub kind: Option<String>,
    /// Only this camera, SITE/CAMERA.
    #[arg(long)]
    pub camera: Option<String>,
    /// At most this many jobs.
    #[arg(long, default_value_t = 50)]
    pub limit: usize,
}

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub client: ClientFlags,
}

fn parse_bitrate(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (num, mul) = match t.chars().last() {
        Some('k' | 'K') => (&t[..t.len() - 1], 1_000.0),
        Some('m' | 'M') => (&t[..t.len() - 1], 1_000_000.0),
        _ => (t, 1.0),
    };
    num.parse::<f64>()
        .ok()
        .filter(|v| *v > 0.0)
        .map(|v| (v * mul).round() as u64)
        .ok_or_else(|| format!("`{s}` is not a bitrate such as 500k or 2M"))
}

fn codec(s: &str) -> anyhow::Result<i32> {
    Ok(match s {
        "h264" => common::VideoCodec::H264,
        "h265" | "hevc" => common::VideoCodec::H265,
        _ => anyhow::bail!("--codec must be h264 or h265"),
    } as i32)
}

fn preset(s: &str) -> anyhow::Result<i32> {
    Ok(match s {
        "speed" => pb::EncoderPreset::Speed,
        "balanced" => pb::EncoderPreset::Balanced,
        "quality" => pb::EncoderPreset::Quality,
        _ => anyhow::bail!("--preset must be speed, balanced or quality"),
    } as i32)
}

fn state_name(s: i32) -> &'static str {
    match pb::JobState::try_from(s) {
        Ok(pb::JobState::Queued) => "queued",
        Ok(pb::JobState::Running) => "running",
        Ok(pb::JobState::Succeeded) => "succeeded",
        Ok(pb::JobState::Failed) => "failed",
        Ok(pb::JobState::Cancelled) => "cancelled",
        _ => "unknown",
    }
}

fn kind_of(j: &pb::Job) -> (&'static str, String) {
    match j.spec.as_ref().and_then(|s| s.kind.as_ref()) {
        Some(pb::job_spec::Kind::Rendition(r)) => ("rendition", cam(&r.camera)),
        Some(pb::job_spec::Kind::Thumbnails(t)) => ("thumbnails", cam(&t.camera)),
        Some(pb::job_spec::Kind::Export(e)) => ("export", cam(&e.camera)),
        None => ("unknown", String::new()),
    }
}

fn cam(c: &Option<common::CameraRef>) -> String {
    c.as_ref()
        .map(|c| format!("{}/{}", c.site, c.camera))
        .unwrap_or_default()
}

async fn connect(
    flags: &ClientFlags,
) -> anyhow::Result<TranscodeServiceClient<client::AuthedChannel>> {
    Ok(TranscodeServiceClient::new(client::connect_lazy(
        &flags.options(),
    )?))
}

pub async fn run(cmd: TranscodeCommand) -> anyhow::Result<()> {
    match cmd {
        TranscodeCommand::Submit(s) => submit(*s).await,
        TranscodeCommand::Get(a) => {
            let mut c = connect(&a.client).await?;
            let job = c
                .get_job(pb::GetJobRequest {
                    job_id: a.id.clone(),
                })
                .await
                .map_err(status_error)?
                .into_inner()
                .job
                .context("the server sent no job")?;
            print_job(&job, a.client.output)
        }
        TranscodeCommand::List(a) => list(a).await,
        TranscodeCommand::Watch(a) => {
            let mut c = connect(&a.client).await?;
            let job = follow(&mut c, &a.id).await?;
            print_job(&job, a.client.output)?;
            ended_well(&job)
        }
        TranscodeCommand::Cancel(a) => {
            let mut c = connect(&a.client).await?;
            let job = c
                .cancel_job(pb::CancelJobRequest {
                    job_id: a.id.clone(),
                })
                .await
                .map_err(status_error)?
                .into_inner()
                .job
                .context("the server sent no job")?;
            if job.state == pb::JobState::Running as i32 {
                eprintln!("cancelling: the job stops at its next step");
            }
            print_job(&job, a.client.output)
        }
        TranscodeCommand::Status(a) => status(a).await,
    }
}

fn range(c: &Common) -> anyhow::Result<common::TimeRange> {
    let (from, to) = match (c.since, c.from) {
        (Some(d), _) => (
            SystemTime::now().checked_sub(d).unwrap_or(UNIX_EPOCH),
            SystemTime::now(),
        ),
        (None, Some(f)) => (f, c.to.unwrap_or_else(SystemTime::now)),
        (None, None) => anyhow::bail!("give --from TIME [--to TIME] or --since DURATION"),
    };
    if to <= from {
        anyhow::bail!("--to must be after --from");
    }
    Ok(common::TimeRange {
        start: Some(ts(from)),
        end: Some(ts(to)),
    })
}

async fn submit(cmd: SubmitCommand) -> anyhow::Result<()> {
    let (common_args, kind) = match cmd {
        SubmitCommand::Rendition(a) => {
            let k = pb::job_spec::Kind::Rendition(pb::RenditionSpec {
                camera: Some(camera_ref(&a.common.camera)?),
                range: Some(range(&a.common)?),
                profile: a.profile.clone(),
                target_bitrate_bps: a.bitrate,
                max_height: a.height,
                max_fps: a.fps,
                codec: codec(&a.codec)?,
                preset: preset(&a.preset)?,
            });
            (a.common, k)
        }
        SubmitCommand::Thumbnails(a) => {
            let k = pb::job_spec::Kind::Thumbnails(pb::ThumbnailsSpec {
                camera: Some(camera_ref(&a.common.camera)?),
                range: Some(range(&a.common)?),
                width: a.width,
                interval: a.interval.map(|d| prost_types::Duration {
                    seconds: d.as_secs() as i64,
                    nanos: d.subsec_nanos() as i32,
                }),
            });
            (a.common, k)
        }
        SubmitCommand::Export(a) => {
            let masks = a
                .masks
                .iter()
                .map(|m| {
                    crate::evidence::parse_polygon(m, m).map(|p| pb::PrivacyMask { area: Some(p) })
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let k = pb::job_spec::Kind::Export(pb::ExportSpec {
                camera: Some(camera_ref(&a.common.camera)?),
                range: Some(range(&a.common)?),
                burn_in_timestamp: a.burn_in_time,
                time_zone: a.time_zone.clone(),
                privacy_masks: masks,
                target_bitrate_bps: a.bitrate.unwrap_or(0),
                codec: codec(&a.codec)?,
                evidence_bundle_id: String::new(),
                blur_people: a.blur_people,
                preset: preset(&a.preset)?,
            });
            (a.common, k)
        }
    };
    let priority = match common_args.priority.as_str() {
        "low" => pb::JobPriority::Low,
        "normal" => pb::JobPriority::Normal,
        "high" => pb::JobPriority::High,
        _ => anyhow::bail!("--priority must be low, normal or high"),
    };
    let mut c = connect(&common_args.client).await?;
    let job = c
        .submit_job(pb::SubmitJobRequest {
            spec: Some(pb::JobSpec { kind: Some(kind) }),
            priority: priority as i32,
            audit: Some(common::AuditContext {
                reason: common_args.reason.clone(),
                case_id: common_args.case.clone(),
                recipient: common_args.recipient.clone(),
            }),
            request_id: common_args.request_id.clone(),
        })
        .await
        .map_err(status_error)?
        .into_inner()
        .job
        .context("the server sent no job")?;
    if !common_args.wait {
        return print_job(&job, common_args.client.output);
    }
    eprintln!("job {} queued", job.id);
    let job = follow(&mut c, &job.id).await?;
    print_job(&job, common_args.client.output)?;
    ended_well(&job)
}

fn ended_well(job: &pb::Job) -> anyhow::Result<()> {
    match pb::JobState::try_from(job.state) {
        Ok(pb::JobState::Succeeded) => Ok(()),
        Ok(pb::JobState::Failed) => anyhow::bail!("job {} failed: {}", job.id, job.error),
        _ => anyhow::bail!("job {} ended {}", job.id, state_name(job.state)),
    }
}

/// Watches a job to its end, drawing progress on stderr.
async fn follow(
    c: &mut TranscodeServiceClient<client::AuthedChannel>,
    id: &str,
) -> anyhow::Result<pb::Job> {
    let mut stream = c
        .watch_job(pb::WatchJobRequest {
            job_id: id.to_string(),
        })
        .await
        .map_err(status_error)?
        .into_inner();
    let bar =
        indicatif::ProgressBar::with_draw_target(Some(0), indicatif::ProgressDrawTarget::stderr());
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{msg:<24} [{bar:32}] {pos}/{len} segments, elapsed {elapsed}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    let mut last = None;
    while let Some(m) = stream.message().await.map_err(status_error)? {
        let Some(job) = m.job else { continue };
        let p = job.progress.clone().unwrap_or_default();
        bar.set_length(p.total_units);
        bar.set_position(p.done_units);
        let speed = if job.speed > 0.0 {
            format!(" {:.1}x", job.speed)
        } else {
            String::new()
        };
        bar.set_message(format!("{}{speed} {}", state_name(job.state), p.stage));
        last = Some(job);
    }
    bar.finish_and_clear();
    last.context("the job stream ended without a message")
}

fn job_json(j: &pb::Job) -> serde_json::Value {
    let (kind, camera) = kind_of(j);
    let p = j.progress.clone().unwrap_or_default();
    serde_json::json!({
        "id": j.id,
        "kind": kind,
        "camera": camera,
        "state": state_name(j.state),
        "done_units": p.done_units,
        "total_units": p.total_units,
        "stage": p.stage,
        "frames": j.frames,
        "speed": j.speed,
        "encoder": j.encoder,
        "attempts": j.attempts,
        "submitted_by": j.submitted_by,
        "created_at": rfc3339(&j.created_at),
        "started_at": rfc3339(&j.started_at),
        "finished_at": rfc3339(&j.finished_at),
        "error": j.error,
        "outputs_sha256": hex::encode(&j.outputs_sha256),
        "outputs": j.outputs.iter().map(|o| serde_json::json!({
            "object_key": o.object_key,
            "content_type": o.content_type,
            "size_bytes": o.size_bytes,
            "sha256": hex::encode(&o.sha256),
            "source_sequence": o.source_sequence,
            "start": rfc3339(&o.range.as_ref().and_then(|r| r.start)),
            "end": rfc3339(&o.range.as_ref().and_then(|r| r.end)),
        })).collect::<Vec<_>>(),
    })
}

fn print_job(j: &pb::Job, out: Output) -> anyhow::Result<()> {
    if out == Output::Json {
        println!("{}", serde_json::to_string_pretty(&job_json(j))?);
        return Ok(());
    }
    let (kind, camera) = kind_of(j);
    let p = j.progress.clone().unwrap_or_default();
    println!("job        {}", j.id);
    println!("kind       {kind} of {camera}");
    println!(
        "state      {}{}",
        state_name(j.state),
        if j.error.is_empty() {
            String::new()
        } else {
            format!(": {}", j.error)
        }
    );
    println!(
        "progress   {}/{} segments, {} frames{}",
        p.done_units,
        p.total_units,
        j.frames,
        if p.stage.is_empty() {
            String::new()
        } else {
            format!(" ({})", p.stage)
        }
    );
    if !j.encoder.is_empty() {
        println!("encoder    {}", j.encoder);
    }
    println!(
        "submitted  {} by {}",
        rfc3339(&j.created_at),
        j.submitted_by
    );
    if !j.outputs.is_empty() {
        let total: u64 = j.outputs.iter().map(|o| o.size_bytes).sum();
        println!(
            "outputs    {} files, {total} bytes, sha256 of all {}",
            j.outputs.len(),
            hex::encode(&j.outputs_sha256)
        );
        for o in j.outputs.iter().take(20) {
            println!(
                "  {}  {:>10}  {}",
                &hex::encode(&o.sha256)[..16],
                o.size_bytes,
                o.object_key
            );
        }
        if j.outputs.len() > 20 {
            println!("  … {} more (-o json lists all)", j.outputs.len() - 20);
        }
    }
    Ok(())
}

async fn list(a: ListArgs) -> anyhow::Result<()> {
    let mut states = Vec::new();
    for s in &a.states {
        states.push(match s.as_str() {
            "queued" => pb::JobState::Queued,
            "running" => pb::JobState::Running,
            "succeeded" => pb::JobState::Succeeded,
            "failed" => pb::JobState::Failed,
            "cancelled" => pb::JobState::Cancelled,
            _ => anyhow::bail!("--state must be queued, running, succeeded, failed or cancelled"),
        } as i32);
    }
    let kind = match a.kind.as_deref() {
        None => pb::JobKind::Unspecified,
        Some("rendition") => pb::JobKind::Rendition,
        Some("thumbnails") => pb::JobKind::Thumbnails,
        Some("export") => pb::JobKind::Export,
        Some(_) => anyhow::bail!("--kind must be rendition, thumbnails or export"),
    } as i32;
    let camera = a.camera.as_deref().map(camera_ref).transpose()?;
    let mut c = connect(&a.client).await?;
    let mut jobs = Vec::new();
    let mut token = String::new();
    while jobs.len() < a.limit {
        let r = c
            .list_jobs(pb::ListJobsRequest {
                states: states.clone(),
                kind,
                camera: camera.clone(),
                page: Some(common::PageRequest {
                    page_size: (a.limit - jobs.len()).min(500) as u32,
                    page_token: token,
                }),
            })
            .await
            .map_err(status_error)?
            .into_inner();
        jobs.extend(r.jobs);
        token = r.page.map(|p| p.next_page_token).unwrap_or_default();
        if token.is_empty() {
            break;
        }
    }
    jobs.truncate(a.limit);
    if a.client.output == Output::Json {
        println!(
            "{}",
            serde_json::to_string_pretty(&jobs.iter().map(job_json).collect::<Vec<_>>())?
        );
        return Ok(());
    }
    println!(
        "{:<36}  {:<10}  {:<24}  {:<9}  {:>9}  CREATED",
        "ID", "KIND", "CAMERA", "STATE", "PROGRESS"
    );
    for j in &jobs {
        let (kind, camera) = kind_of(j);
        let p = j.progress.clone().unwrap_or_default();
        println!(
            "{:<36}  {:<10}  {:<24}  {:<9}  {:>9}  {}",
            j.id,
            kind,
            camera,
            state_name(j.state),
            format!("{}/{}", p.done_units, p.total_units),
            rfc3339(&j.created_at)
        );
    }
    Ok(())
}

async fn status(a: StatusArgs) -> anyhow::Result<()> {
    let mut c = connect(&a.client).await?;
    let s = c
        .get_status(pb::GetStatusRequest {})
        .await
        .map_err(status_error)?
        .into_inner();
    let el = |e: &pb::CodecElement| {
        serde_json::json!({
            "element": e.element,
            "codec": if e.codec == common::VideoCodec::H265 as i32 { "h265" } else { "h264" },
            "hardware": e.hardware,
            "selected": e.selected,
        })
    };
    if a.client.output == Output::Json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "encoders": s.encoders.iter().map(el).collect::<Vec<_>>(),
                "decoders": s.decoders.iter().map(el).collect::<Vec<_>>(),
                "workers": s.workers,
                "running": s.running,
                "queued": s.queued,
                "automatic_thumbnails": s.automatic_thumbnails,
                "person_detector": s.person_detector,
                "person_detector_error": s.person_detector_error,
            }))?
        );
        return Ok(());
    }
    println!(
        "workers    {} ({} running, {} queued)",
        s.workers, s.running, s.queued
    );
    for (what, list) in [("encoders", &s.encoders), ("decoders", &s.decoders)] {
        let names: Vec<String> = list
            .iter()
            .map(|e| {
                format!(
                    "{}{}{}",
                    e.element,
                    if e.hardware { " (hardware)" } else { "" },
                    if e.selected { " *" } else { "" }
                )
            })
            .collect();
        println!("{what:<10} {}", names.join(", "));
    }
    println!(
        "thumbnails {}",
        if s.automatic_thumbnails {
            "automatic for new segments"
        } else {
            "on request"
        }
    );
    println!(
        "people     {}",
        if s.person_detector {
            "detector loaded".to_string()
        } else {
            s.person_detector_error.clone()
        }
    );
    Ok(())
}
