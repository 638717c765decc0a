//! The push routes under `/api/v1` (bearer auth like the rest of the API):
//! - endpoints, scope `admin`: `POST/GET /endpoints`, `GET/PATCH/DELETE /endpoints/{id}`,
//!   `POST /endpoints/{id}/rotate-secret`, `POST /endpoints/{id}/test`,
//!   `POST /endpoints/{id}/replay?since=`, and `POST /events/{id}/retry`;
//! - the pull side, any token: `GET /events?after=&limit=` and `GET /events/stream` (SSE,
//!   resumable with `Last-Event-ID`), `data` masked unless the token has `pii`.
//!
//! Invariants: an endpoint's secret is answered once, when it is created or rotated, never
//! again; a URL is checked against the target policy before it is stored (422 when refused);
//! what a caller can make us store or hold is bounded (`push.max_endpoints`, URL and
//! description lengths, `push.max_streams` open streams, replay at most [`MAX_REPLAY`]
//! events per request); an event stream ends when the server stops; disclosures to a `pii`
//! token are written to the access log before they are sent.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use super::auth::Caller;
use super::error::{ApiErrors, AppError, ErrorBody, Result};
use super::extract::{ApiPath, ApiQuery};
use crate::clock::{parse_time, rfc3339};
use crate::config::ADMIN_SCOPE;
use crate::push::event::{self, EventType};
use crate::push::signature::{EndpointSecret, SigningKeys};
use crate::push::target::{MAX_URL_LEN, Target};
use crate::store::{Endpoint, EndpointPatch, Event, NewEndpoint, VERIFICATION_COMPLETED};

/// Longest endpoint description, in characters.
pub const MAX_DESCRIPTION: usize = 256;
/// Events one replay request queues at most.
pub const MAX_REPLAY: i64 = 10_000;
/// The previous secret keeps signing this long after a rotation.
pub const ROTATION_OVERLAP: Duration = Duration::from_secs(24 * 3600);
/// Events per page of `GET /events`, by default and at most.
pub const DEFAULT_LIMIT: i64 = 100;
pub const MAX_LIMIT: i64 = 500;
/// A stream's keep-alive comment interval, or a third of `server.idle_timeout` when that is
/// shorter: a quiet stream must never look idle to the connection's watchdog.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/endpoints", post(create_endpoint).get(list_endpoints))
        .route(
            "/endpoints/{id}",
            get(get_endpoint)
                .patch(update_endpoint)
                .delete(delete_endpoint),
        )
        .route("/endpoints/{id}/rotate-secret", post(rotate_secret))
        .route("/endpoints/{id}/test", post(test_endpoint))
        .route("/endpoints/{id}/replay", post(replay_endpoint))
        .route("/events", get(list_events))
        .route("/events/stream", get(stream_events))
        .route("/events/{id}/retry", post(retry_event))
}

fn require_admin(caller: &Caller) -> Result<()> {
    if caller.scopes.iter().any(|s| s == ADMIN_SCOPE) {
        Ok(())
    } else {
        Err(AppError::Forbidden(
            "managing push endpoints needs a token with the admin scope",
        ))
    }
}

fn unprocessable(code: &'static str, message: impl Into<String>) -> AppError {
    AppError::Unprocessable {
        code,
        message: message.into(),
    }
}

fn not_found() -> AppError {
    AppError::NotFound("no endpoint with this id")
}

