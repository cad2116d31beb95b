//! S3 Object Lock on every write.
//!
//! `object_store` has no per-request Object Lock option, but it signs and sends a client's
//! default headers on every request. [`ObjectLockStore`] therefore keeps a second S3 client
//! whose default headers are `x-amz-object-lock-mode` and
//! `x-amz-object-lock-retain-until-date` (with a SHA-256 checksum on each write, which S3
//! requires with a retention), and sends writes (`put`, multipart uploads, `copy`) through it;
//! reads, lists and deletes go through the plain client. The retain-until date is
//! `retain_days` after today, rounded up to the next UTC midnight, so the writing client is
//! rebuilt at most once a day.
//!
//! A bucket without Object Lock enabled refuses these writes (`InvalidRequest`): configure
//! `object_lock` only for buckets created with it. Buckets may also have a default retention;
//! S3 then applies whichever the write names (ours), so the two never shorten each other.

use std::fmt;
use std::ops::Range;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::stream::BoxStream;
use http::{HeaderMap, HeaderName, HeaderValue};
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, Result,
};

use crate::config::{ObjectLockConfig, ObjectStoreConfig};
use crate::time::{MICROS, days_from_civil, now_micros};

const DAY_MICROS: i64 = 86_400 * MICROS;

/// The Object Lock headers for a write at `now_micros`: the retain-until date is the UTC
/// midnight at least `retain_days` days later.
pub fn lock_headers(lock: ObjectLockConfig, now_micros: i64) -> HeaderMap {
    let today = now_micros.div_euclid(DAY_MICROS);
    let until_day = today + i64::from(lock.retain_days) + 1;
    let (y, m, d) = crate::time::civil_from_days(until_day);
    debug_assert_eq!(days_from_civil(y, m, d), until_day);
    let until = format!("{y:04}-{m:02}-{d:02}T00:00:00Z");
    let mut h = HeaderMap::new();
    h.insert(
        HeaderName::from_static("x-amz-object-lock-mode"),
        HeaderValue::from_static(lock.mode.as_header()),
    );
    if let Ok(v) = HeaderValue::from_str(&until) {
        h.insert(
            HeaderName::from_static("x-amz-object-lock-retain-until-date"),
            v,
        );
    }
    h
}

/// An S3 store that writes every object with an Object Lock retention; see the module docs.
pub struct ObjectLockStore {
    config: ObjectStoreConfig,
    lock: ObjectLockConfig,
    plain: Arc<dyn ObjectStore>,
    /// (UTC day number the writer was built on, the writer).
    writer: Mutex<Option<(i64, Arc<dyn ObjectStore>)>>,
}

impl ObjectLockStore {
    pub(crate) fn new(
        config: ObjectStoreConfig,
        lock: ObjectLockConfig,
        plain: Arc<dyn ObjectStore>,
    ) -> Self {
        Self {
            config,
            lock,
            plain,
            writer: Mutex::new(None),
        }
    }

    /// The client for writes today (built on first use each day).
    fn writer(&self) -> Result<Arc<dyn ObjectStore>> {
        let now = now_micros();
        let today = now.div_euclid(DAY_MICROS);
        let mut slot = self
            .writer
            .lock()
            .map_err(|_| object_store::Error::Generic {
                store: "ObjectLock",
                source: "writer lock poisoned".into(),
            })?;
        if let Some((day, w)) = slot.as_ref()
            && *day == today
        {
            return Ok(w.clone());
        }
        let headers = lock_headers(self.lock, now);
        let store: Arc<dyn ObjectStore> =
            match crate::config::s3_builder(&self.config, Some(headers)) {
                Ok(b) => Arc::new(b.build()?),
                Err(e) => {
                    return Err(object_store::Error::Generic {
                        store: "ObjectLock",
                        source: Box::new(e),
                    });
                }
            };
        *slot = Some((today, store.clone()));
        Ok(store)
    }
}

impl fmt::Debug for ObjectLockStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObjectLockStore")
            .field("config", &self.config)
            .field("lock", &self.lock)
            .finish()
    }
}

impl fmt::Display for ObjectLockStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ObjectLock({}, {} days, {})",
            self.lock.mode.as_header(),
            self.lock.retain_days,
            self.plain
        )
    }
}

#[async_trait::async_trait]
impl ObjectStore for ObjectLockStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        self.writer()?.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.writer()?.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.plain.get_opts(location, options).await
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        self.plain.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        self.plain.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.plain.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        self.plain.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.plain.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.writer()?.copy_opts(from, to, options).await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        // Copy (locked) then delete the source, as the default does.
        self.writer()?.rename_opts(from, to, options).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ObjectLockMode;

    #[test]
    fn retain_until_is_the_midnight_after_retain_days() {
        // 2026-11-27T10:14:06Z
        let now = 1_795_774_446 * MICROS;
        let h = lock_headers(
            ObjectLockConfig {
                mode: ObjectLockMode::Compliance,
                retain_days: 30,
            },
            now,
        );
        assert_eq!(h["x-amz-object-lock-mode"], "COMPLIANCE");
        assert_eq!(
            h["x-amz-object-lock-retain-until-date"],
            "2026-12-28T00:00:00Z"
        );
        let h = lock_headers(
            ObjectLockConfig {
                mode: ObjectLockMode::Governance,
                retain_days: 1,
            },
            now,
        );
        assert_eq!(h["x-amz-object-lock-mode"], "GOVERNANCE");
        assert_eq!(
            h["x-amz-object-lock-retain-until-date"],
            "2026-11-29T00:00:00Z"
        );
    }
}
