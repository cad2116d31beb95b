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
//! )
//! ```
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
use sqlx::{AssertSqlSafe, Row};

use crate::StorageError;
use crate::chain::ZERO_HASH;
use crate::index::{Index, dispatch, hash32, to_i64, to_u64};

const DOMAIN: &[u8] = b"kordon.storage.access-log.v1";
const CHECKPOINT_DOMAIN: &[u8] = b"kordon.storage.access-log-checkpoint.v1";
const MAX_ATTEMPTS: u32 = 50;
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

macro_rules! access_columns {
    () => {
        "site, sequence, time_us, principal, principal_name, via_service, action, objects, \
         reason, case_id, recipient, method, prev_hash, hash"
    };
}

macro_rules! access_from_row {
    ($row:expr) => {{
        let r = &$row;
        AccessEntry {
            site: r.try_get("site")?,
            sequence: to_u64(r.try_get("sequence")?, "sequence")?,
            time_us: r.try_get("time_us")?,
            principal: r.try_get("principal")?,
            principal_name: r.try_get("principal_name")?,
            via_service: r.try_get("via_service")?,
            action: i32::try_from(r.try_get::<i64, _>("action")?)
                .map_err(|_| StorageError::Internal("stored action out of range".into()))?,
            objects_json: r.try_get("objects")?,
            reason: r.try_get("reason")?,
            case_id: r.try_get("case_id")?,
            recipient: r.try_get("recipient")?,
            method: r.try_get("method")?,
            prev_hash: hash32(r.try_get("prev_hash")?, "prev_hash")?,
            hash: hash32(r.try_get("hash")?, "hash")?,
        }
    }};
}

fn unique(e: &sqlx::Error) -> bool {
    e.as_database_error().is_some_and(|d| {
        d.is_unique_violation()
            || matches!(d.code().as_deref(), Some("40001" | "40P01" | "5" | "517"))
    })
}

