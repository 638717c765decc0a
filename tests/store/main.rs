//! Behaviour suite for [`Store`]: every case runs against real SQLite and real PostgreSQL
//! (`sqlite::…` and `postgres::…`), so the two engines cannot drift apart.
//!
//! Time is passed in as epoch ms; nothing here sleeps.

#[path = "../common/mod.rs"]
mod common;

use std::collections::HashSet;
use std::sync::Arc;

use faceid_receiver::store::{
    CallbackKind, CallbackQuery, CallbackRecord, FetchInfo, FetchState, IncomingResult, JobEffect,
    JobUpdate, ListQuery, MergeOutcome, NewCallback, NewImage, NewJob, PENDING, Source, Store,
    Verification,
};

mod availability;
mod console;
mod durability;
mod encryption;
mod group_commit;
mod privacy;
mod push;
mod replay;

/// 2026-11-23T00:00:00Z.
const NOW: i64 = 1_795_392_000_000;
const DAY: i64 = 86_400_000;
const MAX_CALLS: i32 = 3;

store_tests!(
    a_duplicate_delivery_is_idempotent,
    a_late_processing_never_overwrites_a_stored_ok,
    an_unsigned_result_never_overwrites_a_signed_one_at_the_same_rank,
    a_signed_result_replaces_an_unsigned_get_result_at_the_same_rank,
    a_higher_rank_from_get_result_replaces_a_signed_processing,
    the_journal_records_every_outcome_with_its_reason_and_filters,
    a_return_get_creates_a_pending_record_and_job_and_a_second_get_resets_nothing,
    a_return_get_after_a_final_result_schedules_no_follow_up,
    a_signed_final_replaces_pending_and_cancel_pending_sets_the_job_to_none,
    concurrent_deliveries_for_one_biz_id_all_commit_and_create_once,
    ensure_creates_or_re_pends_a_job_without_refilling_the_budget,
    cursor_pagination_walks_every_record_once_across_created_at_ties,
    list_filters_by_biz_no_status_and_since,
    reserve_call_never_exceeds_max_calls_under_concurrency,
    reserve_call_is_refused_without_a_live_lease_or_outside_the_window,
    concurrent_leases_never_hand_out_the_same_job,
    leased_jobs_come_oldest_due_first_with_what_their_record_knows,
    a_lapsed_lease_can_be_re_leased_and_the_old_owner_is_locked_out,
    update_job_ignores_an_owner_that_does_not_hold_the_lease,
    save_fetched_stores_images_even_when_the_merge_is_unchanged,
    an_image_round_trips_byte_for_byte,
    schedule_fetch_keeps_calls_used_and_the_window,
);

// ---- builders ----

fn biz(tag: &str) -> String {
    format!("1795392000,{tag}")
}

fn raw_result(biz_id: &str, status: &str) -> String {
    format!(
        r#"{{"status":"{status}","biz_info":{{"biz_id":"{biz_id}","biz_no":"order-1"}},"idcard_info":{{"idcard_name":"x"}}}}"#
    )
}

fn rank(status: &str) -> i32 {
    match status {
        "NOT_STARTED" => 1,
        "PROCESSING" => 2,
        _ => 3,
    }
}

fn incoming(biz_id: &str, status: &str, source: Source, signed: bool) -> IncomingResult {
    IncomingResult {
        biz_id: biz_id.to_owned(),
        biz_no: Some("order-1".into()),
        status: status.to_owned(),
        status_rank: rank(status),
        liveness: Some("PASS".into()),
        confidence: Some(77.5),
        source,
        signed,
        result: raw_result(biz_id, status),
    }
}

fn signed_notify(biz_id: &str, status: &str) -> IncomingResult {
    incoming(biz_id, status, Source::Notify, true)
}

fn fetched(biz_id: &str, status: &str) -> IncomingResult {
    incoming(biz_id, status, Source::GetResult, false)
}

fn delivery(kind: CallbackKind, biz_id: Option<&str>, verified: bool, at: i64) -> NewCallback {
    let body = b"data=%7B%7D&sign=00".to_vec();
    NewCallback {
        kind,
        biz_id: biz_id.map(str::to_owned),
        verified,
        reason: None,
        received_at: at,
        remote_addr: Some("203.0.113.7".into()),
        content_type: Some("application/x-www-form-urlencoded".into()),
        body_sha256: "ab".repeat(32),
        body_len: body.len() as i64,
        body,
        key_id: verified.then(|| "current".to_owned()),
    }
}

fn rejected(kind: CallbackKind, biz_id: Option<&str>, reason: &str, at: i64) -> NewCallback {
    NewCallback {
        reason: Some(reason.into()),
        ..delivery(kind, biz_id, false, at)
    }
}

/// A follow-up due 5 s after `now`, inside a one-day window.
fn new_job(now: i64) -> NewJob {
    NewJob {
        next_at: now + 5_000,
        window_ends_at: now + DAY,
        return_image: 0,
    }
}

async fn notify(
    store: &Arc<dyn Store>,
    result: &IncomingResult,
    at: i64,
    job: JobEffect,
) -> (MergeOutcome, Verification) {
    let entry = delivery(CallbackKind::Notify, Some(&result.biz_id), true, at);
    store
        .accept_signed(entry, result.clone(), job)
        .await
        .expect("accept_signed")
}

async fn return_get(store: &Arc<dyn Store>, biz_id: &str, at: i64, job: NewJob) -> Verification {
    let entry = delivery(CallbackKind::ReturnGet, Some(biz_id), false, at);
    store
        .accept_return_get(&entry, biz_id, job)
        .await
        .expect("accept_return_get")
}

