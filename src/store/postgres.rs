//! PostgreSQL engine: [`PgStore`].
//!
//! Owns the pool settings, the embedded `migrations/postgres`, and the one statement that
//! differs from SQLite: leasing with `FOR UPDATE SKIP LOCKED`, so replicas sharing the
//! database never lease the same job and never wait on each other's rows. Everything else is
//! the shared SQL in [`super::sql`] run by the shared method bodies in [`super::engine`].
//!
//! Write transactions are plain `BEGIN` (READ COMMITTED): each shared statement is either a
//! single conditional write, which PostgreSQL re-checks against the latest row version, or
//! an upsert that locks the row it conflicts with.

use std::str::FromStr;

use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use sqlx::{Postgres, Transaction};

use super::*;

pub(super) static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

const LEASE_DUE_JOBS: &str = super::sql::lease_due_jobs!("FOR UPDATE SKIP LOCKED");

/// Concurrent group-commit transactions: one collects the next batch while another waits
/// for its commit to flush. Batches are sorted by biz_id, so they never deadlock each other.
const GROUP_COMMIT_WRITERS: usize = 2;

pub struct PgStore {
    pool: PgPool,
    group: Option<super::group::GroupCommit>,
}

impl PgStore {
    /// Connects eagerly: the first connection must succeed within `connect_timeout`, so a
    /// wrong URL or a database that is down fails at startup, not at the first callback.
    pub async fn connect(url: &str, options: &ConnectOptions) -> StoreResult<Self> {
        let connect = PgConnectOptions::from_str(url)?;
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections)
            .acquire_timeout(options.connect_timeout)
            .connect_with(connect)
            .await?;
        let group = options.group_commit.then(|| {
            spawn_group_commit(pool.clone(), options.group_commit_max, GROUP_COMMIT_WRITERS)
        });
        Ok(Self { pool, group })
    }

    async fn begin_write(&self) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
        begin_write_on(&self.pool).await
    }
}

async fn begin_write_on(pool: &PgPool) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
    pool.begin().await
}

super::engine::impl_store! {
    store: PgStore,
    pool: PgPool,
    connection: PgConnection,
    engine: "postgres",
    migrator: MIGRATOR,
    lease_due_jobs: LEASE_DUE_JOBS,
}