impl Index {
    /// Appends an entry to its site's chain and returns it once committed.
    pub async fn append_access(&self, new: &NewAccessEntry) -> Result<AccessEntry, StorageError> {
        if new.site.is_empty() {
            return Err(StorageError::Internal("access entry without a site".into()));
        }
        let objects_json = serde_json::to_string(&new.objects)
            .map_err(|e| StorageError::Internal(format!("objects json: {e}")))?;
        let cameras: std::collections::BTreeSet<&str> = new
            .objects
            .iter()
            .filter(|o| !o.camera.is_empty() && (o.site.is_empty() || o.site == new.site))
            .map(|o| o.camera.as_str())
            .collect();
        for attempt in 0..MAX_ATTEMPTS {
            let result: Result<AccessEntry, sqlx::Error> = dispatch!(self, pool, begin => {
                async {
                    let mut tx = pool.begin_with(begin).await?;
                    let head = sqlx::query(
                        "SELECT sequence, hash FROM access_log WHERE site = $1 \
                         ORDER BY sequence DESC LIMIT 1",
                    )
                    .bind(&new.site)
                    .fetch_optional(&mut *tx)
                    .await?;
                    let (prev_seq, prev_hash) = match head {
                        Some(r) => (
                            r.try_get::<i64, _>("sequence")?,
                            r.try_get::<Vec<u8>, _>("hash")?,
                        ),
                        None => (0, ZERO_HASH.to_vec()),
                    };
                    let prev_hash = <[u8; 32]>::try_from(prev_hash.as_slice())
                        .map_err(|_| sqlx::Error::Protocol("stored hash is not 32 bytes".into()))?;
                    let mut entry = AccessEntry {
                        site: new.site.clone(),
                        sequence: u64::try_from(prev_seq + 1)
                            .map_err(|_| sqlx::Error::Protocol("negative sequence".into()))?,
                        time_us: now_micros(),
                        principal: new.principal.clone(),
                        principal_name: new.principal_name.clone(),
                        via_service: new.via_service.clone(),
                        action: new.action,
                        objects_json: objects_json.clone(),
                        reason: new.reason.clone(),
                        case_id: new.case_id.clone(),
                        recipient: new.recipient.clone(),
                        method: new.method.clone(),
                        prev_hash,
                        hash: ZERO_HASH,
                    };
                    entry.hash = entry.compute_hash();
                    sqlx::query(concat!(
                        "INSERT INTO access_log (", access_columns!(), ") VALUES \
                         ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
                    ))
                    .bind(&entry.site)
                    .bind(prev_seq + 1)
                    .bind(entry.time_us)
                    .bind(&entry.principal)
                    .bind(&entry.principal_name)
                    .bind(&entry.via_service)
                    .bind(i64::from(entry.action))
                    .bind(&entry.objects_json)
                    .bind(&entry.reason)
                    .bind(&entry.case_id)
                    .bind(&entry.recipient)
                    .bind(&entry.method)
                    .bind(entry.prev_hash.to_vec())
                    .bind(entry.hash.to_vec())
                    .execute(&mut *tx)
                    .await?;
                    for camera in &cameras {
                        sqlx::query(
                            "INSERT INTO access_log_cameras (site, camera, sequence) \
                             VALUES ($1, $2, $3)",
                        )
                        .bind(&entry.site)
                        .bind(*camera)
                        .bind(prev_seq + 1)
                        .execute(&mut *tx)
                        .await?;
                    }
                    tx.commit().await?;
                    Ok::<AccessEntry, sqlx::Error>(entry)
                }
                .await
            });
            match result {
                Ok(entry) => return Ok(entry),
                Err(e) if unique(&e) => {
                    let base = 1u64 << attempt.min(6);
                    let jitter = rand::random::<u64>() % (base + 1);
                    tokio::time::sleep(std::time::Duration::from_millis(base + jitter)).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(StorageError::Contention(format!(
            "could not append to the access log of site {} after {MAX_ATTEMPTS} attempts",
            new.site
        )))
    }

    /// Entries matching `filter` with sequence after `after`, oldest first, at most `limit`.
    pub async fn list_access(
        &self,
        filter: &AccessFilter,
        after: u64,
        limit: u32,
    ) -> Result<Vec<AccessEntry>, StorageError> {
        // Action numbers are i32 values we format ourselves: safe to inline.
        let actions = if filter.actions.is_empty() {
            String::new()
        } else {
            let list: Vec<String> = filter.actions.iter().map(|a| a.to_string()).collect();
            format!(" AND action IN ({})", list.join(", "))
        };
        let sql = format!(
            concat!(
                "SELECT ",
                access_columns!(),
                " FROM access_log \
                 WHERE site = $1 AND sequence > $2 \
                 AND ($3 = '' OR principal = $3) AND ($4 = '' OR case_id = $4) \
                 AND time_us >= $5 AND time_us < $6 \
                 AND ($7 = '' OR sequence IN \
                      (SELECT sequence FROM access_log_cameras WHERE site = $1 AND camera = $7)) \
                 {} ORDER BY sequence LIMIT $8"
            ),
            actions
        );
        let after = to_i64(after, "page token")?;
        dispatch!(self, pool, _b => {
            let rows = sqlx::query(AssertSqlSafe(sql))
                .bind(&filter.site)
                .bind(after)
                .bind(&filter.principal)
                .bind(&filter.case_id)
                .bind(filter.from_us.unwrap_or(i64::MIN))
                .bind(filter.to_us.unwrap_or(i64::MAX))
                .bind(&filter.camera)
                .bind(i64::from(limit))
                .fetch_all(pool)
                .await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in rows {
                out.push(access_from_row!(r));
            }
            Ok(out)
        })
    }

    /// The entry `sequence` of `site`'s log.
    pub async fn access_entry(
        &self,
        site: &str,
        sequence: u64,
    ) -> Result<Option<AccessEntry>, StorageError> {
        let seq = to_i64(sequence, "sequence")?;
        dispatch!(self, pool, _b => {
            let row = sqlx::query(concat!(
                "SELECT ", access_columns!(), " FROM access_log WHERE site = $1 AND sequence = $2"
            ))
            .bind(site)
            .bind(seq)
            .fetch_optional(pool)
            .await?;
            match row {
                Some(r) => Ok(Some(access_from_row!(r))),
                None => Ok(None),
            }
        })
    }

    /// The highest sequence of `site`'s log (0 when empty).
    pub async fn access_head(&self, site: &str) -> Result<u64, StorageError> {
        dispatch!(self, pool, _b => {
            let row = sqlx::query("SELECT MAX(sequence) AS hi FROM access_log WHERE site = $1")
                .bind(site)
                .fetch_one(pool)
                .await?;
            let hi: Option<i64> = row.try_get("hi")?;
            to_u64(hi.unwrap_or(0), "sequence")
        })
    }

    async fn access_range(
        &self,
        site: &str,
        first: u64,
        last: u64,
    ) -> Result<Vec<AccessEntry>, StorageError> {
        let (lo, hi) = (to_i64(first, "sequence")?, to_i64(last, "sequence")?);
        dispatch!(self, pool, _b => {
            let rows = sqlx::query(concat!(
                "SELECT ", access_columns!(), " FROM access_log \
                 WHERE site = $1 AND sequence >= $2 AND sequence <= $3 ORDER BY sequence"
            ))
            .bind(site)
            .bind(lo)
            .bind(hi)
            .fetch_all(pool)
            .await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in rows {
                out.push(access_from_row!(r));
            }
            Ok(out)
        })
    }

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