/// An endpoint as the API shows it: never its secret.
#[derive(Serialize, ToSchema)]
pub struct EndpointView {
    #[schema(example = "ep_5f0c6e0f2b6f4a8c9d8e7f6a5b4c3d2e")]
    pub id: String,
    pub url: String,
    /// The event types pushed to it.
    pub events: Vec<String>,
    /// Whether `data` is sent unmasked (identity data included).
    pub include_pii: bool,
    pub description: Option<String>,
    pub enabled: bool,
    /// RFC 3339, when disabled.
    pub disabled_at: Option<String>,
    /// Why it was disabled (410 Gone, `push.disable_after`, by hand).
    pub disabled_reason: Option<String>,
    /// RFC 3339: the first failed attempt since its last success.
    pub failing_since: Option<String>,
    /// RFC 3339: until when the previous secret still signs beside the current one.
    pub previous_secret_expires_at: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

impl From<&Endpoint> for EndpointView {
    fn from(e: &Endpoint) -> Self {
        Self {
            id: e.id.clone(),
            url: e.url.clone(),
            events: e.events.clone(),
            include_pii: e.include_pii,
            description: e.description.clone(),
            enabled: e.disabled_at.is_none(),
            disabled_at: e.disabled_at.map(rfc3339),
            disabled_reason: e.disabled_reason.clone(),
            failing_since: e.failing_since.map(rfc3339),
            previous_secret_expires_at: e.previous_expires_at.map(rfc3339),
            created_at: rfc3339(e.created_at),
            updated_at: rfc3339(e.updated_at),
        }
    }
}

/// An endpoint and its new secret: answered once, at creation and at rotation.
#[derive(Serialize, ToSchema)]
pub struct EndpointWithSecret {
    #[serde(flatten)]
    pub endpoint: EndpointView,
    /// `whsec_…`: verify pushes with it (Standard Webhooks). Shown only now.
    pub secret: String,
}

#[derive(Serialize, ToSchema)]
pub struct EndpointList {
    pub items: Vec<EndpointView>,
}

/// `PATCH /endpoints/{id}` body (and, read by the same code, `POST /endpoints`'s: see
/// [`NewEndpointRequest`]). Each value is checked on its own, for an error that names it;
/// unknown fields are refused.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EndpointRequest {
    /// An https URL (http, and private addresses, only with `push.allow_private_targets`).
    #[schema(value_type = Option<String>, format = "uri", max_length = 2048, example = "https://shop.example.com/faceid/events")]
    url: Option<Value>,
    /// Event types to push (all when absent or empty).
    #[schema(value_type = Option<Vec<EventTypeName>>)]
    events: Option<Value>,
    /// Send `data` unmasked, identity data included (default false).
    #[schema(value_type = Option<bool>)]
    include_pii: Option<Value>,
    // Its pattern: no `char::is_control` characters, as checked (tests/api/openapi.rs).
    #[schema(value_type = Option<String>, max_length = 256, pattern = r"^[^\u0000-\u001F\u007F-\u009F]*$")]
    description: Option<Value>,
    /// PATCH only: `false` disables the endpoint, `true` enables it again.
    #[schema(value_type = Option<bool>)]
    enabled: Option<Value>,
}

/// `POST /endpoints` body.
// For the OpenAPI document only: the request is read as an [`EndpointRequest`], and
// `create_endpoint` refuses one without `url` or with `enabled` (400), which this states.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewEndpointRequest {
    /// An https URL (http, and private addresses, only with `push.allow_private_targets`).
    #[schema(
        format = "uri",
        max_length = 2048,
        example = "https://shop.example.com/faceid/events"
    )]
    url: String,
    /// Event types to push (all when absent or empty).
    events: Option<Vec<EventTypeName>>,
    /// Send `data` unmasked, identity data included (default false).
    include_pii: Option<bool>,
    // Its pattern: no `char::is_control` characters, as checked (tests/api/openapi.rs).
    #[schema(max_length = 256, pattern = r"^[^\u0000-\u001F\u007F-\u009F]*$")]
    description: Option<String>,
}

/// An event type: a final result stored (`verification.completed`), a follow-up ended without
/// one (`followup.ended`), a callback delivery refused (`callback.refused`).
// For the OpenAPI document only: the names are [`EventType::as_str`]'s, which
// `tests/api/openapi.rs` holds equal to these in the served document.
#[derive(Serialize, ToSchema)]
pub enum EventTypeName {
    #[serde(rename = "verification.completed")]
    VerificationCompleted,
    #[serde(rename = "followup.ended")]
    FollowupEnded,
    #[serde(rename = "callback.refused")]
    CallbackRefused,
}

