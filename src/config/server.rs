//! `[server]`: the listeners, what a connection and a request may take, and the per-IP limits
//! on the public callback routes.
//!
//! Rules: addresses parse as `ip:port` and the admin listener differs from the public one;
//! bodies of at least 1 KiB; header and idle timeouts of at least 100 ms; at least one
//! connection; a burst of at least 1 wherever its rate is on.

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{ConfigError, Section, non_empty, parse_http_url};

/// Ports FaceID calls back on (seed 003).
pub const FACEID_PORTS: [u16; 5] = [443, 5000, 16003, 8883, 8028];

#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub listen: SocketAddr,
    pub public_url: Option<url::Url>,
    pub body_limit: usize,
    pub request_timeout: Duration,
    /// After SIGTERM/SIGINT: how long in-flight requests and the worker's pass may take.
    pub shutdown_timeout: Duration,
    /// Per-IP requests per second on the callback routes; 0 disables the limit.
    pub rate_limit_per_second: u32,
    /// Requests an IP may send at once before the per-second rate applies.
    pub rate_limit_burst: u32,
    /// Key the rate limit on the last `X-Forwarded-For` address instead of the TCP peer, and
    /// record it in the journal (otherwise a client-sent header is ignored).
    pub trust_forwarded_for: bool,
    /// A second listener for `/metrics` (and the health routes); when set, `/metrics` is not
    /// served on `listen`.
    pub admin_listen: Option<SocketAddr>,
    /// Longest a client may take to send a request's headers, from the moment the connection
    /// waits for a request (so also how long a kept-alive connection may sit idle).
    pub header_timeout: Duration,
    /// A connection on which no byte moves either way for this long is closed.
    pub idle_timeout: Duration,
    /// Connections served at once; further ones wait in the listen backlog.
    pub max_connections: usize,
    /// Per-IP return GETs per minute (on top of the limit above); 0 disables this limit.
    pub return_get_per_minute: u32,
    /// Return GETs an IP may send at once before the per-minute rate applies.
    pub return_get_burst: u32,
}

/// `[server]` as written, before [`RawServer::validate`].
#[derive(Deserialize, Serialize)]
pub(super) struct RawServer {
    listen: String,
    public_url: Option<String>,
    body_limit: usize,
    #[serde(with = "humantime_serde")]
    request_timeout: Duration,
    #[serde(with = "humantime_serde")]
    shutdown_timeout: Duration,
    rate_limit_per_second: u32,
    rate_limit_burst: u32,
    trust_forwarded_for: bool,
    admin_listen: Option<String>,
    #[serde(with = "humantime_serde")]
    header_timeout: Duration,
    #[serde(with = "humantime_serde")]
    idle_timeout: Duration,
    max_connections: usize,
    return_get_per_minute: u32,
    return_get_burst: u32,
}

impl RawServer {
    pub(super) fn validate(self, at: Section) -> Result<ServerSettings, ConfigError> {
        let listen: SocketAddr = self.listen.parse().map_err(|_| {
            at.invalid(
                "listen",
                format!("{:?} is not an address like 127.0.0.1:5000", self.listen),
            )
        })?;
        let public_url = non_empty(self.public_url)
            .map(|u| parse_http_url(&u).map_err(|reason| at.invalid("public_url", reason)))
            .transpose()?;
        if self.body_limit < 1024 {
            return Err(at.invalid("body_limit", "must be at least 1024 bytes"));
        }
        let admin_listen: Option<SocketAddr> = non_empty(self.admin_listen)
            .map(|a| {
                a.parse().map_err(|_| {
                    at.invalid(
                        "admin_listen",
                        format!("{a:?} is not an address like 127.0.0.1:9090"),
                    )
                })
            })
            .transpose()?;
        if admin_listen.is_some_and(|a| a == listen) {
            return Err(at.invalid("admin_listen", "must differ from server.listen"));
        }
        for (field, timeout) in [
            ("header_timeout", self.header_timeout),
            ("idle_timeout", self.idle_timeout),
            ("shutdown_timeout", self.shutdown_timeout),
        ] {
            if timeout < Duration::from_millis(100) {
                return Err(at.invalid(field, "must be at least 100ms"));
            }
        }
        if self.max_connections == 0 {
            return Err(at.invalid("max_connections", "must be at least 1"));
        }
        // A rate with a zero burst would refuse everything: 0 disables a limit, not a burst.
        for (burst_field, burst, rate_field, rate) in [
            (
                "return_get_burst",
                self.return_get_burst,
                "return_get_per_minute",
                self.return_get_per_minute,
            ),
            (
                "rate_limit_burst",
                self.rate_limit_burst,
                "rate_limit_per_second",
                self.rate_limit_per_second,
            ),
        ] {
            if rate > 0 && burst == 0 {
                return Err(at.invalid(
                    burst_field,
                    format!("must be at least 1 when server.{rate_field} is set"),
                ));
            }
        }
        Ok(ServerSettings {
            listen,
            public_url,
            body_limit: self.body_limit,
            request_timeout: self.request_timeout,
            shutdown_timeout: self.shutdown_timeout,
            rate_limit_per_second: self.rate_limit_per_second,
            rate_limit_burst: self.rate_limit_burst,
            trust_forwarded_for: self.trust_forwarded_for,
            admin_listen,
            header_timeout: self.header_timeout,
            idle_timeout: self.idle_timeout,
            max_connections: self.max_connections,
            return_get_per_minute: self.return_get_per_minute,
            return_get_burst: self.return_get_burst,
        })
    }
}

