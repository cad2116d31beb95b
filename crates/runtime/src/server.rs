//! The gRPC server every Kordon service runs on.
//!
//! [`GrpcServer`] adds to the services it is given: gRPC health (`grpc.health.v1`, each service
//! `SERVING` once listening and `NOT_SERVING` from the start of shutdown), reflection (v1 and
//! v1alpha, advertising exactly the services served here), the identity service
//! (`kordon.common.v1.IdentityService/WhoAmI`), optional TLS/mTLS, and the [`Gate`]: one tower
//! layer that, for every call, opens a span linked to the caller's trace, authenticates the
//! caller (except for health and reflection), and records metrics.

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use futures::future::BoxFuture;
use kordon_proto::common::v1 as pb;
use tokio_util::sync::CancellationToken;
use tonic::body::Body;
use tonic::server::NamedService;
use tonic::service::RoutesBuilder;
use tonic::transport::server::{TcpConnectInfo, TcpIncoming, TlsConnectInfo};
use tonic::transport::{Certificate, Identity, ServerTlsConfig};
use tower::{Layer, Service};
use tracing::Instrument;

use crate::RuntimeError;
use crate::admin::Readiness;
use crate::auth::{Authenticator, Principal};
use crate::config::CommonConfig;
use crate::metrics::GrpcMetrics;

/// Path prefixes answered without identity: probes and tools need them.
const OPEN_PREFIXES: &[&str] = &["/grpc.health.v1.", "/grpc.reflection."];

/// HTTP/2 streams one connection may have open at once.
pub const MAX_CONCURRENT_STREAMS: u32 = 128;
/// Calls one connection may have in progress at once; more wait.
pub const MAX_CALLS_PER_CONNECTION: usize = 64;
/// Calls in progress across all connections; more wait for a slot.
pub const MAX_CALLS: usize = 1024;
/// Longest a call may take to answer (a server stream's messages may go on after it). A
/// client's shorter `grpc-timeout` wins.
pub const CALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);
/// Longest message (in bytes, before percent-encoding) a refusal carries in `grpc-message`.
/// Services quote the offending value, which can be as long as a request allows (4 MiB), and
/// clients refuse response headers beyond a few KiB (grpcio: 8 KiB) with a RESOURCE_EXHAUSTED
/// of their own that hides the refusal; longer messages are cut, the code is kept.
pub const MAX_STATUS_MESSAGE: usize = 1024;
/// HTTP/2 and TCP keepalive: a peer that stops answering is dropped after about
/// interval + timeout, and its calls are cancelled.
pub const KEEPALIVE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(30);
pub const KEEPALIVE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Builds a gRPC server for one or more Kordon services.
pub struct GrpcServer {
    name: String,
    routes: RoutesBuilder,
    names: BTreeSet<&'static str>,
    authenticator: Arc<Authenticator>,
    tls: Option<ServerTlsConfig>,
}

impl GrpcServer {
    /// `name` is what WhoAmI reports (`storage`, `standalone`, …).
    pub fn new(name: &str, config: &CommonConfig) -> Result<Self, RuntimeError> {
        crate::install_crypto_provider();
        let authenticator = Arc::new(Authenticator::from_config(config)?);
        let tls = match &config.tls {
            None => None,
            Some(t) => {
                let read = |p: &std::path::Path| {
                    std::fs::read(p).map_err(|source| RuntimeError::ReadFile {
                        path: p.to_path_buf(),
                        source,
                    })
                };
                let mut tls = ServerTlsConfig::new()
                    .identity(Identity::from_pem(read(&t.cert_file)?, read(&t.key_file)?));
                if let Some(ca) = &t.client_ca_file {
                    // Optional: people come with a JWT and no certificate.
                    tls = tls
                        .client_ca_root(Certificate::from_pem(read(ca)?))
                        .client_auth_optional(true);
                }
                Some(tls)
            }
        };
        if authenticator.dev_identity() {
            tracing::warn!(
                "DEVELOPMENT IDENTITY ENABLED: calls without credentials act as a local admin \
                 on every site. Never run like this outside a developer machine."
            );
        } else if !authenticator.accepts_anything() {
            tracing::warn!(
                "no authentication configured (auth.jwt, tls.client_ca_file): every call except \
                 health and reflection will be refused"
            );
        }
        let mut server = GrpcServer {
            name: name.to_string(),
            routes: RoutesBuilder::default(),
            names: BTreeSet::new(),
            authenticator,
            tls,
        };
        server = server.add_service(pb::identity_service_server::IdentityServiceServer::new(
            IdentityService {
                server: name.to_string(),
            },
        ));
        Ok(server)
    }

