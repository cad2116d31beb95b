//! The operator against a real kube-apiserver and etcd (scripts/kube.sh): no kubelet, no
//! controller-manager, so workloads create no pods and nothing is garbage-collected — which is
//! why cleanup is checked object by object.
//!
//! Skipped with a note when `KORDON_TEST_KUBECONFIG` is unset; a failure under `CI`.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use common::{FakeAlerting, FakeDetection, FakeIngest, eventually};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Service};
use kordon_operator::crd::{AlertRule, Camera, Partner, Site};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(90);

fn site_json(name: &str, replicas: i32) -> serde_json::Value {
    json!({
        "apiVersion": "kordon.io/v1alpha1",
        "kind": "Site",
        "metadata": { "name": name },
        "spec": {
            "displayName": "Burgas Regional Directorate",
            "country": "BG",
            "timeZone": "Europe/Sofia",
            "storage": { "bucket": "kordon-burgas", "endpoint": "http://rgw.storage:7480", "retentionDays": 30 },
            "ingest": { "replicas": replicas },
            "detection": { "replicas": 2, "framesPerSecond": 4.0 },
        }
    })
}

fn camera_json(name: &str, site: &str) -> serde_json::Value {
    json!({
        "apiVersion": "kordon.io/v1alpha1",
        "kind": "Camera",
        "metadata": { "name": name },
        "spec": {
            "site": site,
            "streams": { "record": format!("rtsp://10.1.0.1:554/{name}/main"), "detect": format!("rtsp://10.1.0.1:554/{name}/sub") },
            "detection": {
                "zones": [{ "name": "gate", "points": [[0.1, 0.1], [0.9, 0.1], [0.5, 0.9]] }],
                "lines": [{ "name": "fence", "from": [0.0, 0.8], "to": [1.0, 0.7], "direction": "leftToRight" }],
                "motion": { "threshold": 0.01 },
            },
        }
    })
}

fn rule_json(name: &str, site: &str) -> serde_json::Value {
    json!({
        "apiVersion": "kordon.io/v1alpha1",
        "kind": "AlertRule",
        "metadata": { "name": name },
        "spec": {
            "site": site,
            "severity": "high",
            "classes": ["person"],
            "zone": { "zones": ["gate"], "minDwell": "5s" },
            "schedule": { "windows": [{ "days": ["mon", "tue"], "start": "22:00", "end": "06:00" }] },
            "cooldown": "1m",
        }
    })
}

async fn assignments(cameras: &Api<Camera>) -> BTreeMap<String, String> {
    cameras
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|c| Some((c.name_any(), c.status?.replica?)))
        .collect()
}

