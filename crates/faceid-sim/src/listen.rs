//! `faceid-sim listen`: a local consumer of the receiver's pushes, as a payment provider's
//! CLI offers. It verifies every request per Standard Webhooks (with
//! [`faceid_protocol::webhook`], the same code the receiver signs with, itself checked against
//! the official library), reports one line per request, and answers as told, so the
//! receiver's retries and endpoint disabling can be tried by hand.
//!
//! Answers: a request that does not verify gets 400 (headers missing or malformed) or 401
//! (no signature matches, timestamp outside the window); a verified one gets `fail_status`
//! while fewer than `fail_first` verified requests have arrived, then `status`.
//!
//! Invariants: the secrets never reach the output; what the output repeats from a request
//! (type, id, biz_id) is cut short and stripped of control characters, so one request is one
//! line whatever it holds, and it is labelled `verified=failed` when the signature did not
//! check out.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde_json::Value;

use faceid_protocol::clock::SharedClock;
use faceid_protocol::webhook::{
    DEFAULT_TOLERANCE, EndpointSecret, Verifier, VerifyError, WebhookHeaders,
};

/// Longest text repeated from a request in a report line.
const MAX_SHOWN: usize = 120;

/// How the listener verifies and answers.
#[derive(Debug, Clone)]
pub struct ListenConfig {
    /// The endpoint's secret first, then any previous ones still accepted.
    pub secrets: Vec<EndpointSecret>,
    /// How far `webhook-timestamp` may be from now.
    pub tolerance: Duration,
    /// The answer to verified requests (after the first `fail_first`).
    pub status: StatusCode,
    /// How many verified requests get `fail_status` first.
    pub fail_first: u32,
    pub fail_status: StatusCode,
}

impl ListenConfig {
    pub fn new(secrets: Vec<EndpointSecret>) -> Self {
        Self {
            secrets,
            tolerance: DEFAULT_TOLERANCE,
            status: StatusCode::OK,
            fail_first: 0,
            fail_status: StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

/// What one request was, and what it was answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// Which secret verified it (0: the first), or why it did not verify.
    pub verified: Result<usize, VerifyError>,
    pub event_type: Option<String>,
    /// `webhook-id`.
    pub id: Option<String>,
    /// `data.biz_id`, when the event has one.
    pub biz_id: Option<String>,
    pub answer: StatusCode,
}

impl fmt::Display for Received {
    /// `verified=ok type=… id=… biz_id=… answer=200`, or `verified=failed … reason="…"`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = |v: &Option<String>| v.as_deref().map_or_else(|| "-".to_owned(), clean);
        let verdict = if self.verified.is_ok() {
            "ok"
        } else {
            "failed"
        };
        write!(
            f,
            "verified={verdict} type={} id={} biz_id={} answer={}",
            shown(&self.event_type),
            shown(&self.id),
            shown(&self.biz_id),
            self.answer.as_u16()
        )?;
        match &self.verified {
            Ok(0) => Ok(()),
            Ok(index) => write!(f, " secret=previous#{index}"),
            Err(reason) => write!(f, " reason=\"{reason}\""),
        }
    }
}

/// Whitespace and control characters become `_`, and the text is cut at [`MAX_SHOWN`].
fn clean(text: &str) -> String {
    text.chars()
        .take(MAX_SHOWN)
        .map(|c| {
            if c.is_control() || c.is_whitespace() {
                '_'
            } else {
                c
            }
        })
        .collect()
}

type Report = dyn Fn(&Received) + Send + Sync;

/// The listener: verifies, reports and answers. Cheap to clone.
#[derive(Clone)]
pub struct Listener {
    inner: Arc<Inner>,
}

struct Inner {
    config: ListenConfig,
    verifier: Verifier,
    clock: SharedClock,
    verified_so_far: AtomicU32,
    report: Box<Report>,
}

impl Listener {
    /// `report` is called once per request, before it is answered.
    pub fn new(
        config: ListenConfig,
        clock: SharedClock,
        report: impl Fn(&Received) + Send + Sync + 'static,
    ) -> Self {
        let verifier = Verifier::new(config.secrets.clone()).with_tolerance(config.tolerance);
        Self {
            inner: Arc::new(Inner {
                config,
                verifier,
                clock,
                verified_so_far: AtomicU32::new(0),
                report: Box::new(report),
            }),
        }
    }

    /// Every path and method is a webhook endpoint.
    pub fn router(&self) -> Router {
        Router::new().fallback(receive).with_state(self.clone())
    }

