//! The `retina` source: RTSP over TCP (interleaved) or UDP, H.264 and H.265, on the camera's
//! own tokio task.
//!
//! Retina speaks RTSP, SDP, Basic/Digest authentication and keep-alives, depacketizes (dropping
//! access units cut short by packet loss, never panicking on hostile parameter sets — it is
//! fuzzed upstream) and knows real cameras' quirks. This module adds what recording needs on top:
//!
//! - **Transport.** TCP first; when the camera refuses RTP over TCP at `SETUP` (`461 Unsupported
//!   Transport`, or the `400` some cameras send instead), the session is opened again over UDP.
//!   A camera configured with `transport: udp` goes straight to UDP.
//! - **Decode times** from the presentation times RTP carries ([`DecodeTimes`]), with the
//!   reorder depth the stream declares (H.264 VUI `max_num_reorder_frames`, H.265
//!   `sps_max_num_reorder_pics`), 0 for H.264 Baseline, else [`DEFAULT_REORDER`]. The depth is
//!   fixed for the session: a mid-stream change of parameters keeps it.
//! - **Loss**: the frame after a loss and every frame until the next whole keyframe are dropped
//!   ([`LossGate`]).
//! - **Wall clock** from RTCP sender reports when they agree with this host's clock
//!   ([`WallClock`]).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures::StreamExt;
use futures::future::BoxFuture;
use h264_reader::rbsp::BitRead;
use retina::client::{self as rc, Credentials, Demuxed, PlayOptions, SessionOptions, SetupOptions};
use retina::codec::{
    CodecItem, FrameFormat, ParametersRef, VideoFrame, VideoParameters, VideoParametersCodec,
};

use super::{DecodeTimes, Frame, LossGate, Source, SourceError, SourceKind, WallClock};
use crate::config::{StreamConfig, Transport};
use crate::track::{Codec, TIMESCALE, TrackConfig, TrackInfo};

const USER_AGENT: &str = concat!("kordon/", env!("CARGO_PKG_VERSION"));

/// Reorder depth assumed when a stream that may carry B-frames does not declare one: enough
/// for the usual two B-frames and for pyramids of three. Too much costs only latency.
pub const DEFAULT_REORDER: usize = 4;

/// A frame waiting for its decode time.
struct Held {
    keyframe: bool,
    data: Bytes,
    wall_clock: SystemTime,
    track: Arc<TrackInfo>,
}

pub struct RetinaSource {
    demuxed: Demuxed,
    stream: usize,
    transport: Transport,
    track: Option<Arc<TrackInfo>>,
    order: DecodeTimes<Held>,
    ready: VecDeque<Frame>,
    gate: LossGate,
    clock: WallClock,
    /// The stream ended or failed: hand out what is held, then this.
    end: Option<SourceError>,
    too_deep_seen: u64,
    lost_seen: u64,
}

impl RetinaSource {
    /// DESCRIBE, SETUP (TCP, then UDP if refused) and PLAY.
    pub async fn open(spec: &StreamConfig) -> Result<Self, SourceError> {
        let (url, creds) = split_credentials(spec)?;
        let mut last_refusal = None;
        let transports: &[Transport] = match spec.transport {
            Transport::Tcp => &[Transport::Tcp, Transport::Udp],
            Transport::Udp => &[Transport::Udp],
        };
        for &transport in transports {
            match Self::open_over(&url, creds.clone(), transport).await {
                Ok(source) => return Ok(source),
                Err(Attempt::TransportRefused(status)) if transport == Transport::Tcp => {
                    tracing::info!(status, "camera refuses RTP over TCP: trying UDP");
                    last_refusal = Some(status);
                }
                Err(Attempt::TransportRefused(status)) => {
                    return Err(SourceError::Refused(format!(
                        "camera refuses RTP over {} (SETUP answered {status})",
                        transport.as_str()
                    )));
                }
                Err(Attempt::Failed(e)) => return Err(e),
            }
        }
        Err(SourceError::Refused(format!(
            "camera refuses every transport (last SETUP answer {})",
            last_refusal.unwrap_or(0)
        )))
    }

