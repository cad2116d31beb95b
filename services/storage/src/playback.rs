//! Playback tokens and HLS playlists (pure; the HTTP side is [`crate::http`]).
//!
//! A playback URL carries a grant — site, camera, time range, expiry — and an HMAC-SHA256 of
//! it under the service's playback key:
//!
//! ```text
//! /v1/hls/<site>/<camera>.m3u8?from=<µs>&to=<µs>&exp=<unix s>&token=<base64url>   playlist
//! /v1/hls/<site>/<camera>/<from>.<to>.<exp>.<token>/<sequence>.mp4                media
//! token = HMAC-SHA256(key, "kordon.playback.v1" || len+site || len+camera
//!                          || i64 from || i64 to (i64::MAX: live) || i64 exp)
//! ```
//!
//! Media URLs carry the grant in a path segment (`to` is `live` when open-ended) rather than
//! in a query, so every segment URL ends in `.mp4`: players that check segment extensions
//! (ffmpeg's HLS demuxer) accept them.
//!
//! The token is the only authorisation the HTTP side needs: it was issued by GetPlaybackUrl
//! after the caller was authorised and the access was logged. It covers the playlist and every
//! segment of that camera overlapping the range, until it expires.
//!
//! Playlists are HLS version 7 with fMP4 segments. Each Kordon segment is a self-contained
//! fragmented MP4 (ftyp+moov, then moof/mdat), so every segment gets its own
//! `EXT-X-MAP` (bytes `0..init_size` of the object) and an `EXT-X-BYTERANGE` for the rest.
//! `EXT-X-DISCONTINUITY` marks every gap (a hole longer than the merge tolerance, which
//! covers every registered gap); `EXT-X-PROGRAM-DATE-TIME` gives each segment's wall-clock
//! start. HLS requires a discontinuity wherever media timestamps do not continue. Kordon's
//! ingest continues them from segment to segment (`continuous_timestamps`, the default), so
//! only gaps are marked; for recorders that restart timestamps in every file, every segment
//! boundary is marked instead.

use std::fmt::Write as _;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;

use crate::StorageError;

const DOMAIN: &[u8] = b"kordon.playback.v1";
/// What a download token grants: one MAC domain each, so a token for one kind of thing can
/// never be presented for another (a thumbnail's token as a bundle's, or the reverse).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Download {
    /// A rendition's or snapshot's object, by key.
    Object,
    /// An evidence bundle, by id.
    Bundle,
}

impl Download {
    fn domain(self) -> &'static [u8] {
        match self {
            Download::Object => b"kordon.download.object.v2",
            Download::Bundle => b"kordon.download.bundle.v2",
        }
    }
}

/// `to` of a live grant (the playlist keeps growing).
pub const LIVE: i64 = i64::MAX;

/// What a playback token allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub site: String,
    pub camera: String,
    pub from_us: i64,
    /// [`LIVE`] for an open-ended range.
    pub to_us: i64,
    /// Unix seconds after which the token is refused.
    pub expires_s: i64,
}

/// The query string of a playback URL.
#[derive(Debug, Clone, Deserialize)]
pub struct PlaybackQuery {
    pub from: i64,
    /// Absent for live.
    pub to: Option<i64>,
    pub exp: i64,
    pub token: String,
}

/// Signs and checks playback tokens.
#[derive(Clone)]
pub struct PlaybackSigner {
    key: Vec<u8>,
}

impl std::fmt::Debug for PlaybackSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PlaybackSigner(<key>)")
    }
}

impl PlaybackSigner {
    pub fn new(key: Vec<u8>) -> Self {
        Self { key }
    }

    /// A signer with a fresh random key (tokens die with the process).
    pub fn random() -> Self {
        Self::new(rand::random::<[u8; 32]>().to_vec())
    }

