//! The transcode service as storage's maker of viewer copies ([`ViewerCopies`]), over the
//! generated `kordon.transcode.v1` client.
//!
//! One viewer copy is one export job: `SubmitJob` with the bundle's audit context and the
//! request id `<bundle id>/<camera>` (so a retry, or a storage restart during an export,
//! re-attaches to the job rather than encoding again), then `WatchJob` until the job is
//! terminal, progress forwarded. What a job's terminal state means here:
//! - succeeded with one output: the copy (its key, size and SHA-256 as transcode computed them;
//!   [`crate::evidence`] re-hashes the object before packing it);
//! - failed: the export fails naming the job and transcode's error (a retry of the export with
//!   the same request id re-attaches to the same failed job, so it fails the same way: export
//!   with a new request id to try again);
//! - cancelled: the export fails naming the job.
//!
//! Transport trouble is retried, since every call here is safe to repeat: `SubmitJob` for up
//! to [`SUBMIT_PATIENCE`], and a watch stream that breaks is re-opened (the job goes on in
//! transcode meanwhile) until [`WATCH_PATIENCE`] passes without a message. Refusals are not
//! retried: they are named in the error ([`status_error`]).

use std::time::{Duration, Instant};

use futures::StreamExt;
use kordon_proto::common::v1 as common;
use kordon_proto::transcode::v1 as tpb;
use kordon_proto::transcode::v1::transcode_service_client::TranscodeServiceClient;
use kordon_runtime::client::{self, AuthedChannel, ServiceClientConfig};
use tokio_util::sync::CancellationToken;

use crate::StorageError;
use crate::service::Progress;
use crate::viewer::{ViewerCopies, ViewerCopy, ViewerCopyRequest};

/// How long SubmitJob is retried while transcode cannot be reached.
pub const SUBMIT_PATIENCE: Duration = Duration::from_secs(60);
/// How long a job may be followed without a message (a broken stream is re-opened meanwhile)
/// before the export gives up on transcode. Progress comes at least on every state change and
/// every few seconds while running, so this is long silence.
pub const WATCH_PATIENCE: Duration = Duration::from_secs(300);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Viewer copies made by a transcode service.
#[derive(Clone)]
pub struct TranscodeViewerCopies {
    client: TranscodeServiceClient<AuthedChannel>,
    url: String,
}

