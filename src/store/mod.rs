//! Durable storage: the store's parts, one per caller, each implemented by a PostgreSQL
//! and a SQLite engine.
//!
//! Owns: verification records (one per biz_id), the callback journal (every delivery), the
//! follow-up job rows with their get_result budget and call log, fetched images, the access
//! log, the operator console's sessions and audit trail, and pushing's tables (endpoints,
//! the outbox of events, deliveries, attempts: `push.rs`).
//!
//! The parts, by who uses them: [`CallbackStore`] (FaceID's deliveries), [`ApiStore`] (the
//! merchant API), [`ReplayStore`] (replay), [`FollowUpStore`] (the follow-up worker),
//! [`MaintenanceStore`] (retention, re-encryption), [`ConsoleStore`] (the operator console),
//! [`Database`] (migrations, readiness), [`PushStore`] (the push dispatcher), [`EndpointStore`] (the admin API's endpoints) and
//! [`EventStore`] (reading the outbox: the pull API, the stream, the dispatcher).
//! [`ServingStore`] is what the HTTP surface holds; [`Store`] is all of them, as [`connect`]
//! opens one engine. Where the code lives: `engine.rs` writes every method once for both
//! engines ([`PgStore`], [`SqliteStore`]), from the statements in [`sql`]; `group.rs` batches
//! concurrent signed deliveries into shared transactions; `encrypted.rs` owns encryption at
//! rest (the [`Keyring`], and what it seals).
//!
//! Invariants every engine keeps, whichever part a caller holds (and `tests/store` checks
//! them on both engines):
//! - a method that returns `Ok` has committed durably; callers acknowledge only after that;
//! - a status never regresses: a result replaces the stored one only when its status ranks
//!   higher, or ranks the same and is signed while the stored one is not (so a signed result
//!   is never overwritten by an unsigned source); equal results are idempotent duplicates;
//! - `calls_used` only ever grows, by one conditional statement per call, and never past the
//!   caller's `max_calls` (and never past 3, by a CHECK constraint);
//! - times are epoch milliseconds supplied by the caller's clock, never the database's;
//! - a committed outcome always has its outbox event, written in the same transaction (a
//!   final result merged: `verification.completed`; a follow-up ended without one:
//!   `followup.ended`; a refusal journaled: `callback.refused`, one per bucket), and a
//!   rolled-back one never does;
//! - identity data (raw results, journal bodies, images) is sealed with the configured
//!   [`Keyring`] before any statement binds it and opened after any row is read, so with a
//!   key nothing identifying reaches the database in clear (see `encrypted.rs`).

mod encrypted;
mod engine;
mod group;
mod postgres;
mod push;
/// The statements themselves; public so that `bench/loadgen.rs` benchmarks the very same
/// SQL against the database directly (pgbench script, SQLite baselines).
#[doc(hidden)]
pub mod sql;
mod sqlite;

/// PostgreSQL group commit's own batch writer, public for the same reason:
/// the batched ceiling of `bench/notify.sh` writes its batches with `write_batch` itself, on
/// connections made with `writer_options`, not with a copy.
#[doc(hidden)]
pub mod pg_batch {
    pub use super::group::{Member, WriterConnection};
    pub use super::postgres::{write_batch, writer_options};
}

use std::sync::Arc;

use async_trait::async_trait;

pub use encrypted::{BadKey, Keyring, ReencryptCounts};
pub use postgres::PgStore;
pub use push::{
    AttemptRecord, AttemptReport, CALLBACK_REFUSED, Endpoint, EndpointHealth, EndpointPatch, Event,
    FOLLOWUP_ENDED, LeasedDelivery, NewEndpoint, NextStep, PushGauges, REFUSED_WINDOW_MS,
    RefusalSummary, VERIFICATION_COMPLETED, bucket_window, refusal_bucket,
};
pub use sqlite::SqliteStore;

pub type StoreResult<T> = Result<T, StoreError>;