    fn mac(&self, g: &Grant) -> Hmac<Sha256> {
        // HMAC accepts keys of any length.
        let mut m = match Hmac::<Sha256>::new_from_slice(&self.key) {
            Ok(m) => m,
            Err(_) => unreachable!("HMAC takes keys of any length"),
        };
        m.update(DOMAIN);
        for s in [&g.site, &g.camera] {
            m.update(&u32::try_from(s.len()).unwrap_or(u32::MAX).to_be_bytes());
            m.update(s.as_bytes());
        }
        m.update(&g.from_us.to_be_bytes());
        m.update(&g.to_us.to_be_bytes());
        m.update(&g.expires_s.to_be_bytes());
        m
    }

    pub fn sign(&self, g: &Grant) -> String {
        URL_SAFE_NO_PAD.encode(self.mac(g).finalize().into_bytes())
    }

    /// The query string (`from=..&to=..&exp=..&token=..`) of a URL for `g`.
    pub fn query(&self, g: &Grant) -> String {
        let mut q = format!("from={}", g.from_us);
        if g.to_us != LIVE {
            let _ = write!(q, "&to={}", g.to_us);
        }
        let _ = write!(q, "&exp={}&token={}", g.expires_s, self.sign(g));
        q
    }

    /// The path segment of media URLs for `g`: `<from>.<to|live>.<exp>.<token>`.
    pub fn path_grant(&self, g: &Grant) -> String {
        let to = if g.to_us == LIVE {
            "live".to_string()
        } else {
            g.to_us.to_string()
        };
        format!("{}.{to}.{}.{}", g.from_us, g.expires_s, self.sign(g))
    }

    fn object_mac(&self, kind: Download, site: &str, id: &str, expires_s: i64) -> Hmac<Sha256> {
        let mut m = match Hmac::<Sha256>::new_from_slice(&self.key) {
            Ok(m) => m,
            Err(_) => unreachable!("HMAC takes keys of any length"),
        };
        m.update(kind.domain());
        for s in [site, id] {
            m.update(&u32::try_from(s.len()).unwrap_or(u32::MAX).to_be_bytes());
            m.update(s.as_bytes());
        }
        m.update(&expires_s.to_be_bytes());
        m
    }

    /// The token of a download URL of `kind` for `id` (a bundle id or an object key) of
    /// `site`, valid until `expires_s` (Unix seconds).
    pub fn sign_object(&self, kind: Download, site: &str, id: &str, expires_s: i64) -> String {
        URL_SAFE_NO_PAD.encode(
            self.object_mac(kind, site, id, expires_s)
                .finalize()
                .into_bytes(),
        )
    }

    /// Checks a download token made by [`PlaybackSigner::sign_object`] at `now_s`.
    pub fn check_object(
        &self,
        kind: Download,
        site: &str,
        id: &str,
        expires_s: i64,
        token: &str,
        now_s: i64,
    ) -> Result<(), StorageError> {
        let tag = URL_SAFE_NO_PAD
            .decode(token.as_bytes())
            .map_err(|_| StorageError::BadToken)?;
        self.object_mac(kind, site, id, expires_s)
            .verify_slice(&tag)
            .map_err(|_| StorageError::BadToken)?;
        if now_s > expires_s {
            return Err(StorageError::BadToken);
        }
        Ok(())
    }

    /// The grant a request presents, if its token is genuine and unexpired at `now_s`.
    pub fn check(
        &self,
        site: &str,
        camera: &str,
        q: &PlaybackQuery,
        now_s: i64,
    ) -> Result<Grant, StorageError> {
        let g = Grant {
            site: site.to_string(),
            camera: camera.to_string(),
            from_us: q.from,
            to_us: q.to.unwrap_or(LIVE),
            expires_s: q.exp,
        };
        let tag = URL_SAFE_NO_PAD
            .decode(q.token.as_bytes())
            .map_err(|_| StorageError::BadToken)?;
        // Constant-time comparison.
        self.mac(&g)
            .verify_slice(&tag)
            .map_err(|_| StorageError::BadToken)?;
        if now_s > g.expires_s {
            return Err(StorageError::BadToken);
        }
        Ok(g)
    }
}

