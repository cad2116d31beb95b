//! The local spool: every closed segment (and every gap) lands here first, then drains in order
//! to object storage and the storage index.
//!
//! Guarantees:
//! - An entry is visible to the uploader only once complete: the media file is written as
//!   `<name>.mp4.part`, renamed to `<name>.mp4`, then the metadata `<name>.json` is written
//!   atomically (temp file + rename). While it is written, `<name>.open.json` says what it is
//!   (camera, start, codec, the object prefix). A crash leaves a `.part` file: at the next start
//!   its whole part — every fragment before the first torn one, as the writer puts each
//!   fragment in the file as it ends (about every second) — becomes a segment of its own,
//!   truncated there, hashed and queued like any other ([`crate::fmp4::recover`]); so a crash
//!   loses at most the last second or so, not the whole open segment. A `.part` with no whole
//!   fragment or no `.open.json` (or a media file without metadata) is moved to `orphaned/`,
//!   never uploaded as if it were whole.
//! - Per camera, entries drain in the order they were recorded (segments, gaps and resume points
//!   alike), so the per-camera hash chain in storage follows time.
//! - The spool never grows beyond its ceiling: a new segment that does not fit is refused (the
//!   caller records a spool-overflow gap), and footage already spooled is kept until it has been
//!   stored — oldest unsent footage is never dropped to make room.
//! - Nothing spooled is deleted unless it was registered ([`Spool::complete`]); what can never
//!   be registered is moved with its media to `dead-letter/<site>/<camera>/`, with the reason in
//!   a `<name>.reason.txt` beside it ([`Spool::dead_letter`]).
//! - Entries survive restarts: [`Spool::open`] re-queues everything it finds. Metadata files are
//!   versioned (`{"format": 2, "record": ...}`, a [`Record`]); files of the first format (no
//!   `format` field) are read and drained; a file it cannot read, or of a format newer than it
//!   knows, is moved to `dead-letter/` with the reason, never deleted unread.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use crate::IngestError;
use crate::error::Refusal;
use crate::segment::{GapMeta, Record, ResumeMeta, SegmentMeta, UnixMicros};

/// The metadata file format this version writes.
pub const FORMAT: u32 = 2;

/// Folder (under the spool root) of entries that can never be registered.
pub const DEAD_LETTER_DIR: &str = "dead-letter";
/// Folder (under the spool root) of incomplete files from a crash.
pub const ORPHANED_DIR: &str = "orphaned";

#[derive(Serialize)]
struct FileOut<'a> {
    format: u32,
    record: &'a Record,
}

#[derive(Deserialize)]
struct FileIn {
    record: Record,
}

/// One queued entry.
#[derive(Debug, Clone)]
pub struct Entry {
    pub record: Record,
    /// The `.json` file.
    pub meta_path: PathBuf,
    /// The `.mp4` file, for segments.
    pub media_path: Option<PathBuf>,
    /// Bytes the entry holds on disk.
    pub bytes: u64,
    /// When this process queued it; `None` for an entry found on disk at start.
    pub queued_at: Option<std::time::Instant>,
}

impl Entry {
    fn key(&self) -> CameraKey {
        (
            self.record.site().to_string(),
            self.record.camera().to_string(),
        )
    }
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
    /// `<name>.open.json`: what the segment is, while it is written ([`OpenNote`]).
    open_path: PathBuf,
    reserved: u64,
}

