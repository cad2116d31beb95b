//! The local spool: every closed segment (and every gap) lands here first, then drains in order
//! to object storage and the storage index.
//!
//! Guarantees:
//! - An entry is visible to the uploader only once complete: the media file is written as
//!   `<name>.mp4.part`, renamed to `<name>.mp4`, then the metadata `<name>.json` is written
//!   atomically (temp file + rename). A crash leaves at most a `.part` file, which is moved to
//!   `orphaned/` at the next start, never uploaded as if it were whole.
//! - Per camera, entries drain in the order they were recorded (segments and gaps alike), so the
//!   per-camera hash chain in storage follows time.
//! - The spool never grows beyond its ceiling: a new segment that does not fit is refused (the
//!   caller records a spool-overflow gap), and footage already spooled is kept until it has been
//!   stored — oldest unsent footage is never dropped to make room.
//! - Entries survive restarts: [`Spool::open`] re-queues everything it finds.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use crate::IngestError;

/// What a spool entry records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EntryKind {
    Segment {
        size: u64,
        /// Lower-case hex SHA-256 of the media file.
        sha256: String,
        init_size: u64,
        codec: String,
        width: u32,
        height: u32,
        /// Object key the media is stored under.
        object_key: String,
    },
    Gap {
        /// `stream_lost`, `stream_error`, `ingest_restart`, `spool_overflow`.
        reason: String,
        detail: String,
    },
}

/// Metadata of one spooled segment or gap.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryMeta {
    pub site: String,
    pub camera: String,
    /// Wall-clock start and end, microseconds since the Unix epoch.
    pub start_us: i64,
    pub end_us: i64,
    pub replica: String,
    #[serde(flatten)]
    pub kind: EntryKind,
}

/// One queued entry.
#[derive(Debug, Clone)]
pub struct Entry {
    pub meta: EntryMeta,
    /// The `.json` file.
    pub meta_path: PathBuf,
    /// The `.mp4` file, for segments.
    pub media_path: Option<PathBuf>,
    /// Bytes the entry holds on disk.
    pub bytes: u64,
}

type CameraKey = (String, String);

pub struct Spool {
    root: PathBuf,
    max_bytes: u64,
    used: AtomicU64,
    counter: AtomicU64,
    queues: Mutex<BTreeMap<CameraKey, VecDeque<Entry>>>,
    notify: tokio::sync::Notify,
}

/// A segment being written into the spool.
pub struct SpoolFile {
    pub path: PathBuf,
    final_path: PathBuf,
    meta_path: PathBuf,
    reserved: u64,
}

