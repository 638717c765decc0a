//! Push's part of the store, on both engines: the transactional outbox (a committed outcome
//! has its event, a rolled-back one has none), publication (gap-free positions, fan-out to
//! the endpoints that subscribe), leases across replicas, attempts and endpoint health.

use std::collections::HashSet;
use std::sync::Arc;

use faceid_receiver::store::{
    AttemptReport, CALLBACK_REFUSED, CallbackKind, ConnectOptions, EndpointPatch, Event,
    FOLLOWUP_ENDED, FetchState, IncomingResult, JobEffect, JobUpdate, Keyring, NewEndpoint,
    NextStep, REFUSED_WINDOW_MS, Store, StoreError, VERIFICATION_COMPLETED,
};

use super::{
    DAY, NOW, biz, delivery, fetched, lease, new_job, rejected, return_get, signed_notify,
};
use crate::common::{self, Engine, TestDatabase};

crate::store_tests! {
    test: #[tokio::test(flavor = "multi_thread", worker_threads = 2)],
    stores: [
        a_stored_final_result_has_one_event_and_a_duplicate_or_a_non_final_none,
        every_source_of_a_final_result_writes_its_event,
        a_follow_up_that_ends_without_a_result_writes_followup_ended_once,
        refusals_coalesce_into_one_event_per_route_and_window,
        publication_gives_gap_free_positions_and_fans_out_to_subscribers,
        replicas_never_lease_one_delivery_twice_and_each_is_delivered_once,
        attempts_are_recorded_and_410_or_a_long_streak_disables_the_endpoint,
        endpoints_are_capped_rotated_patched_and_deleted,
        retry_and_replay_restart_deliveries_from_the_first_attempt,
        the_console_reads_health_per_endpoint_and_attempts_per_biz_id,
        retention_of_refusals_takes_their_events_deliveries_and_attempts,
        retention_of_push_events_takes_old_finished_events_and_keeps_what_is_left_to_send,
    ],
    engines: [endpoint_secrets_are_sealed_at_rest],
}

/// A rolled-back group-commit batch leaves no event: one batch per case, as in
/// `group_commit::batch`.
mod batch {
    use super::*;

    crate::store_tests! {
        test: #[tokio::test(flavor = "current_thread")],
        stores: [a_member_that_fails_its_batch_leaves_no_event_and_the_others_one_each],
        engines: [],
    }
}

/// Publishes everything written so far (without fan-out) and returns every event.
async fn published(store: &Arc<dyn Store>, now: i64) -> Vec<Event> {
    store.publish_events(now, false, 10_000).await.unwrap();
    store.events_after(0, 10_000).await.unwrap()
}

fn of_kind<'a>(events: &'a [Event], kind: &str) -> Vec<&'a Event> {
    events.iter().filter(|e| e.kind == kind).collect()
}

fn subjects(events: &[Event], kind: &str) -> Vec<String> {
    of_kind(events, kind)
        .into_iter()
        .map(|e| e.subject.clone())
        .collect()
}

fn endpoint(id: &str, events: &[&str]) -> NewEndpoint {
    NewEndpoint {
        id: id.to_owned(),
        url: format!("https://{id}.example.com/hook?token=merchant-own"),
        events: events.iter().map(|e| e.to_string()).collect(),
        include_pii: false,
        description: Some("test".into()),
        secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into(),
        now: NOW,
    }
}

const ALL: [&str; 3] = [CALLBACK_REFUSED, FOLLOWUP_ENDED, VERIFICATION_COMPLETED];

async fn a_stored_final_result_has_one_event_and_a_duplicate_or_a_non_final_none(
    store: Arc<dyn Store>,
) {
    let (done, busy) = (biz("final"), biz("busy"));
    super::notify(&store, &signed_notify(&done, "OK"), NOW, JobEffect::Keep).await;
    super::notify(
        &store,
        &signed_notify(&done, "OK"),
        NOW + 1,
        JobEffect::Keep,
    )
    .await;
    super::notify(
        &store,
        &signed_notify(&busy, "PROCESSING"),
        NOW,
        JobEffect::Keep,
    )
    .await;

    let events = published(&store, NOW + 2).await;

    assert_eq!(
        subjects(&events, VERIFICATION_COMPLETED),
        std::slice::from_ref(&done)
    );
    let event = of_kind(&events, VERIFICATION_COMPLETED)[0];
    assert!(event.id.starts_with("evt_"), "{event:?}");
    assert_eq!(event.created_at, NOW);
    assert_eq!(event.position, Some(1));
}

