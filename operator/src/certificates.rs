//! A site's mTLS: which CA its services trust and which certificate each one presents. Run by
//! the Site reconciler before it renders the workloads.
//!
//! Without `spec.tlsSecret` (the default) the operator is the site's certificate authority
//! ([`crate::pki`]):
//! - Secret `<site>-ca` holds the CA certificate (`ca.crt`) and its private key (`ca.key`). It
//!   is created once and never overwritten; the key exists nowhere else but in the operator's
//!   memory. A CA Secret that cannot be read as a CA with its key fails the reconcile (it is
//!   never silently replaced: that would change the trust root under running pods).
//! - Secret `<site>-<component>-tls` (type `kubernetes.io/tls`: `tls.crt`, `tls.key`, `ca.crt`)
//!   for each workload — ingest, storage, transcode, detection, alerting — naming the identity
//!   `spiffe://kordon.io/ns/<namespace>/site/<site>/<component>`. It is (re-)issued when it is
//!   missing, signed by another CA, names another identity, lacks one of the DNS names the
//!   component's server answers to ([`pki::dns_names`]), or has less than a third of its
//!   lifetime left. The pod template carries the certificate's fingerprint, so a new
//!   certificate rolls the workload's pods (services read their certificates at start).
//! - With `spec.partnerLink`, Secret `<site>-partner-link-tls` for the partner link (identity
//!   component `partner-link`), naming the host names partners dial besides the alerting and
//!   storage Services' names ([`partner_link_names`]); partners pin the site CA (`ca.crt` of
//!   `<site>-ca`). It is kept and re-issued like the workloads' certificates, and its
//!   fingerprint rolls the alerting and storage pods.
//! - The operator's own client certificate for the site (component `operator`, which may
//!   administer that site's ingest) is minted in memory and never stored.
//!
//! With `spec.tlsSecret` the user's PKI wins: that Secret is mounted into every workload as
//! it is and the operator issues nothing; it is the partner link's certificate too. Unless its certificate names a Kordon identity, its
//! subject is mapped to this one site in the rendered `auth.mtls.subjects`; the operator then
//! presents `ingest.cert_file` from its own configuration to the site's ingest.
//!
//! What was found is kept for [`REFRESH_AFTER`]: a reconcile in between makes no API call
//! unless a certificate falls due. Secrets are read by name (`get`), never listed.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kordon_runtime::auth::{OPERATOR_COMPONENT, ServiceIdentity};
use kordon_runtime::client::TlsPem;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};

use crate::config::FIELD_MANAGER;
use crate::controller::Context;
use crate::crd::Site;
use crate::pki::{self, CertInfo, Issued, SiteCa};
use crate::render::{self, TlsMounts};
use crate::{Error, Result};

/// What is known of a site's certificates is re-read from the API at least this often.
pub const REFRESH_AFTER: Duration = Duration::from_secs(300);

/// Keys of the CA Secret.
pub const CA_CERT_KEY: &str = "ca.crt";
pub const CA_KEY_KEY: &str = "ca.key";

/// The workloads that get a certificate of their own.
pub const COMPONENTS: [&str; 5] = ["ingest", "storage", "transcode", "detection", "alerting"];

pub fn ca_secret_name(site: &str) -> String {
    format!("{site}-ca")
}

pub fn cert_secret_name(site: &str, component: &str) -> String {
    format!("{site}-{component}-tls")
}

/// Where a site's trust comes from, for its status.
#[derive(Debug, Clone, PartialEq)]
pub enum TlsSource {
    /// The operator's CA for the site.
    OperatorCa {
        secret: String,
        fingerprint: String,
        /// When the first workload certificate falls due.
        renew_at: SystemTime,
    },
    /// The user's Secret named by `spec.tlsSecret`; `problem` when it is missing or unusable.
    SiteSecret {
        secret: String,
        problem: Option<String>,
    },
}

/// A site's certificates as the reconciler uses them.
#[derive(Debug, Clone)]
pub struct SiteTls {
    pub source: TlsSource,
    /// What the rendered pods mount and trust.
    pub mounts: TlsMounts,
    /// The operator's client credentials for the site's ingest; `None`: the configured files.
    pub client: Option<Arc<TlsPem>>,
    client_info: Option<CertInfo>,
    /// The earliest time something must be renewed.
    pub renew_at: Option<SystemTime>,
    checked: Instant,
    /// `spec.tlsSecret` when this was worked out.
    spec: Option<String>,
    /// `spec.partnerLink.hostnames` when this was worked out.
    link: Option<Vec<String>>,
}

