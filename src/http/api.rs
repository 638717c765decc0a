//! The merchant's query API under `/api/v1`, behind bearer tokens from `api.tokens`.
//!
//! Invariants: tokens are compared in constant time (each configured token is checked, no
//! early exit); list endpoints page with opaque keyset cursors, newest first.
//!
//! Identity data: a caller whose token has the `pii` scope sees the stored raw result
//! byte-exact, and every such disclosure is written to the access log *before* the response
//! is sent (a log that cannot be written fails the request with 503: no unaudited reads).
//! Any other caller sees the result with its identity fields masked by
//! [`crate::protocol::pii`], re-serialized (so not byte-exact), and the journal's addresses
//! cut to their network, and is not logged. Every answer to a `pii` token carries
//! `Cache-Control: no-store`: no proxy or browser cache may keep what it disclosed.

use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::get;
use axum::{Extension, Json, Router};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::AppState;
use super::error::ErrorBody;
use super::error::{AppError, Result};
use super::extract::{ApiPath, ApiQuery};
#[allow(unused_imports)] // referenced by the schema attributes only
use super::openapi::{CallbackPage, FetchStateName, SourceName, VerificationPage};
use crate::clock::{parse_time, rfc3339};
use crate::config::ApiToken;
use crate::protocol::pii;
use crate::store::{
    AccessEntry, CallbackQuery, CallbackRecord, FetchInfo, ListQuery, Verification,
};
use utoipa::{IntoParams, ToSchema};

pub const DEFAULT_LIMIT: i64 = 50;
pub const MAX_LIMIT: i64 = 200;
/// Largest request body `/api/v1` accepts (larger: 413).
pub const BODY_LIMIT: usize = 64 * 1024;

pub fn router(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/verifications", get(list_verifications))
        .route("/verifications/{biz_id}", get(get_verification))
        .route("/callbacks", get(list_callbacks))
        .merge(super::fetch::router())
        .merge(super::replay::router())
        .route_layer(axum::middleware::from_fn_with_state(state, require_token))
        .route_layer(axum::middleware::from_fn(refuse_nul))
        // Added after the auth layer, so the document itself needs no token.
        .route("/openapi.json", get(super::openapi::serve))
}

/// The token that authenticated a request, for handlers that care about scopes.
#[derive(Clone)]
pub struct Caller {
    pub scopes: Vec<String>,
    /// [`ApiToken::fingerprint`], for the access log.
    pub token_fp: String,
}

impl Caller {
    /// May see identity data (unmasked results, image bytes).
    pub fn has_pii(&self) -> bool {
        self.scopes.iter().any(|s| s == pii::PII_SCOPE)
    }

    /// Records that this caller was shown `biz_ids` (or records of no biz_id, `None`) through
    /// `route`. Call before answering.
    pub async fn log_access<'a, B: Into<Option<&'a str>>>(
        &self,
        state: &AppState,
        route: &str,
        biz_ids: impl IntoIterator<Item = B>,
    ) -> Result<()> {
        let accessed_at = state.clock.now_ms();
        let entries: Vec<AccessEntry> = biz_ids
            .into_iter()
            .map(|biz_id| AccessEntry {
                token_fp: self.token_fp.clone(),
                route: route.to_owned(),
                biz_id: biz_id.into().map(str::to_owned),
                accessed_at,
            })
            .collect();
        state.store.record_access(&entries).await?;
        Ok(())
    }
}

/// Refuses a path or query holding a percent-encoded NUL (`%00`) with 400 before any handler
/// runs: no stored key or filter value can contain one (derived columns hold NUL as the text
/// `\u0000`), and PostgreSQL refuses NUL in text outright, which would otherwise surface as
/// a server error for what is bad input.
async fn refuse_nul(request: Request, next: Next) -> Result<Response> {
    let uri = request.uri();
    if uri.path().contains("%00") {
        return Err(AppError::bad_request(
            "invalid_path",
            "the path must not contain a NUL character (%00)",
        ));
    }
    if uri.query().is_some_and(|q| q.contains("%00")) {
        return Err(AppError::bad_request(
            "invalid_query",
            "the query must not contain a NUL character (%00)",
        ));
    }
    Ok(next.run(request).await)
}

