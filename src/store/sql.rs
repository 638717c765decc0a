//! SQL shared by both engines, as text identical for PostgreSQL and SQLite.
//!
//! Owns every statement that does not depend on the engine; the few that do (row locking,
//! how a write transaction begins) live beside their engine and are built from the
//! skeletons here, so the two can't drift apart.
//!
//! Rules the text keeps so both engines read it the same way:
//! - placeholders are `$1..$n` (sqlx-sqlite binds `$N` by position, and a repeated `$N` is
//!   one parameter), and every placeholder is bound: SQLite turns an unbound one into NULL;
//! - optional filters are written `($n IS NULL OR col = $n)` so each statement stays one
//!   constant instead of being assembled at run time;
//! - times are epoch-ms integers bound by the caller, never `now()`;
//! - `INSERT .. ON CONFLICT .. DO UPDATE .. WHERE .. RETURNING` returns no row when the
//!   `WHERE` refuses the update, on both engines (SQLite ≥ 3.35): that is how a merge learns
//!   it was a duplicate without a separate read.

/// Liveness probe.
pub const PING: &str = "SELECT 1";

/// The journal's columns, in the order every insert gives values.
macro_rules! insert_callback {
    () => {
        "INSERT INTO callbacks \
         (kind, biz_id, verified, outcome, reason, received_at, remote_addr, content_type, body_sha256, body_len, body, key_id) "
    };
}
pub(super) use insert_callback;

/// Appends one delivery to the journal. Binds: kind, biz_id, verified, outcome, reason,
/// received_at, remote_addr, content_type, body_sha256, body_len, body, key_id.
pub const INSERT_CALLBACK: &str = concat!(
    insert_callback!(),
    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING id"
);

/// Every column of `verifications`, in the order the inserts below give values.
macro_rules! insert_verification {
    () => {
        "INSERT INTO verifications \
         (biz_id, biz_no, status, status_rank, liveness, confidence, source, signed, result, \
          image_names, revision, created_at, updated_at) "
    };
}
pub(super) use insert_verification;

/// The merge rule itself, as the conflict clause of an insert into `verifications` (one row
/// here, a whole batch in PostgreSQL's group commit).
macro_rules! merge_rule {
    () => {
        "ON CONFLICT (biz_id) DO UPDATE SET \
             biz_no = COALESCE(excluded.biz_no, verifications.biz_no), \
             status = excluded.status, \
             status_rank = excluded.status_rank, \
             liveness = excluded.liveness, \
             confidence = excluded.confidence, \
             source = excluded.source, \
             signed = excluded.signed, \
             result = excluded.result, \
             revision = verifications.revision + 1, \
             updated_at = excluded.updated_at \
         WHERE excluded.status_rank > verifications.status_rank \
            OR (excluded.status_rank = verifications.status_rank AND excluded.signed AND NOT verifications.signed) "
    };
}
pub(super) use merge_rule;

/// The merge rule, atomically: insert the first result, or replace the stored one only when
/// the new status ranks higher, or ranks the same and is signed while the stored one is not.
/// A PENDING row (rank 0, revision 0) is replaced by any real result. Returns the new
/// revision (1 = first result), or no row when the stored record was kept.
///
/// Binds: biz_id, biz_no, status, status_rank, liveness, confidence, source, signed, result,
/// now.
pub const MERGE_RESULT: &str = concat!(
    insert_verification!(),
    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, NULL, 1, $10, $10) ",
    merge_rule!(),
    "RETURNING revision"
);

/// After an `Unchanged` merge: learn a biz_no the stored record lacked (never replace one).
/// Binds: biz_id, biz_no.
pub const FILL_BIZ_NO: &str =
    "UPDATE verifications SET biz_no = $2 WHERE biz_id = $1 AND biz_no IS NULL";

/// A record about which nothing is known yet; keeps any existing record. Revision 0 so that
/// the first real result counts as `Created`. Binds: biz_id, status (PENDING), source
/// (return for a return GET, get_result for a fetch asked through the API), now.
pub const INSERT_PENDING: &str = concat!(
    insert_verification!(),
    "VALUES ($1, NULL, $2, 0, NULL, NULL, $3, FALSE, NULL, NULL, 0, $4, $4) \
     ON CONFLICT (biz_id) DO NOTHING"
);