impl SiteTls {
    /// How long until the next renewal, if any falls due (for the requeue).
    pub fn renew_in(&self, now: SystemTime) -> Option<Duration> {
        self.renew_at
            .map(|at| at.duration_since(now).unwrap_or_default())
    }

    fn fresh(&self, site: &Site, now: SystemTime) -> bool {
        self.spec == site.spec.tls_secret
            && self.link == link_hostnames(site)
            && self.checked.elapsed() < REFRESH_AFTER
            && self.renew_at.is_none_or(|at| now < at)
    }
}

/// The cached certificates of every site, by (namespace, site).
#[derive(Default)]
pub struct TlsCache {
    sites: std::sync::Mutex<std::collections::HashMap<(String, String), Arc<SiteTls>>>,
}

impl TlsCache {
    fn get(&self, ns: &str, site: &str) -> Option<Arc<SiteTls>> {
        self.sites
            .lock()
            .ok()
            .and_then(|m| m.get(&(ns.to_string(), site.to_string())).cloned())
    }

    fn set(&self, ns: &str, site: &str, tls: Arc<SiteTls>) {
        if let Ok(mut m) = self.sites.lock() {
            m.insert((ns.to_string(), site.to_string()), tls);
        }
    }

    pub fn remove(&self, ns: &str, site: &str) {
        if let Ok(mut m) = self.sites.lock() {
            m.remove(&(ns.to_string(), site.to_string()));
        }
    }
}

/// Makes sure the site's certificates exist and are current; returns what the workloads mount
/// and what the operator presents.
pub async fn ensure(ctx: &Context, site: &Site, ns: &str, name: &str) -> Result<Arc<SiteTls>> {
    let now = SystemTime::now();
    let cached = ctx.tls.get(ns, name);
    if let Some(c) = &cached
        && c.fresh(site, now)
    {
        return Ok(c.clone());
    }
    let tls = match &site.spec.tls_secret {
        Some(secret) => user_secret(ctx, site, ns, name, secret).await?,
        None => operator_ca(ctx, site, ns, name, cached.as_deref(), now).await?,
    };
    let tls = Arc::new(tls);
    ctx.tls.set(ns, name, tls.clone());
    Ok(tls)
}

async fn user_secret(
    ctx: &Context,
    site: &Site,
    ns: &str,
    name: &str,
    secret: &str,
) -> Result<SiteTls> {
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
    let mut mounts = TlsMounts::for_site(site);
    let problem = match api.get_opt(secret).await? {
        None => Some(format!("Secret `{secret}` (spec.tlsSecret) does not exist")),
        Some(s) => match data(&s, "tls.crt").map(pki::inspect) {
            None => Some(format!("Secret `{secret}` has no tls.crt")),
            Some(Err(e)) => Some(format!("Secret `{secret}`: tls.crt: {e}")),
            Some(Ok(info)) => {
                for c in COMPONENTS {
                    mounts
                        .revisions
                        .insert(c.to_string(), info.fingerprint.clone());
                }
                if mounts.partner_link.is_some() {
                    mounts.revisions.insert(
                        crate::partner::LINK_COMPONENT.to_string(),
                        info.fingerprint.clone(),
                    );
                }
                if info.identities.is_empty()
                    && let Some(subject) = info.subject
                {
                    // Named by this Site: it acts for this site, and only this one.
                    mounts.subjects.insert(subject, vec![name.to_string()]);
                }
                None
            }
        },
    };
    Ok(SiteTls {
        source: TlsSource::SiteSecret {
            secret: secret.to_string(),
            problem,
        },
        mounts,
        client: None,
        client_info: None,
        renew_at: None,
        checked: Instant::now(),
        spec: Some(secret.to_string()),
        link: link_hostnames(site),
    })
}

