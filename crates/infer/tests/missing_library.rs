//! A missing ONNX Runtime library is a clear error that says how to get one. (A process of its
//! own: ONNX Runtime is loaded once per process.)

mod support;

use kordon_infer::{Detector, EngineConfig, InferError};

#[test]
fn a_missing_library_names_ort_dylib_path_and_the_setup() {
    let cfg = EngineConfig {
        library: Some("/nonexistent/libonnxruntime.so.1.32.0".into()),
        ..support::config()
    };
    let err = match Detector::new(&cfg) {
        Err(e) => e,
        Ok(_) => panic!("loaded a library that does not exist"),
    };
    assert!(matches!(err, InferError::LibraryNotFound { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("/nonexistent/libonnxruntime.so.1.32.0"),
        "{msg}"
    );
    assert!(msg.contains("ORT_DYLIB_PATH"), "{msg}");
    assert!(msg.contains("install_python_tools"), "{msg}");
}
