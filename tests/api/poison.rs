//! Content that is valid for FaceID but awkward for us: a `\u0000` escape (PostgreSQL text
//! cannot hold NUL), a lone surrogate escape and a number no float can hold (serde_json
//! refuses both). A signed result holding any of them is stored with 2xx, its raw text
//! byte-exact, and it never takes the callbacks batched beside it down.

use serde_json::Value;

use crate::api_tests;
use crate::helpers::*;

api_tests!(
    poisoned_callbacks_among_ordinary_ones_are_all_acked_and_stored_byte_exact,
    derived_fields_hold_a_safe_form_of_what_the_database_cannot,
    a_nul_in_an_api_path_or_query_is_bad_input_not_a_server_error,
    a_delivery_the_database_refuses_is_answered_not_stored_and_journaled_and_the_rest_acked,
);

/// The biz_no the database of [`refuse_in_database`] refuses.
pub const REFUSED_BIZ_NO: &str = "refused-by-the-database";

/// Makes the test's own database refuse any record whose biz_no is [`REFUSED_BIZ_NO`] (a
/// trigger raising a check violation): a real database refusing a real write, as a schema
/// constraint our derived values break would.
pub async fn refuse_in_database(url: &str, refuse: bool) {
    if url.starts_with("sqlite") {
        let pool = sqlx::SqlitePool::connect(url).await.unwrap();
        let sql = if refuse {
            "CREATE TRIGGER refuse_pill BEFORE INSERT ON verifications \
             WHEN NEW.biz_no = 'refused-by-the-database' \
             BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"
        } else {
            "DROP TRIGGER refuse_pill"
        };
        sqlx::raw_sql(sql).execute(&pool).await.unwrap();
        pool.close().await;
    } else {
        let pool = sqlx::PgPool::connect(url).await.unwrap();
        let sql = if refuse {
            "CREATE FUNCTION refuse_pill() RETURNS trigger LANGUAGE plpgsql AS $$ \
             BEGIN \
                 IF NEW.biz_no = 'refused-by-the-database' THEN \
                     RAISE EXCEPTION 'refused by the test' USING ERRCODE = '23514'; \
                 END IF; \
                 RETURN NEW; \
             END $$; \
             CREATE TRIGGER refuse_pill BEFORE INSERT OR UPDATE ON verifications \
             FOR EACH ROW EXECUTE FUNCTION refuse_pill()"
        } else {
            "DROP TRIGGER refuse_pill ON verifications; DROP FUNCTION refuse_pill()"
        };
        sqlx::raw_sql(sql).execute(&pool).await.unwrap();
        pool.close().await;
    }
}

/// A result `data` written by hand (a serializer would not produce these escapes), with
/// `field` spliced into an otherwise ordinary result for `biz_id`.
fn poisoned_data(biz_id_json: &str, poison: &str) -> String {
    format!(
        r#"{{"request_id":"1795392000,req","status":"OK","biz_info":{{"biz_id":{biz_id_json},"biz_no":"order-p","biz_extra_data":""}},"idcard_info":{{"idcard_name":"张三"}},"liveness_result":{{"result":"PASS"}},"verify_result":{{"result_faceid":{{"confidence":77.5}}}},"time_used":93{poison}}}"#
    )
}

