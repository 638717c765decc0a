//! The callback sender: builds a result, signs it as FaceID does
//! (`sign = lowercase_hex(sha1(API_SECRET + data))`), optionally forges it, and delivers it to
//! a notify_url or return_url.
//!
//! Delivery is byte-exact: the form encodings carry `data` as raw bytes (a length-extension
//! forgery is not UTF-8), and nothing is re-serialised between signing and sending. Redirects
//! are never followed, so a return_url's `303` and `Location` are what the caller sees.

use std::fmt;
use std::time::Duration;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::Value;

use super::result::{self, Subject};
use faceid_protocol::{self as protocol, Status};

/// Appended by `--forge length-extension` unless told otherwise: a second object claiming OK.
pub const DEFAULT_EXTENSION_TAIL: &str = r#",{"status":"OK"}"#;

/// How the `data` and `sign` fields travel in a POST.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Encoding {
    /// `application/x-www-form-urlencoded`, what FaceID's current documents describe.
    #[default]
    Form,
    /// `multipart/form-data`.
    Multipart,
    /// A JSON object body `{"data": "<string>", "sign": "..."}`, as the older seed reads.
    Json,
}

/// A way of getting the signature wrong on purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Forgery {
    /// A well-formed sign computed with the wrong secret.
    BadSign,
    /// `data` changed after signing (its `status` flipped between OK and FAILED).
    Tampered,
    /// SHA-1 length extension: `data` + glue padding + a tail, with a sign that *verifies*,
    /// made without the secret (only its length).
    LengthExtension,
}

impl fmt::Display for Forgery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::BadSign => "bad-sign",
            Self::Tampered => "tampered",
            Self::LengthExtension => "length-extension",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("{0:?} is not an absolute http(s) URL")]
    BadUrl(String),
    #[error(
        "this data is not UTF-8 (a length-extension forgery?) and cannot travel in a JSON body: use form or multipart"
    )]
    NotUtf8ForJson,
    #[error("could not build the HTTP client")]
    Client(#[source] reqwest::Error),
    #[error("request failed")]
    Http(#[source] reqwest::Error),
}

/// What to put in a generated callback result.
#[derive(Debug, Clone, PartialEq)]
pub struct CallbackSpec {
    /// The `status` text, verbatim (`OK`, `FAILED`, `PROCESSING`, or anything odd).
    pub status: String,
    /// `None` mints a fresh `<now seconds>,<uuid>`.
    pub biz_id: Option<String>,
    pub biz_no: Option<String>,
    pub biz_extra_data: Option<String>,
    pub liveness: Option<String>,
    pub confidence: Option<f64>,
}

impl Default for CallbackSpec {
    fn default() -> Self {
        Self {
            status: "OK".into(),
            biz_id: None,
            biz_no: None,
            biz_extra_data: None,
            liveness: None,
            confidence: None,
        }
    }
}

impl CallbackSpec {
    pub fn new(status: impl Into<String>) -> Self {
        Self {
            status: status.into(),
            ..Self::default()
        }
    }

    pub fn biz_id(mut self, biz_id: impl Into<String>) -> Self {
        self.biz_id = Some(biz_id.into());
        self
    }

    pub fn biz_no(mut self, biz_no: impl Into<String>) -> Self {
        self.biz_no = Some(biz_no.into());
        self
    }

    /// Builds the result JSON at `now_ms`; returns `(biz_id, data)`.
    pub fn build(&self, now_ms: i64) -> (String, String) {
        let biz_id = self
            .biz_id
            .clone()
            .unwrap_or_else(|| result::mint_biz_id(now_ms));
        let mut subject = Subject::new(biz_id.clone(), now_ms.div_euclid(1000));
        if let Some(biz_no) = &self.biz_no {
            subject.biz_no = biz_no.clone();
        }
        if let Some(extra) = &self.biz_extra_data {
            subject.biz_extra_data = extra.clone();
        }
        subject.liveness = self.liveness.clone();
        if let Some(confidence) = self.confidence {
            subject.confidence = confidence;
        }
        let data = result::callback_data(&subject, &self.status, &result::request_id(now_ms));
        (biz_id, data)
    }
}

/// The two fields of a callback, exactly as they go on the wire.
#[derive(Clone, PartialEq, Eq)]
pub struct SignedCallback {
    pub data: Vec<u8>,
    pub sign: String,
}

impl fmt::Debug for SignedCallback {
    // `data` holds (fake, but realistic) identity data; keep it out of test output.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignedCallback")
            .field("data_len", &self.data.len())
            .field("sign", &self.sign)
            .finish()
    }
}

