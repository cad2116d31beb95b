//! The index: segments, gaps and their per-camera hash chain, in SQLite or PostgreSQL.
//!
//! This module holds the records; the SQL that stores and reads them is in [`crate::db`]
//! ([`Index`] is re-exported here).
//!
//! Guarantees:
//! - Registrations are idempotent: a segment by (site, camera, sha256), a gap by (site, camera,
//!   start). A retry returns the stored record; the same key with different fields is
//!   [`StorageError::AlreadyExists`](crate::StorageError::AlreadyExists).
//! - Each camera's records get gapless sequence numbers, even under concurrent registration:
//!   a registration reads the chain head, inserts the record and moves the head with a
//!   conditional update inside one transaction; a writer that lost the race (unique violation,
//!   head moved, serialization failure) rolls back and retries.
//! - Times are `i64` microseconds since the Unix epoch. Segments are at most
//!   [`MAX_SEGMENT_US`] long, which keeps "segments overlapping [from, to)" a bounded range scan
//!   of the `(site, camera, start_us)` index however many rows there are.

use kordon_objects::time::MICROS;

use crate::chain::{ChainRecord, RecordKind};

pub use crate::db::Index;

/// Longest segment accepted (10 minutes).
pub const MAX_SEGMENT_US: i64 = 600 * MICROS;

/// A record that names an object key (see [`Index::object_users`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ObjectUser {
    Segment {
        site: String,
        camera: String,
        sha256: Vec<u8>,
    },
    Rendition {
        site: String,
        camera: String,
        source_sequence: i64,
        profile: String,
    },
    Snapshot {
        site: String,
        camera: String,
    },
}

/// A segment to register.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSegment {
    pub site: String,
    pub camera: String,
    pub start_us: i64,
    pub end_us: i64,
    pub size_bytes: u64,
    pub sha256: [u8; 32],
    /// Bytes of ftyp+moov at the start of the object (offset of the first moof).
    pub init_size: u64,
    /// `kordon.common.v1.VideoCodec` value.
    pub codec: i32,
    pub width: u32,
    pub height: u32,
    pub object_key: String,
    pub ingest_replica: String,
}

/// A stored segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentRecord {
    pub site: String,
    pub camera: String,
    pub sequence: u64,
    pub start_us: i64,
    pub end_us: i64,
    pub size_bytes: u64,
    pub sha256: [u8; 32],
    pub init_size: u64,
    pub codec: i32,
    pub width: u32,
    pub height: u32,
    pub object_key: String,
    pub ingest_replica: String,
    pub prev_hash: [u8; 32],
    pub record_hash: [u8; 32],
    pub registered_at_us: i64,
    /// Set when retention deleted the object (the record stays as a tombstone).
    pub deleted_at_us: Option<i64>,
}

impl SegmentRecord {
    pub fn chain_record(&self) -> ChainRecord {
        ChainRecord {
            kind: RecordKind::Segment,
            site: self.site.clone(),
            camera: self.camera.clone(),
            sequence: self.sequence,
            start_us: self.start_us,
            end_us: self.end_us,
            size_bytes: self.size_bytes,
            sha256: self.sha256,
            object_key: self.object_key.clone(),
            gap_reason: 0,
            prev_hash: self.prev_hash,
            record_hash: self.record_hash,
        }
    }

    pub(crate) fn same_registration(&self, s: &NewSegment) -> bool {
        self.start_us == s.start_us
            && self.end_us == s.end_us
            && self.size_bytes == s.size_bytes
            && self.object_key == s.object_key
    }
}

/// A span of time a camera was not recorded, to register.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewGap {
    pub site: String,
    pub camera: String,
    pub start_us: i64,
    pub end_us: i64,
    /// `kordon.storage.v1.GapReason` value.
    pub reason: u32,
    pub detail: String,
    pub ingest_replica: String,
}

/// A stored gap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GapRecord {
    pub site: String,
    pub camera: String,
    pub sequence: u64,
    pub start_us: i64,
    pub end_us: i64,
    pub reason: u32,
    pub detail: String,
    pub ingest_replica: String,
    pub prev_hash: [u8; 32],
    pub record_hash: [u8; 32],
    pub registered_at_us: i64,
}

impl GapRecord {
    pub fn chain_record(&self) -> ChainRecord {
        ChainRecord {
            kind: RecordKind::Gap,
            site: self.site.clone(),
            camera: self.camera.clone(),
            sequence: self.sequence,
            start_us: self.start_us,
            end_us: self.end_us,
            size_bytes: 0,
            sha256: [0; 32],
            object_key: String::new(),
            gap_reason: self.reason,
            prev_hash: self.prev_hash,
            record_hash: self.record_hash,
        }
    }

    pub(crate) fn same_registration(&self, g: &NewGap) -> bool {
        self.end_us == g.end_us && self.reason == g.reason
    }
}

/// The result of a registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registered<T> {
    pub record: T,
    /// False when an identical record was already stored (nothing changed).
    pub created: bool,
}

/// The latest record of a camera's chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainHead {
    pub sequence: u64,
    pub hash: [u8; 32],
    /// Latest end time over all the camera's records.
    pub recorded_until_us: i64,
}

/// Records of one stretch of a chain, for verification.
#[derive(Debug, Clone, Default)]
pub struct ChainBatch {
    /// Segments and gaps, by sequence.
    pub records: Vec<ChainRecord>,
    /// The segment rows (with object keys and tombstones), by sequence.
    pub segments: Vec<SegmentRecord>,
    pub gap_count: u64,
    /// The gap rows (with their details), by sequence.
    pub gaps: Vec<GapRecord>,
}
