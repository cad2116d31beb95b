//! Evidence bundles: the original segments of cameras over a time range, with a manifest that
//! lists every chain record in that range and is signed with the site's Ed25519 key — and the
//! offline check of such a bundle.
//!
//! # The bundle
//! A POSIX tar archive (ustar, uncompressed, so any `tar` can open it):
//!
//! ```text
//! manifest.json                 what the bundle holds, exactly as signed (see [`Manifest`])
//! signature.json                Ed25519 signature of manifest.json's bytes (see [`SignatureFile`])
//! README.txt                    how to check the bundle, for people
//! segments/<camera>/<sequence>.mp4   each original segment, byte for byte as recorded
//! viewer/<camera>.mp4           with `rendering` only: each camera's viewer copy
//! ```
//!
//! The manifest lists, per camera, every record of the camera's hash chain that overlaps the
//! range — segments and gaps, and segments whose footage retention deleted — with the fields
//! the chain hashes (see [`crate::chain`]), the record and previous-record hashes, and the
//! bundle path and SHA-256 of each segment file. It also names the exporter, case, reason and
//! recipient, and the access-log entry that recorded the export.
//!
//! An export with a [`Rendering`] also carries one viewer copy per camera that recorded
//! something in the range (time burned in, privacy masks and people blurred; made by the
//! transcode service, see [`crate::viewer`]). The manifest lists each apart from the chain
//! records (`viewer_copies`: file, size, SHA-256, transcode job, encoder, the transformation
//! named) and says that it is not evidence of what the camera recorded: the originals are, and
//! they are in the bundle exactly as without rendering. A bundle without rendering has the same
//! manifest as before viewer copies existed (the list is then left out), so the `format` is
//! unchanged; a verifier that predates viewer copies refuses a bundle with them (their files
//! are not among the files it knows), it never accepts one wrongly.
//!
//! # What [`verify_bundle`] proves, offline
//! - the manifest is signed by the key it names (and, with a pinned key, by the site's key);
//! - every segment file is present, with the size and SHA-256 the manifest lists, and no file
//!   is there that the manifest does not list;
//! - every viewer copy the manifest lists is present under `viewer/` with its size and SHA-256
//!   (reported apart from the originals: [`BundleReport::viewer_copies`]);
//! - every record's hash follows from its fields and its predecessor's hash, sequences have no
//!   holes, and each camera's records link up from the anchor to the last hash.
//!
//! Each problem is reported on its own line, naming the camera, sequence, time and file.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::time::Duration;

use ed25519_dalek::{Signature, Signer, VerifyingKey};
use futures::TryStreamExt;
use kordon_objects::time::{MICROS, now_micros, rfc3339_micros};
use kordon_objects::{ObjectPath, ObjectStoreExt};
use object_store::WriteMultipart;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use crate::StorageError;
use crate::chain::{self, ChainRecord, RecordKind};
use crate::index::SegmentRecord;
use crate::playback::Download;
use crate::service::{Progress, Storage, check_camera};
use crate::viewer::{Polygon, Rendering, ViewerCopy, ViewerCopyRequest};

/// `format` of a manifest this version writes and reads.
pub const FORMAT: &str = "kordon.evidence.v1";
/// `format` of the signature file.
pub const SIGNATURE_FORMAT: &str = "kordon.evidence.signature.v1";
pub const MANIFEST_FILE: &str = "manifest.json";
pub const SIGNATURE_FILE: &str = "signature.json";
pub const README_FILE: &str = "README.txt";
/// Bundles live under this prefix of the bucket: `.evidence/<site>/<bundle id>.tar`. Site
/// names cannot start with `.`, so it never meets a segment key.
pub const BUNDLE_PREFIX: &str = ".evidence";

/// Most cameras in one bundle.
pub const MAX_CAMERAS: usize = 64;
/// Longest range of one bundle (31 days).
pub const MAX_SPAN_US: i64 = 31 * 86_400 * MICROS;
/// Records read per query while building.
const BATCH: u64 = 5_000;
/// Part size of the archive's multipart upload.
const PART_SIZE: usize = 8 * 1024 * 1024;
/// Largest manifest an export writes and [`verify_bundle`] reads (about 250,000 chain
/// records: 17 days of one camera in 6 s segments). A verifier holds it in memory, so a
/// bundle from outside (a partner's) cannot make it allocate more.
pub const MAX_MANIFEST_BYTES: u64 = 128 * 1024 * 1024;
/// Largest signature file [`verify_bundle`] reads (the real one is under 1 KiB).
const MAX_SIGNATURE_BYTES: u64 = 64 * 1024;

pub const STATE_BUILDING: i64 = 1;
pub const STATE_READY: i64 = 2;
pub const STATE_FAILED: i64 = 3;

// ---------------------------------------------------------------------------------------------
// The manifest
// ---------------------------------------------------------------------------------------------

/// The signed description of a bundle. Field order is the serialisation order; the bytes that
/// were signed are kept and shipped as they are, never re-serialised.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub bundle_id: String,
    pub site: String,
    /// RFC 3339, UTC.
    pub created_at: String,
    pub exported_by: Exporter,
    pub case_id: String,
    pub reason: String,
    pub recipient: String,
    pub description: String,
    pub range: ManifestRange,
    pub signing_key: KeyInfo,
    /// The site's access-log entry that recorded this export.
    pub access_log_entry: AccessLogLink,
    pub cameras: Vec<CameraEvidence>,
    /// With `rendering` only (left out otherwise): the viewer copies, which are not evidence.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub viewer_copies: Vec<ViewerCopyEvidence>,
}

/// What every viewer copy's entry says about itself.
pub const VIEWER_COPY_NOTE: &str = "A viewer copy made from the original segments by the \
    transformation named, for showing the footage outside the organisation. It is not evidence \
    of what the camera recorded; the original segments in this bundle are.";

/// One viewer copy in the manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ViewerCopyEvidence {
    pub camera: String,
    /// Path in the bundle: `viewer/<camera>.mp4`.
    pub file: String,
    pub size_bytes: u64,
    /// Hex.
    pub sha256: String,
    /// The transcode job that made it.
    pub transcode_job: String,
    /// The encoder the job used, e.g. `x264enc`.
    pub encoder: String,
    pub transformation: Transformation,
    /// [`VIEWER_COPY_NOTE`].
    pub note: String,
}

/// How a viewer copy differs from the originals.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transformation {
    /// In words, e.g. `time burned in (Europe/Sofia); 2 privacy masks blurred; people not
    /// blurred` (see [`Rendering::summary`]).
    pub summary: String,
    pub burn_in_timestamp: bool,
    /// IANA zone of the burned-in time; empty: the site's.
    pub time_zone: String,
    /// The blurred areas, normalised polygons.
    pub privacy_masks: Vec<Polygon>,
    pub blur_people: bool,
}

fn viewer_file(camera: &str) -> String {
    format!("viewer/{camera}.mp4")
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exporter {
    pub subject: String,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestRange {
    pub from: String,
    pub to: String,
    pub from_us: i64,
    pub to_us: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyInfo {
    pub algorithm: String,
    /// 32 bytes, hex.
    pub public_key: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessLogLink {
    pub sequence: u64,
    /// The entry's hash, hex.
    pub hash: String,
}

/// One camera's part of the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CameraEvidence {
    pub camera: String,
    /// Sequences of the first and last record listed (0 and 0 when nothing was recorded).
    pub first_sequence: u64,
    pub last_sequence: u64,
    /// `prev_hash` of the first record: the hash of the record before it (zeros for 1).
    pub anchor_hash: String,
    /// `record_hash` of the last record.
    pub last_hash: String,
    /// The camera's chain head when the bundle was made: compare with a later verification to
    /// show the chain was not rewritten since.
    pub head_sequence: u64,
    pub head_hash: String,
    pub segments: u64,
    pub gaps: u64,
    /// Microseconds of footage in the files.
    pub recorded_us: i64,
    /// What the index's own check found when the bundle was made (empty when intact).
    pub index_findings: Vec<String>,
    pub records: Vec<RecordEvidence>,
}

/// One chain record, with every hashed field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordEvidence {
    pub sequence: u64,
    /// `segment` or `gap`.
    pub kind: String,
    pub start: String,
    pub end: String,
    pub start_us: i64,
    pub end_us: i64,
    pub size_bytes: u64,
    /// Hex; zeros for gaps.
    pub sha256: String,
    pub object_key: String,
    pub gap_reason: u32,
    /// Ingest's words for a gap's cause (not hashed).
    pub gap_detail: String,
    /// Codec and frame size of a segment (not hashed).
    pub codec: String,
    pub width: u32,
    pub height: u32,
    pub prev_hash: String,
    pub record_hash: String,
    /// Path of the segment's file in the bundle; empty for gaps and for segments whose
    /// footage retention deleted before the export.
    pub file: String,
    pub deleted_by_retention: bool,
}

/// `signature.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignatureFile {
    pub format: String,
    pub algorithm: String,
    /// Hex of the 32-byte Ed25519 public key.
    pub public_key: String,
    /// Hex SHA-256 of manifest.json.
    pub manifest_sha256: String,
    /// Hex of the 64-byte Ed25519 signature over manifest.json's bytes.
    pub signature: String,
}

fn kind_name(k: RecordKind) -> &'static str {
    match k {
        RecordKind::Segment => "segment",
        RecordKind::Gap => "gap",
    }
}

fn codec_name(c: i32) -> &'static str {
    use kordon_proto::common::v1::VideoCodec;
    match VideoCodec::try_from(c) {
        Ok(VideoCodec::H264) => "h264",
        Ok(VideoCodec::H265) => "h265",
        _ => "",
    }
}

