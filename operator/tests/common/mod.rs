//! Shared by the tests that run against a real kube-apiserver (scripts/kube.sh): the client,
//! a fresh namespace per test, the CRDs, and stand-ins for ingest and detection that record
//! what the operator tells them.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kordon_operator::ingest::Replica;
use kordon_proto::common::v1 as common;
use kordon_proto::detection::v1 as dpb;
use kordon_proto::ingest::v1 as pb;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, CustomResourceExt};

/// The test cluster's client, or `None` (with a note) when no cluster is configured. Under
/// CI a missing cluster is a failure: CI must run these tests.
pub async fn client() -> Option<Client> {
    let Ok(path) = std::env::var("KORDON_TEST_KUBECONFIG") else {
        if std::env::var_os("CI").is_some() {
            panic!("CI is set but KORDON_TEST_KUBECONFIG is not: start scripts/kube.sh first");
        }
        eprintln!(
            "skipped: KORDON_TEST_KUBECONFIG is not set (bash scripts/kube.sh start; \
             eval \"$(bash scripts/kube.sh env)\")"
        );
        return None;
    };
    kordon_runtime::install_crypto_provider();
    let kc = Kubeconfig::read_from(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .expect("kubeconfig");
    Some(Client::try_from(config).expect("client"))
}

/// Installs (server-side applies) the CRDs and waits until they are served.
pub async fn install_crds(client: &Client) {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in [
        kordon_operator::crd::Site::crd(),
        kordon_operator::crd::Camera::crd(),
        kordon_operator::crd::AlertRule::crd(),
        kordon_operator::crd::Partner::crd(),
    ] {
        let name = crd.metadata.name.clone().unwrap();
        api.patch(
            &name,
            &PatchParams::apply("kordon-tests").force(),
            &Patch::Apply(&crd),
        )
        .await
        .expect("CRD applies");
        eventually(Duration::from_secs(30), || async {
            let c = api.get(&name).await.ok()?;
            c.status?
                .conditions?
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True")
                .then_some(())
        })
        .await
        .unwrap_or_else(|| panic!("{name} not established"));
    }
}

/// A fresh namespace named after the test.
pub async fn namespace(client: &Client, prefix: &str) -> String {
    let name = format!(
        "{prefix}-{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis()
            % 1_000_000_000
    );
    let api: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(serde_json::json!({
        "metadata": { "name": name }
    }))
    .unwrap();
    api.create(&PostParams::default(), &ns)
        .await
        .expect("namespace");
    name
}

/// Namespaces are not removed by this control plane (no namespace controller); deleting
/// marks them, which is enough to tell test runs apart.
pub async fn drop_namespace(client: &Client, name: &str) {
    let api: Api<Namespace> = Api::all(client.clone());
    let _ = api.delete(name, &DeleteParams::default()).await;
}

/// Polls `check` until it returns `Some` or `timeout` passes.
pub async fn eventually<T, F, Fut>(timeout: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = check().await {
            return Some(v);
        }
        if start.elapsed() > timeout {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Ingest stand-in: replicas (by address) hold what ApplyCameras gave them and report those
/// cameras recording, as a healthy ingest would once the stream is up.
#[derive(Default)]
pub struct FakeIngest {
    pub replicas: Mutex<HashMap<String, BTreeMap<String, pb::CameraSpec>>>,
    /// Every RemoveCamera: (address, camera).
    pub removed: Mutex<Vec<(String, String)>>,
    /// Cameras reported as reconnecting with this error, by name.
    pub broken: Mutex<HashMap<String, String>>,
}

impl kordon_operator::ingest::IngestClient for FakeIngest {
    fn list(
        &self,
        replica: Replica,
        site: String,
    ) -> BoxFuture<'static, Result<Vec<pb::CameraStatus>, String>> {
        let address = replica.address;
        let held = self
            .replicas
            .lock()
            .unwrap()
            .get(&address)
            .cloned()
            .unwrap_or_default();
        let broken = self.broken.lock().unwrap().clone();
        Box::pin(async move {
            Ok(held
                .into_iter()
                .map(|(name, spec)| {
                    let error = broken.get(&name).cloned();
                    pb::CameraStatus {
                        camera: Some(common::CameraRef {
                            site: site.clone(),
                            camera: name,
                        }),
                        state: if error.is_some() {
                            pb::CameraState::Reconnecting
                        } else {
                            pb::CameraState::Recording
                        } as i32,
                        codec: common::VideoCodec::H264 as i32,
                        width: 1920,
                        height: 1080,
                        fps: 25.0,
                        bitrate_bps: 4_000_000,
                        last_segment_end: Some(prost_types::Timestamp {
                            seconds: 1_800_000_000,
                            nanos: 0,
                        }),
                        last_error: error.unwrap_or_default(),
                        spec_generation: spec.generation,
                        ..Default::default()
                    }
                })
                .collect())
        })
    }

    fn apply(
        &self,
        replica: Replica,
        cameras: Vec<pb::CameraSpec>,
    ) -> BoxFuture<'static, Result<(), String>> {
        let address = replica.address;
        let mut r = self.replicas.lock().unwrap();
        let shard = r.entry(address).or_default();
        for c in cameras {
            let name = c.camera.as_ref().unwrap().camera.clone();
            shard.insert(name, c);
        }
        Box::pin(async { Ok(()) })
    }

    fn remove(
        &self,
        replica: Replica,
        camera: common::CameraRef,
    ) -> BoxFuture<'static, Result<(), String>> {
        let address = replica.address;
        if let Some(shard) = self.replicas.lock().unwrap().get_mut(&address) {
            shard.remove(&camera.camera);
        }
        self.removed
            .lock()
            .unwrap()
            .push((address, camera.camera.clone()));
        Box::pin(async { Ok(()) })
    }
}

