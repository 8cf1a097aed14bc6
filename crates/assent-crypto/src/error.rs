//! The crate's error type. Messages never contain secret material (keys, plaintexts,
//! secrets); untrusted strings echoed back (such as a token's `alg`) are truncated.

/// Errors returned by this crate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// The input (token, key, JWK set, sealed blob) is structurally invalid.
    #[error("malformed input: {0}")]
    Malformed(String),
    /// The algorithm is unknown, forbidden (`none`, or symmetric where asymmetric is
    /// expected) or not in the caller's allowed list.
    #[error("unsupported algorithm: {0}")]
    UnsupportedAlgorithm(String),
    /// The signature / MAC did not verify.
    #[error("signature verification failed")]
    BadSignature,
    /// The selected key does not fit the token's algorithm.
    #[error("key does not match the token's algorithm")]
    KeyMismatch,
    /// No key could be selected for the token.
    #[error("no matching key found")]
    NoMatchingKey,
    /// Authenticated decryption failed (wrong key, wrong associated data, or tampering).
    #[error("decryption failed")]
    Decrypt,
    /// An unexpected failure inside the crypto library.
    #[error("internal crypto error: {0}")]
    Internal(String),
}

/// Renders an untrusted string for inclusion in an error message: at most 40
/// characters, control characters replaced.
pub(crate) fn sanitize(s: &str) -> String {
    let mut out: String = s
        .chars()
        .take(40)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if s.chars().count() > 40 {
        out.push('…');
    }
    out
}