fn hex32(s: &str) -> Option<[u8; 32]> {
    let v = hex::decode(s).ok()?;
    <[u8; 32]>::try_from(v.as_slice()).ok()
}

/// A segment's path inside a bundle.
pub fn segment_file(camera: &str, sequence: u64) -> String {
    format!("segments/{camera}/{sequence:010}.mp4")
}

impl RecordEvidence {
    /// The evidence of one chain record (no file, codec or gap detail yet).
    pub fn from_chain(r: &ChainRecord) -> Self {
        RecordEvidence {
            sequence: r.sequence,
            kind: kind_name(r.kind).to_string(),
            start: rfc3339_micros(r.start_us),
            end: rfc3339_micros(r.end_us),
            start_us: r.start_us,
            end_us: r.end_us,
            size_bytes: r.size_bytes,
            sha256: hex::encode(r.sha256),
            object_key: r.object_key.clone(),
            gap_reason: r.gap_reason,
            gap_detail: String::new(),
            codec: String::new(),
            width: 0,
            height: 0,
            prev_hash: hex::encode(r.prev_hash),
            record_hash: hex::encode(r.record_hash),
            file: String::new(),
            deleted_by_retention: false,
        }
    }

    /// The chain record these fields describe, or what is malformed.
    fn chain_record(&self, site: &str, camera: &str) -> Result<ChainRecord, String> {
        let kind = match self.kind.as_str() {
            "segment" => RecordKind::Segment,
            "gap" => RecordKind::Gap,
            other => return Err(format!("unknown record kind `{other}`")),
        };
        let h = |s: &str, what: &str| hex32(s).ok_or_else(|| format!("{what} is not 32 hex bytes"));
        Ok(ChainRecord {
            kind,
            site: site.to_string(),
            camera: camera.to_string(),
            sequence: self.sequence,
            start_us: self.start_us,
            end_us: self.end_us,
            size_bytes: self.size_bytes,
            sha256: h(&self.sha256, "sha256")?,
            object_key: self.object_key.clone(),
            gap_reason: self.gap_reason,
            prev_hash: h(&self.prev_hash, "prev_hash")?,
            record_hash: h(&self.record_hash, "record_hash")?,
        })
    }

    fn describe(&self, camera: &str) -> String {
        format!(
            "{camera} {} {} ({} – {})",
            self.kind, self.sequence, self.start, self.end
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Offline verification
// ---------------------------------------------------------------------------------------------

/// The result of [`verify_bundle`].
#[derive(Debug, Clone, Default, Serialize)]
pub struct BundleReport {
    pub bundle_id: String,
    pub site: String,
    pub case_id: String,
    pub exported_by: String,
    pub created_at: String,
    pub range_from: String,
    pub range_to: String,
    /// Hex public key the signature was checked against (from the bundle).
    pub signing_key: String,
    /// Whether the caller named trusted keys at all.
    pub key_pinned: bool,
    /// The label of the trusted key that made a valid signature; `None`: the signer is not
    /// known to be anyone in particular (no trusted keys were given, or none matched).
    pub signer: Option<String>,
    pub signature_valid: bool,
    pub cameras: usize,
    pub segments_checked: u64,
    pub gaps: u64,
    pub bytes_checked: u64,
    /// The viewer copies the manifest lists, apart from the originals (not evidence).
    pub viewer_copies: Vec<ViewerCopyCheck>,
    /// Everything wrong, one sentence each. Empty: the bundle is intact.
    pub problems: Vec<String>,
    /// Things to know that are not faults (e.g. footage retention deleted before the export).
    pub notes: Vec<String>,
}

/// A viewer copy as [`verify_bundle`] found it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ViewerCopyCheck {
    pub camera: String,
    pub file: String,
    pub size_bytes: u64,
    pub sha256: String,
    /// [`Transformation::summary`].
    pub transformation: String,
    /// Present with the size and SHA-256 listed (otherwise a problem names it).
    pub intact: bool,
}

/// What a verification concluded, from the strongest to the weakest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Nothing altered, and signed by a trusted key.
    Intact,
    /// Nothing altered since signing, but by a key nobody vouched for: anyone can make such
    /// a bundle, so it proves nothing about where the footage came from.
    UnknownSigner,
    /// Something is wrong; [`BundleReport::problems`] says what.
    NotIntact,
}

impl BundleReport {
    /// Intact only with no problem *and* a trusted signer (see [`Verdict`]).
    pub fn intact(&self) -> bool {
        self.verdict() == Verdict::Intact
    }

    pub fn verdict(&self) -> Verdict {
        if !self.problems.is_empty() {
            Verdict::NotIntact
        } else if self.signer.is_none() {
            Verdict::UnknownSigner
        } else {
            Verdict::Intact
        }
    }
}

/// A public key whose signatures are believed, with whose key it is (`burgas`, `edirne`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedKey {
    pub key: [u8; 32],
    pub label: String,
}

impl TrustedKey {
    /// Parses a trusted-keys file: one key a line, 64 hex digits then an optional label
    /// (e.g. the site's name); blank lines and `#` comments are skipped. Errors name the line.
    pub fn parse_file(text: &str) -> Result<Vec<TrustedKey>, String> {
        let mut out = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let (hex_key, label) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
            let key = hex32(hex_key).ok_or_else(|| {
                format!(
                    "line {}: `{hex_key}` is not a 64-hex-digit Ed25519 key",
                    i + 1
                )
            })?;
            let label = label.trim();
            out.push(TrustedKey {
                key,
                label: if label.is_empty() {
                    hex_key.to_string()
                } else {
                    label.to_string()
                },
            });
        }
        Ok(out)
    }
}

/// A file of the archive other than the manifest and signature, as read: its size and SHA-256.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeenFile {
    pub size: u64,
    pub sha256: [u8; 32],
}

/// Checks a bundle read from `archive` (see the module docs), without any network. `pinned`
/// is the site's public key if the caller knows it. `progress` gets the bytes read so far.
///
/// Returns `Err` only when `archive` cannot be read at all (I/O); a malformed bundle is a
/// report with problems.
pub fn verify_bundle(
    archive: impl Read,
    trusted: &[TrustedKey],
    progress: &mut dyn FnMut(u64),
) -> std::io::Result<BundleReport> {
    let mut report = BundleReport {
        key_pinned: !trusted.is_empty(),
        ..Default::default()
    };
    let mut manifest_bytes: Option<Vec<u8>> = None;
    let mut signature_bytes: Option<Vec<u8>> = None;
    let mut files: BTreeMap<String, SeenFile> = BTreeMap::new();
    let mut read_total = 0u64;

    let mut tar = tar::Archive::new(archive);
    let entries = match tar.entries() {
        Ok(e) => e,
        Err(e) => {
            report.problems.push(format!("not a tar archive: {e}"));
            return Ok(report);
        }
    };
    for entry in entries {
        let mut entry = match entry {
            Ok(e) => e,
            Err(e) => {
                report
                    .problems
                    .push(format!("the archive is damaged or truncated: {e}"));
                break;
            }
        };
        let path = match entry.path() {
            Ok(p) => p.to_string_lossy().into_owned(),
            Err(e) => {
                report
                    .problems
                    .push(format!("an entry has a bad name: {e}"));
                continue;
            }
        };
        if !entry.header().entry_type().is_file() {
            if !entry.header().entry_type().is_dir() {
                report
                    .problems
                    .push(format!("`{path}` is not a regular file"));
            }
            continue;
        }
        if path == MANIFEST_FILE || path == SIGNATURE_FILE {
            let limit = if path == MANIFEST_FILE {
                MAX_MANIFEST_BYTES
            } else {
                MAX_SIGNATURE_BYTES
            };
            let declared = entry.header().size().unwrap_or(u64::MAX);
            if declared > limit {
                report.problems.push(format!(
                    "`{path}` is {declared} bytes, more than the {limit} this verifier reads: \
                     not a bundle Kordon made"
                ));
                continue;
            }
            let mut buf = Vec::new();
            if let Err(e) = (&mut entry).take(limit).read_to_end(&mut buf) {
                report
                    .problems
                    .push(format!("`{path}` cannot be read: {e}"));
                continue;
            }
            read_total += buf.len() as u64;
            let slot = if path == MANIFEST_FILE {
                &mut manifest_bytes
            } else {
                &mut signature_bytes
            };
            if slot.replace(buf).is_some() {
                report
                    .problems
                    .push(format!("`{path}` appears more than once in the archive"));
            }
            continue;
        }
        let mut h = Sha256::new();
        let mut buf = vec![0u8; 256 * 1024];
        let mut size = 0u64;
        loop {
            match entry.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    h.update(&buf[..n]);
                    size += n as u64;
                    read_total += n as u64;
                    progress(read_total);
                }
                Err(e) => {
                    report
                        .problems
                        .push(format!("`{path}` cannot be read (archive truncated?): {e}"));
                    break;
                }
            }
        }
        let seen = SeenFile {
            size,
            sha256: h.finalize().into(),
        };
        if files.insert(path.clone(), seen).is_some() {
            report
                .problems
                .push(format!("`{path}` appears more than once in the archive"));
        }
    }
    report.bytes_checked = read_total;
    check_bundle_parts(
        manifest_bytes,
        signature_bytes.as_deref(),
        &files,
        trusted,
        &mut report,
    );
    Ok(report)
}

