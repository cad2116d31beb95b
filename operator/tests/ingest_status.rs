//! Camera status flows back from a real ingest service: simulated RTSP cameras
//! (`kordon-camsim`), the real ingest service with its gRPC server, the real storage service
//! (SQLite index, footage on local files), and the operator's controllers with the real gRPC
//! client (`GrpcIngest`) against a real kube-apiserver (scripts/kube.sh).
//!
//! Asserts what `kubectl get cameras,sites` would show: both cameras Recording H.264 1920x1080 at
//! 25 fps on the site's one replica with a last segment time; once one simulated camera stops,
//! its Camera says why (the camera's own answer, `404 Not Found`) while the other keeps
//! recording, and the Site's counts follow.
//!
//! Skipped with a note when `KORDON_TEST_KUBECONFIG` is unset; a failure under `CI`.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::eventually;
use kordon_camsim::{Camsim, CamsimConfig, CamsimHandle, ClipSource, Codec, Source, StreamKind};
use kordon_ingest::config::IngestConfig;
use kordon_ingest::{Destinations, Ingest};
use kordon_objects::ObjectStoreConfig;
use kordon_operator::crd::{Camera, CameraStatus, Site, SiteStatus};
use kordon_operator::ingest::GrpcIngest;
use kordon_proto::storage::v1::storage_service_client::StorageServiceClient;
use kordon_runtime::admin::Readiness;
use kordon_runtime::client::{self, ClientOptions};
use kordon_runtime::config::{AuthConfig, CommonConfig, LogConfig};
use kordon_runtime::server::GrpcServer;
use kube::api::{Api, PostParams};
use serde_json::json;
use tokio_util::sync::CancellationToken;

const SITE: &str = "lobby";
const WAIT: Duration = Duration::from_secs(60);

fn free_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// A development-identity server config: callers need no credentials (as in
/// services/ingest/tests/record.rs).
fn common_config(dir: &Path) -> CommonConfig {
    CommonConfig {
        grpc_listen: "127.0.0.1:0".parse().unwrap(),
        admin_listen: free_addr(),
        data_dir: dir.to_path_buf(),
        log: LogConfig::default(),
        tls: None,
        auth: AuthConfig::default(),
        dev_identity: true,
    }
}

struct Server {
    addr: SocketAddr,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

async fn serve(server: GrpcServer) -> Server {
    let bound = server.bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = bound.local_addr();
    let stop = CancellationToken::new();
    let s = stop.clone();
    let task = tokio::spawn(async move {
        bound.serve(Readiness::new(), s).await.unwrap();
    });
    Server { addr, stop, task }
}

async fn start_storage(dir: &Path, objects: &ObjectStoreConfig) -> Server {
    let config = kordon_storage::StorageConfig {
        objects: Some(objects.clone()),
        http_listen: free_addr(),
        ..Default::default()
    };
    let storage = kordon_storage::Storage::open(&config, dir).await.unwrap();
    serve(
        GrpcServer::new("storage", &common_config(dir))
            .unwrap()
            .add_service(kordon_storage::grpc_service(storage)),
    )
    .await
}

/// The real ingest service, named as the site's replica 0 would be, serving gRPC.
async fn start_ingest(
    dir: &Path,
    objects: &ObjectStoreConfig,
    storage: SocketAddr,
    shutdown: CancellationToken,
) -> (Arc<Ingest>, Server) {
    let config = IngestConfig {
        replica: kordon_operator::placement::replica_name(SITE, 0),
        segment_duration: Duration::from_secs(2),
        stall_timeout: Duration::from_secs(3),
        spool_max_bytes: 512 * 1024 * 1024,
        ..IngestConfig::default()
    };
    let storage = StorageServiceClient::new(
        client::connect_lazy(&ClientOptions {
            server: format!("http://{storage}"),
            ..Default::default()
        })
        .unwrap(),
    );
    let ingest = Ingest::start(
        config,
        dir,
        Destinations {
            objects: kordon_objects::build(objects).unwrap(),
            local_objects: kordon_objects::build_local(objects).unwrap(),
            object_prefix: String::new(),
            storage,
        },
        shutdown,
    )
    .unwrap();
    let server = serve(
        GrpcServer::new("ingest", &common_config(dir))
            .unwrap()
            .add_service(kordon_ingest::grpc_service(kordon_ingest::IngestApi::new(
                ingest.clone(),
            ))),
    )
    .await;
    (ingest, server)
}

async fn camsim(cameras: usize) -> CamsimHandle {
    Camsim::start(CamsimConfig {
        cameras,
        listen: "127.0.0.1:0".parse().unwrap(),
        control_listen: None,
        codec: Codec::H264,
        source: Source::Clip,
        clip: ClipSource::Embedded,
        cache_dir: kordon_camsim::default_cache_dir(),
        bframes: 0,
        refuse_tcp: false,
    })
    .await
    .expect("camsim starts")
}

fn site_json() -> serde_json::Value {
    json!({
        "apiVersion": "kordon.io/v1alpha1",
        "kind": "Site",
        "metadata": { "name": SITE },
        "spec": {
            "displayName": "Lobby",
            "country": "BG",
            "timeZone": "Europe/Sofia",
            "storage": { "bucket": "kordon-lobby", "endpoint": "http://rgw.storage:7480", "retentionDays": 30 },
            "ingest": { "replicas": 1, "segmentSeconds": 2 },
        }
    })
}

fn camera_json(name: &str, record: &str) -> serde_json::Value {
    json!({
        "apiVersion": "kordon.io/v1alpha1",
        "kind": "Camera",
        "metadata": { "name": name },
        "spec": { "site": SITE, "streams": { "record": record } }
    })
}

fn condition<'a>(
    conditions: &'a [k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition],
    t: &str,
) -> Option<&'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    conditions.iter().find(|c| c.type_ == t)
}

