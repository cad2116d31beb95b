//! The one-time encode of each variant, and the cache that makes it one-time.
//!
//! A variant is named by everything that changes its bytes (source and clip digest or camera
//! name, codec, resolution, bitrate, GOP, encoder revision), and that name is its cache file.
//! Within one process a variant is loaded once and shared by every simulator instance that
//! needs it (tests start many); encodes are serialised, since each one already uses every core.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, PoisonError, Weak},
    time::{Duration, Instant},
};

use gstreamer::{self as gst, prelude::*};
use gstreamer_app as gst_app;

use crate::{
    CamsimError,
    config::{Codec, FPS, FRAME_NS, GOP_FRAMES, PATTERN_FRAMES, StreamKind},
    media::{EncodedStream, RawFrame, RawStream},
    pattern::{I420, clock_text},
};

/// The street clip, built into the binary so that it runs from anywhere.
pub(crate) const EMBEDDED_CLIP: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../assets/footage/bikes.mp4"
));
const EMBEDDED_CLIP_NAME: &str = "bikes";

/// Bump when the encoder pipelines change, so that old cache files are not reused.
const ENCODER_REVISION: u32 = 2;

/// Longest silence from an encoder before the encode is declared stuck.
const ENCODE_STALL_TIMEOUT: Duration = Duration::from_secs(120);

/// Where a variant's pictures come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Picture {
    /// A clip file; `digest` (FNV-1a of its bytes) keys the cache.
    Clip {
        path: PathBuf,
        name: String,
        digest: u64,
    },
    /// The test pattern for the named camera.
    Pattern { camera: String },
}

/// Everything that determines one encoded stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Variant {
    pub picture: Picture,
    pub codec: Codec,
    pub kind: StreamKind,
    /// B-frames between reference frames (0: decode order is presentation order).
    pub bframes: u32,
}

impl Variant {
    /// Cache file name; stable across runs and builds.
    pub fn cache_name(&self) -> String {
        let (width, height) = self.kind.dimensions();
        let source = match &self.picture {
            Picture::Clip { name, digest, .. } => {
                format!("clip-{}-{digest:016x}", sanitize(name))
            }
            Picture::Pattern { camera } => format!("pattern-{}", sanitize(camera)),
        };
        // Without B-frames the name is what it was before they existed: old caches stay valid.
        let bframes = match self.bframes {
            0 => String::new(),
            n => format!("-b{n}"),
        };
        format!(
            "{source}-{codec}-{width}x{height}-{kbps}k-{FPS}fps-g{GOP_FRAMES}{bframes}-r{ENCODER_REVISION}.kcs",
            codec = self.codec,
            kbps = self.kind.bitrate_kbps(),
        )
    }

    fn label(&self) -> String {
        let source = match &self.picture {
            Picture::Clip { name, .. } => format!("clip {name}"),
            Picture::Pattern { camera } => format!("pattern {camera}"),
        };
        match self.bframes {
            0 => format!("{source} {} {}", self.kind, self.codec),
            n => format!("{source} {} {} {n} B-frames", self.kind, self.codec),
        }
    }
}

fn sanitize(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .take(64)
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if cleaned.is_empty() {
        "_".into()
    } else {
        cleaned
    }
}

