//! The running ingest service: this shard's cameras, the spool and the uploader.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kordon_proto::storage::v1::storage_service_client::StorageServiceClient;
use kordon_runtime::client::AuthedChannel;
use object_store::ObjectStore;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::IngestError;
use crate::camera::{CameraContext, realtime_clock, supervise};
use crate::config::{CameraConfig, IngestConfig};
use crate::recorder::Recorder;
use crate::spool::Spool;
use crate::status::StatusBoard;
use crate::uploader::Uploader;

/// How long the uploader keeps draining after shutdown before leaving the rest in the spool.
pub const SHUTDOWN_DRAIN_GRACE: Duration = Duration::from_secs(20);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApplyOutcome {
    Created,
    Updated,
    Unchanged,
    /// The spec's generation is older than the one held: ignored.
    Stale,
    Removed,
}

struct CameraHandle {
    spec: watch::Sender<CameraConfig>,
    stop: CancellationToken,
}

/// Where ingest puts media and whom it tells.
pub struct Destinations {
    pub objects: Arc<dyn ObjectStore>,
    /// `objects` again when it is a store of local files (see
    /// [`kordon_objects::build_local`]): segments are then hard-linked from the spool instead of
    /// copied, so each byte is written once.
    pub local_objects: Option<Arc<kordon_objects::object_store::local::LocalFileSystem>>,
    /// Prefix of every object key (may be empty).
    pub object_prefix: String,
    pub storage: StorageServiceClient<AuthedChannel>,
}

pub struct Ingest {
    config: Arc<IngestConfig>,
    spool: Arc<Spool>,
    board: Arc<StatusBoard>,
    ctx: Arc<CameraContext>,
    object_prefix: String,
    cameras: Mutex<BTreeMap<(String, String), CameraHandle>>,
    /// Where the operator's placement is kept once [`Ingest::resume_placement`] was called.
    placement: Mutex<Option<std::path::PathBuf>>,
    camera_tasks: TaskTracker,
    uploader_done: CancellationToken,
    shutdown: CancellationToken,
    /// Asked where each camera's stored recording ends when its recorder starts.
    storage: StorageServiceClient<AuthedChannel>,
}

/// How long a camera's start waits for storage to say where its recording ends.
const RECORDED_UNTIL_WAIT: Duration = Duration::from_secs(2);

impl Ingest {
    /// Opens the spool (re-queuing what an earlier run left), starts the uploader, and returns
    /// the service with no cameras yet (see [`Ingest::apply`]).
    pub fn start(
        config: IngestConfig,
        data_dir: &Path,
        dest: Destinations,
        shutdown: CancellationToken,
    ) -> Result<Arc<Ingest>, IngestError> {
        config.validate()?;
        gstreamer::init().map_err(|e| IngestError::Gstreamer(e.to_string()))?;
        let spool_dir = config
            .spool_dir
            .clone()
            .unwrap_or_else(|| data_dir.join("spool"));
        let spool = Arc::new(Spool::open(&spool_dir, config.spool_max_bytes)?);
        let board = StatusBoard::new();
        let config = Arc::new(config);
        let ctx = Arc::new(CameraContext {
            config: config.clone(),
            board: board.clone(),
            clock: realtime_clock(),
        });
        let uploader_stop = CancellationToken::new();
        let uploader_done = CancellationToken::new();
        let uploader = Uploader {
            spool: spool.clone(),
            objects: dest.objects.clone(),
            local_objects: dest.local_objects.clone(),
            storage: dest.storage.clone(),
            board: board.clone(),
            concurrency: config.upload_concurrency,
        };
        {
            let stop = uploader_stop.clone();
            let done = uploader_done.clone();
            tokio::spawn(async move {
                uploader.run(stop, SHUTDOWN_DRAIN_GRACE).await;
                done.cancel();
            });
        }
        let ingest = Arc::new(Ingest {
            config,
            spool,
            board,
            ctx,
            object_prefix: dest.object_prefix,
            cameras: Mutex::new(BTreeMap::new()),
            placement: Mutex::new(None),
            camera_tasks: TaskTracker::new(),
            uploader_done,
            shutdown: shutdown.clone(),
            storage: dest.storage,
        });
        // On shutdown: cameras close their open segments first, then the uploader drains.
        {
            let me = ingest.clone();
            tokio::spawn(async move {
                shutdown.cancelled().await;
                me.camera_tasks.close();
                me.camera_tasks.wait().await;
                uploader_stop.cancel();
            });
        }
        tracing::info!(spool = %spool_dir.display(), replica = %ingest.config.replica, "ingest started");
        Ok(ingest)
    }

    pub fn board(&self) -> &Arc<StatusBoard> {
        &self.board
    }

    pub fn spool(&self) -> &Arc<Spool> {
        &self.spool
    }

    pub fn config(&self) -> &IngestConfig {
        &self.config
    }

    /// The cameras of this shard.
    pub fn cameras(&self) -> Vec<CameraConfig> {
        self.cameras
            .lock()
            .map(|m| m.values().map(|h| h.spec.borrow().clone()).collect())
            .unwrap_or_default()
    }

