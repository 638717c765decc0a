//! Graceful shutdown of the real binary: SIGTERM stops accepting, lets an in-flight request
//! finish, and exits 0; a request that never finishes cannot hold the process past
//! `server.shutdown_timeout` (then it exits 1).
//!
//! Each test runs `faceid-receiver serve` on SQLite in a temp dir and a free port. Waits are
//! bounded polls for a condition, never sleeps hoping for timing.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

const SECRET: &str = "shutdown-test-secret";

struct Server {
    child: Child,
    addr: SocketAddr,
    dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start(extra_env: &[(&str, &str)]) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let log = std::fs::File::create(dir.path().join("server.log")).unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_faceid-receiver"));
    command
        .arg("serve")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env(
            "APP_CONFIG_DIR",
            concat!(env!("CARGO_MANIFEST_DIR"), "/config"),
        )
        .env("APP__SERVER__LISTEN", addr.to_string())
        .env(
            "APP__DATABASE__URL",
            format!(
                "sqlite://{}?mode=rwc",
                dir.path().join("db.sqlite").display()
            ),
        )
        .env("APP__MEGVII__API_SECRET", SECRET)
        .env("APP__MEGVII__BASE_URL", "http://127.0.0.1:9")
        .env("APP__API__TOKENS", "shutdown-test-token")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    for (key, value) in extra_env {
        command.env(key, value);
    }
    let child = command.spawn().expect("start faceid-receiver");
    let mut server = Server { child, addr, dir };
    server.wait_ready();
    server
}

impl Server {
    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// Polls `/readyz` until it answers 200 (bounded).
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("server exited early ({status}):\n{}", self.log());
            }
            let probe = http(
                self.addr,
                b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            );
            if probe.is_ok_and(|answer| answer.starts_with("HTTP/1.1 200")) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("server not ready within 60s:\n{}", self.log());
    }

    fn sigterm(&self) {
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success());
    }

    /// Polls for the process to exit (bounded).
    fn wait_exit(&mut self, bound: Duration) -> (ExitStatus, Duration) {
        let started = Instant::now();
        while started.elapsed() < bound {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (status, started.elapsed());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "server still running {bound:?} after SIGTERM:\n{}",
            self.log()
        );
    }

    /// Polls until a new connection is refused: the listener is closed, shutdown has begun.
    fn wait_not_accepting(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if TcpStream::connect_timeout(&self.addr, Duration::from_millis(500)).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "server kept accepting connections after SIGTERM:\n{}",
            self.log()
        );
    }
}

/// One request on a fresh connection; the whole answer as text.
fn http(addr: SocketAddr, request: &[u8]) -> std::io::Result<String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.write_all(request)?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer)?;
    Ok(String::from_utf8_lossy(&answer).into_owned())
}

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