/// What went wrong in storage. Only [`StoreError::Unavailable`] means "the database is not
/// there right now"; everything a statement refuses for its data is [`StoreError::Other`],
/// and fails only the write that carried it.
///
/// Cheap to clone: the database's error is shared, so every caller whose write failed with
/// it (the members of a failed group commit) gets that very error.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached or cannot commit right now: connection, shutdown,
    /// resources, timeouts (retryable: answer 503).
    #[error("storage is unavailable")]
    Unavailable(#[source] Arc<sqlx::Error>),
    /// A statement failed for another reason: the database refused this write's data (a
    /// SQLSTATE class 22 or 23 error, a constraint), or a bug. Retrying the same write will
    /// not help, and it says nothing about other writes.
    #[error("storage error")]
    Other(#[source] Arc<sqlx::Error>),
    /// Migrations could not be applied.
    #[error("database migration failed")]
    Migrate(#[source] Arc<sqlx::migrate::MigrateError>),
    /// A stored value cannot be decrypted (wrong or missing key, or altered data). The
    /// message names the key id, never the value.
    #[error("stored data cannot be decrypted: {0}")]
    Decrypt(String),
    /// The database URL names neither engine.
    #[error("database.url must start with sqlite:// or postgres:// (got scheme {0:?})")]
    UnsupportedUrl(String),
}

impl StoreError {
    /// The database's own error code (a PostgreSQL SQLSTATE, a SQLite result code), when the
    /// database refused a statement. Codes never carry data, so they may be logged and
    /// journaled.
    pub fn database_code(&self) -> Option<String> {
        match self {
            Self::Unavailable(error) | Self::Other(error) => match &**error {
                sqlx::Error::Database(db) => db.code().map(|c| c.into_owned()),
                _ => None,
            },
            _ => None,
        }
    }
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(error: sqlx::migrate::MigrateError) -> Self {
        Self::Migrate(Arc::new(error))
    }
}

/// PostgreSQL SQLSTATE classes (and codes) that mean the database is not there right now:
/// 08 connection exception, 53 insufficient resources, 57 operator intervention (shutdown,
/// statement timeout, database dropped), 58 system error (I/O), and 3D000 (no such database).
/// Everything else — 22 data exception (a NUL in text: 22021), 23 integrity constraint,
/// 40 transaction rollback, 54 limits, XX internal — is about the statement, not the server.
fn postgres_unavailable(sqlstate: &str) -> bool {
    ["08", "53", "57", "58"]
        .iter()
        .any(|class| sqlstate.starts_with(class))
        || sqlstate == "3D000"
}

/// SQLite primary result codes that mean the database cannot be used right now: BUSY(5)
/// (the busy timeout elapsed), LOCKED(6), NOMEM(7), READONLY(8), IOERR(10), FULL(13),
/// CANTOPEN(14). `code` may be an extended code; its low byte is the primary one.
fn sqlite_unavailable(code: i32) -> bool {
    matches!(code & 0xff, 5 | 6 | 7 | 8 | 10 | 13 | 14)
}

/// Whether `error` says that the connection it came on is gone — broken off, or ended by the
/// server (PostgreSQL 08 connection exception, 57P01 administrator shutdown, 57P02 crash
/// shutdown) — rather than that the database refused the work or cannot do it now. Group
/// commit writes a batch again on a fresh connection when a connection it kept from the
/// batch before turns out so ([`group::WriterConnection::write`]).
pub(crate) fn connection_lost(error: &sqlx::Error) -> bool {
    use sqlx::Error as E;
    match error {
        E::Io(_) | E::Tls(_) | E::Protocol(_) => true,
        E::Database(db) => db
            .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
            .is_some_and(|pg| postgres_connection_lost(pg.code())),
        _ => false,
    }
}

/// The PostgreSQL SQLSTATEs of [`connection_lost`]. Not 57014 (a statement timeout: the
/// session lives on, and writing again would wait as long again), nor 53300 or 57P03 (no
/// connection could be made at all).
fn postgres_connection_lost(sqlstate: &str) -> bool {
    sqlstate.starts_with("08") || sqlstate == "57P01" || sqlstate == "57P02"
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        use sqlx::Error as E;
        let unavailable = match &error {
            E::Io(_)
            | E::Tls(_)
            | E::Protocol(_)
            | E::PoolTimedOut
            | E::PoolClosed
            | E::WorkerCrashed
            | E::Configuration(_) => true,
            // Each engine's codes by that engine's rules: a PostgreSQL SQLSTATE such as
            // 22021 is all digits too, and must never be read as a SQLite code.
            E::Database(db) => {
                let code = db.code().unwrap_or_default();
                if db
                    .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
                    .is_some()
                {
                    postgres_unavailable(&code)
                } else {
                    code.parse::<i32>().is_ok_and(sqlite_unavailable)
                }
            }
            _ => false,
        };
        if unavailable {
            Self::Unavailable(Arc::new(error))
        } else {
            Self::Other(Arc::new(error))
        }
    }
}

/// Where a result came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Notify,
    Return,
    GetResult,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Notify => "notify",
            Self::Return => "return",
            Self::GetResult => "get_result",
        }
    }
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "notify" => Self::Notify,
            "return" => Self::Return,
            "get_result" => Self::GetResult,
            _ => return None,
        })
    }
}

/// Which route a delivery arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallbackKind {
    Notify,
    ReturnPost,
    ReturnGet,
}

impl CallbackKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Notify => "notify",
            Self::ReturnPost => "return_post",
            Self::ReturnGet => "return_get",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "notify" => Self::Notify,
            "return_post" => Self::ReturnPost,
            "return_get" => Self::ReturnGet,
            _ => return None,
        })
    }

    /// The source a result delivered on this route is stored with.
    pub fn source(self) -> Source {
        match self {
            Self::Notify => Source::Notify,
            Self::ReturnPost | Self::ReturnGet => Source::Return,
        }
    }
}

/// State of the follow-up for one biz_id, as shown in the record's `fetch` object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchState {
    /// No follow-up wanted (none scheduled, or cancelled because a signed final arrived).
    None,
    Pending,
    Done,
    NotFound,
    Expired,
    Exhausted,
    Failed,
}

impl FetchState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Pending => "pending",
            Self::Done => "done",
            Self::NotFound => "not_found",
            Self::Expired => "expired",
            Self::Exhausted => "exhausted",
            Self::Failed => "failed",
        }
    }
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "none" => Self::None,
            "pending" => Self::Pending,
            "done" => Self::Done,
            "not_found" => Self::NotFound,
            "expired" => Self::Expired,
            "exhausted" => Self::Exhausted,
            "failed" => Self::Failed,
            _ => return None,
        })
    }
}

/// The `fetch` object of a record.
#[derive(Debug, Clone, PartialEq)]
pub struct FetchInfo {
    pub state: FetchState,
    pub calls_used: i32,
    pub next_at: Option<i64>,
    pub last_error: Option<String>,
}

impl Default for FetchInfo {
    fn default() -> Self {
        Self {
            state: FetchState::None,
            calls_used: 0,
            next_at: None,
            last_error: None,
        }
    }
}

/// The status of a record about which nothing is known yet (a return GET, or a follow-up
/// asked through the API).
pub const PENDING: &str = "PENDING";

