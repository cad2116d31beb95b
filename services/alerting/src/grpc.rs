//! `kordon.alerting.v1.AlertingService` over the running [`Alerting`].
//!
//! Reading needs ROLE_VIEWER (view status) on the alert's or rule's site (this site for a
//! partner's copy, as for handling it), and a request without
//! a site sees only the sites the caller holds a role on; acknowledging, holding and resolving
//! need ROLE_OPERATOR (handle alerts); rules need ROLE_ADMIN. Sinks are configured in the Site
//! resource (`spec.alertSinks`) or the `alerting.sinks` config; sharing agreements are declared
//! as `Partner` resources or in the `partners:` config, and listed with their bilateral state.
//! `ExchangeAgreement`, `ReceivePartnerAlert` and `ReceivePartnerAction` answer only partner
//! installations on the partner link ([`crate::partner`]).

use std::sync::Arc;

use kordon_proto::alerting::v1 as pb;
use kordon_proto::alerting::v1::alerting_service_server::AlertingService;
use kordon_proto::common::v1 as common;
use kordon_proto::time::micros_from_timestamp;
use kordon_runtime::auth::{self, Permission, Principal};
use kordon_runtime::watch::WatchLimit;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;
use tonic::codegen::BoxStream;
use tonic::{Request, Response, Status};

use crate::AlertingError;
use crate::engine::Action;
use crate::service::Alerting;
use crate::store::{AlertFilter, MAX_PAGE};

/// Page size when a request names none.
const DEFAULT_PAGE: u32 = 100;

/// Most WatchAlerts streams one process serves at once; more are RESOURCE_EXHAUSTED.
pub const MAX_WATCHES: usize = kordon_runtime::watch::DEFAULT_MAX_WATCHES;

/// The gRPC implementation of `kordon.alerting.v1.AlertingService`.
#[derive(Clone)]
pub struct AlertingApi {
    alerting: Arc<Alerting>,
    watches: WatchLimit,
}

impl AlertingApi {
    pub fn new(alerting: Arc<Alerting>) -> Self {
        AlertingApi {
            alerting,
            watches: WatchLimit::new("WatchAlerts", MAX_WATCHES),
        }
    }

    /// At most `max` WatchAlerts streams at once (tests use a small one).
    pub fn with_max_watches(mut self, max: usize) -> Self {
        self.watches = WatchLimit::new("WatchAlerts", max);
        self
    }
}

fn invalid(m: impl Into<String>) -> Status {
    Status::invalid_argument(m.into())
}

fn principal<T>(req: &Request<T>) -> Result<Principal, Status> {
    Ok(auth::principal(req)?.clone())
}

fn can(p: &Principal, site: &str, perm: Permission) -> bool {
    auth::authorize(p, site, perm).is_ok()
}

/// The site whose roles govern `a` here: its own site, or, for a partner's copy, this site (an
/// officer of the receiving site sees and handles the copy with their roles here, as
/// [`Alerting::act`] decides).
fn governing_site<'a>(alerting: &'a Alerting, a: &'a pb::Alert) -> &'a str {
    crate::service::governing_site(alerting.partners().here(), &a.site, a.origin.is_some())
}

/// The caller's name on lifecycle steps and rule changes.
fn who(p: &Principal) -> String {
    p.subject.clone()
}

fn origin(o: i32) -> Result<Option<bool>, Status> {
    match pb::AlertOriginFilter::try_from(o) {
        Ok(pb::AlertOriginFilter::Local) => Ok(Some(false)),
        Ok(pb::AlertOriginFilter::Partner) => Ok(Some(true)),
        Ok(_) => Ok(None),
        Err(_) => Err(invalid(format!("origin: unknown value {o}"))),
    }
}

/// A filter naming a site (or cameras) needs view rights there.
fn authorize_filter(p: &Principal, f: &AlertFilter) -> Result<(), Status> {
    if !f.site.is_empty() {
        auth::authorize(p, &f.site, Permission::ViewStatus)?;
    }
    for (s, _) in &f.cameras {
        auth::authorize(p, s, Permission::ViewStatus)?;
    }
    Ok(())
}

