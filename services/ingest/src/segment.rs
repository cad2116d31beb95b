//! The facts ingest records about a camera's time: a segment, a gap, or the point where a
//! recorder (re)starts. They are born in the [`crate::recorder`], written to the
//! [`crate::spool`] and registered by the [`crate::uploader`] in this one form.
//!
//! Guarantees:
//! - One time type, [`UnixMicros`] (wall-clock microseconds since the Unix epoch, the resolution
//!   the storage index keeps); conversion to `google.protobuf.Timestamp` is exact.
//! - Enums stay enums ([`GapReason`], [`Codec`]) and the hash stays raw bytes: nothing is turned
//!   into a string and parsed back on the way.
//! - Mapping to storage's requests happens here, once; a gap's detail is cut to what storage
//!   accepts ([`MAX_GAP_DETAIL_BYTES`], on a UTF-8 boundary) so a long error message can never
//!   make a gap unregistrable.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kordon_proto::common::v1 as common;
use kordon_proto::storage::v1 as spb;
use serde::{Deserialize, Serialize};

pub use crate::fmp4::Codec;

/// Storage refuses gap details longer than this (bytes of UTF-8).
pub const MAX_GAP_DETAIL_BYTES: usize = 1024;

/// Wall-clock time: microseconds since the Unix epoch (negative before it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct UnixMicros(pub i64);

impl UnixMicros {
    pub fn now() -> UnixMicros {
        UnixMicros::from_system_time(SystemTime::now())
    }

    /// Times before the epoch become the epoch.
    pub fn from_system_time(t: SystemTime) -> UnixMicros {
        UnixMicros(
            t.duration_since(UNIX_EPOCH)
                .map(|d| d.as_micros() as i64)
                .unwrap_or(0),
        )
    }

    /// Times before the epoch become the epoch.
    pub fn to_system_time(self) -> SystemTime {
        UNIX_EPOCH + Duration::from_micros(self.0.max(0) as u64)
    }

    pub fn to_timestamp(self) -> prost_types::Timestamp {
        kordon_proto::time::timestamp_from_micros(self.0)
    }

    /// `None` when the timestamp does not fit.
    pub fn from_timestamp(t: &prost_types::Timestamp) -> Option<UnixMicros> {
        kordon_proto::time::micros_from_timestamp(t).map(UnixMicros)
    }
}

impl std::fmt::Display for UnixMicros {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&kordon_objects::time::rfc3339_micros(self.0))
    }
}

/// Why a stretch of time has no recording.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GapReason {
    StreamLost,
    StreamError,
    IngestRestart,
    SpoolOverflow,
}

impl GapReason {
    /// For logs and metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            GapReason::StreamLost => "stream_lost",
            GapReason::StreamError => "stream_error",
            GapReason::IngestRestart => "ingest_restart",
            GapReason::SpoolOverflow => "spool_overflow",
        }
    }

    pub fn to_proto(self) -> spb::GapReason {
        match self {
            GapReason::StreamLost => spb::GapReason::StreamLost,
            GapReason::StreamError => spb::GapReason::StreamError,
            GapReason::IngestRestart => spb::GapReason::IngestRestart,
            GapReason::SpoolOverflow => spb::GapReason::SpoolOverflow,
        }
    }
}

fn codec_to_proto(c: Codec) -> common::VideoCodec {
    match c {
        Codec::H264 => common::VideoCodec::H264,
        Codec::H265 => common::VideoCodec::H265,
    }
}

/// One closed segment, as the recorder wrote it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentMeta {
    pub site: String,
    pub camera: String,
    /// The ingest replica that recorded it.
    pub replica: String,
    /// Wall-clock time of the first frame, and of the first frame after the segment.
    pub start: UnixMicros,
    pub end: UnixMicros,
    /// Bytes of the media file.
    pub size: u64,
    /// Bytes of its initialisation part (ftyp + moov).
    pub init_size: u64,
    /// SHA-256 of the media file, computed while writing it.
    pub sha256: [u8; 32],
    pub codec: Codec,
    pub width: u32,
    pub height: u32,
    /// Object key the media is stored under.
    pub object_key: String,
}

/// A stretch of a camera's time with no recording, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GapMeta {
    pub site: String,
    pub camera: String,
    pub replica: String,
    pub start: UnixMicros,
    pub end: UnixMicros,
    pub reason: GapReason,
    /// Ingest's words for the cause; no credentials.
    pub detail: String,
}

/// A recorder's first segment starts at `at`, and ingest does not know locally where this
/// camera's recording stopped before (an earlier run, another replica). The uploader asks
/// storage for the camera's chain head when this reaches the front of the queue — after every
/// earlier spooled record of the camera is registered — and registers the hole up to `at` as a
/// gap, however long storage takes to answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResumeMeta {
    pub site: String,
    pub camera: String,
    pub replica: String,
    pub at: UnixMicros,
}

/// What one spool entry holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Record {
    Segment(SegmentMeta),
    Gap(GapMeta),
    Resume(ResumeMeta),
}

impl Record {
    pub fn site(&self) -> &str {
        match self {
            Record::Segment(m) => &m.site,
            Record::Gap(m) => &m.site,
            Record::Resume(m) => &m.site,
        }
    }

