//! Shared by the storage integration tests: fresh databases on each backend, storages over
//! them, and real fragmented-MP4 segments.
#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use kordon_objects::{ObjectStore, ObjectStoreExt};
use kordon_storage::index::{Index, NewSegment};
use kordon_storage::playback::PlaybackSigner;
use kordon_storage::{Storage, StorageOptions};
use sqlx::postgres::PgConnectOptions;
use std::str::FromStr;

pub const SITE: &str = "burgas";
pub const CAMERA: &str = "gate-3";
/// 2026-11-27T10:00:00Z
pub const T0: i64 = 1_795_773_600_000_000;
pub const SEC: i64 = 1_000_000;

/// A fresh, migrated index; dropped (PostgreSQL schema) by [`TestDb::cleanup`].
pub struct TestDb {
    pub index: Index,
    pub backend: &'static str,
    _dir: Option<tempfile::TempDir>,
    schema: Option<(String, String)>,
}

impl TestDb {
    pub async fn cleanup(self) {
        self.index.close().await;
        if let Some((url, schema)) = self.schema
            && let Ok(pool) = sqlx::PgPool::connect(&url).await
        {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP SCHEMA IF EXISTS {schema} CASCADE"
            )))
            .execute(&pool)
            .await;
            pool.close().await;
        }
    }
}

/// A new SQLite index in a temporary directory.
pub async fn sqlite() -> TestDb {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("index.sqlite").display());
    let index = Index::connect(&url, 4).await.unwrap();
    index.migrate().await.unwrap();
    TestDb {
        index,
        backend: "sqlite",
        _dir: Some(dir),
        schema: None,
    }
}

/// A new PostgreSQL index in a schema of its own, when `KORDON_TEST_POSTGRES_URL` is set (see
/// `kordon_objects::testenv::require` for the skip/fail rule).
pub async fn postgres(test: &str) -> Option<TestDb> {
    let url = kordon_objects::testenv::require(
        &format!("{test} on PostgreSQL"),
        &["KORDON_TEST_POSTGRES_URL"],
    )?
    .pop()?;
    let schema = format!("kordon_test_{}", uuid::Uuid::new_v4().simple());
    let admin = sqlx::PgPool::connect(&url).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(&admin)
        .await
        .unwrap();
    admin.close().await;
    let opts = PgConnectOptions::from_str(&url)
        .unwrap()
        .options([("search_path", schema.as_str())]);
    let index = Index::connect_postgres(opts, 8).await.unwrap();
    index.migrate().await.unwrap();
    Some(TestDb {
        index,
        backend: "postgres",
        _dir: None,
        schema: Some((url, schema)),
    })
}

/// Runs one raw statement against the index (tampering in tests).
pub async fn exec(index: &Index, sql: String) -> u64 {
    match index {
        Index::Sqlite(p) => sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(p)
            .await
            .unwrap()
            .rows_affected(),
        Index::Postgres(p) => sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(p)
            .await
            .unwrap()
            .rows_affected(),
    }
}

/// A storage over `index` and an in-memory object store.
pub fn storage(index: Index, base_url: &str) -> Storage {
    storage_with(
        index,
        kordon_objects::build(&kordon_objects::ObjectStoreConfig::Memory).unwrap(),
        base_url,
    )
}

pub fn storage_with(index: Index, objects: Arc<dyn ObjectStore>, base_url: &str) -> Storage {
    Storage::from_parts(
        index,
        objects,
        PlaybackSigner::random(),
        ed25519_dalek::SigningKey::from_bytes(&[7; 32]),
        StorageOptions {
            base_url: base_url.to_string(),
            ..Default::default()
        },
    )
}

/// Fake segment bytes: `init` bytes of "init" then media; unique per `n`.
pub fn fake_bytes(n: u64, len: usize) -> Bytes {
    let mut v = vec![0u8; len];
    for (i, b) in v.iter_mut().enumerate() {
        *b = (i as u64 ^ n.wrapping_mul(0x9e37_79b9)) as u8;
    }
    v[..8].copy_from_slice(&n.to_be_bytes());
    Bytes::from(v)
}

/// Writes `bytes` as camera segment `[start, end)` (via put_immutable, as ingest does) and
/// returns its registration request.
pub async fn put_segment(
    objects: &dyn ObjectStore,
    camera: &str,
    start_us: i64,
    end_us: i64,
    bytes: Bytes,
    init_size: u64,
) -> NewSegment {
    let sha = kordon_objects::sha256(&bytes);
    let key = kordon_objects::segment_key("", SITE, camera, start_us, &sha).unwrap();
    kordon_objects::put_immutable(objects, &key, bytes.clone(), &sha)
        .await
        .unwrap();
    NewSegment {
        site: SITE.into(),
        camera: camera.into(),
        start_us,
        end_us,
        size_bytes: bytes.len() as u64,
        sha256: sha,
        init_size,
        codec: 1,
        width: 320,
        height: 240,
        object_key: key.to_string(),
        ingest_replica: "ingest-0".into(),
    }
}

