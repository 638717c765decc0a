//! Group commit (`database.group_commit`, on by default), on both engines: concurrent signed
//! deliveries are each acknowledged with their own record and only once stored; one batch
//! applies its members as one transaction per member would (`batch::…`, on a current-thread
//! runtime, where [`accept_together`] forms one batch); a member the database refuses fails
//! alone.

use std::sync::Arc;

use faceid_receiver::store::{
    CallbackKind, CallbackQuery, ConnectOptions, FetchState, IncomingResult, JobEffect,
    MergeOutcome, NewCallback, NewJob, Store, StoreError, StoreResult, Verification,
};

use super::{
    DAY, NOW, biz, delivery, fetch, fetched, journal, new_job, outcomes, record, signed_notify,
};
use crate::availability::assert_unavailable;
use crate::common::{self, Engine, TestDatabase};

crate::store_tests! {
    test: #[tokio::test(flavor = "multi_thread", worker_threads = 2)],
    stores: [concurrent_signed_deliveries_are_each_acked_with_their_own_record],
    engines: [deliveries_racing_a_close_are_acked_only_when_stored],
}

/// One batch per case: on a current-thread runtime [`accept_together`] queues every call
/// before a group-commit writer runs.
mod batch {
    use super::*;

    crate::store_tests! {
        test: #[tokio::test(flavor = "current_thread")],
        stores: [
            one_batch_applies_deliveries_for_one_biz_id_in_order,
            a_member_with_a_data_error_fails_alone_and_the_rest_of_its_batch_is_acked,
        ],
        engines: [
            one_batch_equals_one_transaction_per_delivery,
            a_batch_without_a_repeated_biz_id_equals_one_transaction_per_delivery,
        ],
    }
}

async fn concurrent_signed_deliveries_are_each_acked_with_their_own_record(store: Arc<dyn Store>) {
    let tasks: Vec<_> = (0..64_i64)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let id = biz(&format!("many-{i}"));
                let status = if i % 2 == 0 { "OK" } else { "PROCESSING" };
                let entry = delivery(CallbackKind::Notify, Some(&id), true, NOW + i);
                let accepted = store
                    .accept_signed(entry, signed_notify(&id, status), JobEffect::Keep)
                    .await;
                (id, status, accepted)
            })
        })
        .collect();
    for task in tasks {
        let (id, status, accepted) = task.await.unwrap();
        let (outcome, stored) = accepted.expect("every delivery commits");
        assert_eq!(outcome, MergeOutcome::Created, "{id}");
        assert_eq!(
            (stored.biz_id.as_str(), stored.status.as_str()),
            (id.as_str(), status)
        );
        assert_eq!(record(&store, &id).await, stored, "acked means stored");
        let journal = journal(&store, Some(id.as_str())).await;
        assert_eq!(outcomes(&journal), ["stored"], "{id}: journaled once");
    }
}

/// Accepts every delivery "at once": on a current-thread runtime `join_all` polls each call
/// once, queueing it, while the first caller (which writes the batch) yields before taking
/// its batch, so they form one batch (up to `group_commit_max`, 64 by default).
async fn accept_together(
    store: &Arc<dyn Store>,
    deliveries: &[(NewCallback, IncomingResult, JobEffect)],
) -> Vec<StoreResult<(MergeOutcome, Verification)>> {
    futures_util::future::join_all(
        deliveries
            .iter()
            .map(|(entry, result, job)| store.accept_signed(entry.clone(), result.clone(), *job)),
    )
    .await
}

fn signed_delivery(id: &str, status: &str, at: i64) -> (NewCallback, IncomingResult, JobEffect) {
    (
        delivery(CallbackKind::Notify, Some(id), true, at),
        signed_notify(id, status),
        JobEffect::CancelPending,
    )
}

