//! Operational endpoints: health, readiness, metrics.

use crate::api_tests;
use crate::helpers::*;

api_tests!(metrics_count_callbacks_signature_failures_and_latency_without_identifiers);

async fn metrics_count_callbacks_signature_failures_and_latency_without_identifiers(app: TestApp) {
    let id = "1795392000,metrics";
    let data = result_data(id, "order-metrics", "OK");
    assert_eq!(app.notify(&data).await.status(), 200);
    assert_eq!(
        app.post_form("/faceid/notify", form_body(&data, &"b".repeat(40)))
            .await
            .status(),
        403
    );
    let response = app.get("/metrics").await;
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = response.text().await.unwrap();
    // The recorder is process-wide and tests run concurrently: check presence, not totals.
    assert!(
        text.contains(r#"faceid_callbacks_total{route="notify",outcome="stored"}"#),
        "{text}"
    );
    assert!(
        text.contains(r#"faceid_callbacks_total{route="notify",outcome="rejected"}"#),
        "{text}"
    );
    assert!(text.contains("faceid_signature_failures_total"), "{text}");
    assert!(text.contains(r#"faceid_http_request_duration_seconds_bucket{method="POST",route="/faceid/notify",status="200""#), "{text}");
    // bench/notify.sh reads the batch sizes group commit formed from these exact buckets.
    assert!(
        text.contains(r#"faceid_group_commit_batch_size_bucket{le="1"}"#)
            && text.contains(r#"faceid_group_commit_batch_size_bucket{le="64"}"#),
        "{text}"
    );
    assert!(
        !text.contains(id) && !text.contains("order-metrics"),
        "no identifiers in labels"
    );
}