fn condition<'a>(
    conditions: &'a [k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition],
    t: &str,
) -> Option<&'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    conditions.iter().find(|c| c.type_ == t)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_site_with_50_cameras_is_deployed_scaled_and_cleaned_up() {
    let Some(client) = common::client().await else {
        return;
    };
    common::install_crds(&client).await;
    let ns = common::namespace(&client, "kordon-it").await;
    let ingest = Arc::new(FakeIngest::default());
    let detection = Arc::new(FakeDetection::default());
    let (stop, operator) = common::start_operator(
        &client,
        &ns,
        ingest.clone(),
        detection.clone(),
        Duration::from_secs(1),
    );

    let sites: Api<Site> = Api::namespaced(client.clone(), &ns);
    let cameras: Api<Camera> = Api::namespaced(client.clone(), &ns);
    let pp = PostParams::default();
    sites
        .create(
            &pp,
            &serde_json::from_value(site_json("burgas", 3)).unwrap(),
        )
        .await
        .unwrap();
    for i in 0..50 {
        let cam = camera_json(&format!("cam-{i:02}"), "burgas");
        cameras
            .create(&pp, &serde_json::from_value(cam).unwrap())
            .await
            .unwrap();
    }
    // One camera's stream is broken: its status must say why.
    ingest
        .broken
        .lock()
        .unwrap()
        .insert("cam-07".into(), "RTSP: 401 Unauthorized".into());

    // Workloads, configs and statuses appear.
    let sts_api: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
    let sts = eventually(WAIT, || async { sts_api.get("burgas-ingest").await.ok() })
        .await
        .expect("ingest StatefulSet");
    assert_eq!(sts.spec.replicas, Some(3));
    let owner = &sts.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str()),
        ("Site", "burgas")
    );
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    // Each object is applied separately: wait for every one read, not only the first.
    for c in ["storage", "transcode", "alerting"] {
        let name = format!("burgas-{c}");
        let d = eventually(WAIT, || async { deployments.get(&name).await.ok() })
            .await
            .unwrap_or_else(|| panic!("Deployment {name}"));
        assert_eq!(
            d.metadata.owner_references.as_ref().unwrap()[0].name,
            "burgas"
        );
    }
    let services: Api<Service> = Api::namespaced(client.clone(), &ns);
    let headless = eventually(WAIT, || async { services.get("burgas-ingest").await.ok() })
        .await
        .expect("ingest Service");
    assert_eq!(headless.spec.unwrap().cluster_ip.as_deref(), Some("None"));
    // Detection is sharded like ingest: its own StatefulSet behind its own headless Service.
    let detection_sts = eventually(WAIT, || async {
        sts_api.get("burgas-detection").await.ok()
    })
    .await
    .expect("detection StatefulSet");
    assert_eq!(detection_sts.spec.replicas, Some(2));
    assert_eq!(
        detection_sts.spec.service_name.as_deref(),
        Some("burgas-detection")
    );
    assert_eq!(
        detection_sts.metadata.owner_references.as_ref().unwrap()[0].name,
        "burgas"
    );
    let detection_svc = eventually(WAIT, || async {
        services.get("burgas-detection").await.ok()
    })
    .await
    .expect("detection Service");
    assert_eq!(
        detection_svc.spec.unwrap().cluster_ip.as_deref(),
        Some("None")
    );
    assert!(
        deployments
            .get_opt("burgas-detection")
            .await
            .unwrap()
            .is_none(),
        "no detection Deployment"
    );
    // Each detection replica holds exactly the cameras placed on it, with their zones and lines.
    let detection_address = |o: u32| format!("http://burgas-detection-{o}.{ns}.test:8470");
    let placed_on = |replicas: u32| {
        let mut want: std::collections::HashMap<String, Vec<String>> = Default::default();
        for i in 0..50 {
            let cam = format!("cam-{i:02}");
            if let Some(o) = kordon_operator::placement::replica_for("burgas", &cam, replicas) {
                want.entry(detection_address(o)).or_default().push(cam);
            }
        }
        want
    };
    let want = placed_on(2);
    eventually(WAIT, || async { (detection.held() == want).then_some(()) })
        .await
        .unwrap_or_else(|| panic!("detection shards: {:?}", detection.held()));
    {
        let replicas = detection.replicas.lock().unwrap();
        let c = replicas
            .values()
            .find_map(|s| s.get("cam-03"))
            .unwrap()
            .clone();
        assert_eq!(c.detect_url, "rtsp://10.1.0.1:554/cam-03/sub");
        let cfg = c.config.unwrap();
        assert_eq!(cfg.analysis_fps, 4.0, "the site's framesPerSecond");
        assert_eq!(cfg.zones[0].name, "gate");
        assert_eq!(cfg.zones[0].area.as_ref().unwrap().points.len(), 3);
        assert_eq!(cfg.lines[0].name, "fence");
        assert_eq!(
            cfg.lines[0].direction,
            kordon_proto::detection::v1::LineDirection::LeftToRight as i32
        );
        assert!((cfg.motion.unwrap().threshold - 0.01).abs() < 1e-6);
    }
    // No ConfigMap lists cameras: each ingest replica is handed its own over gRPC.
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let site_cm = eventually(WAIT, || async {
        config_maps.get("burgas-config").await.ok()
    })
    .await
    .expect("the site ConfigMap");
    let site_yaml = site_cm.data.unwrap()["site.yaml"].clone();
    assert!(!site_yaml.contains("rtsp://"));
    // Transcode's section: storage with its own certificate, this site's thumbnails and time
    // zone; and storage reaches transcode for viewer copies.
    let cfg: serde_yaml::Value = serde_yaml::from_str(&site_yaml).unwrap();
    let t = &cfg["transcode"];
    assert_eq!(
        t["storage"]["url"].as_str(),
        Some(format!("https://burgas-storage.{ns}.svc:8470").as_str())
    );
    assert_eq!(
        t["storage"]["cert_file"].as_str(),
        Some("/etc/kordon-tls/tls.crt")
    );
    assert_eq!(t["thumbnails"]["sites"][0].as_str(), Some("burgas"));
    assert_eq!(t["time_zones"]["burgas"].as_str(), Some("Europe/Sofia"));
    assert_eq!(t["encoder"].as_str(), Some("auto"));
    assert_eq!(
        cfg["storage"]["transcode"]["url"].as_str(),
        Some(format!("https://burgas-transcode.{ns}.svc:8470").as_str())
    );
    // Without a database: one transcode replica on its retained SQLite claim, rolled by the
    // digest of its config.
    let transcode = eventually(WAIT, || async {
        deployments.get("burgas-transcode").await.ok()
    })
    .await
    .expect("transcode Deployment");
    let spec = transcode.spec;
    assert_eq!(spec.replicas, Some(1));
    assert_eq!(spec.strategy.unwrap().type_.as_deref(), Some("Recreate"));
    let annotations = spec.template.metadata.unwrap().annotations.unwrap();
    assert_eq!(
        annotations[kordon_operator::transcode::CONFIG_ANNOTATION].len(),
        64,
        "{annotations:?}"
    );
    let pod = serde_json::to_value(spec.template.spec.unwrap()).unwrap();
    let claim = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == json!("data"))
        .unwrap()["persistentVolumeClaim"]["claimName"]
        .clone();
    assert_eq!(claim, json!("burgas-transcode-data"));
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns);
    eventually(WAIT, || async {
        pvcs.get_opt("burgas-transcode-data").await.ok()?
    })
    .await
    .expect("transcode's data claim");
    assert!(
        config_maps
            .get_opt("burgas-ingest")
            .await
            .unwrap()
            .is_none()
    );
    eventually(WAIT, || async {
        let replicas = ingest.replicas.lock().unwrap();
        let total: usize = replicas.values().map(|r| r.len()).sum();
        (replicas.len() == 3 && total == 50).then_some(())
    })
    .await
    .expect("all 50 cameras applied across the 3 ingest replicas");

    let all_ready = eventually(WAIT, || async {
        let list = cameras.list(&ListParams::default()).await.ok()?;
        let ready = list
            .items
            .iter()
            .filter(|c| {
                c.status.as_ref().is_some_and(|s| {
                    s.replica.is_some()
                        && condition(&s.conditions, "Ready").is_some_and(|c| c.status == "True")
                })
            })
            .count();
        (ready == 49).then_some(list)
    })
    .await
    .expect("49 cameras ready");
    let broken = all_ready
        .items
        .iter()
        .find(|c| c.name_any() == "cam-07")
        .unwrap();
    let st = broken.status.as_ref().unwrap();
    let rec = condition(&st.conditions, "Recording").unwrap();
    assert_eq!(
        (
            rec.status.as_str(),
            rec.reason.as_str(),
            rec.message.as_str()
        ),
        ("False", "Reconnecting", "RTSP: 401 Unauthorized")
    );
    let good = all_ready
        .items
        .iter()
        .find(|c| c.name_any() == "cam-01")
        .unwrap();
    let gs = good.status.as_ref().unwrap();
    assert_eq!(gs.codec.as_deref(), Some("H264"));
    assert_eq!(gs.resolution.as_deref(), Some("1920x1080"));
    assert_eq!(gs.fps, Some(25.0));
    assert!(gs.last_segment.is_some());
    assert_eq!(gs.observed_generation, good.metadata.generation);

    // Detecting, on the camera's own detection replica.
    let detecting = eventually(WAIT, || async {
        let c = cameras.get("cam-01").await.ok()?;
        let st = c.status?;
        (condition(&st.conditions, "Detecting")?.status == "True").then_some(st)
    })
    .await
    .expect("cam-01 detecting");
    let d = detecting.detection.unwrap();
    let o = kordon_operator::placement::replica_for("burgas", "cam-01", 2).unwrap();
    assert_eq!(d.replica, format!("burgas-detection-{o}"));
    assert_eq!(
        (d.state.as_deref(), d.provider.as_deref()),
        (Some("Running"), Some("cpu"))
    );

    // A detection replica that cannot be reached is reported with why, and retried.
    detection.down.lock().unwrap().insert(detection_address(o));
    let unavailable = eventually(WAIT, || async {
        let c = cameras.get("cam-01").await.ok()?;
        let d = condition(&c.status?.conditions, "Detecting")?.clone();
        (d.reason == "DetectionUnavailable").then_some(d)
    })
    .await
    .expect("cam-01 shows its detection replica unavailable");
    assert_eq!(unavailable.status, "Unknown");
    assert!(
        unavailable.message.contains("connection refused"),
        "{}",
        unavailable.message
    );
    let degraded = eventually(WAIT, || async {
        let st = sites.get("burgas").await.ok()?.status?;
        let d = condition(&st.conditions, "Degraded")?.clone();
        (d.message.contains("detection replicas unavailable")
            && st.detection.reachable_replicas == 1)
            .then_some(d)
    })
    .await
    .expect("site degraded by the unreachable detection replica");
    assert!(
        degraded.message.contains(&format!("burgas-detection-{o}")),
        "{}",
        degraded.message
    );
    detection.down.lock().unwrap().clear();
    eventually(WAIT, || async {
        let c = cameras.get("cam-01").await.ok()?;
        (condition(&c.status?.conditions, "Detecting")?.status == "True").then_some(())
    })
    .await
    .expect("cam-01 detecting again");

    // Scaling detection moves cameras with replace: each is held by its new replica only.
    sites
        .patch(
            "burgas",
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": { "detection": { "replicas": 3 } } })),
        )
        .await
        .unwrap();
    let want = placed_on(3);
    eventually(WAIT, || async { (detection.held() == want).then_some(()) })
        .await
        .unwrap_or_else(|| panic!("detection shards after scaling: {:?}", detection.held()));
    eventually(WAIT, || async {
        let s = sts_api.get("burgas-detection").await.ok()?;
        (s.spec.replicas == Some(3)).then_some(())
    })
    .await
    .expect("detection StatefulSet scaled to 3");
    // A deleted camera leaves its detection replica.
    cameras
        .delete("cam-49", &DeleteParams::default())
        .await
        .unwrap();
    eventually(WAIT, || async {
        let held = detection.held();
        held.values()
            .all(|s| !s.iter().any(|c| c == "cam-49"))
            .then_some(())
    })
    .await
    .expect("cam-49 removed from detection");
    // Steady state: no shard is sent again while nothing changes.
    let applies = detection.applies.lock().unwrap().clone();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        *detection.applies.lock().unwrap(),
        applies,
        "re-sent unchanged shards"
    );

    let site = eventually(WAIT, || async {
        let s = sites.get("burgas").await.ok()?;
        let st = s.status.clone()?;
        (st.cameras.total == 49 && st.cameras.recording == 48 && st.cameras.offline == 1)
            .then_some(s)
    })
    .await
    .expect("site counts");
    let st = site.status.unwrap();
    assert_eq!(st.ingest.replicas, 3);
    assert_eq!(
        st.ingest.selector,
        "kordon.io/site=burgas,app.kubernetes.io/component=ingest"
    );
    let degraded = condition(&st.conditions, "Degraded").unwrap();
    assert_eq!(degraded.status, "True");
    assert!(
        degraded.message.contains("1 cameras offline"),
        "{}",
        degraded.message
    );
    assert!(
        st.conditions
            .iter()
            .all(|c| c.observed_generation == site.metadata.generation)
    );
    assert!(
        site.metadata
            .finalizers
            .unwrap()
            .contains(&"kordon.io/site-cleanup".to_string())
    );

    // Scale through the scale subresource, as `kubectl scale site/burgas --replicas=4` does.
    let before = assignments(&cameras).await;
    assert_eq!(before.len(), 49);
    sites
        .patch_scale(
            "burgas",
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": { "replicas": 4 } })),
        )
        .await
        .unwrap();
    eventually(WAIT, || async {
        let s = sts_api.get("burgas-ingest").await.ok()?;
        (s.spec.replicas == Some(4)).then_some(())
    })
    .await
    .expect("StatefulSet scaled to 4");
    let after = eventually(WAIT, || async {
        let a = assignments(&cameras).await;
        let done = a.iter().all(|(cam, replica)| {
            kordon_operator::placement::replica_for("burgas", cam, 4)
                .map(|o| kordon_operator::placement::replica_name("burgas", o))
                .as_ref()
                == Some(replica)
        });
        (done && a.len() == 49).then_some(a)
    })
    .await
    .expect("cameras re-placed for 4 replicas");
    let moved: Vec<_> = before
        .iter()
        .filter(|(c, r)| after.get(*c) != Some(*r))
        .map(|(c, _)| c.clone())
        .collect();
    eprintln!("3 -> 4 replicas: {} of 50 cameras moved", moved.len());
    assert!(
        (4..=25).contains(&moved.len()),
        "about 1/4 should move, moved {}",
        moved.len()
    );
    for c in &moved {
        assert_eq!(
            after[c], "burgas-ingest-3",
            "{c} moved between surviving replicas"
        );
    }
    // Handover: every moved camera was released by its old replica, after the new one took it.
    eventually(WAIT, || async {
        let removed = ingest.removed.lock().unwrap().clone();
        moved
            .iter()
            .all(|c| removed.iter().any(|(_, r)| r == c))
            .then_some(())
    })
    .await
    .expect("old replicas let go of moved cameras");
    {
        let replicas = ingest.replicas.lock().unwrap();
        for c in &moved {
            let holders = replicas.values().filter(|s| s.contains_key(c)).count();
            assert_eq!(holders, 1, "{c} held by {holders} replicas");
        }
    }
    let scaled = eventually(WAIT, || async {
        let s = sites.get("burgas").await.ok()?;
        (s.status.as_ref()?.ingest.replicas == 4).then_some(s)
    })
    .await
    .expect("site status shows 4 replicas");
    assert_eq!(scaled.spec.ingest.replicas, 4);

    // Delete: the finalizer removes what the operator made (no garbage collector here).
    sites
        .delete("burgas", &DeleteParams::default())
        .await
        .unwrap();
    eventually(WAIT, || async {
        sites.get_opt("burgas").await.ok()?.is_none().then_some(())
    })
    .await
    .expect("site deleted once cleanup finished");
    let lp = ListParams::default().labels("kordon.io/site=burgas");
    assert!(sts_api.list(&lp).await.unwrap().items.is_empty());
    assert!(deployments.list(&lp).await.unwrap().items.is_empty());
    assert!(services.list(&lp).await.unwrap().items.is_empty());
    assert!(config_maps.list(&lp).await.unwrap().items.is_empty());
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns);
    for claim in [
        "burgas-storage-data",
        "burgas-alerting-data",
        "burgas-transcode-data",
    ] {
        eventually(WAIT, || async { claims.get_opt(claim).await.ok()? })
            .await
            .unwrap_or_else(|| panic!("the data claim {claim} is retained"));
    }
    // Cameras of a deleted site say so.
    eventually(WAIT, || async {
        let c = cameras.get("cam-01").await.ok()?;
        let r = condition(&c.status?.conditions, "Ready")?.reason.clone();
        (r == "SiteNotFound").then_some(())
    })
    .await
    .expect("camera reports its site missing");

    stop.cancel();
    operator.await.unwrap();
    common::drop_namespace(&client, &ns).await;
}

