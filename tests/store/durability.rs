//! The settings that make an acknowledgement durable, observed on the connections the store
//! really pools (not on a connection the test opens itself): on SQLite every pooled connection
//! runs the WAL journal with `synchronous = FULL` (or what `database.sqlite_synchronous`
//! says) and foreign keys on; on PostgreSQL a pooled connection commits with
//! `synchronous_commit = on`. A build that weakened either would otherwise pass every test.

use faceid_receiver::store::{ConnectOptions, Database, PgStore, SqliteStore};
use sqlx::pool::PoolConnection;

use crate::common;

/// How many connections to hold at once: each is a distinct pooled connection, so a setting
/// applied to only some of them (the first, say) is caught.
const HELD: usize = 4;

/// `(journal_mode, synchronous, foreign_keys)` of each of `HELD` pooled connections.
async fn sqlite_settings(options: &ConnectOptions) -> Vec<(String, i64, i64)> {
    let dir = common::TempDirGuard::new();
    let store = SqliteStore::connect(dir.url(), options).await.unwrap();
    let mut held: Vec<PoolConnection<sqlx::Sqlite>> = Vec::new();
    for _ in 0..HELD {
        held.push(store.pool().acquire().await.unwrap());
    }
    let mut settings = Vec::new();
    for conn in &mut held {
        let journal: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(&mut **conn)
            .await
            .unwrap();
        let synchronous: i64 = sqlx::query_scalar("PRAGMA synchronous")
            .fetch_one(&mut **conn)
            .await
            .unwrap();
        let foreign_keys: i64 = sqlx::query_scalar("PRAGMA foreign_keys")
            .fetch_one(&mut **conn)
            .await
            .unwrap();
        settings.push((journal, synchronous, foreign_keys));
    }
    assert_eq!(
        store.pool().size() as usize,
        HELD,
        "{HELD} distinct connections"
    );
    drop(held);
    store.pool().close().await;
    settings
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_pooled_sqlite_connection_runs_wal_with_synchronous_full() {
    let defaults = ConnectOptions::default();
    assert_eq!(defaults.sqlite_synchronous, "full");
    // PRAGMA synchronous: 0 OFF, 1 NORMAL, 2 FULL, 3 EXTRA.
    assert_eq!(
        sqlite_settings(&defaults).await,
        vec![("wal".to_owned(), 2, 1); HELD]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_synchronous_follows_the_configuration_on_every_pooled_connection() {
    let normal = ConnectOptions {
        sqlite_synchronous: "normal".into(),
        ..ConnectOptions::default()
    };
    assert_eq!(
        sqlite_settings(&normal).await,
        vec![("wal".to_owned(), 1, 1); HELD]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pooled_postgres_connection_commits_with_synchronous_commit_on() {
    let Some(mut db) = common::postgres_url().await else {
        return;
    };
    let store = PgStore::connect(db.url(), &ConnectOptions::default())
        .await
        .unwrap();
    let mut held = Vec::new();
    for _ in 0..2 {
        held.push(store.pool().acquire().await.unwrap());
    }
    for conn in &mut held {
        let setting: String = sqlx::query_scalar("SHOW synchronous_commit")
            .fetch_one(&mut **conn)
            .await
            .unwrap();
        assert_eq!(setting, "on");
        let fsync: String = sqlx::query_scalar("SHOW fsync")
            .fetch_one(&mut **conn)
            .await
            .unwrap();
        assert_eq!(fsync, "on", "the server flushes its WAL");
    }
    drop(held);
    // Group commit writes on connections of its own: they commit as durably, and plan its
    // statement once (generic plans), which the rest of the pool does not.
    let group_pool = store
        .group_commit_pool()
        .expect("group commit is on by default");
    let mut writer = group_pool.acquire().await.unwrap();
    let setting: String = sqlx::query_scalar("SHOW synchronous_commit")
        .fetch_one(&mut *writer)
        .await
        .unwrap();
    assert_eq!(setting, "on", "group commit's own connections");
    let plans: String = sqlx::query_scalar("SHOW plan_cache_mode")
        .fetch_one(&mut *writer)
        .await
        .unwrap();
    assert_eq!(plans, "force_generic_plan");
    let mut other = store.pool().acquire().await.unwrap();
    let plans: String = sqlx::query_scalar("SHOW plan_cache_mode")
        .fetch_one(&mut *other)
        .await
        .unwrap();
    assert_eq!(plans, "auto", "the rest of the pool keeps custom plans");
    drop((writer, other));
    store.close().await;
    db.drop_database().await;
}
