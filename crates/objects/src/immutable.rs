//! Write-once puts: the only way Kordon writes evidence.
//!
//! [`put_immutable`] guarantees that after it returns `Ok`, the object under the key has exactly
//! the bytes whose SHA-256 the caller expected, and that it never replaced anything:
//! - the payload is hashed first; bytes that do not match the expected hash are never written;
//! - the write is conditional (`PutMode::Create`, i.e. `If-None-Match: *` on S3), so two
//!   writers racing on one key cannot both succeed and an existing object is never overwritten;
//! - when the key already exists (a retry after a lost response, a second replica), the existing
//!   object is read back and hashed: the same bytes are success ([`PutOutcome::AlreadyPresent`]),
//!   different bytes are [`ObjectsError::ConflictingObject`] and nothing is written.
//!
//! Assumes the store implements `PutMode::Create` (memory, local files, AWS S3 and Ceph RGW do).

use std::io::Read;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions};
use sha2::{Digest, Sha256};

use crate::ObjectsError;

/// What [`put_immutable`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    /// The object was written now.
    Created,
    /// The same bytes were already stored under the key; nothing was written.
    AlreadyPresent,
}

/// SHA-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// Writes `bytes` under `key` once; see the module docs.
pub async fn put_immutable(
    store: &dyn ObjectStore,
    key: &Path,
    bytes: Bytes,
    expected_sha256: &[u8; 32],
) -> Result<PutOutcome, ObjectsError> {
    let actual = sha256(&bytes);
    if &actual != expected_sha256 {
        return Err(ObjectsError::PayloadMismatch {
            key: key.to_string(),
            expected: hex::encode(expected_sha256),
            actual: hex::encode(actual),
        });
    }
    let opts = PutOptions {
        mode: PutMode::Create,
        ..Default::default()
    };
    match store.put_opts(key, bytes.into(), opts).await {
        Ok(_) => Ok(PutOutcome::Created),
        Err(object_store::Error::AlreadyExists { .. })
        | Err(object_store::Error::Precondition { .. }) => {
            let (existing, _) = hash_object(store, key).await?;
            already_there(key, &existing, expected_sha256)
        }
        Err(e) => Err(e.into()),
    }
}

/// How [`link_immutable`] makes sure `file` holds the bytes `expected_sha256` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// Read and hash the file first: a file of unknown history (left by an earlier run, or
    /// queued long enough for its disk to matter).
    Rehash,
    /// The caller hashed these very bytes as it wrote them, in this process, moments ago (a
    /// segment its recorder just closed): the hash is taken as is, and the file is read once
    /// fewer. Storage's verification re-hashes every object later either way.
    WrittenHere,
}

/// [`put_immutable`] of a payload that is already a file, into a store of local files: the
/// object becomes a hard link to `file`, so its bytes are written to disk once (e.g. by ingest's
/// spool) instead of twice. The same guarantees: `file` is hashed first (unless `check` says
/// the caller just did) and nothing is linked if it does not match; `link(2)` never replaces an
/// existing object, which is hashed and compared instead; the file's data and the new directory
/// entry are fsynced. The caller must not write to `file` afterwards (it may unlink it).
///
/// Blocking (call it from a blocking task). `Ok(None)` when no link can be made (`file` is on
/// another filesystem, or links are not supported): use [`put_immutable`] then.
pub fn link_immutable(
    store: &LocalFileSystem,
    key: &Path,
    file: &std::path::Path,
    expected_sha256: &[u8; 32],
    check: Check,
) -> Result<Option<PutOutcome>, ObjectsError> {
    let io = |e: std::io::Error| ObjectsError::Io {
        path: file.to_path_buf(),
        source: e,
    };
    let mut f = std::fs::File::open(file).map_err(io)?;
    if check == Check::Rehash {
        let actual = hash_reader(&mut f).map_err(io)?;
        if &actual != expected_sha256 {
            return Err(ObjectsError::PayloadMismatch {
                key: key.to_string(),
                expected: hex::encode(expected_sha256),
                actual: hex::encode(actual),
            });
        }
    }
    // The data must be durable before a name in the store points at it.
    f.sync_all().map_err(io)?;
    let dest = store.path_to_filesystem(key)?;
    let dir_io = |e: std::io::Error| ObjectsError::Io {
        path: dest.clone(),
        source: e,
    };
    let parent = dest.parent().map(std::path::Path::to_path_buf);
    if let Some(dir) = &parent {
        std::fs::create_dir_all(dir).map_err(dir_io)?;
    }
    match std::fs::hard_link(file, &dest) {
        Ok(()) => {
            if let Some(dir) = &parent {
                std::fs::File::open(dir)
                    .and_then(|d| d.sync_all())
                    .map_err(dir_io)?;
            }
            Ok(Some(PutOutcome::Created))
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let mut existing = std::fs::File::open(&dest).map_err(dir_io)?;
            let existing = hash_reader(&mut existing).map_err(dir_io)?;
            already_there(key, &existing, expected_sha256).map(Some)
        }
        // EXDEV (another filesystem), EPERM/ENOTSUP (no links here): copy instead.
        Err(e) if matches!(e.raw_os_error(), Some(18 | 1 | 95)) => Ok(None),
        Err(e) => Err(dir_io(e)),
    }
}

/// The outcome of a write that found `key` taken by an object hashing to `existing`: the same
/// bytes are success, different ones a conflict (nothing was written either way).
fn already_there(
    key: &Path,
    existing: &[u8; 32],
    expected_sha256: &[u8; 32],
) -> Result<PutOutcome, ObjectsError> {
    if existing == expected_sha256 {
        tracing::debug!(key = %key, "object already present with the same bytes");
        Ok(PutOutcome::AlreadyPresent)
    } else {
        Err(ObjectsError::ConflictingObject {
            key: key.to_string(),
            expected: hex::encode(expected_sha256),
            existing: hex::encode(existing),
        })
    }
}

fn hash_reader(r: &mut impl Read) -> std::io::Result<[u8; 32]> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            return Ok(hasher.finalize().into());
        }
        hasher.update(&buf[..n]);
    }
}

/// Reads an object as a stream and returns its SHA-256 and size (constant memory).
pub async fn hash_object(
    store: &dyn ObjectStore,
    key: &Path,
) -> Result<([u8; 32], u64), ObjectsError> {
    let mut stream = store.get(key).await?.into_stream();
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    while let Some(chunk) = stream.try_next().await? {
        size += chunk.len() as u64;
        hasher.update(&chunk);
    }
    Ok((hasher.finalize().into(), size))
}
