//! A site's certificate authority and the certificates it issues: pure functions, no API calls
//! ([`crate::certificates`] keeps them in Secrets).
//!
//! Guarantees:
//! - Every site has its own CA (ECDSA P-256, valid [`CA_LIFETIME`], path length 0): a
//!   certificate of one site is never trusted by another site's services.
//! - Every certificate it issues carries exactly one Kordon identity,
//!   `spiffe://kordon.io/ns/<namespace>/site/<site>/<component>`
//!   ([`kordon_runtime::auth::ServiceIdentity`]), so it acts for its own site and role only;
//!   server certificates also name the component's Service DNS names (and, for ingest, each
//!   replica behind the headless Service).
//! - Certificates live [`CERT_LIFETIME`] and are due for renewal ([`CertInfo::renew_at`]) once
//!   less than a third of their lifetime is left, so a missed reconcile or two never lets one
//!   expire.
//!
//! Assumes the clocks of the operator and the services agree within [`BACKDATE`].

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kordon_runtime::auth::ServiceIdentity;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PublicKeyData, SanType,
};
use sha2::{Digest, Sha256};

/// SHA-256 of `bytes`, lower-case hex: certificate fingerprints, config digests.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// How long a site CA is valid.
pub const CA_LIFETIME: Duration = Duration::from_secs(10 * 365 * 86_400);
/// How long a workload's (or the operator's) certificate is valid.
pub const CERT_LIFETIME: Duration = Duration::from_secs(30 * 86_400);
/// Certificates start this much in the past, for clock skew between operator and pods.
pub const BACKDATE: Duration = Duration::from_secs(300);

/// Why a certificate could not be made or read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PkiError {
    #[error("cannot issue a certificate: {0}")]
    Issue(String),
    #[error("not a usable certificate: {0}")]
    BadCertificate(String),
    #[error("not a usable private key: {0}")]
    BadKey(String),
}

/// A site CA: its certificate and its signing key (which lives only in the CA Secret and in
/// the operator's memory).
pub struct SiteCa {
    cert_pem: String,
    key: KeyPair,
    info: CertInfo,
}

impl std::fmt::Debug for SiteCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SiteCa")
            .field("fingerprint", &self.info.fingerprint)
            .finish_non_exhaustive()
    }
}

/// A certificate and key issued to one workload, with the CA that verifies its peers.
#[derive(Clone, PartialEq, Eq)]
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
    pub ca_pem: String,
    pub info: CertInfo,
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued")
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

/// What the operator needs to know of a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    pub not_before: SystemTime,
    pub not_after: SystemTime,
    /// SHA-256 of the DER, lower-case hex.
    pub fingerprint: String,
    /// The Kordon identities it names.
    pub identities: Vec<ServiceIdentity>,
    /// Its DNS subject alternative names.
    pub dns_names: Vec<String>,
    /// First DNS SAN, else CN: what `auth.mtls.subjects` matches.
    pub subject: Option<String>,
    pub is_ca: bool,
}

impl CertInfo {
    /// When less than a third of the lifetime is left.
    pub fn renew_at(&self) -> SystemTime {
        let lifetime = self
            .not_after
            .duration_since(self.not_before)
            .unwrap_or_default();
        self.not_after - lifetime / 3
    }

    pub fn due(&self, now: SystemTime) -> bool {
        now >= self.renew_at()
    }
}

