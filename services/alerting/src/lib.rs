//! Kordon alerting: rules, alert lifecycle and delivery.
//!
//! The service's gRPC surface is `kordon.alerting.v1.AlertingService` (see `proto/kordon/alerting/v1/`).
//! Until the service itself lands (its own issue), every RPC answers `UNIMPLEMENTED`; health,
//! reflection and the identity service already work wherever it runs.

use kordon_proto::alerting::v1::alerting_service_server::{AlertingService, AlertingServiceServer};

/// The name of this service in logs, metrics and `WhoAmI`.
pub const NAME: &str = "alerting";

/// The gRPC implementation of `kordon.alerting.v1.AlertingService`.
#[derive(Debug, Clone, Default)]
pub struct AlertingApi {}

#[tonic::async_trait]
impl AlertingService for AlertingApi {}

/// The tonic service to add to a server.
pub fn grpc_service(api: AlertingApi) -> AlertingServiceServer<AlertingApi> {
    AlertingServiceServer::new(api)
}
