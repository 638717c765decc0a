//! Encryption at rest: the [`Keyring`], what it seals on the way into the database and opens
//! on the way out, and re-encryption ([`reencrypt`]). Each engine holds a keyring and calls
//! it in exactly the store methods that carry identity data (`engine.rs`); nothing else
//! seals or opens a value.
//!
//! Owns: the raw result (`verifications.result`), journal bodies (`callbacks.body`) and
//! images (`images.jpeg`). Everything else (status, liveness, confidence, biz_id, hashes,
//! times) stays in clear, because SQL filters, sorts and merges on it and it identifies no one.
//!
//! Format of an encrypted value (AES-256-GCM, a fresh random 96-bit nonce per value):
//! `MAGIC "FIDE" | version 1 | key id | nonce (12) | ciphertext + tag (16)`. Binary columns
//! store it as is; the TEXT `result` column stores `fide1:` + base64 of it (a FaceID result
//! is a JSON object, so it always starts with `{` and can't be mistaken for one). The key id
//! is the first byte of SHA-256(key): it picks the key among `encryption.key` and
//! `encryption.previous_keys` so old values stay readable after a rotation (on an id
//! collision every key with that id is tried). The associated data binds a value to where it
//! lives (`result:<biz_id>`, `image:<biz_id>/<name>`, `body`), so a ciphertext copied onto
//! another record does not decrypt.
//!
//! Values kept in clear that begin with the magic. Binary values are kept in clear without a
//! key, and a stranger chooses the bytes of a refused delivery's body: `FIDE…` read as a
//! sealed value would not open, and used to fail every replay and `reencrypt` until retention
//! deleted the row. Three rules, from the root to the leftovers:
//! - *no new ambiguity*: a value written in clear that begins with the magic is stored
//!   escaped, `MAGIC | version 0 | plaintext` ([`ESCAPED`]; version 0 was never sealed), so
//!   whatever begins with the magic now is sealed or escaped, never a guess (the TEXT column
//!   needs no escape: see above);
//! - *old journal bodies are read exactly when they can be*: a journal row keeps the SHA-256
//!   of the whole body as received (`body_sha256`), and stored bytes that hash to it are
//!   that body in clear (a sealed value never hashes to its own plaintext's digest), so a
//!   whole body an older version kept in clear is read as it is, whatever it begins with;
//! - *only strangers' bytes may be unreadable*: a journal body that still does not open (a
//!   prefix an older version capped in clear, or a body sealed with a key we no longer hold)
//!   is skipped and counted — replay counts it still refused, `reencrypt` leaves it as it is —
//!   when the delivery was *not verified* (refused, or an unsigned return GET: bytes nobody
//!   vouched for, deleted by `retention.refused_days` when refused); anywhere else (a
//!   verified delivery's body, a result, an image) it is a [`StoreError::Decrypt`], so a
//!   misconfigured key is never mistaken for a stranger's junk. Callers log the journal id of
//!   a skipped body, never the body nor the error (whose key id is a stranger's byte).
//!
//! We do not tell an old clear value from a sealed one by trying to decrypt it (a stranger
//! can name a real key id, and altered data must stay an error), nor by the row's age (no row
//! says when encryption was turned on). An older version's clear *image* beginning with the
//! magic (FaceID's bytes: never seen) stays an error, as before; its clear capped prefix of a
//! stranger's body beginning with `FIDE\0` now reads as escaped, five bytes short (such a
//! prefix is never replayed).
//!
//! Invariants: with a key configured nothing identifying is written in clear; values written
//! before encryption was turned on are read as they are (and re-encrypted when next written);
//! a value that cannot be decrypted is a [`StoreError::Decrypt`] naming the key id, never a
//! panic and never the value, except the unverified journal bodies above; keys never reach
//! `Debug` or logs.

use std::borrow::Cow;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest, Sha256};

use super::{IncomingResult, NewCallback, NewImage, StoreError, StoreResult, Verification};

