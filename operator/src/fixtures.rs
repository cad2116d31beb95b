//! Test objects and a mocked apiserver that asserts each request (kube-rs/controller-rs's
//! `fixtures.rs` pattern).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::crd::{
    AlertRule, AlertRuleSpec, Camera, CameraSpec, Site, SiteSpec, SiteStorage, Streams,
};

pub const NS: &str = "kordon";

pub fn site(name: &str, replicas: i32) -> Site {
    let mut s = Site::new(
        name,
        SiteSpec {
            display_name: None,
            country: Some("BG".into()),
            time_zone: None,
            storage: SiteStorage {
                bucket: format!("kordon-{name}"),
                ..SiteStorage::default()
            },
            database: None,
            ingest: crate::crd::IngestSpec {
                replicas,
                ..Default::default()
            },
            detection: Default::default(),
            transcode: Default::default(),
            alert_sinks: Vec::new(),
            sharing: Vec::new(),
            tls_secret: None,
            partner_link: None,
            auth: None,
        },
    );
    s.metadata = ObjectMeta {
        name: Some(name.into()),
        namespace: Some(NS.into()),
        uid: Some(format!("uid-{name}")),
        generation: Some(1),
        ..ObjectMeta::default()
    };
    s
}

pub fn camera(name: &str, site: &str) -> Camera {
    let mut c = Camera::new(
        name,
        CameraSpec {
            site: site.into(),
            streams: Streams {
                record: format!("rtsp://10.0.0.1:554/{name}/main"),
                detect: None,
                transport: Default::default(),
            },
            credentials: None,
            recording: Default::default(),
            retention_days: None,
            detection: Default::default(),
            location: None,
        },
    );
    c.metadata = ObjectMeta {
        name: Some(name.into()),
        namespace: Some(NS.into()),
        uid: Some(format!("uid-{name}")),
        generation: Some(1),
        ..ObjectMeta::default()
    };
    c
}

/// A rule of `site` with every optional setting unset.
pub fn alert_rule(name: &str, site: &str) -> AlertRule {
    let mut r = AlertRule::new(
        name,
        AlertRuleSpec {
            site: site.into(),
            description: None,
            disabled: false,
            severity: Default::default(),
            cameras: Vec::new(),
            classes: Vec::new(),
            min_confidence: None,
            zone: None,
            line: None,
            min_objects: None,
            schedule: None,
            dedup: Default::default(),
            quiet_period: None,
            cooldown: None,
            escalate_after: None,
            sinks: Vec::new(),
        },
    );
    r.metadata = ObjectMeta {
        name: Some(name.into()),
        namespace: Some(NS.into()),
        uid: Some(format!("uid-{name}")),
        generation: Some(1),
        ..ObjectMeta::default()
    };
    r
}

/// A Partner of `site` with `partner_site`: alerts both ways, footage requests from the
/// partner, its CA in ConfigMap `<partner_site>-ca`.
pub fn partner(name: &str, site: &str, partner_site: &str) -> crate::crd::Partner {
    use crate::crd::{PartnerCaRef, PartnerFootageTerms, PartnerSpec, PartnerTerms};
    let mut p = crate::crd::Partner::new(
        name,
        PartnerSpec {
            site: site.into(),
            partner_site: partner_site.into(),
            display_name: Some(format!("{partner_site} directorate")),
            endpoint: format!("https://partner.kordon.{partner_site}.example:8473"),
            storage_endpoint: None,
            ca: PartnerCaRef {
                config_map_name: format!("{partner_site}-ca"),
                key: "ca.crt".into(),
            },
            evidence_public_key: "3b".repeat(32),
            shares: PartnerTerms {
                alerts: true,
                min_severity: Some(crate::crd::Severity::High),
                cameras: vec!["port-gate".into()],
                snapshots: true,
                footage: PartnerFootageTerms {
                    requests: true,
                    max_range: Some("1h".into()),
                    keep_for: Some("30d".into()),
                    ..Default::default()
                },
                ..Default::default()
            },
            receives: PartnerTerms {
                alerts: true,
                ..Default::default()
            },
        },
    );
    p.metadata = ObjectMeta {
        name: Some(name.into()),
        namespace: Some(NS.into()),
        uid: Some(format!("uid-{name}")),
        generation: Some(1),
        ..ObjectMeta::default()
    };
    p
}

