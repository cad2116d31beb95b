//! AlertRules: which are accepted for their Site, and what the site's alerting service is told
//! — the `alerting` section of `site.yaml` ([`config`]).
//!
//! Guarantees:
//! - The section is a pure function of the Site, its namespace and its AlertRules: rules are
//!   sorted by name, optional settings left unset are left out, so the same inputs give the same
//!   bytes (and the same [`CONFIG_ANNOTATION`] on the alerting pods, which therefore roll only
//!   when the section changes).
//! - A rule is rendered only when it is accepted ([`verdict`]): its Site exists and is not being
//!   deleted, and every sink it names is one of the Site's `spec.alertSinks`. A rule naming an
//!   unknown sink is left out whole (never delivered to fewer sinks than it asks for); its
//!   conditions say which sink is missing.
//! - No secret enters the section: a webhook's signing key is a file mounted read-only from its
//!   Secret under [`SINKS_DIR`], the database URL an environment variable from its Secret.
//!
//! The section's shape is the alerting service's configuration (snake_case, durations as
//! humantime strings); the CRD's own spellings (`left-to-right`) are mapped by type here, not
//! passed through as strings.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use serde::Serialize;

use crate::conditions::{FALSE, TRUE, condition};
use crate::crd::{
    AlertRule, AlertRuleStatus, CrossingDirection, Dedup, Severity, Site, TimeWindow, Weekday,
};
use crate::render::{GRPC_PORT, TLS_DIR, component_name, site_config_name};

/// Where each webhook sink's signing Secret is mounted: `<SINKS_DIR>/<sink>/key`.
pub const SINKS_DIR: &str = "/var/run/kordon/sinks";
/// Where each webhook sink's receiver CA is mounted: `<SINK_CAS_DIR>/<sink>/ca.crt`.
pub const SINK_CAS_DIR: &str = "/var/run/kordon/sink-cas";
/// The key of a signing Secret that holds the HMAC key.
pub const SIGNING_KEY: &str = "key";
/// Pod template annotation of the alerting Deployment: SHA-256 (hex) of the rendered section.
pub const CONFIG_ANNOTATION: &str = "kordon.io/alerting-config";

/// The `alerting` section of `site.yaml`.
#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct AlertingConfig {
    /// Where the site's detections come from.
    pub detection: DetectionSource,
    /// Site → IANA time zone (sites without `spec.timeZone` are absent).
    pub time_zones: BTreeMap<String, String>,
    pub sinks: Vec<SinkConfig>,
    /// Accepted rules, by name.
    pub rules: Vec<RuleConfig>,
    /// The site's storage, where alerts shared with partners are recorded in the access log.
    pub storage: StorageClient,
}

/// How alerting reaches the site's storage service.
#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct StorageClient {
    pub url: String,
    pub ca_file: String,
    pub cert_file: String,
    pub key_file: String,
}

/// The detection replicas alerting watches, and the credentials it presents to them.
#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct DetectionSource {
    /// One per detection replica, e.g. `https://burgas-detection-0.burgas-detection.kordon.svc:8470`.
    pub endpoints: Vec<String>,
    pub ca_file: String,
    pub cert_file: String,
    pub key_file: String,
}

#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct SinkConfig {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook: Option<WebhookConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mqtt: Option<MqttConfig>,
}

#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct WebhookConfig {
    pub url: String,
    /// The HMAC key that signs deliveries (only when the sink names a `signingSecret`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_file: Option<String>,
    /// The receiver's CA (only when the sink names a `ca`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
}

#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct MqttConfig {
    pub broker_url: String,
    pub topic_prefix: String,
}

/// One rule as the alerting service reads it.
#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct RuleConfig {
    pub name: String,
    pub site: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub disabled: bool,
    pub severity: Severity,
    pub cameras: Vec<String>,
    pub classes: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_confidence: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zone: Option<ZoneConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<LineConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_objects: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schedule: Option<ScheduleConfig>,
    pub dedup: Dedup,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quiet_period: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cooldown: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub escalate_after: Option<String>,
    /// Empty: every sink of the site.
    pub sinks: Vec<String>,
}

#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct ZoneConfig {
    pub zones: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_dwell: Option<String>,
}

#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct LineConfig {
    pub lines: Vec<String>,
    pub direction: Direction,
}

/// [`CrossingDirection`] as the service spells it.
#[derive(Serialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Any,
    LeftToRight,
    RightToLeft,
}

impl From<CrossingDirection> for Direction {
    fn from(d: CrossingDirection) -> Self {
        match d {
            CrossingDirection::Any => Direction::Any,
            CrossingDirection::LeftToRight => Direction::LeftToRight,
            CrossingDirection::RightToLeft => Direction::RightToLeft,
        }
    }
}

