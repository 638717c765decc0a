//! Pushing outcomes, end to end over HTTP on both engines: endpoints managed over the API
//! (admin only, secrets shown once, URLs checked), events delivered to a real local
//! endpoint by the dispatcher driven pass by pass on the manual clock (signed, masked unless
//! `include_pii`, retried on the schedule, nothing twice), three dispatchers sharing one
//! database, SSRF refusals at connect time, and the pull feed and SSE stream.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use faceid_receiver::clock::Clock;
use faceid_receiver::push::dispatcher::Dispatcher;
use faceid_receiver::push::target::Resolver;
use faceid_receiver::push::{EndpointSecret, PushClient, Verifier, WebhookHeaders};
use reqwest::Method;
use serde_json::{Value, json};

use crate::common::Engine;
use crate::helpers::{ADMIN_TOKEN, Options, PLAIN_TOKEN, TOKEN, TestApp, spawn_app};

/// The simulator's identity needles: what must never leave in a push without `include_pii`.
const NEEDLES: [&str; 2] = ["000000190001010000", "测试模拟"];

crate::api_tests!(
    every_push_route_refuses_no_token_and_the_admin_routes_any_but_admin,
    an_endpoint_shows_its_secret_once_and_bad_input_is_refused_clearly,
    a_final_result_is_pushed_signed_and_masked_unless_the_endpoint_includes_pii,
    an_endpoint_down_for_hours_gets_the_event_when_back_and_then_nothing_twice,
    gone_disables_the_endpoint_and_retry_sends_the_event_again,
    three_dispatchers_deliver_each_event_exactly_once,
    the_feed_pages_by_position_and_masks_without_pii,
    the_stream_resumes_after_last_event_id_without_gaps,
);

/// A local endpoint that records every request and answers from a script (then 200).
#[derive(Clone, Default)]
struct Recorder {
    seen: Arc<Mutex<Vec<(HeaderMap, Bytes)>>>,
    answers: Arc<Mutex<VecDeque<u16>>>,
}

impl Recorder {
    /// Serves on 127.0.0.1; returns it and its URL.
    async fn start() -> (Self, String) {
        let recorder = Self::default();
        let state = recorder.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: HeaderMap, body: Bytes| {
                let state = state.clone();
                async move {
                    state.seen.lock().unwrap().push((headers, body));
                    let status = state.answers.lock().unwrap().pop_front().unwrap_or(200);
                    StatusCode::from_u16(status).unwrap()
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "http://{}/hook?merchant-token=abc",
            listener.local_addr().unwrap()
        );
        tokio::spawn(async move { axum::serve(listener, app).await });
        (recorder, url)
    }

    fn answer(&self, statuses: &[u16]) {
        self.answers.lock().unwrap().extend(statuses);
    }

    fn seen(&self) -> Vec<(HeaderMap, Bytes)> {
        self.seen.lock().unwrap().clone()
    }
}

/// A signed OK result carrying the simulator's identity needles.
fn result_with_needles(biz_id: &str) -> String {
    json!({
        "request_id": "1462259763,e2d2f8d6-204b-4c43-92ea-1d62b071f83c",
        "status": "OK",
        "biz_info": {"biz_id": biz_id, "biz_no": "order-7", "biz_extra_data": ""},
        "idcard_info": {"idcard_number": NEEDLES[0], "idcard_name": NEEDLES[1]},
        "liveness_result": {"result": "PASS", "procedure_type": "video"},
        "verify_result": {"result_faceid": {"confidence": 77.5, "thresholds": {"1e-3": 64}}},
        "time_used": 93
    })
    .to_string()
}

impl TestApp {
    async fn call(
        &self,
        method: Method,
        token: Option<&str>,
        path: &str,
        body: Option<Value>,
    ) -> reqwest::Response {
        let mut request = self
            .client
            .request(method, self.url(&format!("/api/v1{path}")));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await.expect("request sent")
    }