/// The fields of a request, checked.
struct Checked {
    url: Option<String>,
    events: Option<Vec<String>>,
    include_pii: Option<bool>,
    description: Option<Option<String>>,
    enabled: Option<bool>,
}

fn check_request(state: &AppState, body: &[u8]) -> Result<Checked> {
    let request: EndpointRequest = serde_json::from_slice(body).map_err(|_| {
        AppError::bad_request(
            "malformed_body",
            "the body must be a JSON object with url, events, include_pii, description (and, to PATCH, enabled)",
        )
    })?;
    let url = match request.url {
        None | Some(Value::Null) => None,
        Some(Value::String(url)) => {
            if url.len() > MAX_URL_LEN {
                return Err(unprocessable(
                    "invalid_url",
                    format!("url is longer than {MAX_URL_LEN} bytes"),
                ));
            }
            Target::parse(&url, &state.settings.push.policy())
                .map_err(|e| unprocessable("invalid_url", format!("url refused: {e}")))?;
            Some(url)
        }
        Some(_) => return Err(AppError::bad_request("invalid_url", "url must be a string")),
    };
    let events = match request.events {
        None | Some(Value::Null) => None,
        Some(Value::Array(items)) => {
            let names = items
                .into_iter()
                .map(|v| match v {
                    Value::String(s) => Ok(s),
                    _ => Err(AppError::bad_request(
                        "invalid_events",
                        "events must be a list of event type names",
                    )),
                })
                .collect::<Result<Vec<String>>>()?;
            let types = event::parse_filter(Some(&names))
                .map_err(|e| unprocessable("unknown_event_type", e.to_string()))?;
            Some(types.into_iter().map(|t| t.as_str().to_owned()).collect())
        }
        Some(_) => {
            return Err(AppError::bad_request(
                "invalid_events",
                "events must be a list of event type names",
            ));
        }
    };
    let flag = |value: Option<Value>, code: &'static str, name: &str| match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(b)),
        Some(_) => Err(AppError::bad_request(
            code,
            format!("{name} must be true or false"),
        )),
    };
    let include_pii = flag(request.include_pii, "invalid_include_pii", "include_pii")?;
    let enabled = flag(request.enabled, "invalid_enabled", "enabled")?;
    let description = match request.description {
        None => None,
        Some(Value::Null) => Some(None),
        Some(Value::String(text)) => {
            if text.chars().count() > MAX_DESCRIPTION || text.chars().any(char::is_control) {
                return Err(AppError::bad_request(
                    "invalid_description",
                    format!(
                        "description must be at most {MAX_DESCRIPTION} characters, without control characters"
                    ),
                ));
            }
            Some(Some(text).filter(|t| !t.is_empty()))
        }
        Some(_) => {
            return Err(AppError::bad_request(
                "invalid_description",
                "description must be a string",
            ));
        }
    };
    Ok(Checked {
        url,
        events,
        include_pii,
        description,
        enabled,
    })
}

