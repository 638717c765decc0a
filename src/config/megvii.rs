//! `[megvii]`: FaceID's credentials and API, for verifying callbacks and calling get_result.
//!
//! Rules: `api_key` and `api_secret` are required; `base_url` is an absolute http(s) URL;
//! empty entries of `previous_secrets` are dropped. Invariant: the secrets are
//! [`SecretString`]s, so no `Debug` output shows them.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use super::{ConfigError, Section, non_empty, parse_http_url, secrets};

#[derive(Debug, Clone)]
pub struct MegviiSettings {
    pub api_key: SecretString,
    pub api_secret: SecretString,
    /// Secrets used before a rotation: still accepted on callbacks (after `api_secret`), never
    /// used for get_result.
    pub previous_secrets: Vec<SecretString>,
    pub base_url: url::Url,
    pub connect_timeout: Duration,
    pub timeout: Duration,
}

impl MegviiSettings {
    /// The secrets a callback's sign is checked with, in order: `api_secret`, then
    /// `previous_secrets`. Position `i` is the one [`crate::protocol::sign::key_id`] names.
    pub fn callback_secrets(&self) -> Vec<&str> {
        std::iter::once(&self.api_secret)
            .chain(&self.previous_secrets)
            .map(|secret| secret.expose_secret())
            .collect()
    }
}

/// `[megvii]` as written, before [`RawMegvii::validate`].
#[derive(Deserialize, Serialize)]
pub(super) struct RawMegvii {
    api_key: Option<String>,
    api_secret: Option<String>,
    #[serde(default)]
    previous_secrets: Vec<String>,
    base_url: String,
    #[serde(with = "humantime_serde")]
    connect_timeout: Duration,
    #[serde(with = "humantime_serde")]
    timeout: Duration,
}

impl RawMegvii {
    pub(super) fn validate(self, at: Section) -> Result<MegviiSettings, ConfigError> {
        let api_key = non_empty(self.api_key).ok_or_else(|| at.missing("api_key"))?;
        let api_secret = non_empty(self.api_secret).ok_or_else(|| at.missing("api_secret"))?;
        let base_url =
            parse_http_url(&self.base_url).map_err(|reason| at.invalid("base_url", reason))?;
        Ok(MegviiSettings {
            api_key: SecretString::from(api_key),
            api_secret: SecretString::from(api_secret),
            previous_secrets: secrets(self.previous_secrets),
            base_url,
            connect_timeout: self.connect_timeout,
            timeout: self.timeout,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::load;

    #[test]
    fn previous_secrets_come_after_the_current_one_and_stay_out_of_debug() {
        let s = load(&[
            ("APP__MEGVII__API_SECRET", "new-secret"),
            (
                "APP__MEGVII__PREVIOUS_SECRETS",
                "old-secret-1, old-secret-2",
            ),
        ])
        .unwrap()
        .settings;
        assert_eq!(
            s.megvii.callback_secrets(),
            ["new-secret", "old-secret-1", "old-secret-2"]
        );
        assert!(!format!("{s:?}").contains("old-secret"));
        let dev = load(&[]).unwrap().settings;
        assert_eq!(dev.megvii.callback_secrets(), ["dev-secret"]);
    }
}
