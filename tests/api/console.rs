//! The operator console over plain HTTP (no browser), on both engines: who can sign in, the
//! session cookie and its expiry, the CSRF token on every form, the headers of every console
//! answer, identity data kept out of every page without `pii` (and shown, access-logged, only
//! by the reveal POST), "fetch now" under the API's budget, replay under `admin`, and the
//! sign-in rate limit.

use reqwest::Response;
use reqwest::header::{HeaderMap, LOCATION, SET_COOKIE};
use sha2::{Digest, Sha256};

use crate::common::Engine;
use crate::helpers::*;

pub const CONSOLE_PII: &str = "console-token-pii-0123";
pub const CONSOLE_PLAIN: &str = "console-token-plain-0123";
pub const CONSOLE_ADMIN: &str = "console-token-admin-0123";
/// A valid API token without the `console` scope.
pub const NOT_CONSOLE: &str = "api-token-pii-only-0123";

/// Identity values of the simulator's results and of the seed: never in a page without
/// `pii` (and a reveal).
const IDENTITY: &[&str] = &[
    "000000190001010000",
    "测试模拟",
    "陈AB",
    "xxxxxx19910602xxxx",
    "北京市海淀区",
    "110101199003070000",
    "张三",
];

pub fn console_options(extra: Vec<(&'static str, String)>) -> Options {
    let mut env = vec![
        ("APP__CONSOLE__ENABLED", "true".to_owned()),
        (
            "APP__API__TOKENS",
            format!(
                "{CONSOLE_PII}:console+pii,{CONSOLE_PLAIN}:console,{CONSOLE_ADMIN}:console+admin,{NOT_CONSOLE}:pii"
            ),
        ),
        ("APP__CONSOLE__SIGN_IN_PER_MINUTE", "0".to_owned()),
        // Push tests register an endpoint on a loopback receiver.
        ("APP__PUSH__ALLOW_PRIVATE_TARGETS", "true".to_owned()),
    ];
    env.extend(extra);
    Options {
        env,
        ..Default::default()
    }
}

macro_rules! console_tests {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $case() {
                    let app = $crate::helpers::spawn_app($crate::common::Engine::Sqlite, super::console_options(Vec::new())).await.expect("sqlite is always available");
                    super::$case(app).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $case() {
                    if let Some(app) = $crate::helpers::spawn_app($crate::common::Engine::Postgres, super::console_options(Vec::new())).await {
                        super::$case(app).await;
                    }
                }
            )*
        }
    };
}

console_tests!(
    only_a_token_with_the_console_scope_signs_in_and_the_cookie_is_strict,
    every_console_answer_carries_the_security_headers,
    a_form_post_without_its_csrf_token_is_refused,
    a_form_the_console_cannot_read_is_answered_with_a_page,
    without_pii_no_identity_value_reaches_a_page_and_reveal_is_audited,
    an_idle_or_too_old_session_sends_the_browser_to_sign_in,
    fetch_now_follows_the_api_budget,
    replay_needs_admin_and_previews_before_it_stores,
    a_token_taken_out_of_the_configuration_ends_its_sessions,
    push_deliveries_show_by_endpoint_and_attempt_and_actions_follow_the_api_rules,
);

/// A form or query that cannot be read (a field twice, or not a web form at all) is answered
/// like any other console refusal: a 400 page with the console's headers, not the API's
/// JSON, and nothing is done.
async fn a_form_the_console_cannot_read_is_answered_with_a_page(app: TestApp) {
    let cookie = session(&app, CONSOLE_ADMIN).await;
    let token = csrf(&html(get(&app, &cookie, "/console").await).await);
    let twice = format!("csrf={token}&csrf={token}");
    let answers = [
        (
            "token twice",
            app.post_form("/console/sign-in", "token=a&token=b".to_owned())
                .await,
        ),
        (
            "JSON sign-in",
            app.client
                .post(app.url("/console/sign-in"))
                .header("content-type", "application/json")
                .body("{}")
                .send()
                .await
                .unwrap(),
        ),
        (
            "csrf twice",
            app.client
                .post(app.url("/console/sign-out"))
                .header("cookie", &cookie)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(twice)
                .send()
                .await
                .unwrap(),
        ),
        (
            "status twice",
            get(
                &app,
                &cookie,
                "/console/verifications?status=OK&status=FAIL",
            )
            .await,
        ),
    ];
    for (what, response) in answers {
        assert_eq!(response.status(), 400, "{what}");
        assert_eq!(
            response
                .headers()
                .get("content-security-policy")
                .and_then(|v| v.to_str().ok()),
            Some(faceid_receiver::console::CSP),
            "{what}"
        );
        let page = html(response).await;
        assert!(page.contains("Check the form"), "{what}: {page}");
        assert!(page.contains("could not be read"), "{what}: {page}");
    }
    assert_eq!(
        get(&app, &cookie, "/console").await.status(),
        200,
        "still signed in"
    );
}

