//! Unauthenticated bodies cannot fill the disk. A refused delivery (and an unsigned return
//! GET) is journaled whole only while it is small and within the daily quota; otherwise its
//! first KiB, its full length and its sha256. Refused deliveries are purged after
//! `retention.refused_days`. Signed, accepted deliveries are kept whole as before.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use faceid_receiver::clock::SharedClock;
use faceid_receiver::config::Settings;
use rand::distr::{Alphanumeric, SampleString};
use sha2::{Digest, Sha256};
use sqlx::{Connection, PgConnection, SqliteConnection};

use crate::common::Engine;
use crate::helpers::{NOW_MS, TestApp, form_body, result_data};
use crate::on_both_engines;

const KIB: usize = 1024;
const DAY_MS: i64 = 86_400_000;

/// One journal row as stored, straight from the database.
#[derive(Debug)]
struct StoredRow {
    outcome: String,
    body_len: i64,
    body_sha256: String,
    body: Vec<u8>,
}

fn sqlite_path(url: &str) -> PathBuf {
    let path = url.trim_start_matches("sqlite://");
    PathBuf::from(path.split('?').next().unwrap())
}

/// Bytes the database occupies: PostgreSQL's own count for the database (heap, TOAST,
/// indexes, free space and visibility maps); for SQLite the file plus its write-ahead log.
async fn database_bytes(app: &TestApp) -> u64 {
    let url = app.db.url();
    match app.db.engine() {
        Engine::Postgres => {
            let mut conn = PgConnection::connect(url).await.unwrap();
            let bytes: i64 = sqlx::query_scalar("SELECT pg_database_size(current_database())")
                .fetch_one(&mut conn)
                .await
                .unwrap();
            bytes as u64
        }
        Engine::Sqlite => {
            let path = sqlite_path(url);
            let size = |p: PathBuf| std::fs::metadata(p).map_or(0, |m| m.len());
            let mut wal = path.clone().into_os_string();
            wal.push("-wal");
            size(path) + size(PathBuf::from(wal))
        }
    }
}

/// PostgreSQL only: the journal table with its TOAST and indexes, for the report.
async fn journal_table_bytes(app: &TestApp) -> Option<i64> {
    if app.db.engine() != Engine::Postgres {
        return None;
    }
    let mut conn = PgConnection::connect(app.db.url()).await.unwrap();
    sqlx::query_scalar("SELECT pg_total_relation_size('callbacks')")
        .fetch_one(&mut conn)
        .await
        .ok()
}

/// Every journal row, oldest first.
async fn stored_rows(app: &TestApp) -> Vec<StoredRow> {
    const SQL: &str = "SELECT outcome, body_len, body_sha256, body FROM callbacks ORDER BY id";
    let rows: Vec<(String, i64, String, Vec<u8>)> = match app.db.engine() {
        Engine::Postgres => {
            let mut conn = PgConnection::connect(app.db.url()).await.unwrap();
            sqlx::query_as(SQL).fetch_all(&mut conn).await.unwrap()
        }
        Engine::Sqlite => {
            let mut conn = SqliteConnection::connect(app.db.url()).await.unwrap();
            sqlx::query_as(SQL).fetch_all(&mut conn).await.unwrap()
        }
    };
    rows.into_iter()
        .map(|(outcome, body_len, body_sha256, body)| StoredRow {
            outcome,
            body_len,
            body_sha256,
            body,
        })
        .collect()
}

/// A notify body of about `len` bytes whose sign is wrong: random (incompressible) text, so
/// neither engine can make it small by compressing it.
fn forged_body(len: usize) -> String {
    let data = Alphanumeric.sample_string(&mut rand::rng(), len);
    form_body(&data, &"0".repeat(40))
}

