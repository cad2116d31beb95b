//! What the loaded model is: its identity (SHA-256 of the file), input size, labels and the
//! batch the engine runs it at.

/// The 80 COCO class names, in the model's output order.
pub const COCO_LABELS: [&str; 80] = [
    "person",
    "bicycle",
    "car",
    "motorcycle",
    "airplane",
    "bus",
    "train",
    "truck",
    "boat",
    "traffic light",
    "fire hydrant",
    "stop sign",
    "parking meter",
    "bench",
    "bird",
    "cat",
    "dog",
    "horse",
    "sheep",
    "cow",
    "elephant",
    "bear",
    "zebra",
    "giraffe",
    "backpack",
    "umbrella",
    "handbag",
    "tie",
    "suitcase",
    "frisbee",
    "skis",
    "snowboard",
    "sports ball",
    "kite",
    "baseball bat",
    "baseball glove",
    "skateboard",
    "surfboard",
    "tennis racket",
    "bottle",
    "wine glass",
    "cup",
    "fork",
    "knife",
    "spoon",
    "bowl",
    "banana",
    "apple",
    "sandwich",
    "orange",
    "broccoli",
    "carrot",
    "hot dog",
    "pizza",
    "donut",
    "cake",
    "chair",
    "couch",
    "potted plant",
    "bed",
    "dining table",
    "toilet",
    "tv",
    "laptop",
    "mouse",
    "remote",
    "keyboard",
    "cell phone",
    "microwave",
    "oven",
    "toaster",
    "sink",
    "refrigerator",
    "book",
    "clock",
    "vase",
    "scissors",
    "teddy bear",
    "hair drier",
    "toothbrush",
];

/// The loaded model as the engine runs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelInfo {
    /// File name without extension, e.g. `nanodet-m-416-dynbatch`.
    pub name: String,
    /// SHA-256 of the model file.
    pub sha256: [u8; 32],
    pub input_width: u32,
    pub input_height: u32,
    /// Class names by class id.
    pub labels: Vec<&'static str>,
    /// Frames per session call: the configured `max_batch`, or 1 when the model's batch is fixed.
    pub max_batch: usize,
}

/// One detected object.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Detection {
    /// COCO class id (0 person, 1 bicycle, 2 car, 3 motorcycle, 5 bus, 7 truck, …).
    pub class_id: u16,
    pub label: &'static str,
    /// Class confidence, 0..1.
    pub score: f32,
    /// `x1, y1, x2, y2` normalised to 0..1 in the original frame (letterbox undone).
    pub bbox: [f32; 4],
}

/// The model compiled into the binary: NanoDet-m 416 with a symbolic batch (see
/// `assets/models/README.md`), used when no model file is configured.
pub const EMBEDDED_MODEL: &[u8] =
    include_bytes!("../../../assets/models/nanodet-m-416-dynbatch.onnx");
/// File name of the embedded model once written out for ONNX Runtime.
pub const EMBEDDED_MODEL_NAME: &str = "nanodet-m-416-dynbatch.onnx";

/// Writes [`EMBEDDED_MODEL`] into `dir` (unless the same bytes are already there) and returns
/// the file's path, for ONNX Runtime to load. The error names the path.
pub fn write_embedded(dir: &std::path::Path) -> Result<std::path::PathBuf, String> {
    let path = dir.join(EMBEDDED_MODEL_NAME);
    if std::fs::read(&path).is_ok_and(|b| b == EMBEDDED_MODEL) {
        return Ok(path);
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let tmp = dir.join(format!("{EMBEDDED_MODEL_NAME}.tmp"));
    std::fs::write(&tmp, EMBEDDED_MODEL)
        .and_then(|()| std::fs::rename(&tmp, &path))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(path)
}
