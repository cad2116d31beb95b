//! The alerting service as a whole: detections in (fed as a source would), alerts stored and
//! delivered to a real HTTP receiver, across a restart and a receiver that answers errors; and
//! the store on PostgreSQL when `KORDON_TEST_POSTGRES_URL` is set.

use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kordon_alerting::config::{
    AlertingConfig, RetryConfig, RuleYaml, Severity, SinkYaml, WebhookYaml,
};
use kordon_proto::alerting::v1 as pb;
use kordon_proto::common::v1 as common;
use kordon_proto::detection::v1 as dpb;
use kordon_proto::time::timestamp_from_micros;
use tokio_util::sync::CancellationToken;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64
}

/// An HTTP receiver whose answer can be changed; records the `webhook-id`s it accepted.
#[derive(Clone)]
struct Receiver {
    status: Arc<AtomicU16>,
    accepted: Arc<Mutex<Vec<String>>>,
    url: String,
}

async fn receiver(status: u16) -> Receiver {
    let r = Receiver {
        status: Arc::new(AtomicU16::new(status)),
        accepted: Arc::default(),
        url: String::new(),
    };
    let state = r.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: axum::http::HeaderMap| {
            let state = state.clone();
            async move {
                let code = state.status.load(Ordering::SeqCst);
                if code == 204 {
                    let id = headers
                        .get("webhook-id")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_string();
                    state.accepted.lock().unwrap().push(id);
                }
                axum::http::StatusCode::from_u16(code).unwrap()
            }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await });
    Receiver { url, ..r }
}

