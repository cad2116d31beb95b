//! Ingest metrics. Labelled by site only (never by camera): a few thousand cameras must not
//! become a few thousand series per metric. Per-camera detail is in the status API.

use std::sync::OnceLock;

use kordon_runtime::metrics::register;
use prometheus::{IntCounterVec, IntGauge, IntGaugeVec, Opts};

use crate::status::{CameraState, StatusBoard};

pub struct Metrics {
    pub segments: IntCounterVec,
    pub segment_bytes: IntCounterVec,
    pub gaps: IntCounterVec,
    pub reconnects: IntCounterVec,
    pub spool_refused: IntCounterVec,
    pub uploads_failed: IntCounterVec,
    pub segments_stored: IntCounterVec,
    pub segments_recovered: IntCounterVec,
    pub dead_letter: IntCounterVec,
    pub cameras: IntGaugeVec,
    pub spool_bytes: IntGauge,
    pub spool_entries: IntGauge,
}

fn counter(name: &str, help: &str) -> IntCounterVec {
    register(
        IntCounterVec::new(Opts::new(name, help), &["site"]).expect("static metric definition"),
    )
}

pub fn get() -> &'static Metrics {
    static M: OnceLock<Metrics> = OnceLock::new();
    M.get_or_init(|| Metrics {
        segments: counter(
            "kordon_ingest_segments_total",
            "Segments closed into the spool",
        ),
        segment_bytes: counter(
            "kordon_ingest_segment_bytes_total",
            "Bytes of closed segments",
        ),
        gaps: counter("kordon_ingest_gaps_total", "Recording gaps recorded"),
        reconnects: counter(
            "kordon_ingest_reconnects_total",
            "Camera reconnect attempts",
        ),
        spool_refused: counter(
            "kordon_ingest_spool_refused_total",
            "Segments refused because the spool was full",
        ),
        uploads_failed: counter(
            "kordon_ingest_upload_failures_total",
            "Failed attempts to store or register a spooled entry (retried)",
        ),
        segments_stored: counter(
            "kordon_ingest_segments_stored_total",
            "Segments stored in object storage and registered",
        ),
        segments_recovered: counter(
            "kordon_ingest_segments_recovered_total",
            "Segments a crash interrupted, recovered from the spool up to their last whole fragment",
        ),
        dead_letter: register(
            IntCounterVec::new(
                Opts::new(
                    "kordon_ingest_dead_letter_total",
                    "Spool entries storage refused for good (or unreadable), moved to the \
                     dead-letter folder, by reason class",
                ),
                &["site", "reason"],
            )
            .expect("static metric definition"),
        ),
        cameras: register(
            IntGaugeVec::new(
                Opts::new("kordon_ingest_cameras", "Cameras by site and state"),
                &["site", "state"],
            )
            .expect("static metric definition"),
        ),
        spool_bytes: register(
            IntGauge::new("kordon_ingest_spool_bytes", "Bytes waiting in the spool")
                .expect("static metric definition"),
        ),
        spool_entries: register(
            IntGauge::new(
                "kordon_ingest_spool_entries",
                "Entries waiting in the spool",
            )
            .expect("static metric definition"),
        ),
    })
}

/// Counts one entry moved to the dead-letter folder.
pub fn dead_lettered(site: &str, class: crate::error::Refusal) {
    get()
        .dead_letter
        .with_label_values(&[site, class.as_str()])
        .inc();
}

/// Recomputes the per-site state gauges.
pub fn refresh_states(board: &StatusBoard) {
    let m = get();
    let all = board.all();
    m.cameras.reset();
    for s in &all {
        m.cameras
            .with_label_values(&[&s.site, s.state.as_str()])
            .inc();
    }
    // Keep zero series for states of known sites so dashboards show them.
    let sites: std::collections::BTreeSet<&str> = all.iter().map(|s| s.site.as_str()).collect();
    for site in sites {
        for st in CameraState::ALL {
            let _ = m.cameras.get_metric_with_label_values(&[site, st.as_str()]);
        }
    }
}
