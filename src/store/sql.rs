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

/// Spends one call, in one statement: only for the holder of a lease that lasts beyond `$5`
/// (the moment the call must have ended by), on a pending job under budget and inside its
/// window. Concurrent callers serialize on the row, and each re-checks `calls_used < $4`
/// after the previous one committed. Binds: biz_id, owner, now, max_calls, hold_until.
pub const RESERVE_CALL: &str = "UPDATE fetch_jobs SET calls_used = calls_used + 1, updated_at = $3 \
     WHERE biz_id = $1 AND lease_owner = $2 AND lease_until > $3 AND lease_until > $5 \
       AND state = 'pending' AND calls_used < $4 AND window_ends_at > $3 \
     RETURNING calls_used";

/// Extends a lease still held: only by its holder, only while it lasts beyond `$3`, on a
/// pending job. Binds: biz_id, owner, valid_beyond, lease_until.
pub const EXTEND_LEASE: &str = "UPDATE fetch_jobs SET lease_until = $4 \
     WHERE biz_id = $1 AND lease_owner = $2 AND lease_until > $3 AND state = 'pending'";

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

/// Console audit rows written before a cutoff (`retention.console_audit_days`). Binds: cutoff.
pub const COUNT_AUDIT_DUE: &str = "SELECT COUNT(*) FROM console_audit WHERE at < $1";

/// Binds: cutoff.
pub const PURGE_AUDIT: &str = "DELETE FROM console_audit WHERE at < $1";

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
// ---- push (issue 13): the outbox, endpoints, deliveries, attempts ----

/// Appends one event to the outbox, in the transaction of the change it reports. A
/// `callback.refused` whose bucket already has its event is coalesced into it (no row).
/// Binds: id, type, subject, journal_id, created_at.
pub const INSERT_EVENT: &str = "INSERT INTO push_events (id, type, subject, journal_id, created_at) \
     VALUES ($1, $2, $3, $4, $5) \
     ON CONFLICT (subject) WHERE type = 'callback.refused' DO NOTHING";

/// An event's columns, in [`super::push::Event`]'s order.
macro_rules! select_event {
    () => {
        "SELECT seq, id, type AS kind, subject, journal_id, created_at, position FROM push_events "
    };
}

/// Published events after a position, in publication order. Binds: after, limit.
pub const EVENTS_AFTER: &str = concat!(
    select_event!(),
    "WHERE position > $1 ORDER BY position LIMIT $2"
);

/// One event by its id. Binds: id.
pub const EVENT_BY_ID: &str = concat!(select_event!(), "WHERE id = $1");

/// Takes the publication counter (and, on PostgreSQL, its row lock until commit: publishers
/// take turns, so positions become visible in the order they were given).
pub const LOCK_PUBLICATION: &str =
    "UPDATE push_state SET last_position = last_position WHERE id = 1 RETURNING last_position";

/// Publishes the oldest unpublished events, at most `limit`, in seq order at the positions
/// right after the counter's: one statement whatever their number (a publication runs for
/// every batch of callbacks): positions last + 1 … last + n for the n rows it updates.
/// Binds: last position, limit.
pub const PUBLISH_EVENTS: &str = "UPDATE push_events SET position = $1 + r.n \
     FROM (SELECT seq, row_number() OVER (ORDER BY seq) AS n FROM push_events \
           WHERE position IS NULL ORDER BY seq LIMIT $2) AS r \
     WHERE push_events.seq = r.seq";

/// Binds: last position.
pub const SET_LAST_POSITION: &str = "UPDATE push_state SET last_position = $1 WHERE id = 1";

/// Fans the events published at positions in (`after`, `upto`] out to every enabled endpoint
/// subscribed to their type. Binds: after, upto, now.
pub const FAN_OUT: &str = "INSERT INTO push_deliveries \
     (event_seq, endpoint_id, state, attempts, next_attempt_at, created_at, updated_at) \
     SELECT e.seq, p.id, 'pending', 0, $3, $3, $3 \
     FROM push_events e JOIN push_endpoints p \
          ON p.disabled_at IS NULL AND (',' || p.events || ',') LIKE ('%,' || e.type || ',%') \
     WHERE e.position > $1 AND e.position <= $2 \
     ON CONFLICT (event_seq, endpoint_id) DO NOTHING";

