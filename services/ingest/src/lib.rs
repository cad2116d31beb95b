//! Kordon ingest: records camera streams into object storage.
//!
//! The service's gRPC surface is `kordon.ingest.v1.IngestService` (see `proto/kordon/ingest/v1/`).
//! Until the service itself lands (issue #3), every RPC answers `UNIMPLEMENTED`; health,
//! reflection and the identity service already work wherever it runs.

use kordon_proto::ingest::v1::ingest_service_server::{IngestService, IngestServiceServer};

/// The name of this service in logs, metrics and `WhoAmI`.
pub const NAME: &str = "ingest";

/// The gRPC implementation of `kordon.ingest.v1.IngestService`.
#[derive(Debug, Clone, Default)]
pub struct IngestApi {}

#[tonic::async_trait]
impl IngestService for IngestApi {}

/// The tonic service to add to a server.
pub fn grpc_service(api: IngestApi) -> IngestServiceServer<IngestApi> {
    IngestServiceServer::new(api)
}
