//! Footage grants between two installations: Burgas owns the footage, Edirne asks for it.
//! Each runs its own storage (SQLite, its own objects, its own evidence key) and its own
//! partner link (mTLS, its own CA); the two talk only over those links. People call their
//! own storage (the API with a principal in the request, as the server gate would put it).

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use futures::StreamExt;
use kordon_objects::ObjectStoreExt;
use kordon_proto::common::v1 as common;
use kordon_proto::storage::v1 as pb;
use kordon_proto::storage::v1::storage_service_server::StorageService;
use kordon_runtime::auth::{Principal, PrincipalKind, Role};
use kordon_runtime::partner::{FootageTerms, PartnerConfig, PartnersConfig, Terms};
use kordon_storage::evidence::{TrustedKey, verify_bundle};
use kordon_storage::{Storage, StorageApi, StorageOptions};
use support::*;
use tokio_util::sync::CancellationToken;

const OWNER: &str = "burgas";
const ASKER: &str = "edirne";
const SHARED: &str = "port-gate";
const NOT_SHARED: &str = CAMERA; // gate-3

struct Ca {
    pem: String,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

fn ca(name: &str) -> Ca {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    p.distinguished_name
        .push(rcgen::DnType::CommonName, format!("{name} CA"));
    let pem = p.self_signed(&key).unwrap().pem();
    Ca {
        pem,
        issuer: rcgen::Issuer::new(p, key),
    }
}

/// The partner-link certificate of `site`, signed by `ca`: (cert file, key file).
fn link_cert(
    dir: &Path,
    ca: &Ca,
    site: &str,
    tag: &str,
) -> (std::path::PathBuf, std::path::PathBuf) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    p.subject_alt_names
        .push(rcgen::SanType::IpAddress("127.0.0.1".parse().unwrap()));
    p.subject_alt_names.push(rcgen::SanType::URI(
        format!("spiffe://kordon.io/ns/test/site/{site}/storage")
            .try_into()
            .unwrap(),
    ));
    let cert = p.signed_by(&key, &ca.issuer).unwrap();
    let c = dir.join(format!("{tag}.crt"));
    let k = dir.join(format!("{tag}.key"));
    std::fs::write(&c, cert.pem()).unwrap();
    std::fs::write(&k, key.serialize_pem()).unwrap();
    (c, k)
}

fn free_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

fn terms(cameras: &[&str]) -> Terms {
    Terms {
        cameras: cameras.iter().map(|c| c.to_string()).collect(),
        footage: FootageTerms {
            requests: true,
            max_range: Duration::from_secs(600),
            ..Default::default()
        },
        ..Default::default()
    }
}

fn person(subject: &str, site: &str, role: Role) -> Principal {
    Principal {
        kind: PrincipalKind::Person,
        subject: subject.into(),
        display_name: Some(format!("{subject} (test)")),
        roles: [(site.to_string(), [role].into_iter().collect())]
            .into_iter()
            .collect(),
    }
}

fn as_<T>(who: &Principal, msg: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.extensions_mut().insert(who.clone());
    r
}

fn audit(reason: &str) -> Option<common::AuditContext> {
    Some(common::AuditContext {
        reason: reason.into(),
        case_id: "EDR-2026-117".into(),
        recipient: String::new(),
    })
}

fn range(from_us: i64, to_us: i64) -> Option<common::TimeRange> {
    Some(common::TimeRange {
        start: Some(kordon_proto::time::timestamp_from_micros(from_us)),
        end: Some(kordon_proto::time::timestamp_from_micros(to_us)),
    })
}

struct Site {
    storage: Storage,
    api: StorageApi,
    _db: TestDb,
}

async fn site(
    config: PartnersConfig,
    key: [u8; 32],
    addr: SocketAddr,
    shutdown: &CancellationToken,
) -> Site {
    let db = sqlite().await;
    let storage = Storage::from_parts(
        db.index.clone(),
        kordon_objects::build(&kordon_objects::ObjectStoreConfig::Memory).unwrap(),
        kordon_storage::playback::PlaybackSigner::random(),
        ed25519_dalek::SigningKey::from_bytes(&key),
        StorageOptions {
            partners: config.clone(),
            ..Default::default()
        },
    );
    let link = kordon_runtime::server::GrpcServer::partner_link("storage", &config)
        .unwrap()
        .add_service(kordon_storage::grpc_service(storage.clone()))
        .bind(addr)
        .await
        .unwrap();
    tokio::spawn(link.serve(kordon_runtime::admin::Readiness::new(), shutdown.clone()));
    Site {
        api: StorageApi::new(storage.clone()),
        storage,
        _db: db,
    }
}

