//! /api/v1: auth, one record, listing with filters and cursors, the journal, errors.

use serde_json::Value;

use crate::api_tests;
use crate::helpers::*;

api_tests!(
    the_api_requires_a_configured_bearer_token,
    an_unknown_biz_id_is_404_with_a_json_body,
    listing_pages_newest_first_with_cursors_and_filters,
    bad_list_parameters_are_400,
    unknown_routes_are_404_json,
);

async fn the_api_requires_a_configured_bearer_token(app: TestApp) {
    let url = app.url("/api/v1/verifications");
    let none = app.client.get(&url).send().await.unwrap();
    assert_eq!(none.status(), 401);
    assert_eq!(none.headers()["www-authenticate"], "Bearer");
    assert_eq!(error_code(none).await, "unauthorized");
    let wrong = app
        .client
        .get(&url)
        .bearer_auth("test-token-abcdeX")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let basic = app
        .client
        .get(&url)
        .basic_auth("a", Some("b"))
        .send()
        .await
        .unwrap();
    assert_eq!(basic.status(), 401);
    let right = app
        .client
        .get(&url)
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(right.status(), 200);
    // The callback routes and health need no token.
    assert_eq!(app.get("/healthz").await.status(), 200);
}

async fn an_unknown_biz_id_is_404_with_a_json_body(app: TestApp) {
    let response = app.api("/verifications/1795392000%2Cnobody").await;
    assert_eq!(response.status(), 404);
    assert_eq!(error_code(response).await, "not_found");
}

async fn listing_pages_newest_first_with_cursors_and_filters(app: TestApp) {
    // 7 records, one per minute; odd ones FAILED; two share biz_no "shared".
    for i in 0..7 {
        let status = if i % 2 == 1 { "FAILED" } else { "OK" };
        let biz_no = if i < 2 {
            "shared".to_owned()
        } else {
            format!("order-{i}")
        };
        let data = result_data(&format!("1795392000,list-{i}"), &biz_no, status);
        assert_eq!(app.notify(&data).await.status(), 200);
        app.clock.advance(60_000);
    }
    let mut seen = Vec::new();
    let mut path = "/verifications?limit=3".to_owned();
    loop {
        let page = app.api_json(&path).await;
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= 3);
        seen.extend(
            items
                .iter()
                .map(|r| r["biz_id"].as_str().unwrap().to_owned()),
        );
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/verifications?limit=3&cursor={cursor}"),
            None => break,
        }
    }
    let expected: Vec<String> = (0..7)
        .rev()
        .map(|i| format!("1795392000,list-{i}"))
        .collect();
    assert_eq!(seen, expected, "newest first, every record once");

    let failed = app.api_json("/verifications?status=failed").await;
    assert_eq!(failed["items"].as_array().unwrap().len(), 3);
    let shared = app.api_json("/verifications?biz_no=shared").await;
    assert_eq!(shared["items"].as_array().unwrap().len(), 2);
    let since = app
        .api_json("/verifications?since=2026-11-23T00:05:00Z")
        .await;
    let ids: Vec<&str> = since["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["biz_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["1795392000,list-6", "1795392000,list-5"]);
    assert_eq!(since["next_cursor"], Value::Null);
}

async fn bad_list_parameters_are_400(app: TestApp) {
    for (query, code) in [
        ("limit=0", "invalid_limit"),
        ("limit=1000", "invalid_limit"),
        ("limit=ten", "invalid_limit"),
        ("cursor=%21%21", "invalid_cursor"),
        ("since=yesterday", "invalid_since"),
    ] {
        let response = app.api(&format!("/verifications?{query}")).await;
        assert_eq!(response.status(), 400, "{query}");
        assert_eq!(error_code(response).await, code, "{query}");
    }
    let response = app.api("/callbacks?verified=maybe").await;
    assert_eq!(response.status(), 400);
}

async fn unknown_routes_are_404_json(app: TestApp) {
    let response = app.get("/nope").await;
    assert_eq!(response.status(), 404);
    assert_eq!(error_code(response).await, "not_found");
}