const MAGIC: &[u8; 4] = b"FIDE";
/// The version byte of a sealed value.
const VERSION: u8 = 1;
/// The version byte of a value kept in clear that itself begins with [`MAGIC`]: the
/// plaintext follows. Written only without a current key.
const ESCAPED: u8 = 0;
const NONCE_LEN: usize = 12;
const HEADER_LEN: usize = MAGIC.len() + 2 + NONCE_LEN;
/// Prefix of an encrypted value in a TEXT column.
const TEXT_PREFIX: &str = "fide1:";

/// The configured keys: the first encrypts (when there is one); all decrypt.
#[derive(Clone, Default)]
pub struct Keyring {
    /// `(key id, cipher)`; `current` tells whether the first one is for writing.
    keys: Vec<(u8, Aes256Gcm)>,
    current: bool,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<String> = self
            .keys
            .iter()
            .map(|(id, _)| format!("{id:#04x}"))
            .collect();
        f.debug_struct("Keyring")
            .field("key_ids", &ids)
            .field("encrypts", &self.current)
            .finish()
    }
}

/// A key that is not 32 bytes of base64.
#[derive(Debug, thiserror::Error)]
#[error("must be the base64 of exactly 32 bytes (e.g. the output of `openssl rand -base64 32`)")]
pub struct BadKey;

impl Keyring {
    /// `current` encrypts new values; `previous` only decrypt old ones. Keys are base64.
    pub fn new(current: Option<&str>, previous: &[&str]) -> Result<Self, BadKey> {
        let mut keys = Vec::new();
        for key in current.iter().chain(previous) {
            let bytes = STANDARD.decode(key.trim()).map_err(|_| BadKey)?;
            if bytes.len() != 32 {
                return Err(BadKey);
            }
            let cipher = Aes256Gcm::new_from_slice(&bytes).map_err(|_| BadKey)?;
            keys.push((key_id(&bytes), cipher));
        }
        Ok(Self {
            keys,
            current: current.is_some(),
        })
    }

    /// Whether new values are encrypted.
    pub fn encrypts(&self) -> bool {
        self.current
    }

    /// Encrypts with the current key; when there is none, returns the plaintext as it is —
    /// escaped (`ESCAPED`) if it begins with the magic, so that it is never read as sealed.
    pub fn seal(&self, plaintext: &[u8], context: &str) -> Vec<u8> {
        let Some((id, cipher)) = self.keys.first().filter(|_| self.current) else {
            if plaintext.starts_with(MAGIC) {
                return [&MAGIC[..], &[ESCAPED], plaintext].concat();
            }
            return plaintext.to_vec();
        };
        let nonce: [u8; NONCE_LEN] = rand::random();
        let sealed = cipher
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: plaintext,
                    aad: context.as_bytes(),
                },
            )
            // AES-GCM encryption fails only for inputs beyond 64 GiB.
            .expect("AES-GCM encrypts any value we store");
        let mut out = Vec::with_capacity(HEADER_LEN + sealed.len());
        out.extend_from_slice(MAGIC);
        out.push(VERSION);
        out.push(*id);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    }

    /// Decrypts a value [`Keyring::seal`] wrote; a value without the header is returned as
    /// it is (written before encryption was turned on), an escaped one without its escape.
    pub fn open(&self, stored: &[u8], context: &str) -> StoreResult<Vec<u8>> {
        if !stored.starts_with(MAGIC) {
            return Ok(stored.to_vec());
        }
        if stored.get(MAGIC.len()) == Some(&ESCAPED) {
            return Ok(stored[MAGIC.len() + 1..].to_vec());
        }
        if stored.len() < HEADER_LEN || stored[MAGIC.len()] != VERSION {
            return Err(StoreError::Decrypt(
                "unknown encrypted value format".to_owned(),
            ));
        }
        let id = stored[MAGIC.len() + 1];
        let nonce_bytes: [u8; NONCE_LEN] = stored[MAGIC.len() + 2..HEADER_LEN]
            .try_into()
            .expect("the header length was checked");
        let nonce = &Nonce::from(nonce_bytes);
        let payload = || Payload {
            msg: &stored[HEADER_LEN..],
            aad: context.as_bytes(),
        };
        let mut candidates = self.keys.iter().filter(|(k, _)| *k == id).peekable();
        if candidates.peek().is_none() {
            return Err(StoreError::Decrypt(format!(
                "the value was encrypted with key id {id:#04x}, which is neither encryption.key nor in encryption.previous_keys"
            )));
        }
        candidates
            .find_map(|(_, cipher)| cipher.decrypt(nonce, payload()).ok())
            .ok_or_else(|| {
                StoreError::Decrypt(format!(
                    "the value does not decrypt with the configured key(s) of id {id:#04x} (wrong key, or the data was altered)"
                ))
            })
    }

    /// [`Keyring::seal`] for a TEXT column.
    pub fn seal_text(&self, plaintext: &str, context: &str) -> String {
        if !self.current {
            return plaintext.to_owned();
        }
        format!(
            "{TEXT_PREFIX}{}",
            STANDARD.encode(self.seal(plaintext.as_bytes(), context))
        )
    }

    /// [`Keyring::open`] for a TEXT column.
    pub fn open_text(&self, stored: String, context: &str) -> StoreResult<String> {
        let Some(encoded) = stored.strip_prefix(TEXT_PREFIX) else {
            return Ok(stored);
        };
        let sealed = STANDARD
            .decode(encoded)
            .map_err(|_| StoreError::Decrypt("encrypted text is not base64".to_owned()))?;
        // Sealed, never escaped: a text kept in clear is a JSON object, not `fide1:…`.
        if !sealed.starts_with(MAGIC) || sealed.get(MAGIC.len()) == Some(&ESCAPED) {
            return Err(StoreError::Decrypt(
                "unknown encrypted value format".to_owned(),
            ));
        }
        String::from_utf8(self.open(&sealed, context)?)
            .map_err(|_| StoreError::Decrypt("decrypted text is not UTF-8".to_owned()))
    }
}

