//! The follow-up part of `/api/v1` (bearer auth like the rest of it): ask for a get_result
//! now, fetch a RAW result by token, and serve fetched images.
//!
//! - `POST /verifications/{biz_id}/fetch` → 202 `{"biz_id", "fetch"}` with the job due now.
//!   The budget and the window still apply: 409 `budget_exhausted` or `window_closed` when
//!   spent or gone. An unknown biz_id of valid shape gets a PENDING record and a job; an
//!   unknown one of any other shape is a 404.
//! - `POST /raw-results` `{"token", "biz_no"?}` → 202, same rules, for seed 002's RAW
//!   get_result. **Keying decision:** RAW results have no biz_id, so the record and the job
//!   are keyed `raw:<token>` (see [`crate::fetcher`]); that key is what
//!   `GET /verifications/{key}` takes, `biz_no` (from the request, then from the result) is
//!   searchable with the list filter, and the one-day window starts when we first see the
//!   token, since a token carries no time.
//! - `GET /verifications/{biz_id}/images/{name}` → the JPEG bytes, never cached; only for a
//!   token with the `pii` scope (403 `forbidden` otherwise), and each one is access-logged.
//!
//! Invariants: scheduling never touches `calls_used` (only the worker spends the budget, in
//! the store's conditional statement); the 409 checks here are a courtesy to the caller, the
//! store refuses a call past the budget or the window regardless. The worker is woken after
//! every scheduling so the call does not wait for the next poll.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};

use super::AppState;
use super::auth::Caller;
use super::error::{ApiErrors, AppError, ErrorBody, Result};
use super::extract::ApiPath;
use super::views::FetchView;
use crate::fetcher::{self, log_key, plan};
use crate::protocol::BizId;
use crate::store::{FetchInfo, NewJob};
use utoipa::ToSchema;

/// Longest `biz_no` FaceID accepts in get_token.
const MAX_BIZ_NO: usize = 128;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/verifications/{biz_id}/fetch", post(manual_fetch))
        .route("/verifications/{biz_id}/images/{name}", get(image))
        .route("/raw-results", post(raw_result))
}

/// The 202 body.
#[derive(Serialize, ToSchema)]
pub struct Scheduled {
    pub biz_id: String,
    pub fetch: FetchView,
}

fn accepted(state: &AppState, key: &str, info: &FetchInfo) -> Response {
    state.wake_fetcher.notify_one();
    tracing::info!(biz_id = %log_key(key), "follow-up requested");
    let location = format!(
        "/api/v1/verifications/{}",
        percent_encoding::utf8_percent_encode(key, percent_encoding::NON_ALPHANUMERIC)
    );
    let mut response = (
        StatusCode::ACCEPTED,
        Json(Scheduled {
            biz_id: key.to_owned(),
            fetch: FetchView::from(info),
        }),
    )
        .into_response();
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

/// What [`plan::manual`] allows: when the job becomes due, or 409.
fn manual_due_at(
    state: &AppState,
    fetch: &FetchInfo,
    window_ends_at: i64,
    now: i64,
) -> Result<i64> {
    plan::manual(&state.settings.fetch, fetch, window_ends_at, now).map_err(|refusal| match refusal
    {
        plan::Refusal::BudgetExhausted { max_calls } => AppError::Conflict {
            code: "budget_exhausted",
            message: format!("all {max_calls} get_result calls for this verification are spent"),
        },
        plan::Refusal::WindowClosed => AppError::Conflict {
            code: "window_closed",
            message: "FaceID keeps a result for one day and this one's day is over".to_owned(),
        },
    })
}

/// Ask for a get_result call now (the budget and the one-day window permitting). After a
/// failed call, a retry the worker already scheduled is kept instead (backoff is not bypassed).
#[utoipa::path(
    post,
    path = "/api/v1/verifications/{biz_id}/fetch",
    tag = "verifications",
    params(("biz_id" = String, Path, description = "The biz_id, URL-encoded (it contains a comma)")),
    responses(
        (status = 202, description = "Follow-up scheduled now (or, after a failed call, at the backoff the worker scheduled)", body = Scheduled,
         headers(("Location" = String, description = "The verification's URL"))),
        (status = 400, description = "Malformed path", body = ErrorBody),
        (status = 404, description = "Unknown verification and not a well-formed biz_id", body = ErrorBody),
        (status = 409, description = "`budget_exhausted` or `window_closed`", body = ErrorBody),
        ApiErrors,
    ),
)]
pub async fn manual_fetch(
    State(state): State<AppState>,
    ApiPath(biz_id): ApiPath<String>,
) -> Result<Response> {
    let (key, info) = schedule_manual(&state, &biz_id).await?;
    Ok(accepted(&state, &key, &info))
}

/// A get_result asked for by hand (the API's route above, and the console's "fetch now"):
/// the job of a known record becomes due now, or a well-formed unknown biz_id gets a PENDING
/// record and a job; the budget and the window still apply ([`plan::manual`]: 409). Wakes
/// the worker. Returns the record's key and its follow-up as scheduled.
pub async fn schedule_manual(state: &AppState, biz_id: &str) -> Result<(String, FetchInfo)> {
    let now = state.clock.now_ms();
    let return_image = state.settings.fetch.return_image;
    let fetch = &state.settings.fetch;
    if let Some(record) = state.store.get(biz_id).await? {
        let window_ends_at = plan::window_ends_at(fetch, &record.biz_id, record.created_at);
        let job = NewJob {
            next_at: manual_due_at(state, &record.fetch, window_ends_at, now)?,
            window_ends_at,
            return_image,
        };
        let info = state.store.schedule_fetch(&record.biz_id, job, now).await?;
        state.wake_fetcher.notify_one();
        return Ok((record.biz_id, info));
    }
    // Unknown: only a well-formed biz_id (as a return GET would bring) gets a record.
    let id =
        BizId::parse(biz_id).map_err(|_| AppError::NotFound("no verification with this biz_id"))?;
    let window_ends_at = plan::window_ends_at(fetch, id.as_str(), now);
    let job = NewJob {
        next_at: manual_due_at(state, &FetchInfo::default(), window_ends_at, now)?,
        window_ends_at,
        return_image,
    };
    let record = state
        .store
        .request_fetch(id.as_str(), None, job, now)
        .await?;
    state.wake_fetcher.notify_one();
    Ok((record.biz_id, record.fetch))
}

