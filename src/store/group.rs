//! Group commit for [`CallbackStore::accept_signed`](super::CallbackStore::accept_signed):
//! concurrent signed deliveries share one transaction, so one durable commit (one WAL flush)
//! acknowledges many.
//!
//! Callers queue their delivery and wait. A caller that finds one of the `writers` writers
//! free takes it and writes the batch itself (leader/follower): it yields once, so that
//! deliveries the runtime has already read join it, then takes whatever is queued (its own
//! delivery among it, at most `max`) and applies it as one batch. When a batch is done its
//! writer passes to the caller that has waited longest, who writes the next batch (the
//! caller handing it on yields once, so that batch begins before it finishes its own
//! request), or becomes free if none waits. So a caller is woken once, with its answer or to
//! lead, and no task stands between the request and the database. There is no timer: a lone
//! delivery is written at once, alone, and batches grow only while the database is busy with
//! the previous ones.
//!
//! Invariants:
//! - a caller gets `Ok` only after the transaction holding its writes has committed;
//! - a batch that fails having committed nothing is retried member by member, each in its
//!   own transaction, so one bad member (or a deadlock with another writer) cannot fail the
//!   others; a member whose own transaction fails gets that error. When the database is
//!   unavailable the batch is not retried: every member gets the batch's own
//!   [`StoreError::Unavailable`] (503), never an acknowledgement. A member whose writes
//!   committed is never written again: if reading its record back fails, it gets that error
//!   ([`BatchResult`]);
//! - members are applied in submission order, except that a batch is stably sorted by biz_id
//!   (so two deliveries for one biz_id keep their order, and concurrent batches lock rows in
//!   the same order and do not deadlock each other); the merge rule runs per member, exactly as
//!   in a transaction of its own, and each member's returned record is the one its own writes
//!   left, not the batch's final state;
//! - at most `writers` batches are written at once;
//! - a batch goes on when the caller writing it is dropped (its request cancelled): the rest
//!   of it is written on a task of its own, every other member gets its answer, and the
//!   writer is handed on after it ([`Lead`]); a delivery whose caller is dropped while it
//!   waits is still written;
//! - a batch whose writing panics answers its members `Unavailable`, and its writer is
//!   handed on, never lost;
//! - a writer keeps its database connection from one batch to the next only while batches
//!   follow each other closely and go well ([`WriterConnection`]); otherwise the connection
//!   goes back to the pool, which tests it before it is used again. A batch that finds its
//!   kept connection gone (the database restarted in between) is written again on a fresh
//!   one, not answered `Unavailable` while the database is up.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use sqlx::pool::PoolConnection;
use tokio::sync::{Mutex, oneshot};

use super::{
    IncomingResult, JobEffect, MergeOutcome, NewCallback, StoreError, StoreResult, Verification,
};

pub(super) type Accepted = (MergeOutcome, Verification);

/// What a batch writer answers. `Err`: nothing of the batch was committed, so each member may
/// be written again on its own. `Ok`: one answer per member, in order; a member may carry an
/// error of its own when its writes committed but its record could not be read back (it is
/// answered with that error, never written a second time).
pub type BatchResult = Result<Vec<StoreResult<Accepted>>, sqlx::Error>;

/// One queued `accept_signed` call.
pub struct Member {
    pub entry: NewCallback,
    pub result: IncomingResult,
    pub job: JobEffect,
}

/// What a queued caller is told: its answer, or that it leads the next batch.
#[expect(
    clippy::large_enum_variant,
    reason = "it travels in a oneshot's cell, allocated anyway; a box would add one per answer"
)]
enum Answer {
    Done(StoreResult<Accepted>),
    /// Write `batch` as writer `writer`. Its first member is the caller's own, without a
    /// reply: the caller puts in a new one for its answer.
    Lead {
        writer: usize,
        batch: Vec<(Member, Reply)>,
    },
}

/// `None` only while a member's caller is being told to lead (see [`Answer::Lead`]), or when
/// that caller was gone: its delivery is written and no one is answered.
type Reply = Option<oneshot::Sender<Answer>>;

type WriteBatch = dyn Fn(usize, Arc<Vec<Member>>) -> BoxFuture<'static, BatchResult> + Send + Sync;
type WriteOne = dyn Fn(Arc<Vec<Member>>, usize) -> BoxFuture<'static, Result<Accepted, sqlx::Error>>
    + Send
    + Sync;

/// The submitting side.
pub(super) struct GroupCommit {
    shared: Arc<Shared>,
    /// Makes the writers hand back the connections they keep, and stop keeping them.
    stop_keeping: Option<Box<dyn Fn() -> BoxFuture<'static, ()> + Send + Sync>>,
}