impl SiteCa {
    /// A new CA for `site` in `namespace`.
    pub fn generate(namespace: &str, site: &str, now: SystemTime) -> Result<Self, PkiError> {
        let key = KeyPair::generate().map_err(issue)?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "Kordon");
        dn.push(
            DnType::CommonName,
            format!("Kordon site CA {namespace}/{site}"),
        );
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.not_before = (now - BACKDATE).into();
        params.not_after = (now + CA_LIFETIME).into();
        let cert = params.self_signed(&key).map_err(issue)?;
        let cert_pem = cert.pem();
        let info = inspect(&cert_pem)?;
        Ok(SiteCa {
            cert_pem,
            key,
            info,
        })
    }

    /// The CA kept in a Secret: its certificate must be a CA and match the key.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, PkiError> {
        let info = inspect(cert_pem)?;
        if !info.is_ca {
            return Err(PkiError::BadCertificate("not a CA certificate".into()));
        }
        let key = KeyPair::from_pem(key_pem).map_err(|e| PkiError::BadKey(e.to_string()))?;
        let der = first_der(cert_pem)?;
        let (_, cert) = x509_parser::parse_x509_certificate(&der)
            .map_err(|e| PkiError::BadCertificate(e.to_string()))?;
        if cert.public_key().raw != key.subject_public_key_info().as_slice() {
            return Err(PkiError::BadKey(
                "the key does not belong to the CA certificate".into(),
            ));
        }
        Ok(SiteCa {
            cert_pem: cert_pem.to_string(),
            key,
            info,
        })
    }

    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The private key, for the CA Secret only.
    pub fn key_pem(&self) -> String {
        self.key.serialize_pem()
    }

    pub fn info(&self) -> &CertInfo {
        &self.info
    }

    /// A certificate for `identity`, usable as server (for `dns_names`) and as client.
    pub fn issue(
        &self,
        identity: &ServiceIdentity,
        dns_names: &[String],
        now: SystemTime,
    ) -> Result<Issued, PkiError> {
        let issuer = Issuer::from_ca_cert_pem(&self.cert_pem, &self.key).map_err(issue)?;
        let key = KeyPair::generate().map_err(issue)?;
        let mut params = CertificateParams::new(dns_names.to_vec()).map_err(issue)?;
        let uri = identity.uri().try_into().map_err(issue)?;
        params.subject_alt_names.insert(0, SanType::URI(uri));
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "Kordon");
        dn.push(DnType::CommonName, identity.subject());
        params.distinguished_name = dn;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        params.not_before = (now - BACKDATE).into();
        // Never outlive the CA.
        params.not_after = (now + CERT_LIFETIME).min(self.info.not_after).into();
        let cert = params.signed_by(&key, &issuer).map_err(issue)?;
        let cert_pem = cert.pem();
        let info = inspect(&cert_pem)?;
        Ok(Issued {
            cert_pem,
            key_pem: key.serialize_pem(),
            ca_pem: self.cert_pem.clone(),
            info,
        })
    }
}

fn issue(e: impl std::fmt::Display) -> PkiError {
    PkiError::Issue(e.to_string())
}

fn first_der(pem: &str) -> Result<Vec<u8>, PkiError> {
    let (_, p) = x509_parser::pem::parse_x509_pem(pem.as_bytes())
        .map_err(|e| PkiError::BadCertificate(format!("not PEM: {e}")))?;
    if p.label != "CERTIFICATE" {
        return Err(PkiError::BadCertificate(format!(
            "PEM block is `{}`, not CERTIFICATE",
            p.label
        )));
    }
    Ok(p.contents)
}

/// Reads the first certificate of a PEM text.
pub fn inspect(cert_pem: &str) -> Result<CertInfo, PkiError> {
    use x509_parser::prelude::*;
    let der = first_der(cert_pem)?;
    let (_, cert) =
        X509Certificate::from_der(&der).map_err(|e| PkiError::BadCertificate(e.to_string()))?;
    let time = |t: ASN1Time| {
        u64::try_from(t.timestamp())
            .map(|s| UNIX_EPOCH + Duration::from_secs(s))
            .map_err(|_| PkiError::BadCertificate("validity before 1970".into()))
    };
    let validity = cert.validity();
    let mut identities = Vec::new();
    let mut dns_names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::URI(uri) => {
                    if let Ok(Some(id)) = ServiceIdentity::parse(uri) {
                        identities.push(id);
                    }
                }
                GeneralName::DNSName(d) => dns_names.push(d.to_string()),
                _ => {}
            }
        }
    }
    let cn = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_string);
    let is_ca = cert
        .basic_constraints()
        .ok()
        .flatten()
        .is_some_and(|bc| bc.value.ca);
    Ok(CertInfo {
        not_before: time(validity.not_before)?,
        not_after: time(validity.not_after)?,
        fingerprint: sha256_hex(&der),
        identities,
        subject: dns_names.first().cloned().or(cn),
        dns_names,
        is_ca,
    })
}

