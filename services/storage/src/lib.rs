//! Kordon storage: the system of record for footage, evidence and the access log.
//!
//! The service's gRPC surface is `kordon.storage.v1.StorageService` (see `proto/kordon/storage/v1/`).
//! Until the service itself lands (issue #4), every RPC answers `UNIMPLEMENTED`; health,
//! reflection and the identity service already work wherever it runs.

use kordon_proto::storage::v1::storage_service_server::{StorageService, StorageServiceServer};

/// The name of this service in logs, metrics and `WhoAmI`.
pub const NAME: &str = "storage";

/// The gRPC implementation of `kordon.storage.v1.StorageService`.
#[derive(Debug, Clone, Default)]
pub struct StorageApi {}

#[tonic::async_trait]
impl StorageService for StorageApi {}

/// The tonic service to add to a server.
pub fn grpc_service(api: StorageApi) -> StorageServiceServer<StorageApi> {
    StorageServiceServer::new(api)
}