/// Accepts `Authorization: Bearer <token>` when it matches one of `api.tokens`.
async fn require_token(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Result<Response> {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .ok_or(AppError::Unauthorized)?;
    let token = match_token(&state.settings.api.tokens, presented).ok_or(AppError::Unauthorized)?;
    let caller = Caller {
        scopes: token.scopes.clone(),
        token_fp: token.fingerprint(),
    };
    let pii = caller.has_pii();
    request.extensions_mut().insert(caller);
    let mut response = next.run(request).await;
    if pii {
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    Ok(response)
}

/// Constant-time: compares fixed-length digests, and looks at every token.
fn match_token<'a>(tokens: &'a [ApiToken], presented: &str) -> Option<&'a ApiToken> {
    let presented = Sha256::digest(presented.as_bytes());
    let mut found = None;
    for token in tokens {
        let expected = Sha256::digest(token.token.expose_secret().as_bytes());
        if bool::from(expected.ct_eq(&presented)) {
            found = Some(token);
        }
    }
    found
}

/// A verification as the API shows it.
#[derive(Serialize, ToSchema)]
pub struct VerificationView {
    /// FaceID's biz_id (or `raw:<token>` for a RAW result).
    #[schema(example = "1462259748,52b13fb5-8dfb-4537-a62b-a641d5e929f1")]
    pub biz_id: String,
    pub biz_no: Option<String>,
    /// FaceID's status (`OK`, `FAILED`, …) or `PENDING` until a result is known.
    #[schema(example = "OK")]
    pub status: String,
    /// `PASS`/`FAIL` from liveness_result, when present.
    pub liveness: Option<String>,
    /// verify_result.result_faceid.confidence, when present.
    pub confidence: Option<f64>,
    #[schema(value_type = SourceName)]
    pub source: &'static str,
    /// Whether the stored result came with a valid signature (get_result answers count).
    pub signed: bool,
    /// FaceID's JSON exactly as received (images stripped) for `pii` callers, masked for
    /// others; null while pending or once purged.
    #[schema(value_type = Option<Object>)]
    pub result: Option<Box<RawValue>>,
    /// Names of fetched images, for `GET …/images/{name}`.
    pub images: Vec<String>,
    pub fetch: FetchView,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
    /// When retention removed the raw result and images; absent when never.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub purged_at: Option<String>,
}

/// The follow-up (get_result) state of a verification.
#[derive(Serialize, ToSchema)]
pub struct FetchView {
    #[schema(value_type = FetchStateName)]
    pub state: &'static str,
    /// get_result calls spent (at most 3, ever).
    pub calls_used: i32,
    /// RFC 3339 time of the next call, when one is scheduled.
    pub next_at: Option<String>,
    pub last_error: Option<String>,
}

impl From<&FetchInfo> for FetchView {
    fn from(f: &FetchInfo) -> Self {
        Self {
            state: f.state.as_str(),
            calls_used: f.calls_used,
            next_at: f.next_at.map(rfc3339),
            last_error: f.last_error.clone(),
        }
    }
}

impl From<Verification> for VerificationView {
    /// The unmasked view (for `pii` callers).
    fn from(v: Verification) -> Self {
        Self::render(v, true)
    }
}

impl VerificationView {
    /// The view of `v`, with identity data masked unless `pii`.
    pub fn render(v: Verification, pii: bool) -> Self {
        let result = v.result.and_then(|raw| {
            if pii {
                // The stored text was validated as one JSON object before it was stored.
                RawValue::from_string(raw).ok()
            } else {
                serde_json::value::to_raw_value(&pii::mask_result(&raw)).ok()
            }
        });
        Self {
            fetch: FetchView::from(&v.fetch),
            biz_id: v.biz_id,
            biz_no: v.biz_no,
            status: v.status,
            liveness: v.liveness,
            confidence: v.confidence,
            source: v.source.as_str(),
            signed: v.signed,
            result,
            images: v.images,
            created_at: rfc3339(v.created_at),
            updated_at: rfc3339(v.updated_at),
            purged_at: v.purged_at.map(rfc3339),
        }
    }
}

