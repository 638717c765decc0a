//! The API secret leaves in no encoding. With a secret full of URL-reserved characters and an
//! upstream that echoes the request URL in its error bodies (a proxy's error page, or an
//! error_message quoting the query), neither `fetch.last_error` (readable by any token) nor
//! any log line at TRACE holds the secret: raw, percent-encoded, form-encoded, or with
//! lower-case escapes.

use std::sync::Arc;

use faceid_receiver::Application;
use faceid_receiver::clock::{ManualClock, SharedClock};
use faceid_receiver::fetcher;
use faceid_receiver::sim::{ResultScript, SimConfig, Simulator};
use faceid_receiver::store::FetchState;
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::common::capture::Capture;
use crate::common::{Engine, TestDatabase};
use crate::fetch_harness::{Clock, KEY, MINUTE, NOW_MS, TOKEN, drain, encode, settings};

/// Reserved characters of every kind: a path separator, a form space, the query's own
/// delimiters, and something that already looks percent-encoded.
const SECRET: &str = "s3/cr+t=Zq&x%41";

/// Every way the secret can be written in a URL or a page quoting one.
fn encodings() -> Vec<String> {
    let form: String = form_urlencoded::byte_serialize(SECRET.as_bytes()).collect();
    let percent = utf8_percent_encode(SECRET, NON_ALPHANUMERIC).to_string();
    let lower_hex = |text: &str| {
        let mut out = String::new();
        let mut rest = text;
        while let Some(i) = rest.find('%') {
            out.push_str(&rest[..i]);
            out.push('%');
            out.push_str(&rest[i + 1..i + 3].to_ascii_lowercase());
            rest = &rest[i + 3..];
        }
        out.push_str(rest);
        out
    };
    let double: String = form_urlencoded::byte_serialize(form.as_bytes()).collect();
    vec![
        SECRET.to_owned(),
        lower_hex(&form),
        lower_hex(&percent),
        form,
        percent,
        double,
        SECRET.replace('&', "&amp;"),
        // The decoded-twice reading of the raw secret (`+` as space, `%41` as `A`).
        "s3/cr t=Zq&xA".to_owned(),
    ]
}

fn leaks(text: &str) -> Vec<String> {
    encodings()
        .into_iter()
        .filter(|e| text.contains(e.as_str()))
        .collect()
}

#[tokio::test]
async fn an_echoing_upstream_cannot_make_the_secret_reach_last_error_or_the_logs() {
    // Arrange: every event of this test (its tasks all run on this thread), at TRACE,
    // `log` records from reqwest included, into memory.
    let capture = Capture::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(capture.clone())
        .with_ansi(false)
        .finish();
    let _logs = tracing::subscriber::set_default(subscriber);
    let _ = tracing_log::LogTracer::init();

    let db = TestDatabase::create(Engine::Sqlite).await.unwrap();
    let clock = ManualClock::new(NOW_MS);
    let shared: SharedClock = Arc::new(clock.clone());
    let sim = Simulator::new(
        SimConfig {
            api_key: KEY.to_owned(),
            api_secret: SECRET.to_owned(),
        },
        shared.clone(),
    );
    let sim_server = sim.bind("127.0.0.1:0").await.unwrap();
    let settings = settings(
        db.url(),
        &sim_server.base_url(),
        &[("APP__MEGVII__API_SECRET", SECRET)],
    );
    let store = faceid_receiver::startup::connect_store(&settings)
        .await
        .unwrap();
    store.migrate().await.unwrap();
    let app = Application::build_with(settings.clone(), store.clone(), shared.clone())
        .await
        .unwrap()
        .without_worker();
    let base = format!("http://{}", app.local_addr());
    let shutdown = CancellationToken::new();
    tokio::spawn(app.run_until_stopped(shutdown.clone()));
    let worker = fetcher::Context::new(&settings, store.clone(), shared).unwrap();
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();

    // The first call meets a proxy page quoting the request line, the second an
    // error_message quoting the query.
    let biz_id = sim
        .mint_biz(
            ResultScript::default()
                .steps(["echo", "echo:faceid"])
                .created_at_ms(NOW_MS - MINUTE),
        )
        .unwrap();

    // Act: the return GET schedules a follow-up; drive the worker until the job ends.
    let response = client
        .get(format!("{base}/faceid/return?biz_id={}", encode(&biz_id)))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    for _ in 0..10 {
        drain(&worker, &clock).await;
        let record = store.get(&biz_id).await.unwrap().unwrap();
        match (record.fetch.state, record.fetch.next_at) {
            (FetchState::Pending, Some(at)) => clock.set(at.max(clock.now_ms() + 1)),
            _ => break,
        }
    }
    let record: Value = client
        .get(format!("{base}/api/v1/verifications/{}", encode(&biz_id)))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    shutdown.cancel();

    // Assert: both echoes really happened.
    let answers: Vec<String> = sim
        .calls(&biz_id)
        .calls
        .into_iter()
        .map(|c| c.answer)
        .collect();
    assert_eq!(answers.len(), 2, "two calls were made: {answers:?}");
    assert_eq!(record["fetch"]["state"], "failed", "{record}");

    // `last_error` is a code and a status, nothing from the upstream's text.
    let last_error = record["fetch"]["last_error"].as_str().unwrap_or_default();
    assert_eq!(
        leaks(last_error),
        Vec::<String>::new(),
        "last_error: {last_error}"
    );
    assert_eq!(last_error, "BAD_ARGUMENTS");

    // No log line of ours holds the secret in any encoding. (The simulator stands in for
    // FaceID, which does receive it: its own lines are not ours.)
    let logs = capture.text();
    assert!(
        logs.contains("get_result failed"),
        "the capture works: {logs}"
    );
    let ours: String = logs
        .lines()
        .filter(|l| !l.contains("faceid_receiver::sim"))
        .collect::<Vec<_>>()
        .join("\n");
    let leaked: Vec<(String, &str)> = encodings()
        .into_iter()
        .filter_map(|e| {
            ours.lines()
                .find(|l| l.contains(e.as_str()))
                .map(|line| (e, line))
        })
        .collect();
    assert!(
        leaked.is_empty(),
        "the secret reached the logs: {leaked:#?}"
    );
}
