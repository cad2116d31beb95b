//! `kordon alerts`: the officers' commands — list and follow alerts, read one (with its
//! snapshot, a footage read that states a reason), and acknowledge, hold or resolve it; every
//! step is recorded under the caller's identity.

use std::path::PathBuf;
use std::time::Duration;

use futures::StreamExt;
use kordon_proto::alerting::v1 as pb;
use kordon_proto::alerting::v1::alerting_service_client::AlertingServiceClient;
use kordon_proto::common::v1 as common;
use kordon_runtime::client;

use crate::client::{ClientFlags, Output, rfc3339, status_error};
use crate::footage::camera_ref;

#[derive(Debug, clap::Subcommand)]
pub enum AlertsCommand {
    /// List alerts, newest first.
    List(ListArgs),
    /// Follow alert events as they happen (reconnects and resumes from the last one seen).
    Watch(WatchArgs),
    /// Show one alert in full; with --snapshot, save its snapshot (a footage read).
    Get(GetArgs),
    /// Acknowledge an alert: you are handling it.
    Ack(ActArgs),
    /// Put an alert on hold: waiting on something outside Kordon.
    Hold(ActArgs),
    /// Resolve an alert.
    Resolve(ResolveArgs),
    /// Where alerts are delivered, with each sink's health, queue and dead letters.
    Sinks(ClientFlags),
}

#[derive(Debug, Clone, clap::Args)]
pub struct Which {
    /// Only this camera, as SITE/CAMERA (repeatable).
    #[arg(long = "camera")]
    pub cameras: Vec<String>,
    /// Only alerts of this site.
    #[arg(long)]
    pub site: Option<String>,
    /// This severity or higher: low, medium, high, critical.
    #[arg(long, value_parser = severity)]
    pub min_severity: Option<i32>,
}

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub client: ClientFlags,
    #[command(flatten)]
    pub which: Which,
    /// Only alerts in these states: open, acknowledged, on-hold, resolved (repeatable).
    #[arg(long = "state", value_parser = state)]
    pub states: Vec<i32>,
    /// Only alerts of this rule (its id).
    #[arg(long)]
    pub rule: Option<String>,
    /// At most this many alerts.
    #[arg(long, default_value_t = 100)]
    pub limit: usize,
}

#[derive(Debug, clap::Args)]
pub struct WatchArgs {
    #[command(flatten)]
    pub client: ClientFlags,
    #[command(flatten)]
    pub which: Which,
    /// Start with every unresolved alert.
    #[arg(long)]
    pub unresolved: bool,
    /// Replay events from this long ago first (at most the server's replay window, 1h by
    /// default).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub since: Option<Duration>,
    /// Resume after this event (the CURSOR column of the last one seen).
    #[arg(long)]
    pub cursor: Option<String>,
    /// Stop after this many events (default: until interrupted).
    #[arg(long)]
    pub count: Option<usize>,
}

