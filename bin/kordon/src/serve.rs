//! Running services: one per process, or all of them in `standalone`.

use std::sync::Arc;

use anyhow::Context;
use futures::FutureExt;
use kordon_ingest::config::CameraConfig;
use kordon_runtime::admin::Readiness;
use kordon_runtime::client::{self, ClientOptions};
use kordon_runtime::config::CommonConfig;
use kordon_runtime::server::{self, GrpcServer};
use kordon_runtime::shutdown::Shutdown;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, DevIdentityPolicy, Reads, ServerFlags};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Ingest,
    Transcode,
    Detection,
    Storage,
    Alerting,
}

impl Service {
    fn name(self) -> &'static str {
        match self {
            Service::Ingest => kordon_ingest::NAME,
            Service::Transcode => kordon_transcode::NAME,
            Service::Detection => kordon_detection::NAME,
            Service::Storage => kordon_storage::NAME,
            Service::Alerting => kordon_alerting::NAME,
        }
    }

    /// The optional sections it reads: alerting its own and the partners, storage the partners.
    fn reads(self) -> Reads {
        Reads {
            alerting: self == Service::Alerting,
            partners: matches!(self, Service::Alerting | Service::Storage),
        }
    }
}

/// Loads config, starts telemetry, and returns what a server process needs.
fn prepare(
    name: &str,
    flags: &ServerFlags,
    reads: Reads,
    policy: DevIdentityPolicy,
) -> anyhow::Result<(
    Config,
    CommonConfig,
    kordon_runtime::telemetry::TelemetryGuard,
)> {
    let config = Config::load_reading(flags, reads)?;
    let common = config.common(policy)?;
    let telemetry = kordon_runtime::telemetry::init(name, &common.log)?;
    Ok((config, common, telemetry))
}

/// Background work of a process besides its gRPC server, awaited after shutdown.
type Task = tokio::task::JoinHandle<anyhow::Result<()>>;

/// Storage's HTTP listener, bound when storage opens (a busy port fails start-up) and served
/// once the gRPC server is built ([`serve_http`]).
struct HttpListener {
    listener: tokio::net::TcpListener,
    addr: std::net::SocketAddr,
}

/// Opens storage and binds its HTTP listener on the `http_listen` address.
async fn start_storage(
    config: &Config,
    common: &CommonConfig,
    shutdown: &CancellationToken,
) -> anyhow::Result<(kordon_storage::Storage, HttpListener)> {
    let mut storage_config = config.storage.clone();
    // The top-level `http_listen` (flag, env or file) is the playback listener.
    storage_config.http_listen = config.http_listen;
    storage_config.partners = config.partners.clone();
    // With a certificate, playback is HTTPS too, and its default URLs say so.
    if common.tls.is_some() && storage_config.public_base_url.is_none() {
        storage_config.public_base_url =
            Some(storage_config.base_url().replacen("http://", "https://", 1));
    }
    let storage = kordon_storage::Storage::open(&storage_config, &common.data_dir)
        .await
        .map_err(storage_config_error)?;
    // Retention sweeps run until shutdown (deletions are logged; legal holds block them).
    tokio::spawn(
        storage
            .clone()
            .run_retention(shutdown.clone().cancelled_owned()),
    );
    // Decisions on footage this site asked partners for are logged as soon as they are made.
    if !config.partners.partners.is_empty() {
        tokio::spawn(kordon_storage::grpc::poll_partner_grants(
            storage.clone(),
            std::time::Duration::from_secs(10),
            shutdown.clone(),
        ));
    }
    let listener = tokio::net::TcpListener::bind(config.http_listen)
        .await
        .with_context(|| format!("cannot listen on {} (http_listen)", config.http_listen))?;
    let addr = listener.local_addr().unwrap_or(config.http_listen);
    Ok((storage, HttpListener { listener, addr }))
}

