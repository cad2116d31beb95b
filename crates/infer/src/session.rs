//! Loading ONNX Runtime and the model.
//!
//! The library is loaded once per process (ONNX Runtime allows one environment): from the
//! configured path, else `ORT_DYLIB_PATH`, else the `onnxruntime` wheel in the project venv that
//! `scripts/lib.sh` installs. A requested execution provider that the library lacks (or that fails
//! to register) is logged with `warn!` and the session runs on CPU; [`Loaded::provider`] says what
//! runs.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use ort::environment::Environment;
use ort::ep::{self, ExecutionProvider};
use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;
use sha2::{Digest, Sha256};
use tracing::{info, warn};

use crate::config::{EngineConfig, Provider};
use crate::error::InferError;
use crate::postprocess::BINS;

/// Where the venv's wheel keeps the library, relative to the venv.
const WHEEL_LIB_DIR: &str = "site-packages/onnxruntime/capi";

/// Candidate library paths in the order they are tried.
fn candidates(configured: Option<&Path>) -> Vec<PathBuf> {
    if let Some(p) = configured {
        return vec![p.to_path_buf()];
    }
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) {
        return vec![PathBuf::from(p)];
    }
    // The project venv, as scripts/lib.sh lays it out.
    let venv = std::env::var_os("KORDON_VENV")
        .map(PathBuf::from)
        .or_else(|| {
            let cache = std::env::var_os("KORDON_CACHE")
                .map(PathBuf::from)
                .or_else(|| {
                    std::env::var_os("XDG_CACHE_HOME")
                        .map(|c| PathBuf::from(c).join("kordon"))
                        .or_else(|| {
                            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/kordon"))
                        })
                })?;
            Some(cache.join("venv"))
        });
    let Some(venv) = venv else { return Vec::new() };
    let mut found = Vec::new();
    if let Ok(dirs) = std::fs::read_dir(venv.join("lib")) {
        for d in dirs.flatten() {
            let capi = d.path().join(WHEEL_LIB_DIR);
            if let Ok(files) = std::fs::read_dir(&capi) {
                for f in files.flatten() {
                    let name = f.file_name();
                    if name.to_string_lossy().starts_with("libonnxruntime.so.") {
                        found.push(f.path());
                    }
                }
            }
        }
    }
    found.sort();
    if found.is_empty() {
        found.push(
            venv.join("lib/python3*")
                .join(WHEEL_LIB_DIR)
                .join("libonnxruntime.so.*"),
        );
    }
    found
}

/// The process's ONNX Runtime environment, created on first use.
fn environment(configured: Option<&Path>) -> Result<Environment, InferError> {
    static ENV: Mutex<Option<(PathBuf, Environment)>> = Mutex::new(None);
    let mut slot = ENV.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((loaded, env)) = slot.as_ref() {
        if configured.is_some_and(|c| c != loaded) {
            warn!(loaded = %loaded.display(), "ONNX Runtime is already loaded in this process; ignoring the configured library");
        }
        return Ok(env.clone());
    }
    let tried = candidates(configured);
    let Some(path) = tried.iter().find(|p| p.is_file()).cloned() else {
        let searched = tried
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ");
        return Err(InferError::LibraryNotFound {
            searched: if searched.is_empty() {
                "nothing: HOME is unset".into()
            } else {
                searched
            },
        });
    };
    let env = ort::init_from(&path)
        .map_err(|e| InferError::LibraryLoad {
            path: path.clone(),
            source: Arc::new(e),
        })?
        .with_name("kordon")
        .with_telemetry(false)
        .build()
        .map_err(InferError::runtime("create the environment"))?;
    info!(library = %path.display(), "ONNX Runtime loaded");
    *slot = Some((path, env.clone()));
    Ok(env)
}

/// Where one output level's tensors are, by output index.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LevelOutputs {
    pub stride: u32,
    pub cols: usize,
    pub cells: usize,
    pub scores: usize,
    pub boxes: usize,
}

/// A session ready to run, with what was learnt about the model.
pub(crate) struct Loaded {
    pub session: Session,
    pub provider: &'static str,
    pub input: String,
    pub input_width: u32,
    pub input_height: u32,
    pub classes: usize,
    /// `None` when the batch dimension is symbolic.
    pub fixed_batch: Option<usize>,
    pub levels: Vec<LevelOutputs>,
    pub sha256: [u8; 32],
}

fn dispatch(provider: Provider) -> Option<(ep::ExecutionProviderDispatch, ort::Result<bool>)> {
    match provider {
        Provider::Cpu => None,
        Provider::Cuda => Some((ep::CUDA::default().build(), ep::CUDA::is_available())),
        Provider::TensorRt => Some((
            ep::TensorRT::default().build(),
            ep::TensorRT::is_available(),
        )),
        Provider::OpenVino => Some((
            ep::OpenVINO::default().build(),
            ep::OpenVINO::is_available(),
        )),
    }
}

