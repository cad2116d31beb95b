//! Detection metrics. The frame counters (decoded, analysed, with motion, inferred, dropped)
//! and reconnects are per camera (`site`, `camera`): a replica serves only its shard of the
//! site's cameras, a handful of series each, and a camera's series are removed when it leaves
//! the replica ([`forget_camera`]). Detections, snapshots and camera states are per site. The
//! detector's own metrics (inference time, batch size, queue drops, by provider) come from
//! `kordon-infer`.

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
    /// Frames run through the object detector (not motion-gated away).
    pub frames_inferred: IntCounterVec,
    /// Stored detections, by phase.
    pub detections: IntCounterVec,
    /// Snapshots saved and registered.
    pub snapshots: IntCounterVec,
    /// Snapshot uploads or registrations that failed (retried).
    pub snapshot_failures: IntCounterVec,
    /// Stored detections linked to their segment (`segment`) or found not recorded
    /// (`not_recorded`).
    pub segment_links: IntCounterVec,
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
            &["site", "camera"],
        ),
        frames_analysed: counter(
            "kordon_detection_frames_analysed_total",
            "Frames run through motion detection",
            &["site", "camera"],
        ),
        frames_with_motion: counter(
            "kordon_detection_frames_with_motion_total",
            "Analysed frames with motion",
            &["site", "camera"],
        ),
        frames_dropped: counter(
            "kordon_detection_frames_dropped_total",
            "Frames the object detector could not take (queue full) or failed on",
            &["site", "camera", "reason"],
        ),
        frames_inferred: counter(
            "kordon_detection_camera_frames_inferred_total",
            "Frames of a camera run through the object detector (the rest were motion-gated)",
            &["site", "camera"],
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
        segment_links: counter(
            "kordon_detection_segment_links_total",
            "Stored detections linked to the recorded segment their frame lies in, or found not \
             recorded",
            &["site", "outcome"],
        ),
        reconnects: counter(
            "kordon_detection_reconnects_total",
            "Detect-stream reconnects",
            &["site", "camera"],
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

/// Removes a camera's per-camera series (it left this replica or was deleted).
pub fn forget_camera(site: &str, camera: &str) {
    let m = get();
    for c in [
        &m.frames_decoded,
        &m.frames_analysed,
        &m.frames_with_motion,
        &m.frames_inferred,
        &m.reconnects,
    ] {
        let _ = c.remove_label_values(&[site, camera]);
    }
    for reason in ["behind", "queue_full", "error", "not_stored"] {
        let _ = m
            .frames_dropped
            .remove_label_values(&[site, camera, reason]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_counters_are_per_camera_and_go_with_the_camera() {
        let m = get();
        m.frames_decoded
            .with_label_values(&["burgas", "gate-7"])
            .inc();
        m.frames_inferred
            .with_label_values(&["burgas", "gate-7"])
            .inc_by(3);
        m.frames_dropped
            .with_label_values(&["burgas", "gate-7", "behind"])
            .inc();
        m.frames_decoded
            .with_label_values(&["burgas", "gate-8"])
            .inc();
        let text = kordon_runtime::metrics::render();
        assert!(
            text.contains(
                "kordon_detection_camera_frames_inferred_total{camera=\"gate-7\",site=\"burgas\"} 3"
            ),
            "{text}"
        );
        forget_camera("burgas", "gate-7");
        let text = kordon_runtime::metrics::render();
        assert!(!text.contains("camera=\"gate-7\""), "{text}");
        assert!(text.contains("camera=\"gate-8\""));
    }
}