/// A storage error at start-up: a configuration key named as in the file (`storage.…`).
fn storage_config_error(e: kordon_storage::StorageError) -> anyhow::Error {
    match e {
        kordon_storage::StorageError::Config { key, message } => {
            kordon_runtime::RuntimeError::config(format!("storage.{key}"), message).into()
        }
        other => anyhow::Error::new(other).context("storage could not start"),
    }
}

/// Serves storage's HTTP listener until `shutdown`: playback (HLS, bundles), the web console,
/// and the gRPC-Web API the console calls (`server`'s services behind its identity checks).
/// HTTPS when the process has a certificate.
fn serve_http(
    storage: kordon_storage::Storage,
    http: HttpListener,
    server: &GrpcServer,
    common: &CommonConfig,
    shutdown: &CancellationToken,
) -> anyhow::Result<Task> {
    let router = kordon_storage::http_router(storage)
        .merge(server.grpc_web())
        .merge(kordon_console::router());
    if !kordon_console::is_built() {
        tracing::warn!(
            "this binary was built without the web console (bash scripts/console.sh, then \
             rebuild): its HTTP listener serves playback and gRPC-Web only"
        );
    }
    let limits = kordon_runtime::http::HttpLimits::default();
    let stop = shutdown.clone().cancelled_owned();
    let HttpListener { listener, addr } = http;
    Ok(match &common.tls {
        Some(tls) => {
            let listener = kordon_runtime::tls::TlsListener::new(listener, tls)?;
            tracing::info!(%addr, "HTTPS listening: console, playback, gRPC-Web");
            tokio::spawn(async move {
                kordon_runtime::http::serve(listener, router, stop, limits)
                    .await
                    .context("HTTPS server failed")
            })
        }
        None => {
            if !addr.ip().is_loopback() {
                tracing::warn!(listen = %addr,
                               "the console and playback are plain HTTP off loopback: set \
                                tls.cert_file and tls.key_file to serve them over HTTPS");
            }
            tracing::info!(%addr, "HTTP listening: console, playback, gRPC-Web");
            tokio::spawn(async move {
                kordon_runtime::http::serve(listener, router, stop, limits)
                    .await
                    .context("HTTP server failed")
            })
        }
    })
}

/// Starts ingest with this process's cameras.
fn start_ingest(
    config: &Config,
    common: &CommonConfig,
    storage_url: &str,
    cameras: Vec<CameraConfig>,
    shutdown: &CancellationToken,
) -> anyhow::Result<Arc<kordon_ingest::Ingest>> {
    let objects_config = config.storage.objects_or_default(&common.data_dir);
    let objects = kordon_objects::build(&objects_config)
        .map_err(|e| anyhow::anyhow!("object storage ({}): {e}", objects_config.describe()))?;
    let local_objects = kordon_objects::build_local(&objects_config)
        .map_err(|e| anyhow::anyhow!("object storage ({}): {e}", objects_config.describe()))?;
    let client = &config.ingest.storage;
    let channel = client::connect_lazy(&ClientOptions {
        server: storage_url.to_string(),
        token: None,
        ca_file: client.ca_file.clone(),
        cert_file: client.cert_file.clone(),
        key_file: client.key_file.clone(),
        connect_timeout: None,
    })?;
    let ingest = kordon_ingest::Ingest::start(
        config.ingest.clone(),
        &common.data_dir,
        kordon_ingest::Destinations {
            objects,
            local_objects,
            object_prefix: config.storage.object_prefix.clone(),
            storage: kordon_proto::storage::v1::storage_service_client::StorageServiceClient::new(
                channel,
            ),
        },
        shutdown.clone(),
    )?;
    let applied = ingest.apply(cameras, true)?;
    tracing::info!(cameras = applied.len(), "recording");
    Ok(ingest)
}

