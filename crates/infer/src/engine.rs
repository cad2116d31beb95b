//! [`Engine`]: the process's one inference queue.
//!
//! Callers on any thread or task hand frames to [`Engine::detect`]; a dedicated OS thread (not a
//! tokio worker: a session call blocks for tens of milliseconds) takes the first waiting frame,
//! then collects more until it holds `max_batch` or `max_wait` has passed, runs them as one batch
//! and answers each caller through its own oneshot channel. Frames from many cameras therefore
//! share session calls. The queue is bounded: a frame arriving at a full queue is refused at once
//! with [`InferError::QueueFull`] and counted, never waited for. The thread ends when the last
//! clone of the engine is dropped.

use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;
use tracing::{error, info};

use crate::config::EngineConfig;
use crate::detector::Detector;
use crate::error::InferError;
use crate::image::OwnedImage;
use crate::metrics;
use crate::model::{Detection, ModelInfo};

struct Job {
    image: OwnedImage,
    reply: oneshot::Sender<Result<Vec<Detection>, InferError>>,
}

struct Inner {
    queue: SyncSender<Job>,
    info: ModelInfo,
    provider: &'static str,
}

/// A handle on the inference queue; cheap to clone, every clone feeds the same thread.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

impl Engine {
    /// Validates `cfg`, loads the model on a new inference thread and returns once it is ready
    /// (blocking: call it at start-up or from `spawn_blocking`).
    pub fn start(cfg: EngineConfig) -> Result<Engine, InferError> {
        cfg.validate()?;
        let (queue, jobs) = mpsc::sync_channel::<Job>(cfg.queue);
        let (ready_tx, ready_rx) = mpsc::channel();
        let max_wait = cfg.max_wait;
        std::thread::Builder::new()
            .name("kordon-infer".into())
            .spawn(move || {
                let detector = match Detector::new(&cfg) {
                    Ok(d) => d,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok((detector.info().clone(), detector.provider())));
                serve(detector, jobs, max_wait);
            })
            .map_err(|_| InferError::Stopped)?;
        let (info, provider) = ready_rx.recv().map_err(|_| InferError::Stopped)??;
        info!(
            model = %info.name,
            provider,
            max_batch = info.max_batch,
            "object detector ready"
        );
        Ok(Engine {
            inner: Arc::new(Inner {
                queue,
                info,
                provider,
            }),
        })
    }

    /// Detects objects in one frame. Returns at once with [`InferError::QueueFull`] when the queue
    /// is full and with [`InferError::BadImage`] for an inconsistent frame.
    pub async fn detect(&self, image: OwnedImage) -> Result<Vec<Detection>, InferError> {
        image.view().validate()?;
        let (reply, answer) = oneshot::channel();
        match self.inner.queue.try_send(Job { image, reply }) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                metrics::get()
                    .drops
                    .with_label_values(&[self.inner.provider])
                    .inc();
                return Err(InferError::QueueFull);
            }
            Err(TrySendError::Disconnected(_)) => return Err(InferError::Stopped),
        }
        answer.await.map_err(|_| InferError::Stopped)?
    }

    pub fn info(&self) -> &ModelInfo {
        &self.inner.info
    }

    /// The execution provider that actually runs (`cpu` after a fallback).
    pub fn provider(&self) -> &str {
        self.inner.provider
    }
}

/// The inference thread's loop: gather a batch, run it, answer; until every sender is gone.
fn serve(mut detector: Detector, jobs: Receiver<Job>, max_wait: Duration) {
    let max_batch = detector.info().max_batch;
    let provider = detector.provider();
    let m = metrics::get();
    let mut batch: Vec<Job> = Vec::with_capacity(max_batch);
    while let Ok(first) = jobs.recv() {
        batch.push(first);
        let deadline = Instant::now() + max_wait;
        while batch.len() < max_batch {
            // Take what is already queued without waiting, then wait out the deadline.
            match jobs.try_recv() {
                Ok(job) => {
                    batch.push(job);
                    continue;
                }
                Err(mpsc::TryRecvError::Disconnected) => break,
                Err(mpsc::TryRecvError::Empty) => {}
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match jobs.recv_timeout(left) {
                Ok(job) => batch.push(job),
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
            }
        }
        let started = Instant::now();
        let images: Vec<_> = batch.iter().map(|j| j.image.view()).collect();
        let result = detector.detect_batch(&images);
        m.inference
            .with_label_values(&[provider])
            .observe(started.elapsed().as_secs_f64());
        m.batch_size
            .with_label_values(&[provider])
            .observe(batch.len() as f64);
        match result {
            Ok(all) => {
                m.frames
                    .with_label_values(&[provider])
                    .inc_by(batch.len() as u64);
                for (job, dets) in batch.drain(..).zip(all) {
                    let _ = job.reply.send(Ok(dets));
                }
            }
            Err(e) => {
                error!(error = %e, frames = batch.len(), "object detection failed");
                for job in batch.drain(..) {
                    let _ = job.reply.send(Err(e.clone()));
                }
            }
        }
    }
}