#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct ScheduleConfig {
    /// Unset: the site's entry in `time_zones`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
    pub windows: Vec<WindowConfig>,
}

#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct WindowConfig {
    /// Empty: every day.
    pub days: Vec<Weekday>,
    pub start: String,
    pub end: String,
}

impl From<&TimeWindow> for WindowConfig {
    fn from(w: &TimeWindow) -> Self {
        WindowConfig {
            days: w.days.clone(),
            start: w.start.clone(),
            end: w.end.clone(),
        }
    }
}

/// Why a rule is not rendered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    SiteNotFound(String),
    SiteDeleting(String),
    /// The sinks the rule names that its Site does not have.
    UnknownSinks(Vec<String>),
}

impl Problem {
    pub fn reason(&self) -> &'static str {
        match self {
            Problem::SiteNotFound(_) => "SiteNotFound",
            Problem::SiteDeleting(_) => "SiteDeleting",
            Problem::UnknownSinks(_) => "UnknownSink",
        }
    }

    pub fn message(&self) -> String {
        match self {
            Problem::SiteNotFound(s) => format!("Site `{s}` does not exist in this namespace"),
            Problem::SiteDeleting(s) => format!("Site `{s}` is being deleted"),
            Problem::UnknownSinks(sinks) => {
                let names: Vec<String> = sinks.iter().map(|s| format!("`{s}`")).collect();
                format!(
                    "the Site has no alert sink {} (spec.alertSinks); the rule is left out of \
                     the alerting configuration until it does",
                    names.join(", ")
                )
            }
        }
    }
}

/// Whether `rule` can be rendered for `site` (its Site, as found in the cache).
pub fn verdict(rule: &AlertRule, site: Option<&Site>) -> Result<(), Problem> {
    let site = match site {
        None => return Err(Problem::SiteNotFound(rule.spec.site.clone())),
        Some(s) if s.metadata.deletion_timestamp.is_some() => {
            return Err(Problem::SiteDeleting(rule.spec.site.clone()));
        }
        Some(s) => s,
    };
    let unknown: Vec<String> = rule
        .spec
        .sinks
        .iter()
        .filter(|name| !site.spec.alert_sinks.iter().any(|s| &&s.name == name))
        .cloned()
        .collect();
    if unknown.is_empty() {
        Ok(())
    } else {
        Err(Problem::UnknownSinks(unknown))
    }
}

/// The status `rule` should show: Accepted and Ready True once it is rendered into its Site's
/// configuration (the Site reconciler calls this after applying it), False with the problem's
/// reason otherwise.
pub fn desired_status(rule: &AlertRule, site: Option<&Site>, now: &Time) -> AlertRuleStatus {
    let previous = rule
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or(&[]);
    let generation = rule.metadata.generation;
    let cond =
        |t: &str, s: &str, r: &str, m: String| condition(previous, t, s, r, m, generation, now);
    let conditions = match verdict(rule, site) {
        Ok(()) => {
            let config = site_config_name(&rule.spec.site);
            let ready = if rule.spec.disabled {
                format!("rendered into ConfigMap {config} (disabled: raises nothing)")
            } else {
                format!("rendered into ConfigMap {config}")
            };
            vec![
                cond(
                    "Accepted",
                    TRUE,
                    "Accepted",
                    "its Site and sinks exist".into(),
                ),
                cond("Ready", TRUE, "Rendered", ready),
            ]
        }
        Err(problem) => vec![
            cond("Accepted", FALSE, problem.reason(), problem.message()),
            cond("Ready", FALSE, problem.reason(), problem.message()),
        ],
    };
    AlertRuleStatus {
        conditions,
        observed_generation: generation,
    }
}

