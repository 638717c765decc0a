//! Identity data protection in the store, on both engines: retention purges (driven through
//! [`retention::purge_once`] with a manual clock) and the access log.

use std::sync::Arc;
use std::time::Duration;

use faceid_receiver::clock::{ManualClock, SharedClock};
use faceid_receiver::config::RetentionSettings;
use faceid_receiver::retention;
use faceid_receiver::store::{AccessEntry, NewImage, PurgeCounts, Store};

use super::{DAY, NOW, biz, fetched, journal, notify, rejected, retry_later, signed_notify};
use faceid_receiver::store::{CallbackKind, JobEffect};

crate::store_tests!(
    purge_clears_old_results_images_and_bodies_and_keeps_the_summary,
    a_dry_run_counts_what_a_purge_would_remove_and_changes_nothing,
    retention_zero_keeps_everything_forever,
    refused_deliveries_are_deleted_after_refused_days_and_accepted_ones_stay,
    the_access_log_keeps_who_what_and_when_per_biz_id,
);

fn retention(result_days: u32, journal_days: u32) -> RetentionSettings {
    RetentionSettings {
        result_days,
        journal_days,
        refused_days: 0,
        console_audit_days: 0,
        push_days: 0,
        refused_bytes_per_day: 1 << 20,
        interval: Duration::from_secs(3600),
    }
}

fn clock_at(now: i64) -> SharedClock {
    Arc::new(ManualClock::new(now))
}

/// A signed OK notify at `at`, plus one image stored by a follow-up at the same time.
async fn verification_with_image(store: &Arc<dyn Store>, biz_id: &str, at: i64) {
    notify(store, &signed_notify(biz_id, "OK"), at, JobEffect::Keep).await;
    let image = NewImage {
        name: "image_best".into(),
        jpeg: vec![0xff, 0xd8, 0xff, 0xd9],
    };
    store
        .save_fetched("w1", &fetched(biz_id, "OK"), &[image], &retry_later(), at)
        .await
        .unwrap();
}

/// One record 40 days old and one a day old, each with an image and a journal row.
async fn old_and_recent(store: &Arc<dyn Store>) -> (String, String) {
    let (old, recent) = (biz("old"), biz("recent"));
    verification_with_image(store, &old, NOW - 40 * DAY).await;
    verification_with_image(store, &recent, NOW - DAY).await;
    (old, recent)
}

async fn purge_clears_old_results_images_and_bodies_and_keeps_the_summary(store: Arc<dyn Store>) {
    let (old, recent) = old_and_recent(&store).await;
    let settings = retention(30, 30);

    let counts = retention::purge_once(store.as_ref(), &settings, &clock_at(NOW), false)
        .await
        .unwrap();
    assert_eq!(
        counts,
        PurgeCounts {
            results: 1,
            images: 1,
            journal_bodies: 1,
            refused: 0,
            console_audit: 0,
            push_events: 0,
        }
    );

    let purged = store.get(&old).await.unwrap().unwrap();
    assert_eq!(purged.result, None, "raw result gone");
    assert!(purged.images.is_empty(), "image list gone");
    assert_eq!(purged.purged_at, Some(NOW), "marked with the clock's time");
    assert_eq!(purged.status, "OK", "status kept");
    assert_eq!(purged.liveness.as_deref(), Some("PASS"), "liveness kept");
    assert_eq!(purged.confidence, Some(77.5), "confidence kept");
    assert_eq!(purged.created_at, NOW - 40 * DAY, "timestamps kept");
    assert_eq!(store.image(&old, "image_best").await.unwrap(), None);

    let kept = store.get(&recent).await.unwrap().unwrap();
    assert!(kept.result.is_some() && kept.purged_at.is_none());
    assert_eq!(kept.images, ["image_best"]);
    assert!(store.image(&recent, "image_best").await.unwrap().is_some());

    // The journal row stays, with its hash; only its body went.
    let journal = journal(&store, Some(old.as_str())).await;
    assert_eq!(journal.len(), 1);
    assert_eq!(journal[0].body_sha256, "ab".repeat(32));

    // Purged data is not counted twice.
    let again = retention::purge_once(store.as_ref(), &settings, &clock_at(NOW), false)
        .await
        .unwrap();
    assert_eq!(again, PurgeCounts::default());
}

