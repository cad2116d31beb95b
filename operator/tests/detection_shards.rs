//! The Site reconciler's detection step (`detection::sync`) against a stand-in detection
//! (`common::FakeDetection`): each replica is given exactly its shard, moves and deletions
//! follow by replace, nothing is re-sent while nothing changes, and an unreachable or
//! restarted replica is recorded and then brought back to its shard. No cluster is needed.

mod common;

use std::sync::Arc;

use common::FakeDetection;
use kordon_operator::config::DetectionClientConfig;
use kordon_operator::crd::{Camera, Site};
use kordon_operator::detection::{self, Applied, SiteObservation};
use kube::ResourceExt;
use serde_json::json;

fn site(detection_replicas: i32) -> Site {
    serde_json::from_value(json!({
        "apiVersion": "kordon.io/v1alpha1", "kind": "Site",
        "metadata": { "name": "s", "namespace": "ns", "generation": 1 },
        "spec": {
            "storage": { "bucket": "kordon-s" },
            "detection": { "replicas": detection_replicas },
        },
    }))
    .unwrap()
}

fn cameras(n: usize) -> Vec<Arc<Camera>> {
    (0..n)
        .map(|i| {
            Arc::new(
                serde_json::from_value(json!({
                    "apiVersion": "kordon.io/v1alpha1", "kind": "Camera",
                    "metadata": { "name": format!("c{i:02}"), "namespace": "ns", "generation": 1 },
                    "spec": { "site": "s", "streams": { "record": format!("rtsp://10.0.0.1/c{i:02}") } },
                }))
                .unwrap(),
            )
        })
        .collect()
}

fn address(ordinal: u32) -> String {
    DetectionClientConfig::default().address_of("ns", "s", ordinal)
}

/// What each replica should hold, by address.
fn placed(s: &Site, cams: &[Arc<Camera>]) -> std::collections::HashMap<String, Vec<String>> {
    detection::shards(s, cams)
        .iter()
        .enumerate()
        .map(|(o, shard)| {
            let names = shard
                .iter()
                .map(|c| c.camera.as_ref().unwrap().camera.clone())
                .collect();
            (address(o as u32), names)
        })
        .collect()
}

async fn sync(
    fake: &FakeDetection,
    applied: &Applied,
    s: &Site,
    cams: &[Arc<Camera>],
) -> SiteObservation {
    let resolve: detection::ResolveCredentials = Arc::new(|r| {
        Box::pin(async move {
            match r.secret_name.as_str() {
                "good" => Ok(kordon_proto::common::v1::RtspCredentials {
                    username: "viewer".into(),
                    password: "s3cret".into(),
                }),
                other => Err(format!("Secret `{other}` does not exist in namespace `ns`")),
            }
        })
    });
    sync_with(fake, applied, s, cams, &resolve).await
}

async fn sync_with(
    fake: &FakeDetection,
    applied: &Applied,
    s: &Site,
    cams: &[Arc<Camera>],
    resolve: &detection::ResolveCredentials,
) -> SiteObservation {
    let config = DetectionClientConfig::default();
    detection::sync(fake, applied, &config, None, "ns", s, cams, resolve).await
}

fn applies(fake: &FakeDetection) -> usize {
    fake.applies.lock().unwrap().values().sum()
}