/// Register an endpoint: its secret is answered now, and never again.
#[utoipa::path(
    post,
    path = "/api/v1/endpoints",
    tag = "push",
    request_body(content = NewEndpointRequest, content_type = "application/json"),
    responses(
        (status = 201, description = "Registered; `secret` is shown only in this answer", body = EndpointWithSecret),
        (status = 400, description = "Malformed body or field", body = ErrorBody),
        (status = 403, description = "The token lacks the `admin` scope", body = ErrorBody),
        (status = 409, description = "`push.max_endpoints` are registered already", body = ErrorBody),
        (status = 422, description = "The URL is refused by the target policy, or an event type is unknown", body = ErrorBody),
        ApiErrors,
    ),
)]
pub async fn create_endpoint(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> Result<Response> {
    require_admin(&caller)?;
    let checked = check_request(&state, &body)?;
    if checked.enabled.is_some() {
        return Err(AppError::bad_request(
            "invalid_enabled",
            "a new endpoint is enabled; enabled is for PATCH",
        ));
    }
    let url = checked
        .url
        .ok_or_else(|| AppError::bad_request("missing_field", "url (a string) is required"))?;
    let secret = EndpointSecret::generate().expose_whsec();
    let new = NewEndpoint {
        id: format!("ep_{}", uuid::Uuid::new_v4().simple()),
        url,
        events: checked.events.unwrap_or_else(|| {
            EventType::ALL
                .iter()
                .map(|t| t.as_str().to_owned())
                .collect()
        }),
        include_pii: checked.include_pii.unwrap_or(false),
        description: checked.description.flatten(),
        secret: secret.clone(),
        now: state.clock.now_ms(),
    };
    let max = i64::from(state.settings.push.max_endpoints);
    let endpoint = state
        .store
        .create_endpoint(&new, max)
        .await?
        .ok_or_else(|| AppError::Conflict {
            code: "endpoint_limit",
            message: format!("{max} endpoints are registered already (push.max_endpoints)"),
        })?;
    tracing::info!(endpoint = %endpoint.id, "push endpoint registered");
    Ok((
        StatusCode::CREATED,
        Json(EndpointWithSecret {
            endpoint: EndpointView::from(&endpoint),
            secret,
        }),
    )
        .into_response())
}

/// Every registered endpoint (without secrets).
#[utoipa::path(
    get,
    path = "/api/v1/endpoints",
    tag = "push",
    responses(
        (status = 200, description = "The endpoints, oldest first", body = EndpointList),
        (status = 403, description = "The token lacks the `admin` scope", body = ErrorBody),
        ApiErrors,
    ),
)]
pub async fn list_endpoints(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<EndpointList>> {
    require_admin(&caller)?;
    let endpoints = state
        .store
        .endpoints(i64::from(state.settings.push.max_endpoints).max(1) * 2)
        .await?;
    Ok(Json(EndpointList {
        items: endpoints.iter().map(EndpointView::from).collect(),
    }))
}

/// One endpoint (without its secret).
#[utoipa::path(
    get,
    path = "/api/v1/endpoints/{id}",
    tag = "push",
    params(("id" = String, Path, description = "The endpoint's id")),
    responses(
        (status = 200, description = "The endpoint", body = EndpointView),
        (status = 403, description = "The token lacks the `admin` scope", body = ErrorBody),
        (status = 404, description = "No such endpoint", body = ErrorBody),
        ApiErrors,
    ),
)]
pub async fn get_endpoint(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<EndpointView>> {
    require_admin(&caller)?;
    let endpoint = state.store.endpoint(&id).await?.ok_or_else(not_found)?;
    Ok(Json(EndpointView::from(&endpoint)))
}

/// Change an endpoint: any of url, events, include_pii, description, and `enabled` (`true`
/// resumes a disabled endpoint: its pending deliveries go out again).
#[utoipa::path(
    patch,
    path = "/api/v1/endpoints/{id}",
    tag = "push",
    params(("id" = String, Path, description = "The endpoint's id")),
    request_body(content = EndpointRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The endpoint as changed", body = EndpointView),
        (status = 400, description = "Malformed body or field", body = ErrorBody),
        (status = 403, description = "The token lacks the `admin` scope", body = ErrorBody),
        (status = 404, description = "No such endpoint", body = ErrorBody),
        (status = 422, description = "The URL is refused by the target policy, or an event type is unknown", body = ErrorBody),
        ApiErrors,
    ),
)]
pub async fn update_endpoint(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(id): ApiPath<String>,
    body: Bytes,
) -> Result<Json<EndpointView>> {
    require_admin(&caller)?;
    let checked = check_request(&state, &body)?;
    let patch = EndpointPatch {
        url: checked.url,
        events: checked.events,
        include_pii: checked.include_pii,
        description: checked.description,
        enabled: checked.enabled,
    };
    let endpoint = patch_endpoint(&state, &id, &patch).await?;
    Ok(Json(EndpointView::from(&endpoint)))
}

