//! A strict `application/x-www-form-urlencoded` extractor for the OAuth endpoints: a repeated
//! parameter (RFC 6749 §3.1), bytes that are not UTF-8 (raw or after percent-decoding), the
//! wrong content type or an oversized body are `invalid_request` — never silently repaired.

use std::collections::HashMap;

use assent_core::OAuthError;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{StatusCode, header};

use crate::error::OAuthResponseError;

/// Largest accepted form body. Real CIBA requests are a few KiB (a signed request object,
/// authorization details); anything bigger is refused with 413.
pub const MAX_FORM_BYTES: usize = 64 * 1024;

#[derive(Clone, Debug, Default)]
pub struct OAuthForm {
    params: HashMap<String, String>,
}

impl OAuthForm {
    /// The value, with an empty value treated as absent (RFC 6749 §3.1).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.params
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }
    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.params
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, _)| k.as_str())
    }

    pub fn parse(body: &[u8]) -> Result<Self, OAuthError> {
        let mut params = HashMap::new();
        for pair in body.split(|b| *b == b'&').filter(|p| !p.is_empty()) {
            let (name, value) = match pair.iter().position(|b| *b == b'=') {
                Some(i) => (&pair[..i], &pair[i + 1..]),
                None => (pair, &[][..]),
            };
            let name = decode_component(name)?;
            let value = decode_component(value)?;
            if params.insert(name.clone(), value).is_some() {
                return Err(OAuthError::invalid_request(format!(
                    "The {} parameter must not be repeated.",
                    safe_name(&name)
                )));
            }
        }
        Ok(OAuthForm { params })
    }

    #[cfg(test)]
    pub fn from_pairs(pairs: &[(&str, &str)]) -> Self {
        OAuthForm {
            params: pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        }
    }
}

/// Parameter names are echoed in error sentences only when they are plain identifiers.
fn safe_name(name: &str) -> &str {
    if !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        name
    } else {
        "same"
    }
}

fn decode_component(raw: &[u8]) -> Result<String, OAuthError> {
    strict_decode(raw).ok_or_else(|| {
        OAuthError::invalid_request("The request body is not valid form-encoded UTF-8.")
    })
}

/// One `application/x-www-form-urlencoded` name or value: `+` is a space, `%XX` exactly two hex
/// digits, and the bytes, raw and decoded, UTF-8 — or `None`. Shared by the OAuth forms and the
/// `/v1` query strings, so both are equally strict.
pub fn strict_decode(raw: &[u8]) -> Option<String> {
    if std::str::from_utf8(raw).is_err() {
        return None;
    }
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = raw.get(i + 1..i + 3)?;
                // Exactly two hex digits: from_str_radix alone would take "%+4" as 0x04.
                if !hex.iter().all(u8::is_ascii_hexdigit) {
                    return None;
                }
                let s = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(s, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

impl<S: Send + Sync> FromRequest<S> for OAuthForm {
    type Rejection = OAuthResponseError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let mime = content_type.split(';').next().unwrap_or("").trim();
        if !mime.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
            return Err(OAuthError::invalid_request(
                "The request body must be application/x-www-form-urlencoded.",
            )
            .into());
        }
        let body = Bytes::from_request(req, state).await.map_err(|_| {
            OAuthResponseError::new(OAuthError::invalid_request(
                "The request body is too large or could not be read.",
            ))
            .with_status(StatusCode::PAYLOAD_TOO_LARGE)
        })?;
        Ok(OAuthForm::parse(&body)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rejects() {
        let f = OAuthForm::parse(b"scope=openid+email&login_hint=a%40b.c&empty=").unwrap();
        assert_eq!(f.get("scope"), Some("openid email"));
        assert_eq!(f.get("login_hint"), Some("a@b.c"));
        assert_eq!(f.get("empty"), None);
        assert!(OAuthForm::parse(b"a=1&a=2").is_err());
        assert!(OAuthForm::parse(b"a=%ff").is_err());
        assert!(OAuthForm::parse(b"a=%e2%82").is_err());
        assert!(OAuthForm::parse(b"a=%zz").is_err());
        assert!(OAuthForm::parse(b"a=%4").is_err());
        assert!(OAuthForm::parse(b"a=%+4").is_err());
        assert!(OAuthForm::parse(b"a=%-1").is_err());
        assert!(OAuthForm::parse(&[b'a', b'=', 0xff]).is_err());
        assert_eq!(
            OAuthForm::parse(b"m=%E2%82%AC5").unwrap().get("m"),
            Some("€5")
        );
    }
}
