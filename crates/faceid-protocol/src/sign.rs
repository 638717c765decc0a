//! The callback signature: `sign = lowercase_hex(sha1(API_SECRET + data))`.
//!
//! Invariants: the digest is computed over the exact `data` bytes received (after form
//! decoding, before any UTF-8 or JSON interpretation), hex case is ignored, and the comparison
//! is constant-time. SHA-1 with a secret *prefix* is open to length extension, so a valid sign
//! alone does not make `data` trustworthy: [`crate::payload`] must still refuse
//! anything after the JSON object.

use sha1::{Digest, Sha1};
use subtle::ConstantTimeEq;

/// A parsed `sign` field: exactly 40 hex digits, either case.
#[derive(Clone, PartialEq, Eq)]
pub struct Signature([u8; 20]);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignatureError {
    #[error("sign must be 40 hexadecimal characters")]
    Malformed,
    #[error("sign does not match sha1(secret + data)")]
    Mismatch,
}

impl Signature {
    pub fn parse(text: &str) -> Result<Self, SignatureError> {
        let text = text.trim();
        if text.len() != 40 {
            return Err(SignatureError::Malformed);
        }
        let mut raw = [0u8; 20];
        hex::decode_to_slice(text, &mut raw).map_err(|_| SignatureError::Malformed)?;
        Ok(Self(raw))
    }
}

impl std::fmt::Debug for Signature {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A signature is not secret, but it is noise in logs; show a prefix only.
        write!(f, "Signature({}…)", &hex::encode(self.0)[..8])
    }
}

fn digest(secret: &[u8], data: &[u8]) -> [u8; 20] {
    let mut hasher = Sha1::new();
    hasher.update(secret);
    hasher.update(data);
    hasher.finalize().into()
}

/// The lowercase hex sign FaceID would send for `data`.
pub fn sign(secret: &str, data: &[u8]) -> String {
    hex::encode(digest(secret.as_bytes(), data))
}

