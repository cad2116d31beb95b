//! Playback tokens and HLS playlists (pure; the HTTP side is [`crate::http`]).
//!
//! A playback URL carries a grant — site, camera, time range, expiry, and the rendition
//! profile when it plays a rendition — and an HMAC-SHA256 of it under the service's playback
//! key:
//!
//! ```text
//! /v1/hls/<site>/<camera>.m3u8?from=<µs>&to=<µs>&exp=<unix s>&token=<base64url>   playlist
//! /v1/hls/<site>/<camera>/<from>.<to>.<exp>.<token>/<sequence>.mp4                media
//! token = HMAC-SHA256(key, "kordon.playback.v1" || len+site || len+camera
//!                          || i64 from || i64 to (i64::MAX: live) || i64 exp)
//!
//! A rendition's (profile <p>):
//! /v1/hls/<site>/<camera>.m3u8?profile=<p>&from=<µs>&to=<µs>&exp=<unix s>&token=<base64url>
//! /v1/hls/<site>/<camera>/<from>.<to>.<exp>.<token>.<p>/<source sequence>.mp4
//! token = HMAC-SHA256(key, "kordon.playback.rendition.v1" || len+site || len+camera
//!                          || len+profile || i64 from || i64 to || i64 exp)
//! ```
//!
//! Media URLs carry the grant in a path segment (`to` is `live` when open-ended) rather than
//! in a query, so every segment URL ends in `.mp4`: players that check segment extensions
//! (ffmpeg's HLS demuxer) accept them. Tokens are base64url (no `.`), so a profile — letters,
//! digits, `-`, `_`, `.` — can follow the token in the path segment unambiguously.
//!
//! The token is the only authorisation the HTTP side needs: it was issued by GetPlaybackUrl
//! after the caller was authorised and the access was logged. It covers the playlist and every
//! segment of that camera overlapping the range, until it expires. The two kinds of grant are
//! MACed in different domains, so a token of the originals never serves a rendition and a
//! rendition's token never serves the originals or another profile.
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
//!
//! A rendition is a self-contained fragmented MP4 too, and its media timeline continues its
//! source segment's (its `tfdt` is the source's), so a rendition playlist is rendered the same
//! way, one rendition per source segment; a source segment without a rendition is a hole and
//! gets a discontinuity like a gap ([`PlaylistSegment::discontinuity`]).

use std::fmt::Write as _;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;

use crate::StorageError;

const DOMAIN: &[u8] = b"kordon.playback.v1";
const RENDITION_DOMAIN: &[u8] = b"kordon.playback.rendition.v1";
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
    /// The rendition profile the grant plays; empty for the original segments.
    pub profile: String,
}

