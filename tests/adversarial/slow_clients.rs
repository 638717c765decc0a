//! Slow clients are cut off: a connection that never finishes its request headers, drips
//! them a byte at a time, sits idle, or stalls with nothing moving is closed by the server
//! within a bound; and connections beyond `server.max_connections` wait for a free slot.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::Engine;
use crate::helpers::TestApp;

async fn app(env: &[(&'static str, &str)]) -> TestApp {
    crate::app_on(Engine::Sqlite, env)
        .await
        .expect("sqlite is always available")
}

async fn connect(app: &TestApp) -> TcpStream {
    TcpStream::connect(app.base.trim_start_matches("http://"))
        .await
        .expect("connect")
}

/// Reads until the server closes the connection (EOF or reset), for at most `bound`.
/// Returns what was read, or `None` if the connection was still open at the bound.
async fn read_until_closed<R: AsyncReadExt + Unpin>(
    reader: &mut R,
    bound: Duration,
) -> Option<Vec<u8>> {
    let mut answer = Vec::new();
    let closed = tokio::time::timeout(bound, async {
        let mut buf = [0u8; 4096];
        loop {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    closed.ok().map(|()| answer)
}

/// The bound within which a timeout of `timeout` must have closed the connection: generous
/// for a loaded machine, yet far below "never".
fn bound(timeout: Duration) -> Duration {
    timeout + Duration::from_secs(4)
}

#[tokio::test]
async fn a_client_that_sends_half_its_headers_is_disconnected_at_the_header_timeout() {
    // Arrange
    let app = app(&[("APP__SERVER__HEADER_TIMEOUT", "1s")]).await;
    let mut stream = connect(&app).await;
    let started = Instant::now();

    // Act: half a request head, then nothing.
    stream
        .write_all(b"POST /faceid/notify HTTP/1.1\r\nHost: x\r\nContent-Ty")
        .await
        .unwrap();
    let closed = read_until_closed(&mut stream, Duration::from_secs(30)).await;

    // Assert
    let took = started.elapsed();
    assert!(closed.is_some(), "still open 30s later (header_timeout 1s)");
    assert!(
        took >= Duration::from_millis(900) && took < bound(Duration::from_secs(1)),
        "closed after {took:?}, header_timeout 1s"
    );
}

#[tokio::test]
async fn a_client_dripping_its_headers_a_byte_at_a_time_is_disconnected_at_the_header_timeout() {
    // Arrange: a byte every 700ms keeps any per-read inactivity timer of 2s happy; only a
    // deadline for the whole head stops it.
    let app = app(&[("APP__SERVER__HEADER_TIMEOUT", "2s")]).await;
    let stream = connect(&app).await;
    let (mut reader, mut writer) = stream.into_split();
    let started = Instant::now();

    // Act
    let drip = tokio::spawn(async move {
        let head = b"GET /faceid/done HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
        for byte in head {
            if writer.write_all(&[*byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(700)).await;
        }
    });
    let closed = read_until_closed(&mut reader, Duration::from_secs(30)).await;
    drip.abort();

    // Assert
    let took = started.elapsed();
    assert!(closed.is_some(), "still open 30s later (header_timeout 2s)");
    assert!(
        closed
            .as_deref()
            .is_some_and(|a| !a.starts_with(b"HTTP/1.1 200")),
        "the dripped request was never served"
    );
    assert!(
        took >= Duration::from_millis(1_800) && took < bound(Duration::from_secs(2)),
        "closed after {took:?}, header_timeout 2s"
    );
}

#[tokio::test]
async fn a_kept_alive_connection_waiting_for_its_next_request_is_closed_at_the_header_timeout() {
    // Arrange: one complete request on a keep-alive connection.
    let app = app(&[("APP__SERVER__HEADER_TIMEOUT", "1s")]).await;
    let mut stream = connect(&app).await;
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");
    let answered = Instant::now();

    // Act: no next request.
    let closed = read_until_closed(&mut stream, Duration::from_secs(30)).await;

    // Assert
    let took = answered.elapsed();
    assert!(closed.is_some(), "idle connection still open 30s later");
    assert!(
        took < bound(Duration::from_secs(1)),
        "closed after {took:?}"
    );
}

#[tokio::test]
async fn a_connection_on_which_nothing_moves_is_closed_at_the_idle_timeout() {
    // Arrange: a request timeout far away, so only the idle timeout can end this; a notify
    // whose body stalls.
    let app = app(&[
        ("APP__SERVER__REQUEST_TIMEOUT", "5m"),
        ("APP__SERVER__IDLE_TIMEOUT", "1s"),
    ])
    .await;
    let mut stream = crate::stalled_notify(&app).await;
    let started = Instant::now();

    // Act
    let closed = read_until_closed(&mut stream, Duration::from_secs(30)).await;

    // Assert
    let took = started.elapsed();
    assert!(closed.is_some(), "stalled connection still open 30s later");
    assert!(
        took >= Duration::from_millis(900) && took < bound(Duration::from_secs(1)),
        "closed after {took:?}, idle_timeout 1s"
    );
}

#[tokio::test]
async fn connections_beyond_max_connections_wait_until_one_closes() {
    // Arrange: room for two connections, both taken by clients that send nothing (their
    // header timeout is far away).
    let app = app(&[
        ("APP__SERVER__MAX_CONNECTIONS", "2"),
        ("APP__SERVER__HEADER_TIMEOUT", "1m"),
    ])
    .await;
    let first = connect(&app).await;
    let _second = connect(&app).await;

    // Act: a third client asks for something simple.
    let mut third = connect(&app).await;
    third
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let early = read_until_closed(&mut third, Duration::from_millis(700)).await;

    // Assert: not served while both slots are taken; served once one is freed.
    assert!(
        early.is_none(),
        "served beyond max_connections: {}",
        String::from_utf8_lossy(&early.unwrap_or_default())
    );
    drop(first);
    let answer = read_until_closed(&mut third, Duration::from_secs(10))
        .await
        .expect("served within 10s of a slot freeing");
    assert!(
        answer.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
}
