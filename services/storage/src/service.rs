//! [`Storage`]: the domain operations of the service, over the index and the object store.
//! Knows nothing of gRPC or HTTP; [`crate::grpc`] and [`crate::http`] translate.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ed25519_dalek::SigningKey;
use futures::{StreamExt, TryStreamExt};
use kordon_objects::time::{MICROS, now_micros, rfc3339_micros};
use kordon_objects::{ObjectPath, ObjectStore, ObjectStoreExt, validate_name};
use object_store::{GetOptions, GetRange, GetResult};

use crate::StorageError;
use crate::audit::{AccessEntry, Checkpoint, NewAccessEntry};
use crate::chain::{self, Finding, FindingKind};
use crate::config::{self, StorageConfig};
use crate::index::{
    ChainHead, Index, MAX_SEGMENT_US, NewGap, NewSegment, ObjectUser, Registered, SegmentRecord,
};
use crate::metrics::StorageMetrics;
use crate::playback::{self, Grant, PlaybackQuery, PlaybackSigner};
use crate::recordings::{self, GapSpan, SegmentSpan, TimelineRange};

/// Records loaded per query while verifying a chain.
const VERIFY_BATCH: u64 = 10_000;
/// Objects checked concurrently while verifying.
const VERIFY_PARALLEL: usize = 8;
/// Most segments one playlist lists (a week of 6 s segments is ~100,000).
const MAX_PLAYLIST_SEGMENTS: u32 = 200_000;

/// Settings of a [`Storage`] that do not come from its parts.
#[derive(Debug, Clone)]
pub struct StorageOptions {
    /// Base of playback URLs, without a trailing `/`.
    pub base_url: String,
    pub url_lifetime: Duration,
    pub merge_tolerance: Duration,
    /// See [`StorageConfig::continuous_timestamps`].
    pub continuous_timestamps: bool,
    pub default_retention: Duration,
    pub retention_interval: Duration,
    /// See [`StorageConfig::object_prefix`].
    pub object_prefix: String,
    /// See [`StorageConfig::partners`].
    pub partners: kordon_runtime::partner::PartnersConfig,
}

impl Default for StorageOptions {
    fn default() -> Self {
        let c = StorageConfig::default();
        Self {
            base_url: c.base_url(),
            url_lifetime: c.url_lifetime,
            merge_tolerance: c.merge_tolerance,
            continuous_timestamps: c.continuous_timestamps,
            default_retention: c.default_retention,
            retention_interval: c.retention_interval,
            object_prefix: c.object_prefix,
            partners: c.partners,
        }
    }
}

/// The storage service's state: cheap to clone, shared by the gRPC and HTTP sides.
#[derive(Clone)]
pub struct Storage {
    inner: Arc<Inner>,
}

struct Inner {
    index: Index,
    objects: Arc<dyn ObjectStore>,
    playback: PlaybackSigner,
    signing_key: SigningKey,
    options: StorageOptions,
    agreement_accepted: std::sync::RwLock<Option<AgreementCheck>>,
    viewer_copies: std::sync::RwLock<Option<Arc<dyn crate::viewer::ViewerCopies>>>,
}

/// Whether the agreement with a partner site is currently accepted by both sides (see
/// [`Storage::set_agreement_check`]).
pub type AgreementCheck = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// A chain verification's result.
#[derive(Debug, Clone, Default)]
pub struct ChainReport {
    pub site: String,
    pub camera: String,
    pub from_us: i64,
    pub to_us: i64,
    /// Sequences checked (0..0 when the range holds no record).
    pub first_sequence: u64,
    pub last_sequence: u64,
    pub segments_checked: u64,
    pub gaps_checked: u64,
    pub retention_deleted: u64,
    pub objects_verified: bool,
    pub findings: Vec<Finding>,
    /// record_hash of `last_sequence` as stored.
    pub head_hash: Option<[u8; 32]>,
    pub verified_at_us: i64,
}

impl ChainReport {
    pub fn intact(&self) -> bool {
        self.findings.is_empty()
    }
}

/// Progress of a long operation: (done, total) units.
pub type Progress<'a> = &'a (dyn Fn(u64, u64, &str) + Send + Sync);

