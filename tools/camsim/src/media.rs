//! Encoded streams in memory and their on-disk cache format.
//!
//! A cache file holds one variant: its caps and its access units in decode order. Timestamps are
//! not stored: frame `i` of a loop is decoded at `i * FRAME_NS`; with B-frames each frame also
//! stores how many frames later or earlier it is shown (format 2; format 1, without B-frames,
//! is still read). Files are written to a temporary name and renamed, so a
//! concurrent reader (another process, another test) sees either nothing or a whole file.

use std::{
    io::{self, Write},
    path::Path,
    str::FromStr,
};

use gstreamer as gst;

use crate::config::{Codec, FPS, FRAME_NS};

const MAGIC: &[u8; 8] = b"KCAMSIM\x01";
/// Format 2: every frame also has its presentation offset (`i32`, frames).
const MAGIC_REORDERED: &[u8; 8] = b"KCAMSIM\x02";

/// One access unit as encoded, before it is put into a `gst::Buffer`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RawFrame {
    pub keyframe: bool,
    /// Presentation index minus decode index (0 without B-frames).
    pub pts_offset: i32,
    pub data: Vec<u8>,
}

/// A variant's encoded form as stored in the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RawStream {
    pub caps: String,
    pub frames: Vec<RawFrame>,
}

impl RawStream {
    pub fn write_to(&self, mut out: impl Write) -> io::Result<()> {
        let reordered = self.frames.iter().any(|f| f.pts_offset != 0);
        out.write_all(if reordered { MAGIC_REORDERED } else { MAGIC })?;
        let caps = self.caps.as_bytes();
        out.write_all(&len_u32(caps.len())?.to_le_bytes())?;
        out.write_all(caps)?;
        out.write_all(&len_u32(self.frames.len())?.to_le_bytes())?;
        for frame in &self.frames {
            out.write_all(&[u8::from(frame.keyframe)])?;
            if reordered {
                out.write_all(&frame.pts_offset.to_le_bytes())?;
            }
            out.write_all(&len_u32(frame.data.len())?.to_le_bytes())?;
            out.write_all(&frame.data)?;
        }
        out.flush()
    }

    /// Parses a cache file; any inconsistency is `InvalidData` (the caller re-encodes).
    pub fn parse(bytes: &[u8]) -> io::Result<RawStream> {
        let mut reader = Reader { bytes, pos: 0 };
        let reordered = match reader.take(MAGIC.len())? {
            m if m == MAGIC => false,
            m if m == MAGIC_REORDERED => true,
            _ => return Err(invalid("not a camsim cache file or an older format")),
        };
        let caps_len = reader.u32()? as usize;
        let caps = std::str::from_utf8(reader.take(caps_len)?)
            .map_err(|_| invalid("caps are not UTF-8"))?
            .to_owned();
        let count = reader.u32()? as usize;
        let mut frames = Vec::with_capacity(count.min(bytes.len() / 5));
        for _ in 0..count {
            let keyframe = match reader.take(1)?[0] {
                0 => false,
                1 => true,
                _ => return Err(invalid("bad frame flags")),
            };
            let pts_offset = if reordered { reader.u32()? as i32 } else { 0 };
            let len = reader.u32()? as usize;
            frames.push(RawFrame {
                keyframe,
                pts_offset,
                data: reader.take(len)?.to_vec(),
            });
        }
        if reader.pos != bytes.len() {
            return Err(invalid("trailing bytes"));
        }
        let stream = RawStream { caps, frames };
        stream.check()?;
        Ok(stream)
    }

    /// The invariants playback relies on: at least one frame, the first is a keyframe (so the
    /// loop point is a clean entry point), and the presentation indices are exactly the decode
    /// indices reordered (so the loop's timestamps continue seamlessly).
    pub fn check(&self) -> io::Result<()> {
        match self.frames.first() {
            None => return Err(invalid("no frames")),
            Some(first) if !first.keyframe => return Err(invalid("first frame is not a keyframe")),
            Some(_) => {}
        }
        let n = self.frames.len();
        let mut shown = vec![false; n];
        for (i, f) in self.frames.iter().enumerate() {
            let at = i64::try_from(i).unwrap_or(i64::MAX) + i64::from(f.pts_offset);
            match usize::try_from(at).ok().and_then(|at| shown.get_mut(at)) {
                Some(seen) if !*seen => *seen = true,
                _ => {
                    return Err(invalid(
                        "presentation order is not a permutation of the frames",
                    ));
                }
            }
        }
        Ok(())
    }
}