impl SignedCallback {
    /// Signs `data` as FaceID does.
    pub fn sign(secret: &str, data: impl Into<Vec<u8>>) -> Self {
        let data = data.into();
        let sign = protocol::sign(secret, &data);
        Self { data, sign }
    }

    /// A forged copy. `tail` is used by [`Forgery::LengthExtension`] only (default
    /// [`DEFAULT_EXTENSION_TAIL`]).
    pub fn forge(&self, secret: &str, forgery: Forgery, tail: Option<&[u8]>) -> Self {
        match forgery {
            Forgery::BadSign => Self {
                data: self.data.clone(),
                sign: protocol::sign(&format!("not-{secret}"), &self.data),
            },
            Forgery::Tampered => Self {
                data: tamper(&self.data),
                sign: self.sign.clone(),
            },
            Forgery::LengthExtension => {
                let tail = tail.unwrap_or(DEFAULT_EXTENSION_TAIL.as_bytes());
                // The attacker knows the secret's length, not the secret.
                match protocol::sign::length_extend(&self.sign, secret.len(), &self.data, tail) {
                    Some((data, sign)) => Self { data, sign },
                    // Only a malformed original sign gets here; extending garbage is garbage.
                    None => Self {
                        data: [self.data.as_slice(), tail].concat(),
                        sign: self.sign.clone(),
                    },
                }
            }
        }
    }

    /// `data` as text, if it is UTF-8.
    pub fn data_text(&self) -> Option<&str> {
        std::str::from_utf8(&self.data).ok()
    }

    /// `data=<…>&sign=<…>`, percent-encoding `data` byte by byte so that non-UTF-8 survives.
    pub fn form_body(&self) -> String {
        let data: String = form_urlencoded::byte_serialize(&self.data).collect();
        let sign: String = form_urlencoded::byte_serialize(self.sign.as_bytes()).collect();
        format!("data={data}&sign={sign}")
    }
}

/// Flips `status` between OK and FAILED (re-serialising the JSON); anything that is not a JSON
/// object gets a byte appended. Either way the bytes no longer match the sign.
fn tamper(data: &[u8]) -> Vec<u8> {
    match serde_json::from_slice::<Value>(data) {
        Ok(Value::Object(mut object)) => {
            let was_ok = object
                .get("status")
                .and_then(Value::as_str)
                .is_some_and(|s| Status::parse(s) == Status::Ok);
            object.insert(
                "status".into(),
                Value::from(if was_ok { "FAILED" } else { "OK" }),
            );
            Value::Object(object).to_string().into_bytes()
        }
        _ => [data, b"x"].concat(),
    }
}

/// What came back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub status: u16,
    pub location: Option<String>,
    pub content_type: Option<String>,
    pub body: String,
}

/// A client as FaceID behaves: no redirects followed, bounded time. Installs rustls' `ring`
/// provider first: reqwest is built with `rustls-no-provider`, and a client built before any
/// provider is installed panics (an error from `install_default` only means one already is).
pub fn http_client() -> Result<reqwest::Client, SendError> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(SendError::Client)
}

fn check_url(url: &str) -> Result<url::Url, SendError> {
    match url::Url::parse(url) {
        Ok(parsed) if matches!(parsed.scheme(), "http" | "https") && parsed.has_host() => {
            Ok(parsed)
        }
        _ => Err(SendError::BadUrl(url.to_owned())),
    }
}

/// POSTs a callback (notify_url, or return_url in POST mode) with `encoding`.
pub async fn post_callback(
    client: &reqwest::Client,
    url: &str,
    callback: &SignedCallback,
    encoding: Encoding,
) -> Result<Delivery, SendError> {
    let url = check_url(url)?;
    let request = client.post(url);
    let request = match encoding {
        Encoding::Form => request
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(callback.form_body()),
        Encoding::Multipart => {
            let form = reqwest::multipart::Form::new()
                .part(
                    "data",
                    reqwest::multipart::Part::bytes(callback.data.clone()),
                )
                .text("sign", callback.sign.clone());
            request.multipart(form)
        }
        Encoding::Json => {
            let data = callback.data_text().ok_or(SendError::NotUtf8ForJson)?;
            request.json(&serde_json::json!({ "data": data, "sign": callback.sign }))
        }
    };
    deliver(request).await
}

