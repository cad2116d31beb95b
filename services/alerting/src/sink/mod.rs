//! Delivery: one worker per configured sink takes the sink's queue in order
//! ([`crate::store::Store::queue`]); a failure is retried with backoff and jitter, and the queue
//! waits (so a receiver down for a minute gets every event afterwards, in order); a delivery out
//! of attempts, or refused for good, moves to the dead letters with the reason and the queue
//! goes on; 410 Gone disables a webhook sink.

pub mod mqtt;
pub mod webhook;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use kordon_proto::alerting::v1 as pb;
use kordon_proto::time::timestamp_from_micros;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::config::{RetryConfig, SinkYaml};
use crate::store::Store;

/// Why one attempt failed.
#[derive(Debug, Clone, PartialEq)]
pub enum Failure {
    /// Worth retrying (network, timeout, 408/429/5xx, broker down).
    Transient(String),
    /// Refused for good (another 4xx): dead letter now.
    Permanent(String),
    /// 410 Gone: the endpoint is gone; the sink is disabled.
    Gone,
}

/// What a sink reports in `ListSinks`.
#[derive(Debug, Clone, Default)]
pub struct Health {
    pub delivered: u64,
    pub failed: u64,
    pub dead_letters: u64,
    pub last_delivery_us: i64,
    pub last_error: String,
    pub last_error_us: i64,
    pub healthy: bool,
    pub disabled_reason: String,
}

/// A sink as the service runs it.
pub struct Sink {
    pub config: SinkYaml,
    pub notify: Notify,
    pub health: Mutex<Health>,
    /// A partner's route: delivered over the partner link ([`crate::partner`]).
    pub partner: Option<(Arc<crate::partner::Partners>, Arc<crate::partner::Link>)>,
}

impl Sink {
    pub fn new(config: SinkYaml) -> Arc<Sink> {
        Arc::new(Sink {
            config,
            notify: Notify::new(),
            health: Mutex::new(Health {
                healthy: true,
                ..Default::default()
            }),
            partner: None,
        })
    }

    /// The delivery route of a partner (named `partner:<site>`).
    pub fn partner(
        partners: Arc<crate::partner::Partners>,
        link: Arc<crate::partner::Link>,
    ) -> Arc<Sink> {
        Arc::new(Sink {
            config: SinkYaml {
                name: crate::partner::route_name(&link.config.site),
                disabled: false,
                min_severity: Default::default(),
                include_partner_alerts: false,
                webhook: None,
                mqtt: None,
            },
            notify: Notify::new(),
            health: Mutex::new(Health {
                healthy: true,
                ..Default::default()
            }),
            partner: Some((partners, link)),
        })
    }

    fn retry(&self) -> RetryConfig {
        match (&self.config.webhook, &self.config.mqtt) {
            (Some(w), _) => w.retry,
            (_, Some(m)) => m.retry,
            _ => RetryConfig::default(),
        }
    }

