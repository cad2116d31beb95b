//! Where each segment lives in the bucket.
//!
//! ```text
//! <prefix>/<site>/<camera>/<YYYY>/<MM>/<DD>/<HH>/<start_unix_ms>-<sha256 first 16 hex>.mp4
//! burgas/gate-3/2026/11/27/10/1795774446123-9f86d081884c7d65.mp4      (empty prefix)
//! ```
//!
//! - The date folders are the UTC time of the segment's first frame, so a day or an hour of a
//!   camera is one prefix listing (retention and repair tools walk them), and keys sort by time.
//! - The file name starts with the start time in milliseconds and ends with the first 64 bits
//!   of the content's SHA-256: two different recordings of the same millisecond (a camera
//!   recorded twice after a failover) never collide, and the same bytes always get the same
//!   key, so retrying an upload is idempotent ([`crate::put_immutable`]).
//! - `site` and `camera` are single path segments: letters, digits, `-`, `_` and `.`, not
//!   starting with `.`, at most 128 bytes (Kubernetes names fit). `prefix` is zero or more
//!   such segments joined by `/` (no leading or trailing `/`).

use object_store::path::Path;

use crate::ObjectsError;
use crate::time::civil;

/// Longest site, camera or prefix segment.
pub const MAX_NAME_LEN: usize = 128;

/// Checks that `value` can be one segment of an object key (see the module docs).
pub fn validate_name(what: &'static str, value: &str) -> Result<(), ObjectsError> {
    let bad = |why| ObjectsError::InvalidName {
        what,
        value: value.to_string(),
        why,
    };
    if value.is_empty() {
        return Err(bad("must not be empty"));
    }
    if value.len() > MAX_NAME_LEN {
        return Err(bad("longer than 128 bytes"));
    }
    if value.starts_with('.') {
        return Err(bad("must not start with `.`"));
    }
    if !value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err(bad("only letters, digits, `-`, `_` and `.` are allowed"));
    }
    Ok(())
}

/// Checks a prefix: zero or more [`validate_name`] segments joined by `/`.
pub fn validate_prefix(prefix: &str) -> Result<(), ObjectsError> {
    if !prefix.is_empty() {
        for part in prefix.split('/') {
            validate_name("prefix segment", part)?;
        }
    }
    Ok(())
}

/// The folder that holds every object of one camera, with its trailing `/`:
/// `[<prefix>/]<site>/<camera>/`. Segments, renditions and snapshots of the camera all live
/// below it; nothing of another camera ever does.
pub fn camera_folder(prefix: &str, site: &str, camera: &str) -> String {
    if prefix.is_empty() {
        format!("{site}/{camera}/")
    } else {
        format!("{prefix}/{site}/{camera}/")
    }
}

/// Whether `key` names an object inside the camera's folder (see [`camera_folder`]): it
/// starts with the folder, goes at least one segment deeper, and has no empty, `.` or `..`
/// segment. Names are compared exactly, so `burgas/gate-1` never matches `burgas/gate-10`.
pub fn in_camera_folder(prefix: &str, site: &str, camera: &str, key: &str) -> bool {
    let folder = camera_folder(prefix, site, camera);
    match key.strip_prefix(folder.as_str()) {
        Some(rest) => {
            !rest.is_empty()
                && rest
                    .split('/')
                    .all(|part| !part.is_empty() && part != "." && part != "..")
        }
        None => false,
    }
}

/// The key of a segment; see the module docs for the layout.
///
/// `start_unix_micros` is the wall-clock time of the segment's first frame.
pub fn segment_key(
    prefix: &str,
    site: &str,
    camera: &str,
    start_unix_micros: i64,
    sha256: &[u8; 32],
) -> Result<Path, ObjectsError> {
    validate_prefix(prefix)?;
    validate_name("site", site)?;
    validate_name("camera", camera)?;
    let c = civil(start_unix_micros).ok_or(ObjectsError::TimeOutOfRange(start_unix_micros))?;
    let millis = start_unix_micros.div_euclid(1000);
    let short = hex::encode(&sha256[..8]);
    let tail = format!(
        "{site}/{camera}/{:04}/{:02}/{:02}/{:02}/{millis}-{short}.mp4",
        c.year, c.month, c.day, c.hour
    );
    let full = if prefix.is_empty() {
        tail
    } else {
        format!("{prefix}/{tail}")
    };
    // Every part was validated above, so this cannot fail; map it anyway rather than panic.
    Path::parse(&full).map_err(|e| ObjectsError::Store(e.into()))
}

