//! The access log: an append-only, hash-chained record of every footage access.
//!
//! There is one chain per site (the site whose footage was touched), matching the
//! per-site sequence of `AccessLogEntry`: each site's auditors can read and verify their
//! site's log on its own, and sites never contend for one global head.
//!
//! ```text
//! hash = SHA-256(
//!     "kordon.storage.access-log.v1"       ASCII domain tag
//!     prev_hash                            32 bytes; zeros for entry 1
//!     sequence                             u64 big-endian
//!     time_us                              i64 big-endian
//!     site, principal, principal_name, via_service     each u32 length + UTF-8
//!     action                               i32 big-endian (kordon.storage.v1.AccessAction)
//!     objects                              u32 length + the stored JSON text, byte for byte
//!     reason, case_id, recipient, method   each u32 length + UTF-8
//!     source                               u32 length + UTF-8, only when non-empty
//! )
//! ```
//!
//! `source` (the partner site an access came from) is appended only when set, so every entry
//! written before it existed, and every local access, hashes exactly as before.
//!
//! An entry is durable (committed) before the call that caused it returns anything. Appends
//! are serialised per site like chain registrations (read head, insert `sequence + 1`, retry on
//! a unique violation).
//!
//! Checkpoints: a signed statement `(site, sequence, hash, time)` of the log's head, signed
//! with the storage service's Ed25519 key over
//! `"kordon.storage.access-log-checkpoint.v1" || len+site || u64 sequence || hash || i64 time_us`,
//! to keep outside the system and present to a later verification.

use std::collections::BTreeMap;

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use kordon_objects::time::now_micros;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::StorageError;
use crate::chain::ZERO_HASH;
use crate::index::Index;

const DOMAIN: &[u8] = b"kordon.storage.access-log.v1";
const CHECKPOINT_DOMAIN: &[u8] = b"kordon.storage.access-log-checkpoint.v1";
/// Entries loaded per query while verifying.
const VERIFY_BATCH: u64 = 10_000;

/// One thing an access touched (an `AccessObject`), as stored in the entry's JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessObjectRec {
    /// `kordon.storage.v1.AccessObjectKind` value.
    pub kind: i32,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub site: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub camera: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_us: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_us: Option<i64>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub id: String,
}

/// An entry to append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAccessEntry {
    pub site: String,
    pub principal: String,
    pub principal_name: String,
    pub via_service: String,
    /// `kordon.storage.v1.AccessAction` value.
    pub action: i32,
    pub objects: Vec<AccessObjectRec>,
    pub reason: String,
    pub case_id: String,
    pub recipient: String,
    pub method: String,
    /// The partner site the access came from; empty for local accesses.
    pub source: String,
}

/// A stored entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessEntry {
    pub site: String,
    pub sequence: u64,
    pub time_us: i64,
    pub principal: String,
    pub principal_name: String,
    pub via_service: String,
    pub action: i32,
    /// The objects JSON exactly as hashed.
    pub objects_json: String,
    pub reason: String,
    pub case_id: String,
    pub recipient: String,
    pub method: String,
    /// The partner site the access came from; empty for local accesses.
    pub source: String,
    pub prev_hash: [u8; 32],
    pub hash: [u8; 32],
}

fn put_str(h: &mut Sha256, s: &str) {
    let len = u32::try_from(s.len()).unwrap_or(u32::MAX);
    h.update(len.to_be_bytes());
    h.update(s.as_bytes());
}

impl AccessEntry {
    /// The hash of this entry's fields and `prev_hash` (see the module docs).
    pub fn compute_hash(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(DOMAIN);
        h.update(self.prev_hash);
        h.update(self.sequence.to_be_bytes());
        h.update(self.time_us.to_be_bytes());
        put_str(&mut h, &self.site);
        put_str(&mut h, &self.principal);
        put_str(&mut h, &self.principal_name);
        put_str(&mut h, &self.via_service);
        h.update(self.action.to_be_bytes());
        put_str(&mut h, &self.objects_json);
        put_str(&mut h, &self.reason);
        put_str(&mut h, &self.case_id);
        put_str(&mut h, &self.recipient);
        put_str(&mut h, &self.method);
        if !self.source.is_empty() {
            put_str(&mut h, &self.source);
        }
        h.finalize().into()
    }