/// One stored verification, as the API shows it.
#[derive(Clone, PartialEq)]
pub struct Verification {
    pub biz_id: String,
    pub biz_no: Option<String>,
    pub status: String,
    pub liveness: Option<String>,
    pub confidence: Option<f64>,
    pub source: Source,
    pub signed: bool,
    /// Raw FaceID JSON text, images stripped. `None` while pending.
    pub result: Option<String>,
    pub images: Vec<String>,
    pub fetch: FetchInfo,
    pub created_at: i64,
    pub updated_at: i64,
    /// When retention purged the raw result and images (`None`: never).
    pub purged_at: Option<i64>,
}

impl std::fmt::Debug for Verification {
    // `result` holds identity data: keep it out of any debug output.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verification")
            .field("biz_id", &self.biz_id)
            .field("status", &self.status)
            .field("source", &self.source)
            .field("signed", &self.signed)
            .field("fetch", &self.fetch)
            .finish_non_exhaustive()
    }
}

/// A result to merge into `verifications`.
#[derive(Clone)]
pub struct IncomingResult {
    pub biz_id: String,
    pub biz_no: Option<String>,
    pub status: String,
    /// [`crate::protocol::Status::rank`]; 0 is reserved for [`PENDING`].
    pub status_rank: i32,
    pub liveness: Option<String>,
    pub confidence: Option<f64>,
    pub source: Source,
    pub signed: bool,
    pub result: String,
}

impl IncomingResult {
    /// The one way a received result becomes a row: the derived columns from `fields`
    /// (already in the form a column may hold, see [`crate::protocol::payload`]) and the
    /// result text as it is. Signed callbacks and get_result answers both come through here.
    pub fn new(
        biz_id: impl Into<String>,
        fields: &crate::protocol::ResultFields,
        result: String,
        source: Source,
        signed: bool,
    ) -> Self {
        Self {
            biz_id: biz_id.into(),
            biz_no: fields.biz_no.clone(),
            status: fields.status.as_str().to_owned(),
            status_rank: fields.status.rank(),
            liveness: fields.liveness.map(|l| l.as_str().to_owned()),
            confidence: fields.confidence,
            source,
            signed,
            result,
        }
    }
}

/// What merging a result did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MergeOutcome {
    /// First result for this biz_id.
    Created,
    /// Replaced a lower-ranked (or unsigned) result.
    Updated,
    /// Duplicate or stale: the stored record was kept as it was.
    Unchanged,
}

/// One delivery for the journal.
#[derive(Clone)]
pub struct NewCallback {
    pub kind: CallbackKind,
    pub biz_id: Option<String>,
    pub verified: bool,
    /// Why it was refused; `None` when accepted. Never contains request content.
    pub reason: Option<String>,
    pub received_at: i64,
    pub remote_addr: Option<String>,
    pub content_type: Option<String>,
    pub body_sha256: String,
    pub body_len: i64,
    /// The body, already capped by the caller.
    pub body: Vec<u8>,
    /// Which configured API secret verified the sign ([`crate::protocol::sign::key_id`]);
    /// `None` when it was not verified.
    pub key_id: Option<String>,
}

/// One journal row, as stored and as the API shows it (`CallbackView` in OpenAPI; the body
/// itself is not exposed here). One declaration serves both: times are epoch milliseconds
/// here and RFC 3339 on the wire, and the API cuts `remote_addr` to its network before
/// serializing for a reader without `pii` (`http::views::render_callback`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
#[schema(as = CallbackView, description = "One journaled callback delivery, accepted or not.")]
pub struct CallbackRecord {
    pub id: i64,
    pub kind: String,
    pub biz_id: Option<String>,
    pub verified: bool,
    pub outcome: String,
    pub reason: Option<String>,
    #[serde(serialize_with = "wire::rfc3339")]
    #[schema(value_type = String)]
    pub received_at: i64,
    /// The TCP peer, and the client a trusted proxy named (`203.0.113.7 via 10.0.0.2`);
    /// cut to its network (`203.0.113.***`) without the `pii` scope.
    pub remote_addr: Option<String>,
    pub content_type: Option<String>,
    pub body_sha256: String,
    pub body_len: i64,
    /// Which configured API secret verified the sign: `current`, or `previous-N` (the N-th of
    /// `megvii.previous_secrets`); null when not verified.
    pub key_id: Option<String>,
    /// When `replay` stored this refused delivery (RFC 3339; its outcome is then `replayed`).
    #[serde(
        serialize_with = "wire::rfc3339_opt",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>)]
    pub replayed_at: Option<i64>,
}

/// How the records the API serializes as they are write their epoch-millisecond times.
mod wire {
    use serde::Serializer;

    pub fn rfc3339<S: Serializer>(ms: &i64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&crate::clock::rfc3339(*ms))
    }

    pub fn rfc3339_opt<S: Serializer>(ms: &Option<i64>, s: S) -> Result<S::Ok, S::Error> {
        match ms {
            Some(ms) => rfc3339(ms, s),
            None => s.serialize_none(),
        }
    }
}

/// A refused delivery whose body was kept, as replay reads it.
#[derive(Clone)]
pub struct RefusedDelivery {
    pub id: i64,
    pub kind: String,
    pub received_at: i64,
    pub content_type: Option<String>,
    pub body_len: i64,
    /// The body as received (decrypted with the [`Keyring`]); `None` when it cannot be read
    /// and nobody vouched for it (see [`Keyring`]'s module: `store/encrypted.rs`).
    pub body: Option<Vec<u8>>,
}

impl std::fmt::Debug for RefusedDelivery {
    // The body holds identity data: only its size is printable.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RefusedDelivery")
            .field("id", &self.id)
            .field("kind", &self.kind)
            .field("body_len", &self.body_len)
            .finish_non_exhaustive()
    }
}