async fn record(store: &Arc<dyn Store>, biz_id: &str) -> Verification {
    store
        .get(biz_id)
        .await
        .expect("get")
        .expect("the record exists")
}

async fn fetch(store: &Arc<dyn Store>, biz_id: &str) -> FetchInfo {
    record(store, biz_id).await.fetch
}

/// Leases everything due at `now` for `owner` (one minute) and returns the biz_ids.
async fn lease(store: &Arc<dyn Store>, owner: &str, now: i64) -> Vec<String> {
    let jobs = store
        .lease_due_jobs(owner, now, now + 60_000, 100)
        .await
        .expect("lease");
    jobs.into_iter().map(|job| job.biz_id).collect()
}

/// A job for `biz_id` (a return GET at `NOW`) whose first turn, 5 s later, ended in `update`.
async fn job_after_a_turn(store: &Arc<dyn Store>, biz_id: &str, update: JobUpdate) {
    return_get(store, biz_id, NOW, new_job(NOW)).await;
    let owner = format!("worker-of-{biz_id}");
    let leased = lease(store, &owner, NOW + 5_000).await;
    assert!(leased.iter().any(|id| id == biz_id), "{leased:?}");
    store
        .update_job(biz_id, &owner, NOW + 5_000, &update)
        .await
        .unwrap();
}

