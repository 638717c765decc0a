//! PostgreSQL engine: [`PgStore`].
//!
//! Owns the pool settings, the embedded `migrations/postgres`, and the one statement that
//! differs from SQLite: leasing with `FOR UPDATE SKIP LOCKED`, so replicas sharing the
//! database never lease the same job and never wait on each other's rows. Everything else is
//! the shared SQL in [`super::sql`] run by the shared method bodies in [`super::engine`].
//!
//! Write transactions are plain `BEGIN` (READ COMMITTED): each shared statement is either a
//! single conditional write, which PostgreSQL re-checks against the latest row version, or
//! an upsert that locks the row it conflicts with.
//!
//! Group commit is set-based here ([`write_batch`]): a batch's members are bound as arrays
//! and applied by one statement (merge + journal + follow-up + outbox, returning the records
//! written) whatever the batch size, and that statement is the batch's whole transaction:
//! one round trip per batch instead of four per member. PostgreSQL's cost per callback is
//! mostly per statement (round trip, planning, executor start, wake-ups on both sides), not
//! the flush, which concurrent sessions already share; group commit's own connections plan
//! the statement once ([`writer_options`]). The statements are built from the same fragments
//! as the single-row ones in [`super::sql`], so the merge rule exists once.
//!
//! Lock order: batches are sorted by biz_id, and every batch runs the one statement with the
//! one generic plan, so concurrent batches tend to take rows in the same order; nothing in
//! PostgreSQL promises the order in which a statement's parts lock rows, though. A deadlock
//! (with another batch, or with another writer on the same biz_id: the fetcher, a return
//! GET) aborts one batch with SQLSTATE 40P01, and group commit retries its members one by
//! one: slower, not wrong.

use std::collections::HashMap;
use std::str::FromStr;

use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use sqlx::{Postgres, Transaction};

use super::engine::{EngineStore, VerificationRow, impl_store, merge_outcome};
use super::group::{Accepted, BatchResult, Member};
use super::{
    ConnectOptions, IncomingResult, JobEffect, MergeOutcome, NewCallback, StoreError, StoreResult,
    Verification,
};

pub(super) static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

const LEASE_DUE_JOBS: &str = super::sql::lease_due_jobs!("FOR UPDATE SKIP LOCKED");
const LEASE_DELIVERIES: &str = super::sql::lease_deliveries!("FOR UPDATE OF d SKIP LOCKED");

/// Concurrent group-commit transactions: while one waits for its commit to flush and another
/// for a round trip, a third collects the next batch. Batches are sorted by biz_id, so they
/// never deadlock each other. Measured with bench/notify.sh (BENCHMARKS.md): 3 beat 2 at 4
/// connections (0.48× vs 0.38× pgbench) and matched it at 16 (0.85× vs 0.86×); 4 did worse
/// at 16 (smaller batches, more statements).
const GROUP_COMMIT_WRITERS: usize = 3;

/// The PostgreSQL store.
pub type PgStore = EngineStore<PgPool>;

impl PgStore {
    /// Connects eagerly: the first connection must succeed within `connect_timeout`, so a
    /// wrong URL or a database that is down fails at startup, not at the first callback.
    pub async fn connect(url: &str, options: &ConnectOptions) -> StoreResult<Self> {
        let connect = PgConnectOptions::from_str(url)?;
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections)
            .acquire_timeout(options.connect_timeout)
            .connect_with(connect)
            .await?;
        Ok(Self::new(pool, options))
    }
}

async fn begin_write(pool: &PgPool) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
    pool.begin().await
}

async fn begin_on(conn: &mut PgConnection) -> Result<Transaction<'_, Postgres>, sqlx::Error> {
    sqlx::Connection::begin(conn).await
}