// ---- helpers ----

pub async fn sign_in(app: &TestApp, token: &str) -> Response {
    let body = form_urlencoded::Serializer::new(String::new())
        .append_pair("token", token)
        .finish();
    app.post_form("/console/sign-in", body).await
}

/// The `console_session=…` pair a successful sign-in set.
pub async fn session(app: &TestApp, token: &str) -> String {
    let response = sign_in(app, token).await;
    assert_eq!(response.status(), 303, "sign-in with {token:.14}…");
    cookie_pair(response.headers()).expect("a session cookie")
}

fn cookie_pair(headers: &HeaderMap) -> Option<String> {
    let cookie = headers.get(SET_COOKIE)?.to_str().ok()?;
    Some(cookie.split(';').next()?.to_owned())
}

pub async fn get(app: &TestApp, cookie: &str, path: &str) -> Response {
    app.client
        .get(app.url(path))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap()
}

pub async fn post(app: &TestApp, cookie: &str, path: &str, pairs: &[(&str, &str)]) -> Response {
    let mut body = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        body.append_pair(k, v);
    }
    app.client
        .post(app.url(path))
        .header("cookie", cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body.finish())
        .send()
        .await
        .unwrap()
}

/// The CSRF token in a page's forms.
pub fn csrf(html: &str) -> String {
    let at = html
        .find("name=\"csrf\" value=\"")
        .expect("a form with a CSRF token");
    let rest = &html[at + "name=\"csrf\" value=\"".len()..];
    rest[..rest.find('"').unwrap()].to_owned()
}

async fn html(response: Response) -> String {
    assert!(
        response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/html")),
        "an HTML page: {:?}",
        response.headers()
    );
    response.text().await.unwrap()
}

fn detail(biz_id: &str) -> String {
    format!(
        "/console/verification?{}",
        form_urlencoded::Serializer::new(String::new())
            .append_pair("biz_id", biz_id)
            .finish()
    )
}

fn goes_to_sign_in(response: &Response) -> bool {
    response.status() == 303
        && response
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            == Some("/console/sign-in")
}

/// A simulator result (fake identity values) and the seed, both signed, plus a refused
/// delivery. Returns the simulator result's biz_id.
async fn store_results(app: &TestApp) -> String {
    let (biz_id, data) = faceid_sim::CallbackSpec::new("OK")
        .biz_no("order-7")
        .build(NOW_MS);
    assert_eq!(app.notify(&data).await.status(), 200);
    assert_eq!(app.notify(SEED_OK).await.status(), 200);
    let forged = form_body(&data, &"0".repeat(40));
    app.notify_refused(forged.into_bytes()).await;
    biz_id
}

// ---- cases ----

async fn only_a_token_with_the_console_scope_signs_in_and_the_cookie_is_strict(app: TestApp) {
    // Unknown token, and a real API token without the scope: refused, no cookie.
    for (token, status) in [("not-a-token", 401), (NOT_CONSOLE, 403), ("", 401)] {
        let response = sign_in(&app, token).await;
        assert_eq!(response.status(), status, "{token:?}");
        assert!(response.headers().get(SET_COOKIE).is_none());
        let page = html(response).await;
        assert!(page.contains("Sign-in refused"), "{page}");
    }
    let audit = app.store.audit_log(10).await.unwrap();
    assert_eq!(audit.len(), 3, "{audit:?}");
    assert!(audit.iter().all(|e| e.event == "sign_in_refused"));
    let text = format!("{audit:?}");
    assert!(
        !text.contains("not-a-token") && !text.contains(NOT_CONSOLE),
        "{text}"
    );
    assert!(text.contains("missing_scope") && text.contains("unknown_token"));

    // Without a session every page sends the browser to sign in.
    assert!(goes_to_sign_in(&app.get("/console").await));
    assert!(goes_to_sign_in(&app.get("/console/verifications").await));

    let response = sign_in(&app, CONSOLE_PLAIN).await;
    assert_eq!(response.status(), 303);
    assert_eq!(response.headers()[LOCATION], "/console");
    let cookie = response.headers()[SET_COOKIE].to_str().unwrap().to_owned();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/console"] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    assert!(
        !cookie.contains("Secure"),
        "no https public URL here: {cookie}"
    );
    let pair = cookie.split(';').next().unwrap().to_owned();
    let id = pair.trim_start_matches("console_session=");
    // The database holds a hash of the session id, never the id itself.
    assert!(
        app.store
            .touch_session(id, NOW_MS, 0)
            .await
            .unwrap()
            .is_none()
    );
    let hashed = hex::encode(Sha256::digest(id.as_bytes()));
    assert!(
        app.store
            .touch_session(&hashed, NOW_MS, 0)
            .await
            .unwrap()
            .is_some()
    );

    let page = html(get(&app, &pair, "/console").await).await;
    assert!(page.contains("<h1>Overview"), "{page}");
    assert!(page.contains("No push endpoint is registered"), "{page}");
}