/// The checks of [`verify_bundle`] on a bundle already read: its manifest and signature files
/// (`None`: absent), and every other file's size and SHA-256 by path. Storage's
/// `VerifyEvidenceBundle` uses this with the digests a browser computed from the archive.
pub fn check_bundle_parts(
    manifest_bytes: Option<Vec<u8>>,
    signature_bytes: Option<&[u8]>,
    files: &BTreeMap<String, SeenFile>,
    trusted: &[TrustedKey],
    report: &mut BundleReport,
) {
    report.key_pinned = !trusted.is_empty();
    let Some(manifest_bytes) = manifest_bytes else {
        report.problems.push(format!(
            "`{MANIFEST_FILE}` is missing: this is not a Kordon evidence bundle, or it was cut"
        ));
        return;
    };
    check_signature(&manifest_bytes, signature_bytes, trusted, report);
    let manifest: Manifest = match serde_json::from_slice(&manifest_bytes) {
        Ok(m) => m,
        Err(e) => {
            report
                .problems
                .push(format!("`{MANIFEST_FILE}` is not a valid manifest: {e}"));
            return;
        }
    };
    if manifest.format != FORMAT {
        report.problems.push(format!(
            "manifest format is `{}`; this version checks `{FORMAT}`",
            manifest.format
        ));
    }
    report.bundle_id = manifest.bundle_id.clone();
    report.site = manifest.site.clone();
    report.case_id = manifest.case_id.clone();
    report.exported_by = manifest.exported_by.subject.clone();
    report.created_at = manifest.created_at.clone();
    report.range_from = manifest.range.from.clone();
    report.range_to = manifest.range.to.clone();
    report.cameras = manifest.cameras.len();
    if manifest.signing_key.public_key != report.signing_key && !report.signing_key.is_empty() {
        report.problems.push(format!(
            "the manifest names signing key {} but {SIGNATURE_FILE} holds {}",
            manifest.signing_key.public_key, report.signing_key
        ));
    }

    let mut listed: HashMap<String, ()> = HashMap::new();
    for cam in &manifest.cameras {
        check_camera_chain(&manifest.site, cam, files, &mut listed, report);
    }
    check_viewer_copies(&manifest, files, &mut listed, report);
    for path in files.keys() {
        if path != README_FILE && !listed.contains_key(path) {
            report.problems.push(format!(
                "`{path}` is in the archive but not listed in the manifest"
            ));
        }
    }
}

/// Checks the viewer copies the manifest lists: each under `viewer/`, of a camera of the bundle,
/// listed once, present with its size and SHA-256. A viewer copy is not evidence, but an
/// altered one is still a problem: the signed manifest vouches for its bytes.
fn check_viewer_copies(
    manifest: &Manifest,
    files: &BTreeMap<String, SeenFile>,
    listed: &mut HashMap<String, ()>,
    report: &mut BundleReport,
) {
    for v in &manifest.viewer_copies {
        let what = format!("viewer copy of {}/{}", manifest.site, v.camera);
        let mut check = ViewerCopyCheck {
            camera: v.camera.clone(),
            file: v.file.clone(),
            size_bytes: v.size_bytes,
            sha256: v.sha256.clone(),
            transformation: v.transformation.summary.clone(),
            intact: false,
        };
        if !v.file.starts_with("viewer/") {
            report.problems.push(format!(
                "{what}: file `{}` is not under viewer/: a viewer copy never takes the place \
                 of an original",
                v.file
            ));
            report.viewer_copies.push(check);
            continue;
        }
        if !manifest.cameras.iter().any(|c| c.camera == v.camera) {
            report
                .problems
                .push(format!("{what}: the bundle has no camera `{}`", v.camera));
        }
        if listed.insert(v.file.clone(), ()).is_some() {
            report
                .problems
                .push(format!("{what}: file `{}` is listed twice", v.file));
            report.viewer_copies.push(check);
            continue;
        }
        match (files.get(&v.file), hex32(&v.sha256)) {
            (_, None) => report
                .problems
                .push(format!("{what}: sha256 is not 32 hex bytes")),
            (None, _) => report.problems.push(format!(
                "{what}: file `{}` is missing from the bundle",
                v.file
            )),
            (Some(f), Some(sha)) if f.sha256 != sha || f.size != v.size_bytes => {
                report.problems.push(format!(
                    "{what}: file `{}` was altered: {} bytes, SHA-256 {}; the manifest says {} \
                     bytes, {}",
                    v.file,
                    f.size,
                    hex::encode(f.sha256),
                    v.size_bytes,
                    v.sha256
                ))
            }
            (Some(_), Some(_)) => check.intact = true,
        }
        report.viewer_copies.push(check);
    }
    if !manifest.viewer_copies.is_empty() {
        report.notes.push(format!(
            "{} viewer cop{} (under viewer/) show the footage transformed (see each one's \
             transformation); they are not evidence of what the cameras recorded: the original \
             segments are",
            manifest.viewer_copies.len(),
            if manifest.viewer_copies.len() == 1 {
                "y"
            } else {
                "ies"
            }
        ));
    }
}

fn check_signature(
    manifest: &[u8],
    signature: Option<&[u8]>,
    trusted: &[TrustedKey],
    report: &mut BundleReport,
) {
    let Some(sig_bytes) = signature else {
        report.problems.push(format!(
            "`{SIGNATURE_FILE}` is missing: the manifest is unsigned"
        ));
        return;
    };
    let sig: SignatureFile = match serde_json::from_slice(sig_bytes) {
        Ok(s) => s,
        Err(e) => {
            report
                .problems
                .push(format!("`{SIGNATURE_FILE}` is not valid: {e}"));
            return;
        }
    };
    report.signing_key = sig.public_key.clone();
    if sig.algorithm != "ed25519" {
        report.problems.push(format!(
            "signature algorithm `{}` is not supported (ed25519 is)",
            sig.algorithm
        ));
        return;
    }
    let Some(key) = hex32(&sig.public_key).and_then(|k| VerifyingKey::from_bytes(&k).ok()) else {
        report.problems.push(format!(
            "`{SIGNATURE_FILE}`: public_key is not an Ed25519 key"
        ));
        return;
    };
    let Some(signature) = hex::decode(&sig.signature)
        .ok()
        .and_then(|s| Signature::from_slice(&s).ok())
    else {
        report
            .problems
            .push(format!("`{SIGNATURE_FILE}`: signature is not 64 hex bytes"));
        return;
    };
    let digest = hex::encode(Sha256::digest(manifest));
    if digest != sig.manifest_sha256 {
        report.problems.push(format!(
            "`{MANIFEST_FILE}` was changed after signing: its SHA-256 is {digest}, the signature \
             file records {}",
            sig.manifest_sha256
        ));
    }
    match key.verify_strict(manifest, &signature) {
        Ok(()) => report.signature_valid = true,
        Err(_) => report.problems.push(format!(
            "the Ed25519 signature does not match `{MANIFEST_FILE}`: the manifest was edited \
             after signing, or the signature is forged"
        )),
    }
    if trusted.is_empty() {
        report.notes.push(format!(
            "UNKNOWN SIGNER: the signature was checked against the key the bundle itself names \
             ({}), which anyone can make; pass the site's public key (--public-key) or a \
             trusted-keys file to prove who signed it",
            sig.public_key
        ));
    } else if let Some(t) = trusted.iter().find(|t| t.key == key.to_bytes()) {
        if report.signature_valid {
            report.signer = Some(t.label.clone());
        }
    } else {
        report.signature_valid = false;
        report.problems.push(format!(
            "signed by key {}, which is not the expected site key {}",
            sig.public_key,
            trusted
                .iter()
                .map(|t| if t.label == hex::encode(t.key) {
                    t.label.clone()
                } else {
                    format!("{} ({})", hex::encode(t.key), t.label)
                })
                .collect::<Vec<_>>()
                .join(" or ")
        ));
    }
}

