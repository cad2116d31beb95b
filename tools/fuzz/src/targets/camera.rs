//! What a camera sends: RTSP messages (with SDP bodies and interleaved data), RTP packets of
//! H.264 and H.265 with the SDP's format parameters, and RTCP. The RTP targets run the whole
//! acquisition path of ingest on the packets: retina's depacketizer, Kordon's track and
//! reorder-depth reading of the parameter sets, the decode-time reordering and the fMP4
//! segment writer.

use std::num::NonZeroU32;

use bytes::Bytes;
use kordon_media::fmp4::{Sample, SegmentWriter};
use kordon_media::source::DecodeTimes;
use kordon_media::source::retina::{reorder_depth, track_info};
use retina::codec::{CodecItem, Depacketizer, ParametersRef};
use retina::rtp::{PacketHeader, PacketMeta};
use retina::testutil::DepacketizeBuf;

/// RTSP: every message in the bytes, as retina's client reads a camera's TCP stream.
pub fn rtsp(input: &[u8]) -> String {
    use retina::rtsp::msg::Message;
    use retina::rtsp::parse::{FeedError, Parser};
    let mut parser = Parser::default();
    let mut rest: &[u8] = input;
    let mut kinds = String::new();
    for _ in 0..10_000 {
        let before = rest.len();
        match parser.feed(&mut rest) {
            Ok(Some((msg, _))) => {
                kinds.push(match msg {
                    Message::Request(_) => 'q',
                    Message::Response(r) => {
                        // What the client reads of every response.
                        let _ = r.headers.get("CSeq");
                        let _ = r.headers.get("WWW-Authenticate");
                        's'
                    }
                    Message::Data(_) => 'd',
                });
            }
            Ok(None) => return format!("ok: {}", compress(&kinds)),
            Err(FeedError::Incomplete(_)) => {
                return format!("incomplete after {}", compress(&kinds));
            }
            Err(FeedError::Invalid(e)) => {
                return format!(
                    "invalid after {}: {}",
                    compress(&kinds),
                    e.context.join(" < ")
                );
            }
        }
        if rest.len() == before {
            return format!("stuck after {}", compress(&kinds));
        }
    }
    "ok: many messages".into()
}

/// "sssddd" as "s d": the kinds in order, runs collapsed (so the count is not an outcome).
fn compress(kinds: &str) -> String {
    let mut out = String::new();
    for c in kinds.chars() {
        if !out.ends_with(c) {
            out.push(c);
        }
    }
    out
}

/// SDP, with the grammar retina uses, then what Kordon reads of it. `sdp-types` asserts on
/// some malformed descriptions; ingest catches such a panic around DESCRIBE and refuses the
/// camera's answer (`crates/media/tests/hostile_camera.rs`), so here it is an outcome too.
pub fn sdp(input: &[u8]) -> String {
    let parsed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        sdp_types::Session::parse(input)
    }));
    let Ok(parsed) = parsed else {
        return "sdp-types panicked (refused by ingest)".into();
    };
    match parsed {
        Ok(s) => {
            let video = s.medias.iter().filter(|m| m.media == "video").count();
            let fmtp = s
                .medias
                .iter()
                .flat_map(|m| m.attributes.iter())
                .filter(|a| a.attribute == "fmtp")
                .count();
            format!("ok: {video} video, {fmtp} fmtp")
        }
        Err(e) => format!("err: {}", first_words(&e.to_string())),
    }
}

/// RTCP compound packets; a sender report's NTP time as ingest turns it into wall time.
pub fn rtcp(input: &[u8]) -> String {
    use retina::rtcp::{PacketRef, TypedPacketRef};
    let mut rest = input;
    let mut n = 0;
    while !rest.is_empty() {
        match PacketRef::parse(rest) {
            Ok((pkt, after)) => {
                n += 1;
                match pkt.as_typed() {
                    Ok(Some(TypedPacketRef::SenderReport(sr))) => {
                        let _ =
                            kordon_media::source::retina::ntp_to_system_time(sr.ntp_timestamp().0);
                        let _ = sr.rtp_timestamp();
                    }
                    Ok(_) => {}
                    Err(e) => return format!("bad packet {n}: {}", first_words(&e)),
                }
                rest = after;
            }
            Err(e) => return format!("err after {n}: {}", first_words(&e)),
        }
    }
    "ok".into()
}

fn first_words(s: &str) -> String {
    s.split_whitespace().take(4).collect::<Vec<_>>().join(" ")
}

