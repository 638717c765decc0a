//! The follow-up rulebook: when get_result may be called for a key, and when it will be.
//!
//! Owns every timing rule of the follow-up, as pure functions of [`FetchSettings`] and times
//! (no store, no clock, no application state), so that the HTTP handlers and the worker ask
//! one place and get one answer:
//! - [`window_ends_at`]: until when a key may be called at all;
//! - [`first_job`]: the follow-up a return GET creates, first due `initial_delay` later;
//! - [`after_signed`]: what a signed result does to the follow-up;
//! - [`after_answer`]: what the worker does after each get_result answer (the schedule);
//! - [`manual`]: what `POST /api/v1/verifications/{biz_id}/fetch` may do.
//!
//! Why the schedule looks like this. FaceID serves a result at most three times within one
//! day, and a return GET is no evidence that the flow is over: it carries no signature, and
//! anyone who saw the URL (or the user, coming back early) can send it. So a non-final answer
//! means "not yet", never "call again right away":
//! - `NOT_STARTED`: the user has not even begun; the next call goes to the slow lane
//!   (`not_started_delay`);
//! - `PROCESSING` (or a status we do not know): the user is in the flow; re-checked sooner
//!   (`retry_delay`);
//! - the **last** call is held back until a final status is plausible: `flow_timeout` after
//!   a `PROCESSING`, or — after `NOT_STARTED`, or nothing known — `flow_timeout` before the
//!   window closes, by when FaceID has ended the flow one way or another (`TIMEOUT` is one of
//!   its final statuses). When images are wanted it always waits that long, since only
//!   get_result returns them: a signed final result makes it due at once instead
//!   ([`after_signed`]);
//! - trouble (concurrency limit, 5xx, timeouts) backs off `retry_delay × 2^(n−1)` with
//!   jitter, but never spends the held-back last call before its time.
//!
//! Invariants: no rule ever schedules a call at or after `window_ends_at` unless the window
//! is already over (the worker then expires the job without a call); spacing never refills
//! the budget (only the store counts calls).

use sha2::{Digest, Sha256};

use super::{Target, duration_ms};
use crate::config::FetchSettings;
use crate::protocol::biz_id::RESULT_RETENTION_MS;
use crate::protocol::{BizId, ErrorClass, Status};
use crate::store::{FetchInfo, FetchState, JobEffect, JobUpdate, NewJob};

/// When the one-day window of `key` ends (net of `safety_margin`), given when we first saw
/// it: one day after the time a biz_id carries, or after first sight for a RAW token or an
/// opaque id.
pub fn window_ends_at(fetch: &FetchSettings, key: &str, first_seen: i64) -> i64 {
    let margin = duration_ms(fetch.safety_margin);
    let from_first_sight = first_seen + RESULT_RETENTION_MS - margin;
    match Target::of(key) {
        Target::Raw(_) => from_first_sight,
        Target::Lite(_) => match BizId::from_signed(key) {
            Ok(id) => id.window_ends_at_ms(first_seen, margin),
            Err(_) => from_first_sight,
        },
    }
}

/// A new follow-up for `key` first seen at `now`: due after `initial_delay` (the notify
/// usually arrives meanwhile and makes the call unnecessary).
pub fn first_job(fetch: &FetchSettings, key: &str, now: i64) -> NewJob {
    NewJob {
        next_at: now.saturating_add(duration_ms(fetch.initial_delay)),
        window_ends_at: window_ends_at(fetch, key, now),
        return_image: fetch.return_image,
    }
}

/// What a signed result means for the follow-up of `key`: a final one makes a get_result
/// call unnecessary — unless images are wanted, which only get_result returns; then an `OK`
/// makes the job due now (even a held-back last call: the answer is known to be final).
pub fn after_signed(fetch: &FetchSettings, key: &str, status: &Status, now: i64) -> JobEffect {
    if fetch.return_image > 0 && *status == Status::Ok {
        JobEffect::Ensure(first_job(fetch, key, now))
    } else if status.is_final() {
        JobEffect::CancelPending
    } else {
        JobEffect::Keep
    }
}

/// Why a manual fetch cannot be scheduled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// All `max_calls` calls are spent.
    BudgetExhausted { max_calls: i32 },
    /// The one-day window is over.
    WindowClosed,
}