async fn one_batch_applies_deliveries_for_one_biz_id_in_order(store: Arc<dyn Store>) {
    let (x, y) = (biz("order-x"), biz("order-y"));
    let deliveries = [
        signed_delivery(&x, "PROCESSING", NOW),
        signed_delivery(&y, "OK", NOW + 1),
        signed_delivery(&x, "OK", NOW + 2),
        signed_delivery(&x, "PROCESSING", NOW + 3),
        signed_delivery(&x, "OK", NOW + 4),
    ];

    let results = accept_together(&store, &deliveries).await;

    let accepted: Vec<_> = results
        .into_iter()
        .map(|r| r.expect("every delivery commits"))
        .map(|(outcome, record)| (outcome, record.biz_id, record.status, record.updated_at))
        .collect();
    assert_eq!(
        accepted,
        [
            (MergeOutcome::Created, x.clone(), "PROCESSING".into(), NOW),
            (MergeOutcome::Created, y.clone(), "OK".into(), NOW + 1),
            (MergeOutcome::Updated, x.clone(), "OK".into(), NOW + 2),
            (MergeOutcome::Unchanged, x.clone(), "OK".into(), NOW + 2),
            (MergeOutcome::Unchanged, x.clone(), "OK".into(), NOW + 2),
        ],
        "applied in submission order, each answered with the record its own writes left"
    );
    let journal = journal(&store, Some(x.as_str())).await;
    let received: Vec<_> = journal.iter().map(|r| r.received_at).collect();
    assert_eq!(received, [NOW + 4, NOW + 3, NOW + 2, NOW], "newest first");
    assert_eq!(
        outcomes(&journal),
        ["duplicate", "duplicate", "stored", "stored"]
    );
}

/// Runs `work` with this thread's logs captured, and returns its output with the log text. On
/// a current-thread runtime the callers writing group-commit batches run on this thread too,
/// so what they log lands here.
async fn with_captured_logs<T>(work: impl std::future::Future<Output = T>) -> (T, String) {
    let capture = common::capture::Capture::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::WARN)
        .with_writer(capture.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let output = work.await;
    (output, capture.text())
}

/// What group commit logs when a batch failed and its members are retried one by one.
const BATCH_FALLBACK: &str = "retrying its members one by one";

/// The same history on both stores before the batch: records to upgrade, to keep (one
/// without a biz_no), a pending follow-up to cancel and a `none` one to wake.
async fn history_before_the_batch(store: &Arc<dyn Store>) {
    let at = NOW - 1_000;
    let (a, b, c, d) = (biz("mix-a"), biz("mix-b"), biz("mix-c"), biz("mix-d"));
    let accept = |id: &str, result: IncomingResult, job: JobEffect| {
        let entry = delivery(CallbackKind::Notify, Some(id), true, at);
        let store = store.clone();
        async move { store.accept_signed(entry, result, job).await.unwrap() }
    };
    accept(&a, signed_notify(&a, "PROCESSING"), JobEffect::Keep).await;
    let no_biz_no = IncomingResult {
        biz_no: None,
        ..signed_notify(&b, "OK")
    };
    accept(&b, no_biz_no, JobEffect::Keep).await;
    for id in [&c, &d] {
        let entry = delivery(CallbackKind::ReturnGet, Some(id), false, at);
        store
            .accept_return_get(&entry, id, new_job(at))
            .await
            .unwrap();
    }
    accept(&d, signed_notify(&d, "OK"), JobEffect::CancelPending).await;
    // A follow-up whose next call is held far ahead (the last one, kept for a final status).
    let g = biz("mix-g");
    let entry = delivery(CallbackKind::ReturnGet, Some(&g), false, at);
    let held = NewJob {
        next_at: NOW + DAY / 2,
        ..new_job(at)
    };
    store.accept_return_get(&entry, &g, held).await.unwrap();
}

