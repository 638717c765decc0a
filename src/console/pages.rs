//! The console's pages and actions: the overview, the search, a verification's timeline,
//! and what an operator may do from there — fetch now, reveal identity data, replay refused
//! deliveries (preview first); the push parts (panel, attempts, retry, disable/enable) are
//! in [`super::push`]. Every page needs a session ([`super::session::operator`]);
//! every POST checks the session's CSRF token first.
//!
//! Invariants: identity data is rendered only through the API's views
//! ([`VerificationView::render`], [`render_callback`]), masked unless the operator has
//! `pii` and asked by the reveal POST, which is access-logged (`pii_access`, like an API
//! read) before the page is answered; "fetch now" is the API's own
//! [`followup::schedule_manual`] (same budget and window); replay is [`crate::replay`] under
//! the `admin` scope, as the API route requires; nothing a client sends is echoed into a page
//! except the search fields it typed (escaped by the templates).

use askama::Template;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::charts::{self, StackedBars};
use super::push::{self, PushEvent, PushPanel};
use super::session::{Operator, operator};
use crate::clock::{parse_time, rfc3339};
use crate::config::ADMIN_SCOPE;
use crate::http::AppState;
use crate::http::callbacks::Peer;
use crate::http::error::AppError;
use crate::http::followup;
use crate::http::views::{VerificationView, render_callback};
use crate::replay::{self, ReplayOptions};
use crate::store::{AccessEntry, CallbackQuery, KeyCount, SearchQuery, StoreError};

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;
/// Rows per search page.
pub const PAGE_SIZE: i64 = 50;
/// Longest date range a search may span.
pub const MAX_RANGE_DAYS: i64 = 92;
/// Journal rows and calls shown on a verification's timeline.
const TIMELINE_LIMIT: i64 = 200;
/// Deliveries a replay (or its preview) looks at per request, as the API's default.
const REPLAY_LIMIT: u64 = crate::http::replay::DEFAULT_LIMIT;
/// Bad signatures in the last hour from which the overview warns (when they also outnumber
/// the verified deliveries of that hour).
pub const SPIKE_MIN: i64 = 3;

/// The route the access log names for a reveal.
pub const REVEAL_ROUTE: &str = "POST /console/verification/reveal";

/// What every signed-in page's header needs.
pub struct Nav {
    pub current: &'static str,
    pub csrf: String,
    pub admin: bool,
}

impl Nav {
    fn of(operator: &Operator, current: &'static str) -> Option<Self> {
        Some(Self {
            current,
            csrf: operator.csrf.clone(),
            admin: operator.has(ADMIN_SCOPE),
        })
    }
}

/// A console answer that is not the page asked for. Rendered as an HTML page (with the
/// console's headers, like every console answer); `SignIn` sends the browser to sign in.
#[derive(Debug)]
pub enum ConsoleError {
    SignIn,
    Csrf,
    Forbidden(&'static str),
    NotFound,
    BadRequest(String),
    Conflict(String),
    /// Too many sign-in attempts from this client: retry after this many seconds.
    TooManyRequests(u64),
    Unavailable,
    Internal,
}

impl From<StoreError> for ConsoleError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Unavailable(_) => Self::Unavailable,
            error => {
                tracing::error!(error.message = %error, "console: storage error");
                Self::Internal
            }
        }
    }
}

impl From<AppError> for ConsoleError {
    fn from(error: AppError) -> Self {
        match error {
            AppError::Conflict { message, .. } => Self::Conflict(message),
            AppError::NotFound(_) => Self::NotFound,
            AppError::Unavailable(_) => Self::Unavailable,
            AppError::BadRequest { message, .. } => Self::BadRequest(message),
            AppError::Forbidden(message) => Self::Forbidden(message),
            other => {
                tracing::error!(error.message = %other, "console: request failed");
                Self::Internal
            }
        }
    }
}

