//! Settings: the embedded `config/default.toml`, then `config/{APP_ENVIRONMENT}.toml`, then
//! `APP__SECTION__KEY` environment variables (and `DATABASE_URL` when `APP__DATABASE__URL`
//! is unset).
//!
//! One file per section (`server`, `database`, `megvii`, `api`, `return`, `fetch`,
//! `telemetry`, `retention`, `encryption`, `console`, `push`), each holding the section's
//! settings type, the shape its keys are written in (the same type where every key passes through as written, a
//! `Raw…` type where a value must be parsed) and its rules. A key is declared once, as a
//! field of that shape: the list of known keys (for the unknown-variable warning, and which
//! of them are comma-separated lists) is derived from `Raw`'s fields, and a test ties it to
//! `config/*.toml`, `.env.example`, `docker-compose.yml` and the README's table.
//!
//! Invariants: loading has no side effects and reads the environment only through the map it
//! is given (tests never touch the process environment); a missing or invalid key is reported
//! as one line naming the key and how to set it; secrets are [`SecretString`]s whose `Debug`
//! is redacted, and the database URL's password is never printed.

mod api;
mod console;
mod database;
mod encryption;
mod fetch;
mod megvii;
mod push;
mod retention;
mod r#return;
mod server;
mod telemetry;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use secrecy::SecretString;
use serde::{Deserialize, Serialize};

pub use api::{ADMIN_SCOPE, ApiSettings, ApiToken, CONSOLE_SCOPE, DEV_TOKEN, SCOPES};
pub use console::ConsoleSettings;
pub use database::{DatabaseSettings, redact_url};
pub use encryption::EncryptionSettings;
pub use fetch::FetchSettings;
pub use megvii::MegviiSettings;
pub use push::PushSettings;
pub use retention::{Cutoffs, RetentionSettings};
pub use r#return::ReturnSettings;
pub use server::{FACEID_PORTS, ServerSettings, public_url_warnings};
pub use telemetry::{LogFormat, TelemetrySettings};

/// The defaults, compiled in so the binary runs from any directory.
pub const DEFAULTS: &str = include_str!("../../config/default.toml");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Environment {
    Development,
    Production,
}

impl Environment {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Development => "development",
            Self::Production => "production",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub environment: Environment,
    pub server: ServerSettings,
    pub database: DatabaseSettings,
    pub megvii: MegviiSettings,
    pub api: ApiSettings,
    pub r#return: ReturnSettings,
    pub fetch: FetchSettings,
    pub telemetry: TelemetrySettings,
    pub retention: RetentionSettings,
    pub encryption: EncryptionSettings,
    pub console: ConsoleSettings,
    pub push: PushSettings,
}

/// Why settings could not be loaded. `Display` is the one line printed before exiting.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "configuration: {key} is missing; set {env} or `{field}` under [{section}] in config/{profile}.toml"
    )]
    Missing {
        key: String,
        env: String,
        field: &'static str,
        section: &'static str,
        profile: &'static str,
    },
    #[error(
        "configuration: {key} is invalid: {reason}; set {env} or fix it in config/{profile}.toml"
    )]
    Invalid {
        key: String,
        reason: String,
        env: String,
        profile: &'static str,
    },
    #[error("configuration: APP_ENVIRONMENT must be `development` or `production` (got {0:?})")]
    Environment(String),
    #[error("configuration: {0}")]
    Source(String),
}

/// Where a section's rules stand: makes their errors name the full key, the variable that
/// sets it and the profile's file.
#[derive(Debug, Clone, Copy)]
struct Section {
    name: &'static str,
    environment: Environment,
}

impl Section {
    fn key(self, field: &str) -> String {
        format!("{}.{field}", self.name)
    }

    fn invalid(self, field: &str, reason: impl Into<String>) -> ConfigError {
        let key = self.key(field);
        ConfigError::Invalid {
            env: env_var_for(&key),
            key,
            reason: reason.into(),
            profile: self.environment.as_str(),
        }
    }

