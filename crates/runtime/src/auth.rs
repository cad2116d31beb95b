//! Who is calling, and what they may do.
//!
//! Authentication happens once per call in the gRPC server's gate ([`crate::server`]), before
//! any service code runs:
//! - a person presents `authorization: Bearer <JWT>`, verified against the configured public
//!   keys, issuer and audience; the token's roles claim gives their roles per site;
//! - a service presents an mTLS client certificate signed by the configured client CA; the
//!   certificate acts only for the sites its identity names (below);
//! - with the local development identity enabled, a call with no credentials acts as a local
//!   admin on every site. Credentials that are present are always verified.
//!
//! # Service identity in certificates
//!
//! A service certificate names who it is in a URI subject alternative name:
//!
//! ```text
//! spiffe://kordon.io/ns/<namespace>/site/<site>/<component>
//! ```
//!
//! ([`ServiceIdentity`]; namespace, site and component are DNS labels). The operator issues
//! such a certificate to every workload of a site from that site's own CA. It gives the
//! [`Role::Service`] on `<site>` and nowhere else, as the subject `<component>.<site>`; the
//! component `operator` (the operator's own client, which places cameras on ingest) also
//! holds [`Role::Admin`] on that site. A certificate may carry several such names (one per
//! site it acts for); URIs outside `spiffe://kordon.io/` are ignored, and a malformed one
//! under it is refused. The namespace is informational: which sites' certificates a server
//! trusts is decided by its client CA (one per site when the operator issues them).
//!
//! A certificate without a Kordon identity acts only through an explicit
//! `auth.mtls.subjects` entry (its first DNS SAN, else its CN → the sites it acts for). A
//! certificate with neither is refused: being signed by the client CA alone grants nothing.
//!
//! A call that fails authentication is answered `UNAUTHENTICATED` and never reaches a service.
//! Health checks and reflection need no identity. Services then ask [`authorize`] — the one
//! place where roles are turned into decisions — before they read or change anything, and a
//! refusal is `PERMISSION_DENIED`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use kordon_proto::common::v1 as pb;
use serde_json::Value;

use crate::RuntimeError;
use crate::config::{CommonConfig, JwtAlgorithm, JwtConfig, MtlsConfig};

/// The site name that stands for every site in role grants.
pub const ALL_SITES: &str = "*";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    Viewer,
    Operator,
    Auditor,
    Admin,
    Service,
    /// A partner installation on the partner link ([`crate::partner`]): in no permission.
    Partner,
}

impl Role {
    /// Roles a person's token may carry (the service role comes only from a certificate).
    fn from_claim(s: &str) -> Option<Role> {
        match s.to_ascii_lowercase().as_str() {
            "viewer" => Some(Role::Viewer),
            "operator" => Some(Role::Operator),
            "auditor" => Some(Role::Auditor),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Auditor => "auditor",
            Role::Admin => "admin",
            Role::Service => "service",
            Role::Partner => "partner",
        }
    }

    fn to_proto(self) -> pb::Role {
        match self {
            Role::Viewer => pb::Role::Viewer,
            Role::Operator => pb::Role::Operator,
            Role::Auditor => pb::Role::Auditor,
            Role::Admin => pb::Role::Admin,
            Role::Service => pb::Role::Service,
            Role::Partner => pb::Role::Partner,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrincipalKind {
    Person,
    Service,
    Development,
    /// A partner installation's service on the partner link.
    Partner,
}

/// An authenticated caller. Found in every authenticated request's extensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub kind: PrincipalKind,
    /// JWT `sub`, certificate identity, or `local-developer`.
    pub subject: String,
    pub display_name: Option<String>,
    /// Site (or [`ALL_SITES`]) → roles held there.
    pub roles: BTreeMap<String, BTreeSet<Role>>,
}

impl Principal {
    /// The local development identity: admin on every site.
    pub fn development() -> Self {
        Principal {
            kind: PrincipalKind::Development,
            subject: "local-developer".to_string(),
            display_name: Some("local development identity".to_string()),
            roles: BTreeMap::from([(ALL_SITES.to_string(), BTreeSet::from([Role::Admin]))]),
        }
    }

    /// Roles held on `site`, including grants for every site.
    pub fn roles_on(&self, site: &str) -> BTreeSet<Role> {
        let mut out = BTreeSet::new();
        for key in [site, ALL_SITES] {
            if let Some(r) = self.roles.get(key) {
                out.extend(r.iter().copied());
            }
        }
        out
    }

    /// Where `permission` holds: every site, or the listed ones. Used to filter listings.
    pub fn scope(&self, permission: Permission) -> SiteScope {
        let allowed = permission.roles();
        let mut sites = BTreeSet::new();
        for (site, roles) in &self.roles {
            if roles.iter().any(|r| allowed.contains(r)) {
                if site == ALL_SITES {
                    return SiteScope::All;
                }
                sites.insert(site.clone());
            }
        }
        SiteScope::Sites(sites)
    }

    pub fn to_proto(&self) -> pb::Principal {
        pb::Principal {
            kind: match self.kind {
                PrincipalKind::Person => pb::PrincipalKind::Person,
                PrincipalKind::Service => pb::PrincipalKind::Service,
                PrincipalKind::Development => pb::PrincipalKind::Development,
                PrincipalKind::Partner => pb::PrincipalKind::Partner,
            } as i32,
            subject: self.subject.clone(),
            display_name: self.display_name.clone().unwrap_or_default(),
            roles: self
                .roles
                .iter()
                .map(|(site, roles)| pb::SiteRoles {
                    site: site.clone(),
                    roles: roles.iter().map(|r| r.to_proto() as i32).collect(),
                })
                .collect(),
        }
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            PrincipalKind::Person => "person",
            PrincipalKind::Service => "service",
            PrincipalKind::Development => "dev",
            PrincipalKind::Partner => "partner",
        };
        write!(f, "{kind}:{}", self.subject)
    }
}

/// The sites on which a principal holds a permission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SiteScope {
    All,
    Sites(BTreeSet<String>),
}

