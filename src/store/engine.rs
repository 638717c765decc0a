//! What the two engines share beyond SQL text: the engine struct ([`EngineStore`]), row
//! types, row → record conversions, small pure decisions, and [`impl_store!`], which writes
//! every store method once for both pool types.
//!
//! Why a macro and not generic functions: sqlx's executor bounds for "any database whose
//! connection runs these statements with these bind types" are long and leak into every
//! signature, while the bodies are the same text for `PgConnection` and
//! `SqliteConnection`. The macro keeps one copy of the logic; each engine passes it, as
//! arguments, only what differs: its pool and connection types, how a write transaction
//! begins, its migrator, its lease statement and its group-commit batch writer.
//!
//! Invariants kept here: every write that reads before it writes runs in the engine's write
//! transaction (`begin_write`); every multi-statement method is one transaction, so it is
//! all-or-nothing; every method that carries identity data seals it with the engine's
//! [`Keyring`] before binding it and opens what it reads (and no other method touches it);
//! row types that hold identity data (`result`) do not implement `Debug`; every write that
//! changes an outcome appends its outbox event (`outbox`, `completed_event`, `end_turn`) in
//! its own transaction, never in another, so the two commit or roll back together.

use super::group::GroupCommit;
use super::{
    AccessEntry, CallbackRecord, FetchInfo, FetchState, JobUpdate, Keyring, LeasedJob,
    MergeOutcome, RefusedDelivery, Source, StoreResult, Verification,
};

/// A `verifications` row joined with its follow-up job (`fetch_*` NULL when none).
#[derive(sqlx::FromRow)]
pub(super) struct VerificationRow {
    pub(super) biz_id: String,
    biz_no: Option<String>,
    status: String,
    liveness: Option<String>,
    confidence: Option<f64>,
    source: String,
    signed: bool,
    result: Option<String>,
    image_names: Option<String>,
    created_at: i64,
    updated_at: i64,
    purged_at: Option<i64>,
    fetch_state: Option<String>,
    fetch_calls_used: Option<i32>,
    fetch_next_at: Option<i64>,
    fetch_last_error: Option<String>,
}

impl TryFrom<VerificationRow> for Verification {
    type Error = sqlx::Error;

    fn try_from(row: VerificationRow) -> Result<Self, sqlx::Error> {
        let fetch = match row.fetch_state {
            None => FetchInfo::default(),
            Some(state) => FetchInfo {
                state: parse_fetch_state(&state)?,
                calls_used: row.fetch_calls_used.unwrap_or_default(),
                next_at: row.fetch_next_at,
                last_error: row.fetch_last_error,
            },
        };
        Ok(Self {
            source: Source::parse(&row.source)
                .ok_or_else(|| decode_error("source", &row.source))?,
            biz_id: row.biz_id,
            biz_no: row.biz_no,
            status: row.status,
            liveness: row.liveness,
            confidence: row.confidence,
            signed: row.signed,
            result: row.result,
            images: split_image_names(row.image_names.as_deref()),
            fetch,
            created_at: row.created_at,
            updated_at: row.updated_at,
            purged_at: row.purged_at,
        })
    }
}

/// A `pii_access` row.
#[derive(sqlx::FromRow)]
pub(super) struct AccessRow {
    token_fp: String,
    route: String,
    biz_id: Option<String>,
    accessed_at: i64,
}

impl From<AccessRow> for AccessEntry {
    fn from(row: AccessRow) -> Self {
        Self {
            token_fp: row.token_fp,
            route: row.route,
            biz_id: row.biz_id,
            accessed_at: row.accessed_at,
        }
    }
}

/// A journal row, body excluded.
#[derive(sqlx::FromRow)]
pub(super) struct CallbackRow {
    id: i64,
    kind: String,
    biz_id: Option<String>,
    verified: bool,
    outcome: String,
    reason: Option<String>,
    received_at: i64,
    remote_addr: Option<String>,
    content_type: Option<String>,
    body_sha256: String,
    body_len: i64,
    key_id: Option<String>,
    replayed_at: Option<i64>,
}

impl From<CallbackRow> for CallbackRecord {
    fn from(row: CallbackRow) -> Self {
        Self {
            id: row.id,
            kind: row.kind,
            biz_id: row.biz_id,
            verified: row.verified,
            outcome: row.outcome,
            reason: row.reason,
            received_at: row.received_at,
            remote_addr: row.remote_addr,
            content_type: row.content_type,
            body_sha256: row.body_sha256,
            body_len: row.body_len,
            key_id: row.key_id,
            replayed_at: row.replayed_at,
        }
    }
}

/// A refused delivery, as replay reads it: its body as stored, and what opening it needs.
#[derive(sqlx::FromRow)]
pub(super) struct RefusedRow {
    id: i64,
    kind: String,
    received_at: i64,
    content_type: Option<String>,
    body_len: i64,
    body: Vec<u8>,
    verified: bool,
    body_sha256: String,
}

impl RefusedRow {
    /// The delivery, its body opened with `keys`.
    pub(super) fn open(self, keys: &Keyring) -> StoreResult<RefusedDelivery> {
        Ok(RefusedDelivery {
            body: keys.open_body(&self.body, &self.body_sha256, self.verified)?,
            id: self.id,
            kind: self.kind,
            received_at: self.received_at,
            content_type: self.content_type,
            body_len: self.body_len,
        })
    }
}

/// A job as `lease_due_jobs` returns it.
#[derive(sqlx::FromRow)]
pub(super) struct LeaseRow {
    biz_id: String,
    calls_used: i32,
    next_at: i64,
    window_ends_at: i64,
    return_image: i32,
    lease_until: i64,
    known_rank: Option<i32>,
}

impl From<LeaseRow> for LeasedJob {
    fn from(row: LeaseRow) -> Self {
        Self {
            biz_id: row.biz_id,
            calls_used: row.calls_used,
            next_at: row.next_at,
            window_ends_at: row.window_ends_at,
            return_image: row.return_image,
            lease_until: row.lease_until,
            known_rank: row.known_rank.unwrap_or(0),
        }
    }
}

/// The `fetch` columns of a job row.
#[derive(sqlx::FromRow)]
pub(super) struct FetchRow {
    state: String,
    calls_used: i32,
    next_at: Option<i64>,
    last_error: Option<String>,
}

impl TryFrom<FetchRow> for FetchInfo {
    type Error = sqlx::Error;

    fn try_from(row: FetchRow) -> Result<Self, sqlx::Error> {
        Ok(Self {
            state: parse_fetch_state(&row.state)?,
            calls_used: row.calls_used,
            next_at: row.next_at,
            last_error: row.last_error,
        })
    }
}

fn parse_fetch_state(text: &str) -> Result<FetchState, sqlx::Error> {
    FetchState::parse(text).ok_or_else(|| decode_error("fetch_jobs.state", text))
}

/// A stored enum value this build does not know: a schema/code mismatch, not bad input.
fn decode_error(column: &str, value: &str) -> sqlx::Error {
    sqlx::Error::Decode(format!("unknown value {value:?} in {column}").into())
}

/// What the merge statement's `RETURNING revision` means: no row, the stored record was
/// kept; revision 1, this is the biz_id's first result (PENDING rows are revision 0).
pub(super) fn merge_outcome(revision: Option<i32>) -> MergeOutcome {
    match revision {
        None => MergeOutcome::Unchanged,
        Some(1) => MergeOutcome::Created,
        Some(_) => MergeOutcome::Updated,
    }
}

/// Whether a merge reports `verification.completed`: it stored a final result (status rank
/// 3). A duplicate or a stale result stored nothing, and reports nothing.
pub(super) fn completes(outcome: MergeOutcome, status_rank: i32) -> bool {
    outcome != MergeOutcome::Unchanged && status_rank >= 3
}

/// Whether a job update ends the follow-up without a result (`followup.ended`).
pub(super) fn ends_followup(update: &JobUpdate) -> bool {
    matches!(
        update,
        JobUpdate::Finish {
            state: FetchState::Exhausted
                | FetchState::Expired
                | FetchState::NotFound
                | FetchState::Failed,
            ..
        }
    )
}

/// The journal outcome of a verified delivery.
pub(super) fn journal_outcome(merge: MergeOutcome) -> &'static str {
    match merge {
        MergeOutcome::Created | MergeOutcome::Updated => "stored",
        MergeOutcome::Unchanged => "duplicate",
    }
}

