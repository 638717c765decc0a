//! Per-client-IP rate limits (tower_governor), answering 429 with the usual JSON error body
//! and `Retry-After`: one on every `/faceid/*` route (`server.rate_limit_*`), a tighter one
//! on the unsigned return GET alone
//! (`server.return_get_*`), since each fresh biz_id it brings becomes a record, a job and a
//! get_result call with the merchant's credentials, while a browser sends one per
//! verification, and one on the console's sign-in (`console.sign_in_*`), against guessing.
//!
//! Invariant: the key is the TCP peer address unless `server.trust_forwarded_for` is set;
//! a client-supplied `X-Forwarded-For` must not let anyone pick their own bucket. When it
//! is trusted, the *last* address is used: the one our own proxy appended. An IPv6 client is
//! counted by its /64 (one host usually holds a whole /64, so per address it could pick
//! among 2^64 buckets); an IPv4-mapped IPv6 address counts as the IPv4 address.
//!
//! Trade-off: a refused (429) delivery is *not* journaled — writing every request of a flood
//! to the database is what the limit protects against. It is still counted in the request
//! latency histogram with `status="429"`, and FaceID retries a notify that was not 2xx.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::Request;
use axum::response::IntoResponse;
use tower_governor::GovernorError;
use tower_governor::GovernorLayer;
use tower_governor::governor::GovernorConfigBuilder;
use tower_governor::key_extractor::KeyExtractor;

use super::error::AppError;
use crate::config::ServerSettings;

/// The client address a request is counted against.
#[derive(Debug, Clone, Copy)]
pub struct ClientIp {
    pub trust_forwarded_for: bool,
}

impl KeyExtractor for ClientIp {
    type Key = IpAddr;

    fn extract<T>(&self, request: &Request<T>) -> Result<IpAddr, GovernorError> {
        if self.trust_forwarded_for
            && let Some(ip) = last_forwarded_for(request.headers())
        {
            return Ok(bucket(ip));
        }
        Ok(bucket(
            request
                .extensions()
                .get::<ConnectInfo<SocketAddr>>()
                .map(|ConnectInfo(addr)| addr.ip())
                // Without connect info (a router driven in-process) all requests share a
                // bucket rather than failing.
                .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
        ))
    }
}

/// The bucket an address counts against: an IPv4 address as it is, an IPv6 one by its /64
/// (an IPv4-mapped one as its IPv4 address).
pub fn bucket(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !u128::from(u64::MAX))),
        },
    }
}

pub(crate) fn last_forwarded_for(headers: &axum::http::HeaderMap) -> Option<IpAddr> {
    headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|part| part.trim().parse::<IpAddr>().ok())
        .next_back()
}

pub type Layer = GovernorLayer<ClientIp, governor::middleware::NoOpMiddleware, Body>;

/// The layer for every callback route, or `None` when `server.rate_limit_per_second` is 0.
pub fn layer(server: &ServerSettings) -> Option<Layer> {
    if server.rate_limit_per_second == 0 {
        return None;
    }
    let period = Duration::from_nanos(1_000_000_000 / u64::from(server.rate_limit_per_second));
    per_client(server, period, server.rate_limit_burst)
}

/// The tighter layer for `GET /faceid/return`, or `None` when `server.return_get_per_minute`
/// is 0.
pub fn return_get_layer(server: &ServerSettings) -> Option<Layer> {
    if server.return_get_per_minute == 0 {
        return None;
    }
    let period = Duration::from_nanos(60_000_000_000 / u64::from(server.return_get_per_minute));
    per_client(server, period, server.return_get_burst)
}

/// The console's sign-in limit (`console.sign_in_*`), or `None` when
/// `console.sign_in_per_minute` is 0. Counted per client like the callback limits.
pub fn console_sign_in_layer(
    server: &ServerSettings,
    console: &crate::config::ConsoleSettings,
) -> Option<Layer> {
    if console.sign_in_per_minute == 0 {
        return None;
    }
    let period = Duration::from_nanos(60_000_000_000 / u64::from(console.sign_in_per_minute));
    per_client(server, period, console.sign_in_burst)
}

