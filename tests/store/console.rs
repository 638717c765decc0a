//! The console's part of the store ([`ConsoleStore`]), on both engines: sessions with idle
//! and absolute expiry, the audit trail, the overview's counts, the search, and the
//! get_result call log the follow-up writes.

use std::sync::Arc;

use faceid_receiver::store::{
    CallbackKind, ConsoleEvent, FetchState, JobEffect, JobUpdate, NewSession, PurgeCounts,
    PurgePlan, SearchQuery, Store,
};

use super::{DAY, NOW, biz, fetched, new_job, notify, rejected, return_get, signed_notify};

crate::store_tests!(
    a_session_lives_until_idle_or_absolute_expiry_and_sign_out_deletes_it,
    the_audit_trail_keeps_events_newest_first,
    retention_deletes_old_audit_rows_and_counts_them,
    the_overview_counts_outcomes_liveness_refusals_and_follow_ups,
    search_filters_by_biz_id_biz_no_status_and_dates_and_pages,
    every_get_result_call_is_logged_with_its_outcome,
);

const MIN: i64 = 60_000;

fn session(id_hash: &str, at: i64) -> NewSession {
    NewSession {
        id_hash: id_hash.into(),
        token_fp: "0123456789ab".into(),
        created_at: at,
        expires_at: at + 60 * MIN,
    }
}

async fn a_session_lives_until_idle_or_absolute_expiry_and_sign_out_deletes_it(
    store: Arc<dyn Store>,
) {
    store.create_session(&session("a", NOW)).await.unwrap();
    // Seen within the idle timeout (10 min): alive, and last_seen moves.
    let seen = store
        .touch_session("a", NOW + 9 * MIN, NOW - MIN)
        .await
        .unwrap()
        .expect("alive");
    assert_eq!(seen.token_fp, "0123456789ab");
    assert_eq!(seen.last_seen_at, NOW + 9 * MIN);
    assert_eq!(seen.expires_at, NOW + 60 * MIN);
    // Idle: last seen at +9 min, cutoff at +19 min → over, and not revived.
    assert!(
        store
            .touch_session("a", NOW + 29 * MIN, NOW + 19 * MIN)
            .await
            .unwrap()
            .is_none()
    );
    // Absolute: kept busy, still over at expires_at.
    store.create_session(&session("b", NOW)).await.unwrap();
    for minute in (5..60).step_by(5) {
        let now = NOW + minute * MIN;
        assert!(
            store
                .touch_session("b", now, now - 10 * MIN)
                .await
                .unwrap()
                .is_some(),
            "alive at +{minute} min"
        );
    }
    assert!(
        store
            .touch_session("b", NOW + 60 * MIN, NOW + 55 * MIN)
            .await
            .unwrap()
            .is_none()
    );
    // Unknown ids find nothing.
    assert!(
        store
            .touch_session("nope", NOW, NOW - MIN)
            .await
            .unwrap()
            .is_none()
    );
    // Sign-out deletes; purge removes the expired ones only.
    store.create_session(&session("c", NOW)).await.unwrap();
    assert!(store.delete_session("c").await.unwrap());
    assert!(!store.delete_session("c").await.unwrap());
    assert!(
        store
            .touch_session("c", NOW + 1, NOW - MIN)
            .await
            .unwrap()
            .is_none()
    );
    store
        .create_session(&session("d", NOW + 50 * MIN))
        .await
        .unwrap();
    let purged = store
        .purge_sessions(NOW + 61 * MIN, NOW + 40 * MIN)
        .await
        .unwrap();
    assert_eq!(purged, 2, "a and b expired, d is alive");
    assert!(
        store
            .touch_session("d", NOW + 61 * MIN, NOW + 40 * MIN)
            .await
            .unwrap()
            .is_some()
    );
}

async fn the_audit_trail_keeps_events_newest_first(store: Arc<dyn Store>) {
    for (at, event) in [(NOW, "sign_in_refused"), (NOW + 1, "sign_in")] {
        store
            .audit(&ConsoleEvent {
                at,
                event: event.into(),
                token_fp: (event == "sign_in").then(|| "0123456789ab".to_owned()),
                remote_addr: Some("203.0.113.***".into()),
                biz_id: None,
                detail: (event != "sign_in").then(|| "unknown_token".to_owned()),
            })
            .await
            .unwrap();
    }
    let log = store.audit_log(10).await.unwrap();
    let events: Vec<&str> = log.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(events, ["sign_in", "sign_in_refused"]);
    assert_eq!(log[1].detail.as_deref(), Some("unknown_token"));
    assert_eq!(log[1].token_fp, None);
    assert_eq!(store.audit_log(1).await.unwrap().len(), 1);
}

