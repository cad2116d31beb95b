//! Partner installations: the agreements this site declares with other Kordon installations,
//! and the partner link they talk over.
//!
//! Partners run separate installations (their own clusters, CAs, identity providers and
//! keys). Nothing is shared through a database: each side declares, for each partner, the
//! partner's endpoint, the CA that signs the partner's service certificates, the partner's
//! evidence-signing public key, and the agreement both ways: what this site **shares** with
//! the partner and what it expects to **receive** from it ([`Terms`]). Nothing flows until
//! each side's `shares` equals the other's `receives` (bilateral acceptance, checked by
//! exchanging the declarations over the link: [`compare`]).
//!
//! ```yaml
//! partners:
//!   site: burgas                       # this installation's site, as partners know it
//!   listen: 0.0.0.0:8473               # the partner link (mTLS only)
//!   cert_file: /var/run/kordon/partner-link/tls.crt   # server and client certificate of
//!   key_file: /var/run/kordon/partner-link/tls.key    # this site, signed by its own CA
//!   exchange_interval: 30s
//!   partners:
//!     - site: edirne
//!       display_name: Edirne İl Emniyet Müdürlüğü
//!       endpoint: https://partner.kordon.edirne.example:8473
//!       ca_file: /etc/kordon/partners/edirne/ca.crt
//!       evidence_public_key: 3b6a27bc…        # 64 hex digits (Ed25519)
//!       shares:   { alerts: true, min_severity: high, cameras: [port-gate], snapshots: true,
//!                   footage: { requests: true, max_range: 1h, form: original, keep_for: 30d } }
//!       receives: { alerts: true, footage: { requests: true, max_range: 1h } }
//! ```
//!
//! On the partner link a caller is identified only by its client certificate, verified
//! against each declared partner CA on its own: a certificate signed by Edirne's CA is the
//! partner `edirne` and nothing else (if it carries a Kordon identity, that identity must
//! name `edirne` too). It gets [`Role::Partner`](crate::auth::Role::Partner), which no
//! permission includes: only the partner RPCs, which check [`Principal::partner_site`]
//! (crate::auth::Principal::partner_site) themselves, accept it.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use kordon_proto::alerting::v1 as apb;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::RuntimeError;
use crate::auth::{AuthError, Principal, PrincipalKind, Role, ServiceIdentity};

/// How often each side re-checks the agreement with each partner, by default.
pub const DEFAULT_EXCHANGE_INTERVAL: Duration = Duration::from_secs(30);
/// Longest range one footage request may cover, when the terms set none.
pub const DEFAULT_MAX_FOOTAGE_RANGE: Duration = Duration::from_secs(3600);
/// How long a partner may keep footage it received, when the terms set none.
pub const DEFAULT_KEEP_FOR: Duration = Duration::from_secs(30 * 24 * 3600);

/// The `partners:` section.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PartnersConfig {
    /// This installation's site as its partners know it.
    pub site: String,
    /// The partner link's listener; unset means no partner link (and no partners).
    pub listen: Option<SocketAddr>,
    /// This site's partner-link certificate and key (PEM), signed by the CA its partners pin:
    /// served on the link and presented as the client certificate when calling partners.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    #[serde(with = "humantime_serde")]
    pub exchange_interval: Duration,
    pub partners: Vec<PartnerConfig>,
}

/// One partner installation and the agreement with it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartnerConfig {
    pub site: String,
    #[serde(default)]
    pub display_name: String,
    /// The partner's link (`https://host:port`): its alerting, and its storage unless
    /// `storage_endpoint` says otherwise.
    pub endpoint: String,
    #[serde(default)]
    pub storage_endpoint: Option<String>,
    /// The CA that signs the partner's service certificates (PEM).
    pub ca_file: PathBuf,
    /// The partner's Ed25519 evidence-signing public key, 64 hex digits: bundles it sends are
    /// verified with it and nothing else.
    pub evidence_public_key: String,
    /// What this site shares with the partner.
    #[serde(default)]
    pub shares: Terms,
    /// What this site expects the partner to share with it.
    #[serde(default)]
    pub receives: Terms,
}

