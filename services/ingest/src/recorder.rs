//! Turns a camera's frames into spooled segments and gaps.
//!
//! Runs on the camera's task, called with each [`Frame`] its source yields, so it does only
//! cheap work: write bytes to the spool file (hashing them), and at keyframes close the segment
//! when it is long enough.
//!
//! Time: frames carry 90 kHz decode and presentation times on the session's timeline and the
//! wall-clock time of their presentation. The first segment of a session starts at the
//! wall-clock time of its first frame's decode time; every later segment starts exactly where
//! the previous one ended (durations come from the stream's own timestamps, slewed by at most
//! [`MAX_SLEW_PPM`] towards the wall clock so a drifting camera clock cannot move evidence in
//! time over days), so segments of one session are contiguous by construction. Between sessions the hole is recorded as a gap with
//! the reason the session ended.

use std::fs::File;
use std::io::BufWriter;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::IngestError;
use crate::fmp4::{Sample, SegmentWriter};
use crate::metrics;
use crate::segment::{GapMeta, ResumeMeta, SegmentMeta, UnixMicros};
use crate::spool::{Spool, SpoolFile};
use crate::status::{CameraState, StatusBoard};
use kordon_media::Frame;

/// Timescale of the segments' video track: the sources' own (90 kHz), so no time changes form.
pub use kordon_media::TIMESCALE;
/// Fragments inside a segment are flushed at least this often (timescale units: 1 s), so the
/// writer holds little in memory and a crash loses little.
const FRAGMENT_TS: u64 = TIMESCALE as u64;

pub use crate::segment::GapReason;
/// The stream's format, as the source reports it.
pub use kordon_media::TrackInfo;

struct OpenSegment {
    writer: SegmentWriter<BufWriter<File>>,
    file: SpoolFile,
    base_ts: u64,
    start_us: i64,
    first_dts: u64,
    last_dts: u64,
    fragment_start_dts: u64,
    samples: u64,
    /// How far the wall clock (the camera's RTCP sender reports) ran ahead of `start_us` at
    /// the segment's first frame: what [`MAX_SLEW_PPM`] lets the segment's end make up.
    wall_error_us: i64,
}

/// Most a segment's registered duration may differ from its media duration (parts per
/// million) to follow the wall clock. Segments of a session are contiguous and take their
/// length from the stream's timestamps; a camera's clock drifts (typically under 100 ppm) and
/// over days that would move evidence in time. Slewing each segment by at most 0.1% — 6 ms of
/// a 6 s segment, far below a frame — keeps registered times on the wall clock while staying
/// contiguous, as NTP slews rather than steps.
pub const MAX_SLEW_PPM: i64 = 1_000;

/// A camera that stops sending for less than the stall timeout and then goes on would
/// otherwise leave a frame held for the whole stall inside a segment: footage that looks
/// continuous but is not. A jump in decode times longer than this ends the segment at the frame
/// before it and records the hole as a `stream_lost` gap. Cameras that lower their frame rate
/// when the scene is still ("smart" codecs) need it raised (`ingest.max_frame_gap`).
pub const DEFAULT_MAX_FRAME_GAP: Duration = Duration::from_secs(1);

/// Records one camera. One instance per camera, living across sessions (reconnects).
pub struct Recorder {
    pub site: String,
    pub camera: String,
    replica: String,
    object_prefix: String,
    target_ts: u64,
    spool: Arc<Spool>,
    board: Arc<StatusBoard>,
    track: Option<Arc<TrackInfo>>,
    open: Option<OpenSegment>,
    /// End of the last closed segment (wall-clock µs), the start of the next gap.
    last_end_us: Option<i64>,
    /// Decode time (timescale units) where the next segment of this session continues.
    next_base_ts: u64,
    /// Why the next hole exists, once known.
    gap_reason: Option<(GapReason, String)>,
    /// Typical sample interval (timescale units), for the last sample's duration.
    frame_interval: u64,
    /// Samples seen while the spool refused footage.
    refusing: bool,
    /// Waiting for a keyframe to start the next segment.
    waiting_for_keyframe: bool,
    /// The current session's first decode time (source ticks), its timeline's zero.
    session_origin: Option<i64>,
    estimate_bytes: u64,
    /// A jump in the stream's decode times longer than this (timescale units) is a stall:
    /// the segment ends at the frame before it and the hole is recorded as a gap.
    max_frame_gap_ts: u64,
    /// Where the camera's recording ended before this recorder (see [`Recorder::with_floor`]).
    floor_us: Option<i64>,
}