fn check_camera_chain(
    site: &str,
    cam: &CameraEvidence,
    files: &BTreeMap<String, SeenFile>,
    listed: &mut HashMap<String, ()>,
    report: &mut BundleReport,
) {
    let name = format!("{site}/{}", cam.camera);
    for f in &cam.index_findings {
        report
            .notes
            .push(format!("{name}: at export the index reported: {f}"));
    }
    if cam.records.is_empty() {
        report
            .notes
            .push(format!("{name}: nothing was recorded in the range"));
        return;
    }
    let Some(anchor) = hex32(&cam.anchor_hash) else {
        report
            .problems
            .push(format!("{name}: anchor_hash is not 32 hex bytes"));
        return;
    };
    let mut expected_seq = cam.first_sequence;
    let mut prev: Option<[u8; 32]> = Some(anchor);
    let mut last_hash: Option<[u8; 32]> = None;
    let mut deleted = 0u64;
    for r in &cam.records {
        let what = r.describe(&name);
        if r.sequence != expected_seq {
            if r.sequence > expected_seq {
                let missing = if r.sequence - expected_seq == 1 {
                    format!("record {expected_seq} is")
                } else {
                    format!("records {expected_seq}–{} are", r.sequence - 1)
                };
                report.problems.push(format!(
                    "{name}: chain {missing} missing from the manifest (before {what})"
                ));
            } else {
                report.problems.push(format!(
                    "{name}: {what} is out of order (expected sequence {expected_seq})"
                ));
            }
            // Do not also report the link that this necessarily breaks.
            prev = None;
        }
        expected_seq = r.sequence + 1;
        let rec = match r.chain_record(site, &cam.camera) {
            Ok(c) => c,
            Err(e) => {
                report.problems.push(format!("{what}: {e}"));
                prev = None;
                continue;
            }
        };
        if rec.compute_hash() != rec.record_hash {
            report.problems.push(format!(
                "{what}: its fields do not hash to its record_hash {}: the record was altered",
                r.record_hash
            ));
        }
        if let Some(p) = prev
            && p != rec.prev_hash
        {
            report.problems.push(format!(
                "{what}: prev_hash {} is not the previous record's hash {}: the chain is broken",
                r.prev_hash,
                hex::encode(p)
            ));
        }
        prev = Some(rec.record_hash);
        last_hash = Some(rec.record_hash);
        match rec.kind {
            RecordKind::Gap => report.gaps += 1,
            RecordKind::Segment if r.deleted_by_retention => deleted += 1,
            RecordKind::Segment => {
                if r.file.is_empty() {
                    report
                        .problems
                        .push(format!("{what}: the manifest lists no file for it"));
                    continue;
                }
                listed.insert(r.file.clone(), ());
                report.segments_checked += 1;
                match files.get(&r.file) {
                    None => report.problems.push(format!(
                        "{what}: file `{}` is missing from the bundle",
                        r.file
                    )),
                    Some(f) if f.sha256 != rec.sha256 || f.size != rec.size_bytes => {
                        report.problems.push(format!(
                            "{what}: file `{}` was altered: {} bytes, SHA-256 {}; the manifest \
                             says {} bytes, {}",
                            r.file,
                            f.size,
                            hex::encode(f.sha256),
                            r.size_bytes,
                            r.sha256
                        ))
                    }
                    Some(_) => {}
                }
            }
        }
    }
    if cam.records.last().map(|r| r.sequence) != Some(cam.last_sequence) {
        report.problems.push(format!(
            "{name}: the manifest says the last record is {}, but the list ends at {}",
            cam.last_sequence,
            cam.records.last().map(|r| r.sequence).unwrap_or(0)
        ));
    }
    if let Some(h) = last_hash
        && hex::encode(h) != cam.last_hash
    {
        report.problems.push(format!(
            "{name}: the last record's hash {} is not the manifest's last_hash {}",
            hex::encode(h),
            cam.last_hash
        ));
    }
    if deleted > 0 {
        report.notes.push(format!(
            "{name}: {deleted} segment(s) in the range had been deleted by retention before the \
             export; their records are listed and chained, their footage is not in the bundle"
        ));
    }
}

// ---------------------------------------------------------------------------------------------
// Bundles in the index
// ---------------------------------------------------------------------------------------------

/// An export to start.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportRequest {
    pub site: String,
    pub cameras: Vec<String>,
    pub from_us: i64,
    pub to_us: i64,
    pub case_id: String,
    pub reason: String,
    pub recipient: String,
    pub description: String,
    pub request_id: String,
    pub exported_by: String,
    pub exported_by_name: String,
    /// Viewer copies to add beside the originals; `None`: originals only.
    pub rendering: Option<Rendering>,
}

impl ExportRequest {
    /// Checks the request; the message names the field.
    pub fn validate(&self) -> Result<(), StorageError> {
        if self.cameras.is_empty() {
            return Err(StorageError::invalid(
                "cameras: at least one camera is needed",
            ));
        }
        if self.cameras.len() > MAX_CAMERAS {
            return Err(StorageError::invalid(format!(
                "cameras: at most {MAX_CAMERAS} cameras per bundle"
            )));
        }
        let mut seen = std::collections::HashSet::new();
        for c in &self.cameras {
            check_camera(&self.site, c)?;
            if !seen.insert(c) {
                return Err(StorageError::invalid(format!(
                    "cameras: `{}/{c}` is listed twice",
                    self.site
                )));
            }
        }
        if self.to_us <= self.from_us {
            return Err(StorageError::invalid("range: end must be after start"));
        }
        if self.to_us - self.from_us > MAX_SPAN_US {
            return Err(StorageError::invalid(
                "range: a bundle covers at most 31 days; export longer periods as several bundles",
            ));
        }
        if self.case_id.trim().is_empty() {
            return Err(StorageError::invalid(
                "audit.case_id: an evidence export needs the case it is for",
            ));
        }
        if self.reason.trim().is_empty() {
            return Err(StorageError::invalid("audit.reason is required"));
        }
        if self.request_id.len() > 128 {
            return Err(StorageError::invalid("request_id: at most 128 bytes"));
        }
        if let Some(r) = &self.rendering {
            r.validate(&self.cameras)?;
        }
        Ok(())
    }
}

/// A bundle as the index keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct Bundle {
    pub id: String,
    pub site: String,
    pub request_id: String,
    /// [`STATE_BUILDING`], [`STATE_READY`] or [`STATE_FAILED`].
    pub state: i64,
    pub cameras: Vec<String>,
    pub from_us: i64,
    pub to_us: i64,
    pub case_id: String,
    pub reason: String,
    pub recipient: String,
    pub description: String,
    pub exported_by: String,
    pub created_at_us: i64,
    pub completed_at_us: Option<i64>,
    pub segment_count: u64,
    pub gap_count: u64,
    pub object_key: String,
    pub size_bytes: u64,
    pub sha256: Option<[u8; 32]>,
    pub manifest: Vec<u8>,
    pub manifest_sha256: Option<[u8; 32]>,
    pub signature: Vec<u8>,
    pub signing_key: Vec<u8>,
    pub error: String,
    /// The viewer copies asked for; `None`: originals only.
    pub rendering: Option<Rendering>,
}

impl Bundle {
    /// Whether `req` asks for exactly this bundle: same principal, cameras, range, case,
    /// reason, recipient, description (as stored: trimmed) and rendering.
    pub fn same_request(&self, req: &ExportRequest) -> bool {
        self.rendering == req.rendering
            && self.exported_by == req.exported_by
            && self.cameras == req.cameras
            && self.from_us == req.from_us
            && self.to_us == req.to_us
            && self.case_id == req.case_id.trim()
            && self.reason == req.reason.trim()
            && self.recipient == req.recipient.trim()
            && self.description == req.description.trim()
    }
}

pub(crate) fn reused_request_id(request_id: &str) -> StorageError {
    StorageError::AlreadyExists(format!(
        "request_id `{request_id}` already names a different export (another principal, \
         cameras, range, case, reason, recipient or rendering): a retry must repeat the request \
         exactly; use a new request id for a new export"
    ))
}

// ---------------------------------------------------------------------------------------------
// Building
// ---------------------------------------------------------------------------------------------

/// A tar stream written into a multipart upload, hashed as it goes.
struct TarUpload {
    out: WriteMultipart,
    hash: Sha256,
    size: u64,
}

impl TarUpload {
    async fn write(&mut self, bytes: &[u8]) -> Result<(), StorageError> {
        self.out.wait_for_capacity(4).await?;
        self.out.write(bytes);
        self.hash.update(bytes);
        self.size += bytes.len() as u64;
        Ok(())
    }

    fn header(path: &str, size: u64, mtime_us: i64) -> Result<[u8; 512], StorageError> {
        let mut h = tar::Header::new_ustar();
        h.set_path(path)
            .map_err(|e| StorageError::Internal(format!("tar path `{path}`: {e}")))?;
        h.set_size(size);
        h.set_mode(0o444);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(u64::try_from(mtime_us / MICROS).unwrap_or(0));
        h.set_entry_type(tar::EntryType::Regular);
        h.set_cksum();
        let mut out = [0u8; 512];
        out.copy_from_slice(h.as_bytes());
        Ok(out)
    }

    async fn begin_file(
        &mut self,
        path: &str,
        size: u64,
        mtime_us: i64,
    ) -> Result<(), StorageError> {
        let header = Self::header(path, size, mtime_us)?;
        self.write(&header).await
    }

    async fn end_file(&mut self, size: u64) -> Result<(), StorageError> {
        let pad = (512 - (size % 512) as usize) % 512;
        if pad > 0 {
            self.write(&[0u8; 512][..pad]).await?;
        }
        Ok(())
    }

    async fn file(&mut self, path: &str, bytes: &[u8], mtime_us: i64) -> Result<(), StorageError> {
        self.begin_file(path, bytes.len() as u64, mtime_us).await?;
        self.write(bytes).await?;
        self.end_file(bytes.len() as u64).await
    }

    async fn finish(mut self) -> Result<([u8; 32], u64), StorageError> {
        // Two zero blocks end the archive.
        self.write(&[0u8; 1024]).await?;
        self.out.finish().await?;
        Ok((self.hash.finalize().into(), self.size))
    }
}

fn readme(m: &Manifest) -> String {
    let mut text = readme_originals(m);
    if !m.viewer_copies.is_empty() {
        text.push_str(
            "\nViewer copies\n\
             - viewer/<camera>.mp4: a copy of each camera's footage made to be shown outside the\n\
               organisation (time burned in, privacy masks and people blurred, as manifest.json\n\
               names under viewer_copies). They are NOT evidence of what the cameras recorded:\n\
               the original segments are. Their SHA-256 is in manifest.json too, and checked.\n",
        );
    }
    text
}

fn readme_originals(m: &Manifest) -> String {
    format!(
        "Kordon evidence bundle {id}\n\
         Site {site}, case {case}, exported by {by} at {at}.\n\
         Range {from} – {to}.\n\n\
         Contents\n\
         - manifest.json: every chain record of each camera in the range (segments and gaps),\n\
           with the SHA-256 of each segment file and the hash links between records.\n\
         - signature.json: the Ed25519 signature of manifest.json's exact bytes, by the site's\n\
           key {key}.\n\
         - segments/<camera>/<sequence>.mp4: the original recordings, byte for byte\n\
           (fragmented MP4; play them with any player, e.g. ffplay or VLC).\n\n\
         To check it\n\
           kordon evidence verify <this file> --public-key <the site's public key>\n\
         checks the signature, every file's SHA-256 and size, and every chain link, offline,\n\
         and names anything that is wrong. Without Kordon: `sha256sum` each file and compare it\n\
         with manifest.json, and check the signature with any Ed25519 implementation over\n\
         manifest.json's bytes.\n",
        id = m.bundle_id,
        site = m.site,
        case = m.case_id,
        by = m.exported_by.subject,
        at = m.created_at,
        from = m.range.from,
        to = m.range.to,
        key = m.signing_key.public_key,
    )
}

