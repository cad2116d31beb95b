//! Retention and legal holds: Get/SetRetentionPolicy (`ViewStatus`/`Administer`) and
//! Create/Release/ListLegalHolds (`ManageHolds`).

use std::time::Duration;

use kordon_objects::time::MICROS;
use kordon_proto::common::v1 as common;
use kordon_proto::storage::v1 as pb;
use kordon_runtime::auth::{Permission, authorize_request};
use tonic::{Request, Response, Status};

use super::convert::{
    audit_of, camera_of, duration_of, hold_objects, hold_pb, page_size, page_token, policy_pb,
    policy_scope, range_of,
};
use super::{StorageApi, invalid};
use crate::StorageError;
use crate::audit::AccessObjectRec;
use crate::retention::{NewHold, check_retention};

pub(super) async fn get_retention_policy(
    api: &StorageApi,
    req: Request<pb::GetRetentionPolicyRequest>,
) -> Result<Response<pb::GetRetentionPolicyResponse>, Status> {
    let (site, camera) = policy_scope(&req.get_ref().site, &req.get_ref().camera)?;
    authorize_request(&req, &site, Permission::ViewStatus)?;
    let e = api.storage.effective_policy(&site, &camera).await?;
    Ok(Response::new(pb::GetRetentionPolicyResponse {
        policy: Some(policy_pb(&e)),
        inherited: e.inherited,
    }))
}

pub(super) async fn set_retention_policy(
    api: &StorageApi,
    req: Request<pb::SetRetentionPolicyRequest>,
) -> Result<Response<pb::SetRetentionPolicyResponse>, Status> {
    let (site, camera) = policy_scope(&req.get_ref().site, &req.get_ref().camera)?;
    let who = authorize_request(&req, &site, Permission::Administer)?.clone();
    let r = req.into_inner();
    let retention_us = match &r.retention {
        None if camera.is_empty() => {
            return Err(invalid("retention: required for a site default"));
        }
        None => None,
        Some(_) => Some(check_retention(duration_of(
            &r.retention,
            "retention",
            Duration::ZERO,
            Duration::from_secs(100 * 365 * 86_400),
        )?)?),
    };
    let audit = audit_of(&r.audit)?;
    api.log(
        &who,
        &site,
        pb::AccessAction::RetentionChange,
        vec![AccessObjectRec {
            kind: pb::AccessObjectKind::RetentionPolicy as i32,
            site: site.clone(),
            camera: camera.clone(),
            start_us: None,
            end_us: None,
            id: retention_us
                .map(|us| format!("{}s", us / MICROS))
                .unwrap_or_else(|| "inherit".into()),
        }],
        &audit,
        "SetRetentionPolicy",
    )
    .await?;
    api.storage
        .index()
        .set_retention_policy(&site, &camera, retention_us, &who.subject)
        .await?;
    let e = api.storage.effective_policy(&site, &camera).await?;
    Ok(Response::new(pb::SetRetentionPolicyResponse {
        policy: Some(policy_pb(&e)),
        inherited: e.inherited,
    }))
}

pub(super) async fn create_legal_hold(
    api: &StorageApi,
    req: Request<pb::CreateLegalHoldRequest>,
) -> Result<Response<pb::CreateLegalHoldResponse>, Status> {
    let g = req.get_ref();
    let first = g
        .cameras
        .first()
        .ok_or_else(|| invalid("cameras: at least one"))?;
    let (site, _) = camera_of(&Some(first.clone()), "cameras[0]")?;
    let mut cameras = Vec::new();
    for (i, c) in g.cameras.iter().enumerate() {
        let (s, c) = camera_of(&Some(c.clone()), &format!("cameras[{i}]"))?;
        if s != site {
            return Err(invalid("cameras: all of one site"));
        }
        if !cameras.contains(&c) {
            cameras.push(c);
        }
    }
    let who = authorize_request(&req, &site, Permission::ManageHolds)?.clone();
    let r = req.into_inner();
    let (start_us, end_us) = range_of(&r.range)?;
    let audit = audit_of(&r.audit)?;
    if audit.case_id.trim().is_empty() {
        return Err(invalid("audit.case_id: required for a legal hold"));
    }
    if r.request_id.len() > 200 {
        return Err(invalid("request_id: at most 200 bytes"));
    }
    let request_id = if r.request_id.is_empty() {
        uuid::Uuid::new_v4().to_string()
    } else {
        r.request_id
    };
    let (hold, _) = api
        .storage
        .index()
        .create_hold(&NewHold {
            site: site.clone(),
            cameras,
            start_us,
            end_us,
            case_id: audit.case_id.trim().to_string(),
            reason: audit.reason.trim().to_string(),
            created_by: who.subject.clone(),
            request_id,
        })
        .await?;
    api.log(
        &who,
        &site,
        pb::AccessAction::Hold,
        hold_objects(&hold),
        &audit,
        "CreateLegalHold",
    )
    .await?;
    Ok(Response::new(pb::CreateLegalHoldResponse {
        hold: Some(hold_pb(&hold)),
    }))
}