/// Remove an endpoint and its pending deliveries (its attempts stay, as history).
#[utoipa::path(
    delete,
    path = "/api/v1/endpoints/{id}",
    tag = "push",
    params(("id" = String, Path, description = "The endpoint's id")),
    responses(
        (status = 204, description = "Removed"),
        (status = 403, description = "The token lacks the `admin` scope", body = ErrorBody),
        (status = 404, description = "No such endpoint", body = ErrorBody),
        ApiErrors,
    ),
)]
pub async fn delete_endpoint(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode> {
    require_admin(&caller)?;
    if state.store.delete_endpoint(&id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(not_found())
    }
}

/// A new secret, answered once; the previous one keeps signing beside it for 24 hours, so
/// the consumer can switch without losing a push.
#[utoipa::path(
    post,
    path = "/api/v1/endpoints/{id}/rotate-secret",
    tag = "push",
    params(("id" = String, Path, description = "The endpoint's id")),
    responses(
        (status = 200, description = "The endpoint and its new secret (shown only now)", body = EndpointWithSecret),
        (status = 403, description = "The token lacks the `admin` scope", body = ErrorBody),
        (status = 404, description = "No such endpoint", body = ErrorBody),
        ApiErrors,
    ),
)]
pub async fn rotate_secret(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<EndpointWithSecret>> {
    require_admin(&caller)?;
    let now = state.clock.now_ms();
    let secret = EndpointSecret::generate().expose_whsec();
    let expires = now.saturating_add(ROTATION_OVERLAP.as_millis() as i64);
    let endpoint = state
        .store
        .rotate_secret(&id, &secret, expires, now)
        .await?
        .ok_or_else(not_found)?;
    tracing::info!(endpoint = %endpoint.id, "push endpoint secret rotated");
    Ok(Json(EndpointWithSecret {
        endpoint: EndpointView::from(&endpoint),
        secret,
    }))
}

/// What a test push got back.
#[derive(Serialize, ToSchema)]
pub struct TestResult {
    /// The endpoint answered 2xx.
    pub delivered: bool,
    /// The HTTP status, when there was an answer.
    pub status: Option<u16>,
    /// `HTTP <status>`, or why there was no answer (`timeout`, `connect_error`,
    /// `forbidden_address`, …).
    pub code: String,
    pub latency_ms: i64,
    /// The `webhook-id` of the test push.
    pub event_id: String,
}

/// Send one signed `endpoint.test` push now and say what came back (not recorded as an
/// event, not retried).
#[utoipa::path(
    post,
    path = "/api/v1/endpoints/{id}/test",
    tag = "push",
    params(("id" = String, Path, description = "The endpoint's id")),
    responses(
        (status = 200, description = "What the endpoint answered", body = TestResult),
        (status = 403, description = "The token lacks the `admin` scope", body = ErrorBody),
        (status = 404, description = "No such endpoint", body = ErrorBody),
        (status = 422, description = "The stored URL is refused by the target policy now", body = ErrorBody),
        ApiErrors,
    ),
)]
pub async fn test_endpoint(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<TestResult>> {
    require_admin(&caller)?;
    let endpoint = state.store.endpoint(&id).await?.ok_or_else(not_found)?;
    let target = Target::parse(&endpoint.url, &state.settings.push.policy())
        .map_err(|e| unprocessable("invalid_url", format!("url refused: {e}")))?;
    let secret = EndpointSecret::parse(&endpoint.secret).map_err(|_| {
        AppError::Internal(anyhow::anyhow!("a stored endpoint secret does not parse"))
    })?;
    let now = state.clock.now_ms();
    let event_id = event::new_event_id();
    let body = serde_json::json!({
        "type": "endpoint.test",
        "timestamp": rfc3339(now),
        "data": {"endpoint_id": endpoint.id, "message": "a test push from faceid-receiver"},
    })
    .to_string();
    let headers = SigningKeys::new(secret).sign(&event_id, now, body.as_bytes());
    let attempt = state
        .push_client
        .deliver(&target, &headers, body.as_bytes())
        .await;
    Ok(Json(TestResult {
        delivered: attempt.verdict() == crate::push::Verdict::Delivered,
        status: attempt.status(),
        code: attempt.code(),
        latency_ms: crate::fetcher::duration_ms(attempt.latency),
        event_id,
    }))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReplayParams {
    /// Events created at or after this time (RFC 3339 or epoch milliseconds).
    // Optional to serde, required to the document: a missing `since` gets our own 400
    // (`invalid_since`), not the extractor's.
    // The pattern is the shape `clock::parse_time` reads (tests/api/openapi.rs holds the two
    // together): epoch milliseconds, or an RFC 3339 date-time.
    #[param(
        required = true,
        pattern = r"^(-?[0-9]{1,18}|[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?([Zz]|[+-][0-9]{2}:[0-9]{2}))$",
        example = "2026-11-23T00:00:00Z"
    )]
    since: Option<String>,
}