impl Storage {
    /// Starts an export: validates it and creates the bundle (or returns the one of the same
    /// request id, `false`). Build it with [`Storage::build_bundle`].
    pub async fn start_export(&self, req: &ExportRequest) -> Result<(Bundle, bool), StorageError> {
        req.validate()?;
        self.index().create_bundle(req).await
    }

    /// Builds `bundle`: lists the chain records of each camera, has the viewer copies made
    /// when the bundle has a rendering (see [`crate::viewer`]), writes the archive into the
    /// bucket while re-hashing every segment against its record and every viewer copy against
    /// its maker's hash, signs the manifest and marks the bundle ready. A segment whose bytes
    /// no longer match its record, or a copy that does not match, fails the export (and names
    /// it) rather than shipping bytes the manifest misdescribes. `access` is the log entry of the
    /// export. On failure the bundle is marked failed with the reason.
    pub async fn build_bundle(
        &self,
        bundle: &Bundle,
        exported_by_name: &str,
        access: (u64, [u8; 32]),
        progress: Progress<'_>,
        cancel: &CancellationToken,
    ) -> Result<Bundle, StorageError> {
        match self
            .build_bundle_inner(bundle, exported_by_name, access, progress, cancel)
            .await
        {
            Ok(b) => Ok(b),
            Err(e) => {
                tracing::warn!(bundle = %bundle.id, error = %e, "evidence export failed");
                let message = match &e {
                    StorageError::Internal(_)
                    | StorageError::Database(_)
                    | StorageError::Migrate(_)
                    | StorageError::Io { .. } => "internal error; see the storage log".to_string(),
                    other => other.to_string(),
                };
                if let Err(e2) = self.index().fail_bundle(&bundle.id, &message).await {
                    tracing::error!(bundle = %bundle.id, error = %e2, "cannot mark bundle failed");
                }
                Err(e)
            }
        }
    }

    async fn build_bundle_inner(
        &self,
        bundle: &Bundle,
        exported_by_name: &str,
        access: (u64, [u8; 32]),
        progress: Progress<'_>,
        cancel: &CancellationToken,
    ) -> Result<Bundle, StorageError> {
        let site = &bundle.site;
        let idx = self.index();
        progress(0, 0, "listing chain records");
        let mut cameras = Vec::with_capacity(bundle.cameras.len());
        let mut to_copy: Vec<SegmentRecord> = Vec::new();
        for camera in &bundle.cameras {
            let (cam, segments) = self
                .camera_evidence(site, camera, bundle.from_us, bundle.to_us)
                .await?;
            to_copy.extend(segments);
            cameras.push(cam);
        }
        let viewer_copies = match &bundle.rendering {
            Some(r) => {
                self.make_viewer_copies(bundle, r, &cameras, progress, cancel)
                    .await?
            }
            None => Vec::new(),
        };
        let total_bytes: u64 = to_copy.iter().map(|s| s.size_bytes).sum::<u64>()
            + viewer_copies.iter().map(|(_, c)| c.size_bytes).sum::<u64>();
        let segment_count = to_copy.len() as u64;
        let signing = self.signing_key();
        let public = signing.verifying_key().to_bytes();
        let created_at_us = bundle.created_at_us;
        let manifest = Manifest {
            format: FORMAT.to_string(),
            bundle_id: bundle.id.clone(),
            site: site.clone(),
            created_at: rfc3339_micros(created_at_us),
            exported_by: Exporter {
                subject: bundle.exported_by.clone(),
                name: exported_by_name.to_string(),
            },
            case_id: bundle.case_id.clone(),
            reason: bundle.reason.clone(),
            recipient: bundle.recipient.clone(),
            description: bundle.description.clone(),
            range: ManifestRange {
                from: rfc3339_micros(bundle.from_us),
                to: rfc3339_micros(bundle.to_us),
                from_us: bundle.from_us,
                to_us: bundle.to_us,
            },
            signing_key: KeyInfo {
                algorithm: "ed25519".into(),
                public_key: hex::encode(public),
            },
            access_log_entry: AccessLogLink {
                sequence: access.0,
                hash: hex::encode(access.1),
            },
            cameras,
            viewer_copies: viewer_copies
                .iter()
                .map(|(camera, c)| {
                    let r = bundle.rendering.clone().unwrap_or_default();
                    ViewerCopyEvidence {
                        camera: camera.clone(),
                        file: viewer_file(camera),
                        size_bytes: c.size_bytes,
                        sha256: hex::encode(c.sha256),
                        transcode_job: c.job_id.clone(),
                        encoder: c.encoder.clone(),
                        transformation: Transformation {
                            summary: r.summary(camera),
                            burn_in_timestamp: r.burn_in_timestamp,
                            time_zone: r.time_zone.clone(),
                            privacy_masks: r.masks_of(camera).to_vec(),
                            blur_people: r.blur_people,
                        },
                        note: VIEWER_COPY_NOTE.to_string(),
                    }
                })
                .collect(),
        };
        let manifest_bytes = serde_json::to_vec_pretty(&manifest)
            .map_err(|e| StorageError::Internal(format!("encoding the manifest: {e}")))?;
        if manifest_bytes.len() as u64 > MAX_MANIFEST_BYTES {
            return Err(StorageError::invalid(format!(
                "range: the manifest would list {} chain records ({} MiB, more than the {} MiB \
                 a verifier reads); export the range as several bundles",
                manifest
                    .cameras
                    .iter()
                    .map(|c| c.records.len())
                    .sum::<usize>(),
                manifest_bytes.len() >> 20,
                MAX_MANIFEST_BYTES >> 20
            )));
        }
        let manifest_sha: [u8; 32] = Sha256::digest(&manifest_bytes).into();
        let signature = signing.sign(&manifest_bytes).to_bytes();
        let sig_file = SignatureFile {
            format: SIGNATURE_FORMAT.into(),
            algorithm: "ed25519".into(),
            public_key: hex::encode(public),
            manifest_sha256: hex::encode(manifest_sha),
            signature: hex::encode(signature),
        };
        let sig_bytes = serde_json::to_vec_pretty(&sig_file)
            .map_err(|e| StorageError::Internal(format!("encoding the signature: {e}")))?;

        let key = ObjectPath::parse(&bundle.object_key)
            .map_err(|e| StorageError::Internal(format!("bundle key: {e}")))?;
        let upload = self.objects().put_multipart(&key).await?;
        let mut tar = TarUpload {
            out: WriteMultipart::new_with_chunk_size(upload, PART_SIZE),
            hash: Sha256::new(),
            size: 0,
        };
        let written = async {
            tar.file(MANIFEST_FILE, &manifest_bytes, created_at_us)
                .await?;
            tar.file(SIGNATURE_FILE, &sig_bytes, created_at_us).await?;
            tar.file(README_FILE, readme(&manifest).as_bytes(), created_at_us)
                .await?;
            let mut done = 0u64;
            progress(0, total_bytes, "copying segments");
            for s in to_copy {
                if cancel.is_cancelled() {
                    return Err(StorageError::Cancelled(
                        "export cancelled: the client went away; export again with the same \
                         request id to rebuild the bundle"
                            .into(),
                    ));
                }
                self.copy_segment(&mut tar, &s).await?;
                done += s.size_bytes;
                progress(done, total_bytes, "copying segments");
            }
            for (camera, copy) in &viewer_copies {
                if cancel.is_cancelled() {
                    return Err(StorageError::Cancelled(
                        "export cancelled: the client went away; export again with the same \
                         request id to rebuild the bundle"
                            .into(),
                    ));
                }
                self.copy_viewer_copy(&mut tar, site, camera, copy, created_at_us)
                    .await?;
                done += copy.size_bytes;
                progress(done, total_bytes, "copying viewer copies");
            }
            Ok::<_, StorageError>(())
        }
        .await;
        if let Err(e) = written {
            // Leave no half-written archive behind.
            if let Err(abort) = tar.out.abort().await {
                tracing::warn!(error = %abort, "aborting the bundle upload failed");
            }
            return Err(e);
        }
        let (sha, size) = tar.finish().await?;
        let mut out = bundle.clone();
        out.state = STATE_READY;
        out.completed_at_us = Some(now_micros());
        out.segment_count = segment_count;
        out.gap_count = manifest.cameras.iter().map(|c| c.gaps).sum();
        out.size_bytes = size;
        out.sha256 = Some(sha);
        out.manifest = manifest_bytes;
        out.manifest_sha256 = Some(manifest_sha);
        out.signature = signature.to_vec();
        out.signing_key = public.to_vec();
        idx.finish_bundle(&out).await?;
        tracing::info!(bundle = %out.id, site = %site, segments = out.segment_count,
                       bytes = size, "evidence bundle ready");
        Ok(out)
    }

