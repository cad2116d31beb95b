//! Fragmented-MP4 (ISO BMFF) segment writer for one H.264 or H.265 video track.
//!
//! A segment is one self-contained file: `ftyp` + `moov` (one video track, `mvex`/`trex`, empty
//! sample tables) followed by one or more `moof` + `mdat` fragments. Samples are written exactly
//! as the camera sent them (no re-encoding, no start-code rewriting).
//!
//! # What the writer guarantees
//! - Every byte goes through SHA-256 as it is written; [`SegmentSummary::sha256`] is the digest of
//!   exactly the bytes handed to the output, and [`SegmentSummary::size`] their count.
//! - [`SegmentSummary::init_size`] is the length of `ftyp` + `moov`, i.e. the offset of the first
//!   `moof` (for HLS `EXT-X-MAP:BYTERANGE`).
//! - The first sample is a keyframe, DTS strictly increase, and every sample's size, duration and
//!   composition offset fits its field; anything else is refused with a specific
//!   [`Fmp4Error`] *before* anything is written, and the writer stays usable.
//! - After an I/O error the output holds a partial segment; every later call then fails with
//!   [`Fmp4Error::Failed`] rather than append to it.
//!
//! # Timeline
//! Each segment's media timeline starts at its base decode time (0 with [`SegmentWriter::new`],
//! any value with [`SegmentWriter::new_at`]): the `tfdt` of a fragment is the base plus the DTS of
//! its first sample **minus the DTS of the segment's first sample**.
//! Composition offsets in `trun` (version 1, signed) are `pts - dts`, so a sample is presented at
//! `pts - first_dts`; with B-frames the first picture is therefore presented slightly after 0 (no
//! edit list is written). [`SegmentSummary::first_dts`]/[`SegmentSummary::first_pts`] map the
//! segment back onto the camera's clock. Fragments are numbered from 1 in each segment (`mfhd`).
//!
//! # What the writer assumes
//! - Timestamps are already in the track's timescale ([`ns_to_timescale`] converts GStreamer
//!   nanoseconds).
//! - Sample data is one access unit of 4-byte length-prefixed NAL units (GStreamer
//!   `stream-format=avc`/`hvc1`, `alignment=au`) and `codec_data` is the matching `avcC`/`hvcC`
//!   record with the parameter sets in it (`avc1`/`hvc1` sample entries).
//! - The caller cuts fragments: each [`SegmentWriter::push`] holds back the newest sample until
//!   its duration is known, so pushing a keyframe and then calling
//!   [`SegmentWriter::flush_fragment`] writes exactly the GOP before it.
//! - The output gets many small writes (one per sample, plus one per fragment header); give it a
//!   `BufWriter` when it is a file or socket.

use std::io::{self, Write};

use bytes::Bytes;
use sha2::{Digest, Sha256};

/// The track ID of the one video track.
const TRACK_ID: u32 = 1;

/// `sample_flags` of a sync sample: `sample_depends_on = 2` (depends on no other sample).
const SYNC_SAMPLE_FLAGS: u32 = 0x0200_0000;
/// `sample_flags` of a non-sync sample: `sample_depends_on = 1`, `sample_is_non_sync_sample`.
const NON_SYNC_SAMPLE_FLAGS: u32 = 0x0101_0000;

/// `tfhd` flag: offsets are relative to the start of the enclosing `moof`.
const TFHD_DEFAULT_BASE_IS_MOOF: u32 = 0x02_0000;
/// `trun` flags: data offset, and per-sample duration, size, flags and composition offset.
const TRUN_FLAGS: u32 = 0x00_0001 | 0x00_0100 | 0x00_0200 | 0x00_0400 | 0x00_0800;

/// The unity matrix of `mvhd`/`tkhd`.
const MATRIX: [u32; 9] = [0x0001_0000, 0, 0, 0, 0x0001_0000, 0, 0, 0, 0x4000_0000];

/// The track's codec and format are the acquisition layer's own types, carried unchanged.
pub use crate::{Codec, TrackConfig};

/// The sample entry of a codec's track.
fn sample_entry(codec: Codec) -> &'static [u8; 4] {
    match codec {
        Codec::H264 => b"avc1",
        Codec::H265 => b"hvc1",
    }
}

/// The box holding a codec's decoder configuration record.
fn config_box(codec: Codec) -> &'static [u8; 4] {
    match codec {
        Codec::H264 => b"avcC",
        Codec::H265 => b"hvcC",
    }
}

/// One access unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    /// Decode timestamp in timescale units; strictly increasing within a segment.
    pub dts: u64,
    /// Presentation timestamp in timescale units; `pts - dts` must fit in an `i32`.
    pub pts: u64,
    /// Whether the sample is a sync sample (IDR/IRAP): GStreamer's "not `DELTA_UNIT`".
    pub keyframe: bool,
    /// 4-byte length-prefixed NAL units, as `stream-format=avc`/`hvc1` gives them.
    pub data: Bytes,
}

/// What a finished segment holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentSummary {
    /// Bytes written, `ftyp` to the last `mdat`.
    pub size: u64,
    /// SHA-256 of those bytes.
    pub sha256: [u8; 32],
    /// Bytes of `ftyp` + `moov`: the offset of the first `moof`.
    pub init_size: u64,
    /// Number of samples.
    pub samples: u64,
    /// DTS of the first sample on the caller's clock (timescale units); the segment's time 0.
    pub first_dts: u64,
    /// PTS of the first sample (decode order) on the caller's clock.
    pub first_pts: u64,
    /// Sum of the sample durations (timescale units).
    pub duration: u64,
    /// Number of sync samples.
    pub keyframes: u64,
}

impl SegmentSummary {
    /// The digest as lowercase hex.
    pub fn sha256_hex(&self) -> String {
        hex::encode(self.sha256)
    }
}

/// Why a segment could not be written.
#[derive(Debug, thiserror::Error)]
pub enum Fmp4Error {
    #[error("writing the segment: {0}")]
    Io(#[from] io::Error),
    #[error("the first sample of a segment must be a keyframe")]
    FirstSampleNotKeyframe,
    #[error("sample DTS {dts} does not follow the previous DTS {previous}")]
    NonMonotonicDts { previous: u64, dts: u64 },
    #[error("invalid codec data: {0}")]
    InvalidCodecData(String),
    #[error("invalid track: {0}")]
    InvalidTrack(String),
    #[error("invalid sample at DTS {dts}: {reason}")]
    InvalidSample { dts: u64, reason: &'static str },
    #[error("sample duration {duration} at DTS {dts} does not fit in 32 bits")]
    DurationOutOfRange { dts: u64, duration: u64 },
    #[error("composition offset of the sample at DTS {dts} (PTS {pts}) does not fit in 32 bits")]
    CompositionOffsetOutOfRange { dts: u64, pts: u64 },
    #[error("fragment too large for its box fields")]
    FragmentTooLarge,
    #[error("an earlier write failed; the segment is incomplete")]
    Failed,
}

/// Converts a GStreamer timestamp (nanoseconds) to `timescale` units, rounding to the nearest
/// tick (so that 1/29.97 s frames at 90 kHz come out as 3003 every time); saturates.
pub fn ns_to_timescale(ns: u64, timescale: u32) -> u64 {
    let ticks = (u128::from(ns) * u128::from(timescale) + 500_000_000) / 1_000_000_000;
    u64::try_from(ticks).unwrap_or(u64::MAX)
}

/// Writes one segment; see the module docs.
pub struct SegmentWriter<W: Write> {
    out: HashingWriter<W>,
    init_size: u64,
    /// DTS and PTS of the segment's first sample, once there is one.
    first: Option<(u64, u64)>,
    /// The newest sample; its duration is known at the next push or at finish.
    pending: Option<PendingSample>,
    /// Samples with known durations, not yet written.
    fragment: Vec<FragmentSample>,
    /// `mfhd` sequence number of the next fragment.
    sequence: u32,
    /// `sequence` before the first fragment.
    first_sequence: u32,
    samples: u64,
    keyframes: u64,
    /// Sum of the durations assigned so far.
    duration: u64,
    /// The most recent sample-to-sample interval, for `finish(0)`.
    last_interval: Option<u32>,
    /// Reused `moof` + `mdat` header buffer.
    header: Vec<u8>,
    failed: bool,
    /// Decode time of the segment's first sample (timescale units).
    base_decode_time: u64,
}

struct PendingSample {
    dts: u64,
    cts_offset: i32,
    flags: u32,
    data: Bytes,
}

struct FragmentSample {
    duration: u32,
    cts_offset: i32,
    flags: u32,
    data: Bytes,
}

impl<W: Write> std::fmt::Debug for SegmentWriter<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SegmentWriter")
            .field("bytes_written", &self.out.written)
            .field("init_size", &self.init_size)
            .field("samples", &self.samples)
            .field("buffered", &self.fragment.len())
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}

impl<W: Write> SegmentWriter<W> {
    /// Validates the track and writes `ftyp` + `moov` to `out` at once.
    pub fn new(out: W, track: &TrackConfig) -> Result<Self, Fmp4Error> {
        Self::new_at(out, track, 0)
    }

