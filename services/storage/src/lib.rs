//! Kordon storage: the system of record for footage, evidence and the access log.
//!
//! # Entry points (for the `kordon` binary)
//! ```ignore
//! let storage = kordon_storage::Storage::open(&config.storage, &common.data_dir).await?;
//! server.add_service(kordon_storage::grpc_service(storage.clone()));   // on the gRPC server
//! let http = kordon_storage::http_router(storage.clone());              // on storage.http_listen
//! tokio::spawn(storage.run_retention(shutdown.cancelled_owned()));       // retention sweeps
//! ```
//! [`Storage::open`] validates the [`StorageConfig`], connects to the index (SQLite by
//! default, PostgreSQL in production) and runs its migrations, builds the object store and
//! loads its keys. [`serve_http`] serves the playback router until a shutdown future resolves.
//!
//! # What it guarantees
//! - Segments and gaps are indexed per camera in a hash chain ([`chain`]): each record commits
//!   to the previous one, sequences are gapless even under concurrent registration, and
//!   registration is idempotent ([`index`]).
//! - Every footage read is authorised, needs a stated reason, and is appended to the
//!   hash-chained access log ([`audit`]) before anything is returned ([`grpc`]).
//! - Playback URLs are short-lived HMAC-signed grants for one camera and range — of the
//!   original segments, or of one rendition profile, never both; the HTTP side serves HLS
//!   playlists and byte ranges of them ([`playback`], [`http`]).
//! - Verification walks a chain and reports missing, altered and reordered records, and
//!   missing or altered objects, precisely ([`service::Storage::verify_chain`]).
//! - Retention deletes footage older than the site's or camera's policy, never footage on an
//!   active legal hold; each deletion is logged first and leaves a tombstone in the chain
//!   ([`retention`]). Spawn [`Storage::run_retention`] beside the servers.
//! - An evidence bundle holds the original segments byte for byte; with `rendering` it also
//!   holds viewer copies made by the transcode service ([`viewer`], [`transcode`]), listed and
//!   hashed apart from the originals and never presented as evidence ([`evidence`]). Configure
//!   `transcode:` (or call [`Storage::set_viewer_copies`]) for them.
//! - Footage reaches a partner installation only through a footage grant that this site's
//!   people approved, as one evidence bundle signed with the site's key; footage received from
//!   a partner is kept only once it verified with the partner's pinned key ([`grants`]). With
//!   partners configured, spawn [`grpc::poll_partner_grants`] beside the servers.
//!
//! # Layout
//! [`config`] (configuration), [`db`] (the index database: migrations and every SQL
//! statement), [`index`], [`audit`], [`retention`] and [`grants`] (the records in it and the
//! operations on them), [`chain`], [`recordings`] and [`playback`] (pure logic), [`service`]
//! (domain operations over index and objects), [`evidence`] and [`viewer`] (bundles and their
//! viewer copies), [`grpc`] and [`http`] (transport), [`transcode`] (the client of the
//! transcode service), [`keys`], [`metrics`].

pub mod agreements;
pub mod audit;
pub mod chain;
pub mod config;
pub mod db;
pub mod error;
pub mod evidence;
pub mod gateway;
pub mod grants;
pub mod grpc;
pub mod http;
pub mod index;
pub mod keys;
pub mod media;
pub mod metrics;
pub mod playback;
pub mod recordings;
pub mod retention;
pub mod service;
pub mod transcode;
pub mod viewer;

pub use config::StorageConfig;
pub use error::StorageError;
pub use grpc::StorageApi;
pub use index::Index;
pub use service::{Storage, StorageOptions};

use kordon_proto::storage::v1::storage_service_server::StorageServiceServer;

/// The name of this service in logs, metrics and `WhoAmI`.
pub const NAME: &str = "storage";

/// The tonic service to add to a `kordon_runtime::server::GrpcServer`.
pub fn grpc_service(storage: Storage) -> StorageServiceServer<StorageApi> {
    grpc::service(storage)
}

/// The playback HTTP router (HLS playlists and media); serve it on `StorageConfig::http_listen`.
pub fn http_router(storage: Storage) -> axum::Router {
    http::router(storage)
}

/// Serves [`http_router`] on `listener` until `shutdown` resolves, then drains requests in
/// flight.
pub async fn serve_http(
    storage: Storage,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "storage playback HTTP listening");
    }
    kordon_runtime::http::serve(
        listener,
        http_router(storage),
        shutdown,
        kordon_runtime::http::HttpLimits::default(),
    )
    .await
}

/// [`serve_http`] over TLS (the process's certificate): how playback is served off loopback
/// whenever the process has a certificate.
pub async fn serve_https(
    storage: Storage,
    listener: kordon_runtime::tls::TlsListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    if let Ok(addr) = axum::serve::Listener::local_addr(&listener) {
        tracing::info!(%addr, "storage playback HTTPS listening");
    }
    kordon_runtime::http::serve(
        listener,
        http_router(storage),
        shutdown,
        kordon_runtime::http::HttpLimits::default(),
    )
    .await
}
