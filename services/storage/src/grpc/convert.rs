//! Every conversion between the API's messages and the domain's types, once: request fields
//! into domain values (validated, INVALID_ARGUMENT on bad input) and records into messages.

use std::time::Duration;

use kordon_objects::time::MICROS;
use kordon_proto::common::v1 as common;
use kordon_proto::storage::v1 as pb;
use prost_types::Timestamp;
use tonic::Status;

use super::invalid;
use crate::audit::{AccessEntry, AccessObjectRec, Checkpoint};
use crate::chain::FindingKind;
use crate::evidence::{self, Bundle};
use crate::grants::{self, Grant};
use crate::index::{GapRecord, SegmentRecord};
use crate::media::{Rendition, Snapshot};
use crate::playback::LIVE;
use crate::retention::{EffectivePolicy, LegalHold};
use crate::service::ChainReport;

/// Default and largest page sizes.
const DEFAULT_PAGE: u32 = 100;
const MAX_PAGE: u32 = 1000;

pub(super) fn camera_of(
    c: &Option<common::CameraRef>,
    field: &str,
) -> Result<(String, String), Status> {
    let c = c
        .as_ref()
        .ok_or_else(|| invalid(format!("{field}: required")))?;
    crate::service::check_camera(&c.site, &c.camera)
        .map_err(|e| invalid(format!("{field}: {e}")))?;
    Ok((c.site.clone(), c.camera.clone()))
}

pub(super) fn micros(t: &Timestamp, field: &str) -> Result<i64, Status> {
    if !(0..1_000_000_000).contains(&t.nanos) {
        return Err(invalid(format!("{field}: nanos out of range")));
    }
    kordon_proto::time::micros_from_timestamp(t)
        .filter(|us| (0..=kordon_objects::time::MAX_MICROS).contains(us))
        .ok_or_else(|| invalid(format!("{field}: must be between 1970 and 9999")))
}

pub(super) use kordon_proto::time::timestamp_from_micros as timestamp;

pub(super) fn time_range(from_us: i64, to_us: i64) -> common::TimeRange {
    common::TimeRange {
        start: Some(timestamp(from_us)),
        end: (to_us != LIVE).then(|| timestamp(to_us)),
    }
}

/// (start, end) of a range whose start is required; `None` end when unset.
pub(super) fn range_of(r: &Option<common::TimeRange>) -> Result<(i64, Option<i64>), Status> {
    let r = r.as_ref().ok_or_else(|| invalid("range: required"))?;
    let start = micros(
        r.start
            .as_ref()
            .ok_or_else(|| invalid("range.start: required"))?,
        "range.start",
    )?;
    let end = r.end.as_ref().map(|e| micros(e, "range.end")).transpose()?;
    if let Some(end) = end
        && end <= start
    {
        return Err(invalid("range: end must be after start"));
    }
    Ok((start, end))
}

/// Both ends required.
pub(super) fn closed_range(r: &Option<common::TimeRange>) -> Result<(i64, i64), Status> {
    match range_of(r)? {
        (s, Some(e)) => Ok((s, e)),
        (_, None) => Err(invalid("range.end: required")),
    }
}

/// The audit context of a footage read: a non-empty reason is required.
pub(super) fn audit_of(a: &Option<common::AuditContext>) -> Result<common::AuditContext, Status> {
    let a = a.clone().unwrap_or_default();
    if a.reason.trim().is_empty() {
        return Err(invalid(
            "audit.reason: required — every footage access states why (EU Directive 2016/680 \
             Art. 25)",
        ));
    }
    if a.reason.len() > 2000 || a.case_id.len() > 200 || a.recipient.len() > 500 {
        return Err(invalid(
            "audit: reason at most 2000 bytes, case_id 200, recipient 500",
        ));
    }
    Ok(a)
}

pub(super) fn duration_of(
    d: &Option<prost_types::Duration>,
    field: &str,
    default: Duration,
    max: Duration,
) -> Result<Duration, Status> {
    let Some(d) = d else { return Ok(default) };
    if d.seconds < 0 || d.nanos < 0 || (d.seconds == 0 && d.nanos == 0) {
        return Err(invalid(format!("{field}: must be positive")));
    }
    let v = Duration::new(d.seconds as u64, d.nanos as u32);
    if v > max {
        return Err(invalid(format!("{field}: at most {}s", max.as_secs())));
    }
    Ok(v)
}