async fn every_source_of_a_final_result_writes_its_event(store: Arc<dyn Store>) {
    // get_result (the follow-up's answer), and a replayed refused delivery.
    let (by_fetch, by_replay) = (biz("by-fetch"), biz("by-replay"));
    return_get(&store, &by_fetch, NOW, new_job(NOW)).await;
    let leased = lease(&store, "w", NOW + 5_000).await;
    assert_eq!(leased, std::slice::from_ref(&by_fetch));
    store
        .save_fetched(
            "w",
            &fetched(&by_fetch, "OK"),
            &[],
            &JobUpdate::Finish {
                state: FetchState::Done,
                last_error: None,
            },
            NOW + 5_000,
        )
        .await
        .unwrap();
    let refused = rejected(CallbackKind::Notify, None, "sign does not match", NOW);
    let id = store.journal_rejected(&refused).await.unwrap();
    store
        .accept_replayed(
            id,
            "current",
            &signed_notify(&by_replay, "OK"),
            &[],
            JobEffect::Keep,
            NOW + 6_000,
        )
        .await
        .unwrap()
        .expect("claimed");

    let events = published(&store, NOW + 7_000).await;

    assert_eq!(
        subjects(&events, VERIFICATION_COMPLETED),
        [by_fetch, by_replay]
    );
    assert_eq!(
        subjects(&events, FOLLOWUP_ENDED),
        Vec::<String>::new(),
        "done is not an end without a result"
    );
}

async fn a_follow_up_that_ends_without_a_result_writes_followup_ended_once(store: Arc<dyn Store>) {
    let (ended, retried) = (biz("ended"), biz("retried"));
    for id in [&ended, &retried] {
        return_get(&store, id, NOW, new_job(NOW)).await;
    }
    lease(&store, "w", NOW + 5_000).await;
    let finish = JobUpdate::Finish {
        state: FetchState::Exhausted,
        last_error: Some("NO_CALLS_LEFT".into()),
    };
    store
        .update_job(&ended, "w", NOW + 5_000, &finish)
        .await
        .unwrap();
    // A second finish by a worker that no longer holds the lease changes nothing.
    store
        .update_job(&ended, "w", NOW + 6_000, &finish)
        .await
        .unwrap();
    store
        .update_job(
            &retried,
            "w",
            NOW + 5_000,
            &JobUpdate::Retry {
                next_at: NOW + 60_000,
                last_error: None,
            },
        )
        .await
        .unwrap();

    let events = published(&store, NOW + 7_000).await;

    assert_eq!(
        subjects(&events, FOLLOWUP_ENDED),
        std::slice::from_ref(&ended)
    );
    let data =
        faceid_receiver::push::render::body(&*store, of_kind(&events, FOLLOWUP_ENDED)[0], false)
            .await
            .unwrap();
    let body: serde_json::Value = serde_json::from_str(&data).unwrap();
    assert_eq!(body["type"], "followup.ended");
    assert_eq!(body["data"]["state"], "exhausted");
    assert_eq!(body["data"]["last_error"], "NO_CALLS_LEFT");
}

