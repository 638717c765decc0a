//! The records of pushing ([`crate::push`]): endpoints, outbox events, deliveries and
//! attempts, as the store's push parts ([`super::PushStore`], [`super::EndpointStore`],
//! [`super::EventStore`]) take and return them, and the rules of what the outbox holds.
//!
//! The outbox stays compact: an event row names what happened (type, subject, time), never
//! the data; `data` is rendered when the event is sent or read, from the record (or journal
//! row) as it is stored then, by `push::render`. So an event costs the accept path one short
//! insert, and identity data is not copied into one more table.
//!
//! Invariants: endpoint secrets are sealed with the engine's [`super::Keyring`] before they
//! are bound (context `endpoint-secret:<id>`) and opened after they are read; no `Debug` here
//! shows a secret or an endpoint URL beyond its origin.

use super::{CallbackRecord, Keyring, StoreResult};

/// `push_events.type` of the three events.
pub const VERIFICATION_COMPLETED: &str = "verification.completed";
pub const FOLLOWUP_ENDED: &str = "followup.ended";
pub const CALLBACK_REFUSED: &str = "callback.refused";

/// Refusals on one route within one window of this length make one `callback.refused` event
/// (see [`refusal_bucket`]).
pub const REFUSED_WINDOW_MS: i64 = 60_000;

/// The subject of the `callback.refused` event a refusal belongs to: `<kind>:<window start,
/// epoch ms>`. A unique index on it makes the coalescing one `INSERT … ON CONFLICT DO
/// NOTHING`, race-free across replicas. Keyed by route and time only, never by anything a
/// sender controls (a reason can quote a position in the sender's body), so however many
/// forgeries arrive, there are at most three such events a minute.
pub fn refusal_bucket(kind: &str, received_at: i64) -> String {
    let window = received_at.div_euclid(REFUSED_WINDOW_MS) * REFUSED_WINDOW_MS;
    format!("{kind}:{window}")
}

/// The window start a refusal bucket names.
pub fn bucket_window(subject: &str) -> Option<i64> {
    subject.rsplit(':').next()?.parse().ok()
}

/// A new endpoint, as the admin API creates it.
#[derive(Clone)]
pub struct NewEndpoint {
    pub id: String,
    pub url: String,
    /// Event type names, sorted, de-duplicated.
    pub events: Vec<String>,
    pub include_pii: bool,
    pub description: Option<String>,
    /// `whsec_…`, in clear (the store seals it).
    pub secret: String,
    pub now: i64,
}

/// A stored endpoint, secrets opened.
#[derive(Clone, PartialEq)]
pub struct Endpoint {
    pub id: String,
    pub url: String,
    pub events: Vec<String>,
    pub include_pii: bool,
    pub description: Option<String>,
    pub secret: String,
    pub previous_secret: Option<String>,
    pub previous_expires_at: Option<i64>,
    pub disabled_at: Option<i64>,
    pub disabled_reason: Option<String>,
    pub failing_since: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl Endpoint {
    /// Whether events of `kind` go to this endpoint.
    pub fn wants(&self, kind: &str) -> bool {
        self.events.iter().any(|e| e == kind)
    }
}

impl std::fmt::Debug for Endpoint {
    // The secrets sign pushes, and the URL's path and query may hold the merchant's tokens.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("id", &self.id)
            .field("events", &self.events)
            .field("include_pii", &self.include_pii)
            .field("disabled_at", &self.disabled_at)
            .finish_non_exhaustive()
    }
}

/// What `PATCH /api/v1/endpoints/{id}` changes (`None`: keep).
#[derive(Debug, Clone, Default)]
pub struct EndpointPatch {
    pub url: Option<String>,
    pub events: Option<Vec<String>>,
    pub include_pii: Option<bool>,
    /// `Some(None)` clears it.
    pub description: Option<Option<String>>,
    /// `true` re-enables (clearing the reason and the failing streak); `false` disables.
    pub enabled: Option<bool>,
}

/// One outbox row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Write order (not commit order).
    pub seq: i64,
    /// `evt_…`: the `webhook-id` of every attempt of every delivery of this event.
    pub id: String,
    pub kind: String,
    /// The biz_id, or for `callback.refused` the refusal bucket.
    pub subject: String,
    /// `callback.refused`: the journal row of the refusal that opened the bucket.
    pub journal_id: Option<i64>,
    pub created_at: i64,
    /// Publication order (gap-free, in commit order): the cursor of the pull API and the SSE
    /// stream. `None` until the dispatcher publishes it.
    pub position: Option<i64>,
}

