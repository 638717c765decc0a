//! The get_result client: `GET {megvii.base_url}/faceid/lite/get_result` (by biz_id) and
//! `/faceid/lite/raw/get_result` (by RAW token), over reqwest with rustls.
//!
//! Owns: building the request, the connect and total timeouts, reading the answer (capped),
//! turning FaceID's error bodies into [`FaceIdError`]s, and splitting a result into the JSON
//! we store (images stripped) and the decoded images.
//!
//! Invariants:
//! - **No error or log line can carry the request URL**: it holds `api_secret` in its query
//!   string. Every `reqwest::Error` is stripped with [`reqwest::Error::without_url`] before it
//!   is wrapped, redirects are not followed (a redirect would replay the secret to another
//!   place), and any text we keep from an unrecognised answer is scrubbed of the key and the
//!   secret and cut short.
//! - A result is never refused over its images: an undecodable image is skipped, and one
//!   warning per result names the skipped images and why, never their content.
//! - This module does not decide what an error means for the follow-up (that is
//!   [`UpstreamError::class`] plus the worker); it only reports faithfully what happened.

use std::fmt;

use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value};

use crate::config::MegviiSettings;
use crate::protocol::payload::{self, DataError, ResultFields};
use crate::protocol::{CallbackResult, ErrorClass, FaceIdError};
use crate::store::{CallbackKind, IncomingResult, NewImage};

/// Largest answer we read. Four JPEGs in base64 stay well below this; anything bigger is not
/// a get_result answer.
pub const MAX_ANSWER_BYTES: usize = 32 * 1024 * 1024;

/// Which get_result to call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// `/faceid/lite/get_result?biz_id=`.
    Lite,
    /// `/faceid/lite/raw/get_result?token=` (seed 002).
    Raw,
}

impl Variant {
    fn path(self) -> &'static str {
        match self {
            Self::Lite => "/faceid/lite/get_result",
            Self::Raw => "/faceid/lite/raw/get_result",
        }
    }
}

/// A get_result answer that is a result (whatever its status).
pub struct Fetched {
    pub http_status: u16,
    pub fields: ResultFields,
    /// The answer as a JSON object with its images removed, keys in FaceID's order.
    pub result: String,
    pub images: Vec<NewImage>,
}

