//! The allocation guard: the process's allocator, which refuses any single allocation above
//! a limit (an input that makes a parser reserve what a length field claims, not what the
//! bytes hold). On such a request it writes the input being run to the crash directory and
//! aborts, naming the size; it also records the largest allocation of each input.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Default limit of one allocation: 256 MiB.
pub const DEFAULT_LIMIT: usize = 256 << 20;

static LIMIT: AtomicUsize = AtomicUsize::new(usize::MAX);
static PEAK: AtomicUsize = AtomicUsize::new(0);
static TRIPPED: AtomicBool = AtomicBool::new(false);
/// The file a refused input is written to, opened ahead (no allocation when it is needed).
static CRASH_FILE: Mutex<Option<(std::fs::File, String)>> = Mutex::new(None);

pub struct Guard;

unsafe impl GlobalAlloc for Guard {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        check(layout.size());
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        check(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        check(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

fn check(size: usize) {
    PEAK.fetch_max(size, Ordering::Relaxed);
    if size > LIMIT.load(Ordering::Relaxed) && !TRIPPED.swap(true, Ordering::SeqCst) {
        tripped(size);
    }
}

#[cold]
fn tripped(size: usize) -> ! {
    // Nothing here may allocate: the input is copied into a file opened ahead.
    let mut wrote = false;
    if let (Ok(input), Ok(mut file)) = (crate::engine::CURRENT.try_lock(), CRASH_FILE.try_lock())
        && let Some((f, _)) = file.as_mut()
    {
        wrote = f.write_all(&input).is_ok();
    }
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(b"UNBOUNDED ALLOCATION: one input asked for ");
    let mut digits = [0u8; 20];
    let mut n = size;
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let _ = err.write_all(&digits[i..]);
    let _ = err.write_all(b" bytes in one allocation");
    if wrote
        && let Ok(file) = CRASH_FILE.try_lock()
        && let Some((_, path)) = file.as_ref()
    {
        let _ = err.write_all(b"; input written to ");
        let _ = err.write_all(path.as_bytes());
    }
    let _ = err.write_all(b"\n");
    std::process::abort();
}

/// Turns the limit on for `target`: a refused input goes to `<crash_dir>/<target>/alloc-input`.
pub fn arm(crash_dir: &Path, target: &str) {
    let dir = crash_dir.join(target);
    let path = dir.join("alloc-input");
    let file = std::fs::create_dir_all(&dir)
        .and_then(|_| std::fs::File::create(&path))
        .ok();
    *CRASH_FILE.lock().unwrap_or_else(|e| e.into_inner()) =
        file.map(|f| (f, path.display().to_string()));
    if LIMIT.load(Ordering::Relaxed) == usize::MAX {
        set_limit(DEFAULT_LIMIT);
    }
}

/// Closes (and removes) the file [`arm`] opened; nothing was refused.
pub fn disarm() {
    if let Some((_, path)) = CRASH_FILE.lock().unwrap_or_else(|e| e.into_inner()).take() {
        let _ = std::fs::remove_file(path);
    }
}

/// The largest single allocation allowed from now on.
pub fn set_limit(bytes: usize) {
    LIMIT.store(bytes, Ordering::SeqCst);
}

pub fn reset_peak() {
    PEAK.store(0, Ordering::Relaxed);
}

/// The largest single allocation since [`reset_peak`].
pub fn peak() -> usize {
    PEAK.load(Ordering::Relaxed)
}