/// `Form<T>` whose rejection (a field twice, a body that is not a web form) is a console page,
/// [`ConsoleError::BadRequest`], like every other console refusal, rather than the API's JSON.
#[derive(axum::extract::FromRequest)]
#[from_request(via(axum::Form), rejection(ConsoleError))]
pub struct ConsoleForm<T>(pub T);

/// `Query<T>` whose rejection is a console page, as [`ConsoleForm`]'s is.
#[derive(axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ConsoleError))]
pub struct ConsoleQuery<T>(pub T);

impl From<axum::extract::rejection::FormRejection> for ConsoleError {
    fn from(_: axum::extract::rejection::FormRejection) -> Self {
        Self::BadRequest(
            "This form could not be read: each field at most once, sent as a web form. Go \
             back, reload the page and try again."
                .to_owned(),
        )
    }
}

impl From<axum::extract::rejection::QueryRejection> for ConsoleError {
    fn from(_: axum::extract::rejection::QueryRejection) -> Self {
        Self::BadRequest(
            "This address could not be read: each parameter at most once, percent-encoded \
             UTF-8."
                .to_owned(),
        )
    }
}

#[derive(Template)]
#[template(path = "console/error.html")]
pub struct ErrorPage {
    pub nav: Option<Nav>,
    pub title: &'static str,
    pub message: String,
}

impl IntoResponse for ConsoleError {
    fn into_response(self) -> Response {
        let (status, title, message) = match self {
            Self::SignIn => return Redirect::to("/console/sign-in").into_response(),
            Self::Csrf => (
                StatusCode::FORBIDDEN,
                "Form refused",
                "This form did not carry this session's security token (it may be from an \
                 older page or another site). Go back, reload the page and try again."
                    .to_owned(),
            ),
            Self::Forbidden(why) => (StatusCode::FORBIDDEN, "Not allowed", why.to_owned()),
            Self::NotFound => (
                StatusCode::NOT_FOUND,
                "Not found",
                "There is no such page or verification.".to_owned(),
            ),
            Self::BadRequest(why) => (StatusCode::BAD_REQUEST, "Check the form", why),
            Self::Conflict(why) => (StatusCode::CONFLICT, "Not possible now", why),
            Self::TooManyRequests(wait) => {
                let mut response = render(
                    StatusCode::TOO_MANY_REQUESTS,
                    &ErrorPage {
                        nav: None,
                        title: "Too many sign-in attempts",
                        message: format!(
                            "This address tried to sign in too often. Try again in {wait} s."
                        ),
                    },
                );
                response
                    .headers_mut()
                    .insert(axum::http::header::RETRY_AFTER, wait.into());
                return response;
            }
            Self::Unavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "Storage unavailable",
                "The database cannot be reached right now; try again shortly.".to_owned(),
            ),
            Self::Internal => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "Something went wrong",
                "The error was logged.".to_owned(),
            ),
        };
        render(
            status,
            &ErrorPage {
                nav: None,
                title,
                message,
            },
        )
    }
}

/// A template as an HTML answer with `status`.
pub fn render(status: StatusCode, page: &impl Template) -> Response {
    match page.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(error) => {
            tracing::error!(error.message = %error, "console: template failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                Html("<!doctype html><title>Error</title>"),
            )
                .into_response()
        }
    }
}

/// `2026-12-02 09:51 UTC`.
pub fn when(ms: i64) -> String {
    let text = rfc3339(ms);
    format!("{} UTC", text.get(..16).unwrap_or(&text).replace('T', " "))
}

/// `YYYY-MM-DD` (a date input) as the epoch ms of that day's start, UTC.
fn parse_date(field: &str, text: &str) -> Result<Option<i64>, ConsoleError> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    let valid = text.len() == 10
        && text.bytes().enumerate().all(|(i, b)| match i {
            4 | 7 => b == b'-',
            _ => b.is_ascii_digit(),
        });
    valid
        .then(|| parse_time(&format!("{text}T00:00:00Z")))
        .flatten()
        .map(Some)
        .ok_or_else(|| ConsoleError::BadRequest(format!("{field} must be a date (YYYY-MM-DD)")))
}