/// When a manual fetch makes the job due: now — it is the merchant's explicit request, and
/// may spend the call the schedule holds back. After a failed call (trouble upstream) the
/// backoff the worker scheduled stands, so repeating `POST …/fetch` while FaceID or the
/// network is in trouble cannot spend the budget in a burst; a held-back last call later
/// than any backoff (`retry_delay × 2^calls_used`) is brought forward to that bound.
pub fn manual(
    fetch: &FetchSettings,
    info: &FetchInfo,
    window_ends_at: i64,
    now: i64,
) -> Result<i64, Refusal> {
    if info.calls_used >= fetch.max_calls {
        return Err(Refusal::BudgetExhausted {
            max_calls: fetch.max_calls,
        });
    }
    if info.state == FetchState::Expired || now >= window_ends_at {
        return Err(Refusal::WindowClosed);
    }
    Ok(match (info.state, &info.last_error, info.next_at) {
        (FetchState::Pending, Some(_), Some(next_at)) if next_at > now => {
            let longest_backoff = duration_ms(fetch.retry_delay)
                .saturating_mul(1_i64 << info.calls_used.clamp(0, 30));
            next_at.min(now.saturating_add(longest_backoff))
        }
        _ => now,
    })
}

/// One call's answer, as the schedule sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer<'a> {
    /// A result, whatever its status.
    Result(&'a Status),
    /// No result: FaceID's error or trouble on the way, with its class and short code.
    Error { class: ErrorClass, code: &'a str },
}

/// The job as it stands after one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Turn<'a> {
    pub key: &'a str,
    /// When the answer came.
    pub now: i64,
    /// Calls spent, this one included.
    pub calls_used: i32,
    pub window_ends_at: i64,
    pub return_image: i32,
    /// The stored record's status rank before this call (0 nothing known, 1 not started, 2
    /// processing, 3 final): what is known when the answer itself taught nothing.
    pub known_rank: i32,
}

/// What the follow-up knows about where the user is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Progress {
    /// Nothing, or `NOT_STARTED`.
    NotStarted,
    /// `PROCESSING`, or a status we do not know.
    Processing,
    /// A final status is known (a signed `OK` while images are wanted).
    Final,
}

impl Progress {
    fn of_status(status: &Status) -> Self {
        match status {
            Status::NotStarted => Self::NotStarted,
            status if status.is_final() => Self::Final,
            _ => Self::Processing,
        }
    }

    fn of_rank(rank: i32) -> Self {
        match rank {
            i32::MIN..=1 => Self::NotStarted,
            2 => Self::Processing,
            _ => Self::Final,
        }
    }
}

/// The job's next turn after one call: the schedule (see the module header).
pub fn after_answer(fetch: &FetchSettings, turn: &Turn, answer: Answer) -> JobUpdate {
    let calls_left = fetch.max_calls - turn.calls_used;
    let finish = |state, last_error: Option<String>| JobUpdate::Finish { state, last_error };
    match answer {
        Answer::Result(status) if status.is_final() => finish(FetchState::Done, None),
        Answer::Result(status) if calls_left <= 0 => finish(
            FetchState::Exhausted,
            Some(format!("NOT_FINAL:{}", status.as_str())),
        ),
        Answer::Result(status) => {
            let progress = Progress::of_status(status);
            let next_at = if calls_left == 1 {
                held_last_call(fetch, turn, progress)
            } else {
                let delay = match progress {
                    Progress::NotStarted => fetch.not_started_delay,
                    _ => fetch.retry_delay,
                };
                spaced(
                    turn.now,
                    duration_ms(delay),
                    turn.window_ends_at,
                    calls_left,
                )
            };
            JobUpdate::Retry {
                next_at,
                last_error: None,
            }
        }
        Answer::Error { class, code } => {
            let code = Some(code.to_owned());
            match class {
                ErrorClass::NotFound => finish(FetchState::NotFound, code),
                ErrorClass::Destroyed => finish(FetchState::Expired, code),
                ErrorClass::Configuration | ErrorClass::Terminal => {
                    finish(FetchState::Failed, code)
                }
                ErrorClass::Transient if calls_left <= 0 => finish(FetchState::Exhausted, code),
                ErrorClass::Transient => {
                    let backoff = backoff_at(
                        turn.now,
                        turn.window_ends_at,
                        duration_ms(fetch.retry_delay),
                        turn.calls_used,
                        calls_left,
                        turn.key,
                    );
                    let next_at = if calls_left == 1 {
                        backoff.max(held_last_call(
                            fetch,
                            turn,
                            Progress::of_rank(turn.known_rank),
                        ))
                    } else {
                        backoff
                    };
                    JobUpdate::Retry {
                        next_at,
                        last_error: code,
                    }
                }
            }
        }
    }
}

