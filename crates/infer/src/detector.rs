//! [`Detector`]: one ONNX Runtime session with its pre- and post-processing, run synchronously
//! on a batch of frames. The [`crate::Engine`] owns one on its inference thread; benchmarks and
//! tests may drive one directly.

use std::path::Path;

use ort::value::TensorRef;

use crate::config::EngineConfig;
use crate::error::InferError;
use crate::image::Image;
use crate::model::{COCO_LABELS, Detection, ModelInfo};
use crate::postprocess::{BINS, Candidate, Level, decode, nms};
use crate::preprocess::{Letterbox, letterbox_into};
use crate::session::{Loaded, load};

/// The model, its session and reusable buffers. Not `Sync`: one caller at a time.
pub struct Detector {
    loaded: Loaded,
    info: ModelInfo,
    score_threshold: f32,
    nms_iou: f32,
    /// The NCHW input of `info.max_batch` samples, reused across calls.
    input: Vec<f32>,
    candidates: Vec<Candidate>,
}

impl Detector {
    /// Loads ONNX Runtime (once per process) and the model. `cfg` is validated first.
    pub fn new(cfg: &EngineConfig) -> Result<Detector, InferError> {
        cfg.validate()?;
        let loaded = load(cfg)?;
        let max_batch = match loaded.fixed_batch {
            Some(b) => b.min(cfg.max_batch),
            None => cfg.max_batch,
        };
        let info = ModelInfo {
            name: model_name(&cfg.model),
            sha256: loaded.sha256,
            input_width: loaded.input_width,
            input_height: loaded.input_height,
            labels: COCO_LABELS[..loaded.classes].to_vec(),
            max_batch,
        };
        let sample = 3 * info.input_width as usize * info.input_height as usize;
        Ok(Detector {
            input: vec![0.0; sample * max_batch],
            loaded,
            info,
            score_threshold: cfg.score_threshold,
            nms_iou: cfg.nms_iou,
            candidates: Vec::new(),
        })
    }

    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    /// The execution provider the session runs on (`cpu` after a fallback).
    pub fn provider(&self) -> &'static str {
        self.loaded.provider
    }

    /// Detects objects in each image; runs `info().max_batch` images per session call. Every image
    /// is validated before anything runs.
    pub fn detect_batch(
        &mut self,
        images: &[Image<'_>],
    ) -> Result<Vec<Vec<Detection>>, InferError> {
        for img in images {
            img.validate()?;
        }
        let mut out = Vec::with_capacity(images.len());
        for chunk in images.chunks(self.info.max_batch) {
            self.run(chunk, &mut out)?;
        }
        Ok(out)
    }

    fn run(
        &mut self,
        images: &[Image<'_>],
        out: &mut Vec<Vec<Detection>>,
    ) -> Result<(), InferError> {
        let (w, h) = (self.info.input_width, self.info.input_height);
        let sample = 3 * w as usize * h as usize;
        let n = images.len();
        let boxes: Vec<Letterbox> = images
            .iter()
            .zip(self.input.chunks_exact_mut(sample))
            .map(|(img, dst)| letterbox_into(img, w, h, dst))
            .collect();
        let tensor =
            TensorRef::from_array_view(([n, 3, h as usize, w as usize], &self.input[..n * sample]))
                .map_err(InferError::runtime("create the input tensor"))?;
        let outputs = self
            .loaded
            .session
            .run(ort::inputs![self.loaded.input.as_str() => tensor])
            .map_err(InferError::runtime("run the model"))?;

        let classes = self.loaded.classes;
        let mut views = Vec::with_capacity(self.loaded.levels.len());
        for lv in &self.loaded.levels {
            let (_, scores) = outputs[lv.scores]
                .try_extract_tensor::<f32>()
                .map_err(InferError::runtime("read the class scores"))?;
            let (_, regs) = outputs[lv.boxes]
                .try_extract_tensor::<f32>()
                .map_err(InferError::runtime("read the box logits"))?;
            if scores.len() != n * lv.cells * classes || regs.len() != n * lv.cells * 4 * BINS {
                return Err(InferError::ModelShape {
                    reason: format!(
                        "batch of {n} gave {} scores and {} box logits at stride {}",
                        scores.len(),
                        regs.len(),
                        lv.stride
                    ),
                });
            }
            views.push((lv, scores, regs));
        }
        for (i, lb) in boxes.iter().enumerate() {
            let levels: Vec<Level<'_>> = views
                .iter()
                .map(|(lv, scores, regs)| {
                    let (s, b) = (lv.cells * classes, lv.cells * 4 * BINS);
                    Level {
                        stride: lv.stride,
                        cols: lv.cols,
                        classes,
                        scores: &scores[i * s..(i + 1) * s],
                        boxes: &regs[i * b..(i + 1) * b],
                    }
                })
                .collect();
            self.candidates.clear();
            decode(&levels, self.score_threshold, &mut self.candidates);
            let kept = nms(std::mem::take(&mut self.candidates), self.nms_iou);
            out.push(
                kept.iter()
                    .map(|c| Detection {
                        class_id: c.class_id,
                        label: COCO_LABELS[c.class_id as usize],
                        score: c.score,
                        bbox: lb.unmap(c.bbox),
                    })
                    .collect(),
            );
        }
        Ok(())
    }
}

fn model_name(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}
