//! Kordon ingest: records camera streams into object storage.
//!
//! Per camera, one tokio task ([`camera`]) pulls the RTSP record stream (H.264 or H.265, TCP or
//! UDP, B-frames) without decoding through one [`kordon_media::Source`] (the acquisition layer
//! detection shares): the `retina` crate, or GStreamer's `rtspsrc` for what retina cannot do
//! (`rtsps://`); the [`recorder`] cuts it at
//! keyframes into self-contained fragmented-MP4 segments (default 6 s), hashing every byte as it is written, into the local [`spool`]; the
//! [`uploader`] stores each segment in object storage under the documented key layout
//! (`kordon_objects::segment_key`) and registers it with the storage service, in order per
//! camera. A broken or stalled stream is reconnected with capped exponential backoff, and the
//! hole is registered as a gap with its reason — never hidden. While object storage or the
//! storage service is unreachable, segments wait in the bounded spool and drain when it returns;
//! a full spool refuses new footage loudly (metric and log) and keeps what it holds. A record
//! storage refuses for good is moved, media and all, to the spool's dead-letter folder with its
//! reason, and its camera's queue goes on. A segment's facts keep one form, [`segment`]'s
//! `SegmentMeta`, from the recorder to the registration. Shutdown
//! closes every open segment and drains the spool for a grace period; what is left is picked up
//! at the next start.
//!
//! The set of cameras ([`Ingest::apply`]) can change at run time without touching the others.
//! Status per camera is served over gRPC ([`grpc::IngestApi`]), metrics per site.

pub mod camera;
pub mod config;
pub mod error;
/// The segment writer moved to the acquisition layer (transcode writes renditions with it too).
pub use kordon_media::fmp4;
pub mod grpc;
pub mod metrics;
pub mod placement;
pub mod recorder;
pub mod segment;
pub mod service;
pub mod spool;
pub mod status;
pub mod uploader;

pub use error::IngestError;
pub use grpc::IngestApi;
pub use service::{ApplyOutcome, Destinations, Ingest};

use kordon_proto::ingest::v1::ingest_service_server::IngestServiceServer;

/// The name of this service in logs, metrics and `WhoAmI`.
pub const NAME: &str = "ingest";

/// The tonic service to add to a server.
pub fn grpc_service(api: IngestApi) -> IngestServiceServer<IngestApi> {
    IngestServiceServer::new(api)
}