/// One round of a batch (distinct biz_ids, in biz_id order), in one statement: the merge rule
/// for every member, their journal rows (in batch order), the cancelled and the ensured jobs.
/// Returns, for each member whose merge wrote, its record as [`GET_VERIFICATIONS`] would read
/// it right after the statement, and its new `revision` (no row: the record was kept, and its
/// journal row says `duplicate`, as `engine::journal_outcome` does).
///
/// The record is assembled from the parts' own `RETURNING` rows, because a statement does
/// not see its own writes: the `verifications` row as `merged` wrote it, and the follow-up
/// job as `cancelled` or `ensured` left it, or else as it was when the statement began (so a
/// job the fetcher updated while the statement ran shows its state from just before: only
/// the `fetch_*` fields can lag that way, never the result).
///
/// The outbox's insert (`completed`) is one more part of the same statement: no round trip,
/// and it commits or rolls back with the merge it reports. No two parts touch one row: the
/// round's biz_ids are distinct and each member has one job effect. Planned once per
/// connection (generic plan, [`writer_options`]); the worst that can do is the cancel join
/// reading every *pending* job (in-flight follow-ups only).
///
/// Binds arrays: results (biz_id, biz_no, status, status_rank, liveness, confidence, source,
/// signed, result, now), journal (kind, biz_id, verified, reason, received_at, remote_addr,
/// content_type, body_sha256, body_len, body), cancel (biz_id, now), ensure (biz_id, next_at,
/// window_ends_at, return_image, now), then the journal's key_id ($28) and the outbox's
/// event ids ($29: an id for each member whose result is final, NULL for the others; a
/// `verification.completed` row is written for those whose merge wrote, exactly as
/// `engine::completes` decides one member at a time).
const ACCEPT_ROUND: &str = concat!(
    "WITH merged AS (",
    super::sql::insert_verification!(),
    "SELECT biz_id, biz_no, status, status_rank, liveness, confidence, source, signed, result, \
            NULL, 1, now, now \
     FROM unnest($1::text[], $2::text[], $3::text[], $4::int4[], $5::text[], $6::float8[], \
                 $7::text[], $8::bool[], $9::text[], $10::int8[]) \
          WITH ORDINALITY AS m(biz_id, biz_no, status, status_rank, liveness, confidence, \
                               source, signed, result, now, ord) \
     ORDER BY ord ",
    super::sql::merge_rule!(),
    "RETURNING biz_id, biz_no, status, liveness, confidence, source, signed, result, \
               image_names, created_at, updated_at, purged_at, revision), \
     journal AS (",
    super::sql::insert_callback!(),
    "SELECT c.kind, c.biz_id, c.verified, \
            CASE WHEN w.revision IS NULL THEN 'duplicate' ELSE 'stored' END, \
            c.reason, c.received_at, c.remote_addr, c.content_type, c.body_sha256, c.body_len, \
            c.body, c.key_id \
     FROM unnest($1::text[], $11::text[], $12::text[], $13::bool[], $14::text[], $15::int8[], \
                 $16::text[], $17::text[], $18::text[], $19::int8[], $20::bytea[], $28::text[]) \
          WITH ORDINALITY AS c(result_biz_id, kind, biz_id, verified, reason, received_at, \
                               remote_addr, content_type, body_sha256, body_len, body, key_id, \
                               ord) \
          LEFT JOIN merged w ON w.biz_id = c.result_biz_id \
     ORDER BY c.ord), \
     cancelled AS (UPDATE fetch_jobs ",
    super::sql::cancel_job_set!(),
    ", updated_at = c.now FROM unnest($21::text[], $22::int8[]) AS c(biz_id, now) \
       WHERE fetch_jobs.biz_id = c.biz_id AND fetch_jobs.state = 'pending' \
       RETURNING fetch_jobs.biz_id, fetch_jobs.state, fetch_jobs.calls_used, \
                 fetch_jobs.next_at, fetch_jobs.last_error), \
     ensured AS (",
    super::sql::insert_job!(),
    "SELECT biz_id, 'pending', 0, next_at, window_ends_at, return_image, now, now \
     FROM unnest($23::text[], $24::int8[], $25::int8[], $26::int4[], $27::int8[]) \
          AS e(biz_id, next_at, window_ends_at, return_image, now) ",
    super::sql::pending_job_on_conflict!(),
    super::sql::ensure_job_condition!(),
    "RETURNING biz_id, state, calls_used, next_at, last_error), \
     completed AS (INSERT INTO push_events (id, type, subject, created_at) \
       SELECT p.id, 'verification.completed', p.biz_id, p.now \
       FROM unnest($1::text[], $29::text[], $10::int8[]) AS p(biz_id, id, now) \
            JOIN merged w ON w.biz_id = p.biz_id \
       WHERE p.id IS NOT NULL) \
     SELECT m.biz_id, m.biz_no, m.status, m.liveness, m.confidence, m.source, m.signed, \
            m.result, m.image_names, m.created_at, m.updated_at, m.purged_at, \
            COALESCE(c.state, e.state, j.state) AS fetch_state, \
            CASE WHEN c.biz_id IS NOT NULL THEN c.calls_used \
                 WHEN e.biz_id IS NOT NULL THEN e.calls_used ELSE j.calls_used END \
              AS fetch_calls_used, \
            CASE WHEN c.biz_id IS NOT NULL THEN c.next_at \
                 WHEN e.biz_id IS NOT NULL THEN e.next_at ELSE j.next_at END AS fetch_next_at, \
            CASE WHEN c.biz_id IS NOT NULL THEN c.last_error \
                 WHEN e.biz_id IS NOT NULL THEN e.last_error ELSE j.last_error END \
              AS fetch_last_error, \
            m.revision \
     FROM merged m \
          LEFT JOIN cancelled c ON c.biz_id = m.biz_id \
          LEFT JOIN ensured e ON e.biz_id = m.biz_id \
          LEFT JOIN fetch_jobs j ON j.biz_id = m.biz_id"
);

