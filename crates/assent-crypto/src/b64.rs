//! Strict base64url (no padding) helpers.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::CryptoError;

pub(crate) fn encode(data: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(data)
}

/// Decodes base64url without padding; `what` names the field for the error message.
pub(crate) fn decode(s: &str, what: &str) -> Result<Vec<u8>, CryptoError> {
    URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|_| CryptoError::Malformed(format!("{what} is not valid base64url")))
}
