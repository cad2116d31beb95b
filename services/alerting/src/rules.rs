//! A rule as the engine runs it: checked once, then matched against every detection.
//!
//! A detection matches when the rule is enabled, active on the detection's local time (the
//! schedule's zone, else the site's: Bulgaria and Türkiye differ by an hour half the year), and
//! the camera, class, confidence and trigger all agree: presence anywhere, a stay in one of the
//! rule's zones of at least `min_dwell`, or a crossing of one of its lines in its direction.
//! The object count (`min_objects`) needs the other tracks on the camera, so the engine checks
//! it ([`crate::engine`]).

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::civil::Weekday;
use jiff::tz::TimeZone;
use kordon_proto::alerting::v1 as pb;
use kordon_proto::detection::v1 as dpb;
use kordon_proto::time::micros_from_timestamp;

use crate::AlertingError;
use crate::config::{self, DEFAULT_COOLDOWN, DEFAULT_QUIET_PERIOD, RuleYaml};

/// What must happen for a match.
#[derive(Debug, Clone, PartialEq)]
pub enum Trigger {
    /// Anywhere in the frame (outside masks).
    Presence,
    /// In one of `zones` (any zone when empty) for at least `min_dwell`.
    Zone {
        zones: Vec<String>,
        min_dwell: Duration,
    },
    /// Across one of `lines`; `direction` 0 means either way.
    Line { lines: Vec<String>, direction: i32 },
}

/// A daily window: days as a bit set (bit 0 = Monday), minutes after local midnight.
#[derive(Debug, Clone, PartialEq)]
struct Window {
    days: u8,
    start: u32,
    end: u32,
}

#[derive(Debug, Clone, PartialEq)]
struct Schedule {
    tz: TimeZone,
    windows: Vec<Window>,
}

/// A checked rule.
#[derive(Debug, Clone)]
pub struct Rule {
    pub proto: pb::Rule,
    pub severity: pb::AlertSeverity,
    pub trigger: Trigger,
    schedule: Option<Schedule>,
    pub min_objects: u32,
    pub dedup: pb::DedupScope,
    pub quiet_period: Duration,
    pub cooldown: Duration,
    pub escalate_after: Option<Duration>,
}

/// What matched: the zone or line (empty for presence), and the dwell when it opened.
#[derive(Debug, Clone, PartialEq)]
pub struct Match {
    pub zone: String,
    pub line: String,
    pub dwell: Duration,
}

fn duration(d: &Option<prost_types::Duration>, field: &str) -> Result<Option<Duration>, String> {
    match d {
        None => Ok(None),
        Some(d) => Duration::try_from(*d)
            .map(Some)
            .map_err(|_| format!("{field}: must not be negative")),
    }
}

fn day_bit(d: Weekday) -> u8 {
    1 << (d.to_monday_zero_offset() as u8)
}

impl Rule {
    /// A rule from the config, checked (`HH:MM` strings are checked here, before they become
    /// minutes).
    pub fn from_yaml(
        r: &RuleYaml,
        time_zones: &BTreeMap<String, String>,
    ) -> Result<Rule, AlertingError> {
        if let Some(s) = &r.schedule {
            for (i, w) in s.windows.iter().enumerate() {
                for (k, v) in [("start", &w.start), ("end", &w.end)] {
                    if config::parse_hhmm(v).is_none() {
                        return Err(AlertingError::Invalid(format!(
                            "schedule.windows[{i}].{k}: {v:?} is not HH:MM (00:00 to 23:59)"
                        )));
                    }
                }
            }
        }
        let tz = time_zones.get(&r.site).map_or("UTC", String::as_str);
        Rule::from_proto(config::rule_to_proto(r), tz)
    }

