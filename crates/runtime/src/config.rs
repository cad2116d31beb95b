//! Typed configuration shared by every Kordon process.
//!
//! Sources, later ones winning: built-in defaults, a YAML file (`--config`), environment
//! variables `KORDON_<KEY>` (nested keys joined by `__`, e.g. `KORDON_AUTH__JWT__ISSUER`), then
//! command-line flags. Everything is parsed into typed structs and validated before any
//! listener opens; a bad value is reported with the dotted key that holds it.
//!
//! Each binary defines its own top-level struct from the sections here (see the `kordon`
//! crate) and loads it with [`load`].

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Yaml};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::RuntimeError;

/// Default gRPC listener of a single service.
pub const DEFAULT_GRPC_LISTEN: &str = "127.0.0.1:8470";
/// Default admin listener (`/live`, `/ready`, `/metrics`).
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:8471";
/// Default HTTP listener for playback (storage).
pub const DEFAULT_HTTP_LISTEN: &str = "127.0.0.1:8472";
/// Default data directory (local files, SQLite, spool).
pub const DEFAULT_DATA_DIR: &str = "kordon-data";
/// Environment variables with this prefix are configuration.
pub const ENV_PREFIX: &str = "KORDON_";
/// Turns the development identity on (`1`) or off (`0`).
pub const DEV_IDENTITY_ENV: &str = "KORDON_DEV_IDENTITY";
/// Lets the development identity serve a listener that is not on loopback, when set to exactly
/// [`DEV_IDENTITY_ALLOW_REMOTE_VALUE`]. Anyone who can reach such a listener is an admin of
/// every site.
pub const DEV_IDENTITY_ALLOW_REMOTE_ENV: &str = "KORDON_DEV_IDENTITY_ALLOW_REMOTE";
pub const DEV_IDENTITY_ALLOW_REMOTE_VALUE: &str = "i-understand-this-is-insecure";

/// Loads `T` from defaults, the optional YAML `file`, `KORDON_*` variables and `overrides`
/// (typically the command-line flags, serialised with `None`s skipped).
///
/// Only variables whose first key segment is one of `top_level_keys` are configuration
/// (`KORDON_GRPC_LISTEN`, `KORDON_INGEST__SEGMENT_DURATION`); other `KORDON_*` variables belong
/// to other tools (`KORDON_LOG`, `KORDON_TOKEN`, `KORDON_CACHE`, …). Unknown keys in the file
/// are errors when `T` denies them (Kordon's config structs do), so a typo is reported rather
/// than ignored.
pub fn load<T, O>(
    file: Option<&Path>,
    overrides: &O,
    top_level_keys: &'static [&'static str],
) -> Result<T, RuntimeError>
where
    T: DeserializeOwned,
    O: Serialize,
{
    let mut figment = Figment::new();
    if let Some(path) = file {
        if !path.is_file() {
            return Err(RuntimeError::config(
                "--config",
                format!("{} does not exist or is not a file", path.display()),
            ));
        }
        figment = figment.merge(Yaml::file_exact(path));
    }
    let env = Env::prefixed(ENV_PREFIX)
        .filter(move |key| {
            let lower = key.as_str().to_ascii_lowercase();
            let first = lower.split("__").next().unwrap_or("");
            // `KORDON_LOG` is the log filter (see `telemetry`), not the `log` section.
            top_level_keys.contains(&first) && lower != "log"
        })
        .split("__")
        .lowercase(true);
    figment
        .merge(env)
        .merge(Serialized::defaults(overrides))
        .extract()
        .map_err(config_error)
}

/// Turns figment's error into one that names the key and where its value came from.
fn config_error(err: figment::Error) -> RuntimeError {
    let first = err.into_iter().next();
    match first {
        Some(e) => {
            let key = if e.path.is_empty() {
                "(top level)".to_string()
            } else {
                e.path.join(".")
            };
            let origin = e
                .metadata
                .as_ref()
                .map(|m| match &m.source {
                    Some(src) => format!(" (from {src})"),
                    None => format!(" (from {})", m.name),
                })
                .unwrap_or_default();
            RuntimeError::config(key, format!("{}{origin}", e.kind))
        }
        None => RuntimeError::config("(unknown)", "configuration could not be read"),
    }
}

