//! A lean RTSP client for the common case — H.264 over RTSP with RTP interleaved on the TCP
//! connection — that feeds the recorder directly: one thread and one socket per camera, no
//! jitter buffer (TCP delivers in order), no GStreamer elements per packet. It is what makes
//! ingest cheap per stream (see `e2e/bench_ingest.py`).
//!
//! What it speaks: DESCRIBE (SDP: the first video media, its control URL, payload type, clock
//! rate and `sprop-parameter-sets`), SETUP with `RTP/AVP/TCP;interleaved=0-1`, PLAY, keep-alive
//! OPTIONS at half the session timeout, TEARDOWN on stop; Basic and Digest authentication
//! (credentials never logged). Anything else — H.265, other codecs, UDP, `rtsps://` — is
//! reported as [`NativeEnd::Unsupported`] so the camera falls back to the GStreamer pipeline.
//!
//! Timing: the first access unit is stamped with the wall clock when it arrives; later ones
//! follow the RTP timestamps (90 kHz) from there, so segment times follow the camera's own
//! clock within a session, as they do with GStreamer's pipeline clock.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use md5::{Digest, Md5};

use crate::h264::{self, Depacketizer};
use crate::recorder::{GapReason, TrackInfo};

const USER_AGENT: &str = concat!("kordon-ingest/", env!("CARGO_PKG_VERSION"));
/// Socket read timeout: how often the reader looks at the stop flag and the clocks.
const POLL: Duration = Duration::from_millis(250);
/// Largest RTSP response (headers + SDP) accepted.
const MAX_RESPONSE: usize = 64 * 1024;
/// Keep-alive period when the server states no session timeout (it defaults to 60 s).
const DEFAULT_KEEPALIVE: Duration = Duration::from_secs(25);

/// How a native session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NativeEnd {
    /// Stopped on request.
    Stopped,
    /// The stream failed; recorded as a gap with this reason.
    Failed(GapReason, String),
    /// The camera needs what this client does not do (codec, transport): use GStreamer.
    Unsupported(String),
}

/// What a session needs.
pub struct NativeParams {
    pub url: String,
    pub username: Option<String>,
    pub password: Option<String>,
    /// No media for this long ends the session.
    pub stall_timeout: Duration,
    pub stop: Arc<AtomicBool>,
}

/// Receives the session's access units.
pub trait UnitSink {
    /// One access unit: `pts_ns` from the session start, `wall_ns` its wall-clock time.
    fn unit(
        &mut self,
        info: &Arc<TrackInfo>,
        pts_ns: u64,
        keyframe: bool,
        data: bytes::Bytes,
        wall_ns: u64,
    ) -> Result<(), String>;
}

/// Whether this client can try `url` over `transport` (the codec is known only after DESCRIBE).
pub fn eligible(url: &str, tcp: bool) -> bool {
    tcp && url.starts_with("rtsp://")
}

fn failed(reason: GapReason, msg: impl Into<String>) -> NativeEnd {
    NativeEnd::Failed(reason, msg.into())
}

/// A parsed `rtsp://` URL, without credentials.
struct Target {
    host: String,
    port: u16,
    /// The URL with any `user:pass@` removed.
    url: String,
    user: Option<String>,
    pass: Option<String>,
}

fn parse_url(raw: &str, user: Option<String>, pass: Option<String>) -> Result<Target, String> {
    let u = url::Url::parse(raw).map_err(|e| format!("record URL is not a URL: {e}"))?;
    let host = u
        .host_str()
        .ok_or_else(|| "record URL has no host".to_string())?
        .trim_matches(|c| c == '[' || c == ']')
        .to_string();
    let port = u.port().unwrap_or(554);
    let url_user = (!u.username().is_empty()).then(|| percent_decode(u.username()));
    let url_pass = u.password().map(percent_decode);
    let mut clean = u.clone();
    let _ = clean.set_username("");
    let _ = clean.set_password(None);
    Ok(Target {
        host,
        port,
        url: clean.to_string(),
        user: user.or(url_user),
        pass: pass.or(url_pass),
    })
}

fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