/// The `alerting` section for `site` (named `name` in `ns`) with the accepted ones of `rules`.
pub fn config(site: &Site, name: &str, ns: &str, rules: &[AlertRule]) -> AlertingConfig {
    let detection_service = component_name(name, "detection");
    let replicas = u32::try_from(site.spec.detection.replicas).unwrap_or(0);
    let endpoints = (0..replicas)
        .map(|o| {
            format!(
                "https://{}.{detection_service}.{ns}.svc:{GRPC_PORT}",
                crate::placement::pod_name(name, "detection", o)
            )
        })
        .collect();
    let storage = StorageClient {
        url: format!(
            "https://{}.{ns}.svc:{GRPC_PORT}",
            component_name(name, "storage")
        ),
        ca_file: format!("{TLS_DIR}/ca.crt"),
        cert_file: format!("{TLS_DIR}/tls.crt"),
        key_file: format!("{TLS_DIR}/tls.key"),
    };
    let detection = DetectionSource {
        endpoints,
        ca_file: format!("{TLS_DIR}/ca.crt"),
        cert_file: format!("{TLS_DIR}/tls.crt"),
        key_file: format!("{TLS_DIR}/tls.key"),
    };
    let time_zones = site
        .spec
        .time_zone
        .iter()
        .map(|tz| (name.to_string(), tz.clone()))
        .collect();
    let sinks = site
        .spec
        .alert_sinks
        .iter()
        .map(|s| SinkConfig {
            name: s.name.clone(),
            webhook: s.webhook.as_ref().map(|w| WebhookConfig {
                url: w.url.clone(),
                secret_file: w
                    .signing_secret
                    .as_ref()
                    .map(|_| format!("{}/{SIGNING_KEY}", sink_dir(&s.name))),
                ca_file: w
                    .ca
                    .as_ref()
                    .map(|_| format!("{}/ca.crt", sink_ca_dir(&s.name))),
            }),
            mqtt: s.mqtt.as_ref().map(|m| MqttConfig {
                broker_url: m.url.clone(),
                topic_prefix: m.topic.clone(),
            }),
        })
        .collect();
    let mut accepted: Vec<&AlertRule> = rules
        .iter()
        .filter(|r| verdict(r, Some(site)).is_ok())
        .collect();
    accepted.sort_by_key(|r| r.name_any());
    AlertingConfig {
        detection,
        time_zones,
        sinks,
        rules: accepted.into_iter().map(rule_config).collect(),
        storage,
    }
}

/// Where the receiver's CA of webhook sink `name` is mounted (`ca.crt`).
pub fn sink_ca_dir(name: &str) -> String {
    format!("{SINK_CAS_DIR}/{name}")
}

/// Where the signing Secret of sink `name` is mounted.
pub fn sink_dir(name: &str) -> String {
    format!("{SINKS_DIR}/{name}")
}

