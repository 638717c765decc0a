//! Limits and defences of the public surface: rate limit (429), request timeout (408), and
//! no open redirect. (413 and the built-in page's headers are in callbacks.rs and
//! return_url.rs.)

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::Engine;
use crate::helpers::{Options, TestApp, error_code, spawn_app};

async fn app_with(env: Vec<(&'static str, &'static str)>) -> TestApp {
    spawn_app(
        Engine::Sqlite,
        Options {
            env: env.into_iter().map(|(k, v)| (k, v.to_owned())).collect(),
            ..Default::default()
        },
    )
    .await
    .unwrap()
}

/// Sends GET /faceid/done with an optional X-Forwarded-For until a 429 comes back; returns
/// how many were answered before it (None: never limited within `max`).
async fn requests_until_limited(
    app: &TestApp,
    forwarded_for: Option<&str>,
    max: usize,
) -> Option<usize> {
    for sent in 0..max {
        let mut request = app.client.get(app.url("/faceid/done"));
        if let Some(ip) = forwarded_for {
            request = request.header("x-forwarded-for", ip);
        }
        let response = request.send().await.unwrap();
        if response.status() == 429 {
            assert!(response.headers().contains_key("retry-after"));
            assert_eq!(error_code(response).await, "rate_limited");
            return Some(sent);
        }
        assert_eq!(response.status(), 200);
    }
    None
}

#[tokio::test]
async fn rapid_callbacks_from_one_ip_get_429_with_a_json_error_but_the_api_and_health_do_not() {
    // Arrange: 1 per second, bursts of 3.
    let app = app_with(vec![
        ("APP__SERVER__RATE_LIMIT_PER_SECOND", "1"),
        ("APP__SERVER__RATE_LIMIT_BURST", "3"),
    ])
    .await;

    // Act + Assert: the burst passes, then 429 (at most one token refills meanwhile).
    let passed = requests_until_limited(&app, None, 20)
        .await
        .expect("limited");
    assert!((3..=6).contains(&passed), "{passed} passed before 429");

    // A forged X-Forwarded-For does not buy a fresh bucket (not trusted by default).
    assert_eq!(
        requests_until_limited(&app, Some("203.0.113.9"), 1).await,
        Some(0)
    );

    // The API and the health routes are not rate limited.
    assert_eq!(app.get("/healthz").await.status(), 200);
    assert_eq!(app.api("/verifications").await.status(), 200);
}

#[tokio::test]
async fn with_trust_forwarded_for_each_forwarded_client_has_its_own_bucket() {
    let app = app_with(vec![
        ("APP__SERVER__RATE_LIMIT_PER_SECOND", "1"),
        ("APP__SERVER__RATE_LIMIT_BURST", "2"),
        ("APP__SERVER__TRUST_FORWARDED_FOR", "true"),
    ])
    .await;
    let a = requests_until_limited(&app, Some("198.51.100.1"), 20).await;
    assert!(a.is_some_and(|n| (2..=4).contains(&n)), "{a:?}");
    // Another client behind the same proxy is not affected.
    let b = requests_until_limited(&app, Some("10.0.0.1, 198.51.100.2"), 1).await;
    assert_eq!(
        b, None,
        "a different last X-Forwarded-For address has its own bucket"
    );
}

#[tokio::test]
async fn a_rate_limit_of_zero_disables_it() {
    let app = app_with(vec![
        ("APP__SERVER__RATE_LIMIT_PER_SECOND", "0"),
        ("APP__SERVER__RATE_LIMIT_BURST", "0"),
    ])
    .await;
    assert_eq!(requests_until_limited(&app, None, 30).await, None);
}

#[tokio::test]
async fn a_request_whose_body_never_finishes_gets_408_after_the_request_timeout() {
    // Arrange: a short timeout, and a notify that promises 100 bytes but sends 10.
    let app = app_with(vec![("APP__SERVER__REQUEST_TIMEOUT", "500ms")]).await;
    let addr = app.base.trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    stream
        .write_all(
            b"POST /faceid/notify HTTP/1.1\r\nHost: x\r\n\
              Content-Type: application/x-www-form-urlencoded\r\n\
              Content-Length: 100\r\n\r\ndata=%7B%22",
        )
        .await
        .unwrap();

    // Act: wait (bounded) for the server's answer.
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(20), async {
        let mut buf = [0u8; 1024];
        loop {
            let n = stream.read(&mut buf).await.unwrap();
            answer.extend_from_slice(&buf[..n]);
            if n == 0 || answer.windows(4).any(|w| w == b"\r\n\r\n") {
                break;
            }
        }
    })
    .await;

    // Assert
    assert!(read.is_ok(), "the server answered within the bound");
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    // The latency histogram counts the answer the client got, 408 included. (The recorder
    // is process-wide; no other test of this binary times a notify out.)
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains(
            r#"faceid_http_request_duration_seconds_count{method="POST",route="/faceid/notify",status="408"}"#
        ),
        "{metrics}"
    );
}

#[tokio::test]
async fn redirect_or_next_query_parameters_never_choose_the_redirect_target() {
    let app = app_with(Vec::new()).await;
    for query in [
        "biz_id=1795392000,redir&redirect=https://evil.example/",
        "next=https://evil.example/&biz_id=1795392000,redir",
        "biz_id=1795392000,redir&return_url=//evil.example&redirect_url=https://evil.example",
    ] {
        let response = app.get(&format!("/faceid/return?{query}")).await;
        assert_eq!(response.status(), 303, "{query}");
        let location = response.headers()["location"].to_str().unwrap();
        assert!(
            location.starts_with("https://shop.example.com/verified?from=faceid&"),
            "{query}: {location}"
        );
        assert!(!location.contains("evil"), "{query}: {location}");
    }
}

#[tokio::test]
async fn malformed_api_queries_and_paths_get_a_json_400_not_plain_text() {
    let app = app_with(Vec::new()).await;
    for (path, code) in [
        ("/verifications?limit=1&limit=2", "invalid_query"),
        ("/callbacks?biz_id=a&biz_id=b", "invalid_query"),
        ("/verifications/%FF%FE", "invalid_path"),
        ("/verifications/%C0/images/face", "invalid_path"),
    ] {
        let response = app.api(path).await;
        assert_eq!(response.status(), 400, "{path}");
        assert_eq!(
            response.headers()["content-type"],
            "application/json",
            "{path}"
        );
        assert_eq!(error_code(response).await, code, "{path}");
    }
}
