//! `[encryption]`: the keys of encryption at rest (AES-256-GCM) of raw results, journal
//! bodies and images; off without a key.
//!
//! Rules: each key is base64 of 32 bytes (checked by building the [`crate::store::Keyring`]
//! it makes); empty entries of `previous_keys` are dropped. Invariant: an error names the key,
//! never its value, and no `Debug` output shows one.

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use super::{ConfigError, Section, non_empty, secrets};

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

/// `[encryption]` as written, before [`RawEncryption::validate`].
#[derive(Deserialize, Serialize, Default)]
pub(super) struct RawEncryption {
    key: Option<String>,
    #[serde(default)]
    previous_keys: Vec<String>,
}

impl RawEncryption {
    pub(super) fn validate(self, at: Section) -> Result<EncryptionSettings, ConfigError> {
        let encryption = EncryptionSettings {
            key: non_empty(self.key).map(SecretString::from),
            previous_keys: secrets(self.previous_keys),
        };
        if let Err(e) =
            crate::store::Keyring::new(encryption.key.as_ref().map(|k| k.expose_secret()), &[])
        {
            return Err(at.invalid("key", e.to_string()));
        }
        for key in &encryption.previous_keys {
            if let Err(e) = crate::store::Keyring::new(None, &[key.expose_secret()]) {
                return Err(at.invalid("previous_keys", e.to_string()));
            }
        }
        Ok(encryption)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::load_error;

    #[test]
    fn a_bad_encryption_key_names_the_key_but_never_echoes_it() {
        for (var, key) in [
            ("APP__ENCRYPTION__KEY", "c2hvcnQtc2VjcmV0"),
            ("APP__ENCRYPTION__PREVIOUS_KEYS", "c2hvcnQtc2VjcmV0"),
        ] {
            let error = load_error(&[(var, key)]);
            assert!(error.contains(var), "{error}");
            assert!(error.contains("32 bytes"), "{error}");
            assert!(!error.contains(key), "{error}");
        }
    }
}
