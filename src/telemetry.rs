//! Logging and tracing setup.
//!
//! Invariant (the redaction policy): spans are opened with `skip_all` and name only what is
//! safe — method, matched route, biz_id, status codes. Never the raw URI or query (get_result
//! carries the API secret there), request bodies, the `data` field, tokens, or any identity
//! field. Errors are logged by their chain of `Display` messages, which are written to carry
//! no request content.
//!
//! Text we did not write (an upstream's error body) goes through [`redact`] before it can
//! reach a log or an error: it finds a secret in any of the encodings a URL or a page quoting
//! one may give it.

use tracing_subscriber::{EnvFilter, fmt, prelude::*};

use crate::config::LogFormat;

/// Installs the global subscriber. `RUST_LOG` wins over `filter`. Safe to call twice (the
/// second call is ignored), which tests rely on.
pub fn init(format: LogFormat, filter: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(filter));
    let registry = tracing_subscriber::registry().with(filter);
    let result = match format {
        LogFormat::Text => registry.with(fmt::layer().with_target(false)).try_init(),
        LogFormat::Json => registry
            .with(
                fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_span_list(false),
            )
            .try_init(),
    };
    // Already initialised (tests, or a second Application in one process): keep the first.
    let _ = result;
}

/// Logging for tests: silent unless `TEST_LOG` is set.
pub fn init_for_tests() {
    if std::env::var_os("TEST_LOG").is_some() {
        init(LogFormat::Text, "debug");
    }
}

/// An error and its sources as one line: `outer: inner: root`.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

/// What a redacted secret reads as.
pub const REDACTED: &str = "***";

/// `text` with every occurrence of each secret replaced by [`REDACTED`], however it was
/// encoded, byte by byte and mixed freely: raw; percent-encoded (upper- or lower-case hex, or
/// twice, `%252F`); form-encoded (`+` for a space); HTML-escaped (`&amp;`, `&lt;`, `&gt;`,
/// `&quot;`, `&#39;`); JSON-escaped (`\/`, `\u00XX`). The form-decoded reading of a secret
/// (its `+` read as a space, its `%XX` as the byte) is looked for too, in case something
/// decoded it once too often. Empty secrets are ignored.
pub fn redact(text: &str, secrets: &[&str]) -> String {
    let mut needles: Vec<Vec<u8>> = Vec::new();
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        needles.push(secret.as_bytes().to_vec());
        // Form-decoded as a value (not as a query: `&` and `=` in a secret are its own).
        let decoded: Vec<u8> =
            percent_encoding::percent_decode_str(&secret.replace('+', " ")).collect();
        if !decoded.is_empty() && decoded != secret.as_bytes() {
            needles.push(decoded);
        }
    }
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < bytes.len() {
        let longest = needles
            .iter()
            .filter_map(|needle| match_encoded(bytes, i, needle))
            .max();
        match longest {
            Some(end) => {
                out.push_str(REDACTED);
                i = end;
            }
            None => {
                // Copy one whole character (`i` is always on a boundary: matches end on one).
                let ch = text[i..].chars().next().expect("i < len");
                out.push(ch);
                i += ch.len_utf8();
            }
        }
    }
    out
}

/// Where a match of `needle` starting at `start` ends (the longest one), if there is one.
fn match_encoded(text: &[u8], start: usize, needle: &[u8]) -> Option<usize> {
    // The set of positions in `text` reachable after matching a prefix of `needle`: an
    // encoding may match the same byte in several ways (`%` raw, or `%25`), so all are kept.
    let mut positions = vec![start];
    for &byte in needle {
        let mut next: Vec<usize> = positions
            .iter()
            .flat_map(|&at| encodings_at(text, at, byte))
            .collect();
        next.sort_unstable();
        next.dedup();
        if next.is_empty() {
            return None;
        }
        positions = next;
    }
    positions.into_iter().max()
}