/// Columns of a record with its follow-up; `fetch_*` are NULL when there is no job.
macro_rules! select_verification {
    () => {
        "SELECT v.biz_id, v.biz_no, v.status, v.liveness, v.confidence, v.source, v.signed, v.result, \
                v.image_names, v.created_at, v.updated_at, v.purged_at, \
                j.state AS fetch_state, j.calls_used AS fetch_calls_used, \
                j.next_at AS fetch_next_at, j.last_error AS fetch_last_error \
         FROM verifications v LEFT JOIN fetch_jobs j ON j.biz_id = v.biz_id "
    };
}
pub(super) use select_verification;

/// One record. Binds: biz_id.
pub const GET_VERIFICATION: &str = concat!(select_verification!(), "WHERE v.biz_id = $1");

/// Newest first, keyset-paginated on (created_at, biz_id). Binds: biz_no, status, since,
/// after.created_at, after.biz_id, limit (filters NULL when absent).
pub const LIST_VERIFICATIONS: &str = concat!(
    select_verification!(),
    "WHERE ($1 IS NULL OR v.biz_no = $1) \
       AND ($2 IS NULL OR v.status = $2) \
       AND ($3 IS NULL OR v.created_at >= $3) \
       AND ($4 IS NULL OR v.created_at < $4 OR (v.created_at = $4 AND v.biz_id < $5)) \
     ORDER BY v.created_at DESC, v.biz_id DESC \
     LIMIT $6"
);

/// The journal, newest first. Binds: biz_id, verified, before_id, limit (NULL when absent).
pub const LIST_CALLBACKS: &str = "SELECT id, kind, biz_id, verified, outcome, reason, received_at, remote_addr, \
            content_type, body_sha256, body_len, key_id, replayed_at \
     FROM callbacks \
     WHERE ($1 IS NULL OR biz_id = $1) \
       AND ($2 IS NULL OR verified = $2) \
       AND ($3 IS NULL OR id < $3) \
     ORDER BY id DESC \
     LIMIT $4";

/// The columns a new job is given; values bind as (biz_id, next_at, window_ends_at,
/// return_image, now) and a new job starts pending with nothing spent.
macro_rules! insert_job {
    () => {
        "INSERT INTO fetch_jobs \
         (biz_id, state, calls_used, next_at, window_ends_at, return_image, created_at, updated_at) "
    };
}
pub(super) use insert_job;

/// What an insert of a pending job does when the biz_id already has one: make it pending and
/// due at the new `next_at`. Never touches `calls_used` (the budget), `window_ends_at`, the
/// lease or `created_at`.
macro_rules! pending_job_on_conflict {
    () => {
        "ON CONFLICT (biz_id) DO UPDATE SET \
             state = 'pending', next_at = excluded.next_at, return_image = excluded.return_image, \
             updated_at = excluded.updated_at "
    };
}

/// Creates a pending job, or makes the existing one pending and due at the new `next_at`.
macro_rules! upsert_pending_job {
    () => {
        concat!(
            insert_job!(),
            "VALUES ($1, 'pending', 0, $2, $3, $4, $5, $5) ",
            pending_job_on_conflict!()
        )
    };
}

/// [`ENSURE_JOB`] wakes a `none` job, and makes a pending one due sooner (never later); any
/// other state is kept.
macro_rules! ensure_job_condition {
    () => {
        "WHERE fetch_jobs.state = 'none' \
            OR (fetch_jobs.state = 'pending' AND fetch_jobs.next_at > excluded.next_at)"
    };
}

/// Images are wanted and the result is final: create a pending job, wake a `none` one, or
/// bring a pending one forward to `next_at`. Any other state is kept, and `calls_used` is
/// never touched. Binds: biz_id, next_at, window_ends_at, return_image, now.
pub const ENSURE_JOB: &str = concat!(upsert_pending_job!(), ensure_job_condition!());