/// (site, camera) of a retention request; camera empty for the site default.
pub(super) fn policy_scope(site: &str, camera: &str) -> Result<(String, String), Status> {
    if camera.is_empty() {
        kordon_objects::validate_name("site", site).map_err(|e| invalid(e.to_string()))?;
    } else {
        crate::service::check_camera(site, camera).map_err(Status::from)?;
    }
    Ok((site.to_string(), camera.to_string()))
}

pub(crate) fn page_size(p: &Option<common::PageRequest>) -> u32 {
    match p.as_ref().map(|p| p.page_size).unwrap_or(0) {
        0 => DEFAULT_PAGE,
        n => n.min(MAX_PAGE),
    }
}

pub(crate) fn page_token(p: &Option<common::PageRequest>) -> &str {
    p.as_ref().map(|p| p.page_token.as_str()).unwrap_or("")
}

pub(super) fn link(sequence: u64, prev: &[u8; 32], hash: &[u8; 32]) -> pb::ChainLink {
    pb::ChainLink {
        sequence,
        prev_hash: prev.to_vec(),
        record_hash: hash.to_vec(),
    }
}

/// Progress of a long call: `done` of `total` units in `stage`.
pub(super) fn progress_pb(done: u64, total: u64, stage: &str) -> common::Progress {
    common::Progress {
        fraction: if total == 0 {
            0.0
        } else {
            done as f64 / total as f64
        },
        done_units: done,
        total_units: total,
        stage: stage.to_string(),
    }
}

/// A signed URL and its expiry (Unix seconds) as the API returns them.
pub(super) fn media_url_pb((url, expires_s): (String, i64)) -> pb::MediaUrl {
    pb::MediaUrl {
        url,
        expires_at: Some(timestamp(expires_s * MICROS)),
    }
}

pub(super) fn camera_ref(site: &str, camera: &str) -> common::CameraRef {
    common::CameraRef {
        site: site.to_string(),
        camera: camera.to_string(),
    }
}

/// A segment as the API shows it; `fate` is `(retain_until_us, on_legal_hold)` where known
/// (see `Storage::segment_fate`).
pub(super) fn segment_pb(s: &SegmentRecord, fate: Option<(i64, bool)>) -> pb::Segment {
    pb::Segment {
        camera: Some(camera_ref(&s.site, &s.camera)),
        link: Some(link(s.sequence, &s.prev_hash, &s.record_hash)),
        range: Some(time_range(s.start_us, s.end_us)),
        size_bytes: s.size_bytes,
        sha256: s.sha256.to_vec(),
        codec: s.codec,
        width: s.width,
        height: s.height,
        object_key: s.object_key.clone(),
        ingest_replica: s.ingest_replica.clone(),
        registered_at: Some(timestamp(s.registered_at_us)),
        retain_until: fate.map(|(until, _)| timestamp(until)),
        on_legal_hold: fate.is_some_and(|(_, held)| held),
        init_size: s.init_size,
    }
}

pub(super) fn gap_pb(g: &GapRecord) -> pb::Gap {
    pb::Gap {
        camera: Some(camera_ref(&g.site, &g.camera)),
        link: Some(link(g.sequence, &g.prev_hash, &g.record_hash)),
        range: Some(time_range(g.start_us, g.end_us)),
        reason: g.reason as i32,
        detail: g.detail.clone(),
        ingest_replica: g.ingest_replica.clone(),
        registered_at: Some(timestamp(g.registered_at_us)),
    }
}

pub(super) fn outcome(created: bool) -> i32 {
    if created {
        pb::RegisterOutcome::Created as i32
    } else {
        pb::RegisterOutcome::AlreadyPresent as i32
    }
}

pub(super) fn recording_object(
    site: &str,
    camera: &str,
    from_us: i64,
    to_us: i64,
) -> AccessObjectRec {
    AccessObjectRec {
        kind: pb::AccessObjectKind::Recording as i32,
        site: site.to_string(),
        camera: camera.to_string(),
        start_us: Some(from_us),
        end_us: (to_us != LIVE).then_some(to_us),
        id: String::new(),
    }
}