/// How many deliveries a retry or replay queued.
#[derive(Serialize, ToSchema)]
pub struct Queued {
    pub queued: u64,
}

/// Send the endpoint every event of its types since a time again (or for the first time),
/// from the first attempt of the schedule; at most 10000 events per request.
#[utoipa::path(
    post,
    path = "/api/v1/endpoints/{id}/replay",
    tag = "push",
    params(("id" = String, Path, description = "The endpoint's id"), ReplayParams),
    responses(
        (status = 202, description = "Deliveries queued", body = Queued),
        (status = 400, description = "Missing or invalid since", body = ErrorBody),
        (status = 403, description = "The token lacks the `admin` scope", body = ErrorBody),
        (status = 404, description = "No such endpoint", body = ErrorBody),
        ApiErrors,
    ),
)]
pub async fn replay_endpoint(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(params): ApiQuery<ReplayParams>,
) -> Result<(StatusCode, Json<Queued>)> {
    require_admin(&caller)?;
    let since = params
        .since
        .as_deref()
        .filter(|s| !s.is_empty())
        .and_then(parse_time)
        .ok_or_else(|| {
            AppError::bad_request(
                "invalid_since",
                "since (an RFC 3339 time or epoch milliseconds) is required",
            )
        })?;
    let queued = state
        .store
        .replay_endpoint(&id, since, state.clock.now_ms(), MAX_REPLAY)
        .await?
        .ok_or_else(not_found)?;
    Ok((StatusCode::ACCEPTED, Json(Queued { queued })))
}

/// Start every delivery of an event again, from the first attempt of the schedule.
#[utoipa::path(
    post,
    path = "/api/v1/events/{id}/retry",
    tag = "push",
    params(("id" = String, Path, description = "The event's id (`evt_…`, the `webhook-id`)")),
    responses(
        (status = 202, description = "Deliveries queued", body = Queued),
        (status = 403, description = "The token lacks the `admin` scope", body = ErrorBody),
        (status = 404, description = "No such event", body = ErrorBody),
        ApiErrors,
    ),
)]
pub async fn retry_event(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(id): ApiPath<String>,
) -> Result<(StatusCode, Json<Queued>)> {
    require_admin(&caller)?;
    let queued = retry(&state, &id).await?;
    Ok((StatusCode::ACCEPTED, Json(Queued { queued })))
}

/// Starts every delivery of event `id` again (the rule behind `POST /events/{id}/retry`,
/// also the console's "retry push"; the caller has checked the `admin` scope): how many
/// deliveries restart, or 404.
pub async fn retry(state: &AppState, id: &str) -> Result<u64> {
    state
        .store
        .retry_event(id, state.clock.now_ms())
        .await?
        .ok_or(AppError::NotFound("no event with this id"))
}

/// Disables (`false`) or enables (`true`) endpoint `id`, as `PATCH /endpoints/{id}` with
/// only `enabled` does (also the console's disable/enable; the caller has checked the
/// `admin` scope): the endpoint as changed, or 404.
pub async fn set_enabled(state: &AppState, id: &str, enabled: bool) -> Result<Endpoint> {
    let patch = EndpointPatch {
        enabled: Some(enabled),
        ..EndpointPatch::default()
    };
    patch_endpoint(state, id, &patch).await
}

