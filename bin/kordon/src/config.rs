//! The `kordon` configuration file: one shape for every subcommand.
//!
//! ```yaml
//! grpc_listen: 127.0.0.1:8470     # KORDON_GRPC_LISTEN, --grpc-listen
//! admin_listen: 127.0.0.1:8471    # KORDON_ADMIN_LISTEN, --admin-listen
//! http_listen: 127.0.0.1:8472     # KORDON_HTTP_LISTEN, --http-listen (playback)
//! data_dir: kordon-data           # KORDON_DATA_DIR, --data-dir
//! log: { format: text, filter: info }
//! tls: { cert_file: ..., key_file: ..., client_ca_file: ... }
//! auth:
//!   jwt: { issuer: ..., audience: ..., keys: [{ algorithm: EdDSA, public_key_file: ... }] }
//!   mtls: { subjects: { ingest.burgas.kordon: [burgas] } }
//! partners:                       # partner installations (see docs/partners.md)
//!   site: burgas
//!   listen: 127.0.0.1:8473        # the partner link, mTLS only
//!   cert_file: ..., key_file: ...
//!   partners: [{ site: edirne, endpoint: https://..., ca_file: ..., evidence_public_key: ...,
//!                shares: {...}, receives: {...} }]
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;

use kordon_runtime::RuntimeError;
use kordon_runtime::config::{self as rc, AuthConfig, CommonConfig, LogConfig, TlsConfig};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default = "default_grpc")]
    pub grpc_listen: SocketAddr,
    #[serde(default = "default_admin")]
    pub admin_listen: SocketAddr,
    #[serde(default = "default_http")]
    pub http_listen: SocketAddr,
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    #[serde(default)]
    pub log: LogConfig,
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    #[serde(default)]
    pub auth: AuthConfig,
    /// The storage service: index database, object storage, playback.
    #[serde(default)]
    pub storage: kordon_storage::StorageConfig,
    /// Recording settings of the ingest service.
    #[serde(default)]
    pub ingest: kordon_ingest::config::IngestConfig,
    /// Detection settings: the model, its database, snapshots.
    #[serde(default)]
    pub detection: kordon_detection::config::DetectionServiceConfig,
    /// Alerting: rules, sinks, where detections come from.
    #[serde(default)]
    pub alerting: kordon_alerting::config::AlertingConfig,
    /// Transcode: its job database, workers, encoders, automatic thumbnails.
    #[serde(default)]
    pub transcode: kordon_transcode::TranscodeConfig,
    /// The cameras to record, by site (ingest, standalone).
    #[serde(default)]
    pub sites: Vec<SiteConfig>,
    /// Partner installations, the agreements with them and the partner link (alerting and
    /// storage).
    #[serde(default)]
    pub partners: kordon_runtime::partner::PartnersConfig,
}

/// A site (partner district) and its cameras.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteConfig {
    pub name: String,
    /// IANA time zone, e.g. "Europe/Sofia": alert schedules run on it (default UTC).
    #[serde(default)]
    pub time_zone: Option<String>,
    #[serde(default)]
    pub cameras: Vec<SiteCamera>,
}

/// A camera as written under its site.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteCamera {
    pub name: String,
    /// RTSP URL of the record (main) stream.
    pub record: String,
    /// RTSP URL of the detect (sub) stream.
    #[serde(default)]
    pub detect: Option<String>,
    #[serde(default)]
    pub transport: kordon_ingest::config::Transport,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default, with = "humantime_serde")]
    pub segment_duration: Option<std::time::Duration>,
    /// What detection analyses on the detect stream (classes, zones, lines, masks, motion).
    #[serde(default)]
    pub detection: kordon_detection::settings::CameraDetectionYaml,
}

fn parse_default<T: std::str::FromStr>(s: &str) -> T
where
    T::Err: std::fmt::Debug,
{
    // The defaults are constants in kordon_runtime::config, checked by a test below.
    s.parse()
        .unwrap_or_else(|e| panic!("built-in default {s:?}: {e:?}"))
}

