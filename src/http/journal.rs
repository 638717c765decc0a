//! What the callback journal keeps of a delivery nobody vouched for: a refused one (forged,
//! malformed, oversized) or an unsigned return GET. Strangers choose those bytes, so they must
//! not be able to fill the disk with them; yet a small delivery refused for a configuration
//! mistake (a wrong `megvii.api_secret`) must stay whole, so that an operator can look at it
//! or replay it once the mistake is fixed.
//!
//! Rule: such a body is kept whole when it is at most [`WHOLE_BODY_MAX`] bytes and today's
//! whole bodies (UTC day, by the injected clock) stay within `retention.refused_bytes_per_day`;
//! otherwise only its first [`PREFIX_LEN`] bytes. The journal row always records the full
//! length and the sha256 of the whole body, so "kept whole" reads as `length(body) =
//! body_len`. A signed (verified) delivery is FaceID's and is always kept whole.
//!
//! Invariant: the quota is per process (replicas each have their own) and only ever admits
//! whole bodies; it never refuses a delivery, it only decides how much of it is written.

use std::sync::Mutex;

/// Largest refused body journaled whole.
pub const WHOLE_BODY_MAX: usize = 64 * 1024;

/// How much of a body that is not kept whole is kept.
pub const PREFIX_LEN: usize = 1024;

const DAY_MS: i64 = 86_400_000;

/// The daily budget of whole refused bodies. Cheap to share (one lock held for a few
/// arithmetic operations).
#[derive(Debug)]
pub struct RefusedQuota {
    bytes_per_day: u64,
    used: Mutex<Used>,
}

#[derive(Debug, Default)]
struct Used {
    /// Days since the epoch (UTC) the count belongs to.
    day: i64,
    bytes: u64,
}

impl RefusedQuota {
    pub fn new(bytes_per_day: u64) -> Self {
        Self {
            bytes_per_day,
            used: Mutex::new(Used::default()),
        }
    }

    /// The part of `body` to journal for an unverified delivery received at `now_ms`:
    /// all of it when it fits (and it is then counted), else its first [`PREFIX_LEN`] bytes.
    pub fn keep<'a>(&self, body: &'a [u8], now_ms: i64) -> &'a [u8] {
        if self.admit(body.len(), now_ms) {
            body
        } else {
            &body[..body.len().min(PREFIX_LEN)]
        }
    }

    fn admit(&self, len: usize, now_ms: i64) -> bool {
        if len > WHOLE_BODY_MAX {
            return false;
        }
        let day = now_ms.div_euclid(DAY_MS);
        // A poisoned lock only means another request panicked mid-count: the count is
        // still a number, keep using it.
        let mut used = self.used.lock().unwrap_or_else(|p| p.into_inner());
        if used.day != day {
            *used = Used { day, bytes: 0 };
        }
        let after = used.bytes.saturating_add(len as u64);
        if after > self.bytes_per_day {
            return false;
        }
        used.bytes = after;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOON: i64 = 20_000 * DAY_MS + DAY_MS / 2;

    #[test]
    fn small_bodies_are_whole_until_the_day_s_quota_is_spent_then_cut() {
        let quota = RefusedQuota::new(10_000);
        let body = vec![b'x'; 4_000];
        assert_eq!(quota.keep(&body, NOON).len(), 4_000);
        assert_eq!(quota.keep(&body, NOON).len(), 4_000);
        assert_eq!(quota.keep(&body, NOON).len(), PREFIX_LEN, "12 000 > 10 000");
        // What still fits today is still whole.
        assert_eq!(quota.keep(&body[..2_000], NOON).len(), 2_000);
        // A new UTC day, a new quota.
        assert_eq!(quota.keep(&body, NOON + DAY_MS / 2).len(), 4_000);
    }

    #[test]
    fn a_body_over_64_kib_is_cut_even_with_quota_left_and_costs_none_of_it() {
        let quota = RefusedQuota::new(1 << 30);
        let big = vec![b'x'; WHOLE_BODY_MAX + 1];
        assert_eq!(quota.keep(&big, NOON), &big[..PREFIX_LEN]);
        let limit = vec![b'x'; WHOLE_BODY_MAX];
        assert_eq!(quota.keep(&limit, NOON).len(), WHOLE_BODY_MAX);
        let tiny_quota = RefusedQuota::new(10);
        assert_eq!(tiny_quota.keep(&big, NOON).len(), PREFIX_LEN);
        assert_eq!(
            tiny_quota.keep(b"0123456789", NOON).len(),
            10,
            "quota unspent"
        );
    }

    #[test]
    fn short_bodies_that_are_cut_keep_what_they_have() {
        let quota = RefusedQuota::new(0);
        assert_eq!(quota.keep(b"abc", NOON), b"abc");
        assert_eq!(quota.keep(b"", NOON), b"");
    }
}
