//! The outbound HTTP client of pushes: one signed POST to one endpoint, reported as a typed
//! [`Attempt`] (never an error the caller must interpret).
//!
//! Owns, for every request:
//! - the address policy of [`super::target`]: a DNS name is resolved by
//!   [`GuardedResolver`] (forbidden addresses dropped before connecting), an IP-literal host
//!   is checked here (hyper connects to literals without a resolver), and proxies are off
//!   (a proxy would resolve the name itself, out of our sight);
//! - no redirects: a 3xx is an answer like any other non-2xx, a failed attempt, so a
//!   public endpoint cannot bounce a push (and its signature) to an internal address;
//! - no transparent retries (one attempt is one request; the schedule decides the next);
//! - a connect timeout and a total timeout (headers and body);
//! - the answer's body: the first [`KEPT_BODY_BYTES`] kept for the attempt record, then at
//!   most [`MAX_DRAIN_BYTES`] more read and discarded (so a well-behaved connection can be
//!   reused), and beyond that the connection is dropped: a server streaming gigabytes costs
//!   us a bounded read.
//!
//! Invariants: nothing this module returns or logs carries the URL's path, query or
//! userinfo (errors are reduced to a [`FailureKind`] code; reqwest errors are never kept);
//! the attempt's latency is measured to the response headers.

use std::error::Error as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::header::{CONTENT_TYPE, HeaderName, HeaderValue};

use super::signature::WebhookHeaders;
use super::target::{
    AddressRefused, Forbidden, GuardedResolver, HostKind, LookupFailed, Resolver, SystemResolver,
    Target, TargetPolicy,
};

/// Bytes of an answer kept in the attempt record.
pub const KEPT_BODY_BYTES: usize = 1024;
/// Bytes of an answer read past [`KEPT_BODY_BYTES`] before the connection is dropped.
pub const MAX_DRAIN_BYTES: usize = 64 * 1024;

/// The client's configuration (`push.*` keys).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientSettings {
    pub connect_timeout: Duration,
    /// From the start of the request to the end of the (capped) answer.
    pub timeout: Duration,
    pub policy: TargetPolicy,
}

impl Default for ClientSettings {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            timeout: Duration::from_secs(15),
            policy: TargetPolicy::default(),
        }
    }
}

/// What one attempt produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// Until the response headers (or the failure).
    pub latency: Duration,
    pub outcome: AttemptOutcome,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// The endpoint answered with an HTTP status.
    Answered {
        status: u16,
        /// The first [`KEPT_BODY_BYTES`] of the answer.
        body: Vec<u8>,
        /// More was sent than `body` holds (or its reading broke off).
        truncated: bool,
    },
    /// No HTTP answer.
    Failed(FailureKind),
}

/// Why an attempt got no HTTP answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The address policy refused the target (an IP literal, or every resolved address).
    Forbidden(Forbidden),
    /// The host name did not resolve.
    Dns,
    /// No connection (refused, unreachable).
    Connect,
    /// The connect or the total timeout elapsed before the response headers.
    Timeout,
    /// TLS failed (certificate, handshake).
    Tls,
    /// Anything else on the wire (reset, protocol error).
    Transport,
}

impl FailureKind {
    /// A stable code for the attempt record and metrics.
    pub fn code(self) -> &'static str {
        match self {
            Self::Forbidden(_) => "forbidden_address",
            Self::Dns => "dns_error",
            Self::Connect => "connect_error",
            Self::Timeout => "timeout",
            Self::Tls => "tls_error",
            Self::Transport => "transport_error",
        }
    }
}

/// What an attempt means for its delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// 2xx: delivered, done.
    Delivered,
    /// 410 Gone: the merchant retired the endpoint; disable it.
    Gone,
    /// Anything else (3xx included): try again on schedule.
    Retry,
}

impl Attempt {
    pub fn verdict(&self) -> Verdict {
        match self.outcome {
            AttemptOutcome::Answered {
                status: 200..=299, ..
            } => Verdict::Delivered,
            AttemptOutcome::Answered { status: 410, .. } => Verdict::Gone,
            _ => Verdict::Retry,
        }
    }

    /// The HTTP status, when there was one.
    pub fn status(&self) -> Option<u16> {
        match self.outcome {
            AttemptOutcome::Answered { status, .. } => Some(status),
            AttemptOutcome::Failed(_) => None,
        }
    }

    /// A short code: `HTTP <status>` or the failure's code.
    pub fn code(&self) -> String {
        match self.outcome {
            AttemptOutcome::Answered { status, .. } => format!("HTTP {status}"),
            AttemptOutcome::Failed(kind) => kind.code().to_owned(),
        }
    }
}

/// The push client. Cheap to clone (the connection pool is shared).
#[derive(Clone)]
pub struct PushClient {
    http: reqwest::Client,
    settings: ClientSettings,
}

