//! Footage grants between partner installations: RequestFootage, ListFootageGrants,
//! DecideFootageGrant and FetchFootageGrant (see [`crate::grants`] for the guarantees).
//!
//! Each call plays one of two roles, decided by who calls and whose cameras it names:
//! - **Owner side.** A partner on the partner link ([`Principal::partner_site`]) asks for
//!   footage of this installation's site (`partners.site`), lists its own grants and fetches
//!   the bundle of an approved one. People of this site (`PartnerFootage`: operator, auditor,
//!   admin) decide. Logged on this site's access log with `recipient` = the partner.
//! - **Requesting side.** A person of this site (`PartnerFootage`) asks a partner for footage
//!   of the partner's cameras: storage relays the request over the partner link, keeps a
//!   mirror of the grant, refreshes it from the partner, and fetches an approved bundle, which
//!   it keeps only once it verified with the partner's pinned evidence key. Logged on this
//!   site's access log with `source` = the partner.
//!
//! Every other storage RPC refuses partners: their role is in no permission.

use std::time::Duration;

use futures::TryStreamExt;
use kordon_objects::time::now_micros;
use kordon_objects::{ObjectPath, ObjectStoreExt};
use kordon_proto::common::v1 as common;
use kordon_proto::storage::v1 as pb;
use kordon_proto::storage::v1::storage_service_client::StorageServiceClient;
use kordon_runtime::auth::{Permission, Principal, authorize, principal};
use kordon_runtime::partner::PartnerConfig;
use sha2::{Digest, Sha256};
use tonic::codegen::BoxStream;
use tonic::{Request, Response, Status};

use super::convert::{
    audit_of, camera_ref, closed_range, duration_of, grant_objects, grant_pb, mirror_of, page_size,
    page_token, time_range,
};
use super::{SERVICE, StorageApi, invalid};
use crate::StorageError;
use crate::audit::NewAccessEntry;
use crate::evidence::{self, ExportRequest, TrustedKey};
use crate::grants::{self, Grant, GrantFilter};

/// How long a call over the partner link may take (a fetch streams for as long as it needs).
const PARTNER_CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Bytes per message of a bundle download.
const CHUNK: usize = 256 * 1024;

/// What a RequestFootage asks for, validated.
struct Asked {
    owner: String,
    cameras: Vec<String>,
    from_us: i64,
    to_us: i64,
    audit: common::AuditContext,
    legal_basis: String,
    request_id: String,
}

fn asked(r: &pb::RequestFootageRequest) -> Result<Asked, Status> {
    let mut owner = String::new();
    let mut cameras: Vec<String> = Vec::with_capacity(r.cameras.len());
    for (i, c) in r.cameras.iter().enumerate() {
        crate::service::check_camera(&c.site, &c.camera)
            .map_err(|e| invalid(format!("cameras[{i}]: {e}")))?;
        if i == 0 {
            owner = c.site.clone();
        } else if c.site != owner {
            return Err(invalid("cameras: a request names cameras of one site"));
        }
        if cameras.contains(&c.camera) {
            return Err(invalid(format!(
                "cameras: `{}/{}` is listed twice",
                c.site, c.camera
            )));
        }
        cameras.push(c.camera.clone());
    }
    if cameras.is_empty() {
        return Err(invalid("cameras: at least one camera is needed"));
    }
    if cameras.len() > grants::MAX_CAMERAS {
        return Err(invalid(format!(
            "cameras: at most {} per request",
            grants::MAX_CAMERAS
        )));
    }
    let (from_us, to_us) = closed_range(&r.range)?;
    let audit = audit_of(&r.audit)?;
    if audit.case_id.trim().is_empty() {
        return Err(invalid(
            "audit.case_id: a footage request needs the case it is for",
        ));
    }
    let legal_basis = r.legal_basis.trim().to_string();
    if legal_basis.is_empty() {
        return Err(invalid(
            "legal_basis: required — the law or agreement article the request rests on",
        ));
    }
    if legal_basis.len() > 500 || r.request_id.len() > 128 {
        return Err(invalid("legal_basis at most 500 bytes, request_id 128"));
    }
    Ok(Asked {
        owner,
        cameras,
        from_us,
        to_us,
        audit,
        legal_basis,
        request_id: r.request_id.trim().to_string(),
    })
}

fn state_name(state: i64) -> &'static str {
    match state {
        grants::STATE_PENDING => "pending",
        grants::STATE_APPROVED => "approved",
        grants::STATE_DENIED => "denied",
        grants::STATE_EXPIRED => "expired",
        _ => "unknown",
    }
}

impl StorageApi {
    /// This installation's site, for the grant calls: partners must be configured.
    fn here(&self) -> Result<String, Status> {
        let site = &self.storage.partners().site;
        if site.is_empty() {
            return Err(StorageError::FailedPrecondition(
                "footage grants need the partners: section (this installation's site and its \
                 partners); none is configured"
                    .into(),
            )
            .into());
        }
        Ok(site.clone())
    }