fn page_size(p: &Option<common::PageRequest>) -> u32 {
    match p.as_ref().map(|p| p.page_size).unwrap_or(0) {
        0 => DEFAULT_PAGE,
        n => n.min(MAX_PAGE),
    }
}

#[tonic::async_trait]
impl AlertingService for AlertingApi {
    async fn create_rule(
        &self,
        req: Request<pb::CreateRuleRequest>,
    ) -> Result<Response<pb::CreateRuleResponse>, Status> {
        let p = principal(&req)?;
        let rule = req
            .into_inner()
            .rule
            .ok_or_else(|| invalid("rule: required"))?;
        auth::authorize(&p, &rule.site, Permission::Administer)?;
        let rule = self.alerting.create_rule(rule, &who(&p)).await?;
        Ok(Response::new(pb::CreateRuleResponse { rule: Some(rule) }))
    }

    async fn get_rule(
        &self,
        req: Request<pb::GetRuleRequest>,
    ) -> Result<Response<pb::GetRuleResponse>, Status> {
        let p = principal(&req)?;
        let id = req.into_inner().rule_id;
        let rule = self
            .alerting
            .rules()
            .await?
            .into_iter()
            .map(|s| s.rule)
            .find(|r| r.id == id)
            .ok_or_else(|| Status::not_found(format!("no rule {id}")))?;
        auth::authorize(&p, &rule.site, Permission::ViewStatus)?;
        Ok(Response::new(pb::GetRuleResponse { rule: Some(rule) }))
    }

    async fn list_rules(
        &self,
        req: Request<pb::ListRulesRequest>,
    ) -> Result<Response<pb::ListRulesResponse>, Status> {
        let p = principal(&req)?;
        let r = req.into_inner();
        if !r.site.is_empty() {
            auth::authorize(&p, &r.site, Permission::ViewStatus)?;
        }
        let size = page_size(&r.page) as usize;
        let after = r
            .page
            .as_ref()
            .map(|p| p.page_token.clone())
            .unwrap_or_default();
        let mut rules: Vec<pb::Rule> = self
            .alerting
            .rules()
            .await?
            .into_iter()
            .map(|s| s.rule)
            .filter(|x| r.site.is_empty() || x.site == r.site)
            .filter(|x| can(&p, &x.site, Permission::ViewStatus))
            .filter(|x| match &r.camera {
                None => true,
                Some(c) => {
                    x.site == c.site
                        && (x.cameras.is_empty() || x.cameras.iter().any(|k| k.camera == c.camera))
                }
            })
            .filter(|x| after.is_empty() || format!("{}/{}", x.site, x.name) > after)
            .collect();
        rules.sort_by(|a, b| {
            format!("{}/{}", a.site, a.name).cmp(&format!("{}/{}", b.site, b.name))
        });
        let next = if rules.len() > size {
            rules.truncate(size);
            rules
                .last()
                .map(|x| format!("{}/{}", x.site, x.name))
                .unwrap_or_default()
        } else {
            String::new()
        };
        Ok(Response::new(pb::ListRulesResponse {
            rules,
            page: Some(common::PageResponse {
                next_page_token: next,
            }),
        }))
    }

    async fn update_rule(
        &self,
        req: Request<pb::UpdateRuleRequest>,
    ) -> Result<Response<pb::UpdateRuleResponse>, Status> {
        let p = principal(&req)?;
        let r = req.into_inner();
        let rule = r.rule.ok_or_else(|| invalid("rule: required"))?;
        if rule.id.is_empty() {
            return Err(invalid("rule.id: required"));
        }
        // The caller administers both the rule's current site and the one it names.
        let current = self
            .alerting
            .rules()
            .await?
            .into_iter()
            .find(|s| s.rule.id == rule.id)
            .ok_or_else(|| Status::not_found(format!("no rule {}", rule.id)))?;
        auth::authorize(&p, &current.rule.site, Permission::Administer)?;
        auth::authorize(&p, &rule.site, Permission::Administer)?;
        let rule = self
            .alerting
            .update_rule(rule, r.expected_version, &who(&p))
            .await?;
        Ok(Response::new(pb::UpdateRuleResponse { rule: Some(rule) }))
    }

