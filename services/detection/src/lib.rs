//! Kordon detection: people and vehicles on every camera — motion-gated, batched, tracked,
//! with zones and lines.
//!
//! Per camera ([`camera`]): the detect stream comes through the same acquisition layer as
//! ingest (`kordon-media`: retina, or GStreamer for `rtsps://`), is decoded with GStreamer
//! (`decodebin`, hardware decoders where present) and scaled at the camera's analysis rate;
//! motion gating (`kordon-vision`) skips idle frames; frames with motion, or with tracked
//! objects still present, go to the process's one object detector (`kordon-infer`: NanoDet-m
//! through ONNX Runtime, batched across cameras); a ByteTrack-style tracker, filters, zones and
//! lines turn boxes into tracked objects and events ([`store`]d, streamed by the [`hub`], with
//! JPEG [`snapshot`]s registered with storage); stored detections are [`link`]ed to the
//! recorded segment their frame lies in once storage has it.
//!
//! The set of cameras ([`service::Detection::apply`]) changes at run time; a config change that
//! keeps the stream applies from the next frame. The gRPC surface is
//! `kordon.detection.v1.DetectionService` ([`grpc::DetectionApi`]).

pub mod camera;
pub mod config;
pub mod error;
pub mod grpc;
pub mod hub;
pub mod link;
pub mod metrics;
pub mod service;
pub mod settings;
pub mod snapshot;
pub mod status;
pub mod store;

pub use error::DetectionError;
pub use grpc::DetectionApi;
pub use service::{Destinations, Detection};

use kordon_proto::detection::v1::detection_service_server::DetectionServiceServer;

/// The name of this service in logs, metrics and `WhoAmI`.
pub const NAME: &str = "detection";

/// The tonic service to add to a server.
pub fn grpc_service(api: DetectionApi) -> DetectionServiceServer<DetectionApi> {
    DetectionServiceServer::new(api)
}
