//! One pass of the follow-up worker: lease the due jobs, and for each one decide, reserve,
//! call and record — without ever sleeping, so tests drive it with a manual clock.
//!
//! Per job, in this order (the order is the budget's safety):
//! 1. the window has closed → `expired`, no call; the budget is spent (our lease's
//!    snapshot: nobody else can count a call while we hold the lease) → `exhausted`, no
//!    call; the lease would not outlive a call even now → leave the job for a later lease;
//! 2. wait for the job's turn: the jobs of the pass due before it have left or given up
//!    (`Turns`);
//! 3. read the clock again and [`reserve_call`](crate::store::FollowUpStore::reserve_call):
//!    the call is counted durably only if our lease lasts beyond `now + call timeout + one
//!    period of the ceiling + 2 ×` [`CALL_MARGIN`] — so however long the turn took, a call
//!    is never counted under a lease it could outlive. Refused → nothing counted, no call
//!    (the lease was lost or is too short, or the job was cancelled): skip;
//! 4. take a permit of the ceiling (at most one period: the jobs before us have left);
//! 5. read the clock once more: the call leaves at once, only while the lease still lasts
//!    beyond `now + call timeout +` [`CALL_MARGIN`]. If the counting round trip, the permit
//!    and any stall of the process took longer than that allows, the worker extends its
//!    lease by a whole `fetch.lease` —
//!    [`extend_lease`](crate::store::FollowUpStore::extend_lease), only while the lease is
//!    still its own with a margin to spare, so nobody else can have leased the job — and
//!    calls, so a counted call is not wasted; when the lease has ended (another replica may
//!    hold the job) or the extension came back too late, the counted call is not made —
//!    lost, as in a crash between counting and calling, never added — and the lease lapses;
//! 6. call get_result, then store what it said in one transaction
//!    ([`save_fetched`](crate::store::FollowUpStore::save_fetched) for a result,
//!    [`end_call`](crate::store::FollowUpStore::end_call) for an error), which also logs the
//!    call in the call log and ends our lease.
//!
//! Why no two calls of a key overlap: another replica can lease the job only once our lease
//! has ended, and its call leaves later still. Ours leaves before `lease_until − call timeout
//! − margin` by the clock (step 5), and the HTTP client ends it `call timeout` after it
//! starts; the one margin left covers a process that is late between step 5's clock reading
//! and the request leaving, and a timeout that fires (and closes the connection) late. What
//! no margin covers: a process stalled for longer than that *after* step 5 (a paused VM, a
//! `SIGSTOP`, a swap storm), or replicas' clocks that disagree by more than it — a lease
//! cannot fence a request already on the wire. FaceID would then see two calls at once, each
//! still counted: the budget holds, the no-overlap rule does not.
//!
//! What an answer means for the job, and when the next call comes, is
//! [`super::plan::after_answer`]'s to say; this module stores the answer and logs. In short:
//! a final status → `done`; `NOT_STARTED`/`PROCESSING` → stored, called again later (the last
//! call held back), or `exhausted`; `RESULT_NOT_FOUND` → `not_found`; `DATA_DESTROYED` →
//! `expired`; a configuration error → `failed` with an `error!` naming the code; transient
//! trouble → backoff, or `exhausted`.
//!
//! Calls leave at most `fetch.max_calls_per_second` per second (a token bucket shared by
//! every pass of this worker), oldest-due first: a pass works on its jobs concurrently, but
//! each waits until the jobs due before it have left (`Turns`), then counts its call, then
//! takes the bucket's permit and leaves right after it — so the ceiling holds for the
//! requests FaceID sees, not only for when we decided to make them (a permit whose call is
//! given up at step 5 is simply not used). The turn comes *before* the counting, so a long
//! wait for it never leaves a counted call under a lease it would outlive; only one period
//! of the ceiling (the permit) lies between counting and calling, and step 3 asks for it.
//! The cost: a pass's counting statements run one after another.
//!
//! `last_error` is always a short code from a fixed vocabulary (`TIMEOUT`, `HTTP 502`,
//! FaceID's documented code without its detail, see [`UpstreamError::code`]): never text
//! from the answer, so never a URL, a secret or result content, whatever the upstream echoes.

