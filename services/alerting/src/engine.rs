//! Incidents, not floods: detections become alerts here.
//!
//! Each match of a rule is folded under its dedup key (the rule and its scope: camera, zone or
//! track). While matches keep coming less than `quiet_period` apart, they fold into one alert
//! (occurrences, last seen, best confidence); the incident ends after a quiet period; after it,
//! matches within `cooldown` of its last one are counted as suppressed; later ones open a new
//! alert. An incident still going `escalate_after` after it opened is raised a severity level.
//! A parked car watched all night is one alert, escalated, not a hundred.
//!
//! The engine is pure: it turns detections, ticks and officers' actions into [`Change`]s. The
//! service commits them ([`crate::store::Store::commit`]) and only then applies them here
//! ([`Engine::applied`]), so a failed write changes nothing in memory either.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use kordon_proto::alerting::v1 as pb;
use kordon_proto::detection::v1 as dpb;
use kordon_proto::time::{micros_from_timestamp, timestamp_from_micros};

use crate::AlertingError;
use crate::rules::{Match, Rule};
use crate::store::Change;

/// Folded matches are written (an UPDATED event) at most this often per alert.
pub const UPDATE_EVERY: Duration = Duration::from_secs(5);
/// A track not seen for this long no longer counts towards `min_objects`.
const TRACK_FRESH: Duration = Duration::from_millis(1500);
/// Detection ids remembered to drop duplicates (a replay overlapping live detections).
const SEEN_IDS: usize = 100_000;

/// A sink as the engine routes to it.
#[derive(Debug, Clone)]
pub struct Route {
    pub name: String,
    pub min_severity: i32,
    pub include_partner_alerts: bool,
    /// A partner's route: this site's alerts its agreement covers while accepted, and
    /// officers' steps on that partner's alerts (joint response).
    pub partner: Option<std::sync::Arc<crate::partner::Link>>,
}

/// Events external sinks (webhooks, MQTT) receive; UPDATED goes to `WatchAlerts` only.
pub fn delivered_externally(kind: pb::AlertEventKind) -> bool {
    !matches!(
        kind,
        pb::AlertEventKind::Updated | pb::AlertEventKind::Current | pb::AlertEventKind::Unspecified
    )
}

/// The latest alert of one dedup key, and whether it has unwritten folds.
#[derive(Debug, Clone)]
struct Incident {
    alert: pb::Alert,
    dedup_key: String,
    dirty: bool,
    written_us: i64,
}

/// An officer's action on an alert.
#[derive(Debug, Clone)]
pub enum Action {
    Acknowledge { note: String },
    Hold { note: String },
    Resolve { resolution: i32, note: String },
}

pub struct Engine {
    rules: Vec<Arc<Rule>>,
    routes: Vec<Route>,
    /// (rule id, dedup key) → its latest alert.
    incidents: HashMap<(String, String), Incident>,
    /// (rule id, camera) → track → last matching frame (µs), for `min_objects`.
    present: HashMap<(String, String), HashMap<u64, i64>>,
    seen: HashSet<String>,
    seen_order: VecDeque<String>,
    /// What the last batch did to incidents, by alert id: applied with its changes once they
    /// are written ([`Engine::applied`]), dropped if they are not ([`Engine::rollback`]).
    stash: HashMap<String, ((String, String), Incident)>,
}

fn us(t: &Option<prost_types::Timestamp>) -> i64 {
    t.as_ref().and_then(micros_from_timestamp).unwrap_or(0)
}

fn ts(us: i64) -> Option<prost_types::Timestamp> {
    Some(timestamp_from_micros(us))
}

impl Engine {
    pub fn new(rules: Vec<Arc<Rule>>, routes: Vec<Route>) -> Engine {
        Engine {
            rules,
            routes,
            incidents: HashMap::new(),
            present: HashMap::new(),
            seen: HashSet::new(),
            seen_order: VecDeque::new(),
            stash: HashMap::new(),
        }
    }

    pub fn set_rules(&mut self, rules: Vec<Arc<Rule>>) {
        let ids: HashSet<&str> = rules.iter().map(|r| r.id()).collect();
        self.present.retain(|(r, _), _| ids.contains(r.as_str()));
        self.rules = rules;
    }

