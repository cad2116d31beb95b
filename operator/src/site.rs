//! The Site reconciler: a site's workloads, its cameras' placement, and its health.
//!
//! Under the finalizer `kordon.io/site-cleanup`:
//! - **apply**: makes sure the site's certificates exist and are current
//!   ([`crate::certificates`]: the operator's per-site CA unless the Site names a `tlsSecret`),
//!   renders the site's objects ([`crate::render`], its AlertRules and accepted Partners
//!   included: it waits until the AlertRule and Partner caches are synced) and server-side applies them with field manager
//!   `kordon-operator` (skipped when nothing changed since the last apply a short while ago;
//!   a Deployment turning from `RollingUpdate` to `Recreate` first loses its defaulted
//!   `rollingUpdate` parameters, which would make the apply invalid),
//!   then writes each of its AlertRules' status (Ready once rendered, or why it was left out:
//!   [`crate::alerting`]); reads camera status from every ingest replica and hands moved
//!   cameras over ([`crate::ingest`]); gives every detection replica its shard of cameras
//!   ([`crate::detection`]; only once the camera cache is synced, as a shard replaces what the
//!   replica holds); writes the Site's status — conditions Ready, Progressing and Degraded
//!   with `observedGeneration`, TLS (which CA the site's services trust), Transcode (how many
//!   replicas run and where their jobs are: [`crate::transcode`]), camera counts, and the
//!   scale subresource's replicas and selector; publishes events when ingest is scaled and
//!   (Warning) when transcode runs fewer replicas than asked.
//!   It comes back after `ingest.status_interval`, or sooner when a certificate falls due.
//! - **cleanup**: deletes every object it made for the site (found by label), explicitly, so
//!   nothing is left even where no garbage collector runs (its certificate Secrets by name);
//!   the storage, alerting and transcode data claims are retained.

use std::collections::{BTreeMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Service};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;
use tracing::Instrument;

use crate::certificates::{self, TlsSource};
use crate::conditions::{FALSE, TRUE, bool_status, condition};
use crate::config::FIELD_MANAGER;
use crate::controller::Context;
use crate::crd::{
    AlertRule, Camera, CameraCounts, Site, SiteDetectionStatus, SiteIngestStatus, SiteStatus,
};
use crate::detection;
use crate::ingest::{self, SiteObservation};
use crate::render::{self, SiteObjects};
use crate::{Error, Result, placement};

pub const CONTROLLER: &str = "site";
pub const FINALIZER: &str = "kordon.io/site-cleanup";
/// Unchanged objects are re-applied at least this often, to undo drift.
const REAPPLY_AFTER: Duration = Duration::from_secs(300);

/// Reconciles one Site (apply or cleanup, under the finalizer).
pub async fn reconcile(site: Arc<Site>, ctx: Arc<Context>) -> Result<Action> {
    let ns = site
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let span = tracing::info_span!(
        "reconcile",
        controller = CONTROLLER,
        namespace = %ns,
        site = %site.name_any(),
        generation = site.metadata.generation.unwrap_or(0),
    );
    async move {
        let _timer = ctx.metrics.start(CONTROLLER);
        let api: Api<Site> = Api::namespaced(ctx.client.clone(), &ns);
        finalizer(&api, FINALIZER, site, |event| async {
            match event {
                Finalizer::Apply(site) => apply(&site, &ctx).await,
                Finalizer::Cleanup(site) => cleanup(&site, &ctx).await,
            }
        })
        .await
        .map_err(|e| Error::Finalizer(Box::new(e)))
    }
    .instrument(span)
    .await
}

/// Counts the failure and retries with a delay.
pub fn error_policy(site: Arc<Site>, error: &Error, ctx: Arc<Context>) -> Action {
    tracing::warn!(site = %site.name_any(), %error, "site reconcile failed");
    ctx.metrics.failure(CONTROLLER, error);
    Action::requeue(Duration::from_secs(10))
}