use std::sync::atomic::{AtomicBool, Ordering};

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::sync::watch;
use tracing::Instrument;

use super::plan::{self, Answer, Turn};
use super::{CALL_MARGIN, Context, Target, duration_ms, log_key};
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

/// Leases the jobs due at `now` (up to `ctx.batch`, oldest-due first) and works on them
/// concurrently, their calls leaving in due order at the call-rate ceiling. Steps after
/// leasing read `ctx.clock` again, because calls take real time.
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
    let turns = Turns::new(&ctx.limiter);
    let running: FuturesUnordered<_> = jobs
        .iter()
        .enumerate()
        .map(|(index, job)| {
            let turn = turns.turn(index);
            let span = tracing::info_span!("fetch", owner = %ctx.owner, biz_id = %log_key(&job.biz_id));
            async move {
                if let Err(e) = work(ctx, job, &turn).await {
                    // The lease lapses and the job comes back; a counted call stays counted.
                    tracing::warn!(error.message = %e, error.cause_chain = %crate::telemetry::error_chain(&e), "follow-up step failed");
                }
                // A job that made no call still has to let the later ones have their turn.
                turn.pass().await;
            }
            .instrument(span)
        })
        .collect();
    running.collect::<()>().await;
    Ok(Outcome::Worked(count))
}

/// The order in which one pass's jobs may call: job `i` (in due order) waits until the jobs
/// before it have called or given up, then for a permit of the ceiling.
struct Turns<'a> {
    limiter: &'a super::CallLimiter,
    /// How many jobs of the pass have had their turn.
    done: watch::Sender<usize>,
}

impl<'a> Turns<'a> {
    fn new(limiter: &'a super::CallLimiter) -> Self {
        Self {
            limiter,
            done: watch::Sender::new(0),
        }
    }

    fn turn(&self, index: usize) -> CallTurn<'_> {
        CallTurn {
            turns: self,
            index,
            taken: AtomicBool::new(false),
        }
    }
}

/// One job's place in [`Turns`].
struct CallTurn<'a> {
    turns: &'a Turns<'a>,
    index: usize,
    taken: AtomicBool,
}

impl CallTurn<'_> {
    /// Waits until the jobs before this one have left or given up.
    async fn wait(&self) {
        let mut done = self.turns.done.subscribe();
        // The sender lives as long as the pass: `wait_for` cannot fail here.
        let _ = done.wait_for(|done| *done >= self.index).await;
    }

    fn advance(&self) {
        if !self.taken.swap(true, Ordering::SeqCst) {
            self.turns.done.send_modify(|done| *done += 1);
        }
    }

    /// Takes a permit of the ceiling once this job's turn has come (see [`Self::wait`]): the
    /// call may leave now, and the next job's turn begins.
    async fn depart(&self) {
        if !self.taken.load(Ordering::SeqCst) {
            self.wait().await;
            self.turns.limiter.until_ready().await;
            self.advance();
        }
    }

    /// Gives up this job's turn without calling (no-op once it called).
    async fn pass(&self) {
        if !self.taken.load(Ordering::SeqCst) {
            self.wait().await;
            self.advance();
        }
    }
}