fn len_u32(len: usize) -> io::Result<u32> {
    u32::try_from(len).map_err(|_| invalid("too large for the cache format"))
}

fn invalid(message: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.to_owned())
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, len: usize) -> io::Result<&'a [u8]> {
        let end = self
            .pos
            .checked_add(len)
            .filter(|end| *end <= self.bytes.len())
            .ok_or_else(|| invalid("truncated"))?;
        let slice = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(slice)
    }

    fn u32(&mut self) -> io::Result<u32> {
        let bytes = self.take(4)?;
        Ok(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
    }
}

/// Writes `stream` to `path` atomically (temporary file in the same directory, then rename).
pub(crate) fn save(stream: &RawStream, path: &Path) -> io::Result<()> {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        path.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("stream"),
        std::process::id()
    ));
    let result = (|| {
        let file = std::fs::File::create(&tmp)?;
        let mut out = io::BufWriter::new(file);
        stream.write_to(&mut out)?;
        out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// What a stream is, as reported in camera status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StreamInfo {
    pub codec: Codec,
    pub width: u32,
    pub height: u32,
    pub frames: usize,
    /// Average bitrate over the loop in bit/s.
    pub bitrate: u64,
}

/// A variant ready to serve: caps for the `appsrc` and one buffer per access unit.
#[derive(Debug)]
pub(crate) struct EncodedStream {
    pub caps: gst::Caps,
    /// Access units without timestamps; keyframes lack `DELTA_UNIT`.
    pub frames: Vec<gst::Buffer>,
    /// Per frame: when it is shown after its decode time, in frames (`reorder + pts_offset`,
    /// never negative).
    pub shown_after: Vec<u32>,
    /// Indices of the keyframes, ascending, starting with 0.
    pub keyframes: Vec<usize>,
    pub info: StreamInfo,
}

impl EncodedStream {
    pub fn from_raw(raw: RawStream, codec: Codec) -> io::Result<EncodedStream> {
        raw.check()?;
        let caps = gst::Caps::from_str(&raw.caps).map_err(|_| invalid("unparsable caps"))?;
        let (width, height) = caps
            .structure(0)
            .and_then(|s| Some((s.get::<i32>("width").ok()?, s.get::<i32>("height").ok()?)))
            .and_then(|(w, h)| Some((u32::try_from(w).ok()?, u32::try_from(h).ok()?)))
            .ok_or_else(|| invalid("caps without dimensions"))?;
        let total_bytes: u64 = raw.frames.iter().map(|f| f.data.len() as u64).sum();
        let count = raw.frames.len();
        let mut keyframes = Vec::new();
        let mut frames = Vec::with_capacity(count);
        // Every frame is shown at or after its decode time: shift presentation by the deepest
        // reordering.
        let reorder = raw
            .frames
            .iter()
            .map(|f| -i64::from(f.pts_offset))
            .max()
            .unwrap_or(0)
            .max(0);
        let shown_after = raw
            .frames
            .iter()
            .map(|f| u32::try_from(reorder + i64::from(f.pts_offset)).unwrap_or(0))
            .collect();
        for (index, frame) in raw.frames.into_iter().enumerate() {
            let mut buffer = gst::Buffer::from_mut_slice(frame.data);
            let buffer_mut = buffer.make_mut();
            buffer_mut.set_duration(gst::ClockTime::from_nseconds(FRAME_NS));
            if frame.keyframe {
                keyframes.push(index);
            } else {
                buffer_mut.set_flags(gst::BufferFlags::DELTA_UNIT);
            }
            frames.push(buffer);
        }
        let bitrate = total_bytes * 8 * u64::from(FPS) / count as u64;
        Ok(EncodedStream {
            caps,
            frames,
            shown_after,
            keyframes,
            info: StreamInfo {
                codec,
                width,
                height,
                frames: count,
                bitrate,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> RawStream {
        RawStream {
            caps: "video/x-h264, stream-format=(string)byte-stream, alignment=(string)au, \
                   width=(int)640, height=(int)360, framerate=(fraction)25/1"
                .into(),
            frames: vec![
                RawFrame {
                    keyframe: true,
                    pts_offset: 0,
                    data: vec![0, 0, 0, 1, 0x65, 1, 2, 3],
                },
                RawFrame {
                    keyframe: false,
                    pts_offset: 0,
                    data: vec![0, 0, 0, 1, 0x41, 9],
                },
                RawFrame {
                    keyframe: true,
                    pts_offset: 0,
                    data: vec![0, 0, 0, 1, 0x65],
                },
            ],
        }
    }

    #[test]
    fn cache_format_round_trips() {
        let stream = sample();
        let mut bytes = Vec::new();
        stream.write_to(&mut bytes).expect("write to memory");
        assert_eq!(RawStream::parse(&bytes).expect("parse"), stream);
    }

    #[test]
    fn reordered_streams_round_trip_and_are_checked() {
        // I P B: the P-frame is shown after the B-frame.
        let mut stream = sample();
        stream.frames[1].pts_offset = 1;
        stream.frames[2].pts_offset = -1;
        stream.frames[2].keyframe = false;
        let mut bytes = Vec::new();
        stream.write_to(&mut bytes).expect("write to memory");
        assert_eq!(RawStream::parse(&bytes).expect("parse"), stream);
        gst::init().expect("gstreamer initialises");
        let encoded = EncodedStream::from_raw(stream.clone(), Codec::H264).expect("valid");
        assert_eq!(encoded.shown_after, vec![1, 2, 0]);

        stream.frames[2].pts_offset = 0; // two frames shown at index 2
        assert!(stream.check().is_err());
    }

    #[test]
    fn damaged_cache_files_are_rejected() {
        let mut bytes = Vec::new();
        sample().write_to(&mut bytes).expect("write to memory");
        for len in [0, 4, 8, 20, bytes.len() - 1] {
            assert!(
                RawStream::parse(&bytes[..len]).is_err(),
                "truncated to {len}"
            );
        }
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert!(RawStream::parse(&trailing).is_err());
        let mut magic = bytes.clone();
        magic[7] = 2;
        assert!(RawStream::parse(&magic).is_err());

        let mut no_key = sample();
        no_key.frames[0].keyframe = false;
        let mut bytes = Vec::new();
        no_key.write_to(&mut bytes).expect("write to memory");
        assert!(RawStream::parse(&bytes).is_err());
    }

    #[test]
    fn encoded_stream_knows_its_keyframes_and_bitrate() {
        gst::init().expect("gstreamer initialises");
        let stream = EncodedStream::from_raw(sample(), Codec::H264).expect("valid");
        assert_eq!(stream.keyframes, vec![0, 2]);
        assert_eq!((stream.info.width, stream.info.height), (640, 360));
        assert!(
            !stream.frames[0]
                .flags()
                .contains(gst::BufferFlags::DELTA_UNIT)
        );
        assert!(
            stream.frames[1]
                .flags()
                .contains(gst::BufferFlags::DELTA_UNIT)
        );
        // 19 bytes over 3 frames at 25 fps.
        assert_eq!(stream.info.bitrate, 19 * 8 * 25 / 3);
    }

    #[test]
    fn save_is_atomic_and_readable() {
        let dir = std::env::temp_dir().join(format!("camsim-media-test-{}", std::process::id()));
        let path = dir.join("x.kcs");
        save(&sample(), &path).expect("save");
        let bytes = std::fs::read(&path).expect("read back");
        assert_eq!(RawStream::parse(&bytes).expect("parse"), sample());
        let leftovers: Vec<_> = std::fs::read_dir(&dir)
            .expect("list")
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
