//! `spawn_app`: a real `Application` on 127.0.0.1:0 over a fresh database, with a manual
//! clock, plus helpers to sign and send callbacks as FaceID would.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use faceid_receiver::Application;
use faceid_receiver::clock::ManualClock;
use faceid_receiver::config::Settings;
use faceid_receiver::protocol;
use faceid_receiver::store::Store;
use reqwest::Response;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::common;

pub const SECRET: &str = "test-secret-0123456789";
/// The default token of the test apps; it has the `pii` scope, so it sees results unmasked.
pub const TOKEN: &str = "test-token-abcdef";
/// A token without the `pii` scope: it sees masked results and no images.
pub const PLAIN_TOKEN: &str = "test-token-plain";
/// A token with the `admin` scope only (replays).
pub const ADMIN_TOKEN: &str = "test-token-admin";
/// 2026-11-23T00:00:00Z: "now" for every test app.
pub const NOW_MS: i64 = 1_795_392_000_000;
pub const SEED_OK: &str = include_str!("../vectors/seed_get_result_ok.json");
pub const SEED_BIZ_ID: &str = "1462259748,52b13fb5-8dfb-4537-a62b-a641d5e929f1";

pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub store: Arc<dyn Store>,
    pub clock: ManualClock,
    shutdown: CancellationToken,
    /// Shared with an instance [`TestApp::restart`]ed on the same database.
    pub db: Arc<common::TestDatabase>,
    /// `[push]` as loaded, for tests that run a push dispatcher of their own.
    pub push: faceid_receiver::config::PushSettings,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

pub struct Options {
    pub redirect_url: Option<&'static str>,
    pub secret: &'static str,
    /// Extra `APP__*` variables, applied last.
    pub env: Vec<(&'static str, String)>,
    /// Run the push dispatcher inside the app (off by default: push tests drive one pass by
    /// pass, on the manual clock).
    pub push_dispatcher: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            redirect_url: Some("https://shop.example.com/verified?from=faceid"),
            secret: SECRET,
            env: Vec::new(),
            push_dispatcher: false,
        }
    }
}

pub async fn spawn_app(engine: common::Engine, options: Options) -> Option<TestApp> {
    faceid_receiver::telemetry::init_for_tests();
    let db = common::TestDatabase::create(engine).await?;
    Some(spawn_on(Arc::new(db), options).await)
}