impl Storage {
    /// Opens the service's state: connects to the index and runs its migrations, builds the
    /// object store, and loads (or creates) its keys. Nothing else starts.
    ///
    /// `data_dir` holds the embedded defaults (SQLite index, local media, signing key); it is
    /// created if missing.
    pub async fn open(config: &StorageConfig, data_dir: &Path) -> Result<Storage, StorageError> {
        config.validate()?;
        std::fs::create_dir_all(data_dir).map_err(|source| StorageError::Io {
            path: data_dir.to_path_buf(),
            source,
        })?;
        let index = match &config.database_url {
            Some(url) => Index::connect(url, config.database_max_connections).await?,
            None => {
                let opts = sqlx::sqlite::SqliteConnectOptions::new()
                    .filename(data_dir.join(config::DEFAULT_SQLITE_FILE))
                    .create_if_missing(true)
                    .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
                    .synchronous(sqlx::sqlite::SqliteSynchronous::Full)
                    .busy_timeout(Duration::from_secs(30));
                Index::connect_sqlite(opts, config.database_max_connections).await?
            }
        };
        index.migrate().await?;
        let interrupted = index.fail_interrupted_bundles().await?;
        if interrupted > 0 {
            tracing::warn!(
                bundles = interrupted,
                "evidence bundles left building by the previous run were marked failed; \
                 exporting again with the same request id rebuilds them"
            );
        }
        let objects_cfg = config.objects_or_default(data_dir);
        let objects = kordon_objects::build(&objects_cfg)?;
        let playback = match &config.playback_key_file {
            Some(p) => PlaybackSigner::new(crate::keys::load_playback_key(p, "playback_key_file")?),
            None => PlaybackSigner::random(),
        };
        let key_path = config
            .signing_key_file
            .clone()
            .unwrap_or_else(|| data_dir.join(config::DEFAULT_SIGNING_KEY_FILE));
        let signing_key = crate::keys::load_or_create_signing_key(&key_path, "signing_key_file")?;
        tracing::info!(
            index = index.backend(),
            objects = %objects_cfg.describe(),
            playback = %config.base_url(),
            "storage opened"
        );
        let storage = Storage::from_parts(
            index,
            objects,
            playback,
            signing_key,
            StorageOptions {
                base_url: config.base_url(),
                url_lifetime: config.url_lifetime,
                merge_tolerance: config.merge_tolerance,
                continuous_timestamps: config.continuous_timestamps,
                default_retention: config.default_retention,
                retention_interval: config.retention_interval,
                object_prefix: config.object_prefix.clone(),
                partners: config.partners.clone(),
            },
        );
        if let Some(url) = &config.transcode.url {
            // Lazy: transcode may start after storage; exports with rendering wait for it.
            let maker = crate::transcode::TranscodeViewerCopies::connect(&config.transcode, url)?;
            storage.set_viewer_copies(Arc::new(maker));
            tracing::info!(transcode = %url, "viewer copies for evidence bundles: transcode");
        }
        Ok(storage)
    }

    /// Assembles a storage from ready parts (tests, embedding).
    pub fn from_parts(
        index: Index,
        objects: Arc<dyn ObjectStore>,
        playback: PlaybackSigner,
        signing_key: SigningKey,
        options: StorageOptions,
    ) -> Storage {
        Storage {
            inner: Arc::new(Inner {
                index,
                objects,
                playback,
                signing_key,
                options,
                agreement_accepted: std::sync::RwLock::new(None),
                viewer_copies: std::sync::RwLock::new(None),
            }),
        }
    }

    pub(crate) fn viewer_copies_slot(
        &self,
    ) -> &std::sync::RwLock<Option<Arc<dyn crate::viewer::ViewerCopies>>> {
        &self.inner.viewer_copies
    }

    /// Installs the check that the agreement with a partner is accepted (bilateral
    /// acceptance, known to alerting's agreement exchange). Without one, the local
    /// `partners:` declaration is taken as accepted.
    pub fn set_agreement_check(&self, check: AgreementCheck) {
        if let Ok(mut slot) = self.inner.agreement_accepted.write() {
            *slot = Some(check);
        }
    }

    /// Whether footage may flow with `partner_site` now (see [`Storage::set_agreement_check`]).
    pub fn agreement_accepted(&self, partner_site: &str) -> bool {
        match self.inner.agreement_accepted.read() {
            Ok(slot) => slot.as_ref().is_none_or(|f| f(partner_site)),
            Err(_) => false,
        }
    }