/// The journal of `biz_id` (all of it when `None`), newest first, at most ten rows.
async fn journal(store: &Arc<dyn Store>, biz_id: Option<&str>) -> Vec<CallbackRecord> {
    store
        .callbacks(&CallbackQuery {
            biz_id: biz_id.map(str::to_owned),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap()
}

fn outcomes(records: &[CallbackRecord]) -> Vec<&str> {
    records.iter().map(|r| r.outcome.as_str()).collect()
}

fn ids(records: &[Verification]) -> Vec<&str> {
    records.iter().map(|r| r.biz_id.as_str()).collect()
}

// ---- merge rule ----

async fn a_duplicate_delivery_is_idempotent(store: Arc<dyn Store>) {
    let id = biz("dup");
    let result = signed_notify(&id, "OK");

    let (first, stored) = notify(&store, &result, NOW, JobEffect::Keep).await;
    let (second, again) = notify(&store, &result, NOW + 1_000, JobEffect::Keep).await;

    assert_eq!(first, MergeOutcome::Created);
    assert_eq!(second, MergeOutcome::Unchanged);
    assert_eq!(
        again, stored,
        "a duplicate changes nothing, not even updated_at"
    );
    assert_eq!(stored.status, "OK");
    assert_eq!(stored.biz_no.as_deref(), Some("order-1"));
    assert_eq!(stored.liveness.as_deref(), Some("PASS"));
    assert_eq!(stored.confidence, Some(77.5));
    assert_eq!((stored.source, stored.signed), (Source::Notify, true));
    assert_eq!(
        stored.result.as_deref(),
        Some(result.result.as_str()),
        "raw JSON kept byte-exact"
    );
    assert_eq!((stored.created_at, stored.updated_at), (NOW, NOW));
    assert_eq!(
        stored.fetch,
        FetchInfo::default(),
        "no job means fetch state none"
    );
    let journal = journal(&store, None).await;
    assert_eq!(outcomes(&journal), ["duplicate", "stored"]);
}

async fn a_late_processing_never_overwrites_a_stored_ok(store: Arc<dyn Store>) {
    let id = biz("late");
    notify(&store, &signed_notify(&id, "OK"), NOW, JobEffect::Keep).await;

    let (late, kept) = notify(
        &store,
        &signed_notify(&id, "PROCESSING"),
        NOW + 1,
        JobEffect::Keep,
    )
    .await;
    let (older, _) = notify(
        &store,
        &signed_notify(&id, "NOT_STARTED"),
        NOW + 2,
        JobEffect::Keep,
    )
    .await;
    let fetched_late = store
        .save_fetched(
            "w1",
            &fetched(&id, "PROCESSING"),
            &[],
            &retry_later(),
            NOW + 3,
        )
        .await
        .unwrap();

    assert_eq!(
        (late, older, fetched_late),
        (
            MergeOutcome::Unchanged,
            MergeOutcome::Unchanged,
            MergeOutcome::Unchanged
        )
    );
    assert_eq!(kept.status, "OK");
    let now = record(&store, &id).await;
    assert_eq!(now.status, "OK");
    assert_eq!(now.updated_at, NOW);
}

fn retry_later() -> JobUpdate {
    JobUpdate::Retry {
        next_at: NOW + 60_000,
        last_error: None,
    }
}

async fn an_unsigned_result_never_overwrites_a_signed_one_at_the_same_rank(store: Arc<dyn Store>) {
    let id = biz("signed-first");
    notify(&store, &signed_notify(&id, "OK"), NOW, JobEffect::Keep).await;

    let outcome = store
        .save_fetched("w1", &fetched(&id, "OK"), &[], &retry_later(), NOW + 1)
        .await
        .unwrap();

    assert_eq!(outcome, MergeOutcome::Unchanged);
    let kept = record(&store, &id).await;
    assert_eq!((kept.source, kept.signed), (Source::Notify, true));
}

async fn a_signed_result_replaces_an_unsigned_get_result_at_the_same_rank(store: Arc<dyn Store>) {
    let id = biz("fetched-first");
    let first = store
        .save_fetched("w1", &fetched(&id, "OK"), &[], &retry_later(), NOW)
        .await
        .unwrap();
    assert_eq!(first, MergeOutcome::Created);
    assert_eq!(
        (
            record(&store, &id).await.source,
            record(&store, &id).await.signed
        ),
        (Source::GetResult, false)
    );

    let (outcome, replaced) =
        notify(&store, &signed_notify(&id, "OK"), NOW + 1, JobEffect::Keep).await;

    assert_eq!(outcome, MergeOutcome::Updated);
    assert_eq!((replaced.source, replaced.signed), (Source::Notify, true));
    assert_eq!((replaced.created_at, replaced.updated_at), (NOW, NOW + 1));
}

async fn a_higher_rank_from_get_result_replaces_a_signed_processing(store: Arc<dyn Store>) {
    let id = biz("rank-up");
    notify(
        &store,
        &signed_notify(&id, "PROCESSING"),
        NOW,
        JobEffect::Keep,
    )
    .await;

    let outcome = store
        .save_fetched("w1", &fetched(&id, "OK"), &[], &retry_later(), NOW + 1)
        .await
        .unwrap();

    assert_eq!(outcome, MergeOutcome::Updated);
    let now = record(&store, &id).await;
    assert_eq!(now.status, "OK");
    assert_eq!((now.source, now.signed), (Source::GetResult, false));
}

// ---- journal ----

async fn the_journal_records_every_outcome_with_its_reason_and_filters(store: Arc<dyn Store>) {
    let (a, b) = (biz("journal-a"), biz("journal-b"));
    let forged = store
        .journal_rejected(&rejected(
            CallbackKind::Notify,
            Some(&a),
            "bad signature",
            NOW,
        ))
        .await
        .unwrap();
    notify(&store, &signed_notify(&a, "OK"), NOW + 1, JobEffect::Keep).await;
    notify(&store, &signed_notify(&a, "OK"), NOW + 2, JobEffect::Keep).await;
    return_get(&store, &b, NOW + 3, new_job(NOW + 3)).await;
    let last = store
        .journal_rejected(&rejected(
            CallbackKind::ReturnGet,
            None,
            "the biz_id query parameter is missing",
            NOW + 4,
        ))
        .await
        .unwrap();

    let journal = store
        .callbacks(&CallbackQuery {
            limit: 50,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        outcomes(&journal),
        ["rejected", "pending", "duplicate", "stored", "rejected"],
        "newest first"
    );
    assert_eq!((journal[0].id, journal[4].id), (last, forged));
    assert_eq!(journal[4].reason.as_deref(), Some("bad signature"));
    assert_eq!(
        journal[4].biz_id.as_deref(),
        Some(a.as_str()),
        "a refusal names the claimed biz_id"
    );
    assert_eq!(journal[0].biz_id, None);
    assert!(
        journal[1..4].iter().all(|r| r.reason.is_none()),
        "accepted deliveries carry no reason"
    );
    assert_eq!(journal[1].kind, "return_get");
    assert!(!journal[1].verified, "a return GET is never verified");
    assert!(journal[2].verified && journal[3].verified);
    assert_eq!(journal[3].kind, "notify");
    assert_eq!(journal[3].received_at, NOW + 1);
    assert_eq!(journal[3].remote_addr.as_deref(), Some("203.0.113.7"));
    assert_eq!(
        journal[3].content_type.as_deref(),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(
        (journal[3].body_sha256.as_str(), journal[3].body_len),
        ("ab".repeat(32).as_str(), 19)
    );

    let query = |biz_id: Option<&str>,
                 verified: Option<bool>,
                 before_id: Option<i64>,
                 limit: i64| CallbackQuery {
        biz_id: biz_id.map(str::to_owned),
        verified,
        before_id,
        limit,
    };
    let cases = [
        (
            "by biz_id",
            query(Some(&a), None, None, 50),
            vec!["duplicate", "stored", "rejected"],
        ),
        (
            "verified only",
            query(None, Some(true), None, 50),
            vec!["duplicate", "stored"],
        ),
        (
            "unverified only",
            query(None, Some(false), None, 50),
            vec!["rejected", "pending", "rejected"],
        ),
        (
            "before an id",
            query(None, None, Some(journal[2].id), 50),
            vec!["stored", "rejected"],
        ),
        (
            "limited",
            query(None, None, None, 2),
            vec!["rejected", "pending"],
        ),
        (
            "combined",
            query(Some(&a), Some(false), None, 50),
            vec!["rejected"],
        ),
    ];
    for (what, query, expected) in cases {
        let rows = store.callbacks(&query).await.unwrap();
        assert_eq!(outcomes(&rows), expected, "{what}");
    }
}

// ---- return GET and job effects ----

async fn a_return_get_creates_a_pending_record_and_job_and_a_second_get_resets_nothing(
    store: Arc<dyn Store>,
) {
    let id = biz("return-get");
    let job = new_job(NOW);

    let pending = return_get(&store, &id, NOW, job).await;

    assert_eq!(pending.status, PENDING);
    assert_eq!(
        (pending.source, pending.signed, pending.result.as_deref()),
        (Source::Return, false, None)
    );
    assert_eq!(pending.biz_no, None);
    assert_eq!(
        pending.fetch,
        FetchInfo {
            state: FetchState::Pending,
            calls_used: 0,
            next_at: Some(job.next_at),
            last_error: None
        }
    );

    // A worker spends one call, then the browser hits the return URL again, later.
    assert_eq!(lease(&store, "w1", job.next_at).await, [id.as_str()]);
    assert_eq!(
        store
            .reserve_call(&id, "w1", job.next_at, job.next_at, MAX_CALLS)
            .await
            .unwrap(),
        Some(1)
    );
    let again = return_get(&store, &id, NOW + 60_000, new_job(NOW + 60_000)).await;

    assert_eq!(again.status, PENDING);
    assert_eq!(again.created_at, NOW);
    assert_eq!(again.fetch.state, FetchState::Pending);
    assert_eq!(again.fetch.calls_used, 1, "the budget is never refilled");
    assert_eq!(
        again.fetch.next_at,
        Some(job.next_at),
        "the job is not rescheduled"
    );
}

async fn a_return_get_after_a_final_result_schedules_no_follow_up(store: Arc<dyn Store>) {
    let (done, running) = (biz("known-final"), biz("known-processing"));
    notify(
        &store,
        &signed_notify(&done, "FAILED"),
        NOW,
        JobEffect::CancelPending,
    )
    .await;
    notify(
        &store,
        &signed_notify(&running, "PROCESSING"),
        NOW,
        JobEffect::Keep,
    )
    .await;

    let after_final = return_get(&store, &done, NOW + 1_000, new_job(NOW + 1_000)).await;
    let after_processing = return_get(&store, &running, NOW + 1_000, new_job(NOW + 1_000)).await;

    assert_eq!(
        after_final.status, "FAILED",
        "the GET does not downgrade the record"
    );
    assert_eq!(
        after_final.fetch,
        FetchInfo::default(),
        "a final result needs no follow-up"
    );
    assert_eq!(after_processing.status, "PROCESSING");
    assert_eq!(
        after_processing.fetch.state,
        FetchState::Pending,
        "a non-final result is followed up"
    );
}

async fn a_signed_final_replaces_pending_and_cancel_pending_sets_the_job_to_none(
    store: Arc<dyn Store>,
) {
    let id = biz("cancel");
    return_get(&store, &id, NOW, new_job(NOW)).await;

    let (outcome, stored) = notify(
        &store,
        &signed_notify(&id, "OK"),
        NOW + 1,
        JobEffect::CancelPending,
    )
    .await;

    assert_eq!(
        outcome,
        MergeOutcome::Created,
        "the first real result, though a PENDING row existed"
    );
    assert_eq!(stored.status, "OK");
    assert_eq!(stored.biz_no.as_deref(), Some("order-1"));
    assert_eq!((stored.created_at, stored.updated_at), (NOW, NOW + 1));
    assert_eq!(stored.fetch.state, FetchState::None);
    assert_eq!(stored.fetch.next_at, None);
    assert!(
        lease(&store, "w1", NOW + DAY / 2).await.is_empty(),
        "a cancelled job is never leased"
    );
    let journal = journal(&store, Some(id.as_str())).await;
    assert_eq!(outcomes(&journal), ["stored", "pending"]);
}

async fn ensure_creates_or_re_pends_a_job_without_refilling_the_budget(store: Arc<dyn Store>) {
    // No job yet: Ensure creates one.
    let fresh = biz("ensure-fresh");
    let job = new_job(NOW);
    let (_, created) = notify(
        &store,
        &signed_notify(&fresh, "OK"),
        NOW,
        JobEffect::Ensure(job),
    )
    .await;
    assert_eq!(
        created.fetch,
        FetchInfo {
            state: FetchState::Pending,
            calls_used: 0,
            next_at: Some(job.next_at),
            last_error: None
        }
    );

    // A job cancelled after spending a call: Ensure wakes it with the call still spent.
    let spent = biz("ensure-spent");
    return_get(&store, &spent, NOW, new_job(NOW)).await;
    lease(&store, "w1", NOW + 5_000).await;
    assert_eq!(
        store
            .reserve_call(&spent, "w1", NOW + 5_000, NOW + 5_000, MAX_CALLS)
            .await
            .unwrap(),
        Some(1)
    );
    let (_, cancelled) = notify(
        &store,
        &signed_notify(&spent, "OK"),
        NOW + 6_000,
        JobEffect::CancelPending,
    )
    .await;
    assert_eq!(cancelled.fetch.state, FetchState::None);
    let later = new_job(NOW + 7_000);
    let (_, repended) = notify(
        &store,
        &signed_notify(&spent, "OK"),
        NOW + 7_000,
        JobEffect::Ensure(later),
    )
    .await;
    assert_eq!(
        repended.fetch,
        FetchInfo {
            state: FetchState::Pending,
            calls_used: 1,
            next_at: Some(later.next_at),
            last_error: None
        }
    );

    // A pending job held far ahead (the last call, kept for a final status) is brought
    // forward; one already due sooner is left alone.
    let held = biz("ensure-held");
    let hold = JobUpdate::Retry {
        next_at: NOW + DAY / 2,
        last_error: None,
    };
    job_after_a_turn(&store, &held, hold).await;
    let (_, forward) = notify(
        &store,
        &signed_notify(&held, "OK"),
        NOW + 9_000,
        JobEffect::Ensure(new_job(NOW + 9_000)),
    )
    .await;
    assert_eq!(
        (forward.fetch.state, forward.fetch.next_at),
        (FetchState::Pending, Some(NOW + 14_000))
    );
    let (_, not_later) = notify(
        &store,
        &signed_notify(&held, "OK"),
        NOW + 20_000,
        JobEffect::Ensure(new_job(NOW + 20_000)),
    )
    .await;
    assert_eq!(not_later.fetch.next_at, Some(NOW + 14_000), "never later");

    // A finished job stays finished.
    let done = biz("ensure-done");
    let finish = JobUpdate::Finish {
        state: FetchState::Done,
        last_error: None,
    };
    job_after_a_turn(&store, &done, finish).await;
    let (_, kept) = notify(
        &store,
        &signed_notify(&done, "OK"),
        NOW + 8_000,
        JobEffect::Ensure(new_job(NOW + 8_000)),
    )
    .await;
    assert_eq!(kept.fetch.state, FetchState::Done);
}

async fn concurrent_deliveries_for_one_biz_id_all_commit_and_create_once(store: Arc<dyn Store>) {
    // Browser reloads and notify retries racing each other: every delivery must commit (on
    // SQLite every write transaction takes the write lock up front, so none fails with
    // SQLITE_BUSY), and exactly one creates the record.
    let id = biz("race");
    let tasks: Vec<_> = (0..20_i64)
        .map(|i| {
            let (store, id) = (store.clone(), id.clone());
            tokio::spawn(async move {
                if i % 2 == 0 {
                    let entry = delivery(CallbackKind::ReturnGet, Some(&id), false, NOW + i);
                    store
                        .accept_return_get(&entry, &id, new_job(NOW + i))
                        .await
                        .map(|_| None)
                } else {
                    let entry = delivery(CallbackKind::Notify, Some(&id), true, NOW + i);
                    let result = signed_notify(&id, "OK");
                    store
                        .accept_signed(entry, result, JobEffect::CancelPending)
                        .await
                        .map(|(outcome, _)| Some(outcome))
                }
            })
        })
        .collect();
    let mut merges = Vec::new();
    for task in tasks {
        merges.extend(task.await.unwrap().expect("every delivery commits"));
    }

    assert_eq!(
        merges
            .iter()
            .filter(|m| **m == MergeOutcome::Created)
            .count(),
        1
    );
    assert_eq!(
        merges
            .iter()
            .filter(|m| **m == MergeOutcome::Unchanged)
            .count(),
        9
    );
    let stored = record(&store, &id).await;
    assert_eq!(stored.status, "OK");
    let journal = store
        .callbacks(&CallbackQuery {
            limit: 50,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(journal.len(), 20);
    assert_eq!(journal.iter().filter(|r| r.outcome == "stored").count(), 1);
}

// ---- listing ----

async fn cursor_pagination_walks_every_record_once_across_created_at_ties(store: Arc<dyn Store>) {
    // 25 records, created in groups of four sharing a created_at, inserted out of order.
    let mut expected = HashSet::new();
    for i in 0..25_i64 {
        let id = biz(&format!("page-{:02}", (i * 7) % 25));
        let created_at = NOW + (i / 4) * 1_000;
        notify(
            &store,
            &signed_notify(&id, "OK"),
            created_at,
            JobEffect::Keep,
        )
        .await;
        expected.insert((created_at, id));
    }

    let mut walked: Vec<(i64, String)> = Vec::new();
    let mut after = None;
    for _page in 0..25 {
        let query = ListQuery {
            limit: 4,
            after: after.clone(),
            ..Default::default()
        };
        let page = store.list(&query).await.unwrap();
        assert!(page.len() <= 4);
        walked.extend(page.iter().map(|r| (r.created_at, r.biz_id.clone())));
        match page.last() {
            Some(last) => after = Some((last.created_at, last.biz_id.clone())),
            None => break,
        }
    }

    assert_eq!(walked.len(), 25, "no duplicates and no gaps");
    assert_eq!(walked.iter().cloned().collect::<HashSet<_>>(), expected);
    assert!(
        walked.windows(2).all(|w| w[0] > w[1]),
        "strictly newest first by (created_at, biz_id): {walked:?}"
    );
}

async fn list_filters_by_biz_no_status_and_since(store: Arc<dyn Store>) {
    let with = |id: &str, biz_no: &str, status: &str| IncomingResult {
        biz_no: Some(biz_no.to_owned()),
        ..signed_notify(id, status)
    };
    let (a, b, c, d) = (biz("list-a"), biz("list-b"), biz("list-c"), biz("list-d"));
    notify(&store, &with(&a, "order-1", "OK"), NOW, JobEffect::Keep).await;
    notify(
        &store,
        &with(&b, "order-1", "FAILED"),
        NOW + 1_000,
        JobEffect::Keep,
    )
    .await;
    notify(
        &store,
        &with(&c, "order-2", "OK"),
        NOW + 2_000,
        JobEffect::Keep,
    )
    .await;
    return_get(&store, &d, NOW + 3_000, new_job(NOW + 3_000)).await;

    let query =
        |biz_no: Option<&str>, status: Option<&str>, since: Option<i64>, limit: i64| ListQuery {
            biz_no: biz_no.map(str::to_owned),
            status: status.map(str::to_owned),
            since,
            limit,
            after: None,
        };
    let cases = [
        (
            "everything",
            query(None, None, None, 10),
            vec![&d, &c, &b, &a],
        ),
        (
            "by biz_no",
            query(Some("order-1"), None, None, 10),
            vec![&b, &a],
        ),
        ("by status", query(None, Some("OK"), None, 10), vec![&c, &a]),
        (
            "pending ones",
            query(None, Some(PENDING), None, 10),
            vec![&d],
        ),
        (
            "since is inclusive",
            query(None, None, Some(NOW + 1_000), 10),
            vec![&d, &c, &b],
        ),
        (
            "combined",
            query(Some("order-1"), Some("OK"), Some(NOW), 10),
            vec![&a],
        ),
        ("limited", query(None, None, None, 1), vec![&d]),
        (
            "nothing matches",
            query(Some("order-9"), None, None, 10),
            vec![],
        ),
    ];
    for (what, query, expected) in cases {
        let rows = store.list(&query).await.unwrap();
        assert_eq!(
            ids(&rows),
            expected.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
            "{what}"
        );
    }
}

// ---- budget and leases ----

async fn reserve_call_never_exceeds_max_calls_under_concurrency(store: Arc<dyn Store>) {
    let id = biz("budget");
    return_get(&store, &id, NOW, new_job(NOW)).await;
    let due = NOW + 5_000;
    assert_eq!(lease(&store, "w1", due).await, [id.as_str()]);

    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let (store, id) = (store.clone(), id.clone());
            tokio::spawn(async move { store.reserve_call(&id, "w1", due, due, MAX_CALLS).await })
        })
        .collect();
    let mut granted = Vec::new();
    for task in tasks {
        if let Some(calls_used) = task.await.unwrap().expect("reserve_call") {
            granted.push(calls_used);
        }
    }

    granted.sort();
    assert_eq!(granted, [1, 2, 3], "exactly max_calls reservations succeed");
    assert_eq!(fetch(&store, &id).await.calls_used, 3);
    assert_eq!(
        store
            .reserve_call(&id, "w1", due, due, MAX_CALLS)
            .await
            .unwrap(),
        None
    );
}

async fn reserve_call_is_refused_without_a_live_lease_or_outside_the_window(store: Arc<dyn Store>) {
    let id = biz("refused");
    let job = NewJob {
        next_at: NOW,
        window_ends_at: NOW + 10_000,
        return_image: 0,
    };
    return_get(&store, &id, NOW, job).await;
    let refused = |owner: &'static str, now: i64, max_calls: i32| {
        let (store, id) = (store.clone(), id.clone());
        async move {
            store
                .reserve_call(&id, owner, now, now, max_calls)
                .await
                .unwrap()
        }
    };

    assert_eq!(
        refused("w1", NOW, MAX_CALLS).await,
        None,
        "nobody holds a lease"
    );
    store
        .lease_due_jobs("w1", NOW, NOW + 60_000, 10)
        .await
        .unwrap();
    assert_eq!(
        refused("w2", NOW, MAX_CALLS).await,
        None,
        "another owner's lease"
    );
    assert_eq!(
        refused("w1", NOW + 10_000, MAX_CALLS).await,
        None,
        "the window has closed"
    );
    assert_eq!(
        refused("w1", NOW + 60_000, MAX_CALLS).await,
        None,
        "the lease has expired"
    );
    // A live lease that would end before the call must have ended (at `hold_until`): nothing
    // is counted; one that lasts beyond it is enough.
    for (hold_until, why) in [
        (NOW + 60_000, "the lease ends as the call must have ended"),
        (
            NOW + 90_000,
            "the lease ends before the call must have ended",
        ),
    ] {
        assert_eq!(
            store
                .reserve_call(&id, "w1", NOW + 1_000, hold_until, MAX_CALLS)
                .await
                .unwrap(),
            None,
            "{why}"
        );
    }
    assert_eq!(
        store.get(&id).await.unwrap().unwrap().fetch.calls_used,
        0,
        "refusals count nothing"
    );
    assert_eq!(
        refused("w1", NOW + 9_999, MAX_CALLS).await,
        Some(1),
        "live lease, inside the window"
    );
    assert_eq!(
        refused("w1", NOW + 9_999, 1).await,
        None,
        "a smaller max_calls is honoured"
    );
    let finish = JobUpdate::Finish {
        state: FetchState::Failed,
        last_error: Some("boom".into()),
    };
    store
        .update_job(&id, "w1", NOW + 9_999, &finish)
        .await
        .unwrap();
    assert_eq!(
        refused("w1", NOW + 9_999, MAX_CALLS).await,
        None,
        "the job is no longer pending"
    );
    assert_eq!(fetch(&store, &id).await.calls_used, 1);
}

async fn concurrent_leases_never_hand_out_the_same_job(store: Arc<dyn Store>) {
    let job = NewJob {
        next_at: NOW,
        window_ends_at: NOW + DAY,
        return_image: 0,
    };
    let all_jobs: HashSet<String> = (0..50).map(|i| biz(&format!("lease-{i:02}"))).collect();
    for id in &all_jobs {
        store.schedule_fetch(id, job, NOW).await.unwrap();
    }

    let tasks: Vec<_> = (0..20)
        .map(|worker| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .lease_due_jobs(&format!("w{worker}"), NOW, NOW + 60_000, 4)
                    .await
            })
        })
        .collect();
    let mut leased = Vec::new();
    for task in tasks {
        let jobs = task.await.unwrap().expect("lease_due_jobs");
        assert!(jobs.len() <= 4);
        assert!(
            jobs.iter()
                .all(|j| j.lease_until == NOW + 60_000 && j.calls_used == 0)
        );
        leased.extend(jobs.into_iter().map(|j| j.biz_id));
    }
    let unique: HashSet<String> = leased.iter().cloned().collect();
    assert_eq!(unique.len(), leased.len(), "a job was leased twice");

    // Whatever the concurrent round left (SKIP LOCKED may return short pages) goes to one
    // more owner; together they cover every job exactly once.
    let rest = lease(&store, "sweeper", NOW).await;
    assert!(
        rest.iter().all(|id| !unique.contains(id)),
        "the sweeper got a job already leased"
    );
    let covered: HashSet<String> = unique.into_iter().chain(rest).collect();
    assert_eq!(covered, all_jobs);
    assert!(
        lease(&store, "late", NOW).await.is_empty(),
        "every job is held"
    );
}

