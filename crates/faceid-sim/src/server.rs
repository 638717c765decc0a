//! The simulated FaceID upstream: `GET /faceid/lite/get_result` and
//! `GET /faceid/lite/raw/get_result` with FaceID's documented rules, plus a small JSON control
//! API under `/sim/` and the same controls as Rust methods on [`Simulator`].
//!
//! Rules, in the order they are checked (seeds 001 and 002):
//! 1. `api_key`, `api_secret`, then `biz_id` (or `token`) must be present and non-empty:
//!    `400 MISSING_ARGUMENTS:<key>`.
//! 2. key and secret must match: `403 AUTHENTICATION_ERROR`.
//! 3. `return_image` must be 0–6 (RAW: 0–2) and `return_verify_time` 0 or 1:
//!    `400 BAD_ARGUMENTS:<key>`.
//! 4. the id must be scripted: `400 RESULT_NOT_FOUND`.
//! 5. from here on the call is *charged* to the result: the 4th and later charged call, or any
//!    call one day or more after the biz_id's leading epoch seconds (by the injected clock),
//!    answers `403 DATA_DESTROYED`; otherwise the script's step for this call answers — or,
//!    for a result scripted with `finishes_at_ms`, its `until_finished` step before that time
//!    (the user has not finished), the script counting its steps from the first call after.
//!
//! Every request that names an id is logged under it (count, answers, times, in-flight
//! maximum), whatever the answer, so tests can assert exactly what a client did. Each call
//! records its interval on the simulator's clock, from arrival to the moment its answer was
//! ready or its client hung up (the request dropped mid-flight: `abandoned`), so a test can
//! check that no two calls for one id overlapped ([`CallReport::overlapping`]), including a
//! call cut off by a killed caller, which stops counting as in flight at once.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::Router;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::json;
use tokio::net::{TcpListener, ToSocketAddrs};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::result::{self, Options, Subject};
use super::script::{EchoShape, SEED_BIZ_ID, Script, SeedShape, Step, StepError};
use faceid_protocol::biz_id::{RESULT_MAX_CALLS, RESULT_RETENTION_MS};
use faceid_protocol::clock::SharedClock;
use faceid_protocol::{BizId, FaceIdError};

/// The receiver's development credentials, so `cargo run` of both works out of the box.
pub const DEFAULT_API_KEY: &str = "dev-key";
pub const DEFAULT_API_SECRET: &str = "dev-secret";

/// Which FaceID endpoint a call or a script belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Api {
    /// `/faceid/lite/get_result?biz_id=`.
    Lite,
    /// `/faceid/lite/raw/get_result?token=`.
    Raw,
}

impl Api {
    fn path(self) -> &'static str {
        match self {
            Self::Lite => "/faceid/lite/get_result",
            Self::Raw => "/faceid/lite/raw/get_result",
        }
    }

    fn id_param(self) -> &'static str {
        match self {
            Self::Lite => "biz_id",
            Self::Raw => "token",
        }
    }

    fn max_return_image(self) -> u8 {
        match self {
            Self::Lite => 6,
            Self::Raw => 2,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimConfig {
    pub api_key: String,
    pub api_secret: String,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            api_key: DEFAULT_API_KEY.into(),
            api_secret: DEFAULT_API_SECRET.into(),
        }
    }
}

/// How to script one result: the body of `POST /sim/results` and `POST /sim/biz`.
///
/// `script` is a list of steps (see [`Step`]), or one comma-separated string; empty means
/// `["OK"]`. Unknown fields are refused so that a typo does not silently script defaults.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ResultScript {
    /// The Lite biz_id to script (`POST /sim/results`); minted by `POST /sim/biz`.
    pub biz_id: Option<String>,
    /// The RAW token to script instead of a biz_id.
    pub token: Option<String>,
    pub biz_no: Option<String>,
    pub biz_extra_data: Option<String>,
    #[serde(deserialize_with = "list_or_commas")]
    pub script: Vec<String>,
    /// `liveness_result.result`, verbatim (default PASS for OK, FAIL otherwise).
    pub liveness: Option<String>,
    pub confidence: Option<f64>,
    /// When the result was created. Defaults to the biz_id's leading seconds, or to now (by
    /// the simulator's clock) for a token or a biz_id without them. Minting uses it for the
    /// biz_id's leading seconds.
    pub created_at_ms: Option<i64>,
    /// When the user finishes the H5 flow, by the simulator's clock. Calls before then answer
    /// `until_finished` (default `NOT_STARTED`) whatever the script says; calls from then on
    /// follow `script` from its first step. Unset: the script applies from the first call.
    pub finishes_at_ms: Option<i64>,
    /// The step answered before `finishes_at_ms` (default `NOT_STARTED`).
    pub until_finished: Option<String>,
}