/// Binds for `END_JOB_TURN`: (state or NULL to keep it, next_at, last_error).
pub(super) fn job_turn_binds(
    update: &JobUpdate,
) -> (Option<&'static str>, Option<i64>, Option<&str>) {
    match update {
        JobUpdate::Retry {
            next_at,
            last_error,
        } => (None, Some(*next_at), last_error.as_deref()),
        JobUpdate::Finish { state, last_error } => {
            (Some(state.as_str()), None, last_error.as_deref())
        }
    }
}

/// `image_names` column text: sorted, unique, comma-separated; NULL when there are none.
/// Sorted in Rust rather than SQL so both engines agree whatever their collation.
pub(super) fn join_image_names(mut names: Vec<String>) -> Option<String> {
    names.sort();
    names.dedup();
    (!names.is_empty()).then(|| names.join(","))
}

pub(super) fn split_image_names(text: Option<&str>) -> Vec<String> {
    text.unwrap_or_default()
        .split(',')
        .filter(|name| !name.is_empty())
        .map(str::to_owned)
        .collect()
}

/// One engine's store: its pool, its group-commit writers (`None` when group commit is off)
/// and the keys identity data is sealed with. [`PgStore`](super::PgStore) and
/// [`SqliteStore`](super::SqliteStore) are this over their pool; [`impl_store!`] implements
/// every part of the store for them.
pub struct EngineStore<P> {
    pub(super) pool: P,
    pub(super) group: Option<GroupCommit>,
    /// The pool group commit's writers use (PostgreSQL: connections of their own; SQLite:
    /// `pool` itself), `None` when group commit is off. Closed with `pool`.
    pub(super) group_pool: Option<P>,
    pub(super) keys: Keyring,
}

impl<P> EngineStore<P> {
    /// The pool itself, so that tests can observe what every pooled connection runs with
    /// (`tests/store/durability.rs`).
    #[doc(hidden)]
    pub fn pool(&self) -> &P {
        &self.pool
    }

    /// The pool group commit writes with, for the same tests.
    #[doc(hidden)]
    pub fn group_commit_pool(&self) -> Option<&P> {
        self.group_pool.as_ref()
    }
}