async fn leased_jobs_come_oldest_due_first_with_what_their_record_knows(store: Arc<dyn Store>) {
    let job_due = |at| NewJob {
        next_at: at,
        ..new_job(NOW)
    };
    let (pending, processing, fresh) = (biz("know-0"), biz("know-2"), biz("know-late"));
    return_get(&store, &fresh, NOW, job_due(NOW + 3_000)).await;
    return_get(&store, &pending, NOW, job_due(NOW + 1_000)).await;
    return_get(&store, &processing, NOW, job_due(NOW + 2_000)).await;
    notify(
        &store,
        &signed_notify(&processing, "PROCESSING"),
        NOW,
        JobEffect::Keep,
    )
    .await;
    // A RAW-style key with a job but no record yet knows nothing.
    let bare = "raw:know-nothing";
    store
        .schedule_fetch(bare, job_due(NOW + 500), NOW)
        .await
        .unwrap();

    let leased = store
        .lease_due_jobs("w", NOW + 10_000, NOW + 70_000, 10)
        .await
        .unwrap();

    let seen: Vec<(&str, i64, i32)> = leased
        .iter()
        .map(|job| (job.biz_id.as_str(), job.next_at, job.known_rank))
        .collect();
    assert_eq!(
        seen,
        [
            (bare, NOW + 500, 0),
            (pending.as_str(), NOW + 1_000, 0),
            (processing.as_str(), NOW + 2_000, 2),
            (fresh.as_str(), NOW + 3_000, 0),
        ],
        "oldest due first, each with its record's status rank"
    );
    // Only as many as asked, still the oldest due.
    let later = biz("know-later");
    return_get(&store, &later, NOW, job_due(NOW + 4_000)).await;
    let one = store
        .lease_due_jobs("w2", NOW + 80_000, NOW + 140_000, 1)
        .await
        .unwrap();
    assert_eq!(one.len(), 1);
    assert_eq!(
        one[0].biz_id, bare,
        "the lapsed leases come back oldest due first"
    );
}

