//! `biz_id`: FaceID's identifier for one verification, e.g.
//! `1462259748,52b13fb5-8dfb-4537-a62b-a641d5e929f1`.
//!
//! The leading number is the creation time in epoch seconds; FaceID keeps the result for one
//! day from then, so it bounds when get_result may still be called. Two levels of trust:
//! - [`BizId::parse`] is strict (epoch seconds, a comma, an id of URL-safe characters) and is
//!   what an unsigned return GET must satisfy;
//! - [`BizId::from_signed`] accepts any reasonable text from a *signed* result, because a
//!   verified result must never be dropped over an odd shape; its window then starts at the
//!   time we first saw it.

use std::fmt;

/// One day, FaceID's retention for get_result.
pub const RESULT_RETENTION_MS: i64 = 24 * 60 * 60 * 1000;
/// FaceID serves a result at most this many times; the next call answers `DATA_DESTROYED`.
pub const RESULT_MAX_CALLS: u32 = 3;
/// Upper bound on a stored biz_id, generous next to FaceID's ~48 characters.
pub const MAX_LEN: usize = 160;

#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BizId(String);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BizIdError {
    #[error("biz_id is empty")]
    Empty,
    #[error("biz_id is longer than {MAX_LEN} characters")]
    TooLong,
    #[error("biz_id must look like <epoch seconds>,<id>")]
    Shape,
    #[error("biz_id contains control characters")]
    Control,
}

impl BizId {
    /// Strict parse: `<epoch seconds>,<id>` where the seconds are 9–11 digits and the id is
    /// 1–128 characters of `[A-Za-z0-9_-]`.
    pub fn parse(text: &str) -> Result<Self, BizIdError> {
        if text.is_empty() {
            return Err(BizIdError::Empty);
        }
        if text.len() > MAX_LEN {
            return Err(BizIdError::TooLong);
        }
        let (secs, id) = text.split_once(',').ok_or(BizIdError::Shape)?;
        let secs_ok = (9..=11).contains(&secs.len()) && secs.bytes().all(|b| b.is_ascii_digit());
        let id_ok = (1..=128).contains(&id.len())
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if secs_ok && id_ok {
            Ok(Self(text.to_owned()))
        } else {
            Err(BizIdError::Shape)
        }
    }

    /// Lenient parse for a biz_id inside a signed result: non-empty, bounded, no control
    /// characters. Anything stricter would drop verified results.
    pub fn from_signed(text: &str) -> Result<Self, BizIdError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(BizIdError::Empty);
        }
        if text.len() > MAX_LEN {
            return Err(BizIdError::TooLong);
        }
        if text.chars().any(char::is_control) {
            return Err(BizIdError::Control);
        }
        Ok(Self(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The creation time FaceID encoded in the biz_id, in epoch milliseconds, if it has one.
    pub fn created_at_ms(&self) -> Option<i64> {
        let (secs, _) = self.0.split_once(',')?;
        if secs.is_empty() || secs.len() > 11 || !secs.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        secs.parse::<i64>().ok().map(|s| s * 1000)
    }

    /// When FaceID forgets the result: one day after creation (or after `first_seen_ms` when
    /// the biz_id carries no time), minus `safety_margin_ms` so that clock skew between us and
    /// FaceID never makes us spend a call on a result that is already gone.
    pub fn window_ends_at_ms(&self, first_seen_ms: i64, safety_margin_ms: i64) -> i64 {
        let start = self.created_at_ms().unwrap_or(first_seen_ms);
        // A biz_id claiming to be from the future cannot extend the window past first sight.
        let start = start.min(first_seen_ms);
        start + RESULT_RETENTION_MS - safety_margin_ms
    }
}

impl fmt::Display for BizId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for BizId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BizId({})", self.0)
    }
}

impl AsRef<str> for BizId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED: &str = "1462259748,52b13fb5-8dfb-4537-a62b-a641d5e929f1";

    #[test]
    fn the_seed_biz_id_parses_and_carries_its_creation_time() {
        let id = BizId::parse(SEED).unwrap();
        assert_eq!(id.as_str(), SEED);
        assert_eq!(id.created_at_ms(), Some(1_462_259_748_000));
    }

    #[test]
    fn strict_parse_refuses_garbage() {
        let cases = [
            ("", BizIdError::Empty),
            ("hello", BizIdError::Shape),
            // The callback document's own GET example lost its comma; it is not a biz_id.
            (
                "146225974852b13fb5-8dfb-4537-a62b-a641d5e929f1",
                BizIdError::Shape,
            ),
            ("abc,52b13fb5", BizIdError::Shape),
            ("1462259748,", BizIdError::Shape),
            ("1462259748,<script>", BizIdError::Shape),
            ("1462259748,a b", BizIdError::Shape),
            ("1462259748,a,b", BizIdError::Shape),
            ("12,abc", BizIdError::Shape),
        ];
        for (text, want) in cases {
            assert_eq!(BizId::parse(text), Err(want), "input {text:?}");
        }
        assert_eq!(
            BizId::parse(&format!("1462259748,{}", "a".repeat(200))),
            Err(BizIdError::TooLong)
        );
    }

    #[test]
    fn signed_biz_ids_are_accepted_leniently_but_bounded() {
        assert!(BizId::from_signed("no-comma-here").is_ok());
        assert_eq!(BizId::from_signed("  "), Err(BizIdError::Empty));
        assert_eq!(BizId::from_signed("a\nb"), Err(BizIdError::Control));
        assert_eq!(
            BizId::from_signed(&"x".repeat(MAX_LEN + 1)),
            Err(BizIdError::TooLong)
        );
    }

    #[test]
    fn window_is_one_day_from_the_biz_id_time_minus_the_margin() {
        let id = BizId::parse(SEED).unwrap();
        let seen = 1_462_259_800_000;
        assert_eq!(
            id.window_ends_at_ms(seen, 600_000),
            1_462_259_748_000 + RESULT_RETENTION_MS - 600_000
        );
    }

    #[test]
    fn window_without_a_time_starts_at_first_sight() {
        let id = BizId::from_signed("opaque-id").unwrap();
        assert_eq!(id.window_ends_at_ms(5_000, 0), 5_000 + RESULT_RETENTION_MS);
    }

    #[test]
    fn a_biz_id_from_the_future_does_not_extend_the_window() {
        let id = BizId::parse("9999999999,abc").unwrap();
        assert_eq!(id.window_ends_at_ms(1_000, 0), 1_000 + RESULT_RETENTION_MS);
    }
}