/// A delivery leased by one dispatcher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeasedDelivery {
    pub id: i64,
    pub endpoint_id: String,
    /// Attempts made before this one.
    pub attempts: i32,
    pub event: Event,
}

/// What the dispatcher decided after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextStep {
    /// 2xx: done.
    Delivered,
    /// Try again at this time.
    RetryAt(i64),
    /// The schedule is spent: the delivery is `failed` (an API retry starts it again).
    GiveUp,
    /// 410 Gone: the endpoint is disabled, the delivery `failed`.
    Gone,
    /// The endpoint is gone or disabled: the delivery is left pending, untried.
    Skip,
}

impl NextStep {
    pub fn outcome(self) -> &'static str {
        match self {
            Self::Delivered => "delivered",
            Self::RetryAt(_) => "retry",
            Self::GiveUp => "gave_up",
            Self::Gone => "gone",
            Self::Skip => "skipped",
        }
    }
}

/// One attempt, as the dispatcher reports it.
#[derive(Clone)]
pub struct AttemptReport {
    pub delivery_id: i64,
    pub event_seq: i64,
    pub endpoint_id: String,
    /// 1-based.
    pub attempt: i32,
    pub at: i64,
    pub status: Option<i32>,
    pub latency_ms: i64,
    /// `HTTP 503`, `timeout`, …
    pub code: String,
    /// The first KiB of the answer.
    pub answer: Vec<u8>,
    pub next: NextStep,
    /// `push.disable_after`, in ms.
    pub disable_after_ms: i64,
}

impl std::fmt::Debug for AttemptReport {
    // The answer is whatever the endpoint sent back: keep it out of any output.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AttemptReport")
            .field("delivery_id", &self.delivery_id)
            .field("attempt", &self.attempt)
            .field("code", &self.code)
            .field("next", &self.next)
            .finish_non_exhaustive()
    }
}

/// One recorded attempt, with its event (the console's timeline of a biz_id).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct AttemptRecord {
    pub event_id: String,
    pub event_type: String,
    pub endpoint_id: String,
    pub attempt: i32,
    pub at: i64,
    pub status: Option<i32>,
    pub latency_ms: i64,
    pub outcome: String,
    pub code: String,
}

/// Deliveries of one endpoint by state (the console's "push deliveries by endpoint").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointHealth {
    pub endpoint_id: String,
    pub pending: i64,
    /// Pending deliveries whose last attempt failed (retrying).
    pub failing: i64,
    /// Deliveries that gave up.
    pub failed: i64,
    pub delivered: i64,
    pub disabled_at: Option<i64>,
    pub disabled_reason: Option<String>,
    pub failing_since: Option<i64>,
}

/// What a `callback.refused` event reports: the refusal that opened its bucket, and how many
/// refusals on that route the window holds.
#[derive(Debug, Clone, PartialEq)]
pub struct RefusalSummary {
    pub first: CallbackRecord,
    pub window_start: i64,
    pub refused_in_window: i64,
}

/// The gauges the dispatcher samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PushGauges {
    /// Events not yet published.
    pub unpublished: i64,
    /// Deliveries pending (due or waiting for a retry).
    pub pending: i64,
    pub endpoints_disabled: i64,
}

/// A `push_events` row.
#[derive(sqlx::FromRow)]
pub(super) struct EventRow {
    seq: i64,
    id: String,
    kind: String,
    subject: String,
    journal_id: Option<i64>,
    created_at: i64,
    position: Option<i64>,
}

impl From<EventRow> for Event {
    fn from(row: EventRow) -> Self {
        Self {
            seq: row.seq,
            id: row.id,
            kind: row.kind,
            subject: row.subject,
            journal_id: row.journal_id,
            created_at: row.created_at,
            position: row.position,
        }
    }
}

/// A delivery as `lease_deliveries` returns it.
#[derive(sqlx::FromRow)]
pub(super) struct LeaseDeliveryRow {
    id: i64,
    endpoint_id: String,
    attempts: i32,
    event_seq: i64,
    event_id: String,
    event_type: String,
    subject: String,
    journal_id: Option<i64>,
    event_created_at: i64,
    position: Option<i64>,
}

impl From<LeaseDeliveryRow> for LeasedDelivery {
    fn from(row: LeaseDeliveryRow) -> Self {
        Self {
            id: row.id,
            endpoint_id: row.endpoint_id,
            attempts: row.attempts,
            event: Event {
                seq: row.event_seq,
                id: row.event_id,
                kind: row.event_type,
                subject: row.subject,
                journal_id: row.journal_id,
                created_at: row.event_created_at,
                position: row.position,
            },
        }
    }
}

