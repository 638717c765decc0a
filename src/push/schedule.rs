//! When a push is tried again, and when an endpoint that keeps failing is disabled: rules as
//! pure functions of (attempt number, now, a stable jitter seed), like
//! [`crate::fetcher::job`]'s `next_poll_at`.
//!
//! The schedule (the one Svix documents, which merchants already know) gives each delivery
//! eight attempts over about 27½ hours:
//!
//! | attempt | after the previous one failed |
//! |---|---|
//! | 1 | immediately (when the event is committed) |
//! | 2 | 5 s |
//! | 3 | 5 min |
//! | 4 | 30 min |
//! | 5 | 2 h |
//! | 6 | 5 h |
//! | 7 | 10 h |
//! | 8 | 10 h |
//!
//! Every delay but the first is jittered by up to ±20 %, so the deliveries that failed
//! together (an endpoint down for an hour) do not all come back in the same second. The
//! jitter is deterministic: a hash of the delivery's seed ([`JitterSeed::of`] the event and
//! the endpoint) and the attempt number, so a restarted dispatcher computes the same time
//! and tests can assert it. After the 8th failed attempt the delivery gives up (`failed`);
//! `POST /api/v1/events/{id}/retry` can start it again.
//!
//! Separately, an endpoint that has not had a single successful delivery for
//! `push.disable_after` (default 5 days: longer than one delivery's schedule, so only an
//! endpoint that fails event after event gets there) is disabled ([`disable_due`]).
//!
//! Invariants: pure, no clock and no randomness of its own; times are epoch ms; a delay
//! never overflows (saturating arithmetic).

use std::time::Duration;

use sha2::{Digest, Sha256};

const SECOND: u64 = 1;
const MINUTE: u64 = 60 * SECOND;
const HOUR: u64 = 60 * MINUTE;

/// Delay before each attempt (index 0 is attempt 1), before jitter.
pub const SCHEDULE: [Duration; 8] = [
    Duration::ZERO,
    Duration::from_secs(5 * SECOND),
    Duration::from_secs(5 * MINUTE),
    Duration::from_secs(30 * MINUTE),
    Duration::from_secs(2 * HOUR),
    Duration::from_secs(5 * HOUR),
    Duration::from_secs(10 * HOUR),
    Duration::from_secs(10 * HOUR),
];

/// Attempts per delivery before it gives up.
pub const MAX_ATTEMPTS: u32 = SCHEDULE.len() as u32;

/// Largest jitter, in percent of the delay, either way.
pub const JITTER_PERCENT: u64 = 20;

/// `push.disable_after`'s default.
pub const DEFAULT_DISABLE_AFTER: Duration = Duration::from_secs(5 * 24 * HOUR);

/// Picks a delivery's jitter. The same delivery always gets the same seed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JitterSeed(u64);

impl JitterSeed {
    /// The seed of the delivery of `event_id` to `endpoint_id`. SHA-256 rather than std's
    /// hasher, whose output may change between Rust releases (and with it, stored schedules).
    pub fn of(event_id: &str, endpoint_id: &str) -> Self {
        let digest = Sha256::new()
            .chain_update(event_id.as_bytes())
            .chain_update([0])
            .chain_update(endpoint_id.as_bytes())
            .finalize();
        Self(u64::from_le_bytes(digest[..8].try_into().expect("8 bytes")))
    }

    /// A fraction of the jitter range for `attempt`, in ten-thousandths within
    /// `[-JITTER_PERCENT × 100, +JITTER_PERCENT × 100]`.
    fn offset(self, attempt: u32) -> i64 {
        let digest = Sha256::new()
            .chain_update(self.0.to_le_bytes())
            .chain_update(attempt.to_le_bytes())
            .finalize();
        let draw = u64::from_le_bytes(digest[..8].try_into().expect("8 bytes"));
        let span = JITTER_PERCENT * 100 * 2 + 1;
        (draw % span) as i64 - (JITTER_PERCENT * 100) as i64
    }
}

/// The delay before `attempt` (1-based), jittered; `None` past [`MAX_ATTEMPTS`] (and for 0).
pub fn delay(attempt: u32, seed: JitterSeed) -> Option<Duration> {
    let index = usize::try_from(attempt.checked_sub(1)?).ok()?;
    let base = *SCHEDULE.get(index)?;
    let base_ms = u64::try_from(base.as_millis()).unwrap_or(u64::MAX);
    let factor = 10_000 + seed.offset(attempt);
    let jittered = u128::from(base_ms) * factor as u128 / 10_000;
    Some(Duration::from_millis(
        u64::try_from(jittered).unwrap_or(u64::MAX),
    ))
}

/// When the next attempt is due, given that attempt number `failed` (1-based) has just
/// failed at `now_ms`; `None` when that was the last one and the delivery gives up.
pub fn next_attempt_at(failed: u32, now_ms: i64, seed: JitterSeed) -> Option<i64> {
    let wait = delay(failed.checked_add(1)?, seed)?;
    let wait_ms = i64::try_from(wait.as_millis()).unwrap_or(i64::MAX);
    Some(now_ms.saturating_add(wait_ms))
}

