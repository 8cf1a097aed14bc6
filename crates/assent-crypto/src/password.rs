//! argon2id password hashing (PHC string format).

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

use crate::{CryptoError, random_bytes};

/// The hasher used for new hashes: argon2id v0x13 with the argon2 crate's default
/// parameters (m = 19 MiB, t = 2, p = 1; the OWASP recommendation).
fn hasher() -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, Params::default())
}

/// Hashes `password` with argon2id and a random 128-bit salt; returns the PHC string
/// (`$argon2id$v=19$m=...,t=...,p=...$salt$hash`).
pub fn hash_password(password: &str) -> Result<String, CryptoError> {
    let salt = SaltString::encode_b64(&random_bytes::<16>())
        .map_err(|_| CryptoError::Internal("salt encoding failed".into()))?;
    let hash = hasher()
        .hash_password(password.as_bytes(), &salt)
        .map_err(|_| CryptoError::Internal("password hashing failed".into()))?;
    Ok(hash.to_string())
}

/// Verifies `password` against a PHC string produced by [`hash_password`]. Returns false on
/// any mismatch, on a malformed hash, and on hashes that are not argon2id.
pub fn verify_password(password: &str, phc: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(phc) else {
        return false;
    };
    if parsed.algorithm != argon2::ARGON2ID_IDENT {
        return false;
    }
    hasher()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_and_verify() {
        let h = hash_password("correct horse battery staple").unwrap();
        assert!(h.starts_with("$argon2id$v=19$"), "{h}");
        assert!(verify_password("correct horse battery staple", &h));
        assert!(!verify_password("correct horse battery stapl", &h));
        assert!(!verify_password("", &h));
    }

    #[test]
    fn salts_differ() {
        let a = hash_password("pw").unwrap();
        let b = hash_password("pw").unwrap();
        assert_ne!(a, b);
        assert!(verify_password("pw", &a));
        assert!(verify_password("pw", &b));
    }

    #[test]
    fn malformed_hash_is_false() {
        assert!(!verify_password("pw", ""));
        assert!(!verify_password("pw", "not a hash"));
        assert!(!verify_password(
            "pw",
            "$argon2id$v=19$m=19456,t=2,p=1$garbage"
        ));
        // A valid argon2i hash is refused (we only accept argon2id).
        let h = hash_password("pw").unwrap();
        let argon2i = h.replacen("$argon2id$", "$argon2i$", 1);
        assert!(!verify_password("pw", &argon2i));
    }
}
