//! `kordon.storage.v1.StorageService` over [`Storage`]: request validation, authorisation,
//! access logging, and the one table that maps [`StorageError`] to gRPC codes and HTTP status.
//!
//! Every call is authorised with `kordon_runtime::auth::authorize_request` on the site it
//! touches before anything is read or changed. Footage reads then validate the request —
//! `audit.reason` is required (INVALID_ARGUMENT, nothing logged) — append one access-log entry,
//! and only then read and answer. Permissions: registering (and RecordAccess) needs
//! `WriteMedia`; footage reads `ReadFootage`; chain verification, an evidence operation,
//! `ExportEvidence` (auditor, admin); the access log `ReadAccessLog`; the chain head, which
//! holds no footage, `ViewStatus`.
//!
//! Implemented: RegisterSegment, RegisterGap, GetChainHead, ListRecordings, ListSegments,
//! GetSegment, GetPlaybackUrl, VerifyChain, ListAccessLog, VerifyAccessLog, RecordAccess,
//! Get/SetRetentionPolicy (`ViewStatus`/`Administer`), Create/Release/ListLegalHolds
//! (`ManageHolds`), ExportEvidence and GetEvidenceBundle (`ExportEvidence`),
//! RegisterRendition and RegisterSnapshot (`WriteMedia`), ListRenditions, GetSnapshot and
//! ListSnapshots (`ReadFootage`, logged). The footage-grant calls answer UNIMPLEMENTED.

use std::time::Duration;

use axum::http::StatusCode;
use kordon_objects::time::{MICROS, now_micros};
use kordon_proto::common::v1 as common;
use kordon_proto::storage::v1 as pb;
use kordon_proto::storage::v1::storage_service_server::{StorageService, StorageServiceServer};
use kordon_runtime::auth::{Permission, Principal, PrincipalKind, authorize_request};
use prost_types::Timestamp;
use tonic::codegen::BoxStream;
use tonic::{Request, Response, Status};

use crate::StorageError;
use crate::audit::{
    AccessEntry, AccessFilter, AccessFindingKind, AccessObjectRec, Checkpoint, NewAccessEntry,
};
use crate::chain::FindingKind;
use crate::config::{MAX_MERGE_TOLERANCE, MAX_URL_LIFETIME};
use crate::evidence::{self, Bundle, ExportRequest};
use crate::index::{GapRecord, NewGap, NewSegment, SegmentRecord};
use crate::media::{CameraWindow, NewRendition, NewSnapshot, Rendition, Snapshot};
use crate::playback::LIVE;
use crate::recordings::RangeKind;
use crate::retention::{EffectivePolicy, LegalHold, NewHold, check_retention};
use crate::service::{ChainReport, Storage};

const SERVICE: &str = "/kordon.storage.v1.StorageService/";
/// Default and largest page sizes.
const DEFAULT_PAGE: u32 = 100;
const MAX_PAGE: u32 = 1000;

/// What a client may learn about an error.
pub(crate) struct Public {
    pub code: tonic::Code,
    pub http: StatusCode,
    pub message: String,
}

/// The one table from domain errors to what clients see. Internal detail is logged here and
/// replaced by a generic message.
pub(crate) fn classify(e: &StorageError) -> Public {
    use StorageError as E;
    let public = |code, http, message: &str| Public {
        code,
        http,
        message: message.to_string(),
    };
    match e {
        E::InvalidArgument(m) => public(tonic::Code::InvalidArgument, StatusCode::BAD_REQUEST, m),
        E::NotFound(m) => public(tonic::Code::NotFound, StatusCode::NOT_FOUND, m),
        E::AlreadyExists(m) => public(tonic::Code::AlreadyExists, StatusCode::CONFLICT, m),
        E::FailedPrecondition(m) => public(
            tonic::Code::FailedPrecondition,
            StatusCode::PRECONDITION_FAILED,
            m,
        ),
        E::Unimplemented(m) => public(tonic::Code::Unimplemented, StatusCode::NOT_IMPLEMENTED, m),
        E::BadToken => public(
            tonic::Code::PermissionDenied,
            StatusCode::FORBIDDEN,
            "playback token is invalid or expired",
        ),
        E::Contention(m) => public(tonic::Code::Aborted, StatusCode::SERVICE_UNAVAILABLE, m),
        // 499: the client closed the request (nginx's code; nobody is left to read it).
        E::Cancelled(m) => public(
            tonic::Code::Cancelled,
            StatusCode::from_u16(499).unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
            m,
        ),
        E::Objects(inner) if inner.is_not_found() => public(
            tonic::Code::NotFound,
            StatusCode::NOT_FOUND,
            "the media object is not in the bucket",
        ),
        E::Objects(_) => {
            tracing::error!(error = %e, "object storage failed");
            public(
                tonic::Code::Unavailable,
                StatusCode::SERVICE_UNAVAILABLE,
                "object storage is unavailable; retry later",
            )
        }
        E::Database(sqlx::Error::PoolTimedOut | sqlx::Error::Io(_)) => {
            tracing::error!(error = %e, "index database unavailable");
            public(
                tonic::Code::Unavailable,
                StatusCode::SERVICE_UNAVAILABLE,
                "the index database is unavailable; retry later",
            )
        }
        E::Database(_) | E::Migrate(_) | E::Io { .. } | E::Config { .. } | E::Internal(_) => {
            tracing::error!(error = %e, "internal error");
            public(
                tonic::Code::Internal,
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal error (logged on the server)",
            )
        }
    }
}

impl From<StorageError> for Status {
    fn from(e: StorageError) -> Self {
        let p = classify(&e);
        Status::new(p.code, p.message)
    }
}

/// The gRPC implementation of `kordon.storage.v1.StorageService`.
#[derive(Clone)]
pub struct StorageApi {
    storage: Storage,
}

impl StorageApi {
    pub fn new(storage: Storage) -> Self {
        Self { storage }
    }
}

/// The tonic service to add to a server.
pub fn service(storage: Storage) -> StorageServiceServer<StorageApi> {
    StorageServiceServer::new(StorageApi::new(storage))
}

