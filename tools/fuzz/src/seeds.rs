//! The camera seeds, made with GStreamer's encoders and RTP payloaders (what cameras and
//! camsim send): H.264 and H.265 with B-frames as RTP, their SDP, an RTSP conversation with
//! interleaved packets, and RTCP reports. Written once into the kept corpus and committed, so
//! fuzzing itself needs no encoder.

use std::path::Path;

use anyhow::{Context, anyhow};
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

struct Stream {
    /// The `a=fmtp` parameters.
    fmtp: String,
    encoding: &'static str,
    packets: Vec<Vec<u8>>,
}

fn capture(encoding: &'static str) -> anyhow::Result<Stream> {
    gst::init()?;
    let (enc, parse, pay) = match encoding {
        "H264" => (
            "x264enc key-int-max=5 bframes=2 b-adapt=false",
            "h264parse",
            "rtph264pay",
        ),
        _ => (
            "x265enc key-int-max=5 option-string=bframes=2",
            "h265parse",
            "rtph265pay",
        ),
    };
    let desc = format!(
        "videotestsrc num-buffers=12 pattern=ball ! video/x-raw,width=160,height=96,framerate=25/1 \
         ! {enc} ! {parse} ! {pay} mtu=400 config-interval=-1 pt=96 \
         ! appsink name=out sync=false"
    );
    let pipeline = gst::parse::launch(&desc)
        .with_context(|| format!("GStreamer pipeline `{desc}`"))?
        .downcast::<gst::Pipeline>()
        .map_err(|_| anyhow!("not a pipeline"))?;
    let sink = pipeline
        .by_name("out")
        .and_then(|e| e.downcast::<gst_app::AppSink>().ok())
        .context("appsink")?;
    pipeline.set_state(gst::State::Playing)?;
    let mut packets = Vec::new();
    let mut fmtp = String::new();
    while let Ok(sample) = sink.pull_sample() {
        if fmtp.is_empty()
            && let Some(s) = sample.caps().and_then(|c| c.structure(0))
        {
            let field = |k: &str| s.get::<String>(k).ok();
            fmtp = match encoding {
                "H264" => format!(
                    "packetization-mode=1;profile-level-id={};sprop-parameter-sets={}",
                    field("profile-level-id").unwrap_or_default(),
                    field("sprop-parameter-sets").unwrap_or_default()
                ),
                _ => format!(
                    "sprop-vps={};sprop-sps={};sprop-pps={}",
                    field("sprop-vps").unwrap_or_default(),
                    field("sprop-sps").unwrap_or_default(),
                    field("sprop-pps").unwrap_or_default()
                ),
            };
        }
        if let Some(b) = sample.buffer() {
            let map = b.map_readable()?;
            packets.push(map.as_slice().to_vec());
        }
    }
    pipeline.set_state(gst::State::Null)?;
    if packets.is_empty() {
        return Err(anyhow!("{encoding}: the encoder produced no packets"));
    }
    Ok(Stream {
        fmtp,
        encoding,
        packets,
    })
}

/// RFC 4571 framing: each packet after its 16-bit length.
fn framed(fmtp: &str, packets: &[Vec<u8>]) -> Vec<u8> {
    let mut out = fmtp.as_bytes().to_vec();
    out.push(b'\n');
    for p in packets {
        out.extend_from_slice(&(p.len() as u16).to_be_bytes());
        out.extend_from_slice(p);
    }
    out
}

fn sdp(s: &Stream) -> String {
    format!(
        "v=0\r\no=- 1188340656180883 1 IN IP4 127.0.0.1\r\ns=Session streamed with GStreamer\r\n\
         i=rtsp-server\r\nt=0 0\r\na=tool:GStreamer\r\na=type:broadcast\r\na=control:*\r\n\
         a=range:npt=now-\r\nm=video 0 RTP/AVP 96\r\nc=IN IP4 0.0.0.0\r\n\
         a=rtpmap:96 {}/90000\r\na=framerate:25\r\na=fmtp:96 {}\r\na=control:stream=0\r\n",
        s.encoding, s.fmtp
    )
}