/// Implements every part of the store ([`Store`](super::Store)) for `EngineStore<$pool>`,
/// writing each method once for both engines.
///
/// Everything engine-specific is an argument, and the expansion uses nothing else from the
/// invoking module:
/// - `pool`, `connection`: the engine's pool and connection types;
/// - `engine`: the name [`Database::engine`](super::Database::engine) reports;
/// - `migrator`: the engine's embedded migrations;
/// - `lease_due_jobs`: the engine's lease statement ([`super::sql::lease_due_jobs!`] with its
///   row-locking clause);
/// - `lease_deliveries`: the same for push deliveries ([`super::sql::lease_deliveries!`]);
/// - `begin_write`: `async fn(&$pool) -> Result<Transaction<'static, DB>, sqlx::Error>`, how
///   a write transaction begins (PostgreSQL: a plain `BEGIN`; SQLite: `BEGIN IMMEDIATE`, so
///   that a transaction that reads first never fails upgrading its lock);
/// - `begin_on`: `async fn(&mut $conn) -> Transaction`, the same on a connection of one's own;
/// - `write_batch`: `async fn(&mut $conn, &[Member]) -> BatchResult`, which applies a
///   group-commit batch with the effects of `accept_in` member by member ([`super::group`]):
///   `Err` when none of it committed, else one answer per member. `write_each`, defined
///   here, is exactly that (one transaction, `accept_in` per member); an engine may pass its
///   own writer instead;
/// - `group_commit_pool`: `fn(&$pool) -> $pool`, the pool the writers take their
///   connections from (the engine's own, or one with connections of their own; each writer
///   keeps one while batches follow each other: [`super::group::WriterConnection`]);
/// - `group_commit_writers`: how many group-commit transactions may be open at once;
/// - `group_commit_keeps_connections`: whether each writer keeps its connection between
///   batches ([`super::group::WriterConnection`]): only where the writers' pool is theirs
///   alone.
///
/// It also defines `EngineStore<$pool>::new(pool, options)`, which the engine's `connect`
/// calls once its pool is open. The connection-level helpers (`merge`, `journal`,
/// `accept_in`, …) live in an anonymous block, visible to nothing but the trait methods.
macro_rules! impl_store {
    (
        pool: $pool:ty,
        connection: $conn:ty,
        engine: $engine:literal,
        migrator: $migrator:expr,
        lease_due_jobs: $lease_due_jobs:expr,
        lease_deliveries: $lease_deliveries:expr,
        begin_write: $begin_write:path,
        begin_on: $begin_on:path,
        write_batch: $write_batch:path,
        group_commit_pool: $group_commit_pool:path,
        group_commit_writers: $writers:expr,
        group_commit_keeps_connections: $keeps:expr $(,)?
    ) => {
        const _: () = {
            use std::sync::Arc;

            use async_trait::async_trait;

            use $crate::store::encrypted::StoredBody;
            use $crate::store::engine::{
                self as shared, AccessRow, CallbackRow, EngineStore, FetchRow, LeaseRow,
                RefusedRow, VerificationRow,
            };
            use $crate::store::group::{
                Accepted, BatchResult, GroupCommit, Member, WriterConnection,
            };
            use $crate::store::push::{
                self as push_rows, EndpointRow, EventRow, GaugesRow, HealthRow, LeaseDeliveryRow,
            };
            use $crate::store::{
                AccessEntry, ApiStore, BucketCount, CallLogEntry, CallbackQuery, CallbackRecord,
                CallbackStore, ConnectOptions, ConsoleEvent, ConsoleStore, Database,
                DeliveryCounts, FetchInfo, FollowUpCount, FollowUpStore, IncomingResult, JobEffect,
                JobUpdate, KeyCount, LeasedJob, ListQuery, MaintenanceStore, MergeOutcome,
                NewCallback, NewImage, NewJob, NewSession, OverviewCounts, PENDING, PurgeCounts,
                PurgePlan, ReencryptCounts, RefusedDelivery, ReplayStore, SearchQuery,
                SessionRecord, Source, StoreResult, Verification, encrypted, sql,
            };
            use $crate::store::{
                AttemptRecord, AttemptReport, Endpoint, EndpointHealth, EndpointPatch,
                EndpointStore, Event, EventStore, LeasedDelivery, NewEndpoint, NextStep,
                PushGauges, PushStore, RefusalSummary,
            };

            impl EngineStore<$pool> {
                /// The store over an open `pool`, with group commit set up when
                /// `options` turn it on.
                fn new(pool: $pool, options: &ConnectOptions) -> Self {
                    let group_pool = options.group_commit.then(|| $group_commit_pool(&pool));
                    let group = group_pool.as_ref().map(|group_pool| {
                        spawn_group_commit(
                            group_pool.clone(),
                            pool.clone(),
                            options.group_commit_max,
                        )
                    });
                    Self {
                        pool,
                        group,
                        group_pool,
                        keys: options.keys.clone(),
                    }
                }
            }

            /// Merges `result` under the rank/signed rule; see [`sql::MERGE_RESULT`].
            async fn merge(
                conn: &mut $conn,
                result: &IncomingResult,
                now: i64,
            ) -> Result<MergeOutcome, sqlx::Error> {
                let revision: Option<i32> = sqlx::query_scalar(sql::MERGE_RESULT)
                    .bind(&result.biz_id)
                    .bind(&result.biz_no)
                    .bind(&result.status)
                    .bind(result.status_rank)
                    .bind(&result.liveness)
                    .bind(result.confidence)
                    .bind(result.source.as_str())
                    .bind(result.signed)
                    .bind(&result.result)
                    .bind(now)
                    .fetch_optional(&mut *conn)
                    .await?;
                let outcome = shared::merge_outcome(revision);
                if outcome == MergeOutcome::Unchanged
                    && let Some(biz_no) = &result.biz_no
                {
                    sqlx::query(sql::FILL_BIZ_NO)
                        .bind(&result.biz_id)
                        .bind(biz_no)
                        .execute(&mut *conn)
                        .await?;
                }
                Ok(outcome)
            }

            async fn journal(
                conn: &mut $conn,
                entry: &NewCallback,
                outcome: &str,
            ) -> Result<i64, sqlx::Error> {
                sqlx::query_scalar(sql::INSERT_CALLBACK)
                    .bind(entry.kind.as_str())
                    .bind(&entry.biz_id)
                    .bind(entry.verified)
                    .bind(outcome)
                    .bind(&entry.reason)
                    .bind(entry.received_at)
                    .bind(&entry.remote_addr)
                    .bind(&entry.content_type)
                    .bind(&entry.body_sha256)
                    .bind(entry.body_len)
                    .bind(&entry.body)
                    .bind(&entry.key_id)
                    .fetch_one(&mut *conn)
                    .await
            }

            /// Appends one event to the outbox (a `callback.refused` of a bucket that has its
            /// event already is coalesced: no row).
            async fn outbox(
                conn: &mut $conn,
                kind: &str,
                subject: &str,
                journal_id: Option<i64>,
                now: i64,
            ) -> Result<(), sqlx::Error> {
                sqlx::query(sql::INSERT_EVENT)
                    .bind($crate::push::event::new_event_id())
                    .bind(kind)
                    .bind(subject)
                    .bind(journal_id)
                    .bind(now)
                    .execute(&mut *conn)
                    .await?;
                Ok(())
            }

            /// `verification.completed` when a merge stored a final result.
            async fn completed_event(
                conn: &mut $conn,
                outcome: MergeOutcome,
                result: &IncomingResult,
                now: i64,
            ) -> Result<(), sqlx::Error> {
                if shared::completes(outcome, result.status_rank) {
                    outbox(
                        conn,
                        $crate::store::VERIFICATION_COMPLETED,
                        &result.biz_id,
                        None,
                        now,
                    )
                    .await?;
                }
                Ok(())
            }

            /// Runs one of the job upserts that take (biz_id, next_at, window_ends_at,
            /// return_image, now).
            async fn upsert_job(
                conn: &mut $conn,
                statement: &'static str,
                biz_id: &str,
                job: &NewJob,
                now: i64,
            ) -> Result<(), sqlx::Error> {
                sqlx::query(statement)
                    .bind(biz_id)
                    .bind(job.next_at)
                    .bind(job.window_ends_at)
                    .bind(job.return_image)
                    .bind(now)
                    .execute(&mut *conn)
                    .await?;
                Ok(())
            }

            /// Ends `owner`'s turn; matches no row (a no-op) when the lease was lost. A turn
            /// that ends the follow-up without a result writes `followup.ended`.
            async fn end_turn(
                conn: &mut $conn,
                biz_id: &str,
                owner: &str,
                update: &JobUpdate,
                now: i64,
            ) -> Result<(), sqlx::Error> {
                let (state, next_at, last_error) = shared::job_turn_binds(update);
                let done = sqlx::query(sql::END_JOB_TURN)
                    .bind(biz_id)
                    .bind(owner)
                    .bind(state)
                    .bind(next_at)
                    .bind(last_error)
                    .bind(now)
                    .execute(&mut *conn)
                    .await?;
                if done.rows_affected() == 1 && shared::ends_followup(update) {
                    outbox(conn, $crate::store::FOLLOWUP_ENDED, biz_id, None, now).await?;
                }
                Ok(())
            }

            /// Logs the call that brought the job's current `calls_used` ([`sql::INSERT_CALL`]).
            async fn log_call(
                conn: &mut $conn,
                biz_id: &str,
                now: i64,
                outcome: &str,
                detail: &str,
            ) -> Result<(), sqlx::Error> {
                sqlx::query(sql::INSERT_CALL)
                    .bind(biz_id)
                    .bind(now)
                    .bind(outcome)
                    .bind(detail)
                    .execute(&mut *conn)
                    .await?;
                Ok(())
            }

            /// Stores `images` of `biz_id` and refreshes the record's image list (nothing
            /// when there are none).
            async fn store_images(
                conn: &mut $conn,
                biz_id: &str,
                images: &[NewImage],
                now: i64,
            ) -> Result<(), sqlx::Error> {
                if images.is_empty() {
                    return Ok(());
                }
                for image in images {
                    sqlx::query(sql::UPSERT_IMAGE)
                        .bind(biz_id)
                        .bind(&image.name)
                        .bind(&image.jpeg)
                        .bind(now)
                        .execute(&mut *conn)
                        .await?;
                }
                let names: Vec<String> = sqlx::query_scalar(sql::IMAGE_NAMES)
                    .bind(biz_id)
                    .fetch_all(&mut *conn)
                    .await?;
                sqlx::query(sql::SET_IMAGE_NAMES)
                    .bind(biz_id)
                    .bind(shared::join_image_names(names))
                    .bind(now)
                    .execute(&mut *conn)
                    .await?;
                Ok(())
            }

            async fn verification(
                conn: &mut $conn,
                biz_id: &str,
            ) -> Result<Option<Verification>, sqlx::Error> {
                sqlx::query_as::<_, VerificationRow>(sql::GET_VERIFICATION)
                    .bind(biz_id)
                    .fetch_optional(&mut *conn)
                    .await?
                    .map(Verification::try_from)
                    .transpose()
            }

            /// The record a write transaction just created or kept: it must exist.
            async fn written_verification(
                conn: &mut $conn,
                biz_id: &str,
            ) -> Result<Verification, sqlx::Error> {
                verification(conn, biz_id)
                    .await?
                    .ok_or(sqlx::Error::RowNotFound)
            }

            /// `accept_signed`'s writes, inside the caller's transaction.
            async fn accept_in(
                conn: &mut $conn,
                entry: &NewCallback,
                result: &IncomingResult,
                job: JobEffect,
            ) -> Result<Accepted, sqlx::Error> {
                let now = entry.received_at;
                let outcome = merge(conn, result, now).await?;
                journal(conn, entry, shared::journal_outcome(outcome)).await?;
                apply_job_effect(conn, &result.biz_id, job, now).await?;
                completed_event(conn, outcome, result, now).await?;
                let record = written_verification(conn, &result.biz_id).await?;
                Ok((outcome, record))
            }

            /// A group-commit batch, member after member in one transaction.
            #[allow(dead_code)] // an engine with a writer of its own does not use it
            async fn write_each(conn: &mut $conn, members: &[Member]) -> BatchResult {
                let mut tx = $begin_on(conn).await?;
                let mut accepted = Vec::with_capacity(members.len());
                for m in members {
                    accepted.push(Ok(accept_in(&mut tx, &m.entry, &m.result, m.job).await?));
                }
                tx.commit().await?;
                Ok(accepted)
            }

            /// Leases a batch with one of the engine's lease statements (follow-up jobs, push
            /// deliveries), in a write transaction of its own. Binds: owner, now,
            /// lease_until, limit.
            async fn lease_rows<R>(
                pool: &$pool,
                statement: &'static str,
                owner: &str,
                now: i64,
                lease_until: i64,
                limit: i64,
            ) -> Result<Vec<R>, sqlx::Error>
            where
                R: for<'r> sqlx::FromRow<
                        'r,
                        <<$conn as sqlx::Connection>::Database as sqlx::Database>::Row,
                    > + Send
                    + Unpin,
            {
                let mut tx = $begin_write(pool).await?;
                let rows = sqlx::query_as::<_, R>(statement)
                    .bind(owner)
                    .bind(now)
                    .bind(lease_until)
                    .bind(limit.max(0))
                    .fetch_all(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(rows)
            }

            /// What a signed result does to the follow-up of `biz_id` (see [`JobEffect`]).
            async fn apply_job_effect(
                conn: &mut $conn,
                biz_id: &str,
                job: JobEffect,
                now: i64,
            ) -> Result<(), sqlx::Error> {
                match job {
                    JobEffect::Keep => {}
                    JobEffect::CancelPending => {
                        sqlx::query(sql::CANCEL_PENDING_JOB)
                            .bind(biz_id)
                            .bind(now)
                            .execute(&mut *conn)
                            .await?;
                    }
                    JobEffect::Ensure(new_job) => {
                        upsert_job(conn, sql::ENSURE_JOB, biz_id, &new_job, now).await?
                    }
                }
                Ok(())
            }

            /// Group commit for `accept_signed`: see [`super::group`]. A batch is written by
            /// `$write_batch` on its writer's connection from `group_pool`; when it fails, each
            /// member is retried alone by `accept_in` on `pool`.
            fn spawn_group_commit(group_pool: $pool, pool: $pool, max: usize) -> GroupCommit {
                let one_pool = pool;
                // One per writer, each locked only by the batch that writer is writing.
                let connections: Arc<Vec<tokio::sync::Mutex<WriterConnection<_>>>> = Arc::new(
                    (0..$writers)
                        .map(|_| tokio::sync::Mutex::new(WriterConnection::new($keeps)))
                        .collect(),
                );
                let kept = connections.clone();
                GroupCommit::new(
                    max,
                    $writers,
                    move |writer: usize, members: Arc<Vec<Member>>| {
                        let (pool, connections) = (group_pool.clone(), connections.clone());
                        async move {
                            let mut connection = connections[writer].lock().await;
                            connection
                                .write(&pool, async |conn| $write_batch(conn, &members).await)
                                .await
                        }
                    },
                    move |members: Arc<Vec<Member>>, i: usize| {
                        let pool = one_pool.clone();
                        async move {
                            let m = &members[i];
                            let mut tx = $begin_write(&pool).await?;
                            let accepted = accept_in(&mut tx, &m.entry, &m.result, m.job).await?;
                            tx.commit().await?;
                            Ok(accepted)
                        }
                    },
                )
                .keeping(kept)
            }

            #[async_trait]
            impl Database for EngineStore<$pool> {
                fn engine(&self) -> &'static str {
                    $engine
                }

                async fn migrate(&self) -> StoreResult<()> {
                    $migrator.run(&self.pool).await?;
                    Ok(())
                }

                async fn ping(&self) -> StoreResult<()> {
                    sqlx::query(sql::PING).execute(&self.pool).await?;
                    Ok(())
                }

                async fn close(&self) {
                    if let Some(group) = &self.group {
                        group.hand_back_connections().await;
                    }
                    self.pool.close().await;
                    if let Some(group_pool) = &self.group_pool {
                        group_pool.close().await;
                    }
                }
            }

            #[async_trait]
            impl CallbackStore for EngineStore<$pool> {
                async fn journal_rejected(&self, entry: &NewCallback) -> StoreResult<i64> {
                    let entry = self.keys.seal_entry(std::borrow::Cow::Borrowed(entry));
                    let bucket =
                        $crate::store::refusal_bucket(entry.kind.as_str(), entry.received_at);
                    let mut tx = $begin_write(&self.pool).await?;
                    let id = journal(&mut tx, &entry, "rejected").await?;
                    outbox(
                        &mut tx,
                        $crate::store::CALLBACK_REFUSED,
                        &bucket,
                        Some(id),
                        entry.received_at,
                    )
                    .await?;
                    tx.commit().await?;
                    Ok(id)
                }

                async fn accept_signed(
                    &self,
                    entry: NewCallback,
                    result: IncomingResult,
                    job: JobEffect,
                ) -> StoreResult<(MergeOutcome, Verification)> {
                    let entry = self
                        .keys
                        .seal_entry(std::borrow::Cow::Owned(entry))
                        .into_owned();
                    let result = self
                        .keys
                        .seal_result(std::borrow::Cow::Owned(result))
                        .into_owned();
                    let (outcome, record) = match &self.group {
                        Some(group) => group.submit(entry, result, job).await?,
                        None => {
                            let mut tx = $begin_write(&self.pool).await?;
                            let accepted = accept_in(&mut tx, &entry, &result, job).await?;
                            tx.commit().await?;
                            accepted
                        }
                    };
                    Ok((outcome, self.keys.open_record(record)?))
                }

                async fn accept_return_get(
                    &self,
                    entry: &NewCallback,
                    biz_id: &str,
                    job: NewJob,
                ) -> StoreResult<Verification> {
                    let now = entry.received_at;
                    let entry = self.keys.seal_entry(std::borrow::Cow::Borrowed(entry));
                    let mut tx = $begin_write(&self.pool).await?;
                    journal(&mut tx, &entry, "pending").await?;
                    sqlx::query(sql::INSERT_PENDING)
                        .bind(biz_id)
                        .bind(PENDING)
                        .bind(Source::Return.as_str())
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                    upsert_job(&mut tx, sql::INSERT_JOB_UNLESS_FINAL, biz_id, &job, now).await?;
                    let record = written_verification(&mut tx, biz_id).await?;
                    tx.commit().await?;
                    self.keys.open_record(record)
                }

                async fn save_images(
                    &self,
                    biz_id: &str,
                    images: &[NewImage],
                    now: i64,
                ) -> StoreResult<()> {
                    let images = self.keys.seal_images(biz_id, images);
                    let mut tx = $begin_write(&self.pool).await?;
                    store_images(&mut tx, biz_id, &images, now).await?;
                    tx.commit().await?;
                    Ok(())
                }
            }

            #[async_trait]
            impl ApiStore for EngineStore<$pool> {
                async fn get(&self, biz_id: &str) -> StoreResult<Option<Verification>> {
                    let mut conn = self.pool.acquire().await?;
                    verification(&mut conn, biz_id)
                        .await?
                        .map(|record| self.keys.open_record(record))
                        .transpose()
                }

                async fn list(&self, query: &ListQuery) -> StoreResult<Vec<Verification>> {
                    let rows = sqlx::query_as::<_, VerificationRow>(sql::LIST_VERIFICATIONS)
                        .bind(query.biz_no.as_deref())
                        .bind(query.status.as_deref())
                        .bind(query.since)
                        .bind(query.after.as_ref().map(|(created_at, _)| *created_at))
                        .bind(query.after.as_ref().map(|(_, biz_id)| biz_id.as_str()))
                        .bind(query.limit.max(0))
                        .fetch_all(&self.pool)
                        .await?;
                    rows.into_iter()
                        .map(|row| self.keys.open_record(Verification::try_from(row)?))
                        .collect()
                }

                async fn callbacks(
                    &self,
                    query: &CallbackQuery,
                ) -> StoreResult<Vec<CallbackRecord>> {
                    let rows = sqlx::query_as::<_, CallbackRow>(sql::LIST_CALLBACKS)
                        .bind(query.biz_id.as_deref())
                        .bind(query.verified)
                        .bind(query.before_id)
                        .bind(query.limit.max(0))
                        .fetch_all(&self.pool)
                        .await?;
                    Ok(rows.into_iter().map(CallbackRecord::from).collect())
                }

                async fn image(&self, biz_id: &str, name: &str) -> StoreResult<Option<Vec<u8>>> {
                    let stored: Option<Vec<u8>> = sqlx::query_scalar(sql::GET_IMAGE)
                        .bind(biz_id)
                        .bind(name)
                        .fetch_optional(&self.pool)
                        .await?;
                    stored
                        .map(|jpeg| self.keys.open_image(biz_id, name, &jpeg))
                        .transpose()
                }

                async fn record_access(&self, entries: &[AccessEntry]) -> StoreResult<()> {
                    if entries.is_empty() {
                        return Ok(());
                    }
                    let mut tx = self.pool.begin().await?;
                    for entry in entries {
                        sqlx::query(sql::INSERT_ACCESS)
                            .bind(&entry.token_fp)
                            .bind(&entry.route)
                            .bind(&entry.biz_id)
                            .bind(entry.accessed_at)
                            .execute(&mut *tx)
                            .await?;
                    }
                    tx.commit().await?;
                    Ok(())
                }

                async fn access_log(
                    &self,
                    biz_id: Option<&str>,
                    limit: i64,
                ) -> StoreResult<Vec<AccessEntry>> {
                    let rows = sqlx::query_as::<_, AccessRow>(sql::LIST_ACCESS)
                        .bind(biz_id)
                        .bind(limit.max(0))
                        .fetch_all(&self.pool)
                        .await?;
                    Ok(rows.into_iter().map(AccessEntry::from).collect())
                }

                async fn schedule_fetch(
                    &self,
                    biz_id: &str,
                    job: NewJob,
                    now: i64,
                ) -> StoreResult<FetchInfo> {
                    let row = sqlx::query_as::<_, FetchRow>(sql::SCHEDULE_JOB)
                        .bind(biz_id)
                        .bind(job.next_at)
                        .bind(job.window_ends_at)
                        .bind(job.return_image)
                        .bind(now)
                        .fetch_one(&self.pool)
                        .await?;
                    Ok(FetchInfo::try_from(row)?)
                }

                async fn request_fetch(
                    &self,
                    biz_id: &str,
                    biz_no: Option<&str>,
                    job: NewJob,
                    now: i64,
                ) -> StoreResult<Verification> {
                    let mut tx = $begin_write(&self.pool).await?;
                    // Asked through the API, answered by get_result: the PENDING record's
                    // source.
                    sqlx::query(sql::INSERT_PENDING)
                        .bind(biz_id)
                        .bind(PENDING)
                        .bind(Source::GetResult.as_str())
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                    if let Some(biz_no) = biz_no {
                        sqlx::query(sql::FILL_BIZ_NO)
                            .bind(biz_id)
                            .bind(biz_no)
                            .execute(&mut *tx)
                            .await?;
                    }
                    upsert_job(&mut tx, sql::SCHEDULE_JOB, biz_id, &job, now).await?;
                    let record = written_verification(&mut tx, biz_id).await?;
                    tx.commit().await?;
                    self.keys.open_record(record)
                }
            }

            #[async_trait]
            impl FollowUpStore for EngineStore<$pool> {
                async fn lease_due_jobs(
                    &self,
                    owner: &str,
                    now: i64,
                    lease_until: i64,
                    limit: i64,
                ) -> StoreResult<Vec<LeasedJob>> {
                    let rows: Vec<LeaseRow> =
                        lease_rows(&self.pool, $lease_due_jobs, owner, now, lease_until, limit)
                            .await?;
                    // RETURNING keeps no order: hand them out oldest-due first, as selected.
                    let mut jobs: Vec<LeasedJob> = rows.into_iter().map(LeasedJob::from).collect();
                    jobs.sort_by(|a, b| (a.next_at, &a.biz_id).cmp(&(b.next_at, &b.biz_id)));
                    Ok(jobs)
                }

                async fn reserve_call(
                    &self,
                    biz_id: &str,
                    owner: &str,
                    now: i64,
                    hold_until: i64,
                    max_calls: i32,
                ) -> StoreResult<Option<i32>> {
                    Ok(sqlx::query_scalar(sql::RESERVE_CALL)
                        .bind(biz_id)
                        .bind(owner)
                        .bind(now)
                        .bind(max_calls)
                        .bind(hold_until)
                        .fetch_optional(&self.pool)
                        .await?)
                }

                async fn extend_lease(
                    &self,
                    biz_id: &str,
                    owner: &str,
                    valid_beyond: i64,
                    lease_until: i64,
                ) -> StoreResult<bool> {
                    let done = sqlx::query(sql::EXTEND_LEASE)
                        .bind(biz_id)
                        .bind(owner)
                        .bind(valid_beyond)
                        .bind(lease_until)
                        .execute(&self.pool)
                        .await?;
                    Ok(done.rows_affected() == 1)
                }

                async fn update_job(
                    &self,
                    biz_id: &str,
                    owner: &str,
                    now: i64,
                    update: &JobUpdate,
                ) -> StoreResult<()> {
                    if !shared::ends_followup(update) {
                        let mut conn = self.pool.acquire().await?;
                        return Ok(end_turn(&mut conn, biz_id, owner, update, now).await?);
                    }
                    let mut tx = $begin_write(&self.pool).await?;
                    end_turn(&mut tx, biz_id, owner, update, now).await?;
                    tx.commit().await?;
                    Ok(())
                }

                async fn save_fetched(
                    &self,
                    owner: &str,
                    result: &IncomingResult,
                    images: &[NewImage],
                    update: &JobUpdate,
                    now: i64,
                ) -> StoreResult<MergeOutcome> {
                    let images = self.keys.seal_images(&result.biz_id, images);
                    let result = self.keys.seal_result(std::borrow::Cow::Borrowed(result));
                    let mut tx = $begin_write(&self.pool).await?;
                    // The merge comes first: on PostgreSQL its upsert locks the record's row
                    // (even when it keeps it), which serializes the image-name bookkeeping
                    // below.
                    let outcome = merge(&mut tx, &result, now).await?;
                    store_images(&mut tx, &result.biz_id, &images, now).await?;
                    log_call(&mut tx, &result.biz_id, now, "result", &result.status).await?;
                    end_turn(&mut tx, &result.biz_id, owner, update, now).await?;
                    completed_event(&mut tx, outcome, &result, now).await?;
                    tx.commit().await?;
                    Ok(outcome)
                }

                async fn end_call(
                    &self,
                    biz_id: &str,
                    owner: &str,
                    now: i64,
                    update: &JobUpdate,
                    code: &str,
                ) -> StoreResult<()> {
                    let mut tx = $begin_write(&self.pool).await?;
                    log_call(&mut tx, biz_id, now, "error", code).await?;
                    end_turn(&mut tx, biz_id, owner, update, now).await?;
                    tx.commit().await?;
                    Ok(())
                }
            }

            #[async_trait]
            impl ConsoleStore for EngineStore<$pool> {
                async fn create_session(&self, session: &NewSession) -> StoreResult<()> {
                    sqlx::query(sql::INSERT_SESSION)
                        .bind(&session.id_hash)
                        .bind(&session.token_fp)
                        .bind(session.created_at)
                        .bind(session.expires_at)
                        .execute(&self.pool)
                        .await?;
                    Ok(())
                }

                async fn touch_session(
                    &self,
                    id_hash: &str,
                    now: i64,
                    idle_cutoff: i64,
                ) -> StoreResult<Option<SessionRecord>> {
                    Ok(sqlx::query_as::<_, SessionRecord>(sql::TOUCH_SESSION)
                        .bind(id_hash)
                        .bind(now)
                        .bind(idle_cutoff)
                        .fetch_optional(&self.pool)
                        .await?)
                }

                async fn delete_session(&self, id_hash: &str) -> StoreResult<bool> {
                    let done = sqlx::query(sql::DELETE_SESSION)
                        .bind(id_hash)
                        .execute(&self.pool)
                        .await?;
                    Ok(done.rows_affected() > 0)
                }

                async fn purge_sessions(&self, now: i64, idle_cutoff: i64) -> StoreResult<u64> {
                    let done = sqlx::query(sql::PURGE_SESSIONS)
                        .bind(now)
                        .bind(idle_cutoff)
                        .execute(&self.pool)
                        .await?;
                    Ok(done.rows_affected())
                }

                async fn audit(&self, event: &ConsoleEvent) -> StoreResult<()> {
                    sqlx::query(sql::INSERT_AUDIT)
                        .bind(event.at)
                        .bind(&event.event)
                        .bind(&event.token_fp)
                        .bind(&event.remote_addr)
                        .bind(&event.biz_id)
                        .bind(&event.detail)
                        .execute(&self.pool)
                        .await?;
                    Ok(())
                }

                async fn audit_log(&self, limit: i64) -> StoreResult<Vec<ConsoleEvent>> {
                    Ok(sqlx::query_as::<_, ConsoleEvent>(sql::LIST_AUDIT)
                        .bind(limit.max(0))
                        .fetch_all(&self.pool)
                        .await?)
                }

                async fn overview(
                    &self,
                    since: i64,
                    bucket_ms: i64,
                    max_calls: i32,
                ) -> StoreResult<OverviewCounts> {
                    // Read-only counts: one connection, no transaction (a count a moment
                    // stale is fine on a dashboard).
                    let mut conn = self.pool.acquire().await?;
                    let outcomes = sqlx::query_as::<_, BucketCount>(sql::OUTCOMES_BY_BUCKET)
                        .bind(since)
                        .bind(bucket_ms.max(1))
                        .fetch_all(&mut *conn)
                        .await?;
                    let liveness = sqlx::query_as::<_, KeyCount>(sql::LIVENESS)
                        .bind(since)
                        .fetch_all(&mut *conn)
                        .await?;
                    let refusals = sqlx::query_as::<_, KeyCount>(sql::REFUSALS)
                        .bind(since)
                        .fetch_all(&mut *conn)
                        .await?;
                    let followups = sqlx::query_as::<_, FollowUpCount>(sql::FOLLOWUPS)
                        .bind(max_calls)
                        .fetch_all(&mut *conn)
                        .await?;
                    Ok(OverviewCounts {
                        outcomes,
                        liveness,
                        refusals,
                        followups,
                    })
                }

                async fn deliveries(
                    &self,
                    since: i64,
                    mismatch_reason: &str,
                ) -> StoreResult<DeliveryCounts> {
                    let (verified, sign_mismatch): (i64, i64) = sqlx::query_as(sql::DELIVERIES)
                        .bind(since)
                        .bind(mismatch_reason)
                        .fetch_one(&self.pool)
                        .await?;
                    Ok(DeliveryCounts {
                        verified,
                        sign_mismatch,
                    })
                }

                async fn search(&self, query: &SearchQuery) -> StoreResult<Vec<Verification>> {
                    let rows = sqlx::query_as::<_, VerificationRow>(sql::SEARCH_VERIFICATIONS)
                        .bind(query.biz_id.as_deref())
                        .bind(query.biz_no.as_deref())
                        .bind(query.status.as_deref())
                        .bind(query.from)
                        .bind(query.until)
                        .bind(query.after.as_ref().map(|(created_at, _)| *created_at))
                        .bind(query.after.as_ref().map(|(_, biz_id)| biz_id.as_str()))
                        .bind(query.limit.max(0))
                        .fetch_all(&self.pool)
                        .await?;
                    rows.into_iter()
                        .map(|row| self.keys.open_record(Verification::try_from(row)?))
                        .collect()
                }

                async fn calls(&self, biz_id: &str, limit: i64) -> StoreResult<Vec<CallLogEntry>> {
                    Ok(sqlx::query_as::<_, CallLogEntry>(sql::LIST_CALLS)
                        .bind(biz_id)
                        .bind(limit.max(0))
                        .fetch_all(&self.pool)
                        .await?)
                }
            }

            #[async_trait]
            impl ReplayStore for EngineStore<$pool> {
                async fn refused_deliveries(
                    &self,
                    after_id: i64,
                    since: Option<i64>,
                    limit: i64,
                ) -> StoreResult<Vec<RefusedDelivery>> {
                    let rows = sqlx::query_as::<_, RefusedRow>(sql::REFUSED_DELIVERIES)
                        .bind(after_id)
                        .bind(since)
                        .bind(limit.max(0))
                        .fetch_all(&self.pool)
                        .await?;
                    rows.into_iter().map(|row| row.open(&self.keys)).collect()
                }

                async fn accept_replayed(
                    &self,
                    id: i64,
                    key_id: &str,
                    result: &IncomingResult,
                    images: &[NewImage],
                    job: JobEffect,
                    now: i64,
                ) -> StoreResult<Option<(MergeOutcome, Verification)>> {
                    let images = self.keys.seal_images(&result.biz_id, images);
                    let result = self.keys.seal_result(std::borrow::Cow::Borrowed(result));
                    let mut tx = $begin_write(&self.pool).await?;
                    // The claim first: a row another replay already took leaves everything
                    // as is (the transaction is rolled back when dropped).
                    let claimed = sqlx::query(sql::MARK_REPLAYED)
                        .bind(id)
                        .bind(key_id)
                        .bind(&result.biz_id)
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                    if claimed.rows_affected() != 1 {
                        return Ok(None);
                    }
                    let outcome = merge(&mut tx, &result, now).await?;
                    store_images(&mut tx, &result.biz_id, &images, now).await?;
                    apply_job_effect(&mut tx, &result.biz_id, job, now).await?;
                    completed_event(&mut tx, outcome, &result, now).await?;
                    let record = written_verification(&mut tx, &result.biz_id).await?;
                    tx.commit().await?;
                    Ok(Some((outcome, self.keys.open_record(record)?)))
                }
            }

            #[async_trait]
            impl MaintenanceStore for EngineStore<$pool> {
                async fn purge(&self, plan: &PurgePlan) -> StoreResult<PurgeCounts> {
                    let mut counts = PurgeCounts::default();
                    let mut tx = $begin_write(&self.pool).await?;
                    if let Some(cutoff) = plan.results_before {
                        let results: i64 = sqlx::query_scalar(sql::COUNT_RESULTS_DUE)
                            .bind(cutoff)
                            .fetch_one(&mut *tx)
                            .await?;
                        let images: i64 = sqlx::query_scalar(sql::COUNT_IMAGES_DUE)
                            .bind(cutoff)
                            .fetch_one(&mut *tx)
                            .await?;
                        counts.results = results as u64;
                        counts.images = images as u64;
                        if !plan.dry_run {
                            sqlx::query(sql::PURGE_IMAGES)
                                .bind(cutoff)
                                .execute(&mut *tx)
                                .await?;
                            sqlx::query(sql::PURGE_RESULTS)
                                .bind(cutoff)
                                .bind(plan.now)
                                .execute(&mut *tx)
                                .await?;
                        }
                    }
                    // Refused rows first: a row deleted here is not also counted as emptied.
                    if let Some(cutoff) = plan.refused_before {
                        let refused: i64 = sqlx::query_scalar(sql::COUNT_REFUSED_DUE)
                            .bind(cutoff)
                            .fetch_one(&mut *tx)
                            .await?;
                        counts.refused = refused as u64;
                        if !plan.dry_run {
                            sqlx::query(sql::PURGE_REFUSED)
                                .bind(cutoff)
                                .execute(&mut *tx)
                                .await?;
                            // The callback.refused events of that time go with them: what
                            // strangers caused, with its deliveries and attempts.
                            for statement in [
                                sql::PURGE_REFUSED_EVENT_ATTEMPTS,
                                sql::PURGE_REFUSED_EVENT_DELIVERIES,
                                sql::PURGE_REFUSED_EVENTS,
                            ] {
                                sqlx::query(statement)
                                    .bind(cutoff)
                                    .execute(&mut *tx)
                                    .await?;
                            }
                        }
                    }
                    if let Some(cutoff) = plan.journal_before {
                        let bodies: i64 = sqlx::query_scalar(sql::COUNT_JOURNAL_DUE)
                            .bind(cutoff)
                            .bind(plan.refused_before)
                            .fetch_one(&mut *tx)
                            .await?;
                        counts.journal_bodies = bodies as u64;
                        if !plan.dry_run {
                            sqlx::query(sql::PURGE_JOURNAL)
                                .bind(cutoff)
                                .bind(Vec::<u8>::new())
                                .execute(&mut *tx)
                                .await?;
                        }
                    }
                    if let Some(cutoff) = plan.console_audit_before {
                        let audit: i64 = sqlx::query_scalar(sql::COUNT_AUDIT_DUE)
                            .bind(cutoff)
                            .fetch_one(&mut *tx)
                            .await?;
                        counts.console_audit = audit as u64;
                        if !plan.dry_run {
                            sqlx::query(sql::PURGE_AUDIT)
                                .bind(cutoff)
                                .execute(&mut *tx)
                                .await?;
                        }
                    }
                    if let Some(cutoff) = plan.push_events_before {
                        let events: i64 = sqlx::query_scalar(sql::COUNT_PUSH_EVENTS_DUE)
                            .bind(cutoff)
                            .fetch_one(&mut *tx)
                            .await?;
                        counts.push_events = events as u64;
                        if !plan.dry_run {
                            // Deliveries first: an event left with none cannot be
                            // made pending again by a retry racing this purge, so the
                            // event and its attempts are still due and go together.
                            for statement in [
                                sql::PURGE_PUSH_EVENT_DELIVERIES,
                                sql::PURGE_PUSH_EVENT_ATTEMPTS,
                                sql::PURGE_PUSH_EVENTS,
                            ] {
                                sqlx::query(statement)
                                    .bind(cutoff)
                                    .execute(&mut *tx)
                                    .await?;
                            }
                        }
                    }
                    tx.commit().await?;
                    Ok(counts)
                }

                async fn reencrypt(&self, dry_run: bool) -> StoreResult<ReencryptCounts> {
                    encrypted::reencrypt(self, &self.keys, dry_run).await
                }
            }

            #[async_trait]
            impl PushStore for EngineStore<$pool> {
                async fn publish_events(
                    &self,
                    now: i64,
                    fan_out: bool,
                    limit: i64,
                ) -> StoreResult<u64> {
                    let mut tx = $begin_write(&self.pool).await?;
                    // The counter first: its row lock (held until commit) makes publishers
                    // take turns, so no position is seen before a smaller one.
                    let last: i64 = sqlx::query_scalar(sql::LOCK_PUBLICATION)
                        .fetch_one(&mut *tx)
                        .await?;
                    let published = sqlx::query(sql::PUBLISH_EVENTS)
                        .bind(last)
                        .bind(limit.max(0))
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                    if published == 0 {
                        return Ok(0);
                    }
                    // Positions last + 1 ..= last + n, one per event.
                    let position = last + published as i64;
                    if fan_out {
                        sqlx::query(sql::FAN_OUT)
                            .bind(last)
                            .bind(position)
                            .bind(now)
                            .execute(&mut *tx)
                            .await?;
                    }
                    sqlx::query(sql::SET_LAST_POSITION)
                        .bind(position)
                        .execute(&mut *tx)
                        .await?;
                    tx.commit().await?;
                    Ok((position - last) as u64)
                }

                async fn lease_deliveries(
                    &self,
                    owner: &str,
                    now: i64,
                    lease_until: i64,
                    limit: i64,
                ) -> StoreResult<Vec<LeasedDelivery>> {
                    let rows: Vec<LeaseDeliveryRow> = lease_rows(
                        &self.pool,
                        $lease_deliveries,
                        owner,
                        now,
                        lease_until,
                        limit,
                    )
                    .await?;
                    let mut leased: Vec<LeasedDelivery> =
                        rows.into_iter().map(LeasedDelivery::from).collect();
                    leased.sort_by_key(|d| (d.event.seq, d.id));
                    Ok(leased)
                }

                async fn dispatch_endpoint(&self, id: &str) -> StoreResult<Option<Endpoint>> {
                    EndpointStore::endpoint(self, id).await
                }

                async fn record_attempt(
                    &self,
                    owner: &str,
                    report: &AttemptReport,
                ) -> StoreResult<bool> {
                    let (state, attempts, next_at) = push_rows::delivery_after(report);
                    let mut tx = $begin_write(&self.pool).await?;
                    sqlx::query(sql::END_DELIVERY_TURN)
                        .bind(report.delivery_id)
                        .bind(owner)
                        .bind(state)
                        .bind(attempts)
                        .bind(next_at)
                        .bind(&report.code)
                        .bind(report.at)
                        .execute(&mut *tx)
                        .await?;
                    if report.next == NextStep::Skip {
                        tx.commit().await?;
                        return Ok(false);
                    }
                    sqlx::query(sql::INSERT_ATTEMPT)
                        .bind(report.event_seq)
                        .bind(&report.endpoint_id)
                        .bind(report.attempt)
                        .bind(report.at)
                        .bind(report.status)
                        .bind(report.latency_ms)
                        .bind(report.next.outcome())
                        .bind(&report.code)
                        .bind(&report.answer)
                        .execute(&mut *tx)
                        .await?;
                    let disabled = match report.next {
                        NextStep::Delivered => {
                            sqlx::query(sql::ENDPOINT_HEALTHY)
                                .bind(&report.endpoint_id)
                                .execute(&mut *tx)
                                .await?;
                            false
                        }
                        NextStep::Gone => {
                            sqlx::query(sql::DISABLE_ENDPOINT)
                                .bind(&report.endpoint_id)
                                .bind(report.at)
                                .bind(push_rows::GONE_REASON)
                                .bind(None::<i64>)
                                .execute(&mut *tx)
                                .await?
                                .rows_affected()
                                == 1
                        }
                        _ => {
                            sqlx::query(sql::ENDPOINT_FAILING)
                                .bind(&report.endpoint_id)
                                .bind(report.at)
                                .execute(&mut *tx)
                                .await?;
                            sqlx::query(sql::DISABLE_ENDPOINT)
                                .bind(&report.endpoint_id)
                                .bind(report.at)
                                .bind(push_rows::streak_reason(report.disable_after_ms))
                                .bind(Some(report.at.saturating_sub(report.disable_after_ms)))
                                .execute(&mut *tx)
                                .await?
                                .rows_affected()
                                == 1
                        }
                    };
                    tx.commit().await?;
                    Ok(disabled)
                }

                async fn push_gauges(&self) -> StoreResult<PushGauges> {
                    Ok(sqlx::query_as::<_, GaugesRow>(sql::PUSH_GAUGES)
                        .fetch_one(&self.pool)
                        .await?
                        .into())
                }
            }

            #[async_trait]
            impl EventStore for EngineStore<$pool> {
                async fn events_after(&self, after: i64, limit: i64) -> StoreResult<Vec<Event>> {
                    let rows = sqlx::query_as::<_, EventRow>(sql::EVENTS_AFTER)
                        .bind(after)
                        .bind(limit.max(0))
                        .fetch_all(&self.pool)
                        .await?;
                    Ok(rows.into_iter().map(Event::from).collect())
                }

                async fn event(&self, id: &str) -> StoreResult<Option<Event>> {
                    Ok(sqlx::query_as::<_, EventRow>(sql::EVENT_BY_ID)
                        .bind(id)
                        .fetch_optional(&self.pool)
                        .await?
                        .map(Event::from))
                }

                async fn refusal(&self, event: &Event) -> StoreResult<Option<RefusalSummary>> {
                    let (Some(journal_id), Some(window_start)) = (
                        event.journal_id,
                        $crate::store::bucket_window(&event.subject),
                    ) else {
                        return Ok(None);
                    };
                    let Some(first) = sqlx::query_as::<_, CallbackRow>(sql::CALLBACK_BY_ID)
                        .bind(journal_id)
                        .fetch_optional(&self.pool)
                        .await?
                        .map(CallbackRecord::from)
                    else {
                        return Ok(None);
                    };
                    let refused_in_window: i64 = sqlx::query_scalar(sql::COUNT_REFUSALS)
                        .bind(&first.kind)
                        .bind(window_start)
                        .bind(window_start + $crate::store::REFUSED_WINDOW_MS)
                        .fetch_one(&self.pool)
                        .await?;
                    Ok(Some(RefusalSummary {
                        first,
                        window_start,
                        refused_in_window,
                    }))
                }
            }

            #[async_trait]
            impl EndpointStore for EngineStore<$pool> {
                async fn create_endpoint(
                    &self,
                    endpoint: &NewEndpoint,
                    max: i64,
                ) -> StoreResult<Option<Endpoint>> {
                    let secret = self
                        .keys
                        .seal_text(&endpoint.secret, &push_rows::secret_context(&endpoint.id));
                    let mut tx = $begin_write(&self.pool).await?;
                    let count: i64 = sqlx::query_scalar(sql::COUNT_ENDPOINTS)
                        .fetch_one(&mut *tx)
                        .await?;
                    if count >= max {
                        return Ok(None);
                    }
                    sqlx::query(sql::INSERT_ENDPOINT)
                        .bind(&endpoint.id)
                        .bind(&endpoint.url)
                        .bind(push_rows::join_events(&endpoint.events))
                        .bind(endpoint.include_pii)
                        .bind(&endpoint.description)
                        .bind(secret)
                        .bind(endpoint.now)
                        .execute(&mut *tx)
                        .await?;
                    let row = sqlx::query_as::<_, EndpointRow>(sql::GET_ENDPOINT)
                        .bind(&endpoint.id)
                        .fetch_one(&mut *tx)
                        .await?;
                    tx.commit().await?;
                    Ok(Some(row.open(&self.keys)?))
                }

                async fn endpoints(&self, limit: i64) -> StoreResult<Vec<Endpoint>> {
                    let rows = sqlx::query_as::<_, EndpointRow>(sql::LIST_ENDPOINTS)
                        .bind(limit.max(0))
                        .fetch_all(&self.pool)
                        .await?;
                    rows.into_iter().map(|row| row.open(&self.keys)).collect()
                }

                async fn endpoint(&self, id: &str) -> StoreResult<Option<Endpoint>> {
                    sqlx::query_as::<_, EndpointRow>(sql::GET_ENDPOINT)
                        .bind(id)
                        .fetch_optional(&self.pool)
                        .await?
                        .map(|row| row.open(&self.keys))
                        .transpose()
                }

                async fn update_endpoint(
                    &self,
                    id: &str,
                    patch: &EndpointPatch,
                    now: i64,
                ) -> StoreResult<Option<Endpoint>> {
                    let mut tx = $begin_write(&self.pool).await?;
                    let done = sqlx::query(sql::UPDATE_ENDPOINT)
                        .bind(id)
                        .bind(&patch.url)
                        .bind(patch.events.as_deref().map(push_rows::join_events))
                        .bind(patch.include_pii)
                        .bind(patch.description.clone().flatten())
                        .bind(now)
                        .bind(patch.description.is_some())
                        .execute(&mut *tx)
                        .await?;
                    if done.rows_affected() == 0 {
                        return Ok(None);
                    }
                    match patch.enabled {
                        Some(true) => {
                            sqlx::query(sql::ENABLE_ENDPOINT)
                                .bind(id)
                                .bind(now)
                                .execute(&mut *tx)
                                .await?;
                        }
                        Some(false) => {
                            sqlx::query(sql::DISABLE_ENDPOINT)
                                .bind(id)
                                .bind(now)
                                .bind("disabled through the API")
                                .bind(None::<i64>)
                                .execute(&mut *tx)
                                .await?;
                        }
                        None => {}
                    }
                    let row = sqlx::query_as::<_, EndpointRow>(sql::GET_ENDPOINT)
                        .bind(id)
                        .fetch_one(&mut *tx)
                        .await?;
                    tx.commit().await?;
                    Ok(Some(row.open(&self.keys)?))
                }

                async fn delete_endpoint(&self, id: &str) -> StoreResult<bool> {
                    let mut tx = $begin_write(&self.pool).await?;
                    sqlx::query(sql::DELETE_ENDPOINT_DELIVERIES)
                        .bind(id)
                        .execute(&mut *tx)
                        .await?;
                    let done = sqlx::query(sql::DELETE_ENDPOINT)
                        .bind(id)
                        .execute(&mut *tx)
                        .await?;
                    tx.commit().await?;
                    Ok(done.rows_affected() == 1)
                }

                async fn rotate_secret(
                    &self,
                    id: &str,
                    secret: &str,
                    previous_expires_at: i64,
                    now: i64,
                ) -> StoreResult<Option<Endpoint>> {
                    let context = push_rows::secret_context(id);
                    let mut tx = $begin_write(&self.pool).await?;
                    let Some(row) = sqlx::query_as::<_, EndpointRow>(sql::GET_ENDPOINT)
                        .bind(id)
                        .fetch_optional(&mut *tx)
                        .await?
                    else {
                        return Ok(None);
                    };
                    let previous = row.open(&self.keys)?.secret;
                    sqlx::query(sql::ROTATE_SECRET)
                        .bind(id)
                        .bind(self.keys.seal_text(secret, &context))
                        .bind(self.keys.seal_text(&previous, &context))
                        .bind(previous_expires_at)
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                    let row = sqlx::query_as::<_, EndpointRow>(sql::GET_ENDPOINT)
                        .bind(id)
                        .fetch_one(&mut *tx)
                        .await?;
                    tx.commit().await?;
                    Ok(Some(row.open(&self.keys)?))
                }

                async fn retry_event(&self, id: &str, now: i64) -> StoreResult<Option<u64>> {
                    let Some(event) = EventStore::event(self, id).await? else {
                        return Ok(None);
                    };
                    let done = sqlx::query(sql::RETRY_EVENT)
                        .bind(event.seq)
                        .bind(now)
                        .execute(&self.pool)
                        .await?;
                    Ok(Some(done.rows_affected()))
                }

                async fn replay_endpoint(
                    &self,
                    id: &str,
                    since: i64,
                    now: i64,
                    limit: i64,
                ) -> StoreResult<Option<u64>> {
                    let mut tx = $begin_write(&self.pool).await?;
                    let exists = sqlx::query_as::<_, EndpointRow>(sql::GET_ENDPOINT)
                        .bind(id)
                        .fetch_optional(&mut *tx)
                        .await?
                        .is_some();
                    if !exists {
                        return Ok(None);
                    }
                    let done = sqlx::query(sql::REPLAY_ENDPOINT)
                        .bind(id)
                        .bind(since)
                        .bind(now)
                        .bind(limit.max(0))
                        .execute(&mut *tx)
                        .await?;
                    tx.commit().await?;
                    Ok(Some(done.rows_affected()))
                }

                async fn endpoint_health(&self) -> StoreResult<Vec<EndpointHealth>> {
                    let rows = sqlx::query_as::<_, HealthRow>(sql::ENDPOINT_HEALTH)
                        .fetch_all(&self.pool)
                        .await?;
                    Ok(rows.into_iter().map(EndpointHealth::from).collect())
                }

                async fn push_attempts(
                    &self,
                    biz_id: &str,
                    limit: i64,
                ) -> StoreResult<Vec<AttemptRecord>> {
                    Ok(
                        sqlx::query_as::<_, AttemptRecord>(sql::ATTEMPTS_FOR_SUBJECT)
                            .bind(biz_id)
                            .bind(limit.max(0))
                            .fetch_all(&self.pool)
                            .await?,
                    )
                }
            }

            // The stored form of identity values, as is: re-encryption's raw material.
            #[async_trait]
            impl encrypted::StoredValues for EngineStore<$pool> {
                async fn stored_results(
                    &self,
                    after: &str,
                    limit: i64,
                ) -> StoreResult<Vec<(String, String)>> {
                    Ok(sqlx::query_as(sql::STORED_RESULTS)
                        .bind(after)
                        .bind(limit.max(0))
                        .fetch_all(&self.pool)
                        .await?)
                }

                async fn replace_result(
                    &self,
                    biz_id: &str,
                    old: &str,
                    new: &str,
                ) -> StoreResult<bool> {
                    let done = sqlx::query(sql::REPLACE_RESULT)
                        .bind(biz_id)
                        .bind(old)
                        .bind(new)
                        .execute(&self.pool)
                        .await?;
                    Ok(done.rows_affected() == 1)
                }

                async fn stored_images(
                    &self,
                    after_biz_id: &str,
                    after_name: &str,
                    limit: i64,
                ) -> StoreResult<Vec<(String, String, Vec<u8>)>> {
                    Ok(sqlx::query_as(sql::STORED_IMAGES)
                        .bind(after_biz_id)
                        .bind(after_name)
                        .bind(limit.max(0))
                        .fetch_all(&self.pool)
                        .await?)
                }

                async fn replace_image(
                    &self,
                    biz_id: &str,
                    name: &str,
                    old: &[u8],
                    new: &[u8],
                ) -> StoreResult<bool> {
                    let done = sqlx::query(sql::REPLACE_IMAGE)
                        .bind(biz_id)
                        .bind(name)
                        .bind(old)
                        .bind(new)
                        .execute(&self.pool)
                        .await?;
                    Ok(done.rows_affected() == 1)
                }

                async fn stored_bodies(
                    &self,
                    after_id: i64,
                    limit: i64,
                ) -> StoreResult<Vec<StoredBody>> {
                    Ok(sqlx::query_as(sql::STORED_BODIES)
                        .bind(after_id)
                        .bind(limit.max(0))
                        .fetch_all(&self.pool)
                        .await?)
                }

                async fn replace_body(&self, id: i64, old: &[u8], new: &[u8]) -> StoreResult<bool> {
                    let done = sqlx::query(sql::REPLACE_BODY)
                        .bind(id)
                        .bind(old)
                        .bind(new)
                        .execute(&self.pool)
                        .await?;
                    Ok(done.rows_affected() == 1)
                }
            }
        };
    };
}
pub(super) use impl_store;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_two_migration_folders_list_the_same_versions() {
        let versions = |migrator: &sqlx::migrate::Migrator| {
            migrator
                .iter()
                .map(|m| (m.version, m.description.to_string()))
                .collect::<Vec<_>>()
        };
        let postgres = versions(&super::super::postgres::MIGRATOR);
        assert!(!postgres.is_empty());
        assert_eq!(postgres, versions(&super::super::sqlite::MIGRATOR));
    }

    #[test]
    fn revision_one_is_the_first_result_and_no_row_is_a_duplicate() {
        assert_eq!(merge_outcome(None), MergeOutcome::Unchanged);
        assert_eq!(merge_outcome(Some(1)), MergeOutcome::Created);
        assert_eq!(merge_outcome(Some(2)), MergeOutcome::Updated);
        assert_eq!(journal_outcome(MergeOutcome::Created), "stored");
        assert_eq!(journal_outcome(MergeOutcome::Updated), "stored");
        assert_eq!(journal_outcome(MergeOutcome::Unchanged), "duplicate");
    }

    #[test]
    fn image_names_are_sorted_unique_and_round_trip() {
        let joined = join_image_names(vec![
            "image_best".into(),
            "image_env".into(),
            "image_best".into(),
        ]);
        assert_eq!(joined.as_deref(), Some("image_best,image_env"));
        assert_eq!(
            split_image_names(joined.as_deref()),
            ["image_best", "image_env"]
        );
        assert_eq!(join_image_names(Vec::new()), None);
        assert!(split_image_names(None).is_empty());
        assert!(split_image_names(Some("")).is_empty());
    }

    #[test]
    fn a_retry_keeps_the_state_and_a_finish_clears_next_at() {
        let retry = JobUpdate::Retry {
            next_at: 5,
            last_error: Some("timeout".into()),
        };
        assert_eq!(job_turn_binds(&retry), (None, Some(5), Some("timeout")));
        let finish = JobUpdate::Finish {
            state: FetchState::Done,
            last_error: None,
        };
        assert_eq!(job_turn_binds(&finish), (Some("done"), None, None));
    }
}
