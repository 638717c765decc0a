//! notify_url: every encoding, every refusal, idempotency, no regression, journaling.

use faceid_receiver::protocol;
use serde_json::Value;

use crate::api_tests;
use crate::helpers::*;

api_tests!(
    a_signed_seed_payload_is_stored_and_queryable_byte_exact,
    multipart_and_json_encodings_are_accepted,
    a_duplicate_notify_is_idempotent_and_journaled,
    a_late_processing_does_not_overwrite_ok,
    a_bad_sign_is_refused_403_and_journaled_with_the_claimed_biz_id,
    tampered_data_is_refused_403,
    a_length_extension_forgery_is_refused_400_and_journaled_as_verified,
    malformed_bodies_get_400_with_a_code_and_the_service_stays_healthy,
    an_oversized_body_gets_413_and_is_journaled,
    storage_down_answers_503_and_readyz_follows,
);

async fn a_signed_seed_payload_is_stored_and_queryable_byte_exact(app: TestApp) {
    let response = app.notify(SEED_OK).await;
    assert_eq!(response.status(), 200);
    let ack: Value = response.json().await.unwrap();
    assert_eq!(ack["result"], "stored");
    assert_eq!(ack["biz_id"], SEED_BIZ_ID);

    let record = app.record(SEED_BIZ_ID).await;
    assert_eq!(record["biz_id"], SEED_BIZ_ID);
    assert_eq!(record["biz_no"], "cc47190f-5502-44a2-ab74-ea4f0f649f61");
    assert_eq!(record["status"], "OK");
    assert_eq!(
        record["liveness"],
        Value::Null,
        "\"PASS/FAIL/TIMEOUT\" is no verdict"
    );
    assert_eq!(record["confidence"], 68.918);
    assert_eq!(record["source"], "notify");
    assert_eq!(record["signed"], true);
    assert_eq!(record["fetch"]["state"], "none");
    assert_eq!(record["fetch"]["calls_used"], 0);
    assert!(
        record["created_at"]
            .as_str()
            .unwrap()
            .starts_with("2026-11-23T")
    );

    // The raw result comes back exactly as signed.
    let raw = app
        .api(&format!("/verifications/{}", encode_path(SEED_BIZ_ID)))
        .await
        .text()
        .await
        .unwrap();
    assert!(
        raw.contains(SEED_OK.trim()),
        "result is embedded byte-exact"
    );
}