/// What one side shares with the other.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Terms {
    /// Forward alerts at all.
    pub alerts: bool,
    /// Only alerts of this severity or higher (low, medium, high, critical); unset means all.
    pub min_severity: Option<String>,
    /// Only alerts of these rules (by name); empty means all.
    pub rules: Vec<String>,
    /// Only alerts and footage of these cameras of the sharing site; empty means all.
    pub cameras: Vec<String>,
    /// Forwarded alerts keep their snapshot id.
    pub snapshots: bool,
    pub footage: FootageTerms,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FootageTerms {
    /// The partner may request footage.
    pub requests: bool,
    #[serde(with = "humantime_serde")]
    pub max_range: Duration,
    pub form: FootageForm,
    #[serde(with = "humantime_serde")]
    pub keep_for: Duration,
}

impl Default for FootageTerms {
    fn default() -> Self {
        FootageTerms {
            requests: false,
            max_range: DEFAULT_MAX_FOOTAGE_RANGE,
            form: FootageForm::Original,
            keep_for: DEFAULT_KEEP_FOR,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FootageForm {
    #[default]
    Original,
    /// Privacy-masked by transcode.
    Masked,
}

impl FootageForm {
    pub fn as_str(self) -> &'static str {
        match self {
            FootageForm::Original => "original",
            FootageForm::Masked => "masked",
        }
    }
}

const SEVERITIES: &[&str] = &["low", "medium", "high", "critical"];

fn severity_proto(s: &Option<String>) -> apb::AlertSeverity {
    match s.as_deref() {
        Some("low") => apb::AlertSeverity::Low,
        Some("medium") => apb::AlertSeverity::Medium,
        Some("high") => apb::AlertSeverity::High,
        Some("critical") => apb::AlertSeverity::Critical,
        _ => apb::AlertSeverity::Unspecified,
    }
}

fn severity_name(s: i32) -> Option<String> {
    match apb::AlertSeverity::try_from(s).unwrap_or_default() {
        apb::AlertSeverity::Low => Some("low".into()),
        apb::AlertSeverity::Medium => Some("medium".into()),
        apb::AlertSeverity::High => Some("high".into()),
        apb::AlertSeverity::Critical => Some("critical".into()),
        _ => None,
    }
}

fn sorted(v: &[String]) -> Vec<String> {
    v.iter()
        .cloned()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

fn secs(d: Duration) -> prost_types::Duration {
    prost_types::Duration {
        seconds: d.as_secs() as i64,
        nanos: 0,
    }
}

fn from_secs(d: &Option<prost_types::Duration>) -> Duration {
    Duration::from_secs(d.as_ref().map(|d| d.seconds.max(0) as u64).unwrap_or(0))
}

impl Terms {
    /// The canonical form: lists sorted and de-duplicated, durations in whole seconds, and
    /// the footage terms cleared when no requests are allowed.
    pub fn canonical(&self) -> Terms {
        let mut t = self.clone();
        t.rules = sorted(&t.rules);
        t.cameras = sorted(&t.cameras);
        t.footage.max_range = Duration::from_secs(t.footage.max_range.as_secs());
        t.footage.keep_for = Duration::from_secs(t.footage.keep_for.as_secs());
        if !t.alerts {
            t.min_severity = None;
            t.rules.clear();
            t.snapshots = false;
        }
        if !t.footage.requests {
            t.footage = FootageTerms {
                requests: false,
                ..FootageTerms::default()
            };
        }
        t
    }

    pub fn to_proto(&self) -> apb::SharingTerms {
        let t = self.canonical();
        apb::SharingTerms {
            alerts: t.alerts,
            min_severity: severity_proto(&t.min_severity) as i32,
            rules: t.rules,
            cameras: t.cameras,
            snapshots: t.snapshots,
            footage_requests: t.footage.requests,
            max_footage_range: Some(secs(t.footage.max_range)),
            footage_form: match t.footage.form {
                FootageForm::Original => apb::FootageForm::Original,
                FootageForm::Masked => apb::FootageForm::Masked,
            } as i32,
            keep_for: Some(secs(t.footage.keep_for)),
        }
    }

    pub fn from_proto(p: &apb::SharingTerms) -> Terms {
        Terms {
            alerts: p.alerts,
            min_severity: severity_name(p.min_severity),
            rules: p.rules.clone(),
            cameras: p.cameras.clone(),
            snapshots: p.snapshots,
            footage: FootageTerms {
                requests: p.footage_requests,
                max_range: from_secs(&p.max_footage_range),
                form: if p.footage_form == apb::FootageForm::Masked as i32 {
                    FootageForm::Masked
                } else {
                    FootageForm::Original
                },
                keep_for: from_secs(&p.keep_for),
            },
        }
        .canonical()
    }

    /// Hex SHA-256 of the canonical terms.
    pub fn digest(&self) -> String {
        let json = serde_json::to_vec(&self.canonical()).unwrap_or_default();
        hex::encode(Sha256::digest(json))
    }

    /// Whether an alert of `camera`, `rule` and `severity` (proto value) is covered.
    pub fn covers_alert(&self, camera: &str, rule: &str, severity: i32) -> bool {
        self.alerts
            && (self.cameras.is_empty() || self.cameras.iter().any(|c| c == camera))
            && (self.rules.is_empty() || self.rules.iter().any(|r| r == rule))
            && severity >= severity_proto(&self.min_severity) as i32
    }

    /// Whether footage of `camera` may be requested.
    pub fn covers_footage(&self, camera: &str) -> bool {
        self.footage.requests
            && (self.cameras.is_empty() || self.cameras.iter().any(|c| c == camera))
    }

    /// Each way the two differ, as `field: here X, there Y`.
    pub fn differences(&self, other: &Terms) -> Vec<String> {
        let (a, b) = (self.canonical(), other.canonical());
        let mut out = Vec::new();
        let mut cmp = |field: &str, x: String, y: String| {
            if x != y {
                out.push(format!("{field}: {x} vs {y}"));
            }
        };
        cmp("alerts", a.alerts.to_string(), b.alerts.to_string());
        cmp(
            "min_severity",
            a.min_severity.clone().unwrap_or_else(|| "any".into()),
            b.min_severity.clone().unwrap_or_else(|| "any".into()),
        );
        cmp("rules", format!("{:?}", a.rules), format!("{:?}", b.rules));
        cmp(
            "cameras",
            format!("{:?}", a.cameras),
            format!("{:?}", b.cameras),
        );
        cmp(
            "snapshots",
            a.snapshots.to_string(),
            b.snapshots.to_string(),
        );
        cmp(
            "footage.requests",
            a.footage.requests.to_string(),
            b.footage.requests.to_string(),
        );
        cmp(
            "footage.max_range",
            humantime::format_duration(a.footage.max_range).to_string(),
            humantime::format_duration(b.footage.max_range).to_string(),
        );
        cmp(
            "footage.form",
            a.footage.form.as_str().into(),
            b.footage.form.as_str().into(),
        );
        cmp(
            "footage.keep_for",
            humantime::format_duration(a.footage.keep_for).to_string(),
            humantime::format_duration(b.footage.keep_for).to_string(),
        );
        out
    }

    fn validate(&self, key: &str) -> Result<(), RuntimeError> {
        if let Some(s) = &self.min_severity
            && !SEVERITIES.contains(&s.as_str())
        {
            return Err(RuntimeError::config(
                format!("{key}.min_severity"),
                format!("`{s}` is not one of low, medium, high, critical"),
            ));
        }
        if self.footage.requests && self.footage.max_range.is_zero() {
            return Err(RuntimeError::config(
                format!("{key}.footage.max_range"),
                "must be more than 0 when footage may be requested",
            ));
        }
        if self.footage.requests && self.footage.keep_for.is_zero() {
            return Err(RuntimeError::config(
                format!("{key}.footage.keep_for"),
                "must be more than 0 when footage may be requested",
            ));
        }
        Ok(())
    }
}

/// Bilateral acceptance: this side's declaration against the partner's (as the partner sent
/// it). `Ok` when each side's `shares` equals the other's `receives`; otherwise every
/// difference, in words, from this site's point of view.
pub fn compare(
    here: &str,
    there: &str,
    my_shares: &Terms,
    my_receives: &Terms,
    their_shares: &Terms,
    their_receives: &Terms,
) -> Result<(), String> {
    let mut why = Vec::new();
    for d in my_shares.differences(their_receives) {
        why.push(format!(
            "what {here} shares with {there} ({here} vs {there}) — {d}"
        ));
    }
    for d in my_receives.differences(their_shares) {
        why.push(format!(
            "what {there} shares with {here} ({here} vs {there}) — {d}"
        ));
    }
    if why.is_empty() {
        Ok(())
    } else {
        Err(format!("the agreements differ: {}", why.join("; ")))
    }
}

/// The digest both sides compute of one agreement: the terms each way, keyed by site.
pub fn agreement_digest(here: &str, there: &str, my_shares: &Terms, my_receives: &Terms) -> String {
    let mut h = Sha256::new();
    h.update(b"kordon.partner-agreement.v1");
    // Ordered by site name, so both sides hash the same bytes for matching agreements.
    let mut ways = [
        (here, there, my_shares.digest()),
        (there, here, my_receives.digest()),
    ];
    ways.sort();
    for (from, to, d) in ways {
        for s in [from, to, d.as_str()] {
            h.update((s.len() as u32).to_be_bytes());
            h.update(s.as_bytes());
        }
    }
    hex::encode(h.finalize())
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

impl PartnersConfig {
    /// Whether a partner link is configured.
    pub fn enabled(&self) -> bool {
        self.listen.is_some() || !self.partners.is_empty()
    }

    pub fn partner(&self, site: &str) -> Option<&PartnerConfig> {
        self.partners.iter().find(|p| p.site == site)
    }

    /// Checks everything that can be checked before start: names, URLs, files, keys, terms.
    pub fn validate(&self) -> Result<(), RuntimeError> {
        if !self.enabled() {
            return Ok(());
        }
        if !is_dns_label(&self.site) {
            return Err(RuntimeError::config(
                "partners.site",
                format!(
                    "`{}`: name this installation's site (a DNS label, e.g. burgas)",
                    self.site
                ),
            ));
        }
        for (key, f) in [
            ("partners.cert_file", &self.cert_file),
            ("partners.key_file", &self.key_file),
        ] {
            match f {
                None => {
                    return Err(RuntimeError::config(
                        key,
                        "required with partners: the partner link is mTLS only",
                    ));
                }
                Some(p) if !p.exists() => {
                    return Err(RuntimeError::config(
                        key,
                        format!("{} does not exist", p.display()),
                    ));
                }
                Some(_) => {}
            }
        }
        if self.exchange_interval.is_zero() {
            return Err(RuntimeError::config(
                "partners.exchange_interval",
                "must be more than 0",
            ));
        }
        let mut seen = BTreeSet::new();
        for (i, p) in self.partners.iter().enumerate() {
            let key = format!("partners.partners[{i}]");
            if !is_dns_label(&p.site) {
                return Err(RuntimeError::config(
                    format!("{key}.site"),
                    format!("`{}` is not a DNS label", p.site),
                ));
            }
            if p.site == self.site {
                return Err(RuntimeError::config(
                    format!("{key}.site"),
                    format!("`{}` is this installation's own site", p.site),
                ));
            }
            if !seen.insert(p.site.clone()) {
                return Err(RuntimeError::config(
                    format!("{key}.site"),
                    format!("`{}` is declared twice", p.site),
                ));
            }
            for (k, url) in [
                ("endpoint", Some(&p.endpoint)),
                ("storage_endpoint", p.storage_endpoint.as_ref()),
            ] {
                if let Some(url) = url
                    && !url.starts_with("https://")
                {
                    return Err(RuntimeError::config(
                        format!("{key}.{k}"),
                        format!("`{url}`: the partner link is https:// (mTLS) only"),
                    ));
                }
            }
            read_roots(&p.ca_file)
                .map_err(|e| RuntimeError::config(format!("{key}.ca_file"), e))?;
            parse_public_key(&p.evidence_public_key)
                .map_err(|e| RuntimeError::config(format!("{key}.evidence_public_key"), e))?;
            p.shares.validate(&format!("{key}.shares"))?;
            p.receives.validate(&format!("{key}.receives"))?;
        }
        Ok(())
    }
}

impl PartnerConfig {
    /// The partner's storage endpoint (its link, unless declared apart).
    pub fn storage_url(&self) -> &str {
        self.storage_endpoint.as_deref().unwrap_or(&self.endpoint)
    }

    /// The digest of this agreement (see [`agreement_digest`]).
    pub fn digest(&self, here: &str) -> String {
        agreement_digest(here, &self.site, &self.shares, &self.receives)
    }
}

/// The 32 bytes of a 64-hex-digit Ed25519 public key.
pub fn parse_public_key(hex_key: &str) -> Result<[u8; 32], String> {
    let bytes = hex::decode(hex_key.trim())
        .map_err(|e| format!("not hex: {e} (expected 64 hex digits)"))?;
    <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| {
        format!(
            "{} bytes; an Ed25519 public key is 32 (64 hex digits)",
            bytes.len()
        )
    })
}

fn read_roots(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{}: not a PEM certificate: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{} holds no certificate", path.display()));
    }
    Ok(certs)
}

/// Identifies partner callers: one client-certificate verifier per declared partner CA.
pub struct PartnerTrust {
    partners: Vec<(String, Arc<dyn ClientCertVerifier>)>,
    /// Every partner CA, PEM, for the TLS layer (which only checks "signed by one of them").
    bundle: Vec<u8>,
}

impl std::fmt::Debug for PartnerTrust {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartnerTrust")
            .field(
                "partners",
                &self.partners.iter().map(|(s, _)| s).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl PartnerTrust {
    pub fn new(config: &PartnersConfig) -> Result<Self, RuntimeError> {
        crate::install_crypto_provider();
        let mut partners = Vec::new();
        let mut bundle = Vec::new();
        for (i, p) in config.partners.iter().enumerate() {
            let key = format!("partners.partners[{i}].ca_file");
            let roots = read_roots(&p.ca_file).map_err(|e| RuntimeError::config(&key, e))?;
            let mut store = rustls::RootCertStore::empty();
            for r in roots {
                store
                    .add(r)
                    .map_err(|e| RuntimeError::config(&key, format!("unusable CA: {e}")))?;
            }
            let verifier = WebPkiClientVerifier::builder(Arc::new(store))
                .build()
                .map_err(|e| RuntimeError::config(&key, format!("unusable CA: {e}")))?;
            partners.push((p.site.clone(), verifier));
            bundle.extend(std::fs::read(&p.ca_file).map_err(|e| {
                RuntimeError::config(&key, format!("{}: {e}", p.ca_file.display()))
            })?);
            bundle.push(b'\n');
        }
        Ok(PartnerTrust { partners, bundle })
    }

    /// The partner CAs, concatenated PEM.
    pub fn ca_bundle(&self) -> &[u8] {
        &self.bundle
    }

    /// The partner whose CA signed `chain` (leaf first), as a principal.
    pub fn identify(&self, chain: &[Vec<u8>]) -> Result<Principal, AuthError> {
        let Some((leaf, rest)) = chain.split_first() else {
            return Err(AuthError::Unauthenticated(
                "the partner link needs a client certificate".into(),
            ));
        };
        let end = CertificateDer::from(leaf.as_slice());
        let intermediates: Vec<CertificateDer<'_>> = rest
            .iter()
            .map(|c| CertificateDer::from(c.as_slice()))
            .collect();
        let now = UnixTime::now();
        let site = self
            .partners
            .iter()
            .find(|(_, v)| v.verify_client_cert(&end, &intermediates, now).is_ok())
            .map(|(s, _)| s.clone())
            .ok_or_else(|| {
                AuthError::Unauthenticated(
                    "client certificate is not signed by any declared partner's CA".into(),
                )
            })?;
        // A certificate that names a Kordon identity must name the partner its CA belongs to.
        if let Some(named) = kordon_sites(leaf)?
            && !named.iter().all(|s| s == &site)
        {
            return Err(AuthError::Unauthenticated(format!(
                "client certificate is signed by partner {site}'s CA but names site(s) {named:?}"
            )));
        }
        Ok(Principal::partner(&site))
    }
}

/// The sites of the Kordon identities in a certificate, if it has any.
fn kordon_sites(der: &[u8]) -> Result<Option<Vec<String>>, AuthError> {
    use x509_parser::prelude::*;
    let (_, cert) = X509Certificate::from_der(der)
        .map_err(|_| AuthError::Unauthenticated("client certificate cannot be parsed".into()))?;
    let mut sites = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            if let GeneralName::URI(uri) = name
                && let Ok(Some(id)) = ServiceIdentity::parse(uri)
            {
                sites.push(id.site);
            }
        }
    }
    Ok((!sites.is_empty()).then_some(sites))
}

impl Principal {
    /// A partner installation's service.
    pub fn partner(site: &str) -> Principal {
        Principal {
            kind: PrincipalKind::Partner,
            subject: site.to_string(),
            display_name: Some(format!("partner site {site}")),
            roles: std::collections::BTreeMap::from([(
                site.to_string(),
                BTreeSet::from([Role::Partner]),
            )]),
        }
    }

    /// The partner site, when the caller is a partner installation.
    pub fn partner_site(&self) -> Option<&str> {
        (self.kind == PrincipalKind::Partner).then_some(self.subject.as_str())
    }
}

/// What one agreement exchange with a partner found.
#[derive(Debug, Clone)]
pub enum Exchanged {
    /// The partner answered: `Ok` when both declarations match, else every difference (or
    /// that it declares none for this site); the partner's agreement digest when it declared.
    Answered {
        outcome: Result<(), String>,
        partner_digest: String,
    },
    /// The partner could not be reached, or refused the connection.
    Failed(tonic::Status),
}

/// Sends this site's declaration for `partner` to the partner's `ExchangeAgreement` over
/// `client` (a channel from [`connect`]) and compares the answer with it ([`compare`]).
pub async fn exchange(
    config: &PartnersConfig,
    partner: &PartnerConfig,
    client: crate::client::AuthedChannel,
    timeout: Duration,
) -> Exchanged {
    use kordon_proto::alerting::v1::alerting_service_client::AlertingServiceClient;
    let mut req = tonic::Request::new(apb::ExchangeAgreementRequest {
        from_site: config.site.clone(),
        shares: Some(partner.shares.to_proto()),
        receives: Some(partner.receives.to_proto()),
    });
    req.set_timeout(timeout);
    let r = match AlertingServiceClient::new(client)
        .exchange_agreement(req)
        .await
    {
        Ok(r) => r.into_inner(),
        Err(status) => return Exchanged::Failed(status),
    };
    let answered = |outcome, partner_digest| Exchanged::Answered {
        outcome,
        partner_digest,
    };
    if r.site != partner.site {
        return answered(
            Err(format!(
                "the endpoint {} answers as site `{}`, not `{}`",
                partner.endpoint, r.site, partner.site
            )),
            String::new(),
        );
    }
    if !r.declared {
        return answered(
            Err(format!(
                "{} declares no agreement with {}",
                partner.site, config.site
            )),
            String::new(),
        );
    }
    let their_shares = Terms::from_proto(&r.shares.unwrap_or_default());
    let their_receives = Terms::from_proto(&r.receives.unwrap_or_default());
    answered(
        compare(
            &config.site,
            &partner.site,
            &partner.shares,
            &partner.receives,
            &their_shares,
            &their_receives,
        ),
        agreement_digest(&partner.site, &config.site, &their_shares, &their_receives),
    )
}

/// A lazily connected channel to `url` of `partner`, verified with the partner's declared CA
/// and presenting this site's partner-link certificate.
pub fn connect(
    config: &PartnersConfig,
    partner: &PartnerConfig,
    url: &str,
) -> Result<crate::client::AuthedChannel, RuntimeError> {
    crate::client::connect_lazy(&crate::client::ClientOptions {
        server: url.to_string(),
        token: None,
        ca_file: Some(partner.ca_file.clone()),
        cert_file: config.cert_file.clone(),
        key_file: config.key_file.clone(),
        connect_timeout: Some(Duration::from_secs(5)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn terms() -> Terms {
        Terms {
            alerts: true,
            min_severity: Some("high".into()),
            rules: vec!["b".into(), "a".into(), "a".into()],
            cameras: vec!["port-gate".into()],
            snapshots: true,
            footage: FootageTerms {
                requests: true,
                ..Default::default()
            },
        }
    }

    #[test]
    fn canonical_terms_survive_the_wire_and_hash_alike() {
        let t = terms();
        let back = Terms::from_proto(&t.to_proto());
        assert_eq!(back, t.canonical());
        assert_eq!(back.digest(), t.digest());
        assert_eq!(back.rules, vec!["a".to_string(), "b".to_string()]);
    }

    #[test]
    fn matching_needs_each_side_shares_to_equal_the_other_receives() {
        let a_shares = terms();
        let a_receives = Terms {
            alerts: true,
            ..Default::default()
        };
        assert!(
            compare(
                "burgas",
                "edirne",
                &a_shares,
                &a_receives,
                &a_receives,
                &a_shares
            )
            .is_ok()
        );
        assert_eq!(
            agreement_digest("burgas", "edirne", &a_shares, &a_receives),
            agreement_digest("edirne", "burgas", &a_receives, &a_shares)
        );
        let mut wrong = a_shares.clone();
        wrong.snapshots = false;
        let why = compare(
            "burgas",
            "edirne",
            &a_shares,
            &a_receives,
            &a_receives,
            &wrong,
        )
        .unwrap_err();
        assert!(why.contains("snapshots: true vs false"), "{why}");
        assert!(why.contains("what burgas shares with edirne"), "{why}");
    }

    #[test]
    fn coverage_follows_cameras_rules_and_severity() {
        let t = terms();
        let high = apb::AlertSeverity::High as i32;
        let low = apb::AlertSeverity::Low as i32;
        assert!(t.covers_alert("port-gate", "a", high));
        assert!(!t.covers_alert("port-gate", "a", low));
        assert!(!t.covers_alert("other", "a", high));
        assert!(!t.covers_alert("port-gate", "c", high));
        assert!(t.covers_footage("port-gate"));
        assert!(!Terms::default().covers_footage("port-gate"));
    }

    #[test]
    fn keys_must_be_64_hex_digits() {
        assert!(parse_public_key(&"ab".repeat(32)).is_ok());
        assert!(parse_public_key("abcd").unwrap_err().contains("32"));
        assert!(parse_public_key("zz").is_err());
    }

    struct Ca {
        pem: String,
        issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    }

    fn ca(name: &str) -> Ca {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        p.distinguished_name
            .push(rcgen::DnType::CommonName, format!("{name} CA"));
        let pem = p.self_signed(&key).unwrap().pem();
        Ca {
            pem,
            issuer: rcgen::Issuer::new(p, key),
        }
    }

    fn leaf(ca: &Ca, uri: &str) -> Vec<u8> {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        p.subject_alt_names
            .push(rcgen::SanType::URI(uri.try_into().unwrap()));
        p.signed_by(&key, &ca.issuer).unwrap().der().to_vec()
    }

    #[test]
    fn a_caller_is_the_partner_whose_ca_signed_it_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let edirne = ca("edirne");
        let yambol = ca("yambol");
        let stranger = ca("stranger");
        let mut cfg = PartnersConfig {
            site: "burgas".into(),
            ..Default::default()
        };
        for (site, c) in [("edirne", &edirne), ("yambol", &yambol)] {
            let path = dir.path().join(format!("{site}.crt"));
            std::fs::write(&path, &c.pem).unwrap();
            cfg.partners.push(PartnerConfig {
                site: site.into(),
                endpoint: format!("https://{site}.example:8473"),
                ca_file: path,
                evidence_public_key: "00".repeat(32),
                ..Default::default()
            });
        }
        let trust = PartnerTrust::new(&cfg).unwrap();
        let p = trust
            .identify(&[leaf(
                &edirne,
                "spiffe://kordon.io/ns/k/site/edirne/alerting",
            )])
            .unwrap();
        assert_eq!(p.partner_site(), Some("edirne"));
        assert!(crate::auth::authorize(&p, "burgas", crate::auth::Permission::ViewStatus).is_err());
        // Signed by Edirne's CA but claiming Yambol: refused.
        let e = trust
            .identify(&[leaf(
                &edirne,
                "spiffe://kordon.io/ns/k/site/yambol/alerting",
            )])
            .unwrap_err();
        assert!(e.to_string().contains("names site"), "{e}");
        // Signed by nobody declared.
        let e = trust
            .identify(&[leaf(
                &stranger,
                "spiffe://kordon.io/ns/k/site/edirne/alerting",
            )])
            .unwrap_err();
        assert!(
            e.to_string().contains("not signed by any declared partner"),
            "{e}"
        );
        assert!(trust.identify(&[]).is_err());
    }
}