/// A follow-up to create or keep for a biz_id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewJob {
    pub next_at: i64,
    pub window_ends_at: i64,
    pub return_image: i32,
}

/// What a signed delivery means for the follow-up job of its biz_id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobEffect {
    /// Leave any job as it is.
    Keep,
    /// The result is final and no images are wanted: a pending job becomes `none`.
    CancelPending,
    /// Images are wanted (notify never carries them) and the result is final: create a
    /// pending job if none exists, turn a `none` job back to pending, or make a pending job
    /// due sooner (a held-back last call is due now that its answer is known to be final).
    Ensure(NewJob),
}

/// A job leased by one worker until `lease_until`.
#[derive(Debug, Clone, PartialEq)]
pub struct LeasedJob {
    pub biz_id: String,
    pub calls_used: i32,
    pub next_at: i64,
    pub window_ends_at: i64,
    pub return_image: i32,
    pub lease_until: i64,
    /// The record's status rank when leased (0 when nothing is known): what the schedule
    /// knows about the flow when a call teaches nothing new.
    pub known_rank: i32,
}

/// How a leased job ends its turn.
#[derive(Debug, Clone, PartialEq)]
pub enum JobUpdate {
    /// Stay pending; try again at `next_at`.
    Retry {
        next_at: i64,
        last_error: Option<String>,
    },
    /// Leave the pending state for good.
    Finish {
        state: FetchState,
        last_error: Option<String>,
    },
}

/// An image decoded from a result: a get_result answer, or a signed callback that carried one.
#[derive(Clone)]
pub struct NewImage {
    pub name: String,
    pub jpeg: Vec<u8>,
}

/// Filters for [`ApiStore::list`]. Newest first by (`created_at`, `biz_id`).
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    pub biz_no: Option<String>,
    pub status: Option<String>,
    /// Only records created at or after this time.
    pub since: Option<i64>,
    pub limit: i64,
    /// Keyset cursor: records strictly older than this (`created_at`, `biz_id`).
    pub after: Option<(i64, String)>,
}

#[derive(Debug, Clone, Default)]
pub struct CallbackQuery {
    pub biz_id: Option<String>,
    pub verified: Option<bool>,
    pub limit: i64,
    /// Keyset cursor: rows with a smaller id.
    pub before_id: Option<i64>,
}

/// One disclosure of identity data, for the `pii_access` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessEntry {
    /// [`crate::config::ApiToken::fingerprint`]: never the token itself.
    pub token_fp: String,
    /// The route template, e.g. `GET /api/v1/verifications/{biz_id}`.
    pub route: String,
    pub biz_id: Option<String>,
    pub accessed_at: i64,
}

/// What retention removes: data older than each cutoff (epoch ms); `None` keeps it forever.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PurgePlan {
    /// Raw results and images of verifications created before this time.
    pub results_before: Option<i64>,
    /// Bodies of journal rows received before this time.
    pub journal_before: Option<i64>,
    /// Refused journal rows (outcome `rejected`) received before this time, deleted whole.
    pub refused_before: Option<i64>,
    /// Console audit rows written before this time, deleted.
    pub console_audit_before: Option<i64>,
    /// Push events created before this time, deleted with their deliveries and attempts
    /// when published and no delivery of theirs is pending.
    pub push_events_before: Option<i64>,
    /// Count only; change nothing.
    pub dry_run: bool,
    /// Stamped into `purged_at`.
    pub now: i64,
}

/// How much a purge removed (or, dry, would remove).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PurgeCounts {
    /// Verifications whose raw result or image list was cleared.
    pub results: u64,
    pub images: u64,
    /// Journal rows whose body was emptied.
    pub journal_bodies: u64,
    /// Refused journal rows deleted.
    pub refused: u64,
    /// Console audit rows deleted.
    pub console_audit: u64,
    /// Push events deleted (with their deliveries and attempts).
    pub push_events: u64,
}

// ---- the store's parts, by caller (see the module header) ----

/// The database itself: what startup, the `migrate` command and `/readyz` need.
#[async_trait]
pub trait Database: Send + Sync + 'static {
    /// Which engine, for logs and metrics: "postgres" or "sqlite".
    fn engine(&self) -> &'static str;

    /// Applies pending migrations.
    async fn migrate(&self) -> StoreResult<()>;

    /// Answers when the database can serve a trivial query.
    async fn ping(&self) -> StoreResult<()>;

    /// Closes the pool: waits for checked-out connections to come back, then closes them.
    /// Every later call answers [`StoreError::Unavailable`]. Used at shutdown, and by tests
    /// that need storage to go away.
    async fn close(&self);
}

/// FaceID's deliveries: the callback routes (`http/callbacks.rs`).
#[async_trait]
pub trait CallbackStore: Send + Sync + 'static {
    /// Journals a delivery that was refused (`outcome = rejected`). Returns the journal id.
    async fn journal_rejected(&self, entry: &NewCallback) -> StoreResult<i64>;

    /// In one transaction: merge a verified result, journal the delivery (`stored` or
    /// `duplicate`), and apply `job` to the follow-up. Returns what the merge did and the
    /// record as stored afterwards. With group commit (`ConnectOptions::group_commit`) the
    /// transaction may be shared with concurrent calls; `Ok` still means it committed, and the
    /// record is the one this call's own writes left. Takes the delivery and the result by
    /// value: group commit queues them for its writer, which would otherwise copy them.
    async fn accept_signed(
        &self,
        entry: NewCallback,
        result: IncomingResult,
        job: JobEffect,
    ) -> StoreResult<(MergeOutcome, Verification)>;

    /// In one transaction for an unsigned return GET: journal it (`pending`), create the
    /// record as PENDING if unknown (keeping any existing one), and create a pending job if
    /// the biz_id has none and its record does not already hold a final result (status rank
    /// 3). An existing job is never reset, so its budget is never refilled.
    async fn accept_return_get(
        &self,
        entry: &NewCallback,
        biz_id: &str,
        job: NewJob,
    ) -> StoreResult<Verification>;

    /// In one transaction: stores (or replaces) `images` of an existing record and updates
    /// its image list, as [`FollowUpStore::save_fetched`] does for a fetched result. For the
    /// images a signed callback carried, cut out of the result before it was stored.
    async fn save_images(&self, biz_id: &str, images: &[NewImage], now: i64) -> StoreResult<()>;
}