/// One stored verification.
#[utoipa::path(
    get,
    path = "/api/v1/verifications/{biz_id}",
    tag = "verifications",
    params(("biz_id" = String, Path, description = "The biz_id, URL-encoded (it contains a comma)")),
    responses(
        (status = 200, description = "The stored outcome", body = VerificationView),
        (status = 400, description = "Malformed path", body = ErrorBody),
        (status = 401, description = "Missing or unknown token", body = ErrorBody),
        (status = 404, description = "No such verification", body = ErrorBody),
        (status = 503, description = "Storage unavailable", body = ErrorBody),
    ),
)]
pub async fn get_verification(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(biz_id): ApiPath<String>,
) -> Result<Json<VerificationView>> {
    let record = state
        .store
        .get(&biz_id)
        .await?
        .ok_or(AppError::NotFound("no verification with this biz_id"))?;
    let pii = caller.has_pii();
    if pii {
        caller
            .log_access(
                &state,
                "GET /api/v1/verifications/{biz_id}",
                [record.biz_id.as_str()],
            )
            .await?;
    }
    Ok(Json(VerificationView::render(record, pii)))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Only this merchant reference.
    biz_no: Option<String>,
    /// Only this status (case-insensitive), e.g. `OK` or `PENDING`.
    status: Option<String>,
    /// Only verifications created at or after this time (RFC 3339 or epoch milliseconds).
    since: Option<String>,
    /// Page size, 1 to 200 (default 50).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 200)]
    limit: Option<String>,
    /// `next_cursor` from the previous page.
    cursor: Option<String>,
}

/// A page of a list, newest first (documented as `VerificationPage` and `CallbackPage`).
#[derive(Serialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

fn parse_limit(limit: Option<&str>) -> Result<i64> {
    match limit {
        None | Some("") => Ok(DEFAULT_LIMIT),
        Some(text) => match text.parse::<i64>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
            _ => Err(AppError::bad_request(
                "invalid_limit",
                format!("limit must be a whole number from 1 to {MAX_LIMIT}"),
            )),
        },
    }
}

fn bad_cursor() -> AppError {
    AppError::bad_request("invalid_cursor", "cursor is not one this API returned")
}

fn encode_cursor(created_at: i64, biz_id: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{created_at}:{biz_id}"))
}

fn decode_cursor(cursor: &str) -> Result<(i64, String)> {
    let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| bad_cursor())?;
    let text = String::from_utf8(bytes).map_err(|_| bad_cursor())?;
    let (ms, biz_id) = text.split_once(':').ok_or_else(bad_cursor)?;
    Ok((ms.parse().map_err(|_| bad_cursor())?, biz_id.to_owned()))
}

/// Lists ask the store for `limit + 1` rows: the extra one only tells that a next page exists.
/// Keeps the first `limit` and returns the cursor of the last one kept, when there is more.
fn take_page<T>(rows: &mut Vec<T>, limit: i64, cursor_of: impl Fn(&T) -> String) -> Option<String> {
    if rows.len() as i64 <= limit {
        return None;
    }
    rows.truncate(limit as usize);
    rows.last().map(cursor_of)
}

fn non_empty(value: Option<String>) -> Option<String> {
    value.filter(|v| !v.is_empty())
}

