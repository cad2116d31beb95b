//! `link_immutable`: a file becomes an object of a local store without being copied, with the
//! guarantees of `put_immutable` (hash first, never replace, same bytes are success).

use std::os::unix::fs::MetadataExt;

use kordon_objects::{
    Check, ObjectPath, ObjectStoreConfig, ObjectStoreExt, ObjectsError, PutOutcome, build_local,
    link_immutable, sha256,
};

fn store(
    root: &std::path::Path,
) -> std::sync::Arc<kordon_objects::object_store::local::LocalFileSystem> {
    build_local(&ObjectStoreConfig::Local {
        root: root.to_path_buf(),
    })
    .unwrap()
    .expect("a local store")
}

#[tokio::test]
async fn a_file_is_linked_once_and_reads_back_as_the_object() {
    let dir = tempfile::tempdir().unwrap();
    let local = store(&dir.path().join("media"));
    let spooled = dir.path().join("seg.mp4");
    std::fs::write(&spooled, b"segment bytes").unwrap();
    let sha = sha256(b"segment bytes");
    let key = ObjectPath::from("edirne/gate-1/2026/12/01/seg.mp4");

    let outcome = link_immutable(&local, &key, &spooled, &sha, Check::Rehash).unwrap();
    assert_eq!(outcome, Some(PutOutcome::Created));
    let dest = local.path_to_filesystem(&key).unwrap();
    assert_eq!(
        std::fs::metadata(&dest).unwrap().ino(),
        std::fs::metadata(&spooled).unwrap().ino(),
        "the same inode: no bytes copied"
    );
    // The spool lets go of its name; the object stays.
    std::fs::remove_file(&spooled).unwrap();
    let read = local.get(&key).await.unwrap().bytes().await.unwrap();
    assert_eq!(&read[..], b"segment bytes");

    // A retry after a lost answer: the same bytes are success, nothing replaced.
    std::fs::write(&spooled, b"segment bytes").unwrap();
    assert_eq!(
        link_immutable(&local, &key, &spooled, &sha, Check::Rehash).unwrap(),
        Some(PutOutcome::AlreadyPresent)
    );
}

#[test]
fn wrong_bytes_are_never_linked_and_a_different_object_is_never_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let local = store(&dir.path().join("media"));
    let key = ObjectPath::from("edirne/gate-1/seg.mp4");
    let file = dir.path().join("seg.mp4");
    std::fs::write(&file, b"tampered in the spool").unwrap();
    let e = link_immutable(
        &local,
        &key,
        &file,
        &sha256(b"what was recorded"),
        Check::Rehash,
    )
    .unwrap_err();
    assert!(matches!(e, ObjectsError::PayloadMismatch { .. }), "{e}");
    assert!(!local.path_to_filesystem(&key).unwrap().exists());

    let other = dir.path().join("other.mp4");
    std::fs::write(&other, b"first").unwrap();
    link_immutable(&local, &key, &other, &sha256(b"first"), Check::Rehash).unwrap();
    std::fs::write(&file, b"second").unwrap();
    let e = link_immutable(&local, &key, &file, &sha256(b"second"), Check::Rehash).unwrap_err();
    assert!(matches!(e, ObjectsError::ConflictingObject { .. }), "{e}");
    assert_eq!(
        std::fs::read(local.path_to_filesystem(&key).unwrap()).unwrap(),
        b"first"
    );
}

#[test]
fn a_file_on_another_filesystem_is_left_to_a_copy() {
    // /dev/shm is a tmpfs on Linux: a link from there into the temp dir crosses filesystems.
    let shm = std::path::Path::new("/dev/shm");
    let dir = tempfile::tempdir().unwrap();
    let Ok(elsewhere) = tempfile::tempdir_in(shm) else {
        eprintln!("no /dev/shm: skipped");
        return;
    };
    let same_fs =
        std::fs::metadata(shm).unwrap().dev() == std::fs::metadata(dir.path()).unwrap().dev();
    if same_fs {
        eprintln!("/dev/shm is on the temp dir's filesystem: skipped");
        return;
    }
    let local = store(&dir.path().join("media"));
    let file = elsewhere.path().join("seg.mp4");
    std::fs::write(&file, b"bytes").unwrap();
    let key = ObjectPath::from("s/c/seg.mp4");
    assert_eq!(
        link_immutable(&local, &key, &file, &sha256(b"bytes"), Check::Rehash).unwrap(),
        None
    );
    assert!(!local.path_to_filesystem(&key).unwrap().exists());
}

#[test]
fn a_file_its_writer_just_hashed_is_linked_without_reading_it_again() {
    let dir = tempfile::tempdir().unwrap();
    let local = store(&dir.path().join("media"));
    let file = dir.path().join("spool-segment.mp4");
    std::fs::write(&file, b"segment bytes").unwrap();
    let key = ObjectPath::from("burgas/gate-1/fresh.mp4");
    let outcome = link_immutable(
        &local,
        &key,
        &file,
        &sha256(b"segment bytes"),
        Check::WrittenHere,
    )
    .unwrap();
    assert_eq!(outcome, Some(PutOutcome::Created));
    let linked = dir.path().join("media/burgas/gate-1/fresh.mp4");
    assert_eq!(std::fs::read(&linked).unwrap(), b"segment bytes");
}