fn public(key: [u8; 32]) -> String {
    hex::encode(
        ed25519_dalek::SigningKey::from_bytes(&key)
            .verifying_key()
            .to_bytes(),
    )
}

async fn ask(
    s: &Site,
    who: &Principal,
    camera: &str,
    from_us: i64,
    to_us: i64,
    request_id: &str,
) -> Result<pb::FootageGrant, tonic::Status> {
    s.api
        .request_footage(as_(
            who,
            pb::RequestFootageRequest {
                cameras: vec![common::CameraRef {
                    site: OWNER.into(),
                    camera: camera.into(),
                }],
                range: range(from_us, to_us),
                audit: audit("smuggling route at the port gate"),
                request_id: request_id.into(),
                legal_basis: "Agreement BG-TR 2024, Art. 7".into(),
                ..Default::default()
            },
        ))
        .await
        .map(|r| r.into_inner().grant.unwrap())
}

async fn decide(
    s: &Site,
    who: &Principal,
    id: &str,
    decision: pb::FootageDecision,
    narrower: Option<(i64, i64)>,
    access_for: Option<Duration>,
) -> Result<pb::FootageGrant, tonic::Status> {
    s.api
        .decide_footage_grant(as_(
            who,
            pb::DecideFootageGrantRequest {
                grant_id: id.into(),
                decision: decision as i32,
                access_for: access_for.map(|d| prost_types::Duration {
                    seconds: d.as_secs() as i64,
                    nanos: d.subsec_nanos() as i32,
                }),
                audit: audit("case reviewed by the duty auditor"),
                range: narrower.and_then(|(a, b)| range(a, b)),
            },
        ))
        .await
        .map(|r| r.into_inner().grant.unwrap())
}

/// Fetches a grant through the asker's own storage: (grant, bundle bytes).
async fn fetch(
    s: &Site,
    who: &Principal,
    id: &str,
) -> Result<(pb::FootageGrant, Vec<u8>), tonic::Status> {
    let mut stream = s
        .api
        .fetch_footage_grant(as_(
            who,
            pb::FetchFootageGrantRequest {
                grant_id: id.into(),
                owner_site: OWNER.into(),
                audit: audit("evidence for the case file"),
                ..Default::default()
            },
        ))
        .await?
        .into_inner();
    let mut grant = None;
    let mut bytes = Vec::new();
    while let Some(m) = stream.next().await {
        match m?.part {
            Some(pb::fetch_footage_grant_response::Part::Grant(g)) => grant = Some(g),
            Some(pb::fetch_footage_grant_response::Part::Data(d)) => bytes.extend(d),
            None => {}
        }
    }
    Ok((grant.unwrap(), bytes))
}

async fn log_of(s: &Site, site: &str) -> Vec<kordon_storage::audit::AccessEntry> {
    let filter = kordon_storage::audit::AccessFilter {
        site: site.into(),
        ..Default::default()
    };
    s.storage
        .index()
        .list_access(&filter, 0, 1000)
        .await
        .unwrap()
}

fn has(
    log: &[kordon_storage::audit::AccessEntry],
    action: pb::AccessAction,
    grant: &str,
    recipient: &str,
    source: &str,
) -> bool {
    log.iter().any(|e| {
        e.action == action as i32
            && e.recipient == recipient
            && e.source == source
            && e.objects().iter().any(|o| o.id == grant)
    })
}