async fn a_lapsed_lease_can_be_re_leased_and_the_old_owner_is_locked_out(store: Arc<dyn Store>) {
    let id = biz("lapse");
    let job = new_job(NOW);
    return_get(&store, &id, NOW, job).await;
    let t = job.next_at;

    let first = store.lease_due_jobs("w1", t, t + 1_000, 10).await.unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!(
        (
            first[0].lease_until,
            first[0].next_at,
            first[0].window_ends_at
        ),
        (t + 1_000, t, job.window_ends_at)
    );
    assert!(
        store
            .lease_due_jobs("w2", t + 500, t + 1_500, 10)
            .await
            .unwrap()
            .is_empty(),
        "the lease is live"
    );
    let second = store
        .lease_due_jobs("w2", t + 1_001, t + 2_001, 10)
        .await
        .unwrap();
    assert_eq!(
        second.iter().map(|j| j.biz_id.as_str()).collect::<Vec<_>>(),
        [id.as_str()]
    );

    assert_eq!(
        store
            .reserve_call(&id, "w1", t + 1_001, t + 1_001, MAX_CALLS)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .reserve_call(&id, "w2", t + 1_001, t + 1_001, MAX_CALLS)
            .await
            .unwrap(),
        Some(1)
    );
}

async fn update_job_ignores_an_owner_that_does_not_hold_the_lease(store: Arc<dyn Store>) {
    let id = biz("owner");
    return_get(&store, &id, NOW, new_job(NOW)).await;
    let t = NOW + 5_000;
    lease(&store, "w1", t).await;

    let finish = JobUpdate::Finish {
        state: FetchState::Failed,
        last_error: Some("stolen".into()),
    };
    store.update_job(&id, "w2", t, &finish).await.unwrap();
    assert_eq!(
        fetch(&store, &id).await.state,
        FetchState::Pending,
        "a non-owner changes nothing"
    );
    assert_eq!(
        store
            .reserve_call(&id, "w1", t, t, MAX_CALLS)
            .await
            .unwrap(),
        Some(1),
        "w1 still holds the lease"
    );

    let retry = JobUpdate::Retry {
        next_at: t + 60_000,
        last_error: Some("upstream 500".into()),
    };
    store.update_job(&id, "w1", t, &retry).await.unwrap();
    let info = fetch(&store, &id).await;
    assert_eq!(
        info,
        FetchInfo {
            state: FetchState::Pending,
            calls_used: 1,
            next_at: Some(t + 60_000),
            last_error: Some("upstream 500".into())
        }
    );
    assert!(
        lease(&store, "w3", t + 59_999).await.is_empty(),
        "not due yet"
    );
    assert_eq!(
        lease(&store, "w3", t + 60_000).await,
        [id.as_str()],
        "the retry cleared the lease"
    );

    let finish = JobUpdate::Finish {
        state: FetchState::Exhausted,
        last_error: Some("budget spent".into()),
    };
    store
        .update_job(&id, "w3", t + 60_000, &finish)
        .await
        .unwrap();
    let info = fetch(&store, &id).await;
    assert_eq!(
        info,
        FetchInfo {
            state: FetchState::Exhausted,
            calls_used: 1,
            next_at: None,
            last_error: Some("budget spent".into())
        }
    );
}

