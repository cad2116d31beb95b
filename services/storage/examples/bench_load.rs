//! Storage under load: cameras registering segments as ingest does, and people playing and
//! listing footage, against a storage service in a process of its own whose memory is sampled.
//! Not a test: it prints numbers, and exits non-zero when any call failed or registration
//! fell behind.
//!
//! ```text
//! eval "$(bash scripts/services.sh env)"        # PostgreSQL (KORDON_TEST_POSTGRES_URL)
//! cargo run --release -p kordon-storage --example bench_load -- \
//!     --backend sqlite --cameras 500 --clients 50 --minutes 10
//! cargo run --release -p kordon-storage --example bench_load -- \
//!     --backend postgres --cameras 500 --clients 50 --minutes 10
//! cargo run --release -p kordon-storage --example bench_load -- --minutes 1 --cameras 50  # a check
//! ```
//!
//! - **The service.** The example runs itself again as `bench_load serve`, which starts storage
//!   from this crate as `kordon storage` does — `Storage::open` on the default configuration
//!   (SQLite in the data directory, or the `database_url` given; objects as local files under
//!   `<data>/media`, the standalone default), retention sweeps, the agreements watch, the gRPC
//!   server of `kordon_runtime` (authentication, limits, health, admin port) and the playback
//!   HTTP server — with the development identity on loopback. Its RSS is read from
//!   `/proc/<pid>/status` every `--rss-every` seconds. PostgreSQL gets a fresh database per run
//!   (`CREATE DATABASE`, dropped afterwards) on `KORDON_TEST_POSTGRES_URL` or `--postgres-url`.
//! - **Cameras.** Each registers one 6-second segment every 6 s, the cameras staggered evenly
//!   over the 6 s, through ingest's path: the object is written with `put_immutable` to the
//!   object store (which storage checks for and sizes at registration), then `RegisterSegment`
//!   is called. Segments continue one another in time from the wall clock at the start. Each is
//!   a real fragmented MP4 made by ffmpeg at start-up (320x240 H.264, ftyp+moov then
//!   moof/mdat), made unique by a trailing `free` box. Cameras share one gRPC connection per
//!   50 (one per ingest replica). A camera that falls behind catches up, as a spool drains.
//! - **Clients.** Half are players: `GetPlaybackUrl` for the last 10 minutes of a camera, the
//!   HLS playlist, then the init section and the newest segment by the playlist's byte ranges
//!   (what hls.js fetches first). Half list: `ListSegments` and `ListRecordings` of a camera,
//!   `GetSegment` and its media URL, `GetChainHead`, `ListAccessLog` and `ListRecordings` of
//!   the whole site (first page). Each waits `--think-ms` between rounds; each has its own
//!   connections. Every footage read carries an audit context (and is logged by storage).
//!
//! Output: a progress line every 30 s; then per call the count, errors, p50/p90/p99/max;
//! registrations achieved against intended; storage RSS at start, end, max, per minute, and its
//! slope over the second half of the run.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use kordon_objects::ObjectStore;
use kordon_proto::common::v1 as common;
use kordon_proto::storage::v1 as pb;
use kordon_proto::storage::v1::storage_service_client::StorageServiceClient;
use kordon_proto::time::timestamp_from_micros;
use rand::Rng;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

const SITE: &str = "load";
const SEGMENT_US: i64 = 6_000_000;
const SEGMENT: Duration = Duration::from_secs(6);
/// Cameras per gRPC connection: one ingest replica's share.
const CAMERAS_PER_INGEST: usize = 50;
/// How far back players play and listers list.
const WINDOW_US: i64 = 10 * 60 * 1_000_000;
/// A call that takes longer is an error.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
const PROGRESS_EVERY: Duration = Duration::from_secs(30);
/// Error messages printed at the end.
const FIRST_ERRORS: usize = 10;