    /// The partner installations this site has agreements with.
    pub fn partners(&self) -> &kordon_runtime::partner::PartnersConfig {
        &self.inner.options.partners
    }

    pub fn index(&self) -> &Index {
        &self.inner.index
    }

    pub fn objects(&self) -> &Arc<dyn ObjectStore> {
        &self.inner.objects
    }

    pub fn options(&self) -> &StorageOptions {
        &self.inner.options
    }

    /// The public key that signs checkpoints and evidence manifests.
    pub fn signing_public_key(&self) -> [u8; 32] {
        self.inner.signing_key.verifying_key().to_bytes()
    }

    pub(crate) fn signing_key(&self) -> &SigningKey {
        &self.inner.signing_key
    }

    pub fn playback_signer(&self) -> &PlaybackSigner {
        &self.inner.playback
    }

    /// Whether `key` lies in the folder of `site`/`camera` (see
    /// [`kordon_objects::camera_folder`]): the only objects a record of that camera may name,
    /// and the only ones retention may delete for it.
    pub fn owns_key(&self, site: &str, camera: &str, key: &str) -> bool {
        kordon_objects::in_camera_folder(&self.inner.options.object_prefix, site, camera, key)
    }

    /// Checks a registration's object: it lies in the record's own camera folder (checked
    /// first, so a refusal says nothing about any other key), no other record names it
    /// (`is_self` recognises the record being registered, for idempotent retries), and it is
    /// in the bucket with `size` bytes.
    pub(crate) async fn check_registered_object(
        &self,
        site: &str,
        camera: &str,
        key: &str,
        size: u64,
        is_self: impl Fn(&ObjectUser) -> bool,
    ) -> Result<(), StorageError> {
        let path = object_key(key)?;
        if !self.owns_key(site, camera, key) {
            return Err(StorageError::invalid(format!(
                "object_key: must lie under `{}` (the record's own site and camera)",
                kordon_objects::camera_folder(&self.inner.options.object_prefix, site, camera)
            )));
        }
        if let Some(other) = self
            .inner
            .index
            .object_users(key)
            .await?
            .iter()
            .find(|u| !is_self(u))
        {
            let what = match other {
                ObjectUser::Segment { .. } => "a segment",
                ObjectUser::Rendition { .. } => "a rendition",
                ObjectUser::Snapshot { .. } => "a snapshot",
            };
            return Err(StorageError::AlreadyExists(format!(
                "object `{key}` already belongs to {what}: every record needs its own object"
            )));
        }
        match self.inner.objects.head(&path).await {
            Ok(meta) if meta.size == size => Ok(()),
            Ok(meta) => Err(StorageError::FailedPrecondition(format!(
                "object `{key}` has {} bytes, the request says {size}",
                meta.size
            ))),
            Err(object_store::Error::NotFound { .. }) => Err(StorageError::FailedPrecondition(
                format!("object `{key}` is not in the bucket: write it before registering"),
            )),
            Err(e) => Err(e.into()),
        }
    }

    /// Registers a segment after checking its object is in the bucket with the stated size.
    pub async fn register_segment(
        &self,
        s: &NewSegment,
    ) -> Result<Registered<SegmentRecord>, StorageError> {
        check_camera(&s.site, &s.camera)?;
        check_range(s.start_us, s.end_us)?;
        if s.end_us - s.start_us > MAX_SEGMENT_US {
            return Err(StorageError::invalid(
                "range: a segment may be at most 10 minutes long",
            ));
        }
        if s.size_bytes == 0 {
            return Err(StorageError::invalid("size_bytes: must be more than 0"));
        }
        if s.init_size == 0 || s.init_size >= s.size_bytes {
            return Err(StorageError::invalid(
                "init_size: must be more than 0 and less than size_bytes (the offset of the \
                 first moof box)",
            ));
        }
        self.check_registered_object(&s.site, &s.camera, &s.object_key, s.size_bytes, |u| {
            matches!(u, ObjectUser::Segment { site, camera, sha256 }
                if *site == s.site && *camera == s.camera && sha256[..] == s.sha256[..])
        })
        .await?;
        let r = self.inner.index.register_segment(s).await?;
        StorageMetrics::get()
            .registrations
            .with_label_values(&["segment", outcome(r.created)])
            .inc();
        if r.created {
            // One per segment of every camera: the metrics count them; a line each would scroll.
            tracing::debug!(site = %s.site, camera = %s.camera, segment = r.record.sequence,
                            "segment registered");
        }
        Ok(r)
    }

