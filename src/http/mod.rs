//! The HTTP surface: FaceID's callbacks, the merchant API, and operational endpoints, with
//! the cross-cutting layers (tracing by matched route, sensitive-header redaction, body
//! limit, timeout, panic catching, a per-IP rate limit on the callback routes, one JSON shape
//! for every error), and the connection handling that serves them ([`serve`]).
//!
//! Invariants: request spans and metrics carry the method and the *matched* route only —
//! never the raw URI or query, which may hold a biz_id list, tokens or other callers' data —
//! and both come from fixed sets ([`method_label`], the route templates or `unmatched`), so
//! what a client sends cannot add label values. With `server.admin_listen` set, `/metrics` is
//! served by [`admin_router`] only.

pub mod api;
pub mod auth;
pub mod callbacks;
pub mod error;
pub mod extract;
pub mod followup;
pub mod journal;
pub mod limit;
pub mod openapi;
pub mod ops;
pub mod push;
pub mod replay;
pub mod serve;
pub mod views;

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::{Method, StatusCode, header};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::clock::SharedClock;
use crate::config::Settings;
use crate::store::ServingStore;

/// Everything a handler needs, cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// The store's serving parts: callbacks, the API, replay, readiness.
    pub store: Arc<dyn ServingStore>,
    pub settings: Arc<Settings>,
    pub clock: SharedClock,
    /// Wakes the follow-up worker when a job becomes due sooner than its next poll.
    pub wake_fetcher: Arc<tokio::sync::Notify>,
    /// Renders `/metrics`.
    pub metrics: metrics_exporter_prometheus::PrometheusHandle,
    /// How much of each refused delivery the journal keeps today.
    pub refused_quota: Arc<journal::RefusedQuota>,
    /// Open event streams (`push.max_streams` permits).
    pub streams: Arc<tokio::sync::Semaphore>,
    /// Cancelled when the server stops: ends the event streams, which would otherwise keep
    /// their connections (and the graceful shutdown) open forever.
    pub stop_streams: tokio_util::sync::CancellationToken,
    /// Sends `POST /api/v1/endpoints/{id}/test` pushes (the dispatcher has its own).
    pub push_client: crate::push::PushClient,
}

/// The method as a metric label or span field: one of the standard methods, or `other` for
/// anything a client made up (a method is any token, of any length).
pub fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "other",
    }
}

/// The matched route template, or `unmatched` for every path no route takes.
fn route_label(request: &Request) -> String {
    request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned())
}

/// Records each request's latency by method, matched route and the status its client got
/// ([`crate::metrics::REQUEST_SECONDS`]), a 408 from the request timeout and a 500 from a
/// caught panic included. A plain tower layer: axum's `from_fn` would clone the whole inner
/// service on every request.
#[derive(Clone, Copy)]
struct RecordLatencyLayer;

impl<S> tower::Layer<S> for RecordLatencyLayer {
    type Service = RecordLatency<S>;

    fn layer(&self, inner: S) -> RecordLatency<S> {
        RecordLatency(inner)
    }
}

#[derive(Clone)]
struct RecordLatency<S>(S);

impl<S, B> tower::Service<Request> for RecordLatency<S>
where
    S: tower::Service<Request, Response = axum::http::Response<B>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = futures_util::future::BoxFuture<'static, Result<S::Response, S::Error>>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), S::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let started = std::time::Instant::now();
        let method = method_label(request.method());
        let route = route_label(&request);
        let response = self.0.call(request);
        Box::pin(async move {
            let response = response.await?;
            let status = response.status().as_u16().to_string();
            metrics::histogram!(crate::metrics::REQUEST_SECONDS, "method" => method, "route" => route, "status" => status)
                .record(started.elapsed().as_secs_f64());
            Ok(response)
        })
    }
}

/// The public listener's routes: callbacks, the API, health, the operator console when
/// `console.enabled`, and `/metrics` unless it has a listener of its own
/// (`server.admin_listen`).
pub fn router(state: AppState) -> Router {
    let body_limit = state.settings.server.body_limit;
    let callbacks = callbacks::router(limit::return_get_layer(&state.settings.server))
        .layer(DefaultBodyLimit::max(body_limit));
    // Only the public callback routes are rate limited: the API has tokens, and the health
    // routes must keep answering an orchestrator.
    let callbacks = match limit::layer(&state.settings.server) {
        Some(rate_limit) => callbacks.layer(rate_limit),
        None => callbacks,
    };
    let api = api::router(state.clone())
        // Outside the authentication layer: the document describes the API, it holds no data.
        .route("/openapi.json", axum::routing::get(openapi::serve))
        .layer(DefaultBodyLimit::max(api::BODY_LIMIT));
    let mut routes = Router::new()
        .merge(callbacks)
        .nest("/api/v1", api)
        .merge(ops::router());
    if state.settings.server.admin_listen.is_none() {
        routes = routes.merge(ops::metrics_router());
    }
    if state.settings.console.enabled {
        routes = routes.nest("/console", crate::console::router(&state));
    }
    with_layers(routes, state)
}

/// The admin listener's routes (`server.admin_listen`): `/metrics` and the health routes.
pub fn admin_router(state: AppState) -> Router {
    with_layers(ops::router().merge(ops::metrics_router()), state)
}

/// The fallback, the state and the cross-cutting layers every listener shares.
fn with_layers(routes: Router<AppState>, state: AppState) -> Router {
    let timeout = state.settings.server.request_timeout;
    let not_found = tower::service_fn(|_: Request| async {
        Ok::<_, std::convert::Infallible>(axum::response::IntoResponse::into_response(
            error::AppError::NotFound("no such route"),
        ))
    });
    // One `layer` call for all the cross-cutting layers: axum boxes each call's service per
    // route and clones the whole chain of boxes on every request, so one call is one box.
    // Outermost first: the layers see a request in this order.
    let layers = tower::ServiceBuilder::new()
        .layer(SetSensitiveRequestHeadersLayer::new([
            header::AUTHORIZATION,
            header::COOKIE,
            header::PROXY_AUTHORIZATION,
        ]))
        .layer(
            TraceLayer::new_for_http().make_span_with(|request: &Request| {
                let (method, route) = (method_label(request.method()), route_label(request));
                tracing::info_span!("request", method, route = %route)
            }),
        )
        // Unmatched paths are counted too, all under one route label.
        .layer(RecordLatencyLayer)
        .map_response(error::json_errors)
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            timeout,
        ))
        .layer(CatchPanicLayer::custom(|_| {
            error::AppError::Internal(anyhow::anyhow!("handler panicked")).into_response_owned()
        }));
    routes
        .fallback_service(not_found)
        .with_state(state)
        .layer(layers)
}

impl error::AppError {
    fn into_response_owned(self) -> axum::response::Response {
        axum::response::IntoResponse::into_response(self)
    }
}