async fn multipart_and_json_encodings_are_accepted(app: TestApp) {
    let data = result_data("1795392000,multipart-1", "order-1", "OK");
    let sign = protocol::sign(SECRET, data.as_bytes());
    let form = reqwest::multipart::Form::new()
        .text("data", data.clone())
        .text("sign", sign.clone());
    let response = app
        .client
        .post(app.url("/faceid/notify"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "multipart");

    let data = result_data("1795392000,json-1", "order-2", "FAILED");
    let body = serde_json::json!({"data": data, "sign": protocol::sign(SECRET, data.as_bytes()).to_uppercase()});
    let response = app
        .post("/faceid/notify", "application/json", body.to_string())
        .await;
    assert_eq!(response.status(), 200, "JSON envelope, upper-case sign");

    assert_eq!(app.record("1795392000,multipart-1").await["status"], "OK");
    assert_eq!(app.record("1795392000,json-1").await["status"], "FAILED");
}

async fn a_duplicate_notify_is_idempotent_and_journaled(app: TestApp) {
    let data = result_data("1795392000,dup", "order-dup", "OK");
    let first = app.notify(&data).await;
    assert_eq!(first.status(), 200);
    let before = app.record("1795392000,dup").await;
    app.clock.advance(60_000);
    let second = app.notify(&data).await;
    assert_eq!(second.status(), 200);
    assert_eq!(second.json::<Value>().await.unwrap()["result"], "duplicate");
    let after = app.record("1795392000,dup").await;
    assert_eq!(before, after, "a duplicate changes nothing");

    let journal = app.journal(Some("1795392000,dup")).await;
    let outcomes: Vec<_> = journal
        .iter()
        .map(|c| c["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["duplicate", "stored"], "newest first");
    assert!(
        journal
            .iter()
            .all(|c| c["verified"] == true && c["kind"] == "notify")
    );
}

async fn a_late_processing_does_not_overwrite_ok(app: TestApp) {
    let id = "1795392000,regress";
    assert_eq!(app.notify(&result_data(id, "o", "OK")).await.status(), 200);
    assert_eq!(
        app.notify(&result_data(id, "o", "PROCESSING"))
            .await
            .status(),
        200
    );
    assert_eq!(app.record(id).await["status"], "OK");
}

async fn a_bad_sign_is_refused_403_and_journaled_with_the_claimed_biz_id(app: TestApp) {
    let data = result_data("1795392000,forged", "o", "OK");
    let wrong = protocol::sign("not-the-secret", data.as_bytes());
    let response = app
        .post_form("/faceid/notify", form_body(&data, &wrong))
        .await;
    assert_eq!(response.status(), 403);
    assert_eq!(error_code(response).await, "bad_signature");
    assert_eq!(
        app.api("/verifications/1795392000%2Cforged").await.status(),
        404,
        "nothing stored"
    );

    let journal = app.journal(Some("1795392000,forged")).await;
    assert_eq!(journal.len(), 1);
    assert_eq!(journal[0]["verified"], false);
    assert_eq!(journal[0]["outcome"], "rejected");
    assert!(journal[0]["reason"].as_str().unwrap().contains("sign"));

    let unverified = app.api_json("/callbacks?verified=false").await;
    assert_eq!(unverified["items"].as_array().unwrap().len(), 1);
}

async fn tampered_data_is_refused_403(app: TestApp) {
    let data = result_data("1795392000,tamper", "o", "FAILED");
    let sign = protocol::sign(SECRET, data.as_bytes());
    let tampered = data.replace("FAILED", "OK");
    let response = app
        .post_form("/faceid/notify", form_body(&tampered, &sign))
        .await;
    assert_eq!(response.status(), 403);
    let response = app
        .post_form("/faceid/notify", form_body(&data, "not-hex"))
        .await;
    assert_eq!(response.status(), 403, "a malformed sign is a bad sign");
    assert_eq!(
        app.api("/verifications/1795392000%2Ctamper").await.status(),
        404
    );
}

async fn a_length_extension_forgery_is_refused_400_and_journaled_as_verified(app: TestApp) {
    let data = result_data("1795392000,ext", "o", "FAILED");
    let sign = protocol::sign(SECRET, data.as_bytes());
    let tail = br#"{"status":"OK","biz_info":{"biz_id":"1795392000,ext"}}"#;
    let (forged, forged_sign) =
        protocol::sign::length_extend(&sign, SECRET.len(), data.as_bytes(), tail).unwrap();
    // The body carries the forged bytes percent-encoded, exactly as an attacker would send.
    let body = format!(
        "data={}&sign={forged_sign}",
        percent_encoding::percent_encode(&forged, percent_encoding::NON_ALPHANUMERIC)
    );
    let response = app.post_form("/faceid/notify", body).await;
    assert_eq!(response.status(), 400);
    assert_eq!(error_code(response).await, "malformed_data");
    assert_eq!(
        app.api("/verifications/1795392000%2Cext").await.status(),
        404
    );
    let journal = app.journal(None).await;
    assert_eq!(journal[0]["verified"], true, "the sign itself checked out");
    assert_eq!(journal[0]["outcome"], "rejected");
}

async fn malformed_bodies_get_400_with_a_code_and_the_service_stays_healthy(app: TestApp) {
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "application/x-www-form-urlencoded",
            "data=%7B%7D".into(),
            "missing_field",
        ),
        (
            "application/x-www-form-urlencoded",
            "sign=abc".into(),
            "missing_field",
        ),
        ("text/plain", signed_form("{}"), "unsupported_content_type"),
        ("application/json", "{not json".into(), "malformed_body"),
        (
            "application/x-www-form-urlencoded",
            signed_form("[1,2]"),
            "malformed_data",
        ),
        (
            "application/x-www-form-urlencoded",
            signed_form("{\"status\":\"OK\"}"),
            "malformed_data",
        ),
        (
            "application/x-www-form-urlencoded",
            signed_form("{} trailing"),
            "malformed_data",
        ),
    ];
    let count = cases.len();
    for (content_type, body, code) in cases {
        let response = app.post("/faceid/notify", content_type, body.clone()).await;
        assert_eq!(response.status(), 400, "{content_type} {body}");
        assert_eq!(error_code(response).await, code, "{content_type} {body}");
    }
    assert_eq!(
        app.journal(None).await.len(),
        count,
        "every refusal is journaled"
    );
    assert_eq!(app.get("/healthz").await.status(), 200);
    assert_eq!(app.get("/readyz").await.status(), 200);
    assert_eq!(
        app.notify(&result_data("1795392000,after", "o", "OK"))
            .await
            .status(),
        200
    );
}

async fn an_oversized_body_gets_413_and_is_journaled(app: TestApp) {
    let big = "x".repeat(1024 * 1024 + 10); // the default limit is 1 MiB
    let response = app.post_form("/faceid/notify", signed_form(&big)).await;
    assert_eq!(response.status(), 413);
    assert_eq!(error_code(response).await, "payload_too_large");
    let journal = app.journal(None).await;
    assert_eq!(journal.len(), 1);
    assert!(
        journal[0]["reason"]
            .as_str()
            .unwrap()
            .contains("larger than")
    );
    assert!(journal[0]["body_len"].as_i64().unwrap() > 1024 * 1024);
}

async fn storage_down_answers_503_and_readyz_follows(app: TestApp) {
    assert_eq!(app.get("/readyz").await.status(), 200);
    app.store.close().await;
    let response = app.notify(&result_data("1795392000,down", "o", "OK")).await;
    assert_eq!(
        response.status(),
        503,
        "never a 2xx without a durable write"
    );
    assert_eq!(error_code(response).await, "storage_unavailable");
    let response = app
        .post_form("/faceid/notify", form_body("{}", "bad"))
        .await;
    assert_eq!(
        response.status(),
        503,
        "a refusal that cannot be journaled is retryable"
    );
    assert_eq!(app.get("/readyz").await.status(), 503);
    assert_eq!(
        app.get("/healthz").await.status(),
        200,
        "the process itself is alive"
    );
}