fn shape_err(reason: String) -> InferError {
    InferError::ModelShape { reason }
}

pub(crate) fn load(cfg: &EngineConfig) -> Result<Loaded, InferError> {
    let env = environment(cfg.library.as_deref())?;
    let bytes = std::fs::read(&cfg.model).map_err(|e| InferError::ModelRead {
        path: cfg.model.clone(),
        source: Arc::new(e),
    })?;
    let sha256: [u8; 32] = Sha256::digest(&bytes).into();

    let builder = || -> Result<_, InferError> {
        Session::builder(&env)
            .map_err(InferError::runtime("create a session builder"))?
            .with_optimization_level(GraphOptimizationLevel::Level3)
            .map_err(|e| InferError::runtime("set the optimisation level")(e.into()))?
            .with_intra_threads(cfg.threads)
            .map_err(|e| InferError::runtime("set the thread count")(e.into()))
    };
    let mut provider = "cpu";
    let mut session = None;
    if let Some((dispatch, available)) = dispatch(cfg.provider) {
        let wanted = cfg.provider.as_str();
        match available {
            Ok(true) => match builder()?.with_execution_providers([dispatch.error_on_failure()]) {
                Ok(mut b) => match b.commit_from_memory(&bytes) {
                    Ok(s) => {
                        provider = wanted;
                        session = Some(s);
                    }
                    Err(e) => {
                        warn!(provider = wanted, error = %e, "execution provider failed to load the model; running on CPU")
                    }
                },
                Err(e) => {
                    warn!(provider = wanted, error = %e, "execution provider failed to register; running on CPU")
                }
            },
            Ok(false) => warn!(
                provider = wanted,
                "the ONNX Runtime library has no such execution provider; running on CPU"
            ),
            Err(e) => {
                warn!(provider = wanted, error = %e, "cannot list execution providers; running on CPU")
            }
        }
    }
    let session = match session {
        Some(s) => s,
        None => builder()?
            .commit_from_memory(&bytes)
            .map_err(InferError::runtime("load the model"))?,
    };

    // Input: [batch, 3, H, W].
    let [input] = session.inputs() else {
        return Err(shape_err(format!(
            "expected one input, found {}",
            session.inputs().len()
        )));
    };
    let dims: Vec<i64> = input
        .dtype()
        .tensor_shape()
        .map(|s| s.to_vec())
        .unwrap_or_default();
    let [batch, 3, h, w] = dims[..] else {
        return Err(shape_err(format!(
            "input shape {dims:?} is not [N, 3, H, W]"
        )));
    };
    if h <= 0 || w <= 0 {
        return Err(shape_err(format!("input shape {dims:?} has no fixed size")));
    }
    let fixed_batch = (batch > 0).then_some(batch as usize);

    // Outputs: [batch, cells, classes] scores and [batch, cells, 4 * BINS] boxes per stride.
    let mut classes = 0usize;
    let mut levels: Vec<LevelOutputs> = Vec::new();
    for (i, out) in session.outputs().iter().enumerate() {
        let d: Vec<i64> = out
            .dtype()
            .tensor_shape()
            .map(|s| s.to_vec())
            .unwrap_or_default();
        let [_, cells, c] = d[..] else {
            return Err(shape_err(format!("output {} has shape {d:?}", out.name())));
        };
        let cells = cells as usize;
        let stride = (1..=64u32)
            .find(|s| (w as usize / *s as usize) * (h as usize / *s as usize) == cells)
            .ok_or_else(|| shape_err(format!("output {} has {cells} cells", out.name())))?;
        let level = match levels.iter_mut().find(|l| l.stride == stride) {
            Some(l) => l,
            None => {
                levels.push(LevelOutputs {
                    stride,
                    cols: w as usize / stride as usize,
                    cells,
                    scores: usize::MAX,
                    boxes: usize::MAX,
                });
                levels.last_mut().expect("just pushed")
            }
        };
        if c as usize == 4 * BINS {
            level.boxes = i;
        } else {
            level.scores = i;
            classes = c as usize;
        }
    }
    levels.sort_by_key(|l| l.stride);
    if levels.is_empty()
        || levels
            .iter()
            .any(|l| l.scores == usize::MAX || l.boxes == usize::MAX)
    {
        return Err(shape_err(
            "outputs are not score/box pairs per stride".into(),
        ));
    }
    if classes == 0 || classes > crate::model::COCO_LABELS.len() {
        return Err(shape_err(format!(
            "{classes} classes; expected at most 80 (COCO)"
        )));
    }
    Ok(Loaded {
        input: input.name().to_string(),
        session,
        provider,
        input_width: w as u32,
        input_height: h as u32,
        classes,
        fixed_batch,
        levels,
        sha256,
    })
}