    /// The partner link's server ([`crate::partner`]): TLS with this site's partner-link
    /// certificate, a client certificate required and verified against the declared partner
    /// CAs, and each caller identified as the one partner whose CA signed it. Add only the
    /// services partners call; their RPCs admit partners by [`Principal::partner_site`].
    pub fn partner_link(
        name: &str,
        config: &crate::partner::PartnersConfig,
    ) -> Result<Self, RuntimeError> {
        crate::install_crypto_provider();
        config.validate()?;
        let trust = Arc::new(crate::partner::PartnerTrust::new(config)?);
        let read = |key: &str, p: &Option<std::path::PathBuf>| match p {
            Some(p) => std::fs::read(p).map_err(|source| RuntimeError::ReadFile {
                path: p.to_path_buf(),
                source,
            }),
            None => Err(RuntimeError::config(key, "required for the partner link")),
        };
        let mut tls = ServerTlsConfig::new().identity(Identity::from_pem(
            read("partners.cert_file", &config.cert_file)?,
            read("partners.key_file", &config.key_file)?,
        ));
        if !config.partners.is_empty() {
            tls = tls
                .client_ca_root(Certificate::from_pem(trust.ca_bundle()))
                .client_auth_optional(false);
        }
        let mut server = GrpcServer {
            name: format!("{name}-partner-link"),
            routes: RoutesBuilder::default(),
            names: BTreeSet::new(),
            authenticator: Arc::new(Authenticator::partner_link(trust)),
            tls: Some(tls),
        };
        server = server.add_service(pb::identity_service_server::IdentityServiceServer::new(
            IdentityService {
                server: name.to_string(),
            },
        ));
        Ok(server)
    }

    /// Adds a generated tonic service.
    pub fn add_service<S>(mut self, svc: S) -> Self
    where
        S: Service<http::Request<Body>, Error = Infallible>
            + NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Response: axum::response::IntoResponse,
        S::Future: Send + 'static,
    {
        self.names.insert(S::NAME);
        self.routes.add_service(svc);
        self
    }

    /// The services added so far, answered as gRPC-Web (`application/grpc-web[+proto]` over
    /// HTTP/1.1) behind the same [`Gate`]: the same identity checks, spans and metrics as gRPC.
    /// Merge it into an HTTP listener's router so a browser page served from that origin (the
    /// web console) calls the same API as every other client, with no second API and no CORS.
    ///
    /// Health and reflection are not included: browsers have no use for them. Calls are bounded
    /// by the HTTP listener ([`crate::http::HttpLimits`]: one call at a time per HTTP/1.1
    /// connection, a bounded number of connections) rather than by the gRPC server's limits.
    pub fn grpc_web(&self) -> axum::Router {
        let routes = self.routes.clone().routes();
        let service = tower::ServiceBuilder::new()
            .layer(tonic_web::GrpcWebLayer::new())
            .layer(GateLayer {
                authenticator: self.authenticator.clone(),
                web: true,
            })
            .service(routes);
        self.names.iter().fold(axum::Router::new(), |router, name| {
            router.route_service(&format!("/{name}/{{*method}}"), service.clone())
        })
    }

