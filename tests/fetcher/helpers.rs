//! `harness`: a fresh database, the FaceID simulator on 127.0.0.1:0 as the upstream, an
//! `Application` serving HTTP without its own worker, and a worker context over the same store
//! and manual clock that tests drive with `run_once` — so every step is deterministic.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use faceid_receiver::Application;
pub use faceid_receiver::clock::Clock;
use faceid_receiver::clock::{ManualClock, SharedClock};
use faceid_receiver::config::Settings;
use faceid_receiver::fetcher::{self, Outcome};
use faceid_receiver::protocol;
use faceid_receiver::store::{FetchState, Store, Verification};
use faceid_sim::{ResultScript, SimConfig, SimServer, Simulator};
use reqwest::Response;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::common::{Engine, TestDatabase};

/// 2026-11-23T00:00:00Z.
pub const NOW_MS: i64 = 1_795_392_000_000;
pub const SECOND: i64 = 1_000;
pub const MINUTE: i64 = 60 * SECOND;
pub const HOUR: i64 = 60 * MINUTE;
pub const DAY: i64 = 24 * HOUR;
/// The simulator's default credentials.
pub const KEY: &str = "dev-key";
pub const SECRET: &str = "dev-secret";
pub const TOKEN: &str = "fetch-test-token";
const PII_TOKENS: &str = "fetch-test-token:pii";

