//! FaceID's two callbacks: notify_url (`POST /faceid/notify`, server to server) and
//! return_url (`POST` or `GET /faceid/return`, the user's browser), plus the built-in page the
//! browser lands on when no `return.redirect_url` is configured.
//!
//! Invariants:
//! - every delivery is journaled, accepted or not, before we answer; if the journal cannot be
//!   written the answer is 503, never a 2xx. A signed delivery is journaled whole; of one
//!   nobody vouched for (refused, or an unsigned return GET) the journal keeps what
//!   [`super::journal`] allows, always with the full length and sha256;
//! - the journal records the TCP peer, and the client a proxy names in `X-Forwarded-For`
//!   only when `server.trust_forwarded_for` says that proxy is ours;
//! - images a signed callback carried are cut out of the stored result and stored as images,
//!   as get_result's are (the journal keeps the body as received);
//! - the sign is checked over the exact received `data` bytes before anything in `data` is
//!   trusted — with `megvii.api_secret`, then each of `megvii.previous_secrets`, the journal
//!   naming the one that matched by key id —; then the envelope is parsed strictly (length
//!   extension) and the fields leniently: a verified result is never refused for its content;
//! - a 2xx or 303 is sent only after the result (or the pending record and its follow-up job)
//!   is committed; a verified delivery the database refuses for its data (not an outage) is
//!   journaled with its body and answered 500 `not_stored`, never 503;
//! - redirects carry `biz_id`, `biz_no` and `status` only — never identity data — and go only
//!   to the configured URL (no open redirect).

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, RawQuery, State};
use axum::handler::Handler;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::net::SocketAddr;

use super::AppState;
use super::error::{AppError, Result};
use super::extract::decode_callback;
use crate::fetcher::plan;
use crate::protocol::{self, BizId, CallbackResult};
use crate::store::{
    CallbackKind, JobEffect, MergeOutcome, NewCallback, PENDING, StoreError, Verification,
};

/// The callback routes; `return_get_limit` is the tighter per-IP limit of the unsigned
/// return GET ([`super::limit::return_get_layer`]), when configured.
pub fn router(return_get_limit: Option<super::limit::Layer>) -> Router<AppState> {
    let return_route = match return_get_limit {
        Some(limit) => post(return_post).get(return_get.layer(limit)),
        None => post(return_post).get(return_get),
    };
    Router::new()
        .route("/faceid/notify", post(notify))
        .route("/faceid/return", return_route)
        .route("/faceid/done", get(done_page))
}

/// What arrived, for the journal.
struct Delivery {
    kind: CallbackKind,
    received_at: i64,
    remote_addr: Option<String>,
    content_type: Option<String>,
    body: Bytes,
    /// The length the sender declared or sent (the body itself may have been refused).
    body_len: i64,
}

impl Delivery {
    fn new(
        state: &AppState,
        kind: CallbackKind,
        headers: &HeaderMap,
        peer: Option<SocketAddr>,
        body: Bytes,
    ) -> Self {
        let content_type =
            header_text(headers, header::CONTENT_TYPE.as_str()).map(|c| truncate(c, 200));
        let trust_forwarded_for = state.settings.server.trust_forwarded_for;
        Self {
            kind,
            received_at: state.clock.now_ms(),
            remote_addr: remote_addr(headers, peer, trust_forwarded_for),
            content_type,
            body_len: body.len() as i64,
            body,
        }
    }

    /// The journal row; `key_id` names the secret that verified the sign (`None`: not
    /// verified). A verified delivery is FaceID's and kept whole; of any other, the
    /// refused-body quota decides how much is kept.
    fn entry(
        &self,
        state: &AppState,
        biz_id: Option<&str>,
        key_id: Option<&str>,
        reason: Option<String>,
    ) -> NewCallback {
        let body = if key_id.is_some() {
            &self.body[..]
        } else {
            state.refused_quota.keep(&self.body, self.received_at)
        };
        NewCallback {
            kind: self.kind,
            biz_id: biz_id.map(|b| truncate(b, protocol::biz_id::MAX_LEN)),
            verified: key_id.is_some(),
            key_id: key_id.map(str::to_owned),
            reason,
            received_at: self.received_at,
            remote_addr: self.remote_addr.clone(),
            content_type: self.content_type.clone(),
            body_sha256: hex::encode(Sha256::digest(&self.body)),
            body_len: self.body_len,
            body: body.to_vec(),
        }
    }
}

fn header_text<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn truncate(text: &str, max: usize) -> String {
    text.chars().take(max).collect()
}

