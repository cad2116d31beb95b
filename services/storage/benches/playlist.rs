//! Playlist latency: an HLS playlist of a 24-hour range with 1,000,000 segments indexed
//! (target: p99 under 50 ms). Not a test: it prints numbers.
//!
//! ```text
//! cargo bench -p kordon-storage --bench playlist            # SQLite, and PostgreSQL when
//!                                                           # KORDON_TEST_POSTGRES_URL is set
//! KORDON_BENCH_SEGMENTS=200000 cargo bench -p kordon-storage --bench playlist
//! ```
//!
//! The index is filled directly (multi-row inserts with correctly chained hashes) over
//! `CAMERAS` cameras of 6-second segments, in time order across cameras as concurrent
//! registrations store them (so one camera's rows are spread over the table, not packed). The
//! playlist is then built for 24 h of one camera (14,400 segments) through
//! `Storage::playlist`, i.e. token check, index query and rendering, as the HTTP endpoint
//! does; the index query and the rendering are also timed alone. Each line gives p50, p90,
//! p99 and max.
//!
//! PostgreSQL is measured twice: as filled, with the table's visibility map not yet set (rows
//! autovacuum has not reached: every row's heap page is read, as for the newest footage), and
//! after `VACUUM`, which autovacuum does in production (migration 0008 has it follow the
//! insert stream). Autovacuum is off for the benchmark's table so that it cannot move from
//! one state to the other mid-measurement.

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

fn push_rows<DB: Database>(qb: &mut QueryBuilder<DB>, chunk: &[&Row])
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
    let cameras: Vec<Vec<Row>> = (0..CAMERAS).map(|c| rows(c, per_camera)).collect();
    // Time order across cameras, as concurrent registrations store them.
    let interleaved: Vec<&Row> = (0..per_camera as usize)
        .flat_map(|i| cameras.iter().map(move |c| &c[i]))
        .collect();
    if let Index::Postgres(p) = index {
        sqlx::query("ALTER TABLE segments SET (autovacuum_enabled = off)")
            .execute(p)
            .await
            .unwrap();
    }
    for tx_rows in interleaved.chunks(BATCH * 20) {
        match index {
            Index::Sqlite(pool) => {
                let mut tx = pool.begin().await.unwrap();
                for chunk in tx_rows.chunks(BATCH) {
                    let mut qb = QueryBuilder::new("");
                    push_rows(&mut qb, chunk);
                    qb.build().execute(&mut *tx).await.unwrap();
                }
                tx.commit().await.unwrap();
            }
            Index::Postgres(pool) => {
                let mut tx = pool.begin().await.unwrap();
                for chunk in tx_rows.chunks(BATCH) {
                    let mut qb = QueryBuilder::new("");
                    push_rows(&mut qb, chunk);
                    qb.build().execute(&mut *tx).await.unwrap();
                }
                tx.commit().await.unwrap();
            }
        }
    }
    for rows in &cameras {
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
            }
        }
    }
    // Statistics as autoanalyze keeps them (production never runs ANALYZE on SQLite).
    if let Index::Postgres(p) = index {
        sqlx::query("ANALYZE segments").execute(p).await.unwrap();
    }
    println!(
        "  filled {} segments ({CAMERAS} cameras) in {:.1} s",
        per_camera * CAMERAS,
        started.elapsed().as_secs_f64()
    );
}

/// `p50 …, p90 …, p99 …, max …` of `times` (sorted here), in milliseconds.
fn percentiles(times: &mut [Duration]) -> String {
    times.sort();
    let at = |p: f64| {
        let i = ((p * times.len() as f64).ceil() as usize).clamp(1, times.len()) - 1;
        times[i].as_secs_f64() * 1e3
    };
    format!(
        "p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        at(0.50),
        at(0.90),
        at(0.99),
        at(1.0)
    )
}

/// Timed runs of each measurement (p99 is the second-slowest of 200).
const RUNS: usize = 200;

async fn measure(label: &str, index: &Index) {
    println!("  {label}:");
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
    // Warm-up: connections opened, statements prepared, pages cached.
    for _ in 0..3 {
        storage.playlist("bench", "cam-03", &q).await.unwrap();
    }
    let mut times = Vec::with_capacity(RUNS);
    let mut size = 0;
    for _ in 0..RUNS {
        let t = Instant::now();
        let playlist = storage.playlist("bench", "cam-03", &q).await.unwrap();
        times.push(t.elapsed());
        size = playlist.matches("#EXTINF").count();
    }
    let mut query_times = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        let t = Instant::now();
        let rows = index
            .playlist_segments("bench", "cam-03", from, to, 200_000)
            .await
            .unwrap();
        query_times.push(t.elapsed());
        assert_eq!(rows.len(), size);
    }
    let rows = index
        .playlist_segments("bench", "cam-03", from, to, 200_000)
        .await
        .unwrap();
    let mut render_times = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
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
    println!(
        "    playlist of 24 h ({size} segments): {}",
        percentiles(&mut times)
    );
    println!("    index query alone: {}", percentiles(&mut query_times));
    println!("    rendering alone:   {}", percentiles(&mut render_times));
}

async fn bench(name: &str, index: Index, total: u64) {
    println!("{name}:");
    fill(&index, total).await;
    match &index {
        Index::Sqlite(_) => measure("as filled", &index).await,
        Index::Postgres(p) => {
            measure("as filled (visibility map not set)", &index).await;
            sqlx::query("VACUUM (ANALYZE) segments")
                .execute(p)
                .await
                .unwrap();
            measure("after VACUUM (what autovacuum does)", &index).await;
        }
    }
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
        bench("SQLite", index, total).await;

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
                bench("PostgreSQL", index, total).await;
                sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
                    .execute(&admin)
                    .await
                    .unwrap();
            }
            _ => println!("PostgreSQL: skipped (KORDON_TEST_POSTGRES_URL not set)"),
        }
    });
}