    /// Verifies one request and decides its answer (and reports it).
    pub fn receive(&self, headers: &HeaderMap, body: &[u8]) -> Received {
        let inner = &self.inner;
        let read = WebhookHeaders::read(|name| headers.get(name).and_then(|v| v.to_str().ok()));
        let verified = read.and_then(|h| inner.verifier.verify(&h, body, inner.clock.now_ms()));
        let answer = match &verified {
            Err(e) if e.is_malformed() => StatusCode::BAD_REQUEST,
            Err(_) => StatusCode::UNAUTHORIZED,
            Ok(_) => {
                let earlier = inner.verified_so_far.fetch_add(1, Ordering::SeqCst);
                if earlier < inner.config.fail_first {
                    inner.config.fail_status
                } else {
                    inner.config.status
                }
            }
        };
        let event: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let text = |v: &Value| v.as_str().map(str::to_owned);
        let received = Received {
            verified,
            event_type: text(&event["type"]),
            id: headers
                .get(faceid_protocol::webhook::HEADER_ID)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            biz_id: text(&event["data"]["biz_id"]),
            answer,
        };
        (inner.report)(&received);
        received
    }
}

async fn receive(State(listener): State<Listener>, headers: HeaderMap, body: Bytes) -> StatusCode {
    listener.receive(&headers, &body).answer
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use faceid_protocol::clock::ManualClock;
    use faceid_protocol::webhook::SigningKeys;

    const NOW: i64 = 1_704_067_200_000;
    const BODY: &[u8] =
        br#"{"type":"verification.completed","timestamp":"2024-01-01T00:00:00.000Z","data":{"biz_id":"1704067200,abc"}}"#;

    fn headers(signed: &WebhookHeaders) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in signed.pairs() {
            map.insert(name, value.parse().unwrap());
        }
        map
    }

    fn listener(config: ListenConfig) -> (Listener, Arc<Mutex<Vec<String>>>) {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        let listener = Listener::new(config, Arc::new(ManualClock::new(NOW)), move |r| {
            sink.lock().unwrap().push(r.to_string())
        });
        (listener, lines)
    }

    #[test]
    fn a_verified_event_is_answered_and_reported_on_one_line() {
        let secret = EndpointSecret::generate();
        let (listener, lines) = listener(ListenConfig::new(vec![secret.clone()]));
        let signed = SigningKeys::new(secret).sign("evt_1", NOW, BODY);

        let received = listener.receive(&headers(&signed), BODY);

        assert_eq!(received.answer, StatusCode::OK);
        assert_eq!(
            lines.lock().unwrap().as_slice(),
            ["verified=ok type=verification.completed id=evt_1 biz_id=1704067200,abc answer=200"]
        );
    }

    #[test]
    fn failures_are_answered_400_or_401_and_say_why() {
        let secret = EndpointSecret::generate();
        let (listener, lines) = listener(ListenConfig::new(vec![secret.clone()]));
        let by_stranger = SigningKeys::new(EndpointSecret::generate()).sign("evt_2", NOW, BODY);
        let stale = SigningKeys::new(secret).sign("evt_3", NOW - 10 * 60 * 1000, BODY);

        let unsigned = listener.receive(&HeaderMap::new(), BODY);
        let forged = listener.receive(&headers(&by_stranger), BODY);
        let replayed = listener.receive(&headers(&stale), BODY);

        assert_eq!(unsigned.answer, StatusCode::BAD_REQUEST);
        assert_eq!(forged.answer, StatusCode::UNAUTHORIZED);
        assert_eq!(replayed.answer, StatusCode::UNAUTHORIZED);
        let lines = lines.lock().unwrap();
        assert!(lines[0].ends_with("id=- biz_id=1704067200,abc answer=400 reason=\"the webhook-id header is missing or empty\""), "{}", lines[0]);
        assert!(
            lines[1].starts_with("verified=failed type=verification.completed id=evt_2"),
            "{}",
            lines[1]
        );
        assert!(
            lines[1].ends_with("reason=\"no signature matches\""),
            "{}",
            lines[1]
        );
        assert!(
            lines[2].contains("older than the tolerance"),
            "{}",
            lines[2]
        );
    }

    #[test]
    fn the_first_verified_requests_can_be_failed_on_purpose() {
        let secret = EndpointSecret::generate();
        let config = ListenConfig {
            fail_first: 2,
            status: StatusCode::GONE,
            ..ListenConfig::new(vec![secret.clone()])
        };
        let (listener, _) = listener(config);
        let signed = headers(&SigningKeys::new(secret).sign("evt_1", NOW, BODY));

        let answers: Vec<u16> = (0..4)
            .map(|_| listener.receive(&signed, BODY).answer.as_u16())
            .collect();

        assert_eq!(answers, [503, 503, 410, 410]);
        assert_eq!(
            listener.receive(&HeaderMap::new(), BODY).answer,
            400,
            "unverified requests do not count"
        );
    }

    #[test]
    fn a_previous_secret_verifies_and_is_named() {
        let (current, previous) = (EndpointSecret::generate(), EndpointSecret::generate());
        let (listener, lines) = listener(ListenConfig::new(vec![current, previous.clone()]));

        let received = listener.receive(
            &headers(&SigningKeys::new(previous).sign("e", NOW, BODY)),
            BODY,
        );

        assert_eq!(received.verified, Ok(1));
        assert!(lines.lock().unwrap()[0].ends_with("answer=200 secret=previous#1"));
    }

    #[test]
    fn what_a_request_says_cannot_break_the_line() {
        let secret = EndpointSecret::generate();
        let (listener, lines) = listener(ListenConfig::new(vec![secret]));
        let body = format!(
            r#"{{"type":"a\nverified=ok b","data":{{"biz_id":"{}"}}}}"#,
            "x".repeat(500)
        );

        listener.receive(&HeaderMap::new(), body.as_bytes());

        let line = &lines.lock().unwrap()[0];
        assert!(!line.contains('\n'), "{line}");
        assert!(
            line.starts_with("verified=failed type=a_verified=ok_b id=-"),
            "{line}"
        );
        assert!(line.len() < 400, "{}", line.len());
    }
}
