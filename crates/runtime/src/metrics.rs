//! The process's Prometheus registry and the metrics every gRPC server records.
//!
//! Names follow `kordon_<service>_<thing>_<unit>` (counters end in `_total`); label values come
//! from small fixed sets (gRPC service and method names, status code names), never from user
//! input.

use std::sync::OnceLock;

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry};

/// The process-wide registry served on `/metrics`.
pub fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        let r = Registry::new();
        #[cfg(target_os = "linux")]
        {
            // Process CPU, memory and file descriptors, as every Prometheus client exports.
            let _ = r.register(Box::new(ProcessCollector::new()));
        }
        r
    })
}

/// Registers `collector` in the process registry; a second registration of the same metric
/// (two servers in one process) keeps the first, which is what the caller wants.
pub fn register<C: prometheus::core::Collector + Clone + 'static>(collector: C) -> C {
    match registry().register(Box::new(collector.clone())) {
        Ok(()) => collector,
        Err(prometheus::Error::AlreadyReg) => collector,
        Err(e) => {
            tracing::error!(error = %e, "metric registration failed");
            collector
        }
    }
}

/// Renders the registry in the Prometheus text format.
pub fn render() -> String {
    use prometheus::Encoder;
    let mut buf = Vec::new();
    let encoder = prometheus::TextEncoder::new();
    if let Err(e) = encoder.encode(&registry().gather(), &mut buf) {
        tracing::error!(error = %e, "metrics encoding failed");
    }
    String::from_utf8(buf).unwrap_or_default()
}

/// Metrics recorded for every gRPC call by [`crate::server`].
#[derive(Clone)]
pub struct GrpcMetrics {
    pub requests: IntCounterVec,
    pub duration: HistogramVec,
    pub in_flight: IntGauge,
    pub auth_failures: IntCounterVec,
}

impl GrpcMetrics {
    pub fn get() -> &'static GrpcMetrics {
        static M: OnceLock<GrpcMetrics> = OnceLock::new();
        M.get_or_init(|| {
            let requests = IntCounterVec::new(
                Opts::new(
                    "kordon_grpc_server_requests_total",
                    "gRPC calls handled, by service, method and status code",
                ),
                &["grpc_service", "grpc_method", "grpc_code"],
            )
            .expect("static metric definition");
            let duration = HistogramVec::new(
                HistogramOpts::new(
                    "kordon_grpc_server_request_duration_seconds",
                    "Time to the response headers of gRPC calls",
                )
                .buckets(vec![
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
                ]),
                &["grpc_service", "grpc_method"],
            )
            .expect("static metric definition");
            let in_flight = IntGauge::new(
                "kordon_grpc_server_requests_in_flight",
                "gRPC calls being handled now",
            )
            .expect("static metric definition");
            let auth_failures = IntCounterVec::new(
                Opts::new(
                    "kordon_grpc_server_auth_failures_total",
                    "Calls refused before reaching a service, by reason",
                ),
                &["reason"],
            )
            .expect("static metric definition");
            GrpcMetrics {
                requests: register(requests),
                duration: register(duration),
                in_flight: register(in_flight),
                auth_failures: register(auth_failures),
            }
        })
    }
}

#[cfg(target_os = "linux")]
use process::ProcessCollector;

#[cfg(target_os = "linux")]
mod process {
    //! `process_*` metrics read from `/proc/self` (the `prometheus` crate's own collector needs
    //! a feature that pulls in protobuf; this is the small subset we use).

    use prometheus::core::{Collector, Desc};
    use prometheus::proto::MetricFamily;
    use prometheus::{Gauge, IntGauge, Opts};

    #[derive(Clone)]
    pub struct ProcessCollector {
        cpu: Gauge,
        rss: IntGauge,
        fds: IntGauge,
        descs: Vec<Desc>,
    }

    impl ProcessCollector {
        pub fn new() -> Self {
            let cpu = Gauge::with_opts(Opts::new(
                "process_cpu_seconds_total",
                "User and system CPU time spent in seconds",
            ))
            .expect("static metric definition");
            let rss = IntGauge::with_opts(Opts::new(
                "process_resident_memory_bytes",
                "Resident memory size in bytes",
            ))
            .expect("static metric definition");
            let fds = IntGauge::with_opts(Opts::new("process_open_fds", "Open file descriptors"))
                .expect("static metric definition");
            let mut descs = Vec::new();
            descs.extend(cpu.desc().into_iter().cloned());
            descs.extend(rss.desc().into_iter().cloned());
            descs.extend(fds.desc().into_iter().cloned());
            Self {
                cpu,
                rss,
                fds,
                descs,
            }
        }

        fn refresh(&self) {
            // /proc/self/stat fields 14 and 15 are utime and stime in clock ticks (100 Hz on
            // Linux); field 24 is rss in pages (4 KiB).
            if let Ok(stat) = std::fs::read_to_string("/proc/self/stat")
                && let Some(rest) = stat.rsplit_once(") ").map(|(_, r)| r)
            {
                let f: Vec<&str> = rest.split_whitespace().collect();
                let num = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
                // `rest` starts at field 3.
                self.cpu.set((num(11) + num(12)) as f64 / 100.0);
                self.rss.set((num(21) * 4096) as i64);
            }
            if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
                self.fds.set(dir.count() as i64);
            }
        }
    }

    impl Collector for ProcessCollector {
        fn desc(&self) -> Vec<&Desc> {
            self.descs.iter().collect()
        }

        fn collect(&self) -> Vec<MetricFamily> {
            self.refresh();
            let mut out = self.cpu.collect();
            out.extend(self.rss.collect());
            out.extend(self.fds.collect());
            out
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn renders_process_and_grpc_metrics() {
        super::GrpcMetrics::get()
            .requests
            .with_label_values(&["kordon.test.v1.T", "Call", "Ok"])
            .inc();
        let text = super::render();
        assert!(
            text.contains("kordon_grpc_server_requests_total{grpc_code=\"Ok\""),
            "{text}"
        );
        #[cfg(target_os = "linux")]
        assert!(text.contains("process_resident_memory_bytes"), "{text}");
    }
}