    /// Streams one segment's object into the archive, re-hashing it on the way: memory stays
    /// bounded by the object store's chunks, whatever the segment's size. Bytes that differ
    /// from the record (size or SHA-256) fail the export, which then aborts the upload, so
    /// altered footage never ships.
    async fn copy_segment(
        &self,
        tar: &mut TarUpload,
        s: &SegmentRecord,
    ) -> Result<(), StorageError> {
        let key = crate::service::object_key(&s.object_key)?;
        let mismatch = |size: u64, sha: Option<[u8; 32]>| {
            StorageError::FailedPrecondition(format!(
                "{} of {}/{} does not match its record: the object has {size}{} bytes{}; the \
                 record says {} bytes, {}. Nothing was exported; run VerifyChain on the range",
                s.chain_record().describe(),
                s.site,
                s.camera,
                if sha.is_none() { " or more" } else { "" },
                sha.map(|h| format!(", SHA-256 {}", hex::encode(h)))
                    .unwrap_or_default(),
                s.size_bytes,
                hex::encode(s.sha256)
            ))
        };
        let got = match self.objects().get(&key).await {
            Ok(got) => got,
            Err(object_store::Error::NotFound { .. }) => {
                return Err(StorageError::FailedPrecondition(format!(
                    "{} of {}/{} is missing from the bucket (object `{}`); run VerifyChain on \
                     the range",
                    s.chain_record().describe(),
                    s.site,
                    s.camera,
                    s.object_key
                )));
            }
            Err(e) => return Err(e.into()),
        };
        if got.meta.size != s.size_bytes {
            return Err(mismatch(got.meta.size, None));
        }
        tar.begin_file(
            &segment_file(&s.camera, s.sequence),
            s.size_bytes,
            s.start_us,
        )
        .await?;
        let mut hash = Sha256::new();
        let mut size = 0u64;
        let mut chunks = got.into_stream();
        while let Some(chunk) = chunks.try_next().await? {
            size += chunk.len() as u64;
            if size > s.size_bytes {
                return Err(mismatch(size, None));
            }
            hash.update(&chunk);
            tar.write(&chunk).await?;
        }
        let sha: [u8; 32] = hash.finalize().into();
        if sha != s.sha256 || size != s.size_bytes {
            return Err(mismatch(size, Some(sha)));
        }
        tar.end_file(size).await
    }

    /// Has the viewer copy of every camera that recorded something in the range made (one at a
    /// time: transcode bounds its own concurrency, and a bundle's cameras queue there anyway),
    /// with the bundle's audit context. Each copy's object must lie in its camera's folder.
    async fn make_viewer_copies(
        &self,
        bundle: &Bundle,
        rendering: &Rendering,
        cameras: &[CameraEvidence],
        progress: Progress<'_>,
        cancel: &CancellationToken,
    ) -> Result<Vec<(String, ViewerCopy)>, StorageError> {
        let maker = self
            .viewer_copies()
            .ok_or_else(crate::viewer::not_configured)?;
        let mut out = Vec::new();
        for cam in cameras {
            if cam.segments == 0 {
                // Nothing to show: no copy (the manifest says nothing was recorded).
                continue;
            }
            let camera = &cam.camera;
            let req = ViewerCopyRequest {
                bundle_id: bundle.id.clone(),
                site: bundle.site.clone(),
                camera: camera.clone(),
                from_us: bundle.from_us,
                to_us: bundle.to_us,
                burn_in_timestamp: rendering.burn_in_timestamp,
                time_zone: rendering.time_zone.clone(),
                privacy_masks: rendering.masks_of(camera).to_vec(),
                blur_people: rendering.blur_people,
                reason: bundle.reason.clone(),
                case_id: bundle.case_id.clone(),
                recipient: bundle.recipient.clone(),
                request_id: format!("{}/{camera}", bundle.id),
            };
            let stage_progress = |done: u64, total: u64, stage: &str| {
                progress(done, total, &format!("viewer copy of {camera}: {stage}"))
            };
            let copy = maker.make(&req, &stage_progress, cancel).await?;
            crate::service::object_key(&copy.object_key).map_err(|_| {
                StorageError::Internal(format!(
                    "transcode job {} named output `{}`, which is not an object key",
                    copy.job_id, copy.object_key
                ))
            })?;
            if !self.owns_key(&bundle.site, camera, &copy.object_key) {
                return Err(StorageError::FailedPrecondition(format!(
                    "the viewer copy of {}/{camera} (transcode job {}) was written to `{}`, \
                     outside the camera's folder `{}`: not packed",
                    bundle.site,
                    copy.job_id,
                    copy.object_key,
                    kordon_objects::camera_folder(
                        &self.options().object_prefix,
                        &bundle.site,
                        camera
                    )
                )));
            }
            tracing::info!(bundle = %bundle.id, camera = %camera, job = %copy.job_id,
                           bytes = copy.size_bytes, "viewer copy made");
            out.push((camera.clone(), copy));
        }
        Ok(out)
    }

    /// Streams a viewer copy into the archive, re-hashing it: bytes that differ from what the
    /// transcode job reported fail the export (nothing ships that the manifest misdescribes).
    async fn copy_viewer_copy(
        &self,
        tar: &mut TarUpload,
        site: &str,
        camera: &str,
        copy: &ViewerCopy,
        mtime_us: i64,
    ) -> Result<(), StorageError> {
        let key = crate::service::object_key(&copy.object_key)?;
        let what = format!(
            "the viewer copy of {site}/{camera} (transcode job {}, object `{}`)",
            copy.job_id, copy.object_key
        );
        let mismatch = |size: u64, sha: Option<[u8; 32]>| {
            StorageError::FailedPrecondition(format!(
                "{what} does not match the job's output: the object has {size}{} bytes{}; the \
                 job says {} bytes, {}. Nothing was exported",
                if sha.is_none() { " or more" } else { "" },
                sha.map(|h| format!(", SHA-256 {}", hex::encode(h)))
                    .unwrap_or_default(),
                copy.size_bytes,
                hex::encode(copy.sha256)
            ))
        };
        let got = match self.objects().get(&key).await {
            Ok(got) => got,
            Err(object_store::Error::NotFound { .. }) => {
                return Err(StorageError::FailedPrecondition(format!(
                    "{what} is not in the bucket"
                )));
            }
            Err(e) => return Err(e.into()),
        };
        if got.meta.size != copy.size_bytes {
            return Err(mismatch(got.meta.size, None));
        }
        tar.begin_file(&viewer_file(camera), copy.size_bytes, mtime_us)
            .await?;
        let mut hash = Sha256::new();
        let mut size = 0u64;
        let mut chunks = got.into_stream();
        while let Some(chunk) = chunks.try_next().await? {
            size += chunk.len() as u64;
            if size > copy.size_bytes {
                return Err(mismatch(size, None));
            }
            hash.update(&chunk);
            tar.write(&chunk).await?;
        }
        let sha: [u8; 32] = hash.finalize().into();
        if sha != copy.sha256 || size != copy.size_bytes {
            return Err(mismatch(size, Some(sha)));
        }
        tar.end_file(size).await
    }

    /// One camera's manifest part and the live segments to copy.
    async fn camera_evidence(
        &self,
        site: &str,
        camera: &str,
        from_us: i64,
        to_us: i64,
    ) -> Result<(CameraEvidence, Vec<SegmentRecord>), StorageError> {
        let idx = self.index();
        let head = idx.chain_head(site, camera).await?;
        let mut cam = CameraEvidence {
            camera: camera.to_string(),
            first_sequence: 0,
            last_sequence: 0,
            anchor_hash: hex::encode(chain::ZERO_HASH),
            last_hash: hex::encode(chain::ZERO_HASH),
            head_sequence: head.map(|h| h.sequence).unwrap_or(0),
            head_hash: hex::encode(head.map(|h| h.hash).unwrap_or(chain::ZERO_HASH)),
            segments: 0,
            gaps: 0,
            recorded_us: 0,
            index_findings: Vec::new(),
            records: Vec::new(),
        };
        let Some((lo, hi)) = idx.sequence_span(site, camera, from_us, to_us).await? else {
            return Ok((cam, Vec::new()));
        };
        cam.first_sequence = lo;
        cam.last_sequence = hi;
        let mut predecessor = if lo > 1 {
            idx.chain_records(site, camera, lo - 1, lo - 1)
                .await?
                .records
                .into_iter()
                .next()
        } else {
            None
        };
        let mut copy = Vec::new();
        let mut start = lo;
        while start <= hi {
            let end = start.saturating_add(BATCH - 1).min(hi);
            let batch = idx.chain_records(site, camera, start, end).await?;
            for f in chain::verify(&chain::Window {
                first: start,
                last: end,
                records: &batch.records,
                predecessor: predecessor.as_ref(),
                head: None,
            }) {
                cam.index_findings.push(f.detail);
            }
            let by_seq: HashMap<u64, &SegmentRecord> =
                batch.segments.iter().map(|s| (s.sequence, s)).collect();
            let gap_details: HashMap<u64, &str> = batch
                .gaps
                .iter()
                .map(|g| (g.sequence, g.detail.as_str()))
                .collect();
            for r in &batch.records {
                let mut e = RecordEvidence::from_chain(r);
                match r.kind {
                    RecordKind::Gap => {
                        cam.gaps += 1;
                        e.gap_detail = gap_details
                            .get(&r.sequence)
                            .map(|d| d.to_string())
                            .unwrap_or_default();
                    }
                    RecordKind::Segment => {
                        if let Some(s) = by_seq.get(&r.sequence) {
                            e.codec = codec_name(s.codec).to_string();
                            e.width = s.width;
                            e.height = s.height;
                            if s.deleted_at_us.is_some() {
                                e.deleted_by_retention = true;
                            } else {
                                e.file = segment_file(camera, s.sequence);
                                cam.segments += 1;
                                cam.recorded_us += s.end_us - s.start_us;
                                copy.push((*s).clone());
                            }
                        }
                    }
                }
                cam.records.push(e);
            }
            if let Some(last) = batch.records.iter().find(|r| r.sequence == end) {
                cam.last_hash = hex::encode(last.record_hash);
            }
            if start == lo
                && let Some(first) = batch.records.first()
            {
                cam.anchor_hash = hex::encode(first.prev_hash);
            }
            predecessor = batch.records.into_iter().find(|r| r.sequence == end);
            start = end + 1;
        }
        Ok((cam, copy))
    }