/// FNV-1a, 64 bit: a stable content digest for cache keys (not a security measure).
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Makes the embedded clip available as a file in the cache (GStreamer's demuxers want to seek).
pub(crate) fn embedded_clip(cache_dir: &Path) -> Result<Picture, CamsimError> {
    let digest = fnv1a(EMBEDDED_CLIP);
    let path = cache_dir.join(format!("{EMBEDDED_CLIP_NAME}-{digest:016x}.mp4"));
    let up_to_date = std::fs::read(&path).is_ok_and(|bytes| bytes == EMBEDDED_CLIP);
    if !up_to_date {
        write_atomically(&path, EMBEDDED_CLIP).map_err(|source| CamsimError::Cache {
            path: path.clone(),
            source,
        })?;
    }
    Ok(Picture::Clip {
        path,
        name: EMBEDDED_CLIP_NAME.into(),
        digest,
    })
}

/// A clip file given on the command line.
pub(crate) fn clip_file(path: &Path) -> Result<Picture, CamsimError> {
    let bytes = std::fs::read(path).map_err(|source| CamsimError::Clip {
        path: path.to_owned(),
        source,
    })?;
    let name = path
        .file_stem()
        .and_then(|stem| stem.to_str())
        .unwrap_or("clip")
        .to_owned();
    Ok(Picture::Clip {
        path: path.to_owned(),
        name,
        digest: fnv1a(&bytes),
    })
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".clip.{}.tmp", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

static LOADED: Mutex<BTreeMap<PathBuf, Weak<EncodedStream>>> = Mutex::new(BTreeMap::new());
static ENCODING: Mutex<()> = Mutex::new(());

/// Returns the variant's stream: from this process's memory, else from the cache directory,
/// else by encoding it now (and caching the result). Blocking; call from a blocking thread.
pub(crate) fn obtain(
    variant: &Variant,
    cache_dir: &Path,
) -> Result<Arc<EncodedStream>, CamsimError> {
    let path = cache_dir.join(variant.cache_name());
    let _one_at_a_time = ENCODING.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(stream) = LOADED
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(&path)
        .and_then(Weak::upgrade)
    {
        return Ok(stream);
    }

    let raw = match std::fs::read(&path) {
        Ok(bytes) => match RawStream::parse(&bytes) {
            Ok(raw) => {
                tracing::debug!(variant = %variant.label(), path = %path.display(), "using cached encode");
                Some(raw)
            }
            Err(error) => {
                tracing::warn!(path = %path.display(), %error, "ignoring damaged cache file");
                None
            }
        },
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => None,
        Err(source) => return Err(CamsimError::Cache { path, source }),
    };
    let raw = match raw {
        Some(raw) => raw,
        None => {
            let raw = encode(variant)?;
            crate::media::save(&raw, &path).map_err(|source| CamsimError::Cache {
                path: path.clone(),
                source,
            })?;
            raw
        }
    };
    let stream = EncodedStream::from_raw(raw, variant.codec)
        .map(Arc::new)
        .map_err(|error| CamsimError::Encode {
            variant: variant.label(),
            message: error.to_string(),
        })?;
    let mut loaded = LOADED.lock().unwrap_or_else(PoisonError::into_inner);
    loaded.retain(|_, weak| weak.strong_count() > 0);
    loaded.insert(path, Arc::downgrade(&stream));
    Ok(stream)
}

fn pipeline_description(variant: &Variant) -> String {
    let (width, height) = variant.kind.dimensions();
    let raw_caps = format!(
        "video/x-raw,format=I420,width={width},height={height},framerate={FPS}/1,pixel-aspect-ratio=1/1"
    );
    let source = match &variant.picture {
        // videoscale letterboxes (add-borders) to keep the clip's shape inside 16:9.
        Picture::Clip { .. } => format!(
            "filesrc name=src ! decodebin ! videoconvert ! videoscale add-borders=true ! videorate ! {raw_caps}"
        ),
        Picture::Pattern { .. } => format!(
            "videotestsrc name=src num-buffers={PATTERN_FRAMES} pattern=smpte horizontal-speed=2 ! {raw_caps} ! identity name=burn"
        ),
    };
    let kbps = variant.kind.bitrate_kbps();
    // Closed GOPs of exactly GOP_FRAMES, by default no B-frames (decode order = display order),
    // parameter sets in front of every keyframe so that a client can join at any keyframe. No
    // access unit delimiters or HRD SEI: a P-frame is a single NAL unit, which the payloader
    // sends as one buffer list, so the server handles (and writes to each client) once per
    // frame. B-frames, when asked for, come in a fixed pattern (no adaptive placement).
    let bframes = variant.bframes;
    let encoder = match variant.codec {
        Codec::H264 => format!(
            "x264enc bitrate={kbps} pass=cbr vbv-buf-capacity=1000 speed-preset=veryfast \
             bframes={bframes} b-adapt=false \
             aud=false key-int-max={GOP_FRAMES} option-string=\"scenecut=0:min-keyint={GOP_FRAMES}:open-gop=0\" \
             ! h264parse config-interval=-1 ! video/x-h264,stream-format=byte-stream,alignment=au"
        ),
        Codec::H265 => format!(
            "x265enc bitrate={kbps} speed-preset=ultrafast key-int-max={GOP_FRAMES} \
             option-string=\"bframes={bframes}:b-adapt=0:scenecut=0:min-keyint={GOP_FRAMES}:open-gop=0:\
             vbv-maxrate={kbps}:vbv-bufsize={kbps}:strict-cbr=1:repeat-headers=1\" \
             ! h265parse config-interval=-1 ! video/x-h265,stream-format=byte-stream,alignment=au"
        ),
    };
    format!("{source} ! {encoder} ! appsink name=sink sync=false")
}

/// Elements a variant's encode pipeline needs; checked first for a clear error.
fn required_elements(variant: &Variant) -> &'static [&'static str] {
    match (&variant.picture, variant.codec) {
        (Picture::Clip { .. }, Codec::H264) => &[
            "decodebin",
            "videoscale",
            "videorate",
            "x264enc",
            "h264parse",
        ],
        (Picture::Clip { .. }, Codec::H265) => &[
            "decodebin",
            "videoscale",
            "videorate",
            "x265enc",
            "h265parse",
        ],
        (Picture::Pattern { .. }, Codec::H264) => &["videotestsrc", "x264enc", "h264parse"],
        (Picture::Pattern { .. }, Codec::H265) => &["videotestsrc", "x265enc", "h265parse"],
    }
}

pub(crate) fn check_elements(names: &[&str]) -> Result<(), CamsimError> {
    for name in names {
        if gst::ElementFactory::find(name).is_none() {
            return Err(CamsimError::MissingElement((*name).to_owned()));
        }
    }
    Ok(())
}

/// Encodes one variant; blocks for seconds (tens of seconds for H.265 at 1080p).
fn encode(variant: &Variant) -> Result<RawStream, CamsimError> {
    let label = variant.label();
    let fail = |message: String| CamsimError::Encode {
        variant: label.clone(),
        message,
    };
    check_elements(required_elements(variant))?;
    check_elements(&["videoconvert", "appsink"])?;

    let pipeline = gst::parse::launch(&pipeline_description(variant))
        .map_err(|e| fail(format!("building the pipeline: {e}")))?
        .downcast::<gst::Pipeline>()
        .map_err(|_| fail("not a pipeline".into()))?;
    let by_name = |name: &str| {
        pipeline
            .by_name(name)
            .ok_or_else(|| fail(format!("pipeline has no element {name}")))
    };
    match &variant.picture {
        Picture::Clip { path, .. } => by_name("src")?.set_property("location", path),
        Picture::Pattern { camera } => {
            let burn = by_name("burn")?;
            let pad = burn
                .static_pad("src")
                .ok_or_else(|| fail("identity without src pad".into()))?;
            add_burn_in_probe(&pad, camera, variant);
        }
    }
    let sink = by_name("sink")?
        .downcast::<gst_app::AppSink>()
        .map_err(|_| fail("sink is not an appsink".into()))?;
    let bus = pipeline
        .bus()
        .ok_or_else(|| fail("pipeline without bus".into()))?;

    let started = Instant::now();
    tracing::info!(variant = %label, "encoding once; later runs reuse the cache");
    let result = (|| {
        pipeline
            .set_state(gst::State::Playing)
            .map_err(|_| fail("cannot start the pipeline".into()))?;
        let mut caps: Option<String> = None;
        let mut frames = Vec::new();
        let mut pts_ns: Vec<u64> = Vec::new();
        let mut last_progress = Instant::now();
        let mut last_data = Instant::now();
        let mut expected: Option<u64> = None;
        loop {
            if let Some(message) = bus.pop_filtered(&[gst::MessageType::Error])
                && let gst::MessageView::Error(error) = message.view()
            {
                return Err(fail(format!(
                    "{} ({})",
                    error.error(),
                    error.debug().map(|d| d.to_string()).unwrap_or_default()
                )));
            }
            match sink.try_pull_sample(gst::ClockTime::from_mseconds(100)) {
                Some(sample) => {
                    last_data = Instant::now();
                    if caps.is_none() {
                        caps = sample.caps().map(|c| c.to_string());
                    }
                    let buffer = sample
                        .buffer()
                        .ok_or_else(|| fail("sample without buffer".into()))?;
                    let map = buffer
                        .map_readable()
                        .map_err(|_| fail("unreadable buffer".into()))?;
                    pts_ns.push(
                        buffer
                            .pts()
                            .map(gst::ClockTime::nseconds)
                            .ok_or_else(|| fail("encoder output without PTS".into()))?,
                    );
                    frames.push(RawFrame {
                        keyframe: !buffer.flags().contains(gst::BufferFlags::DELTA_UNIT),
                        pts_offset: 0,
                        data: map.as_slice().to_vec(),
                    });
                    if expected.is_none() {
                        expected = pipeline
                            .query_duration::<gst::ClockTime>()
                            .map(|d| d.nseconds().div_ceil(FRAME_NS));
                    }
                    if last_progress.elapsed() >= Duration::from_secs(2) {
                        last_progress = Instant::now();
                        tracing::info!(
                            variant = %label,
                            frames = frames.len(),
                            of = expected.map(|n| n.to_string()).unwrap_or_else(|| "?".into()),
                            "encoding"
                        );
                    }
                }
                None if sink.is_eos() => break,
                None if last_data.elapsed() > ENCODE_STALL_TIMEOUT => {
                    return Err(fail("the encoder stopped producing output".into()));
                }
                None => {}
            }
        }
        let caps = caps.ok_or_else(|| fail("no output".into()))?;
        // Presentation index from the PTS, relative to the first (smallest) one.
        let first = pts_ns.iter().copied().min().unwrap_or(0);
        for (i, (frame, pts)) in frames.iter_mut().zip(&pts_ns).enumerate() {
            let shown = ((pts - first) + FRAME_NS / 2) / FRAME_NS;
            frame.pts_offset = i32::try_from(shown as i64 - i as i64)
                .map_err(|_| fail("presentation order out of range".into()))?;
        }
        let raw = RawStream { caps, frames };
        raw.check().map_err(|e| fail(e.to_string()))?;
        Ok(raw)
    })();
    let _ = pipeline.set_state(gst::State::Null);
    let raw = result?;

    let bytes: usize = raw.frames.iter().map(|f| f.data.len()).sum();
    tracing::info!(
        variant = %label,
        frames = raw.frames.len(),
        keyframes = raw.frames.iter().filter(|f| f.keyframe).count(),
        kbps = bytes as u64 * 8 * u64::from(FPS) / raw.frames.len() as u64 / 1000,
        seconds = format!("{:.1}", started.elapsed().as_secs_f64()),
        "encoded"
    );
    Ok(raw)
}

/// Draws camera name, stream and loop clock into each pattern frame before it is encoded.
fn add_burn_in_probe(pad: &gst::Pad, camera: &str, variant: &Variant) {
    let (width, height) = variant.kind.dimensions();
    let (width, height) = (width as usize, height as usize);
    let scale = (height / 180).max(1);
    let margin = 4 * scale;
    let title = format!(
        "{camera} {} {width}X{height} {}",
        variant.kind,
        variant.codec.as_str()
    );
    pad.add_probe(gst::PadProbeType::BUFFER, move |_pad, info| {
        if let Some(gst::PadProbeData::Buffer(buffer)) = info.data.as_mut() {
            let pts = buffer.pts().map_or(0, gst::ClockTime::nseconds);
            let buffer = buffer.make_mut();
            if let Ok(mut map) = buffer.map_writable()
                && let Some(mut frame) = I420::new(map.as_mut_slice(), width, height)
            {
                frame.draw_text(margin, margin, scale, &title);
                let clock = clock_text(pts);
                frame.draw_text(margin, height - margin - 9 * scale, scale, &clock);
            }
        }
        gst::PadProbeReturn::Ok
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_names_change_with_every_input() {
        let clip = |digest| Variant {
            picture: Picture::Clip {
                path: "/x/bikes.mp4".into(),
                name: "bikes".into(),
                digest,
            },
            codec: Codec::H264,
            kind: StreamKind::Main,
            bframes: 0,
        };
        let base = clip(1);
        assert_eq!(
            base.cache_name(),
            "clip-bikes-0000000000000001-h264-1920x1080-4000k-25fps-g50-r2.kcs"
        );
        let mut names = vec![base.cache_name(), clip(2).cache_name()];
        let mut sub = base.clone();
        sub.kind = StreamKind::Sub;
        names.push(sub.cache_name());
        let mut h265 = base.clone();
        h265.codec = Codec::H265;
        names.push(h265.cache_name());
        let mut bframes = base.clone();
        bframes.bframes = 2;
        names.push(bframes.cache_name());
        for camera in ["cam1", "cam2", "../../etc/passwd"] {
            names.push(
                Variant {
                    picture: Picture::Pattern {
                        camera: camera.into(),
                    },
                    codec: Codec::H264,
                    kind: StreamKind::Main,
                    bframes: 0,
                }
                .cache_name(),
            );
        }
        let unique: std::collections::BTreeSet<_> = names.iter().collect();
        assert_eq!(unique.len(), names.len());
        assert!(names.iter().all(|n| !n.contains('/')));
    }

    #[test]
    fn fnv1a_matches_reference_vectors() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn embedded_clip_is_the_vendored_file() {
        // An MP4 starts with a size and `ftyp`.
        assert_eq!(&EMBEDDED_CLIP[4..8], b"ftyp");
        assert!(EMBEDDED_CLIP.len() > 100_000);
    }
}
