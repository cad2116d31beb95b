//! `kordon audit`: read and verify a site's access log (auditors). Reading the log is itself
//! logged, with the reason given.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use kordon_proto::common::v1 as common;
use kordon_proto::storage::v1 as spb;
use kordon_proto::storage::v1::storage_service_client::StorageServiceClient;
use kordon_runtime::client;

use crate::client::{ClientFlags, Output, rfc3339, status_error};
use crate::footage::{TimeWindow, camera_ref};

#[derive(Debug, clap::Subcommand)]
pub enum AuditCommand {
    /// List access-log entries: who read, exported, held or deleted which footage, when and why.
    List(ListArgs),
    /// Verify the site's access-log hash chain and print a signed checkpoint of its head.
    /// Exits 1 when anything is wrong.
    Verify(VerifyArgs),
}

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub client: ClientFlags,
    /// The site whose log to read.
    #[arg(long, required_unless_present = "camera")]
    pub site: Option<String>,
    /// Only entries touching this camera (SITE/CAMERA).
    #[arg(long)]
    pub camera: Option<String>,
    /// Only entries of this person or service (subject).
    #[arg(long)]
    pub principal: Option<String>,
    /// Only these actions (repeat): list, read, playback, export, download, verify, hold,
    /// release, delete, retention-change, audit-read, footage-request, footage-decision,
    /// alert-forward, alert-receive.
    #[arg(long = "action", value_parser = parse_action)]
    pub actions: Vec<i32>,
    /// Only entries of this case.
    #[arg(long = "for-case")]
    pub for_case: Option<String>,
    #[command(flatten)]
    pub window: TimeWindow,
    /// Why you read the log (required; this read is logged too).
    #[arg(long)]
    pub reason: String,
    /// Your case or file number.
    #[arg(long, default_value = "")]
    pub case: String,
    /// Most entries to print (newest pages are not skipped: the log is read from the oldest).
    #[arg(long, default_value_t = 1000)]
    pub limit: usize,
}

#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub client: ClientFlags,
    /// The site whose log to verify.
    #[arg(long)]
    pub site: String,
    /// First entry to check (default the first).
    #[arg(long, default_value_t = 0)]
    pub from_sequence: u64,
    /// Last entry to check (default the head).
    #[arg(long, default_value_t = 0)]
    pub to_sequence: u64,
    /// A checkpoint (JSON, as printed by an earlier `kordon audit verify --output json`) the
    /// log must still contain.
    #[arg(long, value_name = "FILE")]
    pub checkpoint: Option<PathBuf>,
}

fn parse_action(s: &str) -> Result<i32, String> {
    use spb::AccessAction as A;
    let a = match s {
        "list" => A::List,
        "read" => A::Read,
        "playback" => A::Playback,
        "export" => A::Export,
        "download" => A::Download,
        "verify" => A::Verify,
        "hold" => A::Hold,
        "release" => A::Release,
        "delete" => A::Delete,
        "retention-change" => A::RetentionChange,
        "audit-read" => A::AuditRead,
        "footage-request" => A::FootageRequest,
        "footage-decision" => A::FootageDecision,
        "alert-forward" => A::AlertForward,
        "alert-receive" => A::AlertReceive,
        other => return Err(format!("unknown action `{other}`")),
    };
    Ok(a as i32)
}

fn action_name(a: i32) -> &'static str {
    use spb::AccessAction as A;
    match A::try_from(a) {
        Ok(A::List) => "list",
        Ok(A::Read) => "read",
        Ok(A::Playback) => "playback",
        Ok(A::Export) => "export",
        Ok(A::Download) => "download",
        Ok(A::Verify) => "verify",
        Ok(A::Hold) => "hold",
        Ok(A::Release) => "release",
        Ok(A::Delete) => "delete",
        Ok(A::RetentionChange) => "retention-change",
        Ok(A::AuditRead) => "audit-read",
        Ok(A::FootageRequest) => "footage-request",
        Ok(A::FootageDecision) => "footage-decision",
        Ok(A::AlertForward) => "alert-forward",
        Ok(A::AlertReceive) => "alert-receive",
        _ => "unspecified",
    }
}

