//! The transcode service: jobs that re-encode stored footage, resumable and idempotent.
//!
//! Three kinds of job, each over a camera and a time range:
//! - **renditions** — every segment re-encoded to a lower bitrate and size, registered with
//!   storage under a profile and playable through storage's HLS like the originals (for
//!   partners across the border and weak links);
//! - **thumbnails** — a JPEG per segment (or every N seconds) for the timeline, registered with
//!   storage; optionally made for every new segment without a job ([`auto`]);
//! - **viewer copies** (exports) — the time and camera burned in, privacy masks and, optionally,
//!   every detected person pixelated: the one form in which footage leaves masked. Storage adds
//!   them to evidence bundles beside the untouched originals.
//!
//! Jobs live in SQLite or PostgreSQL ([`store`]); a process runs `workers` of them at once
//! ([`service`]); pipelines are GStreamer's, with hardware encoders where present
//! ([`pipeline`]). Originals are never modified: every output is a new, hashed object.
//!
//! - [`config`] — the `transcode:` section.
//! - [`spec`] — submitted specs, checked.
//! - [`overlay`] — burned-in text and pixelation.
//! - [`grpc`] — `kordon.transcode.v1.TranscodeService`.
//! - [`metrics`] — `kordon_transcode_*`.

pub mod auto;
pub mod config;
pub mod error;
pub mod grpc;
pub mod metrics;
pub mod overlay;
pub mod pipeline;
pub mod service;
pub mod spec;
pub mod store;

use kordon_proto::transcode::v1::transcode_service_server::TranscodeServiceServer;

pub use config::TranscodeConfig;
pub use error::TranscodeError;
pub use grpc::TranscodeApi;
pub use service::{Destinations, Transcode};

/// The name of this service in logs, metrics and `WhoAmI`.
pub const NAME: &str = "transcode";

/// The tonic service to add to a server.
pub fn grpc_service(api: TranscodeApi) -> TranscodeServiceServer<TranscodeApi> {
    TranscodeServiceServer::new(api)
}
