//! One behaviour suite, run against every backend: memory, local files, and a real S3 store
//! (Ceph RGW in CI) when `KORDON_TEST_S3_*` is set. Plus WORM: an object written with Object
//! Lock cannot be deleted from the real store.

use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use kordon_objects::{
    ObjectLockConfig, ObjectLockMode, ObjectPath, ObjectStore, ObjectStoreConfig, ObjectStoreExt,
    ObjectsError, PutOutcome, build, put_immutable, segment_key, sha256, testenv,
};

/// A prefix no other run uses, so the shared test bucket needs no cleaning between runs.
fn run_prefix() -> String {
    format!("kordon-objects-test/{}", uuid::Uuid::new_v4().simple())
}

async fn suite(store: Arc<dyn ObjectStore>, base: &str) {
    let p = |s: &str| ObjectPath::from(format!("{base}/{s}"));

    // put / get / ranged get / head
    let body = Bytes::from_static(b"fragmented mp4, honest");
    store
        .put(&p("a/one.mp4"), body.clone().into())
        .await
        .unwrap();
    let got = store
        .get(&p("a/one.mp4"))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(got, body);
    let range = store.get_range(&p("a/one.mp4"), 0..10).await.unwrap();
    assert_eq!(&range[..], b"fragmented");
    assert_eq!(
        store.head(&p("a/one.mp4")).await.unwrap().size,
        body.len() as u64
    );

    // list: recursive under a prefix, and by delimiter
    store
        .put(&p("a/b/two.mp4"), Bytes::from_static(b"2").into())
        .await
        .unwrap();
    let mut listed: Vec<String> = store
        .list(Some(&ObjectPath::from(format!("{base}/a"))))
        .map_ok(|m| m.location.to_string())
        .try_collect()
        .await
        .unwrap();
    listed.sort();
    assert_eq!(
        listed,
        vec![format!("{base}/a/b/two.mp4"), format!("{base}/a/one.mp4")]
    );
    let shallow = store
        .list_with_delimiter(Some(&ObjectPath::from(format!("{base}/a"))))
        .await
        .unwrap();
    assert_eq!(shallow.objects.len(), 1);
    assert_eq!(shallow.common_prefixes.len(), 1);

    // delete
    store.delete(&p("a/b/two.mp4")).await.unwrap();
    let err = store.get(&p("a/b/two.mp4")).await.unwrap_err();
    assert!(
        matches!(err, object_store::Error::NotFound { .. }),
        "{err:?}"
    );

    // put_immutable: created, retried, conflicting, corrupt payload
    let seg = Bytes::from_static(b"segment bytes as hashed by ingest");
    let sha = sha256(&seg);
    let key = segment_key(base, "burgas", "gate-3", 1_795_774_446_123_456, &sha).unwrap();
    assert_eq!(
        put_immutable(store.as_ref(), &key, seg.clone(), &sha)
            .await
            .unwrap(),
        PutOutcome::Created
    );
    assert_eq!(
        put_immutable(store.as_ref(), &key, seg.clone(), &sha)
            .await
            .unwrap(),
        PutOutcome::AlreadyPresent,
        "a retry of the same bytes is success without a write"
    );
    let other = Bytes::from_static(b"different bytes, same key");
    let other_sha = sha256(&other);
    let err = put_immutable(store.as_ref(), &key, other.clone(), &other_sha)
        .await
        .unwrap_err();
    assert!(
        matches!(err, ObjectsError::ConflictingObject { .. }),
        "{err:?}"
    );
    assert_eq!(
        store.get(&key).await.unwrap().bytes().await.unwrap(),
        seg,
        "the original is never overwritten"
    );
    let fresh = p("corrupt.mp4");
    let err = put_immutable(store.as_ref(), &fresh, other, &sha)
        .await
        .unwrap_err();
    assert!(
        matches!(err, ObjectsError::PayloadMismatch { .. }),
        "{err:?}"
    );
    assert!(
        store.head(&fresh).await.is_err(),
        "bytes that do not match their hash are never written"
    );

    // Two writers racing on one key: both succeed, the object is written once.
    let race = p("race.mp4");
    let (a, b) = tokio::join!(
        put_immutable(store.as_ref(), &race, seg.clone(), &sha),
        put_immutable(store.as_ref(), &race, seg.clone(), &sha)
    );
    let outcomes = [a.unwrap(), b.unwrap()];
    assert!(outcomes.contains(&PutOutcome::Created), "{outcomes:?}");
    assert_eq!(store.get(&race).await.unwrap().bytes().await.unwrap(), seg);

    // The date folders of the layout list one hour of one camera.
    let hour = ObjectPath::from(format!("{base}/burgas/gate-3/2026/11/27/10"));
    let in_hour: Vec<_> = store.list(Some(&hour)).try_collect().await.unwrap();
    assert_eq!(in_hour.len(), 1);
    assert_eq!(in_hour[0].location, key);
}

