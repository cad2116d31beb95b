//! The access log: ListAccessLog and VerifyAccessLog (`ReadAccessLog`), RecordAccess
//! (`WriteMedia`).

use kordon_proto::common::v1 as common;
use kordon_proto::storage::v1 as pb;
use kordon_runtime::auth::{Permission, PrincipalKind, authorize_request};
use tonic::{Request, Response, Status};

use super::convert::{
    access_entry_pb, audit_of, camera_of, checkpoint_pb, micros, page_size, page_token, range_of,
};
use super::{StorageApi, invalid};
use crate::audit::{AccessFilter, AccessFindingKind, AccessObjectRec, Checkpoint, NewAccessEntry};

pub(super) async fn list_access_log(
    api: &StorageApi,
    req: Request<pb::ListAccessLogRequest>,
) -> Result<Response<pb::ListAccessLogResponse>, Status> {
    let g = req.get_ref();
    let camera_filter = match &g.camera {
        Some(c) => Some(camera_of(&Some(c.clone()), "camera")?),
        None => None,
    };
    let site = match (&g.site, &camera_filter) {
        (s, _) if !s.is_empty() => s.clone(),
        (_, Some((s, _))) => s.clone(),
        _ => return Err(invalid("site: required (or camera)")),
    };
    kordon_objects::validate_name("site", &site).map_err(|e| invalid(e.to_string()))?;
    if let Some((s, _)) = &camera_filter
        && s != &site
    {
        return Err(invalid("camera: must be of the site whose log is read"));
    }
    let who = authorize_request(&req, &site, Permission::ReadAccessLog)?.clone();
    let r = req.into_inner();
    let (from_us, to_us) = match &r.range {
        Some(_) => {
            let (a, b) = range_of(&r.range)?;
            (Some(a), b)
        }
        None => (None, None),
    };
    let after: u64 = match page_token(&r.page) {
        "" => 0,
        t => t
            .parse()
            .map_err(|_| invalid("page.page_token: not a token of this list"))?,
    };
    let mut actions = Vec::new();
    for a in &r.actions {
        match pb::AccessAction::try_from(*a) {
            Ok(pb::AccessAction::Unspecified) | Err(_) => {
                return Err(invalid(format!("actions: {a} is not an access action")));
            }
            Ok(a) => actions.push(a as i32),
        }
    }
    let audit = audit_of(&r.audit)?;
    let mut objects = vec![AccessObjectRec {
        kind: pb::AccessObjectKind::AccessLog as i32,
        site: site.clone(),
        camera: String::new(),
        start_us: from_us,
        end_us: to_us,
        id: String::new(),
    }];
    if let Some((s, c)) = &camera_filter {
        objects.push(AccessObjectRec {
            kind: pb::AccessObjectKind::Recording as i32,
            site: s.clone(),
            camera: c.clone(),
            start_us: from_us,
            end_us: to_us,
            id: String::new(),
        });
    }
    api.log(
        &who,
        &site,
        pb::AccessAction::AuditRead,
        objects,
        &audit,
        "ListAccessLog",
    )
    .await?;
    let size = page_size(&r.page);
    let filter = AccessFilter {
        site: site.clone(),
        principal: r.principal.clone(),
        actions,
        camera: camera_filter.map(|(_, c)| c).unwrap_or_default(),
        case_id: r.case_id.clone(),
        from_us,
        to_us,
    };
    let mut entries = api
        .storage
        .index()
        .list_access(&filter, after, size + 1)
        .await?;
    let more = entries.len() > size as usize;
    entries.truncate(size as usize);
    let next_page_token = match (more, entries.last()) {
        (true, Some(e)) => e.sequence.to_string(),
        _ => String::new(),
    };
    Ok(Response::new(pb::ListAccessLogResponse {
        entries: entries.iter().map(access_entry_pb).collect(),
        page: Some(common::PageResponse { next_page_token }),
    }))
}

