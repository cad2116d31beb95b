//! Kordon's object storage, shared by ingest (which writes segments) and storage (which indexes,
//! serves, verifies and deletes them).
//!
//! - [`ObjectStoreConfig`] and [`build`]: one typed configuration for an S3-compatible bucket,
//!   a local directory, or memory (tests), turned into an `Arc<dyn ObjectStore>`.
//! - [`segment_key`]: the documented key layout of segment objects.
//! - [`put_immutable`]: the only way Kordon writes evidence. It never overwrites: a retry of
//!   the same bytes succeeds without writing, different bytes under an existing key fail.
//! - [`time`]: UTC calendar arithmetic for keys and playlists (no time-zone database needed).
//! - [`s3raw`]: the few signed S3 calls `object_store` lacks (bucket with Object Lock, a
//!   version's retention, deleting a version), for tests and setup tools.
//! - [`testenv`]: how tests find real parts (`KORDON_TEST_S3_*`): skipped with a notice
//!   locally, a failure when `CI` is set.
//!
//! # Object Lock
//! Where the S3 configuration has `object_lock`, every object written through the built store
//! carries `x-amz-object-lock-mode` and `x-amz-object-lock-retain-until-date` (see
//! [`lock`]), so the store itself refuses deletion of that object version until the date, on
//! top of any default retention the bucket has. The bucket must have been created with Object
//! Lock enabled.

pub mod config;
pub mod error;
pub mod immutable;
pub mod key;
pub mod lock;
pub mod s3raw;
pub mod testenv;
pub mod time;

pub use config::{ObjectLockConfig, ObjectLockMode, ObjectStoreConfig, build, build_local};
pub use error::ObjectsError;
pub use immutable::{Check, PutOutcome, link_immutable, put_immutable, sha256};
pub use key::{
    camera_folder, in_camera_folder, rendition_key, segment_key, still_key, validate_name,
    validate_prefix,
};

/// Re-exported so users need not depend on `object_store` directly for the common types.
pub use object_store::{self, ObjectStore, ObjectStoreExt, path::Path as ObjectPath};