pub struct Harness {
    pub clock: ManualClock,
    pub sim: Simulator,
    pub store: Arc<dyn Store>,
    pub settings: Settings,
    /// The worker the test drives ("replica a").
    pub ctx: fetcher::Context,
    pub base: String,
    pub client: reqwest::Client,
    shutdown: CancellationToken,
    _sim_server: SimServer,
    // Last: the database goes after everything that uses it.
    _db: TestDatabase,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Builds the settings of a test instance: simulator credentials, `base_url` upstream, the
/// given database, and `overrides` (`("APP__FETCH__RETURN_IMAGE", "4")`) last.
pub fn settings(db_url: &str, base_url: &str, overrides: &[(&str, &str)]) -> Settings {
    let mut env: HashMap<String, String> = [
        ("APP__SERVER__LISTEN", "127.0.0.1:0"),
        ("APP__MEGVII__API_KEY", KEY),
        ("APP__MEGVII__API_SECRET", SECRET),
        ("APP__MEGVII__BASE_URL", base_url),
        // The pii scope: these tests read images and unmasked results.
        ("APP__API__TOKENS", PII_TOKENS),
        ("APP__DATABASE__URL", db_url),
        // These suites hammer the callback routes from one IP on purpose (the budget must
        // hold under it); the per-IP rate limit has its own tests in tests/api/hardening.rs.
        ("APP__SERVER__RATE_LIMIT_PER_SECOND", "0"),
        ("APP__SERVER__RETURN_GET_PER_MINUTE", "0"),
        // Passes are driven by a manual clock; the call-rate ceiling (real time) has its own
        // test in tests/fetcher/flood.rs.
        ("APP__FETCH__MAX_CALLS_PER_SECOND", "10000"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    for (k, v) in overrides {
        env.insert((*k).to_owned(), (*v).to_owned());
    }
    let config_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config");
    Settings::load_from(&env, &config_dir)
        .expect("test settings load")
        .settings
}

/// A harness on `engine`, or `None` when PostgreSQL is unavailable and not required.
pub async fn harness(engine: Engine) -> Option<Harness> {
    harness_with(engine, &[], None).await
}

/// Like [`harness`], with setting overrides and optionally another upstream (wiremock).
pub async fn harness_with(
    engine: Engine,
    overrides: &[(&str, &str)],
    upstream: Option<&str>,
) -> Option<Harness> {
    harness_with_sim(engine, overrides, upstream, SimConfig::default()).await
}

/// Like [`harness_with`], with the simulator's own credentials (the overrides must then set
/// the receiver's to match).
pub async fn harness_with_sim(
    engine: Engine,
    overrides: &[(&str, &str)],
    upstream: Option<&str>,
    sim_config: SimConfig,
) -> Option<Harness> {
    faceid_receiver::telemetry::init_for_tests();
    let db = TestDatabase::create(engine).await?;
    let clock = ManualClock::new(NOW_MS);
    let shared: SharedClock = Arc::new(clock.clone());
    let sim = Simulator::new(sim_config, shared.clone());
    let sim_server = sim.bind("127.0.0.1:0").await.expect("bind the simulator");
    let base_url = upstream
        .map(str::to_owned)
        .unwrap_or_else(|| sim_server.base_url());
    let settings = settings(db.url(), &base_url, overrides);
    let store = faceid_receiver::startup::connect_store(&settings)
        .await
        .expect("connect");
    store.migrate().await.expect("migrate");
    let app = Application::build_with(settings.clone(), store.clone(), shared.clone())
        .await
        .expect("build app")
        .without_worker();
    let base = format!("http://{}", app.local_addr());
    let shutdown = CancellationToken::new();
    tokio::spawn(app.run_until_stopped(shutdown.clone()));
    let ctx = fetcher::Context::new(&settings, store.clone(), shared)
        .expect("worker context")
        .with_owner("replica-a");
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    Some(Harness {
        clock,
        sim,
        store,
        settings,
        ctx,
        base,
        client,
        shutdown,
        _sim_server: sim_server,
        _db: db,
    })
}

impl Harness {
    /// A biz_id created a minute ago whose get_result answers `steps` call by call.
    pub fn mint(&self, steps: &[&str]) -> String {
        self.mint_at(self.clock.now_ms() - MINUTE, steps)
    }

    /// A biz_id created at `created_at_ms`.
    pub fn mint_at(&self, created_at_ms: i64, steps: &[&str]) -> String {
        let spec = ResultScript::default()
            .steps(steps.iter().copied())
            .created_at_ms(created_at_ms);
        self.sim.mint_biz(spec).expect("script the simulator")
    }

    /// A second worker over the same store and clock, as another replica would be.
    pub fn replica(&self, owner: &str) -> fetcher::Context {
        let clock: SharedClock = Arc::new(self.clock.clone());
        fetcher::Context::new(&self.settings, self.store.clone(), clock)
            .expect("worker context")
            .with_owner(owner)
    }

    /// Runs passes of the test's worker until it is idle. Returns how many jobs it worked on.
    pub async fn drain(&self) -> usize {
        drain(&self.ctx, &self.clock).await
    }

    /// Drives the worker through time: drains, then jumps the clock to the earliest `next_at`
    /// among the still pending `ids`, until none is pending.
    pub async fn settle(&self, ids: &[&str]) {
        for _ in 0..60 {
            self.drain().await;
            let mut next: Option<i64> = None;
            for id in ids {
                let record = self.record(id).await;
                if record.fetch.state == FetchState::Pending {
                    let at = record.fetch.next_at.expect("a pending job has a next_at");
                    next = Some(next.map_or(at, |n| n.min(at)));
                }
            }
            match next {
                None => return,
                Some(at) => self.clock.set(at.max(self.clock.now_ms() + 1)),
            }
        }
        panic!("jobs still pending after 60 rounds");
    }

    pub async fn record(&self, id: &str) -> Verification {
        self.store
            .get(id)
            .await
            .expect("store answers")
            .unwrap_or_else(|| panic!("no record for {id}"))
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// The unsigned return GET FaceID's browser redirect makes.
    pub async fn return_get(&self, biz_id: &str) -> Response {
        let response = self
            .client
            .get(self.url(&format!("/faceid/return?biz_id={}", encode(biz_id))))
            .send()
            .await
            .expect("sent");
        assert_eq!(response.status(), 303, "return GET for {biz_id}");
        response
    }

    /// A correctly signed notify carrying `status` for `biz_id`.
    pub async fn notify(&self, biz_id: &str, status: &str) -> Response {
        let data = serde_json::json!({
            "request_id": "1795392000,notify",
            "status": status,
            "biz_info": {"biz_id": biz_id, "biz_no": "order-notify", "biz_extra_data": ""},
            "liveness_result": {"result": "PASS", "procedure_type": "video"},
            "verify_result": {"result_faceid": {"confidence": 80.5}},
            "time_used": 10
        })
        .to_string();
        let sign = protocol::sign(SECRET, data.as_bytes());
        let body = form_urlencoded::Serializer::new(String::new())
            .append_pair("data", &data)
            .append_pair("sign", &sign)
            .finish();
        self.client
            .post(self.url("/faceid/notify"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .expect("sent")
    }

    pub async fn api_get(&self, path: &str) -> Response {
        self.client
            .get(self.url(&format!("/api/v1{path}")))
            .bearer_auth(TOKEN)
            .send()
            .await
            .expect("sent")
    }

    pub async fn api_post(&self, path: &str, body: Option<Value>) -> Response {
        let request = self
            .client
            .post(self.url(&format!("/api/v1{path}")))
            .bearer_auth(TOKEN);
        let request = match body {
            Some(body) => request.json(&body),
            None => request,
        };
        request.send().await.expect("sent")
    }

    /// `POST /api/v1/verifications/{id}/fetch`.
    pub async fn manual_fetch(&self, id: &str) -> Response {
        self.api_post(&format!("/verifications/{}/fetch", encode(id)), None)
            .await
    }
}

/// Runs passes of `ctx` until it is idle.
pub async fn drain(ctx: &fetcher::Context, clock: &ManualClock) -> usize {
    let mut worked = 0;
    for _ in 0..100 {
        match fetcher::run_once(ctx, clock.now_ms())
            .await
            .expect("a pass over the store")
        {
            Outcome::Idle => return worked,
            Outcome::Worked(n) => worked += n,
        }
    }
    panic!("the worker never went idle");
}

pub fn encode(id: &str) -> String {
    percent_encoding::utf8_percent_encode(id, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// The `{"error": ...}` code of an error answer.
pub async fn error_code(response: Response) -> String {
    let body: Value = response.json().await.expect("a JSON error body");
    body["error"].as_str().expect("an error code").to_owned()
}

/// Expands each `async fn case(engine: Engine)` into a test per engine. A case builds its own
/// harness (so it can choose settings) and returns early when PostgreSQL is skipped.
#[macro_export]
macro_rules! fetcher_tests {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case($crate::common::Engine::Sqlite).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case($crate::common::Engine::Postgres).await;
                }
            )*
        }
    };
}
