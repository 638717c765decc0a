//! The API secret leaves in no encoding. With a secret full of URL-reserved characters and an
//! upstream that echoes the request URL in its error bodies (a proxy's error page, or an
//! error_message quoting the query), neither `fetch.last_error` (readable by any token) nor
//! any log line at TRACE holds the secret: raw, percent-encoded, form-encoded, with
//! lower-case escapes, HTML-escaped, or decoded once too often.

use faceid_receiver::store::FetchState;
use faceid_sim::{ResultScript, SimConfig};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::Value;

use crate::common::Engine;
use crate::common::capture::Capture;
use crate::fetch_harness::{KEY, MINUTE, NOW_MS, encode, harness_with_sim};

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

/// The encodings of the secret found in `text`.
fn leaks(text: &str) -> Vec<String> {
    encodings()
        .into_iter()
        .filter(|e| text.contains(e.as_str()))
        .collect()
}

#[tokio::test]
async fn an_echoing_upstream_cannot_make_the_secret_reach_last_error_or_the_logs() {
    // Arrange: every event of this test (its tasks all run on this thread), at TRACE,
    // `log` records from reqwest included, into memory; the simulator and the receiver
    // sharing the secret.
    let capture = Capture::default();
    let _logs = tracing::subscriber::set_default(capture.subscriber());
    let _ = tracing_log::LogTracer::init();
    let sim_config = SimConfig {
        api_key: KEY.to_owned(),
        api_secret: SECRET.to_owned(),
    };
    let h = harness_with_sim(
        Engine::Sqlite,
        &[("APP__MEGVII__API_SECRET", SECRET)],
        None,
        sim_config,
    )
    .await
    .unwrap();
    // The first call meets a proxy page quoting the request line, the second an
    // error_message quoting the query.
    let biz_id = h
        .sim
        .mint_biz(
            ResultScript::default()
                .steps(["echo", "echo:faceid"])
                .created_at_ms(NOW_MS - MINUTE),
        )
        .unwrap();

    // Act: the return GET schedules a follow-up; drive the worker until the job ends.
    h.return_get(&biz_id).await;
    h.settle(&[biz_id.as_str()]).await;
    let record: Value = h
        .api_get(&format!("/verifications/{}", encode(&biz_id)))
        .await
        .json()
        .await
        .unwrap();

    // Assert: both echoes really happened.
    let answers: Vec<String> = h
        .sim
        .calls(&biz_id)
        .calls
        .into_iter()
        .map(|c| c.answer)
        .collect();
    assert_eq!(answers, ["echo", "echo:faceid"]);
    assert_eq!(record["fetch"]["state"], "failed", "{record}");
    assert_eq!(h.record(&biz_id).await.fetch.state, FetchState::Failed);

    // `last_error` is a code or a status, nothing from the upstream's text.
    let last_error = record["fetch"]["last_error"].as_str().unwrap_or_default();
    assert_eq!(
        leaks(last_error),
        Vec::<String>::new(),
        "last_error: {last_error}"
    );
    assert_eq!(last_error, "BAD_ARGUMENTS");

    // No log line of ours holds the secret in any encoding. (The simulator stands in for
    // FaceID, which does receive it: its own lines are not ours.)
    drop(h);
    let logs = capture.text();
    assert!(
        logs.contains("get_result failed"),
        "the capture works: {logs}"
    );
    let leaked: Vec<(String, &str)> = logs
        .lines()
        .filter(|l| !l.contains("faceid_sim"))
        .flat_map(|line| leaks(line).into_iter().map(move |e| (e, line)))
        .collect();
    assert!(
        leaked.is_empty(),
        "the secret reached the logs: {leaked:#?}"
    );
}
