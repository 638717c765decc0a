//! One pass of the follow-up worker: lease the due jobs, and for each one decide, reserve,
//! call and record — without ever sleeping, so tests drive it with a manual clock.
//!
//! Per job, in this order (the order is the budget's safety):
//! 1. the window has closed → `expired`, no call;
//! 2. the lease would not outlive a call → leave the job for a later lease (a call must end
//!    before anyone else can lease the job, or two calls could overlap);
//! 3. [`Store::reserve_call`] counts the call durably; refused → `exhausted` when our snapshot
//!    shows the budget spent, otherwise the lease was lost (or the job was cancelled): skip;
//! 4. call get_result, then store what it said in one transaction ([`Store::save_fetched`] for
//!    a result, [`Store::update_job`] for an error), which also ends our lease.
//!
//! What an answer means:
//! - a final status (any case: `"Failed"` counts) → result stored, `done`;
//! - `NOT_STARTED`/`PROCESSING` (or a status we do not know) → result stored, call again at
//!   [`next_poll_at`], or `exhausted` when that was the last call;
//! - `RESULT_NOT_FOUND` → `not_found`; `DATA_DESTROYED` → `expired`; a configuration error →
//!   `failed` with an `error!` naming the code; other final refusals → `failed`;
//! - transient trouble (concurrency limit, `INTERNAL_ERROR`, 5xx, timeouts, connection
//!   errors) → again at [`backoff_at`], or `exhausted` when no call is left.
//!
//! `last_error` is always a short code (`TIMEOUT`, `HTTP 502`, FaceID's `error_message`…):
//! never a URL, a secret or result content.

use futures_util::future::join_all;
use sha2::{Digest, Sha256};
use tracing::Instrument;

use super::{Context, Target, duration_ms, log_key};
use crate::megvii::{Fetched, UpstreamError};
use crate::protocol::ErrorClass;
use crate::store::{
    FetchState, IncomingResult, JobUpdate, LeasedJob, Source, StoreError, StoreResult,
};

/// What a pass did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// No job was due.
    Idle,
    /// This many jobs were leased and worked on (some may have been skipped).
    Worked(usize),
}

/// `last_error` when the window closed before a call could be made.
pub const WINDOW_CLOSED: &str = "WINDOW_CLOSED";
/// `last_error` when the database refused to store an answer (the job ends: calling again
/// would spend the budget on an answer that fails the same way).
pub const NOT_STORED: &str = "NOT_STORED";
/// `last_error` when a job was found with its budget already spent (e.g. after a crash
/// between counting the last call and storing its answer).
pub const NO_CALLS_LEFT: &str = "NO_CALLS_LEFT";

/// Leases the jobs due at `now` (up to `ctx.batch`) and works on them concurrently. Steps
/// after leasing read `ctx.clock` again, because calls take real time.
pub async fn run_once(ctx: &Context, now: i64) -> StoreResult<Outcome> {
    let lease_until = now.saturating_add(duration_ms(ctx.fetch.lease));
    let jobs = ctx
        .store
        .lease_due_jobs(&ctx.owner, now, lease_until, ctx.batch)
        .await?;
    if jobs.is_empty() {
        return Ok(Outcome::Idle);
    }
    let count = jobs.len();
    join_all(jobs.into_iter().map(|job| {
        let span = tracing::info_span!("fetch", owner = %ctx.owner, biz_id = %log_key(&job.biz_id));
        async move {
            if let Err(e) = work(ctx, &job).await {
                // The lease lapses and the job comes back; a counted call stays counted.
                tracing::warn!(error.message = %e, error.cause_chain = %crate::telemetry::error_chain(&e), "follow-up step failed");
            }
        }
        .instrument(span)
    }))
    .await;
    Ok(Outcome::Worked(count))
}

