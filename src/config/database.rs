//! `[database]`: where state lives (`sqlite://…` or `postgres://…`), the pool, SQLite's
//! durability, and group commit.
//!
//! Rules: the URL is required and names one of the two engines; `sqlite_synchronous` is
//! `full`, `normal` or `extra`. Invariant: the URL's password never reaches a log or a
//! `Debug` output ([`redact_url`]).

use std::fmt;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use super::{ConfigError, Section, non_empty};

#[derive(Clone)]
pub struct DatabaseSettings {
    pub url: SecretString,
    pub max_connections: u32,
    pub connect_timeout: Duration,
    pub sqlite_synchronous: String,
    /// Batch concurrent signed callbacks into shared transactions (each acked after its
    /// batch commits).
    pub group_commit: bool,
    /// Most callbacks in one group-commit transaction (at least 1).
    pub group_commit_max: usize,
}

impl DatabaseSettings {
    /// The URL with any password replaced by `***`, for logs.
    pub fn redacted_url(&self) -> String {
        redact_url(self.url.expose_secret())
    }
}

impl fmt::Debug for DatabaseSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatabaseSettings")
            .field("url", &self.redacted_url())
            .field("max_connections", &self.max_connections)
            .field("connect_timeout", &self.connect_timeout)
            .field("sqlite_synchronous", &self.sqlite_synchronous)
            .field("group_commit", &self.group_commit)
            .field("group_commit_max", &self.group_commit_max)
            .finish()
    }
}

/// `[database]` as written, before [`RawDatabase::validate`].
#[derive(Deserialize, Serialize)]
pub(super) struct RawDatabase {
    url: Option<String>,
    max_connections: u32,
    #[serde(with = "humantime_serde")]
    connect_timeout: Duration,
    sqlite_synchronous: String,
    group_commit: bool,
    group_commit_max: usize,
}

impl RawDatabase {
    pub(super) fn validate(self, at: Section) -> Result<DatabaseSettings, ConfigError> {
        let url = non_empty(self.url).ok_or_else(|| at.missing("url"))?;
        if !(url.starts_with("sqlite:")
            || url.starts_with("postgres:")
            || url.starts_with("postgresql:"))
        {
            return Err(at.invalid("url", "must start with sqlite:// or postgres://"));
        }
        let sqlite_synchronous = self.sqlite_synchronous.to_ascii_lowercase();
        if !["full", "normal", "extra"].contains(&sqlite_synchronous.as_str()) {
            return Err(at.invalid("sqlite_synchronous", "must be full, normal or extra"));
        }
        Ok(DatabaseSettings {
            url: SecretString::from(url),
            max_connections: self.max_connections.max(1),
            connect_timeout: self.connect_timeout,
            sqlite_synchronous,
            group_commit: self.group_commit,
            group_commit_max: self.group_commit_max.max(1),
        })
    }
}

/// `scheme://user:***@host/...`: the password never reaches a log.
pub fn redact_url(text: &str) -> String {
    match url::Url::parse(text) {
        Ok(mut url) if url.password().is_some() => {
            let _ = url.set_password(Some("***"));
            url.to_string()
        }
        Ok(url) => url.to_string(),
        Err(_) => text.split('?').next().unwrap_or_default().to_owned(),
    }
}