/// Checks `sign` against `sha1(secret + data)` in constant time.
pub fn verify(secret: &str, data: &[u8], sign: &str) -> Result<(), SignatureError> {
    let claimed = Signature::parse(sign)?;
    let expected = digest(secret.as_bytes(), data);
    if bool::from(expected.ct_eq(&claimed.0)) {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

/// Checks `sign` against each of `secrets` in order, each comparison in constant time, and
/// returns the position of the first secret it matches (the current one comes first, then
/// those kept from before a rotation).
pub fn verify_any(secrets: &[&str], data: &[u8], sign: &str) -> Result<usize, SignatureError> {
    let claimed = Signature::parse(sign)?;
    secrets
        .iter()
        .position(|secret| bool::from(digest(secret.as_bytes(), data).ct_eq(&claimed.0)))
        .ok_or(SignatureError::Mismatch)
}

/// The name the journal gives the secret at `position` of [`verify_any`]'s list: `current`,
/// then `previous-1`, `previous-2`… — by place in the configuration, so the journal says
/// which one matched without holding the secret or anything computed from it.
pub fn key_id(position: usize) -> String {
    match position {
        0 => "current".to_owned(),
        n => format!("previous-{n}"),
    }
}

/// Builds a SHA-1 length-extension forgery of a signed `data`: returns `(forged_data,
/// forged_sign)` such that `forged_sign == sha1(secret + forged_data)` **without knowing the
/// secret**, only its length. `forged_data` is `data`, SHA-1 glue padding, then `tail`.
///
/// This is an attack, kept here so that the simulator can send one (`--forge length-extension`)
/// and tests can prove that a valid sign over such data is still refused.
pub fn length_extend(
    sign: &str,
    secret_len: usize,
    data: &[u8],
    tail: &[u8],
) -> Option<(Vec<u8>, String)> {
    let known = Signature::parse(sign).ok()?;
    let mut state = [0u32; 5];
    for (word, chunk) in state.iter_mut().zip(known.0.chunks(4)) {
        *word = u32::from_be_bytes(chunk.try_into().ok()?);
    }
    let glue = sha1_padding(secret_len + data.len());
    let prefix_len = secret_len + data.len() + glue.len();
    // Hash the tail as if continuing after `prefix_len` bytes already compressed.
    let mut rest = tail.to_vec();
    let mut pad = sha1_padding(prefix_len + tail.len());
    rest.append(&mut pad);
    let blocks: Vec<sha1::digest::core_api::Block<sha1::Sha1Core>> = rest
        .chunks(64)
        .map(|c| <[u8; 64]>::try_from(c).map(Into::into))
        .collect::<Result<_, _>>()
        .ok()?;
    sha1::compress(&mut state, &blocks);
    let mut forged = data.to_vec();
    forged.extend_from_slice(&glue);
    forged.extend_from_slice(tail);
    let digest: Vec<u8> = state.iter().flat_map(|w| w.to_be_bytes()).collect();
    Some((forged, hex::encode(digest)))
}

/// SHA-1's padding for a message of `len` bytes: 0x80, zeros, then the bit length.
fn sha1_padding(len: usize) -> Vec<u8> {
    let mut pad = vec![0x80u8];
    while (len + pad.len()) % 64 != 56 {
        pad.push(0);
    }
    pad.extend_from_slice(&((len as u64) * 8).to_be_bytes());
    pad
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_vector_matches_sha1sum() {
        // printf 'abc' | sha1sum → a9993e364706816aba3e25717850c26c9cd0d89d
        assert_eq!(sign("", b"abc"), "a9993e364706816aba3e25717850c26c9cd0d89d");
        // printf 'my-secretabc' | sha1sum
        assert_eq!(sign("my-secret", b"abc"), sign("", b"my-secretabc"));
        // printf 'secret{"a":1}' | sha1sum
        assert_eq!(
            sign("secret", br#"{"a":1}"#),
            "6d3ece5e32c56a029e1bc9209c84b0707179c504"
        );
    }

    #[test]
    fn verify_accepts_either_hex_case() {
        let s = sign("k", b"payload");
        assert_eq!(verify("k", b"payload", &s), Ok(()));
        assert_eq!(verify("k", b"payload", &s.to_uppercase()), Ok(()));
    }

    #[test]
    fn verify_refuses_a_different_secret_data_or_sign() {
        let s = sign("k", b"payload");
        assert_eq!(
            verify("other", b"payload", &s),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(verify("k", b"payload ", &s), Err(SignatureError::Mismatch));
        let mut flipped = s.clone().into_bytes();
        flipped[0] = if flipped[0] == b'0' { b'1' } else { b'0' };
        let flipped = String::from_utf8(flipped).unwrap();
        assert_eq!(
            verify("k", b"payload", &flipped),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn a_length_extension_forgery_carries_a_valid_sign() {
        // This is why the JSON envelope must be strict: the sign alone cannot tell.
        let secret = "the-api-secret";
        let data = br#"{"status":"FAILED","biz_info":{"biz_id":"1,a"}}"#;
        let tail = br#"{"status":"OK"}"#;
        let (forged, forged_sign) =
            length_extend(&sign(secret, data), secret.len(), data, tail).unwrap();
        assert!(forged.starts_with(data) && forged.ends_with(tail));
        assert_eq!(verify(secret, &forged, &forged_sign), Ok(()));
        assert_eq!(forged_sign, sign(secret, &forged));
    }

    #[test]
    fn verify_any_names_the_first_matching_secret_by_position() {
        let data = b"payload";
        let secrets = ["new", "old", "older"];
        assert_eq!(verify_any(&secrets, data, &sign("new", data)), Ok(0));
        assert_eq!(verify_any(&secrets, data, &sign("older", data)), Ok(2));
        assert_eq!(
            verify_any(&secrets, data, &sign("other", data)),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_any(&secrets, data, "zz"),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            verify_any(&[], data, &sign("new", data)),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            (key_id(0).as_str(), key_id(2).as_str()),
            ("current", "previous-2")
        );
    }

    #[test]
    fn verify_refuses_malformed_signs() {
        for bad in ["", "abc", &"g".repeat(40), &"a".repeat(41), &"a".repeat(39)] {
            assert_eq!(
                verify("k", b"x", bad),
                Err(SignatureError::Malformed),
                "sign {bad:?}"
            );
        }
    }
}