    /// Checks a rule (from the API or the config); `site_tz` is the site's IANA time zone.
    /// Errors name the field.
    pub fn from_proto(proto: pb::Rule, site_tz: &str) -> Result<Rule, AlertingError> {
        let bad = |m: String| AlertingError::Invalid(m);
        if proto.site.is_empty() {
            return Err(bad("rule.site: required".into()));
        }
        // Sites and cameras are named as everywhere else (kordon_objects::validate_name): a
        // rule never stores a name no camera can have (`../x`, a NUL, 10,000 characters).
        kordon_objects::validate_name("site", &proto.site)
            .map_err(|e| bad(format!("rule.site: {e}")))?;
        let name_ok = !proto.name.is_empty()
            && proto.name.len() <= 63
            && proto
                .name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !name_ok {
            return Err(bad(format!(
                "rule.name: {:?} must be 1-63 characters of a-z, 0-9 and '-'",
                proto.name
            )));
        }
        let severity = match pb::AlertSeverity::try_from(proto.severity) {
            Ok(pb::AlertSeverity::Unspecified) => pb::AlertSeverity::Medium,
            Ok(s) => s,
            Err(_) => {
                return Err(bad(format!(
                    "rule.severity: unknown value {}",
                    proto.severity
                )));
            }
        };
        for (i, c) in proto.cameras.iter().enumerate() {
            if c.camera.is_empty() || (!c.site.is_empty() && c.site != proto.site) {
                return Err(bad(format!(
                    "rule.cameras[{i}]: a camera of the rule's site {} is required",
                    proto.site
                )));
            }
            kordon_objects::validate_name("camera", &c.camera)
                .map_err(|e| bad(format!("rule.cameras[{i}]: {e}")))?;
        }
        if !(0.0..=1.0).contains(&proto.min_confidence) {
            return Err(bad("rule.min_confidence: must be between 0 and 1".into()));
        }
        let trigger = match &proto.trigger {
            None => Trigger::Presence,
            Some(pb::rule::Trigger::Zone(z)) => Trigger::Zone {
                zones: z.zones.clone(),
                min_dwell: duration(&z.min_dwell, "rule.zone.min_dwell")
                    .map_err(bad)?
                    .unwrap_or_default(),
            },
            Some(pb::rule::Trigger::LineCrossing(l)) => {
                if l.lines.is_empty() {
                    return Err(bad("rule.line_crossing.lines: at least one line".into()));
                }
                if dpb::LineDirection::try_from(l.direction).is_err() {
                    return Err(bad(format!(
                        "rule.line_crossing.direction: unknown value {}",
                        l.direction
                    )));
                }
                Trigger::Line {
                    lines: l.lines.clone(),
                    direction: l.direction,
                }
            }
        };
        let schedule = match &proto.schedule {
            None => None,
            Some(s) => {
                let zone = if s.time_zone.is_empty() {
                    site_tz
                } else {
                    &s.time_zone
                };
                let tz = TimeZone::get(zone)
                    .map_err(|e| bad(format!("rule.schedule.time_zone: {zone}: {e}")))?;
                if s.windows.is_empty() {
                    return Err(bad("rule.schedule.windows: at least one window".into()));
                }
                let mut windows = Vec::new();
                for (i, w) in s.windows.iter().enumerate() {
                    if w.start_minute >= 1440 || w.end_minute >= 1440 {
                        return Err(bad(format!(
                            "rule.schedule.windows[{i}]: minutes must be 0..1439"
                        )));
                    }
                    let mut days = 0u8;
                    for d in &w.days {
                        let wd = match pb::Weekday::try_from(*d) {
                            Ok(pb::Weekday::Monday) => Weekday::Monday,
                            Ok(pb::Weekday::Tuesday) => Weekday::Tuesday,
                            Ok(pb::Weekday::Wednesday) => Weekday::Wednesday,
                            Ok(pb::Weekday::Thursday) => Weekday::Thursday,
                            Ok(pb::Weekday::Friday) => Weekday::Friday,
                            Ok(pb::Weekday::Saturday) => Weekday::Saturday,
                            Ok(pb::Weekday::Sunday) => Weekday::Sunday,
                            _ => {
                                return Err(bad(format!(
                                    "rule.schedule.windows[{i}].days: unknown day {d}"
                                )));
                            }
                        };
                        days |= day_bit(wd);
                    }
                    windows.push(Window {
                        days: if days == 0 { 0x7f } else { days },
                        start: w.start_minute,
                        end: w.end_minute,
                    });
                }
                Some(Schedule { tz, windows })
            }
        };
        let dedup = match pb::DedupScope::try_from(proto.dedup_scope) {
            Ok(pb::DedupScope::Unspecified) => pb::DedupScope::Camera,
            Ok(d) => d,
            Err(_) => {
                return Err(bad(format!(
                    "rule.dedup_scope: unknown value {}",
                    proto.dedup_scope
                )));
            }
        };
        let quiet_period = duration(&proto.quiet_period, "rule.quiet_period")
            .map_err(bad)?
            .unwrap_or(DEFAULT_QUIET_PERIOD);
        if quiet_period < Duration::from_secs(1) {
            return Err(bad("rule.quiet_period: must be at least 1s".into()));
        }
        let cooldown = duration(&proto.cooldown, "rule.cooldown")
            .map_err(bad)?
            .unwrap_or(DEFAULT_COOLDOWN);
        let escalate_after = duration(&proto.escalate_after, "rule.escalate_after").map_err(bad)?;
        if escalate_after.is_some_and(|d| d < Duration::from_secs(10)) {
            return Err(bad("rule.escalate_after: must be at least 10s".into()));
        }
        Ok(Rule {
            severity,
            trigger,
            schedule,
            min_objects: proto.min_objects.max(1),
            dedup,
            quiet_period,
            cooldown,
            escalate_after,
            proto,
        })
    }

