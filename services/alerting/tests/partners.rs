//! Alerts shared between two installations over real partner links: Burgas and Edirne each
//! run alerting (SQLite) and storage (the access log) with their own CA; they talk only over
//! their partner links (mTLS). Detections are fed to Burgas as a source would.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use kordon_alerting::config::{AlertingConfig, DetectionSource, RuleYaml, Severity};
use kordon_alerting::engine::Action;
use kordon_proto::alerting::v1 as pb;
use kordon_proto::alerting::v1::alerting_service_server::AlertingService;
use kordon_proto::common::v1 as common;
use kordon_proto::detection::v1 as dpb;
use kordon_proto::storage::v1 as spb;
use kordon_proto::storage::v1::storage_service_server::StorageService;
use kordon_proto::time::timestamp_from_micros;
use kordon_runtime::admin::Readiness;
use kordon_runtime::auth::{Principal, PrincipalKind, Role};
use kordon_runtime::config::{AuthConfig, CommonConfig, LogConfig};
use kordon_runtime::partner::{PartnerConfig, PartnersConfig, Terms};
use kordon_runtime::server::GrpcServer;
use tokio_util::sync::CancellationToken;

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

/// `site`'s partner-link certificate (IP SAN 127.0.0.1) signed by `ca`, and the CA's file.
fn link_files(dir: &Path, ca: &Ca, site: &str) -> (PathBuf, PathBuf, PathBuf) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    p.subject_alt_names
        .push(rcgen::SanType::IpAddress("127.0.0.1".parse().unwrap()));
    p.subject_alt_names.push(rcgen::SanType::URI(
        format!("spiffe://kordon.io/ns/test/site/{site}/alerting")
            .try_into()
            .unwrap(),
    ));
    let cert = p.signed_by(&key, &ca.issuer).unwrap();
    let (c, k, a) = (
        dir.join(format!("{site}-link.crt")),
        dir.join(format!("{site}-link.key")),
        dir.join(format!("{site}-ca.crt")),
    );
    std::fs::write(&c, cert.pem()).unwrap();
    std::fs::write(&k, key.serialize_pem()).unwrap();
    std::fs::write(&a, &ca.pem).unwrap();
    (c, k, a)
}

fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64
}

fn person_at(camera: &str, track: u64) -> dpb::Detection {
    let t = now_us();
    dpb::Detection {
        id: uuid::Uuid::now_v7().to_string(),
        camera: Some(common::CameraRef {
            site: "burgas".into(),
            camera: camera.into(),
        }),
        time: Some(timestamp_from_micros(t)),
        class_label: "person".into(),
        confidence: 0.9,
        track_id: track,
        phase: dpb::TrackPhase::Started as i32,
        track_started_at: Some(timestamp_from_micros(t)),
        snapshot_id: "snap-1".into(),
        ..Default::default()
    }
}

fn officer(site: &str, subject: &str) -> Principal {
    Principal {
        kind: PrincipalKind::Person,
        subject: subject.into(),
        display_name: None,
        roles: [(site.to_string(), [Role::Operator, Role::Auditor].into())].into(),
    }
}