/// `site` with a partner link named `partner.kordon.<site>.example`.
pub fn linked_site(name: &str) -> Site {
    let mut s = site(name, 1);
    s.spec.partner_link = Some(crate::crd::PartnerLinkSpec {
        hostnames: vec![format!("partner.kordon.{name}.example")],
    });
    s
}

use std::sync::Arc;

use futures::future::BoxFuture;
use http::{Method, Request, Response};
use kordon_proto::common::v1 as common;
use kordon_proto::ingest::v1 as pb;
use kube::Client;
use kube::client::Body;
use kube::runtime::reflector;
use kube::runtime::watcher;
use serde_json::Value;
use tower_test::mock::{self, Handle};

use crate::config::OperatorConfig;
use crate::controller::{Clients, Context, Stores};
use crate::detection::DetectionClient;
use crate::ingest::{IngestClient, Replica};
use kordon_proto::detection::v1 as dpb;

/// An ingest that cannot be reached, as before its pods exist.
pub struct NoIngest;

/// An alerting that is never reached (the Partner reconciler is not under test).
pub struct NoAlerting;

impl crate::partner::AlertingClient for NoAlerting {
    fn agreements(
        &self,
        _: Replica,
    ) -> BoxFuture<'static, Result<Vec<kordon_proto::alerting::v1::SharingAgreement>, String>> {
        Box::pin(async { Err("alerting is not under test".to_string()) })
    }
}

impl IngestClient for NoIngest {
    fn list(
        &self,
        _: Replica,
        _: String,
    ) -> BoxFuture<'static, Result<Vec<pb::CameraStatus>, String>> {
        Box::pin(async { Err("Unavailable: dns error".to_string()) })
    }
    fn apply(&self, _: Replica, _: Vec<pb::CameraSpec>) -> BoxFuture<'static, Result<(), String>> {
        Box::pin(async { Err("Unavailable".to_string()) })
    }
    fn remove(&self, _: Replica, _: common::CameraRef) -> BoxFuture<'static, Result<(), String>> {
        Box::pin(async { Err("Unavailable".to_string()) })
    }
}

/// A detection that cannot be reached, as before its pods exist.
pub struct NoDetection;

impl DetectionClient for NoDetection {
    fn status(
        &self,
        _: Replica,
        _: String,
    ) -> BoxFuture<'static, Result<dpb::GetDetectorStatusResponse, String>> {
        Box::pin(async { Err("Unavailable: dns error".to_string()) })
    }
    fn replace(
        &self,
        _: Replica,
        _: Vec<dpb::DetectionCamera>,
    ) -> BoxFuture<'static, Result<dpb::ApplyCamerasResponse, String>> {
        Box::pin(async { Err("Unavailable".to_string()) })
    }
}

/// The mocked apiserver: each `expect` takes the next request, checks it, and answers.
pub struct ApiServerVerifier(Handle<Request<Body>, Response<Body>>);

/// A request as the mock saw it.
pub struct Seen {
    pub query: String,
    pub body: Value,
}

impl ApiServerVerifier {
    /// Takes the next request, asserts its method and path, answers `respond(&seen)`.
    pub async fn expect(
        &mut self,
        method: Method,
        path: &str,
        respond: impl FnOnce(&Seen) -> (u16, Value),
    ) -> Seen {
        let (request, send) =
            tokio::time::timeout(std::time::Duration::from_secs(5), self.0.next_request())
                .await
                .unwrap_or_else(|_| panic!("no request; expected {method} {path}"))
                .unwrap_or_else(|| panic!("client gone; expected {method} {path}"));
        let seen_method = request.method().clone();
        let seen_path = request.uri().path().to_string();
        let query = request.uri().query().unwrap_or("").to_string();
        let bytes = request.into_body().collect_bytes().await.unwrap();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap()
        };
        assert_eq!(
            (&seen_method, seen_path.as_str()),
            (&method, path),
            "unexpected request"
        );
        let seen = Seen { query, body };
        let (status, reply) = respond(&seen);
        send.send_response(
            Response::builder()
                .status(status)
                .body(Body::from(serde_json::to_vec(&reply).unwrap()))
                .unwrap(),
        );
        seen
    }

    /// Asserts that no further request comes.
    pub async fn silence(&mut self) {
        let next =
            tokio::time::timeout(std::time::Duration::from_millis(200), self.0.next_request())
                .await;
        if let Ok(Some((req, _))) = next {
            panic!("unexpected request {} {}", req.method(), req.uri());
        }
    }
}