/// The cameras of a site, from the shared cache, sorted by name.
pub fn cameras_of(ctx: &Context, ns: &str, site: &str) -> Vec<Arc<Camera>> {
    let mut cams: Vec<Arc<Camera>> = ctx
        .cameras
        .state()
        .into_iter()
        .filter(|c| {
            c.spec.site == site
                && c.metadata.namespace.as_deref() == Some(ns)
                && c.metadata.deletion_timestamp.is_none()
        })
        .collect();
    cams.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    cams
}

/// The AlertRules of a site, from the shared cache, sorted by name.
pub fn rules_of(ctx: &Context, ns: &str, site: &str) -> Vec<AlertRule> {
    let mut rules: Vec<AlertRule> = ctx
        .alert_rules
        .state()
        .into_iter()
        .filter(|r| {
            r.spec.site == site
                && r.metadata.namespace.as_deref() == Some(ns)
                && r.metadata.deletion_timestamp.is_none()
        })
        .map(|r| r.as_ref().clone())
        .collect();
    rules.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    rules
}

/// Writes each rule's status now that the site's config (with the accepted ones) is applied.
/// A failure is logged and retried on the next reconcile; it never blocks the Site.
async fn publish_rule_statuses(ctx: &Context, site: &Site, ns: &str, rules: &[AlertRule]) {
    let now = crate::conditions::now();
    for rule in rules {
        let status = crate::alerting::desired_status(rule, Some(site), &now);
        if let Err(error) = crate::alert_rule::write_status(ctx, rule, ns, &status).await {
            tracing::warn!(rule = %rule.name_any(), %error, "alert rule status not written");
        }
    }
}

/// Reads camera credentials from Secrets in `namespace` (see [`crate::credentials`]).
fn resolver(client: kube::Client, namespace: String) -> detection::ResolveCredentials {
    Arc::new(move |r| {
        let (client, namespace) = (client.clone(), namespace.clone());
        Box::pin(async move { crate::credentials::resolve(&client, &namespace, &r).await })
    })
}