/// Characters left as they are in the appended `biz_id`: URL-safe ones and the comma, since
/// FaceID appends the biz_id to the return_url as is.
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b',');

/// `return_url` with `biz_id=<id>` appended to whatever query it has (`?` or `&`), before any
/// fragment — the three shapes of seed 003.
pub fn return_get_url(return_url: &str, biz_id: &str) -> Result<String, SendError> {
    check_url(return_url)?;
    let (base, fragment) = match return_url.split_once('#') {
        Some((base, fragment)) => (base, Some(fragment)),
        None => (return_url, None),
    };
    let joiner = if !base.contains('?') {
        "?"
    } else if base.ends_with('?') || base.ends_with('&') {
        ""
    } else {
        "&"
    };
    let mut url = format!(
        "{base}{joiner}biz_id={}",
        utf8_percent_encode(biz_id, QUERY_VALUE)
    );
    if let Some(fragment) = fragment {
        url.push('#');
        url.push_str(fragment);
    }
    Ok(url)
}

/// The browser's arrival at a return_url in GET mode: `GET <url>?biz_id=…`, no signature.
pub async fn return_get(
    client: &reqwest::Client,
    return_url: &str,
    biz_id: &str,
) -> Result<Delivery, SendError> {
    let url = return_get_url(return_url, biz_id)?;
    // A fragment never goes over the wire; reqwest drops it.
    deliver(client.get(url)).await
}

async fn deliver(request: reqwest::RequestBuilder) -> Result<Delivery, SendError> {
    let response = request.send().await.map_err(SendError::Http)?;
    let header = |name| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let status = response.status().as_u16();
    let location = header(reqwest::header::LOCATION);
    let content_type = header(reqwest::header::CONTENT_TYPE);
    let body = response.text().await.map_err(SendError::Http)?;
    Ok(Delivery {
        status,
        location,
        content_type,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn return_get_urls_append_biz_id_like_faceid() {
        let id = "1462259748,52b13fb5-8dfb-4537-a62b-a641d5e929f1";
        let cases = [
            ("https://x.test/r", format!("https://x.test/r?biz_id={id}")),
            (
                "https://x.test/r?a=b",
                format!("https://x.test/r?a=b&biz_id={id}"),
            ),
            (
                "https://x.test/r?a=b#frag",
                format!("https://x.test/r?a=b&biz_id={id}#frag"),
            ),
            ("https://x.test/r?", format!("https://x.test/r?biz_id={id}")),
        ];
        for (url, want) in cases {
            assert_eq!(return_get_url(url, id).unwrap(), want, "url {url}");
        }
        assert_eq!(
            return_get_url("https://x.test/r", "a b&c").unwrap(),
            "https://x.test/r?biz_id=a%20b%26c"
        );
        assert!(matches!(
            return_get_url("not a url", id),
            Err(SendError::BadUrl(_))
        ));
    }

    #[test]
    fn forgeries_differ_from_the_original_in_the_right_part() {
        let original = SignedCallback::sign(
            "s",
            br#"{"status":"FAILED","biz_info":{"biz_id":"1,a"}}"#.to_vec(),
        );
        let bad = original.forge("s", Forgery::BadSign, None);
        assert_eq!(bad.data, original.data);
        assert_ne!(bad.sign, original.sign);
        let tampered = original.forge("s", Forgery::Tampered, None);
        assert_eq!(tampered.sign, original.sign);
        assert!(tampered.data_text().unwrap().contains(r#""status":"OK""#));
        let extended = original.forge("s", Forgery::LengthExtension, None);
        assert!(extended.data.starts_with(&original.data));
        assert!(extended.data.ends_with(DEFAULT_EXTENSION_TAIL.as_bytes()));
        assert_eq!(
            protocol::verify("s", &extended.data, &extended.sign),
            Ok(())
        );
    }

    #[test]
    fn the_form_body_keeps_every_byte() {
        let cb = SignedCallback {
            data: vec![b'{', 0x80, 0x00, b' ', b'&', b'='],
            sign: "ab".into(),
        };
        assert_eq!(cb.form_body(), "data=%7B%80%00+%26%3D&sign=ab");
    }
}
