//! Endpoint secrets and webhook signatures, per the Standard Webhooks specification
//! (<https://www.standardwebhooks.com>), so that consumers verify our pushes with the
//! official libraries.
//!
//! Owns:
//! - [`EndpointSecret`]: `whsec_` + base64 of 24–64 random bytes (we generate 32 from the
//!   operating system's CSPRNG); parsing refuses anything else;
//! - signing: `webhook-signature: v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>`,
//!   with one `v1,…` entry per active secret, space-separated ([`SigningKeys`]: after a
//!   rotation the previous secret keeps signing beside the new one until it expires, so a
//!   consumer can switch secrets without refusing a single delivery);
//! - verification ([`Verifier`]), for our own `faceid-sim listen` and the tests: constant-time
//!   comparison, every candidate examined (no early exit), and a tolerance window on
//!   `webhook-timestamp` (Unix seconds) against replays.
//!
//! Invariants:
//! - a secret never reaches `Debug`, `Display`, logs or errors: `Debug` shows only a
//!   fingerprint, there is no `Display`, and the one way to read it back,
//!   [`EndpointSecret::expose_whsec`], is named for what it does (show it once, store it
//!   encrypted);
//! - pure: no I/O and no clock of its own; time is passed in (epoch milliseconds, as
//!   [`crate::clock::Clock`] gives it).
//!
//! Why `hmac` + `sha2` and not the `standardwebhooks` crate (1.0.1): that crate's `verify`
//! reads the system clock (no injected clock, a fixed 5-minute window), accepts a secret
//! without the `whsec_` prefix and of any length, signs with one key only (no rotation), and
//! brings its own HMAC, base64 and `time` versions. The scheme itself is a few lines over the
//! RustCrypto HMAC; what matters is that an independent verifier agrees, which
//! `tests/push/official_verifier.rs` checks against the official Python package.

use std::fmt;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use rand::TryRngCore;
use secrecy::{ExposeSecret, SecretSlice};
use sha2::{Digest, Sha256};
use subtle::{Choice, ConstantTimeEq};

/// Prefix of a secret's text form.
pub const SECRET_PREFIX: &str = "whsec_";
/// Shortest key the specification allows.
pub const MIN_SECRET_BYTES: usize = 24;
/// Longest key the specification allows.
pub const MAX_SECRET_BYTES: usize = 64;
/// Length of the keys we generate.
pub const GENERATED_SECRET_BYTES: usize = 32;

/// The three headers, as the specification names them.
pub const HEADER_ID: &str = "webhook-id";
pub const HEADER_TIMESTAMP: &str = "webhook-timestamp";
pub const HEADER_SIGNATURE: &str = "webhook-signature";

/// The signature scheme's version tag.
const VERSION: &str = "v1";
/// How far `webhook-timestamp` may be from the verifier's clock, either way: the
/// specification's (and the official libraries') default.
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(5 * 60);
/// Most `v1,…` entries a verifier examines in one header; rotation needs two. Bounds the work
/// a stranger can ask of `faceid-sim listen` with one request.
const MAX_CANDIDATES: usize = 8;

type HmacSha256 = Hmac<Sha256>;

/// An endpoint's signing key.
#[derive(Clone)]
pub struct EndpointSecret {
    key: SecretSlice<u8>,
}

/// Why a text is not an endpoint secret. Never contains the text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("an endpoint secret starts with \"whsec_\"")]
    MissingPrefix,
    #[error("an endpoint secret is \"whsec_\" followed by standard base64 (with padding)")]
    NotBase64,
    #[error("an endpoint secret's key must be 24 to 64 bytes (this one has {0})")]
    WrongLength(usize),
}

impl EndpointSecret {
    /// A fresh secret of [`GENERATED_SECRET_BYTES`] from the operating system's CSPRNG.
    ///
    /// Panics only if the operating system cannot provide randomness, in which case no
    /// secret we could make would be safe either.
    pub fn generate() -> Self {
        let mut key = vec![0u8; GENERATED_SECRET_BYTES];
        rand::rngs::OsRng
            .try_fill_bytes(&mut key)
            .expect("the operating system's random number generator failed");
        Self { key: key.into() }
    }