async fn apply(site: &Site, ctx: &Context) -> Result<Action> {
    let ns = site
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let name = site.name_any();
    if !ctx.alert_rules_synced() || !ctx.partners_synced() {
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
    let cameras = cameras_of(ctx, &ns, &name);
    let rules = rules_of(ctx, &ns, &name);
    let tls = certificates::ensure(ctx, site, &ns, &name).await?;
    let partners = crate::partner::accepted(ctx, site, &ns, &name).await;
    let auth_keys = match crate::auth::check_keys(&ctx.client, &ns, site).await {
        Ok(keys) => keys,
        Err(error) => {
            // Nothing applied: the pods keep the keys they loaded rather than fail to start.
            publish(
                ctx,
                site,
                EventType::Warning,
                "AuthKeysInvalid",
                "Reconcile",
                error.to_string(),
            )
            .await;
            return Err(error);
        }
    };
    let objects = render::render_with_partners(
        site,
        &ctx.config,
        &tls.mounts,
        &rules,
        &partners,
        &auth_keys,
    )?;
    apply_objects(ctx, &ns, &name, &objects).await?;
    publish_rule_statuses(ctx, site, &ns, &rules).await;

    let replicas = u32::try_from(site.spec.ingest.replicas).unwrap_or(0);
    let observation = ingest::collect(
        ctx.ingest.as_ref(),
        &ctx.config.ingest,
        tls.client.clone(),
        &ns,
        &name,
        replicas,
    )
    .await;
    hand_over(ctx, site, &cameras, &observation, tls.client.clone()).await;
    ctx.observations.set(&ns, &name, observation.clone());

    let detection = if ctx.cameras_synced() {
        let obs = detection::sync(
            ctx.detection.as_ref(),
            &ctx.detection_applied,
            &ctx.config.detection,
            tls.client.clone(),
            &ns,
            site,
            &cameras,
            &resolver(ctx.client.clone(), ns.clone()),
        )
        .await;
        ctx.detection_observations.set(&ns, &name, obs.clone());
        Some(obs)
    } else {
        None
    };

    let previous = site.status.clone().unwrap_or_default();
    let status = desired_status(
        site,
        &cameras,
        &observation,
        detection.as_ref(),
        &tls.source,
        &crate::conditions::now(),
    );
    if previous.ingest.replicas != status.ingest.replicas && site.status.is_some() {
        let moved = moved_fraction(
            &name,
            &cameras,
            previous.ingest.replicas,
            status.ingest.replicas,
        );
        publish(
            ctx,
            site,
            EventType::Normal,
            "Scaled",
            "Scale",
            format!(
                "ingest {} -> {} replicas; {moved} of {} cameras move",
                previous.ingest.replicas,
                status.ingest.replicas,
                cameras.len()
            ),
        )
        .await;
    }
    if let Some(problem) = crate::transcode::problem(&crate::transcode::plan(site, &name)) {
        let said = |st: &SiteStatus| {
            st.conditions
                .iter()
                .find(|c| c.type_ == crate::transcode::CONDITION)
                .map(|c| (c.status.clone(), c.message.clone()))
        };
        // Once per change, not on every reconcile.
        if said(&previous) != said(&status) {
            publish(
                ctx,
                site,
                EventType::Warning,
                "TranscodeReplicasLimited",
                "Reconcile",
                problem,
            )
            .await;
        }
    }
    if site.status.as_ref() != Some(&status) {
        let api: Api<Site> = Api::namespaced(ctx.client.clone(), &ns);
        let patch = Patch::Apply(json!({
            "apiVersion": Site::api_version(&()),
            "kind": Site::kind(&()),
            "status": status,
        }));
        api.patch_status(&name, &PatchParams::apply(FIELD_MANAGER).force(), &patch)
            .await?;
    }
    // Back for the next status read, or to renew a certificate if one falls due first.
    let mut next = ctx.config.ingest.status_interval;
    if let Some(renew) = tls.renew_in(SystemTime::now()) {
        next = next.min(renew.max(Duration::from_secs(1)));
    }
    Ok(Action::requeue(next))
}

/// Applies the rendered objects unless the same ones were applied recently.
async fn apply_objects(ctx: &Context, ns: &str, name: &str, objects: &SiteObjects) -> Result<()> {
    let fingerprint = {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        // Serialisation of the typed objects is deterministic (sorted maps, fixed field order).
        serde_json::to_string(&(
            &objects.config_maps,
            &objects.services,
            &objects.statefulsets,
            &objects.deployments,
            &objects.claims,
        ))
        .map_err(|e| Error::Render {
            what: "fingerprint".into(),
            message: e.to_string(),
        })?
        .hash(&mut h);
        h.finish()
    };
    let key = (ns.to_string(), name.to_string());
    if let Ok(applied) = ctx.applied.lock()
        && let Some((fp, at)) = applied.get(&key)
        && *fp == fingerprint
        && at.elapsed() < REAPPLY_AFTER
    {
        return Ok(());
    }
    let pp = PatchParams::apply(FIELD_MANAGER).force();
    for cm in &objects.config_maps {
        ssa::<ConfigMap>(ctx, ns, cm, &pp).await?;
    }
    for svc in &objects.services {
        match ssa::<Service>(ctx, ns, svc, &pp).await {
            // A Service that was given a cluster IP cannot become headless in place (the
            // detection Service of a site made before detection was sharded): replace it.
            Err(Error::Kube(kube::Error::Api(s))) if s.code == 422 && is_headless(svc) => {
                let svc_name = svc.metadata.name.clone().unwrap_or_default();
                tracing::info!(service = %svc_name, "replacing a Service to make it headless");
                let api: Api<Service> = Api::namespaced(ctx.client.clone(), ns);
                api.delete(&svc_name, &DeleteParams::background()).await?;
                ssa::<Service>(ctx, ns, svc, &pp).await?;
            }
            other => {
                other?;
            }
        }
    }
    for claim in &objects.claims {
        ssa::<PersistentVolumeClaim>(ctx, ns, claim, &pp).await?;
    }
    for sts in &objects.statefulsets {
        ssa::<StatefulSet>(ctx, ns, sts, &pp).await?;
    }
    for d in &objects.deployments {
        match ssa::<Deployment>(ctx, ns, d, &pp).await {
            // A Deployment that rolled (`RollingUpdate`) keeps the `rollingUpdate` parameters the
            // apiserver defaulted, owned by no field manager, which `Recreate` forbids: transcode
            // moving its jobs from the database to SQLite, or made by an earlier version. Drop
            // them with the type in one merge patch, then apply.
            Err(Error::Kube(kube::Error::Api(s)))
                if s.code == 422 && s.message.contains("rollingUpdate") && is_recreate(d) =>
            {
                let d_name = d.metadata.name.clone().unwrap_or_default();
                tracing::info!(deployment = %d_name, "switching a Deployment to Recreate");
                let api: Api<Deployment> = Api::namespaced(ctx.client.clone(), ns);
                let merge = PatchParams {
                    field_manager: Some(FIELD_MANAGER.to_string()),
                    ..PatchParams::default()
                };
                let patch = json!({
                    "spec": { "strategy": { "type": "Recreate", "rollingUpdate": null } },
                });
                api.patch(&d_name, &merge, &Patch::Merge(&patch)).await?;
                ssa::<Deployment>(ctx, ns, d, &pp).await?;
            }
            other => {
                other?;
            }
        }
    }
    // Detection ran as a Deployment before it was sharded: one left over would analyse every
    // camera again beside the StatefulSet.
    let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), ns);
    match deployments
        .delete(
            &render::component_name(name, "detection"),
            &DeleteParams::background(),
        )
        .await
    {
        Ok(_) => tracing::info!("deleted the detection Deployment of an earlier version"),
        Err(kube::Error::Api(s)) if s.code == 404 => {}
        Err(e) => return Err(e.into()),
    }
    // Earlier versions listed each ingest replica's cameras in a ConfigMap of their own.
    let config_maps: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), ns);
    match config_maps
        .delete(
            &render::legacy_ingest_config_name(name),
            &DeleteParams::background(),
        )
        .await
    {
        Ok(_) => tracing::info!("deleted the per-replica ingest ConfigMap of an earlier version"),
        Err(kube::Error::Api(s)) if s.code == 404 => {}
        Err(e) => return Err(e.into()),
    }
    if let Ok(mut applied) = ctx.applied.lock() {
        applied.insert(key, (fingerprint, Instant::now()));
    }
    Ok(())
}