pub(super) async fn verify_access_log(
    api: &StorageApi,
    req: Request<pb::VerifyAccessLogRequest>,
) -> Result<Response<pb::VerifyAccessLogResponse>, Status> {
    let site = req.get_ref().site.clone();
    kordon_objects::validate_name("site", &site).map_err(|e| invalid(e.to_string()))?;
    authorize_request(&req, &site, Permission::ReadAccessLog)?;
    let r = req.into_inner();
    if r.to_sequence != 0 && r.to_sequence < r.from_sequence {
        return Err(invalid("to_sequence: must not be below from_sequence"));
    }
    let checkpoint = match &r.checkpoint {
        None => None,
        Some(c) => Some(Checkpoint {
            site: c.site.clone(),
            sequence: c.sequence,
            hash: c
                .hash
                .as_slice()
                .try_into()
                .map_err(|_| invalid("checkpoint.hash: must be 32 bytes"))?,
            time_us: micros(
                c.time
                    .as_ref()
                    .ok_or_else(|| invalid("checkpoint.time: required"))?,
                "checkpoint.time",
            )?,
            signature: c.signature.clone(),
            public_key: c.signing_public_key.clone(),
        }),
    };
    let report = api
        .storage
        .index()
        .verify_access(
            &site,
            r.from_sequence,
            r.to_sequence,
            checkpoint.as_ref(),
            &api.storage.signing_public_key(),
        )
        .await?;
    let head = (report.last >= 1 && report.last >= report.first)
        .then(|| checkpoint_pb(&api.storage.checkpoint(&site, report.last, report.last_hash)));
    Ok(Response::new(pb::VerifyAccessLogResponse {
        intact: report.findings.is_empty(),
        first_sequence: report.first,
        last_sequence: report.last,
        entries_checked: report.checked,
        findings: report
            .findings
            .iter()
            .map(|f| pb::AccessLogFinding {
                kind: match f.kind {
                    AccessFindingKind::MissingEntry => pb::AccessLogFindingKind::MissingEntry,
                    AccessFindingKind::EntryAltered => pb::AccessLogFindingKind::EntryAltered,
                    AccessFindingKind::BrokenLink => pb::AccessLogFindingKind::BrokenLink,
                    AccessFindingKind::CheckpointMismatch => {
                        pb::AccessLogFindingKind::CheckpointMismatch
                    }
                } as i32,
                sequence: f.sequence,
                detail: f.detail.clone(),
            })
            .collect(),
        head,
    }))
}

pub(super) async fn record_access(
    api: &StorageApi,
    req: Request<pb::RecordAccessRequest>,
) -> Result<Response<pb::RecordAccessResponse>, Status> {
    let g = req.get_ref();
    let first = g
        .objects
        .first()
        .ok_or_else(|| invalid("objects: at least one"))?;
    let (site, _) = camera_of(&first.camera, "objects[0].camera")?;
    let mut objects = Vec::with_capacity(g.objects.len());
    for (i, o) in g.objects.iter().enumerate() {
        let (s, c) = camera_of(&o.camera, &format!("objects[{i}].camera"))?;
        if s != site {
            return Err(invalid("objects: all of one site"));
        }
        let (start_us, end_us) = match &o.range {
            Some(_) => {
                let (a, b) = range_of(&o.range)?;
                (Some(a), b)
            }
            None => (None, None),
        };
        objects.push(AccessObjectRec {
            kind: o.kind,
            site: s,
            camera: c,
            start_us,
            end_us,
            id: o.id.clone(),
        });
    }
    // An access that came from a partner (source) may be about the partner's own footage
    // or alert (a received alert names the partner's camera): it is logged on this
    // installation's site, with the source saying where it came from.
    let source = g.source.trim().to_string();
    let partners = api.storage.partners();
    let log_site = if !source.is_empty() && site == source {
        partners.site.clone()
    } else {
        site.clone()
    };
    // Authorised before the source is checked: a caller without the right learns nothing of
    // which partners this installation declares.
    let caller = authorize_request(&req, &log_site, Permission::WriteMedia)?.clone();
    if !source.is_empty() && crate::grants::partner(partners, &source).is_none() {
        return Err(invalid(format!(
            "source: `{source}` is not a partner declared in this installation's partners:"
        )));
    }
    let r = req.into_inner();
    if r.principal.trim().is_empty() {
        return Err(invalid("principal: required"));
    }
    // Only a service vouches for someone else, and the entry says which one did (kind and
    // subject): storage did not authenticate that principal itself. A person (an admin
    // holds WriteMedia too) records only their own access.
    if caller.kind == PrincipalKind::Person && r.principal != caller.subject {
        return Err(Status::permission_denied(format!(
            "{caller} may record access only for itself: recording it for another \
             principal is for services"
        )));
    }
    match pb::AccessAction::try_from(r.action) {
        Ok(pb::AccessAction::Unspecified) | Err(_) => {
            return Err(invalid("action: required"));
        }
        Ok(_) => {}
    }
    let audit = audit_of(&r.audit)?;
    let entry = api
        .storage
        .record_access(&NewAccessEntry {
            site: log_site,
            principal: r.principal,
            principal_name: r.principal_name,
            via_service: caller.to_string(),
            action: r.action,
            objects,
            reason: audit.reason.trim().to_string(),
            case_id: audit.case_id.trim().to_string(),
            recipient: audit.recipient.trim().to_string(),
            method: r.method,
            source,
        })
        .await?;
    Ok(Response::new(pb::RecordAccessResponse {
        entry: Some(access_entry_pb(&entry)),
    }))
}