    pub fn rules(&self) -> &[Arc<Rule>] {
        &self.rules
    }

    /// Alerts an incident may still fold into (after a restart), with their dedup keys.
    pub fn restore(&mut self, alerts: Vec<(String, pb::Alert)>) {
        for (key, a) in alerts {
            let written_us = us(&a.last_seen_at);
            self.incidents.insert(
                (a.rule_id.clone(), key.clone()),
                Incident {
                    alert: a,
                    dedup_key: key,
                    dirty: false,
                    written_us,
                },
            );
        }
    }

    /// The sinks an event of `alert` goes to.
    pub fn sinks_for(&self, alert: &pb::Alert, kind: pb::AlertEventKind) -> Vec<String> {
        if !delivered_externally(kind) {
            return Vec::new();
        }
        let named: &[String] = if alert.origin.is_some() {
            &[]
        } else {
            self.rules
                .iter()
                .find(|r| r.id() == alert.rule_id)
                .map(|r| r.proto.sinks.as_slice())
                .unwrap_or(&[])
        };
        self.routes
            .iter()
            .filter(|s| alert.severity >= s.min_severity)
            .filter(|s| {
                if let Some(link) = &s.partner {
                    return link.accepted()
                        && match &alert.origin {
                            // Only an officer's step here (never an update received from
                            // the origin, which is UPDATED) goes back.
                            Some(o) => {
                                o.site == link.config.site
                                    && matches!(
                                        kind,
                                        pb::AlertEventKind::Acknowledged
                                            | pb::AlertEventKind::Held
                                            | pb::AlertEventKind::Resolved
                                    )
                            }
                            None => link.config.shares.covers_alert(
                                alert
                                    .camera
                                    .as_ref()
                                    .map(|c| c.camera.as_str())
                                    .unwrap_or(""),
                                &alert.rule_name,
                                alert.severity,
                            ),
                        };
                }
                if alert.origin.is_some() {
                    s.include_partner_alerts
                } else {
                    named.is_empty() || named.contains(&s.name)
                }
            })
            .map(|s| s.name.clone())
            .collect()
    }

    fn change(&self, inc: &Incident, kind: pb::AlertEventKind, time_us: i64) -> Change {
        Change {
            sinks: self.sinks_for(&inc.alert, kind),
            alert: inc.alert.clone(),
            dedup_key: inc.dedup_key.clone(),
            kind,
            time_us,
        }
    }

    /// Whether a detection was already seen (remembers it if not).
    fn duplicate(&mut self, id: &str) -> bool {
        if id.is_empty() {
            return false;
        }
        if !self.seen.insert(id.to_string()) {
            return true;
        }
        self.seen_order.push_back(id.to_string());
        if self.seen_order.len() > SEEN_IDS
            && let Some(old) = self.seen_order.pop_front()
        {
            self.seen.remove(&old);
        }
        false
    }