/// What is known of a segment while it is written, beside its `.part` file: enough to register
/// what a crash leaves of it. Its `meta` has the segment's start (and `end` equal to it, no
/// size or digest yet).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpenNote {
    pub meta: SegmentMeta,
    /// The object key's prefix (the key includes the digest, known only at the end).
    pub object_prefix: String,
    /// Timescale of the media's timestamps.
    pub timescale: u32,
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

    /// Where entries that can never be registered are kept.
    pub fn dead_letter_root(&self) -> PathBuf {
        self.root.join(DEAD_LETTER_DIR)
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

    /// The latest time the camera's queued records reach (a segment's or gap's end, a resume
    /// point), if any are queued.
    pub fn queued_until(&self, site: &str, camera: &str) -> Option<i64> {
        let q = self.queues.lock().ok()?;
        q.get(&(site.to_string(), camera.to_string()))?
            .iter()
            .map(|e| match &e.record {
                Record::Segment(m) => m.end.0,
                Record::Gap(g) => g.end.0,
                Record::Resume(r) => r.at.0,
            })
            .max()
    }

    fn camera_dir(&self, site: &str, camera: &str) -> PathBuf {
        self.root.join(site).join(camera)
    }

    fn next_name(&self, start: UnixMicros) -> String {
        // Zero-padded so lexical order is time order; the counter breaks ties.
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        format!("{:020}-{n:08}", start.0)
    }

    /// Reserves room for a segment of about `estimate` bytes and creates its file. `None` means
    /// the spool is full: the caller must refuse the footage (and record a gap), not wait.
    pub fn begin_segment(
        &self,
        site: &str,
        camera: &str,
        start: UnixMicros,
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
        let name = self.next_name(start);
        Ok(Some(SpoolFile {
            path: dir.join(format!("{name}.mp4.part")),
            final_path: dir.join(format!("{name}.mp4")),
            meta_path: dir.join(format!("{name}.json")),
            open_path: dir.join(format!("{name}.open.json")),
            reserved,
        }))
    }

    /// Writes what `file` is (atomically), so that a crash while it is written leaves a
    /// recoverable segment rather than an orphan.
    pub fn note_open(&self, file: &SpoolFile, note: &OpenNote) -> Result<(), IngestError> {
        let tmp = file.open_path.with_extension("json.tmp");
        let body = serde_json::to_vec(&serde_json::json!({ "format": FORMAT, "open": note }))
            .map_err(|e| IngestError::Internal(e.to_string()))?;
        std::fs::write(&tmp, body).map_err(|e| IngestError::spool(&tmp, e))?;
        std::fs::rename(&tmp, &file.open_path).map_err(|e| IngestError::spool(&file.open_path, e))
    }

    /// Gives back a reservation whose file was abandoned (e.g. the writer failed); the partial
    /// file is removed.
    pub fn abandon(&self, file: SpoolFile) {
        let _ = std::fs::remove_file(&file.path);
        let _ = std::fs::remove_file(&file.open_path);
        self.used.fetch_sub(file.reserved, Ordering::AcqRel);
    }

    /// Completes a segment: the file is renamed into place, its metadata written, and the entry
    /// queued. `meta.size` must be the file's size.
    pub fn commit_segment(&self, file: SpoolFile, meta: SegmentMeta) -> Result<(), IngestError> {
        let size = meta.size;
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
        let record = Record::Segment(meta);
        if let Err(e) = write_json_atomic(&file.meta_path, &record) {
            // Without its metadata the file is not a spooled segment (a restart would not
            // know it): give it and its bytes back, so the account matches the disk.
            let _ = std::fs::remove_file(&file.final_path);
            self.used.fetch_sub(size, Ordering::AcqRel);
            return Err(e);
        }
        // Whole now: nothing to recover (a note left by a crash here is dropped at start).
        let _ = std::fs::remove_file(&file.open_path);
        self.enqueue(Entry {
            record,
            meta_path: file.meta_path,
            media_path: Some(file.final_path),
            bytes: size,
            queued_at: Some(std::time::Instant::now()),
        });
        Ok(())
    }

    /// Queues a gap (no media). Gaps are tiny and always accepted, even when the spool is full.
    pub fn push_gap(&self, meta: GapMeta) -> Result<(), IngestError> {
        self.push_record(Record::Gap(meta))
    }

    /// Queues a resume point (see [`ResumeMeta`]); tiny and always accepted.
    pub fn push_resume(&self, meta: ResumeMeta) -> Result<(), IngestError> {
        self.push_record(Record::Resume(meta))
    }

    fn push_record(&self, record: Record) -> Result<(), IngestError> {
        let dir = self.camera_dir(record.site(), record.camera());
        std::fs::create_dir_all(&dir).map_err(|e| IngestError::spool(&dir, e))?;
        let meta_path = dir.join(format!("{}.json", self.next_name(record.start())));
        write_json_atomic(&meta_path, &record)?;
        self.enqueue(Entry {
            record,
            meta_path,
            media_path: None,
            bytes: 0,
            queued_at: Some(std::time::Instant::now()),
        });
        Ok(())
    }

    fn enqueue(&self, entry: Entry) {
        if let Ok(mut q) = self.queues.lock() {
            q.entry(entry.key()).or_default().push_back(entry);
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
        self.dequeue(entry);
        Ok(())
    }

    /// Moves an entry that can never be registered (it must be its camera's head), media and
    /// metadata, to `dead-letter/<site>/<camera>/` with `<name>.reason.txt` beside them, and
    /// frees its space in the spool. Returns the folder it went to. On error the entry stays
    /// queued where it was (or partly moved; [`Spool::open`] finishes the move).
    pub fn dead_letter(
        &self,
        entry: &Entry,
        class: Refusal,
        reason: &str,
    ) -> Result<PathBuf, IngestError> {
        let dest = self.dead_letter_files(
            entry.record.site(),
            entry.record.camera(),
            &entry.meta_path,
            entry.media_path.as_deref(),
            class,
            reason,
        )?;
        self.dequeue(entry);
        Ok(dest)
    }

    /// Writes the reason, then moves the media, then the metadata (whose presence in the
    /// spool is what queues an entry).
    fn dead_letter_files(
        &self,
        site: &str,
        camera: &str,
        meta_path: &Path,
        media_path: Option<&Path>,
        class: Refusal,
        reason: &str,
    ) -> Result<PathBuf, IngestError> {
        let dir = self.dead_letter_root().join(site).join(camera);
        std::fs::create_dir_all(&dir).map_err(|e| IngestError::spool(&dir, e))?;
        let stem = meta_path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let note = format!(
            "class: {}\ntime: {}\nreason: {reason}\n",
            class.as_str(),
            UnixMicros::now()
        );
        let note_path = dir.join(format!("{stem}.reason.txt"));
        std::fs::write(&note_path, note).map_err(|e| IngestError::spool(&note_path, e))?;
        if let Some(m) = media_path
            && let Some(name) = m.file_name()
        {
            match std::fs::rename(m, dir.join(name)) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(IngestError::spool(m, e)),
            }
        }
        if let Some(name) = meta_path.file_name() {
            std::fs::rename(meta_path, dir.join(name))
                .map_err(|e| IngestError::spool(meta_path, e))?;
        }
        tracing::error!(site, camera, class = class.as_str(), reason, kept_in = %dir.display(),
            "spool entry can never be registered: moved to the dead-letter folder");
        Ok(dir)
    }

    fn dequeue(&self, entry: &Entry) {
        if let Ok(mut q) = self.queues.lock() {
            let key = entry.key();
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
    }

    /// Waits until something is queued (or a timeout elapses, so callers re-check backoffs).
    pub async fn wait(&self, timeout: std::time::Duration) {
        let _ = tokio::time::timeout(timeout, self.notify.notified()).await;
    }

    /// Scans the spool left by an earlier run: complete entries are queued in order, partial
    /// files moved to `orphaned/`, unreadable entries to `dead-letter/`.
    fn recover(&self) -> Result<(), IngestError> {
        let mut found: Vec<Entry> = Vec::new();
        let orphaned = self.root.join(ORPHANED_DIR);
        for site in read_dirs(&self.root)? {
            if site
                .file_name()
                .is_some_and(|n| n == ORPHANED_DIR || n == DEAD_LETTER_DIR)
            {
                continue;
            }
            for cam in read_dirs(&site)? {
                let mut files: Vec<PathBuf> = std::fs::read_dir(&cam)
                    .map_err(|e| IngestError::spool(&cam, e))?
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .collect();
                files.sort();
                let (site_name, cam_name) = (dir_name(&site), dir_name(&cam));
                for path in &files {
                    if !path.exists() {
                        // A media file already moved along with its metadata.
                        continue;
                    }
                    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
                    if let Some(base) = name.strip_suffix(".mp4.part") {
                        match recover_open(&cam, base) {
                            Ok(Some(entry)) => {
                                found.push(entry);
                                continue;
                            }
                            Ok(None) => {}
                            Err(why) => tracing::warn!(file = %path.display(), %why,
                                "the segment a crash interrupted could not be recovered"),
                        }
                    }
                    if name.ends_with(".open.json") {
                        // Its segment was completed (or recovered, or orphaned) already.
                        let _ = std::fs::remove_file(path);
                        continue;
                    }
                    let lone_media =
                        name.ends_with(".mp4") && !path.with_extension("json").exists();
                    if name.ends_with(".part") || name.ends_with(".tmp") || lone_media {
                        std::fs::create_dir_all(&orphaned)
                            .map_err(|e| IngestError::spool(&orphaned, e))?;
                        let dest = orphaned.join(format!("{site_name}-{cam_name}-{name}"));
                        tracing::warn!(file = %path.display(), moved_to = %dest.display(),
                            "incomplete segment from an earlier run kept aside, not uploaded");
                        std::fs::rename(path, &dest).map_err(|e| IngestError::spool(path, e))?;
                        continue;
                    }
                    if !name.ends_with(".json") {
                        continue;
                    }
                    let media = path.with_extension("mp4");
                    let record = match read_record(path) {
                        Ok(r) => r,
                        Err(why) => {
                            let media = media.is_file().then_some(media.as_path());
                            self.dead_letter_files(
                                &site_name,
                                &cam_name,
                                path,
                                media,
                                Refusal::CorruptSpool,
                                &why,
                            )?;
                            crate::metrics::dead_lettered(&site_name, Refusal::CorruptSpool);
                            continue;
                        }
                    };
                    let (media_path, bytes) = match &record {
                        Record::Segment(m) => {
                            let dl = self.dead_letter_root().join(&site_name).join(&cam_name);
                            let moved = media.file_name().map(|n| dl.join(n));
                            if !media.is_file() && moved.as_ref().is_some_and(|p| p.is_file()) {
                                // A dead-letter move interrupted after the media: finish it,
                                // keeping the reason already written.
                                if let Some(name) = path.file_name() {
                                    std::fs::rename(path, dl.join(name))
                                        .map_err(|e| IngestError::spool(path, e))?;
                                }
                                continue;
                            }
                            if !media.is_file() {
                                let why = "the segment's media file is missing from the spool";
                                self.dead_letter_files(
                                    &site_name,
                                    &cam_name,
                                    path,
                                    None,
                                    Refusal::CorruptSpool,
                                    why,
                                )?;
                                crate::metrics::dead_lettered(&site_name, Refusal::CorruptSpool);
                                continue;
                            }
                            (Some(media), m.size)
                        }
                        Record::Gap(_) | Record::Resume(_) => (None, 0),
                    };
                    found.push(Entry {
                        record,
                        meta_path: path.clone(),
                        media_path,
                        bytes,
                        queued_at: None,
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

/// The segment `<dir>/<base>.mp4.part` a crash interrupted, made whole up to its last whole
/// fragment: truncated there, renamed to `<base>.mp4` with its metadata in `<base>.json`, and
/// returned as an entry. `None` when there is nothing to recover (no `<base>.open.json`, or
/// not one whole fragment): the caller orphans the file.
fn recover_open(dir: &Path, base: &str) -> Result<Option<Entry>, String> {
    let part = dir.join(format!("{base}.mp4.part"));
    let note_path = dir.join(format!("{base}.open.json"));
    let Ok(text) = std::fs::read(&note_path) else {
        return Ok(None);
    };
    #[derive(Deserialize)]
    struct NoteFile {
        format: u32,
        open: OpenNote,
    }
    let note: NoteFile =
        serde_json::from_slice(&text).map_err(|e| format!("{}: {e}", note_path.display()))?;
    if note.format != FORMAT || note.open.timescale == 0 {
        return Err(format!(
            "{}: format {} not known",
            note_path.display(),
            note.format
        ));
    }
    let note = note.open;
    let bytes = std::fs::read(&part).map_err(|e| format!("{}: {e}", part.display()))?;
    let Some(whole) = crate::fmp4::recover(&bytes) else {
        return Ok(None);
    };
    if whole.samples == 0 {
        return Ok(None);
    }
    let duration_us =
        i64::try_from(u128::from(whole.duration) * 1_000_000 / u128::from(note.timescale))
            .map_err(|_| "duration out of range".to_string())?;
    let mut meta = note.meta;
    meta.end = UnixMicros(meta.start.0 + duration_us);
    meta.size = whole.size;
    meta.init_size = whole.init_size;
    meta.sha256 = whole.sha256;
    meta.object_key = kordon_objects::segment_key(
        &note.object_prefix,
        &meta.site,
        &meta.camera,
        meta.start.0,
        &whole.sha256,
    )
    .map_err(|e| e.to_string())?
    .to_string();
    {
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&part)
            .map_err(|e| format!("{}: {e}", part.display()))?;
        f.set_len(whole.size)
            .map_err(|e| format!("{}: {e}", part.display()))?;
        f.sync_all()
            .map_err(|e| format!("{}: {e}", part.display()))?;
    }
    let media = dir.join(format!("{base}.mp4"));
    std::fs::rename(&part, &media).map_err(|e| format!("{}: {e}", media.display()))?;
    let meta_path = dir.join(format!("{base}.json"));
    let record = Record::Segment(meta);
    write_json_atomic(&meta_path, &record).map_err(|e| e.to_string())?;
    let _ = std::fs::remove_file(&note_path);
    if let Record::Segment(m) = &record {
        tracing::warn!(
            site = %m.site, camera = %m.camera, start = %m.start, end = %m.end,
            lost_bytes = bytes.len() as u64 - whole.size, samples = whole.samples,
            "recovered the segment a crash interrupted, up to its last whole fragment"
        );
        crate::metrics::get()
            .segments_recovered
            .with_label_values(&[&m.site])
            .inc();
    }
    Ok(Some(Entry {
        record,
        meta_path,
        media_path: Some(media),
        bytes: whole.size,
        queued_at: None,
    }))
}

/// Reads a metadata file of any format this version knows; the error says why not.
fn read_record(path: &Path) -> Result<Record, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("unreadable spool metadata: {e}"))?;
    let value: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| format!("spool metadata is not JSON: {e}"))?;
    match value.get("format").map(serde_json::Value::as_u64) {
        None => v1::read(value),
        Some(Some(f)) if f == u64::from(FORMAT) => serde_json::from_value::<FileIn>(value)
            .map(|f| f.record)
            .map_err(|e| format!("spool metadata of format {FORMAT} does not parse: {e}")),
        Some(f) => Err(format!(
            "spool metadata of format {f:?}, which this version of ingest does not know (it \
             reads formats 1 and {FORMAT}); a newer ingest can drain it"
        )),
    }
}

/// The first spool format (no `format` field): strings for enums, hex for the hash. Read only,
/// so that a spool left by an older ingest still drains.
mod v1 {
    use serde::Deserialize;

    use crate::segment::{Codec, GapMeta, GapReason, Record, SegmentMeta, UnixMicros};

    #[derive(Deserialize)]
    #[serde(tag = "kind", rename_all = "snake_case")]
    enum Kind {
        Segment {
            size: u64,
            sha256: String,
            init_size: u64,
            codec: String,
            width: u32,
            height: u32,
            object_key: String,
        },
        Gap {
            reason: String,
            detail: String,
        },
    }

    #[derive(Deserialize)]
    struct Meta {
        site: String,
        camera: String,
        start_us: i64,
        end_us: i64,
        replica: String,
        #[serde(flatten)]
        kind: Kind,
    }

    pub(super) fn read(value: serde_json::Value) -> Result<Record, String> {
        let m: Meta = serde_json::from_value(value)
            .map_err(|e| format!("spool metadata of format 1 does not parse: {e}"))?;
        Ok(match m.kind {
            Kind::Segment {
                size,
                sha256,
                init_size,
                codec,
                width,
                height,
                object_key,
            } => {
                let mut digest = [0u8; 32];
                hex::decode_to_slice(&sha256, &mut digest)
                    .map_err(|_| format!("format 1: `sha256` is not 64 hex digits: {sha256:?}"))?;
                let codec = match codec.as_str() {
                    "h264" => Codec::H264,
                    "h265" => Codec::H265,
                    other => return Err(format!("format 1: unknown codec {other:?}")),
                };
                Record::Segment(SegmentMeta {
                    site: m.site,
                    camera: m.camera,
                    replica: m.replica,
                    start: UnixMicros(m.start_us),
                    end: UnixMicros(m.end_us),
                    size,
                    init_size,
                    sha256: digest,
                    codec,
                    width,
                    height,
                    object_key,
                })
            }
            Kind::Gap { reason, detail } => {
                let reason = match reason.as_str() {
                    "stream_lost" => GapReason::StreamLost,
                    "stream_error" => GapReason::StreamError,
                    "ingest_restart" => GapReason::IngestRestart,
                    "spool_overflow" => GapReason::SpoolOverflow,
                    other => return Err(format!("format 1: unknown gap reason {other:?}")),
                };
                Record::Gap(GapMeta {
                    site: m.site,
                    camera: m.camera,
                    replica: m.replica,
                    start: UnixMicros(m.start_us),
                    end: UnixMicros(m.end_us),
                    reason,
                    detail,
                })
            }
        })
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

fn write_json_atomic(path: &Path, record: &Record) -> Result<(), IngestError> {
    let tmp = path.with_extension("json.tmp");
    let body = serde_json::to_vec_pretty(&FileOut {
        format: FORMAT,
        record,
    })
    .map_err(|e| IngestError::Internal(e.to_string()))?;
    if let Err(e) = std::fs::write(&tmp, body) {
        let _ = std::fs::remove_file(&tmp);
        return Err(IngestError::spool(&tmp, e));
    }
    std::fs::rename(&tmp, path).map_err(|e| IngestError::spool(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::segment::{Codec, GapReason};

    fn seg_meta(start: i64, size: u64) -> SegmentMeta {
        SegmentMeta {
            site: "burgas".into(),
            camera: "pier-2".into(),
            replica: "ingest-0".into(),
            start: UnixMicros(start),
            end: UnixMicros(start + 6_000_000),
            size,
            init_size: 1,
            sha256: [0; 32],
            codec: Codec::H264,
            width: 1920,
            height: 1080,
            object_key: format!("k/{start}"),
        }
    }

    fn gap_meta(start: i64) -> GapMeta {
        GapMeta {
            site: "burgas".into(),
            camera: "pier-2".into(),
            replica: "ingest-0".into(),
            start: UnixMicros(start),
            end: UnixMicros(start + 1),
            reason: GapReason::StreamLost,
            detail: "x".into(),
        }
    }

    fn write_segment(spool: &Spool, start: i64, size: u64) -> bool {
        match spool
            .begin_segment("burgas", "pier-2", UnixMicros(start), size)
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

    fn drain_starts(spool: &Spool) -> Vec<i64> {
        let mut order = Vec::new();
        while let Some(h) = spool.heads().into_iter().next() {
            order.push(h.record.start().0);
            spool.complete(&h).unwrap();
        }
        order
    }

    #[test]
    fn entries_drain_in_order_and_survive_restart() {
        let dir = tempfile::tempdir().unwrap();
        {
            let spool = Spool::open(dir.path(), 1 << 30).unwrap();
            assert!(write_segment(&spool, 1_000, 10));
            spool.push_gap(gap_meta(2_000)).unwrap();
            assert!(write_segment(&spool, 3_000, 10));
            // A crash mid-write leaves a .part file.
            let f = spool
                .begin_segment("burgas", "pier-2", UnixMicros(4_000), 10)
                .unwrap()
                .unwrap();
            std::fs::write(&f.path, b"partial").unwrap();
            assert_eq!(spool.pending(), 3);
        }
        let spool = Spool::open(dir.path(), 1 << 30).unwrap();
        assert_eq!(spool.pending(), 3);
        assert_eq!(spool.used_bytes(), 20);
        let head = spool.heads().pop().unwrap();
        assert_eq!(
            head.record,
            Record::Segment(seg_meta(1_000, 10)),
            "read back unchanged"
        );
        assert_eq!(drain_starts(&spool), vec![1_000, 2_000, 3_000]);
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
        assert_eq!(head.record.start().0, 1, "oldest kept");
        spool.complete(&head).unwrap();
        assert!(write_segment(&spool, 4, 10), "room again after draining");
    }

    #[test]
    fn a_first_format_spool_still_drains_with_the_same_facts() {
        let dir = tempfile::tempdir().unwrap();
        let cam = dir.path().join("burgas").join("pier-2");
        std::fs::create_dir_all(&cam).unwrap();
        // Written by the first format: strings for enums, hex for the hash, no `format`.
        let hash = std::array::from_fn::<u8, 32, _>(|i| i as u8);
        std::fs::write(
            cam.join("00000000000000001000-00000000.json"),
            serde_json::json!({
                "site": "burgas", "camera": "pier-2", "start_us": 1000, "end_us": 6001000,
                "replica": "ingest-0", "kind": "segment", "size": 10,
                "sha256": hex::encode(hash), "init_size": 1, "codec": "h265",
                "width": 1920, "height": 1080, "object_key": "k/1000"
            })
            .to_string(),
        )
        .unwrap();
        std::fs::write(cam.join("00000000000000001000-00000000.mp4"), [7u8; 10]).unwrap();
        std::fs::write(
            cam.join("00000000000000002000-00000001.json"),
            serde_json::json!({
                "site": "burgas", "camera": "pier-2", "start_us": 2000, "end_us": 2001,
                "replica": "ingest-0", "kind": "gap", "reason": "spool_overflow", "detail": "x"
            })
            .to_string(),
        )
        .unwrap();
        let spool = Spool::open(dir.path(), 1 << 30).unwrap();
        assert_eq!(spool.pending(), 2);
        assert_eq!(spool.used_bytes(), 10);
        let heads = spool.heads();
        let Record::Segment(m) = &heads[0].record else {
            panic!("{:?}", heads[0].record)
        };
        assert_eq!(m.sha256, hash);
        assert_eq!(m.codec, Codec::H265);
        assert_eq!((m.start, m.end), (UnixMicros(1000), UnixMicros(6_001_000)));
        spool.complete(&heads[0]).unwrap();
        let Record::Gap(g) = &spool.heads()[0].record else {
            panic!()
        };
        assert_eq!(g.reason, GapReason::SpoolOverflow);
    }

    #[test]
    fn unreadable_or_newer_files_are_kept_in_dead_letter_never_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let cam = dir.path().join("burgas").join("pier-2");
        std::fs::create_dir_all(&cam).unwrap();
        let newer = r#"{"format": 9, "record": {"kind": "hologram"}}"#;
        std::fs::write(cam.join("00000000000000001000-00000000.json"), newer).unwrap();
        std::fs::write(cam.join("00000000000000001000-00000000.mp4"), [7u8; 10]).unwrap();
        std::fs::write(cam.join("00000000000000002000-00000001.json"), "{not json").unwrap();
        let spool = Spool::open(dir.path(), 1 << 30).unwrap();
        assert_eq!(spool.pending(), 0);
        assert_eq!(spool.used_bytes(), 0);
        let dl = spool.dead_letter_root().join("burgas").join("pier-2");
        assert_eq!(
            std::fs::read_to_string(dl.join("00000000000000001000-00000000.json")).unwrap(),
            newer
        );
        assert_eq!(
            std::fs::read(dl.join("00000000000000001000-00000000.mp4")).unwrap(),
            [7u8; 10]
        );
        let why =
            std::fs::read_to_string(dl.join("00000000000000001000-00000000.reason.txt")).unwrap();
        assert!(
            why.contains("corrupt_spool") && why.contains("format"),
            "{why}"
        );
        assert!(dl.join("00000000000000002000-00000001.json").is_file());
        // A second start leaves them there.
        drop(spool);
        let spool = Spool::open(dir.path(), 1 << 30).unwrap();
        assert_eq!(spool.pending(), 0);
        assert!(dl.join("00000000000000001000-00000000.mp4").is_file());
    }

    #[test]
    fn an_interrupted_dead_letter_move_is_finished_with_its_reason() {
        let dir = tempfile::tempdir().unwrap();
        let (stem, media) = {
            let spool = Spool::open(dir.path(), 1 << 30).unwrap();
            assert!(write_segment(&spool, 1_000, 10));
            let head = spool.heads().pop().unwrap();
            let stem = head.meta_path.file_stem().unwrap().to_owned();
            (stem, head.media_path.unwrap())
        };
        // The reason and the media were moved, then the process died.
        let dl = dir
            .path()
            .join(DEAD_LETTER_DIR)
            .join("burgas")
            .join("pier-2");
        std::fs::create_dir_all(&dl).unwrap();
        let note = dl.join(format!("{}.reason.txt", stem.to_str().unwrap()));
        std::fs::write(&note, "class: conflict\n").unwrap();
        std::fs::rename(&media, dl.join(media.file_name().unwrap())).unwrap();
        let spool = Spool::open(dir.path(), 1 << 30).unwrap();
        assert_eq!(spool.pending(), 0);
        assert!(
            dl.join(format!("{}.json", stem.to_str().unwrap()))
                .is_file()
        );
        assert_eq!(std::fs::read_to_string(&note).unwrap(), "class: conflict\n");
    }

    #[test]
    fn a_dead_lettered_entry_keeps_its_media_and_the_queue_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path(), 1 << 30).unwrap();
        assert!(write_segment(&spool, 1_000, 10));
        assert!(write_segment(&spool, 2_000, 10));
        let head = spool.heads().pop().unwrap();
        let dl = spool
            .dead_letter(&head, Refusal::InvalidArgument, "range: end before start")
            .unwrap();
        assert_eq!(spool.pending(), 1);
        assert_eq!(spool.used_bytes(), 10);
        assert_eq!(spool.heads()[0].record.start().0, 2_000);
        let stem = head.meta_path.file_stem().unwrap().to_str().unwrap();
        assert_eq!(
            std::fs::read(dl.join(format!("{stem}.mp4"))).unwrap(),
            [7u8; 10]
        );
        assert!(
            std::fs::read_to_string(dl.join(format!("{stem}.reason.txt")))
                .unwrap()
                .contains("invalid_argument")
        );
        // Not re-queued at the next start.
        drop(spool);
        let spool = Spool::open(dir.path(), 1 << 30).unwrap();
        assert_eq!(drain_starts(&spool), vec![2_000]);
    }
}