struct Shared {
    max: usize,
    queue: std::sync::Mutex<Queue>,
    write_batch: Box<WriteBatch>,
    write_one: Box<WriteOne>,
}

/// Not bounded here: every waiting caller is a request in flight, and those are bounded by
/// `server.max_connections` (HTTP/1.1, one request at a time per connection).
struct Queue {
    waiting: VecDeque<(Member, Reply)>,
    /// Writers (by number) with no batch in hand.
    free: Vec<usize>,
}

impl Queue {
    /// The members waiting longest, at most `max`: the batch a writer takes.
    fn take(&mut self, max: usize) -> Vec<(Member, Reply)> {
        let n = self.waiting.len().min(max);
        self.waiting.drain(..n).collect()
    }
}

impl GroupCommit {
    /// Allows `writers` batches at once. `write_batch` applies members in the given order and
    /// answers as [`BatchResult`] says, called with the number of the writer (`0..writers`, so
    /// each writer may keep state of its own); `write_one` applies one member in a
    /// transaction of its own.
    pub fn new<B, BF, O, OF>(max: usize, writers: usize, write_batch: B, write_one: O) -> Self
    where
        B: Fn(usize, Arc<Vec<Member>>) -> BF + Send + Sync + 'static,
        BF: Future<Output = BatchResult> + Send + 'static,
        O: Fn(Arc<Vec<Member>>, usize) -> OF + Send + Sync + 'static,
        OF: Future<Output = Result<Accepted, sqlx::Error>> + Send + 'static,
    {
        let writers = writers.max(1);
        let shared = Shared {
            max: max.max(1),
            queue: std::sync::Mutex::new(Queue {
                waiting: VecDeque::new(),
                free: (0..writers).rev().collect(),
            }),
            write_batch: Box::new(move |writer, members| Box::pin(write_batch(writer, members))),
            write_one: Box::new(move |members, i| Box::pin(write_one(members, i))),
        };
        Self {
            shared: Arc::new(shared),
            stop_keeping: None,
        }
    }

    /// Names the writers' connections, so that [`GroupCommit::hand_back_connections`] can
    /// take them back from the writers.
    pub fn keeping<DB: sqlx::Database>(
        mut self,
        connections: Arc<Vec<Mutex<WriterConnection<DB>>>>,
    ) -> Self {
        self.stop_keeping = Some(Box::new(move || {
            let connections = connections.clone();
            Box::pin(async move {
                for connection in connections.iter() {
                    connection.lock().await.stop_keeping();
                }
            })
        }));
        self
    }

    /// Before the pools close (closing waits for every connection in use): the writers hand
    /// back what they keep, and from now on hand back each connection after its batch.
    pub async fn hand_back_connections(&self) {
        if let Some(stop_keeping) = &self.stop_keeping {
            stop_keeping().await;
        }
    }

    /// Queues one delivery and waits until its transaction has committed (or failed). When a
    /// writer is free the caller writes the batch itself.
    pub async fn submit(
        &self,
        entry: NewCallback,
        result: IncomingResult,
        job: JobEffect,
    ) -> StoreResult<Accepted> {
        let (reply, mut answer) = oneshot::channel();
        let member = Member { entry, result, job };
        let free_writer = {
            let mut queue = self.shared.queue.lock().expect("queue lock");
            queue.waiting.push_back((member, Some(reply)));
            queue.free.pop()
        };
        if let Some(writer) = free_writer {
            let writer = HandOver(Some((self.shared.clone(), writer)));
            // Requests already read join this batch instead of each waiting for one of its
            // own: `bench/results/2026-12-03/ab/session-11-prototype-leader-yield-vs-leader/`.
            tokio::task::yield_now().await;
            let batch = self.shared.take_batch();
            lead(writer, batch).await;
        }
        loop {
            match answer.await {
                Ok(Answer::Done(result)) => return result,
                Ok(Answer::Lead { writer, mut batch }) => {
                    let (reply, next) = oneshot::channel();
                    answer = next;
                    batch[0].1 = Some(reply);
                    lead(HandOver(Some((self.shared.clone(), writer))), batch).await;
                }
                // The batch holding this delivery panicked (see `Lead`).
                Err(_) => {
                    return Err(StoreError::Unavailable(Arc::new(
                        sqlx::Error::WorkerCrashed,
                    )));
                }
            }
        }
    }
}

