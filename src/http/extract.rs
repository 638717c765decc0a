//! Decoding a callback body into its two fields, `data` and `sign`, whatever the encoding
//! FaceID (or a proxy) chose: `application/x-www-form-urlencoded` (what FaceID documents),
//! `multipart/form-data`, or a JSON object `{"data": "...", "sign": "..."}` (the older
//! document calls the body "a JSON").
//!
//! Invariant: `data` comes out as the exact bytes that were signed. Form values are
//! percent-decoded to *bytes* — not through a lossy UTF-8 conversion, which would turn a
//! forged tail's invalid bytes into U+FFFD and change what the sign is checked over.

use bytes::Bytes;
use percent_encoding::percent_decode;
use serde::Deserialize;
use serde_json::value::RawValue;

/// The signed fields of one callback.
pub struct CallbackFields {
    pub data: Vec<u8>,
    pub sign: String,
}

/// Why a body could not be read. Messages name the problem, never the content.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BodyError {
    #[error(
        "unsupported content type: send application/x-www-form-urlencoded, multipart/form-data or application/json"
    )]
    UnsupportedContentType,
    #[error("the {0} field is missing")]
    Missing(&'static str),
    #[error("the {0} field appears more than once")]
    Duplicate(&'static str),
    #[error("the sign field is not text")]
    SignNotText,
    #[error("malformed multipart body")]
    Multipart,
    #[error("malformed JSON body: expected an object with string fields data and sign")]
    Json,
}

impl BodyError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::UnsupportedContentType => "unsupported_content_type",
            Self::Missing(_) => "missing_field",
            Self::Duplicate(_) => "duplicate_field",
            Self::SignNotText | Self::Multipart | Self::Json => "malformed_body",
        }
    }
}

/// Decodes `body` according to `content_type` (a missing type is read as a form, which is
/// what FaceID sends).
pub async fn decode_callback(
    content_type: Option<&str>,
    body: Bytes,
) -> Result<CallbackFields, BodyError> {
    let mime = content_type.map(|c| {
        c.split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase()
    });
    match mime.as_deref() {
        None | Some("") | Some("application/x-www-form-urlencoded") => decode_form(&body),
        Some("multipart/form-data") => {
            decode_multipart(content_type.unwrap_or_default(), body).await
        }
        Some(m) if m == "application/json" || m.ends_with("+json") => decode_json(&body),
        Some(_) => Err(BodyError::UnsupportedContentType),
    }
}

#[derive(Default)]
struct Fields {
    data: Option<Vec<u8>>,
    sign: Option<Vec<u8>>,
}

impl Fields {
    fn set(&mut self, name: &[u8], value: Vec<u8>) -> Result<(), BodyError> {
        let (slot, field) = match name {
            b"data" => (&mut self.data, "data"),
            b"sign" => (&mut self.sign, "sign"),
            // Other fields are ignored: FaceID may add some, and they are not signed.
            _ => return Ok(()),
        };
        // Two values would leave it ambiguous which one was signed.
        if slot.replace(value).is_some() {
            return Err(BodyError::Duplicate(field));
        }
        Ok(())
    }

    fn finish(self) -> Result<CallbackFields, BodyError> {
        let data = self.data.ok_or(BodyError::Missing("data"))?;
        let sign = self.sign.ok_or(BodyError::Missing("sign"))?;
        let sign = String::from_utf8(sign).map_err(|_| BodyError::SignNotText)?;
        Ok(CallbackFields { data, sign })
    }
}

/// `application/x-www-form-urlencoded`, decoded to bytes ('+' is a space, `%XX` a byte).
pub fn decode_form(body: &[u8]) -> Result<CallbackFields, BodyError> {
    let mut fields = Fields::default();
    for pair in body.split(|b| *b == b'&').filter(|p| !p.is_empty()) {
        let (name, value) = match pair.iter().position(|b| *b == b'=') {
            Some(i) => (&pair[..i], &pair[i + 1..]),
            None => (pair, &[][..]),
        };
        fields.set(&form_bytes(name), form_bytes(value))?;
    }
    fields.finish()
}

fn form_bytes(raw: &[u8]) -> Vec<u8> {
    let plus_as_space: Vec<u8> = raw
        .iter()
        .map(|b| if *b == b'+' { b' ' } else { *b })
        .collect();
    percent_decode(&plus_as_space).collect()
}

async fn decode_multipart(content_type: &str, body: Bytes) -> Result<CallbackFields, BodyError> {
    let boundary = multer::parse_boundary(content_type).map_err(|_| BodyError::Multipart)?;
    let stream = futures_util::stream::once(async move { Ok::<_, std::convert::Infallible>(body) });
    let mut multipart = multer::Multipart::new(stream, boundary);
    let mut fields = Fields::default();
    while let Some(field) = multipart
        .next_field()
        .await
        .map_err(|_| BodyError::Multipart)?
    {
        let name = field.name().unwrap_or_default().as_bytes().to_vec();
        let value = field.bytes().await.map_err(|_| BodyError::Multipart)?;
        fields.set(&name, value.to_vec())?;
    }
    fields.finish()
}

#[derive(Deserialize)]
struct JsonEnvelope<'a> {
    #[serde(borrow)]
    data: Option<&'a RawValue>,
    sign: Option<String>,
}