// ---- fetched results and images ----

fn jpeg(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

async fn save_fetched_stores_images_even_when_the_merge_is_unchanged(store: Arc<dyn Store>) {
    let id = biz("images");
    return_get(&store, &id, NOW, new_job(NOW)).await;
    notify(
        &store,
        &signed_notify(&id, "OK"),
        NOW + 1,
        JobEffect::Ensure(new_job(NOW + 1)),
    )
    .await;
    let t = NOW + 6_000;
    assert_eq!(lease(&store, "w1", t).await, [id.as_str()]);
    assert_eq!(
        store
            .reserve_call(&id, "w1", t, t, MAX_CALLS)
            .await
            .unwrap(),
        Some(1)
    );
    let images = [
        NewImage {
            name: "image_env".into(),
            jpeg: jpeg(1, 300),
        },
        NewImage {
            name: "image_best".into(),
            jpeg: jpeg(2, 200),
        },
    ];
    let done = JobUpdate::Finish {
        state: FetchState::Done,
        last_error: None,
    };

    let outcome = store
        .save_fetched("w1", &fetched(&id, "OK"), &images, &done, t)
        .await
        .unwrap();

    assert_eq!(
        outcome,
        MergeOutcome::Unchanged,
        "the signed notify keeps the result"
    );
    let after = record(&store, &id).await;
    assert_eq!((after.source, after.signed), (Source::Notify, true));
    assert_eq!(after.images, ["image_best", "image_env"]);
    assert_eq!(
        after.fetch,
        FetchInfo {
            state: FetchState::Done,
            calls_used: 1,
            next_at: None,
            last_error: None
        }
    );
    assert_eq!(
        store.image(&id, "image_env").await.unwrap(),
        Some(jpeg(1, 300))
    );

    // Another turn brings one more image: the names are the union.
    let more = [NewImage {
        name: "image_idcard_front".into(),
        jpeg: jpeg(3, 10),
    }];
    store
        .save_fetched("w1", &fetched(&id, "OK"), &more, &done, t + 1)
        .await
        .unwrap();
    assert_eq!(
        record(&store, &id).await.images,
        ["image_best", "image_env", "image_idcard_front"]
    );
}

async fn an_image_round_trips_byte_for_byte(store: Arc<dyn Store>) {
    let id = biz("bytes");
    let bytes: Vec<u8> = (0..=255u8)
        .chain([0, 0, 255, 0xd8, 0xff])
        .cycle()
        .take(70_000)
        .collect();
    let image = NewImage {
        name: "image_best".into(),
        jpeg: bytes.clone(),
    };
    let done = JobUpdate::Finish {
        state: FetchState::Done,
        last_error: None,
    };

    store
        .save_fetched("w1", &fetched(&id, "OK"), &[image], &done, NOW)
        .await
        .unwrap();

    assert_eq!(store.image(&id, "image_best").await.unwrap(), Some(bytes));
    assert_eq!(store.image(&id, "image_env").await.unwrap(), None);
    assert_eq!(
        store.image(&biz("unknown"), "image_best").await.unwrap(),
        None
    );
    assert_eq!(record(&store, &id).await.images, ["image_best"]);
}

async fn schedule_fetch_keeps_calls_used_and_the_window(store: Arc<dyn Store>) {
    // Unknown biz_id: the job is created.
    let fresh = biz("schedule-fresh");
    let info = store
        .schedule_fetch(&fresh, new_job(NOW), NOW)
        .await
        .unwrap();
    assert_eq!(
        info,
        FetchInfo {
            state: FetchState::Pending,
            calls_used: 0,
            next_at: Some(NOW + 5_000),
            last_error: None
        }
    );

    // A job that spent two calls and failed: rescheduling keeps both calls and the window.
    let id = biz("schedule");
    let first = NewJob {
        next_at: NOW,
        window_ends_at: NOW + 100_000,
        return_image: 0,
    };
    return_get(&store, &id, NOW, first).await;
    lease(&store, "w1", NOW).await;
    store
        .reserve_call(&id, "w1", NOW, NOW, MAX_CALLS)
        .await
        .unwrap();
    store
        .reserve_call(&id, "w1", NOW, NOW, MAX_CALLS)
        .await
        .unwrap();
    let failed = JobUpdate::Finish {
        state: FetchState::Failed,
        last_error: Some("upstream 500".into()),
    };
    store.update_job(&id, "w1", NOW, &failed).await.unwrap();

    let wider = NewJob {
        next_at: NOW + 100_000,
        window_ends_at: NOW + 500_000,
        return_image: 0,
    };
    let info = store
        .schedule_fetch(&id, wider, NOW + 50_000)
        .await
        .unwrap();

    assert_eq!(
        (info.state, info.calls_used, info.next_at),
        (FetchState::Pending, 2, Some(NOW + 100_000))
    );
    assert_eq!(fetch(&store, &id).await, info);
    assert!(
        lease(&store, "w2", NOW + 100_000).await.contains(&id),
        "pending and due again"
    );
    assert_eq!(
        store
            .reserve_call(&id, "w2", NOW + 100_000, NOW + 100_000, MAX_CALLS)
            .await
            .unwrap(),
        None,
        "the original window still applies"
    );
}