/// The query string of a playback URL.
#[derive(Debug, Clone, Deserialize)]
pub struct PlaybackQuery {
    pub from: i64,
    /// Absent for live.
    pub to: Option<i64>,
    pub exp: i64,
    pub token: String,
    /// A rendition profile; absent (or empty) for the originals.
    #[serde(default)]
    pub profile: Option<String>,
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
        // The originals' MAC is unchanged from before renditions played, so URLs issued by
        // an older replica sharing the key keep working.
        let fields: &[&String] = if g.profile.is_empty() {
            m.update(DOMAIN);
            &[&g.site, &g.camera]
        } else {
            m.update(RENDITION_DOMAIN);
            &[&g.site, &g.camera, &g.profile]
        };
        for s in fields {
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

    /// The query string (`[profile=..&]from=..&to=..&exp=..&token=..`) of a URL for `g`.
    pub fn query(&self, g: &Grant) -> String {
        let mut q = String::new();
        if !g.profile.is_empty() {
            // Profiles are letters, digits, `-`, `_` and `.`: nothing to escape.
            let _ = write!(q, "profile={}&", g.profile);
        }
        let _ = write!(q, "from={}", g.from_us);
        if g.to_us != LIVE {
            let _ = write!(q, "&to={}", g.to_us);
        }
        let _ = write!(q, "&exp={}&token={}", g.expires_s, self.sign(g));
        q
    }

    /// The path segment of media URLs for `g`: `<from>.<to|live>.<exp>.<token>`, then
    /// `.<profile>` for a rendition.
    pub fn path_grant(&self, g: &Grant) -> String {
        let to = if g.to_us == LIVE {
            "live".to_string()
        } else {
            g.to_us.to_string()
        };
        let mut out = format!("{}.{to}.{}.{}", g.from_us, g.expires_s, self.sign(g));
        if !g.profile.is_empty() {
            let _ = write!(out, ".{}", g.profile);
        }
        out
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
            profile: q.profile.clone().unwrap_or_default(),
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
    let mut parts = s.splitn(5, '.');
    let from = parts.next()?.parse().ok()?;
    let to = match parts.next()? {
        "live" => None,
        t => Some(t.parse().ok()?),
    };
    let exp = parts.next()?.parse().ok()?;
    let token = parts.next()?.to_string();
    let profile = parts.next().map(str::to_string);
    Some(PlaybackQuery {
        from,
        to,
        exp,
        token,
        profile,
    })
}

/// One segment in a playlist: an original segment, or a rendition (then `sequence` is its
/// source segment's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlaylistSegment {
    pub sequence: u64,
    pub start_us: i64,
    pub end_us: i64,
    pub size_bytes: u64,
    pub init_size: u64,
    /// A discontinuity precedes it whatever the times say: in a rendition playlist, a source
    /// segment without a (playable) rendition lies between it and the one before.
    pub discontinuity: bool,
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
            && (s.discontinuity
                || !continuous_timestamps
                || s.start_us.saturating_sub(end) > tolerance_us)
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
            profile: String::new(),
        }
    }

    fn q(signer: &PlaybackSigner, g: &Grant) -> PlaybackQuery {
        PlaybackQuery {
            from: g.from_us,
            to: (g.to_us != LIVE).then_some(g.to_us),
            exp: g.expires_s,
            token: signer.sign(g),
            profile: (!g.profile.is_empty()).then(|| g.profile.clone()),
        }
    }

    /// The originals' MAC is the one issued before renditions played (URLs of an older replica
    /// sharing the key stay valid): HMAC over the documented fields, nothing more.
    #[test]
    fn the_originals_token_is_unchanged() {
        let key = b"0123456789abcdef0123456789abcdef".to_vec();
        let s = PlaybackSigner::new(key.clone());
        let mut m = Hmac::<Sha256>::new_from_slice(&key).unwrap();
        m.update(b"kordon.playback.v1");
        m.update(&6u32.to_be_bytes());
        m.update(b"burgas");
        m.update(&6u32.to_be_bytes());
        m.update(b"gate-3");
        m.update(&1i64.to_be_bytes());
        m.update(&2i64.to_be_bytes());
        m.update(&1000i64.to_be_bytes());
        assert_eq!(
            s.sign(&grant()),
            URL_SAFE_NO_PAD.encode(m.finalize().into_bytes())
        );
    }

    #[test]
    fn tokens_bind_the_rendition_profile() {
        let s = PlaybackSigner::random();
        let original = grant();
        let rendition = Grant {
            profile: "360p-500k".into(),
            ..grant()
        };
        let other = Grant {
            profile: "480p".into(),
            ..grant()
        };
        assert_ne!(s.sign(&original), s.sign(&rendition));
        assert_eq!(
            s.check("burgas", "gate-3", &q(&s, &rendition), 0).unwrap(),
            rendition
        );
        // The originals' token with a profile added, and a rendition's with it removed or
        // changed, are refused.
        let mut o = q(&s, &original);
        o.profile = Some("360p-500k".into());
        assert!(s.check("burgas", "gate-3", &o, 0).is_err());
        let mut r = q(&s, &rendition);
        r.profile = None;
        assert!(s.check("burgas", "gate-3", &r, 0).is_err());
        let mut r = q(&s, &rendition);
        r.profile = Some("480p".into());
        assert!(s.check("burgas", "gate-3", &r, 0).is_err());
        assert!(s.check("burgas", "gate-3", &q(&s, &other), 0).is_ok());
        // The profile travels in the query and in the media path (dots and all).
        assert!(
            s.query(&rendition)
                .starts_with("profile=360p-500k&from=1&to=2&exp=1000&")
        );
        assert!(!s.query(&original).contains("profile"));
        let dotted = Grant {
            profile: "v1.360p".into(),
            ..grant()
        };
        for g in [original, rendition, dotted] {
            let parsed = parse_path_grant(&s.path_grant(&g)).unwrap();
            assert_eq!(s.check("burgas", "gate-3", &parsed, 0).unwrap(), g);
        }
        // A profile appended to an originals' path grant is a different grant: refused.
        let appended = format!("{}.360p-500k", s.path_grant(&grant()));
        let parsed = parse_path_grant(&appended).unwrap();
        assert!(s.check("burgas", "gate-3", &parsed, 0).is_err());
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
            discontinuity: false,
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
        // A segment marked as following a hole gets one though its time continues.
        let mut after_hole = seg(3, 12, 18);
        after_hole.discontinuity = true;
        let p = render_playlist(
            "gate-3",
            &[seg(1, 0, 6), after_hole],
            "G",
            1_000_000,
            false,
            true,
        );
        assert_eq!(p.matches("#EXT-X-DISCONTINUITY").count(), 1);
        assert!(p.find("#EXT-X-DISCONTINUITY").unwrap() > p.find("gate-3/G/1.mp4").unwrap());
        // ... but never before the first segment.
        let p = render_playlist("gate-3", &[after_hole], "G", 1_000_000, false, true);
        assert!(!p.contains("#EXT-X-DISCONTINUITY"));
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
