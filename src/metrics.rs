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
    metrics::describe_histogram!(
        GROUP_COMMIT_BATCH_SIZE,
        "Deliveries written per group-commit transaction"
    );
}

/// Counts one callback delivery.
pub fn callback(route: &'static str, outcome: &'static str) {
    metrics::counter!(CALLBACKS, "route" => route, "outcome" => outcome).increment(1);
}