pub(super) fn sha_of(v: &[u8]) -> Result<[u8; 32], Status> {
    <[u8; 32]>::try_from(v).map_err(|_| invalid("sha256: 32 bytes"))
}

pub(super) fn rendition_pb(x: &Rendition, media: Option<pb::MediaUrl>) -> pb::Rendition {
    let n = &x.new;
    pb::Rendition {
        camera: Some(camera_ref(&n.site, &n.camera)),
        source_sequence: n.source_sequence,
        profile: n.profile.clone(),
        range: Some(time_range(n.start_us, n.end_us)),
        codec: n.codec,
        width: n.width,
        height: n.height,
        bitrate_bps: n.bitrate_bps,
        object_key: n.object_key.clone(),
        size_bytes: n.size_bytes,
        sha256: n.sha256.to_vec(),
        job_id: n.job_id.clone(),
        registered_at: Some(timestamp(x.registered_at_us)),
        media,
        init_size: n.init_size,
    }
}

pub(super) fn snapshot_pb(x: &Snapshot) -> pb::Snapshot {
    let n = &x.new;
    pb::Snapshot {
        id: x.id.clone(),
        camera: Some(camera_ref(&n.site, &n.camera)),
        kind: n.kind,
        captured_at: Some(timestamp(n.captured_at_us)),
        content_type: n.content_type.clone(),
        width: n.width,
        height: n.height,
        size_bytes: n.size_bytes,
        sha256: n.sha256.to_vec(),
        object_key: n.object_key.clone(),
        detection_id: n.detection_id.clone(),
        source_sequence: n.source_sequence,
        registered_at: Some(timestamp(x.registered_at_us)),
    }
}

pub(super) fn snapshot_object(x: &Snapshot) -> AccessObjectRec {
    AccessObjectRec {
        kind: pb::AccessObjectKind::Snapshot as i32,
        site: x.new.site.clone(),
        camera: x.new.camera.clone(),
        start_us: Some(x.new.captured_at_us),
        end_us: None,
        id: x.id.clone(),
    }
}

/// An export's rendering (`None` when unset). Masks must name cameras of `site`, each once;
/// the rest is checked with the export ([`crate::viewer::Rendering::validate`]).
pub(super) fn rendering_of(
    r: &Option<pb::ExportRendering>,
    site: &str,
) -> Result<Option<crate::viewer::Rendering>, Status> {
    use crate::viewer::{Point, Rendering};
    let Some(r) = r else { return Ok(None) };
    let mut out = Rendering {
        burn_in_timestamp: r.burn_in_timestamp,
        time_zone: r.time_zone.trim().to_string(),
        blur_people: r.blur_people,
        ..Default::default()
    };
    for (i, m) in r.privacy_masks.iter().enumerate() {
        let field = format!("rendering.privacy_masks[{i}].camera");
        let (s, camera) = camera_of(&m.camera, &field)?;
        if s != site {
            return Err(invalid(format!(
                "{field}: `{s}/{camera}` is not of the bundle's site {site}"
            )));
        }
        let polygons = m
            .masks
            .iter()
            .map(|p| p.points.iter().map(|p| Point { x: p.x, y: p.y }).collect())
            .collect();
        if out.privacy_masks.insert(camera.clone(), polygons).is_some() {
            return Err(invalid(format!(
                "rendering.privacy_masks: `{site}/{camera}` is listed twice; give all its masks \
                 in one entry"
            )));
        }
    }
    Ok(Some(out))
}

