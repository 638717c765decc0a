//! Encryption at rest over HTTP: what the API returns is the plaintext, what the database
//! holds is not (every text and binary column of every table, and SQLite's database and WAL
//! files, scanned byte for byte); a wrong key stops startup with a clear error.

use std::collections::HashMap;
use std::path::PathBuf;

use faceid_receiver::Application;
use faceid_receiver::config::Settings;
use faceid_receiver::startup;
use faceid_receiver::store::{ReencryptCounts, StoreError};

use crate::common::{Engine, force_journal_body, stored_journal_body};
use crate::helpers::*;

const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const OTHER_KEY: &str = "HxweHRwbGhkYFxYVFBMSERAPDg0MCwoJCAcGBQQDAgE=";

/// Identity data of the seed, as it could appear in any stored column (the journal keeps
/// the form body, where it is percent-encoded).
const NEEDLES: [&str; 5] = [
    "陈AB",
    "%E9%99%88AB",
    "xxxxxx19910602xxxx",
    "北京市海淀区",
    "JFIF-face-of-chen",
];

async fn encrypted_app(engine: Engine) -> Option<TestApp> {
    let options = Options {
        env: vec![("APP__ENCRYPTION__KEY", KEY.to_owned())],
        ..Default::default()
    };
    spawn_app(engine, options).await
}