    /// Like [`SegmentWriter::new`], but the segment's timeline starts at `base_decode_time`
    /// (timescale units) instead of 0, so consecutive segments of a recording continue one
    /// timeline and players can play them back to back without a discontinuity.
    pub fn new_at(out: W, track: &TrackConfig, base_decode_time: u64) -> Result<Self, Fmp4Error> {
        validate_track(track)?;
        let mut init = Vec::with_capacity(1024 + track.codec_data.len());
        write_init(&mut init, track)?;
        let mut out = HashingWriter::new(out);
        out.write_all(&init)?;
        Ok(SegmentWriter {
            out,
            init_size: init.len() as u64,
            first: None,
            pending: None,
            fragment: Vec::new(),
            sequence: 1,
            first_sequence: 1,
            samples: 0,
            keyframes: 0,
            duration: 0,
            last_interval: None,
            header: Vec::new(),
            failed: false,
            base_decode_time,
        })
    }

    /// Numbers this segment's fragments (`mfhd`) from `first` instead of 1: a file assembled
    /// from several writers' fragments (one `moov`, then each writer's `moof`/`mdat`) keeps one
    /// increasing sequence.
    pub fn first_fragment(mut self, first: u32) -> Self {
        self.sequence = first.max(1);
        self.first_sequence = self.sequence;
        self
    }

    /// Fragments written so far.
    pub fn fragments(&self) -> u32 {
        self.sequence.wrapping_sub(self.first_sequence)
    }

    /// Adds a sample. The first sample of a segment must be a keyframe and DTS must strictly
    /// increase; a refused sample changes nothing.
    pub fn push(&mut self, sample: Sample) -> Result<(), Fmp4Error> {
        if self.failed {
            return Err(Fmp4Error::Failed);
        }
        let Sample {
            dts,
            pts,
            keyframe,
            data,
        } = sample;
        validate_sample_data(dts, &data)?;
        let cts_offset = i32::try_from(i128::from(pts) - i128::from(dts))
            .map_err(|_| Fmp4Error::CompositionOffsetOutOfRange { dts, pts })?;
        let interval = match &self.pending {
            None if !keyframe => return Err(Fmp4Error::FirstSampleNotKeyframe),
            None => None,
            Some(previous) if dts <= previous.dts => {
                return Err(Fmp4Error::NonMonotonicDts {
                    previous: previous.dts,
                    dts,
                });
            }
            Some(previous) => {
                let duration = dts - previous.dts;
                Some(
                    u32::try_from(duration)
                        .map_err(|_| Fmp4Error::DurationOutOfRange { dts, duration })?,
                )
            }
        };

        let next = PendingSample {
            dts,
            cts_offset,
            flags: if keyframe {
                SYNC_SAMPLE_FLAGS
            } else {
                NON_SYNC_SAMPLE_FLAGS
            },
            data,
        };
        // `interval` is Some exactly when there was a pending sample: it now has its duration.
        match (self.pending.replace(next), interval) {
            (Some(previous), Some(interval)) => self.buffer(previous, interval),
            _ => self.first = Some((dts, pts)),
        }
        self.samples += 1;
        self.keyframes += u64::from(keyframe);
        Ok(())
    }

    /// Writes the buffered samples — all pushed samples but the newest — as one `moof` + `mdat`
    /// fragment. No-op when there are none.
    pub fn flush_fragment(&mut self) -> Result<(), Fmp4Error> {
        if self.failed {
            return Err(Fmp4Error::Failed);
        }
        if self.fragment.is_empty() {
            return Ok(());
        }
        let result = self.write_fragment();
        if result.is_err() {
            self.failed = true;
        }
        result
    }

    /// Gives the newest sample `last_duration` (0: the previous sample's duration, or 0 for a
    /// one-sample segment), writes what is buffered, flushes `out` and returns it with the summary.
    /// A segment with no samples is just `ftyp` + `moov`, with `samples == 0`.
    pub fn finish(mut self, last_duration: u32) -> Result<(W, SegmentSummary), Fmp4Error> {
        if self.failed {
            return Err(Fmp4Error::Failed);
        }
        if let Some(last) = self.pending.take() {
            let duration = match last_duration {
                0 => self.last_interval.unwrap_or(0),
                d => d,
            };
            self.buffer(last, duration);
        }
        self.flush_fragment()?;
        self.out.inner.flush()?;
        let (first_dts, first_pts) = self.first.unwrap_or((0, 0));
        let summary = SegmentSummary {
            size: self.out.written,
            sha256: self.out.hasher.finalize().into(),
            init_size: self.init_size,
            samples: self.samples,
            first_dts,
            first_pts,
            duration: self.duration,
            keyframes: self.keyframes,
        };
        Ok((self.out.inner, summary))
    }

    /// Bytes handed to the output so far (buffered samples not included).
    pub fn bytes_written(&self) -> u64 {
        self.out.written
    }

    /// Timescale units from the first sample's DTS to the newest sample's DTS.
    pub fn duration_so_far(&self) -> u64 {
        match (&self.first, &self.pending) {
            (Some((first_dts, _)), Some(last)) => last.dts - first_dts,
            _ => 0,
        }
    }

    fn buffer(&mut self, sample: PendingSample, duration: u32) {
        self.duration += u64::from(duration);
        self.last_interval = Some(duration);
        self.fragment.push(FragmentSample {
            duration,
            cts_offset: sample.cts_offset,
            flags: sample.flags,
            data: sample.data,
        });
    }