/// Starts detection with `cameras`. Without ONNX Runtime, `kordon detection` refuses to start
/// (exit 2, naming the setting); standalone runs motion detection only and says why in the log
/// and in each camera's detector status, so a first run still records.
async fn start_detection(
    config: &Config,
    common: &CommonConfig,
    storage_url: &str,
    cameras: Vec<kordon_proto::detection::v1::DetectionCamera>,
    shutdown: &CancellationToken,
    standalone: bool,
) -> anyhow::Result<Arc<kordon_detection::Detection>> {
    kordon_media::init().context("GStreamer could not start")?;
    let engine = {
        let dc = config.detection.clone();
        let dir = common.data_dir.clone();
        tokio::task::spawn_blocking(move || kordon_detection::service::start_engine(&dc, &dir))
            .await
            .context("detector start panicked")?
    };
    let engine = match engine {
        Ok(e) => Ok(e),
        Err(kordon_detection::DetectionError::Config { key, message }) if !standalone => {
            return Err(kordon_runtime::RuntimeError::config(key, message).into());
        }
        Err(e) => {
            tracing::warn!(error = %e, "object detector unavailable: detecting motion only \
                           (scripts/standalone.sh installs ONNX Runtime into the project venv; or set ORT_DYLIB_PATH)");
            Err(e.to_string())
        }
    };
    let objects_config = config.storage.objects_or_default(&common.data_dir);
    let objects = kordon_objects::build(&objects_config)
        .map_err(|e| anyhow::anyhow!("object storage ({}): {e}", objects_config.describe()))?;
    let channel = client::connect_lazy(&config.detection.storage.options(storage_url))?;
    let detection = kordon_detection::Detection::start(
        config.detection.clone(),
        &common.data_dir,
        engine,
        Some(kordon_detection::Destinations {
            objects,
            object_prefix: config.storage.object_prefix.clone(),
            storage: kordon_proto::storage::v1::storage_service_client::StorageServiceClient::new(
                channel,
            ),
        }),
        kordon_media::OpenContext::new(kordon_media::SourceConfig::default()),
        shutdown.clone(),
    )
    .await
    .map_err(|e| match e {
        kordon_detection::DetectionError::Config { key, message } => {
            kordon_runtime::RuntimeError::config(key, message).into()
        }
        other => anyhow::Error::new(other).context("detection could not start"),
    })?;
    let applied = detection
        .apply(cameras, true)
        .context("detection cameras")?;
    tracing::info!(cameras = applied.len(), "detecting");
    Ok(detection)
}

/// Starts transcode, reading footage from (and registering outputs with) `storage_url`.
/// `sites` are whose new segments get automatic thumbnails when `thumbnails.sites` is empty.
async fn start_transcode(
    config: &Config,
    common: &CommonConfig,
    storage_url: &str,
    sites: Vec<String>,
    shutdown: &CancellationToken,
) -> anyhow::Result<Arc<kordon_transcode::Transcode>> {
    kordon_media::init().context("GStreamer could not start")?;
    let objects_config = config.storage.objects_or_default(&common.data_dir);
    let objects = kordon_objects::build(&objects_config)
        .map_err(|e| anyhow::anyhow!("object storage ({}): {e}", objects_config.describe()))?;
    let channel = client::connect_lazy(&config.transcode.storage.options(storage_url))?;
    let mut tc = config.transcode.clone();
    if tc.thumbnails.sites.is_empty() {
        tc.thumbnails.sites = sites;
    }
    let replica = std::env::var("POD_NAME").unwrap_or_default();
    kordon_transcode::Transcode::start(
        tc,
        &common.data_dir,
        &replica,
        kordon_transcode::Destinations {
            objects,
            object_prefix: config.storage.object_prefix.clone(),
            storage: kordon_proto::storage::v1::storage_service_client::StorageServiceClient::new(
                channel,
            ),
        },
        shutdown.clone(),
    )
    .await
    .map_err(|e| match e {
        kordon_transcode::TranscodeError::Config { key, message } => {
            kordon_runtime::RuntimeError::config(key, message).into()
        }
        other => anyhow::Error::new(other).context("transcode could not start"),
    })
}