impl fmt::Debug for Fetched {
    // The result holds identity data: only its shape is printable.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fetched")
            .field("http_status", &self.http_status)
            .field("status", &self.fields.status)
            .field("result_len", &self.result.len())
            .field(
                "images",
                &self
                    .images
                    .iter()
                    .map(|i| i.name.as_str())
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// Why a get_result call produced no result. `Display` and `Debug` never contain the URL,
/// the key or the secret.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// FaceID answered with one of its error codes.
    #[error("FaceID answered HTTP {status} {error}")]
    FaceId { status: u16, error: FaceIdError },
    /// A status without a FaceID error body (a proxy page, a redirect, an empty body).
    #[error("FaceID answered HTTP {status} without a FaceID error ({body:?})")]
    Status { status: u16, body: String },
    /// A 2xx whose body is not one JSON object.
    #[error("FaceID answered HTTP {status} with a body that is not a result: {reason}")]
    BadAnswer { status: u16, reason: DataError },
    #[error("FaceID's answer is larger than {limit} bytes")]
    TooLarge { limit: usize },
    /// The connect or total timeout elapsed.
    #[error("get_result timed out")]
    Timeout(#[source] reqwest::Error),
    #[error("cannot connect to FaceID")]
    Connect(#[source] reqwest::Error),
    /// Any other transport failure (reset connection, broken body, TLS).
    #[error("get_result failed in transport")]
    Transport(#[source] reqwest::Error),
}

impl UpstreamError {
    /// What the follow-up should do next.
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::FaceId { status, error } => error.class(*status),
            Self::Status { status, .. } => match status {
                408 | 429 | 500..=599 => ErrorClass::Transient,
                // Redirects, 401/403/404 without FaceID's body: we are talking to the wrong
                // place (megvii.base_url) or through a misconfigured proxy.
                300..=399 | 401 | 403 | 404 => ErrorClass::Configuration,
                _ => ErrorClass::Terminal,
            },
            // A broken answer may be a proxy's hiccup; the budget bounds the retries.
            Self::BadAnswer { .. } => ErrorClass::Transient,
            // The same answer would be as large next time.
            Self::TooLarge { .. } => ErrorClass::Terminal,
            Self::Timeout(_) | Self::Connect(_) | Self::Transport(_) => ErrorClass::Transient,
        }
    }

    /// A short code for the record's `fetch.last_error`, which any API token can read: one
    /// of FaceID's documented codes without its detail (`AUTHORIZATION_ERROR`, not
    /// `AUTHORIZATION_ERROR:<reason>`), or the HTTP status when FaceID's code is unknown or
    /// absent, or our own name for a transport failure. Never text from the answer: an
    /// upstream may quote the request, secret and all. (The detail is in the log, redacted.)
    pub fn code(&self) -> String {
        match self {
            Self::FaceId { status, error } => match error.code() {
                Some(code) => code.to_owned(),
                None => format!("HTTP {status}"),
            },
            Self::Status { status, .. } => format!("HTTP {status}"),
            Self::BadAnswer { .. } => "BAD_ANSWER".to_owned(),
            Self::TooLarge { .. } => "ANSWER_TOO_LARGE".to_owned(),
            Self::Timeout(_) => "TIMEOUT".to_owned(),
            Self::Connect(_) => "CONNECT_ERROR".to_owned(),
            Self::Transport(_) => "TRANSPORT_ERROR".to_owned(),
        }
    }
}

/// The get_result client. Cheap to clone (the connection pool is shared).
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: url::Url,
    api_key: SecretString,
    api_secret: SecretString,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The base URL is configuration, not a secret; the credentials are left out.
        f.debug_struct("megvii::Client")
            .field("base", &self.base.as_str())
            .finish_non_exhaustive()
    }
}

impl Client {
    pub fn new(settings: &MegviiSettings) -> anyhow::Result<Self> {
        crate::install_crypto_provider();
        let http = reqwest::Client::builder()
            .connect_timeout(settings.connect_timeout)
            .timeout(settings.timeout)
            // Never follow a redirect: it would carry the secret in the query to wherever it
            // points. FaceID's API does not redirect; a 3xx is reported as a configuration
            // problem instead.
            .redirect(reqwest::redirect::Policy::none())
            // One reserved call is one request on the wire: no transparent retries, not even
            // reqwest's default replay of HTTP/2 refused streams, so the budget counted in the
            // store is exactly what any proxy or FaceID itself can observe.
            .retry(reqwest::retry::never())
            .user_agent(concat!("faceid-receiver/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| {
                anyhow::anyhow!("building the get_result HTTP client: {}", e.without_url())
            })?;
        Ok(Self {
            http,
            base: settings.base_url.clone(),
            api_key: settings.api_key.clone(),
            api_secret: settings.api_secret.clone(),
        })
    }

    /// Lite get_result for `biz_id`, with `return_image` (0–6) and `return_verify_time=1`.
    pub async fn get_result(
        &self,
        biz_id: &str,
        return_image: i32,
    ) -> Result<Fetched, UpstreamError> {
        let return_image = return_image.clamp(0, 6).to_string();
        let query = [
            ("biz_id", biz_id),
            ("return_image", &return_image),
            ("return_verify_time", "1"),
        ];
        self.call(Variant::Lite, &query).await
    }

    /// RAW get_result for a get_token `token`. RAW knows only 0 (no image), 1 (best) and 2
    /// (two best); Lite's 4 ("all") maps to 2, any other image request to 1.
    pub async fn get_raw_result(
        &self,
        token: &str,
        return_image: i32,
    ) -> Result<Fetched, UpstreamError> {
        let raw_image = match return_image {
            i32::MIN..=0 => "0",
            4 => "2",
            _ => "1",
        };
        self.call(
            Variant::Raw,
            &[("token", token), ("return_image", raw_image)],
        )
        .await
    }

