//! `kordon.storage.v1.StorageService` over [`Storage`]: request validation, authorisation,
//! access logging, and the one table that maps [`StorageError`] to gRPC codes and HTTP status.
//!
//! Every call is authorised with `kordon_runtime::auth::authorize_request` on the site it
//! touches before anything is read or changed. Footage reads then validate the request —
//! `audit.reason` is required (INVALID_ARGUMENT, nothing logged) — append one access-log entry,
//! and only then read and answer. Permissions: registering (and RecordAccess) needs
//! `WriteMedia`; footage reads `ReadFootage`; chain verification, an evidence operation,
//! `ExportEvidence` (auditor, admin); the access log `ReadAccessLog`; the chain head and
//! segment locations, which hold no footage, `ViewStatus`.
//!
//! Implemented: RegisterSegment, RegisterGap, GetChainHead, LocateSegments, ListRecordings,
//! ListSegments, GetSegment, GetPlaybackUrl, VerifyChain, ListAccessLog, VerifyAccessLog,
//! RecordAccess, Get/SetRetentionPolicy (`ViewStatus`/`Administer`), Create/Release/ListLegalHolds
//! (`ManageHolds`), ExportEvidence (with viewer copies when transcode is configured) and
//! GetEvidenceBundle (`ExportEvidence`),
//! RegisterRendition and RegisterSnapshot (`WriteMedia`), ListRenditions, GetSnapshot and
//! ListSnapshots (`ReadFootage`, logged), and the footage grants with partners — RequestFootage,
//! ListFootageGrants, DecideFootageGrant, FetchFootageGrant — which admit partners on the
//! partner link and people with `PartnerFootage` ([`grants`]).
//!
//! Layout: this module holds [`StorageApi`], the error table, the access-log helper and the
//! `StorageService` impl, which hands each call to its feature module: [`chain`] (registration,
//! chain head, verification), [`recordings`] (footage reads and playback URLs), [`evidence`],
//! [`media`] (renditions and snapshots), [`access_log`] and [`retention`] (policies and legal
//! holds). Every message <-> domain conversion is in [`convert`].

use std::time::Duration;

use axum::http::StatusCode;
use kordon_proto::common::v1 as common;
use kordon_proto::storage::v1 as pb;
use kordon_proto::storage::v1::storage_service_server::{StorageService, StorageServiceServer};
use kordon_runtime::auth::Principal;
use tonic::codegen::BoxStream;
use tonic::{Request, Response, Status};

use crate::StorageError;
use crate::audit::{AccessEntry, AccessObjectRec, NewAccessEntry};
use crate::index::SegmentRecord;
use crate::service::Storage;
use convert::media_url_pb;
// The paging rules of every list, shared with the console gateway.
pub(crate) use convert::{page_size, page_token};

mod access_log;
mod chain;
mod convert;
mod evidence;
mod grants;
mod media;
mod recordings;
mod retention;

const SERVICE: &str = "/kordon.storage.v1.StorageService/";

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
        E::PermissionDenied(m) => public(tonic::Code::PermissionDenied, StatusCode::FORBIDDEN, m),
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
        E::Unavailable(m) => public(tonic::Code::Unavailable, StatusCode::SERVICE_UNAVAILABLE, m),
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

pub use grants::poll_partner_grants;

/// The tonic service to add to a server.
pub fn service(storage: Storage) -> StorageServiceServer<StorageApi> {
    StorageServiceServer::new(StorageApi::new(storage))
}

// ---------------------------------------------------------------------------------------------
// Shared by the features
// ---------------------------------------------------------------------------------------------

