//! Graceful shutdown of the real binary: SIGTERM stops accepting, lets an in-flight request
//! finish, and exits 0; a request that never finishes cannot hold the process past
//! `server.shutdown_timeout` (then it exits 1).
//!
//! Each test runs `faceid-receiver serve` on SQLite in a temp dir and a free port. Waits are
//! bounded polls for a condition, never sleeps hoping for timing.

#[path = "common/mod.rs"]
mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::binary::{SECRET, http, start};

/// Reads from `stream` until the head of a response (`\r\n\r\n`) has arrived.
fn read_head(stream: &mut TcpStream) -> String {
    let mut answer = Vec::new();
    let mut buf = [0u8; 512];
    while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).expect("read a response head");
        assert!(
            n > 0,
            "connection closed: {}",
            String::from_utf8_lossy(&answer)
        );
        answer.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&answer).into_owned()
}

/// A correctly signed notify body, form-encoded.
fn signed_notify(biz_id: &str) -> String {
    let data = serde_json::json!({
        "request_id": "1795392000,shutdown",
        "status": "OK",
        "biz_info": {"biz_id": biz_id, "biz_no": "order-1", "biz_extra_data": ""},
        "liveness_result": {"result": "PASS"},
        "time_used": 10
    })
    .to_string();
    let sign = faceid_receiver::protocol::sign(SECRET, data.as_bytes());
    form_urlencoded::Serializer::new(String::new())
        .append_pair("data", &data)
        .append_pair("sign", &sign)
        .finish()
}

fn notify_head(body_len: usize, expect_continue: bool) -> String {
    format!(
        "POST /faceid/notify HTTP/1.1\r\nHost: x\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {body_len}\r\n{}\r\n",
        if expect_continue {
            "Expect: 100-continue\r\n"
        } else {
            ""
        }
    )
}

#[test]
fn sigterm_after_serving_a_callback_exits_0_promptly() {
    // Arrange: a running server that has just stored a callback.
    let mut server = start(&[]);
    let body = signed_notify("1795392000,shutdown-prompt");
    let request = format!("{}{body}", notify_head(body.len(), false))
        .replace("Host: x\r\n", "Host: x\r\nConnection: close\r\n");
    let answer = http(server.addr, request.as_bytes()).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    // Act
    server.sigterm();

    // Assert: exit code 0, well within the default 20s shutdown_timeout.
    let (status, took) = server.wait_exit(Duration::from_secs(20));
    assert_eq!(status.code(), Some(0), "{status}:\n{}", server.log());
    assert!(took < Duration::from_secs(15), "took {took:?}");
    // Every line logged before the exit reached the log, the shutdown's last ones included
    // (guards any buffering of log lines: it would have to be written out at exit).
    let log = server.log();
    for line in [
        "callback stored",
        "stopping: no new connections",
        "task exited",
        "\"http server\"",
        "\"follow-up worker\"",
    ] {
        assert!(log.contains(line), "{line:?} missing from the log:\n{log}");
    }
}

#[test]
fn a_notify_being_uploaded_when_sigterm_arrives_still_completes_and_then_the_process_exits_0() {
    // Arrange: a notify whose head is sent with `Expect: 100-continue`. The server answers
    // `100 Continue` only once the handler starts reading the body: proof that the request
    // is in flight, not merely connected.
    let mut server = start(&[]);
    let body = signed_notify("1795392000,shutdown-inflight");
    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    stream
        .write_all(notify_head(body.len(), true).as_bytes())
        .unwrap();
    let (first, rest) = body.as_bytes().split_at(body.len() / 2);
    let head = read_head(&mut stream);
    assert!(head.starts_with("HTTP/1.1 100"), "{head}");
    stream.write_all(first).unwrap();

    // Act: SIGTERM while the body is half sent; once the server refuses new connections,
    // send the rest.
    server.sigterm();
    server.wait_not_accepting();
    assert!(
        server.child.try_wait().unwrap().is_none(),
        "the process waits for the in-flight request"
    );
    stream.write_all(rest).unwrap();

    // Assert: the in-flight request got its normal answer, then the process exited 0.
    let answer = read_head(&mut stream);
    assert!(
        answer.starts_with("HTTP/1.1 200"),
        "{answer}\n{}",
        server.log()
    );
    let (status, _) = server.wait_exit(Duration::from_secs(20));
    assert_eq!(status.code(), Some(0), "{status}:\n{}", server.log());
}

#[test]
fn a_request_that_never_finishes_cannot_hold_shutdown_past_shutdown_timeout() {
    // Arrange: the request timeout is longer than the shutdown bound, and a client sends
    // half a body and then nothing.
    let mut server = start(&[
        ("APP__SERVER__SHUTDOWN_TIMEOUT", "1s"),
        ("APP__SERVER__REQUEST_TIMEOUT", "5m"),
    ]);
    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    stream.write_all(notify_head(100, true).as_bytes()).unwrap();
    assert!(read_head(&mut stream).starts_with("HTTP/1.1 100"));
    stream.write_all(b"data=").unwrap();

    // Act
    server.sigterm();

    // Assert: the process gives up waiting after about 1s and says so with exit code 1.
    let (status, took) = server.wait_exit(Duration::from_secs(20));
    assert_eq!(status.code(), Some(1), "{status}:\n{}", server.log());
    assert!(took >= Duration::from_millis(900), "took {took:?}");
    assert!(
        server.log().contains("shutdown_timeout"),
        "{}",
        server.log()
    );
    drop(stream);
}