// ---- overview ----

#[derive(Deserialize)]
pub struct OverviewParams {
    window: Option<String>,
}

pub struct FollowUpRow {
    pub state: String,
    pub jobs: i64,
    pub calls_used: i64,
    /// Calls the pending jobs may still make; `None` for jobs that will make no more.
    pub calls_left: Option<i64>,
    pub last_call: i64,
}

pub struct Spike {
    pub mismatches: i64,
    pub verified: i64,
}

#[derive(Template)]
#[template(path = "console/overview.html")]
pub struct OverviewPage {
    pub nav: Option<Nav>,
    pub week: bool,
    pub window_label: &'static str,
    pub chart: StackedBars,
    pub legend: [(&'static str, &'static str); 3],
    pub status_totals: Vec<KeyCount>,
    pub total: i64,
    pub pass: i64,
    pub fail: i64,
    pub pass_share: Option<i64>,
    pub refusals: Vec<KeyCount>,
    pub spike: Option<Spike>,
    pub followups: Vec<FollowUpRow>,
    pub max_calls: i32,
    pub push: PushPanel,
}

pub async fn overview(
    State(state): State<AppState>,
    headers: HeaderMap,
    Peer(peer): Peer,
    ConsoleQuery(params): ConsoleQuery<OverviewParams>,
) -> Result<Response, ConsoleError> {
    let operator = operator(&state, &headers, peer).await?;
    let week = params.window.as_deref() == Some("7d");
    let now = state.clock.now_ms();
    let (bucket_ms, buckets, label_every) = if week {
        (6 * HOUR_MS, 28, 4)
    } else {
        (HOUR_MS, 24, 3)
    };
    let start = (now.div_euclid(bucket_ms) + 1 - i64::from(buckets)) * bucket_ms;
    let max_calls = state.settings.fetch.max_calls;
    let counts = state.store.overview(start, bucket_ms, max_calls).await?;
    let chart = charts::stacked_bars(
        &counts.outcomes,
        start,
        bucket_ms,
        usize::try_from(buckets).unwrap_or(24),
        label_every,
        |t| {
            let text = rfc3339(t);
            if week {
                text.get(5..10).unwrap_or(&text).to_owned()
            } else {
                format!("{}h", text.get(11..13).unwrap_or(&text))
            }
        },
    );
    let mut status_totals: Vec<KeyCount> = Vec::new();
    for c in &counts.outcomes {
        match status_totals.iter_mut().find(|t| t.key == c.key) {
            Some(total) => total.count += c.count,
            None => status_totals.push(KeyCount {
                key: c.key.clone(),
                count: c.count,
            }),
        }
    }
    status_totals.sort_by(|a, b| b.count.cmp(&a.count).then(a.key.cmp(&b.key)));
    let total = status_totals.iter().map(|t| t.count).sum();
    let liveness = |key: &str| {
        counts
            .liveness
            .iter()
            .find(|l| l.key == key)
            .map_or(0, |l| l.count)
    };
    let (pass, fail) = (liveness("PASS"), liveness("FAIL"));
    let pass_share = (pass + fail > 0).then(|| pass * 100 / (pass + fail));
    // A wrong megvii.api_secret shows as every delivery refused for its sign: look at the
    // last hour, whatever the window.
    let recent = state
        .store
        .deliveries(now - HOUR_MS, &sign_mismatch_reason())
        .await?;
    let spike = (recent.sign_mismatch >= SPIKE_MIN && recent.sign_mismatch > recent.verified)
        .then_some(Spike {
            mismatches: recent.sign_mismatch,
            verified: recent.verified,
        });
    let followups = counts
        .followups
        .iter()
        .map(|f| FollowUpRow {
            state: f.state.clone(),
            jobs: f.jobs,
            calls_used: f.calls_used,
            calls_left: (f.state == "pending")
                .then(|| (f.jobs * i64::from(max_calls) - f.calls_used).max(0)),
            last_call: f.last_call,
        })
        .collect();
    let page = OverviewPage {
        nav: Nav::of(&operator, "overview"),
        week,
        window_label: if week { "last 7 days" } else { "last 24 hours" },
        chart,
        legend: charts::LEGEND,
        status_totals,
        total,
        pass,
        fail,
        pass_share,
        refusals: counts.refusals,
        spike,
        followups,
        max_calls,
        push: push::overview_panel(&state).await?,
    };
    Ok(render(StatusCode::OK, &page))
}