fn default_grpc() -> SocketAddr {
    parse_default(rc::DEFAULT_GRPC_LISTEN)
}
fn default_admin() -> SocketAddr {
    parse_default(rc::DEFAULT_ADMIN_LISTEN)
}
fn default_http() -> SocketAddr {
    parse_default(rc::DEFAULT_HTTP_LISTEN)
}
fn default_data_dir() -> PathBuf {
    PathBuf::from(rc::DEFAULT_DATA_DIR)
}

/// The top-level keys of [`Config`]: `KORDON_<KEY>` variables for these are configuration.
pub const TOP_LEVEL_KEYS: &[&str] = &[
    "grpc_listen",
    "admin_listen",
    "http_listen",
    "data_dir",
    "log",
    "tls",
    "auth",
    "storage",
    "ingest",
    "detection",
    "alerting",
    "transcode",
    "sites",
    "partners",
];

/// Command-line values that override the file and the environment.
#[derive(Debug, Clone, Default, Serialize, clap::Args)]
pub struct ServerFlags {
    /// YAML configuration file.
    #[arg(long, value_name = "FILE")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Directory for local files: media, SQLite index, spool.
    #[arg(long, value_name = "DIR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    /// gRPC listener.
    #[arg(long, value_name = "ADDR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grpc_listen: Option<SocketAddr>,
    /// HTTP listener (HLS playback).
    #[arg(long, value_name = "ADDR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_listen: Option<SocketAddr>,
    /// Admin listener: /live, /ready, /metrics.
    #[arg(long, value_name = "ADDR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_listen: Option<SocketAddr>,
}

/// Who may use the development identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DevIdentityPolicy {
    /// Only when `KORDON_DEV_IDENTITY=1` (every service subcommand).
    OptIn,
    /// On when every listener is on loopback, unless `KORDON_DEV_IDENTITY=0` (standalone).
    LoopbackDefault,
}

/// The sections a process reads besides the ones every process checks. Every pod of a site
/// reads the same `site.yaml` but mounts only its own files (the partner link's certificate
/// only on alerting and storage), so a process validates only what it reads: a restarted
/// ingest must not refuse to start over the partner link's files, nor transcode over a bad
/// alert sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reads {
    /// The `alerting` section.
    pub alerting: bool,
    /// The `partners` section.
    pub partners: bool,
}

impl Reads {
    /// Everything (standalone, and the tools that check a whole file).
    pub const ALL: Reads = Reads {
        alerting: true,
        partners: true,
    };
}

impl Config {
    /// Loads and validates the whole configuration (standalone reads every section).
    #[cfg(test)]
    pub fn load(flags: &ServerFlags) -> Result<Config, RuntimeError> {
        Self::load_reading(flags, Reads::ALL)
    }

    /// Loads the configuration and validates what a process that `reads` those sections uses.
    pub fn load_reading(flags: &ServerFlags, reads: Reads) -> Result<Config, RuntimeError> {
        let config: Config = rc::load(flags.config.as_deref(), flags, TOP_LEVEL_KEYS)?;
        config.validate(reads)?;
        Ok(config)
    }

