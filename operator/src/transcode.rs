//! The transcode service of a site: its section of `site.yaml` ([`config`]), where it keeps its
//! jobs and how many replicas run ([`plan`]), and what the Site's `Transcode` condition says.
//!
//! Guarantees:
//! - The section is a pure function of the Site and its namespace, so the same inputs give the
//!   same bytes and the same [`CONFIG_ANNOTATION`] on the transcode pods, which therefore roll
//!   when (and only when) what transcode reads changes: its section, or the bucket it reads
//!   segments from and writes outputs to (`storage.objects` of `site.yaml`).
//! - Jobs are never kept where a restart loses them. With `spec.database` they live in the
//!   Site's PostgreSQL (transcode's own tables and `_transcode_migrations`, beside storage's and
//!   alerting's), reached through `KORDON_TRANSCODE__DATABASE_URL` from the database Secret —
//!   no secret enters the section — and any number of replicas share them. Without it they
//!   live in SQLite on the claim `<site>-transcode-data`, which has no owner and outlives the
//!   Site; one SQLite file has one writer, so at most one replica runs, replaced with
//!   `Recreate`, and the Site's `Transcode` condition (and a Warning event) says when fewer
//!   replicas run than `spec.transcode.replicas` asks. Nothing is rejected: a Site that asked
//!   for more keeps its spec and gets its replicas as soon as it names a database.
//! - Each replica knows itself by its pod name (`POD_NAME`), the name it claims jobs under.
//! - Transcode presents its own certificate (`<site>-transcode-tls`, identity
//!   `spiffe://kordon.io/ns/<ns>/site/<site>/transcode`: the service role on its site and no
//!   other) to storage, and storage presents its own to transcode for the viewer copies of
//!   evidence bundles (`storage.transcode` of `site.yaml`, [`viewer_copies_client`]).

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use serde::Serialize;

use crate::conditions::{FALSE, TRUE, condition};
use crate::crd::Site;
use crate::render::{GRPC_PORT, TLS_DIR, component_name};

/// Pod template annotation of the transcode Deployment: SHA-256 (hex) of what transcode reads
/// from `site.yaml` (its section and the object store's).
pub const CONFIG_ANNOTATION: &str = "kordon.io/transcode-config";
/// The Site condition that says how transcode runs.
pub const CONDITION: &str = "Transcode";
/// Environment variable of the database URL (from the Site's database Secret).
pub const DATABASE_URL_ENV: &str = "KORDON_TRANSCODE__DATABASE_URL";

/// The `transcode` section of `site.yaml`, in the transcode service's own shape.
#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct TranscodeConfig {
    /// The site's storage: segments are listed there, outputs registered.
    pub storage: ServiceClient,
    pub workers: u32,
    pub encoder: Encoder,
    pub thumbnails: ThumbnailsConfig,
    /// Site → IANA time zone burned into viewer copies (absent without `spec.timeZone`).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub time_zones: BTreeMap<String, String>,
}

/// Which encoder jobs use, as the service spells it.
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Encoder {
    Auto,
    Software,
    /// One GStreamer element by name, e.g. `vah264enc`.
    #[serde(untagged)]
    Element(String),
}

impl From<&str> for Encoder {
    fn from(s: &str) -> Self {
        match s {
            "auto" => Encoder::Auto,
            "software" => Encoder::Software,
            other => Encoder::Element(other.to_string()),
        }
    }
}

/// A gRPC client of another service of the site, over mTLS with the workload's own certificate
/// (the services' `ServiceClientConfig`).
#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct ServiceClient {
    pub url: String,
    pub ca_file: String,
    pub cert_file: String,
    pub key_file: String,
}

#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct ThumbnailsConfig {
    pub automatic: bool,
    pub width: u32,
    /// Whose new segments get thumbnails: this site.
    pub sites: Vec<String>,
    /// A humantime duration, e.g. `30s`.
    pub poll: String,
}

/// Where transcode keeps its jobs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Jobs {
    /// The Site's PostgreSQL (`spec.database`).
    Database,
    /// SQLite in the data directory, on this retained claim.
    Sqlite { claim: String },
}

/// How a site's transcode runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// `spec.transcode.replicas`.
    pub asked: i32,
    /// Replicas the Deployment runs.
    pub replicas: i32,
    pub jobs: Jobs,
}

impl Plan {
    /// Fewer replicas run than asked.
    pub fn limited(&self) -> bool {
        self.replicas < self.asked
    }