impl SiteScope {
    pub fn contains(&self, site: &str) -> bool {
        match self {
            SiteScope::All => true,
            SiteScope::Sites(s) => s.contains(site),
        }
    }
}

/// What a call wants to do on a site. Each permission is granted to a fixed set of roles
/// ([`Permission::roles`]); that table is the whole policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Permission {
    /// Camera and service status, detections, alerts as a list.
    ViewStatus,
    /// Recorded or live footage, snapshots, renditions (always with a stated reason).
    ReadFootage,
    /// Acknowledge and resolve alerts.
    HandleAlerts,
    /// Export evidence bundles.
    ExportEvidence,
    /// Place and release legal holds.
    ManageHolds,
    /// Read and verify the access log.
    ReadAccessLog,
    /// Change site configuration: cameras, rules, retention, sharing.
    Administer,
    /// Write media and index records (ingest, transcode, detection acting for a site).
    WriteMedia,
    /// Footage grants with partner sites: ask a partner for footage, decide a partner's
    /// request, fetch an approved grant's bundle.
    PartnerFootage,
    /// Submit and cancel transcode jobs (renditions, thumbnails, viewer copies).
    Transcode,
}

impl Permission {
    pub fn roles(self) -> &'static [Role] {
        use Role::*;
        match self {
            Permission::ViewStatus => &[Viewer, Operator, Auditor, Admin, Service],
            Permission::ReadFootage => &[Viewer, Operator, Auditor, Admin, Service],
            Permission::HandleAlerts => &[Operator, Admin],
            Permission::ExportEvidence => &[Auditor, Admin],
            Permission::ManageHolds => &[Auditor, Admin],
            Permission::ReadAccessLog => &[Auditor, Admin],
            Permission::Administer => &[Admin],
            Permission::WriteMedia => &[Service, Admin],
            Permission::PartnerFootage => &[Operator, Auditor, Admin],
            Permission::Transcode => &[Operator, Admin, Service],
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Permission::ViewStatus => "view status",
            Permission::ReadFootage => "read footage",
            Permission::HandleAlerts => "handle alerts",
            Permission::ExportEvidence => "export evidence",
            Permission::ManageHolds => "manage legal holds",
            Permission::ReadAccessLog => "read the access log",
            Permission::Administer => "administer",
            Permission::WriteMedia => "write media",
            Permission::PartnerFootage => "request or decide footage grants with partners",
            Permission::Transcode => "submit or cancel transcode jobs",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No acceptable credentials; the text says what was wrong, never token contents.
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{principal} may not {} on site `{site}` (needs one of: {needs})", permission.as_str())]
    PermissionDenied {
        principal: String,
        permission: Permission,
        site: String,
        needs: String,
    },
    /// A call about no one site (e.g. listing sinks) by a caller with no role that grants the
    /// permission on any site.
    #[error("{principal} holds no role on any site")]
    NoSite { principal: String },
    /// The server gate did not run: a wiring bug, never the caller's fault.
    #[error("request reached a service without passing authentication")]
    MissingPrincipal,
}

impl From<AuthError> for tonic::Status {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Unauthenticated(_) => tonic::Status::unauthenticated(e.to_string()),
            AuthError::PermissionDenied { .. } | AuthError::NoSite { .. } => {
                tonic::Status::permission_denied(e.to_string())
            }
            AuthError::MissingPrincipal => tonic::Status::internal(e.to_string()),
        }
    }
}