    /// Registers an endpoint as admin; returns (id, secret).
    async fn endpoint(&self, body: Value) -> (String, String) {
        let response = self
            .call(Method::POST, Some(ADMIN_TOKEN), "/endpoints", Some(body))
            .await;
        assert_eq!(response.status(), 201);
        let created: Value = response.json().await.unwrap();
        (
            created["id"].as_str().unwrap().to_owned(),
            created["secret"].as_str().unwrap().to_owned(),
        )
    }

    fn dispatcher(&self, owner: &str) -> Dispatcher {
        Dispatcher::new(&self.push, self.store.clone(), Arc::new(self.clock.clone()))
            .unwrap()
            .with_owner(owner)
    }

    async fn notify_ok(&self, biz_id: &str) {
        assert_eq!(
            self.notify(&result_with_needles(biz_id)).await.status(),
            200
        );
    }
}

fn biz(tag: &str) -> String {
    format!("1795392000,{tag}")
}

fn verify(secret: &str, headers: &HeaderMap, body: &[u8], now_ms: i64) -> Result<(), String> {
    let read = WebhookHeaders::read(|name| headers.get(name).and_then(|v| v.to_str().ok()))
        .map_err(|e| e.to_string())?;
    Verifier::new(vec![EndpointSecret::parse(secret).unwrap()])
        .verify(&read, body, now_ms)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

async fn every_push_route_refuses_no_token_and_the_admin_routes_any_but_admin(app: TestApp) {
    let admin_routes = [
        (Method::POST, "/endpoints"),
        (Method::GET, "/endpoints"),
        (Method::GET, "/endpoints/ep_x"),
        (Method::PATCH, "/endpoints/ep_x"),
        (Method::DELETE, "/endpoints/ep_x"),
        (Method::POST, "/endpoints/ep_x/rotate-secret"),
        (Method::POST, "/endpoints/ep_x/test"),
        (Method::POST, "/endpoints/ep_x/replay?since=0"),
        (Method::POST, "/events/evt_x/retry"),
    ];
    let read_routes = [(Method::GET, "/events"), (Method::GET, "/events/stream")];
    for (method, path) in admin_routes.iter().chain(&read_routes) {
        for token in [None, Some("not-a-token")] {
            let response = app.call(method.clone(), token, path, Some(json!({}))).await;
            assert_eq!(response.status(), 401, "{method} {path} with {token:?}");
        }
    }
    for (method, path) in &admin_routes {
        for token in [TOKEN, PLAIN_TOKEN] {
            let response = app
                .call(
                    method.clone(),
                    Some(token),
                    path,
                    Some(json!({"url": "https://example.com/"})),
                )
                .await;
            assert_eq!(response.status(), 403, "{method} {path} without admin");
        }
    }
    assert!(
        app.store.endpoints(10).await.unwrap().is_empty(),
        "nothing registered"
    );
    let feed = app
        .call(Method::GET, Some(PLAIN_TOKEN), "/events", None)
        .await;
    assert_eq!(feed.status(), 200, "any token reads the feed");
}

async fn an_endpoint_shows_its_secret_once_and_bad_input_is_refused_clearly(app: TestApp) {
    // The production policy: public https only.
    let app = app
        .restart(Options {
            env: vec![
                ("APP__PUSH__ALLOW_PRIVATE_TARGETS", "false".into()),
                ("APP__PUSH__MAX_ENDPOINTS", "2".into()),
            ],
            ..Default::default()
        })
        .await;
    for (url, reason) in [
        ("https://127.0.0.1/hook", "loopback"),
        ("https://169.254.169.254/latest/meta-data/", "link_local"),
        ("https://[::1]/hook", "loopback"),
        ("https://10.1.2.3/hook", "private"),
        ("https://localhost/hook", "localhost"),
        ("http://shop.example.com/hook", "https"),
        ("ftp://shop.example.com/hook", "http and https"),
        ("https://user:pw@shop.example.com/hook", "user name"),
    ] {
        let response = app
            .call(
                Method::POST,
                Some(ADMIN_TOKEN),
                "/endpoints",
                Some(json!({"url": url})),
            )
            .await;
        assert_eq!(response.status(), 422, "{url}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"], "invalid_url", "{url}");
        let message = body["message"].as_str().unwrap();
        assert!(message.contains(reason), "{url}: {message}");
        assert!(
            !message.contains("pw@") && !message.contains("meta-data"),
            "{message}"
        );
    }
    let long = format!("https://shop.example.com/{}", "a".repeat(3000));
    for (body, status, code) in [
        (json!({"url": long}), 422, "invalid_url"),
        (
            json!({"url": "https://shop.example.com/", "events": ["x.y"]}),
            422,
            "unknown_event_type",
        ),
        (
            json!({"url": "https://shop.example.com/", "description": "d".repeat(300)}),
            400,
            "invalid_description",
        ),
        (
            json!({"url": "https://shop.example.com/", "include_pii": "yes"}),
            400,
            "invalid_include_pii",
        ),
        (
            json!({"url": "https://shop.example.com/", "secret": "mine"}),
            400,
            "malformed_body",
        ),
        (json!({}), 400, "missing_field"),
    ] {
        let response = app
            .call(
                Method::POST,
                Some(ADMIN_TOKEN),
                "/endpoints",
                Some(body.clone()),
            )
            .await;
        assert_eq!(response.status(), status, "{body}");
        assert_eq!(crate::helpers::error_code(response).await, code, "{body}");
    }

    let (id, secret) = app
        .endpoint(json!({"url": "https://shop.example.com/hook?t=1", "events": ["verification.completed"], "description": "shop"}))
        .await;
    assert!(secret.starts_with("whsec_") && EndpointSecret::parse(&secret).is_ok());
    for path in ["/endpoints".to_owned(), format!("/endpoints/{id}")] {
        let text = app
            .call(Method::GET, Some(ADMIN_TOKEN), &path, None)
            .await
            .text()
            .await
            .unwrap();
        assert!(
            text.contains(&id) && !text.contains(&secret) && !text.contains("whsec_"),
            "{text}"
        );
    }
    let rotated: Value = app
        .call(
            Method::POST,
            Some(ADMIN_TOKEN),
            &format!("/endpoints/{id}/rotate-secret"),
            None,
        )
        .await
        .json()
        .await
        .unwrap();
    let new_secret = rotated["secret"].as_str().unwrap();
    assert!(new_secret.starts_with("whsec_") && new_secret != secret);
    assert_eq!(
        rotated["previous_secret_expires_at"],
        "2026-11-24T00:00:00.000Z"
    );

    let patched: Value = app
        .call(
            Method::PATCH,
            Some(ADMIN_TOKEN),
            &format!("/endpoints/{id}"),
            Some(json!({"enabled": false})),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (
            patched["enabled"].clone(),
            patched["disabled_reason"].clone()
        ),
        (json!(false), json!("disabled through the API"))
    );

    app.endpoint(json!({"url": "https://other.example.com/"}))
        .await;
    let third = app
        .call(
            Method::POST,
            Some(ADMIN_TOKEN),
            "/endpoints",
            Some(json!({"url": "https://third.example.com/"})),
        )
        .await;
    assert_eq!(third.status(), 409, "push.max_endpoints");
    let deleted = app
        .call(
            Method::DELETE,
            Some(ADMIN_TOKEN),
            &format!("/endpoints/{id}"),
            None,
        )
        .await;
    assert_eq!(deleted.status(), 204);
    let gone = app
        .call(
            Method::GET,
            Some(ADMIN_TOKEN),
            &format!("/endpoints/{id}"),
            None,
        )
        .await;
    assert_eq!(gone.status(), 404);
}

async fn a_final_result_is_pushed_signed_and_masked_unless_the_endpoint_includes_pii(app: TestApp) {
    let (masked, masked_url) = Recorder::start().await;
    let (full, full_url) = Recorder::start().await;
    let (_, masked_secret) = app.endpoint(json!({"url": masked_url})).await;
    let (_, full_secret) = app
        .endpoint(json!({"url": full_url, "include_pii": true}))
        .await;
    let id = biz("pushed");
    app.notify_ok(&id).await;

    let pass = app.dispatcher("d").run_once().await.unwrap();
    assert_eq!((pass.published, pass.attempted), (1, 2));

    let now = app.clock.now_ms();
    for (recorder, secret, pii) in [
        (&masked, &masked_secret, false),
        (&full, &full_secret, true),
    ] {
        let seen = recorder.seen();
        assert_eq!(seen.len(), 1);
        let (headers, body) = &seen[0];
        verify(secret, headers, body, now).expect("our verifier accepts it");
        let mut tampered = body.to_vec();
        tampered[10] ^= 1;
        assert!(
            verify(secret, headers, &tampered, now).is_err(),
            "a tampered body is refused"
        );
        let text = String::from_utf8(body.to_vec()).unwrap();
        let event: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(event["type"], "verification.completed");
        assert_eq!(event["timestamp"], "2026-11-23T00:00:00.000Z");
        assert_eq!(event["data"]["biz_id"], id);
        assert_eq!(event["data"]["status"], "OK");
        for needle in NEEDLES {
            assert_eq!(
                text.contains(needle),
                pii,
                "{needle} in a push with include_pii={pii}: {text}"
            );
        }
        assert_eq!(headers["content-type"], "application/json");
        assert!(headers["webhook-id"].to_str().unwrap().starts_with("evt_"));
    }
    // The disclosure to the include_pii endpoint is in the access log.
    let log = app.store.access_log(Some(&id), 10).await.unwrap();
    assert!(
        log.iter().any(
            |e| e.token_fp.starts_with("endpoint:") && e.route == "PUSH verification.completed"
        ),
        "{log:?}"
    );
}

async fn an_endpoint_down_for_hours_gets_the_event_when_back_and_then_nothing_twice(app: TestApp) {
    let (recorder, url) = Recorder::start().await;
    let (endpoint_id, _) = app.endpoint(json!({"url": url})).await;
    // Down for the first five attempts (immediately, 5 s, 5 min, 30 min, 2 h).
    recorder.answer(&[503, 503, 503, 503, 503]);
    app.notify_ok(&biz("patient")).await;
    let dispatcher = app.dispatcher("d");

    // Step the clock a minute at a time through ten hours, a pass per step: the sixth attempt
    // is due about 7.6 h after the first (5 s, 5 min, 30 min, 2 h, 5 h, each ±20 %).
    for _ in 0..(10 * 60) {
        dispatcher.run_once().await.unwrap();
        app.clock.advance(60_000);
    }
    let seen = recorder.seen();
    assert_eq!(seen.len(), 6, "five failures, then the delivery");
    let ids: Vec<&str> = seen
        .iter()
        .map(|(h, _)| h["webhook-id"].to_str().unwrap())
        .collect();
    assert!(
        ids.iter().all(|id| *id == ids[0]),
        "the same webhook-id on every attempt: {ids:?}"
    );
    // Two more days: nothing more.
    for _ in 0..48 {
        app.clock.advance(3_600_000);
        dispatcher.run_once().await.unwrap();
    }
    assert_eq!(
        recorder.seen().len(),
        6,
        "delivered once, then nothing twice"
    );
    let health = app.store.endpoint_health().await.unwrap();
    assert_eq!(
        (
            health[0].delivered,
            health[0].pending,
            health[0].failing_since
        ),
        (1, 0, None)
    );
    let attempts = app.store.push_attempts(&biz("patient"), 20).await.unwrap();
    let outcomes: Vec<&str> = attempts.iter().map(|a| a.outcome.as_str()).collect();
    assert_eq!(
        outcomes,
        ["retry", "retry", "retry", "retry", "retry", "delivered"]
    );
    assert!(attempts.iter().all(|a| a.endpoint_id == endpoint_id));
}

async fn gone_disables_the_endpoint_and_retry_sends_the_event_again(app: TestApp) {
    let (recorder, url) = Recorder::start().await;
    let (id, _) = app.endpoint(json!({"url": url})).await;
    recorder.answer(&[410]);
    app.notify_ok(&biz("gone")).await;
    app.dispatcher("d").run_once().await.unwrap();
    let endpoint: Value = app
        .call(
            Method::GET,
            Some(ADMIN_TOKEN),
            &format!("/endpoints/{id}"),
            None,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(endpoint["enabled"], false);
    assert!(
        endpoint["disabled_reason"]
            .as_str()
            .unwrap()
            .contains("410")
    );
    let event_id = recorder.seen()[0].0["webhook-id"]
        .to_str()
        .unwrap()
        .to_owned();

    // Enabled again and the event retried: it goes out again, with its id.
    let enabled = app
        .call(
            Method::PATCH,
            Some(ADMIN_TOKEN),
            &format!("/endpoints/{id}"),
            Some(json!({"enabled": true})),
        )
        .await;
    assert_eq!(enabled.status(), 200);
    let retried = app
        .call(
            Method::POST,
            Some(ADMIN_TOKEN),
            &format!("/events/{event_id}/retry"),
            None,
        )
        .await;
    assert_eq!(retried.status(), 202);
    assert_eq!(retried.json::<Value>().await.unwrap()["queued"], 1);
    app.dispatcher("d").run_once().await.unwrap();
    let seen = recorder.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[1].0["webhook-id"], event_id.as_str());
    let unknown = app
        .call(
            Method::POST,
            Some(ADMIN_TOKEN),
            "/events/evt_nope/retry",
            None,
        )
        .await;
    assert_eq!(unknown.status(), 404);
    // The test route sends a signed ping now.
    let test: Value = app
        .call(
            Method::POST,
            Some(ADMIN_TOKEN),
            &format!("/endpoints/{id}/test"),
            None,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (test["delivered"].clone(), test["status"].clone()),
        (json!(true), json!(200))
    );
    assert_eq!(recorder.seen().len(), 3);
}

async fn three_dispatchers_deliver_each_event_exactly_once(app: TestApp) {
    let (recorder, url) = Recorder::start().await;
    app.endpoint(json!({"url": url})).await;
    for i in 0..30 {
        app.notify_ok(&biz(&format!("many-{i}"))).await;
    }
    let replicas: Vec<Dispatcher> = ["one", "two", "three"]
        .iter()
        .map(|o| app.dispatcher(o))
        .collect();
    let replicas = Arc::new(replicas);
    let tasks: Vec<_> = (0..3)
        .map(|i| {
            let replicas = replicas.clone();
            tokio::spawn(async move {
                for _ in 0..10 {
                    replicas[i].run_once().await.unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let mut counts: HashMap<String, usize> = HashMap::new();
    for (headers, _) in recorder.seen() {
        *counts
            .entry(headers["webhook-id"].to_str().unwrap().to_owned())
            .or_default() += 1;
    }
    assert_eq!(counts.len(), 30, "every event delivered");
    assert!(
        counts.values().all(|n| *n == 1),
        "each exactly once: {counts:?}"
    );
}

async fn the_feed_pages_by_position_and_masks_without_pii(app: TestApp) {
    for i in 0..5 {
        app.notify_ok(&biz(&format!("feed-{i}"))).await;
    }
    app.dispatcher("d").run_once().await.unwrap();
    let page: Value = app
        .call(Method::GET, Some(PLAIN_TOKEN), "/events?limit=3", None)
        .await
        .json()
        .await
        .unwrap();
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 3);
    assert_eq!(page["next_cursor"], "3");
    let text = page.to_string();
    for needle in NEEDLES {
        assert!(!text.contains(needle), "masked without pii: {text}");
    }
    let rest: Value = app
        .call(Method::GET, Some(PLAIN_TOKEN), "/events?after=3", None)
        .await
        .json()
        .await
        .unwrap();
    let positions: Vec<i64> = rest["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["position"].as_i64().unwrap())
        .collect();
    assert_eq!(positions, [4, 5]);
    let pii: Value = app
        .call(Method::GET, Some(TOKEN), "/events?after=4", None)
        .await
        .json()
        .await
        .unwrap();
    assert!(pii.to_string().contains(NEEDLES[0]), "unmasked with pii");
    assert_eq!(
        app.store
            .access_log(Some(&biz("feed-4")), 10)
            .await
            .unwrap()
            .len(),
        1,
        "and logged"
    );
    for query in [
        "/events?after=-1",
        "/events?after=x",
        "/events?limit=0",
        "/events?limit=501",
    ] {
        let response = app.call(Method::GET, Some(PLAIN_TOKEN), query, None).await;
        assert_eq!(response.status(), 400, "{query}");
    }
}

async fn the_stream_resumes_after_last_event_id_without_gaps(app: TestApp) {
    for i in 0..4 {
        app.notify_ok(&biz(&format!("sse-{i}"))).await;
    }
    app.dispatcher("d").run_once().await.unwrap();
    let read = |resume: Option<&'static str>, want: usize| {
        let app_client = app.client.clone();
        let url = app.url("/api/v1/events/stream");
        async move {
            let mut request = app_client.get(url).bearer_auth(PLAIN_TOKEN);
            if let Some(id) = resume {
                request = request.header("Last-Event-ID", id);
            }
            let mut response = request.send().await.unwrap();
            assert_eq!(response.status(), 200);
            assert_eq!(response.headers()["content-type"], "text/event-stream");
            let mut text = String::new();
            while text.matches("\n\n").count() < want {
                let chunk =
                    tokio::time::timeout(std::time::Duration::from_secs(10), response.chunk())
                        .await
                        .expect("the stream sends")
                        .unwrap()
                        .expect("the stream stays open");
                text.push_str(std::str::from_utf8(&chunk).unwrap());
            }
            text
        }
    };
    let first = read(None, 2).await;
    let ids: Vec<&str> = first
        .lines()
        .filter_map(|l| l.strip_prefix("id: "))
        .collect();
    assert_eq!(ids[..2], ["1", "2"]);
    assert!(first.contains("event: verification.completed"), "{first}");
    // Resumed after 2: 3 and 4, then a fifth published while it is open.
    let resumed = tokio::spawn(read(Some("2"), 3));
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    app.notify_ok(&biz("sse-late")).await;
    app.dispatcher("d").run_once().await.unwrap();
    let resumed = resumed.await.unwrap();
    let ids: Vec<&str> = resumed
        .lines()
        .filter_map(|l| l.strip_prefix("id: "))
        .collect();
    assert_eq!(ids, ["3", "4", "5"], "no gap, no repeat: {resumed}");
    for needle in NEEDLES {
        assert!(!resumed.contains(needle));
    }
    let bad = app
        .client
        .get(app.url("/api/v1/events/stream"))
        .bearer_auth(PLAIN_TOKEN)
        .header("Last-Event-ID", "x")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
}

/// A resolver that sends every name to loopback, and records that it was asked.
struct Everywhere {
    asked: Mutex<Vec<String>>,
}

impl Resolver for Everywhere {
    fn lookup(
        &self,
        host: String,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = std::io::Result<Vec<IpAddr>>> + Send + 'static>,
    > {
        self.asked.lock().unwrap().push(host);
        Box::pin(async { Ok(vec![IpAddr::V4(Ipv4Addr::LOCALHOST)]) })
    }
}

/// With the production policy, a push to a DNS name that resolves to loopback is refused at
/// connect time: the attempt is recorded as `forbidden_address` and nothing is dialed.
#[tokio::test]
async fn a_name_resolving_to_loopback_is_refused_when_the_dispatcher_connects() {
    let app = spawn_app(
        Engine::Sqlite,
        Options {
            env: vec![("APP__PUSH__ALLOW_PRIVATE_TARGETS", "false".into())],
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let (recorder, url) = Recorder::start().await;
    let port = url
        .split(':')
        .nth(2)
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    // A public-looking name (accepted when registered) on the recorder's port.
    app.endpoint(json!({"url": format!("https://hooks.shop.example:{port}/hook")}))
        .await;
    app.notify_ok(&biz("ssrf")).await;
    let resolver = Arc::new(Everywhere {
        asked: Mutex::new(Vec::new()),
    });
    let client = PushClient::with_resolver(app.push.client(), resolver.clone()).unwrap();
    let dispatcher = Dispatcher::with_client(
        &app.push,
        app.store.clone(),
        Arc::new(app.clock.clone()),
        client,
    );

    dispatcher.run_once().await.unwrap();

    assert_eq!(
        *resolver.asked.lock().unwrap(),
        ["hooks.shop.example"],
        "the name was resolved"
    );
    assert!(
        recorder.seen().is_empty(),
        "nothing reached the loopback listener"
    );
    let attempts = app.store.push_attempts(&biz("ssrf"), 10).await.unwrap();
    assert_eq!(attempts.len(), 1);
    assert_eq!(
        (attempts[0].code.as_str(), attempts[0].status),
        ("forbidden_address", None)
    );
}

/// A quiet stream outlives `server.idle_timeout` (keep-alive comments move bytes well within
/// it), and the event published after that still arrives on it.
#[tokio::test]
async fn a_quiet_stream_is_kept_alive_past_the_idle_timeout() {
    let app = spawn_app(
        Engine::Sqlite,
        Options {
            env: vec![("APP__SERVER__IDLE_TIMEOUT", "1s".into())],
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let mut stream = app
        .client
        .get(app.url("/api/v1/events/stream"))
        .bearer_auth(PLAIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    let mut text = String::new();
    let quiet_until = std::time::Instant::now() + std::time::Duration::from_millis(3_000);
    while std::time::Instant::now() < quiet_until {
        let chunk = tokio::time::timeout(std::time::Duration::from_secs(2), stream.chunk())
            .await
            .expect("bytes within the idle timeout")
            .unwrap()
            .expect("the stream stays open");
        text.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    assert!(
        text.lines().any(|l| l.starts_with(':')),
        "keep-alive comments: {text:?}"
    );
    app.notify_ok(&biz("after-quiet")).await;
    app.dispatcher("d").run_once().await.unwrap();
    while !text.contains("id: 1") {
        let chunk = tokio::time::timeout(std::time::Duration::from_secs(5), stream.chunk())
            .await
            .expect("the event arrives")
            .unwrap()
            .expect("the stream stays open");
        text.push_str(std::str::from_utf8(&chunk).unwrap());
    }
}

/// Streams are bounded by `push.max_streams`: one more is refused with 429 until one closes.
#[tokio::test]
async fn streams_beyond_max_streams_are_refused_until_one_closes() {
    let app = spawn_app(
        Engine::Sqlite,
        Options {
            env: vec![("APP__PUSH__MAX_STREAMS", "1".into())],
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let open = |token: &'static str| {
        app.client
            .get(app.url("/api/v1/events/stream"))
            .bearer_auth(token)
            .send()
    };
    let first = open(PLAIN_TOKEN).await.unwrap();
    assert_eq!(first.status(), 200);
    let second = open(TOKEN).await.unwrap();
    assert_eq!(second.status(), 429);
    assert!(second.headers().contains_key("retry-after"));
    drop(first);
    // The server notices the closed connection at its next write (a keep-alive at the latest).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let again = open(PLAIN_TOKEN).await.unwrap();
        if again.status() == 200 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the permit came back");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}
