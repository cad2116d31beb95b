//! One camera: the supervisor that keeps it recording, one tokio task per camera.
//!
//! Each session opens the camera's [`Source`] (the acquisition layer, `kordon-media`: retina, or
//! GStreamer for what retina cannot do) and hands every frame to the camera's [`Recorder`]. The
//! supervisor ends a session when the stream errors, ends, or stalls (no frame for
//! `stall_timeout`; the first frame may take [`FIRST_FRAME_GRACE`](kordon_media::config::FIRST_FRAME_GRACE) longer, for connection set-up
//! and the first keyframe), and opens a new one after the acquisition layer's capped exponential
//! [`Backoff`]; a configuration change restarts it at once. On
//! stop it closes the source (TEARDOWN) and the open segment into the spool. Which source and
//! transport a camera uses is in its status.

use std::sync::{Arc, Mutex};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::config::{CameraConfig, IngestConfig};
use crate::metrics;
use crate::recorder::{GapReason, Recorder};
use crate::status::{CameraState, StatusBoard};
use kordon_media::Backoff;
use kordon_media::config::OFFLINE_AFTER_FAILURES;
use kordon_media::source::{self, OpenContext, Source, SourceError};

pub use kordon_media::source::gst::realtime_clock;

/// The hole a failed session leaves: a camera that answered with something unusable is a
/// stream error; one unreachable, gone quiet or ended is a lost stream.
fn gap_reason(e: &SourceError) -> GapReason {
    if e.is_refusal() {
        GapReason::StreamError
    } else {
        GapReason::StreamLost
    }
}

/// Everything a camera's supervisor needs.
pub struct CameraContext {
    pub config: Arc<IngestConfig>,
    pub board: Arc<StatusBoard>,
    pub clock: gstreamer::Clock,
}

enum SessionEnd {
    Shutdown,
    Reconfigured,
    Failed(GapReason, String),
}

/// Runs one camera until `stop` is cancelled. `spec` changes restart the pipeline.
pub async fn supervise(
    ctx: Arc<CameraContext>,
    recorder: Arc<Mutex<Recorder>>,
    mut spec: watch::Receiver<CameraConfig>,
    stop: CancellationToken,
) {
    let mut backoff = Backoff::new(ctx.config.reconnect_initial, ctx.config.reconnect_max);
    let (site, name) = {
        let s = spec.borrow();
        (s.site.clone(), s.name.clone())
    };
    let mut attempt: u64 = 0;
    loop {
        let current = spec.borrow_and_update().clone();
        ctx.board.update(&site, &name, |s| {
            s.set_state(if attempt == 0 {
                CameraState::Starting
            } else {
                CameraState::Reconnecting
            })
        });
        let end = run_session(&ctx, &current, &recorder, &mut spec, &stop).await;
        let (reason, detail) = match &end {
            SessionEnd::Shutdown => (GapReason::IngestRestart, "ingest stopped".to_string()),
            SessionEnd::Reconfigured => (
                GapReason::IngestRestart,
                "camera configuration changed".to_string(),
            ),
            SessionEnd::Failed(r, d) => (*r, d.clone()),
        };
        let recorded = {
            let Ok(mut rec) = recorder.lock() else {
                return;
            };
            let had_segment = rec.last_end_us().is_some();
            if let Err(e) = rec.end_session(reason, &detail) {
                tracing::error!(error = %e, "closing the open segment failed");
            }
            had_segment
        };
        match end {
            SessionEnd::Shutdown => {
                if let Ok(mut rec) = recorder.lock()
                    && let Err(e) = rec.close_open_gap()
                {
                    tracing::error!(error = %e, "recording the final gap failed");
                }
                ctx.board
                    .update(&site, &name, |s| s.set_state(CameraState::Stopped));
                return;
            }
            SessionEnd::Reconfigured => {
                tracing::info!("configuration changed: restarting the stream");
                backoff.reset();
                attempt = 0;
                continue;
            }
            SessionEnd::Failed(_, detail) => {
                attempt += 1;
                metrics::get().reconnects.with_label_values(&[&site]).inc();
                let delay = backoff.next();
                tracing::warn!(error = %detail, retry_in_ms = delay.as_millis() as u64, recorded, "camera stream failed");
                ctx.board.update(&site, &name, |s| {
                    s.reconnects += 1;
                    s.set_error(detail.clone());
                    s.set_state(if attempt >= OFFLINE_AFTER_FAILURES {
                        CameraState::Offline
                    } else {
                        CameraState::Reconnecting
                    });
                });
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = stop.cancelled() => {}
                    _ = spec.changed() => { backoff.reset(); }
                }
                if stop.is_cancelled() {
                    if let Ok(mut rec) = recorder.lock()
                        && let Err(e) = rec.close_open_gap()
                    {
                        tracing::error!(error = %e, "recording the final gap failed");
                    }
                    ctx.board
                        .update(&site, &name, |s| s.set_state(CameraState::Stopped));
                    return;
                }
            }
        }
        // A session that recorded resets the backoff for the next failure.
        if recorded {
            backoff.reset();
        }
    }
}