type Error = Box<dyn std::error::Error + Send + Sync>;

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    kordon_runtime::install_crypto_provider();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("bench_load: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    if argv.first().map(String::as_str) == Some("serve") {
        return match rt.block_on(serve(&argv[1..])) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("bench_load serve: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let args = match Args::parse(&argv) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("bench_load: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match rt.block_on(run(args)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("bench_load: {e}");
            ExitCode::FAILURE
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Arguments
// ---------------------------------------------------------------------------------------------

const USAGE: &str = "usage: bench_load [--backend sqlite|postgres] [--cameras N] [--clients N] \
[--minutes M] [--think-ms MS] [--rss-every S] [--postgres-url URL] [--dir DIR]
  --backend     index database (default sqlite; postgres needs KORDON_TEST_POSTGRES_URL or --postgres-url)
  --cameras     cameras registering one segment per 6 s each (default 500)
  --clients     concurrent clients, half playback and half list (default 50)
  --minutes     length of the run, may be fractional (default 10)
  --think-ms    pause of each client between rounds (default 1000; 0: back to back)
  --rss-every   seconds between samples of storage's RSS (default 2)
  --dir         working directory, kept afterwards (default: a temporary one, removed)";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Debug)]
struct Args {
    backend: Backend,
    cameras: usize,
    clients: usize,
    duration: Duration,
    think: Duration,
    rss_every: Duration,
    postgres_url: Option<String>,
    dir: Option<PathBuf>,
}

impl Args {
    fn parse(argv: &[String]) -> Result<Args, String> {
        let mut a = Args {
            backend: Backend::Sqlite,
            cameras: 500,
            clients: 50,
            duration: Duration::from_secs(600),
            think: Duration::from_millis(1000),
            rss_every: Duration::from_secs(2),
            postgres_url: std::env::var("KORDON_TEST_POSTGRES_URL")
                .ok()
                .filter(|u| !u.is_empty()),
            dir: None,
        };
        let mut it = argv.iter();
        while let Some(flag) = it.next() {
            if flag == "-h" || flag == "--help" {
                return Err("help".into());
            }
            let value = it
                .next()
                .ok_or_else(|| format!("{flag}: a value is missing"))?;
            let num = |what: &str| -> Result<f64, String> {
                value
                    .parse::<f64>()
                    .ok()
                    .filter(|v| v.is_finite() && *v >= 0.0)
                    .ok_or_else(|| format!("{what}: `{value}` is not a number"))
            };
            match flag.as_str() {
                "--backend" => {
                    a.backend = match value.as_str() {
                        "sqlite" => Backend::Sqlite,
                        "postgres" | "postgresql" => Backend::Postgres,
                        _ => return Err(format!("--backend: `{value}`: sqlite or postgres")),
                    }
                }
                "--cameras" => a.cameras = num(flag)? as usize,
                "--clients" => a.clients = num(flag)? as usize,
                "--minutes" => a.duration = Duration::from_secs_f64(num(flag)? * 60.0),
                "--think-ms" => a.think = Duration::from_secs_f64(num(flag)? / 1000.0),
                "--rss-every" => a.rss_every = Duration::from_secs_f64(num(flag)?),
                "--postgres-url" => a.postgres_url = Some(value.clone()),
                "--dir" => a.dir = Some(PathBuf::from(value)),
                _ => return Err(format!("unknown flag `{flag}`")),
            }
        }
        if a.cameras == 0 || a.duration.is_zero() || a.rss_every.is_zero() {
            return Err("--cameras, --minutes and --rss-every must be more than 0".into());
        }
        if a.backend == Backend::Postgres && a.postgres_url.is_none() {
            return Err("--backend postgres: set KORDON_TEST_POSTGRES_URL \
                 (eval \"$(bash scripts/services.sh env)\") or --postgres-url"
                .into());
        }
        Ok(a)
    }
}

// ---------------------------------------------------------------------------------------------
// `serve`: storage as `kordon storage` starts it
// ---------------------------------------------------------------------------------------------

/// `serve DATA_DIR DATABASE_URL|-`: prints `READY grpc=ADDR http=ADDR` once listening; drains
/// and exits on SIGTERM or when its stdin closes (the bench ended or died).
async fn serve(args: &[String]) -> Result<(), Error> {
    use kordon_runtime::config::{AuthConfig, CommonConfig, LogConfig};
    let [data_dir, database_url] = args else {
        return Err("usage: bench_load serve DATA_DIR DATABASE_URL|-".into());
    };
    let common = CommonConfig {
        grpc_listen: "127.0.0.1:0".parse()?,
        admin_listen: "127.0.0.1:0".parse()?,
        data_dir: PathBuf::from(data_dir),
        log: LogConfig::default(),
        tls: None,
        auth: AuthConfig::default(),
        dev_identity: true,
    };
    let _telemetry = kordon_runtime::telemetry::init(kordon_storage::NAME, &common.log)?;
    let shutdown = kordon_runtime::shutdown::Shutdown::install();
    {
        let shutdown = shutdown.clone();
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
            shutdown.cancel();
        });
    }
    // Bound first so that the playback URLs name the real port.
    let http_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let config = kordon_storage::StorageConfig {
        database_url: (database_url != "-").then(|| database_url.clone()),
        http_listen: http_listener.local_addr()?,
        ..Default::default()
    };
    let storage = kordon_storage::Storage::open(&config, &common.data_dir).await?;
    tokio::spawn(
        storage
            .clone()
            .run_retention(shutdown.clone().cancelled_owned()),
    );
    let watch = tokio::spawn(kordon_storage::agreements::watch(
        storage.clone(),
        shutdown.clone(),
    ));
    let http = tokio::spawn(kordon_storage::serve_http(
        storage.clone(),
        http_listener,
        shutdown.clone().cancelled_owned(),
    ));
    let grpc = kordon_runtime::server::GrpcServer::new(kordon_storage::NAME, &common)?
        .add_service(kordon_storage::grpc_service(storage.clone()))
        .bind(common.grpc_listen)
        .await?;
    let readiness = kordon_runtime::admin::Readiness::new();
    let admin =
        kordon_runtime::admin::bind(common.admin_listen, readiness.clone(), shutdown.clone())
            .await?;
    println!(
        "READY grpc={} http={}",
        grpc.local_addr(),
        config.http_listen
    );
    let served = tokio::try_join!(grpc.serve(readiness, shutdown.clone()), admin);
    shutdown.cancel();
    http.await??;
    watch.await?;
    storage.index().close().await;
    served?;
    Ok(())
}

/// The storage process: its addresses, pid, and the pipe whose closing stops it.
struct Child {
    process: tokio::process::Child,
    pid: u32,
    grpc: String,
    http: String,
}

async fn start_storage(
    work: &Path,
    data: &Path,
    database_url: Option<&str>,
) -> Result<Child, Error> {
    use tokio::io::AsyncBufReadExt;
    let log = std::fs::File::create(work.join("storage.log"))?;
    let mut process = tokio::process::Command::new(std::env::current_exe()?)
        .arg("serve")
        .arg(data)
        .arg(database_url.unwrap_or("-"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()?;
    let pid = process.id().ok_or("storage exited at once")?;
    let stdout = process.stdout.take().ok_or("no stdout")?;
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(120), lines.next_line())
        .await
        .map_err(|_| "storage did not start in 120 s")??
        .ok_or_else(|| {
            format!(
                "storage exited before listening; see {}",
                work.join("storage.log").display()
            )
        })?;
    let field = |name: &str| {
        line.split_whitespace()
            .find_map(|f| f.strip_prefix(name))
            .map(str::to_string)
            .ok_or_else(|| format!("unexpected line from storage: {line}"))
    };
    Ok(Child {
        pid,
        grpc: field("grpc=")?,
        http: field("http=")?,
        process,
    })
}

impl Child {
    /// Closes its stdin (a graceful drain) and waits for it to exit.
    async fn stop(mut self) -> Result<(), Error> {
        drop(self.process.stdin.take());
        match tokio::time::timeout(Duration::from_secs(60), self.process.wait()).await {
            Ok(status) => {
                let status = status?;
                if status.success() {
                    Ok(())
                } else {
                    Err(format!("storage exited with {status}").into())
                }
            }
            Err(_) => {
                let _ = self.process.kill().await;
                Err("storage did not stop within 60 s of its shutdown".into())
            }
        }
    }
}

/// A fresh database on the PostgreSQL server of `url`: (its URL, the admin URL).
async fn create_database(url: &str) -> Result<(String, String), Error> {
    let name = format!("kordon_load_{}", uuid::Uuid::new_v4().simple());
    let admin = sqlx::PgPool::connect(url).await?;
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&admin)
        .await?;
    admin.close().await;
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (url, String::new()),
    };
    let (server, _db) = base
        .rsplit_once('/')
        .filter(|(s, _)| s.contains("//") && !s.ends_with('/'))
        .ok_or("the PostgreSQL URL must name a database (postgres://USER@HOST:PORT/DB)")?;
    Ok((format!("{server}/{name}{query}"), name))
}

