//! Shared by the ingest integration tests: a real storage service in-process.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;

use kordon_objects::ObjectStoreConfig;
use kordon_runtime::admin::Readiness;
use kordon_runtime::config::{AuthConfig, CommonConfig, LogConfig};
use kordon_runtime::server::GrpcServer;
use tokio_util::sync::CancellationToken;

/// A free loopback address (the listener is closed again at once).
pub fn free_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// A storage gRPC server running in this process.
pub struct StorageServer {
    pub addr: SocketAddr,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl StorageServer {
    /// Stops the server and waits until it has.
    pub async fn stop(self) {
        self.stop.cancel();
        self.task.await.unwrap();
    }
}

/// Starts storage on `addr` over `objects`, accepting keys under `prefix` (the development
/// identity stands in for ingest's certificate; loopback only).
pub async fn start_storage(
    dir: &Path,
    objects: &ObjectStoreConfig,
    prefix: &str,
    addr: SocketAddr,
) -> StorageServer {
    let config = kordon_storage::StorageConfig {
        objects: Some(objects.clone()),
        object_prefix: prefix.to_string(),
        http_listen: free_addr(),
        ..Default::default()
    };
    let storage = kordon_storage::Storage::open(&config, dir).await.unwrap();
    let common = CommonConfig {
        grpc_listen: addr,
        admin_listen: free_addr(),
        data_dir: dir.to_path_buf(),
        log: LogConfig::default(),
        tls: None,
        auth: AuthConfig::default(),
        dev_identity: true,
    };
    let server = GrpcServer::new("storage", &common)
        .unwrap()
        .add_service(kordon_storage::grpc_service(storage))
        .bind(addr)
        .await
        .unwrap();
    let stop = CancellationToken::new();
    let s = stop.clone();
    let task = tokio::spawn(async move {
        server.serve(Readiness::new(), s).await.unwrap();
    });
    StorageServer { addr, stop, task }
}
