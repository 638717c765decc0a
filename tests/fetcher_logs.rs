//! Captures every log line (at TRACE, `log`-crate records included) while the worker fetches
//! results with images, RAW results by token, and runs into errors and timeouts, on each
//! engine; then checks that neither the API secret, the request URL, a RAW token, identity
//! data nor image data ever reached the log.

#[path = "common/mod.rs"]
mod common;
// The fetcher suite's harness; this binary uses only part of it.
#[path = "fetcher/helpers.rs"]
#[allow(dead_code)]
mod helpers;

use base64::Engine as _;
use common::capture::Capture;
use faceid_receiver::store::FetchState;
use faceid_sim::{ResultScript, TINY_JPEG};
use helpers::*;

const RAW_TOKEN: &str = "raw-token-must-not-be-logged";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_logs_no_secret_url_token_identity_or_image_data() {
    let capture = Capture::default();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(capture.clone())
        .with_ansi(false)
        .try_init()
        .expect("first subscriber in this test binary");

    log::warn!(target: "fetcher_logs_test", "log-crate probe");

    let mut engines = 0;
    for engine in [common::Engine::Sqlite, common::Engine::Postgres] {
        if exercise(engine).await {
            engines += 1;
        }
    }
    assert!(engines >= 1);

    let logs = capture.text();
    if std::env::var_os("SHOW_LOGS").is_some() {
        eprintln!("{logs}");
    }
    assert!(logs.contains("log-crate probe"), "log records are captured");
    assert!(
        logs.matches("get_result answered").count() >= engines,
        "the capture saw every engine's run: {logs}"
    );
    assert!(
        logs.contains("get_result failed"),
        "errors were logged: {logs}"
    );
    let image_b64 = base64::engine::general_purpose::STANDARD.encode(TINY_JPEG);
    // The simulator stands in for FaceID, which does see the token: its lines are not ours.
    let logs: String = logs
        .lines()
        .filter(|l| !l.contains("faceid_sim"))
        .collect::<Vec<_>>()
        .join("\n");
    for needle in [
        SECRET,
        "api_secret",
        "api_key=",
        "/faceid/lite",
        RAW_TOKEN,
        TOKEN,
        "000000190001010000",
        "测试模拟",
        "idcard_info",
        &image_b64[..24],
    ] {
        assert!(!logs.contains(needle), "{needle:?} leaked into the logs");
    }
}

/// Results with images, RAW results by token, errors and timeouts on `engine`; false if the
/// engine is unavailable (and not required).
async fn exercise(engine: common::Engine) -> bool {
    let overrides = [
        ("APP__FETCH__RETURN_IMAGE", "4"),
        ("APP__MEGVII__TIMEOUT", "500ms"),
    ];
    let Some(h) = harness_with(engine, &overrides, None).await else {
        return false; // PostgreSQL unavailable and not required: said loudly by common
    };
    let ok = h.mint(&["PROCESSING", "OK"]);
    let faulty = h.mint(&["500", "502", "concurrency"]);
    let slow = h.mint(&["slow:1000:OK", "OK"]);
    let unknown = format!("{},unknown", NOW_MS / 1000 - 60);
    h.sim
        .script(
            ResultScript::raw(RAW_TOKEN)
                .biz_no("order-raw")
                .steps(["NOT_STARTED", "OK"]),
        )
        .unwrap();
    for id in [&ok, &faulty, &slow, &unknown] {
        h.return_get(id).await;
    }
    let response = h
        .api_post(
            "/raw-results",
            Some(serde_json::json!({"token": RAW_TOKEN})),
        )
        .await;
    assert_eq!(response.status(), 202);
    let raw_key = format!("raw:{RAW_TOKEN}");
    h.settle(&[&ok, &faulty, &slow, &unknown, &raw_key]).await;
    assert_eq!(h.record(&ok).await.images.len(), 3, "images were fetched");
    assert_eq!(h.record(&raw_key).await.fetch.state, FetchState::Done);
    drop(h);
    true
}
