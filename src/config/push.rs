//! `[push]`: pushing outcomes to the merchant's endpoints (`crate::push`), and the event
//! stream.
//!
//! Rules: timeouts of at least 100 ms, the total one no shorter than the connect one; a
//! concurrency of 1 to 64 and a poll interval of 10 ms to 1 min; at least one endpoint and one
//! stream; `disable_after` of at least 1 min. `allow_private_targets` also allows `http://`
//! URLs: it is for development (the development profile sets it), where the endpoint is a
//! `faceid-sim listen` on this machine.
//!
//! The files' shape is this type itself: every key passes through as written.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{ConfigError, Section};
use crate::push::{ClientSettings, TargetPolicy};

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct PushSettings {
    /// Deliver events to the endpoints (`false`: events are still written and can be pulled).
    pub enabled: bool,
    /// Reach loopback, private, link-local and metadata addresses, over `http` too.
    pub allow_private_targets: bool,
    /// An endpoint with no successful delivery for this long is disabled.
    #[serde(with = "humantime_serde")]
    pub disable_after: Duration,
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// One attempt, from the request to the end of the (capped) answer.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Attempts in flight at once, per replica.
    pub concurrency: u32,
    /// How often the dispatcher looks for new events and due retries.
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    /// Most endpoints that may be registered.
    pub max_endpoints: u32,
    /// Most `GET /api/v1/events/stream` connections open at once, per replica.
    pub max_streams: u32,
}

impl PushSettings {
    pub(super) fn validate(&self, at: Section) -> Result<(), ConfigError> {
        for (field, value) in [
            ("connect_timeout", self.connect_timeout),
            ("timeout", self.timeout),
        ] {
            if value < Duration::from_millis(100) {
                return Err(at.invalid(field, "must be at least 100ms"));
            }
        }
        if self.timeout < self.connect_timeout {
            return Err(at.invalid("timeout", "must not be shorter than push.connect_timeout"));
        }
        if !(1..=64).contains(&self.concurrency) {
            return Err(at.invalid("concurrency", "must be between 1 and 64"));
        }
        if !(Duration::from_millis(10)..=Duration::from_secs(60)).contains(&self.poll_interval) {
            return Err(at.invalid("poll_interval", "must be between 10ms and 1m"));
        }
        if self.max_endpoints == 0 {
            return Err(at.invalid("max_endpoints", "must be at least 1"));
        }
        if self.max_streams == 0 {
            return Err(at.invalid("max_streams", "must be at least 1"));
        }
        if self.disable_after < Duration::from_secs(60) {
            return Err(at.invalid("disable_after", "must be at least 1m"));
        }
        Ok(())
    }

    /// What the push client enforces: `http` and private addresses only with
    /// `allow_private_targets`.
    pub fn policy(&self) -> TargetPolicy {
        TargetPolicy {
            allow_http: self.allow_private_targets,
            allow_private: self.allow_private_targets,
        }
    }

    pub fn client(&self) -> ClientSettings {
        ClientSettings {
            connect_timeout: self.connect_timeout,
            timeout: self.timeout,
            policy: self.policy(),
        }
    }

    /// How long a dispatcher holds a delivery it is attempting: longer than any attempt
    /// (the client's timeouts bound it) plus rendering and recording it. A dispatcher that
    /// dies mid-attempt leaves its deliveries to another one after this.
    pub fn lease(&self) -> Duration {
        self.connect_timeout + self.timeout + Duration::from_secs(5)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::testing::{load, load_error};

    #[test]
    fn push_defaults_are_safe_and_development_allows_local_targets() {
        let dev = load(&[]).unwrap().settings.push;
        assert!(dev.enabled);
        assert!(
            dev.allow_private_targets,
            "development pushes to faceid-sim"
        );
        assert_eq!(dev.disable_after, Duration::from_secs(5 * 86_400));
        let prod = load(&[
            ("APP_ENVIRONMENT", "production"),
            ("APP__MEGVII__API_KEY", "k"),
            ("APP__MEGVII__API_SECRET", "s"),
            ("APP__API__TOKENS", "a-long-random-token"),
        ])
        .unwrap()
        .settings
        .push;
        assert!(!prod.allow_private_targets);
        assert!(!prod.policy().allow_http && !prod.policy().allow_private);
        for (var, value, key) in [
            ("APP__PUSH__CONCURRENCY", "0", "push.concurrency"),
            ("APP__PUSH__TIMEOUT", "1s", "push.timeout"),
            ("APP__PUSH__DISABLE_AFTER", "1s", "push.disable_after"),
            ("APP__PUSH__MAX_STREAMS", "0", "push.max_streams"),
        ] {
            let error = load_error(&[(var, value)]);
            assert!(error.contains(key), "{var}={value}: {error}");
        }
    }
}
