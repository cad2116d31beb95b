//! What the operator's gRPC clients of a site's sharded workloads (ingest, detection) have in
//! common: where a replica answers, the channel and credentials to call it with, how a failed
//! call is put into words, and what the replicas of a site last answered.
//!
//! Guarantees:
//! - one lazily connected channel per replica address and credentials; a renewed certificate
//!   replaces the channel, an unchanged one reuses it;
//! - a plaintext (`http://`) address presents no certificate (tests, development);
//! - every call has a deadline, and its failure is described by the gRPC code and the server's
//!   message only — never a credential or an internal detail of the operator;
//! - an observation tells apart "not asked yet", "could not ask (and why)", "asked, but the
//!   replica does not hold the camera" and the replica's answer, so no status is made up.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use futures::future::BoxFuture;
use kordon_runtime::client::{AuthedChannel, ClientOptions, TlsPem};
use prometheus::IntCounterVec;

use crate::config::IngestClientConfig;

/// Where one replica answers, and the credentials the operator presents there.
#[derive(Debug, Clone)]
pub struct Replica {
    /// `http://` or `https://` URL of its gRPC endpoint.
    pub address: String,
    /// The operator's certificate for the replica's site; `None` means the configured files.
    pub tls: Option<Arc<TlsPem>>,
}

/// The URL of replica `ordinal` of `component` (e.g. `detection`) of `site`, from an address
/// template (see [`crate::config::DEFAULT_INGEST_ADDRESS`] for its placeholders).
pub fn address(
    template: &str,
    component: &str,
    namespace: &str,
    site: &str,
    ordinal: u32,
) -> String {
    template
        .replace(
            "{pod}",
            &crate::placement::pod_name(site, component, ordinal),
        )
        .replace("{service}", &crate::render::component_name(site, component))
        .replace("{namespace}", namespace)
        .replace("{site}", site)
        .replace("{ordinal}", &ordinal.to_string())
}

/// The channels to a kind of replica: one per address and credentials.
pub struct Channels {
    config: IngestClientConfig,
    held: Mutex<HashMap<String, HeldChannel>>,
}

/// A channel and the credentials it was made with.
type HeldChannel = (Option<Arc<TlsPem>>, AuthedChannel);

impl Channels {
    /// `config` gives the deadline and, for sites with a user-supplied `tlsSecret`, the CA and
    /// client certificate files.
    pub fn new(config: IngestClientConfig) -> Self {
        Self {
            config,
            held: Mutex::new(HashMap::new()),
        }
    }

    /// How long one call may take.
    pub fn timeout(&self) -> Duration {
        self.config.timeout
    }

    /// The channel to `replica`, made on first use.
    pub fn get(&self, replica: &Replica) -> Result<AuthedChannel, String> {
        let address = replica.address.as_str();
        // Plaintext addresses (tests, development) present nothing.
        let tls = replica
            .tls
            .clone()
            .filter(|_| address.starts_with("https://"));
        let mut held = self
            .held
            .lock()
            .map_err(|_| "channel cache poisoned".to_string())?;
        if let Some((t, c)) = held.get(address)
            && *t == tls
        {
            return Ok(c.clone());
        }
        let channel = match &tls {
            Some(pem) => {
                kordon_runtime::client::connect_lazy_pem(address, pem, self.config.timeout)
            }
            None => kordon_runtime::client::connect_lazy(&ClientOptions {
                server: address.to_string(),
                token: None,
                ca_file: self.config.ca_file.clone(),
                cert_file: self.config.cert_file.clone(),
                key_file: self.config.key_file.clone(),
                connect_timeout: Some(self.config.timeout),
            }),
        }
        .map_err(|e| e.to_string())?;
        held.insert(address.to_string(), (tls, channel.clone()));
        Ok(channel)
    }
}

/// Why a call failed, in words fit for a condition message (no internal detail beyond the
/// status code and the server's message).
pub fn describe(status: tonic::Status) -> String {
    let msg = status.message();
    let code = format!("{:?}", status.code());
    if msg.is_empty() {
        code
    } else {
        format!("{code}: {msg}")
    }
}

/// Awaits one unary call with a deadline; `rpc` names it in the timeout message.
pub async fn call<T>(
    timeout: Duration,
    rpc: &str,
    fut: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> Result<T, String> {
    tokio::time::timeout(timeout, fut)
        .await
        .map_err(|_| {
            format!(
                "{rpc}: no answer within {}",
                humantime::format_duration(timeout)
            )
        })?
        .map(tonic::Response::into_inner)
        .map_err(describe)
}

/// Asks replicas `0..replicas` concurrently: `ask(ordinal)` gives the replica's cameras by
/// name, or why it could not be asked; `name(ordinal)` is the replica's pod name. Each outcome
/// is counted in `calls` (`ok` or `unreachable`).
pub async fn observe<'a, T>(
    replicas: u32,
    name: impl Fn(u32) -> String,
    ask: impl Fn(u32) -> BoxFuture<'a, Result<BTreeMap<String, T>, String>>,
    calls: &IntCounterVec,
) -> SiteObservation<T> {
    let asked = (0..replicas).map(|ordinal| {
        let fut = ask(ordinal);
        let name = name(ordinal);
        async move {
            let (cameras, error) = match fut.await {
                Ok(cameras) => (cameras, None),
                Err(error) => (BTreeMap::new(), Some(error)),
            };
            let outcome = if error.is_none() { "ok" } else { "unreachable" };
            calls.with_label_values(&[outcome]).inc();
            ReplicaObservation {
                name,
                error,
                cameras,
            }
        }
    });
    SiteObservation {
        replicas: futures::future::join_all(asked).await,
    }
}

