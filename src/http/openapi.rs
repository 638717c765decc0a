//! The OpenAPI 3 document of `/api/v1`, generated with utoipa from the handlers' annotations
//! and served (without a token: it describes the API, it holds no data) at
//! `GET /api/v1/openapi.json`.
//!
//! Invariant: the document is the contract the committed `openapi.json` at the repository
//! root records; `tests/api/openapi.rs` fails when they differ, and Schemathesis
//! (`scripts/schemathesis.sh`) checks the running service against it.
//!
//! Dependencies run one way: this module names the handlers and the schemas of the modules
//! that define them; none of them imports it (the route serving it is mounted by
//! [`super::router`]).

use axum::response::{IntoResponse, Response};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::error::ErrorBody;
use super::followup::{RawRequest, Scheduled};
use super::push::{
    EndpointList, EndpointRequest, EndpointView, EndpointWithSecret, EventPage, EventTypeName,
    EventView, NewEndpointRequest, Queued, StreamEvent, TestResult,
};
use super::replay::{ReplayRequest, ReplayView};
use super::views::{
    CallbackPage, CallbackView, FetchStateName, FetchView, SourceName, VerificationPage,
    VerificationView,
};
use crate::replay::ReplayCounts;

/// Bearer token security scheme name used by every operation.
pub const BEARER: &str = "bearer";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "faceid-receiver API",
        description = "Query stored Megvii FaceID verification outcomes and the callback journal, ask for follow-ups, and receive outcomes in your backend (push endpoints, or the event feed and stream). Every operation needs `Authorization: Bearer <token>` (one of `api.tokens`). This document itself is served without a token at `GET /api/v1/openapi.json`.",
        license(name = "MIT OR Apache-2.0"),
    ),
    paths(
        super::api::list_verifications,
        super::api::get_verification,
        super::api::list_callbacks,
        super::followup::manual_fetch,
        super::followup::image,
        super::followup::raw_result,
        super::replay::replay_refused,
        super::push::create_endpoint,
        super::push::list_endpoints,
        super::push::get_endpoint,
        super::push::update_endpoint,
        super::push::delete_endpoint,
        super::push::rotate_secret,
        super::push::test_endpoint,
        super::push::replay_endpoint,
        super::push::retry_event,
        super::push::list_events,
        super::push::stream_events,
    ),
    components(schemas(
        VerificationView,
        FetchView,
        CallbackView,
        Scheduled,
        RawRequest,
        ReplayRequest,
        ReplayView,
        ReplayCounts,
        ErrorBody,
        VerificationPage,
        CallbackPage,
        FetchStateName,
        SourceName,
        NewEndpointRequest,
        EndpointRequest,
        EventTypeName,
        EndpointView,
        EndpointWithSecret,
        EndpointList,
        TestResult,
        Queued,
        EventView,
        EventPage,
        StreamEvent,
    )),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    tags((name = "verifications", description = "Stored outcomes and follow-ups"),
         (name = "callbacks", description = "The journal of every callback delivery"),
         (name = "push", description = "Outcomes pushed to your endpoints (signed per Standard Webhooks), and the same events to pull")),
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            BEARER,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("One of the tokens configured in `api.tokens`."))
                    .build(),
            ),
        );
    }
}

/// The document as pretty JSON with a trailing newline: the exact bytes of the committed copy.
pub fn document_json() -> String {
    let mut text = ApiDoc::openapi()
        .to_pretty_json()
        .expect("the OpenAPI document serializes");
    text.push('\n');
    text
}

/// `GET /api/v1/openapi.json`.
pub async fn serve() -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        document_json(),
    )
        .into_response()
}