/// Whether an endpoint with no success since `failing_since_ms` (the first failure after
/// its last success; `None` while it is healthy) is to be disabled at `now_ms`.
pub fn disable_due(failing_since_ms: Option<i64>, now_ms: i64, disable_after: Duration) -> bool {
    let after_ms = i64::try_from(disable_after.as_millis()).unwrap_or(i64::MAX);
    failing_since_ms.is_some_and(|since| now_ms.saturating_sub(since) >= after_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(d: Duration) -> i64 {
        d.as_millis() as i64
    }

    #[test]
    fn the_first_attempt_is_immediate_and_there_are_eight() {
        let seed = JitterSeed::of("evt_1", "ep_1");

        assert_eq!(delay(1, seed), Some(Duration::ZERO));
        assert!(delay(8, seed).is_some());
        assert_eq!(delay(9, seed), None);
        assert_eq!(delay(0, seed), None);
        assert_eq!(
            next_attempt_at(8, 0, seed),
            None,
            "the 8th failure gives up"
        );
        assert_eq!(next_attempt_at(u32::MAX, 0, seed), None);
    }

    #[test]
    fn every_delay_stays_within_twenty_percent_of_the_schedule() {
        for n in 0..500 {
            let seed = JitterSeed::of(&format!("evt_{n}"), "ep");
            for (i, base) in SCHEDULE.iter().enumerate() {
                let got = delay(i as u32 + 1, seed).unwrap();
                let (low, high) = (base.mul_f64(0.8), base.mul_f64(1.2));
                assert!(
                    got >= low && got <= high,
                    "attempt {} seed {n}: {got:?} outside {low:?}..={high:?}",
                    i + 1
                );
            }
        }
    }

    #[test]
    fn the_jitter_is_fixed_per_delivery_and_attempt() {
        let seed = JitterSeed::of("evt_7f3a", "ep_42");

        // The exact values: a changed formula would move every stored schedule.
        let got: Vec<u128> = (1..=8)
            .map(|a| delay(a, seed).unwrap().as_millis())
            .collect();
        assert_eq!(got, expected_for_evt_7f3a_ep_42());
        assert_eq!(JitterSeed::of("evt_7f3a", "ep_42"), seed);
        assert_ne!(JitterSeed::of("evt_7f3a", "ep_43"), seed);
        assert_ne!(
            JitterSeed::of("evt_7f3", "aep_42"),
            seed,
            "the separator keeps the two parts apart"
        );
    }

    /// The formula recomputed independently (a few lines of Python's hashlib over the same
    /// bytes: seed = first 8 bytes LE of sha256("evt_7f3a\0ep_42"); offset = first 8 bytes LE
    /// of sha256(seed LE ‖ attempt LE u32) mod 4001 − 2000, in ten-thousandths).
    fn expected_for_evt_7f3a_ep_42() -> Vec<u128> {
        vec![
            0, 5_703, 242_250, 1_565_820, 6_144_480, 15_120_000, 40_233_600, 35_769_600,
        ]
    }

    #[test]
    fn the_jitter_spreads_deliveries_that_failed_together() {
        let times: std::collections::BTreeSet<i64> = (0..100)
            .map(|n| next_attempt_at(3, 0, JitterSeed::of(&format!("evt_{n}"), "ep")).unwrap())
            .collect();

        // 100 deliveries retried "30 min later" land on (nearly) 100 different milliseconds
        // spread over more than ten minutes.
        assert!(times.len() > 95, "{}", times.len());
        let spread = times.last().unwrap() - times.first().unwrap();
        assert!(spread > ms(Duration::from_secs(10 * 60)), "{spread}");
    }

    #[test]
    fn the_whole_schedule_spans_about_a_day() {
        let seed = JitterSeed::of("evt_1", "ep_1");
        let mut at = 0;
        for failed in 1..MAX_ATTEMPTS {
            at = next_attempt_at(failed, at, seed).unwrap();
        }

        let unjittered: Duration = SCHEDULE.iter().sum();
        assert_eq!(unjittered, Duration::from_secs(27 * 3600 + 35 * 60 + 5));
        assert!(
            at >= ms(unjittered.mul_f64(0.8)) && at <= ms(unjittered.mul_f64(1.2)),
            "{at}"
        );
    }

    #[test]
    fn next_attempt_is_measured_from_the_failure() {
        let seed = JitterSeed::of("evt_1", "ep_1");
        let now = 1_700_000_000_000;

        assert_eq!(
            next_attempt_at(1, now, seed),
            Some(now + ms(delay(2, seed).unwrap()))
        );
        assert_eq!(
            next_attempt_at(1, i64::MAX, seed),
            Some(i64::MAX),
            "saturates"
        );
    }

    #[test]
    fn an_endpoint_is_disabled_after_failing_continuously_for_disable_after() {
        let day = 24 * 3600 * 1000;
        let after = DEFAULT_DISABLE_AFTER;

        assert!(!disable_due(None, 100 * day, after), "healthy");
        assert!(!disable_due(Some(0), 5 * day - 1, after));
        assert!(disable_due(Some(0), 5 * day, after));
        assert!(disable_due(Some(i64::MIN), 0, after), "no overflow");
        assert!(
            !disable_due(Some(10 * day), 0, after),
            "a future start is not due"
        );
    }
}
