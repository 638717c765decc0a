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
//! Group commit is set-based here ([`accept_batch`]): a batch's members are bound as arrays
//! and applied by two statements (merge + journal + follow-up, then the read back) whatever
//! the batch size, instead of four round trips per member. PostgreSQL's cost per callback is
//! mostly per statement (round trip, executor start, wake-ups on both sides), not the flush,
//! which concurrent sessions already share. The statements are built from the same fragments
//! as the single-row ones in [`super::sql`], so the merge rule exists once.
//!
//! Lock order (why batches cannot deadlock each other): every batch locks its
//! `verifications` rows first, in biz_id order (batches are sorted), before any `fetch_jobs`
//! row, and touches a `fetch_jobs` row only for a biz_id whose record row it already holds.

use std::collections::HashMap;
use std::str::FromStr;

use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use sqlx::{Postgres, Transaction};

use super::engine::{EngineStore, VerificationRow, impl_store, merge_outcome};
use super::group::{Accepted, Member};
use super::{
    ConnectOptions, IncomingResult, JobEffect, MergeOutcome, NewCallback, StoreResult, Verification,
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

/// One round of a batch (distinct biz_ids, in biz_id order), in one statement: the merge rule
/// for every member, their journal rows (in batch order), the cancelled and the ensured jobs.
/// Returns `(biz_id, revision)` for each member whose merge wrote (no row: the record was
/// kept, and its journal row says `duplicate`, as `engine::journal_outcome` does).
///
/// The outbox's insert (`completed`) is one more part of the same statement: no round trip,
/// and it commits or rolls back with the merge it reports.
///
/// Order of effects: PostgreSQL's executor runs the outer query (reading `merged`) first and
/// the unreferenced data-modifying parts to completion after it, so the record rows are locked
/// before any job row. (The documentation leaves that order open; were it ever different, a
/// deadlock would abort one batch with SQLSTATE 40P01 and group commit would retry its members
/// one by one: slower, not wrong.) No two parts touch one row: the round's biz_ids are
/// distinct and each member has one job effect. As a prepared statement its plan is fixed per
/// connection; the worst that can do is the cancel join reading every *pending* job
/// (in-flight follow-ups only).
///
/// Binds arrays: results (biz_id, biz_no, status, status_rank, liveness, confidence, source,
/// signed, result, now), journal (kind, biz_id, verified, reason, received_at, remote_addr,
/// content_type, body_sha256, body_len, body), cancel (biz_id, now), ensure (biz_id, next_at,
/// window_ends_at, return_image, now), then the journal's key_id ($28) and the outbox's
/// event ids ($29: an id for each member whose result is final, NULL for the others; a
/// `verification.completed` row is written for those whose merge wrote, exactly as
/// `engine::completes` decides one member at a time).
pub const ACCEPT_ROUND: &str = concat!(
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
    "RETURNING biz_id, revision), \
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
       WHERE fetch_jobs.biz_id = c.biz_id AND fetch_jobs.state = 'pending'), \
     ensured AS (",
    super::sql::insert_job!(),
    "SELECT biz_id, 'pending', 0, next_at, window_ends_at, return_image, now, now \
     FROM unnest($23::text[], $24::int8[], $25::int8[], $26::int4[], $27::int8[]) \
          AS e(biz_id, next_at, window_ends_at, return_image, now) ",
    super::sql::pending_job_on_conflict!(),
    super::sql::ensure_job_condition!(),
    "), \
     completed AS (INSERT INTO push_events (id, type, subject, created_at) \
       SELECT p.id, 'verification.completed', p.biz_id, p.now \
       FROM unnest($1::text[], $29::text[], $10::int8[]) AS p(biz_id, id, now) \
            JOIN merged w ON w.biz_id = p.biz_id \
       WHERE p.id IS NOT NULL) \
     SELECT biz_id, revision FROM merged"
);

/// The records of one round, as [`super::sql::GET_VERIFICATION`] reads one. Binds: biz_ids.
///
/// One primary-key probe per biz_id, whatever the table statistics: the `OFFSET 0` keeps the
/// planner from flattening the lateral subquery into a join, which it would otherwise plan
/// once per connection — as a sequential scan if the tables were still empty then.
pub const GET_VERIFICATIONS: &str = concat!(
    "SELECT r.* FROM unnest($1::text[]) AS k(biz_id) CROSS JOIN LATERAL (",
    super::sql::select_verification!(),
    "WHERE v.biz_id = k.biz_id OFFSET 0) AS r"
);

/// Group commit's batch writer: `accept_in`'s effects for every member, set-based. The batch
/// is split into rounds of distinct biz_ids ([`super::group::rounds`]); each round is written
/// by one statement and read back by another, so every member's record is the one its own
/// writes left and a biz_id's members apply in order.
async fn accept_batch(
    conn: &mut PgConnection,
    members: &[Member],
) -> Result<Vec<Accepted>, sqlx::Error> {
    let mut accepted: Vec<Option<Accepted>> = vec![None; members.len()];
    for round in super::group::rounds(members.iter().map(|m| m.result.biz_id.as_str())) {
        let round: Vec<(usize, &Member)> = round.into_iter().map(|i| (i, &members[i])).collect();
        let outcomes = write_round(conn, &round).await?;
        for ((_, m), outcome) in round.iter().zip(&outcomes) {
            // As in `merge`: a kept record still learns a biz_no it lacked (rare: duplicates).
            if *outcome == MergeOutcome::Unchanged
                && let Some(biz_no) = &m.result.biz_no
            {
                sqlx::query(super::sql::FILL_BIZ_NO)
                    .bind(&m.result.biz_id)
                    .bind(biz_no)
                    .execute(&mut *conn)
                    .await?;
            }
        }
        let mut records = read_round(conn, &round).await?;
        for ((i, m), outcome) in round.iter().zip(outcomes) {
            let record = records
                .remove(&m.result.biz_id)
                .ok_or(sqlx::Error::RowNotFound)?;
            accepted[*i] = Some((outcome, record));
        }
    }
    Ok(accepted
        .into_iter()
        .map(|a| a.expect("rounds cover every member"))
        .collect())
}

/// [`ACCEPT_ROUND`] for one round; the merge outcome of each member, in round order.
async fn write_round(
    conn: &mut PgConnection,
    round: &[(usize, &Member)],
) -> Result<Vec<MergeOutcome>, sqlx::Error> {
    let results: Vec<&IncomingResult> = round.iter().map(|(_, m)| &m.result).collect();
    let entries: Vec<&NewCallback> = round.iter().map(|(_, m)| &m.entry).collect();
    let result_text = |f: fn(&IncomingResult) -> Option<&str>| -> Vec<Option<&str>> {
        results.iter().map(|r| f(r)).collect()
    };
    let entry_text = |f: fn(&NewCallback) -> Option<&str>| -> Vec<Option<&str>> {
        entries.iter().map(|e| f(e)).collect()
    };
    let jobs = JobEffects::of(round);
    let written: Vec<(String, i32)> = sqlx::query_as(ACCEPT_ROUND)
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
    let revisions: HashMap<String, i32> = written.into_iter().collect();
    Ok(results
        .iter()
        .map(|r| merge_outcome(revisions.get(&r.biz_id).copied()))
        .collect())
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

/// The round's records by biz_id.
async fn read_round(
    conn: &mut PgConnection,
    round: &[(usize, &Member)],
) -> Result<HashMap<String, Verification>, sqlx::Error> {
    let biz_ids: Vec<&str> = round
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
    accept_batch: accept_batch,
    group_commit_writers: GROUP_COMMIT_WRITERS,
}
