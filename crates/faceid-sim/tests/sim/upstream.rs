//! The get_result upstream: FaceID's rules (seeds 001, 002) and the scripted behaviours.

use std::sync::Arc;

use base64::Engine;
use faceid_protocol::biz_id::RESULT_RETENTION_MS;
use faceid_protocol::clock::ManualClock;
use faceid_sim::script::SEED_BIZ_ID;
use faceid_sim::{
    Api, CallRecord, CallReport, ResultScript, SeedShape, SimConfig, Simulator, TINY_JPEG,
};
use serde_json::Value;

use crate::helpers::{KEY, SECRET, T0_MS, spawn_sim};

const LITE: &str = "/faceid/lite/get_result";

#[tokio::test]
async fn three_calls_are_served_then_every_later_one_is_data_destroyed() {
    let t = spawn_sim().await;
    let id = t
        .server
        .mint_biz(ResultScript::default().steps(["PROCESSING", "OK"]))
        .unwrap();

    let mut seen = Vec::new();
    for _ in 0..5 {
        let a = t.get_result(&id, &[]).await;
        seen.push((
            a.status,
            a.json["status"]
                .as_str()
                .unwrap_or(a.error_message())
                .to_owned(),
        ));
    }

    let want = [
        (200, "PROCESSING"),
        (200, "OK"),
        (200, "OK"),
        (403, "DATA_DESTROYED"),
        (403, "DATA_DESTROYED"),
    ];
    let want: Vec<(u16, String)> = want.iter().map(|(s, m)| (*s, (*m).to_owned())).collect();
    assert_eq!(seen, want, "the last step repeats until the budget ends");
    let report = t.server.calls(&id);
    assert_eq!(
        (report.count, report.charged),
        (5, 5),
        "calls past the third are counted too"
    );
    assert_eq!(report.calls[3].answer, "DATA_DESTROYED");
}

#[tokio::test]
async fn a_user_finishing_at_a_time_answers_not_started_until_then_and_the_script_after() {
    let t = spawn_sim().await;
    let spec = ResultScript::default()
        .steps(["PROCESSING", "OK"])
        .created_at_ms(T0_MS)
        .finishes_at(T0_MS + 50 * 60_000, "NOT_STARTED");
    let id = t.server.mint_biz(spec).unwrap();
    let status = |a: &crate::helpers::Answer| a.json["status"].as_str().unwrap().to_owned();

    t.clock.set(T0_MS + 49 * 60_000);
    let before = t.get_result(&id, &[]).await;
    t.clock.set(T0_MS + 50 * 60_000);
    let at = t.get_result(&id, &[]).await;
    let after = t.get_result(&id, &[]).await;

    assert_eq!(
        [status(&before), status(&at), status(&after)],
        ["NOT_STARTED", "PROCESSING", "OK"],
        "the script starts at its first step once the user has finished"
    );
    assert_eq!(t.server.calls(&id).charged, 3, "every call is charged");

    // Through the control API too, with another step before the finish.
    let body = serde_json::json!({
        "biz_id": format!("{},ctl", T0_MS / 1000),
        "script": ["OK"],
        "finishes_at_ms": T0_MS + 60 * 60_000,
        "until_finished": "PROCESSING",
    });
    let response = t
        .client
        .post(format!("{}/sim/results", t.server.base_url()))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let id = format!("{},ctl", T0_MS / 1000);
    assert_eq!(status(&t.get_result(&id, &[]).await), "PROCESSING");
    t.clock.set(T0_MS + 60 * 60_000);
    assert_eq!(status(&t.get_result(&id, &[]).await), "OK");
}

#[tokio::test]
async fn the_result_is_destroyed_one_day_after_the_biz_id_time() {
    let t = spawn_sim().await;
    let id = t
        .server
        .mint_biz(ResultScript::default().created_at_ms(T0_MS))
        .unwrap();
    assert!(
        id.starts_with(&format!("{},", T0_MS / 1000)),
        "the biz_id carries its creation time: {id}"
    );

    t.clock.set(T0_MS + RESULT_RETENTION_MS - 1);
    let last_moment = t.get_result(&id, &[]).await;
    t.clock.set(T0_MS + RESULT_RETENTION_MS);
    let a_day_later = t.get_result(&id, &[]).await;

    assert_eq!(last_moment.status, 200, "{}", last_moment.text);
    assert_eq!(
        (a_day_later.status, a_day_later.error_message()),
        (403, "DATA_DESTROYED")
    );
}

