//! The index database: every SQL statement of the storage service, in SQLite or PostgreSQL.
//!
//! [`Index`] is an enum over the two concrete pools rather than `sqlx::Any`: each backend
//! keeps its own typed connect options (SQLite WAL with `synchronous = FULL`, a busy timeout and
//! `BEGIN IMMEDIATE` writers; PostgreSQL `search_path` for per-test schemas), and every query is
//! written once (`$N` placeholders work on both) and compiled for both backends by the
//! `dispatch!` macro, so a query one backend cannot type-check fails the build, not production.
//!
//! One submodule per table group, each an `impl Index` block: [`segments`] (segments, gaps
//! and chain heads; see [`crate::index`] for the guarantees), [`audit`] (the access log),
//! [`retention`] (policies and legal holds), [`media`] (renditions and snapshots) and
//! [`evidence`] (evidence bundles) and [`grants`] (footage grants to and from partners). The types they read and write, and the logic over them,
//! live in the domain modules of the same names.

use kordon_db::Migration;
use sqlx::postgres::{PgConnectOptions, PgPool};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool};

use crate::StorageError;

mod audit;
mod evidence;
mod grants;
mod media;
mod retention;
mod segments;

/// The index schema, applied in order.
const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        description: "index",
        sqlite: include_str!("../../migrations/sqlite/0001_index.sql"),
        postgres: include_str!("../../migrations/postgres/0001_index.sql"),
    },
    Migration {
        version: 2,
        description: "retention",
        sqlite: include_str!("../../migrations/sqlite/0002_retention.sql"),
        postgres: include_str!("../../migrations/postgres/0002_retention.sql"),
    },
    Migration {
        version: 3,
        description: "evidence",
        sqlite: include_str!("../../migrations/sqlite/0003_evidence.sql"),
        postgres: include_str!("../../migrations/postgres/0003_evidence.sql"),
    },
    Migration {
        version: 4,
        description: "media",
        sqlite: include_str!("../../migrations/sqlite/0004_media.sql"),
        postgres: include_str!("../../migrations/postgres/0004_media.sql"),
    },
    Migration {
        version: 5,
        description: "object owners",
        sqlite: include_str!("../../migrations/sqlite/0005_object_owners.sql"),
        postgres: include_str!("../../migrations/postgres/0005_object_owners.sql"),
    },
    Migration {
        version: 6,
        description: "footage grants",
        sqlite: include_str!("../../migrations/sqlite/0006_footage_grants.sql"),
        postgres: include_str!("../../migrations/postgres/0006_footage_grants.sql"),
    },
    Migration {
        version: 7,
        description: "transcode",
        sqlite: include_str!("../../migrations/sqlite/0007_transcode.sql"),
        postgres: include_str!("../../migrations/postgres/0007_transcode.sql"),
    },
    Migration {
        version: 8,
        description: "playlist visibility",
        sqlite: include_str!("../../migrations/sqlite/0008_playlist_visibility.sql"),
        postgres: include_str!("../../migrations/postgres/0008_playlist_visibility.sql"),
    },
];

/// The index database.
#[derive(Clone, Debug)]
pub enum Index {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Runs `$body` with `$pool` bound to the concrete pool and `$begin` to the statement that
/// starts a write transaction on that backend.
macro_rules! dispatch {
    ($index:expr, $pool:ident, $begin:ident => $body:block) => {
        match $index {
            Index::Sqlite($pool) => {
                // Take the write lock up front: two deferred transactions that both read and
                // then write would deadlock into SQLITE_BUSY.
                #[allow(unused_variables)]
                let $begin = "BEGIN IMMEDIATE";
                $body
            }
            Index::Postgres($pool) => {
                #[allow(unused_variables)]
                let $begin = "BEGIN";
                $body
            }
        }
    };
}
pub(crate) use dispatch;

pub(crate) fn hash32(v: Vec<u8>, what: &str) -> Result<[u8; 32], StorageError> {
    <[u8; 32]>::try_from(v.as_slice())
        .map_err(|_| StorageError::Internal(format!("stored {what} is {} bytes", v.len())))
}

pub(crate) fn to_u64(v: i64, what: &str) -> Result<u64, StorageError> {
    u64::try_from(v).map_err(|_| StorageError::Internal(format!("stored {what} is negative")))
}

pub(crate) fn to_i64(v: u64, what: &str) -> Result<i64, StorageError> {
    i64::try_from(v).map_err(|_| StorageError::invalid(format!("{what} is too large")))
}

fn to_u32(v: i64, what: &str) -> Result<u32, StorageError> {
    u32::try_from(v).map_err(|_| StorageError::Internal(format!("stored {what} out of range")))
}

impl Index {
    /// Connects to `url` (`sqlite://PATH` — the file is created if missing — or
    /// `postgres://...`).
    pub async fn connect(url: &str, max_connections: u32) -> Result<Index, StorageError> {
        let db = |e: kordon_db::DbError| StorageError::config("database_url", e.to_string());
        if url.starts_with("sqlite:") {
            // Every connection to `:memory:` would be a database of its own.
            let max_connections = if url.contains(":memory:") {
                1
            } else {
                max_connections
            };
            Self::connect_sqlite(kordon_db::sqlite_options(url).map_err(db)?, max_connections).await
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            let opts = kordon_db::postgres_options(url, "kordon-storage").map_err(db)?;
            Self::connect_postgres(opts, max_connections).await
        } else {
            Err(StorageError::config(
                "database_url",
                "must start with sqlite:// or postgres://",
            ))
        }
    }

    pub async fn connect_sqlite(
        opts: SqliteConnectOptions,
        max_connections: u32,
    ) -> Result<Index, StorageError> {
        Ok(Index::Sqlite(
            kordon_db::connect_sqlite(opts, max_connections).await?,
        ))
    }

    pub async fn connect_postgres(
        opts: PgConnectOptions,
        max_connections: u32,
    ) -> Result<Index, StorageError> {
        Ok(Index::Postgres(
            kordon_db::connect_postgres(opts, max_connections).await?,
        ))
    }

    /// `sqlite` or `postgres`.
    pub fn backend(&self) -> &'static str {
        match self {
            Index::Sqlite(_) => "sqlite",
            Index::Postgres(_) => "postgres",
        }
    }

    /// Brings the schema up to date (embedded migrations; safe to run on every start).
    pub async fn migrate(&self) -> Result<(), StorageError> {
        match self {
            Index::Sqlite(p) => kordon_db::migrator(MIGRATIONS, false).run(p).await?,
            Index::Postgres(p) => kordon_db::migrator(MIGRATIONS, true).run(p).await?,
        }
        Ok(())
    }

    /// Closes the pool (waits for connections in use to be returned).
    pub async fn close(&self) {
        match self {
            Index::Sqlite(p) => p.close().await,
            Index::Postgres(p) => p.close().await,
        }
    }
}