/// Every value of every text or binary column of every table (the columns enumerated from
/// the catalog, not listed by hand), as bytes, labelled `table.column`.
async fn raw_columns(url: &str) -> Vec<(String, Vec<u8>)> {
    let mut all = Vec::new();
    if url.starts_with("sqlite") {
        let pool = sqlx::SqlitePool::connect(url).await.unwrap();
        // SQLite stores any type in any column: read every column of every table as bytes.
        let columns: Vec<(String, String)> = sqlx::query_as(
            "SELECT t.name, c.name FROM sqlite_master AS t, pragma_table_info(t.name) AS c \
             WHERE t.type = 'table' ORDER BY 1, 2",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        for (table, column) in columns {
            let query = format!(
                r#"SELECT CAST("{column}" AS BLOB) FROM "{table}" WHERE "{column}" IS NOT NULL"#
            );
            let values: Vec<Vec<u8>> = sqlx::query_scalar(sqlx::AssertSqlSafe(query))
                .fetch_all(&pool)
                .await
                .unwrap();
            all.extend(values.into_iter().map(|v| (format!("{table}.{column}"), v)));
        }
        pool.close().await;
    } else {
        let pool = sqlx::PgPool::connect(url).await.unwrap();
        let columns: Vec<(String, String, String)> = sqlx::query_as(
            "SELECT table_name::text, column_name::text, data_type::text \
             FROM information_schema.columns \
             WHERE table_schema = 'public' \
               AND data_type IN ('text', 'bytea', 'character varying', 'character', 'json', 'jsonb') \
             ORDER BY 1, 2",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        for (table, column, data_type) in columns {
            let value = if data_type == "bytea" {
                format!(r#""{column}""#)
            } else {
                format!(r#"convert_to("{column}"::text, 'UTF8')"#)
            };
            let query = format!(r#"SELECT {value} FROM "{table}" WHERE "{column}" IS NOT NULL"#);
            let values: Vec<Vec<u8>> = sqlx::query_scalar(sqlx::AssertSqlSafe(query))
                .fetch_all(&pool)
                .await
                .unwrap();
            all.extend(values.into_iter().map(|v| (format!("{table}.{column}"), v)));
        }
        pool.close().await;
    }
    for needed in ["verifications.result", "callbacks.body", "images.jpeg"] {
        assert!(
            all.iter().any(|(label, _)| label == needed),
            "the scan read no value of {needed}: {:?}",
            all.iter()
                .map(|(l, _)| l)
                .collect::<std::collections::BTreeSet<_>>()
        );
    }
    all
}

/// The SQLite database file and its WAL (while the service runs, recent pages live there),
/// byte for byte; nothing for PostgreSQL.
fn raw_files(url: &str) -> Vec<(String, Vec<u8>)> {
    let Some(path) = url.strip_prefix("sqlite://") else {
        return Vec::new();
    };
    let path = path.split('?').next().unwrap();
    let files: Vec<(String, Vec<u8>)> = [path.to_owned(), format!("{path}-wal")]
        .into_iter()
        .filter_map(|p| std::fs::read(&p).ok().map(|bytes| (p, bytes)))
        .collect();
    assert!(
        files.iter().map(|(_, b)| b.len()).sum::<usize>() > 0,
        "no SQLite file read at {path}"
    );
    files
}

/// Panics if any needle appears in any of `values`.
fn assert_no_plaintext(values: &[(String, Vec<u8>)]) {
    for (label, value) in values {
        for needle in NEEDLES {
            assert!(
                !contains(value, needle.as_bytes()),
                "{needle} stored in clear in {label}"
            );
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn settings_with_key(db_url: &str, key: &str) -> Settings {
    let env: HashMap<String, String> = [
        ("APP__SERVER__LISTEN", "127.0.0.1:0"),
        ("APP__API__TOKENS", TOKEN),
        ("APP__MEGVII__API_SECRET", SECRET),
        ("APP__DATABASE__URL", db_url),
        ("APP__ENCRYPTION__KEY", key),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config");
    Settings::load_from(&env, &dir).unwrap().settings
}

async fn identity_data_round_trips_through_the_api_and_the_tables_hold_no_plaintext(
    engine: Engine,
) {
    let Some(app) = encrypted_app(engine).await else {
        return;
    };
    store_seed_with_image(&app).await;

    // Through the API (pii scope): the plaintext, byte-exact.
    let record = app
        .api(&format!("/verifications/{}", encode_path(SEED_BIZ_ID)))
        .await
        .text()
        .await
        .unwrap();
    assert!(record.contains(SEED_OK.trim()), "decrypted byte-exact");
    let image = app
        .api(&format!(
            "/verifications/{}/images/image_best",
            encode_path(SEED_BIZ_ID)
        ))
        .await;
    assert_eq!(image.status(), 200);
    assert_eq!(image.bytes().await.unwrap().as_ref(), JPEG);

    // In the tables and (SQLite) in the database and WAL files: nothing readable.
    assert_no_plaintext(&raw_columns(app.db.url()).await);
    assert_no_plaintext(&raw_files(app.db.url()));
}

async fn a_wrong_key_stops_startup_and_reads_fail_clearly(engine: Engine) {
    let Some(app) = encrypted_app(engine).await else {
        return;
    };
    store_seed_with_image(&app).await;
    let url = app.db.url().to_owned();

    let wrong = settings_with_key(&url, OTHER_KEY);
    let error = match Application::build(wrong.clone()).await {
        Ok(_) => panic!("a wrong key must stop startup"),
        Err(e) => format!("{e:#}"),
    };
    assert!(error.contains("decrypt"), "{error}");
    assert!(
        !error.contains(OTHER_KEY) && !error.contains(KEY),
        "no key in the message"
    );

    let store = startup::connect_store(&wrong).await.unwrap();
    assert!(matches!(
        store.get(SEED_BIZ_ID).await,
        Err(StoreError::Decrypt(_))
    ));
    assert!(matches!(
        store.image(SEED_BIZ_ID, "image_best").await,
        Err(StoreError::Decrypt(_))
    ));
    store.close().await;

    // The old key as a previous key still reads (rotation).
    let mut rotated = settings_with_key(&url, OTHER_KEY);
    rotated.encryption.previous_keys = vec![KEY.to_owned().into()];
    let store = startup::connect_store(&rotated).await.unwrap();
    let record = store.get(SEED_BIZ_ID).await.unwrap().unwrap();
    assert_eq!(record.result.as_deref(), Some(SEED_OK));
    store.close().await;
}

async fn reencrypt_moves_every_value_to_the_new_key(engine: Engine) {
    let Some(app) = encrypted_app(engine).await else {
        return;
    };
    store_seed_with_image(&app).await;
    let url = app.db.url().to_owned();
    let mut rotated = settings_with_key(&url, OTHER_KEY);
    rotated.encryption.previous_keys = vec![KEY.to_owned().into()];
    let store = startup::connect_store(&rotated).await.unwrap();

    let all = ReencryptCounts {
        results: 1,
        images: 1,
        journal_bodies: 1,
        unreadable_journal_bodies: 0,
    };
    assert_eq!(store.reencrypt(true).await.unwrap(), all, "dry run counts");
    assert_eq!(
        store.reencrypt(true).await.unwrap(),
        all,
        "and changes nothing"
    );
    assert_eq!(store.reencrypt(false).await.unwrap(), all);
    assert_eq!(
        store.reencrypt(false).await.unwrap(),
        ReencryptCounts::default(),
        "a second run finds nothing left"
    );
    store.close().await;

    // The old key can now be dropped: the new one alone reads everything.
    let new_only = startup::connect_store(&settings_with_key(&url, OTHER_KEY))
        .await
        .unwrap();
    let record = new_only.get(SEED_BIZ_ID).await.unwrap().unwrap();
    assert_eq!(record.result.as_deref(), Some(SEED_OK));
    assert_eq!(
        new_only
            .image(SEED_BIZ_ID, "image_best")
            .await
            .unwrap()
            .as_deref(),
        Some(JPEG)
    );
    new_only.close().await;
    assert_no_plaintext(&raw_columns(&url).await);
    assert_no_plaintext(&raw_files(&url));
}

/// A service without a key journals strangers' refused bodies that begin with the magic of the
/// sealed format (`FIDE`), and an older version had kept a capped prefix of one in clear.
/// Turning encryption on (`faceid-receiver reencrypt`) seals everything else, and reports the
/// prefix it cannot tell from a sealed value instead of stopping on it.
async fn turning_encryption_on_reencrypts_around_a_strangers_magic_body(engine: Engine) {
    let Some(app) = spawn_app(engine, Options::default()).await else {
        return;
    };
    store_seed_with_image(&app).await;
    let strangers = magic_bodies(KEY);
    let big = [&strangers[2][..6], &vec![b'x'; 70_000]].concat();
    for body in strangers.iter().chain([&big]) {
        app.notify_refused(body.clone()).await;
    }
    let url = app.db.url().to_owned();
    let journal = app.journal(None).await;
    let capped = journal
        .iter()
        .find(|row| row["body_len"] == big.len())
        .and_then(|row| row["id"].as_i64())
        .expect("the big body's journal row");
    // What the journal kept of it (its first 1024 bytes), as an older version stored it.
    force_journal_body(&url, capped, &big[..1024]).await;

    let key = [("APP__ENCRYPTION__KEY", KEY)];
    let unreadable = "1 journal bodies of unverified deliveries could not be read";
    // The seed's notify and the three strangers' whole bodies.
    let dry = app.command(&["reencrypt", "--dry-run"], &key).await;
    assert!(
        dry.contains("would re-encrypt: 1 results, 1 images, 4 journal bodies")
            && dry.contains(unreadable),
        "{dry}"
    );
    let done = app.command(&["reencrypt"], &key).await;
    assert!(
        done.contains("re-encrypted: 1 results, 1 images, 4 journal bodies")
            && done.contains(unreadable),
        "{done}"
    );
    let again = app.command(&["reencrypt"], &key).await;
    assert!(
        again.contains("re-encrypted: 0 results, 0 images, 0 journal bodies")
            && again.contains(unreadable),
        "{again}"
    );

    // Nothing identifying, and none of the strangers' whole bodies, is left in clear.
    let columns = raw_columns(&url).await;
    assert_no_plaintext(&columns);
    for body in &strangers {
        assert!(
            !columns
                .iter()
                .any(|(label, value)| label == "callbacks.body" && value == body),
            "a stranger's body left in clear"
        );
    }
    assert_eq!(stored_journal_body(&url, capped).await, &big[..1024]);
}

/// The wrong key fails `reencrypt` as it fails startup: a misconfigured key is never a
/// skipped value.
async fn reencrypt_with_a_wrong_key_fails_and_names_no_key(engine: Engine) {
    let Some(app) = encrypted_app(engine).await else {
        return;
    };
    store_seed_with_image(&app).await;
    let wrong = startup::connect_store(&settings_with_key(app.db.url(), OTHER_KEY))
        .await
        .unwrap();
    for dry_run in [true, false] {
        let error = wrong.reencrypt(dry_run).await.unwrap_err();
        assert!(matches!(error, StoreError::Decrypt(_)), "{error}");
        assert!(!error.to_string().contains(OTHER_KEY), "{error}");
    }
    wrong.close().await;
}

mod sqlite {
    use super::*;

    #[tokio::test]
    async fn turning_encryption_on_reencrypts_around_a_strangers_magic_body() {
        super::turning_encryption_on_reencrypts_around_a_strangers_magic_body(Engine::Sqlite).await;
    }

    #[tokio::test]
    async fn reencrypt_with_a_wrong_key_fails_and_names_no_key() {
        super::reencrypt_with_a_wrong_key_fails_and_names_no_key(Engine::Sqlite).await;
    }

    #[tokio::test]
    async fn reencrypt_moves_every_value_to_the_new_key() {
        super::reencrypt_moves_every_value_to_the_new_key(Engine::Sqlite).await;
    }

    #[tokio::test]
    async fn identity_data_round_trips_through_the_api_and_the_tables_hold_no_plaintext() {
        super::identity_data_round_trips_through_the_api_and_the_tables_hold_no_plaintext(
            Engine::Sqlite,
        )
        .await;
    }

    #[tokio::test]
    async fn a_wrong_key_stops_startup_and_reads_fail_clearly() {
        super::a_wrong_key_stops_startup_and_reads_fail_clearly(Engine::Sqlite).await;
    }
}

mod postgres {
    use super::*;

    #[tokio::test]
    async fn turning_encryption_on_reencrypts_around_a_strangers_magic_body() {
        super::turning_encryption_on_reencrypts_around_a_strangers_magic_body(Engine::Postgres)
            .await;
    }

    #[tokio::test]
    async fn reencrypt_with_a_wrong_key_fails_and_names_no_key() {
        super::reencrypt_with_a_wrong_key_fails_and_names_no_key(Engine::Postgres).await;
    }

    #[tokio::test]
    async fn reencrypt_moves_every_value_to_the_new_key() {
        super::reencrypt_moves_every_value_to_the_new_key(Engine::Postgres).await;
    }

    #[tokio::test]
    async fn identity_data_round_trips_through_the_api_and_the_tables_hold_no_plaintext() {
        super::identity_data_round_trips_through_the_api_and_the_tables_hold_no_plaintext(
            Engine::Postgres,
        )
        .await;
    }

    #[tokio::test]
    async fn a_wrong_key_stops_startup_and_reads_fail_clearly() {
        super::a_wrong_key_stops_startup_and_reads_fail_clearly(Engine::Postgres).await;
    }
}
