//! Kordon operator: reconciles `Site`, `Camera`, `AlertRule` and `Partner` resources
//! (`kordon.io/v1alpha1`).
//!
//! - [`crd`]: the resources, their schema validation and printer columns; [`crds_yaml`] is what
//!   `kordon crdgen` prints and `crds/` holds.
//! - [`placement`]: rendezvous hashing of cameras onto ingest replicas.
//! - [`render`]: what a Site becomes (StatefulSet, Deployments, Services, ConfigMaps);
//!   [`alerting`]: the alerting service's section of it, from the Site's AlertRules;
//!   [`transcode`]: the transcode service's, and where it keeps its jobs.
//! - [`pki`], [`certificates`]: each site's own CA and the certificate of every workload (mTLS
//!   with no `tlsSecret` needed), kept in Secrets and renewed before they expire.
//! - [`partner`]: which Partners (agreements with other installations) a Site's services are
//!   told of, and the Partner reconciler that reports how each agreement stands.
//! - [`site`], [`camera`], [`alert_rule`]: the reconcilers; [`controller`] wires them with
//!   their shared [`controller::Context`].
//! - [`ingest`]: camera status from ingest over gRPC, and camera handover between replicas.
//! - [`detection`]: each detection replica's shard of cameras (zones, masks, lines) over gRPC,
//!   and how they are analysed.
//! - [`replicas`]: what both gRPC clients share (addresses, channels, observations);
//!   [`convert`]: the stream settings' proto views both share.
//! - [`leader`]: Lease-based leader election, so several replicas can run for HA.
//! - [`config`], [`metrics`], [`error`]: typed configuration, Prometheus metrics, the error type.
//!
//! [`run`] is `kordon operator`.

pub mod alert_rule;
pub mod alerting;
pub mod auth;
pub mod camera;
pub mod certificates;
pub mod conditions;
pub mod config;
pub mod controller;
pub mod convert;
pub mod crd;
pub mod credentials;
pub mod detection;
pub mod error;
pub mod ingest;
pub mod leader;
pub mod metrics;
pub mod partner;
pub mod pki;
pub mod placement;
pub mod render;
pub mod replicas;
pub mod site;
pub mod transcode;

#[cfg(test)]
pub(crate) mod fixtures;
#[cfg(test)]
mod mocked;

use std::sync::Arc;

use kordon_runtime::admin::{self, Readiness};
use kube::CustomResourceExt;
use kube::api::{Api, ListParams};
use tokio_util::sync::CancellationToken;

pub use config::{OperatorConfig, OperatorFlags};
pub use error::{Error, Result};

/// The Site, Camera, AlertRule and Partner CustomResourceDefinitions as one multi-document YAML stream.
pub fn crds_yaml() -> Result<String> {
    let mut out = String::new();
    for crd in [
        crd::Site::crd(),
        crd::Camera::crd(),
        crd::AlertRule::crd(),
        crd::Partner::crd(),
    ] {
        let doc = serde_yaml::to_string(&crd).map_err(|e| Error::Render {
            what: "CustomResourceDefinition".into(),
            message: e.to_string(),
        })?;
        out.push_str("---\n");
        out.push_str(&quote_yaml11_booleans(&doc));
    }
    Ok(out)
}

/// Quotes the plain scalars that YAML 1.1 readers (kubectl, helm: Go's yaml) take for booleans
/// although serde_yaml, a YAML 1.2 writer, leaves them bare — e.g. the property name `y` in a
/// `required` list, which kubectl would send as `true`.
fn quote_yaml11_booleans(doc: &str) -> String {
    const WORDS: &[&str] = &[
        "y", "Y", "n", "N", "yes", "Yes", "YES", "no", "No", "NO", "on", "On", "ON", "off", "Off",
        "OFF",
    ];
    let mut out = String::with_capacity(doc.len());
    for line in doc.lines() {
        let trimmed = line.trim_start();
        let indent = &line[..line.len() - trimmed.len()];
        let fixed = if let Some(v) = trimmed.strip_prefix("- ")
            && WORDS.contains(&v)
        {
            format!("{indent}- '{v}'")
        } else if let Some((k, v)) = trimmed.split_once(": ")
            && WORDS.contains(&v)
        {
            format!("{indent}{k}: '{v}'")
        } else if let Some(k) = trimmed.strip_suffix(':')
            && WORDS.contains(&k)
        {
            format!("{indent}'{k}':")
        } else {
            line.to_string()
        };
        out.push_str(&fixed);
        out.push('\n');
    }
    out
}

