//! The worker driven pass by pass with a manual clock: outcomes, error classes, the budget,
//! the window, crashes between counting and calling, and cancellation by a signed final.

use faceid_receiver::store::{FetchState, Source};

use crate::common::Engine;
use crate::fetcher_tests;
use crate::helpers::*;

fetcher_tests!(
    processing_then_ok_is_stored_with_two_calls,
    a_result_that_never_becomes_final_spends_three_spaced_calls_then_is_exhausted,
    every_answer_and_error_class_ends_in_its_state_with_a_short_last_error,
    wrong_credentials_fail_the_job_after_one_call,
    timeouts_are_retried_until_the_budget_is_spent,
    connection_errors_are_retried_until_the_budget_is_spent,
    a_closed_window_expires_the_job_without_a_call,
    no_call_is_made_after_the_window_closes_between_calls,
    many_concurrent_return_gets_add_no_calls_and_never_overlap,
    two_replicas_never_call_one_biz_id_at_once,
    a_crash_between_counting_and_calling_loses_the_call_and_resumes_after_the_lease,
    a_crash_after_the_last_reservation_ends_exhausted_without_a_call,
    a_signed_final_notify_cancels_a_pending_follow_up,
    a_status_in_an_odd_case_is_final,
    a_get_result_answer_holding_nul_is_stored_after_one_call,
    every_call_the_worker_makes_is_in_the_call_log_with_its_outcome,
);

async fn processing_then_ok_is_stored_with_two_calls(engine: Engine) {
    let Some(h) = harness(engine).await else {
        return;
    };
    let id = h.mint(&["PROCESSING", "OK"]);
    h.return_get(&id).await;

    // Not due before fetch.initial_delay.
    assert_eq!(h.drain().await, 0);
    h.clock.advance(5 * SECOND);
    assert_eq!(h.drain().await, 1);
    let record = h.record(&id).await;
    assert_eq!(
        record.status, "PROCESSING",
        "the non-final result is stored too"
    );
    assert_eq!(record.fetch.state, FetchState::Pending);
    assert_eq!(record.fetch.calls_used, 1);
    assert_eq!(
        record.fetch.next_at,
        Some(h.clock.now_ms() + MINUTE),
        "retry_delay after the first call"
    );
    assert_eq!(record.fetch.last_error, None);

    h.clock.advance(MINUTE);
    assert_eq!(h.drain().await, 1);
    let record = h.record(&id).await;
    assert_eq!(record.status, "OK");
    assert_eq!(record.source, Source::GetResult);
    assert!(!record.signed);
    assert_eq!(record.liveness.as_deref(), Some("PASS"));
    assert_eq!(record.fetch.state, FetchState::Done);
    assert_eq!(record.fetch.calls_used, 2);
    assert_eq!(record.fetch.next_at, None);
    let result: serde_json::Value =
        serde_json::from_str(record.result.as_deref().unwrap()).unwrap();
    assert_eq!(result["biz_info"]["biz_id"], id.as_str());
    assert!(result.get("images").is_none());

    let calls = h.sim.calls(&id);
    assert_eq!((calls.count, calls.charged, calls.max_in_flight), (2, 2, 1));
    assert!(
        calls
            .calls
            .iter()
            .all(|c| c.return_verify_time.as_deref() == Some("1"))
    );
    h.clock.advance(DAY);
    assert_eq!(h.drain().await, 0, "a done job is never leased again");
}

