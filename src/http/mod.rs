//! The HTTP surface: FaceID's callbacks, the merchant API, and operational endpoints, with
//! the cross-cutting layers (tracing by matched route, sensitive-header redaction, body
//! limit, timeout, panic catching, a per-IP rate limit on the callback routes).
//!
//! Invariant: request spans carry the method and the *matched* route only — never the raw
//! URI or query, which may hold a biz_id list, tokens or other callers' data.

pub mod api;
pub mod callbacks;
pub mod error;
pub mod extract;
pub mod fetch;
pub mod limit;
pub mod openapi;
pub mod ops;
pub mod replay;

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::{StatusCode, header};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::clock::SharedClock;
use crate::config::Settings;
use crate::store::Store;

/// Everything a handler needs, cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub settings: Arc<Settings>,
    pub clock: SharedClock,
    /// Wakes the follow-up worker when a job becomes due sooner than its next poll.
    pub wake_fetcher: Arc<tokio::sync::Notify>,
    /// Renders `/metrics`.
    pub metrics: metrics_exporter_prometheus::PrometheusHandle,
}

/// Records each request's latency by method, matched route and status.
async fn record_latency(
    request: Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let started = std::time::Instant::now();
    let method = request.method().as_str().to_owned();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".into());
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::histogram!(crate::metrics::REQUEST_SECONDS, "method" => method, "route" => route, "status" => status)
        .record(started.elapsed().as_secs_f64());
    response
}

pub fn router(state: AppState) -> Router {
    let body_limit = state.settings.server.body_limit;
    let timeout = state.settings.server.request_timeout;
    let callbacks = callbacks::router(limit::return_get_layer(&state.settings.server))
        .layer(DefaultBodyLimit::max(body_limit));
    // Only the public callback routes are rate limited: the API has tokens, and the health
    // routes must keep answering an orchestrator.
    let callbacks = match limit::layer(&state.settings.server) {
        Some(rate_limit) => callbacks.layer(rate_limit),
        None => callbacks,
    };
    let api = api::router(state.clone()).layer(DefaultBodyLimit::max(64 * 1024));
    Router::new()
        .merge(callbacks)
        .nest("/api/v1", api)
        .merge(ops::router())
        .fallback(|| async { error::AppError::NotFound("no such route") })
        .with_state(state)
        .route_layer(axum::middleware::from_fn(record_latency))
        .layer(CatchPanicLayer::custom(|_| {
            error::AppError::Internal(anyhow::anyhow!("handler panicked")).into_response_owned()
        }))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            timeout,
        ))
        .layer(
            TraceLayer::new_for_http().make_span_with(|request: &Request| {
                let route = request
                    .extensions()
                    .get::<MatchedPath>()
                    .map(|p| p.as_str().to_owned())
                    .unwrap_or_else(|| "unmatched".to_owned());
                tracing::info_span!("request", method = %request.method(), route = %route)
            }),
        )
        .layer(SetSensitiveRequestHeadersLayer::new([
            header::AUTHORIZATION,
            header::COOKIE,
            header::PROXY_AUTHORIZATION,
        ]))
}

impl error::AppError {
    fn into_response_owned(self) -> axum::response::Response {
        axum::response::IntoResponse::into_response(self)
    }
}