/// A segment request whose object is not written (index-only tests).
pub fn new_segment(camera: &str, n: u64, start_us: i64, end_us: i64) -> NewSegment {
    let sha = kordon_objects::sha256(&n.to_be_bytes());
    NewSegment {
        site: SITE.into(),
        camera: camera.into(),
        start_us,
        end_us,
        size_bytes: 1000 + n,
        sha256: sha,
        init_size: 100,
        codec: 1,
        width: 320,
        height: 240,
        object_key: format!("{SITE}/{camera}/{n}.mp4"),
        ingest_replica: "ingest-0".into(),
    }
}

/// Offset of the first top-level `moof` box: the init section's size.
pub fn init_size(mp4: &[u8]) -> u64 {
    let mut at = 0usize;
    while at + 8 <= mp4.len() {
        let size32 = u32::from_be_bytes(mp4[at..at + 4].try_into().unwrap()) as u64;
        let kind = &mp4[at + 4..at + 8];
        if kind == b"moof" {
            return at as u64;
        }
        let size = match size32 {
            1 => u64::from_be_bytes(mp4[at + 8..at + 16].try_into().unwrap()),
            0 => panic!("box to end of file before any moof"),
            n => n,
        };
        at += size as usize;
    }
    panic!("no moof box: not a fragmented MP4")
}

/// Real fragmented MP4 made by ffmpeg: one continuous 320x240 25 fps H.264 test-pattern
/// recording cut into `count` self-contained segments of `seconds` each, with a keyframe every
/// second — what Kordon's ingest writes: ftyp+moov, then moof/mdat fragments whose media
/// timestamps continue from segment to segment. (ffmpeg's HLS muxer writes the init section
/// and the fragments separately; each segment here is the init section plus its fragments.)
pub fn ffmpeg_segments(dir: &Path, count: u32, seconds: u32) -> Vec<Bytes> {
    ffmpeg_segments_sized(dir, count, seconds, "320x240")
}

/// Like [`ffmpeg_segments`] with frames of `size` (e.g. `160x120`): the same test pattern and
/// keyframes at the same times, so the segments of two sizes made in one test line up one to
/// one, their media timelines alike — what a rendition of each segment is. Writes into a
/// folder of `dir` named after the size.
pub fn ffmpeg_segments_sized(dir: &Path, count: u32, seconds: u32, size: &str) -> Vec<Bytes> {
    let dir = dir.join(format!("ffmpeg-{size}"));
    std::fs::create_dir_all(&dir).unwrap();
    let dir = dir.as_path();
    let status = std::process::Command::new("ffmpeg")
        .current_dir(dir)
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
        ])
        .arg(format!("testsrc=size={size}:rate=25"))
        .args(["-t", &(count * seconds).to_string()])
        .args(["-c:v", "libx264", "-g", "25", "-pix_fmt", "yuv420p"])
        .args([
            "-f",
            "hls",
            "-hls_segment_type",
            "fmp4",
            "-hls_playlist_type",
            "vod",
        ])
        .args([
            "-hls_time",
            &seconds.to_string(),
            "-hls_fmp4_init_filename",
            "init.mp4",
        ])
        .args(["-hls_segment_filename", "frag%d.m4s", "ffmpeg.m3u8"])
        .status()
        .expect("ffmpeg is installed");
    assert!(status.success(), "ffmpeg failed");
    let init = std::fs::read(dir.join("init.mp4")).unwrap();
    (0..count)
        .map(|i| {
            let mut seg = init.clone();
            seg.extend(std::fs::read(dir.join(format!("frag{i}.m4s"))).unwrap());
            Bytes::from(seg)
        })
        .collect()
}

/// Reads an object whole.
pub async fn read(objects: &dyn ObjectStore, key: &str) -> Bytes {
    objects
        .get(&kordon_objects::ObjectPath::from(key))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap()
}

// ---------------------------------------------------------------------------------------------
// An in-process server: gRPC through the runtime's GrpcServer, playback HTTP beside it.
// ---------------------------------------------------------------------------------------------

use kordon_runtime::config::{
    AuthConfig, CommonConfig, JwtAlgorithm, JwtConfig, JwtKeyConfig, LogConfig,
};
use std::net::SocketAddr;
use tokio_util::sync::CancellationToken;

