//! Kordon alerting: rules, alert lifecycle and delivery.
//!
//! Detections from the site's detection replicas ([`source`]) are matched against the rules
//! ([`rules`]: cameras, classes, confidence, zones with dwell, lines with direction, object
//! count, a weekly schedule in local time); matches fold into one alert per incident
//! ([`engine`]); alerts go `open → acknowledged → resolved` (or on hold), each step attributed;
//! all of it is stored ([`store`]) and delivered at least once ([`sink`]): `WatchAlerts`
//! subscribers (resumable by cursor), Standard Webhooks, MQTT. The gRPC surface is
//! `kordon.alerting.v1.AlertingService` ([`grpc::AlertingApi`]). Alerts an agreement covers are
//! shared with partner installations, and theirs received, over the partner link ([`partner`]).

pub mod config;
pub mod engine;
pub mod error;
pub mod grpc;
pub mod json;
pub mod metrics;
pub mod partner;
pub mod rules;
pub mod service;
pub mod sink;
pub mod source;
pub mod store;

pub use error::AlertingError;
pub use grpc::AlertingApi;
pub use service::Alerting;

use kordon_proto::alerting::v1::alerting_service_server::AlertingServiceServer;

/// The name of this service in logs, metrics and `WhoAmI`.
pub const NAME: &str = "alerting";

/// The implicit sink of `WatchAlerts` subscribers.
pub const GRPC_SINK: &str = "grpc";

/// The tonic service to add to a server.
pub fn grpc_service(api: AlertingApi) -> AlertingServiceServer<AlertingApi> {
    AlertingServiceServer::new(api)
}

/// Microseconds since the Unix epoch, now.
pub(crate) fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}