/// Stored verifications, newest first, paged with an opaque cursor.
#[utoipa::path(
    get,
    path = "/api/v1/verifications",
    tag = "verifications",
    params(ListParams),
    responses(
        (status = 200, description = "A page of verifications", body = VerificationPage),
        (status = 400, description = "Invalid limit, since or cursor", body = ErrorBody),
        (status = 401, description = "Missing or unknown token", body = ErrorBody),
        (status = 503, description = "Storage unavailable", body = ErrorBody),
    ),
)]
pub async fn list_verifications(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiQuery(params): ApiQuery<ListParams>,
) -> Result<Json<Page<VerificationView>>> {
    let limit = parse_limit(params.limit.as_deref())?;
    let since = match non_empty(params.since) {
        Some(text) => Some(parse_time(&text).ok_or_else(|| {
            AppError::bad_request(
                "invalid_since",
                "since must be an RFC 3339 time or epoch milliseconds",
            )
        })?),
        None => None,
    };
    let after = non_empty(params.cursor)
        .map(|c| decode_cursor(&c))
        .transpose()?;
    let query = ListQuery {
        biz_no: non_empty(params.biz_no),
        status: non_empty(params.status).map(|s| s.to_ascii_uppercase()),
        since,
        // One more than asked tells whether there is a next page.
        limit: limit + 1,
        after,
    };
    let mut records = state.store.list(&query).await?;
    let next_cursor = take_page(&mut records, limit, |r| {
        encode_cursor(r.created_at, &r.biz_id)
    });
    let pii = caller.has_pii();
    if pii {
        caller
            .log_access(
                &state,
                "GET /api/v1/verifications",
                records.iter().map(|r| r.biz_id.as_str()),
            )
            .await?;
    }
    Ok(Json(Page {
        items: records
            .into_iter()
            .map(|r| VerificationView::render(r, pii))
            .collect(),
        next_cursor,
    }))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CallbackParams {
    /// Only deliveries about this biz_id.
    biz_id: Option<String>,
    /// Only accepted (`true`) or only refused (`false`) deliveries.
    #[param(value_type = Option<bool>)]
    verified: Option<String>,
    /// Page size, 1 to 200 (default 50).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 200)]
    limit: Option<String>,
    /// `next_cursor` from the previous page.
    cursor: Option<String>,
}

/// One journaled callback delivery, accepted or not.
#[derive(Serialize, ToSchema)]
pub struct CallbackView {
    pub id: i64,
    pub kind: String,
    pub biz_id: Option<String>,
    pub verified: bool,
    pub outcome: String,
    pub reason: Option<String>,
    pub received_at: String,
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
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replayed_at: Option<String>,
}

impl CallbackView {
    /// The view of `c`, with the address cut to its network unless `pii`.
    fn render(c: CallbackRecord, pii: bool) -> Self {
        let remote_addr = if pii {
            c.remote_addr
        } else {
            c.remote_addr.as_deref().map(pii::mask_address)
        };
        Self {
            id: c.id,
            kind: c.kind,
            biz_id: c.biz_id,
            verified: c.verified,
            outcome: c.outcome,
            reason: c.reason,
            received_at: rfc3339(c.received_at),
            remote_addr,
            content_type: c.content_type,
            body_sha256: c.body_sha256,
            body_len: c.body_len,
            key_id: c.key_id,
            replayed_at: c.replayed_at.map(rfc3339),
        }
    }
}

/// The callback journal, newest first, including refused deliveries.
#[utoipa::path(
    get,
    path = "/api/v1/callbacks",
    tag = "callbacks",
    params(CallbackParams),
    responses(
        (status = 200, description = "A page of journal entries", body = CallbackPage),
        (status = 400, description = "Invalid limit, verified or cursor", body = ErrorBody),
        (status = 401, description = "Missing or unknown token", body = ErrorBody),
        (status = 503, description = "Storage unavailable", body = ErrorBody),
    ),
)]
pub async fn list_callbacks(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiQuery(params): ApiQuery<CallbackParams>,
) -> Result<Json<Page<CallbackView>>> {
    let limit = parse_limit(params.limit.as_deref())?;
    let verified = match non_empty(params.verified).as_deref() {
        None => None,
        Some("true" | "1") => Some(true),
        Some("false" | "0") => Some(false),
        Some(_) => {
            return Err(AppError::bad_request(
                "invalid_verified",
                "verified must be true or false",
            ));
        }
    };
    let before_id = non_empty(params.cursor)
        .map(|c| c.parse::<i64>().map_err(|_| bad_cursor()))
        .transpose()?;
    let query = CallbackQuery {
        biz_id: non_empty(params.biz_id),
        verified,
        limit: limit + 1,
        before_id,
    };
    let mut rows = state.store.callbacks(&query).await?;
    let next_cursor = take_page(&mut rows, limit, |r| r.id.to_string());
    let pii = caller.has_pii();
    if pii {
        caller
            .log_access(
                &state,
                "GET /api/v1/callbacks",
                rows.iter().map(|r| r.biz_id.as_deref()),
            )
            .await?;
    }
    Ok(Json(Page {
        items: rows
            .into_iter()
            .map(|r| CallbackView::render(r, pii))
            .collect(),
        next_cursor,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_configured_tokens_match_and_scopes_come_along() {
        let tokens = vec![
            ApiToken::parse("alpha").unwrap(),
            ApiToken::parse("beta:pii").unwrap(),
        ];
        assert!(match_token(&tokens, "alpha").unwrap().scopes.is_empty());
        assert_eq!(match_token(&tokens, "beta").unwrap().scopes, vec!["pii"]);
        assert!(match_token(&tokens, "alph").is_none());
        assert!(match_token(&tokens, "").is_none());
        assert!(match_token(&[], "alpha").is_none());
    }

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        let c = encode_cursor(1_700_000_000_000, "1462259748,abc");
        assert_eq!(
            decode_cursor(&c).unwrap(),
            (1_700_000_000_000, "1462259748,abc".to_owned())
        );
        assert!(decode_cursor("!!!").is_err());
        assert!(decode_cursor(&URL_SAFE_NO_PAD.encode("nocolon")).is_err());
    }
}