async fn run_session(
    ctx: &Arc<CameraContext>,
    spec: &CameraConfig,
    recorder: &Arc<Mutex<Recorder>>,
    spec_rx: &mut watch::Receiver<CameraConfig>,
    stop: &CancellationToken,
) -> SessionEnd {
    let open_ctx = OpenContext {
        config: Arc::new(ctx.config.source_config()),
        clock: ctx.clock.clone(),
    };
    let stream = spec.record_stream();
    // Before the first frame, allow for connection set-up and the first keyframe.
    let first_frame_timeout = open_ctx.config.first_frame_timeout();
    tracing::debug!(
        url = %spec.redacted_record_url(),
        source = source::choose(&stream, &open_ctx.config).as_str(),
        "connecting"
    );
    let opened = tokio::select! {
        _ = stop.cancelled() => return SessionEnd::Shutdown,
        changed = spec_rx.changed() => {
            return if changed.is_err() { SessionEnd::Shutdown } else { SessionEnd::Reconfigured };
        }
        opened = tokio::time::timeout(first_frame_timeout, source::open(&stream, &open_ctx)) => opened,
    };
    let mut src: Box<dyn Source> = match opened {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return SessionEnd::Failed(gap_reason(&e), e.to_string()),
        Err(_) => {
            return SessionEnd::Failed(
                GapReason::StreamLost,
                format!(
                    "no answer within {:.0}s of connecting",
                    first_frame_timeout.as_secs_f64()
                ),
            );
        }
    };
    ctx.board.update(&spec.site, &spec.name, |s| {
        s.source = Some(src.kind());
        s.transport = Some(src.transport());
    });
    let mut got_frame = false;
    let end = loop {
        let wait = if got_frame {
            ctx.config.stall_timeout
        } else {
            first_frame_timeout
        };
        let next = tokio::select! {
            _ = stop.cancelled() => break SessionEnd::Shutdown,
            changed = spec_rx.changed() => {
                if changed.is_err() { break SessionEnd::Shutdown; }
                break SessionEnd::Reconfigured;
            }
            next = tokio::time::timeout(wait, src.next()) => next,
        };
        let frame = match next {
            Ok(Ok(frame)) => frame,
            Ok(Err(e)) => break SessionEnd::Failed(gap_reason(&e), e.to_string()),
            Err(_) if got_frame => {
                break SessionEnd::Failed(
                    GapReason::StreamLost,
                    format!("no media for {:.1}s (stream stalled)", wait.as_secs_f64()),
                );
            }
            Err(_) => {
                break SessionEnd::Failed(
                    GapReason::StreamLost,
                    format!("no media within {:.0}s of connecting", wait.as_secs_f64()),
                );
            }
        };
        got_frame = true;
        let recorded = match recorder.lock() {
            Ok(mut rec) => rec.on_frame(frame),
            Err(_) => {
                break SessionEnd::Failed(GapReason::StreamError, "recorder state poisoned".into());
            }
        };
        if let Err(e) = recorded {
            break SessionEnd::Failed(GapReason::StreamError, e.to_string());
        }
    };
    src.close().await;
    end
}
