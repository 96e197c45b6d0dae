//! OAuth tokens at rest: AES-256-GCM under the `TOKEN_ENCRYPTION_KEY` secret.
//!
//! Sealed form: `"v1:" + base64(nonce || ciphertext || tag)`. The caller supplies the 12-byte
//! nonce from the platform's CSPRNG (`crypto.getRandomValues`) because this crate has no
//! randomness source. The associated data (e.g. `"{connection_id}/refresh_token"`, see
//! [`associated_data`]) is authenticated but not stored, so a sealed value copied to another
//! connection or field fails to open instead of silently becoming someone else's token.

use std::fmt;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use crate::Secret;

/// Name of the secret holding the key (must match `wrangler/.dev.vars.example`).
pub const TOKEN_ENCRYPTION_KEY: &str = "TOKEN_ENCRYPTION_KEY";

/// Prefix of the current sealed format; a new format gets a new prefix so old rows stay readable.
const VERSION_PREFIX: &str = "v1:";
/// AES-GCM standard nonce length.
const NONCE_LEN: usize = 12;
/// AES-GCM tag length.
const TAG_LEN: usize = 16;
/// AES-256 key length.
const KEY_LEN: usize = 32;

/// Why a key could not be loaded or a sealed token could not be opened. Messages never
/// contain the key, the token or the sealed text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CipherError {
    /// The key secret is unset or empty.
    #[error("TOKEN_ENCRYPTION_KEY is not set; create one with `openssl rand -base64 32`")]
    MissingKey,
    /// The key is not base64 (or 64 hex digits) of exactly 32 bytes.
    #[error(
        "TOKEN_ENCRYPTION_KEY must be 32 bytes in base64 (or 64 hex digits); \
         create one with `openssl rand -base64 32`"
    )]
    MalformedKey,
    /// The sealed value is not in the `v1:` format, or fails authentication (tampered, sealed
    /// under another key, or for other associated data).
    #[error("sealed token is corrupt, or was sealed under another key or for another record")]
    Corrupt,
}

/// Seals and opens tokens with one AES-256-GCM key. `Debug` never prints the key.
#[derive(Clone)]
pub struct TokenCipher {
    aead: Aes256Gcm,
}

impl fmt::Debug for TokenCipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenCipher([redacted])")
    }
}

impl TokenCipher {
    /// Loads the key from the `TOKEN_ENCRYPTION_KEY` secret: standard base64 (what
    /// `openssl rand -base64 32` prints) or 64 hex digits, of exactly 32 bytes.
    pub fn from_base64_key(key: &Secret) -> Result<TokenCipher, CipherError> {
        let text = key.expose().trim();
        if text.is_empty() {
            return Err(CipherError::MissingKey);
        }
        // A 32-byte key is 44 base64 characters, so a 64-character hex string cannot be
        // mistaken for one: try hex only at that length.
        let bytes = if text.len() == 2 * KEY_LEN && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            hex::decode(text).map_err(|_| CipherError::MalformedKey)?
        } else {
            STANDARD
                .decode(text)
                .map_err(|_| CipherError::MalformedKey)?
        };
        if bytes.len() != KEY_LEN {
            return Err(CipherError::MalformedKey);
        }
        let aead = Aes256Gcm::new_from_slice(&bytes).map_err(|_| CipherError::MalformedKey)?;
        Ok(Self { aead })
    }

    /// Encrypts `plaintext`, binding it to `associated_data`. `nonce` must be fresh random
    /// bytes for every call: reusing a nonce under one key breaks GCM. With random nonces one
    /// key is good for 2^32 seals (NIST SP 800-38D §8.3), far beyond a token store's needs.
    pub fn seal(&self, plaintext: &Secret, associated_data: &str, nonce: [u8; 12]) -> String {
        let payload = Payload {
            msg: plaintext.expose().as_bytes(),
            aad: associated_data.as_bytes(),
        };
        // AES-GCM refuses only messages over 2^36 bytes, which no token reaches. Should it
        // ever happen, an empty body is stored: it fails to open (`Corrupt`) rather than
        // leaving anything readable.
        let ciphertext = self
            .aead
            .encrypt(Nonce::from_slice(&nonce), payload)
            .unwrap_or_default();
        let mut sealed = Vec::with_capacity(NONCE_LEN + ciphertext.len());
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(&ciphertext);
        format!("{VERSION_PREFIX}{}", STANDARD.encode(sealed))
    }

    /// Decrypts a value made by [`TokenCipher::seal`] with the same key and associated data.
    pub fn open(&self, sealed: &str, associated_data: &str) -> Result<Secret, CipherError> {
        let encoded = sealed
            .strip_prefix(VERSION_PREFIX)
            .ok_or(CipherError::Corrupt)?;
        let bytes = STANDARD.decode(encoded).map_err(|_| CipherError::Corrupt)?;
        if bytes.len() < NONCE_LEN + TAG_LEN {
            return Err(CipherError::Corrupt);
        }
        let (nonce, ciphertext) = bytes.split_at(NONCE_LEN);
        let payload = Payload {
            msg: ciphertext,
            aad: associated_data.as_bytes(),
        };
        let plaintext = self
            .aead
            .decrypt(Nonce::from_slice(nonce), payload)
            .map_err(|_| CipherError::Corrupt)?;
        String::from_utf8(plaintext)
            .map(Secret::new)
            .map_err(|_| CipherError::Corrupt)
    }
}

