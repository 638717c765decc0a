//! `[return]`: where the user's browser goes after FaceID's return_url.
//!
//! Rule: unset (a built-in page), or an absolute http(s) URL.

use serde::{Deserialize, Serialize};

use super::{ConfigError, Section, non_empty, parse_http_url};

#[derive(Debug, Clone)]
pub struct ReturnSettings {
    pub redirect_url: Option<url::Url>,
}

/// `[return]` as written, before [`RawReturn::validate`].
#[derive(Deserialize, Serialize, Default)]
pub(super) struct RawReturn {
    redirect_url: Option<String>,
}

impl RawReturn {
    pub(super) fn validate(self, at: Section) -> Result<ReturnSettings, ConfigError> {
        let redirect_url = non_empty(self.redirect_url)
            .map(|u| parse_http_url(&u).map_err(|reason| at.invalid("redirect_url", reason)))
            .transpose()?;
        Ok(ReturnSettings { redirect_url })
    }
}
