//! The follow-up routes under `/api/v1`: manual fetch, images, RAW results; and the
//! upstream answers only a stand-in like wiremock can shape (redirects, HTML bodies).

use faceid_receiver::store::{FetchState, Source};
use faceid_sim::{ResultScript, TINY_JPEG};
use serde_json::{Value, json};
use wiremock::matchers::{method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::common::Engine;
use crate::fetcher_tests;
use crate::helpers::*;

fetcher_tests!(
    a_manual_fetch_makes_the_job_due_now_and_answers_202,
    a_manual_fetch_of_an_unknown_biz_id_creates_a_pending_record_only_for_a_valid_shape,
    a_manual_fetch_is_refused_409_when_the_budget_is_spent_or_the_window_closed,
    repeated_manual_fetches_after_a_failed_call_keep_the_backoff_and_spend_nothing,
    the_follow_up_routes_need_the_bearer_token,
    fetched_images_are_stored_apart_and_served_as_jpeg,
    a_signed_ok_notify_still_fetches_images_when_they_are_wanted,
    a_raw_result_is_fetched_by_token_and_found_by_biz_no,
    raw_requests_are_validated_and_share_the_budget_rules,
    raw_seed_answers_are_handled_as_faceid_writes_them,
    a_redirect_is_never_followed_and_fails_the_job,
    a_2xx_that_is_not_json_is_retried_within_the_budget,
);

async fn a_manual_fetch_makes_the_job_due_now_and_answers_202(engine: Engine) {
    let Some(h) = harness(engine).await else {
        return;
    };
    let id = h.mint(&["PROCESSING", "OK"]);
    h.return_get(&id).await;
    h.clock.advance(5 * SECOND);
    h.drain().await;
    assert_eq!(
        h.record(&id).await.fetch.next_at,
        Some(h.clock.now_ms() + MINUTE)
    );

    let response = h.manual_fetch(&id).await;
    assert_eq!(response.status(), 202);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    assert_eq!(location, format!("/api/v1/verifications/{}", encode(&id)));
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["biz_id"], id.as_str());
    assert_eq!(body["fetch"]["state"], "pending");
    assert_eq!(body["fetch"]["calls_used"], 1);
    assert_eq!(
        body["fetch"]["next_at"],
        faceid_receiver::clock::rfc3339(h.clock.now_ms())
    );

    // Due now: no need to wait for the minute.
    assert_eq!(h.drain().await, 1);
    let record = h.record(&id).await;
    assert_eq!(
        (
            record.status.as_str(),
            record.fetch.state,
            record.fetch.calls_used
        ),
        ("OK", FetchState::Done, 2)
    );

    // A done record may be fetched again while calls are left.
    assert_eq!(h.manual_fetch(&id).await.status(), 202);
    h.drain().await;
    assert_eq!(h.record(&id).await.fetch.calls_used, 3);
    assert_eq!(h.sim.calls(&id).count, 3);
}

async fn repeated_manual_fetches_after_a_failed_call_keep_the_backoff_and_spend_nothing(
    engine: Engine,
) {
    let Some(h) = harness(engine).await else {
        return;
    };
    let id = h.mint(&["500", "OK"]);
    h.return_get(&id).await;
    h.clock.advance(5 * SECOND);
    h.drain().await;
    let after_failure = h.record(&id).await.fetch;
    assert_eq!(after_failure.calls_used, 1);
    assert!(after_failure.last_error.is_some());
    let retry_at = after_failure.next_at.expect("a retry is scheduled");
    assert!(retry_at > h.clock.now_ms());

    for _ in 0..10 {
        assert_eq!(h.manual_fetch(&id).await.status(), 202);
        assert_eq!(h.drain().await, 0, "nothing is due before the backoff ends");
    }
    let fetch = h.record(&id).await.fetch;
    assert_eq!((fetch.calls_used, fetch.next_at), (1, Some(retry_at)));
    assert_eq!(h.sim.calls(&id).count, 1);

    h.clock.set(retry_at);
    h.drain().await;
    let record = h.record(&id).await;
    assert_eq!((record.status.as_str(), record.fetch.calls_used), ("OK", 2));
}