impl std::fmt::Debug for TranscodeViewerCopies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TranscodeViewerCopies")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl TranscodeViewerCopies {
    /// A client of the transcode service at `url` with `config`'s certificates (its own `url`
    /// is ignored, so standalone can pass its own listener). Connects lazily: transcode may
    /// start after storage. Errors name the `transcode.*` key.
    pub fn connect(config: &ServiceClientConfig, url: &str) -> Result<Self, StorageError> {
        let channel = client::connect_lazy(&config.options(url)).map_err(|e| match e {
            kordon_runtime::RuntimeError::Config { key, message } => {
                let key = match key.as_str() {
                    "--server" => "transcode.url",
                    "--ca-file" => "transcode.ca_file",
                    "--cert-file" => "transcode.cert_file",
                    "--key-file" => "transcode.key_file",
                    _ => "transcode",
                };
                StorageError::config(key, message)
            }
            other => StorageError::config("transcode", other.to_string()),
        })?;
        Ok(Self {
            client: TranscodeServiceClient::new(channel),
            url: url.to_string(),
        })
    }

    async fn submit(&self, req: &ViewerCopyRequest) -> Result<tpb::Job, StorageError> {
        let spec = export_spec(req)?;
        let started = Instant::now();
        let mut backoff = Duration::from_millis(250);
        loop {
            let mut c = self.client.clone();
            let call = c
                .submit_job(tpb::SubmitJobRequest {
                    spec: Some(spec.clone()),
                    priority: tpb::JobPriority::Normal as i32,
                    audit: Some(common::AuditContext {
                        reason: req.reason.clone(),
                        case_id: req.case_id.clone(),
                        recipient: req.recipient.clone(),
                    }),
                    request_id: req.request_id.clone(),
                })
                .await;
            match call {
                Ok(r) => {
                    return r.into_inner().job.ok_or_else(|| {
                        StorageError::Internal("transcode answered SubmitJob without a job".into())
                    });
                }
                Err(s) if retryable(&s) && started.elapsed() < SUBMIT_PATIENCE => {
                    tracing::debug!(transcode = %self.url, error = %s, "SubmitJob: retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
                Err(s) => return Err(status_error(&s, &self.url, req, "submitting the job")),
            }
        }
    }

    /// Follows job `id` until it is terminal.
    async fn watch(
        &self,
        req: &ViewerCopyRequest,
        id: &str,
        progress: Progress<'_>,
        cancel: &CancellationToken,
    ) -> Result<tpb::Job, StorageError> {
        let mut last_heard = Instant::now();
        let mut backoff = Duration::from_millis(250);
        let mut last_error;
        loop {
            let mut c = self.client.clone();
            let opened = c
                .watch_job(tpb::WatchJobRequest {
                    job_id: id.to_string(),
                })
                .await;
            match opened {
                Ok(stream) => {
                    let mut stream = stream.into_inner();
                    loop {
                        let next = tokio::select! {
                            _ = cancel.cancelled() => return Err(cancelled(req, id)),
                            next = stream.next() => next,
                        };
                        match next {
                            Some(Ok(msg)) => {
                                last_heard = Instant::now();
                                backoff = Duration::from_millis(250);
                                let Some(job) = msg.job else { continue };
                                if is_terminal(job.state) {
                                    return Ok(job);
                                }
                                if let Some(p) = &job.progress {
                                    progress(p.done_units, p.total_units, &p.stage);
                                }
                            }
                            Some(Err(s)) if retryable(&s) => {
                                last_error = s.message().to_string();
                                break;
                            }
                            Some(Err(s)) => {
                                return Err(status_error(&s, &self.url, req, "following the job"));
                            }
                            // The stream ends only after a terminal message; an early end is a
                            // transcode restart: follow the job again.
                            None => {
                                last_error = "the watch stream ended early".into();
                                break;
                            }
                        }
                    }
                }
                Err(s) if retryable(&s) => last_error = s.message().to_string(),
                Err(s) => return Err(status_error(&s, &self.url, req, "following the job")),
            }
            if last_heard.elapsed() > WATCH_PATIENCE {
                return Err(StorageError::Unavailable(format!(
                    "the transcode service ({}) has not reported on job {id} (the viewer copy \
                     of {}/{}) for {}: {last_error}; export again with the same request id to \
                     re-attach to the job",
                    self.url,
                    req.site,
                    req.camera,
                    humantime::format_duration(WATCH_PATIENCE)
                )));
            }
            tokio::select! {
                _ = cancel.cancelled() => return Err(cancelled(req, id)),
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }
}

#[tonic::async_trait]
impl ViewerCopies for TranscodeViewerCopies {
    async fn make(
        &self,
        req: &ViewerCopyRequest,
        progress: Progress<'_>,
        cancel: &CancellationToken,
    ) -> Result<ViewerCopy, StorageError> {
        progress(0, 0, "submitting the transcode job");
        let job = self.submit(req).await?;
        check_is_ours(&job, req)?;
        tracing::info!(bundle = %req.bundle_id, site = %req.site, camera = %req.camera,
                       job = %job.id, "viewer copy: transcode job submitted");
        let job = if is_terminal(job.state) {
            job
        } else {
            self.watch(req, &job.id, progress, cancel).await?
        };
        finished(&job, req)
    }
}

/// The export spec of a viewer-copy request.
pub fn export_spec(req: &ViewerCopyRequest) -> Result<tpb::JobSpec, StorageError> {
    let spec = tpb::ExportSpec {
        camera: Some(common::CameraRef {
            site: req.site.clone(),
            camera: req.camera.clone(),
        }),
        range: Some(common::TimeRange {
            start: Some(kordon_proto::time::timestamp_from_micros(req.from_us)),
            end: Some(kordon_proto::time::timestamp_from_micros(req.to_us)),
        }),
        burn_in_timestamp: req.burn_in_timestamp,
        time_zone: req.time_zone.clone(),
        privacy_masks: req
            .privacy_masks
            .iter()
            .map(|m| tpb::PrivacyMask {
                area: Some(common::Polygon {
                    points: m.iter().map(|p| common::Point { x: p.x, y: p.y }).collect(),
                }),
            })
            .collect(),
        // The encoder's quality default, H.264: a copy for viewing, not for size.
        target_bitrate_bps: 0,
        codec: common::VideoCodec::Unspecified as i32,
        evidence_bundle_id: req.bundle_id.clone(),
        blur_people: req.blur_people,
        preset: tpb::EncoderPreset::Unspecified as i32,
    };
    Ok(tpb::JobSpec {
        kind: Some(tpb::job_spec::Kind::Export(spec)),
    })
}

fn is_terminal(state: i32) -> bool {
    matches!(
        tpb::JobState::try_from(state),
        Ok(tpb::JobState::Succeeded | tpb::JobState::Failed | tpb::JobState::Cancelled)
    )
}

/// The job a request id answered is an export of the request's camera (a request id is ours
/// alone, but an answer about something else must not end up in a bundle).
fn check_is_ours(job: &tpb::Job, req: &ViewerCopyRequest) -> Result<(), StorageError> {
    let camera = match job.spec.as_ref().and_then(|s| s.kind.as_ref()) {
        Some(tpb::job_spec::Kind::Export(e)) => e.camera.as_ref(),
        _ => None,
    };
    match camera {
        Some(c) if c.site == req.site && c.camera == req.camera => Ok(()),
        _ => Err(StorageError::Internal(format!(
            "transcode answered request id `{}` with job {}, which is not an export of {}/{}",
            req.request_id, job.id, req.site, req.camera
        ))),
    }
}

/// The copy a terminal job made, or why there is none.
pub fn finished(job: &tpb::Job, req: &ViewerCopyRequest) -> Result<ViewerCopy, StorageError> {
    let what = format!(
        "the viewer copy of {}/{} (transcode job {})",
        req.site, req.camera, job.id
    );
    match tpb::JobState::try_from(job.state) {
        Ok(tpb::JobState::Succeeded) => {}
        Ok(tpb::JobState::Failed) => {
            let error = if job.error.trim().is_empty() {
                "no reason given"
            } else {
                job.error.trim()
            };
            return Err(StorageError::FailedPrecondition(format!(
                "{what} failed: {error}. A retry with the same request id re-attaches to this \
                 job; export with a new request id to try again"
            )));
        }
        Ok(tpb::JobState::Cancelled) => {
            return Err(StorageError::FailedPrecondition(format!(
                "{what} was cancelled in transcode; export with a new request id to make it \
                 again"
            )));
        }
        _ => {
            return Err(StorageError::Internal(format!(
                "{what} is not finished (state {})",
                job.state
            )));
        }
    }
    let [out] = job.outputs.as_slice() else {
        return Err(StorageError::FailedPrecondition(format!(
            "{what} succeeded with {} outputs; a viewer copy is one file",
            job.outputs.len()
        )));
    };
    let sha256 = <[u8; 32]>::try_from(out.sha256.as_slice()).map_err(|_| {
        StorageError::FailedPrecondition(format!(
            "{what}: its output has a {}-byte SHA-256",
            out.sha256.len()
        ))
    })?;
    Ok(ViewerCopy {
        job_id: job.id.clone(),
        encoder: job.encoder.clone(),
        object_key: out.object_key.clone(),
        size_bytes: out.size_bytes,
        sha256,
    })
}

/// Transport trouble, worth another try: the call is idempotent.
fn retryable(s: &tonic::Status) -> bool {
    matches!(
        s.code(),
        tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Unknown
    )
}

fn cancelled(req: &ViewerCopyRequest, id: &str) -> StorageError {
    StorageError::Cancelled(format!(
        "export cancelled while transcode job {id} was making the viewer copy of {}/{}: the job \
         goes on, and exporting again with the same request id re-attaches to it",
        req.site, req.camera
    ))
}

/// What a refusal by transcode means for the export, named.
fn status_error(
    s: &tonic::Status,
    url: &str,
    req: &ViewerCopyRequest,
    doing: &str,
) -> StorageError {
    let what = format!("the viewer copy of {}/{}", req.site, req.camera);
    match s.code() {
        tonic::Code::InvalidArgument => StorageError::invalid(format!(
            "rendering: transcode refused {what}: {}",
            s.message()
        )),
        tonic::Code::Unauthenticated | tonic::Code::PermissionDenied => {
            StorageError::FailedPrecondition(format!(
                "transcode ({url}) refused storage's credentials while {doing} ({what}): {}; \
                 check storage.transcode.cert_file and the roles of storage's certificate",
                s.message()
            ))
        }
        tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Unknown => {
            StorageError::Unavailable(format!(
                "the transcode service ({url}) cannot be reached while {doing} ({what}): {}; \
                 export again with the same request id later",
                s.message()
            ))
        }
        code => StorageError::FailedPrecondition(format!(
            "transcode refused {what} while {doing}: {code:?}: {}",
            s.message()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::viewer::Point;

    fn req() -> ViewerCopyRequest {
        ViewerCopyRequest {
            bundle_id: "b1".into(),
            site: "burgas".into(),
            camera: "gate-3".into(),
            from_us: 1_000_000,
            to_us: 61_000_000,
            burn_in_timestamp: true,
            time_zone: "Europe/Sofia".into(),
            privacy_masks: vec![vec![
                Point { x: 0.0, y: 0.0 },
                Point { x: 0.5, y: 0.0 },
                Point { x: 0.5, y: 0.5 },
            ]],
            blur_people: false,
            reason: "case review".into(),
            case_id: "BG-1".into(),
            recipient: "court".into(),
            request_id: "b1/gate-3".into(),
        }
    }

    fn job(state: tpb::JobState, outputs: Vec<tpb::JobOutput>) -> tpb::Job {
        tpb::Job {
            id: "job-7".into(),
            spec: Some(export_spec(&req()).unwrap()),
            state: state as i32,
            outputs,
            encoder: "x264enc".into(),
            ..Default::default()
        }
    }

    fn output() -> tpb::JobOutput {
        tpb::JobOutput {
            object_key: "burgas/gate-3/exports/b1.mp4".into(),
            content_type: "video/mp4".into(),
            size_bytes: 1234,
            sha256: vec![9; 32],
            ..Default::default()
        }
    }

    #[test]
    fn the_spec_carries_every_field_of_the_request() {
        let spec = export_spec(&req()).unwrap();
        let Some(tpb::job_spec::Kind::Export(e)) = spec.kind else {
            panic!("not an export")
        };
        assert_eq!(e.camera.unwrap().camera, "gate-3");
        assert!(e.burn_in_timestamp);
        assert_eq!(e.time_zone, "Europe/Sofia");
        assert_eq!(e.privacy_masks.len(), 1);
        assert_eq!(e.privacy_masks[0].area.as_ref().unwrap().points.len(), 3);
        assert_eq!(e.evidence_bundle_id, "b1");
        assert_eq!((e.target_bitrate_bps, e.codec), (0, 0));
        let r = e.range.unwrap();
        assert_eq!(r.start.unwrap().seconds, 1);
        assert_eq!(r.end.unwrap().seconds, 61);
    }

    /// `blur_people` travels to the job's spec (a copy never claims blurring it did not ask for).
    #[test]
    fn blur_people_is_asked_of_transcode() {
        let mut r = req();
        r.blur_people = true;
        match export_spec(&r).unwrap().kind {
            Some(tpb::job_spec::Kind::Export(e)) => assert!(e.blur_people),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn terminal_jobs_become_copies_or_named_errors() {
        let copy = finished(&job(tpb::JobState::Succeeded, vec![output()]), &req()).unwrap();
        assert_eq!(copy.job_id, "job-7");
        assert_eq!(copy.encoder, "x264enc");
        assert_eq!(copy.size_bytes, 1234);
        assert_eq!(copy.sha256, [9; 32]);

        let mut failed = job(tpb::JobState::Failed, vec![]);
        failed.error = "decoder error in segment 12".into();
        let e = finished(&failed, &req()).unwrap_err().to_string();
        assert!(
            e.contains("burgas/gate-3 (transcode job job-7) failed"),
            "{e}"
        );
        assert!(e.contains("decoder error in segment 12"), "{e}");
        let e = finished(&job(tpb::JobState::Cancelled, vec![]), &req()).unwrap_err();
        assert!(e.to_string().contains("was cancelled"), "{e}");
        let e = finished(&job(tpb::JobState::Succeeded, vec![]), &req()).unwrap_err();
        assert!(e.to_string().contains("0 outputs"), "{e}");
        let mut short = output();
        short.sha256 = vec![1; 4];
        let e = finished(&job(tpb::JobState::Succeeded, vec![short]), &req()).unwrap_err();
        assert!(e.to_string().contains("4-byte SHA-256"), "{e}");
        assert!(finished(&job(tpb::JobState::Running, vec![]), &req()).is_err());
    }

    #[test]
    fn an_answer_about_another_camera_is_refused() {
        assert!(check_is_ours(&job(tpb::JobState::Queued, vec![]), &req()).is_ok());
        let mut other = req();
        other.camera = "gate-4".into();
        assert!(check_is_ours(&job(tpb::JobState::Queued, vec![]), &other).is_err());
        let rendition = tpb::Job {
            spec: Some(tpb::JobSpec {
                kind: Some(tpb::job_spec::Kind::Rendition(Default::default())),
            }),
            ..Default::default()
        };
        assert!(check_is_ours(&rendition, &req()).is_err());
    }

    #[test]
    fn refusals_are_named_and_keep_their_meaning() {
        let r = req();
        let e = status_error(
            &tonic::Status::invalid_argument("time_zone: unknown zone"),
            "http://t",
            &r,
            "submitting the job",
        );
        assert!(matches!(&e, StorageError::InvalidArgument(m)
            if m.contains("unknown zone") && m.starts_with("rendering:")));
        let e = status_error(&tonic::Status::unavailable("down"), "http://t", &r, "x");
        assert!(matches!(e, StorageError::Unavailable(_)));
        let e = status_error(&tonic::Status::permission_denied("no"), "http://t", &r, "x");
        assert!(e.to_string().contains("storage.transcode.cert_file"), "{e}");
        let e = status_error(&tonic::Status::not_found("nothing"), "http://t", &r, "x");
        assert!(matches!(e, StorageError::FailedPrecondition(_)));
    }
}
