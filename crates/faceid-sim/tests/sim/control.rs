//! The `/sim/*` control API over HTTP, and the rules of (re)scripting.

use faceid_sim::{ResultScript, ScriptError};
use serde_json::{Value, json};

use crate::helpers::{T0_MS, spawn_sim};

async fn post(t: &crate::helpers::TestSim, path: &str, body: Value) -> (u16, Value) {
    let response = t
        .client
        .post(format!("{}{path}", t.server.base_url()))
        .json(&body)
        .send()
        .await
        .expect("control answers");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn get_json(t: &crate::helpers::TestSim, path: &str) -> Value {
    let url = format!("{}{path}", t.server.base_url());
    t.client
        .get(url)
        .send()
        .await
        .expect("control answers")
        .json()
        .await
        .expect("JSON")
}

#[tokio::test]
async fn a_biz_id_minted_over_http_is_served_and_its_calls_reported() {
    let t = spawn_sim().await;

    let (status, minted) = post(
        &t,
        "/sim/biz",
        json!({ "biz_no": "n-1", "script": "PROCESSING, OK", "created_at_ms": T0_MS }),
    )
    .await;
    let id = minted["biz_id"].as_str().expect("biz_id").to_owned();
    let first = t.get_result(&id, &[("return_image", "1")]).await;
    let second = t.get_result(&id, &[]).await;
    // The comma in the biz_id is percent-encoded in the path.
    let one = get_json(&t, &format!("/sim/calls/{}", id.replace(',', "%2C"))).await;
    let all = get_json(&t, "/sim/calls").await;

    assert_eq!(status, 200);
    assert!(id.starts_with(&format!("{},", T0_MS / 1000)));
    assert_eq!(
        (
            first.json["status"].as_str(),
            second.json["status"].as_str()
        ),
        (Some("PROCESSING"), Some("OK"))
    );
    assert_eq!(one["count"], 2);
    assert_eq!(one["max_in_flight"], 1);
    assert_eq!(one["calls"][0]["answer"], "PROCESSING");
    assert_eq!(one["calls"][0]["at_ms"], T0_MS);
    assert_eq!(one["calls"][0]["return_image"], "1");
    assert_eq!(one["calls"][1]["answer"], "OK");
    assert_eq!(all["total"], 2);
    assert_eq!(all["ids"][0]["id"], id.as_str());
}

#[tokio::test]
async fn results_can_be_scripted_by_biz_id_or_token() {
    let t = spawn_sim().await;
    let id = "1704067200,11111111-2222-3333-4444-555555555555";

    let (lite_status, lite) = post(
        &t,
        "/sim/results",
        json!({ "biz_id": id, "script": ["FAILED"] }),
    )
    .await;
    let (raw_status, raw) = post(
        &t,
        "/sim/results",
        json!({ "token": "tok", "script": ["OK"] }),
    )
    .await;

    assert_eq!(
        (lite_status, lite),
        (200, json!({ "id": id, "api": "lite" }))
    );
    assert_eq!(
        (raw_status, raw),
        (200, json!({ "id": "tok", "api": "raw" }))
    );
    assert_eq!(
        t.get_result(id, &[]).await.json["liveness_result"]["result"],
        "FAIL"
    );
    assert_eq!(t.raw_get_result("tok", &[]).await.json["status"], "OK");
}

#[tokio::test]
async fn control_mistakes_are_400_with_a_reason() {
    let t = spawn_sim().await;
    let cases = [
        (
            "/sim/results",
            json!({ "biz_id": "1,a", "script": ["MAYBE"] }),
            "MAYBE",
        ),
        (
            "/sim/results",
            json!({ "script": ["OK"] }),
            "exactly one of biz_id",
        ),
        (
            "/sim/results",
            json!({ "biz_id": "1,a", "token": "t" }),
            "exactly one of biz_id",
        ),
        (
            "/sim/results",
            json!({ "biz_id": "1,a", "scirpt": ["OK"] }),
            "unknown field",
        ),
        ("/sim/biz", json!({ "biz_id": "1,a" }), "mints the biz_id"),
    ];
    for (path, body, reason) in cases {
        let (status, answer) = post(&t, path, body.clone()).await;
        let error = answer["error"].as_str().unwrap_or_default();
        assert_eq!(status, 400, "{path} {body}");
        assert!(error.contains(reason), "{path} {body}: {error}");
    }
}

#[tokio::test]
async fn reset_forgets_scripts_and_calls() {
    let t = spawn_sim().await;
    let id = t.server.mint_biz(ResultScript::default()).unwrap();
    t.get_result(&id, &[]).await;

    let status = t
        .client
        .post(format!("{}/sim/reset", t.server.base_url()))
        .send()
        .await
        .unwrap()
        .status();
    let after = t.get_result(&id, &[]).await;

    assert_eq!(status.as_u16(), 204);
    assert_eq!(after.error_message(), "RESULT_NOT_FOUND");
    assert_eq!(
        t.server.calls(&id).count,
        1,
        "only the call after the reset"
    );
}

#[tokio::test]
async fn rescripting_does_not_restore_the_budget() {
    let t = spawn_sim().await;
    let id = t
        .server
        .mint_biz(ResultScript::default().steps(["PROCESSING"]))
        .unwrap();
    for _ in 0..3 {
        t.get_result(&id, &[]).await;
    }

    t.server
        .script(ResultScript::lite(&id).steps(["OK"]))
        .unwrap();
    let fourth = t.get_result(&id, &[]).await;

    assert_eq!(fourth.error_message(), "DATA_DESTROYED");
}

#[test]
fn scripting_refuses_ambiguous_or_empty_ids() {
    let sim = faceid_sim::Simulator::new(
        Default::default(),
        std::sync::Arc::new(faceid_protocol::clock::ManualClock::new(T0_MS)),
    );
    assert_eq!(sim.script(ResultScript::default()), Err(ScriptError::Id));
    assert!(matches!(
        sim.script(ResultScript::lite(" ")),
        Err(ScriptError::BadId(_))
    ));
    assert!(matches!(
        sim.script(ResultScript::lite("1,a").steps(["slow:x"])),
        Err(ScriptError::Step(_))
    ));
    assert_eq!(
        sim.mint_biz(ResultScript::raw("t")),
        Err(ScriptError::IdGiven)
    );
}