/// A batch of every kind of member, in submission order.
fn mixed_batch() -> Vec<(NewCallback, IncomingResult, JobEffect)> {
    let (a, b, c, d, e, f, g) = (
        biz("mix-a"),
        biz("mix-b"),
        biz("mix-c"),
        biz("mix-d"),
        biz("mix-e"),
        biz("mix-f"),
        biz("mix-g"),
    );
    let members = [
        (&a, signed_notify(&a, "OK"), JobEffect::CancelPending), // upgrade
        (&b, signed_notify(&b, "OK"), JobEffect::Keep),          // duplicate, fills biz_no
        (&c, signed_notify(&c, "OK"), JobEffect::CancelPending), // replaces PENDING
        (&a, signed_notify(&a, "OK"), JobEffect::CancelPending), // duplicate in the batch
        (&d, signed_notify(&d, "OK"), JobEffect::Ensure(new_job(NOW))), // wakes a none job
        (&e, signed_notify(&e, "PROCESSING"), JobEffect::Keep),  // first result
        (&e, signed_notify(&e, "OK"), JobEffect::Ensure(new_job(NOW))), // upgrade, new job
        (&f, fetched(&f, "PROCESSING"), JobEffect::Keep),        // unsigned first
        (&f, signed_notify(&f, "PROCESSING"), JobEffect::Keep),  // signed beats unsigned
        (&e, signed_notify(&e, "PROCESSING"), JobEffect::Keep),  // stale
        (&g, signed_notify(&g, "OK"), JobEffect::Ensure(new_job(NOW))), // brings g forward
    ];
    members
        .into_iter()
        .enumerate()
        .map(|(i, (id, result, job))| {
            let kind = if i % 3 == 1 {
                CallbackKind::ReturnPost
            } else {
                CallbackKind::Notify
            };
            (delivery(kind, Some(id), true, NOW + i as i64), result, job)
        })
        .collect()
}

/// A batch of every kind of member with no biz_id twice: on PostgreSQL one round, which is
/// written by one statement that is its own transaction and returns the records itself (the
/// duplicate's record read, and its biz_no filled, after that statement).
fn one_round_batch() -> Vec<(NewCallback, IncomingResult, JobEffect)> {
    mixed_batch()
        .into_iter()
        .enumerate()
        // The first member of each of a, b, c, d, e, f and g; e's is its first result.
        .filter(|(i, _)| [0, 1, 2, 4, 5, 7, 10].contains(i))
        .map(|(_, member)| member)
        .collect()
}

/// The journal of a biz_id without the row ids (which depend on the order rows went in).
async fn journal_of(store: &Arc<dyn Store>, biz_id: &str) -> Vec<(String, String, i64, bool)> {
    store
        .callbacks(&CallbackQuery {
            biz_id: Some(biz_id.to_owned()),
            limit: 50,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.kind, r.outcome, r.received_at, r.verified))
        .collect()
}

/// One batch holding every kind of member leaves exactly what the same deliveries leave one
/// transaction at a time (`reference` has no group commit), and it really is applied as one
/// batch: the writer never fell back to member by member.
async fn one_batch_equals_one_transaction_per_delivery(engine: Engine) {
    batch_equals_one_transaction_per_delivery(engine, mixed_batch()).await;
}

/// The same for [`one_round_batch`].
async fn a_batch_without_a_repeated_biz_id_equals_one_transaction_per_delivery(engine: Engine) {
    batch_equals_one_transaction_per_delivery(engine, one_round_batch()).await;
}

async fn batch_equals_one_transaction_per_delivery(
    engine: Engine,
    deliveries: Vec<(NewCallback, IncomingResult, JobEffect)>,
) {
    let Some(batched_db) = TestDatabase::create(engine).await else {
        return;
    };
    let reference_db = TestDatabase::create(engine)
        .await
        .expect("the engine answered a moment ago");
    let batched = common::connect_migrated(batched_db.url()).await;
    let reference =
        common::connect_migrated_with(reference_db.url(), &without_group_commit()).await;
    history_before_the_batch(&batched).await;
    history_before_the_batch(&reference).await;

    let (results, logs) = with_captured_logs(accept_together(&batched, &deliveries)).await;

    assert!(!logs.contains(BATCH_FALLBACK), "the batch failed: {logs}");
    for ((entry, result, job), batched_result) in deliveries.iter().zip(results) {
        let expected = reference
            .accept_signed(entry.clone(), result.clone(), *job)
            .await
            .expect("the reference commits");
        let got = batched_result.expect("every member commits");
        assert_eq!(got, expected, "{}", result.biz_id);
    }
    for tag in ["a", "b", "c", "d", "e", "f", "g"] {
        let id = biz(&format!("mix-{tag}"));
        assert_eq!(
            record(&batched, &id).await,
            record(&reference, &id).await,
            "{id}"
        );
        assert_eq!(
            journal_of(&batched, &id).await,
            journal_of(&reference, &id).await,
            "{id}"
        );
    }
    let b = record(&batched, &biz("mix-b")).await;
    assert_eq!(
        b.biz_no.as_deref(),
        Some("order-1"),
        "the duplicate filled biz_no"
    );
    let d = fetch(&batched, &biz("mix-d")).await;
    assert_eq!(d.state, FetchState::Pending, "Ensure woke the none job");
    assert_eq!(
        fetch(&batched, &biz("mix-c")).await.state,
        FetchState::None,
        "CancelPending ended the pending job"
    );
    assert_eq!(
        fetch(&batched, &biz("mix-g")).await.next_at,
        Some(NOW + 5_000),
        "Ensure brought the held job forward"
    );
    batched.close().await;
    reference.close().await;
}

