//! The real `faceid-receiver serve` pushing: a signed notify becomes a push that the official
//! Standard Webhooks library accepts (and refuses once its body is tampered with), masked
//! (no identity data without `include_pii`); `/metrics` counts it; and an open event stream
//! neither stops the process from exiting promptly on SIGTERM.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::HeaderMap;
use faceid_receiver::clock::{Clock, SystemClock};
use faceid_receiver::push::WebhookHeaders;
use faceid_sim::{CallbackSpec, Encoding, SignedCallback, post_callback};
use serde_json::{Value, json};

use crate::common::binary::{self, SECRET, TOKEN};
use crate::official_verifier::{PINNED, official, verify_case};

/// The simulator's identity needles.
const NEEDLES: [&str; 2] = ["000000190001010000", "测试模拟"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_pushes_what_the_official_library_verifies_and_stops_with_a_stream_open() {
    // A local endpoint that keeps every request.
    let seen: Arc<Mutex<Vec<(HeaderMap, Bytes)>>> = Arc::default();
    let keep = seen.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let keep = keep.clone();
            async move {
                keep.lock().unwrap().push((headers, body));
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let tokens = format!("{TOKEN}:admin");
    let mut server = tokio::task::spawn_blocking(move || {
        binary::start(&[
            ("APP__API__TOKENS", tokens.as_str()),
            ("APP__PUSH__POLL_INTERVAL", "50ms"),
            ("APP__SERVER__SHUTDOWN_TIMEOUT", "10s"),
        ])
    })
    .await
    .unwrap();
    let base = format!("http://{}", server.addr);
    faceid_receiver::install_crypto_provider();
    let client = reqwest::Client::new();
    let created: Value = client
        .post(format!("{base}/api/v1/endpoints"))
        .bearer_auth(TOKEN)
        .json(&json!({"url": hook}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let secret = created["secret"]
        .as_str()
        .expect("the secret, once")
        .to_owned();

    let (biz_id, data) = CallbackSpec::new("OK").build(SystemClock.now_ms());
    let callback = SignedCallback::sign(SECRET, data);
    let delivery = post_callback(
        &client,
        &format!("{base}/faceid/notify"),
        &callback,
        Encoding::Form,
    )
    .await
    .unwrap();
    assert_eq!(delivery.status, 200);
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen.lock().unwrap().is_empty() {
        assert!(
            Instant::now() < deadline,
            "no push within 30 s:\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (headers, body) = seen.lock().unwrap()[0].clone();

    let text = String::from_utf8(body.to_vec()).unwrap();
    let event: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        (event["type"].as_str(), event["data"]["biz_id"].as_str()),
        (Some("verification.completed"), Some(biz_id.as_str()))
    );
    for needle in NEEDLES {
        assert!(
            !text.contains(needle),
            "no identity data without include_pii: {text}"
        );
    }
    let read =
        WebhookHeaders::read(|name| headers.get(name).and_then(|v| v.to_str().ok())).unwrap();
    let mut tampered = body.to_vec();
    let at = text.find("\"OK\"").expect("the status") + 1;
    tampered[at] = b'0';
    let cases = json!({"verify": [
        verify_case("pushed", &secret, &read, &body),
        verify_case("tampered", &secret, &read, &tampered),
    ]});
    if let Some(answer) = official(&cases) {
        assert_eq!(answer["version"], PINNED);
        assert_eq!(answer["verify"]["pushed"], "ok");
        assert_eq!(
            answer["verify"]["tampered"],
            "rejected: No matching signature found"
        );
    }

    let metrics = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let delivered = metrics
        .lines()
        .find(|l| l.starts_with("faceid_push_attempts_total{outcome=\"delivered\"}"))
        .unwrap_or_else(|| panic!("the attempt is counted:\n{metrics}"));
    assert!(delivered.ends_with(" 1"), "{delivered}");
    assert!(
        metrics.contains("faceid_push_attempt_duration_seconds_count 1"),
        "{metrics}"
    );

    // An open stream, then SIGTERM: the stream ends and the process exits 0, promptly.
    let mut stream = client
        .get(format!("{base}/api/v1/events/stream"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    let first = tokio::time::timeout(Duration::from_secs(10), stream.chunk())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&first).contains("id: 1"),
        "{first:?}"
    );
    server.sigterm();
    let (status, took) = tokio::task::spawn_blocking(move || {
        let result = server.wait_exit(Duration::from_secs(15));
        drop(server);
        result
    })
    .await
    .unwrap();
    assert!(status.success(), "exit status {status}");
    assert!(
        took < Duration::from_secs(5),
        "the open stream held shutdown for {took:?}"
    );
    let rest = tokio::time::timeout(Duration::from_secs(5), stream.chunk())
        .await
        .expect("the stream ended");
    assert!(
        matches!(rest, Ok(None) | Err(_)),
        "the stream was closed: {rest:?}"
    );
}