/// Starts alerting; `own_url` is this process's listener, read when no detection endpoint is
/// configured (standalone).
async fn start_alerting(
    config: &Config,
    common: &CommonConfig,
    own_url: Option<String>,
    demo: bool,
    shutdown: &CancellationToken,
) -> anyhow::Result<Arc<kordon_alerting::Alerting>> {
    let mut ac = config.alerting();
    if let Some(u) = own_url {
        if ac.detection.endpoints.is_empty() {
            ac.detection.endpoints = vec![u.clone()];
        }
        // Standalone: the access log is this process's storage.
        if ac.storage.url.is_none() {
            ac.storage.url = Some(u);
        }
    }
    if demo && ac.rules.is_empty() {
        ac.rules.push(demo_rule());
        for (site, tz) in [("burgas", "Europe/Sofia"), ("edirne", "Europe/Istanbul")] {
            ac.time_zones
                .entry(site.into())
                .or_insert_with(|| tz.into());
        }
    }
    kordon_alerting::Alerting::start(ac, &common.data_dir, shutdown.clone())
        .await
        .map_err(|e| match e {
            kordon_alerting::AlertingError::Config { .. } => {
                crate::config::alerting_config_error(e).into()
            }
            other => anyhow::Error::new(other).context("alerting could not start"),
        })
}

/// The rule `kordon standalone` ships on its real-footage camera, so a first run raises an
/// alert: a person on the road at the port gate.
fn demo_rule() -> kordon_alerting::config::RuleYaml {
    use kordon_alerting::config::{RuleYaml, Severity, ZoneYaml};
    RuleYaml {
        name: "person-on-the-road".into(),
        site: "burgas".into(),
        description: "A person on the road at the port gate (the demo rule)".into(),
        severity: Severity::High,
        cameras: vec!["port-gate".into()],
        classes: vec!["person".into()],
        zone: Some(ZoneYaml {
            zones: vec!["road".into()],
            min_dwell: Some(std::time::Duration::from_secs(1)),
        }),
        ..Default::default()
    }
}