    pub async fn register_gap(
        &self,
        g: &NewGap,
    ) -> Result<Registered<crate::index::GapRecord>, StorageError> {
        check_camera(&g.site, &g.camera)?;
        check_range(g.start_us, g.end_us)?;
        if g.detail.len() > 1024 {
            return Err(StorageError::invalid("detail: at most 1024 bytes"));
        }
        let r = self.inner.index.register_gap(g).await?;
        StorageMetrics::get()
            .registrations
            .with_label_values(&["gap", outcome(r.created)])
            .inc();
        Ok(r)
    }

    pub async fn chain_head(
        &self,
        site: &str,
        camera: &str,
    ) -> Result<Option<ChainHead>, StorageError> {
        check_camera(site, camera)?;
        self.inner.index.chain_head(site, camera).await
    }

    /// For each of `times_us`, the sequence of the live segment holding it (0 for none), in
    /// the given order, and the camera's recorded-until time.
    pub async fn locate_segments(
        &self,
        site: &str,
        camera: &str,
        times_us: &[i64],
    ) -> Result<(Vec<u64>, Option<i64>), StorageError> {
        check_camera(site, camera)?;
        let mut order: Vec<usize> = (0..times_us.len()).collect();
        order.sort_by_key(|&i| times_us[i]);
        let sorted: Vec<i64> = order.iter().map(|&i| times_us[i]).collect();
        let found = self.inner.index.segments_at(site, camera, &sorted).await?;
        let mut out = vec![0; times_us.len()];
        for (k, &i) in order.iter().enumerate() {
            out[i] = found[k];
        }
        let head = self.inner.index.chain_head(site, camera).await?;
        Ok((out, head.map(|h| h.recorded_until_us)))
    }

    /// Appends an access-log entry; returns once it is committed.
    pub async fn record_access(&self, e: &NewAccessEntry) -> Result<AccessEntry, StorageError> {
        let entry = self.inner.index.append_access(e).await?;
        StorageMetrics::get()
            .access_entries
            .with_label_values(&[action_label(e.action)])
            .inc();
        Ok(entry)
    }

    /// A signed checkpoint of `site`'s access log at `sequence`/`hash`.
    pub fn checkpoint(&self, site: &str, sequence: u64, hash: [u8; 32]) -> Checkpoint {
        Checkpoint::sign(&self.inner.signing_key, site, sequence, hash)
    }

    /// A camera's timeline over `[from_us, to_us)`; see [`recordings`].
    pub async fn timeline(
        &self,
        site: &str,
        camera: &str,
        from_us: i64,
        to_us: i64,
        tolerance: Duration,
    ) -> Result<Vec<TimelineRange>, StorageError> {
        let idx = &self.inner.index;
        let Some(head) = idx.chain_head(site, camera).await? else {
            return Ok(Vec::new());
        };
        let mut segments = Vec::new();
        let mut after = None;
        loop {
            let page = idx
                .list_segments(site, camera, from_us, to_us, after, 50_000)
                .await?;
            let full = page.len() == 50_000;
            after = page.last().map(|s| (s.start_us, s.sequence));
            segments.extend(page.into_iter().map(|s| SegmentSpan {
                start_us: s.start_us,
                end_us: s.end_us,
                size_bytes: s.size_bytes,
            }));
            if !full {
                break;
            }
        }
        let gaps: Vec<GapSpan> = idx
            .list_gaps(site, camera, from_us, to_us)
            .await?
            .into_iter()
            .map(|g| GapSpan {
                start_us: g.start_us,
                end_us: g.end_us,
                reason: g.reason,
                detail: g.detail,
            })
            .collect();
        let recorded_before = idx.recorded_before(site, camera, from_us).await?;
        Ok(recordings::timeline(
            &segments,
            &gaps,
            recordings::Window {
                from_us,
                to_us,
                tolerance_us: duration_us(tolerance),
                recorded_before,
                camera_until_us: head.recorded_until_us,
            },
        ))
    }