async fn a_dry_run_counts_what_a_purge_would_remove_and_changes_nothing(store: Arc<dyn Store>) {
    let (old, _) = old_and_recent(&store).await;
    // Results kept 30 days, journal bodies only 0.5 day → both journal rows are due.
    let settings = RetentionSettings {
        journal_days: 1,
        interval: Duration::from_secs(60),
        ..retention(30, 1)
    };
    let clock = clock_at(NOW + DAY / 2);
    let before = store.get(&old).await.unwrap().unwrap();

    let dry = retention::purge_once(store.as_ref(), &settings, &clock, true)
        .await
        .unwrap();
    assert_eq!(
        dry,
        PurgeCounts {
            results: 1,
            images: 1,
            journal_bodies: 2,
            refused: 0,
            console_audit: 0,
            push_events: 0,
        }
    );
    assert_eq!(
        store.get(&old).await.unwrap().unwrap(),
        before,
        "dry run changed the record"
    );
    assert!(store.image(&old, "image_best").await.unwrap().is_some());

    let real = retention::purge_once(store.as_ref(), &settings, &clock, false)
        .await
        .unwrap();
    assert_eq!(
        real, dry,
        "a real run removes exactly what the dry run counted"
    );
}

async fn retention_zero_keeps_everything_forever(store: Arc<dyn Store>) {
    let (old, _) = old_and_recent(&store).await;
    let far_future = clock_at(NOW + 10_000 * DAY);
    let counts = retention::purge_once(store.as_ref(), &retention(0, 0), &far_future, false)
        .await
        .unwrap();
    assert_eq!(counts, PurgeCounts::default());
    // Only journal bodies: results stay.
    let counts = retention::purge_once(store.as_ref(), &retention(0, 1), &far_future, false)
        .await
        .unwrap();
    assert_eq!(counts.results, 0);
    assert_eq!(counts.journal_bodies, 2);
    assert!(store.get(&old).await.unwrap().unwrap().result.is_some());
}

async fn refused_deliveries_are_deleted_after_refused_days_and_accepted_ones_stay(
    store: Arc<dyn Store>,
) {
    // Arrange: an accepted delivery and a refused one 40 days ago, a refused one yesterday.
    let (old, _) = old_and_recent(&store).await;
    let refuse = |at: i64| rejected(CallbackKind::Notify, None, "bad signature", at);
    store
        .journal_rejected(&refuse(NOW - 40 * DAY))
        .await
        .unwrap();
    let recent = store.journal_rejected(&refuse(NOW - DAY)).await.unwrap();
    // Refused deliveries after 30 days, and every body after 35: the old refused row is
    // deleted, not also counted as emptied.
    let settings = RetentionSettings {
        refused_days: 30,
        ..retention(0, 35)
    };

    // Act
    let dry = retention::purge_once(store.as_ref(), &settings, &clock_at(NOW), true)
        .await
        .unwrap();
    let real = retention::purge_once(store.as_ref(), &settings, &clock_at(NOW), false)
        .await
        .unwrap();

    // Assert
    assert_eq!(
        real,
        PurgeCounts {
            journal_bodies: 1,
            refused: 1,
            ..PurgeCounts::default()
        }
    );
    assert_eq!(dry, real, "the dry run counted what the real run removed");
    let journal = journal(&store, None).await;
    let rows: Vec<(Option<&str>, &str)> = journal
        .iter()
        .map(|r| (r.biz_id.as_deref(), r.outcome.as_str()))
        .collect();
    assert_eq!(journal[0].id, recent);
    assert_eq!(
        rows,
        [
            (None, "rejected"),
            (Some(biz("recent").as_str()), "stored"),
            (Some(old.as_str()), "stored")
        ]
    );
}

async fn the_access_log_keeps_who_what_and_when_per_biz_id(store: Arc<dyn Store>) {
    let entry = |biz_id: &str, at: i64| AccessEntry {
        token_fp: "0123456789ab".into(),
        route: "GET /api/v1/verifications/{biz_id}".into(),
        biz_id: Some(biz_id.into()),
        accessed_at: at,
    };
    store
        .record_access(&[entry(&biz("a"), NOW), entry(&biz("b"), NOW + 1)])
        .await
        .unwrap();
    store.record_access(&[]).await.unwrap();
    store
        .record_access(&[entry(&biz("a"), NOW + 2)])
        .await
        .unwrap();

    let a = store.access_log(Some(&biz("a")), 10).await.unwrap();
    assert_eq!(a, [entry(&biz("a"), NOW), entry(&biz("a"), NOW + 2)]);
    assert_eq!(store.access_log(None, 10).await.unwrap().len(), 3);
    assert_eq!(store.access_log(None, 1).await.unwrap().len(), 1);
}
