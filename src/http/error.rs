//! The one HTTP error type. Every handler returns [`Result<T>`]; this module alone decides
//! status codes and bodies.
//!
//! Invariants: bodies are `{"error": "<stable_code>", "message": "<human text>"}`; messages
//! name the problem but never echo request content, identity data or internals. Bad input is
//! a 4xx, storage trouble a 503; a 500 only means a bug, and its detail goes to the log only.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::store::StoreError;

pub type Result<T, E = AppError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// 400 with a stable code and a message naming the problem.
    #[error("{message}")]
    BadRequest { code: &'static str, message: String },
    /// 401: no or unknown bearer token.
    #[error("missing or invalid bearer token")]
    Unauthorized,
    /// 403: the token is valid but lacks the scope this needs (e.g. `pii` for images).
    #[error("{0}")]
    Forbidden(&'static str),
    /// 403: the callback's sign does not match.
    #[error("{0}")]
    BadSignature(String),
    /// 404.
    #[error("{0}")]
    NotFound(&'static str),
    /// 422: the request is well-formed but names something we refuse (an endpoint URL the
    /// target policy forbids, an unknown event type).
    #[error("{message}")]
    Unprocessable { code: &'static str, message: String },
    /// 409 with a reason (e.g. the get_result budget is spent).
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    /// 413.
    #[error("request body is larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    /// 429: this client sent more callbacks than `server.rate_limit_*` allow. The wait is
    /// rounded up to at least a second, in the message and in `Retry-After` alike.
    #[error("too many requests; retry in {}s", whole_seconds(*.retry_after_secs))]
    TooManyRequests { retry_after_secs: u64 },
    /// Any other error status that axum or a layer produced without a body of ours (405 with
    /// its `Allow`, 408 from the request timeout, a 413 or 415 from an extractor, …), given
    /// our shape by [`json_errors`].
    #[error("{}", status_message(*.0))]
    Status(StatusCode),
    /// 503: storage cannot commit; the caller should retry.
    #[error("storage is unavailable, retry later")]
    Unavailable(#[source] StoreError),
    /// 500: a verified callback was journaled (body kept) but the database refused to store
    /// its result — a data error in this delivery alone, while storage itself is up. Not a
    /// 2xx (nothing was stored), not a 503 (that would be a lie about storage): our fault,
    /// and `faceid-receiver replay` stores it once the fault is fixed.
    #[error(
        "the result was verified and journaled but could not be stored; an operator can replay it"
    )]
    NotStored(#[source] StoreError),
    /// 500: a bug. The detail is logged, never sent.
    #[error("internal error")]
    Internal(#[from] anyhow::Error),
}

impl AppError {
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::BadRequest {
            code,
            message: message.into(),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest { .. } => StatusCode::BAD_REQUEST,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) | Self::BadSignature(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Conflict { .. } => StatusCode::CONFLICT,
            Self::Unprocessable { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::NotStored(_) | Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Status(status) => *status,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            Self::BadRequest { code, .. }
            | Self::Conflict { code, .. }
            | Self::Unprocessable { code, .. } => code,
            Self::Unauthorized => "unauthorized",
            Self::Forbidden(_) => "forbidden",
            Self::BadSignature(_) => "bad_signature",
            Self::NotFound(_) => "not_found",
            Self::PayloadTooLarge { .. } => "payload_too_large",
            Self::TooManyRequests { .. } => "rate_limited",
            Self::Unavailable(_) => "storage_unavailable",
            Self::NotStored(_) => "not_stored",
            Self::Internal(_) => "internal",
            Self::Status(status) => status_code(*status),
        }
    }
}

fn whole_seconds(secs: u64) -> u64 {
    secs.max(1)
}

/// The stable code of an error status we did not produce ourselves.
fn status_code(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "bad_request",
        401 => "unauthorized",
        403 => "forbidden",
        404 => "not_found",
        405 => "method_not_allowed",
        408 => "request_timeout",
        411 => "length_required",
        413 => "payload_too_large",
        414 => "uri_too_long",
        415 => "unsupported_media_type",
        422 => "unprocessable",
        429 => "rate_limited",
        431 => "headers_too_large",
        500..=599 => "internal",
        _ => "client_error",
    }
}

fn status_message(status: StatusCode) -> String {
    match status {
        StatusCode::METHOD_NOT_ALLOWED => {
            "method not allowed on this route; the Allow header lists the ones it takes".into()
        }
        StatusCode::REQUEST_TIMEOUT => {
            "the request did not complete within server.request_timeout".into()
        }
        StatusCode::PAYLOAD_TOO_LARGE => "request body is too large".into(),
        other => other
            .canonical_reason()
            .unwrap_or("request refused")
            .to_ascii_lowercase(),
    }
}

impl From<StoreError> for AppError {
    fn from(error: StoreError) -> Self {
        // Only an unavailable database is a 503 (retry later): anything else a statement
        // refuses is not about the server, retrying the same request would fail the same
        // way, and it is our fault, not the caller's — a 500 with the detail in the log. A
        // value that does not decrypt is a configuration fault (wrong key) the log names.
        match error {
            StoreError::Unavailable(_) => Self::Unavailable(error),
            error => Self::Internal(anyhow::Error::new(error)),
        }
    }
}

/// Every error answer: `{"error": "<stable_code>", "message": "<human text>"}`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// Stable machine-readable code, e.g. `not_found`, `unauthorized`, `invalid_limit`.
    #[schema(value_type = String, example = "not_found")]
    pub error: &'static str,
    /// Human-readable explanation; never echoes request content.
    pub message: String,
}

/// The error answers every `/api/v1` operation documents whatever it does: no valid token
/// (401, from [`super::auth`]) and storage unavailable (503). Named in each operation's
/// `responses(...)` beside the answers of its own.
#[derive(utoipa::IntoResponses)]
pub enum ApiErrors {
    #[response(status = 401, description = "Missing or unknown token")]
    Unauthorized(ErrorBody),
    #[response(status = 503, description = "Storage unavailable")]
    Unavailable(ErrorBody),
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let status = self.status();
        match &self {
            Self::Internal(e) => {
                tracing::error!(error.message = %e, error.cause_chain = ?e, "request failed")
            }
            Self::NotStored(e) => tracing::error!(
                error.message = %e,
                error.cause_chain = %crate::telemetry::error_chain(e),
                "verified callback not stored: the database refused its data"
            ),
            Self::Unavailable(e) => {
                metrics::counter!(crate::metrics::STORE_ERRORS, "op" => "request").increment(1);
                tracing::warn!(error.message = %e, error.cause_chain = %crate::telemetry::error_chain(e), "storage unavailable")
            }
            _ => tracing::debug!(error.code = self.code(), "request refused"),
        }
        let body = ErrorBody {
            error: self.code(),
            message: self.to_string(),
        };
        let mut response = (status, Json(body)).into_response();
        if matches!(self, Self::Unauthorized) {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Self::TooManyRequests { retry_after_secs } = self {
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from(whole_seconds(retry_after_secs)),
            );
        }
        if matches!(self, Self::Unavailable(_)) {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        response
    }
}

/// Gives every error answer our shape. An error status (4xx, 5xx) whose body is not JSON was
/// produced by axum or a layer, not by a handler (405 and its `Allow`, 408 from the request
/// timeout, a body-limit 413, …): its body is replaced by [`ErrorBody`], and its headers
/// (`Allow`, `Retry-After`, …) are kept. Answers that are already JSON pass untouched, and so
/// do the operator console's HTML error pages (`console/pages.rs`).
pub fn json_errors<B>(response: Response<B>) -> Response
where
    B: axum::body::HttpBody<Data = axum::body::Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json") || v.starts_with("text/html"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response.map(axum::body::Body::new);
    }
    let (mut parts, _) = response.into_parts();
    let ours = AppError::Status(status).into_response();
    parts.headers.remove(header::CONTENT_LENGTH);
    for (name, value) in ours.headers() {
        parts.headers.insert(name, value.clone());
    }
    Response::from_parts(parts, ours.into_body())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rate_limit_says_the_wait_it_sends_in_retry_after() {
        for (wait, said) in [(0, 1), (1, 1), (7, 7)] {
            let error = AppError::TooManyRequests {
                retry_after_secs: wait,
            };
            assert_eq!(
                error.to_string(),
                format!("too many requests; retry in {said}s")
            );
            let response = error.into_response();
            assert_eq!(response.headers()[header::RETRY_AFTER], said.to_string());
        }
    }

    #[test]
    fn statuses_of_others_get_stable_codes() {
        assert_eq!(
            AppError::Status(StatusCode::METHOD_NOT_ALLOWED).code(),
            "method_not_allowed"
        );
        assert_eq!(
            AppError::Status(StatusCode::REQUEST_TIMEOUT).code(),
            "request_timeout"
        );
        assert_eq!(
            AppError::Status(StatusCode::IM_A_TEAPOT).code(),
            "client_error"
        );
        assert_eq!(
            AppError::Status(StatusCode::UNSUPPORTED_MEDIA_TYPE).to_string(),
            "unsupported media type"
        );
    }
}