/// A `push_endpoints` row, secrets as stored (sealed when a key is set). No `Debug`.
#[derive(sqlx::FromRow)]
pub(super) struct EndpointRow {
    id: String,
    url: String,
    events: String,
    include_pii: bool,
    description: Option<String>,
    secret: String,
    previous_secret: Option<String>,
    previous_expires_at: Option<i64>,
    disabled_at: Option<i64>,
    disabled_reason: Option<String>,
    failing_since: Option<i64>,
    created_at: i64,
    updated_at: i64,
}

impl EndpointRow {
    /// The endpoint, its secrets opened with `keys`.
    pub(super) fn open(self, keys: &Keyring) -> StoreResult<Endpoint> {
        let context = secret_context(&self.id);
        Ok(Endpoint {
            secret: keys.open_text(self.secret, &context)?,
            previous_secret: self
                .previous_secret
                .map(|s| keys.open_text(s, &context))
                .transpose()?,
            events: split_events(&self.events),
            id: self.id,
            url: self.url,
            include_pii: self.include_pii,
            description: self.description,
            previous_expires_at: self.previous_expires_at,
            disabled_at: self.disabled_at,
            disabled_reason: self.disabled_reason,
            failing_since: self.failing_since,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

/// A row of [`super::sql::ENDPOINT_HEALTH`].
#[derive(sqlx::FromRow)]
pub(super) struct HealthRow {
    id: String,
    pending: i64,
    failing: i64,
    failed: i64,
    delivered: i64,
    disabled_at: Option<i64>,
    disabled_reason: Option<String>,
    failing_since: Option<i64>,
}

impl From<HealthRow> for EndpointHealth {
    fn from(row: HealthRow) -> Self {
        Self {
            endpoint_id: row.id,
            pending: row.pending,
            failing: row.failing,
            failed: row.failed,
            delivered: row.delivered,
            disabled_at: row.disabled_at,
            disabled_reason: row.disabled_reason,
            failing_since: row.failing_since,
        }
    }
}

/// A row of [`super::sql::PUSH_GAUGES`].
#[derive(sqlx::FromRow)]
pub(super) struct GaugesRow {
    unpublished: i64,
    pending: i64,
    endpoints_disabled: i64,
}

impl From<GaugesRow> for PushGauges {
    fn from(row: GaugesRow) -> Self {
        Self {
            unpublished: row.unpublished,
            pending: row.pending,
            endpoints_disabled: row.endpoints_disabled,
        }
    }
}

/// The delivery columns an attempt's [`NextStep`] sets: (state, attempts, next_attempt_at).
pub(super) fn delivery_after(report: &AttemptReport) -> (&'static str, i32, Option<i64>) {
    match report.next {
        NextStep::Delivered => ("delivered", report.attempt, None),
        NextStep::RetryAt(at) => ("pending", report.attempt, Some(at)),
        NextStep::GiveUp | NextStep::Gone => ("failed", report.attempt, None),
        NextStep::Skip => ("pending", report.attempt - 1, Some(report.at)),
    }
}

/// Why a 410 disabled an endpoint.
pub(super) const GONE_REASON: &str = "the endpoint answered 410 Gone";

/// Why a failing streak disabled an endpoint.
pub(super) fn streak_reason(disable_after_ms: i64) -> String {
    format!(
        "no successful delivery for {} (push.disable_after)",
        humantime::format_duration(std::time::Duration::from_millis(
            u64::try_from(disable_after_ms).unwrap_or(0)
        ))
    )
}

/// The context an endpoint's secrets are sealed with.
pub(super) fn secret_context(endpoint_id: &str) -> String {
    format!("endpoint-secret:{endpoint_id}")
}

/// `push_endpoints.events` text.
pub(super) fn join_events(events: &[String]) -> String {
    events.join(",")
}

pub(super) fn split_events(text: &str) -> Vec<String> {
    text.split(',')
        .filter(|e| !e.is_empty())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_on_one_route_share_a_bucket_per_window() {
        let a = refusal_bucket("notify", 1_795_392_000_500);
        let b = refusal_bucket("notify", 1_795_392_059_999);
        let later = refusal_bucket("notify", 1_795_392_060_000);
        let kind = refusal_bucket("return_post", 1_795_392_000_500);
        assert_eq!(a, b);
        assert_ne!(a, later);
        assert_ne!(a, kind);
        assert_eq!(bucket_window(&a), Some(1_795_392_000_000));
    }

    #[test]
    fn event_lists_round_trip() {
        let events = vec!["callback.refused".to_owned(), "followup.ended".into()];
        assert_eq!(split_events(&join_events(&events)), events);
        assert!(split_events("").is_empty());
    }
}