/// The records of some members of a round, as [`super::sql::GET_VERIFICATION`] reads one.
/// Binds: biz_ids.
///
/// One primary-key probe per biz_id, whatever the table statistics: the `OFFSET 0` keeps the
/// planner from flattening the lateral subquery into a join, which it would otherwise plan
/// once per connection — as a sequential scan if the tables were still empty then.
const GET_VERIFICATIONS: &str = concat!(
    "SELECT r.* FROM unnest($1::text[]) AS k(biz_id) CROSS JOIN LATERAL (",
    super::sql::select_verification!(),
    "WHERE v.biz_id = k.biz_id OFFSET 0) AS r"
);

/// The pool group commit's writers use: connections of their own, one per writer, on which
/// PostgreSQL plans each statement once ([`writer_options`]).
fn group_commit_pool(pool: &PgPool) -> PgPool {
    PgPoolOptions::new()
        .max_connections(GROUP_COMMIT_WRITERS as u32)
        .acquire_timeout(pool.options().get_acquire_timeout())
        .connect_lazy_with(writer_options(&pool.connect_options()))
}

/// `options` for group commit's own connections: `plan_cache_mode = force_generic_plan`.
/// `ACCEPT_ROUND` is large, and by default PostgreSQL plans it afresh for every batch (a
/// custom plan for the arrays bound), which costs its backend more CPU than running it does
/// (BENCHMARKS.md, Profile). The statement's plan does not depend on its values: the arrays
/// are unnested and every table is reached by its primary key. Only group commit's statements
/// run on these connections; elsewhere the optional filters (`$1 IS NULL OR …`) need custom
/// plans to use their indexes.
pub fn writer_options(options: &PgConnectOptions) -> PgConnectOptions {
    options
        .clone()
        .options([("plan_cache_mode", "force_generic_plan")])
}

/// Group commit's batch writer: `accept_in`'s effects for every member, set-based. The batch
/// is split into rounds of distinct biz_ids (`super::group::rounds`), each written by one
/// `ACCEPT_ROUND`, which also returns the records it wrote: every member's record is the one
/// its own writes left, and a biz_id's members apply in order.
///
/// A batch of one round (no biz_id twice: nearly always) is that one statement and nothing
/// else. A single statement is a transaction of its own, so there is no `BEGIN` or `COMMIT`
/// to wait for: one round trip per batch. A batch of several rounds is one transaction.
///
/// A member whose merge kept the stored record (a duplicate) has no row in the statement's
/// answer: its record is read afterwards, after its biz_no is filled in if the record lacked
/// one (as `merge` does). In a batch of several rounds that happens inside the transaction;
/// in a batch of one round, after the statement committed, so a failure there is the kept
/// members' alone: each gets the error, the others their records (`group::BatchResult`), and
/// nothing is written twice. The member is answered only after both either way; a crash in
/// between leaves its record without a biz_no that FaceID's retry of the unanswered
/// delivery fills in.
///
/// Public (hidden) for the batched ceiling of `bench/notify.sh`, which writes its batches with
/// this very function on connections made with [`writer_options`] and kept as group commit's
/// writers keep theirs ([`super::group::WriterConnection`]).
pub async fn write_batch(conn: &mut PgConnection, members: &[Member]) -> BatchResult {
    let mut rounds = super::group::rounds(members.iter().map(|m| m.result.biz_id.as_str()));
    let mut answers = Vec::with_capacity(members.len());
    if rounds.len() == 1 {
        let round = of_members(members, rounds.remove(0));
        let kept = write_round(conn, &round, &mut answers).await?;
        // The statement has committed: from here on, a failure is the kept members' alone.
        match read_kept(conn, &kept).await {
            Ok(records) => answers.extend(records),
            Err(error) => {
                let error = StoreError::from(error);
                answers.extend(kept.iter().map(|(i, _)| (*i, Err(error.clone()))));
            }
        }
        return Ok(in_member_order(answers, members.len()));
    }
    let mut tx = begin_on(conn).await?;
    for round in rounds {
        let round = of_members(members, round);
        let kept = write_round(&mut tx, &round, &mut answers).await?;
        answers.extend(read_kept(&mut tx, &kept).await?);
    }
    tx.commit().await?;
    Ok(in_member_order(answers, members.len()))
}