/// One RTSP response.
#[derive(Debug, Default)]
struct Response {
    status: u16,
    reason: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Parses a response at the start of `buf`; `None` until it is complete.
fn parse_response(buf: &[u8]) -> Result<Option<(Response, usize)>, String> {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        if buf.len() > MAX_RESPONSE {
            return Err("RTSP response headers too long".into());
        }
        return Ok(None);
    };
    let head = std::str::from_utf8(&buf[..end]).map_err(|_| "RTSP response is not text")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let mut parts = status_line.splitn(3, ' ');
    let proto = parts.next().unwrap_or("");
    if !proto.starts_with("RTSP/") {
        return Err(format!(
            "not an RTSP response: `{}`",
            status_line.chars().take(40).collect::<String>()
        ));
    }
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or("RTSP response without a status code")?;
    let reason = parts.next().unwrap_or("").to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    if len > MAX_RESPONSE {
        return Err("RTSP response body too long".into());
    }
    let total = end + 4 + len;
    if buf.len() < total {
        return Ok(None);
    }
    Ok(Some((
        Response {
            status,
            reason,
            headers,
            body: buf[end + 4..total].to_vec(),
        },
        total,
    )))
}

/// The first video media of an SDP.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct VideoMedia {
    control: String,
    payload_type: u8,
    encoding: String,
    clock_rate: u32,
    sps: Option<Vec<u8>>,
    pps: Option<Vec<u8>>,
}