/// Detection stand-in: replicas (by address) hold exactly the shard the last ApplyCameras
/// (replace) gave them and report those cameras running; addresses in `down` cannot be reached.
#[derive(Default)]
pub struct FakeDetection {
    pub replicas: Mutex<HashMap<String, BTreeMap<String, dpb::DetectionCamera>>>,
    /// Addresses that answer nothing.
    pub down: Mutex<HashSet<String>>,
    /// How many ApplyCameras calls each address received.
    pub applies: Mutex<HashMap<String, usize>>,
}

impl FakeDetection {
    /// The cameras each replica holds, by address.
    pub fn held(&self) -> HashMap<String, Vec<String>> {
        self.replicas
            .lock()
            .unwrap()
            .iter()
            .map(|(a, s)| (a.clone(), s.keys().cloned().collect()))
            .collect()
    }
}

impl kordon_operator::detection::DetectionClient for FakeDetection {
    fn status(
        &self,
        replica: Replica,
        site: String,
    ) -> BoxFuture<'static, Result<dpb::GetDetectorStatusResponse, String>> {
        if self.down.lock().unwrap().contains(&replica.address) {
            return Box::pin(async { Err("Unavailable: connection refused".to_string()) });
        }
        let held = self
            .replicas
            .lock()
            .unwrap()
            .get(&replica.address)
            .cloned()
            .unwrap_or_default();
        Box::pin(async move {
            Ok(dpb::GetDetectorStatusResponse {
                model: Some(dpb::ModelInfo {
                    name: "nanodet-m-416".into(),
                    execution_provider: "cpu".into(),
                    ..Default::default()
                }),
                replica: String::new(),
                cameras: held
                    .into_iter()
                    .map(|(name, c)| dpb::CameraDetectorStatus {
                        camera: Some(common::CameraRef {
                            site: site.clone(),
                            camera: name,
                        }),
                        state: dpb::DetectorState::Running as i32,
                        config_generation: c.generation,
                        ..Default::default()
                    })
                    .collect(),
            })
        })
    }

    fn replace(
        &self,
        replica: Replica,
        cameras: Vec<dpb::DetectionCamera>,
    ) -> BoxFuture<'static, Result<dpb::ApplyCamerasResponse, String>> {
        if self.down.lock().unwrap().contains(&replica.address) {
            return Box::pin(async { Err("Unavailable: connection refused".to_string()) });
        }
        *self
            .applies
            .lock()
            .unwrap()
            .entry(replica.address.clone())
            .or_default() += 1;
        let shard = cameras
            .into_iter()
            .map(|c| (c.camera.as_ref().unwrap().camera.clone(), c))
            .collect();
        self.replicas.lock().unwrap().insert(replica.address, shard);
        Box::pin(async { Ok(dpb::ApplyCamerasResponse::default()) })
    }
}

