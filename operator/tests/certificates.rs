//! Secure by default, against a real kube-apiserver (scripts/kube.sh): a Site with no
//! `tlsSecret` gets its own CA and a certificate per workload, its pods mount them and run no
//! development identity — and a real storage service started from the rendered config with
//! those certificates (as the kubelet would mount them) serves mTLS: the site's ingest and
//! transcode certificates work on their own site only, and callers without one are refused.
//!
//! Skipped with a note when `KORDON_TEST_KUBECONFIG` is unset; a failure under `CI`.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::{FakeIngest, eventually};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kordon_objects::ObjectStoreConfig;
use kordon_operator::crd::Site;
use kordon_operator::pki;
use kordon_proto::common::v1::CameraRef;
use kordon_proto::common::v1::identity_service_client::IdentityServiceClient;
use kordon_proto::common::v1::{PrincipalKind, WhoAmIRequest};
use kordon_proto::storage::v1::GetChainHeadRequest;
use kordon_proto::storage::v1::storage_service_client::StorageServiceClient;
use kordon_runtime::admin::Readiness;
use kordon_runtime::config::{AuthConfig, CommonConfig, LogConfig, TlsConfig};
use kordon_runtime::server::GrpcServer;
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

const WAIT: Duration = Duration::from_secs(90);
const SITE: &str = "haskovo";
const COMPONENTS: [&str; 5] = ["ingest", "detection", "storage", "transcode", "alerting"];
/// The first of [`COMPONENTS`] run as StatefulSets, the rest as Deployments.
const SHARDED: usize = 2;

fn site_json() -> serde_json::Value {
    json!({
        "apiVersion": "kordon.io/v1alpha1",
        "kind": "Site",
        "metadata": { "name": SITE },
        "spec": {
            "country": "BG",
            "storage": { "bucket": "kordon-haskovo" },
            "ingest": { "replicas": 1 },
        }
    })
}

fn data(secret: &Secret, key: &str) -> String {
    let bytes = &secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .unwrap_or_else(|| panic!("no {key}"))
        .0;
    String::from_utf8(bytes.clone()).unwrap()
}

/// What the kubelet does with a Secret volume: one file per key.
fn mount(secret: &Secret, dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    for key in ["tls.crt", "tls.key", "ca.crt"] {
        std::fs::write(dir.join(key), data(secret, key)).unwrap();
    }
}

async fn channel(port: u16, ns: &str, ca: &str, identity: Option<(&str, &str)>) -> Channel {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca))
        // The name ingest dials in the cluster; the server is on loopback here.
        .domain_name(format!("{SITE}-storage.{ns}.svc"));
    if let Some((cert, key)) = identity {
        tls = tls.identity(Identity::from_pem(cert, key));
    }
    Channel::from_shared(format!("https://127.0.0.1:{port}"))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .unwrap()
}