/// `kordon <service>`: one service in this process.
pub async fn service(which: Service, flags: &ServerFlags) -> anyhow::Result<()> {
    let (config, common, _telemetry) =
        prepare(which.name(), flags, which.reads(), DevIdentityPolicy::OptIn)?;
    tracing::info!(
        service = which.name(),
        version = kordon_runtime::VERSION,
        "starting"
    );
    let shutdown = Shutdown::install();
    let mut server = GrpcServer::new(which.name(), &common)?;
    let mut tasks: Vec<Task> = Vec::new();
    let mut ingest = None;
    let mut detection = None;
    let mut alerting = None;
    let mut storage = None;
    let mut transcode = None;
    let mut http_listener = None;
    match which {
        Service::Storage => {
            let (s, http) = start_storage(&config, &common, &shutdown).await?;
            server = server.add_service(kordon_storage::grpc_service(s.clone()));
            // The console's calls to the site's other services (in a cluster, other pods).
            let gateway = kordon_storage::gateway::Gateway::new(&config.storage.gateway)
                .map_err(storage_config_error)?;
            if let Some(g) = gateway.ingest {
                server = server.add_service(g);
            }
            if let Some(g) = gateway.detection {
                server = server.add_service(g);
            }
            if let Some(g) = gateway.alerting {
                server = server.add_service(g);
            }
            if config.storage.gateway.is_set() {
                tracing::info!(
                    ingest = config.storage.gateway.ingest.as_deref().unwrap_or("-"),
                    detection = config.storage.gateway.detection.as_deref().unwrap_or("-"),
                    alerting = config.storage.gateway.alerting.as_deref().unwrap_or("-"),
                    "console gateway: the console's calls to these services are passed on with the caller's token"
                );
            }
            http_listener = Some(http);
            // On its own, storage checks bilateral acceptance itself (standalone uses
            // alerting's check).
            tasks.push(tokio::spawn(
                kordon_storage::agreements::watch(s.clone(), shutdown.clone()).map(Ok),
            ));
            storage = Some(s);
        }
        Service::Ingest => {
            let url = config.ingest.storage.url.clone().ok_or_else(|| {
                kordon_runtime::RuntimeError::config(
                    "ingest.storage.url",
                    "must name the storage service (e.g. https://storage:8470)",
                )
            })?;
            let cameras = config.cameras();
            let placed = cameras.is_empty();
            let i = start_ingest(&config, &common, &url, cameras, &shutdown)?;
            if placed {
                // The operator places this replica's cameras: after a crash, record those it
                // was last given at once, rather than after the operator's next placement.
                i.resume_placement(&common.data_dir);
            }
            server = server.add_service(kordon_ingest::grpc_service(
                kordon_ingest::IngestApi::new(i.clone()),
            ));
            ingest = Some(i);
        }
        Service::Transcode => {
            let url = config.transcode.storage.url.clone().ok_or_else(|| {
                kordon_runtime::RuntimeError::config(
                    "transcode.storage.url",
                    "must name the storage service (e.g. https://storage:8470)",
                )
            })?;
            let sites = config.sites.iter().map(|s| s.name.clone()).collect();
            let t = start_transcode(&config, &common, &url, sites, &shutdown).await?;
            server = server.add_service(kordon_transcode::grpc_service(
                kordon_transcode::TranscodeApi::new(t.clone()),
            ));
            transcode = Some(t);
        }
        Service::Detection => {
            let url = config.detection.storage.url.clone().ok_or_else(|| {
                kordon_runtime::RuntimeError::config(
                    "detection.storage.url",
                    "must name the storage service (e.g. https://storage:8470)",
                )
            })?;
            let d = start_detection(
                &config,
                &common,
                &url,
                config.detection_cameras(),
                &shutdown,
                false,
            )
            .await?;
            server = server.add_service(kordon_detection::grpc_service(
                kordon_detection::DetectionApi::new(d.clone()),
            ));
            detection = Some(d);
        }
        Service::Alerting => {
            let a = start_alerting(&config, &common, None, false, &shutdown).await?;
            server = server.add_service(kordon_alerting::grpc_service(
                kordon_alerting::AlertingApi::new(a.clone()),
            ));
            alerting = Some(a);
        }
    }
    // Alerting and storage also answer partners, on the partner link.
    if let Some(addr) = config.partners.listen
        && (storage.is_some() || alerting.is_some())
    {
        let mut link = GrpcServer::partner_link(which.name(), &config.partners)?;
        if let Some(s) = &storage {
            link = link.add_service(kordon_storage::grpc_service(s.clone()));
        }
        if let Some(a) = &alerting {
            link = link.add_service(kordon_alerting::grpc_service(
                kordon_alerting::AlertingApi::new(a.clone()),
            ));
        }
        tasks.push(spawn_partner_link(link, addr, shutdown.clone()).await?);
    }
    if let (Some(s), Some(http)) = (&storage, http_listener) {
        tasks.push(serve_http(s.clone(), http, &server, &common, &shutdown)?);
    }
    let result = server::run(server, &common, Readiness::new(), shutdown.clone()).await;
    shutdown.cancel();
    if let Some(i) = ingest {
        i.stopped().await;
    }
    if let Some(d) = detection {
        d.stopped().await;
    }
    if let Some(a) = alerting {
        a.stopped().await;
    }
    if let Some(t) = transcode {
        t.stopped().await;
    }
    for t in tasks {
        t.await.context("task panicked")??;
    }
    result?;
    tracing::info!(service = which.name(), "stopped");
    Ok(())
}

