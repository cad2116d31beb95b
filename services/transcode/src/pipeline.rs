//! The GStreamer side of transcode: which encoders and decoders this host has, and the
//! pipelines one unit of work (one source segment) runs through.
//!
//! # Pipelines
//! Every pipeline starts from one stored segment, pushed whole into an `appsrc`; `decodebin`
//! finds `qtdemux` and the best decoder the registry has (hardware where present).
//! - [`encode_segment`] (renditions): `appsrc ! decodebin ! videoconvert ! videoscale !
//!   videorate max-rate=F ! video/x-raw,format=I420,width=W,height=H ! <encoder> ! <parser> !
//!   stream-format=avc|hvc1,alignment=au ! appsink` — every step in GStreamer, no copy through
//!   Rust until the encoded access units.
//! - [`decode_segment`] (thumbnails, viewer copies): `… ! videoconvert ! videoscale !
//!   video/x-raw,format=BGR,width=W,height=H ! appsink`: packed BGR pictures handed to a closure,
//!   which may stop early (a thumbnail needs one picture).
//! - [`FrameEncoder`] (viewer copies): `appsrc (BGR) ! videoconvert ! <encoder> ! <parser> ! …
//!   ! appsink`, fed the pictures the closure changed.
//!
//! # Encoders
//! [`Codecs::probe`] looks for hardware encoders first (`nvh264enc`, `vah264enc`,
//! `vaapih264enc`, `qsvh264enc`, `v4l2h264enc` and their H.265 twins), then `x264enc`/`x265enc`,
//! then `openh264enc`; an element counts only if it reaches READY (a plugin may register
//! without a usable device). `transcode.encoder` picks `auto`, `software` or one element.
//! With bframes off and the same settings, `x264enc` gives the same bytes for the same input on
//! every run, which is what makes an interrupted job's output equal to an uninterrupted one's.
//!
//! # Timestamps
//! Outputs keep the source's frame timing relative to the segment's first frame; the caller
//! places them on its own timeline (the source segment's `tfdt` for renditions, the export's
//! for viewer copies) through [`kordon_media::fmp4::SegmentWriter::new_at`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use kordon_media::fmp4::{Sample, SegmentWriter};
use kordon_media::{Codec, TIMESCALE, TrackConfig, TrackInfo};
use kordon_proto::transcode::v1 as pb;

use crate::TranscodeError;
use crate::config::EncoderChoice;

/// Candidate encoders per codec, best first: `(element, hardware)`.
const H264_ENCODERS: &[(&str, bool)] = &[
    ("nvh264enc", true),
    ("vah264enc", true),
    ("vaapih264enc", true),
    ("qsvh264enc", true),
    ("v4l2h264enc", true),
    ("x264enc", false),
    ("openh264enc", false),
];
const H265_ENCODERS: &[(&str, bool)] = &[
    ("nvh265enc", true),
    ("vah265enc", true),
    ("vaapih265enc", true),
    ("qsvh265enc", true),
    ("v4l2h265enc", true),
    ("x265enc", false),
];
/// Decoders shown in status (`decodebin` picks among them by rank).
const DECODERS: &[(&str, Codec, bool)] = &[
    ("nvh264dec", Codec::H264, true),
    ("vah264dec", Codec::H264, true),
    ("vaapih264dec", Codec::H264, true),
    ("v4l2h264dec", Codec::H264, true),
    ("avdec_h264", Codec::H264, false),
    ("openh264dec", Codec::H264, false),
    ("nvh265dec", Codec::H265, true),
    ("vah265dec", Codec::H265, true),
    ("vaapih265dec", Codec::H265, true),
    ("v4l2h265dec", Codec::H265, true),
    ("avdec_h265", Codec::H265, false),
];

/// The longest a pipeline may take for one segment before it is considered stuck.
const UNIT_TIMEOUT: Duration = Duration::from_secs(600);

/// One element of the registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Element {
    pub name: String,
    pub codec: Codec,
    pub hardware: bool,
}

/// What this host can decode and encode, and which encoder each codec uses.
#[derive(Debug, Clone, Default)]
pub struct Codecs {
    pub encoders: Vec<Element>,
    pub decoders: Vec<Element>,
    pub h264: Option<String>,
    pub h265: Option<String>,
}

