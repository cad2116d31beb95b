//! Alerting configuration: the `alerting:` section of the `kordon` config file. In Kubernetes the
//! operator renders it from the Site (time zone, `alertSinks`) and its `AlertRule` resources.
//!
//! ```yaml
//! alerting:
//!   replica: burgas-alerting           # pod name; shown in logs
//!   database_url: postgres://…         # default: SQLite in <data_dir>/alerting.db
//!   detection:                         # where detections come from
//!     endpoints: [https://burgas-detection-0.burgas-detection.ns.svc:8470]   # default: this process
//!     ca_file: …, cert_file: …, key_file: …
//!   time_zones: { burgas: Europe/Sofia, edirne: Europe/Istanbul }           # default: UTC
//!   grpc_stream: { max_buffered: 1000, replay_window: 1h }
//!   sinks:
//!     - name: duty-desk
//!       webhook: { url: https://desk.example/hooks/kordon, secret_file: /var/run/kordon/sinks/duty-desk/key }
//!     - name: mqtt
//!       mqtt: { broker_url: mqtt://mosquitto:1883, topic_prefix: kordon }
//!   storage: { url: https://burgas-storage.ns.svc:8470, ca_file: …, cert_file: …, key_file: … }
//!   rules:
//!     - name: person-on-the-road
//!       site: burgas
//!       severity: high
//!       cameras: [port-gate]
//!       classes: [person]
//!       zone: { zones: [road], min_dwell: 2s }
//!       schedule: { windows: [{ days: [mon, tue, wed, thu, fri], start: "22:00", end: "06:00" }] }
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use kordon_proto::alerting::v1 as pb;
use kordon_proto::common::v1 as common;
use kordon_runtime::client::ServiceClientConfig;
use serde::{Deserialize, Serialize};

use crate::AlertingError;

/// An incident ends after this long without a match, when a rule sets none.
pub const DEFAULT_QUIET_PERIOD: Duration = Duration::from_secs(40);
/// After an incident ended, matches this soon after its last one are suppressed.
pub const DEFAULT_COOLDOWN: Duration = Duration::from_secs(60);
/// Events queued per `WatchAlerts` subscriber before it is cut off.
pub const DEFAULT_MAX_BUFFERED: u32 = 1000;
/// How far back `WatchAlerts` may resume.
pub const DEFAULT_REPLAY_WINDOW: Duration = Duration::from_secs(3600);
/// Delivery attempts of one event to one sink, the first included.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 8;
pub const DEFAULT_INITIAL_BACKOFF: Duration = Duration::from_secs(1);
pub const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(300);
/// Per webhook attempt.
pub const DEFAULT_WEBHOOK_TIMEOUT: Duration = Duration::from_secs(5);
/// MQTT topics start with this when a sink sets no prefix (`kordon/<site>/alerts`).
pub const DEFAULT_TOPIC_PREFIX: &str = "kordon";
/// Alerts and their events are kept this long.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(365 * 24 * 3600);

/// Where detections come from.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DetectionSource {
    /// gRPC URLs of the site's detection replicas; empty means this process in standalone, and
    /// none for `kordon alerting` (a Site with `detection.replicas: 0`: partner alerts only).
    pub endpoints: Vec<String>,
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
}

impl DetectionSource {
    /// Client settings for one endpoint.
    pub fn client(&self) -> ServiceClientConfig {
        ServiceClientConfig {
            url: None,
            ca_file: self.ca_file.clone(),
            cert_file: self.cert_file.clone(),
            key_file: self.key_file.clone(),
        }
    }
}

/// The implicit `WatchAlerts` sink.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GrpcStreamConfig {
    pub max_buffered: u32,
    #[serde(with = "humantime_serde")]
    pub replay_window: Duration,
}

impl Default for GrpcStreamConfig {
    fn default() -> Self {
        GrpcStreamConfig {
            max_buffered: DEFAULT_MAX_BUFFERED,
            replay_window: DEFAULT_REPLAY_WINDOW,
        }
    }
}

