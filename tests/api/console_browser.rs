//! The operator console driven by a real browser: Debian's headless Chromium through its
//! chromedriver (WebDriver, fantoccini), on both engines. Sign-in → overview → search →
//! a verification's timeline → "fetch now" → a replay preview, and disabling a push endpoint
//! from the overview's push panel, by clicking and typing as an
//! operator would (the console has no script to drive); the same at 375 px wide, with no
//! horizontal scrolling. Screenshots of every step are kept under `target/test-artifacts/`
//! (`docs/console-overview.png` in the README is the SQLite run's overview).
//!
//! The browser's log is read after every step: a CSP violation (Chromium logs each one as a
//! `SEVERE` console message naming the Content Security Policy) fails the test. A control
//! page served with the console's own CSP and an inline script and style shows that the log
//! does catch violations.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use axum::http::header;
use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

use faceid_receiver::clock::Clock;
use faceid_receiver::store::Store;

use crate::common::Engine;
use crate::common::browser::chromedriver_or_skip;
use crate::console::{CONSOLE_ADMIN, console_options, receiver, register_endpoint};
use crate::helpers::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_signs_in_searches_and_acts_in_chromium_on_sqlite() {
    drive(Engine::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_signs_in_searches_and_acts_in_chromium_on_postgres() {
    drive(Engine::Postgres).await;
}

/// chromedriver on a free loopback port, killed when dropped.
struct Driver {
    child: Child,
    url: String,
    _profile: tempfile::TempDir,
    chromium: PathBuf,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_driver(chromium: PathBuf, driver: &Path) -> Driver {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let child = Command::new(driver)
        .arg(format!("--port={port}"))
        .arg("--allowed-ips=127.0.0.1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromedriver");
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Driver {
        child,
        url: format!("http://127.0.0.1:{port}"),
        _profile: tempfile::Builder::new()
            .prefix("faceid-console-chromium-")
            .tempdir()
            .unwrap(),
        chromium,
    }
}

async fn browser(driver: &Driver, width: u32) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": driver.chromium.to_string_lossy(),
            "args": [
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                format!("--window-size={width},1000"),
                format!("--user-data-dir={}/w{width}", driver._profile.path().display()),
            ],
        }),
    );
    if width < 500 {
        // Headless windows are at least 500 px wide: a phone is emulated instead.
        caps["goog:chromeOptions"]["mobileEmulation"] =
            json!({"deviceMetrics": {"width": width, "height": 812, "pixelRatio": 1}});
    }
    caps.insert("goog:loggingPrefs".into(), json!({"browser": "ALL"}));
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .expect("a chromedriver session")
}

/// chromedriver's browser log since the last read (`POST /session/{id}/se/log`).
#[derive(Debug)]
struct BrowserLog;

impl WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/se/log",
            session_id.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _: &url::Url) -> (axum::http::Method, Option<String>) {
        (
            axum::http::Method::POST,
            Some(json!({"type": "browser"}).to_string()),
        )
    }
}

async fn log_messages(client: &Client) -> Vec<String> {
    let log = client.issue_cmd(BrowserLog).await.expect("the browser log");
    log.as_array()
        .map(|entries| {
            entries
                .iter()
                .map(|e| format!("{} {}", e["level"], e["message"]))
                .collect()
        })
        .unwrap_or_default()
}

/// Fails on any CSP violation (or other error) the browser logged since the last read.
async fn assert_no_violation(client: &Client, step: &str) {
    let messages = log_messages(client).await;
    let bad: Vec<&String> = messages
        .iter()
        .filter(|m| m.contains("Content Security Policy") || m.contains("SEVERE"))
        .collect();
    assert!(bad.is_empty(), "{step}: the browser logged {bad:#?}");
}

fn artifacts() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn screenshot(client: &Client, name: &str) {
    let png = client.screenshot().await.expect("a screenshot");
    assert!(png.starts_with(b"\x89PNG"), "{name}: a PNG");
    std::fs::write(artifacts().join(format!("{name}.png")), png).unwrap();
}