pub(super) fn bundle_pb(b: &Bundle) -> pb::EvidenceBundle {
    let state = match b.state {
        evidence::STATE_BUILDING => pb::EvidenceBundleState::Building,
        evidence::STATE_READY => pb::EvidenceBundleState::Ready,
        _ => pb::EvidenceBundleState::Failed,
    };
    let ready = b.state == evidence::STATE_READY;
    pb::EvidenceBundle {
        id: b.id.clone(),
        state: state as i32,
        cameras: b.cameras.iter().map(|c| camera_ref(&b.site, c)).collect(),
        range: Some(time_range(b.from_us, b.to_us)),
        case_id: b.case_id.clone(),
        reason: b.reason.clone(),
        recipient: b.recipient.clone(),
        description: b.description.clone(),
        exported_by: b.exported_by.clone(),
        created_at: Some(timestamp(b.created_at_us)),
        completed_at: b.completed_at_us.map(timestamp),
        segment_count: u32::try_from(b.segment_count).unwrap_or(u32::MAX),
        gap_count: u32::try_from(b.gap_count).unwrap_or(u32::MAX),
        includes_rendering: b.rendering.is_some(),
        object_key: if ready {
            b.object_key.clone()
        } else {
            String::new()
        },
        size_bytes: b.size_bytes,
        sha256: b.sha256.map(|h| h.to_vec()).unwrap_or_default(),
        manifest_sha256: b.manifest_sha256.map(|h| h.to_vec()).unwrap_or_default(),
        manifest_signature: b.signature.clone(),
        signing_public_key: b.signing_key.clone(),
        error: b.error.clone(),
    }
}

pub(super) fn access_object_pb(o: &AccessObjectRec) -> pb::AccessObject {
    pb::AccessObject {
        kind: o.kind,
        camera: (!o.camera.is_empty()).then(|| camera_ref(&o.site, &o.camera)),
        range: o.start_us.map(|s| common::TimeRange {
            start: Some(timestamp(s)),
            end: o.end_us.map(timestamp),
        }),
        id: o.id.clone(),
    }
}

pub(super) fn access_entry_pb(e: &AccessEntry) -> pb::AccessLogEntry {
    pb::AccessLogEntry {
        sequence: e.sequence,
        time: Some(timestamp(e.time_us)),
        site: e.site.clone(),
        principal: e.principal.clone(),
        principal_name: e.principal_name.clone(),
        via_service: e.via_service.clone(),
        action: e.action,
        objects: e.objects().iter().map(access_object_pb).collect(),
        reason: e.reason.clone(),
        case_id: e.case_id.clone(),
        recipient: e.recipient.clone(),
        method: e.method.clone(),
        prev_hash: e.prev_hash.to_vec(),
        hash: e.hash.to_vec(),
        source: e.source.clone(),
    }
}

pub(super) fn finding_kind_pb(k: FindingKind) -> pb::ChainFindingKind {
    match k {
        FindingKind::MissingRecord => pb::ChainFindingKind::MissingRecord,
        FindingKind::RecordAltered => pb::ChainFindingKind::RecordAltered,
        FindingKind::BrokenLink => pb::ChainFindingKind::BrokenLink,
        FindingKind::Reordered => pb::ChainFindingKind::Reordered,
        FindingKind::ObjectMissing => pb::ChainFindingKind::ObjectMissing,
        FindingKind::ObjectAltered => pb::ChainFindingKind::ObjectAltered,
    }
}

pub(super) fn report_pb(r: &ChainReport) -> pb::ChainReport {
    pb::ChainReport {
        camera: Some(camera_ref(&r.site, &r.camera)),
        range: Some(time_range(r.from_us, r.to_us)),
        first_sequence: r.first_sequence,
        last_sequence: r.last_sequence,
        segments_checked: r.segments_checked,
        gaps_checked: r.gaps_checked,
        retention_deleted: r.retention_deleted,
        objects_verified: r.objects_verified,
        intact: r.intact(),
        findings: r
            .findings
            .iter()
            .map(|f| pb::ChainFinding {
                kind: finding_kind_pb(f.kind) as i32,
                sequence: f.sequence,
                expected_hash: f.expected_hash.clone(),
                actual_hash: f.actual_hash.clone(),
                detail: f.detail.clone(),
            })
            .collect(),
        head_hash: r.head_hash.map(|h| h.to_vec()).unwrap_or_default(),
        verified_at: Some(timestamp(r.verified_at_us)),
    }
}

pub(super) fn checkpoint_pb(c: &Checkpoint) -> pb::AccessLogCheckpoint {
    pb::AccessLogCheckpoint {
        site: c.site.clone(),
        sequence: c.sequence,
        hash: c.hash.to_vec(),
        time: Some(timestamp(c.time_us)),
        signature: c.signature.clone(),
        signing_public_key: c.public_key.clone(),
    }
}