impl ResultScript {
    pub fn lite(biz_id: impl Into<String>) -> Self {
        Self {
            biz_id: Some(biz_id.into()),
            ..Self::default()
        }
    }

    pub fn raw(token: impl Into<String>) -> Self {
        Self {
            token: Some(token.into()),
            ..Self::default()
        }
    }

    /// Steps as written in the control API, e.g. `["PROCESSING", "OK"]`.
    pub fn steps<I, S>(mut self, steps: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.script = steps.into_iter().map(Into::into).collect();
        self
    }

    pub fn biz_no(mut self, biz_no: impl Into<String>) -> Self {
        self.biz_no = Some(biz_no.into());
        self
    }

    pub fn biz_extra_data(mut self, extra: impl Into<String>) -> Self {
        self.biz_extra_data = Some(extra.into());
        self
    }

    pub fn liveness(mut self, liveness: impl Into<String>) -> Self {
        self.liveness = Some(liveness.into());
        self
    }

    pub fn confidence(mut self, confidence: f64) -> Self {
        self.confidence = Some(confidence);
        self
    }

    pub fn created_at_ms(mut self, ms: i64) -> Self {
        self.created_at_ms = Some(ms);
        self
    }

    /// The user finishes at `ms`: until then every call answers `until` (a step, e.g.
    /// `NOT_STARTED` or `PROCESSING`), from then on the script.
    pub fn finishes_at(mut self, ms: i64, until: impl Into<String>) -> Self {
        self.finishes_at_ms = Some(ms);
        self.until_finished = Some(until.into());
        self
    }
}

fn list_or_commas<'de, D: Deserializer<'de>>(de: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Steps {
        List(Vec<String>),
        Text(String),
    }
    Ok(match Steps::deserialize(de)? {
        Steps::List(list) => list,
        Steps::Text(text) => text
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(Into::into)
            .collect(),
    })
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScriptError {
    #[error(transparent)]
    Step(#[from] StepError),
    #[error("give exactly one of biz_id (Lite) or token (RAW)")]
    Id,
    #[error("POST /sim/biz mints the biz_id: do not give biz_id or token")]
    IdGiven,
    #[error("{0:?} must not be empty or contain control characters")]
    BadId(String),
}

/// One get_result request as the simulator saw it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CallRecord {
    /// Arrival time by the simulator's clock.
    pub at_ms: i64,
    pub api: Api,
    /// The HTTP status answered (or to be answered, for a delayed call still in flight).
    pub http_status: u16,
    /// The result's `status`, the error code (`DATA_DESTROYED`, …), `seed:<name>` or `502`.
    pub answer: String,
    /// Whether the call counted against the result's three calls.
    pub charged: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub return_image: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub return_verify_time: Option<String>,
    /// A scripted `slow:<ms>` delay before answering.
    pub delay_ms: u64,
    /// When the call ended, by the simulator's clock: its answer was ready, or its client hung
    /// up. `None` while it is in flight.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ended_ms: Option<i64>,
    /// The client hung up (closed the connection, timed out, was killed) before the answer
    /// was ready.
    pub abandoned: bool,
}

/// Everything received for one biz_id or token.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct CallReport {
    pub id: String,
    /// Every request that named this id, whatever it was answered.
    pub count: u64,
    /// Requests that reached the result (past argument and credential checks, id known):
    /// the ones FaceID counts toward its three.
    pub charged: u64,
    pub in_flight: u64,
    /// The most requests for this id that were ever being answered at the same time.
    pub max_in_flight: u64,
    pub calls: Vec<CallRecord>,
}