/// A site made before detection was sharded ran detection as a Deployment behind a ClusterIP
/// Service: the operator deletes the Deployment and replaces the Service with a headless one
/// (a cluster IP cannot be removed in place).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_earlier_detection_deployment_and_service_give_way_to_the_statefulset() {
    let Some(client) = common::client().await else {
        return;
    };
    common::install_crds(&client).await;
    let ns = common::namespace(&client, "kordon-upgrade").await;
    let labels = json!({ "kordon.io/site": "burgas", "app.kubernetes.io/component": "detection" });
    let services: Api<Service> = Api::namespaced(client.clone(), &ns);
    let old_svc = services
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": { "name": "burgas-detection", "labels": labels },
                "spec": { "selector": labels, "ports": [{ "name": "grpc", "port": 8470 }] },
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    let old_ip = old_svc.spec.unwrap().cluster_ip.unwrap();
    assert_ne!(old_ip, "None", "the earlier Service has a cluster IP");
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    deployments
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": { "name": "burgas-detection", "labels": labels },
                "spec": {
                    "selector": { "matchLabels": labels },
                    "template": {
                        "metadata": { "labels": labels },
                        "spec": { "containers": [{ "name": "detection", "image": "kordon/kordon:0.0.1" }] },
                    },
                },
            }))
            .unwrap(),
        )
        .await
        .unwrap();

    let ingest = Arc::new(FakeIngest::default());
    let detection = Arc::new(FakeDetection::default());
    let (stop, operator) =
        common::start_operator(&client, &ns, ingest, detection, Duration::from_secs(1));
    let sites: Api<Site> = Api::namespaced(client.clone(), &ns);
    sites
        .create(
            &PostParams::default(),
            &serde_json::from_value(site_json("burgas", 1)).unwrap(),
        )
        .await
        .unwrap();
    let sts_api: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
    eventually(WAIT, || async {
        sts_api.get("burgas-detection").await.ok()
    })
    .await
    .expect("detection StatefulSet");
    eventually(WAIT, || async {
        let svc = services.get("burgas-detection").await.ok()?;
        (svc.spec?.cluster_ip.as_deref() == Some("None")).then_some(())
    })
    .await
    .expect("the detection Service became headless");
    eventually(WAIT, || async {
        deployments
            .get_opt("burgas-detection")
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await
    .expect("the earlier detection Deployment is gone");

    stop.cancel();
    operator.await.unwrap();
    common::drop_namespace(&client, &ns).await;
}

/// The transcode Deployment's replicas, strategy and whether it reads the database URL.
async fn transcode_deployment(deployments: &Api<Deployment>) -> Option<(i32, String, bool)> {
    let spec = deployments.get("burgas-transcode").await.ok()?.spec;
    let env = spec.template.spec?.containers.first()?.env.clone()?;
    let database = env
        .iter()
        .any(|e| e.name == kordon_operator::transcode::DATABASE_URL_ENV);
    Some((spec.replicas?, spec.strategy?.type_?, database))
}

/// Transcode's jobs are in the Site's database when it has one (any number of replicas), else
/// in SQLite on a retained claim with one replica — the Site says so — and the Deployment
/// follows the Site both ways (its strategy changes in place).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transcode_runs_as_many_replicas_as_where_its_jobs_are_allows() {
    let Some(client) = common::client().await else {
        return;
    };
    common::install_crds(&client).await;
    let ns = common::namespace(&client, "kordon-transcode").await;
    let (stop, operator) = common::start_operator(
        &client,
        &ns,
        Arc::new(FakeIngest::default()),
        Arc::new(FakeDetection::default()),
        Duration::from_secs(1),
    );
    let sites: Api<Site> = Api::namespaced(client.clone(), &ns);
    let mut site = site_json("burgas", 1);
    site["spec"]["database"] = json!({ "secretName": "burgas-db" });
    site["spec"]["transcode"] = json!({
        "replicas": 3,
        "workers": 2,
        "thumbnails": { "automatic": true },
    });
    sites
        .create(
            &PostParams::default(),
            &serde_json::from_value(site).unwrap(),
        )
        .await
        .unwrap();
    // The apiserver fills in the defaults the operator renders.
    let stored = sites.get("burgas").await.unwrap();
    assert_eq!(stored.spec.transcode.encoder, "auto");
    assert_eq!(stored.spec.transcode.thumbnails.width, 320);
    assert_eq!(stored.spec.transcode.thumbnails.poll, "30s");

    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    eventually(WAIT, || async {
        let d = transcode_deployment(&deployments).await?;
        (d == (3, "RollingUpdate".to_string(), true)).then_some(())
    })
    .await
    .unwrap_or_else(|| {
        panic!("3 transcode replicas on the database");
    });
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let section = eventually(WAIT, || async {
        let cm = config_maps.get("burgas-config").await.ok()?;
        let cfg: serde_yaml::Value = serde_yaml::from_str(&cm.data?["site.yaml"]).ok()?;
        Some(cfg["transcode"].clone())
    })
    .await
    .expect("the site ConfigMap");
    assert_eq!(section["workers"].as_u64(), Some(2));
    assert_eq!(section["thumbnails"]["automatic"].as_bool(), Some(true));
    assert_eq!(section["thumbnails"]["poll"].as_str(), Some("30s"));
    assert!(
        section.get("database_url").is_none(),
        "no secret in the config"
    );
    let transcode_condition = |want: &'static str| {
        let sites = sites.clone();
        async move {
            eventually(WAIT, || async {
                let st = sites.get("burgas").await.ok()?.status?;
                let c = condition(&st.conditions, "Transcode")?.clone();
                (c.reason == want).then_some((c, st))
            })
            .await
            .unwrap_or_else(|| panic!("Transcode condition {want}"))
        }
    };
    let (c, _) = transcode_condition("Database").await;
    assert_eq!(c.status, "True");
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns);
    assert!(
        pvcs.get_opt("burgas-transcode-data")
            .await
            .unwrap()
            .is_none(),
        "no claim while the jobs are in the database"
    );

    // Without the database: SQLite on a retained claim, one replica, and the Site says why.
    let digest = |d: Deployment| -> Option<String> {
        d.spec
            .template
            .metadata?
            .annotations?
            .get(kordon_operator::transcode::CONFIG_ANNOTATION)
            .cloned()
    };
    let before = eventually(WAIT, || async {
        digest(deployments.get("burgas-transcode").await.ok()?)
    })
    .await
    .expect("the transcode config annotation");
    sites
        .patch(
            "burgas",
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": { "database": null } })),
        )
        .await
        .unwrap();
    eventually(WAIT, || async {
        let d = transcode_deployment(&deployments).await?;
        (d == (1, "Recreate".to_string(), false)).then_some(())
    })
    .await
    .unwrap_or_else(|| {
        panic!("one transcode replica on SQLite");
    });
    eventually(WAIT, || async {
        pvcs.get_opt("burgas-transcode-data").await.ok()?
    })
    .await
    .expect("transcode's data claim");
    let (c, st) = transcode_condition("ReplicasLimited").await;
    assert_eq!(c.status, "False");
    for want in ["replicas is 3", "burgas-transcode-data", "spec.database"] {
        assert!(c.message.contains(want), "{want}: {}", c.message);
    }
    let degraded = condition(&st.conditions, "Degraded").unwrap();
    assert!(
        degraded.message.contains("transcode runs 1 of 3 replicas"),
        "{}",
        degraded.message
    );
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), &ns);
    eventually(WAIT, || async {
        let list = events.list(&ListParams::default()).await.ok()?;
        list.items
            .into_iter()
            .find(|e| e.reason.as_deref() == Some("TranscodeReplicasLimited"))
            .filter(|e| e.type_.as_deref() == Some("Warning"))
    })
    .await
    .expect("a Warning event says transcode runs fewer replicas");

    // A setting transcode reads rolls its pods.
    sites
        .patch(
            "burgas",
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": { "transcode": { "thumbnails": { "width": 640 } } } })),
        )
        .await
        .unwrap();
    eventually(WAIT, || async {
        let d = digest(deployments.get("burgas-transcode").await.ok()?)?;
        (d != before).then_some(())
    })
    .await
    .expect("a new transcode config annotation");

    // The database back: every replica again, rolling.
    sites
        .patch(
            "burgas",
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": { "database": { "secretName": "burgas-db" } } })),
        )
        .await
        .unwrap();
    eventually(WAIT, || async {
        let d = transcode_deployment(&deployments).await?;
        (d == (3, "RollingUpdate".to_string(), true)).then_some(())
    })
    .await
    .unwrap_or_else(|| {
        panic!("3 transcode replicas on the database again");
    });
    transcode_condition("Database").await;

    stop.cancel();
    operator.await.unwrap();
    common::drop_namespace(&client, &ns).await;
}

