//! Settings: the embedded `config/default.toml`, then `config/{APP_ENVIRONMENT}.toml`, then
//! `APP__SECTION__KEY` environment variables (and `DATABASE_URL` when `APP__DATABASE__URL`
//! is unset).
//!
//! Invariants: loading has no side effects and reads the environment only through the map it
//! is given (tests never touch the process environment); a missing or invalid key is reported
//! as one line naming the key and how to set it; secrets are [`SecretString`]s whose `Debug`
//! is redacted, and the database URL's password is never printed.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

/// The defaults, compiled in so the binary runs from any directory.
pub const DEFAULTS: &str = include_str!("../config/default.toml");

/// The token the development profile ships with; production refuses it.
pub const DEV_TOKEN: &str = "dev-token";

/// Ports FaceID calls back on (seed 003).
pub const FACEID_PORTS: [u16; 5] = [443, 5000, 16003, 8883, 8028];

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
}

/// Encryption at rest of raw results, journal bodies and images (off without a key).
#[derive(Debug, Clone, Default)]
pub struct EncryptionSettings {
    /// Base64 of 32 bytes; encrypts new values.
    pub key: Option<SecretString>,
    /// Older keys, kept only to decrypt values written before a rotation.
    pub previous_keys: Vec<SecretString>,
}

impl EncryptionSettings {
    /// The keyring these keys make (validated at load, so this only fails on a bug).
    pub fn keyring(&self) -> Result<crate::store::Keyring, crate::store::BadKey> {
        let previous: Vec<&str> = self
            .previous_keys
            .iter()
            .map(|k| k.expose_secret())
            .collect();
        crate::store::Keyring::new(self.key.as_ref().map(|k| k.expose_secret()), &previous)
    }
}

/// How long identity data, and what strangers send, is kept. `0` days keeps it forever.
#[derive(Debug, Clone)]
pub struct RetentionSettings {
    /// Raw results and images of verifications older than this are purged.
    pub result_days: u32,
    /// Journal bodies older than this are emptied.
    pub journal_days: u32,
    /// Refused deliveries (journal rows with outcome `rejected`) older than this are deleted.
    pub refused_days: u32,
    /// Bytes of refused bodies (and unsigned return GET queries) journaled whole per UTC day;
    /// past it, and for any body over [`crate::http::journal::WHOLE_BODY_MAX`], only the first
    /// KiB is kept (with the full length and sha256).
    pub refused_bytes_per_day: u64,
    /// How often `serve` purges.
    pub interval: Duration,
}

/// What retention removes at one instant: the cutoff (epoch ms) of each kind of data, `None`
/// for "keep forever".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cutoffs {
    pub results: Option<i64>,
    pub journal: Option<i64>,
    pub refused: Option<i64>,
}

impl RetentionSettings {
    /// Whether anything is ever purged.
    pub fn enabled(&self) -> bool {
        self.result_days > 0 || self.journal_days > 0 || self.refused_days > 0
    }

    /// The cutoffs at `now` (epoch ms).
    pub fn cutoffs(&self, now: i64) -> Cutoffs {
        const DAY_MS: i64 = 86_400_000;
        let cutoff = |days: u32| (days > 0).then(|| now - i64::from(days) * DAY_MS);
        Cutoffs {
            results: cutoff(self.result_days),
            journal: cutoff(self.journal_days),
            refused: cutoff(self.refused_days),
        }
    }
}

#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub listen: SocketAddr,
    pub public_url: Option<url::Url>,
    pub body_limit: usize,
    pub request_timeout: Duration,
    /// After SIGTERM/SIGINT: how long in-flight requests and the worker's pass may take.
    pub shutdown_timeout: Duration,
    /// Per-IP requests per second on the callback routes; 0 disables the limit.
    pub rate_limit_per_second: u32,
    /// Requests an IP may send at once before the per-second rate applies.
    pub rate_limit_burst: u32,
    /// Key the rate limit on the last `X-Forwarded-For` address instead of the TCP peer, and
    /// record it in the journal (otherwise a client-sent header is ignored).
    pub trust_forwarded_for: bool,
    /// A second listener for `/metrics` (and the health routes); when set, `/metrics` is not
    /// served on `listen`.
    pub admin_listen: Option<SocketAddr>,
    /// Longest a client may take to send a request's headers, from the moment the connection
    /// waits for a request (so also how long a kept-alive connection may sit idle).
    pub header_timeout: Duration,
    /// A connection on which no byte moves either way for this long is closed.
    pub idle_timeout: Duration,
    /// Connections served at once; further ones wait in the listen backlog.
    pub max_connections: usize,
    /// Per-IP return GETs per minute (on top of the limit above); 0 disables this limit.
    pub return_get_per_minute: u32,
    /// Return GETs an IP may send at once before the per-minute rate applies.
    pub return_get_burst: u32,
}

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

