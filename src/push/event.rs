//! What a push says: event types, event ids, the body envelope, and the rule that coalesces
//! bursts of `callback.refused`.
//!
//! The body of every push (and of every item of `GET /api/v1/events` and the SSE stream) is
//! `{"type": "<event type>", "timestamp": "<RFC 3339>", "data": {…}}`, per the Standard
//! Webhooks convention. `data` is produced by the caller (the verification record as the API
//! renders it, masked unless the endpoint has `include_pii`, for the first two types); this
//! module only wraps it, so the envelope is the same everywhere.
//!
//! Invariants: pure apart from the random event id; the body is built once when the event
//! is written and then sent byte for byte on every attempt (the signature covers those
//! bytes; re-rendering could change them).

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
    /// secret. Bursts are coalesced ([`refusal_opens_event`]).
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

/// `push.refused_window`'s default.
pub const DEFAULT_REFUSED_WINDOW: Duration = Duration::from_secs(60);

/// Whether a refused delivery at `now_ms` writes a new `callback.refused` event, given when
/// the last one with the same refusal code was written. At most one event per code per
/// `window`: a misconfigured secret refusing every callback alerts once a minute, not once
/// per callback. The refusals in between are still journaled, and the next event carries
/// how many there were (`refused_since_previous`, counted from the journal).
pub fn refusal_opens_event(last_event_at: Option<i64>, now_ms: i64, window: Duration) -> bool {
    let window_ms = i64::try_from(window.as_millis()).unwrap_or(i64::MAX);
    last_event_at.is_none_or(|last| now_ms.saturating_sub(last) >= window_ms)
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
    fn refusals_open_at_most_one_event_per_window() {
        let window = DEFAULT_REFUSED_WINDOW;

        assert!(refusal_opens_event(None, 0, window));
        assert!(!refusal_opens_event(Some(0), 59_999, window));
        assert!(refusal_opens_event(Some(0), 60_000, window));
        assert!(
            !refusal_opens_event(Some(i64::MAX), i64::MIN, window),
            "no overflow"
        );
    }
}