    async fn open_over(
        url: &url::Url,
        creds: Option<Credentials>,
        transport: Transport,
    ) -> Result<Self, Attempt> {
        let options = SessionOptions::default()
            .creds(creds)
            .user_agent(USER_AGENT.to_string());
        let mut session = unwind_safe("DESCRIBE", rc::Session::describe(url.clone(), options))
            .await
            .map_err(Attempt::Failed)?
            .map_err(|e| Attempt::Failed(from_retina("DESCRIBE", &e)))?;
        let (stream, depth) = pick_video(session.streams()).map_err(Attempt::Failed)?;
        let rtp_transport = match transport {
            Transport::Tcp => rc::Transport::Tcp(Default::default()),
            Transport::Udp => rc::Transport::Udp(Default::default()),
        };
        let setup = SetupOptions::default()
            .transport(rtp_transport)
            .frame_format(FrameFormat::MP4);
        if let Err(e) = session.setup(stream, setup).await {
            return Err(match e.status_code() {
                Some(status @ (461 | 400)) => Attempt::TransportRefused(status),
                _ => Attempt::Failed(from_retina("SETUP", &e)),
            });
        }
        let playing = session
            .play(PlayOptions::default())
            .await
            .map_err(|e| Attempt::Failed(from_retina("PLAY", &e)))?;
        let demuxed = playing
            .demuxed()
            .map_err(|e| Attempt::Failed(from_retina("PLAY", &e)))?;
        let mut source = RetinaSource {
            demuxed,
            stream,
            transport,
            track: None,
            order: DecodeTimes::new(depth.unwrap_or(DEFAULT_REORDER)),
            ready: VecDeque::new(),
            gate: LossGate::default(),
            clock: WallClock::new(),
            end: None,
            too_deep_seen: 0,
            lost_seen: 0,
        };
        source.refresh_track();
        tracing::debug!(
            transport = transport.as_str(),
            reorder_depth = source.order.depth(),
            "RTSP session playing"
        );
        Ok(source)
    }

    /// Re-reads the stream's parameters (after DESCRIBE, or a frame that changed them).
    fn refresh_track(&mut self) {
        let params = self
            .demuxed
            .streams()
            .get(self.stream)
            .and_then(|s| s.parameters());
        if let Some(ParametersRef::Video(v)) = params
            && let Some(info) = track_info(v)
        {
            self.track = Some(Arc::new(info));
        }
    }

    fn on_frame(&mut self, frame: VideoFrame) {
        if frame.stream_id() != self.stream {
            return;
        }
        if frame.has_new_parameters() || self.track.is_none() {
            self.refresh_track();
        }
        let keyframe = frame.is_random_access_point();
        if !self.gate.keep(keyframe, frame.loss()) {
            if self.gate.dropped() > self.lost_seen {
                if self.lost_seen == 0 || keyframe {
                    tracing::warn!(
                        lost_packets = frame.loss(),
                        dropped_frames = self.gate.dropped(),
                        "packet loss: frames dropped until the next whole keyframe"
                    );
                }
                self.lost_seen = self.gate.dropped();
            }
            return;
        }
        // Frames before the parameters are known cannot be recorded.
        let Some(track) = self.track.clone() else {
            return;
        };
        let pts = frame.timestamp().elapsed();
        let held = Held {
            keyframe,
            wall_clock: self.clock.at(pts, SystemTime::now()),
            data: Bytes::from(frame.into_data()),
            track,
        };
        if let Some(released) = self.order.push(pts, held) {
            self.release(released);
        }
    }

    fn release(&mut self, (dts, pts, held): (i64, i64, Held)) {
        if self.order.too_deep() > self.too_deep_seen {
            if self.too_deep_seen == 0 {
                tracing::warn!(
                    depth = self.order.depth(),
                    "camera reorders frames deeper than it declares: some frames are presented \
                     before their decode time"
                );
            }
            self.too_deep_seen = self.order.too_deep();
        }
        self.ready.push_back(Frame {
            dts,
            pts,
            keyframe: held.keyframe,
            data: held.data,
            wall_clock: held.wall_clock,
            track: held.track,
        });
    }

