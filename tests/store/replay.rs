//! Replay of refused deliveries in the store, on both engines: which refused deliveries are
//! candidates, and claiming one exactly once while storing it under the merge rule.

use std::sync::Arc;

use faceid_receiver::store::{
    CallbackKind, FetchState, JobEffect, MergeOutcome, NewCallback, Store,
};

use super::{NOW, biz, journal, new_job, notify, record, rejected, return_get, signed_notify};

crate::store_tests!(
    refused_deliveries_are_those_of_signed_routes_with_their_body_kept_whole,
    a_replayed_delivery_is_claimed_once_and_stored_under_the_merge_rule,
);

async fn refused_deliveries_are_those_of_signed_routes_with_their_body_kept_whole(
    store: Arc<dyn Store>,
) {
    let refused = |kind, at| rejected(kind, Some("1795392000,r"), "sign does not match", at);
    let whole = store
        .journal_rejected(&refused(CallbackKind::Notify, NOW))
        .await
        .unwrap();
    let post = store
        .journal_rejected(&refused(CallbackKind::ReturnPost, NOW + 1))
        .await
        .unwrap();
    // Not candidates: a return GET (nothing signed), an emptied body, a body capped to a
    // prefix, and a delivery that was stored.
    store
        .journal_rejected(&refused(CallbackKind::ReturnGet, NOW + 2))
        .await
        .unwrap();
    let empty = NewCallback {
        body: Vec::new(),
        ..refused(CallbackKind::Notify, NOW + 3)
    };
    store.journal_rejected(&empty).await.unwrap();
    let capped = NewCallback {
        body_len: 1_000_000,
        ..refused(CallbackKind::Notify, NOW + 4)
    };
    store.journal_rejected(&capped).await.unwrap();
    notify(
        &store,
        &signed_notify(&biz("r-ok"), "OK"),
        NOW + 5,
        JobEffect::Keep,
    )
    .await;
    let later = store
        .journal_rejected(&refused(CallbackKind::Notify, NOW + 6))
        .await
        .unwrap();

    let all = store.refused_deliveries(0, None, 100).await.unwrap();
    let ids: Vec<i64> = all.iter().map(|d| d.id).collect();
    assert_eq!(ids, [whole, post, later], "oldest first");
    let first = &all[0];
    assert_eq!(first.kind, "notify");
    assert_eq!(first.received_at, NOW);
    let body = first.body.as_deref().expect("read");
    assert_eq!(body, b"data=%7B%7D&sign=00");
    assert_eq!(first.body_len, body.len() as i64);
    assert_eq!(
        first.content_type.as_deref(),
        Some("application/x-www-form-urlencoded")
    );
    // Paging and the `since` filter.
    let page: Vec<i64> = store
        .refused_deliveries(whole, None, 1)
        .await
        .unwrap()
        .iter()
        .map(|d| d.id)
        .collect();
    assert_eq!(page, [post]);
    let since: Vec<i64> = store
        .refused_deliveries(0, Some(NOW + 1), 100)
        .await
        .unwrap()
        .iter()
        .map(|d| d.id)
        .collect();
    assert_eq!(since, [post, later]);
}

async fn a_replayed_delivery_is_claimed_once_and_stored_under_the_merge_rule(
    store: Arc<dyn Store>,
) {
    let id = biz("replayed");
    let row = store
        .journal_rejected(&rejected(
            CallbackKind::Notify,
            None,
            "data is not valid JSON",
            NOW,
        ))
        .await
        .unwrap();
    return_get(&store, &id, NOW, new_job(NOW)).await;

    let (outcome, stored) = store
        .accept_replayed(
            row,
            "previous-1",
            &signed_notify(&id, "OK"),
            &[],
            JobEffect::CancelPending,
            NOW + 60_000,
        )
        .await
        .unwrap()
        .expect("claimed");
    assert_eq!(
        outcome,
        MergeOutcome::Created,
        "replaces the PENDING record"
    );
    assert_eq!((stored.status.as_str(), stored.signed), ("OK", true));
    assert_eq!(
        stored.fetch.state,
        FetchState::None,
        "the job effect applied"
    );
    assert_eq!(stored.updated_at, NOW + 60_000);

    let journal = journal(&store, Some(id.as_str())).await;
    let replayed = journal
        .iter()
        .find(|r| r.id == row)
        .expect("the row, now about the biz_id");
    assert_eq!(replayed.outcome, "replayed");
    assert!(replayed.verified);
    assert_eq!(replayed.key_id.as_deref(), Some("previous-1"));
    assert_eq!(replayed.replayed_at, Some(NOW + 60_000));
    assert_eq!(
        replayed.reason.as_deref(),
        Some("data is not valid JSON"),
        "kept"
    );
    assert!(
        store
            .refused_deliveries(0, None, 10)
            .await
            .unwrap()
            .is_empty(),
        "no longer a candidate"
    );

    // A second claim of the same row writes nothing, even a better result.
    let again = store
        .accept_replayed(
            row,
            "current",
            &signed_notify(&id, "FAILED"),
            &[],
            JobEffect::Keep,
            NOW + 120_000,
        )
        .await
        .unwrap();
    assert!(again.is_none());
    assert_eq!(record(&store, &id).await.updated_at, NOW + 60_000);

    // Two replays at once (the command and the API): one claims the row, the other nothing.
    let contested = store
        .journal_rejected(&rejected(CallbackKind::Notify, None, "sign", NOW + 2))
        .await
        .unwrap();
    let racer = |n: i64| {
        let store = store.clone();
        let other = biz("contested");
        tokio::spawn(async move {
            store
                .accept_replayed(
                    contested,
                    "current",
                    &signed_notify(&other, "OK"),
                    &[],
                    JobEffect::Keep,
                    NOW + n,
                )
                .await
                .unwrap()
        })
    };
    let (a, b) = tokio::join!(racer(1), racer(2));
    let claims = [a.unwrap(), b.unwrap()];
    assert_eq!(
        claims.iter().filter(|c| c.is_some()).count(),
        1,
        "claimed once"
    );

    // A replayed duplicate is Unchanged, and its row is claimed all the same.
    let dup_row = store
        .journal_rejected(&rejected(CallbackKind::Notify, Some(&id), "sign", NOW + 1))
        .await
        .unwrap();
    let (outcome, _) = store
        .accept_replayed(
            dup_row,
            "current",
            &signed_notify(&id, "OK"),
            &[],
            JobEffect::Keep,
            NOW + 180_000,
        )
        .await
        .unwrap()
        .expect("claimed");
    assert_eq!(outcome, MergeOutcome::Unchanged);
}