/// Leases due deliveries of enabled endpoints, oldest-due first, with their event. `$lock`
/// is the engine's row-locking clause (as for follow-up jobs). Binds: owner, now,
/// lease_until, limit.
macro_rules! lease_deliveries {
    ($lock:literal) => {
        concat!(
            "UPDATE push_deliveries SET lease_owner = $1, lease_until = $3, updated_at = $2 \
             WHERE id IN ( \
                 SELECT d.id FROM push_deliveries d \
                 WHERE d.state = 'pending' AND d.next_attempt_at <= $2 \
                   AND (d.lease_until IS NULL OR d.lease_until < $2) \
                   AND d.endpoint_id IN (SELECT id FROM push_endpoints WHERE disabled_at IS NULL) \
                 ORDER BY d.next_attempt_at, d.id \
                 LIMIT $4 ",
            $lock,
            ") RETURNING id, endpoint_id, attempts, event_seq, \
               (SELECT e.id FROM push_events e WHERE e.seq = push_deliveries.event_seq) AS event_id, \
               (SELECT e.type FROM push_events e WHERE e.seq = push_deliveries.event_seq) AS event_type, \
               (SELECT e.subject FROM push_events e WHERE e.seq = push_deliveries.event_seq) AS subject, \
               (SELECT e.journal_id FROM push_events e WHERE e.seq = push_deliveries.event_seq) AS journal_id, \
               (SELECT e.created_at FROM push_events e WHERE e.seq = push_deliveries.event_seq) AS event_created_at, \
               (SELECT e.position FROM push_events e WHERE e.seq = push_deliveries.event_seq) AS position"
        )
    };
}
pub(super) use lease_deliveries;

/// Ends a turn on a delivery: only its lease holder may. Binds: id, owner, state, attempts,
/// next_attempt_at, last_code, now.
pub const END_DELIVERY_TURN: &str = "UPDATE push_deliveries \
     SET state = $3, attempts = $4, next_attempt_at = $5, last_code = $6, \
         lease_owner = NULL, lease_until = NULL, updated_at = $7 \
     WHERE id = $1 AND lease_owner = $2";

/// Binds: event_seq, endpoint_id, attempt, at, status, latency_ms, outcome, code, answer.
pub const INSERT_ATTEMPT: &str = "INSERT INTO push_attempts \
     (event_seq, endpoint_id, attempt, at, status, latency_ms, outcome, code, answer) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";

/// A success ends the endpoint's failing streak. Binds: id.
pub const ENDPOINT_HEALTHY: &str =
    "UPDATE push_endpoints SET failing_since = NULL WHERE id = $1 AND failing_since IS NOT NULL";

/// A failure starts a streak (or continues it). Binds: id, now.
pub const ENDPOINT_FAILING: &str = "UPDATE push_endpoints SET failing_since = COALESCE(failing_since, $2) \
     WHERE id = $1";

/// Disables an enabled endpoint, saying why; with `$4` set, only when it has been failing
/// since at or before `$4`. Binds: id, now, reason, failing-since cutoff (NULL: now).
pub const DISABLE_ENDPOINT: &str = "UPDATE push_endpoints \
     SET disabled_at = $2, disabled_reason = $3, updated_at = $2 \
     WHERE id = $1 AND disabled_at IS NULL AND ($4 IS NULL OR failing_since <= $4)";

/// An endpoint's columns.
macro_rules! select_endpoint {
    () => {
        "SELECT id, url, events, include_pii, description, secret, previous_secret, \
                previous_expires_at, disabled_at, disabled_reason, failing_since, created_at, \
                updated_at \
         FROM push_endpoints "
    };
}

/// Binds: id.
pub const GET_ENDPOINT: &str = concat!(select_endpoint!(), "WHERE id = $1");