#[tokio::test]
async fn memory() {
    let store = build(&ObjectStoreConfig::Memory).unwrap();
    suite(store, "t").await;
}

#[tokio::test]
async fn local_files() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("media");
    let store = build(&ObjectStoreConfig::Local { root: root.clone() }).unwrap();
    suite(store, "t").await;
    assert!(
        root.join("t/burgas/gate-3/2026/11/27/10").is_dir(),
        "objects are plain files under the root"
    );
}

#[tokio::test]
async fn s3() {
    let Some(cfg) = testenv::s3_config("object store suite against S3") else {
        return;
    };
    let store = build(&cfg).unwrap();
    suite(store, &run_prefix()).await;
}

/// WORM: with `object_lock`, every object version is written with a COMPLIANCE retention, and
/// the store refuses to delete that version. Uses a bucket created with Object Lock enabled
/// (`KORDON_TEST_S3_WORM_BUCKET`, else `<bucket>-worm`, created here). A plain `DELETE` only
/// adds a delete marker in a versioned bucket; the version stays. Each run leaves one tiny
/// object there, deletable after a day.
#[tokio::test]
async fn s3_object_lock_refuses_deletion() {
    let Some(cfg) = testenv::s3_config("Object Lock (WORM) against S3") else {
        return;
    };
    let ObjectStoreConfig::S3 {
        bucket,
        endpoint,
        region,
        access_key_id,
        secret_access_key,
        allow_http,
        ..
    } = cfg.clone()
    else {
        unreachable!("s3_config returns S3");
    };
    // scripts/services.sh creates one; otherwise make it (idempotent).
    let lock_bucket = std::env::var("KORDON_TEST_S3_WORM_BUCKET")
        .ok()
        .filter(|b| !b.is_empty())
        .unwrap_or_else(|| format!("{bucket}-worm"));
    let raw = kordon_objects::s3raw::S3Raw::from_config(&cfg).unwrap();
    raw.create_bucket(&lock_bucket, true).await.unwrap();

    let locked_cfg = ObjectStoreConfig::S3 {
        bucket: lock_bucket.clone(),
        endpoint,
        region,
        access_key_id,
        secret_access_key,
        allow_http,
        object_lock: Some(ObjectLockConfig {
            mode: ObjectLockMode::Compliance,
            retain_days: 1,
        }),
    };
    let store = build(&locked_cfg).unwrap();
    let seg = Bytes::from(format!("evidence {}", uuid::Uuid::new_v4()));
    let sha = sha256(&seg);
    let key = segment_key(
        &run_prefix(),
        "burgas",
        "gate-3",
        1_795_774_446_123_456,
        &sha,
    )
    .unwrap();
    // Write through the store (as put_immutable does) to learn the version id.
    let put = store
        .put_opts(
            &key,
            seg.clone().into(),
            object_store::PutOptions {
                mode: object_store::PutMode::Create,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let version = put
        .version
        .expect("a bucket with Object Lock is versioned: the put returns a version id");

    let retention = raw
        .retention(&lock_bucket, key.as_ref(), &version)
        .await
        .unwrap()
        .expect("the object version carries a retention");
    assert_eq!(retention.mode, "COMPLIANCE");

    assert!(
        !raw.delete_version(&lock_bucket, key.as_ref(), &version)
            .await
            .unwrap(),
        "deleting a version under COMPLIANCE retention must be refused"
    );
    // A plain delete only hides it behind a delete marker; the version is still readable.
    store.delete(&key).await.unwrap();
    let still = store
        .get_opts(
            &key,
            object_store::GetOptions {
                version: Some(version.clone()),
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(still, seg);
}
