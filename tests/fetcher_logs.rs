//! Captures every log line (at TRACE, `log` records from reqwest included) while the worker
//! fetches results with images, RAW results by token, and runs into errors and timeouts; then
//! checks that neither the API secret, the request URL, a RAW token, identity data nor image
//! data ever reached the log.

#[path = "common/mod.rs"]
mod common;
// The fetcher suite's harness; this binary uses only part of it.
#[path = "fetcher/helpers.rs"]
#[allow(dead_code)]
mod helpers;

use base64::Engine as _;
use common::capture::Capture;
use faceid_receiver::sim::{ResultScript, TINY_JPEG};
use faceid_receiver::store::FetchState;
use helpers::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_logs_no_secret_url_token_identity_or_image_data() {
    let capture = Capture::default();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(capture.clone())
        .with_ansi(false)
        .try_init()
        .expect("first subscriber in this test binary");

    let overrides = [
        ("APP__FETCH__RETURN_IMAGE", "4"),
        ("APP__MEGVII__TIMEOUT", "500ms"),
    ];
    let h = harness_with(common::Engine::Sqlite, &overrides, None)
        .await
        .unwrap();
    let ok = h.mint(&["PROCESSING", "OK"]);
    let faulty = h.mint(&["500", "502", "concurrency"]);
    let slow = h.mint(&["slow:1000:OK", "OK"]);
    let unknown = format!("{},unknown", NOW_MS / 1000 - 60);
    let raw_token = "raw-token-must-not-be-logged";
    h.sim
        .script(
            ResultScript::raw(raw_token)
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
            Some(serde_json::json!({"token": raw_token})),
        )
        .await;
    assert_eq!(response.status(), 202);
    let raw_key = format!("raw:{raw_token}");
    h.settle(&[&ok, &faulty, &slow, &unknown, &raw_key]).await;
    assert_eq!(h.record(&ok).await.images.len(), 3, "images were fetched");
    assert_eq!(h.record(&raw_key).await.fetch.state, FetchState::Done);
    drop(h);

    let logs = capture.text();
    if std::env::var_os("SHOW_LOGS").is_some() {
        eprintln!("{logs}");
    }
    assert!(
        logs.contains("get_result answered"),
        "the capture works: {logs}"
    );
    assert!(
        logs.contains("get_result failed"),
        "errors were logged: {logs}"
    );
    let image_b64 = base64::engine::general_purpose::STANDARD.encode(TINY_JPEG);
    // The simulator stands in for FaceID, which does see the token: its lines are not ours.
    let logs: String = logs
        .lines()
        .filter(|l| !l.contains("faceid_receiver::sim"))
        .collect::<Vec<_>>()
        .join("\n");
    for needle in [
        SECRET,
        "api_secret",
        "api_key=",
        "/faceid/lite",
        raw_token,
        TOKEN,
        "000000190001010000",
        "测试模拟",
        "idcard_info",
        &image_b64[..24],
    ] {
        assert!(!logs.contains(needle), "{needle:?} leaked into the logs");
    }
}