/// A sender report (NTP and RTP time) and a receiver report, one compound packet.
fn rtcp_compound() -> Vec<u8> {
    let mut sr = vec![0x80, 200, 0, 6];
    sr.extend_from_slice(&0x1234_5678u32.to_be_bytes()); // SSRC
    sr.extend_from_slice(&0xed1c_9a80u32.to_be_bytes()); // NTP seconds (2026)
    sr.extend_from_slice(&0x8000_0000u32.to_be_bytes()); // NTP fraction
    sr.extend_from_slice(&90_000u32.to_be_bytes()); // RTP time
    sr.extend_from_slice(&25u32.to_be_bytes()); // packets
    sr.extend_from_slice(&40_000u32.to_be_bytes()); // octets
    let mut rr = vec![0x81, 201, 0, 7];
    rr.extend_from_slice(&0x0bad_cafeu32.to_be_bytes());
    rr.extend_from_slice(&0x1234_5678u32.to_be_bytes());
    rr.extend_from_slice(&[0, 0, 0, 1]); // fraction lost, cumulative lost
    rr.extend_from_slice(&[0, 0, 0x10, 0]); // highest sequence
    rr.extend_from_slice(&[0; 12]); // jitter, LSR, DLSR
    sr.extend(rr);
    sr
}

fn rtsp_conversation(s: &Stream) -> Vec<u8> {
    let body = sdp(s);
    let mut out = format!(
        "RTSP/1.0 200 OK\r\nCSeq: 1\r\nContent-Type: application/sdp\r\n\
         Content-Base: rtsp://127.0.0.1:8554/cam/\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(
        b"RTSP/1.0 200 OK\r\nCSeq: 2\r\nTransport: RTP/AVP/TCP;unicast;interleaved=0-1;ssrc=12345678;mode=\"PLAY\"\r\n\
          Session: 5Ev7ZTj1;timeout=60\r\n\r\n\
          RTSP/1.0 200 OK\r\nCSeq: 3\r\nRTP-Info: url=rtsp://127.0.0.1:8554/cam/stream=0;seq=1;rtptime=0\r\n\
          Range: npt=0-\r\nSession: 5Ev7ZTj1;timeout=60\r\n\r\n",
    );
    for p in s.packets.iter().take(6) {
        out.push(b'$');
        out.push(0);
        out.extend_from_slice(&(p.len() as u16).to_be_bytes());
        out.extend_from_slice(p);
    }
    let rtcp = rtcp_compound();
    out.push(b'$');
    out.push(1);
    out.extend_from_slice(&(rtcp.len() as u16).to_be_bytes());
    out.extend_from_slice(&rtcp);
    out
}

fn put(dir: &Path, name: &str, bytes: &[u8]) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(name);
    std::fs::write(&path, bytes).with_context(|| format!("write {}", path.display()))?;
    println!("{} ({} bytes)", path.display(), bytes.len());
    Ok(())
}

pub fn write(out: &Path) -> anyhow::Result<()> {
    let h264 = capture("H264")?;
    let h265 = capture("H265")?;
    for (name, s) in [("rtp-h264", &h264), ("rtp-h265", &h265)] {
        put(
            &out.join(name),
            "gstreamer-bframes",
            &framed(&s.fmtp, &s.packets),
        )?;
        // The same stream with every fifth packet lost after the first four.
        let lossy: Vec<Vec<u8>> = s
            .packets
            .iter()
            .enumerate()
            .filter(|(i, _)| *i < 4 || i % 5 != 0)
            .map(|(_, p)| p.clone())
            .collect();
        put(&out.join(name), "gstreamer-lossy", &framed(&s.fmtp, &lossy))?;
        // Parameter sets only in band (no sprop in the SDP).
        put(&out.join(name), "in-band-only", &framed("", &s.packets))?;
    }
    put(&out.join("sdp"), "h264", sdp(&h264).as_bytes())?;
    put(&out.join("sdp"), "h265", sdp(&h265).as_bytes())?;
    put(
        &out.join("rtsp"),
        "describe-setup-play-h264",
        &rtsp_conversation(&h264),
    )?;
    put(
        &out.join("rtsp"),
        "describe-setup-play-h265",
        &rtsp_conversation(&h265),
    )?;
    put(
        &out.join("rtsp"),
        "unauthorized",
        b"RTSP/1.0 401 Unauthorized\r\nCSeq: 1\r\nWWW-Authenticate: Digest realm=\"IP Camera\", nonce=\"0a4f113b\", stale=\"FALSE\"\r\nWWW-Authenticate: Basic realm=\"IP Camera\"\r\n\r\n",
    )?;
    put(
        &out.join("rtcp"),
        "sender-and-receiver-report",
        &rtcp_compound(),
    )?;
    Ok(())
}
