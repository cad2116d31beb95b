//! What a Site becomes in the cluster: pure functions from a Site, its Cameras and the
//! operator's configuration to the objects the Site reconciler applies.
//!
//! Per site `<s>` in its namespace:
//! - ConfigMap `<s>-config`: `site.yaml`, the `kordon` config every service of the site reads.
//!   It lists no camera, so its size does not grow with the site: each ingest and detection
//!   replica receives exactly its cameras (placed by [`crate::placement`]) from the Site
//!   reconciler over gRPC, credentials and recording mode included ([`crate::ingest`],
//!   [`crate::detection`]); a restarted replica gets them on the reconcile its StatefulSet's
//!   status change triggers.
//! - StatefulSet `<s>-ingest` (stable identities `<s>-ingest-0..N-1`, a spool volume per
//!   replica, each knowing its name from `KORDON_INGEST__REPLICA`) behind the headless Service
//!   `<s>-ingest`.
//! - StatefulSet `<s>-detection` (`spec.detection.replicas`, 0 = off; stable identities
//!   `<s>-detection-0..N-1`) behind the headless Service `<s>-detection`. Its pods read the
//!   shared `site.yaml`: each replica knows itself by its pod name, and receives its shard of
//!   cameras (with zones, masks and lines) from the Site reconciler over gRPC
//!   ([`crate::detection`]), so editing a zone touches no ConfigMap and restarts no pod.
//! - Deployments and Services `<s>-storage`, `<s>-transcode`, `<s>-alerting`. `site.yaml`
//!   carries the alerting service's rules and sinks (the `alerting` section, from the Site's
//!   AlertRules: [`crate::alerting`]); the alerting pods carry its digest
//!   ([`crate::alerting::CONFIG_ANNOTATION`]), so a rule change rolls them. It carries the
//!   transcode service's settings too (the `transcode` section, from `spec.transcode`:
//!   [`crate::transcode`]), and the transcode pods the digest of what transcode reads
//!   ([`crate::transcode::CONFIG_ANNOTATION`]); storage reaches transcode for the viewer
//!   copies of evidence bundles through `storage.transcode`.
//! - The partner link: with accepted Partners ([`crate::partner`]), `site.yaml` carries the
//!   `partners` section (this site's agreements with other installations) and the alerting
//!   and storage pods mount the partner-link certificate (at
//!   [`crate::partner::PARTNER_LINK_DIR`]) and each partner's CA (from its ConfigMap, at
//!   `<PARTNERS_DIR>/<partner site>/ca.crt`), listen on port 8473 (`partner-link`, also on their
//!   Services) and carry [`crate::partner::CONFIG_ANNOTATION`], so a changed agreement, a
//!   partner's new CA or a renewed partner-link certificate rolls them.
//! - PersistentVolumeClaims `<s>-storage-data` for storage's data directory (signing keys, and
//!   the SQLite index when no database is set), `<s>-alerting-data` for alerting's (its
//!   SQLite database of alerts when no database is set) and, only when no database is set,
//!   `<s>-transcode-data` for transcode's (its SQLite database of jobs and the parts of
//!   unfinished viewer copies; with a database transcode's data directory is scratch space,
//!   an `emptyDir`). They have no owner and survive the Site: they may hold evidence. Each
//!   has one replica writing it (transcode is held to one: [`crate::transcode::plan`]), and
//!   its workload is replaced with `Recreate`, never two pods at once.
//!
//! Everything but the claims carries the Site as controlling owner and the labels of
//! [`labels`], which the finalizer uses to find what to delete.
//!
//! Secrets never enter a ConfigMap: object-store keys and the database URL reach the pods as
//! environment variables from their Secrets, and webhook signing keys as files mounted from
//! theirs.
//!
//! Every workload serves gRPC over mTLS and calls its peers with its own certificate: the
//! Secret named in [`TlsMounts`] ([`crate::certificates`] issues them, or the Site's
//! `tlsSecret`) is mounted at `/etc/kordon-tls`, and its `ca.crt` is the only client CA the
//! services trust. No pod runs with the development identity.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::Resource;
use serde_json::{Value, json};

use crate::config::OperatorConfig;
use crate::crd::{AlertRule, Partner, Site};
use crate::{Error, Result};

pub const GRPC_PORT: i32 = 8470;
pub const ADMIN_PORT: i32 = 8471;
pub const HTTP_PORT: i32 = 8472;
const CONFIG_DIR: &str = "/etc/kordon";
pub(crate) const TLS_DIR: &str = "/etc/kordon-tls";
const DATA_DIR: &str = "/var/lib/kordon";
/// Spool volume of each ingest replica.
const SPOOL_SIZE: &str = "10Gi";
/// Data volume of storage.
const STORAGE_DATA_SIZE: &str = "10Gi";
/// Each detection replica's data volume: its detections database (SQLite) and the model file,
/// kept across restarts.
const DETECTION_DATA_SIZE: &str = "5Gi";
/// Data volume of alerting: its SQLite database of alerts (rows, no media) when the Site has no
/// database.
const ALERTING_DATA_SIZE: &str = "1Gi";
/// Data volume of transcode when the Site has no database: its SQLite database of jobs and the
/// parts of unfinished viewer copies (which resume from them after a restart).
const TRANSCODE_DATA_SIZE: &str = "10Gi";

/// Label: the site an object belongs to.
pub const SITE_LABEL: &str = "kordon.io/site";
/// Label: the component (ingest, storage, ...).
pub const COMPONENT_LABEL: &str = "app.kubernetes.io/component";
/// Label: who manages the object.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";

/// The services run as Deployments (ingest and detection are StatefulSets: [`SHARDED`]).
pub const DEPLOYED: [&str; 3] = ["storage", "transcode", "alerting"];
/// The services whose replicas each own a shard of the site's cameras, as StatefulSets behind
/// headless Services.
pub const SHARDED: [&str; 2] = ["ingest", "detection"];

/// The ConfigMap of per-replica ingest configs (with camera lists) that earlier versions
/// rendered; the Site reconciler deletes it.
pub fn legacy_ingest_config_name(site: &str) -> String {
    format!("{site}-ingest")
}

pub fn component_name(site: &str, component: &str) -> String {
    format!("{site}-{component}")
}

pub fn site_config_name(site: &str) -> String {
    format!("{site}-config")
}

pub fn storage_claim_name(site: &str) -> String {
    format!("{site}-storage-data")
}

pub fn alerting_claim_name(site: &str) -> String {
    format!("{site}-alerting-data")
}

/// The claim of a component's data directory, where it has one of its own (not per replica):
/// storage's and alerting's always, transcode's while it keeps its jobs in SQLite.
fn data_claim_name(site: &Site, name: &str, component: &str) -> Option<String> {
    match component {
        "storage" => Some(storage_claim_name(name)),
        "alerting" => Some(alerting_claim_name(name)),
        "transcode" => crate::transcode::plan(site, name)
            .claim()
            .map(str::to_string),
        _ => None,
    }
}

/// The claims the operator never deletes (they may hold evidence), whether or not they exist.
pub fn retained_claim_names(site: &str) -> [String; 3] {
    [
        storage_claim_name(site),
        alerting_claim_name(site),
        crate::transcode::claim_name(site),
    ]
}

/// The labels every object of a site's component carries.
pub fn labels(site: &str, component: &str) -> BTreeMap<String, String> {
    let mut l = selector(site, component);
    l.insert("app.kubernetes.io/name".into(), "kordon".into());
    l.insert(MANAGED_BY_LABEL.into(), crate::config::FIELD_MANAGER.into());
    l
}

/// The labels that select a component's pods.
pub fn selector(site: &str, component: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (SITE_LABEL.to_string(), site.to_string()),
        (COMPONENT_LABEL.to_string(), component.to_string()),
    ])
}

/// The label selector of everything the operator made for a site.
pub fn site_selector(site: &str) -> String {
    format!(
        "{SITE_LABEL}={site},{MANAGED_BY_LABEL}={}",
        crate::config::FIELD_MANAGER
    )
}

/// The label selector of a site's ingest pods (the scale subresource's selector).
pub fn ingest_pod_selector(site: &str) -> String {
    format!("{SITE_LABEL}={site},{COMPONENT_LABEL}=ingest")
}

/// Which Secret each workload mounts for mTLS, and what the services are told about it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TlsMounts {
    /// Component → Secret (`tls.crt`, `tls.key`, `ca.crt`) mounted at `/etc/kordon-tls`.
    pub secrets: BTreeMap<String, String>,
    /// Component → fingerprint of its certificate, a pod template annotation: a new
    /// certificate rolls the pods.
    pub revisions: BTreeMap<String, String>,
    /// Rendered as `auth.mtls.subjects` (a user certificate without a Kordon identity).
    pub subjects: BTreeMap<String, Vec<String>>,
    /// The Secret (`tls.crt`, `tls.key`) the partner link presents, when the Site has a
    /// `spec.partnerLink`: the operator's `<site>-partner-link-tls`, or the user's
    /// `tlsSecret`. Its fingerprint is `revisions["partner-link"]`.
    pub partner_link: Option<String>,
}

impl TlsMounts {
    /// Each workload its own operator-issued Secret.
    pub fn operator(site: &str) -> Self {
        let secrets = crate::certificates::COMPONENTS
            .iter()
            .map(|c| {
                (
                    c.to_string(),
                    crate::certificates::cert_secret_name(site, c),
                )
            })
            .collect();
        TlsMounts {
            secrets,
            ..TlsMounts::default()
        }
    }