impl Keyring {
    /// Whether `stored` is already in the form [`Keyring::seal`] writes now: sealed with the
    /// current key (checked by decrypting, so a key id shared with an old key is no excuse),
    /// or plaintext (escaped when it begins with the magic) when no key is current.
    fn is_current(&self, stored: &[u8], context: &str) -> bool {
        match self.keys.first().filter(|_| self.current) {
            None => !stored.starts_with(MAGIC) || stored.get(MAGIC.len()) == Some(&ESCAPED),
            Some((id, cipher)) => {
                stored.len() >= HEADER_LEN
                    && stored.starts_with(MAGIC)
                    && stored[MAGIC.len() + 1] == *id
                    && {
                        let nonce: [u8; NONCE_LEN] = stored[MAGIC.len() + 2..HEADER_LEN]
                            .try_into()
                            .expect("the header length was checked");
                        cipher
                            .decrypt(
                                &Nonce::from(nonce),
                                Payload {
                                    msg: &stored[HEADER_LEN..],
                                    aad: context.as_bytes(),
                                },
                            )
                            .is_ok()
                    }
            }
        }
    }

    fn text_is_current(&self, stored: &str, context: &str) -> bool {
        match stored.strip_prefix(TEXT_PREFIX) {
            None => !self.current,
            Some(encoded) => STANDARD
                .decode(encoded)
                .is_ok_and(|sealed| self.is_current(&sealed, context)),
        }
    }
}

/// How many stored values a re-encryption rewrote (or, dry, would rewrite).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReencryptCounts {
    pub results: u64,
    pub images: u64,
    pub journal_bodies: u64,
    /// Journal bodies of unverified deliveries that could not be read (see the module
    /// header), left as they are; their journal ids are logged.
    pub unreadable_journal_bodies: u64,
}

/// Rows read per page while re-encrypting.
const REENCRYPT_PAGE: i64 = 200;

fn key_id(key: &[u8]) -> u8 {
    Sha256::digest(key)[0]
}

fn result_context(biz_id: &str) -> String {
    format!("result:{biz_id}")
}

fn image_context(biz_id: &str, name: &str) -> String {
    format!("image:{biz_id}/{name}")
}

const BODY_CONTEXT: &str = "body";