/// The key of a still image (a detection snapshot, a timeline thumbnail) of a camera:
/// `[<prefix>/]<site>/<camera>/<kind>/<YYYY>/<MM>/<DD>/<HH>/<captured_ms>-<sha256 first 16
/// hex>.<extension>`, in the camera's folder like its segments, so retention and ownership
/// checks treat it the same way; the same bytes always get the same key.
pub fn still_key(
    prefix: &str,
    site: &str,
    camera: &str,
    kind: &'static str,
    captured_unix_micros: i64,
    sha256: &[u8; 32],
    extension: &'static str,
) -> Result<Path, ObjectsError> {
    validate_prefix(prefix)?;
    validate_name("site", site)?;
    validate_name("camera", camera)?;
    validate_name("kind", kind)?;
    let c =
        civil(captured_unix_micros).ok_or(ObjectsError::TimeOutOfRange(captured_unix_micros))?;
    let millis = captured_unix_micros.div_euclid(1000);
    let short = hex::encode(&sha256[..8]);
    let tail = format!(
        "{site}/{camera}/{kind}/{:04}/{:02}/{:02}/{:02}/{millis}-{short}.{extension}",
        c.year, c.month, c.day, c.hour
    );
    let full = if prefix.is_empty() {
        tail
    } else {
        format!("{prefix}/{tail}")
    };
    Path::parse(&full).map_err(|e| ObjectsError::Store(e.into()))
}