#[tokio::test]
async fn each_replica_is_given_exactly_its_shard_and_moves_and_deletions_follow_by_replace() {
    let fake = FakeDetection::default();
    let applied = Applied::default();
    let mut s = site(2);
    let mut cams = cameras(20);
    let obs = sync(&fake, &applied, &s, &cams).await;
    assert_eq!(obs.reachable(), 2);
    assert_eq!(fake.held(), placed(&s, &cams));
    for (o, r) in obs.replicas.iter().enumerate() {
        assert_eq!(
            Some(&r.cameras.keys().cloned().collect::<Vec<_>>()),
            fake.held().get(&address(o as u32)),
            "the observation is what the replica holds after the apply"
        );
    }
    let d = obs.replicas[0].cameras.values().next().unwrap();
    assert_eq!(
        (d.model.as_str(), d.provider.as_str()),
        ("nanodet-m-416", "cpu")
    );
    assert_eq!(applies(&fake), 2);

    // Nothing changed: nothing is sent.
    sync(&fake, &applied, &s, &cams).await;
    assert_eq!(applies(&fake), 2);

    // A site-wide rate changes no camera's generation, yet reaches every replica.
    s.spec.detection.frames_per_second = Some(2.0);
    sync(&fake, &applied, &s, &cams).await;
    assert_eq!(applies(&fake), 4);
    let replicas = fake.replicas.lock().unwrap().clone();
    assert!(
        replicas
            .values()
            .flat_map(|r| r.values())
            .all(|c| c.config.as_ref().unwrap().analysis_fps == 2.0)
    );

    // Scale to 3 and delete a camera: every replica gets its new exact shard in one call.
    s.spec.detection.replicas = 3;
    cams.retain(|c| c.name_any() != "c05");
    sync(&fake, &applied, &s, &cams).await;
    assert_eq!(fake.held(), placed(&s, &cams));
    let all: Vec<String> = fake.held().into_values().flatten().collect();
    assert_eq!(all.len(), 19, "each camera on one replica: {all:?}");
    assert!(!all.contains(&"c05".to_string()));

    // Detection off: no replica is asked.
    s.spec.detection.replicas = 0;
    assert!(sync(&fake, &applied, &s, &cams).await.replicas.is_empty());
}

#[tokio::test]
async fn an_unreachable_replica_is_recorded_with_why_and_retried_next_time() {
    let fake = FakeDetection::default();
    let applied = Applied::default();
    let s = site(2);
    let cams = cameras(10);
    fake.down.lock().unwrap().insert(address(1));
    let obs = sync(&fake, &applied, &s, &cams).await;
    assert_eq!(obs.reachable(), 1);
    assert_eq!(obs.replicas[1].name, "s-detection-1");
    assert_eq!(
        obs.replicas[1].error.as_deref(),
        Some("Unavailable: connection refused")
    );
    assert!(!fake.held().contains_key(&address(1)));

    fake.down.lock().unwrap().clear();
    let obs = sync(&fake, &applied, &s, &cams).await;
    assert_eq!(obs.reachable(), 2);
    assert_eq!(fake.held(), placed(&s, &cams));
}

#[tokio::test]
async fn a_restarted_replica_gets_its_shard_again() {
    let fake = FakeDetection::default();
    let applied = Applied::default();
    let s = site(1);
    let cams = cameras(1);
    sync(&fake, &applied, &s, &cams).await;
    // The pod restarted empty; the operator still remembers its last apply.
    fake.replicas.lock().unwrap().clear();
    sync(&fake, &applied, &s, &cams).await;
    assert_eq!(fake.held()[&address(0)], ["c00"]);
}

#[tokio::test]
async fn credentials_are_resolved_into_the_shard_and_a_camera_without_them_waits() {
    let fake = FakeDetection::default();
    let applied = Applied::default();
    let s = site(1);
    let mut cams = cameras(3);
    let with_secret = |c: &Arc<Camera>, secret: &str| {
        let mut c = (**c).clone();
        c.spec.credentials = Some(kordon_operator::crd::CredentialsRef {
            secret_name: secret.into(),
            username_key: None,
            password_key: None,
        });
        Arc::new(c)
    };
    cams[0] = with_secret(&cams[0], "good");
    cams[1] = with_secret(&cams[1], "missing");
    sync(&fake, &applied, &s, &cams).await;
    let held = fake
        .replicas
        .lock()
        .unwrap()
        .get(&address(0))
        .cloned()
        .unwrap();
    let names: Vec<&str> = held.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        ["c00", "c02"],
        "the camera whose Secret is missing waits"
    );
    let creds = held["c00"].resolved_credentials.as_ref().unwrap();
    assert_eq!(
        (creds.username.as_str(), creds.password.as_str()),
        ("viewer", "s3cret")
    );
    assert!(held["c02"].resolved_credentials.is_none());

    // Incomplete: tried again on the next reconcile, and taken in once its Secret is there.
    sync(&fake, &applied, &s, &cams).await;
    assert_eq!(applies(&fake), 2);
    cams[1] = with_secret(&cams[1], "good");
    sync(&fake, &applied, &s, &cams).await;
    assert_eq!(fake.held()[&address(0)], ["c00", "c01", "c02"]);
    let before = applies(&fake);
    sync(&fake, &applied, &s, &cams).await;
    assert_eq!(
        applies(&fake),
        before,
        "nothing is re-sent once the shard is complete"
    );
}