async fn patch_endpoint(state: &AppState, id: &str, patch: &EndpointPatch) -> Result<Endpoint> {
    state
        .store
        .update_endpoint(id, patch, state.clock.now_ms())
        .await?
        .ok_or_else(not_found)
}

/// One event as the pull API shows it.
#[derive(Serialize, ToSchema)]
pub struct EventView {
    /// `evt_…`: the `webhook-id` its pushes carry (deduplicate on it).
    pub id: String,
    /// Its place in the stream: pass as `after` (or `Last-Event-ID`) to continue after it.
    pub position: i64,
    #[serde(rename = "type")]
    #[schema(example = "verification.completed")]
    pub kind: String,
    /// RFC 3339: when it happened.
    pub timestamp: String,
    /// As in the push: the record as the API renders it (masked without `pii`).
    #[schema(value_type = Object)]
    pub data: Box<RawValue>,
}

/// A page of events, oldest first.
#[derive(Serialize, ToSchema)]
pub struct EventPage {
    pub items: Vec<EventView>,
    /// Pass as `after` to get what comes next (the last item's position; when the page is
    /// empty, the `after` given). Null only when there are no events at all.
    pub next_cursor: Option<String>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventParams {
    /// Events after this position (`next_cursor` of the previous page); from the first
    /// when absent.
    after: Option<String>,
    /// Page size, 1 to 500 (default 100).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 500)]
    limit: Option<String>,
}

fn parse_position(text: Option<&str>, code: &'static str) -> Result<i64> {
    match text.map(str::trim).filter(|t| !t.is_empty()) {
        None => Ok(0),
        Some(t) => t.parse::<i64>().ok().filter(|p| *p >= 0).ok_or_else(|| {
            AppError::bad_request(code, "the cursor must be a position this API returned")
        }),
    }
}

/// The views of `events` as `caller` may see them, written to the access log first when
/// they disclose identity data.
async fn views(state: &AppState, caller: &Caller, events: Vec<Event>) -> Result<Vec<EventView>> {
    let pii = caller.has_pii();
    if pii {
        let disclosed = events
            .iter()
            .filter(|e| e.kind == VERIFICATION_COMPLETED)
            .map(|e| e.subject.as_str());
        caller
            .log_access(state, "GET /api/v1/events", disclosed)
            .await?;
    }
    let mut views = Vec::with_capacity(events.len());
    for event in events {
        let (_, data) = crate::push::render::data(&*state.store, &event, pii).await?;
        views.push(EventView {
            position: event.position.unwrap_or_default(),
            timestamp: rfc3339(event.created_at),
            id: event.id,
            kind: event.kind,
            data,
        });
    }
    Ok(views)
}

/// The events pushed to endpoints, for consumers that cannot be reached (behind a
/// firewall): oldest first, paged by position.
#[utoipa::path(
    get,
    path = "/api/v1/events",
    tag = "push",
    params(EventParams),
    responses(
        (status = 200, description = "A page of events", body = EventPage),
        (status = 400, description = "Invalid after or limit", body = ErrorBody),
        ApiErrors,
    ),
)]
pub async fn list_events(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiQuery(params): ApiQuery<EventParams>,
) -> Result<Json<EventPage>> {
    let after = parse_position(params.after.as_deref(), "invalid_cursor")?;
    let limit = match params.limit.as_deref().filter(|l| !l.is_empty()) {
        None => DEFAULT_LIMIT,
        Some(text) => text
            .parse::<i64>()
            .ok()
            .filter(|n| (1..=MAX_LIMIT).contains(n))
            .ok_or_else(|| {
                AppError::bad_request(
                    "invalid_limit",
                    format!("limit must be a whole number from 1 to {MAX_LIMIT}"),
                )
            })?,
    };
    let events = state.store.events_after(after, limit).await?;
    let items = views(&state, &caller, events).await?;
    let next_cursor = match items.last() {
        Some(last) => Some(last.position.to_string()),
        None if after > 0 => Some(after.to_string()),
        None => None,
    };
    Ok(Json(EventPage { items, next_cursor }))
}