#[tokio::test]
async fn footage_grants_between_two_installations() {
    let dir = tempfile::tempdir().unwrap();
    let (burgas_ca, edirne_ca, stranger_ca) = (ca(OWNER), ca(ASKER), ca("stranger"));
    for (name, c) in [(OWNER, &burgas_ca), (ASKER, &edirne_ca)] {
        std::fs::write(dir.path().join(format!("{name}-ca.crt")), &c.pem).unwrap();
    }
    let (b_cert, b_key) = link_cert(dir.path(), &burgas_ca, OWNER, OWNER);
    let (e_cert, e_key) = link_cert(dir.path(), &edirne_ca, ASKER, ASKER);
    let (b_addr, e_addr) = (free_port(), free_port());
    let (b_sign, e_sign, other_sign) = ([7u8; 32], [9u8; 32], [11u8; 32]);

    let burgas_cfg = PartnersConfig {
        site: OWNER.into(),
        listen: Some(b_addr),
        cert_file: Some(b_cert),
        key_file: Some(b_key),
        exchange_interval: Duration::from_secs(30),
        partners: vec![PartnerConfig {
            site: ASKER.into(),
            endpoint: format!("https://{e_addr}"),
            ca_file: dir.path().join("edirne-ca.crt"),
            evidence_public_key: public(e_sign),
            shares: terms(&[SHARED]),
            receives: Terms::default(),
            ..Default::default()
        }],
    };
    let edirne_partner = |key: [u8; 32]| PartnerConfig {
        site: OWNER.into(),
        endpoint: format!("https://{b_addr}"),
        ca_file: dir.path().join("burgas-ca.crt"),
        evidence_public_key: public(key),
        shares: Terms::default(),
        receives: terms(&[SHARED]),
        ..Default::default()
    };
    let edirne_cfg = PartnersConfig {
        site: ASKER.into(),
        listen: Some(e_addr),
        cert_file: Some(e_cert.clone()),
        key_file: Some(e_key.clone()),
        exchange_interval: Duration::from_secs(30),
        partners: vec![edirne_partner(b_sign)],
    };
    let shutdown = CancellationToken::new();
    let burgas = site(burgas_cfg.clone(), b_sign, b_addr, &shutdown).await;
    let edirne = site(edirne_cfg.clone(), e_sign, e_addr, &shutdown).await;

    // Burgas's recordings: a minute of each camera.
    for camera in [SHARED, NOT_SHARED] {
        for i in 0..10i64 {
            let s = put_segment(
                burgas.storage.objects().as_ref(),
                camera,
                T0 + i * 6 * SEC,
                T0 + (i + 1) * 6 * SEC,
                fake_bytes(i as u64 + if camera == SHARED { 0 } else { 100 }, 3000),
                100,
            )
            .await;
            burgas.storage.register_segment(&s).await.unwrap();
        }
    }
    let officer = person("officer-7", ASKER, Role::Operator);
    let auditor = person("auditor-2", OWNER, Role::Auditor);
    let viewer = person("viewer-1", OWNER, Role::Viewer);

    // 1. Edirne asks; Burgas holds a pending grant, Edirne its mirror.
    let g = ask(&edirne, &officer, SHARED, T0, T0 + 60 * SEC, "req-1")
        .await
        .unwrap();
    assert_eq!(g.state, pb::FootageGrantState::Pending as i32);
    assert_eq!(g.owner_site, OWNER);
    assert_eq!(g.requesting_site, ASKER);
    assert_eq!(g.requested_by, "officer-7");
    // A retry is the same grant; the same id for another request is refused.
    let again = ask(&edirne, &officer, SHARED, T0, T0 + 60 * SEC, "req-1")
        .await
        .unwrap();
    assert_eq!(again.id, g.id);
    let e = ask(&edirne, &officer, SHARED, T0, T0 + 30 * SEC, "req-1")
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::AlreadyExists, "{e:?}");

    let listed = burgas
        .api
        .list_footage_grants(as_(&auditor, pb::ListFootageGrantsRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .grants;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, g.id);

    // A viewer may not decide; an approval wider than the request is refused.
    let e = decide(
        &burgas,
        &viewer,
        &g.id,
        pb::FootageDecision::Approve,
        None,
        None,
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied);
    let e = decide(
        &burgas,
        &auditor,
        &g.id,
        pb::FootageDecision::Approve,
        Some((T0 - SEC, T0 + 30 * SEC)),
        None,
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");

    // 2. Burgas approves a narrower range: a signed bundle of exactly that.
    let approved = decide(
        &burgas,
        &auditor,
        &g.id,
        pb::FootageDecision::Approve,
        Some((T0 + 12 * SEC, T0 + 36 * SEC)),
        None,
    )
    .await
    .unwrap();
    assert_eq!(approved.state, pb::FootageGrantState::Approved as i32);
    assert!(!approved.bundle_sha256.is_empty());
    let e = decide(
        &burgas,
        &auditor,
        &g.id,
        pb::FootageDecision::Deny,
        None,
        None,
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e:?}");

    // Edirne's list refreshes the mirror from Burgas.
    let mine = edirne
        .api
        .list_footage_grants(as_(&officer, pb::ListFootageGrantsRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .grants;
    let m = mine.iter().find(|x| x.id == g.id).unwrap();
    assert_eq!(m.state, pb::FootageGrantState::Approved as i32);
    assert_eq!(m.range, range(T0 + 12 * SEC, T0 + 36 * SEC));

    // 3a. An Edirne whose pinned key for Burgas is wrong refuses the bundle and keeps nothing.
    let wrong_cfg = PartnersConfig {
        partners: vec![edirne_partner(other_sign)],
        ..edirne_cfg.clone()
    };
    let misled = StorageApi::new(Storage::from_parts(
        edirne.storage.index().clone(),
        edirne.storage.objects().clone(),
        kordon_storage::playback::PlaybackSigner::random(),
        ed25519_dalek::SigningKey::from_bytes(&e_sign),
        StorageOptions {
            partners: wrong_cfg,
            ..Default::default()
        },
    ));
    let misled_site = Site {
        storage: edirne.storage.clone(),
        api: misled,
        _db: sqlite().await,
    };
    let e = fetch(&misled_site, &officer, &g.id).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e:?}");
    assert!(e.message().contains("does not verify"), "{}", e.message());
    let kept = kordon_objects::ObjectPath::from(format!("partners/{OWNER}/grants/{}.tar", g.id));
    assert!(edirne.storage.objects().head(&kept).await.is_err());

    // 3b. With the right key it verifies, is kept, and verifies offline with Burgas's key only.
    let (fg, bytes) = fetch(&edirne, &officer, &g.id).await.unwrap();
    assert_eq!(fg.id, g.id);
    assert_eq!(bytes.len() as u64, fg.bundle_size);
    let report = verify_bundle(
        bytes.as_slice(),
        &[TrustedKey {
            key: ed25519_dalek::SigningKey::from_bytes(&b_sign)
                .verifying_key()
                .to_bytes(),
            label: OWNER.into(),
        }],
        &mut |_| {},
    )
    .unwrap();
    assert!(report.intact(), "{:?}", report.problems);
    assert_eq!(report.site, OWNER);
    assert_eq!(report.segments_checked, 4, "exactly the approved 24 s");
    let other = verify_bundle(
        bytes.as_slice(),
        &[TrustedKey {
            key: ed25519_dalek::SigningKey::from_bytes(&other_sign)
                .verifying_key()
                .to_bytes(),
            label: "someone".into(),
        }],
        &mut |_| {},
    )
    .unwrap();
    assert!(!other.intact());
    assert_eq!(
        read(edirne.storage.objects().as_ref(), kept.as_ref())
            .await
            .len(),
        bytes.len()
    );

    // 4. A refusal reaches Edirne with its reason.
    let d = ask(&edirne, &officer, SHARED, T0, T0 + 60 * SEC, "req-2")
        .await
        .unwrap();
    decide(
        &burgas,
        &auditor,
        &d.id,
        pb::FootageDecision::Deny,
        None,
        None,
    )
    .await
    .unwrap();
    let e = fetch(&edirne, &officer, &d.id).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e:?}");
    assert!(e.message().contains("denied"), "{}", e.message());
    assert!(e.message().contains("case reviewed"), "{}", e.message());

    // 5. An expired grant says when it expired.
    let x = ask(&edirne, &officer, SHARED, T0, T0 + 12 * SEC, "req-3")
        .await
        .unwrap();
    decide(
        &burgas,
        &auditor,
        &x.id,
        pb::FootageDecision::Approve,
        None,
        Some(Duration::from_secs(1)),
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let e = fetch(&edirne, &officer, &x.id).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e:?}");
    assert!(e.message().contains("expired at"), "{}", e.message());

    // 6. Cameras the agreement does not share, and ranges longer than it allows, are refused.
    let e = ask(&edirne, &officer, NOT_SHARED, T0, T0 + 60 * SEC, "req-4")
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e:?}");
    assert!(e.message().contains("not shared"), "{}", e.message());
    let e = ask(&edirne, &officer, SHARED, T0, T0 + 3600 * SEC, "req-5")
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");

    // 7. Each step is in both logs: at Burgas with recipient = edirne, at Edirne with
    // source = burgas; both logs still verify.
    let b_log = log_of(&burgas, OWNER).await;
    let e_log = log_of(&edirne, ASKER).await;
    use pb::AccessAction as A;
    for action in [A::FootageRequest, A::FootageDecision, A::Download] {
        assert!(has(&b_log, action, &g.id, ASKER, ""), "burgas {action:?}");
        assert!(has(&e_log, action, &g.id, "", OWNER), "edirne {action:?}");
    }
    // The owner's download entry names the person at the partner, not only the partner.
    assert!(
        b_log.iter().any(|e| e.action == A::Download as i32
            && e.objects()[0].id == g.id
            && e.principal.starts_with("edirne/")),
        "{b_log:?}"
    );
    assert!(has(&b_log, A::FootageDecision, &d.id, ASKER, ""));
    assert!(has(&e_log, A::FootageDecision, &d.id, "", OWNER));
    let decisions = e_log
        .iter()
        .filter(|e| e.action == A::FootageDecision as i32 && e.objects()[0].id == g.id)
        .count();
    assert_eq!(decisions, 1, "a partner's decision is logged once");
    let key = |k: [u8; 32]| {
        ed25519_dalek::SigningKey::from_bytes(&k)
            .verifying_key()
            .to_bytes()
    };
    for (s, name, k) in [(&burgas, OWNER, b_sign), (&edirne, ASKER, e_sign)] {
        let r = s
            .storage
            .index()
            .verify_access(name, 0, 0, None, &key(k))
            .await
            .unwrap();
        assert!(r.findings.is_empty(), "{name}: {:?}", r.findings);
    }

    // 8. On the link a partner reaches nothing but the grant calls.
    let link = kordon_runtime::partner::connect(
        &edirne_cfg,
        &edirne_cfg.partners[0],
        &format!("https://{b_addr}"),
    )
    .unwrap();
    let mut as_edirne =
        kordon_proto::storage::v1::storage_service_client::StorageServiceClient::new(link);
    let e = as_edirne
        .list_segments(pb::ListSegmentsRequest {
            camera: Some(common::CameraRef {
                site: OWNER.into(),
                camera: SHARED.into(),
            }),
            range: range(T0, T0 + 60 * SEC),
            audit: audit("just looking"),
            page: None,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e:?}");
    let e = as_edirne
        .get_segment(pb::GetSegmentRequest {
            camera: Some(common::CameraRef {
                site: OWNER.into(),
                camera: SHARED.into(),
            }),
            sequence: 1,
            audit: audit("just looking"),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e:?}");
    let e = as_edirne
        .export_evidence(pb::ExportEvidenceRequest {
            cameras: vec![common::CameraRef {
                site: OWNER.into(),
                camera: SHARED.into(),
            }],
            range: range(T0, T0 + 60 * SEC),
            audit: audit("just looking"),
            ..Default::default()
        })
        .await
        .map(|_| ())
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e:?}");
    let e = as_edirne
        .decide_footage_grant(pb::DecideFootageGrantRequest {
            grant_id: d.id.clone(),
            decision: pb::FootageDecision::Approve as i32,
            audit: audit("approving my own request"),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e:?}");

    // 9. A certificate from a CA Burgas did not declare for Edirne cannot call at all.
    let (s_cert, s_key) = link_cert(dir.path(), &stranger_ca, ASKER, "stranger");
    let stranger_cfg = PartnersConfig {
        cert_file: Some(s_cert),
        key_file: Some(s_key),
        ..edirne_cfg.clone()
    };
    let link = kordon_runtime::partner::connect(
        &stranger_cfg,
        &stranger_cfg.partners[0],
        &format!("https://{b_addr}"),
    )
    .unwrap();
    let before = log_of(&burgas, OWNER).await.len();
    let e = kordon_proto::storage::v1::storage_service_client::StorageServiceClient::new(link)
        .list_footage_grants(pb::ListFootageGrantsRequest::default())
        .await
        .unwrap_err();
    assert!(
        matches!(
            e.code(),
            tonic::Code::Unavailable | tonic::Code::Unauthenticated | tonic::Code::Unknown
        ),
        "{e:?}"
    );
    assert_eq!(log_of(&burgas, OWNER).await.len(), before);

    // 10. While the agreement is not accepted by both sides, nothing flows.
    burgas
        .storage
        .set_agreement_check(std::sync::Arc::new(|_: &str| false));
    let e = ask(&edirne, &officer, SHARED, T0, T0 + 60 * SEC, "req-6")
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e:?}");
    assert!(e.message().contains("not accepted"), "{}", e.message());
    burgas
        .storage
        .set_agreement_check(std::sync::Arc::new(|_: &str| true));

    // 11. A masked agreement cannot be approved: no bundle of viewer copies without originals yet.
    let mut masked = burgas
        .storage
        .index()
        .grant(OWNER, &d.id)
        .await
        .unwrap()
        .unwrap();
    masked.id = "masked-1".into();
    masked.request_id = "masked-1".into();
    masked.state = kordon_storage::grants::STATE_PENDING;
    masked.form = "masked".into();
    burgas.storage.index().insert_grant(&masked).await.unwrap();
    let e = decide(
        &burgas,
        &auditor,
        "masked-1",
        pb::FootageDecision::Approve,
        None,
        None,
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e:?}");
    assert!(
        e.message().contains("shares footage masked"),
        "{}",
        e.message()
    );
    assert_eq!(
        burgas
            .storage
            .index()
            .grant(OWNER, "masked-1")
            .await
            .unwrap()
            .unwrap()
            .state,
        kordon_storage::grants::STATE_PENDING
    );

    // 12. Alerting records a received partner alert (the partner's camera) with its source:
    // it lands on this installation's log; an undeclared source is refused.
    let alerting = Principal {
        kind: PrincipalKind::Service,
        subject: "alerting.burgas".into(),
        display_name: None,
        roles: [(OWNER.to_string(), [Role::Service].into_iter().collect())]
            .into_iter()
            .collect(),
    };
    let received = |source: &str| pb::RecordAccessRequest {
        principal: format!("partner:{ASKER}"),
        principal_name: format!("partner site {ASKER}"),
        action: pb::AccessAction::AlertReceive as i32,
        objects: vec![pb::AccessObject {
            kind: pb::AccessObjectKind::Alert as i32,
            camera: Some(common::CameraRef {
                site: ASKER.into(),
                camera: "border-road".into(),
            }),
            range: None,
            id: "alert-1".into(),
        }],
        audit: audit("alert shared under the agreement"),
        method: "/kordon.alerting.v1.AlertingService/ReceivePartnerAlert".into(),
        source: source.into(),
    };
    let entry = burgas
        .api
        .record_access(as_(&alerting, received(ASKER)))
        .await
        .unwrap()
        .into_inner()
        .entry
        .unwrap();
    assert_eq!(entry.site, OWNER);
    assert_eq!(entry.source, ASKER);
    // Edirne's camera with an undeclared source would be logged on edirne, where burgas's
    // alerting has no right: refused before the source is looked at (issue 16: a caller
    // without the right learns nothing of the declared partners).
    let e = burgas
        .api
        .record_access(as_(&alerting, received("yambol")))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e:?}");
    // The undeclared source's own camera is logged here, where the caller has the right:
    // then the source is refused, naming it.
    let mut own = received("yambol");
    own.objects[0].camera = Some(common::CameraRef {
        site: "yambol".into(),
        camera: "border-road".into(),
    });
    let e = burgas
        .api
        .record_access(as_(&alerting, own))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("yambol"), "{e:?}");

    shutdown.cancel();
}
