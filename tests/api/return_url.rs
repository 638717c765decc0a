//! return_url: signed POST and unsigned GET, redirects without identity data, the built-in page.

use serde_json::Value;

use crate::api_tests;
use crate::helpers::*;

api_tests!(
    a_signed_return_post_is_stored_and_redirects_with_only_biz_id_biz_no_status,
    a_return_get_records_pending_with_a_job_and_redirects_pending,
    repeated_return_gets_keep_one_job_and_its_budget,
    a_return_get_after_the_notify_redirects_with_the_known_status,
    return_get_queries_are_validated,
    a_forged_return_post_is_refused_without_redirect,
);

fn query_pairs(location: &str) -> Vec<(String, String)> {
    let url = url::Url::parse(location).unwrap();
    url.query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn location(response: &reqwest::Response) -> String {
    response.headers()["location"].to_str().unwrap().to_owned()
}

async fn a_signed_return_post_is_stored_and_redirects_with_only_biz_id_biz_no_status(app: TestApp) {
    let id = "1795392000,ret-post";
    let response = app
        .post_form(
            "/faceid/return",
            signed_form(&result_data(id, "order-7", "OK")),
        )
        .await;
    assert_eq!(response.status(), 303);
    let location = location(&response);
    assert!(
        location.starts_with("https://shop.example.com/verified?"),
        "{location}"
    );
    assert_eq!(
        query_pairs(&location),
        [
            ("from", "faceid"),
            ("biz_id", id),
            ("biz_no", "order-7"),
            ("status", "OK")
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
    );
    assert!(
        !location.contains("110101") && !location.contains("%E5%BC%A0"),
        "no identity data"
    );
    let record = app.record(id).await;
    assert_eq!(record["source"], "return");
    assert_eq!(record["signed"], true);
}

async fn a_return_get_records_pending_with_a_job_and_redirects_pending(app: TestApp) {
    let id = "1795392000,ret-get";
    let response = app.get(&format!("/faceid/return?shop=1&biz_id={id}")).await;
    assert_eq!(response.status(), 303);
    let pairs = query_pairs(&location(&response));
    assert!(pairs.contains(&("biz_id".into(), id.into())));
    assert!(pairs.contains(&("status".into(), "PENDING".into())));
    assert!(
        !pairs.iter().any(|(k, _)| k == "biz_no"),
        "unknown biz_no is left out"
    );

    let record = app.record(id).await;
    assert_eq!(record["status"], "PENDING");
    assert_eq!(record["source"], "return");
    assert_eq!(record["signed"], false);
    assert_eq!(record["result"], Value::Null);
    assert_eq!(record["fetch"]["state"], "pending");
    assert_eq!(record["fetch"]["calls_used"], 0);
    assert_eq!(
        record["fetch"]["next_at"], "2026-11-23T00:00:05.000Z",
        "after fetch.initial_delay"
    );
    let journal = app.journal(Some(id)).await;
    assert_eq!(journal[0]["kind"], "return_get");
    assert_eq!(journal[0]["outcome"], "pending");
}

async fn repeated_return_gets_keep_one_job_and_its_budget(app: TestApp) {
    let id = "1795392000,hammer";
    for _ in 0..20 {
        assert_eq!(
            app.get(&format!("/faceid/return?biz_id={id}"))
                .await
                .status(),
            303
        );
        app.clock.advance(1_000);
    }
    let record = app.record(id).await;
    assert_eq!(record["fetch"]["calls_used"], 0);
    assert_eq!(
        record["fetch"]["next_at"], "2026-11-23T00:00:05.000Z",
        "the first job is kept, not reset"
    );
    assert_eq!(
        app.journal(Some(id)).await.len(),
        20,
        "each GET is journaled"
    );
}

async fn a_return_get_after_the_notify_redirects_with_the_known_status(app: TestApp) {
    let id = "1795392000,known";
    assert_eq!(
        app.notify(&result_data(id, "order-9", "FAILED"))
            .await
            .status(),
        200
    );
    let response = app
        .get(&format!("/faceid/return?biz_id={}", id.replace(',', "%2C")))
        .await;
    let pairs = query_pairs(&location(&response));
    assert!(pairs.contains(&("status".into(), "FAILED".into())));
    assert!(pairs.contains(&("biz_no".into(), "order-9".into())));
    let record = app.record(id).await;
    assert_eq!(
        record["status"], "FAILED",
        "the GET does not downgrade the record"
    );
    assert_ne!(
        record["fetch"]["state"], "pending",
        "a final signed result needs no follow-up"
    );
}

async fn return_get_queries_are_validated(app: TestApp) {
    for (query, code) in [
        ("", "missing_field"),
        ("?a=b", "missing_field"),
        ("?biz_id=hello", "invalid_biz_id"),
        ("?biz_id=%3Cscript%3E", "invalid_biz_id"),
        (
            "?biz_id=1795392000,a&biz_id=1795392000,b",
            "duplicate_field",
        ),
    ] {
        let response = app.get(&format!("/faceid/return{query}")).await;
        assert_eq!(response.status(), 400, "{query}");
        assert_eq!(error_code(response).await, code, "{query}");
    }
    let rejected = app.api_json("/callbacks?verified=false").await;
    assert_eq!(rejected["items"].as_array().unwrap().len(), 5);
}

async fn a_forged_return_post_is_refused_without_redirect(app: TestApp) {
    let data = result_data("1795392000,ret-forged", "o", "OK");
    let response = app
        .post_form("/faceid/return", form_body(&data, &"0".repeat(40)))
        .await;
    assert_eq!(response.status(), 403);
    assert!(response.headers().get("location").is_none());
}

mod builtin_page {
    use super::*;

    async fn no_redirect_goes_to_the_builtin_page(app: TestApp) {
        let id = "1795392000,page";
        let response = app.get(&format!("/faceid/return?biz_id={id}")).await;
        assert_eq!(response.status(), 303);
        let location = location(&response);
        assert!(location.starts_with("done?"), "{location}");
        let page = app.get(&format!("/faceid/{location}")).await;
        assert_eq!(page.status(), 200);
        assert_eq!(page.headers()["cache-control"], "no-store");
        assert!(
            page.headers()["content-security-policy"]
                .to_str()
                .unwrap()
                .contains("default-src 'none'")
        );
        let html = page.text().await.unwrap();
        assert!(html.contains("being processed"));
        assert!(!html.contains(id), "the page echoes nothing from the query");

        let hostile = app
            .get("/faceid/done?status=%3Cscript%3Ealert(1)%3C/script%3E")
            .await
            .text()
            .await
            .unwrap();
        assert!(!hostile.contains("<script>"));
    }

    #[tokio::test]
    async fn sqlite() {
        let options = Options {
            redirect_url: None,
            ..Default::default()
        };
        let app = spawn_app(crate::common::Engine::Sqlite, options)
            .await
            .unwrap();
        no_redirect_goes_to_the_builtin_page(app).await;
    }

    #[tokio::test]
    async fn postgres() {
        let options = Options {
            redirect_url: None,
            ..Default::default()
        };
        if let Some(app) = spawn_app(crate::common::Engine::Postgres, options).await {
            no_redirect_goes_to_the_builtin_page(app).await;
        }
    }
}
