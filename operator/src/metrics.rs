//! The operator's Prometheus metrics, in the process registry served on `/metrics`.
//!
//! Labels come from fixed sets: `controller` is `site`, `camera` or `alertrule`, `error` is
//! [`crate::Error::metric_label`], `outcome` is `ok` or `unreachable`.

use std::sync::OnceLock;
use std::time::Instant;

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts};

#[derive(Clone)]
pub struct Metrics {
    pub reconciles: IntCounterVec,
    pub failures: IntCounterVec,
    pub duration: HistogramVec,
    pub ingest_calls: IntCounterVec,
    pub detection_calls: IntCounterVec,
    pub leader: IntGauge,
}

impl Metrics {
    /// The process-wide metrics, registered on first use.
    pub fn get() -> &'static Metrics {
        static M: OnceLock<Metrics> = OnceLock::new();
        M.get_or_init(|| {
            use kordon_runtime::metrics::register;
            let reconciles = IntCounterVec::new(
                Opts::new(
                    "kordon_operator_reconciles_total",
                    "Reconciles run, by controller",
                ),
                &["controller"],
            )
            .expect("static metric definition");
            let failures = IntCounterVec::new(
                Opts::new(
                    "kordon_operator_reconcile_errors_total",
                    "Reconciles that failed, by controller and error kind",
                ),
                &["controller", "error"],
            )
            .expect("static metric definition");
            let duration = HistogramVec::new(
                HistogramOpts::new(
                    "kordon_operator_reconcile_duration_seconds",
                    "Time one reconcile took, by controller",
                )
                .buckets(vec![
                    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                ]),
                &["controller"],
            )
            .expect("static metric definition");
            let ingest_calls = IntCounterVec::new(
                Opts::new(
                    "kordon_operator_ingest_status_calls_total",
                    "Camera status reads from ingest replicas, by outcome",
                ),
                &["outcome"],
            )
            .expect("static metric definition");
            let detection_calls = IntCounterVec::new(
                Opts::new(
                    "kordon_operator_detection_calls_total",
                    "Shard checks of detection replicas (status read, and the shard sent when it \
                     differed), by outcome",
                ),
                &["outcome"],
            )
            .expect("static metric definition");
            let leader = IntGauge::new(
                "kordon_operator_leader",
                "1 while this replica holds the leader Lease",
            )
            .expect("static metric definition");
            Metrics {
                reconciles: register(reconciles),
                failures: register(failures),
                duration: register(duration),
                ingest_calls: register(ingest_calls),
                detection_calls: register(detection_calls),
                leader: register(leader),
            }
        })
    }

    /// Counts a reconcile and measures it until the guard drops.
    pub fn start(&self, controller: &'static str) -> ReconcileTimer {
        self.reconciles.with_label_values(&[controller]).inc();
        ReconcileTimer {
            histogram: self.duration.with_label_values(&[controller]),
            start: Instant::now(),
        }
    }

    pub fn failure(&self, controller: &'static str, error: &crate::Error) {
        self.failures
            .with_label_values(&[controller, error.metric_label()])
            .inc();
    }
}

pub struct ReconcileTimer {
    histogram: prometheus::Histogram,
    start: Instant,
}

impl Drop for ReconcileTimer {
    fn drop(&mut self) {
        self.histogram.observe(self.start.elapsed().as_secs_f64());
    }
}
