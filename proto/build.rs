//! Compiles every `.proto` under `kordon/` once, for the whole workspace.
//!
//! Paths are relative to this crate so the build never depends on where the checkout lives.

use std::path::{Path, PathBuf};

fn collect(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "proto") {
            out.push(path);
        }
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut protos = Vec::new();
    collect(Path::new("kordon"), &mut protos)?;
    protos.sort();
    println!("cargo:rerun-if-changed=kordon");
    for p in &protos {
        println!("cargo:rerun-if-changed={}", p.display());
    }
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    tonic_prost_build::configure()
        .file_descriptor_set_path(out_dir.join("kordon_descriptor.bin"))
        .generate_default_stubs(true)
        // Secrets: Debug is written by hand (redacted), so no log line can print them.
        .skip_debug(["kordon.common.v1.RtspCredentials"])
        .compile_protos(&protos, &[PathBuf::from(".")])?;
    Ok(())
}