/// How a failed delivery is retried: exponential backoff with full jitter.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    pub max_attempts: u32,
    #[serde(with = "humantime_serde")]
    pub initial_backoff: Duration,
    #[serde(with = "humantime_serde")]
    pub max_backoff: Duration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            initial_backoff: DEFAULT_INITIAL_BACKOFF,
            max_backoff: DEFAULT_MAX_BACKOFF,
        }
    }
}

impl RetryConfig {
    /// The wait before attempt `attempt + 1` (attempt counts from 1): a random duration up to
    /// `initial × 2^(attempt-1)`, capped, and never under a tenth of the cap's base (so retries
    /// of many events do not stampede, and none spins).
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exp = self
            .initial_backoff
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(20))
            .min(self.max_backoff);
        let floor = exp / 2;
        let jitter = rand::random::<f64>();
        floor + (exp - floor).mul_f64(jitter)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookYaml {
    /// `https://…` (`http://` only to a loopback address).
    pub url: String,
    /// File holding the `whsec_…` signing secret (a mounted Secret key).
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
    /// The secret itself (standalone and tests; prefer `secret_file`).
    #[serde(default)]
    pub secret: Option<String>,
    /// PEM file of the CA(s) that sign the receiver's certificate: the receiver is then trusted
    /// by these alone (a desk's private CA), not by the public roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    #[serde(default = "default_webhook_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    #[serde(default)]
    pub retry: RetryConfig,
}