impl CallReport {
    /// Pairs of calls (indexes into `calls`) whose intervals overlap: one arrived before the
    /// other had ended, abandoned calls included; a call still in flight is open-ended. The
    /// intervals are on the simulator's clock: with a clock that does not move (a paused
    /// test), every interval is empty and nothing overlaps.
    pub fn overlapping(&self) -> Vec<(usize, usize)> {
        let mut pairs = Vec::new();
        for (i, a) in self.calls.iter().enumerate() {
            for (j, b) in self.calls.iter().enumerate().skip(i + 1) {
                let ends = |c: &CallRecord| c.ended_ms.unwrap_or(i64::MAX);
                if a.at_ms < ends(b) && b.at_ms < ends(a) {
                    pairs.push((i, j));
                }
            }
        }
        pairs
    }

    /// Calls whose client hung up before the answer was ready.
    pub fn abandoned(&self) -> usize {
        self.calls.iter().filter(|c| c.abandoned).count()
    }
}

/// `GET /sim/calls`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct CallsReport {
    /// All get_result requests, including ones that named no id.
    pub total: u64,
    pub ids: Vec<CallReport>,
}

#[derive(Debug, Clone)]
struct Entry {
    api: Api,
    subject: Subject,
    script: Script,
    created_at_ms: i64,
    /// Before this time (the user has not finished) calls answer `unfinished`.
    finishes_at_ms: Option<i64>,
    unfinished: Step,
    /// Charged calls answered with `unfinished`: the script's steps count from after them.
    unfinished_calls: u64,
}

/// Scripts and call logs, behind one lock so that each call is decided and logged atomically.
#[derive(Default)]
struct Ledger {
    entries: HashMap<String, Entry>,
    calls: BTreeMap<String, CallReport>,
    total: u64,
    /// Bumped by `reset`, so that a call in flight across a reset does not touch the new logs.
    generation: u64,
}

impl Ledger {
    fn log(&mut self, id: &str) -> &mut CallReport {
        self.calls
            .entry(id.to_owned())
            .or_insert_with(|| CallReport::empty(id))
    }
}

impl CallReport {
    fn empty(id: &str) -> Self {
        Self {
            id: id.to_owned(),
            ..Self::default()
        }
    }
}

struct Inner {
    config: SimConfig,
    clock: SharedClock,
    ledger: Mutex<Ledger>,
}

/// The simulator: cheap to clone, shared by the HTTP handlers and the test that drives it.
#[derive(Clone)]
pub struct Simulator {
    inner: Arc<Inner>,
}

/// What a decided call will answer.
enum Answer {
    Error(FaceIdError),
    Result {
        api: Api,
        subject: Subject,
        status: String,
        options: Options,
    },
    Seed {
        shape: SeedShape,
        biz_id: String,
    },
    BadGateway,
    Echo(EchoShape),
}

impl Simulator {
    pub fn new(config: SimConfig, clock: SharedClock) -> Self {
        Self {
            inner: Arc::new(Inner {
                config,
                clock,
                ledger: Mutex::new(Ledger::default()),
            }),
        }
    }

    pub fn config(&self) -> &SimConfig {
        &self.inner.config
    }

    pub fn now_ms(&self) -> i64 {
        self.inner.clock.now_ms()
    }

    fn ledger(&self) -> MutexGuard<'_, Ledger> {
        // A panic while holding the lock leaves only counters behind; keep serving.
        self.inner
            .ledger
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Scripts (or re-scripts) a biz_id or token; returns the id. Re-scripting keeps the calls
    /// already made, so the three-call budget cannot be reset this way (only by [`reset`]).
    ///
    /// [`reset`]: Simulator::reset
    pub fn script(&self, spec: ResultScript) -> Result<String, ScriptError> {
        let (api, id) = match (&spec.biz_id, &spec.token) {
            (Some(id), None) => (Api::Lite, id.clone()),
            (None, Some(token)) => (Api::Raw, token.clone()),
            _ => return Err(ScriptError::Id),
        };
        if id.trim().is_empty() || id.chars().any(char::is_control) {
            return Err(ScriptError::BadId(id));
        }
        let script = Script::parse(&spec.script)?;
        let unfinished: Step = spec
            .until_finished
            .as_deref()
            .unwrap_or("NOT_STARTED")
            .parse()?;
        let now = self.now_ms();
        let created_at_ms = spec
            .created_at_ms
            .or_else(|| {
                if api == Api::Lite {
                    BizId::parse(&id).ok()?.created_at_ms()
                } else {
                    None
                }
            })
            .unwrap_or(now);
        // The user finishes a little after the flow starts, never after "now".
        let verify_time = (created_at_ms + 20_000)
            .min(now.max(created_at_ms))
            .div_euclid(1000);
        let mut subject = Subject::new(id.clone(), verify_time);
        if let Some(biz_no) = spec.biz_no {
            subject.biz_no = biz_no;
        }
        if let Some(extra) = spec.biz_extra_data {
            subject.biz_extra_data = extra;
        }
        subject.liveness = spec.liveness;
        if let Some(confidence) = spec.confidence {
            subject.confidence = confidence;
        }
        let entry = Entry {
            api,
            subject,
            script,
            created_at_ms,
            finishes_at_ms: spec.finishes_at_ms,
            unfinished,
            unfinished_calls: 0,
        };
        self.ledger().entries.insert(id.clone(), entry);
        Ok(id)
    }

