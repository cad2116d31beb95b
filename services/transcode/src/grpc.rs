//! `kordon.transcode.v1.TranscodeService` over a [`Transcode`] process.
//!
//! Submitting and cancelling need `Permission::Transcode` (operator, admin or a Kordon service)
//! on the camera's site; reading jobs and the status need `ViewStatus`. Lists show only the
//! sites the caller may see.

use std::sync::Arc;
use std::time::Duration;

use kordon_proto::common::v1 as common;
use kordon_proto::time::timestamp_from_micros;
use kordon_proto::transcode::v1 as pb;
use kordon_proto::transcode::v1::transcode_service_server::TranscodeService;
use kordon_runtime::auth::{self, Permission, SiteScope};
use kordon_runtime::watch::WatchLimit;
use sha2::{Digest, Sha256};
use tonic::codegen::BoxStream;
use tonic::{Request, Response, Status};

use crate::service::Transcode;
use crate::spec;
use crate::store::{JobFilter, JobRow, OutputRow};

/// How often a watched job is looked at (the proto promises at most two messages a second).
const WATCH_POLL: Duration = Duration::from_millis(500);
/// Most WatchJob streams one process serves at once; more are RESOURCE_EXHAUSTED.
pub const MAX_WATCHES: usize = kordon_runtime::watch::DEFAULT_MAX_WATCHES;

/// The gRPC implementation.
#[derive(Clone)]
pub struct TranscodeApi {
    t: Arc<Transcode>,
    watches: WatchLimit,
}

impl TranscodeApi {
    pub fn new(t: Arc<Transcode>) -> Self {
        TranscodeApi {
            t,
            watches: WatchLimit::new("WatchJob", MAX_WATCHES),
        }
    }

    async fn job_pb(&self, row: &JobRow) -> Result<pb::Job, Status> {
        let outputs = self.t.store.outputs(&row.id).await?;
        Ok(job_pb(row, &outputs))
    }

    async fn readable(&self, req_who: &auth::Principal, id: &str) -> Result<JobRow, Status> {
        let row = self
            .t
            .store
            .get(id)
            .await?
            .ok_or_else(|| Status::not_found(format!("no job `{id}`")))?;
        auth::authorize(req_who, &row.site, Permission::ViewStatus)?;
        Ok(row)
    }
}

fn ts(us: i64) -> Option<prost_types::Timestamp> {
    (us > 0).then(|| timestamp_from_micros(us))
}

/// SHA-256 over the outputs' digests in order.
pub fn outputs_digest(outputs: &[OutputRow]) -> Vec<u8> {
    if outputs.is_empty() {
        return Vec::new();
    }
    let mut h = Sha256::new();
    for o in outputs {
        h.update(o.sha256);
    }
    h.finalize().to_vec()
}

pub fn job_pb(row: &JobRow, outputs: &[OutputRow]) -> pb::Job {
    let fraction = if row.total_units > 0 {
        row.done_units as f64 / row.total_units as f64
    } else {
        0.0
    };
    pb::Job {
        id: row.id.clone(),
        spec: Some(row.spec.clone()),
        priority: row.priority as i32,
        state: row.state as i32,
        progress: Some(common::Progress {
            fraction,
            done_units: row.done_units,
            total_units: row.total_units,
            stage: row.stage.clone(),
        }),
        submitted_by: row.submitted_by.clone(),
        audit: Some(row.audit.clone()),
        created_at: ts(row.created_us),
        started_at: ts(row.started_us),
        finished_at: ts(row.finished_us),
        outputs: outputs
            .iter()
            .map(|o| pb::JobOutput {
                object_key: o.object_key.clone(),
                content_type: o.content_type.clone(),
                size_bytes: o.size_bytes,
                sha256: o.sha256.to_vec(),
                range: Some(common::TimeRange {
                    start: Some(timestamp_from_micros(o.start_us)),
                    end: Some(timestamp_from_micros(o.end_us)),
                }),
                source_sequence: o.source_sequence,
            })
            .collect(),
        encoder: row.encoder.clone(),
        error: row.error.clone(),
        frames: row.frames,
        speed: row.speed,
        outputs_sha256: outputs_digest(outputs),
        attempts: row.attempts,
    }
}

#[tonic::async_trait]
impl TranscodeService for TranscodeApi {
    async fn submit_job(
        &self,
        req: Request<pb::SubmitJobRequest>,
    ) -> Result<Response<pb::SubmitJobResponse>, Status> {
        let who = auth::principal(&req)?.clone();
        let r = req.into_inner();
        auth::authorize(&who, &spec::site(&r.spec)?, Permission::Transcode)?;
        let work = spec::parse(&r.spec)?;
        let audit = spec::audit(&r.audit)?;
        if r.request_id.len() > 200 {
            return Err(Status::invalid_argument("request_id: at most 200 bytes"));
        }
        let priority = pb::JobPriority::try_from(r.priority).map_err(|_| {
            Status::invalid_argument(format!("priority: unknown value {}", r.priority))
        })?;
        let (row, _) = self
            .t
            .submit(
                &work,
                r.spec.unwrap_or_default(),
                priority,
                audit,
                &who.to_string(),
                &r.request_id,
            )
            .await?;
        Ok(Response::new(pb::SubmitJobResponse {
            job: Some(self.job_pb(&row).await?),
        }))
    }