    /// Turns a batch of detections into alert changes (not yet applied: see [`Engine::applied`]).
    /// Returns the changes and how many detections matched a rule.
    pub fn detections(&mut self, batch: &[dpb::Detection], now_us: i64) -> (Vec<Change>, usize) {
        let mut out: Vec<Change> = Vec::new();
        self.stash.clear();
        // Working copies of the incidents this batch touches, so later detections of the batch
        // see earlier ones' effect; written back by `applied`.
        let mut work: HashMap<(String, String), Incident> = HashMap::new();
        let mut matched = 0;
        for d in batch {
            if self.duplicate(&d.id) {
                continue;
            }
            let t = us(&d.time);
            let cam = d
                .camera
                .as_ref()
                .map(|c| c.camera.clone())
                .unwrap_or_default();
            let rules = self.rules.clone();
            let mut any = false;
            for rule in &rules {
                if !rule.watches(d) {
                    continue;
                }
                let slot = (rule.id().to_string(), cam.clone());
                if d.phase == dpb::TrackPhase::Ended as i32
                    && let Some(p) = self.present.get_mut(&slot)
                {
                    p.remove(&d.track_id);
                }
                let Some(m) = rule.matches(d) else {
                    continue;
                };
                if rule.min_objects > 1 {
                    let p = self.present.entry(slot).or_default();
                    p.insert(d.track_id, t);
                    let fresh = TRACK_FRESH.as_micros() as i64;
                    p.retain(|_, seen| t - *seen <= fresh);
                    if (p.len() as u32) < rule.min_objects {
                        continue;
                    }
                }
                any = true;
                let key = (rule.id().to_string(), rule.dedup_key(d, &m));
                let current = work
                    .get(&key)
                    .cloned()
                    .or_else(|| self.incidents.get(&key).cloned());
                if let Some((inc, kind)) = self.fold(rule, current, d, &m, &key.1, t, now_us) {
                    if let Some(kind) = kind {
                        out.push(self.change(&inc, kind, now_us));
                    }
                    work.insert(key, inc);
                }
            }
            if any {
                matched += 1;
            }
        }
        // Folds are written with the tick (at most every UPDATE_EVERY); opened alerts now.
        for (key, inc) in work {
            self.stash.insert(inc.alert.id.clone(), (key, inc));
        }
        (out, matched)
    }

    /// One match against the dedup key's latest alert: the incident after it, and the event to
    /// write now (`None` for a fold, written later with the tick).
    #[allow(clippy::too_many_arguments)]
    fn fold(
        &self,
        rule: &Rule,
        current: Option<Incident>,
        d: &dpb::Detection,
        m: &Match,
        dedup_key: &str,
        t: i64,
        now_us: i64,
    ) -> Option<(Incident, Option<pb::AlertEventKind>)> {
        let quiet = rule.quiet_period.as_micros() as i64;
        let hold_off = rule.cooldown.max(rule.quiet_period).as_micros() as i64;
        if let Some(mut inc) = current {
            let last = us(&inc.alert.last_seen_at);
            let ongoing = inc.alert.ended_at.is_none() && t - last < quiet;
            if ongoing {
                let a = &mut inc.alert;
                a.occurrences += 1;
                if a.state == pb::AlertState::Resolved as i32 {
                    a.suppressed += 1;
                }
                if t > last {
                    a.last_seen_at = ts(t);
                }
                a.max_confidence = a.max_confidence.max(d.confidence);
                inc.dirty = true;
                return Some((inc, None));
            }
            if t - last < hold_off || t <= last {
                // Within the cooldown of the last incident (or a late, older detection).
                inc.alert.suppressed += 1;
                inc.dirty = true;
                return Some((inc, None));
            }
        }
        let cam = d.camera.clone().unwrap_or_default();
        let severity = rule.severity as i32;
        let alert = pb::Alert {
            id: uuid::Uuid::now_v7().to_string(),
            site: cam.site.clone(),
            rule_id: rule.id().to_string(),
            rule_name: rule.proto.name.clone(),
            severity,
            initial_severity: severity,
            state: pb::AlertState::Open as i32,
            camera: Some(cam),
            class_label: d.class_label.clone(),
            zone: m.zone.clone(),
            line: m.line.clone(),
            track_id: d.track_id,
            detection: Some(d.clone()),
            snapshot_id: d.snapshot_id.clone(),
            opened_at: ts(t),
            last_seen_at: ts(t),
            occurrences: 1,
            max_confidence: d.confidence,
            dwell: (!m.dwell.is_zero())
                .then(|| prost_types::Duration::try_from(m.dwell).unwrap_or_default()),
            version: 1,
            ..Default::default()
        };
        Some((
            Incident {
                alert,
                dedup_key: dedup_key.to_string(),
                dirty: false,
                written_us: now_us,
            },
            Some(pb::AlertEventKind::Opened),
        ))
    }