    /// Adds or updates cameras; with `replace`, cameras not listed are removed. Cameras whose
    /// configuration is unchanged keep recording untouched. All-or-nothing: every camera is
    /// validated before anything changes.
    pub fn apply(
        &self,
        cameras: Vec<CameraConfig>,
        replace: bool,
    ) -> Result<Vec<(CameraConfig, ApplyOutcome)>, IngestError> {
        self.apply_generations(cameras.into_iter().map(|c| (c, 0)).collect(), replace)
    }

    /// Like [`Ingest::apply`], each camera with the generation of its spec (the Camera
    /// resource's `metadata.generation`): a spec older than the one held is ignored
    /// ([`ApplyOutcome::Stale`]), and the held generation is reported in the camera's status.
    pub fn apply_generations(
        &self,
        cameras: Vec<(CameraConfig, i64)>,
        replace: bool,
    ) -> Result<Vec<(CameraConfig, ApplyOutcome)>, IngestError> {
        let generations: std::collections::HashMap<(String, String), i64> = cameras
            .iter()
            .map(|(c, g)| ((c.site.clone(), c.name.clone()), *g))
            .collect();
        let cameras: Vec<CameraConfig> = cameras.into_iter().map(|(c, _)| c).collect();
        for (i, c) in cameras.iter().enumerate() {
            c.validate(&format!("cameras[{i}]"))?;
        }
        let mut seen = std::collections::BTreeSet::new();
        for c in &cameras {
            if !seen.insert((c.site.clone(), c.name.clone())) {
                return Err(IngestError::InvalidArgument(format!(
                    "camera {} is listed twice",
                    c.id()
                )));
            }
        }
        if self.shutdown.is_cancelled() {
            return Err(IngestError::InvalidArgument(
                "ingest is shutting down".into(),
            ));
        }
        let out = self.apply_locked(cameras, &generations, seen, replace)?;
        self.remember_placement();
        Ok(out)
    }

    fn apply_locked(
        &self,
        cameras: Vec<CameraConfig>,
        generations: &std::collections::HashMap<(String, String), i64>,
        seen: std::collections::BTreeSet<(String, String)>,
        replace: bool,
    ) -> Result<Vec<(CameraConfig, ApplyOutcome)>, IngestError> {
        let mut out = Vec::new();
        let mut map = self
            .cameras
            .lock()
            .map_err(|_| IngestError::Internal("camera table poisoned".into()))?;
        if replace {
            let keep: std::collections::BTreeSet<_> = seen;
            let gone: Vec<_> = map.keys().filter(|k| !keep.contains(*k)).cloned().collect();
            for k in gone {
                if let Some(h) = map.remove(&k) {
                    let spec = h.spec.borrow().clone();
                    h.stop.cancel();
                    self.forget_later(&spec);
                    out.push((spec, ApplyOutcome::Removed));
                }
            }
        }
        for c in cameras {
            let key = (c.site.clone(), c.name.clone());
            let generation = generations.get(&key).copied().unwrap_or(0);
            let held = self
                .board
                .get(&c.site, &c.name)
                .map(|s| s.generation)
                .unwrap_or(0);
            if map.contains_key(&key) && generation < held {
                out.push((c, ApplyOutcome::Stale));
                continue;
            }
            self.board
                .update(&c.site, &c.name, |s| s.generation = generation);
            match map.get(&key) {
                Some(h) if *h.spec.borrow() == c => out.push((c, ApplyOutcome::Unchanged)),
                Some(h) => {
                    tracing::info!(camera = %c.id(), url = %c.redacted_record_url(), "camera updated");
                    let _ = h.spec.send(c.clone());
                    out.push((c, ApplyOutcome::Updated));
                }
                None => {
                    let handle = self.spawn_camera(c.clone());
                    map.insert(key, handle);
                    out.push((c, ApplyOutcome::Created));
                }
            }
        }
        Ok(out)
    }

    /// Stops recording a camera (its open segment is closed and stored). False if unknown.
    pub fn remove(&self, site: &str, camera: &str) -> bool {
        let handle = self
            .cameras
            .lock()
            .ok()
            .and_then(|mut m| m.remove(&(site.to_string(), camera.to_string())));
        match handle {
            Some(h) => {
                let spec = h.spec.borrow().clone();
                h.stop.cancel();
                self.forget_later(&spec);
                self.remember_placement();
                true
            }
            None => false,
        }
    }

    /// From now on keeps the cameras this replica is given in `<data_dir>/placement.json`,
    /// after resuming those an earlier run of this replica was given there ([`crate::placement`]:
    /// recent, this replica's, without credentials). For replicas the operator places cameras
    /// on; returns how many cameras were resumed.
    pub fn resume_placement(&self, data_dir: &Path) -> usize {
        let path = crate::placement::path_in(data_dir);
        let resumed = match crate::placement::read(
            &path,
            &self.config.replica,
            std::time::SystemTime::now(),
        ) {
            Ok(cameras) if cameras.is_empty() => 0,
            Ok(cameras) => {
                let n = cameras.len();
                match self.apply_generations(cameras, false) {
                    Ok(_) => {
                        tracing::info!(cameras = n, file = %path.display(),
                            "resumed the cameras this replica was last given; the operator's next placement confirms or corrects them");
                        n
                    }
                    Err(error) => {
                        tracing::warn!(%error, file = %path.display(), "placement not resumed");
                        0
                    }
                }
            }
            Err(why) => {
                tracing::warn!(%why, "placement not resumed");
                0
            }
        };
        if let Ok(mut p) = self.placement.lock() {
            *p = Some(path);
        }
        self.remember_placement();
        resumed
    }

