//! The gRPC server gate against real clients on a loopback port: health and reflection answer
//! without identity; everything else needs a JWT, a client certificate or the development
//! identity; refusals carry the right codes.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use kordon_proto::common::v1::identity_service_client::IdentityServiceClient;
use kordon_proto::common::v1::{PrincipalKind, WhoAmIRequest};
use kordon_runtime::admin::Readiness;
use kordon_runtime::config::{
    AuthConfig, CommonConfig, JwtAlgorithm, JwtConfig, JwtKeyConfig, LogConfig, MtlsConfig,
    TlsConfig,
};
use kordon_runtime::server::GrpcServer;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

fn config(dir: &Path) -> CommonConfig {
    CommonConfig {
        grpc_listen: "127.0.0.1:0".parse().unwrap(),
        admin_listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.to_path_buf(),
        log: LogConfig::default(),
        tls: None,
        auth: AuthConfig::default(),
        dev_identity: false,
    }
}

struct Running {
    addr: SocketAddr,
    shutdown: CancellationToken,
    handle: tokio::task::JoinHandle<Result<(), kordon_runtime::RuntimeError>>,
    readiness: Readiness,
}

async fn start(config: &CommonConfig) -> Running {
    let server = GrpcServer::new("test", config)
        .unwrap()
        .bind(config.grpc_listen)
        .await
        .unwrap();
    let addr = server.local_addr();
    let shutdown = CancellationToken::new();
    let readiness = Readiness::new();
    let handle = tokio::spawn(server.serve(readiness.clone(), shutdown.clone()));
    // Wait until it is listening and marked ready.
    for _ in 0..100 {
        if readiness.not_ready().is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    Running {
        addr,
        shutdown,
        handle,
        readiness,
    }
}

async fn plain_channel(addr: SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

#[tokio::test]
async fn health_and_reflection_need_no_identity_but_services_do() {
    let dir = tempfile::tempdir().unwrap();
    let running = start(&config(dir.path())).await;
    let channel = plain_channel(running.addr).await;

    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    let resp = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "kordon.common.v1.IdentityService".into(),
        })
        .await
        .unwrap();
    assert_eq!(
        resp.into_inner().status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );

    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    let mut reflection = ServerReflectionClient::new(channel.clone());
    let mut stream = reflection
        .server_reflection_info(tokio_stream::iter(vec![ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        }]))
        .await
        .unwrap()
        .into_inner();
    let msg = stream.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = msg.message_response else {
        panic!("unexpected reflection answer: {msg:?}");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    assert!(
        names.contains(&"kordon.common.v1.IdentityService".to_string()),
        "{names:?}"
    );
    assert!(
        names.contains(&"grpc.health.v1.Health".to_string()),
        "{names:?}"
    );
    assert!(
        !names.iter().any(|n| n.starts_with("kordon.storage")),
        "only what is served is advertised: {names:?}"
    );

    let mut identity = IdentityServiceClient::new(channel);
    let err = identity.who_am_i(WhoAmIRequest {}).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated, "{err:?}");
    assert!(err.message().contains("no credentials"), "{err:?}");

    let metrics = kordon_runtime::metrics::render();
    assert!(
        metrics.contains("kordon_grpc_server_auth_failures_total{reason=\"unauthenticated\"}"),
        "{metrics}"
    );

    running.shutdown.cancel();
    running.handle.await.unwrap().unwrap();
    assert!(
        !running.readiness.not_ready().is_empty(),
        "not ready after shutdown"
    );
}

#[tokio::test]
async fn development_identity_is_a_local_admin() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.dev_identity = true;
    let running = start(&cfg).await;
    let mut identity = IdentityServiceClient::new(plain_channel(running.addr).await);
    let me = identity
        .who_am_i(WhoAmIRequest {})
        .await
        .unwrap()
        .into_inner();
    let p = me.principal.unwrap();
    assert_eq!(p.kind, PrincipalKind::Development as i32);
    assert_eq!(me.server, "test");
    running.shutdown.cancel();
    running.handle.await.unwrap().unwrap();
}

