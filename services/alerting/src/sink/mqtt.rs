//! MQTT through `rumqttc` to the site's broker. Each alert event is published to
//! `<prefix>/<site>/alerts` and `<prefix>/<site>/<camera>/events` (the shapes Frigate users
//! know); `<prefix>/available` says `online` (retained) and the broker publishes the last will
//! `offline` when the connection drops. A delivery is done when the broker acknowledged both
//! publishes (QoS 1 or 2), or when they were written (QoS 0).

use std::time::Duration;

use rumqttc::{AsyncClient, Event, EventLoop, LastWill, MqttOptions, Outgoing, Packet, QoS};

use super::Failure;
use crate::config::MqttYaml;

/// How long one publish waits for the broker.
const ACK_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Mqtt {
    options: MqttOptions,
    client: AsyncClient,
    events: EventLoop,
    qos: QoS,
    prefix: String,
    /// `online` was published on this connection.
    announced: bool,
    /// Publish requests not yet written, oldest first: whether each is one a delivery waits
    /// for (an alert) or not (the `online` announcement). rumqttc writes them in this order.
    requested: std::collections::VecDeque<bool>,
    /// Packet ids of written publishes a delivery waits for.
    waiting: std::collections::HashSet<u16>,
}

fn qos(q: u8) -> QoS {
    match q {
        0 => QoS::AtMostOnce,
        2 => QoS::ExactlyOnce,
        _ => QoS::AtLeastOnce,
    }
}

impl Mqtt {
    pub fn new(c: &MqttYaml, replica: &str) -> Result<Mqtt, String> {
        let u = url::Url::parse(&c.broker_url).map_err(|e| format!("broker_url: {e}"))?;
        let host = u.host_str().ok_or("broker_url: no host")?.to_string();
        let tls = u.scheme() == "mqtts";
        let port = u.port().unwrap_or(if tls { 8883 } else { 1883 });
        let id = c
            .client_id
            .clone()
            .unwrap_or_else(|| format!("kordon-{replica}"));
        let mut o = MqttOptions::new(id, host, port);
        o.set_keep_alive(Duration::from_secs(30));
        o.set_clean_session(true);
        o.set_last_will(LastWill::new(
            format!("{}/available", c.topic_prefix),
            "offline",
            QoS::AtLeastOnce,
            true,
        ));
        if let (Some(uf), Some(pf)) = (&c.username_file, &c.password_file) {
            let read = |p: &std::path::Path| {
                std::fs::read_to_string(p)
                    .map(|s| s.trim_end_matches(['\r', '\n']).to_string())
                    .map_err(|e| format!("{}: {e}", p.display()))
            };
            o.set_credentials(read(uf)?, read(pf)?);
        }
        if tls {
            let mut roots = rustls::RootCertStore::empty();
            match &c.ca_file {
                Some(f) => {
                    let pem = std::fs::read(f).map_err(|e| format!("{}: {e}", f.display()))?;
                    for cert in rustls_pemfile_certs(&pem)? {
                        roots.add(cert).map_err(|e| format!("ca_file: {e}"))?;
                    }
                }
                None => {
                    let native = rustls_native_certs_load();
                    for cert in native {
                        let _ = roots.add(cert);
                    }
                }
            }
            let cfg = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS: {e}"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
            o.set_transport(rumqttc::Transport::tls_with_config(
                rumqttc::TlsConfiguration::Rustls(std::sync::Arc::new(cfg)),
            ));
        }
        let (client, events) = AsyncClient::new(o.clone(), 64);
        Ok(Mqtt {
            requested: Default::default(),
            waiting: Default::default(),
            options: o,
            client,
            events,
            qos: qos(c.qos),
            prefix: c.topic_prefix.clone(),
            announced: false,
        })
    }

    /// `online` on `<prefix>/available`, retained (the last will says `offline`).
    fn announce(&mut self) {
        let topic = format!("{}/available", self.prefix);
        if self
            .client
            .try_publish(topic, QoS::AtLeastOnce, true, "online")
            .is_ok()
        {
            self.requested.push_back(false);
            self.announced = true;
        }
    }