fn is_recreate(d: &Deployment) -> bool {
    d.spec.strategy.as_ref().and_then(|s| s.type_.as_deref()) == Some("Recreate")
}

fn is_headless(svc: &Service) -> bool {
    svc.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) == Some("None")
}

async fn ssa<K>(ctx: &Context, ns: &str, obj: &K, pp: &PatchParams) -> Result<K>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Serialize
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(ctx.client.clone(), ns);
    let name = obj
        .meta()
        .name
        .clone()
        .ok_or(Error::MissingField("metadata.name"))?;
    Ok(api.patch(&name, pp, &Patch::Apply(obj)).await?)
}

/// Tells reachable replicas to record the cameras placed on them, and to let go of moved
/// cameras once their new replica records them. Failures are logged and retried on the next
/// reconcile; they never block the status.
async fn hand_over(
    ctx: &Context,
    site: &Site,
    cameras: &[Arc<Camera>],
    obs: &SiteObservation,
    tls: Option<Arc<kordon_runtime::client::TlsPem>>,
) {
    let Some(ns) = site.namespace() else { return };
    let name = site.name_any();
    let replicas = u32::try_from(site.spec.ingest.replicas).unwrap_or(0);
    let mut wanted = BTreeMap::new();
    let by_name: BTreeMap<String, &Camera> =
        cameras.iter().map(|c| (c.name_any(), c.as_ref())).collect();
    for (cam, c) in &by_name {
        if let Some(o) = placement::replica_for(&name, cam, replicas) {
            wanted.insert(cam.clone(), (o, c.metadata.generation.unwrap_or(0)));
        }
    }
    for (ordinal, plan) in ingest::plan_handover(obs, &wanted) {
        let replica = ingest::Replica {
            address: ctx.config.ingest.address_of(&ns, &name, ordinal),
            tls: tls.clone(),
        };
        let mut specs = Vec::with_capacity(plan.apply.len());
        for camera in plan.apply.iter().filter_map(|c| by_name.get(c)) {
            // Credentials are read from the camera's Secret now and travel only in this call;
            // a camera whose Secret cannot be used waits, and its status says why.
            let credentials = match &camera.spec.credentials {
                None => None,
                Some(r) => match crate::credentials::resolve(&ctx.client, &ns, r).await {
                    Ok(c) => Some(c),
                    Err(problem) => {
                        tracing::warn!(camera = %camera.name_any(), %problem,
                                       "camera not applied: its credentials are unavailable");
                        ctx.credential_problems
                            .set(&ns, &camera.name_any(), Some(problem));
                        continue;
                    }
                },
            };
            ctx.credential_problems.set(&ns, &camera.name_any(), None);
            specs.push(ingest::camera_spec(
                &name,
                camera,
                site.spec.ingest.segment_seconds,
                credentials,
            ));
        }
        if !specs.is_empty() {
            let count = specs.len();
            match ctx.ingest.apply(replica.clone(), specs).await {
                Ok(()) => tracing::info!(ordinal, cameras = count, "cameras applied to ingest"),
                Err(error) => tracing::warn!(ordinal, %error, "ApplyCameras failed"),
            }
        }
        for cam in plan.remove {
            let camera = kordon_proto::common::v1::CameraRef {
                site: name.clone(),
                camera: cam.clone(),
            };
            match ctx.ingest.remove(replica.clone(), camera).await {
                Ok(()) => {
                    tracing::info!(ordinal, camera = %cam, "camera released by its old replica")
                }
                Err(error) => tracing::warn!(ordinal, camera = %cam, %error, "RemoveCamera failed"),
            }
        }
    }
}