    async fn call(
        &self,
        variant: Variant,
        params: &[(&str, &str)],
    ) -> Result<Fetched, UpstreamError> {
        let mut url = self.base.clone();
        // Keep any path prefix of the base (a proxy or a simulator mounted below a path).
        let prefix = url.path().trim_end_matches('/').to_owned();
        url.set_path(&format!("{prefix}{}", variant.path()));
        url.set_query(None);
        {
            let mut query = url.query_pairs_mut();
            query.append_pair("api_key", self.api_key.expose_secret());
            query.append_pair("api_secret", self.api_secret.expose_secret());
            query.extend_pairs(params);
        }

        let mut response = self.http.get(url).send().await.map_err(transport_error)?;
        let status = response.status().as_u16();
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(transport_error)? {
            if body.len() + chunk.len() > MAX_ANSWER_BYTES {
                return Err(UpstreamError::TooLarge {
                    limit: MAX_ANSWER_BYTES,
                });
            }
            body.extend_from_slice(&chunk);
        }
        self.interpret(status, &body)
    }

    /// Turns an answer into a result or an error.
    fn interpret(&self, status: u16, body: &[u8]) -> Result<Fetched, UpstreamError> {
        let parsed = payload::parse_object(body);
        // FaceID's error shape, on any status: `{"error_message": "CODE[:detail]", ...}`.
        if let Ok((_, object)) = &parsed {
            let message = object.get("error_message").and_then(Value::as_str);
            if let Some(message) =
                message.filter(|_| !(200..300).contains(&status) || !object.contains_key("status"))
            {
                let error = FaceIdError::parse(&self.scrub(message));
                return Err(UpstreamError::FaceId { status, error });
            }
        }
        if !(200..300).contains(&status) {
            return Err(UpstreamError::Status {
                status,
                body: self.scrub(&String::from_utf8_lossy(body)),
            });
        }
        let (text, object) =
            parsed.map_err(|reason| UpstreamError::BadAnswer { status, reason })?;
        Ok(split_result(status, text, object))
    }

    /// Keeps at most 120 characters of an unrecognised answer, without the credentials in
    /// any encoding (a proxy's error page may echo the request line, percent-encoded) or
    /// control characters. Redacted before cutting, so a cut cannot split a secret.
    fn scrub(&self, text: &str) -> String {
        let text = crate::telemetry::redact(
            text,
            &[
                self.api_secret.expose_secret(),
                self.api_key.expose_secret(),
            ],
        );
        text.chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .take(120)
            .collect::<String>()
            .trim()
            .to_owned()
    }
}

/// Strips the URL (it holds the secret) and sorts the failure into timeout / connect / other.
fn transport_error(error: reqwest::Error) -> UpstreamError {
    let error = error.without_url();
    if error.is_timeout() {
        UpstreamError::Timeout(error)
    } else if error.is_connect() {
        UpstreamError::Connect(error)
    } else {
        UpstreamError::Transport(error)
    }
}

/// Splits a result into the stored JSON (images removed) and the decoded images. `text` is
/// the answer as received and `object` its derived view ([`payload::parse_object`]): the
/// fields and the images are read from the view, while the stored JSON is cut from the text
/// itself, so every kept value stays byte-exact — including what the view could only hold in
/// a safe form (a lone surrogate, `1e999`, a 30-digit integer).
fn split_result(http_status: u16, text: &str, object: Map<String, Value>) -> Fetched {
    let fields = payload::result_fields(&object);
    let images = images_in(&object);
    let result = if holds_images(&object) {
        stored_without_images(text, || object)
    } else {
        text.trim().to_owned()
    };
    Fetched {
        http_status,
        fields,
        result,
        images,
    }
}