/// The merchant API (`http/api.rs` and the manual fetch and RAW routes): records, the
/// journal, images, the access log, and follow-ups asked for by hand.
#[async_trait]
pub trait ApiStore: Send + Sync + 'static {
    async fn get(&self, biz_id: &str) -> StoreResult<Option<Verification>>;

    async fn list(&self, query: &ListQuery) -> StoreResult<Vec<Verification>>;

    async fn callbacks(&self, query: &CallbackQuery) -> StoreResult<Vec<CallbackRecord>>;

    /// A stored image's JPEG bytes.
    async fn image(&self, biz_id: &str, name: &str) -> StoreResult<Option<Vec<u8>>>;

    /// Appends disclosures to the access log, all or none (one transaction).
    async fn record_access(&self, entries: &[AccessEntry]) -> StoreResult<()>;

    /// The access log for `biz_id` (or all of it), oldest first, at most `limit` rows.
    async fn access_log(&self, biz_id: Option<&str>, limit: i64) -> StoreResult<Vec<AccessEntry>>;

    /// Makes the job pending and due at `job.next_at` (creating it if needed), without
    /// touching `calls_used`. Returns the resulting fetch info.
    async fn schedule_fetch(&self, biz_id: &str, job: NewJob, now: i64) -> StoreResult<FetchInfo>;

    /// In one transaction for a follow-up asked through the API (a manual fetch of a biz_id
    /// we have not seen, or a RAW token): create the record as PENDING with `biz_no` if the
    /// key is unknown (an existing record is kept; only a missing biz_no is filled in), and
    /// make its job pending and due at `job.next_at` as [`ApiStore::schedule_fetch`] does,
    /// without touching `calls_used`. Returns the record as stored afterwards.
    async fn request_fetch(
        &self,
        biz_id: &str,
        biz_no: Option<&str>,
        job: NewJob,
        now: i64,
    ) -> StoreResult<Verification>;
}

/// The follow-up worker (`fetcher`): leases, the budget, and what get_result answered.
#[async_trait]
pub trait FollowUpStore: Send + Sync + 'static {
    /// Leases up to `limit` pending jobs due at `now` whose lease is free or lapsed, for
    /// `owner` until `lease_until`. Replicas on PostgreSQL skip each other's rows.
    async fn lease_due_jobs(
        &self,
        owner: &str,
        now: i64,
        lease_until: i64,
        limit: i64,
    ) -> StoreResult<Vec<LeasedJob>>;

    /// Spends one call of the budget, in one conditional statement: succeeds only while
    /// `owner` holds a lease that lasts beyond both `now` and `hold_until` (when the call
    /// must have ended by), the job is pending, `calls_used < max_calls` and `now` is before
    /// the window's end. Returns the new `calls_used`, or `None` when refused (nothing
    /// counted).
    async fn reserve_call(
        &self,
        biz_id: &str,
        owner: &str,
        now: i64,
        hold_until: i64,
        max_calls: i32,
    ) -> StoreResult<Option<i32>>;

    /// Moves `owner`'s lease on a pending job to `lease_until`, only while that lease still
    /// lasts beyond `valid_beyond` (so nobody else can have leased the job meanwhile). Returns
    /// whether it did: a worker late between counting its call and making it keeps its call
    /// instead of losing it.
    async fn extend_lease(
        &self,
        biz_id: &str,
        owner: &str,
        valid_beyond: i64,
        lease_until: i64,
    ) -> StoreResult<bool>;

    /// Ends `owner`'s turn on a job (clearing the lease). No-op if the lease was lost.
    async fn update_job(
        &self,
        biz_id: &str,
        owner: &str,
        now: i64,
        update: &JobUpdate,
    ) -> StoreResult<()>;

    /// In one transaction: end `owner`'s turn as [`FollowUpStore::update_job`] does, after a
    /// call that brought no result to store, and log that call (`error`, with `code`) in the
    /// call log.
    async fn end_call(
        &self,
        biz_id: &str,
        owner: &str,
        now: i64,
        update: &JobUpdate,
        code: &str,
    ) -> StoreResult<()>;

    /// In one transaction: merge a fetched result, store its images (even when the merge
    /// is `Unchanged`: a signed notify may already hold the result, the fetch was for the
    /// images), log the call (`result`, with the status answered) in the call log, and end
    /// `owner`'s turn on the job as [`FollowUpStore::update_job`] does. `now` stamps the rows.
    async fn save_fetched(
        &self,
        owner: &str,
        result: &IncomingResult,
        images: &[NewImage],
        update: &JobUpdate,
        now: i64,
    ) -> StoreResult<MergeOutcome>;
}