fn without_group_commit() -> ConnectOptions {
    ConnectOptions {
        group_commit: false,
        ..Default::default()
    }
}

/// Deliveries racing `close`: whatever was acknowledged is in the database (checked through a
/// fresh store), and whatever was not got `Unavailable`, never an `Ok` without a commit.
async fn deliveries_racing_a_close_are_acked_only_when_stored(engine: Engine) {
    let Some(db) = TestDatabase::create(engine).await else {
        return;
    };
    let store = common::connect_migrated(db.url()).await;
    let tasks: Vec<_> = (0..48_i64)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let id = biz(&format!("closing-{i}"));
                let entry = delivery(CallbackKind::Notify, Some(&id), true, NOW + i);
                let accepted = store
                    .accept_signed(entry, signed_notify(&id, "OK"), JobEffect::Keep)
                    .await;
                (id, accepted)
            })
        })
        .collect();
    tokio::task::yield_now().await;
    store.close().await;

    let reopened = common::connect_migrated(db.url()).await;
    let (mut acked, mut refused) = (0, 0);
    for task in tasks {
        let (id, accepted) = task.await.unwrap();
        match accepted {
            Ok((_, stored)) => {
                acked += 1;
                assert_eq!(
                    record(&reopened, &id).await,
                    stored,
                    "{id}: acked means stored"
                );
            }
            Err(error) => {
                refused += 1;
                assert_unavailable(&id, Err::<(), _>(error));
            }
        }
    }
    // Once closed, nothing more is acknowledged.
    let late = biz("late");
    let entry = delivery(CallbackKind::Notify, Some(&late), true, NOW);
    assert_unavailable(
        "after close",
        store
            .accept_signed(entry, signed_notify(&late, "OK"), JobEffect::Keep)
            .await,
    );
    assert_eq!(reopened.get(&late).await.unwrap(), None);
    eprintln!("racing close: {acked} acked, {refused} refused");
    reopened.close().await;
}

/// A member PostgreSQL refuses (a biz_id too large for its btree index: SQLSTATE 54000, not
/// an outage) fails its batch; the others are retried one by one and committed once each,
/// and the bad one gets its own error, not an ack. (SQLite has no such limit, so this poison
/// exists on PostgreSQL only.)
#[tokio::test(flavor = "current_thread")]
async fn postgres_a_failing_member_fails_alone_after_its_batch_is_retried() {
    let Some((store, mut db)) = common::postgres_store().await else {
        return;
    };
    // Random hex compresses to about half: ~16 KB of it stays far above the ~2.7 KB limit.
    let huge: String = (0..500)
        .map(|_| uuid::Uuid::new_v4().simple().to_string())
        .collect();
    let (good1, bad, good2) = (biz("good-1"), biz(&huge), biz("good-2"));
    let poison = signed_delivery(&bad, "OK", NOW + 1);
    let deliveries = [
        signed_delivery(&good1, "OK", NOW),
        poison,
        signed_delivery(&good2, "OK", NOW + 2),
    ];

    let (results, logs) = with_captured_logs(accept_together(&store, &deliveries)).await;

    assert!(
        logs.contains(BATCH_FALLBACK),
        "the batch failed and fell back (this is what the batch tests look for): {logs}"
    );
    assert!(
        matches!(results[0], Ok((MergeOutcome::Created, _))),
        "{:?}",
        results[0]
            .as_ref()
            .map(|(o, _)| o)
            .map_err(|e| format!("{e:?}"))
    );
    assert!(
        matches!(results[1], Err(StoreError::Other(_))),
        "the poison member is refused: {:?}",
        results[1].as_ref().map(|(outcome, _)| outcome)
    );
    assert!(matches!(results[2], Ok((MergeOutcome::Created, _))));
    assert_eq!(store.get(&bad).await.unwrap(), None, "nothing of it stored");
    for id in [&good1, &good2] {
        let journal = journal(&store, Some(id.as_str())).await;
        assert_eq!(
            outcomes(&journal),
            ["stored"],
            "{id}: the failed batch left no row"
        );
    }
    let bad_journal = journal(&store, Some(bad.as_str())).await;
    assert!(bad_journal.is_empty());
    store.close().await;
    db.drop_database().await;
}