/// Clicks what `locator` finds, and waits until the page it was on is gone (every click here
/// submits a form or follows a link), so that what is read next is the new page.
async fn click_to_next_page(client: &Client, locator: Locator<'_>) {
    let old = client.find(Locator::Css("html")).await.unwrap();
    client
        .find(locator)
        .await
        .unwrap_or_else(|e| panic!("{locator:?}: {e}"))
        .click()
        .await
        .unwrap();
    for _ in 0..400 {
        if old.tag_name().await.is_err() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("clicking {locator:?} loaded no new page within 10 s");
}

async fn text(client: &Client, css: &str) -> String {
    client
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .text()
        .await
        .unwrap()
}

async fn body(client: &Client) -> String {
    text(client, "body").await
}

/// Verifications over the last twelve hours (OK, FAILED, pending), follow-ups, and a burst
/// of deliveries whose sign does not match in the last hour. Returns a biz_id to look up.
async fn seed(app: &TestApp) -> String {
    let hour = 3_600_000;
    app.clock.set(NOW_MS - 12 * hour);
    let mut wanted = String::new();
    for i in 0..24 {
        let status = match i % 6 {
            0..=3 => "OK",
            4 => "FAILED",
            _ => "TIMEOUT",
        };
        let (biz_id, data) = faceid_sim::CallbackSpec::new(status)
            .biz_no(format!("order-{i}"))
            .build(app.clock.now_ms());
        assert_eq!(app.notify(&data).await.status(), 200);
        if i == 7 {
            wanted = biz_id;
        }
        if i % 5 == 0 {
            let fresh = faceid_sim::mint_biz_id(app.clock.now_ms());
            let get = app.get(&format!("/faceid/return?biz_id={fresh}")).await;
            assert!(get.status().is_redirection());
        }
        app.clock.advance(hour / 2);
    }
    // The last hour: deliveries signed with another secret (a wrong megvii.api_secret).
    for _ in 0..4 {
        let (_, data) = faceid_sim::CallbackSpec::new("OK").build(app.clock.now_ms());
        let sign = faceid_receiver::protocol::sign::sign("not-our-secret", data.as_bytes());
        app.notify_refused(form_body(&data, &sign).into_bytes())
            .await;
    }
    wanted
}

async fn drive(engine: Engine) {
    let Some((chromium, driver_path)) = chromedriver_or_skip() else {
        return;
    };
    let Some(app) = spawn_app(engine, console_options(Vec::new())).await else {
        return;
    };
    let biz_id = seed(&app).await;
    // A push endpoint on a loopback receiver, which takes the seeded results.
    let (url, seen) = receiver(&[]).await;
    register_endpoint(
        &app,
        "ep_browser",
        &url,
        "whsec_YnJvd3Nlci10ZXN0LXNlY3JldC0wMTIzNDU2Nzg5",
    )
    .await;
    let dispatcher = faceid_receiver::push::dispatcher::Dispatcher::new(
        &app.push,
        app.store.clone(),
        Arc::new(app.clock.clone()),
    )
    .unwrap();
    dispatcher.run_once().await.unwrap();
    assert!(*seen.lock().unwrap() > 0, "the endpoint took the results");
    let endpoint_origin = url[..url.find("/hook").unwrap()].to_owned();
    let name = match engine {
        Engine::Sqlite => "sqlite",
        Engine::Postgres => "postgres",
    };
    let driver = start_driver(chromium, &driver_path).await;
    let site = Arc::new(Site {
        base: app.base.clone(),
        store: app.store.clone(),
        biz_id,
        name,
        endpoint_origin,
    });
    in_browser(browser(&driver, 1280).await, |c| desktop(site.clone(), c)).await;
    in_browser(browser(&driver, 375).await, |c| phone(site, c)).await;
}

/// What the flows need of the app, owned (each flow runs as a task of its own).
struct Site {
    base: String,
    store: Arc<dyn Store>,
    biz_id: String,
    name: &'static str,
    /// The push endpoint's scheme and host (its path and query never show).
    endpoint_origin: String,
}

impl Site {
    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }
}

