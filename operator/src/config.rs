//! The operator's configuration: typed, validated before anything starts.
//!
//! ```yaml
//! namespace: kordon            # KORDON_NAMESPACE, --namespace; unset: every namespace
//! image: kordon/kordon:0.1.0   # image of the site workloads
//! admin_listen: 0.0.0.0:8471   # /live, /ready, /metrics
//! leader_election: { enabled: true, lease_name: kordon-operator, lease_duration: 15s }
//! ingest: { address: "https://{pod}.{service}.{namespace}.svc:8470", status_interval: 15s }
//! detection: { address: "https://{pod}.{service}.{namespace}.svc:8470" }
//! alerting: { address: "https://{service}.{namespace}.svc:8470", poll_interval: 30s }
//! log: { format: json, filter: info }
//! ```
//!
//! A bad value is reported with the key that holds it, and the process exits before it
//! touches the cluster.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use kordon_runtime::RuntimeError;
use kordon_runtime::config::LogConfig;
use serde::{Deserialize, Serialize};

/// Image of the site workloads when none is configured: this binary's own release.
pub const DEFAULT_IMAGE: &str = concat!("kordon/kordon:", env!("CARGO_PKG_VERSION"));
/// Default admin listener of the operator.
pub const DEFAULT_ADMIN_LISTEN: &str = "0.0.0.0:8471";
/// Default name of the leader-election Lease.
pub const DEFAULT_LEASE_NAME: &str = "kordon-operator";
/// How long a leader's Lease is valid without renewal.
pub const DEFAULT_LEASE_DURATION: Duration = Duration::from_secs(15);
/// How often the leader renews (well inside the lease duration).
pub const DEFAULT_RENEW_INTERVAL: Duration = Duration::from_secs(5);
/// Where ingest replicas answer gRPC. Placeholders: `{pod}` (e.g. `burgas-ingest-2`),
/// `{service}` (the headless Service, `burgas-ingest`), `{namespace}`, `{site}`, `{ordinal}`.
/// Every site's services serve mTLS ([`crate::certificates`]); an `http://` template is for
/// tests and development against plaintext servers.
pub const DEFAULT_INGEST_ADDRESS: &str = "https://{pod}.{service}.{namespace}.svc:8470";
/// Where detection replicas answer gRPC (the same placeholders).
pub const DEFAULT_DETECTION_ADDRESS: &str = DEFAULT_INGEST_ADDRESS;
/// Where a site's alerting service answers gRPC (`{service}` is e.g. `burgas-alerting`).
pub const DEFAULT_ALERTING_ADDRESS: &str = "https://{service}.{namespace}.svc:8470";
/// How often each site's alerting is asked how its partner agreements stand.
pub const DEFAULT_AGREEMENT_POLL: Duration = Duration::from_secs(30);
/// How often camera status is read from ingest (and detection's shards checked).
pub const DEFAULT_STATUS_INTERVAL: Duration = Duration::from_secs(15);
/// How long one status call to a replica may take.
pub const DEFAULT_INGEST_TIMEOUT: Duration = Duration::from_secs(3);
/// The field manager of every server-side apply.
pub const FIELD_MANAGER: &str = "kordon-operator";

/// Keys of [`OperatorConfig`]: `KORDON_<KEY>` variables for these are configuration.
pub const TOP_LEVEL_KEYS: &[&str] = &[
    "namespace",
    "image",
    "image_pull_policy",
    "admin_listen",
    "leader_election",
    "ingest",
    "detection",
    "alerting",
    "log",
];

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OperatorConfig {
    /// The namespace whose Sites and Cameras are reconciled; unset means every namespace.
    #[serde(default)]
    pub namespace: Option<String>,
    /// Image of the site workloads (ingest, storage, transcode, detection, alerting).
    #[serde(default = "default_image")]
    pub image: String,
    /// `Always`, `IfNotPresent` or `Never`; unset leaves Kubernetes' default.
    #[serde(default)]
    pub image_pull_policy: Option<String>,
    #[serde(default = "default_admin_listen")]
    pub admin_listen: SocketAddr,
    #[serde(default)]
    pub leader_election: LeaderElectionConfig,
    #[serde(default)]
    pub ingest: IngestClientConfig,
    #[serde(default)]
    pub detection: DetectionClientConfig,
    #[serde(default)]
    pub alerting: AlertingClientConfig,
    #[serde(default)]
    pub log: LogConfig,
}

