//! The `faceid-sim` binary's wiring: arguments reach the library, output names the answer.

use std::process::Output;

use faceid_protocol::{SignatureError, verify};

use crate::helpers::{data_and_sign, spawn_echo};

async fn run(args: &[&str]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_faceid-sim"))
        .args(args)
        .env_remove("FACEID_SIM_API_SECRET")
        .output()
        .await
        .expect("run faceid-sim")
}

#[tokio::test]
async fn send_notify_signs_with_the_given_secret_and_prints_the_answer() {
    let mut echo = spawn_echo().await;
    let to = format!("{}/faceid/notify", echo.base_url);

    let out = run(&[
        "send",
        "notify",
        "--to",
        &to,
        "--status",
        "FAILED",
        "--api-secret",
        "s3",
        "--encoding",
        "multipart",
    ])
    .await;
    let (data, sign) = data_and_sign(&echo.arrivals.recv().await.unwrap()).await;

    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.starts_with("HTTP 200\nstored"), "{stdout}");
    assert_eq!(verify("s3", &data, &sign), Ok(()));
    assert!(
        String::from_utf8(data)
            .unwrap()
            .contains(r#""status":"FAILED""#)
    );
}

#[tokio::test]
async fn send_notify_forges_on_request() {
    let mut echo = spawn_echo().await;

    let out = run(&[
        "send",
        "notify",
        "--to",
        &echo.base_url,
        "--forge",
        "bad-sign",
    ])
    .await;
    let (data, sign) = data_and_sign(&echo.arrivals.recv().await.unwrap()).await;

    assert!(out.status.success());
    assert_eq!(
        verify("dev-secret", &data, &sign),
        Err(SignatureError::Mismatch)
    );
}

#[tokio::test]
async fn send_return_get_prints_status_and_location() {
    let mut echo = spawn_echo().await;
    let to = format!("{}/faceid/return", echo.base_url);

    let out = run(&[
        "send",
        "return-get",
        "--to",
        &to,
        "--biz-id",
        "1704067200,abc",
    ])
    .await;
    let arrival = echo.arrivals.recv().await.unwrap();

    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(arrival.uri.query(), Some("biz_id=1704067200,abc"));
    assert!(
        stdout.starts_with("HTTP 303\nLocation: /done?status=PENDING"),
        "{stdout}"
    );
}

#[tokio::test]
async fn an_unreachable_target_is_a_clear_error_not_a_panic() {
    // A port that was just free: bound, then released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let to = format!("http://127.0.0.1:{port}/x");

    let out = run(&["send", "notify", "--to", &to]).await;

    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains(&format!("faceid-sim: cannot deliver to {to}")),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[tokio::test]
async fn a_missing_data_file_is_named() {
    let out = run(&[
        "send",
        "notify",
        "--to",
        "http://127.0.0.1:9/x",
        "--data-file",
        "/nonexistent/seed.json",
    ])
    .await;

    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains("cannot read /nonexistent/seed.json"),
        "{stderr}"
    );
}
