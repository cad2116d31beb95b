//! Partners: which `Partner` resources are accepted for their Site, what the site's services
//! are told of them (the `partners` section of `site.yaml`, [`section`]), and the Partner
//! reconciler that shows, in each Partner's status, whether the partner declared the same
//! agreement (as the site's alerting service found).
//!
//! Guarantees:
//! - The section is a pure function of the Site and its accepted Partners, in
//!   [`kordon_runtime::partner::PartnersConfig`]'s shape — the very type the services read —
//!   sorted by partner site, so the same inputs give the same bytes and the same
//!   [`CONFIG_ANNOTATION`] on the alerting and storage pods (which roll only when it changes).
//!   A Site without accepted Partners gets no section at all.
//! - A Partner is rendered only when it is accepted ([`verdict`]): its Site exists, is not
//!   being deleted and declares `spec.partnerLink` (the names its certificate must carry); no
//!   older Partner of the Site declares the same partner site; its durations are usable; and
//!   its CA ConfigMap holds a PEM certificate under its key ([`check_ca`]). Partners of one
//!   Site never reach another Site's section. The annotation covers the CAs' contents and the
//!   partner-link certificate too, so a partner's new CA or a renewed certificate rolls them.
//! - The status is written (server-side apply, field manager `kordon-operator`) only when it
//!   differs. `Agreed` copies what the site's alerting reports (`ListSharingAgreements`, asked
//!   at most once per site per half [`crate::config::AlertingClientConfig::poll_interval`]); when
//!   alerting cannot be asked the condition is Unknown with the reason, never made up.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kordon_proto::alerting::v1 as apb;
use kordon_proto::alerting::v1::alerting_service_client::AlertingServiceClient;
use kordon_runtime::partner::{
    DEFAULT_EXCHANGE_INTERVAL, DEFAULT_KEEP_FOR, DEFAULT_MAX_FOOTAGE_RANGE, FootageForm,
    FootageTerms, PartnerConfig, PartnersConfig, Terms,
};
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use tracing::Instrument;

use crate::conditions::{FALSE, TRUE, UNKNOWN, condition};
use crate::config::{AlertingClientConfig, IngestClientConfig};
use crate::controller::Context;
use crate::crd::{FootageFormSpec, Partner, PartnerStatus, PartnerTerms, Severity, Site};
use crate::render::site_config_name;
use crate::replicas::{self, Channels, Replica};
use crate::{Error, Result};

pub const CONTROLLER: &str = "partner";
/// The partner link's port on the alerting and storage pods and Services.
pub const PARTNER_LINK_PORT: i32 = 8473;
/// Where the partner-link certificate (`tls.crt`, `tls.key`) is mounted.
pub const PARTNER_LINK_DIR: &str = "/var/run/kordon/partner-link";
/// Where each partner's CA is mounted: `<PARTNERS_DIR>/<partner site>/ca.crt`.
pub const PARTNERS_DIR: &str = "/var/run/kordon/partners";
/// Pod template annotation of the alerting and storage Deployments: SHA-256 (hex) of the
/// rendered `partners` section and the partner-link certificate's fingerprint.
pub const CONFIG_ANNOTATION: &str = "kordon.io/partners-config";
/// The certificate component the partner link presents (`<site>-partner-link-tls`).
pub const LINK_COMPONENT: &str = "partner-link";
/// How soon a Partner whose Site is being deleted is looked at again.
const WHILE_SITE_DELETES: Duration = Duration::from_secs(5);

/// Why a Partner is not rendered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    SiteNotFound(String),
    SiteDeleting(String),
    /// The Site has no `spec.partnerLink`.
    PartnerLinkMissing(String),
    /// An older Partner (named) of the Site declares the same partner site.
    Duplicate(String),
    /// Something the schema cannot check (e.g. a zero duration).
    InvalidSpec(String),
    /// The CA ConfigMap or its key is missing or holds no certificate.
    CaNotFound(String),
}