/// A batch without a repeated biz_id is one statement that commits on its own; a duplicate
/// in it (its record kept) then has its biz_no filled and its record read. When that
/// follow-up fails (here a trigger refuses the biz_no, a data error), the members the
/// statement committed are still answered with what it wrote — not written again as
/// duplicates by the one-by-one fallback, which would journal their delivery twice — and
/// only the duplicate gets the error.
#[tokio::test(flavor = "current_thread")]
async fn postgres_a_failed_follow_up_does_not_write_committed_members_again() {
    let Some((store, mut db)) = common::postgres_store().await else {
        return;
    };
    let (fresh, kept) = (biz("follow-up-fresh"), biz("follow-up-kept"));
    // The stored record lacks a biz_no: a duplicate carrying one will fill it.
    let first = IncomingResult {
        biz_no: None,
        ..signed_notify(&kept, "OK")
    };
    store
        .accept_signed(
            delivery(CallbackKind::Notify, Some(&kept), true, NOW),
            first,
            JobEffect::Keep,
        )
        .await
        .expect("the first delivery is stored");
    let admin = sqlx::PgPool::connect(db.url()).await.unwrap();
    for statement in [
        "CREATE FUNCTION refuse_biz_no() RETURNS trigger LANGUAGE plpgsql AS \
         $$ BEGIN RAISE EXCEPTION 'biz_no refused by the test' USING ERRCODE = '22023'; END $$",
        "CREATE TRIGGER refuse_biz_no BEFORE UPDATE OF biz_no ON verifications FOR EACH ROW \
         WHEN (OLD.biz_no IS NULL AND NEW.biz_no IS NOT NULL) EXECUTE FUNCTION refuse_biz_no()",
    ] {
        sqlx::query(statement).execute(&admin).await.unwrap();
    }

    let deliveries = [
        signed_delivery(&fresh, "OK", NOW + 1),
        signed_delivery(&kept, "OK", NOW + 2),
    ];
    let results = accept_together(&store, &deliveries).await;

    match &results[0] {
        Ok((MergeOutcome::Created, stored)) => assert_eq!(stored.biz_id, fresh),
        other => panic!(
            "the committed member is answered with its own write: {:?}",
            other.as_ref().map(|(o, _)| o).map_err(|e| format!("{e:?}"))
        ),
    }
    assert_eq!(
        outcomes(&journal(&store, Some(fresh.as_str())).await),
        ["stored"],
        "one delivery, one journal row"
    );
    assert!(
        matches!(results[1], Err(StoreError::Other(_))),
        "the duplicate whose follow-up failed gets a data error: {:?}",
        results[1].as_ref().map(|(o, _)| o)
    );
    let mut kept_journal = outcomes(&journal(&store, Some(kept.as_str())).await)
        .into_iter()
        .map(str::to_owned)
        .collect::<Vec<_>>();
    kept_journal.sort();
    assert_eq!(
        kept_journal,
        ["duplicate", "stored"],
        "the first delivery and the duplicate, once each"
    );
    admin.close().await;
    store.close().await;
    db.drop_database().await;
}