async fn retention_deletes_old_audit_rows_and_counts_them(store: Arc<dyn Store>) {
    // Two rows older than the cutoff, one at it, one after it.
    let cutoff = NOW + 90 * DAY;
    for (at, event) in [
        (NOW, "sign_in_refused"),
        (cutoff - 1, "sign_in"),
        (cutoff, "reveal"),
        (cutoff + DAY, "sign_out"),
    ] {
        store
            .audit(&ConsoleEvent {
                at,
                event: event.into(),
                token_fp: None,
                remote_addr: Some("203.0.113.***".into()),
                biz_id: None,
                detail: None,
            })
            .await
            .unwrap();
    }
    let plan = |dry_run| PurgePlan {
        console_audit_before: Some(cutoff),
        dry_run,
        now: cutoff + DAY,
        ..Default::default()
    };
    let expected = PurgeCounts {
        console_audit: 2,
        ..PurgeCounts::default()
    };
    assert_eq!(store.purge(&plan(true)).await.unwrap(), expected);
    assert_eq!(
        store.audit_log(10).await.unwrap().len(),
        4,
        "a dry run deletes nothing"
    );
    assert_eq!(store.purge(&plan(false)).await.unwrap(), expected);
    let kept: Vec<String> = store
        .audit_log(10)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.event)
        .collect();
    assert_eq!(
        kept,
        ["sign_out", "reveal"],
        "rows at or after the cutoff stay"
    );
    assert_eq!(
        store.purge(&plan(false)).await.unwrap(),
        PurgeCounts::default(),
        "nothing counted twice"
    );
    // Without the cutoff (0 days), nothing goes.
    let keep = PurgePlan {
        console_audit_before: None,
        now: cutoff + 365 * DAY,
        ..Default::default()
    };
    assert_eq!(store.purge(&keep).await.unwrap(), PurgeCounts::default());
    assert_eq!(store.audit_log(10).await.unwrap().len(), 2);
}

async fn the_overview_counts_outcomes_liveness_refusals_and_follow_ups(store: Arc<dyn Store>) {
    let hour = 3_600_000;
    notify(
        &store,
        &signed_notify(&biz("ok1"), "OK"),
        NOW + 10,
        JobEffect::Keep,
    )
    .await;
    notify(
        &store,
        &signed_notify(&biz("ok2"), "OK"),
        NOW + hour + 10,
        JobEffect::Keep,
    )
    .await;
    let mut failed = signed_notify(&biz("failed"), "FAILED");
    failed.liveness = Some("FAIL".into());
    notify(&store, &failed, NOW + hour + 20, JobEffect::Keep).await;
    // Before the window: not counted.
    notify(
        &store,
        &signed_notify(&biz("old"), "OK"),
        NOW - DAY,
        JobEffect::Keep,
    )
    .await;
    return_get(&store, &biz("pending"), NOW + 30, new_job(NOW)).await;
    for (i, reason) in ["sign does not match", "sign does not match", "malformed"]
        .iter()
        .enumerate()
    {
        store
            .journal_rejected(&rejected(
                CallbackKind::Notify,
                None,
                reason,
                NOW + i as i64,
            ))
            .await
            .unwrap();
    }
    store
        .journal_rejected(&rejected(CallbackKind::Notify, None, "old", NOW - DAY))
        .await
        .unwrap();

    let counts = store.overview(NOW, hour, 3).await.unwrap();
    let outcomes: Vec<(i64, &str, i64)> = counts
        .outcomes
        .iter()
        .map(|c| (c.bucket, c.key.as_str(), c.count))
        .collect();
    assert_eq!(
        outcomes,
        [
            (NOW, "OK", 1),
            (NOW, "PENDING", 1),
            (NOW + hour, "FAILED", 1),
            (NOW + hour, "OK", 1)
        ]
    );
    let liveness: Vec<(&str, i64)> = counts
        .liveness
        .iter()
        .map(|c| (c.key.as_str(), c.count))
        .collect();
    assert_eq!(liveness, [("FAIL", 1), ("PASS", 2)]);
    let refusals: Vec<(&str, i64)> = counts
        .refusals
        .iter()
        .map(|c| (c.key.as_str(), c.count))
        .collect();
    assert_eq!(refusals, [("sign does not match", 2), ("malformed", 1)]);
    let followups: Vec<(&str, i64, i64, i64)> = counts
        .followups
        .iter()
        .map(|f| (f.state.as_str(), f.jobs, f.calls_used, f.last_call))
        .collect();
    assert_eq!(followups, [("pending", 1, 0, 0)]);

    let deliveries = store.deliveries(NOW, "sign does not match").await.unwrap();
    assert_eq!(deliveries.sign_mismatch, 2);
    assert_eq!(deliveries.verified, 3, "three verified notifies since NOW");
}

