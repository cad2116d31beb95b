//! Alerting under load: latency from a detection event to each sink, at fixed event rates.
//!
//! ```sh
//! cargo run --release -p kordon-alerting --example bench_alerting -- --rates 100,1000 --seconds 20
//! ```
//!
//! Per rate, in one process and on 127.0.0.1: a load generator serves
//! `DetectionService.WatchDetections` with detection events shaped like the detector's (a new
//! tracked person in zone `road`, on 50 cameras in turn; each event's time is when it is sent),
//! the real alerting service reads it (its SQLite store, its rules engine, its delivery
//! workers), a rule opens one alert per track, and the alerts go to a webhook receiver, a real
//! Mosquitto broker (started here from `--mosquitto`) with a subscriber, and a `WatchAlerts`
//! subscriber over gRPC. Prints, per sink, how many alerts arrived and p50/p99/max of
//! (arrival − detection time), and the process's CPU seconds per 1,000 events. Each event
//! opens an alert: the load is the worst case (no folding).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use kordon_alerting::config::{
    AlertingConfig, MqttYaml, RetryConfig, RuleYaml, Severity, SinkYaml, WebhookYaml, ZoneYaml,
};
use kordon_proto::alerting::v1 as apb;
use kordon_proto::common::v1 as common;
use kordon_proto::detection::v1 as dpb;
use kordon_proto::detection::v1::detection_service_server::{
    DetectionService, DetectionServiceServer,
};
use kordon_proto::time::{micros_from_timestamp, timestamp_from_micros};
use tokio_util::sync::CancellationToken;
use tonic::codegen::BoxStream;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const CAMERAS: u64 = 50;

fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64
}

/// Sends `rate` detections a second for `seconds`, each a new track (so each opens an alert).
#[derive(Clone)]
struct Generator {
    rate: u64,
    seconds: u64,
    /// Set once every subscriber listens: nothing is sent before.
    go: tokio::sync::watch::Receiver<bool>,
}

#[tonic::async_trait]
impl DetectionService for Generator {
    async fn watch_detections(
        &self,
        _req: tonic::Request<dpb::WatchDetectionsRequest>,
    ) -> Result<tonic::Response<BoxStream<dpb::WatchDetectionsResponse>>, tonic::Status> {
        let (tx, rx) = tokio::sync::mpsc::channel(4096);
        let (rate, seconds) = (self.rate, self.seconds);
        let mut go = self.go.clone();
        tokio::spawn(async move {
            if go.wait_for(|g| *g).await.is_err() {
                return;
            }
            // A tick every 10 ms, carrying the events due by then (smooth, not bursts).
            let start = Instant::now();
            let total = rate * seconds;
            let mut sent = 0u64;
            let mut tick = tokio::time::interval(Duration::from_millis(10));
            while sent < total {
                tick.tick().await;
                let due = ((start.elapsed().as_secs_f64() * rate as f64) as u64).min(total);
                while sent < due {
                    sent += 1;
                    let t = now_us();
                    let d = dpb::Detection {
                        id: uuid::Uuid::now_v7().to_string(),
                        camera: Some(common::CameraRef {
                            site: "bench".into(),
                            camera: format!("cam-{:02}", sent % CAMERAS),
                        }),
                        time: Some(timestamp_from_micros(t)),
                        class_label: "person".into(),
                        confidence: 0.8,
                        r#box: Some(common::BoundingBox {
                            left: 0.4,
                            top: 0.5,
                            right: 0.5,
                            bottom: 0.9,
                        }),
                        track_id: sent,
                        phase: dpb::TrackPhase::Started as i32,
                        track_started_at: Some(timestamp_from_micros(t)),
                        zones: vec![dpb::ZonePresence {
                            zone: "road".into(),
                            entered_at: Some(timestamp_from_micros(t)),
                        }],
                        crossings: Vec::new(),
                        snapshot_id: String::new(),
                        segment_sequence: 0,
                    };
                    if tx
                        .send(Ok(dpb::WatchDetectionsResponse { detection: Some(d) }))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            }
            // Keep the stream open (a closed stream is a reconnect).
            std::future::pending::<()>().await;
            drop(tx);
        });
        Ok(tonic::Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }
}

/// Latencies (seconds) seen by one sink, keyed by alert id (a repeat counts once).
#[derive(Default, Clone)]
struct Seen(Arc<Mutex<std::collections::HashMap<String, f64>>>);

impl Seen {
    fn record(&self, alert: &str, detection_us: i64) {
        let lat = (now_us() - detection_us) as f64 / 1e6;
        self.0
            .lock()
            .unwrap()
            .entry(alert.to_string())
            .or_insert(lat);
    }
    fn values(&self) -> Vec<f64> {
        let mut v: Vec<f64> = self.0.lock().unwrap().values().copied().collect();
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        v
    }
}

