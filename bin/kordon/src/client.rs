//! Client commands for people and scripts: connection flags and output formats shared by all.

use std::path::PathBuf;

use kordon_proto::common::v1 as pb;
use kordon_proto::common::v1::identity_service_client::IdentityServiceClient;
use kordon_runtime::client::{self, ClientOptions};

/// Default server of the client commands (standalone's gRPC listener).
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:8470";

#[derive(Debug, Clone, clap::Args)]
pub struct ClientFlags {
    /// Kordon gRPC server.
    #[arg(long, env = "KORDON_SERVER", default_value = DEFAULT_SERVER, value_name = "URL")]
    pub server: String,
    /// Bearer token (your JWT). Prefer the environment variable to keep it out of shell history.
    #[arg(long, env = "KORDON_TOKEN", hide_env_values = true, value_name = "JWT")]
    pub token: Option<String>,
    /// CA certificate of an https server.
    #[arg(long, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// Client certificate (services).
    #[arg(long, value_name = "FILE")]
    pub cert_file: Option<PathBuf>,
    /// Key of the client certificate.
    #[arg(long, value_name = "FILE")]
    pub key_file: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, env = "KORDON_OUTPUT", default_value_t = Output::Table)]
    pub output: Output,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    Table,
    Json,
}

impl ClientFlags {
    pub fn options(&self) -> ClientOptions {
        ClientOptions {
            server: self.server.clone(),
            token: self.token.clone(),
            ca_file: self.ca_file.clone(),
            cert_file: self.cert_file.clone(),
            key_file: self.key_file.clone(),
            connect_timeout: None,
        }
    }
}

/// Turns a gRPC error into a message for people: the code in words plus the server's text.
pub fn status_error(s: tonic::Status) -> anyhow::Error {
    let what = match s.code() {
        tonic::Code::Unauthenticated => "not authenticated",
        tonic::Code::PermissionDenied => "permission denied",
        tonic::Code::InvalidArgument => "invalid request",
        tonic::Code::NotFound => "not found",
        tonic::Code::Unavailable => "server unavailable",
        tonic::Code::Unimplemented => "not implemented by this server",
        _ => "request failed",
    };
    anyhow::anyhow!("{what}: {}", s.message())
}

/// A timestamp as RFC 3339 with milliseconds, empty when unset.
pub fn rfc3339(t: &Option<prost_types::Timestamp>) -> String {
    match t {
        Some(t) if t.seconds >= 0 => humantime::format_rfc3339_millis(
            std::time::UNIX_EPOCH
                + std::time::Duration::new(t.seconds as u64, t.nanos.max(0) as u32),
        )
        .to_string(),
        _ => String::new(),
    }
}

/// A byte-progress bar on stderr (drawn only on a terminal), labelled `what`.
pub fn bar(total: u64, what: &str) -> indicatif::ProgressBar {
    let pb = indicatif::ProgressBar::with_draw_target(
        Some(total),
        indicatif::ProgressDrawTarget::stderr(),
    );
    let style = indicatif::ProgressStyle::with_template(
        "{msg:<18} [{bar:32}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
    )
    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
    .progress_chars("=> ");
    pb.set_style(style);
    pb.set_message(what.to_string());
    pb
}

fn role_name(r: i32) -> &'static str {
    match pb::Role::try_from(r) {
        Ok(pb::Role::Viewer) => "viewer",
        Ok(pb::Role::Operator) => "operator",
        Ok(pb::Role::Auditor) => "auditor",
        Ok(pb::Role::Admin) => "admin",
        Ok(pb::Role::Service) => "service",
        _ => "unknown",
    }
}

fn kind_name(k: i32) -> &'static str {
    match pb::PrincipalKind::try_from(k) {
        Ok(pb::PrincipalKind::Person) => "person",
        Ok(pb::PrincipalKind::Service) => "service",
        Ok(pb::PrincipalKind::Development) => "development",
        _ => "unknown",
    }
}

/// `kordon whoami`.
pub async fn whoami(flags: &ClientFlags) -> anyhow::Result<()> {
    let channel = client::connect(&flags.options()).await?;
    let resp = IdentityServiceClient::new(channel)
        .who_am_i(pb::WhoAmIRequest {})
        .await
        .map_err(status_error)?
        .into_inner();
    let p = resp.principal.unwrap_or_default();
    let roles: Vec<(String, Vec<&str>)> = p
        .roles
        .iter()
        .map(|r| {
            (
                r.site.clone(),
                r.roles.iter().map(|x| role_name(*x)).collect(),
            )
        })
        .collect();
    match flags.output {
        Output::Json => {
            let v = serde_json::json!({
                "subject": p.subject,
                "kind": kind_name(p.kind),
                "display_name": p.display_name,
                "roles": roles.iter().map(|(s, r)| (s.clone(), r.clone())).collect::<std::collections::BTreeMap<_, _>>(),
                "server": resp.server,
                "server_version": resp.server_version,
            });
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
        Output::Table => {
            println!("SUBJECT   {}", p.subject);
            println!("KIND      {}", kind_name(p.kind));
            if !p.display_name.is_empty() {
                println!("NAME      {}", p.display_name);
            }
            for (site, r) in &roles {
                println!("ROLES     {site}: {}", r.join(", "));
            }
            println!("SERVER    {} {}", resp.server, resp.server_version);
        }
    }
    Ok(())
}
