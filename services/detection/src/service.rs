//! The running detection service: the shared detector, the store, the live hub, snapshots,
//! and this replica's shard of cameras (one [`crate::camera`] pipeline each).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kordon_media::source::OpenContext;
use kordon_proto::detection::v1 as pb;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::DetectionError;
use crate::config::DetectionServiceConfig;
use crate::hub::Hub;
use crate::settings::{self, CameraSettings};
use crate::snapshot::Snapshots;
use crate::status::{CameraStatus, State};
use crate::store::Store;

pub use kordon_infer::model::{EMBEDDED_MODEL, EMBEDDED_MODEL_NAME};

/// What every camera pipeline of the process shares.
pub struct Shared {
    /// `None` when the detector could not start (standalone without ONNX Runtime); cameras then
    /// run motion detection only and their status says why.
    pub engine: Option<kordon_infer::Engine>,
    pub engine_problem: Option<String>,
    pub store: Store,
    pub hub: Hub,
    /// Where snapshots are stored and read; `None` without object storage.
    pub snapshots: Option<Snapshots>,
    /// Whether new snapshots are taken (`detection.snapshots`).
    pub take_snapshots: bool,
    pub source: OpenContext,
}

/// One camera of the shard.
struct Running {
    /// As applied, credentials included (compared on the next apply; never returned).
    spec: pb::DetectionCamera,
    settings: watch::Sender<Arc<CameraSettings>>,
    status: Arc<CameraStatus>,
    cancel: CancellationToken,
}

/// Where snapshots go: object storage (the camera's folder) and the storage service that
/// indexes them and keeps the access log of their reads.
pub struct Destinations {
    pub objects: Arc<dyn kordon_objects::ObjectStore>,
    pub object_prefix: String,
    pub storage: kordon_proto::storage::v1::storage_service_client::StorageServiceClient<
        kordon_runtime::client::AuthedChannel,
    >,
}

/// The detection service of one process.
pub struct Detection {
    config: DetectionServiceConfig,
    shared: Arc<Shared>,
    cameras: Mutex<BTreeMap<(String, String), Running>>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
}

/// What [`Detection::apply`] did with one camera.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Created,
    Updated,
    Unchanged,
    Stale,
    Removed,
}

/// Loads the detector described by `config` (blocking: the model is read and the session
/// built). `data_dir` receives the embedded model when no path is configured.
pub fn start_engine(
    config: &DetectionServiceConfig,
    data_dir: &Path,
) -> Result<kordon_infer::Engine, DetectionError> {
    let model = match &config.model.path {
        Some(p) => p.clone(),
        None => kordon_infer::model::write_embedded(&data_dir.join("models"))
            .map_err(|e| DetectionError::config("model.path", e))?,
    };
    let provider = config
        .model
        .provider
        .parse()
        .map_err(|e: kordon_infer::InferError| {
            DetectionError::config("model.provider", e.to_string())
        })?;
    let threads = match config.model.threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let cfg = kordon_infer::EngineConfig {
        library: config.model.library.clone(),
        provider,
        threads,
        max_batch: config.model.max_batch,
        max_wait: config.model.max_wait,
        queue: config.model.queue,
        ..kordon_infer::EngineConfig::new(model)
    };
    kordon_infer::Engine::start(cfg).map_err(|e| DetectionError::config("model", e.to_string()))
}

impl Detection {
    /// Opens the store, and starts the retention sweep and the snapshot retry loop. `engine`
    /// is the detector (or why there is none).
    pub async fn start(
        config: DetectionServiceConfig,
        data_dir: &Path,
        engine: Result<kordon_infer::Engine, String>,
        destinations: Option<Destinations>,
        source: OpenContext,
        shutdown: CancellationToken,
    ) -> Result<Arc<Detection>, DetectionError> {
        config.validate()?;
        let url = config.database_url(data_dir);
        let store = Store::open(&url).await?;
        let (engine, engine_problem) = match engine {
            Ok(e) => (Some(e), None),
            Err(why) => (None, Some(why)),
        };
        let snapshots = destinations.map(|d| Snapshots {
            objects: d.objects,
            object_prefix: d.object_prefix,
            storage: d.storage,
            store: store.clone(),
        });
        let shared = Arc::new(Shared {
            engine,
            engine_problem,
            store,
            hub: Hub::default(),
            snapshots,
            take_snapshots: config.snapshots,
            source,
        });
        let me = Arc::new(Detection {
            config,
            shared,
            cameras: Mutex::new(BTreeMap::new()),
            shutdown,
            tasks: TaskTracker::new(),
        });
        me.tasks.spawn(me.clone().housekeeping());
        if let Some(s) = &me.shared.snapshots {
            let linker = crate::link::Linker {
                store: me.shared.store.clone(),
                storage: s.storage.clone(),
            };
            me.tasks.spawn(me.clone().link_segments(linker));
        }
        Ok(me)
    }