async fn a_result_that_never_becomes_final_spends_three_spaced_calls_then_is_exhausted(
    engine: Engine,
) {
    let Some(h) = harness(engine).await else {
        return;
    };
    let id = h.mint(&["NOT_STARTED"]);
    let window_end = NOW_MS - MINUTE + DAY - 10 * MINUTE;
    h.return_get(&id).await;
    h.clock.advance(5 * SECOND);

    h.drain().await;
    let first = h.clock.now_ms();
    // NOT_STARTED: the slow lane.
    assert_eq!(h.record(&id).await.fetch.next_at, Some(first + HOUR));
    h.clock.set(first + HOUR - 1);
    assert_eq!(h.drain().await, 0, "not due before the slow lane's hour");
    h.clock.set(first + HOUR);
    h.drain().await;
    // The last call is held until the flow must have ended: half an hour before the window
    // closes.
    let last = window_end - 30 * MINUTE;
    assert_eq!(h.record(&id).await.fetch.next_at, Some(last));
    h.clock.set(last);
    h.drain().await;

    let record = h.record(&id).await;
    assert_eq!(record.status, "NOT_STARTED");
    assert_eq!(record.fetch.state, FetchState::Exhausted);
    assert_eq!(record.fetch.calls_used, 3);
    assert_eq!(
        record.fetch.last_error.as_deref(),
        Some("NOT_FINAL:NOT_STARTED")
    );
    h.clock.advance(HOUR);
    h.drain().await;
    assert_eq!(h.sim.calls(&id).count, 3, "never a fourth call");
}

async fn every_answer_and_error_class_ends_in_its_state_with_a_short_last_error(engine: Engine) {
    let Some(h) = harness(engine).await else {
        return;
    };
    /// Script, then the expected state, calls, last_error and stored status.
    type Case = (
        &'static [&'static str],
        FetchState,
        i32,
        Option<&'static str>,
        &'static str,
    );
    let table: &[Case] = &[
        (
            &["not_found"],
            FetchState::NotFound,
            1,
            Some("RESULT_NOT_FOUND"),
            "PENDING",
        ),
        (
            &["destroyed"],
            FetchState::Expired,
            1,
            Some("DATA_DESTROYED"),
            "PENDING",
        ),
        (&["500", "OK"], FetchState::Done, 2, None, "OK"),
        (&["concurrency", "OK"], FetchState::Done, 2, None, "OK"),
        (
            &["502", "PROCESSING", "OK"],
            FetchState::Done,
            3,
            None,
            "OK",
        ),
        (
            &["500"],
            FetchState::Exhausted,
            3,
            Some("INTERNAL_ERROR"),
            "PENDING",
        ),
        (
            &["concurrency"],
            FetchState::Exhausted,
            3,
            Some("CONCURRENCY_LIMIT_EXCEEDED"),
            "PENDING",
        ),
        (
            &["502"],
            FetchState::Exhausted,
            3,
            Some("HTTP 502"),
            "PENDING",
        ),
        (
            &["PROCESSING", "500"],
            FetchState::Exhausted,
            3,
            Some("INTERNAL_ERROR"),
            "PROCESSING",
        ),
        (&["FAILED"], FetchState::Done, 1, None, "FAILED"),
        (&["CANCELLED"], FetchState::Done, 1, None, "CANCELLED"),
        (&["TIMEOUT"], FetchState::Done, 1, None, "TIMEOUT"),
        (
            &["WEBRTC_UNSUPPORTED"],
            FetchState::Done,
            1,
            None,
            "WEBRTC_UNSUPPORTED",
        ),
        (&["seed:ok"], FetchState::Done, 1, None, "OK"),
    ];
    let ids: Vec<String> = table.iter().map(|(steps, ..)| h.mint(steps)).collect();
    // A biz_id FaceID never issued.
    let unknown = format!("{},never-issued", NOW_MS / 1000 - 60);
    for id in ids.iter().chain([&unknown]) {
        h.return_get(id).await;
    }
    let all: Vec<&str> = ids
        .iter()
        .map(String::as_str)
        .chain([unknown.as_str()])
        .collect();
    h.settle(&all).await;

    for ((steps, state, calls, last_error, status), id) in table.iter().zip(&ids) {
        let record = h.record(id).await;
        assert_eq!(record.fetch.state, *state, "state after {steps:?}");
        assert_eq!(record.fetch.calls_used, *calls, "calls after {steps:?}");
        assert_eq!(
            record.fetch.last_error.as_deref(),
            *last_error,
            "last_error after {steps:?}"
        );
        assert_eq!(record.status, *status, "status after {steps:?}");
        assert_eq!(
            h.sim.calls(id).count,
            *calls as u64,
            "simulator count after {steps:?}"
        );
    }
    let record = h.record(&unknown).await;
    assert_eq!(record.fetch.state, FetchState::NotFound);
    assert_eq!(record.fetch.last_error.as_deref(), Some("RESULT_NOT_FOUND"));
    assert_eq!(h.sim.calls(&unknown).count, 1);
}

