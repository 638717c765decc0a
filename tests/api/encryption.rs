//! Encryption at rest over HTTP: what the API returns is the plaintext, what the database
//! holds is not; a wrong key stops startup with a clear error.

use std::collections::HashMap;
use std::path::PathBuf;

use faceid_receiver::Application;
use faceid_receiver::config::Settings;
use faceid_receiver::startup;
use faceid_receiver::store::{ReencryptCounts, Store, StoreError};

use crate::common::Engine;
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

/// Every stored result, journal body and image, read straight from the tables.
async fn raw_columns(url: &str) -> Vec<Vec<u8>> {
    const RESULTS: &str = "SELECT result FROM verifications WHERE result IS NOT NULL";
    const BODIES: &str = "SELECT body FROM callbacks";
    const IMAGES: &str = "SELECT jpeg FROM images";
    let mut all = Vec::new();
    if url.starts_with("sqlite") {
        let pool = sqlx::SqlitePool::connect(url).await.unwrap();
        let results: Vec<String> = sqlx::query_scalar(RESULTS).fetch_all(&pool).await.unwrap();
        all.extend(results.into_iter().map(String::into_bytes));
        all.extend(
            sqlx::query_scalar::<_, Vec<u8>>(BODIES)
                .fetch_all(&pool)
                .await
                .unwrap(),
        );
        all.extend(
            sqlx::query_scalar::<_, Vec<u8>>(IMAGES)
                .fetch_all(&pool)
                .await
                .unwrap(),
        );
        pool.close().await;
    } else {
        let pool = sqlx::PgPool::connect(url).await.unwrap();
        let results: Vec<String> = sqlx::query_scalar(RESULTS).fetch_all(&pool).await.unwrap();
        all.extend(results.into_iter().map(String::into_bytes));
        all.extend(
            sqlx::query_scalar::<_, Vec<u8>>(BODIES)
                .fetch_all(&pool)
                .await
                .unwrap(),
        );
        all.extend(
            sqlx::query_scalar::<_, Vec<u8>>(IMAGES)
                .fetch_all(&pool)
                .await
                .unwrap(),
        );
        pool.close().await;
    }
    all
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

    // In the tables: nothing readable.
    let columns = raw_columns(app.db.url()).await;
    assert!(columns.len() >= 3, "a result, a journal body and an image");
    for column in &columns {
        for needle in NEEDLES {
            assert!(
                !contains(column, needle.as_bytes()),
                "{needle} stored in clear"
            );
        }
    }
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
    let store = startup::connect_encrypted(&rotated).await.unwrap();

    let all = ReencryptCounts {
        results: 1,
        images: 1,
        journal_bodies: 1,
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
    for column in raw_columns(&url).await {
        for needle in NEEDLES {
            assert!(!contains(&column, needle.as_bytes()), "{needle} in clear");
        }
    }
}

mod sqlite {
    use super::*;

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