/// What is sealed, with which context, on its way into the database, and opened on its way
/// out. The engines call these in every store method that carries identity data, and
/// nowhere else is a value sealed or opened. Without a current key nothing is sealed (and
/// nothing copied, unless it begins with the magic and must be escaped); opening always
/// runs, so a value sealed earlier is never handed out as it is stored.
impl Keyring {
    /// Whether [`Keyring::seal`] changes `value` (it is sealed, or escaped).
    fn rewrites(&self, value: &[u8]) -> bool {
        self.current || value.starts_with(MAGIC)
    }

    /// A journal entry with its body sealed. Borrowed or owned, as the caller has it: an
    /// entry that is not rewritten comes back as it came, and an owned one is not copied.
    pub(super) fn seal_entry<'a>(&self, entry: Cow<'a, NewCallback>) -> Cow<'a, NewCallback> {
        if !self.rewrites(&entry.body) {
            return entry;
        }
        let mut entry = entry.into_owned();
        entry.body = self.seal(&entry.body, BODY_CONTEXT);
        Cow::Owned(entry)
    }

    /// A result with its raw text sealed; borrowed or owned, as [`Keyring::seal_entry`].
    pub(super) fn seal_result<'a>(
        &self,
        result: Cow<'a, IncomingResult>,
    ) -> Cow<'a, IncomingResult> {
        if !self.current {
            return result;
        }
        let mut result = result.into_owned();
        result.result = self.seal_text(&result.result, &result_context(&result.biz_id));
        Cow::Owned(result)
    }

    /// `biz_id`'s images, each sealed.
    pub(super) fn seal_images<'a>(
        &self,
        biz_id: &str,
        images: &'a [NewImage],
    ) -> Cow<'a, [NewImage]> {
        if !images.iter().any(|image| self.rewrites(&image.jpeg)) {
            return Cow::Borrowed(images);
        }
        images
            .iter()
            .map(|image| NewImage {
                name: image.name.clone(),
                jpeg: self.seal(&image.jpeg, &image_context(biz_id, &image.name)),
            })
            .collect()
    }

    /// A record with its raw result opened.
    pub(super) fn open_record(&self, mut record: Verification) -> StoreResult<Verification> {
        if let Some(stored) = record.result.take() {
            record.result = Some(self.open_text(stored, &result_context(&record.biz_id))?);
        }
        Ok(record)
    }

    /// A stored image of `biz_id`, opened.
    pub(super) fn open_image(
        &self,
        biz_id: &str,
        name: &str,
        stored: &[u8],
    ) -> StoreResult<Vec<u8>> {
        self.open(stored, &image_context(biz_id, name))
    }

    /// A stored journal body, opened: `None` when it cannot be read and its delivery was
    /// not `verified` (the module header says why). `body_sha256` is the row's digest of
    /// the whole body as received.
    pub(super) fn open_body(
        &self,
        stored: &[u8],
        body_sha256: &str,
        verified: bool,
    ) -> StoreResult<Option<Vec<u8>>> {
        if stored.starts_with(MAGIC) && hex::encode(Sha256::digest(stored)) == body_sha256 {
            // Kept in clear, unescaped, by an older version: the body as received.
            return Ok(Some(stored.to_vec()));
        }
        match self.open(stored, BODY_CONTEXT) {
            Ok(body) => Ok(Some(body)),
            Err(StoreError::Decrypt(_)) if !verified => Ok(None),
            Err(error) => Err(error),
        }
    }
}

/// A journal body as stored, with what [`Keyring::open_body`] needs to read it.
#[derive(sqlx::FromRow)]
pub(super) struct StoredBody {
    pub id: i64,
    pub verified: bool,
    pub body_sha256: String,
    pub body: Vec<u8>,
}

/// The stored form of identity values, as is: the raw material of [`reencrypt`]. Each engine
/// implements it; no caller outside the store sees it.
#[async_trait]
pub(super) trait StoredValues: Sync {
    /// Up to `limit` stored results (biz_id, stored text) with biz_id after `after`, by biz_id.
    async fn stored_results(&self, after: &str, limit: i64) -> StoreResult<Vec<(String, String)>>;

    /// Replaces a stored result only if it is still `old` (a merge meanwhile wins).
    async fn replace_result(&self, biz_id: &str, old: &str, new: &str) -> StoreResult<bool>;