/// The status a Site should show; `detection` is `None` when its replicas were not asked.
pub fn desired_status(
    site: &Site,
    cameras: &[Arc<Camera>],
    obs: &SiteObservation,
    detection: Option<&detection::SiteObservation>,
    tls: &TlsSource,
    now: &k8s_openapi::apimachinery::pkg::apis::meta::v1::Time,
) -> SiteStatus {
    let previous_status = site.status.clone().unwrap_or_default();
    let previous = previous_status.conditions.as_slice();
    let generation = site.metadata.generation;
    let name = site.name_any();
    let replicas = u32::try_from(site.spec.ingest.replicas).unwrap_or(0);

    let mut counts = CameraCounts {
        total: cameras.len() as i32,
        ..CameraCounts::default()
    };
    for c in cameras {
        let Some(ordinal) = placement::replica_for(&name, &c.name_any(), replicas) else {
            continue;
        };
        let replica = placement::replica_name(&name, ordinal);
        if c.status.as_ref().and_then(|s| s.replica.as_deref()) == Some(replica.as_str()) {
            counts.assigned += 1;
        }
        match obs.replicas.get(ordinal as usize) {
            Some(r) if r.error.is_none() => {
                use kordon_proto::ingest::v1::CameraState as S;
                match r.cameras.get(&c.name_any()).map(|s| s.state) {
                    Some(s) if s == S::Recording as i32 => counts.recording += 1,
                    Some(s) if s == S::Reconnecting as i32 || s == S::Offline as i32 => {
                        counts.offline += 1
                    }
                    _ => {}
                }
            }
            _ => counts.unknown += 1,
        }
    }

    let reachable = obs.reachable() as i32;
    let unreachable = obs.unreachable();
    let first_error = obs.first_error();
    let mut degraded = Vec::new();
    if let Some(e) = &first_error {
        degraded.push(format!(
            "{} of {} ingest replicas unreachable ({e})",
            unreachable.len(),
            replicas
        ));
    }
    if let Some(e) = detection.and_then(|d| d.first_error()) {
        let unavailable = detection.map(|d| d.unreachable().len()).unwrap_or(0);
        degraded.push(format!(
            "{unavailable} of {} detection replicas unavailable ({e})",
            site.spec.detection.replicas
        ));
    }
    if counts.offline > 0 {
        degraded.push(format!(
            "{} cameras offline or reconnecting",
            counts.offline
        ));
    }
    let transcode = crate::transcode::plan(site, &name);
    if transcode.limited() {
        degraded.push(format!(
            "transcode runs {} of {} replicas (see the Transcode condition)",
            transcode.replicas, transcode.asked
        ));
    }
    if let Some(cap) = site.spec.ingest.cameras_per_replica
        && replicas > 0
        && counts.total > cap.saturating_mul(replicas as i32)
    {
        degraded.push(format!(
            "{} cameras exceed {replicas} replicas x {cap} cameras per replica: scale ingest up",
            counts.total
        ));
    }
    let progressing = counts.assigned < counts.total;
    let all_recording = counts.recording == counts.total;
    let ready = unreachable.is_empty() && !progressing && all_recording && replicas > 0;
    let (ready_reason, ready_message) = if replicas == 0 {
        (
            "NoIngestReplicas",
            "ingest is scaled to 0: nothing records".to_string(),
        )
    } else if !unreachable.is_empty() {
        ("IngestUnreachable", first_error.clone().unwrap_or_default())
    } else if progressing {
        (
            "Placing",
            format!("{} of {} cameras placed", counts.assigned, counts.total),
        )
    } else if !all_recording {
        (
            "NotAllRecording",
            format!("{} of {} cameras recording", counts.recording, counts.total),
        )
    } else {
        (
            "AllRecording",
            format!("{} cameras recording", counts.total),
        )
    };
    let (tls_ok, tls_reason, tls_message) = tls_condition(tls);
    let conditions = vec![
        condition(
            previous,
            "Ready",
            bool_status(ready),
            ready_reason,
            ready_message,
            generation,
            now,
        ),
        condition(
            previous,
            "Progressing",
            bool_status(progressing),
            if progressing { "Placing" } else { "Placed" },
            format!(
                "{} of {} cameras placed on {replicas} ingest replicas",
                counts.assigned, counts.total
            ),
            generation,
            now,
        ),
        condition(
            previous,
            "Degraded",
            if degraded.is_empty() { FALSE } else { TRUE },
            if degraded.is_empty() {
                "Healthy"
            } else {
                "Problems"
            },
            degraded.join("; "),
            generation,
            now,
        ),
        condition(
            previous,
            "TLS",
            bool_status(tls_ok),
            tls_reason,
            tls_message,
            generation,
            now,
        ),
        crate::transcode::site_condition(&transcode, previous, generation, now),
    ];
    SiteStatus {
        conditions,
        observed_generation: generation,
        ingest: SiteIngestStatus {
            replicas: site.spec.ingest.replicas,
            reachable_replicas: reachable,
            selector: render::ingest_pod_selector(&name),
        },
        detection: SiteDetectionStatus {
            replicas: site.spec.detection.replicas,
            reachable_replicas: detection.map(|d| d.reachable() as i32).unwrap_or(0),
        },
        cameras: counts,
    }
}