    fn on_rtcp(&mut self, pkt: &retina::rtcp::ReceivedCompoundPacket) {
        if pkt.stream_id() != self.stream {
            return;
        }
        let Some(ts) = pkt.rtp_timestamp() else {
            return;
        };
        for p in pkt.pkts() {
            if let Ok(Some(sr)) = p.as_sender_report()
                && let Some(wall) = ntp_to_system_time(sr.ntp_timestamp().0)
            {
                let believed_before = self.clock.from_sender_report();
                let believed = self
                    .clock
                    .sender_report(ts.elapsed(), wall, SystemTime::now());
                if believed && !believed_before {
                    tracing::debug!("wall clock follows the camera's RTCP sender reports");
                } else if !believed && !believed_before {
                    tracing::debug!(
                        "camera's RTCP sender reports disagree with this host's clock; ignored"
                    );
                }
            }
        }
    }

    /// Ends the stream: the frames still held are released first.
    fn finish(&mut self, end: SourceError) {
        for released in self.order.drain() {
            self.release(released);
        }
        self.end = Some(end);
    }

    async fn next_frame(&mut self) -> Result<Frame, SourceError> {
        loop {
            if let Some(frame) = self.ready.pop_front() {
                return Ok(frame);
            }
            if let Some(end) = self.end.take() {
                // Keep failing if asked again.
                self.end = Some(match &end {
                    SourceError::Lost(m) => SourceError::Lost(m.clone()),
                    SourceError::Refused(m) => SourceError::Refused(m.clone()),
                    SourceError::Ended => SourceError::Ended,
                });
                return Err(end);
            }
            match unwind_safe("stream", self.demuxed.next()).await {
                Err(e) => self.finish(e),
                Ok(None) => self.finish(SourceError::Ended),
                Ok(Some(Err(e))) => self.finish(from_retina("stream", &e)),
                Ok(Some(Ok(CodecItem::VideoFrame(frame)))) => self.on_frame(frame),
                Ok(Some(Ok(CodecItem::Rtcp(pkt)))) => self.on_rtcp(&pkt),
                Ok(Some(Ok(_))) => {}
            }
        }
    }
}

impl Source for RetinaSource {
    fn next(&mut self) -> BoxFuture<'_, Result<Frame, SourceError>> {
        Box::pin(self.next_frame())
    }

    fn kind(&self) -> SourceKind {
        SourceKind::Retina
    }

    fn transport(&self) -> Transport {
        self.transport
    }

    fn close(self: Box<Self>) -> BoxFuture<'static, ()> {
        // Dropping the session tears it down in the background (retina's TeardownPolicy::Auto).
        drop(self);
        Box::pin(async {})
    }
}

enum Attempt {
    /// SETUP refused this transport with this status.
    TransportRefused(u16),
    Failed(SourceError),
}

/// The record URL without credentials, and the credentials (configuration first, then URL).
fn split_credentials(spec: &StreamConfig) -> Result<(url::Url, Option<Credentials>), SourceError> {
    let mut url = url::Url::parse(&spec.url)
        .map_err(|e| SourceError::Refused(format!("stream URL is not a URL: {e}")))?;
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8_lossy()
            .into_owned()
    };
    let url_user = (!url.username().is_empty()).then(|| decode(url.username()));
    let url_pass = url.password().map(decode);
    let _ = url.set_username("");
    let _ = url.set_password(None);
    let username = spec.username.clone().or(url_user);
    let password = spec.password.clone().or(url_pass);
    let creds = username.map(|username| Credentials {
        username,
        password: password.unwrap_or_default(),
    });
    Ok((url, creds))
}

/// The first H.264 or H.265 video stream, and its declared reorder depth if known.
fn pick_video(streams: &[rc::Stream]) -> Result<(usize, Option<usize>), SourceError> {
    let mut seen = Vec::new();
    for (i, s) in streams.iter().enumerate() {
        if s.media() != "video" {
            continue;
        }
        let encoding = s.encoding_name().to_ascii_lowercase();
        if encoding == "h264" || encoding == "h265" {
            if s.clock_rate_hz() != TIMESCALE {
                return Err(SourceError::Refused(format!(
                    "video clock rate {} Hz, not the {TIMESCALE} Hz RTP requires",
                    s.clock_rate_hz()
                )));
            }
            let depth = match s.parameters() {
                Some(ParametersRef::Video(v)) => reorder_depth(v),
                _ => None,
            };
            return Ok((i, depth));
        }
        seen.push(encoding);
    }
    Err(SourceError::Refused(if seen.is_empty() {
        "camera offers no video stream".to_string()
    } else {
        format!(
            "camera sends {}, but only H.264 and H.265 can be recorded without re-encoding",
            seen.join(", ")
        )
    }))
}