async fn every_console_answer_carries_the_security_headers(app: TestApp) {
    let cookie = session(&app, CONSOLE_ADMIN).await;
    let page = html(get(&app, &cookie, "/console").await).await;
    let token = csrf(&page);
    let answers = vec![
        ("sign-in form", app.get("/console/sign-in").await),
        ("redirect", app.get("/console").await),
        ("refused sign-in", sign_in(&app, "wrong").await),
        ("overview", get(&app, &cookie, "/console").await),
        ("week", get(&app, &cookie, "/console?window=7d").await),
        (
            "search",
            get(&app, &cookie, "/console/verifications?status=OK").await,
        ),
        (
            "bad search",
            get(&app, &cookie, "/console/verifications?from=yesterday").await,
        ),
        (
            "unknown record",
            get(&app, &cookie, &detail("1795392000,none")).await,
        ),
        ("no such page", get(&app, &cookie, "/console/nope").await),
        ("stylesheet", app.get("/console/assets/console.css").await),
        ("icon", app.get("/console/assets/icon.svg").await),
        ("replay", get(&app, &cookie, "/console/replay").await),
        (
            "csrf refused",
            post(&app, &cookie, "/console/sign-out", &[]).await,
        ),
        (
            "method not allowed",
            app.client
                .put(app.url("/console/sign-in"))
                .send()
                .await
                .unwrap(),
        ),
        (
            "sign-out",
            post(&app, &cookie, "/console/sign-out", &[("csrf", &token)]).await,
        ),
    ];
    let mut statuses = Vec::new();
    for (what, response) in answers {
        let headers = response.headers();
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        assert_eq!(
            header("content-security-policy"),
            faceid_receiver::console::CSP,
            "{what}"
        );
        assert_eq!(header("cache-control"), "no-store", "{what}");
        assert_eq!(header("x-frame-options"), "DENY", "{what}");
        assert_eq!(header("referrer-policy"), "no-referrer", "{what}");
        assert_eq!(header("x-content-type-options"), "nosniff", "{what}");
        statuses.push(response.status().as_u16());
    }
    assert_eq!(
        statuses,
        [
            200, 303, 401, 200, 200, 200, 400, 404, 404, 200, 200, 200, 403, 405, 303
        ]
    );
    let csp = faceid_receiver::console::CSP;
    assert!(!csp.contains("unsafe") && csp.contains("default-src 'none'"));
}

async fn a_form_post_without_its_csrf_token_is_refused(app: TestApp) {
    let biz_id = store_results(&app).await;
    let cookie = session(&app, CONSOLE_PII).await;
    let page = html(get(&app, &cookie, &detail(&biz_id)).await).await;
    let token = csrf(&page);
    let other = csrf(&html(get(&app, &session(&app, CONSOLE_PII).await, "/console").await).await);
    assert_ne!(token, other, "one token per session");
    for (path, extra) in [
        ("/console/sign-out", None),
        ("/console/verification/fetch", Some(biz_id.as_str())),
        ("/console/verification/reveal", Some(biz_id.as_str())),
    ] {
        for presented in [None, Some(""), Some(other.as_str()), Some("x")] {
            let mut pairs = Vec::new();
            if let Some(biz_id) = extra {
                pairs.push(("biz_id", biz_id));
            }
            if let Some(presented) = presented {
                pairs.push(("csrf", presented));
            }
            let response = post(&app, &cookie, path, &pairs).await;
            assert_eq!(response.status(), 403, "{path} with {presented:?}");
            let page = html(response).await;
            assert!(page.contains("Form refused"));
            for needle in IDENTITY {
                assert!(!page.contains(needle));
            }
        }
    }
    // Nothing happened: no follow-up asked, no access logged, still signed in.
    assert!(app.store.access_log(None, 10).await.unwrap().is_empty());
    let refused = app.store.audit_log(100).await.unwrap();
    assert_eq!(
        refused.iter().filter(|e| e.event == "csrf_refused").count(),
        12
    );
    assert_eq!(get(&app, &cookie, "/console").await.status(), 200);
    // With the token: signed out, and the session is gone.
    let response = post(&app, &cookie, "/console/sign-out", &[("csrf", &token)]).await;
    assert!(goes_to_sign_in(&response));
    assert!(goes_to_sign_in(&get(&app, &cookie, "/console").await));
}