fn usable(name: &str) -> bool {
    if gst::ElementFactory::find(name).is_none() {
        return false;
    }
    let Ok(e) = gst::ElementFactory::make(name).build() else {
        return false;
    };
    let ok = e.set_state(gst::State::Ready).is_ok();
    let _ = e.set_state(gst::State::Null);
    ok
}

impl Codecs {
    /// Probes the registry and picks an encoder per codec. An element named in the config
    /// that this host lacks is a configuration error naming what it has.
    pub fn probe(choice: &EncoderChoice) -> Result<Codecs, TranscodeError> {
        kordon_media::init().map_err(|e| TranscodeError::config("encoder", e.to_string()))?;
        let mut out = Codecs::default();
        for (list, codec) in [(H264_ENCODERS, Codec::H264), (H265_ENCODERS, Codec::H265)] {
            for (name, hardware) in list {
                if usable(name) {
                    out.encoders.push(Element {
                        name: name.to_string(),
                        codec,
                        hardware: *hardware,
                    });
                }
            }
        }
        for (name, codec, hardware) in DECODERS {
            if gst::ElementFactory::find(name).is_some() {
                out.decoders.push(Element {
                    name: name.to_string(),
                    codec: *codec,
                    hardware: *hardware,
                });
            }
        }
        let pick = |codec: Codec, software_only: bool| {
            out.encoders
                .iter()
                .find(|e| e.codec == codec && !(software_only && e.hardware))
                .map(|e| e.name.clone())
        };
        let (h264, h265) = match choice {
            EncoderChoice::Auto => (pick(Codec::H264, false), pick(Codec::H265, false)),
            EncoderChoice::Software => (pick(Codec::H264, true), pick(Codec::H265, true)),
            EncoderChoice::Element(name) => {
                let Some(e) = out.encoders.iter().find(|e| &e.name == name) else {
                    let have: Vec<&str> = out.encoders.iter().map(|e| e.name.as_str()).collect();
                    return Err(TranscodeError::config(
                        "encoder",
                        format!(
                            "`{name}` is not a usable encoder on this host (usable: {})",
                            if have.is_empty() {
                                "none".to_string()
                            } else {
                                have.join(", ")
                            }
                        ),
                    ));
                };
                match e.codec {
                    Codec::H264 => (Some(name.clone()), pick(Codec::H265, false)),
                    Codec::H265 => (pick(Codec::H264, false), Some(name.clone())),
                }
            }
        };
        out.h264 = h264;
        out.h265 = h265;
        Ok(out)
    }

    /// The encoder for `codec`, or why there is none.
    pub fn encoder(&self, codec: Codec) -> Result<&str, TranscodeError> {
        let e = match codec {
            Codec::H264 => &self.h264,
            Codec::H265 => &self.h265,
        };
        e.as_deref().ok_or_else(|| {
            TranscodeError::Invalid(format!(
                "codec: this transcode process has no {} encoder (GStreamer's {} is missing)",
                codec.as_str(),
                match codec {
                    Codec::H264 => "x264enc",
                    Codec::H265 => "x265enc",
                }
            ))
        })
    }

    /// The status message's lists.
    pub fn to_proto(&self) -> (Vec<pb::CodecElement>, Vec<pb::CodecElement>) {
        let conv = |e: &Element, selected: bool| pb::CodecElement {
            element: e.name.clone(),
            codec: codec_proto(e.codec) as i32,
            hardware: e.hardware,
            selected,
        };
        let enc = self
            .encoders
            .iter()
            .map(|e| {
                let sel = match e.codec {
                    Codec::H264 => self.h264.as_deref() == Some(e.name.as_str()),
                    Codec::H265 => self.h265.as_deref() == Some(e.name.as_str()),
                };
                conv(e, sel)
            })
            .collect();
        let dec = self.decoders.iter().map(|e| conv(e, false)).collect();
        (enc, dec)
    }
}

pub fn codec_proto(c: Codec) -> kordon_proto::common::v1::VideoCodec {
    match c {
        Codec::H264 => kordon_proto::common::v1::VideoCodec::H264,
        Codec::H265 => kordon_proto::common::v1::VideoCodec::H265,
    }
}

