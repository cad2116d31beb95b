//! Connecting to a Kordon gRPC server, as a person (bearer token) or as a service (client
//! certificate), with trace context propagated.

use std::path::PathBuf;
use std::time::Duration;

use tonic::metadata::MetadataValue;
use tonic::service::Interceptor;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::RuntimeError;

/// How a service reaches another Kordon service, as written in its configuration
/// (e.g. `detection.storage`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServiceClientConfig {
    /// gRPC URL, e.g. `https://storage.burgas.svc:8470`; standalone uses its own listener.
    pub url: Option<String>,
    /// CA that signed the server's certificate (https).
    pub ca_file: Option<PathBuf>,
    /// This service's client certificate and key (mTLS).
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
}

impl ServiceClientConfig {
    /// Client options for `server` (the configured URL, or another one such as standalone's
    /// own listener) with this config's certificates.
    pub fn options(&self, server: &str) -> ClientOptions {
        ClientOptions {
            server: server.to_string(),
            token: None,
            ca_file: self.ca_file.clone(),
            cert_file: self.cert_file.clone(),
            key_file: self.key_file.clone(),
            connect_timeout: None,
        }
    }
}

/// How to reach and authenticate to a server.
#[derive(Debug, Clone, Default)]
pub struct ClientOptions {
    /// `http://host:port` or `https://host:port`.
    pub server: String,
    /// Bearer token (a person's JWT).
    pub token: Option<String>,
    /// CA that signed the server's certificate (https).
    pub ca_file: Option<PathBuf>,
    /// Client certificate and key (services, mTLS).
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// Connect timeout.
    pub connect_timeout: Option<Duration>,
}

/// A channel plus the interceptor that adds credentials and trace context to every call.
pub type AuthedChannel = tonic::service::interceptor::InterceptedService<Channel, CallCredentials>;

/// Adds `authorization` and `traceparent` to outgoing calls.
#[derive(Clone)]
pub struct CallCredentials {
    bearer: Option<MetadataValue<tonic::metadata::Ascii>>,
}

impl Interceptor for CallCredentials {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(b) = &self.bearer {
            req.metadata_mut().insert("authorization", b.clone());
        }
        crate::telemetry::inject_current(req.metadata_mut());
        Ok(req)
    }
}

/// TLS credentials held in memory rather than in files (the operator mints its own per site):
/// the CA that signed the server, and the client certificate and key to present.
#[derive(Clone, PartialEq, Eq)]
pub struct TlsPem {
    pub ca: Vec<u8>,
    pub cert: Vec<u8>,
    pub key: Vec<u8>,
}

impl std::fmt::Debug for TlsPem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("TlsPem").finish_non_exhaustive()
    }
}

/// A lazily connected channel (see [`connect_lazy`]) to an `https://` server, verified with
/// `tls.ca` and presenting `tls.cert` (mTLS).
pub fn connect_lazy_pem(
    server: &str,
    tls: &TlsPem,
    connect_timeout: Duration,
) -> Result<AuthedChannel, RuntimeError> {
    crate::install_crypto_provider();
    if !server.starts_with("https://") {
        return Err(RuntimeError::config(
            "--server",
            format!("`{server}`: client certificates need an https:// server"),
        ));
    }
    let config = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&tls.ca))
        .identity(Identity::from_pem(&tls.cert, &tls.key));
    let endpoint = Endpoint::from_shared(server.to_string())
        .map_err(|e| RuntimeError::config("--server", format!("`{server}` is not a URL: {e}")))?
        .connect_timeout(connect_timeout)
        .tcp_nodelay(true)
        .tls_config(config)
        .map_err(|e| RuntimeError::config("--ca-file", e.to_string()))?;
    Ok(tonic::service::interceptor::InterceptedService::new(
        endpoint.connect_lazy(),
        CallCredentials { bearer: None },
    ))
}

fn read(path: &PathBuf, key: &str) -> Result<Vec<u8>, RuntimeError> {
    std::fs::read(path).map_err(|e| RuntimeError::config(key, format!("{}: {e}", path.display())))
}

/// Connects (eagerly, so a wrong address fails here with a clear message).
pub async fn connect(opts: &ClientOptions) -> Result<AuthedChannel, RuntimeError> {
    let (endpoint, creds) = endpoint(opts)?;
    let channel = endpoint.connect().await.map_err(|e| {
        let mut msg = e.to_string();
        let mut src = std::error::Error::source(&e);
        while let Some(s) = src {
            msg = format!("{msg}: {s}");
            src = s.source();
        }
        RuntimeError::Connect {
            server: opts.server.clone(),
            message: msg,
        }
    })?;
    Ok(tonic::service::interceptor::InterceptedService::new(
        channel, creds,
    ))
}

/// A channel that connects on first use and reconnects after failures: for service-to-service
/// clients whose server may start later or restart (calls fail with UNAVAILABLE meanwhile).
pub fn connect_lazy(opts: &ClientOptions) -> Result<AuthedChannel, RuntimeError> {
    let (endpoint, creds) = endpoint(opts)?;
    Ok(tonic::service::interceptor::InterceptedService::new(
        endpoint.connect_lazy(),
        creds,
    ))
}

fn endpoint(opts: &ClientOptions) -> Result<(Endpoint, CallCredentials), RuntimeError> {
    crate::install_crypto_provider();
    let mut endpoint = Endpoint::from_shared(opts.server.clone()).map_err(|e| {
        RuntimeError::config("--server", format!("`{}` is not a URL: {e}", opts.server))
    })?;
    endpoint = endpoint
        .connect_timeout(opts.connect_timeout.unwrap_or(Duration::from_secs(5)))
        .tcp_nodelay(true);
    if opts.server.starts_with("https://") {
        let mut tls = ClientTlsConfig::new();
        match &opts.ca_file {
            Some(ca) => tls = tls.ca_certificate(Certificate::from_pem(read(ca, "--ca-file")?)),
            None => {
                return Err(RuntimeError::config(
                    "--ca-file",
                    "an https server needs the CA that signed its certificate",
                ));
            }
        }
        match (&opts.cert_file, &opts.key_file) {
            (Some(c), Some(k)) => {
                tls = tls.identity(Identity::from_pem(
                    read(c, "--cert-file")?,
                    read(k, "--key-file")?,
                ))
            }
            (None, None) => {}
            _ => {
                return Err(RuntimeError::config(
                    "--cert-file",
                    "a client certificate needs both --cert-file and --key-file",
                ));
            }
        }
        endpoint = endpoint
            .tls_config(tls)
            .map_err(|e| RuntimeError::config("--ca-file", e.to_string()))?;
    } else if opts.cert_file.is_some() {
        return Err(RuntimeError::config(
            "--cert-file",
            "client certificates need an https:// server",
        ));
    }
    let bearer = match &opts.token {
        None => None,
        Some(t) => Some(
            format!("Bearer {}", t.trim())
                .parse()
                .map_err(|_| RuntimeError::config("--token", "is not valid header text"))?,
        ),
    };
    Ok((endpoint, CallCredentials { bearer }))
}