/// Replay of refused deliveries (`replay.rs`: the `replay` command and its API route).
#[async_trait]
pub trait ReplayStore: Send + Sync + 'static {
    /// Up to `limit` refused deliveries of the signed routes (notify, return POST) with id
    /// above `after_id`, received at or after `since` (all when `None`), whose body was kept
    /// whole as far as the database can tell ([`sql::REFUSED_DELIVERIES`]), oldest first. A
    /// body that cannot be read is `None` when the delivery was not verified, an error
    /// otherwise (`store/encrypted.rs` says why).
    async fn refused_deliveries(
        &self,
        after_id: i64,
        since: Option<i64>,
        limit: i64,
    ) -> StoreResult<Vec<RefusedDelivery>>;

    /// In one transaction, for a refused delivery that now verifies: mark journal row `id`
    /// `replayed` (verified by `key_id`, about the result's biz_id, at `now`) — only if it is
    /// still `rejected` —, merge `result` under the usual rule, store the `images` cut out of
    /// it (as [`CallbackStore::save_images`] does) and apply `job`. Returns what the merge
    /// did and the record afterwards, or `None` (nothing written) when the row was no longer
    /// `rejected`: another replay got there first.
    async fn accept_replayed(
        &self,
        id: i64,
        key_id: &str,
        result: &IncomingResult,
        images: &[NewImage],
        job: JobEffect,
        now: i64,
    ) -> StoreResult<Option<(MergeOutcome, Verification)>>;
}

/// Maintenance (`retention.rs`, the `purge` and `reencrypt` commands).
#[async_trait]
pub trait MaintenanceStore: Send + Sync + 'static {
    /// Applies retention in one transaction: clears `result` and `image_names` (stamping
    /// `purged_at`) and deletes the images of verifications created before
    /// `results_before`; deletes refused journal rows received before `refused_before`;
    /// empties the bodies of (the remaining) journal rows received before `journal_before`
    /// (keeping their metadata and `body_sha256`); deletes console audit rows written before
    /// `console_audit_before`; deletes push events created before `push_events_before` that
    /// are published and have no pending delivery, with their deliveries and attempts (a
    /// delivery still retrying, or waiting on a disabled endpoint, keeps its event). Status,
    /// liveness, confidence and times are kept. Already purged data is not counted again. With `dry_run`, only counts.
    async fn purge(&self, plan: &PurgePlan) -> StoreResult<PurgeCounts>;

    /// Rewrites every stored result, image and journal body that is not in the current form
    /// (an old key, or plaintext) with the current key — or in clear when no key is set,
    /// which is how encryption is turned off. Each rewrite is a compare-and-swap, so a value
    /// changed meanwhile (a merge, a purge) is left to its writer. Safe to re-run: values
    /// already current are skipped. A journal body of an unverified delivery that cannot be
    /// read is left as it is and counted (`unreadable_journal_bodies`); any other value that
    /// cannot be read stops it with [`StoreError::Decrypt`]. With `dry_run`, only counts.
    async fn reencrypt(&self, dry_run: bool) -> StoreResult<ReencryptCounts>;
}

/// A console session to store: never the session id nor the token, only a hash of the one
/// and a fingerprint of the other.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSession {
    /// Hex SHA-256 of the session id the cookie carries.
    pub id_hash: String,
    /// [`crate::config::ApiToken::fingerprint`] of the token that signed in.
    pub token_fp: String,
    pub created_at: i64,
    /// Absolute expiry.
    pub expires_at: i64,
}

/// A live console session, as [`ConsoleStore::touch_session`] finds it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct SessionRecord {
    pub token_fp: String,
    pub created_at: i64,
    pub last_seen_at: i64,
    pub expires_at: i64,
}

/// One line of the console's audit trail. `detail` is a short code, never request content.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ConsoleEvent {
    pub at: i64,
    pub event: String,
    pub token_fp: Option<String>,
    pub remote_addr: Option<String>,
    pub biz_id: Option<String>,
    pub detail: Option<String>,
}

/// One get_result call from the call log: `outcome` is `result` (then `detail` is the status
/// answered) or `error` (then `detail` is the fetcher's error code).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct CallLogEntry {
    pub call_no: i32,
    pub called_at: i64,
    pub outcome: String,
    pub detail: Option<String>,
}

/// The console's search: every filter optional, bounded by `limit`, newest first by
/// (`created_at`, `biz_id`).
#[derive(Debug, Clone, Default)]
pub struct SearchQuery {
    pub biz_id: Option<String>,
    pub biz_no: Option<String>,
    pub status: Option<String>,
    /// Created at or after (epoch ms).
    pub from: Option<i64>,
    /// Created before (epoch ms).
    pub until: Option<i64>,
    pub limit: i64,
    /// Keyset cursor: records strictly older than this (`created_at`, `biz_id`).
    pub after: Option<(i64, String)>,
}

/// A count in a time bucket (`bucket` is its start, epoch ms).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct BucketCount {
    pub bucket: i64,
    pub key: String,
    pub count: i64,
}

/// A count by key.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct KeyCount {
    pub key: String,
    pub count: i64,
}

/// Follow-up jobs in one state.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct FollowUpCount {
    pub state: String,
    pub jobs: i64,
    /// get_result calls spent by these jobs together.
    pub calls_used: i64,
    /// Jobs with at most one call left.
    pub last_call: i64,
}

/// What the console's overview shows for one window.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OverviewCounts {
    /// Verifications created in the window, by bucket and status.
    pub outcomes: Vec<BucketCount>,
    /// Final verifications (status rank 3) created in the window, by liveness (`none` when
    /// absent).
    pub liveness: Vec<KeyCount>,
    /// Refused deliveries received in the window, by reason (most frequent first, at most 20).
    pub refusals: Vec<KeyCount>,
    /// Every follow-up job, by state (not windowed: a job's state is now).
    pub followups: Vec<FollowUpCount>,
}

/// Deliveries since a moment: how many verified, and how many were refused for a sign that
/// did not match (what a wrong `megvii.api_secret` looks like).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeliveryCounts {
    pub verified: i64,
    pub sign_mismatch: i64,
}