    /// Parses `whsec_<base64>`: standard alphabet, canonical padding, 24–64 bytes.
    /// Surrounding whitespace is refused rather than trimmed: a secret is copied by machines.
    pub fn parse(text: &str) -> Result<Self, SecretError> {
        let encoded = text
            .strip_prefix(SECRET_PREFIX)
            .ok_or(SecretError::MissingPrefix)?;
        let key = STANDARD
            .decode(encoded)
            .map_err(|_| SecretError::NotBase64)?;
        if !(MIN_SECRET_BYTES..=MAX_SECRET_BYTES).contains(&key.len()) {
            return Err(SecretError::WrongLength(key.len()));
        }
        Ok(Self { key: key.into() })
    }

    /// The `whsec_…` text: to show once when an endpoint is created or rotated, and to store
    /// (encrypted when `encryption.key` is set). Nothing else should call this.
    pub fn expose_whsec(&self) -> String {
        format!(
            "{SECRET_PREFIX}{}",
            STANDARD.encode(self.key.expose_secret())
        )
    }

    /// First 12 hex digits of SHA-256 of the key: tells secrets apart in logs and answers
    /// (which one verified) without revealing either.
    pub fn fingerprint(&self) -> String {
        let digest = Sha256::digest(self.key.expose_secret());
        hex::encode(&digest[..6])
    }

    /// HMAC-SHA256 over `{id}.{timestamp}.{body}`.
    fn mac(&self, id: &str, timestamp: i64, body: &[u8]) -> [u8; 32] {
        let mut mac = HmacSha256::new_from_slice(self.key.expose_secret())
            .expect("HMAC accepts keys of any length");
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        mac.finalize().into_bytes().into()
    }
}

impl fmt::Debug for EndpointSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EndpointSecret")
            .field("fingerprint", &self.fingerprint())
            .finish_non_exhaustive()
    }
}