async fn without_pii_no_identity_value_reaches_a_page_and_reveal_is_audited(app: TestApp) {
    let biz_id = store_results(&app).await;
    for token in [CONSOLE_PLAIN, CONSOLE_PII] {
        let cookie = session(&app, token).await;
        let mut pages = Vec::new();
        for path in [
            "/console".to_owned(),
            "/console?window=7d".to_owned(),
            "/console/verifications".to_owned(),
            "/console/verifications?biz_no=order-7&status=OK&from=2026-11-22&until=2026-11-23"
                .to_owned(),
            detail(&biz_id),
            detail(SEED_BIZ_ID),
        ] {
            let response = get(&app, &cookie, &path).await;
            assert_eq!(response.status(), 200, "{path}");
            pages.push((path, html(response).await));
        }
        assert!(pages[3].1.contains(&biz_id), "the search found it");
        assert!(pages[4].1.contains("identity data masked"));
        for (path, page) in &pages {
            for needle in IDENTITY {
                assert!(!page.contains(needle), "{needle} in {path} for {token:.14}");
            }
        }
        // Only a pii token is offered the reveal.
        assert_eq!(
            pages[4].1.contains("Reveal identity data"),
            token == CONSOLE_PII
        );
    }
    // Revealing without pii: refused. With pii: shown, and access-logged like an API read.
    let plain = session(&app, CONSOLE_PLAIN).await;
    let token = csrf(&html(get(&app, &plain, "/console").await).await);
    let response = post(
        &app,
        &plain,
        "/console/verification/reveal",
        &[("csrf", &token), ("biz_id", &biz_id)],
    )
    .await;
    assert_eq!(response.status(), 403);
    assert!(app.store.access_log(None, 10).await.unwrap().is_empty());

    let cookie = session(&app, CONSOLE_PII).await;
    let token = csrf(&html(get(&app, &cookie, "/console").await).await);
    let response = post(
        &app,
        &cookie,
        "/console/verification/reveal",
        &[("csrf", &token), ("biz_id", &biz_id)],
    )
    .await;
    assert_eq!(response.status(), 200);
    let page = html(response).await;
    assert!(
        page.contains("测试模拟"),
        "revealed: the needle is really in the result"
    );
    let log = app.store.access_log(Some(&biz_id), 10).await.unwrap();
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].route, faceid_receiver::console::pages::REVEAL_ROUTE);
    let audit = app.store.audit_log(1).await.unwrap();
    assert_eq!(audit[0].event, "reveal");
    assert_eq!(audit[0].biz_id.as_deref(), Some(biz_id.as_str()));
}

async fn an_idle_or_too_old_session_sends_the_browser_to_sign_in(app: TestApp) {
    let minute = 60_000;
    // Idle: 30 min by default.
    let cookie = session(&app, CONSOLE_PLAIN).await;
    app.clock.advance(29 * minute);
    assert_eq!(get(&app, &cookie, "/console").await.status(), 200);
    app.clock.advance(30 * minute + 1);
    assert!(goes_to_sign_in(&get(&app, &cookie, "/console").await));
    assert!(
        goes_to_sign_in(&get(&app, &cookie, "/console").await),
        "not revived"
    );
    // Absolute: 12 h, however busy.
    let cookie = session(&app, CONSOLE_PLAIN).await;
    for _ in 0..35 {
        app.clock.advance(20 * minute);
        assert_eq!(get(&app, &cookie, "/console").await.status(), 200);
    }
    app.clock.advance(20 * minute);
    assert!(goes_to_sign_in(&get(&app, &cookie, "/console").await));
}