#[derive(Debug, clap::Args)]
pub struct GetArgs {
    #[command(flatten)]
    pub client: ClientFlags,
    pub id: String,
    /// Save the alert's snapshot (JPEG, with the object's box) to this file.
    #[arg(long, value_name = "FILE", requires = "reason")]
    pub snapshot: Option<PathBuf>,
    /// Why you view the snapshot (required with --snapshot; recorded in the access log).
    #[arg(long)]
    pub reason: Option<String>,
    /// Case or file number.
    #[arg(long, default_value = "")]
    pub case: String,
    /// The detection service holding the snapshot, when it is not --server.
    #[arg(long, value_name = "URL")]
    pub detection_server: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct ActArgs {
    #[command(flatten)]
    pub client: ClientFlags,
    pub id: String,
    /// A note kept with the step.
    #[arg(long, default_value = "")]
    pub note: String,
    /// Refuse if the alert changed since you read this version.
    #[arg(long, default_value_t = 0)]
    pub expected_version: u64,
}

#[derive(Debug, clap::Args)]
pub struct ResolveArgs {
    #[command(flatten)]
    pub act: ActArgs,
    /// actioned (a real event, handled), false-alarm or duplicate.
    #[arg(long, value_parser = resolution)]
    pub resolution: i32,
}

fn severity(s: &str) -> Result<i32, String> {
    Ok(match s {
        "low" => pb::AlertSeverity::Low,
        "medium" => pb::AlertSeverity::Medium,
        "high" => pb::AlertSeverity::High,
        "critical" => pb::AlertSeverity::Critical,
        _ => return Err("one of low, medium, high, critical".into()),
    } as i32)
}

fn state(s: &str) -> Result<i32, String> {
    Ok(match s {
        "open" => pb::AlertState::Open,
        "acknowledged" => pb::AlertState::Acknowledged,
        "on-hold" => pb::AlertState::OnHold,
        "resolved" => pb::AlertState::Resolved,
        _ => return Err("one of open, acknowledged, on-hold, resolved".into()),
    } as i32)
}

fn resolution(s: &str) -> Result<i32, String> {
    Ok(match s {
        "actioned" => pb::AlertResolution::Actioned,
        "false-alarm" => pb::AlertResolution::FalseAlarm,
        "duplicate" => pb::AlertResolution::Duplicate,
        _ => return Err("one of actioned, false-alarm, duplicate".into()),
    } as i32)
}

fn lower(name: &str, prefix: &str) -> String {
    name.strip_prefix(prefix)
        .unwrap_or(name)
        .to_ascii_lowercase()
        .replace('_', "-")
}

fn sev_name(v: i32) -> String {
    lower(
        pb::AlertSeverity::try_from(v)
            .unwrap_or_default()
            .as_str_name(),
        "ALERT_SEVERITY_",
    )
}

fn state_name(v: i32) -> String {
    lower(
        pb::AlertState::try_from(v)
            .unwrap_or_default()
            .as_str_name(),
        "ALERT_STATE_",
    )
}

fn kind_name(v: i32) -> String {
    lower(
        pb::AlertEventKind::try_from(v)
            .unwrap_or_default()
            .as_str_name(),
        "ALERT_EVENT_KIND_",
    )
}

fn json(a: &pb::Alert) -> serde_json::Value {
    let c = a.camera.clone().unwrap_or_default();
    serde_json::json!({
        "id": a.id,
        "site": a.site,
        "camera": format!("{}/{}", c.site, c.camera),
        "rule": a.rule_name,
        "rule_id": a.rule_id,
        "severity": sev_name(a.severity),
        "state": state_name(a.state),
        "class": a.class_label,
        "zone": a.zone,
        "line": a.line,
        "track_id": a.track_id,
        "opened_at": rfc3339(&a.opened_at),
        "last_seen_at": rfc3339(&a.last_seen_at),
        "ended_at": rfc3339(&a.ended_at),
        "occurrences": a.occurrences,
        "suppressed": a.suppressed,
        "max_confidence": a.max_confidence,
        "snapshot_id": a.snapshot_id,
        "acknowledged_by": a.acknowledged_by,
        "acknowledged_at": rfc3339(&a.acknowledged_at),
        "acknowledge_note": a.acknowledge_note,
        "held_by": a.held_by,
        "held_at": rfc3339(&a.held_at),
        "hold_note": a.hold_note,
        "resolved_by": a.resolved_by,
        "resolved_at": rfc3339(&a.resolved_at),
        "resolution": lower(pb::AlertResolution::try_from(a.resolution).unwrap_or_default().as_str_name(), "ALERT_RESOLUTION_"),
        "resolve_note": a.resolve_note,
        "version": a.version,
        "origin": a.origin.as_ref().map(|o| serde_json::json!({
            "site": o.site,
            "alert_id": o.alert_id,
            "state": state_name(o.state),
            "version": o.version,
            "received_at": rfc3339(&o.received_at),
        })),
    })
}

const HEADER: &str = "OPENED                    CAMERA                 RULE                      SEVERITY  STATE         SEEN  ALERT";

fn row(a: &pb::Alert) -> String {
    let c = a.camera.clone().unwrap_or_default();
    format!(
        "{:<25} {:<22} {:<25} {:<9} {:<12} {:>5}  {}",
        rfc3339(&a.opened_at),
        format!("{}/{}", c.site, c.camera),
        a.rule_name,
        sev_name(a.severity),
        state_name(a.state),
        a.occurrences,
        a.id
    )
}

async fn connect(
    flags: &ClientFlags,
) -> anyhow::Result<AlertingServiceClient<client::AuthedChannel>> {
    Ok(AlertingServiceClient::new(
        client::connect(&flags.options()).await?,
    ))
}

fn cameras(w: &Which) -> anyhow::Result<Vec<common::CameraRef>> {
    w.cameras.iter().map(|c| camera_ref(c)).collect()
}

pub async fn run(cmd: AlertsCommand) -> anyhow::Result<()> {
    match cmd {
        AlertsCommand::List(a) => list(a).await,
        AlertsCommand::Watch(a) => watch(a).await,
        AlertsCommand::Get(a) => get(a).await,
        AlertsCommand::Ack(a) => act(a, Step::Acknowledge).await,
        AlertsCommand::Hold(a) => act(a, Step::Hold).await,
        AlertsCommand::Resolve(r) => act(r.act, Step::Resolve(r.resolution)).await,
        AlertsCommand::Sinks(f) => sinks(f).await,
    }
}

async fn list(a: ListArgs) -> anyhow::Result<()> {
    let mut c = connect(&a.client).await?;
    let mut token = String::new();
    let mut all = Vec::new();
    loop {
        let page = c
            .list_alerts(pb::ListAlertsRequest {
                site: a.which.site.clone().unwrap_or_default(),
                cameras: cameras(&a.which)?,
                states: a.states.clone(),
                min_severity: a.which.min_severity.unwrap_or(0),
                rule_id: a.rule.clone().unwrap_or_default(),
                page: Some(common::PageRequest {
                    page_size: a.limit.min(500) as u32,
                    page_token: token.clone(),
                }),
                ..Default::default()
            })
            .await
            .map_err(status_error)?
            .into_inner();
        all.extend(page.alerts);
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
            for x in &all {
                println!("{}", row(x));
            }
            eprintln!("{} alerts", all.len());
        }
    }
    Ok(())
}