impl Problem {
    pub fn reason(&self) -> &'static str {
        match self {
            Problem::SiteNotFound(_) => "SiteNotFound",
            Problem::SiteDeleting(_) => "SiteDeleting",
            Problem::PartnerLinkMissing(_) => "PartnerLinkMissing",
            Problem::Duplicate(_) => "DuplicatePartner",
            Problem::InvalidSpec(_) => "InvalidSpec",
            Problem::CaNotFound(_) => "CaNotFound",
        }
    }

    pub fn message(&self) -> String {
        match self {
            Problem::SiteNotFound(s) => format!("Site `{s}` does not exist in this namespace"),
            Problem::SiteDeleting(s) => format!("Site `{s}` is being deleted"),
            Problem::PartnerLinkMissing(s) => format!(
                "Site `{s}` has no spec.partnerLink: set the host names partners dial (its \
                 partner-link certificate names them)"
            ),
            Problem::Duplicate(other) => format!(
                "Partner `{other}` of the same Site already declares this partner site; this \
                 one is left out of the configuration"
            ),
            Problem::InvalidSpec(m) => m.clone(),
            Problem::CaNotFound(m) => m.clone(),
        }
    }
}

/// The Partners of `site` in `ns` among `all`, not being deleted, sorted by name.
pub fn of_site<'a>(
    all: impl IntoIterator<Item = &'a Partner>,
    ns: &str,
    site: &str,
) -> Vec<Partner> {
    let mut out: Vec<Partner> = all
        .into_iter()
        .filter(|p| {
            p.spec.site == site
                && p.metadata.namespace.as_deref() == Some(ns)
                && p.metadata.deletion_timestamp.is_none()
        })
        .cloned()
        .collect();
    out.sort_by_key(|p| p.name_any());
    out
}

/// Which of two Partners declaring the same partner site wins: the older, then by name.
fn precedes(a: &Partner, b: &Partner) -> bool {
    let key = |p: &Partner| {
        (
            p.metadata.creation_timestamp.clone().map(|t| t.0),
            p.name_any(),
        )
    };
    key(a) < key(b)
}

/// Whether `partner` can be rendered for `site` (as found in the cache), given the other
/// Partners of that Site (`siblings`, may include `partner` itself). The CA is checked apart
/// ([`check_ca`]), as it needs the API.
pub fn verdict(
    partner: &Partner,
    site: Option<&Site>,
    siblings: &[Partner],
) -> std::result::Result<PartnerConfig, Problem> {
    let name = &partner.spec.site;
    let site = match site {
        None => return Err(Problem::SiteNotFound(name.clone())),
        Some(s) if s.metadata.deletion_timestamp.is_some() => {
            return Err(Problem::SiteDeleting(name.clone()));
        }
        Some(s) => s,
    };
    if site.spec.partner_link.is_none() {
        return Err(Problem::PartnerLinkMissing(name.clone()));
    }
    let me = partner.name_any();
    if let Some(older) = siblings.iter().find(|o| {
        o.name_any() != me
            && o.spec.partner_site == partner.spec.partner_site
            && o.metadata.deletion_timestamp.is_none()
            && precedes(o, partner)
    }) {
        return Err(Problem::Duplicate(older.name_any()));
    }
    to_config(partner).map_err(Problem::InvalidSpec)
}

/// The partner as the services read it (CA at its mount path).
pub fn to_config(partner: &Partner) -> std::result::Result<PartnerConfig, String> {
    let s = &partner.spec;
    Ok(PartnerConfig {
        site: s.partner_site.clone(),
        display_name: s.display_name.clone().unwrap_or_default(),
        endpoint: s.endpoint.trim_end_matches('/').to_string(),
        storage_endpoint: s
            .storage_endpoint
            .as_ref()
            .map(|e| e.trim_end_matches('/').to_string()),
        ca_file: ca_file(&s.partner_site),
        evidence_public_key: s.evidence_public_key.to_ascii_lowercase(),
        shares: terms(&s.shares, "spec.shares")?,
        receives: terms(&s.receives, "spec.receives")?,
    })
}

/// Where the CA of partner site `partner_site` is mounted.
pub fn ca_file(partner_site: &str) -> PathBuf {
    PathBuf::from(format!("{PARTNERS_DIR}/{partner_site}/ca.crt"))
}

fn severity_name(s: Severity) -> &'static str {
    match s {
        Severity::Low => "low",
        Severity::Medium => "medium",
        Severity::High => "high",
        Severity::Critical => "critical",
    }
}