async fn drop_database(url: &str, name: &str) {
    if let Ok(admin) = sqlx::PgPool::connect(url).await {
        if let Err(e) = sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
        )))
        .execute(&admin)
        .await
        {
            eprintln!("could not drop database {name}: {e}");
        }
        admin.close().await;
    }
}

// ---------------------------------------------------------------------------------------------
// Measurements
// ---------------------------------------------------------------------------------------------

#[derive(Default)]
struct CallStats {
    /// Latencies of the successful calls, in microseconds.
    micros: Vec<u32>,
    errors: u64,
}

#[derive(Default)]
struct Recorder {
    calls: Mutex<BTreeMap<&'static str, CallStats>>,
    first_errors: Mutex<Vec<String>>,
    errors: AtomicU64,
}

impl Recorder {
    fn ok(&self, call: &'static str, took: Duration) {
        let us = u32::try_from(took.as_micros()).unwrap_or(u32::MAX);
        if let Ok(mut calls) = self.calls.lock() {
            calls.entry(call).or_default().micros.push(us);
        }
    }

    fn error(&self, call: &'static str, message: String) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut calls) = self.calls.lock() {
            calls.entry(call).or_default().errors += 1;
        }
        if let Ok(mut first) = self.first_errors.lock()
            && first.len() < FIRST_ERRORS
        {
            first.push(format!("{call}: {message}"));
        }
    }

    /// Times `f`; records its latency, or its error.
    async fn time<T, E: std::fmt::Display>(
        &self,
        call: &'static str,
        f: impl Future<Output = Result<T, E>>,
    ) -> Option<T> {
        let started = Instant::now();
        match tokio::time::timeout(CALL_TIMEOUT, f).await {
            Ok(Ok(v)) => {
                self.ok(call, started.elapsed());
                Some(v)
            }
            Ok(Err(e)) => {
                self.error(call, e.to_string());
                None
            }
            Err(_) => {
                self.error(call, format!("no answer within {CALL_TIMEOUT:?}"));
                None
            }
        }
    }

    fn count(&self) -> u64 {
        self.calls
            .lock()
            .map(|c| c.values().map(|s| s.micros.len() as u64 + s.errors).sum())
            .unwrap_or(0)
    }
}

/// What the cameras have registered so far, for the clients to read.
struct Cameras {
    names: Vec<String>,
    registered: Vec<AtomicU64>,
    first_start: Vec<AtomicI64>,
    last_end: Vec<AtomicI64>,
}