    /// The claim of the data directory, when the jobs are in SQLite.
    pub fn claim(&self) -> Option<&str> {
        match &self.jobs {
            Jobs::Sqlite { claim } => Some(claim),
            Jobs::Database => None,
        }
    }
}

/// The claim of transcode's data directory when it keeps its jobs in SQLite.
pub fn claim_name(site: &str) -> String {
    format!("{site}-transcode-data")
}

/// Where `site` (named `name`) keeps its transcode jobs and how many replicas run.
pub fn plan(site: &Site, name: &str) -> Plan {
    let asked = site.spec.transcode.replicas.max(0);
    match site.spec.database {
        Some(_) => Plan {
            asked,
            replicas: asked,
            jobs: Jobs::Database,
        },
        None => Plan {
            asked,
            replicas: asked.min(1),
            jobs: Jobs::Sqlite {
                claim: claim_name(name),
            },
        },
    }
}

/// The `transcode` section for `site` (named `name` in `ns`).
pub fn config(site: &Site, name: &str, ns: &str) -> TranscodeConfig {
    let t = &site.spec.transcode;
    TranscodeConfig {
        storage: client(&component_name(name, "storage"), ns),
        workers: t.workers,
        encoder: Encoder::from(t.encoder.as_str()),
        thumbnails: ThumbnailsConfig {
            automatic: t.thumbnails.automatic,
            width: t.thumbnails.width,
            sites: vec![name.to_string()],
            poll: t.thumbnails.poll.clone(),
        },
        time_zones: site
            .spec
            .time_zone
            .iter()
            .map(|tz| (name.to_string(), tz.clone()))
            .collect(),
    }
}

/// How storage reaches the site's transcode for the viewer copies of evidence bundles
/// (`storage.transcode` of `site.yaml`), with storage's own certificate.
pub fn viewer_copies_client(name: &str, ns: &str) -> ServiceClient {
    client(&component_name(name, "transcode"), ns)
}

/// A client of the Service `service` in `ns`, presenting the workload's own certificate.
fn client(service: &str, ns: &str) -> ServiceClient {
    ServiceClient {
        url: format!("https://{service}.{ns}.svc:{GRPC_PORT}"),
        ca_file: format!("{TLS_DIR}/ca.crt"),
        cert_file: format!("{TLS_DIR}/tls.crt"),
        key_file: format!("{TLS_DIR}/tls.key"),
    }
}

/// What limits transcode, for the Site's Degraded condition and the Warning event.
pub fn problem(plan: &Plan) -> Option<String> {
    let claim = plan.claim()?;
    plan.limited().then(|| {
        format!(
            "spec.transcode.replicas is {}, but without spec.database transcode keeps its jobs \
             in SQLite on PersistentVolumeClaim {claim}, which one replica at a time may write: \
             {} runs; name a PostgreSQL database in spec.database to run more",
            plan.asked, plan.replicas
        )
    })
}

