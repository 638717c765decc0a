//! The operator console: `/console`, server-rendered HTML (askama templates under
//! `templates/console/`, checked at compile time) that works without JavaScript, with charts
//! as inline SVG built here, and every asset (CSS, icon) served by the binary.
//!
//! Owns the console's routes and the headers every console answer carries, error pages
//! included: a strict CSP ([`CSP`]: nothing but our own stylesheet and images, no script at
//! all, forms only to us, no framing), `Cache-Control: no-store`, `X-Frame-Options: DENY`,
//! `Referrer-Policy: no-referrer` and `nosniff`.
//!
//! Parts: [`session`] signs in with an `api.tokens` token that has the `console` scope and
//! keeps a server-side session in the database (so every replica serves it), with the CSRF
//! token every form carries; [`pages`] renders the overview, search and a verification's
//! timeline and runs the actions (fetch now, reveal identity data, replay); [`charts`]
//! builds the SVG geometry; [`push`] shows push deliveries (by endpoint, and a verification's
//! attempts) and runs retry and disable/enable under the API's rules.
//!
//! Invariants: nothing here writes except through [`crate::store::ConsoleStore`] and the
//! very code paths the API uses (manual fetch, replay, the access log, push retry and
//! endpoint enable/disable), under the same rules; identity data is masked by the API's
//! views unless the session's token has `pii` *and* the operator asks, by a POST that is
//! access-logged like an API read; no console answer may be cached or framed.

pub mod charts;
pub mod pages;
pub mod push;
pub mod session;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::set_header::SetResponseHeaderLayer;

use crate::http::AppState;

/// The Content-Security-Policy of every console answer: our stylesheet and images only (and
/// `data:` images), no script of any origin, forms posted only to us, never framed.
pub const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self' data:; \
                       form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Largest form body the console accepts (its forms hold a token and a few short fields).
const BODY_LIMIT: usize = 16 * 1024;

const CSS: &str = include_str!("assets/console.css");
const ICON: &str = include_str!("assets/icon.svg");

/// The console's routes, to be nested under `/console`, with their headers.
pub fn router(state: &AppState) -> Router<AppState> {
    let sign_in = post(session::sign_in);
    let sign_in = match crate::http::limit::console_sign_in_layer(
        &state.settings.server,
        &state.settings.console,
    ) {
        // Refused as a page a browser shows, not the API's JSON (with the same Retry-After).
        Some(limit) => sign_in.layer(limit.error_handler(|error| match error {
            tower_governor::GovernorError::TooManyRequests { wait_time, .. } => {
                pages::ConsoleError::TooManyRequests(wait_time.max(1)).into_response()
            }
            other => {
                tracing::error!(error.message = %other, "console: sign-in rate limiter");
                pages::ConsoleError::Internal.into_response()
            }
        })),
        None => sign_in,
    };
    Router::new()
        .route("/", get(pages::overview))
        .route("/sign-in", get(session::sign_in_form))
        .route("/sign-in", sign_in)
        .route("/sign-out", post(session::sign_out))
        .route("/verifications", get(pages::search))
        .route("/verification", get(pages::detail))
        .route("/verification/reveal", post(pages::reveal))
        .route("/verification/fetch", post(pages::fetch_now))
        .route("/replay", get(pages::replay_form))
        .route("/replay/preview", post(pages::replay_preview))
        .route("/replay/run", post(pages::replay_run))
        .route("/push/retry", post(push::retry))
        .route("/push/endpoint/disable", post(push::disable))
        .route("/push/endpoint/enable", post(push::enable))
        .route("/assets/console.css", get(css))
        .route("/assets/icon.svg", get(icon))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        // Inside the header layers, so that even a panic's answer carries them.
        .layer(CatchPanicLayer::custom(|_| {
            pages::ConsoleError::Internal.into_response()
        }))
        .layer(header_layer(header::CONTENT_SECURITY_POLICY, CSP))
        .layer(header_layer(header::CACHE_CONTROL, "no-store"))
        .layer(header_layer(header::X_FRAME_OPTIONS, "DENY"))
        .layer(header_layer(header::REFERRER_POLICY, "no-referrer"))
        .layer(header_layer(header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
}

fn header_layer(
    name: header::HeaderName,
    value: &'static str,
) -> SetResponseHeaderLayer<HeaderValue> {
    SetResponseHeaderLayer::overriding(name, HeaderValue::from_static(value))
}

async fn css() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], CSS).into_response()
}

async fn icon() -> Response {
    ([(header::CONTENT_TYPE, "image/svg+xml")], ICON).into_response()
}

async fn not_found() -> Response {
    pages::ConsoleError::NotFound.into_response()
}