/// The positions after each way `byte` can be written at `text[at..]`.
fn encodings_at(text: &[u8], at: usize, byte: u8) -> Vec<usize> {
    let rest = &text[at.min(text.len())..];
    let mut ends = Vec::new();
    if rest.first() == Some(&byte) {
        ends.push(at + 1);
    }
    let hex_at = |offset: usize| -> Option<u8> {
        let digits = rest.get(offset..offset + 2)?;
        if !digits.iter().all(u8::is_ascii_hexdigit) {
            return None;
        }
        u8::from_str_radix(std::str::from_utf8(digits).ok()?, 16).ok()
    };
    if rest.first() == Some(&b'%') {
        if hex_at(1) == Some(byte) {
            ends.push(at + 3);
        }
        if hex_at(1) == Some(b'%') && hex_at(3) == Some(byte) {
            ends.push(at + 5);
        }
    }
    if byte == b' ' && rest.first() == Some(&b'+') {
        ends.push(at + 1);
    }
    let escaped: &[&[u8]] = match byte {
        b'&' => &[b"&amp;", b"&#38;", b"&#x26;"],
        b'<' => &[b"&lt;", b"&#60;", b"&#x3c;"],
        b'>' => &[b"&gt;", b"&#62;", b"&#x3e;"],
        b'"' => &[b"&quot;", b"&#34;", b"&#x22;", b"\\\""],
        b'\'' => &[b"&#39;", b"&#x27;", b"&apos;"],
        b'/' => &[b"\\/"],
        b'\\' => &[b"\\\\"],
        _ => &[],
    };
    for form in escaped {
        if rest.len() >= form.len() && rest[..form.len()].eq_ignore_ascii_case(form) {
            ends.push(at + form.len());
        }
    }
    if byte.is_ascii()
        && rest.len() >= 6
        && rest[..4].eq_ignore_ascii_case(b"\\u00")
        && hex_at(4) == Some(byte)
    {
        ends.push(at + 6);
    }
    ends
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "s3/cr+t=Zq&x%41";

    #[test]
    fn a_secret_is_found_in_every_encoding_a_url_or_a_page_gives_it() {
        let form: String = form_urlencoded::byte_serialize(SECRET.as_bytes()).collect();
        let percent =
            percent_encoding::utf8_percent_encode(SECRET, percent_encoding::NON_ALPHANUMERIC)
                .to_string();
        let twice: String = form_urlencoded::byte_serialize(form.as_bytes()).collect();
        for encoded in [
            SECRET.to_owned(),
            form.clone(),
            form.to_ascii_lowercase().replace("zq", "Zq"),
            percent.clone(),
            twice,
            "s3%2fcr%2bt%3dZq%26x%2541".to_owned(),
            "s3/cr+t=Zq&amp;x%41".to_owned(),
            r"s3\/cr+t=Zq\u0026x%41".to_owned(),
            // Mixed, as a proxy that decodes some characters and not others would write it.
            "s3/cr%2Bt=Zq%26x%41".to_owned(),
            // Decoded once too often: `+` became a space and `%41` an `A`.
            "s3/cr t=Zq&xA".to_owned(),
        ] {
            let text = format!("<p>GET /faceid/lite/get_result?api_secret={encoded}&biz_id=1</p>");
            let redacted = redact(&text, &[SECRET]);
            assert_eq!(
                redacted, "<p>GET /faceid/lite/get_result?api_secret=***&biz_id=1</p>",
                "{encoded}"
            );
        }
    }

    #[test]
    fn other_text_is_left_alone_and_characters_stay_whole() {
        assert_eq!(
            redact("nothing here: 陈AB", &[SECRET]),
            "nothing here: 陈AB"
        );
        assert_eq!(redact("s3/cr+t=Zq&x%4", &[SECRET]), "s3/cr+t=Zq&x%4");
        assert_eq!(redact("a 密钥 b", &["密钥"]), "a *** b");
        assert_eq!(redact("a %E5%AF%86%E9%92%A5 b", &["密钥"]), "a *** b");
        assert_eq!(redact("key-1 and key-1", &["key-1", ""]), "*** and ***");
        assert_eq!(redact("anything", &[""]), "anything");
    }
}