async fn fetch_now_follows_the_api_budget(app: TestApp) {
    let biz_id = "1795392000,console-fetch";
    let response = app.get(&format!("/faceid/return?biz_id={biz_id}")).await;
    assert!(response.status().is_redirection());
    let cookie = session(&app, CONSOLE_PLAIN).await;
    let token = csrf(&html(get(&app, &cookie, &detail(biz_id)).await).await);
    app.clock.advance(1_000);
    let response = post(
        &app,
        &cookie,
        "/console/verification/fetch",
        &[("csrf", &token), ("biz_id", biz_id)],
    )
    .await;
    assert_eq!(response.status(), 303);
    let location = response.headers()[LOCATION].to_str().unwrap().to_owned();
    assert!(location.ends_with("&notice=fetch"), "{location}");
    let fetch = app.store.get(biz_id).await.unwrap().unwrap().fetch;
    assert_eq!(
        fetch.next_at,
        Some(NOW_MS + 1_000),
        "due now, as the API's route makes it"
    );
    assert!(
        html(get(&app, &cookie, &location).await)
            .await
            .contains("was scheduled")
    );

    // Spend the budget as the worker would; then "fetch now" is refused as by the API.
    let now = NOW_MS + 1_000;
    app.store
        .lease_due_jobs("w", now, now + 60_000, 10)
        .await
        .unwrap();
    for _ in 0..3 {
        assert!(
            app.store
                .reserve_call(biz_id, "w", now, now, 3)
                .await
                .unwrap()
                .is_some()
        );
    }
    let response = post(
        &app,
        &cookie,
        "/console/verification/fetch",
        &[("csrf", &token), ("biz_id", biz_id)],
    )
    .await;
    assert_eq!(response.status(), 409);
    assert!(html(response).await.contains("get_result calls"));
    let api = app
        .client
        .post(app.url(&format!(
            "/api/v1/verifications/{}/fetch",
            encode_path(biz_id)
        )))
        .bearer_auth(NOT_CONSOLE)
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(api).await, "budget_exhausted", "the API agrees");
    let audit = app.store.audit_log(2).await.unwrap();
    let details: Vec<Option<&str>> = audit.iter().map(|e| e.detail.as_deref()).collect();
    assert_eq!(details, [Some("budget_exhausted"), Some("scheduled")]);
}

async fn replay_needs_admin_and_previews_before_it_stores(app: TestApp) {
    // A delivery signed with a secret we do not have yet.
    let (biz_id, data) = faceid_sim::CallbackSpec::new("OK").build(NOW_MS);
    let old = "rotated-secret-0123456789";
    let body = form_body(&data, &protocol_sign(old, &data));
    app.notify_refused(body.into_bytes()).await;

    let plain = session(&app, CONSOLE_PLAIN).await;
    assert_eq!(get(&app, &plain, "/console/replay").await.status(), 403);
    let token = csrf(&html(get(&app, &plain, "/console").await).await);
    let response = post(&app, &plain, "/console/replay/preview", &[("csrf", &token)]).await;
    assert_eq!(response.status(), 403);

    let admin = session(&app, CONSOLE_ADMIN).await;
    let page = html(get(&app, &admin, "/console/replay").await).await;
    let token = csrf(&page);
    let preview =
        html(post(&app, &admin, "/console/replay/preview", &[("csrf", &token)]).await).await;
    assert!(
        preview.contains("1 refused deliveries examined; 0 would be replayed"),
        "{preview}"
    );
    assert!(
        !preview.contains("/console/replay/run"),
        "nothing to replay"
    );

    // The operator adds the secret FaceID used; the preview now finds it, nothing stored yet.
    let app = app
        .restart(console_options(vec![(
            "APP__MEGVII__PREVIOUS_SECRETS",
            old.to_owned(),
        )]))
        .await;
    let admin = session(&app, CONSOLE_ADMIN).await;
    let token = csrf(&html(get(&app, &admin, "/console/replay").await).await);
    let preview =
        html(post(&app, &admin, "/console/replay/preview", &[("csrf", &token)]).await).await;
    assert!(preview.contains("1 would be replayed"), "{preview}");
    assert!(
        app.store.get(&biz_id).await.unwrap().is_none(),
        "a dry run stores nothing"
    );
    let done = html(post(&app, &admin, "/console/replay/run", &[("csrf", &token)]).await).await;
    assert!(done.contains("1 stored"), "{done}");
    assert_eq!(app.store.get(&biz_id).await.unwrap().unwrap().status, "OK");
    let events: Vec<String> = app
        .store
        .audit_log(2)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.event)
        .collect();
    assert_eq!(events, ["replay", "replay_preview"]);
}

fn protocol_sign(secret: &str, data: &str) -> String {
    faceid_receiver::protocol::sign::sign(secret, data.as_bytes())
}

