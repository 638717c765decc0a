//! The merchant's query API under `/api/v1`, behind bearer tokens from `api.tokens`
//! ([`super::auth`]): the routes of its parts (this module's queries, [`super::followup`],
//! [`super::replay`]) behind one authentication layer, and the queries themselves.
//!
//! Invariants: list endpoints page with opaque keyset cursors, newest first; a path or query
//! holding `%00` is refused with 400 before any handler runs.
//!
//! Identity data: a caller whose token has the `pii` scope sees the stored raw result
//! byte-exact, and every such disclosure is written to the access log *before* the response
//! is sent (a log that cannot be written fails the request with 503: no unaudited reads).
//! Any other caller sees the masked views of [`super::views`], and is not logged.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::get;
use axum::{Extension, Json, Router};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use utoipa::IntoParams;

use super::AppState;
use super::auth::{Caller, require_token};
use super::error::{ApiErrors, AppError, ErrorBody, Result};
use super::extract::{ApiPath, ApiQuery};
#[allow(unused_imports)] // referenced by the schema attributes only
use super::views::{CallbackPage, VerificationPage};
use super::views::{CallbackView, Page, VerificationView};
use crate::clock::parse_time;
use crate::store::{CallbackQuery, CallbackRecord, ListQuery, Verification};

pub const DEFAULT_LIMIT: i64 = 50;
pub const MAX_LIMIT: i64 = 200;
/// Largest request body `/api/v1` accepts (larger: 413).
pub const BODY_LIMIT: usize = 64 * 1024;

pub fn router(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/verifications", get(list_verifications))
        .route("/verifications/{biz_id}", get(get_verification))
        .route("/callbacks", get(list_callbacks))
        .merge(super::followup::router())
        .merge(super::replay::router())
        .merge(super::push::router())
        .route_layer(axum::middleware::from_fn_with_state(state, require_token))
        .route_layer(axum::middleware::from_fn(refuse_nul))
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

/// One stored verification.
#[utoipa::path(
    get,
    path = "/api/v1/verifications/{biz_id}",
    tag = "verifications",
    params(("biz_id" = String, Path, description = "The biz_id, URL-encoded (it contains a comma)")),
    responses(
        (status = 200, description = "The stored outcome", body = VerificationView),
        (status = 400, description = "Malformed path", body = ErrorBody),
        (status = 404, description = "No such verification", body = ErrorBody),
        ApiErrors,
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
    // The pattern is replay's `since` (http/push.rs): the shape `clock::parse_time` reads
    // (tests/api/openapi.rs holds them equal).
    #[param(
        pattern = r"^(-?[0-9]{1,18}|[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?([Zz]|[+-][0-9]{2}:[0-9]{2}))$"
    )]
    since: Option<String>,
    /// Page size, 1 to 200 (default 50).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 200)]
    limit: Option<String>,
    /// `next_cursor` from the previous page.
    cursor: Option<String>,
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

/// A stored row a list pages through and shows.
trait Listed: Sized {
    type View;
    /// The `next_cursor` that continues after this row.
    fn cursor(&self) -> String;
    /// Whose data this row is, for the access log.
    fn biz_id(&self) -> Option<&str>;
    /// The row as this caller may see it.
    fn render(self, pii: bool) -> Self::View;
}

impl Listed for Verification {
    type View = VerificationView;
    fn cursor(&self) -> String {
        encode_cursor(self.created_at, &self.biz_id)
    }
    fn biz_id(&self) -> Option<&str> {
        Some(&self.biz_id)
    }
    fn render(self, pii: bool) -> VerificationView {
        VerificationView::render(self, pii)
    }
}

impl Listed for CallbackRecord {
    type View = CallbackView;
    fn cursor(&self) -> String {
        self.id.to_string()
    }
    fn biz_id(&self) -> Option<&str> {
        self.biz_id.as_deref()
    }
    fn render(self, pii: bool) -> CallbackView {
        super::views::render_callback(self, pii)
    }
}

/// The answer to a list. The store was asked for `limit + 1` rows: the extra one only tells
/// that a next page exists. The first `limit` are shown, after they were written to the access
/// log under `route` when the caller may see identity data (no unaudited reads).
async fn page<R: Listed>(
    state: &AppState,
    caller: &Caller,
    route: &str,
    mut rows: Vec<R>,
    limit: i64,
) -> Result<Json<Page<R::View>>> {
    let next_cursor = if rows.len() as i64 > limit {
        rows.truncate(limit as usize);
        rows.last().map(R::cursor)
    } else {
        None
    };
    let pii = caller.has_pii();
    if pii {
        caller
            .log_access(state, route, rows.iter().map(R::biz_id))
            .await?;
    }
    Ok(Json(Page {
        items: rows.into_iter().map(|r| r.render(pii)).collect(),
        next_cursor,
    }))
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
        ApiErrors,
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
    let records = state.store.list(&query).await?;
    page(&state, &caller, "GET /api/v1/verifications", records, limit).await
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

/// The callback journal, newest first, including refused deliveries.
#[utoipa::path(
    get,
    path = "/api/v1/callbacks",
    tag = "callbacks",
    params(CallbackParams),
    responses(
        (status = 200, description = "A page of journal entries", body = CallbackPage),
        (status = 400, description = "Invalid limit, verified or cursor", body = ErrorBody),
        ApiErrors,
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
    let rows = state.store.callbacks(&query).await?;
    page(&state, &caller, "GET /api/v1/callbacks", rows, limit).await
}

#[cfg(test)]
mod tests {
    use super::*;

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