async fn operator_ca(
    ctx: &Context,
    site: &Site,
    ns: &str,
    name: &str,
    previous: Option<&SiteTls>,
    now: SystemTime,
) -> Result<SiteTls> {
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
    let owner = render::owner_reference(site)?;
    let ca = site_ca(&api, site, ns, name, &owner, now).await?;
    let fingerprint = ca.info().fingerprint.clone();

    let mut mounts = TlsMounts::for_site(site);
    let mut renew_at: Option<SystemTime> = None;
    let pp = PatchParams::apply(FIELD_MANAGER).force();
    let link = site.spec.partner_link.as_ref().map(|l| {
        (
            crate::partner::LINK_COMPONENT,
            partner_link_names(ns, name, &l.hostnames),
        )
    });
    let certs = COMPONENTS
        .iter()
        .map(|c| (*c, pki::dns_names(ns, name, c)))
        .chain(link);
    for (component, dns_names) in certs {
        let secret_name = cert_secret_name(name, component);
        let identity = identity(ns, name, component)?;
        let current = api
            .get_opt(&secret_name)
            .await?
            .and_then(|s| usable(&s, &ca, &identity, &dns_names, now));
        let info = match current {
            Some(info) => info,
            None => {
                let issued = ca
                    .issue(&identity, &dns_names, now)
                    .map_err(|e| Error::Certificate(format!("{secret_name}: {e}")))?;
                let secret = cert_secret(&secret_name, ns, name, component, &owner, &issued);
                api.patch(&secret_name, &pp, &Patch::Apply(&secret)).await?;
                tracing::info!(secret = %secret_name, "workload certificate issued");
                issued.info
            }
        };
        renew_at = Some(renew_at.map_or(info.renew_at(), |r| r.min(info.renew_at())));
        mounts
            .revisions
            .insert(component.to_string(), info.fingerprint);
    }

    // The operator's own certificate: kept while its CA is unchanged and it is not due.
    let kept = previous.and_then(|p| {
        let info = p.client_info.as_ref()?;
        (matches!(&p.source, TlsSource::OperatorCa { fingerprint: f, .. } if *f == fingerprint)
            && !info.due(now))
        .then(|| (p.client.clone(), info.clone()))
    });
    let (client, client_info) = match kept {
        Some((Some(client), info)) => (client, info),
        _ => {
            let issued = ca
                .issue(&identity(ns, name, OPERATOR_COMPONENT)?, &[], now)
                .map_err(|e| Error::Certificate(format!("operator client: {e}")))?;
            let pem = TlsPem {
                ca: issued.ca_pem.into_bytes(),
                cert: issued.cert_pem.into_bytes(),
                key: issued.key_pem.into_bytes(),
            };
            (Arc::new(pem), issued.info)
        }
    };
    let first = renew_at.map_or(client_info.renew_at(), |r| r.min(client_info.renew_at()));
    Ok(SiteTls {
        source: TlsSource::OperatorCa {
            secret: ca_secret_name(name),
            fingerprint,
            renew_at: first,
        },
        mounts,
        client: Some(client),
        client_info: Some(client_info),
        renew_at: Some(first),
        checked: Instant::now(),
        spec: None,
        link: link_hostnames(site),
    })
}

fn link_hostnames(site: &Site) -> Option<Vec<String>> {
    site.spec.partner_link.as_ref().map(|l| l.hostnames.clone())
}

/// The DNS names of the partner-link certificate: the names partners dial, then the alerting
/// and storage Services' own (for partners inside the cluster, and port-forwarding).
pub fn partner_link_names(ns: &str, site: &str, hostnames: &[String]) -> Vec<String> {
    let mut names: Vec<String> = hostnames.to_vec();
    for component in crate::render::LINKED {
        for n in pki::dns_names(ns, site, component) {
            if !names.contains(&n) {
                names.push(n);
            }
        }
    }
    names
}

fn identity(ns: &str, site: &str, component: &str) -> Result<ServiceIdentity> {
    ServiceIdentity::new(ns, site, component).map_err(Error::Certificate)
}

/// The site CA from its Secret, created when there is none.
async fn site_ca(
    api: &Api<Secret>,
    site: &Site,
    ns: &str,
    name: &str,
    owner: &OwnerReference,
    now: SystemTime,
) -> Result<SiteCa> {
    let secret_name = ca_secret_name(name);
    let existing = match api.get_opt(&secret_name).await? {
        Some(s) => Some(s),
        None => {
            let ca = SiteCa::generate(ns, name, now)
                .map_err(|e| Error::Certificate(format!("{secret_name}: {e}")))?;
            let secret = ca_secret(&secret_name, ns, name, owner, &ca);
            let pp = PostParams {
                field_manager: Some(FIELD_MANAGER.to_string()),
                ..PostParams::default()
            };
            match api.create(&pp, &secret).await {
                Ok(_) => {
                    tracing::info!(secret = %secret_name, site = %site.name_any(), "site CA created");
                    return Ok(ca);
                }
                // Someone (another operator replica) was first: use theirs.
                Err(kube::Error::Api(s)) if s.code == 409 => api.get_opt(&secret_name).await?,
                Err(e) => return Err(e.into()),
            }
        }
    };
    let secret = existing.ok_or_else(|| {
        Error::Certificate(format!("{secret_name} vanished while it was being created"))
    })?;
    let (Some(cert), Some(key)) = (data(&secret, CA_CERT_KEY), data(&secret, CA_KEY_KEY)) else {
        return Err(Error::Certificate(format!(
            "Secret {secret_name} lacks {CA_CERT_KEY} or {CA_KEY_KEY}; delete it to have a new \
             CA made (every workload certificate is then re-issued)"
        )));
    };
    SiteCa::from_pem(cert, key).map_err(|e| {
        Error::Certificate(format!(
            "Secret {secret_name} does not hold a usable CA ({e}); delete it to have a new CA \
             made (every workload certificate is then re-issued)"
        ))
    })
}