/// Warnings about a public URL FaceID will not call back, or will call insecurely.
pub fn public_url_warnings(public_url: Option<&url::Url>) -> Vec<String> {
    let Some(url) = public_url else {
        return Vec::new();
    };
    let mut warnings = Vec::new();
    if url.scheme() != "https" {
        warnings.push(format!(
            "server.public_url is not HTTPS ({}): callbacks and the sign would cross the network in clear text",
            url.scheme()
        ));
    }
    let port = url.port_or_known_default().unwrap_or(0);
    if !FACEID_PORTS.contains(&port) {
        warnings.push(format!(
            "server.public_url uses port {port}; FaceID only calls ports 443, 5000, 16003, 8883 and 8028"
        ));
    }
    warnings
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::testing::{load, load_error};
    use crate::config::*;

    #[test]
    fn hardening_keys_have_generous_defaults_and_a_burst_is_required_with_a_rate() {
        let s = load(&[]).unwrap().settings;
        assert_eq!(s.server.shutdown_timeout, Duration::from_secs(20));
        assert_eq!(s.server.rate_limit_per_second, 100);
        assert_eq!(s.server.rate_limit_burst, 500);
        assert!(!s.server.trust_forwarded_for);

        let loaded = load(&[
            ("APP__SERVER__RATE_LIMIT_PER_SECOND", "0"),
            ("APP__SERVER__TRUST_FORWARDED_FOR", "true"),
            ("APP__SERVER__SHUTDOWN_TIMEOUT", "5s"),
        ])
        .unwrap();
        assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
        assert_eq!(loaded.settings.server.rate_limit_per_second, 0);
        assert!(loaded.settings.server.trust_forwarded_for);
        assert_eq!(
            loaded.settings.server.shutdown_timeout,
            Duration::from_secs(5)
        );

        let err = load_error(&[("APP__SERVER__RATE_LIMIT_BURST", "0")]);
        assert!(err.contains("APP__SERVER__RATE_LIMIT_BURST"), "{err}");
        // No grace at all would cut every in-flight request: refused, not obeyed.
        let err = load_error(&[("APP__SERVER__SHUTDOWN_TIMEOUT", "0s")]);
        assert!(err.contains("APP__SERVER__SHUTDOWN_TIMEOUT"), "{err}");
    }

    #[test]
    fn connection_limits_have_defaults_and_refuse_nonsense() {
        let s = load(&[]).unwrap().settings;
        assert_eq!(s.server.header_timeout, Duration::from_secs(10));
        assert_eq!(s.server.idle_timeout, Duration::from_secs(60));
        assert_eq!(s.server.max_connections, 512);
        assert_eq!(s.server.admin_listen, None);

        let loaded = load(&[("APP__SERVER__ADMIN_LISTEN", "127.0.0.1:9090")]).unwrap();
        assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
        assert_eq!(
            loaded.settings.server.admin_listen,
            Some("127.0.0.1:9090".parse().unwrap())
        );

        for (var, value) in [
            ("APP__SERVER__ADMIN_LISTEN", "127.0.0.1:5000"),
            ("APP__SERVER__ADMIN_LISTEN", "metrics"),
            ("APP__SERVER__HEADER_TIMEOUT", "0s"),
            ("APP__SERVER__IDLE_TIMEOUT", "0s"),
            ("APP__SERVER__MAX_CONNECTIONS", "0"),
        ] {
            let err = load_error(&[(var, value)]);
            assert!(err.contains(var), "{var}={value}: {err}");
        }
    }

    #[test]
    fn https_on_a_whitelisted_port_has_no_warning() {
        assert!(
            public_url_warnings(Some(&url::Url::parse("https://v.example.com").unwrap()))
                .is_empty()
        );
        assert!(
            public_url_warnings(Some(
                &url::Url::parse("https://v.example.com:16003").unwrap()
            ))
            .is_empty()
        );
    }
}
