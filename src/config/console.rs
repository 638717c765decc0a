//! `[console]`: the operator console (`/console`, see `src/console/`): whether it is served,
//! how long a session lives, and how fast one client may try to sign in.
//!
//! Rules: the idle timeout is at least 1 minute and at most the absolute timeout; the
//! absolute timeout is at most 7 days. The files' shape is this type itself: every key
//! passes through as written.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{ConfigError, Section};

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ConsoleSettings {
    /// Serve `/console` (off by default: only tokens with the `console` scope can sign in).
    pub enabled: bool,
    /// A session unused this long is over.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// A session is over this long after sign-in, however busy.
    #[serde(with = "humantime_serde")]
    pub absolute_timeout: Duration,
    /// Sign-in attempts per client IP: a steady rate per minute (0 disables the limit)…
    pub sign_in_per_minute: u32,
    /// …with bursts of up to this many.
    pub sign_in_burst: u32,
}

impl ConsoleSettings {
    pub(super) fn validate(&self, at: Section) -> Result<(), ConfigError> {
        if self.idle_timeout < Duration::from_secs(60) {
            return Err(at.invalid("idle_timeout", "must be at least 1m"));
        }
        if self.absolute_timeout > Duration::from_secs(7 * 86_400) {
            return Err(at.invalid("absolute_timeout", "must be at most 7 days"));
        }
        if self.idle_timeout > self.absolute_timeout {
            return Err(at.invalid(
                "idle_timeout",
                "must not be longer than console.absolute_timeout",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{load, load_error};

    #[test]
    fn off_by_default_and_timeouts_must_nest() {
        let console = load(&[]).unwrap().settings.console;
        assert!(!console.enabled);
        assert!(console.idle_timeout <= console.absolute_timeout);
        let error = load_error(&[
            ("APP__CONSOLE__IDLE_TIMEOUT", "2h"),
            ("APP__CONSOLE__ABSOLUTE_TIMEOUT", "1h"),
        ]);
        assert!(error.contains("console.idle_timeout"), "{error}");
        let error = load_error(&[("APP__CONSOLE__IDLE_TIMEOUT", "10s")]);
        assert!(error.contains("at least 1m"), "{error}");
    }
}