pub(super) use {ensure_job_condition, pending_job_on_conflict};

/// What cancelling a pending job sets, less `updated_at`: state `none`, nothing due, and the
/// lease dropped so a worker still holding it cannot finish it back into another state.
macro_rules! cancel_job_set {
    () => {
        "SET state = 'none', next_at = NULL, lease_owner = NULL, lease_until = NULL"
    };
}
pub(super) use cancel_job_set;

/// A signed final result made the follow-up pointless: a pending job becomes `none`.
/// Binds: biz_id, now.
pub const CANCEL_PENDING_JOB: &str = concat!(
    "UPDATE fetch_jobs ",
    cancel_job_set!(),
    ", updated_at = $2 WHERE biz_id = $1 AND state = 'pending'"
);

/// For a return GET: a pending job if the biz_id has none and its record does not already
/// hold a final result (status_rank 3: fetching it again would only spend budget). An
/// existing job (and its budget) is left alone. The `WHERE` also keeps SQLite's parser from
/// reading `ON CONFLICT` as a join constraint. Binds: biz_id, next_at, window_ends_at,
/// return_image, now.
pub const INSERT_JOB_UNLESS_FINAL: &str = concat!(
    insert_job!(),
    "SELECT $1, 'pending', 0, $2, $3, $4, $5, $5 \
     WHERE NOT EXISTS (SELECT 1 FROM verifications WHERE biz_id = $1 AND status_rank >= 3) \
     ON CONFLICT (biz_id) DO NOTHING"
);

/// Makes the job pending and due at `next_at`, creating it if needed; keeps `calls_used`,
/// the window and any lease. Binds: biz_id, next_at, window_ends_at, return_image, now.
pub const SCHEDULE_JOB: &str = concat!(
    upsert_pending_job!(),
    "RETURNING state, calls_used, next_at, last_error"
);

/// Leases due jobs, oldest-due first, with the record's status rank (what the schedule knows
/// about the flow). `$lock` is the engine's row-locking clause for the inner select
/// (PostgreSQL: `FOR UPDATE SKIP LOCKED`; SQLite: none, its write transaction is exclusive).
/// Binds: owner, now, lease_until, limit.
macro_rules! lease_due_jobs {
    ($lock:literal) => {
        concat!(
            "UPDATE fetch_jobs SET lease_owner = $1, lease_until = $3, updated_at = $2 \
             WHERE biz_id IN ( \
                 SELECT biz_id FROM fetch_jobs \
                 WHERE state = 'pending' AND next_at <= $2 AND (lease_until IS NULL OR lease_until < $2) \
                 ORDER BY next_at, biz_id \
                 LIMIT $4 ",
            $lock,
            ") RETURNING biz_id, calls_used, next_at, window_ends_at, return_image, lease_until, \
               (SELECT v.status_rank FROM verifications v WHERE v.biz_id = fetch_jobs.biz_id) \
               AS known_rank"
        )
    };
}
pub(super) use lease_due_jobs;

/// Spends one call, in one statement: only for the live lease holder of a pending job under
/// budget and inside its window. Concurrent callers serialize on the row, and each re-checks
/// `calls_used < $4` after the previous one committed. Binds: biz_id, owner, now, max_calls.
pub const RESERVE_CALL: &str = "UPDATE fetch_jobs SET calls_used = calls_used + 1, updated_at = $3 \
     WHERE biz_id = $1 AND lease_owner = $2 AND lease_until > $3 AND state = 'pending' \
       AND calls_used < $4 AND window_ends_at > $3 \
     RETURNING calls_used";

/// Ends a turn: only the lease holder may, and the lease is cleared. `state` NULL keeps the
/// state (a retry). Binds: biz_id, owner, state, next_at, last_error, now.
pub const END_JOB_TURN: &str = "UPDATE fetch_jobs \
     SET state = COALESCE($3, state), next_at = $4, last_error = $5, \
         lease_owner = NULL, lease_until = NULL, updated_at = $6 \
     WHERE biz_id = $1 AND lease_owner = $2";

