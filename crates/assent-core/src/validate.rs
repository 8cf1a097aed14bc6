//! Parameter rules of the backchannel authentication request (CIBA §7.1, Assent spec §3.2),
//! each a plain function with a narrow signature.

use unicode_general_category::{GeneralCategory, get_general_category};

use crate::error::{OAuthError, OAuthErrorCode};

/// Scopes Assent knows. `openid` is required for CIBA; `offline_access` asks for a refresh token.
pub const SCOPES_SUPPORTED: &[&str] = &["openid", "profile", "email", "phone", "offline_access"];

/// Claims Assent may put in ID tokens and userinfo.
pub const CLAIMS_SUPPORTED: &[&str] = &[
    "sub",
    "iss",
    "aud",
    "exp",
    "iat",
    "auth_time",
    "acr",
    "amr",
    "at_hash",
    "env",
    "name",
    "given_name",
    "family_name",
    "preferred_username",
    "email",
    "phone_number",
];

/// CIBA §7.1 `scope`: present, contains `openid`, every value known. A missing `openid` is
/// reported before unknown values (§3.2). Returns the values in the order sent, deduplicated.
pub fn parse_ciba_scope(scope: Option<&str>) -> Result<Vec<String>, OAuthError> {
    let scope = scope.unwrap_or("");
    let mut values: Vec<String> = Vec::new();
    for v in scope.split(' ').filter(|s| !s.is_empty()) {
        if !values.iter().any(|x| x == v) {
            values.push(v.to_owned());
        }
    }
    if values.is_empty() {
        return Err(OAuthError::invalid_request(
            "The scope parameter is required and must contain openid.",
        ));
    }
    if !values.iter().any(|v| v == "openid") {
        return Err(OAuthError::invalid_request(
            "The scope parameter must contain openid.",
        ));
    }
    if values
        .iter()
        .any(|v| !SCOPES_SUPPORTED.contains(&v.as_str()))
    {
        return Err(OAuthError::new(
            OAuthErrorCode::InvalidScope,
            "The scope parameter contains an unsupported value.",
        ));
    }
    Ok(values)
}

/// Characters allowed in a binding message (§3.2): general categories L, M, N, P, S and Zs,
/// plus ZERO WIDTH JOINER and the variation selectors, so composed emoji work.
fn binding_char_allowed(c: char) -> bool {
    use GeneralCategory::*;
    if c == '\u{200D}'
        || ('\u{FE00}'..='\u{FE0F}').contains(&c)
        || ('\u{E0100}'..='\u{E01EF}').contains(&c)
    {
        return true;
    }
    matches!(
        get_general_category(c),
        UppercaseLetter
            | LowercaseLetter
            | TitlecaseLetter
            | ModifierLetter
            | OtherLetter
            | NonspacingMark
            | SpacingMark
            | EnclosingMark
            | DecimalNumber
            | LetterNumber
            | OtherNumber
            | ConnectorPunctuation
            | DashPunctuation
            | OpenPunctuation
            | ClosePunctuation
            | InitialPunctuation
            | FinalPunctuation
            | OtherPunctuation
            | MathSymbol
            | CurrencySymbol
            | ModifierSymbol
            | OtherSymbol
            | SpaceSeparator
    )
}

/// CIBA §7.1 `binding_message`: empty is absent; otherwise at most `max_len` Unicode scalar
/// values of the allowed categories, else `invalid_binding_message`.
pub fn validate_binding_message(
    message: Option<&str>,
    max_len: i64,
) -> Result<Option<String>, OAuthError> {
    let Some(message) = message.filter(|m| !m.is_empty()) else {
        return Ok(None);
    };
    let len = message.chars().count();
    if i64::try_from(len).unwrap_or(i64::MAX) > max_len {
        return Err(OAuthError::new(
            OAuthErrorCode::InvalidBindingMessage,
            format!("The binding_message must not be longer than {max_len} characters."),
        ));
    }
    if !message.chars().all(binding_char_allowed) {
        return Err(OAuthError::new(
            OAuthErrorCode::InvalidBindingMessage,
            "The binding_message contains characters that cannot be displayed.",
        ));
    }
    Ok(Some(message.to_owned()))
}

/// CIBA §7.1 `requested_expiry`: a positive integer, clamped to `max`.
pub fn parse_requested_expiry(
    value: Option<&str>,
    default: i64,
    max: i64,
) -> Result<i64, OAuthError> {
    let Some(v) = value else {
        return Ok(default.min(max));
    };
    let bad = || {
        OAuthError::invalid_request("The requested_expiry parameter must be a positive integer.")
    };
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    // Saturate absurdly long digit strings instead of failing: they are clamped anyway.
    let n: i64 = v.parse().unwrap_or(i64::MAX);
    if n <= 0 {
        return Err(bad());
    }
    Ok(n.min(max))
}

/// At most this many characters in one `acr_values` value (§3.2).
pub const ACR_VALUE_MAX_LEN: usize = 256;
/// At most this many `acr_values` values (§3.2).
pub const ACR_VALUES_MAX_COUNT: usize = 16;
/// At most this many characters in `acr_values` in all (§3.2).
pub const ACR_VALUES_MAX_TOTAL: usize = 1024;

