//! Operational endpoints: liveness (`/healthz`, the process answers) and readiness
//! (`/readyz`, the database answers). Neither needs a token; neither reveals configuration.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

use super::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
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
