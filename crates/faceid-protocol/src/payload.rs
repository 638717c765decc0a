//! The result FaceID sends in a callback's `data` (and returns from get_result).
//!
//! Two rules pull in opposite directions and both hold here:
//! - **Strict outside.** `data` must be UTF-8 holding exactly one JSON object, with nothing but
//!   JSON whitespace after it. A secret-prefix SHA-1 sign can be length-extended, so a forged
//!   tail (glue padding plus attacker JSON) carries a *valid* sign; it is refused here.
//! - **Lenient inside.** FaceID's own examples have `"PASS/FAIL/TIMEOUT"`, `"Failed"`, numbers
//!   where strings are expected and misspelled keys. We pull out the few fields we index
//!   (biz_id, biz_no, status, liveness, confidence), tolerate any shape for the rest, and keep
//!   the raw text byte-exact.
//!
//! What a *derived* field (a column beside the raw text: biz_id, biz_no, status, liveness,
//! confidence) may hold is decided here too, because JSON can say things a database column
//! cannot hold or serde_json cannot represent, and a verified result must never be refused
//! for its content:
//! - a control character (`\u0000` above all: PostgreSQL text cannot hold NUL) is written as
//!   its JSON escape, the six characters `\u0000` ([`column_text`]);
//! - a lone surrogate escape (`"\ud800"`, valid JSON syntax that serde_json refuses to turn
//!   into a string) is kept as its escape text, the six characters `\ud800`;
//! - a number no `f64` can hold (`1e999`, which serde_json refuses) reads as absent (null);
//! - a text longer than [`MAX_COLUMN_TEXT`] bytes once escaped reads as absent.
//!
//! The raw text is never changed: these forms exist only in the derived view ([`parse_object`]
//! builds it) and in the columns filled from it.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::de::IgnoredAny;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::biz_id::{BizId, BizIdError};

/// FaceID's flow status. `Ok` means the flow finished, not that the person passed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    NotStarted,
    Processing,
    Ok,
    Failed,
    Cancelled,
    Timeout,
    WebrtcUnsupported,
    /// Anything else, upper-cased; kept rather than dropped, and never treated as final.
    Other(String),
}

impl Status {
    /// Case-insensitive: the RAW document's example says `"Failed"`. An unknown status is
    /// kept upper-cased in its [`column_text`] form.
    pub fn parse(text: &str) -> Self {
        let upper = text.trim().to_ascii_uppercase();
        match upper.as_str() {
            "NOT_STARTED" => Self::NotStarted,
            "PROCESSING" => Self::Processing,
            "OK" => Self::Ok,
            "FAILED" => Self::Failed,
            "CANCELLED" | "CANCELED" => Self::Cancelled,
            "TIMEOUT" => Self::Timeout,
            "WEBRTC_UNSUPPORTED" => Self::WebrtcUnsupported,
            _ => Self::Other(column_text(&upper).unwrap_or_else(|| "UNKNOWN".into())),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Self::NotStarted => "NOT_STARTED",
            Self::Processing => "PROCESSING",
            Self::Ok => "OK",
            Self::Failed => "FAILED",
            Self::Cancelled => "CANCELLED",
            Self::Timeout => "TIMEOUT",
            Self::WebrtcUnsupported => "WEBRTC_UNSUPPORTED",
            Self::Other(s) => s,
        }
    }

    /// The flow has ended; FaceID will not change this result any more.
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            Self::Ok | Self::Failed | Self::Cancelled | Self::Timeout | Self::WebrtcUnsupported
        )
    }

    /// Progress order used so that a status never regresses: a late `PROCESSING` must not
    /// overwrite a stored `OK`. Our own `PENDING` (nothing known yet) ranks 0.
    pub fn rank(&self) -> i32 {
        match self {
            Self::Other(_) | Self::NotStarted => 1,
            Self::Processing => 2,
            _ => 3,
        }
    }
}

/// Liveness verdict, when the result has one we recognise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    Pass,
    Fail,
}

impl Liveness {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pass => "PASS",
            Self::Fail => "FAIL",
        }
    }
}

/// The fields we index from any FaceID result, read leniently.
#[derive(Debug, Clone, PartialEq)]
pub struct ResultFields {
    pub biz_no: Option<String>,
    pub status: Status,
    pub liveness: Option<Liveness>,
    pub confidence: Option<f64>,
}

/// The indexed view of one signed callback result plus its raw text.
#[derive(Clone, PartialEq)]
pub struct CallbackResult {
    pub biz_id: BizId,
    pub fields: ResultFields,
    /// The `data` text exactly as signed.
    pub raw: String,
    /// The derived view of the parts of `raw` that anything reads ([`viewed`]: the paths of
    /// the indexed fields, and the images whole), as [`parse_object`] would build them, kept
    /// so that nothing parses `raw` again (a callback's images are cut from it). The rest was
    /// checked for syntax only: whoever needs all of it parses `raw` with [`parse_object`].
    pub view: Map<String, Value>,
}

