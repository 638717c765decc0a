//! `[fetch]`: the follow-up schedule and budget (what `fetcher::plan` applies).
//!
//! Rules: 1 to 3 calls per biz_id (FaceID serves a result at most 3 times); `return_image` 0
//! to 6; at least one call per second; a flow timeout and a lease of at least 1 s, and a lease
//! that outlives a call, its margins and its wait for a turn under the ceiling (the worker
//! never calls under a shorter one: another replica could start a second call on the same
//! biz_id while the first is in flight).
//!
//! The files' shape is this type itself: every key passes through as written.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{ConfigError, Section};

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct FetchSettings {
    #[serde(with = "humantime_serde")]
    pub initial_delay: Duration,
    #[serde(with = "humantime_serde")]
    pub retry_delay: Duration,
    /// The slow lane: the next call after a `NOT_STARTED` answer (the GET came early).
    #[serde(with = "humantime_serde")]
    pub not_started_delay: Duration,
    /// How long a started H5 flow may still take to end; the held-back last call comes this
    /// long after a `PROCESSING` answer, or this long before the window closes.
    #[serde(with = "humantime_serde")]
    pub flow_timeout: Duration,
    pub max_calls: i32,
    pub return_image: i32,
    #[serde(with = "humantime_serde")]
    pub safety_margin: Duration,
    #[serde(with = "humantime_serde")]
    pub lease: Duration,
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    /// Ceiling on get_result calls per second, per replica (all biz_ids together).
    pub max_calls_per_second: u32,
}

impl FetchSettings {
    /// `megvii_timeout` bounds one call, which the lease must outlive.
    pub(super) fn validate(
        &self,
        megvii_timeout: Duration,
        at: Section,
    ) -> Result<(), ConfigError> {
        if !(1..=3).contains(&self.max_calls) {
            return Err(at.invalid(
                "max_calls",
                "must be 1, 2 or 3 (FaceID serves a result at most 3 times)",
            ));
        }
        if !(0..=6).contains(&self.return_image) {
            return Err(at.invalid("return_image", "must be between 0 and 6"));
        }
        if self.max_calls_per_second == 0 {
            return Err(at.invalid("max_calls_per_second", "must be at least 1"));
        }
        for (field, duration) in [("flow_timeout", self.flow_timeout), ("lease", self.lease)] {
            if duration < Duration::from_secs(1) {
                return Err(at.invalid(field, "must be at least 1s"));
            }
        }
        // The worker counts a call only while its lease outlives the call by two margins
        // (`fetcher::CALL_MARGIN`), after the job's turn under the ceiling (up to a pass's
        // worth of calls): a shorter lease would leave the last jobs of a pass, or every job,
        // never called.
        let turn_wait = Duration::from_secs(crate::fetcher::DEFAULT_BATCH as u64)
            / self.max_calls_per_second.max(1);
        let needed = megvii_timeout + 2 * crate::fetcher::CALL_MARGIN + turn_wait;
        if self.lease <= needed {
            return Err(at.invalid(
                "lease",
                format!(
                    "must be longer than megvii.timeout plus {} and {} calls at fetch.max_calls_per_second ({})",
                    humantime::format_duration(2 * crate::fetcher::CALL_MARGIN),
                    crate::fetcher::DEFAULT_BATCH,
                    humantime::format_duration(needed)
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{load, load_error};

    #[test]
    fn follow_up_bounds_have_defaults_and_are_checked() {
        let s = load(&[]).unwrap().settings;
        assert_eq!(
            (s.server.return_get_per_minute, s.server.return_get_burst),
            (60, 20)
        );
        assert_eq!(s.fetch.max_calls_per_second, 5);
        for (var, value, key) in [
            (
                "APP__FETCH__MAX_CALLS_PER_SECOND",
                "0",
                "fetch.max_calls_per_second",
            ),
            ("APP__FETCH__FLOW_TIMEOUT", "0s", "fetch.flow_timeout"),
            (
                "APP__SERVER__RETURN_GET_BURST",
                "0",
                "server.return_get_burst",
            ),
        ] {
            let error = load_error(&[(var, value)]);
            assert!(
                error.contains(key) || error.contains(var),
                "{var}={value}: {error}"
            );
        }
        // A 25 s lease cannot cover a 15 s call and its 2 s of margins after 8 turns at one
        // call a second.
        let error = load_error(&[
            ("APP__FETCH__MAX_CALLS_PER_SECOND", "1"),
            ("APP__FETCH__LEASE", "25s"),
        ]);
        assert!(
            error.contains("fetch.lease") && error.contains("25s"),
            "{error}"
        );
        let off = load(&[
            ("APP__SERVER__RETURN_GET_PER_MINUTE", "0"),
            ("APP__SERVER__RETURN_GET_BURST", "0"),
        ]);
        assert!(off.is_ok(), "0 disables the return GET limit");
    }
}