impl Default for OperatorConfig {
    fn default() -> Self {
        Self {
            namespace: None,
            image: default_image(),
            image_pull_policy: None,
            admin_listen: default_admin_listen(),
            leader_election: LeaderElectionConfig::default(),
            ingest: IngestClientConfig::default(),
            detection: DetectionClientConfig::default(),
            alerting: AlertingClientConfig::default(),
            log: LogConfig::default(),
        }
    }
}

fn default_image() -> String {
    DEFAULT_IMAGE.to_string()
}

fn default_admin_listen() -> SocketAddr {
    DEFAULT_ADMIN_LISTEN
        .parse()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 8471)))
}

/// Only one operator replica reconciles at a time; the others wait on a Lease.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LeaderElectionConfig {
    pub enabled: bool,
    pub lease_name: String,
    /// Namespace of the Lease; unset means `namespace`, else the pod's own namespace
    /// (`POD_NAMESPACE`), else `default`.
    pub lease_namespace: Option<String>,
    #[serde(with = "humantime_serde")]
    pub lease_duration: Duration,
    #[serde(with = "humantime_serde")]
    pub renew_interval: Duration,
    /// This replica's identity in the Lease; unset means `POD_NAME`, else the host name.
    pub identity: Option<String>,
}

impl Default for LeaderElectionConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            lease_name: DEFAULT_LEASE_NAME.to_string(),
            lease_namespace: None,
            lease_duration: DEFAULT_LEASE_DURATION,
            renew_interval: DEFAULT_RENEW_INTERVAL,
            identity: None,
        }
    }
}

/// How the operator reads camera status from ingest replicas.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct IngestClientConfig {
    /// URL template of a replica's gRPC endpoint (see [`DEFAULT_INGEST_ADDRESS`]).
    pub address: String,
    #[serde(with = "humantime_serde")]
    pub status_interval: Duration,
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// CA of the ingest servers' certificates, for sites with a user-supplied `tlsSecret`
    /// (for the others the operator holds the site CA and presents its own certificate).
    pub ca_file: Option<PathBuf>,
    /// The operator's client certificate for sites with a user-supplied `tlsSecret`: signed by
    /// their CA, naming `spiffe://kordon.io/ns/<namespace>/site/<site>/operator` per site.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
}

impl Default for IngestClientConfig {
    fn default() -> Self {
        Self {
            address: DEFAULT_INGEST_ADDRESS.to_string(),
            status_interval: DEFAULT_STATUS_INTERVAL,
            timeout: DEFAULT_INGEST_TIMEOUT,
            ca_file: None,
            cert_file: None,
            key_file: None,
        }
    }
}

impl IngestClientConfig {
    /// The gRPC URL of one replica.
    pub fn address_of(&self, namespace: &str, site: &str, ordinal: u32) -> String {
        crate::replicas::address(&self.address, "ingest", namespace, site, ordinal)
    }
}

/// How the operator reaches detection replicas. Deadline and, for sites with a user-supplied
/// `tlsSecret`, the CA and client certificate are `ingest`'s (the same site identity).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DetectionClientConfig {
    /// URL template of a replica's gRPC endpoint, with the placeholders of
    /// [`DEFAULT_INGEST_ADDRESS`] (`{pod}` is e.g. `burgas-detection-1`).
    pub address: String,
}

impl Default for DetectionClientConfig {
    fn default() -> Self {
        Self {
            address: DEFAULT_DETECTION_ADDRESS.to_string(),
        }
    }
}

impl DetectionClientConfig {
    /// The gRPC URL of one replica.
    pub fn address_of(&self, namespace: &str, site: &str, ordinal: u32) -> String {
        crate::replicas::address(&self.address, "detection", namespace, site, ordinal)
    }
}

/// How the operator asks each site's alerting about its partner agreements (Partner status).
/// Deadline and, for sites with a user-supplied `tlsSecret`, the CA and client certificate are
/// `ingest`'s.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AlertingClientConfig {
    /// URL template of the alerting Service, with the placeholders of
    /// [`DEFAULT_INGEST_ADDRESS`] (`{service}` is e.g. `burgas-alerting`; `{pod}` and
    /// `{ordinal}` name its one replica, ordinal 0).
    pub address: String,
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
}

impl Default for AlertingClientConfig {
    fn default() -> Self {
        Self {
            address: DEFAULT_ALERTING_ADDRESS.to_string(),
            poll_interval: DEFAULT_AGREEMENT_POLL,
        }
    }
}

impl AlertingClientConfig {
    /// The gRPC URL of a site's alerting.
    pub fn address_of(&self, namespace: &str, site: &str) -> String {
        crate::replicas::address(&self.address, "alerting", namespace, site, 0)
    }
}