    /// Binds the listener (so a busy port fails start-up) and returns the server, ready to run.
    /// The development identity is refused on a non-loopback `addr` (see
    /// [`crate::config::check_dev_identity_listener`]).
    pub async fn bind(self, addr: SocketAddr) -> Result<BoundGrpcServer, RuntimeError> {
        if self.authenticator.dev_identity() {
            crate::config::check_dev_identity_listener(
                addr,
                crate::config::dev_identity_remote_allowed_from_env()?,
            )?;
        }
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| RuntimeError::Bind { addr, source })?;
        self.on_listener(listener)
    }

    /// As [`GrpcServer::bind`], on a listener bound earlier: a process whose own parts call
    /// this server (standalone) binds first, so calls made while it starts wait in the accept
    /// queue instead of being refused.
    pub fn on_listener(
        self,
        listener: tokio::net::TcpListener,
    ) -> Result<BoundGrpcServer, RuntimeError> {
        let local_addr = listener.local_addr().map_err(|source| RuntimeError::Bind {
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            source,
        })?;
        if self.authenticator.dev_identity() {
            crate::config::check_dev_identity_listener(
                local_addr,
                crate::config::dev_identity_remote_allowed_from_env()?,
            )?;
        }
        Ok(BoundGrpcServer {
            server: self,
            listener,
            local_addr,
        })
    }
}

pub struct BoundGrpcServer {
    server: GrpcServer,
    listener: tokio::net::TcpListener,
    local_addr: SocketAddr,
}

impl BoundGrpcServer {
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves until `shutdown`, then stops accepting, reports NOT_SERVING and drains calls in
    /// flight. `readiness` gets a `grpc:<name>` component.
    pub async fn serve(
        self,
        readiness: Readiness,
        shutdown: CancellationToken,
    ) -> Result<(), RuntimeError> {
        let BoundGrpcServer {
            server,
            listener,
            local_addr,
        } = self;
        let component = format!("grpc:{}", server.name);
        readiness.register(&component);

        let (health, health_service) = tonic_health::server::health_reporter();
        let mut reflection_v1 = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(kordon_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET);
        let mut reflection_v1alpha = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(kordon_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET);
        let mut advertised: Vec<&str> = server.names.iter().copied().collect();
        advertised.push("grpc.health.v1.Health");
        advertised.push("grpc.reflection.v1.ServerReflection");
        advertised.push("grpc.reflection.v1alpha.ServerReflection");
        for name in &advertised {
            reflection_v1 = reflection_v1.with_service_name(*name);
            reflection_v1alpha = reflection_v1alpha.with_service_name(*name);
        }
        let reflection_v1 = reflection_v1
            .build_v1()
            .map_err(|e| RuntimeError::Telemetry(format!("reflection: {e}")))?;
        let reflection_v1alpha = reflection_v1alpha
            .build_v1alpha()
            .map_err(|e| RuntimeError::Telemetry(format!("reflection: {e}")))?;

        let mut routes = server.routes;
        routes
            .add_service(health_service)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha);

        // Bounded work: a client cannot open unbounded streams or calls, a unary call cannot
        // run for ever, and a peer that vanished is noticed (keepalive) so streaming work for
        // it stops (see storage's VerifyChain and ExportEvidence).
        let mut builder = tonic::transport::Server::builder()
            .max_concurrent_streams(Some(MAX_CONCURRENT_STREAMS))
            .concurrency_limit_per_connection(MAX_CALLS_PER_CONNECTION)
            .timeout(CALL_TIMEOUT)
            .http2_keepalive_interval(Some(KEEPALIVE_INTERVAL))
            .http2_keepalive_timeout(Some(KEEPALIVE_TIMEOUT))
            .tcp_keepalive(Some(KEEPALIVE_INTERVAL));
        if let Some(tls) = server.tls {
            builder = builder.tls_config(tls)?;
        }
        let gate = GateLayer {
            authenticator: server.authenticator,
            web: false,
        };
        let router = builder
            .layer(tower::limit::GlobalConcurrencyLimitLayer::new(MAX_CALLS))
            .layer(gate)
            .add_routes(routes.routes());

