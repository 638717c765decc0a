//! The real `faceid-receiver serve` process, for tests that need a whole process of their
//! own: signals and exit codes, or process-wide state such as the metrics recorder.
//!
//! [`start`] runs it on SQLite in a temp dir and a free port, and returns once `/readyz`
//! answers. Waits are bounded polls for a condition, never sleeps hoping for timing.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// `megvii.api_secret` of every process started here.
pub const SECRET: &str = "binary-test-secret";
/// `api.tokens` of every process started here.
pub const TOKEN: &str = "binary-test-token";

pub struct Server {
    pub child: Child,
    pub addr: SocketAddr,
    dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback address with a port nobody listens on right now.
pub fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// Starts `faceid-receiver serve` with `extra_env` on top of a minimal environment.
pub fn start(extra_env: &[(&str, &str)]) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let addr = free_addr();
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
        .env("APP__API__TOKENS", TOKEN)
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
    pub fn log(&self) -> String {
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

    pub fn sigterm(&self) {
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success());
    }

    /// Polls for the process to exit (bounded).
    pub fn wait_exit(&mut self, bound: Duration) -> (ExitStatus, Duration) {
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
    pub fn wait_not_accepting(&self) {
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
pub fn http(addr: SocketAddr, request: &[u8]) -> std::io::Result<String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.write_all(request)?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer)?;
    Ok(String::from_utf8_lossy(&answer).into_owned())
}