    /// Time passing: incidents quiet for their rule's period end; persisting ones escalate;
    /// folds not written for [`UPDATE_EVERY`] are written. Also forgets incidents past their
    /// cooldown.
    pub fn tick(&mut self, now_us: i64) -> Vec<Change> {
        let mut out = Vec::new();
        let every = UPDATE_EVERY.as_micros() as i64;
        let mut forget = Vec::new();
        let rules: HashMap<&str, &Arc<Rule>> = self.rules.iter().map(|r| (r.id(), r)).collect();
        let mut updated: Vec<((String, String), Incident, pb::AlertEventKind)> = Vec::new();
        for (key, inc) in &self.incidents {
            let rule = rules.get(key.0.as_str());
            let quiet = rule.map_or(crate::config::DEFAULT_QUIET_PERIOD, |r| r.quiet_period);
            let hold_off = rule.map_or(quiet, |r| r.cooldown.max(r.quiet_period));
            let last = us(&inc.alert.last_seen_at);
            if inc.alert.ended_at.is_some() {
                if inc.dirty && now_us - inc.written_us >= every {
                    updated.push((key.clone(), inc.clone(), pb::AlertEventKind::Updated));
                } else if !inc.dirty && now_us - last > hold_off.as_micros() as i64 {
                    forget.push(key.clone());
                }
                continue;
            }
            if now_us - last >= quiet.as_micros() as i64 {
                let mut inc = inc.clone();
                let ended = last + quiet.as_micros() as i64;
                inc.alert.ended_at = ts(ended);
                updated.push((key.clone(), inc, pb::AlertEventKind::Ended));
                continue;
            }
            if let Some(after) = rule.and_then(|r| r.escalate_after) {
                let opened = us(&inc.alert.opened_at);
                let level = ((now_us - opened) / after.as_micros() as i64) as i32;
                let raised = inc.alert.severity - inc.alert.initial_severity;
                if level > raised && inc.alert.severity < pb::AlertSeverity::Critical as i32 {
                    let mut inc = inc.clone();
                    inc.alert.severity += 1;
                    inc.alert.escalated_at = ts(now_us);
                    updated.push((key.clone(), inc, pb::AlertEventKind::Escalated));
                    continue;
                }
            }
            if inc.dirty && now_us - inc.written_us >= every {
                updated.push((key.clone(), inc.clone(), pb::AlertEventKind::Updated));
            }
        }
        for k in forget {
            self.incidents.remove(&k);
        }
        for (_, mut inc, kind) in updated {
            inc.alert.version += 1;
            out.push(self.change(&inc, kind, now_us));
        }
        out
    }

    /// The engine's copy of an alert it holds an incident of (with folds not yet written), and
    /// its dedup key; `None` when it holds none (then the stored alert is current).
    pub fn incident_of(&self, alert_id: &str) -> Option<(pb::Alert, String)> {
        self.incidents
            .values()
            .find(|i| i.alert.id == alert_id)
            .map(|i| (i.alert.clone(), i.dedup_key.clone()))
    }

    /// Routes for an action's change on `alert` (whether or not the engine holds it).
    pub fn change_for(
        &self,
        alert: pb::Alert,
        dedup_key: String,
        kind: pb::AlertEventKind,
        now_us: i64,
    ) -> Change {
        Change {
            sinks: self.sinks_for(&alert, kind),
            alert,
            dedup_key,
            kind,
            time_us: now_us,
        }
    }

