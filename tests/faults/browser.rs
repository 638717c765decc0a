//! The return_url flow driven by a real browser: headless Chromium opens a page shaped like
//! the end of FaceID's H5 flow — an auto-submitted form POST of signed `data`/`sign`, or a
//! script redirect to `return_url?biz_id=…` — and must land on the configured page with
//! `biz_id`, `biz_no` and `status` only (no identity data), or, with no page configured, on
//! the built-in one (screenshot kept under `target/test-artifacts/`).
//!
//! Skips loudly when no `chromium` is installed, so a bare machine's `cargo test` still
//! passes; under `CI` (or `REQUIRE_CHROMIUM=1`) a missing browser fails instead (`.ci/run`
//! installs it).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::response::Html;
use axum::routing::get;
use faceid_receiver::clock::{Clock, SystemClock};
use faceid_sim::{CallbackSpec, SignedCallback, return_get_url};

use crate::common::browser::chromium_or_skip;
use crate::common::{Engine, TestDatabase};
use crate::helpers::*;

/// Identity data the simulator puts in results: must never reach the merchant's page.
const IDENTITY: &[&str] = &["000000190001010000", "测试模拟", "idcard"];

/// Runs headless Chromium on `url` with `action` (`--dump-dom`, `--screenshot=…`) and returns
/// its stdout. A fresh profile each time; bounded.
async fn run_chromium(chromium: &Path, url: &str, action: &str) -> String {
    let profile = tempfile::Builder::new()
        .prefix("faceid-chromium-")
        .tempdir()
        .unwrap();
    let mut child = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=800,600",
            // Lets the auto-submit and redirects finish before the DOM is dumped.
            "--virtual-time-budget=10000",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(action)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromium");
    let started = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if started.elapsed() > Duration::from_secs(90) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not finish within 90s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "chromium failed: {}",
        output.status
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn html_attr(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[derive(Clone, Default)]
struct Pages {
    /// `/end-post`: the form FaceID's end page would auto-submit.
    post_form: Arc<Mutex<String>>,
    /// `/end-get`: where FaceID's end page would send the browser in GET mode.
    get_target: Arc<Mutex<String>>,
    /// Queries `/landing` received.
    landed: Arc<Mutex<Vec<String>>>,
}

async fn end_post(State(pages): State<Pages>) -> Html<String> {
    Html(pages.post_form.lock().unwrap().clone())
}

async fn end_get(State(pages): State<Pages>) -> Html<String> {
    let target = pages.get_target.lock().unwrap().clone();
    Html(format!(
        "<!doctype html><html><body><p>Redirecting…</p>\
         <script>window.location.replace({})</script></body></html>",
        serde_json::Value::from(target)
    ))
}

async fn landing(State(pages): State<Pages>, RawQuery(query): RawQuery) -> Html<&'static str> {
    pages.landed.lock().unwrap().push(query.unwrap_or_default());
    Html("<!doctype html><html><body><p id=\"landed\">MERCHANT LANDING PAGE</p></body></html>")
}

/// The merchant's pages and FaceID's end pages, on 127.0.0.1:0.
async fn serve_pages() -> (String, Pages) {
    let pages = Pages::default();
    let app = Router::new()
        .route("/end-post", get(end_post))
        .route("/end-get", get(end_get))
        .route("/landing", get(landing))
        .with_state(pages.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (base, pages)
}

fn set_post_form(pages: &Pages, return_url: &str, callback: &SignedCallback) {
    *pages.post_form.lock().unwrap() = format!(
        "<!doctype html><html><body onload=\"document.forms[0].submit()\">\
         <form method=\"post\" action=\"{}\">\
         <input type=\"hidden\" name=\"data\" value=\"{}\">\
         <input type=\"hidden\" name=\"sign\" value=\"{}\">\
         </form></body></html>",
        html_attr(return_url),
        html_attr(callback.data_text().unwrap()),
        html_attr(&callback.sign)
    );
}

fn pairs(query: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn assert_landing_query(query: &str, biz_id: &str, biz_no: Option<&str>, status: &str) {
    let pairs = pairs(query);
    let keys: Vec<&str> = pairs.iter().map(|(k, _)| k.as_str()).collect();
    assert!(
        keys.iter()
            .all(|k| ["biz_id", "biz_no", "status"].contains(k)),
        "only biz_id, biz_no and status reach the page: {keys:?}"
    );
    let get = |key: &str| {
        pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(get("biz_id"), Some(biz_id));
    assert_eq!(get("biz_no"), biz_no);
    assert_eq!(get("status"), Some(status));
    for secret in IDENTITY {
        assert!(
            !query.contains(secret),
            "identity data in the landing query"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_lands_on_the_configured_page_after_post_and_get_return() {
    let Some(chromium) = chromium_or_skip() else {
        return;
    };
    let db = TestDatabase::create(Engine::Sqlite).await.unwrap();
    let (pages_base, pages) = serve_pages().await;
    let landing_url = format!("{pages_base}/landing");
    let serve = Serve::start(db.url(), &[("APP__RETURN__REDIRECT_URL", &landing_url)]).await;
    let return_url = format!("{}/faceid/return", serve.base);

    // POST mode: the end page auto-submits the signed result.
    let now_ms = SystemClock.now_ms();
    let (biz_id, data) = CallbackSpec::new("OK")
        .biz_no("order-42 & co")
        .build(now_ms);
    set_post_form(&pages, &return_url, &SignedCallback::sign(SECRET, data));
    let dom = run_chromium(&chromium, &format!("{pages_base}/end-post"), "--dump-dom").await;
    assert!(
        dom.contains("MERCHANT LANDING PAGE"),
        "POST flow: browser ended on: {dom}"
    );
    let landed = pages.landed.lock().unwrap().clone();
    assert_eq!(landed.len(), 1, "{landed:?}");
    assert_landing_query(&landed[0], &biz_id, Some("order-42 & co"), "OK");

    // GET mode: FaceID appends biz_id to the return_url's own query; nothing is known yet.
    let fresh = faceid_sim::mint_biz_id(now_ms);
    *pages.get_target.lock().unwrap() =
        return_get_url(&format!("{return_url}?shop=7"), &fresh).unwrap();
    let dom = run_chromium(&chromium, &format!("{pages_base}/end-get"), "--dump-dom").await;
    assert!(
        dom.contains("MERCHANT LANDING PAGE"),
        "GET flow: browser ended on: {dom}"
    );
    let landed = pages.landed.lock().unwrap().clone();
    assert_eq!(landed.len(), 2, "{landed:?}");
    assert_landing_query(&landed[1], &fresh, None, "PENDING");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_renders_the_built_in_page_without_a_redirect() {
    let Some(chromium) = chromium_or_skip() else {
        return;
    };
    let db = TestDatabase::create(Engine::Sqlite).await.unwrap();
    let (pages_base, pages) = serve_pages().await;
    let serve = Serve::start(db.url(), &[]).await;
    let return_url = format!("{}/faceid/return", serve.base);
    let now_ms = SystemClock.now_ms();
    let (_, data) = CallbackSpec::new("OK").build(now_ms);
    set_post_form(&pages, &return_url, &SignedCallback::sign(SECRET, data));
    let end_page = format!("{pages_base}/end-post");

    let dom = run_chromium(&chromium, &end_page, "--dump-dom").await;
    assert!(
        dom.contains("Your verification is complete."),
        "built-in page: browser ended on: {dom}"
    );
    for secret in IDENTITY {
        assert!(!dom.contains(secret), "identity data on the built-in page");
    }

    let artifacts = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let shot = artifacts.join("return-built-in-page.png");
    let _ = std::fs::remove_file(&shot);
    // The same flow again (a duplicate is idempotent), photographed at the end.
    run_chromium(
        &chromium,
        &end_page,
        &format!("--screenshot={}", shot.display()),
    )
    .await;
    let png = std::fs::read(&shot).expect("screenshot written");
    assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
    eprintln!(
        "built-in page screenshot: {} ({} bytes)",
        shot.display(),
        png.len()
    );
}