/// One event of `GET /api/v1/events/stream` as a Server-Sent Events client reads it (the
/// documentation's shape only: axum's `Sse` writes the fields; keep-alive comments are not
/// events).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct StreamEvent {
    /// The event's position: send it back as `Last-Event-ID` (or `after`) to resume.
    id: String,
    /// The event's type (`verification.completed`, `followup.ended`, `callback.refused`).
    event: String,
    /// The push body, JSON text: `{"type","timestamp","data"}`.
    data: String,
}

/// Where a stream is: the last position sent, and what is fetched but not yet sent.
struct StreamState {
    state: AppState,
    caller: Caller,
    last: i64,
    queued: VecDeque<EventView>,
    /// Held while the stream lives: one of `push.max_streams`.
    _permit: tokio::sync::OwnedSemaphorePermit,
}

/// The same events as a Server-Sent Events stream: each `id:` is the event's position,
/// `event:` its type, `data:` its body (`{"type","timestamp","data"}`). Resumes after
/// `Last-Event-ID` (or `after`); a comment every 15 s (or a third of `server.idle_timeout`)
/// keeps the connection alive.
#[utoipa::path(
    get,
    path = "/api/v1/events/stream",
    tag = "push",
    params(
        EventParams,
        ("Last-Event-ID" = Option<String>, Header, description = "Resume after this position (what the last `id:` said)"),
    ),
    responses(
        (status = 200, description = "The event stream, one `StreamEvent` per event", content_type = "text/event-stream", body = StreamEvent),
        (status = 400, description = "Invalid Last-Event-ID or after", body = ErrorBody),
        (status = 429, description = "`push.max_streams` streams are open already", body = ErrorBody),
        ApiErrors,
    ),
)]
pub async fn stream_events(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    ApiQuery(params): ApiQuery<EventParams>,
) -> Result<Response> {
    let resume = headers
        .get("last-event-id")
        .map(|v| v.to_str().unwrap_or("x").to_owned());
    let last = match resume {
        Some(id) => parse_position(Some(&id), "invalid_last_event_id")?,
        None => parse_position(params.after.as_deref(), "invalid_cursor")?,
    };
    let permit =
        state
            .streams
            .clone()
            .try_acquire_owned()
            .map_err(|_| AppError::TooManyRequests {
                retry_after_secs: 5,
            })?;
    let start = StreamState {
        state,
        caller,
        last,
        queued: VecDeque::new(),
        _permit: permit,
    };
    // Bytes must move well within `server.idle_timeout`, or the connection is cut as idle.
    let keep_alive = KEEP_ALIVE.min(start.state.settings.server.idle_timeout / 3);
    let stream = futures_util::stream::unfold(start, next_event);
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(keep_alive))
        .into_response())
}

/// The stream's next item: a queued event, or the next ones once published. Ends when the
/// server stops, or when storage fails (the client resumes with `Last-Event-ID`).
async fn next_event(
    mut s: StreamState,
) -> Option<(std::result::Result<SseEvent, Infallible>, StreamState)> {
    loop {
        if let Some(view) = s.queued.pop_front() {
            s.last = view.position;
            let body = serde_json::json!({
                "type": view.kind,
                "timestamp": view.timestamp,
                "data": view.data,
            })
            .to_string();
            let event = SseEvent::default()
                .id(view.position.to_string())
                .event(view.kind)
                .data(body);
            return Some((Ok(event), s));
        }
        if s.state.stop_streams.is_cancelled() {
            return None;
        }
        let events = match s.state.store.events_after(s.last, DEFAULT_LIMIT).await {
            Ok(events) => events,
            Err(e) => {
                tracing::warn!(error.message = %e, "event stream ended: storage");
                return None;
            }
        };
        if events.is_empty() {
            tokio::select! {
                () = s.state.stop_streams.cancelled() => return None,
                () = tokio::time::sleep(s.state.settings.push.poll_interval) => {}
            }
            continue;
        }
        match views(&s.state, &s.caller, events).await {
            Ok(views) => s.queued.extend(views),
            Err(_) => return None,
        }
    }
}
