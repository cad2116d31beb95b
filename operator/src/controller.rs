//! Wiring: the shared [`Context`] and the four controllers.
//!
//! - The Site controller reconciles each Site; it also runs when one of the Site's Cameras
//!   changes (placement and configs depend on the set of cameras), when one of its AlertRules
//!   changes (they are rendered into its config), when its StatefulSet changes, and every
//!   `ingest.status_interval` to read camera status from ingest.
//! - The Camera controller reconciles each Camera; it also runs for every Camera of a Site
//!   whose generation changed (e.g. scaled), was created or is being deleted, and every
//!   `ingest.status_interval` to publish what the Site reconciler collected.
//! - The AlertRule controller reconciles each AlertRule (the status of rules without a Site,
//!   [`crate::alert_rule`]); it also runs for the rules of a Site being deleted.
//! - The Partner controller reconciles each Partner ([`crate::partner`]: whether it is
//!   accepted, and how the agreement stands as the site's alerting sees it); it also runs for
//!   the Partners of a Site that changed, and every `alerting.poll_interval`. The Site
//!   controller runs when one of the Site's Partners changes (they are rendered into its
//!   config).
//!
//! They read each other's objects from the controllers' own caches (reflector stores), never
//! from the apiserver, so a reconcile costs API calls only for what it writes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use kube::api::Api;
use kube::runtime::controller::{self, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use tokio_util::sync::CancellationToken;

use crate::config::{FIELD_MANAGER, OperatorConfig};
use crate::crd::{AlertRule, Camera, Partner, Site};
use crate::detection::DetectionClient;
use crate::ingest::{IngestClient, Observations};
use crate::metrics::Metrics;
use crate::partner::AlertingClient;
use crate::{Result, alert_rule, camera, partner, site};

/// What every reconcile shares.
pub struct Context {
    pub client: Client,
    pub config: Arc<OperatorConfig>,
    pub recorder: Recorder,
    pub metrics: &'static Metrics,
    /// Every Site being watched.
    pub sites: Store<Site>,
    /// Every Camera being watched.
    pub cameras: Store<Camera>,
    /// Every AlertRule being watched.
    pub alert_rules: Store<AlertRule>,
    /// Every Partner being watched.
    pub partners: Store<Partner>,
    /// Each site's alerting, asked how its partner agreements stand.
    pub alerting: Arc<dyn AlertingClient>,
    /// What each site's alerting last answered.
    pub agreements: crate::partner::Agreements,
    pub ingest: Arc<dyn IngestClient>,
    /// The last camera status read from each site's ingest replicas.
    pub observations: Observations,
    pub detection: Arc<dyn DetectionClient>,
    /// What each site's detection replicas last held, and how they analyse it.
    pub detection_observations: crate::detection::Observations,
    /// The shard each detection replica last accepted.
    pub detection_applied: crate::detection::Applied,
    /// Each site's certificates, as last checked.
    pub tls: crate::certificates::TlsCache,
    /// Fingerprint and time of the last apply of each site's objects.
    pub applied: Mutex<HashMap<(String, String), (u64, Instant)>>,
    /// When this operator started reconciling (see [`Context::in_start_up`]).
    pub started: Instant,
    /// Cameras whose credentials Secret could not be used (see [`crate::credentials`]).
    pub credential_problems: crate::credentials::Problems,
}

impl Context {
    pub fn new(
        client: Client,
        config: Arc<OperatorConfig>,
        identity: &str,
        stores: Stores,
        clients: Clients,
    ) -> Self {
        let Stores {
            sites,
            cameras,
            alert_rules,
            partners,
        } = stores;
        let reporter = Reporter {
            controller: FIELD_MANAGER.to_string(),
            instance: Some(identity.to_string()),
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            config,
            metrics: Metrics::get(),
            sites,
            cameras,
            alert_rules,
            partners,
            alerting: clients.alerting,
            agreements: Default::default(),
            ingest: clients.ingest,
            observations: Observations::default(),
            detection: clients.detection,
            detection_observations: Default::default(),
            detection_applied: Default::default(),
            tls: Default::default(),
            applied: Mutex::new(HashMap::new()),
            started: Instant::now(),
            credential_problems: Default::default(),
        }
    }

    /// Whether the operator is in its first two status intervals: then a camera whose site's
    /// ingest has not been asked yet waits for the answer instead of writing a placeholder
    /// status that would be overwritten a moment later (halving the writes of a cold start).
    pub fn in_start_up(&self) -> bool {
        self.started.elapsed() < self.config.ingest.status_interval * 2
    }

    /// Whether the camera cache holds the cluster's cameras (its first list is done): before,
    /// a site's cameras may be missing from it.
    pub fn cameras_synced(&self) -> bool {
        use futures::FutureExt;
        matches!(self.cameras.wait_until_ready().now_or_never(), Some(Ok(())))
    }

    /// Whether the AlertRule cache holds the cluster's rules: before, a site's config would
    /// be rendered without some of them (and its alerting pods rolled twice).
    pub fn alert_rules_synced(&self) -> bool {
        use futures::FutureExt;
        matches!(
            self.alert_rules.wait_until_ready().now_or_never(),
            Some(Ok(()))
        )
    }

    /// Whether the Partner cache holds the cluster's Partners (as for AlertRules).
    pub fn partners_synced(&self) -> bool {
        use futures::FutureExt;
        matches!(
            self.partners.wait_until_ready().now_or_never(),
            Some(Ok(()))
        )
    }
}

/// The controllers' caches every reconcile reads.
pub struct Stores {
    pub sites: Store<Site>,
    pub cameras: Store<Camera>,
    pub alert_rules: Store<AlertRule>,
    pub partners: Store<Partner>,
}

/// The gRPC clients of the site workloads the operator talks to.
pub struct Clients {
    pub ingest: Arc<dyn IngestClient>,
    pub detection: Arc<dyn DetectionClient>,
    pub alerting: Arc<dyn AlertingClient>,
}

fn api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    <K as kube::Resource>::DynamicType: Default,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Runs the controllers until `stop` is cancelled. `ready` is called once their caches hold
/// the cluster's state.
pub async fn run_controllers(
    client: Client,
    config: Arc<OperatorConfig>,
    identity: &str,
    clients: Clients,
    stop: CancellationToken,
    ready: impl FnOnce() + Send,
) -> Result<()> {
    let ns = config.namespace.as_deref();
    let sites_api: Api<Site> = api(&client, ns);
    let cameras_api: Api<Camera> = api(&client, ns);
    let rules_api: Api<AlertRule> = api(&client, ns);
    let partners_api: Api<Partner> = api(&client, ns);
    let sts_api: Api<StatefulSet> = api(&client, ns);

    let site_ctrl = Controller::new(sites_api.clone(), watcher::Config::default());
    let camera_ctrl = Controller::new(cameras_api.clone(), watcher::Config::default());
    let rule_ctrl = Controller::new(rules_api.clone(), watcher::Config::default());
    let partner_ctrl = Controller::new(partners_api.clone(), watcher::Config::default());
    let ctx = Arc::new(Context::new(
        client.clone(),
        config.clone(),
        identity,
        Stores {
            sites: site_ctrl.store(),
            cameras: camera_ctrl.store(),
            alert_rules: rule_ctrl.store(),
            partners: partner_ctrl.store(),
        },
        clients,
    ));

    // Camera -> its Site; AlertRule -> its Site.
    let site_ctrl = site_ctrl
        .owns(
            sts_api,
            watcher::Config::default().labels(&format!(
                "{}={FIELD_MANAGER}",
                crate::render::MANAGED_BY_LABEL
            )),
        )
        .watches(cameras_api, watcher::Config::default(), |cam: Camera| {
            cam.namespace()
                .map(|ns| ObjectRef::<Site>::new(&cam.spec.site).within(&ns))
        })
        .watches(rules_api, watcher::Config::default(), |rule: AlertRule| {
            rule.namespace()
                .map(|ns| ObjectRef::<Site>::new(&rule.spec.site).within(&ns))
        })
        .watches(partners_api, watcher::Config::default(), |p: Partner| {
            p.namespace()
                .map(|ns| ObjectRef::<Site>::new(&p.spec.site).within(&ns))
        })
        .with_config(
            controller::Config::default()
                .debounce(Duration::from_millis(500))
                .concurrency(8),
        );

    // Site -> its Cameras, when the Site's generation (e.g. replicas) or existence changed.
    let camera_store = ctx.cameras.clone();
    let sites_for_rules = sites_api.clone();
    let sites_for_partners = sites_api.clone();
    // (namespace, site) -> (generation, being deleted) last seen.
    type Seen = HashMap<(String, String), (Option<i64>, bool)>;
    let seen: Mutex<Seen> = Mutex::new(HashMap::new());
    let camera_ctrl = camera_ctrl
        .watches(sites_api, watcher::Config::default(), move |s: Site| {
            let Some(ns) = s.namespace() else {
                return Vec::new();
            };
            let key = (ns.clone(), s.name_any());
            let now = (
                s.metadata.generation,
                s.metadata.deletion_timestamp.is_some(),
            );
            let changed = match seen.lock() {
                Ok(mut seen) => seen.insert(key, now) != Some(now),
                Err(_) => true,
            };
            if !changed {
                return Vec::new();
            }
            let name = s.name_any();
            camera_store
                .state()
                .iter()
                .filter(|c| c.spec.site == name && c.metadata.namespace.as_deref() == Some(&ns))
                .map(|c| ObjectRef::from_obj(c.as_ref()))
                .collect::<Vec<_>>()
        })
        .with_config(controller::Config::default().concurrency(32));

    // Site being deleted -> its AlertRules (their status then says so).
    let rule_store = ctx.alert_rules.clone();
    let rule_ctrl = rule_ctrl
        .watches(
            sites_for_rules,
            watcher::Config::default(),
            move |s: Site| alert_rule::rules_of_deleted_site(&rule_store, &s),
        )
        .with_config(controller::Config::default().concurrency(8));

    // Site -> its Partners (their acceptance depends on it).
    let partner_store = ctx.partners.clone();
    let partner_ctrl = partner_ctrl
        .watches(
            sites_for_partners,
            watcher::Config::default(),
            move |s: Site| partner::partners_of_site(&partner_store, &s),
        )
        .with_config(controller::Config::default().concurrency(8));

    let site_store = ctx.sites.clone();
    let cam_store = ctx.cameras.clone();
    let rules_store = ctx.alert_rules.clone();
    let partners_store = ctx.partners.clone();
    let sites_run = site_ctrl
        .graceful_shutdown_on(stop.clone().cancelled_owned())
        .run(site::reconcile, site::error_policy, ctx.clone())
        .for_each(|res| async move {
            if let Err(e) = res {
                tracing::debug!(error = %e, "site controller");
            }
        });
    let cameras_run = camera_ctrl
        .graceful_shutdown_on(stop.clone().cancelled_owned())
        .run(camera::reconcile, camera::error_policy, ctx.clone())
        .for_each(|res| async move {
            if let Err(e) = res {
                tracing::debug!(error = %e, "camera controller");
            }
        });
    let rules_run = rule_ctrl
        .graceful_shutdown_on(stop.clone().cancelled_owned())
        .run(alert_rule::reconcile, alert_rule::error_policy, ctx.clone())
        .for_each(|res| async move {
            if let Err(e) = res {
                tracing::debug!(error = %e, "alert rule controller");
            }
        });
    let partners_run = partner_ctrl
        .graceful_shutdown_on(stop.clone().cancelled_owned())
        .run(partner::reconcile, partner::error_policy, ctx.clone())
        .for_each(|res| async move {
            if let Err(e) = res {
                tracing::debug!(error = %e, "partner controller");
            }
        });
    let readiness = async move {
        let (a, b, c, d) = futures::join!(
            site_store.wait_until_ready(),
            cam_store.wait_until_ready(),
            rules_store.wait_until_ready(),
            partners_store.wait_until_ready()
        );
        if a.is_ok() && b.is_ok() && c.is_ok() && d.is_ok() {
            tracing::info!("caches synced: reconciling");
            ready();
        }
    };
    let all = async {
        futures::join!(sites_run, cameras_run, rules_run, partners_run, readiness);
    };
    // On stop the controllers finish the reconciles under way; one stuck on an unreachable
    // service (its pod stopping too) must not hold the operator past the pod's grace period.
    tokio::select! {
        () = all => {}
        () = async {
            stop.cancelled().await;
            tracing::info!(grace_s = SHUTDOWN_GRACE.as_secs(), "stopping: finishing the reconciles under way");
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        } => {
            tracing::warn!(
                grace_s = SHUTDOWN_GRACE.as_secs(),
                "reconciles still running at shutdown were abandoned; the next operator resumes them"
            );
        }
    }
    Ok(())
}

/// How long the controllers get, after a stop, to finish the reconciles under way.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