/// Log output.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `text` for people, `json` for log collectors.
    pub format: LogFormat,
    /// An `EnvFilter` directive, e.g. `info,kordon_ingest=debug`. `KORDON_LOG` overrides it.
    pub filter: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            filter: "info".to_string(),
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// TLS for the gRPC listener. With `client_ca_file`, clients may present a certificate signed
/// by that CA and are then authenticated as services (mTLS).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    #[serde(default)]
    pub client_ca_file: Option<PathBuf>,
}

/// How callers are authenticated.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Bearer JWTs presented by people.
    pub jwt: Option<JwtConfig>,
    /// Services authenticated by mTLS client certificates.
    pub mtls: MtlsConfig,
}

/// Bearer tokens for people: signed by one of `keys`, carrying roles per site.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct JwtConfig {
    /// Required `iss`.
    pub issuer: String,
    /// Required `aud`.
    pub audience: String,
    /// Public keys that may sign tokens; a token's `kid` picks one when several are set.
    pub keys: Vec<JwtKeyConfig>,
    /// Claim holding `{ "<site>" | "*": ["viewer" | "operator" | "auditor" | "admin", ...] }`.
    #[serde(default = "default_roles_claim")]
    pub roles_claim: String,
    /// Allowed clock skew when checking `exp`/`nbf`, in seconds.
    #[serde(default = "default_leeway")]
    pub leeway_seconds: u64,
}

fn default_roles_claim() -> String {
    "kordon_roles".to_string()
}

fn default_leeway() -> u64 {
    30
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct JwtKeyConfig {
    /// Matches the token header's `kid`; optional when there is one key.
    #[serde(default)]
    pub id: Option<String>,
    pub algorithm: JwtAlgorithm,
    /// PEM file with the public key.
    pub public_key_file: PathBuf,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum JwtAlgorithm {
    EdDSA,
    RS256,
    ES256,
}

/// Which sites a service certificate may act for, beyond what its identity names.
///
/// A certificate that carries a Kordon identity (`spiffe://kordon.io/ns/<namespace>/site/<site>/
/// <component>`, see [`crate::auth`]) acts for that site only. One that does not acts only
/// through an entry here; with no entry it is refused.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct MtlsConfig {
    /// Certificate subject (first DNS SAN, else CN) → sites it acts for (`*` for all, said
    /// explicitly). A certificate without a Kordon identity and without an entry acts for none.
    pub subjects: BTreeMap<String, Vec<String>>,
}

/// The listeners and paths every service process has; each binary builds it from its config.
#[derive(Debug, Clone)]
pub struct CommonConfig {
    pub grpc_listen: SocketAddr,
    pub admin_listen: SocketAddr,
    pub data_dir: PathBuf,
    pub log: LogConfig,
    pub tls: Option<TlsConfig>,
    pub auth: AuthConfig,
    /// Accept calls without credentials as the local development identity.
    pub dev_identity: bool,
}

impl CommonConfig {
    /// Checks what can be checked without starting anything: files exist, listeners differ,
    /// the development identity stays on loopback (see [`check_dev_identity_listener`]).
    pub fn validate(&self) -> Result<(), RuntimeError> {
        if self.dev_identity {
            check_dev_identity_listener(self.grpc_listen, dev_identity_remote_allowed_from_env()?)?;
        }
        if self.grpc_listen == self.admin_listen {
            return Err(RuntimeError::config(
                "admin_listen",
                format!("{} is also the gRPC listener", self.admin_listen),
            ));
        }
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log.filter) {
            return Err(RuntimeError::config("log.filter", e.to_string()));
        }
        if let Some(tls) = &self.tls {
            require_file("tls.cert_file", &tls.cert_file)?;
            require_file("tls.key_file", &tls.key_file)?;
            if let Some(ca) = &tls.client_ca_file {
                require_file("tls.client_ca_file", ca)?;
            }
        }
        if let Some(jwt) = &self.auth.jwt {
            if jwt.keys.is_empty() {
                return Err(RuntimeError::config(
                    "auth.jwt.keys",
                    "at least one key is needed",
                ));
            }
            if jwt.issuer.trim().is_empty() {
                return Err(RuntimeError::config("auth.jwt.issuer", "must not be empty"));
            }
            if jwt.audience.trim().is_empty() {
                return Err(RuntimeError::config(
                    "auth.jwt.audience",
                    "must not be empty",
                ));
            }
            if jwt.keys.len() > 1 && jwt.keys.iter().any(|k| k.id.is_none()) {
                return Err(RuntimeError::config(
                    "auth.jwt.keys",
                    "with several keys each needs an `id` (the token's `kid`)",
                ));
            }
            for (i, k) in jwt.keys.iter().enumerate() {
                require_file(
                    &format!("auth.jwt.keys[{i}].public_key_file"),
                    &k.public_key_file,
                )?;
            }
        }
        if !self.auth.mtls.subjects.is_empty()
            && self
                .tls
                .as_ref()
                .and_then(|t| t.client_ca_file.as_ref())
                .is_none()
        {
            return Err(RuntimeError::config(
                "auth.mtls.subjects",
                "set, but tls.client_ca_file is not: no client certificate can be verified",
            ));
        }
        Ok(())
    }
}

