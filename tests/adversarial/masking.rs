//! Masking reaches identity data wherever it is: identity keys at any depth, the merchant's
//! free-text `biz_extra_data`, images a callback carried (cut out and stored as images), the
//! journal's end-user addresses; answers to a `pii` token are never cached; a client-sent
//! `X-Forwarded-For` is recorded only when the proxy is trusted.

use base64::Engine as _;
use serde_json::{Value, json};

use crate::common::Engine;
use crate::helpers::{PLAIN_TOKEN, TestApp, encode_path};
use crate::on_both_engines;

/// Identity values the callback below carries, each in a place the old rule did not reach.
const IDENTITY: [&str; 8] = [
    "李四",
    "110101199001010011",
    "110101199003070000",
    "王五",
    "赵六",
    "上海市浦东新区",
    "19900101",
    "13800138000",
];

/// A FaceID-shaped result with identity data at the top level, inside `biz_extra_data`
/// (merchant free text), and deep inside an object FaceID may add.
fn scattered_identity(biz_id: &str) -> String {
    json!({
        "request_id": "1795392000,mask",
        "status": "OK",
        "biz_info": {
            "biz_id": biz_id,
            "biz_no": "order-mask",
            "biz_extra_data": "{\"id_no\":\"110101199003070000\",\"name\":\"王五\",\"phone\":\"13800138000\"}"
        },
        "idcard_name": "李四",
        "idcard_number": "110101199001010011",
        "liveness_result": {"result": "PASS", "procedure_type": "video"},
        "verify_result": {"result_faceid": {"confidence": 81.5}},
        "extra": {"steps": [{"ocr_result": {"name": "赵六", "address": "上海市浦东新区"}},
                            {"birthday": "19900101"}]},
        "time_used": 12
    })
    .to_string()
}

fn record_path(biz_id: &str) -> String {
    format!("/verifications/{}", encode_path(biz_id))
}

on_both_engines!(
    identity_data_anywhere_in_a_result_is_masked_without_the_pii_scope,
    images_a_callback_carried_are_cut_out_and_stored_as_images,
    journal_addresses_are_masked_without_pii_and_forwarded_for_needs_trust,
);

async fn identity_data_anywhere_in_a_result_is_masked_without_the_pii_scope(engine: Engine) {
    // Arrange
    let Some(app) = crate::app_on(engine, &[]).await else {
        return;
    };
    let biz_id = "1795392000,mask-anywhere";
    let data = scattered_identity(biz_id);
    assert_eq!(app.notify(&data).await.status(), 200);

    // Act
    let plain = app.api_as(PLAIN_TOKEN, &record_path(biz_id)).await;
    let plain_list = app.api_as(PLAIN_TOKEN, "/verifications").await;
    let pii = app.api(&record_path(biz_id)).await;

    // Assert: nothing identifying without the scope, in the record or the list; the verdict
    // and the merchant's own references stay.
    assert_eq!(plain.status(), 200);
    let text = plain.text().await.unwrap();
    let list = plain_list.text().await.unwrap();
    for value in IDENTITY {
        assert!(!text.contains(value), "{value} shown without pii: {text}");
        assert!(!list.contains(value), "{value} listed without pii");
    }
    let record: Value = serde_json::from_str(&text).unwrap();
    let result = &record["result"];
    assert_eq!(result["idcard_name"], "***");
    assert_eq!(result["biz_info"]["biz_extra_data"], "***");
    assert_eq!(result["extra"]["steps"][0]["ocr_result"]["name"], "***");
    assert_eq!(result["biz_info"]["biz_id"], biz_id);
    assert_eq!(result["biz_info"]["biz_no"], "order-mask");
    assert_eq!(result["liveness_result"]["result"], "PASS");
    assert_eq!(result["verify_result"]["result_faceid"]["confidence"], 81.5);

    // With the scope: FaceID's bytes, and never from a cache.
    assert_eq!(pii.status(), 200);
    assert_eq!(
        pii.headers()
            .get("cache-control")
            .map(|v| v.to_str().unwrap()),
        Some("no-store")
    );
    assert!(pii.text().await.unwrap().contains(&data));
    for path in ["/verifications", "/callbacks"] {
        let response = app.api(path).await;
        assert_eq!(
            response
                .headers()
                .get("cache-control")
                .map(|v| v.to_str().unwrap()),
            Some("no-store"),
            "GET {path} with the pii scope"
        );
    }
}