/// Ten signed results, each poisoned in a different place.
fn poisons() -> Vec<String> {
    let id = |i: usize| format!("\"1795392000,poison-{i}\"");
    vec![
        // Overriding keys come last: serde_json keeps the last value of a repeated key.
        poisoned_data(
            &id(0),
            r#","biz_info":{"biz_id":"1795392000,poison-0","biz_no":"order\u0000-0"}"#,
        ),
        poisoned_data(&id(1), r#","status":"OK\u0000""#),
        poisoned_data(&id(2), r#","idcard_info":{"idcard_name":"\u0000"}"#),
        poisoned_data(
            &id(3),
            r#","biz_info":{"biz_id":"1795392000,poison-3","biz_extra_data":"\u0000\u0000"}"#,
        ),
        poisoned_data(
            &id(4),
            r#","biz_info":{"biz_id":"1795392000,poison-4","biz_no":"\ud800"}"#,
        ),
        poisoned_data(&id(5), r#","idcard_info":{"idcard_name":"\udfff\ud83d"}"#),
        poisoned_data(
            &id(6),
            r#","verify_result":{"result_faceid":{"confidence":1e999}}"#,
        ),
        poisoned_data(
            &id(7),
            r#","time_used":-1e999,"big":123456789012345678901234567890"#,
        ),
        poisoned_data(&id(8), r#","liveness_result":{"result":"PA\u0000SS"}"#),
        poisoned_data(r#""1795392000,poison-9\u0000""#, ""),
    ]
}

async fn poisoned_callbacks_among_ordinary_ones_are_all_acked_and_stored_byte_exact(app: TestApp) {
    let mut deliveries: Vec<String> = (0..30)
        .map(|i| result_data(&format!("1795392000,plain-{i}"), "order-1", "OK"))
        .collect();
    // Spread the poisoned ones among the ordinary ones, so batches mix them.
    for (i, poisoned) in poisons().into_iter().enumerate() {
        deliveries.insert(i * 4, poisoned);
    }

    let responses =
        futures_util::future::join_all(deliveries.iter().map(|data| app.notify(data))).await;

    for (data, response) in deliveries.iter().zip(responses) {
        let status = response.status();
        let ack: Value = response.json().await.unwrap();
        assert_eq!(status, 200, "{ack} for {data}");
        let biz_id = ack["biz_id"].as_str().expect("the ack names the biz_id");
        let stored = app
            .store
            .get(biz_id)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("{biz_id} acked but not stored"));
        assert_eq!(
            stored.result.as_deref(),
            Some(data.as_str()),
            "raw text byte-exact"
        );
        // Readable through the API, unmasked and masked.
        let path = format!("/verifications/{}", encode_path(biz_id));
        for token in [TOKEN, PLAIN_TOKEN] {
            let response = app.api_as(token, &path).await;
            assert_eq!(response.status(), 200, "GET {path}");
        }
    }
}

/// The record as a token without the pii scope sees it (a re-serialization).
async fn masked_record(app: &TestApp, biz_id: &str) -> Value {
    let response = app
        .api_as(
            PLAIN_TOKEN,
            &format!("/verifications/{}", encode_path(biz_id)),
        )
        .await;
    assert_eq!(response.status(), 200, "{biz_id}");
    response.json().await.unwrap()
}

async fn derived_fields_hold_a_safe_form_of_what_the_database_cannot(app: TestApp) {
    let poisons = poisons();
    for data in &poisons {
        assert_eq!(app.notify(data).await.status(), 200, "{data}");
    }

    let record = app.record("1795392000,poison-0").await;
    assert_eq!(
        record["biz_no"], r"order\u0000-0",
        "NUL is written as its escape"
    );
    let record = app.record("1795392000,poison-1").await;
    assert_eq!(record["status"], r"OK\u0000", "not final: it is not OK");
    // The pii view embeds the raw text, whose lone surrogate escape a strict JSON reader
    // refuses; the masked view is a re-serialization, readable by any.
    let masked = masked_record(&app, "1795392000,poison-4").await;
    assert_eq!(
        masked["biz_no"], r"\ud800",
        "a lone surrogate is written as its escape"
    );
    assert_eq!(masked["result"]["biz_info"]["biz_no"], r"\ud800");
    assert_eq!(masked["result"]["idcard_info"]["idcard_name"], "***");
    let record = masked_record(&app, "1795392000,poison-6").await;
    assert_eq!(record["confidence"], Value::Null, "1e999 is no confidence");
    assert_eq!(record["status"], "OK");
    let record = app.record("1795392000,poison-8").await;
    assert_eq!(record["liveness"], Value::Null, "PA\\u0000SS is no verdict");
    // The biz_id itself: stored under its safe form, which the ack names.
    let record = app.record(r"1795392000,poison-9\u0000").await;
    assert_eq!(record["status"], "OK");
    let raw = app
        .api(&format!(
            "/verifications/{}",
            encode_path(r"1795392000,poison-9\u0000")
        ))
        .await
        .text()
        .await
        .unwrap();
    assert!(
        raw.contains(&poisons[9]),
        "the pii view embeds the raw text byte-exact"
    );
    // Each delivery is journaled as stored, under the same key.
    let journal = app.journal(Some(r"1795392000,poison-9\u0000")).await;
    assert_eq!(journal.len(), 1);
    assert_eq!(journal[0]["outcome"], "stored");
}

async fn a_nul_in_an_api_path_or_query_is_bad_input_not_a_server_error(app: TestApp) {
    for (path, code) in [
        ("/verifications/1795392000%2Ca%00", "invalid_path"),
        ("/verifications?biz_no=a%00b", "invalid_query"),
        ("/callbacks?biz_id=%00", "invalid_query"),
    ] {
        let response = app.api(path).await;
        assert_eq!(response.status(), 400, "{path}");
        assert_eq!(error_code(response).await, code, "{path}");
    }
    let response = app
        .client
        .post(app.url("/api/v1/verifications/1795392000%2Ca%00/fetch"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
}

async fn a_delivery_the_database_refuses_is_answered_not_stored_and_journaled_and_the_rest_acked(
    app: TestApp,
) {
    refuse_in_database(app.db.url(), true).await;
    let refused_id = "1795392000,refused-1";
    let refused = result_data(refused_id, REFUSED_BIZ_NO, "OK");
    let mut deliveries: Vec<String> = (0..19)
        .map(|i| result_data(&format!("1795392000,beside-{i}"), "order-1", "OK"))
        .collect();
    deliveries.insert(7, refused.clone());

    let responses =
        futures_util::future::join_all(deliveries.iter().map(|data| app.notify(data))).await;

    for (data, response) in deliveries.iter().zip(responses) {
        if *data == refused {
            assert_eq!(response.status(), 500, "not a 2xx, and storage is not down");
            assert_eq!(error_code(response).await, "not_stored");
        } else {
            assert_eq!(response.status(), 200, "{data}");
        }
    }
    assert_eq!(app.store.get(refused_id).await.unwrap(), None);
    let journal = app.journal(Some(refused_id)).await;
    assert_eq!(journal.len(), 1, "journaled once: {journal:?}");
    let row = &journal[0];
    assert_eq!(row["outcome"], "rejected");
    assert_eq!(row["verified"], true, "its sign checked out");
    assert_eq!(row["body_len"], signed_form(&refused).len());
    let reason = row["reason"].as_str().unwrap();
    assert!(
        reason.contains("not stored") && reason.contains("code"),
        "{reason}"
    );
    assert!(
        !reason.contains(REFUSED_BIZ_NO),
        "no content in the reason: {reason}"
    );
    // Storage is up: readiness says so.
    assert_eq!(app.get("/readyz").await.status(), 200);
}