impl Cameras {
    fn new(n: usize) -> Self {
        Cameras {
            names: (0..n).map(|i| format!("cam-{i:04}")).collect(),
            registered: (0..n).map(|_| AtomicU64::new(0)).collect(),
            first_start: (0..n).map(|_| AtomicI64::new(0)).collect(),
            last_end: (0..n).map(|_| AtomicI64::new(0)).collect(),
        }
    }

    /// A random camera with at least one segment: (index, segments, first start, last end).
    fn pick(&self) -> Option<(usize, u64, i64, i64)> {
        let mut rng = rand::thread_rng();
        for _ in 0..32 {
            let i = rng.gen_range(0..self.names.len());
            let n = self.registered[i].load(Ordering::Acquire);
            if n > 0 {
                return Some((
                    i,
                    n,
                    self.first_start[i].load(Ordering::Acquire),
                    self.last_end[i].load(Ordering::Acquire),
                ));
            }
        }
        None
    }

    fn total(&self) -> u64 {
        self.registered
            .iter()
            .map(|r| r.load(Ordering::Relaxed))
            .sum()
    }
}

/// Samples of a process's resident set: (seconds since start, KiB).
#[derive(Default)]
struct Rss {
    samples: Mutex<Vec<(f64, u64)>>,
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

impl Rss {
    fn last_mib(&self) -> f64 {
        self.samples
            .lock()
            .ok()
            .and_then(|s| s.last().map(|(_, k)| *k as f64 / 1024.0))
            .unwrap_or(0.0)
    }
}

// ---------------------------------------------------------------------------------------------
// The load
// ---------------------------------------------------------------------------------------------

struct Load {
    objects: Arc<dyn ObjectStore>,
    segment: Segment,
    cameras: Cameras,
    recorder: Recorder,
    stop: CancellationToken,
    started: Instant,
    deadline: Instant,
    nonce: u64,
}

fn audit() -> Option<common::AuditContext> {
    Some(common::AuditContext {
        reason: "storage load benchmark".into(),
        case_id: "LOAD-1".into(),
        recipient: String::new(),
    })
}

fn camera_ref(name: &str) -> Option<common::CameraRef> {
    Some(common::CameraRef {
        site: SITE.into(),
        camera: name.into(),
    })
}

fn range(from_us: i64, to_us: Option<i64>) -> Option<common::TimeRange> {
    Some(common::TimeRange {
        start: Some(timestamp_from_micros(from_us)),
        end: to_us.map(timestamp_from_micros),
    })
}

fn request<T>(msg: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.set_timeout(CALL_TIMEOUT);
    r
}

/// A real fMP4 segment (init section, then fragments) that each registration copies and makes
/// unique with a trailing `free` box.
struct Segment {
    bytes: Vec<u8>,
    init_size: u64,
}

impl Segment {
    /// 6 s of 320x240 25 fps H.264 with a keyframe every second, cut by ffmpeg's HLS muxer as
    /// fMP4: the init section followed by the fragments is what ingest writes.
    fn make(dir: &Path) -> Result<Segment, Error> {
        let dir = dir.join("ffmpeg");
        std::fs::create_dir_all(&dir)?;
        let status = std::process::Command::new("ffmpeg")
            .current_dir(&dir)
            .args(["-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi"])
            .args(["-i", "testsrc=size=320x240:rate=25", "-t", "6"])
            .args(["-c:v", "libx264", "-g", "25", "-pix_fmt", "yuv420p"])
            .args(["-f", "hls", "-hls_segment_type", "fmp4"])
            .args(["-hls_playlist_type", "vod", "-hls_time", "6"])
            .args(["-hls_fmp4_init_filename", "init.mp4"])
            .args(["-hls_segment_filename", "frag%d.m4s", "ffmpeg.m3u8"])
            .status()
            .map_err(|e| format!("ffmpeg (needed for the segment object): {e}"))?;
        if !status.success() {
            return Err("ffmpeg failed to make the segment object".into());
        }
        let mut bytes = std::fs::read(dir.join("init.mp4"))?;
        let init_size = bytes.len() as u64;
        bytes.extend(std::fs::read(dir.join("frag0.m4s"))?);
        Ok(Segment { bytes, init_size })
    }