// ---------------------------------------------------------------------------------------------
// Request helpers
// ---------------------------------------------------------------------------------------------

fn invalid(m: impl Into<String>) -> Status {
    Status::from(StorageError::invalid(m))
}

fn camera_of(c: &Option<common::CameraRef>, field: &str) -> Result<(String, String), Status> {
    let c = c
        .as_ref()
        .ok_or_else(|| invalid(format!("{field}: required")))?;
    crate::service::check_camera(&c.site, &c.camera)
        .map_err(|e| invalid(format!("{field}: {e}")))?;
    Ok((c.site.clone(), c.camera.clone()))
}

fn micros(t: &Timestamp, field: &str) -> Result<i64, Status> {
    if !(0..1_000_000_000).contains(&t.nanos) {
        return Err(invalid(format!("{field}: nanos out of range")));
    }
    kordon_proto::time::micros_from_timestamp(t)
        .filter(|us| (0..=kordon_objects::time::MAX_MICROS).contains(us))
        .ok_or_else(|| invalid(format!("{field}: must be between 1970 and 9999")))
}

use kordon_proto::time::timestamp_from_micros as timestamp;

fn time_range(from_us: i64, to_us: i64) -> common::TimeRange {
    common::TimeRange {
        start: Some(timestamp(from_us)),
        end: (to_us != LIVE).then(|| timestamp(to_us)),
    }
}

