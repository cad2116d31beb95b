//! Sharing alerts with partner installations ([`kordon_runtime::partner`]).
//!
//! - **Bilateral acceptance.** For each declared partner, a task calls the partner's
//!   `ExchangeAgreement` now and every `partners.exchange_interval` (every 5 s while not
//!   accepted) with what this site declared; the partner answers with its own declaration, and
//!   both sides compare ([`kordon_runtime::partner::compare`]). The state (pending, accepted,
//!   mismatch with the differing terms, unreachable with the TLS or network error) and the
//!   last contact are in `ListSharingAgreements`. Nothing is forwarded or accepted unless the
//!   agreement is accepted.
//! - **Forwarding.** Each partner is a delivery route (`partner:<site>`) with its own queue
//!   ([`crate::sink`]): an alert event the agreement covers (camera, rule, severity; events
//!   webhooks get, not folds) is queued while the agreement is accepted, then sent with
//!   `ReceivePartnerAlert` at least once, in order, retried with backoff; the partner
//!   deduplicates by id and version. Only the fields the agreement allows leave
//!   ([`shared_copy`]).
//! - **Joint response.** An officer's acknowledgement, hold or resolution of a partner's alert
//!   here goes back to the origin (`ReceivePartnerAction`), which applies it to the original
//!   (attributed `<site>/<subject>`) and forwards the new version; a partner's copy adopts the
//!   origin's lifecycle step when it is further along.
//! - **Both logs.** Each forward (recipient = partner) and each received alert or lifecycle
//!   change (source = partner) is appended to this site's access log through storage's
//!   `RecordAccess`, before the forward counts as delivered or the copy is stored.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kordon_proto::alerting::v1 as pb;
use kordon_proto::alerting::v1::alerting_service_client::AlertingServiceClient;
use kordon_proto::common::v1 as common;
use kordon_proto::storage::v1 as spb;
use kordon_proto::storage::v1::storage_service_client::StorageServiceClient;
use kordon_proto::time::timestamp_from_micros;
use kordon_runtime::client::AuthedChannel;
use kordon_runtime::partner::{PartnerConfig, PartnersConfig, Terms};
use tokio_util::sync::CancellationToken;

use crate::AlertingError;
use crate::sink::Failure;

/// Re-check period while an agreement is not accepted.
const RETRY_EXCHANGE: Duration = Duration::from_secs(5);
/// Per call to a partner.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// The route (and queue) name of a partner.
pub fn route_name(site: &str) -> String {
    format!("partner:{site}")
}

/// What is known of one agreement.
#[derive(Debug, Clone, Default)]
pub struct LinkState {
    pub state: i32,
    pub reason: String,
    pub last_contact_us: i64,
    pub partner_digest: String,
    pub forwarded: u64,
    pub failed: u64,
    pub received: u64,
    pub last_forwarded_us: i64,
    pub last_received_us: i64,
    pub last_error: String,
}

/// One partner: its declaration, the acceptance state and a client of its link.
pub struct Link {
    pub config: PartnerConfig,
    pub here: String,
    accepted: AtomicBool,
    /// Woken each time the agreement comes into force.
    pub came_into_force: tokio::sync::Notify,
    state: Mutex<LinkState>,
    channel: AuthedChannel,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("partner", &self.config.site)
            .field("accepted", &self.accepted())
            .finish()
    }
}

impl Link {
    /// A client of the partner's alerting on the link (the channel is shared).
    fn client(&self) -> AlertingServiceClient<AuthedChannel> {
        AlertingServiceClient::new(self.channel.clone())
    }

    pub fn accepted(&self) -> bool {
        self.accepted.load(Ordering::Acquire)
    }

