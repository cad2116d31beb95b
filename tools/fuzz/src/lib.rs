//! Kordon's fuzzing: every parser that reads bytes from outside (cameras, bundles, tokens,
//! certificates, configuration, resources, HTTP) run on seeded, mutated inputs with three
//! detectors — a panic, a hang, an unbounded allocation. `kordon-fuzz run <target>` runs one
//! target for N inputs; the CI runs a short pass of each (`tests/short.rs`). The kept corpus
//! is `tools/fuzz/corpus/<target>/`; every crash found is kept in
//! `tools/fuzz/regressions/<target>/` and replayed by the tests.

pub mod engine;
pub mod guard;
pub mod targets;

#[global_allocator]
static ALLOCATOR: guard::Guard = guard::Guard;

/// This crate's directory (the corpus and regressions live under it).
pub fn crate_dir() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The kept corpus of `target`.
pub fn corpus_dir(target: &str) -> std::path::PathBuf {
    crate_dir().join("corpus").join(target)
}

/// The inputs that once failed `target`.
pub fn regressions_dir(target: &str) -> std::path::PathBuf {
    crate_dir().join("regressions").join(target)
}