async fn work(ctx: &Context, job: &LeasedJob, turn: &CallTurn<'_>) -> StoreResult<()> {
    let max_calls = ctx.fetch.max_calls;
    let margin = duration_ms(CALL_MARGIN);
    let now = ctx.clock.now_ms();
    if now >= job.window_ends_at {
        tracing::info!(
            calls_used = job.calls_used,
            "window closed: follow-up expired without a call"
        );
        return finish(ctx, job, now, FetchState::Expired, WINDOW_CLOSED).await;
    }
    if job.calls_used >= max_calls {
        tracing::info!(
            calls_used = job.calls_used,
            "budget spent without a final answer"
        );
        return finish(ctx, job, now, FetchState::Exhausted, NO_CALLS_LEFT).await;
    }
    // The lease must outlive, from the counting: the permit's wait, the call, two margins.
    let needed = ctx
        .call_timeout_ms
        .saturating_add(ctx.limiter_period_ms())
        .saturating_add(2 * margin);
    if job.lease_until.saturating_sub(now) <= needed {
        tracing::debug!("lease too short to cover a call; left for a later lease");
        return Ok(());
    }

    turn.wait().await;
    // Counted only if the lease outlives the call from now, however long the turn took.
    let now = ctx.clock.now_ms();
    let Some(calls_used) = ctx
        .store
        .reserve_call(
            &job.biz_id,
            &ctx.owner,
            now,
            now.saturating_add(needed),
            max_calls,
        )
        .await?
    else {
        tracing::debug!("call not reserved: lease lost or too short, or job no longer pending");
        return Ok(());
    };
    turn.depart().await;
    // The call leaves now, only while the lease still covers it; a late worker whose lease
    // has not ended extends it first, so its counted call is made rather than lost.
    let leaves_at = ctx.clock.now_ms();
    if job.lease_until.saturating_sub(leaves_at) <= ctx.call_timeout_ms.saturating_add(margin)
        && !extend_lease(ctx, job, leaves_at, margin).await?
    {
        tracing::warn!(
            calls_used,
            late_ms = leaves_at.saturating_sub(now),
            "call counted but not made: the lease ended or could not be extended in time (the \
             worker was late); the lease lapses and the job comes back"
        );
        return Ok(());
    }
    let answer = match Target::of(&job.biz_id) {
        Target::Lite(biz_id) => ctx.client.get_result(biz_id, job.return_image).await,
        Target::Raw(token) => ctx.client.get_raw_result(token, job.return_image).await,
    };
    let turn = Turn {
        key: &job.biz_id,
        now: ctx.clock.now_ms(),
        calls_used,
        window_ends_at: job.window_ends_at,
        return_image: job.return_image,
        known_rank: job.known_rank,
    };
    match answer {
        Ok(fetched) => record_result(ctx, job, &turn, fetched).await,
        Err(error) => record_error(ctx, job, &turn, &error).await,
    }
}

/// Extends our lease by a whole `fetch.lease` from `late_at`, if it is still ours with a
/// margin to spare (nobody can have leased the job), and if the extension itself came back
/// in time for the call to end within it.
async fn extend_lease(
    ctx: &Context,
    job: &LeasedJob,
    late_at: i64,
    margin: i64,
) -> StoreResult<bool> {
    let lease_until = late_at.saturating_add(duration_ms(ctx.fetch.lease));
    let extended = ctx
        .store
        .extend_lease(
            &job.biz_id,
            &ctx.owner,
            late_at.saturating_add(margin),
            lease_until,
        )
        .await?;
    let now = ctx.clock.now_ms();
    Ok(extended && lease_until.saturating_sub(now) > ctx.call_timeout_ms.saturating_add(margin))
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
    turn: &Turn<'_>,
    fetched: Fetched,
) -> StoreResult<()> {
    let (now, calls_used) = (turn.now, turn.calls_used);
    let status = fetched.fields.status.clone();
    let update = plan::after_answer(&ctx.fetch, turn, Answer::Result(&status));
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
            let update = JobUpdate::Finish {
                state: FetchState::Failed,
                last_error: Some(NOT_STORED.to_owned()),
            };
            return ctx
                .store
                .end_call(&job.biz_id, &ctx.owner, now, &update, NOT_STORED)
                .await;
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
    turn: &Turn<'_>,
    error: &UpstreamError,
) -> StoreResult<()> {
    let (now, calls_used) = (turn.now, turn.calls_used);
    let code = error.code();
    let class = error.class();
    if class == ErrorClass::Configuration {
        tracing::error!(
            code = %code,
            calls_used,
            "get_result refused our request: check megvii.api_key, megvii.api_secret and megvii.base_url"
        );
    }
    let update = plan::after_answer(&ctx.fetch, turn, Answer::Error { class, code: &code });
    if class != ErrorClass::Configuration {
        tracing::warn!(code = %code, calls_used, error.message = %error, next = ?update_state(&update), "get_result failed");
    }
    ctx.store
        .end_call(&job.biz_id, &ctx.owner, now, &update, &code)
        .await
}

/// For logs: the state a job moves to.
fn update_state(update: &JobUpdate) -> &'static str {
    match update {
        JobUpdate::Retry { .. } => "retry",
        JobUpdate::Finish { state, .. } => state.as_str(),
    }
}