/// Parses a media URL's grant segment (see [`PlaybackSigner::path_grant`]); the token is
/// checked by [`PlaybackSigner::check`].
pub fn parse_path_grant(s: &str) -> Option<PlaybackQuery> {
    let mut parts = s.splitn(4, '.');
    let from = parts.next()?.parse().ok()?;
    let to = match parts.next()? {
        "live" => None,
        t => Some(t.parse().ok()?),
    };
    let exp = parts.next()?.parse().ok()?;
    let token = parts.next()?.to_string();
    Some(PlaybackQuery {
        from,
        to,
        exp,
        token,
    })
}

/// One segment in a playlist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlaylistSegment {
    pub sequence: u64,
    pub start_us: i64,
    pub end_us: i64,
    pub size_bytes: u64,
    pub init_size: u64,
}

/// Renders an HLS media playlist of `segments` (sorted by start). Segment URIs are
/// `<camera>/<grant>/<sequence>.mp4`, relative to the playlist's own URL.
pub fn render_playlist(
    camera: &str,
    segments: &[PlaylistSegment],
    grant: &str,
    tolerance_us: i64,
    live: bool,
    continuous_timestamps: bool,
) -> String {
    let target = segments
        .iter()
        .map(|s| (s.end_us - s.start_us + 999_999) / 1_000_000)
        .max()
        .unwrap_or(1)
        .max(1);
    let mut out =
        String::with_capacity(128 + segments.len() * (200 + 2 * (camera.len() + grant.len())));
    out.push_str("#EXTM3U\n#EXT-X-VERSION:7\n");
    let _ = writeln!(out, "#EXT-X-TARGETDURATION:{target}");
    out.push_str("#EXT-X-MEDIA-SEQUENCE:0\n");
    out.push_str(if live {
        "#EXT-X-PLAYLIST-TYPE:EVENT\n"
    } else {
        "#EXT-X-PLAYLIST-TYPE:VOD\n"
    });
    out.push_str("#EXT-X-INDEPENDENT-SEGMENTS\n");
    // A day is 14,400 segments: write straight into one buffer, no per-segment allocation.
    let prefix = format!("{camera}/{grant}/");
    let mut prev_end: Option<i64> = None;
    for s in segments {
        if let Some(end) = prev_end
            && (!continuous_timestamps || s.start_us.saturating_sub(end) > tolerance_us)
        {
            out.push_str("#EXT-X-DISCONTINUITY\n");
        }
        let _ = writeln!(
            out,
            "#EXT-X-MAP:URI=\"{prefix}{}.mp4\",BYTERANGE=\"{}@0\"",
            s.sequence, s.init_size
        );
        if let Some(c) = kordon_objects::time::civil(s.start_us) {
            let _ = writeln!(
                out,
                "#EXT-X-PROGRAM-DATE-TIME:{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
                c.year,
                c.month,
                c.day,
                c.hour,
                c.minute,
                c.second,
                c.micro / 1000
            );
        }
        // Duration in ms, rounded, printed as seconds with three decimals.
        let ms = (s.end_us - s.start_us + 500) / 1000;
        let _ = write!(
            out,
            "#EXTINF:{}.{:03},\n#EXT-X-BYTERANGE:{}@{}\n{prefix}{}.mp4\n",
            ms / 1000,
            ms % 1000,
            s.size_bytes.saturating_sub(s.init_size),
            s.init_size,
            s.sequence
        );
        prev_end = Some(s.end_us);
    }
    if !live {
        out.push_str("#EXT-X-ENDLIST\n");
    }
    out
}

/// An HTTP `Range` request resolved against an object of `size` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteRange {
    /// No (usable) Range header: the whole object.
    Full,
    /// Bytes `start..end` (end exclusive).
    Partial { start: u64, end: u64 },
    /// 416: nothing of the object is in the range.
    Unsatisfiable,
}

