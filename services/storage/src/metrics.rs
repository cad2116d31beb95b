//! Storage metrics, registered in the process registry (`/metrics` on the admin port). Label
//! values come from fixed sets.

use std::sync::OnceLock;

use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, Opts};

#[derive(Clone)]
pub struct StorageMetrics {
    /// By `kind` (segment, gap) and `outcome` (created, already_present).
    pub registrations: IntCounterVec,
    /// By `action` (the AccessAction name in lower case).
    pub access_entries: IntCounterVec,
    /// By `kind` (the ChainFindingKind name in lower case).
    pub chain_findings: IntCounterVec,
    pub playlist_seconds: Histogram,
    pub media_bytes: IntCounter,
    /// Expired records whose object lay outside their camera's folder (left untouched).
    pub retention_foreign_keys: IntCounter,
}

impl StorageMetrics {
    pub fn get() -> &'static StorageMetrics {
        static M: OnceLock<StorageMetrics> = OnceLock::new();
        M.get_or_init(|| {
            use kordon_runtime::metrics::register;
            let registrations = IntCounterVec::new(
                Opts::new(
                    "kordon_storage_registrations_total",
                    "Segments and gaps registered, by kind and outcome",
                ),
                &["kind", "outcome"],
            )
            .expect("static metric definition");
            let access_entries = IntCounterVec::new(
                Opts::new(
                    "kordon_storage_access_log_entries_total",
                    "Access-log entries appended, by action",
                ),
                &["action"],
            )
            .expect("static metric definition");
            let chain_findings = IntCounterVec::new(
                Opts::new(
                    "kordon_storage_chain_findings_total",
                    "Problems found by chain verification, by kind",
                ),
                &["kind"],
            )
            .expect("static metric definition");
            let playlist_seconds = Histogram::with_opts(
                HistogramOpts::new(
                    "kordon_storage_playlist_duration_seconds",
                    "Time to build an HLS playlist",
                )
                .buckets(vec![0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0]),
            )
            .expect("static metric definition");
            let media_bytes = IntCounter::new(
                "kordon_storage_media_served_bytes_total",
                "Bytes of media served over HTTP",
            )
            .expect("static metric definition");
            let retention_foreign_keys = IntCounter::new(
                "kordon_storage_retention_foreign_objects_total",
                "Expired records naming an object outside their camera's folder; the object \
                 was left untouched",
            )
            .expect("static metric definition");
            StorageMetrics {
                registrations: register(registrations),
                access_entries: register(access_entries),
                chain_findings: register(chain_findings),
                playlist_seconds: register(playlist_seconds),
                media_bytes: register(media_bytes),
                retention_foreign_keys: register(retention_foreign_keys),
            }
        })
    }
}