    /// A signed URL of one segment's media (the whole object), and its expiry.
    pub fn media_url(&self, s: &SegmentRecord, ttl: Duration) -> (String, i64) {
        let expires_s = url_expiry(ttl);
        let grant = Grant {
            site: s.site.clone(),
            camera: s.camera.clone(),
            from_us: s.start_us,
            to_us: s.end_us,
            expires_s,
            profile: String::new(),
        };
        let url = format!(
            "{}/v1/hls/{}/{}/{}/{}.mp4",
            self.inner.options.base_url,
            s.site,
            s.camera,
            self.inner.playback.path_grant(&grant),
            s.sequence
        );
        (url, expires_s)
    }

    /// A signed HLS URL of a camera's original segments over a range (`to_us` =
    /// [`playback::LIVE`] for live), and its expiry in Unix seconds.
    pub fn playback_url(
        &self,
        site: &str,
        camera: &str,
        from_us: i64,
        to_us: i64,
        ttl: Duration,
    ) -> (String, i64) {
        self.rendition_playback_url(site, camera, "", from_us, to_us, ttl)
    }

    /// A signed HLS URL of a camera's renditions of `profile` over a range (an empty profile:
    /// the originals), and its expiry in Unix seconds. The URL serves that profile only.
    pub fn rendition_playback_url(
        &self,
        site: &str,
        camera: &str,
        profile: &str,
        from_us: i64,
        to_us: i64,
        ttl: Duration,
    ) -> (String, i64) {
        let expires_s = url_expiry(ttl);
        let grant = Grant {
            site: site.to_string(),
            camera: camera.to_string(),
            from_us,
            to_us,
            expires_s,
            profile: profile.to_string(),
        };
        let url = format!(
            "{}/v1/hls/{site}/{camera}.m3u8?{}",
            self.inner.options.base_url,
            self.inner.playback.query(&grant)
        );
        (url, expires_s)
    }

    /// Start of the first and end of the last segment overlapping the range.
    pub async fn covered(
        &self,
        site: &str,
        camera: &str,
        from_us: i64,
        to_us: i64,
    ) -> Result<Option<(i64, i64)>, StorageError> {
        let idx = &self.inner.index;
        let first = idx
            .list_segments(site, camera, from_us, to_us, None, 1)
            .await?;
        let Some(first) = first.first() else {
            return Ok(None);
        };
        let mut end = first.end_us;
        let mut after = Some((first.start_us, first.sequence));
        loop {
            let page = idx
                .list_segments(site, camera, from_us, to_us, after, 50_000)
                .await?;
            let Some(last) = page.last() else { break };
            end = page.iter().map(|s| s.end_us).fold(end, i64::max);
            after = Some((last.start_us, last.sequence));
            if page.len() < 50_000 {
                break;
            }
        }
        Ok(Some((first.start_us, end)))
    }

    /// The grant of a playback URL's query, if its token is genuine and unexpired.
    pub fn check_playback(
        &self,
        site: &str,
        camera: &str,
        q: &PlaybackQuery,
    ) -> Result<Grant, StorageError> {
        self.inner
            .playback
            .check(site, camera, q, now_micros() / MICROS)
    }

    /// The renditions of `profile` that play for a camera over `[from_us, to_us)`: one per
    /// source segment that has one, in the source segments' order, each marked
    /// [`playback::PlaylistSegment::discontinuity`] when a source segment without a playable
    /// rendition lies before it (a hole, like a gap). A rendition stored before init sizes
    /// were recorded (init size 0) has no usable `EXT-X-MAP`: it is left out (a hole) and
    /// logged, rather than served broken.
    pub async fn rendition_playlist_segments(
        &self,
        site: &str,
        camera: &str,
        profile: &str,
        from_us: i64,
        to_us: i64,
    ) -> Result<Vec<playback::PlaylistSegment>, StorageError> {
        let idx = &self.inner.index;
        let sources = idx
            .playlist_segments(site, camera, from_us, to_us, MAX_PLAYLIST_SEGMENTS)
            .await?;
        let renditions: std::collections::HashMap<u64, playback::PlaylistSegment> = idx
            .rendition_playlist_segments(
                site,
                camera,
                profile,
                from_us,
                to_us,
                MAX_PLAYLIST_SEGMENTS,
            )
            .await?
            .into_iter()
            .map(|r| (r.sequence, r))
            .collect();
        let mut out = Vec::with_capacity(renditions.len());
        let mut hole = false;
        let mut without_init: Vec<u64> = Vec::new();
        for source in &sources {
            match renditions.get(&source.sequence) {
                Some(r) if r.init_size > 0 && r.init_size < r.size_bytes => {
                    out.push(playback::PlaylistSegment {
                        discontinuity: hole,
                        ..*r
                    });
                    hole = false;
                }
                Some(r) => {
                    without_init.push(r.sequence);
                    hole = true;
                }
                None => hole = true,
            }
        }
        if let Some(first) = without_init.first() {
            tracing::warn!(
                site,
                camera,
                profile,
                renditions = without_init.len(),
                first_segment = first,
                "renditions registered before init sizes were recorded are left out of the \
                 playlist (no EXT-X-MAP); registering them again with init_size adds it"
            );
        }
        Ok(out)
    }

