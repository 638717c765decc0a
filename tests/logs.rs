//! Captures every log line (at TRACE) while the service handles signed, forged and malformed
//! callbacks, return GETs and API reads, then checks that no secret, token, identity field or
//! raw result ever reached the log.

#[path = "common/mod.rs"]
mod common;
// Shared with tests/api; this binary uses only part of it.
#[allow(dead_code)]
#[path = "api/helpers.rs"]
mod helpers;

use common::capture::Capture;
use helpers::*;

#[tokio::test]
async fn no_secret_token_or_identity_data_reaches_the_logs() {
    let capture = Capture::default();
    tracing::subscriber::set_global_default(capture.subscriber())
        .expect("first subscriber in this test binary");

    let app = spawn_app(common::Engine::Sqlite, Default::default())
        .await
        .unwrap();
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
    drop(app);

    let logs = capture.text();
    assert!(
        logs.contains("callback stored"),
        "the capture works: {logs}"
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