#[tokio::test]
async fn the_day_counts_from_the_biz_ids_leading_seconds_not_from_scripting() {
    let t = spawn_sim().await;
    // Scripted now, but the biz_id says it was created a day and a second ago.
    let old = format!(
        "{},52b13fb5-8dfb-4537-a62b-a641d5e929f1",
        (T0_MS - RESULT_RETENTION_MS) / 1000 - 1
    );
    t.server.script(ResultScript::lite(&old)).unwrap();

    let a = t.get_result(&old, &[]).await;

    assert_eq!((a.status, a.error_message()), (403, "DATA_DESTROYED"));
}

#[tokio::test]
async fn wrong_credentials_are_refused_and_do_not_spend_the_budget() {
    let t = spawn_sim().await;
    let id = t.server.mint_biz(ResultScript::default()).unwrap();

    let refused = t
        .call(
            LITE,
            &[("api_key", KEY), ("api_secret", "wrong"), ("biz_id", &id)],
        )
        .await;
    let wrong_key = t
        .call(
            LITE,
            &[
                ("api_key", "other"),
                ("api_secret", SECRET),
                ("biz_id", &id),
            ],
        )
        .await;
    let mut served = Vec::new();
    for _ in 0..3 {
        served.push(t.get_result(&id, &[]).await.status);
    }

    assert_eq!(
        (refused.status, refused.error_message()),
        (403, "AUTHENTICATION_ERROR")
    );
    assert_eq!(
        (wrong_key.status, wrong_key.error_message()),
        (403, "AUTHENTICATION_ERROR")
    );
    assert_eq!(served, [200, 200, 200]);
    let report = t.server.calls(&id);
    assert_eq!((report.count, report.charged), (5, 3));
}

#[tokio::test]
async fn missing_arguments_are_named_in_faceids_order() {
    let t = spawn_sim().await;
    let id = t.server.mint_biz(ResultScript::default()).unwrap();
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (vec![], "MISSING_ARGUMENTS:api_key"),
        (
            vec![("api_secret", SECRET), ("biz_id", &id)],
            "MISSING_ARGUMENTS:api_key",
        ),
        (
            vec![("api_key", KEY), ("biz_id", &id)],
            "MISSING_ARGUMENTS:api_secret",
        ),
        (
            vec![("api_key", KEY), ("api_secret", SECRET)],
            "MISSING_ARGUMENTS:biz_id",
        ),
        (
            vec![("api_key", KEY), ("api_secret", SECRET), ("biz_id", "")],
            "MISSING_ARGUMENTS:biz_id",
        ),
        (
            vec![("api_key", ""), ("api_secret", SECRET), ("biz_id", &id)],
            "MISSING_ARGUMENTS:api_key",
        ),
    ];
    for (query, want) in cases {
        let a = t.call(LITE, &query).await;
        assert_eq!(
            (a.status, a.error_message()),
            (400, want),
            "query {query:?}"
        );
    }
    let raw = t
        .call(
            "/faceid/lite/raw/get_result",
            &[("api_key", KEY), ("api_secret", SECRET)],
        )
        .await;
    assert_eq!(raw.error_message(), "MISSING_ARGUMENTS:token");
    assert_eq!(
        t.server.calls(&id).charged,
        0,
        "refused calls are not charged"
    );
    assert_eq!(
        t.server.all_calls().total,
        7,
        "every request is counted, named id or not"
    );
}

#[tokio::test]
async fn bad_option_values_are_bad_arguments() {
    let t = spawn_sim().await;
    let id = t.server.mint_biz(ResultScript::default()).unwrap();
    t.server.script(ResultScript::raw("tok")).unwrap();
    let cases = [
        (Api::Lite, "return_image", "7"),
        (Api::Lite, "return_image", "x"),
        (Api::Lite, "return_image", "-1"),
        (Api::Lite, "return_verify_time", "2"),
        (Api::Raw, "return_image", "3"),
    ];
    for (api, key, value) in cases {
        let a = match api {
            Api::Lite => t.get_result(&id, &[(key, value)]).await,
            Api::Raw => t.raw_get_result("tok", &[(key, value)]).await,
        };
        let want = format!("BAD_ARGUMENTS:{key}");
        assert_eq!(
            (a.status, a.error_message()),
            (400, want.as_str()),
            "{api:?} {key}={value}"
        );
    }
    assert_eq!(t.server.calls(&id).charged, 0);
}

