//! Identity data protection over HTTP: masking by scope, images behind the `pii` scope, and
//! the access log of pii reads.

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::api_tests;
use crate::helpers::*;

api_tests!(
    results_are_masked_without_the_pii_scope_and_byte_exact_with_it,
    images_need_the_pii_scope,
    pii_reads_are_access_logged_and_other_reads_are_not,
);

fn record_path() -> String {
    format!("/verifications/{}", encode_path(SEED_BIZ_ID))
}

fn image_path() -> String {
    format!(
        "/verifications/{}/images/image_best",
        encode_path(SEED_BIZ_ID)
    )
}

async fn results_are_masked_without_the_pii_scope_and_byte_exact_with_it(app: TestApp) {
    assert_eq!(app.notify(SEED_OK).await.status(), 200);

    // Without the scope: identity values are gone, the structure and the verdict stay.
    let plain = app.api_as(PLAIN_TOKEN, &record_path()).await;
    assert_eq!(plain.status(), 200);
    let text = plain.text().await.unwrap();
    for secret in [
        "陈AB",
        "xxxxxx19910602xxxx",
        "北京市海淀区",
        "2010.11.13-2020.11.13",
    ] {
        assert!(
            !text.contains(secret),
            "{secret} shown without the pii scope"
        );
    }
    let record: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(record["status"], "OK");
    let result = &record["result"];
    assert_eq!(result["idcard_info"]["idcard_name"], "***");
    assert_eq!(
        result["idcard_info"]["front_side"]["ocr_result"]["address"],
        "***"
    );
    assert_eq!(result["status"], "OK");
    assert_eq!(result["liveness_result"]["procedure_type"], "video");
    assert_eq!(
        result["verify_result"]["result_faceid"]["confidence"],
        68.918
    );

    let list: Value = app
        .api_as(PLAIN_TOKEN, "/verifications")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        list["items"][0]["result"]["idcard_info"]["idcard_number"],
        "***"
    );

    // With the scope: FaceID's bytes exactly.
    let pii = app.api(&record_path()).await.text().await.unwrap();
    assert!(
        pii.contains(SEED_OK.trim()),
        "pii callers get the raw result byte-exact"
    );
}

async fn images_need_the_pii_scope(app: TestApp) {
    store_seed_with_image(&app).await;

    let plain = app.api_as(PLAIN_TOKEN, &image_path()).await;
    assert_eq!(plain.status(), 403);
    assert_eq!(error_code(plain).await, "forbidden");

    let pii = app.api(&image_path()).await;
    assert_eq!(pii.status(), 200);
    assert_eq!(pii.bytes().await.unwrap().as_ref(), JPEG);
}

async fn pii_reads_are_access_logged_and_other_reads_are_not(app: TestApp) {
    store_seed_with_image(&app).await;

    for path in [record_path(), "/verifications".to_owned()] {
        assert_eq!(app.api_as(PLAIN_TOKEN, &path).await.status(), 200);
    }
    assert_eq!(app.api_as(PLAIN_TOKEN, &image_path()).await.status(), 403);
    assert!(
        app.store.access_log(None, 100).await.unwrap().is_empty(),
        "masked reads disclose nothing and are not logged"
    );

    app.clock.set(NOW_MS + 1_000);
    for path in [record_path(), "/verifications".to_owned(), image_path()] {
        assert_eq!(app.api(&path).await.status(), 200, "{path}");
    }
    let log = app.store.access_log(Some(SEED_BIZ_ID), 100).await.unwrap();
    let routes: Vec<&str> = log.iter().map(|e| e.route.as_str()).collect();
    assert_eq!(
        routes,
        [
            "GET /api/v1/verifications/{biz_id}",
            "GET /api/v1/verifications",
            "GET /api/v1/verifications/{biz_id}/images/{name}",
        ]
    );
    let fingerprint = &hex::encode(Sha256::digest(TOKEN.as_bytes()))[..12];
    for entry in &log {
        assert_eq!(entry.token_fp, fingerprint, "who: the token's fingerprint");
        assert_eq!(entry.accessed_at, NOW_MS + 1_000, "when: the app's clock");
        assert_eq!(entry.biz_id.as_deref(), Some(SEED_BIZ_ID));
    }
    let everything = format!("{log:?}");
    assert!(
        !everything.contains(TOKEN),
        "the token itself is never stored"
    );
}

const DAY_MS: i64 = 86_400_000;

/// `serve` purges on its own, every `retention.interval`, by the app's clock.
async fn the_serve_task_purges_old_results_by_the_clock(engine: crate::common::Engine) {
    let options = Options {
        env: vec![
            ("APP__RETENTION__RESULT_DAYS", "30".to_owned()),
            ("APP__RETENTION__INTERVAL", "1s".to_owned()),
        ],
        ..Default::default()
    };
    let Some(app) = spawn_app(engine, options).await else {
        return;
    };
    let (old, recent) = ("1795392000,ret-old", "1795392000,ret-recent");
    app.clock.set(NOW_MS - 40 * DAY_MS);
    assert_eq!(app.notify(&result_data(old, "o", "OK")).await.status(), 200);
    app.clock.set(NOW_MS);
    assert_eq!(
        app.notify(&result_data(recent, "o", "OK")).await.status(),
        200
    );

    // The task ticks every second; give it a generous bound on a loaded machine.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    while app
        .store
        .get(old)
        .await
        .unwrap()
        .unwrap()
        .purged_at
        .is_none()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no purge within 20s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }

    let record = app.record(old).await;
    assert_eq!(record["result"], Value::Null);
    assert_eq!(record["status"], "OK");
    assert_eq!(record["liveness"], "PASS");
    assert_eq!(record["confidence"], 77.5);
    assert!(
        record["purged_at"]
            .as_str()
            .unwrap()
            .starts_with("2026-11-23T")
    );
    let kept = app.record(recent).await;
    assert_eq!(kept["result"]["idcard_info"]["idcard_name"], "张三");
    assert!(kept.get("purged_at").is_none());
}

mod serve_retention {
    use crate::common::Engine;

    #[tokio::test]
    async fn sqlite() {
        super::the_serve_task_purges_old_results_by_the_clock(Engine::Sqlite).await;
    }

    #[tokio::test]
    async fn postgres() {
        super::the_serve_task_purges_old_results_by_the_clock(Engine::Postgres).await;
    }
}