async fn refusals_coalesce_into_one_event_per_route_and_window(store: Arc<dyn Store>) {
    let window = NOW - NOW % REFUSED_WINDOW_MS;
    for i in 0..5 {
        let entry = rejected(
            CallbackKind::Notify,
            None,
            "sign does not match",
            window + i,
        );
        store.journal_rejected(&entry).await.unwrap();
    }
    // Reasons that quote the sender's body do not open buckets of their own.
    for column in 0..20 {
        let reason = format!("data is not valid JSON (line 1, column {column})");
        let entry = rejected(CallbackKind::Notify, None, &reason, window + 10 + column);
        store.journal_rejected(&entry).await.unwrap();
    }
    let other_route = rejected(
        CallbackKind::ReturnPost,
        None,
        "sign does not match",
        window,
    );
    store.journal_rejected(&other_route).await.unwrap();
    let next_window = rejected(
        CallbackKind::Notify,
        None,
        "sign does not match",
        window + REFUSED_WINDOW_MS,
    );
    store.journal_rejected(&next_window).await.unwrap();

    let events = published(&store, window + 2 * REFUSED_WINDOW_MS).await;

    let refused = of_kind(&events, CALLBACK_REFUSED);
    assert_eq!(refused.len(), 3, "{refused:?}");
    let body = faceid_receiver::push::render::body(&*store, refused[0], false)
        .await
        .unwrap();
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["data"]["kind"], "notify");
    assert_eq!(body["data"]["reason"], "sign does not match");
    assert_eq!(body["data"]["refused_in_window"], 25);
    assert!(
        !body.to_string().contains("203.0.113"),
        "no address: {body}"
    );
}

async fn publication_gives_gap_free_positions_and_fans_out_to_subscribers(store: Arc<dyn Store>) {
    store
        .create_endpoint(&endpoint("ep_all", &ALL), 10)
        .await
        .unwrap()
        .unwrap();
    store
        .create_endpoint(&endpoint("ep_refusals", &[CALLBACK_REFUSED]), 10)
        .await
        .unwrap()
        .unwrap();
    let off = store
        .create_endpoint(&endpoint("ep_off", &ALL), 10)
        .await
        .unwrap()
        .unwrap();
    store
        .update_endpoint(
            &off.id,
            &EndpointPatch {
                enabled: Some(false),
                ..Default::default()
            },
            NOW,
        )
        .await
        .unwrap();
    for i in 0..3 {
        let id = biz(&format!("fan-{i}"));
        super::notify(&store, &signed_notify(&id, "OK"), NOW + i, JobEffect::Keep).await;
    }
    store
        .journal_rejected(&rejected(CallbackKind::Notify, None, "bad", NOW))
        .await
        .unwrap();

    assert_eq!(store.publish_events(NOW + 10, true, 2).await.unwrap(), 2);
    assert_eq!(store.publish_events(NOW + 10, true, 100).await.unwrap(), 2);
    assert_eq!(store.publish_events(NOW + 10, true, 100).await.unwrap(), 0);

    let events = store.events_after(0, 100).await.unwrap();
    let positions: Vec<i64> = events.iter().map(|e| e.position.unwrap()).collect();
    assert_eq!(positions, [1, 2, 3, 4]);
    let mut kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(
        kinds.split_off(3),
        [CALLBACK_REFUSED],
        "published in the order they were written"
    );
    assert_eq!(
        store.events_after(2, 100).await.unwrap(),
        events[2..].to_vec()
    );
    let leased = store
        .lease_deliveries("d", NOW + 10, NOW + 60_000, 100)
        .await
        .unwrap();
    let mut pairs: Vec<(String, String)> = leased
        .iter()
        .map(|d| (d.endpoint_id.clone(), d.event.kind.clone()))
        .collect();
    pairs.sort();
    assert_eq!(
        pairs,
        [
            ("ep_all".into(), CALLBACK_REFUSED.into()),
            ("ep_all".into(), VERIFICATION_COMPLETED.into()),
            ("ep_all".into(), VERIFICATION_COMPLETED.into()),
            ("ep_all".into(), VERIFICATION_COMPLETED.into()),
            ("ep_refusals".into(), CALLBACK_REFUSED.into()),
        ],
        "nothing for the disabled endpoint"
    );
}