#[tokio::test]
async fn an_unknown_biz_id_is_result_not_found_and_still_logged() {
    let t = spawn_sim().await;
    let unknown = "1704067200,00000000-0000-0000-0000-000000000000";

    let a = t.get_result(unknown, &[]).await;

    assert_eq!((a.status, a.error_message()), (400, "RESULT_NOT_FOUND"));
    let report = t.server.calls(unknown);
    assert_eq!((report.count, report.charged), (1, 0));
}

#[tokio::test]
async fn error_bodies_have_exactly_the_seeds_fields() {
    let t = spawn_sim().await;

    let a = t.get_result("1704067200,nope", &[]).await;

    let object = a.json.as_object().expect("a JSON object");
    let keys: Vec<&str> = object.keys().map(String::as_str).collect();
    assert_eq!(keys, ["error_message", "request_id", "time_used"]);
    let request_id = object["request_id"].as_str().unwrap();
    let (secs, uuid) = request_id.split_once(',').expect("<epoch>,<uuid>");
    assert_eq!(
        secs,
        (T0_MS / 1000).to_string(),
        "request_id time comes from the injected clock"
    );
    assert!(uuid::Uuid::parse_str(uuid).is_ok(), "{request_id}");
    assert!(object["time_used"].is_u64());
}

#[tokio::test]
async fn scripted_faults_answer_with_faceids_codes() {
    let t = spawn_sim().await;
    let cases = [
        ("500", 500, "INTERNAL_ERROR"),
        ("concurrency", 403, "CONCURRENCY_LIMIT_EXCEEDED"),
        ("destroyed", 403, "DATA_DESTROYED"),
        ("not_found", 400, "RESULT_NOT_FOUND"),
    ];
    for (step, status, code) in cases {
        let id = t
            .server
            .mint_biz(ResultScript::default().steps([step, "OK"]))
            .unwrap();

        let fault = t.get_result(&id, &[]).await;
        let next = t.get_result(&id, &[]).await;

        assert_eq!(
            (fault.status, fault.error_message()),
            (status, code),
            "step {step}"
        );
        assert_eq!(next.json["status"], "OK", "after {step}");
        assert_eq!(
            t.server.calls(&id).charged,
            2,
            "a fault spends a call ({step})"
        );
    }
}

#[tokio::test]
async fn a_502_step_answers_html_like_a_proxy() {
    let t = spawn_sim().await;
    let id = t
        .server
        .mint_biz(ResultScript::default().steps(["502"]))
        .unwrap();

    let a = t.get_result(&id, &[]).await;

    assert_eq!(a.status, 502);
    assert!(
        a.json.is_null() && a.text.contains("Bad Gateway"),
        "{}",
        a.text
    );
}

#[tokio::test]
async fn a_successful_answer_looks_like_the_seed_example() {
    let t = spawn_sim().await;
    let spec = ResultScript::default()
        .biz_no("order-42")
        .biz_extra_data("extra")
        .confidence(81.25);
    let id = t.server.mint_biz(spec).unwrap();

    let a = t.get_result(&id, &[]).await;

    let keys: Vec<&str> = a
        .json
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "request_id",
            "status",
            "biz_info",
            "idcard_info",
            "liveness_result",
            "verify_result",
            "time_used"
        ],
        "seed order, no images when return_image is absent"
    );
    assert_eq!(a.json["biz_info"]["biz_id"], id.as_str());
    assert_eq!(a.json["biz_info"]["biz_no"], "order-42");
    assert_eq!(a.json["biz_info"]["biz_extra_data"], "extra");
    assert_eq!(a.json["liveness_result"]["result"], "PASS");
    assert_eq!(
        a.json["verify_result"]["result_faceid"]["confidence"],
        81.25
    );
    assert_eq!(
        a.json["idcard_info"]["idcard_number"],
        faceid_sim::result::FAKE_IDCARD_NUMBER
    );
    assert!(a.json["verify_result"].get("verify_time").is_none());
    // The receiver's own parser reads it.
    let fields = faceid_protocol::payload::result_fields(a.json.as_object().unwrap());
    assert_eq!(fields.status, faceid_protocol::Status::Ok);
    assert_eq!(fields.confidence, Some(81.25));
}