impl std::fmt::Debug for CallbackResult {
    // The raw text holds identity data (names, ID numbers): never print it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallbackResult")
            .field("biz_id", &self.biz_id)
            .field("status", &self.fields.status)
            .field("raw_len", &self.raw.len())
            .finish_non_exhaustive()
    }
}

/// Why `data` was refused. Messages name the problem, never the content.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DataError {
    #[error("data is not valid UTF-8")]
    NotUtf8,
    #[error("data is not valid JSON (line {line}, column {column})")]
    InvalidJson { line: usize, column: usize },
    #[error("data must be a JSON object")]
    NotAnObject,
    #[error("data has content after its JSON object")]
    TrailingContent,
    #[error("data has no biz_info.biz_id")]
    MissingBizId,
    #[error("data has an unusable biz_info.biz_id: {0}")]
    BadBizId(BizIdError),
}

/// Strictly checks the envelope of `data` (UTF-8, one JSON object, nothing after it but
/// whitespace) and returns its text with the derived view of the object: every value
/// serde_json can represent, and the forms described in the module header for the rest.
/// Only the envelope can be refused; what the object holds never is.
pub fn parse_object(data: &[u8]) -> Result<(&str, Map<String, Value>), DataError> {
    let text = std::str::from_utf8(data).map_err(|_| DataError::NotUtf8)?;
    // The common case in one pass: serde_json reads the whole text as one object with only
    // whitespace after it, which is the envelope exactly, and the view is the object as it is.
    if let Ok(object) = serde_json::from_str::<Map<String, Value>>(text) {
        return Ok((text, object));
    }
    checked_object(text).map(|object| (text, object))
}

/// What of a member's value a callback's view keeps: all of it, or, when it is an object,
/// only the named members, each with what of it is kept (anything else it holds is kept
/// whole, as [`parse_object`] reads it).
#[derive(Debug, Clone, Copy)]
pub enum Keep {
    All,
    Members(&'static [(&'static str, Keep)]),
}

/// The parts of a result [`parse_callback_data`] and [`result_fields`] read: the biz_id,
/// biz_no, status, liveness and confidence live in them, at these paths.
const INDEXED: [(&str, Keep); 5] = [
    (
        "biz_info",
        Keep::Members(&[("biz_id", Keep::All), ("biz_no", Keep::All)]),
    ),
    ("status", Keep::All),
    ("liveness_result", Keep::Members(&[("result", Keep::All)])),
    (
        "verify_result",
        Keep::Members(&[("result_faceid", Keep::Members(&[("confidence", Keep::All)]))]),
    ),
    ("biz_no", Keep::All),
];

/// Top-level members that hold images: Lite's `images` (an object of them), RAW's
/// `image_best` and `image_best_2`, and the `multifaces_image` both variants may add.
pub const IMAGE_KEYS: [&str; 4] = ["images", "image_best", "image_best_2", "multifaces_image"];

/// Whether a top-level member holds images ([`IMAGE_KEYS`]).
pub fn is_image_key(key: &str) -> bool {
    IMAGE_KEYS.contains(&key)
}

/// What a callback's view ([`CallbackResult::view`]) keeps of this top-level member: of the
/// indexed ones the parts read, the images whole; `None`: nothing.
pub fn viewed(key: &str) -> Option<Keep> {
    if is_image_key(key) {
        return Some(Keep::All);
    }
    member(&INDEXED, key)
}

/// What `members` keeps of the member named `key`; `None`: nothing.
fn member(members: &[(&str, Keep)], key: &str) -> Option<Keep> {
    members
        .iter()
        .find_map(|(name, keep)| (*name == key).then_some(*keep))
}

/// `value` cut to what `keep` keeps, as `Keep`'s `DeserializeSeed` reads it in one pass.
pub fn kept(value: Value, keep: Keep) -> Value {
    match (keep, value) {
        (Keep::Members(members), Value::Object(object)) => Value::Object(
            object
                .into_iter()
                .filter_map(|(key, value)| {
                    let keep = member(members, &key)?;
                    Some((key, kept(value, keep)))
                })
                .collect(),
        ),
        (_, value) => value,
    }
}