    fn missing(self, field: &'static str) -> ConfigError {
        let key = self.key(field);
        ConfigError::Missing {
            env: env_var_for(&key),
            key,
            field,
            section: self.name,
            profile: self.environment.as_str(),
        }
    }
}

/// The shape of the layered files, before validation: one field per section, one field of
/// the section's type per key. This is where keys are declared ([`known_keys`] reads them
/// from here).
#[derive(Deserialize, Serialize)]
struct Raw {
    server: server::RawServer,
    database: database::RawDatabase,
    megvii: megvii::RawMegvii,
    api: api::RawApi,
    #[serde(rename = "return", default)]
    r#return: r#return::RawReturn,
    fetch: FetchSettings,
    telemetry: TelemetrySettings,
    retention: RetentionSettings,
    #[serde(default)]
    encryption: encryption::RawEncryption,
    console: ConsoleSettings,
    push: PushSettings,
}

impl Raw {
    /// Each section's rules, in this order (the first problem found is the one reported).
    fn validate(self, environment: Environment) -> Result<Settings, ConfigError> {
        let at = |name| Section { name, environment };
        let server = self.server.validate(at("server"))?;
        let database = self.database.validate(at("database"))?;
        let megvii = self.megvii.validate(at("megvii"))?;
        let api = self.api.validate(at("api"))?;
        let r#return = self.r#return.validate(at("return"))?;
        self.fetch.validate(megvii.timeout, at("fetch"))?;
        self.retention.validate(at("retention"))?;
        let encryption = self.encryption.validate(at("encryption"))?;
        self.console.validate(at("console"))?;
        self.push.validate(at("push"))?;
        Ok(Settings {
            environment,
            server,
            database,
            megvii,
            api,
            r#return,
            fetch: self.fetch,
            telemetry: self.telemetry,
            retention: self.retention,
            encryption,
            console: self.console,
            push: self.push,
        })
    }
}

/// One key the files may set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    /// `section.key`, as in the files' `[section]` tables.
    pub name: String,
    /// A list: comma-separated in its environment variable.
    pub list: bool,
}

/// Every key the files may set, in declaration order: the fields of `Raw`'s sections, read
/// by serializing the defaults (an unset optional key serializes as `null`, so it is listed
/// too).
pub fn known_keys() -> &'static [Key] {
    static KEYS: LazyLock<Vec<Key>> = LazyLock::new(|| {
        let defaults: Raw = config::Config::builder()
            .add_source(config::File::from_str(DEFAULTS, config::FileFormat::Toml))
            .build()
            .and_then(|c| c.try_deserialize())
            .expect("config/default.toml deserializes (a unit test checks it)");
        let serde_json::Value::Object(sections) =
            serde_json::to_value(defaults).expect("the defaults serialize")
        else {
            unreachable!("Raw is a struct")
        };
        sections
            .into_iter()
            .flat_map(|(section, keys)| {
                let serde_json::Value::Object(keys) = keys else {
                    unreachable!("every section is a struct")
                };
                keys.into_iter().map(move |(key, value)| Key {
                    name: format!("{section}.{key}"),
                    list: value.is_array(),
                })
            })
            .collect()
    });
    &KEYS
}

/// The environment variable that sets `key` (`megvii.api_secret` → `APP__MEGVII__API_SECRET`).
pub fn env_var_for(key: &str) -> String {
    format!("APP__{}", key.replace('.', "__").to_ascii_uppercase())
}

/// Settings plus warnings worth printing (unknown variables, a public URL FaceID won't call).
#[derive(Debug)]
pub struct Loaded {
    pub settings: Settings,
    pub warnings: Vec<String>,
}

