//! Detector metrics, labelled by execution provider only (a fixed, small set).

use std::sync::OnceLock;

use kordon_runtime::metrics::register;
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts};

pub(crate) struct Metrics {
    pub frames: IntCounterVec,
    pub batch_size: HistogramVec,
    pub inference: HistogramVec,
    pub drops: IntCounterVec,
}

pub(crate) fn get() -> &'static Metrics {
    static M: OnceLock<Metrics> = OnceLock::new();
    M.get_or_init(|| Metrics {
        frames: register(
            IntCounterVec::new(
                Opts::new(
                    "kordon_detection_frames_inferred_total",
                    "Frames run through the object detector",
                ),
                &["provider"],
            )
            .expect("static metric definition"),
        ),
        batch_size: register(
            HistogramVec::new(
                HistogramOpts::new(
                    "kordon_detection_batch_size",
                    "Frames per object-detector session call",
                )
                .buckets(vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0]),
                &["provider"],
            )
            .expect("static metric definition"),
        ),
        inference: register(
            HistogramVec::new(
                HistogramOpts::new(
                    "kordon_detection_inference_seconds",
                    "Time per batch: pre-processing, session call and post-processing",
                )
                .buckets(vec![
                    0.0025, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56,
                ]),
                &["provider"],
            )
            .expect("static metric definition"),
        ),
        drops: register(
            IntCounterVec::new(
                Opts::new(
                    "kordon_detection_queue_drops_total",
                    "Frames dropped because the inference queue was full",
                ),
                &["provider"],
            )
            .expect("static metric definition"),
        ),
    })
}