    /// Every workload the same user-supplied Secret.
    pub fn from_secret(secret: &str) -> Self {
        let secrets = crate::certificates::COMPONENTS
            .iter()
            .map(|c| (c.to_string(), secret.to_string()))
            .collect();
        TlsMounts {
            secrets,
            ..TlsMounts::default()
        }
    }

    /// What a Site mounts before anything is known of its certificates.
    pub fn for_site(site: &Site) -> Self {
        let name = site.metadata.name.as_deref().unwrap_or_default();
        let mut mounts = match &site.spec.tls_secret {
            Some(secret) => Self::from_secret(secret),
            None => Self::operator(name),
        };
        if site.spec.partner_link.is_some() {
            mounts.partner_link = Some(match &site.spec.tls_secret {
                Some(secret) => secret.clone(),
                None => crate::certificates::cert_secret_name(name, crate::partner::LINK_COMPONENT),
            });
        }
        mounts
    }
}

/// Pod template annotation: the fingerprint of the workload's certificate.
pub const CERT_ANNOTATION: &str = "kordon.io/certificate-sha256";

/// Everything applied for one site.
#[derive(Debug, Clone)]
pub struct SiteObjects {
    pub config_maps: Vec<ConfigMap>,
    pub services: Vec<Service>,
    /// Ingest, then detection.
    pub statefulsets: Vec<StatefulSet>,
    pub deployments: Vec<Deployment>,
    /// Storage's, alerting's, then (jobs in SQLite) transcode's data claim (retained: no owner).
    pub claims: Vec<PersistentVolumeClaim>,
}

/// The objects of `site` without partners (see [`render_with_partners`]).
pub fn render(
    site: &Site,
    config: &OperatorConfig,
    tls: &TlsMounts,
    rules: &[AlertRule],
) -> Result<SiteObjects> {
    render_with_partners(site, config, tls, rules, &[], &[])
}

/// The objects of `site`; `tls` says what each workload mounts for mTLS; `rules` are the
/// Site's AlertRules (those not accepted are left out, see [`crate::alerting::verdict`]);
/// `partners` are its accepted Partners ([`crate::partner::accepted`]; those of another Site
/// are ignored). Partners are rendered only when `tls` names a partner-link certificate.
/// `auth_keys` are the SHA-256 of each `spec.auth.jwt` key ([`crate::auth::check_keys`]).
pub fn render_with_partners(
    site: &Site,
    config: &OperatorConfig,
    tls: &TlsMounts,
    rules: &[AlertRule],
    partners: &[crate::partner::AcceptedPartner],
    auth_keys: &[String],
) -> Result<SiteObjects> {
    let name = site
        .metadata
        .name
        .as_deref()
        .ok_or(Error::MissingField("metadata.name"))?;
    let ns = site
        .metadata
        .namespace
        .as_deref()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let owner = owner_reference(site)?;

    let mut base = base_config(site, name, ns, tls);
    let alerting =
        serde_json::to_value(crate::alerting::config(site, name, ns, rules)).map_err(|e| {
            Error::Render {
                what: "alerting".into(),
                message: e.to_string(),
            }
        })?;
    let alerting_digest = crate::pki::sha256_hex(to_yaml(&alerting, "alerting")?.as_bytes());
    base["alerting"] = alerting;
    let transcode =
        serde_json::to_value(crate::transcode::config(site, name, ns)).map_err(|e| {
            Error::Render {
                what: "transcode".into(),
                message: e.to_string(),
            }
        })?;
    // What transcode reads: its section, and the bucket it reads segments from and writes to.
    let transcode_reads = json!({
        "transcode": transcode,
        "objects": base["storage"]["objects"],
        "object_prefix": base["storage"].get("object_prefix"),
    });
    let transcode_digest =
        crate::pki::sha256_hex(to_yaml(&transcode_reads, "transcode")?.as_bytes());
    base["transcode"] = transcode;
    let transcode_plan = crate::transcode::plan(site, name);
    let mut rendered: Vec<&crate::partner::AcceptedPartner> = match &tls.partner_link {
        Some(_) => partners
            .iter()
            .filter(|a| {
                a.partner.spec.site == name && crate::partner::to_config(&a.partner).is_ok()
            })
            .collect(),
        None => Vec::new(),
    };
    rendered.sort_by(|a, b| {
        a.partner
            .spec
            .partner_site
            .cmp(&b.partner.spec.partner_site)
    });
    let partners: Vec<Partner> = rendered.iter().map(|a| a.partner.clone()).collect();
    let mut partners_digest = None;
    if let Some(section) = crate::partner::section(name, &partners) {
        let section = serde_json::to_value(section).map_err(|e| Error::Render {
            what: "partners".into(),
            message: e.to_string(),
        })?;
        let certificate = tls
            .revisions
            .get(crate::partner::LINK_COMPONENT)
            .cloned()
            .unwrap_or_default();
        let mut text = format!("{}\n{certificate}\n", to_yaml(&section, "partners")?);
        for a in &rendered {
            text.push_str(&format!(
                "{} {}\n",
                a.partner.spec.partner_site, a.ca_sha256
            ));
        }
        partners_digest = Some(crate::pki::sha256_hex(text.as_bytes()));
        base["partners"] = section;
    }
    // People's sign-in: the same section and keys in every pod (they all read site.yaml).
    let mut everywhere = BTreeMap::new();
    if let Some(auth) = &site.spec.auth {
        let jwt =
            serde_json::to_value(crate::auth::section(&auth.jwt)).map_err(|e| Error::Render {
                what: "auth".into(),
                message: e.to_string(),
            })?;
        let digest = crate::auth::digest(&to_yaml(&jwt, "auth")?, auth_keys);
        everywhere.insert(crate::auth::CONFIG_ANNOTATION.to_string(), digest);
        if base.get("auth").is_none() {
            base["auth"] = json!({});
        }
        base["auth"]["jwt"] = jwt;
    }
    let site_yaml = to_yaml(&base, "site.yaml")?;

    let config_maps = vec![typed(
        json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": meta(&site_config_name(name), ns, name, "config", &owner),
            "data": { "site.yaml": site_yaml },
        }),
        "ConfigMap",
    )?];

    let mut services = Vec::new();
    for component in SHARDED {
        services.push(typed(
            json!({
                "apiVersion": "v1", "kind": "Service",
                "metadata": meta(&component_name(name, component), ns, name, component, &owner),
                "spec": {
                    // Headless: each replica is reachable by its stable name.
                    "clusterIP": "None",
                    "publishNotReadyAddresses": true,
                    "selector": selector(name, component),
                    "ports": ports(component),
                },
            }),
            "Service",
        )?);
    }
    for component in DEPLOYED {
        services.push(typed(
            json!({
                "apiVersion": "v1", "kind": "Service",
                "metadata": meta(&component_name(name, component), ns, name, component, &owner),
                "spec": {
                    "selector": selector(name, component),
                    "ports": ports(component),
                },
            }),
            "Service",
        )?);
    }

    let mut statefulsets = Vec::new();
    for component in SHARDED {
        let ingest = component == "ingest";
        let mut spec = json!({
            "replicas": if ingest { site.spec.ingest.replicas } else { site.spec.detection.replicas },
            "serviceName": component_name(name, component),
            // Replicas are independent shards: start and stop them together.
            "podManagementPolicy": "Parallel",
            "selector": { "matchLabels": selector(name, component) },
            "template": pod_template(site, name, component, config, tls, &everywhere, &[]),
        });
        spec["volumeClaimTemplates"] = json!([{
            "metadata": { "name": if ingest { "spool" } else { "data" } },
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "resources": {
                    "requests": { "storage": if ingest { SPOOL_SIZE } else { DETECTION_DATA_SIZE } },
                },
            },
        }]);
        statefulsets.push(typed(
            json!({
                "apiVersion": "apps/v1", "kind": "StatefulSet",
                "metadata": meta(&component_name(name, component), ns, name, component, &owner),
                "spec": spec,
            }),
            "StatefulSet",
        )?);
    }

    let mut deployments = Vec::new();
    for component in DEPLOYED {
        let replicas = match component {
            // At most one writer of a SQLite file of jobs.
            "transcode" => transcode_plan.replicas,
            // The index and the access log have one writer per site.
            _ => 1,
        };
        // One writer of its claim at a time.
        let strategy = if data_claim_name(site, name, component).is_some() {
            json!({ "type": "Recreate" })
        } else {
            json!({ "type": "RollingUpdate" })
        };
        let mut annotations = everywhere.clone();
        annotations.extend(match component {
            "alerting" => BTreeMap::from([(
                crate::alerting::CONFIG_ANNOTATION.to_string(),
                alerting_digest.clone(),
            )]),
            "transcode" => BTreeMap::from([(
                crate::transcode::CONFIG_ANNOTATION.to_string(),
                transcode_digest.clone(),
            )]),
            _ => BTreeMap::new(),
        });
        let linked = LINKED.contains(&component);
        if linked && let Some(d) = &partners_digest {
            annotations.insert(crate::partner::CONFIG_ANNOTATION.to_string(), d.clone());
        }
        let mounted: &[Partner] = if linked && partners_digest.is_some() {
            &partners
        } else {
            &[]
        };
        deployments.push(typed(
            json!({
                "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": meta(&component_name(name, component), ns, name, component, &owner),
                "spec": {
                    "replicas": replicas,
                    "strategy": strategy,
                    "selector": { "matchLabels": selector(name, component) },
                    "template": pod_template(site, name, component, config, tls, &annotations, mounted),
                },
            }),
            "Deployment",
        )?);
    }

    let mut claims = Vec::new();
    let transcode_claim = transcode_plan
        .claim()
        .map(|c| (c.to_string(), "transcode", TRANSCODE_DATA_SIZE));
    for (claim, component, size) in [
        (storage_claim_name(name), "storage", STORAGE_DATA_SIZE),
        (alerting_claim_name(name), "alerting", ALERTING_DATA_SIZE),
    ]
    .into_iter()
    .chain(transcode_claim)
    {
        let mut claim_meta = json!({
            "name": claim,
            "namespace": ns,
            "labels": labels(name, component),
        });
        // Deliberately no owner: the claim may hold evidence and outlives the Site.
        claim_meta["annotations"] = json!({ "kordon.io/retained": "true" });
        claims.push(typed(
            json!({
                "apiVersion": "v1", "kind": "PersistentVolumeClaim",
                "metadata": claim_meta,
                "spec": {
                    "accessModes": ["ReadWriteOnce"],
                    "resources": { "requests": { "storage": size } },
                },
            }),
            "PersistentVolumeClaim",
        )?);
    }

    Ok(SiteObjects {
        config_maps,
        services,
        statefulsets,
        deployments,
        claims,
    })
}