    fn validate(&self, reads: Reads) -> Result<(), RuntimeError> {
        let listeners = [
            ("grpc_listen", self.grpc_listen),
            ("admin_listen", self.admin_listen),
            ("http_listen", self.http_listen),
        ];
        for (i, (ka, a)) in listeners.iter().enumerate() {
            for (_, b) in &listeners[i + 1..] {
                if a == b && a.port() != 0 {
                    return Err(RuntimeError::config(
                        *ka,
                        format!("{a} is used by two listeners"),
                    ));
                }
            }
        }
        if self.data_dir.as_os_str().is_empty() {
            return Err(RuntimeError::config("data_dir", "must not be empty"));
        }
        self.ingest.validate().map_err(ingest_config_error)?;
        self.detection.validate().map_err(|e| match e {
            kordon_detection::DetectionError::Config { key, message } => {
                RuntimeError::config(key, message)
            }
            other => RuntimeError::config("detection", other.to_string()),
        })?;
        self.storage.validate().map_err(|e| match e {
            kordon_storage::StorageError::Config { key, message } => {
                RuntimeError::config(format!("storage.{key}"), message)
            }
            other => RuntimeError::config("storage", other.to_string()),
        })?;
        if reads.alerting {
            self.alerting().validate().map_err(alerting_config_error)?;
        }
        self.transcode.validate().map_err(|e| match e {
            kordon_transcode::TranscodeError::Config { key, message } => {
                RuntimeError::config(key, message)
            }
            other => RuntimeError::config("transcode", other.to_string()),
        })?;
        if reads.partners {
            self.partners.validate()?;
        }
        if let Some(l) = self.partners.listen
            && reads.partners
            && [self.grpc_listen, self.admin_listen, self.http_listen].contains(&l)
            && l.port() != 0
        {
            return Err(RuntimeError::config(
                "partners.listen",
                format!("{l} is used by another listener"),
            ));
        }
        let mut sites = std::collections::BTreeSet::new();
        for (i, site) in self.sites.iter().enumerate() {
            if !sites.insert(site.name.as_str()) {
                return Err(RuntimeError::config(
                    format!("sites[{i}].name"),
                    format!("site `{}` is listed twice", site.name),
                ));
            }
            let mut names = std::collections::BTreeSet::new();
            for (j, cam) in site.cameras.iter().enumerate() {
                if !names.insert(cam.name.as_str()) {
                    return Err(RuntimeError::config(
                        format!("sites[{i}].cameras[{j}].name"),
                        format!(
                            "camera `{}` is listed twice in site `{}`",
                            cam.name, site.name
                        ),
                    ));
                }
            }
        }
        for (key, cam) in self.cameras_with_keys() {
            cam.validate(&key).map_err(ingest_config_error)?;
        }
        Ok(())
    }

    /// Every configured camera, flattened, with its config key for error messages.
    fn cameras_with_keys(&self) -> Vec<(String, kordon_ingest::config::CameraConfig)> {
        let mut out = Vec::new();
        for (i, site) in self.sites.iter().enumerate() {
            for (j, c) in site.cameras.iter().enumerate() {
                out.push((
                    format!("sites[{i}].cameras[{j}]"),
                    kordon_ingest::config::CameraConfig {
                        site: site.name.clone(),
                        name: c.name.clone(),
                        record: c.record.clone(),
                        detect: c.detect.clone(),
                        transport: c.transport,
                        username: c.username.clone(),
                        password: c.password.clone(),
                        segment_duration: c.segment_duration,
                    },
                ));
            }
        }
        out
    }

    /// Every configured camera, for ingest.
    pub fn cameras(&self) -> Vec<kordon_ingest::config::CameraConfig> {
        self.cameras_with_keys()
            .into_iter()
            .map(|(_, c)| c)
            .collect()
    }

    /// Every configured camera as detection sees it (detect stream, or the record stream when
    /// there is none), credentials resolved from the file.
    /// The alerting config with each site's `time_zone` (an entry in `alerting.time_zones`
    /// wins).
    pub fn alerting(&self) -> kordon_alerting::config::AlertingConfig {
        let mut a = self.alerting.clone();
        a.partners = self.partners.clone();
        for s in &self.sites {
            if let Some(tz) = &s.time_zone {
                a.time_zones
                    .entry(s.name.clone())
                    .or_insert_with(|| tz.clone());
            }
        }
        a
    }

    pub fn detection_cameras(&self) -> Vec<kordon_proto::detection::v1::DetectionCamera> {
        let mut out = Vec::new();
        for site in &self.sites {
            for c in &site.cameras {
                out.push(detection_camera(&site.name, c));
            }
        }
        out
    }

    fn all_loopback(&self) -> bool {
        [self.grpc_listen, self.admin_listen, self.http_listen]
            .iter()
            .all(|a| a.ip().is_loopback())
    }

    /// The runtime's view, with the development identity decided by `policy`.
    pub fn common(&self, policy: DevIdentityPolicy) -> Result<CommonConfig, RuntimeError> {
        let env = rc::dev_identity_from_env()?;
        let dev_identity = match (policy, env) {
            (_, Some(explicit)) => explicit,
            (DevIdentityPolicy::OptIn, None) => false,
            (DevIdentityPolicy::LoopbackDefault, None) => self.all_loopback(),
        };
        let common = CommonConfig {
            grpc_listen: self.grpc_listen,
            admin_listen: self.admin_listen,
            data_dir: self.data_dir.clone(),
            log: self.log.clone(),
            tls: self.tls.clone(),
            auth: self.auth.clone(),
            dev_identity,
        };
        common.validate()?;
        Ok(common)
    }
}