    pub fn id(&self) -> &str {
        &self.proto.id
    }

    /// Whether the rule is active at `time_us` (its schedule, in local time).
    pub fn active_at(&self, time_us: i64) -> bool {
        let Some(s) = &self.schedule else {
            return true;
        };
        let Ok(ts) = jiff::Timestamp::from_microsecond(time_us) else {
            return false;
        };
        let local = ts.to_zoned(s.tz.clone());
        let minute = u32::from(local.hour() as u8) * 60 + u32::from(local.minute() as u8);
        let today = day_bit(local.weekday());
        let yesterday = day_bit(local.weekday().previous());
        s.windows.iter().any(|w| {
            if w.start == w.end {
                w.days & today != 0
            } else if w.start < w.end {
                w.days & today != 0 && (w.start..w.end).contains(&minute)
            } else {
                (w.days & today != 0 && minute >= w.start)
                    || (w.days & yesterday != 0 && minute < w.end)
            }
        })
    }

    /// Whether the detection is of a camera and class this rule watches, confident enough
    /// (the part of a match that does not depend on position or time).
    pub fn watches(&self, d: &dpb::Detection) -> bool {
        let Some(cam) = &d.camera else {
            return false;
        };
        !self.proto.disabled
            && cam.site == self.proto.site
            && (self.proto.cameras.is_empty()
                || self.proto.cameras.iter().any(|c| c.camera == cam.camera))
            && (self.proto.classes.is_empty() || self.proto.classes.contains(&d.class_label))
            && d.confidence >= self.proto.min_confidence
    }

    /// Whether one detection matches (before the object count), and where.
    pub fn matches(&self, d: &dpb::Detection) -> Option<Match> {
        if !self.watches(d) {
            return None;
        }
        let time_us = d.time.as_ref().and_then(micros_from_timestamp)?;
        if !self.active_at(time_us) {
            return None;
        }
        let ended = d.phase == dpb::TrackPhase::Ended as i32;
        match &self.trigger {
            Trigger::Presence => (!ended).then(|| Match {
                zone: String::new(),
                line: String::new(),
                dwell: Duration::ZERO,
            }),
            Trigger::Zone { zones, min_dwell } => {
                if ended {
                    return None;
                }
                if zones.is_empty() && d.zones.is_empty() {
                    // "Anywhere": presence that lasted, measured from the track's start.
                    let since = d
                        .track_started_at
                        .as_ref()
                        .and_then(micros_from_timestamp)?;
                    let dwell = Duration::from_micros((time_us - since).max(0) as u64);
                    return (dwell >= *min_dwell).then(|| Match {
                        zone: String::new(),
                        line: String::new(),
                        dwell,
                    });
                }
                d.zones
                    .iter()
                    .filter(|z| zones.is_empty() || zones.contains(&z.zone))
                    .find_map(|z| {
                        let entered = z.entered_at.as_ref().and_then(micros_from_timestamp)?;
                        let dwell = Duration::from_micros((time_us - entered).max(0) as u64);
                        (dwell >= *min_dwell).then(|| Match {
                            zone: z.zone.clone(),
                            line: String::new(),
                            dwell,
                        })
                    })
            }
            Trigger::Line { lines, direction } => d
                .crossings
                .iter()
                .find(|c| lines.contains(&c.line) && (*direction == 0 || c.direction == *direction))
                .map(|c| Match {
                    zone: String::new(),
                    line: c.line.clone(),
                    dwell: Duration::ZERO,
                }),
        }
    }

