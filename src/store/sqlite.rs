//! SQLite engine: [`SqliteStore`].
//!
//! Owns the connection settings that make an acknowledgement mean durable (WAL journal,
//! `synchronous = FULL` unless configured otherwise, foreign keys on), the embedded
//! `migrations/sqlite`, and how a write transaction begins.
//!
//! Every multi-statement write starts with `BEGIN IMMEDIATE`: it takes the write lock up
//! front, waiting up to the busy timeout for it. A deferred `BEGIN` would read under a
//! shared lock and then fail with SQLITE_BUSY when it tries to upgrade while another
//! connection writes; the busy handler cannot help there. Single-statement writes take the
//! write lock at their start, so autocommit is enough for them.

use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};
use sqlx::{Sqlite, Transaction};

use super::engine::{EngineStore, impl_store};
use super::{ConnectOptions, StoreResult};

pub(super) static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// No row locks in SQLite: the `BEGIN IMMEDIATE` around the statement is exclusive.
const LEASE_DUE_JOBS: &str = super::sql::lease_due_jobs!("");
const LEASE_DELIVERIES: &str = super::sql::lease_deliveries!("");

/// How long a writer waits for another connection's write lock before SQLITE_BUSY.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The SQLite store.
pub type SqliteStore = EngineStore<SqlitePool>;

impl SqliteStore {
    /// Opens (creating if missing, together with its directory) the database file, and
    /// connects eagerly within `connect_timeout`.
    pub async fn connect(url: &str, options: &ConnectOptions) -> StoreResult<Self> {
        let synchronous = SqliteSynchronous::from_str(&options.sqlite_synchronous)?;
        let connect = SqliteConnectOptions::from_str(url)?
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(synchronous)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true)
            .create_if_missing(true);
        let in_memory = is_in_memory(url);
        if !in_memory {
            // SQLite creates the file but not its directory (`data/` on a fresh checkout).
            if let Some(dir) = connect
                .get_filename()
                .parent()
                .filter(|dir| !dir.as_os_str().is_empty())
            {
                tokio::fs::create_dir_all(dir)
                    .await
                    .map_err(sqlx::Error::Io)?;
            }
        }
        let mut pool = SqlitePoolOptions::new()
            .max_connections(options.max_connections)
            .acquire_timeout(options.connect_timeout);
        if in_memory {
            // An in-memory database lives as long as its last connection: never recycle them.
            pool = pool.idle_timeout(None).max_lifetime(None);
        }
        Ok(Self::new(pool.connect_with(connect).await?, options))
    }
}

/// A write transaction takes the write lock at once, so that one that reads first never
/// fails upgrading its lock.
const BEGIN_WRITE: &str = "BEGIN IMMEDIATE";

async fn begin_write(pool: &SqlitePool) -> Result<Transaction<'static, Sqlite>, sqlx::Error> {
    pool.begin_with(BEGIN_WRITE).await
}

async fn begin_on(conn: &mut SqliteConnection) -> Result<Transaction<'_, Sqlite>, sqlx::Error> {
    sqlx::Connection::begin_with(conn, BEGIN_WRITE).await
}

fn is_in_memory(url: &str) -> bool {
    url.contains(":memory:") || url.contains("mode=memory")
}

impl_store! {
    pool: SqlitePool,
    connection: SqliteConnection,
    engine: "sqlite",
    migrator: MIGRATOR,
    lease_due_jobs: LEASE_DUE_JOBS,
    lease_deliveries: LEASE_DELIVERIES,
    begin_write: begin_write,
    begin_on: begin_on,
    // Member after member in the batch's one transaction: SQLite's cost per callback is the
    // commit's fsync, which the batch already shares; its statements are in-process calls,
    // so there are no round trips to save by going set-based.
    write_batch: write_each,
    // One pool: SQLite's writers serialize on the file's lock anyway.
    group_commit_pool: SqlitePool::clone,
    // SQLite has one writer at a time (`BEGIN IMMEDIATE`): a second group-commit
    // transaction would only wait for the first one's lock.
    group_commit_writers: 1,
    // The writer shares the one pool: a kept connection would be one fewer for the rest.
    group_commit_keeps_connections: false,
}