    /// The objects, parsed from the stored JSON (empty if it no longer parses).
    pub fn objects(&self) -> Vec<AccessObjectRec> {
        serde_json::from_str(&self.objects_json).unwrap_or_default()
    }
}

/// Filters of [`Index::list_access`]; empty fields match everything.
#[derive(Debug, Clone, Default)]
pub struct AccessFilter {
    pub site: String,
    pub principal: String,
    pub actions: Vec<i32>,
    pub camera: String,
    pub case_id: String,
    pub from_us: Option<i64>,
    pub to_us: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum AccessFindingKind {
    MissingEntry,
    EntryAltered,
    BrokenLink,
    CheckpointMismatch,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessFinding {
    pub kind: AccessFindingKind,
    pub sequence: u64,
    pub detail: String,
}

/// The outcome of [`Index::verify_access`].
#[derive(Debug, Clone, Default)]
pub struct AccessReport {
    pub first: u64,
    pub last: u64,
    pub checked: u64,
    pub findings: Vec<AccessFinding>,
    /// Hash of entry `last` as stored (zeros when the log is empty).
    pub last_hash: [u8; 32],
}

/// A signed statement of the log's head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub site: String,
    pub sequence: u64,
    pub hash: [u8; 32],
    pub time_us: i64,
    pub signature: Vec<u8>,
    pub public_key: Vec<u8>,
}

fn checkpoint_message(site: &str, sequence: u64, hash: &[u8; 32], time_us: i64) -> Vec<u8> {
    let mut m = Vec::with_capacity(CHECKPOINT_DOMAIN.len() + site.len() + 52);
    m.extend_from_slice(CHECKPOINT_DOMAIN);
    m.extend_from_slice(&u32::try_from(site.len()).unwrap_or(u32::MAX).to_be_bytes());
    m.extend_from_slice(site.as_bytes());
    m.extend_from_slice(&sequence.to_be_bytes());
    m.extend_from_slice(hash);
    m.extend_from_slice(&time_us.to_be_bytes());
    m
}

impl Checkpoint {
    pub fn sign(key: &SigningKey, site: &str, sequence: u64, hash: [u8; 32]) -> Checkpoint {
        let time_us = now_micros();
        let sig = key.sign(&checkpoint_message(site, sequence, &hash, time_us));
        Checkpoint {
            site: site.to_string(),
            sequence,
            hash,
            time_us,
            signature: sig.to_bytes().to_vec(),
            public_key: key.verifying_key().to_bytes().to_vec(),
        }
    }