fn parse_sdp(sdp: &str) -> Result<(Option<String>, VideoMedia), String> {
    let mut session_control = None;
    let mut media: Option<VideoMedia> = None;
    let mut in_video = false;
    let mut seen_video = false;
    for line in sdp.lines().map(str::trim) {
        if let Some(m) = line.strip_prefix("m=") {
            in_video = m.starts_with("video ") && !seen_video;
            if in_video {
                seen_video = true;
                let pt = m
                    .split_whitespace()
                    .nth(3)
                    .and_then(|p| p.parse().ok())
                    .ok_or("SDP video media without a payload type")?;
                media = Some(VideoMedia {
                    payload_type: pt,
                    clock_rate: 90_000,
                    ..Default::default()
                });
            }
            continue;
        }
        let Some(attr) = line.strip_prefix("a=") else {
            continue;
        };
        if let Some(c) = attr.strip_prefix("control:") {
            if !seen_video {
                session_control = Some(c.trim().to_string());
            } else if in_video && let Some(m) = media.as_mut() {
                m.control = c.trim().to_string();
            }
        } else if in_video && let Some(m) = media.as_mut() {
            if let Some(r) = attr.strip_prefix("rtpmap:") {
                let (pt, rest) = r.split_once(' ').unwrap_or((r, ""));
                if pt.trim().parse::<u8>().ok() == Some(m.payload_type) {
                    let mut p = rest.trim().split('/');
                    m.encoding = p.next().unwrap_or("").to_ascii_uppercase();
                    m.clock_rate = p.next().and_then(|c| c.parse().ok()).unwrap_or(90_000);
                }
            } else if let Some(f) = attr.strip_prefix("fmtp:") {
                for kv in f.split_once(' ').map(|x| x.1).unwrap_or("").split(';') {
                    if let Some(v) = kv.trim().strip_prefix("sprop-parameter-sets=") {
                        let b64 = base64::engine::general_purpose::STANDARD;
                        for ps in v.split(',') {
                            if let Ok(nal) = b64.decode(ps.trim())
                                && let Some(&h) = nal.first()
                            {
                                match h & 0x1f {
                                    7 => m.sps = Some(nal),
                                    8 => m.pps = Some(nal),
                                    _ => {}
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    let media = media.ok_or("the camera's SDP has no video stream")?;
    Ok((session_control, media))
}

/// `control` relative to `base` (RFC 2326 C.1.1).
fn resolve(base: &str, control: &str) -> String {
    if control.is_empty() || control == "*" {
        return base.to_string();
    }
    if control.starts_with("rtsp://") || control.starts_with("rtsps://") {
        return control.to_string();
    }
    if base.ends_with('/') {
        format!("{base}{control}")
    } else {
        format!("{base}/{control}")
    }
}

/// The Authorization header for a challenge, or why it cannot be answered.
#[derive(Debug, Clone)]
enum Auth {
    Basic(String),
    Digest {
        user: String,
        pass: String,
        realm: String,
        nonce: String,
        opaque: Option<String>,
        qop_auth: bool,
        nc: u32,
    },
}

fn challenge_params(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = s;
    while !rest.is_empty() {
        rest = rest.trim_start_matches([' ', ',']);
        let Some(eq) = rest.find('=') else { break };
        let key = rest[..eq].trim().to_ascii_lowercase();
        rest = &rest[eq + 1..];
        let value;
        if let Some(r) = rest.strip_prefix('"') {
            let end = r.find('"').unwrap_or(r.len());
            value = r[..end].to_string();
            rest = r.get(end + 1..).unwrap_or("");
        } else {
            let end = rest.find(',').unwrap_or(rest.len());
            value = rest[..end].trim().to_string();
            rest = &rest[end..];
        }
        out.push((key, value));
    }
    out
}

fn md5_hex(s: &str) -> String {
    hex::encode(Md5::digest(s.as_bytes()))
}

impl Auth {
    fn from_challenges(resp: &Response, user: &str, pass: &str) -> Option<Auth> {
        let challenges: Vec<&str> = resp
            .headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case("www-authenticate"))
            .map(|(_, v)| v.as_str())
            .collect();
        for c in &challenges {
            if let Some(p) = c
                .strip_prefix("Digest ")
                .or_else(|| c.strip_prefix("digest "))
            {
                let params = challenge_params(p);
                let get = |k: &str| params.iter().find(|(a, _)| a == k).map(|(_, v)| v.clone());
                return Some(Auth::Digest {
                    user: user.to_string(),
                    pass: pass.to_string(),
                    realm: get("realm").unwrap_or_default(),
                    nonce: get("nonce")?,
                    opaque: get("opaque"),
                    qop_auth: get("qop").is_some_and(|q| q.split(',').any(|x| x.trim() == "auth")),
                    nc: 0,
                });
            }
        }
        challenges
            .iter()
            .any(|c| c.to_ascii_lowercase().starts_with("basic"))
            .then(|| {
                Auth::Basic(
                    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}")),
                )
            })
    }

    fn header(&mut self, method: &str, uri: &str) -> String {
        match self {
            Auth::Basic(b) => format!("Basic {b}"),
            Auth::Digest {
                user,
                pass,
                realm,
                nonce,
                opaque,
                qop_auth,
                nc,
            } => {
                let ha1 = md5_hex(&format!("{user}:{realm}:{pass}"));
                let ha2 = md5_hex(&format!("{method}:{uri}"));
                let mut h;
                if *qop_auth {
                    *nc += 1;
                    let cnonce = hex::encode(rand::random::<[u8; 8]>());
                    let response =
                        md5_hex(&format!("{ha1}:{nonce}:{:08x}:{cnonce}:auth:{ha2}", *nc));
                    h = format!(
                        "Digest username=\"{user}\", realm=\"{realm}\", nonce=\"{nonce}\", \
                         uri=\"{uri}\", response=\"{response}\", qop=auth, nc={:08x}, \
                         cnonce=\"{cnonce}\"",
                        *nc
                    );
                } else {
                    let response = md5_hex(&format!("{ha1}:{nonce}:{ha2}"));
                    h = format!(
                        "Digest username=\"{user}\", realm=\"{realm}\", nonce=\"{nonce}\", \
                         uri=\"{uri}\", response=\"{response}\""
                    );
                }
                if let Some(o) = opaque {
                    h.push_str(&format!(", opaque=\"{o}\""));
                }
                h
            }
        }
    }
}

/// The RTSP connection: requests, and the interleaved stream after PLAY.
struct Conn {
    sock: TcpStream,
    buf: Vec<u8>,
    /// Bytes of `buf` in use.
    len: usize,
    cseq: u32,
    session: Option<String>,
    auth: Option<Auth>,
    user: Option<String>,
    pass: Option<String>,
}

impl Conn {
    fn fill(&mut self) -> std::io::Result<usize> {
        if self.len == self.buf.len() {
            self.buf.resize(self.buf.len() * 2, 0);
        }
        let n = self.sock.read(&mut self.buf[self.len..])?;
        self.len += n;
        Ok(n)
    }

    fn consume(&mut self, n: usize) {
        self.buf.copy_within(n..self.len, 0);
        self.len -= n;
    }

    fn send(&mut self, method: &str, uri: &str, extra: &[(&str, String)]) -> Result<u32, String> {
        self.cseq += 1;
        let mut req = format!(
            "{method} {uri} RTSP/1.0\r\nCSeq: {}\r\nUser-Agent: {USER_AGENT}\r\n",
            self.cseq
        );
        if let Some(s) = &self.session {
            req.push_str(&format!("Session: {s}\r\n"));
        }
        if let Some(a) = self.auth.as_mut() {
            req.push_str(&format!("Authorization: {}\r\n", a.header(method, uri)));
        }
        for (k, v) in extra {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        self.sock
            .write_all(req.as_bytes())
            .map_err(|e| format!("{method}: cannot write to the camera: {e}"))?;
        Ok(self.cseq)
    }

    /// Sends a request and waits for its response, answering one authentication challenge.
    fn request(
        &mut self,
        method: &str,
        uri: &str,
        extra: &[(&str, String)],
        deadline: Instant,
    ) -> Result<Response, NativeEnd> {
        for attempt in 0..2 {
            self.send(method, uri, extra)
                .map_err(|e| failed(GapReason::StreamLost, e))?;
            let resp = self.read_response(method, deadline)?;
            if resp.status == 401 && attempt == 0 && self.auth.is_none() {
                let (Some(u), Some(p)) = (self.user.clone(), self.pass.clone()) else {
                    return Err(failed(
                        GapReason::StreamError,
                        format!(
                            "{method}: the camera needs credentials (401) and none are configured"
                        ),
                    ));
                };
                match Auth::from_challenges(&resp, &u, &p) {
                    Some(a) => {
                        self.auth = Some(a);
                        continue;
                    }
                    None => {
                        return Err(failed(
                            GapReason::StreamError,
                            format!("{method}: unsupported authentication scheme"),
                        ));
                    }
                }
            }
            if resp.status == 401 {
                return Err(failed(
                    GapReason::StreamError,
                    format!("{method}: the camera refused the credentials (401)"),
                ));
            }
            if !(200..300).contains(&resp.status) {
                return Err(failed(
                    GapReason::StreamLost,
                    format!("{method}: {} {}", resp.status, resp.reason),
                ));
            }
            return Ok(resp);
        }
        Err(failed(
            GapReason::StreamError,
            format!("{method}: authentication failed"),
        ))
    }

    fn read_response(&mut self, method: &str, deadline: Instant) -> Result<Response, NativeEnd> {
        loop {
            // Interleaved data may precede the response (keep-alives during PLAY).
            while self.len >= 4 && self.buf[0] == b'$' {
                let n = 4 + u16::from_be_bytes([self.buf[2], self.buf[3]]) as usize;
                if self.len < n {
                    break;
                }
                self.consume(n);
            }
            if self.len > 0 && self.buf[0] != b'$' {
                match parse_response(&self.buf[..self.len]) {
                    Ok(Some((r, n))) => {
                        self.consume(n);
                        return Ok(r);
                    }
                    Ok(None) => {}
                    Err(e) => return Err(failed(GapReason::StreamError, format!("{method}: {e}"))),
                }
            }
            if Instant::now() > deadline {
                return Err(failed(
                    GapReason::StreamLost,
                    format!("{method}: no answer from the camera"),
                ));
            }
            match self.fill() {
                Ok(0) => {
                    return Err(failed(
                        GapReason::StreamLost,
                        format!("{method}: the camera closed the connection"),
                    ));
                }
                Ok(_) => {}
                Err(e) if is_timeout(&e) => {}
                Err(e) => {
                    return Err(failed(GapReason::StreamLost, format!("{method}: {e}")));
                }
            }
        }
    }
}

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// Runs one session until it fails or `stop` is set. Blocking: run it on its own thread.
pub fn run_session(p: &NativeParams, sink: &mut dyn UnitSink) -> NativeEnd {
    let target = match parse_url(&p.url, p.username.clone(), p.password.clone()) {
        Ok(t) => t,
        Err(e) => return failed(GapReason::StreamError, e),
    };
    let connect_timeout = p.stall_timeout.max(Duration::from_secs(1));
    let addr = match (target.host.as_str(), target.port).to_socket_addrs() {
        Ok(mut a) => match a.next() {
            Some(a) => a,
            None => {
                return failed(
                    GapReason::StreamLost,
                    format!("{}: no address", target.host),
                );
            }
        },
        Err(e) => return failed(GapReason::StreamLost, format!("{}: {e}", target.host)),
    };
    let sock = match TcpStream::connect_timeout(&addr, connect_timeout) {
        Ok(s) => s,
        Err(e) => {
            return failed(
                GapReason::StreamLost,
                format!("cannot connect to {addr}: {e}"),
            );
        }
    };
    let _ = sock.set_nodelay(true);
    if let Err(e) = sock.set_read_timeout(Some(POLL)) {
        return failed(GapReason::StreamLost, e.to_string());
    }
    let mut c = Conn {
        sock,
        buf: vec![0; 256 * 1024],
        len: 0,
        cseq: 0,
        session: None,
        auth: None,
        user: target.user.clone(),
        pass: target.pass.clone(),
    };
    let deadline = || Instant::now() + connect_timeout;

    let describe = match c.request(
        "DESCRIBE",
        &target.url,
        &[("Accept", "application/sdp".to_string())],
        deadline(),
    ) {
        Ok(r) => r,
        Err(e) => return e,
    };
    let base = describe
        .header("Content-Base")
        .or_else(|| describe.header("Content-Location"))
        .map(str::to_string)
        .unwrap_or_else(|| target.url.clone());
    let (session_control, video) = match parse_sdp(&String::from_utf8_lossy(&describe.body)) {
        Ok(x) => x,
        Err(e) => return failed(GapReason::StreamError, e),
    };
    if video.encoding != "H264" {
        return NativeEnd::Unsupported(format!("codec {}", video.encoding));
    }
    let setup_url = resolve(&base, &video.control);
    let setup = match c.request(
        "SETUP",
        &setup_url,
        &[(
            "Transport",
            "RTP/AVP/TCP;unicast;interleaved=0-1".to_string(),
        )],
        deadline(),
    ) {
        Ok(r) => r,
        Err(e) => return e,
    };
    let (session, timeout) = match setup.header("Session") {
        Some(s) => {
            let mut parts = s.split(';');
            let id = parts.next().unwrap_or("").trim().to_string();
            let timeout = parts
                .filter_map(|p| p.trim().strip_prefix("timeout="))
                .find_map(|t| t.parse::<u64>().ok())
                .map(Duration::from_secs);
            (id, timeout)
        }
        None => return failed(GapReason::StreamError, "SETUP: the camera sent no session"),
    };
    let rtp_channel = setup
        .header("Transport")
        .and_then(|t| {
            t.split(';')
                .find_map(|p| p.trim().strip_prefix("interleaved="))
                .and_then(|r| r.split('-').next())
                .and_then(|c| c.parse::<u8>().ok())
        })
        .unwrap_or(0);
    c.session = Some(session);
    let play_url = session_control
        .as_deref()
        .map(|sc| resolve(&base, sc))
        .unwrap_or_else(|| base.clone());
    if let Err(e) = c.request(
        "PLAY",
        &play_url,
        &[("Range", "npt=0.000-".to_string())],
        deadline(),
    ) {
        return e;
    }
    let keepalive = timeout
        .map(|t| (t / 2).max(Duration::from_secs(5)))
        .unwrap_or(DEFAULT_KEEPALIVE);

    let mut depay = Depacketizer::new();
    if let (Some(s), Some(pp)) = (&video.sps, &video.pps) {
        // Parameter sets from the SDP, until the stream sends its own.
        depay.preload(s, pp);
    }
    let mut track: Option<Arc<TrackInfo>> = None;
    let mut last_seq: Option<u16> = None;
    let mut last_media = Instant::now();
    let mut last_keepalive = Instant::now();
    // (extended RTP timestamp, wall ns) of the first unit; the last raw timestamp.
    let mut origin: Option<(i64, u64)> = None;
    let mut ext_ts: i64 = 0;
    let mut last_raw: Option<u32> = None;
    let clock = u64::from(video.clock_rate.max(1));

    let end = 'outer: loop {
        if p.stop.load(Ordering::Relaxed) {
            break NativeEnd::Stopped;
        }
        if last_keepalive.elapsed() >= keepalive {
            last_keepalive = Instant::now();
            if let Err(e) = c.send("OPTIONS", &play_url, &[]) {
                break failed(GapReason::StreamLost, e);
            }
        }
        match c.fill() {
            Ok(0) => break failed(GapReason::StreamLost, "the camera closed the connection"),
            Ok(_) => {}
            Err(e) if is_timeout(&e) => {}
            Err(e) => break failed(GapReason::StreamLost, format!("reading the stream: {e}")),
        }
        if last_media.elapsed() > p.stall_timeout {
            break failed(
                GapReason::StreamLost,
                format!(
                    "no media for {:.1}s (stream stalled)",
                    last_media.elapsed().as_secs_f64()
                ),
            );
        }
        // Every complete frame in the buffer.
        let mut at = 0usize;
        while at < c.len {
            let rest = &c.buf[at..c.len];
            if rest[0] == b'$' {
                if rest.len() < 4 {
                    break;
                }
                let n = u16::from_be_bytes([rest[2], rest[3]]) as usize;
                if rest.len() < 4 + n {
                    break;
                }
                let channel = rest[1];
                if channel == rtp_channel {
                    let pkt = &rest[4..4 + n];
                    if let Some((seq, ts, marker, payload)) = rtp_payload(pkt, video.payload_type) {
                        if let Some(prev) = last_seq
                            && seq != prev.wrapping_add(1)
                        {
                            depay.lost();
                        }
                        last_seq = Some(seq);
                        let units = match depay.push(ts, marker, payload) {
                            Ok(u) => u,
                            Err(e) => {
                                break 'outer failed(GapReason::StreamError, e.to_string());
                            }
                        };
                        if depay.take_params_changed() {
                            track = track_info(&depay);
                        }
                        for au in units {
                            last_media = Instant::now();
                            let Some(info) = &track else { continue };
                            match last_raw {
                                None => ext_ts = i64::from(au.rtp_ts),
                                Some(prev) => {
                                    ext_ts += i64::from(au.rtp_ts.wrapping_sub(prev) as i32)
                                }
                            }
                            last_raw = Some(au.rtp_ts);
                            let (ts0, wall0) = *origin.get_or_insert((ext_ts, now_ns()));
                            let rel = (ext_ts - ts0).max(0) as u64;
                            let pts_ns = rel * 1_000_000_000 / clock;
                            if let Err(e) =
                                sink.unit(info, pts_ns, au.keyframe, au.data, wall0 + pts_ns)
                            {
                                break 'outer failed(GapReason::StreamError, e);
                            }
                        }
                    }
                }
                at += 4 + n;
            } else if rest.starts_with(b"RTSP/") {
                // A keep-alive answer.
                match parse_response(rest) {
                    Ok(Some((r, n))) => {
                        if r.status == 454 {
                            break 'outer failed(
                                GapReason::StreamLost,
                                "the camera dropped the session (454)",
                            );
                        }
                        at += n;
                    }
                    Ok(None) => break,
                    Err(e) => break 'outer failed(GapReason::StreamError, e),
                }
            } else {
                // Out of step: skip to the next frame marker.
                match rest.iter().position(|&b| b == b'$') {
                    Some(i) => at += i,
                    None => at = c.len,
                }
            }
        }
        c.consume(at);
    };
    if end == NativeEnd::Stopped {
        let _ = c.send("TEARDOWN", &play_url, &[]);
    }
    end
}

fn track_info(depay: &Depacketizer) -> Option<Arc<TrackInfo>> {
    let sps = depay.params.sps.as_ref()?;
    let pps = depay.params.pps.as_ref()?;
    let info = h264::parse_sps(sps)?;
    Some(Arc::new(TrackInfo {
        track: crate::fmp4::TrackConfig {
            codec: crate::fmp4::Codec::H264,
            codec_data: h264::avcc(sps, pps)?,
            width: info.width,
            height: info.height,
            timescale: crate::recorder::TIMESCALE,
        },
        codec_name: "h264",
        fps: info.fps.unwrap_or(0.0),
    }))
}

/// (sequence, timestamp, marker, payload) of an RTP packet of `pt`.
fn rtp_payload(p: &[u8], pt: u8) -> Option<(u16, u32, bool, &[u8])> {
    if p.len() < 12 || p[0] >> 6 != 2 || p[1] & 0x7f != pt {
        return None;
    }
    let cc = usize::from(p[0] & 0x0f);
    let mut start = 12 + 4 * cc;
    let mut end = p.len();
    if p[0] & 0x10 != 0 {
        // Header extension.
        let h = p.get(start..start + 4)?;
        start += 4 + 4 * usize::from(u16::from_be_bytes([h[2], h[3]]));
    }
    if p[0] & 0x20 != 0 {
        let pad = usize::from(*p.last()?);
        end = end.checked_sub(pad)?;
    }
    if start >= end {
        return None;
    }
    Some((
        u16::from_be_bytes([p[2], p[3]]),
        u32::from_be_bytes([p[4], p[5], p[6], p[7]]),
        p[1] & 0x80 != 0,
        &p[start..end],
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sdp_of_gst_rtsp_server() {
        let sdp = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=Session\r\nt=0 0\r\na=control:*\r\n\
                   m=video 0 RTP/AVP 96\r\nc=IN IP4 0.0.0.0\r\na=rtpmap:96 H264/90000\r\n\
                   a=fmtp:96 packetization-mode=1;sprop-parameter-sets=Z2QAKKzZQHgCJ+XARAAAAwAEAAADAMg8YMZY,aOvjyyLA;profile-level-id=640028\r\n\
                   a=control:stream=0\r\nm=audio 0 RTP/AVP 97\r\na=control:stream=1\r\n";
        let (sc, v) = parse_sdp(sdp).unwrap();
        assert_eq!(sc.as_deref(), Some("*"));
        assert_eq!(
            (v.payload_type, v.encoding.as_str(), v.clock_rate),
            (96, "H264", 90000)
        );
        assert_eq!(v.control, "stream=0");
        assert_eq!(v.sps.as_ref().unwrap()[0], 0x67);
        assert_eq!(v.pps.as_ref().unwrap()[0], 0x68);
        assert_eq!(
            resolve("rtsp://h:1/cam1/main/", "stream=0"),
            "rtsp://h:1/cam1/main/stream=0"
        );
        assert_eq!(resolve("rtsp://h:1/a", "rtsp://x/y"), "rtsp://x/y");
        assert_eq!(resolve("rtsp://h:1/a", "*"), "rtsp://h:1/a");
    }

    #[test]
    fn responses_parse_in_pieces() {
        let r = b"RTSP/1.0 200 OK\r\nCSeq: 2\r\nContent-Length: 4\r\n\r\nabcdEXTRA";
        assert!(parse_response(&r[..20]).unwrap().is_none());
        assert!(parse_response(&r[..48]).unwrap().is_none());
        let (resp, n) = parse_response(r).unwrap().unwrap();
        assert_eq!((resp.status, resp.body.as_slice()), (200, &b"abcd"[..]));
        assert_eq!(&r[n..], b"EXTRA");
        assert!(parse_response(b"HTTP/1.1 200 OK\r\n\r\n").is_err());
    }

    #[test]
    fn digest_matches_rfc_2617_example_shape() {
        let resp = Response {
            status: 401,
            headers: vec![(
                "WWW-Authenticate".into(),
                "Digest realm=\"cam\", nonce=\"abc\", stale=FALSE".into(),
            )],
            ..Default::default()
        };
        let mut a = Auth::from_challenges(&resp, "u", "p").unwrap();
        let h = a.header("DESCRIBE", "rtsp://h/x");
        let ha1 = md5_hex("u:cam:p");
        let ha2 = md5_hex("DESCRIBE:rtsp://h/x");
        assert!(h.contains(&format!(
            "response=\"{}\"",
            md5_hex(&format!("{ha1}:abc:{ha2}"))
        )));
        let basic = Response {
            status: 401,
            headers: vec![("WWW-Authenticate".into(), "Basic realm=\"x\"".into())],
            ..Default::default()
        };
        assert_eq!(
            Auth::from_challenges(&basic, "u", "p")
                .unwrap()
                .header("X", "y"),
            "Basic dTpw"
        );
    }

    #[test]
    fn credentials_come_out_of_the_url() {
        let t = parse_url("rtsp://ad%40m:se%3Acret@10.0.0.5:8554/cam", None, None).unwrap();
        assert_eq!((t.host.as_str(), t.port), ("10.0.0.5", 8554));
        assert_eq!(t.url, "rtsp://10.0.0.5:8554/cam");
        assert_eq!(t.user.as_deref(), Some("ad@m"));
        assert_eq!(t.pass.as_deref(), Some("se:cret"));
    }

    #[test]
    fn rtp_headers() {
        let mut p = vec![0x80, 0x60 | 0x80, 0, 7, 0, 0, 0, 9, 1, 2, 3, 4, 0x41, 1];
        let (seq, ts, m, pl) = rtp_payload(&p, 0x60).unwrap();
        assert_eq!((seq, ts, m, pl), (7, 9, true, &[0x41u8, 1][..]));
        assert!(rtp_payload(&p, 0x61).is_none());
        p[0] |= 0x20; // padding of 1 byte
        assert_eq!(rtp_payload(&p, 0x60).unwrap().3, &[0x41u8]);
    }
}