/// `kordon operator`: serves the admin port, waits for leadership (when enabled), then
/// reconciles until `shutdown`. Returns an error if leadership is lost, so the process exits
/// and restarts as a candidate.
pub async fn run(config: OperatorConfig, shutdown: CancellationToken) -> Result<()> {
    kordon_runtime::install_crypto_provider();
    let config = Arc::new(config);
    let readiness = Readiness::new();
    readiness.register("kubernetes");
    readiness.register("controllers");
    let admin = admin::bind(config.admin_listen, readiness.clone(), shutdown.clone())
        .await
        .map_err(|e| Error::config("admin_listen", e.to_string()))?;
    let admin = tokio::spawn(admin);

    let client = kube::Client::try_default().await?;
    // Fail early, and clearly, when the CRDs are not installed.
    for (what, res) in [
        (
            "sites.kordon.io",
            probe::<crd::Site>(&client, config.namespace.as_deref()).await,
        ),
        (
            "cameras.kordon.io",
            probe::<crd::Camera>(&client, config.namespace.as_deref()).await,
        ),
        (
            "alertrules.kordon.io",
            probe::<crd::AlertRule>(&client, config.namespace.as_deref()).await,
        ),
        (
            "partners.kordon.io",
            probe::<crd::Partner>(&client, config.namespace.as_deref()).await,
        ),
    ] {
        if let Err(e) = res {
            return Err(Error::config(
                "crds",
                format!(
                    "cannot list {what}: {e}. Install the CRDs first: kordon crdgen | kubectl apply -f -"
                ),
            ));
        }
    }
    readiness.set("kubernetes", true);

    let identity = config.identity();
    let stop = shutdown.child_token();
    // Cancelled once the controllers have stopped: the lease is held (and renewed) while the
    // reconciles under way finish, so the next leader never reconciles beside them.
    let controllers_done = CancellationToken::new();
    let mut holder = None;
    if config.leader_election.enabled {
        let le = &config.leader_election;
        let elector = Arc::new(leader::LeaderElector::new(
            client.clone(),
            &config.lease_namespace(),
            &le.lease_name,
            &identity,
            le.lease_duration,
            le.renew_interval,
        ));
        // A standby is ready: it is healthy and waiting its turn.
        readiness.set("controllers", true);
        if !elector.acquire(&shutdown).await? {
            return Ok(());
        }
        metrics::Metrics::get().leader.set(1);
        let stop = stop.clone();
        let done = controllers_done.clone();
        holder = Some(tokio::spawn(async move {
            let res = elector.hold(&done).await;
            metrics::Metrics::get().leader.set(0);
            // Lost or shut down: either way, stop reconciling.
            stop.cancel();
            res
        }));
    }

    let ingest: Arc<dyn ingest::IngestClient> =
        Arc::new(ingest::GrpcIngest::new(config.ingest.clone()));
    let detection: Arc<dyn detection::DetectionClient> =
        Arc::new(detection::GrpcDetection::new(config.ingest.clone()));
    let alerting: Arc<dyn partner::AlertingClient> =
        Arc::new(partner::GrpcAlerting::new(config.ingest.clone()));
    let ready = readiness.clone();
    controller::run_controllers(
        client,
        config.clone(),
        &identity,
        controller::Clients {
            ingest,
            detection,
            alerting,
        },
        stop,
        move || ready.set("controllers", true),
    )
    .await?;
    readiness.set_all_not_ready();
    tracing::info!("controllers stopped");
    controllers_done.cancel();
    // The lease is released for the next operator to take over at once; should the API server
    // not answer, it expires on its own.
    if let Some(h) = holder {
        match tokio::time::timeout(RELEASE_GRACE, h).await {
            Ok(Ok(res)) => res?,
            Ok(Err(e)) => return Err(Error::Lease(format!("lease task failed: {e}"))),
            Err(_) => tracing::warn!(
                grace_s = RELEASE_GRACE.as_secs(),
                "the lease was not released in time; it expires on its own"
            ),
        }
    }
    shutdown.cancel();
    if tokio::time::timeout(RELEASE_GRACE, admin).await.is_err() {
        tracing::warn!("the admin listener did not stop in time");
    }
    tracing::info!("operator stopped");
    Ok(())
}

/// How long the lease release and the admin listener get at shutdown, each.
const RELEASE_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

async fn probe<K>(client: &kube::Client, namespace: Option<&str>) -> Result<()>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    <K as kube::Resource>::DynamicType: Default,
{
    let api: Api<K> = match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    api.list_metadata(&ListParams::default().limit(1)).await?;
    Ok(())
}