    async fn get_job(
        &self,
        req: Request<pb::GetJobRequest>,
    ) -> Result<Response<pb::GetJobResponse>, Status> {
        let who = auth::principal(&req)?.clone();
        let row = self.readable(&who, &req.get_ref().job_id).await?;
        Ok(Response::new(pb::GetJobResponse {
            job: Some(self.job_pb(&row).await?),
        }))
    }

    async fn list_jobs(
        &self,
        req: Request<pb::ListJobsRequest>,
    ) -> Result<Response<pb::ListJobsResponse>, Status> {
        let who = auth::principal(&req)?.clone();
        let r = req.into_inner();
        let mut states = Vec::new();
        for s in &r.states {
            states.push(
                pb::JobState::try_from(*s)
                    .map_err(|_| Status::invalid_argument(format!("states: unknown value {s}")))?,
            );
        }
        let kind = match pb::JobKind::try_from(r.kind) {
            Ok(pb::JobKind::Unspecified) => None,
            Ok(k) => Some(k),
            Err(_) => {
                return Err(Status::invalid_argument(format!(
                    "kind: unknown value {}",
                    r.kind
                )));
            }
        };
        let camera = match &r.camera {
            Some(c) => {
                auth::authorize(&who, &c.site, Permission::ViewStatus)?;
                Some((c.site.clone(), c.camera.clone()))
            }
            None => None,
        };
        let sites = match who.scope(Permission::ViewStatus) {
            SiteScope::All => None,
            SiteScope::Sites(s) => Some(s.into_iter().collect()),
        };
        let page = r.page.unwrap_or_default();
        let (rows, next) = self
            .t
            .store
            .list(
                &JobFilter {
                    states,
                    kind,
                    camera,
                    sites,
                },
                &page.page_token,
                page.page_size,
            )
            .await?;
        let mut jobs = Vec::with_capacity(rows.len());
        for row in &rows {
            jobs.push(self.job_pb(row).await?);
        }
        Ok(Response::new(pb::ListJobsResponse {
            jobs,
            page: Some(common::PageResponse {
                next_page_token: next,
            }),
        }))
    }

    async fn watch_job(
        &self,
        req: Request<pb::WatchJobRequest>,
    ) -> Result<Response<BoxStream<pb::WatchJobResponse>>, Status> {
        let who = auth::principal(&req)?.clone();
        let id = req.into_inner().job_id;
        let first = self.readable(&who, &id).await?;
        let permit = self.watches.try_acquire()?;
        let api = self.clone();
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::spawn(async move {
            let _permit = permit;
            let mut last: Option<pb::Job> = None;
            let mut row = first;
            loop {
                let job = match api.job_pb(&row).await {
                    Ok(j) => j,
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                };
                let terminal = matches!(
                    row.state,
                    pb::JobState::Succeeded | pb::JobState::Failed | pb::JobState::Cancelled
                );
                if last.as_ref() != Some(&job) {
                    if tx
                        .send(Ok(pb::WatchJobResponse {
                            job: Some(job.clone()),
                        }))
                        .await
                        .is_err()
                    {
                        return;
                    }
                    last = Some(job);
                }
                if terminal {
                    return;
                }
                tokio::select! {
                    _ = tx.closed() => return,
                    _ = tokio::time::sleep(WATCH_POLL) => {}
                }
                row = match api.t.store.get(&id).await {
                    Ok(Some(r)) => r,
                    Ok(None) => {
                        let _ = tx
                            .send(Err(Status::not_found(format!("job `{id}` was removed"))))
                            .await;
                        return;
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e.into())).await;
                        return;
                    }
                };
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn cancel_job(
        &self,
        req: Request<pb::CancelJobRequest>,
    ) -> Result<Response<pb::CancelJobResponse>, Status> {
        let who = auth::principal(&req)?.clone();
        let id = req.into_inner().job_id;
        let row = self
            .t
            .store
            .get(&id)
            .await?
            .ok_or_else(|| Status::not_found(format!("no job `{id}`")))?;
        auth::authorize(&who, &row.site, Permission::Transcode)?;
        let row = self
            .t
            .store
            .cancel(&id, kordon_objects::time::now_micros())
            .await?;
        tracing::info!(job = %id, by = %who, "job cancelled");
        Ok(Response::new(pb::CancelJobResponse {
            job: Some(self.job_pb(&row).await?),
        }))
    }

    async fn get_status(
        &self,
        req: Request<pb::GetStatusRequest>,
    ) -> Result<Response<pb::GetStatusResponse>, Status> {
        let who = auth::principal(&req)?;
        if who.scope(Permission::ViewStatus) == SiteScope::Sites(Default::default()) {
            return Err(Status::permission_denied(format!(
                "{who} may not view status on any site"
            )));
        }
        let (encoders, decoders) = self.t.codecs.to_proto();
        let counts = self.t.store.counts().await?;
        let n = |s: pb::JobState| counts.get(&(s as i32)).copied().unwrap_or(0) as u32;
        let (loaded, why) = self.t.detector_state();
        Ok(Response::new(pb::GetStatusResponse {
            encoders,
            decoders,
            workers: self.t.config.workers,
            running: self.t.running(),
            queued: n(pb::JobState::Queued),
            automatic_thumbnails: self.t.config.thumbnails.automatic,
            person_detector: loaded,
            person_detector_error: why,
        }))
    }
}