/// Creates `obj` as it is (untyped: the apiserver, not serde, judges it).
async fn create<K>(client: &Client, ns: &str, obj: serde_json::Value) -> kube::Result<()>
where
    K: kube::Resource<DynamicType = ()>,
{
    let resource = kube::api::ApiResource::erase::<K>(&());
    let api: Api<kube::api::DynamicObject> = Api::namespaced_with(client.clone(), ns, &resource);
    api.create(
        &PostParams::default(),
        &serde_json::from_value(obj).unwrap(),
    )
    .await
    .map(|_| ())
}

async fn rejected(client: &Client, ns: &str, obj: serde_json::Value) -> String {
    let kind = obj["kind"].as_str().unwrap().to_string();
    let res = match kind.as_str() {
        "Site" => create::<Site>(client, ns, obj).await,
        "Camera" => create::<Camera>(client, ns, obj).await,
        "AlertRule" => create::<AlertRule>(client, ns, obj).await,
        "Partner" => create::<Partner>(client, ns, obj).await,
        other => panic!("no {other} here"),
    };
    match res {
        Err(kube::Error::Api(s)) => {
            assert_eq!(s.code, 422, "{s:?}");
            s.message
        }
        other => panic!("{kind} was not rejected: {other:?}"),
    }
}

#[tokio::test]
async fn invalid_resources_are_rejected_with_clear_messages() {
    let Some(client) = common::client().await else {
        return;
    };
    common::install_crds(&client).await;
    let ns = common::namespace(&client, "kordon-invalid").await;

    let mut cam = camera_json("bad", "");
    cam["spec"]["streams"]["record"] = json!("http://10.1.0.1/main");
    cam["spec"]["retentionDays"] = json!(0);
    cam["spec"]["detection"]["zones"][0]["points"][1] = json!([1.5, 0.2]);
    let msg = rejected(&client, &ns, cam).await;
    for want in [
        "spec.site is required",
        "streams.record must be an rtsp:// or rtsps:// URL",
        "retentionDays must be positive",
        "both must be within 0..1",
    ] {
        assert!(msg.contains(want), "missing {want:?} in {msg}");
    }

    let mut cam = camera_json("creds", "burgas");
    cam["spec"]["streams"]["record"] = json!("rtsp://admin:secret@10.1.0.1/main");
    let msg = rejected(&client, &ns, cam).await;
    assert!(msg.contains("must not carry credentials"), "{msg}");

    let mut cam = camera_json("lines", "burgas");
    let line = cam["spec"]["detection"]["lines"][0].clone();
    cam["spec"]["detection"]["lines"] = json!([line.clone(), line]);
    cam["spec"]["detection"]["framesPerSecond"] = json!(25);
    let msg = rejected(&client, &ns, cam).await;
    for want in [
        "Duplicate value",
        "detection.framesPerSecond must be in (0, 15]",
    ] {
        assert!(msg.contains(want), "missing {want:?} in {msg}");
    }

    let mut cam = camera_json("filters", "burgas");
    cam["spec"]["detection"]["filters"] = json!([
        { "class": "person", "minScore": 1.5 },
        { "class": "car", "minArea": 0.5, "maxArea": 0.1 },
    ]);
    let msg = rejected(&client, &ns, cam).await;
    for want in [
        "detection.filters.minScore must be within 0..1",
        "maxArea must not be below minArea",
    ] {
        assert!(msg.contains(want), "missing {want:?} in {msg}");
    }
    let mut cam = camera_json("filters-twice", "burgas");
    cam["spec"]["detection"]["filters"] =
        json!([{ "class": "person", "minScore": 0.6 }, { "class": "person" }]);
    let msg = rejected(&client, &ns, cam).await;
    assert!(msg.contains("Duplicate value"), "{msg}");

    let mut site = site_json("Bad_Name", 1);
    site["metadata"]["name"] = json!("a-very-long-site-name-that-is-over-forty-chars");
    site["spec"]["storage"]["objectLock"] = json!(true);
    site["spec"]["storage"]
        .as_object_mut()
        .unwrap()
        .remove("retentionDays");
    site["spec"]["ingest"]["replicas"] = json!(-1);
    site["spec"]["transcode"] = json!({
        "workers": 0,
        "encoder": "x264enc ! fakesink",
        "thumbnails": { "width": 8, "poll": "2h" },
    });
    // Alerting refuses plain HTTP to anything but its loopback: refused here, not crash-looping.
    site["spec"]["alertSinks"] = json!([
        { "name": "duty", "webhook": { "url": "http://hooks.example/duty", "signingSecret": "duty-hmac" } },
    ]);
    // Several token keys: each needs the `kid` it signs.
    site["spec"]["auth"] = json!({ "jwt": { "issuer": "https://sso.example", "audience": "kordon",
        "keys": [{ "algorithm": "EdDSA", "configMapName": "a" }, { "algorithm": "ES256", "configMapName": "b" }] } });
    let msg = rejected(&client, &ns, site).await;
    for want in [
        "with several keys each needs an `id`",
        "webhook.url must be an https:// URL",
        "at most 40 characters",
        "objectLock needs storage.retentionDays",
        "ingest.replicas must be between 0 and 1000",
        "transcode.workers must be between 1 and 64",
        "transcode.encoder must be auto, software or a GStreamer element name",
        "transcode.thumbnails.width must be between 16 and 3840",
        "transcode.thumbnails.poll must be between 1s and 1h",
    ] {
        assert!(msg.contains(want), "missing {want:?} in {msg}");
    }

    // Alert rules: the schema first (the apiserver checks CEL rules only on an object the
    // schema admits), then the CEL rules.
    let mut rule = rule_json("schema", "burgas");
    rule["spec"]["cooldown"] = json!("1 minute");
    rule["spec"]["severity"] = json!("urgent");
    rule["spec"]["site"] = json!("");
    rule["spec"]["zone"] = json!(null);
    rule["spec"]["line"] = json!({ "lines": [], "direction": "leftToRight" });
    let msg = rejected(&client, &ns, rule).await;
    for want in [
        "spec.cooldown",
        "spec.severity",
        "spec.site",
        "spec.line.lines",
        "spec.line.direction",
    ] {
        assert!(msg.contains(want), "missing {want:?} in {msg}");
    }
    let mut rule = rule_json("cel", "burgas");
    rule["spec"]["line"] = json!({ "lines": ["fence"], "direction": "left-to-right" });
    rule["spec"]["schedule"]["windows"][0]["start"] = json!("25:00");
    rule["spec"]["schedule"]["windows"]
        .as_array_mut()
        .unwrap()
        .push(json!({ "start": "08:00", "end": "8:30" }));
    rule["spec"]["minConfidence"] = json!(1.5);
    let msg = rejected(&client, &ns, rule).await;
    for want in [
        "an alert rule watches zones or lines, not both",
        "schedule.windows.start must be HH:MM",
        "schedule.windows.end must be HH:MM",
        "minConfidence must be within 0..1",
    ] {
        assert!(msg.contains(want), "missing {want:?} in {msg}");
    }
    // A well-formed rule is admitted (its Site need not exist yet) and cannot move.
    create::<AlertRule>(&client, &ns, rule_json("night-gate", "burgas"))
        .await
        .unwrap();
    let rules: Api<AlertRule> = Api::namespaced(client.clone(), &ns);
    let err = rules
        .patch(
            "night-gate",
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": { "site": "edirne" } })),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("spec.site cannot change"), "{err}");

    // A camera cannot move to another site.
    let cameras: Api<Camera> = Api::namespaced(client.clone(), &ns);
    cameras
        .create(
            &PostParams::default(),
            &serde_json::from_value(camera_json("gate-1", "burgas")).unwrap(),
        )
        .await
        .unwrap();
    let err = cameras
        .patch(
            "gate-1",
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": { "site": "edirne" } })),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("spec.site cannot change"), "{err}");

    // Partners: the schema (key length, form enum, severity enum), then the CEL rules.
    let mut p = partner_json("schema", "burgas", "edirne");
    p["spec"]["evidencePublicKey"] = json!("abcd");
    p["spec"]["shares"]["footage"]["form"] = json!("blurred");
    p["spec"]["receives"]["minSeverity"] = json!("urgent");
    p["spec"]["shares"]["footage"]["keepFor"] = json!("30 days");
    let msg = rejected(&client, &ns, p).await;
    for want in [
        "spec.evidencePublicKey",
        "spec.shares.footage.form",
        "\"original\", \"masked\"",
        "spec.receives.minSeverity",
        "spec.shares.footage.keepFor",
    ] {
        assert!(msg.contains(want), "missing {want:?} in {msg}");
    }
    let mut p = partner_json("cel", "burgas", "burgas");
    p["spec"]["evidencePublicKey"] = json!("zz".repeat(32));
    p["spec"]["endpoint"] = json!("http://partner.kordon.edirne.example:8473");
    p["spec"]["receives"] = json!({ "alerts": false, "snapshots": true });
    let msg = rejected(&client, &ns, p).await;
    for want in [
        "evidencePublicKey must be 64 hex digits",
        "endpoint must be an https://host[:port] URL",
        "spec.partnerSite must differ from spec.site",
        "minSeverity, rules and snapshots narrow alert sharing",
    ] {
        assert!(msg.contains(want), "missing {want:?} in {msg}");
    }
    // Both footage forms are admitted; a Partner cannot move to another Site.
    let mut masked = partner_json("masked", "burgas", "edirne");
    masked["spec"]["shares"]["footage"]["form"] = json!("masked");
    create::<Partner>(&client, &ns, masked).await.unwrap();
    create::<Partner>(
        &client,
        &ns,
        partner_json("original", "burgas", "kirklareli"),
    )
    .await
    .unwrap();
    let partners: Api<Partner> = Api::namespaced(client.clone(), &ns);
    let err = partners
        .patch(
            "original",
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": { "site": "yambol" } })),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("spec.site cannot change"), "{err}");
    common::drop_namespace(&client, &ns).await;
}

fn partner_json(name: &str, site: &str, partner_site: &str) -> serde_json::Value {
    json!({
        "apiVersion": "kordon.io/v1alpha1",
        "kind": "Partner",
        "metadata": { "name": name },
        "spec": {
            "site": site,
            "partnerSite": partner_site,
            "displayName": "Edirne İl Emniyet Müdürlüğü",
            "endpoint": format!("https://partner.kordon.{partner_site}.example:8473"),
            "ca": { "configMapName": format!("{partner_site}-ca") },
            "evidencePublicKey": "3b".repeat(32),
            "shares": {
                "alerts": true, "minSeverity": "high", "cameras": ["port-gate"], "snapshots": true,
                "footage": { "requests": true, "maxRange": "1h", "form": "original", "keepFor": "30d" },
            },
            "receives": { "alerts": true, "footage": { "requests": true, "maxRange": "1h" } },
        }
    })
}

#[tokio::test]
async fn only_one_replica_leads_and_a_release_hands_over_at_once() {
    use kordon_operator::leader::LeaderElector;
    let Some(client) = common::client().await else {
        return;
    };
    let ns = common::namespace(&client, "kordon-lease").await;
    let a = LeaderElector::new(
        client.clone(),
        &ns,
        "kordon-operator",
        "a",
        Duration::from_secs(6),
        Duration::from_millis(500),
    );
    let b = LeaderElector::new(
        client.clone(),
        &ns,
        "kordon-operator",
        "b",
        Duration::from_secs(6),
        Duration::from_millis(500),
    );
    assert!(a.try_acquire_or_renew().await.unwrap());
    assert!(!b.try_acquire_or_renew().await.unwrap());
    assert!(a.try_acquire_or_renew().await.unwrap(), "the holder renews");

    // `a` stops renewing: `b` takes over only after a full lease duration of silence.
    assert!(!b.try_acquire_or_renew().await.unwrap());
    // Wide margins both ways: a loaded machine may delay any step by seconds.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!b.try_acquire_or_renew().await.unwrap(), "too early");
    tokio::time::sleep(Duration::from_millis(5500)).await;
    assert!(
        b.try_acquire_or_renew().await.unwrap(),
        "expired lease taken"
    );
    assert!(!a.try_acquire_or_renew().await.unwrap(), "a lost it");

    // A leader that shuts down releases the lease, so `a` takes it without waiting.
    let shutdown = tokio_util::sync::CancellationToken::new();
    shutdown.cancel();
    b.hold(&shutdown).await.unwrap();
    assert!(
        a.try_acquire_or_renew().await.unwrap(),
        "released lease taken at once"
    );
    common::drop_namespace(&client, &ns).await;
}

/// Issue 10: a Camera's `spec.credentials` Secret reaches ingest (over ApplyCameras, never
/// through a ConfigMap); a camera whose Secret is missing waits with a status that names the
/// Secret, and records once the Secret appears.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn camera_credentials_come_from_their_secret() {
    use k8s_openapi::api::core::v1::Secret;
    let Some(client) = common::client().await else {
        return;
    };
    common::install_crds(&client).await;
    let ns = common::namespace(&client, "kordon-creds").await;
    let ingest = Arc::new(FakeIngest::default());
    let detection = Arc::new(FakeDetection::default());
    let (stop, operator) = common::start_operator(
        &client,
        &ns,
        ingest.clone(),
        detection.clone(),
        Duration::from_secs(1),
    );
    let pp = PostParams::default();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let secret = |name: &str, user: &str, pass: &str| -> Secret {
        serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": { "name": name },
            "stringData": { "user": user, "password": pass },
        }))
        .unwrap()
    };
    secrets
        .create(&pp, &secret("gate-rtsp", "operator-7", "Kapikule!2026"))
        .await
        .unwrap();
    let sites: Api<Site> = Api::namespaced(client.clone(), &ns);
    sites
        .create(
            &pp,
            &serde_json::from_value(site_json("burgas", 1)).unwrap(),
        )
        .await
        .unwrap();
    let cameras: Api<Camera> = Api::namespaced(client.clone(), &ns);
    for (cam, secret_name) in [("cam-a", "gate-rtsp"), ("cam-b", "later-rtsp")] {
        let mut c = camera_json(cam, "burgas");
        c["spec"]["credentials"] = json!({ "secretName": secret_name, "usernameKey": "user" });
        cameras
            .create(&pp, &serde_json::from_value(c).unwrap())
            .await
            .unwrap();
    }

    let held = |cam: &'static str| {
        let ingest = ingest.clone();
        move || {
            let ingest = ingest.clone();
            async move {
                ingest
                    .replicas
                    .lock()
                    .unwrap()
                    .values()
                    .find_map(|shard| shard.get(cam).cloned())
            }
        }
    };
    let spec = eventually(WAIT, held("cam-a"))
        .await
        .expect("cam-a applied to ingest");
    let creds = spec.resolved_credentials.expect("credentials sent");
    assert_eq!(
        (creds.username.as_str(), creds.password.as_str()),
        ("operator-7", "Kapikule!2026")
    );
    assert_eq!(spec.credentials.unwrap().secret_name, "gate-rtsp");

    // cam-b's Secret does not exist yet: not applied, and its status says which Secret.
    let waiting = eventually(WAIT, || async {
        let c = cameras.get("cam-b").await.ok()?;
        let ready = condition(&c.status?.conditions, "Ready")?.clone();
        (ready.reason == "CredentialsUnavailable").then_some(ready)
    })
    .await
    .expect("cam-b reports its missing Secret");
    assert!(
        waiting.message.contains("`later-rtsp` does not exist"),
        "{}",
        waiting.message
    );
    assert!(
        held("cam-b")().await.is_none(),
        "applied without credentials"
    );

    // The password never lands in a ConfigMap.
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    for cm in config_maps.list(&ListParams::default()).await.unwrap() {
        let text = serde_json::to_string(&cm.data).unwrap();
        assert!(
            !text.contains("Kapikule"),
            "password in ConfigMap {}",
            cm.name_any()
        );
    }

    // The Secret appears: cam-b is applied on the next pass and its status recovers.
    secrets
        .create(&pp, &secret("later-rtsp", "operator-9", "x"))
        .await
        .unwrap();
    let spec = eventually(WAIT, held("cam-b"))
        .await
        .expect("cam-b applied once its Secret exists");
    assert_eq!(spec.resolved_credentials.unwrap().username, "operator-9");
    eventually(WAIT, || async {
        let c = cameras.get("cam-b").await.ok()?;
        let ready = condition(&c.status?.conditions, "Ready")?.clone();
        (ready.status == "True").then_some(())
    })
    .await
    .expect("cam-b ready");

    stop.cancel();
    operator.await.unwrap();
    common::drop_namespace(&client, &ns).await;
}