/// What the journal says about a delivery whose sign did not match.
pub fn sign_mismatch_reason() -> String {
    crate::protocol::sign::SignatureError::Mismatch.to_string()
}

// ---- search ----

#[derive(Deserialize, Default)]
pub struct SearchParams {
    biz_id: Option<String>,
    biz_no: Option<String>,
    status: Option<String>,
    from: Option<String>,
    until: Option<String>,
    after_at: Option<String>,
    after_id: Option<String>,
}

pub struct Row {
    pub biz_id: String,
    pub link: String,
    pub biz_no: String,
    pub status: String,
    pub liveness: String,
    pub fetch: String,
    pub created: String,
}

#[derive(Template)]
#[template(path = "console/search.html")]
pub struct SearchPage {
    pub nav: Option<Nav>,
    pub biz_id: String,
    pub biz_no: String,
    pub status: String,
    pub from: String,
    pub until: String,
    pub statuses: [&'static str; 9],
    pub rows: Vec<Row>,
    pub searched: bool,
    pub next: Option<String>,
}

/// Statuses the search offers.
const STATUSES: [&str; 9] = [
    "OK",
    "FAILED",
    "CANCELLED",
    "TIMEOUT",
    "WEBRTC_UNSUPPORTED",
    "NOT_STARTED",
    "PROCESSING",
    "PENDING",
    "",
];

fn field(value: &Option<String>) -> String {
    value.as_deref().unwrap_or_default().trim().to_owned()
}

fn non_empty(value: &str) -> Option<String> {
    (!value.is_empty()).then(|| value.to_owned())
}

/// `/console/verification?biz_id=…`
pub fn detail_link(biz_id: &str) -> String {
    let query: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("biz_id", biz_id)
        .finish();
    format!("/console/verification?{query}")
}

pub async fn search(
    State(state): State<AppState>,
    headers: HeaderMap,
    Peer(peer): Peer,
    ConsoleQuery(params): ConsoleQuery<SearchParams>,
) -> Result<Response, ConsoleError> {
    let operator = operator(&state, &headers, peer).await?;
    let (biz_id, biz_no, status) = (
        field(&params.biz_id),
        field(&params.biz_no),
        field(&params.status).to_ascii_uppercase(),
    );
    let (from_text, until_text) = (field(&params.from), field(&params.until));
    for (name, value) in [
        ("biz_id", &biz_id),
        ("biz_no", &biz_no),
        ("status", &status),
    ] {
        if value.len() > 256 || value.chars().any(char::is_control) {
            return Err(ConsoleError::BadRequest(format!(
                "{name} must be at most 256 characters, without control characters"
            )));
        }
    }
    let from = parse_date("from", &from_text)?;
    // `until` is a whole day: up to the next day's start.
    let until = parse_date("until", &until_text)?.map(|t| t + DAY_MS);
    if let (Some(from), Some(until)) = (from, until) {
        if until <= from {
            return Err(ConsoleError::BadRequest(
                "until must not be before from".into(),
            ));
        }
        if until - from > MAX_RANGE_DAYS * DAY_MS {
            return Err(ConsoleError::BadRequest(format!(
                "a search spans at most {MAX_RANGE_DAYS} days"
            )));
        }
    }
    let after = match (&params.after_at, &params.after_id) {
        (Some(at), Some(id)) => Some((
            at.parse::<i64>()
                .map_err(|_| ConsoleError::BadRequest("the page cursor is malformed".into()))?,
            id.clone(),
        )),
        _ => None,
    };
    let query = SearchQuery {
        biz_id: non_empty(&biz_id),
        biz_no: non_empty(&biz_no),
        status: non_empty(&status),
        from,
        until,
        limit: PAGE_SIZE + 1,
        after,
    };
    let mut found = state.store.search(&query).await?;
    let more = found.len() as i64 > PAGE_SIZE;
    found.truncate(usize::try_from(PAGE_SIZE).unwrap_or(50));
    let next = more.then(|| found.last()).flatten().map(|last| {
        let query: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("biz_id", &biz_id)
            .append_pair("biz_no", &biz_no)
            .append_pair("status", &status)
            .append_pair("from", &from_text)
            .append_pair("until", &until_text)
            .append_pair("after_at", &last.created_at.to_string())
            .append_pair("after_id", &last.biz_id)
            .finish();
        format!("/console/verifications?{query}")
    });
    let rows = found
        .into_iter()
        .map(|v| Row {
            link: detail_link(&v.biz_id),
            biz_id: v.biz_id,
            biz_no: v.biz_no.unwrap_or_default(),
            status: v.status,
            liveness: v.liveness.unwrap_or_default(),
            fetch: format!("{} ({} calls)", v.fetch.state.as_str(), v.fetch.calls_used),
            created: when(v.created_at),
        })
        .collect();
    let page = SearchPage {
        nav: Nav::of(&operator, "search"),
        biz_id,
        biz_no,
        status,
        from: from_text,
        until: until_text,
        statuses: STATUSES,
        rows,
        searched: params.biz_id.is_some() || params.status.is_some() || params.biz_no.is_some(),
        next,
    };
    Ok(render(StatusCode::OK, &page))
}

// ---- a verification ----

#[derive(Deserialize)]
pub struct DetailParams {
    biz_id: Option<String>,
    notice: Option<String>,
}

pub struct Event {
    pub at: i64,
    pub when: String,
    pub what: String,
    pub outcome: String,
    pub detail: String,
    pub bad: bool,
}

#[derive(Template)]
#[template(path = "console/detail.html")]
pub struct DetailPage {
    pub nav: Option<Nav>,
    pub record: VerificationView,
    pub created: String,
    pub result: Option<String>,
    pub revealed: bool,
    pub can_reveal: bool,
    pub calls_left: i32,
    pub events: Vec<Event>,
    /// The push events about this verification (an admin may retry them).
    pub push_events: Vec<PushEvent>,
    pub notice: Option<&'static str>,
}

async fn detail_page(
    state: &AppState,
    operator: &Operator,
    biz_id: &str,
    revealed: bool,
    notice: Option<&'static str>,
) -> Result<DetailPage, ConsoleError> {
    let record = state
        .store
        .get(biz_id)
        .await?
        .ok_or(ConsoleError::NotFound)?;
    let created = when(record.created_at);
    let calls_left = (state.settings.fetch.max_calls - record.fetch.calls_used).max(0);
    let journal = state
        .store
        .callbacks(&CallbackQuery {
            biz_id: Some(biz_id.to_owned()),
            verified: None,
            limit: TIMELINE_LIMIT,
            before_id: None,
        })
        .await?;
    let calls = state.store.calls(biz_id, TIMELINE_LIMIT).await?;
    let mut events: Vec<Event> = Vec::new();
    for c in journal {
        let at = c.received_at;
        let view = render_callback(c, revealed);
        let bad = view.outcome == "rejected";
        let mut detail = vec![format!("{} bytes", view.body_len)];
        if let Some(reason) = &view.reason {
            detail.insert(0, reason.clone());
        }
        if let Some(key) = &view.key_id {
            detail.push(format!("verified by the {key} secret"));
        }
        if let Some(addr) = &view.remote_addr {
            detail.push(format!("from {addr}"));
        }
        events.push(Event {
            at,
            when: when(at),
            what: format!("Delivery #{} ({})", view.id, view.kind),
            outcome: view.outcome,
            detail: detail.join(" · "),
            bad,
        });
    }
    for call in calls {
        events.push(Event {
            at: call.called_at,
            when: when(call.called_at),
            what: format!("get_result call {}", call.call_no),
            bad: call.outcome != "result",
            outcome: call.outcome,
            detail: call.detail.unwrap_or_default(),
        });
    }
    let push = push::attempts(state, biz_id).await?;
    events.extend(push.timeline);
    // Stable: at one instant, deliveries before calls before pushes.
    events.sort_by_key(|e| e.at);
    let view = VerificationView::render(record, revealed);
    let result = view
        .result
        .as_ref()
        .and_then(|raw| serde_json::from_str::<serde_json::Value>(raw.get()).ok())
        .and_then(|value| serde_json::to_string_pretty(&value).ok());
    Ok(DetailPage {
        nav: Nav::of(operator, "search"),
        created,
        result,
        revealed,
        can_reveal: operator.has_pii() && !revealed,
        calls_left,
        events,
        push_events: push.events,
        notice,
        record: view,
    })
}

pub async fn detail(
    State(state): State<AppState>,
    headers: HeaderMap,
    Peer(peer): Peer,
    ConsoleQuery(params): ConsoleQuery<DetailParams>,
) -> Result<Response, ConsoleError> {
    let operator = operator(&state, &headers, peer).await?;
    let biz_id = params.biz_id.ok_or(ConsoleError::NotFound)?;
    // Only fixed texts: nothing from the query is echoed.
    let notice = match params.notice.as_deref() {
        Some("fetch") => Some("A get_result call was scheduled now; reload in a moment to see it."),
        Some("retry") => Some("The push was queued again; reload in a moment to see the attempt."),
        _ => None,
    };
    let page = detail_page(&state, &operator, &biz_id, false, notice).await?;
    Ok(render(StatusCode::OK, &page))
}

#[derive(Deserialize)]
pub struct BizIdForm {
    csrf: Option<String>,
    biz_id: Option<String>,
}

/// Reveal identity data: a POST (never a link, so never prefetched or in a history), for a
/// session whose token has `pii`, recorded in the access log before the page is answered.
pub async fn reveal(
    State(state): State<AppState>,
    headers: HeaderMap,
    Peer(peer): Peer,
    ConsoleForm(form): ConsoleForm<BizIdForm>,
) -> Result<Response, ConsoleError> {
    let operator = operator(&state, &headers, peer).await?;
    operator.check_csrf(&state, form.csrf.as_deref()).await?;
    if !operator.has_pii() {
        return Err(ConsoleError::Forbidden(
            "Revealing identity data needs a token with the pii scope.",
        ));
    }
    let biz_id = form.biz_id.ok_or(ConsoleError::NotFound)?;
    if state.store.get(&biz_id).await?.is_none() {
        return Err(ConsoleError::NotFound);
    }
    state
        .store
        .record_access(&[AccessEntry {
            token_fp: operator.token_fp.clone(),
            route: REVEAL_ROUTE.to_owned(),
            biz_id: Some(biz_id.clone()),
            accessed_at: state.clock.now_ms(),
        }])
        .await?;
    operator
        .audit(&state, "reveal", Some(&biz_id), None)
        .await?;
    let page = detail_page(&state, &operator, &biz_id, true, None).await?;
    Ok(render(StatusCode::OK, &page))
}

/// "Fetch now": the API's manual fetch, same budget and window.
pub async fn fetch_now(
    State(state): State<AppState>,
    headers: HeaderMap,
    Peer(peer): Peer,
    ConsoleForm(form): ConsoleForm<BizIdForm>,
) -> Result<Response, ConsoleError> {
    let operator = operator(&state, &headers, peer).await?;
    operator.check_csrf(&state, form.csrf.as_deref()).await?;
    let biz_id = form.biz_id.ok_or(ConsoleError::NotFound)?;
    match followup::schedule_manual(&state, &biz_id).await {
        Ok((key, _)) => {
            operator
                .audit(&state, "fetch_now", Some(&key), Some("scheduled"))
                .await?;
            Ok(Redirect::to(&format!("{}&notice=fetch", detail_link(&key))).into_response())
        }
        Err(error) => {
            let code = error.code();
            if matches!(error, AppError::Conflict { .. }) {
                operator
                    .audit(&state, "fetch_now", Some(&biz_id), Some(code))
                    .await?;
            }
            Err(error.into())
        }
    }
}

// ---- replay ----

#[derive(Template)]
#[template(path = "console/replay.html")]
pub struct ReplayPage {
    pub nav: Option<Nav>,
    pub since: String,
    pub preview: Option<crate::replay::ReplayCounts>,
    pub done: Option<crate::replay::ReplayCounts>,
    pub more: bool,
}

fn require_admin(operator: &Operator) -> Result<(), ConsoleError> {
    if operator.has(ADMIN_SCOPE) {
        Ok(())
    } else {
        Err(ConsoleError::Forbidden(
            "Replaying refused deliveries needs a token with the admin scope.",
        ))
    }
}

pub async fn replay_form(
    State(state): State<AppState>,
    headers: HeaderMap,
    Peer(peer): Peer,
) -> Result<Response, ConsoleError> {
    let operator = operator(&state, &headers, peer).await?;
    require_admin(&operator)?;
    let page = ReplayPage {
        nav: Nav::of(&operator, "replay"),
        since: String::new(),
        preview: None,
        done: None,
        more: false,
    };
    Ok(render(StatusCode::OK, &page))
}

#[derive(Deserialize)]
pub struct ReplayForm {
    csrf: Option<String>,
    since: Option<String>,
}

async fn run_replay(
    state: AppState,
    headers: HeaderMap,
    peer: Option<std::net::SocketAddr>,
    form: ReplayForm,
    dry_run: bool,
) -> Result<Response, ConsoleError> {
    let operator = operator(&state, &headers, peer).await?;
    operator.check_csrf(&state, form.csrf.as_deref()).await?;
    require_admin(&operator)?;
    let since_text = field(&form.since);
    let options = ReplayOptions {
        since: parse_date("since", &since_text)?,
        dry_run,
        after_id: 0,
        limit: Some(REPLAY_LIMIT),
    };
    let report = replay::replay(
        state.store.as_ref(),
        &state.settings,
        &state.clock,
        &options,
    )
    .await?;
    if report.counts.stored > 0 {
        state.wake_fetcher.notify_one();
    }
    let detail = format!(
        "examined={} verified={} stored={}",
        report.counts.examined, report.counts.verified, report.counts.stored
    );
    let event = if dry_run { "replay_preview" } else { "replay" };
    operator.audit(&state, event, None, Some(&detail)).await?;
    let page = ReplayPage {
        nav: Nav::of(&operator, "replay"),
        since: since_text,
        preview: dry_run.then_some(report.counts),
        done: (!dry_run).then_some(report.counts),
        more: report.next_after_id.is_some(),
    };
    Ok(render(StatusCode::OK, &page))
}

pub async fn replay_preview(
    State(state): State<AppState>,
    headers: HeaderMap,
    Peer(peer): Peer,
    ConsoleForm(form): ConsoleForm<ReplayForm>,
) -> Result<Response, ConsoleError> {
    run_replay(state, headers, peer, form, true).await
}

pub async fn replay_run(
    State(state): State<AppState>,
    headers: HeaderMap,
    Peer(peer): Peer,
    ConsoleForm(form): ConsoleForm<ReplayForm>,
) -> Result<Response, ConsoleError> {
    run_replay(state, headers, peer, form, false).await
}