/// The TLS condition: which CA the site's services trust, in words.
fn tls_condition(tls: &TlsSource) -> (bool, &'static str, String) {
    match tls {
        TlsSource::OperatorCa {
            secret,
            fingerprint,
            renew_at,
        } => {
            let short = fingerprint.get(..16).unwrap_or(fingerprint);
            let renew = k8s_openapi::jiff::Timestamp::try_from(*renew_at)
                .map(|t| format!("; next renewal {}", t.strftime("%Y-%m-%dT%H:%M:%SZ")))
                .unwrap_or_default();
            (
                true,
                "OperatorCA",
                format!(
                    "mTLS with the operator's CA for this site (Secret {secret}, SHA-256 \
                     {short}…); each workload has its own certificate{renew}"
                ),
            )
        }
        TlsSource::SiteSecret {
            secret,
            problem: None,
        } => (
            true,
            "TLSSecret",
            format!("mTLS with the certificates of Secret {secret} (spec.tlsSecret)"),
        ),
        TlsSource::SiteSecret {
            problem: Some(p), ..
        } => (false, "TLSSecretUnusable", p.clone()),
    }
}

/// How many of `cameras` move when ingest goes from `from` to `to` replicas.
pub fn moved_fraction(site: &str, cameras: &[Arc<Camera>], from: i32, to: i32) -> usize {
    let (from, to) = (
        u32::try_from(from).unwrap_or(0),
        u32::try_from(to).unwrap_or(0),
    );
    cameras
        .iter()
        .filter(|c| {
            placement::replica_for(site, &c.name_any(), from)
                != placement::replica_for(site, &c.name_any(), to)
        })
        .count()
}