/// A verified callback's result as it is stored, by the callback routes and by replay alike:
/// the row to merge, and the images cut out of it (`cut_images`) to store beside it.
pub fn signed_callback(
    result: &CallbackResult,
    kind: CallbackKind,
) -> (IncomingResult, Vec<NewImage>) {
    let (text, images) =
        cut_images(&result.raw, &result.view).unwrap_or_else(|| (result.raw.clone(), Vec::new()));
    let incoming = IncomingResult::new(
        result.biz_id.as_str(),
        &result.fields,
        text,
        kind.source(),
        true,
    );
    (incoming, images)
}

/// Images in a signed callback's result text (FaceID documents that callbacks carry none,
/// but a result must not hold pictures wherever it came from): when at least one decodes,
/// the result without its image keys, as get_result answers are stored, and the images;
/// `None` when there is nothing to cut, so that the stored text stays FaceID's bytes.
/// `view` is the callback's view of `raw` (its images among the members it holds), as the
/// callback was parsed: not parsed again.
fn cut_images(raw: &str, view: &Map<String, Value>) -> Option<(String, Vec<NewImage>)> {
    if !holds_images(view) {
        return None;
    }
    let images = images_in(view);
    // The view holds only some members: should the text not split, rebuild from all of them.
    let full_view = || {
        payload::parse_object(raw.as_bytes())
            .map(|(_, object)| object)
            .unwrap_or_default()
    };
    (!images.is_empty()).then(|| (stored_without_images(raw, full_view), images))
}

fn holds_images(object: &Map<String, Value>) -> bool {
    object.keys().any(|key| payload::is_image_key(key))
}

/// The images under `images` and the top-level image keys that decode. The others are
/// skipped with one warning for the whole result (FaceID's own example callback carries three
/// placeholders, `"data: image/jpeg;base64,..."`: a line each would triple the log of every
/// such callback).
fn images_in(object: &Map<String, Value>) -> Vec<NewImage> {
    let (mut images, mut skipped) = (Vec::new(), Vec::new());
    for (key, value) in object {
        if key == "images" {
            if let Value::Object(inner) = value {
                for (name, value) in inner {
                    collect_image(name, value, &mut images, &mut skipped);
                }
            }
        } else if payload::is_image_key(key) {
            collect_image(key, value, &mut images, &mut skipped);
        }
    }
    if !skipped.is_empty() {
        tracing::warn!(skipped = %skipped.join(", "), "result images skipped");
    }
    images
}

/// `text` without its image members, the others cut verbatim from the text; when serde_json
/// cannot read a member name even as raw text (a lone surrogate in a key), the full view (every
/// member) with the images removed, rather than lose the result.
fn stored_without_images(text: &str, full_view: impl FnOnce() -> Map<String, Value>) -> String {
    without_images(text).unwrap_or_else(|| {
        let kept: Map<String, Value> = full_view()
            .into_iter()
            .filter(|(key, _)| !payload::is_image_key(key))
            .collect();
        Value::Object(kept).to_string()
    })
}

/// The object `text` without its image members, every other member's value cut verbatim
/// from the text, in FaceID's order.
fn without_images(text: &str) -> Option<String> {
    let Members(members) = serde_json::from_str(text).ok()?;
    let kept: Vec<String> = members
        .iter()
        .filter(|(key, _)| !payload::is_image_key(key))
        .map(|(key, raw)| {
            Some(format!(
                "{}:{}",
                serde_json::to_string(key).ok()?,
                raw.get()
            ))
        })
        .collect::<Option<_>>()?;
    Some(format!("{{{}}}", kept.join(",")))
}

/// A JSON object's members in order, each value as its raw text.
struct Members(Vec<(String, Box<serde_json::value::RawValue>)>);

impl<'de> serde::Deserialize<'de> for Members {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Members;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Members, A::Error> {
                let mut members = Vec::new();
                while let Some(member) = map.next_entry()? {
                    members.push(member);
                }
                Ok(Members(members))
            }
        }
        deserializer.deserialize_map(Visit)
    }
}

