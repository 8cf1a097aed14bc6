//! The one checker of JWT claims (RFC 7519 §4.1) for every token Assent accepts: client
//! assertions (RFC 7523 §3), `id_token_hint` and `login_hint_token` (CIBA §7.1), our own access
//! tokens (RFC 9068), and later device-signed decisions and request objects.
//!
//! It is pure: it reads a verified claim set (what `assent_crypto::verify_jws` returns) and
//! `now`, and says which rule failed. It does not verify signatures, does not look at the JOSE
//! header (`typ`, `cty`, `alg` checks stay with the caller, which knows what kind of token it
//! expects), and does not remember `jti`s: single use is a store call, made by the caller with
//! the [`CheckedClaims::jti`] and [`CheckedClaims::expires_at`] this returns. Each caller maps a
//! [`ClaimError`] to its own protocol error.
//!
//! Time rules, in one place: a token whose `exp` is at or before `now` is expired (no grace: an
//! expired token is never accepted unless [`ClaimRules::allow_expired`]); claims that date from
//! the future (`nbf`, `iat`) and the maximum-lifetime limit tolerate [`CLOCK_SKEW_SECS`].

use serde_json::{Map, Value};

use crate::Timestamp;

/// The clock skew tolerated between Assent and whoever minted a token, on `nbf`, `iat` and the
/// lifetime limit.
pub const CLOCK_SKEW_SECS: i64 = 5;

/// The longest `jti` accepted by default: enough for any UUID or random token, short enough to
/// keep the single-use table small.
pub const MAX_JTI_LEN: usize = 256;

/// What `sub` must be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SubjectRule {
    /// `sub` is not looked at.
    Ignore,
    /// `sub` must be a non-empty string.
    Required,
    /// `sub` must be exactly this string (client assertions: the client id).
    Equals(String),
}

/// How `nbf` and `iat` are treated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeClaimRule {
    /// The claim is not looked at.
    Ignore,
    /// When present, the claim must be an integer NumericDate no later than `now` plus the skew.
    NotInFuture,
    /// As [`TimeClaimRule::NotInFuture`], and the claim must be present.
    RequiredNotInFuture,
}

/// What `jti` must be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JtiRule {
    /// `jti` is not looked at (and not returned).
    Ignore,
    /// When present, `jti` must be a non-empty string of at most `max_len` bytes.
    Optional { max_len: usize },
    /// `jti` must be a non-empty string of at most `max_len` bytes.
    Required { max_len: usize },
}

/// The rules one kind of token is held to. Build one per kind at the call site; every field is
/// spelled out there, so a reader sees the whole policy of that token in one place.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClaimRules {
    /// The expected `iss`; `None` leaves it unchecked.
    pub issuer: Option<String>,
    pub subject: SubjectRule,
    /// `aud` (a string or an array of strings) must hold one of these; `None` leaves it
    /// unchecked. An empty list accepts nothing.
    pub audiences: Option<Vec<String>>,
    /// `exp` must be present (as an integer NumericDate).
    pub require_exp: bool,
    /// An expired token is acceptable (an `id_token_hint` only names the user, CIBA §7.1).
    pub allow_expired: bool,
    /// `exp` may be at most this many seconds after `now` (plus the skew).
    pub max_lifetime_secs: Option<i64>,
    pub nbf: TimeClaimRule,
    pub iat: TimeClaimRule,
    pub jti: JtiRule,
}

/// Which rule a claim set broke. The variants name the check, not the wording: each caller
/// chooses the text (or the uniform text) its protocol wants.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ClaimError {
    #[error("iss is missing or not the expected issuer")]
    Issuer,
    #[error("sub is missing or empty")]
    MissingSubject,
    #[error("sub is not the expected subject")]
    Subject,
    #[error("aud does not name an accepted audience")]
    Audience,
    #[error("exp is missing")]
    MissingExp,
    #[error("exp is not an integer NumericDate")]
    InvalidExp,
    #[error("the token has expired")]
    Expired,
    #[error("exp is further ahead than the maximum lifetime")]
    TooFarAhead,
    #[error("nbf is missing")]
    MissingNbf,
    #[error("nbf is not an integer NumericDate")]
    InvalidNbf,
    #[error("the token is not valid yet (nbf)")]
    NotYetValid,
    #[error("iat is missing")]
    MissingIat,
    #[error("iat is not an integer NumericDate")]
    InvalidIat,
    #[error("the token was issued in the future (iat)")]
    IssuedInFuture,
    #[error("jti is missing")]
    MissingJti,
    #[error("jti is not a non-empty string of acceptable length")]
    InvalidJti,
}