async fn publish(
    ctx: &Context,
    site: &Site,
    type_: EventType,
    reason: &str,
    action: &str,
    note: String,
) {
    let event = Event {
        type_,
        reason: reason.into(),
        note: Some(note),
        action: action.into(),
        secondary: None,
    };
    // Events are informational: a failure to publish is logged, never fatal.
    if let Err(error) = ctx.recorder.publish(&event, &site.object_ref(&())).await {
        tracing::warn!(%error, reason, "event not published");
    }
}

async fn cleanup(site: &Site, ctx: &Context) -> Result<Action> {
    let ns = site
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let name = site.name_any();
    let selector = render::site_selector(&name);
    let mut deleted = 0usize;
    deleted += delete_labelled::<StatefulSet>(ctx, &ns, &selector).await?;
    deleted += delete_labelled::<Deployment>(ctx, &ns, &selector).await?;
    deleted += delete_labelled::<Service>(ctx, &ns, &selector).await?;
    deleted += delete_labelled::<ConfigMap>(ctx, &ns, &selector).await?;
    // Also after a switch to a tlsSecret: what the operator issued before is still its own.
    deleted += certificates::delete(
        ctx,
        &ns,
        &name,
        site.spec.tls_secret.as_deref(),
        site.spec.partner_link.is_some(),
    )
    .await?;
    ctx.observations.remove(&ns, &name);
    ctx.detection_observations.remove(&ns, &name);
    ctx.detection_applied.forget(&ns, &name, 0);
    if let Ok(mut applied) = ctx.applied.lock() {
        applied.remove(&(ns.clone(), name.clone()));
    }
    publish(ctx, site, EventType::Normal, "Deleted", "Cleanup", {
        let [storage, alerting, transcode] = render::retained_claim_names(&name);
        format!(
            "deleted {deleted} objects; kept PersistentVolumeClaims {storage}, {alerting} \
                 and (where transcode kept its jobs in SQLite) {transcode} (may hold evidence)"
        )
    })
    .await;
    tracing::info!(deleted, "site cleaned up");
    Ok(Action::await_change())
}