/// Runs `flow` with `client`, then ends the browser session whatever happened, so that a
/// failing step leaves no Chromium behind; a panic in the flow is the test's.
async fn in_browser<F, Fut>(client: Client, flow: F)
where
    F: FnOnce(Client) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let outcome = tokio::spawn(flow(client.clone())).await;
    let _ = client.close().await;
    if let Err(error) = outcome {
        std::panic::resume_unwind(error.into_panic());
    }
}

async fn desktop(site: Arc<Site>, client: Client) {
    let (app, biz_id, name) = (&*site, site.biz_id.clone(), site.name);
    // The control: a page with the console's CSP and an inline script and style. The log
    // must name the violations, or "no violation" below would prove nothing.
    let control = control_page().await;
    client.goto(&control).await.unwrap();
    let messages = log_messages(&client).await;
    assert!(
        messages
            .iter()
            .any(|m| m.contains("Content Security Policy")),
        "the control page's violations reach the log: {messages:#?}"
    );

    // Sign in.
    client.goto(&app.url("/console")).await.unwrap();
    assert!(
        client
            .current_url()
            .await
            .unwrap()
            .path()
            .ends_with("/console/sign-in")
    );
    client
        .find(Locator::Css("#token"))
        .await
        .unwrap()
        .send_keys(CONSOLE_ADMIN)
        .await
        .unwrap();
    click_to_next_page(&client, Locator::Css("main button[type=submit]")).await;
    assert_eq!(client.current_url().await.unwrap().path(), "/console");
    assert!(text(&client, "h1").await.starts_with("Overview"));
    let overview = body(&client).await;
    assert!(
        overview.contains("Bad signatures are spiking"),
        "{overview}"
    );
    assert!(
        overview.contains("megvii.api_secret may be wrong"),
        "{overview}"
    );
    assert!(overview.contains(&app.endpoint_origin), "{overview}");
    assert!(!overview.contains("/hook"), "no endpoint path in the page");
    let bars = client
        .find_all(Locator::Css("svg.chart rect"))
        .await
        .unwrap();
    assert!(bars.len() >= 12, "bars drawn: {}", bars.len());
    assert_no_violation(&client, "overview").await;
    screenshot(&client, &format!("console-{name}-overview")).await;

    // The push panel, and an action on it: disable the endpoint.
    client.goto(&app.url("/console#push-title")).await.unwrap();
    let row = text(&client, "#endpoint-ep_browser").await;
    assert!(
        row.contains(&app.endpoint_origin) && row.contains("enabled"),
        "{row}"
    );
    screenshot(&client, &format!("console-{name}-push")).await;
    click_to_next_page(
        &client,
        Locator::XPath("//tr[@id='endpoint-ep_browser']//button[normalize-space()='Disable']"),
    )
    .await;
    let state = text(&client, "#endpoint-ep_browser").await;
    assert!(state.contains("disabled since"), "{state}");
    assert!(
        app.store
            .endpoint("ep_browser")
            .await
            .unwrap()
            .unwrap()
            .disabled_at
            .is_some()
    );
    assert_no_violation(&client, "push endpoint disabled").await;
    screenshot(&client, &format!("console-{name}-push-disabled")).await;

    // The week.
    click_to_next_page(&client, Locator::LinkText("7 days")).await;
    assert!(text(&client, "h1").await.contains("last 7 days"));
    assert_no_violation(&client, "overview, 7 days").await;

    // Search by biz_id, then open the verification.
    click_to_next_page(&client, Locator::LinkText("Verifications")).await;
    client
        .find(Locator::Css("#biz_id"))
        .await
        .unwrap()
        .send_keys(&biz_id)
        .await
        .unwrap();
    click_to_next_page(&client, Locator::Css("form.search button")).await;
    let results = body(&client).await;
    assert!(results.contains("order-7"), "{results}");
    assert_no_violation(&client, "search").await;
    screenshot(&client, &format!("console-{name}-search")).await;
    click_to_next_page(&client, Locator::LinkText(&biz_id)).await;
    let detail = body(&client).await;
    assert!(detail.contains("Timeline"), "{detail}");
    assert!(detail.contains("Delivery #"), "{detail}");
    assert!(detail.contains("identity data masked"));
    for needle in ["000000190001010000", "测试模拟"] {
        assert!(!client.source().await.unwrap().contains(needle));
    }
    assert_no_violation(&client, "detail").await;
    screenshot(&client, &format!("console-{name}-detail")).await;

    // An action: fetch now.
    click_to_next_page(
        &client,
        Locator::XPath("//button[normalize-space()='Fetch now']"),
    )
    .await;
    assert!(
        text(&client, ".notice").await.contains("was scheduled"),
        "fetch now answered"
    );
    assert_eq!(
        app.store
            .get(&biz_id)
            .await
            .unwrap()
            .unwrap()
            .fetch
            .state
            .as_str(),
        "pending"
    );
    assert_no_violation(&client, "fetch now").await;
    screenshot(&client, &format!("console-{name}-fetch-now")).await;

    // Another: the replay preview (a dry run).
    click_to_next_page(&client, Locator::LinkText("Replay")).await;
    click_to_next_page(
        &client,
        Locator::XPath("//button[normalize-space()='Preview (dry run)']"),
    )
    .await;
    let preview = body(&client).await;
    assert!(
        preview.contains("4 refused deliveries examined; 0 would be replayed"),
        "{preview}"
    );
    assert_no_violation(&client, "replay preview").await;
    screenshot(&client, &format!("console-{name}-replay-preview")).await;

    // Keyboard: the first Tab reaches the skip link.
    client.goto(&app.url("/console")).await.unwrap();
    let first = client.active_element().await.unwrap();
    first.send_keys("\u{e004}").await.ok(); // Tab
    let focused = client.active_element().await.unwrap();
    assert_eq!(focused.text().await.unwrap(), "Skip to main content");

    // Sign out.
    click_to_next_page(
        &client,
        Locator::XPath("//button[normalize-space()='Sign out']"),
    )
    .await;
    assert!(
        client
            .current_url()
            .await
            .unwrap()
            .path()
            .ends_with("/console/sign-in")
    );
    client.goto(&app.url("/console")).await.unwrap();
    assert!(
        client
            .current_url()
            .await
            .unwrap()
            .path()
            .ends_with("/console/sign-in")
    );
}

