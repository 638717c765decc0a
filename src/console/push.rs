//! Push deliveries (signed webhooks to the merchant's endpoints, [`crate::push`]) in the
//! console: the overview's "push deliveries by endpoint" panel ([`PushPanel`]), a
//! verification's push attempts ([`PushAttempts`], merged into its timeline by `pages`), and
//! the actions "retry push" (an event) and "disable"/"enable" (an endpoint).
//!
//! Invariants: an endpoint is shown by its origin only (scheme, host, port: [`origin`]),
//! never its path or query, which may hold the merchant's token, and never its secret; the
//! answer bytes an endpoint sent back are never read here (the attempt records the console
//! reads do not carry them); the actions need the `admin` scope, like the API routes, and run
//! the very functions those routes run ([`http::push::retry`], [`http::push::set_enabled`]),
//! after the session's CSRF token was checked; each is written to `console_audit`.

use std::collections::HashMap;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::pages::{ConsoleError, ConsoleForm, Event, detail_link, when};
use super::session::{Operator, operator};
use crate::config::ADMIN_SCOPE;
use crate::http::callbacks::Peer;
use crate::http::{self, AppState};
use crate::store::EndpointHealth;

/// Push attempts shown on a verification's page.
const ATTEMPT_LIMIT: i64 = 200;

/// One endpoint's deliveries, for the overview.
pub struct EndpointRow {
    pub id: String,
    /// Scheme, host and port only.
    pub origin: String,
    pub pending: i64,
    pub failing: i64,
    pub failed: i64,
    pub delivered: i64,
    /// When and why it is disabled.
    pub disabled: Option<String>,
    /// Since when its deliveries fail (while enabled).
    pub failing_since: Option<String>,
}

/// The overview's push panel.
pub struct PushPanel {
    /// `push.enabled`: whether this instance sends pushes at all.
    pub sending: bool,
    pub endpoints: Vec<EndpointRow>,
}

/// An event about a verification, which an admin may send again.
pub struct PushEvent {
    pub id: String,
    pub kind: String,
}

/// A verification's push attempts: timeline entries, and the events they were for.
pub struct PushAttempts {
    pub timeline: Vec<Event>,
    pub events: Vec<PushEvent>,
}

/// `https://hooks.example.com:8443` of a URL: never its userinfo, path or query.
pub fn origin(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(url) if url.has_host() => url.origin().ascii_serialization(),
        _ => "(an unreadable URL)".to_owned(),
    }
}

/// Endpoint id → origin, for every registered endpoint.
async fn origins(state: &AppState) -> Result<HashMap<String, String>, ConsoleError> {
    let limit = i64::from(state.settings.push.max_endpoints).max(1) * 2;
    Ok(state
        .store
        .endpoints(limit)
        .await?
        .into_iter()
        .map(|e| (e.id, origin(&e.url)))
        .collect())
}

/// The overview's panel, from [`crate::store::EndpointStore::endpoint_health`].
pub async fn overview_panel(state: &AppState) -> Result<PushPanel, ConsoleError> {
    let health = state.store.endpoint_health().await?;
    let origins = origins(state).await?;
    let endpoints = health
        .into_iter()
        .map(|h: EndpointHealth| EndpointRow {
            origin: origins
                .get(&h.endpoint_id)
                .cloned()
                .unwrap_or_else(|| "(removed)".to_owned()),
            pending: h.pending,
            failing: h.failing,
            failed: h.failed,
            delivered: h.delivered,
            disabled: h.disabled_at.map(|at| match h.disabled_reason {
                Some(reason) => format!("since {}: {reason}", when(at)),
                None => format!("since {}", when(at)),
            }),
            failing_since: h.failing_since.map(when),
            id: h.endpoint_id,
        })
        .collect();
    Ok(PushPanel {
        sending: state.settings.push.enabled,
        endpoints,
    })
}