pub(super) fn duration_pb(us: i64) -> prost_types::Duration {
    prost_types::Duration {
        seconds: us / MICROS,
        nanos: ((us % MICROS) * 1000) as i32,
    }
}

pub(super) fn policy_pb(e: &EffectivePolicy) -> pb::RetentionPolicy {
    pb::RetentionPolicy {
        site: e.policy.site.clone(),
        camera: e.policy.camera.clone(),
        retention: Some(duration_pb(e.policy.retention_us)),
        updated_at: (e.policy.updated_at_us > 0).then(|| timestamp(e.policy.updated_at_us)),
        updated_by: e.policy.updated_by.clone(),
    }
}

pub(super) fn hold_pb(h: &LegalHold) -> pb::LegalHold {
    pb::LegalHold {
        id: h.id.clone(),
        site: h.site.clone(),
        cameras: h.cameras.iter().map(|c| camera_ref(&h.site, c)).collect(),
        range: Some(common::TimeRange {
            start: Some(timestamp(h.start_us)),
            end: h.end_us.map(timestamp),
        }),
        state: h.state,
        case_id: h.case_id.clone(),
        reason: h.reason.clone(),
        created_by: h.created_by.clone(),
        created_at: Some(timestamp(h.created_at_us)),
        released_by: h.released_by.clone(),
        released_at: h.released_at_us.map(timestamp),
        release_reason: h.release_reason.clone(),
    }
}

pub(super) fn hold_objects(h: &LegalHold) -> Vec<AccessObjectRec> {
    let mut objects = vec![AccessObjectRec {
        kind: pb::AccessObjectKind::LegalHold as i32,
        site: h.site.clone(),
        camera: String::new(),
        start_us: Some(h.start_us),
        end_us: h.end_us,
        id: h.id.clone(),
    }];
    objects.extend(h.cameras.iter().map(|c| AccessObjectRec {
        kind: pb::AccessObjectKind::Recording as i32,
        site: h.site.clone(),
        camera: c.clone(),
        start_us: Some(h.start_us),
        end_us: h.end_us,
        id: String::new(),
    }));
    objects
}

pub(super) fn grant_state_pb(state: i64) -> pb::FootageGrantState {
    match state {
        grants::STATE_PENDING => pb::FootageGrantState::Pending,
        grants::STATE_APPROVED => pb::FootageGrantState::Approved,
        grants::STATE_DENIED => pb::FootageGrantState::Denied,
        grants::STATE_EXPIRED => pb::FootageGrantState::Expired,
        _ => pb::FootageGrantState::Unspecified,
    }
}

/// A grant as the API shows it, with its state as of `now_us` (expired once access ends).
pub(super) fn grant_pb(g: &Grant, now_us: i64) -> pb::FootageGrant {
    pb::FootageGrant {
        id: g.id.clone(),
        requesting_site: g.requesting_site.clone(),
        requested_by: g.requested_by.clone(),
        cameras: g
            .cameras
            .iter()
            .map(|c| camera_ref(&g.owner_site, c))
            .collect(),
        range: Some(time_range(g.from_us, g.to_us)),
        audit: Some(common::AuditContext {
            reason: g.reason.clone(),
            case_id: g.case_id.clone(),
            recipient: g.recipient.clone(),
        }),
        state: grant_state_pb(g.state_at(now_us)) as i32,
        created_at: Some(timestamp(g.created_at_us)),
        decided_by: g.decided_by.clone(),
        decided_at: g.decided_at_us.map(timestamp),
        decision_reason: g.decision_reason.clone(),
        access_until: g.access_until_us.map(timestamp),
        legal_basis: g.legal_basis.clone(),
        owner_site: g.owner_site.clone(),
        requested_range: Some(time_range(g.requested_from_us, g.requested_to_us)),
        bundle_id: g.bundle_id.clone(),
        bundle_sha256: g.bundle_sha256.clone(),
        bundle_size: g.bundle_size,
        form: g.form.clone(),
        keep_for: Some(duration_pb(g.keep_for_us)),
    }
}