/// A member's answer, by its place in the batch.
type Answer = (usize, StoreResult<Accepted>);

fn of_members(members: &[Member], round: Vec<usize>) -> Vec<(usize, &Member)> {
    round.into_iter().map(|i| (i, &members[i])).collect()
}

/// One answer per member, in batch order (each member is answered exactly once: by the
/// round that wrote it, or as kept).
fn in_member_order(answers: Vec<Answer>, members: usize) -> Vec<StoreResult<Accepted>> {
    let mut ordered: Vec<Option<StoreResult<Accepted>>> = vec![None; members];
    for (i, answer) in answers {
        ordered[i] = Some(answer);
    }
    ordered
        .into_iter()
        .map(|answer| answer.expect("rounds answer every member"))
        .collect()
}

/// The kept members of a round: their biz_no filled in where the record lacked one (as in
/// `merge`), then their records read, as [`MergeOutcome::Unchanged`].
async fn read_kept(
    conn: &mut PgConnection,
    kept: &[(usize, &Member)],
) -> Result<Vec<Answer>, sqlx::Error> {
    if kept.is_empty() {
        return Ok(Vec::new());
    }
    for (_, m) in kept {
        if let Some(biz_no) = &m.result.biz_no {
            sqlx::query(super::sql::FILL_BIZ_NO)
                .bind(&m.result.biz_id)
                .bind(biz_no)
                .execute(&mut *conn)
                .await?;
        }
    }
    let mut records = read_records(conn, kept).await?;
    kept.iter()
        .map(|(i, m)| {
            let record = records
                .remove(&m.result.biz_id)
                .ok_or(sqlx::Error::RowNotFound)?;
            Ok((*i, Ok((MergeOutcome::Unchanged, record))))
        })
        .collect()
}

/// A row of [`ACCEPT_ROUND`]'s answer: a record its merge wrote, and the new revision.
#[derive(sqlx::FromRow)]
struct WrittenRow {
    #[sqlx(flatten)]
    record: VerificationRow,
    revision: i32,
}

