//! Operational endpoints: liveness (`/healthz`, the process answers), readiness
//! (`/readyz`, the database answers) and `/metrics`. None needs a token; none reveals
//! configuration. `/metrics` is a router of its own so that it can live on
//! `server.admin_listen` instead of the public listener.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

use super::AppState;

/// The health routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
}

/// `/metrics`.
pub fn metrics_router() -> Router<AppState> {
    Router::new().route("/metrics", get(metrics_text))
}

/// Prometheus text format. Like the health routes it needs no token: it carries counts only,
/// never identifiers, under labels from fixed sets; `server.admin_listen` keeps it off the
/// public listener.
async fn metrics_text(State(state): State<AppState>) -> Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}

async fn healthz() -> Response {
    axum::Json(json!({"status": "ok"})).into_response()
}

async fn readyz(State(state): State<AppState>) -> Response {
    match state.store.ping().await {
        Ok(()) => {
            axum::Json(json!({"status": "ready", "database": state.store.engine()})).into_response()
        }
        Err(e) => {
            tracing::warn!(error.message = %e, "readiness check failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(json!({"status": "unavailable", "database": state.store.engine()})),
            )
                .into_response()
        }
    }
}