    fn write_fragment(&mut self) -> Result<(), Fmp4Error> {
        // tfdt: the fragment's first DTS relative to the segment's first DTS, i.e. the durations
        // of every sample before it (`duration` counts the buffered ones too).
        let buffered: u64 = self.fragment.iter().map(|s| u64::from(s.duration)).sum();
        let base_decode_time = self.base_decode_time + (self.duration - buffered);
        let payload: u64 = self.fragment.iter().map(|s| s.data.len() as u64).sum();

        let header = &mut self.header;
        header.clear();
        let moof = begin(header, b"moof");
        let mfhd = begin_full(header, b"mfhd", 0, 0);
        put_u32(header, self.sequence);
        end(header, mfhd)?;
        let traf = begin(header, b"traf");
        let tfhd = begin_full(header, b"tfhd", 0, TFHD_DEFAULT_BASE_IS_MOOF);
        put_u32(header, TRACK_ID);
        end(header, tfhd)?;
        let tfdt = begin_full(header, b"tfdt", 1, 0);
        put_u64(header, base_decode_time);
        end(header, tfdt)?;
        let trun = begin_full(header, b"trun", 1, TRUN_FLAGS);
        let count = u32::try_from(self.fragment.len()).map_err(|_| Fmp4Error::FragmentTooLarge)?;
        put_u32(header, count);
        let data_offset_at = header.len();
        put_u32(header, 0);
        header.reserve(self.fragment.len() * 16);
        for sample in &self.fragment {
            put_u32(header, sample.duration);
            // Sizes were checked against u32 in `push`.
            put_u32(header, sample.data.len() as u32);
            put_u32(header, sample.flags);
            header.extend_from_slice(&sample.cts_offset.to_be_bytes());
        }
        end(header, trun)?;
        end(header, traf)?;
        end(header, moof)?;

        // mdat, with a 64-bit size when the payload needs one.
        match u32::try_from(payload + 8) {
            Ok(size) => {
                put_u32(header, size);
                header.extend_from_slice(b"mdat");
            }
            Err(_) => {
                put_u32(header, 1);
                header.extend_from_slice(b"mdat");
                put_u64(header, payload + 16);
            }
        }
        // default-base-is-moof: the data offset counts from the first byte of moof.
        let data_offset = i32::try_from(header.len()).map_err(|_| Fmp4Error::FragmentTooLarge)?;
        header[data_offset_at..data_offset_at + 4].copy_from_slice(&data_offset.to_be_bytes());

        self.out.write_all(&self.header)?;
        for sample in &self.fragment {
            self.out.write_all(&sample.data)?;
        }
        self.fragment.clear();
        self.sequence = self.sequence.wrapping_add(1);
        // Every whole fragment reaches the file (not only a buffer in this process): what a
        // crash leaves is recoverable up to the last fragment ([`recover`]).
        self.out.inner.flush()?;
        Ok(())
    }
}

/// The whole part of a segment file cut short (the process died while writing it): `ftyp` +
/// `moov` and every complete `moof` + `mdat` pair before the first torn or missing box.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recovered {
    /// Bytes of the whole part (the file is truncated to this).
    pub size: u64,
    /// SHA-256 of those bytes.
    pub sha256: [u8; 32],
    /// Bytes of `ftyp` + `moov`.
    pub init_size: u64,
    /// Samples in the whole fragments, their summed durations (timescale units) and how many
    /// are sync samples.
    pub samples: u64,
    pub duration: u64,
    pub keyframes: u64,
}

/// What of `data` — a segment as [`SegmentWriter`] writes it, possibly cut anywhere — is whole;
/// `None` unless it starts with `ftyp` + `moov`. A fragment counts only when its `moof` parses
/// and its `mdat` holds every byte the `moof` describes.
pub fn recover(data: &[u8]) -> Option<Recovered> {
    // (type, start, end) of the box at `at`, if it is whole within `data`.
    fn whole_box(data: &[u8], at: usize) -> Option<([u8; 4], usize, usize)> {
        let head = data.get(at..at + 8)?;
        let size32 = u32::from_be_bytes(head[0..4].try_into().ok()?) as u64;
        let kind: [u8; 4] = head[4..8].try_into().ok()?;
        let (size, header) = match size32 {
            1 => (
                u64::from_be_bytes(data.get(at + 8..at + 16)?.try_into().ok()?),
                16,
            ),
            0 => return None, // "to the end of the file": never written, and never whole
            n => (n, 8),
        };
        if size < header {
            return None;
        }
        let end = at.checked_add(usize::try_from(size).ok()?)?;
        (end <= data.len()).then_some((kind, at + header as usize, end))
    }
    fn u32_at(b: &[u8], at: usize) -> Option<u32> {
        Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
    }
    // (samples, duration, keyframes, payload bytes) a `moof` describes.
    fn moof_samples(data: &[u8], start: usize, end: usize) -> Option<(u64, u64, u64, u64)> {
        let (mut samples, mut duration, mut keyframes, mut bytes) = (0u64, 0u64, 0u64, 0u64);
        let mut at = start;
        while at < end {
            let (kind, body, box_end) = whole_box(&data[..end], at)?;
            if &kind == b"traf" {
                let (mut default_duration, mut default_size, mut default_flags) = (0, 0, 0);
                let mut t = body;
                while t < box_end {
                    let (kind, b, e) = whole_box(&data[..box_end], t)?;
                    let flags = u32_at(data, b)? & 0x00ff_ffff;
                    if &kind == b"tfhd" {
                        let mut f = b + 8; // version+flags, track id
                        if flags & 0x01 != 0 {
                            f += 8;
                        }
                        if flags & 0x02 != 0 {
                            f += 4;
                        }
                        if flags & 0x08 != 0 {
                            default_duration = u32_at(data, f)?;
                            f += 4;
                        }
                        if flags & 0x10 != 0 {
                            default_size = u32_at(data, f)?;
                            f += 4;
                        }
                        if flags & 0x20 != 0 {
                            default_flags = u32_at(data, f)?;
                        }
                    } else if &kind == b"trun" {
                        let count = u32_at(data, b + 4)?;
                        let mut f = b + 8;
                        if flags & 0x01 != 0 {
                            f += 4;
                        }
                        let mut first_flags = None;
                        if flags & 0x04 != 0 {
                            first_flags = Some(u32_at(data, f)?);
                            f += 4;
                        }
                        for i in 0..count {
                            let mut sample_duration = default_duration;
                            let mut size = default_size;
                            let mut sample_flags = default_flags;
                            if flags & 0x100 != 0 {
                                sample_duration = u32_at(data, f)?;
                                f += 4;
                            }
                            if flags & 0x200 != 0 {
                                size = u32_at(data, f)?;
                                f += 4;
                            }
                            if flags & 0x400 != 0 {
                                sample_flags = u32_at(data, f)?;
                                f += 4;
                            }
                            if i == 0
                                && let Some(first) = first_flags
                            {
                                sample_flags = first;
                            }
                            if flags & 0x800 != 0 {
                                f += 4;
                            }
                            if f > e {
                                return None;
                            }
                            samples += 1;
                            duration += u64::from(sample_duration);
                            bytes += u64::from(size);
                            // sample_is_non_sync_sample (ISO/IEC 14496-12 §8.8.3.1).
                            keyframes += u64::from(sample_flags & 0x0001_0000 == 0);
                        }
                    }
                    t = e;
                }
            }
            at = box_end;
        }
        Some((samples, duration, keyframes, bytes))
    }

    let (ftyp, _, ftyp_end) = whole_box(data, 0)?;
    let (moov, _, init_end) = whole_box(data, ftyp_end)?;
    if &ftyp != b"ftyp" || &moov != b"moov" {
        return None;
    }
    let mut whole = Recovered {
        size: init_end as u64,
        sha256: [0; 32],
        init_size: init_end as u64,
        samples: 0,
        duration: 0,
        keyframes: 0,
    };
    let mut at = init_end;
    while let Some((kind, body, end)) = whole_box(data, at) {
        if &kind != b"moof" {
            break;
        }
        let Some((samples, duration, keyframes, bytes)) = moof_samples(data, body, end) else {
            break;
        };
        let Some((kind, mdat_body, mdat_end)) = whole_box(data, end) else {
            break;
        };
        if &kind != b"mdat" || ((mdat_end - mdat_body) as u64) < bytes {
            break;
        }
        whole.samples += samples;
        whole.duration += duration;
        whole.keyframes += keyframes;
        whole.size = mdat_end as u64;
        at = mdat_end;
    }
    whole.sha256 = Sha256::digest(&data[..whole.size as usize]).into();
    Some(whole)
}

/// A writer that hashes and counts what it passes on.
struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    written: u64,
}

impl<W: Write> HashingWriter<W> {
    fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: Sha256::new(),
            written: 0,
        }
    }

    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.inner.write_all(bytes)?;
        self.hasher.update(bytes);
        self.written += bytes.len() as u64;
        Ok(())
    }
}

fn validate_track(track: &TrackConfig) -> Result<(), Fmp4Error> {
    let fits = |v: u32| (1..=u32::from(u16::MAX)).contains(&v);
    if !fits(track.width) || !fits(track.height) {
        return Err(Fmp4Error::InvalidTrack(format!(
            "picture size {}x{} is outside 1..=65535",
            track.width, track.height
        )));
    }
    if track.timescale == 0 {
        return Err(Fmp4Error::InvalidTrack("timescale is 0".into()));
    }
    match track.codec {
        Codec::H264 => validate_avcc(&track.codec_data),
        Codec::H265 => validate_hvcc(&track.codec_data),
    }
}