fn duration(
    v: &Option<String>,
    default: Duration,
    key: &str,
    needed: bool,
) -> std::result::Result<Duration, String> {
    let d = match v {
        None => default,
        Some(text) => humantime::parse_duration(text)
            .map_err(|e| format!("{key}: `{text}` is not a duration: {e}"))?,
    };
    if needed && d.is_zero() {
        return Err(format!(
            "{key} must be more than 0 when footage may be requested"
        ));
    }
    Ok(d)
}

fn terms(t: &PartnerTerms, key: &str) -> std::result::Result<Terms, String> {
    let f = &t.footage;
    Ok(Terms {
        alerts: t.alerts,
        min_severity: t.min_severity.map(|s| severity_name(s).to_string()),
        rules: t.rules.clone(),
        cameras: t.cameras.clone(),
        snapshots: t.snapshots,
        footage: FootageTerms {
            requests: f.requests,
            max_range: duration(
                &f.max_range,
                DEFAULT_MAX_FOOTAGE_RANGE,
                &format!("{key}.footage.maxRange"),
                f.requests,
            )?,
            form: match f.form {
                FootageFormSpec::Original => FootageForm::Original,
                FootageFormSpec::Masked => FootageForm::Masked,
            },
            keep_for: duration(
                &f.keep_for,
                DEFAULT_KEEP_FOR,
                &format!("{key}.footage.keepFor"),
                f.requests,
            )?,
        },
    })
}

/// The `partners` section of `site.yaml` for the Site named `name`, from its accepted
/// Partners; `None` when there is none.
pub fn section(name: &str, accepted: &[Partner]) -> Option<PartnersConfig> {
    let mut partners: Vec<PartnerConfig> = accepted
        .iter()
        .filter(|p| p.spec.site == name)
        .filter_map(|p| to_config(p).ok())
        .collect();
    if partners.is_empty() {
        return None;
    }
    partners.sort_by(|a, b| a.site.cmp(&b.site));
    partners.dedup_by(|a, b| a.site == b.site);
    Some(PartnersConfig {
        site: name.to_string(),
        listen: Some(std::net::SocketAddr::from((
            [0, 0, 0, 0],
            PARTNER_LINK_PORT as u16,
        ))),
        cert_file: Some(PathBuf::from(format!("{PARTNER_LINK_DIR}/tls.crt"))),
        key_file: Some(PathBuf::from(format!("{PARTNER_LINK_DIR}/tls.key"))),
        exchange_interval: DEFAULT_EXCHANGE_INTERVAL,
        partners,
    })
}

/// A Partner rendered into its Site's configuration, with the SHA-256 (hex) of the CA it
/// pins: a partner's new CA rolls the pods that read it (they load CAs at start).
#[derive(Debug, Clone, PartialEq)]
pub struct AcceptedPartner {
    pub partner: Partner,
    pub ca_sha256: String,
}

/// Whether the Partner's CA ConfigMap holds a PEM certificate under its key; its SHA-256.
pub async fn check_ca(
    client: &kube::Client,
    ns: &str,
    partner: &Partner,
) -> std::result::Result<String, Problem> {
    let r = &partner.spec.ca;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let cm = match api.get_opt(&r.config_map_name).await {
        Ok(Some(cm)) => cm,
        Ok(None) => {
            return Err(Problem::CaNotFound(format!(
                "ConfigMap `{}` (spec.ca) does not exist in this namespace",
                r.config_map_name
            )));
        }
        Err(e) => {
            return Err(Problem::CaNotFound(format!(
                "ConfigMap `{}` (spec.ca) could not be read: {}",
                r.config_map_name,
                crate::error::Error::from(e).metric_label()
            )));
        }
    };
    match cm.data.as_ref().and_then(|d| d.get(&r.key)) {
        Some(pem) if pem.contains("-----BEGIN CERTIFICATE-----") => {
            Ok(crate::pki::sha256_hex(pem.as_bytes()))
        }
        Some(_) => Err(Problem::CaNotFound(format!(
            "ConfigMap `{}` key `{}` holds no PEM certificate",
            r.config_map_name, r.key
        ))),
        None => Err(Problem::CaNotFound(format!(
            "ConfigMap `{}` has no key `{}` (spec.ca.key)",
            r.config_map_name, r.key
        ))),
    }
}

