//! Prometheus metrics: names, labels and the process-wide recorder.
//!
//! Invariants: labels are low-cardinality and never carry a biz_id, token or any request
//! content: every label value comes from a fixed set (the method is one of the standard
//! ones or `other`, the route the *matched* path template or `unmatched`). The recorder is installed once per process
//! and shared by every `Application` in it (tests run several).

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Callback deliveries, by `route` (notify, return_post, return_get) and `outcome` (stored,
/// duplicate, pending, rejected, unavailable).
pub const CALLBACKS: &str = "faceid_callbacks_total";
/// Callbacks refused because the sign did not match.
pub const SIGNATURE_FAILURES: &str = "faceid_signature_failures_total";
/// HTTP request latency in seconds, by `method`, `route` and `status`.
pub const REQUEST_SECONDS: &str = "faceid_http_request_duration_seconds";
/// get_result calls, by `outcome` (final, not_final, not_found, destroyed, config_error, transient).
pub const GET_RESULT_CALLS: &str = "faceid_get_result_calls_total";
/// Follow-ups that ended without a result, by `state` (exhausted, expired).
pub const FOLLOWUPS_ENDED: &str = "faceid_followups_ended_total";
/// Follow-up jobs pending right now (sampled by the worker).
pub const PENDING_FOLLOWUPS: &str = "faceid_pending_followups";
/// Storage operations that failed, by `op`.
pub const STORE_ERRORS: &str = "faceid_store_errors_total";
/// HTTP connections open right now (at most `server.max_connections` per listener).
pub const OPEN_CONNECTIONS: &str = "faceid_http_open_connections";
/// Deliveries per group-commit transaction (recorded by `store::group`). One bucket per size
/// up to 64 (the default `database.group_commit_max`), so the distribution is exact there:
/// `bench/notify.sh` replays it against the database directly (the batched ceiling).
pub const GROUP_COMMIT_BATCH_SIZE: &str = "faceid_group_commit_batch_size";

/// Push attempts, by `outcome` (delivered, retry, gave_up, gone).
pub const PUSH_ATTEMPTS: &str = "faceid_push_attempts_total";
/// Push attempt latency in seconds (to the response headers), all endpoints together.
pub const PUSH_ATTEMPT_SECONDS: &str = "faceid_push_attempt_duration_seconds";
/// From an event's creation to its successful delivery, in seconds (retries included).
pub const PUSH_DELIVERY_SECONDS: &str = "faceid_push_delivery_seconds";
/// Push deliveries pending right now (due or waiting for a retry; sampled by the dispatcher).
pub const PUSH_PENDING: &str = "faceid_push_deliveries_pending";
/// Outbox events not yet published (sampled by the dispatcher).
pub const PUSH_UNPUBLISHED: &str = "faceid_push_events_unpublished";
/// Push endpoints disabled right now (410 Gone, `push.disable_after`, or by hand).
pub const PUSH_ENDPOINTS_DISABLED: &str = "faceid_push_endpoints_disabled";

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the recorder (first call) and returns the handle that renders `/metrics`.
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full(REQUEST_SECONDS.to_owned()),
                    &[
                        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                        10.0,
                    ],
                )
                .expect("static bucket list is valid")
                .set_buckets_for_metric(
                    Matcher::Full(PUSH_ATTEMPT_SECONDS.to_owned()),
                    &[0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 30.0],
                )
                .expect("static bucket list is valid")
                .set_buckets_for_metric(
                    Matcher::Full(PUSH_DELIVERY_SECONDS.to_owned()),
                    &[
                        0.1, 0.5, 1.0, 5.0, 30.0, 60.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0,
                        100000.0,
                    ],
                )
                .expect("static bucket list is valid")
                .set_buckets_for_metric(
                    Matcher::Full(GROUP_COMMIT_BATCH_SIZE.to_owned()),
                    &batch_size_buckets(),
                )
                .expect("static bucket list is valid")
                .build_recorder();
            let handle = recorder.handle();
            // Another recorder may already be installed (an embedding program's): keep it, and
            // serve our handle, which then renders only what reaches it.
            let _ = metrics::set_global_recorder(recorder);
            describe();
            handle
        })
        .clone()
}

/// 1, 2, … 64, then powers of two up to 1024.
fn batch_size_buckets() -> Vec<f64> {
    (1..=64)
        .chain([128, 256, 512, 1024])
        .map(f64::from)
        .collect()
}

fn describe() {
    metrics::describe_counter!(CALLBACKS, "Callback deliveries by route and outcome");
    metrics::describe_counter!(SIGNATURE_FAILURES, "Callbacks refused for a bad sign");
    metrics::describe_histogram!(
        REQUEST_SECONDS,
        metrics::Unit::Seconds,
        "HTTP request latency"
    );
    metrics::describe_counter!(GET_RESULT_CALLS, "get_result calls by outcome");
    metrics::describe_counter!(
        FOLLOWUPS_ENDED,
        "Follow-ups ended without a result (budget exhausted or window expired)"
    );
    metrics::describe_gauge!(PENDING_FOLLOWUPS, "Follow-up jobs pending");
    metrics::describe_counter!(STORE_ERRORS, "Failed storage operations");
    metrics::describe_gauge!(OPEN_CONNECTIONS, "HTTP connections open");
    metrics::describe_counter!(PUSH_ATTEMPTS, "Push attempts by outcome");
    metrics::describe_histogram!(
        PUSH_ATTEMPT_SECONDS,
        metrics::Unit::Seconds,
        "Push attempt latency"
    );
    metrics::describe_histogram!(
        PUSH_DELIVERY_SECONDS,
        metrics::Unit::Seconds,
        "From an event to its successful delivery"
    );
    metrics::describe_gauge!(PUSH_PENDING, "Push deliveries pending");
    metrics::describe_gauge!(PUSH_UNPUBLISHED, "Outbox events not yet published");
    metrics::describe_gauge!(PUSH_ENDPOINTS_DISABLED, "Push endpoints disabled");
    metrics::describe_histogram!(
        GROUP_COMMIT_BATCH_SIZE,
        "Deliveries written per group-commit transaction"
    );
}

/// Counts one push attempt and its latency. `outcome` is one of [`crate::store::NextStep`]'s.
pub fn push_attempt(outcome: &'static str, latency: std::time::Duration) {
    metrics::counter!(PUSH_ATTEMPTS, "outcome" => outcome).increment(1);
    metrics::histogram!(PUSH_ATTEMPT_SECONDS).record(latency.as_secs_f64());
}

/// Records how long an event took to be delivered.
pub fn push_delivered(since_event: std::time::Duration) {
    metrics::histogram!(PUSH_DELIVERY_SECONDS).record(since_event.as_secs_f64());
}

/// Sets the push gauges.
pub fn push_gauges(gauges: &crate::store::PushGauges) {
    metrics::gauge!(PUSH_PENDING).set(gauges.pending as f64);
    metrics::gauge!(PUSH_UNPUBLISHED).set(gauges.unpublished as f64);
    metrics::gauge!(PUSH_ENDPOINTS_DISABLED).set(gauges.endpoints_disabled as f64);
}

/// Counts one callback delivery.
pub fn callback(route: &'static str, outcome: &'static str) {
    metrics::counter!(CALLBACKS, "route" => route, "outcome" => outcome).increment(1);
}
