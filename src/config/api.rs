//! `[api]`: the bearer tokens of `/api/v1` and the scopes they grant.
//!
//! Rules: a token is `token` or `token:scope+scope`, with scopes from [`SCOPES`]; an unknown
//! scope stops loading with an error naming the token by position, never the token itself.
//! Production requires at least one token and refuses [`DEV_TOKEN`].

use std::fmt;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use super::{ConfigError, Environment, Section};

/// The token the development profile ships with; production refuses it.
pub const DEV_TOKEN: &str = "dev-token";

/// Token scopes `api.tokens` may grant: `pii` reveals identity data, `admin` manages (replays
/// refused callbacks), `console` signs in to the operator console.
pub const SCOPES: [&str; 3] = [crate::protocol::pii::PII_SCOPE, ADMIN_SCOPE, CONSOLE_SCOPE];
/// The scope of `POST /api/v1/callbacks/replay`.
pub const ADMIN_SCOPE: &str = "admin";
/// The scope of the operator console.
pub const CONSOLE_SCOPE: &str = "console";

/// One bearer token for `/api/v1`, written `token` or `token:scope+scope`.
#[derive(Clone)]
pub struct ApiToken {
    pub token: SecretString,
    pub scopes: Vec<String>,
}

impl ApiToken {
    pub fn parse(entry: &str) -> Option<Self> {
        let entry = entry.trim();
        let (token, scopes) = match entry.split_once(':') {
            Some((token, scopes)) => (
                token,
                scopes
                    .split('+')
                    .map(|s| s.trim().to_owned())
                    .filter(|s| !s.is_empty())
                    .collect(),
            ),
            None => (entry, Vec::new()),
        };
        (!token.is_empty()).then(|| Self {
            token: SecretString::from(token.to_owned()),
            scopes,
        })
    }

    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }

    /// Who used a token, for the access log: the first 12 hex digits of its SHA-256. Enough
    /// to tell configured tokens apart, useless for recovering one.
    pub fn fingerprint(&self) -> String {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(self.token.expose_secret().as_bytes());
        hex::encode(digest)[..12].to_owned()
    }
}

impl fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiToken")
            .field("token", &"[REDACTED]")
            .field("scopes", &self.scopes)
            .finish()
    }
}

#[derive(Debug, Clone)]
pub struct ApiSettings {
    pub tokens: Vec<ApiToken>,
}

/// `[api]` as written, before [`RawApi::validate`].
#[derive(Deserialize, Serialize)]
pub(super) struct RawApi {
    #[serde(default)]
    tokens: Vec<String>,
}

impl RawApi {
    pub(super) fn validate(self, at: Section) -> Result<ApiSettings, ConfigError> {
        let tokens: Vec<ApiToken> = self
            .tokens
            .iter()
            .filter_map(|t| ApiToken::parse(t))
            .collect();
        for (n, token) in tokens.iter().enumerate() {
            if let Some(unknown) = token.scopes.iter().find(|s| !SCOPES.contains(&s.as_str())) {
                // Name the entry by position and the scope, never the token.
                return Err(at.invalid(
                    "tokens",
                    format!(
                        "token #{} has an unknown scope {unknown:?}; scopes are {}, joined with +",
                        n + 1,
                        SCOPES.join(", ")
                    ),
                ));
            }
        }
        if at.environment == Environment::Production {
            if tokens.is_empty() {
                return Err(at.missing("tokens"));
            }
            if tokens.iter().any(|t| t.token.expose_secret() == DEV_TOKEN) {
                return Err(at.invalid(
                    "tokens",
                    "the development token is not allowed in production",
                ));
            }
        }
        Ok(ApiSettings { tokens })
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{load, load_error};

    #[test]
    fn tokens_take_known_scopes_joined_with_plus_and_an_unknown_one_is_refused() {
        let loaded = load(&[("APP__API__TOKENS", "plain,ops:pii+admin,desk:console")]).unwrap();
        let scopes: Vec<Vec<String>> = loaded
            .settings
            .api
            .tokens
            .iter()
            .map(|t| t.scopes.clone())
            .collect();
        assert_eq!(
            scopes,
            [
                vec![],
                vec!["pii".to_owned(), "admin".into()],
                vec!["console".into()]
            ]
        );

        let error = load_error(&[("APP__API__TOKENS", "plain,s3cret-token:pii+admn")]);
        assert!(
            error.contains("\"admn\"") && error.contains("token #2"),
            "{error}"
        );
        assert!(error.contains("APP__API__TOKENS"), "{error}");
        assert!(
            !error.contains("s3cret-token"),
            "no token in the message: {error}"
        );
        assert!(!error.contains('\n'), "one line: {error}");
    }
}