/// The accepted Partners of `site` (named `name` in `ns`): verdict and CA check passed. The
/// CA ConfigMaps are read by name on every call (no watch), so one created or changed later
/// is picked up by the Site's next reconcile (at most `ingest.status_interval` later).
pub async fn accepted(ctx: &Context, site: &Site, ns: &str, name: &str) -> Vec<AcceptedPartner> {
    let siblings = of_site(ctx.partners.state().iter().map(|p| p.as_ref()), ns, name);
    let mut out = Vec::new();
    for p in &siblings {
        if verdict(p, Some(site), &siblings).is_err() {
            continue;
        }
        if let Ok(ca_sha256) = check_ca(&ctx.client, ns, p).await {
            out.push(AcceptedPartner {
                partner: p.clone(),
                ca_sha256,
            });
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// What the site's alerting says

/// The call the operator makes to a site's alerting service. A trait so that tests can stand
/// in for alerting.
pub trait AlertingClient: Send + Sync + 'static {
    /// Every sharing agreement the alerting service at `endpoint` holds.
    fn agreements(
        &self,
        endpoint: Replica,
    ) -> BoxFuture<'static, std::result::Result<Vec<apb::SharingAgreement>, String>>;
}

/// The real client: one lazily connected channel per address and credentials.
pub struct GrpcAlerting {
    channels: Channels,
}

impl GrpcAlerting {
    /// `ingest` gives the deadline and, for sites with a user-supplied `tlsSecret`, the CA and
    /// client certificate files (the same site identity as for ingest).
    pub fn new(ingest: IngestClientConfig) -> Self {
        Self {
            channels: Channels::new(ingest),
        }
    }
}

impl AlertingClient for GrpcAlerting {
    fn agreements(
        &self,
        endpoint: Replica,
    ) -> BoxFuture<'static, std::result::Result<Vec<apb::SharingAgreement>, String>> {
        let channel = self.channels.get(&endpoint);
        let timeout = self.channels.timeout();
        Box::pin(async move {
            let mut client = AlertingServiceClient::new(channel?);
            let call = client.list_sharing_agreements(apb::ListSharingAgreementsRequest {});
            Ok(replicas::call(timeout, "ListSharingAgreements", call)
                .await?
                .agreements)
        })
    }
}

type Answer = std::result::Result<Vec<apb::SharingAgreement>, String>;

/// What each site's alerting last answered, by (namespace, site), and when.
#[derive(Default)]
pub struct Agreements {
    held: Mutex<HashMap<(String, String), (Instant, Answer)>>,
}

impl Agreements {
    fn fresh(&self, ns: &str, site: &str, max_age: Duration) -> Option<Answer> {
        let held = self.held.lock().ok()?;
        let (at, answer) = held.get(&(ns.to_string(), site.to_string()))?;
        (at.elapsed() < max_age).then(|| answer.clone())
    }

    fn set(&self, ns: &str, site: &str, answer: Answer) {
        if let Ok(mut held) = self.held.lock() {
            held.insert((ns.to_string(), site.to_string()), (Instant::now(), answer));
        }
    }
}

/// The agreements of `site`'s alerting: asked once per half poll interval and site at most.
async fn agreements(ctx: &Context, site: &Site, ns: &str, name: &str) -> Answer {
    let cfg: &AlertingClientConfig = &ctx.config.alerting;
    if let Some(answer) = ctx.agreements.fresh(ns, name, cfg.poll_interval / 2) {
        return answer;
    }
    let tls = match crate::certificates::ensure(ctx, site, ns, name).await {
        Ok(tls) => tls.client.clone(),
        Err(e) => return Err(format!("the site's certificates: {e}")),
    };
    let endpoint = Replica {
        address: cfg.address_of(ns, name),
        tls,
    };
    let answer = ctx.alerting.agreements(endpoint).await;
    ctx.agreements.set(ns, name, answer.clone());
    answer
}

fn time_of(ts: &Option<prost_types::Timestamp>) -> Option<Time> {
    let ts = ts.as_ref()?;
    k8s_openapi::jiff::Timestamp::new(ts.seconds, ts.nanos)
        .ok()
        .map(Time)
}

fn count(n: u64) -> Option<i64> {
    Some(i64::try_from(n).unwrap_or(i64::MAX))
}

/// The status `partner` should show, from its verdict and what its site's alerting answered
/// (`None`: not asked, as the Partner is not accepted).
pub fn desired_status(
    partner: &Partner,
    verdict: &std::result::Result<(), Problem>,
    answer: Option<&Answer>,
    now: &Time,
) -> PartnerStatus {
    let previous = partner
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or(&[]);
    let generation = partner.metadata.generation;
    let cond =
        |t: &str, s: &str, r: &str, m: String| condition(previous, t, s, r, m, generation, now);
    let mut status = PartnerStatus {
        observed_generation: generation,
        ..PartnerStatus::default()
    };
    if let Err(problem) = verdict {
        let why = problem.message();
        status.conditions = vec![
            cond("Accepted", FALSE, problem.reason(), why.clone()),
            cond(
                "Agreed",
                UNKNOWN,
                "NotRendered",
                "the partner is not in the site's configuration".into(),
            ),
            cond("Ready", FALSE, problem.reason(), why),
        ];
        return status;
    }
    let accepted = cond(
        "Accepted",
        TRUE,
        "Rendered",
        format!(
            "rendered into ConfigMap {} (partners section)",
            site_config_name(&partner.spec.site)
        ),
    );
    let partner_site = &partner.spec.partner_site;
    let (agreed_status, reason, message) = match answer {
        None => (
            UNKNOWN,
            "NotAsked",
            "the site's alerting was not asked".to_string(),
        ),
        Some(Err(e)) => (
            UNKNOWN,
            "AlertingUnreachable",
            format!("the site's alerting could not be asked: {e}"),
        ),
        Some(Ok(list)) => match list.iter().find(|a| &a.partner_site == partner_site) {
            None => (
                FALSE,
                "NotListed",
                format!(
                    "the site's alerting does not list partner `{partner_site}` yet (its new \
                     configuration is rolling out)"
                ),
            ),
            Some(a) => {
                let st = a.status.clone().unwrap_or_default();
                status.last_contact = time_of(&st.last_contact_at);
                status.terms_digest = Some(st.terms_digest.clone()).filter(|d| !d.is_empty());
                status.partner_terms_digest =
                    Some(st.partner_terms_digest.clone()).filter(|d| !d.is_empty());
                status.forwarded = count(st.forwarded_total);
                status.received = count(st.received_total);
                status.failed = count(st.failed_total);
                status.pending = count(st.pending);
                status.state_reason = Some(st.state_reason.clone()).filter(|r| !r.is_empty());
                let state = apb::AgreementState::try_from(st.state).unwrap_or_default();
                let (s, r, default) = match state {
                    apb::AgreementState::Accepted => {
                        (TRUE, "Accepted", "both sides declared the same agreement")
                    }
                    apb::AgreementState::Pending => {
                        (FALSE, "Pending", "the partner has not been reached yet")
                    }
                    apb::AgreementState::Mismatch => {
                        (FALSE, "Mismatch", "the partner declared different terms")
                    }
                    apb::AgreementState::Unreachable => {
                        (FALSE, "Unreachable", "the partner could not be reached")
                    }
                    apb::AgreementState::Unspecified => {
                        (UNKNOWN, "Unknown", "alerting reports no state")
                    }
                };
                if state != apb::AgreementState::Unspecified {
                    status.state = Some(r.to_string());
                }
                (
                    s,
                    r,
                    status
                        .state_reason
                        .clone()
                        .unwrap_or_else(|| default.to_string()),
                )
            }
        },
    };
    let agreed = cond("Agreed", agreed_status, reason, message.clone());
    let ready = if agreed_status == TRUE {
        cond(
            "Ready",
            TRUE,
            "Agreed",
            "rendered, and both sides agree".into(),
        )
    } else {
        cond("Ready", FALSE, reason, message)
    };
    status.conditions = vec![accepted, agreed, ready];
    status
}

// ---------------------------------------------------------------------------------------------
// The reconciler

/// Reconciles one Partner: its verdict, and what the site's alerting says of it.
pub async fn reconcile(partner: Arc<Partner>, ctx: Arc<Context>) -> Result<Action> {
    let ns = partner
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let span = tracing::info_span!(
        "reconcile",
        controller = CONTROLLER,
        namespace = %ns,
        site = %partner.spec.site,
        partner = %partner.name_any(),
    );
    async move {
        let _timer = ctx.metrics.start(CONTROLLER);
        let name = &partner.spec.site;
        let site = ctx.sites.get(&ObjectRef::new(name).within(&ns));
        let siblings = of_site(ctx.partners.state().iter().map(|p| p.as_ref()), &ns, name);
        let mut verdict = verdict(&partner, site.as_deref(), &siblings).map(|_| ());
        if verdict.is_ok() {
            verdict = check_ca(&ctx.client, &ns, &partner).await.map(|_| ());
        }
        let answer = match (&verdict, site.as_deref()) {
            (Ok(()), Some(site)) => Some(agreements(&ctx, site, &ns, name).await),
            _ => None,
        };
        let status = desired_status(
            &partner,
            &verdict,
            answer.as_ref(),
            &crate::conditions::now(),
        );
        write_status(&ctx, &partner, &ns, &status).await?;
        let deleting = matches!(verdict, Err(Problem::SiteDeleting(_)));
        Ok(Action::requeue(if deleting {
            WHILE_SITE_DELETES
        } else {
            ctx.config.alerting.poll_interval
        }))
    }
    .instrument(span)
    .await
}

/// Writes `status` unless the partner already shows it (see [`crate::conditions::write_status`]).
async fn write_status(
    ctx: &Context,
    partner: &Partner,
    ns: &str,
    status: &PartnerStatus,
) -> Result<()> {
    crate::conditions::write_status(&ctx.client, partner, ns, partner.status.as_ref(), status).await
}

/// The Partners of a Site (what the Site watch of this controller maps to).
pub fn partners_of_site(partners: &Store<Partner>, site: &Site) -> Vec<ObjectRef<Partner>> {
    let Some(ns) = site.namespace() else {
        return Vec::new();
    };
    let name = site.name_any();
    partners
        .state()
        .iter()
        .filter(|p| p.spec.site == name && p.metadata.namespace.as_deref() == Some(ns.as_str()))
        .map(|p| ObjectRef::from_obj(p.as_ref()))
        .collect()
}

/// Counts the failure and retries with a delay.
pub fn error_policy(partner: Arc<Partner>, error: &Error, ctx: Arc<Context>) -> Action {
    tracing::warn!(partner = %partner.name_any(), %error, "partner reconcile failed");
    ctx.metrics.failure(CONTROLLER, error);
    Action::requeue(Duration::from_secs(5))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{linked_site, partner, site};

    fn t(seconds: i64) -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(seconds).unwrap())
    }

    #[test]
    fn a_partner_is_accepted_only_for_an_existing_linked_site_and_only_once() {
        let p = partner("edirne", "burgas", "edirne");
        assert_eq!(
            verdict(&p, None, &[]).unwrap_err(),
            Problem::SiteNotFound("burgas".into())
        );
        let unlinked = site("burgas", 1);
        let e = verdict(&p, Some(&unlinked), &[]).unwrap_err();
        assert_eq!(e.reason(), "PartnerLinkMissing");
        assert!(e.message().contains("spec.partnerLink"), "{}", e.message());
        let mut going = linked_site("burgas");
        going.metadata.deletion_timestamp = Some(t(1));
        assert_eq!(
            verdict(&p, Some(&going), &[]).unwrap_err().reason(),
            "SiteDeleting"
        );

        let s = linked_site("burgas");
        let cfg = verdict(&p, Some(&s), std::slice::from_ref(&p)).unwrap();
        assert_eq!(cfg.site, "edirne");
        assert_eq!(
            cfg.ca_file,
            PathBuf::from("/var/run/kordon/partners/edirne/ca.crt")
        );
        assert_eq!(cfg.shares.min_severity.as_deref(), Some("high"));
        assert_eq!(
            cfg.shares.footage.keep_for,
            Duration::from_secs(30 * 86_400)
        );
        assert_eq!(cfg.receives.footage, FootageTerms::default());

        // Two Partners of one Site declaring the same partner site: the older one wins.
        let mut old = partner("edirne-old", "burgas", "edirne");
        old.metadata.creation_timestamp = Some(t(100));
        let mut new = partner("edirne-new", "burgas", "edirne");
        new.metadata.creation_timestamp = Some(t(200));
        let both = [old.clone(), new.clone()];
        assert!(verdict(&old, Some(&s), &both).is_ok());
        assert_eq!(
            verdict(&new, Some(&s), &both).unwrap_err(),
            Problem::Duplicate("edirne-old".into())
        );
    }

    #[test]
    fn durations_the_schema_cannot_judge_are_invalid_spec() {
        let s = linked_site("burgas");
        let mut p = partner("edirne", "burgas", "edirne");
        p.spec.shares.footage.max_range = Some("0s".into());
        let e = verdict(&p, Some(&s), &[]).unwrap_err();
        assert_eq!(e.reason(), "InvalidSpec");
        assert!(
            e.message().contains("spec.shares.footage.maxRange"),
            "{}",
            e.message()
        );
        // Without footage requests the range is irrelevant.
        p.spec.shares.footage.requests = false;
        assert!(verdict(&p, Some(&s), &[]).is_ok());
    }

    fn agreement(site: &str, state: apb::AgreementState, reason: &str) -> apb::SharingAgreement {
        apb::SharingAgreement {
            partner_site: site.into(),
            status: Some(apb::SharingStatus {
                state: state as i32,
                state_reason: reason.into(),
                last_contact_at: Some(prost_types::Timestamp {
                    seconds: 1_800_000_000,
                    nanos: 0,
                }),
                terms_digest: "aa".into(),
                partner_terms_digest: "bb".into(),
                forwarded_total: 7,
                received_total: 3,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn cond<'a>(
        s: &'a PartnerStatus,
        t: &str,
    ) -> &'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
        s.conditions.iter().find(|c| c.type_ == t).unwrap()
    }

    #[test]
    fn the_status_copies_what_alerting_reports_of_the_partner() {
        let p = partner("edirne", "burgas", "edirne");
        let now = t(2_000_000_000);
        let why = "the agreements differ: what burgas shares with edirne (burgas vs edirne) — snapshots: true vs false";
        let answer: Answer = Ok(vec![
            agreement("yambol", apb::AgreementState::Accepted, ""),
            agreement("edirne", apb::AgreementState::Mismatch, why),
        ]);
        let st = desired_status(&p, &Ok(()), Some(&answer), &now);
        assert_eq!(st.state.as_deref(), Some("Mismatch"));
        assert_eq!(st.state_reason.as_deref(), Some(why));
        assert_eq!(st.terms_digest.as_deref(), Some("aa"));
        assert_eq!(st.partner_terms_digest.as_deref(), Some("bb"));
        assert_eq!((st.forwarded, st.received), (Some(7), Some(3)));
        assert_eq!(st.last_contact, Some(t(1_800_000_000)));
        assert_eq!(cond(&st, "Accepted").status, TRUE);
        let agreed = cond(&st, "Agreed");
        assert_eq!(
            (agreed.status.as_str(), agreed.reason.as_str()),
            (FALSE, "Mismatch")
        );
        assert_eq!(agreed.message, why);
        assert_eq!(cond(&st, "Ready").status, FALSE);

        let ok: Answer = Ok(vec![agreement("edirne", apb::AgreementState::Accepted, "")]);
        let st = desired_status(&p, &Ok(()), Some(&ok), &now);
        assert_eq!(st.state.as_deref(), Some("Accepted"));
        assert_eq!(st.state_reason, None);
        assert_eq!(cond(&st, "Agreed").status, TRUE);
        assert_eq!(cond(&st, "Ready").status, TRUE);

        // Not listed yet, and alerting not answering: never a made-up state.
        let st = desired_status(&p, &Ok(()), Some(&Ok(Vec::new())), &now);
        assert_eq!(cond(&st, "Agreed").reason, "NotListed");
        assert_eq!(st.state, None);
        let down: Answer = Err("Unavailable: connection refused".into());
        let st = desired_status(&p, &Ok(()), Some(&down), &now);
        let agreed = cond(&st, "Agreed");
        assert_eq!(
            (agreed.status.as_str(), agreed.reason.as_str()),
            (UNKNOWN, "AlertingUnreachable")
        );
        assert!(agreed.message.contains("connection refused"));

        // Not accepted: says why, and asks nothing.
        let st = desired_status(&p, &Err(Problem::SiteNotFound("burgas".into())), None, &now);
        assert_eq!(cond(&st, "Accepted").reason, "SiteNotFound");
        assert_eq!(cond(&st, "Ready").status, FALSE);
        assert_eq!(st.observed_generation, Some(1));
    }
}
