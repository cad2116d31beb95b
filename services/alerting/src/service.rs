//! The running alerting service: the store, the engine, the live feed of alert events, the
//! detection sources and one delivery worker per sink.
//!
//! Every change goes the same way ([`Alerting::process`]): the engine proposes changes under
//! its lock, the store writes them with their events and delivery queue entries in one
//! transaction, then the engine applies them, `WatchAlerts` subscribers get the events and the
//! sinks' workers are woken. Events are therefore numbered and published in one order.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use kordon_proto::alerting::v1 as pb;
use kordon_proto::detection::v1 as dpb;
use kordon_proto::time::timestamp_from_micros;
use tokio::sync::{Mutex, broadcast, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::AlertingError;
use crate::config::{AlertingConfig, rule_to_proto};
use crate::engine::{Action, Engine, Route};
use crate::partner::Partners;
use crate::rules::Rule;
use crate::sink::Sink;
use crate::store::{Change, Event, Store, StoredRule};

/// Detections taken from the intake at a time (one transaction).
const BATCH: usize = 512;
/// Detections waiting for the engine before sources wait.
const INTAKE: usize = 8192;
/// How often the engine's clock runs (incident ends, escalation, folds written).
const TICK: Duration = Duration::from_secs(1);

pub struct Alerting {
    config: AlertingConfig,
    store: Store,
    engine: Mutex<Engine>,
    hub: broadcast::Sender<Arc<Event>>,
    sinks: Vec<Arc<Sink>>,
    partners: Arc<Partners>,
    intake: mpsc::Sender<(usize, dpb::Detection)>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
}

/// The principal recorded on rules written from the configuration.
pub const CONFIG_PRINCIPAL: &str = "config";

/// The site whose roles govern an alert at the site `here`: its own `site`, or `here` for a
/// copy received from a partner (`from_partner`): the receiving site's people see and handle
/// it with their roles here, never needing one on the partner's site.
pub fn governing_site<'a>(here: &'a str, site: &'a str, from_partner: bool) -> &'a str {
    if from_partner { here } else { site }
}

fn same_spec(a: &pb::Rule, b: &pb::Rule) -> bool {
    let strip = |r: &pb::Rule| pb::Rule {
        id: String::new(),
        version: 0,
        created_at: None,
        updated_at: None,
        updated_by: String::new(),
        ..r.clone()
    };
    strip(a) == strip(b)
}

impl Alerting {
    /// Opens the store, takes the configured rules, restores ongoing incidents and starts the
    /// clock, the detection sources (`endpoints`, already resolved by the caller; none when the
    /// site runs no detection) and the sinks.
    pub async fn start(
        config: AlertingConfig,
        data_dir: &Path,
        shutdown: CancellationToken,
    ) -> Result<Arc<Alerting>, AlertingError> {
        config.validate()?;
        if config.detection.endpoints.is_empty() {
            // A Site with `detection.replicas: 0`: its own rules raise nothing, but the inbox,
            // the sinks and the partner link (alerts shared by partners) still work.
            tracing::warn!(
                "no detection replicas (alerting.detection.endpoints is empty): this site's rules \
                 raise no alert until detection runs; partner alerts and the inbox still work"
            );
        }
        let storage = match &config.storage.url {
            Some(url) if !config.partners.partners.is_empty() => Some(
                kordon_runtime::client::connect_lazy(&config.storage.options(url))
                    .map_err(AlertingError::runtime)?,
            ),
            _ => None,
        };
        let partners = Arc::new(Partners::new(config.partners.clone(), storage)?);
        // Like every other service: the data directory is made if missing (the SQLite
        // database lives there unless alerting.database_url says otherwise).
        std::fs::create_dir_all(data_dir).map_err(|e| {
            AlertingError::Unavailable(format!("data directory {}: {e}", data_dir.display()))
        })?;
        let store = Store::open(&config.database_url(data_dir)).await?;
        sync_managed_rules(&store, &config).await?;
        let rules = compile(&config, store.rules().await?);
        let mut routes: Vec<Route> = config
            .sinks
            .iter()
            .filter(|s| !s.disabled)
            .map(|s| Route {
                name: s.name.clone(),
                min_severity: s.min_severity.to_proto() as i32,
                include_partner_alerts: s.include_partner_alerts,
                partner: None,
            })
            .collect();
        for link in &partners.links {
            routes.push(Route {
                name: crate::partner::route_name(&link.config.site),
                min_severity: 0,
                include_partner_alerts: false,
                partner: Some(link.clone()),
            });
        }
        let mut engine = Engine::new(rules, routes);
        let longest = config
            .rules
            .iter()
            .filter_map(|r| r.cooldown.max(r.quiet_period))
            .max()
            .unwrap_or_default()
            .max(crate::config::DEFAULT_COOLDOWN);
        engine.restore(
            store
                .recent_alerts(crate::now_us() - longest.as_micros() as i64)
                .await?,
        );
        let kept: Vec<String> = config
            .sinks
            .iter()
            .filter(|s| !s.disabled)
            .map(|s| s.name.clone())
            .chain(
                partners
                    .links
                    .iter()
                    .map(|l| crate::partner::route_name(&l.config.site)),
            )
            .collect();
        let dropped = store.drop_queues_except(&kept).await?;
        if dropped > 0 {
            tracing::warn!(
                dropped,
                "undelivered events of sinks no longer configured (or disabled) were dropped"
            );
        }
        let sinks: Vec<Arc<Sink>> = config
            .sinks
            .iter()
            .filter(|s| !s.disabled)
            .map(|s| Sink::new(s.clone()))
            .chain(
                partners
                    .links
                    .iter()
                    .map(|l| Sink::partner(partners.clone(), l.clone())),
            )
            .collect();
        let (intake, rx) = mpsc::channel(INTAKE);
        let me = Arc::new(Alerting {
            hub: broadcast::channel(config.grpc_stream.max_buffered as usize).0,
            config,
            store,
            engine: Mutex::new(engine),
            sinks,
            partners,
            intake,
            shutdown,
            tasks: TaskTracker::new(),
        });
        tracing::info!(
            rules = me.engine.lock().await.rules().len(),
            sinks = me.sinks.len(),
            database = me.store.backend(),
            detection = ?me.config.detection.endpoints,
            "alerting started"
        );
        for s in &me.sinks {
            me.tasks.spawn(crate::sink::run(
                s.clone(),
                me.store.clone(),
                me.config.replica.clone(),
                me.shutdown.clone(),
            ));
        }
        for link in &me.partners.links {
            me.tasks.spawn(
                me.partners
                    .clone()
                    .run_exchange(link.clone(), me.shutdown.clone()),
            );
            me.tasks.spawn(me.clone().share_ongoing(link.clone()));
        }
        me.tasks.spawn(me.clone().clock());
        me.tasks.spawn(me.clone().consume(rx));
        for (i, url) in me.config.detection.endpoints.iter().enumerate() {
            me.tasks.spawn(crate::source::run(
                i,
                url.clone(),
                me.config.detection.client(),
                me.store.clone(),
                me.intake.clone(),
                me.shutdown.clone(),
            ));
        }
        Ok(me)
    }

    pub fn config(&self) -> &AlertingConfig {
        &self.config
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn sinks(&self) -> &[Arc<Sink>] {
        &self.sinks
    }

    pub fn partners(&self) -> &Arc<Partners> {
        &self.partners
    }

    /// Live events; subscribe before reading the store so nothing falls between.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.hub.subscribe()
    }

    pub fn subscribers(&self) -> usize {
        self.hub.receiver_count()
    }

    /// Proposes changes with the engine, writes them, applies them, publishes their events.
    async fn process<F>(&self, propose: F) -> Result<Vec<Event>, AlertingError>
    where
        F: FnOnce(&mut Engine, i64) -> Vec<Change>,
    {
        let mut engine = self.engine.lock().await;
        let now = crate::now_us();
        let changes = propose(&mut engine, now);
        self.write(&mut engine, changes, now).await
    }

    async fn write(
        &self,
        engine: &mut Engine,
        changes: Vec<Change>,
        now: i64,
    ) -> Result<Vec<Event>, AlertingError> {
        let events = self.store.commit(changes.clone()).await?;
        engine.applied(&changes, now);
        let m = crate::metrics::get();
        let mut woken = std::collections::HashSet::new();
        for (c, e) in changes.iter().zip(&events) {
            let kind = pb::AlertEventKind::try_from(c.kind as i32)
                .unwrap_or_default()
                .as_str_name();
            m.events.with_label_values(&[kind]).inc();
            if c.kind == pb::AlertEventKind::Opened {
                let sev = pb::AlertSeverity::try_from(c.alert.severity)
                    .unwrap_or_default()
                    .as_str_name();
                m.alerts
                    .with_label_values(&[&c.alert.site, &c.alert.rule_name, sev])
                    .inc();
                if let Some(d) = c.alert.detection.as_ref().and_then(|d| d.time.as_ref()) {
                    let frame = kordon_proto::time::micros_from_timestamp(d).unwrap_or(now);
                    m.detection_to_event
                        .with_label_values(&[kind])
                        .observe((now - frame).max(0) as f64 / 1e6);
                }
            }
            woken.extend(c.sinks.iter().cloned());
            let _ = self.hub.send(Arc::new(e.clone()));
        }
        for s in &self.sinks {
            if woken.contains(&s.config.name) {
                s.notify.notify_one();
            }
        }
        Ok(events)
    }

    /// Every second: incidents end, escalate, and folds are written.
    async fn clock(self: Arc<Self>) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut n: u64 = 0;
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            if let Err(e) = self.process(|e, now| e.tick(now)).await {
                tracing::warn!(error = %e, "alert clock could not write; retrying");
            }
            n += 1;
            if n.is_multiple_of(3600) {
                let cutoff = crate::now_us()
                    - i64::try_from(self.config.retention.as_micros()).unwrap_or(i64::MAX);
                match self.store.delete_before(cutoff).await {
                    Ok(0) => {}
                    Ok(k) => tracing::info!(deleted = k, "resolved alerts past retention deleted"),
                    Err(e) => tracing::warn!(error = %e, "retention sweep failed"),
                }
            }
        }
    }

    /// Takes detections from the sources in batches; a batch that cannot be written is kept and
    /// tried again (the sources wait meanwhile).
    async fn consume(self: Arc<Self>, mut rx: mpsc::Receiver<(usize, dpb::Detection)>) {
        let m = crate::metrics::get();
        let mut buf = Vec::with_capacity(BATCH);
        let mut marks: HashMap<usize, i64> = HashMap::new();
        let mut last_mark = tokio::time::Instant::now();
        loop {
            buf.clear();
            let n = tokio::select! {
                _ = self.shutdown.cancelled() => 0,
                n = rx.recv_many(&mut buf, BATCH) => n,
            };
            if n == 0 {
                self.save_marks(&marks).await;
                return;
            }
            let (sources, batch): (Vec<usize>, Vec<dpb::Detection>) = buf.drain(..).unzip();
            let arrived = crate::now_us();
            let arrival = m.detection_arrival.with_label_values::<&str>(&[]);
            for d in &batch {
                if let Some(t) = d
                    .time
                    .as_ref()
                    .and_then(kordon_proto::time::micros_from_timestamp)
                {
                    arrival.observe((arrived - t).max(0) as f64 / 1e6);
                }
            }
            loop {
                let mut engine = self.engine.lock().await;
                let now = crate::now_us();
                let (changes, matched) = engine.detections(&batch, now);
                match self.write(&mut engine, changes, now).await {
                    Ok(_) => {
                        m.detections
                            .with_label_values(&["read"])
                            .inc_by(batch.len() as u64);
                        m.detections
                            .with_label_values(&["matched"])
                            .inc_by(matched as u64);
                        break;
                    }
                    Err(e) => {
                        engine.rollback(&batch);
                        drop(engine);
                        tracing::warn!(error = %e, detections = batch.len(),
                                       "alerts could not be written; retrying the batch");
                        tokio::select! {
                            _ = self.shutdown.cancelled() => return,
                            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        }
                    }
                }
            }
            for (s, d) in sources.iter().zip(&batch) {
                let t = d
                    .time
                    .as_ref()
                    .and_then(kordon_proto::time::micros_from_timestamp)
                    .unwrap_or(0);
                let e = marks.entry(*s).or_insert(0);
                *e = (*e).max(t);
            }
            if last_mark.elapsed() >= Duration::from_secs(2) {
                self.save_marks(&marks).await;
                last_mark = tokio::time::Instant::now();
            }
        }
    }

    async fn save_marks(&self, marks: &HashMap<usize, i64>) {
        for (i, t) in marks {
            let url = &self.config.detection.endpoints[*i];
            if let Err(e) = self.store.set_watermark(url, *t).await {
                tracing::debug!(error = %e, "detection watermark not saved");
            }
        }
    }

    /// Feeds detections as if a source had sent them (tests and benchmarks of the engine).
    pub async fn ingest(&self, d: dpb::Detection) -> Result<(), AlertingError> {
        self.intake
            .send((0, d))
            .await
            .map_err(|_| AlertingError::Unavailable("alerting is stopping".into()))
    }

    // ---- alerts ----

    /// An officer's action, by `who` (who must handle alerts on the alert's site, or on this
    /// installation's site for a partner's alert), attributed to their subject;
    /// `expected_version` 0 skips the check.
    pub async fn act(
        &self,
        alert_id: &str,
        action: Action,
        who: &kordon_runtime::auth::Principal,
        expected_version: u64,
    ) -> Result<pb::Alert, AlertingError> {
        let here = self.partners.here().to_string();
        self.step(
            alert_id,
            action,
            &who.subject,
            expected_version,
            |current| {
                kordon_runtime::auth::authorize(
                    who,
                    governing_site(&here, &current.site, current.origin.is_some()),
                    kordon_runtime::auth::Permission::HandleAlerts,
                )?;
                Ok(())
            },
        )
        .await
        .map(|(a, _)| a)
    }

    /// A lifecycle step on an alert after `check` allowed it; whether it changed anything.
    async fn step(
        &self,
        alert_id: &str,
        action: Action,
        who: &str,
        expected_version: u64,
        check: impl FnOnce(&pb::Alert) -> Result<(), AlertingError>,
    ) -> Result<(pb::Alert, bool), AlertingError> {
        let mut engine = self.engine.lock().await;
        let (current, key) = match engine.incident_of(alert_id) {
            Some(found) => found,
            None => match self.store.alert(alert_id).await? {
                Some(a) => (a, String::new()),
                None => return Err(AlertingError::NotFound(format!("no alert {alert_id}"))),
            },
        };
        check(&current)?;
        if expected_version != 0 && expected_version != current.version {
            return Err(AlertingError::Aborted(format!(
                "alert {alert_id} is at version {}, not {expected_version}: read it again",
                current.version
            )));
        }
        let now = crate::now_us();
        let Some((after, kind)) = crate::engine::act(&current, &action, who, now)? else {
            return Ok((current, false));
        };
        let change = engine.change_for(after.clone(), key, kind, now);
        self.write(&mut engine, vec![change], now).await?;
        tracing::info!(
            alert = alert_id,
            by = who,
            event = kind.as_str_name(),
            "alert changed"
        );
        Ok((after, true))
    }

    // ---- partners ----

    /// Each time the agreement with `link`'s partner comes into force, queues the unresolved
    /// alerts it covers (their latest event): an incident going on when the partners agreed
    /// reaches the partner too. The partner deduplicates what it already has.
    async fn share_ongoing(self: Arc<Self>, link: Arc<crate::partner::Link>) {
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = link.came_into_force.notified() => {}
            }
            match self.ongoing_covered(&link).await {
                Ok(ids) if ids.is_empty() => {}
                Ok(ids) => {
                    let sink = crate::partner::route_name(&link.config.site);
                    match self.store.queue_latest(&sink, &ids).await {
                        Ok(n) => {
                            tracing::info!(partner = %link.config.site, queued = n,
                                           "ongoing alerts the agreement covers queued for the partner");
                            if let Some(s) = self.sinks.iter().find(|s| s.config.name == sink) {
                                s.notify.notify_one();
                            }
                        }
                        Err(e) => tracing::warn!(partner = %link.config.site, error = %e,
                                                 "ongoing alerts not queued for the partner"),
                    }
                }
                Err(e) => tracing::warn!(partner = %link.config.site, error = %e,
                                         "ongoing alerts not read for the partner"),
            }
        }
    }

    async fn ongoing_covered(
        &self,
        link: &crate::partner::Link,
    ) -> Result<Vec<String>, AlertingError> {
        let filter = crate::store::AlertFilter {
            states: vec![
                pb::AlertState::Open as i32,
                pb::AlertState::Acknowledged as i32,
                pb::AlertState::OnHold as i32,
            ],
            partner: Some(false),
            ..Default::default()
        };
        let mut ids = Vec::new();
        let mut after = None;
        loop {
            let page = self
                .store
                .list_alerts(&filter, after.clone(), crate::store::MAX_PAGE)
                .await?;
            let Some(last) = page.last() else { break };
            after = Some((crate::store::micros(&last.opened_at), last.id.clone()));
            let full = page.len() as u32 == crate::store::MAX_PAGE;
            for a in page {
                let camera = a.camera.clone().unwrap_or_default();
                if link
                    .config
                    .shares
                    .covers_alert(&camera.camera, &a.rule_name, a.severity)
                {
                    ids.push(a.id);
                }
            }
            if !full {
                break;
            }
        }
        Ok(ids)
    }

    /// The partner calling, if it may exchange alerts: its agreement is accepted.
    fn partner_link(
        &self,
        who: &kordon_runtime::auth::Principal,
        from_site: &str,
    ) -> Result<Arc<crate::partner::Link>, AlertingError> {
        let caller = crate::partner::caller(who, from_site)?;
        let link = self.partners.link(caller).ok_or_else(|| {
            AlertingError::FailedPrecondition(format!(
                "{} declares no agreement with {caller}",
                self.partners.here()
            ))
        })?;
        if !link.accepted() {
            return Err(AlertingError::FailedPrecondition(format!(
                "the agreement between {} and {caller} is not accepted: {}",
                self.partners.here(),
                link.state().reason
            )));
        }
        Ok(link.clone())
    }

    /// A partner's alert (new or a newer version): stored as this site's copy, with its
    /// origin; logged (source = partner) before it is stored.
    pub async fn receive_partner_alert(
        &self,
        who: &kordon_runtime::auth::Principal,
        from_site: &str,
        alert: pb::Alert,
    ) -> Result<(pb::Alert, pb::ReceiveOutcome), AlertingError> {
        let m = crate::metrics::get();
        let link = self.partner_link(who, from_site)?;
        let terms = &link.config.receives;
        let camera = alert.camera.clone().unwrap_or_default();
        if alert.id.is_empty() {
            return Err(AlertingError::Invalid("alert.id: required".into()));
        }
        if alert.site != from_site || camera.site != from_site {
            return Err(AlertingError::Invalid(format!(
                "alert.site and alert.camera.site must be {from_site}, the sending site"
            )));
        }
        if !terms.alerts || !terms.covers_alert(&camera.camera, &alert.rule_name, alert.severity) {
            m.partner_received
                .with_label_values(&[from_site, "refused"])
                .inc();
            return Err(AlertingError::PermissionDenied(format!(
                "alert {} (camera {}, rule {}) is not covered by the agreement with {from_site}",
                alert.id, camera.camera, alert.rule_name
            )));
        }
        // Whatever the sender sends, keep only what this side agreed to receive.
        let incoming = crate::partner::shared_copy(&alert, terms);
        let mut engine = self.engine.lock().await;
        let existing = self.store.alert(&alert.id).await?;
        let now = crate::now_us();
        let origin = pb::PartnerOrigin {
            site: from_site.to_string(),
            alert_id: alert.id.clone(),
            state: alert.state,
            version: alert.version,
            received_at: Some(timestamp_from_micros(now)),
            footage: if terms.footage.requests {
                pb::FootageSharing::OnRequest
            } else {
                pb::FootageSharing::None
            } as i32,
        };
        let (copy, kind, outcome, log) = match existing {
            None => {
                let mut c = incoming;
                c.origin = Some(origin);
                c.version = 1;
                (
                    c,
                    pb::AlertEventKind::Opened,
                    pb::ReceiveOutcome::Created,
                    true,
                )
            }
            Some(c) if c.origin.is_none() => {
                return Err(AlertingError::AlreadyExists(format!(
                    "alert id {} is taken by an alert of this site",
                    alert.id
                )));
            }
            Some(c)
                if c.origin
                    .as_ref()
                    .is_some_and(|o| o.version >= alert.version) =>
            {
                m.partner_received
                    .with_label_values(&[from_site, "duplicate"])
                    .inc();
                return Ok((c, pb::ReceiveOutcome::Duplicate));
            }
            Some(c) => {
                let mut n = incoming;
                let advanced = crate::partner::rank(alert.state) > crate::partner::rank(c.state);
                if !advanced {
                    // This side's steps are as far along or further: keep them.
                    n.state = c.state;
                    n.acknowledged_by = c.acknowledged_by.clone();
                    n.acknowledged_at = c.acknowledged_at;
                    n.acknowledge_note = c.acknowledge_note.clone();
                    n.held_by = c.held_by.clone();
                    n.held_at = c.held_at;
                    n.hold_note = c.hold_note.clone();
                    n.resolved_by = c.resolved_by.clone();
                    n.resolved_at = c.resolved_at;
                    n.resolution = c.resolution;
                    n.resolve_note = c.resolve_note.clone();
                }
                let state_changed = c.origin.as_ref().is_some_and(|o| o.state != alert.state);
                n.origin = Some(origin);
                n.version = c.version + 1;
                (
                    n,
                    pb::AlertEventKind::Updated,
                    pb::ReceiveOutcome::Updated,
                    state_changed,
                )
            }
        };
        if log {
            self.partners
                .log(&copy, from_site, true)
                .await
                .map_err(AlertingError::Unavailable)?;
        }
        let change = engine.change_for(copy.clone(), String::new(), kind, now);
        self.write(&mut engine, vec![change], now).await?;
        drop(engine);
        self.partners.note_received(&link);
        m.partner_received
            .with_label_values(&[
                from_site,
                if outcome == pb::ReceiveOutcome::Created {
                    "created"
                } else {
                    "updated"
                },
            ])
            .inc();
        tracing::info!(partner = from_site, alert = %copy.id, outcome = outcome.as_str_name(),
                       "partner alert received");
        Ok((copy, outcome))
    }

    /// A partner officer's step on this site's alert (joint response).
    pub async fn receive_partner_action(
        &self,
        who: &kordon_runtime::auth::Principal,
        r: pb::ReceivePartnerActionRequest,
    ) -> Result<(pb::Alert, bool), AlertingError> {
        let link = self.partner_link(who, &r.from_site)?;
        let action = match pb::PartnerStep::try_from(r.step).unwrap_or_default() {
            pb::PartnerStep::Acknowledge => Action::Acknowledge { note: r.note },
            pb::PartnerStep::Hold => Action::Hold { note: r.note },
            pb::PartnerStep::Resolve => Action::Resolve {
                resolution: r.resolution,
                note: r.note,
            },
            pb::PartnerStep::Unspecified => {
                return Err(AlertingError::Invalid("step: required".into()));
            }
        };
        let by = format!(
            "{}/{}",
            r.from_site,
            if r.by.is_empty() { "unknown" } else { &r.by }
        );
        let here = self.partners.here().to_string();
        self.step(&r.alert_id, action, &by, 0, |a| {
            let camera = a.camera.clone().unwrap_or_default();
            if a.origin.is_some()
                || a.site != here
                || !link
                    .config
                    .shares
                    .covers_alert(&camera.camera, &a.rule_name, a.severity)
            {
                // Not one this site shared with the caller: as if it did not exist.
                return Err(AlertingError::NotFound(format!(
                    "no alert {} shared with {}",
                    a.id, link.config.site
                )));
            }
            Ok(())
        })
        .await
    }

    /// An alert as it is now (the engine's copy holds folds not yet written).
    pub async fn alert(&self, id: &str) -> Result<pb::Alert, AlertingError> {
        if let Some((a, _)) = self.engine.lock().await.incident_of(id) {
            return Ok(a);
        }
        self.store
            .alert(id)
            .await?
            .ok_or_else(|| AlertingError::NotFound(format!("no alert {id}")))
    }

    // ---- rules ----

    pub async fn rules(&self) -> Result<Vec<StoredRule>, AlertingError> {
        self.store.rules().await
    }

    async fn reload_rules(&self, engine: &mut Engine) -> Result<(), AlertingError> {
        engine.set_rules(compile(&self.config, self.store.rules().await?));
        Ok(())
    }

    fn check_sinks(&self, r: &pb::Rule) -> Result<(), AlertingError> {
        for s in &r.sinks {
            if s != crate::GRPC_SINK && !self.config.sinks.iter().any(|k| &k.name == s) {
                return Err(AlertingError::FailedPrecondition(format!(
                    "rule.sinks: no sink is named {s}"
                )));
            }
        }
        Ok(())
    }

    /// Creates a rule through the API.
    pub async fn create_rule(&self, mut r: pb::Rule, who: &str) -> Result<pb::Rule, AlertingError> {
        let now = timestamp_from_micros(crate::now_us());
        r.id = uuid::Uuid::now_v7().to_string();
        r.version = 1;
        r.created_at = Some(now);
        r.updated_at = Some(now);
        r.updated_by = who.to_string();
        Rule::from_proto(r.clone(), self.config.time_zone(&r.site))?;
        self.check_sinks(&r)?;
        let mut engine = self.engine.lock().await;
        self.store.put_rule(&r, false).await?;
        self.reload_rules(&mut engine).await?;
        Ok(r)
    }

    /// Replaces a rule made through the API; configured rules are changed in their resource.
    pub async fn update_rule(
        &self,
        mut r: pb::Rule,
        expected_version: u64,
        who: &str,
    ) -> Result<pb::Rule, AlertingError> {
        let mut engine = self.engine.lock().await;
        let old = self.editable(&r.id, expected_version).await?;
        r.version = old.version + 1;
        r.created_at = old.created_at;
        r.updated_at = Some(timestamp_from_micros(crate::now_us()));
        r.updated_by = who.to_string();
        Rule::from_proto(r.clone(), self.config.time_zone(&r.site))?;
        self.check_sinks(&r)?;
        self.store.put_rule(&r, false).await?;
        self.reload_rules(&mut engine).await?;
        Ok(r)
    }

    pub async fn delete_rule(&self, id: &str, expected_version: u64) -> Result<(), AlertingError> {
        let mut engine = self.engine.lock().await;
        self.editable(id, expected_version).await?;
        self.store.delete_rule(id).await?;
        self.reload_rules(&mut engine).await
    }

    async fn editable(&self, id: &str, expected_version: u64) -> Result<pb::Rule, AlertingError> {
        let rules = self.store.rules().await?;
        let Some(s) = rules.into_iter().find(|s| s.rule.id == id) else {
            return Err(AlertingError::NotFound(format!("no rule {id}")));
        };
        if s.managed {
            return Err(AlertingError::FailedPrecondition(format!(
                "rule {} is managed by its AlertRule resource (or the alerting.rules config): \
                 change it there",
                s.rule.name
            )));
        }
        if expected_version != 0 && expected_version != s.rule.version {
            return Err(AlertingError::Aborted(format!(
                "rule {} is at version {}, not {expected_version}",
                s.rule.name, s.rule.version
            )));
        }
        Ok(s.rule)
    }

    /// Waits for the workers to stop (after shutdown) and closes the store.
    pub async fn stopped(&self) {
        self.shutdown.cancelled().await;
        self.tasks.close();
        self.tasks.wait().await;
        self.store.close().await;
    }
}