/// Every endpoint, oldest first. Binds: limit.
pub const LIST_ENDPOINTS: &str = concat!(select_endpoint!(), "ORDER BY created_at, id LIMIT $1");

pub const COUNT_ENDPOINTS: &str = "SELECT COUNT(*) FROM push_endpoints";

/// Binds: id, url, events, include_pii, description, secret, now.
pub const INSERT_ENDPOINT: &str = "INSERT INTO push_endpoints \
     (id, url, events, include_pii, description, secret, created_at, updated_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $7)";

/// Binds: id, url, events, include_pii, description, now (each NULL keeps the column, except
/// description, whose `$7` says whether to set it).
pub const UPDATE_ENDPOINT: &str = "UPDATE push_endpoints SET \
         url = COALESCE($2, url), events = COALESCE($3, events), \
         include_pii = COALESCE($4, include_pii), \
         description = CASE WHEN $7 THEN $5 ELSE description END, updated_at = $6 \
     WHERE id = $1";

/// Re-enables an endpoint: no reason, no failing streak. Binds: id, now.
pub const ENABLE_ENDPOINT: &str = "UPDATE push_endpoints \
     SET disabled_at = NULL, disabled_reason = NULL, failing_since = NULL, updated_at = $2 \
     WHERE id = $1";

/// Binds: id, new secret, previous secret, previous_expires_at, now.
pub const ROTATE_SECRET: &str = "UPDATE push_endpoints \
     SET secret = $2, previous_secret = $3, previous_expires_at = $4, updated_at = $5 \
     WHERE id = $1";

/// Binds: id.
pub const DELETE_ENDPOINT_DELIVERIES: &str = "DELETE FROM push_deliveries WHERE endpoint_id = $1";

/// Binds: id.
pub const DELETE_ENDPOINT: &str = "DELETE FROM push_endpoints WHERE id = $1";

/// Starts every delivery of an event again, from the first attempt. Binds: seq, now.
pub const RETRY_EVENT: &str = "UPDATE push_deliveries \
     SET state = 'pending', attempts = 0, next_attempt_at = $2, lease_owner = NULL, \
         lease_until = NULL, updated_at = $2 \
     WHERE event_seq = $1";

/// Sends an endpoint every published event of its types created at or after `since` again
/// (or for the first time), from the first attempt, at most `limit` of them. Binds:
/// endpoint_id, since, now, limit.
pub const REPLAY_ENDPOINT: &str = "INSERT INTO push_deliveries \
     (event_seq, endpoint_id, state, attempts, next_attempt_at, created_at, updated_at) \
     SELECT e.seq, p.id, 'pending', 0, $3, $3, $3 \
     FROM push_events e JOIN push_endpoints p ON p.id = $1 \
     WHERE e.position IS NOT NULL AND e.created_at >= $2 \
       AND (',' || p.events || ',') LIKE ('%,' || e.type || ',%') \
     ORDER BY e.position LIMIT $4 \
     ON CONFLICT (event_seq, endpoint_id) DO UPDATE SET state = 'pending', attempts = 0, \
         next_attempt_at = excluded.next_attempt_at, lease_owner = NULL, lease_until = NULL, \
         updated_at = excluded.updated_at";

/// The journal row of a refusal. Binds: id.
pub const CALLBACK_BY_ID: &str = "SELECT id, kind, biz_id, verified, outcome, reason, received_at, remote_addr, \
            content_type, body_sha256, body_len, key_id, replayed_at \
     FROM callbacks WHERE id = $1";

/// Refusals on one route in one window (by the partial index on refused rows). Binds: kind,
/// from, until.
pub const COUNT_REFUSALS: &str = "SELECT COUNT(*) FROM callbacks \
     WHERE outcome = 'rejected' AND kind = $1 AND received_at >= $2 AND received_at < $3";

