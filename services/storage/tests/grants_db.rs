//! The footage-grant table on SQLite and PostgreSQL: idempotent insertion, listing with its
//! filters, one decision per grant, mirrors refreshed and their decision logged once.

mod support;

use kordon_storage::StorageError;
use kordon_storage::grants::{
    Grant, GrantFilter, STATE_APPROVED, STATE_DENIED, STATE_EXPIRED, STATE_PENDING,
};
use kordon_storage::index::Index;
use support::*;

fn grant(id: &str, owner: &str, asker: &str, request_id: &str, mirror: bool, at: i64) -> Grant {
    Grant {
        id: id.into(),
        owner_site: owner.into(),
        requesting_site: asker.into(),
        request_id: request_id.into(),
        mirror,
        requested_by: "officer-7".into(),
        cameras: vec!["port-gate".into()],
        requested_from_us: T0,
        requested_to_us: T0 + 60 * SEC,
        from_us: T0,
        to_us: T0 + 60 * SEC,
        reason: "r".into(),
        case_id: "EDR-1".into(),
        legal_basis: "Art. 7".into(),
        form: "original".into(),
        keep_for_us: 30 * 86_400 * SEC,
        state: STATE_PENDING,
        created_at_us: at,
        ..Default::default()
    }
}

async fn grants_table(index: Index) {
    let a = grant("g-1", "burgas", "edirne", "req-1", false, T0);
    let (stored, created) = index.insert_grant(&a).await.unwrap();
    assert!(created);
    assert_eq!(stored, a);
    // The same (owner, asker, request id) returns the stored grant, not a second one.
    let retry = grant("g-other", "burgas", "edirne", "req-1", false, T0 + SEC);
    let (again, created) = index.insert_grant(&retry).await.unwrap();
    assert!(!created);
    assert_eq!(again.id, "g-1");
    // Another partner may use the same request id; so may a mirror of another owner.
    index
        .insert_grant(&grant(
            "g-2",
            "burgas",
            "yambol",
            "req-1",
            false,
            T0 + 2 * SEC,
        ))
        .await
        .unwrap();
    index
        .insert_grant(&grant(
            "m-1",
            "edirne",
            "burgas",
            "req-1",
            true,
            T0 + 3 * SEC,
        ))
        .await
        .unwrap();

    let list = |f: GrantFilter| {
        let index = index.clone();
        async move {
            index
                .list_grants(&f, 0, 100)
                .await
                .unwrap()
                .into_iter()
                .map(|g| g.id)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        list(GrantFilter::default()).await,
        vec!["m-1", "g-2", "g-1"],
        "newest first"
    );
    assert_eq!(
        list(GrantFilter {
            requesting_site: "edirne".into(),
            ..Default::default()
        })
        .await,
        vec!["g-1"]
    );
    assert_eq!(
        list(GrantFilter {
            mirror: Some(true),
            ..Default::default()
        })
        .await,
        vec!["m-1"]
    );
    assert_eq!(
        index
            .list_grants(&GrantFilter::default(), 1, 1)
            .await
            .unwrap()[0]
            .id,
        "g-2"
    );

    // One decision per grant.
    let mut d = a.clone();
    d.state = STATE_APPROVED;
    d.from_us = T0 + 12 * SEC;
    d.decided_by = "auditor-2".into();
    d.decided_at_us = Some(T0 + 10 * SEC);
    d.access_until_us = Some(T0 + 20 * SEC);
    d.bundle_id = "b-1".into();
    d.bundle_sha256 = "ab".repeat(32);
    d.bundle_size = 12_345;
    index.decide_grant(&d).await.unwrap();
    let mut deny = a.clone();
    deny.state = STATE_DENIED;
    assert!(matches!(
        index.decide_grant(&deny).await,
        Err(StorageError::FailedPrecondition(_))
    ));
    let back = index.grant("burgas", "g-1").await.unwrap().unwrap();
    assert_eq!(back, d);
    assert_eq!(back.state_at(T0 + 20 * SEC), STATE_EXPIRED);
    assert_eq!(
        list(GrantFilter {
            states: vec![STATE_PENDING],
            ..Default::default()
        })
        .await,
        vec!["m-1", "g-2"]
    );

    // A mirror takes the owner's decision; its decision is claimed for logging once.
    let mut m = grant("m-1", "edirne", "burgas", "req-1", true, T0 + 3 * SEC);
    m.state = STATE_DENIED;
    m.decision_reason = "not enough grounds".into();
    index.refresh_mirror(&m).await.unwrap();
    let back = index.grant("edirne", "m-1").await.unwrap().unwrap();
    assert_eq!(back.state, STATE_DENIED);
    assert_eq!(back.decision_reason, "not enough grounds");
    assert!(index.claim_decision_log("edirne", "m-1").await.unwrap());
    assert!(!index.claim_decision_log("edirne", "m-1").await.unwrap());
    index.release_decision_log("edirne", "m-1").await.unwrap();
    assert!(index.claim_decision_log("edirne", "m-1").await.unwrap());
    // Refreshing never touches the owner's own grants.
    let mut not_a_mirror = d.clone();
    not_a_mirror.state = STATE_DENIED;
    index.refresh_mirror(&not_a_mirror).await.unwrap();
    assert_eq!(
        index.grant("burgas", "g-1").await.unwrap().unwrap().state,
        STATE_APPROVED
    );
}

#[tokio::test]
async fn grants_table_on_sqlite() {
    let db = sqlite().await;
    grants_table(db.index.clone()).await;
    db.cleanup().await;
}

#[tokio::test]
async fn grants_table_on_postgres() {
    let Some(db) = postgres("grants table").await else {
        return;
    };
    grants_table(db.index.clone()).await;
    db.cleanup().await;
}