/// The DNS names a component's server certificate answers to: its Service in every form a
/// client may use, and for ingest and detection every replica behind the headless Service
/// (the operator calls each replica, alerting each detection replica, by its own name).
pub fn dns_names(namespace: &str, site: &str, component: &str) -> Vec<String> {
    let service = crate::render::component_name(site, component);
    let mut names = vec![
        service.clone(),
        format!("{service}.{namespace}"),
        format!("{service}.{namespace}.svc"),
        format!("{service}.{namespace}.svc.cluster.local"),
    ];
    if crate::render::SHARDED.contains(&component) {
        names.push(format!("*.{service}.{namespace}.svc"));
        names.push(format!("*.{service}.{namespace}.svc.cluster.local"));
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(site: &str, component: &str) -> ServiceIdentity {
        ServiceIdentity::new("kordon", site, component).unwrap()
    }

    #[test]
    fn issued_certificates_name_one_identity_and_chain_to_their_ca() {
        let now = SystemTime::now();
        let ca = SiteCa::generate("kordon", "burgas", now).unwrap();
        assert!(ca.info().is_ca);
        let names = dns_names("kordon", "burgas", "ingest");
        let cert = ca.issue(&id("burgas", "ingest"), &names, now).unwrap();
        assert_eq!(cert.info.identities, vec![id("burgas", "ingest")]);
        assert!(
            cert.info
                .dns_names
                .contains(&"*.burgas-ingest.kordon.svc".to_string())
        );
        let detection = dns_names("kordon", "burgas", "detection");
        assert!(detection.contains(&"*.burgas-detection.kordon.svc".to_string()));
        let storage = dns_names("kordon", "burgas", "storage");
        assert!(!storage.iter().any(|n| n.starts_with('*')), "{storage:?}");
        assert!(!cert.info.is_ca);
        assert_eq!(cert.ca_pem, ca.cert_pem());
        assert_eq!(
            cert.info
                .not_after
                .duration_since(cert.info.not_before)
                .unwrap(),
            CERT_LIFETIME + BACKDATE
        );

        // Verified as rustls would: the chain and the names.
        let der = first_der(&cert.cert_pem).unwrap();
        let ca_der = first_der(ca.cert_pem()).unwrap();
        let (_, leaf) = x509_parser::parse_x509_certificate(&der).unwrap();
        let (_, root) = x509_parser::parse_x509_certificate(&ca_der).unwrap();
        leaf.verify_signature(Some(root.public_key())).unwrap();

        // Another site's CA did not sign it.
        let other = SiteCa::generate("kordon", "edirne", now).unwrap();
        let other_der = first_der(other.cert_pem()).unwrap();
        let (_, other_root) = x509_parser::parse_x509_certificate(&other_der).unwrap();
        assert!(
            leaf.verify_signature(Some(other_root.public_key()))
                .is_err()
        );
    }

    #[test]
    fn a_stored_ca_is_reloaded_and_a_foreign_key_is_refused() {
        let now = SystemTime::now();
        let ca = SiteCa::generate("kordon", "yambol", now).unwrap();
        let again = SiteCa::from_pem(ca.cert_pem(), &ca.key_pem()).unwrap();
        assert_eq!(again.info().fingerprint, ca.info().fingerprint);
        again.issue(&id("yambol", "storage"), &[], now).unwrap();

        let other = SiteCa::generate("kordon", "yambol", now).unwrap();
        let e = SiteCa::from_pem(ca.cert_pem(), &other.key_pem()).unwrap_err();
        assert!(matches!(e, PkiError::BadKey(_)), "{e}");
        let leaf = ca.issue(&id("yambol", "storage"), &[], now).unwrap();
        assert!(SiteCa::from_pem(&leaf.cert_pem, &leaf.key_pem).is_err());
        assert!(SiteCa::from_pem("garbage", &ca.key_pem()).is_err());
    }

    #[test]
    fn renewal_is_due_with_a_third_of_the_lifetime_left() {
        let now = SystemTime::now();
        let ca = SiteCa::generate("kordon", "haskovo", now).unwrap();
        let cert = ca.issue(&id("haskovo", "alerting"), &[], now).unwrap();
        let info = &cert.info;
        let lifetime = info.not_after.duration_since(info.not_before).unwrap();
        assert!(!info.due(now));
        assert!(!info.due(info.not_before + lifetime * 2 / 3 - Duration::from_secs(60)));
        assert!(info.due(info.not_before + lifetime * 2 / 3 + Duration::from_secs(60)));
        assert!(info.due(info.not_after + Duration::from_secs(1)));
    }
}