/// Stores (or refreshes) one image. Binds: biz_id, name, jpeg, now.
pub const UPSERT_IMAGE: &str = "INSERT INTO images (biz_id, name, jpeg, created_at) VALUES ($1, $2, $3, $4) \
     ON CONFLICT (biz_id, name) DO UPDATE SET jpeg = excluded.jpeg";

/// Names of a biz_id's stored images. Binds: biz_id.
pub const IMAGE_NAMES: &str = "SELECT name FROM images WHERE biz_id = $1";

/// Records which images exist; the record counts as updated only if the list changed.
/// Binds: biz_id, image_names, now.
pub const SET_IMAGE_NAMES: &str = "UPDATE verifications SET image_names = $2, updated_at = $3 \
     WHERE biz_id = $1 AND image_names IS DISTINCT FROM $2";

/// Binds: biz_id, name.
pub const GET_IMAGE: &str = "SELECT jpeg FROM images WHERE biz_id = $1 AND name = $2";

/// Appends one disclosure to the access log. Binds: token_fp, route, biz_id, accessed_at.
pub const INSERT_ACCESS: &str =
    "INSERT INTO pii_access (token_fp, route, biz_id, accessed_at) VALUES ($1, $2, $3, $4)";

/// The access log, oldest first. Binds: biz_id (NULL for all), limit.
pub const LIST_ACCESS: &str = "SELECT token_fp, route, biz_id, accessed_at FROM pii_access \
     WHERE ($1 IS NULL OR biz_id = $1) ORDER BY id LIMIT $2";

/// Retention: which verifications have a raw result or images due. Shared by the count and
/// the update so a dry run counts exactly what a real run changes. Binds: cutoff.
macro_rules! results_due {
    () => {
        "WHERE created_at < $1 AND (result IS NOT NULL OR image_names IS NOT NULL)"
    };
}

/// Binds: cutoff.
pub const COUNT_RESULTS_DUE: &str = concat!("SELECT COUNT(*) FROM verifications ", results_due!());

/// Binds: cutoff, now. Status, liveness, confidence and the timestamps stay.
pub const PURGE_RESULTS: &str = concat!(
    "UPDATE verifications SET result = NULL, image_names = NULL, purged_at = $2 ",
    results_due!()
);

/// Images of verifications created before the cutoff. Binds: cutoff.
macro_rules! images_due {
    () => {
        "FROM images WHERE biz_id IN (SELECT biz_id FROM verifications WHERE created_at < $1)"
    };
}

/// Binds: cutoff.
pub const COUNT_IMAGES_DUE: &str = concat!("SELECT COUNT(*) ", images_due!());

/// Binds: cutoff.
pub const PURGE_IMAGES: &str = concat!("DELETE ", images_due!());

/// Journal rows whose body is due (an emptied body is not counted twice). `length` counts
/// bytes of a PostgreSQL bytea and of a SQLite blob alike. Binds: cutoff.
macro_rules! journal_due {
    () => {
        "WHERE received_at < $1 AND length(body) > 0 "
    };
}

/// The bodies a purge empties, less the refused rows the same purge deletes first (so a dry
/// run, which deletes nothing, counts what a real run empties). Binds: cutoff, refused
/// cutoff (NULL: none).
pub const COUNT_JOURNAL_DUE: &str = concat!(
    "SELECT COUNT(*) FROM callbacks ",
    journal_due!(),
    "AND ($2 IS NULL OR outcome <> 'rejected' OR received_at >= $2)"
);

/// Empties due bodies; kind, outcome, reason, sizes and `body_sha256` stay. Binds: cutoff,
/// the empty body.
pub const PURGE_JOURNAL: &str = concat!("UPDATE callbacks SET body = $2 ", journal_due!());

/// Refused deliveries due for deletion (`retention.refused_days`), shared by the count and
/// the delete. Binds: cutoff.
macro_rules! refused_due {
    () => {
        "FROM callbacks WHERE outcome = 'rejected' AND received_at < $1"
    };
}

