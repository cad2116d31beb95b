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
//! - [`client`]: connecting to a Kordon server with credentials and trace context.
//! - [`shutdown`]: one signal (SIGTERM or Ctrl-C) that drains everything.

pub mod admin;
pub mod auth;
pub mod client;
pub mod config;
pub mod error;
pub mod metrics;
pub mod server;
pub mod shutdown;
pub mod telemetry;

pub use error::RuntimeError;

/// The version every Kordon binary reports.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