/// Binds the partner link (so a busy port fails start-up) and serves it until `shutdown`.
async fn spawn_partner_link(
    link: GrpcServer,
    addr: std::net::SocketAddr,
    shutdown: CancellationToken,
) -> anyhow::Result<Task> {
    let bound = link
        .bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} (partners.listen)"))?;
    tracing::info!(listen = %bound.local_addr(), "partner link listening (mTLS, partners only)");
    Ok(tokio::spawn(async move {
        bound
            .serve(Readiness::new(), shutdown)
            .await
            .context("partner link failed")
    }))
}

/// Simulated cameras of `kordon standalone` without a config: two sites, four cameras, the real
/// street clip on each.
const DEMO_CAMERAS: &[(&str, &str, usize)] = &[
    ("burgas", "port-gate", 1),
    ("burgas", "pier-2", 2),
    ("edirne", "kapikule-1", 3),
    ("edirne", "kapikule-2", 4),
];

/// What the demo cameras watch for: the real street clip gets a zone over the road and a line
/// across it, so a first run shows detections, zone presence and crossings.
fn demo_detection() -> kordon_detection::settings::CameraDetectionYaml {
    use kordon_detection::settings::{CameraDetectionYaml, LineYaml, ZoneYaml};
    CameraDetectionYaml {
        zones: vec![ZoneYaml {
            name: "road".into(),
            area: vec![[0.0, 0.45], [1.0, 0.45], [1.0, 1.0], [0.0, 1.0]],
        }],
        lines: vec![LineYaml {
            name: "crossing".into(),
            from: [0.5, 0.2],
            to: [0.5, 1.0],
            direction: Default::default(),
        }],
        ..Default::default()
    }
}

/// What a person who just ran `kordon standalone` needs to know, printed once it serves.
fn banner(
    config: &Config,
    common: &CommonConfig,
    grpc: std::net::SocketAddr,
    camsim: Option<&kordon_camsim::CamsimHandle>,
    cameras: usize,
) {
    let data = std::fs::canonicalize(&common.data_dir).unwrap_or_else(|_| common.data_dir.clone());
    let cams = match camsim {
        Some(sim) => format!(
            "{cameras} simulated (camsim on rtsp://{}/cam1/main …), watching a street clip",
            sim.rtsp_addr()
        ),
        None => format!("{cameras} from the config file"),
    };
    let index = if config.storage.database_url.is_some() {
        "the configured database"
    } else {
        "SQLite"
    };
    println!(
        "\n  Kordon {version} standalone is running: ingest, detection, alerting, transcode and \
         storage in one process.\n\n\
         \x20 console    http://{http}/     {console}\n\
         \x20 gRPC API   http://{grpc}      kordon whoami --server http://{grpc}\n\
         \x20 playback   http://{http}      HLS, with URLs from `kordon footage play`\n\
         \x20 admin      http://{admin}/metrics   /live, /ready\n\
         \x20 cameras    {cams}\n\
         \x20 data       {data} ({index} index, footage as local files)\n\n\
         \x20 Try: kordon footage list --site burgas --since 5m --reason \"first look\"\n\
         \x20      kordon detections list --since 5m\n\
         \x20 Ctrl-C stops (open segments are finished and stored first).\n",
        version = kordon_runtime::VERSION,
        http = config.http_listen,
        console = if kordon_console::is_built() {
            "open it in a browser (signed in as the development identity)"
        } else {
            "not in this build: bash scripts/console.sh, then rebuild"
        },
        admin = common.admin_listen,
        data = data.display(),
    );
}

