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

use bytes::Bytes;
use futures::TryStreamExt;
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
            if &existing == expected_sha256 {
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
        Err(e) => Err(e.into()),
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