/// Checks that a sample is non-empty and that its 4-byte NAL length prefixes tile it exactly
/// (this catches Annex-B data and truncated access units). Walks the NAL headers only.
fn validate_sample_data(dts: u64, data: &[u8]) -> Result<(), Fmp4Error> {
    let invalid = |reason| Fmp4Error::InvalidSample { dts, reason };
    if data.is_empty() {
        return Err(invalid("empty sample"));
    }
    if u32::try_from(data.len()).is_err() {
        return Err(invalid("sample larger than 4 GiB"));
    }
    let mut rest = data;
    while !rest.is_empty() {
        let Some((length, tail)) = rest.split_first_chunk::<4>() else {
            return Err(invalid("truncated NAL length prefix"));
        };
        let length = u32::from_be_bytes(*length) as usize;
        rest = tail
            .get(length..)
            .ok_or_else(|| invalid("NAL length runs past the end of the sample"))?;
    }
    Ok(())
}

/// Checks an `AVCDecoderConfigurationRecord` (ISO/IEC 14496-15 §5.3.3.1): version 1, 4-byte NAL
/// lengths, at least one SPS and one PPS, all within bounds. Trailing extension bytes are allowed.
fn validate_avcc(record: &[u8]) -> Result<(), Fmp4Error> {
    let mut r = Reader::new("avcC", record);
    let version = r.u8()?;
    if version != 1 {
        return Err(Fmp4Error::InvalidCodecData(format!(
            "avcC configurationVersion is {version}, expected 1"
        )));
    }
    r.skip(3)?; // profile, compatibility, level
    check_length_size("avcC", r.u8()?)?;
    let sps = r.u8()? & 0x1f;
    for _ in 0..sps {
        let len = r.u16()?;
        r.skip(usize::from(len))?;
    }
    let pps = r.u8()?;
    for _ in 0..pps {
        let len = r.u16()?;
        r.skip(usize::from(len))?;
    }
    if sps == 0 || pps == 0 {
        return Err(Fmp4Error::InvalidCodecData(format!(
            "avcC holds {sps} SPS and {pps} PPS; avc1 needs at least one of each"
        )));
    }
    Ok(())
}

/// Checks an `HEVCDecoderConfigurationRecord` (ISO/IEC 14496-15 §8.3.3.1): version 1, 4-byte NAL
/// lengths, well-formed arrays holding a VPS, an SPS and a PPS.
fn validate_hvcc(record: &[u8]) -> Result<(), Fmp4Error> {
    let mut r = Reader::new("hvcC", record);
    let version = r.u8()?;
    if version != 1 {
        return Err(Fmp4Error::InvalidCodecData(format!(
            "hvcC configurationVersion is {version}, expected 1"
        )));
    }
    r.skip(20)?; // profile, tier, level, compatibility, constraints, format fields
    check_length_size("hvcC", r.u8()?)?;
    let arrays = r.u8()?;
    let (mut vps, mut sps, mut pps) = (false, false, false);
    for _ in 0..arrays {
        let nal_type = r.u8()? & 0x3f;
        let count = r.u16()?;
        for _ in 0..count {
            let len = r.u16()?;
            r.skip(usize::from(len))?;
        }
        let present = count > 0;
        match nal_type {
            32 => vps |= present,
            33 => sps |= present,
            34 => pps |= present,
            _ => {}
        }
    }
    if !(vps && sps && pps) {
        return Err(Fmp4Error::InvalidCodecData(
            "hvcC lacks a VPS, SPS or PPS; hvc1 needs all three".into(),
        ));
    }
    Ok(())
}

fn check_length_size(record: &str, byte: u8) -> Result<(), Fmp4Error> {
    let length_size = (byte & 0b11) + 1;
    if length_size != 4 {
        return Err(Fmp4Error::InvalidCodecData(format!(
            "{record} NAL length size is {length_size} bytes; only 4 is supported"
        )));
    }
    Ok(())
}

/// Bounds-checked big-endian reader for codec records.
struct Reader<'a> {
    what: &'static str,
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(what: &'static str, bytes: &'a [u8]) -> Self {
        Reader { what, bytes }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], Fmp4Error> {
        if n > self.bytes.len() {
            return Err(Fmp4Error::InvalidCodecData(format!(
                "{} is truncated",
                self.what
            )));
        }
        let (head, tail) = self.bytes.split_at(n);
        self.bytes = tail;
        Ok(head)
    }

    fn skip(&mut self, n: usize) -> Result<(), Fmp4Error> {
        self.take(n).map(|_| ())
    }

    fn u8(&mut self) -> Result<u8, Fmp4Error> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, Fmp4Error> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
}

// --- box serialisation ---------------------------------------------------------------------

fn put_u16(buf: &mut Vec<u8>, v: u16) {
    buf.extend_from_slice(&v.to_be_bytes());
}

fn put_u32(buf: &mut Vec<u8>, v: u32) {
    buf.extend_from_slice(&v.to_be_bytes());
}

fn put_u64(buf: &mut Vec<u8>, v: u64) {
    buf.extend_from_slice(&v.to_be_bytes());
}

fn put_zeros(buf: &mut Vec<u8>, n: usize) {
    buf.resize(buf.len() + n, 0);
}

/// Starts a box; returns its offset for [`end`].
fn begin(buf: &mut Vec<u8>, fourcc: &[u8; 4]) -> usize {
    let start = buf.len();
    put_u32(buf, 0);
    buf.extend_from_slice(fourcc);
    start
}

fn begin_full(buf: &mut Vec<u8>, fourcc: &[u8; 4], version: u8, flags: u32) -> usize {
    let start = begin(buf, fourcc);
    put_u32(buf, (u32::from(version) << 24) | (flags & 0x00ff_ffff));
    start
}

/// Closes the box started at `start` by writing its size.
fn end(buf: &mut [u8], start: usize) -> Result<(), Fmp4Error> {
    let size = u32::try_from(buf.len() - start).map_err(|_| Fmp4Error::FragmentTooLarge)?;
    buf[start..start + 4].copy_from_slice(&size.to_be_bytes());
    Ok(())
}

fn empty_table(buf: &mut Vec<u8>, fourcc: &[u8; 4]) -> Result<(), Fmp4Error> {
    let b = begin_full(buf, fourcc, 0, 0);
    put_u32(buf, 0); // entry_count
    end(buf, b)
}

