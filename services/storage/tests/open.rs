//! `Storage::open` on the embedded defaults: everything lives in the data directory, and a
//! second start finds it again.

use kordon_storage::{Storage, StorageConfig};

#[tokio::test]
async fn open_creates_the_embedded_defaults_and_reopens_them() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("kordon-data");
    let storage = Storage::open(&StorageConfig::default(), &data)
        .await
        .unwrap();
    assert_eq!(storage.index().backend(), "sqlite");
    assert!(data.join("index.sqlite").is_file());
    assert!(data.join("media").is_dir());
    assert!(data.join("keys/storage-signing-key.pem").is_file());
    assert_eq!(storage.options().base_url, "http://127.0.0.1:8472");
    let key = storage.signing_public_key();
    storage.index().close().await;

    // Migrations are idempotent and the signing key is kept.
    let again = Storage::open(&StorageConfig::default(), &data)
        .await
        .unwrap();
    assert_eq!(again.signing_public_key(), key);
    again.index().close().await;

    // A bad value is refused before anything starts, naming the key.
    let bad = StorageConfig {
        url_lifetime: std::time::Duration::from_secs(7200),
        ..Default::default()
    };
    let err = Storage::open(&bad, &data).await.err().unwrap();
    assert!(err.to_string().contains("`url_lifetime`"), "{err}");
}