fn require_file(key: &str, path: &Path) -> Result<(), RuntimeError> {
    if path.is_file() {
        Ok(())
    } else {
        Err(RuntimeError::config(
            key,
            format!("{} does not exist or is not a file", path.display()),
        ))
    }
}

/// Refuses the development identity on a gRPC listener that is not on loopback unless
/// `allow_remote` (from [`DEV_IDENTITY_ALLOW_REMOTE_ENV`]): there, every pod or host that can
/// reach the port would act as an admin of every site.
pub fn check_dev_identity_listener(
    listen: SocketAddr,
    allow_remote: bool,
) -> Result<(), RuntimeError> {
    if listen.ip().is_loopback() {
        return Ok(());
    }
    if allow_remote {
        tracing::warn!(
            %listen,
            "{DEV_IDENTITY_ALLOW_REMOTE_ENV} is set: the development identity serves a \
             non-loopback listener; anyone who reaches it is an admin of every site"
        );
        return Ok(());
    }
    Err(RuntimeError::config(
        DEV_IDENTITY_ENV,
        format!(
            "the development identity (calls without credentials act as admin of every site) \
             may only serve a loopback listener, and the gRPC listener is {listen}. Configure \
             tls.client_ca_file or auth.jwt instead; to accept the risk anyway set \
             {DEV_IDENTITY_ALLOW_REMOTE_ENV}={DEV_IDENTITY_ALLOW_REMOTE_VALUE}"
        ),
    ))
}

/// Whether [`DEV_IDENTITY_ALLOW_REMOTE_ENV`] is set to exactly
/// [`DEV_IDENTITY_ALLOW_REMOTE_VALUE`]; any other value is an error, so a guess never works.
pub fn dev_identity_remote_allowed_from_env() -> Result<bool, RuntimeError> {
    match std::env::var(DEV_IDENTITY_ALLOW_REMOTE_ENV) {
        Err(_) => Ok(false),
        Ok(v) if v == DEV_IDENTITY_ALLOW_REMOTE_VALUE => Ok(true),
        Ok(_) => Err(RuntimeError::config(
            DEV_IDENTITY_ALLOW_REMOTE_ENV,
            format!("must be exactly `{DEV_IDENTITY_ALLOW_REMOTE_VALUE}` to take effect"),
        )),
    }
}