/// Answers with the applied object itself (what the apiserver returns, give or take defaults).
pub fn echo(seen: &Seen) -> (u16, Value) {
    (200, seen.body.clone())
}

/// Answers a status patch with `object` carrying the patched status.
pub fn with_status(object: Value) -> impl FnOnce(&Seen) -> (u16, Value) {
    move |seen| {
        let mut o = object;
        o["status"] = seen.body["status"].clone();
        (200, o)
    }
}

/// A Context over a mocked apiserver, with `sites` and `cameras` in its (synced) caches.
pub fn context(sites: &[Site], cameras: &[Camera]) -> (Arc<Context>, ApiServerVerifier) {
    context_with(sites, cameras, Arc::new(NoDetection))
}

/// [`context`] with a stand-in for detection.
pub fn context_with(
    sites: &[Site],
    cameras: &[Camera],
    detection: Arc<dyn DetectionClient>,
) -> (Arc<Context>, ApiServerVerifier) {
    context_full(sites, cameras, &[], detection)
}

/// [`context`] with `rules` in the (synced) AlertRule cache.
pub fn context_with_rules(
    sites: &[Site],
    rules: &[AlertRule],
) -> (Arc<Context>, ApiServerVerifier) {
    context_full(sites, &[], rules, Arc::new(NoDetection))
}

fn context_full(
    sites: &[Site],
    cameras: &[Camera],
    rules: &[AlertRule],
    detection: Arc<dyn DetectionClient>,
) -> (Arc<Context>, ApiServerVerifier) {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, NS);
    let (site_store, mut site_writer) = reflector::store::<Site>();
    for s in sites {
        site_writer.apply_watcher_event(&watcher::Event::Apply(s.clone()));
    }
    let (camera_store, mut camera_writer) = reflector::store::<Camera>();
    // As a watcher's first list: the cache is synced once it is done.
    camera_writer.apply_watcher_event(&watcher::Event::Init);
    for c in cameras {
        camera_writer.apply_watcher_event(&watcher::Event::InitApply(c.clone()));
    }
    camera_writer.apply_watcher_event(&watcher::Event::InitDone);
    let (rule_store, mut rule_writer) = reflector::store::<AlertRule>();
    rule_writer.apply_watcher_event(&watcher::Event::Init);
    for r in rules {
        rule_writer.apply_watcher_event(&watcher::Event::InitApply(r.clone()));
    }
    rule_writer.apply_watcher_event(&watcher::Event::InitDone);
    let (partner_store, mut partner_writer) = reflector::store::<crate::crd::Partner>();
    partner_writer.apply_watcher_event(&watcher::Event::Init);
    partner_writer.apply_watcher_event(&watcher::Event::InitDone);
    let mut ctx = Context::new(
        client,
        Arc::new(OperatorConfig::default()),
        "test",
        Stores {
            sites: site_store,
            cameras: camera_store,
            alert_rules: rule_store,
            partners: partner_store,
        },
        Clients {
            ingest: Arc::new(NoIngest),
            detection,
            alerting: Arc::new(NoAlerting),
        },
    );
    // Past start-up, unless a test says otherwise.
    ctx.started = std::time::Instant::now() - std::time::Duration::from_secs(3600);
    (Arc::new(ctx), ApiServerVerifier(handle))
}

/// The apiserver's answer for an object that does not exist.
pub fn not_found(_: &Seen) -> (u16, Value) {
    (
        404,
        serde_json::json!({
            "apiVersion": "v1", "kind": "Status", "status": "Failure",
            "message": "not found", "reason": "NotFound", "code": 404,
        }),
    )
}

/// The list the apiserver returns for `items`.
pub fn list(kind: &str, items: Vec<Value>) -> Value {
    serde_json::json!({
        "apiVersion": "v1", "kind": format!("{kind}List"),
        "metadata": { "resourceVersion": "1" },
        "items": items,
    })
}