/// The one authorisation decision: may `principal` do `permission` on `site`?
pub fn authorize(
    principal: &Principal,
    site: &str,
    permission: Permission,
) -> Result<(), AuthError> {
    let held = principal.roles_on(site);
    let allowed = permission.roles();
    if held.iter().any(|r| allowed.contains(r)) {
        Ok(())
    } else {
        Err(AuthError::PermissionDenied {
            principal: principal.to_string(),
            permission,
            site: site.to_string(),
            needs: allowed
                .iter()
                .map(|r| r.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        })
    }
}

/// [`authorize`] for a call about no one site: `principal` must hold `permission` on some
/// site. Returns where it holds it, for the call to keep its answer to those sites.
pub fn authorize_any_site(
    principal: &Principal,
    permission: Permission,
) -> Result<SiteScope, AuthError> {
    match principal.scope(permission) {
        SiteScope::Sites(s) if s.is_empty() => Err(AuthError::NoSite {
            principal: principal.to_string(),
        }),
        scope => Ok(scope),
    }
}

/// The caller of a request that passed the server gate.
pub fn principal<T>(req: &tonic::Request<T>) -> Result<&Principal, AuthError> {
    req.extensions()
        .get::<Principal>()
        .ok_or(AuthError::MissingPrincipal)
}

/// [`principal`] then [`authorize`], for the common case of one site per call.
pub fn authorize_request<'a, T>(
    req: &'a tonic::Request<T>,
    site: &str,
    permission: Permission,
) -> Result<&'a Principal, tonic::Status> {
    let p = principal(req)?;
    authorize(p, site, permission)?;
    Ok(p)
}

/// Verifies credentials. Built once from config; shared by every connection.
pub struct Authenticator {
    jwt: Option<JwtVerifier>,
    mtls: Option<MtlsConfig>,
    dev_identity: bool,
    /// The partner link: only partner certificates, nothing else.
    partners: Option<std::sync::Arc<crate::partner::PartnerTrust>>,
}

impl Authenticator {
    pub fn from_config(config: &CommonConfig) -> Result<Self, RuntimeError> {
        let jwt = config.auth.jwt.as_ref().map(JwtVerifier::new).transpose()?;
        let mtls = config
            .tls
            .as_ref()
            .and_then(|t| t.client_ca_file.as_ref())
            .map(|_| config.auth.mtls.clone());
        Ok(Authenticator {
            jwt,
            mtls,
            dev_identity: config.dev_identity,
            partners: None,
        })
    }

    /// The partner link's authenticator: a caller is the partner whose CA signed its
    /// certificate; bearer tokens and the development identity are never accepted.
    pub fn partner_link(trust: std::sync::Arc<crate::partner::PartnerTrust>) -> Self {
        Authenticator {
            jwt: None,
            mtls: None,
            dev_identity: false,
            partners: Some(trust),
        }
    }

    pub fn dev_identity(&self) -> bool {
        self.dev_identity
    }

    /// Whether any way to authenticate is configured.
    pub fn accepts_anything(&self) -> bool {
        self.jwt.is_some() || self.mtls.is_some() || self.dev_identity || self.partners.is_some()
    }

    /// Authenticates one call from its headers and (verified) client certificate chain, leaf
    /// first.
    pub fn authenticate(
        &self,
        headers: &http::HeaderMap,
        chain: &[Vec<u8>],
    ) -> Result<Principal, AuthError> {
        if let Some(trust) = &self.partners {
            if headers.contains_key(http::header::AUTHORIZATION) {
                return Err(AuthError::Unauthenticated(
                    "the partner link accepts partner certificates only, no bearer tokens".into(),
                ));
            }
            return trust.identify(chain);
        }
        let client_cert = chain.first().map(Vec::as_slice);
        if let Some(value) = headers.get(http::header::AUTHORIZATION) {
            let value = value.to_str().map_err(|_| {
                AuthError::Unauthenticated("authorization header is not valid text".into())
            })?;
            let token = value
                .strip_prefix("Bearer ")
                .or_else(|| value.strip_prefix("bearer "))
                .ok_or_else(|| {
                    AuthError::Unauthenticated(
                        "authorization header must be `Bearer <token>`".into(),
                    )
                })?
                .trim();
            return match &self.jwt {
                Some(v) => v.verify(token),
                None => Err(AuthError::Unauthenticated(
                    "this server accepts no bearer tokens (auth.jwt is not configured)".into(),
                )),
            };
        }
        if let (Some(der), Some(policy)) = (client_cert, &self.mtls) {
            return service_principal(der, policy);
        }
        if self.dev_identity {
            return Ok(Principal::development());
        }
        Err(AuthError::Unauthenticated(
            "no credentials: send `authorization: Bearer <JWT>` or a client certificate".into(),
        ))
    }
}