        for name in &server.names {
            health
                .set_service_status(*name, tonic_health::ServingStatus::Serving)
                .await;
        }
        health
            .set_service_status("", tonic_health::ServingStatus::Serving)
            .await;
        tracing::info!(
            addr = %local_addr,
            server = %server.name,
            services = ?server.names,
            "gRPC listening"
        );
        readiness.set(&component, true);

        let names = server.names.clone();
        let drain = {
            let readiness = readiness.clone();
            async move {
                shutdown.cancelled().await;
                readiness.set_all_not_ready();
                for name in &names {
                    health
                        .set_service_status(*name, tonic_health::ServingStatus::NotServing)
                        .await;
                }
                health
                    .set_service_status("", tonic_health::ServingStatus::NotServing)
                    .await;
            }
        };
        let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
        router.serve_with_incoming_shutdown(incoming, drain).await?;
        tracing::info!(server = %component, "gRPC server stopped");
        Ok(())
    }
}

/// Runs `server` on `config.grpc_listen` and the admin port on `config.admin_listen` until
/// `shutdown`. Both listeners are bound before either serves, so a busy port fails start-up.
pub async fn run(
    server: GrpcServer,
    config: &CommonConfig,
    readiness: Readiness,
    shutdown: CancellationToken,
) -> Result<(), RuntimeError> {
    let grpc = server.bind(config.grpc_listen).await?;
    serve_with_admin(grpc, config, readiness, shutdown).await
}

/// Serves a bound gRPC server and the admin port (`config.admin_listen`) until `shutdown`.
pub async fn serve_with_admin(
    grpc: BoundGrpcServer,
    config: &CommonConfig,
    readiness: Readiness,
    shutdown: CancellationToken,
) -> Result<(), RuntimeError> {
    let admin =
        crate::admin::bind(config.admin_listen, readiness.clone(), shutdown.clone()).await?;
    tokio::try_join!(grpc.serve(readiness, shutdown), admin)?;
    Ok(())
}

#[derive(Clone)]
struct IdentityService {
    server: String,
}

#[tonic::async_trait]
impl pb::identity_service_server::IdentityService for IdentityService {
    async fn who_am_i(
        &self,
        request: tonic::Request<pb::WhoAmIRequest>,
    ) -> Result<tonic::Response<pb::WhoAmIResponse>, tonic::Status> {
        let p = crate::auth::principal(&request)?;
        Ok(tonic::Response::new(pb::WhoAmIResponse {
            principal: Some(p.to_proto()),
            server: self.server.clone(),
            server_version: crate::VERSION.to_string(),
        }))
    }
}

/// The layer that puts every call through the [`Gate`].
#[derive(Clone)]
pub struct GateLayer {
    authenticator: Arc<Authenticator>,
    /// Calls come from browsers (gRPC-Web): see [`Gate::web`].
    web: bool,
}

impl<S> Layer<S> for GateLayer {
    type Service = Gate<S>;

    fn layer(&self, inner: S) -> Gate<S> {
        Gate {
            inner,
            authenticator: self.authenticator.clone(),
            web: self.web,
        }
    }
}

/// Tracing, authentication and metrics for one call.
#[derive(Clone)]
pub struct Gate<S> {
    inner: S,
    authenticator: Arc<Authenticator>,
    /// Browser calls (gRPC-Web). With the development identity these are refused unless the
    /// page reached the server by an IP address or `localhost` ([`browser_host_is_literal`]):
    /// a page on a domain that re-resolves to 127.0.0.1 (DNS rebinding) would otherwise act as
    /// the local admin from any web site the developer visits.
    web: bool,
}

