//! What a push says: event types, event ids, the body envelope, and the rule that coalesces
//! bursts of `callback.refused`.
//!
//! The body of every push (and of every item of `GET /api/v1/events` and the SSE stream) is
//! `{"type": "<event type>", "timestamp": "<RFC 3339>", "data": {…}}`, per the Standard
//! Webhooks convention. For `verification.completed`, `data` is the verification as the API
//! renders it (masked unless the endpoint has `include_pii`), produced where the API's view
//! lives; this module renders the other two types' `data` and wraps every one, so the
//! envelope is the same everywhere.
//!
//! Invariants: pure apart from the random event id. The outbox row holds no `data`: it is
//! rendered (by [`super::render`]) when the event is sent or read, from the record as stored
//! then, so the row written on the accept path stays small. Every attempt of a delivery has
//! the same `webhook-id` and `timestamp`; its `data` is the record's current view (a final
//! result never goes back, but images fetched later or a retention purge show).

use std::time::Duration;

use serde::Serialize;
use serde_json::value::RawValue;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventType {
    /// A final FaceID status is stored, from any source (notify, return, get_result).
    VerificationCompleted,
    /// The follow-up ended without a result: `exhausted`, `expired`, `not_found`, `failed`.
    FollowupEnded,
    /// A callback delivery was refused (bad sign, malformed): alerting on a misconfigured
    /// secret. Bursts are coalesced ([`REFUSED_WINDOW`]).
    CallbackRefused,
}

impl EventType {
    pub const ALL: [Self; 3] = [
        Self::VerificationCompleted,
        Self::FollowupEnded,
        Self::CallbackRefused,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::VerificationCompleted => "verification.completed",
            Self::FollowupEnded => "followup.ended",
            Self::CallbackRefused => "callback.refused",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == text)
    }
}

/// An endpoint's `events` list names a type this build does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown event type {0:?} (known: verification.completed, followup.ended, callback.refused)"
)]
pub struct UnknownEventType(pub String);

/// The event types an endpoint subscribes to: `None` or an empty list means all of them.
/// Duplicates are dropped; the result is sorted.
pub fn parse_filter(names: Option<&[String]>) -> Result<Vec<EventType>, UnknownEventType> {
    let mut types = names
        .unwrap_or_default()
        .iter()
        .map(|name| EventType::parse(name).ok_or_else(|| UnknownEventType(name.clone())))
        .collect::<Result<Vec<_>, _>>()?;
    if types.is_empty() {
        types = EventType::ALL.to_vec();
    }
    types.sort();
    types.dedup();
    Ok(types)
}

/// A fresh event id, `evt_` + 32 hex digits: the `webhook-id` of every attempt of every
/// delivery of the event. Random rather than the row's sequence number, so a reinstalled
/// receiver (a new database) never reuses an id a consumer has already deduplicated.
pub fn new_event_id() -> String {
    format!("evt_{}", uuid::Uuid::new_v4().simple())
}

#[derive(Serialize)]
struct Envelope<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    timestamp: String,
    data: &'a RawValue,
}

/// The event's body: `{"type","timestamp","data"}` with `timestamp` in RFC 3339 (ms).
pub fn body(kind: EventType, at_ms: i64, data: &RawValue) -> String {
    serde_json::to_string(&Envelope {
        kind: kind.as_str(),
        timestamp: crate::clock::rfc3339(at_ms),
        data,
    })
    .expect("a struct of strings and a raw JSON value serializes")
}

/// At most one `callback.refused` event per route (notify, return POST, return GET) per
/// window (fixed windows from the epoch). The decision is one `INSERT … ON CONFLICT DO NOTHING` on the window's
/// bucket in the store (race-free across replicas); the event reports how many refusals its
/// window holds when it is sent.
pub const REFUSED_WINDOW: Duration = Duration::from_millis(crate::store::REFUSED_WINDOW_MS as u64);

/// `data` of `followup.ended`: the follow-up gave up without a result. Holds no identity
/// data (biz_no is the merchant's own order number, shown to every token).
pub fn followup_ended_data(ended: &FollowupEnded<'_>) -> Box<RawValue> {
    serde_json::value::to_raw_value(ended).expect("a struct of strings and numbers serializes")
}