/// The Site as controlling owner, so the objects go when it goes (with garbage collection).
pub fn owner_reference(site: &Site) -> Result<OwnerReference> {
    site.controller_owner_ref(&())
        .ok_or(Error::MissingField("metadata.uid"))
}

fn meta(name: &str, ns: &str, site: &str, component: &str, owner: &OwnerReference) -> Value {
    json!({
        "name": name,
        "namespace": ns,
        "labels": labels(site, component),
        "ownerReferences": [owner],
    })
}

/// The components serving the partner link (alerting: agreements and shared alerts; storage:
/// footage requests).
pub const LINKED: [&str; 2] = ["alerting", "storage"];

fn ports(component: &str) -> Value {
    let mut p = vec![
        json!({ "name": "grpc", "port": GRPC_PORT, "targetPort": "grpc", "appProtocol": "grpc" }),
        json!({ "name": "admin", "port": ADMIN_PORT, "targetPort": "admin" }),
    ];
    if component == "storage" {
        p.push(json!({ "name": "http", "port": HTTP_PORT, "targetPort": "http" }));
    }
    if LINKED.contains(&component) {
        let port = crate::partner::PARTNER_LINK_PORT;
        p.push(json!({ "name": "partner-link", "port": port, "targetPort": "partner-link", "appProtocol": "grpc" }));
    }
    Value::Array(p)
}

/// The `kordon` configuration every service of the site shares.
fn base_config(site: &Site, name: &str, ns: &str, tls: &TlsMounts) -> Value {
    let st = &site.spec.storage;
    let mut objects = json!({
        "kind": "s3",
        "bucket": st.bucket,
        "region": st.region.clone().unwrap_or_else(|| "us-east-1".into()),
    });
    if let Some(endpoint) = &st.endpoint {
        objects["endpoint"] = json!(endpoint);
        objects["allow_http"] = json!(endpoint.starts_with("http://"));
    }
    if st.object_lock
        && let Some(days) = st.retention_days
    {
        objects["object_lock"] = json!({ "mode": "compliance", "retain_days": days });
    }
    let mut storage = json!({ "objects": objects, "http_listen": format!("0.0.0.0:{HTTP_PORT}") });
    if let Some(days) = st.retention_days {
        storage["default_retention"] = json!(format!("{days}days"));
    }
    // The viewer copies of evidence bundles come from the site's transcode.
    storage["transcode"] = json!(crate::transcode::viewer_copies_client(name, ns));
    // The web console, served by storage, reaches ingest, detection and alerting through it
    // (kordon_storage::gateway): each by its Service's name, the headless ones resolving to
    // every replica, so scaling changes nothing here.
    let service_url = |component: &str| {
        format!(
            "https://{}.{ns}.svc:{GRPC_PORT}",
            component_name(name, component)
        )
    };
    let mut gateway = json!({
        "ingest": service_url("ingest"),
        "alerting": service_url("alerting"),
        "ca_file": format!("{TLS_DIR}/ca.crt"),
    });
    if site.spec.detection.replicas > 0 {
        gateway["detection"] = json!(service_url("detection"));
    }
    storage["gateway"] = gateway;
    let storage_client = json!({
        "url": service_url("storage"),
        "ca_file": format!("{TLS_DIR}/ca.crt"),
        "cert_file": format!("{TLS_DIR}/tls.crt"),
        "key_file": format!("{TLS_DIR}/tls.key"),
    });
    let mut cfg = json!({
        "grpc_listen": format!("0.0.0.0:{GRPC_PORT}"),
        "admin_listen": format!("0.0.0.0:{ADMIN_PORT}"),
        "http_listen": format!("0.0.0.0:{HTTP_PORT}"),
        "data_dir": DATA_DIR,
        "log": { "format": "json", "filter": "info" },
        "storage": storage,
        "ingest": {},
        "tls": {
            "cert_file": format!("{TLS_DIR}/tls.crt"),
            "key_file": format!("{TLS_DIR}/tls.key"),
            "client_ca_file": format!("{TLS_DIR}/ca.crt"),
        },
    });
    if !tls.subjects.is_empty() {
        cfg["auth"] = json!({ "mtls": { "subjects": tls.subjects } });
    }
    cfg["ingest"]["storage"] = storage_client.clone();
    if let Some(s) = site.spec.ingest.segment_seconds {
        cfg["ingest"]["segment_duration"] = json!(format!("{s}s"));
    }
    // Detection registers its snapshots with storage like ingest its segments.
    cfg["detection"] = json!({ "storage": storage_client });
    cfg
}

/// An environment variable holding a field of the pod itself (downward API).
fn pod_field(name: &str, field_path: &str) -> Value {
    json!({ "name": name, "valueFrom": { "fieldRef": { "fieldPath": field_path } } })
}

/// The pod template of `component`, with `annotations` besides the certificate's; `partners`
/// (rendered ones, alerting and storage only) get their CA mounted, and the partner-link
/// certificate with them.
fn pod_template(
    site: &Site,
    name: &str,
    component: &str,
    config: &OperatorConfig,
    tls: &TlsMounts,
    annotations: &BTreeMap<String, String>,
    partners: &[Partner],
) -> Value {
    let ingest = component == "ingest";
    let config_file = format!("{CONFIG_DIR}/site.yaml");
    // No GST_REGISTRY here: the image carries GStreamer's plugin registry, written when it was
    // built (docs/image.md); pointing it elsewhere would make every pod scan the plugins again.
    let mut env = vec![pod_field("POD_NAME", "metadata.name")];
    if ingest {
        // Stored with every segment it records.
        env.push(pod_field("KORDON_INGEST__REPLICA", "metadata.name"));
    }
    if let Some(secret) = &site.spec.storage.credentials_secret {
        for (var, key) in [
            ("AWS_ACCESS_KEY_ID", "accessKeyId"),
            ("AWS_SECRET_ACCESS_KEY", "secretAccessKey"),
        ] {
            env.push(json!({
                "name": var,
                "valueFrom": { "secretKeyRef": { "name": secret, "key": key } },
            }));
        }
    }
    if component == "detection" {
        // Which replica and shard this pod is: its name, and the StatefulSet's ordinal label.
        env.push(pod_field("KORDON_DETECTION__REPLICA", "metadata.name"));
        env.push(pod_field(
            "KORDON_DETECTION__SHARD_INDEX",
            "metadata.labels['apps.kubernetes.io/pod-index']",
        ));
    }
    if component == "alerting" {
        // Which replica raised an alert, as detection and ingest know theirs.
        env.push(pod_field("KORDON_ALERTING__REPLICA", "metadata.name"));
    }
    // Storage's index, alerting's alerts and transcode's jobs live in the Site's database when
    // it has one (otherwise SQLite in their data claims).
    if let Some(db) = &site.spec.database
        && let Some(var) = match component {
            "storage" => Some("KORDON_STORAGE__DATABASE_URL"),
            "alerting" => Some("KORDON_ALERTING__DATABASE_URL"),
            "transcode" => Some(crate::transcode::DATABASE_URL_ENV),
            _ => None,
        }
    {
        env.push(json!({
            "name": var,
            "valueFrom": { "secretKeyRef": { "name": db.secret_name, "key": db.key } },
        }));
    }
    let mut mounts = vec![
        json!({ "name": "config", "mountPath": CONFIG_DIR, "readOnly": true }),
        json!({ "name": if ingest { "spool" } else { "data" }, "mountPath": DATA_DIR }),
    ];
    let mut volumes =
        vec![json!({ "name": "config", "configMap": { "name": site_config_name(name) } })];
    // Ingest and detection have a claim per replica (the StatefulSets' templates).
    if !SHARDED.contains(&component) {
        match data_claim_name(site, name, component) {
            Some(claim) => volumes.push(json!({
                "name": "data",
                "persistentVolumeClaim": { "claimName": claim },
            })),
            None => volumes.push(json!({ "name": "data", "emptyDir": {} })),
        }
    }
    if component == "alerting" {
        // Each signed webhook's key, read-only at <SINKS_DIR>/<sink>/key. Volume names are
        // by position: a sink name may be as long as a volume name may be.
        for (i, sink) in site.spec.alert_sinks.iter().enumerate() {
            // The receiver's CA, when the sink names one.
            if let Some(ca) = sink.webhook.as_ref().and_then(|w| w.ca.as_ref()) {
                let (mount, volume) = ca_volume(
                    &format!("sink-ca-{i}"),
                    &crate::alerting::sink_ca_dir(&sink.name),
                    ca,
                );
                mounts.push(mount);
                volumes.push(volume);
            }
            let Some(secret) = sink
                .webhook
                .as_ref()
                .and_then(|w| w.signing_secret.as_ref())
            else {
                continue;
            };
            let volume = format!("sink-{i}");
            mounts.push(json!({
                "name": volume,
                "mountPath": crate::alerting::sink_dir(&sink.name),
                "readOnly": true,
            }));
            volumes.push(json!({
                "name": volume,
                "secret": {
                    "secretName": secret,
                    "items": [{ "key": crate::alerting::SIGNING_KEY, "path": crate::alerting::SIGNING_KEY }],
                    // Readable by the pod's group (fsGroup) only.
                    "defaultMode": 0o440,
                },
            }));
        }
    }
    if let Some(auth) = &site.spec.auth {
        mounts.push(
            json!({ "name": "auth-keys", "mountPath": crate::auth::AUTH_DIR, "readOnly": true }),
        );
        volumes.push(crate::auth::volume(&auth.jwt));
    }
    if let Some(secret) = tls.secrets.get(component) {
        mounts.push(json!({ "name": "tls", "mountPath": TLS_DIR, "readOnly": true }));
        volumes.push(json!({ "name": "tls", "secret": { "secretName": secret } }));
    }
    if let (Some(secret), false) = (&tls.partner_link, partners.is_empty()) {
        use crate::partner::PARTNER_LINK_DIR;
        mounts.push(
            json!({ "name": "partner-link", "mountPath": PARTNER_LINK_DIR, "readOnly": true }),
        );
        volumes.push(json!({
            "name": "partner-link",
            "secret": {
                "secretName": secret,
                "items": [
                    { "key": "tls.crt", "path": "tls.crt" },
                    { "key": "tls.key", "path": "tls.key" },
                ],
                "defaultMode": 0o440,
            },
        }));
        // Each partner's CA at <PARTNERS_DIR>/<partner site>/ca.crt. Volume names are by
        // position: a partner site may be as long as a volume name may be.
        for (i, p) in partners.iter().enumerate() {
            let dir = format!("{}/{}", crate::partner::PARTNERS_DIR, p.spec.partner_site);
            let (mount, volume) = ca_volume(&format!("partner-{i}"), &dir, &p.spec.ca);
            mounts.push(mount);
            volumes.push(volume);
        }
    }
    let mut container_ports = vec![
        json!({ "name": "grpc", "containerPort": GRPC_PORT }),
        json!({ "name": "admin", "containerPort": ADMIN_PORT }),
    ];
    if component == "storage" {
        container_ports.push(json!({ "name": "http", "containerPort": HTTP_PORT }));
    }
    if LINKED.contains(&component) {
        container_ports.push(
            json!({ "name": "partner-link", "containerPort": crate::partner::PARTNER_LINK_PORT }),
        );
    }
    let mut container = json!({
        "name": component,
        "image": config.image,
        "args": [component, "--config", config_file],
        "env": env,
        "ports": container_ports,
        "volumeMounts": mounts,
        "readinessProbe": { "httpGet": { "path": "/ready", "port": "admin" }, "periodSeconds": 5 },
        "livenessProbe": {
            "httpGet": { "path": "/live", "port": "admin" },
            "periodSeconds": 10,
            "failureThreshold": 6,
        },
        "securityContext": {
            "allowPrivilegeEscalation": false,
            "readOnlyRootFilesystem": true,
            "runAsNonRoot": true,
            "capabilities": { "drop": ["ALL"] },
        },
    });
    if let Some(p) = &config.image_pull_policy {
        container["imagePullPolicy"] = json!(p);
    }
    let mut metadata = json!({ "labels": labels(name, component) });
    let mut annotations = annotations.clone();
    if let Some(fp) = tls.revisions.get(component) {
        annotations.insert(CERT_ANNOTATION.to_string(), fp.clone());
    }
    if !annotations.is_empty() {
        metadata["annotations"] = json!(annotations);
    }
    json!({
        "metadata": metadata,
        "spec": {
            // Ingest finishes and uploads its open segment on SIGTERM.
            "terminationGracePeriodSeconds": if ingest { 60 } else { 30 },
            "securityContext": { "runAsUser": 65532, "runAsGroup": 65532, "fsGroup": 65532 },
            "containers": [container],
            "volumes": volumes,
        },
    })
}