/// Whether a browser's `Host` names the server by an IP address or `localhost`, not by a
/// domain name another party controls.
fn browser_host_is_literal(headers: &http::HeaderMap, uri: &http::Uri) -> bool {
    let host = headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| uri.host());
    let Some(host) = host else {
        return false;
    };
    // `[::1]:8472`, `127.0.0.1:8472`, `localhost:8472`, or without a port.
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(n, _)| n),
    };
    name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::IpAddr>().is_ok()
}

/// `/pkg.Service/Method` → (`pkg.Service`, `Method`); anything else is reported as unknown so
/// label values stay a small fixed set.
fn split_path(path: &str) -> (&str, &str) {
    let mut parts = path.trim_start_matches('/').splitn(2, '/');
    match (parts.next(), parts.next()) {
        (Some(s), Some(m)) if !s.is_empty() && !m.is_empty() && !m.contains('/') => (s, m),
        _ => ("unknown", "unknown"),
    }
}

/// Cuts a refusal's `grpc-message` to [`MAX_STATUS_MESSAGE`] bytes (see there). Only errors
/// answered before the response starts carry their status in the headers; those are the
/// refusals of bad input.
fn bound_status_message(headers: &mut http::HeaderMap) {
    // The header is the percent-encoded message: never shorter than the message itself.
    if headers
        .get("grpc-message")
        .is_none_or(|v| v.len() <= MAX_STATUS_MESSAGE)
    {
        return;
    }
    let Some(status) = tonic::Status::from_header_map(headers) else {
        return;
    };
    let message = status.message();
    if message.len() <= MAX_STATUS_MESSAGE {
        return;
    }
    let mut cut = MAX_STATUS_MESSAGE;
    while !message.is_char_boundary(cut) {
        cut -= 1;
    }
    let short = tonic::Status::new(
        status.code(),
        format!(
            "{} [... {} more bytes]",
            &message[..cut],
            message.len() - cut
        ),
    );
    let mut scratch = http::HeaderMap::new();
    if short.add_header(&mut scratch).is_ok()
        && let Some(v) = scratch.remove("grpc-message")
    {
        headers.insert("grpc-message", v);
    }
}