/// Parses a `Range` header value for an object of `size` bytes. Only single `bytes` ranges
/// are honoured; anything else is served whole (allowed by RFC 9110).
pub fn parse_range(header: Option<&str>, size: u64) -> ByteRange {
    let Some(h) = header else {
        return ByteRange::Full;
    };
    let Some(spec) = h.trim().strip_prefix("bytes=") else {
        return ByteRange::Full;
    };
    if spec.contains(',') {
        return ByteRange::Full;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return ByteRange::Full;
    };
    let (a, b) = (a.trim(), b.trim());
    let parsed = match (a.is_empty(), b.is_empty()) {
        // bytes=-N: the last N bytes.
        (true, false) => match b.parse::<u64>() {
            Ok(0) => return ByteRange::Unsatisfiable,
            Ok(n) => Some((size.saturating_sub(n), size)),
            Err(_) => None,
        },
        // bytes=A-
        (false, true) => a.parse::<u64>().ok().map(|a| (a, size)),
        // bytes=A-B (inclusive)
        (false, false) => match (a.parse::<u64>(), b.parse::<u64>()) {
            (Ok(a), Ok(b)) if b >= a => Some((a, b.saturating_add(1).min(size))),
            _ => None,
        },
        (true, true) => None,
    };
    match parsed {
        None => ByteRange::Full,
        Some((start, _)) if start >= size => ByteRange::Unsatisfiable,
        Some((start, end)) => ByteRange::Partial { start, end },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant() -> Grant {
        Grant {
            site: "burgas".into(),
            camera: "gate-3".into(),
            from_us: 1,
            to_us: 2,
            expires_s: 1000,
        }
    }

    fn q(signer: &PlaybackSigner, g: &Grant) -> PlaybackQuery {
        PlaybackQuery {
            from: g.from_us,
            to: (g.to_us != LIVE).then_some(g.to_us),
            exp: g.expires_s,
            token: signer.sign(g),
        }
    }

    #[test]
    fn tokens_bind_camera_range_and_expiry() {
        let s = PlaybackSigner::random();
        let g = grant();
        assert_eq!(s.check("burgas", "gate-3", &q(&s, &g), 999).unwrap(), g);
        assert!(matches!(
            s.check("burgas", "gate-3", &q(&s, &g), 1001),
            Err(StorageError::BadToken)
        ));
        assert!(s.check("burgas", "gate-4", &q(&s, &g), 0).is_err());
        let mut wider = q(&s, &g);
        wider.to = Some(3);
        assert!(s.check("burgas", "gate-3", &wider, 0).is_err());
        let mut later = q(&s, &g);
        later.exp = 5000;
        assert!(s.check("burgas", "gate-3", &later, 0).is_err());
        let other = PlaybackSigner::random();
        assert!(other.check("burgas", "gate-3", &q(&s, &g), 0).is_err());
        let mut garbage = q(&s, &g);
        garbage.token = "%%%".into();
        assert!(s.check("burgas", "gate-3", &garbage, 0).is_err());
        let live = Grant {
            to_us: LIVE,
            ..grant()
        };
        assert!(!s.query(&live).contains("to="));
        assert!(s.check("burgas", "gate-3", &q(&s, &live), 0).is_ok());
        for g in [grant(), live] {
            let parsed = parse_path_grant(&s.path_grant(&g)).unwrap();
            assert_eq!(s.check("burgas", "gate-3", &parsed, 0).unwrap(), g);
        }
        assert!(parse_path_grant("1.2.x.t").is_none());
        assert!(parse_path_grant("1.2").is_none());
    }

    /// Issue 9, finding 9: a download token of one kind is worthless for another.
    #[test]
    fn download_tokens_are_bound_to_their_kind() {
        let s = PlaybackSigner::random();
        let t = s.sign_object(Download::Object, "burgas", "x", 100);
        assert!(
            s.check_object(Download::Object, "burgas", "x", 100, &t, 0)
                .is_ok()
        );
        assert!(
            s.check_object(Download::Bundle, "burgas", "x", 100, &t, 0)
                .is_err()
        );
        let b = s.sign_object(Download::Bundle, "burgas", "x", 100);
        assert!(
            s.check_object(Download::Object, "burgas", "x", 100, &b, 0)
                .is_err()
        );
        assert!(
            s.check_object(Download::Bundle, "edirne", "x", 100, &b, 0)
                .is_err()
        );
        assert!(
            s.check_object(Download::Bundle, "burgas", "x", 100, &b, 101)
                .is_err()
        );
    }

    #[test]
    fn playlist_shape() {
        let seg = |n: u64, a: i64, b: i64| PlaylistSegment {
            sequence: n,
            start_us: a * 1_000_000,
            end_us: b * 1_000_000,
            size_bytes: 1000,
            init_size: 200,
        };
        let p = render_playlist(
            "gate-3",
            &[seg(1, 0, 6), seg(2, 6, 12), seg(4, 20, 26)],
            "G",
            1_000_000,
            false,
            true,
        );
        assert!(p.starts_with("#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:6\n"));
        assert!(p.contains("#EXT-X-PLAYLIST-TYPE:VOD\n"));
        assert!(p.contains("#EXT-X-MAP:URI=\"gate-3/G/1.mp4\",BYTERANGE=\"200@0\"\n"));
        assert!(p.contains("#EXT-X-BYTERANGE:800@200\ngate-3/G/1.mp4\n"));
        assert!(p.contains("#EXT-X-PROGRAM-DATE-TIME:1970-01-01T00:00:20.000Z\n"));
        assert_eq!(p.matches("#EXT-X-DISCONTINUITY").count(), 1);
        let disc = p.find("#EXT-X-DISCONTINUITY").unwrap();
        assert!(
            disc > p.find("gate-3/G/2.mp4").unwrap() && disc < p.find("gate-3/G/4.mp4").unwrap()
        );
        assert!(p.ends_with("#EXT-X-ENDLIST\n"));
        let live = render_playlist("gate-3", &[seg(1, 0, 6)], "q", 1, true, true);
        assert!(live.contains("#EXT-X-PLAYLIST-TYPE:EVENT") && !live.contains("ENDLIST"));
        // Timestamps restarting per segment: every boundary is a discontinuity.
        let p = render_playlist(
            "gate-3",
            &[seg(1, 0, 6), seg(2, 6, 12), seg(4, 20, 26)],
            "G",
            1_000_000,
            false,
            false,
        );
        assert_eq!(p.matches("#EXT-X-DISCONTINUITY").count(), 2);
        assert!(p.find("#EXT-X-DISCONTINUITY").unwrap() > p.find("gate-3/G/1.mp4").unwrap());
    }

    #[test]
    fn ranges() {
        use ByteRange::*;
        assert_eq!(parse_range(None, 10), Full);
        assert_eq!(
            parse_range(Some("bytes=0-3"), 10),
            Partial { start: 0, end: 4 }
        );
        assert_eq!(
            parse_range(Some("bytes=4-"), 10),
            Partial { start: 4, end: 10 }
        );
        assert_eq!(
            parse_range(Some("bytes=-3"), 10),
            Partial { start: 7, end: 10 }
        );
        assert_eq!(
            parse_range(Some("bytes=5-100"), 10),
            Partial { start: 5, end: 10 }
        );
        assert_eq!(parse_range(Some("bytes=10-"), 10), Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=-0"), 10), Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=0-1,3-4"), 10), Full);
        assert_eq!(parse_range(Some("items=0-1"), 10), Full);
        assert_eq!(parse_range(Some("bytes=3-1"), 10), Full);
    }
}
