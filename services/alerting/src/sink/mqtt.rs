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
    connected: bool,
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
            options: o,
            client,
            events,
            qos: qos(c.qos),
            prefix: c.topic_prefix.clone(),
            connected: false,
        })
    }

    /// A fresh connection: nothing queued before a failure is sent after it, so every
    /// acknowledgement counted is of the publishes just made.
    fn reset(&mut self) {
        let (client, events) = AsyncClient::new(self.options.clone(), 64);
        self.client = client;
        self.events = events;
        self.connected = false;
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
                Ok(Event::Incoming(Packet::ConnAck(_))) => self.connected = true,
                Ok(Event::Incoming(Packet::PubAck(_))) if self.qos == QoS::AtLeastOnce => want -= 1,
                Ok(Event::Incoming(Packet::PubComp(_))) if self.qos == QoS::ExactlyOnce => {
                    want -= 1
                }
                Ok(Event::Outgoing(Outgoing::Publish(0))) if self.qos == QoS::AtMostOnce => {
                    want -= 1
                }
                Ok(_) => {}
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
                Ok(Ok(Event::Incoming(Packet::ConnAck(_)))) => self.connected = true,
                Ok(Ok(_)) => {}
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
        if !self.connected {
            // Announce availability on (re)connection; settles with the first acknowledgement.
            self.client
                .publish(
                    format!("{}/available", self.prefix),
                    QoS::AtLeastOnce,
                    true,
                    "online",
                )
                .await
                .map_err(|e| Failure::Transient(format!("MQTT: {e}")))?;
            let q = self.qos;
            self.qos = QoS::AtLeastOnce;
            let r = self.settle(1).await;
            self.qos = q;
            r?;
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