/// When the last call may be made: once a final status is plausible.
fn held_last_call(fetch: &FetchSettings, turn: &Turn, progress: Progress) -> i64 {
    let flow_timeout = duration_ms(fetch.flow_timeout);
    // Late in the window FaceID has ended the flow one way or another.
    let window_end_slot = turn
        .now
        .max(turn.window_ends_at.saturating_sub(flow_timeout));
    match progress {
        Progress::Final => turn.now,
        // Only get_result returns images: never spend the last call on "not yet".
        _ if fetch.return_image > 0 => window_end_slot,
        Progress::Processing => turn.now.saturating_add(flow_timeout).min(window_end_slot),
        Progress::NotStarted => window_end_slot,
    }
}

/// The latest a next call may be made so that the `calls_left` remaining calls still fit
/// before the window's end, evenly spaced, with one spacing kept free at the end.
fn spacing_cap(now: i64, window_ends_at: i64, calls_left: i32) -> i64 {
    (window_ends_at.saturating_sub(now)).max(0) / i64::from(calls_left.max(0) + 1)
}

/// `now + delay`, but early enough that the remaining calls still fit in the window.
fn spaced(now: i64, delay_ms: i64, window_ends_at: i64, calls_left: i32) -> i64 {
    now.saturating_add(
        delay_ms
            .max(0)
            .min(spacing_cap(now, window_ends_at, calls_left)),
    )
}

