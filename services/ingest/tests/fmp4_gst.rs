//! Segments written from real encoder output, checked the way a player sees them.
//!
//! GStreamer encodes a test pattern (x264/x265, 320x240, 25 fps) into an appsink with the caps the
//! ingest pipeline gets from `h264parse`/`h265parse`; the samples go through `SegmentWriter` into
//! a file; `ffprobe` and `ffmpeg` (which must be installed) and GStreamer's own `qtdemux` then read
//! that file back.

use std::{
    collections::HashMap,
    fs::File,
    io::BufWriter,
    path::{Path, PathBuf},
    process::Command,
};

use bytes::Bytes;
use gstreamer::{self as gst, prelude::*};
use gstreamer_app as gst_app;
use kordon_ingest::fmp4::{
    Codec, Sample, SegmentSummary, SegmentWriter, TrackConfig, ns_to_timescale,
};
use sha2::{Digest, Sha256};

const TIMESCALE: u32 = 90_000;
const FRAMES: u32 = 150;
/// One frame at 25 fps, in ticks.
const FRAME: u64 = 3600;

struct Encoded {
    track: TrackConfig,
    samples: Vec<Sample>,
}

/// Encodes `FRAMES` frames of a moving pattern, a keyframe every 25 frames.
fn encode(codec: Codec, bframes: u32) -> Encoded {
    gst::init().expect("GStreamer initialises");
    let encoder = match codec {
        Codec::H264 => format!(
            "x264enc key-int-max=25 bframes={bframes} b-adapt=false speed-preset=veryfast \
             option-string=scenecut=0 ! h264parse ! video/x-h264,stream-format=avc,alignment=au"
        ),
        Codec::H265 => format!(
            "x265enc key-int-max=25 speed-preset=ultrafast \
             option-string=bframes={bframes}:b-adapt=0:scenecut=0 ! h265parse ! \
             video/x-h265,stream-format=hvc1,alignment=au"
        ),
    };
    for element in [
        "videotestsrc",
        "x264enc",
        "h264parse",
        "x265enc",
        "h265parse",
        "appsink",
    ] {
        assert!(
            gst::ElementFactory::find(element).is_some(),
            "GStreamer element {element} is missing (gst-plugins-base/good/bad/ugly)"
        );
    }
    let pipeline = gst::parse::launch(&format!(
        "videotestsrc num-buffers={FRAMES} pattern=ball ! \
         video/x-raw,format=I420,width=320,height=240,framerate=25/1 ! {encoder} ! appsink name=sink sync=false"
    ))
    .expect("pipeline parses")
    .downcast::<gst::Pipeline>()
    .expect("a pipeline");
    let sink = pipeline
        .by_name("sink")
        .expect("appsink")
        .downcast::<gst_app::AppSink>()
        .expect("appsink");
    pipeline.set_state(gst::State::Playing).expect("playing");

    let mut track = None;
    let mut samples = Vec::new();
    while let Ok(sample) = sink.pull_sample() {
        if track.is_none() {
            let caps = sample.caps().expect("caps");
            let s = caps.structure(0).expect("caps structure");
            let codec_data = s.get::<gst::Buffer>("codec_data").expect("codec_data");
            let codec_data = codec_data.map_readable().expect("readable").to_vec();
            track = Some(TrackConfig {
                codec,
                codec_data,
                width: s.get::<i32>("width").expect("width") as u32,
                height: s.get::<i32>("height").expect("height") as u32,
                timescale: TIMESCALE,
            });
        }
        let buffer = sample.buffer().expect("buffer");
        let pts = buffer.pts().expect("PTS");
        let dts = buffer.dts().unwrap_or(pts);
        samples.push(Sample {
            dts: ns_to_timescale(dts.nseconds(), TIMESCALE),
            pts: ns_to_timescale(pts.nseconds(), TIMESCALE),
            keyframe: !buffer.flags().contains(gst::BufferFlags::DELTA_UNIT),
            data: Bytes::from(buffer.map_readable().expect("readable").to_vec()),
        });
    }
    let error = pipeline
        .bus()
        .expect("bus")
        .pop_filtered(&[gst::MessageType::Error]);
    pipeline.set_state(gst::State::Null).expect("stops");
    assert!(error.is_none(), "encoding failed: {error:?}");
    assert_eq!(samples.len(), FRAMES as usize, "every frame came out");
    Encoded {
        track: track.expect("at least one sample"),
        samples,
    }
}

/// Writes `samples` as one segment, a fragment per GOP, the way ingest does.
fn write_segment(
    path: &Path,
    track: &TrackConfig,
    samples: &[Sample],
    last_duration: u32,
) -> SegmentSummary {
    let file = BufWriter::new(File::create(path).expect("create"));
    let mut writer = SegmentWriter::new(file, track).expect("writer");
    for (n, sample) in samples.iter().enumerate() {
        writer.push(sample.clone()).expect("push");
        if n > 0 && sample.keyframe {
            // Pushing the keyframe gave the previous GOP's last sample its duration.
            writer.flush_fragment().expect("fragment");
        }
    }
    let (_, summary) = writer.finish(last_duration).expect("finish");
    summary
}

