//! `[retention]`: how long identity data, and what strangers send, is kept; `0` days keeps it
//! forever. Rule: `serve` purges at least every second (`interval` of at least 1 s).
//!
//! The files' shape is this type itself: every key passes through as written.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{ConfigError, Section};

/// How long identity data, and what strangers send, is kept. `0` days keeps it forever.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct RetentionSettings {
    /// Raw results and images of verifications older than this are purged.
    pub result_days: u32,
    /// Journal bodies older than this are emptied.
    pub journal_days: u32,
    /// Refused deliveries (journal rows with outcome `rejected`) older than this are deleted.
    pub refused_days: u32,
    /// Console audit rows (sign-ins, refusals, actions) older than this are deleted.
    pub console_audit_days: u32,
    /// Push events older than this are deleted with their deliveries and attempts, once
    /// published and with no delivery still pending.
    pub push_days: u32,
    /// Bytes of refused bodies (and unsigned return GET queries) journaled whole per UTC day;
    /// past it, and for any body over [`crate::http::journal::WHOLE_BODY_MAX`], only the first
    /// KiB is kept (with the full length and sha256).
    pub refused_bytes_per_day: u64,
    /// How often `serve` purges.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
}

/// What retention removes at one instant: the cutoff (epoch ms) of each kind of data, `None`
/// for "keep forever".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cutoffs {
    pub results: Option<i64>,
    pub journal: Option<i64>,
    pub refused: Option<i64>,
    pub console_audit: Option<i64>,
    pub push: Option<i64>,
}

impl RetentionSettings {
    /// Whether anything is ever purged.
    pub fn enabled(&self) -> bool {
        self.result_days > 0
            || self.journal_days > 0
            || self.refused_days > 0
            || self.console_audit_days > 0
            || self.push_days > 0
    }

    /// The cutoffs at `now` (epoch ms).
    pub fn cutoffs(&self, now: i64) -> Cutoffs {
        const DAY_MS: i64 = 86_400_000;
        let cutoff = |days: u32| (days > 0).then(|| now - i64::from(days) * DAY_MS);
        Cutoffs {
            results: cutoff(self.result_days),
            journal: cutoff(self.journal_days),
            refused: cutoff(self.refused_days),
            console_audit: cutoff(self.console_audit_days),
            push: cutoff(self.push_days),
        }
    }

    pub(super) fn validate(&self, at: Section) -> Result<(), ConfigError> {
        if self.interval < Duration::from_secs(1) {
            return Err(at.invalid("interval", "must be at least 1s"));
        }
        Ok(())
    }
}