fn rule_config(rule: &AlertRule) -> RuleConfig {
    let s = &rule.spec;
    RuleConfig {
        name: rule.name_any(),
        site: s.site.clone(),
        description: s.description.clone(),
        disabled: s.disabled,
        severity: s.severity,
        cameras: s.cameras.clone(),
        classes: s.classes.clone(),
        min_confidence: s.min_confidence,
        zone: s.zone.as_ref().map(|z| ZoneConfig {
            zones: z.zones.clone(),
            min_dwell: z.min_dwell.clone(),
        }),
        line: s.line.as_ref().map(|l| LineConfig {
            lines: l.lines.clone(),
            direction: l.direction.into(),
        }),
        min_objects: s.min_objects,
        schedule: s.schedule.as_ref().map(|sc| ScheduleConfig {
            time_zone: sc.time_zone.clone(),
            windows: sc.windows.iter().map(WindowConfig::from).collect(),
        }),
        dedup: s.dedup,
        quiet_period: s.quiet_period.clone(),
        cooldown: s.cooldown.clone(),
        escalate_after: s.escalate_after.clone(),
        sinks: s.sinks.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{AlertSink, LineTrigger, Schedule, WebhookSink, ZoneTrigger};
    use crate::fixtures::{alert_rule, site};

    fn webhook(name: &str, secret: Option<&str>) -> AlertSink {
        AlertSink {
            name: name.into(),
            webhook: Some(WebhookSink {
                url: format!("https://hooks.example/{name}"),
                signing_secret: secret.map(str::to_string),
                ca: None,
            }),
            mqtt: None,
        }
    }

    #[test]
    fn a_rule_naming_a_missing_sink_is_refused_and_says_which() {
        let mut s = site("burgas", 1);
        s.spec.alert_sinks = vec![webhook("duty", None)];
        let mut r = alert_rule("night", "burgas");
        r.spec.sinks = vec!["duty".into(), "sms".into()];
        let problem = verdict(&r, Some(&s)).unwrap_err();
        assert_eq!(problem.reason(), "UnknownSink");
        assert!(problem.message().contains("`sms`"), "{}", problem.message());
        assert!(!problem.message().contains("`duty`"));
        assert!(
            config(&s, "burgas", "kordon", &[r.clone()])
                .rules
                .is_empty()
        );

        assert_eq!(
            verdict(&r, None),
            Err(Problem::SiteNotFound("burgas".into()))
        );
        r.spec.sinks = vec!["duty".into()];
        assert_eq!(verdict(&r, Some(&s)), Ok(()));
    }

    #[test]
    fn status_is_ready_when_accepted_and_names_the_problem_otherwise() {
        let now = Time(k8s_openapi::jiff::Timestamp::from_second(1_800_000_000).unwrap());
        let s = site("burgas", 1);
        let mut r = alert_rule("night", "burgas");
        r.metadata.generation = Some(3);
        let st = desired_status(&r, Some(&s), &now);
        assert_eq!(st.observed_generation, Some(3));
        for c in &st.conditions {
            assert_eq!(c.status, TRUE, "{c:?}");
            assert_eq!(c.observed_generation, Some(3));
        }
        let st = desired_status(&r, None, &now);
        let ready = st.conditions.iter().find(|c| c.type_ == "Ready").unwrap();
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            (FALSE, "SiteNotFound")
        );
        assert!(ready.message.contains("`burgas`"), "{}", ready.message);
    }

    #[test]
    fn rules_render_sorted_in_the_services_spelling_without_unset_settings() {
        let mut s = site("burgas", 1);
        s.spec.time_zone = Some("Europe/Sofia".into());
        s.spec.detection.replicas = 2;
        let mut zebra = alert_rule("zebra", "burgas");
        zebra.spec.line = Some(LineTrigger {
            lines: vec!["fence".into()],
            direction: CrossingDirection::LeftToRight,
        });
        zebra.spec.schedule = Some(Schedule {
            time_zone: None,
            windows: vec![TimeWindow {
                days: vec![Weekday::Mon, Weekday::Tue],
                start: "22:00".into(),
                end: "06:00".into(),
            }],
        });
        zebra.spec.quiet_period = Some("1m30s".into());
        let mut alpha = alert_rule("alpha", "burgas");
        alpha.spec.zone = Some(ZoneTrigger {
            zones: vec!["gate".into()],
            min_dwell: Some("5s".into()),
        });
        let cfg = config(&s, "burgas", "kordon", &[zebra, alpha]);
        let v = serde_json::to_value(&cfg).unwrap();
        let names: Vec<&str> = cfg.rules.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["alpha", "zebra"]);
        assert_eq!(
            v["detection"]["endpoints"],
            serde_json::json!([
                "https://burgas-detection-0.burgas-detection.kordon.svc:8470",
                "https://burgas-detection-1.burgas-detection.kordon.svc:8470",
            ])
        );
        assert_eq!(v["time_zones"]["burgas"], "Europe/Sofia");
        let alpha = v["rules"][0].as_object().unwrap();
        for absent in [
            "description",
            "min_confidence",
            "line",
            "min_objects",
            "schedule",
            "quiet_period",
            "cooldown",
            "escalate_after",
        ] {
            assert!(!alpha.contains_key(absent), "{absent} rendered: {alpha:?}");
        }
        assert_eq!(alpha["zone"]["min_dwell"], "5s");
        assert_eq!(alpha["severity"], "medium");
        assert_eq!(alpha["dedup"], "camera");
        let zebra = &v["rules"][1];
        assert_eq!(zebra["line"]["direction"], "left_to_right");
        assert_eq!(
            zebra["schedule"]["windows"][0]["days"],
            serde_json::json!(["mon", "tue"])
        );
        assert!(zebra["schedule"].get("time_zone").is_none());
        // The durations the CRD admits are ones the service's humantime reads.
        assert_eq!(
            humantime::parse_duration(zebra["quiet_period"].as_str().unwrap()).unwrap(),
            std::time::Duration::from_secs(90)
        );

        s.spec.detection.replicas = 0;
        assert!(
            config(&s, "burgas", "kordon", &[])
                .detection
                .endpoints
                .is_empty()
        );
    }

    #[test]
    fn sinks_point_at_their_mounted_signing_keys_only_when_signed() {
        let mut s = site("burgas", 1);
        s.spec.alert_sinks = vec![webhook("duty", Some("duty-hmac")), webhook("log", None)];
        let v = serde_json::to_value(config(&s, "burgas", "kordon", &[])).unwrap();
        assert_eq!(
            v["sinks"][0]["webhook"]["secret_file"],
            "/var/run/kordon/sinks/duty/key"
        );
        assert!(v["sinks"][1]["webhook"].get("secret_file").is_none());
        assert!(v["sinks"][1].get("mqtt").is_none());
        assert!(
            !v.to_string().contains("duty-hmac"),
            "a Secret's name is no file"
        );
    }

    #[test]
    fn durations_of_the_crds_pattern_are_ones_humantime_reads() {
        // Each matches crd::DURATION_PATTERN, which the apiserver enforces (tests/apiserver.rs).
        for d in ["40s", "1m", "10m", "100ms", "1h30m", "2h", "0s"] {
            humantime::parse_duration(d).unwrap_or_else(|e| panic!("{d}: {e}"));
        }
    }
}
