//! The follow-up schedule end to end, with the default settings, the simulator scripted by
//! its clock ("the user finishes at T") and a manual clock: a return GET that comes before the
//! user even started must not burn the budget, and images must not be lost to it.

use faceid_receiver::store::{FetchState, Source};
use faceid_sim::ResultScript;

use crate::common::Engine;
use crate::fetcher_tests;
use crate::helpers::*;

fetcher_tests!(
    an_early_return_get_still_ends_stored_when_the_user_finishes_late_and_no_notify_comes,
    with_images_wanted_a_final_notify_after_two_non_final_answers_still_gets_the_images,
);

/// A biz_id created at `NOW_MS` whose user finishes at `finishes_at` (answering `until`
/// before that), then follows `steps`.
fn user_finishing_at(h: &Harness, finishes_at: i64, until: &str, steps: &[&str]) -> String {
    let spec = ResultScript::default()
        .steps(steps.iter().copied())
        .created_at_ms(NOW_MS)
        .finishes_at(finishes_at, until);
    h.sim.mint_biz(spec).expect("script the simulator")
}

/// The simulator's log for `id`: (time since `NOW_MS`, answer).
fn answers(h: &Harness, id: &str) -> Vec<(i64, String)> {
    h.sim
        .calls(id)
        .calls
        .into_iter()
        .map(|call| (call.at_ms - NOW_MS, call.answer))
        .collect()
}

async fn an_early_return_get_still_ends_stored_when_the_user_finishes_late_and_no_notify_comes(
    engine: Engine,
) {
    let Some(h) = harness(engine).await else {
        return;
    };
    // The GET comes at t=0; FaceID says NOT_STARTED until the user finishes at 50 minutes.
    let id = user_finishing_at(&h, NOW_MS + 50 * MINUTE, "NOT_STARTED", &["OK"]);
    h.return_get(&id).await;

    h.settle(&[&id]).await;

    let record = h.record(&id).await;
    assert_eq!(record.status, "OK", "{:?}", answers(&h, &id));
    assert_eq!(record.source, Source::GetResult);
    assert_eq!(record.fetch.state, FetchState::Done);
    assert_eq!(
        answers(&h, &id),
        [
            (5 * SECOND, "NOT_STARTED".to_owned()),
            (5 * SECOND + HOUR, "OK".to_owned())
        ],
        "first call after initial_delay, then the slow lane"
    );
    assert_eq!(record.fetch.calls_used, 2, "a call is still left");
}

async fn with_images_wanted_a_final_notify_after_two_non_final_answers_still_gets_the_images(
    engine: Engine,
) {
    let Some(h) = harness_with(engine, &[("APP__FETCH__RETURN_IMAGE", "4")], None).await else {
        return;
    };
    // NOT_STARTED for half an hour, then the user is in the flow until the notify.
    let id = user_finishing_at(
        &h,
        NOW_MS + 30 * MINUTE,
        "NOT_STARTED",
        &["PROCESSING", "OK"],
    );
    h.return_get(&id).await;
    h.clock.set(NOW_MS + 5 * SECOND);
    assert_eq!(h.drain().await, 1);
    let first = h.record(&id).await.fetch;
    assert_eq!(first.next_at, Some(NOW_MS + 5 * SECOND + HOUR), "slow lane");
    h.clock.set(first.next_at.unwrap());
    assert_eq!(h.drain().await, 1);
    let second = h.record(&id).await;
    assert_eq!(second.status, "PROCESSING");
    let held = second.fetch.next_at.expect("the last call is scheduled");
    assert!(
        held > h.clock.now_ms() + 12 * HOUR,
        "with images wanted the last call is held for a final status, not spent on PROCESSING"
    );
    // Nothing is called meanwhile.
    h.clock.advance(HOUR);
    assert_eq!(h.drain().await, 0);

    // The user finishes: the signed final notify arrives and the held call becomes due.
    assert_eq!(h.notify(&id, "OK").await.status(), 200);
    let record = h.record(&id).await;
    assert_eq!(record.fetch.state, FetchState::Pending);
    let due = record.fetch.next_at.unwrap();
    assert!(
        due <= h.clock.now_ms() + 5 * SECOND,
        "due now, not at {due}"
    );
    h.clock.set(due);
    assert_eq!(h.drain().await, 1);

    let record = h.record(&id).await;
    assert_eq!(record.fetch.state, FetchState::Done);
    assert_eq!(record.fetch.calls_used, 3);
    assert!(record.signed, "the signed notify is the stored result");
    assert_eq!(
        record.images,
        ["image_best", "image_idcard_back", "image_idcard_front"]
    );
    let answers: Vec<String> = answers(&h, &id).into_iter().map(|(_, a)| a).collect();
    assert_eq!(answers, ["NOT_STARTED", "PROCESSING", "OK"]);
}