/// RFC 3986 characters: unreserved, reserved (gen-delims and sub-delims) and `%` of a
/// percent-encoding. No space, quote, `<`, `>`, backslash, `^`, backtick, `{`, `|`, `}`,
/// controls or non-ASCII: whatever a value holds can be copied into an ID token and shown in
/// an admin screen without escaping surprises.
fn uri_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~:/?#[]@!$&'()*+,;=%".contains(&b)
}

/// CIBA §7.1 `acr_values`: space-separated values of URI characters, at most
/// [`ACR_VALUE_MAX_LEN`] characters each, [`ACR_VALUES_MAX_COUNT`] values and
/// [`ACR_VALUES_MAX_TOTAL`] characters in all (§3.2); otherwise `invalid_request`. Returns the
/// normalised string (single spaces) or `None` when empty.
pub fn parse_acr_values(value: Option<&str>) -> Result<Option<String>, OAuthError> {
    let Some(value) = value else {
        return Ok(None);
    };
    if value.len() > ACR_VALUES_MAX_TOTAL {
        return Err(OAuthError::invalid_request(format!(
            "The acr_values parameter must not be longer than {ACR_VALUES_MAX_TOTAL} characters."
        )));
    }
    let values: Vec<&str> = value.split(' ').filter(|s| !s.is_empty()).collect();
    if values.len() > ACR_VALUES_MAX_COUNT {
        return Err(OAuthError::invalid_request(format!(
            "The acr_values parameter must not hold more than {ACR_VALUES_MAX_COUNT} values."
        )));
    }
    for v in &values {
        if v.len() > ACR_VALUE_MAX_LEN {
            return Err(OAuthError::invalid_request(format!(
                "Each acr_values value must not be longer than {ACR_VALUE_MAX_LEN} characters."
            )));
        }
        if !v.bytes().all(uri_char) {
            return Err(OAuthError::invalid_request(
                "The acr_values parameter may hold only URI characters (RFC 3986), separated by spaces.",
            ));
        }
    }
    let joined = values.join(" ");
    Ok((!joined.is_empty()).then_some(joined))
}

/// A `login_hint`, typed by prefix or left for lookup by id, username or email.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LoginHint {
    /// No prefix: a user id, a username, or an email (case-insensitive).
    Any(String),
    Email(String),
    Username(String),
    Subject(String),
    Phone(String),
}

pub fn parse_login_hint(hint: &str) -> LoginHint {
    let typed = |prefix: &str| {
        hint.get(..prefix.len())
            .filter(|p| p.eq_ignore_ascii_case(prefix))
            .map(|_| hint[prefix.len()..].to_owned())
    };
    if let Some(v) = typed("email:") {
        LoginHint::Email(v)
    } else if let Some(v) = typed("username:") {
        LoginHint::Username(v)
    } else if let Some(v) = typed("sub:") {
        LoginHint::Subject(v)
    } else if let Some(v) = typed("tel:") {
        LoginHint::Phone(v)
    } else {
        LoginHint::Any(hint.to_owned())
    }
}

/// How many users with a number the store must fetch for [`phone_owner`] to judge.
pub const PHONE_OWNER_CANDIDATES: i64 = 2;

/// Who a phone number names, given the users that have it (at least
/// [`PHONE_OWNER_CANDIDATES`] of them when there are that many). Numbers are not unique: a
/// number two users share names nobody (an ambiguous hint must not pick somebody).
pub fn phone_owner<T>(candidates: Vec<T>) -> Option<T> {
    let mut candidates = candidates.into_iter();
    match (candidates.next(), candidates.next()) {
        (Some(only), None) => Some(only),
        _ => None,
    }
}

/// Normalise a phone number for comparison: keep a leading `+` and the digits.
pub fn normalize_phone(phone: &str) -> String {
    let mut out = String::new();
    for (i, c) in phone.trim().chars().enumerate() {
        if c.is_ascii_digit() || (i == 0 && c == '+') {
            out.push(c);
        }
    }
    out
}

/// CIBA §7.1 `client_notification_token`: RFC 6750 §2.1 b64token, at most 1024 characters.
pub fn validate_client_notification_token(token: &str) -> Result<(), OAuthError> {
    let body = token.trim_end_matches('=');
    let ok = !token.is_empty()
        && token.len() <= 1024
        && !body.is_empty()
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(OAuthError::invalid_request(
            "The client_notification_token must be 1 to 1024 characters of the bearer token syntax.",
        ))
    }
}