pub(super) async fn release_legal_hold(
    api: &StorageApi,
    req: Request<pb::ReleaseLegalHoldRequest>,
) -> Result<Response<pb::ReleaseLegalHoldResponse>, Status> {
    let id = req.get_ref().hold_id.clone();
    if id.is_empty() || id.len() > 100 {
        return Err(invalid("hold_id: required"));
    }
    let not_found = || Status::from(StorageError::NotFound(format!("no legal hold {id}")));
    let hold = api.storage.index().hold(&id).await?.ok_or_else(not_found)?;
    let who = authorize_request(&req, &hold.site, Permission::ManageHolds)?.clone();
    let r = req.into_inner();
    let audit = audit_of(&r.audit)?;
    if hold.state == crate::retention::HOLD_ACTIVE {
        api.log(
            &who,
            &hold.site,
            pb::AccessAction::Release,
            hold_objects(&hold),
            &audit,
            "ReleaseLegalHold",
        )
        .await?;
        api.storage
            .index()
            .release_hold(&id, &who.subject, audit.reason.trim())
            .await?;
    }
    let hold = api.storage.index().hold(&id).await?.ok_or_else(not_found)?;
    Ok(Response::new(pb::ReleaseLegalHoldResponse {
        hold: Some(hold_pb(&hold)),
    }))
}

pub(super) async fn list_legal_holds(
    api: &StorageApi,
    req: Request<pb::ListLegalHoldsRequest>,
) -> Result<Response<pb::ListLegalHoldsResponse>, Status> {
    let camera = match &req.get_ref().camera {
        Some(c) => Some(camera_of(&Some(c.clone()), "camera")?),
        None => None,
    };
    let sites: Option<Vec<String>> = match &camera {
        Some((site, _)) => {
            authorize_request(&req, site, Permission::ManageHolds)?;
            Some(vec![site.clone()])
        }
        None => match kordon_runtime::auth::principal(&req)?.scope(Permission::ManageHolds) {
            kordon_runtime::auth::SiteScope::All => None,
            kordon_runtime::auth::SiteScope::Sites(s) if s.is_empty() => {
                return Err(Status::permission_denied(
                    "may not manage legal holds on any site",
                ));
            }
            kordon_runtime::auth::SiteScope::Sites(s) => Some(s.into_iter().collect()),
        },
    };
    let r = req.into_inner();
    let offset: u64 = match page_token(&r.page) {
        "" => 0,
        t => t
            .parse()
            .map_err(|_| invalid("page.page_token: not a token of this list"))?,
    };
    let size = page_size(&r.page);
    let mut holds = api
        .storage
        .index()
        .list_holds(
            sites.as_deref(),
            camera.as_ref().map(|(s, c)| (s.as_str(), c.as_str())),
            &r.case_id,
            r.include_released,
            offset,
            size + 1,
        )
        .await?;
    let more = holds.len() > size as usize;
    holds.truncate(size as usize);
    Ok(Response::new(pb::ListLegalHoldsResponse {
        page: Some(common::PageResponse {
            next_page_token: if more {
                (offset + holds.len() as u64).to_string()
            } else {
                String::new()
            },
        }),
        holds: holds.iter().map(hold_pb).collect(),
    }))
}
