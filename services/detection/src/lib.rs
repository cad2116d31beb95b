//! Kordon detection: people and vehicles on every camera.
//!
//! The service's gRPC surface is `kordon.detection.v1.DetectionService` (see
//! `proto/kordon/detection/v1/`).

pub mod config;
pub mod error;
pub mod hub;
pub mod metrics;
pub mod store;

pub use error::DetectionError;

use kordon_proto::detection::v1::detection_service_server::{
    DetectionService, DetectionServiceServer,
};

/// The name of this service in logs, metrics and `WhoAmI`.
pub const NAME: &str = "detection";

/// The gRPC implementation of `kordon.detection.v1.DetectionService`.
#[derive(Debug, Clone, Default)]
pub struct DetectionApi {}

#[tonic::async_trait]
impl DetectionService for DetectionApi {}

/// The tonic service to add to a server.
pub fn grpc_service(api: DetectionApi) -> DetectionServiceServer<DetectionApi> {
    DetectionServiceServer::new(api)
}