/// What a caller may need after the checks passed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckedClaims {
    /// `sub`, when the rules asked for it.
    pub subject: Option<String>,
    /// `jti`, when the rules asked for it and it was present: record it as used until
    /// [`CheckedClaims::expires_at`].
    pub jti: Option<String>,
    /// `exp`, when present.
    pub expires_at: Option<Timestamp>,
}

impl ClaimRules {
    /// Checks `claims` against these rules at `now`. The checks run in a fixed order — `iss`,
    /// `aud`, `exp` (presence, expiry, lifetime), `nbf`, `iat`, `sub`, `jti` — and the first
    /// failure is returned.
    pub fn check(
        &self,
        claims: &Map<String, Value>,
        now: Timestamp,
    ) -> Result<CheckedClaims, ClaimError> {
        let now = now.secs();
        let str_claim = |name: &str| claims.get(name).and_then(Value::as_str);

        if let Some(issuer) = &self.issuer
            && str_claim("iss") != Some(issuer.as_str())
        {
            return Err(ClaimError::Issuer);
        }
        if let Some(accepted) = &self.audiences
            && !audience_matches(claims.get("aud"), accepted)
        {
            return Err(ClaimError::Audience);
        }

        let exp = match claims.get("exp") {
            None if self.require_exp => return Err(ClaimError::MissingExp),
            None => None,
            Some(v) => Some(v.as_i64().ok_or(ClaimError::InvalidExp)?),
        };
        if let Some(exp) = exp {
            if exp <= now && !self.allow_expired {
                return Err(ClaimError::Expired);
            }
            if let Some(max) = self.max_lifetime_secs
                && exp > now.saturating_add(max).saturating_add(CLOCK_SKEW_SECS)
            {
                return Err(ClaimError::TooFarAhead);
            }
        }

        let time_claim = |name: &str, rule: TimeClaimRule| -> Result<Option<i64>, ()> {
            match (rule, claims.get(name)) {
                (TimeClaimRule::Ignore, _) | (TimeClaimRule::NotInFuture, None) => Ok(None),
                (TimeClaimRule::RequiredNotInFuture, None) => Err(()),
                (_, Some(v)) => v.as_i64().map(Some).ok_or(()),
            }
        };
        if let Some(nbf) = time_claim("nbf", self.nbf).map_err(|()| match claims.get("nbf") {
            None => ClaimError::MissingNbf,
            Some(_) => ClaimError::InvalidNbf,
        })? && nbf > now.saturating_add(CLOCK_SKEW_SECS)
        {
            return Err(ClaimError::NotYetValid);
        }
        if let Some(iat) = time_claim("iat", self.iat).map_err(|()| match claims.get("iat") {
            None => ClaimError::MissingIat,
            Some(_) => ClaimError::InvalidIat,
        })? && iat > now.saturating_add(CLOCK_SKEW_SECS)
        {
            return Err(ClaimError::IssuedInFuture);
        }

        let subject = match &self.subject {
            SubjectRule::Ignore => None,
            SubjectRule::Required | SubjectRule::Equals(_) => {
                let sub = str_claim("sub")
                    .filter(|s| !s.is_empty())
                    .ok_or(ClaimError::MissingSubject)?;
                if let SubjectRule::Equals(expected) = &self.subject
                    && sub != expected
                {
                    return Err(ClaimError::Subject);
                }
                Some(sub.to_owned())
            }
        };

        let jti = match self.jti {
            JtiRule::Ignore => None,
            JtiRule::Optional { max_len } | JtiRule::Required { max_len } => {
                match claims.get("jti") {
                    None if matches!(self.jti, JtiRule::Required { .. }) => {
                        return Err(ClaimError::MissingJti);
                    }
                    None => None,
                    Some(Value::String(j)) if !j.is_empty() && j.len() <= max_len => {
                        Some(j.clone())
                    }
                    Some(_) => return Err(ClaimError::InvalidJti),
                }
            }
        };

        Ok(CheckedClaims {
            subject,
            jti,
            expires_at: exp.map(Timestamp::from_secs),
        })
    }
}