#[tokio::test]
async fn development_identity_refuses_a_listener_off_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.dev_identity = true;
    let err = match GrpcServer::new("test", &cfg)
        .unwrap()
        .bind("0.0.0.0:0".parse().unwrap())
        .await
    {
        Ok(_) => panic!("bound the development identity on 0.0.0.0"),
        Err(e) => e,
    };
    assert!(
        matches!(err, kordon_runtime::RuntimeError::Config { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("`KORDON_DEV_IDENTITY`"), "{err}");
}

#[tokio::test]
async fn people_authenticate_with_jwt() {
    let dir = tempfile::tempdir().unwrap();
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let pub_path = dir.path().join("issuer.pub.pem");
    std::fs::write(&pub_path, key.public_key_pem()).unwrap();
    let mut cfg = config(dir.path());
    cfg.auth.jwt = Some(JwtConfig {
        issuer: "kordon-test-issuer".into(),
        audience: "kordon".into(),
        keys: vec![JwtKeyConfig {
            id: None,
            algorithm: JwtAlgorithm::EdDSA,
            public_key_file: pub_path,
        }],
        roles_claim: "kordon_roles".into(),
        leeway_seconds: 0,
    });
    let running = start(&cfg).await;
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 300;
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA),
        &serde_json::json!({"sub": "selin.kaya", "iss": "kordon-test-issuer", "aud": "kordon",
            "exp": exp, "kordon_roles": {"edirne": ["auditor"]}}),
        &jsonwebtoken::EncodingKey::from_ed_pem(key.serialize_pem().as_bytes()).unwrap(),
    )
    .unwrap();

    let mut identity = IdentityServiceClient::new(plain_channel(running.addr).await);
    let mut req = tonic::Request::new(WhoAmIRequest {});
    req.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    let p = identity
        .who_am_i(req)
        .await
        .unwrap()
        .into_inner()
        .principal
        .unwrap();
    assert_eq!(p.subject, "selin.kaya");
    assert_eq!(p.kind, PrincipalKind::Person as i32);
    assert_eq!(p.roles.len(), 1);
    assert_eq!(p.roles[0].site, "edirne");

    let mut req = tonic::Request::new(WhoAmIRequest {});
    req.metadata_mut()
        .insert("authorization", "Bearer forged.token.here".parse().unwrap());
    let err = identity.who_am_i(req).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated);
    running.shutdown.cancel();
    running.handle.await.unwrap().unwrap();
}

struct Pki {
    ca_pem: String,
    server_cert: PathBuf,
    server_key: PathBuf,
    ca_file: PathBuf,
    client_cert_pem: String,
    client_key_pem: String,
    /// Signed by the same CA but naming no Kordon identity.
    plain_cert_pem: String,
    plain_key_pem: String,
}

fn pki(dir: &Path) -> Pki {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "kordon test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::from_params(&ca_params, &ca_key);

    let server_key = rcgen::KeyPair::generate().unwrap();
    let server_params = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap();
    let server = server_params.signed_by(&server_key, &issuer).unwrap();

    let client_key = rcgen::KeyPair::generate().unwrap();
    let mut client_params =
        rcgen::CertificateParams::new(vec!["ingest.burgas.kordon".into()]).unwrap();
    client_params.subject_alt_names.push(rcgen::SanType::URI(
        "spiffe://kordon.io/ns/kordon/site/burgas/ingest"
            .try_into()
            .unwrap(),
    ));
    let client = client_params.signed_by(&client_key, &issuer).unwrap();

    let plain_key = rcgen::KeyPair::generate().unwrap();
    let plain_params = rcgen::CertificateParams::new(vec!["ingest.burgas.kordon".into()]).unwrap();
    let plain = plain_params.signed_by(&plain_key, &issuer).unwrap();

    let write = |name: &str, body: String| {
        let p = dir.join(name);
        std::fs::write(&p, body).unwrap();
        p
    };
    Pki {
        ca_pem: ca.pem(),
        ca_file: write("ca.pem", ca.pem()),
        server_cert: write("server.pem", server.pem()),
        server_key: write("server.key", server_key.serialize_pem()),
        client_cert_pem: client.pem(),
        client_key_pem: client_key.serialize_pem(),
        plain_cert_pem: plain.pem(),
        plain_key_pem: plain_key.serialize_pem(),
    }
}

