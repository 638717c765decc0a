//! What an event says: its body (`{"type","timestamp","data"}`), rendered from the outbox row
//! and the record (or journal row) it names, as stored when it is sent or read. The one home
//! of `data` for pushes, the pull API and the stream alike.
//!
//! Invariants: `data` of `verification.completed` is the record exactly as the API renders
//! it ([`VerificationView::render`]), masked unless `pii` (an endpoint's `include_pii`, a
//! token's `pii` scope); the other two types carry no identity data; `timestamp` is the
//! event's own time, so every attempt of one event carries the same one.

use serde_json::value::RawValue;

use super::event::{self, CallbackRefused, EventType, FollowupEnded};
use crate::clock::rfc3339;
use crate::http::views::VerificationView;
use crate::store::{ApiStore, Event, EventStore, StoreResult};

/// The event's body, as pushed and as `GET /api/v1/events` shows it.
pub async fn body<S>(store: &S, event: &Event, pii: bool) -> StoreResult<String>
where
    S: EventStore + ApiStore + ?Sized,
{
    let (kind, data) = data(store, event, pii).await?;
    Ok(match kind {
        Some(kind) => event::body(kind, event.created_at, &data),
        // A type this build does not know (a newer replica wrote it): shown as stored.
        None => serde_json::json!({
            "type": event.kind,
            "timestamp": rfc3339(event.created_at),
            "data": data,
        })
        .to_string(),
    })
}

/// The event's type and `data`.
pub async fn data<S>(
    store: &S,
    event: &Event,
    pii: bool,
) -> StoreResult<(Option<EventType>, Box<RawValue>)>
where
    S: EventStore + ApiStore + ?Sized,
{
    let kind = EventType::parse(&event.kind);
    let data = match kind {
        Some(EventType::VerificationCompleted) => match store.get(&event.subject).await? {
            Some(record) => raw(&VerificationView::render(record, pii)),
            None => subject_only(event),
        },
        Some(EventType::FollowupEnded) => match store.get(&event.subject).await? {
            Some(record) => event::followup_ended_data(&FollowupEnded {
                biz_id: &record.biz_id,
                biz_no: record.biz_no.as_deref(),
                state: record.fetch.state.as_str(),
                calls_used: record.fetch.calls_used,
                last_error: record.fetch.last_error.as_deref(),
                ended_at: rfc3339(event.created_at),
            }),
            None => subject_only(event),
        },
        Some(EventType::CallbackRefused) => match store.refusal(event).await? {
            Some(refusal) => event::callback_refused_data(&CallbackRefused {
                kind: &refusal.first.kind,
                reason: refusal.first.reason.as_deref(),
                journal_id: refusal.first.id,
                received_at: rfc3339(refusal.first.received_at),
                window_start: rfc3339(refusal.window_start),
                refused_in_window: refusal.refused_in_window,
            }),
            // The journal row is gone (retention): say what the outbox row knows.
            None => raw(&serde_json::json!({ "journal_id": event.journal_id })),
        },
        None => raw(&serde_json::json!({})),
    };
    Ok((kind, data))
}

fn raw<T: serde::Serialize>(value: &T) -> Box<RawValue> {
    serde_json::value::to_raw_value(value).expect("views serialize")
}

/// The record an event names no longer exists (it cannot be deleted today; kept for safety).
fn subject_only(event: &Event) -> Box<RawValue> {
    raw(&serde_json::json!({ "biz_id": event.subject }))
}