    async fn delete_rule(
        &self,
        req: Request<pb::DeleteRuleRequest>,
    ) -> Result<Response<pb::DeleteRuleResponse>, Status> {
        let p = principal(&req)?;
        let r = req.into_inner();
        let current = self
            .alerting
            .rules()
            .await?
            .into_iter()
            .find(|s| s.rule.id == r.rule_id)
            .ok_or_else(|| Status::not_found(format!("no rule {}", r.rule_id)))?;
        auth::authorize(&p, &current.rule.site, Permission::Administer)?;
        self.alerting
            .delete_rule(&r.rule_id, r.expected_version)
            .await?;
        Ok(Response::new(pb::DeleteRuleResponse {}))
    }

    async fn list_alerts(
        &self,
        req: Request<pb::ListAlertsRequest>,
    ) -> Result<Response<pb::ListAlertsResponse>, Status> {
        let p = principal(&req)?;
        let r = req.into_inner();
        let range = r.range.unwrap_or_default();
        let f = AlertFilter {
            site: r.site,
            cameras: common::camera_pairs(&r.cameras)?,
            states: r.states,
            min_severity: r.min_severity,
            rule_id: r.rule_id,
            from_us: range.start.as_ref().and_then(micros_from_timestamp),
            to_us: range.end.as_ref().and_then(micros_from_timestamp),
            partner: origin(r.origin)?,
        };
        authorize_filter(&p, &f)?;
        let size = page_size(&r.page);
        let token = r.page.as_ref().map(|p| p.page_token.as_str()).unwrap_or("");
        let mut after = match token {
            "" => None,
            t => {
                let bad = || invalid("page.page_token: not a token of this list");
                let (a, b) = t.split_once(':').ok_or_else(bad)?;
                Some((a.parse::<i64>().map_err(|_| bad())?, b.to_string()))
            }
        };
        let mut alerts = Vec::new();
        let mut next = String::new();
        loop {
            let rows = self
                .alerting
                .store()
                .list_alerts(&f, after.clone(), size + 1)
                .await?;
            let more = rows.len() > size as usize;
            for a in rows.into_iter().take(size as usize) {
                after = Some((
                    a.opened_at
                        .as_ref()
                        .and_then(micros_from_timestamp)
                        .unwrap_or(0),
                    a.id.clone(),
                ));
                if can(
                    &p,
                    governing_site(&self.alerting, &a),
                    Permission::ViewStatus,
                ) {
                    alerts.push(a);
                    if alerts.len() == size as usize {
                        break;
                    }
                }
            }
            let full = alerts.len() == size as usize;
            if full || !more {
                if (full || more)
                    && let Some((t, id)) = &after
                {
                    next = format!("{t}:{id}");
                }
                break;
            }
        }
        // The engine's copies carry folds not yet written (occurrences, last seen).
        for a in &mut alerts {
            if a.ended_at.is_none()
                && let Ok(fresh) = self.alerting.alert(&a.id).await
            {
                *a = fresh;
            }
        }
        Ok(Response::new(pb::ListAlertsResponse {
            alerts,
            page: Some(common::PageResponse {
                next_page_token: next,
            }),
        }))
    }

    async fn get_alert(
        &self,
        req: Request<pb::GetAlertRequest>,
    ) -> Result<Response<pb::GetAlertResponse>, Status> {
        let p = principal(&req)?;
        let id = req.into_inner().alert_id;
        let a = self.alerting.alert(&id).await?;
        auth::authorize(
            &p,
            governing_site(&self.alerting, &a),
            Permission::ViewStatus,
        )?;
        Ok(Response::new(pb::GetAlertResponse { alert: Some(a) }))
    }

