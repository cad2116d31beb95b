//! The console gateway: the web console is served on storage's HTTP listener and calls that one
//! origin, but in a cluster ingest, detection and alerting run in pods of their own. With
//! `storage.gateway` set, storage answers their read APIs too and passes each call on with the
//! caller's own bearer token, so every service still decides for itself who may see what:
//!
//! - **alerting** (one Service): every call is passed through unchanged, streams included;
//! - **ingest** and **detection** (a StatefulSet each, every replica owning a shard of the
//!   cameras): reads are fanned out over the replicas the headless Service's name resolves to
//!   (every pod, ready or not: the operator's Services publish not-ready addresses) and merged;
//!   a replica that does not answer is left out and logged; a watch ends when a replica's stream ends or the replicas
//!   change, and the caller watches again (the console does). Shard management (the
//!   operator's `ApplyCameras`, `RemoveCamera`, `GetShard`) is refused: it goes to each replica.
//!
//! A call without a bearer token (a client certificate, the development identity) is refused
//! with UNAUTHENTICATED: the gateway never lends its own identity, and it presents no client
//! certificate upstream.
//!
//! ```yaml
//! storage:
//!   gateway:
//!     ingest: https://burgas-ingest.kordon.svc:8470      # the headless Service: every replica
//!     detection: https://burgas-detection.kordon.svc:8470
//!     alerting: https://burgas-alerting.kordon.svc:8470
//!     ca_file: /etc/kordon-tls/ca.crt                    # the site CA (https)
//! ```

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::{Stream, StreamExt};
use kordon_proto::common::v1 as common;
use kordon_proto::detection::v1 as dpb;
use kordon_proto::ingest::v1 as ipb;
use serde::{Deserialize, Serialize};
use tonic::body::Body;
use tonic::server::NamedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use tonic::{Request, Response, Status};

use crate::StorageError;

/// Where the site's other services are, for the console gateway.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatewayConfig {
    /// Ingest's headless Service, e.g. `https://burgas-ingest.kordon.svc:8470`: its name
    /// resolves to every replica.
    pub ingest: Option<String>,
    /// Detection's headless Service, resolved the same way.
    pub detection: Option<String>,
    /// Alerting's Service.
    pub alerting: Option<String>,
    /// The CA that signed their certificates (needed for `https://`).
    pub ca_file: Option<PathBuf>,
}

impl GatewayConfig {
    /// Whether any service is to be reached through the gateway.
    pub fn is_set(&self) -> bool {
        self.ingest.is_some() || self.detection.is_some() || self.alerting.is_some()
    }