#[tokio::test]
async fn sign_in_attempts_are_rate_limited_per_client() {
    let options = console_options(vec![
        ("APP__CONSOLE__SIGN_IN_PER_MINUTE", "1".to_owned()),
        ("APP__CONSOLE__SIGN_IN_BURST", "3".to_owned()),
    ]);
    let app = spawn_app(Engine::Sqlite, options).await.unwrap();
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(sign_in(&app, "guess").await.status().as_u16());
    }
    assert_eq!(statuses, [401, 401, 401, 429]);
    let limited = sign_in(&app, CONSOLE_PLAIN).await;
    assert_eq!(limited.status(), 429, "even the right token waits");
    assert!(limited.headers().get("retry-after").is_some());
    assert_eq!(
        limited.headers()["content-security-policy"],
        faceid_receiver::console::CSP
    );
    assert!(html(limited).await.contains("Too many sign-in attempts"));
    // The other pages are not limited.
    assert_eq!(app.get("/console/sign-in").await.status(), 200);
}

async fn a_token_taken_out_of_the_configuration_ends_its_sessions(app: TestApp) {
    let plain = session(&app, CONSOLE_PLAIN).await;
    let admin = session(&app, CONSOLE_ADMIN).await;
    assert_eq!(get(&app, &plain, "/console").await.status(), 200);
    // The operator drops the plain token, and takes the console scope from no one else.
    let app = app
        .restart(console_options(vec![(
            "APP__API__TOKENS",
            format!("{CONSOLE_ADMIN}:console+admin,{CONSOLE_PII}:pii"),
        )]))
        .await;
    assert!(goes_to_sign_in(&get(&app, &plain, "/console").await));
    assert_eq!(
        get(&app, &admin, "/console").await.status(),
        200,
        "shared by the replica"
    );
    // A token whose console scope was taken away cannot sign in any more either.
    assert_eq!(sign_in(&app, CONSOLE_PII).await.status(), 403);
}

#[tokio::test]
async fn the_console_is_not_served_unless_enabled() {
    let app = spawn_app(Engine::Sqlite, Options::default()).await.unwrap();
    for path in [
        "/console",
        "/console/sign-in",
        "/console/assets/console.css",
    ] {
        assert_eq!(app.get(path).await.status(), 404, "{path}");
    }
    assert_eq!(sign_in(&app, TOKEN).await.status(), 404);
}