/// Recording as a dashboard reads it: H.264 1920x1080 at ~25 fps on replica 0, a last segment.
fn recording_well(s: &CameraStatus) -> bool {
    s.state.as_deref() == Some("Recording")
        && condition(&s.conditions, "Recording").is_some_and(|c| c.status == "True")
        && condition(&s.conditions, "Ready").is_some_and(|c| c.status == "True")
        && s.codec.as_deref() == Some("H264")
        && s.resolution.as_deref() == Some("1920x1080")
        && s.fps.is_some_and(|f| (24.5..=25.5).contains(&f))
        && s.replica.as_deref() == Some("lobby-ingest-0")
        && s.shard == Some(0)
        && s.last_segment.is_some()
}

async fn camera_status(api: &Api<Camera>, name: &str) -> Option<CameraStatus> {
    api.get(name).await.ok()?.status
}

async fn site_status(api: &Api<Site>) -> Option<SiteStatus> {
    api.get(SITE).await.ok()?.status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn camera_status_comes_from_a_real_ingest() {
    let Some(client) = common::client().await else {
        return;
    };
    let started = Instant::now();
    common::install_crds(&client).await;
    let ns = common::namespace(&client, "kordon-ingest-status").await;

    let dir = tempfile::tempdir().unwrap();
    let objects = ObjectStoreConfig::Local {
        root: dir.path().join("media"),
    };
    let sim = camsim(2).await;
    let storage = start_storage(dir.path(), &objects).await;
    let shutdown = CancellationToken::new();
    let (ingest, ingest_server) =
        start_ingest(dir.path(), &objects, storage.addr, shutdown.clone()).await;

    // The operator, with the real gRPC client; every replica address is the in-process ingest.
    let mut config = kordon_operator::OperatorConfig {
        namespace: Some(ns.clone()),
        ..Default::default()
    };
    config.leader_election.enabled = false;
    config.ingest.address = format!("http://{}", ingest_server.addr);
    config.ingest.status_interval = Duration::from_secs(1);
    config.validate().expect("operator config is valid");
    assert_eq!(
        config.ingest.address_of(&ns, SITE, 0),
        format!("http://{}", ingest_server.addr)
    );
    let grpc = Arc::new(GrpcIngest::new(config.ingest.clone()));
    let stop = CancellationToken::new();
    let operator = {
        let client = client.clone();
        let token = stop.clone();
        tokio::spawn(async move {
            kordon_operator::controller::run_controllers(
                client,
                Arc::new(config),
                "kordon-tests",
                kordon_operator::controller::Clients {
                    ingest: grpc,
                    // Detection is not under test here.
                    detection: Arc::new(common::FakeDetection::default()),
                    alerting: Arc::new(common::FakeAlerting::default()),
                },
                token,
                || {},
            )
            .await
            .expect("controllers run");
        })
    };

    let sites: Api<Site> = Api::namespaced(client.clone(), &ns);
    let cameras: Api<Camera> = Api::namespaced(client.clone(), &ns);
    let pp = PostParams::default();
    sites
        .create(&pp, &serde_json::from_value(site_json()).unwrap())
        .await
        .unwrap();
    for (name, index) in [("door-1", 1), ("door-2", 2)] {
        let url = sim.url(index, StreamKind::Main).unwrap();
        cameras
            .create(
                &pp,
                &serde_json::from_value(camera_json(name, &url)).unwrap(),
            )
            .await
            .unwrap();
    }

    // Both record: the operator handed them to ingest, which pulls the RTSP streams; what ingest
    // measured is on the Cameras.
    for name in ["door-1", "door-2"] {
        let status = eventually(WAIT, || async {
            camera_status(&cameras, name).await.filter(recording_well)
        })
        .await;
        assert!(
            status.is_some(),
            "{name} not shown recording: {:#?}",
            camera_status(&cameras, name).await
        );
    }
    let recording_after = started.elapsed();
    assert!(
        ingest.board().get(SITE, "door-1").is_some(),
        "ingest holds the camera the operator applied"
    );
    let site = eventually(WAIT, || async {
        site_status(&sites).await.filter(|s| {
            s.cameras.total == 2
                && s.cameras.assigned == 2
                && s.cameras.recording == 2
                && s.cameras.offline == 0
                && s.cameras.unknown == 0
                && s.ingest.reachable_replicas == 1
                && condition(&s.conditions, "Ready").is_some_and(|c| c.status == "True")
        })
    })
    .await;
    assert!(
        site.is_some(),
        "site counts: {:#?}",
        site_status(&sites).await
    );

    // Camera 2 goes away: its status says why, as ingest reports it; camera 1 is untouched.
    sim.stop_camera(2).unwrap();
    let broken = eventually(WAIT, || async {
        camera_status(&cameras, "door-2").await.filter(|s| {
            let recording = condition(&s.conditions, "Recording");
            matches!(s.state.as_deref(), Some("Reconnecting" | "Offline"))
                && recording.is_some_and(|c| {
                    c.status == "False"
                        && (c.reason == "Reconnecting" || c.reason == "Offline")
                        && c.message.contains("404")
                })
                && condition(&s.conditions, "Ready").is_some_and(|c| c.status == "False")
                && s.last_error.as_deref().is_some_and(|e| e.contains("404"))
                && s.last_error_time.is_some()
        })
    })
    .await
    .unwrap_or_else(|| {
        panic!(
            "door-2 does not say why it stopped: {:#?}",
            ingest.board().get(SITE, "door-2")
        )
    });
    eprintln!(
        "door-2: {:?} — {}",
        broken.state,
        broken.last_error.as_deref().unwrap_or_default()
    );
    let site = eventually(WAIT, || async {
        site_status(&sites).await.filter(|s| {
            s.cameras.recording == 1
                && s.cameras.offline == 1
                && s.cameras.unknown == 0
                && condition(&s.conditions, "Ready").is_some_and(|c| c.status == "False")
                && condition(&s.conditions, "Degraded")
                    .is_some_and(|c| c.status == "True" && c.message.contains("offline"))
        })
    })
    .await;
    assert!(
        site.is_some(),
        "site counts after the stop: {:#?}",
        site_status(&sites).await
    );
    // Camera 1 kept recording throughout, and its segments go on.
    let door1 = camera_status(&cameras, "door-1").await.unwrap();
    assert!(recording_well(&door1), "door-1: {door1:#?}");
    assert!(door1.last_error.is_none(), "door-1: {door1:#?}");
    let last = door1.last_segment.clone().unwrap();
    let advanced = eventually(WAIT, || async {
        camera_status(&cameras, "door-1")
            .await
            .filter(|s| recording_well(s) && s.last_segment.as_ref().is_some_and(|t| t.0 > last.0))
    })
    .await;
    assert!(advanced.is_some(), "door-1's last segment does not advance");
    eprintln!(
        "recording shown after {:.1}s; whole test {:.1}s",
        recording_after.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );

    stop.cancel();
    operator.await.unwrap();
    shutdown.cancel();
    ingest.stopped().await;
    ingest_server.stop.cancel();
    ingest_server.task.await.unwrap();
    storage.stop.cancel();
    storage.task.await.unwrap();
    sim.shutdown().await;
    common::drop_namespace(&client, &ns).await;
}