/// The RTP input: a first line with the SDP's `a=fmtp` parameters, then RTP packets each
/// preceded by a 16-bit big-endian length (RFC 4571 framing, as `rtpstreampay` writes).
pub fn split_rtp_input(input: &[u8]) -> (String, Vec<&[u8]>) {
    let nl = input
        .iter()
        .position(|&b| b == b'\n')
        .unwrap_or(input.len());
    let fmtp = String::from_utf8_lossy(&input[..nl]).into_owned();
    let mut rest = input.get(nl + 1..).unwrap_or(&[]);
    let mut packets = Vec::new();
    while rest.len() >= 2 {
        let len = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
        let end = (2 + len).min(rest.len());
        packets.push(&rest[2..end]);
        rest = &rest[end..];
    }
    (fmtp, packets)
}

/// H.264 or H.265 over RTP into fMP4 segments, as ingest records a camera.
pub fn rtp(encoding: &'static str, input: &[u8]) -> String {
    let (fmtp, packets) = split_rtp_input(input);
    let fmtp = (!fmtp.is_empty()).then_some(fmtp.as_str());
    let mut d = match Depacketizer::new("video", encoding, 90_000, None, fmtp) {
        Ok(d) => d,
        Err(e) => return format!("fmtp refused: {}", first_words(&e)),
    };
    let mut buf = DepacketizeBuf::new(64 * 1024);
    let clock = NonZeroU32::new(90_000).expect("non-zero");
    let mut first_ts: Option<u32> = None;
    let mut state = Recording::default();
    let mut refused = 0usize;
    // The kinds of refusal (first words), for the outcome: counts are not steering.
    let mut why: std::collections::BTreeSet<String> = Default::default();
    for raw in packets {
        let (header, range) = match PacketHeader::validate(raw) {
            Ok(h) => h,
            Err(e) => {
                why.insert(first_words(e));
                refused += 1;
                continue;
            }
        };
        let start = *first_ts.get_or_insert(header.timestamp());
        // Extended as the client does for a session without wrap: ticks since the first.
        let ticks = i64::from(header.timestamp().wrapping_sub(start));
        let Some(timestamp) = retina::Timestamp::new(ticks + i64::from(start), clock, start) else {
            refused += 1;
            continue;
        };
        let meta = PacketMeta {
            ctx: retina::PacketContext::dummy(),
            stream_id: 0,
            timestamp,
            sequence_number: header.sequence_number(),
            ssrc: header.ssrc(),
            mark: header.mark(),
            loss: 0,
        };
        let payload = &raw[usize::from(range.start)..usize::from(range.end)];
        if let Err(e) = buf.push(&mut d, meta, payload) {
            why.insert(first_words(&e));
            refused += 1;
        }
        while let Some(item) = d.pull() {
            match item {
                Ok(CodecItem::VideoFrame(f)) => {
                    if (f.has_new_parameters() || state.writer.is_none())
                        && let Some(ParametersRef::Video(v)) = d.parameters()
                    {
                        state.new_track(v);
                    }
                    state.frame(
                        f.timestamp().elapsed(),
                        f.is_random_access_point(),
                        f.into_data(),
                    );
                }
                Ok(_) => {}
                Err(e) => {
                    why.insert(first_words(&format!("{e:?}")));
                    refused += 1;
                }
            }
        }
    }
    state.finish();
    let some = |n: usize| match n {
        0 => "none",
        1 => "one",
        _ => "several",
    };
    format!(
        "frames {}, segments {}, tracks {}, refused {} {:?}",
        some(state.frames),
        some(state.segments),
        some(state.tracks),
        some(refused),
        why.iter().take(4).collect::<Vec<_>>()
    )
}

/// Ingest's recording state, reduced to what reads camera data: reorder, then write.
#[derive(Default)]
struct Recording {
    order: Option<DecodeTimes<(bool, Vec<u8>)>>,
    writer: Option<SegmentWriter<Vec<u8>>>,
    /// The first decode time of the track: times are written relative to it, as ingest does.
    origin: Option<i64>,
    last_dts: Option<u64>,
    frames: usize,
    segments: usize,
    tracks: usize,
}

impl Recording {
    fn new_track(&mut self, v: &retina::codec::VideoParameters) {
        self.finish();
        let Some(info) = track_info(v) else { return };
        let depth = reorder_depth(v).unwrap_or(2);
        self.order = Some(DecodeTimes::new(depth));
        self.tracks += 1;
        if let Ok(w) = SegmentWriter::new(Vec::new(), &info.track) {
            self.writer = Some(w);
        }
    }