    fn partner(&self, site: &str) -> Result<PartnerConfig, Status> {
        grants::partner(self.storage.partners(), site)
            .cloned()
            .ok_or_else(|| {
                Status::not_found(format!(
                    "`{site}` is not a partner of this installation (partners.partners)"
                ))
            })
    }

    fn check_accepted(&self, partner: &str) -> Result<(), Status> {
        if self.storage.agreement_accepted(partner) {
            Ok(())
        } else {
            Err(StorageError::FailedPrecondition(format!(
                "the agreement with {partner} is not accepted by both sides at the moment; \
                 footage does not flow until it is (kordon partners status)"
            ))
            .into())
        }
    }

    /// A storage client over the partner link to `partner`.
    fn partner_client(
        &self,
        partner: &PartnerConfig,
    ) -> Result<StorageServiceClient<kordon_runtime::client::AuthedChannel>, Status> {
        let channel = kordon_runtime::partner::connect(
            self.storage.partners(),
            partner,
            partner.storage_url(),
        )
        .map_err(|e| {
            tracing::error!(partner = %partner.site, error = %e, "cannot set up the partner link");
            Status::failed_precondition(format!(
                "the partner link to {} is not usable (see the storage log)",
                partner.site
            ))
        })?;
        Ok(StorageServiceClient::new(channel))
    }

    /// Appends an access-log entry on this installation's log.
    #[allow(clippy::too_many_arguments)]
    async fn log_grant(
        &self,
        site: &str,
        principal: (&str, &str),
        via_service: &str,
        action: pb::AccessAction,
        g: &Grant,
        reason: &str,
        recipient: &str,
        source: &str,
        method: &str,
    ) -> Result<(), Status> {
        self.storage
            .record_access(&NewAccessEntry {
                site: site.to_string(),
                principal: principal.0.to_string(),
                principal_name: principal.1.to_string(),
                via_service: via_service.to_string(),
                action: action as i32,
                objects: grant_objects(g),
                reason: reason.trim().to_string(),
                case_id: g.case_id.clone(),
                recipient: recipient.to_string(),
                method: format!("{SERVICE}{method}"),
                source: source.to_string(),
            })
            .await?;
        Ok(())
    }
}

/// The status a partner's refusal becomes here: its code, its words, and who said them.
fn from_partner(site: &str, s: Status) -> Status {
    let code = match s.code() {
        // Our caller did nothing wrong in these cases: the link or the partner did.
        tonic::Code::Unauthenticated | tonic::Code::Internal | tonic::Code::Unknown => {
            tonic::Code::Unavailable
        }
        c => c,
    };
    Status::new(code, format!("partner {site}: {}", s.message()))
}