    pub fn config(&self) -> &DetectionServiceConfig {
        &self.config
    }

    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// The labels of the model (valid `classes`).
    pub fn labels(&self) -> Vec<&'static str> {
        match &self.shared.engine {
            Some(e) => e.info().labels.clone(),
            None => kordon_infer::COCO_LABELS.to_vec(),
        }
    }

    /// Hourly: deletes detections past retention; every 30 s: registers pending snapshots.
    async fn housekeeping(self: Arc<Self>) {
        let mut tick = tokio::time::interval(Duration::from_secs(30));
        let mut n: u64 = 0;
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            if let Some(s) = &self.shared.snapshots
                && let Err(e) = s.retry_pending().await
            {
                tracing::debug!(error = %e, "pending snapshots not registered yet");
            }
            if n.is_multiple_of(120) {
                let cutoff = kordon_objects::time::now_micros()
                    - i64::try_from(self.config.retention.as_micros()).unwrap_or(i64::MAX);
                match self.shared.store.delete_before(cutoff).await {
                    Ok(0) => {}
                    Ok(k) => tracing::info!(deleted = k, "detections past retention deleted"),
                    Err(e) => tracing::warn!(error = %e, "retention sweep failed"),
                }
            }
            n += 1;
        }
    }

    /// Every few seconds: links stored detections to their recorded segments.
    async fn link_segments(self: Arc<Self>, linker: crate::link::Linker) {
        let mut tick = tokio::time::interval(crate::link::EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            match linker.run_once(kordon_objects::time::now_micros()).await {
                Ok(done) => {
                    if failing {
                        tracing::info!("detections are linked to their segments again");
                    }
                    failing = false;
                    if done.segment + done.not_recorded > 0 {
                        tracing::debug!(
                            segment = done.segment,
                            not_recorded = done.not_recorded,
                            "detections linked"
                        );
                    }
                }
                Err(e) => {
                    if !failing {
                        tracing::warn!(error = %e, "detections cannot be linked to their segments yet");
                    }
                    failing = true;
                }
            }
        }
    }

    /// Adds, updates (and with `replace`, removes) cameras; all-or-nothing: the first invalid
    /// camera is an error and nothing changes.
    pub fn apply(
        &self,
        cameras: Vec<pb::DetectionCamera>,
        replace: bool,
    ) -> Result<Vec<(String, String, Outcome)>, DetectionError> {
        let labels = self.labels();
        let mut checked = Vec::with_capacity(cameras.len());
        let mut seen = std::collections::HashSet::new();
        for c in cameras {
            let s = settings::from_proto(&c, &labels)?;
            if !seen.insert((s.site.clone(), s.name.clone())) {
                return Err(DetectionError::Invalid(format!(
                    "{}: listed twice in one request",
                    s.key()
                )));
            }
            checked.push((c, s));
        }
        let mut results = Vec::new();
        let mut map = self.cameras.lock().unwrap_or_else(|p| p.into_inner());
        for (spec, s) in checked {
            let key = (s.site.clone(), s.name.clone());
            let outcome = match map.get_mut(&key) {
                Some(r) if spec.generation < r.spec.generation => Outcome::Stale,
                Some(r) if spec == r.spec => Outcome::Unchanged,
                Some(r) => {
                    r.spec = spec;
                    r.settings.send_replace(Arc::new(s));
                    Outcome::Updated
                }
                None => {
                    let status = Arc::new(CameraStatus::new(s.generation));
                    let cancel = self.shutdown.child_token();
                    let (tx, rx) = watch::channel(Arc::new(s));
                    self.tasks.spawn(crate::camera::run(
                        self.shared.clone(),
                        status.clone(),
                        rx,
                        cancel.clone(),
                    ));
                    map.insert(
                        key.clone(),
                        Running {
                            spec,
                            settings: tx,
                            status,
                            cancel,
                        },
                    );
                    Outcome::Created
                }
            };
            results.push((key.0, key.1, outcome));
        }
        if replace {
            let keep: std::collections::HashSet<_> = results
                .iter()
                .map(|(s, c, _)| (s.clone(), c.clone()))
                .collect();
            let gone: Vec<_> = map.keys().filter(|k| !keep.contains(*k)).cloned().collect();
            for k in gone {
                if let Some(r) = map.remove(&k) {
                    r.cancel.cancel();
                }
                crate::metrics::forget_camera(&k.0, &k.1);
                results.push((k.0, k.1, Outcome::Removed));
            }
        }
        self.update_gauge(&map);
        Ok(results)
    }

    /// Stops a camera; its open tracks end. `false` when it was not in the shard.
    pub fn remove(&self, site: &str, camera: &str) -> bool {
        let mut map = self.cameras.lock().unwrap_or_else(|p| p.into_inner());
        let r = map.remove(&(site.to_string(), camera.to_string()));
        if let Some(r) = &r {
            r.cancel.cancel();
            crate::metrics::forget_camera(site, camera);
        }
        self.update_gauge(&map);
        r.is_some()
    }

    fn update_gauge(&self, map: &BTreeMap<(String, String), Running>) {
        let g = &crate::metrics::get().cameras;
        g.reset();
        for ((site, _), r) in map {
            g.with_label_values(&[site, r.status.state().as_str()])
                .inc();
        }
    }

    /// The shard's cameras as applied, without credentials, ordered by site and name.
    pub fn shard(&self) -> Vec<pb::DetectionCamera> {
        let map = self.cameras.lock().unwrap_or_else(|p| p.into_inner());
        map.values()
            .map(|r| pb::DetectionCamera {
                resolved_credentials: None,
                ..r.spec.clone()
            })
            .collect()
    }

    /// Status of every camera (site, name, status).
    pub fn statuses(&self) -> Vec<(String, String, Arc<CameraStatus>)> {
        let map = self.cameras.lock().unwrap_or_else(|p| p.into_inner());
        let out: Vec<_> = map
            .iter()
            .map(|((s, c), r)| (s.clone(), c.clone(), r.status.clone()))
            .collect();
        self.update_gauge(&map);
        out
    }

    /// Waits for every camera pipeline to end its tracks and stop (after shutdown).
    pub async fn stopped(&self) {
        self.shutdown.cancelled().await;
        self.tasks.close();
        self.tasks.wait().await;
        self.shared.store.close().await;
    }

    /// The state a camera is in (tests, logs).
    pub fn state_of(&self, site: &str, camera: &str) -> Option<State> {
        let map = self.cameras.lock().unwrap_or_else(|p| p.into_inner());
        map.get(&(site.to_string(), camera.to_string()))
            .map(|r| r.status.state())
    }
}