fn invalid(m: impl Into<String>) -> Status {
    Status::from(StorageError::invalid(m))
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
                source: String::new(),
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
        chain::register_segment(self, req).await
    }

    async fn register_gap(
        &self,
        req: Request<pb::RegisterGapRequest>,
    ) -> Result<Response<pb::RegisterGapResponse>, Status> {
        chain::register_gap(self, req).await
    }

    async fn get_chain_head(
        &self,
        req: Request<pb::GetChainHeadRequest>,
    ) -> Result<Response<pb::GetChainHeadResponse>, Status> {
        chain::get_chain_head(self, req).await
    }

    async fn locate_segments(
        &self,
        req: Request<pb::LocateSegmentsRequest>,
    ) -> Result<Response<pb::LocateSegmentsResponse>, Status> {
        chain::locate_segments(self, req).await
    }

    async fn list_recordings(
        &self,
        req: Request<pb::ListRecordingsRequest>,
    ) -> Result<Response<pb::ListRecordingsResponse>, Status> {
        recordings::list_recordings(self, req).await
    }

    async fn list_segments(
        &self,
        req: Request<pb::ListSegmentsRequest>,
    ) -> Result<Response<pb::ListSegmentsResponse>, Status> {
        recordings::list_segments(self, req).await
    }

    async fn get_segment(
        &self,
        req: Request<pb::GetSegmentRequest>,
    ) -> Result<Response<pb::GetSegmentResponse>, Status> {
        recordings::get_segment(self, req).await
    }

    async fn get_playback_url(
        &self,
        req: Request<pb::GetPlaybackUrlRequest>,
    ) -> Result<Response<pb::GetPlaybackUrlResponse>, Status> {
        recordings::get_playback_url(self, req).await
    }

    async fn verify_chain(
        &self,
        req: Request<pb::VerifyChainRequest>,
    ) -> Result<Response<BoxStream<pb::VerifyChainResponse>>, Status> {
        chain::verify_chain(self, req).await
    }

    async fn export_evidence(
        &self,
        req: Request<pb::ExportEvidenceRequest>,
    ) -> Result<Response<BoxStream<pb::ExportEvidenceResponse>>, Status> {
        evidence::export_evidence(self, req).await
    }

    async fn get_evidence_bundle(
        &self,
        req: Request<pb::GetEvidenceBundleRequest>,
    ) -> Result<Response<pb::GetEvidenceBundleResponse>, Status> {
        evidence::get_evidence_bundle(self, req).await
    }

    async fn list_evidence_bundles(
        &self,
        req: Request<pb::ListEvidenceBundlesRequest>,
    ) -> Result<Response<pb::ListEvidenceBundlesResponse>, Status> {
        evidence::list_evidence_bundles(self, req).await
    }

    async fn verify_evidence_bundle(
        &self,
        req: Request<pb::VerifyEvidenceBundleRequest>,
    ) -> Result<Response<pb::VerifyEvidenceBundleResponse>, Status> {
        evidence::verify_evidence_bundle(self, req).await
    }

    async fn register_rendition(
        &self,
        req: Request<pb::RegisterRenditionRequest>,
    ) -> Result<Response<pb::RegisterRenditionResponse>, Status> {
        media::register_rendition(self, req).await
    }

    async fn register_snapshot(
        &self,
        req: Request<pb::RegisterSnapshotRequest>,
    ) -> Result<Response<pb::RegisterSnapshotResponse>, Status> {
        media::register_snapshot(self, req).await
    }

    async fn list_renditions(
        &self,
        req: Request<pb::ListRenditionsRequest>,
    ) -> Result<Response<pb::ListRenditionsResponse>, Status> {
        media::list_renditions(self, req).await
    }

    async fn get_snapshot(
        &self,
        req: Request<pb::GetSnapshotRequest>,
    ) -> Result<Response<pb::GetSnapshotResponse>, Status> {
        media::get_snapshot(self, req).await
    }

    async fn list_snapshots(
        &self,
        req: Request<pb::ListSnapshotsRequest>,
    ) -> Result<Response<pb::ListSnapshotsResponse>, Status> {
        media::list_snapshots(self, req).await
    }

    async fn list_access_log(
        &self,
        req: Request<pb::ListAccessLogRequest>,
    ) -> Result<Response<pb::ListAccessLogResponse>, Status> {
        access_log::list_access_log(self, req).await
    }

    async fn verify_access_log(
        &self,
        req: Request<pb::VerifyAccessLogRequest>,
    ) -> Result<Response<pb::VerifyAccessLogResponse>, Status> {
        access_log::verify_access_log(self, req).await
    }

    async fn get_retention_policy(
        &self,
        req: Request<pb::GetRetentionPolicyRequest>,
    ) -> Result<Response<pb::GetRetentionPolicyResponse>, Status> {
        retention::get_retention_policy(self, req).await
    }

    async fn set_retention_policy(
        &self,
        req: Request<pb::SetRetentionPolicyRequest>,
    ) -> Result<Response<pb::SetRetentionPolicyResponse>, Status> {
        retention::set_retention_policy(self, req).await
    }

    async fn create_legal_hold(
        &self,
        req: Request<pb::CreateLegalHoldRequest>,
    ) -> Result<Response<pb::CreateLegalHoldResponse>, Status> {
        retention::create_legal_hold(self, req).await
    }

    async fn release_legal_hold(
        &self,
        req: Request<pb::ReleaseLegalHoldRequest>,
    ) -> Result<Response<pb::ReleaseLegalHoldResponse>, Status> {
        retention::release_legal_hold(self, req).await
    }

    async fn list_legal_holds(
        &self,
        req: Request<pb::ListLegalHoldsRequest>,
    ) -> Result<Response<pb::ListLegalHoldsResponse>, Status> {
        retention::list_legal_holds(self, req).await
    }

    async fn record_access(
        &self,
        req: Request<pb::RecordAccessRequest>,
    ) -> Result<Response<pb::RecordAccessResponse>, Status> {
        access_log::record_access(self, req).await
    }

    async fn request_footage(
        &self,
        req: Request<pb::RequestFootageRequest>,
    ) -> Result<Response<pb::RequestFootageResponse>, Status> {
        grants::request_footage(self, req).await
    }

    async fn list_footage_grants(
        &self,
        req: Request<pb::ListFootageGrantsRequest>,
    ) -> Result<Response<pb::ListFootageGrantsResponse>, Status> {
        grants::list_footage_grants(self, req).await
    }

    async fn decide_footage_grant(
        &self,
        req: Request<pb::DecideFootageGrantRequest>,
    ) -> Result<Response<pb::DecideFootageGrantResponse>, Status> {
        grants::decide_footage_grant(self, req).await
    }

    async fn fetch_footage_grant(
        &self,
        req: Request<pb::FetchFootageGrantRequest>,
    ) -> Result<Response<BoxStream<pb::FetchFootageGrantResponse>>, Status> {
        grants::fetch_footage_grant(self, req).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