/// (start, end) of a range whose start is required; `None` end when unset.
fn range_of(r: &Option<common::TimeRange>) -> Result<(i64, Option<i64>), Status> {
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
fn closed_range(r: &Option<common::TimeRange>) -> Result<(i64, i64), Status> {
    match range_of(r)? {
        (s, Some(e)) => Ok((s, e)),
        (_, None) => Err(invalid("range.end: required")),
    }
}

/// The audit context of a footage read: a non-empty reason is required.
fn audit_of(a: &Option<common::AuditContext>) -> Result<common::AuditContext, Status> {
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

fn duration_of(
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
fn policy_scope(site: &str, camera: &str) -> Result<(String, String), Status> {
    if camera.is_empty() {
        kordon_objects::validate_name("site", site).map_err(|e| invalid(e.to_string()))?;
    } else {
        crate::service::check_camera(site, camera).map_err(Status::from)?;
    }
    Ok((site.to_string(), camera.to_string()))
}

fn page_size(p: &Option<common::PageRequest>) -> u32 {
    match p.as_ref().map(|p| p.page_size).unwrap_or(0) {
        0 => DEFAULT_PAGE,
        n => n.min(MAX_PAGE),
    }
}

fn page_token(p: &Option<common::PageRequest>) -> &str {
    p.as_ref().map(|p| p.page_token.as_str()).unwrap_or("")
}

fn link(sequence: u64, prev: &[u8; 32], hash: &[u8; 32]) -> pb::ChainLink {
    pb::ChainLink {
        sequence,
        prev_hash: prev.to_vec(),
        record_hash: hash.to_vec(),
    }
}

/// Progress of a long call: `done` of `total` units in `stage`.
fn progress_pb(done: u64, total: u64, stage: &str) -> common::Progress {
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
fn media_url_pb((url, expires_s): (String, i64)) -> pb::MediaUrl {
    pb::MediaUrl {
        url,
        expires_at: Some(timestamp(expires_s * MICROS)),
    }
}

fn camera_ref(site: &str, camera: &str) -> common::CameraRef {
    common::CameraRef {
        site: site.to_string(),
        camera: camera.to_string(),
    }
}

/// A segment as the API shows it; `fate` is `(retain_until_us, on_legal_hold)` where known
/// (see `Storage::segment_fate`).
fn segment_pb(s: &SegmentRecord, fate: Option<(i64, bool)>) -> pb::Segment {
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

fn gap_pb(g: &GapRecord) -> pb::Gap {
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

fn outcome(created: bool) -> i32 {
    if created {
        pb::RegisterOutcome::Created as i32
    } else {
        pb::RegisterOutcome::AlreadyPresent as i32
    }
}

fn recording_object(site: &str, camera: &str, from_us: i64, to_us: i64) -> AccessObjectRec {
    AccessObjectRec {
        kind: pb::AccessObjectKind::Recording as i32,
        site: site.to_string(),
        camera: camera.to_string(),
        start_us: Some(from_us),
        end_us: (to_us != LIVE).then_some(to_us),
        id: String::new(),
    }
}

fn sha_of(v: &[u8]) -> Result<[u8; 32], Status> {
    <[u8; 32]>::try_from(v).map_err(|_| invalid("sha256: 32 bytes"))
}

fn rendition_pb(x: &Rendition, media: Option<pb::MediaUrl>) -> pb::Rendition {
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
    }
}

fn snapshot_pb(x: &Snapshot) -> pb::Snapshot {
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

fn snapshot_object(x: &Snapshot) -> AccessObjectRec {
    AccessObjectRec {
        kind: pb::AccessObjectKind::Snapshot as i32,
        site: x.new.site.clone(),
        camera: x.new.camera.clone(),
        start_us: Some(x.new.captured_at_us),
        end_us: None,
        id: x.id.clone(),
    }
}

fn bundle_pb(b: &Bundle) -> pb::EvidenceBundle {
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
        includes_rendering: false,
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

fn access_object_pb(o: &AccessObjectRec) -> pb::AccessObject {
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

fn access_entry_pb(e: &AccessEntry) -> pb::AccessLogEntry {
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
    }
}

fn finding_kind_pb(k: FindingKind) -> pb::ChainFindingKind {
    match k {
        FindingKind::MissingRecord => pb::ChainFindingKind::MissingRecord,
        FindingKind::RecordAltered => pb::ChainFindingKind::RecordAltered,
        FindingKind::BrokenLink => pb::ChainFindingKind::BrokenLink,
        FindingKind::Reordered => pb::ChainFindingKind::Reordered,
        FindingKind::ObjectMissing => pb::ChainFindingKind::ObjectMissing,
        FindingKind::ObjectAltered => pb::ChainFindingKind::ObjectAltered,
    }
}

fn report_pb(r: &ChainReport) -> pb::ChainReport {
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

fn checkpoint_pb(c: &Checkpoint) -> pb::AccessLogCheckpoint {
    pb::AccessLogCheckpoint {
        site: c.site.clone(),
        sequence: c.sequence,
        hash: c.hash.to_vec(),
        time: Some(timestamp(c.time_us)),
        signature: c.signature.clone(),
        signing_public_key: c.public_key.clone(),
    }
}

fn duration_pb(us: i64) -> prost_types::Duration {
    prost_types::Duration {
        seconds: us / MICROS,
        nanos: ((us % MICROS) * 1000) as i32,
    }
}

fn policy_pb(e: &EffectivePolicy) -> pb::RetentionPolicy {
    pb::RetentionPolicy {
        site: e.policy.site.clone(),
        camera: e.policy.camera.clone(),
        retention: Some(duration_pb(e.policy.retention_us)),
        updated_at: (e.policy.updated_at_us > 0).then(|| timestamp(e.policy.updated_at_us)),
        updated_by: e.policy.updated_by.clone(),
    }
}

fn hold_pb(h: &LegalHold) -> pb::LegalHold {
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

fn hold_objects(h: &LegalHold) -> Vec<AccessObjectRec> {
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

impl StorageApi {
    /// Appends the access-log entry of a granted call; the call answers only after this.
    async fn log(
        &self,
        who: &Principal,
        site: &str,
        action: pb::AccessAction,
        objects: Vec<AccessObjectRec>,
        audit: &common::AuditContext,
        method: &str,
    ) -> Result<AccessEntry, Status> {
        Ok(self
            .storage
            .record_access(&NewAccessEntry {
                site: site.to_string(),
                principal: who.subject.clone(),
                principal_name: who.display_name.clone().unwrap_or_default(),
                via_service: String::new(),
                action: action as i32,
                objects,
                reason: audit.reason.trim().to_string(),
                case_id: audit.case_id.trim().to_string(),
                recipient: audit.recipient.trim().to_string(),
                method: format!("{SERVICE}{method}"),
            })
            .await?)
    }

    fn media_url(&self, s: &SegmentRecord, ttl: Duration) -> pb::MediaUrl {
        media_url_pb(self.storage.media_url(s, ttl))
    }
}

// ---------------------------------------------------------------------------------------------
// The service
// ---------------------------------------------------------------------------------------------

#[tonic::async_trait]
impl StorageService for StorageApi {
    async fn register_segment(
        &self,
        req: Request<pb::RegisterSegmentRequest>,
    ) -> Result<Response<pb::RegisterSegmentResponse>, Status> {
        let (site, camera) = camera_of(&req.get_ref().camera, "camera")?;
        authorize_request(&req, &site, Permission::WriteMedia)?;
        let r = req.into_inner();
        let (start_us, end_us) = closed_range(&r.range)?;
        let sha256: [u8; 32] = r
            .sha256
            .as_slice()
            .try_into()
            .map_err(|_| invalid("sha256: must be 32 bytes"))?;
        match common::VideoCodec::try_from(r.codec) {
            Ok(common::VideoCodec::H264 | common::VideoCodec::H265) => {}
            _ => return Err(invalid("codec: VIDEO_CODEC_H264 or VIDEO_CODEC_H265")),
        }
        let registered = self
            .storage
            .register_segment(&NewSegment {
                site,
                camera,
                start_us,
                end_us,
                size_bytes: r.size_bytes,
                sha256,
                init_size: r.init_size,
                codec: r.codec,
                width: r.width,
                height: r.height,
                object_key: r.object_key,
                ingest_replica: r.ingest_replica,
            })
            .await?;
        Ok(Response::new(pb::RegisterSegmentResponse {
            outcome: outcome(registered.created),
            segment: Some(segment_pb(&registered.record, None)),
        }))
    }

    async fn register_gap(
        &self,
        req: Request<pb::RegisterGapRequest>,
    ) -> Result<Response<pb::RegisterGapResponse>, Status> {
        let (site, camera) = camera_of(&req.get_ref().camera, "camera")?;
        authorize_request(&req, &site, Permission::WriteMedia)?;
        let r = req.into_inner();
        let (start_us, end_us) = closed_range(&r.range)?;
        match pb::GapReason::try_from(r.reason) {
            Ok(pb::GapReason::Unspecified | pb::GapReason::Unexplained) | Err(_) => {
                return Err(invalid(
                    "reason: one of STREAM_LOST, STREAM_ERROR, INGEST_RESTART, SPOOL_OVERFLOW, \
                     OUTSIDE_EVENTS",
                ));
            }
            Ok(_) => {}
        }
        let registered = self
            .storage
            .register_gap(&NewGap {
                site,
                camera,
                start_us,
                end_us,
                reason: r.reason as u32,
                detail: r.detail,
                ingest_replica: r.ingest_replica,
            })
            .await?;
        Ok(Response::new(pb::RegisterGapResponse {
            outcome: outcome(registered.created),
            gap: Some(gap_pb(&registered.record)),
        }))
    }

    async fn get_chain_head(
        &self,
        req: Request<pb::GetChainHeadRequest>,
    ) -> Result<Response<pb::GetChainHeadResponse>, Status> {
        let (site, camera) = camera_of(&req.get_ref().camera, "camera")?;
        authorize_request(&req, &site, Permission::ViewStatus)?;
        let head = self.storage.chain_head(&site, &camera).await?;
        let prev = match head {
            Some(h) if h.sequence > 1 => {
                // The head's own prev_hash, for a complete link.
                let records = self
                    .storage
                    .index()
                    .chain_records(&site, &camera, h.sequence, h.sequence)
                    .await?;
                records.records.first().map(|r| r.prev_hash)
            }
            _ => None,
        };
        Ok(Response::new(pb::GetChainHeadResponse {
            head: head.map(|h| link(h.sequence, &prev.unwrap_or([0; 32]), &h.hash)),
            recorded_until: head.map(|h| timestamp(h.recorded_until_us)),
        }))
    }

    async fn list_recordings(
        &self,
        req: Request<pb::ListRecordingsRequest>,
    ) -> Result<Response<pb::ListRecordingsResponse>, Status> {
        use pb::list_recordings_request::Scope;
        let (site, one_camera) = match &req.get_ref().scope {
            Some(Scope::Camera(c)) => {
                let (s, c) = camera_of(&Some(c.clone()), "camera")?;
                (s, Some(c))
            }
            Some(Scope::Site(s)) => {
                kordon_objects::validate_name("site", s).map_err(|e| invalid(e.to_string()))?;
                (s.clone(), None)
            }
            None => return Err(invalid("scope: camera or site required")),
        };
        let who = authorize_request(&req, &site, Permission::ReadFootage)?.clone();
        let r = req.into_inner();
        let (from_us, to) = range_of(&r.range)?;
        let to_us = to.unwrap_or_else(now_micros);
        if to_us <= from_us {
            return Err(invalid("range: starts in the future"));
        }
        let defaults = self.storage.options();
        let tolerance = duration_of(
            &r.merge_tolerance,
            "merge_tolerance",
            defaults.merge_tolerance,
            MAX_MERGE_TOLERANCE,
        )?;
        let ttl = duration_of(
            &r.url_ttl,
            "url_ttl",
            defaults.url_lifetime,
            MAX_URL_LIFETIME,
        )?;
        let offset: usize = match page_token(&r.page) {
            "" => 0,
            t => t
                .parse()
                .map_err(|_| invalid("page.page_token: not a token of this list"))?,
        };
        let audit = audit_of(&r.audit)?;
        self.log(
            &who,
            &site,
            pb::AccessAction::List,
            vec![recording_object(
                &site,
                one_camera.as_deref().unwrap_or(""),
                from_us,
                to_us,
            )],
            &audit,
            "ListRecordings",
        )
        .await?;

        let cameras = match one_camera {
            Some(c) => vec![c],
            None => self.storage.index().cameras(&site).await?,
        };
        let mut ranges = Vec::new();
        for camera in &cameras {
            for t in self
                .storage
                .timeline(&site, camera, from_us, to_us, tolerance)
                .await?
            {
                let mut out = pb::RecordingRange {
                    camera: Some(camera_ref(&site, camera)),
                    range: Some(time_range(t.start_us, t.end_us)),
                    ..Default::default()
                };
                match t.kind {
                    RangeKind::Recorded {
                        segment_count,
                        size_bytes,
                    } => {
                        out.kind = pb::RecordingRangeKind::Recorded as i32;
                        out.segment_count = segment_count;
                        out.size_bytes = size_bytes;
                        out.playback = Some(media_url_pb(
                            self.storage
                                .playback_url(&site, camera, t.start_us, t.end_us, ttl),
                        ));
                    }
                    RangeKind::Gap { reason, detail } => {
                        out.kind = pb::RecordingRangeKind::Gap as i32;
                        out.gap_reason = reason as i32;
                        out.gap_detail = detail;
                    }
                }
                ranges.push(out);
            }
        }
        let size = page_size(&r.page) as usize;
        let total = ranges.len();
        let page: Vec<_> = ranges.into_iter().skip(offset).take(size).collect();
        let next = offset + page.len();
        Ok(Response::new(pb::ListRecordingsResponse {
            ranges: page,
            page: Some(common::PageResponse {
                next_page_token: if next < total {
                    next.to_string()
                } else {
                    String::new()
                },
            }),
        }))
    }

    async fn list_segments(
        &self,
        req: Request<pb::ListSegmentsRequest>,
    ) -> Result<Response<pb::ListSegmentsResponse>, Status> {
        let (site, camera) = camera_of(&req.get_ref().camera, "camera")?;
        let who = authorize_request(&req, &site, Permission::ReadFootage)?.clone();
        let r = req.into_inner();
        let (from_us, to) = range_of(&r.range)?;
        let to_us = to.unwrap_or_else(now_micros);
        let after = match page_token(&r.page) {
            "" => None,
            t => {
                let bad = || invalid("page.page_token: not a token of this list");
                let (a, b) = t.split_once(':').ok_or_else(bad)?;
                Some((
                    a.parse::<i64>().map_err(|_| bad())?,
                    b.parse::<u64>().map_err(|_| bad())?,
                ))
            }
        };
        let audit = audit_of(&r.audit)?;
        self.log(
            &who,
            &site,
            pb::AccessAction::List,
            vec![recording_object(&site, &camera, from_us, to_us)],
            &audit,
            "ListSegments",
        )
        .await?;
        let size = page_size(&r.page);
        let mut segments = self
            .storage
            .index()
            .list_segments(&site, &camera, from_us, to_us, after, size + 1)
            .await?;
        let more = segments.len() > size as usize;
        segments.truncate(size as usize);
        let next_page_token = match (more, segments.last()) {
            (true, Some(s)) => format!("{}:{}", s.start_us, s.sequence),
            _ => String::new(),
        };
        Ok(Response::new(pb::ListSegmentsResponse {
            segments: {
                let fate = self.storage.segment_fate(&site, &camera).await?;
                segments
                    .iter()
                    .map(|s| segment_pb(s, Some(fate(s))))
                    .collect()
            },
            page: Some(common::PageResponse { next_page_token }),
        }))
    }

    async fn get_segment(
        &self,
        req: Request<pb::GetSegmentRequest>,
    ) -> Result<Response<pb::GetSegmentResponse>, Status> {
        let (site, camera) = camera_of(&req.get_ref().camera, "camera")?;
        let who = authorize_request(&req, &site, Permission::ReadFootage)?.clone();
        let r = req.into_inner();
        let ttl = duration_of(
            &r.url_ttl,
            "url_ttl",
            self.storage.options().url_lifetime,
            MAX_URL_LIFETIME,
        )?;
        let audit = audit_of(&r.audit)?;
        self.log(
            &who,
            &site,
            pb::AccessAction::Read,
            vec![AccessObjectRec {
                kind: pb::AccessObjectKind::Segment as i32,
                site: site.clone(),
                camera: camera.clone(),
                start_us: None,
                end_us: None,
                id: r.sequence.to_string(),
            }],
            &audit,
            "GetSegment",
        )
        .await?;
        let seg = self
            .storage
            .index()
            .segment(&site, &camera, r.sequence)
            .await?
            .filter(|s| s.deleted_at_us.is_none())
            .ok_or_else(|| {
                Status::from(StorageError::NotFound(format!(
                    "camera {site}/{camera} has no segment {}",
                    r.sequence
                )))
            })?;
        let fate = self.storage.segment_fate(&site, &camera).await?;
        Ok(Response::new(pb::GetSegmentResponse {
            media: Some(self.media_url(&seg, ttl)),
            segment: Some(segment_pb(&seg, Some(fate(&seg)))),
        }))
    }

    async fn get_playback_url(
        &self,
        req: Request<pb::GetPlaybackUrlRequest>,
    ) -> Result<Response<pb::GetPlaybackUrlResponse>, Status> {
        let (site, camera) = camera_of(&req.get_ref().camera, "camera")?;
        let who = authorize_request(&req, &site, Permission::ReadFootage)?.clone();
        let r = req.into_inner();
        let (from_us, to) = range_of(&r.range)?;
        let to_us = to.unwrap_or(LIVE);
        let ttl = duration_of(
            &r.url_ttl,
            "url_ttl",
            self.storage.options().url_lifetime,
            MAX_URL_LIFETIME,
        )?;
        if !r.rendition_profile.is_empty() {
            return Err(StorageError::Unimplemented(
                "rendition playback is not available yet; leave rendition_profile empty".into(),
            )
            .into());
        }
        let audit = audit_of(&r.audit)?;
        self.log(
            &who,
            &site,
            pb::AccessAction::Playback,
            vec![recording_object(&site, &camera, from_us, to_us)],
            &audit,
            "GetPlaybackUrl",
        )
        .await?;
        let Some((first, last)) = self.storage.covered(&site, &camera, from_us, to_us).await?
        else {
            return Err(StorageError::NotFound(format!(
                "nothing is recorded for {site}/{camera} in the range"
            ))
            .into());
        };
        let playback = media_url_pb(
            self.storage
                .playback_url(&site, &camera, from_us, to_us, ttl),
        );
        Ok(Response::new(pb::GetPlaybackUrlResponse {
            playback: Some(playback),
            covered: Some(time_range(first, last)),
            live: to_us == LIVE,
        }))
    }

    async fn verify_chain(
        &self,
        req: Request<pb::VerifyChainRequest>,
    ) -> Result<Response<BoxStream<pb::VerifyChainResponse>>, Status> {
        let (site, camera) = camera_of(&req.get_ref().camera, "camera")?;
        let who = authorize_request(&req, &site, Permission::ExportEvidence)?.clone();
        let r = req.into_inner();
        let (from_us, to) = range_of(&r.range)?;
        let to_us = to.unwrap_or_else(now_micros);
        let audit = audit_of(&r.audit)?;
        self.log(
            &who,
            &site,
            pb::AccessAction::Verify,
            vec![recording_object(&site, &camera, from_us, to_us)],
            &audit,
            "VerifyChain",
        )
        .await?;
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        let storage = self.storage.clone();
        tokio::spawn(async move {
            let progress_tx = tx.clone();
            let progress = move |done: u64, total: u64, stage: &str| {
                // Progress is best effort: a slow reader skips some.
                let _ = progress_tx.try_send(Ok(pb::VerifyChainResponse {
                    event: Some(pb::verify_chain_response::Event::Progress(progress_pb(
                        done, total, stage,
                    ))),
                }));
            };
            // Verification reads every object in the range: stop as soon as nobody waits.
            let result = tokio::select! {
                r = storage.verify_chain(&site, &camera, from_us, to_us, r.verify_objects, &progress) => r,
                () = tx.closed() => {
                    tracing::info!(site = %site, camera = %camera,
                                   "chain verification cancelled: the client went away");
                    return;
                }
            };
            let msg = match result {
                Ok(report) => {
                    tracing::info!(site = %site, camera = %camera, intact = report.intact(),
                                   findings = report.findings.len(), "chain verified");
                    Ok(pb::VerifyChainResponse {
                        event: Some(pb::verify_chain_response::Event::Report(report_pb(&report))),
                    })
                }
                Err(e) => Err(Status::from(e)),
            };
            let _ = tx.send(msg).await;
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn export_evidence(
        &self,
        req: Request<pb::ExportEvidenceRequest>,
    ) -> Result<Response<BoxStream<pb::ExportEvidenceResponse>>, Status> {
        let g = req.get_ref();
        let mut site = String::new();
        let mut cameras = Vec::with_capacity(g.cameras.len());
        for (i, c) in g.cameras.iter().enumerate() {
            let (s, cam) = camera_of(&Some(c.clone()), &format!("cameras[{i}]"))?;
            if i == 0 {
                site = s;
            } else if s != site {
                return Err(invalid("cameras: a bundle holds cameras of one site"));
            }
            cameras.push(cam);
        }
        if cameras.is_empty() {
            return Err(invalid("cameras: at least one camera is needed"));
        }
        let who = authorize_request(&req, &site, Permission::ExportEvidence)?.clone();
        let r = req.into_inner();
        let (from_us, to_us) = closed_range(&r.range)?;
        let audit = audit_of(&r.audit)?;
        if r.rendering.is_some() {
            return Err(StorageError::Unimplemented(
                "rendering: viewer copies (burned-in time, privacy masks) come from the \
                 transcode service, which does not make them yet; export the originals"
                    .into(),
            )
            .into());
        }
        let export = ExportRequest {
            site: site.clone(),
            cameras,
            from_us,
            to_us,
            case_id: audit.case_id.trim().to_string(),
            reason: audit.reason.trim().to_string(),
            recipient: audit.recipient.trim().to_string(),
            description: r.description.trim().to_string(),
            request_id: r.request_id.trim().to_string(),
            exported_by: who.subject.clone(),
            exported_by_name: who.display_name.clone().unwrap_or_default(),
        };
        let (bundle, fresh) = self.storage.start_export(&export).await?;
        let id = bundle.id.clone();
        let objects: Vec<AccessObjectRec> = std::iter::once(AccessObjectRec {
            kind: pb::AccessObjectKind::EvidenceBundle as i32,
            site: site.clone(),
            camera: String::new(),
            start_us: Some(from_us),
            end_us: Some(to_us),
            id: id.clone(),
        })
        .chain(
            export
                .cameras
                .iter()
                .map(|c| recording_object(&site, c, from_us, to_us)),
        )
        .collect();
        if !fresh {
            // A retry of the same export (same principal and request, see
            // `Bundle::same_request`): hand out the bundle, logged like the first time.
            if bundle.state != evidence::STATE_READY {
                return Err(Status::failed_precondition(format!(
                    "evidence bundle {id} for this request id is still being built; call \
                     GetEvidenceBundle for its state"
                )));
            }
            self.log(
                &who,
                &site,
                pb::AccessAction::Export,
                objects,
                &audit,
                "ExportEvidence (retry)",
            )
            .await?;
            let msg = Ok(pb::ExportEvidenceResponse {
                bundle_id: id.clone(),
                event: Some(pb::export_evidence_response::Event::Bundle(bundle_pb(
                    &bundle,
                ))),
            });
            return Ok(Response::new(Box::pin(tokio_stream::once(msg))));
        }
        let entry = match self
            .log(
                &who,
                &site,
                pb::AccessAction::Export,
                objects,
                &audit,
                "ExportEvidence",
            )
            .await
        {
            Ok(e) => e,
            Err(status) => {
                let _ = self
                    .storage
                    .index()
                    .fail_bundle(&id, "the access log could not record the export")
                    .await;
                return Err(status);
            }
        };
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        let storage = self.storage.clone();
        let name = export.exported_by_name.clone();
        tokio::spawn(async move {
            let progress_tx = tx.clone();
            let progress_id = id.clone();
            let progress = move |done: u64, total: u64, stage: &str| {
                let _ = progress_tx.try_send(Ok(pb::ExportEvidenceResponse {
                    bundle_id: progress_id.clone(),
                    event: Some(pb::export_evidence_response::Event::Progress(progress_pb(
                        done, total, stage,
                    ))),
                }));
            };
            // A client that goes away cancels the build: the upload is aborted and the bundle
            // marked failed, so an export again with the same request id rebuilds it.
            let cancel = tokio_util::sync::CancellationToken::new();
            let watch = {
                let cancel = cancel.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    tx.closed().await;
                    cancel.cancel();
                })
            };
            let result = storage
                .build_bundle(
                    &bundle,
                    &name,
                    (entry.sequence, entry.hash),
                    &progress,
                    &cancel,
                )
                .await;
            watch.abort();
            let msg = match result {
                Ok(b) => Ok(pb::ExportEvidenceResponse {
                    bundle_id: id,
                    event: Some(pb::export_evidence_response::Event::Bundle(bundle_pb(&b))),
                }),
                Err(e) => Err(Status::from(e)),
            };
            let _ = tx.send(msg).await;
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn get_evidence_bundle(
        &self,
        req: Request<pb::GetEvidenceBundleRequest>,
    ) -> Result<Response<pb::GetEvidenceBundleResponse>, Status> {
        let id = req.get_ref().bundle_id.trim().to_string();
        if id.is_empty() {
            return Err(invalid("bundle_id: required"));
        }
        // Authorise on the bundle's site; an unknown id and a bundle of a site the caller
        // cannot see answer the same.
        let not_found = || Status::not_found(format!("no evidence bundle {id}"));
        let bundle = self
            .storage
            .index()
            .bundle(&id)
            .await?
            .ok_or_else(not_found)?;
        let who = match authorize_request(&req, &bundle.site, Permission::ExportEvidence) {
            Ok(w) => w.clone(),
            Err(s) if s.code() == tonic::Code::PermissionDenied => return Err(not_found()),
            Err(s) => return Err(s),
        };
        let r = req.into_inner();
        let audit = audit_of(&r.audit)?;
        let ttl = duration_of(
            &r.url_ttl,
            "url_ttl",
            self.storage.options().url_lifetime,
            MAX_URL_LIFETIME,
        )?;
        self.log(
            &who,
            &bundle.site,
            pb::AccessAction::Download,
            vec![AccessObjectRec {
                kind: pb::AccessObjectKind::EvidenceBundle as i32,
                site: bundle.site.clone(),
                camera: String::new(),
                start_us: Some(bundle.from_us),
                end_us: Some(bundle.to_us),
                id: bundle.id.clone(),
            }],
            &audit,
            "GetEvidenceBundle",
        )
        .await?;
        let download = (bundle.state == evidence::STATE_READY)
            .then(|| media_url_pb(self.storage.bundle_download_url(&bundle, ttl)));
        Ok(Response::new(pb::GetEvidenceBundleResponse {
            manifest: if bundle.state == evidence::STATE_READY {
                bundle.manifest.clone()
            } else {
                Vec::new()
            },
            bundle: Some(bundle_pb(&bundle)),
            download,
        }))
    }

    async fn register_rendition(
        &self,
        req: Request<pb::RegisterRenditionRequest>,
    ) -> Result<Response<pb::RegisterRenditionResponse>, Status> {
        let (site, camera) = camera_of(&req.get_ref().camera, "camera")?;
        authorize_request(&req, &site, Permission::WriteMedia)?;
        let r = req.into_inner();
        let (start_us, end_us) = closed_range(&r.range)?;
        let n = NewRendition {
            site,
            camera,
            source_sequence: r.source_sequence,
            profile: r.profile,
            start_us,
            end_us,
            codec: r.codec,
            width: r.width,
            height: r.height,
            bitrate_bps: r.bitrate_bps,
            object_key: r.object_key,
            size_bytes: r.size_bytes,
            sha256: sha_of(&r.sha256)?,
            job_id: r.job_id,
        };
        let (rendition, created) = self.storage.register_rendition(&n).await?;
        Ok(Response::new(pb::RegisterRenditionResponse {
            outcome: outcome(created),
            rendition: Some(rendition_pb(&rendition, None)),
        }))
    }

    async fn register_snapshot(
        &self,
        req: Request<pb::RegisterSnapshotRequest>,
    ) -> Result<Response<pb::RegisterSnapshotResponse>, Status> {
        let (site, camera) = camera_of(&req.get_ref().camera, "camera")?;
        authorize_request(&req, &site, Permission::WriteMedia)?;
        let r = req.into_inner();
        let captured_at_us = micros(
            r.captured_at
                .as_ref()
                .ok_or_else(|| invalid("captured_at: required"))?,
            "captured_at",
        )?;
        let n = NewSnapshot {
            site,
            camera,
            kind: r.kind,
            captured_at_us,
            content_type: r.content_type,
            width: r.width,
            height: r.height,
            size_bytes: r.size_bytes,
            sha256: sha_of(&r.sha256)?,
            object_key: r.object_key,
            detection_id: r.detection_id,
            source_sequence: r.source_sequence,
        };
        let (snapshot, created) = self.storage.register_snapshot(&n).await?;
        Ok(Response::new(pb::RegisterSnapshotResponse {
            outcome: outcome(created),
            snapshot: Some(snapshot_pb(&snapshot)),
        }))
    }

    async fn list_renditions(
        &self,
        req: Request<pb::ListRenditionsRequest>,
    ) -> Result<Response<pb::ListRenditionsResponse>, Status> {
        let (site, camera) = camera_of(&req.get_ref().camera, "camera")?;
        let who = authorize_request(&req, &site, Permission::ReadFootage)?.clone();
        let r = req.into_inner();
        let (from_us, to) = range_of(&r.range)?;
        let to_us = to.unwrap_or_else(now_micros);
        let after = match page_token(&r.page) {
            "" => None,
            t => {
                let bad = || invalid("page.page_token: not a token of this list");
                let mut parts = t.splitn(3, ':');
                let start = parts.next().and_then(|p| p.parse::<i64>().ok());
                let seq = parts.next().and_then(|p| p.parse::<u64>().ok());
                let profile = parts.next().map(str::to_string);
                match (start, seq, profile) {
                    (Some(a), Some(b), Some(c)) => Some((a, b, c)),
                    _ => return Err(bad()),
                }
            }
        };
        let audit = audit_of(&r.audit)?;
        self.log(
            &who,
            &site,
            pb::AccessAction::List,
            vec![recording_object(&site, &camera, from_us, to_us)],
            &audit,
            "ListRenditions",
        )
        .await?;
        let size = page_size(&r.page);
        let mut list = self
            .storage
            .index()
            .list_renditions(
                CameraWindow {
                    site: &site,
                    camera: &camera,
                    from_us,
                    to_us,
                },
                r.profile.trim(),
                after,
                size + 1,
            )
            .await?;
        let more = list.len() > size as usize;
        list.truncate(size as usize);
        let next_page_token = match (more, list.last()) {
            (true, Some(x)) => format!(
                "{}:{}:{}",
                x.new.start_us, x.new.source_sequence, x.new.profile
            ),
            _ => String::new(),
        };
        let ttl = self.storage.options().url_lifetime;
        Ok(Response::new(pb::ListRenditionsResponse {
            renditions: list
                .iter()
                .map(|x| {
                    let media =
                        media_url_pb(self.storage.object_url(&site, &x.new.object_key, ttl));
                    rendition_pb(x, Some(media))
                })
                .collect(),
            page: Some(common::PageResponse { next_page_token }),
        }))
    }

    async fn get_snapshot(
        &self,
        req: Request<pb::GetSnapshotRequest>,
    ) -> Result<Response<pb::GetSnapshotResponse>, Status> {
        let id = req.get_ref().snapshot_id.trim().to_string();
        if id.is_empty() {
            return Err(invalid("snapshot_id: required"));
        }
        let not_found = || Status::not_found(format!("no snapshot {id}"));
        let snap = self
            .storage
            .index()
            .snapshot(&id)
            .await?
            .ok_or_else(not_found)?;
        let who = match authorize_request(&req, &snap.new.site, Permission::ReadFootage) {
            Ok(w) => w.clone(),
            Err(s) if s.code() == tonic::Code::PermissionDenied => return Err(not_found()),
            Err(s) => return Err(s),
        };
        let r = req.into_inner();
        let audit = audit_of(&r.audit)?;
        let ttl = duration_of(
            &r.url_ttl,
            "url_ttl",
            self.storage.options().url_lifetime,
            MAX_URL_LIFETIME,
        )?;
        self.log(
            &who,
            &snap.new.site,
            pb::AccessAction::Read,
            vec![snapshot_object(&snap)],
            &audit,
            "GetSnapshot",
        )
        .await?;
        let media = media_url_pb(self.storage.object_url(
            &snap.new.site,
            &snap.new.object_key,
            ttl,
        ));
        Ok(Response::new(pb::GetSnapshotResponse {
            snapshot: Some(snapshot_pb(&snap)),
            media: Some(media),
        }))
    }

    async fn list_snapshots(
        &self,
        req: Request<pb::ListSnapshotsRequest>,
    ) -> Result<Response<pb::ListSnapshotsResponse>, Status> {
        let (site, camera) = camera_of(&req.get_ref().camera, "camera")?;
        let who = authorize_request(&req, &site, Permission::ReadFootage)?.clone();
        let r = req.into_inner();
        let (from_us, to) = range_of(&r.range)?;
        let to_us = to.unwrap_or_else(now_micros);
        let after = match page_token(&r.page) {
            "" => None,
            t => {
                let bad = || invalid("page.page_token: not a token of this list");
                let (a, b) = t.split_once(':').ok_or_else(bad)?;
                Some((a.parse::<i64>().map_err(|_| bad())?, b.to_string()))
            }
        };
        let ttl = duration_of(
            &r.url_ttl,
            "url_ttl",
            self.storage.options().url_lifetime,
            MAX_URL_LIFETIME,
        )?;
        let audit = audit_of(&r.audit)?;
        self.log(
            &who,
            &site,
            pb::AccessAction::List,
            vec![recording_object(&site, &camera, from_us, to_us)],
            &audit,
            "ListSnapshots",
        )
        .await?;
        let size = page_size(&r.page);
        let mut list = self
            .storage
            .index()
            .list_snapshots(
                CameraWindow {
                    site: &site,
                    camera: &camera,
                    from_us,
                    to_us,
                },
                r.kind,
                after,
                size + 1,
            )
            .await?;
        let more = list.len() > size as usize;
        list.truncate(size as usize);
        let next_page_token = match (more, list.last()) {
            (true, Some(x)) => format!("{}:{}", x.new.captured_at_us, x.id),
            _ => String::new(),
        };
        Ok(Response::new(pb::ListSnapshotsResponse {
            snapshots: list
                .iter()
                .map(|x| {
                    let media =
                        media_url_pb(self.storage.object_url(&site, &x.new.object_key, ttl));
                    pb::ListedSnapshot {
                        snapshot: Some(snapshot_pb(x)),
                        media: Some(media),
                    }
                })
                .collect(),
            page: Some(common::PageResponse { next_page_token }),
        }))
    }

    async fn list_access_log(
        &self,
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
        self.log(
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
        let mut entries = self
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

    async fn verify_access_log(
        &self,
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
        let report = self
            .storage
            .index()
            .verify_access(
                &site,
                r.from_sequence,
                r.to_sequence,
                checkpoint.as_ref(),
                &self.storage.signing_public_key(),
            )
            .await?;
        let head = (report.last >= 1 && report.last >= report.first).then(|| {
            checkpoint_pb(
                &self
                    .storage
                    .checkpoint(&site, report.last, report.last_hash),
            )
        });
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

    async fn get_retention_policy(
        &self,
        req: Request<pb::GetRetentionPolicyRequest>,
    ) -> Result<Response<pb::GetRetentionPolicyResponse>, Status> {
        let (site, camera) = policy_scope(&req.get_ref().site, &req.get_ref().camera)?;
        authorize_request(&req, &site, Permission::ViewStatus)?;
        let e = self.storage.effective_policy(&site, &camera).await?;
        Ok(Response::new(pb::GetRetentionPolicyResponse {
            policy: Some(policy_pb(&e)),
            inherited: e.inherited,
        }))
    }

    async fn set_retention_policy(
        &self,
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
        self.log(
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
        self.storage
            .index()
            .set_retention_policy(&site, &camera, retention_us, &who.subject)
            .await?;
        let e = self.storage.effective_policy(&site, &camera).await?;
        Ok(Response::new(pb::SetRetentionPolicyResponse {
            policy: Some(policy_pb(&e)),
            inherited: e.inherited,
        }))
    }

    async fn create_legal_hold(
        &self,
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
        let (hold, _) = self
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
        self.log(
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

    async fn release_legal_hold(
        &self,
        req: Request<pb::ReleaseLegalHoldRequest>,
    ) -> Result<Response<pb::ReleaseLegalHoldResponse>, Status> {
        let id = req.get_ref().hold_id.clone();
        if id.is_empty() || id.len() > 100 {
            return Err(invalid("hold_id: required"));
        }
        let not_found = || Status::from(StorageError::NotFound(format!("no legal hold {id}")));
        let hold = self
            .storage
            .index()
            .hold(&id)
            .await?
            .ok_or_else(not_found)?;
        let who = authorize_request(&req, &hold.site, Permission::ManageHolds)?.clone();
        let r = req.into_inner();
        let audit = audit_of(&r.audit)?;
        if hold.state == crate::retention::HOLD_ACTIVE {
            self.log(
                &who,
                &hold.site,
                pb::AccessAction::Release,
                hold_objects(&hold),
                &audit,
                "ReleaseLegalHold",
            )
            .await?;
            self.storage
                .index()
                .release_hold(&id, &who.subject, audit.reason.trim())
                .await?;
        }
        let hold = self
            .storage
            .index()
            .hold(&id)
            .await?
            .ok_or_else(not_found)?;
        Ok(Response::new(pb::ReleaseLegalHoldResponse {
            hold: Some(hold_pb(&hold)),
        }))
    }

    async fn list_legal_holds(
        &self,
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
        let mut holds = self
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

    async fn record_access(
        &self,
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
        let caller = authorize_request(&req, &site, Permission::WriteMedia)?.clone();
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
        let entry = self
            .storage
            .record_access(&NewAccessEntry {
                site,
                principal: r.principal,
                principal_name: r.principal_name,
                via_service: caller.to_string(),
                action: r.action,
                objects,
                reason: audit.reason.trim().to_string(),
                case_id: audit.case_id.trim().to_string(),
                recipient: audit.recipient.trim().to_string(),
                method: r.method,
            })
            .await?;
        Ok(Response::new(pb::RecordAccessResponse {
            entry: Some(access_entry_pb(&entry)),
        }))
    }
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
    fn internal_errors_never_reach_the_client() {
        let e = StorageError::Database(sqlx::Error::Protocol(
            "SELECT secret FROM segments at /var/lib/kordon".into(),
        ));
        let s = Status::from(e);
        assert_eq!(s.code(), tonic::Code::Internal);
        assert!(!s.message().contains("SELECT"), "{}", s.message());
        assert!(!s.message().contains("/var/lib"), "{}", s.message());
        let e = StorageError::Io {
            path: "/secret/path".into(),
            source: std::io::Error::other("x"),
        };
        assert!(!Status::from(e).message().contains("/secret"));
        let s = Status::from(StorageError::invalid("range: end must be after start"));
        assert_eq!(s.code(), tonic::Code::InvalidArgument);
        assert!(s.message().contains("range"));
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
