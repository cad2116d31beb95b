//! Footage grants: a partner site's request for footage of this site, its decision, and the
//! signed evidence bundle an approval makes — and, at the requesting site, the local mirror of
//! a grant asked of a partner.
//!
//! # What it guarantees
//! - A partner asks only for cameras of this installation's site that the agreement shares
//!   with it (`PartnerConfig::shares`), for a closed range no longer than the agreement's
//!   `footage.max_range`, with a reason, a case and a legal basis. Anything else is refused and
//!   nothing is stored.
//! - A request is idempotent by (partner, request id): a retry returns the stored grant, a
//!   different request under the same id is ALREADY_EXISTS.
//! - An approval covers exactly the approved cameras × range (never wider than asked) and is
//!   backed by one evidence bundle signed with this site's key, built before the grant reads
//!   as approved; a failed build leaves the grant pending. Masked footage is refused rather
//!   than sent unmasked: a masked partner may receive viewer copies only, and bundles without
//!   their originals are not built yet.
//! - An approved grant whose `access_until` has passed reads as EXPIRED everywhere; nothing
//!   has to rewrite it.
//! - At the requesting site a bundle from the partner is kept only once it verified with the
//!   partner's pinned evidence key.

use std::time::Duration;

use kordon_objects::time::{MICROS, now_micros};
use kordon_runtime::partner::{PartnerConfig, PartnersConfig};

use crate::StorageError;

pub const STATE_PENDING: i64 = 1;
pub const STATE_APPROVED: i64 = 2;
pub const STATE_DENIED: i64 = 3;
/// Never stored: an approved grant past `access_until` reads as this.
pub const STATE_EXPIRED: i64 = 4;

/// How long an approval lets the partner fetch the footage, when the decider does not say.
pub const DEFAULT_ACCESS_FOR: Duration = Duration::from_secs(7 * 86_400);
/// The longest a decider may let the partner fetch it.
pub const MAX_ACCESS_FOR: Duration = Duration::from_secs(90 * 86_400);
/// Most cameras in one request (one bundle).
pub const MAX_CAMERAS: usize = crate::evidence::MAX_CAMERAS;

/// Where a requesting site keeps the verified bundle of a partner's grant.
pub fn partner_bundle_key(owner_site: &str, grant_id: &str) -> String {
    format!("partners/{owner_site}/grants/{grant_id}.tar")
}

/// A grant as the index keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Grant {
    pub id: String,
    pub owner_site: String,
    pub requesting_site: String,
    pub request_id: String,
    /// True at the requesting site: a copy of the owner's grant.
    pub mirror: bool,
    pub requested_by: String,
    pub requested_by_name: String,
    pub cameras: Vec<String>,
    pub requested_from_us: i64,
    pub requested_to_us: i64,
    /// The approved range (the requested one until decided).
    pub from_us: i64,
    pub to_us: i64,
    pub reason: String,
    pub case_id: String,
    pub recipient: String,
    pub legal_basis: String,
    /// `original` or `masked`, from the agreement.
    pub form: String,
    pub keep_for_us: i64,
    /// [`STATE_PENDING`], [`STATE_APPROVED`] or [`STATE_DENIED`] as stored.
    pub state: i64,
    pub created_at_us: i64,
    pub decided_by: String,
    pub decided_at_us: Option<i64>,
    pub decision_reason: String,
    pub access_until_us: Option<i64>,
    pub bundle_id: String,
    /// Hex SHA-256 of the bundle's bytes.
    pub bundle_sha256: String,
    pub bundle_size: u64,
    /// Mirrors: the decision has been logged at this site.
    pub decision_logged: bool,
}

impl Grant {
    /// The state as of `now_us`: approved grants past `access_until` are expired.
    pub fn state_at(&self, now_us: i64) -> i64 {
        match (self.state, self.access_until_us) {
            (STATE_APPROVED, Some(until)) if until <= now_us => STATE_EXPIRED,
            (s, _) => s,
        }
    }

    pub fn state_now(&self) -> i64 {
        self.state_at(now_micros())
    }

