//! Captures every log line (at TRACE, `log`-crate records included) while the service handles
//! signed, forged and malformed callbacks, return GETs and API reads, on each engine, then
//! checks that no secret, token, identity field or raw result ever reached the log.

#[path = "common/mod.rs"]
mod common;
// Shared with tests/api; this binary uses only part of it.
#[allow(dead_code)]
#[path = "api/helpers.rs"]
mod helpers;

use common::capture::Capture;
use helpers::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_token_or_identity_data_reaches_the_logs() {
    let capture = Capture::default();
    // `try_init` also installs the `log` bridge (tracing-log): dependencies that log through
    // the `log` crate (sqlx's SQLite driver, rustls, reqwest) are captured as well.
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(capture.clone())
        .with_ansi(false)
        .try_init()
        .expect("first subscriber in this test binary");
    log::warn!(target: "logs_test", "log-crate probe");

    let mut engines = 0;
    for engine in [common::Engine::Sqlite, common::Engine::Postgres] {
        let Some(app) = spawn_app(engine, Default::default()).await else {
            continue; // PostgreSQL unavailable and not required: said loudly by common
        };
        exercise(&app).await;
        drop(app);
        engines += 1;
    }

    let logs = capture.text();
    assert!(logs.contains("log-crate probe"), "log records are captured");
    assert!(
        logs.matches("callback stored").count() >= engines,
        "the capture saw every engine's run: {logs}"
    );
    for needle in [
        SECRET,
        TOKEN,
        "wrong-token-123",
        "110101199003070000",
        "张三",
        "idcard_number",
        "\"data\"",
    ] {
        assert!(!logs.contains(needle), "{needle:?} leaked into the logs");
    }
}

/// Signed, forged and malformed callbacks, return GETs and API reads, good and bad tokens.
async fn exercise(app: &TestApp) {
    let id = "1795392000,logs";
    let data = result_data(id, "order-logs", "OK");
    assert_eq!(app.notify(&data).await.status(), 200);
    assert_eq!(
        app.post_form("/faceid/notify", form_body(&data, &"a".repeat(40)))
            .await
            .status(),
        403
    );
    assert_eq!(
        app.post_form("/faceid/return", signed_form(&data))
            .await
            .status(),
        303
    );
    assert_eq!(
        app.post_form("/faceid/notify", signed_form("{\"idcard_name\":\"张三\"}"))
            .await
            .status(),
        400
    );
    assert_eq!(
        app.get("/faceid/return?biz_id=1795392000,other")
            .await
            .status(),
        303
    );
    assert_eq!(
        app.api(&format!("/verifications/{}", encode_path(id)))
            .await
            .status(),
        200
    );
    let wrong = app
        .client
        .get(app.url("/api/v1/verifications"))
        .bearer_auth("wrong-token-123")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
}