async fn a_manual_fetch_of_an_unknown_biz_id_creates_a_pending_record_only_for_a_valid_shape(
    engine: Engine,
) {
    let Some(h) = harness(engine).await else {
        return;
    };
    let response = h.manual_fetch("not-a-biz-id").await;
    assert_eq!(response.status(), 404);
    assert_eq!(error_code(response).await, "not_found");
    assert!(h.store.get("not-a-biz-id").await.unwrap().is_none());

    let id = h.mint(&["OK"]);
    let response = h.manual_fetch(&id).await;
    assert_eq!(response.status(), 202);
    let record = h.record(&id).await;
    assert_eq!(record.status, "PENDING");
    assert_eq!(record.source, Source::GetResult);
    assert_eq!(
        (record.fetch.state, record.fetch.calls_used),
        (FetchState::Pending, 0)
    );
    h.drain().await;
    let record = h.record(&id).await;
    assert_eq!(
        (record.status.as_str(), record.fetch.state),
        ("OK", FetchState::Done)
    );
}

async fn a_manual_fetch_is_refused_409_when_the_budget_is_spent_or_the_window_closed(
    engine: Engine,
) {
    let Some(h) = harness(engine).await else {
        return;
    };
    let spent = h.mint(&["PROCESSING"]);
    h.return_get(&spent).await;
    h.settle(&[&spent]).await;
    assert_eq!(h.record(&spent).await.fetch.state, FetchState::Exhausted);
    let response = h.manual_fetch(&spent).await;
    assert_eq!(response.status(), 409);
    assert_eq!(error_code(response).await, "budget_exhausted");

    let old = h.mint_at(NOW_MS - DAY + 5 * MINUTE, &["OK"]);
    h.return_get(&old).await;
    let response = h.manual_fetch(&old).await;
    assert_eq!(response.status(), 409);
    assert_eq!(error_code(response).await, "window_closed");

    // Unknown and already past its day: refused without creating anything.
    let gone = format!("{},gone", (NOW_MS - 2 * DAY) / 1000);
    let response = h.manual_fetch(&gone).await;
    assert_eq!(response.status(), 409);
    assert_eq!(error_code(response).await, "window_closed");
    assert!(h.store.get(&gone).await.unwrap().is_none());

    // Destroyed by FaceID: the day is over for us too.
    let destroyed = h.mint(&["destroyed"]);
    h.return_get(&destroyed).await;
    h.settle(&[&destroyed]).await;
    let response = h.manual_fetch(&destroyed).await;
    assert_eq!(response.status(), 409);
    assert_eq!(error_code(response).await, "window_closed");
    assert_eq!(h.sim.calls(&destroyed).count, 1);
}

async fn the_follow_up_routes_need_the_bearer_token(engine: Engine) {
    let Some(h) = harness(engine).await else {
        return;
    };
    let id = h.mint(&["OK"]);
    for (method, path) in [
        (
            reqwest::Method::POST,
            format!("/api/v1/verifications/{}/fetch", encode(&id)),
        ),
        (
            reqwest::Method::GET,
            format!("/api/v1/verifications/{}/images/image_best", encode(&id)),
        ),
        (reqwest::Method::POST, "/api/v1/raw-results".to_owned()),
    ] {
        let response = h
            .client
            .request(method.clone(), h.url(&path))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401, "{method} {path}");
    }
    assert!(h.store.get(&id).await.unwrap().is_none());
}

async fn fetched_images_are_stored_apart_and_served_as_jpeg(engine: Engine) {
    let Some(h) = harness_with(engine, &[("APP__FETCH__RETURN_IMAGE", "4")], None).await else {
        return;
    };
    let id = h.mint(&["OK"]);
    h.return_get(&id).await;
    h.settle(&[&id]).await;

    let record = h.record(&id).await;
    assert_eq!(record.fetch.state, FetchState::Done);
    assert_eq!(
        record.images,
        ["image_best", "image_idcard_back", "image_idcard_front"]
    );
    let result = record.result.unwrap();
    assert!(
        !result.contains("images") && !result.contains("base64"),
        "the stored result has no images"
    );
    assert_eq!(h.sim.calls(&id).calls[0].return_image.as_deref(), Some("4"));

    let response = h
        .api_get(&format!("/verifications/{}/images/image_best", encode(&id)))
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "image/jpeg");
    assert_eq!(response.headers()["cache-control"], "no-store");
    assert_eq!(response.bytes().await.unwrap().as_ref(), TINY_JPEG);

    let api_record: Value = h
        .api_get(&format!("/verifications/{}", encode(&id)))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        api_record["images"],
        json!(["image_best", "image_idcard_back", "image_idcard_front"])
    );

    for path in [
        format!("/verifications/{}/images/image_face_side", encode(&id)),
        format!("/verifications/{}/images/..%2Fetc", encode(&id)),
        "/verifications/1795392000%2Cnobody/images/image_best".to_owned(),
    ] {
        let response = h.api_get(&path).await;
        assert_eq!(response.status(), 404, "{path}");
        assert_eq!(error_code(response).await, "not_found");
    }
}