/// Encoder settings of one job.
#[derive(Debug, Clone, PartialEq)]
pub struct EncodeSettings {
    pub element: String,
    pub codec: Codec,
    pub preset: pb::EncoderPreset,
    /// Average bits per second; `None` means the encoder's constant-quality mode.
    pub bitrate_bps: Option<u64>,
    /// Encoder threads; 0 lets the encoder decide.
    pub threads: u32,
}

/// Sets a numeric property whatever its integer type; absent properties are skipped.
fn set_num(e: &gst::Element, name: &str, v: u64) {
    let Some(spec) = e.find_property(name) else {
        return;
    };
    let t = spec.value_type();
    if t == u32::static_type() {
        e.set_property(name, u32::try_from(v).unwrap_or(u32::MAX));
    } else if t == i32::static_type() {
        e.set_property(name, i32::try_from(v).unwrap_or(i32::MAX));
    } else if t == u64::static_type() {
        e.set_property(name, v);
    } else if t == i64::static_type() {
        e.set_property(name, i64::try_from(v).unwrap_or(i64::MAX));
    } else if t == u8::static_type() {
        e.set_property(name, u8::try_from(v).unwrap_or(u8::MAX));
    }
}

fn set_str(e: &gst::Element, name: &str, v: &str) {
    if e.find_property(name).is_some() {
        e.set_property_from_str(name, v);
    }
}

/// Frames between keyframes: one per source segment is enough (each output segment starts
/// with one); long segments get one every 10 s at 30 fps.
const KEYINT: u64 = 300;

fn make_encoder(s: &EncodeSettings) -> Result<gst::Element, TranscodeError> {
    let e = gst::ElementFactory::make(&s.element)
        .build()
        .map_err(|e| TranscodeError::Media(format!("encoder {}: {e}", s.element)))?;
    let kbps = s.bitrate_bps.map(|b| b.div_ceil(1000).max(1));
    match s.element.as_str() {
        "x264enc" | "x265enc" => {
            set_str(
                &e,
                "speed-preset",
                match s.preset {
                    pb::EncoderPreset::Speed => "superfast",
                    pb::EncoderPreset::Quality => "medium",
                    _ => "veryfast",
                },
            );
            set_num(&e, "key-int-max", KEYINT);
            if s.element == "x264enc" {
                set_num(&e, "bframes", 0);
                set_num(&e, "threads", u64::from(s.threads));
                match kbps {
                    Some(k) => {
                        set_num(&e, "bitrate", k);
                        // One-pass average bitrate with a VBV of about two seconds.
                        set_str(&e, "pass", "cbr");
                        set_num(&e, "vbv-buf-capacity", 2000);
                    }
                    None => {
                        set_str(&e, "pass", "qual");
                        set_num(&e, "quantizer", 21);
                    }
                }
            } else {
                let mut opts = String::from("bframes=0");
                if s.threads > 0 {
                    opts.push_str(&format!(":pools={}", s.threads));
                }
                if kbps.is_none() {
                    opts.push_str(":crf=23");
                }
                e.set_property("option-string", opts);
                if let Some(k) = kbps {
                    set_num(&e, "bitrate", k);
                }
            }
        }
        "openh264enc" => {
            set_num(&e, "gop-size", KEYINT);
            if let Some(b) = s.bitrate_bps {
                set_num(&e, "bitrate", b);
            }
            set_str(
                &e,
                "complexity",
                match s.preset {
                    pb::EncoderPreset::Speed => "low",
                    pb::EncoderPreset::Quality => "high",
                    _ => "medium",
                },
            );
        }
        _ => {
            // Hardware encoders: the common properties, where they have them.
            if let Some(k) = kbps {
                set_num(&e, "bitrate", k);
            }
            for p in ["gop-size", "key-int-max", "idr-period"] {
                set_num(&e, p, KEYINT);
            }
            for p in ["bframes", "b-frames"] {
                set_num(&e, p, 0);
            }
        }
    }
    Ok(e)
}

fn parser_and_caps(codec: Codec) -> Result<(gst::Element, gst::Element), TranscodeError> {
    let (parser, caps) = match codec {
        Codec::H264 => (
            "h264parse",
            gst::Caps::builder("video/x-h264")
                .field("stream-format", "avc")
                .field("alignment", "au")
                .build(),
        ),
        Codec::H265 => (
            "h265parse",
            gst::Caps::builder("video/x-h265")
                .field("stream-format", "hvc1")
                .field("alignment", "au")
                .build(),
        ),
    };
    let p = make(parser)?;
    let f = make("capsfilter")?;
    f.set_property("caps", &caps);
    Ok((p, f))
}