    /// Mints a biz_id created at `spec.created_at_ms` (default: now) and scripts it.
    pub fn mint_biz(&self, spec: ResultScript) -> Result<String, ScriptError> {
        if spec.biz_id.is_some() || spec.token.is_some() {
            return Err(ScriptError::IdGiven);
        }
        let created_at_ms = spec.created_at_ms.unwrap_or_else(|| self.now_ms());
        let biz_id = result::mint_biz_id(created_at_ms);
        self.script(ResultScript {
            biz_id: Some(biz_id),
            created_at_ms: Some(created_at_ms),
            ..spec
        })
    }

    /// What was received for `id` (all zeros if nothing was).
    pub fn calls(&self, id: &str) -> CallReport {
        self.ledger()
            .calls
            .get(id)
            .cloned()
            .unwrap_or_else(|| CallReport::empty(id))
    }

    pub fn all_calls(&self) -> CallsReport {
        let ledger = self.ledger();
        CallsReport {
            total: ledger.total,
            ids: ledger.calls.values().cloned().collect(),
        }
    }

    /// Requests for `id` being answered right now (e.g. waiting in a `slow` step).
    pub fn in_flight(&self, id: &str) -> u64 {
        self.ledger().calls.get(id).map_or(0, |c| c.in_flight)
    }

    /// Forgets every script and every call.
    pub fn reset(&self) {
        let mut ledger = self.ledger();
        let generation = ledger.generation + 1;
        *ledger = Ledger {
            generation,
            ..Ledger::default()
        };
    }

    /// The HTTP surface: FaceID's two get_result endpoints, `/sim/*` controls, and FaceID's
    /// `404 API_NOT_FOUND` for anything else.
    pub fn router(&self) -> Router {
        Router::new()
            .route(Api::Lite.path(), get(lite_get_result))
            .route(Api::Raw.path(), get(raw_get_result))
            .route("/sim/results", post(control_script))
            .route("/sim/biz", post(control_mint))
            .route("/sim/calls", get(control_calls))
            .route("/sim/calls/{id}", get(control_calls_for))
            .route("/sim/reset", post(control_reset))
            .fallback(api_not_found)
            .with_state(self.clone())
    }