fn object_text(o: &spb::AccessObject) -> String {
    let mut s = match &o.camera {
        Some(c) => format!("{}/{}", c.site, c.camera),
        None => String::new(),
    };
    if !o.id.is_empty() {
        if !s.is_empty() {
            s.push(' ');
        }
        s.push('#');
        s.push_str(&o.id);
    }
    if let Some(r) = &o.range {
        s.push_str(&format!(" [{} – {}]", rfc3339(&r.start), rfc3339(&r.end)));
    }
    s
}

pub async fn run(cmd: AuditCommand) -> anyhow::Result<()> {
    match cmd {
        AuditCommand::List(a) => list(a).await,
        AuditCommand::Verify(a) => verify(a).await,
    }
}

async fn list(args: ListArgs) -> anyhow::Result<()> {
    if args.reason.trim().is_empty() {
        anyhow::bail!("--reason must say why you read the access log (it is logged)");
    }
    let camera = args.camera.as_deref().map(camera_ref).transpose()?;
    let site = args
        .site
        .clone()
        .or_else(|| camera.as_ref().map(|c| c.site.clone()))
        .unwrap_or_default();
    let range = if args.window.given() {
        let (from, to) = args.window.resolve()?;
        Some(common::TimeRange {
            start: Some(kordon_proto::time::timestamp_from_system_time(from)),
            end: to.map(kordon_proto::time::timestamp_from_system_time),
        })
    } else {
        None
    };
    let channel = client::connect(&args.client.options()).await?;
    let mut storage = StorageServiceClient::new(channel);
    let mut entries = Vec::new();
    let mut token = String::new();
    while entries.len() < args.limit {
        let resp = storage
            .list_access_log(spb::ListAccessLogRequest {
                principal: args.principal.clone().unwrap_or_default(),
                actions: args.actions.clone(),
                camera: camera.clone(),
                case_id: args.for_case.clone().unwrap_or_default(),
                range,
                audit: Some(common::AuditContext {
                    reason: args.reason.clone(),
                    case_id: args.case.clone(),
                    recipient: String::new(),
                }),
                page: Some(common::PageRequest {
                    page_size: 1000.min(args.limit as u32).max(1),
                    page_token: token.clone(),
                }),
                site: site.clone(),
            })
            .await
            .map_err(status_error)?
            .into_inner();
        entries.extend(resp.entries);
        token = resp.page.map(|p| p.next_page_token).unwrap_or_default();
        if token.is_empty() {
            break;
        }
    }
    entries.truncate(args.limit);
    match args.client.output {
        Output::Json => {
            let out: Vec<serde_json::Value> = entries
                .iter()
                .map(|e| {
                    serde_json::json!({
                        "site": e.site,
                        "sequence": e.sequence,
                        "time": rfc3339(&e.time),
                        "principal": e.principal,
                        "principal_name": e.principal_name,
                        "via_service": e.via_service,
                        "action": action_name(e.action),
                        "objects": e.objects.iter().map(object_text).collect::<Vec<_>>(),
                        "reason": e.reason,
                        "case_id": e.case_id,
                        "recipient": e.recipient,
                        "source": e.source,
                        "method": e.method,
                        "prev_hash": hex::encode(&e.prev_hash),
                        "hash": hex::encode(&e.hash),
                    })
                })
                .collect();
            println!("{}", serde_json::to_string_pretty(&out)?);
        }
        Output::Table => {
            println!(
                "{:>6}  {:<24} {:<18} {:<16} {:<14} {:<22} WHAT",
                "SEQ", "TIME", "WHO", "ACTION", "CASE", "REASON"
            );
            for e in &entries {
                let mut who = e.principal.clone();
                if !e.via_service.is_empty() {
                    who = format!("{who} (asserted by {})", e.via_service);
                }
                let mut what = e
                    .objects
                    .iter()
                    .map(object_text)
                    .collect::<Vec<_>>()
                    .join("; ");
                if !e.recipient.is_empty() {
                    what = format!("{what} → {}", e.recipient);
                }
                if !e.source.is_empty() {
                    what = format!("{what} ← from {}", e.source);
                }
                println!(
                    "{:>6}  {:<24} {:<18} {:<16} {:<14} {:<22} {}",
                    e.sequence,
                    rfc3339(&e.time),
                    who,
                    action_name(e.action),
                    e.case_id,
                    e.reason,
                    what
                );
            }
        }
    }
    Ok(())
}