    pub fn camera(&self) -> &str {
        match self {
            Record::Segment(m) => &m.camera,
            Record::Gap(m) => &m.camera,
            Record::Resume(m) => &m.camera,
        }
    }

    /// Where the record starts on the camera's timeline.
    pub fn start(&self) -> UnixMicros {
        match self {
            Record::Segment(m) => m.start,
            Record::Gap(m) => m.start,
            Record::Resume(m) => m.at,
        }
    }

    /// Bytes of media the record has in the spool.
    pub fn media_size(&self) -> u64 {
        match self {
            Record::Segment(m) => m.size,
            Record::Gap(_) | Record::Resume(_) => 0,
        }
    }
}

fn camera_ref(site: &str, camera: &str) -> Option<common::CameraRef> {
    Some(common::CameraRef {
        site: site.to_string(),
        camera: camera.to_string(),
    })
}

fn range(start: UnixMicros, end: UnixMicros) -> Option<common::TimeRange> {
    Some(common::TimeRange {
        start: Some(start.to_timestamp()),
        end: Some(end.to_timestamp()),
    })
}

/// `s` cut to at most `max` bytes, at a character boundary.
pub fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

impl SegmentMeta {
    pub fn register_request(&self) -> spb::RegisterSegmentRequest {
        spb::RegisterSegmentRequest {
            camera: camera_ref(&self.site, &self.camera),
            range: range(self.start, self.end),
            size_bytes: self.size,
            sha256: self.sha256.to_vec(),
            codec: codec_to_proto(self.codec) as i32,
            width: self.width,
            height: self.height,
            object_key: self.object_key.clone(),
            ingest_replica: self.replica.clone(),
            init_size: self.init_size,
        }
    }
}

impl GapMeta {
    pub fn register_request(&self) -> spb::RegisterGapRequest {
        spb::RegisterGapRequest {
            camera: camera_ref(&self.site, &self.camera),
            range: range(self.start, self.end),
            reason: self.reason.to_proto() as i32,
            detail: truncate_utf8(&self.detail, MAX_GAP_DETAIL_BYTES).to_string(),
            ingest_replica: self.replica.clone(),
        }
    }
}

impl ResumeMeta {
    pub fn chain_head_request(&self) -> spb::GetChainHeadRequest {
        spb::GetChainHeadRequest {
            camera: camera_ref(&self.site, &self.camera),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn records_round_trip_through_json_unchanged() {
        let seg = Record::Segment(SegmentMeta {
            site: "burgas".into(),
            camera: "pier-2".into(),
            replica: "ingest-0".into(),
            start: UnixMicros(1_700_000_000_123_456),
            end: UnixMicros(1_700_000_006_123_457),
            size: 1000,
            init_size: 100,
            sha256: [0xab; 32],
            codec: Codec::H265,
            width: 1920,
            height: 1080,
            object_key: "k".into(),
        });
        let gap = Record::Gap(GapMeta {
            site: "burgas".into(),
            camera: "pier-2".into(),
            replica: "ingest-0".into(),
            start: UnixMicros(1),
            end: UnixMicros(2),
            reason: GapReason::SpoolOverflow,
            detail: "full".into(),
        });
        for r in [seg, gap] {
            let json = serde_json::to_string(&r).unwrap();
            assert_eq!(serde_json::from_str::<Record>(&json).unwrap(), r, "{json}");
        }
        let json = serde_json::to_value(GapReason::IngestRestart).unwrap();
        assert_eq!(
            json, "ingest_restart",
            "enums are named in files, not numbered"
        );
    }

    #[test]
    fn the_register_request_carries_the_facts_exactly() {
        let m = SegmentMeta {
            site: "s".into(),
            camera: "c".into(),
            replica: "r".into(),
            start: UnixMicros(1_700_000_000_000_001),
            end: UnixMicros(1_700_000_006_000_002),
            size: 10,
            init_size: 5,
            sha256: std::array::from_fn(|i| i as u8),
            codec: Codec::H264,
            width: 1,
            height: 2,
            object_key: "k".into(),
        };
        let r = m.register_request();
        let range = r.range.unwrap();
        assert_eq!(
            UnixMicros::from_timestamp(&range.start.unwrap()),
            Some(m.start)
        );
        assert_eq!(UnixMicros::from_timestamp(&range.end.unwrap()), Some(m.end));
        assert_eq!(r.sha256, m.sha256.to_vec());
        assert_eq!(r.codec, common::VideoCodec::H264 as i32);
    }

    proptest! {
        #[test]
        fn gap_details_fit_storage_and_cut_on_a_char_boundary(s in "\\PC{0,700}") {
            let g = GapMeta {
                site: "s".into(),
                camera: "c".into(),
                replica: "r".into(),
                start: UnixMicros(1),
                end: UnixMicros(2),
                reason: GapReason::StreamError,
                detail: s.clone(),
            };
            let d = g.register_request().detail;
            prop_assert!(d.len() <= MAX_GAP_DETAIL_BYTES);
            prop_assert!(s.starts_with(&d));
            if s.len() <= MAX_GAP_DETAIL_BYTES {
                prop_assert_eq!(d, s);
            } else {
                // As much as fits: the next character would not have.
                let next = s[d.len()..].chars().next().map(char::len_utf8).unwrap_or(0);
                prop_assert!(d.len() + next > MAX_GAP_DETAIL_BYTES);
            }
        }
    }
}