/// `ftyp` + `moov` for a validated track.
fn write_init(buf: &mut Vec<u8>, track: &TrackConfig) -> Result<(), Fmp4Error> {
    let ftyp = begin(buf, b"ftyp");
    buf.extend_from_slice(b"iso6");
    put_u32(buf, 0); // minor_version
    for brand in [b"iso6", b"cmfc", sample_entry(track.codec), b"mp41"] {
        buf.extend_from_slice(brand);
    }
    end(buf, ftyp)?;

    let moov = begin(buf, b"moov");

    let mvhd = begin_full(buf, b"mvhd", 0, 0);
    put_u32(buf, 0); // creation_time
    put_u32(buf, 0); // modification_time
    put_u32(buf, track.timescale);
    put_u32(buf, 0); // duration: unknown, the fragments say
    put_u32(buf, 0x0001_0000); // rate 1.0
    put_u16(buf, 0x0100); // volume 1.0
    put_zeros(buf, 2 + 8); // reserved
    MATRIX.iter().for_each(|&v| put_u32(buf, v));
    put_zeros(buf, 6 * 4); // pre_defined
    put_u32(buf, TRACK_ID + 1); // next_track_ID
    end(buf, mvhd)?;

    let trak = begin(buf, b"trak");
    let tkhd = begin_full(buf, b"tkhd", 0, 0x3); // enabled, in movie
    put_u32(buf, 0); // creation_time
    put_u32(buf, 0); // modification_time
    put_u32(buf, TRACK_ID);
    put_u32(buf, 0); // reserved
    put_u32(buf, 0); // duration
    put_zeros(buf, 8); // reserved
    put_u16(buf, 0); // layer
    put_u16(buf, 0); // alternate_group
    put_u16(buf, 0); // volume: video
    put_u16(buf, 0); // reserved
    MATRIX.iter().for_each(|&v| put_u32(buf, v));
    put_u32(buf, track.width << 16); // 16.16; width <= 65535 was checked
    put_u32(buf, track.height << 16);
    end(buf, tkhd)?;

    let mdia = begin(buf, b"mdia");
    let mdhd = begin_full(buf, b"mdhd", 0, 0);
    put_u32(buf, 0); // creation_time
    put_u32(buf, 0); // modification_time
    put_u32(buf, track.timescale);
    put_u32(buf, 0); // duration
    put_u16(buf, 0x55c4); // language "und"
    put_u16(buf, 0); // pre_defined
    end(buf, mdhd)?;

    let hdlr = begin_full(buf, b"hdlr", 0, 0);
    put_u32(buf, 0); // pre_defined
    buf.extend_from_slice(b"vide");
    put_zeros(buf, 12); // reserved
    buf.extend_from_slice(b"VideoHandler\0");
    end(buf, hdlr)?;

    let minf = begin(buf, b"minf");
    let vmhd = begin_full(buf, b"vmhd", 0, 1);
    put_zeros(buf, 2 + 6); // graphicsmode, opcolor
    end(buf, vmhd)?;

    let dinf = begin(buf, b"dinf");
    let dref = begin_full(buf, b"dref", 0, 0);
    put_u32(buf, 1); // entry_count
    let url = begin_full(buf, b"url ", 0, 1); // media is in this file
    end(buf, url)?;
    end(buf, dref)?;
    end(buf, dinf)?;

    let stbl = begin(buf, b"stbl");
    let stsd = begin_full(buf, b"stsd", 0, 0);
    put_u32(buf, 1); // entry_count
    let entry = begin(buf, sample_entry(track.codec));
    put_zeros(buf, 6); // reserved
    put_u16(buf, 1); // data_reference_index
    put_zeros(buf, 2 + 2 + 12); // pre_defined, reserved, pre_defined
    put_u16(buf, track.width as u16); // checked <= 65535
    put_u16(buf, track.height as u16);
    put_u32(buf, 0x0048_0000); // 72 dpi
    put_u32(buf, 0x0048_0000);
    put_u32(buf, 0); // reserved
    put_u16(buf, 1); // frame_count
    put_zeros(buf, 32); // compressorname
    put_u16(buf, 0x0018); // depth
    put_u16(buf, 0xffff); // pre_defined = -1
    let config = begin(buf, config_box(track.codec));
    buf.extend_from_slice(&track.codec_data);
    end(buf, config)?;
    end(buf, entry)?;
    end(buf, stsd)?;
    empty_table(buf, b"stts")?;
    empty_table(buf, b"stsc")?;
    let stsz = begin_full(buf, b"stsz", 0, 0);
    put_u32(buf, 0); // sample_size
    put_u32(buf, 0); // sample_count
    end(buf, stsz)?;
    empty_table(buf, b"stco")?;
    end(buf, stbl)?;
    end(buf, minf)?;
    end(buf, mdia)?;
    end(buf, trak)?;

    let mvex = begin(buf, b"mvex");
    let trex = begin_full(buf, b"trex", 0, 0);
    put_u32(buf, TRACK_ID);
    put_u32(buf, 1); // default_sample_description_index
    put_u32(buf, 0); // default_sample_duration
    put_u32(buf, 0); // default_sample_size
    put_u32(buf, 0); // default_sample_flags
    end(buf, trex)?;
    end(buf, mvex)?;

    end(buf, moov)
}

#[cfg(test)]
mod tests {
    use super::*;

    // --- a small ISO BMFF reader, enough to check what the writer wrote ----------------------