/// The track a camera's parameter sets describe (codec, `avcC`/`hvcC`, size, declared rate).
pub fn track_info(v: &VideoParameters) -> Option<TrackInfo> {
    let codec = match v.codec_params() {
        VideoParametersCodec::H264 { .. } => Codec::H264,
        VideoParametersCodec::H265 { .. } => Codec::H265,
        _ => return None,
    };
    let (width, height) = v.pixel_dimensions();
    // (seconds, frames): e.g. (1, 25) or (3600, 90000).
    let fps = v
        .frame_rate()
        .filter(|(num, den)| *num > 0 && *den > 0)
        .map(|(num, den)| f64::from(den) / f64::from(num))
        .unwrap_or(0.0);
    Some(TrackInfo {
        track: TrackConfig {
            codec,
            codec_data: v.extra_data().to_vec(),
            width,
            height,
            timescale: TIMESCALE,
        },
        codec_name: codec.as_str(),
        fps,
    })
}

/// The stream's declared reorder depth: how many frames may be decoded before, but shown after,
/// another. `None` when the parameter sets do not say.
pub fn reorder_depth(v: &VideoParameters) -> Option<usize> {
    match v.codec_params() {
        VideoParametersCodec::H264 { sps, .. } => h264_reorder_depth(sps),
        VideoParametersCodec::H265 { sps, .. } => h265_reorder_depth(sps),
        _ => None,
    }
}

/// H.264: VUI `max_num_reorder_frames`; Baseline has no B-frames.
fn h264_reorder_depth(sps_nal: &[u8]) -> Option<usize> {
    use h264_reader::nal::sps::{Profile, SeqParameterSet};
    let reader = h264_reader::rbsp::ByteReader::skipping_h264_header(sps_nal);
    let sps = SeqParameterSet::from_bits(h264_reader::rbsp::BitReader::new(reader)).ok()?;
    if let Some(r) = sps
        .vui_parameters
        .as_ref()
        .and_then(|v| v.bitstream_restrictions.as_ref())
    {
        return usize::try_from(r.max_num_reorder_frames).ok();
    }
    match sps.profile() {
        Profile::Baseline => Some(0),
        _ => None,
    }
}

/// H.265: `sps_max_num_reorder_pics` of the highest sub-layer (H.265 section 7.3.2.2.1).
fn h265_reorder_depth(sps_nal: &[u8]) -> Option<usize> {
    use retina::codec::h265::nal;
    let (_, mut r) = nal::split(sps_nal).ok()?;
    r.skip(4, "sps_video_parameter_set_id").ok()?;
    let max_sub_layers_minus1: u8 = r.read(3, "sps_max_sub_layers_minus1").ok()?;
    if max_sub_layers_minus1 > 6 {
        return None;
    }
    r.read_bool("sps_temporal_id_nesting_flag").ok()?;
    nal::ProfileTierLevel::from_bits(&mut r, true, max_sub_layers_minus1).ok()?;
    r.read_ue("sps_seq_parameter_set_id").ok()?;
    if r.read_ue("chroma_format_idc").ok()? == 3 {
        r.read_bool("separate_colour_plane_flag").ok()?;
    }
    r.read_ue("pic_width_in_luma_samples").ok()?;
    r.read_ue("pic_height_in_luma_samples").ok()?;
    if r.read_bool("conformance_window_flag").ok()? {
        for name in ["left", "right", "top", "bottom"] {
            r.read_ue(name).ok()?;
        }
    }
    r.read_ue("bit_depth_luma_minus8").ok()?;
    r.read_ue("bit_depth_chroma_minus8").ok()?;
    r.read_ue("log2_max_pic_order_cnt_lsb_minus4").ok()?;
    let all_layers = r
        .read_bool("sps_sub_layer_ordering_info_present_flag")
        .ok()?;
    let first = if all_layers { 0 } else { max_sub_layers_minus1 };
    let mut reorder = 0;
    for _ in first..=max_sub_layers_minus1 {
        r.read_ue("sps_max_dec_pic_buffering_minus1").ok()?;
        reorder = r.read_ue("sps_max_num_reorder_pics").ok()?;
        r.read_ue("sps_max_latency_increase_plus1").ok()?;
    }
    usize::try_from(reorder).ok()
}