/// A partner's answer about one of its grants, as this site mirrors it. Refuses an answer
/// about another owner, another requesting site or cameras of another site.
pub(super) fn mirror_of(
    p: &pb::FootageGrant,
    owner_site: &str,
    here: &str,
    request_id: &str,
) -> Result<Grant, Status> {
    let bad = |what: &str| {
        Status::internal(format!(
            "partner {owner_site} answered with a malformed grant ({what})"
        ))
    };
    if p.id.is_empty() || p.owner_site != owner_site || p.requesting_site != here {
        return Err(bad("id, owner or requesting site"));
    }
    let mut cameras = Vec::with_capacity(p.cameras.len());
    for c in &p.cameras {
        if c.site != owner_site {
            return Err(bad("a camera of another site"));
        }
        cameras.push(c.camera.clone());
    }
    let range = |r: &Option<common::TimeRange>| -> Result<(i64, i64), Status> {
        closed_range(r).map_err(|_| bad("range"))
    };
    let (from_us, to_us) = range(&p.range)?;
    let (requested_from_us, requested_to_us) = range(&p.requested_range)?;
    let t = |t: &Option<Timestamp>| t.as_ref().and_then(|t| micros(t, "t").ok());
    let audit = p.audit.clone().unwrap_or_default();
    let state = match pb::FootageGrantState::try_from(p.state) {
        Ok(pb::FootageGrantState::Pending) => grants::STATE_PENDING,
        // Expired is approved with access_until passed: stored as approved.
        Ok(pb::FootageGrantState::Approved | pb::FootageGrantState::Expired) => {
            grants::STATE_APPROVED
        }
        Ok(pb::FootageGrantState::Denied) => grants::STATE_DENIED,
        _ => return Err(bad("state")),
    };
    Ok(Grant {
        id: p.id.clone(),
        owner_site: owner_site.to_string(),
        requesting_site: here.to_string(),
        request_id: request_id.to_string(),
        mirror: true,
        requested_by: p.requested_by.clone(),
        requested_by_name: String::new(),
        cameras,
        requested_from_us,
        requested_to_us,
        from_us,
        to_us,
        reason: audit.reason,
        case_id: audit.case_id,
        recipient: audit.recipient,
        legal_basis: p.legal_basis.clone(),
        form: p.form.clone(),
        keep_for_us: p
            .keep_for
            .map(|d| d.seconds.saturating_mul(MICROS))
            .unwrap_or(0),
        state,
        created_at_us: t(&p.created_at).unwrap_or(0),
        decided_by: p.decided_by.clone(),
        decided_at_us: t(&p.decided_at),
        decision_reason: p.decision_reason.clone(),
        access_until_us: t(&p.access_until),
        bundle_id: p.bundle_id.clone(),
        bundle_sha256: p.bundle_sha256.clone(),
        bundle_size: p.bundle_size,
        decision_logged: false,
    })
}

/// The access-log objects of a grant: the grant, then each camera over its range.
pub(super) fn grant_objects(g: &Grant) -> Vec<AccessObjectRec> {
    std::iter::once(AccessObjectRec {
        kind: pb::AccessObjectKind::FootageGrant as i32,
        site: g.owner_site.clone(),
        camera: String::new(),
        start_us: Some(g.from_us),
        end_us: Some(g.to_us),
        id: g.id.clone(),
    })
    .chain(
        g.cameras
            .iter()
            .map(|c| recording_object(&g.owner_site, c, g.from_us, g.to_us)),
    )
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip_and_bad_ones_are_refused() {
        let us = 1_795_774_446_123_456;
        assert_eq!(micros(&timestamp(us), "t").unwrap(), us);
        let bad = Timestamp {
            seconds: -1,
            nanos: 0,
        };
        assert!(micros(&bad, "t").is_err());
        let bad = Timestamp {
            seconds: 0,
            nanos: 2_000_000_000,
        };
        assert!(micros(&bad, "t").is_err());
        let huge = Timestamp {
            seconds: i64::MAX,
            nanos: 0,
        };
        assert!(micros(&huge, "t").is_err());
    }

    #[test]
    fn audit_reason_is_required() {
        assert!(audit_of(&None).is_err());
        assert!(
            audit_of(&Some(common::AuditContext {
                reason: "  ".into(),
                ..Default::default()
            }))
            .is_err()
        );
        assert!(
            audit_of(&Some(common::AuditContext {
                reason: "incident at gate 3".into(),
                ..Default::default()
            }))
            .is_ok()
        );
    }
}