/// The rules of `site.yaml`'s alerting section in ConfigMap `<site>-config`, by name.
async fn rendered_rules(config_maps: &Api<ConfigMap>, site: &str) -> Option<Vec<String>> {
    let cm = config_maps.get(&format!("{site}-config")).await.ok()?;
    let cfg: serde_yaml::Value = serde_yaml::from_str(cm.data?.get("site.yaml")?).ok()?;
    Some(
        cfg["alerting"]["rules"]
            .as_sequence()?
            .iter()
            .filter_map(|r| r["name"].as_str().map(str::to_string))
            .collect(),
    )
}

/// The rule's Ready condition once it is `status` with `reason`, for its current generation.
async fn rule_ready(
    rules: &Api<AlertRule>,
    name: &str,
    status: &str,
    reason: &str,
) -> Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    eventually(WAIT, || async {
        let r = rules.get(name).await.ok()?;
        let generation = r.metadata.generation;
        let st = r.status?;
        let ready = condition(&st.conditions, "Ready")?.clone();
        (ready.status == status
            && ready.reason == reason
            && st.observed_generation == generation
            && ready.observed_generation == generation)
            .then_some(ready)
    })
    .await
}

/// AlertRules are rendered into their Site's config (sorted, the alerting pods rolled by the
/// digest), say Ready once they are, and say why not when their sink or Site is missing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alert_rules_are_rendered_into_their_sites_config_or_say_why_not() {
    let Some(client) = common::client().await else {
        return;
    };
    common::install_crds(&client).await;
    let ns = common::namespace(&client, "kordon-rules").await;
    let (stop, operator) = common::start_operator(
        &client,
        &ns,
        Arc::new(FakeIngest::default()),
        Arc::new(FakeDetection::default()),
        Duration::from_secs(1),
    );
    let pp = PostParams::default();
    let mut site = site_json("burgas", 1);
    site["spec"]["alertSinks"] = json!([
        { "name": "duty", "webhook": { "url": "https://hooks.example/duty", "signingSecret": "duty-hmac" } },
        { "name": "scada", "mqtt": { "url": "mqtts://broker:8883", "topic": "kordon/burgas" } },
    ]);
    let sites: Api<Site> = Api::namespaced(client.clone(), &ns);
    sites
        .create(&pp, &serde_json::from_value(site).unwrap())
        .await
        .unwrap();
    let mut night = rule_json("night-fence", "burgas");
    night["spec"]["zone"] = json!(null);
    night["spec"]["line"] = json!({ "lines": ["fence"], "direction": "right-to-left" });
    let mut gate = rule_json("gate-dwell", "burgas");
    gate["spec"]["sinks"] = json!(["duty"]);
    let mut stray = rule_json("stray", "burgas");
    stray["spec"]["sinks"] = json!(["duty", "sms"]);
    let orphan = rule_json("orphan", "edirne");
    for rule in [night, gate, stray, orphan] {
        create::<AlertRule>(&client, &ns, rule).await.unwrap();
    }

    // Both good rules in the site's config, by name; the one with an unknown sink left out.
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    eventually(WAIT, || async {
        let names = rendered_rules(&config_maps, "burgas").await?;
        (names == ["gate-dwell", "night-fence"]).then_some(())
    })
    .await
    .expect("both rules rendered into burgas-config");
    let cm = eventually(WAIT, || async {
        config_maps.get("burgas-config").await.ok()
    })
    .await
    .expect("burgas-config");
    let cfg: serde_yaml::Value = serde_yaml::from_str(&cm.data.unwrap()["site.yaml"]).unwrap();
    let night = &cfg["alerting"]["rules"][1];
    assert_eq!(night["line"]["direction"].as_str(), Some("right_to_left"));
    assert_eq!(night["severity"].as_str(), Some("high"));
    assert_eq!(
        cfg["alerting"]["sinks"][0]["webhook"]["secret_file"].as_str(),
        Some("/var/run/kordon/sinks/duty/key")
    );

    let rules: Api<AlertRule> = Api::namespaced(client.clone(), &ns);
    for name in ["gate-dwell", "night-fence"] {
        let ready = rule_ready(&rules, name, "True", "Rendered")
            .await
            .unwrap_or_else(|| panic!("{name} Ready"));
        assert!(ready.message.contains("burgas-config"), "{}", ready.message);
    }
    let unknown = rule_ready(&rules, "stray", "False", "UnknownSink")
        .await
        .expect("stray reports its unknown sink");
    assert!(unknown.message.contains("`sms`"), "{}", unknown.message);
    let orphan = rule_ready(&rules, "orphan", "False", "SiteNotFound")
        .await
        .expect("orphan reports its missing Site");
    assert!(orphan.message.contains("`edirne`"), "{}", orphan.message);

    // The alerting pods carry the digest of the section; deleting a rule renders it out and
    // changes the digest.
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let digest = |d: Deployment| -> Option<String> {
        d.spec
            .template
            .metadata?
            .annotations?
            .get("kordon.io/alerting-config")
            .cloned()
    };
    let before = eventually(WAIT, || async {
        digest(deployments.get("burgas-alerting").await.ok()?)
    })
    .await
    .expect("the alerting Deployment carries the config digest");
    rules
        .delete("night-fence", &DeleteParams::default())
        .await
        .unwrap();
    eventually(WAIT, || async {
        let names = rendered_rules(&config_maps, "burgas").await?;
        (names == ["gate-dwell"]).then_some(())
    })
    .await
    .expect("the deleted rule is rendered out");
    eventually(WAIT, || async {
        let now = digest(deployments.get("burgas-alerting").await.ok()?)?;
        (now != before).then_some(())
    })
    .await
    .expect("the alerting pods roll with the rule set");

    // The Site gains the missing sink: the rule is rendered and says so.
    sites
        .patch(
            "burgas",
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": { "alertSinks": [
                { "name": "duty", "webhook": { "url": "https://hooks.example/duty", "signingSecret": "duty-hmac" } },
                { "name": "sms", "webhook": { "url": "https://sms.example/send", "signingSecret": "sms-hmac" } },
            ] } })),
        )
        .await
        .unwrap();
    rule_ready(&rules, "stray", "True", "Rendered")
        .await
        .expect("stray Ready once the Site has its sink");
    eventually(WAIT, || async {
        let names = rendered_rules(&config_maps, "burgas").await?;
        (names == ["gate-dwell", "stray"]).then_some(())
    })
    .await
    .expect("stray rendered");

    stop.cancel();
    operator.await.unwrap();
    common::drop_namespace(&client, &ns).await;
}