async fn chain_head(channel: Channel, site: &str) -> Result<(), tonic::Status> {
    StorageServiceClient::new(channel)
        .get_chain_head(GetChainHeadRequest {
            camera: Some(CameraRef {
                site: site.into(),
                camera: "gate-1".into(),
            }),
        })
        .await
        .map(|_| ())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_site_without_tls_secret_runs_mtls_on_certificates_the_operator_issued() {
    let Some(client) = common::client().await else {
        return;
    };
    common::install_crds(&client).await;
    let ns = common::namespace(&client, "kordon-certs").await;
    let (stop, operator) = common::start_operator(
        &client,
        &ns,
        Arc::new(FakeIngest::default()),
        Arc::new(common::FakeDetection::default()),
        Duration::from_secs(1),
    );
    let sites: Api<Site> = Api::namespaced(client.clone(), &ns);
    sites
        .create(
            &PostParams::default(),
            &serde_json::from_value(site_json()).unwrap(),
        )
        .await
        .unwrap();

    // The CA Secret, and a certificate Secret per workload that chains to it and names it.
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let ca = eventually(WAIT, || async {
        secrets.get(&format!("{SITE}-ca")).await.ok()
    })
    .await
    .expect("CA Secret");
    let ca_pem = data(&ca, "ca.crt");
    let ca_info = pki::inspect(&ca_pem).unwrap();
    assert!(ca_info.is_ca);
    assert!(data(&ca, "ca.key").contains("PRIVATE KEY"));
    let mut certs = std::collections::BTreeMap::new();
    for c in COMPONENTS {
        let name = format!("{SITE}-{c}-tls");
        let s = eventually(WAIT, || async { secrets.get(&name).await.ok() })
            .await
            .unwrap_or_else(|| panic!("Secret {name}"));
        assert_eq!(s.type_.as_deref(), Some("kubernetes.io/tls"));
        assert_eq!(data(&s, "ca.crt"), ca_pem);
        assert!(!s.data.as_ref().unwrap().contains_key("ca.key"));
        let info = pki::inspect(&data(&s, "tls.crt")).unwrap();
        assert_eq!(
            info.identities.iter().map(|i| i.uri()).collect::<Vec<_>>(),
            [format!("spiffe://kordon.io/ns/{ns}/site/{SITE}/{c}")]
        );
        certs.insert(c, (s, info));
    }

    // Every workload mounts its own Secret, rolls with its certificate, and no pod runs the
    // development identity.
    let sts: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let mut templates: Vec<(&str, _)> = Vec::new();
    for c in COMPONENTS[..SHARDED].iter().copied() {
        let name = format!("{SITE}-{c}");
        let s = eventually(WAIT, || async { sts.get(&name).await.ok() })
            .await
            .unwrap_or_else(|| panic!("StatefulSet {name}"));
        templates.push((c, s.spec.template));
    }
    for c in COMPONENTS[SHARDED..].iter().copied() {
        let name = format!("{SITE}-{c}");
        let d = eventually(WAIT, || async { deployments.get(&name).await.ok() })
            .await
            .unwrap_or_else(|| panic!("Deployment {name}"));
        templates.push((c, d.spec.template));
    }
    for (c, t) in &templates {
        let text = serde_json::to_string(t).unwrap();
        assert!(!text.contains("KORDON_DEV_IDENTITY"), "{c}: {text}");
        let spec = t.spec.as_ref().unwrap();
        let volume = spec
            .volumes
            .as_ref()
            .unwrap()
            .iter()
            .find(|v| v.name == "tls")
            .unwrap_or_else(|| panic!("{c} mounts no certificate"));
        assert_eq!(
            volume.secret.as_ref().unwrap().secret_name.as_deref(),
            Some(format!("{SITE}-{c}-tls").as_str())
        );
        let annotations = t.metadata.as_ref().unwrap().annotations.as_ref().unwrap();
        assert_eq!(
            annotations["kordon.io/certificate-sha256"],
            certs[c].1.fingerprint
        );
    }

    // The Site says which CA its services trust.
    let tls = eventually(WAIT, || async {
        let s = sites.get(SITE).await.ok()?;
        s.status?.conditions.into_iter().find(|c| c.type_ == "TLS")
    })
    .await
    .expect("TLS condition");
    assert_eq!(
        (tls.status.as_str(), tls.reason.as_str()),
        ("True", "OperatorCA")
    );
    assert!(
        tls.message.contains(&format!("{SITE}-ca")),
        "{}",
        tls.message
    );

    // A real storage service from the rendered config, with its Secret mounted where the
    // config says.
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let cm = eventually(WAIT, || async {
        config_maps.get(&format!("{SITE}-config")).await.ok()
    })
    .await
    .expect("the site ConfigMap");
    let rendered: serde_yaml::Value = serde_yaml::from_str(&cm.data.unwrap()["site.yaml"]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let tls_dir = dir.path().join("etc-kordon-tls");
    mount(&certs["storage"].0, &tls_dir);
    let path = |key: &str| {
        let p = rendered["tls"][key].as_str().unwrap();
        tls_dir.join(Path::new(p).file_name().unwrap())
    };
    let auth: AuthConfig = match rendered.get("auth") {
        Some(a) => serde_yaml::from_value(a.clone()).unwrap(),
        None => AuthConfig::default(),
    };
    let common = CommonConfig {
        grpc_listen: "127.0.0.1:0".parse().unwrap(),
        // Not served here; only told apart from the gRPC listener.
        admin_listen: "127.0.0.1:1".parse().unwrap(),
        data_dir: dir.path().to_path_buf(),
        log: LogConfig::default(),
        tls: Some(TlsConfig {
            cert_file: path("cert_file"),
            key_file: path("key_file"),
            client_ca_file: Some(path("client_ca_file")),
        }),
        auth,
        dev_identity: false,
    };
    common.validate().unwrap();
    let storage_config = kordon_storage::StorageConfig {
        objects: Some(ObjectStoreConfig::Local {
            root: dir.path().join("media"),
        }),
        http_listen: "127.0.0.1:0".parse().unwrap(),
        ..Default::default()
    };
    let storage = kordon_storage::Storage::open(&storage_config, dir.path())
        .await
        .unwrap();
    let bound = GrpcServer::new("storage", &common)
        .unwrap()
        .add_service(kordon_storage::grpc_service(storage))
        .bind(common.grpc_listen)
        .await
        .unwrap();
    let port = bound.local_addr().port();
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(bound.serve(Readiness::new(), shutdown.clone()));

    // The site's ingest, with its own certificate: a service of this site, and of no other.
    let (ingest_secret, _) = &certs["ingest"];
    let (cert, key) = (
        data(ingest_secret, "tls.crt"),
        data(ingest_secret, "tls.key"),
    );
    let as_ingest = channel(port, &ns, &ca_pem, Some((&cert, &key))).await;
    let me = IdentityServiceClient::new(as_ingest.clone())
        .who_am_i(WhoAmIRequest {})
        .await
        .unwrap()
        .into_inner()
        .principal
        .unwrap();
    assert_eq!(me.kind, PrincipalKind::Service as i32);
    assert_eq!(me.subject, format!("ingest.{SITE}"));
    chain_head(as_ingest.clone(), SITE)
        .await
        .expect("ingest reads its own site");
    let denied = chain_head(as_ingest, "edirne").await.unwrap_err();
    assert_eq!(denied.code(), tonic::Code::PermissionDenied, "{denied:?}");

    // The site's transcode likewise (it lists segments and registers its outputs), with the
    // files its section of the config names.
    let (transcode_secret, _) = &certs["transcode"];
    let transcode_tls = dir.path().join("transcode-tls");
    mount(transcode_secret, &transcode_tls);
    let file = |key: &str| {
        let p = rendered["transcode"]["storage"][key].as_str().unwrap();
        std::fs::read_to_string(transcode_tls.join(Path::new(p).file_name().unwrap())).unwrap()
    };
    assert_eq!(file("ca_file"), ca_pem);
    let as_transcode = channel(
        port,
        &ns,
        &file("ca_file"),
        Some((&file("cert_file"), &file("key_file"))),
    )
    .await;
    let me = IdentityServiceClient::new(as_transcode.clone())
        .who_am_i(WhoAmIRequest {})
        .await
        .unwrap()
        .into_inner()
        .principal
        .unwrap();
    assert_eq!(me.kind, PrincipalKind::Service as i32);
    assert_eq!(me.subject, format!("transcode.{SITE}"));
    chain_head(as_transcode.clone(), SITE)
        .await
        .expect("transcode reads its own site");
    let denied = chain_head(as_transcode, "edirne").await.unwrap_err();
    assert_eq!(denied.code(), tonic::Code::PermissionDenied, "{denied:?}");

    // Another pod with TLS but no certificate: refused, as is a plaintext call.
    let anonymous = channel(port, &ns, &ca_pem, None).await;
    let refused = chain_head(anonymous, SITE).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{refused:?}");
    let plaintext = Channel::from_shared(format!("http://127.0.0.1:{port}"))
        .unwrap()
        .connect()
        .await;
    if let Ok(plain) = plaintext {
        assert!(chain_head(plain, SITE).await.is_err(), "plaintext accepted");
    }

    // A certificate of another CA (another site's, or self-made) does not get through TLS.
    let stranger = pki::SiteCa::generate(&ns, "edirne", std::time::SystemTime::now()).unwrap();
    let forged = stranger
        .issue(
            &kordon_runtime::auth::ServiceIdentity::new(&ns, SITE, "ingest").unwrap(),
            &[],
            std::time::SystemTime::now(),
        )
        .unwrap();
    let forged_channel = Channel::from_shared(format!("https://127.0.0.1:{port}"))
        .unwrap()
        .tls_config(
            ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(&ca_pem))
                .identity(Identity::from_pem(&forged.cert_pem, &forged.key_pem))
                .domain_name(format!("{SITE}-storage.{ns}.svc")),
        )
        .unwrap()
        .connect()
        .await;
    if let Ok(c) = forged_channel {
        assert!(
            chain_head(c, SITE).await.is_err(),
            "a certificate from another CA was accepted"
        );
    }

    shutdown.cancel();
    server.await.unwrap().unwrap();

    // Deleting the Site removes its CA and certificates.
    sites.delete(SITE, &DeleteParams::default()).await.unwrap();
    eventually(WAIT, || async {
        let mut left = 0;
        for name in std::iter::once(format!("{SITE}-ca"))
            .chain(COMPONENTS.iter().map(|c| format!("{SITE}-{c}-tls")))
        {
            if secrets.get_opt(&name).await.ok()?.is_some() {
                left += 1;
            }
        }
        (left == 0).then_some(())
    })
    .await
    .expect("certificate Secrets deleted with the Site");

    stop.cancel();
    operator.await.unwrap();
    common::drop_namespace(&client, &ns).await;
}
