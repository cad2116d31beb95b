//! The fuzzing loop: seeds from the corpus and from Kordon's own writers, stacked byte-level
//! and dictionary mutations, and three detectors — a panic (caught per input), a hang (a
//! watchdog thread), and an unbounded allocation (the guarding allocator in [`crate::guard`]).
//!
//! Feedback is by outcome: every target describes what it made of an input ("ok: 3 frames",
//! "err: bad box size"); an input whose outcome (digits removed) is new joins the working
//! corpus, so mutations build on inputs that got somewhere new. It is not coverage-guided (the
//! stable toolchain gives no in-process coverage), which is why the seeds are real outputs of
//! Kordon's writers and the dictionaries hold each format's words.

use std::collections::HashSet;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::guard;
use crate::targets::{Harness, Target};

/// How one run goes.
#[derive(Debug, Clone)]
pub struct Options {
    /// Inputs to run (seeds and regressions included).
    pub runs: u64,
    /// The random seed; the same seed and corpus give the same inputs.
    pub seed: u64,
    /// The longest input made by mutation, in bytes.
    pub max_len: usize,
    /// An input that runs longer than this is a hang.
    pub timeout: Duration,
    /// Where a failing input is written.
    pub crash_dir: PathBuf,
    /// Print progress to stderr every few seconds.
    pub progress: bool,
}

/// A failing input.
#[derive(Debug, Clone)]
pub struct Crash {
    pub target: &'static str,
    pub message: String,
    pub input: Vec<u8>,
    /// Where the input was written, if it could be.
    pub file: Option<PathBuf>,
}

/// What a run did.
#[derive(Debug, Clone)]
pub struct Report {
    pub target: &'static str,
    pub runs: u64,
    pub elapsed: Duration,
    /// Inputs kept because their outcome was new.
    pub corpus: usize,
    /// Distinct outcomes seen.
    pub outcomes: usize,
    /// The largest single allocation an input caused, in bytes.
    pub max_allocation: usize,
    pub crash: Option<Crash>,
}

/// The input being run, for the watchdog and the allocation guard to save.
pub(crate) static CURRENT: Mutex<Vec<u8>> = Mutex::new(Vec::new());
/// When the current input started (ms since the process's start + 1), 0 when none runs.
static STARTED_MS: AtomicU64 = AtomicU64::new(0);
static PANIC_MESSAGE: Mutex<String> = Mutex::new(String::new());

fn epoch() -> Instant {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn now_ms() -> u64 {
    epoch().elapsed().as_millis() as u64 + 1
}

/// SplitMix64: small, fast, and reproducible from one seed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x9e37_79b9_7f4a_7c15)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    pub fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }
}

/// Values that break length and offset arithmetic.
const INTERESTING: &[u64] = &[
    0,
    1,
    2,
    7,
    8,
    15,
    16,
    0x7f,
    0x80,
    0xff,
    0x100,
    0x7fff,
    0x8000,
    0xffff,
    0x1_0000,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_ffff,
    0x1_0000_0000,
    0x7fff_ffff_ffff_ffff,
    u64::MAX,
];

/// One mutation of `data`; `other` is another corpus entry to splice with.
fn mutate_once(data: &mut Vec<u8>, other: &[u8], dict: &[&[u8]], rng: &mut Rng, max_len: usize) {
    let len = data.len();
    match rng.below(12) {
        // flip a bit
        0 if len > 0 => {
            let i = rng.below(len);
            data[i] ^= 1 << rng.below(8);
        }
        // a random byte
        1 if len > 0 => {
            let i = rng.below(len);
            data[i] = rng.next_u64() as u8;
        }
        // an interesting integer, 1/2/4/8 bytes, either byte order
        2 | 3 if len > 0 => {
            let width = [1usize, 2, 4, 8][rng.below(4)].min(len);
            let i = rng.below(len - width + 1);
            let mut v = INTERESTING[rng.below(INTERESTING.len())];
            if rng.chance(4) {
                // near the input's own length: sizes that point just past the end
                v = (len as u64)
                    .wrapping_add(rng.below(5) as u64)
                    .wrapping_sub(2);
            }
            let bytes = if rng.chance(2) {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            };
            let src = if rng.chance(2) {
                &bytes[8 - width..]
            } else {
                &bytes[..width]
            };
            data[i..i + width].copy_from_slice(src);
        }
        // insert random bytes
        4 => {
            let n = 1 + rng.below(16);
            let at = rng.below(len + 1);
            let ins: Vec<u8> = (0..n).map(|_| rng.next_u64() as u8).collect();
            data.splice(at..at, ins);
        }
        // delete a range
        5 if len > 1 => {
            let at = rng.below(len);
            let n = 1 + rng.below((len - at).min(64));
            data.drain(at..at + n);
        }
        // duplicate a range elsewhere
        6 if len > 1 => {
            let at = rng.below(len);
            let n = 1 + rng.below((len - at).min(256));
            let chunk = data[at..at + n].to_vec();
            let to = rng.below(len + 1);
            data.splice(to..to, chunk);
        }
        // splice: our head, another input's tail
        7 if !other.is_empty() => {
            let cut = rng.below(len + 1);
            let from = rng.below(other.len());
            data.truncate(cut);
            data.extend_from_slice(&other[from..]);
        }
        // truncate
        8 if len > 0 => {
            data.truncate(rng.below(len));
        }
        // a word of the format, inserted or overwriting
        9 | 10 if !dict.is_empty() => {
            let word = dict[rng.below(dict.len())];
            let at = rng.below(len + 1);
            if rng.chance(2) || at + word.len() > len {
                data.splice(at..at, word.iter().copied());
            } else {
                data[at..at + word.len()].copy_from_slice(word);
            }
        }
        // repeat one byte many times (long tokens, deep nesting)
        _ => {
            let b = if len > 0 {
                data[rng.below(len)]
            } else {
                rng.next_u64() as u8
            };
            let n = 1 + rng.below(512);
            let at = rng.below(len + 1);
            data.splice(at..at, std::iter::repeat_n(b, n));
        }
    }
    data.truncate(max_len);
}