async fn wrong_credentials_fail_the_job_after_one_call(engine: Engine) {
    let Some(h) = harness_with(
        engine,
        &[("APP__MEGVII__API_SECRET", "not-the-secret")],
        None,
    )
    .await
    else {
        return;
    };
    let id = h.mint(&["OK"]);
    h.return_get(&id).await;
    h.settle(&[&id]).await;
    let record = h.record(&id).await;
    assert_eq!(record.fetch.state, FetchState::Failed);
    assert_eq!(record.fetch.calls_used, 1);
    assert_eq!(
        record.fetch.last_error.as_deref(),
        Some("AUTHENTICATION_ERROR")
    );
    assert_eq!(h.sim.calls(&id).count, 1);
}

async fn timeouts_are_retried_until_the_budget_is_spent(engine: Engine) {
    let Some(h) = harness_with(engine, &[("APP__MEGVII__TIMEOUT", "500ms")], None).await else {
        return;
    };
    let id = h.mint(&["slow:1500:OK"]);
    let late = h.mint(&["slow:1500:OK", "OK"]);
    h.return_get(&id).await;
    h.return_get(&late).await;
    h.settle(&[&id, &late]).await;

    let record = h.record(&id).await;
    assert_eq!(record.fetch.state, FetchState::Exhausted);
    assert_eq!(record.fetch.calls_used, 3);
    assert_eq!(record.fetch.last_error.as_deref(), Some("TIMEOUT"));
    assert_eq!(h.sim.calls(&id).count, 3);

    let record = h.record(&late).await;
    assert_eq!(
        (record.fetch.state, record.fetch.calls_used),
        (FetchState::Done, 2)
    );
    assert_eq!(record.status, "OK");
}

async fn every_call_the_worker_makes_is_in_the_call_log_with_its_outcome(engine: Engine) {
    let Some(h) = harness_with(engine, &[("APP__MEGVII__TIMEOUT", "500ms")], None).await else {
        return;
    };
    // A timeout, a non-final answer, then the final one: three calls, each logged.
    let id = h.mint(&["slow:1500:OK", "PROCESSING", "OK"]);
    h.return_get(&id).await;
    h.settle(&[&id]).await;
    let record = h.record(&id).await;
    assert_eq!(
        (record.fetch.state, record.fetch.calls_used),
        (FetchState::Done, 3)
    );
    let calls = h.store.calls(&id, 10).await.unwrap();
    let logged: Vec<(i32, &str, Option<&str>)> = calls
        .iter()
        .map(|c| (c.call_no, c.outcome.as_str(), c.detail.as_deref()))
        .collect();
    assert_eq!(
        logged,
        [
            (1, "error", Some("TIMEOUT")),
            (2, "result", Some("PROCESSING")),
            (3, "result", Some("OK")),
        ]
    );
    assert_eq!(h.sim.calls(&id).count, 3, "one row per call FaceID saw");
    assert!(calls.windows(2).all(|w| w[0].called_at < w[1].called_at));
}

async fn connection_errors_are_retried_until_the_budget_is_spent(engine: Engine) {
    // Port 9 (discard) is closed: every call is refused.
    let Some(h) = harness_with(engine, &[], Some("http://127.0.0.1:9")).await else {
        return;
    };
    let id = h.mint(&["OK"]);
    h.return_get(&id).await;
    h.clock.advance(5 * SECOND);
    h.drain().await;
    let record = h.record(&id).await;
    assert_eq!(record.fetch.state, FetchState::Pending);
    assert_eq!(record.fetch.last_error.as_deref(), Some("CONNECT_ERROR"));
    let wait = record.fetch.next_at.unwrap() - h.clock.now_ms();
    assert!(
        (45 * SECOND..=75 * SECOND).contains(&wait),
        "retry_delay with jitter, got {wait} ms"
    );
    h.settle(&[&id]).await;
    let record = h.record(&id).await;
    assert_eq!(record.fetch.state, FetchState::Exhausted);
    assert_eq!(record.fetch.calls_used, 3);
    assert_eq!(record.fetch.last_error.as_deref(), Some("CONNECT_ERROR"));
}