/// The peer, and, when our own proxy is trusted, the client it names: `203.0.113.7 via
/// 127.0.0.1`. The forwarded address is the one the rate limit counts (the last in
/// `X-Forwarded-For`, the one our proxy added); an untrusted header is anyone's to forge, so
/// it is not recorded at all.
fn remote_addr(
    headers: &HeaderMap,
    peer: Option<SocketAddr>,
    trust_forwarded_for: bool,
) -> Option<String> {
    let peer = peer.map(|p| p.ip().to_string());
    let forwarded = trust_forwarded_for
        .then(|| super::limit::last_forwarded_for(headers))
        .flatten()
        .map(|ip| ip.to_string());
    match (forwarded, peer) {
        (Some(f), Some(p)) => Some(format!("{f} via {p}")),
        (f, p) => f.or(p),
    }
}

/// The TCP peer, when the server was started with connect info (tests driving the router
/// directly have none).
pub struct Peer(pub Option<SocketAddr>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Peer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> std::result::Result<Self, Self::Rejection> {
        Ok(Self(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|ConnectInfo(addr)| *addr),
        ))
    }
}

#[derive(Serialize)]
struct Ack<'a> {
    result: &'static str,
    biz_id: &'a str,
    status: &'a str,
}

async fn notify(
    State(state): State<AppState>,
    Peer(peer): Peer,
    headers: HeaderMap,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Result<Response> {
    let received = receive_signed(&state, CallbackKind::Notify, &headers, peer, body).await;
    let (outcome, record) = count(CallbackKind::Notify, received)?;
    let result = if outcome == MergeOutcome::Unchanged {
        "duplicate"
    } else {
        "stored"
    };
    Ok((
        StatusCode::OK,
        axum::Json(Ack {
            result,
            biz_id: &record.biz_id,
            status: &record.status,
        }),
    )
        .into_response())
}

async fn return_post(
    State(state): State<AppState>,
    Peer(peer): Peer,
    headers: HeaderMap,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Result<Response> {
    let received = receive_signed(&state, CallbackKind::ReturnPost, &headers, peer, body).await;
    let (_, record) = count(CallbackKind::ReturnPost, received)?;
    Ok(redirect_browser(&state, &record))
}

/// Counts a signed delivery's outcome for `/metrics`.
fn count(
    kind: CallbackKind,
    received: Result<(MergeOutcome, Verification)>,
) -> Result<(MergeOutcome, Verification)> {
    let outcome = match &received {
        Ok((MergeOutcome::Unchanged, _)) => "duplicate",
        Ok(_) => "stored",
        Err(AppError::Unavailable(_)) => "unavailable",
        Err(AppError::BadSignature(_)) => {
            metrics::counter!(crate::metrics::SIGNATURE_FAILURES, "route" => kind.as_str())
                .increment(1);
            "rejected"
        }
        Err(_) => "rejected",
    };
    crate::metrics::callback(kind.as_str(), outcome);
    received
}

/// notify and return POST: decode, verify, parse, store, journal.
async fn receive_signed(
    state: &AppState,
    kind: CallbackKind,
    headers: &HeaderMap,
    peer: Option<SocketAddr>,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Result<(MergeOutcome, Verification)> {
    let body = match body {
        Ok(body) => body,
        Err(rejection) => {
            return Err(refuse_unreadable(state, kind, headers, peer, rejection).await);
        }
    };
    let delivery = Delivery::new(state, kind, headers, peer, body.clone());

    let fields = match decode_callback(delivery.content_type.as_deref(), body).await {
        Ok(fields) => fields,
        Err(e) => {
            state
                .store
                .journal_rejected(&delivery.entry(state, None, None, Some(e.to_string())))
                .await?;
            return Err(AppError::bad_request(e.code(), e.to_string()));
        }
    };

    // The current secret first, then those kept from before a rotation.
    let secrets = state.settings.megvii.callback_secrets();
    let key_id = match protocol::sign::verify_any(&secrets, &fields.data, &fields.sign) {
        Ok(position) => protocol::sign::key_id(position),
        Err(e) => {
            // Name the biz_id the sender *claims*, so an operator can find forged deliveries.
            let claimed = protocol::payload::parse_callback_data(&fields.data)
                .ok()
                .map(|r| r.biz_id);
            let claimed = claimed.as_ref().map(BizId::as_str);
            state
                .store
                .journal_rejected(&delivery.entry(state, claimed, None, Some(e.to_string())))
                .await?;
            tracing::warn!(
                kind = kind.as_str(),
                biz_id = claimed,
                "callback refused: {e}"
            );
            return Err(AppError::BadSignature(e.to_string()));
        }
    };

    let result = match protocol::payload::parse_callback_data(&fields.data) {
        Ok(result) => result,
        Err(e) => {
            state
                .store
                .journal_rejected(&delivery.entry(state, None, Some(&key_id), Some(e.to_string())))
                .await?;
            tracing::warn!(kind = kind.as_str(), "signed callback refused: {e}");
            return Err(AppError::bad_request("malformed_data", e.to_string()));
        }
    };

    let effect = plan::after_signed(
        &state.settings.fetch,
        result.biz_id.as_str(),
        &result.fields.status,
        delivery.received_at,
    );
    let (incoming, images) = crate::megvii::signed_callback(&result, kind);
    let entry = delivery.entry(state, Some(result.biz_id.as_str()), Some(&key_id), None);
    let (outcome, record) = match state.store.accept_signed(entry, incoming, effect).await {
        Ok(accepted) => accepted,
        Err(error @ StoreError::Unavailable(_)) => return Err(error.into()),
        Err(error) => {
            return Err(refuse_unstorable(state, &delivery, &result, &key_id, error).await);
        }
    };
    // After the result, in a transaction of its own: the record exists now. Should this
    // fail, the answer is 503 and FaceID's retry (a duplicate) stores them.
    if !images.is_empty() {
        state
            .store
            .save_images(&record.biz_id, &images, delivery.received_at)
            .await?;
    }
    if matches!(effect, JobEffect::Ensure(_)) {
        state.wake_fetcher.notify_one();
    }
    tracing::info!(kind = kind.as_str(), biz_id = %result.biz_id, status = %record.status, outcome = ?outcome, "callback stored");
    Ok((outcome, record))
}

/// A body we could not read at all (too large, or the connection broke): journal what we
/// know and answer accordingly.
async fn refuse_unreadable(
    state: &AppState,
    kind: CallbackKind,
    headers: &HeaderMap,
    peer: Option<SocketAddr>,
    rejection: BytesRejection,
) -> AppError {
    let too_large = rejection.status() == StatusCode::PAYLOAD_TOO_LARGE;
    let reason = if too_large {
        format!(
            "body larger than {} bytes",
            state.settings.server.body_limit
        )
    } else {
        "body could not be read".to_owned()
    };
    let mut delivery = Delivery::new(state, kind, headers, peer, Bytes::new());
    delivery.body_len = header_text(headers, header::CONTENT_LENGTH.as_str())
        .and_then(|v| v.parse().ok())
        .unwrap_or(-1);
    if let Err(e) = state
        .store
        .journal_rejected(&delivery.entry(state, None, None, Some(reason.clone())))
        .await
    {
        return e.into();
    }
    if too_large {
        AppError::PayloadTooLarge {
            limit: state.settings.server.body_limit,
        }
    } else {
        AppError::bad_request("malformed_body", reason)
    }
}

/// A verified delivery whose writes the database refused for their data (not an outage: the
/// others in its group commit were stored). Journals it on its own — verified, with its
/// body, so `replay` can store it once the fault is fixed — and answers 500 `not_stored`.
async fn refuse_unstorable(
    state: &AppState,
    delivery: &Delivery,
    result: &CallbackResult,
    key_id: &str,
    error: StoreError,
) -> AppError {
    let code = error.database_code().unwrap_or_else(|| "none".to_owned());
    let reason = format!("verified but not stored: the database refused it (code {code})");
    let entry = delivery.entry(
        state,
        Some(result.biz_id.as_str()),
        Some(key_id),
        Some(reason),
    );
    match state.store.journal_rejected(&entry).await {
        Ok(_) => AppError::NotStored(error),
        Err(journal_error) => journal_error.into(),
    }
}

/// return_url as a GET: FaceID appended `biz_id` to whatever query the URL had. No sign, no
/// result: record it as pending and let the follow-up fetch the result.
async fn return_get(
    State(state): State<AppState>,
    Peer(peer): Peer,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response> {
    let answer = record_return_get(&state, &headers, peer, query.unwrap_or_default()).await;
    let outcome = match &answer {
        Ok(_) => "pending",
        Err(AppError::Unavailable(_)) => "unavailable",
        Err(_) => "rejected",
    };
    crate::metrics::callback(CallbackKind::ReturnGet.as_str(), outcome);
    answer
}

async fn record_return_get(
    state: &AppState,
    headers: &HeaderMap,
    peer: Option<SocketAddr>,
    query: String,
) -> Result<Response> {
    let delivery = Delivery::new(
        state,
        CallbackKind::ReturnGet,
        headers,
        peer,
        Bytes::from(query.clone()),
    );
    let biz_id = match biz_id_from_query(&query) {
        Ok(biz_id) => biz_id,
        Err((code, reason)) => {
            state
                .store
                .journal_rejected(&delivery.entry(state, None, None, Some(reason.clone())))
                .await?;
            return Err(AppError::bad_request(code, reason));
        }
    };
    let job = plan::first_job(&state.settings.fetch, biz_id.as_str(), delivery.received_at);
    let record = state
        .store
        .accept_return_get(
            &delivery.entry(state, Some(biz_id.as_str()), None, None),
            biz_id.as_str(),
            job,
        )
        .await?;
    state.wake_fetcher.notify_one();
    tracing::info!(biz_id = %biz_id, status = %record.status, "return GET recorded");
    Ok(redirect_browser(state, &record))
}

/// Finds the one `biz_id` anywhere in the query and checks its shape (public for the
/// property tests in `tests/faults`).
pub fn biz_id_from_query(query: &str) -> std::result::Result<BizId, (&'static str, String)> {
    let mut found: Option<String> = None;
    for (name, value) in form_urlencoded::parse(query.as_bytes()) {
        if name != "biz_id" {
            continue;
        }
        match &found {
            Some(previous) if *previous != value => {
                return Err((
                    "duplicate_field",
                    "biz_id appears more than once with different values".into(),
                ));
            }
            _ => found = Some(value.into_owned()),
        }
    }
    let text = found.ok_or((
        "missing_field",
        "the biz_id query parameter is missing".to_owned(),
    ))?;
    BizId::parse(&text).map_err(|e| ("invalid_biz_id", e.to_string()))
}

/// 303 to the configured page, or to our built-in one, with `biz_id`, `biz_no` and `status`.
fn redirect_browser(state: &AppState, record: &Verification) -> Response {
    let mut pairs = vec![("biz_id", record.biz_id.as_str())];
    if let Some(biz_no) = record.biz_no.as_deref() {
        pairs.push(("biz_no", biz_no));
    }
    pairs.push(("status", record.status.as_str()));
    let location = match &state.settings.r#return.redirect_url {
        Some(base) => {
            let mut url = base.clone();
            url.query_pairs_mut().extend_pairs(pairs);
            url.to_string()
        }
        // Relative to /faceid/return, so it also works behind a proxy that adds a prefix.
        None => {
            let query: String = form_urlencoded::Serializer::new(String::new())
                .extend_pairs(pairs)
                .finish();
            format!("done?{query}")
        }
    };
    Redirect::to(&location).into_response()
}

/// The built-in landing page. It shows only a status from FaceID's fixed vocabulary: nothing
/// from the query is echoed, so it can carry no identity data and no injected markup.
async fn done_page(RawQuery(query): RawQuery) -> Response {
    let status = form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .find(|(k, _)| k == "status")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    let message = match status.as_str() {
        PENDING | "NOT_STARTED" | "PROCESSING" => {
            "Your verification was received and is being processed."
        }
        "OK" => "Your verification is complete.",
        "FAILED" | "TIMEOUT" | "CANCELLED" | "WEBRTC_UNSUPPORTED" => {
            "Your verification did not complete."
        }
        _ => "Your verification was received.",
    };
    let html = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>Verification received</title>\
         <style>body{{font-family:system-ui,sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem;color:#222}}</style>\
         </head><body><h1>Thank you</h1><p id=\"message\">{message}</p>\
         <p>You can close this page and return to the merchant.</p></body></html>\n"
    );
    (
        [
            (header::CACHE_CONTROL, "no-store"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
            ),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::X_FRAME_OPTIONS, "DENY"),
        ],
        Html(html),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn biz_id_is_found_anywhere_in_the_query() {
        let id = "1462259748,52b13fb5-8dfb-4537-a62b-a641d5e929f1";
        for query in [
            format!("biz_id={id}"),
            format!("a=b&biz_id={id}"),
            format!("biz_id={}&a=b", id.replace(',', "%2C")),
            format!("biz_id={id}&biz_id={id}"),
        ] {
            assert_eq!(
                biz_id_from_query(&query).unwrap().as_str(),
                id,
                "query {query}"
            );
        }
    }

    #[test]
    fn bad_queries_are_refused_with_a_code() {
        assert_eq!(biz_id_from_query("a=b").unwrap_err().0, "missing_field");
        assert_eq!(
            biz_id_from_query("biz_id=1462259748,a&biz_id=1462259748,b")
                .unwrap_err()
                .0,
            "duplicate_field"
        );
        assert_eq!(
            biz_id_from_query("biz_id=<script>").unwrap_err().0,
            "invalid_biz_id"
        );
    }

    #[test]
    fn remote_addr_names_the_forwarded_client_only_when_the_proxy_is_trusted() {
        let mut headers = HeaderMap::new();
        let peer: SocketAddr = "127.0.0.1:9999".parse().unwrap();
        assert_eq!(
            remote_addr(&headers, Some(peer), true).as_deref(),
            Some("127.0.0.1")
        );
        headers.insert(
            "x-forwarded-for",
            "198.51.100.9, 203.0.113.7".parse().unwrap(),
        );
        assert_eq!(
            remote_addr(&headers, Some(peer), true).as_deref(),
            Some("203.0.113.7 via 127.0.0.1"),
            "the address our proxy added"
        );
        assert_eq!(
            remote_addr(&headers, Some(peer), false).as_deref(),
            Some("127.0.0.1"),
            "an untrusted header is not recorded"
        );
    }
}
