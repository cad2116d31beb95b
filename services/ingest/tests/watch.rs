//! WatchCameraStatus is bounded, and a closed watch lets go of its slot at once (issue 16).

use std::time::Duration;

use kordon_ingest::config::IngestConfig;
use kordon_ingest::{Destinations, Ingest, IngestApi};
use kordon_objects::ObjectStoreConfig;
use kordon_proto::ingest::v1 as pb;
use kordon_proto::ingest::v1::ingest_service_server::IngestService;
use kordon_proto::storage::v1::storage_service_client::StorageServiceClient;
use kordon_runtime::client::{self, ClientOptions};
use tokio_util::sync::CancellationToken;

async fn watch(
    api: &IngestApi,
) -> Result<tonic::Response<tonic::codegen::BoxStream<pb::WatchCameraStatusResponse>>, tonic::Status>
{
    let mut req = tonic::Request::new(pb::WatchCameraStatusRequest {
        site: "edirne".into(),
        ..Default::default()
    });
    req.extensions_mut()
        .insert(kordon_runtime::auth::Principal::development());
    api.watch_camera_status(req).await
}

#[tokio::test]
async fn a_watch_beyond_the_limit_is_refused_and_a_closed_one_frees_its_slot() {
    let dir = tempfile::tempdir().unwrap();
    let stop = CancellationToken::new();
    // No camera: nothing is recorded, nothing reaches storage (never dialled), and no status
    // change ever wakes a watch.
    let storage = StorageServiceClient::new(
        client::connect_lazy(&ClientOptions {
            server: "http://127.0.0.1:9".into(),
            ..Default::default()
        })
        .unwrap(),
    );
    let objects = ObjectStoreConfig::Memory;
    let ingest = Ingest::start(
        IngestConfig::default(),
        dir.path(),
        Destinations {
            objects: kordon_objects::build(&objects).unwrap(),
            local_objects: None,
            object_prefix: String::new(),
            storage,
        },
        stop.clone(),
    )
    .unwrap();
    let api = IngestApi::new(ingest.clone()).with_max_watches(2);
    let first = watch(&api).await.expect("the first watch is served");
    let _second = watch(&api).await.expect("the second watch is served");
    match watch(&api).await {
        Ok(_) => panic!("a third watch was served beyond a limit of 2"),
        Err(s) => {
            assert_eq!(s.code(), tonic::Code::ResourceExhausted, "{s:?}");
            assert!(
                s.message().contains("WatchCameraStatus") && s.message().contains(" 2 "),
                "the refusal names the limit: {s:?}"
            );
        }
    }
    assert_eq!(ingest.board().subscribers(), 2);
    // The client goes away and no camera changes: its task ends anyway, and with it the
    // subscription and the slot.
    drop(first);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while ingest.board().subscribers() != 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the closed watch's subscription is still held"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _third = loop {
        if let Ok(w) = watch(&api).await {
            break w;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no slot for a new watch after one closed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    stop.cancel();
    ingest.stopped().await;
}