async fn images_a_callback_carried_are_cut_out_and_stored_as_images(engine: Engine) {
    // Arrange: a signed notify carrying an image, as FaceID documents it never does.
    let Some(app) = crate::app_on(engine, &[]).await else {
        return;
    };
    let biz_id = "1795392000,mask-images";
    let jpeg = b"\xff\xd8\xff\xe0JFIF-a-face\xff\xd9";
    let b64 = base64::engine::general_purpose::STANDARD.encode(jpeg);
    let data = json!({
        "status": "OK",
        "biz_info": {"biz_id": biz_id, "biz_no": "order-img", "biz_extra_data": ""},
        "liveness_result": {"result": "PASS"},
        "images": {"image_best": format!("data:image/jpeg;base64,{b64}")},
        "time_used": 3
    })
    .to_string();

    // Act
    assert_eq!(app.notify(&data).await.status(), 200);
    let plain = app
        .api_as(PLAIN_TOKEN, &record_path(biz_id))
        .await
        .text()
        .await
        .unwrap();
    let pii: Value = app.api(&record_path(biz_id)).await.json().await.unwrap();
    let image = app
        .api(&format!("{}/images/image_best", record_path(biz_id)))
        .await;

    // Assert: neither view carries the picture; it is an image like a fetched one.
    assert!(
        !plain.contains(&b64[..16]),
        "image data shown without pii: {plain}"
    );
    assert!(
        !pii.to_string().contains(&b64[..16]),
        "image data left in the result"
    );
    assert_eq!(pii["result"].get("images"), None);
    assert_eq!(pii["result"]["liveness_result"]["result"], "PASS");
    assert_eq!(pii["images"], json!(["image_best"]));
    assert_eq!(image.status(), 200);
    assert_eq!(image.bytes().await.unwrap().as_ref(), jpeg);
}

async fn journal_addresses_are_masked_without_pii_and_forwarded_for_needs_trust(engine: Engine) {
    for trusted in [false, true] {
        // Arrange
        let trust = trusted.to_string();
        let Some(app) =
            crate::app_on(engine, &[("APP__SERVER__TRUST_FORWARDED_FOR", &trust)]).await
        else {
            return;
        };

        // Act: a delivery that claims to come from somewhere else.
        let response = app
            .client
            .post(app.url("/faceid/notify"))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("x-forwarded-for", "203.0.113.7")
            .body("data=x&sign=y")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 403);
        let pii = app.journal(None).await;
        let plain: Value = app
            .api_as(PLAIN_TOKEN, "/callbacks")
            .await
            .json()
            .await
            .unwrap();

        // Assert
        let (full, masked) = if trusted {
            ("203.0.113.7 via 127.0.0.1", "203.0.113.*** via 127.0.0.***")
        } else {
            ("127.0.0.1", "127.0.0.***")
        };
        assert_eq!(pii[0]["remote_addr"], full, "trusted: {trusted}");
        assert_eq!(
            plain["items"][0]["remote_addr"], masked,
            "trusted: {trusted}"
        );
    }
}

/// The journal itself is not a way around masking: the API shows no bodies at all.
#[tokio::test]
async fn the_journal_api_shows_no_body() {
    let app: TestApp = crate::app_on(Engine::Sqlite, &[]).await.unwrap();
    assert_eq!(
        app.notify(&scattered_identity("1795392000,journal-body"))
            .await
            .status(),
        200
    );
    let text = app
        .api_as(PLAIN_TOKEN, "/callbacks")
        .await
        .text()
        .await
        .unwrap();
    for value in IDENTITY {
        assert!(!text.contains(value), "{value} in the journal listing");
    }
}
