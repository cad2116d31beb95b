//! What every Kordon process shares.
//!
//! - [`config`]: typed configuration from a YAML file, `KORDON_*` environment variables and
//!   command-line flags, validated before anything starts.
//! - [`telemetry`]: `tracing` to stderr, and to an OTLP collector when
//!   `OTEL_EXPORTER_OTLP_ENDPOINT` is set; W3C trace context carried over gRPC.
//! - [`metrics`]: one Prometheus registry per process.
//! - [`admin`]: the admin HTTP port (`/live`, `/ready`, `/metrics`).
//! - [`auth`]: who is calling (JWT, mTLS, or the local development identity) and what they may
//!   do on which site. Authorisation decisions are made only in [`auth::authorize`].
//! - [`server`]: the gRPC server every service runs on: health, reflection, the identity
//!   service, authentication, tracing and metrics in one place.
//! - [`partner`]: partner installations, their agreements and the partner link (mTLS).
//! - [`client`]: connecting to a Kordon server with credentials and trace context.
//! - [`shutdown`]: one signal (SIGTERM or Ctrl-C) that drains everything.
//! - [`watch`]: a bound on the open streams of each `Watch*` RPC.

pub mod admin;
pub mod auth;
pub mod client;
pub mod config;
pub mod error;
pub mod http;
pub mod metrics;
pub mod partner;
pub mod server;
pub mod shutdown;
pub mod telemetry;
pub mod tls;
pub mod watch;

pub use error::RuntimeError;

/// Selects ring as the process's TLS crypto provider, once. Needed because the dependency tree
/// enables both of rustls's providers (object_store's S3 client brings aws-lc-rs), and rustls
/// then refuses to guess. Called by every server and client constructor; safe to call again.
pub fn install_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // An error means another provider was installed first, which is just as good.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// The version every Kordon binary reports.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