    /// Serves on `addr` (use `127.0.0.1:0` in tests) until the returned server is shut down
    /// or dropped.
    pub async fn bind(&self, addr: impl ToSocketAddrs) -> std::io::Result<SimServer> {
        let listener = TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        let shutdown = CancellationToken::new();
        let app = self.router();
        let stop = shutdown.clone().cancelled_owned();
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(stop)
                .await
        });
        Ok(SimServer {
            sim: self.clone(),
            addr: local,
            shutdown,
            task: Some(task),
        })
    }

    /// Answers one get_result request.
    pub async fn get_result(&self, api: Api, query: Option<&str>) -> Response {
        let started = tokio::time::Instant::now();
        let params: HashMap<String, String> =
            form_urlencoded::parse(query.unwrap_or_default().as_bytes())
                .into_owned()
                .collect();
        let id = params
            .get(api.id_param())
            .filter(|v| !v.is_empty())
            .cloned();
        // Held until the answer is built, so a delayed answer counts as in flight throughout;
        // if the client hangs up, the server drops this future and the guard ends the call
        // there and then, marked abandoned.
        let mut in_flight = id.as_deref().map(|id| InFlight::enter(self, id));
        let (answer, delay_ms, logged) = self.decide(api, &params, id.as_deref());
        if let Some(guard) = &mut in_flight {
            guard.call = logged;
        }
        if delay_ms > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(delay_ms)).await;
        }
        let time_used = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let request_id = result::request_id(self.now_ms());
        let response = match answer {
            Answer::Error(error) => error_response(&error, &request_id, time_used),
            Answer::Result { api: Api::Lite, subject, status, options } => {
                json_response(StatusCode::OK, &result::lite_get_result(&subject, &status, &request_id, options, time_used))
            }
            Answer::Result { api: Api::Raw, subject, status, options } => {
                json_response(StatusCode::OK, &result::raw_get_result(&subject, &status, &request_id, options, time_used))
            }
            Answer::Seed { shape, biz_id } => {
                let body = shape.text().replace(SEED_BIZ_ID, &biz_id);
                (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], body).into_response()
            }
            Answer::BadGateway => (
                StatusCode::BAD_GATEWAY,
                [(header::CONTENT_TYPE, "text/html")],
                "<html><head><title>502 Bad Gateway</title></head><body><h1>502 Bad Gateway</h1></body></html>",
            )
                .into_response(),
            Answer::Echo(shape) => echo_response(shape, api, query.unwrap_or_default(), &params),
        };
        if let Some(guard) = &mut in_flight {
            guard.answered = true;
        }
        response
    }

    /// Applies FaceID's rules and the script under one lock, and logs the call; returns the
    /// answer, how long to wait before giving it, and the call's index in its id's log.
    fn decide(
        &self,
        api: Api,
        params: &HashMap<String, String>,
        id: Option<&str>,
    ) -> (Answer, u64, Option<usize>) {
        let now = self.now_ms();
        let mut ledger = self.ledger();
        ledger.total += 1;
        let present = |key: &str| params.get(key).is_some_and(|v| !v.is_empty());
        let missing = ["api_key", "api_secret", api.id_param()]
            .into_iter()
            .find(|key| !present(key));
        let Some(id) = id else {
            // Nothing to log it under; it still counts in the total.
            let key = missing.unwrap_or(api.id_param());
            return (
                Answer::Error(FaceIdError::MissingArguments(key.into())),
                0,
                None,
            );
        };
        let (answer, charged, delay_ms) = match missing {
            Some(key) => (
                Answer::Error(FaceIdError::MissingArguments(key.into())),
                false,
                0,
            ),
            None => rules(&self.inner.config, &mut ledger, api, params, id, now),
        };
        let (http_status, label) = match &answer {
            Answer::Error(e) => (e.http_status(), e.to_string()),
            Answer::Result { status, .. } => (200, status.clone()),
            Answer::Seed { shape, .. } => (200, format!("seed:{}", shape.name())),
            Answer::BadGateway => (502, "502".to_owned()),
            Answer::Echo(EchoShape::Proxy) => (502, "echo".to_owned()),
            Answer::Echo(EchoShape::FaceId) => (400, "echo:faceid".to_owned()),
        };
        tracing::info!(api = ?api, id, http_status, answer = %label, delay_ms, "get_result");
        let log = ledger.log(id);
        log.count += 1;
        log.calls.push(CallRecord {
            at_ms: now,
            api,
            http_status,
            answer: label,
            charged,
            return_image: params.get("return_image").cloned(),
            return_verify_time: params.get("return_verify_time").cloned(),
            delay_ms,
            ended_ms: None,
            abandoned: false,
        });
        let index = log.calls.len() - 1;
        (answer, delay_ms, Some(index))
    }
}