/// A new input from the corpus: one entry with 1 to 8 stacked mutations.
pub fn mutate(corpus: &[Vec<u8>], dict: &[&[u8]], rng: &mut Rng, max_len: usize) -> Vec<u8> {
    let mut data = if corpus.is_empty() {
        Vec::new()
    } else {
        corpus[rng.below(corpus.len())].clone()
    };
    let other: &[u8] = if corpus.is_empty() {
        &[]
    } else {
        &corpus[rng.below(corpus.len())]
    };
    let stack = 1 << rng.below(4);
    for _ in 0..stack {
        mutate_once(&mut data, other, dict, rng, max_len);
    }
    data
}

/// The outcome with digits removed: "ok: 3 frames" and "ok: 4 frames" are the same path.
fn signature(outcome: &str) -> u64 {
    // FNV-1a
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in outcome.bytes().filter(|b| !b.is_ascii_digit()).take(160) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The files of `dir`, sorted by name (missing: none).
pub fn read_dir_files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out: Vec<(PathBuf, Vec<u8>)> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.is_file())
            .filter_map(|p| std::fs::read(&p).ok().map(|b| (p, b)))
            .collect(),
        Err(_) => Vec::new(),
    };
    out.sort();
    out
}

fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if STARTED_MS.load(Ordering::SeqCst) != 0 {
                // A target's panic: keep its message for the report, print nothing.
                let msg = match info.payload().downcast_ref::<&str>() {
                    Some(s) => (*s).to_string(),
                    None => info
                        .payload()
                        .downcast_ref::<String>()
                        .cloned()
                        .unwrap_or_else(|| "(non-text panic)".into()),
                };
                let at = info
                    .location()
                    .map(|l| format!(" at {}:{}", l.file(), l.line()))
                    .unwrap_or_default();
                *PANIC_MESSAGE.lock().unwrap_or_else(|e| e.into_inner()) = format!("{msg}{at}");
            } else {
                previous(info);
            }
        }));
    });
}

/// Starts the watchdog once: an input running past `timeout` is written to `crash_dir` and the
/// process exits with status 70, naming it.
fn start_watchdog(target: &'static str, timeout: Duration, crash_dir: PathBuf) {
    static TIMEOUT_MS: AtomicU64 = AtomicU64::new(0);
    TIMEOUT_MS.store(timeout.as_millis() as u64, Ordering::SeqCst);
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(move || {
        std::thread::Builder::new()
            .name("fuzz-watchdog".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(Duration::from_millis(100));
                    let started = STARTED_MS.load(Ordering::SeqCst);
                    let limit = TIMEOUT_MS.load(Ordering::SeqCst);
                    if started != 0 && now_ms().saturating_sub(started) > limit {
                        let input = CURRENT.lock().unwrap_or_else(|e| e.into_inner()).clone();
                        let file = save(&crash_dir, target, "hang", &input);
                        eprintln!(
                            "HANG: {target}: one input ran longer than {limit} ms; input written \
                             to {}; reproduce with `kordon-fuzz repro {target} <file>`",
                            file.as_deref()
                                .map(|p| p.display().to_string())
                                .unwrap_or_else(|| "(could not write)".into())
                        );
                        std::process::exit(70);
                    }
                }
            })
            .expect("start the watchdog thread");
    });
}