async fn a_closed_window_expires_the_job_without_a_call(engine: Engine) {
    let Some(h) = harness(engine).await else {
        return;
    };
    // Created a day minus five minutes ago: inside FaceID's day, but past our 10-minute margin.
    let id = h.mint_at(NOW_MS - DAY + 5 * MINUTE, &["OK"]);
    h.return_get(&id).await;
    h.settle(&[&id]).await;
    let record = h.record(&id).await;
    assert_eq!(record.fetch.state, FetchState::Expired);
    assert_eq!(record.fetch.calls_used, 0);
    assert_eq!(record.fetch.last_error.as_deref(), Some("WINDOW_CLOSED"));
    assert_eq!(h.sim.calls(&id).count, 0);
}

async fn no_call_is_made_after_the_window_closes_between_calls(engine: Engine) {
    let Some(h) = harness(engine).await else {
        return;
    };
    // The window (one day minus the 10-minute margin) ends three minutes from now.
    let created = NOW_MS - DAY + 13 * MINUTE;
    let window_end = created + DAY - 10 * MINUTE;
    let id = h.mint_at(created, &["PROCESSING"]);
    h.return_get(&id).await;
    h.settle(&[&id]).await;

    let calls = h.sim.calls(&id);
    assert!(calls.count >= 1);
    for call in &calls.calls {
        assert!(
            call.at_ms < window_end,
            "call at {} is past the window end {window_end}",
            call.at_ms
        );
    }
    let record = h.record(&id).await;
    assert!(
        matches!(
            record.fetch.state,
            FetchState::Exhausted | FetchState::Expired
        ),
        "{:?}",
        record.fetch
    );
    assert_eq!(record.fetch.calls_used as u64, calls.count);
}

async fn many_concurrent_return_gets_add_no_calls_and_never_overlap(engine: Engine) {
    let Some(h) = harness(engine).await else {
        return;
    };
    let ids: Vec<String> = (0..5).map(|_| h.mint(&["slow:50:PROCESSING"])).collect();
    let hammer = || async {
        let requests = ids
            .iter()
            .flat_map(|id| (0..10).map(move |_| id))
            .map(|id| h.return_get(id));
        futures_util::future::join_all(requests).await;
    };
    hammer().await;
    for _ in 0..20 {
        h.clock.advance(HOUR);
        // The browser keeps coming back while the worker works.
        tokio::join!(hammer(), h.drain());
    }
    for id in &ids {
        let calls = h.sim.calls(id);
        assert_eq!(calls.count, 3, "exactly the budget for {id}");
        assert_eq!(calls.max_in_flight, 1, "never two calls at once for {id}");
        let record = h.record(id).await;
        assert_eq!(
            (record.fetch.state, record.fetch.calls_used),
            (FetchState::Exhausted, 3)
        );
    }
}

async fn two_replicas_never_call_one_biz_id_at_once(engine: Engine) {
    let Some(h) = harness(engine).await else {
        return;
    };
    let ids: Vec<String> = (0..12)
        .map(|_| h.mint(&["slow:100:PROCESSING", "slow:100:OK"]))
        .collect();
    for id in &ids {
        h.return_get(id).await;
    }
    let b = h.replica("replica-b");
    for _ in 0..10 {
        h.clock.advance(10 * MINUTE);
        tokio::join!(h.drain(), drain(&b, &h.clock));
    }
    for id in &ids {
        let calls = h.sim.calls(id);
        assert_eq!((calls.count, calls.max_in_flight), (2, 1), "{id}");
        assert_eq!(h.record(id).await.fetch.state, FetchState::Done);
    }
}