/// Rules 2–5 for a request naming `id` with all arguments present; returns the answer,
/// whether it was charged, and the delay.
fn rules(
    config: &SimConfig,
    ledger: &mut Ledger,
    api: Api,
    params: &HashMap<String, String>,
    id: &str,
    now: i64,
) -> (Answer, bool, u64) {
    let error = |e| (Answer::Error(e), false, 0);
    let arg = |key: &str| params.get(key).map_or("", String::as_str);
    if arg("api_key") != config.api_key || arg("api_secret") != config.api_secret {
        return error(FaceIdError::AuthenticationError);
    }
    let return_image = match params.get("return_image").map(|v| v.parse::<u8>()) {
        None => 0,
        Some(Ok(n)) if n <= api.max_return_image() => n,
        Some(_) => return error(FaceIdError::BadArguments("return_image".into())),
    };
    let return_verify_time = match (api, params.get("return_verify_time").map(String::as_str)) {
        (Api::Raw, _) | (Api::Lite, None | Some("0")) => false,
        (Api::Lite, Some("1")) => true,
        (Api::Lite, Some(_)) => {
            return error(FaceIdError::BadArguments("return_verify_time".into()));
        }
    };
    let Some(entry) = ledger.entries.get(id).filter(|e| e.api == api).cloned() else {
        return error(FaceIdError::ResultNotFound);
    };
    let log = ledger.log(id);
    log.charged += 1;
    let nth = log.charged;
    if nth > u64::from(RESULT_MAX_CALLS) || now >= entry.created_at_ms + RESULT_RETENTION_MS {
        return (Answer::Error(FaceIdError::DataDestroyed), true, 0);
    }
    let step = if entry.finishes_at_ms.is_some_and(|at| now < at) {
        if let Some(stored) = ledger.entries.get_mut(id) {
            stored.unfinished_calls += 1;
        }
        &entry.unfinished
    } else {
        let index = usize::try_from(nth - 1 - entry.unfinished_calls).unwrap_or(usize::MAX);
        entry.script.step(index)
    };
    let (step, delay_ms) = match step {
        Step::Slow { ms, then } => (then.as_ref(), *ms),
        step => (step, 0),
    };
    let options = Options {
        return_image,
        return_verify_time,
    };
    let answer = match step {
        Step::Status(status) => Answer::Result {
            api,
            subject: entry.subject,
            status: status.clone(),
            options,
        },
        Step::InternalError => Answer::Error(FaceIdError::InternalError),
        Step::Concurrency => Answer::Error(FaceIdError::ConcurrencyLimitExceeded),
        Step::Destroyed => Answer::Error(FaceIdError::DataDestroyed),
        Step::NotFound => Answer::Error(FaceIdError::ResultNotFound),
        Step::BadGateway => Answer::BadGateway,
        Step::Echo(shape) => Answer::Echo(*shape),
        Step::Seed(shape) => Answer::Seed {
            shape: *shape,
            biz_id: id.to_owned(),
        },
        // Parsing refuses a delay inside a delay.
        Step::Slow { .. } => Answer::Error(FaceIdError::InternalError),
    };
    (answer, true, delay_ms)
}

/// Counts one request as in flight for its id while alive; when dropped, ends its logged call
/// (abandoned unless the answer was ready).
struct InFlight {
    sim: Simulator,
    id: String,
    generation: u64,
    /// The call's index in its id's log, once logged.
    call: Option<usize>,
    answered: bool,
}