/// Three endpoints' worth of deliveries, leased by three replicas at once, again and again:
/// each delivery goes to exactly one of them, and once delivered, to none again.
async fn replicas_never_lease_one_delivery_twice_and_each_is_delivered_once(store: Arc<dyn Store>) {
    for ep in ["ep_a", "ep_b", "ep_c"] {
        store
            .create_endpoint(&endpoint(ep, &ALL), 10)
            .await
            .unwrap()
            .unwrap();
    }
    for i in 0..20 {
        let id = biz(&format!("r-{i}"));
        super::notify(&store, &signed_notify(&id, "OK"), NOW, JobEffect::Keep).await;
    }
    store.publish_events(NOW, true, 1000).await.unwrap();

    let mut tasks = Vec::new();
    for replica in ["one", "two", "three"] {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let leased = store
                    .lease_deliveries(replica, NOW + 1, NOW + 60_000, 7)
                    .await
                    .unwrap();
                if leased.is_empty() {
                    break;
                }
                for d in leased {
                    let report = AttemptReport {
                        delivery_id: d.id,
                        event_seq: d.event.seq,
                        endpoint_id: d.endpoint_id.clone(),
                        attempt: d.attempts + 1,
                        at: NOW + 1,
                        status: Some(200),
                        latency_ms: 3,
                        code: "HTTP 200".into(),
                        answer: b"ok".to_vec(),
                        next: NextStep::Delivered,
                        disable_after_ms: 5 * DAY,
                    };
                    store.record_attempt(replica, &report).await.unwrap();
                    mine.push(d.id);
                }
            }
            mine
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    let unique: HashSet<i64> = all.iter().copied().collect();
    assert_eq!(all.len(), 60, "20 events × 3 endpoints");
    assert_eq!(unique.len(), 60, "no delivery leased twice");
    let later = store
        .lease_deliveries("four", NOW + DAY, NOW + DAY + 60_000, 100)
        .await
        .unwrap();
    assert!(later.is_empty(), "nothing delivered goes out again");
    let health = store.endpoint_health().await.unwrap();
    assert!(
        health.iter().all(|h| h.delivered == 20 && h.pending == 0),
        "{health:?}"
    );
}

fn report(
    d: &faceid_receiver::store::LeasedDelivery,
    at: i64,
    status: i32,
    next: NextStep,
) -> AttemptReport {
    AttemptReport {
        delivery_id: d.id,
        event_seq: d.event.seq,
        endpoint_id: d.endpoint_id.clone(),
        attempt: d.attempts + 1,
        at,
        status: Some(status),
        latency_ms: 12,
        code: format!("HTTP {status}"),
        answer: b"nope".to_vec(),
        next,
        disable_after_ms: 5 * DAY,
    }
}