/// Writes a failing input as `<dir>/<target>/<kind>-<sha256 prefix>`.
fn save(dir: &Path, target: &str, kind: &str, input: &[u8]) -> Option<PathBuf> {
    use sha2::Digest;
    let dir = dir.join(target);
    std::fs::create_dir_all(&dir).ok()?;
    let name = format!("{kind}-{}", &hex::encode(sha2::Sha256::digest(input))[..16]);
    let path = dir.join(name);
    std::fs::write(&path, input).ok()?;
    Some(path)
}

/// Runs one input through `harness` under the detectors: the outcome, or the panic's message.
pub fn run_one(harness: &mut dyn Harness, input: &[u8]) -> Result<String, String> {
    install_panic_hook();
    {
        let mut cur = CURRENT.lock().unwrap_or_else(|e| e.into_inner());
        cur.clear();
        cur.extend_from_slice(input);
    }
    guard::reset_peak();
    STARTED_MS.store(now_ms(), Ordering::SeqCst);
    let result = catch_unwind(AssertUnwindSafe(|| harness.run(input)));
    STARTED_MS.store(0, Ordering::SeqCst);
    result
        .map_err(|_| std::mem::take(&mut *PANIC_MESSAGE.lock().unwrap_or_else(|e| e.into_inner())))
}

/// Runs `target` for `opts.runs` inputs: its regressions first, then its seeds and corpus
/// files, then mutations. Stops at the first crash.
pub fn fuzz(target: &Target, corpus_dirs: &[PathBuf], opts: &Options) -> Report {
    let started = Instant::now();
    guard::arm(&opts.crash_dir, target.name);
    start_watchdog(target.name, opts.timeout, opts.crash_dir.clone());
    let mut harness = (target.setup)();
    let mut rng = Rng::new(opts.seed);

    let mut first: Vec<Vec<u8>> = Vec::new();
    for dir in corpus_dirs {
        first.extend(read_dir_files(dir).into_iter().map(|(_, b)| b));
    }
    first.extend((target.seeds)());
    let mut corpus: Vec<Vec<u8>> = Vec::new();
    let mut outcomes: HashSet<u64> = HashSet::new();
    let mut max_allocation = 0usize;
    let mut runs = 0u64;
    let mut last_print = Instant::now();
    let mut queue = first.into_iter();

    while runs < opts.runs {
        let input = match queue.next() {
            Some(seed) => seed,
            None => mutate(&corpus, target.dict, &mut rng, opts.max_len),
        };
        runs += 1;
        match run_one(harness.as_mut(), &input) {
            Ok(outcome) => {
                max_allocation = max_allocation.max(guard::peak());
                if outcomes.insert(signature(&outcome)) || corpus.is_empty() {
                    if corpus.len() < 4096 {
                        corpus.push(input);
                    }
                } else if corpus.len() < 64 && rng.chance(64) {
                    // a little variety early on
                    corpus.push(input);
                }
            }
            Err(message) => {
                guard::disarm();
                let file = save(&opts.crash_dir, target.name, "crash", &input);
                return Report {
                    target: target.name,
                    runs,
                    elapsed: started.elapsed(),
                    corpus: corpus.len(),
                    outcomes: outcomes.len(),
                    max_allocation,
                    crash: Some(Crash {
                        target: target.name,
                        message,
                        input,
                        file,
                    }),
                };
            }
        }
        if opts.progress && last_print.elapsed() >= Duration::from_secs(10) {
            last_print = Instant::now();
            let secs = started.elapsed().as_secs_f64();
            eprintln!(
                "{}: {runs} inputs ({:.0}/s), corpus {}, outcomes {}",
                target.name,
                runs as f64 / secs,
                corpus.len(),
                outcomes.len()
            );
        }
    }
    guard::disarm();
    Report {
        target: target.name,
        runs,
        elapsed: started.elapsed(),
        corpus: corpus.len(),
        outcomes: outcomes.len(),
        max_allocation,
        crash: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_makes_the_same_inputs() {
        let corpus = vec![b"hello world".to_vec(), vec![0u8; 40]];
        let dict: &[&[u8]] = &[b"\r\n", b"moof"];
        let a: Vec<Vec<u8>> = {
            let mut r = Rng::new(7);
            (0..50)
                .map(|_| mutate(&corpus, dict, &mut r, 100))
                .collect()
        };
        let b: Vec<Vec<u8>> = {
            let mut r = Rng::new(7);
            (0..50)
                .map(|_| mutate(&corpus, dict, &mut r, 100))
                .collect()
        };
        assert_eq!(a, b);
        assert!(a.iter().all(|m| m.len() <= 100));
        assert!(a.iter().any(|m| m != &corpus[0] && m != &corpus[1]));
    }

    #[test]
    fn outcomes_differing_only_in_numbers_are_one() {
        assert_eq!(signature("ok: 3 frames"), signature("ok: 41 frames"));
        assert_ne!(signature("ok: 3 frames"), signature("err: 3 frames"));
    }
}