#[tokio::test]
async fn services_authenticate_with_client_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let mut cfg = config(dir.path());
    cfg.tls = Some(TlsConfig {
        cert_file: pki.server_cert.clone(),
        key_file: pki.server_key.clone(),
        client_ca_file: Some(pki.ca_file.clone()),
    });
    cfg.auth.mtls = MtlsConfig::default();
    let running = start(&cfg).await;
    let endpoint = format!("https://localhost:{}", running.addr.port());

    let with_cert = Channel::from_shared(endpoint.clone())
        .unwrap()
        .tls_config(
            ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(&pki.ca_pem))
                .identity(Identity::from_pem(
                    &pki.client_cert_pem,
                    &pki.client_key_pem,
                ))
                .domain_name("localhost"),
        )
        .unwrap()
        .connect()
        .await
        .unwrap();
    let p = IdentityServiceClient::new(with_cert)
        .who_am_i(WhoAmIRequest {})
        .await
        .unwrap()
        .into_inner()
        .principal
        .unwrap();
    assert_eq!(p.kind, PrincipalKind::Service as i32);
    assert_eq!(p.subject, "ingest.burgas");
    let sites: Vec<&str> = p.roles.iter().map(|r| r.site.as_str()).collect();
    assert_eq!(sites, ["burgas"], "acts for its own site only");

    // The same credentials held in memory (as the operator holds its own), through the
    // runtime's client.
    let in_memory = kordon_runtime::client::connect_lazy_pem(
        &endpoint,
        &kordon_runtime::client::TlsPem {
            ca: pki.ca_pem.clone().into_bytes(),
            cert: pki.client_cert_pem.clone().into_bytes(),
            key: pki.client_key_pem.clone().into_bytes(),
        },
        std::time::Duration::from_secs(5),
    )
    .unwrap();
    let p = IdentityServiceClient::new(in_memory)
        .who_am_i(WhoAmIRequest {})
        .await
        .unwrap()
        .into_inner()
        .principal
        .unwrap();
    assert_eq!(p.subject, "ingest.burgas");

    // Signed by the same CA, but naming no identity, with no auth.mtls.subjects entry: refused
    // (it used to act for every site).
    let plain = Channel::from_shared(endpoint.clone())
        .unwrap()
        .tls_config(
            ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(&pki.ca_pem))
                .identity(Identity::from_pem(&pki.plain_cert_pem, &pki.plain_key_pem))
                .domain_name("localhost"),
        )
        .unwrap()
        .connect()
        .await
        .unwrap();
    let err = IdentityServiceClient::new(plain)
        .who_am_i(WhoAmIRequest {})
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated, "{err:?}");
    assert!(err.message().contains("auth.mtls.subjects"), "{err:?}");

    // TLS without a client certificate: the connection is allowed (people use JWTs) but the
    // call has no identity.
    let without_cert = Channel::from_shared(endpoint)
        .unwrap()
        .tls_config(
            ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(&pki.ca_pem))
                .domain_name("localhost"),
        )
        .unwrap()
        .connect()
        .await
        .unwrap();
    let err = IdentityServiceClient::new(without_cert)
        .who_am_i(WhoAmIRequest {})
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated);
    running.shutdown.cancel();
    running.handle.await.unwrap().unwrap();
}