async fn attempts_are_recorded_and_410_or_a_long_streak_disables_the_endpoint(
    store: Arc<dyn Store>,
) {
    for ep in ["ep_gone", "ep_flaky"] {
        store
            .create_endpoint(&endpoint(ep, &[VERIFICATION_COMPLETED]), 10)
            .await
            .unwrap()
            .unwrap();
    }
    let id = biz("attempted");
    super::notify(&store, &signed_notify(&id, "OK"), NOW, JobEffect::Keep).await;
    store.publish_events(NOW, true, 10).await.unwrap();
    let leased = store
        .lease_deliveries("d", NOW, NOW + 60_000, 10)
        .await
        .unwrap();
    assert_eq!(leased.len(), 2);
    for d in &leased {
        let (status, next) = if d.endpoint_id == "ep_gone" {
            (410, NextStep::Gone)
        } else {
            (503, NextStep::RetryAt(NOW + 5_000))
        };
        let disabled = store
            .record_attempt("d", &report(d, NOW, status, next))
            .await
            .unwrap();
        assert_eq!(disabled, d.endpoint_id == "ep_gone", "{}", d.endpoint_id);
    }
    let gone = store.endpoint("ep_gone").await.unwrap().unwrap();
    assert_eq!(gone.disabled_at, Some(NOW));
    assert!(gone.disabled_reason.unwrap().contains("410"));
    let flaky = store.endpoint("ep_flaky").await.unwrap().unwrap();
    assert_eq!((flaky.disabled_at, flaky.failing_since), (None, Some(NOW)));

    // Not due before its retry time; due after, and still failing past disable_after.
    assert!(
        store
            .lease_deliveries("d", NOW + 4_000, NOW + 60_000, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let again = store
        .lease_deliveries("d", NOW + 5 * DAY, NOW + 5 * DAY + 60_000, 10)
        .await
        .unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].attempts, 1);
    let disabled = store
        .record_attempt(
            "d",
            &report(
                &again[0],
                NOW + 5 * DAY,
                500,
                NextStep::RetryAt(NOW + 6 * DAY),
            ),
        )
        .await
        .unwrap();
    assert!(disabled, "failing since NOW, for disable_after");
    let flaky = store.endpoint("ep_flaky").await.unwrap().unwrap();
    assert!(
        flaky
            .disabled_reason
            .unwrap()
            .contains("push.disable_after")
    );
    assert!(
        store
            .lease_deliveries("d", NOW + 7 * DAY, NOW + 8 * DAY, 10)
            .await
            .unwrap()
            .is_empty(),
        "a disabled endpoint's deliveries wait"
    );

    let attempts = store.push_attempts(&id, 10).await.unwrap();
    let outcomes: Vec<(&str, &str, Option<i32>)> = attempts
        .iter()
        .map(|a| (a.endpoint_id.as_str(), a.outcome.as_str(), a.status))
        .collect();
    assert_eq!(outcomes.len(), 3, "{outcomes:?}");
    assert!(outcomes.contains(&("ep_gone", "gone", Some(410))));
    assert!(outcomes.contains(&("ep_flaky", "retry", Some(503))));
    assert!(outcomes.contains(&("ep_flaky", "retry", Some(500))));

    // Enabling it again clears the reason and the streak, and its delivery goes out again.
    store
        .update_endpoint(
            "ep_flaky",
            &EndpointPatch {
                enabled: Some(true),
                ..Default::default()
            },
            NOW + 7 * DAY,
        )
        .await
        .unwrap();
    let flaky = store.endpoint("ep_flaky").await.unwrap().unwrap();
    assert_eq!(
        (
            flaky.disabled_at,
            flaky.failing_since,
            flaky.disabled_reason
        ),
        (None, None, None)
    );
    assert_eq!(
        store
            .lease_deliveries("d", NOW + 7 * DAY, NOW + 8 * DAY, 10)
            .await
            .unwrap()
            .len(),
        1
    );
}