/// `aud` as a string or an array holding one of `accepted` (RFC 7519 §4.1.3).
pub fn audience_matches(aud: Option<&Value>, accepted: &[String]) -> bool {
    match aud {
        Some(Value::String(s)) => accepted.iter().any(|a| a == s),
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .any(|s| accepted.iter().any(|a| a == s)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const NOW: i64 = 1_800_000_000;
    const ISS: &str = "https://assent.example/env/as";

    fn now() -> Timestamp {
        // Mid-second, to show that only whole seconds count.
        Timestamp::from_millis(NOW * 1000 + 500)
    }

    /// The strictest rules: everything checked, as for a client assertion.
    fn strict() -> ClaimRules {
        ClaimRules {
            issuer: Some("client-1".into()),
            subject: SubjectRule::Equals("client-1".into()),
            audiences: Some(vec![ISS.into(), format!("{ISS}/token")]),
            require_exp: true,
            allow_expired: false,
            max_lifetime_secs: Some(3600),
            nbf: TimeClaimRule::NotInFuture,
            iat: TimeClaimRule::NotInFuture,
            jti: JtiRule::Required {
                max_len: MAX_JTI_LEN,
            },
        }
    }

    fn good() -> Map<String, Value> {
        json!({
            "iss": "client-1",
            "sub": "client-1",
            "aud": ISS,
            "exp": NOW + 60,
            "nbf": NOW,
            "iat": NOW,
            "jti": "j-1",
        })
        .as_object()
        .unwrap()
        .clone()
    }

    fn with(name: &str, value: Value) -> Map<String, Value> {
        let mut m = good();
        m.insert(name.into(), value);
        m
    }

    fn without(name: &str) -> Map<String, Value> {
        let mut m = good();
        m.remove(name);
        m
    }

    #[test]
    fn happy_path_returns_sub_jti_and_expiry() {
        let checked = strict().check(&good(), now()).unwrap();
        assert_eq!(
            checked,
            CheckedClaims {
                subject: Some("client-1".into()),
                jti: Some("j-1".into()),
                expires_at: Some(Timestamp::from_secs(NOW + 60)),
            }
        );
    }

    #[test]
    fn issuer() {
        let r = strict();
        assert_eq!(
            r.check(&with("iss", json!("client-2")), now()),
            Err(ClaimError::Issuer)
        );
        assert_eq!(r.check(&without("iss"), now()), Err(ClaimError::Issuer));
        assert_eq!(
            r.check(&with("iss", json!(["client-1"])), now()),
            Err(ClaimError::Issuer)
        );
        let unchecked = ClaimRules {
            issuer: None,
            ..strict()
        };
        assert!(unchecked.check(&with("iss", json!("other")), now()).is_ok());
    }

    #[test]
    fn audience_as_string_array_or_missing() {
        let r = strict();
        assert!(
            r.check(&with("aud", json!(format!("{ISS}/token"))), now())
                .is_ok()
        );
        assert!(
            r.check(&with("aud", json!(["https://other", ISS])), now())
                .is_ok()
        );
        assert_eq!(
            r.check(&with("aud", json!("https://other")), now()),
            Err(ClaimError::Audience)
        );
        assert_eq!(
            r.check(&with("aud", json!(["https://other", 7])), now()),
            Err(ClaimError::Audience)
        );
        assert_eq!(
            r.check(&with("aud", json!([])), now()),
            Err(ClaimError::Audience)
        );
        assert_eq!(r.check(&without("aud"), now()), Err(ClaimError::Audience));
        // A prefix of an accepted audience is not that audience.
        assert_eq!(
            r.check(&with("aud", json!(format!("{ISS}x"))), now()),
            Err(ClaimError::Audience)
        );
    }

    #[test]
    fn exp_required_and_integer() {
        let r = strict();
        assert_eq!(r.check(&without("exp"), now()), Err(ClaimError::MissingExp));
        assert_eq!(
            r.check(&with("exp", json!((NOW + 60).to_string())), now()),
            Err(ClaimError::InvalidExp)
        );
        assert_eq!(
            r.check(&with("exp", json!(NOW as f64 + 60.5)), now()),
            Err(ClaimError::InvalidExp)
        );
        let optional = ClaimRules {
            require_exp: false,
            ..strict()
        };
        let checked = optional.check(&without("exp"), now()).unwrap();
        assert_eq!(checked.expires_at, None);
    }

    #[test]
    fn expired_by_one_second_and_at_the_instant() {
        let r = strict();
        assert_eq!(
            r.check(&with("exp", json!(NOW - 1)), now()),
            Err(ClaimError::Expired)
        );
        // exp is the first instant the token is no longer good (RFC 7519 §4.1.4): no skew.
        assert_eq!(
            r.check(&with("exp", json!(NOW)), now()),
            Err(ClaimError::Expired)
        );
        assert!(r.check(&with("exp", json!(NOW + 1)), now()).is_ok());
    }

    #[test]
    fn expired_acceptable_when_allowed() {
        let r = ClaimRules {
            allow_expired: true,
            ..strict()
        };
        let checked = r.check(&with("exp", json!(NOW - 86_400)), now()).unwrap();
        assert_eq!(checked.expires_at, Some(Timestamp::from_secs(NOW - 86_400)));
    }

    #[test]
    fn exp_too_far_ahead() {
        let r = strict();
        let limit = NOW + 3600 + CLOCK_SKEW_SECS;
        assert!(r.check(&with("exp", json!(limit)), now()).is_ok());
        assert_eq!(
            r.check(&with("exp", json!(limit + 1)), now()),
            Err(ClaimError::TooFarAhead)
        );
        assert_eq!(
            r.check(&with("exp", json!(i64::MAX)), now()),
            Err(ClaimError::TooFarAhead)
        );
        let unlimited = ClaimRules {
            max_lifetime_secs: None,
            ..strict()
        };
        assert!(
            unlimited
                .check(&with("exp", json!(i64::MAX)), now())
                .is_ok()
        );
    }

    #[test]
    fn nbf_in_the_future_beyond_skew() {
        let r = strict();
        assert!(
            r.check(&with("nbf", json!(NOW + CLOCK_SKEW_SECS)), now())
                .is_ok()
        );
        assert_eq!(
            r.check(&with("nbf", json!(NOW + CLOCK_SKEW_SECS + 1)), now()),
            Err(ClaimError::NotYetValid)
        );
        assert_eq!(
            r.check(&with("nbf", json!("soon")), now()),
            Err(ClaimError::InvalidNbf)
        );
        assert!(r.check(&without("nbf"), now()).is_ok());
        let ignored = ClaimRules {
            nbf: TimeClaimRule::Ignore,
            ..strict()
        };
        assert!(ignored.check(&with("nbf", json!(NOW + 999)), now()).is_ok());
    }

    #[test]
    fn iat_in_the_future_beyond_skew() {
        let r = strict();
        assert!(
            r.check(&with("iat", json!(NOW + CLOCK_SKEW_SECS)), now())
                .is_ok()
        );
        assert_eq!(
            r.check(&with("iat", json!(NOW + CLOCK_SKEW_SECS + 1)), now()),
            Err(ClaimError::IssuedInFuture)
        );
        assert_eq!(
            r.check(&with("iat", json!(null)), now()),
            Err(ClaimError::InvalidIat)
        );
        assert!(r.check(&without("iat"), now()).is_ok());
        let ignored = ClaimRules {
            iat: TimeClaimRule::Ignore,
            ..strict()
        };
        assert!(ignored.check(&with("iat", json!(NOW + 999)), now()).is_ok());
    }

    #[test]
    fn subject_rules() {
        let r = strict();
        assert_eq!(
            r.check(&with("sub", json!("client-2")), now()),
            Err(ClaimError::Subject)
        );
        assert_eq!(
            r.check(&without("sub"), now()),
            Err(ClaimError::MissingSubject)
        );
        let required = ClaimRules {
            subject: SubjectRule::Required,
            ..strict()
        };
        assert_eq!(
            required
                .check(&with("sub", json!("user-9")), now())
                .unwrap()
                .subject
                .as_deref(),
            Some("user-9")
        );
        assert_eq!(
            required.check(&with("sub", json!("")), now()),
            Err(ClaimError::MissingSubject)
        );
        assert_eq!(
            required.check(&with("sub", json!(42)), now()),
            Err(ClaimError::MissingSubject)
        );
    }

    #[test]
    fn jti_missing_empty_or_too_long() {
        let r = strict();
        assert_eq!(r.check(&without("jti"), now()), Err(ClaimError::MissingJti));
        assert_eq!(
            r.check(&with("jti", json!("")), now()),
            Err(ClaimError::InvalidJti)
        );
        assert_eq!(
            r.check(&with("jti", json!(7)), now()),
            Err(ClaimError::InvalidJti)
        );
        let longest = "j".repeat(MAX_JTI_LEN);
        assert!(r.check(&with("jti", json!(longest)), now()).is_ok());
        assert_eq!(
            r.check(&with("jti", json!("j".repeat(MAX_JTI_LEN + 1))), now()),
            Err(ClaimError::InvalidJti)
        );
        let optional = ClaimRules {
            jti: JtiRule::Optional {
                max_len: MAX_JTI_LEN,
            },
            ..strict()
        };
        assert_eq!(optional.check(&without("jti"), now()).unwrap().jti, None);
        assert_eq!(
            optional.check(&with("jti", json!("")), now()),
            Err(ClaimError::InvalidJti)
        );
        let ignored = ClaimRules {
            jti: JtiRule::Ignore,
            ..strict()
        };
        assert_eq!(
            ignored.check(&with("jti", json!(7)), now()).unwrap().jti,
            None
        );
    }

    /// The first failing rule wins, in the documented order (callers' messages depend on it).
    #[test]
    fn checks_run_in_order() {
        let mut m = good();
        m.insert("exp".into(), json!(NOW - 1));
        m.remove("sub");
        m.insert("jti".into(), json!(""));
        assert_eq!(strict().check(&m, now()), Err(ClaimError::Expired));
        m.insert("aud".into(), json!("https://other"));
        assert_eq!(strict().check(&m, now()), Err(ClaimError::Audience));
        m.insert("iss".into(), json!("x"));
        assert_eq!(strict().check(&m, now()), Err(ClaimError::Issuer));
    }
}
