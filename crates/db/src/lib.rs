//! The database every stateful Kordon service uses: SQLite (the default, one file in the data
//! directory) or PostgreSQL (a cluster), behind one URL.
//!
//! [`Pool`] is an enum over the two concrete pools rather than `sqlx::Any`: each backend keeps
//! its own typed connect options (SQLite WAL with `synchronous = FULL`, a busy timeout;
//! PostgreSQL with an application name), and a query written once (`$N` placeholders work on
//! both) is compiled for both backends by [`dispatch!`], so a query one backend cannot
//! type-check fails the build, not production. Migrations are embedded per backend
//! ([`Migration`]) and run on every start.

use std::str::FromStr;
use std::time::Duration;

use sqlx::SqlSafeStr;
use sqlx::migrate::{MigrationType, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

/// Why a database could not be opened or migrated.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The URL is not one this crate opens; the message says what is expected.
    #[error("database_url: {0}")]
    Url(String),
    #[error(transparent)]
    Sqlx(#[from] sqlx::Error),
    #[error("database migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// One schema change, as SQL for each backend. Versions ascend; a change is never edited
/// once released (sqlx checks the checksum).
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    pub version: i64,
    pub description: &'static str,
    pub sqlite: &'static str,
    pub postgres: &'static str,
}

/// Whether a URL names a database this crate opens.
pub fn is_supported_url(url: &str) -> bool {
    url.starts_with("sqlite:") || url.starts_with("postgres:") || url.starts_with("postgresql:")
}

/// SQLite options for evidence-grade writes: WAL, `synchronous = FULL` (a committed write
/// survives a power loss), a 30 s busy timeout, the file created when missing.
pub fn sqlite_options(url: &str) -> Result<SqliteConnectOptions, DbError> {
    Ok(SqliteConnectOptions::from_str(url)
        .map_err(|e| DbError::Url(e.to_string()))?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .busy_timeout(Duration::from_secs(30)))
}

/// PostgreSQL options, with `application_name` set so a DBA sees who is connected.
pub fn postgres_options(url: &str, application_name: &str) -> Result<PgConnectOptions, DbError> {
    Ok(PgConnectOptions::from_str(url)
        .map_err(|e| DbError::Url(e.to_string()))?
        .application_name(application_name))
}

pub async fn connect_sqlite(
    opts: SqliteConnectOptions,
    max_connections: u32,
) -> Result<SqlitePool, DbError> {
    Ok(SqlitePoolOptions::new()
        .max_connections(max_connections.max(1))
        .connect_with(opts)
        .await?)
}

pub async fn connect_postgres(
    opts: PgConnectOptions,
    max_connections: u32,
) -> Result<PgPool, DbError> {
    Ok(PgPoolOptions::new()
        .max_connections(max_connections.max(1))
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(opts)
        .await?)
}

/// The migrator of `migrations` for one backend.
pub fn migrator(migrations: &[Migration], postgres: bool) -> Migrator {
    Migrator::with_migrations(
        migrations
            .iter()
            .map(|m| {
                sqlx::migrate::Migration::new(
                    m.version,
                    m.description.into(),
                    MigrationType::Simple,
                    if postgres { m.postgres } else { m.sqlite }.into_sql_str(),
                    false,
                )
            })
            .collect(),
    )
}

/// A connection pool to either backend.
#[derive(Clone, Debug)]
pub enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

impl Pool {
    /// Opens `url` (`sqlite://…` or `postgres://…`). Every connection to an in-memory SQLite
    /// database would be a database of its own, so such a pool has one connection.
    pub async fn connect(
        url: &str,
        max_connections: u32,
        application_name: &str,
    ) -> Result<Pool, DbError> {
        if url.starts_with("sqlite:") {
            let max = if url.contains(":memory:") {
                1
            } else {
                max_connections
            };
            Ok(Pool::Sqlite(
                connect_sqlite(sqlite_options(url)?, max).await?,
            ))
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            let opts = postgres_options(url, application_name)?;
            Ok(Pool::Postgres(
                connect_postgres(opts, max_connections).await?,
            ))
        } else {
            Err(DbError::Url(
                "must start with sqlite:// or postgres://".to_string(),
            ))
        }
    }

    /// `sqlite` or `postgres`.
    pub fn backend(&self) -> &'static str {
        match self {
            Pool::Sqlite(_) => "sqlite",
            Pool::Postgres(_) => "postgres",
        }
    }

    /// Brings the schema up to date; safe on every start.
    pub async fn migrate(&self, migrations: &[Migration]) -> Result<(), DbError> {
        match self {
            Pool::Sqlite(p) => migrator(migrations, false).run(p).await?,
            Pool::Postgres(p) => migrator(migrations, true).run(p).await?,
        }
        Ok(())
    }

    /// [`Pool::migrate`] with the service's own bookkeeping table, so services sharing one
    /// PostgreSQL database (a Site's `spec.database`) do not read each other's migrations.
    pub async fn migrate_in(
        &self,
        migrations: &[Migration],
        table: &'static str,
    ) -> Result<(), DbError> {
        let postgres = matches!(self, Pool::Postgres(_));
        let mut m = migrator(migrations, postgres);
        m.dangerous_set_table_name(table);
        match self {
            Pool::Sqlite(p) => m.run(p).await?,
            Pool::Postgres(p) => m.run(p).await?,
        }
        Ok(())
    }

    /// Closes the pool (waits for connections in use to be returned).
    pub async fn close(&self) {
        match self {
            Pool::Sqlite(p) => p.close().await,
            Pool::Postgres(p) => p.close().await,
        }
    }
}

/// Runs `$body` once per backend with `$pool` bound to the concrete pool of a [`Pool`], so one
/// query text is type-checked against both.
#[macro_export]
macro_rules! dispatch {
    ($db:expr, $pool:ident => $body:block) => {
        match $db {
            $crate::Pool::Sqlite($pool) => $body,
            $crate::Pool::Postgres($pool) => $body,
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: &[Migration] = &[Migration {
        version: 1,
        description: "t",
        sqlite: "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL);",
        postgres: "CREATE TABLE t (id BIGSERIAL PRIMARY KEY, v TEXT NOT NULL);",
    }];

    #[tokio::test]
    async fn sqlite_opens_migrates_twice_and_answers() {
        let dir = std::env::temp_dir().join(format!("kordon-db-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let url = format!("sqlite://{}", dir.join("t.db").display());
        let pool = Pool::connect(&url, 2, "test").await.unwrap();
        pool.migrate(M).await.unwrap();
        pool.migrate(M).await.unwrap();
        let n: i64 = dispatch!(&pool, p => {
            sqlx::query_scalar("SELECT COUNT(*) FROM t").fetch_one(p).await.unwrap()
        });
        assert_eq!(n, 0);
        assert_eq!(pool.backend(), "sqlite");
        pool.close().await;
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn an_unknown_url_says_what_is_expected() {
        let e = Pool::connect("mysql://x", 1, "t").await.unwrap_err();
        assert!(e.to_string().contains("sqlite:// or postgres://"), "{e}");
    }
}