/// The associated data for one token field of one connection, e.g.
/// `associated_data("keap_0123…", "refresh_token")` = `"keap_0123…/refresh_token"`.
pub fn associated_data(connection_id: &str, field: &str) -> String {
    format!("{connection_id}/{field}")
}

#[cfg(test)]
mod tests {
    use super::*;

    // `openssl rand -base64 32` output; a test key, used nowhere else.
    const KEY_B64: &str = "q8pQXdYk7m2fO3tWn1bZr5uJc9eHs0gLx4vAy6iTKwE=";
    const NONCE_A: [u8; 12] = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12];
    const NONCE_B: [u8; 12] = [12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1];
    const TOKEN: &str = "ZbQ9Vx3kPq7RtY2sLm8NwE4jHc6Gf1Ad";

    fn cipher() -> TokenCipher {
        TokenCipher::from_base64_key(&Secret::new(KEY_B64)).expect("valid test key")
    }

    #[test]
    fn round_trips() {
        let aad = associated_data("keap_0123", "refresh_token");
        let sealed = cipher().seal(&Secret::new(TOKEN), &aad, NONCE_A);
        assert!(sealed.starts_with("v1:"));
        assert_eq!(cipher().open(&sealed, &aad).expect("opens").expose(), TOKEN);
        let empty = cipher().seal(&Secret::new(""), &aad, NONCE_A);
        assert_eq!(cipher().open(&empty, &aad).expect("opens").expose(), "");
    }

    #[test]
    fn other_associated_data_fails() {
        let sealed = cipher().seal(&Secret::new(TOKEN), "keap_0123/refresh_token", NONCE_A);
        assert_eq!(
            cipher().open(&sealed, "keap_0123/access_token"),
            Err(CipherError::Corrupt)
        );
        assert_eq!(
            cipher().open(&sealed, "keap_9999/refresh_token"),
            Err(CipherError::Corrupt)
        );
    }

    #[test]
    fn tampering_fails() {
        let sealed = cipher().seal(&Secret::new(TOKEN), "aad", NONCE_A);
        let mut bytes = STANDARD
            .decode(sealed.trim_start_matches("v1:"))
            .expect("base64");
        for index in [0, NONCE_LEN, bytes.len() - 1] {
            bytes[index] ^= 0x01;
            let tampered = format!("v1:{}", STANDARD.encode(&bytes));
            assert_eq!(cipher().open(&tampered, "aad"), Err(CipherError::Corrupt));
            bytes[index] ^= 0x01;
        }
        let truncated = format!("v1:{}", STANDARD.encode(&bytes[..bytes.len() - 1]));
        assert_eq!(cipher().open(&truncated, "aad"), Err(CipherError::Corrupt));
        for garbage in [
            "",
            "v1:",
            "v1:!!!",
            "v2:AAAA",
            TOKEN,
            "v1:AAAAAAAAAAAAAAAAAAAAAA==",
        ] {
            assert_eq!(cipher().open(garbage, "aad"), Err(CipherError::Corrupt));
        }
    }

    #[test]
    fn another_key_cannot_open() {
        let sealed = cipher().seal(&Secret::new(TOKEN), "aad", NONCE_A);
        let other = TokenCipher::from_base64_key(&Secret::new(
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        ))
        .expect("valid key");
        assert_eq!(other.open(&sealed, "aad"), Err(CipherError::Corrupt));
    }

    #[test]
    fn sealed_text_hides_the_plaintext() {
        let sealed = cipher().seal(&Secret::new(TOKEN), "aad", NONCE_A);
        assert!(!sealed.contains(TOKEN));
        assert!(!sealed.contains(&STANDARD.encode(TOKEN)));
        let raw = STANDARD
            .decode(sealed.trim_start_matches("v1:"))
            .expect("base64");
        assert!(!raw.windows(TOKEN.len()).any(|w| w == TOKEN.as_bytes()));
        assert_eq!(raw.len(), NONCE_LEN + TOKEN.len() + TAG_LEN);
    }

    #[test]
    fn different_nonces_give_different_seals() {
        let a = cipher().seal(&Secret::new(TOKEN), "aad", NONCE_A);
        let b = cipher().seal(&Secret::new(TOKEN), "aad", NONCE_B);
        assert_ne!(a, b);
        assert_eq!(cipher().open(&b, "aad").expect("opens").expose(), TOKEN);
    }

    #[test]
    fn key_errors_name_the_variable_but_not_the_value() {
        assert_eq!(
            TokenCipher::from_base64_key(&Secret::new("")).map(|_| ()),
            Err(CipherError::MissingKey)
        );
        assert_eq!(
            TokenCipher::from_base64_key(&Secret::new("  \n")).map(|_| ()),
            Err(CipherError::MissingKey)
        );
        let bad_keys = [
            "not base64 at all!",
            "c2hvcnQ=",                                     // 5 bytes
            "q8pQXdYk7m2fO3tWn1bZr5uJc9eHs0gLx4vAy6iTKwEA", // 33 bytes, no padding
            "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeZZ",
        ];
        for bad in bad_keys {
            let error = TokenCipher::from_base64_key(&Secret::new(bad)).map(|_| ());
            assert_eq!(error, Err(CipherError::MalformedKey), "{bad}");
        }
        for error in [CipherError::MissingKey, CipherError::MalformedKey] {
            let message = error.to_string();
            assert!(message.contains(TOKEN_ENCRYPTION_KEY));
            assert!(message.contains("openssl rand -base64 32"));
        }
        let message = CipherError::MalformedKey.to_string();
        assert!(!message.contains("not base64"));
    }

    #[test]
    fn accepts_hex_keys_and_surrounding_whitespace() {
        let raw = STANDARD.decode(KEY_B64).expect("base64");
        let from_hex =
            TokenCipher::from_base64_key(&Secret::new(hex::encode(&raw))).expect("hex key");
        let from_b64 =
            TokenCipher::from_base64_key(&Secret::new(format!("{KEY_B64}\n"))).expect("b64 key");
        let sealed = from_hex.seal(&Secret::new(TOKEN), "aad", NONCE_A);
        assert_eq!(
            from_b64.open(&sealed, "aad").expect("same key").expose(),
            TOKEN
        );
    }

    #[test]
    fn debug_hides_the_key() {
        let printed = format!("{:?}", cipher());
        assert_eq!(printed, "TokenCipher([redacted])");
    }
}
