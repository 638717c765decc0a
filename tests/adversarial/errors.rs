//! Every error is JSON: one shape, `{"error": "<code>", "message": "<text>"}`, on every
//! route and status — including the ones axum or a layer produces on its own (405 with its
//! `Allow`, 413 from a body limit, 408 from the request timeout) — and a 429 whose message
//! says the same wait as its `Retry-After`.

use std::time::Duration;

use reqwest::Method;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::Engine;
use crate::helpers::{TOKEN, TestApp};

/// Asserts `response` is an error in our one shape; returns its code and headers.
async fn error_shape(
    response: reqwest::Response,
    what: &str,
) -> (String, reqwest::header::HeaderMap) {
    let headers = response.headers().clone();
    let content_type = headers
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let text = response.text().await.unwrap();
    assert!(
        content_type.starts_with("application/json"),
        "{what}: content-type {content_type:?}, body {text:?}"
    );
    let body: Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {text:?}"));
    let object = body.as_object().unwrap_or_else(|| panic!("{what}: {body}"));
    let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["error", "message"], "{what}: {body}");
    assert!(
        object["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{what}: {body}"
    );
    (object["error"].as_str().unwrap().to_owned(), headers)
}

async fn app(env: &[(&'static str, &str)]) -> TestApp {
    crate::app_on(Engine::Sqlite, env)
        .await
        .expect("sqlite is always available")
}

#[tokio::test]
async fn every_error_status_on_every_route_is_json_with_error_and_message() {
    // Arrange
    let app = app(&[]).await;
    let custom = Method::from_bytes(b"PROBE").unwrap();
    let big_json = format!("{{\"token\":\"{}\"}}", "a".repeat(100 * 1024));
    let huge_form = "a".repeat(2 * 1024 * 1024);
    /// (method, path, token, content type, body, status, code)
    type Case = (
        Method,
        &'static str,
        bool,
        &'static str,
        String,
        u16,
        &'static str,
    );
    let cases: Vec<Case> = vec![
        (
            Method::GET,
            "/faceid/notify",
            false,
            "",
            String::new(),
            405,
            "method_not_allowed",
        ),
        (
            custom.clone(),
            "/faceid/notify",
            false,
            "",
            String::new(),
            405,
            "method_not_allowed",
        ),
        (
            Method::DELETE,
            "/faceid/return",
            false,
            "",
            String::new(),
            405,
            "method_not_allowed",
        ),
        (
            Method::POST,
            "/healthz",
            false,
            "",
            String::new(),
            405,
            "method_not_allowed",
        ),
        (
            Method::PUT,
            "/api/v1/verifications",
            true,
            "",
            String::new(),
            405,
            "method_not_allowed",
        ),
        (
            Method::GET,
            "/api/v1/raw-results",
            true,
            "",
            String::new(),
            405,
            "method_not_allowed",
        ),
        (
            Method::GET,
            "/nowhere",
            false,
            "",
            String::new(),
            404,
            "not_found",
        ),
        (
            custom,
            "/nowhere",
            false,
            "",
            String::new(),
            404,
            "not_found",
        ),
        (
            Method::GET,
            "/api/v1/verifications/x/y/z",
            true,
            "",
            String::new(),
            404,
            "not_found",
        ),
        (
            Method::POST,
            "/api/v1/raw-results",
            true,
            "application/json",
            big_json,
            413,
            "payload_too_large",
        ),
        (
            Method::POST,
            "/faceid/notify",
            false,
            "application/x-www-form-urlencoded",
            huge_form,
            413,
            "payload_too_large",
        ),
        (
            Method::GET,
            "/api/v1/verifications",
            false,
            "",
            String::new(),
            401,
            "unauthorized",
        ),
        (
            Method::GET,
            "/api/v1/verifications?limit=x",
            true,
            "",
            String::new(),
            400,
            "invalid_limit",
        ),
        (
            Method::POST,
            "/api/v1/raw-results",
            true,
            "application/json",
            "[".into(),
            400,
            "malformed_body",
        ),
        (
            Method::POST,
            "/faceid/notify",
            false,
            "text/plain",
            "x".into(),
            400,
            "unsupported_content_type",
        ),
        (
            Method::POST,
            "/faceid/notify",
            false,
            "application/x-www-form-urlencoded",
            "data=x&sign=y".into(),
            403,
            "bad_signature",
        ),
        (
            Method::GET,
            "/faceid/return",
            false,
            "",
            String::new(),
            400,
            "missing_field",
        ),
    ];

    for (method, path, token, content_type, body, status, code) in cases {
        // Act
        let what = format!("{method} {path}");
        let mut request = app.client.request(method.clone(), app.url(path)).body(body);
        if token {
            request = request.bearer_auth(TOKEN);
        }
        if !content_type.is_empty() {
            request = request.header("content-type", content_type);
        }
        let response = request.send().await.unwrap();

        // Assert
        assert_eq!(response.status().as_u16(), status, "{what}");
        let (error, headers) = error_shape(response, &what).await;
        assert_eq!(error, code, "{what}");
        if status == 405 {
            let allow = headers
                .get("allow")
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_default();
            assert!(!allow.is_empty(), "{what}: 405 without Allow");
            assert!(!allow.contains(method.as_str()), "{what}: Allow {allow}");
        }
    }
}

#[tokio::test]
async fn a_request_timeout_is_a_json_408() {
    // Arrange: a notify that promises 100 bytes but sends 5, and a short request timeout.
    let app = app(&[("APP__SERVER__REQUEST_TIMEOUT", "500ms")]).await;
    let mut stream = tokio::net::TcpStream::connect(app.base.trim_start_matches("http://"))
        .await
        .unwrap();
    stream
        .write_all(
            b"POST /faceid/notify HTTP/1.1\r\nHost: x\r\n\
              Content-Type: application/x-www-form-urlencoded\r\n\
              Content-Length: 100\r\n\r\ndata=",
        )
        .await
        .unwrap();

    // Act: read the answer (bounded) up to the end of its JSON body.
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(20), async {
        let mut buf = [0u8; 1024];
        loop {
            let n = stream.read(&mut buf).await.unwrap_or(0);
            answer.extend_from_slice(&buf[..n]);
            if n == 0 || answer.ends_with(b"}") {
                break;
            }
        }
    })
    .await;

    // Assert
    assert!(read.is_ok(), "answered within the bound");
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("content-type: application/json"), "{text}");
    assert!(text.contains(r#""error":"request_timeout""#), "{text}");
}

#[tokio::test]
async fn a_429_message_names_the_same_wait_as_its_retry_after_header() {
    // Arrange: one request a second, no burst to speak of.
    let app = crate::helpers::spawn_app(
        Engine::Sqlite,
        crate::helpers::Options {
            env: vec![
                ("APP__SERVER__RATE_LIMIT_PER_SECOND", "1".into()),
                ("APP__SERVER__RATE_LIMIT_BURST", "1".into()),
            ],
            ..Default::default()
        },
    )
    .await
    .unwrap();

    // Act: until limited (bounded).
    let mut limited = None;
    for _ in 0..20 {
        let response = app.get("/faceid/done").await;
        if response.status() == 429 {
            limited = Some(response);
            break;
        }
    }
    let response = limited.expect("limited within 20 requests");

    // Assert
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "rate_limited");
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("retry in {retry_after}s")),
        "Retry-After {retry_after} but the message says {message:?}"
    );
}