    fn frame(&mut self, pts: i64, keyframe: bool, data: Vec<u8>) {
        let Some(order) = self.order.as_mut() else {
            return;
        };
        if let Some((dts, pts, item)) = order.push(pts, (keyframe, data)) {
            self.write(dts, pts, item);
        }
    }

    fn write(&mut self, dts: i64, pts: i64, (keyframe, data): (bool, Vec<u8>)) {
        let origin = *self.origin.get_or_insert(dts);
        let (Ok(dts), Some(w)) = (
            u64::try_from(dts.saturating_sub(origin)),
            self.writer.as_mut(),
        ) else {
            return;
        };
        // The recorder refuses decode times that do not increase.
        if self.last_dts.is_some_and(|last| dts <= last) {
            return;
        }
        self.last_dts = Some(dts);
        // `pts < dts` only when a camera reorders deeper than it declares (as the recorder).
        let pts = u64::try_from(pts.saturating_sub(origin)).unwrap_or(0);
        if w.push(Sample {
            dts,
            pts,
            keyframe,
            data: Bytes::from(data),
        })
        .is_ok()
        {
            self.frames += 1;
        }
    }

    fn finish(&mut self) {
        if let Some(mut order) = self.order.take() {
            for (dts, pts, item) in order.drain() {
                self.write(dts, pts, item);
            }
        }
        if let Some(w) = self.writer.take()
            && w.finish(3000).is_ok()
        {
            self.segments += 1;
        }
        self.last_dts = None;
        self.origin = None;
    }
}

pub const RTSP_WORDS: &[&[u8]] = &[
    b"RTSP/1.0 200 OK\r\n",
    b"RTSP/1.0 401 Unauthorized\r\n",
    b"CSeq: 1\r\n",
    b"Content-Length: ",
    b"Content-Type: application/sdp\r\n",
    b"Session: 12345678;timeout=60\r\n",
    b"Transport: RTP/AVP/TCP;unicast;interleaved=0-1\r\n",
    b"WWW-Authenticate: Digest realm=\"cam\", nonce=\"abc\"\r\n",
    b"RTP-Info: url=rtsp://cam/track1;seq=1;rtptime=0\r\n",
    b"\r\n",
    b"$\x00",
    b"$\x01",
];

pub const SDP_WORDS: &[&[u8]] = &[
    b"v=0\r\n",
    b"o=- 0 0 IN IP4 127.0.0.1\r\n",
    b"s=Session\r\n",
    b"c=IN IP4 0.0.0.0\r\n",
    b"t=0 0\r\n",
    b"m=video 0 RTP/AVP 96\r\n",
    b"m=audio 0 RTP/AVP 97\r\n",
    b"a=rtpmap:96 H264/90000\r\n",
    b"a=rtpmap:96 H265/90000\r\n",
    b"a=fmtp:96 packetization-mode=1;sprop-parameter-sets=Z0IAH6tAUB7I,aM4xsg==\r\n",
    b"a=control:track1\r\n",
    b"a=framerate:25\r\n",
    b"\r\n",
];

pub const RTP_WORDS: &[&[u8]] = &[
    b"packetization-mode=1",
    b";sprop-parameter-sets=",
    b"sprop-vps=",
    b";sprop-sps=",
    b";sprop-pps=",
    b"profile-level-id=42e01f",
    // RTP version 2, payload type 96, with and without the marker
    b"\x80\x60",
    b"\x80\xe0",
    // NAL headers: H.264 SPS, PPS, IDR, FU-A, STAP-A; H.265 VPS, SPS, PPS, IDR, FU, AP
    b"\x67",
    b"\x68",
    b"\x65",
    b"\x7c\x85",
    b"\x7c\x45",
    b"\x78",
    b"\x40\x01",
    b"\x42\x01",
    b"\x44\x01",
    b"\x26\x01",
    b"\x62\x01\x93",
    b"\x60\x01",
];

pub const RTCP_WORDS: &[&[u8]] = &[
    // SR header (PT 200), RR (201), SDES (202), BYE (203)
    b"\x80\xc8\x00\x06",
    b"\x81\xc9\x00\x07",
    b"\x81\xca\x00\x02",
    b"\x81\xcb\x00\x01",
];