/// The mount and volume of a CA certificate from a ConfigMap, read-only at `<dir>/ca.crt`.
fn ca_volume(volume: &str, dir: &str, ca: &crate::crd::PartnerCaRef) -> (Value, Value) {
    (
        json!({ "name": volume, "mountPath": dir, "readOnly": true }),
        json!({
            "name": volume,
            "configMap": {
                "name": ca.config_map_name,
                "items": [{ "key": ca.key, "path": "ca.crt" }],
            },
        }),
    )
}

fn to_yaml(v: &Value, what: &str) -> Result<String> {
    serde_yaml::to_string(v).map_err(|e| Error::Render {
        what: what.to_string(),
        message: e.to_string(),
    })
}

fn typed<T: serde::de::DeserializeOwned>(v: Value, what: &str) -> Result<T> {
    serde_json::from_value(v).map_err(|e| Error::Render {
        what: what.to_string(),
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::site;

    /// The objects of `s` with no cameras, mounting what its TLS settings say.
    fn rendered(s: &Site) -> SiteObjects {
        render(s, &OperatorConfig::default(), &TlsMounts::for_site(s), &[]).unwrap()
    }

    fn yaml_of(cm: &ConfigMap, key: &str) -> serde_yaml::Value {
        let text = cm.data.as_ref().and_then(|d| d.get(key)).expect(key);
        serde_yaml::from_str(text).unwrap()
    }

    #[test]
    fn the_site_config_lists_no_camera_and_ingest_knows_its_replica_from_its_pod() {
        let mut s = site("burgas", 3);
        s.spec.ingest.segment_seconds = Some(4);
        let objs = rendered(&s);
        assert_eq!(objs.config_maps.len(), 1, "no per-replica ConfigMap");
        let cfg = yaml_of(&objs.config_maps[0], "site.yaml");
        assert!(cfg.get("sites").is_none(), "cameras travel over gRPC");
        assert_eq!(cfg["ingest"]["segment_duration"].as_str(), Some("4s"));
        // The console's gateway names Services, not replicas: scaling leaves storage alone.
        let gateway = &cfg["storage"]["gateway"];
        assert_eq!(
            gateway["ingest"].as_str(),
            Some("https://burgas-ingest.kordon.svc:8470")
        );
        assert_eq!(
            gateway["alerting"].as_str(),
            Some("https://burgas-alerting.kordon.svc:8470")
        );
        assert_eq!(gateway["ca_file"].as_str(), Some("/etc/kordon-tls/ca.crt"));
        let mut scaled = s.clone();
        scaled.spec.ingest.replicas = 5;
        assert_eq!(
            yaml_of(&rendered(&scaled).config_maps[0], "site.yaml")["storage"],
            cfg["storage"]
        );
        let t = pod_spec(&objs.statefulsets[0].spec.template);
        let container = &t["spec"]["containers"][0];
        assert_eq!(
            container["args"],
            json!(["ingest", "--config", "/etc/kordon/site.yaml"])
        );
        let replica = container["env"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == json!("KORDON_INGEST__REPLICA"))
            .expect("KORDON_INGEST__REPLICA");
        assert_eq!(
            replica["valueFrom"]["fieldRef"]["fieldPath"],
            json!("metadata.name")
        );
    }

    #[test]
    fn rendered_configs_parse_as_the_kordon_config_shape() {
        let mut s = site("edirne", 1);
        s.spec.storage.endpoint = Some("http://rgw.storage:7480".into());
        s.spec.storage.retention_days = Some(30);
        s.spec.storage.object_lock = true;
        let objs = rendered(&s);
        let cfg = yaml_of(&objs.config_maps[0], "site.yaml");
        assert_eq!(cfg["storage"]["objects"]["kind"].as_str(), Some("s3"));
        assert_eq!(
            cfg["storage"]["objects"]["allow_http"].as_bool(),
            Some(true)
        );
        assert_eq!(
            cfg["storage"]["objects"]["object_lock"]["retain_days"].as_i64(),
            Some(30)
        );
        assert_eq!(cfg["storage"]["default_retention"].as_str(), Some("30days"));
        assert_eq!(
            cfg["ingest"]["storage"]["url"].as_str(),
            Some("https://edirne-storage.kordon.svc:8470")
        );
        let humantime: std::time::Duration =
            humantime::parse_duration(cfg["storage"]["default_retention"].as_str().unwrap())
                .unwrap();
        assert_eq!(humantime.as_secs(), 30 * 86_400);
    }

    #[test]
    fn workloads_are_owned_labelled_and_keep_secrets_out_of_config_maps() {
        let mut s = site("yambol", 4);
        s.spec.storage.credentials_secret = Some("yambol-s3".into());
        s.spec.database = Some(crate::crd::DatabaseRef {
            secret_name: "yambol-db".into(),
            key: "url".into(),
        });
        let objs = rendered(&s);
        let sts = &objs.statefulsets[0];
        let spec = &sts.spec;
        assert_eq!(spec.replicas, Some(4));
        assert_eq!(spec.service_name.as_deref(), Some("yambol-ingest"));
        let owner = &sts.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(owner.kind, "Site");
        assert_eq!(owner.controller, Some(true));
        assert_eq!(objs.deployments.len(), 3);
        assert_eq!(objs.services.len(), 5);
        let storage = serde_json::to_string(&objs.deployments[0]).unwrap();
        assert!(
            storage.contains("KORDON_STORAGE__DATABASE_URL"),
            "{storage}"
        );
        assert!(storage.contains("yambol-s3"), "{storage}");
        for cm in &objs.config_maps {
            let text = serde_json::to_string(cm).unwrap();
            assert!(!text.contains("yambol-db") && !text.contains("secretAccessKey"));
        }
        for claim in &objs.claims {
            assert!(claim.metadata.owner_references.is_none());
        }
        let args =
            serde_json::to_value(&spec.template).unwrap()["spec"]["containers"][0]["args"].clone();
        assert_eq!(args, json!(["ingest", "--config", "/etc/kordon/site.yaml"]));
    }

    #[test]
    fn detection_is_a_headless_statefulset_of_its_own_replicas_reading_the_site_config() {
        let mut s = site("haskovo", 2);
        s.spec.detection.replicas = 3;
        let objs = rendered(&s);
        let sts = &objs.statefulsets[1];
        assert_eq!(sts.metadata.name.as_deref(), Some("haskovo-detection"));
        let spec = &sts.spec;
        assert_eq!(spec.replicas, Some(3));
        assert_eq!(spec.service_name.as_deref(), Some("haskovo-detection"));
        assert_eq!(spec.pod_management_policy.as_deref(), Some("Parallel"));
        let claims = pod_spec(&spec.volume_claim_templates);
        assert_eq!(
            claims[0]["metadata"]["name"],
            json!("data"),
            "its database survives restarts"
        );
        let t = pod_spec(&spec.template);
        let container = &t["spec"]["containers"][0];
        assert_eq!(
            container["args"],
            json!(["detection", "--config", "/etc/kordon/site.yaml"])
        );
        let env: Vec<&str> = container["env"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|e| e["name"].as_str())
            .collect();
        assert!(env.contains(&"KORDON_DETECTION__REPLICA"), "{env:?}");
        assert!(env.contains(&"KORDON_DETECTION__SHARD_INDEX"), "{env:?}");
        assert!(
            t["spec"]["volumes"]
                .as_array()
                .unwrap()
                .iter()
                .all(|v| v["name"] != json!("data")),
            "the data volume is the claim, not an emptyDir"
        );
        // The site config tells detection where storage is (it refuses to start without).
        let cm = objs
            .config_maps
            .iter()
            .find(|c| c.metadata.name.as_deref() == Some("haskovo-config"))
            .unwrap();
        let cfg: Value = serde_yaml::from_str(&cm.data.as_ref().unwrap()["site.yaml"]).unwrap();
        assert_eq!(
            cfg["detection"]["storage"]["url"].as_str(),
            Some("https://haskovo-storage.kordon.svc:8470")
        );
        let svc = objs
            .services
            .iter()
            .find(|s| s.metadata.name.as_deref() == Some("haskovo-detection"))
            .unwrap();
        assert_eq!(
            svc.spec.as_ref().unwrap().cluster_ip.as_deref(),
            Some("None")
        );
        assert!(
            objs.deployments
                .iter()
                .all(|d| d.metadata.name.as_deref() != Some("haskovo-detection"))
        );

        s.spec.detection.replicas = 0;
        let off = rendered(&s);
        assert_eq!(off.statefulsets[1].spec.replicas, Some(0));
    }

    /// The alerting Deployment's pod template.
    fn alerting_pod(objs: &SiteObjects) -> Value {
        let d = objs
            .deployments
            .iter()
            .find(|d| {
                d.metadata
                    .name
                    .as_deref()
                    .is_some_and(|n| n.ends_with("-alerting"))
            })
            .expect("alerting Deployment");
        pod_spec(&d.spec.template)
    }

    fn alerting_digest(objs: &SiteObjects) -> String {
        alerting_pod(objs)["metadata"]["annotations"][crate::alerting::CONFIG_ANNOTATION]
            .as_str()
            .expect("the alerting config annotation")
            .to_string()
    }

    #[test]
    fn the_site_config_carries_the_accepted_rules_sorted_and_a_rule_change_rolls_alerting() {
        use crate::crd::{AlertSink, MqttSink, Severity, WebhookSink};
        use crate::fixtures::alert_rule;
        let mut s = site("burgas", 1);
        s.spec.time_zone = Some("Europe/Sofia".into());
        s.spec.alert_sinks = vec![
            AlertSink {
                name: "duty".into(),
                webhook: Some(WebhookSink {
                    url: "https://hooks.example/duty".into(),
                    signing_secret: Some("duty-hmac".into()),
                    ca: Some(crate::crd::PartnerCaRef {
                        config_map_name: "duty-desk-ca".into(),
                        key: "ca.crt".into(),
                    }),
                }),
                mqtt: None,
            },
            AlertSink {
                name: "scada".into(),
                webhook: None,
                mqtt: Some(MqttSink {
                    url: "mqtts://broker:8883".into(),
                    topic: "kordon/burgas".into(),
                }),
            },
        ];
        let mut night = alert_rule("night-fence", "burgas");
        night.spec.severity = Severity::High;
        night.spec.sinks = vec!["duty".into()];
        let mut gate = alert_rule("gate", "burgas");
        gate.spec.schedule = Some(crate::crd::Schedule {
            time_zone: Some("Europe/Istanbul".into()),
            windows: vec![crate::crd::TimeWindow {
                days: Vec::new(),
                start: "22:00".into(),
                end: "06:00".into(),
            }],
        });
        let mut stray = alert_rule("stray", "burgas");
        stray.spec.sinks = vec!["sms".into()];
        let rules = vec![night.clone(), stray, gate.clone()];
        let render_with = |rules: &[crate::crd::AlertRule]| {
            render(
                &s,
                &OperatorConfig::default(),
                &TlsMounts::for_site(&s),
                rules,
            )
            .unwrap()
        };
        let objs = render_with(&rules);
        let cfg = yaml_of(&objs.config_maps[0], "site.yaml");
        let alerting = &cfg["alerting"];
        let names: Vec<&str> = alerting["rules"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            ["gate", "night-fence"],
            "sorted; the unknown sink's rule left out"
        );
        assert_eq!(alerting["rules"][1]["severity"].as_str(), Some("high"));
        // Times of day read back as the strings they are (not YAML 1.1 base-60 numbers).
        let window = &alerting["rules"][0]["schedule"]["windows"][0];
        assert_eq!(window["end"].as_str(), Some("06:00"), "{window:?}");
        assert_eq!(
            alerting["rules"][0]["schedule"]["time_zone"].as_str(),
            Some("Europe/Istanbul")
        );
        assert_eq!(
            alerting["time_zones"]["burgas"].as_str(),
            Some("Europe/Sofia")
        );
        assert_eq!(
            alerting["sinks"][1]["mqtt"]["topic_prefix"].as_str(),
            Some("kordon/burgas")
        );
        assert_eq!(
            alerting["detection"]["endpoints"][0].as_str(),
            Some("https://burgas-detection-0.burgas-detection.kordon.svc:8470")
        );
        // Alerting presents its own certificate to detection, as detection does to storage.
        for key in ["ca_file", "cert_file", "key_file"] {
            assert_eq!(alerting["detection"][key], cfg["detection"]["storage"][key]);
        }
        assert!(alerting.get("replica").is_none() && alerting.get("database_url").is_none());

        // The digest is that of the section, stable while nothing changes, and moves with a rule.
        let digest = alerting_digest(&objs);
        let section = serde_yaml::to_string(alerting).unwrap();
        assert_eq!(digest, crate::pki::sha256_hex(section.as_bytes()));
        assert_eq!(alerting_digest(&render_with(&rules)), digest);
        let mut reordered = rules.clone();
        reordered.reverse();
        assert_eq!(alerting_digest(&render_with(&reordered)), digest);
        night.spec.severity = Severity::Critical;
        let changed = alerting_digest(&render_with(&[night, gate.clone()]));
        assert_ne!(changed, digest);
        assert_ne!(alerting_digest(&render_with(&[gate])), changed);
        // Only alerting rolls with its rules.
        for d in &objs.deployments {
            let t = pod_spec(&d.spec.template);
            let has = t["metadata"]["annotations"]
                .get(crate::alerting::CONFIG_ANNOTATION)
                .is_some();
            assert_eq!(has, d.metadata.name.as_deref() == Some("burgas-alerting"));
        }

        // The signed webhook's key is mounted read-only where secret_file points.
        let pod = alerting_pod(&objs);
        let secret_file = alerting["sinks"][0]["webhook"]["secret_file"]
            .as_str()
            .unwrap();
        assert_eq!(secret_file, "/var/run/kordon/sinks/duty/key");
        let mount = pod["spec"]["containers"][0]["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["mountPath"] == json!("/var/run/kordon/sinks/duty"))
            .expect("the duty sink's key is mounted");
        assert_eq!(mount["readOnly"], json!(true));
        let volume = pod["spec"]["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == mount["name"])
            .unwrap();
        assert_eq!(volume["secret"]["secretName"], json!("duty-hmac"));
        assert_eq!(
            volume["secret"]["items"],
            json!([{ "key": "key", "path": "key" }])
        );
        // The desk's private CA, where ca_file points.
        assert_eq!(
            alerting["sinks"][0]["webhook"]["ca_file"].as_str(),
            Some("/var/run/kordon/sink-cas/duty/ca.crt")
        );
        let ca_mount = pod["spec"]["containers"][0]["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["mountPath"] == json!("/var/run/kordon/sink-cas/duty"))
            .expect("the duty sink's CA is mounted");
        let ca_volume = pod["spec"]["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == ca_mount["name"])
            .unwrap();
        assert_eq!(
            ca_volume["configMap"],
            json!({ "name": "duty-desk-ca", "items": [{ "key": "ca.crt", "path": "ca.crt" }] })
        );
        assert!(alerting["sinks"][1]["webhook"].get("ca_file").is_none());
        assert_eq!(
            pod["spec"]["volumes"].as_array().unwrap().len(),
            5,
            "config, data, tls, one sink key and one sink CA (the MQTT sink has neither)"
        );
        let text = serde_json::to_string(&objs.config_maps).unwrap();
        assert!(!text.contains("duty-hmac"), "no Secret name in the config");
    }

    #[test]
    fn alerting_keeps_its_alerts_in_a_retained_claim_or_the_sites_database() {
        let mut s = site("yambol", 1);
        let objs = rendered(&s);
        let claim = objs
            .claims
            .iter()
            .find(|c| c.metadata.name.as_deref() == Some("yambol-alerting-data"))
            .expect("alerting's data claim");
        assert!(claim.metadata.owner_references.is_none());
        let d = objs
            .deployments
            .iter()
            .find(|d| d.metadata.name.as_deref() == Some("yambol-alerting"))
            .unwrap();
        let spec = &d.spec;
        assert_eq!(spec.replicas, Some(1));
        assert_eq!(
            spec.strategy.as_ref().unwrap().type_.as_deref(),
            Some("Recreate"),
            "never two writers of the claim"
        );
        let pod = pod_spec(&spec.template);
        let data = pod["spec"]["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == json!("data"))
            .unwrap();
        assert_eq!(
            data["persistentVolumeClaim"]["claimName"],
            json!("yambol-alerting-data"),
            "{data}"
        );
        let env = |pod: &Value| -> Vec<String> {
            pod["spec"]["containers"][0]["env"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["name"].as_str().unwrap().to_string())
                .collect()
        };
        assert!(env(&pod).contains(&"KORDON_ALERTING__REPLICA".to_string()));
        assert!(!env(&pod).contains(&"KORDON_ALERTING__DATABASE_URL".to_string()));

        s.spec.database = Some(crate::crd::DatabaseRef {
            secret_name: "yambol-db".into(),
            key: "url".into(),
        });
        let pod = alerting_pod(&rendered(&s));
        let db = pod["spec"]["containers"][0]["env"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == json!("KORDON_ALERTING__DATABASE_URL"))
            .cloned()
            .expect("the site's database");
        assert_eq!(
            db["valueFrom"]["secretKeyRef"],
            json!({ "name": "yambol-db", "key": "url" })
        );
    }

    fn pod_spec(template: &impl serde::Serialize) -> Value {
        serde_json::to_value(template).unwrap()
    }

    #[test]
    fn without_a_tls_secret_each_workload_mounts_its_own_certificate_and_no_dev_identity() {
        let s = site("burgas", 2);
        let mut tls = TlsMounts::for_site(&s);
        tls.revisions.insert("storage".into(), "ab12".into());
        let objs = render(&s, &OperatorConfig::default(), &tls, &[]).unwrap();
        let mut templates = Vec::new();
        for d in &objs.statefulsets {
            templates.push((
                d.metadata.labels.as_ref().unwrap()[COMPONENT_LABEL].clone(),
                pod_spec(&d.spec.template),
            ));
        }
        for d in &objs.deployments {
            templates.push((
                d.metadata.labels.as_ref().unwrap()[COMPONENT_LABEL].clone(),
                pod_spec(&d.spec.template),
            ));
        }
        assert_eq!(templates.len(), 5);
        for (component, t) in &templates {
            let text = t.to_string();
            assert!(!text.contains("KORDON_DEV_IDENTITY"), "{component}: {text}");
            let volumes = t["spec"]["volumes"].as_array().unwrap();
            let secret = volumes
                .iter()
                .find(|v| v["name"] == "tls")
                .and_then(|v| v["secret"]["secretName"].as_str())
                .unwrap_or_else(|| panic!("{component} mounts no certificate"));
            assert_eq!(secret, format!("burgas-{component}-tls"));
            let mounted = t["spec"]["containers"][0]["volumeMounts"]
                .as_array()
                .unwrap()
                .iter()
                .any(|m| m["name"] == "tls" && m["mountPath"] == TLS_DIR);
            assert!(mounted, "{component}");
        }
        let storage = &templates.iter().find(|(c, _)| c == "storage").unwrap().1;
        assert_eq!(
            storage["metadata"]["annotations"][CERT_ANNOTATION],
            json!("ab12")
        );

        let cfg = yaml_of(&objs.config_maps[0], "site.yaml");
        assert_eq!(
            cfg["tls"]["client_ca_file"].as_str(),
            Some("/etc/kordon-tls/ca.crt")
        );
        assert_eq!(
            cfg["ingest"]["storage"]["cert_file"].as_str(),
            Some("/etc/kordon-tls/tls.crt")
        );
        assert!(
            cfg.get("auth").is_none(),
            "identities come from the certificates"
        );
    }

    #[test]
    fn people_sign_in_with_the_sites_token_keys_in_every_pod_and_a_new_key_rolls_them() {
        use crate::crd::{PersonTokens, SiteAuth, TokenAlgorithm, TokenKey};
        let mut s = site("burgas", 2);
        s.spec.auth = Some(SiteAuth {
            jwt: PersonTokens {
                issuer: "https://sso.burgas.example".into(),
                audience: "kordon".into(),
                keys: vec![
                    TokenKey {
                        id: Some("2026".into()),
                        algorithm: TokenAlgorithm::EdDSA,
                        config_map_name: "sso-keys".into(),
                        key: "public.pem".into(),
                    },
                    TokenKey {
                        id: Some("2027".into()),
                        algorithm: TokenAlgorithm::ES256,
                        config_map_name: "sso-next".into(),
                        key: "next.pem".into(),
                    },
                ],
                roles_claim: None,
                leeway_seconds: Some(10),
            },
        });
        let tls = TlsMounts::for_site(&s);
        let cfg = OperatorConfig::default();
        let objs =
            render_with_partners(&s, &cfg, &tls, &[], &[], &["a".into(), "b".into()]).unwrap();
        let site_yaml = yaml_of(&objs.config_maps[0], "site.yaml");
        let jwt: kordon_runtime::config::JwtConfig =
            serde_yaml::from_value(site_yaml["auth"]["jwt"].clone())
                .expect("the services' own type");
        assert_eq!(jwt.issuer, "https://sso.burgas.example");
        assert_eq!(jwt.roles_claim, "kordon_roles");
        assert_eq!(jwt.leeway_seconds, 10);
        assert_eq!(
            jwt.keys
                .iter()
                .map(|k| (k.id.clone().unwrap(), k.public_key_file.clone()))
                .collect::<Vec<_>>(),
            [
                ("2026".to_string(), "/var/run/kordon/auth/key-0.pem".into()),
                ("2027".to_string(), "/var/run/kordon/auth/key-1.pem".into()),
            ]
        );
        let templates: Vec<Value> = objs
            .statefulsets
            .iter()
            .map(|d| pod_spec(&d.spec.template))
            .chain(objs.deployments.iter().map(|d| pod_spec(&d.spec.template)))
            .collect();
        assert_eq!(templates.len(), 5);
        let digest =
            |t: &Value| t["metadata"]["annotations"][crate::auth::CONFIG_ANNOTATION].clone();
        for t in &templates {
            let volume = t["spec"]["volumes"]
                .as_array()
                .unwrap()
                .iter()
                .find(|v| v["name"] == "auth-keys");
            assert_eq!(
                volume.unwrap()["projected"]["sources"],
                json!([
                    { "configMap": { "name": "sso-keys", "items": [{ "key": "public.pem", "path": "key-0.pem" }] } },
                    { "configMap": { "name": "sso-next", "items": [{ "key": "next.pem", "path": "key-1.pem" }] } },
                ])
            );
            assert!(
                t["spec"]["containers"][0]["volumeMounts"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|m| m["name"] == "auth-keys"
                        && m["mountPath"] == "/var/run/kordon/auth"
                        && m["readOnly"] == true)
            );
            assert!(digest(t).is_string());
            assert_eq!(digest(t), digest(&templates[0]));
        }
        // A changed key rolls every pod; the same inputs render the same bytes.
        let again =
            render_with_partners(&s, &cfg, &tls, &[], &[], &["a".into(), "b".into()]).unwrap();
        assert_eq!(
            digest(&pod_spec(&again.deployments[0].spec.template)),
            digest(&templates[3])
        );
        let rotated =
            render_with_partners(&s, &cfg, &tls, &[], &[], &["a".into(), "c".into()]).unwrap();
        for d in &rotated.deployments {
            assert_ne!(digest(&pod_spec(&d.spec.template)), digest(&templates[0]));
        }
        // Without spec.auth: no section, no volume, no annotation.
        let plain = render(&site("burgas", 2), &cfg, &tls, &[]).unwrap();
        assert!(
            yaml_of(&plain.config_maps[0], "site.yaml")
                .get("auth")
                .is_none()
        );
        let t = pod_spec(&plain.deployments[0].spec.template);
        assert!(!t.to_string().contains("auth-keys"));
        assert!(digest(&t).is_null());
    }

    /// The pod template of `site`'s `component` Deployment.
    fn deployment_pod(objs: &SiteObjects, component: &str) -> Value {
        let d = objs
            .deployments
            .iter()
            .find(|d| d.metadata.labels.as_ref().unwrap()[COMPONENT_LABEL] == component)
            .unwrap();
        pod_spec(&d.spec.template)
    }

    fn partners_digest(objs: &SiteObjects, component: &str) -> Option<String> {
        deployment_pod(objs, component)["metadata"]["annotations"]
            .get(crate::partner::CONFIG_ANNOTATION)
            .and_then(|v| v.as_str())
            .map(str::to_string)
    }

    #[test]
    fn a_sites_partners_and_only_its_own_reach_its_config_and_roll_alerting_and_storage() {
        use crate::fixtures::{linked_site, partner};
        use kordon_runtime::partner::PartnersConfig;
        let burgas = linked_site("burgas");
        let yambol = linked_site("yambol");
        let edirne = partner("edirne", "burgas", "edirne");
        let kirklareli = partner("kirklareli", "burgas", "kirklareli");
        let mut of_yambol = partner("yambol-edirne", "yambol", "edirne");
        of_yambol.spec.endpoint = "https://yambol-only.example:8473".into();
        let all = vec![kirklareli.clone(), of_yambol.clone(), edirne.clone()];
        let accepted = |partners: &[Partner], ca: &str| -> Vec<crate::partner::AcceptedPartner> {
            partners
                .iter()
                .map(|p| crate::partner::AcceptedPartner {
                    partner: p.clone(),
                    ca_sha256: ca.to_string(),
                })
                .collect()
        };
        let render_ca = |s: &Site, tls: &TlsMounts, partners: &[Partner], ca: &str| {
            render_with_partners(
                s,
                &OperatorConfig::default(),
                tls,
                &[],
                &accepted(partners, ca),
                &[],
            )
            .unwrap()
        };
        let render_with =
            |s: &Site, tls: &TlsMounts, partners: &[Partner]| render_ca(s, tls, partners, "ca1");
        let mut tls = TlsMounts::for_site(&burgas);
        assert_eq!(tls.partner_link.as_deref(), Some("burgas-partner-link-tls"));
        tls.revisions.insert("partner-link".into(), "c0ffee".into());
        let objs = render_with(&burgas, &tls, &all);
        let cfg = yaml_of(&objs.config_maps[0], "site.yaml");
        let section: PartnersConfig = serde_yaml::from_value(cfg["partners"].clone())
            .expect("the section reads as the services' PartnersConfig (strict)");
        assert_eq!(section.site, "burgas");
        assert_eq!(section.listen, Some("0.0.0.0:8473".parse().unwrap()));
        assert_eq!(
            section.cert_file.as_deref(),
            Some(std::path::Path::new("/var/run/kordon/partner-link/tls.crt"))
        );
        let sites: Vec<&str> = section.partners.iter().map(|p| p.site.as_str()).collect();
        assert_eq!(
            sites,
            ["edirne", "kirklareli"],
            "sorted, yambol's own left out"
        );
        assert_eq!(
            section.partners[0],
            crate::partner::to_config(&edirne).unwrap()
        );
        assert!(!cfg["partners"].as_mapping().unwrap().is_empty());
        let text = objs.config_maps[0].data.as_ref().unwrap()["site.yaml"].clone();
        assert!(
            !text.contains("yambol-only"),
            "another Site's partner leaked"
        );
        assert!(text.contains("max_range: 1h"), "{text}");

        // The other Site gets its own partner, not burgas's.
        let y = render_with(&yambol, &TlsMounts::for_site(&yambol), &all);
        let ycfg = yaml_of(&y.config_maps[0], "site.yaml");
        assert_eq!(ycfg["partners"]["partners"].as_sequence().unwrap().len(), 1);
        assert_eq!(
            ycfg["partners"]["partners"][0]["endpoint"].as_str(),
            Some("https://yambol-only.example:8473")
        );

        // Alerting and storage mount the link's certificate and each partner's CA, listen on
        // 8473 and carry the digest; nothing else does.
        for component in ["alerting", "storage"] {
            let pod = deployment_pod(&objs, component);
            let container = &pod["spec"]["containers"][0];
            let mounts = container["volumeMounts"].as_array().unwrap();
            let volumes = pod["spec"]["volumes"].as_array().unwrap();
            let volume_of = |path: &str| {
                let m = mounts
                    .iter()
                    .find(|m| m["mountPath"] == json!(path))
                    .unwrap_or_else(|| panic!("{component}: nothing at {path}"));
                assert_eq!(m["readOnly"], json!(true));
                volumes
                    .iter()
                    .find(|v| v["name"] == m["name"])
                    .unwrap()
                    .clone()
            };
            let link = volume_of("/var/run/kordon/partner-link");
            assert_eq!(
                link["secret"]["secretName"],
                json!("burgas-partner-link-tls")
            );
            let ca = volume_of("/var/run/kordon/partners/edirne");
            assert_eq!(ca["configMap"]["name"], json!("edirne-ca"));
            assert_eq!(
                ca["configMap"]["items"],
                json!([{ "key": "ca.crt", "path": "ca.crt" }])
            );
            assert!(
                container["ports"]
                    .as_array()
                    .unwrap()
                    .contains(&json!({ "name": "partner-link", "containerPort": 8473 }))
            );
            assert!(partners_digest(&objs, component).is_some(), "{component}");
            let svc = objs
                .services
                .iter()
                .find(|s| s.metadata.name.as_deref() == Some(&format!("burgas-{component}")))
                .unwrap();
            let ports = serde_json::to_value(&svc.spec.as_ref().unwrap().ports).unwrap();
            assert!(
                ports
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|p| p["name"] == json!("partner-link") && p["port"] == json!(8473)),
                "{component}: {ports}"
            );
        }
        assert_eq!(partners_digest(&objs, "transcode"), None);
        let sts = serde_json::to_string(&objs.statefulsets).unwrap();
        assert!(!sts.contains("partner-link"));

        // The digest is stable, and moves with the terms and with the certificate.
        let digest = partners_digest(&objs, "alerting").unwrap();
        assert_eq!(
            partners_digest(&objs, "storage").as_deref(),
            Some(digest.as_str())
        );
        let mut reordered = all.clone();
        reordered.reverse();
        assert_eq!(
            partners_digest(&render_with(&burgas, &tls, &reordered), "alerting"),
            Some(digest.clone())
        );
        let mut masked = edirne.clone();
        masked.spec.shares.footage.form = crate::crd::FootageFormSpec::Masked;
        let changed = render_with(&burgas, &tls, &[masked, kirklareli.clone()]);
        assert_ne!(partners_digest(&changed, "alerting").unwrap(), digest);
        assert!(
            yaml_of(&changed.config_maps[0], "site.yaml")["partners"]["partners"][0]["shares"]["footage"]["form"]
                .as_str()
                == Some("masked")
        );
        assert_ne!(
            partners_digest(&render_ca(&burgas, &tls, &all, "ca2"), "alerting").unwrap(),
            digest,
            "a partner's new CA rolls the pods"
        );
        let mut renewed = tls.clone();
        renewed
            .revisions
            .insert("partner-link".into(), "beef".into());
        assert_ne!(
            partners_digest(&render_with(&burgas, &renewed, &all), "storage").unwrap(),
            digest
        );

        // No partners, or no partner link: no section, no mounts, no digest.
        for objs in [
            render_with(&burgas, &tls, &[]),
            render_with(
                &site("burgas", 1),
                &TlsMounts::for_site(&site("burgas", 1)),
                &all,
            ),
        ] {
            let cfg = yaml_of(&objs.config_maps[0], "site.yaml");
            assert!(cfg.get("partners").is_none());
            assert_eq!(partners_digest(&objs, "alerting"), None);
            assert!(
                !deployment_pod(&objs, "storage")
                    .to_string()
                    .contains("/var/run/kordon/partner")
            );
        }
    }

    /// The Deployment of `component`.
    fn deployment<'a>(objs: &'a SiteObjects, component: &str) -> &'a Deployment {
        objs.deployments
            .iter()
            .find(|d| d.metadata.labels.as_ref().unwrap()[COMPONENT_LABEL] == component)
            .unwrap_or_else(|| panic!("no {component} Deployment"))
    }

    fn env_of(pod: &Value) -> BTreeMap<String, Value> {
        pod["spec"]["containers"][0]["env"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| (e["name"].as_str().unwrap().to_string(), e.clone()))
            .collect()
    }

    fn transcode_digest(objs: &SiteObjects) -> String {
        deployment_pod(objs, "transcode")["metadata"]["annotations"]
            [crate::transcode::CONFIG_ANNOTATION]
            .as_str()
            .expect("the transcode config annotation")
            .to_string()
    }

    #[test]
    fn transcode_reads_its_section_and_storage_reaches_it_for_viewer_copies() {
        let mut s = site("burgas", 1);
        s.spec.time_zone = Some("Europe/Sofia".into());
        s.spec.storage.credentials_secret = Some("burgas-s3".into());
        s.spec.transcode.workers = 4;
        s.spec.transcode.encoder = "software".into();
        s.spec.transcode.thumbnails.automatic = true;
        s.spec.transcode.thumbnails.width = 480;
        s.spec.transcode.thumbnails.poll = "45s".into();
        let objs = rendered(&s);
        let cfg = yaml_of(&objs.config_maps[0], "site.yaml");

        // The section is the service's own shape (strict: an unknown key fails) and valid.
        let t: kordon_transcode::TranscodeConfig =
            serde_yaml::from_value(cfg["transcode"].clone()).expect("transcode's config shape");
        t.validate().unwrap();
        assert_eq!(
            t.storage.url.as_deref(),
            Some("https://burgas-storage.kordon.svc:8470")
        );
        for (file, key) in [
            (&t.storage.ca_file, "ca.crt"),
            (&t.storage.cert_file, "tls.crt"),
            (&t.storage.key_file, "tls.key"),
        ] {
            assert_eq!(
                file.as_deref(),
                Some(std::path::Path::new(&format!("{TLS_DIR}/{key}")))
            );
        }
        assert_eq!(t.workers, 4);
        assert_eq!(t.encoder, kordon_transcode::config::EncoderChoice::Software);
        assert!(t.thumbnails.automatic);
        assert_eq!(t.thumbnails.width, 480);
        assert_eq!(t.thumbnails.sites, ["burgas"]);
        assert_eq!(t.thumbnails.poll, std::time::Duration::from_secs(45));
        assert_eq!(
            t.time_zones,
            BTreeMap::from([("burgas".to_string(), "Europe/Sofia".to_string())])
        );

        // Storage's section, transcode client included, is storage's own shape too.
        let st: kordon_storage::StorageConfig =
            serde_yaml::from_value(cfg["storage"].clone()).expect("storage's config shape");
        st.validate().unwrap();
        assert_eq!(
            st.transcode.url.as_deref(),
            Some("https://burgas-transcode.kordon.svc:8470")
        );
        assert_eq!(
            st.transcode.cert_file.as_deref(),
            Some(std::path::Path::new("/etc/kordon-tls/tls.crt")),
            "storage presents its own certificate"
        );
        // ...and the transcode Service answers on that port, under a name its certificate has.
        let svc = objs
            .services
            .iter()
            .find(|s| s.metadata.name.as_deref() == Some("burgas-transcode"))
            .unwrap();
        let ports = serde_json::to_value(&svc.spec.as_ref().unwrap().ports).unwrap();
        assert!(
            ports
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["name"] == json!("grpc") && p["port"] == json!(GRPC_PORT))
        );
        assert!(
            crate::pki::dns_names("kordon", "burgas", "transcode")
                .contains(&"burgas-transcode.kordon.svc".to_string())
        );

        // The pods: their replica name from the pod, the bucket's credentials, their own
        // certificate, and the site config; args run the transcode service.
        let pod = deployment_pod(&objs, "transcode");
        let env = env_of(&pod);
        assert_eq!(
            env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"],
            json!("metadata.name")
        );
        assert_eq!(
            env["AWS_ACCESS_KEY_ID"]["valueFrom"]["secretKeyRef"]["name"],
            json!("burgas-s3")
        );
        assert!(!env.contains_key(crate::transcode::DATABASE_URL_ENV));
        // The image's prebuilt GStreamer registry is used as it is.
        assert!(!env.contains_key("GST_REGISTRY"));
        let container = &pod["spec"]["containers"][0];
        assert_eq!(
            container["args"],
            json!(["transcode", "--config", "/etc/kordon/site.yaml"])
        );
        let tls = pod["spec"]["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == json!("tls"))
            .expect("transcode mounts a certificate");
        assert_eq!(tls["secret"]["secretName"], json!("burgas-transcode-tls"));
        // Objects are read from and written to the site's bucket, as ingest does.
        assert_eq!(
            cfg["storage"]["objects"]["bucket"].as_str(),
            Some("kordon-burgas")
        );
    }

    #[test]
    fn transcode_rolls_when_what_it_reads_changes_and_only_then() {
        let s = site("burgas", 1);
        let base = rendered(&s);
        let digest = transcode_digest(&base);
        assert_eq!(transcode_digest(&rendered(&s)), digest, "stable");
        // Other sections do not roll it: an alert rule, a partner, ingest's replicas.
        let with_rule = render(
            &s,
            &OperatorConfig::default(),
            &TlsMounts::for_site(&s),
            &[crate::fixtures::alert_rule("gate", "burgas")],
        )
        .unwrap();
        assert_eq!(transcode_digest(&with_rule), digest);
        assert_ne!(
            alerting_digest(&with_rule),
            alerting_digest(&base),
            "the rule is rendered"
        );
        let mut scaled = s.clone();
        scaled.spec.ingest.replicas = 5;
        assert_eq!(transcode_digest(&rendered(&scaled)), digest);
        // Its own settings, the site's time zone and the bucket do.
        type Mutation = Box<dyn Fn(&mut Site)>;
        let changes: Vec<(&str, Mutation)> = vec![
            ("workers", Box::new(|s| s.spec.transcode.workers = 2)),
            (
                "encoder",
                Box::new(|s| s.spec.transcode.encoder = "x264enc".into()),
            ),
            (
                "thumbnails.automatic",
                Box::new(|s| s.spec.transcode.thumbnails.automatic = true),
            ),
            (
                "thumbnails.width",
                Box::new(|s| s.spec.transcode.thumbnails.width = 640),
            ),
            (
                "thumbnails.poll",
                Box::new(|s| s.spec.transcode.thumbnails.poll = "1m".into()),
            ),
            (
                "timeZone",
                Box::new(|s| s.spec.time_zone = Some("Europe/Sofia".into())),
            ),
            (
                "storage.bucket",
                Box::new(|s| s.spec.storage.bucket = "kordon-burgas-2".into()),
            ),
            (
                "storage.endpoint",
                Box::new(|s| s.spec.storage.endpoint = Some("https://s3.example".into())),
            ),
        ];
        for (what, change) in changes {
            let mut changed = s.clone();
            change(&mut changed);
            assert_ne!(transcode_digest(&rendered(&changed)), digest, "{what}");
        }
        // Only transcode carries it.
        for d in &base.deployments {
            let has = pod_spec(&d.spec.template)["metadata"]["annotations"]
                .get(crate::transcode::CONFIG_ANNOTATION)
                .is_some();
            assert_eq!(has, d.metadata.name.as_deref() == Some("burgas-transcode"));
        }
    }

    #[test]
    fn transcode_without_a_database_keeps_its_jobs_on_a_retained_claim_with_one_replica() {
        let mut s = site("haskovo", 1);
        s.spec.transcode.replicas = 3;
        let objs = rendered(&s);
        let claim = objs
            .claims
            .iter()
            .find(|c| c.metadata.name.as_deref() == Some("haskovo-transcode-data"))
            .expect("transcode's data claim");
        assert!(
            claim.metadata.owner_references.is_none(),
            "retained: no owner"
        );
        assert_eq!(
            claim.metadata.labels.as_ref().unwrap()[COMPONENT_LABEL],
            "transcode"
        );
        let d = deployment(&objs, "transcode");
        assert_eq!(d.spec.replicas, Some(1), "one SQLite writer");
        assert_eq!(
            d.spec.strategy.as_ref().unwrap().type_.as_deref(),
            Some("Recreate"),
            "never two pods on the claim"
        );
        let pod = deployment_pod(&objs, "transcode");
        let data = pod["spec"]["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == json!("data"))
            .unwrap();
        assert_eq!(
            data["persistentVolumeClaim"]["claimName"],
            json!("haskovo-transcode-data")
        );
        assert!(
            pod["spec"]["containers"][0]["volumeMounts"]
                .as_array()
                .unwrap()
                .contains(&json!({ "name": "data", "mountPath": DATA_DIR }))
        );
        assert!(!env_of(&pod).contains_key(crate::transcode::DATABASE_URL_ENV));
        let cfg = yaml_of(&objs.config_maps[0], "site.yaml");
        assert!(cfg["transcode"].get("database_url").is_none());

        // Off is off: no replica, the claim kept.
        s.spec.transcode.replicas = 0;
        let off = rendered(&s);
        assert_eq!(deployment(&off, "transcode").spec.replicas, Some(0));
        assert!(
            off.claims
                .iter()
                .any(|c| c.metadata.name.as_deref() == Some("haskovo-transcode-data"))
        );
    }

    #[test]
    fn transcode_with_a_database_runs_every_replica_asked_on_scratch_space() {
        let mut s = site("haskovo", 1);
        s.spec.transcode.replicas = 3;
        s.spec.database = Some(crate::crd::DatabaseRef {
            secret_name: "haskovo-db".into(),
            key: "postgres-url".into(),
        });
        let objs = rendered(&s);
        assert!(
            objs.claims
                .iter()
                .all(|c| c.metadata.name.as_deref() != Some("haskovo-transcode-data")),
            "no claim: the jobs are in the database"
        );
        let d = deployment(&objs, "transcode");
        let spec = &d.spec;
        assert_eq!(spec.replicas, Some(3));
        assert_eq!(
            spec.strategy.as_ref().unwrap().type_.as_deref(),
            Some("RollingUpdate")
        );
        let pod = deployment_pod(&objs, "transcode");
        let db = &env_of(&pod)[crate::transcode::DATABASE_URL_ENV];
        assert_eq!(
            db["valueFrom"]["secretKeyRef"],
            json!({ "name": "haskovo-db", "key": "postgres-url" })
        );
        let data = pod["spec"]["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == json!("data"))
            .unwrap();
        assert_eq!(data["emptyDir"], json!({}), "{data}");
        for cm in &objs.config_maps {
            let text = serde_json::to_string(cm).unwrap();
            assert!(
                !text.contains("haskovo-db"),
                "no Secret name in a ConfigMap"
            );
        }
        // Storage and alerting keep their claims as before.
        let names: Vec<_> = objs
            .claims
            .iter()
            .filter_map(|c| c.metadata.name.as_deref())
            .collect();
        assert_eq!(names, ["haskovo-storage-data", "haskovo-alerting-data"]);
    }

    #[test]
    fn a_user_certificate_is_mapped_to_its_own_site_only() {
        let mut s = site("edirne", 1);
        s.spec.tls_secret = Some("edirne-mtls".into());
        let mut tls = TlsMounts::for_site(&s);
        tls.subjects
            .insert("kordon.edirne.svc".into(), vec!["edirne".into()]);
        let objs = render(&s, &OperatorConfig::default(), &tls, &[]).unwrap();
        let cfg = yaml_of(&objs.config_maps[0], "site.yaml");
        let sites = &cfg["auth"]["mtls"]["subjects"]["kordon.edirne.svc"];
        assert_eq!(sites.as_sequence().unwrap().len(), 1);
        assert_eq!(sites[0].as_str(), Some("edirne"));
        let sts = pod_spec(&objs.statefulsets[0].spec.template);
        assert!(sts.to_string().contains("\"secretName\":\"edirne-mtls\""));
    }
}