/// What one replica answered, per camera a `T`.
#[derive(Debug, Clone)]
pub struct ReplicaObservation<T> {
    pub name: String,
    /// Why the replica could not be asked; `None` when it answered.
    pub error: Option<String>,
    /// Its cameras of the site, by name.
    pub cameras: BTreeMap<String, T>,
}

/// What the replicas of one site answered at one time, by ordinal.
#[derive(Debug, Clone)]
pub struct SiteObservation<T> {
    pub replicas: Vec<ReplicaObservation<T>>,
}

impl<T> Default for SiteObservation<T> {
    fn default() -> Self {
        Self {
            replicas: Vec::new(),
        }
    }
}

impl<T> SiteObservation<T> {
    pub fn reachable(&self) -> usize {
        self.replicas.iter().filter(|r| r.error.is_none()).count()
    }

    /// Names of the replicas that could not be asked.
    pub fn unreachable(&self) -> Vec<&str> {
        self.replicas
            .iter()
            .filter(|r| r.error.is_some())
            .map(|r| r.name.as_str())
            .collect()
    }

    /// The first unreachable replica and why, as `name: reason`.
    pub fn first_error(&self) -> Option<String> {
        self.replicas
            .iter()
            .find_map(|r| r.error.as_ref().map(|e| format!("{}: {e}", r.name)))
    }
}

/// What is known of one camera on the replica it is placed on.
#[derive(Debug, Clone, PartialEq)]
pub enum CameraObservation<T> {
    /// The site's replicas have not been asked yet.
    NotCollected,
    /// The replica could not be asked.
    Unreachable {
        replica: String,
        error: String,
    },
    /// The replica answered but does not hold the camera (yet).
    NotOnReplica {
        replica: String,
    },
    Status(Box<T>),
}

/// The last observation of every site, shared by the Site and Camera reconcilers.
pub struct Observations<T> {
    sites: RwLock<HashMap<SiteKey, Arc<SiteObservation<T>>>>,
}

/// (namespace, site).
type SiteKey = (String, String);

impl<T> Default for Observations<T> {
    fn default() -> Self {
        Self {
            sites: RwLock::new(HashMap::new()),
        }
    }
}

impl<T: Clone> Observations<T> {
    pub fn set(&self, namespace: &str, site: &str, obs: SiteObservation<T>) {
        if let Ok(mut m) = self.sites.write() {
            m.insert((namespace.to_string(), site.to_string()), Arc::new(obs));
        }
    }

    pub fn get(&self, namespace: &str, site: &str) -> Option<Arc<SiteObservation<T>>> {
        self.sites
            .read()
            .ok()
            .and_then(|m| m.get(&(namespace.to_string(), site.to_string())).cloned())
    }

    pub fn remove(&self, namespace: &str, site: &str) {
        if let Ok(mut m) = self.sites.write() {
            m.remove(&(namespace.to_string(), site.to_string()));
        }
    }

    /// The camera as seen by replica `ordinal`.
    pub fn camera(
        &self,
        namespace: &str,
        site: &str,
        ordinal: u32,
        camera: &str,
    ) -> CameraObservation<T> {
        let Some(obs) = self.get(namespace, site) else {
            return CameraObservation::NotCollected;
        };
        let Some(replica) = obs.replicas.get(ordinal as usize) else {
            return CameraObservation::NotCollected;
        };
        if let Some(error) = &replica.error {
            return CameraObservation::Unreachable {
                replica: replica.name.clone(),
                error: error.clone(),
            };
        }
        match replica.cameras.get(camera) {
            Some(s) => CameraObservation::Status(Box::new(s.clone())),
            None => CameraObservation::NotOnReplica {
                replica: replica.name.clone(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_distinguish_unknown_unreachable_and_missing() {
        let o = Observations::<u32>::default();
        assert_eq!(o.camera("ns", "s", 0, "a"), CameraObservation::NotCollected);
        o.set(
            "ns",
            "s",
            SiteObservation {
                replicas: vec![
                    ReplicaObservation {
                        name: "s-ingest-0".into(),
                        error: None,
                        cameras: BTreeMap::from([("a".to_string(), 7)]),
                    },
                    ReplicaObservation {
                        name: "s-ingest-1".into(),
                        error: Some("Unavailable: connection refused".into()),
                        cameras: BTreeMap::new(),
                    },
                ],
            },
        );
        assert_eq!(
            o.camera("ns", "s", 0, "a"),
            CameraObservation::Status(Box::new(7))
        );
        assert!(matches!(
            o.camera("ns", "s", 0, "b"),
            CameraObservation::NotOnReplica { .. }
        ));
        assert!(matches!(
            o.camera("ns", "s", 1, "a"),
            CameraObservation::Unreachable { .. }
        ));
        assert_eq!(o.camera("ns", "s", 2, "a"), CameraObservation::NotCollected);
        let obs = o.get("ns", "s").unwrap();
        assert_eq!(obs.reachable(), 1);
        assert_eq!(obs.unreachable(), vec!["s-ingest-1"]);
        assert_eq!(
            obs.first_error().as_deref(),
            Some("s-ingest-1: Unavailable: connection refused")
        );
    }

    #[test]
    fn addresses_name_the_component_replica_and_service() {
        let t = crate::config::DEFAULT_INGEST_ADDRESS;
        assert_eq!(
            address(t, "detection", "kordon", "burgas", 1),
            "https://burgas-detection-1.burgas-detection.kordon.svc:8470"
        );
    }
}