async fn post_forged(app: &TestApp, body: &str) {
    let response = app.post_form("/faceid/notify", body.to_owned()).await;
    assert_eq!(response.status(), 403, "a forged notify is refused");
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

on_both_engines!(
    eight_forged_900_kb_notifies_grow_the_database_by_well_under_a_megabyte,
    a_small_refused_body_is_kept_whole_and_a_large_one_as_its_first_kib,
    small_refused_bodies_past_the_daily_quota_keep_their_first_kib_until_the_next_day,
    refused_return_gets_count_against_the_daily_quota_too,
    refused_deliveries_are_purged_after_refused_days_and_accepted_ones_stay,
);

async fn eight_forged_900_kb_notifies_grow_the_database_by_well_under_a_megabyte(engine: Engine) {
    // Arrange
    let Some(app) = crate::app_on(engine, &[]).await else {
        return;
    };
    let before = database_bytes(&app).await;

    // Act: 7.2 MB of forgeries.
    for _ in 0..8 {
        post_forged(&app, &forged_body(900_000)).await;
    }

    // Assert
    let after = database_bytes(&app).await;
    let grown = after.saturating_sub(before);
    eprintln!(
        "{engine:?}: database {before} -> {after} bytes (+{grown}); callbacks table: {:?}",
        journal_table_bytes(&app).await
    );
    assert!(
        grown < 256 * KIB as u64,
        "the database grew by {grown} bytes for 8 forged bodies"
    );
    let rows = stored_rows(&app).await;
    assert_eq!(rows.len(), 8, "every forgery is journaled");
    for row in rows {
        assert_eq!(row.outcome, "rejected");
        assert!(
            row.body_len > 900_000,
            "the full length is kept: {}",
            row.body_len
        );
        assert_eq!(row.body.len(), KIB, "only the first KiB is kept");
    }
}

async fn a_small_refused_body_is_kept_whole_and_a_large_one_as_its_first_kib(engine: Engine) {
    // Arrange
    let Some(app) = crate::app_on(engine, &[]).await else {
        return;
    };
    let small = forged_body(2_000);
    let large = forged_body(200_000);

    // Act
    post_forged(&app, &small).await;
    post_forged(&app, &large).await;

    // Assert: whole means byte-exact and `length(body) = body_len`; the hash is always of
    // the whole body, so a capped row still identifies what was sent.
    let rows = stored_rows(&app).await;
    assert!(
        rows[0].body == small.as_bytes(),
        "a small refused body is kept whole"
    );
    assert_eq!(rows[0].body_len, small.len() as i64);
    assert_eq!(rows[0].body_sha256, sha256_hex(small.as_bytes()));
    assert_eq!(
        rows[1].body.len(),
        KIB,
        "a large one is cut to its first KiB"
    );
    assert!(rows[1].body == large.as_bytes()[..KIB]);
    assert_eq!(rows[1].body_len, large.len() as i64);
    assert_eq!(rows[1].body_sha256, sha256_hex(large.as_bytes()));
}

async fn small_refused_bodies_past_the_daily_quota_keep_their_first_kib_until_the_next_day(
    engine: Engine,
) {
    // Arrange: a quota of 10 000 bytes a day.
    let Some(app) = crate::app_on(
        engine,
        &[("APP__RETENTION__REFUSED_BYTES_PER_DAY", "10000")],
    )
    .await
    else {
        return;
    };
    let body = forged_body(4_000);

    // Act: three today (the third would pass the quota), one tomorrow.
    for _ in 0..3 {
        post_forged(&app, &body).await;
    }
    app.clock.advance(DAY_MS);
    post_forged(&app, &body).await;

    // Assert
    let kept: Vec<usize> = stored_rows(&app)
        .await
        .iter()
        .map(|r| r.body.len())
        .collect();
    assert_eq!(kept, [body.len(), body.len(), KIB, body.len()]);
}

async fn refused_return_gets_count_against_the_daily_quota_too(engine: Engine) {
    // Arrange: room for one 60 KB query a day. (A request line cannot be longer than 64 KiB
    // anyway, so for GETs the quota is what bounds the journal.)
    let Some(app) = crate::app_on(
        engine,
        &[("APP__RETENTION__REFUSED_BYTES_PER_DAY", "100000")],
    )
    .await
    else {
        return;
    };
    let junk = Alphanumeric.sample_string(&mut rand::rng(), 60_000);

    // Act: three junk return GETs without a biz_id.
    for _ in 0..3 {
        let response = app.get(&format!("/faceid/return?junk={junk}")).await;
        assert_eq!(response.status(), 400);
    }

    // Assert
    let rows = stored_rows(&app).await;
    let kept: Vec<(i64, usize)> = rows.iter().map(|r| (r.body_len, r.body.len())).collect();
    assert_eq!(kept, [(60_005, 60_005), (60_005, KIB), (60_005, KIB)]);
}

async fn refused_deliveries_are_purged_after_refused_days_and_accepted_ones_stay(engine: Engine) {
    // Arrange: the default settings, a refused and an accepted delivery 40 days ago, and a
    // refused one today.
    let Some(app) = crate::app_on(engine, &[]).await else {
        return;
    };
    let config = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config");
    let defaults = Settings::load_from(&HashMap::new(), &config)
        .unwrap()
        .settings;
    app.clock.set(NOW_MS - 40 * DAY_MS);
    post_forged(&app, &forged_body(100)).await;
    let old = result_data("1791936000,old-accepted", "o", "OK");
    assert_eq!(app.notify(&old).await.status(), 200);
    app.clock.set(NOW_MS);
    post_forged(&app, &forged_body(100)).await;

    // Act
    let clock: SharedClock = Arc::new(app.clock.clone());
    let counts = faceid_receiver::retention::purge_once(
        app.store.as_ref(),
        &defaults.retention,
        &clock,
        false,
    )
    .await
    .unwrap();

    // Assert
    assert_eq!(defaults.retention.refused_days, 30);
    assert_eq!(counts.refused, 1);
    let outcomes: Vec<(String, i64)> = app
        .journal(None)
        .await
        .iter()
        .map(|row| {
            (
                row["outcome"].as_str().unwrap().to_owned(),
                row["id"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        outcomes.iter().map(|(o, _)| o.as_str()).collect::<Vec<_>>(),
        ["rejected", "stored"],
        "today's refusal and the old accepted delivery stay: {outcomes:?}"
    );
    let stored = stored_rows(&app).await;
    assert!(
        stored[0].body == old_body_of(&old),
        "accepted bodies are untouched"
    );
}

/// The form body `app.notify` sends for `data`.
fn old_body_of(data: &str) -> Vec<u8> {
    crate::helpers::signed_form(data).into_bytes()
}