    /// Applies committed changes: the engine's incidents now hold what the database holds.
    pub fn applied(&mut self, changes: &[Change], now_us: i64) {
        for c in changes {
            if c.alert.origin.is_some() {
                continue;
            }
            let key = (c.alert.rule_id.clone(), c.dedup_key.clone());
            let same = self
                .incidents
                .get(&key)
                .is_some_and(|inc| inc.alert.id == c.alert.id);
            if c.kind == pb::AlertEventKind::Opened && !same {
                // A new incident (replacing the key's older one, if any), with the folds that
                // came later in its batch.
                let inc = match self.stash.remove(&c.alert.id).map(|(_, s)| s) {
                    Some(mut s) => {
                        s.dirty = s.alert.occurrences > 1 || s.alert.suppressed > 0;
                        s.written_us = now_us;
                        s
                    }
                    None => Incident {
                        alert: c.alert.clone(),
                        dedup_key: c.dedup_key.clone(),
                        dirty: false,
                        written_us: now_us,
                    },
                };
                self.incidents.insert(key, inc);
                continue;
            }
            if !same {
                // An action on an older alert of the key leaves the latest one alone.
                continue;
            }
            let Some(inc) = self.incidents.get_mut(&key) else {
                continue;
            };
            // Folds that came after the change was made are kept.
            let folded = (inc.alert.occurrences, inc.alert.suppressed)
                != (c.alert.occurrences, c.alert.suppressed);
            let mut a = c.alert.clone();
            if folded {
                a.occurrences = a.occurrences.max(inc.alert.occurrences);
                a.suppressed = a.suppressed.max(inc.alert.suppressed);
                if us(&inc.alert.last_seen_at) > us(&a.last_seen_at) {
                    a.last_seen_at = inc.alert.last_seen_at;
                }
                a.max_confidence = a.max_confidence.max(inc.alert.max_confidence);
            }
            *inc = Incident {
                alert: a,
                dedup_key: c.dedup_key.clone(),
                dirty: folded,
                written_us: now_us,
            };
        }
        // Folds without an event of their own: held, dirty, and written by the tick.
        for (_, (key, inc)) in self.stash.drain() {
            self.incidents.insert(key, inc);
        }
    }

    /// The batch's changes were not written: the engine forgets the batch, so it can be
    /// processed again.
    pub fn rollback(&mut self, batch: &[dpb::Detection]) {
        self.stash.clear();
        for d in batch {
            self.seen.remove(&d.id);
        }
    }

    /// Incidents held (ongoing or in cooldown).
    pub fn incidents(&self) -> usize {
        self.incidents.len()
    }
}