/// Binds: cutoff.
pub const COUNT_REFUSED_DUE: &str = concat!("SELECT COUNT(*) ", refused_due!());

/// Deletes them, rows and all: they are what strangers sent, not what happened to a
/// verification. Binds: cutoff.
pub const PURGE_REFUSED: &str = concat!("DELETE ", refused_due!());

/// Key rotation pages and compare-and-swap rewrites. Binds: after biz_id, limit.
pub const STORED_RESULTS: &str = "SELECT biz_id, result FROM verifications \
     WHERE result IS NOT NULL AND biz_id > $1 ORDER BY biz_id LIMIT $2";

/// Binds: biz_id, old, new.
pub const REPLACE_RESULT: &str =
    "UPDATE verifications SET result = $3 WHERE biz_id = $1 AND result = $2";

/// Binds: after biz_id, after name, limit.
pub const STORED_IMAGES: &str = "SELECT biz_id, name, jpeg FROM images \
     WHERE biz_id > $1 OR (biz_id = $1 AND name > $2) ORDER BY biz_id, name LIMIT $3";

/// Binds: biz_id, name, old, new.
pub const REPLACE_IMAGE: &str =
    "UPDATE images SET jpeg = $4 WHERE biz_id = $1 AND name = $2 AND jpeg = $3";

/// Binds: after id, limit.
pub const STORED_BODIES: &str = "SELECT id, verified, body_sha256, body FROM callbacks \
     WHERE id > $1 AND length(body) > 0 ORDER BY id LIMIT $2";

/// Binds: id, old, new.
pub const REPLACE_BODY: &str = "UPDATE callbacks SET body = $3 WHERE id = $1 AND body = $2";

/// Replay's candidates: refused deliveries (`outcome = 'rejected'`) of the signed routes whose
/// body was kept whole — non-empty and at least `body_len` long (a body capped to a prefix is
/// shorter; an encrypted one is longer, and the caller checks its exact length once
/// decrypted) — oldest first. Binds: after_id, since (NULL for all), limit.
pub const REFUSED_DELIVERIES: &str = "SELECT id, kind, received_at, content_type, body_len, body, \
            verified, body_sha256 \
     FROM callbacks \
     WHERE outcome = 'rejected' AND kind IN ('notify', 'return_post') AND id > $1 \
       AND ($2 IS NULL OR received_at >= $2) \
       AND length(body) > 0 AND length(body) >= body_len \
     ORDER BY id \
     LIMIT $3";

/// Claims a refused delivery for replay: it becomes `replayed`, verified by `key_id`, about
/// `biz_id`, at `now` — only while it is still `rejected`, so two replays never both store it.
/// Binds: id, key_id, biz_id, now.
pub const MARK_REPLAYED: &str = "UPDATE callbacks \
     SET outcome = 'replayed', verified = TRUE, key_id = $2, biz_id = $3, replayed_at = $4 \
     WHERE id = $1 AND outcome = 'rejected'";

// ---- the get_result call log and the operator console (migration 0006) ----

/// Logs the call that brought a job's current `calls_used` (so the call number is the one
/// `RESERVE_CALL` counted). Binds: biz_id, now, outcome (`result` / `error`), detail (the
/// status answered, or the error code).
pub const INSERT_CALL: &str = "INSERT INTO fetch_calls (biz_id, call_no, called_at, outcome, detail) \
     SELECT biz_id, calls_used, $2, $3, $4 FROM fetch_jobs WHERE biz_id = $1";

/// A verification's calls, oldest first. Binds: biz_id, limit.
pub const LIST_CALLS: &str = "SELECT call_no, called_at, outcome, detail FROM fetch_calls \
     WHERE biz_id = $1 ORDER BY id LIMIT $2";

/// Binds: id_hash, token_fp, created_at, expires_at.
pub const INSERT_SESSION: &str = "INSERT INTO console_sessions \
     (id_hash, token_fp, created_at, last_seen_at, expires_at) VALUES ($1, $2, $3, $3, $4)";