async fn phone(site: Arc<Site>, phone: Client) {
    let (app, biz_id, name) = (&*site, site.biz_id.clone(), site.name);
    phone.goto(&app.url("/console/sign-in")).await.unwrap();
    phone
        .find(Locator::Css("#token"))
        .await
        .unwrap()
        .send_keys(CONSOLE_ADMIN)
        .await
        .unwrap();
    click_to_next_page(&phone, Locator::Css("main button[type=submit]")).await;
    for (path, shot) in [
        ("/console".to_owned(), "overview-375"),
        (
            format!("/console/verification?biz_id={}", encode_query(&biz_id)),
            "detail-375",
        ),
    ] {
        phone.goto(&app.url(&path)).await.unwrap();
        let overflow: Value = phone
            .execute(
                "return document.documentElement.scrollWidth - document.documentElement.clientWidth;",
                vec![],
            )
            .await
            .unwrap();
        assert!(
            overflow.as_i64().unwrap_or(1) <= 0,
            "{path} scrolls sideways at 375 px by {overflow}"
        );
        assert_no_violation(&phone, shot).await;
        screenshot(&phone, &format!("console-{name}-{shot}")).await;
    }
}

fn encode_query(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// A page with the console's CSP that breaks it twice (inline script and inline style).
async fn control_page() -> String {
    let app = axum::Router::new().route(
        "/",
        axum::routing::get(|| async {
            (
                [(header::CONTENT_SECURITY_POLICY, faceid_receiver::console::CSP)],
                axum::response::Html(
                    "<!doctype html><html><head><link rel=\"icon\" href=\"data:,\"></head><body><p style=\"color:red\">control</p>\
                     <script>document.title = 'ran';</script></body></html>",
                ),
            )
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}