/// Deliveries per endpoint and state. No binds.
pub const ENDPOINT_HEALTH: &str = "SELECT p.id, \
         COALESCE(SUM(CASE WHEN d.state = 'pending' THEN 1 ELSE 0 END), 0) AS pending, \
         COALESCE(SUM(CASE WHEN d.state = 'pending' AND d.attempts > 0 THEN 1 ELSE 0 END), 0) AS failing, \
         COALESCE(SUM(CASE WHEN d.state = 'failed' THEN 1 ELSE 0 END), 0) AS failed, \
         COALESCE(SUM(CASE WHEN d.state = 'delivered' THEN 1 ELSE 0 END), 0) AS delivered, \
         p.disabled_at, p.disabled_reason, p.failing_since \
     FROM push_endpoints p LEFT JOIN push_deliveries d ON d.endpoint_id = p.id \
     GROUP BY p.id, p.disabled_at, p.disabled_reason, p.failing_since, p.created_at \
     ORDER BY p.created_at, p.id";

/// Attempts to push events about one subject (a biz_id), oldest first. Binds: subject, limit.
pub const ATTEMPTS_FOR_SUBJECT: &str = "SELECT e.id AS event_id, e.type AS event_type, a.endpoint_id, a.attempt, a.at, \
            a.status, a.latency_ms, a.outcome, a.code \
     FROM push_events e JOIN push_attempts a ON a.event_seq = e.seq \
     WHERE e.subject = $1 ORDER BY a.id LIMIT $2";

/// The dispatcher's gauges. No binds.
pub const PUSH_GAUGES: &str = "SELECT \
     (SELECT COUNT(*) FROM push_events WHERE position IS NULL) AS unpublished, \
     (SELECT COUNT(*) FROM push_deliveries WHERE state = 'pending') AS pending, \
     (SELECT COUNT(*) FROM push_endpoints WHERE disabled_at IS NOT NULL) AS endpoints_disabled";

/// `callback.refused` events created before a cutoff (`retention.refused_days`): what
/// strangers caused goes with the refused journal rows. Binds: cutoff.
macro_rules! refused_events_due {
    () => {
        "(SELECT seq FROM push_events WHERE type = 'callback.refused' AND created_at < $1)"
    };
}

/// Binds: cutoff.
pub const PURGE_REFUSED_EVENT_ATTEMPTS: &str = concat!(
    "DELETE FROM push_attempts WHERE event_seq IN ",
    refused_events_due!()
);

/// Binds: cutoff.
pub const PURGE_REFUSED_EVENT_DELIVERIES: &str = concat!(
    "DELETE FROM push_deliveries WHERE event_seq IN ",
    refused_events_due!()
);

/// Push events due for deletion (`retention.push_days`): created before a cutoff, published,
/// and with no delivery still pending — a delivery still retrying, or waiting on a disabled
/// endpoint, keeps its event whatever its age. Deleted deliveries first (the event's foreign
/// key; and a retry finds none to restart), then attempts, then the event. Binds: cutoff.
macro_rules! push_events_due {
    () => {
        "(SELECT e.seq FROM push_events e \
          WHERE e.created_at < $1 AND e.position IS NOT NULL \
            AND NOT EXISTS (SELECT 1 FROM push_deliveries d \
                            WHERE d.event_seq = e.seq AND d.state = 'pending'))"
    };
}

/// Binds: cutoff.
pub const COUNT_PUSH_EVENTS_DUE: &str = concat!(
    "SELECT COUNT(*) FROM push_events WHERE seq IN ",
    push_events_due!()
);

/// Binds: cutoff.
pub const PURGE_PUSH_EVENT_ATTEMPTS: &str = concat!(
    "DELETE FROM push_attempts WHERE event_seq IN ",
    push_events_due!()
);

/// Binds: cutoff.
pub const PURGE_PUSH_EVENT_DELIVERIES: &str = concat!(
    "DELETE FROM push_deliveries WHERE event_seq IN ",
    push_events_due!()
);

/// Binds: cutoff.
pub const PURGE_PUSH_EVENTS: &str =
    concat!("DELETE FROM push_events WHERE seq IN ", push_events_due!());

/// Binds: cutoff.
pub const PURGE_REFUSED_EVENTS: &str =
    "DELETE FROM push_events WHERE type = 'callback.refused' AND created_at < $1";