impl InFlight {
    fn enter(sim: &Simulator, id: &str) -> Self {
        let mut ledger = sim.ledger();
        let generation = ledger.generation;
        let log = ledger.log(id);
        log.in_flight += 1;
        log.max_in_flight = log.max_in_flight.max(log.in_flight);
        Self {
            sim: sim.clone(),
            id: id.to_owned(),
            generation,
            call: None,
            answered: false,
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let now = self.sim.now_ms();
        let mut ledger = self.sim.ledger();
        if ledger.generation != self.generation {
            return;
        }
        if let Some(log) = ledger.calls.get_mut(&self.id) {
            log.in_flight = log.in_flight.saturating_sub(1);
            if let Some(call) = self.call.and_then(|i| log.calls.get_mut(i)) {
                call.ended_ms = Some(now);
                call.abandoned = !self.answered;
            }
        }
    }
}

/// FaceID's error body: `{"error_message", "request_id", "time_used"}`.
fn error_response(error: &FaceIdError, request_id: &str, time_used: u64) -> Response {
    let status =
        StatusCode::from_u16(error.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json_response(
        status,
        &json!({ "error_message": error.to_string(), "request_id": request_id, "time_used": time_used }),
    )
}

/// An error body quoting the request back, the way careless proxies and APIs do: the raw
/// query as it arrived (form-encoded) and, on the proxy page, every parameter decoded.
fn echo_response(
    shape: EchoShape,
    api: Api,
    query: &str,
    params: &HashMap<String, String>,
) -> Response {
    match shape {
        EchoShape::Proxy => {
            let escape = |text: &str| {
                text.replace('&', "&amp;")
                    .replace('<', "&lt;")
                    .replace('>', "&gt;")
            };
            let mut decoded: Vec<String> = params
                .iter()
                .map(|(k, v)| format!("{}={}", escape(k), escape(v)))
                .collect();
            decoded.sort();
            // The request line first, as terse proxy pages put it.
            let page = format!(
                "<p>502 GET {}?{}</p><pre>{}</pre>",
                api.path(),
                escape(query),
                decoded.join("\n")
            );
            (
                StatusCode::BAD_GATEWAY,
                [(header::CONTENT_TYPE, "text/html")],
                page,
            )
                .into_response()
        }
        EchoShape::FaceId => json_response(
            StatusCode::BAD_REQUEST,
            &json!({ "error_message": format!("BAD_ARGUMENTS:{query}"), "request_id": "echo", "time_used": 0 }),
        ),
    }
}

fn json_response(status: StatusCode, body: &serde_json::Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

async fn lite_get_result(State(sim): State<Simulator>, RawQuery(query): RawQuery) -> Response {
    sim.get_result(Api::Lite, query.as_deref()).await
}

async fn raw_get_result(State(sim): State<Simulator>, RawQuery(query): RawQuery) -> Response {
    sim.get_result(Api::Raw, query.as_deref()).await
}

async fn api_not_found(State(sim): State<Simulator>) -> Response {
    error_response(
        &FaceIdError::ApiNotFound,
        &result::request_id(sim.now_ms()),
        0,
    )
}

fn control_error(status: StatusCode, message: String) -> Response {
    (status, axum::Json(json!({ "error": message }))).into_response()
}

async fn control_script(
    State(sim): State<Simulator>,
    body: Result<axum::Json<ResultScript>, JsonRejection>,
) -> Response {
    control(body, |spec| {
        let api = if spec.token.is_some() {
            Api::Raw
        } else {
            Api::Lite
        };
        sim.script(spec).map(|id| json!({ "id": id, "api": api }))
    })
}

async fn control_mint(
    State(sim): State<Simulator>,
    body: Result<axum::Json<ResultScript>, JsonRejection>,
) -> Response {
    control(body, |spec| {
        sim.mint_biz(spec).map(|biz_id| json!({ "biz_id": biz_id }))
    })
}

/// A scripting request: 400 when its body is not a script, or when `apply` refuses the
/// script; otherwise what `apply` answers.
fn control(
    body: Result<axum::Json<ResultScript>, JsonRejection>,
    apply: impl FnOnce(ResultScript) -> Result<serde_json::Value, ScriptError>,
) -> Response {
    let spec = match body {
        Ok(axum::Json(spec)) => spec,
        Err(rejection) => return control_error(StatusCode::BAD_REQUEST, rejection.body_text()),
    };
    match apply(spec) {
        Ok(answer) => axum::Json(answer).into_response(),
        Err(e) => control_error(StatusCode::BAD_REQUEST, e.to_string()),
    }
}

async fn control_calls(State(sim): State<Simulator>) -> axum::Json<CallsReport> {
    axum::Json(sim.all_calls())
}

async fn control_calls_for(
    State(sim): State<Simulator>,
    Path(id): Path<String>,
) -> axum::Json<CallReport> {
    axum::Json(sim.calls(&id))
}

async fn control_reset(State(sim): State<Simulator>) -> StatusCode {
    sim.reset();
    StatusCode::NO_CONTENT
}

/// A running simulator. Derefs to [`Simulator`] for scripting and inspection; dropping it
/// stops the server.
pub struct SimServer {
    sim: Simulator,
    addr: SocketAddr,
    shutdown: CancellationToken,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl SimServer {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://<addr>`: what the receiver's `megvii.base_url` should be.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn sim(&self) -> &Simulator {
        &self.sim
    }

    /// Stops accepting, lets in-flight answers finish, and reports how serving ended.
    pub async fn shutdown(mut self) -> std::io::Result<()> {
        self.shutdown.cancel();
        match self.task.take() {
            Some(task) => task.await.map_err(std::io::Error::other)?,
            None => Ok(()),
        }
    }
}

impl std::ops::Deref for SimServer {
    type Target = Simulator;

    fn deref(&self) -> &Simulator {
        &self.sim
    }
}

impl Drop for SimServer {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}
