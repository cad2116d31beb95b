//! Playlist latency: an HLS playlist of a 24-hour range with 1,000,000 segments indexed
//! (target: under 50 ms). Not a test: it prints numbers.
//!
//! ```text
//! cargo bench -p kordon-storage --bench playlist            # SQLite, and PostgreSQL when
//!                                                           # KORDON_TEST_POSTGRES_URL is set
//! KORDON_BENCH_SEGMENTS=200000 cargo bench -p kordon-storage --bench playlist
//! ```
//!
//! The index is filled directly (multi-row inserts with correctly chained hashes) over
//! `CAMERAS` cameras of 6-second segments; the playlist is then built for 24 h of one camera
//! (14,400 segments) through `Storage::playlist`, i.e. token check, index query and rendering,
//! as the HTTP endpoint does.

use std::str::FromStr;
use std::time::{Duration, Instant};

use kordon_storage::Index;
use kordon_storage::chain::{ChainRecord, RecordKind, ZERO_HASH};
use kordon_storage::playback::PlaybackQuery;
use sqlx::{Database, QueryBuilder};

const CAMERAS: u64 = 10;
const SEG_US: i64 = 6_000_000;
/// 2026-01-01T00:00:00Z
const T0: i64 = 1_767_225_600_000_000;
const DAY_US: i64 = 86_400_000_000;
const BATCH: usize = 1000;

struct Row {
    camera: String,
    sequence: i64,
    start_us: i64,
    sha: Vec<u8>,
    key: String,
    prev: Vec<u8>,
    hash: Vec<u8>,
}

fn rows(camera: u64, count: u64) -> Vec<Row> {
    let camera_name = format!("cam-{camera:02}");
    let mut prev = ZERO_HASH;
    (0..count)
        .map(|i| {
            let start = T0 + i as i64 * SEG_US;
            let mut sha = [0u8; 32];
            sha[..8].copy_from_slice(&camera.to_be_bytes());
            sha[8..16].copy_from_slice(&i.to_be_bytes());
            let key = format!("bench/{camera_name}/{i}.mp4");
            let mut r = ChainRecord {
                kind: RecordKind::Segment,
                site: "bench".into(),
                camera: camera_name.clone(),
                sequence: i + 1,
                start_us: start,
                end_us: start + SEG_US,
                size_bytes: 3_000_000,
                sha256: sha,
                object_key: key.clone(),
                gap_reason: 0,
                prev_hash: prev,
                record_hash: ZERO_HASH,
            };
            r.record_hash = r.compute_hash();
            let row = Row {
                camera: camera_name.clone(),
                sequence: (i + 1) as i64,
                start_us: start,
                sha: sha.to_vec(),
                key,
                prev: prev.to_vec(),
                hash: r.record_hash.to_vec(),
            };
            prev = r.record_hash;
            row
        })
        .collect()
}

fn push_rows<DB: Database>(qb: &mut QueryBuilder<DB>, chunk: &[Row])
where
    for<'t> i64: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
    for<'t> String: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
    for<'t> Vec<u8>: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
{
    qb.push(
        "INSERT INTO segments (site, camera, sequence, start_us, end_us, size_bytes, sha256, \
         init_size, codec, width, height, object_key, ingest_replica, prev_hash, record_hash, \
         registered_at_us) ",
    );
    qb.push_values(chunk, |mut b, r| {
        b.push_bind("bench".to_string())
            .push_bind(r.camera.clone())
            .push_bind(r.sequence)
            .push_bind(r.start_us)
            .push_bind(r.start_us + SEG_US)
            .push_bind(3_000_000i64)
            .push_bind(r.sha.clone())
            .push_bind(800i64)
            .push_bind(1i64)
            .push_bind(1920i64)
            .push_bind(1080i64)
            .push_bind(r.key.clone())
            .push_bind("bench".to_string())
            .push_bind(r.prev.clone())
            .push_bind(r.hash.clone())
            .push_bind(r.start_us);
    });
}

async fn fill(index: &Index, total: u64) {
    let per_camera = total / CAMERAS;
    let started = Instant::now();
    for camera in 0..CAMERAS {
        let rows = rows(camera, per_camera);
        match index {
            Index::Sqlite(pool) => {
                let mut tx = pool.begin().await.unwrap();
                for chunk in rows.chunks(BATCH) {
                    let mut qb = QueryBuilder::new("");
                    push_rows(&mut qb, chunk);
                    qb.build().execute(&mut *tx).await.unwrap();
                }
                tx.commit().await.unwrap();
            }
            Index::Postgres(pool) => {
                let mut tx = pool.begin().await.unwrap();
                for chunk in rows.chunks(BATCH) {
                    let mut qb = QueryBuilder::new("");
                    push_rows(&mut qb, chunk);
                    qb.build().execute(&mut *tx).await.unwrap();
                }
                tx.commit().await.unwrap();
            }
        }
        let last = rows.last().unwrap();
        let sql = "INSERT INTO chain_heads (site, camera, head_sequence, head_hash, \
                   recorded_until_us) VALUES ($1, $2, $3, $4, $5)";
        match index {
            Index::Sqlite(p) => {
                sqlx::query(sql)
                    .bind("bench")
                    .bind(&last.camera)
                    .bind(last.sequence)
                    .bind(&last.hash)
                    .bind(last.start_us + SEG_US)
                    .execute(p)
                    .await
                    .unwrap();
            }
            Index::Postgres(p) => {
                sqlx::query(sql)
                    .bind("bench")
                    .bind(&last.camera)
                    .bind(last.sequence)
                    .bind(&last.hash)
                    .bind(last.start_us + SEG_US)
                    .execute(p)
                    .await
                    .unwrap();
                sqlx::query("ANALYZE segments").execute(p).await.unwrap();
            }
        }
    }
    println!(
        "  filled {} segments ({CAMERAS} cameras) in {:.1} s",
        per_camera * CAMERAS,
        started.elapsed().as_secs_f64()
    );
}