/// The push attempts about `biz_id`, from
/// [`crate::store::EndpointStore::push_attempts`], as timeline entries.
pub async fn attempts(state: &AppState, biz_id: &str) -> Result<PushAttempts, ConsoleError> {
    let records = state.store.push_attempts(biz_id, ATTEMPT_LIMIT).await?;
    let origins = if records.is_empty() {
        HashMap::new()
    } else {
        origins(state).await?
    };
    let mut events: Vec<PushEvent> = Vec::new();
    let mut timeline = Vec::with_capacity(records.len());
    for a in records {
        if !events.iter().any(|e| e.id == a.event_id) {
            events.push(PushEvent {
                id: a.event_id.clone(),
                kind: a.event_type.clone(),
            });
        }
        let host = origins
            .get(&a.endpoint_id)
            .map_or("a removed endpoint", String::as_str);
        timeline.push(Event {
            at: a.at,
            when: when(a.at),
            what: format!("Push {} to {host} (attempt {})", a.event_type, a.attempt),
            bad: a.outcome != "delivered",
            outcome: a.outcome,
            detail: format!("{} · {} ms · {}", a.code, a.latency_ms, a.event_id),
        });
    }
    Ok(PushAttempts { timeline, events })
}

fn require_admin(operator: &Operator) -> Result<(), ConsoleError> {
    if operator.has(ADMIN_SCOPE) {
        Ok(())
    } else {
        Err(ConsoleError::Forbidden(
            "Retrying pushes and disabling or enabling endpoints needs a token with the admin scope.",
        ))
    }
}

#[derive(Deserialize)]
pub struct RetryForm {
    csrf: Option<String>,
    event_id: Option<String>,
    /// The verification page to go back to.
    biz_id: Option<String>,
}

/// "Retry push": every delivery of the event starts again, as `POST /api/v1/events/{id}/retry`.
pub async fn retry(
    State(state): State<AppState>,
    headers: HeaderMap,
    Peer(peer): Peer,
    ConsoleForm(form): ConsoleForm<RetryForm>,
) -> Result<Response, ConsoleError> {
    let operator = operator(&state, &headers, peer).await?;
    operator.check_csrf(&state, form.csrf.as_deref()).await?;
    require_admin(&operator)?;
    let event_id = form.event_id.ok_or(ConsoleError::NotFound)?;
    let queued = http::push::retry(&state, &event_id).await?;
    let detail = format!("{event_id} queued={queued}");
    operator
        .audit(&state, "push_retry", form.biz_id.as_deref(), Some(&detail))
        .await?;
    let back = match &form.biz_id {
        Some(biz_id) => format!("{}&notice=retry", detail_link(biz_id)),
        None => "/console".to_owned(),
    };
    Ok(Redirect::to(&back).into_response())
}

#[derive(Deserialize)]
pub struct EndpointForm {
    csrf: Option<String>,
    endpoint_id: Option<String>,
}

async fn set_enabled(
    state: AppState,
    headers: HeaderMap,
    peer: Option<std::net::SocketAddr>,
    form: EndpointForm,
    enabled: bool,
) -> Result<Response, ConsoleError> {
    let operator = operator(&state, &headers, peer).await?;
    operator.check_csrf(&state, form.csrf.as_deref()).await?;
    require_admin(&operator)?;
    let id = form.endpoint_id.ok_or(ConsoleError::NotFound)?;
    let endpoint = http::push::set_enabled(&state, &id, enabled).await?;
    let event = if enabled {
        "endpoint_enable"
    } else {
        "endpoint_disable"
    };
    operator
        .audit(&state, event, None, Some(&endpoint.id))
        .await?;
    Ok(Redirect::to("/console#push-title").into_response())
}

/// "Disable": as `PATCH /api/v1/endpoints/{id}` with `{"enabled": false}`.
pub async fn disable(
    State(state): State<AppState>,
    headers: HeaderMap,
    Peer(peer): Peer,
    ConsoleForm(form): ConsoleForm<EndpointForm>,
) -> Result<Response, ConsoleError> {
    set_enabled(state, headers, peer, form, false).await
}

/// "Enable": as `PATCH /api/v1/endpoints/{id}` with `{"enabled": true}`.
pub async fn enable(
    State(state): State<AppState>,
    headers: HeaderMap,
    Peer(peer): Peer,
    ConsoleForm(form): ConsoleForm<EndpointForm>,
) -> Result<Response, ConsoleError> {
    set_enabled(state, headers, peer, form, true).await
}

#[cfg(test)]
mod tests {
    use super::origin;

    #[test]
    fn an_endpoint_shows_only_its_origin() {
        assert_eq!(
            origin("https://user:pw@hooks.example.com:8443/path/tok3n?key=s3cret#frag"),
            "https://hooks.example.com:8443"
        );
        assert_eq!(
            origin("http://127.0.0.1:9000/hook?merchant-token=abc"),
            "http://127.0.0.1:9000"
        );
        assert_eq!(origin("not a url/secret"), "(an unreadable URL)");
    }
}