/// One configured camera as detection sees it. Credentials written into a URL move to
/// `resolved_credentials` (detection refuses URLs with user info).
/// An alerting config error as a usage error naming its key.
pub fn alerting_config_error(e: kordon_alerting::AlertingError) -> RuntimeError {
    match e {
        kordon_alerting::AlertingError::Config { key, message } => {
            RuntimeError::config(key, message)
        }
        other => RuntimeError::config("alerting", other.to_string()),
    }
}

pub fn detection_camera(
    site: &str,
    c: &SiteCamera,
) -> kordon_proto::detection::v1::DetectionCamera {
    use kordon_proto::detection::v1 as dpb;
    let raw = c.detect.clone().unwrap_or_else(|| c.record.clone());
    let (url, mut username, mut password) = match url::Url::parse(&raw) {
        Ok(mut u) if !u.username().is_empty() => {
            let user = percent_encoding::percent_decode_str(u.username())
                .decode_utf8_lossy()
                .into_owned();
            let pass = u.password().map(|p| {
                percent_encoding::percent_decode_str(p)
                    .decode_utf8_lossy()
                    .into_owned()
            });
            let _ = u.set_username("");
            let _ = u.set_password(None);
            (u.to_string(), Some(user), pass)
        }
        _ => (raw, None, None),
    };
    if c.username.is_some() {
        username = c.username.clone();
        password = c.password.clone();
    }
    dpb::DetectionCamera {
        camera: Some(kordon_proto::common::v1::CameraRef {
            site: site.to_string(),
            camera: c.name.clone(),
        }),
        detect_url: url,
        transport: match c.transport {
            kordon_ingest::config::Transport::Tcp => dpb::RtspTransport::Tcp,
            kordon_ingest::config::Transport::Udp => dpb::RtspTransport::Udp,
        } as i32,
        credentials: None,
        config: Some(c.detection.to_proto()),
        generation: 1,
        resolved_credentials: username.map(|u| kordon_proto::common::v1::RtspCredentials {
            username: u,
            password: password.unwrap_or_default(),
        }),
    }
}