/// A per-client limit: one request per `period`, bursts of up to `burst`.
fn per_client(server: &ServerSettings, period: Duration, burst: u32) -> Option<Layer> {
    let config = GovernorConfigBuilder::default()
        .key_extractor(ClientIp {
            trust_forwarded_for: server.trust_forwarded_for,
        })
        .period(period.max(Duration::from_nanos(1)))
        .burst_size(burst.max(1))
        .finish()?;
    let config = Arc::new(config);
    forget_idle_clients(&config);
    Some(GovernorLayer::new(config).error_handler(|error| {
        match error {
            GovernorError::TooManyRequests { wait_time, .. } => AppError::TooManyRequests {
                retry_after_secs: wait_time,
            }
            .into_response(),
            other => AppError::Internal(anyhow::anyhow!("rate limiter: {other}")).into_response(),
        }
    }))
}

/// Drops the state of clients that have been quiet for a while, so the map of IPs stays
/// small. The task ends when the router (and so the limiter) is dropped.
fn forget_idle_clients(
    config: &Arc<
        tower_governor::governor::GovernorConfig<ClientIp, governor::middleware::NoOpMiddleware>,
    >,
) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let limiter = Arc::downgrade(config.limiter());
    runtime.spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(60));
        every.tick().await;
        loop {
            every.tick().await;
            let Some(limiter) = limiter.upgrade() else {
                break;
            };
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_forwarded_address_is_the_one_our_proxy_added() {
        let mut headers = axum::http::HeaderMap::new();
        headers.append("x-forwarded-for", "1.1.1.1, 2.2.2.2".parse().unwrap());
        headers.append("x-forwarded-for", "garbage, 3.3.3.3".parse().unwrap());
        assert_eq!(
            last_forwarded_for(&headers),
            Some("3.3.3.3".parse().unwrap())
        );
        assert_eq!(last_forwarded_for(&axum::http::HeaderMap::new()), None);
    }

    #[test]
    fn ipv6_clients_count_by_their_slash_64_and_ipv4_by_address() {
        let ip = |text: &str| text.parse::<IpAddr>().unwrap();
        assert_eq!(
            bucket(ip("2001:db8:1:2:aaaa:bbbb:cccc:dddd")),
            ip("2001:db8:1:2::")
        );
        assert_eq!(
            bucket(ip("2001:db8:1:2::1")),
            bucket(ip("2001:db8:1:2:ffff::9"))
        );
        assert_ne!(bucket(ip("2001:db8:1:2::1")), bucket(ip("2001:db8:1:3::1")));
        assert_eq!(bucket(ip("::ffff:203.0.113.7")), ip("203.0.113.7"));
        assert_eq!(bucket(ip("203.0.113.7")), ip("203.0.113.7"));
        assert_ne!(bucket(ip("203.0.113.7")), bucket(ip("203.0.113.8")));
        // A forwarded IPv6 client too.
        let request = Request::builder()
            .header("x-forwarded-for", "2001:db8::1:2:3:4")
            .body(())
            .unwrap();
        let trusted = ClientIp {
            trust_forwarded_for: true,
        };
        assert_eq!(trusted.extract(&request).unwrap(), ip("2001:db8::"));
    }

    #[test]
    fn forwarded_for_is_ignored_unless_trusted() {
        let request = Request::builder()
            .header("x-forwarded-for", "9.9.9.9")
            .extension(ConnectInfo(SocketAddr::from(([10, 0, 0, 1], 4000))))
            .body(())
            .unwrap();
        let untrusted = ClientIp {
            trust_forwarded_for: false,
        };
        assert_eq!(
            untrusted.extract(&request).unwrap(),
            "10.0.0.1".parse::<IpAddr>().unwrap()
        );
        let trusted = ClientIp {
            trust_forwarded_for: true,
        };
        assert_eq!(
            trusted.extract(&request).unwrap(),
            "9.9.9.9".parse::<IpAddr>().unwrap()
        );
    }
}