/// What `followup.ended` says.
#[derive(Debug, Clone, Serialize)]
pub struct FollowupEnded<'a> {
    pub biz_id: &'a str,
    pub biz_no: Option<&'a str>,
    /// `exhausted`, `expired`, `not_found` or `failed` (the record's `fetch.state`).
    pub state: &'a str,
    pub calls_used: i32,
    /// The code the record's `fetch.last_error` shows.
    pub last_error: Option<&'a str>,
    /// RFC 3339.
    pub ended_at: String,
}

/// What `callback.refused` says: which kind of delivery was refused and why, never what it
/// carried (the journal row, readable through `GET /api/v1/callbacks`, has the rest).
#[derive(Debug, Clone, Serialize)]
pub struct CallbackRefused<'a> {
    /// `notify`, `return_post` or `return_get`.
    pub kind: &'a str,
    /// Why the first refusal of the window was refused, as the journal says (never the
    /// delivery's content).
    pub reason: Option<&'a str>,
    /// The journal row of the refusal that opened this event.
    pub journal_id: i64,
    /// RFC 3339.
    pub received_at: String,
    /// RFC 3339: the start of the one-minute window this event stands for.
    pub window_start: String,
    /// Refusals on this route in the window, whatever their reason (coalesced into this one
    /// event), as counted when the event was sent.
    pub refused_in_window: i64,
}

/// `data` of `callback.refused`.
pub fn callback_refused_data(refused: &CallbackRefused<'_>) -> Box<RawValue> {
    serde_json::value::to_raw_value(refused).expect("a struct of strings and numbers serializes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_types_round_trip_through_their_names() {
        for t in EventType::ALL {
            assert_eq!(EventType::parse(t.as_str()), Some(t));
        }
        assert_eq!(EventType::parse("verification.Completed"), None);
    }

    #[test]
    fn an_empty_filter_means_every_type_and_unknown_names_are_refused() {
        assert_eq!(parse_filter(None), Ok(EventType::ALL.to_vec()));
        assert_eq!(parse_filter(Some(&[])), Ok(EventType::ALL.to_vec()));
        let names = ["followup.ended".to_owned(), "followup.ended".to_owned()];
        assert_eq!(
            parse_filter(Some(&names)),
            Ok(vec![EventType::FollowupEnded])
        );
        let bad = ["verification.completed".to_owned(), "x.y".to_owned()];
        assert_eq!(
            parse_filter(Some(&bad)),
            Err(UnknownEventType("x.y".into()))
        );
    }

    #[test]
    fn the_body_is_the_envelope_around_data_as_given() {
        let data = RawValue::from_string(r#"{"biz_id":"1,a","status":"OK"}"#.into()).unwrap();

        let text = body(EventType::VerificationCompleted, 1_704_067_200_123, &data);

        assert_eq!(
            text,
            r#"{"type":"verification.completed","timestamp":"2024-01-01T00:00:00.123Z","data":{"biz_id":"1,a","status":"OK"}}"#
        );
    }

    #[test]
    fn event_ids_are_fresh_and_header_safe() {
        let (a, b) = (new_event_id(), new_event_id());

        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        assert!(
            a.starts_with("evt_") && a[4..].bytes().all(|c| c.is_ascii_hexdigit()),
            "{a}"
        );
    }

    #[test]
    fn followup_and_refusal_data_have_their_documented_shape() {
        let ended = followup_ended_data(&FollowupEnded {
            biz_id: "1704067200,abc",
            biz_no: Some("order-1"),
            state: "exhausted",
            calls_used: 3,
            last_error: Some("NOT_FINAL:PROCESSING"),
            ended_at: crate::clock::rfc3339(1_704_067_200_000),
        });
        let refused = callback_refused_data(&CallbackRefused {
            kind: "notify",
            reason: Some("sign does not match"),
            journal_id: 42,
            received_at: crate::clock::rfc3339(1_704_067_200_000),
            window_start: crate::clock::rfc3339(1_704_067_200_000),
            refused_in_window: 17,
        });

        assert_eq!(
            ended.get(),
            r#"{"biz_id":"1704067200,abc","biz_no":"order-1","state":"exhausted","calls_used":3,"last_error":"NOT_FINAL:PROCESSING","ended_at":"2024-01-01T00:00:00.000Z"}"#
        );
        assert_eq!(
            refused.get(),
            r#"{"kind":"notify","reason":"sign does not match","journal_id":42,"received_at":"2024-01-01T00:00:00.000Z","window_start":"2024-01-01T00:00:00.000Z","refused_in_window":17}"#
        );
    }
}