fn default_webhook_timeout() -> Duration {
    DEFAULT_WEBHOOK_TIMEOUT
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttYaml {
    /// `mqtt://host:port` or `mqtts://host:port`.
    pub broker_url: String,
    /// Topics are `<prefix>/<site>/alerts`, `<prefix>/<site>/<camera>/events` and
    /// `<prefix>/<site>/available`.
    #[serde(default = "default_prefix")]
    pub topic_prefix: String,
    /// 0, 1 or 2.
    #[serde(default = "one")]
    pub qos: u8,
    #[serde(default)]
    pub client_id: Option<String>,
    #[serde(default)]
    pub username_file: Option<PathBuf>,
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// PEM CA bundle for `mqtts://`; unset means the system roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    #[serde(default)]
    pub retry: RetryConfig,
}

fn default_prefix() -> String {
    DEFAULT_TOPIC_PREFIX.to_string()
}
fn one() -> u8 {
    1
}

/// A delivery target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkYaml {
    pub name: String,
    #[serde(default)]
    pub disabled: bool,
    #[serde(default)]
    pub min_severity: Severity,
    #[serde(default)]
    pub include_partner_alerts: bool,
    #[serde(default)]
    pub webhook: Option<WebhookYaml>,
    #[serde(default)]
    pub mqtt: Option<MqttYaml>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    #[default]
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub fn to_proto(self) -> pb::AlertSeverity {
        match self {
            Severity::Low => pb::AlertSeverity::Low,
            Severity::Medium => pb::AlertSeverity::Medium,
            Severity::High => pb::AlertSeverity::High,
            Severity::Critical => pb::AlertSeverity::Critical,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    #[default]
    Any,
    LeftToRight,
    RightToLeft,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Dedup {
    #[default]
    Camera,
    Zone,
    Track,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Day {
    Mon,
    Tue,
    Wed,
    Thu,
    Fri,
    Sat,
    Sun,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZoneYaml {
    #[serde(default)]
    pub zones: Vec<String>,
    #[serde(default, with = "humantime_serde")]
    pub min_dwell: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LineYaml {
    pub lines: Vec<String>,
    #[serde(default)]
    pub direction: Direction,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowYaml {
    /// Days the window starts on; empty means every day.
    #[serde(default)]
    pub days: Vec<Day>,
    /// Local `HH:MM`; the window is [start, end), past midnight when end ≤ start (equal: all day).
    pub start: String,
    pub end: String,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleYaml {
    /// IANA time zone; empty means the site's.
    #[serde(default)]
    pub time_zone: String,
    pub windows: Vec<WindowYaml>,
}

/// A rule as written in the config (an `AlertRule` resource, rendered by the operator).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleYaml {
    pub name: String,
    pub site: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub disabled: bool,
    #[serde(default = "medium")]
    pub severity: Severity,
    #[serde(default)]
    pub cameras: Vec<String>,
    #[serde(default)]
    pub classes: Vec<String>,
    #[serde(default)]
    pub min_confidence: f32,
    #[serde(default)]
    pub zone: Option<ZoneYaml>,
    #[serde(default)]
    pub line: Option<LineYaml>,
    #[serde(default)]
    pub min_objects: u32,
    #[serde(default)]
    pub schedule: Option<ScheduleYaml>,
    #[serde(default)]
    pub dedup: Dedup,
    #[serde(default, with = "humantime_serde")]
    pub quiet_period: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub cooldown: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub escalate_after: Option<Duration>,
    #[serde(default)]
    pub sinks: Vec<String>,
}

fn medium() -> Severity {
    Severity::Medium
}

/// How this alerting process works.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertingConfig {
    pub replica: String,
    pub database_url: Option<String>,
    pub detection: DetectionSource,
    /// Site → IANA time zone (schedules without their own); unlisted sites run on UTC.
    pub time_zones: BTreeMap<String, String>,
    pub grpc_stream: GrpcStreamConfig,
    pub sinks: Vec<SinkYaml>,
    pub rules: Vec<RuleYaml>,
    /// Alerts (and their events and dead letters) older than this are deleted.
    #[serde(with = "humantime_serde")]
    pub retention: Duration,
    /// The site's storage service, where alerts shared with partners and received from them
    /// are recorded in the access log (`url` unset: this process, in standalone).
    pub storage: ServiceClientConfig,
    /// Partner installations and the agreements with them: the top-level `partners:` section,
    /// set by the binary.
    #[serde(skip)]
    pub partners: kordon_runtime::partner::PartnersConfig,
}

impl Default for AlertingConfig {
    fn default() -> Self {
        AlertingConfig {
            replica: "alerting-0".to_string(),
            database_url: None,
            detection: DetectionSource::default(),
            time_zones: BTreeMap::new(),
            grpc_stream: GrpcStreamConfig::default(),
            sinks: Vec::new(),
            rules: Vec::new(),
            retention: DEFAULT_RETENTION,
            storage: ServiceClientConfig::default(),
            partners: Default::default(),
        }
    }
}

fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// `HH:MM` → minutes after midnight.
pub fn parse_hhmm(s: &str) -> Option<u32> {
    let (h, m) = s.split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    (h < 24 && m < 60).then_some(h * 60 + m)
}

impl RetryConfig {
    fn validate(&self, key: &str) -> Result<(), AlertingError> {
        if self.max_attempts == 0 || self.max_attempts > 100 {
            return Err(AlertingError::config(
                &format!("{key}.max_attempts"),
                "must be between 1 and 100",
            ));
        }
        if self.initial_backoff.is_zero() || self.max_backoff < self.initial_backoff {
            return Err(AlertingError::config(
                &format!("{key}.max_backoff"),
                "initial_backoff must be positive and at most max_backoff",
            ));
        }
        Ok(())
    }
}

impl AlertingConfig {
    /// Checks every value; the error names the key (`alerting.<key>`).
    pub fn validate(&self) -> Result<(), AlertingError> {
        if let Some(url) = &self.database_url
            && !kordon_db::is_supported_url(url)
        {
            return Err(AlertingError::config(
                "database_url",
                "must start with sqlite:// or postgres://",
            ));
        }
        for (i, e) in self.detection.endpoints.iter().enumerate() {
            if !(e.starts_with("http://") || e.starts_with("https://")) {
                return Err(AlertingError::config(
                    &format!("detection.endpoints[{i}]"),
                    "must be an http:// or https:// URL",
                ));
            }
        }
        for (site, tz) in &self.time_zones {
            jiff::tz::TimeZone::get(tz).map_err(|e| {
                AlertingError::config(&format!("time_zones.{site}"), format!("{tz}: {e}"))
            })?;
        }
        if self.grpc_stream.max_buffered == 0 {
            return Err(AlertingError::config(
                "grpc_stream.max_buffered",
                "must be at least 1",
            ));
        }
        if self.retention < Duration::from_secs(24 * 3600) {
            return Err(AlertingError::config("retention", "must be at least 1d"));
        }
        let mut sink_names = std::collections::BTreeSet::new();
        for (i, s) in self.sinks.iter().enumerate() {
            let key = format!("sinks[{i}]");
            if !is_name(&s.name) || s.name == crate::GRPC_SINK {
                return Err(AlertingError::config(
                    &format!("{key}.name"),
                    format!(
                        "{:?}: must be a DNS label (a-z, 0-9, '-'), and not `grpc`",
                        s.name
                    ),
                ));
            }
            if !sink_names.insert(s.name.as_str()) {
                return Err(AlertingError::config(
                    &format!("{key}.name"),
                    format!("{} is listed twice", s.name),
                ));
            }
            match (&s.webhook, &s.mqtt) {
                (Some(w), None) => {
                    let u = url::Url::parse(&w.url).map_err(|e| {
                        AlertingError::config(&format!("{key}.webhook.url"), e.to_string())
                    })?;
                    let loopback = match u.host() {
                        Some(url::Host::Ipv4(a)) => a.is_loopback(),
                        Some(url::Host::Ipv6(a)) => a.is_loopback(),
                        Some(url::Host::Domain(d)) => d == "localhost",
                        None => false,
                    };
                    if !(u.scheme() == "https" || (u.scheme() == "http" && loopback)) {
                        return Err(AlertingError::config(
                            &format!("{key}.webhook.url"),
                            "must be https:// (http:// only to a loopback address)",
                        ));
                    }
                    if w.secret_file.is_some() == w.secret.is_some() {
                        return Err(AlertingError::config(
                            &format!("{key}.webhook"),
                            "set exactly one of secret_file and secret (a whsec_… signing secret)",
                        ));
                    }
                    if let Some(f) = &w.ca_file {
                        crate::sink::webhook::read_ca(f).map_err(|e| {
                            AlertingError::config(&format!("{key}.webhook.ca_file"), e)
                        })?;
                    }
                    if w.timeout.is_zero() {
                        return Err(AlertingError::config(
                            &format!("{key}.webhook.timeout"),
                            "must be positive",
                        ));
                    }
                    w.retry.validate(&format!("{key}.webhook.retry"))?;
                }
                (None, Some(m)) => {
                    let u = url::Url::parse(&m.broker_url).map_err(|e| {
                        AlertingError::config(&format!("{key}.mqtt.broker_url"), e.to_string())
                    })?;
                    if !matches!(u.scheme(), "mqtt" | "mqtts") || u.host().is_none() {
                        return Err(AlertingError::config(
                            &format!("{key}.mqtt.broker_url"),
                            "must be mqtt://host:port or mqtts://host:port",
                        ));
                    }
                    if m.qos > 2 {
                        return Err(AlertingError::config(
                            &format!("{key}.mqtt.qos"),
                            "must be 0, 1 or 2",
                        ));
                    }
                    if m.topic_prefix.is_empty()
                        || m.topic_prefix.contains(['+', '#'])
                        || m.topic_prefix.ends_with('/')
                    {
                        return Err(AlertingError::config(
                            &format!("{key}.mqtt.topic_prefix"),
                            "must be a topic without wildcards or a trailing /",
                        ));
                    }
                    if m.username_file.is_some() != m.password_file.is_some() {
                        return Err(AlertingError::config(
                            &format!("{key}.mqtt"),
                            "username_file and password_file go together",
                        ));
                    }
                    m.retry.validate(&format!("{key}.mqtt.retry"))?;
                }
                _ => {
                    return Err(AlertingError::config(
                        &key,
                        "a sink is exactly one of webhook or mqtt",
                    ));
                }
            }
        }
        let mut rule_names = std::collections::BTreeSet::new();
        for r in &self.rules {
            if !rule_names.insert((r.site.as_str(), r.name.as_str())) {
                return Err(AlertingError::config(
                    &format!("rules.{}", r.name),
                    "listed twice for its site",
                ));
            }
            crate::rules::Rule::from_yaml(r, &self.time_zones).map_err(|e| match e {
                AlertingError::Invalid(m) => AlertingError::config(&format!("rules.{}", r.name), m),
                other => other,
            })?;
            for s in &r.sinks {
                if !sink_names.contains(s.as_str()) && s != crate::GRPC_SINK {
                    return Err(AlertingError::config(
                        &format!("rules.{}.sinks", r.name),
                        format!("no sink is named {s}"),
                    ));
                }
            }
        }
        Ok(())
    }

    /// The database URL to open: the configured one, or SQLite in `data_dir`.
    pub fn database_url(&self, data_dir: &std::path::Path) -> String {
        match &self.database_url {
            Some(u) => u.clone(),
            None => format!("sqlite://{}", data_dir.join("alerting.db").display()),
        }
    }

    /// The site's time zone (UTC when unlisted).
    pub fn time_zone(&self, site: &str) -> &str {
        self.time_zones.get(site).map_or("UTC", String::as_str)
    }
}

/// A rule's YAML as the proto `Rule` (id, version and times are set by the store).
pub fn rule_to_proto(r: &RuleYaml) -> pb::Rule {
    let dur =
        |d: Option<Duration>| d.map(|d| prost_types::Duration::try_from(d).unwrap_or_default());
    pb::Rule {
        id: String::new(),
        site: r.site.clone(),
        name: r.name.clone(),
        description: r.description.clone(),
        disabled: r.disabled,
        severity: r.severity.to_proto() as i32,
        cameras: r
            .cameras
            .iter()
            .map(|c| common::CameraRef {
                site: r.site.clone(),
                camera: c.clone(),
            })
            .collect(),
        classes: r.classes.clone(),
        min_confidence: r.min_confidence,
        trigger: if let Some(z) = &r.zone {
            Some(pb::rule::Trigger::Zone(pb::ZoneTrigger {
                zones: z.zones.clone(),
                min_dwell: dur(z.min_dwell),
            }))
        } else {
            r.line.as_ref().map(|l| {
                pb::rule::Trigger::LineCrossing(pb::LineCrossingTrigger {
                    lines: l.lines.clone(),
                    direction: match l.direction {
                        Direction::Any => 0,
                        Direction::LeftToRight => {
                            kordon_proto::detection::v1::LineDirection::LeftToRight as i32
                        }
                        Direction::RightToLeft => {
                            kordon_proto::detection::v1::LineDirection::RightToLeft as i32
                        }
                    },
                })
            })
        },
        schedule: r.schedule.as_ref().map(|s| pb::Schedule {
            time_zone: s.time_zone.clone(),
            windows: s
                .windows
                .iter()
                .map(|w| pb::ScheduleWindow {
                    days: w
                        .days
                        .iter()
                        .map(|d| match d {
                            Day::Mon => pb::Weekday::Monday,
                            Day::Tue => pb::Weekday::Tuesday,
                            Day::Wed => pb::Weekday::Wednesday,
                            Day::Thu => pb::Weekday::Thursday,
                            Day::Fri => pb::Weekday::Friday,
                            Day::Sat => pb::Weekday::Saturday,
                            Day::Sun => pb::Weekday::Sunday,
                        } as i32)
                        .collect(),
                    start_minute: parse_hhmm(&w.start).unwrap_or(0),
                    end_minute: parse_hhmm(&w.end).unwrap_or(0),
                })
                .collect(),
        }),
        dedup_scope: match r.dedup {
            Dedup::Camera => pb::DedupScope::Camera,
            Dedup::Zone => pb::DedupScope::Zone,
            Dedup::Track => pb::DedupScope::Track,
        } as i32,
        cooldown: dur(r.cooldown),
        sinks: r.sinks.clone(),
        min_objects: r.min_objects,
        quiet_period: dur(r.quiet_period),
        escalate_after: dur(r.escalate_after),
        version: 0,
        created_at: None,
        updated_at: None,
        updated_by: String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example() -> AlertingConfig {
        serde_yaml::from_str(
            r#"
time_zones: { burgas: Europe/Sofia, edirne: Europe/Istanbul }
sinks:
  - name: duty-desk
    webhook: { url: "http://127.0.0.1:9000/hook", secret: whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw }
  - name: mqtt
    mqtt: { broker_url: "mqtt://127.0.0.1:1883" }
rules:
  - name: person-on-the-road
    site: burgas
    severity: high
    cameras: [port-gate]
    classes: [person]
    zone: { zones: [road], min_dwell: 2s }
    schedule: { windows: [{ days: [mon, fri], start: "22:00", end: "06:00" }] }
    sinks: [duty-desk]
"#,
        )
        .unwrap()
    }

    #[test]
    fn the_documented_example_is_valid() {
        let c = example();
        c.validate().unwrap();
        assert_eq!(c.time_zone("burgas"), "Europe/Sofia");
        assert_eq!(c.time_zone("yambol"), "UTC");
        let p = rule_to_proto(&c.rules[0]);
        assert_eq!(p.severity, pb::AlertSeverity::High as i32);
        let w = &p.schedule.unwrap().windows[0];
        assert_eq!((w.start_minute, w.end_minute), (22 * 60, 6 * 60));
    }

    #[test]
    fn a_webhook_ca_file_must_hold_certificates() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = example();
        let missing = dir.path().join("missing.crt");
        c.sinks[0].webhook.as_mut().unwrap().ca_file = Some(missing);
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("alerting.sinks[0].webhook.ca_file"), "{e}");
        assert!(e.contains("missing.crt"), "{e}");

        let not_pem = dir.path().join("key.txt");
        std::fs::write(&not_pem, "whsec_not-a-certificate").unwrap();
        c.sinks[0].webhook.as_mut().unwrap().ca_file = Some(not_pem);
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("holds no certificate"), "{e}");

        let ca = rcgen::generate_simple_self_signed(vec!["desk.example".into()]).unwrap();
        let pem = dir.path().join("ca.crt");
        std::fs::write(&pem, ca.cert.pem()).unwrap();
        c.sinks[0].webhook.as_mut().unwrap().ca_file = Some(pem.clone());
        c.validate().unwrap();
        let w = c.sinks[0].webhook.as_ref().unwrap();
        crate::sink::webhook::Webhook::new(w).expect("a client trusting that CA alone");
    }

    #[test]
    fn a_bad_value_names_its_key() {
        let mut c = example();
        c.rules[0].sinks = vec!["pager".into()];
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("alerting.rules.person-on-the-road.sinks"), "{e}");
        assert!(e.contains("pager"), "{e}");

        let mut c = example();
        c.sinks[0].webhook.as_mut().unwrap().url = "http://desk.example/hook".into();
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("alerting.sinks[0].webhook.url"), "{e}");

        let mut c = example();
        c.time_zones
            .insert("yambol".into(), "Europe/Nowhere".into());
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("alerting.time_zones.yambol"), "{e}");

        let mut c = example();
        c.rules[0].schedule.as_mut().unwrap().windows[0].start = "25:00".into();
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("alerting.rules.person-on-the-road"), "{e}");
        assert!(e.contains("25:00"), "{e}");
    }

    #[test]
    fn backoff_grows_jittered_and_capped() {
        let r = RetryConfig {
            max_attempts: 8,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(10),
        };
        for _ in 0..100 {
            let b1 = r.backoff(1);
            assert!(b1 >= Duration::from_millis(500) && b1 <= Duration::from_secs(1));
            let b3 = r.backoff(3);
            assert!(b3 >= Duration::from_secs(2) && b3 <= Duration::from_secs(4));
            assert!(r.backoff(30) <= Duration::from_secs(10));
        }
    }
}