/// The scheme and trust domain of Kordon service identities.
pub const IDENTITY_PREFIX: &str = "spiffe://kordon.io/";

/// The component name of the operator's own client certificates.
pub const OPERATOR_COMPONENT: &str = "operator";

/// A Kordon service identity: `spiffe://kordon.io/ns/<namespace>/site/<site>/<component>`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServiceIdentity {
    pub namespace: String,
    pub site: String,
    pub component: String,
}

impl ServiceIdentity {
    /// An identity whose parts are DNS labels, or why not.
    pub fn new(namespace: &str, site: &str, component: &str) -> Result<Self, String> {
        for (what, v) in [
            ("namespace", namespace),
            ("site", site),
            ("component", component),
        ] {
            if !is_dns_label(v) {
                return Err(format!("{what} `{v}` is not a DNS label"));
            }
        }
        Ok(ServiceIdentity {
            namespace: namespace.to_string(),
            site: site.to_string(),
            component: component.to_string(),
        })
    }

    /// The URI SAN that carries it.
    pub fn uri(&self) -> String {
        format!(
            "{IDENTITY_PREFIX}ns/{}/site/{}/{}",
            self.namespace, self.site, self.component
        )
    }

    /// `Ok(None)` for a URI outside Kordon's trust domain; an error for a malformed one in it.
    pub fn parse(uri: &str) -> Result<Option<Self>, String> {
        let Some(path) = uri.strip_prefix(IDENTITY_PREFIX) else {
            return Ok(None);
        };
        let parts: Vec<&str> = path.split('/').collect();
        match parts.as_slice() {
            ["ns", namespace, "site", site, component] => {
                Self::new(namespace, site, component).map(Some)
            }
            _ => Err(format!(
                "`{uri}` is not {IDENTITY_PREFIX}ns/<namespace>/site/<site>/<component>"
            )),
        }
    }

    /// The principal's subject: `<component>.<site>`.
    pub fn subject(&self) -> String {
        format!("{}.{}", self.component, self.site)
    }

    /// The roles the identity holds on its site.
    pub fn roles(&self) -> BTreeSet<Role> {
        if self.component == OPERATOR_COMPONENT {
            BTreeSet::from([Role::Service, Role::Admin])
        } else {
            BTreeSet::from([Role::Service])
        }
    }
}

impl fmt::Display for ServiceIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.uri())
    }
}

/// A DNS-1123 label: how namespaces, sites and components are named.
fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// The identity in a client certificate that the TLS layer already verified against the CA:
/// its Kordon identities, else an explicit `auth.mtls.subjects` entry, else nothing.
fn service_principal(der: &[u8], policy: &MtlsConfig) -> Result<Principal, AuthError> {
    use x509_parser::prelude::*;
    let (_, cert) = X509Certificate::from_der(der)
        .map_err(|_| AuthError::Unauthenticated("client certificate cannot be parsed".into()))?;
    let names: Vec<GeneralName> = cert
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|san| san.value.general_names.clone())
        .unwrap_or_default();

    let mut identities = Vec::new();
    for name in &names {
        if let GeneralName::URI(uri) = name {
            match ServiceIdentity::parse(uri) {
                Ok(Some(id)) => identities.push(id),
                Ok(None) => {}
                Err(why) => {
                    return Err(AuthError::Unauthenticated(format!(
                        "client certificate has a malformed Kordon identity: {why}"
                    )));
                }
            }
        }
    }
    if !identities.is_empty() {
        identities.sort();
        identities.dedup();
        let mut roles: BTreeMap<String, BTreeSet<Role>> = BTreeMap::new();
        for id in &identities {
            roles.entry(id.site.clone()).or_default().extend(id.roles());
        }
        let subject = identities
            .iter()
            .map(ServiceIdentity::subject)
            .collect::<Vec<_>>()
            .join("+");
        return Ok(Principal {
            kind: PrincipalKind::Service,
            subject,
            display_name: None,
            roles,
        });
    }

    let dns_san = names.iter().find_map(|n| match n {
        GeneralName::DNSName(d) => Some(d.to_string()),
        _ => None,
    });
    let cn = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_string);
    let subject = dns_san.or(cn).ok_or_else(|| {
        AuthError::Unauthenticated(format!(
            "client certificate names no Kordon identity ({IDENTITY_PREFIX}ns/<namespace>/site/\
             <site>/<component>), DNS SAN or CN"
        ))
    })?;
    let sites = policy.subjects.get(&subject).ok_or_else(|| {
        AuthError::Unauthenticated(format!(
            "client certificate `{subject}` carries no Kordon identity ({IDENTITY_PREFIX}ns/\
             <namespace>/site/<site>/<component>) and is not listed in auth.mtls.subjects: it \
             may act for no site"
        ))
    })?;
    Ok(Principal {
        kind: PrincipalKind::Service,
        subject,
        display_name: None,
        roles: sites
            .iter()
            .map(|s| (s.clone(), BTreeSet::from([Role::Service])))
            .collect(),
    })
}