pub struct Running {
    pub grpc: SocketAddr,
    pub http: SocketAddr,
    pub storage: Storage,
    shutdown: CancellationToken,
    grpc_task: tokio::task::JoinHandle<Result<(), kordon_runtime::RuntimeError>>,
    http_task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Running {
    pub async fn client(
        &self,
    ) -> kordon_proto::storage::v1::storage_service_client::StorageServiceClient<
        tonic::transport::Channel,
    > {
        let channel = tonic::transport::Channel::from_shared(format!("http://{}", self.grpc))
            .unwrap()
            .connect()
            .await
            .unwrap();
        kordon_proto::storage::v1::storage_service_client::StorageServiceClient::new(channel)
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        self.grpc_task.await.unwrap().unwrap();
        self.http_task.await.unwrap().unwrap();
        self.storage.index().close().await;
    }
}

pub fn common_config(dir: &Path, auth: AuthConfig, dev_identity: bool) -> CommonConfig {
    CommonConfig {
        grpc_listen: "127.0.0.1:0".parse().unwrap(),
        admin_listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.to_path_buf(),
        log: LogConfig::default(),
        tls: None,
        auth,
        dev_identity,
    }
}

/// Starts storage over `index` and `objects` on loopback ports.
pub async fn serve(index: Index, objects: Arc<dyn ObjectStore>, common: &CommonConfig) -> Running {
    let http_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http = http_listener.local_addr().unwrap();
    let storage = storage_with(index, objects, &format!("http://{http}"));
    let server = kordon_runtime::server::GrpcServer::new(kordon_storage::NAME, common)
        .unwrap()
        .add_service(kordon_storage::grpc_service(storage.clone()))
        .bind(common.grpc_listen)
        .await
        .unwrap();
    let grpc = server.local_addr();
    let shutdown = CancellationToken::new();
    let readiness = kordon_runtime::admin::Readiness::new();
    let grpc_task = tokio::spawn(server.serve(readiness.clone(), shutdown.clone()));
    let http_task = tokio::spawn(kordon_storage::serve_http(
        storage.clone(),
        http_listener,
        shutdown.clone().cancelled_owned(),
    ));
    for _ in 0..200 {
        if readiness.not_ready().is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    Running {
        grpc,
        http,
        storage,
        shutdown,
        grpc_task,
        http_task,
    }
}

/// JWT verification with a fresh Ed25519 key: the auth config and the private key (PEM).
pub fn jwt_auth(dir: &Path) -> (AuthConfig, String) {
    let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let public = dir.join("id.pub.pem");
    std::fs::write(&public, kp.public_key_pem()).unwrap();
    let auth = AuthConfig {
        jwt: Some(JwtConfig {
            issuer: "https://id.example".into(),
            audience: "kordon".into(),
            keys: vec![JwtKeyConfig {
                id: None,
                algorithm: JwtAlgorithm::EdDSA,
                public_key_file: public,
            }],
            roles_claim: "kordon_roles".into(),
            leeway_seconds: 0,
        }),
        ..Default::default()
    };
    (auth, kp.serialize_pem())
}

/// A signed token for a person with `roles` (`{"site": ["viewer", ...]}`).
pub fn person_token(private_pem: &str, sub: &str, roles: serde_json::Value) -> String {
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    let claims = serde_json::json!({
        "sub": sub, "name": format!("{sub} (test)"), "iss": "https://id.example",
        "aud": "kordon", "exp": exp, "kordon_roles": roles,
    });
    let key = jsonwebtoken::EncodingKey::from_ed_pem(private_pem.as_bytes()).unwrap();
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA),
        &claims,
        &key,
    )
    .unwrap()
}

/// Adds `authorization: Bearer <token>` to a request.
pub fn bearer<T>(msg: T, token: &str) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    r
}

/// A minimal HTTP/1.1 GET: (status, headers lower-cased, body).
pub async fn http_get(
    addr: std::net::SocketAddr,
    path: &str,
    range: Option<&str>,
) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(r) = range {
        req.push_str(&format!("Range: {r}\r\n"));
    }
    req.push_str("\r\n");
    tokio::io::AsyncWriteExt::write_all(&mut s, req.as_bytes())
        .await
        .unwrap();
    let mut raw = Vec::new();
    tokio::io::AsyncReadExt::read_to_end(&mut s, &mut raw)
        .await
        .unwrap();
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a header block");
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut lines = head.lines();
    let status: u16 = lines
        .next()
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"))
    {
        body = dechunk(&body);
    }
    (status, headers, body)
}

pub fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let end = b.windows(2).position(|w| w == b"\r\n").unwrap();
        let n = usize::from_str_radix(std::str::from_utf8(&b[..end]).unwrap().trim(), 16).unwrap();
        b = &b[end + 2..];
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&b[..n]);
        b = &b[n + 2..];
    }
}

pub fn header<'a>(h: &'a [(String, String)], name: &str) -> Option<&'a str> {
    h.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}
