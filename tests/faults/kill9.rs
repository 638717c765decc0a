//! `kill -9` of the real `serve` under notify load: every callback that got a 2xx is stored
//! (its verification row and its journal row), on SQLite and on PostgreSQL.

use std::time::{Duration, Instant};

use crate::common::{self, Engine, TestDatabase};
use crate::helpers::*;

/// Senders posting at once.
const CONCURRENCY: usize = 16;
/// Acknowledgements seen before the kill.
const ACKS_BEFORE_KILL: usize = 200;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_every_acknowledged_notify_survives_kill_9() {
    every_acknowledged_notify_survives_kill_9(Engine::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_every_acknowledged_notify_survives_kill_9() {
    every_acknowledged_notify_survives_kill_9(Engine::Postgres).await;
}

async fn every_acknowledged_notify_survives_kill_9(engine: Engine) {
    let Some(db) = TestDatabase::create(engine).await else {
        return;
    };
    let started = Instant::now();
    let mut serve = Serve::start(db.url(), &[]).await;
    let load = NotifyLoad::start(&serve.base, CONCURRENCY);
    load.wait_for("acknowledgements", Duration::from_secs(60), |sent| {
        sent.iter().filter(|s| s.is_2xx()).count() >= ACKS_BEFORE_KILL
    })
    .await;
    // Mid-load: CONCURRENCY requests are in flight, some of them mid-commit.
    serve.kill();
    // Everything sent from now on finds nobody; let each sender see that once.
    let killed_at = Instant::now();
    load.wait_for("refused connections", Duration::from_secs(30), |sent| {
        sent.iter().filter(|s| s.started > killed_at).count() >= CONCURRENCY
    })
    .await;
    let sent = load.stop().await;
    assert!(
        sent.iter()
            .filter(|s| s.started > killed_at)
            .all(|s| s.status.is_none()),
        "nothing answers after kill -9"
    );

    let store = common::connect_migrated(db.url()).await;
    let acked = assert_all_acked_stored(&store, &sent).await;
    store.close().await;
    eprintln!(
        "kill -9 ({engine:?}): {} requests ({}), all {acked} acknowledged ones stored; {:?}",
        sent.len(),
        summary(&sent),
        started.elapsed()
    );
}
