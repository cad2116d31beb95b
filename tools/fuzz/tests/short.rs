//! The CI's short fuzzing pass: every target, its kept corpus and its regressions (each input
//! that once failed), then mutations, with a fixed seed. `KORDON_FUZZ_RUNS` sets the inputs
//! per target (default 20,000; the long runs are `kordon-fuzz run --all --runs 1000000`).

use std::sync::Mutex;
use std::time::Duration;

use kordon_fuzz::engine::{self, Options, read_dir_files};
use kordon_fuzz::targets::TARGETS;

/// The detectors are process-wide: one target at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

#[test]
fn every_target_survives_a_short_run() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let runs = std::env::var("KORDON_FUZZ_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000u64);
    let crashes = tempfile::tempdir().unwrap();
    let opts = Options {
        runs,
        seed: 20261202,
        max_len: 16 * 1024,
        // Generous: a debug build on a loaded machine.
        timeout: Duration::from_secs(20),
        crash_dir: crashes.path().to_path_buf(),
        progress: false,
    };
    let mut failures = Vec::new();
    for t in TARGETS {
        let dirs = [
            kordon_fuzz::regressions_dir(t.name),
            kordon_fuzz::corpus_dir(t.name),
        ];
        let r = engine::fuzz(t, &dirs, &opts);
        eprintln!(
            "{:<12} {:>6} inputs in {:>5.1} s, {} outcomes",
            r.target,
            r.runs,
            r.elapsed.as_secs_f64(),
            r.outcomes
        );
        assert_eq!(r.runs, runs, "{}: every input ran", t.name);
        if let Some(c) = r.crash {
            failures.push(format!(
                "{}: {} (input of {} bytes: {:?})",
                c.target,
                c.message,
                c.input.len(),
                c.file
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "inputs failed:\n{}",
        failures.join("\n")
    );
}

/// The seeds are real inputs the targets accept, so mutations start deep in each format; a
/// format change that breaks them fails here rather than silently making fuzzing shallow.
#[test]
fn seeds_reach_the_deep_checks() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    for t in TARGETS {
        let mut inputs = (t.seeds)();
        inputs.extend(
            read_dir_files(&kordon_fuzz::corpus_dir(t.name))
                .into_iter()
                .map(|(_, b)| b),
        );
        assert!(!inputs.is_empty(), "{}: no seeds and no corpus", t.name);
        let mut h = (t.setup)();
        for input in &inputs {
            let outcome = engine::run_one(h.as_mut(), input)
                .unwrap_or_else(|panic| panic!("{}: a seed panics: {panic}", t.name));
            assert!(
                outcome.starts_with(t.seeds_reach),
                "{}: a seed's outcome is `{outcome}`, expected `{}…`",
                t.name,
                t.seeds_reach
            );
        }
    }
}