    /// Whether the signature is valid for the checkpoint's own public key.
    pub fn signature_valid(&self) -> bool {
        let Ok(pk) = <[u8; 32]>::try_from(self.public_key.as_slice()) else {
            return false;
        };
        let Ok(key) = VerifyingKey::from_bytes(&pk) else {
            return false;
        };
        let Ok(sig) = Signature::from_slice(&self.signature) else {
            return false;
        };
        key.verify(
            &checkpoint_message(&self.site, self.sequence, &self.hash, self.time_us),
            &sig,
        )
        .is_ok()
    }
}

impl Index {
    /// Verifies `site`'s log over `first..=last` (0 = first entry / the head), and a
    /// checkpoint if given. `trusted_key` is the key checkpoints must be signed with.
    pub async fn verify_access(
        &self,
        site: &str,
        first: u64,
        last: u64,
        checkpoint: Option<&Checkpoint>,
        trusted_key: &[u8; 32],
    ) -> Result<AccessReport, StorageError> {
        let head = self.access_head(site).await?;
        let first = first.max(1);
        let last = if last == 0 { head } else { last.min(head) };
        let mut report = AccessReport {
            first,
            last,
            ..Default::default()
        };
        let mut findings: BTreeMap<(u64, AccessFindingKind), String> = BTreeMap::new();
        if last >= first {
            let mut prev: Option<(u64, [u8; 32])> = if first == 1 {
                Some((0, ZERO_HASH))
            } else {
                self.access_entry(site, first - 1)
                    .await?
                    .map(|e| (e.sequence, e.hash))
            };
            let mut start = first;
            while start <= last {
                let end = start.saturating_add(VERIFY_BATCH - 1).min(last);
                let entries = self.access_range(site, start, end).await?;
                let mut next = start;
                for e in entries {
                    for missing in next..e.sequence {
                        findings.insert(
                            (missing, AccessFindingKind::MissingEntry),
                            format!("entry {missing} is missing from the access log"),
                        );
                        prev = None;
                    }
                    report.checked += 1;
                    if e.compute_hash() != e.hash {
                        findings.insert(
                            (e.sequence, AccessFindingKind::EntryAltered),
                            format!(
                                "entry {} ({} by {}) was altered: its fields no longer hash to \
                                 its hash",
                                e.sequence,
                                kordon_objects::time::rfc3339_micros(e.time_us),
                                e.principal
                            ),
                        );
                    }
                    if let Some((ps, ph)) = prev
                        && ph != e.prev_hash
                    {
                        findings.insert(
                            (e.sequence, AccessFindingKind::BrokenLink),
                            format!("entry {} does not link to entry {ps}", e.sequence),
                        );
                    }
                    if e.sequence == last {
                        report.last_hash = e.hash;
                    }
                    prev = Some((e.sequence, e.hash));
                    next = e.sequence + 1;
                }
                for missing in next..=end {
                    findings.insert(
                        (missing, AccessFindingKind::MissingEntry),
                        format!("entry {missing} is missing from the access log"),
                    );
                    prev = None;
                }
                start = end + 1;
            }
        }
        if let Some(cp) = checkpoint {
            let mut problem = None;
            if cp.site != site {
                problem = Some(format!("checkpoint is of site `{}`", cp.site));
            } else if cp.public_key.as_slice() != trusted_key.as_slice() {
                problem = Some("checkpoint is signed by a different key".to_string());
            } else if !cp.signature_valid() {
                problem = Some("checkpoint signature does not verify".to_string());
            } else {
                match self.access_entry(site, cp.sequence).await? {
                    None => {
                        problem = Some(format!(
                            "checkpoint names entry {}, which is no longer in the log",
                            cp.sequence
                        ))
                    }
                    Some(e) if e.hash != cp.hash => {
                        problem = Some(format!(
                            "entry {} now has hash {}, the checkpoint says {}",
                            cp.sequence,
                            hex::encode(e.hash),
                            hex::encode(cp.hash)
                        ))
                    }
                    Some(_) => {}
                }
            }
            if let Some(p) = problem {
                findings.insert((cp.sequence, AccessFindingKind::CheckpointMismatch), p);
            }
        }
        report.findings = findings
            .into_iter()
            .map(|((sequence, kind), detail)| AccessFinding {
                kind,
                sequence,
                detail,
            })
            .collect();
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(source: &str) -> AccessEntry {
        AccessEntry {
            site: "burgas".into(),
            sequence: 1,
            time_us: 1_795_773_600_000_000,
            principal: "auditor-2".into(),
            principal_name: String::new(),
            via_service: String::new(),
            action: 12,
            objects_json: "[]".into(),
            reason: "r".into(),
            case_id: "c".into(),
            recipient: "edirne".into(),
            method: "/kordon.storage.v1.StorageService/RequestFootage".into(),
            source: source.into(),
            prev_hash: ZERO_HASH,
            hash: ZERO_HASH,
        }
    }

    /// The hash as it was computed before `source` existed.
    fn legacy_hash(e: &AccessEntry) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(DOMAIN);
        h.update(e.prev_hash);
        h.update(e.sequence.to_be_bytes());
        h.update(e.time_us.to_be_bytes());
        for s in [&e.site, &e.principal, &e.principal_name, &e.via_service] {
            put_str(&mut h, s);
        }
        h.update(e.action.to_be_bytes());
        for s in [
            &e.objects_json,
            &e.reason,
            &e.case_id,
            &e.recipient,
            &e.method,
        ] {
            put_str(&mut h, s);
        }
        h.finalize().into()
    }

    #[test]
    fn source_is_hashed_only_when_set() {
        let local = entry("");
        assert_eq!(local.compute_hash(), legacy_hash(&local));
        let from_partner = entry("edirne");
        assert_ne!(from_partner.compute_hash(), local.compute_hash());
        // Changing or removing the source of a stored entry breaks its hash.
        assert_ne!(entry("yambol").compute_hash(), from_partner.compute_hash());
    }
}