async fn a_signed_ok_notify_still_fetches_images_when_they_are_wanted(engine: Engine) {
    let Some(h) = harness_with(engine, &[("APP__FETCH__RETURN_IMAGE", "1")], None).await else {
        return;
    };
    let id = h.mint(&["OK"]);
    assert_eq!(h.notify(&id, "OK").await.status(), 200);
    assert_eq!(
        h.record(&id).await.fetch.state,
        FetchState::Pending,
        "notify never carries images"
    );
    h.settle(&[&id]).await;

    let record = h.record(&id).await;
    assert_eq!(record.fetch.state, FetchState::Done);
    assert_eq!(record.images, ["image_best"]);
    assert_eq!(record.source, Source::Notify, "the signed result is kept");
    assert!(record.signed);
    assert_eq!(h.sim.calls(&id).count, 1);
}

async fn a_raw_result_is_fetched_by_token_and_found_by_biz_no(engine: Engine) {
    let Some(h) = harness_with(engine, &[("APP__FETCH__RETURN_IMAGE", "4")], None).await else {
        return;
    };
    let token = "7f3c2a9e0d1f4b6c8e5a";
    h.sim
        .script(
            ResultScript::raw(token)
                .biz_no("order-raw-1")
                .steps(["NOT_STARTED", "OK"]),
        )
        .unwrap();

    let response = h
        .api_post(
            "/raw-results",
            Some(json!({"token": token, "biz_no": "order-raw-1"})),
        )
        .await;
    assert_eq!(response.status(), 202);
    let key = format!("raw:{token}");
    assert_eq!(
        response.headers()["location"].to_str().unwrap(),
        format!("/api/v1/verifications/{}", encode(&key))
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["biz_id"], key.as_str());
    assert_eq!(body["fetch"]["state"], "pending");

    // Queryable (and searchable by biz_no) before FaceID answered.
    let record: Value = h
        .api_get(&format!("/verifications/{}", encode(&key)))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(record["status"], "PENDING");
    assert_eq!(record["biz_no"], "order-raw-1");
    let page: Value = h
        .api_get("/verifications?biz_no=order-raw-1")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["items"][0]["biz_id"], key.as_str());

    h.drain().await;
    assert_eq!(h.record(&key).await.status, "NOT_STARTED");
    h.settle(&[&key]).await;
    let record = h.record(&key).await;
    assert_eq!(record.status, "OK");
    assert_eq!(
        (record.fetch.state, record.fetch.calls_used),
        (FetchState::Done, 2)
    );
    assert_eq!(record.biz_no.as_deref(), Some("order-raw-1"));
    assert_eq!(
        record.images,
        ["image_best", "image_best_2"],
        "Lite's 4 (all) asks RAW for 2"
    );
    assert!(!record.result.unwrap().contains("image_best"));
    let calls = h.sim.calls(token);
    assert_eq!(calls.count, 2);
    assert!(
        calls
            .calls
            .iter()
            .all(|c| c.return_image.as_deref() == Some("2"))
    );

    let response = h
        .api_get(&format!(
            "/verifications/{}/images/image_best_2",
            encode(&key)
        ))
        .await;
    assert_eq!(response.bytes().await.unwrap().as_ref(), TINY_JPEG);
}