/// Our `auth_req_id`s are base64url; anything else cannot be one (answered `invalid_grant`
/// without a database look-up).
pub fn plausible_auth_req_id(id: &str) -> bool {
    (16..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_number_names_its_only_owner_and_a_shared_one_nobody() {
        use super::phone_owner;
        assert_eq!(phone_owner::<&str>(vec![]), None);
        assert_eq!(phone_owner(vec!["alice"]), Some("alice"));
        assert_eq!(phone_owner(vec!["alice", "bob"]), None);
        assert_eq!(phone_owner(vec!["alice", "bob", "carol"]), None);
    }

    use super::*;

    #[test]
    fn scope_rules() {
        assert_eq!(
            parse_ciba_scope(None).unwrap_err().code,
            OAuthErrorCode::InvalidRequest
        );
        assert_eq!(
            parse_ciba_scope(Some("profile bogus")).unwrap_err().code,
            OAuthErrorCode::InvalidRequest
        );
        assert_eq!(
            parse_ciba_scope(Some("openid bogus")).unwrap_err().code,
            OAuthErrorCode::InvalidScope
        );
        assert_eq!(
            parse_ciba_scope(Some("email  openid email")).unwrap(),
            vec!["email".to_owned(), "openid".to_owned()]
        );
    }

    #[test]
    fn acr_values_limits() {
        assert_eq!(parse_acr_values(None).unwrap(), None);
        assert_eq!(parse_acr_values(Some("  ")).unwrap(), None);
        assert_eq!(
            parse_acr_values(Some(
                "urn:assent:acr:hwk  Multi_Factor https://x.example/acr?l=2#a"
            ))
            .unwrap()
            .as_deref(),
            Some("urn:assent:acr:hwk Multi_Factor https://x.example/acr?l=2#a")
        );
        let at_limits = vec!["a".repeat(ACR_VALUE_MAX_LEN); 3].join(" ");
        assert!(parse_acr_values(Some(&at_limits)).unwrap().is_some());
        let sixteen = vec!["x"; ACR_VALUES_MAX_COUNT].join(" ");
        assert!(parse_acr_values(Some(&sixteen)).unwrap().is_some());
        let refused = |v: &str| {
            parse_acr_values(Some(v)).map_err(|e| e.code) == Err(OAuthErrorCode::InvalidRequest)
        };
        assert!(refused(&"a".repeat(ACR_VALUE_MAX_LEN + 1)));
        assert!(refused(&vec!["x"; ACR_VALUES_MAX_COUNT + 1].join(" ")));
        assert!(refused(&vec!["a".repeat(200); 6].join(" ")));
        assert!(refused(&"a".repeat(60_000)));
        for bad in [
            "<script>alert(1)</script>",
            "a\"b",
            "caf\u{e9}",
            "a\tb",
            "{x}",
            "a|b",
            "a\\b",
            "a`b",
            "a^b",
        ] {
            assert!(refused(bad), "{bad:?}");
        }
    }

    #[test]
    fn binding_messages() {
        let ok = |m: &str| validate_binding_message(Some(m), 64);
        assert_eq!(ok("").unwrap(), None);
        assert_eq!(
            ok("Pay €50.00 at Pump 4 $").unwrap().as_deref(),
            Some("Pay €50.00 at Pump 4 $")
        );
        // Family emoji: man ZWJ woman ZWJ girl; heart with variation selector.
        assert!(ok("👨\u{200D}👩\u{200D}👧 ❤\u{FE0F}").is_ok());
        assert!(ok("café").is_ok());
        for bad in [
            "a\nb",
            "a\tb",
            "a\u{2028}b",
            "\u{E000}",
            "a\u{200B}b",
            "\u{0378}",
        ] {
            assert_eq!(
                ok(bad).unwrap_err().code,
                OAuthErrorCode::InvalidBindingMessage,
                "{bad:?}"
            );
        }
        let long: String = "€".repeat(64);
        assert!(ok(&long).is_ok());
        assert_eq!(
            ok(&format!("{long}x")).unwrap_err().code,
            OAuthErrorCode::InvalidBindingMessage
        );
    }

    #[test]
    fn requested_expiry() {
        assert_eq!(parse_requested_expiry(None, 120, 600).unwrap(), 120);
        assert_eq!(parse_requested_expiry(Some("30"), 120, 600).unwrap(), 30);
        assert_eq!(parse_requested_expiry(Some("9000"), 120, 600).unwrap(), 600);
        assert_eq!(
            parse_requested_expiry(Some("99999999999999999999999"), 120, 600).unwrap(),
            600
        );
        for bad in ["0", "-5", "1.5", "", "abc", " 30"] {
            assert!(
                parse_requested_expiry(Some(bad), 120, 600).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn login_hints() {
        assert_eq!(parse_login_hint("alice"), LoginHint::Any("alice".into()));
        assert_eq!(
            parse_login_hint("EMAIL:a@b.c"),
            LoginHint::Email("a@b.c".into())
        );
        assert_eq!(
            parse_login_hint("sub:123"),
            LoginHint::Subject("123".into())
        );
        assert_eq!(
            parse_login_hint("tel:+1 555"),
            LoginHint::Phone("+1 555".into())
        );
        assert_eq!(normalize_phone("+1 (555) 010-2030"), "+15550102030");
    }

    #[test]
    fn notification_token() {
        assert!(validate_client_notification_token(&"a".repeat(1024)).is_ok());
        assert!(validate_client_notification_token(&"a".repeat(1025)).is_err());
        assert!(validate_client_notification_token("abc def").is_err());
        assert!(validate_client_notification_token("abc==").is_ok());
        assert!(validate_client_notification_token("").is_err());
    }
}
