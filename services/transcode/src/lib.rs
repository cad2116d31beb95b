//! Kordon transcode: renditions, thumbnails and export transcodes.
//!
//! The service's gRPC surface is `kordon.transcode.v1.TranscodeService` (see `proto/kordon/transcode/v1/`).
//! Until the service itself lands (its own issue), every RPC answers `UNIMPLEMENTED`; health,
//! reflection and the identity service already work wherever it runs.

use kordon_proto::transcode::v1::transcode_service_server::{
    TranscodeService, TranscodeServiceServer,
};

/// The name of this service in logs, metrics and `WhoAmI`.
pub const NAME: &str = "transcode";

/// The gRPC implementation of `kordon.transcode.v1.TranscodeService`.
#[derive(Debug, Clone, Default)]
pub struct TranscodeApi {}

#[tonic::async_trait]
impl TranscodeService for TranscodeApi {}

/// The tonic service to add to a server.
pub fn grpc_service(api: TranscodeApi) -> TranscodeServiceServer<TranscodeApi> {
    TranscodeServiceServer::new(api)
}