/// `POST /raw-results` body.
#[derive(Deserialize, ToSchema)]
pub struct RawRequest {
    /// The RAW flow's token (seed 002): up to 128 letters, digits and `. _ ~ + = -`.
    #[schema(value_type = String, pattern = "^[A-Za-z0-9._~+=-]{1,128}$")]
    token: Option<serde_json::Value>,
    /// Optional merchant reference (at most 128 bytes, no control characters).
    // Its pattern: no `char::is_control` characters, as checked (tests/api/openapi.rs).
    #[schema(value_type = Option<String>, max_length = 128, pattern = r"^[^\u0000-\u001F\u007F-\u009F]*$")]
    biz_no: Option<serde_json::Value>,
}

/// Fetch a RAW get_result by token; the record is keyed `raw:<token>`.
#[utoipa::path(
    post,
    path = "/api/v1/raw-results",
    tag = "verifications",
    request_body(content = RawRequest, content_type = "application/json"),
    responses(
        (status = 202, description = "Follow-up scheduled now", body = Scheduled,
         headers(("Location" = String, description = "The verification's URL"))),
        (status = 400, description = "Malformed body, token or biz_no", body = ErrorBody),
        (status = 409, description = "`budget_exhausted` or `window_closed`", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        ApiErrors,
    ),
)]
pub async fn raw_result(
    State(state): State<AppState>,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Result<Response> {
    let body = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            AppError::PayloadTooLarge {
                limit: super::api::BODY_LIMIT,
            }
        } else {
            AppError::bad_request("malformed_body", "the body could not be read")
        }
    })?;
    let request: RawRequest = serde_json::from_slice(&body).map_err(|_| {
        AppError::bad_request(
            "malformed_body",
            "the body must be a JSON object {\"token\": ..., \"biz_no\": ...}",
        )
    })?;
    let token = match &request.token {
        Some(serde_json::Value::String(token)) => token.as_str(),
        _ => {
            return Err(AppError::bad_request(
                "missing_field",
                "token (a string) is required",
            ));
        }
    };
    let token = fetcher::parse_raw_token(token)
        .map_err(|reason| AppError::bad_request("invalid_token", reason))?;
    let biz_no = match &request.biz_no {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(b)) if b.trim().is_empty() => None,
        Some(serde_json::Value::String(b))
            if b.len() <= MAX_BIZ_NO && !b.chars().any(char::is_control) =>
        {
            Some(b.trim().to_owned())
        }
        Some(_) => {
            return Err(AppError::bad_request(
                "invalid_biz_no",
                format!(
                    "biz_no must be a string of at most {MAX_BIZ_NO} bytes, without control characters"
                ),
            ));
        }
    };

    let key = fetcher::raw_key(token);
    let now = state.clock.now_ms();
    let (first_seen, fetch) = match state.store.get(&key).await? {
        Some(record) => (record.created_at, record.fetch),
        None => (now, FetchInfo::default()),
    };
    let window_ends_at = plan::window_ends_at(&state.settings.fetch, &key, first_seen);
    let job = NewJob {
        next_at: manual_due_at(&state, &fetch, window_ends_at, now)?,
        window_ends_at,
        return_image: state.settings.fetch.return_image,
    };
    let record = state
        .store
        .request_fetch(&key, biz_no.as_deref(), job, now)
        .await?;
    Ok(accepted(&state, &key, &record.fetch))
}

/// A fetched image (identity data: never cached).
#[utoipa::path(
    get,
    path = "/api/v1/verifications/{biz_id}/images/{name}",
    tag = "verifications",
    params(
        ("biz_id" = String, Path, description = "The biz_id, URL-encoded"),
        ("name" = String, Path, description = "An image name from the record's `images`"),
    ),
    responses(
        (status = 200, description = "The JPEG", content_type = "image/jpeg"),
        (status = 400, description = "Malformed path", body = ErrorBody),
        (status = 403, description = "The token lacks the `pii` scope", body = ErrorBody),
        (status = 404, description = "No such image", body = ErrorBody),
        ApiErrors,
    ),
)]
pub async fn image(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath((biz_id, name)): ApiPath<(String, String)>,
) -> Result<Response> {
    // Face and ID card pictures are identity data through and through: no masked form.
    if !caller.has_pii() {
        return Err(AppError::Forbidden(
            "image bytes need a token with the pii scope",
        ));
    }
    let valid_name = (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if !valid_name {
        return Err(AppError::NotFound("no such image"));
    }
    let jpeg = state
        .store
        .image(&biz_id, &name)
        .await?
        .ok_or(AppError::NotFound("no such image"))?;
    caller
        .log_access(
            &state,
            "GET /api/v1/verifications/{biz_id}/images/{name}",
            [biz_id.as_str()],
        )
        .await?;
    Ok((
        [
            (header::CONTENT_TYPE, "image/jpeg"),
            // Identity data: no shared or browser cache may keep it.
            (header::CACHE_CONTROL, "no-store"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        jpeg,
    )
        .into_response())
}