#[tokio::test]
async fn verify_time_is_returned_inside_verify_result_only_when_asked() {
    let t = spawn_sim().await;
    let id = t
        .server
        .mint_biz(ResultScript::default().created_at_ms(T0_MS - 60_000))
        .unwrap();

    let with = t.get_result(&id, &[("return_verify_time", "1")]).await;
    let without = t.get_result(&id, &[("return_verify_time", "0")]).await;

    let verify_time = with.json["verify_result"]["verify_time"]
        .as_i64()
        .expect("verify_time");
    assert!(
        (T0_MS / 1000 - 60..=T0_MS / 1000).contains(&verify_time),
        "{verify_time}"
    );
    assert!(without.json["verify_result"].get("verify_time").is_none());
}

#[tokio::test]
async fn unfinished_results_omit_idcard_liveness_and_verify() {
    let t = spawn_sim().await;
    for status in ["NOT_STARTED", "PROCESSING"] {
        let id = t
            .server
            .mint_biz(ResultScript::default().steps([status]))
            .unwrap();

        let a = t.get_result(&id, &[("return_image", "4")]).await;

        assert_eq!(a.json["status"], status);
        for key in ["idcard_info", "liveness_result", "verify_result", "images"] {
            assert!(a.json.get(key).is_none(), "{status} carries {key}");
        }
    }
}

fn decode_image(value: &Value) -> Vec<u8> {
    let uri = value.as_str().expect("image is a string");
    let b64 = uri
        .strip_prefix("data:image/jpeg;base64,")
        .expect("a JPEG data URI");
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .expect("valid base64")
}

#[tokio::test]
async fn images_follow_return_image() {
    let t = spawn_sim().await;
    let cases: [(&str, &[&str]); 7] = [
        ("0", &[]),
        ("1", &["image_best"]),
        ("2", &["image_idcard_front"]),
        ("3", &["image_idcard_back"]),
        (
            "4",
            &["image_best", "image_idcard_front", "image_idcard_back"],
        ),
        ("5", &["image_face_front"]),
        ("6", &["image_face_side"]),
    ];
    for (return_image, want) in cases {
        let id = t.server.mint_biz(ResultScript::default()).unwrap();

        let a = t.get_result(&id, &[("return_image", return_image)]).await;

        let images = a.json.get("images").and_then(Value::as_object);
        let names: Vec<&str> = images
            .map(|m| m.keys().map(String::as_str).collect())
            .unwrap_or_default();
        assert_eq!(names, want, "return_image={return_image}");
        for value in images.into_iter().flat_map(|m| m.values()) {
            assert_eq!(
                decode_image(value),
                TINY_JPEG,
                "return_image={return_image}"
            );
        }
    }
}

#[tokio::test]
async fn raw_get_result_serves_by_token_with_its_own_shape() {
    let t = spawn_sim().await;
    t.server
        .script(
            ResultScript::raw("token-1")
                .biz_no("raw-order")
                .steps(["PROCESSING", "OK"]),
        )
        .unwrap();

    let first = t.raw_get_result("token-1", &[]).await;
    let second = t.raw_get_result("token-1", &[("return_image", "2")]).await;
    let lite_with_token = t.get_result("token-1", &[]).await;

    assert_eq!(first.json["status"], "PROCESSING");
    assert!(first.json.get("liveness_result").is_none());
    assert_eq!(second.json["status"], "OK");
    assert_eq!(
        second.json["biz_no"], "raw-order",
        "RAW has biz_no at the top level"
    );
    assert!(second.json.get("biz_info").is_none());
    assert!(second.json["verify_result"]["result_faceid"]["confidence"].is_f64());
    assert_eq!(decode_image(&second.json["image_best"]), TINY_JPEG);
    assert_eq!(decode_image(&second.json["image_best_2"]), TINY_JPEG);
    assert_eq!(
        lite_with_token.error_message(),
        "RESULT_NOT_FOUND",
        "a token is not a biz_id"
    );
}

#[tokio::test]
async fn raw_tokens_keep_the_three_call_rule() {
    let t = spawn_sim().await;
    t.server.script(ResultScript::raw("token-2")).unwrap();

    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(t.raw_get_result("token-2", &[]).await.status);
    }

    assert_eq!(statuses, [200, 200, 200, 403]);
}