    async fn watch_alerts(
        &self,
        req: Request<pb::WatchAlertsRequest>,
    ) -> Result<Response<BoxStream<pb::WatchAlertsResponse>>, Status> {
        let p = principal(&req)?;
        let r = req.into_inner();
        let f = AlertFilter {
            site: r.site,
            cameras: common::camera_pairs(&r.cameras)?,
            min_severity: r.min_severity,
            partner: origin(r.origin)?,
            ..Default::default()
        };
        authorize_filter(&p, &f)?;
        let store = self.alerting.store().clone();
        // Subscribe first: nothing published from now on is missed.
        let mut live = self.alerting.subscribe();
        let window = self.alerting.config().grpc_stream.replay_window;
        let oldest = crate::now_us() - window.as_micros() as i64;
        let start = if !r.cursor.is_empty() {
            let seq: i64 = r
                .cursor
                .parse()
                .map_err(|_| invalid("cursor: not a cursor of this service"))?;
            let last = store.last_seq().await?;
            if seq > last {
                return Err(invalid("cursor: not a cursor of this service"));
            }
            match store.event_time(seq).await? {
                Some(t) if t >= oldest => Some(seq),
                _ if seq == last => Some(seq),
                _ => {
                    return Err(Status::out_of_range(format!(
                        "cursor: older than the replay window ({}); list alerts instead",
                        humantime::format_duration(window)
                    )));
                }
            }
        } else if let Some(t) = &r.since {
            let us = micros_from_timestamp(t).ok_or_else(|| invalid("since: out of range"))?;
            if us < oldest {
                return Err(Status::out_of_range(format!(
                    "since: at most the replay window ({}) back; list alerts instead",
                    humantime::format_duration(window)
                )));
            }
            Some(store.seq_before(us).await?)
        } else {
            None
        };
        let permit = self.watches.try_acquire()?;
        let buffered = self.alerting.config().grpc_stream.max_buffered as usize;
        let (tx, rx) = mpsc::channel::<Result<pb::WatchAlertsResponse, Status>>(buffered);
        let alerting = self.alerting.clone();
        let visible = {
            let alerting = alerting.clone();
            move |a: &pb::Alert| can(&p, governing_site(&alerting, a), Permission::ViewStatus)
        };
        let gauge = crate::metrics::get()
            .subscribers
            .with_label_values::<&str>(&[]);
        gauge.set(alerting.subscribers() as i64);
        tokio::spawn(async move {
            let _permit = permit;
            let send = |m: Result<pb::WatchAlertsResponse, Status>| {
                let tx = tx.clone();
                async move { tx.send(m).await.is_ok() }
            };
            let mut sent: i64 = 0;
            let result: Result<(), AlertingError> = async {
                if r.include_unresolved {
                    let open = AlertFilter {
                        states: vec![
                            pb::AlertState::Open as i32,
                            pb::AlertState::Acknowledged as i32,
                            pb::AlertState::OnHold as i32,
                        ],
                        ..f.clone()
                    };
                    let mut after = None;
                    loop {
                        let page = store.list_alerts(&open, after.clone(), MAX_PAGE).await?;
                        let n = page.len();
                        for a in page {
                            after = Some((
                                a.opened_at
                                    .as_ref()
                                    .and_then(micros_from_timestamp)
                                    .unwrap_or(0),
                                a.id.clone(),
                            ));
                            if visible(&a) {
                                let a = alerting.alert(&a.id).await.unwrap_or(a);
                                let m = pb::WatchAlertsResponse {
                                    kind: pb::AlertEventKind::Current as i32,
                                    event_time: a.last_seen_at,
                                    alert: Some(a),
                                    cursor: String::new(),
                                };
                                if !send(Ok(m)).await {
                                    return Ok(());
                                }
                            }
                        }
                        if n < MAX_PAGE as usize {
                            break;
                        }
                    }
                }
                if let Some(mut seq) = start {
                    loop {
                        let page = store.events_after(seq, 500).await?;
                        let n = page.len();
                        for e in page {
                            seq = e.seq;
                            sent = e.seq;
                            let a = e.response.alert.clone().unwrap_or_default();
                            if f.matches(&a) && visible(&a) && !send(Ok(e.response)).await {
                                return Ok(());
                            }
                        }
                        if n < 500 {
                            break;
                        }
                    }
                }
                loop {
                    // A client that went away ends the task now, not at the next event (which,
                    // on a quiet site, may never come): its task, subscription and slot go.
                    let got = tokio::select! {
                        _ = tx.closed() => return Ok(()),
                        got = live.recv() => got,
                    };
                    match got {
                        Ok(e) => {
                            if e.seq <= sent {
                                continue;
                            }
                            sent = e.seq;
                            let a = e.response.alert.clone().unwrap_or_default();
                            if f.matches(&a) && visible(&a) && !send(Ok(e.response.clone())).await {
                                return Ok(());
                            }
                        }
                        Err(RecvError::Lagged(_)) => {
                            let _ = send(Err(Status::resource_exhausted(format!(
                                "this subscriber fell more than {buffered} events behind: resume \
                                 with cursor {sent}"
                            ))))
                            .await;
                            return Ok(());
                        }
                        Err(RecvError::Closed) => return Ok(()),
                    }
                }
            }
            .await;
            if let Err(e) = result {
                let _ = send(Err(e.into())).await;
            }
            drop(live);
            gauge.set(alerting.subscribers() as i64);
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn acknowledge_alert(
        &self,
        req: Request<pb::AcknowledgeAlertRequest>,
    ) -> Result<Response<pb::AcknowledgeAlertResponse>, Status> {
        let p = principal(&req)?;
        let r = req.into_inner();
        let action = Action::Acknowledge { note: r.note };
        let alert = self
            .step(&p, &r.alert_id, action, r.expected_version)
            .await?;
        Ok(Response::new(pb::AcknowledgeAlertResponse { alert }))
    }

    async fn hold_alert(
        &self,
        req: Request<pb::HoldAlertRequest>,
    ) -> Result<Response<pb::HoldAlertResponse>, Status> {
        let p = principal(&req)?;
        let r = req.into_inner();
        let action = Action::Hold { note: r.note };
        let alert = self
            .step(&p, &r.alert_id, action, r.expected_version)
            .await?;
        Ok(Response::new(pb::HoldAlertResponse { alert }))
    }

    async fn resolve_alert(
        &self,
        req: Request<pb::ResolveAlertRequest>,
    ) -> Result<Response<pb::ResolveAlertResponse>, Status> {
        let p = principal(&req)?;
        let r = req.into_inner();
        let action = Action::Resolve {
            resolution: r.resolution,
            note: r.note,
        };
        let alert = self
            .step(&p, &r.alert_id, action, r.expected_version)
            .await?;
        Ok(Response::new(pb::ResolveAlertResponse { alert }))
    }

    async fn list_sinks(
        &self,
        req: Request<pb::ListSinksRequest>,
    ) -> Result<Response<pb::ListSinksResponse>, Status> {
        let p = principal(&req)?;
        auth::authorize_any_site(&p, Permission::ViewStatus)?;
        let cfg = self.alerting.config();
        let mut sinks = vec![pb::Sink {
            name: crate::GRPC_SINK.to_string(),
            disabled: false,
            min_severity: 0,
            include_partner_alerts: true,
            target: Some(pb::sink::Target::GrpcStream(pb::GrpcStreamSink {
                max_buffered: cfg.grpc_stream.max_buffered,
                replay_window: prost_types::Duration::try_from(cfg.grpc_stream.replay_window).ok(),
            })),
            status: Some(pb::SinkStatus {
                subscribers: self.alerting.subscribers() as u32,
                healthy: true,
                ..Default::default()
            }),
        }];
        for y in &cfg.sinks {
            let running = self
                .alerting
                .sinks()
                .iter()
                .find(|s| s.config.name == y.name);
            let pending = self.alerting.store().pending(&y.name).await?;
            sinks.push(pb::Sink {
                name: y.name.clone(),
                disabled: y.disabled,
                min_severity: y.min_severity.to_proto() as i32,
                include_partner_alerts: y.include_partner_alerts,
                target: match (&y.webhook, &y.mqtt) {
                    (Some(w), _) => Some(pb::sink::Target::Webhook(pb::WebhookSink {
                        url: redact(&w.url),
                        signing_secret: None,
                        timeout: prost_types::Duration::try_from(w.timeout).ok(),
                        retry: Some(retry(&w.retry)),
                    })),
                    (_, Some(m)) => Some(pb::sink::Target::Mqtt(pb::MqttSink {
                        broker_url: redact(&m.broker_url),
                        topic: format!("{}/{{site}}/alerts", m.topic_prefix),
                        qos: match m.qos {
                            0 => pb::MqttQos::AtMostOnce,
                            2 => pb::MqttQos::ExactlyOnce,
                            _ => pb::MqttQos::AtLeastOnce,
                        } as i32,
                        retain: false,
                        client_id: m.client_id.clone().unwrap_or_default(),
                        username: None,
                        password: None,
                        ca_certificate: None,
                        retry: Some(retry(&m.retry)),
                    })),
                    _ => None,
                },
                status: Some(match running {
                    Some(s) => s.status(pending),
                    None => pb::SinkStatus {
                        pending,
                        disabled_reason: "disabled in the configuration".into(),
                        ..Default::default()
                    },
                }),
            });
        }
        sinks.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(Response::new(pb::ListSinksResponse { sinks }))
    }

    async fn put_sink(
        &self,
        _req: Request<pb::PutSinkRequest>,
    ) -> Result<Response<pb::PutSinkResponse>, Status> {
        Err(Status::failed_precondition(
            "sinks are configured in the Site resource (spec.alertSinks) or in alerting.sinks, \
             so that what delivers alerts is reviewed like the rest of the site's configuration",
        ))
    }

    async fn delete_sink(
        &self,
        _req: Request<pb::DeleteSinkRequest>,
    ) -> Result<Response<pb::DeleteSinkResponse>, Status> {
        Err(Status::failed_precondition(
            "sinks are configured in the Site resource (spec.alertSinks) or in alerting.sinks",
        ))
    }

    async fn list_site_time_zones(
        &self,
        req: Request<pb::ListSiteTimeZonesRequest>,
    ) -> Result<Response<pb::ListSiteTimeZonesResponse>, Status> {
        let p = principal(&req)?;
        let scope = auth::authorize_any_site(&p, Permission::ViewStatus)?;
        let cfg = self.alerting.config();
        let sites = cfg
            .time_zones
            .iter()
            .filter(|(site, _)| scope.contains(site))
            .map(|(site, tz)| pb::SiteTimeZone {
                site: site.clone(),
                time_zone: tz.clone(),
            })
            .collect();
        Ok(Response::new(pb::ListSiteTimeZonesResponse {
            sites,
            default_time_zone: cfg.time_zone("").to_string(),
        }))
    }

    async fn list_sharing_agreements(
        &self,
        req: Request<pb::ListSharingAgreementsRequest>,
    ) -> Result<Response<pb::ListSharingAgreementsResponse>, Status> {
        let p = principal(&req)?;
        let partners = self.alerting.partners();
        let here = partners.here();
        if here.is_empty() {
            auth::authorize_any_site(&p, Permission::ViewStatus)?;
        } else {
            auth::authorize(&p, here, Permission::ViewStatus)?;
        }
        let mut agreements = Vec::new();
        for link in &partners.links {
            let pending = self
                .alerting
                .store()
                .pending(&crate::partner::route_name(&link.config.site))
                .await?;
            agreements.push(link.to_proto(pending));
        }
        agreements.sort_by(|a, b| a.partner_site.cmp(&b.partner_site));
        Ok(Response::new(pb::ListSharingAgreementsResponse {
            agreements,
        }))
    }

    async fn put_sharing_agreement(
        &self,
        _req: Request<pb::PutSharingAgreementRequest>,
    ) -> Result<Response<pb::PutSharingAgreementResponse>, Status> {
        Err(Status::failed_precondition(
            "agreements are declared as Partner resources (or in the partners: config), so that \
             what leaves the site is reviewed like the rest of its configuration",
        ))
    }

    async fn delete_sharing_agreement(
        &self,
        _req: Request<pb::DeleteSharingAgreementRequest>,
    ) -> Result<Response<pb::DeleteSharingAgreementResponse>, Status> {
        Err(Status::failed_precondition(
            "agreements are declared as Partner resources (or in the partners: config): delete \
             the Partner to end one",
        ))
    }

    async fn receive_partner_alert(
        &self,
        req: Request<pb::ReceivePartnerAlertRequest>,
    ) -> Result<Response<pb::ReceivePartnerAlertResponse>, Status> {
        let p = principal(&req)?;
        let r = req.into_inner();
        // Only a partner is told what is wrong with its request.
        crate::partner::caller(&p, &r.from_site)?;
        let alert = r.alert.ok_or_else(|| invalid("alert: required"))?;
        let (copy, outcome) = self
            .alerting
            .receive_partner_alert(&p, &r.from_site, alert)
            .await?;
        Ok(Response::new(pb::ReceivePartnerAlertResponse {
            local_alert_id: copy.id,
            outcome: outcome as i32,
        }))
    }

    async fn exchange_agreement(
        &self,
        req: Request<pb::ExchangeAgreementRequest>,
    ) -> Result<Response<pb::ExchangeAgreementResponse>, Status> {
        let p = principal(&req)?;
        let r = req.into_inner();
        crate::partner::caller(&p, &r.from_site)?;
        let shares = kordon_runtime::partner::Terms::from_proto(&r.shares.unwrap_or_default());
        let receives = kordon_runtime::partner::Terms::from_proto(&r.receives.unwrap_or_default());
        Ok(Response::new(self.alerting.partners().exchange(
            &r.from_site,
            &shares,
            &receives,
        )))
    }

    async fn receive_partner_action(
        &self,
        req: Request<pb::ReceivePartnerActionRequest>,
    ) -> Result<Response<pb::ReceivePartnerActionResponse>, Status> {
        let p = principal(&req)?;
        let (alert, changed) = self
            .alerting
            .receive_partner_action(&p, req.into_inner())
            .await?;
        Ok(Response::new(pb::ReceivePartnerActionResponse {
            alert: Some(alert),
            changed,
        }))
    }
}

impl AlertingApi {
    /// One lifecycle step; the service checks the caller may handle alerts on its site.
    async fn step(
        &self,
        p: &Principal,
        id: &str,
        action: Action,
        expected_version: u64,
    ) -> Result<Option<pb::Alert>, Status> {
        Ok(Some(
            self.alerting.act(id, action, p, expected_version).await?,
        ))
    }
}

fn retry(r: &crate::config::RetryConfig) -> pb::RetryPolicy {
    pb::RetryPolicy {
        max_attempts: r.max_attempts,
        initial_backoff: prost_types::Duration::try_from(r.initial_backoff).ok(),
        max_backoff: prost_types::Duration::try_from(r.max_backoff).ok(),
    }
}

/// A URL without its credentials or query (which may hold a token).
fn redact(u: &str) -> String {
    match url::Url::parse(u) {
        Ok(mut url) => {
            let _ = url.set_username("");
            let _ = url.set_password(None);
            url.set_query(None);
            url.to_string()
        }
        Err(_) => String::new(),
    }
}
