//! The follow-up worker: works through the durable `fetch_jobs` rows (created by unsigned
//! return GETs, signed callbacks that want images, the manual fetch and RAW requests) and
//! calls get_result under FaceID's one-day, three-call budget.
//!
//! Owns: the polling loop ([`run`]), one pass over due jobs ([`job::run_once`]), and how a
//! job's key names what to call ([`Target`]).
//!
//! Invariants (the store enforces the durable half, this module the rest):
//! - at most `fetch.max_calls` calls per key, ever: each call is counted by
//!   [`FollowUpStore::reserve_call`] *before* it is made, so a crash between counting and
//!   calling loses a call but never adds one;
//! - at most one call in flight per key: only the holder of a lease may reserve, only when
//!   the lease outlives the call's total timeout, one period of the call ceiling and
//!   [`CALL_MARGIN`] twice, and the call leaves right after, only while the lease still
//!   outlives it by one [`CALL_MARGIN`] — extended first when the worker is late and the
//!   lease is still its own (see [`job`] for what the margin covers and what it cannot);
//! - no call at or after the window's end (`window_ends_at`, already net of the safety
//!   margin);
//! - time comes only from the injected clock; [`job::run_once`] never sleeps, the loop
//!   sleeps between passes.
//!
//! RAW keys: a RAW result (seed 002) has no biz_id; it is keyed `raw:<token>` in both
//! `verifications` and `fetch_jobs` (see `http::followup`). The prefix cannot collide with a
//! biz_id taken from an unsigned request (those must be `<seconds>,<id>`), and it tells the
//! worker which endpoint to call without a schema change. Logs show such a key as
//! `raw:#<hash prefix>`: the token is a bearer for the user's verification page.

pub mod job;
pub mod plan;

use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::clock::SharedClock;
use crate::config::{FetchSettings, Settings};
use crate::megvii;
use crate::store::FollowUpStore;

pub use job::{Outcome, run_once};

/// Prefix of the keys of RAW results.
pub const RAW_PREFIX: &str = "raw:";
/// Longest RAW token accepted (the key must fit the 160-character key limit).
pub const MAX_TOKEN_LEN: usize = 128;
/// Jobs leased and worked on concurrently per pass.
pub const DEFAULT_BATCH: i64 = 8;
/// What a lease must hold beyond a call's total timeout when the call leaves: room for the
/// process to be late between reading the clock and the request leaving, and for the
/// timeout to fire (and the connection to close) late. A call is counted only when the lease
/// outlives the call, the permit's wait and two margins, so counting and the permit may run
/// a margin late before a counted call is given up (see [`job`]).
pub const CALL_MARGIN: Duration = Duration::from_secs(1);

/// What a job key asks get_result for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target<'a> {
    /// Lite get_result by biz_id.
    Lite(&'a str),
    /// RAW get_result by get_token token.
    Raw(&'a str),
}

impl<'a> Target<'a> {
    pub fn of(key: &'a str) -> Self {
        match key.strip_prefix(RAW_PREFIX) {
            Some(token) => Self::Raw(token),
            None => Self::Lite(key),
        }
    }
}

/// The key under which a RAW token's result is stored.
pub fn raw_key(token: &str) -> String {
    format!("{RAW_PREFIX}{token}")
}

/// Checks a RAW token's shape: 1–128 characters of `[A-Za-z0-9._~+=-]`, which covers hex,
/// UUIDs and base64 while keeping the key safe in a URL path.
pub fn parse_raw_token(text: &str) -> Result<&str, &'static str> {
    let text = text.trim();
    if text.is_empty() {
        return Err("token is empty");
    }
    if text.len() > MAX_TOKEN_LEN {
        return Err("token is longer than 128 characters");
    }
    if !text
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"._~+=-".contains(&b))
    {
        return Err("token may contain only letters, digits and . _ ~ + = -");
    }
    Ok(text)
}

/// A key as it may appear in logs: biz_ids as they are, RAW tokens only as a hash prefix.
pub fn log_key(key: &str) -> String {
    match Target::of(key) {
        Target::Lite(biz_id) => biz_id.to_owned(),
        Target::Raw(token) => format!(
            "{RAW_PREFIX}#{}",
            &hex::encode(Sha256::digest(token.as_bytes()))[..12]
        ),
    }
}

/// The ceiling on get_result calls: a token bucket, one call per `1 / max_calls_per_second`
/// with no burst, so calls leave evenly spaced.
pub type CallLimiter = governor::DefaultDirectRateLimiter;