#[tokio::test]
async fn seed_payloads_are_served_verbatim() {
    let t = spawn_sim().await;
    let id = t
        .server
        .mint_biz(ResultScript::default().steps(["seed:ok"]))
        .unwrap();
    t.server
        .script(ResultScript::raw("token-3").steps(["seed:raw-failed", "seed:raw-ok"]))
        .unwrap();

    let lite = t.get_result(&id, &[]).await;
    let raw_failed = t.raw_get_result("token-3", &[]).await;
    let raw_ok = t.raw_get_result("token-3", &[]).await;

    assert_eq!(
        lite.text,
        SeedShape::LiteOk.text().replace(SEED_BIZ_ID, &id),
        "only the biz_id changes"
    );
    assert_eq!(lite.json["liveness_result"]["result"], "PASS/FAIL/TIMEOUT");
    assert_eq!(raw_failed.text, SeedShape::RawFailed.text());
    assert_eq!(raw_failed.json["status"], "Failed");
    assert_eq!(raw_ok.text, SeedShape::RawOk.text());
    assert!(
        raw_ok.json.is_null(),
        "the RAW OK seed is not valid JSON, and is served anyway"
    );
}

#[tokio::test]
async fn a_custom_status_text_is_served_as_written() {
    let t = spawn_sim().await;
    let id = t
        .server
        .mint_biz(
            ResultScript::default()
                .steps(["status:Failed"])
                .liveness("FAIL"),
        )
        .unwrap();

    let a = t.get_result(&id, &[]).await;

    assert_eq!(a.json["status"], "Failed");
    assert_eq!(a.json["liveness_result"]["result"], "FAIL");
}

#[tokio::test]
async fn sequential_calls_are_never_in_flight_together() {
    let t = spawn_sim().await;
    let id = t.server.mint_biz(ResultScript::default()).unwrap();

    for _ in 0..3 {
        t.get_result(&id, &[]).await;
    }

    let report = t.server.calls(&id);
    assert_eq!((report.in_flight, report.max_in_flight), (0, 1));
}

fn paused_sim() -> Simulator {
    Simulator::new(SimConfig::default(), Arc::new(ManualClock::new(T0_MS)))
}

fn query(id: &str) -> String {
    format!("api_key={KEY}&api_secret={SECRET}&biz_id={id}")
}

#[tokio::test(start_paused = true)]
async fn a_slow_answer_stays_in_flight_for_its_delay() {
    let sim = paused_sim();
    let id = sim
        .mint_biz(ResultScript::default().steps(["slow:5000:PROCESSING", "OK"]))
        .unwrap();
    let started = tokio::time::Instant::now();

    let call = tokio::spawn({
        let (sim, q) = (sim.clone(), query(&id));
        async move { sim.get_result(Api::Lite, Some(&q)).await }
    });
    // Paused time only moves when every task is idle, so the delay cannot end while we poll.
    while sim.in_flight(&id) == 0 {
        tokio::task::yield_now().await;
    }
    assert_eq!(sim.in_flight(&id), 1, "in flight while it waits");
    assert_eq!(
        sim.calls(&id).calls[0].answer,
        "PROCESSING",
        "logged on arrival"
    );
    let response = call.await.unwrap();

    assert_eq!(response.status(), 200);
    assert!(started.elapsed() >= std::time::Duration::from_millis(5000));
    assert_eq!(sim.in_flight(&id), 0);
    assert_eq!(sim.calls(&id).calls[0].delay_ms, 5000);
}

#[tokio::test(start_paused = true)]
async fn overlapping_calls_are_recorded_as_concurrent() {
    let sim = paused_sim();
    let id = sim
        .mint_biz(ResultScript::default().steps(["slow:1000"]))
        .unwrap();
    let q = query(&id);

    let (a, b) = tokio::join!(
        sim.get_result(Api::Lite, Some(&q)),
        sim.get_result(Api::Lite, Some(&q))
    );

    assert_eq!((a.status().as_u16(), b.status().as_u16()), (200, 200));
    let report = sim.calls(&id);
    assert_eq!(
        (report.max_in_flight, report.in_flight, report.charged),
        (2, 0, 2)
    );
}

#[tokio::test]
async fn unknown_paths_are_api_not_found() {
    let t = spawn_sim().await;

    let a = t.call("/faceid/lite/get_resul", &[]).await;

    assert_eq!((a.status, a.error_message()), (404, "API_NOT_FOUND"));
}