    fn unique(&self, nonce: u64, camera: usize, n: u64) -> Bytes {
        let mut b = Vec::with_capacity(self.bytes.len() + 32);
        b.extend_from_slice(&self.bytes);
        b.extend_from_slice(&32u32.to_be_bytes());
        b.extend_from_slice(b"free");
        b.extend_from_slice(&nonce.to_be_bytes());
        b.extend_from_slice(&(camera as u64).to_be_bytes());
        b.extend_from_slice(&n.to_be_bytes());
        Bytes::from(b)
    }
}

/// How many registrations the schedule asks of camera `i` of `n` in `duration`.
fn intended(i: usize, n: usize, duration: Duration) -> u64 {
    let offset = SEGMENT.mul_f64(i as f64 / n as f64);
    if offset >= duration {
        return 0;
    }
    ((duration - offset).as_micros() as u64).div_ceil(SEGMENT.as_micros() as u64)
}

/// One camera: a segment every 6 s from its offset, written then registered.
async fn camera(load: Arc<Load>, i: usize, mut client: StorageServiceClient<Channel>) {
    let n = load.cameras.names.len();
    let name = &load.cameras.names[i];
    let mut next = load.started + SEGMENT.mul_f64(i as f64 / n as f64);
    // The first segment ends at its registration time; the next ones continue it.
    let mut start_us = kordon_objects::time::now_micros()
        + (next - Instant::now()).as_micros() as i64
        - SEGMENT_US;
    let mut seq = 0u64;
    while next < load.deadline {
        tokio::select! {
            _ = load.stop.cancelled() => return,
            _ = tokio::time::sleep_until(next.into()) => {}
        }
        let end_us = start_us + SEGMENT_US;
        let bytes = load.segment.unique(load.nonce, i, seq);
        let sha = kordon_objects::sha256(&bytes);
        let key = match kordon_objects::segment_key("", SITE, name, start_us, &sha) {
            Ok(k) => k,
            Err(e) => {
                load.recorder
                    .error("object put (local files)", e.to_string());
                return;
            }
        };
        let size = bytes.len() as u64;
        let put = load
            .recorder
            .time(
                "object put (local files)",
                kordon_objects::put_immutable(&*load.objects, &key, bytes, &sha),
            )
            .await;
        if put.is_some() {
            let req = pb::RegisterSegmentRequest {
                camera: camera_ref(name),
                range: range(start_us, Some(end_us)),
                size_bytes: size,
                sha256: sha.to_vec(),
                codec: common::VideoCodec::H264 as i32,
                width: 320,
                height: 240,
                object_key: key.to_string(),
                ingest_replica: format!("ingest-{}", i / CAMERAS_PER_INGEST),
                init_size: load.segment.init_size,
            };
            let registered = load
                .recorder
                .time("RegisterSegment", client.register_segment(request(req)))
                .await;
            if registered.is_some() {
                if seq == 0 {
                    load.cameras.first_start[i].store(start_us, Ordering::Release);
                }
                load.cameras.last_end[i].store(end_us, Ordering::Release);
                load.cameras.registered[i].fetch_add(1, Ordering::AcqRel);
            }
        }
        start_us = end_us;
        seq += 1;
        next += SEGMENT;
    }
}

/// Waits `think`, or until the run stops: false when it stopped.
async fn pause(load: &Load, think: Duration) -> bool {
    tokio::select! {
        _ = load.stop.cancelled() => false,
        _ = tokio::time::sleep(think) => !load.stop.is_cancelled(),
    }
}

/// GET `url` (with a byte range): the body, or an error naming the status.
async fn get(
    http: &reqwest::Client,
    url: &str,
    range: Option<(u64, u64)>,
) -> Result<Bytes, String> {
    let mut req = http.get(url);
    if let Some((offset, len)) = range {
        req = req.header(
            "range",
            format!("bytes={offset}-{}", offset + len.saturating_sub(1)),
        );
    }
    let resp = req.send().await.map_err(|e| e.without_url().to_string())?;
    let status = resp.status();
    let expected = if range.is_some() { 206 } else { 200 };
    if status.as_u16() != expected {
        let body = resp.text().await.unwrap_or_default();
        return Err(format!(
            "HTTP {status} (expected {expected}): {}",
            body.trim()
        ));
    }
    let body = resp
        .bytes()
        .await
        .map_err(|e| e.without_url().to_string())?;
    match range {
        Some((_, len)) if body.len() as u64 != len => {
            Err(format!("asked for {len} bytes, got {}", body.len()))
        }
        _ => Ok(body),
    }
}

/// The last `#EXT-X-MAP` byte range and the last segment (URI, byte range) of a playlist.
type LastSegment = ((String, u64, u64), (String, u64, u64));

fn last_segment(playlist: &str) -> Option<LastSegment> {
    let byterange = |s: &str| -> Option<(u64, u64)> {
        let (len, off) = s.split_once('@')?;
        Some((off.parse().ok()?, len.parse().ok()?))
    };
    let mut map = None;
    let mut seg = None;
    let mut lines = playlist.lines();
    while let Some(line) = lines.next() {
        if let Some(rest) = line.strip_prefix("#EXT-X-MAP:URI=\"") {
            let (uri, rest) = rest.split_once('"')?;
            let r = rest.strip_prefix(",BYTERANGE=\"")?.trim_end_matches('"');
            let (off, len) = byterange(r)?;
            map = Some((uri.to_string(), off, len));
        } else if let Some(r) = line.strip_prefix("#EXT-X-BYTERANGE:") {
            let (off, len) = byterange(r)?;
            let uri = lines.next()?.to_string();
            seg = Some((uri, off, len));
        }
    }
    Some((map?, seg?))
}

/// A player: a playback URL for the camera's last 10 minutes, the playlist, then the init
/// section and the newest segment.
async fn player(load: Arc<Load>, mut client: StorageServiceClient<Channel>, think: Duration) {
    let http = match reqwest::Client::builder().build() {
        Ok(h) => h,
        Err(e) => {
            load.recorder.error("HTTP client", e.to_string());
            return;
        }
    };
    let rec = &load.recorder;
    loop {
        let Some((i, _, first, last)) = load.cameras.pick() else {
            if !pause(&load, Duration::from_millis(200)).await {
                return;
            }
            continue;
        };
        let req = pb::GetPlaybackUrlRequest {
            camera: camera_ref(&load.cameras.names[i]),
            range: range(first.max(last - WINDOW_US), Some(last)),
            audit: audit(),
            ..Default::default()
        };
        let url = rec
            .time("GetPlaybackUrl", client.get_playback_url(request(req)))
            .await
            .and_then(|r| r.into_inner().playback)
            .map(|p| p.url);
        if let Some(url) = url
            && let Some(text) = rec.time("HTTP playlist", get(&http, &url, None)).await
        {
            let text = String::from_utf8_lossy(&text);
            // Relative URIs resolve against the playlist's folder, `.../v1/hls/<site>/`.
            let base = url.split('?').next().unwrap_or(&url);
            let base = &base[..base.rfind('/').map_or(0, |p| p + 1)];
            match last_segment(&text) {
                Some(((map_uri, map_off, map_len), (uri, off, len))) => {
                    let map_url = format!("{base}{map_uri}");
                    rec.time(
                        "HTTP init section (range)",
                        get(&http, &map_url, Some((map_off, map_len))),
                    )
                    .await;
                    let seg_url = format!("{base}{uri}");
                    rec.time(
                        "HTTP media segment (range)",
                        get(&http, &seg_url, Some((off, len))),
                    )
                    .await;
                }
                None => rec.error(
                    "HTTP playlist",
                    format!("no segment in the playlist: {}", text.trim()),
                ),
            }
        }
        if !pause(&load, think).await {
            return;
        }
    }
}

/// A lister: a fixed round of list and read calls, one per pause.
async fn lister(
    load: Arc<Load>,
    n: usize,
    mut client: StorageServiceClient<Channel>,
    think: Duration,
) {
    let http = match reqwest::Client::builder().build() {
        Ok(h) => h,
        Err(e) => {
            load.recorder.error("HTTP client", e.to_string());
            return;
        }
    };
    let rec = &load.recorder;
    // Listers start at different points of the round.
    let mut round = n;
    loop {
        let Some((i, segments, _, last)) = load.cameras.pick() else {
            if !pause(&load, Duration::from_millis(200)).await {
                return;
            }
            continue;
        };
        let camera = camera_ref(&load.cameras.names[i]);
        let now = kordon_objects::time::now_micros();
        match round % 10 {
            0 | 5 => {
                let req = pb::ListSegmentsRequest {
                    camera,
                    range: range(last - WINDOW_US, None),
                    audit: audit(),
                    page: None,
                };
                rec.time("ListSegments", client.list_segments(request(req)))
                    .await;
            }
            1 | 6 => {
                let req = pb::ListRecordingsRequest {
                    scope: camera.map(pb::list_recordings_request::Scope::Camera),
                    range: range(now - 6 * WINDOW_US, None),
                    audit: audit(),
                    ..Default::default()
                };
                rec.time(
                    "ListRecordings (a camera, 1 h)",
                    client.list_recordings(request(req)),
                )
                .await;
            }
            2 | 7 => {
                let sequence = rand::thread_rng().gen_range(1..=segments);
                let req = pb::GetSegmentRequest {
                    camera,
                    sequence,
                    audit: audit(),
                    url_ttl: None,
                };
                let got = rec
                    .time("GetSegment", client.get_segment(request(req)))
                    .await
                    .map(|r| r.into_inner());
                if let Some(got) = got {
                    let size = got.segment.map(|s| s.size_bytes).unwrap_or(0);
                    let url = got.media.map(|m| m.url).unwrap_or_default();
                    rec.time("HTTP segment object (GetSegment URL)", async {
                        let body = get(&http, &url, None).await?;
                        if body.len() as u64 == size {
                            Ok(())
                        } else {
                            Err(format!("{} bytes, the segment has {size}", body.len()))
                        }
                    })
                    .await;
                }
            }
            3 => {
                let req = pb::GetChainHeadRequest { camera };
                rec.time("GetChainHead", client.get_chain_head(request(req)))
                    .await;
            }
            4 | 8 => {
                let req = pb::ListAccessLogRequest {
                    site: SITE.into(),
                    range: range(now - 60_000_000, None),
                    audit: audit(),
                    page: Some(common::PageRequest {
                        page_size: 100,
                        page_token: String::new(),
                    }),
                    ..Default::default()
                };
                rec.time(
                    "ListAccessLog (site, 1 min, 100)",
                    client.list_access_log(request(req)),
                )
                .await;
            }
            _ => {
                let req = pb::ListRecordingsRequest {
                    scope: Some(pb::list_recordings_request::Scope::Site(SITE.into())),
                    range: range(now - 2 * 60_000_000, None),
                    audit: audit(),
                    page: Some(common::PageRequest {
                        page_size: 100,
                        page_token: String::new(),
                    }),
                    ..Default::default()
                };
                rec.time(
                    "ListRecordings (site, 2 min, 100)",
                    client.list_recordings(request(req)),
                )
                .await;
            }
        }
        round += 1;
        if !pause(&load, think).await {
            return;
        }
    }
}

async fn connect(addr: &str) -> Result<StorageServiceClient<Channel>, Error> {
    let channel = Channel::from_shared(format!("http://{addr}"))?
        .connect_timeout(Duration::from_secs(10))
        .connect()
        .await?;
    Ok(StorageServiceClient::new(channel).max_decoding_message_size(64 * 1024 * 1024))
}

async fn run(args: Args) -> Result<bool, Error> {
    let temp;
    let work = match &args.dir {
        Some(d) => {
            std::fs::create_dir_all(d)?;
            d.clone()
        }
        None => {
            temp = tempfile::Builder::new().prefix("kordon-load-").tempdir()?;
            temp.path().to_path_buf()
        }
    };
    let data = work.join("data");
    let segment = Segment::make(&work)?;
    let database = match (&args.backend, &args.postgres_url) {
        (Backend::Postgres, Some(url)) => Some((url.clone(), create_database(url).await?)),
        _ => None,
    };
    let db_url = database.as_ref().map(|(_, (u, _))| u.as_str());
    let result = measure(&args, &work, &data, segment, db_url).await;
    if let Some((admin_url, (_, name))) = &database {
        drop_database(admin_url, name).await;
    }
    result
}

async fn measure(
    args: &Args,
    work: &Path,
    data: &Path,
    segment: Segment,
    db_url: Option<&str>,
) -> Result<bool, Error> {
    let child = start_storage(work, data, db_url).await?;
    let objects_config = kordon_storage::StorageConfig::default().objects_or_default(data);
    let objects = kordon_objects::build(&objects_config)?;
    let ingest_channels = args.cameras.div_ceil(CAMERAS_PER_INGEST);
    let mut ingest = Vec::with_capacity(ingest_channels);
    for _ in 0..ingest_channels {
        ingest.push(connect(&child.grpc).await?);
    }
    let mut clients = Vec::with_capacity(args.clients);
    for _ in 0..args.clients {
        clients.push(connect(&child.grpc).await?);
    }

    let players = args.clients.div_ceil(2);
    println!(
        "storage load: {} index{}, objects as local files under {} (the standalone default)",
        match args.backend {
            Backend::Sqlite => "SQLite",
            Backend::Postgres => "PostgreSQL",
        },
        match args.backend {
            Backend::Sqlite => format!(" ({})", data.join("index.sqlite").display()),
            Backend::Postgres => " (a fresh database)".into(),
        },
        data.join("media").display(),
    );
    println!(
        "  storage pid {} (gRPC {}, HTTP {}), log {}",
        child.pid,
        child.grpc,
        child.http,
        work.join("storage.log").display()
    );
    println!(
        "  {} cameras, one {}-byte fMP4 segment per 6 s each ({:.1}/s, {} ingest connections); \
         {} clients ({} playback, {} list, {} ms between rounds); {:.1} min",
        args.cameras,
        segment.bytes.len() + 32,
        args.cameras as f64 / SEGMENT.as_secs_f64(),
        ingest_channels,
        args.clients,
        players,
        args.clients - players,
        args.think.as_millis(),
        args.duration.as_secs_f64() / 60.0
    );

    let started = Instant::now();
    let load = Arc::new(Load {
        objects,
        segment,
        cameras: Cameras::new(args.cameras),
        recorder: Recorder::default(),
        stop: CancellationToken::new(),
        started,
        deadline: started + args.duration,
        nonce: kordon_objects::time::now_micros() as u64,
    });
    let rss = Arc::new(Rss::default());
    let sampler = {
        let (rss, pid, every, stop) = (rss.clone(), child.pid, args.rss_every, load.stop.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tick.tick() => {}
                }
                if let Some(kib) = rss_kib(pid)
                    && let Ok(mut s) = rss.samples.lock()
                {
                    s.push((started.elapsed().as_secs_f64(), kib));
                }
            }
        })
    };
    let mut tasks = Vec::new();
    for i in 0..args.cameras {
        let client = ingest[i / CAMERAS_PER_INGEST].clone();
        tasks.push(tokio::spawn(camera(load.clone(), i, client)));
    }
    for (n, client) in clients.into_iter().enumerate() {
        tasks.push(if n % 2 == 0 {
            tokio::spawn(player(load.clone(), client, args.think))
        } else {
            tokio::spawn(lister(load.clone(), n / 2, client, args.think))
        });
    }

    // Progress every 30 s until the deadline.
    let mut next = started + PROGRESS_EVERY;
    loop {
        let wake = next.min(load.deadline);
        tokio::time::sleep_until(wake.into()).await;
        let t = started.elapsed();
        let expected: u64 = (0..args.cameras)
            .map(|i| intended(i, args.cameras, t))
            .sum();
        println!(
            "  [{:>4.0} s] registered {} of {} scheduled, {} calls, {} errors, storage RSS {:.1} MiB",
            t.as_secs_f64(),
            load.cameras.total(),
            expected,
            load.recorder.count(),
            load.recorder.errors.load(Ordering::Relaxed),
            rss.last_mib()
        );
        if wake >= load.deadline {
            break;
        }
        next += PROGRESS_EVERY;
    }
    load.stop.cancel();
    let drained = Instant::now();
    for t in tasks {
        let _ = tokio::time::timeout(CALL_TIMEOUT * 2, t).await;
    }
    let _ = sampler.await;
    let run_s = started.elapsed().as_secs_f64();
    let pid = child.pid;
    let stopped = child.stop().await;

    // Report.
    let rec = &load.recorder;
    println!(
        "\n{:<40} {:>8} {:>6} {:>9} {:>9} {:>9} {:>9}",
        "call", "count", "errors", "p50 ms", "p90 ms", "p99 ms", "max ms"
    );
    if let Ok(mut calls) = rec.calls.lock() {
        for (name, s) in calls.iter_mut() {
            s.micros.sort_unstable();
            let at = |p: f64| -> String {
                if s.micros.is_empty() {
                    return "-".into();
                }
                let i = ((p * s.micros.len() as f64).ceil() as usize).clamp(1, s.micros.len()) - 1;
                format!("{:.1}", s.micros[i] as f64 / 1000.0)
            };
            println!(
                "{:<40} {:>8} {:>6} {:>9} {:>9} {:>9} {:>9}",
                name,
                s.micros.len() as u64 + s.errors,
                s.errors,
                at(0.50),
                at(0.90),
                at(0.99),
                at(1.0)
            );
        }
    }
    let intended_total: u64 = (0..args.cameras)
        .map(|i| intended(i, args.cameras, args.duration))
        .sum();
    let achieved = load.cameras.total();
    let share = achieved as f64 / intended_total.max(1) as f64;
    println!(
        "\nregistrations: {achieved} of {intended_total} intended ({:.1} %): {:.1}/s over the run, \
         intended {:.1}/s (stopping took {:.1} s)",
        share * 100.0,
        achieved as f64 / run_s,
        args.cameras as f64 / SEGMENT.as_secs_f64(),
        drained.elapsed().as_secs_f64()
    );
    let samples = rss.samples.lock().map(|s| s.clone()).unwrap_or_default();
    report_rss(&samples, args.rss_every, pid);

    let errors = rec.errors.load(Ordering::Relaxed);
    let mut ok = true;
    if errors > 0 {
        ok = false;
        println!("\nFAILED: {errors} calls failed; the first:");
        if let Ok(first) = rec.first_errors.lock() {
            for e in first.iter() {
                println!("  {e}");
            }
        }
    }
    // A registration still in flight at the deadline may be the only shortfall.
    if share < 0.99 {
        ok = false;
        println!(
            "\nFAILED: registration fell behind ({:.1} % of the schedule)",
            share * 100.0
        );
    }
    if let Err(e) = stopped {
        ok = false;
        println!("\nFAILED: {e}");
    }
    if ok {
        println!("\nno errors");
    }
    Ok(ok)
}