    /// Up to `limit` stored images (biz_id, name, stored bytes) after (`after_biz_id`,
    /// `after_name`), in that order.
    async fn stored_images(
        &self,
        after_biz_id: &str,
        after_name: &str,
        limit: i64,
    ) -> StoreResult<Vec<(String, String, Vec<u8>)>>;

    /// Replaces a stored image only if it is still `old`.
    async fn replace_image(
        &self,
        biz_id: &str,
        name: &str,
        old: &[u8],
        new: &[u8],
    ) -> StoreResult<bool>;

    /// Up to `limit` non-empty journal bodies with id above `after_id`, by id.
    async fn stored_bodies(&self, after_id: i64, limit: i64) -> StoreResult<Vec<StoredBody>>;

    /// Replaces a journal body only if it is still `old` (a purge meanwhile wins).
    async fn replace_body(&self, id: i64, old: &[u8], new: &[u8]) -> StoreResult<bool>;
}

/// [`MaintenanceStore::reencrypt`](super::MaintenanceStore::reencrypt): rewrites every value
/// of `values` that is not in `keys`' current form, page by page, each by compare-and-swap.
pub(super) async fn reencrypt(
    values: &impl StoredValues,
    keys: &Keyring,
    dry_run: bool,
) -> StoreResult<ReencryptCounts> {
    let mut counts = ReencryptCounts::default();

    let mut after = String::new();
    loop {
        let page = values.stored_results(&after, REENCRYPT_PAGE).await?;
        let Some((last, _)) = page.last() else { break };
        after = last.clone();
        for (biz_id, stored) in page {
            let context = result_context(&biz_id);
            if keys.text_is_current(&stored, &context) {
                continue;
            }
            let plain = keys.open_text(stored.clone(), &context)?;
            counts.results += 1;
            if !dry_run {
                let new = keys.seal_text(&plain, &context);
                values.replace_result(&biz_id, &stored, &new).await?;
            }
        }
    }

    let (mut after_id, mut after_name) = (String::new(), String::new());
    loop {
        let page = values
            .stored_images(&after_id, &after_name, REENCRYPT_PAGE)
            .await?;
        let Some((last_id, last_name, _)) = page.last() else {
            break;
        };
        (after_id, after_name) = (last_id.clone(), last_name.clone());
        for (biz_id, name, stored) in page {
            let context = image_context(&biz_id, &name);
            if keys.is_current(&stored, &context) {
                continue;
            }
            let plain = keys.open(&stored, &context)?;
            counts.images += 1;
            if !dry_run {
                let new = keys.seal(&plain, &context);
                values.replace_image(&biz_id, &name, &stored, &new).await?;
            }
        }
    }

    let mut after_body = 0;
    loop {
        let page = values.stored_bodies(after_body, REENCRYPT_PAGE).await?;
        let Some(last) = page.last() else { break };
        after_body = last.id;
        for row in page {
            if keys.is_current(&row.body, BODY_CONTEXT) {
                continue;
            }
            let Some(plain) = keys.open_body(&row.body, &row.body_sha256, row.verified)? else {
                tracing::warn!(
                    journal_id = row.id,
                    "reencrypt: the journal body of an unverified delivery cannot be read; left as it is"
                );
                counts.unreadable_journal_bodies += 1;
                continue;
            };
            counts.journal_bodies += 1;
            if !dry_run {
                let new = keys.seal(&plain, BODY_CONTEXT);
                values.replace_body(row.id, &row.body, &new).await?;
            }
        }
    }
    Ok(counts)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY_A: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    const KEY_B: &str = "HxweHRwbGhkYFxYVFBMSERAPDg0MCwoJCAcGBQQDAgE=";

    #[test]
    fn a_value_round_trips_and_its_ciphertext_hides_the_plaintext() {
        let keys = Keyring::new(Some(KEY_A), &[]).unwrap();
        let plaintext = r#"{"idcard_info":{"idcard_name":"陈AB"}}"#;
        let sealed = keys.seal_text(plaintext, "result:x");
        assert!(sealed.starts_with(TEXT_PREFIX));
        assert!(!sealed.contains("陈AB") && !sealed.contains("idcard"));
        assert_ne!(sealed, keys.seal_text(plaintext, "result:x"), "fresh nonce");
        assert_eq!(keys.open_text(sealed, "result:x").unwrap(), plaintext);
    }

    #[test]
    fn a_previous_key_still_decrypts_after_a_rotation() {
        let old = Keyring::new(Some(KEY_A), &[]).unwrap();
        let sealed = old.seal(b"jpeg", "image:x/image_best");
        let rotated = Keyring::new(Some(KEY_B), &[KEY_A]).unwrap();
        assert_eq!(
            rotated.open(&sealed, "image:x/image_best").unwrap(),
            b"jpeg"
        );
        assert!(rotated.seal(b"jpeg", "c")[5] != sealed[5], "new key id");
    }

    #[test]
    fn a_wrong_key_or_a_moved_value_is_a_clear_error() {
        let sealed = Keyring::new(Some(KEY_A), &[])
            .unwrap()
            .seal(b"secret", "result:a");
        let other = Keyring::new(Some(KEY_B), &[]).unwrap();
        let error = other.open(&sealed, "result:a").unwrap_err().to_string();
        assert!(error.contains("key id"), "{error}");
        let right = Keyring::new(Some(KEY_A), &[]).unwrap();
        assert!(matches!(
            right.open(&sealed, "result:b"),
            Err(StoreError::Decrypt(_))
        ));
        let none = Keyring::default();
        assert!(none.open(&sealed, "result:a").is_err());
    }

    #[test]
    fn without_a_key_values_pass_through_and_old_plaintext_stays_readable() {
        let none = Keyring::default();
        assert_eq!(none.seal_text("{}", "c"), "{}");
        let keys = Keyring::new(Some(KEY_A), &[]).unwrap();
        assert_eq!(
            keys.open_text("{\"a\":1}".into(), "c").unwrap(),
            "{\"a\":1}"
        );
        assert_eq!(keys.open(b"\xff\xd8jpeg", "c").unwrap(), b"\xff\xd8jpeg");
    }

    #[test]
    fn a_clear_value_that_begins_with_the_magic_is_escaped_and_reads_back() {
        let none = Keyring::default();
        for plaintext in [&b"FIDE"[..], b"FIDE\x01\x63junk", b"FIDE\x00already"] {
            let stored = none.seal(plaintext, "body");
            assert_eq!(&stored[..5], b"FIDE\x00", "escaped");
            assert!(none.is_current(&stored, "body"));
            assert_eq!(none.open(&stored, "body").unwrap(), plaintext);
            let keys = Keyring::new(Some(KEY_A), &[]).unwrap();
            assert_eq!(keys.open(&stored, "body").unwrap(), plaintext);
            assert!(!keys.is_current(&stored, "body"), "to be sealed");
        }
        assert_eq!(none.seal(b"data=1", "body"), b"data=1", "the rest as it is");
    }

    #[test]
    fn a_journal_body_that_does_not_open_is_none_only_when_unverified() {
        let keys = Keyring::new(Some(KEY_B), &[]).unwrap();
        let sealed = Keyring::new(Some(KEY_A), &[])
            .unwrap()
            .seal(b"data=1", BODY_CONTEXT);
        let digest = hex::encode(Sha256::digest(b"data=1"));
        assert_eq!(keys.open_body(&sealed, &digest, false).unwrap(), None);
        assert!(matches!(
            keys.open_body(&sealed, &digest, true),
            Err(StoreError::Decrypt(_))
        ));
        // Stored in clear by an older version: its digest says so, whatever it begins with.
        let clear = b"FIDE\x01\x63junk";
        let digest = hex::encode(Sha256::digest(clear));
        assert_eq!(
            keys.open_body(clear, &digest, true).unwrap().as_deref(),
            Some(&clear[..])
        );
    }

    #[test]
    fn keys_must_be_32_bytes_of_base64() {
        assert!(Keyring::new(Some("c2hvcnQ="), &[]).is_err());
        assert!(Keyring::new(Some("not base64!"), &[]).is_err());
        assert!(Keyring::new(None, &["c2hvcnQ="]).is_err());
        assert!(format!("{:?}", Keyring::new(Some(KEY_A), &[]).unwrap()).contains("key_ids"));
    }
}