/// The operator console (`console/`): its sessions and audit trail, the overview's counts,
/// search, and the get_result call log of a verification. Reads of records and the journal
/// go through [`ApiStore`], like the API's.
#[async_trait]
pub trait ConsoleStore: Send + Sync + 'static {
    async fn create_session(&self, session: &NewSession) -> StoreResult<()>;

    /// The session whose id hashes to `id_hash`, if it is neither past its absolute expiry
    /// (`expires_at > now`) nor idle since `idle_cutoff` (`last_seen_at > idle_cutoff`); its
    /// `last_seen_at` becomes `now`. One conditional statement: an expired session is never
    /// revived.
    async fn touch_session(
        &self,
        id_hash: &str,
        now: i64,
        idle_cutoff: i64,
    ) -> StoreResult<Option<SessionRecord>>;

    /// Sign-out. Returns whether a session was deleted.
    async fn delete_session(&self, id_hash: &str) -> StoreResult<bool>;

    /// Deletes the sessions that expired (absolute or idle). Returns how many.
    async fn purge_sessions(&self, now: i64, idle_cutoff: i64) -> StoreResult<u64>;

    async fn audit(&self, event: &ConsoleEvent) -> StoreResult<()>;

    /// The audit trail, newest first.
    async fn audit_log(&self, limit: i64) -> StoreResult<Vec<ConsoleEvent>>;

    /// The overview's counts for everything since `since`, verifications bucketed by
    /// `bucket_ms`; `max_calls` is the budget per job ([`FollowUpCount::last_call`]).
    async fn overview(
        &self,
        since: i64,
        bucket_ms: i64,
        max_calls: i32,
    ) -> StoreResult<OverviewCounts>;

    /// Deliveries since `since`; `mismatch_reason` is the journal's reason for a sign that
    /// does not match.
    async fn deliveries(&self, since: i64, mismatch_reason: &str) -> StoreResult<DeliveryCounts>;

    async fn search(&self, query: &SearchQuery) -> StoreResult<Vec<Verification>>;

    /// The get_result calls made for `biz_id`, oldest first, at most `limit`.
    async fn calls(&self, biz_id: &str, limit: i64) -> StoreResult<Vec<CallLogEntry>>;
}

/// The push dispatcher (`push::dispatcher`): publication, leases, attempts.
#[async_trait]
pub trait PushStore: Send + Sync + 'static {
    /// In one transaction, for up to `limit` unpublished events (oldest first): gives each
    /// the next position (publishers take turns on one counter, so positions become visible
    /// in order, without gaps) and, with `fan_out`, a pending delivery due at `now` for every
    /// enabled endpoint subscribed to its type. Returns how many were published.
    async fn publish_events(&self, now: i64, fan_out: bool, limit: i64) -> StoreResult<u64>;

    /// Leases up to `limit` due pending deliveries of enabled endpoints whose lease is free or
    /// lapsed, for `owner` until `lease_until`. Replicas on PostgreSQL skip each other's rows.
    async fn lease_deliveries(
        &self,
        owner: &str,
        now: i64,
        lease_until: i64,
        limit: i64,
    ) -> StoreResult<Vec<LeasedDelivery>>;

    /// An endpoint with its secrets, for signing.
    async fn dispatch_endpoint(&self, id: &str) -> StoreResult<Option<Endpoint>>;

    /// In one transaction: records the attempt (unless [`NextStep::Skip`]), ends `owner`'s
    /// turn on the delivery as `report.next` says (a no-op when the lease was lost), and
    /// updates the endpoint's health: a success ends its failing streak, a failure starts
    /// one, a 410 disables it, and a streak older than `disable_after_ms` disables it.
    /// Returns whether this disabled the endpoint.
    async fn record_attempt(&self, owner: &str, report: &AttemptReport) -> StoreResult<bool>;

    async fn push_gauges(&self) -> StoreResult<PushGauges>;
}

/// Reading the outbox: the pull API, the event stream, the dispatcher (rendering `data`).
#[async_trait]
pub trait EventStore: Send + Sync + 'static {
    /// Published events with a position above `after`, in publication order.
    async fn events_after(&self, after: i64, limit: i64) -> StoreResult<Vec<Event>>;

    async fn event(&self, id: &str) -> StoreResult<Option<Event>>;

    /// What a `callback.refused` event reports; `None` when the journal row is gone (retention).
    async fn refusal(&self, event: &Event) -> StoreResult<Option<RefusalSummary>>;
}

/// The admin API's endpoints (`http/push.rs`), and what the operator console shows of them.
#[async_trait]
pub trait EndpointStore: Send + Sync + 'static {
    /// Registers an endpoint, unless `max` are registered already (`None`).
    async fn create_endpoint(
        &self,
        endpoint: &NewEndpoint,
        max: i64,
    ) -> StoreResult<Option<Endpoint>>;

    /// Every endpoint (at most `limit`), oldest first.
    async fn endpoints(&self, limit: i64) -> StoreResult<Vec<Endpoint>>;

    async fn endpoint(&self, id: &str) -> StoreResult<Option<Endpoint>>;

    /// Applies `patch` at `now`; `None` when there is no such endpoint.
    async fn update_endpoint(
        &self,
        id: &str,
        patch: &EndpointPatch,
        now: i64,
    ) -> StoreResult<Option<Endpoint>>;

    /// Removes the endpoint and its deliveries (its attempts stay, as history).
    async fn delete_endpoint(&self, id: &str) -> StoreResult<bool>;

    /// The current secret becomes the previous one (signing beside `secret` until
    /// `previous_expires_at`) and `secret` the current one.
    async fn rotate_secret(
        &self,
        id: &str,
        secret: &str,
        previous_expires_at: i64,
        now: i64,
    ) -> StoreResult<Option<Endpoint>>;

    /// Starts every delivery of the event again, from the first attempt, due at `now`.
    /// `None` when there is no such event; otherwise how many deliveries restart.
    async fn retry_event(&self, id: &str, now: i64) -> StoreResult<Option<u64>>;

    /// Queues every published event of the endpoint's types created at or after `since` for
    /// it again (at most `limit`), from the first attempt. `None` when there is no such
    /// endpoint.
    async fn replay_endpoint(
        &self,
        id: &str,
        since: i64,
        now: i64,
        limit: i64,
    ) -> StoreResult<Option<u64>>;

    /// Deliveries per endpoint by state (the console's panel).
    async fn endpoint_health(&self) -> StoreResult<Vec<EndpointHealth>>;

    /// Push attempts about `biz_id`, oldest first (the console's timeline).
    async fn push_attempts(&self, biz_id: &str, limit: i64) -> StoreResult<Vec<AttemptRecord>>;
}