async fn work(ctx: &Context, job: &LeasedJob) -> StoreResult<()> {
    let max_calls = ctx.fetch.max_calls;
    let now = ctx.clock.now_ms();
    if now >= job.window_ends_at {
        tracing::info!(
            calls_used = job.calls_used,
            "window closed: follow-up expired without a call"
        );
        return finish(ctx, job, now, FetchState::Expired, WINDOW_CLOSED).await;
    }
    if job.lease_until.saturating_sub(now) <= ctx.call_timeout_ms {
        tracing::debug!("lease too short to cover a call; left for a later lease");
        return Ok(());
    }
    let Some(calls_used) = ctx
        .store
        .reserve_call(&job.biz_id, &ctx.owner, now, max_calls)
        .await?
    else {
        if job.calls_used >= max_calls {
            tracing::info!(
                calls_used = job.calls_used,
                "budget spent without a final answer"
            );
            return finish(ctx, job, now, FetchState::Exhausted, NO_CALLS_LEFT).await;
        }
        tracing::debug!("call not reserved: lease lost or job no longer pending");
        return Ok(());
    };

    let answer = match Target::of(&job.biz_id) {
        Target::Lite(biz_id) => ctx.client.get_result(biz_id, job.return_image).await,
        Target::Raw(token) => ctx.client.get_raw_result(token, job.return_image).await,
    };
    let now = ctx.clock.now_ms();
    let calls_left = max_calls - calls_used;
    match answer {
        Ok(fetched) => record_result(ctx, job, now, calls_used, calls_left, fetched).await,
        Err(error) => record_error(ctx, job, now, calls_used, calls_left, &error).await,
    }
}

async fn finish(
    ctx: &Context,
    job: &LeasedJob,
    now: i64,
    state: FetchState,
    code: &str,
) -> StoreResult<()> {
    let update = JobUpdate::Finish {
        state,
        last_error: Some(code.to_owned()),
    };
    ctx.store
        .update_job(&job.biz_id, &ctx.owner, now, &update)
        .await
}

async fn record_result(
    ctx: &Context,
    job: &LeasedJob,
    now: i64,
    calls_used: i32,
    calls_left: i32,
    fetched: Fetched,
) -> StoreResult<()> {
    let status = fetched.fields.status.clone();
    let update = if status.is_final() {
        JobUpdate::Finish {
            state: FetchState::Done,
            last_error: None,
        }
    } else if calls_left <= 0 {
        JobUpdate::Finish {
            state: FetchState::Exhausted,
            last_error: Some(format!("NOT_FINAL:{}", status.as_str())),
        }
    } else {
        let next_at = next_poll_at(
            now,
            job.window_ends_at,
            duration_ms(ctx.fetch.retry_delay),
            calls_used,
            calls_left,
        );
        JobUpdate::Retry {
            next_at,
            last_error: None,
        }
    };
    let incoming = IncomingResult::new(
        job.biz_id.as_str(),
        &fetched.fields,
        fetched.result,
        Source::GetResult,
        false,
    );
    let merged = match ctx
        .store
        .save_fetched(&ctx.owner, &incoming, &fetched.images, &update, now)
        .await
    {
        Ok(merged) => merged,
        Err(error @ StoreError::Unavailable(_)) => return Err(error),
        Err(error) => {
            // The database refused this answer's data (a bug in what we derive from it, not
            // an outage). Letting the lease lapse would call again and spend the budget on
            // an answer that fails the same way: end the job instead, loudly.
            tracing::error!(
                code = error.database_code().as_deref(),
                calls_used,
                error.message = %error,
                "get_result answer not stored: the database refused its data"
            );
            return finish(ctx, job, now, FetchState::Failed, NOT_STORED).await;
        }
    };
    tracing::info!(
        status = status.as_str(),
        calls_used,
        images = fetched.images.len(),
        merge = ?merged,
        next = ?update_state(&update),
        "get_result answered"
    );
    Ok(())
}

async fn record_error(
    ctx: &Context,
    job: &LeasedJob,
    now: i64,
    calls_used: i32,
    calls_left: i32,
    error: &UpstreamError,
) -> StoreResult<()> {
    let code = error.code();
    let class = error.class();
    let finish = |state| JobUpdate::Finish {
        state,
        last_error: Some(code.clone()),
    };
    let update = match class {
        ErrorClass::NotFound => finish(FetchState::NotFound),
        ErrorClass::Destroyed => finish(FetchState::Expired),
        ErrorClass::Configuration => {
            tracing::error!(
                code = %code,
                calls_used,
                "get_result refused our request: check megvii.api_key, megvii.api_secret and megvii.base_url"
            );
            finish(FetchState::Failed)
        }
        ErrorClass::Terminal => finish(FetchState::Failed),
        ErrorClass::Transient if calls_left <= 0 => finish(FetchState::Exhausted),
        ErrorClass::Transient => {
            let retry_delay = duration_ms(ctx.fetch.retry_delay);
            let next_at = backoff_at(
                now,
                job.window_ends_at,
                retry_delay,
                calls_used,
                calls_left,
                &job.biz_id,
            );
            JobUpdate::Retry {
                next_at,
                last_error: Some(code.clone()),
            }
        }
    };
    if class != ErrorClass::Configuration {
        tracing::warn!(code = %code, calls_used, error.message = %error, next = ?update_state(&update), "get_result failed");
    }
    ctx.store
        .update_job(&job.biz_id, &ctx.owner, now, &update)
        .await
}