    /// The HLS playlist a playback token grants: of the original segments, or of the
    /// renditions of the grant's profile (see [`Storage::rendition_playlist_segments`]).
    pub async fn playlist(
        &self,
        site: &str,
        camera: &str,
        q: &PlaybackQuery,
    ) -> Result<String, StorageError> {
        let started = std::time::Instant::now();
        let grant = self
            .inner
            .playback
            .check(site, camera, q, now_micros() / MICROS)?;
        let live = grant.to_us == playback::LIVE;
        let items = if grant.profile.is_empty() {
            self.inner
                .index
                .playlist_segments(
                    site,
                    camera,
                    grant.from_us,
                    grant.to_us,
                    MAX_PLAYLIST_SEGMENTS,
                )
                .await?
        } else {
            self.rendition_playlist_segments(
                site,
                camera,
                &grant.profile,
                grant.from_us,
                grant.to_us,
            )
            .await?
        };
        if items.len() as u32 >= MAX_PLAYLIST_SEGMENTS {
            tracing::warn!(
                site,
                camera,
                "playlist truncated at {MAX_PLAYLIST_SEGMENTS} segments"
            );
        }
        let text = playback::render_playlist(
            camera,
            &items,
            &self.inner.playback.path_grant(&grant),
            duration_us(self.inner.options.merge_tolerance),
            live,
            self.inner.options.continuous_timestamps,
        );
        StorageMetrics::get()
            .playlist_seconds
            .observe(started.elapsed().as_secs_f64());
        Ok(text)
    }

    /// The object a playback grant serves as media `sequence` of its camera, and its size as
    /// registered (verified then): the original segment, or for a rendition grant the
    /// rendition of the grant's profile made from that segment. Only live records overlapping
    /// the grant's range are served.
    pub async fn media_object(
        &self,
        grant: &Grant,
        sequence: u64,
    ) -> Result<(ObjectPath, u64), StorageError> {
        let idx = &self.inner.index;
        let in_grant =
            |start_us: i64, end_us: i64| start_us < grant.to_us && end_us > grant.from_us;
        let found = if grant.profile.is_empty() {
            idx.segment(&grant.site, &grant.camera, sequence)
                .await?
                .filter(|s| s.deleted_at_us.is_none() && in_grant(s.start_us, s.end_us))
                .map(|s| (s.object_key, s.size_bytes))
        } else {
            idx.rendition(&grant.site, &grant.camera, sequence, &grant.profile)
                .await?
                .filter(|r| in_grant(r.new.start_us, r.new.end_us))
                .map(|r| (r.new.object_key, r.new.size_bytes))
        };
        let (key, size) =
            found.ok_or_else(|| StorageError::NotFound(format!("no segment {sequence}")))?;
        Ok((object_key(&key)?, size))
    }

    /// The bytes of a media object (see [`Storage::media_object`]) in `range` (`None`: all).
    pub async fn media(
        &self,
        key: &ObjectPath,
        range: Option<std::ops::Range<u64>>,
    ) -> Result<GetResult, StorageError> {
        let opts = GetOptions {
            range: range.map(GetRange::Bounded),
            ..Default::default()
        };
        Ok(self.inner.objects.get_opts(key, opts).await?)
    }

