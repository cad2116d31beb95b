//! Feeds a channel's `appsrc` from an encoded stream in memory.
//!
//! Each channel pipeline is `appsrc ! rtph26xpay`. The `appsrc` asks for data (`need-data`) and
//! gets one access unit at a time: a shallow copy of the cached buffer (the payload memory is
//! shared, only the timestamps are new). The pipeline's sinks sync on the clock, which paces the
//! stream at 25 fps.

use std::sync::{Arc, Mutex, PoisonError};

use gstreamer::{self as gst, prelude::*};
use gstreamer_app as gst_app;

use crate::{config::FRAME_NS, media::EncodedStream};

/// Lateness beyond which the pipeline is considered to have been paused, and the timestamps are
/// moved forward to the present instead of bursting the backlog.
const CATCH_UP_THRESHOLD_NS: u64 = 200_000_000;

/// Position in a looping stream and the timestamps handed out so far.
///
/// Frame `emitted` is at `offset + emitted * FRAME_NS`: across the loop point the timestamps
/// simply continue (loop `n` adds `n` times the loop's duration). Only a catch-up after a pause
/// moves `offset`, forward.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Cursor {
    index: usize,
    len: usize,
    emitted: u64,
    offset: u64,
}

impl Cursor {
    /// Starts at frame `start` of a `len`-frame loop, at timestamp 0.
    pub fn new(start: usize, len: usize) -> Cursor {
        let len = len.max(1);
        Cursor {
            index: start % len,
            len,
            emitted: 0,
            offset: 0,
        }
    }

    /// Timestamp of the next frame.
    pub fn next_pts(&self) -> u64 {
        self.offset + self.emitted * FRAME_NS
    }

    /// The next frame's index in the loop and its timestamp; advances.
    pub fn advance(&mut self) -> (usize, u64) {
        let item = (self.index, self.next_pts());
        self.index = (self.index + 1) % self.len;
        self.emitted += 1;
        item
    }

    /// If the next frame would be late by more than the threshold at running time `now`, moves
    /// the timestamps forward so that it is due now. Returns whether it moved them.
    pub fn catch_up(&mut self, now: u64) -> bool {
        let next = self.next_pts();
        if now > next + CATCH_UP_THRESHOLD_NS {
            self.offset += now - next;
            true
        } else {
            false
        }
    }
}

/// The keyframe at or before `position_ns` in the loop, so that a channel starts where a live
/// camera would be (within one GOP).
pub(crate) fn join_index(keyframes: &[usize], len: usize, position_ns: u64) -> usize {
    let len = len.max(1);
    let frame = (position_ns / FRAME_NS % len as u64) as usize;
    keyframes
        .iter()
        .rev()
        .find(|k| **k <= frame)
        .copied()
        .unwrap_or(0)
}

#[derive(Debug)]
struct FeederState {
    cursor: Cursor,
    /// The next buffer starts a new run of data (first buffer, after a pause).
    discont: bool,
}

/// One channel pipeline's feed.
pub(crate) struct Feeder {
    stream: Arc<EncodedStream>,
    state: Mutex<FeederState>,
}

impl Feeder {
    /// Configures `appsrc` to be fed from `stream`, starting at the keyframe at or before
    /// `position_ns`.
    pub fn attach(appsrc: &gst_app::AppSrc, stream: Arc<EncodedStream>, position_ns: u64) {
        let start = join_index(&stream.keyframes, stream.frames.len(), position_ns);
        appsrc.set_caps(Some(&stream.caps));
        appsrc.set_format(gst::Format::Time);
        appsrc.set_stream_type(gst_app::AppStreamType::Stream);
        appsrc.set_is_live(false);
        let feeder = Feeder {
            state: Mutex::new(FeederState {
                cursor: Cursor::new(start, stream.frames.len()),
                discont: true,
            }),
            stream,
        };
        appsrc.set_callbacks(
            gst_app::AppSrcCallbacks::builder()
                .need_data(move |appsrc, _| feeder.feed(appsrc))
                .build(),
        );
    }

