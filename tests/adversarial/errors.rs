//! Every error is JSON: one shape, `{"error": "<code>", "message": "<text>"}`, on every
//! route and status — including the ones axum or a layer produces on its own (405 with its
//! `Allow`, 413 from a body limit, 408 from the request timeout) — and a 429 whose message
//! says the same wait as its `Retry-After`.

use std::time::Duration;

use reqwest::Method;
use serde_json::Value;
use tokio::io::AsyncReadExt;

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

/// One request of the table below and the error it must get.
struct Case {
    method: Method,
    path: &'static str,
    token: bool,
    content_type: &'static str,
    body: String,
    status: u16,
    code: &'static str,
}

/// A request without a body.
fn bare(method: Method, path: &'static str, token: bool, status: u16, code: &'static str) -> Case {
    Case {
        method,
        path,
        token,
        content_type: "",
        body: String::new(),
        status,
        code,
    }
}

/// A POST with a body.
fn post(
    path: &'static str,
    token: bool,
    content_type: &'static str,
    body: String,
    status: u16,
    code: &'static str,
) -> Case {
    Case {
        content_type,
        body,
        ..bare(Method::POST, path, token, status, code)
    }
}

#[tokio::test]
async fn every_error_status_on_every_route_is_json_with_error_and_message() {
    // Arrange
    let app = app(&[]).await;
    let probe = Method::from_bytes(b"PROBE").unwrap();
    let big_json = format!("{{\"token\":\"{}\"}}", "a".repeat(100 * 1024));
    let huge_form = "a".repeat(2 * 1024 * 1024);
    let form = "application/x-www-form-urlencoded";
    let (no_token, token) = (false, true);
    let cases = [
        bare(
            Method::GET,
            "/faceid/notify",
            no_token,
            405,
            "method_not_allowed",
        ),
        bare(
            probe.clone(),
            "/faceid/notify",
            no_token,
            405,
            "method_not_allowed",
        ),
        bare(
            Method::DELETE,
            "/faceid/return",
            no_token,
            405,
            "method_not_allowed",
        ),
        bare(
            Method::POST,
            "/healthz",
            no_token,
            405,
            "method_not_allowed",
        ),
        bare(
            Method::PUT,
            "/api/v1/verifications",
            token,
            405,
            "method_not_allowed",
        ),
        bare(
            Method::GET,
            "/api/v1/raw-results",
            token,
            405,
            "method_not_allowed",
        ),
        bare(Method::GET, "/nowhere", no_token, 404, "not_found"),
        bare(probe, "/nowhere", no_token, 404, "not_found"),
        bare(
            Method::GET,
            "/api/v1/verifications/x/y/z",
            token,
            404,
            "not_found",
        ),
        bare(
            Method::GET,
            "/api/v1/verifications",
            no_token,
            401,
            "unauthorized",
        ),
        bare(
            Method::GET,
            "/api/v1/verifications?limit=x",
            token,
            400,
            "invalid_limit",
        ),
        bare(
            Method::GET,
            "/faceid/return",
            no_token,
            400,
            "missing_field",
        ),
        post(
            "/api/v1/raw-results",
            token,
            "application/json",
            big_json,
            413,
            "payload_too_large",
        ),
        post(
            "/faceid/notify",
            no_token,
            form,
            huge_form,
            413,
            "payload_too_large",
        ),
        post(
            "/api/v1/raw-results",
            token,
            "application/json",
            "[".into(),
            400,
            "malformed_body",
        ),
        post(
            "/faceid/notify",
            no_token,
            "text/plain",
            "x".into(),
            400,
            "unsupported_content_type",
        ),
        post(
            "/faceid/notify",
            no_token,
            form,
            "data=x&sign=y".into(),
            403,
            "bad_signature",
        ),
    ];

    for case in cases {
        // Act
        let what = format!("{} {}", case.method, case.path);
        let mut request = app
            .client
            .request(case.method.clone(), app.url(case.path))
            .body(case.body);
        if case.token {
            request = request.bearer_auth(TOKEN);
        }
        if !case.content_type.is_empty() {
            request = request.header("content-type", case.content_type);
        }
        let response = request.send().await.unwrap();

        // Assert
        assert_eq!(response.status().as_u16(), case.status, "{what}");
        let (error, headers) = error_shape(response, &what).await;
        assert_eq!(error, case.code, "{what}");
        if case.status == 405 {
            let allow = headers
                .get("allow")
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_default();
            assert!(!allow.is_empty(), "{what}: 405 without Allow");
            assert!(
                !allow.contains(case.method.as_str()),
                "{what}: Allow {allow}"
            );
        }
    }
}

#[tokio::test]
async fn a_request_timeout_is_a_json_408() {
    // Arrange: a short request timeout, and a notify whose body stalls.
    let app = app(&[("APP__SERVER__REQUEST_TIMEOUT", "500ms")]).await;
    let mut stream = crate::stalled_notify(&app).await;

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