impl Settings {
    /// Loads from the process environment and `./config` (or `APP_CONFIG_DIR`).
    pub fn load() -> Result<Loaded, ConfigError> {
        let env: HashMap<String, String> = std::env::vars().collect();
        let dir = env
            .get("APP_CONFIG_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("config"));
        Self::load_from(&env, &dir)
    }

    /// Loads from an explicit variable map and config directory (what tests use).
    pub fn load_from(
        env: &HashMap<String, String>,
        config_dir: &Path,
    ) -> Result<Loaded, ConfigError> {
        let environment = match env
            .get("APP_ENVIRONMENT")
            .map(|s| s.trim().to_ascii_lowercase())
            .as_deref()
        {
            None | Some("") | Some("development") => Environment::Development,
            Some("production") => Environment::Production,
            Some(_) => return Err(ConfigError::Environment(env["APP_ENVIRONMENT"].clone())),
        };
        let profile = environment.as_str();
        let app_vars: HashMap<String, String> = env
            .iter()
            .filter(|(k, _)| k.starts_with("APP__"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();

        let variables = known_keys().iter().filter(|key| key.list).fold(
            config::Environment::with_prefix("APP")
                .prefix_separator("__")
                .separator("__")
                .list_separator(",")
                .try_parsing(true)
                .source(Some(app_vars.clone())),
            |variables, key| variables.with_list_parse_key(&key.name),
        );
        let mut builder = config::Config::builder()
            .add_source(config::File::from_str(DEFAULTS, config::FileFormat::Toml))
            .add_source(
                config::File::from(config_dir.join(format!("{profile}.toml"))).required(false),
            )
            .add_source(variables);
        if !app_vars.contains_key("APP__DATABASE__URL") {
            builder = builder
                .set_override_option("database.url", env.get("DATABASE_URL").cloned())
                .map_err(|e| ConfigError::Source(e.to_string()))?;
        }
        let raw: Raw = builder
            .build()
            .and_then(|c| c.try_deserialize())
            .map_err(|e| ConfigError::Source(e.to_string()))?;

        let mut warnings: Vec<String> = app_vars
            .keys()
            .filter(|k| !known_keys().iter().any(|key| env_var_for(&key.name) == **k))
            .map(|k| format!("unknown configuration variable {k} is ignored"))
            .collect();
        warnings.sort();

        let settings = raw.validate(environment)?;
        warnings.extend(public_url_warnings(settings.server.public_url.as_ref()));
        Ok(Loaded { settings, warnings })
    }

    /// The notify_url and return_url to pass to get_token, when `server.public_url` is set.
    pub fn callback_urls(&self) -> Option<(url::Url, url::Url)> {
        let base = self.server.public_url.as_ref()?;
        let join = |path: &str| {
            let mut url = base.clone();
            let prefix = url.path().trim_end_matches('/').to_owned();
            url.set_path(&format!("{prefix}{path}"));
            url.set_query(None);
            url
        };
        Some((join("/faceid/notify"), join("/faceid/return")))
    }
}

/// A value as configured, trimmed; `None` when unset or blank.
fn non_empty(value: Option<String>) -> Option<String> {
    value.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty())
}

/// A list of secrets as configured, each trimmed, without blank entries (a trailing comma).
fn secrets(list: Vec<String>) -> Vec<SecretString> {
    list.into_iter()
        .filter_map(|s| non_empty(Some(s)))
        .map(SecretString::from)
        .collect()
}

fn parse_http_url(text: &str) -> Result<url::Url, String> {
    let url = url::Url::parse(text).map_err(|e| format!("{e}"))?;
    match url.scheme() {
        "http" | "https" if url.host().is_some() => Ok(url),
        _ => Err("must be an absolute http:// or https:// URL".into()),
    }
}

#[cfg(test)]
pub(super) mod testing {
    use std::collections::HashMap;
    use std::path::PathBuf;

    /// A variable map for [`super::Settings::load_from`].
    pub fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// The repository's `config/` directory.
    pub fn repo_config() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config")
    }

    /// Loads the repository's profiles with these variables (and no others).
    pub fn load(pairs: &[(&str, &str)]) -> Result<super::Loaded, super::ConfigError> {
        super::Settings::load_from(&env(pairs), &repo_config())
    }

    /// The one line loading with these variables fails with.
    pub fn load_error(pairs: &[(&str, &str)]) -> String {
        load(pairs).unwrap_err().to_string()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use secrecy::ExposeSecret;

    use super::testing::{load, load_error};
    use super::*;

    #[test]
    fn development_profile_loads_with_no_variables() {
        let loaded = load(&[]).unwrap();
        let s = loaded.settings;
        assert_eq!(s.environment, Environment::Development);
        assert_eq!(s.server.listen.to_string(), "127.0.0.1:5000");
        assert_eq!(
            s.database.url.expose_secret(),
            "sqlite://data/faceid-receiver.db?mode=rwc"
        );
        assert_eq!(s.fetch.max_calls, 3);
        assert_eq!(s.fetch.initial_delay, Duration::from_secs(5));
        assert_eq!(s.api.tokens.len(), 1);
        assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    }

    #[test]
    fn environment_variables_override_files_and_lists_split_on_commas() {
        let loaded = load(&[
            ("APP__FETCH__MAX_CALLS", "2"),
            ("APP__API__TOKENS", "alpha,beta:pii"),
            ("APP__MEGVII__API_SECRET", "12345"),
            ("APP__FETCH__RETRY_DELAY", "90s"),
        ])
        .unwrap();
        let s = loaded.settings;
        assert_eq!(s.fetch.max_calls, 2);
        assert_eq!(s.fetch.retry_delay, Duration::from_secs(90));
        assert_eq!(s.megvii.api_secret.expose_secret(), "12345");
        let tokens: Vec<_> = s
            .api
            .tokens
            .iter()
            .map(|t| (t.token.expose_secret().to_owned(), t.scopes.clone()))
            .collect();
        assert_eq!(
            tokens,
            vec![
                ("alpha".into(), vec![]),
                ("beta".into(), vec!["pii".to_string()])
            ]
        );
    }

    #[test]
    fn database_url_falls_back_to_database_url_only_when_app_variable_is_unset() {
        let s = load(&[("DATABASE_URL", "postgres://u:pw@db/x")])
            .unwrap()
            .settings;
        assert_eq!(s.database.url.expose_secret(), "postgres://u:pw@db/x");
        assert_eq!(s.database.redacted_url(), "postgres://u:***@db/x");
        assert!(
            !format!("{s:?}").contains("pw@"),
            "Debug must not print the password"
        );
        let s = load(&[
            ("DATABASE_URL", "postgres://u:pw@db/x"),
            ("APP__DATABASE__URL", "sqlite://other.db"),
        ])
        .unwrap()
        .settings;
        assert_eq!(s.database.url.expose_secret(), "sqlite://other.db");
    }

    #[test]
    fn production_requires_credentials_and_real_tokens() {
        let base = [("APP_ENVIRONMENT", "production")];
        let err = load_error(&base);
        assert!(
            err.contains("megvii.api_key") && err.contains("APP__MEGVII__API_KEY"),
            "{err}"
        );
        assert!(!err.contains('\n'), "one line: {err}");

        let creds = [
            ("APP_ENVIRONMENT", "production"),
            ("APP__MEGVII__API_KEY", "k"),
            ("APP__MEGVII__API_SECRET", "s"),
        ];
        let err = load_error(&creds);
        assert!(
            err.contains("api.tokens") && err.contains("APP__API__TOKENS"),
            "{err}"
        );

        let mut with_dev = creds.to_vec();
        with_dev.push(("APP__API__TOKENS", DEV_TOKEN));
        let err = load_error(&with_dev);
        assert!(err.contains("development token"), "{err}");

        let mut ok = creds.to_vec();
        ok.push(("APP__API__TOKENS", "a-long-random-token"));
        let s = load(&ok).unwrap().settings;
        assert_eq!(s.server.listen.to_string(), "0.0.0.0:5000");
        assert_eq!(s.telemetry.format, LogFormat::Json);
    }

    #[test]
    fn invalid_values_name_the_key() {
        for (var, value, key) in [
            ("APP__FETCH__MAX_CALLS", "4", "fetch.max_calls"),
            ("APP__FETCH__RETURN_IMAGE", "7", "fetch.return_image"),
            ("APP__SERVER__LISTEN", "nowhere", "server.listen"),
            (
                "APP__RETURN__REDIRECT_URL",
                "javascript:alert(1)",
                "return.redirect_url",
            ),
            ("APP__DATABASE__URL", "mysql://x", "database.url"),
            ("APP__MEGVII__BASE_URL", "ftp://x", "megvii.base_url"),
        ] {
            let err = load_error(&[(var, value)]);
            assert!(
                err.contains(key) && err.contains(var),
                "{var}={value}: {err}"
            );
        }
        let err = load(&[("APP_ENVIRONMENT", "staging")]).unwrap_err();
        assert!(err.to_string().contains("APP_ENVIRONMENT"));
    }

    #[test]
    fn unknown_variables_and_unreachable_public_urls_are_warned_about() {
        let loaded = load(&[
            ("APP__SERVER__LISTN", "x"),
            (
                "APP__SERVER__PUBLIC_URL",
                "http://verify.example.com:8080/base/",
            ),
        ])
        .unwrap();
        let w = loaded.warnings.join("\n");
        assert!(w.contains("APP__SERVER__LISTN"), "{w}");
        assert!(w.contains("not HTTPS"), "{w}");
        assert!(w.contains("port 8080"), "{w}");
        let (notify, ret) = loaded.settings.callback_urls().unwrap();
        assert_eq!(
            notify.as_str(),
            "http://verify.example.com:8080/base/faceid/notify"
        );
        assert_eq!(
            ret.as_str(),
            "http://verify.example.com:8080/base/faceid/return"
        );
    }

    #[test]
    fn identity_retention_and_encryption_are_off_by_default_and_set_from_the_environment() {
        let defaults = load(&[]).unwrap().settings;
        // Only what strangers send, the console's audit trail and push events are purged by
        // default.
        assert_eq!(
            defaults.retention.cutoffs(40 * 86_400_000),
            Cutoffs {
                results: None,
                journal: None,
                refused: Some(10 * 86_400_000),
                console_audit: Some(-50 * 86_400_000),
                push: Some(-50 * 86_400_000),
            }
        );
        assert_eq!(defaults.retention.refused_bytes_per_day, 32 * 1024 * 1024);
        assert_eq!(defaults.retention.interval, Duration::from_secs(3600));
        assert!(defaults.encryption.key.is_none());
        assert!(!defaults.encryption.keyring().unwrap().encrypts());

        let key = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
        let old = "HxweHRwbGhkYFxYVFBMSERAPDg0MCwoJCAcGBQQDAgE=";
        let loaded = load(&[
            ("APP__RETENTION__RESULT_DAYS", "30"),
            ("APP__RETENTION__JOURNAL_DAYS", "7"),
            ("APP__RETENTION__REFUSED_DAYS", "0"),
            ("APP__RETENTION__CONSOLE_AUDIT_DAYS", "0"),
            ("APP__RETENTION__PUSH_DAYS", "14"),
            ("APP__RETENTION__INTERVAL", "10m"),
            ("APP__ENCRYPTION__KEY", key),
            ("APP__ENCRYPTION__PREVIOUS_KEYS", &format!("{old},{key}")),
        ])
        .unwrap();
        assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
        let s = loaded.settings;
        assert_eq!(
            s.retention.cutoffs(10 * 86_400_000),
            Cutoffs {
                results: Some(-20 * 86_400_000),
                journal: Some(3 * 86_400_000),
                refused: None,
                console_audit: None,
                push: Some(-4 * 86_400_000),
            }
        );
        assert_eq!(s.retention.interval, Duration::from_secs(600));
        assert_eq!(s.encryption.previous_keys.len(), 2);
        assert!(s.encryption.keyring().unwrap().encrypts());
        assert!(!format!("{s:?}").contains(key), "keys stay out of Debug");
    }

    /// The keys a TOML profile sets, as `section.key`; with `commented`, also the keys shown in
    /// comments (`# key = …`, how default.toml documents a key that is unset by default).
    fn toml_keys(text: &str, commented: bool) -> Vec<String> {
        let mut section = None;
        let mut keys = Vec::new();
        for line in text.lines() {
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                section = Some(name.to_owned());
                continue;
            }
            let line = match line.strip_prefix("# ") {
                Some(rest) if commented => rest,
                _ => line,
            };
            let Some((key, _)) = line.split_once(" = ") else {
                continue;
            };
            if key.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
                let section = section.as_deref().expect("keys sit under a [section]");
                keys.push(format!("{section}.{key}"));
            }
        }
        keys
    }