impl std::fmt::Debug for PushClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PushClient")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl PushClient {
    /// A client resolving names with the operating system's resolver.
    pub fn new(settings: ClientSettings) -> anyhow::Result<Self> {
        Self::with_resolver(settings, Arc::new(SystemResolver))
    }

    /// A client resolving names with `resolver` (tests make names resolve anywhere); the
    /// address policy applies to whatever it returns.
    pub fn with_resolver(
        settings: ClientSettings,
        resolver: Arc<dyn Resolver>,
    ) -> anyhow::Result<Self> {
        crate::install_crypto_provider();
        let http = reqwest::Client::builder()
            .dns_resolver(GuardedResolver::new(resolver, settings.policy))
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .retry(reqwest::retry::never())
            .https_only(!settings.policy.allow_http)
            .connect_timeout(settings.connect_timeout)
            .timeout(settings.timeout)
            .user_agent(concat!("faceid-receiver/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| anyhow::anyhow!("building the push HTTP client: {}", e.without_url()))?;
        Ok(Self { http, settings })
    }

    /// POSTs `body` (JSON) with the webhook headers to `target`: one attempt, no retry.
    pub async fn deliver(&self, target: &Target, headers: &WebhookHeaders, body: &[u8]) -> Attempt {
        let started = Instant::now();
        let failed = |kind| Attempt {
            latency: started.elapsed(),
            outcome: AttemptOutcome::Failed(kind),
        };
        // IP literals bypass the resolver: check them here, under this client's policy.
        if let Ok(HostKind::Ip(ip)) = target.host()
            && let Some(reason) = self.settings.policy.refuses(ip)
        {
            return failed(FailureKind::Forbidden(reason));
        }
        let mut request = self
            .http
            .post(target.url().clone())
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .body(body.to_vec());
        for (name, value) in headers.pairs() {
            let Ok(value) = HeaderValue::from_str(&value) else {
                // Our own ids and signatures are ASCII; this cannot happen short of a bug.
                return failed(FailureKind::Transport);
            };
            request = request.header(HeaderName::from_static(name), value);
        }
        let mut response = match request.send().await {
            Ok(response) => response,
            Err(error) => return failed(classify(&error.without_url())),
        };
        let latency = started.elapsed();
        let status = response.status().as_u16();
        let (body, truncated) = read_capped(&mut response).await;
        Attempt {
            latency,
            outcome: AttemptOutcome::Answered {
                status,
                body,
                truncated,
            },
        }
    }
}

/// Keeps the first [`KEPT_BODY_BYTES`], discards up to [`MAX_DRAIN_BYTES`] more, then stops
/// (dropping the response closes the connection). Returns the kept bytes and whether
/// anything was left out or the read broke off.
async fn read_capped(response: &mut reqwest::Response) -> (Vec<u8>, bool) {
    let mut kept = Vec::new();
    let mut discarded = 0usize;
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let room = KEPT_BODY_BYTES - kept.len();
                let take = room.min(chunk.len());
                kept.extend_from_slice(&chunk[..take]);
                discarded += chunk.len() - take;
                if discarded > MAX_DRAIN_BYTES {
                    return (kept, true);
                }
            }
            Ok(None) => return (kept, discarded > 0),
            // The status already arrived; the body is only a courtesy.
            Err(_) => return (kept, true),
        }
    }
}

/// Sorts a transport error by what the source chain says happened.
fn classify(error: &reqwest::Error) -> FailureKind {
    let mut source = error.source();
    while let Some(mut cause) = source {
        // `io::Error::source` skips the error it wraps: look inside it first.
        if let Some(inner) = cause
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref)
        {
            cause = inner;
        }
        if let Some(refused) = cause.downcast_ref::<AddressRefused>() {
            return FailureKind::Forbidden(refused.reason);
        }
        if cause.downcast_ref::<LookupFailed>().is_some() {
            return FailureKind::Dns;
        }
        if cause.downcast_ref::<rustls::Error>().is_some() {
            return FailureKind::Tls;
        }
        source = cause.source();
    }
    if error.is_timeout() {
        FailureKind::Timeout
    } else if error.is_connect() {
        FailureKind::Connect
    } else {
        FailureKind::Transport
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answered(status: u16) -> Attempt {
        Attempt {
            latency: Duration::ZERO,
            outcome: AttemptOutcome::Answered {
                status,
                body: Vec::new(),
                truncated: false,
            },
        }
    }

    #[test]
    fn only_2xx_delivers_410_disables_and_everything_else_retries() {
        for status in [200, 201, 202, 204, 299] {
            assert_eq!(answered(status).verdict(), Verdict::Delivered, "{status}");
        }
        assert_eq!(answered(410).verdict(), Verdict::Gone);
        for status in [100, 301, 302, 303, 307, 308, 400, 401, 404, 429, 500, 503] {
            assert_eq!(answered(status).verdict(), Verdict::Retry, "{status}");
        }
        let failed = Attempt {
            latency: Duration::ZERO,
            outcome: AttemptOutcome::Failed(FailureKind::Forbidden(Forbidden::Loopback)),
        };
        assert_eq!(failed.verdict(), Verdict::Retry);
        assert_eq!(failed.code(), "forbidden_address");
        assert_eq!(answered(503).code(), "HTTP 503");
    }
}
