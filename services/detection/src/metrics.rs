//! Detection metrics, labelled by site (never by camera: thousands of cameras must not become
//! thousands of series; per-camera detail is in `GetDetectorStatus`). The detector's own
//! metrics (inference time, batch size, queue drops, by provider) come from `kordon-infer`.

use std::sync::OnceLock;

use kordon_runtime::metrics::register;
use prometheus::{IntCounterVec, IntGaugeVec, Opts};

pub struct Metrics {
    /// Frames decoded from detect streams.
    pub frames_decoded: IntCounterVec,
    /// Frames run through motion detection.
    pub frames_analysed: IntCounterVec,
    /// Analysed frames that had motion (motion ratio = this / analysed).
    pub frames_with_motion: IntCounterVec,
    /// Frames the detector could not take (queue full) or failed on.
    pub frames_dropped: IntCounterVec,
    /// Stored detections, by phase.
    pub detections: IntCounterVec,
    /// Snapshots saved and registered.
    pub snapshots: IntCounterVec,
    /// Snapshot uploads or registrations that failed (retried).
    pub snapshot_failures: IntCounterVec,
    /// Detect-stream reconnects.
    pub reconnects: IntCounterVec,
    /// Cameras by detector state.
    pub cameras: IntGaugeVec,
}

fn counter(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    register(IntCounterVec::new(Opts::new(name, help), labels).expect("static metric definition"))
}

pub fn get() -> &'static Metrics {
    static M: OnceLock<Metrics> = OnceLock::new();
    M.get_or_init(|| Metrics {
        frames_decoded: counter(
            "kordon_detection_frames_decoded_total",
            "Frames decoded from detect streams",
            &["site"],
        ),
        frames_analysed: counter(
            "kordon_detection_frames_analysed_total",
            "Frames run through motion detection",
            &["site"],
        ),
        frames_with_motion: counter(
            "kordon_detection_frames_with_motion_total",
            "Analysed frames with motion",
            &["site"],
        ),
        frames_dropped: counter(
            "kordon_detection_frames_dropped_total",
            "Frames the object detector could not take (queue full) or failed on",
            &["site", "reason"],
        ),
        detections: counter(
            "kordon_detection_detections_total",
            "Detections stored",
            &["site", "phase"],
        ),
        snapshots: counter(
            "kordon_detection_snapshots_total",
            "Snapshots saved and registered with storage",
            &["site"],
        ),
        snapshot_failures: counter(
            "kordon_detection_snapshot_failures_total",
            "Snapshot uploads or registrations that failed (retried later)",
            &["site"],
        ),
        reconnects: counter(
            "kordon_detection_reconnects_total",
            "Detect-stream reconnects",
            &["site"],
        ),
        cameras: register(
            IntGaugeVec::new(
                Opts::new("kordon_detection_cameras", "Cameras by detector state"),
                &["site", "state"],
            )
            .expect("static metric definition"),
        ),
    })
}