    /// Writes the current cameras and their generations, when a placement file is kept.
    fn remember_placement(&self) {
        let Some(path) = self.placement.lock().ok().and_then(|p| p.clone()) else {
            return;
        };
        let cameras: Vec<(CameraConfig, i64)> = self
            .cameras()
            .into_iter()
            .map(|c| {
                let generation = self
                    .board
                    .get(&c.site, &c.name)
                    .map(|s| s.generation)
                    .unwrap_or(0);
                (c, generation)
            })
            .collect();
        match crate::placement::write(&path, &self.config.replica, cameras) {
            Ok(0) => {}
            Ok(n) => tracing::debug!(
                cameras = n,
                "cameras with credentials are not kept in the placement file"
            ),
            Err(error) => {
                tracing::warn!(%error, file = %path.display(), "placement file not written")
            }
        }
    }

    /// Drops a removed camera's status once its supervisor has stopped.
    fn forget_later(&self, spec: &CameraConfig) {
        let board = self.board.clone();
        let (site, name) = (spec.site.clone(), spec.name.clone());
        tokio::spawn(async move {
            // The supervisor marks it Stopped when done; give it a moment to finish the segment.
            for _ in 0..100 {
                if board
                    .get(&site, &name)
                    .is_none_or(|s| s.state == crate::status::CameraState::Stopped)
                {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            board.remove(&site, &name);
        });
    }

    fn spawn_camera(&self, spec: CameraConfig) -> CameraHandle {
        let (tx, rx) = watch::channel(spec.clone());
        let stop = self.shutdown.child_token();
        let ctx = self.ctx.clone();
        let spool = self.spool.clone();
        let board = self.board.clone();
        let replica = self.config.replica.clone();
        let prefix = self.object_prefix.clone();
        let duration = spec
            .segment_duration
            .unwrap_or(self.config.segment_duration);
        let max_frame_gap = self.config.max_frame_gap;
        let storage = self.storage.clone();
        let stop_task = stop.clone();
        tracing::info!(camera = %spec.id(), url = %spec.redacted_record_url(), "camera added");
        board.update(&spec.site, &spec.name, |_| {});
        let span = tracing::info_span!("camera", site = %spec.site, camera = %spec.name);
        self.camera_tasks.spawn(tracing::Instrument::instrument(
            async move {
                // Where this camera's recording stopped before (an earlier run, another
                // replica) is asked of storage by the uploader, after the recorder's resume
                // point: known also when storage is unreachable now, and after this run's
                // earlier records of the camera are registered.
                let resume = None;
                let floor = recorded_until(storage, &spool, &spec.site, &spec.name).await;
                let recorder = Arc::new(Mutex::new(
                    Recorder::new(
                        &spec.site, &spec.name, &replica, &prefix, duration, spool, board, resume,
                    )
                    .with_max_frame_gap(max_frame_gap)
                    .with_floor(floor),
                ));
                supervise(ctx, recorder, rx, stop_task).await;
            },
            span,
        ));
        CameraHandle { spec: tx, stop }
    }
}

/// Where the camera's recording already ends: the later of what storage holds (asked with a
/// short wait; unknown when storage does not answer) and what the spool still queues. New
/// footage never starts before it, so a wall clock stepped back (NTP correcting a clock that
/// ran ahead) cannot make a new run's segments overlap or precede stored ones.
async fn recorded_until(
    mut storage: StorageServiceClient<AuthedChannel>,
    spool: &Spool,
    site: &str,
    camera: &str,
) -> Option<i64> {
    let request = kordon_proto::storage::v1::GetChainHeadRequest {
        camera: Some(kordon_proto::common::v1::CameraRef {
            site: site.to_string(),
            camera: camera.to_string(),
        }),
    };
    let stored = match tokio::time::timeout(RECORDED_UNTIL_WAIT, storage.get_chain_head(request))
        .await
    {
        Ok(Ok(head)) => head
            .into_inner()
            .recorded_until
            .as_ref()
            .and_then(crate::segment::UnixMicros::from_timestamp)
            .map(|u| u.0),
        Ok(Err(status)) => {
            tracing::debug!(site, camera, error = %status, "where the recording ends is unknown");
            None
        }
        Err(_) => None,
    };
    stored.max(spool.queued_until(site, camera))
}

impl Ingest {
    /// Waits until every camera has stopped and the uploader has drained (or given up), after
    /// the shutdown token was cancelled.
    pub async fn stopped(&self) {
        self.shutdown.cancelled().await;
        self.camera_tasks.close();
        self.camera_tasks.wait().await;
        self.uploader_done.cancelled().await;
    }
}