fn make(name: &str) -> Result<gst::Element, TranscodeError> {
    gst::ElementFactory::make(name)
        .build()
        .map_err(|_| TranscodeError::Media(format!("GStreamer element `{name}` is missing")))
}

fn gst_err(e: impl std::fmt::Display) -> TranscodeError {
    TranscodeError::Media(format!("GStreamer: {e}"))
}

/// One encoded access unit, timed in nanoseconds from the unit's first frame.
#[derive(Debug, Clone)]
pub struct EncodedFrame {
    pub pts_ns: u64,
    pub dts_ns: u64,
    pub keyframe: bool,
    pub data: Bytes,
}

/// What an encoder produced for one unit.
#[derive(Debug, Clone)]
pub struct Encoded {
    pub track: TrackConfig,
    pub frames: Vec<EncodedFrame>,
}

impl Encoded {
    /// Writes the frames as one self-contained fMP4 segment whose timeline starts at
    /// `base_decode_time` (90 kHz) and lasts `duration` ticks (the last frame is stretched or
    /// shortened to end there), one fragment per keyframe, fragments numbered from
    /// `first_fragment` (or all in one fragment unless `per_keyframe`). Returns the bytes
    /// and the writer's summary.
    pub fn to_fmp4(
        &self,
        base_decode_time: u64,
        duration: u64,
        first_fragment: u32,
        per_keyframe: bool,
    ) -> Result<(Vec<u8>, kordon_media::fmp4::SegmentSummary), TranscodeError> {
        let fmp4 = |e: kordon_media::fmp4::Fmp4Error| TranscodeError::Media(format!("fMP4: {e}"));
        let mut w = SegmentWriter::new_at(Vec::new(), &self.track, base_decode_time)
            .map_err(fmp4)?
            .first_fragment(first_fragment);
        let ticks = |ns: u64| kordon_media::fmp4::ns_to_timescale(ns, TIMESCALE);
        let mut last_dts = None;
        for (i, f) in self.frames.iter().enumerate() {
            if per_keyframe && f.keyframe && i > 0 {
                w.flush_fragment().map_err(fmp4)?;
            }
            let dts = ticks(f.dts_ns);
            // Rounding to ticks must not make two frames share a decode time.
            let dts = match last_dts {
                Some(prev) if dts <= prev => prev + 1,
                _ => dts,
            };
            let pts = ticks(f.pts_ns).max(dts);
            w.push(Sample {
                dts,
                pts,
                keyframe: f.keyframe,
                data: f.data.clone(),
            })
            .map_err(fmp4)?;
            last_dts = Some(dts);
        }
        let first = self.frames.first().map(|f| ticks(f.dts_ns)).unwrap_or(0);
        let so_far = last_dts.map(|d| d - first).unwrap_or(0);
        let last = duration
            .checked_sub(so_far)
            .filter(|d| *d > 0)
            .and_then(|d| u32::try_from(d).ok())
            .unwrap_or(0);
        w.finish(last).map_err(fmp4)
    }
}

/// A source segment's bytes in an `appsrc` linked to `decodebin`, whose video pad is linked to
/// `first` when it appears.
fn source(
    pipeline: &gst::Pipeline,
    data: Bytes,
    first: &gst::Element,
) -> Result<gst_app::AppSrc, TranscodeError> {
    let appsrc = gst_app::AppSrc::builder()
        .format(gst::Format::Bytes)
        .is_live(false)
        .max_bytes(0)
        .size(data.len() as i64)
        .build();
    let decodebin = make("decodebin")?;
    pipeline
        .add_many([appsrc.upcast_ref(), &decodebin])
        .map_err(gst_err)?;
    appsrc.link(&decodebin).map_err(gst_err)?;
    let weak = first.downgrade();
    decodebin.connect_pad_added(move |_, pad| {
        let is_video = pad
            .current_caps()
            .and_then(|c| c.structure(0).map(|s| s.name().starts_with("video/")))
            .unwrap_or(true);
        let Some(next) = weak.upgrade() else { return };
        if let Some(sink) = next.static_pad("sink")
            && is_video
            && !sink.is_linked()
            && let Err(e) = pad.link(&sink)
        {
            tracing::warn!(error = ?e, "cannot link the decoder's output");
        }
    });
    appsrc
        .push_buffer(gst::Buffer::from_slice(data))
        .map_err(|e| gst_err(format!("push: {e:?}")))?;
    appsrc
        .end_of_stream()
        .map_err(|e| gst_err(format!("eos: {e:?}")))?;
    Ok(appsrc)
}