async fn eventually<T>(what: &str, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    for _ in 0..300 {
        if let Some(v) = f().await {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}

struct Installation {
    alerting: Arc<kordon_alerting::Alerting>,
    storage: kordon_storage::StorageApi,
    /// Checks bilateral acceptance itself, as it does on its own in Kubernetes.
    footage: kordon_storage::Storage,
}

/// One installation: storage on a dev-identity listener (alerting's access log), alerting, and
/// a partner link serving alerting.
async fn install(
    dir: &Path,
    partners: PartnersConfig,
    rules: Vec<RuleYaml>,
    stop: &CancellationToken,
) -> Installation {
    let site = partners.site.clone();
    let data = dir.join(format!("{site}-data"));
    let sc = kordon_storage::StorageConfig {
        partners: partners.clone(),
        ..Default::default()
    };
    let storage = kordon_storage::Storage::open(&sc, &data).await.unwrap();
    let addr = free_addr();
    let common = CommonConfig {
        grpc_listen: addr,
        admin_listen: free_addr(),
        data_dir: data.clone(),
        log: LogConfig::default(),
        tls: None,
        auth: AuthConfig::default(),
        dev_identity: true,
    };
    let server = GrpcServer::new("storage", &common)
        .unwrap()
        .add_service(kordon_storage::grpc_service(storage.clone()))
        .bind(addr)
        .await
        .unwrap();
    let s = stop.clone();
    tokio::spawn(async move { server.serve(Readiness::new(), s).await });

    let closed = free_addr();
    let mut config = AlertingConfig {
        detection: DetectionSource {
            endpoints: vec![format!("http://{closed}")],
            ..Default::default()
        },
        rules,
        partners: partners.clone(),
        ..Default::default()
    };
    config.storage.url = Some(format!("http://{addr}"));
    let alerting = kordon_alerting::Alerting::start(config, &data, stop.clone())
        .await
        .unwrap();
    let link = GrpcServer::partner_link(&site, &partners)
        .unwrap()
        .add_service(kordon_alerting::grpc_service(
            kordon_alerting::AlertingApi::new(alerting.clone()),
        ))
        .bind(partners.listen.unwrap())
        .await
        .unwrap();
    let s = stop.clone();
    tokio::spawn(async move { link.serve(Readiness::new(), s).await });
    tokio::spawn(kordon_storage::agreements::watch(
        storage.clone(),
        stop.clone(),
    ));
    Installation {
        alerting,
        storage: kordon_storage::StorageApi::new(storage.clone()),
        footage: storage,
    }
}

fn shared() -> Terms {
    Terms {
        alerts: true,
        min_severity: Some("high".into()),
        cameras: vec!["port-gate".into()],
        ..Default::default()
    }
}

fn received() -> Terms {
    Terms {
        alerts: true,
        ..Default::default()
    }
}

struct Pki {
    burgas: (PathBuf, PathBuf, PathBuf),
    edirne: (PathBuf, PathBuf, PathBuf),
    stranger: PathBuf,
}

fn pki(dir: &Path) -> Pki {
    let stranger = ca("stranger");
    let path = dir.join("stranger-ca.crt");
    std::fs::write(&path, &stranger.pem).unwrap();
    Pki {
        burgas: link_files(dir, &ca("burgas"), "burgas"),
        edirne: link_files(dir, &ca("edirne"), "edirne"),
        stranger: path,
    }
}

fn partners(
    here: &str,
    own: &(PathBuf, PathBuf, PathBuf),
    listen: SocketAddr,
    others: Vec<PartnerConfig>,
) -> PartnersConfig {
    PartnersConfig {
        site: here.into(),
        listen: Some(listen),
        cert_file: Some(own.0.clone()),
        key_file: Some(own.1.clone()),
        exchange_interval: Duration::from_millis(500),
        partners: others,
    }
}

fn partner(
    site: &str,
    listen: SocketAddr,
    ca: &Path,
    shares: Terms,
    receives: Terms,
) -> PartnerConfig {
    PartnerConfig {
        site: site.into(),
        display_name: String::new(),
        endpoint: format!("https://{listen}"),
        storage_endpoint: None,
        ca_file: ca.to_path_buf(),
        evidence_public_key: "00".repeat(32),
        shares,
        receives,
    }
}

fn rules() -> Vec<RuleYaml> {
    ["port-gate", "pier-2"]
        .iter()
        .map(|cam| RuleYaml {
            name: format!("person-at-{cam}"),
            site: "burgas".into(),
            severity: Severity::High,
            cameras: vec![cam.to_string()],
            classes: vec!["person".into()],
            ..Default::default()
        })
        .collect()
}

async fn agreement(a: &kordon_alerting::Alerting, partner: &str) -> pb::SharingAgreement {
    a.partners().link(partner).unwrap().to_proto(0)
}

async fn access_log(i: &Installation, site: &str, who: &Principal) -> Vec<spb::AccessLogEntry> {
    let mut req = tonic::Request::new(spb::ListAccessLogRequest {
        site: site.into(),
        audit: Some(common::AuditContext {
            reason: "test".into(),
            ..Default::default()
        }),
        ..Default::default()
    });
    req.extensions_mut().insert(who.clone());
    i.storage
        .list_access_log(req)
        .await
        .unwrap()
        .into_inner()
        .entries
}

#[tokio::test]
async fn covered_alerts_reach_the_partner_with_allowed_fields_and_acks_come_back() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let (lb, le, ly) = (free_addr(), free_addr(), free_addr());
    let _ = ly;
    let stop = CancellationToken::new();
    let burgas = install(
        dir.path(),
        partners(
            "burgas",
            &pki.burgas,
            lb,
            vec![
                partner("edirne", le, &pki.edirne.2, shared(), received()),
                // Declared with the wrong CA: the endpoint is Edirne's link.
                partner("yambol", le, &pki.stranger, received(), received()),
            ],
        ),
        rules(),
        &stop,
    )
    .await;
    let edirne = install(
        dir.path(),
        partners(
            "edirne",
            &pki.edirne,
            le,
            vec![partner("burgas", lb, &pki.burgas.2, received(), shared())],
        ),
        Vec::new(),
        &stop,
    )
    .await;

    let state = |a: &pb::SharingAgreement| a.status.clone().unwrap_or_default();
    eventually("both sides to accept", async || {
        let (x, y) = (
            agreement(&burgas.alerting, "edirne").await,
            agreement(&edirne.alerting, "burgas").await,
        );
        (state(&x).state == pb::AgreementState::Accepted as i32
            && state(&y).state == pb::AgreementState::Accepted as i32)
            .then_some(())
    })
    .await;
    let (x, y) = (
        agreement(&burgas.alerting, "edirne").await,
        agreement(&edirne.alerting, "burgas").await,
    );
    assert_eq!(state(&x).terms_digest, state(&y).terms_digest);
    assert_eq!(state(&x).partner_terms_digest, state(&y).terms_digest);
    // Unreachable (first while Edirne's link was not up yet), then why: the certificate.
    let yambol = eventually("yambol to be refused for its certificate", async || {
        let s = state(&agreement(&burgas.alerting, "yambol").await);
        s.state_reason
            .contains("not signed by the CA declared")
            .then_some(s)
    })
    .await;
    assert_eq!(yambol.state, pb::AgreementState::Unreachable as i32);
    // Storage on its own reaches the same verdict.
    eventually("storage to accept", async || {
        burgas.footage.agreement_accepted("edirne").then_some(())
    })
    .await;
    assert!(!burgas.footage.agreement_accepted("yambol"));

    // A covered alert and an uncovered one.
    burgas
        .alerting
        .ingest(person_at("port-gate", 1))
        .await
        .unwrap();
    burgas
        .alerting
        .ingest(person_at("pier-2", 2))
        .await
        .unwrap();
    let copy = eventually("the shared alert at Edirne", async || {
        edirne
            .alerting
            .store()
            .list_alerts(&Default::default(), None, 100)
            .await
            .unwrap()
            .into_iter()
            .next()
    })
    .await;
    let origin = copy.origin.clone().expect("a partner alert has its origin");
    assert_eq!(origin.site, "burgas");
    assert_eq!(origin.alert_id, copy.id);
    assert_eq!(copy.camera.clone().unwrap().camera, "port-gate");
    assert!(copy.rule_id.is_empty(), "the rule's internal id left");
    assert!(
        copy.detection
            .clone()
            .unwrap_or_default()
            .snapshot_id
            .is_empty(),
        "the snapshot left although the terms share none"
    );
    let local = burgas
        .alerting
        .store()
        .list_alerts(&Default::default(), None, 100)
        .await
        .unwrap();
    assert_eq!(local.len(), 2, "{local:?}");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let at_edirne = edirne
        .alerting
        .store()
        .list_alerts(&Default::default(), None, 100)
        .await
        .unwrap();
    assert_eq!(
        at_edirne.len(),
        1,
        "pier-2's alert reached Edirne: {at_edirne:?}"
    );

    // Edirne's officer, with roles on Edirne only, sees the copy through the API (get and
    // list); the origin's site grants them nothing, and Burgas's original stays out of reach.
    let api = kordon_alerting::AlertingApi::new(edirne.alerting.clone());
    let edirne_officer = officer("edirne", "officer-7");
    let mut req = tonic::Request::new(pb::GetAlertRequest {
        alert_id: copy.id.clone(),
    });
    req.extensions_mut().insert(edirne_officer.clone());
    let got = api
        .get_alert(req)
        .await
        .expect("the copy, by roles at Edirne");
    assert_eq!(got.into_inner().alert.unwrap().id, copy.id);
    let mut req = tonic::Request::new(pb::ListAlertsRequest::default());
    req.extensions_mut().insert(edirne_officer.clone());
    let listed = api.list_alerts(req).await.unwrap().into_inner().alerts;
    assert_eq!(listed.len(), 1, "{listed:?}");
    let burgas_api = kordon_alerting::AlertingApi::new(burgas.alerting.clone());
    let mut req = tonic::Request::new(pb::GetAlertRequest {
        alert_id: copy.id.clone(),
    });
    req.extensions_mut().insert(edirne_officer.clone());
    let refused = burgas_api.get_alert(req).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied);

    // Joint response: Edirne's officer acknowledges; Burgas shows it.
    edirne
        .alerting
        .act(
            &copy.id,
            Action::Acknowledge {
                note: "patrol on the way".into(),
            },
            &officer("edirne", "officer-7"),
            0,
        )
        .await
        .unwrap();
    let original = eventually("the acknowledgement at Burgas", async || {
        let a = burgas.alerting.alert(&copy.id).await.unwrap();
        (a.state == pb::AlertState::Acknowledged as i32).then_some(a)
    })
    .await;
    assert_eq!(original.acknowledged_by, "edirne/officer-7");
    assert_eq!(original.acknowledge_note, "patrol on the way");
    // Burgas forwards the new version; Edirne's copy knows the origin's state.
    eventually("the origin's state at Edirne", async || {
        let c = edirne.alerting.alert(&copy.id).await.unwrap();
        (c.origin.unwrap().state == pb::AlertState::Acknowledged as i32).then_some(())
    })
    .await;

    // Both logs.
    let fwd = access_log(&burgas, "burgas", &officer("burgas", "auditor")).await;
    assert!(
        fwd.iter()
            .any(|e| e.action == spb::AccessAction::AlertForward as i32
                && e.recipient == "edirne"
                && e.objects.iter().any(|o| o.id == copy.id)),
        "{fwd:?}"
    );
    let rcv = access_log(&edirne, "edirne", &officer("edirne", "auditor")).await;
    assert!(
        rcv.iter()
            .any(|e| e.action == spb::AccessAction::AlertReceive as i32
                && e.source == "burgas"
                && e.objects.iter().any(|o| o.id == copy.id)),
        "{rcv:?}"
    );
    stop.cancel();
}