fn ffprobe(path: &Path, args: &[&str]) -> String {
    let out = Command::new("ffprobe")
        .args(["-v", "error"])
        .args(args)
        .arg(path)
        .output()
        .expect("ffprobe is installed");
    assert!(
        out.status.success(),
        "ffprobe: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "ffprobe: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

/// `key=value` lines (`-of default=nw=1`) as a map.
fn fields(text: &str) -> HashMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// What a player sees; asserts that it matches what was written.
fn check_playback(path: &Path, codec: &str, samples: &[Sample], summary: &SegmentSummary) {
    // The file on disk is what was hashed, and init_size is where the first fragment starts.
    let bytes = std::fs::read(path).expect("read back");
    assert_eq!(bytes.len() as u64, summary.size);
    assert_eq!(<[u8; 32]>::from(Sha256::digest(&bytes)), summary.sha256);
    let top = top_level_boxes(&bytes);
    let first_moof = top
        .iter()
        .find(|(kind, _)| kind == "moof")
        .expect("a moof")
        .1;
    assert_eq!(first_moof, summary.init_size);
    assert_eq!(top[0].0, "ftyp");
    assert_eq!(top[1], ("moov".to_owned(), top[1].1));
    assert_eq!(summary.samples, samples.len() as u64);

    let stream = fields(&ffprobe(
        path,
        &[
            "-count_frames",
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=codec_name,width,height,nb_read_frames,time_base:format=duration",
            "-of",
            "default=nw=1",
        ],
    ));
    assert_eq!(stream["codec_name"], codec);
    assert_eq!(stream["width"], "320");
    assert_eq!(stream["height"], "240");
    assert_eq!(stream["time_base"], "1/90000");
    assert_eq!(
        stream["nb_read_frames"],
        samples.len().to_string(),
        "every frame decodes"
    );
    let duration: f64 = stream["duration"].parse().expect("a duration");
    let expected = summary.duration as f64 / f64::from(TIMESCALE);
    assert!(
        (duration - expected).abs() < 0.05,
        "ffprobe says {duration} s, the segment holds {expected} s"
    );

    // Packet by packet: decode order, timestamps relative to the first DTS, keyframe flags.
    let packets = ffprobe(
        path,
        &[
            "-select_streams",
            "v:0",
            "-show_entries",
            "packet=pts,dts,flags",
            "-of",
            "compact=p=0",
        ],
    );
    let packets: Vec<HashMap<String, String>> = packets
        .lines()
        .map(|l| {
            l.split('|')
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect()
        })
        .collect();
    assert_eq!(packets.len(), samples.len());
    let first_dts = samples[0].dts;
    assert_eq!(summary.first_dts, first_dts);
    for (n, (packet, sample)) in packets.iter().zip(samples).enumerate() {
        let ticks = |v: u64| (v - first_dts).to_string();
        assert_eq!(packet["dts"], ticks(sample.dts), "dts of packet {n}");
        assert_eq!(packet["pts"], ticks(sample.pts), "pts of packet {n}");
        assert_eq!(
            packet["flags"].starts_with('K'),
            sample.keyframe,
            "flags of packet {n}"
        );
    }

    let decode = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(path)
        .args(["-f", "null", "-"])
        .output()
        .expect("ffmpeg is installed");
    assert!(decode.status.success());
    assert!(
        decode.stderr.is_empty(),
        "decoding reported: {}",
        String::from_utf8_lossy(&decode.stderr)
    );
    check_gst_playback(path, samples);
}

/// Runs `filesrc ! {chain} ! appsink` over the file and returns the buffers that reach the sink.
fn gst_read(path: &Path, chain: &str) -> Vec<gst::Buffer> {
    let pipeline = gst::parse::launch(&format!(
        "filesrc location={} ! {chain} ! appsink name=sink sync=false",
        path.display()
    ))
    .expect("pipeline parses")
    .downcast::<gst::Pipeline>()
    .expect("a pipeline");
    let sink = pipeline
        .by_name("sink")
        .expect("appsink")
        .downcast::<gst_app::AppSink>()
        .expect("appsink");
    pipeline.set_state(gst::State::Playing).expect("playing");
    let mut buffers = Vec::new();
    while let Ok(sample) = sink.pull_sample() {
        buffers.push(sample.buffer_owned().expect("buffer"));
    }
    let error = pipeline
        .bus()
        .expect("bus")
        .pop_filtered(&[gst::MessageType::Error]);
    pipeline.set_state(gst::State::Null).expect("stops");
    assert!(error.is_none(), "GStreamer ({chain}) failed: {error:?}");
    buffers
}

/// GStreamer's `qtdemux` (what transcode and export read segments with) sees every sample with
/// its bytes, timestamps and sync flag, and `decodebin` decodes every frame.
fn check_gst_playback(path: &Path, samples: &[Sample]) {
    let demuxed = gst_read(path, "qtdemux");
    assert_eq!(demuxed.len(), samples.len());
    let first_dts = samples[0].dts;
    let ns = |ticks: u64| (ticks - first_dts) * 1_000_000_000 / u64::from(TIMESCALE);
    for (n, (buffer, sample)) in demuxed.iter().zip(samples).enumerate() {
        assert_eq!(
            buffer.dts().map(|t| t.nseconds()),
            Some(ns(sample.dts)),
            "dts {n}"
        );
        assert_eq!(
            buffer.pts().map(|t| t.nseconds()),
            Some(ns(sample.pts)),
            "pts {n}"
        );
        let delta = buffer.flags().contains(gst::BufferFlags::DELTA_UNIT);
        assert_eq!(!delta, sample.keyframe, "sync flag {n}");
        let data = buffer.map_readable().expect("readable");
        assert!(data.as_slice() == &sample.data[..], "bytes of sample {n}");
    }
    assert_eq!(
        gst_read(path, "decodebin").len(),
        samples.len(),
        "every frame decodes"
    );
}

fn top_level_boxes(bytes: &[u8]) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    let mut at = 0usize;
    while at + 8 <= bytes.len() {
        let size = u32::from_be_bytes(bytes[at..at + 4].try_into().expect("4 bytes")) as usize;
        assert!(size >= 8, "box size at {at}");
        out.push((
            String::from_utf8_lossy(&bytes[at + 4..at + 8]).into_owned(),
            at as u64,
        ));
        at += size;
    }
    assert_eq!(at, bytes.len(), "boxes tile the file");
    out
}

fn temp_file(dir: &tempfile::TempDir, name: &str) -> PathBuf {
    dir.path().join(name)
}

/// Composition offsets in ticks.
fn cts_offsets(samples: &[Sample]) -> Vec<i64> {
    samples
        .iter()
        .map(|s| s.pts as i64 - s.dts as i64)
        .collect()
}

#[test]
fn fmp4_h264_without_b_frames_plays_back() {
    let encoded = encode(Codec::H264, 0);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = temp_file(&dir, "segment.mp4");
    let summary = write_segment(&path, &encoded.track, &encoded.samples, FRAME as u32);
    assert_eq!(summary.duration, u64::from(FRAMES) * FRAME, "6 s");
    assert_eq!(summary.keyframes, 6);
    check_playback(&path, "h264", &encoded.samples, &summary);
}

#[test]
fn fmp4_h264_with_b_frames_keeps_presentation_order() {
    let encoded = encode(Codec::H264, 2);
    let offsets = cts_offsets(&encoded.samples);
    assert!(
        offsets.iter().any(|&o| o != offsets[0]),
        "the encoder made B-frames, so composition offsets vary"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let path = temp_file(&dir, "segment.mp4");
    let summary = write_segment(&path, &encoded.track, &encoded.samples, FRAME as u32);
    assert_eq!(summary.duration, u64::from(FRAMES) * FRAME);
    check_playback(&path, "h264", &encoded.samples, &summary);
}

#[test]
fn fmp4_h265_with_b_frames_plays_back() {
    let encoded = encode(Codec::H265, 2);
    let offsets = cts_offsets(&encoded.samples);
    assert!(offsets.iter().any(|&o| o != offsets[0]), "B-frames");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = temp_file(&dir, "segment.mp4");
    let summary = write_segment(&path, &encoded.track, &encoded.samples, FRAME as u32);
    assert_eq!(summary.duration, u64::from(FRAMES) * FRAME);
    check_playback(&path, "hevc", &encoded.samples, &summary);
}

#[test]
fn fmp4_segments_cut_at_keyframes_decode_on_their_own() {
    let encoded = encode(Codec::H264, 2);
    let samples = &encoded.samples;
    // Cut at the first keyframe at least 3 s after the start, as ingest cuts at ~6 s.
    let start = samples[0].dts;
    let cut = samples
        .iter()
        .position(|s| s.keyframe && s.dts - start >= 3 * u64::from(TIMESCALE))
        .expect("a keyframe after 3 s");
    let (first, second) = samples.split_at(cut);
    let dir = tempfile::tempdir().expect("tempdir");

    let path = temp_file(&dir, "first.mp4");
    let to_next = u32::try_from(second[0].dts - first[first.len() - 1].dts).expect("small");
    let summary = write_segment(&path, &encoded.track, first, to_next);
    assert_eq!(
        summary.duration,
        second[0].dts - first[0].dts,
        "no gap, no overlap"
    );
    check_playback(&path, "h264", first, &summary);

    let path = temp_file(&dir, "second.mp4");
    let summary = write_segment(&path, &encoded.track, second, FRAME as u32);
    assert_eq!(summary.first_dts, second[0].dts);
    check_playback(&path, "h264", second, &summary);
}