/// `kordon standalone`: all five services on one gRPC listener, embedded defaults.
pub async fn standalone(flags: &ServerFlags) -> anyhow::Result<()> {
    let (config, common, _telemetry) = prepare(
        "standalone",
        flags,
        Reads::ALL,
        DevIdentityPolicy::LoopbackDefault,
    )?;
    tracing::info!(
        version = kordon_runtime::VERSION,
        data_dir = %common.data_dir.display(),
        "starting standalone: ingest, transcode, detection, storage and alerting in one process"
    );
    if !common.dev_identity {
        // Ingest reaches storage over this process's own listener; without the development
        // identity that call would need a client certificate, which standalone does not mint.
        anyhow::bail!(
            "standalone needs the development identity for its internal calls: keep every \
             listener on loopback (or, knowingly, set KORDON_DEV_IDENTITY=1 and \
             KORDON_DEV_IDENTITY_ALLOW_REMOTE=i-understand-this-is-insecure); for production run \
             the services separately"
        );
    }
    std::fs::create_dir_all(&common.data_dir)
        .with_context(|| format!("cannot create data_dir {}", common.data_dir.display()))?;
    // Listen before anything starts: ingest, detection and alerting call this process's own
    // gRPC listener from their first second; their calls wait in the accept queue until it
    // serves, instead of being refused (and a busy port fails start-up at once).
    let grpc_listener = tokio::net::TcpListener::bind(common.grpc_listen)
        .await
        .with_context(|| format!("cannot listen on {} (grpc_listen)", common.grpc_listen))?;
    let shutdown = Shutdown::install();

    // With no cameras configured, simulate some (Kordon's main job on embedded defaults).
    let mut camsim = None;
    let mut detection_cameras = config.detection_cameras();
    // A config without cameras (e.g. one that only sets alert sinks) runs the demo cameras too.
    let demo = config.sites.is_empty();
    let cameras = if demo {
        let sim = kordon_camsim::Camsim::start(kordon_camsim::CamsimConfig {
            cameras: DEMO_CAMERAS.len(),
            listen: kordon_camsim::DEFAULT_LISTEN,
            control_listen: Some(kordon_camsim::DEFAULT_CONTROL_LISTEN),
            codec: kordon_camsim::Codec::H264,
            source: kordon_camsim::Source::Clip,
            clip: kordon_camsim::ClipSource::Embedded,
            cache_dir: kordon_camsim::default_cache_dir(),
            bframes: 0,
            refuse_tcp: false,
        })
        .await
        .context("simulated cameras could not start")?;
        let mut cams = Vec::new();
        for (site, name, index) in DEMO_CAMERAS {
            let cam = crate::config::SiteCamera {
                name: name.to_string(),
                record: sim.url(*index, kordon_camsim::StreamKind::Main)?,
                detect: Some(sim.url(*index, kordon_camsim::StreamKind::Sub)?),
                transport: Default::default(),
                username: None,
                password: None,
                segment_duration: None,
                detection: demo_detection(),
            };
            detection_cameras.push(crate::config::detection_camera(site, &cam));
            cams.push(CameraConfig {
                site: site.to_string(),
                name: cam.name,
                record: cam.record,
                detect: cam.detect,
                transport: cam.transport,
                username: None,
                password: None,
                segment_duration: None,
            });
        }
        tracing::info!(
            rtsp = %sim.rtsp_addr(),
            control = ?sim.control_addr(),
            "no cameras configured: recording {} simulated cameras", cams.len()
        );
        camsim = Some(sim);
        cams
    } else {
        config.cameras()
    };
    let camera_count = cameras.len();

    let (storage, http) = start_storage(&config, &common, &shutdown).await?;
    let mut grpc_url_addr = grpc_listener.local_addr().unwrap_or(common.grpc_listen);
    if grpc_url_addr.ip().is_unspecified() {
        grpc_url_addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let ingest = start_ingest(
        &config,
        &common,
        &format!("http://{grpc_url_addr}"),
        cameras,
        &shutdown,
    )?;
    let detection = start_detection(
        &config,
        &common,
        &format!("http://{grpc_url_addr}"),
        detection_cameras,
        &shutdown,
        true,
    )
    .await?;
    let alerting = start_alerting(
        &config,
        &common,
        Some(format!("http://{grpc_url_addr}")),
        demo,
        &shutdown,
    )
    .await?;
    let own_url = format!("http://{grpc_url_addr}");
    let sites: Vec<String> = if demo {
        let mut s: Vec<String> = DEMO_CAMERAS
            .iter()
            .map(|(site, _, _)| site.to_string())
            .collect();
        s.dedup();
        s
    } else {
        config.sites.iter().map(|s| s.name.clone()).collect()
    };
    let transcode = start_transcode(
        &config,
        &common,
        config.transcode.storage.url.as_deref().unwrap_or(&own_url),
        sites,
        &shutdown,
    )
    .await?;
    // Viewer copies of evidence bundles come from this process's transcode.
    if config.storage.transcode.url.is_none() {
        storage.set_viewer_copies(Arc::new(
            kordon_storage::transcode::TranscodeViewerCopies::connect(
                &config.storage.transcode,
                &own_url,
            )?,
        ));
    }
    let storage_for_link = storage.clone();
    let storage_for_http = storage.clone();
    let server = GrpcServer::new("standalone", &common)?
        .add_service(kordon_storage::grpc_service(storage))
        .add_service(kordon_ingest::grpc_service(kordon_ingest::IngestApi::new(
            ingest.clone(),
        )))
        .add_service(kordon_transcode::grpc_service(
            kordon_transcode::TranscodeApi::new(transcode.clone()),
        ))
        .add_service(kordon_detection::grpc_service(
            kordon_detection::DetectionApi::new(detection.clone()),
        ))
        .add_service(kordon_alerting::grpc_service(
            kordon_alerting::AlertingApi::new(alerting.clone()),
        ));

    // Footage flows only while alerting holds the agreement accepted by both sides.
    {
        let partners = alerting.partners().clone();
        storage_for_link.set_agreement_check(Arc::new(move |site: &str| {
            partners.link(site).is_some_and(|l| l.accepted())
        }));
    }
    // Partners reach alerting and storage on the partner link.
    let partner_link = match config.partners.listen {
        Some(addr) => {
            let link = GrpcServer::partner_link("standalone", &config.partners)?
                .add_service(kordon_storage::grpc_service(storage_for_link))
                .add_service(kordon_alerting::grpc_service(
                    kordon_alerting::AlertingApi::new(alerting.clone()),
                ));
            Some(spawn_partner_link(link, addr, shutdown.clone()).await?)
        }
        None => None,
    };

    let http = serve_http(storage_for_http, http, &server, &common, &shutdown)?;

    // The gRPC server keeps serving storage while ingest drains its spool after shutdown.
    let grpc_stop = CancellationToken::new();
    let mut grpc = {
        let common = common.clone();
        let stop = grpc_stop.clone();
        let bound = server.on_listener(grpc_listener)?;
        tokio::spawn(async move {
            server::serve_with_admin(bound, &common, Readiness::new(), stop).await
        })
    };
    banner(
        &config,
        &common,
        grpc_url_addr,
        camsim.as_ref(),
        camera_count,
    );
    let early = tokio::select! {
        _ = shutdown.cancelled() => None,
        r = &mut grpc => Some(r),
    };
    // On a signal (or if the server failed): cameras close their segments, the spool drains,
    // then the listeners close.
    shutdown.cancel();
    ingest.stopped().await;
    detection.stopped().await;
    alerting.stopped().await;
    transcode.stopped().await;
    grpc_stop.cancel();
    let grpc_result = match early {
        Some(r) => r,
        None => grpc.await,
    }
    .context("gRPC server panicked")?;
    http.await.context("HTTP server panicked")??;
    if let Some(link) = partner_link {
        link.await.context("partner link panicked")??;
    }
    if let Some(sim) = camsim {
        sim.shutdown().await;
    }
    grpc_result?;
    tracing::info!("standalone stopped");
    Ok(())
}