    /// Pushes the next access unit.
    fn feed(&self, appsrc: &gst_app::AppSrc) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(now) = running_time(appsrc)
            && state.cursor.catch_up(now)
        {
            state.discont = true;
        }
        let (index, dts) = state.cursor.advance();
        let Some(template) = self.stream.frames.get(index) else {
            let _ = appsrc.end_of_stream();
            return;
        };
        // With B-frames a frame is shown some frames after it is decoded; RTP carries the PTS.
        let shown_after = self.stream.shown_after.get(index).copied().unwrap_or(0);
        let pts = dts + u64::from(shown_after) * FRAME_NS;
        let mut buffer = template.copy();
        {
            let buffer = buffer.make_mut();
            buffer.set_pts(gst::ClockTime::from_nseconds(pts));
            buffer.set_dts(gst::ClockTime::from_nseconds(dts));
            if state.discont {
                buffer.set_flags(gst::BufferFlags::DISCONT);
                state.discont = false;
            }
        }
        // An error means flushing or shutting down: the pipeline is going away.
        let _ = appsrc.push_buffer(buffer);
    }
}

/// The running time of the appsrc's pipeline, once it has a clock and is playing.
fn running_time(appsrc: &gst_app::AppSrc) -> Option<u64> {
    if appsrc.current_state() != gst::State::Playing {
        return None;
    }
    let clock = appsrc.clock()?;
    let base = appsrc.base_time()?;
    clock.time().checked_sub(base).map(gst::ClockTime::nseconds)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_continue_across_the_loop_point() {
        let mut cursor = Cursor::new(0, 250);
        let mut previous = None;
        for n in 0..(3 * 250) {
            let (index, pts) = cursor.advance();
            assert_eq!(index, n % 250);
            assert_eq!(pts, n as u64 * FRAME_NS);
            if let Some(previous) = previous {
                assert_eq!(pts - previous, FRAME_NS, "no jump at frame {n}");
            }
            previous = Some(pts);
        }
    }

    #[test]
    fn a_late_start_begins_mid_loop_at_timestamp_zero() {
        let mut cursor = Cursor::new(200, 250);
        assert_eq!(cursor.advance(), (200, 0));
        for _ in 0..48 {
            cursor.advance();
        }
        assert_eq!(cursor.advance(), (249, 49 * FRAME_NS));
        assert_eq!(cursor.advance(), (0, 50 * FRAME_NS));
    }

    #[test]
    fn catch_up_moves_forward_only_after_a_real_gap() {
        let mut cursor = Cursor::new(0, 250);
        cursor.advance();
        // Slightly late: leave alone, the sink catches up.
        assert!(!cursor.catch_up(FRAME_NS + 100_000_000));
        assert!(!cursor.catch_up(0));
        assert_eq!(cursor.next_pts(), FRAME_NS);
        // Three seconds late (a pause): the next frame is due now, and later ones follow it.
        let now = 3_000_000_000 + FRAME_NS;
        assert!(cursor.catch_up(now));
        assert_eq!(cursor.advance(), (1, now));
        assert_eq!(cursor.advance(), (2, now + FRAME_NS));
    }

    #[test]
    fn starts_at_the_keyframe_before_the_position() {
        let keyframes = [0, 50, 100, 150, 200];
        assert_eq!(join_index(&keyframes, 250, 0), 0);
        assert_eq!(join_index(&keyframes, 250, 49 * FRAME_NS), 0);
        assert_eq!(join_index(&keyframes, 250, 50 * FRAME_NS), 50);
        assert_eq!(join_index(&keyframes, 250, 249 * FRAME_NS), 200);
        // Wraps around the loop.
        assert_eq!(join_index(&keyframes, 250, (250 + 120) * FRAME_NS), 100);
        assert_eq!(join_index(&[0], 0, 1), 0);
    }
}