/// A limiter allowing `per_second` calls per second, one at a time.
pub fn call_limiter(per_second: u32) -> CallLimiter {
    let per_second = per_second.max(1);
    let period = Duration::from_nanos(1_000_000_000 / u64::from(per_second));
    let quota = governor::Quota::with_period(period.max(Duration::from_nanos(1)))
        .expect("a positive period")
        .allow_burst(std::num::NonZeroU32::MIN);
    governor::RateLimiter::direct(quota)
}

/// What one worker needs. Each context has its own lease owner id, so two contexts over
/// one database behave like two replicas.
pub struct Context {
    pub store: Arc<dyn FollowUpStore>,
    pub client: megvii::Client,
    pub clock: SharedClock,
    pub fetch: FetchSettings,
    /// The longest a get_result call can take (the client's total timeout), in ms.
    pub call_timeout_ms: i64,
    /// Lease owner id: random per context.
    pub owner: String,
    /// Jobs leased per pass, worked on concurrently.
    pub batch: i64,
    /// `fetch.max_calls_per_second`, shared by every pass of this worker.
    pub limiter: Arc<CallLimiter>,
}

impl Context {
    pub fn new(
        settings: &Settings,
        store: Arc<dyn FollowUpStore>,
        clock: SharedClock,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            store,
            client: megvii::Client::new(&settings.megvii)?,
            clock,
            fetch: settings.fetch.clone(),
            call_timeout_ms: duration_ms(settings.megvii.timeout),
            owner: format!("worker-{}", uuid::Uuid::new_v4()),
            batch: DEFAULT_BATCH,
            limiter: Arc::new(call_limiter(settings.fetch.max_calls_per_second)),
        })
    }

    /// The ceiling's spacing between two calls, in ms (rounded up).
    pub fn limiter_period_ms(&self) -> i64 {
        let per_second = i64::from(self.fetch.max_calls_per_second.max(1));
        (1000 + per_second - 1) / per_second
    }

    /// Replaces the random owner id (tests name their replicas).
    pub fn with_owner(mut self, owner: impl Into<String>) -> Self {
        self.owner = owner.into();
        self
    }
}

pub(crate) fn duration_ms(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// Runs passes until `shutdown` is cancelled: straight on while there is work, otherwise
/// waiting for `wake` (a job was scheduled) or `fetch.poll_interval`. A pass in progress is
/// finished before stopping, so a call that was counted gets its answer stored.
pub async fn run(
    ctx: Context,
    wake: Arc<Notify>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let poll = ctx.fetch.poll_interval.max(Duration::from_millis(10));
    tracing::info!(owner = %ctx.owner, "follow-up worker started");
    let mut failures: u32 = 0;
    while !shutdown.is_cancelled() {
        let now = ctx.clock.now_ms();
        let pause = match run_once(&ctx, now).await {
            Ok(Outcome::Worked(_)) => {
                failures = 0;
                tokio::task::yield_now().await;
                continue;
            }
            Ok(Outcome::Idle) => {
                failures = 0;
                poll
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                tracing::warn!(error.message = %e, error.cause_chain = %crate::telemetry::error_chain(&e), "follow-up pass failed");
                // Storage trouble: back off up to 32 polls rather than hammering it.
                poll * 2u32.saturating_pow(failures.min(5))
            }
        };
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = wake.notified() => {}
            _ = tokio::time::sleep(pause) => {}
        }
    }
    tracing::info!(owner = %ctx.owner, "follow-up worker stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_name_their_target() {
        assert_eq!(Target::of("1462259748,abc"), Target::Lite("1462259748,abc"));
        assert_eq!(Target::of(&raw_key("tok")), Target::Raw("tok"));
    }

    #[test]
    fn raw_tokens_are_checked_and_never_logged() {
        assert_eq!(parse_raw_token(" 2a9e0d1f-77 "), Ok("2a9e0d1f-77"));
        assert!(parse_raw_token("").is_err());
        assert!(parse_raw_token("a/b").is_err());
        assert!(parse_raw_token("a,b").is_err());
        assert!(parse_raw_token(&"a".repeat(129)).is_err());
        let logged = log_key(&raw_key("secret-token"));
        assert!(
            logged.starts_with("raw:#") && !logged.contains("secret"),
            "{logged}"
        );
        assert_eq!(log_key("1462259748,abc"), "1462259748,abc");
    }
}