/// Runs `f` (a call into retina, which parses what the camera sends) so that a panic on a
/// camera's bytes becomes a refusal naming it, rather than ending the camera's task and with
/// it the recording, silently. Found by fuzzing: `sdp-types` 0.1.8 (under retina's DESCRIBE)
/// asserts on some malformed session descriptions (`tools/fuzz/regressions/sdp`).
async fn unwind_safe<T>(during: &str, f: impl Future<Output = T>) -> Result<T, SourceError> {
    use futures::FutureExt;
    std::panic::AssertUnwindSafe(f)
        .catch_unwind()
        .await
        .map_err(|panic| {
            let why = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "no message".into());
            let why: String = why.chars().take(200).collect();
            tracing::warn!(during, %why, "the camera's answer made the RTSP client panic");
            SourceError::Refused(format!(
                "{during}: the camera's answer is malformed (the RTSP client failed on it: {why})"
            ))
        })
}

/// NTP (seconds since 1900, 32.32 fixed point) to wall-clock time; `None` before 1970.
pub fn ntp_to_system_time(ntp: u64) -> Option<SystemTime> {
    const NTP_TO_UNIX: u64 = 2_208_988_800;
    let secs = (ntp >> 32).checked_sub(NTP_TO_UNIX)?;
    let nanos = ((ntp & 0xffff_ffff) * 1_000_000_000) >> 32;
    UNIX_EPOCH.checked_add(Duration::new(secs, nanos as u32))
}

/// A retina error as a source error: the first line only (the rest names addresses and
/// packet positions for Wireshark, which belongs in debug logs).
fn from_retina(during: &str, e: &retina::Error) -> SourceError {
    tracing::debug!(error = %e, during, "retina error");
    let first = e.to_string().lines().next().unwrap_or("").to_string();
    let msg = format!("{during}: {first}");
    match e.status_code() {
        // The camera answered, but with something no retry of ours will change.
        Some(401 | 403) => SourceError::Refused(msg),
        _ => SourceError::Lost(msg),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ntp_times_convert() {
        let t = ntp_to_system_time((2_208_988_800u64 + 1_800_000_000) << 32 | 0x8000_0000).unwrap();
        assert_eq!(
            t.duration_since(UNIX_EPOCH).unwrap(),
            Duration::from_millis(1_800_000_000_500)
        );
        assert_eq!(ntp_to_system_time(5 << 32), None);
    }

    #[test]
    fn credentials_come_out_of_the_url() {
        let spec = StreamConfig {
            name: "edirne-gate-1".into(),
            url: "rtsp://admin:p%40ss@10.0.0.1:554/main".into(),
            transport: Transport::Tcp,
            username: None,
            password: None,
        };
        let (url, creds) = split_credentials(&spec).unwrap();
        assert_eq!(url.as_str(), "rtsp://10.0.0.1:554/main");
        let creds = creds.unwrap();
        assert_eq!(
            (creds.username.as_str(), creds.password.as_str()),
            ("admin", "p@ss")
        );
    }

    proptest::proptest! {
        /// Hostile parameter sets give an answer or none, never a panic.
        #[test]
        fn arbitrary_sps_never_panics(body in proptest::collection::vec(proptest::num::u8::ANY, 0..64)) {
            let mut h264 = vec![0x67];
            h264.extend_from_slice(&body);
            let _ = h264_reorder_depth(&h264);
            let mut h265 = vec![0x42, 0x01];
            h265.extend_from_slice(&body);
            let _ = h265_reorder_depth(&h265);
        }
    }
}