/// A live session seen again: only while neither expiry has passed. Binds: id_hash, now,
/// idle cutoff.
pub const TOUCH_SESSION: &str = "UPDATE console_sessions SET last_seen_at = $2 \
     WHERE id_hash = $1 AND expires_at > $2 AND last_seen_at > $3 \
     RETURNING token_fp, created_at, last_seen_at, expires_at";

/// Binds: id_hash.
pub const DELETE_SESSION: &str = "DELETE FROM console_sessions WHERE id_hash = $1";

/// Binds: now, idle cutoff.
pub const PURGE_SESSIONS: &str =
    "DELETE FROM console_sessions WHERE expires_at <= $1 OR last_seen_at <= $2";

/// Binds: at, event, token_fp, remote_addr, biz_id, detail.
pub const INSERT_AUDIT: &str = "INSERT INTO console_audit \
     (at, event, token_fp, remote_addr, biz_id, detail) VALUES ($1, $2, $3, $4, $5, $6)";

/// Newest first. Binds: limit.
pub const LIST_AUDIT: &str = "SELECT at, event, token_fp, remote_addr, biz_id, detail \
     FROM console_audit ORDER BY id DESC LIMIT $1";

/// Verifications created since a moment, by time bucket and status (integer division on
/// both engines). Binds: since, bucket_ms.
pub const OUTCOMES_BY_BUCKET: &str = "SELECT (created_at / $2) * $2 AS bucket, status AS key, \
            COUNT(*) AS count \
     FROM verifications WHERE created_at >= $1 \
     GROUP BY (created_at / $2) * $2, status ORDER BY 1, 2";

/// Final verifications created since a moment, by liveness. Binds: since.
pub const LIVENESS: &str = "SELECT COALESCE(liveness, 'none') AS key, COUNT(*) AS count \
     FROM verifications WHERE created_at >= $1 AND status_rank = 3 \
     GROUP BY COALESCE(liveness, 'none') ORDER BY 1";

/// Refused deliveries since a moment, by reason. Binds: since.
pub const REFUSALS: &str = "SELECT COALESCE(reason, 'unknown') AS key, COUNT(*) AS count \
     FROM callbacks WHERE outcome = 'rejected' AND received_at >= $1 \
     GROUP BY COALESCE(reason, 'unknown') ORDER BY 2 DESC, 1 LIMIT 20";

/// Follow-up jobs by state. Binds: max_calls.
pub const FOLLOWUPS: &str = "SELECT state, COUNT(*) AS jobs, \
            COALESCE(SUM(calls_used), 0) AS calls_used, \
            COALESCE(SUM(CASE WHEN calls_used >= $1 - 1 THEN 1 ELSE 0 END), 0) AS last_call \
     FROM fetch_jobs GROUP BY state ORDER BY state";

/// Deliveries since a moment: verified ones, and those refused for a sign mismatch.
/// Binds: since, the mismatch reason.
pub const DELIVERIES: &str = "SELECT \
       COALESCE(SUM(CASE WHEN verified THEN 1 ELSE 0 END), 0), \
       COALESCE(SUM(CASE WHEN outcome = 'rejected' AND reason = $2 THEN 1 ELSE 0 END), 0) \
     FROM callbacks WHERE received_at >= $1";

/// The console's search, newest first, keyset-paginated on (created_at, biz_id). Binds:
/// biz_id, biz_no, status, from, until, after.created_at, after.biz_id, limit.
pub const SEARCH_VERIFICATIONS: &str = concat!(
    select_verification!(),
    "WHERE ($1 IS NULL OR v.biz_id = $1) \
       AND ($2 IS NULL OR v.biz_no = $2) \
       AND ($3 IS NULL OR v.status = $3) \
       AND ($4 IS NULL OR v.created_at >= $4) \
       AND ($5 IS NULL OR v.created_at < $5) \
       AND ($6 IS NULL OR v.created_at < $6 OR (v.created_at = $6 AND v.biz_id < $7)) \
     ORDER BY v.created_at DESC, v.biz_id DESC \
     LIMIT $8"
);