    /// The download URL of a ready bundle's archive, and its expiry (Unix seconds).
    pub fn bundle_download_url(&self, b: &Bundle, ttl: Duration) -> (String, i64) {
        let exp = crate::service::url_expiry(ttl);
        let token = self
            .playback_signer()
            .sign_object(Download::Bundle, &b.site, &b.id, exp);
        (
            format!(
                "{}/v1/evidence/{}/{}.tar?exp={exp}&token={token}",
                self.options().base_url,
                b.site,
                b.id
            ),
            exp,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(seq: u64, prev: [u8; 32], kind: RecordKind) -> ChainRecord {
        let mut r = ChainRecord {
            kind,
            site: "burgas".into(),
            camera: "gate".into(),
            sequence: seq,
            start_us: seq as i64 * 6 * MICROS,
            end_us: (seq as i64 + 1) * 6 * MICROS,
            size_bytes: if kind == RecordKind::Segment { 2 } else { 0 },
            sha256: if kind == RecordKind::Segment {
                Sha256::digest(format!("s{seq}").as_bytes()).into()
            } else {
                [0; 32]
            },
            object_key: if kind == RecordKind::Segment {
                format!("burgas/gate/{seq}.mp4")
            } else {
                String::new()
            },
            gap_reason: if kind == RecordKind::Gap { 1 } else { 0 },
            prev_hash: prev,
            record_hash: [0; 32],
        };
        r.record_hash = r.compute_hash();
        r
    }

    /// A signed bundle of three records (segment, gap, segment) whose files hold `s<seq>`
    /// (3 bytes), as tar bytes; `edit` may change the parts before they are written.
    fn bundle(
        key: &ed25519_dalek::SigningKey,
        edit: impl FnOnce(&mut Vec<u8>, &mut Vec<(String, Vec<u8>)>),
    ) -> Vec<u8> {
        build_test_bundle(key, edit, false)
    }

    /// Like [`bundle`]; with `resign` the edited manifest is signed (a forger with the key).
    fn build_test_bundle(
        key: &ed25519_dalek::SigningKey,
        edit: impl FnOnce(&mut Vec<u8>, &mut Vec<(String, Vec<u8>)>),
        resign: bool,
    ) -> Vec<u8> {
        build_test_bundle_with(key, edit, resign, |_| {})
    }

    /// Bytes of the viewer copy of [`viewer_bundle`].
    const VIEWER_BYTES: &[u8] = b"a viewer copy, time burned in";

    /// Like [`bundle`], with a viewer copy of `gate` (`viewer/gate.mp4`, [`VIEWER_BYTES`])
    /// listed in the manifest as `list` leaves it (it may change the entry).
    fn viewer_bundle(
        key: &ed25519_dalek::SigningKey,
        edit: impl FnOnce(&mut Vec<u8>, &mut Vec<(String, Vec<u8>)>),
        list: impl FnOnce(&mut ViewerCopyEvidence),
    ) -> Vec<u8> {
        build_test_bundle_with(
            key,
            |m, files| {
                files.push((viewer_file("gate"), VIEWER_BYTES.to_vec()));
                edit(m, files)
            },
            false,
            |m| {
                let mut rendering = Rendering {
                    burn_in_timestamp: true,
                    time_zone: "Europe/Sofia".into(),
                    ..Default::default()
                };
                rendering.privacy_masks.insert(
                    "gate".into(),
                    vec![vec![
                        crate::viewer::Point { x: 0.0, y: 0.0 },
                        crate::viewer::Point { x: 0.5, y: 0.0 },
                        crate::viewer::Point { x: 0.5, y: 0.5 },
                    ]],
                );
                let mut v = ViewerCopyEvidence {
                    camera: "gate".into(),
                    file: viewer_file("gate"),
                    size_bytes: VIEWER_BYTES.len() as u64,
                    sha256: hex::encode(Sha256::digest(VIEWER_BYTES)),
                    transcode_job: "job-1".into(),
                    encoder: "x264enc".into(),
                    transformation: Transformation {
                        summary: rendering.summary("gate"),
                        burn_in_timestamp: true,
                        time_zone: "Europe/Sofia".into(),
                        privacy_masks: rendering.masks_of("gate").to_vec(),
                        blur_people: false,
                    },
                    note: VIEWER_COPY_NOTE.into(),
                };
                list(&mut v);
                m.viewer_copies.push(v);
            },
        )
    }

    fn build_test_bundle_with(
        key: &ed25519_dalek::SigningKey,
        edit: impl FnOnce(&mut Vec<u8>, &mut Vec<(String, Vec<u8>)>),
        resign: bool,
        shape: impl FnOnce(&mut Manifest),
    ) -> Vec<u8> {
        let r1 = record(5, [7; 32], RecordKind::Segment);
        let r2 = record(6, r1.record_hash, RecordKind::Gap);
        let r3 = record(7, r2.record_hash, RecordKind::Segment);
        let mut records = Vec::new();
        let mut files = Vec::new();
        for r in [&r1, &r2, &r3] {
            let mut e = RecordEvidence::from_chain(r);
            if r.kind == RecordKind::Segment {
                e.file = segment_file("gate", r.sequence);
                files.push((e.file.clone(), format!("s{}", r.sequence).into_bytes()));
            }
            records.push(e);
        }
        let m = Manifest {
            format: FORMAT.into(),
            bundle_id: "b1".into(),
            site: "burgas".into(),
            created_at: rfc3339_micros(0),
            exported_by: Exporter {
                subject: "auditor-1".into(),
                name: String::new(),
            },
            case_id: "BG-1".into(),
            reason: "test".into(),
            recipient: String::new(),
            description: String::new(),
            range: ManifestRange {
                from: rfc3339_micros(0),
                to: rfc3339_micros(60 * MICROS),
                from_us: 0,
                to_us: 60 * MICROS,
            },
            signing_key: KeyInfo {
                algorithm: "ed25519".into(),
                public_key: hex::encode(key.verifying_key().to_bytes()),
            },
            access_log_entry: AccessLogLink {
                sequence: 1,
                hash: hex::encode([1; 32]),
            },
            cameras: vec![CameraEvidence {
                camera: "gate".into(),
                first_sequence: 5,
                last_sequence: 7,
                anchor_hash: hex::encode([7; 32]),
                last_hash: hex::encode(r3.record_hash),
                head_sequence: 7,
                head_hash: hex::encode(r3.record_hash),
                segments: 2,
                gaps: 1,
                recorded_us: 12 * MICROS,
                index_findings: vec![],
                records,
            }],
            viewer_copies: vec![],
        };
        let mut m = m;
        shape(&mut m);
        let manifest = serde_json::to_vec_pretty(&m).unwrap();
        let sig = |manifest: &[u8]| {
            serde_json::to_vec(&SignatureFile {
                format: SIGNATURE_FORMAT.into(),
                algorithm: "ed25519".into(),
                public_key: hex::encode(key.verifying_key().to_bytes()),
                manifest_sha256: hex::encode(Sha256::digest(manifest)),
                signature: hex::encode(key.sign(manifest).to_bytes()),
            })
            .unwrap()
        };
        let mut manifest_out = manifest.clone();
        edit(&mut manifest_out, &mut files);
        let signature = if resign {
            sig(&manifest_out)
        } else {
            sig(&manifest)
        };
        let mut out = tar::Builder::new(Vec::new());
        let mut add = |path: &str, data: &[u8]| {
            let mut h = tar::Header::new_ustar();
            h.set_size(data.len() as u64);
            h.set_mode(0o444);
            h.set_cksum();
            out.append_data(&mut h, path, data).unwrap();
        };
        add(MANIFEST_FILE, &manifest_out);
        add(SIGNATURE_FILE, &signature);
        for (p, d) in &files {
            add(p, d);
        }
        out.into_inner().unwrap()
    }

    fn verify(bytes: &[u8], pinned: Option<[u8; 32]>) -> BundleReport {
        let trusted: Vec<TrustedKey> = pinned
            .map(|key| TrustedKey {
                key,
                label: "burgas".into(),
            })
            .into_iter()
            .collect();
        verify_bundle(bytes, &trusted, &mut |_| {}).unwrap()
    }

    /// Issue 9, finding 4: a bundle signed by anyone, checked with no trusted key, is not
    /// reported intact (it only shows it was not altered since *someone* signed it).
    #[test]
    fn an_unpinned_bundle_has_an_unknown_signer() {
        let forger = key(9);
        let r = verify(&bundle(&forger, |_, _| {}), None);
        assert!(r.problems.is_empty(), "{:?}", r.problems);
        assert!(r.signature_valid);
        assert!(!r.intact());
        assert_eq!(r.verdict(), Verdict::UnknownSigner);
        assert_eq!(r.signer, None);
        assert!(
            r.notes.iter().any(|n| n.contains("UNKNOWN SIGNER")),
            "{:?}",
            r.notes
        );
        // With the site's key trusted, the genuine bundle is intact and names its signer.
        let site = key(1);
        let r = verify(
            &bundle(&site, |_, _| {}),
            Some(site.verifying_key().to_bytes()),
        );
        assert_eq!(
            (r.verdict(), r.signer.as_deref()),
            (Verdict::Intact, Some("burgas"))
        );
        // And a trusted-keys file of partner sites picks the right one.
        let file = format!(
            "# partner sites\n{} edirne\n\n{}   burgas  # ours\n",
            hex::encode(key(5).verifying_key().to_bytes()),
            hex::encode(site.verifying_key().to_bytes())
        );
        let trusted = TrustedKey::parse_file(&file).unwrap();
        assert_eq!(trusted.len(), 2);
        let r = verify_bundle(&bundle(&site, |_, _| {})[..], &trusted, &mut |_| {}).unwrap();
        assert_eq!(r.signer.as_deref(), Some("burgas"));
        let r = verify_bundle(&bundle(&forger, |_, _| {})[..], &trusted, &mut |_| {}).unwrap();
        assert_eq!(r.verdict(), Verdict::NotIntact);
        assert!(
            TrustedKey::parse_file("abc burgas")
                .unwrap_err()
                .contains("line 1")
        );
    }

    fn key(seed: u8) -> ed25519_dalek::SigningKey {
        ed25519_dalek::SigningKey::from_bytes(&[seed; 32])
    }

    #[test]
    fn an_untouched_bundle_verifies() {
        let k = key(1);
        let r = verify(&bundle(&k, |_, _| {}), Some(k.verifying_key().to_bytes()));
        assert!(r.intact(), "{:?}", r.problems);
        assert!(r.signature_valid);
        assert_eq!((r.segments_checked, r.gaps, r.cameras), (2, 1, 1));
        assert_eq!(r.bundle_id, "b1");
    }

    #[test]
    fn a_flipped_byte_in_a_segment_names_the_file() {
        let k = key(1);
        let r = verify(&bundle(&k, |_, f| f[1].1[0] ^= 1), None);
        assert_eq!(r.problems.len(), 1, "{:?}", r.problems);
        assert!(
            r.problems[0].contains("burgas/gate segment 7"),
            "{}",
            r.problems[0]
        );
        assert!(r.problems[0].contains("segments/gate/0000000007.mp4` was altered"));
    }

    #[test]
    fn a_deleted_segment_is_missing() {
        let k = key(1);
        let r = verify(&bundle(&k, |_, f| drop(f.remove(0))), None);
        assert_eq!(r.problems.len(), 1, "{:?}", r.problems);
        assert!(r.problems[0].contains("segment 5"));
        assert!(r.problems[0].contains("is missing from the bundle"));
    }

    #[test]
    fn an_edited_manifest_fails_the_signature() {
        let k = key(1);
        let r = verify(
            &bundle(&k, |m, _| {
                let s = String::from_utf8(m.clone())
                    .unwrap()
                    .replace("BG-1", "BG-2");
                *m = s.into_bytes();
            }),
            None,
        );
        assert!(!r.signature_valid);
        assert!(
            r.problems
                .iter()
                .any(|p| p.contains("changed after signing")),
            "{:?}",
            r.problems
        );
        assert!(
            r.problems
                .iter()
                .any(|p| p.contains("signature does not match"))
        );
    }

    #[test]
    fn a_wrong_pinned_key_is_named() {
        let r = verify(
            &bundle(&key(1), |_, _| {}),
            Some(key(2).verifying_key().to_bytes()),
        );
        assert!(!r.signature_valid);
        assert!(r.problems[0].contains("not the expected site key"));
    }

    #[test]
    fn an_extra_file_is_reported() {
        let k = key(1);
        let r = verify(
            &bundle(&k, |_, f| {
                f.push(("segments/gate/extra.mp4".into(), vec![1]))
            }),
            None,
        );
        assert_eq!(r.problems.len(), 1);
        assert!(r.problems[0].contains("not listed in the manifest"));
    }

    #[test]
    fn records_removed_from_a_re_signed_manifest_break_the_chain() {
        // Someone holding the key re-signs a manifest without the gap: the chain shows it.
        let k = key(1);
        let bytes = bundle(&k, |_, _| {});
        let mut ar = tar::Archive::new(bytes.as_slice());
        let mut manifest: Manifest = {
            let mut e = ar
                .entries()
                .unwrap()
                .map(|e| e.unwrap())
                .find(|e| e.path().unwrap().to_str() == Some(MANIFEST_FILE))
                .unwrap();
            let mut s = Vec::new();
            e.read_to_end(&mut s).unwrap();
            serde_json::from_slice(&s).unwrap()
        };
        manifest.cameras[0].records.remove(1);
        let m = serde_json::to_vec(&manifest).unwrap();
        let forged = build_test_bundle(&k, |out, _| *out = m, true);
        let r = verify(&forged, None);
        assert!(r.signature_valid);
        assert!(
            r.problems.iter().any(|p| p.contains("record 6 is missing")),
            "{:?}",
            r.problems
        );
    }

    /// Issue 9, finding 7: a hostile bundle that declares a huge manifest is refused from its
    /// header, before anything is allocated for it.
    #[test]
    fn an_oversized_manifest_is_refused_unread() {
        for (path, size) in [
            (MANIFEST_FILE, MAX_MANIFEST_BYTES + 1),
            (SIGNATURE_FILE, MAX_SIGNATURE_BYTES + 1),
        ] {
            let mut h = tar::Header::new_ustar();
            h.set_path(path).unwrap();
            h.set_size(size);
            h.set_mode(0o444);
            h.set_entry_type(tar::EntryType::Regular);
            h.set_cksum();
            let mut archive = h.as_bytes().to_vec();
            archive.extend_from_slice(&[0u8; 4096]);
            let r = verify(&archive, None);
            assert!(!r.intact());
            assert!(
                r.problems
                    .iter()
                    .any(|p| p.contains(&format!("`{path}` is {size} bytes, more than"))),
                "{:?}",
                r.problems
            );
        }
    }

    #[test]
    fn a_bundle_with_a_viewer_copy_verifies_and_reports_it_apart() {
        let k = key(1);
        let r = verify(
            &viewer_bundle(&k, |_, _| {}, |_| {}),
            Some(k.verifying_key().to_bytes()),
        );
        assert!(r.intact(), "{:?}", r.problems);
        assert_eq!(r.segments_checked, 2, "the originals are counted as before");
        assert_eq!(r.viewer_copies.len(), 1);
        let v = &r.viewer_copies[0];
        assert!(v.intact);
        assert_eq!(v.file, "viewer/gate.mp4");
        assert_eq!(
            v.transformation,
            "time burned in (Europe/Sofia); 1 privacy mask blurred; people not blurred"
        );
        assert!(
            r.notes.iter().any(|n| n.contains("not evidence")),
            "{:?}",
            r.notes
        );
        // Without viewer copies the manifest has no trace of them: bundles of originals are
        // as before.
        let plain = bundle(&k, |_, _| {});
        assert!(!String::from_utf8_lossy(&plain).contains("viewer_copies"));
        assert!(verify(&plain, None).viewer_copies.is_empty());
    }

    #[test]
    fn a_tampered_viewer_copy_is_named() {
        let k = key(1);
        let r = verify(
            &viewer_bundle(
                &k,
                |_, f| {
                    let v = f.iter_mut().find(|(p, _)| p == "viewer/gate.mp4").unwrap();
                    v.1[0] ^= 1;
                },
                |_| {},
            ),
            Some(k.verifying_key().to_bytes()),
        );
        assert!(!r.intact());
        assert_eq!(r.problems.len(), 1, "{:?}", r.problems);
        assert!(
            r.problems[0]
                .starts_with("viewer copy of burgas/gate: file `viewer/gate.mp4` was altered"),
            "{}",
            r.problems[0]
        );
        assert!(!r.viewer_copies[0].intact);
        assert_eq!(r.segments_checked, 2);

        // Missing.
        let r = verify(
            &viewer_bundle(
                &k,
                |_, f| f.retain(|(p, _)| !p.starts_with("viewer/")),
                |_| {},
            ),
            None,
        );
        assert!(
            r.problems
                .iter()
                .any(|p| p.contains("`viewer/gate.mp4` is missing")),
            "{:?}",
            r.problems
        );
    }

    #[test]
    fn a_viewer_copy_cannot_stand_in_for_an_original_or_hide() {
        let k = key(1);
        // Listed as if it were an original's file: refused.
        let r = verify(
            &viewer_bundle(
                &k,
                |_, _| {},
                |v| v.file = "segments/gate/0000000005.mp4".into(),
            ),
            None,
        );
        assert!(
            r.problems
                .iter()
                .any(|p| p.contains("is not under viewer/")),
            "{:?}",
            r.problems
        );
        // Of a camera the bundle does not have.
        let r = verify(
            &viewer_bundle(&k, |_, _| {}, |v| v.camera = "gate-9".into()),
            None,
        );
        assert!(
            r.problems.iter().any(|p| p.contains("no camera `gate-9`")),
            "{:?}",
            r.problems
        );
        // In the archive but not in the manifest: refused like any unlisted file.
        let r = verify(
            &bundle(&k, |_, f| {
                f.push(("viewer/gate.mp4".into(), VIEWER_BYTES.to_vec()))
            }),
            None,
        );
        assert!(
            r.problems
                .iter()
                .any(|p| p.contains("`viewer/gate.mp4` is in the archive but not listed")),
            "{:?}",
            r.problems
        );
    }

    #[test]
    fn not_a_tar_is_a_problem_not_a_panic() {
        let r = verify(b"hello", None);
        assert!(!r.intact());
    }
}