    /// A fresh connection: nothing queued before a failure is sent after it, so every
    /// acknowledgement counted is of the publishes just made.
    fn reset(&mut self) {
        let (client, events) = AsyncClient::new(self.options.clone(), 64);
        self.client = client;
        self.events = events;
        self.announced = false;
        self.requested.clear();
        self.waiting.clear();
    }

    /// Follows one event: 1 when it completes a publish a delivery waits for (acknowledged at
    /// QoS 1 and 2, written at QoS 0).
    fn follow(&mut self, ev: &Event) -> usize {
        match ev {
            Event::Outgoing(Outgoing::Publish(pkid)) => match self.requested.pop_front() {
                Some(true) if self.qos == QoS::AtMostOnce => 1,
                Some(true) => {
                    self.waiting.insert(*pkid);
                    0
                }
                _ => 0,
            },
            Event::Incoming(Packet::PubAck(a)) if self.qos == QoS::AtLeastOnce => {
                usize::from(self.waiting.remove(&a.pkid))
            }
            Event::Incoming(Packet::PubComp(c)) if self.qos == QoS::ExactlyOnce => {
                usize::from(self.waiting.remove(&c.pkid))
            }
            _ => 0,
        }
    }

    /// Drives the connection until `want` acknowledgements (or, at QoS 0, writes) arrived.
    async fn settle(&mut self, mut want: usize) -> Result<(), Failure> {
        let deadline = tokio::time::Instant::now() + ACK_TIMEOUT;
        while want > 0 {
            let Ok(ev) = tokio::time::timeout_at(deadline, self.events.poll()).await else {
                self.reset();
                return Err(Failure::Transient(
                    "no acknowledgement from the broker".into(),
                ));
            };
            match ev {
                Ok(ev) => want = want.saturating_sub(self.follow(&ev)),
                Err(e) => {
                    self.reset();
                    return Err(Failure::Transient(format!("MQTT: {e}")));
                }
            }
        }
        Ok(())
    }

    /// Keeps the connection (pings, reconnects) while there is nothing to publish, for up to
    /// `dur`: an alert after a quiet night goes out at once, not after a failed attempt on a
    /// connection the broker dropped.
    pub async fn idle(&mut self, dur: Duration) {
        let until = tokio::time::Instant::now() + dur;
        loop {
            match tokio::time::timeout_at(until, self.events.poll()).await {
                Err(_) => return,
                Ok(Ok(Event::Incoming(Packet::ConnAck(_)))) if !self.announced => {
                    // Connected while idle: say so now (the broker keeps it, retained).
                    self.announce();
                }
                Ok(Ok(ev)) => {
                    self.follow(&ev);
                }
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "MQTT connection lost while idle; reconnecting");
                    self.reset();
                    tokio::time::sleep_until(
                        until.min(tokio::time::Instant::now() + Duration::from_secs(1)),
                    )
                    .await;
                }
            }
        }
    }

    /// Publishes one event of `site`/`camera`.
    pub async fn publish(
        &mut self,
        site: &str,
        camera: &str,
        body: Vec<u8>,
    ) -> Result<(), Failure> {
        if !self.announced {
            self.announce();
        }
        let topics = [
            format!("{}/{site}/alerts", self.prefix),
            format!("{}/{site}/{camera}/events", self.prefix),
        ];
        for t in &topics {
            self.client
                .publish(t, self.qos, false, body.clone())
                .await
                .map_err(|e| Failure::Transient(format!("MQTT: {e}")))?;
            self.requested.push_back(true);
        }
        self.settle(topics.len()).await
    }
}

fn rustls_pemfile_certs(
    pem: &[u8],
) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, String> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("ca_file: {e}"))
}

fn rustls_native_certs_load() -> Vec<rustls::pki_types::CertificateDer<'static>> {
    // The system bundle Debian ships (ca-certificates); an empty store otherwise.
    ["/etc/ssl/certs/ca-certificates.crt"]
        .iter()
        .filter_map(|p| std::fs::read(p).ok())
        .flat_map(|pem| rustls_pemfile_certs(&pem).unwrap_or_default())
        .collect()
}