/// A member whose own write breaks a constraint (status_rank 7: only a bug could send it, and
/// the schema refuses it on both engines) fails its batch; the batch falls back to member by
/// member, every other member is acked and stored, and the bad one gets a data error — not
/// `Unavailable`, which would tell its sender (and everyone batched with it) that storage
/// is down.
async fn a_member_with_a_data_error_fails_alone_and_the_rest_of_its_batch_is_acked(
    store: Arc<dyn Store>,
) {
    let bad = biz("bad-rank");
    let mut deliveries: Vec<_> = (0..12)
        .map(|i| signed_delivery(&biz(&format!("good-{i}")), "OK", NOW + i))
        .collect();
    let (entry, result, job) = signed_delivery(&bad, "OK", NOW + 100);
    let broken = IncomingResult {
        status_rank: 7,
        ..result
    };
    deliveries.insert(5, (entry, broken, job));

    let (results, logs) = with_captured_logs(accept_together(&store, &deliveries)).await;

    assert!(
        logs.contains(BATCH_FALLBACK),
        "the members formed one batch, which failed and fell back: {logs}"
    );
    for ((_, result, _), accepted) in deliveries.iter().zip(&results) {
        if result.biz_id == bad {
            assert!(
                matches!(accepted, Err(StoreError::Other(_))),
                "the bad member gets a data error: {:?}",
                accepted.as_ref().map(|(o, _)| o)
            );
        } else {
            assert!(
                matches!(accepted, Ok((MergeOutcome::Created, _))),
                "{} is acked: {:?}",
                result.biz_id,
                accepted
                    .as_ref()
                    .map(|(o, _)| o)
                    .map_err(|e| format!("{e:?}"))
            );
            assert_eq!(record(&store, &result.biz_id).await.status, "OK");
        }
    }
    assert_eq!(store.get(&bad).await.unwrap(), None, "nothing of it stored");
    let error = results[5].as_ref().expect_err("the bad member failed");
    assert!(
        error.database_code().is_some(),
        "it names the database's code: {error:?}"
    );
}

/// PostgreSQL refuses NUL in text with SQLSTATE 22021: all digits, like a SQLite result code
/// whose low byte (5) means BUSY. A member carrying one (only a bug could: derived columns
/// hold NUL as the text `\u0000`) fails alone with a data error, never as "unavailable".
#[tokio::test(flavor = "current_thread")]
async fn postgres_a_nul_in_a_derived_column_is_a_data_error_of_that_member_alone() {
    let Some((store, mut db)) = common::postgres_store().await else {
        return;
    };
    let bad = biz("nul");
    let (entry, result, job) = signed_delivery(&bad, "OK", NOW);
    let nul = IncomingResult {
        biz_no: Some("order\0".into()),
        ..result
    };
    let deliveries = [
        signed_delivery(&biz("beside-1"), "OK", NOW),
        (entry, nul, job),
        signed_delivery(&biz("beside-2"), "OK", NOW),
    ];
    let results = accept_together(&store, &deliveries).await;
    assert!(results[0].is_ok() && results[2].is_ok());
    let error = results[1].as_ref().expect_err("refused");
    assert!(matches!(error, StoreError::Other(_)), "{error:?}");
    assert_eq!(error.database_code().as_deref(), Some("22021"));
    store.close().await;
    db.drop_database().await;
}

/// Each group-commit writer keeps its connection between batches that follow closely. When
/// that connection died in between (PostgreSQL restarted, or an administrator ended the
/// session), the next batch is written on a fresh connection from the pool: acknowledged and
/// journaled once, not failed with a 503 while the database is up.
#[tokio::test(flavor = "current_thread")]
async fn postgres_a_batch_that_finds_its_kept_connection_dead_is_written_on_a_fresh_one() {
    let Some((store, mut db)) = common::postgres_store().await else {
        return;
    };
    let (before, after) = (biz("kept-before"), biz("kept-after"));
    let (entry, result, job) = signed_delivery(&before, "OK", NOW);
    store.accept_signed(entry, result, job).await.unwrap();

    // Every other session on the test database ends, the writer's kept one among them.
    let admin = sqlx::PgPool::connect(db.url()).await.unwrap();
    let ended: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    .fetch_all(&admin)
    .await
    .unwrap();
    admin.close().await;
    assert!(
        !ended.is_empty() && ended.iter().all(|ended| *ended),
        "sessions ended: {ended:?}"
    );

    let (entry, result, job) = signed_delivery(&after, "OK", NOW + 1);
    let (results, logs) =
        with_captured_logs(async { store.accept_signed(entry, result, job).await }).await;
    let (outcome, stored) = results.expect("stored on a fresh connection, not a 503");
    assert_eq!(outcome, MergeOutcome::Created);
    assert_eq!(record(&store, &after).await, stored, "acked means stored");
    assert_eq!(
        outcomes(&journal(&store, Some(after.as_str())).await),
        ["stored"]
    );
    assert!(
        logs.contains("kept connection"),
        "the lost connection is logged: {logs}"
    );
    store.close().await;
    db.drop_database().await;
}