/// The `webhook-signature` value for `secrets` (in order), one `v1,…` entry each.
pub fn signature_header<'a>(
    secrets: impl IntoIterator<Item = &'a EndpointSecret>,
    id: &str,
    timestamp: i64,
    body: &[u8],
) -> String {
    secrets
        .into_iter()
        .map(|secret| {
            format!(
                "{VERSION},{}",
                STANDARD.encode(secret.mac(id, timestamp, body))
            )
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The three headers of one signed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookHeaders {
    /// `webhook-id`: the event's id, the same on every attempt, so consumers deduplicate.
    pub id: String,
    /// `webhook-timestamp`: Unix seconds of this attempt.
    pub timestamp: i64,
    /// `webhook-signature`: space-separated `v1,<base64>` entries.
    pub signature: String,
}

impl WebhookHeaders {
    /// `(name, value)` pairs, ready for an HTTP request.
    pub fn pairs(&self) -> [(&'static str, String); 3] {
        [
            (HEADER_ID, self.id.clone()),
            (HEADER_TIMESTAMP, self.timestamp.to_string()),
            (HEADER_SIGNATURE, self.signature.clone()),
        ]
    }

    /// Reads the three headers through `get` (a header map lookup, case-insensitive as HTTP
    /// is). A missing, empty or non-numeric header is an error naming it.
    pub fn read<'a>(get: impl Fn(&str) -> Option<&'a str>) -> Result<Self, VerifyError> {
        let header = |name: &'static str| {
            get(name)
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .ok_or(VerifyError::MissingHeader(name))
        };
        let id = header(HEADER_ID)?.to_owned();
        let timestamp = header(HEADER_TIMESTAMP)?
            .parse()
            .map_err(|_| VerifyError::BadTimestamp)?;
        let signature = header(HEADER_SIGNATURE)?.to_owned();
        Ok(Self {
            id,
            timestamp,
            signature,
        })
    }
}

/// The secrets an endpoint signs with: its current one and, for a while after a rotation,
/// the previous one.
#[derive(Debug, Clone)]
pub struct SigningKeys {
    current: EndpointSecret,
    /// The previous secret and when it stops signing (epoch ms).
    previous: Option<(EndpointSecret, i64)>,
}

impl SigningKeys {
    pub fn new(current: EndpointSecret) -> Self {
        Self {
            current,
            previous: None,
        }
    }

    /// Keeps `previous` signing until `expires_at_ms` (as stored beside the endpoint).
    pub fn with_previous(mut self, previous: EndpointSecret, expires_at_ms: i64) -> Self {
        self.previous = Some((previous, expires_at_ms));
        self
    }

    /// After a rotation: `next` becomes current, and the current secret keeps signing beside
    /// it for `overlap` from `now_ms`. An older previous secret is dropped.
    pub fn rotate(self, next: EndpointSecret, now_ms: i64, overlap: Duration) -> Self {
        let expires_at =
            now_ms.saturating_add(i64::try_from(overlap.as_millis()).unwrap_or(i64::MAX));
        Self {
            current: next,
            previous: Some((self.current, expires_at)),
        }
    }

    pub fn current(&self) -> &EndpointSecret {
        &self.current
    }

    /// The previous secret and its expiry, whether or not it has expired.
    pub fn previous(&self) -> Option<(&EndpointSecret, i64)> {
        self.previous.as_ref().map(|(s, at)| (s, *at))
    }

    /// The secrets that sign at `now_ms`: the current one first, then the previous one while
    /// `now_ms` is before its expiry.
    pub fn active(&self, now_ms: i64) -> impl Iterator<Item = &EndpointSecret> {
        let previous = self
            .previous
            .as_ref()
            .filter(|(_, expires_at)| now_ms < *expires_at)
            .map(|(secret, _)| secret);
        std::iter::once(&self.current).chain(previous)
    }

    /// Signs one attempt of message `id` made at `now_ms`.
    pub fn sign(&self, id: &str, now_ms: i64, body: &[u8]) -> WebhookHeaders {
        let timestamp = now_ms.div_euclid(1000);
        WebhookHeaders {
            id: id.to_owned(),
            timestamp,
            signature: signature_header(self.active(now_ms), id, timestamp, body),
        }
    }
}

/// Why a request does not verify. Names what is wrong, never the expected value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("the {0} header is missing or empty")]
    MissingHeader(&'static str),
    #[error("webhook-timestamp is not a whole number of Unix seconds")]
    BadTimestamp,
    #[error("webhook-timestamp is older than the tolerance allows")]
    TooOld,
    #[error("webhook-timestamp is further in the future than the tolerance allows")]
    TooNew,
    #[error("webhook-signature holds no v1 signature")]
    NoSignature,
    #[error("no signature matches")]
    Mismatch,
}

impl VerifyError {
    /// Whether the request was malformed (400) rather than unauthenticated (401).
    pub fn is_malformed(&self) -> bool {
        matches!(
            self,
            Self::MissingHeader(_) | Self::BadTimestamp | Self::NoSignature
        )
    }
}

/// Verifies signed requests against one or more secrets (a consumer mid-rotation accepts
/// either).
#[derive(Debug, Clone)]
pub struct Verifier {
    secrets: Vec<EndpointSecret>,
    tolerance: Duration,
}

impl Verifier {
    pub fn new(secrets: Vec<EndpointSecret>) -> Self {
        Self {
            secrets,
            tolerance: DEFAULT_TOLERANCE,
        }
    }

    pub fn with_tolerance(mut self, tolerance: Duration) -> Self {
        self.tolerance = tolerance;
        self
    }

    /// Checks the timestamp window, then every `v1` candidate against every secret, in
    /// constant time per comparison and without stopping at the first match. Returns the
    /// index of the secret that matched.
    pub fn verify(
        &self,
        headers: &WebhookHeaders,
        body: &[u8],
        now_ms: i64,
    ) -> Result<usize, VerifyError> {
        let now = now_ms.div_euclid(1000);
        let tolerance = i64::try_from(self.tolerance.as_secs()).unwrap_or(i64::MAX);
        if now.saturating_sub(headers.timestamp) > tolerance {
            return Err(VerifyError::TooOld);
        }
        if headers.timestamp.saturating_sub(now) > tolerance {
            return Err(VerifyError::TooNew);
        }
        // Decoding is about the candidate, not the secret: its timing reveals nothing.
        let candidates: Vec<Vec<u8>> = headers
            .signature
            .split(' ')
            .filter_map(|entry| entry.split_once(','))
            .filter(|(version, _)| *version == VERSION)
            .filter_map(|(_, encoded)| STANDARD.decode(encoded).ok())
            .take(MAX_CANDIDATES)
            .collect();
        if candidates.is_empty() {
            return Err(VerifyError::NoSignature);
        }
        let mut matched = None;
        for (index, secret) in self.secrets.iter().enumerate() {
            let expected = secret.mac(&headers.id, headers.timestamp, body);
            let mut any = Choice::from(0);
            for candidate in &candidates {
                any |= candidate.as_slice().ct_eq(&expected);
            }
            if bool::from(any) && matched.is_none() {
                matched = Some(index);
            }
        }
        matched.ok_or(VerifyError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The specification's published example (also the official libraries' test vector).
    const SPEC_SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
    const SPEC_ID: &str = "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk";
    const SPEC_TIMESTAMP: i64 = 1_649_367_553;
    const SPEC_BODY: &[u8] = br#"{"email":"test@example.com","username":"test_user"}"#;
    const SPEC_SIGNATURE: &str = "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=";

    fn spec_secret() -> EndpointSecret {
        EndpointSecret::parse(SPEC_SECRET).unwrap()
    }

    #[test]
    fn signing_reproduces_the_specifications_example() {
        let header = signature_header([&spec_secret()], SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY);

        assert_eq!(header, SPEC_SIGNATURE);
    }

    #[test]
    fn the_specifications_example_verifies_within_the_window_only() {
        let verifier = Verifier::new(vec![spec_secret()]);
        let headers = WebhookHeaders {
            id: SPEC_ID.into(),
            timestamp: SPEC_TIMESTAMP,
            signature: SPEC_SIGNATURE.into(),
        };
        let at = |seconds: i64| seconds * 1000;

        assert_eq!(
            verifier.verify(&headers, SPEC_BODY, at(SPEC_TIMESTAMP)),
            Ok(0)
        );
        assert_eq!(
            verifier.verify(&headers, SPEC_BODY, at(SPEC_TIMESTAMP + 300)),
            Ok(0),
            "the window's edge is inside"
        );
        assert_eq!(
            verifier.verify(&headers, SPEC_BODY, at(SPEC_TIMESTAMP + 301)),
            Err(VerifyError::TooOld)
        );
        assert_eq!(
            verifier.verify(&headers, SPEC_BODY, at(SPEC_TIMESTAMP - 301)),
            Err(VerifyError::TooNew)
        );
    }

    #[test]
    fn generated_secrets_are_32_random_bytes_that_round_trip_through_their_text() {
        let a = EndpointSecret::generate();
        let b = EndpointSecret::generate();

        let text = a.expose_whsec();
        assert!(text.starts_with("whsec_"), "{}", a.fingerprint());
        assert_eq!(STANDARD.decode(&text[6..]).unwrap().len(), 32);
        assert_eq!(EndpointSecret::parse(&text).unwrap().expose_whsec(), text);
        assert_ne!(a.fingerprint(), b.fingerprint(), "two draws differ");
    }

    #[test]
    fn parsing_refuses_malformed_secrets() {
        use base64::engine::general_purpose::URL_SAFE;
        let b64 = |n: usize| STANDARD.encode(vec![7u8; n]);
        let cases: Vec<(String, SecretError)> = vec![
            (b64(32), SecretError::MissingPrefix),
            (format!("WHSEC_{}", b64(32)), SecretError::MissingPrefix),
            (format!(" whsec_{}", b64(32)), SecretError::MissingPrefix),
            (format!("whsec_{} ", b64(32)), SecretError::NotBase64),
            ("whsec_".into(), SecretError::WrongLength(0)),
            ("whsec_not*base64".into(), SecretError::NotBase64),
            // URL-safe alphabet and missing padding are not the standard encoding.
            (
                format!("whsec_{}", URL_SAFE.encode([0xfb; 33])),
                SecretError::NotBase64,
            ),
            (
                format!("whsec_{}", b64(31).trim_end_matches('=')),
                SecretError::NotBase64,
            ),
            (format!("whsec_{}", b64(23)), SecretError::WrongLength(23)),
            (format!("whsec_{}", b64(65)), SecretError::WrongLength(65)),
        ];
        for (text, expected) in cases {
            assert_eq!(
                EndpointSecret::parse(&text).err(),
                Some(expected),
                "{text:?}"
            );
        }
        for n in [24, 32, 64] {
            assert!(
                EndpointSecret::parse(&format!("whsec_{}", b64(n))).is_ok(),
                "{n} bytes"
            );
        }
    }

    #[test]
    fn a_secret_shows_only_its_fingerprint_and_errors_never_echo_input() {
        let secret = spec_secret();
        let encoded = &SPEC_SECRET[6..];

        let debug = format!("{secret:?} {:?}", SigningKeys::new(secret.clone()));
        assert!(!debug.contains(encoded), "{debug}");
        assert!(debug.contains(&secret.fingerprint()), "{debug}");
        let error = EndpointSecret::parse(&format!("whsec_{encoded}AA")).unwrap_err();
        assert!(!error.to_string().contains(encoded), "{error}");
    }

    #[test]
    fn the_previous_secret_signs_beside_the_new_one_until_it_expires() {
        let old = spec_secret();
        let new = EndpointSecret::generate();
        let now = SPEC_TIMESTAMP * 1000;
        let keys =
            SigningKeys::new(old.clone()).rotate(new.clone(), now, Duration::from_secs(24 * 3600));
        let only_old = Verifier::new(vec![old]);
        let only_new = Verifier::new(vec![new]);

        let during = keys.sign(SPEC_ID, now + 1000, SPEC_BODY);
        assert_eq!(
            during.signature.split(' ').count(),
            2,
            "{}",
            during.signature
        );
        assert_eq!(only_new.verify(&during, SPEC_BODY, now + 1000), Ok(0));
        assert_eq!(only_old.verify(&during, SPEC_BODY, now + 1000), Ok(0));

        let expiry = now + 24 * 3600 * 1000;
        let after = keys.sign(SPEC_ID, expiry, SPEC_BODY);
        assert_eq!(after.signature.split(' ').count(), 1, "{}", after.signature);
        assert_eq!(only_new.verify(&after, SPEC_BODY, expiry), Ok(0));
        assert_eq!(
            only_old.verify(&after, SPEC_BODY, expiry),
            Err(VerifyError::Mismatch)
        );
    }

    #[test]
    fn a_second_rotation_drops_the_oldest_secret() {
        let (a, b, c) = (
            EndpointSecret::generate(),
            EndpointSecret::generate(),
            EndpointSecret::generate(),
        );
        let day = Duration::from_secs(24 * 3600);

        let keys = SigningKeys::new(a)
            .rotate(b.clone(), 0, day)
            .rotate(c.clone(), 1, day);

        let active: Vec<String> = keys.active(2).map(EndpointSecret::fingerprint).collect();
        assert_eq!(active, [c.fingerprint(), b.fingerprint()]);
    }

    #[test]
    fn a_verifier_with_two_secrets_says_which_one_matched() {
        let (old, new) = (EndpointSecret::generate(), EndpointSecret::generate());
        let verifier = Verifier::new(vec![new.clone(), old.clone()]);

        let by_old = SigningKeys::new(old).sign("evt_1", 5_000, b"{}");
        let by_new = SigningKeys::new(new).sign("evt_1", 5_000, b"{}");

        assert_eq!(verifier.verify(&by_old, b"{}", 5_000), Ok(1));
        assert_eq!(verifier.verify(&by_new, b"{}", 5_000), Ok(0));
    }

    #[test]
    fn any_change_to_id_timestamp_or_body_breaks_the_signature() {
        let secret = EndpointSecret::generate();
        let verifier = Verifier::new(vec![secret.clone()]);
        let now = 1_700_000_000_000;
        let signed = SigningKeys::new(secret).sign("evt_a", now, b"{\"a\":1}");

        let mut other_id = signed.clone();
        other_id.id = "evt_b".into();
        let mut other_time = signed.clone();
        other_time.timestamp += 1;
        let cases = [
            (&other_id, &b"{\"a\":1}"[..]),
            (&other_time, &b"{\"a\":1}"[..]),
            (&signed, &b"{\"a\":2}"[..]),
        ];
        for (headers, body) in cases {
            assert_eq!(
                verifier.verify(headers, body, now),
                Err(VerifyError::Mismatch),
                "{headers:?}"
            );
        }
        assert_eq!(verifier.verify(&signed, b"{\"a\":1}", now), Ok(0));
    }

    #[test]
    fn malformed_signature_headers_are_told_apart_from_mismatches() {
        let secret = EndpointSecret::generate();
        let verifier = Verifier::new(vec![secret.clone()]);
        let good = SigningKeys::new(secret).sign("evt_a", 0, b"x");
        let with = |signature: &str| WebhookHeaders {
            signature: signature.into(),
            ..good.clone()
        };

        for header in ["", "v1", "v2,abc", "v1,***", "garbage"] {
            assert_eq!(
                verifier.verify(&with(header), b"x", 0),
                Err(VerifyError::NoSignature),
                "{header:?}"
            );
        }
        // A truncated signature decodes but cannot match; unknown versions are skipped.
        let truncated = &good.signature[..good.signature.len() - 8];
        assert_eq!(
            verifier.verify(&with(&format!("{truncated}AAAAAAA=")), b"x", 0),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            verifier.verify(&with(&format!("v2,abc {}", good.signature)), b"x", 0),
            Ok(0)
        );
    }

    #[test]
    fn headers_are_read_by_name_and_missing_ones_are_named() {
        let full = |name: &str| match name {
            HEADER_ID => Some("evt_1"),
            HEADER_TIMESTAMP => Some("1700000000"),
            HEADER_SIGNATURE => Some("v1,abc"),
            _ => None,
        };
        assert_eq!(
            WebhookHeaders::read(full),
            Ok(WebhookHeaders {
                id: "evt_1".into(),
                timestamp: 1_700_000_000,
                signature: "v1,abc".into()
            })
        );
        for missing in [HEADER_ID, HEADER_TIMESTAMP, HEADER_SIGNATURE] {
            let read = WebhookHeaders::read(|name| (name != missing).then(|| full(name)).flatten());
            assert_eq!(read, Err(VerifyError::MissingHeader(missing)));
        }
        let not_a_number = WebhookHeaders::read(|name| {
            if name == HEADER_TIMESTAMP {
                Some("1.5")
            } else {
                full(name)
            }
        });
        assert_eq!(not_a_number, Err(VerifyError::BadTimestamp));
    }

    #[test]
    fn the_timestamp_is_the_attempts_second_rounded_down() {
        let keys = SigningKeys::new(EndpointSecret::generate());

        assert_eq!(
            keys.sign("e", 1_700_000_000_999, b"").timestamp,
            1_700_000_000
        );
        assert_eq!(keys.sign("e", -1, b"").timestamp, -1);
    }
}