async fn a_crash_between_counting_and_calling_loses_the_call_and_resumes_after_the_lease(
    engine: Engine,
) {
    let Some(h) = harness(engine).await else {
        return;
    };
    let id = h.mint(&["OK"]);
    h.return_get(&id).await;
    h.clock.advance(5 * SECOND);

    // A replica leases the job, counts a call, and dies before making it.
    let now = h.clock.now_ms();
    let leased = h
        .store
        .lease_due_jobs("crashed", now, now + MINUTE, 10)
        .await
        .unwrap();
    assert_eq!(leased.len(), 1);
    assert_eq!(
        h.store
            .reserve_call(&id, "crashed", now, now, 3)
            .await
            .unwrap(),
        Some(1)
    );

    // Its lease keeps everyone else away until it lapses.
    assert_eq!(h.drain().await, 0);
    h.clock.advance(30 * SECOND);
    assert_eq!(h.drain().await, 0);
    assert_eq!(h.sim.calls(&id).count, 0);

    h.clock.advance(31 * SECOND);
    assert_eq!(h.drain().await, 1);
    let record = h.record(&id).await;
    assert_eq!(record.fetch.state, FetchState::Done);
    assert_eq!(record.fetch.calls_used, 2, "the lost call stays counted");
    assert_eq!(h.sim.calls(&id).count, 1);
    // The dead replica's late bookkeeping changes nothing.
    assert_eq!(
        h.store
            .reserve_call(&id, "crashed", h.clock.now_ms(), h.clock.now_ms(), 3)
            .await
            .unwrap(),
        None
    );
}

async fn a_crash_after_the_last_reservation_ends_exhausted_without_a_call(engine: Engine) {
    let Some(h) = harness(engine).await else {
        return;
    };
    let id = h.mint(&["OK"]);
    h.return_get(&id).await;
    for _ in 0..3 {
        h.clock.advance(2 * MINUTE);
        let now = h.clock.now_ms();
        assert_eq!(
            h.store
                .lease_due_jobs("crashed", now, now + MINUTE, 10)
                .await
                .unwrap()
                .len(),
            1
        );
        assert!(
            h.store
                .reserve_call(&id, "crashed", now, now, 3)
                .await
                .unwrap()
                .is_some()
        );
    }
    let now = h.clock.now_ms();
    assert_eq!(
        h.store
            .reserve_call(&id, "crashed", now, now, 3)
            .await
            .unwrap(),
        None,
        "never a fourth"
    );
    h.clock.advance(2 * MINUTE);
    assert_eq!(h.drain().await, 1);
    let record = h.record(&id).await;
    assert_eq!(record.fetch.state, FetchState::Exhausted);
    assert_eq!(record.fetch.calls_used, 3);
    assert_eq!(record.fetch.last_error.as_deref(), Some("NO_CALLS_LEFT"));
    assert_eq!(h.sim.calls(&id).count, 0);
}

async fn a_signed_final_notify_cancels_a_pending_follow_up(engine: Engine) {
    let Some(h) = harness(engine).await else {
        return;
    };
    let id = h.mint(&["OK"]);
    h.return_get(&id).await;
    assert_eq!(h.record(&id).await.fetch.state, FetchState::Pending);

    let response = h.notify(&id, "OK").await;
    assert_eq!(response.status(), 200);
    let record = h.record(&id).await;
    assert_eq!(record.fetch.state, FetchState::None);
    assert_eq!(record.source, Source::Notify);

    h.clock.advance(HOUR);
    assert_eq!(h.drain().await, 0);
    assert_eq!(h.sim.calls(&id).count, 0, "the follow-up was unnecessary");

    // A non-final notify leaves the follow-up in place.
    let other = h.mint(&["OK"]);
    h.return_get(&other).await;
    h.notify(&other, "PROCESSING").await;
    assert_eq!(h.record(&other).await.fetch.state, FetchState::Pending);
}

async fn a_status_in_an_odd_case_is_final(engine: Engine) {
    let Some(h) = harness(engine).await else {
        return;
    };
    let id = h.mint(&["status:Failed"]);
    h.return_get(&id).await;
    h.settle(&[&id]).await;
    let record = h.record(&id).await;
    assert_eq!(record.status, "FAILED");
    assert_eq!(
        (record.fetch.state, record.fetch.calls_used),
        (FetchState::Done, 1)
    );
}