/// Whether `KORDON_DEV_IDENTITY` asks for the development identity (`1`, `true`, `yes`).
pub fn dev_identity_from_env() -> Result<Option<bool>, RuntimeError> {
    match std::env::var(DEV_IDENTITY_ENV) {
        Err(_) => Ok(None),
        Ok(v) => match v.trim().to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => Ok(Some(true)),
            "0" | "false" | "no" | "off" | "" => Ok(Some(false)),
            other => Err(RuntimeError::config(
                DEV_IDENTITY_ENV,
                format!("`{other}` is not a boolean (use 1 or 0)"),
            )),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Sample {
        #[serde(default = "sample_listen")]
        grpc_listen: SocketAddr,
        #[serde(default)]
        log: LogConfig,
    }

    fn sample_listen() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 1))
    }

    #[derive(Serialize, Default)]
    struct NoOverrides {}

    const KEYS: &[&str] = &["grpc_listen", "log"];

    #[test]
    fn file_values_are_typed_and_keys_named_on_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.yaml");
        std::fs::write(&path, "grpc_listen: 127.0.0.1:9000\nlog:\n  format: json\n").unwrap();
        let c: Sample = load(Some(&path), &NoOverrides {}, KEYS).unwrap();
        assert_eq!(c.grpc_listen, "127.0.0.1:9000".parse().unwrap());
        assert_eq!(c.log.format, LogFormat::Json);

        std::fs::write(&path, "grpc_listen: not-an-address\n").unwrap();
        let err = load::<Sample, _>(Some(&path), &NoOverrides {}, KEYS).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("`grpc_listen`"), "{text}");

        std::fs::write(&path, "log:\n  fromat: json\n").unwrap();
        let err = load::<Sample, _>(Some(&path), &NoOverrides {}, KEYS).unwrap_err();
        assert!(err.to_string().contains("log"), "{err}");
        assert!(err.to_string().contains("fromat"), "{err}");
    }

    #[test]
    fn overrides_win_over_file() {
        #[derive(Serialize)]
        struct Flags {
            grpc_listen: SocketAddr,
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.yaml");
        std::fs::write(&path, "grpc_listen: 127.0.0.1:9000\n").unwrap();
        let c: Sample = load(
            Some(&path),
            &Flags {
                grpc_listen: "127.0.0.1:9100".parse().unwrap(),
            },
            KEYS,
        )
        .unwrap();
        assert_eq!(c.grpc_listen.port(), 9100);
    }

    #[test]
    fn missing_file_is_named() {
        let err = load::<Sample, _>(
            Some(Path::new("/nonexistent/k.yaml")),
            &NoOverrides {},
            KEYS,
        )
        .unwrap_err();
        assert!(err.to_string().contains("--config"), "{err}");
    }

    fn common() -> CommonConfig {
        CommonConfig {
            grpc_listen: "127.0.0.1:1".parse().unwrap(),
            admin_listen: "127.0.0.1:2".parse().unwrap(),
            data_dir: PathBuf::from("x"),
            log: LogConfig::default(),
            tls: None,
            auth: AuthConfig::default(),
            dev_identity: false,
        }
    }

    #[test]
    fn validation_names_the_key() {
        let mut c = common();
        c.admin_listen = c.grpc_listen;
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("`admin_listen`")
        );

        let mut c = common();
        c.log.filter = "info,=,[".into();
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("`log.filter`")
        );

        let mut c = common();
        c.auth.jwt = Some(JwtConfig {
            issuer: "i".into(),
            audience: "a".into(),
            keys: vec![JwtKeyConfig {
                id: None,
                algorithm: JwtAlgorithm::EdDSA,
                public_key_file: PathBuf::from("/nonexistent.pem"),
            }],
            roles_claim: default_roles_claim(),
            leeway_seconds: 0,
        });
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("`auth.jwt.keys[0].public_key_file`"), "{e}");

        let mut c = common();
        c.auth
            .mtls
            .subjects
            .insert("ingest".into(), vec!["*".into()]);
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("`auth.mtls.subjects`")
        );
        assert!(common().validate().is_ok());
    }

    #[test]
    fn the_development_identity_stays_on_loopback_unless_the_risk_is_named() {
        // The attack: a pod rendered with KORDON_DEV_IDENTITY=1 on 0.0.0.0, where any other
        // pod in the cluster becomes admin of every site.
        let everywhere: SocketAddr = "0.0.0.0:8470".parse().unwrap();
        let e = check_dev_identity_listener(everywhere, false).unwrap_err();
        assert!(matches!(e, RuntimeError::Config { .. }));
        let text = e.to_string();
        assert!(text.contains("`KORDON_DEV_IDENTITY`"), "{text}");
        assert!(text.contains("KORDON_DEV_IDENTITY_ALLOW_REMOTE="), "{text}");
        assert!(check_dev_identity_listener("10.1.2.3:8470".parse().unwrap(), false).is_err());
        assert!(check_dev_identity_listener("[::]:8470".parse().unwrap(), false).is_err());
        assert!(check_dev_identity_listener(everywhere, true).is_ok());
        assert!(check_dev_identity_listener("127.0.0.1:8470".parse().unwrap(), false).is_ok());
        assert!(check_dev_identity_listener("[::1]:8470".parse().unwrap(), false).is_ok());

        // validate() applies it (the variable is not set in tests).
        let mut c = common();
        c.dev_identity = true;
        assert!(c.validate().is_ok());
        c.grpc_listen = everywhere;
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("`KORDON_DEV_IDENTITY`"), "{e}");
        c.dev_identity = false;
        assert!(
            c.validate().is_ok(),
            "credentials-only servers may listen anywhere"
        );
    }
}
