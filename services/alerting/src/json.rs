//! Alert events as JSON for webhooks and MQTT: the `WatchAlertsResponse` fields in the proto3
//! JSON mapping (lowerCamelCase names, enums by name, times as RFC 3339, unset fields left
//! out), so a receiver can parse them with any protobuf JSON library or by hand.

use kordon_proto::alerting::v1 as pb;
use kordon_proto::detection::v1 as dpb;
use serde_json::{Map, Value, json};

fn time(t: &Option<prost_types::Timestamp>) -> Option<Value> {
    let t = t.as_ref()?;
    let ts = jiff::Timestamp::new(t.seconds, t.nanos).ok()?;
    Some(Value::String(ts.to_string()))
}

fn duration(d: &Option<prost_types::Duration>) -> Option<Value> {
    let d = d.as_ref()?;
    let secs = d.seconds as f64 + f64::from(d.nanos) / 1e9;
    Some(Value::String(format!("{secs}s")))
}

fn put(m: &mut Map<String, Value>, k: &str, v: Option<Value>) {
    match v {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) if s.is_empty() => {}
        Some(v) => {
            m.insert(k.to_string(), v);
        }
    }
}

fn name<E: TryFrom<i32>>(v: i32, f: impl Fn(&E) -> &'static str) -> Option<Value> {
    E::try_from(v)
        .ok()
        .map(|e| Value::String(f(&e).to_string()))
}

fn detection(d: &dpb::Detection) -> Value {
    let mut m = Map::new();
    put(&mut m, "id", Some(json!(d.id)));
    put(&mut m, "time", time(&d.time));
    put(&mut m, "classLabel", Some(json!(d.class_label)));
    put(&mut m, "confidence", Some(json!(d.confidence)));
    if let Some(b) = &d.r#box {
        put(
            &mut m,
            "box",
            Some(json!({"left": b.left, "top": b.top, "right": b.right, "bottom": b.bottom})),
        );
    }
    put(&mut m, "trackId", Some(json!(d.track_id.to_string())));
    put(&mut m, "snapshotId", Some(json!(d.snapshot_id)));
    Value::Object(m)
}

/// One alert as JSON.
pub fn alert(a: &pb::Alert) -> Value {
    let mut m = Map::new();
    put(&mut m, "id", Some(json!(a.id)));
    put(&mut m, "site", Some(json!(a.site)));
    put(&mut m, "ruleId", Some(json!(a.rule_id)));
    put(&mut m, "ruleName", Some(json!(a.rule_name)));
    put(
        &mut m,
        "severity",
        name(a.severity, pb::AlertSeverity::as_str_name),
    );
    put(
        &mut m,
        "initialSeverity",
        name(a.initial_severity, pb::AlertSeverity::as_str_name),
    );
    put(&mut m, "state", name(a.state, pb::AlertState::as_str_name));
    if let Some(c) = &a.camera {
        put(
            &mut m,
            "camera",
            Some(json!({"site": c.site, "camera": c.camera})),
        );
    }
    put(&mut m, "classLabel", Some(json!(a.class_label)));
    put(&mut m, "zone", Some(json!(a.zone)));
    put(&mut m, "line", Some(json!(a.line)));
    if a.track_id != 0 {
        put(&mut m, "trackId", Some(json!(a.track_id.to_string())));
    }
    put(&mut m, "detection", a.detection.as_ref().map(detection));
    put(&mut m, "snapshotId", Some(json!(a.snapshot_id)));
    put(&mut m, "openedAt", time(&a.opened_at));
    put(&mut m, "lastSeenAt", time(&a.last_seen_at));
    put(&mut m, "endedAt", time(&a.ended_at));
    put(&mut m, "escalatedAt", time(&a.escalated_at));
    put(&mut m, "occurrences", Some(json!(a.occurrences)));
    if a.suppressed > 0 {
        put(&mut m, "suppressed", Some(json!(a.suppressed)));
    }
    put(&mut m, "maxConfidence", Some(json!(a.max_confidence)));
    put(&mut m, "dwell", duration(&a.dwell));
    put(&mut m, "acknowledgedBy", Some(json!(a.acknowledged_by)));
    put(&mut m, "acknowledgedAt", time(&a.acknowledged_at));
    put(&mut m, "acknowledgeNote", Some(json!(a.acknowledge_note)));
    put(&mut m, "heldBy", Some(json!(a.held_by)));
    put(&mut m, "heldAt", time(&a.held_at));
    put(&mut m, "holdNote", Some(json!(a.hold_note)));
    put(&mut m, "resolvedBy", Some(json!(a.resolved_by)));
    put(&mut m, "resolvedAt", time(&a.resolved_at));
    if a.resolution != 0 {
        put(
            &mut m,
            "resolution",
            name(a.resolution, pb::AlertResolution::as_str_name),
        );
    }
    put(&mut m, "resolveNote", Some(json!(a.resolve_note)));
    if let Some(o) = &a.origin {
        put(
            &mut m,
            "origin",
            Some(json!({"site": o.site, "alertId": o.alert_id, "version": o.version.to_string()})),
        );
    }
    put(&mut m, "version", Some(json!(a.version.to_string())));
    Value::Object(m)
}

/// One event as JSON.
pub fn event(e: &pb::WatchAlertsResponse) -> Value {
    let mut m = Map::new();
    put(
        &mut m,
        "kind",
        name(e.kind, pb::AlertEventKind::as_str_name),
    );
    put(&mut m, "alert", e.alert.as_ref().map(alert));
    put(&mut m, "eventTime", time(&e.event_time));
    put(&mut m, "cursor", Some(json!(e.cursor)));
    Value::Object(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_use_the_proto3_json_names() {
        let e = pb::WatchAlertsResponse {
            kind: pb::AlertEventKind::Opened as i32,
            alert: Some(pb::Alert {
                id: "a1".into(),
                severity: pb::AlertSeverity::High as i32,
                state: pb::AlertState::Open as i32,
                track_id: 7,
                opened_at: Some(prost_types::Timestamp {
                    seconds: 1_767_225_600,
                    nanos: 500_000_000,
                }),
                occurrences: 1,
                version: 1,
                ..Default::default()
            }),
            event_time: None,
            cursor: "12".into(),
        };
        let v = event(&e);
        assert_eq!(v["kind"], "ALERT_EVENT_KIND_OPENED");
        assert_eq!(v["alert"]["severity"], "ALERT_SEVERITY_HIGH");
        assert_eq!(v["alert"]["openedAt"], "2026-01-01T00:00:00.5Z");
        assert_eq!(v["alert"]["trackId"], "7");
        assert!(
            v["alert"].get("zone").is_none(),
            "empty fields are left out"
        );
        assert_eq!(v["cursor"], "12");
    }
}