/// Writes `batch` as the caller's own. If the writer then went to a waiting caller, yields
/// once, so that the next batch begins before this caller finishes its request (with one
/// writer, as on SQLite, the database would otherwise wait on that:
/// `bench/results/2026-12-03/ab/session-11-handover-yield-sqlite/`).
async fn lead(writer: HandOver, batch: Vec<(Member, Reply)>) {
    if Lead::new(writer, batch).await {
        tokio::task::yield_now().await;
    }
}

impl Shared {
    /// The members waiting longest, at most `max`.
    fn take_batch(&self) -> Vec<(Member, Reply)> {
        self.queue.lock().expect("queue lock").take(self.max)
    }

    /// Writer `writer` is done with its batch: it leads the next one through the caller
    /// waiting longest (who is woken for that instead of for its answer), or becomes free.
    /// Whether it went to a caller.
    fn hand_over(self: &Arc<Self>, writer: usize) -> bool {
        let mut queue = self.queue.lock().expect("queue lock");
        if queue.waiting.is_empty() {
            queue.free.push(writer);
            return false;
        }
        let mut batch = queue.take(self.max);
        drop(queue);
        let lead = batch[0].1.take().expect("a waiting member has its reply");
        if let Err(Answer::Lead { writer, batch }) = lead.send(Answer::Lead { writer, batch }) {
            // That caller is gone (its request was dropped); its delivery is still written.
            let writer = HandOver(Some((self.clone(), writer)));
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(Lead::new(writer, batch));
            }
        }
        true
    }
}

/// A batch being written by a caller. Should the caller be dropped before the batch is done
/// (its request cancelled), the rest of the batch is written on a task of its own: the other
/// members still get their answers, and the writer is handed over after it.
struct Lead {
    batch: Option<BoxFuture<'static, ()>>,
    handover: HandOver,
}

impl Lead {
    fn new(writer: HandOver, batch: Vec<(Member, Reply)>) -> Self {
        let (shared, number) = writer.0.clone().expect("a writer in hand");
        let work = async move {
            if !batch.is_empty() {
                let write_batch = |members| (shared.write_batch)(number, members);
                run_batch(batch, &write_batch, &*shared.write_one).await;
            }
        };
        // A panic while writing is contained here: the batch's replies are dropped with its
        // future (its members get `Unavailable`), and the caller goes on.
        let work = std::panic::AssertUnwindSafe(work)
            .catch_unwind()
            .map(|_| ());
        Self {
            batch: Some(Box::pin(work)),
            handover: writer,
        }
    }
}

impl Future for Lead {
    /// Whether the writer went to a waiting caller.
    type Output = bool;
    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<bool> {
        let batch = self.batch.as_mut().expect("polled after completion");
        match batch.as_mut().poll(cx) {
            std::task::Poll::Ready(()) => {
                self.batch = None;
                std::task::Poll::Ready(self.handover.now())
            }
            std::task::Poll::Pending => std::task::Poll::Pending,
        }
    }
}

impl Drop for Lead {
    fn drop(&mut self) {
        // Not while unwinding (a panic elsewhere in the caller): the batch is dropped, its
        // members get `Unavailable`, and the writer is handed on when `handover` drops.
        if let Some(batch) = self.batch.take()
            && !std::thread::panicking()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            let mut handover = HandOver(self.handover.0.take());
            runtime.spawn(async move {
                batch.await;
                handover.now();
            });
        }
    }
}

/// Hands the writer over when its batch is done, or when the batch is dropped unfinished, so
/// that a writer is never lost.
struct HandOver(Option<(Arc<Shared>, usize)>);

impl HandOver {
    /// Whether the writer went to a waiting caller.
    fn now(&mut self) -> bool {
        match self.0.take() {
            Some((shared, writer)) => shared.hand_over(writer),
            None => false,
        }
    }
}

impl Drop for HandOver {
    fn drop(&mut self) {
        self.now();
    }
}