    /// Verifies a camera's chain over a time range; see [`chain`]. The window is the records
    /// overlapping the range plus one record on each side (so a record deleted at an edge is
    /// found), and the chain head when the range reaches the camera's latest record.
    /// With `verify_objects` every object is re-read and re-hashed; otherwise objects are
    /// only checked to exist with their size.
    pub async fn verify_chain(
        &self,
        site: &str,
        camera: &str,
        from_us: i64,
        to_us: i64,
        verify_objects: bool,
        progress: Progress<'_>,
    ) -> Result<ChainReport, StorageError> {
        check_camera(site, camera)?;
        let idx = &self.inner.index;
        let mut report = ChainReport {
            site: site.to_string(),
            camera: camera.to_string(),
            from_us,
            to_us,
            objects_verified: verify_objects,
            ..Default::default()
        };
        let head = idx.chain_head(site, camera).await?;
        let span = idx.sequence_span(site, camera, from_us, to_us).await?;
        let (Some(head), Some((lo, hi))) = (head, span) else {
            report.verified_at_us = now_micros();
            return Ok(report);
        };
        let first = lo;
        let reaches_head = to_us >= head.recorded_until_us;
        let last = if reaches_head {
            head.sequence.max(hi)
        } else {
            (hi + 1).min(head.sequence.max(hi))
        };
        report.first_sequence = first;
        report.last_sequence = last;
        let total = last - first + 1;
        progress(0, total, "checking the hash chain");

        let mut findings: Vec<Finding> = Vec::new();
        let mut predecessor = if first > 1 {
            idx.chain_records(site, camera, first - 1, first - 1)
                .await?
                .records
                .into_iter()
                .next()
        } else {
            None
        };
        let mut start = first;
        while start <= last {
            let end = start.saturating_add(VERIFY_BATCH - 1).min(last);
            let batch = idx.chain_records(site, camera, start, end).await?;
            let head_here = (end == head.sequence).then_some((head.sequence, head.hash));
            findings.extend(chain::verify(&chain::Window {
                first: start,
                last: end,
                records: &batch.records,
                predecessor: predecessor.as_ref(),
                head: head_here,
            }));
            if end == last {
                report.head_hash = batch
                    .records
                    .iter()
                    .find(|r| r.sequence == last)
                    .map(|r| r.record_hash);
            }
            report.gaps_checked += batch.gap_count;
            let live: Vec<SegmentRecord> = batch
                .segments
                .iter()
                .filter(|s| {
                    if s.deleted_at_us.is_some() {
                        report.retention_deleted += 1;
                        false
                    } else {
                        true
                    }
                })
                .cloned()
                .collect();
            report.segments_checked += live.len() as u64;
            let object_findings: Vec<Option<Finding>> = futures::stream::iter(live)
                .map(|s| {
                    let this = self.clone();
                    async move { this.check_object(&s, verify_objects).await }
                })
                .buffered(VERIFY_PARALLEL)
                .try_collect()
                .await?;
            findings.extend(object_findings.into_iter().flatten());
            predecessor = batch.records.into_iter().find(|r| r.sequence == end);
            progress(end - first + 1, total, "checking the hash chain");
            start = end + 1;
        }
        findings.sort_by_key(|f| (f.sequence, f.kind));
        findings.dedup_by_key(|f| (f.sequence, f.kind));
        for f in &findings {
            StorageMetrics::get()
                .chain_findings
                .with_label_values(&[finding_label(f.kind)])
                .inc();
        }
        report.findings = findings;
        report.verified_at_us = now_micros();
        Ok(report)
    }