async fn watch(a: WatchArgs) -> anyhow::Result<()> {
    let mut cursor = a.cursor.clone();
    let mut since = a.since.map(|d| std::time::SystemTime::now() - d);
    let mut unresolved = a.unresolved;
    let mut seen = 0usize;
    if a.client.output == Output::Table {
        println!("EVENT         CURSOR  {HEADER}");
    }
    loop {
        let mut c = match connect(&a.client).await {
            Ok(c) => c,
            Err(e) if cursor.is_some() => {
                eprintln!("kordon: {e:#}; retrying in 1s");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            Err(e) => return Err(e),
        };
        let req = pb::WatchAlertsRequest {
            site: a.which.site.clone().unwrap_or_default(),
            cameras: cameras(&a.which)?,
            min_severity: a.which.min_severity.unwrap_or(0),
            include_unresolved: unresolved,
            since: if cursor.is_none() {
                since.map(kordon_proto::time::timestamp_from_system_time)
            } else {
                None
            },
            cursor: cursor.clone().unwrap_or_default(),
            ..Default::default()
        };
        let mut stream = match c.watch_alerts(req).await {
            Ok(s) => s.into_inner(),
            Err(s) if s.code() == tonic::Code::Unavailable && cursor.is_some() => {
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            Err(s) => return Err(status_error(s)),
        };
        // Resuming by cursor replays exactly what was missed; nothing is sent twice.
        unresolved = false;
        since = None;
        while let Some(item) = stream.next().await {
            match item {
                Ok(e) => {
                    if !e.cursor.is_empty() {
                        cursor = Some(e.cursor.clone());
                    }
                    let alert = e.alert.clone().unwrap_or_default();
                    match a.client.output {
                        Output::Json => {
                            let mut v = json(&alert);
                            v["event"] = kind_name(e.kind).into();
                            v["cursor"] = e.cursor.clone().into();
                            v["event_time"] = rfc3339(&e.event_time).into();
                            println!("{}", serde_json::to_string(&v)?);
                        }
                        Output::Table => {
                            println!("{:<13} {:>6}  {}", kind_name(e.kind), e.cursor, row(&alert))
                        }
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
                    ) && cursor.is_some() =>
                {
                    eprintln!("kordon: {}; resuming", s.message());
                    break;
                }
                Err(s) => return Err(status_error(s)),
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn get(a: GetArgs) -> anyhow::Result<()> {
    let mut c = connect(&a.client).await?;
    let alert = c
        .get_alert(pb::GetAlertRequest {
            alert_id: a.id.clone(),
        })
        .await
        .map_err(status_error)?
        .into_inner()
        .alert
        .unwrap_or_default();
    println!("{}", serde_json::to_string_pretty(&json(&alert))?);
    if let Some(file) = a.snapshot {
        if alert.snapshot_id.is_empty() {
            anyhow::bail!("alert {} has no snapshot", alert.id);
        }
        let mut flags = a.client.clone();
        if let Some(s) = a.detection_server {
            flags.server = s;
        }
        crate::detections::run(crate::detections::DetectionsCommand::Snapshot(
            crate::detections::SnapshotArgs {
                client: flags,
                id: alert.snapshot_id.clone(),
                output_file: file,
                reason: a.reason.unwrap_or_default(),
                case: a.case,
                no_box: false,
            },
        ))
        .await?;
    }
    Ok(())
}

/// An officer's step on an alert.
enum Step {
    Acknowledge,
    Hold,
    /// With the resolution.
    Resolve(i32),
}

async fn act(a: ActArgs, step: Step) -> anyhow::Result<()> {
    let mut c = connect(&a.client).await?;
    let alert = match step {
        Step::Resolve(resolution) => {
            c.resolve_alert(pb::ResolveAlertRequest {
                alert_id: a.id.clone(),
                resolution,
                note: a.note.clone(),
                expected_version: a.expected_version,
            })
            .await
            .map_err(status_error)?
            .into_inner()
            .alert
        }
        Step::Hold => {
            c.hold_alert(pb::HoldAlertRequest {
                alert_id: a.id.clone(),
                note: a.note.clone(),
                expected_version: a.expected_version,
            })
            .await
            .map_err(status_error)?
            .into_inner()
            .alert
        }
        Step::Acknowledge => {
            c.acknowledge_alert(pb::AcknowledgeAlertRequest {
                alert_id: a.id.clone(),
                note: a.note.clone(),
                expected_version: a.expected_version,
            })
            .await
            .map_err(status_error)?
            .into_inner()
            .alert
        }
    }
    .unwrap_or_default();
    match a.client.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&json(&alert))?),
        Output::Table => {
            let (by, at) = match pb::AlertState::try_from(alert.state) {
                Ok(pb::AlertState::Resolved) => (&alert.resolved_by, &alert.resolved_at),
                Ok(pb::AlertState::OnHold) => (&alert.held_by, &alert.held_at),
                _ => (&alert.acknowledged_by, &alert.acknowledged_at),
            };
            println!(
                "alert {} is {} (by {} at {}, version {})",
                alert.id,
                state_name(alert.state),
                by,
                rfc3339(at),
                alert.version
            );
        }
    }
    Ok(())
}

async fn sinks(flags: ClientFlags) -> anyhow::Result<()> {
    let mut c = connect(&flags).await?;
    let list = c
        .list_sinks(pb::ListSinksRequest {})
        .await
        .map_err(status_error)?
        .into_inner()
        .sinks;
    let rows: Vec<serde_json::Value> = list
        .iter()
        .map(|s| {
            let st = s.status.clone().unwrap_or_default();
            let (kind, target) = match &s.target {
                Some(pb::sink::Target::Webhook(w)) => ("webhook", w.url.clone()),
                Some(pb::sink::Target::Mqtt(m)) => ("mqtt", m.broker_url.clone()),
                Some(pb::sink::Target::GrpcStream(_)) => ("grpc", "WatchAlerts".to_string()),
                None => ("", String::new()),
            };
            serde_json::json!({
                "name": s.name,
                "kind": kind,
                "target": target,
                "healthy": st.healthy,
                "delivered": st.delivered_total,
                "failed": st.failed_total,
                "dead_letters": st.dead_letters_total,
                "pending": st.pending,
                "subscribers": st.subscribers,
                "last_delivery_at": rfc3339(&st.last_delivery_at),
                "last_error": st.last_error,
                "last_error_at": rfc3339(&st.last_error_at),
                "disabled_reason": st.disabled_reason,
            })
        })
        .collect();
    match flags.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&rows)?),
        Output::Table => {
            println!(
                "{:<16} {:<8} {:<8} {:>9} {:>7} {:>6} {:>7}  LAST ERROR",
                "SINK", "KIND", "HEALTHY", "DELIVERED", "PENDING", "DEAD", "FAILED"
            );
            for r in &rows {
                let why = [&r["disabled_reason"], &r["last_error"]]
                    .iter()
                    .filter_map(|v| v.as_str())
                    .find(|s| !s.is_empty())
                    .unwrap_or("")
                    .to_string();
                println!(
                    "{:<16} {:<8} {:<8} {:>9} {:>7} {:>6} {:>7}  {}",
                    r["name"].as_str().unwrap_or(""),
                    r["kind"].as_str().unwrap_or(""),
                    if r["healthy"].as_bool() == Some(true) {
                        "yes"
                    } else {
                        "no"
                    },
                    r["delivered"],
                    r["pending"],
                    r["dead_letters"],
                    r["failed"],
                    why
                );
            }
        }
    }
    Ok(())
}