    /// Whether `other` asks for exactly what this grant was asked for (a retry).
    pub fn same_request(&self, other: &Grant) -> bool {
        self.requesting_site == other.requesting_site
            && self.requested_by == other.requested_by
            && self.cameras == other.cameras
            && self.requested_from_us == other.requested_from_us
            && self.requested_to_us == other.requested_to_us
            && self.reason == other.reason
            && self.case_id == other.case_id
            && self.legal_basis == other.legal_basis
    }
}

/// Filters of [`crate::Index::list_grants`]; empty fields match everything.
#[derive(Debug, Clone, Default)]
pub struct GrantFilter {
    pub owner_site: String,
    pub requesting_site: String,
    /// Stored states ([`STATE_EXPIRED`] is matched by the caller).
    pub states: Vec<i64>,
    pub mirror: Option<bool>,
}

/// The partner `site` declared in `partners`.
pub fn partner<'a>(partners: &'a PartnersConfig, site: &str) -> Option<&'a PartnerConfig> {
    partners.partners.iter().find(|p| p.site == site)
}

/// Checks a partner's request against what this site shares with it: every camera covered,
/// the range no longer than `footage.max_range`. The message says what is not covered.
pub fn check_shared(
    partners: &PartnersConfig,
    partner: &PartnerConfig,
    cameras: &[String],
    from_us: i64,
    to_us: i64,
) -> Result<(), StorageError> {
    let terms = &partner.shares;
    if !terms.footage.requests {
        return Err(StorageError::PermissionDenied(format!(
            "the agreement between {} and {} does not let {} request footage",
            partners.site, partner.site, partner.site
        )));
    }
    for c in cameras {
        if !terms.covers_footage(c) {
            return Err(StorageError::PermissionDenied(format!(
                "camera {}/{c} is not shared with {} under the agreement",
                partners.site, partner.site
            )));
        }
    }
    let max = crate::service::duration_us(terms.footage.max_range);
    if to_us - from_us > max {
        return Err(StorageError::invalid(format!(
            "range: {} is longer than the {} the agreement with {} allows per request",
            humantime::format_duration(Duration::from_micros((to_us - from_us) as u64)),
            humantime::format_duration(terms.footage.max_range),
            partner.site
        )));
    }
    Ok(())
}

/// `access_until` of an approval made now for `access_for`.
pub fn access_until(access_for: Duration) -> i64 {
    now_micros().saturating_add(crate::service::duration_us(access_for))
}

/// Unix seconds of `us`, for messages.
pub fn rfc3339(us: i64) -> String {
    kordon_objects::time::rfc3339_micros(us - us % MICROS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kordon_runtime::partner::{FootageTerms, Terms};

    fn config(shares: Terms) -> PartnersConfig {
        PartnersConfig {
            site: "burgas".into(),
            partners: vec![PartnerConfig {
                site: "edirne".into(),
                shares,
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn only_shared_cameras_and_ranges_within_the_agreement() {
        let c = config(Terms {
            cameras: vec!["port-gate".into()],
            footage: FootageTerms {
                requests: true,
                max_range: Duration::from_secs(3600),
                ..Default::default()
            },
            ..Default::default()
        });
        let p = partner(&c, "edirne").unwrap();
        let hour = 3600 * MICROS;
        assert!(check_shared(&c, p, &["port-gate".into()], 0, hour).is_ok());
        let e = check_shared(&c, p, &["gate-3".into()], 0, hour).unwrap_err();
        assert!(matches!(e, StorageError::PermissionDenied(_)), "{e}");
        assert!(e.to_string().contains("burgas/gate-3"), "{e}");
        let e = check_shared(&c, p, &["port-gate".into()], 0, hour + 1).unwrap_err();
        assert!(e.to_string().contains("1h"), "{e}");
        let none = config(Terms::default());
        let p = partner(&none, "edirne").unwrap();
        assert!(check_shared(&none, p, &["port-gate".into()], 0, 1).is_err());
        assert!(partner(&none, "yambol").is_none());
    }

    #[test]
    fn an_approved_grant_expires_when_its_access_ends() {
        let g = Grant {
            state: STATE_APPROVED,
            access_until_us: Some(100),
            ..Default::default()
        };
        assert_eq!(g.state_at(99), STATE_APPROVED);
        assert_eq!(g.state_at(100), STATE_EXPIRED);
        let d = Grant {
            state: STATE_DENIED,
            ..Default::default()
        };
        assert_eq!(d.state_at(i64::MAX), STATE_DENIED);
    }
}