/// The key of a rendition segment (made by transcode from one original segment):
/// `[<prefix>/]<site>/<camera>/renditions/<profile>/<YYYY>/<MM>/<DD>/<HH>/<start_ms>-<sha256
/// first 16 hex>.mp4`, in the camera's folder; each profile has its own objects even where two
/// profiles' bytes are equal. `profile` is checked like a name.
pub fn rendition_key(
    prefix: &str,
    site: &str,
    camera: &str,
    profile: &str,
    start_unix_micros: i64,
    sha256: &[u8; 32],
) -> Result<Path, ObjectsError> {
    validate_name("profile", profile)?;
    let still = still_key(
        prefix,
        site,
        camera,
        "renditions",
        start_unix_micros,
        sha256,
        "mp4",
    )?;
    let folder = camera_folder(prefix, site, camera);
    let rest = still
        .as_ref()
        .strip_prefix(folder.as_str())
        .and_then(|r| r.strip_prefix("renditions/"))
        .ok_or_else(|| {
            ObjectsError::Store(object_store::Error::Generic {
                store: "key",
                source: "rendition key outside its camera folder".into(),
            })
        })?;
    Path::parse(format!("{folder}renditions/{profile}/{rest}"))
        .map_err(|e| ObjectsError::Store(e.into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_still_lives_in_its_camera_folder() {
        let k = still_key(
            "p",
            "burgas",
            "gate-1",
            "snapshots",
            1_795_774_446_123_456,
            &[0xab; 32],
            "jpg",
        )
        .unwrap()
        .to_string();
        assert_eq!(
            k,
            "p/burgas/gate-1/snapshots/2026/11/27/10/1795774446123-abababababababab.jpg"
        );
        assert!(in_camera_folder("p", "burgas", "gate-1", &k));
        assert!(still_key("", "../x", "gate-1", "snapshots", 0, &[0; 32], "jpg").is_err());
        let r = rendition_key(
            "p",
            "burgas",
            "gate-1",
            "360p-500k",
            1_795_774_446_123_456,
            &[0xab; 32],
        )
        .unwrap()
        .to_string();
        assert_eq!(
            r,
            "p/burgas/gate-1/renditions/360p-500k/2026/11/27/10/1795774446123-abababababababab.mp4"
        );
        assert!(in_camera_folder("p", "burgas", "gate-1", &r));
        assert!(rendition_key("", "burgas", "gate-1", "../x", 0, &[0; 32]).is_err());
    }

    const T: i64 = 1_795_774_446_123_456; // 2026-11-27T10:14:06.123456Z

    #[test]
    fn documented_layout() {
        let mut sha = [0u8; 32];
        sha[..8].copy_from_slice(&[0x9f, 0x86, 0xd0, 0x81, 0x88, 0x4c, 0x7d, 0x65]);
        let k = segment_key("", "burgas", "gate-3", T, &sha).unwrap();
        assert_eq!(
            k.as_ref(),
            "burgas/gate-3/2026/11/27/10/1795774446123-9f86d081884c7d65.mp4"
        );
        let k = segment_key("kordon/v1", "burgas", "gate-3", T, &sha).unwrap();
        assert_eq!(
            k.as_ref(),
            "kordon/v1/burgas/gate-3/2026/11/27/10/1795774446123-9f86d081884c7d65.mp4"
        );
    }

    #[test]
    fn bad_names_and_times_are_refused() {
        let sha = [0u8; 32];
        for (site, camera) in [
            ("", "c"),
            ("s", ""),
            ("a/b", "c"),
            ("..", "c"),
            (".hidden", "c"),
            ("s", "c d"),
            ("s", "kamera-ü"),
        ] {
            assert!(
                segment_key("", site, camera, T, &sha).is_err(),
                "{site:?}/{camera:?}"
            );
        }
        assert!(segment_key("/abs", "s", "c", T, &sha).is_err());
        assert!(segment_key("trailing/", "s", "c", T, &sha).is_err());
        assert!(matches!(
            segment_key("", "s", "c", -1, &sha),
            Err(ObjectsError::TimeOutOfRange(-1))
        ));
    }

    #[test]
    fn camera_folders_hold_only_their_own_camera() {
        let sha = [3u8; 32];
        for prefix in ["", "kordon/v1"] {
            let k = segment_key(prefix, "burgas", "gate-1", T, &sha).unwrap();
            assert!(in_camera_folder(prefix, "burgas", "gate-1", k.as_ref()));
            assert!(!in_camera_folder(prefix, "burgas", "gate-10", k.as_ref()));
            assert!(!in_camera_folder(prefix, "burgas", "gate", k.as_ref()));
            assert!(!in_camera_folder(prefix, "edirne", "gate-1", k.as_ref()));
        }
        let sha_key = segment_key("", "burgas", "gate-1", T, &sha).unwrap();
        assert!(!in_camera_folder("p", "burgas", "gate-1", sha_key.as_ref()));
        for bad in [
            "burgas/gate-1/",
            "burgas/gate-1",
            "burgas/gate-1//x.mp4",
            "burgas/gate-1/../../edirne/gate-1/x.mp4",
            "burgas/gate-1/./x.mp4",
            "xburgas/gate-1/x.mp4",
            "edirne/gate-1/burgas/gate-1/x.mp4",
        ] {
            assert!(!in_camera_folder("", "burgas", "gate-1", bad), "{bad}");
        }
        assert!(in_camera_folder(
            "",
            "burgas",
            "gate-1",
            "burgas/gate-1/renditions/360p/1.mp4"
        ));
        assert_eq!(camera_folder("", "s", "c"), "s/c/");
        assert_eq!(camera_folder("a/b", "s", "c"), "a/b/s/c/");
    }

    proptest! {
        /// Keys of one camera sort like their start times within a day (same-width millis).
        #[test]
        fn keys_sort_by_time(a in 1_700_000_000_000_000i64..1_900_000_000_000_000,
                             b in 1_700_000_000_000_000i64..1_900_000_000_000_000) {
            let sha = [7u8; 32];
            let ka = segment_key("p", "s", "c", a, &sha).unwrap();
            let kb = segment_key("p", "s", "c", b, &sha).unwrap();
            if a / 1000 < b / 1000 {
                prop_assert!(ka.as_ref() < kb.as_ref());
            }
        }
    }
}