/// Command-line values that override the file and the environment.
#[derive(Debug, Clone, Default, Serialize, clap::Args)]
pub struct OperatorFlags {
    /// YAML configuration file.
    #[arg(long, value_name = "FILE")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Reconcile only this namespace (default: every namespace).
    #[arg(long, value_name = "NAMESPACE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Image of the site workloads.
    #[arg(long, value_name = "IMAGE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Admin listener: /live, /ready, /metrics.
    #[arg(long, value_name = "ADDR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_listen: Option<SocketAddr>,
}

impl OperatorConfig {
    /// Loads defaults, the file, `KORDON_*` variables and the flags, then validates.
    pub fn load(flags: &OperatorFlags) -> Result<Self, RuntimeError> {
        let config: OperatorConfig =
            kordon_runtime::config::load(flags.config.as_deref(), flags, TOP_LEVEL_KEYS)?;
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), RuntimeError> {
        if let Some(ns) = &self.namespace
            && !is_dns_label(ns)
        {
            return Err(RuntimeError::config(
                "namespace",
                format!("`{ns}` is not a namespace name (a DNS label)"),
            ));
        }
        if self.image.trim().is_empty() || self.image.chars().any(char::is_whitespace) {
            return Err(RuntimeError::config(
                "image",
                "must be an image reference without spaces",
            ));
        }
        if let Some(p) = &self.image_pull_policy
            && !matches!(p.as_str(), "Always" | "IfNotPresent" | "Never")
        {
            return Err(RuntimeError::config(
                "image_pull_policy",
                format!("`{p}` is not Always, IfNotPresent or Never"),
            ));
        }
        let le = &self.leader_election;
        if le.enabled {
            if !is_dns_subdomain(&le.lease_name) {
                return Err(RuntimeError::config(
                    "leader_election.lease_name",
                    format!("`{}` is not a valid object name", le.lease_name),
                ));
            }
            if le.lease_duration < Duration::from_secs(2) {
                return Err(RuntimeError::config(
                    "leader_election.lease_duration",
                    "must be at least 2s",
                ));
            }
            if le.renew_interval.is_zero() || le.renew_interval * 2 > le.lease_duration {
                return Err(RuntimeError::config(
                    "leader_election.renew_interval",
                    "must be positive and at most half of lease_duration",
                ));
            }
        }
        let ingest = &self.ingest;
        for (key, template, probe) in [
            (
                "ingest.address",
                &ingest.address,
                ingest.address_of("ns", "site", 0),
            ),
            (
                "detection.address",
                &self.detection.address,
                self.detection.address_of("ns", "site", 0),
            ),
            (
                "alerting.address",
                &self.alerting.address,
                self.alerting.address_of("ns", "site"),
            ),
        ] {
            let scheme_ok = template.starts_with("http://") || template.starts_with("https://");
            if !scheme_ok || url::Url::parse(&probe).is_err() {
                return Err(RuntimeError::config(
                    key,
                    format!("`{template}` does not make an http:// or https:// URL (e.g. {probe})"),
                ));
            }
        }
        if self.alerting.poll_interval < Duration::from_secs(1) {
            return Err(RuntimeError::config(
                "alerting.poll_interval",
                "must be at least 1s",
            ));
        }
        if ingest.status_interval < Duration::from_secs(1) {
            return Err(RuntimeError::config(
                "ingest.status_interval",
                "must be at least 1s",
            ));
        }
        if ingest.timeout.is_zero() {
            return Err(RuntimeError::config("ingest.timeout", "must be positive"));
        }
        for (key, file) in [
            ("ingest.ca_file", &ingest.ca_file),
            ("ingest.cert_file", &ingest.cert_file),
            ("ingest.key_file", &ingest.key_file),
        ] {
            if let Some(f) = file
                && !Path::new(f).is_file()
            {
                return Err(RuntimeError::config(
                    key,
                    format!("{} does not exist or is not a file", f.display()),
                ));
            }
        }
        if ingest.cert_file.is_some() != ingest.key_file.is_some() {
            return Err(RuntimeError::config(
                "ingest.cert_file",
                "a client certificate needs both cert_file and key_file",
            ));
        }
        if let Err(e) = tracing_subscriber_filter_check(&self.log.filter) {
            return Err(RuntimeError::config("log.filter", e));
        }
        Ok(())
    }

