//! Alerting metrics, labelled by site, rule, severity and sink (never by camera or alert: those
//! would grow without bound).

use std::sync::OnceLock;

use kordon_runtime::metrics::register;
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts};

pub struct Metrics {
    /// Alerts opened, by site, rule and severity.
    pub alerts: IntCounterVec,
    /// Alert events (opened, updated, acknowledged, …), by kind.
    pub events: IntCounterVec,
    /// Detections read from detection, and those that matched a rule.
    pub detections: IntCounterVec,
    /// Deliveries by sink and outcome (delivered, retried, dead_letter).
    pub deliveries: IntCounterVec,
    /// Seconds from an event to its delivery, by sink.
    pub delivery_latency: HistogramVec,
    /// Events waiting for each sink.
    pub pending: IntGaugeVec,
    /// 1 when the sink's latest attempt worked.
    pub sink_healthy: IntGaugeVec,
    /// Seconds from a detection's frame to the alert event it caused, by kind.
    pub detection_to_event: HistogramVec,
    /// WatchAlerts subscribers.
    pub subscribers: IntGaugeVec,
    /// Seconds from a detection's frame time to its arrival here (detection's share of the
    /// alert latency).
    pub detection_arrival: HistogramVec,
    /// 1 while the agreement with a partner is accepted by both sides.
    pub partner_accepted: IntGaugeVec,
    /// Alerts received from partners, by partner and outcome (created, updated, duplicate).
    pub partner_received: IntCounterVec,
}

fn counter(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    register(IntCounterVec::new(Opts::new(name, help), labels).expect("static metric definition"))
}

fn gauge(name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    register(IntGaugeVec::new(Opts::new(name, help), labels).expect("static metric definition"))
}

fn histogram(name: &str, help: &str, labels: &[&str]) -> HistogramVec {
    let buckets = vec![
        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
    ];
    register(
        HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), labels)
            .expect("static metric definition"),
    )
}

pub fn get() -> &'static Metrics {
    static M: OnceLock<Metrics> = OnceLock::new();
    M.get_or_init(|| Metrics {
        alerts: counter(
            "kordon_alerting_alerts_total",
            "Alerts opened",
            &["site", "rule", "severity"],
        ),
        events: counter("kordon_alerting_events_total", "Alert events", &["kind"]),
        detections: counter(
            "kordon_alerting_detections_total",
            "Detections read, and those that matched a rule",
            &["result"],
        ),
        deliveries: counter(
            "kordon_alerting_deliveries_total",
            "Delivery attempts by sink and outcome (delivered, retried, dead_letter)",
            &["sink", "outcome"],
        ),
        delivery_latency: histogram(
            "kordon_alerting_delivery_latency_seconds",
            "Seconds from an alert event to its delivery",
            &["sink"],
        ),
        pending: gauge(
            "kordon_alerting_sink_pending",
            "Events waiting for delivery",
            &["sink"],
        ),
        sink_healthy: gauge(
            "kordon_alerting_sink_healthy",
            "1 when the sink's latest delivery attempt worked",
            &["sink"],
        ),
        detection_to_event: histogram(
            "kordon_alerting_detection_to_event_seconds",
            "Seconds from a detection's frame time to the alert event it caused",
            &["kind"],
        ),
        subscribers: gauge(
            "kordon_alerting_watch_subscribers",
            "WatchAlerts subscribers",
            &[],
        ),
        detection_arrival: histogram(
            "kordon_alerting_detection_arrival_seconds",
            "Seconds from a detection's frame time to its arrival at alerting",
            &[],
        ),
        partner_accepted: gauge(
            "kordon_alerting_partner_agreement_accepted",
            "1 while both sides declare matching agreements with the partner",
            &["partner"],
        ),
        partner_received: counter(
            "kordon_alerting_partner_alerts_received_total",
            "Alerts received from partners by outcome (created, updated, duplicate, refused)",
            &["partner", "outcome"],
        ),
    })
}
