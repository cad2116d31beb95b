//! Evidence bundles: the offline verifier reads a tar a partner (or anyone) hands over.
//! Seeds are real bundles in Kordon's format, signed by a fixed key the verifier trusts, so
//! mutations start from an intact bundle and reach the manifest, chain and signature checks.

use ed25519_dalek::{Signer, SigningKey};
use kordon_storage::chain::{ChainRecord, RecordKind};
use kordon_storage::evidence::{
    AccessLogLink, CameraEvidence, Exporter, FORMAT, KeyInfo, MANIFEST_FILE, Manifest,
    ManifestRange, RecordEvidence, SIGNATURE_FILE, SIGNATURE_FORMAT, SignatureFile, TrustedKey,
    Verdict, segment_file, verify_bundle,
};
use sha2::{Digest, Sha256};

const SEC: i64 = 1_000_000;
/// 2026-01-01T00:00:00Z
const T0: i64 = 1_767_225_600 * SEC;

/// The key the harness trusts and the seeds are signed with.
pub fn site_key() -> SigningKey {
    SigningKey::from_bytes(&[0x4b; 32])
}

pub struct BundleHarness {
    trusted: Vec<TrustedKey>,
}

impl Default for BundleHarness {
    fn default() -> Self {
        BundleHarness {
            trusted: vec![TrustedKey {
                key: site_key().verifying_key().to_bytes(),
                label: "burgas".into(),
            }],
        }
    }
}

impl crate::targets::Harness for BundleHarness {
    fn run(&mut self, input: &[u8]) -> String {
        match verify_bundle(input, &self.trusted, &mut |_| {}) {
            Ok(report) => match report.verdict() {
                Verdict::Intact => format!("ok: intact, {} segments", report.segments_checked),
                Verdict::UnknownSigner => "unknown signer".into(),
                Verdict::NotIntact => format!(
                    "not intact: {}",
                    report
                        .problems
                        .first()
                        .map(|p| p.split_whitespace().take(5).collect::<Vec<_>>().join(" "))
                        .unwrap_or_default()
                ),
            },
            Err(e) => format!("io: {e}"),
        }
    }
}

fn record(seq: u64, prev: [u8; 32], kind: RecordKind, camera: &str) -> ChainRecord {
    let start = T0 + seq as i64 * 6 * SEC;
    let segment = kind == RecordKind::Segment;
    let mut r = ChainRecord {
        kind,
        site: "burgas".into(),
        camera: camera.into(),
        sequence: seq,
        start_us: start,
        end_us: start + 6 * SEC,
        size_bytes: if segment { body(seq).len() as u64 } else { 0 },
        sha256: if segment {
            Sha256::digest(body(seq)).into()
        } else {
            [0; 32]
        },
        object_key: if segment {
            format!("burgas/{camera}/{seq}.mp4")
        } else {
            String::new()
        },
        gap_reason: if segment { 0 } else { 1 },
        prev_hash: prev,
        record_hash: [0; 32],
    };
    r.record_hash = r.compute_hash();
    r
}

fn body(seq: u64) -> Vec<u8> {
    format!("segment {seq} of gate-1").into_bytes()
}

/// A signed bundle of one camera: `kinds` in order from sequence 5 on.
pub fn build(kinds: &[RecordKind]) -> Vec<u8> {
    let key = site_key();
    let camera = "gate-1";
    let mut prev = [7u8; 32];
    let anchor = prev;
    let mut records = Vec::new();
    let mut files = Vec::new();
    let mut segments = 0;
    for (i, kind) in kinds.iter().enumerate() {
        let r = record(5 + i as u64, prev, *kind, camera);
        prev = r.record_hash;
        let mut e = RecordEvidence::from_chain(&r);
        if *kind == RecordKind::Segment {
            segments += 1;
            e.file = segment_file(camera, r.sequence);
            files.push((e.file.clone(), body(r.sequence)));
        }
        records.push(e);
    }
    let last = records.last().map(|r| r.sequence).unwrap_or(0);
    let manifest = Manifest {
        format: FORMAT.into(),
        bundle_id: "fuzz-seed".into(),
        site: "burgas".into(),
        created_at: kordon_objects::time::rfc3339_micros(T0 + 3600 * SEC),
        exported_by: Exporter {
            subject: "auditor-1".into(),
            name: "Auditor One".into(),
        },
        case_id: "BG-2026-1".into(),
        reason: "fuzz seed".into(),
        recipient: String::new(),
        description: String::new(),
        range: ManifestRange {
            from: kordon_objects::time::rfc3339_micros(T0),
            to: kordon_objects::time::rfc3339_micros(T0 + 3600 * SEC),
            from_us: T0,
            to_us: T0 + 3600 * SEC,
        },
        signing_key: KeyInfo {
            algorithm: "ed25519".into(),
            public_key: hex::encode(key.verifying_key().to_bytes()),
        },
        access_log_entry: AccessLogLink {
            sequence: 1,
            hash: hex::encode([1u8; 32]),
        },
        cameras: vec![CameraEvidence {
            camera: camera.into(),
            first_sequence: 5,
            last_sequence: last,
            anchor_hash: hex::encode(anchor),
            last_hash: hex::encode(prev),
            head_sequence: last,
            head_hash: hex::encode(prev),
            segments,
            gaps: kinds.len() as u64 - segments,
            recorded_us: segments as i64 * 6 * SEC,
            index_findings: vec![],
            records,
        }],
        viewer_copies: vec![],
    };
    let manifest = serde_json::to_vec_pretty(&manifest).expect("manifest");
    let signature = serde_json::to_vec(&SignatureFile {
        format: SIGNATURE_FORMAT.into(),
        algorithm: "ed25519".into(),
        public_key: hex::encode(key.verifying_key().to_bytes()),
        manifest_sha256: hex::encode(Sha256::digest(&manifest)),
        signature: hex::encode(key.sign(&manifest).to_bytes()),
    })
    .expect("signature");
    let mut out = tar::Builder::new(Vec::new());
    let mut add = |path: &str, data: &[u8]| {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o444);
        h.set_cksum();
        out.append_data(&mut h, path, data).expect("tar entry");
    };
    add(MANIFEST_FILE, &manifest);
    add(SIGNATURE_FILE, &signature);
    for (p, d) in &files {
        add(p, d);
    }
    out.into_inner().expect("tar")
}

pub fn seeds() -> Vec<Vec<u8>> {
    use RecordKind::{Gap, Segment};
    vec![build(&[Segment, Gap, Segment]), build(&[Segment])]
}

pub const WORDS: &[&[u8]] = &[
    b"manifest.json",
    b"signature.json",
    b"segments/gate-1/",
    b"viewer/",
    b"../",
    b"\"records\":",
    b"\"sequence\": ",
    b"\"kind\": \"gap\"",
    b"\"kind\": \"segment\"",
    b"\"file\": \"",
    b"\"sha256\": \"",
    b"\"prev_hash\": \"",
    b"\"viewer_copies\": [",
    b"ustar\x0000",
    b"0000777\x00",
    b"99999999999\x00",
    b"null",
    b"-1",
    b"1e999",
];