/// Alerting stand-in: answers `ListSharingAgreements` with what the test put in `agreements`
/// for the address asked (`http://{service}.{namespace}.test:8470`); addresses without an
/// entry answer Unavailable. Every address asked is recorded.
#[derive(Default)]
pub struct FakeAlerting {
    pub agreements: Mutex<HashMap<String, Vec<kordon_proto::alerting::v1::SharingAgreement>>>,
    pub asked: Mutex<Vec<String>>,
}

impl kordon_operator::partner::AlertingClient for FakeAlerting {
    fn agreements(
        &self,
        endpoint: Replica,
    ) -> BoxFuture<'static, Result<Vec<kordon_proto::alerting::v1::SharingAgreement>, String>> {
        self.asked.lock().unwrap().push(endpoint.address.clone());
        let answer = self
            .agreements
            .lock()
            .unwrap()
            .get(&endpoint.address)
            .cloned()
            .ok_or_else(|| "Unavailable: connection refused".to_string());
        Box::pin(async move { answer })
    }
}

/// Runs the operator's controllers in this process until the returned token is cancelled.
/// Replica addresses are `http://{pod}.{namespace}.test:8470`; alerting is never reachable.
pub fn start_operator(
    client: &Client,
    namespace: &str,
    ingest: Arc<dyn kordon_operator::ingest::IngestClient>,
    detection: Arc<dyn kordon_operator::detection::DetectionClient>,
    status_interval: Duration,
) -> (
    tokio_util::sync::CancellationToken,
    tokio::task::JoinHandle<()>,
) {
    start_operator_with_alerting(
        client,
        namespace,
        ingest,
        detection,
        Arc::new(FakeAlerting::default()),
        status_interval,
    )
}

/// [`start_operator`] with an alerting stand-in, asked at
/// `http://{service}.{namespace}.test:8470` every `status_interval`.
pub fn start_operator_with_alerting(
    client: &Client,
    namespace: &str,
    ingest: Arc<dyn kordon_operator::ingest::IngestClient>,
    detection: Arc<dyn kordon_operator::detection::DetectionClient>,
    alerting: Arc<dyn kordon_operator::partner::AlertingClient>,
    status_interval: Duration,
) -> (
    tokio_util::sync::CancellationToken,
    tokio::task::JoinHandle<()>,
) {
    let mut config = kordon_operator::OperatorConfig {
        namespace: Some(namespace.to_string()),
        ..Default::default()
    };
    config.leader_election.enabled = false;
    config.ingest.address = "http://{pod}.{namespace}.test:8470".to_string();
    config.detection.address = "http://{pod}.{namespace}.test:8470".to_string();
    config.ingest.status_interval = status_interval;
    config.alerting.address = "http://{service}.{namespace}.test:8470".to_string();
    config.alerting.poll_interval = status_interval;
    let stop = tokio_util::sync::CancellationToken::new();
    let client = client.clone();
    let token = stop.clone();
    let handle = tokio::spawn(async move {
        kordon_operator::controller::run_controllers(
            client,
            Arc::new(config),
            "kordon-tests",
            kordon_operator::controller::Clients {
                ingest,
                detection,
                alerting,
            },
            token,
            || {},
        )
        .await
        .expect("controllers run");
    });
    (stop, handle)
}
