//! Digests, random tokens, constant-time comparison and HMAC helpers.

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use aws_lc_rs::{digest, hmac};
use subtle::ConstantTimeEq;

use crate::{SigningAlg, b64};

/// OIDC `at_hash` (and `c_hash`/`s_hash`): the left half of the hash of the ASCII token,
/// base64url without padding. SHA-256 for *256, SHA-384 for *384, SHA-512 for *512 and
/// for EdDSA (Ed25519).
pub fn at_hash(access_token: &str, alg: SigningAlg) -> String {
    let algorithm = match alg {
        SigningAlg::RS256 | SigningAlg::PS256 | SigningAlg::ES256 => &digest::SHA256,
        SigningAlg::RS384 | SigningAlg::PS384 | SigningAlg::ES384 => &digest::SHA384,
        SigningAlg::RS512 | SigningAlg::PS512 | SigningAlg::EdDSA => &digest::SHA512,
    };
    let d = digest::digest(algorithm, access_token.as_bytes());
    let bytes = d.as_ref();
    b64::encode(&bytes[..bytes.len() / 2])
}

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    let d = digest::digest(&digest::SHA256, data);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// SHA-256 of `data`, base64url without padding (e.g. PKCE S256, `x5t#S256`).
pub fn sha256_b64url(data: &[u8]) -> String {
    b64::encode(&sha256(data))
}

/// Fills `dest` from the system CSPRNG.
///
/// AWS-LC's RNG does not fail in practice (it aborts internally on an unrecoverable
/// entropy failure). Should the binding ever report a failure we abort too: returning
/// predictable bytes for tokens or keys would be far worse than stopping the process.
fn fill(dest: &mut [u8]) {
    if SystemRandom::new().fill(dest).is_err() {
        std::process::abort();
    }
}

/// `nbytes` bytes from the CSPRNG, base64url without padding (only `[A-Za-z0-9_-]`).
pub fn random_token(nbytes: usize) -> String {
    let mut buf = zeroize::Zeroizing::new(vec![0u8; nbytes]);
    fill(&mut buf);
    b64::encode(&buf)
}

/// `N` bytes from the CSPRNG.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    fill(&mut out);
    out
}

/// Constant-time equality. Different lengths give `false` without comparing contents
/// (the length itself is not secret).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.ct_eq(b).into()
}

/// HMAC-SHA256 of `msg` under `key`, lowercase hex.
pub fn hmac_sha256_hex(key: &[u8], msg: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, key);
    let tag = hmac::sign(&key, msg);
    hex(tag.as_ref())
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    #[test]
    fn at_hash_oidc_example() {
        // The access token of the OpenID Connect Core 1.0 examples. The expected value was
        // computed independently (Python hashlib: urlsafe_b64(sha256(t)[:16])).
        let token = "jHkWEdUXMU1BwAsC4vtUsZwnNzJnmM4Ax7DmUhDvtyM";
        let h = at_hash(token, SigningAlg::RS256);
        assert_eq!(h, "9Xmhwu_6RRJ67XYIo83eVA");
        assert_eq!(h.len(), 22);

        // Manual computation.
        let d = digest::digest(&digest::SHA256, token.as_bytes());
        let manual = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&d.as_ref()[..16]);
        assert_eq!(h, manual);
        assert_eq!(at_hash(token, SigningAlg::ES256), manual);
        assert_eq!(at_hash(token, SigningAlg::PS256), manual);
    }

    #[test]
    fn at_hash_lengths_and_families() {
        let token = "some-access-token";
        let h384 = at_hash(token, SigningAlg::ES384);
        assert_eq!(h384.len(), 32);
        let d = digest::digest(&digest::SHA384, token.as_bytes());
        assert_eq!(h384, b64::encode(&d.as_ref()[..24]));
        assert_eq!(at_hash(token, SigningAlg::RS384), h384);

        let h512 = at_hash(token, SigningAlg::EdDSA);
        assert_eq!(h512.len(), 43);
        let d = digest::digest(&digest::SHA512, token.as_bytes());
        assert_eq!(h512, b64::encode(&d.as_ref()[..32]));
        assert_eq!(at_hash(token, SigningAlg::RS512), h512);
        assert_eq!(at_hash(token, SigningAlg::PS512), h512);
    }

    #[test]
    fn sha256_known_vector() {
        // FIPS 180-2 "abc".
        assert_eq!(
            hex(&sha256(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        // RFC 7636 Appendix B PKCE S256 example.
        assert_eq!(
            sha256_b64url(b"dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn random_token_shape() {
        let a = random_token(32);
        let b = random_token(32);
        assert_eq!(a.len(), 43);
        assert_eq!(b.len(), 43);
        assert_ne!(a, b);
        assert!(
            a.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
        assert_eq!(random_token(0), "");
        assert_eq!(random_token(16).len(), 22);
    }

    #[test]
    fn random_bytes_differ() {
        let a: [u8; 32] = random_bytes();
        let b: [u8; 32] = random_bytes();
        assert_ne!(a, b);
        assert_ne!(a, [0u8; 32]);
    }

    #[test]
    fn ct_eq_cases() {
        assert!(ct_eq(b"", b""));
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"abcd"));
        assert!(!ct_eq(b"abcd", b"abc"));
        assert!(!ct_eq(b"", b"a"));
    }

    #[test]
    fn hmac_sha256_rfc4231_case2() {
        assert_eq!(
            hmac_sha256_hex(b"Jefe", b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