async fn verify(args: VerifyArgs) -> anyhow::Result<()> {
    let checkpoint = match &args.checkpoint {
        Some(p) => {
            let text = std::fs::read(p).with_context(|| format!("cannot read {}", p.display()))?;
            let v: serde_json::Value = serde_json::from_slice(&text)
                .with_context(|| format!("{}: not JSON", p.display()))?;
            let c = v.get("head").unwrap_or(&v);
            let field = |k: &str| {
                c.get(k)
                    .and_then(|x| x.as_str())
                    .map(str::to_string)
                    .ok_or_else(|| anyhow::anyhow!("{}: checkpoint has no `{k}`", p.display()))
            };
            let time: SystemTime = humantime::parse_rfc3339_weak(&field("time")?)
                .with_context(|| format!("{}: bad `time`", p.display()))?;
            Some(spb::AccessLogCheckpoint {
                site: field("site")?,
                sequence: c.get("sequence").and_then(|x| x.as_u64()).unwrap_or(0),
                hash: hex::decode(field("hash")?).context("checkpoint `hash` is not hex")?,
                time: Some(kordon_proto::time::timestamp_from_system_time(time)),
                signature: hex::decode(field("signature")?)
                    .context("checkpoint `signature` is not hex")?,
                signing_public_key: hex::decode(field("public_key")?)
                    .context("checkpoint `public_key` is not hex")?,
            })
        }
        None => None,
    };
    let channel = client::connect(&args.client.options()).await?;
    let resp = StorageServiceClient::new(channel)
        .verify_access_log(spb::VerifyAccessLogRequest {
            from_sequence: args.from_sequence,
            to_sequence: args.to_sequence,
            checkpoint,
            site: args.site.clone(),
        })
        .await
        .map_err(status_error)?
        .into_inner();
    let head = resp.head.clone().unwrap_or_default();
    let head_json = serde_json::json!({
        "site": head.site,
        "sequence": head.sequence,
        "hash": hex::encode(&head.hash),
        // Exact: the signature covers the time to the nanosecond.
        "time": head
            .time
            .map(|t| {
                humantime::format_rfc3339_nanos(
                    UNIX_EPOCH + Duration::new(t.seconds.max(0) as u64, t.nanos.max(0) as u32),
                )
                .to_string()
            })
            .unwrap_or_default(),
        "signature": hex::encode(&head.signature),
        "public_key": hex::encode(&head.signing_public_key),
    });
    match args.client.output {
        Output::Json => {
            let out = serde_json::json!({
                "intact": resp.intact,
                "first_sequence": resp.first_sequence,
                "last_sequence": resp.last_sequence,
                "entries_checked": resp.entries_checked,
                "findings": resp.findings.iter().map(|f| serde_json::json!({
                    "sequence": f.sequence,
                    "detail": f.detail,
                })).collect::<Vec<_>>(),
                "head": head_json,
            });
            println!("{}", serde_json::to_string_pretty(&out)?);
        }
        Output::Table => {
            println!("SITE       {}", args.site);
            println!(
                "CHECKED    entries {}–{} ({})",
                resp.first_sequence, resp.last_sequence, resp.entries_checked
            );
            for f in &resp.findings {
                println!("FINDING    {}: {}", f.sequence, f.detail);
            }
            println!(
                "RESULT     {}",
                if resp.intact { "intact" } else { "NOT INTACT" }
            );
            println!("CHECKPOINT {}", serde_json::to_string(&head_json)?);
        }
    }
    if !resp.intact {
        anyhow::bail!(
            "the access log of {} is not intact: {} finding(s)",
            args.site,
            resp.findings.len()
        );
    }
    Ok(())
}