struct JwtKey {
    id: Option<String>,
    algorithm: Algorithm,
    key: DecodingKey,
}

struct JwtVerifier {
    keys: Vec<JwtKey>,
    issuer: String,
    audience: String,
    roles_claim: String,
    leeway: u64,
}

impl JwtVerifier {
    fn new(cfg: &JwtConfig) -> Result<Self, RuntimeError> {
        let mut keys = Vec::new();
        for (i, k) in cfg.keys.iter().enumerate() {
            let field = format!("auth.jwt.keys[{i}].public_key_file");
            let pem =
                std::fs::read(&k.public_key_file).map_err(|source| RuntimeError::ReadFile {
                    path: k.public_key_file.clone(),
                    source,
                })?;
            let (algorithm, key) = match k.algorithm {
                JwtAlgorithm::EdDSA => (Algorithm::EdDSA, DecodingKey::from_ed_pem(&pem)),
                JwtAlgorithm::RS256 => (Algorithm::RS256, DecodingKey::from_rsa_pem(&pem)),
                JwtAlgorithm::ES256 => (Algorithm::ES256, DecodingKey::from_ec_pem(&pem)),
            };
            let key = key.map_err(|e| {
                RuntimeError::config(
                    field,
                    format!("not a {:?} public key in PEM: {e}", k.algorithm),
                )
            })?;
            keys.push(JwtKey {
                id: k.id.clone(),
                algorithm,
                key,
            });
        }
        Ok(JwtVerifier {
            keys,
            issuer: cfg.issuer.clone(),
            audience: cfg.audience.clone(),
            roles_claim: cfg.roles_claim.clone(),
            leeway: cfg.leeway_seconds,
        })
    }

    fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        let bad = |why: &str| AuthError::Unauthenticated(format!("bearer token rejected: {why}"));
        let header = jsonwebtoken::decode_header(token).map_err(|_| bad("malformed token"))?;
        let key = match &header.kid {
            Some(kid) => self
                .keys
                .iter()
                .find(|k| k.id.as_deref() == Some(kid.as_str())),
            None if self.keys.len() == 1 => self.keys.first(),
            None => None,
        }
        .ok_or_else(|| bad("signed by an unknown key"))?;
        if header.alg != key.algorithm {
            return Err(bad("algorithm does not match the key"));
        }
        let mut validation = Validation::new(key.algorithm);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        // jsonwebtoken checks `nbf` only when asked; a token must not work before its time.
        validation.validate_nbf = true;
        validation.leeway = self.leeway;
        let data = jsonwebtoken::decode::<Value>(token, &key.key, &validation).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind as K;
            match e.kind() {
                K::ExpiredSignature => bad("expired"),
                K::ImmatureSignature => bad("not valid yet"),
                K::InvalidIssuer => bad("wrong issuer"),
                K::InvalidAudience => bad("wrong audience"),
                K::InvalidSignature => bad("bad signature"),
                K::MissingRequiredClaim(c) => bad(&format!("missing claim `{c}`")),
                K::InvalidClaimFormat(c) => bad(&format!("claim `{c}` is malformed")),
                _ => bad("invalid token"),
            }
        })?;
        let claims = data.claims;
        let subject = claims
            .get("sub")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| bad("`sub` must be a non-empty string"))?
            .to_string();
        let display_name = claims
            .get("name")
            .and_then(Value::as_str)
            .map(str::to_string);
        let mut roles: BTreeMap<String, BTreeSet<Role>> = BTreeMap::new();
        if let Some(grants) = claims.get(&self.roles_claim) {
            let grants = grants
                .as_object()
                .ok_or_else(|| bad("roles claim must map sites to role lists"))?;
            for (site, list) in grants {
                let list = list
                    .as_array()
                    .ok_or_else(|| bad("roles claim must map sites to role lists"))?;
                // Unknown role names grant nothing; they are not an error so that newer
                // issuers can add roles.
                let set: BTreeSet<Role> = list
                    .iter()
                    .filter_map(Value::as_str)
                    .filter_map(Role::from_claim)
                    .collect();
                if !set.is_empty() {
                    roles.insert(site.clone(), set);
                }
            }
        }
        Ok(Principal {
            kind: PrincipalKind::Person,
            subject,
            display_name,
            roles,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{AuthConfig, JwtKeyConfig, LogConfig};
    use std::path::PathBuf;

    fn person(grants: &[(&str, &[Role])]) -> Principal {
        Principal {
            kind: PrincipalKind::Person,
            subject: "ana".into(),
            display_name: None,
            roles: grants
                .iter()
                .map(|(s, r)| (s.to_string(), r.iter().copied().collect()))
                .collect(),
        }
    }

    #[test]
    fn roles_are_per_site() {
        let p = person(&[("burgas", &[Role::Viewer]), ("edirne", &[Role::Auditor])]);
        assert!(authorize(&p, "burgas", Permission::ReadFootage).is_ok());
        assert!(authorize(&p, "yambol", Permission::ReadFootage).is_err());
        assert!(authorize(&p, "burgas", Permission::ExportEvidence).is_err());
        assert!(authorize(&p, "edirne", Permission::ExportEvidence).is_ok());
        let err = authorize(&p, "burgas", Permission::HandleAlerts).unwrap_err();
        assert!(err.to_string().contains("`burgas`"), "{err}");
        assert_eq!(
            tonic::Status::from(err).code(),
            tonic::Code::PermissionDenied
        );
        assert_eq!(
            p.scope(Permission::ReadAccessLog),
            SiteScope::Sites(BTreeSet::from(["edirne".to_string()]))
        );
    }

    #[test]
    fn wildcard_and_dev_identity_cover_every_site() {
        let p = person(&[(ALL_SITES, &[Role::Operator])]);
        assert!(authorize(&p, "haskovo", Permission::HandleAlerts).is_ok());
        assert!(authorize(&p, "haskovo", Permission::Administer).is_err());
        let d = Principal::development();
        assert!(authorize(&d, "kirklareli", Permission::Administer).is_ok());
        assert_eq!(d.scope(Permission::ReadAccessLog), SiteScope::All);
    }

    #[test]
    fn people_cannot_write_media_and_services_cannot_export() {
        let admin_less = person(&[(ALL_SITES, &[Role::Viewer, Role::Operator, Role::Auditor])]);
        assert!(authorize(&admin_less, "burgas", Permission::WriteMedia).is_err());
        let svc = Principal {
            kind: PrincipalKind::Service,
            subject: "ingest".into(),
            display_name: None,
            roles: BTreeMap::from([("burgas".into(), BTreeSet::from([Role::Service]))]),
        };
        assert!(authorize(&svc, "burgas", Permission::WriteMedia).is_ok());
        assert!(authorize(&svc, "edirne", Permission::WriteMedia).is_err());
        assert!(authorize(&svc, "burgas", Permission::ExportEvidence).is_err());
    }

    fn common(jwt_key: Option<PathBuf>, dev: bool) -> CommonConfig {
        CommonConfig {
            grpc_listen: "127.0.0.1:1".parse().unwrap(),
            admin_listen: "127.0.0.1:2".parse().unwrap(),
            data_dir: PathBuf::from("x"),
            log: LogConfig::default(),
            tls: None,
            auth: AuthConfig {
                jwt: jwt_key.map(|k| JwtConfig {
                    issuer: "https://id.example".into(),
                    audience: "kordon".into(),
                    keys: vec![JwtKeyConfig {
                        id: None,
                        algorithm: JwtAlgorithm::EdDSA,
                        public_key_file: k,
                    }],
                    roles_claim: "kordon_roles".into(),
                    leeway_seconds: 0,
                }),
                mtls: MtlsConfig::default(),
            },
            dev_identity: dev,
        }
    }

    fn bearer(token: &str) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        h.insert(
            http::header::AUTHORIZATION,
            format!("Bearer {token}").parse().unwrap(),
        );
        h
    }

    /// An Ed25519 key pair as (private PKCS#8 PEM, public SPKI PEM).
    fn keypair() -> (String, String) {
        let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        (kp.serialize_pem(), kp.public_key_pem())
    }

    fn sign(private_pem: &str, claims: &Value) -> String {
        let key = jsonwebtoken::EncodingKey::from_ed_pem(private_pem.as_bytes()).unwrap();
        jsonwebtoken::encode(&jsonwebtoken::Header::new(Algorithm::EdDSA), claims, &key).unwrap()
    }

    fn now() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    #[test]
    fn jwt_people_get_their_roles_and_bad_tokens_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (private, public) = keypair();
        let path = dir.path().join("id.pub.pem");
        std::fs::write(&path, public).unwrap();
        let auth = Authenticator::from_config(&common(Some(path), false)).unwrap();

        let good = serde_json::json!({
            "sub": "ivan.petrov", "name": "Ivan Petrov", "iss": "https://id.example",
            "aud": "kordon", "exp": now() + 600,
            "kordon_roles": {"burgas": ["viewer", "auditor"], "*": ["bogus"]}
        });
        let p = auth
            .authenticate(&bearer(&sign(&private, &good)), &[])
            .unwrap();
        assert_eq!(p.kind, PrincipalKind::Person);
        assert_eq!(p.subject, "ivan.petrov");
        assert_eq!(
            p.roles_on("burgas"),
            BTreeSet::from([Role::Viewer, Role::Auditor])
        );
        assert!(
            p.roles_on("edirne").is_empty(),
            "unknown role names grant nothing"
        );

        let mut expired = good.clone();
        expired["exp"] = (now() - 3600).into();
        let e = auth
            .authenticate(&bearer(&sign(&private, &expired)), &[])
            .unwrap_err();
        assert!(e.to_string().contains("expired"), "{e}");

        let mut wrong_aud = good.clone();
        wrong_aud["aud"] = "someone-else".into();
        let e = auth
            .authenticate(&bearer(&sign(&private, &wrong_aud)), &[])
            .unwrap_err();
        assert!(e.to_string().contains("audience"), "{e}");

        let (other_private, _) = keypair();
        let e = auth
            .authenticate(&bearer(&sign(&other_private, &good)), &[])
            .unwrap_err();
        assert!(e.to_string().contains("signature"), "{e}");

        let e = auth.authenticate(&bearer("not.a.jwt"), &[]).unwrap_err();
        assert!(matches!(e, AuthError::Unauthenticated(_)));

        let e = auth.authenticate(&http::HeaderMap::new(), &[]).unwrap_err();
        assert!(e.to_string().contains("no credentials"), "{e}");
    }

    #[test]
    fn a_token_is_refused_before_its_nbf_within_the_configured_leeway() {
        let dir = tempfile::tempdir().unwrap();
        let (private, public) = keypair();
        let path = dir.path().join("id.pub.pem");
        std::fs::write(&path, public).unwrap();
        let mut cfg = common(Some(path), false);
        let claims = |nbf: u64| {
            serde_json::json!({
                "sub": "ivan.petrov", "iss": "https://id.example", "aud": "kordon",
                "exp": now() + 7200, "nbf": nbf, "kordon_roles": {"burgas": ["viewer"]}
            })
        };
        let strict = Authenticator::from_config(&cfg).unwrap();
        // Issued for tomorrow's shift: not usable today.
        let e = strict
            .authenticate(&bearer(&sign(&private, &claims(now() + 3600))), &[])
            .unwrap_err();
        assert!(e.to_string().contains("not valid yet"), "{e}");
        assert!(
            strict
                .authenticate(&bearer(&sign(&private, &claims(now() - 5))), &[])
                .is_ok()
        );

        // The leeway forgives clock skew, and only that much.
        if let Some(jwt) = cfg.auth.jwt.as_mut() {
            jwt.leeway_seconds = 60;
        }
        let skewed = Authenticator::from_config(&cfg).unwrap();
        assert!(
            skewed
                .authenticate(&bearer(&sign(&private, &claims(now() + 20))), &[])
                .is_ok()
        );
        assert!(
            skewed
                .authenticate(&bearer(&sign(&private, &claims(now() + 600))), &[])
                .is_err()
        );
    }

    #[test]
    fn dev_identity_only_when_enabled_and_never_over_bad_credentials() {
        let off = Authenticator::from_config(&common(None, false)).unwrap();
        assert!(off.authenticate(&http::HeaderMap::new(), &[]).is_err());
        assert!(!off.accepts_anything());
        let on = Authenticator::from_config(&common(None, true)).unwrap();
        assert_eq!(
            on.authenticate(&http::HeaderMap::new(), &[]).unwrap().kind,
            PrincipalKind::Development
        );
        // A presented token is verified even when the dev identity is on.
        let e = on.authenticate(&bearer("x.y.z"), &[]).unwrap_err();
        assert!(e.to_string().contains("accepts no bearer tokens"), "{e}");
    }

    /// A client certificate from a CA, with these URI and DNS SANs.
    fn client_cert(uris: &[&str], dns: &[&str]) -> Vec<u8> {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let mut params =
            rcgen::CertificateParams::new(dns.iter().map(|d| d.to_string()).collect::<Vec<_>>())
                .unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        for u in uris {
            params
                .subject_alt_names
                .push(rcgen::SanType::URI((*u).try_into().unwrap()));
        }
        let key = rcgen::KeyPair::generate().unwrap();
        params.signed_by(&key, &issuer).unwrap().der().to_vec()
    }

    #[test]
    fn a_kordon_identity_acts_for_its_own_site_only() {
        let der = client_cert(&["spiffe://kordon.io/ns/kordon/site/burgas/ingest"], &[]);
        let p = service_principal(&der, &MtlsConfig::default()).unwrap();
        assert_eq!(p.kind, PrincipalKind::Service);
        assert_eq!(p.subject, "ingest.burgas");
        assert!(authorize(&p, "burgas", Permission::WriteMedia).is_ok());
        // The attack: burgas's ingest writing into edirne's footage.
        assert!(authorize(&p, "edirne", Permission::WriteMedia).is_err());
        assert!(authorize(&p, "burgas", Permission::Administer).is_err());
        assert_eq!(
            p.scope(Permission::ReadFootage),
            SiteScope::Sites(BTreeSet::from(["burgas".to_string()]))
        );

        let op = client_cert(&["spiffe://kordon.io/ns/kordon/site/burgas/operator"], &[]);
        let p = service_principal(&op, &MtlsConfig::default()).unwrap();
        assert!(authorize(&p, "burgas", Permission::Administer).is_ok());
        assert!(authorize(&p, "edirne", Permission::Administer).is_err());

        // A subjects entry does not widen a certificate that names its identity.
        let mut wide = MtlsConfig::default();
        wide.subjects
            .insert("ingest.burgas".into(), vec![ALL_SITES.into()]);
        let p = service_principal(&der, &wide).unwrap();
        assert!(authorize(&p, "edirne", Permission::WriteMedia).is_err());
    }

    #[test]
    fn a_ca_signed_certificate_without_identity_is_refused() {
        // Signed by the client CA, names a service, but no Kordon identity and no policy:
        // before, it acted for every site.
        let der = client_cert(&[], &["ingest.burgas.kordon"]);
        let e = service_principal(&der, &MtlsConfig::default()).unwrap_err();
        assert!(matches!(e, AuthError::Unauthenticated(_)), "{e}");
        assert!(e.to_string().contains("auth.mtls.subjects"), "{e}");
        assert!(e.to_string().contains("`ingest.burgas.kordon`"), "{e}");
        assert_eq!(tonic::Status::from(e).code(), tonic::Code::Unauthenticated);

        let foreign = client_cert(&["https://example.org/ingest"], &[]);
        assert!(service_principal(&foreign, &MtlsConfig::default()).is_err());
        for bad in [
            "spiffe://kordon.io/ns/kordon/site/burgas",
            "spiffe://kordon.io/ns/kordon/site/*/ingest",
            "spiffe://kordon.io/ns/kordon/site/burgas/ingest/extra",
        ] {
            let der = client_cert(&[bad], &["ingest.burgas.kordon"]);
            let e = service_principal(&der, &MtlsConfig::default()).unwrap_err();
            assert!(e.to_string().contains("malformed"), "{bad}: {e}");
        }
    }

    #[test]
    fn an_explicit_subjects_entry_maps_a_plain_certificate_to_its_sites() {
        let der = client_cert(&[], &["ingest.burgas.kordon"]);
        let mut restricted = MtlsConfig::default();
        restricted
            .subjects
            .insert("ingest.burgas.kordon".into(), vec!["burgas".into()]);
        let p = service_principal(&der, &restricted).unwrap();
        assert_eq!(p.subject, "ingest.burgas.kordon");
        assert!(authorize(&p, "burgas", Permission::WriteMedia).is_ok());
        assert!(authorize(&p, "edirne", Permission::WriteMedia).is_err());

        let mut other = MtlsConfig::default();
        other.subjects.insert("transcode".into(), vec!["*".into()]);
        assert!(service_principal(&der, &other).is_err());
    }

    #[test]
    fn identities_round_trip_and_only_dns_labels_make_one() {
        let id = ServiceIdentity::new("kordon", "edirne", "storage").unwrap();
        assert_eq!(id.uri(), "spiffe://kordon.io/ns/kordon/site/edirne/storage");
        assert_eq!(ServiceIdentity::parse(&id.uri()), Ok(Some(id)));
        assert_eq!(ServiceIdentity::parse("spiffe://example.org/x"), Ok(None));
        assert!(ServiceIdentity::new("kordon", "Edirne", "storage").is_err());
        assert!(ServiceIdentity::new("kordon", "", "storage").is_err());
    }
}