/// An app over an existing (migrated or fresh) test database.
async fn spawn_on(db: Arc<common::TestDatabase>, options: Options) -> TestApp {
    let mut env: HashMap<String, String> = [
        ("APP__SERVER__LISTEN", "127.0.0.1:0"),
        ("APP__MEGVII__BASE_URL", "http://127.0.0.1:9"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    env.insert(
        "APP__API__TOKENS".into(),
        format!("{TOKEN}:pii,{PLAIN_TOKEN},{ADMIN_TOKEN}:admin"),
    );
    env.insert("APP__DATABASE__URL".into(), db.url().to_owned());
    if let Some(url) = options.redirect_url {
        env.insert("APP__RETURN__REDIRECT_URL".into(), url.into());
    }
    env.insert("APP__MEGVII__API_SECRET".into(), options.secret.into());
    for (key, value) in options.env {
        env.insert(key.to_owned(), value);
    }
    let config_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config");
    let settings = Settings::load_from(&env, &config_dir)
        .expect("test settings load")
        .settings;
    let store = faceid_receiver::startup::connect_store(&settings)
        .await
        .expect("connect");
    store.migrate().await.expect("migrate");
    let clock = ManualClock::new(NOW_MS);
    let push = settings.push.clone();
    // HTTP only: the follow-up worker has its own suite (tests/fetcher), which drives it pass
    // by pass; here it would race the assertions on pending jobs.
    let app = Application::build_with(settings, store.clone(), Arc::new(clock.clone()))
        .await
        .expect("build app")
        .without_worker();
    let app = if options.push_dispatcher {
        app
    } else {
        app.without_dispatcher()
    };
    let base = format!("http://{}", app.local_addr());
    let shutdown = CancellationToken::new();
    tokio::spawn(app.run_until_stopped(shutdown.clone()));
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    TestApp {
        base,
        client,
        store,
        clock,
        shutdown,
        db,
        push,
    }
}

/// A result `data` in FaceID's shape for `biz_id` with `status`.
pub fn result_data(biz_id: &str, biz_no: &str, status: &str) -> String {
    serde_json::json!({
        "request_id": "1462259763,e2d2f8d6-204b-4c43-92ea-1d62b071f83c",
        "status": status,
        "biz_info": {"biz_id": biz_id, "biz_no": biz_no, "biz_extra_data": ""},
        "idcard_info": {"idcard_number": "110101199003070000", "idcard_name": "张三"},
        "liveness_result": {"result": "PASS", "procedure_type": "video"},
        "verify_result": {"result_faceid": {"confidence": 77.5, "thresholds": {"1e-3": 64}}},
        "time_used": 93
    })
    .to_string()
}

pub fn form_body(data: &str, sign: &str) -> String {
    form_urlencoded::Serializer::new(String::new())
        .append_pair("data", data)
        .append_pair("sign", sign)
        .finish()
}

/// Bodies a stranger can send that begin with the magic of the sealed format (`FIDE`): the
/// magic alone, a version-1 header with junk, and a version-1 header naming `key`'s id (the
/// first byte of SHA-256 of its bytes) with junk.
pub fn magic_bodies(key: &str) -> Vec<Vec<u8>> {
    use base64::Engine as _;
    use sha2::Digest as _;
    let key = base64::engine::general_purpose::STANDARD
        .decode(key)
        .unwrap();
    let key_id = sha2::Sha256::digest(key)[0];
    let junk = b"&data=%7B%7D&sign=not-a-sign-just-bytes-to-fill-a-nonce-and-a-tag";
    vec![
        b"FIDE".to_vec(),
        [&b"FIDE\x01"[..], junk].concat(),
        [&b"FIDE\x01"[..], &[key_id], junk].concat(),
    ]
}

pub fn signed_form(data: &str) -> String {
    form_body(data, &protocol::sign(SECRET, data.as_bytes()))
}

pub fn encode_path(biz_id: &str) -> String {
    percent_encoding::utf8_percent_encode(biz_id, percent_encoding::NON_ALPHANUMERIC).to_string()
}

impl TestApp {
    /// Stops this instance and starts another on the same database with `options` (a
    /// configuration fix, as an operator would restart).
    pub async fn restart(self, options: Options) -> TestApp {
        let db = self.db.clone();
        self.shutdown.cancel();
        self.store.close().await;
        drop(self);
        spawn_on(db, options).await
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn post(
        &self,
        path: &str,
        content_type: &str,
        body: impl Into<reqwest::Body>,
    ) -> Response {
        self.client
            .post(self.url(path))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .expect("request sent")
    }

    pub async fn post_form(&self, path: &str, body: String) -> Response {
        self.post(path, "application/x-www-form-urlencoded", body)
            .await
    }

    /// A correctly signed notify, form-encoded.
    pub async fn notify(&self, data: &str) -> Response {
        self.post_form("/faceid/notify", signed_form(data)).await
    }

    /// A stranger's notify with `body` (form-encoded, unsigned), which must be refused.
    pub async fn notify_refused(&self, body: Vec<u8>) {
        let response = self
            .post("/faceid/notify", "application/x-www-form-urlencoded", body)
            .await;
        assert!(response.status().is_client_error(), "{}", response.status());
    }

    pub async fn get(&self, path: &str) -> Response {
        self.client
            .get(self.url(path))
            .send()
            .await
            .expect("request sent")
    }

    pub async fn api(&self, path: &str) -> Response {
        self.api_as(TOKEN, path).await
    }

    pub async fn api_as(&self, token: &str, path: &str) -> Response {
        self.client
            .get(self.url(&format!("/api/v1{path}")))
            .bearer_auth(token)
            .send()
            .await
            .expect("request sent")
    }

    pub async fn api_json(&self, path: &str) -> Value {
        let response = self.api(path).await;
        assert_eq!(response.status(), 200, "GET /api/v1{path}");
        response.json().await.unwrap()
    }

    pub async fn record(&self, biz_id: &str) -> Value {
        self.api_json(&format!("/verifications/{}", encode_path(biz_id)))
            .await
    }

    /// Runs `faceid-receiver <args>` over the app's database with the app's secret (and the
    /// `APP__*` variables of `env`); its standard output, once it exited successfully.
    pub async fn command(&self, args: &[&str], env: &[(&str, &str)]) -> String {
        let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_faceid-receiver"))
            .args(args)
            .env_clear()
            .env(
                "APP_CONFIG_DIR",
                concat!(env!("CARGO_MANIFEST_DIR"), "/config"),
            )
            .env("APP__DATABASE__URL", self.db.url())
            .env("APP__MEGVII__API_KEY", "test-key")
            .env("APP__MEGVII__API_SECRET", SECRET)
            .env("APP__TELEMETRY__FILTER", "warn")
            .envs(env.iter().copied())
            .output()
            .await
            .expect("run faceid-receiver");
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "{args:?}: {stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        stdout
    }

    pub async fn journal(&self, biz_id: Option<&str>) -> Vec<Value> {
        let path = match biz_id {
            Some(id) => format!("/callbacks?biz_id={}", encode_path(id)),
            None => "/callbacks".to_owned(),
        };
        self.api_json(&path).await["items"]
            .as_array()
            .unwrap()
            .clone()
    }
}

pub async fn error_code(response: Response) -> String {
    let body: Value = response.json().await.expect("JSON error body");
    assert!(
        body["message"].is_string(),
        "error body has a message: {body}"
    );
    body["error"].as_str().expect("error code").to_owned()
}

/// Expands each `async fn case(app: TestApp)` into a test per engine.
#[macro_export]
macro_rules! api_tests {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $case() {
                    let app = $crate::helpers::spawn_app($crate::common::Engine::Sqlite, Default::default()).await.expect("sqlite is always available");
                    super::$case(app).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $case() {
                    if let Some(app) = $crate::helpers::spawn_app($crate::common::Engine::Postgres, Default::default()).await {
                        super::$case(app).await;
                    }
                }
            )*
        }
    };
}

/// Bytes standing in for a JPEG face image (identity data: tests look for them in dumps).
pub const JPEG: &[u8] = b"\xff\xd8\xff\xe0JFIF-face-of-chen\xff\xd9";

/// The seed result signed by notify, plus one image as a get_result follow-up stores them.
pub async fn store_seed_with_image(app: &TestApp) {
    use faceid_receiver::store::{IncomingResult, JobUpdate, NewImage, Source};
    assert_eq!(app.notify(SEED_OK).await.status(), 200);
    let fetched = IncomingResult {
        biz_id: SEED_BIZ_ID.into(),
        biz_no: None,
        status: "OK".into(),
        status_rank: 3,
        liveness: None,
        confidence: None,
        source: Source::GetResult,
        signed: false,
        result: SEED_OK.into(),
    };
    let image = NewImage {
        name: "image_best".into(),
        jpeg: JPEG.to_vec(),
    };
    let update = JobUpdate::Retry {
        next_at: NOW_MS,
        last_error: None,
    };
    app.store
        .save_fetched("test", &fetched, &[image], &update, NOW_MS)
        .await
        .unwrap();
}