impl Spool {
    /// Opens (creating) the spool at `root` and re-queues entries left by an earlier run.
    pub fn open(root: &Path, max_bytes: u64) -> Result<Spool, IngestError> {
        std::fs::create_dir_all(root).map_err(|e| IngestError::spool(root, e))?;
        let spool = Spool {
            root: root.to_path_buf(),
            max_bytes,
            used: AtomicU64::new(0),
            counter: AtomicU64::new(0),
            queues: Mutex::new(BTreeMap::new()),
            notify: tokio::sync::Notify::new(),
        };
        spool.recover()?;
        Ok(spool)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn used_bytes(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// Entries waiting, in total.
    pub fn pending(&self) -> usize {
        self.queues
            .lock()
            .map(|q| q.values().map(VecDeque::len).sum())
            .unwrap_or(0)
    }

    /// Entries and bytes waiting for one camera.
    pub fn pending_for(&self, site: &str, camera: &str) -> (u64, u64) {
        self.queues
            .lock()
            .ok()
            .and_then(|q| {
                q.get(&(site.to_string(), camera.to_string()))
                    .map(|d| (d.len() as u64, d.iter().map(|e| e.bytes).sum::<u64>()))
            })
            .unwrap_or((0, 0))
    }

    fn camera_dir(&self, site: &str, camera: &str) -> PathBuf {
        self.root.join(site).join(camera)
    }

    fn next_name(&self, start_us: i64) -> String {
        // Zero-padded so lexical order is time order; the counter breaks ties.
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        format!("{start_us:020}-{n:08}")
    }

    /// Reserves room for a segment of about `estimate` bytes and creates its file. `None` means
    /// the spool is full: the caller must refuse the footage (and record a gap), not wait.
    pub fn begin_segment(
        &self,
        site: &str,
        camera: &str,
        start_us: i64,
        estimate: u64,
    ) -> Result<Option<SpoolFile>, IngestError> {
        let reserved = estimate.max(1);
        let mut used = self.used.load(Ordering::Relaxed);
        loop {
            if used + reserved > self.max_bytes {
                return Ok(None);
            }
            match self.used.compare_exchange(
                used,
                used + reserved,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(actual) => used = actual,
            }
        }
        let dir = self.camera_dir(site, camera);
        if let Err(e) = std::fs::create_dir_all(&dir) {
            self.used.fetch_sub(reserved, Ordering::AcqRel);
            return Err(IngestError::spool(&dir, e));
        }
        let name = self.next_name(start_us);
        Ok(Some(SpoolFile {
            path: dir.join(format!("{name}.mp4.part")),
            final_path: dir.join(format!("{name}.mp4")),
            meta_path: dir.join(format!("{name}.json")),
            reserved,
        }))
    }

    /// Gives back a reservation whose file was abandoned (e.g. the writer failed); the partial
    /// file is removed.
    pub fn abandon(&self, file: SpoolFile) {
        let _ = std::fs::remove_file(&file.path);
        self.used.fetch_sub(file.reserved, Ordering::AcqRel);
    }

    /// Completes a segment: the file is renamed into place, its metadata written, and the entry
    /// queued. `meta.kind` must be a segment whose `size` is the file's size.
    pub fn commit_segment(&self, file: SpoolFile, meta: EntryMeta) -> Result<(), IngestError> {
        let size = match &meta.kind {
            EntryKind::Segment { size, .. } => *size,
            EntryKind::Gap { .. } => 0,
        };
        // Correct the reservation to the real size (may exceed the ceiling slightly: the
        // footage is already on disk and is kept).
        if size >= file.reserved {
            self.used.fetch_add(size - file.reserved, Ordering::AcqRel);
        } else {
            self.used.fetch_sub(file.reserved - size, Ordering::AcqRel);
        }
        if let Err(e) = std::fs::rename(&file.path, &file.final_path) {
            self.used.fetch_sub(size, Ordering::AcqRel);
            return Err(IngestError::spool(&file.final_path, e));
        }
        write_json_atomic(&file.meta_path, &meta)?;
        self.enqueue(Entry {
            meta,
            meta_path: file.meta_path,
            media_path: Some(file.final_path),
            bytes: size,
        });
        Ok(())
    }

    /// Queues a gap (no media). Gaps are tiny and always accepted, even when the spool is full.
    pub fn push_gap(&self, meta: EntryMeta) -> Result<(), IngestError> {
        let dir = self.camera_dir(&meta.site, &meta.camera);
        std::fs::create_dir_all(&dir).map_err(|e| IngestError::spool(&dir, e))?;
        let meta_path = dir.join(format!("{}.json", self.next_name(meta.start_us)));
        write_json_atomic(&meta_path, &meta)?;
        self.enqueue(Entry {
            meta,
            meta_path,
            media_path: None,
            bytes: 0,
        });
        Ok(())
    }

    fn enqueue(&self, entry: Entry) {
        if let Ok(mut q) = self.queues.lock() {
            q.entry((entry.meta.site.clone(), entry.meta.camera.clone()))
                .or_default()
                .push_back(entry);
        }
        self.notify.notify_waiters();
    }

    /// The oldest entry of each camera that has one, without removing them.
    pub fn heads(&self) -> Vec<Entry> {
        self.queues
            .lock()
            .map(|q| q.values().filter_map(|d| d.front().cloned()).collect())
            .unwrap_or_default()
    }

    /// Removes a stored entry (it must be its camera's head) and frees its space.
    pub fn complete(&self, entry: &Entry) -> Result<(), IngestError> {
        if let Some(m) = &entry.media_path {
            match std::fs::remove_file(m) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(IngestError::spool(m, e)),
            }
        }
        match std::fs::remove_file(&entry.meta_path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(IngestError::spool(&entry.meta_path, e)),
        }
        if let Ok(mut q) = self.queues.lock() {
            let key = (entry.meta.site.clone(), entry.meta.camera.clone());
            if let Some(d) = q.get_mut(&key) {
                if d.front().is_some_and(|h| h.meta_path == entry.meta_path) {
                    d.pop_front();
                }
                if d.is_empty() {
                    q.remove(&key);
                }
            }
        }
        self.used.fetch_sub(entry.bytes, Ordering::AcqRel);
        Ok(())
    }

    /// Waits until something is queued (or a timeout elapses, so callers re-check backoffs).
    pub async fn wait(&self, timeout: std::time::Duration) {
        let _ = tokio::time::timeout(timeout, self.notify.notified()).await;
    }

    /// Scans the spool left by an earlier run: complete entries are queued in order, partial
    /// files moved to `orphaned/`.
    fn recover(&self) -> Result<(), IngestError> {
        let mut found: Vec<Entry> = Vec::new();
        let orphaned = self.root.join("orphaned");
        for site in read_dirs(&self.root)? {
            if site.file_name().is_some_and(|n| n == "orphaned") {
                continue;
            }
            for cam in read_dirs(&site)? {
                let mut files: Vec<PathBuf> = std::fs::read_dir(&cam)
                    .map_err(|e| IngestError::spool(&cam, e))?
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .collect();
                files.sort();
                for path in files {
                    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
                    if name.ends_with(".part") || name.ends_with(".tmp") {
                        std::fs::create_dir_all(&orphaned)
                            .map_err(|e| IngestError::spool(&orphaned, e))?;
                        let dest =
                            orphaned.join(format!("{}-{}-{name}", dir_name(&site), dir_name(&cam)));
                        tracing::warn!(file = %path.display(), moved_to = %dest.display(),
                            "incomplete segment from an earlier run kept aside, not uploaded");
                        std::fs::rename(&path, &dest).map_err(|e| IngestError::spool(&path, e))?;
                        continue;
                    }
                    if !name.ends_with(".json") {
                        continue;
                    }
                    let meta: EntryMeta = match std::fs::read(&path)
                        .ok()
                        .and_then(|b| serde_json::from_slice(&b).ok())
                    {
                        Some(m) => m,
                        None => {
                            tracing::error!(file = %path.display(), "unreadable spool metadata kept in place");
                            continue;
                        }
                    };
                    let media = path.with_extension("mp4");
                    let (media_path, bytes) = match &meta.kind {
                        EntryKind::Segment { size, .. } => {
                            if !media.is_file() {
                                tracing::error!(file = %media.display(), "spooled segment missing its media file; skipped");
                                continue;
                            }
                            (Some(media), *size)
                        }
                        EntryKind::Gap { .. } => (None, 0),
                    };
                    found.push(Entry {
                        meta,
                        meta_path: path,
                        media_path,
                        bytes,
                    });
                }
            }
        }
        let total: u64 = found.iter().map(|e| e.bytes).sum();
        if !found.is_empty() {
            tracing::info!(
                entries = found.len(),
                bytes = total,
                "spool: re-queued entries from an earlier run"
            );
        }
        self.used.store(total, Ordering::Relaxed);
        for e in found {
            self.enqueue(e);
        }
        Ok(())
    }
}

fn dir_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn read_dirs(p: &Path) -> Result<Vec<PathBuf>, IngestError> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(p)
        .map_err(|e| IngestError::spool(p, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    out.sort();
    Ok(out)
}

fn write_json_atomic(path: &Path, meta: &EntryMeta) -> Result<(), IngestError> {
    let tmp = path.with_extension("json.tmp");
    let body = serde_json::to_vec_pretty(meta).map_err(|e| IngestError::Internal(e.to_string()))?;
    std::fs::write(&tmp, body).map_err(|e| IngestError::spool(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| IngestError::spool(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg_meta(start: i64, size: u64) -> EntryMeta {
        EntryMeta {
            site: "burgas".into(),
            camera: "pier-2".into(),
            start_us: start,
            end_us: start + 6_000_000,
            replica: "ingest-0".into(),
            kind: EntryKind::Segment {
                size,
                sha256: "00".repeat(32),
                init_size: 100,
                codec: "h264".into(),
                width: 1920,
                height: 1080,
                object_key: format!("k/{start}"),
            },
        }
    }

    fn write_segment(spool: &Spool, start: i64, size: u64) -> bool {
        match spool
            .begin_segment("burgas", "pier-2", start, size)
            .unwrap()
        {
            None => false,
            Some(f) => {
                std::fs::write(&f.path, vec![7u8; size as usize]).unwrap();
                spool.commit_segment(f, seg_meta(start, size)).unwrap();
                true
            }
        }
    }

    #[test]
    fn entries_drain_in_order_and_survive_restart() {
        let dir = tempfile::tempdir().unwrap();
        {
            let spool = Spool::open(dir.path(), 1 << 30).unwrap();
            assert!(write_segment(&spool, 1_000, 10));
            spool
                .push_gap(EntryMeta {
                    kind: EntryKind::Gap {
                        reason: "stream_lost".into(),
                        detail: "x".into(),
                    },
                    ..seg_meta(2_000, 0)
                })
                .unwrap();
            assert!(write_segment(&spool, 3_000, 10));
            // A crash mid-write leaves a .part file.
            let f = spool
                .begin_segment("burgas", "pier-2", 4_000, 10)
                .unwrap()
                .unwrap();
            std::fs::write(&f.path, b"partial").unwrap();
            assert_eq!(spool.pending(), 3);
        }
        let spool = Spool::open(dir.path(), 1 << 30).unwrap();
        assert_eq!(spool.pending(), 3);
        assert_eq!(spool.used_bytes(), 20);
        let mut order = Vec::new();
        while let Some(h) = spool.heads().into_iter().next() {
            order.push(h.meta.start_us);
            spool.complete(&h).unwrap();
        }
        assert_eq!(order, vec![1_000, 2_000, 3_000]);
        assert_eq!(spool.used_bytes(), 0);
        assert!(dir.path().join("orphaned").read_dir().unwrap().count() == 1);
    }

    #[test]
    fn a_full_spool_refuses_new_footage_and_keeps_the_old() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path(), 25).unwrap();
        assert!(write_segment(&spool, 1, 10));
        assert!(write_segment(&spool, 2, 10));
        assert!(!write_segment(&spool, 3, 10), "third does not fit");
        assert_eq!(spool.pending(), 2);
        let head = spool.heads().pop().unwrap();
        assert_eq!(head.meta.start_us, 1, "oldest kept");
        spool.complete(&head).unwrap();
        assert!(write_segment(&spool, 4, 10), "room again after draining");
    }
}
