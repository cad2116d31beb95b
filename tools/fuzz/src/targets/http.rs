//! Storage's HTTP media and bundle URLs: a media path's grant segment
//! (`<from>.<to|live>.<exp>.<token>[.<profile>]`) checked against the signer, a download
//! token, and the `Range` header. The first byte picks which; the rest is the text.

use kordon_storage::playback::{
    ByteRange, Download, Grant, PlaybackSigner, parse_path_grant, parse_range,
};

const NOW_S: i64 = 1_767_229_200;

pub struct HttpHarness {
    signer: PlaybackSigner,
}

impl Default for HttpHarness {
    fn default() -> Self {
        HttpHarness {
            signer: PlaybackSigner::new(vec![0x5a; 32]),
        }
    }
}

impl crate::targets::Harness for HttpHarness {
    fn run(&mut self, input: &[u8]) -> String {
        let Some((&pick, rest)) = input.split_first() else {
            return "empty".into();
        };
        let text = String::from_utf8_lossy(rest);
        match pick % 3 {
            0 => match parse_path_grant(&text) {
                Some(q) => match self.signer.check("burgas", "gate-1", &q, NOW_S) {
                    Ok(g) => format!("ok: grant of {} s", (g.to_us - g.from_us) / 1_000_000),
                    Err(e) => format!("grant refused: {e}"),
                },
                None => "grant unreadable".into(),
            },
            1 => {
                let (token, id) = text.split_once('/').unwrap_or((&text, "b1"));
                match self.signer.check_object(
                    Download::Bundle,
                    "burgas",
                    id,
                    NOW_S + 60,
                    token,
                    NOW_S,
                ) {
                    Ok(()) => "ok: bundle token".into(),
                    Err(e) => format!("download refused: {e}"),
                }
            }
            _ => match parse_range(Some(&text), 3_000_000) {
                ByteRange::Full => "range: full".into(),
                // `end` is exclusive: a partial range lies inside the object and is not empty.
                ByteRange::Partial { start, end } => {
                    assert!(start < end && end <= 3_000_000, "range outside the object");
                    "range: partial".into()
                }
                ByteRange::Unsatisfiable => "range: unsatisfiable".into(),
            },
        }
    }
}

pub fn seeds() -> Vec<Vec<u8>> {
    let signer = HttpHarness::default().signer;
    let grant = Grant {
        site: "burgas".into(),
        camera: "gate-1".into(),
        from_us: (NOW_S - 600) * 1_000_000,
        to_us: NOW_S * 1_000_000,
        expires_s: NOW_S + 300,
        profile: String::new(),
    };
    let mut out = Vec::new();
    let mut with = |pick: u8, s: String| {
        let mut v = vec![pick];
        v.extend(s.into_bytes());
        out.push(v);
    };
    with(0, signer.path_grant(&grant));
    with(
        0,
        signer.path_grant(&Grant {
            profile: "360p".into(),
            ..grant.clone()
        }),
    );
    with(
        1,
        format!(
            "{}/b1",
            signer.sign_object(Download::Bundle, "burgas", "b1", NOW_S + 60)
        ),
    );
    for r in [
        "bytes=0-99",
        "bytes=100-",
        "bytes=-500",
        "bytes=5-1,7-9",
        "items=0-1",
    ] {
        with(2, r.to_string());
    }
    out
}

pub const WORDS: &[&[u8]] = &[
    b".",
    b"live",
    b"bytes=",
    b"-",
    b",",
    b"18446744073709551615",
    b"9223372036854775807",
    b"-9223372036854775808",
    b"0",
    b"%2e",
];