/// The partner sites of `site.yaml`'s partners section in ConfigMap `<site>-config`.
async fn rendered_partners(config_maps: &Api<ConfigMap>, site: &str) -> Option<Vec<String>> {
    let cm = config_maps.get(&format!("{site}-config")).await.ok()?;
    let cfg: serde_yaml::Value = serde_yaml::from_str(cm.data?.get("site.yaml")?).ok()?;
    Some(
        cfg["partners"]["partners"]
            .as_sequence()
            .map(|ps| {
                ps.iter()
                    .filter_map(|p| p["site"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default(),
    )
}

/// The Partner's status once its `type_` condition is `status` with `reason` for its current
/// generation.
async fn partner_condition(
    partners: &Api<Partner>,
    name: &str,
    type_: &str,
    status: &str,
    reason: &str,
) -> Option<kordon_operator::crd::PartnerStatus> {
    eventually(WAIT, || async {
        let p = partners.get(name).await.ok()?;
        let generation = p.metadata.generation;
        let st = p.status?;
        let c = condition(&st.conditions, type_)?;
        (c.status == status
            && c.reason == reason
            && st.observed_generation == generation
            && c.observed_generation == generation)
            .then_some(st)
    })
    .await
}

fn sharing_agreement(
    partner: &str,
    state: kordon_proto::alerting::v1::AgreementState,
    reason: &str,
) -> kordon_proto::alerting::v1::SharingAgreement {
    use kordon_proto::alerting::v1 as apb;
    apb::SharingAgreement {
        partner_site: partner.into(),
        status: Some(apb::SharingStatus {
            state: state as i32,
            state_reason: reason.into(),
            last_contact_at: Some(prost_types::Timestamp {
                seconds: 1_800_000_000,
                nanos: 0,
            }),
            terms_digest: "11".repeat(32),
            partner_terms_digest: "22".repeat(32),
            forwarded_total: 4,
            received_total: 2,
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Partners are rendered into their Site's config (and only their Site's), say why when they
/// cannot be, and show the bilateral state the site's alerting reports — a mismatch with its
/// reason, then acceptance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partners_are_rendered_into_their_sites_config_and_show_what_alerting_reports() {
    use kordon_proto::alerting::v1::AgreementState;
    let Some(client) = common::client().await else {
        return;
    };
    common::install_crds(&client).await;
    let ns = common::namespace(&client, "kordon-partners").await;
    let alerting = Arc::new(FakeAlerting::default());
    let (stop, operator) = common::start_operator_with_alerting(
        &client,
        &ns,
        Arc::new(FakeIngest::default()),
        Arc::new(FakeDetection::default()),
        alerting.clone(),
        Duration::from_secs(1),
    );
    let pp = PostParams::default();
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let ca =
        kordon_operator::pki::SiteCa::generate("edirne", "edirne", std::time::SystemTime::now())
            .unwrap();
    config_maps
        .create(
            &pp,
            &serde_json::from_value(json!({
                "metadata": { "name": "edirne-ca" },
                "data": { "ca.crt": ca.cert_pem() },
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    let sites: Api<Site> = Api::namespaced(client.clone(), &ns);
    for (name, link) in [("burgas", true), ("yambol", false)] {
        let mut site = site_json(name, 1);
        if link {
            site["spec"]["partnerLink"] = json!({ "hostnames": ["partner.kordon.burgas.example"] });
        }
        sites
            .create(&pp, &serde_json::from_value(site).unwrap())
            .await
            .unwrap();
    }
    for p in [
        partner_json("edirne", "burgas", "edirne"),
        partner_json("kirklareli", "burgas", "kirklareli"),
        partner_json("yambol-edirne", "yambol", "edirne"),
        partner_json("orphan", "varna", "edirne"),
    ] {
        create::<Partner>(&client, &ns, p).await.unwrap();
    }
    let partners: Api<Partner> = Api::namespaced(client.clone(), &ns);

    // Only burgas's partner with a usable CA is rendered, into burgas's config only.
    eventually(WAIT, || async {
        let names = rendered_partners(&config_maps, "burgas").await?;
        (names == ["edirne"]).then_some(())
    })
    .await
    .expect("edirne rendered into burgas-config");
    let cm = eventually(WAIT, || async {
        config_maps.get("burgas-config").await.ok()
    })
    .await
    .expect("burgas-config");
    let cfg: serde_yaml::Value = serde_yaml::from_str(&cm.data.unwrap()["site.yaml"]).unwrap();
    let section: kordon_runtime::partner::PartnersConfig =
        serde_yaml::from_value(cfg["partners"].clone()).expect("the services' PartnersConfig");
    assert_eq!(section.site, "burgas");
    let edirne = &section.partners[0];
    assert_eq!(
        edirne.endpoint,
        "https://partner.kordon.edirne.example:8473"
    );
    assert_eq!(edirne.shares.min_severity.as_deref(), Some("high"));
    assert_eq!(edirne.receives.footage.max_range, Duration::from_secs(3600));
    assert_eq!(
        edirne.ca_file,
        std::path::PathBuf::from("/var/run/kordon/partners/edirne/ca.crt")
    );
    let yambol = eventually(WAIT, || async {
        let cm = config_maps.get("yambol-config").await.ok()?;
        cm.data?.get("site.yaml").cloned()
    })
    .await
    .expect("yambol-config");
    assert!(!yambol.contains("partners:"), "{yambol}");

    // Alerting and storage roll with the partners; the link's certificate was issued.
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    for component in ["alerting", "storage"] {
        eventually(WAIT, || async {
            let d = deployments.get(&format!("burgas-{component}")).await.ok()?;
            d.spec
                .template
                .metadata?
                .annotations?
                .get("kordon.io/partners-config")
                .map(|_| ())
        })
        .await
        .unwrap_or_else(|| panic!("burgas-{component} carries the partners digest"));
    }
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(client.clone(), &ns);
    let link = eventually(WAIT, || async {
        let secret = secrets.get("burgas-partner-link-tls").await.ok()?;
        let pem = secret.data?.get("tls.crt")?.0.clone();
        String::from_utf8(pem).ok()
    })
    .await
    .expect("the partner-link certificate");
    let info = kordon_operator::pki::inspect(&link).unwrap();
    assert_eq!(info.identities.len(), 1);
    assert_eq!(info.identities[0].site, "burgas");
    assert_eq!(info.identities[0].component, "partner-link");
    for name in [
        "partner.kordon.burgas.example".to_string(),
        format!("burgas-alerting.{ns}.svc"),
        format!("burgas-storage.{ns}.svc"),
    ] {
        assert!(
            info.dns_names.contains(&name),
            "{name}: {:?}",
            info.dns_names
        );
    }

    // Those that cannot be rendered say why.
    let st = partner_condition(&partners, "kirklareli", "Accepted", "False", "CaNotFound")
        .await
        .expect("kirklareli reports its missing CA");
    assert!(
        condition(&st.conditions, "Accepted")
            .unwrap()
            .message
            .contains("kirklareli-ca"),
        "{st:?}"
    );
    partner_condition(
        &partners,
        "yambol-edirne",
        "Accepted",
        "False",
        "PartnerLinkMissing",
    )
    .await
    .expect("yambol has no partner link");
    partner_condition(&partners, "orphan", "Accepted", "False", "SiteNotFound")
        .await
        .expect("orphan reports its missing Site");

    // Alerting not answering: Unknown, never made up.
    partner_condition(
        &partners,
        "edirne",
        "Agreed",
        "Unknown",
        "AlertingUnreachable",
    )
    .await
    .expect("edirne: alerting unreachable");

    // Alerting reports a mismatch, then acceptance.
    let address = format!("http://burgas-alerting.{ns}.test:8470");
    let why = "the agreements differ: what edirne shares with burgas (burgas vs edirne) — footage.requests: true vs false";
    alerting.agreements.lock().unwrap().insert(
        address.clone(),
        vec![sharing_agreement("edirne", AgreementState::Mismatch, why)],
    );
    let st = partner_condition(&partners, "edirne", "Agreed", "False", "Mismatch")
        .await
        .expect("edirne shows the mismatch");
    assert_eq!(st.state.as_deref(), Some("Mismatch"));
    assert_eq!(st.state_reason.as_deref(), Some(why));
    assert_eq!(condition(&st.conditions, "Agreed").unwrap().message, why);
    assert_eq!(condition(&st.conditions, "Ready").unwrap().status, "False");
    assert_eq!(st.terms_digest, Some("11".repeat(32)));
    assert_eq!(st.partner_terms_digest, Some("22".repeat(32)));
    assert_eq!((st.forwarded, st.received), (Some(4), Some(2)));
    assert!(st.last_contact.is_some());

    alerting.agreements.lock().unwrap().insert(
        address.clone(),
        vec![sharing_agreement("edirne", AgreementState::Accepted, "")],
    );
    let st = partner_condition(&partners, "edirne", "Ready", "True", "Agreed")
        .await
        .expect("edirne Ready once both sides agree");
    assert_eq!(st.state.as_deref(), Some("Accepted"));
    assert_eq!(st.state_reason, None);

    // The missing CA appears: kirklareli is rendered too.
    config_maps
        .create(
            &pp,
            &serde_json::from_value(json!({
                "metadata": { "name": "kirklareli-ca" },
                "data": { "ca.crt": ca.cert_pem() },
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    partner_condition(&partners, "kirklareli", "Accepted", "True", "Rendered")
        .await
        .expect("kirklareli accepted once its CA exists");
    eventually(WAIT, || async {
        let names = rendered_partners(&config_maps, "burgas").await?;
        (names == ["edirne", "kirklareli"]).then_some(())
    })
    .await
    .expect("kirklareli rendered");

    stop.cancel();
    operator.await.unwrap();
    common::drop_namespace(&client, &ns).await;
}