    fn health<R>(&self, f: impl FnOnce(&mut Health) -> R) -> R {
        f(&mut self.health.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// The sink's status, as `ListSinks` shows it (`pending` read from the store).
    pub fn status(&self, pending: u64) -> pb::SinkStatus {
        self.health(|h| pb::SinkStatus {
            delivered_total: h.delivered,
            failed_total: h.failed,
            pending,
            last_delivery_at: (h.last_delivery_us > 0)
                .then(|| timestamp_from_micros(h.last_delivery_us)),
            last_error: h.last_error.clone(),
            last_error_at: (h.last_error_us > 0).then(|| timestamp_from_micros(h.last_error_us)),
            subscribers: 0,
            dead_letters_total: h.dead_letters,
            healthy: h.healthy && h.disabled_reason.is_empty(),
            disabled_reason: h.disabled_reason.clone(),
        })
    }
}

enum Target {
    Webhook(webhook::Webhook),
    Mqtt(Box<mqtt::Mqtt>),
    Partner(Arc<crate::partner::Partners>, Arc<crate::partner::Link>),
}

impl Target {
    /// Waits up to `dur` with nothing to deliver (MQTT keeps its connection meanwhile).
    async fn idle(&mut self, dur: Duration) {
        match self {
            Target::Webhook(_) | Target::Partner(..) => tokio::time::sleep(dur).await,
            Target::Mqtt(m) => m.idle(dur).await,
        }
    }

    /// Whether deliveries may go now: a partner's only while its agreement is accepted (the
    /// queue waits meanwhile, using no attempts).
    fn ready(&self) -> bool {
        match self {
            Target::Partner(_, link) => link.accepted(),
            _ => true,
        }
    }

    async fn deliver(&mut self, e: &pb::WatchAlertsResponse) -> Result<(), Failure> {
        let body = || serde_json::to_vec(&crate::json::event(e)).unwrap_or_default();
        let alert = e.alert.clone().unwrap_or_default();
        match self {
            Target::Webhook(w) => {
                // The same id on every retry of the event: receivers deduplicate by it.
                let id = format!("{}-v{}", alert.id, alert.version);
                w.post(&id, body()).await
            }
            Target::Mqtt(m) => {
                let cam = alert.camera.unwrap_or_default();
                m.publish(&alert.site, &cam.camera, body()).await
            }
            Target::Partner(partners, link) => partners.deliver(link, e).await,
        }
    }
}

/// Events fetched from the queue at a time.
const BATCH: u32 = 64;

/// Delivers one sink's queue until `cancel`.
pub async fn run(sink: Arc<Sink>, store: Store, replica: String, cancel: CancellationToken) {
    let name = sink.config.name.clone();
    let m = crate::metrics::get();
    let target = match (&sink.partner, &sink.config.webhook, &sink.config.mqtt) {
        (Some((p, l)), _, _) => Ok(Target::Partner(p.clone(), l.clone())),
        (None, Some(w), _) => webhook::Webhook::new(w).map(Target::Webhook),
        (None, _, Some(q)) => mqtt::Mqtt::new(q, &replica).map(|m| Target::Mqtt(Box::new(m))),
        _ => Err("neither webhook nor mqtt".to_string()),
    };
    let mut target = match target {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(sink = %name, error = %e, "sink cannot start: its events stay queued");
            sink.health(|h| {
                h.healthy = false;
                h.disabled_reason = e;
            });
            return;
        }
    };
    let retry = sink.retry();
    loop {
        if cancel.is_cancelled() {
            return;
        }
        let queue = match store.queue(&name, BATCH).await {
            Ok(q) => q,
            Err(e) => {
                tracing::warn!(sink = %name, error = %e, "delivery queue unreadable; retrying");
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(2)) => continue,
                }
            }
        };
        m.pending
            .with_label_values(&[&name])
            .set(queue.len() as i64);
        if queue.is_empty() || !target.ready() {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = sink.notify.notified() => {}
                _ = target.idle(Duration::from_secs(5)) => {}
            }
            continue;
        }
        let mut done = Vec::new();
        for q in queue {
            let now = crate::now_us();
            if q.next_us > now {
                let wait = Duration::from_micros((q.next_us - now) as u64);
                tokio::select! {
                    _ = cancel.cancelled() => {}
                    _ = tokio::time::sleep(wait) => {}
                }
                break;
            }
            let event = match store.event(q.seq).await {
                Ok(Some(e)) => e,
                Ok(None) => {
                    done.push(q.seq);
                    continue;
                }
                Err(e) => {
                    tracing::warn!(sink = %name, error = %e, "event unreadable; retrying");
                    break;
                }
            };
            let attempt = q.attempts + 1;
            match target.deliver(&event.response).await {
                Ok(()) => {
                    done.push(q.seq);
                    let now = crate::now_us();
                    m.deliveries.with_label_values(&[&name, "delivered"]).inc();
                    m.delivery_latency
                        .with_label_values(&[&name])
                        .observe((now - event.time_us).max(0) as f64 / 1e6);
                    m.sink_healthy.with_label_values(&[&name]).set(1);
                    sink.health(|h| {
                        h.delivered += 1;
                        h.last_delivery_us = now;
                        h.healthy = true;
                    });
                }
                Err(f) => {
                    let now = crate::now_us();
                    m.sink_healthy.with_label_values(&[&name]).set(0);
                    let (reason, dead, gone) = match &f {
                        Failure::Transient(r) => (r.clone(), attempt >= retry.max_attempts, false),
                        Failure::Permanent(r) => (format!("refused: {r}"), true, false),
                        Failure::Gone => ("410 Gone: the endpoint is gone".to_string(), true, true),
                    };
                    sink.health(|h| {
                        h.last_error = reason.clone();
                        h.last_error_us = now;
                        h.healthy = false;
                    });
                    if dead {
                        let why = if matches!(f, Failure::Transient(_)) {
                            format!("{reason} (after {attempt} attempts)")
                        } else {
                            reason.clone()
                        };
                        tracing::warn!(sink = %name, seq = q.seq, reason = %why,
                                       "delivery moved to the dead letters");
                        if let Err(e) = store.dead_letter(&name, q.seq, attempt, &why).await {
                            tracing::warn!(sink = %name, error = %e, "dead letter not written");
                            break;
                        }
                        m.deliveries
                            .with_label_values(&[&name, "dead_letter"])
                            .inc();
                        sink.health(|h| {
                            h.failed += 1;
                            h.dead_letters += 1;
                        });
                        if gone {
                            let _ = store.delivered(&name, &done).await;
                            // Whatever is queued for it from now on goes the same way.
                            loop {
                                disable(&sink, &store, &name).await;
                                tokio::select! {
                                    _ = cancel.cancelled() => return,
                                    _ = sink.notify.notified() => {}
                                }
                            }
                        }
                        continue;
                    }
                    let next = now + retry.backoff(attempt).as_micros() as i64;
                    tracing::debug!(sink = %name, seq = q.seq, attempt, error = %reason, "delivery failed; will retry");
                    m.deliveries.with_label_values(&[&name, "retried"]).inc();
                    if let Err(e) = store
                        .retry_later(&name, q.seq, attempt, next, &reason)
                        .await
                    {
                        tracing::warn!(sink = %name, error = %e, "retry not recorded");
                    }
                    break;
                }
            }
        }
        if let Err(e) = store.delivered(&name, &done).await {
            tracing::warn!(sink = %name, error = %e, "delivered events not recorded; they will be sent again");
        }
    }
}

/// 410 Gone: the rest of the queue goes to the dead letters and the sink stops until its
/// configuration changes (a restart with the sink fixed or removed).
async fn disable(sink: &Sink, store: &Store, name: &str) {
    let reason = "the endpoint answered 410 Gone: sink disabled until its configuration changes";
    tracing::error!(sink = %name, "{reason}");
    sink.health(|h| h.disabled_reason = reason.to_string());
    loop {
        match store.queue(name, 1000).await {
            Ok(q) if q.is_empty() => return,
            Ok(q) => {
                for item in q {
                    if store
                        .dead_letter(name, item.seq, item.attempts, reason)
                        .await
                        .is_err()
                    {
                        return;
                    }
                    sink.health(|h| {
                        h.failed += 1;
                        h.dead_letters += 1;
                    });
                }
            }
            Err(_) => return,
        }
    }
}