async fn search_filters_by_biz_id_biz_no_status_and_dates_and_pages(store: Arc<dyn Store>) {
    for (i, status) in ["OK", "FAILED", "OK", "OK"].iter().enumerate() {
        let mut result = signed_notify(&biz(&format!("s{i}")), status);
        result.biz_no = Some(format!("order-{i}"));
        notify(&store, &result, NOW + i as i64 * DAY, JobEffect::Keep).await;
    }
    let search = |query: SearchQuery| {
        let store = store.clone();
        async move {
            store
                .search(&SearchQuery { limit: 10, ..query })
                .await
                .unwrap()
                .into_iter()
                .map(|v| v.biz_id)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        search(SearchQuery::default()).await,
        [biz("s3"), biz("s2"), biz("s1"), biz("s0")]
    );
    let one = |field: &str| Some(field.to_owned());
    assert_eq!(
        search(SearchQuery {
            biz_id: one(&biz("s1")),
            ..Default::default()
        })
        .await,
        [biz("s1")]
    );
    assert_eq!(
        search(SearchQuery {
            biz_no: one("order-2"),
            ..Default::default()
        })
        .await,
        [biz("s2")]
    );
    assert_eq!(
        search(SearchQuery {
            status: one("FAILED"),
            ..Default::default()
        })
        .await,
        [biz("s1")]
    );
    assert_eq!(
        search(SearchQuery {
            from: Some(NOW + DAY),
            until: Some(NOW + 3 * DAY),
            ..Default::default()
        })
        .await,
        [biz("s2"), biz("s1")]
    );
    // Pages: two at a time, each once.
    let first = store
        .search(&SearchQuery {
            limit: 2,
            ..Default::default()
        })
        .await
        .unwrap();
    let last = first.last().unwrap();
    let second = store
        .search(&SearchQuery {
            limit: 2,
            after: Some((last.created_at, last.biz_id.clone())),
            ..Default::default()
        })
        .await
        .unwrap();
    let second: Vec<&str> = second.iter().map(|v| v.biz_id.as_str()).collect();
    assert_eq!(second, [biz("s1"), biz("s0")]);
}

async fn every_get_result_call_is_logged_with_its_outcome(store: Arc<dyn Store>) {
    let biz_id = biz("calls");
    return_get(&store, &biz_id, NOW, new_job(NOW)).await;
    let at = NOW + 5_000;
    let leased = store.lease_due_jobs("w", at, at + MIN, 10).await.unwrap();
    assert_eq!(leased.len(), 1);
    assert_eq!(
        store.reserve_call(&biz_id, "w", at, at, 3).await.unwrap(),
        Some(1)
    );
    let retry = JobUpdate::Retry {
        next_at: at + MIN,
        last_error: Some("TIMEOUT".into()),
    };
    store
        .end_call(&biz_id, "w", at + 1, &retry, "TIMEOUT")
        .await
        .unwrap();

    let at = at + MIN;
    store.lease_due_jobs("w", at, at + MIN, 10).await.unwrap();
    assert_eq!(
        store.reserve_call(&biz_id, "w", at, at, 3).await.unwrap(),
        Some(2)
    );
    let done = JobUpdate::Finish {
        state: FetchState::Done,
        last_error: None,
    };
    store
        .save_fetched("w", &fetched(&biz_id, "OK"), &[], &done, at + 1)
        .await
        .unwrap();

    let calls = store.calls(&biz_id, 10).await.unwrap();
    let calls: Vec<(i32, i64, &str, Option<&str>)> = calls
        .iter()
        .map(|c| {
            (
                c.call_no,
                c.called_at,
                c.outcome.as_str(),
                c.detail.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        calls,
        [
            (1, NOW + 5_001, "error", Some("TIMEOUT")),
            (2, at + 1, "result", Some("OK")),
        ]
    );
    assert!(store.calls(&biz("other"), 10).await.unwrap().is_empty());
    assert_eq!(
        store.get(&biz_id).await.unwrap().unwrap().fetch.state,
        FetchState::Done
    );
}