    pub fn state(&self) -> LinkState {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn update<R>(&self, f: impl FnOnce(&mut LinkState) -> R) -> R {
        f(&mut self.state.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Records the outcome of an exchange (either way).
    fn settle(&self, outcome: Result<(), String>, partner_digest: String, contact: bool) {
        let now = crate::now_us();
        let accepted = outcome.is_ok();
        let was = self.accepted.swap(accepted, Ordering::AcqRel);
        let (state, reason) = match outcome {
            Ok(()) => (pb::AgreementState::Accepted, String::new()),
            Err(r) if contact => (pb::AgreementState::Mismatch, r),
            Err(r) => (pb::AgreementState::Unreachable, r),
        };
        if was != accepted || self.state().reason != reason {
            if accepted {
                tracing::info!(partner = %self.config.site, "agreement accepted by both sides");
                if !was {
                    self.came_into_force.notify_one();
                }
            } else {
                tracing::warn!(partner = %self.config.site, state = state.as_str_name(),
                               reason = %reason, "agreement not in force: nothing is shared");
            }
        }
        crate::metrics::get()
            .partner_accepted
            .with_label_values(&[&self.config.site])
            .set(i64::from(accepted));
        self.update(|s| {
            s.state = state as i32;
            s.reason = reason;
            if contact {
                s.last_contact_us = now;
                s.partner_digest = partner_digest;
            }
        });
    }

    /// The agreement as `ListSharingAgreements` shows it.
    pub fn to_proto(&self, pending: u64) -> pb::SharingAgreement {
        let c = &self.config;
        let s = self.state();
        let ts = |us: i64| (us > 0).then(|| timestamp_from_micros(us));
        pb::SharingAgreement {
            partner_site: c.site.clone(),
            partner_display_name: c.display_name.clone(),
            partner_endpoint: c.endpoint.clone(),
            send_alerts: c.shares.alerts,
            accept_alerts: c.receives.alerts,
            min_severity: c.shares.to_proto().min_severity,
            cameras: c
                .shares
                .canonical()
                .cameras
                .into_iter()
                .map(|camera| common::CameraRef {
                    site: self.here.clone(),
                    camera,
                })
                .collect(),
            footage: if c.shares.footage.requests {
                pb::FootageSharing::OnRequest
            } else {
                pb::FootageSharing::None
            } as i32,
            retry: None,
            version: 1,
            updated_at: None,
            status: Some(pb::SharingStatus {
                forwarded_total: s.forwarded,
                failed_total: s.failed,
                pending,
                last_forwarded_at: ts(s.last_forwarded_us),
                last_error: s.last_error,
                received_total: s.received,
                last_received_at: ts(s.last_received_us),
                state: if s.state == 0 {
                    pb::AgreementState::Pending as i32
                } else {
                    s.state
                },
                state_reason: if s.state == 0 {
                    format!("{} has not been reached yet", c.site)
                } else {
                    s.reason
                },
                last_contact_at: ts(s.last_contact_us),
                terms_digest: c.digest(&self.here),
                partner_terms_digest: s.partner_digest,
            }),
            shares: Some(c.shares.to_proto()),
            receives: Some(c.receives.to_proto()),
            partner_storage_endpoint: c.storage_url().to_string(),
        }
    }
}

/// This installation's partners, and the storage client its access-log entries go through.
pub struct Partners {
    pub config: PartnersConfig,
    pub links: Vec<Arc<Link>>,
    storage: Option<StorageServiceClient<AuthedChannel>>,
}

impl Partners {
    /// Clients are lazy: nothing is dialled here.
    pub fn new(
        config: PartnersConfig,
        storage: Option<AuthedChannel>,
    ) -> Result<Partners, AlertingError> {
        config.validate().map_err(AlertingError::runtime)?;
        if !config.partners.is_empty() && storage.is_none() {
            return Err(AlertingError::config(
                "storage.url",
                "with partners, alerting records what it shares in the access log: name the \
                 site's storage service",
            ));
        }
        let mut links = Vec::new();
        for p in &config.partners {
            let channel = kordon_runtime::partner::connect(&config, p, &p.endpoint)
                .map_err(AlertingError::runtime)?;
            links.push(Arc::new(Link {
                config: p.clone(),
                here: config.site.clone(),
                accepted: AtomicBool::new(false),
                came_into_force: tokio::sync::Notify::new(),
                state: Mutex::new(LinkState::default()),
                channel,
            }));
        }
        Ok(Partners {
            config,
            links,
            storage: storage.map(StorageServiceClient::new),
        })
    }

    pub fn link(&self, site: &str) -> Option<&Arc<Link>> {
        self.links.iter().find(|l| l.config.site == site)
    }

    /// The site's name as partners know it.
    pub fn here(&self) -> &str {
        &self.config.site
    }

    /// Answers a partner's `ExchangeAgreement` and records the outcome here too.
    pub fn exchange(
        &self,
        from: &str,
        their_shares: &Terms,
        their_receives: &Terms,
    ) -> pb::ExchangeAgreementResponse {
        let Some(link) = self.link(from) else {
            tracing::warn!(
                partner = from,
                "a partner called, but no agreement with it is declared"
            );
            return pb::ExchangeAgreementResponse {
                site: self.here().to_string(),
                declared: false,
                state: pb::AgreementState::Mismatch as i32,
                state_reason: format!("{} declares no agreement with {from}", self.here()),
                ..Default::default()
            };
        };
        let c = &link.config;
        let outcome = kordon_runtime::partner::compare(
            self.here(),
            from,
            &c.shares,
            &c.receives,
            their_shares,
            their_receives,
        );
        let digest = kordon_runtime::partner::agreement_digest(
            from,
            self.here(),
            their_shares,
            their_receives,
        );
        link.settle(outcome.clone(), digest, true);
        let (state, state_reason) = match outcome {
            Ok(()) => (pb::AgreementState::Accepted, String::new()),
            Err(r) => (pb::AgreementState::Mismatch, r),
        };
        pb::ExchangeAgreementResponse {
            site: self.here().to_string(),
            declared: true,
            shares: Some(c.shares.to_proto()),
            receives: Some(c.receives.to_proto()),
            state: state as i32,
            state_reason,
        }
    }

    /// Keeps one agreement checked until `cancel`.
    pub async fn run_exchange(self: Arc<Self>, link: Arc<Link>, cancel: CancellationToken) {
        loop {
            let wait = match self.exchange_once(&link).await {
                true => self.config.exchange_interval,
                false => RETRY_EXCHANGE.min(self.config.exchange_interval),
            };
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// One exchange; true when the agreement is accepted.
    async fn exchange_once(&self, link: &Link) -> bool {
        use kordon_runtime::partner::Exchanged;
        match kordon_runtime::partner::exchange(
            &self.config,
            &link.config,
            link.channel.clone(),
            CALL_TIMEOUT,
        )
        .await
        {
            Exchanged::Answered {
                outcome,
                partner_digest,
            } => {
                let ok = outcome.is_ok();
                link.settle(outcome, partner_digest, true);
                ok
            }
            Exchanged::Failed(status) => {
                link.settle(
                    Err(describe_failure(&link.config.site, &status)),
                    String::new(),
                    false,
                );
                false
            }
        }
    }

    /// Appends an access-log entry about an alert shared with or received from `partner`.
    pub async fn log(
        &self,
        alert: &pb::Alert,
        partner: &str,
        received: bool,
    ) -> Result<(), String> {
        let Some(storage) = &self.storage else {
            return Ok(());
        };
        let here = self.here();
        let (action, principal, name, recipient, source) = if received {
            (
                spb::AccessAction::AlertReceive,
                format!("partner:{partner}"),
                format!("partner site {partner}"),
                String::new(),
                partner.to_string(),
            )
        } else {
            (
                spb::AccessAction::AlertForward,
                format!("agreement:{here}-{partner}"),
                format!("alert sharing agreement {here} → {partner}"),
                partner.to_string(),
                String::new(),
            )
        };
        let state = pb::AlertState::try_from(alert.state)
            .unwrap_or_default()
            .as_str_name();
        let mut req = tonic::Request::new(spb::RecordAccessRequest {
            principal,
            principal_name: name,
            action: action as i32,
            objects: vec![spb::AccessObject {
                kind: spb::AccessObjectKind::Alert as i32,
                camera: alert.camera.clone(),
                range: None,
                id: alert.id.clone(),
            }],
            audit: Some(common::AuditContext {
                reason: format!(
                    "alert {} ({}, {}) shared under the agreement between {here} and {partner}",
                    alert.rule_name, alert.class_label, state
                ),
                case_id: String::new(),
                recipient,
            }),
            method: if received {
                "/kordon.alerting.v1.AlertingService/ReceivePartnerAlert".into()
            } else {
                "/kordon.alerting.v1.AlertingService/ReceivePartnerAlert (outgoing)".into()
            },
            source,
        });
        req.set_timeout(CALL_TIMEOUT);
        storage
            .clone()
            .record_access(req)
            .await
            .map(|_| ())
            .map_err(|s| format!("access log: {}", s.message()))
    }

    /// Delivers one event to `link`: a forward of this site's alert, or an officer's step on
    /// the partner's alert back to its origin.
    pub async fn deliver(&self, link: &Link, e: &pb::WatchAlertsResponse) -> Result<(), Failure> {
        let alert = e.alert.clone().unwrap_or_default();
        let result = match &alert.origin {
            Some(origin) => self.reflect(link, &alert, origin, e.kind).await,
            None => self.forward(link, &alert).await,
        };
        let now = crate::now_us();
        link.update(|s| match &result {
            Ok(()) => {
                s.forwarded += 1;
                s.last_forwarded_us = now;
                s.last_error.clear();
            }
            Err(Failure::Transient(r)) | Err(Failure::Permanent(r)) => {
                s.last_error = r.clone();
                if matches!(result, Err(Failure::Permanent(_))) {
                    s.failed += 1;
                }
            }
            Err(Failure::Gone) => s.failed += 1,
        });
        result
    }

    async fn forward(&self, link: &Link, alert: &pb::Alert) -> Result<(), Failure> {
        let shared = shared_copy(alert, &link.config.shares);
        let mut req = tonic::Request::new(pb::ReceivePartnerAlertRequest {
            from_site: self.here().to_string(),
            alert: Some(shared.clone()),
        });
        req.set_timeout(CALL_TIMEOUT);
        link.client()
            .receive_partner_alert(req)
            .await
            .map_err(|s| failure(&link.config.site, &s))?;
        self.log(&shared, &link.config.site, false)
            .await
            .map_err(Failure::Transient)
    }

    async fn reflect(
        &self,
        link: &Link,
        copy: &pb::Alert,
        origin: &pb::PartnerOrigin,
        kind: i32,
    ) -> Result<(), Failure> {
        use pb::AlertEventKind as K;
        let (step, by, note) = match K::try_from(kind).unwrap_or_default() {
            K::Acknowledged => (
                pb::PartnerStep::Acknowledge,
                &copy.acknowledged_by,
                &copy.acknowledge_note,
            ),
            K::Held => (pb::PartnerStep::Hold, &copy.held_by, &copy.hold_note),
            K::Resolved => (
                pb::PartnerStep::Resolve,
                &copy.resolved_by,
                &copy.resolve_note,
            ),
            _ => return Ok(()),
        };
        let mut req = tonic::Request::new(pb::ReceivePartnerActionRequest {
            from_site: self.here().to_string(),
            alert_id: origin.alert_id.clone(),
            step: step as i32,
            by: by.clone(),
            note: note.clone(),
            resolution: copy.resolution,
            at: Some(timestamp_from_micros(crate::now_us())),
        });
        req.set_timeout(CALL_TIMEOUT);
        link.client()
            .receive_partner_action(req)
            .await
            .map(|_| ())
            .map_err(|s| failure(&link.config.site, &s))
    }

    pub fn note_received(&self, link: &Link) {
        let now = crate::now_us();
        link.update(|s| {
            s.received += 1;
            s.last_received_us = now;
        });
    }
}

/// The partner calling, when `who` came over the partner link as `from_site`'s service.
pub fn caller<'a>(
    who: &'a kordon_runtime::auth::Principal,
    from_site: &str,
) -> Result<&'a str, AlertingError> {
    let Some(caller) = who.partner_site() else {
        return Err(AlertingError::PermissionDenied(format!(
            "{who} is not a partner site: partner calls come over the partner link"
        )));
    };
    if caller != from_site {
        return Err(AlertingError::PermissionDenied(format!(
            "the caller's certificate is partner {caller}'s, not {from_site}'s"
        )));
    }
    Ok(caller)
}

/// The alert as it leaves for a partner: the rule's internal id, and the snapshot unless the
/// terms share snapshots, removed; the lifecycle steps stay (joint response needs them).
pub fn shared_copy(alert: &pb::Alert, terms: &Terms) -> pb::Alert {
    let mut a = alert.clone();
    a.rule_id.clear();
    a.origin = None;
    if !terms.snapshots {
        a.snapshot_id.clear();
        if let Some(d) = a.detection.as_mut() {
            d.snapshot_id.clear();
        }
    }
    a
}

/// Lifecycle order, for adopting the further-along side of a shared alert.
pub fn rank(state: i32) -> u8 {
    match pb::AlertState::try_from(state).unwrap_or_default() {
        pb::AlertState::Resolved => 3,
        pb::AlertState::Acknowledged => 2,
        pb::AlertState::OnHold => 1,
        _ => 0,
    }
}

/// A failed call to a partner, in words an operator can act on.
fn describe_failure(partner: &str, s: &tonic::Status) -> String {
    let mut text = s.message().to_string();
    let mut src = std::error::Error::source(s);
    while let Some(e) = src {
        text.push_str(": ");
        text.push_str(&e.to_string());
        src = e.source();
    }
    let lower = text.to_lowercase();
    if lower.contains("unknownissuer")
        || lower.contains("unknown issuer")
        || lower.contains("badsignature")
        || lower.contains("invalid peer certificate")
    {
        format!(
            "{partner}'s certificate is not signed by the CA declared for it (or its name does \
             not match the endpoint): {text}"
        )
    } else if lower.contains("certificate")
        || lower.contains("unknown ca")
        || lower.contains("handshake")
    {
        format!("TLS with {partner} failed (check both sides' declared CAs): {text}")
    } else {
        format!("{partner} unreachable: {} {text}", s.code())
    }
}

fn failure(partner: &str, s: &tonic::Status) -> Failure {
    use tonic::Code;
    match s.code() {
        Code::InvalidArgument
        | Code::NotFound
        | Code::PermissionDenied
        | Code::Unauthenticated
        | Code::AlreadyExists => Failure::Permanent(format!("{partner}: {}", s.message())),
        // Not accepted (yet) on the other side, a restart, the network: try again.
        _ => Failure::Transient(describe_failure(partner, s)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shared_copy_carries_only_what_the_terms_allow() {
        let a = pb::Alert {
            id: "a1".into(),
            rule_id: "internal".into(),
            snapshot_id: "snap".into(),
            detection: Some(kordon_proto::detection::v1::Detection {
                snapshot_id: "snap".into(),
                ..Default::default()
            }),
            acknowledged_by: "officer".into(),
            ..Default::default()
        };
        let none = shared_copy(&a, &Terms::default());
        assert!(none.rule_id.is_empty());
        assert!(none.snapshot_id.is_empty());
        assert!(none.detection.unwrap().snapshot_id.is_empty());
        assert_eq!(none.acknowledged_by, "officer");
        let with = shared_copy(
            &a,
            &Terms {
                snapshots: true,
                ..Default::default()
            },
        );
        assert_eq!(with.snapshot_id, "snap");
    }

    #[test]
    fn tls_refusals_say_which_certificate() {
        let s = tonic::Status::unavailable("invalid peer certificate: UnknownIssuer");
        assert!(describe_failure("edirne", &s).contains("not signed by the CA declared"));
        assert!(matches!(failure("edirne", &s), Failure::Transient(_)));
        let s = tonic::Status::permission_denied("not covered");
        assert!(matches!(failure("edirne", &s), Failure::Permanent(_)));
    }
}