/// What the HTTP surface holds ([`crate::http::AppState`]): the callback routes, the API,
/// replay's route, the push API, the console and `/readyz`.
pub trait ServingStore:
    Database + CallbackStore + ApiStore + ReplayStore + EndpointStore + EventStore + ConsoleStore
{
}

impl<
    T: Database + CallbackStore + ApiStore + ReplayStore + EndpointStore + EventStore + ConsoleStore,
> ServingStore for T
{
}

/// Every part: what [`connect`] opens, and what `startup` hands out part by part.
pub trait Store: ServingStore + FollowUpStore + MaintenanceStore + DispatchStore {}

impl<T: ServingStore + FollowUpStore + MaintenanceStore + DispatchStore> Store for T {}

/// What the push dispatcher holds: its own part, the outbox, and the records it renders.
pub trait DispatchStore: PushStore + EventStore + ApiStore {}

impl<T: PushStore + EventStore + ApiStore> DispatchStore for T {}

/// Opens the store named by `url` (`sqlite://…` or `postgres://…`), waiting at most
/// `connect_timeout` for a first connection so that a wrong URL fails fast.
pub async fn connect(url: &str, options: &ConnectOptions) -> StoreResult<Arc<dyn Store>> {
    let scheme = url.split(':').next().unwrap_or_default();
    match scheme {
        "sqlite" => Ok(Arc::new(SqliteStore::connect(url, options).await?)),
        "postgres" | "postgresql" => Ok(Arc::new(PgStore::connect(url, options).await?)),
        other => Err(StoreError::UnsupportedUrl(other.to_owned())),
    }
}

/// How to open a store, for both engines.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    pub max_connections: u32,
    pub connect_timeout: std::time::Duration,
    /// SQLite `synchronous` pragma: `full` (default: an ack means durable) or `normal`.
    pub sqlite_synchronous: String,
    /// Batch concurrent [`CallbackStore::accept_signed`] calls into shared transactions
    /// (each caller still answered only after its batch committed). See `group.rs`.
    pub group_commit: bool,
    /// Most deliveries in one group-commit transaction.
    pub group_commit_max: usize,
    /// Encryption at rest: identity data is sealed with the current key (none: kept in
    /// clear), and read back with any of them. Values sealed earlier are refused clearly,
    /// never returned sealed, even when no key is configured.
    pub keys: Keyring,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        Self {
            max_connections: 10,
            connect_timeout: std::time::Duration::from_secs(5),
            sqlite_synchronous: "full".into(),
            group_commit: true,
            group_commit_max: 64,
            keys: Keyring::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_broken_or_ended_session_means_its_connection_was_lost() {
        for code in ["08006", "08003", "57P01", "57P02"] {
            assert!(postgres_connection_lost(code), "{code}");
        }
        for code in [
            "57014", "57P03", "53300", "58030", "22021", "23505", "40P01",
        ] {
            assert!(!postgres_connection_lost(code), "{code}");
        }
        let broken = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        assert!(connection_lost(&sqlx::Error::Io(broken)));
        assert!(connection_lost(&sqlx::Error::Protocol("unexpected".into())));
        for error in [
            sqlx::Error::PoolTimedOut,
            sqlx::Error::PoolClosed,
            sqlx::Error::RowNotFound,
            sqlx::Error::WorkerCrashed,
        ] {
            assert!(!connection_lost(&error), "{error}");
        }
    }

    #[test]
    fn only_connectivity_sqlstates_mean_unavailable() {
        for code in [
            "08006", "08001", "53300", "57P01", "57P03", "57014", "58030", "3D000",
        ] {
            assert!(postgres_unavailable(code), "{code}");
        }
        // 22021: a NUL in text; 22P05: untranslatable character; 23514: check violation;
        // 40P01: deadlock; 54000: index row too large. All digits or not, none is an outage.
        for code in [
            "22021", "22P05", "23505", "23514", "40P01", "40001", "54000", "XX000",
        ] {
            assert!(!postgres_unavailable(code), "{code}");
        }
    }

    #[test]
    fn only_availability_result_codes_mean_unavailable_on_sqlite() {
        // BUSY, BUSY_SNAPSHOT (517), IOERR_WRITE (778), FULL, CANTOPEN.
        for code in [5, 517, 778, 13, 14] {
            assert!(sqlite_unavailable(code), "{code}");
        }
        // CONSTRAINT, CONSTRAINT_CHECK (275), CONSTRAINT_TRIGGER (1811), MISMATCH, TOOBIG.
        for code in [19, 275, 1811, 20, 18] {
            assert!(!sqlite_unavailable(code), "{code}");
        }
    }
}