/// Writes the configured rules as managed rules: new ones get an id, changed ones a new
/// version, removed ones are deleted; a rule made through the API with a configured rule's name
/// is taken over by the configuration.
async fn sync_managed_rules(store: &Store, config: &AlertingConfig) -> Result<(), AlertingError> {
    let stored = store.rules().await?;
    let now = Some(timestamp_from_micros(crate::now_us()));
    for y in &config.rules {
        let mut want = rule_to_proto(y);
        match stored
            .iter()
            .find(|s| s.rule.site == y.site && s.rule.name == y.name)
        {
            Some(s) if s.managed && same_spec(&s.rule, &want) => continue,
            Some(s) => {
                if !s.managed {
                    tracing::warn!(rule = %y.name, site = %y.site,
                                   "a rule made through the API is now managed by the configuration");
                }
                want.id = s.rule.id.clone();
                want.version = s.rule.version + 1;
                want.created_at = s.rule.created_at;
            }
            None => {
                want.id = uuid::Uuid::now_v7().to_string();
                want.version = 1;
                want.created_at = now;
            }
        }
        want.updated_at = now;
        want.updated_by = CONFIG_PRINCIPAL.to_string();
        store.put_rule(&want, true).await?;
    }
    for s in stored.iter().filter(|s| s.managed) {
        if !config
            .rules
            .iter()
            .any(|y| y.site == s.rule.site && y.name == s.rule.name)
        {
            tracing::info!(rule = %s.rule.name, site = %s.rule.site, "rule removed from the configuration");
            store.delete_rule(&s.rule.id).await?;
        }
    }
    Ok(())
}

/// The stored rules the engine runs; one that no longer checks (e.g. a time zone gone) is left
/// out with an error in the log.
fn compile(config: &AlertingConfig, stored: Vec<StoredRule>) -> Vec<Arc<Rule>> {
    stored
        .into_iter()
        .filter_map(|s| {
            let name = s.rule.name.clone();
            let tz = config.time_zone(&s.rule.site).to_string();
            match Rule::from_proto(s.rule, &tz) {
                Ok(r) => Some(Arc::new(r)),
                Err(e) => {
                    tracing::error!(rule = %name, error = %e, "rule left out: it no longer checks");
                    None
                }
            }
        })
        .collect()
}