    /// Every `APP__…` name a file mentions, comments included.
    fn app_variables(text: &str) -> Vec<String> {
        let mut names = Vec::new();
        let mut rest = text;
        while let Some(start) = rest.find("APP__") {
            let name: String = rest[start..]
                .chars()
                .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                .collect();
            rest = &rest[start + name.len()..];
            names.push(name);
        }
        names
    }

    fn read(path: &str) -> String {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(path);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
    }

    #[test]
    fn every_key_is_declared_once_and_documented_everywhere_it_is_set() {
        let known: Vec<&str> = known_keys().iter().map(|k| k.name.as_str()).collect();
        let unique: std::collections::BTreeSet<&str> = known.iter().copied().collect();
        assert_eq!(
            unique.len(),
            known.len(),
            "a key is listed twice: {known:?}"
        );
        assert!(known.len() >= 40, "the keys were read: {known:?}");

        // What the files set (default.toml's commented keys included) is known.
        let defaults = toml_keys(DEFAULTS, true);
        for (file, keys) in [
            ("config/default.toml", defaults.clone()),
            (
                "config/development.toml",
                toml_keys(&read("config/development.toml"), false),
            ),
            (
                "config/production.toml",
                toml_keys(&read("config/production.toml"), false),
            ),
        ] {
            assert!(!keys.is_empty(), "{file}: found its keys");
            for key in keys {
                assert!(
                    known.contains(&key.as_str()),
                    "{file} sets {key}, which is not a key"
                );
            }
        }
        for file in [".env.example", "docker-compose.yml"] {
            let variables = app_variables(&read(file));
            assert!(!variables.is_empty(), "{file}: found its variables");
            for variable in variables {
                assert!(
                    known.iter().any(|key| env_var_for(key) == variable),
                    "{file} sets {variable}, which sets no key"
                );
            }
        }

        // Every key is documented in default.toml and in the README's table, and the table
        // names no other key.
        let readme = read("README.md");
        let start = readme
            .find("\n## Configuration")
            .expect("README has a Configuration section");
        let end = readme[start + 1..]
            .find("\n## ")
            .map_or(readme.len(), |e| start + 1 + e);
        let table: Vec<&str> = readme[start..end]
            .lines()
            .filter(|l| l.starts_with("| `"))
            .collect();
        for key in &known {
            assert!(
                defaults.iter().any(|d| d == key),
                "config/default.toml documents {key}"
            );
            let cell = format!("`{key}`");
            assert!(
                table.iter().any(|row| row.contains(&cell)),
                "the README's configuration table has a row for {key}"
            );
        }
        for row in table {
            let first = row.split('|').nth(1).expect("a first cell");
            for name in first.split('`').skip(1).step_by(2) {
                assert!(
                    known.contains(&name),
                    "the README documents {name}, which is not a key"
                );
            }
        }
    }

    #[test]
    fn the_list_keys_are_the_ones_whose_variables_split_on_commas() {
        let lists: Vec<&str> = known_keys()
            .iter()
            .filter(|k| k.list)
            .map(|k| k.name.as_str())
            .collect();
        assert_eq!(
            lists,
            [
                "megvii.previous_secrets",
                "api.tokens",
                "encryption.previous_keys"
            ]
        );
        let s = load(&[
            ("APP__MEGVII__PREVIOUS_SECRETS", "one,two"),
            ("APP__ENCRYPTION__PREVIOUS_KEYS", ""),
        ])
        .unwrap()
        .settings;
        assert_eq!(s.megvii.previous_secrets.len(), 2);
        assert!(s.encryption.previous_keys.is_empty());
    }
}