/// The Site's `Transcode` condition: True while transcode runs as `spec.transcode` asks
/// (reason `Database`, `SQLite` or `Off`), False with reason `ReplicasLimited` otherwise.
pub fn site_condition(
    plan: &Plan,
    previous: &[Condition],
    generation: Option<i64>,
    now: &Time,
) -> Condition {
    let (status, reason, message) = match (&plan.jobs, problem(plan)) {
        (_, Some(p)) => (FALSE, "ReplicasLimited", p),
        (_, None) if plan.replicas == 0 => (
            TRUE,
            "Off",
            "spec.transcode.replicas is 0: no renditions, thumbnails or viewer copies (evidence \
             exports with rendering fail)"
                .to_string(),
        ),
        (Jobs::Database, None) => (
            TRUE,
            "Database",
            format!(
                "{} replicas; jobs in the Site's database (spec.database)",
                plan.replicas
            ),
        ),
        (Jobs::Sqlite { claim }, None) => (
            TRUE,
            "SQLite",
            format!("1 replica; jobs in SQLite on PersistentVolumeClaim {claim}"),
        ),
    };
    condition(
        previous, CONDITION, status, reason, message, generation, now,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::DatabaseRef;
    use crate::fixtures::site;

    fn now() -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(1_800_000_000).unwrap())
    }

    fn with_database(mut s: Site) -> Site {
        s.spec.database = Some(DatabaseRef {
            secret_name: "burgas-db".into(),
            key: "url".into(),
        });
        s
    }

    #[test]
    fn sqlite_runs_one_replica_on_its_claim_and_says_so_when_more_were_asked() {
        let mut s = site("burgas", 1);
        let p = plan(&s, "burgas");
        assert_eq!(p.replicas, 1);
        assert_eq!(p.claim(), Some("burgas-transcode-data"));
        assert!(!p.limited() && problem(&p).is_none());
        let c = site_condition(&p, &[], Some(1), &now());
        assert_eq!((c.status.as_str(), c.reason.as_str()), (TRUE, "SQLite"));

        s.spec.transcode.replicas = 4;
        let p = plan(&s, "burgas");
        assert_eq!((p.asked, p.replicas), (4, 1));
        let c = site_condition(&p, &[], Some(2), &now());
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            (FALSE, "ReplicasLimited")
        );
        for want in [
            "replicas is 4",
            "burgas-transcode-data",
            "1 runs",
            "spec.database",
        ] {
            assert!(c.message.contains(want), "{want}: {}", c.message);
        }

        s.spec.transcode.replicas = 0;
        let p = plan(&s, "burgas");
        assert_eq!(p.replicas, 0);
        let c = site_condition(&p, &[], Some(3), &now());
        assert_eq!((c.status.as_str(), c.reason.as_str()), (TRUE, "Off"));
    }

    #[test]
    fn a_database_runs_every_replica_asked_without_a_claim() {
        let mut s = with_database(site("burgas", 1));
        s.spec.transcode.replicas = 4;
        let p = plan(&s, "burgas");
        assert_eq!((p.asked, p.replicas, p.claim()), (4, 4, None));
        let c = site_condition(&p, &[], Some(1), &now());
        assert_eq!((c.status.as_str(), c.reason.as_str()), (TRUE, "Database"));
        assert!(c.message.starts_with("4 replicas"), "{}", c.message);
    }

    #[test]
    fn the_section_reads_as_the_services_config_and_validates() {
        let mut s = site("burgas", 1);
        s.spec.time_zone = Some("Europe/Sofia".into());
        s.spec.transcode.workers = 3;
        s.spec.transcode.encoder = "vah264enc".into();
        s.spec.transcode.thumbnails.automatic = true;
        s.spec.transcode.thumbnails.width = 240;
        s.spec.transcode.thumbnails.poll = "1m30s".into();
        let section = serde_yaml::to_string(&config(&s, "burgas", "kordon")).unwrap();
        let c: kordon_transcode::TranscodeConfig = serde_yaml::from_str(&section)
            .unwrap_or_else(|e| panic!("the service refuses the section: {e}\n{section}"));
        c.validate().unwrap();
        assert_eq!(
            c.storage.url.as_deref(),
            Some("https://burgas-storage.kordon.svc:8470")
        );
        assert_eq!(
            c.storage.cert_file.as_deref(),
            Some(std::path::Path::new("/etc/kordon-tls/tls.crt"))
        );
        assert_eq!(c.workers, 3);
        assert_eq!(
            c.encoder,
            kordon_transcode::config::EncoderChoice::Element("vah264enc".into())
        );
        assert!(c.thumbnails.automatic);
        assert_eq!(c.thumbnails.width, 240);
        assert_eq!(c.thumbnails.sites, ["burgas"]);
        assert_eq!(c.thumbnails.poll, std::time::Duration::from_secs(90));
        assert_eq!(c.time_zones["burgas"], "Europe/Sofia");
        assert!(c.database_url.is_none(), "never a secret in the section");

        for (setting, want) in [
            ("auto", kordon_transcode::config::EncoderChoice::Auto),
            (
                "software",
                kordon_transcode::config::EncoderChoice::Software,
            ),
        ] {
            s.spec.transcode.encoder = setting.into();
            let section = serde_yaml::to_string(&config(&s, "burgas", "kordon")).unwrap();
            let c: kordon_transcode::TranscodeConfig = serde_yaml::from_str(&section).unwrap();
            assert_eq!(c.encoder, want, "{setting}");
        }
    }

    #[test]
    fn defaults_render_the_services_defaults_and_no_time_zone_without_one() {
        let s = site("yambol", 1);
        let section = serde_yaml::to_string(&config(&s, "yambol", "kordon")).unwrap();
        assert!(!section.contains("time_zones"), "{section}");
        let c: kordon_transcode::TranscodeConfig = serde_yaml::from_str(&section).unwrap();
        let d = kordon_transcode::TranscodeConfig::default();
        assert_eq!(c.workers, d.workers);
        assert_eq!(c.encoder, d.encoder);
        assert_eq!(c.thumbnails.automatic, d.thumbnails.automatic);
        assert_eq!(c.thumbnails.width, d.thumbnails.width);
        assert_eq!(c.thumbnails.poll, d.thumbnails.poll);
        assert!(c.time_zones.is_empty());
    }
}