async fn endpoints_are_capped_rotated_patched_and_deleted(store: Arc<dyn Store>) {
    let first = store
        .create_endpoint(&endpoint("ep_1", &ALL), 2)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.secret, "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
    store
        .create_endpoint(&endpoint("ep_2", &ALL), 2)
        .await
        .unwrap()
        .unwrap();
    assert!(
        store
            .create_endpoint(&endpoint("ep_3", &ALL), 2)
            .await
            .unwrap()
            .is_none(),
        "capped"
    );

    let rotated = store
        .rotate_secret(
            "ep_1",
            "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            NOW + DAY,
            NOW,
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rotated.secret, "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
    assert_eq!(
        rotated.previous_secret.as_deref(),
        Some(first.secret.as_str())
    );
    assert_eq!(rotated.previous_expires_at, Some(NOW + DAY));
    assert!(
        store
            .rotate_secret("ep_x", "whsec_x", 0, 0)
            .await
            .unwrap()
            .is_none()
    );

    let patched = store
        .update_endpoint(
            "ep_1",
            &EndpointPatch {
                events: Some(vec![FOLLOWUP_ENDED.into()]),
                description: Some(None),
                include_pii: Some(true),
                ..Default::default()
            },
            NOW + 1,
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(patched.events, [FOLLOWUP_ENDED]);
    assert_eq!(patched.description, None);
    assert!(patched.include_pii);
    assert_eq!(patched.url, first.url, "unchanged");
    assert!(
        format!("{patched:?}").find("whsec").is_none()
            && !format!("{patched:?}").contains("merchant-own")
    );

    assert!(store.delete_endpoint("ep_1").await.unwrap());
    assert!(!store.delete_endpoint("ep_1").await.unwrap());
    assert_eq!(store.endpoints(10).await.unwrap().len(), 1);
}

async fn retry_and_replay_restart_deliveries_from_the_first_attempt(store: Arc<dyn Store>) {
    store
        .create_endpoint(&endpoint("ep_r", &ALL), 10)
        .await
        .unwrap()
        .unwrap();
    let id = biz("retried");
    super::notify(&store, &signed_notify(&id, "OK"), NOW, JobEffect::Keep).await;
    store.publish_events(NOW, true, 10).await.unwrap();
    let leased = store
        .lease_deliveries("d", NOW, NOW + 60_000, 10)
        .await
        .unwrap();
    store
        .record_attempt("d", &report(&leased[0], NOW, 500, NextStep::GiveUp))
        .await
        .unwrap();
    assert!(
        store
            .lease_deliveries("d", NOW + DAY, NOW + DAY + 1, 10)
            .await
            .unwrap()
            .is_empty()
    );

    let event = leased[0].event.id.clone();
    assert_eq!(store.retry_event(&event, NOW + DAY).await.unwrap(), Some(1));
    assert_eq!(store.retry_event("evt_unknown", NOW).await.unwrap(), None);
    let again = store
        .lease_deliveries("d", NOW + DAY, NOW + DAY + 60_000, 10)
        .await
        .unwrap();
    assert_eq!((again.len(), again[0].attempts), (1, 0));
    assert_eq!(again[0].event.id, event, "the same webhook-id");

    // A new endpoint gets the past events it subscribes to by replay.
    store
        .create_endpoint(&endpoint("ep_new", &[VERIFICATION_COMPLETED]), 10)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        store
            .replay_endpoint("ep_new", NOW + 1, NOW + DAY, 100)
            .await
            .unwrap(),
        Some(0)
    );
    assert_eq!(
        store
            .replay_endpoint("ep_new", NOW, NOW + DAY, 100)
            .await
            .unwrap(),
        Some(1)
    );
    assert_eq!(
        store
            .replay_endpoint("ep_none", NOW, NOW + DAY, 100)
            .await
            .unwrap(),
        None
    );
}

async fn the_console_reads_health_per_endpoint_and_attempts_per_biz_id(store: Arc<dyn Store>) {
    store
        .create_endpoint(&endpoint("ep_h", &ALL), 10)
        .await
        .unwrap()
        .unwrap();
    for i in 0..3 {
        super::notify(
            &store,
            &signed_notify(&biz(&format!("h-{i}")), "OK"),
            NOW,
            JobEffect::Keep,
        )
        .await;
    }
    store.publish_events(NOW, true, 10).await.unwrap();
    let leased = store
        .lease_deliveries("d", NOW, NOW + 60_000, 2)
        .await
        .unwrap();
    store
        .record_attempt("d", &report(&leased[0], NOW, 200, NextStep::Delivered))
        .await
        .unwrap();
    store
        .record_attempt(
            "d",
            &report(&leased[1], NOW, 502, NextStep::RetryAt(NOW + 5_000)),
        )
        .await
        .unwrap();

    let health = store.endpoint_health().await.unwrap();
    assert_eq!(health.len(), 1);
    let h = &health[0];
    assert_eq!(
        (h.pending, h.failing, h.failed, h.delivered),
        (2, 1, 0, 1),
        "{h:?}"
    );
    assert_eq!(h.failing_since, Some(NOW));
    let attempts = store
        .push_attempts(&leased[1].event.subject, 10)
        .await
        .unwrap();
    assert_eq!(attempts.len(), 1);
    assert_eq!(
        (attempts[0].status, attempts[0].outcome.as_str()),
        (Some(502), "retry")
    );
}

async fn a_member_that_fails_its_batch_leaves_no_event_and_the_others_one_each(
    store: Arc<dyn Store>,
) {
    let bad = biz("bad-rank");
    let good: Vec<String> = (0..6).map(|i| biz(&format!("good-{i}"))).collect();
    let mut deliveries: Vec<(faceid_receiver::store::NewCallback, IncomingResult)> = good
        .iter()
        .map(|id| {
            (
                delivery(CallbackKind::Notify, Some(id), true, NOW),
                signed_notify(id, "OK"),
            )
        })
        .collect();
    deliveries.insert(
        3,
        (
            delivery(CallbackKind::Notify, Some(&bad), true, NOW),
            IncomingResult {
                status_rank: 7,
                ..signed_notify(&bad, "OK")
            },
        ),
    );

    // On a current-thread runtime every call is queued before the writer runs: one batch,
    // which the bad member fails (rolled back whole) and which is retried one by one.
    let results = futures_util::future::join_all(deliveries.iter().map(|(entry, result)| {
        store.accept_signed(entry.clone(), result.clone(), JobEffect::Keep)
    }))
    .await;

    for ((_, result), accepted) in deliveries.iter().zip(&results) {
        assert_eq!(
            accepted.is_ok(),
            result.biz_id != bad,
            "{}: {:?}",
            result.biz_id,
            accepted.as_ref().err()
        );
    }
    assert!(matches!(results[3], Err(StoreError::Other(_))));
    let events = published(&store, NOW + 1).await;
    let mut completed = subjects(&events, VERIFICATION_COMPLETED);
    completed.sort();
    assert_eq!(
        completed, good,
        "one event per committed outcome, none for the rolled-back one"
    );
}

async fn endpoint_secrets_are_sealed_at_rest(engine: Engine) {
    let Some(db) = TestDatabase::create(engine).await else {
        return;
    };
    let keys = Keyring::new(Some("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="), &[]).unwrap();
    let options = ConnectOptions {
        keys,
        ..Default::default()
    };
    let store = common::connect_migrated_with(db.url(), &options).await;
    let created = store
        .create_endpoint(&endpoint("ep_sealed", &ALL), 10)
        .await
        .unwrap()
        .unwrap();
    assert!(created.secret.starts_with("whsec_"));
    store.close().await;

    let stored = common::raw_text(db.url(), "SELECT secret FROM push_endpoints").await;
    assert!(stored.starts_with("fide1:"), "sealed: {stored}");
    assert!(!stored.contains("MfKQ9r8"), "no clear secret");
    // Without the key it is refused clearly, never returned sealed.
    let without = common::connect_migrated(db.url()).await;
    assert!(matches!(
        without.endpoint("ep_sealed").await,
        Err(StoreError::Decrypt(_))
    ));
    without.close().await;
}

async fn retention_of_refusals_takes_their_events_deliveries_and_attempts(store: Arc<dyn Store>) {
    use faceid_receiver::store::PurgePlan;
    store
        .create_endpoint(&endpoint("ep_p", &ALL), 10)
        .await
        .unwrap()
        .unwrap();
    store
        .journal_rejected(&rejected(CallbackKind::Notify, None, "bad", NOW))
        .await
        .unwrap();
    let kept = biz("kept");
    super::notify(&store, &signed_notify(&kept, "OK"), NOW, JobEffect::Keep).await;
    store.publish_events(NOW, true, 10).await.unwrap();
    for d in store
        .lease_deliveries("d", NOW, NOW + 60_000, 10)
        .await
        .unwrap()
    {
        store
            .record_attempt("d", &report(&d, NOW, 500, NextStep::RetryAt(NOW + 5_000)))
            .await
            .unwrap();
    }
    let plan = |dry_run| PurgePlan {
        refused_before: Some(NOW + DAY),
        dry_run,
        now: NOW + DAY,
        ..Default::default()
    };

    store.purge(&plan(true)).await.unwrap();
    assert_eq!(
        store.events_after(0, 10).await.unwrap().len(),
        2,
        "a dry run deletes nothing"
    );
    store.purge(&plan(false)).await.unwrap();

    let events = store.events_after(0, 10).await.unwrap();
    assert_eq!(
        subjects(&events, VERIFICATION_COMPLETED),
        std::slice::from_ref(&kept)
    );
    assert!(of_kind(&events, CALLBACK_REFUSED).is_empty());
    let health = store.endpoint_health().await.unwrap();
    assert_eq!(
        health[0].pending, 1,
        "only the outcome's delivery is left: {health:?}"
    );
    assert_eq!(store.push_attempts(&kept, 10).await.unwrap().len(), 1);
}

/// `retention.push_days`: an old event goes, with its deliveries and attempts, once it is
/// published and none of its deliveries is pending; an old event still retrying or not yet
/// published stays, as does a young one.
async fn retention_of_push_events_takes_old_finished_events_and_keeps_what_is_left_to_send(
    store: Arc<dyn Store>,
) {
    use faceid_receiver::store::{PurgeCounts, PurgePlan};
    store
        .create_endpoint(&endpoint("ep_r", &[VERIFICATION_COMPLETED]), 10)
        .await
        .unwrap()
        .unwrap();
    let (delivered, gave_up, retrying) = (biz("delivered"), biz("gave-up"), biz("retrying"));
    for b in [&delivered, &gave_up, &retrying] {
        super::notify(&store, &signed_notify(b, "OK"), NOW, JobEffect::Keep).await;
    }
    store.publish_events(NOW, true, 10).await.unwrap();
    for d in store
        .lease_deliveries("d", NOW, NOW + 60_000, 10)
        .await
        .unwrap()
    {
        let next = match &d.event.subject {
            s if *s == delivered => NextStep::Delivered,
            s if *s == gave_up => NextStep::GiveUp,
            _ => NextStep::RetryAt(NOW + 5_000),
        };
        store
            .record_attempt("d", &report(&d, NOW, 500, next))
            .await
            .unwrap();
    }
    let young = biz("young");
    super::notify(
        &store,
        &signed_notify(&young, "OK"),
        NOW + 2 * DAY,
        JobEffect::Keep,
    )
    .await;
    store.publish_events(NOW + 2 * DAY, true, 10).await.unwrap();
    // Written as old as the others, not yet published.
    let unpublished = biz("unpublished");
    super::notify(
        &store,
        &signed_notify(&unpublished, "OK"),
        NOW,
        JobEffect::Keep,
    )
    .await;

    let plan = |dry_run| PurgePlan {
        push_events_before: Some(NOW + DAY),
        dry_run,
        now: NOW + 2 * DAY,
        ..Default::default()
    };
    let expected = PurgeCounts {
        push_events: 2,
        ..PurgeCounts::default()
    };
    assert_eq!(store.purge(&plan(true)).await.unwrap(), expected);
    assert_eq!(
        store.events_after(0, 10).await.unwrap().len(),
        4,
        "a dry run deletes nothing"
    );
    assert_eq!(store.push_attempts(&delivered, 10).await.unwrap().len(), 1);

    assert_eq!(store.purge(&plan(false)).await.unwrap(), expected);
    let mut left = subjects(
        &store.events_after(0, 10).await.unwrap(),
        VERIFICATION_COMPLETED,
    );
    left.sort();
    let mut kept = vec![retrying.clone(), young.clone()];
    kept.sort();
    assert_eq!(
        left, kept,
        "the finished old events went, the others stayed"
    );
    for gone in [&delivered, &gave_up] {
        assert!(
            store.push_attempts(gone, 10).await.unwrap().is_empty(),
            "{gone}"
        );
    }
    assert_eq!(store.push_attempts(&retrying, 10).await.unwrap().len(), 1);
    let health = store.endpoint_health().await.unwrap();
    assert_eq!(
        (health[0].pending, health[0].delivered, health[0].failed),
        (2, 0, 0),
        "the retrying and the young deliveries are left: {health:?}"
    );
    store.publish_events(NOW + 2 * DAY, true, 10).await.unwrap();
    let events = store.events_after(0, 10).await.unwrap();
    assert!(
        subjects(&events, VERIFICATION_COMPLETED).contains(&unpublished),
        "an unpublished event is never purged"
    );
    assert_eq!(
        store.purge(&plan(false)).await.unwrap(),
        PurgeCounts::default(),
        "nothing is due twice"
    );
}
