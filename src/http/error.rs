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
    /// 409 with a reason (e.g. the get_result budget is spent).
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    /// 413.
    #[error("request body is larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    /// 429: this client sent more callbacks than `server.rate_limit_*` allow.
    #[error("too many requests; retry in {retry_after_secs}s")]
    TooManyRequests { retry_after_secs: u64 },
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
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::NotStored(_) | Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            Self::BadRequest { code, .. } | Self::Conflict { code, .. } => code,
            Self::Unauthorized => "unauthorized",
            Self::Forbidden(_) => "forbidden",
            Self::BadSignature(_) => "bad_signature",
            Self::NotFound(_) => "not_found",
            Self::PayloadTooLarge { .. } => "payload_too_large",
            Self::TooManyRequests { .. } => "rate_limited",
            Self::Unavailable(_) => "storage_unavailable",
            Self::NotStored(_) => "not_stored",
            Self::Internal(_) => "internal",
        }
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
                HeaderValue::from(retry_after_secs.max(1)),
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