/// The certificate in `secret` when it can stay: from this CA, for this identity, naming at
/// least `dns_names` (a name added since it was issued gets it re-issued), not due.
fn usable(
    secret: &Secret,
    ca: &SiteCa,
    identity: &ServiceIdentity,
    dns_names: &[String],
    now: SystemTime,
) -> Option<CertInfo> {
    let ca_pem = data(secret, "ca.crt")?;
    data(secret, "tls.key")?;
    let info = pki::inspect(data(secret, "tls.crt")?).ok()?;
    let same_ca = pki::inspect(ca_pem).ok()?.fingerprint == ca.info().fingerprint;
    let names = dns_names.iter().all(|n| info.dns_names.contains(n));
    (same_ca && names && info.identities == [identity.clone()] && !info.due(now)).then_some(info)
}

fn data<'a>(secret: &'a Secret, key: &str) -> Option<&'a str> {
    secret
        .data
        .as_ref()?
        .get(key)
        .and_then(|b| std::str::from_utf8(&b.0).ok())
}

fn secret_meta(
    name: &str,
    ns: &str,
    site: &str,
    component: &str,
    owner: &OwnerReference,
) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_string()),
        namespace: Some(ns.to_string()),
        labels: Some(render::labels(site, component)),
        owner_references: Some(vec![owner.clone()]),
        ..ObjectMeta::default()
    }
}

fn ca_secret(name: &str, ns: &str, site: &str, owner: &OwnerReference, ca: &SiteCa) -> Secret {
    Secret {
        metadata: secret_meta(name, ns, site, "ca", owner),
        type_: Some("Opaque".into()),
        data: Some(BTreeMap::from([
            (
                CA_CERT_KEY.to_string(),
                ByteString(ca.cert_pem().as_bytes().to_vec()),
            ),
            (
                CA_KEY_KEY.to_string(),
                ByteString(ca.key_pem().into_bytes()),
            ),
        ])),
        ..Secret::default()
    }
}

fn cert_secret(
    name: &str,
    ns: &str,
    site: &str,
    component: &str,
    owner: &OwnerReference,
    issued: &Issued,
) -> Secret {
    Secret {
        metadata: secret_meta(name, ns, site, component, owner),
        type_: Some("kubernetes.io/tls".into()),
        data: Some(BTreeMap::from([
            (
                "tls.crt".to_string(),
                ByteString(issued.cert_pem.as_bytes().to_vec()),
            ),
            (
                "tls.key".to_string(),
                ByteString(issued.key_pem.as_bytes().to_vec()),
            ),
            (
                "ca.crt".to_string(),
                ByteString(issued.ca_pem.as_bytes().to_vec()),
            ),
        ])),
        ..Secret::default()
    }
}

/// Deletes the Secrets the operator issues for a site (by name; the partner link's when
/// `partner_link`), never the user's `tls_secret` should it share a name; returns how many
/// existed.
pub async fn delete(
    ctx: &Context,
    ns: &str,
    name: &str,
    tls_secret: Option<&str>,
    partner_link: bool,
) -> Result<usize> {
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
    let mut deleted = 0;
    let link = partner_link.then_some(crate::partner::LINK_COMPONENT);
    let names = std::iter::once(ca_secret_name(name))
        .chain(
            COMPONENTS
                .iter()
                .copied()
                .chain(link)
                .map(|c| cert_secret_name(name, c)),
        )
        .filter(|n| Some(n.as_str()) != tls_secret);
    for n in names {
        match api.delete(&n, &DeleteParams::background()).await {
            Ok(_) => deleted += 1,
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    ctx.tls.remove(ns, name);
    Ok(deleted)
}