/// A gRPC-Web call (`application/grpc-web+proto` over HTTP/1.1, as browsers send it) to `path`
/// with an empty request message: the response's status, headers and body.
async fn grpc_web_call(
    addr: SocketAddr,
    host: &str,
    path: &str,
    token: Option<&str>,
) -> (u16, String, Vec<u8>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let auth = token
        .map(|t| format!("authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    // One uncompressed message of length 0.
    let body = [0u8, 0, 0, 0, 0];
    s.write_all(
        format!(
            "POST {path} HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/grpc-web+proto\r\n\
             x-grpc-web: 1\r\n{auth}content-length: {}\r\nconnection: close\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    s.write_all(&body).await.unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&raw[..split]).to_lowercase();
    let status: u16 = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let mut body = raw[split + 4..].to_vec();
    if head.contains("transfer-encoding: chunked") {
        let mut out = Vec::new();
        let mut rest = &body[..];
        loop {
            let eol = rest.windows(2).position(|w| w == b"\r\n").unwrap();
            let n = usize::from_str_radix(std::str::from_utf8(&rest[..eol]).unwrap().trim(), 16)
                .unwrap();
            if n == 0 {
                break;
            }
            out.extend_from_slice(&rest[eol + 2..eol + 2 + n]);
            rest = &rest[eol + 2 + n + 2..];
        }
        body = out;
    }
    (status, head, body)
}

/// gRPC-Web frames: (flags, payload); flag 0x80 marks the trailers frame.
fn grpc_web_frames(mut body: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut frames = Vec::new();
    while body.len() >= 5 {
        let len = u32::from_be_bytes(body[1..5].try_into().unwrap()) as usize;
        frames.push((body[0], body[5..5 + len].to_vec()));
        body = &body[5 + len..];
    }
    frames
}

#[tokio::test]
async fn grpc_web_on_an_http_listener_goes_through_the_same_gate() {
    use prost::Message;
    let dir = tempfile::tempdir().unwrap();
    for dev in [true, false] {
        let mut cfg = config(dir.path());
        cfg.dev_identity = dev;
        let server = GrpcServer::new("test", &cfg).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let http = tokio::spawn(kordon_runtime::http::serve(
            listener,
            server.grpc_web(),
            stop.clone().cancelled_owned(),
            kordon_runtime::http::HttpLimits::default(),
        ));
        let host = addr.to_string();
        let (status, head, body) = grpc_web_call(
            addr,
            &host,
            "/kordon.common.v1.IdentityService/WhoAmI",
            None,
        )
        .await;
        assert_eq!(status, 200, "{head}");
        assert!(
            head.contains("content-type: application/grpc-web"),
            "{head}"
        );
        if dev {
            // A message frame with the principal, then trailers with grpc-status 0.
            let frames = grpc_web_frames(&body);
            assert_eq!(frames.len(), 2, "{frames:?}");
            let me = kordon_proto::common::v1::WhoAmIResponse::decode(&frames[0].1[..]).unwrap();
            assert_eq!(me.server, "test");
            assert_eq!(
                me.principal.unwrap().kind,
                PrincipalKind::Development as i32
            );
            assert_eq!(frames[1].0, 0x80);
            let trailers = String::from_utf8_lossy(&frames[1].1).to_lowercase();
            assert!(trailers.contains("grpc-status:0"), "{trailers}");
            // A page that reached it by a domain name (DNS rebinding to 127.0.0.1) is refused.
            let (_, head, _) = grpc_web_call(
                addr,
                "rebind.example:8472",
                "/kordon.common.v1.IdentityService/WhoAmI",
                None,
            )
            .await;
            assert!(head.contains("grpc-status: 7"), "{head}");
        } else {
            // Refused by the gate, as over gRPC: UNAUTHENTICATED, trailers-only.
            assert!(head.contains("grpc-status: 16"), "{head}");
            let (_, head, _) = grpc_web_call(
                addr,
                &host,
                "/kordon.common.v1.IdentityService/WhoAmI",
                Some("forged.token.here"),
            )
            .await;
            assert!(head.contains("grpc-status: 16"), "{head}");
        }
        // Health and reflection are for probes and tools on the gRPC port, not browsers.
        let (status, _, _) = grpc_web_call(addr, &host, "/grpc.health.v1.Health/Check", None).await;
        assert_eq!(status, 404);
        stop.cancel();
        http.await.unwrap().unwrap();
    }
}