/// Deletes the objects of kind `K` carrying `selector`; returns how many.
async fn delete_labelled<K>(ctx: &Context, ns: &str, selector: &str) -> Result<usize>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(ctx.client.clone(), ns);
    let list = api.list(&ListParams::default().labels(selector)).await?;
    let mut seen = HashSet::new();
    for obj in list.items {
        let Some(n) = obj.meta().name.clone() else {
            continue;
        };
        if !seen.insert(n.clone()) {
            continue;
        }
        match api.delete(&n, &DeleteParams::background()).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(seen.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{camera, site};
    use crate::ingest::ReplicaObservation;

    fn now() -> k8s_openapi::apimachinery::pkg::apis::meta::v1::Time {
        k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::from_second(1_800_000_000).unwrap(),
        )
    }

    #[test]
    fn unreachable_ingest_is_reported_not_hidden() {
        let s = site("burgas", 2);
        let cams: Vec<Arc<Camera>> = (0..10)
            .map(|i| Arc::new(camera(&format!("c{i}"), "burgas")))
            .collect();
        let obs = SiteObservation {
            replicas: (0..2)
                .map(|i| ReplicaObservation {
                    name: format!("burgas-ingest-{i}"),
                    error: Some("Unavailable: dns error".into()),
                    cameras: Default::default(),
                })
                .collect(),
        };
        let tls = TlsSource::SiteSecret {
            secret: "burgas-mtls".into(),
            problem: None,
        };
        let st = desired_status(&s, &cams, &obs, None, &tls, &now());
        assert_eq!(st.cameras.total, 10);
        assert_eq!(st.cameras.unknown, 10);
        assert_eq!(st.cameras.recording, 0);
        let ready = st.conditions.iter().find(|c| c.type_ == "Ready").unwrap();
        assert_eq!(ready.status, FALSE);
        assert_eq!(ready.reason, "IngestUnreachable");
        assert!(ready.message.contains("dns error"), "{}", ready.message);
        assert!(
            st.conditions
                .iter()
                .all(|c| c.observed_generation == Some(1))
        );
        assert_eq!(
            st.ingest.selector,
            "kordon.io/site=burgas,app.kubernetes.io/component=ingest"
        );
    }

    #[test]
    fn transcode_held_to_one_replica_without_a_database_is_a_condition_and_degrades_the_site() {
        let mut s = site("burgas", 1);
        s.spec.transcode.replicas = 3;
        let obs = SiteObservation {
            replicas: vec![ReplicaObservation {
                name: "burgas-ingest-0".into(),
                error: None,
                cameras: Default::default(),
            }],
        };
        let tls = TlsSource::SiteSecret {
            secret: "burgas-mtls".into(),
            problem: None,
        };
        let st = desired_status(&s, &[], &obs, None, &tls, &now());
        let t = st
            .conditions
            .iter()
            .find(|c| c.type_ == crate::transcode::CONDITION)
            .unwrap();
        assert_eq!(
            (t.status.as_str(), t.reason.as_str()),
            (FALSE, "ReplicasLimited")
        );
        assert!(t.message.contains("burgas-transcode-data"), "{}", t.message);
        let degraded = st
            .conditions
            .iter()
            .find(|c| c.type_ == "Degraded")
            .unwrap();
        assert_eq!(degraded.status, TRUE);
        assert!(
            degraded.message.contains("transcode runs 1 of 3 replicas"),
            "{}",
            degraded.message
        );

        s.spec.database = Some(crate::crd::DatabaseRef {
            secret_name: "burgas-db".into(),
            key: "url".into(),
        });
        let st = desired_status(&s, &[], &obs, None, &tls, &now());
        let t = st
            .conditions
            .iter()
            .find(|c| c.type_ == crate::transcode::CONDITION)
            .unwrap();
        assert_eq!((t.status.as_str(), t.reason.as_str()), (TRUE, "Database"));
        let degraded = st
            .conditions
            .iter()
            .find(|c| c.type_ == "Degraded")
            .unwrap();
        assert_eq!(degraded.status, FALSE, "{}", degraded.message);
    }

    #[test]
    fn moved_fraction_counts_only_changed_placements() {
        let cams: Vec<Arc<Camera>> = (0..1000)
            .map(|i| Arc::new(camera(&format!("c{i}"), "s")))
            .collect();
        let moved = moved_fraction("s", &cams, 3, 4);
        assert!((200..300).contains(&moved), "{moved}");
        assert_eq!(moved_fraction("s", &cams, 3, 3), 0);
    }
}