    /// Checks the URLs (keys relative to `storage`).
    pub fn validate(&self) -> Result<(), StorageError> {
        for (key, url) in [
            ("gateway.ingest", &self.ingest),
            ("gateway.detection", &self.detection),
            ("gateway.alerting", &self.alerting),
        ] {
            if let Some(url) = url {
                let (https, _, _) = split_url(url).map_err(|m| StorageError::config(key, m))?;
                if https && self.ca_file.is_none() {
                    return Err(StorageError::config(
                        "gateway.ca_file",
                        format!("must name the CA that signed {url}'s certificate"),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// `(https, host, port)` of an `http(s)://host:port` URL without a path.
fn split_url(url: &str) -> Result<(bool, String, u16), String> {
    let (https, rest) = if let Some(r) = url.strip_prefix("https://") {
        (true, r)
    } else if let Some(r) = url.strip_prefix("http://") {
        (false, r)
    } else {
        return Err(format!("`{url}` must start with https:// or http://"));
    };
    let rest = rest.trim_end_matches('/');
    let (host, port) = rest
        .rsplit_once(':')
        .ok_or_else(|| format!("`{url}` must name a port (e.g. :8470)"))?;
    let port = port
        .parse::<u16>()
        .map_err(|_| format!("`{url}`: `{port}` is not a port"))?;
    if host.is_empty() || host.contains('/') {
        return Err(format!(
            "`{url}` must be scheme://host:port, without a path"
        ));
    }
    Ok((https, host.trim_matches(['[', ']']).to_string(), port))
}

/// One service behind the gateway: its URL, and a channel per replica address (kept while the
/// address resolves).
struct Upstream {
    /// For messages.
    url: String,
    host: String,
    port: u16,
    tls: Option<ClientTlsConfig>,
    /// The Service itself (alerting).
    service: Channel,
    replicas: Mutex<HashMap<SocketAddr, Channel>>,
}

impl Upstream {
    fn new(key: &str, url: &str, ca: Option<&[u8]>) -> Result<Self, StorageError> {
        kordon_runtime::install_crypto_provider();
        let (https, host, port) = split_url(url).map_err(|m| StorageError::config(key, m))?;
        let tls = match (https, ca) {
            (true, Some(ca)) => Some(
                ClientTlsConfig::new()
                    .ca_certificate(Certificate::from_pem(ca))
                    .domain_name(host.clone()),
            ),
            (true, None) => {
                return Err(StorageError::config(
                    "gateway.ca_file",
                    format!("must name the CA that signed {url}'s certificate"),
                ));
            }
            (false, _) => None,
        };
        let service = endpoint(url, tls.clone()).map_err(|m| StorageError::config(key, m))?;
        Ok(Self {
            url: url.to_string(),
            host,
            port,
            tls,
            service: service.connect_lazy(),
            replicas: Mutex::new(HashMap::new()),
        })
    }

    /// A channel to each address the Service's name resolves to now (each replica of a
    /// headless Service), in address order.
    async fn replicas(&self) -> Result<Vec<(SocketAddr, Channel)>, Status> {
        let mut addrs: Vec<SocketAddr> = tokio::net::lookup_host((self.host.as_str(), self.port))
            .await
            .map_err(|e| {
                Status::unavailable(format!("{}: cannot resolve its replicas: {e}", self.url))
            })?
            .collect();
        addrs.sort();
        addrs.dedup();
        if addrs.is_empty() {
            return Err(Status::unavailable(format!(
                "{}: no replica is ready",
                self.url
            )));
        }
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let mut cache = self.replicas.lock().unwrap_or_else(|p| p.into_inner());
        cache.retain(|a, _| addrs.contains(a));
        let mut out = Vec::with_capacity(addrs.len());
        for addr in addrs {
            let channel = match cache.get(&addr) {
                Some(c) => c.clone(),
                None => {
                    // The address, verified against the Service's name (the certificates of a
                    // StatefulSet's pods name `<svc>.<ns>.svc` and `*.<svc>.<ns>.svc`).
                    let c = endpoint(&format!("{scheme}://{addr}"), self.tls.clone())
                        .map_err(Status::internal)?
                        .connect_lazy();
                    cache.insert(addr, c.clone());
                    c
                }
            };
            out.push((addr, channel));
        }
        Ok(out)
    }
}

fn endpoint(url: &str, tls: Option<ClientTlsConfig>) -> Result<Endpoint, String> {
    let e = Endpoint::from_shared(url.to_string())
        .map_err(|e| format!("`{url}` is not a URL: {e}"))?
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true)
        // A replica gone behind a silent network fault ends its calls and watches with an
        // error instead of leaving them hanging.
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(10))
        .keep_alive_while_idle(true);
    match tls {
        Some(t) => e.tls_config(t).map_err(|e| e.to_string()),
        None => Ok(e),
    }
}

const NO_TOKEN: &str = "the console gateway passes on a person's bearer token only; \
                        with a client certificate, call the service itself";

/// `msg` as a call on the caller's behalf: their bearer token and the trace context.
fn on_behalf<T, M>(req: &Request<T>, msg: M) -> Result<Request<M>, Status> {
    let token = req
        .metadata()
        .get("authorization")
        .ok_or_else(|| Status::unauthenticated(NO_TOKEN))?;
    let mut out = Request::new(msg);
    out.metadata_mut().insert("authorization", token.clone());
    kordon_runtime::telemetry::inject_current(out.metadata_mut());
    Ok(out)
}

fn shard_call(what: &str) -> Status {
    Status::unimplemented(format!(
        "{what} is not passed on by the console gateway: it goes to each replica directly"
    ))
}

/// How long one replica gets to answer a read.
const CALL_TIMEOUT: Duration = Duration::from_secs(20);

/// Errors that every replica would give alike (the caller's rights, the request itself):
/// returned as they are, never logged as a replica's failure.
fn callers_error(s: &Status) -> bool {
    matches!(
        s.code(),
        tonic::Code::PermissionDenied
            | tonic::Code::Unauthenticated
            | tonic::Code::InvalidArgument
            | tonic::Code::FailedPrecondition
    )
}

/// One replica's answer within [`CALL_TIMEOUT`].
async fn within<T>(
    addr: SocketAddr,
    call: impl std::future::Future<Output = Result<T, Status>>,
) -> Result<T, Status> {
    tokio::time::timeout(CALL_TIMEOUT, call)
        .await
        .unwrap_or_else(|_| {
            Err(Status::deadline_exceeded(format!(
                "the replica at {addr} did not answer in {} s",
                CALL_TIMEOUT.as_secs()
            )))
        })
}

/// The answers of every replica, in address order. A replica that fails is logged and left
/// out; when none answers, the error returned is the most telling one (the caller's own, else
/// a replica's failure, else NOT_FOUND).
async fn each<T, F, Fut>(upstream: &Upstream, call: F) -> Result<Vec<T>, Status>
where
    F: Fn(Channel) -> Fut,
    Fut: std::future::Future<Output = Result<T, Status>>,
{
    let replicas = upstream.replicas().await?;
    let results = futures::future::join_all(
        replicas
            .iter()
            .map(|(addr, c)| within(*addr, call(c.clone()))),
    )
    .await;
    let mut out = Vec::new();
    let mut worst: Option<Status> = None;
    for ((addr, _), r) in replicas.iter().zip(results) {
        match r {
            Ok(v) => out.push(v),
            Err(s) => {
                let rank = |s: &Status| {
                    if callers_error(s) {
                        2
                    } else if s.code() == tonic::Code::NotFound {
                        0
                    } else {
                        1
                    }
                };
                if rank(&s) == 1 {
                    tracing::warn!(upstream = %upstream.url, replica = %addr, code = ?s.code(),
                                   error = s.message(), "gateway: a replica did not answer");
                }
                if worst.as_ref().is_none_or(|w| rank(&s) > rank(w)) {
                    worst = Some(s);
                }
            }
        }
    }
    match (out.is_empty(), worst) {
        (true, Some(e)) => Err(e),
        _ => Ok(out),
    }
}

type Watch<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// How often an open watch checks whether the replicas changed.
const REPLICA_CHECK: Duration = Duration::from_secs(10);

/// The streams of the replicas as one; it ends (UNAVAILABLE, so the caller watches again) when
/// one of them ends, when the replicas behind the name change, or, if some replica did not
/// answer (`complete` false), at the next check, so its shard joins once it is back.
fn merge_watch<T: Send + 'static>(
    upstream: Arc<Upstream>,
    replicas: Vec<SocketAddr>,
    complete: bool,
    streams: Vec<(SocketAddr, tonic::Streaming<T>)>,
) -> Watch<T> {
    let ended = |what: String| Err(Status::unavailable(what));
    let merged = futures::stream::select_all(streams.into_iter().map(move |(addr, s)| {
        s.chain(futures::stream::once(async move {
            ended(format!(
                "the replica at {addr} ended its watch: watch again"
            ))
        }))
        .boxed()
    }));
    let changed = futures::stream::unfold(upstream, move |up| {
        let replicas = replicas.clone();
        async move {
            loop {
                tokio::time::sleep(REPLICA_CHECK).await;
                if !complete {
                    return Some((ended("a replica did not answer: watch again".into()), up));
                }
                if let Ok(now) = up.replicas().await
                    && now.iter().map(|(a, _)| *a).collect::<Vec<_>>() != replicas
                {
                    return Some((ended("the replicas changed: watch again".into()), up));
                }
            }
        }
    });
    // The first error ends the stream (tonic sends it as the call's status).
    let mut done = false;
    futures::stream::select(merged, changed)
        .take_while(move |item| {
            let go = !done;
            done = item.is_err();
            futures::future::ready(go)
        })
        .boxed()
}

/// A watch on every replica that answers, merged ([`merge_watch`]); the first error when none
/// does.
async fn open_watches<T, F, Fut>(upstream: &Arc<Upstream>, open: F) -> Result<Watch<T>, Status>
where
    T: Send + 'static,
    F: Fn(Channel) -> Fut,
    Fut: std::future::Future<Output = Result<Response<tonic::Streaming<T>>, Status>>,
{
    let replicas = upstream.replicas().await?;
    let opened = futures::future::join_all(
        replicas
            .iter()
            .map(|(addr, c)| within(*addr, open(c.clone()))),
    )
    .await;
    let mut streams = Vec::new();
    let mut first_err = None;
    for ((addr, _), r) in replicas.iter().zip(opened) {
        match r {
            Ok(s) => streams.push((*addr, s.into_inner())),
            Err(s) => {
                tracing::warn!(upstream = %upstream.url, replica = %addr, code = ?s.code(),
                               error = s.message(), "gateway: a replica's watch did not open");
                first_err.get_or_insert(s);
            }
        }
    }
    if streams.is_empty() {
        return Err(first_err.unwrap_or_else(|| Status::unavailable("no replica")));
    }
    let complete = first_err.is_none();
    let addrs = replicas.into_iter().map(|(a, _)| a).collect();
    Ok(merge_watch(upstream.clone(), addrs, complete, streams))
}

// ---- ingest -----------------------------------------------------------------------------------

/// Ingest's status reads over every replica.
#[derive(Clone)]
pub struct IngestGateway {
    upstream: Arc<Upstream>,
}

/// The most pages read from one replica for one merged list (1000 cameras each).
const MAX_REPLICA_PAGES: usize = 50;

#[tonic::async_trait]
impl ipb::ingest_service_server::IngestService for IngestGateway {
    async fn get_camera_status(
        &self,
        request: Request<ipb::GetCameraStatusRequest>,
    ) -> Result<Response<ipb::GetCameraStatusResponse>, Status> {
        on_behalf(&request, ())?;
        let msg = request.get_ref().clone();
        // The replica owning the camera answers; the others say NOT_FOUND.
        let found = each(&self.upstream, |c| {
            let r = on_behalf(&request, msg.clone());
            async move {
                ipb::ingest_service_client::IngestServiceClient::new(c)
                    .get_camera_status(r?)
                    .await
            }
        })
        .await?;
        found
            .into_iter()
            .next()
            .ok_or_else(|| Status::not_found("no ingest replica records this camera"))
    }

    async fn list_camera_status(
        &self,
        request: Request<ipb::ListCameraStatusRequest>,
    ) -> Result<Response<ipb::ListCameraStatusResponse>, Status> {
        on_behalf(&request, ())?;
        // The token is the last camera of the previous page (`site/camera`): cameras added or
        // gone meanwhile shift nothing.
        let after: Option<(String, String)> = match crate::grpc::page_token(&request.get_ref().page)
        {
            "" => None,
            t => Some(
                t.split_once('/')
                    .map(|(site, cam)| (site.to_string(), cam.to_string()))
                    .ok_or_else(|| {
                        Status::invalid_argument("page_token: not one this gateway issued")
                    })?,
            ),
        };
        let size = crate::grpc::page_size(&request.get_ref().page) as usize;
        let base = request.get_ref().clone();
        let lists = each(&self.upstream, |c| {
            let request = &request;
            let base = base.clone();
            async move {
                let mut client = ipb::ingest_service_client::IngestServiceClient::new(c);
                let mut all = Vec::new();
                let mut token = String::new();
                for _ in 0..MAX_REPLICA_PAGES {
                    let mut msg = base.clone();
                    msg.page = Some(common::PageRequest {
                        page_size: 1000,
                        page_token: token,
                    });
                    let r = client
                        .list_camera_status(on_behalf(request, msg)?)
                        .await?
                        .into_inner();
                    all.extend(r.cameras);
                    token = r.page.map(|p| p.next_page_token).unwrap_or_default();
                    if token.is_empty() {
                        break;
                    }
                }
                Ok(all)
            }
        })
        .await?;
        let mut cameras: Vec<ipb::CameraStatus> = lists.into_iter().flatten().collect();
        let key = |s: &ipb::CameraStatus| {
            s.camera
                .as_ref()
                .map(|c| (c.site.clone(), c.camera.clone()))
                .unwrap_or_default()
        };
        cameras.sort_by_key(key);
        let mut rest: Vec<ipb::CameraStatus> = cameras
            .into_iter()
            .filter(|c| after.as_ref().is_none_or(|a| key(c) > *a))
            .collect();
        let next = if rest.len() > size {
            rest.truncate(size);
            rest.last()
                .map(key)
                .map(|(site, cam)| format!("{site}/{cam}"))
                .unwrap_or_default()
        } else {
            String::new()
        };
        Ok(Response::new(ipb::ListCameraStatusResponse {
            cameras: rest,
            page: Some(common::PageResponse {
                next_page_token: next,
            }),
        }))
    }

    async fn watch_camera_status(
        &self,
        request: Request<ipb::WatchCameraStatusRequest>,
    ) -> Result<Response<Watch<ipb::WatchCameraStatusResponse>>, Status> {
        on_behalf(&request, ())?;
        let msg = request.get_ref().clone();
        let watch = open_watches(&self.upstream, |c| {
            let r = on_behalf(&request, msg.clone());
            async move {
                ipb::ingest_service_client::IngestServiceClient::new(c)
                    .watch_camera_status(r?)
                    .await
            }
        })
        .await?;
        Ok(Response::new(watch))
    }

    async fn apply_cameras(
        &self,
        _: Request<ipb::ApplyCamerasRequest>,
    ) -> Result<Response<ipb::ApplyCamerasResponse>, Status> {
        Err(shard_call("ApplyCameras"))
    }

    async fn remove_camera(
        &self,
        _: Request<ipb::RemoveCameraRequest>,
    ) -> Result<Response<ipb::RemoveCameraResponse>, Status> {
        Err(shard_call("RemoveCamera"))
    }

    async fn get_shard(
        &self,
        _: Request<ipb::GetShardRequest>,
    ) -> Result<Response<ipb::GetShardResponse>, Status> {
        Err(shard_call("GetShard"))
    }
}

// ---- detection --------------------------------------------------------------------------------

/// Detection's reads over every replica.
#[derive(Clone)]
pub struct DetectionGateway {
    upstream: Arc<Upstream>,
}

/// A merged ListDetections page token, `<replicas>.<index>.<token>`: which replicas (a digest of
/// their addresses), the one being read (by address order) and that replica's own token.
struct DetectionToken {
    replicas: String,
    index: usize,
    inner: String,
}

impl DetectionToken {
    fn parse(token: &str) -> Result<Option<Self>, Status> {
        if token.is_empty() {
            return Ok(None);
        }
        let bad = || Status::invalid_argument("page_token: not one this gateway issued");
        let mut parts = token.splitn(3, '.');
        let (Some(replicas), Some(index), Some(inner)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(bad());
        };
        Ok(Some(Self {
            replicas: replicas.to_string(),
            index: index.parse().map_err(|_| bad())?,
            inner: inner.to_string(),
        }))
    }

    fn format(&self) -> String {
        format!("{}.{}.{}", self.replicas, self.index, self.inner)
    }
}

/// A short digest of the replicas' addresses, so a page token outlives no change of them.
fn replica_set(replicas: &[(SocketAddr, Channel)]) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    for (addr, _) in replicas {
        h.update(addr.to_string().as_bytes());
        h.update(b",");
    }
    hex::encode(&h.finalize()[..6])
}

#[tonic::async_trait]
impl dpb::detection_service_server::DetectionService for DetectionGateway {
    /// Replica after replica (each holds its own cameras, oldest first): the detections of
    /// one camera are in time order, as from the replica itself. A replica that does not answer
    /// is left out (logged); a page token from before the replicas changed is ABORTED.
    async fn list_detections(
        &self,
        request: Request<dpb::ListDetectionsRequest>,
    ) -> Result<Response<dpb::ListDetectionsResponse>, Status> {
        on_behalf(&request, ())?;
        let replicas = self.upstream.replicas().await?;
        let set = replica_set(&replicas);
        let mut at = match DetectionToken::parse(crate::grpc::page_token(&request.get_ref().page))?
        {
            Some(t) if t.replicas != set => {
                return Err(Status::aborted(
                    "the detection replicas changed while paging: list again from the first page",
                ));
            }
            Some(t) => t,
            None => DetectionToken {
                replicas: set.clone(),
                index: 0,
                inner: String::new(),
            },
        };
        loop {
            let Some((addr, channel)) = replicas.get(at.index) else {
                return Ok(Response::new(dpb::ListDetectionsResponse {
                    detections: Vec::new(),
                    page: Some(common::PageResponse::default()),
                }));
            };
            let mut msg = request.get_ref().clone();
            msg.page = Some(common::PageRequest {
                page_size: msg.page.as_ref().map(|p| p.page_size).unwrap_or(0),
                page_token: std::mem::take(&mut at.inner),
            });
            let mut client =
                dpb::detection_service_client::DetectionServiceClient::new(channel.clone());
            let (detections, next) = match within(
                *addr,
                client.list_detections(on_behalf(&request, msg)?),
            )
            .await
            {
                Ok(r) => {
                    let r = r.into_inner();
                    (
                        r.detections,
                        r.page.map(|p| p.next_page_token).unwrap_or_default(),
                    )
                }
                Err(s) if callers_error(&s) => return Err(s),
                Err(s) => {
                    tracing::warn!(upstream = %self.upstream.url, replica = %addr, code = ?s.code(),
                                       error = s.message(), "gateway: a replica did not answer");
                    (Vec::new(), String::new())
                }
            };
            let next = if !next.is_empty() {
                Some(DetectionToken {
                    replicas: set.clone(),
                    index: at.index,
                    inner: next,
                })
            } else if at.index + 1 < replicas.len() {
                Some(DetectionToken {
                    replicas: set.clone(),
                    index: at.index + 1,
                    inner: String::new(),
                })
            } else {
                None
            };
            // A replica with nothing to show: on to the next within this call.
            match next {
                Some(n) if detections.is_empty() => at = n,
                next => {
                    return Ok(Response::new(dpb::ListDetectionsResponse {
                        detections,
                        page: Some(common::PageResponse {
                            next_page_token: next.map(|n| n.format()).unwrap_or_default(),
                        }),
                    }));
                }
            }
        }
    }

    async fn watch_detections(
        &self,
        request: Request<dpb::WatchDetectionsRequest>,
    ) -> Result<Response<Watch<dpb::WatchDetectionsResponse>>, Status> {
        on_behalf(&request, ())?;
        let msg = request.get_ref().clone();
        let watch = open_watches(&self.upstream, |c| {
            let r = on_behalf(&request, msg.clone());
            async move {
                dpb::detection_service_client::DetectionServiceClient::new(c)
                    .watch_detections(r?)
                    .await
            }
        })
        .await?;
        Ok(Response::new(watch))
    }

    async fn get_snapshot(
        &self,
        request: Request<dpb::GetSnapshotRequest>,
    ) -> Result<Response<dpb::GetSnapshotResponse>, Status> {
        on_behalf(&request, ())?;
        let msg = request.get_ref().clone();
        // Asked replica after replica, so the footage read is logged once, by the one holding
        // it; one that does not answer does not hide the others.
        let mut failure = None;
        for (addr, channel) in self.upstream.replicas().await? {
            let mut client = dpb::detection_service_client::DetectionServiceClient::new(channel)
                .max_decoding_message_size(MAX_MESSAGE);
            match within(addr, client.get_snapshot(on_behalf(&request, msg.clone())?)).await {
                Err(s) if s.code() == tonic::Code::NotFound => continue,
                Err(s) if !callers_error(&s) => {
                    tracing::warn!(upstream = %self.upstream.url, replica = %addr, code = ?s.code(),
                                   error = s.message(), "gateway: a replica did not answer");
                    failure.get_or_insert(s);
                }
                other => return other,
            }
        }
        Err(failure.unwrap_or_else(|| {
            Status::not_found(format!("snapshot {} not found", msg.snapshot_id))
        }))
    }

    async fn get_detector_status(
        &self,
        request: Request<dpb::GetDetectorStatusRequest>,
    ) -> Result<Response<dpb::GetDetectorStatusResponse>, Status> {
        on_behalf(&request, ())?;
        let msg = request.get_ref().clone();
        let all = each(&self.upstream, |c| {
            let r = on_behalf(&request, msg.clone());
            async move {
                dpb::detection_service_client::DetectionServiceClient::new(c)
                    .get_detector_status(r?)
                    .await
                    .map(Response::into_inner)
            }
        })
        .await?;
        let mut merged = dpb::GetDetectorStatusResponse::default();
        let mut names = Vec::new();
        for r in all {
            if merged.model.is_none() {
                merged.model = r.model;
            }
            if !r.replica.is_empty() {
                names.push(r.replica);
            }
            merged.cameras.extend(r.cameras);
        }
        merged.replica = names.join(",");
        Ok(Response::new(merged))
    }

    async fn apply_cameras(
        &self,
        _: Request<dpb::ApplyCamerasRequest>,
    ) -> Result<Response<dpb::ApplyCamerasResponse>, Status> {
        Err(shard_call("ApplyCameras"))
    }

    async fn remove_camera(
        &self,
        _: Request<dpb::RemoveCameraRequest>,
    ) -> Result<Response<dpb::RemoveCameraResponse>, Status> {
        Err(shard_call("RemoveCamera"))
    }

    async fn get_shard(
        &self,
        _: Request<dpb::GetShardRequest>,
    ) -> Result<Response<dpb::GetShardResponse>, Status> {
        Err(shard_call("GetShard"))
    }
}

// ---- alerting ---------------------------------------------------------------------------------

/// Alerting's API, every call passed through as it came (after the gateway's own identity
/// check), with the caller's bearer token.
#[derive(Clone)]
pub struct AlertingPassThrough {
    upstream: Arc<Upstream>,
}

impl NamedService for AlertingPassThrough {
    const NAME: &'static str = "kordon.alerting.v1.AlertingService";
}

impl tower::Service<http::Request<Body>> for AlertingPassThrough {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future =
        Pin<Box<dyn std::future::Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let upstream = self.upstream.clone();
        Box::pin(async move {
            if !req.headers().contains_key(http::header::AUTHORIZATION) {
                return Ok(Status::unauthenticated(NO_TOKEN).into_http());
            }
            // Only what a gRPC call carries end to end: the path, its metadata and body
            // (`Channel` puts in the upstream's scheme and authority).
            let (parts, body) = req.into_parts();
            let mut out = http::Request::new(body);
            *out.method_mut() = parts.method;
            *out.uri_mut() = match parts.uri.path_and_query().map(|pq| pq.as_str().parse()) {
                Some(Ok(uri)) => uri,
                _ => {
                    return Ok(Status::internal(format!(
                        "the gateway cannot pass on the path `{}`",
                        parts.uri
                    ))
                    .into_http());
                }
            };
            for (name, value) in &parts.headers {
                if passed_on(name.as_str()) {
                    out.headers_mut().append(name.clone(), value.clone());
                }
            }
            let mut channel = upstream.service.clone();
            let result = async {
                tower::ServiceExt::ready(&mut channel).await?;
                tower::Service::call(&mut channel, out).await
            }
            .await;
            Ok(result.unwrap_or_else(|e| {
                Status::unavailable(format!("alerting at {}: {e}", upstream.url)).into_http()
            }))
        })
    }
}

/// The headers of a gRPC call: its content type, the caller's token, gRPC's own and the trace
/// context. Not a browser's (cookies, origin) nor HTTP/1.1's connection headers, which have no
/// place in the upstream HTTP/2 call.
fn passed_on(name: &str) -> bool {
    matches!(
        name,
        "content-type" | "authorization" | "te" | "user-agent" | "traceparent" | "tracestate"
    ) || name.starts_with("grpc-")
}

/// The largest message passed on: snapshots are inline images; the rest are small.
const MAX_MESSAGE: usize = 16 << 20;

/// The gateway's services, to add to storage's gRPC server (and so to its gRPC-Web).
pub struct Gateway {
    pub ingest: Option<ipb::ingest_service_server::IngestServiceServer<IngestGateway>>,
    pub detection: Option<dpb::detection_service_server::DetectionServiceServer<DetectionGateway>>,
    pub alerting: Option<AlertingPassThrough>,
}

impl Gateway {
    /// The services `config` names (the CA read now: a missing file fails start-up). Each URL
    /// is checked as [`GatewayConfig::validate`] does, by [`Upstream::new`].
    pub fn new(config: &GatewayConfig) -> Result<Self, StorageError> {
        let ca = match &config.ca_file {
            Some(p) => Some(std::fs::read(p).map_err(|e| {
                StorageError::config("gateway.ca_file", format!("{}: {e}", p.display()))
            })?),
            None => None,
        };
        let upstream =
            |key: &str, url: &Option<String>| -> Result<Option<Arc<Upstream>>, StorageError> {
                url.as_deref()
                    .map(|u| Upstream::new(key, u, ca.as_deref()).map(Arc::new))
                    .transpose()
            };
        Ok(Self {
            ingest: upstream("gateway.ingest", &config.ingest)?.map(|upstream| {
                ipb::ingest_service_server::IngestServiceServer::new(IngestGateway { upstream })
            }),
            detection: upstream("gateway.detection", &config.detection)?.map(|upstream| {
                dpb::detection_service_server::DetectionServiceServer::new(DetectionGateway {
                    upstream,
                })
                .max_encoding_message_size(MAX_MESSAGE)
            }),
            alerting: upstream("gateway.alerting", &config.alerting)?
                .map(|upstream| AlertingPassThrough { upstream }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked() {
        assert_eq!(
            split_url("https://burgas-ingest.kordon.svc:8470").unwrap(),
            (true, "burgas-ingest.kordon.svc".to_string(), 8470)
        );
        assert_eq!(
            split_url("http://[::1]:9/").unwrap(),
            (false, "::1".to_string(), 9)
        );
        assert!(split_url("burgas-ingest:8470").is_err());
        assert!(split_url("https://burgas-ingest").is_err());
        assert!(split_url("https://h:8470/path").is_err());
        let needs_ca = GatewayConfig {
            ingest: Some("https://burgas-ingest.kordon.svc:8470".into()),
            ..Default::default()
        };
        let e = needs_ca.validate().unwrap_err().to_string();
        assert!(e.contains("gateway.ca_file"), "{e}");
    }

    #[test]
    fn detection_page_tokens_name_the_replicas_and_the_one_read() {
        assert!(DetectionToken::parse("").unwrap().is_none());
        let t = DetectionToken::parse("ab12.2.t:5.9").unwrap().unwrap();
        assert_eq!(
            (t.replicas.as_str(), t.index, t.inner.as_str()),
            ("ab12", 2, "t:5.9")
        );
        assert_eq!(t.format(), "ab12.2.t:5.9");
        assert_eq!(DetectionToken::parse("ab12.1.").unwrap().unwrap().inner, "");
        assert!(DetectionToken::parse("abc").is_err());
        assert!(DetectionToken::parse("ab12.x.t").is_err());
    }
}