    struct Bx<'a> {
        kind: [u8; 4],
        offset: usize,
        size: usize,
        /// The payload after the header (and after version/flags for full boxes, see `full`).
        body: &'a [u8],
    }

    fn be32(b: &[u8], at: usize) -> u32 {
        u32::from_be_bytes(b[at..at + 4].try_into().unwrap())
    }

    fn be64(b: &[u8], at: usize) -> u64 {
        u64::from_be_bytes(b[at..at + 8].try_into().unwrap())
    }

    /// Splits `data` (found at `base` in the file) into boxes; panics if they do not tile it.
    fn boxes(data: &[u8], base: usize) -> Vec<Bx<'_>> {
        let mut out = Vec::new();
        let mut at = 0;
        while at < data.len() {
            let mut size = be32(data, at) as usize;
            let mut header = 8;
            if size == 1 {
                size = be64(data, at + 8) as usize;
                header = 16;
            }
            assert!(
                size >= header && at + size <= data.len(),
                "box overruns its parent"
            );
            out.push(Bx {
                kind: data[at + 4..at + 8].try_into().unwrap(),
                offset: base + at,
                size,
                body: &data[at + header..at + size],
            });
            at += size;
        }
        out
    }

    fn kinds(list: &[Bx<'_>]) -> Vec<String> {
        list.iter()
            .map(|b| String::from_utf8_lossy(&b.kind).into_owned())
            .collect()
    }

    fn child<'a>(list: &[Bx<'a>], kind: &[u8; 4]) -> &'a [u8] {
        let found: Vec<_> = list.iter().filter(|b| &b.kind == kind).collect();
        assert_eq!(
            found.len(),
            1,
            "exactly one {}",
            String::from_utf8_lossy(kind)
        );
        found[0].body
    }

    /// Follows a path of container boxes and returns the last one's body.
    fn path<'a>(data: &'a [u8], path: &[&[u8; 4]]) -> &'a [u8] {
        let mut body = data;
        for kind in path {
            body = child(&boxes(body, 0), kind);
        }
        body
    }

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    struct TrunSample {
        duration: u32,
        size: u32,
        flags: u32,
        cts: i32,
    }

    struct Fragment<'a> {
        sequence: u32,
        tfdt: u64,
        samples: Vec<TrunSample>,
        data: Vec<&'a [u8]>,
    }

    struct Parsed<'a> {
        top: Vec<String>,
        init_size: usize,
        fragments: Vec<Fragment<'a>>,
    }

    fn parse(file: &[u8]) -> Parsed<'_> {
        let top = boxes(file, 0);
        let init_size = top
            .iter()
            .find(|b| &b.kind == b"moof")
            .map_or(file.len(), |b| b.offset);
        let mut fragments = Vec::new();
        for (i, moof) in top.iter().enumerate().filter(|(_, b)| &b.kind == b"moof") {
            let mdat = &top[i + 1];
            assert_eq!(&mdat.kind, b"mdat", "moof is followed by its mdat");
            let parts = boxes(moof.body, 0);
            assert_eq!(kinds(&parts), ["mfhd", "traf"]);
            let mfhd = child(&parts, b"mfhd");
            let traf = boxes(child(&parts, b"traf"), 0);
            assert_eq!(kinds(&traf), ["tfhd", "tfdt", "trun"]);
            let tfhd = child(&traf, b"tfhd");
            assert_eq!(be32(tfhd, 0), TFHD_DEFAULT_BASE_IS_MOOF);
            assert_eq!(be32(tfhd, 4), TRACK_ID);
            let tfdt = child(&traf, b"tfdt");
            assert_eq!(tfdt[0], 1, "tfdt version 1");
            let trun = child(&traf, b"trun");
            assert_eq!(
                be32(trun, 0),
                (1 << 24) | TRUN_FLAGS,
                "trun v1 with all fields"
            );
            let count = be32(trun, 4) as usize;
            let data_offset = be32(trun, 8) as i32 as usize;
            assert_eq!(trun.len(), 12 + 16 * count);
            let samples: Vec<_> = (0..count)
                .map(|s| {
                    let at = 12 + 16 * s;
                    TrunSample {
                        duration: be32(trun, at),
                        size: be32(trun, at + 4),
                        flags: be32(trun, at + 8),
                        cts: be32(trun, at + 12) as i32,
                    }
                })
                .collect();
            let mdat_payload_start = mdat.offset + (mdat.size - mdat.body.len());
            assert_eq!(moof.offset + data_offset, mdat_payload_start);
            let mut at = mdat_payload_start;
            let data = samples
                .iter()
                .map(|s| {
                    let d = &file[at..at + s.size as usize];
                    at += s.size as usize;
                    d
                })
                .collect();
            assert_eq!(
                at,
                mdat.offset + mdat.size,
                "mdat holds exactly the samples"
            );
            fragments.push(Fragment {
                sequence: be32(mfhd, 4),
                tfdt: be64(tfdt, 4),
                samples,
                data,
            });
        }
        Parsed {
            top: kinds(&top),
            init_size,
            fragments,
        }
    }

    // --- fixtures -----------------------------------------------------------------------------

    const SPS: &[u8] = &[0x67, 0x42, 0xc0, 0x1e, 0xd9];
    const PPS: &[u8] = &[0x68, 0xce, 0x3c, 0x80];

    fn avcc(length_size_minus_one: u8) -> Vec<u8> {
        let mut v = vec![1, 0x42, 0xc0, 0x1e, 0xfc | length_size_minus_one, 0xe1];
        v.extend_from_slice(&(SPS.len() as u16).to_be_bytes());
        v.extend_from_slice(SPS);
        v.push(1);
        v.extend_from_slice(&(PPS.len() as u16).to_be_bytes());
        v.extend_from_slice(PPS);
        v
    }

    fn hvcc(length_size_minus_one: u8, nal_types: &[u8]) -> Vec<u8> {
        let mut v = vec![
            1, 0x01, 0x60, 0, 0, 0, 0x90, 0, 0, 0, 0, 0, 0x5d, 0xf0, 0, 0xfc,
        ];
        v.extend_from_slice(&[0xfd, 0xf8, 0xf8, 0, 0, 0x0c | length_size_minus_one]);
        v.push(nal_types.len() as u8);
        for &t in nal_types {
            v.push(0x80 | t);
            v.extend_from_slice(&1u16.to_be_bytes());
            v.extend_from_slice(&3u16.to_be_bytes());
            v.extend_from_slice(&[t << 1, 0x01, 0xaa]);
        }
        v
    }

    fn h264_track() -> TrackConfig {
        TrackConfig {
            codec: Codec::H264,
            codec_data: avcc(3),
            width: 1920,
            height: 1080,
            timescale: 90_000,
        }
    }

    fn h265_track() -> TrackConfig {
        TrackConfig {
            codec: Codec::H265,
            codec_data: hvcc(3, &[32, 33, 34]),
            width: 3840,
            height: 2160,
            timescale: 90_000,
        }
    }

    /// An access unit of two NAL units whose bytes identify it.
    fn au(n: u64, len: usize) -> Bytes {
        let mut v = Vec::with_capacity(len + 11);
        v.extend_from_slice(&3u32.to_be_bytes());
        v.extend_from_slice(&[0x09, 0xf0, 0x00]);
        v.extend_from_slice(&(len as u32).to_be_bytes());
        v.extend((0..len).map(|i| (n as usize * 31 + i) as u8));
        Bytes::from(v)
    }

    fn sample(n: u64, dts: u64, pts: u64, keyframe: bool) -> Sample {
        Sample {
            dts,
            pts,
            keyframe,
            data: au(n, 100 + (n as usize % 7) * 50),
        }
    }

    fn sha256(bytes: &[u8]) -> [u8; 32] {
        Sha256::digest(bytes).into()
    }

    // --- tests --------------------------------------------------------------------------------

    #[test]
    fn init_segment_describes_the_track() {
        for (track, entry, config, brand) in [
            (h264_track(), b"avc1", b"avcC", b"avc1"),
            (h265_track(), b"hvc1", b"hvcC", b"hvc1"),
        ] {
            let writer = SegmentWriter::new(Vec::new(), &track).unwrap();
            let init_len = writer.bytes_written();
            let (file, summary) = writer.finish(0).unwrap();
            assert_eq!(
                file.len() as u64,
                init_len,
                "finish without samples adds nothing"
            );
            assert_eq!(summary.init_size, init_len);
            assert_eq!(summary.samples, 0);

            let top = boxes(&file, 0);
            assert_eq!(kinds(&top), ["ftyp", "moov"]);
            let ftyp = child(&top, b"ftyp");
            assert_eq!(&ftyp[0..4], b"iso6");
            let brands: Vec<&[u8]> = ftyp[8..].chunks(4).collect();
            assert_eq!(brands, [&b"iso6"[..], b"cmfc", brand, b"mp41"]);

            let moov = boxes(child(&top, b"moov"), 0);
            assert_eq!(kinds(&moov), ["mvhd", "trak", "mvex"]);
            assert_eq!(be32(child(&moov, b"mvhd"), 4 + 8), 90_000);
            let tkhd = path(&file, &[b"moov", b"trak", b"tkhd"]);
            assert_eq!(be32(tkhd, 4 + 8), TRACK_ID);
            assert_eq!(be32(tkhd, tkhd.len() - 8), track.width << 16);
            assert_eq!(be32(tkhd, tkhd.len() - 4), track.height << 16);
            let mdia = boxes(path(&file, &[b"moov", b"trak", b"mdia"]), 0);
            assert_eq!(kinds(&mdia), ["mdhd", "hdlr", "minf"]);
            assert_eq!(be32(child(&mdia, b"mdhd"), 4 + 8), 90_000);
            assert_eq!(&child(&mdia, b"hdlr")[8..12], b"vide");
            let minf = boxes(child(&mdia, b"minf"), 0);
            assert_eq!(kinds(&minf), ["vmhd", "dinf", "stbl"]);
            let stbl = boxes(child(&minf, b"stbl"), 0);
            assert_eq!(kinds(&stbl), ["stsd", "stts", "stsc", "stsz", "stco"]);
            for table in [b"stts", b"stsc", b"stco"] {
                assert_eq!(child(&stbl, table), [0; 8], "empty table");
            }
            let stsd = child(&stbl, b"stsd");
            assert_eq!(be32(stsd, 4), 1);
            let entries = boxes(&stsd[8..], 0);
            assert_eq!(kinds(&entries), [String::from_utf8_lossy(entry)]);
            let visual = entries[0].body;
            assert_eq!(
                u16::from_be_bytes([visual[24], visual[25]]),
                track.width as u16
            );
            assert_eq!(
                u16::from_be_bytes([visual[26], visual[27]]),
                track.height as u16
            );
            let config_boxes = boxes(&visual[78..], 0);
            assert_eq!(child(&config_boxes, config), track.codec_data);
            let trex = path(&file, &[b"moov", b"mvex", b"trex"]);
            assert_eq!(be32(trex, 4), TRACK_ID);
            assert_eq!(be32(trex, 8), 1);
        }
    }

    #[test]
    fn fragments_carry_every_sample_with_its_timing() {
        // 3 GOPs of 6 frames, decode order I P B B P B, presented one frame late (the usual
        // B-frame delay) as I B B P B P; 3600 ticks a frame, DTS from an arbitrary camera time.
        let start = 7_777_777_u64;
        let frame = 3600;
        let presented_at = [1, 4, 2, 3, 6, 5];
        let mut writer = SegmentWriter::new(Vec::new(), &h264_track()).unwrap();
        let init_size = writer.bytes_written();
        let mut pushed = Vec::new();
        for n in 0..18u64 {
            let keyframe = n % 6 == 0;
            let dts = start + n * frame;
            let pts = start + (n / 6 * 6 + presented_at[(n % 6) as usize]) * frame;
            let s = sample(n, dts, pts, keyframe);
            pushed.push(s.clone());
            writer.push(s).unwrap();
            if keyframe && n > 0 {
                writer.flush_fragment().unwrap();
            }
        }
        assert_eq!(writer.duration_so_far(), 17 * frame);
        let (file, summary) = writer.finish(frame as u32).unwrap();

        assert_eq!(summary.size, file.len() as u64);
        assert_eq!(summary.sha256, sha256(&file));
        assert_eq!(summary.sha256_hex(), hex::encode(sha256(&file)));
        assert_eq!(summary.init_size, init_size);
        assert_eq!(summary.samples, 18);
        assert_eq!(summary.keyframes, 3);
        assert_eq!(summary.first_dts, start);
        assert_eq!(summary.first_pts, pushed[0].pts);
        assert_eq!(summary.duration, 18 * frame);

        let parsed = parse(&file);
        assert_eq!(parsed.init_size as u64, summary.init_size);
        assert_eq!(
            parsed.top,
            [
                "ftyp", "moov", "moof", "mdat", "moof", "mdat", "moof", "mdat"
            ]
        );
        let mut n = 0;
        for (i, fragment) in parsed.fragments.iter().enumerate() {
            assert_eq!(fragment.sequence, i as u32 + 1);
            assert_eq!(fragment.samples.len(), 6, "one GOP per fragment");
            assert_eq!(fragment.tfdt, pushed[n].dts - start);
            for (t, data) in fragment.samples.iter().zip(&fragment.data) {
                let s = &pushed[n];
                assert_eq!(t.duration, frame as u32);
                assert_eq!(t.size as usize, s.data.len());
                assert_eq!(*data, &s.data[..]);
                assert_eq!(t.cts as i64, s.pts as i64 - s.dts as i64);
                let expected = if s.keyframe { 0x0200_0000 } else { 0x0101_0000 };
                assert_eq!(t.flags, expected);
                n += 1;
            }
        }
        assert_eq!(n, 18);
    }

    #[test]
    fn a_segment_cut_anywhere_recovers_to_its_last_whole_fragment() {
        // 3 fragments of one 6-frame GOP each, then the file cut at every byte.
        let frame = 3600;
        let mut writer = SegmentWriter::new(Vec::new(), &h264_track()).unwrap();
        let init_size = writer.bytes_written();
        let mut ends = Vec::new(); // (bytes, samples) after each fragment
        for n in 0..19u64 {
            let keyframe = n % 6 == 0;
            writer
                .push(sample(n, n * frame, n * frame, keyframe))
                .unwrap();
            if keyframe && n > 0 {
                writer.flush_fragment().unwrap();
                ends.push((writer.bytes_written(), n));
            }
        }
        let (file, summary) = writer.finish(frame as u32).unwrap();
        ends.push((summary.size, 19));
        // The whole file recovers to itself.
        let whole = recover(&file).unwrap();
        assert_eq!(
            (
                whole.size,
                whole.sha256,
                whole.samples,
                whole.duration,
                whole.keyframes
            ),
            (summary.size, summary.sha256, 19, 19 * frame, 4)
        );
        assert_eq!(whole.init_size, init_size);
        for cut in 0..file.len() {
            let got = recover(&file[..cut]);
            if (cut as u64) < init_size {
                assert_eq!(got, None, "cut at {cut}: no init segment");
                continue;
            }
            let got = got.unwrap();
            let (size, samples) = ends
                .iter()
                .rev()
                .find(|(end, _)| *end <= cut as u64)
                .copied()
                .unwrap_or((init_size, 0));
            assert_eq!((got.size, got.samples), (size, samples), "cut at {cut}");
            assert_eq!(got.duration, samples * frame, "cut at {cut}");
            assert_eq!(got.keyframes, samples.div_ceil(6), "cut at {cut}");
            assert_eq!(got.sha256, sha256(&file[..size as usize]), "cut at {cut}");
        }
        // Not a segment at all.
        assert_eq!(recover(b"garbage that is no box"), None);
    }

    #[test]
    fn random_fragmenting_keeps_the_timeline_and_the_digest() {
        // A deterministic xorshift drives GOP lengths, frame intervals, sizes and flush points.
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move |bound: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % bound
        };
        for _ in 0..200 {
            let count = 1 + next(60);
            let mut writer = SegmentWriter::new(Vec::new(), &h265_track()).unwrap();
            let mut dts = next(1 << 40);
            let first_dts = dts;
            let mut pushed = Vec::new();
            let mut intervals = Vec::new();
            for n in 0..count {
                let keyframe = n == 0 || next(8) == 0;
                let s = Sample {
                    dts,
                    pts: dts + next(10_000),
                    keyframe,
                    data: au(n, next(3000) as usize),
                };
                pushed.push(s.clone());
                writer.push(s).unwrap();
                if next(4) == 0 {
                    let before = writer.bytes_written();
                    writer.flush_fragment().unwrap();
                    assert!(n == 0 || writer.bytes_written() > before);
                }
                let interval = 1 + next(9000);
                intervals.push(interval);
                dts += interval;
            }
            let last = next(5000) as u32;
            let (file, summary) = writer.finish(last).unwrap();
            let expected_last = match last {
                0 if count > 1 => intervals[count as usize - 2] as u32,
                d => d,
            };

            assert_eq!(summary.sha256, sha256(&file));
            assert_eq!(summary.size, file.len() as u64);
            assert_eq!(summary.samples, count);
            assert_eq!(
                summary.keyframes,
                pushed.iter().filter(|s| s.keyframe).count() as u64
            );
            let parsed = parse(&file);
            assert_eq!(parsed.init_size as u64, summary.init_size);
            let mut timeline = 0;
            let mut n = 0;
            for fragment in &parsed.fragments {
                assert_eq!(
                    fragment.tfdt, timeline,
                    "tfdt continues the previous fragment"
                );
                for (t, data) in fragment.samples.iter().zip(&fragment.data) {
                    assert_eq!(pushed[n].dts - first_dts, timeline);
                    assert_eq!(*data, &pushed[n].data[..]);
                    let expected = if n + 1 < count as usize {
                        intervals[n] as u32
                    } else {
                        expected_last
                    };
                    assert_eq!(t.duration, expected);
                    timeline += u64::from(t.duration);
                    n += 1;
                }
            }
            assert_eq!(n as u64, count);
            assert_eq!(timeline, summary.duration);
        }
    }

    #[test]
    fn the_first_sample_must_be_a_keyframe() {
        let mut writer = SegmentWriter::new(Vec::new(), &h264_track()).unwrap();
        let before = writer.bytes_written();
        let err = writer.push(sample(0, 0, 0, false)).unwrap_err();
        assert!(matches!(err, Fmp4Error::FirstSampleNotKeyframe), "{err}");
        // Refused input changes nothing: the segment can still start with a keyframe.
        writer.push(sample(1, 3600, 3600, true)).unwrap();
        let (file, summary) = writer.finish(3600).unwrap();
        assert_eq!(summary.samples, 1);
        assert_eq!(summary.first_dts, 3600);
        assert_eq!(parse(&file).fragments[0].data[0], &au(1, 100 + 50)[..]);
        assert!(before < summary.size);
    }

    #[test]
    fn dts_must_strictly_increase() {
        let mut writer = SegmentWriter::new(Vec::new(), &h264_track()).unwrap();
        writer.push(sample(0, 9000, 9000, true)).unwrap();
        writer.push(sample(1, 12_600, 12_600, false)).unwrap();
        for dts in [12_600, 9000, 0] {
            let err = writer.push(sample(2, dts, dts, false)).unwrap_err();
            assert!(
                matches!(err, Fmp4Error::NonMonotonicDts { previous: 12_600, dts: d } if d == dts),
                "{err}"
            );
        }
        writer.push(sample(3, 16_200, 16_200, false)).unwrap();
        let (file, summary) = writer.finish(3600).unwrap();
        assert_eq!(summary.samples, 3);
        let durations: Vec<_> = parse(&file).fragments[0]
            .samples
            .iter()
            .map(|s| s.duration)
            .collect();
        assert_eq!(durations, [3600, 3600, 3600]);
    }

    #[test]
    fn out_of_range_timing_is_refused() {
        let mut writer = SegmentWriter::new(Vec::new(), &h264_track()).unwrap();
        let err = writer.push(sample(0, 0, 1 << 31, true)).unwrap_err();
        assert!(
            matches!(err, Fmp4Error::CompositionOffsetOutOfRange { .. }),
            "{err}"
        );
        // PTS before DTS is representable (signed offsets) ...
        writer.push(sample(0, 1000, 400, true)).unwrap();
        // ... a gap longer than u32 ticks is not.
        let far = 1000 + (1 << 32);
        let err = writer.push(sample(1, far, far, false)).unwrap_err();
        assert!(matches!(err, Fmp4Error::DurationOutOfRange { .. }), "{err}");
        let (file, _) = writer.finish(3600).unwrap();
        assert_eq!(parse(&file).fragments[0].samples[0].cts, -600);
    }

    #[test]
    fn sample_data_must_be_length_prefixed_nal_units() {
        let mut writer = SegmentWriter::new(Vec::new(), &h264_track()).unwrap();
        for (data, reason) in [
            (&[][..], "empty sample"),
            (
                &[0, 0, 0, 1, 0x65, 0x88, 0x84][..],
                "truncated NAL length prefix",
            ),
            (
                &[0, 0, 0, 9, 0x65, 0x88][..],
                "NAL length runs past the end of the sample",
            ),
            (&[0, 0, 1][..], "truncated NAL length prefix"),
        ] {
            let err = writer
                .push(Sample {
                    dts: 0,
                    pts: 0,
                    keyframe: true,
                    data: Bytes::copy_from_slice(data),
                })
                .unwrap_err();
            assert!(
                matches!(err, Fmp4Error::InvalidSample { reason: r, .. } if r == reason),
                "{err}"
            );
        }
        let ok = Bytes::from_static(&[0, 0, 0, 2, 0x65, 0x88, 0, 0, 0, 0, 0, 0, 0, 1, 0x06]);
        writer
            .push(Sample {
                dts: 0,
                pts: 0,
                keyframe: true,
                data: ok,
            })
            .unwrap();
    }

    #[test]
    fn codec_data_is_validated() {
        let invalid = |codec, codec_data: Vec<u8>| {
            let track = TrackConfig {
                codec,
                codec_data,
                ..h264_track()
            };
            match SegmentWriter::new(Vec::new(), &track) {
                Err(Fmp4Error::InvalidCodecData(message)) => message,
                other => panic!("expected InvalidCodecData, got {other:?}"),
            }
        };
        assert!(invalid(Codec::H264, avcc(1)).contains("NAL length size is 2 bytes"));
        assert!(invalid(Codec::H264, avcc(0)).contains("NAL length size is 1 bytes"));
        let mut v0 = avcc(3);
        v0[0] = 0;
        assert!(invalid(Codec::H264, v0).contains("configurationVersion is 0"));
        let full = avcc(3);
        for cut in 0..full.len() {
            assert!(
                invalid(Codec::H264, full[..cut].to_vec()).contains("truncated"),
                "{cut}"
            );
        }
        let mut no_pps = avcc(3);
        no_pps.truncate(6 + 2 + SPS.len());
        no_pps.push(0);
        assert!(invalid(Codec::H264, no_pps).contains("0 PPS"));
        // Trailing bytes (the high-profile extension) are fine.
        let mut high = avcc(3);
        high.extend_from_slice(&[0xfd, 0xf8, 0xf8, 0]);
        SegmentWriter::new(
            Vec::new(),
            &TrackConfig {
                codec_data: high,
                ..h264_track()
            },
        )
        .unwrap();

        assert!(invalid(Codec::H265, hvcc(1, &[32, 33, 34])).contains("NAL length size is 2"));
        assert!(invalid(Codec::H265, hvcc(3, &[33, 34])).contains("VPS"));
        assert!(invalid(Codec::H265, hvcc(3, &[32, 33, 39])).contains("PPS"));
        let full = hvcc(3, &[32, 33, 34]);
        for cut in 0..full.len() {
            assert!(
                invalid(Codec::H265, full[..cut].to_vec()).contains("truncated"),
                "{cut}"
            );
        }
        // An avcC record under H.265 is caught too.
        assert!(matches!(
            SegmentWriter::new(
                Vec::new(),
                &TrackConfig {
                    codec: Codec::H265,
                    ..h264_track()
                }
            ),
            Err(Fmp4Error::InvalidCodecData(_))
        ));
    }

    #[test]
    fn track_geometry_and_timescale_are_validated() {
        for (width, height, timescale) in [
            (0, 240, 90_000),
            (320, 0, 90_000),
            (65_536, 240, 90_000),
            (320, 240, 0),
        ] {
            let track = TrackConfig {
                width,
                height,
                timescale,
                ..h264_track()
            };
            let err = SegmentWriter::new(Vec::new(), &track).unwrap_err();
            assert!(matches!(err, Fmp4Error::InvalidTrack(_)), "{err}");
        }
    }

    #[test]
    fn flushing_writes_only_samples_whose_duration_is_known() {
        let mut writer = SegmentWriter::new(Vec::new(), &h264_track()).unwrap();
        let init = writer.bytes_written();
        writer.flush_fragment().unwrap();
        assert_eq!(writer.bytes_written(), init, "nothing to flush");
        writer.push(sample(0, 0, 0, true)).unwrap();
        writer.flush_fragment().unwrap();
        assert_eq!(
            writer.bytes_written(),
            init,
            "the only sample's duration is unknown"
        );
        assert_eq!(writer.duration_so_far(), 0);
        writer.push(sample(1, 3003, 3003, false)).unwrap();
        writer.flush_fragment().unwrap();
        assert!(writer.bytes_written() > init);
        assert_eq!(writer.duration_so_far(), 3003);
        // finish(0) repeats the previous interval.
        let (file, summary) = writer.finish(0).unwrap();
        assert_eq!(summary.duration, 6006);
        let parsed = parse(&file);
        assert_eq!(parsed.fragments.len(), 2);
        assert_eq!(parsed.fragments[1].tfdt, 3003);
        assert_eq!(parsed.fragments[1].samples[0].duration, 3003);
    }

    /// Accepts `budget` bytes, then fails.
    struct FailingWriter {
        budget: usize,
    }

    impl Write for FailingWriter {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.budget == 0 {
                return Err(io::Error::other("disk full"));
            }
            let n = buf.len().min(self.budget);
            self.budget -= n;
            Ok(n)
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn after_an_io_error_the_writer_refuses_to_go_on() {
        let err = SegmentWriter::new(FailingWriter { budget: 10 }, &h264_track()).unwrap_err();
        assert!(matches!(err, Fmp4Error::Io(_)), "{err}");

        let mut writer = SegmentWriter::new(FailingWriter { budget: 1000 }, &h264_track()).unwrap();
        writer.push(sample(0, 0, 0, true)).unwrap();
        writer.push(sample(1, 3600, 3600, false)).unwrap();
        writer.push(sample(2, 7200, 7200, false)).unwrap();
        let err = writer.flush_fragment().unwrap_err();
        assert!(matches!(err, Fmp4Error::Io(_)), "{err}");
        assert!(matches!(
            writer.push(sample(3, 10_800, 10_800, false)),
            Err(Fmp4Error::Failed)
        ));
        assert!(matches!(writer.flush_fragment(), Err(Fmp4Error::Failed)));
        assert!(matches!(writer.finish(3600), Err(Fmp4Error::Failed)));
    }

    #[test]
    fn nanoseconds_become_rounded_ticks() {
        assert_eq!(ns_to_timescale(40_000_000, 90_000), 3600);
        assert_eq!(ns_to_timescale(33_366_667, 90_000), 3003);
        assert_eq!(ns_to_timescale(33_366_666, 90_000), 3003);
        assert_eq!(ns_to_timescale(1_000_000_000, 1000), 1000);
        assert_eq!(ns_to_timescale(u64::MAX, u32::MAX), u64::MAX);
    }
}