    async fn check_object(
        &self,
        s: &SegmentRecord,
        rehash: bool,
    ) -> Result<Option<Finding>, StorageError> {
        let key = object_key(&s.object_key)?;
        let what = s.chain_record().describe();
        let missing = || Finding {
            kind: FindingKind::ObjectMissing,
            sequence: s.sequence,
            expected_hash: s.sha256.to_vec(),
            actual_hash: Vec::new(),
            detail: format!(
                "{what} is missing from the bucket (object `{}`)",
                s.object_key
            ),
        };
        if rehash {
            match kordon_objects::immutable::hash_object(self.inner.objects.as_ref(), &key).await {
                Ok((sha, size)) if sha == s.sha256 && size == s.size_bytes => Ok(None),
                Ok((sha, size)) => Ok(Some(Finding {
                    kind: FindingKind::ObjectAltered,
                    sequence: s.sequence,
                    expected_hash: s.sha256.to_vec(),
                    actual_hash: sha.to_vec(),
                    detail: format!(
                        "{what}: the object's bytes changed ({size} bytes, SHA-256 {}; the \
                         record says {} bytes, {})",
                        hex::encode(sha),
                        s.size_bytes,
                        hex::encode(s.sha256)
                    ),
                })),
                Err(e) if e.is_not_found() => Ok(Some(missing())),
                Err(e) => Err(e.into()),
            }
        } else {
            match self.inner.objects.head(&key).await {
                Ok(meta) if meta.size == s.size_bytes => Ok(None),
                Ok(meta) => Ok(Some(Finding {
                    kind: FindingKind::ObjectAltered,
                    sequence: s.sequence,
                    expected_hash: s.sha256.to_vec(),
                    actual_hash: Vec::new(),
                    detail: format!(
                        "{what}: the object has {} bytes, the record says {}",
                        meta.size, s.size_bytes
                    ),
                })),
                Err(object_store::Error::NotFound { .. }) => Ok(Some(missing())),
                Err(e) => Err(e.into()),
            }
        }
    }
}

fn outcome(created: bool) -> &'static str {
    if created {
        "created"
    } else {
        "already_present"
    }
}

fn finding_label(k: FindingKind) -> &'static str {
    match k {
        FindingKind::MissingRecord => "missing_record",
        FindingKind::RecordAltered => "record_altered",
        FindingKind::BrokenLink => "broken_link",
        FindingKind::Reordered => "reordered",
        FindingKind::ObjectMissing => "object_missing",
        FindingKind::ObjectAltered => "object_altered",
    }
}

fn action_label(action: i32) -> &'static str {
    use kordon_proto::storage::v1::AccessAction;
    match AccessAction::try_from(action) {
        Ok(AccessAction::List) => "list",
        Ok(AccessAction::Read) => "read",
        Ok(AccessAction::Playback) => "playback",
        Ok(AccessAction::Export) => "export",
        Ok(AccessAction::Download) => "download",
        Ok(AccessAction::Verify) => "verify",
        Ok(AccessAction::Hold) => "hold",
        Ok(AccessAction::Release) => "release",
        Ok(AccessAction::Delete) => "delete",
        Ok(AccessAction::RetentionChange) => "retention_change",
        Ok(AccessAction::AuditRead) => "audit_read",
        Ok(AccessAction::FootageRequest) => "footage_request",
        Ok(AccessAction::FootageDecision) => "footage_decision",
        Ok(AccessAction::AlertForward) => "alert_forward",
        Ok(AccessAction::AlertReceive) => "alert_receive",
        _ => "unspecified",
    }
}

/// Unix seconds at which a URL issued now with lifetime `ttl` expires.
pub(crate) fn url_expiry(ttl: Duration) -> i64 {
    now_micros() / MICROS + i64::try_from(ttl.as_secs()).unwrap_or(3600)
}

/// Site and camera are valid names (see [`kordon_objects::key`]).
pub fn check_camera(site: &str, camera: &str) -> Result<(), StorageError> {
    validate_name("site", site).map_err(|e| StorageError::invalid(format!("camera.{e}")))?;
    validate_name("camera", camera).map_err(|e| StorageError::invalid(format!("camera.{e}")))?;
    Ok(())
}

fn check_range(start_us: i64, end_us: i64) -> Result<(), StorageError> {
    if end_us <= start_us {
        return Err(StorageError::invalid(format!(
            "range: end ({}) must be after start ({})",
            rfc3339_micros(end_us),
            rfc3339_micros(start_us)
        )));
    }
    Ok(())
}

/// An object key from a request: a relative, normalised object-store path.
pub fn object_key(key: &str) -> Result<ObjectPath, StorageError> {
    if key.is_empty() || key.len() > 1024 {
        return Err(StorageError::invalid("object_key: 1 to 1024 bytes"));
    }
    let p = ObjectPath::parse(key)
        .map_err(|_| StorageError::invalid(format!("object_key `{key}` is not a valid key")))?;
    if p.as_ref() != key {
        return Err(StorageError::invalid(format!(
            "object_key `{key}` is not in normal form"
        )));
    }
    Ok(p)
}

pub fn duration_us(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}