async fn measure(name: &str, index: Index, total: u64) {
    println!("{name}:");
    fill(&index, total).await;
    let storage = kordon_storage::Storage::from_parts(
        index.clone(),
        kordon_objects::build(&kordon_objects::ObjectStoreConfig::Memory).unwrap(),
        kordon_storage::playback::PlaybackSigner::random(),
        ed25519_dalek::SigningKey::from_bytes(&[1; 32]),
        Default::default(),
    );
    // 24 h of camera 3, starting one day into its recording.
    let from = T0 + DAY_US;
    let to = from + DAY_US;
    let (url, _) = storage.playback_url("bench", "cam-03", from, to, Duration::from_secs(900));
    let query = url.split_once('?').unwrap().1;
    let get = |k: &str| {
        query
            .split('&')
            .find_map(|kv| kv.strip_prefix(&format!("{k}=")))
            .unwrap()
            .to_string()
    };
    let q = PlaybackQuery {
        from: get("from").parse().unwrap(),
        to: Some(get("to").parse().unwrap()),
        exp: get("exp").parse().unwrap(),
        token: get("token"),
        profile: None,
    };
    let mut times = Vec::new();
    let mut size = 0;
    for _ in 0..30 {
        let t = Instant::now();
        let playlist = storage.playlist("bench", "cam-03", &q).await.unwrap();
        times.push(t.elapsed());
        size = playlist.matches("#EXTINF").count();
    }
    times.sort();
    let mut query_times = Vec::new();
    for _ in 0..30 {
        let t = Instant::now();
        let rows = index
            .playlist_segments("bench", "cam-03", from, to, 200_000)
            .await
            .unwrap();
        query_times.push(t.elapsed());
        assert_eq!(rows.len(), size);
    }
    query_times.sort();
    let rows = index
        .playlist_segments("bench", "cam-03", from, to, 200_000)
        .await
        .unwrap();
    let mut render_times = Vec::new();
    for _ in 0..30 {
        let t = Instant::now();
        let text = kordon_storage::playback::render_playlist(
            "cam-03",
            &rows,
            "1.2.3.tokentokentokentokentokentokentokentokent",
            1_000_000,
            false,
            true,
        );
        render_times.push(t.elapsed());
        assert!(text.len() > rows.len());
    }
    render_times.sort();
    println!(
        "  of which the index query: median {:.1} ms; rendering: median {:.1} ms",
        query_times[query_times.len() / 2].as_secs_f64() * 1e3,
        render_times[render_times.len() / 2].as_secs_f64() * 1e3
    );
    println!(
        "  playlist of 24 h ({size} segments): median {:.1} ms, p90 {:.1} ms, max {:.1} ms",
        times[times.len() / 2].as_secs_f64() * 1e3,
        times[times.len() * 9 / 10].as_secs_f64() * 1e3,
        times[times.len() - 1].as_secs_f64() * 1e3,
    );
    index.close().await;
}

fn main() {
    let total: u64 = std::env::var("KORDON_BENCH_SEGMENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("bench.sqlite").display());
        let index = Index::connect(&url, 4).await.unwrap();
        index.migrate().await.unwrap();
        measure("SQLite", index, total).await;

        match std::env::var("KORDON_TEST_POSTGRES_URL") {
            Ok(url) if !url.is_empty() => {
                let schema = format!("kordon_bench_{}", uuid::Uuid::new_v4().simple());
                let admin = sqlx::PgPool::connect(&url).await.unwrap();
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
                    .execute(&admin)
                    .await
                    .unwrap();
                let opts = sqlx::postgres::PgConnectOptions::from_str(&url)
                    .unwrap()
                    .options([("search_path", schema.as_str())]);
                let index = Index::connect_postgres(opts, 4).await.unwrap();
                index.migrate().await.unwrap();
                measure("PostgreSQL", index, total).await;
                sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
                    .execute(&admin)
                    .await
                    .unwrap();
            }
            _ => println!("PostgreSQL: skipped (KORDON_TEST_POSTGRES_URL not set)"),
        }
    });
}
