//! The cameras a replica was last given, kept beside its spool so that a restarted replica
//! (a crash, an OOM kill, a node's restart) records them again at once instead of waiting for
//! the operator to place them again (up to its status interval).
//!
//! Guarantees:
//! - Written atomically (temporary file + rename, mode 0600) after every change the operator
//!   makes through `ApplyCameras` or `RemoveCamera`, as the whole current set with each
//!   camera's generation.
//! - No credentials are ever written: a camera with a username, password or `user:pass@` in a
//!   URL is left out and comes back only when the operator, which holds its Secret, places it
//!   again.
//! - Read once at start, and only when it is recent ([`RESUME_WITHIN`]) and names this
//!   replica: a replica scaled away for longer may find its cameras moved elsewhere. What it
//!   resumes is then corrected by the operator's next placement (same generation: unchanged,
//!   recording on; moved away: removed).
//! - A file that cannot be read or parsed is reported and ignored (the operator places the
//!   cameras as before); nothing else depends on it.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::config::CameraConfig;

/// The file, under the ingest data directory.
pub const FILE: &str = "placement.json";
/// How old a placement may be and still be resumed.
pub const RESUME_WITHIN: Duration = Duration::from_secs(600);
const FORMAT: u32 = 1;

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Placement {
    format: u32,
    replica: String,
    /// Unix seconds when it was written.
    written_at: u64,
    cameras: Vec<Placed>,
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Placed {
    camera: CameraConfig,
    generation: i64,
}

/// Whether `c` carries credentials (which are never written to disk).
fn has_credentials(c: &CameraConfig) -> bool {
    let in_url = |u: &str| {
        url::Url::parse(u).is_ok_and(|u| !u.username().is_empty() || u.password().is_some())
    };
    c.username.is_some()
        || c.password.is_some()
        || in_url(&c.record)
        || c.detect.as_deref().is_some_and(in_url)
}

/// Writes the placement of `replica`: `cameras` with their generations, credentials left out.
/// Returns how many cameras were left out for their credentials.
pub fn write(
    path: &Path,
    replica: &str,
    cameras: Vec<(CameraConfig, i64)>,
) -> std::io::Result<usize> {
    let total = cameras.len();
    let placed: Vec<Placed> = cameras
        .into_iter()
        .filter(|(c, _)| !has_credentials(c))
        .map(|(camera, generation)| Placed { camera, generation })
        .collect();
    let left_out = total - placed.len();
    let doc = Placement {
        format: FORMAT,
        replica: replica.to_string(),
        written_at: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        cameras: placed,
    };
    let text = serde_json::to_vec_pretty(&doc).map_err(std::io::Error::other)?;
    let tmp = path.with_extension("json.tmp");
    {
        use std::io::Write;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut f = options.open(&tmp)?;
        f.write_all(&text)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    Ok(left_out)
}

/// The cameras to resume from `path` for `replica` at `now`, or why there are none.
pub fn read(
    path: &Path,
    replica: &str,
    now: SystemTime,
) -> Result<Vec<(CameraConfig, i64)>, String> {
    let text = match std::fs::read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let doc: Placement =
        serde_json::from_slice(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    if doc.format != FORMAT {
        return Err(format!(
            "{}: format {} is not {FORMAT}",
            path.display(),
            doc.format
        ));
    }
    if doc.replica != replica {
        return Err(format!(
            "{} was written by replica {}, not {replica}",
            path.display(),
            doc.replica
        ));
    }
    let age = now
        .duration_since(UNIX_EPOCH + Duration::from_secs(doc.written_at))
        .unwrap_or_default();
    if age > RESUME_WITHIN {
        return Err(format!(
            "{} is {}s old (resumed only within {}s): the operator places the cameras",
            path.display(),
            age.as_secs(),
            RESUME_WITHIN.as_secs()
        ));
    }
    Ok(doc
        .cameras
        .into_iter()
        .filter(|p| !has_credentials(&p.camera))
        .map(|p| (p.camera, p.generation))
        .collect())
}

/// The file under `data_dir`.
pub fn path_in(data_dir: &Path) -> PathBuf {
    data_dir.join(FILE)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cam(name: &str, record: &str) -> CameraConfig {
        CameraConfig {
            site: "burgas".into(),
            name: name.into(),
            record: record.into(),
            detect: None,
            transport: Default::default(),
            username: None,
            password: None,
            segment_duration: Some(Duration::from_secs(4)),
        }
    }

    #[test]
    fn a_recent_placement_of_this_replica_comes_back_without_credentials() {
        let dir = tempfile::tempdir().unwrap();
        let path = path_in(dir.path());
        let mut secret = cam("gate", "rtsp://10.0.0.5/main");
        secret.password = Some("hunter2".into());
        let in_url = cam("pier", "rtsp://admin:hunter2@10.0.0.6/main");
        let plain = cam("lighthouse", "rtsp://10.0.0.7/main");
        let left_out = write(
            &path,
            "burgas-ingest-1",
            vec![(secret, 3), (in_url, 1), (plain.clone(), 7)],
        )
        .unwrap();
        assert_eq!(left_out, 2);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains("hunter2"), "{text}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let now = SystemTime::now();
        assert_eq!(
            read(&path, "burgas-ingest-1", now).unwrap(),
            vec![(plain, 7)]
        );
        // Another replica's file, or an old one, resumes nothing and says why.
        let e = read(&path, "burgas-ingest-0", now).unwrap_err();
        assert!(e.contains("burgas-ingest-1"), "{e}");
        let later = now + RESUME_WITHIN + Duration::from_secs(5);
        let e = read(&path, "burgas-ingest-1", later).unwrap_err();
        assert!(e.contains("the operator places the cameras"), "{e}");
    }

    #[test]
    fn no_file_is_nothing_to_resume_and_a_broken_one_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = path_in(dir.path());
        assert_eq!(read(&path, "r", SystemTime::now()).unwrap(), Vec::new());
        std::fs::write(&path, b"{not json").unwrap();
        assert!(read(&path, "r", SystemTime::now()).is_err());
    }
}