fn person_name(who: &Principal) -> String {
    who.display_name.clone().unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// RequestFootage
// ---------------------------------------------------------------------------------------------

pub(super) async fn request_footage(
    api: &StorageApi,
    req: Request<pb::RequestFootageRequest>,
) -> Result<Response<pb::RequestFootageResponse>, Status> {
    let caller = principal(&req)?.clone();
    let r = req.into_inner();
    match caller.partner_site() {
        Some(partner) => owner_request(api, &caller, partner, r).await,
        None => relay_request(api, &caller, r).await,
    }
}

/// A partner asks for footage of this site.
async fn owner_request(
    api: &StorageApi,
    caller: &Principal,
    partner_site: &str,
    r: pb::RequestFootageRequest,
) -> Result<Response<pb::RequestFootageResponse>, Status> {
    let here = api.here()?;
    let a = asked(&r)?;
    if a.owner != here {
        return Err(invalid(format!(
            "cameras: must be cameras of {here}, this installation's site (not {})",
            a.owner
        )));
    }
    let partner = api.partner(partner_site)?;
    api.check_accepted(partner_site)?;
    grants::check_shared(
        api.storage.partners(),
        &partner,
        &a.cameras,
        a.from_us,
        a.to_us,
    )?;
    let requested_by = r.requested_by.trim().to_string();
    if requested_by.is_empty() || requested_by.len() > 200 {
        return Err(invalid(format!(
            "requested_by: required (the subject of the person at {partner_site} who asks), at \
             most 200 bytes"
        )));
    }
    let id = uuid::Uuid::now_v7().to_string();
    let terms = &partner.shares.footage;
    let g = Grant {
        id: id.clone(),
        owner_site: here.clone(),
        requesting_site: partner_site.to_string(),
        request_id: if a.request_id.is_empty() {
            id.clone()
        } else {
            a.request_id.clone()
        },
        mirror: false,
        requested_by: requested_by.clone(),
        requested_by_name: r.requested_by_name.trim().chars().take(200).collect(),
        cameras: a.cameras.clone(),
        requested_from_us: a.from_us,
        requested_to_us: a.to_us,
        from_us: a.from_us,
        to_us: a.to_us,
        reason: a.audit.reason.trim().to_string(),
        case_id: a.audit.case_id.trim().to_string(),
        recipient: a.audit.recipient.trim().to_string(),
        legal_basis: a.legal_basis.clone(),
        form: terms.form.as_str().to_string(),
        keep_for_us: crate::service::duration_us(terms.keep_for),
        state: grants::STATE_PENDING,
        created_at_us: now_micros(),
        ..Default::default()
    };
    let (stored, created) = api.storage.index().insert_grant(&g).await?;
    if !created && !stored.same_request(&g) {
        return Err(Status::already_exists(format!(
            "request_id `{}` already names a different request of {partner_site}: a retry must \
             repeat the request exactly; use a new request id for a new request",
            a.request_id
        )));
    }
    api.log_grant(
        &here,
        (
            &format!("{partner_site}/{requested_by}"),
            &stored.requested_by_name,
        ),
        &caller.to_string(),
        pb::AccessAction::FootageRequest,
        &stored,
        &stored.reason,
        partner_site,
        "",
        if created {
            "RequestFootage"
        } else {
            "RequestFootage (retry)"
        },
    )
    .await?;
    if created {
        tracing::info!(grant = %stored.id, partner = %partner_site, cameras = stored.cameras.len(),
                       "footage requested by a partner");
    }
    Ok(Response::new(pb::RequestFootageResponse {
        grant: Some(grant_pb(&stored, now_micros())),
    }))
}

/// A person of this site asks a partner for footage of the partner's cameras.
async fn relay_request(
    api: &StorageApi,
    who: &Principal,
    r: pb::RequestFootageRequest,
) -> Result<Response<pb::RequestFootageResponse>, Status> {
    let here = api.here()?;
    authorize(who, &here, Permission::PartnerFootage)?;
    let a = asked(&r)?;
    if a.owner == here {
        return Err(invalid(format!(
            "cameras: {here} is this installation's own site; request footage of a partner's \
             cameras (its own people read this site's footage directly)"
        )));
    }
    let partner = api.partner(&a.owner)?;
    api.check_accepted(&partner.site)?;
    if !partner.receives.footage.requests {
        return Err(Status::permission_denied(format!(
            "the agreement with {} does not provide for footage requests (receives.footage.\
             requests is false)",
            partner.site
        )));
    }
    let request_id = if a.request_id.is_empty() {
        uuid::Uuid::now_v7().to_string()
    } else {
        a.request_id.clone()
    };
    let mut relayed = Request::new(pb::RequestFootageRequest {
        cameras: a
            .cameras
            .iter()
            .map(|c| camera_ref(&partner.site, c))
            .collect(),
        range: Some(time_range(a.from_us, a.to_us)),
        audit: Some(common::AuditContext {
            reason: a.audit.reason.trim().to_string(),
            case_id: a.audit.case_id.trim().to_string(),
            recipient: a.audit.recipient.trim().to_string(),
        }),
        request_id: request_id.clone(),
        legal_basis: a.legal_basis.clone(),
        requested_by: who.subject.clone(),
        requested_by_name: person_name(who),
    });
    relayed.set_timeout(PARTNER_CALL_TIMEOUT);
    let answer = api
        .partner_client(&partner)?
        .request_footage(relayed)
        .await
        .map_err(|s| from_partner(&partner.site, s))?
        .into_inner()
        .grant
        .ok_or_else(|| Status::unavailable(format!("partner {}: no grant", partner.site)))?;
    let mut mirror = mirror_of(&answer, &partner.site, &here, &request_id)?;
    mirror.requested_by_name = person_name(who);
    let (stored, created) = api.storage.index().insert_grant(&mirror).await?;
    if !created {
        api.storage.index().refresh_mirror(&mirror).await?;
    }
    api.log_grant(
        &here,
        (&who.subject, &person_name(who)),
        "",
        pb::AccessAction::FootageRequest,
        &stored,
        &stored.reason,
        "",
        &partner.site,
        "RequestFootage",
    )
    .await?;
    Ok(Response::new(pb::RequestFootageResponse {
        grant: Some(grant_pb(&mirror, now_micros())),
    }))
}

// ---------------------------------------------------------------------------------------------
// ListFootageGrants
// ---------------------------------------------------------------------------------------------

pub(super) async fn list_footage_grants(
    api: &StorageApi,
    req: Request<pb::ListFootageGrantsRequest>,
) -> Result<Response<pb::ListFootageGrantsResponse>, Status> {
    let caller = principal(&req)?.clone();
    let r = req.into_inner();
    let here = api.here()?;
    let mut states = Vec::new();
    for s in &r.states {
        match pb::FootageGrantState::try_from(*s) {
            Ok(pb::FootageGrantState::Unspecified) | Err(_) => {
                return Err(invalid(format!("states: {s} is not a grant state")));
            }
            Ok(s) => states.push(s as i32 as i64),
        }
    }
    let mut filter = GrantFilter {
        requesting_site: r.requesting_site.trim().to_string(),
        // Expired grants are stored as approved.
        states: states
            .iter()
            .map(|s| {
                if *s == grants::STATE_EXPIRED {
                    grants::STATE_APPROVED
                } else {
                    *s
                }
            })
            .collect(),
        ..Default::default()
    };
    match caller.partner_site() {
        Some(partner) => {
            if !filter.requesting_site.is_empty() && filter.requesting_site != partner {
                return Err(Status::permission_denied(
                    "a partner sees only its own grants",
                ));
            }
            filter.requesting_site = partner.to_string();
            filter.owner_site = here.clone();
            filter.mirror = Some(false);
        }
        None => {
            authorize(&caller, &here, Permission::PartnerFootage)?;
            refresh_outgoing(api, &here).await;
        }
    }
    let offset: u64 = match page_token(&r.page) {
        "" => 0,
        t => t
            .parse()
            .map_err(|_| invalid("page.page_token: not a token of this list"))?,
    };
    let size = page_size(&r.page);
    let rows = api
        .storage
        .index()
        .list_grants(&filter, offset, size)
        .await?;
    let next_page_token = if rows.len() as u32 == size {
        (offset + rows.len() as u64).to_string()
    } else {
        String::new()
    };
    let now = now_micros();
    Ok(Response::new(pb::ListFootageGrantsResponse {
        grants: rows
            .iter()
            .filter(|g| states.is_empty() || states.contains(&g.state_at(now)))
            .map(|g| grant_pb(g, now))
            .collect(),
        page: Some(common::PageResponse { next_page_token }),
    }))
}

/// Refreshes the mirrors of grants this site asked of partners (pending or approved ones)
/// from their owners, and logs each new decision once. A partner out of reach leaves its
/// mirrors as they were (logged as a warning).
pub async fn refresh_outgoing(api: &StorageApi, here: &str) {
    let open = match api
        .storage
        .index()
        .list_grants(
            &GrantFilter {
                requesting_site: here.to_string(),
                mirror: Some(true),
                ..Default::default()
            },
            0,
            10_000,
        )
        .await
    {
        Ok(rows) => rows,
        Err(e) => {
            tracing::warn!(error = %e, "cannot list outgoing footage grants");
            return;
        }
    };
    let mut owners: Vec<&str> = open
        .iter()
        .filter(|g| g.state == grants::STATE_PENDING || !g.decision_logged)
        .map(|g| g.owner_site.as_str())
        .collect();
    owners.sort();
    owners.dedup();
    for owner in owners {
        if let Err(e) = refresh_from(api, here, owner, &open).await {
            tracing::warn!(partner = %owner, error = %e.message(),
                           "footage grants not refreshed from the partner");
        }
    }
}

async fn refresh_from(
    api: &StorageApi,
    here: &str,
    owner: &str,
    mine: &[Grant],
) -> Result<(), Status> {
    let partner = api.partner(owner)?;
    let mut client = api.partner_client(&partner)?;
    let mut token = String::new();
    loop {
        let mut req = Request::new(pb::ListFootageGrantsRequest {
            requesting_site: here.to_string(),
            states: Vec::new(),
            page: Some(common::PageRequest {
                page_size: 1000,
                page_token: token.clone(),
            }),
        });
        req.set_timeout(PARTNER_CALL_TIMEOUT);
        let page = client
            .list_footage_grants(req)
            .await
            .map_err(|s| from_partner(owner, s))?
            .into_inner();
        for p in &page.grants {
            let Some(local) = mine.iter().find(|g| g.owner_site == owner && g.id == p.id) else {
                continue;
            };
            let fresh = mirror_of(p, owner, here, &local.request_id)?;
            api.storage.index().refresh_mirror(&fresh).await?;
            if fresh.state != grants::STATE_PENDING {
                log_decision_once(api, here, owner, &fresh).await?;
            }
        }
        token = page.page.map(|p| p.next_page_token).unwrap_or_default();
        if token.is_empty() {
            return Ok(());
        }
    }
}

/// Logs a partner's decision on one of this site's requests, once.
async fn log_decision_once(
    api: &StorageApi,
    here: &str,
    owner: &str,
    g: &Grant,
) -> Result<(), Status> {
    if !api.storage.index().claim_decision_log(owner, &g.id).await? {
        return Ok(());
    }
    let logged = api
        .log_grant(
            here,
            (&format!("{owner}/{}", g.decided_by), ""),
            "",
            pb::AccessAction::FootageDecision,
            g,
            &format!(
                "{owner} {} footage grant {}: {}",
                state_name(g.state),
                g.id,
                g.decision_reason
            ),
            "",
            owner,
            "DecideFootageGrant (partner)",
        )
        .await;
    if let Err(e) = logged {
        let _ = api.storage.index().release_decision_log(owner, &g.id).await;
        return Err(e);
    }
    tracing::info!(grant = %g.id, partner = %owner, state = state_name(g.state),
                   "partner decided a footage request");
    Ok(())
}

/// Polls the owners of this site's pending footage requests every `every` until `shutdown`,
/// so their decisions are mirrored and logged without anyone listing. Spawn it beside the
/// servers when partners are configured.
pub async fn poll_partner_grants(
    storage: crate::Storage,
    every: Duration,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let here = storage.partners().site.clone();
    if here.is_empty() || storage.partners().partners.is_empty() {
        return;
    }
    let api = StorageApi::new(storage);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => refresh_outgoing(&api, &here).await,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// DecideFootageGrant
// ---------------------------------------------------------------------------------------------

pub(super) async fn decide_footage_grant(
    api: &StorageApi,
    req: Request<pb::DecideFootageGrantRequest>,
) -> Result<Response<pb::DecideFootageGrantResponse>, Status> {
    let who = principal(&req)?.clone();
    let here = api.here()?;
    if who.partner_site().is_some() {
        return Err(Status::permission_denied(
            "a partner does not decide footage grants: the owner's people do",
        ));
    }
    authorize(&who, &here, Permission::PartnerFootage)?;
    let r = req.into_inner();
    let id = r.grant_id.trim().to_string();
    if id.is_empty() {
        return Err(invalid("grant_id: required"));
    }
    let audit = audit_of(&r.audit)?;
    let mut g = api
        .storage
        .index()
        .grant(&here, &id)
        .await?
        .filter(|g| !g.mirror)
        .ok_or_else(|| Status::not_found(format!("no footage grant {id} of {here}")))?;
    let now = now_micros();
    if g.state_at(now) != grants::STATE_PENDING {
        return Err(StorageError::FailedPrecondition(format!(
            "footage grant {id} is already {} and cannot be decided again",
            state_name(g.state_at(now))
        ))
        .into());
    }
    let decision = pb::FootageDecision::try_from(r.decision).unwrap_or_default();
    match decision {
        pb::FootageDecision::Approve => {
            let (from_us, to_us) = match &r.range {
                None => (g.requested_from_us, g.requested_to_us),
                Some(_) => closed_range(&r.range)?,
            };
            if from_us < g.requested_from_us || to_us > g.requested_to_us {
                return Err(invalid(format!(
                    "range: an approval lies within the requested range ({} – {})",
                    grants::rfc3339(g.requested_from_us),
                    grants::rfc3339(g.requested_to_us)
                )));
            }
            let access_for = duration_of(
                &r.access_for,
                "access_for",
                grants::DEFAULT_ACCESS_FOR,
                grants::MAX_ACCESS_FOR,
            )?;
            if g.form == kordon_runtime::partner::FootageForm::Masked.as_str() {
                return Err(StorageError::FailedPrecondition(format!(
                    "the agreement with {} shares footage masked: the partner may receive \
                     viewer copies only, never the originals, and a bundle without its \
                     originals is not built yet, so this grant cannot be approved: deny it, or \
                     change the agreement to original footage (an export with viewer copies, \
                     `kordon evidence export --blur-people`, can be handed over outside the \
                     partner link)",
                    g.requesting_site
                ))
                .into());
            }
            api.check_accepted(&g.requesting_site)?;
            g.from_us = from_us;
            g.to_us = to_us;
            let export = ExportRequest {
                site: here.clone(),
                cameras: g.cameras.clone(),
                from_us,
                to_us,
                case_id: g.case_id.clone(),
                reason: format!("footage grant {id} to {}: {}", g.requesting_site, g.reason)
                    .chars()
                    .take(2000)
                    .collect(),
                recipient: g.requesting_site.clone(),
                description: format!(
                    "Footage grant {id} for {} (legal basis: {}), requested by {}/{}; approved \
                     by {}: {}",
                    g.requesting_site,
                    g.legal_basis,
                    g.requesting_site,
                    g.requested_by,
                    who.subject,
                    audit.reason.trim()
                ),
                request_id: String::new(),
                exported_by: who.subject.clone(),
                exported_by_name: person_name(&who),
                rendering: None,
            };
            let (bundle, _) = api.storage.start_export(&export).await?;
            // The export is logged (and the bundle's manifest names that entry) before it is
            // built; the decision follows once the bundle is ready.
            let entry = api
                .storage
                .record_access(&NewAccessEntry {
                    site: here.clone(),
                    principal: who.subject.clone(),
                    principal_name: person_name(&who),
                    via_service: String::new(),
                    action: pb::AccessAction::Export as i32,
                    objects: grant_objects(&g),
                    reason: export.reason.clone(),
                    case_id: g.case_id.clone(),
                    recipient: g.requesting_site.clone(),
                    method: format!("{SERVICE}DecideFootageGrant"),
                    source: String::new(),
                })
                .await;
            let entry = match entry {
                Ok(e) => e,
                Err(e) => {
                    let _ = api
                        .storage
                        .index()
                        .fail_bundle(&bundle.id, "the access log could not record the export")
                        .await;
                    return Err(e.into());
                }
            };
            let built = api
                .storage
                .build_bundle(
                    &bundle,
                    &person_name(&who),
                    (entry.sequence, entry.hash),
                    &|_, _, _| {},
                    &tokio_util::sync::CancellationToken::new(),
                )
                .await?;
            g.state = grants::STATE_APPROVED;
            g.access_until_us = Some(grants::access_until(access_for));
            g.bundle_id = built.id.clone();
            g.bundle_sha256 = built.sha256.map(hex::encode).unwrap_or_default();
            g.bundle_size = built.size_bytes;
        }
        pb::FootageDecision::Deny => {
            g.state = grants::STATE_DENIED;
        }
        pb::FootageDecision::Unspecified => {
            return Err(invalid("decision: approve or deny"));
        }
    }
    g.decided_by = who.subject.clone();
    g.decided_at_us = Some(now_micros());
    g.decision_reason = audit.reason.trim().to_string();
    api.storage.index().decide_grant(&g).await?;
    api.log_grant(
        &here,
        (&who.subject, &person_name(&who)),
        "",
        pb::AccessAction::FootageDecision,
        &g,
        &audit.reason,
        &g.requesting_site,
        "",
        "DecideFootageGrant",
    )
    .await?;
    tracing::info!(grant = %g.id, partner = %g.requesting_site, state = state_name(g.state),
                   "footage grant decided");
    Ok(Response::new(pb::DecideFootageGrantResponse {
        grant: Some(grant_pb(&g, now_micros())),
    }))
}

// ---------------------------------------------------------------------------------------------
// FetchFootageGrant
// ---------------------------------------------------------------------------------------------

pub(super) async fn fetch_footage_grant(
    api: &StorageApi,
    req: Request<pb::FetchFootageGrantRequest>,
) -> Result<Response<BoxStream<pb::FetchFootageGrantResponse>>, Status> {
    let caller = principal(&req)?.clone();
    let here = api.here()?;
    let r = req.into_inner();
    let id = r.grant_id.trim().to_string();
    if id.is_empty() {
        return Err(invalid("grant_id: required"));
    }
    let audit = audit_of(&r.audit)?;
    let owner = r.owner_site.trim().to_string();
    match caller.partner_site() {
        Some(partner) => {
            if !owner.is_empty() && owner != here {
                return Err(invalid(format!(
                    "owner_site: this installation holds {here}'s footage only"
                )));
            }
            let by = r.requested_by.trim();
            let person = if by.is_empty() {
                (caller.subject.clone(), person_name(&caller))
            } else {
                (
                    format!("{partner}/{}", by.chars().take(200).collect::<String>()),
                    r.requested_by_name.trim().chars().take(200).collect(),
                )
            };
            serve_to_partner(api, &caller, partner, &here, &id, &audit, person).await
        }
        None => {
            authorize(&caller, &here, Permission::PartnerFootage)?;
            if owner.is_empty() || owner == here {
                return Err(invalid(
                    "owner_site: name the partner whose grant to fetch (this site's own footage \
                     is exported with ExportEvidence)",
                ));
            }
            fetch_from_partner(api, &caller, &here, &owner, &id, &audit).await
        }
    }
}

/// The refusal of a grant that cannot be fetched (now), in words.
fn not_fetchable(g: &Grant, now: i64) -> Option<Status> {
    let msg = match g.state_at(now) {
        grants::STATE_APPROVED if g.bundle_id.is_empty() => {
            format!("footage grant {} has no bundle", g.id)
        }
        grants::STATE_APPROVED => return None,
        grants::STATE_PENDING => format!(
            "footage grant {} is still pending: {} has not decided it yet",
            g.id, g.owner_site
        ),
        grants::STATE_DENIED => format!(
            "footage grant {} was denied by {}: {}",
            g.id, g.decided_by, g.decision_reason
        ),
        grants::STATE_EXPIRED => format!(
            "footage grant {} expired at {}: the partner may no longer fetch it",
            g.id,
            grants::rfc3339(g.access_until_us.unwrap_or(0))
        ),
        _ => format!("footage grant {} is in an unknown state", g.id),
    };
    Some(Status::failed_precondition(msg))
}

async fn serve_to_partner(
    api: &StorageApi,
    caller: &Principal,
    partner: &str,
    here: &str,
    id: &str,
    audit: &common::AuditContext,
    // Who at the partner fetches: `<partner>/<subject>` and name, or the partner itself.
    person: (String, String),
) -> Result<Response<BoxStream<pb::FetchFootageGrantResponse>>, Status> {
    let g = api
        .storage
        .index()
        .grant(here, id)
        .await?
        .filter(|g| !g.mirror && g.requesting_site == partner)
        .ok_or_else(|| Status::not_found(format!("no footage grant {id} of {partner}")))?;
    let now = now_micros();
    if let Some(refused) = not_fetchable(&g, now) {
        return Err(refused);
    }
    api.check_accepted(partner)?;
    let bundle = api
        .storage
        .index()
        .bundle(&g.bundle_id)
        .await?
        .filter(|b| b.state == evidence::STATE_READY)
        .ok_or_else(|| {
            StorageError::FailedPrecondition(format!(
                "the evidence bundle of footage grant {id} is not available"
            ))
        })?;
    let key = ObjectPath::parse(&bundle.object_key)
        .map_err(|e| StorageError::Internal(format!("bundle key: {e}")))?;
    // Open the object before logging, so a missing bundle logs nothing it did not serve.
    let got = api
        .storage
        .objects()
        .get(&key)
        .await
        .map_err(StorageError::from)?;
    api.log_grant(
        here,
        (&person.0, &person.1),
        &caller.to_string(),
        pb::AccessAction::Download,
        &g,
        &audit.reason,
        partner,
        "",
        "FetchFootageGrant",
    )
    .await?;
    let first = pb::FetchFootageGrantResponse {
        part: Some(pb::fetch_footage_grant_response::Part::Grant(grant_pb(
            &g, now,
        ))),
    };
    let data = got.into_stream().map_err(|e| {
        tracing::error!(error = %e, "reading a footage grant's bundle failed");
        Status::unavailable("object storage failed while sending the bundle; fetch again")
    });
    let data = data.map_ok(|b| pb::FetchFootageGrantResponse {
        part: Some(pb::fetch_footage_grant_response::Part::Data(b.to_vec())),
    });
    let stream = futures::stream::once(async move { Ok(first) }).chain(data);
    Ok(Response::new(Box::pin(stream)))
}

use futures::StreamExt;

async fn fetch_from_partner(
    api: &StorageApi,
    who: &Principal,
    here: &str,
    owner: &str,
    id: &str,
    audit: &common::AuditContext,
) -> Result<Response<BoxStream<pb::FetchFootageGrantResponse>>, Status> {
    let partner = api.partner(owner)?;
    let local = api
        .storage
        .index()
        .grant(owner, id)
        .await?
        .filter(|g| g.mirror)
        .ok_or_else(|| {
            Status::not_found(format!(
                "no footage grant {id} asked of {owner} from this site"
            ))
        })?;
    api.check_accepted(owner)?;
    let key = kordon_runtime::partner::parse_public_key(&partner.evidence_public_key)
        .map_err(|e| Status::failed_precondition(format!("partner {owner}'s evidence key: {e}")))?;
    let req = Request::new(pb::FetchFootageGrantRequest {
        grant_id: id.to_string(),
        owner_site: String::new(),
        audit: Some(common::AuditContext {
            reason: audit.reason.trim().to_string(),
            case_id: local.case_id.clone(),
            recipient: audit.recipient.trim().to_string(),
        }),
        requested_by: who.subject.clone(),
        requested_by_name: person_name(who),
    });
    let mut stream = match api.partner_client(&partner)?.fetch_footage_grant(req).await {
        Ok(s) => s.into_inner(),
        Err(s) => {
            // Refused (pending, denied, expired): the mirror learns the decision, logged once.
            if s.code() == tonic::Code::FailedPrecondition {
                refresh_outgoing(api, here).await;
            }
            return Err(from_partner(owner, s));
        }
    };
    let first = stream
        .message()
        .await
        .map_err(|s| from_partner(owner, s))?
        .and_then(|m| m.part);
    let grant = match first {
        Some(pb::fetch_footage_grant_response::Part::Grant(g)) => g,
        _ => {
            return Err(Status::unavailable(format!(
                "partner {owner} did not start the download with the grant"
            )));
        }
    };
    let fresh = mirror_of(&grant, owner, here, &local.request_id)?;
    api.storage.index().refresh_mirror(&fresh).await?;
    if fresh.state != grants::STATE_PENDING {
        log_decision_once(api, here, owner, &fresh).await?;
    }
    // The bytes go to a scratch file first: nothing is kept, and nothing is served, until the
    // whole bundle verified with the partner's key.
    let scratch = std::env::temp_dir().join(format!("kordon-grant-{}.tar", uuid::Uuid::now_v7()));
    let result = receive_and_verify(&mut stream, &scratch, owner, key, &fresh).await;
    let outcome = match result {
        Ok(()) => keep_copy(api, &scratch, owner, &fresh).await,
        Err(e) => Err(e),
    };
    let _ = tokio::fs::remove_file(&scratch).await;
    let stored_key = outcome?;
    api.log_grant(
        here,
        (&who.subject, &person_name(who)),
        "",
        pb::AccessAction::Download,
        &fresh,
        &audit.reason,
        "",
        owner,
        "FetchFootageGrant",
    )
    .await?;
    let got = api
        .storage
        .objects()
        .get(&stored_key)
        .await
        .map_err(StorageError::from)?;
    let first = pb::FetchFootageGrantResponse {
        part: Some(pb::fetch_footage_grant_response::Part::Grant(grant_pb(
            &fresh,
            now_micros(),
        ))),
    };
    let data = got
        .into_stream()
        .map_err(|e| {
            tracing::error!(error = %e, "reading a kept partner bundle failed");
            Status::unavailable("object storage failed while sending the bundle; fetch again")
        })
        .map_ok(|b| pb::FetchFootageGrantResponse {
            part: Some(pb::fetch_footage_grant_response::Part::Data(b.to_vec())),
        });
    Ok(Response::new(Box::pin(
        futures::stream::once(async move { Ok(first) }).chain(data),
    )))
}

/// Receives the bundle into `scratch`, then checks it: the SHA-256 and size the grant states,
/// and the evidence verification with the partner's pinned key (signature, every file, every
/// chain link), and that it is the partner's bundle of exactly the granted cameras and range.
async fn receive_and_verify(
    stream: &mut tonic::Streaming<pb::FetchFootageGrantResponse>,
    scratch: &std::path::Path,
    owner: &str,
    key: [u8; 32],
    g: &Grant,
) -> Result<(), Status> {
    use tokio::io::AsyncWriteExt;
    let io = |e: std::io::Error| {
        tracing::error!(error = %e, "writing a partner bundle to scratch space failed");
        Status::internal("cannot receive the bundle (see the storage log)")
    };
    let mut file = tokio::fs::File::create(scratch).await.map_err(io)?;
    let mut hash = Sha256::new();
    let mut size = 0u64;
    while let Some(m) = stream.message().await.map_err(|s| from_partner(owner, s))? {
        if let Some(pb::fetch_footage_grant_response::Part::Data(d)) = m.part {
            size += d.len() as u64;
            if size > g.bundle_size {
                return Err(refused(owner, "it is larger than the grant says"));
            }
            hash.update(&d);
            file.write_all(&d).await.map_err(io)?;
        }
    }
    file.sync_all().await.map_err(io)?;
    drop(file);
    let sha: [u8; 32] = hash.finalize().into();
    if size != g.bundle_size || hex::encode(sha) != g.bundle_sha256 {
        return Err(refused(
            owner,
            &format!(
                "its {size} bytes (SHA-256 {}) are not the {} bytes (SHA-256 {}) the grant names",
                hex::encode(sha),
                g.bundle_size,
                g.bundle_sha256
            ),
        ));
    }
    let path = scratch.to_path_buf();
    let label = owner.to_string();
    let report = tokio::task::spawn_blocking(move || {
        let file = std::fs::File::open(&path)?;
        evidence::verify_bundle(
            std::io::BufReader::new(file),
            &[TrustedKey { key, label }],
            &mut |_| {},
        )
    })
    .await
    .map_err(|e| Status::internal(format!("verification did not finish: {e}")))?
    .map_err(io)?;
    if !report.intact() {
        let why = if report.problems.is_empty() {
            format!(
                "it is signed by key {}, not by {owner}'s pinned evidence key",
                report.signing_key
            )
        } else {
            report.problems.join("; ")
        };
        return Err(refused(owner, &why));
    }
    if report.site != owner || report.bundle_id != g.bundle_id {
        return Err(refused(
            owner,
            &format!(
                "it is bundle {} of {}, not the grant's bundle {} of {owner}",
                report.bundle_id, report.site, g.bundle_id
            ),
        ));
    }
    Ok(())
}

fn refused(owner: &str, why: &str) -> Status {
    Status::failed_precondition(format!(
        "the bundle from {owner} does not verify with {owner}'s pinned evidence key and was not \
         kept: {why}"
    ))
}

/// Stores the verified bundle in this site's object store; returns its key.
async fn keep_copy(
    api: &StorageApi,
    scratch: &std::path::Path,
    owner: &str,
    g: &Grant,
) -> Result<ObjectPath, Status> {
    use tokio::io::AsyncReadExt;
    let key = ObjectPath::parse(grants::partner_bundle_key(owner, &g.id))
        .map_err(|e| StorageError::Internal(format!("partner bundle key: {e}")))?;
    let upload = api
        .storage
        .objects()
        .put_multipart(&key)
        .await
        .map_err(StorageError::from)?;
    let mut out = object_store::WriteMultipart::new_with_chunk_size(upload, 8 * 1024 * 1024);
    let io = |e: std::io::Error| {
        tracing::error!(error = %e, "reading a verified partner bundle failed");
        Status::internal("cannot keep the bundle (see the storage log)")
    };
    let mut file = tokio::fs::File::open(scratch).await.map_err(io)?;
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = file.read(&mut buf).await.map_err(io)?;
        if n == 0 {
            break;
        }
        out.wait_for_capacity(4).await.map_err(StorageError::from)?;
        out.write(&buf[..n]);
    }
    out.finish().await.map_err(StorageError::from)?;
    Ok(key)
}
