//! What the store answers when the database goes away (always `Unavailable`, never a
//! success), and how it connects: the SQLite file's directory, a PostgreSQL nobody answers
//! within `connect_timeout`, an unknown scheme.

use std::sync::Arc;

use faceid_receiver::store::{CallbackKind, ConnectOptions, JobEffect, Store, StoreError};

use super::{MAX_CALLS, NOW, biz, delivery, rejected, signed_notify};
use crate::common;

crate::store_tests!(a_closed_store_answers_unavailable);

pub(crate) fn assert_unavailable<T: std::fmt::Debug>(what: &str, result: Result<T, StoreError>) {
    match result {
        Err(StoreError::Unavailable(_)) => {}
        other => panic!("{what}: expected StoreError::Unavailable, got {other:?}"),
    }
}

async fn assert_store_unavailable(store: &Arc<dyn Store>) {
    let id = biz("down");
    assert_unavailable("ping", store.ping().await);
    assert_unavailable(
        "journal_rejected",
        store
            .journal_rejected(&rejected(CallbackKind::Notify, None, "x", NOW))
            .await,
    );
    let entry = delivery(CallbackKind::Notify, Some(&id), true, NOW);
    assert_unavailable(
        "accept_signed",
        store
            .accept_signed(entry, signed_notify(&id, "OK"), JobEffect::Keep)
            .await,
    );
    assert_unavailable(
        "reserve_call",
        store.reserve_call(&id, "w1", NOW, NOW, MAX_CALLS).await,
    );
    assert_unavailable("get", store.get(&id).await);
}

async fn a_closed_store_answers_unavailable(store: Arc<dyn Store>) {
    store.ping().await.expect("up before closing");
    // A signed callback first: on PostgreSQL, its group-commit writer keeps its connection.
    let id = biz("before-close");
    let entry = delivery(CallbackKind::Notify, Some(&id), true, NOW);
    store
        .accept_signed(entry, signed_notify(&id, "OK"), JobEffect::Keep)
        .await
        .expect("stored before closing");

    // Closing waits for every connection in use: the kept one is handed back, not waited on.
    tokio::time::timeout(std::time::Duration::from_secs(20), store.close())
        .await
        .expect("close returns");

    assert_store_unavailable(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_postgres_database_answers_unavailable() {
    let Some((store, mut db)) = common::postgres_store().await else {
        return;
    };
    store.ping().await.expect("up before the drop");

    db.drop_database().await;

    assert_store_unavailable(&store).await;
    store.close().await;
}

#[tokio::test]
async fn sqlite_creates_the_database_directory_when_missing() {
    let dir = common::TempDirGuard::new();
    let file = dir.path().join("data").join("nested").join("faceid.db");
    let url = format!("sqlite://{}?mode=rwc", file.display());

    let store = common::connect_migrated(&url).await;

    assert_eq!(store.engine(), "sqlite");
    store.ping().await.unwrap();
    assert!(file.exists());
    store.close().await;
}

#[tokio::test]
async fn a_postgres_url_nobody_answers_fails_fast_as_unavailable() {
    let options = ConnectOptions {
        connect_timeout: std::time::Duration::from_secs(2),
        ..Default::default()
    };
    let started = std::time::Instant::now();

    let result =
        faceid_receiver::store::connect("postgres://postgres@127.0.0.1:1/nothing", &options).await;

    assert!(
        matches!(result, Err(StoreError::Unavailable(_))),
        "a refused connection is Unavailable"
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "bounded by connect_timeout"
    );
}

#[tokio::test]
async fn an_unknown_scheme_is_refused() {
    let result =
        faceid_receiver::store::connect("mysql://localhost/x", &ConnectOptions::default()).await;
    assert!(matches!(result, Err(StoreError::UnsupportedUrl(scheme)) if scheme == "mysql"));
}
