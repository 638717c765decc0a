//! Serving connections: the accept loop under the routers, on hyper directly, because
//! `axum::serve` offers no header-read timeout, no idle timeout and no connection cap — so a
//! client that never finished its headers held its connection forever.
//!
//! Owns, per listener:
//! - **`server.max_connections`**: a slot is taken *before* `accept`, so at the cap further
//!   clients wait in the kernel's listen backlog instead of each holding a task and a socket;
//! - **`server.header_timeout`**: hyper's header-read deadline. It starts whenever a
//!   connection waits for a request (a new one, or a kept-alive one after its answer) and is
//!   not extended by progress, so dripping a byte at a time does not help; it is also how long
//!   an idle keep-alive connection stays open;
//! - **`server.idle_timeout`**: a connection on which no byte moves either way for this long is
//!   dropped, whatever it is doing (a stalled body, a client that stopped reading its answer);
//! - **graceful shutdown**: on the token, stop accepting (the listener is closed), let every
//!   connection finish its in-flight request (idle keep-alive connections close at once), and
//!   return once all are done. The caller bounds that wait (`server.shutdown_timeout`) by
//!   dropping this future, which aborts the connections still open.
//!
//! Every request carries `ConnectInfo<SocketAddr>` of its TCP peer, as with `axum::serve`.
//! HTTP/1.1 only, as before (axum's `http2` feature was never enabled).

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::config::ServerSettings;

/// What bounds a connection; see the module header.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
}

impl From<&ServerSettings> for Limits {
    fn from(server: &ServerSettings) -> Self {
        Self {
            header_timeout: server.header_timeout,
            idle_timeout: server.idle_timeout,
            max_connections: server.max_connections,
        }
    }
}

/// Serves `router` on `listener` until `shutdown` is cancelled and the connections open then
/// have finished.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    shutdown: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let mut connections = JoinSet::new();
    loop {
        let slot = tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
        };
        let (stream, peer) = tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    pause_after(&error).await;
                    continue;
                }
            },
        };
        // Forget finished connections, so the set holds only the open ones.
        while connections.try_join_next().is_some() {}
        connections.spawn(serve_connection(
            stream,
            peer,
            router.clone(),
            limits,
            shutdown.clone(),
            slot,
        ));
    }
    drop(listener);
    while connections.join_next().await.is_some() {}
}

/// After a failed `accept`: go on at once when only that connection failed; otherwise (out of
/// file descriptors, …) wait a moment rather than spin, as `axum::serve` does.
async fn pause_after(error: &std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        error.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        return;
    }
    tracing::error!(error.message = %error, "accepting a connection failed; retrying in 1s");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    router: Router,
    limits: Limits,
    shutdown: CancellationToken,
    _slot: OwnedSemaphorePermit,
) {
    let _open = OpenConnection::count();
    let activity = Activity::new();
    let io = TokioIo::new(Watched {
        inner: stream,
        activity: activity.clone(),
    });
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        request.extensions_mut().insert(ConnectInfo(peer));
        router.clone().oneshot(request.map(Body::new))
    });
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true)
        .serve_connection(io, service);
    tokio::pin!(connection);
    let idle = activity.idle_for(limits.idle_timeout);
    tokio::pin!(idle);

    tokio::select! {
        result = connection.as_mut() => {
            if let Err(error) = result {
                // A client's doing (a header timeout, a reset, garbage): not ours to report.
                tracing::debug!(error.message = %error, "connection ended with an error");
            }
            return;
        }
        () = &mut idle => {
            tracing::debug!("connection closed: idle_timeout");
            return;
        }
        () = shutdown.cancelled() => {}
    }
    connection.as_mut().graceful_shutdown();
    tokio::select! {
        _ = connection => {}
        () = idle => tracing::debug!("connection closed during shutdown: idle_timeout"),
    }
}

/// Counts open connections in `faceid_http_open_connections` while alive.
struct OpenConnection;

impl OpenConnection {
    fn count() -> Self {
        metrics::gauge!(crate::metrics::OPEN_CONNECTIONS).increment(1.0);
        Self
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        metrics::gauge!(crate::metrics::OPEN_CONNECTIONS).decrement(1.0);
    }
}

/// When a connection last moved a byte, shared by its I/O and its idle watchdog.
#[derive(Clone)]
struct Activity {
    origin: Instant,
    /// Milliseconds after `origin`.
    last_ms: Arc<AtomicU64>,
}

impl Activity {
    fn new() -> Self {
        Self {
            origin: Instant::now(),
            last_ms: Arc::new(AtomicU64::new(0)),
        }
    }

    fn touch(&self) {
        let now = u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(now, Ordering::Relaxed);
    }

    /// Completes once nothing has moved for `limit`.
    async fn idle_for(self, limit: Duration) {
        loop {
            let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
            let deadline = self.origin + last + limit;
            if Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep_until(deadline).await;
        }
    }
}

/// A stream that records in its [`Activity`] every read or write that moved bytes.
struct Watched<S> {
    inner: S,
    activity: Activity,
}

impl<S> Watched<S> {
    /// Passes a write's outcome on, recording activity when it moved bytes.
    fn wrote(&self, poll: Poll<std::io::Result<usize>>) -> Poll<std::io::Result<usize>> {
        if matches!(poll, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        poll
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let poll = Pin::new(&mut this.inner).poll_read(cx, buf);
        if matches!(poll, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.activity.touch();
        }
        poll
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.wrote(poll)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.wrote(poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_idle_watchdog_fires_only_after_a_full_quiet_period() {
        let activity = Activity::new();
        let watchdog = tokio::spawn(activity.clone().idle_for(Duration::from_secs(10)));
        tokio::time::sleep(Duration::from_secs(6)).await;
        activity.touch();
        tokio::time::sleep(Duration::from_secs(6)).await;
        assert!(
            !watchdog.is_finished(),
            "activity at 6s moved the deadline to 16s"
        );
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(watchdog.is_finished(), "quiet from 6s to 17s");
    }
}