    /// The namespace of the leader-election Lease.
    pub fn lease_namespace(&self) -> String {
        self.leader_election
            .lease_namespace
            .clone()
            .or_else(|| self.namespace.clone())
            .or_else(|| {
                std::env::var("POD_NAMESPACE")
                    .ok()
                    .filter(|v| !v.is_empty())
            })
            .unwrap_or_else(|| "default".to_string())
    }

    /// This replica's identity in the Lease.
    pub fn identity(&self) -> String {
        self.leader_election
            .identity
            .clone()
            .or_else(|| std::env::var("POD_NAME").ok().filter(|v| !v.is_empty()))
            .or_else(|| std::env::var("HOSTNAME").ok().filter(|v| !v.is_empty()))
            .unwrap_or_else(|| format!("kordon-operator-{}", std::process::id()))
    }
}

fn tracing_subscriber_filter_check(filter: &str) -> Result<(), String> {
    // The runtime validates the same directive when telemetry starts; checking here names the
    // key before anything else happens.
    let common = kordon_runtime::config::CommonConfig {
        grpc_listen: SocketAddr::from(([127, 0, 0, 1], 1)),
        admin_listen: SocketAddr::from(([127, 0, 0, 1], 2)),
        data_dir: PathBuf::from("."),
        log: LogConfig {
            format: kordon_runtime::config::LogFormat::Text,
            filter: filter.to_string(),
        },
        tls: None,
        auth: Default::default(),
        dev_identity: false,
    };
    common.validate().map_err(|e| e.to_string())
}

/// A DNS-1123 label: what namespaces, Sites and Cameras are named with.
pub fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && !s.is_empty() && s.split('.').all(is_dns_label)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        OperatorConfig::default().validate().unwrap();
        let c: OperatorConfig = serde_yaml::from_str("{}").unwrap();
        assert_eq!(c, OperatorConfig::default());
    }

    #[test]
    fn bad_values_name_their_key() {
        type Mutation = Box<dyn Fn(&mut OperatorConfig)>;
        let cases: Vec<(&str, Mutation)> = vec![
            (
                "namespace",
                Box::new(|c| c.namespace = Some("Bad_NS".into())),
            ),
            ("image", Box::new(|c| c.image = " ".into())),
            (
                "image_pull_policy",
                Box::new(|c| c.image_pull_policy = Some("Sometimes".into())),
            ),
            (
                "leader_election.renew_interval",
                Box::new(|c| c.leader_election.renew_interval = Duration::from_secs(10)),
            ),
            (
                "leader_election.lease_name",
                Box::new(|c| c.leader_election.lease_name = "Not Valid".into()),
            ),
            (
                "ingest.address",
                Box::new(|c| c.ingest.address = "tcp://x".into()),
            ),
            (
                "detection.address",
                Box::new(|c| c.detection.address = "grpc://{pod}".into()),
            ),
            (
                "ingest.ca_file",
                Box::new(|c| c.ingest.ca_file = Some("/nonexistent/ca.pem".into())),
            ),
            ("log.filter", Box::new(|c| c.log.filter = "info,=,[".into())),
        ];
        for (key, mutate) in cases {
            let mut c = OperatorConfig::default();
            mutate(&mut c);
            let err = c.validate().unwrap_err().to_string();
            assert!(err.contains(&format!("`{key}`")), "{key}: {err}");
        }
    }

    #[test]
    fn leader_election_may_be_off_and_unknown_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("op.yaml");
        std::fs::write(
            &path,
            "namespace: kordon\nleader_election:\n  enabled: false\ningest:\n  status_interval: 5s\n",
        )
        .unwrap();
        let flags = OperatorFlags {
            config: Some(path.clone()),
            ..Default::default()
        };
        let c = OperatorConfig::load(&flags).unwrap();
        assert!(!c.leader_election.enabled);
        assert_eq!(c.namespace.as_deref(), Some("kordon"));
        assert_eq!(c.ingest.status_interval, Duration::from_secs(5));

        std::fs::write(&path, "namspace: kordon\n").unwrap();
        let err = OperatorConfig::load(&flags).unwrap_err().to_string();
        assert!(err.contains("namspace"), "{err}");
    }

    #[test]
    fn ingest_address_fills_placeholders() {
        let c = IngestClientConfig::default();
        assert_eq!(
            c.address_of("kordon", "burgas", 2),
            "https://burgas-ingest-2.burgas-ingest.kordon.svc:8470"
        );
        assert_eq!(
            DetectionClientConfig::default().address_of("kordon", "burgas", 1),
            "https://burgas-detection-1.burgas-detection.kordon.svc:8470"
        );
    }
}