/// For logs: the state a job moves to.
fn update_state(update: &JobUpdate) -> &'static str {
    match update {
        JobUpdate::Retry { .. } => "retry",
        JobUpdate::Finish { state, .. } => state.as_str(),
    }
}

/// The latest a next call may be made so that the `calls_left` remaining calls still fit
/// before the window's end, evenly spaced, with one spacing kept free at the end.
fn spacing_cap(now: i64, window_ends_at: i64, calls_left: i32) -> i64 {
    (window_ends_at.saturating_sub(now)).max(0) / i64::from(calls_left.max(0) + 1)
}

/// When to call again after a result that is not final yet.
///
/// `retry_delay × 4^(calls_used − 1)`: with the defaults the second call comes a minute after
/// the first and the third four minutes after the second, so a user still in the H5 flow has
/// time to finish before the last call is spent. Capped by
/// `(window_ends_at − now) / (calls_left + 1)` so that near the end of the day the remaining
/// calls are spread over what is left of it instead of falling past it.
pub fn next_poll_at(
    now: i64,
    window_ends_at: i64,
    retry_delay_ms: i64,
    calls_used: i32,
    calls_left: i32,
) -> i64 {
    let exponent = 2 * (calls_used.max(1) - 1).min(15) as u32;
    let delay = retry_delay_ms.max(0).saturating_mul(1_i64 << exponent);
    now.saturating_add(delay.min(spacing_cap(now, window_ends_at, calls_left)))
}

/// When to call again after transient trouble: `retry_delay × 2^(calls_used − 1)` with ±25 %
/// jitter, capped like [`next_poll_at`]. The jitter is derived from the key and the call
/// number — stable for tests, yet different across biz_ids, so replicas that hit FaceID's
/// concurrency limit together do not come back together.
pub fn backoff_at(
    now: i64,
    window_ends_at: i64,
    retry_delay_ms: i64,
    calls_used: i32,
    calls_left: i32,
    key: &str,
) -> i64 {
    let exponent = (calls_used.max(1) - 1).min(30) as u32;
    let delay = retry_delay_ms.max(0).saturating_mul(1_i64 << exponent);
    let digest = Sha256::new()
        .chain_update(key.as_bytes())
        .chain_update(calls_used.to_be_bytes())
        .finalize();
    let spread = i64::from(u16::from_be_bytes([digest[0], digest[1]]) % 501); // 0..=500
    let jittered = delay.saturating_mul(750 + spread) / 1000;
    now.saturating_add(jittered.min(spacing_cap(now, window_ends_at, calls_left)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;
    const DAY: i64 = 24 * 60 * MIN;

    #[test]
    fn polls_grow_fourfold_while_the_day_is_young() {
        assert_eq!(next_poll_at(0, DAY, MIN, 1, 2), MIN);
        assert_eq!(next_poll_at(0, DAY, MIN, 2, 1), 4 * MIN);
    }

    #[test]
    fn polls_near_the_window_end_leave_room_for_the_remaining_calls() {
        // Ten minutes left, two calls left: the next one within a third of it.
        let now = DAY - 10 * MIN;
        let at = next_poll_at(now, DAY, 60 * MIN, 1, 2);
        assert_eq!(at, now + 10 * MIN / 3);
        assert!(at < DAY);
        // Past the window: no delay (the next pass expires the job without a call).
        assert_eq!(next_poll_at(DAY + 5, DAY, MIN, 1, 2), DAY + 5);
    }

    #[test]
    fn backoff_is_jittered_deterministically_within_a_quarter() {
        let a = backoff_at(0, DAY, MIN, 1, 2, "1462259748,a");
        let b = backoff_at(0, DAY, MIN, 1, 2, "1462259748,a");
        assert_eq!(a, b, "same key and call: same delay");
        let spread: std::collections::HashSet<i64> = (0..50)
            .map(|i| backoff_at(0, DAY, MIN, 1, 2, &format!("1462259748,{i}")))
            .collect();
        assert!(spread.len() > 10, "different keys spread out");
        for at in spread {
            assert!((MIN * 3 / 4..=MIN * 5 / 4).contains(&at), "{at}");
        }
        let second = backoff_at(0, DAY, MIN, 2, 1, "1462259748,a");
        assert!((2 * MIN * 3 / 4..=2 * MIN * 5 / 4).contains(&second));
        assert!(backoff_at(DAY - MIN, DAY, 60 * MIN, 2, 1, "k") < DAY);
    }
}