fn json_detection_us(v: &serde_json::Value) -> Option<(String, i64)> {
    if v["kind"] != "ALERT_EVENT_KIND_OPENED" {
        return None;
    }
    let id = v["alert"]["id"].as_str()?.to_string();
    let t: jiff::Timestamp = v["alert"]["detection"]["time"].as_str()?.parse().ok()?;
    Some((id, t.as_microsecond()))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn cpu_seconds() -> f64 {
    let s = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let rest: Vec<&str> = s
        .rsplit_once(')')
        .map(|(_, r)| r.split_whitespace().collect())
        .unwrap_or_default();
    let tick = 100.0; // USER_HZ on Linux
    let f = |i: usize| {
        rest.get(i)
            .and_then(|x| x.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (f(11) + f(12)) / tick
}

fn pct(v: &[f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v[((p / 100.0) * (v.len() - 1) as f64).round() as usize]
}

async fn wait_port(port: u16) {
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("nothing listening on {port}");
}

async fn run_rate(rate: u64, seconds: u64, mosquitto: &str) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let stop = CancellationToken::new();

    // The broker and a subscriber.
    let mqtt_port = free_port();
    let mut broker = tokio::process::Command::new(mosquitto)
        .args(["-p", &mqtt_port.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| anyhow::anyhow!("{mosquitto}: {e} (apt-get install mosquitto)"))?;
    wait_port(mqtt_port).await;
    let mqtt_seen = Seen::default();
    {
        let mut o = rumqttc::MqttOptions::new("bench-sub", "127.0.0.1", mqtt_port);
        o.set_max_packet_size(1 << 20, 1 << 20);
        let (client, mut events) = rumqttc::AsyncClient::new(o, 1024);
        client
            .subscribe("kordon/+/alerts", rumqttc::QoS::AtLeastOnce)
            .await?;
        let seen = mqtt_seen.clone();
        tokio::spawn(async move {
            loop {
                match events.poll().await {
                    Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(p))) => {
                        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&p.payload)
                            && let Some((id, t)) = json_detection_us(&v)
                        {
                            seen.record(&id, t);
                        }
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
    }

    // The webhook receiver.
    let hook_seen = Seen::default();
    let hook_port = free_port();
    {
        let seen = hook_seen.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |body: axum::body::Bytes| {
                let seen = seen.clone();
                async move {
                    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&body)
                        && let Some((id, t)) = json_detection_us(&v)
                    {
                        seen.record(&id, t);
                    }
                    axum::http::StatusCode::NO_CONTENT
                }
            }),
        );
        let l = tokio::net::TcpListener::bind(("127.0.0.1", hook_port)).await?;
        tokio::spawn(async move { axum::serve(l, app).await });
    }

    // The load generator.
    let gen_port = free_port();
    let (go, go_rx) = tokio::sync::watch::channel(false);
    {
        let g = Generator {
            rate,
            seconds,
            go: go_rx,
        };
        let stop = stop.clone();
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(DetectionServiceServer::new(g))
                .serve_with_shutdown(([127, 0, 0, 1], gen_port).into(), stop.cancelled_owned()),
        );
    }
    wait_port(gen_port).await;

    // Alerting, as `kordon alerting` runs it.
    let retry = RetryConfig {
        max_attempts: 20,
        initial_backoff: Duration::from_millis(200),
        max_backoff: Duration::from_secs(2),
    };
    let config = AlertingConfig {
        detection: kordon_alerting::config::DetectionSource {
            endpoints: vec![format!("http://127.0.0.1:{gen_port}")],
            ..Default::default()
        },
        sinks: vec![
            SinkYaml {
                name: "hook".into(),
                disabled: false,
                min_severity: Severity::Low,
                include_partner_alerts: false,
                webhook: Some(WebhookYaml {
                    url: format!("http://127.0.0.1:{hook_port}/hook"),
                    secret_file: None,
                    secret: Some(SECRET.into()),
                    ca_file: None,
                    timeout: Duration::from_secs(5),
                    retry,
                }),
                mqtt: None,
            },
            SinkYaml {
                name: "broker".into(),
                disabled: false,
                min_severity: Severity::Low,
                include_partner_alerts: false,
                webhook: None,
                mqtt: Some(MqttYaml {
                    broker_url: format!("mqtt://127.0.0.1:{mqtt_port}"),
                    topic_prefix: "kordon".into(),
                    qos: 1,
                    client_id: None,
                    username_file: None,
                    password_file: None,
                    ca_file: None,
                    retry,
                }),
            },
        ],
        rules: vec![RuleYaml {
            name: "person-on-the-road".into(),
            site: "bench".into(),
            severity: Severity::High,
            classes: vec!["person".into()],
            zone: Some(ZoneYaml {
                zones: vec!["road".into()],
                min_dwell: None,
            }),
            dedup: kordon_alerting::config::Dedup::Track,
            // Longer than the run: the load is the OPENED events alone.
            quiet_period: Some(Duration::from_secs(600)),
            ..Default::default()
        }],
        ..Default::default()
    };
    let alerting = kordon_alerting::Alerting::start(config, dir.path(), stop.clone()).await?;
    let grpc_port = free_port();
    let common = kordon_runtime::config::CommonConfig {
        grpc_listen: ([127, 0, 0, 1], grpc_port).into(),
        admin_listen: ([127, 0, 0, 1], free_port()).into(),
        data_dir: dir.path().to_path_buf(),
        log: Default::default(),
        tls: None,
        auth: Default::default(),
        dev_identity: true,
    };
    let server = kordon_runtime::server::GrpcServer::new("alerting", &common)?.add_service(
        kordon_alerting::grpc_service(kordon_alerting::AlertingApi::new(alerting.clone())),
    );
    {
        let stop = stop.clone();
        let common = common.clone();
        tokio::spawn(async move {
            kordon_runtime::server::run(
                server,
                &common,
                kordon_runtime::admin::Readiness::new(),
                stop,
            )
            .await
        });
    }
    wait_port(grpc_port).await;

    // The gRPC subscriber.
    let grpc_seen = Seen::default();
    {
        let channel =
            tonic::transport::Channel::from_shared(format!("http://127.0.0.1:{grpc_port}"))?
                .connect()
                .await?;
        let mut c = apb::alerting_service_client::AlertingServiceClient::new(channel);
        let mut s = c
            .watch_alerts(apb::WatchAlertsRequest::default())
            .await?
            .into_inner();
        let seen = grpc_seen.clone();
        tokio::spawn(async move {
            while let Some(Ok(e)) = s.next().await {
                if e.kind == apb::AlertEventKind::Opened as i32
                    && let Some(a) = e.alert
                    && let Some(t) = a
                        .detection
                        .as_ref()
                        .and_then(|d| d.time.as_ref())
                        .and_then(micros_from_timestamp)
                {
                    seen.record(&a.id, t);
                }
            }
        });
    }

    // Every subscriber is connected: the load starts now.
    tokio::time::sleep(Duration::from_millis(500)).await;
    go.send_replace(true);
    let cpu0 = cpu_seconds();
    let expected = (rate * seconds) as usize;
    let started = Instant::now();
    let sinks = [
        ("gRPC", &grpc_seen),
        ("webhook", &hook_seen),
        ("MQTT", &mqtt_seen),
    ];
    // The run, then up to 60 s for every sink to catch up.
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let done = sinks.iter().all(|(_, s)| s.values().len() >= expected);
        if (started.elapsed() >= Duration::from_secs(seconds) && done)
            || started.elapsed() >= Duration::from_secs(seconds + 60)
        {
            break;
        }
    }
    let cpu = cpu_seconds() - cpu0;
    println!(
        "{rate:>6} events/s for {seconds}s ({expected} alerts), CPU {:.2} s per 1,000 events:",
        cpu * 1000.0 / expected as f64
    );
    for (name, s) in sinks {
        let v = s.values();
        println!(
            "    {name:<8} {:>6}/{expected} arrived   p50 {:>7.1} ms   p99 {:>7.1} ms   max {:>7.1} ms",
            v.len(),
            pct(&v, 50.0) * 1000.0,
            pct(&v, 99.0) * 1000.0,
            v.last().copied().unwrap_or(f64::NAN) * 1000.0
        );
    }
    stop.cancel();
    alerting.stopped().await;
    let _ = broker.kill().await;
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    kordon_runtime::install_crypto_provider();
    let mut rates = vec![100u64, 1000];
    let mut seconds = 20u64;
    let mut mosquitto = "/usr/sbin/mosquitto".to_string();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--rates" => {
                rates = args
                    .next()
                    .unwrap_or_default()
                    .split(',')
                    .map(|r| r.trim().parse())
                    .collect::<Result<_, _>>()?
            }
            "--seconds" => seconds = args.next().unwrap_or_default().parse()?,
            "--mosquitto" => mosquitto = args.next().unwrap_or_default(),
            other => anyhow::bail!(
                "unknown argument {other} (--rates 100,1000 --seconds 20 --mosquitto PATH)"
            ),
        }
    }
    println!(
        "alerting: detection event -> sink latency (one alert per event; SQLite store; webhook, \
         Mosquitto QoS 1, WatchAlerts)"
    );
    for r in rates {
        run_rate(r, seconds, &mosquitto).await?;
    }
    Ok(())
}
