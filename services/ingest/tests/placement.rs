//! A replica the operator places cameras on records them again at once after a restart
//! (`placement.json` beside the spool), never writing a camera's credentials.

use std::time::Duration;

use kordon_ingest::config::{CameraConfig, IngestConfig};
use kordon_ingest::{Destinations, Ingest};
use kordon_objects::ObjectStoreConfig;
use kordon_proto::storage::v1::storage_service_client::StorageServiceClient;
use kordon_runtime::client::{self, ClientOptions};
use tokio_util::sync::CancellationToken;

fn start(dir: &std::path::Path, stop: &CancellationToken) -> std::sync::Arc<Ingest> {
    // Cameras on a closed port: they only ever try to connect; nothing reaches storage.
    let storage = StorageServiceClient::new(
        client::connect_lazy(&ClientOptions {
            server: "http://127.0.0.1:9".into(),
            ..Default::default()
        })
        .unwrap(),
    );
    Ingest::start(
        IngestConfig {
            replica: "burgas-ingest-1".into(),
            ..IngestConfig::default()
        },
        dir,
        Destinations {
            objects: kordon_objects::build(&ObjectStoreConfig::Memory).unwrap(),
            local_objects: None,
            object_prefix: String::new(),
            storage,
        },
        stop.clone(),
    )
    .unwrap()
}

fn cam(name: &str) -> CameraConfig {
    CameraConfig {
        site: "burgas".into(),
        name: name.into(),
        record: format!("rtsp://127.0.0.1:9/{name}"),
        detect: None,
        transport: Default::default(),
        username: None,
        password: None,
        segment_duration: Some(Duration::from_secs(4)),
    }
}

fn names(i: &Ingest) -> Vec<String> {
    let mut n: Vec<String> = i.cameras().into_iter().map(|c| c.name).collect();
    n.sort();
    n
}

#[tokio::test]
async fn a_restarted_replica_resumes_the_cameras_it_was_given_but_not_their_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let stop = CancellationToken::new();
    let first = start(dir.path(), &stop);
    assert_eq!(
        first.resume_placement(dir.path()),
        0,
        "a new replica has nothing to resume"
    );
    let mut locked = cam("gate");
    locked.username = Some("viewer".into());
    locked.password = Some("s3cret-pass".into());
    first
        .apply_generations(
            vec![(cam("pier-2"), 4), (cam("lighthouse"), 2), (locked, 1)],
            true,
        )
        .unwrap();
    assert!(first.remove("burgas", "lighthouse"));
    let text = std::fs::read_to_string(dir.path().join("placement.json")).unwrap();
    assert!(!text.contains("s3cret-pass"), "{text}");
    stop.cancel();
    first.stopped().await;

    // The restarted replica: pier-2 at once, with its generation; lighthouse (removed) and
    // gate (credentials) wait for the operator.
    let stop = CancellationToken::new();
    let second = start(dir.path(), &stop);
    assert_eq!(second.resume_placement(dir.path()), 1);
    assert_eq!(names(&second), ["pier-2"]);
    assert_eq!(
        second.board().get("burgas", "pier-2").unwrap().generation,
        4
    );
    // The operator's next placement: pier-2 unchanged (recording on), gate added.
    let mut gate = cam("gate");
    gate.password = Some("s3cret-pass".into());
    let out = second
        .apply_generations(vec![(cam("pier-2"), 4), (gate, 1)], true)
        .unwrap();
    let outcomes: Vec<String> = out
        .iter()
        .map(|(c, o)| format!("{} {o:?}", c.name))
        .collect();
    assert_eq!(outcomes, ["pier-2 Unchanged", "gate Created"]);
    stop.cancel();
    second.stopped().await;
}