#[derive(Debug, Clone)]
pub struct ReturnSettings {
    pub redirect_url: Option<url::Url>,
}

#[derive(Debug, Clone)]
pub struct FetchSettings {
    pub initial_delay: Duration,
    pub retry_delay: Duration,
    /// The slow lane: the next call after a `NOT_STARTED` answer (the GET came early).
    pub not_started_delay: Duration,
    /// How long a started H5 flow may still take to end; the held-back last call comes this
    /// long after a `PROCESSING` answer, or this long before the window closes.
    pub flow_timeout: Duration,
    pub max_calls: i32,
    pub return_image: i32,
    pub safety_margin: Duration,
    pub lease: Duration,
    pub poll_interval: Duration,
    /// Ceiling on get_result calls per second, per replica (all biz_ids together).
    pub max_calls_per_second: u32,
}

#[derive(Debug, Clone)]
pub struct TelemetrySettings {
    pub format: LogFormat,
    pub filter: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// Why settings could not be loaded. `Display` is the one line printed before exiting.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "configuration: {key} is missing; set {env} or `{field}` under [{section}] in config/{profile}.toml"
    )]
    Missing {
        key: &'static str,
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

/// The raw shape of the layered files, before validation.
#[derive(Deserialize)]
struct Raw {
    server: RawServer,
    database: RawDatabase,
    megvii: RawMegvii,
    api: RawApi,
    #[serde(rename = "return", default)]
    r#return: RawReturn,
    fetch: RawFetch,
    telemetry: RawTelemetry,
    retention: RawRetention,
    #[serde(default)]
    encryption: RawEncryption,
}

#[derive(Deserialize, Default)]
struct RawEncryption {
    key: Option<String>,
    #[serde(default)]
    previous_keys: Vec<String>,
}

#[derive(Deserialize)]
struct RawRetention {
    result_days: u32,
    journal_days: u32,
    refused_days: u32,
    refused_bytes_per_day: u64,
    #[serde(with = "humantime_serde")]
    interval: Duration,
}

#[derive(Deserialize)]
struct RawServer {
    listen: String,
    public_url: Option<String>,
    body_limit: usize,
    #[serde(with = "humantime_serde")]
    request_timeout: Duration,
    #[serde(with = "humantime_serde")]
    shutdown_timeout: Duration,
    rate_limit_per_second: u32,
    rate_limit_burst: u32,
    trust_forwarded_for: bool,
    admin_listen: Option<String>,
    #[serde(with = "humantime_serde")]
    header_timeout: Duration,
    #[serde(with = "humantime_serde")]
    idle_timeout: Duration,
    max_connections: usize,
    return_get_per_minute: u32,
    return_get_burst: u32,
}

#[derive(Deserialize)]
struct RawDatabase {
    url: Option<String>,
    max_connections: u32,
    #[serde(with = "humantime_serde")]
    connect_timeout: Duration,
    sqlite_synchronous: String,
    group_commit: bool,
    group_commit_max: usize,
}

#[derive(Deserialize)]
struct RawMegvii {
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

#[derive(Deserialize)]
struct RawApi {
    #[serde(default)]
    tokens: Vec<String>,
}

#[derive(Deserialize, Default)]
struct RawReturn {
    redirect_url: Option<String>,
}

#[derive(Deserialize)]
struct RawFetch {
    #[serde(with = "humantime_serde")]
    initial_delay: Duration,
    #[serde(with = "humantime_serde")]
    retry_delay: Duration,
    #[serde(with = "humantime_serde")]
    not_started_delay: Duration,
    #[serde(with = "humantime_serde")]
    flow_timeout: Duration,
    max_calls_per_second: u32,
    max_calls: i32,
    return_image: i32,
    #[serde(with = "humantime_serde")]
    safety_margin: Duration,
    #[serde(with = "humantime_serde")]
    lease: Duration,
    #[serde(with = "humantime_serde")]
    poll_interval: Duration,
}

#[derive(Deserialize)]
struct RawTelemetry {
    format: LogFormat,
    filter: String,
}

/// Every key the files may set, for the unknown-variable warning.
pub const KNOWN_KEYS: &[&str] = &[
    "server.listen",
    "server.public_url",
    "server.body_limit",
    "server.request_timeout",
    "server.shutdown_timeout",
    "server.rate_limit_per_second",
    "server.rate_limit_burst",
    "server.trust_forwarded_for",
    "server.admin_listen",
    "server.header_timeout",
    "server.idle_timeout",
    "server.max_connections",
    "server.return_get_per_minute",
    "server.return_get_burst",
    "database.url",
    "database.max_connections",
    "database.connect_timeout",
    "database.sqlite_synchronous",
    "database.group_commit",
    "database.group_commit_max",
    "megvii.api_key",
    "megvii.api_secret",
    "megvii.previous_secrets",
    "megvii.base_url",
    "megvii.connect_timeout",
    "megvii.timeout",
    "api.tokens",
    "return.redirect_url",
    "fetch.initial_delay",
    "fetch.retry_delay",
    "fetch.not_started_delay",
    "fetch.flow_timeout",
    "fetch.max_calls_per_second",
    "fetch.max_calls",
    "fetch.return_image",
    "fetch.safety_margin",
    "fetch.lease",
    "fetch.poll_interval",
    "telemetry.format",
    "telemetry.filter",
    "retention.result_days",
    "retention.journal_days",
    "retention.refused_days",
    "retention.refused_bytes_per_day",
    "retention.interval",
    "encryption.key",
    "encryption.previous_keys",
];

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

        let mut builder = config::Config::builder()
            .add_source(config::File::from_str(DEFAULTS, config::FileFormat::Toml))
            .add_source(
                config::File::from(config_dir.join(format!("{profile}.toml"))).required(false),
            )
            .add_source(
                config::Environment::with_prefix("APP")
                    .prefix_separator("__")
                    .separator("__")
                    .list_separator(",")
                    .with_list_parse_key("api.tokens")
                    .with_list_parse_key("megvii.previous_secrets")
                    .with_list_parse_key("encryption.previous_keys")
                    .try_parsing(true)
                    .source(Some(app_vars.clone())),
            );
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
            .filter(|k| !KNOWN_KEYS.iter().any(|known| env_var_for(known) == **k))
            .map(|k| format!("unknown configuration variable {k} is ignored"))
            .collect();
        warnings.sort();

        let settings = validate(raw, environment)?;
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

fn validate(raw: Raw, environment: Environment) -> Result<Settings, ConfigError> {
    let profile = environment.as_str();
    let invalid = |key: &str, reason: String| ConfigError::Invalid {
        key: key.to_owned(),
        reason,
        env: env_var_for(key),
        profile,
    };
    let missing =
        |key: &'static str, section: &'static str, field: &'static str| ConfigError::Missing {
            key,
            env: env_var_for(key),
            field,
            section,
            profile,
        };
    let non_empty = |v: Option<String>| v.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty());

    let listen = raw.server.listen.parse().map_err(|_| {
        invalid(
            "server.listen",
            format!(
                "{:?} is not an address like 127.0.0.1:5000",
                raw.server.listen
            ),
        )
    })?;
    let public_url = non_empty(raw.server.public_url)
        .map(|u| parse_http_url(&u).map_err(|reason| invalid("server.public_url", reason)))
        .transpose()?;
    if raw.server.body_limit < 1024 {
        return Err(invalid(
            "server.body_limit",
            "must be at least 1024 bytes".into(),
        ));
    }
    let admin_listen: Option<SocketAddr> = non_empty(raw.server.admin_listen)
        .map(|a| {
            a.parse().map_err(|_| {
                invalid(
                    "server.admin_listen",
                    format!("{a:?} is not an address like 127.0.0.1:9090"),
                )
            })
        })
        .transpose()?;
    if admin_listen.is_some_and(|a| a == listen) {
        return Err(invalid(
            "server.admin_listen",
            "must differ from server.listen".into(),
        ));
    }
    if raw.server.header_timeout < Duration::from_millis(100) {
        return Err(invalid(
            "server.header_timeout",
            "must be at least 100ms".into(),
        ));
    }
    if raw.server.idle_timeout < Duration::from_millis(100) {
        return Err(invalid(
            "server.idle_timeout",
            "must be at least 100ms".into(),
        ));
    }
    if raw.server.max_connections == 0 {
        return Err(invalid(
            "server.max_connections",
            "must be at least 1".into(),
        ));
    }
    if raw.server.return_get_per_minute > 0 && raw.server.return_get_burst == 0 {
        return Err(invalid(
            "server.return_get_burst",
            "must be at least 1 when server.return_get_per_minute is set".into(),
        ));
    }
    if raw.server.rate_limit_per_second > 0 && raw.server.rate_limit_burst == 0 {
        return Err(invalid(
            "server.rate_limit_burst",
            "must be at least 1 when server.rate_limit_per_second is set".into(),
        ));
    }

    let url =
        non_empty(raw.database.url).ok_or_else(|| missing("database.url", "database", "url"))?;
    if !(url.starts_with("sqlite:")
        || url.starts_with("postgres:")
        || url.starts_with("postgresql:"))
    {
        return Err(invalid(
            "database.url",
            "must start with sqlite:// or postgres://".into(),
        ));
    }
    let sqlite_synchronous = raw.database.sqlite_synchronous.to_ascii_lowercase();
    if !["full", "normal", "extra"].contains(&sqlite_synchronous.as_str()) {
        return Err(invalid(
            "database.sqlite_synchronous",
            "must be full, normal or extra".into(),
        ));
    }

    let api_key = non_empty(raw.megvii.api_key)
        .ok_or_else(|| missing("megvii.api_key", "megvii", "api_key"))?;
    let api_secret = non_empty(raw.megvii.api_secret)
        .ok_or_else(|| missing("megvii.api_secret", "megvii", "api_secret"))?;
    let base_url = parse_http_url(&raw.megvii.base_url)
        .map_err(|reason| invalid("megvii.base_url", reason))?;
    let previous_secrets: Vec<SecretString> = raw
        .megvii
        .previous_secrets
        .into_iter()
        .filter_map(|s| non_empty(Some(s)))
        .map(SecretString::from)
        .collect();

    let tokens: Vec<ApiToken> = raw
        .api
        .tokens
        .iter()
        .filter_map(|t| ApiToken::parse(t))
        .collect();
    for (n, token) in tokens.iter().enumerate() {
        if let Some(unknown) = token.scopes.iter().find(|s| !SCOPES.contains(&s.as_str())) {
            // Name the entry by position and the scope, never the token.
            return Err(invalid(
                "api.tokens",
                format!(
                    "token #{} has an unknown scope {unknown:?}; scopes are {}, joined with +",
                    n + 1,
                    SCOPES.join(", ")
                ),
            ));
        }
    }
    if environment == Environment::Production {
        if tokens.is_empty() {
            return Err(missing("api.tokens", "api", "tokens"));
        }
        if tokens.iter().any(|t| t.token.expose_secret() == DEV_TOKEN) {
            return Err(invalid(
                "api.tokens",
                "the development token is not allowed in production".into(),
            ));
        }
    }

    let redirect_url = non_empty(raw.r#return.redirect_url)
        .map(|u| parse_http_url(&u).map_err(|reason| invalid("return.redirect_url", reason)))
        .transpose()?;

    if !(1..=3).contains(&raw.fetch.max_calls) {
        return Err(invalid(
            "fetch.max_calls",
            "must be 1, 2 or 3 (FaceID serves a result at most 3 times)".into(),
        ));
    }
    if !(0..=6).contains(&raw.fetch.return_image) {
        return Err(invalid(
            "fetch.return_image",
            "must be between 0 and 6".into(),
        ));
    }
    if raw.fetch.max_calls_per_second == 0 {
        return Err(invalid(
            "fetch.max_calls_per_second",
            "must be at least 1".into(),
        ));
    }
    if raw.fetch.flow_timeout < Duration::from_secs(1) {
        return Err(invalid("fetch.flow_timeout", "must be at least 1s".into()));
    }
    if raw.fetch.lease < Duration::from_secs(1) {
        return Err(invalid("fetch.lease", "must be at least 1s".into()));
    }
    // A lease shorter than a call (plus the wait for the call's turn under the ceiling, a
    // pass's worth of calls) would let another replica start a second call on the same
    // biz_id while the first is still in flight.
    let turn_wait = Duration::from_secs(crate::fetcher::DEFAULT_BATCH as u64)
        / raw.fetch.max_calls_per_second.max(1);
    if raw.fetch.lease <= raw.megvii.timeout + turn_wait {
        return Err(invalid(
            "fetch.lease",
            format!(
                "must be longer than megvii.timeout plus {} calls at fetch.max_calls_per_second ({})",
                crate::fetcher::DEFAULT_BATCH,
                humantime::format_duration(raw.megvii.timeout + turn_wait)
            ),
        ));
    }

    if raw.retention.interval < Duration::from_secs(1) {
        return Err(invalid("retention.interval", "must be at least 1s".into()));
    }
    let retention = RetentionSettings {
        result_days: raw.retention.result_days,
        journal_days: raw.retention.journal_days,
        refused_days: raw.retention.refused_days,
        refused_bytes_per_day: raw.retention.refused_bytes_per_day,
        interval: raw.retention.interval,
    };

    let encryption = EncryptionSettings {
        key: non_empty(raw.encryption.key).map(SecretString::from),
        previous_keys: raw
            .encryption
            .previous_keys
            .into_iter()
            .filter_map(|k| non_empty(Some(k)))
            .map(SecretString::from)
            .collect(),
    };
    if let Err(e) =
        crate::store::Keyring::new(encryption.key.as_ref().map(|k| k.expose_secret()), &[])
    {
        return Err(invalid("encryption.key", e.to_string()));
    }
    for key in &encryption.previous_keys {
        if let Err(e) = crate::store::Keyring::new(None, &[key.expose_secret()]) {
            return Err(invalid("encryption.previous_keys", e.to_string()));
        }
    }

    Ok(Settings {
        environment,
        server: ServerSettings {
            listen,
            public_url,
            body_limit: raw.server.body_limit,
            request_timeout: raw.server.request_timeout,
            shutdown_timeout: raw.server.shutdown_timeout,
            rate_limit_per_second: raw.server.rate_limit_per_second,
            rate_limit_burst: raw.server.rate_limit_burst,
            trust_forwarded_for: raw.server.trust_forwarded_for,
            admin_listen,
            header_timeout: raw.server.header_timeout,
            idle_timeout: raw.server.idle_timeout,
            max_connections: raw.server.max_connections,
            return_get_per_minute: raw.server.return_get_per_minute,
            return_get_burst: raw.server.return_get_burst,
        },
        database: DatabaseSettings {
            url: SecretString::from(url),
            max_connections: raw.database.max_connections.max(1),
            connect_timeout: raw.database.connect_timeout,
            sqlite_synchronous,
            group_commit: raw.database.group_commit,
            group_commit_max: raw.database.group_commit_max.max(1),
        },
        megvii: MegviiSettings {
            api_key: SecretString::from(api_key),
            api_secret: SecretString::from(api_secret),
            previous_secrets,
            base_url,
            connect_timeout: raw.megvii.connect_timeout,
            timeout: raw.megvii.timeout,
        },
        api: ApiSettings { tokens },
        r#return: ReturnSettings { redirect_url },
        fetch: FetchSettings {
            initial_delay: raw.fetch.initial_delay,
            retry_delay: raw.fetch.retry_delay,
            not_started_delay: raw.fetch.not_started_delay,
            flow_timeout: raw.fetch.flow_timeout,
            max_calls: raw.fetch.max_calls,
            return_image: raw.fetch.return_image,
            safety_margin: raw.fetch.safety_margin,
            lease: raw.fetch.lease,
            poll_interval: raw.fetch.poll_interval,
            max_calls_per_second: raw.fetch.max_calls_per_second,
        },
        telemetry: TelemetrySettings {
            format: raw.telemetry.format,
            filter: raw.telemetry.filter,
        },
        retention,
        encryption,
    })
}

fn parse_http_url(text: &str) -> Result<url::Url, String> {
    let url = url::Url::parse(text).map_err(|e| format!("{e}"))?;
    match url.scheme() {
        "http" | "https" if url.host().is_some() => Ok(url),
        _ => Err("must be an absolute http:// or https:// URL".into()),
    }
}

/// Warnings about a public URL FaceID will not call back, or will call insecurely.
pub fn public_url_warnings(public_url: Option<&url::Url>) -> Vec<String> {
    let Some(url) = public_url else {
        return Vec::new();
    };
    let mut warnings = Vec::new();
    if url.scheme() != "https" {
        warnings.push(format!(
            "server.public_url is not HTTPS ({}): callbacks and the sign would cross the network in clear text",
            url.scheme()
        ));
    }
    let port = url.port_or_known_default().unwrap_or(0);
    if !FACEID_PORTS.contains(&port) {
        warnings.push(format!(
            "server.public_url uses port {port}; FaceID only calls ports 443, 5000, 16003, 8883 and 8028"
        ));
    }
    warnings
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

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn repo_config() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config")
    }

    #[test]
    fn development_profile_loads_with_no_variables() {
        let loaded = Settings::load_from(&env(&[]), &repo_config()).unwrap();
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
        let loaded = Settings::load_from(
            &env(&[
                ("APP__FETCH__MAX_CALLS", "2"),
                ("APP__API__TOKENS", "alpha,beta:pii"),
                ("APP__MEGVII__API_SECRET", "12345"),
                ("APP__FETCH__RETRY_DELAY", "90s"),
            ]),
            &repo_config(),
        )
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
    fn tokens_take_known_scopes_joined_with_plus_and_an_unknown_one_is_refused() {
        let loaded = Settings::load_from(
            &env(&[("APP__API__TOKENS", "plain,ops:pii+admin,desk:console")]),
            &repo_config(),
        )
        .unwrap();
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

        let error = Settings::load_from(
            &env(&[("APP__API__TOKENS", "plain,s3cret-token:pii+admn")]),
            &repo_config(),
        )
        .unwrap_err()
        .to_string();
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

    #[test]
    fn previous_secrets_come_after_the_current_one_and_stay_out_of_debug() {
        let s = Settings::load_from(
            &env(&[
                ("APP__MEGVII__API_SECRET", "new-secret"),
                (
                    "APP__MEGVII__PREVIOUS_SECRETS",
                    "old-secret-1, old-secret-2",
                ),
            ]),
            &repo_config(),
        )
        .unwrap()
        .settings;
        assert_eq!(
            s.megvii.callback_secrets(),
            ["new-secret", "old-secret-1", "old-secret-2"]
        );
        assert!(!format!("{s:?}").contains("old-secret"));
        let dev = Settings::load_from(&env(&[]), &repo_config())
            .unwrap()
            .settings;
        assert_eq!(dev.megvii.callback_secrets(), ["dev-secret"]);
    }

    #[test]
    fn database_url_falls_back_to_database_url_only_when_app_variable_is_unset() {
        let s = Settings::load_from(
            &env(&[("DATABASE_URL", "postgres://u:pw@db/x")]),
            &repo_config(),
        )
        .unwrap()
        .settings;
        assert_eq!(s.database.url.expose_secret(), "postgres://u:pw@db/x");
        assert_eq!(s.database.redacted_url(), "postgres://u:***@db/x");
        assert!(
            !format!("{s:?}").contains("pw@"),
            "Debug must not print the password"
        );
        let s = Settings::load_from(
            &env(&[
                ("DATABASE_URL", "postgres://u:pw@db/x"),
                ("APP__DATABASE__URL", "sqlite://other.db"),
            ]),
            &repo_config(),
        )
        .unwrap()
        .settings;
        assert_eq!(s.database.url.expose_secret(), "sqlite://other.db");
    }

    #[test]
    fn production_requires_credentials_and_real_tokens() {
        let base = [("APP_ENVIRONMENT", "production")];
        let err = Settings::load_from(&env(&base), &repo_config())
            .unwrap_err()
            .to_string();
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
        let err = Settings::load_from(&env(&creds), &repo_config())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("api.tokens") && err.contains("APP__API__TOKENS"),
            "{err}"
        );

        let mut with_dev = creds.to_vec();
        with_dev.push(("APP__API__TOKENS", DEV_TOKEN));
        let err = Settings::load_from(&env(&with_dev), &repo_config())
            .unwrap_err()
            .to_string();
        assert!(err.contains("development token"), "{err}");

        let mut ok = creds.to_vec();
        ok.push(("APP__API__TOKENS", "a-long-random-token"));
        let s = Settings::load_from(&env(&ok), &repo_config())
            .unwrap()
            .settings;
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
            let err = Settings::load_from(&env(&[(var, value)]), &repo_config())
                .unwrap_err()
                .to_string();
            assert!(
                err.contains(key) && err.contains(var),
                "{var}={value}: {err}"
            );
        }
        let err = Settings::load_from(&env(&[("APP_ENVIRONMENT", "staging")]), &repo_config())
            .unwrap_err();
        assert!(err.to_string().contains("APP_ENVIRONMENT"));
    }

    #[test]
    fn unknown_variables_and_unreachable_public_urls_are_warned_about() {
        let loaded = Settings::load_from(
            &env(&[
                ("APP__SERVER__LISTN", "x"),
                (
                    "APP__SERVER__PUBLIC_URL",
                    "http://verify.example.com:8080/base/",
                ),
            ]),
            &repo_config(),
        )
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
    fn hardening_keys_have_generous_defaults_and_a_burst_is_required_with_a_rate() {
        let s = Settings::load_from(&env(&[]), &repo_config())
            .unwrap()
            .settings;
        assert_eq!(s.server.shutdown_timeout, Duration::from_secs(20));
        assert_eq!(s.server.rate_limit_per_second, 100);
        assert_eq!(s.server.rate_limit_burst, 500);
        assert!(!s.server.trust_forwarded_for);

        let loaded = Settings::load_from(
            &env(&[
                ("APP__SERVER__RATE_LIMIT_PER_SECOND", "0"),
                ("APP__SERVER__TRUST_FORWARDED_FOR", "true"),
                ("APP__SERVER__SHUTDOWN_TIMEOUT", "5s"),
            ]),
            &repo_config(),
        )
        .unwrap();
        assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
        assert_eq!(loaded.settings.server.rate_limit_per_second, 0);
        assert!(loaded.settings.server.trust_forwarded_for);
        assert_eq!(
            loaded.settings.server.shutdown_timeout,
            Duration::from_secs(5)
        );

        let err = Settings::load_from(
            &env(&[("APP__SERVER__RATE_LIMIT_BURST", "0")]),
            &repo_config(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("APP__SERVER__RATE_LIMIT_BURST"), "{err}");
    }

    #[test]
    fn connection_limits_have_defaults_and_refuse_nonsense() {
        let s = Settings::load_from(&env(&[]), &repo_config())
            .unwrap()
            .settings;
        assert_eq!(s.server.header_timeout, Duration::from_secs(10));
        assert_eq!(s.server.idle_timeout, Duration::from_secs(60));
        assert_eq!(s.server.max_connections, 512);
        assert_eq!(s.server.admin_listen, None);

        let loaded = Settings::load_from(
            &env(&[("APP__SERVER__ADMIN_LISTEN", "127.0.0.1:9090")]),
            &repo_config(),
        )
        .unwrap();
        assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
        assert_eq!(
            loaded.settings.server.admin_listen,
            Some("127.0.0.1:9090".parse().unwrap())
        );

        for (var, value) in [
            ("APP__SERVER__ADMIN_LISTEN", "127.0.0.1:5000"),
            ("APP__SERVER__ADMIN_LISTEN", "metrics"),
            ("APP__SERVER__HEADER_TIMEOUT", "0s"),
            ("APP__SERVER__IDLE_TIMEOUT", "0s"),
            ("APP__SERVER__MAX_CONNECTIONS", "0"),
        ] {
            let err = Settings::load_from(&env(&[(var, value)]), &repo_config())
                .unwrap_err()
                .to_string();
            assert!(err.contains(var), "{var}={value}: {err}");
        }
    }

    #[test]
    fn follow_up_bounds_have_defaults_and_are_checked() {
        let s = Settings::load_from(&env(&[]), &repo_config())
            .unwrap()
            .settings;
        assert_eq!(
            (s.server.return_get_per_minute, s.server.return_get_burst),
            (60, 20)
        );
        assert_eq!(s.fetch.max_calls_per_second, 5);
        for (var, value, key) in [
            (
                "APP__FETCH__MAX_CALLS_PER_SECOND",
                "0",
                "fetch.max_calls_per_second",
            ),
            ("APP__FETCH__FLOW_TIMEOUT", "0s", "fetch.flow_timeout"),
            (
                "APP__SERVER__RETURN_GET_BURST",
                "0",
                "server.return_get_burst",
            ),
        ] {
            let error = Settings::load_from(&env(&[(var, value)]), &repo_config())
                .unwrap_err()
                .to_string();
            assert!(
                error.contains(key) || error.contains(var),
                "{var}={value}: {error}"
            );
        }
        // A 20 s lease cannot cover a 15 s call after 8 turns at one call a second.
        let error = Settings::load_from(
            &env(&[
                ("APP__FETCH__MAX_CALLS_PER_SECOND", "1"),
                ("APP__FETCH__LEASE", "20s"),
            ]),
            &repo_config(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            error.contains("fetch.lease") && error.contains("23s"),
            "{error}"
        );
        let off = Settings::load_from(
            &env(&[
                ("APP__SERVER__RETURN_GET_PER_MINUTE", "0"),
                ("APP__SERVER__RETURN_GET_BURST", "0"),
            ]),
            &repo_config(),
        );
        assert!(off.is_ok(), "0 disables the return GET limit");
    }

    #[test]
    fn https_on_a_whitelisted_port_has_no_warning() {
        assert!(
            public_url_warnings(Some(&url::Url::parse("https://v.example.com").unwrap()))
                .is_empty()
        );
        assert!(
            public_url_warnings(Some(
                &url::Url::parse("https://v.example.com:16003").unwrap()
            ))
            .is_empty()
        );
    }

    #[test]
    fn identity_retention_and_encryption_are_off_by_default_and_set_from_the_environment() {
        let defaults = Settings::load_from(&env(&[]), &repo_config())
            .unwrap()
            .settings;
        // Only what strangers send is purged by default.
        assert_eq!(
            defaults.retention.cutoffs(40 * 86_400_000),
            Cutoffs {
                results: None,
                journal: None,
                refused: Some(10 * 86_400_000)
            }
        );
        assert_eq!(defaults.retention.refused_bytes_per_day, 32 * 1024 * 1024);
        assert_eq!(defaults.retention.interval, Duration::from_secs(3600));
        assert!(defaults.encryption.key.is_none());
        assert!(!defaults.encryption.keyring().unwrap().encrypts());

        let key = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
        let old = "HxweHRwbGhkYFxYVFBMSERAPDg0MCwoJCAcGBQQDAgE=";
        let loaded = Settings::load_from(
            &env(&[
                ("APP__RETENTION__RESULT_DAYS", "30"),
                ("APP__RETENTION__JOURNAL_DAYS", "7"),
                ("APP__RETENTION__REFUSED_DAYS", "0"),
                ("APP__RETENTION__INTERVAL", "10m"),
                ("APP__ENCRYPTION__KEY", key),
                ("APP__ENCRYPTION__PREVIOUS_KEYS", &format!("{old},{key}")),
            ]),
            &repo_config(),
        )
        .unwrap();
        assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
        let s = loaded.settings;
        assert_eq!(
            s.retention.cutoffs(10 * 86_400_000),
            Cutoffs {
                results: Some(-20 * 86_400_000),
                journal: Some(3 * 86_400_000),
                refused: None
            }
        );
        assert_eq!(s.retention.interval, Duration::from_secs(600));
        assert_eq!(s.encryption.previous_keys.len(), 2);
        assert!(s.encryption.keyring().unwrap().encrypts());
        assert!(!format!("{s:?}").contains(key), "keys stay out of Debug");
    }

    #[test]
    fn a_bad_encryption_key_names_the_key_but_never_echoes_it() {
        for (var, key) in [
            ("APP__ENCRYPTION__KEY", "c2hvcnQtc2VjcmV0"),
            ("APP__ENCRYPTION__PREVIOUS_KEYS", "c2hvcnQtc2VjcmV0"),
        ] {
            let error = Settings::load_from(&env(&[(var, key)]), &repo_config())
                .unwrap_err()
                .to_string();
            assert!(error.contains(var), "{error}");
            assert!(error.contains("32 bytes"), "{error}");
            assert!(!error.contains(key), "{error}");
        }
    }
}