    /// The key matches fold under: the rule's scope on this camera.
    pub fn dedup_key(&self, d: &dpb::Detection, m: &Match) -> String {
        let cam = d.camera.as_ref().map(|c| c.camera.as_str()).unwrap_or("");
        match self.dedup {
            pb::DedupScope::Zone => format!("{cam}/{}{}", m.zone, m.line),
            pb::DedupScope::Track => format!("{cam}/#{}", d.track_id),
            _ => cam.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Day, ScheduleYaml, WindowYaml, ZoneYaml};
    use kordon_proto::common::v1 as common;
    use kordon_proto::time::timestamp_from_micros;

    fn us(rfc3339: &str) -> i64 {
        rfc3339.parse::<jiff::Timestamp>().unwrap().as_microsecond()
    }

    fn det(time_us: i64, zone: Option<(&str, i64)>) -> dpb::Detection {
        dpb::Detection {
            id: "d".into(),
            camera: Some(common::CameraRef {
                site: "burgas".into(),
                camera: "port-gate".into(),
            }),
            time: Some(timestamp_from_micros(time_us)),
            class_label: "person".into(),
            confidence: 0.7,
            track_id: 3,
            phase: dpb::TrackPhase::Updated as i32,
            track_started_at: Some(timestamp_from_micros(time_us - 1_000_000)),
            zones: zone
                .map(|(z, entered)| {
                    vec![dpb::ZonePresence {
                        zone: z.into(),
                        entered_at: Some(timestamp_from_micros(entered)),
                    }]
                })
                .unwrap_or_default(),
            ..Default::default()
        }
    }

    fn rule(y: RuleYaml) -> Rule {
        let tz = BTreeMap::from([("burgas".to_string(), "Europe/Sofia".to_string())]);
        Rule::from_yaml(&y, &tz).unwrap()
    }

    #[test]
    fn a_rule_names_its_site_and_cameras_as_cameras_are_named() {
        let base = pb::Rule {
            site: "burgas".into(),
            name: "gate".into(),
            cameras: vec![common::CameraRef {
                site: String::new(),
                camera: "port-gate".into(),
            }],
            ..Default::default()
        };
        assert!(Rule::from_proto(base.clone(), "UTC").is_ok());
        for hostile in [
            "../x",
            "a/../../b",
            ".",
            "x\0y",
            "x\ny",
            "burg\u{430}s",
            &"x".repeat(200),
        ] {
            let mut r = base.clone();
            r.cameras[0].camera = hostile.to_string();
            let e = Rule::from_proto(r, "UTC").err().map(|e| e.to_string());
            assert!(
                e.as_deref().is_some_and(|e| e.contains("rule.cameras[0]")),
                "{hostile:?}: {e:?}"
            );
            let mut r = base.clone();
            r.site = hostile.to_string();
            let e = Rule::from_proto(r, "UTC").err().map(|e| e.to_string());
            assert!(
                e.as_deref().is_some_and(|e| e.contains("rule.site")),
                "{hostile:?}: {e:?}"
            );
        }
    }

    #[test]
    fn a_zone_rule_needs_the_zone_and_the_dwell() {
        let r = rule(RuleYaml {
            name: "road".into(),
            site: "burgas".into(),
            classes: vec!["person".into()],
            zone: Some(ZoneYaml {
                zones: vec!["road".into()],
                min_dwell: Some(Duration::from_secs(2)),
            }),
            ..Default::default()
        });
        let t = 1_000_000_000_000;
        assert_eq!(r.matches(&det(t, None)), None, "not in a zone");
        assert_eq!(r.matches(&det(t, Some(("pier", t - 5_000_000)))), None);
        assert_eq!(
            r.matches(&det(t, Some(("road", t - 1_000_000)))),
            None,
            "1 s < min_dwell"
        );
        let m = r.matches(&det(t, Some(("road", t - 3_000_000)))).unwrap();
        assert_eq!((m.zone.as_str(), m.dwell), ("road", Duration::from_secs(3)));
        let mut car = det(t, Some(("road", t - 3_000_000)));
        car.class_label = "car".into();
        assert_eq!(r.matches(&car), None, "class");
        let mut other = det(t, Some(("road", t - 3_000_000)));
        other.camera.as_mut().unwrap().site = "edirne".into();
        assert_eq!(r.matches(&other), None, "another site");
    }

    #[test]
    fn line_rules_match_their_direction_only() {
        let r = rule(RuleYaml {
            name: "crossing".into(),
            site: "burgas".into(),
            line: Some(config::LineYaml {
                lines: vec!["crossing".into()],
                direction: config::Direction::LeftToRight,
            }),
            ..Default::default()
        });
        let mut d = det(1_000_000, None);
        assert_eq!(r.matches(&d), None);
        d.crossings = vec![dpb::LineCrossing {
            line: "crossing".into(),
            direction: dpb::LineDirection::RightToLeft as i32,
        }];
        assert_eq!(r.matches(&d), None);
        d.crossings[0].direction = dpb::LineDirection::LeftToRight as i32;
        assert_eq!(r.matches(&d).unwrap().line, "crossing");
    }

    #[test]
    fn a_night_schedule_follows_local_time_and_daylight_saving() {
        // Weekdays 22:00-06:00 in Sofia (UTC+2 in winter, UTC+3 in summer).
        let r = rule(RuleYaml {
            name: "night".into(),
            site: "burgas".into(),
            schedule: Some(ScheduleYaml {
                time_zone: String::new(),
                windows: vec![WindowYaml {
                    days: vec![Day::Mon, Day::Tue, Day::Wed, Day::Thu, Day::Fri],
                    start: "22:00".into(),
                    end: "06:00".into(),
                }],
            }),
            ..Default::default()
        });
        // Monday 2026-01-05 21:30 Sofia = 19:30 UTC: before the window.
        assert!(!r.active_at(us("2026-01-05T19:30:00Z")));
        // Monday 22:30 Sofia (20:30 UTC): inside.
        assert!(r.active_at(us("2026-01-05T20:30:00Z")));
        // Tuesday 05:59 Sofia: still Monday's window.
        assert!(r.active_at(us("2026-01-06T03:59:00Z")));
        // Saturday 02:00 Sofia: Friday's window runs past midnight.
        assert!(r.active_at(us("2026-01-10T00:00:00Z")));
        // Sunday 02:00 Sofia: Saturday has no window.
        assert!(!r.active_at(us("2026-01-11T00:00:00Z")));
        // Summer: Monday 2026-07-06 21:30 UTC is 00:30 Sofia Tuesday (inside) but 21:30 UTC
        // in winter would be 23:30 — both inside; the edge shows the offset: 19:30 UTC is
        // 22:30 in summer (inside) and 21:30 in winter (outside).
        assert!(r.active_at(us("2026-07-06T19:30:00Z")));
        assert!(!r.active_at(us("2026-01-05T19:30:00Z")));
        // The same rule in Istanbul's zone (UTC+3 all year) sees 19:30 UTC as 22:30 in winter.
        let mut y = r.proto.clone();
        y.schedule.as_mut().unwrap().time_zone = "Europe/Istanbul".into();
        let ist = Rule::from_proto(y, "UTC").unwrap();
        assert!(ist.active_at(us("2026-01-05T19:30:00Z")));
    }

    #[test]
    fn bad_rules_name_the_field() {
        let tz = BTreeMap::new();
        let e = Rule::from_yaml(
            &RuleYaml {
                name: "Bad Name".into(),
                site: "burgas".into(),
                ..Default::default()
            },
            &tz,
        )
        .unwrap_err();
        assert!(e.to_string().contains("rule.name"), "{e}");
        let e = Rule::from_yaml(
            &RuleYaml {
                name: "q".into(),
                site: "burgas".into(),
                quiet_period: Some(Duration::from_millis(10)),
                ..Default::default()
            },
            &tz,
        )
        .unwrap_err();
        assert!(e.to_string().contains("rule.quiet_period"), "{e}");
    }
}