/// A loopback endpoint (on 127.0.0.1) that answers the given statuses in turn (then 200) and counts what it
/// got. Its URL's path and query stand for the merchant's secrets: never in a page.
pub async fn receiver(statuses: &[u16]) -> (String, std::sync::Arc<std::sync::Mutex<usize>>) {
    let answers = std::sync::Arc::new(std::sync::Mutex::new(
        statuses
            .iter()
            .copied()
            .collect::<std::collections::VecDeque<u16>>(),
    ));
    let seen = std::sync::Arc::new(std::sync::Mutex::new(0usize));
    let counter = seen.clone();
    let app = axum::Router::new().route(
        "/hook/path-secret-7q",
        axum::routing::post(move || {
            let (answers, counter) = (answers.clone(), counter.clone());
            async move {
                *counter.lock().unwrap() += 1;
                let status = answers.lock().unwrap().pop_front().unwrap_or(200);
                axum::http::StatusCode::from_u16(status).unwrap()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://{}/hook/path-secret-7q?merchant-token=query-secret-9z",
        listener.local_addr().unwrap()
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, seen)
}

/// Form fields, owned.
type Pairs = Vec<(String, String)>;

/// Registers an endpoint at `url` (for `verification.completed`) straight in the store.
pub async fn register_endpoint(app: &TestApp, id: &str, url: &str, secret: &str) {
    app.store
        .create_endpoint(
            &faceid_receiver::store::NewEndpoint {
                id: id.to_owned(),
                url: url.to_owned(),
                events: vec!["verification.completed".to_owned()],
                include_pii: false,
                description: None,
                secret: secret.to_owned(),
                now: faceid_receiver::clock::Clock::now_ms(&app.clock),
            },
            50,
        )
        .await
        .unwrap()
        .expect("registered");
}

/// The cells of the table row with this id, tags stripped.
fn row_cells(html: &str, id: &str) -> Vec<String> {
    let at = html
        .find(&format!("<tr id=\"{id}\">"))
        .unwrap_or_else(|| panic!("row {id} in {html}"));
    let row = &html[at..at + html[at..].find("</tr>").unwrap()];
    row.split("<td")
        .skip(1)
        .map(|cell| {
            let cell = &cell[cell.find('>').unwrap() + 1..];
            let cell = &cell[..cell.find("</td>").unwrap_or(cell.len())];
            let mut text = String::new();
            let mut in_tag = false;
            for c in cell.chars() {
                match c {
                    '<' => in_tag = true,
                    '>' => in_tag = false,
                    c if !in_tag => text.push(c),
                    _ => {}
                }
            }
            text.split_whitespace().collect::<Vec<_>>().join(" ")
        })
        .collect()
}

async fn push_deliveries_show_by_endpoint_and_attempt_and_actions_follow_the_api_rules(
    app: TestApp,
) {
    use faceid_receiver::push::dispatcher::Dispatcher;
    use std::sync::Arc;

    let admin = session(&app, CONSOLE_ADMIN).await;
    let plain = session(&app, CONSOLE_PLAIN).await;
    let empty = html(get(&app, &admin, "/console").await).await;
    assert!(empty.contains("No push endpoint is registered"), "{empty}");

    // An endpoint that fails the first attempts (the simulator's result and the seed), then
    // takes the retry.
    let (url, seen) = receiver(&[503, 503]).await;
    let secret = "whsec_Y29uc29sZS1wdXNoLXNlY3JldC1ub3QtdG8tc2hvdw==";
    register_endpoint(&app, "ep_console", &url, secret).await;
    let origin = url[..url.find("/hook").unwrap()].to_owned();
    let biz_id = store_results(&app).await;
    let dispatcher = Dispatcher::new(&app.push, app.store.clone(), Arc::new(app.clock.clone()))
        .unwrap()
        .with_owner("console-test");
    dispatcher.run_once().await.unwrap();
    assert_eq!(
        *seen.lock().unwrap(),
        2,
        "the endpoint was tried for both results"
    );
    let attempts = app.store.push_attempts(&biz_id, 10).await.unwrap();
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0].code, "HTTP 503");
    let event_id = attempts[0].event_id.clone();

    // The overview: the endpoint by its origin, two pending deliveries, both failing.
    let overview = html(get(&app, &admin, "/console").await).await;
    let cells = row_cells(&overview, "endpoint-ep_console");
    assert_eq!(
        cells[..6],
        [
            origin.as_str(),
            "2",
            "2",
            "0",
            "0",
            "enabled, failing since 2026-11-23 00:00 UTC"
        ],
        "{cells:?}"
    );
    assert_eq!(cells[6], "Disable", "an admin is offered the action");
    let plain_overview = html(get(&app, &plain, "/console").await).await;
    assert_eq!(
        row_cells(&plain_overview, "endpoint-ep_console").len(),
        6,
        "no action without admin"
    );
    assert!(!plain_overview.contains("/console/push/endpoint/disable"));

    // The verification's timeline: the attempt, with its endpoint's origin and outcome.
    let page = html(get(&app, &admin, &detail(&biz_id)).await).await;
    assert!(
        page.contains(&format!(
            "Push verification.completed to {origin} (attempt 1)"
        )),
        "{page}"
    );
    assert!(page.contains("HTTP 503"), "{page}");
    assert!(page.contains(&event_id));
    assert!(page.contains("Retry push"), "an admin may retry");
    let plain_page = html(get(&app, &plain, &detail(&biz_id)).await).await;
    assert!(plain_page.contains("(attempt 1)"));
    assert!(
        !plain_page.contains("/console/push/retry"),
        "no retry without admin"
    );

    // The actions: refused without admin, refused without this session's CSRF token.
    let plain_token = csrf(&plain_overview);
    let admin_token = csrf(&overview);
    let retry = |token: &str| {
        vec![
            ("csrf".to_owned(), token.to_owned()),
            ("event_id".to_owned(), event_id.clone()),
            ("biz_id".to_owned(), biz_id.clone()),
        ]
    };
    let on_endpoint = |token: &str| {
        vec![
            ("csrf".to_owned(), token.to_owned()),
            ("endpoint_id".to_owned(), "ep_console".to_owned()),
        ]
    };
    let send = |cookie: String, path: &'static str, pairs: Vec<(String, String)>| {
        let app = &app;
        async move {
            let borrowed: Vec<(&str, &str)> = pairs
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            post(app, &cookie, path, &borrowed).await
        }
    };
    let actions: [(&'static str, Pairs, Pairs); 3] = [
        (
            "/console/push/retry",
            retry(&plain_token),
            retry(&admin_token),
        ),
        (
            "/console/push/endpoint/disable",
            on_endpoint(&plain_token),
            on_endpoint(&admin_token),
        ),
        (
            "/console/push/endpoint/enable",
            on_endpoint(&plain_token),
            on_endpoint(&admin_token),
        ),
    ];
    for (path, plain_pairs, admin_pairs) in &actions {
        let response = send(plain.clone(), path, plain_pairs.clone()).await;
        assert_eq!(response.status(), 403, "{path} without admin");
        assert!(html(response).await.contains("admin scope"));
        for presented in ["", "x", plain_token.as_str()] {
            let mut pairs = admin_pairs.clone();
            pairs[0].1 = presented.to_owned();
            let response = send(admin.clone(), path, pairs).await;
            assert_eq!(response.status(), 403, "{path} with CSRF {presented:?}");
            assert!(html(response).await.contains("Form refused"));
        }
        let mut pairs = admin_pairs.clone();
        pairs.remove(0);
        let response = send(admin.clone(), path, pairs).await;
        assert_eq!(response.status(), 403, "{path} without CSRF");
    }
    // Nothing happened: the endpoint is enabled, the delivery still waits for its retry.
    assert!(
        app.store
            .endpoint("ep_console")
            .await
            .unwrap()
            .unwrap()
            .disabled_at
            .is_none()
    );
    let health = app.store.endpoint_health().await.unwrap();
    assert_eq!((health[0].pending, health[0].failing), (2, 2));
    assert!(
        !app.store
            .audit_log(100)
            .await
            .unwrap()
            .iter()
            .any(|e| e.event.starts_with("push_") || e.event.starts_with("endpoint_")),
        "no action audited as done"
    );

    // With admin and the token: retry restarts the delivery, due now; the endpoint takes it.
    let response = send(admin.clone(), "/console/push/retry", actions[0].2.clone()).await;
    assert_eq!(response.status(), 303);
    let location = response.headers()[LOCATION].to_str().unwrap().to_owned();
    assert!(location.ends_with("&notice=retry"), "{location}");
    assert!(
        html(get(&app, &admin, &location).await)
            .await
            .contains("queued again")
    );
    let health = app.store.endpoint_health().await.unwrap();
    assert_eq!(
        (health[0].pending, health[0].failing),
        (2, 1),
        "started again from the first attempt"
    );
    dispatcher.run_once().await.unwrap();
    assert_eq!(*seen.lock().unwrap(), 3, "only the retried event was due");
    let page = html(get(&app, &admin, &detail(&biz_id)).await).await;
    assert!(page.contains("(attempt 1)</strong>: delivered"), "{page}");

    // Disable, then enable: as the API's PATCH does.
    let response = send(
        admin.clone(),
        "/console/push/endpoint/disable",
        actions[1].2.clone(),
    )
    .await;
    assert_eq!(response.status(), 303);
    let disabled = app.store.endpoint("ep_console").await.unwrap().unwrap();
    assert!(disabled.disabled_at.is_some());
    let overview = html(get(&app, &admin, "/console").await).await;
    let cells = row_cells(&overview, "endpoint-ep_console");
    assert_eq!(
        cells[..5],
        [origin.as_str(), "1", "1", "0", "1"],
        "{cells:?}"
    );
    assert!(
        cells[5].starts_with("disabled since 2026-11-23 00:00 UTC: disabled through the API"),
        "{cells:?}"
    );
    assert_eq!(cells[6], "Enable");
    let response = send(
        admin.clone(),
        "/console/push/endpoint/enable",
        actions[2].2.clone(),
    )
    .await;
    assert_eq!(response.status(), 303);
    assert!(
        app.store
            .endpoint("ep_console")
            .await
            .unwrap()
            .unwrap()
            .disabled_at
            .is_none()
    );
    // An unknown event or endpoint: 404, as from the API.
    let mut pairs = actions[0].2.clone();
    pairs[1].1 = "evt_nope".to_owned();
    assert_eq!(
        send(admin.clone(), "/console/push/retry", pairs)
            .await
            .status(),
        404
    );
    let mut pairs = actions[1].2.clone();
    pairs[1].1 = "ep_nope".to_owned();
    assert_eq!(
        send(admin.clone(), "/console/push/endpoint/disable", pairs)
            .await
            .status(),
        404
    );

    let events: Vec<(String, Option<String>)> = app
        .store
        .audit_log(3)
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.event, e.detail))
        .collect();
    assert_eq!(
        events,
        [
            ("endpoint_enable".to_owned(), Some("ep_console".to_owned())),
            ("endpoint_disable".to_owned(), Some("ep_console".to_owned())),
            (
                "push_retry".to_owned(),
                Some(format!("{event_id} queued=1"))
            ),
        ]
    );

    // No page shows an identity value (neither token has pii), the endpoint's secret, or its
    // URL's path or query.
    for cookie in [&admin, &plain] {
        for path in [
            "/console".to_owned(),
            "/console?window=7d".to_owned(),
            detail(&biz_id),
        ] {
            let page = html(get(&app, cookie, &path).await).await;
            for needle in IDENTITY.iter().chain(&[
                secret,
                "whsec_",
                "path-secret-7q",
                "query-secret-9z",
                "merchant-token",
            ]) {
                assert!(!page.contains(needle), "{needle} in {path}");
            }
        }
    }
}
