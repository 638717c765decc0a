//! Captures every log line (at TRACE, `log`-crate records included) while the service handles
//! signed, forged and malformed callbacks, return GETs, API reads and the operator console
//! (sign-in, a reveal, a refused form, sign-out), on each engine, then checks that no secret,
//! token, session id, CSRF token, identity field or raw result ever reached the log.

#[path = "common/mod.rs"]
mod common;
// Shared with tests/api; this binary uses only part of it.
#[allow(dead_code)]
#[path = "api/helpers.rs"]
mod helpers;

use common::capture::Capture;
use helpers::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_token_or_identity_data_reaches_the_logs() {
    let capture = Capture::default();
    // `try_init` also installs the `log` bridge (tracing-log): dependencies that log through
    // the `log` crate (sqlx's SQLite driver, rustls, reqwest) are captured as well.
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(capture.clone())
        .with_ansi(false)
        .try_init()
        .expect("first subscriber in this test binary");
    log::warn!(target: "logs_test", "log-crate probe");

    let mut engines = 0;
    let mut console_secrets: Vec<String> = Vec::new();
    for engine in [common::Engine::Sqlite, common::Engine::Postgres] {
        let options = Options {
            env: vec![
                ("APP__CONSOLE__ENABLED", "true".to_owned()),
                (
                    "APP__API__TOKENS",
                    format!("{TOKEN}:pii+console,{PLAIN_TOKEN},{ADMIN_TOKEN}:admin"),
                ),
            ],
            ..Default::default()
        };
        let Some(app) = spawn_app(engine, options).await else {
            continue; // PostgreSQL unavailable and not required: said loudly by common
        };
        exercise(&app).await;
        console_secrets.extend(exercise_console(&app).await);
        drop(app);
        engines += 1;
    }

    let logs = capture.text();
    assert!(logs.contains("log-crate probe"), "log records are captured");
    assert!(
        logs.matches("callback stored").count() >= engines,
        "the capture saw every engine's run: {logs}"
    );
    for needle in [
        SECRET,
        TOKEN,
        "wrong-token-123",
        "110101199003070000",
        "张三",
        "idcard_number",
        "\"data\"",
    ] {
        assert!(!logs.contains(needle), "{needle:?} leaked into the logs");
    }
    assert!(
        logs.contains("console: signed in") && logs.contains("console: sign-in refused"),
        "the console's run was captured"
    );
    assert!(console_secrets.len() >= 2 * engines);
    for secret in &console_secrets {
        assert!(
            !logs.contains(secret.as_str()),
            "a console session id or CSRF token leaked"
        );
    }
}

/// The console: a refused and a good sign-in, a page, a reveal, a form without its CSRF
/// token, sign-out. Returns the session id and CSRF token it used.
async fn exercise_console(app: &TestApp) -> Vec<String> {
    let sign_in = |token: &'static str| app.post_form("/console/sign-in", format!("token={token}"));
    assert_eq!(sign_in("wrong-token-123").await.status(), 401);
    let signed_in = sign_in(TOKEN).await;
    assert_eq!(signed_in.status(), 303);
    let cookie = signed_in.headers()["set-cookie"].to_str().unwrap();
    let cookie = cookie.split(';').next().unwrap().to_owned();
    let session_id = cookie.trim_start_matches("console_session=").to_owned();
    let with_cookie = |request: reqwest::RequestBuilder| request.header("cookie", &cookie);
    let page = with_cookie(app.client.get(app.url("/console")))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let marker = "name=\"csrf\" value=\"";
    let at = page.find(marker).expect("a CSRF field") + marker.len();
    let csrf = page[at..at + 64].to_owned();
    let form = |body: String| {
        with_cookie(app.client.post(app.url("/console/verification/reveal")))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
    };
    let reveal = form(format!("csrf={csrf}&biz_id=1795392000%2Clogs"))
        .await
        .unwrap();
    assert_eq!(reveal.status(), 200);
    assert!(
        reveal.text().await.unwrap().contains("张三"),
        "revealed to the page only"
    );
    let refused = form("biz_id=1795392000%2Clogs".to_owned()).await.unwrap();
    assert_eq!(refused.status(), 403);
    let out = with_cookie(app.client.post(app.url("/console/sign-out")))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("csrf={csrf}"))
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), 303);
    vec![session_id, csrf]
}

/// Signed, forged and malformed callbacks, return GETs and API reads, good and bad tokens.
async fn exercise(app: &TestApp) {
    let id = "1795392000,logs";
    let data = result_data(id, "order-logs", "OK");
    assert_eq!(app.notify(&data).await.status(), 200);
    assert_eq!(
        app.post_form("/faceid/notify", form_body(&data, &"a".repeat(40)))
            .await
            .status(),
        403
    );
    assert_eq!(
        app.post_form("/faceid/return", signed_form(&data))
            .await
            .status(),
        303
    );
    assert_eq!(
        app.post_form("/faceid/notify", signed_form("{\"idcard_name\":\"张三\"}"))
            .await
            .status(),
        400
    );
    assert_eq!(
        app.get("/faceid/return?biz_id=1795392000,other")
            .await
            .status(),
        303
    );
    assert_eq!(
        app.api(&format!("/verifications/{}", encode_path(id)))
            .await
            .status(),
        200
    );
    let wrong = app
        .client
        .get(app.url("/api/v1/verifications"))
        .bearer_auth("wrong-token-123")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
}