/// When to call again after transient trouble: `retry_delay × 2^(calls_used − 1)` with ±25 %
/// jitter, capped like the other calls. The jitter is derived from the key and the call
/// number — stable for tests, yet different across biz_ids, so replicas that hit FaceID's
/// concurrency limit together do not come back together.
pub fn backoff_at(
    now: i64,
    window_ends_at: i64,
    retry_delay_ms: i64,
    calls_used: i32,
    calls_left: i32,
    key: &str,
) -> i64 {
    let exponent = (calls_used.max(1) - 1).min(30) as u32;
    let delay = retry_delay_ms.max(0).saturating_mul(1_i64 << exponent);
    let digest = Sha256::new()
        .chain_update(key.as_bytes())
        .chain_update(calls_used.to_be_bytes())
        .finalize();
    let spread = i64::from(u16::from_be_bytes([digest[0], digest[1]]) % 501); // 0..=500
    let jittered = delay.saturating_mul(750 + spread) / 1000;
    now.saturating_add(jittered.min(spacing_cap(now, window_ends_at, calls_left)))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const SECOND: i64 = 1_000;
    const MIN: i64 = 60 * SECOND;
    const HOUR: i64 = 60 * MIN;
    const DAY: i64 = 24 * HOUR;
    /// 2026-11-23T00:00:00Z, and a biz_id created then.
    const T0: i64 = 1_795_392_000_000;
    const KEY: &str = "1795392000,52b13fb5-8dfb-4537-a62b-a641d5e929f1";

    fn defaults() -> FetchSettings {
        let loaded = crate::config::Settings::load_from(
            &Default::default(),
            &std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config"),
        )
        .unwrap();
        loaded.settings.fetch
    }

    fn with_images() -> FetchSettings {
        FetchSettings {
            return_image: 4,
            ..defaults()
        }
    }

    /// The window of [`KEY`]: a day after its creation, less the 10-minute margin.
    const WINDOW_END: i64 = T0 + DAY - 10 * MIN;

    fn turn(now: i64, calls_used: i32, known_rank: i32, fetch: &FetchSettings) -> Turn<'static> {
        Turn {
            key: KEY,
            now,
            calls_used,
            window_ends_at: WINDOW_END,
            return_image: fetch.return_image,
            known_rank,
        }
    }

    fn next_at(update: JobUpdate) -> i64 {
        match update {
            JobUpdate::Retry { next_at, .. } => next_at,
            other => panic!("expected a retry, got {other:?}"),
        }
    }

    fn result(fetch: &FetchSettings, now: i64, calls_used: i32, status: Status) -> JobUpdate {
        after_answer(
            fetch,
            &turn(now, calls_used, 0, fetch),
            Answer::Result(&status),
        )
    }

    #[test]
    fn the_defaults_are_the_documented_schedule() {
        let f = defaults();
        assert_eq!(f.initial_delay, Duration::from_secs(5));
        assert_eq!(f.retry_delay, Duration::from_secs(60));
        assert_eq!(f.not_started_delay, Duration::from_secs(3600));
        assert_eq!(f.flow_timeout, Duration::from_secs(1800));
        assert_eq!(f.max_calls, 3);
        assert_eq!(f.max_calls_per_second, 5);
    }

    #[test]
    fn a_return_get_is_first_called_after_the_initial_delay_within_the_biz_id_day() {
        let job = first_job(&defaults(), KEY, T0 + HOUR);
        assert_eq!(job.next_at, T0 + HOUR + 5 * SECOND);
        assert_eq!(job.window_ends_at, WINDOW_END, "from the biz_id's own time");
        // A RAW token carries no time: its day starts at first sight.
        let raw = first_job(&defaults(), "raw:tok", T0 + HOUR);
        assert_eq!(raw.window_ends_at, T0 + HOUR + DAY - 10 * MIN);
    }

    #[test]
    fn not_started_goes_to_the_slow_lane_and_processing_is_rechecked_sooner() {
        let f = defaults();
        let now = T0 + 5 * SECOND;
        assert_eq!(next_at(result(&f, now, 1, Status::NotStarted)), now + HOUR);
        assert_eq!(next_at(result(&f, now, 1, Status::Processing)), now + MIN);
        assert_eq!(
            next_at(result(&f, now, 1, Status::Other("NEW".into()))),
            now + MIN,
            "an unknown status is treated as in progress"
        );
    }

    #[test]
    fn the_last_call_is_held_until_a_final_status_is_plausible() {
        let f = defaults();
        let now = T0 + HOUR;
        // After PROCESSING: the flow had flow_timeout to end.
        assert_eq!(
            next_at(result(&f, now, 2, Status::Processing)),
            now + 30 * MIN
        );
        // After NOT_STARTED: late in the window, when FaceID has ended the flow.
        assert_eq!(
            next_at(result(&f, now, 2, Status::NotStarted)),
            WINDOW_END - 30 * MIN
        );
        // Near the end of the window, the held call is never past it.
        let late = WINDOW_END - 10 * MIN;
        let at = next_at(result(&f, late, 2, Status::Processing));
        assert_eq!(at, late, "the window-end slot is already here");
        assert!(at < WINDOW_END);
    }

    #[test]
    fn with_images_wanted_the_last_call_waits_for_the_window_end_after_any_non_final_answer() {
        let f = with_images();
        let now = T0 + HOUR;
        for status in [Status::NotStarted, Status::Processing] {
            assert_eq!(
                next_at(result(&f, now, 2, status.clone())),
                WINDOW_END - 30 * MIN,
                "{status:?}"
            );
        }
        // Non-last calls follow the usual lanes.
        assert_eq!(next_at(result(&f, now, 1, Status::Processing)), now + MIN);
    }

    #[test]
    fn final_answers_end_the_job_and_a_spent_budget_exhausts_it() {
        let f = defaults();
        for status in ["OK", "Failed", "CANCELLED", "TIMEOUT", "WEBRTC_UNSUPPORTED"] {
            assert_eq!(
                result(&f, T0, 3, Status::parse(status)),
                JobUpdate::Finish {
                    state: FetchState::Done,
                    last_error: None
                },
                "{status}"
            );
        }
        assert_eq!(
            result(&f, T0, 3, Status::NotStarted),
            JobUpdate::Finish {
                state: FetchState::Exhausted,
                last_error: Some("NOT_FINAL:NOT_STARTED".into())
            }
        );
    }

    #[test]
    fn errors_end_in_their_state_and_trouble_backs_off_without_spending_the_held_call() {
        let f = defaults();
        let error = |calls_used, known_rank, class| {
            after_answer(
                &f,
                &turn(T0 + HOUR, calls_used, known_rank, &f),
                Answer::Error { class, code: "X" },
            )
        };
        let finished = |state| JobUpdate::Finish {
            state,
            last_error: Some("X".into()),
        };
        assert_eq!(
            error(1, 0, ErrorClass::NotFound),
            finished(FetchState::NotFound)
        );
        assert_eq!(
            error(1, 0, ErrorClass::Destroyed),
            finished(FetchState::Expired)
        );
        assert_eq!(
            error(1, 0, ErrorClass::Configuration),
            finished(FetchState::Failed)
        );
        assert_eq!(
            error(1, 0, ErrorClass::Terminal),
            finished(FetchState::Failed)
        );
        assert_eq!(
            error(3, 0, ErrorClass::Transient),
            finished(FetchState::Exhausted)
        );
        // Two calls left: backoff around retry_delay.
        let at = next_at(error(1, 0, ErrorClass::Transient)) - (T0 + HOUR);
        assert!((45 * SECOND..=75 * SECOND).contains(&at), "{at}");
        // One call left: held as the last known status says.
        assert_eq!(
            next_at(error(2, 1, ErrorClass::Transient)),
            WINDOW_END - 30 * MIN
        );
        assert_eq!(
            next_at(error(2, 2, ErrorClass::Transient)),
            T0 + HOUR + 30 * MIN
        );
        // A final status is known (a signed OK, images wanted): just the backoff.
        let at = next_at(error(2, 3, ErrorClass::Transient)) - (T0 + HOUR);
        assert!((90 * SECOND..=150 * SECOND).contains(&at), "{at}");
    }

    #[test]
    fn a_signed_result_cancels_keeps_or_wants_images_now() {
        let f = defaults();
        assert_eq!(
            after_signed(&f, KEY, &Status::Ok, T0),
            JobEffect::CancelPending
        );
        assert_eq!(
            after_signed(&f, KEY, &Status::Processing, T0),
            JobEffect::Keep
        );
        let f = with_images();
        assert_eq!(
            after_signed(&f, KEY, &Status::Ok, T0),
            JobEffect::Ensure(NewJob {
                next_at: T0 + 5 * SECOND,
                window_ends_at: WINDOW_END,
                return_image: 4
            })
        );
        assert_eq!(
            after_signed(&f, KEY, &Status::Failed, T0),
            JobEffect::CancelPending,
            "no images come with a failed flow"
        );
    }

    #[test]
    fn a_manual_fetch_is_due_now_unless_spent_closed_or_backing_off() {
        let f = defaults();
        let info = |state, calls_used, next_at, last_error: Option<&str>| FetchInfo {
            state,
            calls_used,
            next_at,
            last_error: last_error.map(str::to_owned),
        };
        let now = T0 + HOUR;
        assert_eq!(manual(&f, &FetchInfo::default(), WINDOW_END, now), Ok(now));
        // The held-back last call: the merchant's explicit request may spend it.
        let held = info(FetchState::Pending, 2, Some(WINDOW_END - 30 * MIN), None);
        assert_eq!(manual(&f, &held, WINDOW_END, now), Ok(now));
        // After trouble the backoff stands (the longest after one call: 1.25 minutes)...
        let soon = info(
            FetchState::Pending,
            1,
            Some(now + 75 * SECOND),
            Some("HTTP 502"),
        );
        assert_eq!(manual(&f, &soon, WINDOW_END, now), Ok(now + 75 * SECOND));
        // ...but a held-back last call is brought forward to the longest backoff.
        let far = info(
            FetchState::Pending,
            2,
            Some(now + 5 * HOUR),
            Some("HTTP 502"),
        );
        assert_eq!(manual(&f, &far, WINDOW_END, now), Ok(now + 4 * MIN));
        assert_eq!(
            manual(
                &f,
                &info(FetchState::Exhausted, 3, None, None),
                WINDOW_END,
                now
            ),
            Err(Refusal::BudgetExhausted { max_calls: 3 })
        );
        assert_eq!(
            manual(&f, &FetchInfo::default(), WINDOW_END, WINDOW_END),
            Err(Refusal::WindowClosed)
        );
        assert_eq!(
            manual(
                &f,
                &info(FetchState::Expired, 1, None, None),
                WINDOW_END,
                now
            ),
            Err(Refusal::WindowClosed)
        );
    }

    #[test]
    fn calls_near_the_window_end_leave_room_for_the_remaining_ones() {
        let f = defaults();
        // Ten minutes left, two calls left: the next one within a third of it.
        let now = WINDOW_END - 10 * MIN;
        let at = next_at(result(&f, now, 1, Status::NotStarted));
        assert_eq!(at, now + 10 * MIN / 3);
        assert!(at < WINDOW_END);
    }

    #[test]
    fn backoff_is_jittered_deterministically_within_a_quarter() {
        let a = backoff_at(0, DAY, MIN, 1, 2, "1462259748,a");
        let b = backoff_at(0, DAY, MIN, 1, 2, "1462259748,a");
        assert_eq!(a, b, "same key and call: same delay");
        let spread: std::collections::HashSet<i64> = (0..50)
            .map(|i| backoff_at(0, DAY, MIN, 1, 2, &format!("1462259748,{i}")))
            .collect();
        assert!(spread.len() > 10, "different keys spread out");
        for at in spread {
            assert!((MIN * 3 / 4..=MIN * 5 / 4).contains(&at), "{at}");
        }
        let second = backoff_at(0, DAY, MIN, 2, 1, "1462259748,a");
        assert!((2 * MIN * 3 / 4..=2 * MIN * 5 / 4).contains(&second));
        assert!(backoff_at(DAY - MIN, DAY, 60 * MIN, 2, 1, "k") < DAY);
    }
}