/// [`parse_object`]'s envelope, refusing exactly what it refuses, with the view of the
/// [`viewed`] parts only: a callback's `data` is mostly identity data nothing reads, and
/// building (then dropping) a tree of it was a tenth of the service's CPU per callback.
fn parse_viewed(data: &[u8]) -> Result<(&str, Map<String, Value>), DataError> {
    let text = std::str::from_utf8(data).map_err(|_| DataError::NotUtf8)?;
    // The common case in one pass. What it accepts is one object with only whitespace after
    // it whose members are all valid JSON, so the long way would accept it too; and each
    // viewed part is read as the one-pass Map reads it.
    if let Ok(Viewed(object)) = serde_json::from_str::<Viewed>(text) {
        return Ok((text, object));
    }
    let object = checked_object(text)?;
    Ok((
        text,
        object
            .into_iter()
            .filter_map(|(key, value)| {
                let keep = viewed(&key)?;
                Some((key, kept(value, keep)))
            })
            .collect(),
    ))
}

/// A JSON object's [`viewed`] parts as values (inserted as `Map` inserts them, so a repeated
/// key reads as it does there), everything else checked for syntax and skipped.
struct Viewed(Map<String, Value>);

impl<'de> serde::Deserialize<'de> for Viewed {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match pick_members(deserializer, viewed)? {
            Value::Object(object) => Ok(Viewed(object)),
            _ => Err(serde::de::Error::custom("not an object")),
        }
    }
}

/// Reads a value, keeping of an object the members `keep_member` names (each with what of it
/// is kept); any other value is read whole.
fn pick_members<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
    keep_member: impl Fn(&str) -> Option<Keep>,
) -> Result<Value, D::Error> {
    struct Visit<F>(F);
    impl<'de, F: Fn(&str) -> Option<Keep>> serde::de::Visitor<'de> for Visit<F> {
        type Value = Value;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a JSON value")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
            let mut object = Map::new();
            while let Some(Key(key)) = map.next_key()? {
                match (self.0)(&key) {
                    Some(keep) => {
                        object.insert(key.into_owned(), map.next_value_seed(keep)?);
                    }
                    None => {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
            }
            Ok(Value::Object(object))
        }
        // Anything but an object is read whole, as `Value` reads it.
        fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
            Ok(Value::Bool(v))
        }
        fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
            Ok(Value::from(v))
        }
        fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
            Ok(Value::from(v))
        }
        fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
            Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
        }
        fn visit_str<E>(self, v: &str) -> Result<Value, E> {
            Ok(Value::String(v.to_owned()))
        }
        fn visit_string<E>(self, v: String) -> Result<Value, E> {
            Ok(Value::String(v))
        }
        fn visit_unit<E>(self) -> Result<Value, E> {
            Ok(Value::Null)
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
            let mut items = Vec::new();
            while let Some(item) = seq.next_element()? {
                items.push(item);
            }
            Ok(Value::Array(items))
        }
    }
    deserializer.deserialize_any(Visit(keep_member))
}

impl<'de> serde::de::DeserializeSeed<'de> for Keep {
    type Value = Value;
    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        match self {
            Keep::All => <Value as serde::Deserialize>::deserialize(deserializer),
            Keep::Members(members) => pick_members(deserializer, |key| member(members, key)),
        }
    }
}

/// A member name, borrowed from the text unless it holds an escape (serde's own `Cow<str>`
/// always copies).
struct Key<'de>(Cow<'de, str>);

impl<'de> serde::Deserialize<'de> for Key<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a member name")
            }
            fn visit_borrowed_str<E>(self, name: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(name)))
            }
            fn visit_str<E>(self, name: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(name.to_owned())))
            }
        }
        deserializer.deserialize_str(Visit)
    }
}