fn ingest_config_error(e: kordon_ingest::IngestError) -> RuntimeError {
    match e {
        kordon_ingest::IngestError::Config { key, message } => RuntimeError::config(key, message),
        other => RuntimeError::config("ingest", other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_parse_and_are_loopback() {
        let c: Config = rc::load(None, &ServerFlags::default(), TOP_LEVEL_KEYS).unwrap();
        assert!(c.all_loopback());
        assert_eq!(c.grpc_listen, default_grpc());
        assert_eq!(c.data_dir, PathBuf::from(rc::DEFAULT_DATA_DIR));
    }

    #[test]
    fn flags_override_and_duplicates_are_named() {
        let flags = ServerFlags {
            grpc_listen: Some("127.0.0.1:9001".parse().unwrap()),
            admin_listen: Some("127.0.0.1:9001".parse().unwrap()),
            ..ServerFlags::default()
        };
        let err = Config::load(&flags).unwrap_err().to_string();
        assert!(err.contains("`grpc_listen`"), "{err}");
    }

    #[test]
    fn sites_and_cameras_are_validated_with_their_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kordon.yaml");
        std::fs::write(
            &path,
            "sites:\n  - name: edirne\n    cameras:\n      - name: gate-1\n        record: rtsp://127.0.0.1:8554/cam1/main\n        detect: rtsp://127.0.0.1:8554/cam1/sub\n",
        )
        .unwrap();
        let flags = ServerFlags {
            config: Some(path.clone()),
            ..ServerFlags::default()
        };
        let c = Config::load(&flags).unwrap();
        let cams = c.cameras();
        assert_eq!(cams.len(), 1);
        assert_eq!(cams[0].site, "edirne");
        assert_eq!(cams[0].name, "gate-1");

        std::fs::write(
            &path,
            "sites:\n  - name: edirne\n    cameras:\n      - name: gate-1\n        record: http://x/\n",
        )
        .unwrap();
        let err = Config::load(&flags).unwrap_err().to_string();
        assert!(err.contains("`sites[0].cameras[0].record`"), "{err}");
    }

    #[test]
    fn unknown_keys_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kordon.yaml");
        std::fs::write(&path, "grpc_lisen: 127.0.0.1:1\n").unwrap();
        let flags = ServerFlags {
            config: Some(path),
            ..ServerFlags::default()
        };
        let err = Config::load(&flags).unwrap_err().to_string();
        assert!(err.contains("grpc_lisen"), "{err}");
    }

    /// What the operator renders for a Site with sinks and AlertRules is what every service
    /// of the site loads: the `alerting:` section parses and passes alerting's checks.
    #[test]
    fn the_operators_site_yaml_with_rules_and_sinks_loads() {
        use kordon_operator::crd::{AlertRule, Site};
        let site: Site = serde_json::from_value(serde_json::json!({
            "apiVersion": "kordon.io/v1alpha1", "kind": "Site",
            "metadata": { "name": "burgas", "namespace": "police", "uid": "u1", "generation": 1 },
            "spec": {
                "timeZone": "Europe/Sofia",
                "storage": { "bucket": "kordon-burgas" },
                "detection": { "replicas": 2 },
                "alertSinks": [
                    { "name": "duty", "webhook": { "url": "https://hooks.example/duty", "signingSecret": "duty-hmac" } },
                    { "name": "scada", "mqtt": { "url": "mqtts://broker:8883", "topic": "kordon/burgas" } }
                ]
            }
        }))
        .unwrap();
        let rule = |name: &str, spec: serde_json::Value| -> AlertRule {
            serde_json::from_value(serde_json::json!({
                "apiVersion": "kordon.io/v1alpha1", "kind": "AlertRule",
                "metadata": { "name": name, "namespace": "police", "uid": name, "generation": 1 },
                "spec": spec
            }))
            .unwrap()
        };
        let rules = [
            rule(
                "night-fence",
                serde_json::json!({
                    "site": "burgas", "severity": "high", "classes": ["person"],
                    "zone": { "zones": ["fence"], "minDwell": "5s" },
                    "schedule": { "windows": [{ "days": ["mon", "fri"], "start": "22:00", "end": "06:00" }] },
                    "escalateAfter": "10m", "sinks": ["duty"]
                }),
            ),
            rule(
                "wrong-way",
                serde_json::json!({
                    "site": "burgas", "classes": ["car"], "minObjects": 2, "dedup": "track",
                    "line": { "lines": ["gate"], "direction": "left-to-right" },
                    "quietPeriod": "20s", "cooldown": "2m"
                }),
            ),
        ];
        let objs = kordon_operator::render::render(
            &site,
            &kordon_operator::config::OperatorConfig::default(),
            &kordon_operator::render::TlsMounts::operator("burgas"),
            &rules,
        )
        .unwrap();
        let yaml = objs
            .config_maps
            .iter()
            .find_map(|c| c.data.as_ref()?.get("site.yaml").cloned())
            .expect("site.yaml");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("site.yaml");
        std::fs::write(&path, &yaml).unwrap();
        let config = Config::load(&ServerFlags {
            config: Some(path),
            ..ServerFlags::default()
        })
        .unwrap_or_else(|e| panic!("{e}\n{yaml}"));
        let a = config.alerting();
        a.validate().unwrap();
        assert_eq!(a.rules.len(), 2, "{yaml}");
        assert_eq!(a.sinks.len(), 2);
        assert_eq!(a.detection.endpoints.len(), 2, "one per detection replica");
        assert_eq!(a.time_zone("burgas"), "Europe/Sofia");
        let night = kordon_alerting::rules::Rule::from_yaml(&a.rules[0], &a.time_zones).unwrap();
        assert_eq!(
            night.escalate_after,
            Some(std::time::Duration::from_secs(600))
        );
    }

    /// What the operator renders for a Site with a Partner loads: the `partners:` section
    /// parses strictly and passes its checks (with the files the pods mount, under a
    /// temporary root instead of /var/run/kordon).
    #[test]
    fn the_operators_site_yaml_with_partners_loads() {
        use kordon_operator::crd::{Partner, Site};
        let site: Site = serde_json::from_value(serde_json::json!({
            "apiVersion": "kordon.io/v1alpha1", "kind": "Site",
            "metadata": { "name": "burgas", "namespace": "police", "uid": "u1", "generation": 1 },
            "spec": {
                "storage": { "bucket": "kordon-burgas" },
                "partnerLink": { "hostnames": ["partner.kordon.burgas.example"] }
            }
        }))
        .unwrap();
        let partner: Partner = serde_json::from_value(serde_json::json!({
            "apiVersion": "kordon.io/v1alpha1", "kind": "Partner",
            "metadata": { "name": "edirne", "namespace": "police", "uid": "p1", "generation": 1 },
            "spec": {
                "site": "burgas", "partnerSite": "edirne",
                "endpoint": "https://partner.kordon.edirne.example:8473",
                "ca": { "configMapName": "edirne-ca" },
                "evidencePublicKey": "3b".repeat(32),
                "shares": { "alerts": true, "minSeverity": "high", "cameras": ["port-gate"],
                            "footage": { "requests": true, "maxRange": "1h", "form": "masked", "keepFor": "30d" } },
                "receives": { "alerts": true }
            }
        }))
        .unwrap();
        let objs = kordon_operator::render::render_with_partners(
            &site,
            &kordon_operator::config::OperatorConfig::default(),
            &kordon_operator::render::TlsMounts::for_site(&site),
            &[],
            &[kordon_operator::partner::AcceptedPartner {
                partner,
                ca_sha256: String::new(),
            }],
            &[],
        )
        .unwrap();
        let yaml = objs
            .config_maps
            .iter()
            .find_map(|c| c.data.as_ref()?.get("site.yaml").cloned())
            .expect("site.yaml");
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("run");
        let yaml = yaml.replace("/var/run/kordon/", &format!("{}/", root.display()));
        let ca = kordon_operator::pki::SiteCa::generate(
            "edirne",
            "edirne",
            std::time::SystemTime::now(),
        )
        .unwrap();
        let path = dir.path().join("site.yaml");
        std::fs::write(&path, &yaml).unwrap();
        let flags = ServerFlags {
            config: Some(path.clone()),
            ..ServerFlags::default()
        };
        // Ingest, detection and transcode mount none of the partner link's files: they start
        // (a restarted ingest after a Partner was accepted did not); storage and alerting
        // would not, and say which file is missing.
        let ingest = Reads {
            alerting: false,
            partners: false,
        };
        Config::load_reading(&flags, ingest).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
        let storage = Reads {
            alerting: false,
            partners: true,
        };
        let err = Config::load_reading(&flags, storage)
            .unwrap_err()
            .to_string();
        assert!(err.contains("partners.cert_file"), "{err}");
        for (file, text) in [
            ("partners/edirne/ca.crt", ca.cert_pem().to_string()),
            ("partner-link/tls.crt", ca.cert_pem().to_string()),
            ("partner-link/tls.key", ca.key_pem()),
        ] {
            let path = root.join(file);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        let config = Config::load(&ServerFlags {
            config: Some(path),
            ..ServerFlags::default()
        })
        .unwrap_or_else(|e| panic!("{e}\n{yaml}"));
        let p = &config.partners;
        assert_eq!(p.site, "burgas");
        assert_eq!(p.listen.map(|l| l.port()), Some(8473));
        assert_eq!(p.partners.len(), 1, "{yaml}");
        let edirne = &p.partners[0];
        assert_eq!(
            edirne.shares.footage.form,
            kordon_runtime::partner::FootageForm::Masked
        );
        assert_eq!(
            edirne.shares.footage.keep_for,
            std::time::Duration::from_secs(30 * 86_400)
        );
        assert!(kordon_runtime::partner::PartnerTrust::new(p).is_ok());
    }
}