async fn a_get_result_answer_holding_nul_is_stored_after_one_call(engine: Engine) {
    let Some(h) = harness(engine).await else {
        return;
    };
    // The simulator's result JSON carries this biz_no as `"order\u0000x"`.
    let spec = faceid_sim::ResultScript::default()
        .steps(["OK"])
        .biz_no("order\0x")
        .created_at_ms(NOW_MS - MINUTE);
    let id = h.sim.mint_biz(spec).unwrap();
    h.return_get(&id).await;
    h.clock.advance(5 * SECOND);
    assert_eq!(h.drain().await, 1);

    let record = h.record(&id).await;
    assert_eq!(record.status, "OK");
    assert_eq!(
        record.biz_no.as_deref(),
        Some(r"order\u0000x"),
        "its column form"
    );
    assert!(
        record
            .result
            .as_deref()
            .unwrap()
            .contains(r#""biz_no":"order\u0000x""#),
        "the answer as FaceID wrote it"
    );
    assert_eq!(
        (record.fetch.state, record.fetch.calls_used),
        (FetchState::Done, 1)
    );
    // No lapsed lease, no second call.
    h.clock.advance(2 * HOUR);
    assert_eq!(h.drain().await, 0);
    assert_eq!(h.sim.calls(&id).count, 1, "one call, per the simulator");
}

mod request_fetch {
    //! `Store::request_fetch`, which the manual fetch and RAW routes use, directly.

    use faceid_receiver::store::{FetchState, NewJob, Source};

    use crate::common::Engine;
    use crate::fetcher_tests;
    use crate::helpers::*;

    fetcher_tests!(creates_a_pending_record_once_and_never_refills_the_budget);

    async fn creates_a_pending_record_once_and_never_refills_the_budget(engine: Engine) {
        let Some(h) = harness(engine).await else {
            return;
        };
        let key = "raw:budget-token";
        let job = |next_at| NewJob {
            next_at,
            window_ends_at: NOW_MS + DAY,
            return_image: 0,
        };

        let record = h
            .store
            .request_fetch(key, Some("order-1"), job(NOW_MS), NOW_MS)
            .await
            .unwrap();
        assert_eq!(
            (record.status.as_str(), record.source),
            ("PENDING", Source::GetResult)
        );
        assert_eq!(record.biz_no.as_deref(), Some("order-1"));
        assert_eq!(
            (record.fetch.state, record.fetch.calls_used),
            (FetchState::Pending, 0)
        );
        assert_eq!(record.created_at, NOW_MS);

        // Spend two calls, then ask again later: the record and the budget are kept.
        let lease = h
            .store
            .lease_due_jobs("w", NOW_MS, NOW_MS + MINUTE, 10)
            .await
            .unwrap();
        assert_eq!(lease.len(), 1);
        for _ in 0..2 {
            assert!(
                h.store
                    .reserve_call(key, "w", NOW_MS, NOW_MS, 3)
                    .await
                    .unwrap()
                    .is_some()
            );
        }
        let update = faceid_receiver::store::JobUpdate::Finish {
            state: FetchState::Exhausted,
            last_error: None,
        };
        h.store.update_job(key, "w", NOW_MS, &update).await.unwrap();

        let later = NOW_MS + HOUR;
        let record = h
            .store
            .request_fetch(key, Some("order-2"), job(later), later)
            .await
            .unwrap();
        assert_eq!(
            record.biz_no.as_deref(),
            Some("order-1"),
            "a known biz_no is never replaced"
        );
        assert_eq!(record.created_at, NOW_MS, "the record is kept");
        assert_eq!(record.fetch.state, FetchState::Pending);
        assert_eq!(record.fetch.calls_used, 2, "the budget is never refilled");
        assert_eq!(record.fetch.next_at, Some(later));

        // A record without biz_no learns one.
        let other = "raw:no-biz-no";
        h.store
            .request_fetch(other, None, job(NOW_MS), NOW_MS)
            .await
            .unwrap();
        let record = h
            .store
            .request_fetch(other, Some("order-3"), job(NOW_MS), NOW_MS)
            .await
            .unwrap();
        assert_eq!(record.biz_no.as_deref(), Some("order-3"));
    }
}