async fn run_batch(
    mut batch: Vec<(Member, Reply)>,
    write_batch: &(impl Fn(Arc<Vec<Member>>) -> BoxFuture<'static, BatchResult> + ?Sized),
    write_one: &WriteOne,
) {
    // Stable: deliveries for one biz_id keep their submission order.
    batch.sort_by(|(a, _), (b, _)| a.result.biz_id.cmp(&b.result.biz_id));
    let (members, replies): (Vec<Member>, Vec<Reply>) = batch.into_iter().unzip();
    let members = Arc::new(members);
    metrics::histogram!(crate::metrics::GROUP_COMMIT_BATCH_SIZE).record(members.len() as f64);
    let answer = |reply: Reply, result| {
        if let Some(reply) = reply {
            let _ = reply.send(Answer::Done(result));
        }
    };
    match write_batch(members.clone()).await {
        Ok(results) => {
            for (reply, result) in replies.into_iter().zip(results) {
                answer(reply, result);
            }
        }
        Err(error) => {
            let error = StoreError::from(error);
            if members.len() == 1 || matches!(error, StoreError::Unavailable(_)) {
                tracing::warn!(members = members.len(), error = %error, "group commit failed");
                for reply in replies {
                    answer(reply, Err(error.clone()));
                }
                return;
            }
            tracing::warn!(
                members = members.len(),
                error = %error,
                "group commit failed; retrying its members one by one"
            );
            for (i, reply) in replies.into_iter().enumerate() {
                let result = write_one(members.clone(), i)
                    .await
                    .map_err(StoreError::from);
                answer(reply, result);
            }
        }
    }
}

/// How long a writer keeps its connection with no batch to write; after that, the next batch
/// takes one from the pool (which tests it first).
const KEEP_IDLE: Duration = Duration::from_secs(1);

/// How long a writer keeps one connection at most, so that the pool's own limits (lifetime,
/// idle time) still apply to it.
const KEEP_AT_MOST: Duration = Duration::from_secs(60);

/// A group-commit writer's connection, kept from one batch to the next.
///
/// sqlx's pool tests a connection with a round trip to the database when it hands it out and
/// again when it takes it back: two round trips per batch beside the batch's one statement.
/// A writer keeps its connection instead while batches follow each other, and hands it back
/// to the pool — which tests it before anyone uses it again — when a batch went wrong (the
/// connection may be broken), after `KEEP_IDLE` (1 s) without a batch, after `KEEP_AT_MOST`
/// (60 s) in all, and when the store closes. While it is kept, the pool counts it as in use.
///
/// Public (hidden) for the batched ceiling of `bench/notify.sh`, whose writers keep their
/// connections the same way.
pub struct WriterConnection<DB: sqlx::Database> {
    held: Option<Held<DB>>,
    /// Whether to keep the connection between batches at all.
    keep: bool,
}

struct Held<DB: sqlx::Database> {
    conn: PoolConnection<DB>,
    since: Instant,
    last_used: Instant,
}

impl<DB: sqlx::Database> Default for WriterConnection<DB> {
    fn default() -> Self {
        Self::new(true)
    }
}

impl<DB: sqlx::Database> WriterConnection<DB> {
    /// `keep`: whether to keep the connection between batches at all. An engine whose writers
    /// share the pool with everything else does not: a kept connection would be one fewer for
    /// the rest (with a pool of one, none).
    pub fn new(keep: bool) -> Self {
        Self { held: None, keep }
    }

    /// Hands the connection back and keeps none from now on (the pool is closing).
    pub fn stop_keeping(&mut self) {
        self.keep = false;
        self.held = None;
    }

    /// Writes one batch with `write` on the connection for it, then keeps that connection or
    /// hands it back as the batch went ([`went_well`]). Group commit's writers and the batched
    /// ceiling both write their batches this way.
    ///
    /// A kept connection may have died since the batch before (PostgreSQL restarted, or an
    /// administrator ended the session): no one has tested it since. When the batch fails on
    /// it because it is gone ([`super::connection_lost`]), the batch is written once more on
    /// a fresh connection, which the pool tests first — the database is up, so the batch is
    /// not a 503. Should the first connection have broken only after its commit reached the
    /// server, the second write finds the records already stored, as FaceID's own retry would
    /// after a 503: each member answered as a duplicate and journaled twice, nothing lost. A
    /// connection fresh from the pool is not written on twice: its failure is the database's.
    pub async fn write(
        &mut self,
        pool: &sqlx::Pool<DB>,
        write: impl AsyncFnOnce(&mut DB::Connection) -> BatchResult + Clone,
    ) -> BatchResult {
        let (conn, was_kept) = self.get(pool, Instant::now()).await?;
        let mut result = write.clone()(conn).await;
        if was_kept
            && let Err(error) = &result
            && super::connection_lost(error)
        {
            tracing::warn!(%error, "group commit: its kept connection was lost; writing the batch on a fresh one");
            self.held = None;
            result = write(self.get(pool, Instant::now()).await?.0).await;
        }
        self.done(went_well(&result), Instant::now());
        result
    }

    /// The connection for the next batch, which starts `now`: the kept one, unless it is due
    /// back in the pool, else a fresh one from `pool`; and whether it is the kept one.
    async fn get(
        &mut self,
        pool: &sqlx::Pool<DB>,
        now: Instant,
    ) -> Result<(&mut DB::Connection, bool), sqlx::Error> {
        self.hand_back_if_due(now);
        let kept = self.held.is_some();
        if !kept {
            self.held = Some(Held {
                conn: pool.acquire().await?,
                since: now,
                last_used: now,
            });
        }
        let held = self.held.as_mut().expect("kept or just taken");
        Ok((&mut *held.conn, kept))
    }

    /// After a batch that ended `now`: keeps the connection if the batch went well (and
    /// connections are kept at all), else hands it back.
    fn done(&mut self, went_well: bool, now: Instant) {
        match (&mut self.held, went_well && self.keep) {
            (Some(held), true) => held.last_used = now,
            _ => self.held = None,
        }
    }

    /// Hands the connection back to the pool if, `now`, it has been idle for [`KEEP_IDLE`]
    /// or kept for [`KEEP_AT_MOST`].
    fn hand_back_if_due(&mut self, now: Instant) {
        if self.held.as_ref().is_some_and(|held| {
            now.saturating_duration_since(held.last_used) >= KEEP_IDLE
                || now.saturating_duration_since(held.since) >= KEEP_AT_MOST
        }) {
            self.held = None;
        }
    }

    /// Whether a connection is kept.
    #[cfg(test)]
    fn is_kept(&self) -> bool {
        self.held.is_some()
    }
}

/// Whether a batch went well enough for its writer to keep the connection: every member
/// answered without an error.
fn went_well(result: &BatchResult) -> bool {
    result
        .as_ref()
        .is_ok_and(|answers| answers.iter().all(Result::is_ok))
}

/// Splits a batch into rounds in which no biz_id appears twice: round `k` holds each biz_id's
/// `k`-th member, in batch order. A set-based writer applies one round per statement
/// (PostgreSQL cannot upsert one row twice in one statement) and the rounds one after
/// another, so a biz_id's members keep their order and each sees the writes of the ones
/// before it, exactly as one transaction per member would.
pub(super) fn rounds<'a>(biz_ids: impl IntoIterator<Item = &'a str>) -> Vec<Vec<usize>> {
    let mut seen: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    let mut rounds: Vec<Vec<usize>> = Vec::new();
    for (i, biz_id) in biz_ids.into_iter().enumerate() {
        let occurrence = seen.entry(biz_id).or_default();
        if rounds.len() <= *occurrence {
            rounds.push(Vec::new());
        }
        rounds[*occurrence].push(i);
        *occurrence += 1;
    }
    rounds
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::store::{CallbackKind, Source};

    fn member(biz_id: &str) -> (NewCallback, IncomingResult) {
        let entry = NewCallback {
            kind: CallbackKind::Notify,
            biz_id: Some(biz_id.into()),
            verified: true,
            reason: None,
            received_at: 1,
            remote_addr: None,
            content_type: None,
            body_sha256: String::new(),
            body_len: 0,
            body: Vec::new(),
            key_id: Some("current".into()),
        };
        let result = IncomingResult {
            biz_id: biz_id.into(),
            biz_no: None,
            status: "OK".into(),
            status_rank: 3,
            liveness: None,
            confidence: None,
            source: Source::Notify,
            signed: true,
            result: "{}".into(),
        };
        (entry, result)
    }

    fn accepted(biz_id: &str) -> Accepted {
        let record = Verification {
            biz_id: biz_id.into(),
            biz_no: None,
            status: "OK".into(),
            liveness: None,
            confidence: None,
            source: Source::Notify,
            signed: true,
            result: None,
            images: Vec::new(),
            fetch: Default::default(),
            created_at: 1,
            updated_at: 1,
            purged_at: None,
        };
        (MergeOutcome::Created, record)
    }

    /// What a gated writer saw: each batch's biz_ids, and the most batches in hand at once.
    #[derive(Default)]
    struct Seen {
        batches: Vec<Vec<String>>,
        in_hand: usize,
        most_in_hand: usize,
    }

    /// Group commit whose batches each wait for a permit of `gate` before they "commit"
    /// (answering every member with a record of its own biz_id), and what it saw.
    struct Gated {
        group: Arc<GroupCommit>,
        gate: Arc<tokio::sync::Semaphore>,
        seen: Arc<Mutex<Seen>>,
    }

    /// [`Gated`] with `writers` writers and batches of at most `max`; the gate starts shut.
    fn gated(max: usize, writers: usize) -> Gated {
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let seen: Arc<Mutex<Seen>> = Arc::default();
        let (shut, log) = (gate.clone(), seen.clone());
        let group = GroupCommit::new(
            max,
            writers,
            move |_: usize, members: Arc<Vec<Member>>| {
                let (gate, log) = (shut.clone(), log.clone());
                async move {
                    {
                        let mut seen = log.lock().unwrap();
                        seen.in_hand += 1;
                        seen.most_in_hand = seen.most_in_hand.max(seen.in_hand);
                        let ids = members.iter().map(|m| m.result.biz_id.to_string());
                        seen.batches.push(ids.collect());
                    }
                    gate.acquire().await.unwrap().forget();
                    log.lock().unwrap().in_hand -= 1;
                    Ok(members
                        .iter()
                        .map(|m| Ok(accepted(m.result.biz_id.as_str())))
                        .collect())
                }
            },
            |_: Arc<Vec<Member>>, _: usize| async { unreachable!("no batch fails") },
        );
        Gated {
            group: Arc::new(group),
            gate,
            seen,
        }
    }

    fn submit(
        group: &Arc<GroupCommit>,
        biz_id: &str,
    ) -> tokio::task::JoinHandle<StoreResult<Accepted>> {
        let (group, (entry, result)) = (group.clone(), member(biz_id));
        tokio::spawn(async move { group.submit(entry, result, JobEffect::Keep).await })
    }

    /// [`submit`] for each of `biz_ids`, in order.
    fn submit_all(
        group: &Arc<GroupCommit>,
        biz_ids: &[&str],
    ) -> Vec<tokio::task::JoinHandle<StoreResult<Accepted>>> {
        biz_ids.iter().map(|id| submit(group, id)).collect()
    }

    /// Lets every spawned task run until it waits (current-thread runtime).
    async fn settle() {
        for _ in 0..16 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn callers_write_batches_themselves_no_more_at_once_than_there_are_writers() {
        let gated = gated(2, 2);
        let (gate, seen) = (&gated.gate, &gated.seen);
        let expected: Vec<String> = (0..12).map(|i| format!("b{i:02}")).collect();
        let ids: Vec<&str> = expected.iter().map(String::as_str).collect();
        let calls = submit_all(&gated.group, &ids);
        settle().await;
        assert_eq!(
            seen.lock().unwrap().in_hand,
            2,
            "both writers busy, the rest queued"
        );
        gate.add_permits(64);
        for (i, call) in calls.into_iter().enumerate() {
            let (_, record) = call.await.unwrap().expect("answered");
            assert_eq!(
                record.biz_id,
                format!("b{i:02}"),
                "each caller gets its own record"
            );
        }

        let seen = seen.lock().unwrap();
        assert_eq!(
            seen.most_in_hand, 2,
            "never more batches at once than writers"
        );
        let mut written: Vec<String> = seen.batches.concat();
        written.sort();
        assert_eq!(written, expected, "every delivery written exactly once");
        assert!(
            seen.batches.iter().any(|batch| batch.len() > 1),
            "those queued behind busy writers were batched: {:?}",
            seen.batches
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_batch_is_finished_and_answered_when_the_caller_writing_it_is_dropped() {
        let Gated { group, gate, seen } = gated(8, 1);

        // The first caller writes a batch of the three; then its request is dropped.
        let calls = submit_all(&group, &["a", "b", "c"]);
        settle().await;
        assert_eq!(seen.lock().unwrap().batches, [["a", "b", "c"]]);
        calls[0].abort();
        settle().await;
        gate.add_permits(1);

        let mut calls = calls.into_iter();
        assert!(calls.next().unwrap().await.unwrap_err().is_cancelled());
        for (call, id) in calls.zip(["b", "c"]) {
            let (_, record) = call
                .await
                .unwrap()
                .expect("answered though its leader is gone");
            assert_eq!(record.biz_id, id);
        }
        // The writer was handed back: the next delivery is written.
        gate.add_permits(1);
        let (_, record) = submit(&group, "d")
            .await
            .unwrap()
            .expect("the writer is not lost");
        assert_eq!(record.biz_id, "d");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_delivery_is_written_though_its_caller_was_dropped_while_it_waited() {
        let Gated { group, gate, seen } = gated(1, 1);

        // "a" is written; "b" and "c" wait for the writer; "b"'s request is dropped.
        let calls = submit_all(&group, &["a", "b", "c"]);
        settle().await;
        calls[1].abort();
        settle().await;
        gate.add_permits(3);

        let answered: Vec<String> = futures_util::future::join_all(calls)
            .await
            .into_iter()
            .filter_map(|call| call.ok())
            .map(|answer| answer.expect("answered").1.biz_id)
            .collect();
        assert_eq!(answered, ["a", "c"]);
        assert_eq!(
            seen.lock().unwrap().batches,
            [["a"], ["b"], ["c"]],
            "the writer passed to \"b\", gone, and its delivery was written all the same"
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn the_next_batch_starts_before_the_caller_that_handed_the_writer_on_returns() {
        let Gated { group, gate, seen } = gated(8, 1);
        // Each call answers with how many batches had begun when it returned.
        let call = |id: &'static str| {
            let (group, seen, (entry, result)) = (group.clone(), seen.clone(), member(id));
            tokio::spawn(async move {
                group
                    .submit(entry, result, JobEffect::Keep)
                    .await
                    .expect("answered");
                seen.lock().unwrap().batches.len()
            })
        };

        // "a" writes its batch; "b" arrives while it does and waits for the writer.
        let a = call("a");
        settle().await;
        let b = call("b");
        settle().await;
        gate.add_permits(2);

        assert_eq!(
            a.await.unwrap(),
            2,
            "\"a\" handed the writer to \"b\", whose batch began before \"a\" returned"
        );
        assert_eq!(b.await.unwrap(), 2);
        assert_eq!(seen.lock().unwrap().batches, [["a"], ["b"]]);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_writer_that_panics_answers_its_batch_unavailable_and_is_not_lost() {
        let panics = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let panicking = panics.clone();
        let group = Arc::new(GroupCommit::new(
            8,
            1,
            move |_: usize, members: Arc<Vec<Member>>| {
                let panicking = panicking.clone();
                async move {
                    tokio::task::yield_now().await;
                    assert!(
                        !panicking.load(std::sync::atomic::Ordering::SeqCst),
                        "a bug"
                    );
                    Ok(members
                        .iter()
                        .map(|m| Ok(accepted(m.result.biz_id.as_str())))
                        .collect())
                }
            },
            |_: Arc<Vec<Member>>, _: usize| async { unreachable!("no batch fails") },
        ));

        let calls: Vec<_> = ["a", "b"].iter().map(|id| submit(&group, id)).collect();
        for call in calls {
            match call.await.expect("the caller itself does not panic") {
                Err(StoreError::Unavailable(_)) => {}
                other => panic!("expected Unavailable, got {:?}", other.map(|(o, _)| o)),
            }
        }
        panics.store(false, std::sync::atomic::Ordering::SeqCst);
        let (_, record) = submit(&group, "c")
            .await
            .unwrap()
            .expect("the writer is not lost");
        assert_eq!(record.biz_id, "c");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn every_member_of_a_batch_the_database_could_not_take_gets_that_very_error() {
        let batches: Arc<Mutex<Vec<usize>>> = Arc::default();
        let seen = batches.clone();
        let group = GroupCommit::new(
            8,
            1,
            move |_: usize, members: Arc<Vec<Member>>| {
                seen.lock().unwrap().push(members.len());
                async { Err(sqlx::Error::PoolTimedOut) }
            },
            |_: Arc<Vec<Member>>, _: usize| async {
                panic!("a batch that found the database unavailable is not retried")
            },
        );
        let members = [member("a"), member("b"), member("c")];

        // On a current-thread runtime every call is queued while the first, which leads,
        // yields before taking its batch.
        let results =
            futures_util::future::join_all(members.iter().map(|(entry, result)| {
                group.submit(entry.clone(), result.clone(), JobEffect::Keep)
            }))
            .await;

        assert_eq!(*batches.lock().unwrap(), [3], "one batch of three");
        for result in results {
            match result {
                Err(StoreError::Unavailable(error)) => assert!(
                    matches!(*error, sqlx::Error::PoolTimedOut),
                    "the database's own error, not a copy: {error:?}"
                ),
                other => panic!("expected Unavailable, got {:?}", other.map(|(o, _)| o)),
            }
        }
    }

    /// Waits (bounded) until the pool holds `idle` idle connections: a connection handed back
    /// reaches the pool after the pool's own test of it, on a task of its own.
    async fn until_idle(pool: &sqlx::SqlitePool, idle: usize) {
        for _ in 0..500 {
            if pool.num_idle() == idle {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!(
            "the pool has {} idle connections, not {idle}",
            pool.num_idle()
        );
    }

    #[tokio::test]
    async fn a_writer_keeps_its_connection_between_close_batches_and_hands_it_back_when_due() {
        // Arrange: a pool of real SQLite connections; the writer's clock is the instants
        // given to it.
        let pool = sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(2)
            .connect("sqlite::memory:")
            .await
            .unwrap();
        let mut writer = WriterConnection::default();
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);

        // Act and assert: a first batch takes a connection and marks it as its own (a
        // temporary table lives only on its connection).
        let (conn, kept) = writer.get(&pool, at(0)).await.unwrap();
        assert!(!kept, "the first batch's connection comes from the pool");
        sqlx::query("CREATE TEMP TABLE mine (x)")
            .execute(&mut *conn)
            .await
            .unwrap();
        writer.done(true, at(5));
        assert!(writer.is_kept());
        assert_eq!(pool.num_idle(), 0, "kept, not back in the pool");

        // Batches that follow closely run on that very connection, up to KEEP_AT_MOST.
        let mut now = 5;
        while now + 900 < KEEP_AT_MOST.as_millis() as u64 {
            now += 900;
            let (conn, kept) = writer.get(&pool, at(now)).await.unwrap();
            assert!(kept);
            sqlx::query("SELECT * FROM mine")
                .execute(&mut *conn)
                .await
                .expect("the kept connection");
            writer.done(true, at(now));
            assert_eq!(pool.num_idle(), 0);
        }
        // Kept for KEEP_AT_MOST in all: handed back, though batches kept coming.
        writer.hand_back_if_due(at(KEEP_AT_MOST.as_millis() as u64));
        assert!(!writer.is_kept());
        until_idle(&pool, 1).await;

        // Idle for KEEP_IDLE: handed back before the next batch takes one.
        writer.get(&pool, at(100_000)).await.unwrap();
        writer.done(true, at(100_000));
        writer.hand_back_if_due(at(100_000 + KEEP_IDLE.as_millis() as u64 - 1));
        assert!(writer.is_kept(), "not idle long enough yet");
        writer.hand_back_if_due(at(100_000 + KEEP_IDLE.as_millis() as u64));
        assert!(!writer.is_kept());
        until_idle(&pool, 1).await;

        // A batch that went wrong hands its connection back at once.
        writer.get(&pool, at(200_000)).await.unwrap();
        assert_eq!(pool.num_idle(), 0);
        writer.done(false, at(200_001));
        assert!(!writer.is_kept());
        until_idle(&pool, 1).await;

        // Once the pool is closing, the kept connection goes back and none is kept again.
        writer.get(&pool, at(300_000)).await.unwrap();
        writer.done(true, at(300_000));
        writer.stop_keeping();
        assert!(!writer.is_kept());
        until_idle(&pool, 1).await;
        writer.get(&pool, at(300_001)).await.unwrap();
        writer.done(true, at(300_001));
        assert!(
            !writer.is_kept(),
            "after stop_keeping, every batch hands back"
        );
        // Back in the pool before the next writer asks (else the pool could open a second
        // connection for it, and the count below would not be about this writer).
        until_idle(&pool, 1).await;

        // A writer made not to keep (its pool is shared) hands back after every batch.
        let mut sharing = WriterConnection::new(false);
        sharing.get(&pool, at(0)).await.unwrap();
        assert_eq!(pool.num_idle(), 0, "the one connection is in use");
        sharing.done(true, at(1));
        assert!(!sharing.is_kept());
        until_idle(&pool, 1).await;
        assert_eq!(pool.size(), 1, "one connection all along");
    }

    #[test]
    fn a_batch_went_well_only_when_every_member_was_answered_without_an_error() {
        let ok = || Ok(accepted("a"));
        assert!(went_well(&Ok(vec![ok(), ok()])));
        assert!(!went_well(&Ok(vec![
            ok(),
            Err(StoreError::Unavailable(Arc::new(sqlx::Error::PoolClosed)))
        ])));
        assert!(!went_well(&Err(sqlx::Error::PoolTimedOut)));
    }

    #[test]
    fn distinct_biz_ids_make_one_round_in_batch_order() {
        assert_eq!(rounds(["a", "b", "c"]), [vec![0, 1, 2]]);
        assert!(rounds([]).is_empty());
    }

    #[test]
    fn repeated_biz_ids_spread_over_rounds_in_submission_order() {
        // Sorted by biz_id, as group commit sorts a batch.
        let batch = ["x", "x", "x", "y", "z", "z"];
        assert_eq!(rounds(batch), [vec![0, 3, 4], vec![1, 5], vec![2]]);
    }

    #[test]
    fn no_round_holds_a_biz_id_twice_and_every_member_is_in_one() {
        let batch = ["b", "a", "b", "c", "a", "b"];
        let rounds = rounds(batch);
        let mut all: Vec<usize> = rounds.concat();
        all.sort();
        assert_eq!(all, (0..batch.len()).collect::<Vec<_>>());
        for round in &rounds {
            let mut ids: Vec<&str> = round.iter().map(|&i| batch[i]).collect();
            ids.sort();
            ids.dedup();
            assert_eq!(ids.len(), round.len(), "{round:?}");
        }
    }
}