fn wall_us(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

pub fn us_to_system_time(us: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_micros(us.max(0) as u64)
}

fn duration_ts(d: Duration) -> u64 {
    (d.as_nanos() * TIMESCALE as u128 / 1_000_000_000).min(u64::MAX as u128) as u64
}

fn ts_to_us(ts: u64) -> i64 {
    (ts as i128 * 1_000_000 / TIMESCALE as i128) as i64
}

impl Recorder {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        site: &str,
        camera: &str,
        replica: &str,
        object_prefix: &str,
        segment_duration: Duration,
        spool: Arc<Spool>,
        board: Arc<StatusBoard>,
        resume_from: Option<(i64, GapReason, String)>,
    ) -> Recorder {
        let (last_end_us, gap_reason) = match resume_from {
            Some((end, reason, detail)) => (Some(end), Some((reason, detail))),
            None => (None, None),
        };
        Recorder {
            site: site.to_string(),
            camera: camera.to_string(),
            replica: replica.to_string(),
            object_prefix: object_prefix.to_string(),
            target_ts: duration_ts(segment_duration),
            spool,
            board,
            track: None,
            open: None,
            last_end_us,
            next_base_ts: 0,
            gap_reason,
            frame_interval: (TIMESCALE / 25) as u64,
            refusing: false,
            waiting_for_keyframe: true,
            session_origin: None,
            // ~4 Mbit/s for the segment length, until a real size is known.
            estimate_bytes: (segment_duration.as_secs_f64() * 4_000_000.0 / 8.0) as u64,
            max_frame_gap_ts: duration_ts(DEFAULT_MAX_FRAME_GAP),
            floor_us: None,
        }
    }

    /// Sets where the camera's recording already ends (storage, the spool): no segment of this
    /// recorder starts before it, whatever the wall clock says.
    pub fn with_floor(mut self, floor_us: Option<i64>) -> Recorder {
        self.floor_us = floor_us;
        self
    }

    /// Sets how long the stream's timestamps may jump between two frames before the jump is
    /// recorded as a gap (see [`DEFAULT_MAX_FRAME_GAP`]).
    pub fn with_max_frame_gap(mut self, gap: Duration) -> Recorder {
        self.max_frame_gap_ts = duration_ts(gap);
        self
    }

    /// Handles one frame of the session (see [`crate::source`] for what a frame guarantees).
    ///
    /// An error ends the session (the camera sent something unusable). A spool that cannot be
    /// written (its disk full, an I/O error) is not the camera's fault: the footage is refused
    /// and counted, the session kept, and recording retried at each keyframe.
    pub fn on_frame(&mut self, frame: Frame) -> Result<(), IngestError> {
        match self.record_frame(frame) {
            Err(e) if e.is_spool_write() => {
                self.spool_failed(e);
                Ok(())
            }
            r => r,
        }
    }

    fn record_frame(&mut self, frame: Frame) -> Result<(), IngestError> {
        let Frame {
            dts,
            pts,
            keyframe,
            data,
            wall_clock,
            track: info,
        } = frame;
        let same = self
            .track
            .as_ref()
            .is_some_and(|t| Arc::ptr_eq(t, &info) || **t == *info);
        if !same {
            if self.open.is_some() {
                // Codec or resolution changed mid-stream: the segment ends here; the next one
                // starts with the new parameters at the next keyframe.
                self.close_segment(None)?;
                self.waiting_for_keyframe = true;
            }
            self.track = Some(Arc::clone(&info));
            self.board.update(&self.site, &self.camera, |s| {
                s.codec = Some(info.codec_name);
                s.width = info.track.width;
                s.height = info.track.height;
                s.fps = info.fps;
            });
            if info.fps > 0.0 {
                self.frame_interval = (TIMESCALE as f64 / info.fps).round() as u64;
            }
        }
        // The session's timeline starts at its first frame, so that ticks are never negative.
        let origin = *self.session_origin.get_or_insert(dts);
        let Ok(dts) = u64::try_from(dts - origin) else {
            tracing::debug!(camera = %self.camera, "frame before the session's first, dropped");
            return Ok(());
        };
        // `pts < dts` only when a camera reorders deeper than it declares; the writer's signed
        // composition offsets keep such a frame as it is.
        let pts = u64::try_from(pts - origin).unwrap_or(0);
        let wall_ns = wall_clock
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
            // The wall-clock time of the decode time, where the segment's timeline starts.
            .saturating_sub(ts_to_us(pts.saturating_sub(dts)).max(0) as u64 * 1_000);

        if let Some(open) = &self.open {
            if dts <= open.last_dts {
                tracing::warn!(camera = %self.camera, "non-increasing DTS, sample dropped");
                return Ok(());
            }
            let jump = dts - open.last_dts;
            if jump > self.max_frame_gap_ts.max(2 * self.frame_interval) {
                // The camera stopped sending and went on (shorter than the stall timeout, or
                // the session would have ended): the segment ends with its last frame, and
                // the hole until the next keyframe becomes a gap.
                self.close_segment(None)?;
                self.waiting_for_keyframe = true;
                let seconds = ts_to_us(jump) as f64 / 1e6;
                tracing::warn!(
                    site = %self.site, camera = %self.camera, seconds,
                    "the stream's timestamps jumped: recorded as a gap"
                );
                self.gap_reason = Some((
                    GapReason::StreamLost,
                    format!("no media for {seconds:.1}s (stream stalled and resumed)"),
                ));
            } else if keyframe && dts - open.first_dts >= self.target_ts {
                self.close_segment(Some(jump))?;
            }
        }
        if self.open.is_none() {
            if !keyframe {
                return Ok(());
            }
            let (start_us, base_ts) = match self.last_end_us {
                // Inside a session, segments are contiguous (see the module docs).
                Some(end) if !self.waiting_for_keyframe => (end, self.next_base_ts),
                _ => {
                    // A new timeline; never before what is already recorded: a wall clock
                    // stepped back (or a camera's behind) would make segments overlap.
                    let wall = (wall_ns / 1_000) as i64;
                    let floor = self.last_end_us.max(self.floor_us).unwrap_or(i64::MIN);
                    if wall < floor.saturating_sub(1_000_000) {
                        tracing::warn!(
                            site = %self.site, camera = %self.camera,
                            behind_s = (floor - wall) as f64 / 1e6,
                            "the wall clock is behind this camera's recorded footage (stepped \
                             back?): new footage continues where the recording ends"
                        );
                    }
                    let us = wall.max(floor);
                    (us, (us.max(0) as u64).saturating_mul(9) / 100)
                }
            };
            if !self.open_segment(start_us, base_ts, dts)? {
                return Ok(());
            }
            if let Some(open) = self.open.as_mut() {
                open.wall_error_us = (wall_ns / 1_000) as i64 - start_us;
            }
        }
        let Some(open) = self.open.as_mut() else {
            return Ok(());
        };
        let sample = Sample {
            dts,
            pts,
            keyframe,
            data,
        };
        if let Err(e) = open.writer.push(sample) {
            return self.fail_segment(e.into());
        }
        // The writer holds the newest sample back until its duration is known, so flushing
        // after pushing a keyframe ends the fragment right before it: fragments start at
        // keyframes where the stream allows.
        if open.samples > 0 && (keyframe || dts - open.fragment_start_dts >= FRAGMENT_TS) {
            if let Err(e) = open.writer.flush_fragment() {
                return self.fail_segment(e.into());
            }
            open.fragment_start_dts = dts;
        }
        open.last_dts = dts;
        open.samples += 1;
        Ok(())
    }

    /// Starts a segment at a keyframe; false when the spool refused it.
    fn open_segment(&mut self, start_us: i64, base_ts: u64, dts: u64) -> Result<bool, IngestError> {
        let Some(track) = &self.track else {
            return Ok(false);
        };
        // Where this camera's recording stopped before is not known here (an earlier run,
        // another replica): the uploader registers the hole up to here once storage answers.
        // Queued before the segment; from here on, holes are this recorder's to record.
        if self.last_end_us.is_none() {
            self.spool.push_resume(ResumeMeta {
                site: self.site.clone(),
                camera: self.camera.clone(),
                replica: self.replica.clone(),
                at: UnixMicros(start_us),
            })?;
            self.last_end_us = Some(start_us);
        }
        let file = match self.spool.begin_segment(
            &self.site,
            &self.camera,
            UnixMicros(start_us),
            self.estimate_bytes,
        )? {
            Some(f) => f,
            None => {
                if !self.refusing {
                    tracing::error!(
                        site = %self.site, camera = %self.camera,
                        spool_bytes = self.spool.used_bytes(), spool_max = self.spool.max_bytes(),
                        "SPOOL FULL: refusing new footage until object storage drains the spool \
                         (footage already spooled is kept)"
                    );
                    self.board.update(&self.site, &self.camera, |s| {
                        s.set_error("spool full: new footage refused")
                    });
                }
                self.refusing = true;
                self.waiting_for_keyframe = true;
                metrics::get()
                    .spool_refused
                    .with_label_values(&[&self.site])
                    .inc();
                if self.gap_reason.is_none() || self.last_end_us.is_some() {
                    self.gap_reason = Some((
                        GapReason::SpoolOverflow,
                        "local spool full while object storage was unreachable".into(),
                    ));
                }
                return Ok(false);
            }
        };
        let out = match File::create(&file.path) {
            Ok(f) => BufWriter::with_capacity(256 * 1024, f),
            Err(e) => {
                let err = IngestError::spool(&file.path, e);
                self.spool.abandon(file);
                return Err(err);
            }
        };
        // The media timeline is wall-clock time in timescale units, continued from segment to
        // segment within a session, so players need no discontinuity between them.
        let writer = match SegmentWriter::new_at(out, &track.track, base_ts) {
            Ok(w) => w,
            Err(e) => {
                self.spool.abandon(file);
                return Err(e.into());
            }
        };
        // What this file is, for the next start if this process dies while writing it.
        let note = crate::spool::OpenNote {
            meta: SegmentMeta {
                site: self.site.clone(),
                camera: self.camera.clone(),
                replica: self.replica.clone(),
                start: UnixMicros(start_us),
                end: UnixMicros(start_us),
                size: 0,
                init_size: 0,
                sha256: [0; 32],
                codec: track.track.codec,
                width: track.track.width,
                height: track.track.height,
                object_key: String::new(),
            },
            object_prefix: self.object_prefix.clone(),
            timescale: track.track.timescale,
        };
        if let Err(e) = self.spool.note_open(&file, &note) {
            // Recording goes on; only a crash during this segment would lose all of it.
            tracing::warn!(site = %self.site, camera = %self.camera, error = %e,
                "segment note not written: a crash would lose this whole segment");
        }
        if self.refusing {
            tracing::info!(site = %self.site, camera = %self.camera, "spool has room again: recording resumed");
            self.refusing = false;
        }
        // A hole since the last segment becomes a gap record, placed before this segment.
        if let Some(last_end) = self.last_end_us
            && start_us > last_end
        {
            let (reason, detail) = self
                .gap_reason
                .take()
                .unwrap_or((GapReason::StreamError, "recording interrupted".into()));
            if let Err(e) = self.push_gap(last_end, start_us, reason, detail.clone()) {
                // E.g. the spool's disk is full: give back the segment's file and its
                // reservation (they leaked before, and a spool that thinks itself full refuses
                // footage after the space returns), and keep the reason for the next try.
                drop(writer);
                self.spool.abandon(file);
                self.gap_reason = Some((reason, detail));
                return Err(e);
            }
        }
        self.gap_reason = None;
        self.waiting_for_keyframe = false;
        self.open = Some(OpenSegment {
            writer,
            file,
            base_ts,
            start_us,
            first_dts: dts,
            last_dts: dts,
            fragment_start_dts: dts,
            samples: 0,
            wall_error_us: 0,
        });
        Ok(true)
    }

    fn push_gap(
        &mut self,
        start_us: i64,
        end_us: i64,
        reason: GapReason,
        detail: String,
    ) -> Result<(), IngestError> {
        tracing::warn!(
            site = %self.site, camera = %self.camera, reason = reason.as_str(),
            seconds = (end_us - start_us) as f64 / 1e6, "recording gap"
        );
        self.spool.push_gap(GapMeta {
            site: self.site.clone(),
            camera: self.camera.clone(),
            replica: self.replica.clone(),
            start: UnixMicros(start_us),
            end: UnixMicros(end_us),
            reason,
            detail,
        })?;
        metrics::get().gaps.with_label_values(&[&self.site]).inc();
        self.board
            .update(&self.site, &self.camera, |s| s.gaps_total += 1);
        Ok(())
    }

    /// Writing the open segment failed: the partial segment is dropped and recording restarts
    /// at the next keyframe. The caller ([`Recorder::on_frame`]) tells a spool failure from a
    /// camera's bad sample.
    fn fail_segment(&mut self, err: IngestError) -> Result<(), IngestError> {
        if let Some(open) = self.open.take() {
            self.spool.abandon(open.file);
        }
        self.waiting_for_keyframe = true;
        Err(err)
    }

    /// The spool could not be written (e.g. its disk is full): the partial segment is given
    /// back, new footage is refused (counted in `kordon_ingest_spool_refused_total`, the
    /// camera's status says why) until a segment can be written again, and the hole becomes a
    /// gap. Footage already spooled is untouched; the session is kept.
    fn spool_failed(&mut self, err: IngestError) {
        if let Some(open) = self.open.take() {
            self.spool.abandon(open.file);
        }
        self.waiting_for_keyframe = true;
        metrics::get()
            .spool_refused
            .with_label_values(&[&self.site])
            .inc();
        if !self.refusing {
            tracing::error!(
                site = %self.site, camera = %self.camera, error = %err,
                "SPOOL WRITE FAILED: refusing new footage until the spool can be written \
                 (footage already spooled is kept)"
            );
            self.board.update(&self.site, &self.camera, |s| {
                s.set_error(format!("spool write failed, new footage refused: {err}"))
            });
        }
        self.refusing = true;
        // The hole's reason, unless it began for another (a lost stream, a restart).
        self.gap_reason.get_or_insert_with(|| {
            (
                GapReason::SpoolOverflow,
                format!("spool write failed: {err}"),
            )
        });
    }

    /// Closes the open segment into the spool. `last_duration` is the duration of its final
    /// sample (timescale units); `None` uses the typical frame interval.
    fn close_segment(&mut self, last_duration: Option<u64>) -> Result<(), IngestError> {
        let Some(open) = self.open.take() else {
            return Ok(());
        };
        let Some(track) = self.track.clone() else {
            self.spool.abandon(open.file);
            return Ok(());
        };
        if open.samples == 0 {
            self.spool.abandon(open.file);
            return Ok(());
        }
        let last = last_duration
            .unwrap_or(self.frame_interval)
            .clamp(1, u32::MAX as u64) as u32;
        let (out, summary) = match open.writer.finish(last) {
            Ok(r) => r,
            Err(e) => {
                self.spool.abandon(open.file);
                return Err(e.into());
            }
        };
        let synced = out
            .into_inner()
            .map_err(|e| e.into_error())
            .and_then(|f| f.sync_data());
        if let Err(e) = synced {
            let err = IngestError::spool(&open.file.path, e);
            self.spool.abandon(open.file);
            return self.fail_segment(err);
        }
        let media_us = ts_to_us(summary.duration);
        let max_slew = media_us * MAX_SLEW_PPM / 1_000_000;
        let end_us = open.start_us + media_us + open.wall_error_us.clamp(-max_slew, max_slew);
        let object_key = match kordon_objects::segment_key(
            &self.object_prefix,
            &self.site,
            &self.camera,
            open.start_us,
            &summary.sha256,
        ) {
            Ok(k) => k,
            Err(e) => {
                self.spool.abandon(open.file);
                return Err(IngestError::Objects(e.to_string()));
            }
        };
        let meta = SegmentMeta {
            site: self.site.clone(),
            camera: self.camera.clone(),
            replica: self.replica.clone(),
            start: UnixMicros(open.start_us),
            end: UnixMicros(end_us),
            size: summary.size,
            init_size: summary.init_size,
            sha256: summary.sha256,
            codec: track.track.codec,
            width: track.track.width,
            height: track.track.height,
            object_key: object_key.to_string(),
        };
        self.spool.commit_segment(open.file, meta)?;
        self.last_end_us = Some(end_us);
        self.next_base_ts = open.base_ts + summary.duration;
        self.estimate_bytes = summary.size.max(64 * 1024);
        let m = metrics::get();
        m.segments.with_label_values(&[&self.site]).inc();
        m.segment_bytes
            .with_label_values(&[&self.site])
            .inc_by(summary.size);
        let seconds = (end_us - open.start_us) as f64 / 1e6;
        self.board.update(&self.site, &self.camera, |s| {
            s.set_state(CameraState::Recording);
            s.segments_total += 1;
            s.last_segment_end = Some(us_to_system_time(end_us));
            if seconds > 0.0 {
                s.bitrate_bps = (summary.size as f64 * 8.0 / seconds) as u64;
                s.fps = summary.samples as f64 / seconds;
            }
        });
        Ok(())
    }

    /// The session ended (stream lost, error, reconfiguration, shutdown): the open segment is
    /// closed and stored, and the next hole will be recorded with `reason`.
    pub fn end_session(&mut self, reason: GapReason, detail: &str) -> Result<(), IngestError> {
        let r = self.close_segment(None);
        self.waiting_for_keyframe = true;
        self.session_origin = None;
        self.gap_reason = Some((reason, detail.to_string()));
        r
    }

    /// Records the gap from the last segment until now, when the camera is still down at
    /// shutdown or removal (the end of a gap is otherwise only known when recording resumes).
    pub fn close_open_gap(&mut self) -> Result<(), IngestError> {
        if let (Some(last_end), Some((reason, detail))) = (self.last_end_us, self.gap_reason.take())
        {
            let now = wall_us(SystemTime::now());
            if now > last_end && self.open.is_none() {
                self.push_gap(last_end, now, reason, detail)?;
                self.last_end_us = Some(now);
            }
        }
        Ok(())
    }

    pub fn last_end_us(&self) -> Option<i64> {
        self.last_end_us
    }

    pub fn is_recording(&self) -> bool {
        self.open.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fmp4::{Codec, TrackConfig};
    use crate::segment::Record;

    fn track() -> Arc<TrackInfo> {
        let sps: &[u8] = &[0x67, 0x42, 0xc0, 0x1e, 0xd9];
        let pps: &[u8] = &[0x68, 0xce, 0x3c, 0x80];
        let mut avcc = vec![1, 0x42, 0xc0, 0x1e, 0xff, 0xe1];
        avcc.extend_from_slice(&(sps.len() as u16).to_be_bytes());
        avcc.extend_from_slice(sps);
        avcc.push(1);
        avcc.extend_from_slice(&(pps.len() as u16).to_be_bytes());
        avcc.extend_from_slice(pps);
        Arc::new(TrackInfo {
            track: TrackConfig {
                codec: Codec::H264,
                codec_data: avcc,
                width: 320,
                height: 240,
                timescale: TIMESCALE,
            },
            codec_name: "h264",
            fps: 25.0,
        })
    }

    /// Records `seconds` of 25 fps frames whose wall clock runs `ppm` faster than their
    /// timestamps; returns the segments' (start, end, media duration) in µs and the wall clock
    /// after the last frame.
    fn record(ppm: i64, seconds: i64) -> (Vec<(i64, i64)>, i64) {
        let dir = tempfile::tempdir().unwrap();
        let spool = Arc::new(Spool::open(dir.path(), 1 << 30).unwrap());
        let mut r = recorder(&spool);
        let t0: i64 = 1_795_773_600_000_000;
        let info = track();
        let frames = seconds * 25;
        for n in 0..frames {
            let wall = t0 + (n * 40_000) * (1_000_000 + ppm) / 1_000_000;
            r.on_frame(frame(n, n * 3600, wall, &info)).unwrap();
        }
        r.end_session(GapReason::IngestRestart, "test").unwrap();
        let (segs, _) = drain(&spool);
        (segs, t0 + frames * 40_000 * (1_000_000 + ppm) / 1_000_000)
    }

    /// Issue 10: over a long session a camera clock that drifts from the wall clock (its
    /// RTCP sender reports) does not move the registered times with it: segments stay
    /// contiguous, each differs from its media duration by at most MAX_SLEW_PPM, and the end
    /// follows the wall clock (without slewing it would lag by `ppm` × the session).
    #[test]
    fn segment_times_follow_the_wall_clock_not_the_camera_clock() {
        for ppm in [500, -500, 0] {
            let (segs, wall_end) = record(ppm, 240);
            assert!(segs.len() >= 100, "{} segments", segs.len());
            for w in segs.windows(2) {
                assert_eq!(w[0].1, w[1].0, "segments not contiguous");
            }
            for (start, end) in &segs {
                let media = 2_000_000;
                assert!(
                    ((end - start) - media).abs() <= media * MAX_SLEW_PPM / 1_000_000,
                    "slewed by more than {MAX_SLEW_PPM} ppm: {}",
                    end - start
                );
            }
            let lag = wall_end - segs.last().unwrap().1;
            // Without slewing the lag would be ppm × 240 s (120 ms at 500 ppm).
            assert!(
                lag.abs() <= 5_000,
                "{ppm} ppm: registered end off the wall clock by {lag} µs"
            );
        }
    }

    /// A process killed while it writes a segment: at the next start the spool holds that
    /// segment up to its last whole fragment (the writer puts each in the file as it ends, about
    /// every second), truncated, hashed and with its real end, queued after the segments
    /// before it; the torn rest is gone, nothing is orphaned.
    #[test]
    fn a_crash_mid_segment_loses_only_the_torn_fragment() {
        let dir = tempfile::tempdir().unwrap();
        let t0: i64 = 1_795_773_600_000_000;
        {
            let spool = Arc::new(Spool::open(dir.path(), 1 << 30).unwrap());
            let mut r = recorder(&spool);
            let info = track();
            // 3.5 s at 25 fps with 2 s segments: one closed segment, one open for 1.5 s
            // (fragments flushed at 2 s and 3 s, the frames after 3 s still buffered).
            for n in 0..88 {
                r.on_frame(frame(n, n * 3600, t0 + n * 40_000, &info))
                    .unwrap();
            }
            // The process dies: no close, no drop handler runs.
            std::mem::forget(r);
        }
        let spool = Spool::open(dir.path(), 1 << 30).unwrap();
        let heads = spool.heads();
        let mut metas = Vec::new();
        let mut queue = heads;
        while let Some(e) = queue.pop() {
            if let Record::Segment(m) = &e.record {
                let media = std::fs::read(e.media_path.as_ref().unwrap()).unwrap();
                assert_eq!(media.len() as u64, m.size);
                assert_eq!(crate::fmp4::recover(&media).unwrap().sha256, m.sha256);
                metas.push(m.clone());
            }
            spool.complete(&e).unwrap();
            queue = spool.heads();
        }
        assert_eq!(metas.len(), 2, "{metas:?}");
        assert_eq!((metas[0].start.0, metas[0].end.0), (t0, t0 + 2_000_000));
        // The open segment: from 2 s to the end of its last whole fragment (3 s).
        assert_eq!(
            (metas[1].start.0, metas[1].end.0),
            (t0 + 2_000_000, t0 + 3_000_000)
        );
        assert!(
            metas[1].object_key.contains("gate-1"),
            "{}",
            metas[1].object_key
        );
        assert!(!dir.path().join("orphaned").exists(), "nothing orphaned");
        let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("edirne/gate-1"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    fn frame(n: i64, ticks: i64, wall: i64, info: &Arc<TrackInfo>) -> Frame {
        let key = n % 25 == 0;
        Frame {
            dts: ticks,
            pts: ticks,
            keyframe: key,
            data: bytes::Bytes::from_static(if key {
                &[0, 0, 0, 2, 0x65, 0x88]
            } else {
                &[0, 0, 0, 2, 0x41, 0x9a]
            }),
            wall_clock: us_to_system_time(wall),
            track: info.clone(),
        }
    }

    fn recorder(spool: &Arc<Spool>) -> Recorder {
        Recorder::new(
            "edirne",
            "gate-1",
            "ingest-0",
            "",
            Duration::from_secs(2),
            spool.clone(),
            StatusBoard::new(),
            None,
        )
    }

    type Span = (i64, i64);

    /// Drains the spool: segments as (start, end), gaps as (start, end, reason).
    fn drain(spool: &Spool) -> (Vec<Span>, Vec<(i64, i64, GapReason)>) {
        let (mut segs, mut gaps) = (Vec::new(), Vec::new());
        loop {
            let heads = spool.heads();
            let Some(e) = heads.first() else { break };
            match &e.record {
                Record::Segment(m) => segs.push((m.start.0, m.end.0)),
                Record::Gap(g) => gaps.push((g.start.0, g.end.0, g.reason)),
                Record::Resume(_) => {}
            }
            spool.complete(e).unwrap();
        }
        (segs, gaps)
    }

    /// Issue 16 (faults finding 1): a camera that stops sending for 3 s — less than the stall
    /// timeout, so the session goes on — and resumes leaves no frame held across the hole:
    /// the segment ends at the frame before it, the hole is a `stream_lost` gap, and
    /// recording resumes at the next keyframe.
    #[test]
    fn a_short_stall_is_a_gap_not_a_held_frame() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Arc::new(Spool::open(dir.path(), 1 << 30).unwrap());
        let mut r = recorder(&spool);
        let info = track();
        let t0: i64 = 1_795_773_600_000_000;
        let stall_us = 3_000_000;
        // 4 s, a 3 s stall (the next frame is a P-frame: recording waits for a keyframe),
        // then 4 s more.
        for n in 0..200i64 {
            let shift = if n >= 100 { stall_us } else { 0 };
            let n_key = if n >= 100 { n + 5 } else { n };
            let ticks = n * 3600 + shift * 9 / 100;
            r.on_frame(frame(n_key, ticks, t0 + n * 40_000 + shift, &info))
                .unwrap();
        }
        r.end_session(GapReason::IngestRestart, "test").unwrap();
        let (segs, gaps) = drain(&spool);
        assert_eq!(gaps.len(), 1, "{gaps:?}");
        let (g_start, g_end, reason) = gaps[0];
        assert_eq!(reason, GapReason::StreamLost);
        // Before the stall: 100 frames end at 4 s; after it, the first keyframe is frame 120
        // (n_key 125), at 4.8 s + 3 s.
        assert_eq!(g_start, t0 + 4_000_000);
        assert_eq!(g_end, t0 + 120 * 40_000 + stall_us);
        let before: Vec<_> = segs.iter().filter(|s| s.1 <= g_start).collect();
        let after: Vec<_> = segs.iter().filter(|s| s.0 >= g_end).collect();
        assert_eq!(
            before.len() + after.len(),
            segs.len(),
            "a segment spans the gap: {segs:?}"
        );
        assert_eq!(before.last().unwrap().1, g_start);
        assert_eq!(after.first().unwrap().0, g_end);
    }

    /// Jumps under the limit (a camera dropping a few frames) stay inside the segment.
    #[test]
    fn dropped_frames_do_not_split_segments() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Arc::new(Spool::open(dir.path(), 1 << 30).unwrap());
        let mut r = recorder(&spool);
        let info = track();
        let t0: i64 = 1_795_773_600_000_000;
        for n in (0..150i64).filter(|n| !(60..80).contains(n)) {
            r.on_frame(frame(n, n * 3600, t0 + n * 40_000, &info))
                .unwrap();
        }
        r.end_session(GapReason::IngestRestart, "test").unwrap();
        let (segs, gaps) = drain(&spool);
        assert!(gaps.is_empty(), "{gaps:?}");
        for w in segs.windows(2) {
            assert_eq!(w[0].1, w[1].0, "segments not contiguous");
        }
    }

    /// Issue 16 (faults finding 3): a spool that cannot be written is not the camera's fault.
    /// Frames keep being accepted (the session is not torn down), footage is refused and
    /// counted, the account matches the disk, and once the spool can be written recording
    /// resumes with a `spool_overflow` gap over the hole.
    #[test]
    fn an_unwritable_spool_refuses_footage_and_keeps_the_session() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Arc::new(Spool::open(dir.path(), 1 << 30).unwrap());
        let mut r = recorder(&spool);
        let info = track();
        let t0: i64 = 1_795_773_600_000_000;
        let refused = || {
            metrics::get()
                .spool_refused
                .with_label_values(&["edirne"])
                .get()
        };
        let refused_before = refused();
        let cam_dir = dir.path().join("edirne").join("gate-1");
        let mut n = 0i64;
        let mut feed = |r: &mut Recorder, frames: i64| {
            for _ in 0..frames {
                r.on_frame(frame(n, n * 3600, t0 + n * 40_000, &info))
                    .expect("a spool failure must not end the session");
                n += 1;
            }
        };
        feed(&mut r, 100);
        // The camera's spool directory becomes unwritable: a file where it was.
        let (segs_before, _) = drain(&spool);
        std::fs::remove_dir_all(&cam_dir).unwrap();
        std::fs::write(&cam_dir, b"not a directory").unwrap();
        feed(&mut r, 100);
        assert!(!r.is_recording());
        assert!(refused() > refused_before, "refusals not counted");
        assert_eq!(spool.used_bytes(), 0, "reservations leaked");
        std::fs::remove_file(&cam_dir).unwrap();
        feed(&mut r, 100);
        assert!(r.is_recording());
        r.end_session(GapReason::IngestRestart, "test").unwrap();
        let (segs, gaps) = drain(&spool);
        assert_eq!(gaps.len(), 1, "{gaps:?}");
        assert_eq!(gaps[0].2, GapReason::SpoolOverflow);
        // The hole runs from the last segment stored before the failure to the first after.
        let last_before = segs_before.last().unwrap().1;
        assert_eq!(gaps[0].0, last_before, "{gaps:?} {segs_before:?}");
        assert_eq!(segs.first().unwrap().0, gaps[0].1);
        assert_eq!(spool.used_bytes(), 0);
    }

    /// Issue 16 (clock fault): a wall clock stepped back an hour, in a new run of ingest,
    /// does not place new footage before what is stored: the first segment starts where the
    /// recording ends (the floor from storage), and the rest follow it contiguously.
    #[test]
    fn a_wall_clock_behind_the_stored_recording_does_not_overlap_it() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Arc::new(Spool::open(dir.path(), 1 << 30).unwrap());
        let t0: i64 = 1_795_773_600_000_000;
        let stored_until = t0 + 3_600_000_000;
        let mut r = recorder(&spool).with_floor(Some(stored_until));
        let info = track();
        for n in 0..150i64 {
            r.on_frame(frame(n, n * 3600, t0 + n * 40_000, &info))
                .unwrap();
        }
        r.end_session(GapReason::IngestRestart, "test").unwrap();
        let (segs, gaps) = drain(&spool);
        assert!(gaps.is_empty(), "{gaps:?}");
        assert_eq!(segs[0].0, stored_until, "{segs:?}");
        for w in segs.windows(2) {
            assert_eq!(w[0].1, w[1].0, "segments not contiguous");
        }
    }
}