/// Stops a pipeline when dropped.
struct Running(gst::Pipeline);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.set_state(gst::State::Null);
    }
}

impl Running {
    fn start(pipeline: gst::Pipeline) -> Result<Running, TranscodeError> {
        let r = Running(pipeline);
        r.0.set_state(gst::State::Playing)
            .map_err(|e| gst_err(format!("cannot start: {e}")))?;
        Ok(r)
    }

    /// The first error on the bus, if any, as a message without element paths.
    fn error(&self) -> Option<TranscodeError> {
        let bus = self.0.bus()?;
        while let Some(msg) = bus.pop() {
            if let gst::MessageView::Error(e) = msg.view() {
                return Some(TranscodeError::Media(format!(
                    "the segment cannot be decoded or encoded: {}",
                    e.error()
                )));
            }
        }
        None
    }
}

/// Pulls every sample of `sink` until EOS, checking `cancel` between samples.
fn pull_all(
    running: &Running,
    sink: &gst_app::AppSink,
    cancel: &AtomicBool,
    mut each: impl FnMut(gst::Sample) -> Result<bool, TranscodeError>,
) -> Result<(), TranscodeError> {
    let started = std::time::Instant::now();
    loop {
        if cancel.load(Ordering::Relaxed) {
            return Err(TranscodeError::Cancelled);
        }
        if started.elapsed() > UNIT_TIMEOUT {
            return Err(TranscodeError::Media(format!(
                "one segment took more than {} s: stopped",
                UNIT_TIMEOUT.as_secs()
            )));
        }
        match sink.try_pull_sample(gst::ClockTime::from_mseconds(200)) {
            Some(s) => {
                if !each(s)? {
                    return Ok(());
                }
            }
            None if sink.is_eos() => break,
            None => {
                if let Some(e) = running.error() {
                    return Err(e);
                }
            }
        }
    }
    match running.error() {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

fn encoded_frame(s: &gst::Sample, origin: &mut Option<u64>) -> Option<EncodedFrame> {
    let b = s.buffer()?;
    let pts = b.pts().or(b.dts())?.nseconds();
    let dts = b
        .dts()
        .unwrap_or(gst::ClockTime::from_nseconds(pts))
        .nseconds();
    let o = *origin.get_or_insert(dts.min(pts));
    let map = b.map_readable().ok()?;
    Some(EncodedFrame {
        pts_ns: pts.saturating_sub(o),
        dts_ns: dts.saturating_sub(o),
        keyframe: !b.flags().contains(gst::BufferFlags::DELTA_UNIT),
        data: Bytes::copy_from_slice(map.as_slice()),
    })
}

fn track_of(sink: &gst_app::AppSink, s: &gst::Sample) -> Result<TrackConfig, TranscodeError> {
    let caps = s
        .caps()
        .map(|c| c.to_owned())
        .or_else(|| sink.static_pad("sink").and_then(|p| p.current_caps()))
        .ok_or_else(|| TranscodeError::Media("the encoder gave no caps".into()))?;
    let info = TrackInfo::from_caps(&caps).map_err(|e| TranscodeError::Media(e.to_string()))?;
    Ok(info.track)
}

/// Output size for a source of `w`x`h`: at most `max_height` high (0: the source's), never
/// upscaled, width from the aspect ratio; both even.
pub fn output_size(w: u32, h: u32, max_height: u32) -> (u32, u32) {
    let even = |v: u32| (v.max(2) / 2) * 2;
    if w == 0 || h == 0 {
        return (0, 0);
    }
    let out_h = even(if max_height == 0 {
        h
    } else {
        max_height.min(h)
    });
    let out_w = (u64::from(w) * u64::from(out_h) + u64::from(h) / 2) / u64::from(h);
    (even(out_w as u32), even(out_h))
}

/// Rendition of one segment: decoded, scaled to `width`x`height`, capped at `max_fps`
/// (0: keep), re-encoded. Blocking; run it on a blocking thread.
pub fn encode_segment(
    data: Bytes,
    width: u32,
    height: u32,
    max_fps: f64,
    settings: &EncodeSettings,
    cancel: &AtomicBool,
) -> Result<Encoded, TranscodeError> {
    let pipeline = gst::Pipeline::with_name("rendition");
    let convert = make("videoconvert")?;
    let scale = make("videoscale")?;
    let rate = make("videorate")?;
    if max_fps > 0.0 {
        // videorate's max-rate is whole frames per second.
        set_num(&rate, "max-rate", max_fps.floor().max(1.0) as u64);
    }
    let raw = make("capsfilter")?;
    raw.set_property(
        "caps",
        gst::Caps::builder("video/x-raw")
            .field("format", "I420")
            .field("width", width as i32)
            .field("height", height as i32)
            .field("pixel-aspect-ratio", gst::Fraction::new(1, 1))
            .build(),
    );
    let enc = make_encoder(settings)?;
    let (parse, filter) = parser_and_caps(settings.codec)?;
    let sink = gst_app::AppSink::builder().sync(false).build();
    pipeline
        .add_many([
            &convert,
            &scale,
            &rate,
            &raw,
            &enc,
            &parse,
            &filter,
            sink.upcast_ref(),
        ])
        .map_err(gst_err)?;
    gst::Element::link_many([
        &convert,
        &scale,
        &rate,
        &raw,
        &enc,
        &parse,
        &filter,
        sink.upcast_ref(),
    ])
    .map_err(gst_err)?;
    let _src = source(&pipeline, data, &convert)?;
    let running = Running::start(pipeline)?;
    let mut frames = Vec::new();
    let mut track = None;
    let mut origin = None;
    pull_all(&running, &sink, cancel, |s| {
        if track.is_none() {
            track = Some(track_of(&sink, &s)?);
        }
        if let Some(f) = encoded_frame(&s, &mut origin) {
            frames.push(f);
        }
        Ok(true)
    })?;
    let track =
        track.ok_or_else(|| TranscodeError::Media("the segment decoded to no pictures".into()))?;
    Ok(Encoded { track, frames })
}

/// A decoded picture: packed BGR8, `stride == width * 3`.
#[derive(Debug, Clone)]
pub struct Picture {
    pub width: u32,
    pub height: u32,
    /// Presentation time from the segment's first picture.
    pub pts_ns: u64,
    pub duration_ns: u64,
    pub bgr: Vec<u8>,
}

/// Decodes a segment to packed BGR at `width`x`height`, handing each picture (presentation
/// order) to `each` until it returns `false`. Blocking.
pub fn decode_segment(
    data: Bytes,
    width: u32,
    height: u32,
    cancel: &AtomicBool,
    mut each: impl FnMut(Picture) -> Result<bool, TranscodeError>,
) -> Result<(), TranscodeError> {
    let pipeline = gst::Pipeline::with_name("decode");
    let convert = make("videoconvert")?;
    let scale = make("videoscale")?;
    let raw = make("capsfilter")?;
    raw.set_property(
        "caps",
        gst::Caps::builder("video/x-raw")
            .field("format", "BGR")
            .field("width", width as i32)
            .field("height", height as i32)
            .field("pixel-aspect-ratio", gst::Fraction::new(1, 1))
            .build(),
    );
    let sink = gst_app::AppSink::builder()
        .sync(false)
        .max_buffers(4)
        .build();
    pipeline
        .add_many([&convert, &scale, &raw, sink.upcast_ref()])
        .map_err(gst_err)?;
    gst::Element::link_many([&convert, &scale, &raw, sink.upcast_ref()]).map_err(gst_err)?;
    let _src = source(&pipeline, data, &convert)?;
    let running = Running::start(pipeline)?;
    let mut origin = None;
    pull_all(&running, &sink, cancel, |s| {
        let Some(b) = s.buffer() else { return Ok(true) };
        let Some(pts) = b.pts() else { return Ok(true) };
        let o = *origin.get_or_insert(pts.nseconds());
        let map = b
            .map_readable()
            .map_err(|_| TranscodeError::Media("unreadable picture".into()))?;
        let stride = width as usize * 3;
        let rows = height as usize;
        if map.len() < stride * rows {
            return Err(TranscodeError::Media(
                "short picture from the decoder".into(),
            ));
        }
        each(Picture {
            width,
            height,
            pts_ns: pts.nseconds().saturating_sub(o),
            duration_ns: b.duration().map(|d| d.nseconds()).unwrap_or(0),
            bgr: map.as_slice()[..stride * rows].to_vec(),
        })
    })
}

/// Encodes BGR pictures one by one (viewer copies). Blocking.
pub struct FrameEncoder {
    running: Running,
    src: gst_app::AppSrc,
    sink: gst_app::AppSink,
    frames: Vec<EncodedFrame>,
    track: Option<TrackConfig>,
    origin: Option<u64>,
}

impl FrameEncoder {
    /// `fps` is the pictures' nominal rate (for the encoder's rate control).
    pub fn new(
        width: u32,
        height: u32,
        fps: f64,
        settings: &EncodeSettings,
    ) -> Result<FrameEncoder, TranscodeError> {
        let pipeline = gst::Pipeline::with_name("encode");
        let fps_n = (fps.max(1.0) * 1000.0).round() as i32;
        let src = gst_app::AppSrc::builder()
            .format(gst::Format::Time)
            .is_live(false)
            .caps(
                &gst::Caps::builder("video/x-raw")
                    .field("format", "BGR")
                    .field("width", width as i32)
                    .field("height", height as i32)
                    .field("framerate", gst::Fraction::new(fps_n, 1000))
                    .field("pixel-aspect-ratio", gst::Fraction::new(1, 1))
                    .build(),
            )
            // Back-pressure: pushing waits while ~8 pictures are queued.
            .max_bytes(u64::from(width) * u64::from(height) * 3 * 8)
            .block(true)
            .build();
        let convert = make("videoconvert")?;
        let raw = make("capsfilter")?;
        raw.set_property(
            "caps",
            gst::Caps::builder("video/x-raw")
                .field("format", "I420")
                .build(),
        );
        let enc = make_encoder(settings)?;
        let (parse, filter) = parser_and_caps(settings.codec)?;
        let sink = gst_app::AppSink::builder().sync(false).build();
        pipeline
            .add_many([
                src.upcast_ref(),
                &convert,
                &raw,
                &enc,
                &parse,
                &filter,
                sink.upcast_ref(),
            ])
            .map_err(gst_err)?;
        gst::Element::link_many([
            src.upcast_ref(),
            &convert,
            &raw,
            &enc,
            &parse,
            &filter,
            sink.upcast_ref(),
        ])
        .map_err(gst_err)?;
        let running = Running::start(pipeline)?;
        Ok(FrameEncoder {
            running,
            src,
            sink,
            frames: Vec::new(),
            track: None,
            origin: None,
        })
    }

    fn drain(&mut self) -> Result<(), TranscodeError> {
        while let Some(s) = self.sink.try_pull_sample(gst::ClockTime::ZERO) {
            if self.track.is_none() {
                self.track = Some(track_of(&self.sink, &s)?);
            }
            if let Some(f) = encoded_frame(&s, &mut self.origin) {
                self.frames.push(f);
            }
        }
        match self.running.error() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    pub fn push(&mut self, p: &Picture) -> Result<(), TranscodeError> {
        let mut buffer = gst::Buffer::from_slice(p.bgr.clone());
        {
            let b = buffer
                .get_mut()
                .ok_or_else(|| TranscodeError::Media("fresh buffer not writable".into()))?;
            b.set_pts(gst::ClockTime::from_nseconds(p.pts_ns));
            if p.duration_ns > 0 {
                b.set_duration(gst::ClockTime::from_nseconds(p.duration_ns));
            }
        }
        self.src
            .push_buffer(buffer)
            .map_err(|e| gst_err(format!("encoder refused a picture: {e:?}")))?;
        self.drain()
    }

    /// Ends the stream and returns everything encoded.
    pub fn finish(mut self, cancel: &AtomicBool) -> Result<Encoded, TranscodeError> {
        self.src
            .end_of_stream()
            .map_err(|e| gst_err(format!("eos: {e:?}")))?;
        let mut frames = std::mem::take(&mut self.frames);
        let mut track = self.track.take();
        let mut origin = self.origin;
        let sink = self.sink.clone();
        pull_all(&self.running, &sink, cancel, |s| {
            if track.is_none() {
                track = Some(track_of(&sink, &s)?);
            }
            if let Some(f) = encoded_frame(&s, &mut origin) {
                frames.push(f);
            }
            Ok(true)
        })?;
        let track =
            track.ok_or_else(|| TranscodeError::Media("the encoder produced nothing".into()))?;
        Ok(Encoded { track, frames })
    }
}

/// The first `tfdt` of a fragmented MP4 and its track's timescale (`mdhd`), read from the box
/// structure without trusting any size beyond the buffer.
pub fn first_decode_time(data: &[u8]) -> Option<(u64, u32)> {
    fn boxes(data: &[u8]) -> impl Iterator<Item = (&[u8; 4], &[u8])> {
        let mut at = 0usize;
        std::iter::from_fn(move || {
            if at + 8 > data.len() {
                return None;
            }
            let size32 = u32::from_be_bytes(data[at..at + 4].try_into().ok()?) as u64;
            let kind: &[u8; 4] = data[at + 4..at + 8].try_into().ok()?;
            let (header, size) = match size32 {
                1 => {
                    if at + 16 > data.len() {
                        return None;
                    }
                    (
                        16,
                        u64::from_be_bytes(data[at + 8..at + 16].try_into().ok()?),
                    )
                }
                0 => (8, (data.len() - at) as u64),
                n => (8, n),
            };
            let end = at.checked_add(usize::try_from(size).ok()?)?;
            if size < header as u64 || end > data.len() {
                return None;
            }
            let body = &data[at + header..end];
            at = end;
            Some((kind, body))
        })
    }
    fn child<'a>(data: &'a [u8], kind: &[u8; 4]) -> Option<&'a [u8]> {
        boxes(data).find(|(k, _)| *k == kind).map(|(_, b)| b)
    }
    let mut timescale = None;
    let mut tfdt = None;
    for (kind, body) in boxes(data) {
        match kind {
            b"moov" if timescale.is_none() => {
                let mdhd = child(child(child(body, b"trak")?, b"mdia")?, b"mdhd")?;
                let version = *mdhd.first()?;
                let at = if version == 1 { 4 + 16 } else { 4 + 8 };
                timescale = Some(u32::from_be_bytes(mdhd.get(at..at + 4)?.try_into().ok()?));
            }
            b"moof" if tfdt.is_none() => {
                let t = child(child(body, b"traf")?, b"tfdt")?;
                let version = *t.first()?;
                tfdt = Some(if version == 1 {
                    u64::from_be_bytes(t.get(4..12)?.try_into().ok()?)
                } else {
                    u64::from(u32::from_be_bytes(t.get(4..8)?.try_into().ok()?))
                });
            }
            _ => {}
        }
        if timescale.is_some() && tfdt.is_some() {
            break;
        }
    }
    Some((tfdt?, timescale?))
}

/// `v` ticks of `from` per second as ticks of 90 kHz.
pub fn to_90k(v: u64, from: u32) -> u64 {
    if from == TIMESCALE || from == 0 {
        return v;
    }
    ((u128::from(v) * u128::from(TIMESCALE)) / u128::from(from)) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_sizes_keep_the_aspect_never_upscale_and_are_even() {
        assert_eq!(output_size(1920, 1080, 360), (640, 360));
        assert_eq!(output_size(1280, 720, 0), (1280, 720));
        assert_eq!(output_size(640, 360, 1080), (640, 360));
        assert_eq!(output_size(1000, 750, 361), (480, 360));
        assert_eq!(output_size(0, 0, 360), (0, 0));
    }

    #[test]
    fn decode_time_of_fragmented_mp4_and_garbage() {
        assert_eq!(first_decode_time(b""), None);
        assert_eq!(first_decode_time(&[0xff; 64]), None);
        // A box claiming more bytes than there are is not followed.
        let mut lie = vec![0, 0, 0x10, 0, b'm', b'o', b'o', b'v'];
        lie.extend_from_slice(&[0; 16]);
        assert_eq!(first_decode_time(&lie), None);
        assert_eq!(to_90k(1000, 1000), 90_000);
        assert_eq!(to_90k(5, TIMESCALE), 5);
    }
}