/// [`parse_object`] the long way, for what serde_json will not read as a `Map` at once: the
/// envelope checked for syntax alone, then the view built as the module header describes.
fn checked_object(text: &str) -> Result<Map<String, Value>, DataError> {
    // Syntax only: `IgnoredAny` checks every token (escapes, numbers, control characters)
    // without asking whether serde_json could represent the value.
    let mut stream = serde_json::Deserializer::from_str(text).into_iter::<IgnoredAny>();
    match stream.next() {
        Some(Ok(_)) => {}
        Some(Err(e)) => {
            return Err(DataError::InvalidJson {
                line: e.line(),
                column: e.column(),
            });
        }
        None => return Err(DataError::NotAnObject),
    }
    let end = stream.byte_offset();
    if !text[end..]
        .bytes()
        .all(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
    {
        return Err(DataError::TrailingContent);
    }
    let json = &text[..end];
    if !json.trim_start().starts_with('{') {
        return Err(DataError::NotAnObject);
    }
    Ok(view(json))
}

/// The derived view of a syntactically valid JSON object. Tried in order: the object as it
/// is; the object with what serde_json refuses rewritten ([`tame`]); and, if even that fails
/// (a value nested deeper than serde_json's limit), each top-level member on its own,
/// leaving out the ones that cannot be read.
fn view(json: &str) -> Map<String, Value> {
    if let Ok(object) = serde_json::from_str::<Map<String, Value>>(json) {
        return object;
    }
    let tamed = tame(json);
    if let Ok(object) = serde_json::from_str::<Map<String, Value>>(&tamed) {
        return object;
    }
    let members: BTreeMap<String, Box<RawValue>> = serde_json::from_str(&tamed).unwrap_or_default();
    members
        .into_iter()
        .filter_map(|(key, raw)| Some((key, serde_json::from_str(raw.get()).ok()?)))
        .collect()
}

/// Rewrites a syntactically valid JSON text so that serde_json can represent every value: a
/// lone surrogate escape `\uD800` becomes the escaped backslash `\\uD800` (the string then
/// holds the six characters of the escape), and a number no `f64` can hold becomes `null`.
/// Everything else is copied as it is. The input must have passed a syntax check.
pub fn tame(json: &str) -> Cow<'_, str> {
    let bytes = json.as_bytes();
    let mut out: Vec<u8> = Vec::with_capacity(bytes.len() + 16);
    let mut changed = false;
    let mut i = 0;
    let mut in_string = false;
    while i < bytes.len() {
        let b = bytes[i];
        if in_string {
            match b {
                b'"' => in_string = false,
                b'\\' if bytes.get(i + 1) == Some(&b'u') => {
                    let unit = hex_unit(bytes, i + 2);
                    let low =
                        hex_unit(bytes, i + 8).filter(|_| bytes.get(i + 6..i + 8) == Some(b"\\u"));
                    match (unit, low) {
                        (Some(0xD800..=0xDBFF), Some(0xDC00..=0xDFFF)) => {
                            out.extend_from_slice(&bytes[i..i + 12]);
                            i += 12;
                        }
                        (Some(0xD800..=0xDFFF), _) => {
                            out.extend_from_slice(b"\\\\");
                            out.extend_from_slice(&bytes[i + 1..i + 6]);
                            changed = true;
                            i += 6;
                        }
                        _ => {
                            out.extend_from_slice(&bytes[i..(i + 6).min(bytes.len())]);
                            i += 6;
                        }
                    }
                    continue;
                }
                b'\\' => {
                    out.extend_from_slice(&bytes[i..(i + 2).min(bytes.len())]);
                    i += 2;
                    continue;
                }
                _ => {}
            }
            out.push(b);
            i += 1;
        } else if b == b'"' {
            in_string = true;
            out.push(b);
            i += 1;
        } else if b == b'-' || b.is_ascii_digit() {
            let start = i;
            while i < bytes.len()
                && matches!(bytes[i], b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')
            {
                i += 1;
            }
            let number = &json[start..i];
            if number.parse::<f64>().is_ok_and(f64::is_finite) {
                out.extend_from_slice(number.as_bytes());
            } else {
                out.extend_from_slice(b"null");
                changed = true;
            }
        } else {
            out.push(b);
            i += 1;
        }
    }
    if !changed {
        return Cow::Borrowed(json);
    }
    // Only ASCII was inserted, and multi-byte characters were copied whole.
    match String::from_utf8(out) {
        Ok(text) => Cow::Owned(text),
        Err(_) => Cow::Borrowed(json),
    }
}

/// The four hex digits at `at` as a UTF-16 code unit.
fn hex_unit(bytes: &[u8], at: usize) -> Option<u32> {
    let digits = std::str::from_utf8(bytes.get(at..at + 4)?).ok()?;
    u32::from_str_radix(digits, 16).ok()
}

/// Longest text a derived column holds, in bytes after escaping; longer reads as absent.
pub const MAX_COLUMN_TEXT: usize = 512;

/// The form of `text` a derived column holds: trimmed, every control character written as
/// its JSON escape (`\u0000`), `None` when empty or longer than [`MAX_COLUMN_TEXT`].
pub fn column_text(text: &str) -> Option<String> {
    let text = text.trim();
    let safe: String = if text.chars().any(char::is_control) {
        text.chars()
            .map(|c| {
                if c.is_control() {
                    format!("\\u{:04x}", u32::from(c))
                } else {
                    c.to_string()
                }
            })
            .collect()
    } else {
        text.to_owned()
    };
    (!safe.is_empty() && safe.len() <= MAX_COLUMN_TEXT).then_some(safe)
}

/// Parses a signed callback's `data`: strict envelope, lenient fields.
pub fn parse_callback_data(data: &[u8]) -> Result<CallbackResult, DataError> {
    let (text, object) = parse_viewed(data)?;
    let biz_info = object.get("biz_info");
    let biz_id = biz_info
        .and_then(|info| info.get("biz_id"))
        .and_then(scalar_text)
        .ok_or(DataError::MissingBizId)?;
    // A signed biz_id keys the record in its column form; only one that is too long to be a
    // key is refused (FaceID's are about 48 characters).
    let biz_id = match column_text(&biz_id) {
        Some(biz_id) => BizId::from_signed(&biz_id).map_err(DataError::BadBizId)?,
        None => return Err(DataError::BadBizId(BizIdError::TooLong)),
    };
    Ok(CallbackResult {
        biz_id,
        fields: result_fields(&object),
        raw: text.to_owned(),
        view: object,
    })
}

/// The lenient field extraction shared by callbacks and get_result answers (Lite and RAW).
pub fn result_fields(object: &Map<String, Value>) -> ResultFields {
    let status = object
        .get("status")
        .and_then(scalar_text)
        .map(|s| Status::parse(&s))
        .unwrap_or_else(|| Status::Other("UNKNOWN".into()));
    let liveness = object
        .get("liveness_result")
        .and_then(|l| l.get("result"))
        .and_then(Value::as_str)
        .and_then(|s| match s.trim().to_ascii_uppercase().as_str() {
            "PASS" => Some(Liveness::Pass),
            "FAIL" => Some(Liveness::Fail),
            _ => None,
        });
    let confidence = object
        .get("verify_result")
        .and_then(|v| v.get("result_faceid"))
        .and_then(|r| r.get("confidence"))
        .and_then(number);
    // Lite results carry biz_no in biz_info; RAW results at the top level.
    let biz_no = object
        .get("biz_info")
        .and_then(|info| info.get("biz_no"))
        .or_else(|| object.get("biz_no"))
        .and_then(scalar_text)
        .and_then(|text| column_text(&text));
    ResultFields {
        biz_no,
        status,
        liveness,
        confidence,
    }
}

/// A string, or a number written where a string was expected (as it is: columns take
/// [`column_text`] of it).
fn scalar_text(value: &Value) -> Option<String> {
    let text = match value {
        Value::String(s) => s.trim().to_owned(),
        Value::Number(n) => n.to_string(),
        _ => return None,
    };
    (!text.is_empty()).then_some(text)
}

/// A finite number, or a string holding one.
fn number(value: &Value) -> Option<f64> {
    let n = match value {
        Value::Number(n) => n.as_f64()?,
        Value::String(s) => s.trim().parse().ok()?,
        _ => return None,
    };
    n.is_finite().then_some(n)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The get_result success example from seed 001, verbatim (misspelled `idcard_uneditable_feild`,
    /// `"PASS/FAIL/TIMEOUT"`, `"data: image/jpeg;base64,..."`).
    pub const SEED_OK: &str = include_str!("../../../tests/vectors/seed_get_result_ok.json");
    /// The RAW "Failed" example from seed 002: mixed-case status, numbers where strings belong.
    pub const SEED_RAW_FAILED: &str = include_str!("../../../tests/vectors/seed_raw_failed.json");

    /// The one-pass common case of [`parse_object`] gives exactly what the long way gives.
    #[test]
    fn the_one_pass_view_is_the_checked_view() {
        let texts = [
            SEED_OK,
            SEED_RAW_FAILED,
            include_str!("../../../tests/vectors/seed_raw_ok.json"),
            include_str!("../../../tests/vectors/seed_raw_not_started.json"),
            include_str!("../../../tests/vectors/seed_get_result_not_found.json"),
            "{}",
            " {\"a\": [1, 2.5, -0, \"x\\u00e9\"], \"b\": {\"c\": null}} \n\t",
            r#"{"dup": 1, "dup": 2}"#,
        ];
        for text in texts {
            let fast = parse_object(text.as_bytes()).map(|(_, object)| object);
            assert_eq!(fast, checked_object(text), "{text}");
        }
        assert!(parse_object(SEED_OK.as_bytes()).is_ok());
        // What serde_json refuses as a Map takes the long way, and its errors stay its own.
        assert_eq!(parse_object(b"[1]"), Err(DataError::NotAnObject));
        assert_eq!(parse_object(b"{} x"), Err(DataError::TrailingContent));
        assert!(matches!(parse_object(b"{\"a\":1e999}"), Ok((_, o)) if o.contains_key("a")));
    }

    /// A callback's view is [`parse_object`]'s view of the viewed members, and its envelope
    /// refuses exactly what [`parse_object`] refuses, with the same error.
    #[test]
    fn the_callback_view_is_the_full_view_of_the_viewed_members() {
        let deep = format!(
            "{{\"status\":\"OK\",\"deep\":{}1{}}}",
            "[".repeat(200),
            "]".repeat(200)
        );
        let texts = [
            SEED_OK.to_owned(),
            SEED_RAW_FAILED.to_owned(),
            include_str!("../../../tests/vectors/seed_raw_ok.json").to_owned(),
            include_str!("../../../tests/vectors/seed_raw_not_started.json").to_owned(),
            "{}".to_owned(),
            r#"{"status":"OK","status":"FAILED","biz_no":1,"x":1,"biz_no":2}"#.to_owned(),
            // What serde_json refuses, outside the viewed members and inside them.
            r#"{"status":"OK","idcard_info":{"idcard_name":"\udfff"},"big":1e999}"#.to_owned(),
            r#"{"biz_info":{"biz_no":"n\ud800"},"verify_result":{"result_faceid":{"confidence":1e999}}}"#
                .to_owned(),
            r#"{"\ud800":1,"st\u0061tus":"OK","images":{"a":"b"}}"#.to_owned(),
            deep,
            // Inside the indexed members: what is read next to what is skipped, repeated
            // names, escaped names, values of every type where an object was expected, and
            // what serde_json refuses beside a read part and inside it.
            r#"{"biz_info":{"x":[1,{"y":2}],"biz_id":"a","biz_\u006eo":"n","biz_id":"b"},"liveness_result":{"details":{"k":1},"result":"PASS","result":"FAIL"},"verify_result":{"result_ref1":{"confidence":1},"result_faceid":{"thresholds":{"1e-3":64},"confidence":"70.5"},"result_faceid":{"confidence":71}}}"#.to_owned(),
            r#"{"biz_info":"b","liveness_result":["PASS"],"verify_result":{"result_faceid":7}}"#.to_owned(),
            r#"{"biz_info":null,"liveness_result":true,"verify_result":{"result_faceid":[{"confidence":1}]}}"#.to_owned(),
            r#"{"biz_info":{"biz_id":"a","other":1e999},"verify_result":{"x":"\udfff","result_faceid":{"confidence":-0.5e1}}}"#.to_owned(),
            r#"{"biz_info":{"biz_id":"\ud800"},"liveness_result":{"result":1e999}}"#.to_owned(),
            // Refused envelopes.
            "[1]".to_owned(),
            "{} x".to_owned(),
            r#"{"a":"\x"}"#.to_owned(),
            r#"{"a":1,}"#.to_owned(),
            "{\"a\":\"\u{1}\"}".to_owned(),
        ];
        for text in &texts {
            let full = parse_object(text.as_bytes()).map(|(_, object)| {
                object
                    .into_iter()
                    .filter_map(|(key, value)| Some((key.clone(), kept(value, viewed(&key)?))))
                    .collect::<Map<String, Value>>()
            });
            let viewed = parse_viewed(text.as_bytes()).map(|(_, object)| object);
            assert_eq!(viewed, full, "{text}");
            // What is read from the view is what is read from the whole object.
            if let (Ok(viewed), Ok((_, whole))) = (&viewed, parse_object(text.as_bytes())) {
                assert_eq!(result_fields(viewed), result_fields(&whole), "{text}");
                let biz_id = |o: &Map<String, Value>| {
                    o.get("biz_info")
                        .and_then(|i| i.get("biz_id"))
                        .and_then(scalar_text)
                };
                assert_eq!(biz_id(viewed), biz_id(&whole), "{text}");
            }
        }
        let seed = parse_viewed(SEED_OK.as_bytes()).unwrap().1;
        assert!(seed.contains_key("biz_info") && seed.contains_key("images"));
        assert!(
            !seed.contains_key("idcard_info"),
            "identity data is not viewed"
        );
        // Of the indexed members, only the parts read.
        assert_eq!(
            Value::Object(seed),
            serde_json::json!({
                "biz_info": {
                    "biz_id": "1462259748,52b13fb5-8dfb-4537-a62b-a641d5e929f1",
                    "biz_no": "cc47190f-5502-44a2-ab74-ea4f0f649f61",
                },
                "status": "OK",
                "liveness_result": {"result": "PASS/FAIL/TIMEOUT"},
                "verify_result": {"result_faceid": {"confidence": 68.918}},
                "images": parse_object(SEED_OK.as_bytes()).unwrap().1["images"].clone(),
            })
        );
    }

    #[test]
    fn the_seed_success_example_parses_with_its_odd_values() {
        let r = parse_callback_data(SEED_OK.as_bytes()).unwrap();
        assert_eq!(
            r.biz_id.as_str(),
            "1462259748,52b13fb5-8dfb-4537-a62b-a641d5e929f1"
        );
        let f = &r.fields;
        assert_eq!(
            f.biz_no.as_deref(),
            Some("cc47190f-5502-44a2-ab74-ea4f0f649f61")
        );
        assert_eq!(f.status, Status::Ok);
        // "PASS/FAIL/TIMEOUT" is not a verdict we recognise: unknown, not an error.
        assert_eq!(f.liveness, None);
        assert_eq!(f.confidence, Some(68.918));
        assert_eq!(r.raw, SEED_OK, "raw text is kept byte-exact");
    }

    #[test]
    fn status_is_case_insensitive_and_unknowns_are_kept() {
        assert_eq!(Status::parse("Failed"), Status::Failed);
        assert_eq!(Status::parse(" ok "), Status::Ok);
        assert_eq!(
            Status::parse("webrtc_unsupported"),
            Status::WebrtcUnsupported
        );
        assert_eq!(Status::parse("MAYBE"), Status::Other("MAYBE".into()));
        assert!(!Status::parse("MAYBE").is_final());
        assert!(Status::parse("Failed").is_final());
        assert!(Status::Processing.rank() < Status::Ok.rank());
    }

    #[test]
    fn odd_field_shapes_are_tolerated() {
        let data = br#"{"status":"ok","biz_info":{"biz_id":1462259748,"biz_no":42},
            "liveness_result":{"result":" pass "},"verify_result":{"result_faceid":{"confidence":"70.5"}}}"#;
        let r = parse_callback_data(data).unwrap();
        assert_eq!(r.biz_id.as_str(), "1462259748");
        let f = &r.fields;
        assert_eq!(f.biz_no.as_deref(), Some("42"));
        assert_eq!(f.liveness, Some(Liveness::Pass));
        assert_eq!(f.confidence, Some(70.5));

        let data = br#"{"status":["OK"],"biz_info":{"biz_id":"1,a"},"liveness_result":"PASS","verify_result":null}"#;
        let f = parse_callback_data(data).unwrap().fields;
        assert_eq!(f.status, Status::Other("UNKNOWN".into()));
        assert_eq!((f.liveness, f.confidence), (None, None));
    }

    #[test]
    fn the_envelope_is_strict() {
        let too_long = format!("{{\"biz_info\":{{\"biz_id\":\"{}\"}}}}", "x".repeat(161));
        let cases: &[(&[u8], DataError)] = &[
            (b"\xff{}", DataError::NotUtf8),
            (b"{\"a\":", DataError::InvalidJson { line: 1, column: 5 }),
            (b"[1,2]", DataError::NotAnObject),
            (b"\"text\"", DataError::NotAnObject),
            (b"", DataError::NotAnObject),
            (b"{} {}", DataError::TrailingContent),
            (b"{}x", DataError::TrailingContent),
            (b"{\"status\":\"OK\"}", DataError::MissingBizId),
            (
                b"{\"biz_info\":{\"biz_id\":\"  \"}}",
                DataError::MissingBizId,
            ),
            (
                too_long.as_bytes(),
                DataError::BadBizId(BizIdError::TooLong),
            ),
            // Invalid escapes and raw control characters are syntax errors, not content.
            (
                b"{\"a\":\"\\x\"}",
                DataError::InvalidJson { line: 1, column: 8 },
            ),
            (
                b"{\"a\":\"\x00\"}",
                DataError::InvalidJson { line: 1, column: 6 },
            ),
        ];
        for (data, want) in cases {
            assert_eq!(
                parse_callback_data(data).unwrap_err(),
                *want,
                "data {:?}",
                String::from_utf8_lossy(data)
            );
        }
        // Surrounding JSON whitespace carries nothing and is accepted.
        assert!(parse_callback_data(b"{\"biz_info\":{\"biz_id\":\"1,a\"}}\n").is_ok());
    }

    #[test]
    fn what_a_column_cannot_hold_is_written_in_a_safe_form_and_the_raw_text_is_kept() {
        let data = r#"{"status":"ok\u0000","biz_info":{"biz_id":"1,a\u0000","biz_no":"n\u0001o\ud800"},
            "liveness_result":{"result":"PASS"},"verify_result":{"result_faceid":{"confidence":1e999}},
            "idcard_info":{"idcard_name":"\udfff\ud83d\ude00"},"time_used":-1e999}"#;
        let r = parse_callback_data(data.as_bytes()).unwrap();
        assert_eq!(r.raw, data, "raw text byte-exact");
        assert_eq!(r.biz_id.as_str(), r"1,a\u0000");
        let f = &r.fields;
        assert_eq!(f.status, Status::Other(r"OK\u0000".into()));
        assert!(!f.status.is_final());
        assert_eq!(f.biz_no.as_deref(), Some(r"n\u0001o\ud800"));
        assert_eq!(
            f.liveness,
            Some(Liveness::Pass),
            "the rest is read as usual"
        );
        assert_eq!(f.confidence, None, "1e999 is no confidence");
    }

    #[test]
    fn tame_rewrites_only_lone_surrogates_and_numbers_no_float_holds() {
        let cases = [
            (r#"{"a":"\ud800"}"#, r#"{"a":"\\ud800"}"#),
            (r#"{"a":"x\uDC00y"}"#, r#"{"a":"x\\uDC00y"}"#),
            (r#"{"a":"\ud83d\ude00"}"#, r#"{"a":"\ud83d\ude00"}"#),
            (r#"{"a":"\ud83d\u0041"}"#, r#"{"a":"\\ud83d\u0041"}"#),
            (r#"{"a":"\\ud800"}"#, r#"{"a":"\\ud800"}"#),
            (
                r#"{"a":[1e999,-1E+400,2.5e3,0,-0.5]}"#,
                r#"{"a":[null,null,2.5e3,0,-0.5]}"#,
            ),
            (
                r#"{"1e999":"1e999","b":true}"#,
                r#"{"1e999":"1e999","b":true}"#,
            ),
            (r#"{"陈":"\ud800陈"}"#, r#"{"陈":"\\ud800陈"}"#),
        ];
        for (json, want) in cases {
            let tamed = tame(json);
            assert_eq!(tamed, want, "tame({json})");
            assert!(
                serde_json::from_str::<Value>(&tamed).is_ok(),
                "{tamed} is readable"
            );
        }
        assert!(matches!(tame(r#"{"a":"ok"}"#), Cow::Borrowed(_)));
    }

    #[test]
    fn an_object_nested_beyond_the_parser_limit_still_yields_its_other_fields() {
        let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
        let data =
            format!(r#"{{"status":"OK","biz_info":{{"biz_id":"1,deep"}},"idcard_info":{deep}}}"#);
        let r = parse_callback_data(data.as_bytes()).unwrap();
        assert_eq!(
            (r.biz_id.as_str(), &r.fields.status),
            ("1,deep", &Status::Ok)
        );
        assert_eq!(r.raw, data);
    }

    #[test]
    fn column_text_escapes_controls_and_bounds_the_length() {
        assert_eq!(column_text(" ok ").as_deref(), Some("ok"));
        assert_eq!(
            column_text("a\0b\x7f\u{85}c").as_deref(),
            Some(r"a\u0000b\u007f\u0085c")
        );
        assert_eq!(column_text("陈AB").as_deref(), Some("陈AB"));
        assert_eq!(column_text("  "), None);
        assert_eq!(
            column_text(&"x".repeat(MAX_COLUMN_TEXT)).map(|t| t.len()),
            Some(MAX_COLUMN_TEXT)
        );
        assert_eq!(
            column_text(&"\0".repeat(100)),
            None,
            "600 bytes once escaped"
        );
    }

    #[test]
    fn a_length_extended_seed_payload_is_refused_despite_its_valid_sign() {
        let secret = "s3cret";
        let sign = crate::sign(secret, SEED_OK.as_bytes());
        let tail = br#",{"status":"OK","biz_info":{"biz_id":"1,evil"}}"#;
        let (forged, forged_sign) =
            crate::sign::length_extend(&sign, secret.len(), SEED_OK.as_bytes(), tail).unwrap();
        assert_eq!(crate::verify(secret, &forged, &forged_sign), Ok(()));
        assert_eq!(
            parse_callback_data(&forged).unwrap_err(),
            DataError::NotUtf8
        );
        // Even a glue made only of valid UTF-8 would leave content after the object.
        let mut ascii_tail = SEED_OK.as_bytes().to_vec();
        ascii_tail.extend_from_slice(b"\n{}");
        assert_eq!(
            parse_callback_data(&ascii_tail).unwrap_err(),
            DataError::TrailingContent
        );
    }

    #[test]
    fn the_raw_ok_seed_example_is_not_json_and_is_refused() {
        let raw_ok = include_str!("../../../tests/vectors/seed_raw_ok.json");
        assert!(matches!(
            parse_object(raw_ok.as_bytes()),
            Err(DataError::InvalidJson { .. })
        ));
    }

    #[test]
    fn the_raw_failed_seed_example_parses() {
        let (_, object) = parse_object(SEED_RAW_FAILED.as_bytes()).unwrap();
        let r = result_fields(&object);
        assert_eq!(r.status, Status::Failed);
        assert_eq!(
            r.biz_no.as_deref(),
            Some("c22fe4e0-66ba-4078-bd9b-3b1a20628f8d")
        );
        assert_eq!(r.liveness, None, "liveness result 0.5 is not a verdict");
    }
}