impl<S, B> Service<http::Request<B>> for Gate<S>
where
    S: Service<http::Request<B>, Response = http::Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        // Take the service that was driven to readiness; leave a fresh clone behind.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let path = req.uri().path().to_string();
        let open = OPEN_PREFIXES.iter().any(|p| path.starts_with(p));
        let metrics = GrpcMetrics::get();

        let (service, method) = split_path(&path);
        // Unknown paths keep their own label only when the route exists; the router answers
        // UNIMPLEMENTED otherwise, and the label is then bounded by `unknown`.
        let (service, method) = (service.to_string(), method.to_string());
        let span = tracing::info_span!(
            "grpc",
            otel.kind = "server",
            rpc.system = "grpc",
            rpc.service = %service,
            rpc.method = %method,
            principal = tracing::field::Empty,
            grpc.code = tracing::field::Empty,
        );
        crate::telemetry::link_remote_parent(&span, req.headers());

        if self.web
            && self.authenticator.dev_identity()
            && !browser_host_is_literal(req.headers(), req.uri())
        {
            metrics
                .requests
                .with_label_values(&[&service, &method, "PermissionDenied"])
                .inc();
            let status = tonic::Status::permission_denied(
                "the development identity answers browsers only at an IP address or localhost \
                 (open the console as http://127.0.0.1:<port>/)",
            );
            return Box::pin(async move { Ok(status.into_http::<Body>()) });
        }
        if !open {
            let chain: Vec<Vec<u8>> = req
                .extensions()
                .get::<TlsConnectInfo<TcpConnectInfo>>()
                .and_then(|i| i.peer_certs())
                .map(|chain| chain.iter().map(|c| c.as_ref().to_vec()).collect())
                .unwrap_or_default();
            match self.authenticator.authenticate(req.headers(), &chain) {
                Ok(principal) => {
                    span.record("principal", tracing::field::display(&principal));
                    req.extensions_mut().insert::<Principal>(principal);
                }
                Err(e) => {
                    metrics
                        .auth_failures
                        .with_label_values(&["unauthenticated"])
                        .inc();
                    metrics
                        .requests
                        .with_label_values(&[&service, &method, "Unauthenticated"])
                        .inc();
                    span.in_scope(|| tracing::info!(error = %e, "call refused"));
                    let status: tonic::Status = e.into();
                    return Box::pin(async move { Ok(status.into_http::<Body>()) });
                }
            }
        }

        Box::pin(
            async move {
                metrics.in_flight.inc();
                let started = Instant::now();
                let mut result = inner.call(req).await;
                if let Ok(resp) = &mut result {
                    bound_status_message(resp.headers_mut());
                }
                metrics.in_flight.dec();
                metrics
                    .duration
                    .with_label_values(&[&service, &method])
                    .observe(started.elapsed().as_secs_f64());
                if let Ok(resp) = &result {
                    // Errors come back trailers-only, with grpc-status in the headers; a
                    // response without it started normally (its final status is in trailers).
                    let code = resp
                        .headers()
                        .get("grpc-status")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<i32>().ok())
                        .map(tonic::Code::from_i32)
                        .unwrap_or(tonic::Code::Ok);
                    let code = format!("{code:?}");
                    tracing::Span::current().record("grpc.code", code.as_str());
                    metrics
                        .requests
                        .with_label_values(&[&service, &method, &code])
                        .inc();
                }
                result
            }
            .instrument(span),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::{MAX_STATUS_MESSAGE, bound_status_message, split_path};

    #[test]
    fn a_long_refusal_message_is_cut_and_keeps_its_code() {
        // A refusal quoting 10,000 bytes of a hostile name (multi-byte characters included).
        let quoted = format!("no camera `{}`", "é/..".repeat(2_000));
        let resp = tonic::Status::invalid_argument(quoted.clone()).into_http::<()>();
        let mut headers = resp.headers().clone();
        bound_status_message(&mut headers);
        let status = tonic::Status::from_header_map(&headers).unwrap();
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        let m = status.message();
        assert!(m.len() < MAX_STATUS_MESSAGE + 40, "{} bytes", m.len());
        assert!(quoted.starts_with(m.split(" [...").next().unwrap()), "{m}");
        assert!(m.ends_with("more bytes]"), "{m}");
        // Short messages pass unchanged.
        let short = tonic::Status::not_found("no job `x`").into_http::<()>();
        let mut headers = short.headers().clone();
        bound_status_message(&mut headers);
        assert_eq!(headers, *short.headers());
    }

    #[test]
    fn browsers_must_name_a_development_server_by_address() {
        let ok = |host: &str| {
            let mut h = http::HeaderMap::new();
            h.insert(http::header::HOST, host.parse().unwrap());
            super::browser_host_is_literal(&h, &"/x".parse().unwrap())
        };
        for good in [
            "127.0.0.1:8472",
            "127.0.0.1",
            "[::1]:8472",
            "localhost:8472",
            "LOCALHOST",
        ] {
            assert!(ok(good), "{good}");
        }
        for bad in [
            "attacker.example:8472",
            "127.0.0.1.nip.io",
            "localhost.evil",
        ] {
            assert!(!ok(bad), "{bad}");
        }
        assert!(!super::browser_host_is_literal(
            &http::HeaderMap::new(),
            &"/x".parse().unwrap()
        ));
    }

    #[test]
    fn paths_split_into_bounded_labels() {
        assert_eq!(
            split_path("/kordon.storage.v1.StorageService/ListSegments"),
            ("kordon.storage.v1.StorageService", "ListSegments")
        );
        assert_eq!(split_path("/"), ("unknown", "unknown"));
        assert_eq!(split_path("/a/b/c"), ("unknown", "unknown"));
    }
}