/// `{"data": "<json text>", "sign": "..."}`. When `data` is an embedded object rather than a
/// string, the sign is checked over that object's exact text.
fn decode_json(body: &[u8]) -> Result<CallbackFields, BodyError> {
    let envelope: JsonEnvelope = serde_json::from_slice(body).map_err(|_| BodyError::Json)?;
    let raw = envelope.data.ok_or(BodyError::Missing("data"))?;
    let data = match raw.get().as_bytes().first() {
        Some(b'"') => serde_json::from_str::<String>(raw.get())
            .map_err(|_| BodyError::Json)?
            .into_bytes(),
        Some(b'{') => raw.get().as_bytes().to_vec(),
        _ => return Err(BodyError::Json),
    };
    let sign = envelope.sign.ok_or(BodyError::Missing("sign"))?;
    Ok(CallbackFields { data, sign })
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn decode(content_type: Option<&str>, body: &[u8]) -> Result<CallbackFields, BodyError> {
        decode_callback(content_type, Bytes::copy_from_slice(body)).await
    }

    #[tokio::test]
    async fn form_values_are_decoded_to_exact_bytes() {
        let f = decode(
            Some("application/x-www-form-urlencoded"),
            b"sign=AB12&data=%7B%22a%22%3A+1%7D%80&extra=1",
        )
        .await
        .unwrap();
        assert_eq!(
            f.data, b"{\"a\": 1}\x80",
            "'+' is a space and %80 stays a raw byte"
        );
        assert_eq!(f.sign, "AB12");
    }

    #[tokio::test]
    async fn a_missing_content_type_is_read_as_a_form() {
        let f = decode(None, b"data=x&sign=y").await.unwrap();
        assert_eq!((f.data.as_slice(), f.sign.as_str()), (&b"x"[..], "y"));
    }

    #[tokio::test]
    async fn missing_duplicate_and_unsupported_are_refused() {
        let form = Some("application/x-www-form-urlencoded; charset=utf-8");
        assert_eq!(
            decode(form, b"data=x").await.err(),
            Some(BodyError::Missing("sign"))
        );
        assert_eq!(
            decode(form, b"sign=x").await.err(),
            Some(BodyError::Missing("data"))
        );
        assert_eq!(
            decode(form, b"data=x&data=y&sign=z").await.err(),
            Some(BodyError::Duplicate("data"))
        );
        assert_eq!(
            decode(Some("text/plain"), b"data=x&sign=y").await.err(),
            Some(BodyError::UnsupportedContentType)
        );
    }

    #[tokio::test]
    async fn multipart_fields_are_read() {
        let body = b"--XyZ\r\nContent-Disposition: form-data; name=\"data\"\r\n\r\n{\"a\":1}\r\n--XyZ\r\nContent-Disposition: form-data; name=\"sign\"\r\n\r\nabc\r\n--XyZ--\r\n";
        let f = decode(Some("multipart/form-data; boundary=XyZ"), body)
            .await
            .unwrap();
        assert_eq!(
            (f.data.as_slice(), f.sign.as_str()),
            (&b"{\"a\":1}"[..], "abc")
        );
        assert_eq!(
            decode(Some("multipart/form-data"), body).await.err(),
            Some(BodyError::Multipart)
        );
    }

    #[tokio::test]
    async fn json_bodies_accept_a_string_or_an_embedded_object() {
        let f = decode(
            Some("application/json"),
            br#"{"data":"{\"a\":1}","sign":"s"}"#,
        )
        .await
        .unwrap();
        assert_eq!(f.data, br#"{"a":1}"#);
        let f = decode(
            Some("application/json"),
            br#"{"data": {"a": 1},"sign":"s"}"#,
        )
        .await
        .unwrap();
        assert_eq!(f.data, br#"{"a": 1}"#, "the object's exact text");
        assert_eq!(
            decode(Some("application/json"), br#"{"data":1,"sign":"s"}"#)
                .await
                .err(),
            Some(BodyError::Json)
        );
        assert_eq!(
            decode(Some("application/json"), br#"{"sign":"s"}"#)
                .await
                .err(),
            Some(BodyError::Missing("data"))
        );
        assert_eq!(
            decode(Some("application/json"), b"not json").await.err(),
            Some(BodyError::Json)
        );
    }
}

/// `Query<T>` whose rejection is our JSON 400 (`invalid_query`) instead of axum's plain
/// text, which would also echo serde's wording about the input.
#[derive(axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(super::error::AppError))]
pub struct ApiQuery<T>(pub T);

/// `Path<T>` whose rejection is our JSON 400 (`invalid_path`), e.g. for a segment that is
/// not valid UTF-8 once percent-decoded.
#[derive(axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(super::error::AppError))]
pub struct ApiPath<T>(pub T);

impl From<axum::extract::rejection::QueryRejection> for super::error::AppError {
    fn from(_: axum::extract::rejection::QueryRejection) -> Self {
        Self::bad_request(
            "invalid_query",
            "the query string is malformed (each parameter at most once, percent-encoded UTF-8)",
        )
    }
}

impl From<axum::extract::rejection::PathRejection> for super::error::AppError {
    fn from(_: axum::extract::rejection::PathRejection) -> Self {
        Self::bad_request(
            "invalid_path",
            "the path is malformed (segments must be percent-encoded UTF-8)",
        )
    }
}