/// [`ACCEPT_ROUND`] for one round: answers each member whose merge wrote with its outcome and
/// record (a record that cannot be decoded is that member's error), and returns the others
/// (their merge kept the stored record). `Err` only when the statement failed.
async fn write_round<'m>(
    conn: &mut PgConnection,
    round: &[(usize, &'m Member)],
    answers: &mut Vec<Answer>,
) -> Result<Vec<(usize, &'m Member)>, sqlx::Error> {
    let results: Vec<&IncomingResult> = round.iter().map(|(_, m)| &m.result).collect();
    let entries: Vec<&NewCallback> = round.iter().map(|(_, m)| &m.entry).collect();
    let result_text = |f: fn(&IncomingResult) -> Option<&str>| -> Vec<Option<&str>> {
        results.iter().map(|r| f(r)).collect()
    };
    let entry_text = |f: fn(&NewCallback) -> Option<&str>| -> Vec<Option<&str>> {
        entries.iter().map(|e| f(e)).collect()
    };
    let jobs = JobEffects::of(round);
    let written: Vec<WrittenRow> = sqlx::query_as(ACCEPT_ROUND)
        .bind(result_text(|r| Some(&r.biz_id)))
        .bind(result_text(|r| r.biz_no.as_deref()))
        .bind(result_text(|r| Some(&r.status)))
        .bind(results.iter().map(|r| r.status_rank).collect::<Vec<_>>())
        .bind(result_text(|r| r.liveness.as_deref()))
        .bind(results.iter().map(|r| r.confidence).collect::<Vec<_>>())
        .bind(result_text(|r| Some(r.source.as_str())))
        .bind(results.iter().map(|r| r.signed).collect::<Vec<_>>())
        .bind(result_text(|r| Some(&r.result)))
        // The merge's `now` is the delivery's, as in `accept_in`.
        .bind(entries.iter().map(|e| e.received_at).collect::<Vec<_>>())
        .bind(entry_text(|e| Some(e.kind.as_str())))
        .bind(entry_text(|e| e.biz_id.as_deref()))
        .bind(entries.iter().map(|e| e.verified).collect::<Vec<_>>())
        .bind(entry_text(|e| e.reason.as_deref()))
        .bind(entries.iter().map(|e| e.received_at).collect::<Vec<_>>())
        .bind(entry_text(|e| e.remote_addr.as_deref()))
        .bind(entry_text(|e| e.content_type.as_deref()))
        .bind(entry_text(|e| Some(&e.body_sha256)))
        .bind(entries.iter().map(|e| e.body_len).collect::<Vec<_>>())
        .bind(
            entries
                .iter()
                .map(|e| e.body.as_slice())
                .collect::<Vec<_>>(),
        )
        .bind(jobs.cancel_biz_ids)
        .bind(jobs.cancel_at)
        .bind(jobs.ensure_biz_ids)
        .bind(jobs.ensure_next_at)
        .bind(jobs.ensure_window_ends_at)
        .bind(jobs.ensure_return_image)
        .bind(jobs.ensure_at)
        .bind(entry_text(|e| e.key_id.as_deref()))
        .bind(
            results
                .iter()
                .map(|r| (r.status_rank >= 3).then(crate::push::event::new_event_id))
                .collect::<Vec<_>>(),
        )
        .fetch_all(&mut *conn)
        .await?;
    let mut written: HashMap<String, WrittenRow> = written
        .into_iter()
        .map(|row| (row.record.biz_id.clone(), row))
        .collect();
    let mut kept = Vec::new();
    for &(i, m) in round {
        match written.remove(&m.result.biz_id) {
            Some(row) => answers.push((
                i,
                Verification::try_from(row.record)
                    .map(|record| (merge_outcome(Some(row.revision)), record))
                    .map_err(StoreError::from),
            )),
            None => kept.push((i, m)),
        }
    }
    Ok(kept)
}

/// A round's job effects as the arrays [`ACCEPT_ROUND`] binds: the members to cancel, and the
/// members whose job to ensure with its timing. `Keep` members appear in neither.
#[derive(Default)]
struct JobEffects<'a> {
    cancel_biz_ids: Vec<&'a str>,
    cancel_at: Vec<i64>,
    ensure_biz_ids: Vec<&'a str>,
    ensure_next_at: Vec<i64>,
    ensure_window_ends_at: Vec<i64>,
    ensure_return_image: Vec<i32>,
    ensure_at: Vec<i64>,
}

impl<'a> JobEffects<'a> {
    fn of(round: &[(usize, &'a Member)]) -> Self {
        let mut effects = Self::default();
        for (_, m) in round {
            let (biz_id, now) = (m.result.biz_id.as_str(), m.entry.received_at);
            match m.job {
                JobEffect::Keep => {}
                JobEffect::CancelPending => {
                    effects.cancel_biz_ids.push(biz_id);
                    effects.cancel_at.push(now);
                }
                JobEffect::Ensure(job) => {
                    effects.ensure_biz_ids.push(biz_id);
                    effects.ensure_next_at.push(job.next_at);
                    effects.ensure_window_ends_at.push(job.window_ends_at);
                    effects.ensure_return_image.push(job.return_image);
                    effects.ensure_at.push(now);
                }
            }
        }
        effects
    }
}

/// The records of `members`, by biz_id.
async fn read_records(
    conn: &mut PgConnection,
    members: &[(usize, &Member)],
) -> Result<HashMap<String, Verification>, sqlx::Error> {
    let biz_ids: Vec<&str> = members
        .iter()
        .map(|(_, m)| m.result.biz_id.as_str())
        .collect();
    sqlx::query_as::<_, VerificationRow>(GET_VERIFICATIONS)
        .bind(biz_ids)
        .fetch_all(&mut *conn)
        .await?
        .into_iter()
        .map(|row| Verification::try_from(row).map(|v| (v.biz_id.clone(), v)))
        .collect()
}

impl_store! {
    pool: PgPool,
    connection: PgConnection,
    engine: "postgres",
    migrator: MIGRATOR,
    lease_due_jobs: LEASE_DUE_JOBS,
    lease_deliveries: LEASE_DELIVERIES,
    begin_write: begin_write,
    begin_on: begin_on,
    write_batch: write_batch,
    group_commit_pool: group_commit_pool,
    group_commit_writers: GROUP_COMMIT_WRITERS,
    // The writers' pool is theirs alone (`group_commit_pool`).
    group_commit_keeps_connections: true,
}