#[tokio::test(start_paused = true)]
async fn a_call_in_flight_across_a_reset_does_not_disturb_the_new_log() {
    let sim = paused_sim();
    let id = "1704067200,aaaaaaaa-0000-0000-0000-000000000000";
    sim.script(ResultScript::lite(id).steps(["slow:1000"]))
        .unwrap();
    let old = tokio::spawn({
        let (sim, q) = (sim.clone(), query(id));
        async move { sim.get_result(Api::Lite, Some(&q)).await }
    });
    while sim.in_flight(id) == 0 {
        tokio::task::yield_now().await;
    }

    sim.reset();
    sim.script(ResultScript::lite(id).steps(["slow:5000"]))
        .unwrap();
    let new = tokio::spawn({
        let (sim, q) = (sim.clone(), query(id));
        async move { sim.get_result(Api::Lite, Some(&q)).await }
    });
    while sim.in_flight(id) == 0 {
        tokio::task::yield_now().await;
    }
    old.await.unwrap();

    assert_eq!(
        sim.in_flight(id),
        1,
        "the old call's end does not count against the new one"
    );
    new.await.unwrap();
    assert_eq!(sim.in_flight(id), 0);
}

/// A caller that hangs up (here: its client times out; in tests/faults a replica is killed)
/// ends its call at once: no longer in flight, recorded as abandoned with the interval it
/// really had, so a successor's call cannot seem to overlap it, nor hide an overlap.
#[tokio::test]
async fn a_client_that_hangs_up_ends_its_call_at_once_marked_abandoned() {
    let sim = Simulator::new(
        SimConfig::default(),
        Arc::new(faceid_protocol::clock::SystemClock),
    );
    let server = sim.bind("127.0.0.1:0").await.unwrap();
    let id = sim
        .mint_biz(ResultScript::default().steps(["slow:30000:OK", "OK"]))
        .unwrap();
    let url = format!("{}{LITE}?{}", server.base_url(), query(&id));
    let client = faceid_sim::http_client().unwrap();

    let hung_up = client
        .get(&url)
        .timeout(std::time::Duration::from_millis(300))
        .send()
        .await;
    assert!(hung_up.is_err(), "the client gave up first");
    let started = std::time::Instant::now();
    while sim.in_flight(&id) > 0 {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "the abandoned call still counts as in flight"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let answered = client.get(&url).send().await.unwrap();
    assert_eq!(answered.status(), 200);

    let report = sim.calls(&id);
    let (first, second) = (&report.calls[0], &report.calls[1]);
    assert!(first.abandoned && !second.abandoned, "{report:?}");
    let ended = first.ended_ms.expect("an abandoned call has ended");
    assert!(
        ended - first.at_ms < 30_000,
        "ended when the client hung up, not when the answer would have been ready: {first:?}"
    );
    assert!(report.overlapping().is_empty(), "{report:?}");
    assert_eq!((report.abandoned(), report.in_flight), (1, 0));
}

#[test]
fn overlapping_intervals_are_reported_in_pairs_abandoned_and_open_ones_included() {
    let call = |at_ms: i64, ended_ms: Option<i64>, abandoned: bool| CallRecord {
        at_ms,
        api: Api::Lite,
        http_status: 200,
        answer: "OK".into(),
        charged: true,
        return_image: None,
        return_verify_time: None,
        delay_ms: 0,
        ended_ms,
        abandoned,
    };
    let report = |calls: Vec<CallRecord>| CallReport {
        calls,
        ..CallReport::default()
    };

    // Back to back (one ends as the next arrives) is not an overlap.
    let sequential = report(vec![call(0, Some(100), false), call(100, Some(200), false)]);
    assert!(sequential.overlapping().is_empty());
    // An abandoned call still overlaps a call that arrived before it ended.
    let cut = report(vec![call(0, Some(100), true), call(50, Some(300), false)]);
    assert_eq!(cut.overlapping(), [(0, 1)]);
    assert_eq!(cut.abandoned(), 1);
    // A call still in flight is open-ended.
    let open = report(vec![
        call(0, Some(10), false),
        call(20, None, false),
        call(5000, Some(5001), false),
    ]);
    assert_eq!(open.overlapping(), [(1, 2)]);
}