async fn raw_requests_are_validated_and_share_the_budget_rules(engine: Engine) {
    let Some(h) = harness(engine).await else {
        return;
    };
    for (body, code) in [
        (json!({}), "missing_field"),
        (json!({"token": 42}), "missing_field"),
        (json!({"token": ""}), "invalid_token"),
        (json!({"token": "a/b"}), "invalid_token"),
        (json!({"token": "x".repeat(129)}), "invalid_token"),
        (json!({"token": "ok", "biz_no": 7}), "invalid_biz_no"),
        (
            json!({"token": "ok", "biz_no": "n".repeat(129)}),
            "invalid_biz_no",
        ),
    ] {
        let response = h.api_post("/raw-results", Some(body.clone())).await;
        assert_eq!(response.status(), 400, "{body}");
        assert_eq!(error_code(response).await, code, "{body}");
    }
    let response = h
        .client
        .post(h.url("/api/v1/raw-results"))
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(response).await, "malformed_body");

    // A token FaceID keeps answering NOT_STARTED: three calls, then 409.
    let token = "never-started";
    h.sim
        .script(ResultScript::raw(token).steps(["NOT_STARTED"]))
        .unwrap();
    let key = format!("raw:{token}");
    assert_eq!(
        h.api_post("/raw-results", Some(json!({"token": token})))
            .await
            .status(),
        202
    );
    // Posting again while pending just keeps it due now: no extra call.
    assert_eq!(
        h.api_post("/raw-results", Some(json!({"token": token})))
            .await
            .status(),
        202
    );
    h.settle(&[&key]).await;
    assert_eq!(h.record(&key).await.fetch.state, FetchState::Exhausted);
    let response = h
        .api_post("/raw-results", Some(json!({"token": token})))
        .await;
    assert_eq!(response.status(), 409);
    assert_eq!(error_code(response).await, "budget_exhausted");
    assert_eq!(h.sim.calls(token).count, 3);

    // A token's day starts when we first see it.
    let late = "seen-long-ago";
    h.sim.script(ResultScript::raw(late).steps(["OK"])).unwrap();
    assert_eq!(
        h.api_post("/raw-results", Some(json!({"token": late})))
            .await
            .status(),
        202
    );
    h.clock.advance(DAY);
    let response = h
        .api_post("/raw-results", Some(json!({"token": late})))
        .await;
    assert_eq!(error_code(response).await, "window_closed");
    h.drain().await;
    let record = h.record(&format!("raw:{late}")).await;
    assert_eq!(
        (record.fetch.state, record.fetch.calls_used),
        (FetchState::Expired, 0)
    );
}

async fn raw_seed_answers_are_handled_as_faceid_writes_them(engine: Engine) {
    let Some(h) = harness(engine).await else {
        return;
    };
    // Seed 002's "Failed" example: mixed case, numbers where strings belong.
    h.sim
        .script(ResultScript::raw("seed-failed").steps(["seed:raw-failed"]))
        .unwrap();
    // Seed 002's OK example is not even JSON (a brace is missing).
    h.sim
        .script(ResultScript::raw("seed-broken").steps(["seed:raw-ok"]))
        .unwrap();
    for token in ["seed-failed", "seed-broken"] {
        assert_eq!(
            h.api_post("/raw-results", Some(json!({"token": token})))
                .await
                .status(),
            202
        );
    }
    h.settle(&["raw:seed-failed", "raw:seed-broken"]).await;

    let record = h.record("raw:seed-failed").await;
    assert_eq!(
        (record.status.as_str(), record.fetch.state),
        ("FAILED", FetchState::Done)
    );
    assert_eq!(
        record.biz_no.as_deref(),
        Some("c22fe4e0-66ba-4078-bd9b-3b1a20628f8d"),
        "RAW biz_no is top-level"
    );

    let record = h.record("raw:seed-broken").await;
    assert_eq!(record.fetch.state, FetchState::Exhausted);
    assert_eq!(record.fetch.last_error.as_deref(), Some("BAD_ANSWER"));
    assert_eq!(h.sim.calls("seed-broken").count, 3);
}

async fn a_redirect_is_never_followed_and_fails_the_job(engine: Engine) {
    let upstream = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/faceid/lite/get_result"))
        .and(query_param("api_secret", SECRET))
        .respond_with(
            ResponseTemplate::new(302).insert_header("location", "https://elsewhere.example/steal"),
        )
        .expect(1)
        .mount(&upstream)
        .await;
    let Some(h) = harness_with(engine, &[], Some(&upstream.uri())).await else {
        return;
    };
    let id = format!("{},redirected", NOW_MS / 1000 - 60);
    h.return_get(&id).await;
    h.settle(&[&id]).await;
    let record = h.record(&id).await;
    assert_eq!(record.fetch.state, FetchState::Failed);
    assert_eq!(record.fetch.last_error.as_deref(), Some("HTTP 302"));
    // `expect(1)` is verified when the mock server drops.
}

async fn a_2xx_that_is_not_json_is_retried_within_the_budget(engine: Engine) {
    let upstream = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/faceid/lite/get_result"))
        .respond_with(ResponseTemplate::new(200).set_body_string("<html>maintenance</html>"))
        .expect(3)
        .mount(&upstream)
        .await;
    let Some(h) = harness_with(engine, &[], Some(&upstream.uri())).await else {
        return;
    };
    let id = format!("{},html", NOW_MS / 1000 - 60);
    h.return_get(&id).await;
    h.settle(&[&id]).await;
    let record = h.record(&id).await;
    assert_eq!(
        (record.fetch.state, record.fetch.calls_used),
        (FetchState::Exhausted, 3)
    );
    assert_eq!(record.fetch.last_error.as_deref(), Some("BAD_ANSWER"));
    h.clock.advance(DAY);
    h.drain().await;
}