fn config(hook: &str, attempts: u32) -> AlertingConfig {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    AlertingConfig {
        // Nothing listens there: detections are fed with `ingest` instead.
        detection: kordon_alerting::config::DetectionSource {
            endpoints: vec![format!("http://127.0.0.1:{port}")],
            ..Default::default()
        },
        sinks: vec![SinkYaml {
            name: "desk".into(),
            disabled: false,
            min_severity: Severity::Low,
            include_partner_alerts: false,
            webhook: Some(WebhookYaml {
                url: hook.to_string(),
                secret_file: None,
                secret: Some(SECRET.into()),
                ca_file: None,
                timeout: Duration::from_secs(2),
                retry: RetryConfig {
                    max_attempts: attempts,
                    initial_backoff: Duration::from_millis(50),
                    max_backoff: Duration::from_millis(200),
                },
            }),
            mqtt: None,
        }],
        rules: vec![RuleYaml {
            name: "any-person".into(),
            site: "burgas".into(),
            severity: Severity::High,
            classes: vec!["person".into()],
            dedup: kordon_alerting::config::Dedup::Track,
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn person(track: u64) -> dpb::Detection {
    let t = now_us();
    dpb::Detection {
        id: uuid::Uuid::now_v7().to_string(),
        camera: Some(common::CameraRef {
            site: "burgas".into(),
            camera: "port-gate".into(),
        }),
        time: Some(timestamp_from_micros(t)),
        class_label: "person".into(),
        confidence: 0.9,
        track_id: track,
        phase: dpb::TrackPhase::Started as i32,
        track_started_at: Some(timestamp_from_micros(t)),
        ..Default::default()
    }
}

/// An operator of burgas (handles its alerts).
fn officer(subject: &str) -> kordon_runtime::auth::Principal {
    use kordon_runtime::auth::{Principal, PrincipalKind, Role};
    Principal {
        kind: PrincipalKind::Person,
        subject: subject.to_string(),
        display_name: None,
        roles: [("burgas".to_string(), [Role::Operator].into())].into(),
    }
}

async fn eventually<T>(what: &str, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    for _ in 0..200 {
        if let Some(v) = f().await {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

async fn alerts(a: &kordon_alerting::Alerting) -> Vec<pb::Alert> {
    a.store()
        .list_alerts(&Default::default(), None, 100)
        .await
        .unwrap()
}

/// A Site with `detection.replicas: 0` renders no detection endpoint: alerting still starts
/// (the inbox, the sinks and partner alerts work) and raises what it is given.
#[tokio::test]
async fn alerting_without_detection_replicas_starts_and_keeps_its_inbox() {
    let dir = tempfile::tempdir().unwrap();
    let rx = receiver(204).await;
    let mut c = config(&rx.url, 3);
    c.detection.endpoints.clear();
    let stop = CancellationToken::new();
    let a = kordon_alerting::Alerting::start(c, dir.path(), stop.clone())
        .await
        .expect("alerting starts with no detection replica");
    a.ingest(person(1)).await.unwrap();
    eventually("an alert", async || {
        (alerts(&a).await.len() == 1).then_some(())
    })
    .await;
    eventually("delivered", async || {
        (a.store().pending("desk").await.unwrap() == 0).then_some(())
    })
    .await;
    stop.cancel();
    a.stopped().await;
}

#[tokio::test]
async fn alerts_and_their_pending_deliveries_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let rx = receiver(503).await;
    let stop = CancellationToken::new();
    let a = kordon_alerting::Alerting::start(config(&rx.url, 100), dir.path(), stop.clone())
        .await
        .unwrap();
    a.ingest(person(1)).await.unwrap();
    a.ingest(person(2)).await.unwrap();
    eventually("two alerts", async || {
        (alerts(&a).await.len() == 2).then_some(())
    })
    .await;
    // The receiver answers 503: retried, still queued.
    eventually("a failed attempt", async || {
        let h = a.sinks()[0].status(0);
        (!h.healthy).then_some(())
    })
    .await;
    assert_eq!(a.store().pending("desk").await.unwrap(), 2);
    stop.cancel();
    a.stopped().await;

    // A restart: the alerts are there and the queue is delivered once the receiver works.
    rx.status.store(204, Ordering::SeqCst);
    let stop = CancellationToken::new();
    let a = kordon_alerting::Alerting::start(config(&rx.url, 100), dir.path(), stop.clone())
        .await
        .unwrap();
    assert_eq!(alerts(&a).await.len(), 2);
    eventually("the queue delivered", async || {
        (a.store().pending("desk").await.unwrap() == 0).then_some(())
    })
    .await;
    let got = rx.accepted.lock().unwrap().clone();
    assert_eq!(got.len(), 2, "{got:?}");
    let ids: Vec<String> = {
        let mut v = alerts(&a).await;
        v.sort_by_key(|x| x.id.clone());
        v.iter()
            .map(|x| format!("{}-v{}", x.id, x.version))
            .collect()
    };
    let mut sorted = got.clone();
    sorted.sort();
    assert_eq!(sorted, ids, "webhook-id is <alert id>-v<version>");
    stop.cancel();
    a.stopped().await;
}

#[tokio::test]
async fn a_refusal_is_a_dead_letter_and_410_disables_the_sink() {
    let dir = tempfile::tempdir().unwrap();
    let rx = receiver(400).await;
    let stop = CancellationToken::new();
    let a = kordon_alerting::Alerting::start(config(&rx.url, 3), dir.path(), stop.clone())
        .await
        .unwrap();
    a.ingest(person(1)).await.unwrap();
    let dead = eventually("a dead letter", async || {
        let d = a.store().dead_letters("desk").await.unwrap();
        (!d.is_empty()).then_some(d)
    })
    .await;
    assert_eq!(dead[0].1, 1, "a 400 is not retried");
    assert!(dead[0].2.contains("400"), "{dead:?}");
    // The queue goes on: the next event is delivered.
    rx.status.store(204, Ordering::SeqCst);
    a.ingest(person(2)).await.unwrap();
    eventually("the next delivery", async || {
        (rx.accepted.lock().unwrap().len() == 1).then_some(())
    })
    .await;
    // 410 Gone: the sink is disabled, and what comes later goes to the dead letters.
    rx.status.store(410, Ordering::SeqCst);
    a.ingest(person(3)).await.unwrap();
    eventually("the sink disabled", async || {
        let s = a.sinks()[0].status(0);
        (!s.disabled_reason.is_empty()).then_some(())
    })
    .await;
    rx.status.store(204, Ordering::SeqCst);
    a.ingest(person(4)).await.unwrap();
    eventually("the later event dead-lettered", async || {
        (a.store().dead_letters("desk").await.unwrap().len() == 3).then_some(())
    })
    .await;
    assert_eq!(
        rx.accepted.lock().unwrap().len(),
        1,
        "nothing sent after 410"
    );
    stop.cancel();
    a.stopped().await;
}

#[tokio::test]
async fn the_store_works_on_postgresql() {
    let Some(url) = kordon_objects::testenv::require(
        "alerting store on PostgreSQL",
        &["KORDON_TEST_POSTGRES_URL"],
    )
    .and_then(|mut v| v.pop()) else {
        return;
    };
    // A schema of its own, so runs do not see each other.
    let schema = format!("kordon_alerting_test_{}", uuid::Uuid::new_v4().simple());
    let admin = sqlx::PgPool::connect(&url).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(&admin)
        .await
        .unwrap();
    let sep = if url.contains('?') { '&' } else { '?' };
    let scoped = format!("{url}{sep}options=-c%20search_path%3D{schema}");
    let dir = tempfile::tempdir().unwrap();
    let rx = receiver(204).await;
    let mut c = config(&rx.url, 3);
    c.database_url = Some(scoped);
    let stop = CancellationToken::new();
    let a = kordon_alerting::Alerting::start(c, dir.path(), stop.clone())
        .await
        .unwrap();
    assert_eq!(a.store().backend(), "postgres");
    a.ingest(person(1)).await.unwrap();
    let list = eventually("an alert", async || {
        let v = alerts(&a).await;
        (!v.is_empty()).then_some(v)
    })
    .await;
    let acked = a
        .act(
            &list[0].id,
            kordon_alerting::engine::Action::Acknowledge {
                note: "on it".into(),
            },
            &officer("maria"),
            list[0].version,
        )
        .await
        .unwrap();
    assert_eq!(acked.acknowledged_by, "maria");
    eventually("both events delivered", async || {
        (rx.accepted.lock().unwrap().len() == 2).then_some(())
    })
    .await;
    let events = a.store().events_after(0, 10).await.unwrap();
    assert_eq!(events.len(), 2);
    assert!(events[1].seq > events[0].seq);
    stop.cancel();
    a.stopped().await;
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
        .execute(&admin)
        .await
        .unwrap();
}

/// An admin of every site, as the development identity is.
fn admin() -> kordon_runtime::auth::Principal {
    kordon_runtime::auth::Principal::development()
}

async fn watch(
    api: &kordon_alerting::AlertingApi,
) -> Result<tonic::Response<tonic::codegen::BoxStream<pb::WatchAlertsResponse>>, tonic::Status> {
    use kordon_proto::alerting::v1::alerting_service_server::AlertingService;
    let mut req = tonic::Request::new(pb::WatchAlertsRequest {
        site: "burgas".into(),
        ..Default::default()
    });
    req.extensions_mut().insert(admin());
    api.watch_alerts(req).await
}

#[tokio::test]
async fn a_watch_beyond_the_limit_is_refused_and_a_closed_one_frees_its_slot() {
    let dir = tempfile::tempdir().unwrap();
    let rx = receiver(204).await;
    let stop = CancellationToken::new();
    let a = kordon_alerting::Alerting::start(config(&rx.url, 3), dir.path(), stop.clone())
        .await
        .unwrap();
    let api = kordon_alerting::AlertingApi::new(a.clone()).with_max_watches(2);
    let first = watch(&api).await.expect("the first watch is served");
    let _second = watch(&api).await.expect("the second watch is served");
    match watch(&api).await {
        Ok(_) => panic!("a third watch was served beyond a limit of 2"),
        Err(s) => {
            assert_eq!(s.code(), tonic::Code::ResourceExhausted, "{s:?}");
            assert!(
                s.message().contains("WatchAlerts") && s.message().contains(" 2 "),
                "the refusal names the limit: {s:?}"
            );
        }
    }
    assert_eq!(a.subscribers(), 2);
    // The client goes away on a quiet site (no event will come): its task ends, and with it
    // the subscription and the slot.
    drop(first);
    eventually("the closed watch's subscription to go", async || {
        (a.subscribers() == 1).then_some(())
    })
    .await;
    let _third = eventually("a slot for a new watch", async || watch(&api).await.ok()).await;
    stop.cancel();
    a.stopped().await;
}

#[tokio::test]
async fn site_time_zones_are_listed_for_the_sites_the_caller_may_view() {
    use kordon_proto::alerting::v1::alerting_service_server::AlertingService;
    let dir = tempfile::tempdir().unwrap();
    let rx = receiver(204).await;
    let stop = CancellationToken::new();
    let mut cfg = config(&rx.url, 3);
    cfg.time_zones = [
        ("burgas".to_string(), "Europe/Sofia".to_string()),
        ("edirne".to_string(), "Europe/Istanbul".to_string()),
    ]
    .into();
    let a = kordon_alerting::Alerting::start(cfg, dir.path(), stop.clone())
        .await
        .unwrap();
    let api = kordon_alerting::AlertingApi::new(a.clone());
    let ask = |p: kordon_runtime::auth::Principal| {
        let mut req = tonic::Request::new(pb::ListSiteTimeZonesRequest {});
        req.extensions_mut().insert(p);
        req
    };
    let all = api
        .list_site_time_zones(ask(admin()))
        .await
        .unwrap()
        .into_inner();
    let zones: Vec<(&str, &str)> = all
        .sites
        .iter()
        .map(|s| (s.site.as_str(), s.time_zone.as_str()))
        .collect();
    assert_eq!(
        zones,
        [("burgas", "Europe/Sofia"), ("edirne", "Europe/Istanbul")]
    );
    assert_eq!(all.default_time_zone, "UTC");
    // A Burgas officer learns Burgas's zone only.
    let mine = api
        .list_site_time_zones(ask(officer("ivan.petrov")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(mine.sites.len(), 1);
    assert_eq!(mine.sites[0].site, "burgas");
    // Someone with no role on any site learns nothing.
    let nobody = kordon_runtime::auth::Principal {
        roles: Default::default(),
        ..officer("stranger")
    };
    let err = api.list_site_time_zones(ask(nobody)).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied);
    stop.cancel();
    a.stopped().await;
}