/// Decodes one image value into `images`, or notes in `skipped` which image and why (an
/// unusable name by its length only: it is the sender's text). Never fails.
fn collect_image(name: &str, value: &Value, images: &mut Vec<NewImage>, skipped: &mut Vec<String>) {
    let valid_name = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if !valid_name {
        skipped.push(format!("a name of {} bytes: unusable name", name.len()));
        return;
    }
    let text = match value {
        Value::String(text) => text,
        // FaceID documents null when it has no image.
        Value::Null => return,
        _ => {
            skipped.push(format!("{name}: not a string"));
            return;
        }
    };
    match decode_data_url(text) {
        Ok(Some(jpeg)) => images.push(NewImage {
            name: name.to_owned(),
            jpeg,
        }),
        // `"data:image/jpeg;base64,"`: the RAW examples' way of saying "no image".
        Ok(None) => {}
        Err(reason) => skipped.push(format!("{name}: {reason}")),
    }
}

/// Lenient base64: with or without padding, whitespace ignored.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Decodes `data:image/jpeg;base64,<b64>` (whitespace anywhere tolerated, as in the seed's
/// `"data: image/jpeg;base64,..."`), or a bare base64 string (RAW documents "a Base64
/// string"). `Ok(None)` when there is no data at all.
pub fn decode_data_url(text: &str) -> Result<Option<Vec<u8>>, &'static str> {
    let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    let data = match compact.get(..5) {
        Some(scheme) if scheme.eq_ignore_ascii_case("data:") => {
            let (meta, data) = compact[5..]
                .split_once(',')
                .ok_or("data URL without a comma")?;
            if !meta.to_ascii_lowercase().ends_with(";base64") {
                return Err("data URL is not base64");
            }
            data
        }
        _ => compact.as_str(),
    };
    if data.is_empty() {
        return Ok(None);
    }
    let bytes = BASE64.decode(data).or_else(|_| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(data.trim_end_matches('='))
    });
    match bytes {
        Ok(bytes) if !bytes.is_empty() => Ok(Some(bytes)),
        Ok(_) => Ok(None),
        Err(_) => Err("invalid base64"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Status;
    use std::time::Duration;

    const SECRET: &str = "s3cret-do-not-print";
    const KEY: &str = "key-123";

    fn client(base: &str) -> Client {
        client_with_secret(base, SECRET)
    }

    fn client_with_secret(base: &str, secret: &str) -> Client {
        Client::new(&MegviiSettings {
            api_key: SecretString::from(KEY),
            api_secret: SecretString::from(secret),
            previous_secrets: Vec::new(),
            base_url: base.parse().unwrap(),
            connect_timeout: Duration::from_millis(300),
            timeout: Duration::from_millis(500),
        })
        .unwrap()
    }

    fn assert_clean(error: &UpstreamError) {
        for text in [
            format!("{error}"),
            format!("{error:?}"),
            crate::telemetry::error_chain(error),
        ] {
            assert!(!text.contains(SECRET), "secret leaked: {text}");
            assert!(!text.contains(KEY), "api key leaked: {text}");
            assert!(
                !text.contains("api_secret") && !text.contains("api_key"),
                "query leaked: {text}"
            );
            assert!(
                !text.contains("/faceid/lite") && !text.contains("http://"),
                "URL leaked: {text}"
            );
        }
    }

    #[tokio::test]
    async fn a_connection_error_names_neither_the_url_nor_the_secret() {
        // Port 9 (discard) is closed on test machines: the connection is refused.
        let error = client("http://127.0.0.1:9")
            .get_result("1462259748,abc", 0)
            .await
            .unwrap_err();
        assert!(matches!(error, UpstreamError::Connect(_)), "got {error:?}");
        assert_eq!(error.class(), ErrorClass::Transient);
        assert_clean(&error);
    }

    #[tokio::test]
    async fn a_timeout_names_neither_the_url_nor_the_secret() {
        // A listener that accepts and never answers.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hold = tokio::spawn(async move {
            let mut held = Vec::new();
            loop {
                let (socket, _) = listener.accept().await.unwrap();
                held.push(socket);
            }
        });
        let error = client(&format!("http://{addr}"))
            .get_result("1462259748,abc", 0)
            .await
            .unwrap_err();
        hold.abort();
        assert!(matches!(error, UpstreamError::Timeout(_)), "got {error:?}");
        assert_eq!(error.code(), "TIMEOUT");
        assert_clean(&error);
    }

    #[test]
    fn error_bodies_become_faceid_codes_with_their_status() {
        let c = client("http://127.0.0.1:9");
        let body = include_bytes!("../tests/vectors/seed_get_result_not_found.json");
        let error = c.interpret(400, body).unwrap_err();
        assert!(
            matches!(
                &error,
                UpstreamError::FaceId {
                    status: 400,
                    error: FaceIdError::ResultNotFound
                }
            ),
            "{error:?}"
        );
        assert_eq!(error.class(), ErrorClass::NotFound);
        assert_eq!(error.code(), "RESULT_NOT_FOUND");

        let error = c
            .interpret(403, br#"{"error_message":"AUTHORIZATION_ERROR:Denied."}"#)
            .unwrap_err();
        assert_eq!(error.class(), ErrorClass::Configuration);
        assert_eq!(error.code(), "AUTHORIZATION_ERROR", "the detail stays out");

        let error = c
            .interpret(403, br#"{"error_message":"CONCURRENCY_LIMIT_EXCEEDED"}"#)
            .unwrap_err();
        assert_eq!(error.class(), ErrorClass::Transient);
    }

    #[test]
    fn unknown_bodies_are_kept_short_and_scrubbed() {
        let c = client("http://127.0.0.1:9");
        let page = format!(
            "<html>502 Bad Gateway for GET /faceid/lite/get_result?api_key={KEY}&api_secret={SECRET}\n{}",
            "x".repeat(500)
        );
        let error = c.interpret(502, page.as_bytes()).unwrap_err();
        let UpstreamError::Status { status: 502, body } = &error else {
            panic!("{error:?}")
        };
        assert!(body.chars().count() <= 120);
        assert!(!body.contains(SECRET) && !body.contains(KEY), "{body}");
        assert_eq!(error.class(), ErrorClass::Transient);
        assert_eq!(error.code(), "HTTP 502");

        let error = c.interpret(404, b"Not Found").unwrap_err();
        assert_eq!(error.class(), ErrorClass::Configuration);
        let error = c.interpret(200, b"<html>").unwrap_err();
        assert!(matches!(error, UpstreamError::BadAnswer { .. }));
        let error = c
            .interpret(500, br#"{"error_message":"SOMETHING_NEW"}"#)
            .unwrap_err();
        assert_eq!(error.class(), ErrorClass::Transient);
        assert_eq!(error.code(), "HTTP 500", "an unknown code is not echoed");
    }

    #[test]
    fn an_answer_quoting_the_request_keeps_no_form_of_the_secret() {
        let c = client_with_secret("http://127.0.0.1:9", "s3/cr+t=Zq&x%41");
        let query = "api_key=key-123&api_secret=s3%2Fcr%2Bt%3DZq%26x%2541&biz_id=1";
        let page = format!("<html>502 for GET /faceid/lite/get_result?{query}</html>");
        let json = format!(r#"{{"error_message":"BAD_ARGUMENTS:{query}"}}"#);
        for (status, body) in [(502, page), (400, json)] {
            let error = c.interpret(status, body.as_bytes()).unwrap_err();
            for text in [
                error.code(),
                error.to_string(),
                format!("{error:?}"),
                crate::telemetry::error_chain(&error),
            ] {
                assert!(!text.contains("s3%2Fcr%2Bt%3DZq%26x%2541"), "{text}");
                assert!(!text.contains("key-123"), "{text}");
            }
            assert!(!error.code().contains("api_"), "{}", error.code());
        }
    }

    #[test]
    fn the_seed_result_is_stored_without_images_in_its_key_order() {
        let c = client("http://127.0.0.1:9");
        let body = include_str!("../tests/vectors/seed_get_result_ok.json");
        let fetched = c.interpret(200, body.as_bytes()).unwrap();
        assert_eq!(fetched.fields.status, Status::Ok);
        assert!(!fetched.result.contains("\"images\""), "images stripped");
        assert!(!fetched.result.contains("base64"), "no image data left");
        // The seed's images are `"data: image/jpeg;base64,..."`: undecodable, skipped.
        assert!(fetched.images.is_empty());
        let keys: Vec<String> = serde_json::from_str::<Map<String, Value>>(&fetched.result)
            .unwrap()
            .keys()
            .cloned()
            .collect();
        assert_eq!(keys.first().map(String::as_str), Some("request_id"));
        assert_eq!(
            keys.last().map(String::as_str),
            Some("time_used"),
            "order kept after the removed key"
        );
    }

    #[test]
    fn images_are_decoded_and_garbage_is_skipped() {
        let c = client("http://127.0.0.1:9");
        let jpeg = [0xff, 0xd8, 0xff, 0xe0, 1, 2, 3];
        let b64 = base64::engine::general_purpose::STANDARD.encode(jpeg);
        let body = serde_json::json!({
            "status": "OK",
            "images": {
                "image_best": format!("data:image/jpeg;base64,{b64}"),
                "image_idcard_front": format!("data: image/jpeg;\nbase64,{}", b64.trim_end_matches('=')),
                "image_idcard_back": "data: image/jpeg;base64,...",
                "image_face_side": null,
                "../etc": format!("data:image/jpeg;base64,{b64}"),
            },
            "time_used": 1
        })
        .to_string();
        let fetched = c.interpret(200, body.as_bytes()).unwrap();
        let names: Vec<&str> = fetched.images.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["image_best", "image_idcard_front"]);
        assert!(fetched.images.iter().all(|i| i.jpeg == jpeg));
        assert_eq!(fetched.result, r#"{"status":"OK","time_used":1}"#);
    }

    /// The seed callback's three placeholder images are one warning, naming them and why,
    /// and never their content.
    #[test]
    fn skipped_images_are_one_warning_per_result() {
        #[derive(Clone, Default)]
        struct Lines(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
        impl std::io::Write for Lines {
            fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(bytes);
                Ok(bytes.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let lines = Lines::default();
        let writer = lines.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        let seed = payload::parse_callback_data(
            include_str!("../tests/vectors/seed_get_result_ok.json").as_bytes(),
        )
        .unwrap();
        let (_, images) = tracing::subscriber::with_default(subscriber, || {
            signed_callback(&seed, CallbackKind::Notify)
        });
        assert!(images.is_empty());
        let text = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), 1, "{text}");
        for image in ["image_best", "image_idcard_front", "image_idcard_back"] {
            assert!(text.contains(&format!("{image}: invalid base64")), "{text}");
        }
        assert!(
            text.contains("WARN") && !text.contains("data: image"),
            "{text}"
        );
    }

    #[test]
    fn raw_top_level_images_are_stripped_and_an_empty_one_is_no_image() {
        let c = client("http://127.0.0.1:9");
        let body = include_str!("../tests/vectors/seed_raw_not_started.json");
        let fetched = c.interpret(200, body.as_bytes()).unwrap();
        assert_eq!(fetched.fields.status, Status::NotStarted);
        assert!(fetched.images.is_empty());
        assert!(!fetched.result.contains("image_best"));
        assert_eq!(
            fetched.fields.biz_no.as_deref(),
            Some("c22fe4e0-66ba-4078-bd9b-3b1a20628f8d")
        );

        let b64 = base64::engine::general_purpose::STANDARD.encode(b"jpeg-bytes");
        let body = format!(
            r#"{{"status":"OK","image_best":"{b64}","image_best_2":"data:image/jpeg;base64,{b64}"}}"#
        );
        let fetched = c.interpret(200, body.as_bytes()).unwrap();
        assert_eq!(
            fetched.images.len(),
            2,
            "bare base64 and data URL both decode"
        );
    }

    #[test]
    fn an_answer_holding_what_serde_json_refuses_is_a_result_kept_byte_exact() {
        let c = client("http://127.0.0.1:9");
        let b64 = base64::engine::general_purpose::STANDARD.encode(b"jpeg-bytes");
        let kept = r#""status": "OK", "biz_info": {"biz_id": "1,a", "biz_no": "n\u0000\ud800"},
            "verify_result": {"result_faceid": {"confidence": 1e999}}, "idcard_info": {"idcard_name": "\udfff"},
            "big": 123456789012345678901234567890"#;
        // Without images the answer is stored exactly as received.
        let body = format!("{{{kept}}}");
        let fetched = c.interpret(200, body.as_bytes()).unwrap();
        assert_eq!(fetched.result, body);
        assert_eq!(fetched.fields.status, Status::Ok);
        assert_eq!(fetched.fields.biz_no.as_deref(), Some(r"n\u0000\ud800"));
        assert_eq!(fetched.fields.confidence, None);
        // With images, every other member is cut verbatim from the answer.
        let body =
            format!(r#"{{"images": {{"image_best": "data:image/jpeg;base64,{b64}"}}, {kept}}}"#);
        let fetched = c.interpret(200, body.as_bytes()).unwrap();
        assert_eq!(fetched.images.len(), 1);
        assert_eq!(
            fetched.result,
            r#"{"status":"OK","biz_info":{"biz_id": "1,a", "biz_no": "n\u0000\ud800"},"verify_result":{"result_faceid": {"confidence": 1e999}},"idcard_info":{"idcard_name": "\udfff"},"big":123456789012345678901234567890}"#
        );
    }

    /// A callback's view holds only the members we read; when its text cannot be split (a
    /// lone surrogate in a member name), the stored result is rebuilt from all of them.
    #[test]
    fn a_callback_whose_text_cannot_be_split_keeps_every_member_but_its_images() {
        let b64 = base64::engine::general_purpose::STANDARD.encode(b"jpeg-bytes");
        let data = format!(
            r#"{{"status":"OK","biz_info":{{"biz_id":"1,a"}},"idcard_info":{{"idcard_name":"N"}},"\ud800":1,"images":{{"image_best":"data:image/jpeg;base64,{b64}"}}}}"#
        );
        let result = payload::parse_callback_data(data.as_bytes()).unwrap();
        assert!(
            without_images(&data).is_none(),
            "the case under test: the text does not split"
        );
        let (incoming, images) = signed_callback(&result, CallbackKind::Notify);
        assert_eq!(images.len(), 1);
        let stored: Map<String, Value> = serde_json::from_str(&incoming.result).unwrap();
        let keys: Vec<&str> = stored.keys().map(String::as_str).collect();
        assert_eq!(keys, ["status", "biz_info", "idcard_info", "\\ud800"]);
        assert_eq!(stored["idcard_info"]["idcard_name"], "N");
    }

    #[test]
    fn data_urls_decode_leniently() {
        assert_eq!(
            decode_data_url("data:image/jpeg;base64,aGk=").unwrap(),
            Some(b"hi".to_vec())
        );
        assert_eq!(
            decode_data_url("DATA: image/jpeg; base64, aGk").unwrap(),
            Some(b"hi".to_vec())
        );
        assert_eq!(decode_data_url("data:image/jpeg;base64,").unwrap(), None);
        assert_eq!(decode_data_url("").unwrap(), None);
        assert!(decode_data_url("data:image/jpeg;base64,...").is_err());
        assert!(decode_data_url("data:image/jpeg,rawbytes").is_err());
    }
}
