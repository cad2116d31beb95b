//! Transcode metrics, labelled by job kind (and encoder where it matters), never by camera.

use std::sync::OnceLock;

use kordon_runtime::metrics::register;
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts};

pub struct Metrics {
    /// Jobs that ended, by kind and final state.
    pub jobs_finished: IntCounterVec,
    /// Jobs by state in this process's view of the database.
    pub jobs: IntGaugeVec,
    /// Source segments processed, by kind.
    pub units: IntCounterVec,
    /// Frames encoded (or thumbnails written), by kind and encoder.
    pub frames: IntCounterVec,
    /// Seconds of footage processed, by kind and encoder.
    pub footage_seconds: IntCounterVec,
    /// Wall time per source segment, by kind.
    pub unit_seconds: HistogramVec,
    /// Bytes written to the bucket, by kind.
    pub bytes_written: IntCounterVec,
    /// Job runs interrupted by an outage and retried.
    pub retries: IntCounterVec,
    /// Automatic thumbnails made and failed.
    pub auto_thumbnails: IntCounterVec,
}

fn counter(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    register(IntCounterVec::new(Opts::new(name, help), labels).expect("static metric definition"))
}

pub fn get() -> &'static Metrics {
    static M: OnceLock<Metrics> = OnceLock::new();
    M.get_or_init(|| Metrics {
        jobs_finished: counter(
            "kordon_transcode_jobs_finished_total",
            "Transcode jobs that ended, by kind and state",
            &["kind", "state"],
        ),
        jobs: register(
            IntGaugeVec::new(
                Opts::new("kordon_transcode_jobs", "Transcode jobs by state"),
                &["state"],
            )
            .expect("static metric definition"),
        ),
        units: counter(
            "kordon_transcode_units_total",
            "Source segments processed by transcode jobs",
            &["kind"],
        ),
        frames: counter(
            "kordon_transcode_frames_total",
            "Frames encoded (thumbnails: images written)",
            &["kind", "encoder"],
        ),
        footage_seconds: counter(
            "kordon_transcode_footage_seconds_total",
            "Seconds of footage processed",
            &["kind", "encoder"],
        ),
        unit_seconds: register(
            HistogramVec::new(
                HistogramOpts::new(
                    "kordon_transcode_unit_duration_seconds",
                    "Wall time to process one source segment",
                )
                .buckets(vec![
                    0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0,
                ]),
                &["kind"],
            )
            .expect("static metric definition"),
        ),
        bytes_written: counter(
            "kordon_transcode_bytes_written_total",
            "Bytes of outputs written to the bucket",
            &["kind"],
        ),
        retries: counter(
            "kordon_transcode_retries_total",
            "Job runs interrupted by an outage and queued again",
            &["kind"],
        ),
        auto_thumbnails: counter(
            "kordon_transcode_auto_thumbnails_total",
            "Thumbnails made for new segments without a job, by outcome",
            &["outcome"],
        ),
    })
}

pub fn kind_label(k: kordon_proto::transcode::v1::JobKind) -> &'static str {
    use kordon_proto::transcode::v1::JobKind;
    match k {
        JobKind::Rendition => "rendition",
        JobKind::Thumbnails => "thumbnails",
        JobKind::Export => "export",
        JobKind::Unspecified => "unknown",
    }
}