#[tokio::test]
async fn different_terms_share_nothing_and_say_which() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let (lb, le) = (free_addr(), free_addr());
    let stop = CancellationToken::new();
    let burgas = install(
        dir.path(),
        partners(
            "burgas",
            &pki.burgas,
            lb,
            vec![partner("edirne", le, &pki.edirne.2, shared(), received())],
        ),
        rules(),
        &stop,
    )
    .await;
    let mut expects = shared();
    expects.snapshots = true;
    let edirne = install(
        dir.path(),
        partners(
            "edirne",
            &pki.edirne,
            le,
            vec![partner("burgas", lb, &pki.burgas.2, received(), expects)],
        ),
        Vec::new(),
        &stop,
    )
    .await;
    let s = eventually("a mismatch at Burgas", async || {
        let s = agreement(&burgas.alerting, "edirne")
            .await
            .status
            .unwrap_or_default();
        (s.state == pb::AgreementState::Mismatch as i32).then_some(s)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        !burgas.footage.agreement_accepted("edirne")
            && !edirne.footage.agreement_accepted("burgas"),
        "storage let footage flow across a mismatched agreement"
    );
    assert!(
        s.state_reason.contains("snapshots: false vs true"),
        "{}",
        s.state_reason
    );
    burgas
        .alerting
        .ingest(person_at("port-gate", 1))
        .await
        .unwrap();
    eventually("Burgas's alert", async || {
        (!burgas
            .alerting
            .store()
            .list_alerts(&Default::default(), None, 10)
            .await
            .unwrap()
            .is_empty())
        .then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        edirne
            .alerting
            .store()
            .list_alerts(&Default::default(), None, 10)
            .await
            .unwrap()
            .is_empty(),
        "an alert crossed a mismatched agreement"
    );
    // A partner call outside the link (no partner identity) is refused.
    let e = burgas
        .alerting
        .receive_partner_alert(
            &officer("burgas", "someone"),
            "edirne",
            pb::Alert::default(),
        )
        .await
        .unwrap_err();
    assert!(e.to_string().contains("not a partner site"), "{e}");
    stop.cancel();
}