/// Applies an officer's action to an alert: the alert after it and the event, or `None` when
/// it changes nothing (acknowledging an acknowledged alert). Errors: FAILED_PRECONDITION on a
/// resolved alert, INVALID_ARGUMENT without a resolution.
pub fn act(
    alert: &pb::Alert,
    action: &Action,
    who: &str,
    now_us: i64,
) -> Result<Option<(pb::Alert, pb::AlertEventKind)>, AlertingError> {
    use pb::AlertState as S;
    let state = S::try_from(alert.state).unwrap_or(S::Open);
    let mut a = alert.clone();
    let kind = match action {
        Action::Acknowledge { note } => match state {
            S::Acknowledged => return Ok(None),
            S::Resolved => {
                return Err(AlertingError::FailedPrecondition(format!(
                    "alert {} is resolved",
                    a.id
                )));
            }
            _ => {
                a.state = S::Acknowledged as i32;
                a.acknowledged_by = who.to_string();
                a.acknowledged_at = ts(now_us);
                a.acknowledge_note = note.clone();
                pb::AlertEventKind::Acknowledged
            }
        },
        Action::Hold { note } => match state {
            S::OnHold => return Ok(None),
            S::Resolved => {
                return Err(AlertingError::FailedPrecondition(format!(
                    "alert {} is resolved",
                    a.id
                )));
            }
            _ => {
                a.state = S::OnHold as i32;
                a.held_by = who.to_string();
                a.held_at = ts(now_us);
                a.hold_note = note.clone();
                pb::AlertEventKind::Held
            }
        },
        Action::Resolve { resolution, note } => {
            if state == S::Resolved {
                return Ok(None);
            }
            match pb::AlertResolution::try_from(*resolution) {
                Ok(pb::AlertResolution::Unspecified) | Err(_) => {
                    return Err(AlertingError::Invalid(
                        "resolution: required (actioned, false_alarm or duplicate)".into(),
                    ));
                }
                Ok(_) => {}
            }
            if a.acknowledged_by.is_empty() {
                a.acknowledged_by = who.to_string();
                a.acknowledged_at = ts(now_us);
            }
            a.state = S::Resolved as i32;
            a.resolved_by = who.to_string();
            a.resolved_at = ts(now_us);
            a.resolution = *resolution;
            a.resolve_note = note.clone();
            pb::AlertEventKind::Resolved
        }
    };
    a.version += 1;
    Ok(Some((a, kind)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{RuleYaml, ZoneYaml};
    use kordon_proto::common::v1 as common;
    use std::collections::BTreeMap;

    const S: i64 = 1_000_000;

    fn rule(y: RuleYaml) -> Arc<Rule> {
        let mut r = Rule::from_yaml(&y, &BTreeMap::new()).unwrap();
        r.proto.id = format!("id-{}", y.name);
        Arc::new(r)
    }

    fn zone_rule() -> Arc<Rule> {
        rule(RuleYaml {
            name: "road".into(),
            site: "burgas".into(),
            classes: vec!["person".into(), "car".into()],
            zone: Some(ZoneYaml {
                zones: vec!["road".into()],
                min_dwell: None,
            }),
            severity: crate::config::Severity::Medium,
            escalate_after: Some(Duration::from_secs(600)),
            ..Default::default()
        })
    }

    fn det(id: &str, track: u64, t: i64) -> dpb::Detection {
        dpb::Detection {
            id: id.into(),
            camera: Some(common::CameraRef {
                site: "burgas".into(),
                camera: "port-gate".into(),
            }),
            time: ts(t),
            class_label: "person".into(),
            confidence: 0.6,
            track_id: track,
            phase: dpb::TrackPhase::Updated as i32,
            track_started_at: ts(t),
            zones: vec![dpb::ZonePresence {
                zone: "road".into(),
                entered_at: ts(t),
            }],
            ..Default::default()
        }
    }

    fn engine(rules: Vec<Arc<Rule>>) -> Engine {
        Engine::new(
            rules,
            vec![Route {
                name: "hook".into(),
                min_severity: 0,
                include_partner_alerts: false,
                partner: None,
            }],
        )
    }

    /// Runs a batch and commits its changes (as the service does).
    fn run(e: &mut Engine, batch: &[dpb::Detection], now: i64) -> Vec<Change> {
        let (c, _) = e.detections(batch, now);
        e.applied(&c, now);
        c
    }

    fn tick(e: &mut Engine, now: i64) -> Vec<Change> {
        let c = e.tick(now);
        e.applied(&c, now);
        c
    }

    #[test]
    fn a_person_lingering_is_one_alert_and_the_incident_ends_after_the_quiet_period() {
        let mut e = engine(vec![zone_rule()]);
        let t0 = 1_000 * S;
        let opened = run(&mut e, &[det("d0", 1, t0)], t0);
        assert_eq!(opened.len(), 1);
        assert_eq!(opened[0].kind, pb::AlertEventKind::Opened);
        assert_eq!(opened[0].sinks, ["hook"]);
        // 5 fps for 30 s: folds, no new alert; another track overlapping folds too.
        for i in 1..150 {
            let t = t0 + i * S / 5;
            let c = run(&mut e, &[det(&format!("d{i}"), 1 + (i as u64 % 2), t)], t);
            assert!(c.is_empty(), "frame {i}: {c:?}");
        }
        // The tick writes the folds (UPDATED, to WatchAlerts only).
        let c = tick(&mut e, t0 + 30 * S);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].kind, pb::AlertEventKind::Updated);
        assert!(c[0].sinks.is_empty());
        assert_eq!(c[0].alert.occurrences, 150);
        // 40 s without a match: the incident ends.
        let last = t0 + 149 * S / 5;
        assert!(tick(&mut e, last + 39 * S).is_empty());
        let c = tick(&mut e, last + 40 * S);
        assert_eq!(c[0].kind, pb::AlertEventKind::Ended);
        assert_eq!(us(&c[0].alert.ended_at), last + 40 * S);
        assert_eq!(c[0].sinks, ["hook"]);
        // Back within the cooldown (60 s after the last match): suppressed on the same alert.
        let t = last + 50 * S;
        assert!(run(&mut e, &[det("x1", 9, t)], t).is_empty());
        let c = tick(&mut e, t + 6 * S);
        assert_eq!(c[0].alert.suppressed, 1);
        assert_eq!(c[0].alert.id, opened[0].alert.id);
        // After the cooldown: a new alert.
        let t = last + 61 * S;
        let c = run(&mut e, &[det("x2", 9, t)], t);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].kind, pb::AlertEventKind::Opened);
        assert_ne!(c[0].alert.id, opened[0].alert.id);
        // A duplicate detection (a replay) changes nothing.
        assert!(run(&mut e, &[det("x2", 9, t)], t).is_empty());
    }

    #[test]
    fn a_parked_car_all_night_is_one_alert_escalated_to_critical() {
        let mut e = engine(vec![zone_rule()]);
        let t0 = 10_000 * S;
        let mut opened = 0;
        let mut escalated = Vec::new();
        // 8 hours, a frame every second, a tick every second.
        for s in 0..(8 * 3600) {
            let t = t0 + s * S;
            let mut d = det(&format!("c{s}"), 5, t);
            d.class_label = "car".into();
            opened += run(&mut e, &[d], t).len();
            for c in tick(&mut e, t) {
                if c.kind == pb::AlertEventKind::Escalated {
                    escalated.push(c.alert.severity);
                }
                assert_ne!(c.kind, pb::AlertEventKind::Ended);
            }
        }
        assert_eq!(opened, 1);
        assert_eq!(
            escalated,
            [
                pb::AlertSeverity::High as i32,
                pb::AlertSeverity::Critical as i32
            ],
            "medium → high after 10 min, → critical after 20 min, then no further"
        );
    }

    #[test]
    fn object_count_needs_that_many_tracks_at_once() {
        let r = rule(RuleYaml {
            name: "group".into(),
            site: "burgas".into(),
            min_objects: 3,
            ..Default::default()
        });
        let mut e = engine(vec![r]);
        let t = 50 * S;
        assert!(run(&mut e, &[det("a", 1, t), det("b", 2, t)], t).is_empty());
        // A third, but the first left long ago.
        let later = t + 5 * S;
        assert!(run(&mut e, &[det("c", 3, later), det("d", 2, later)], later).is_empty());
        let c = run(&mut e, &[det("e", 4, later)], later);
        assert_eq!(c.len(), 1, "tracks 2, 3 and 4 together");
    }

    #[test]
    fn dedup_by_track_opens_one_alert_per_object() {
        let mut r = zone_rule().as_ref().clone();
        r.dedup = pb::DedupScope::Track;
        let mut e = engine(vec![Arc::new(r)]);
        let t = 5 * S;
        let c = run(
            &mut e,
            &[det("a", 1, t), det("b", 2, t), det("c", 1, t + 1)],
            t,
        );
        assert_eq!(c.len(), 2);
    }

    #[test]
    fn actions_follow_the_lifecycle_and_are_attributed() {
        let a = pb::Alert {
            id: "a".into(),
            state: pb::AlertState::Open as i32,
            version: 3,
            ..Default::default()
        };
        let (held, k) = act(
            &a,
            &Action::Hold {
                note: "patrol on its way".into(),
            },
            "ivan",
            7,
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            (held.state, k),
            (pb::AlertState::OnHold as i32, pb::AlertEventKind::Held)
        );
        assert_eq!((held.held_by.as_str(), held.version), ("ivan", 4));
        assert!(
            act(
                &held,
                &Action::Hold {
                    note: String::new()
                },
                "x",
                8
            )
            .unwrap()
            .is_none()
        );
        let e = act(
            &held,
            &Action::Resolve {
                resolution: 0,
                note: String::new(),
            },
            "x",
            8,
        )
        .unwrap_err();
        assert!(e.to_string().contains("resolution"), "{e}");
        let (done, _) = act(
            &held,
            &Action::Resolve {
                resolution: pb::AlertResolution::Actioned as i32,
                note: "detained".into(),
            },
            "maria",
            9,
        )
        .unwrap()
        .unwrap();
        assert_eq!(done.state, pb::AlertState::Resolved as i32);
        assert_eq!(
            (done.acknowledged_by.as_str(), done.resolved_by.as_str()),
            ("maria", "maria"),
            "resolving records the acknowledgement too"
        );
        let e = act(
            &done,
            &Action::Acknowledge {
                note: String::new(),
            },
            "x",
            10,
        )
        .unwrap_err();
        assert!(matches!(e, AlertingError::FailedPrecondition(_)));
    }
}
