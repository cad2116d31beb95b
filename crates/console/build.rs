//! Embeds the web console's built files (`console/dist`, made by `scripts/console.sh` with Vite)
//! into the binary: one table entry per file, with its gzip copy (`<file>.gz`, written by the
//! same script) when there is one.
//!
//! `KORDON_CONSOLE_DIST` points at another build. Without a build the table is empty and the
//! console answers with a page saying how to build it: a binary built by plain `cargo build`
//! still works, it only lacks the console.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn collect(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect(&path, out)?;
        } else {
            out.push(path);
        }
    }
    Ok(())
}

fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()).unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-env-changed=KORDON_CONSOLE_DIST");
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let project = manifest.join("../../console");
    let dist = match std::env::var_os("KORDON_CONSOLE_DIST") {
        Some(d) => PathBuf::from(d),
        None => project.join("dist"),
    };
    let mut table = String::from("pub static ASSETS: &[Asset] = &[\n");
    if dist.join("index.html").is_file() {
        println!("cargo:rerun-if-changed={}", dist.display());
        let mut files = Vec::new();
        collect(&dist, &mut files)?;
        files.sort();
        for file in &files {
            if file.extension().is_some_and(|e| e == "gz") {
                continue;
            }
            let rel = file
                .strip_prefix(&dist)?
                .to_string_lossy()
                .replace('\\', "/");
            let gz = PathBuf::from(format!("{}.gz", file.display()));
            let gzip = if gz.is_file() {
                format!("Some(include_bytes!({:?}))", gz.canonicalize()?)
            } else {
                "None".to_string()
            };
            writeln!(
                table,
                "    Asset {{ path: {:?}, content_type: {:?}, body: include_bytes!({:?}), gzip: {gzip} }},",
                format!("/{rel}"),
                content_type(file),
                file.canonicalize()?,
            )?;
        }
    } else {
        // Rerun once a build appears (creating dist/ changes the project directory).
        if project.is_dir() {
            println!("cargo:rerun-if-changed={}", project.display());
        }
        println!(
            "cargo:warning=the web console is not built ({} has no index.html): this binary \
             serves a page saying how to build it (bash scripts/console.sh)",
            dist.display()
        );
    }
    table.push_str("];\n");
    let out = PathBuf::from(std::env::var("OUT_DIR")?).join("assets.rs");
    std::fs::write(out, table)?;
    Ok(())
}