/// Start, end, max, per minute, and the least-squares slope over the second half.
fn report_rss(samples: &[(f64, u64)], every: Duration, pid: u32) {
    let mib = |k: u64| k as f64 / 1024.0;
    let (Some(first), Some(last)) = (samples.first(), samples.last()) else {
        println!("storage RSS: no samples (is /proc readable?)");
        return;
    };
    let max = samples.iter().map(|s| s.1).max().unwrap_or(0);
    let half = last.0 / 2.0;
    let tail: Vec<(f64, f64)> = samples
        .iter()
        .filter(|s| s.0 >= half)
        .map(|s| (s.0 / 60.0, mib(s.1)))
        .collect();
    let slope = {
        let n = tail.len() as f64;
        let (sx, sy) = tail
            .iter()
            .fold((0.0, 0.0), |(a, b), (x, y)| (a + x, b + y));
        let (mx, my) = (sx / n, sy / n);
        let (num, den) = tail.iter().fold((0.0, 0.0), |(a, b), (x, y)| {
            (a + (x - mx) * (y - my), b + (x - mx) * (x - mx))
        });
        if den > 0.0 { num / den } else { 0.0 }
    };
    println!(
        "storage RSS (pid {pid}, {} samples, one per {:.0} s): start {:.1} MiB, end {:.1} MiB, \
         max {:.1} MiB; slope over the second half {:+.2} MiB/min",
        samples.len(),
        every.as_secs_f64(),
        mib(first.1),
        mib(last.1),
        mib(max),
        slope
    );
    let mut line = String::from("  by minute (MiB):");
    let mut minute = 0.0;
    for s in samples {
        if s.0 >= minute {
            line.push_str(&format!(" {:.0}m {:.1}", s.0 / 60.0, mib(s.1)));
            minute += 60.0;
        }
    }
    line.push_str(&format!(" | end {:.1}", mib(last.1)));
    println!("{line}");
}
