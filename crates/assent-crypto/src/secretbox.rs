//! AES-256-GCM at-rest encryption.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::hmac;
use zeroize::Zeroizing;

use crate::{CryptoError, random_bytes};

const TAG_LEN: usize = 16;

/// AES-256-GCM with a random 96-bit nonce per message.
///
/// Sealed format: `nonce (12 bytes) || ciphertext || tag (16 bytes)`. The associated data
/// (`aad`) is authenticated but not stored: the same `aad` must be given to [`SecretBox::open`]
/// (use it to bind a ciphertext to its row / purpose).
///
/// Random nonces are safe for well under 2^32 messages per key.
pub struct SecretBox {
    key: Option<LessSafeKey>,
    /// HMAC-SHA256 under the same key, for [`SecretBox::key_check`] only.
    check: hmac::Key,
}

/// The fixed label whose MAC under the at-rest key is the key check.
const KEY_CHECK_LABEL: &[u8] = b"assent at-rest key check v1";

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBox { key: <redacted> }")
    }
}

impl SecretBox {
    /// A box using the given 256-bit key.
    pub fn new(key: &[u8; 32]) -> Self {
        // A 32-byte key is always valid for AES-256-GCM; should the library refuse it
        // anyway, every seal/open reports an internal error instead of panicking.
        let check = hmac::Key::new(hmac::HMAC_SHA256, key);
        let key = UnboundKey::new(&AES_256_GCM, key)
            .ok()
            .map(LessSafeKey::new);
        SecretBox { key, check }
    }

    /// A value that identifies this key without revealing it: HMAC-SHA256 of a fixed label
    /// under the key. A database stores it to tell, at start-up, whether it is given the key
    /// its data was sealed with.
    pub fn key_check(&self) -> Vec<u8> {
        hmac::sign(&self.check, KEY_CHECK_LABEL).as_ref().to_vec()
    }

    /// Whether `stored` is this key's [`SecretBox::key_check`] (compared in constant time).
    pub fn matches_key_check(&self, stored: &[u8]) -> bool {
        hmac::verify(&self.check, KEY_CHECK_LABEL, stored).is_ok()
    }

    /// A fresh random 256-bit key from the CSPRNG.
    pub fn generate_key() -> [u8; 32] {
        random_bytes::<32>()
    }

    fn key(&self) -> Result<&LessSafeKey, CryptoError> {
        self.key
            .as_ref()
            .ok_or_else(|| CryptoError::Internal("AES-256-GCM key unavailable".into()))
    }

    /// Encrypts and authenticates `plaintext`, binding `aad`.
    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let key = self.key()?;
        let nonce_bytes = random_bytes::<NONCE_LEN>();
        let mut out = Vec::with_capacity(NONCE_LEN + plaintext.len() + TAG_LEN);
        out.extend_from_slice(&nonce_bytes);
        out.extend_from_slice(plaintext);
        let tag = key
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce_bytes),
                Aad::from(aad),
                &mut out[NONCE_LEN..],
            )
            .map_err(|_| CryptoError::Internal("AES-256-GCM seal failed".into()))?;
        out.extend_from_slice(tag.as_ref());
        Ok(out)
    }

    /// Verifies and decrypts a blob produced by [`SecretBox::seal`] with the same `aad`.
    pub fn open(&self, sealed: &[u8], aad: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let key = self.key()?;
        if sealed.len() < NONCE_LEN + TAG_LEN {
            return Err(CryptoError::Decrypt);
        }
        let (nonce_bytes, rest) = sealed.split_at(NONCE_LEN);
        let nonce =
            Nonce::try_assume_unique_for_key(nonce_bytes).map_err(|_| CryptoError::Decrypt)?;
        let mut buf = Zeroizing::new(rest.to_vec());
        let plain_len = key
            .open_in_place(nonce, Aad::from(aad), &mut buf)
            .map_err(|_| CryptoError::Decrypt)?
            .len();
        buf.truncate(plain_len);
        Ok(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip() {
        let b = SecretBox::new(&SecretBox::generate_key());
        let sealed = b.seal(b"top secret", b"row:1").unwrap();
        assert_eq!(sealed.len(), 12 + 10 + 16);
        assert_ne!(&sealed[12..22], b"top secret");
        let opened = b.open(&sealed, b"row:1").unwrap();
        assert_eq!(opened.as_slice(), b"top secret");
        // Empty plaintext works too.
        let sealed = b.seal(b"", b"").unwrap();
        assert_eq!(b.open(&sealed, b"").unwrap().as_slice(), b"");
    }

    #[test]
    fn nonces_are_random() {
        let b = SecretBox::new(&[7u8; 32]);
        let s1 = b.seal(b"same", b"").unwrap();
        let s2 = b.seal(b"same", b"").unwrap();
        assert_ne!(s1, s2);
        assert_ne!(s1[..12], s2[..12]);
    }

    #[test]
    fn wrong_key_fails() {
        let a = SecretBox::new(&SecretBox::generate_key());
        let b = SecretBox::new(&SecretBox::generate_key());
        let sealed = a.seal(b"data", b"aad").unwrap();
        assert_eq!(b.open(&sealed, b"aad").unwrap_err(), CryptoError::Decrypt);
    }

    #[test]
    fn wrong_aad_fails() {
        let a = SecretBox::new(&SecretBox::generate_key());
        let sealed = a.seal(b"data", b"row:1").unwrap();
        assert_eq!(a.open(&sealed, b"row:2").unwrap_err(), CryptoError::Decrypt);
        assert_eq!(a.open(&sealed, b"").unwrap_err(), CryptoError::Decrypt);
    }

    #[test]
    fn flipped_byte_fails_everywhere() {
        let a = SecretBox::new(&SecretBox::generate_key());
        let sealed = a.seal(b"some data here", b"aad").unwrap();
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 0x01;
            assert_eq!(
                a.open(&bad, b"aad").unwrap_err(),
                CryptoError::Decrypt,
                "byte {i}"
            );
        }
    }

    #[test]
    fn truncated_fails() {
        let a = SecretBox::new(&SecretBox::generate_key());
        let sealed = a.seal(b"x", b"").unwrap();
        for n in 0..sealed.len() {
            assert_eq!(a.open(&sealed[..n], b"").unwrap_err(), CryptoError::Decrypt);
        }
    }

    #[test]
    fn key_check_identifies_the_key_without_revealing_it() {
        let key = SecretBox::generate_key();
        let a = SecretBox::new(&key);
        let check = a.key_check();
        assert_eq!(check.len(), 32);
        assert_ne!(check.as_slice(), key.as_slice());
        assert_eq!(SecretBox::new(&key).key_check(), check, "deterministic");
        assert!(a.matches_key_check(&check));
        let b = SecretBox::new(&SecretBox::generate_key());
        assert!(!b.matches_key_check(&check));
        assert!(!a.matches_key_check(&check[..31]));
        assert!(!a.matches_key_check(b""));
    }

    #[test]
    fn debug_redacts() {
        let a = SecretBox::new(&[0x41; 32]);
        let s = format!("{a:?}");
        assert!(s.contains("redacted"));
    }
}
