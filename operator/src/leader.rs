//! Leader election on a `coordination.k8s.io/v1` Lease, so that of several operator replicas
//! exactly one reconciles.
//!
//! The rules are client-go's: a replica takes the Lease when it is free, or when its record
//! (holder and renew time) has not changed for `lease_duration` as measured by the replica's
//! own monotonic clock (so clock skew between nodes does not matter). Every write carries the
//! `resourceVersion` it read, so two candidates cannot both win: the apiserver refuses the
//! second with 409 Conflict. The leader renews every `renew_interval`; if it cannot renew for
//! `lease_duration` it reports the loss and the process must stop reconciling (it exits, and
//! Kubernetes restarts it as a candidate). On shutdown the leader releases the Lease so a
//! standby takes over at once.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Client;
use kube::api::{Api, PostParams};
use tokio_util::sync::CancellationToken;

use crate::{Error, Result};

/// Holder and renew time of a Lease, and when this replica first saw them.
type ObservedRecord = (Option<String>, Option<MicroTime>, Instant);

pub struct LeaderElector {
    api: Api<Lease>,
    name: String,
    identity: String,
    lease_duration: Duration,
    renew_interval: Duration,
    /// The last record seen of another holder, and when it was first seen (monotonic).
    observed: Mutex<Option<ObservedRecord>>,
}

impl LeaderElector {
    pub fn new(
        client: Client,
        namespace: &str,
        name: &str,
        identity: &str,
        lease_duration: Duration,
        renew_interval: Duration,
    ) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            name: name.to_string(),
            identity: identity.to_string(),
            lease_duration,
            renew_interval,
            observed: Mutex::new(None),
        }
    }

    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// Waits until this replica leads; `false` when `shutdown` came first.
    pub async fn acquire(&self, shutdown: &CancellationToken) -> Result<bool> {
        let mut logged = false;
        loop {
            match self.try_acquire_or_renew().await {
                Ok(true) => {
                    tracing::info!(identity = %self.identity, lease = %self.name, "became leader");
                    return Ok(true);
                }
                Ok(false) => {
                    if !logged {
                        tracing::info!(lease = %self.name, "another replica leads; standing by");
                        logged = true;
                    }
                }
                Err(e) => tracing::warn!(error = %e, "leader election attempt failed"),
            }
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(false),
                _ = tokio::time::sleep(self.renew_interval) => {}
            }
        }
    }

    /// Renews until `shutdown` (then releases, `Ok`) or until leadership is lost (`Err`).
    pub async fn hold(&self, shutdown: &CancellationToken) -> Result<()> {
        let mut last_renewed = Instant::now();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => {
                    self.release().await;
                    return Ok(());
                }
                _ = tokio::time::sleep(self.renew_interval) => {}
            }
            match self.try_acquire_or_renew().await {
                Ok(true) => last_renewed = Instant::now(),
                Ok(false) => {
                    return Err(Error::Lease(format!(
                        "lease {} was taken by another replica",
                        self.name
                    )));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "lease renewal failed");
                    if last_renewed.elapsed() >= self.lease_duration {
                        return Err(Error::Lease(format!(
                            "could not renew lease {} for {}",
                            self.name,
                            humantime::format_duration(self.lease_duration)
                        )));
                    }
                }
            }
        }
    }

    /// One step of the protocol: `true` when this replica holds the Lease afterwards.
    pub async fn try_acquire_or_renew(&self) -> Result<bool> {
        let now = MicroTime(k8s_openapi::jiff::Timestamp::now());
        let secs = i32::try_from(self.lease_duration.as_secs()).unwrap_or(i32::MAX);
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.identity.clone()),
                    lease_duration_seconds: Some(secs),
                    acquire_time: Some(now.clone()),
                    renew_time: Some(now),
                    lease_transitions: Some(0),
                    ..LeaseSpec::default()
                }),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                Err(e) => Err(e.into()),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
        let ours = holder.as_deref() == Some(self.identity.as_str());
        if !ours && holder.is_some() && !self.expired(&spec) {
            return Ok(false);
        }
        let mut new = spec.clone();
        new.holder_identity = Some(self.identity.clone());
        new.lease_duration_seconds = Some(secs);
        new.renew_time = Some(now.clone());
        if !ours {
            new.acquire_time = Some(now);
            new.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        }
        lease.spec = Some(new);
        // `lease` carries the resourceVersion read above: a concurrent writer makes this 409.
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Whether another holder's record has stood still for a whole lease duration.
    fn expired(&self, spec: &LeaseSpec) -> bool {
        let record = (spec.holder_identity.clone(), spec.renew_time.clone());
        let duration = spec
            .lease_duration_seconds
            .and_then(|s| u64::try_from(s).ok())
            .map(Duration::from_secs)
            .unwrap_or(self.lease_duration);
        let Ok(mut observed) = self.observed.lock() else {
            return false;
        };
        match observed.as_ref() {
            Some((h, r, since)) if *h == record.0 && *r == record.1 => since.elapsed() >= duration,
            _ => {
                *observed = Some((record.0, record.1, Instant::now()));
                false
            }
        }
    }

    /// Gives the Lease up (best effort) so a standby takes over without waiting.
    async fn release(&self) {
        let Ok(Some(mut lease)) = self.api.get_opt(&self.name).await else {
            return;
        };
        let Some(spec) = lease.spec.as_mut() else {
            return;
        };
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return;
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(MicroTime(k8s_openapi::jiff::Timestamp::now()));
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => tracing::info!(lease = %self.name, "leadership released"),
            Err(e) => tracing::warn!(error = %e, "releasing the lease failed"),
        }
    }
}
