//! The attack surface a probe found, one module per finding (issue 10). Each test does what a
//! stranger with curl (or a misbehaving upstream) could do, and asserts the effect is bounded,
//! refused, hidden or shaped as documented:
//!
//! - [`metrics`]: made-up methods and paths cannot add series to `/metrics`, which can move
//!   to a listener of its own (`server.admin_listen`);
//! - [`slow_clients`]: connections that never finish their headers, drip them, sit idle or
//!   pile up are cut off (`server.header_timeout`, `idle_timeout`, `max_connections`);
//! - [`journal`]: refused bodies cannot fill the disk, yet small ones stay whole for replay,
//!   and refused deliveries are purged after `retention.refused_days`;
//! - [`masking`]: identity data is masked wherever it sits in a result, images are cut out of
//!   callbacks, `pii` answers are not cached, journal addresses are masked;
//! - [`secret`]: the API secret reaches neither `fetch.last_error` nor the logs in any
//!   encoding, even when the upstream echoes the request URL;
//! - [`errors`]: every error on every route is `{"error","message"}` JSON.

#[path = "../common/mod.rs"]
mod common;

// Shared harnesses of other suites; this binary uses part of each.
#[path = "../fetcher/helpers.rs"]
#[allow(dead_code)]
mod fetch_harness;
#[path = "../api/helpers.rs"]
#[allow(dead_code)]
mod helpers;

mod errors;
mod journal;
mod masking;
mod metrics;
mod secret;
mod slow_clients;

/// Expands `case(engine)` into `case::sqlite` and `case::postgres` tests. A case builds its
/// own app (so it can choose settings) and returns early when PostgreSQL is skipped.
#[macro_export]
macro_rules! on_both_engines {
    ($($case:ident),* $(,)?) => {
        $(
            mod $case {
                #[tokio::test]
                async fn sqlite() {
                    super::$case($crate::common::Engine::Sqlite).await;
                }
                #[tokio::test]
                async fn postgres() {
                    super::$case($crate::common::Engine::Postgres).await;
                }
            }
        )*
    };
}

/// A test app on `engine` with extra `APP__*` settings (and the per-IP rate limit off: these
/// tests send bursts from one address on purpose). `None` when PostgreSQL is skipped.
pub async fn app_on(
    engine: common::Engine,
    env: &[(&'static str, &str)],
) -> Option<helpers::TestApp> {
    let mut all = vec![("APP__SERVER__RATE_LIMIT_PER_SECOND", "0".to_owned())];
    all.extend(env.iter().map(|(k, v)| (*k, (*v).to_owned())));
    helpers::spawn_app(
        engine,
        helpers::Options {
            env: all,
            ..Default::default()
        },
    )
    .await
}

/// A connection to `app` carrying a notify that promises 100 bytes of body and sends 5.
pub async fn stalled_notify(app: &helpers::TestApp) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let mut stream = tokio::net::TcpStream::connect(app.base.trim_start_matches("http://"))
        .await
        .expect("connect");
    stream
        .write_all(
            b"POST /faceid/notify HTTP/1.1\r\nHost: x\r\n\
              Content-Type: application/x-www-form-urlencoded\r\n\
              Content-Length: 100\r\n\r\ndata=",
        )
        .await
        .expect("write");
    stream
}
