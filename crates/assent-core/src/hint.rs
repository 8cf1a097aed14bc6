//! Who a backchannel authentication request names (CIBA §7.1, Assent spec §3.2): which of the
//! three hints it carries, which user a `login_hint` names, and the claim rules of
//! `id_token_hint` and `login_hint_token` with the errors their failures answer. The server
//! verifies signatures and looks users up; these functions decide.

use crate::error::{OAuthError, OAuthErrorCode};
use crate::ids::ApplicationId;
use crate::jwt::{ClaimError, ClaimRules, JtiRule, MAX_JTI_LEN, SubjectRule, TimeClaimRule};
use crate::model::User;

/// A `login_hint_token` may expire at most this far ahead (PingOne's are typically good for an
/// hour; a day leaves room for batch jobs while bounding how long a stolen one is useful).
pub const MAX_LOGIN_HINT_TOKEN_LIFETIME_SECS: i64 = 24 * 3600;

/// Which hint the request carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Hint {
    Login(String),
    IdToken(String),
    LoginToken(String),
}

/// Exactly one of `login_hint`, `id_token_hint` and `login_hint_token` (CIBA §7.1); none or
/// more than one → `invalid_request`.
pub fn which_hint(
    login_hint: Option<&str>,
    id_token_hint: Option<&str>,
    login_hint_token: Option<&str>,
) -> Result<Hint, OAuthError> {
    let hints: Vec<Hint> = [
        login_hint.map(|h| Hint::Login(h.to_owned())),
        id_token_hint.map(|h| Hint::IdToken(h.to_owned())),
        login_hint_token.map(|h| Hint::LoginToken(h.to_owned())),
    ]
    .into_iter()
    .flatten()
    .collect();
    match <[Hint; 1]>::try_from(hints) {
        Ok([h]) => Ok(h),
        Err(v) if v.is_empty() => Err(OAuthError::invalid_request(
            "One of login_hint, id_token_hint or login_hint_token is required.",
        )),
        Err(_) => Err(OAuthError::invalid_request(
            "Only one of login_hint, id_token_hint or login_hint_token may be sent.",
        )),
    }
}

/// `unknown_user_id`: the hint names nobody (or somebody disabled).
pub fn unknown_user() -> OAuthError {
    OAuthError::new(
        OAuthErrorCode::UnknownUserId,
        "The user identified by the hint could not be found.",
    )
}

/// The user a hint resolved to, if enabled; else `unknown_user_id` (a disabled user is
/// unknown, §3.2).
pub fn enabled_user(user: Option<User>) -> Result<User, OAuthError> {
    match user {
        Some(u) if u.enabled => Ok(u),
        _ => Err(unknown_user()),
    }
}

/// An unprefixed `login_hint` is looked up as an id, a username and an email; the users found
/// (in any number, the same user possibly more than once) name one user only when they are all
/// the same user. If they name different users (a username shaped like someone else's email),
/// the hint names nobody.
pub fn sole_user(candidates: impl IntoIterator<Item = User>) -> Option<User> {
    let mut found: Vec<User> = Vec::new();
    for candidate in candidates {
        if !found.iter().any(|u| u.id == candidate.id) {
            found.push(candidate);
        }
    }
    match <[User; 1]>::try_from(found) {
        Ok([u]) => Some(u),
        Err(_) => None,
    }
}

/// `invalid_request` for an `id_token_hint` that fails a check, saying which.
pub fn invalid_id_token_hint(why: &str) -> OAuthError {
    OAuthError::invalid_request(format!("The id_token_hint is not valid: {why}"))
}

/// An `id_token_hint` must be an ID token: its `typ`, when present, is `JWT`.
pub fn id_token_hint_typ_acceptable(typ: Option<&str>) -> bool {
    typ.is_none_or(|t| t.eq_ignore_ascii_case("JWT"))
}

/// An ID token this environment (`issuer`) issued to `client_id`. Expired is fine: only its
/// `sub` matters (CIBA §7.1).
pub fn id_token_hint_rules(issuer: &str, client_id: &ApplicationId) -> ClaimRules {
    ClaimRules {
        issuer: Some(issuer.to_owned()),
        subject: SubjectRule::Required,
        audiences: Some(vec![client_id.to_string()]),
        require_exp: false,
        allow_expired: true,
        max_lifetime_secs: None,
        nbf: TimeClaimRule::Ignore,
        iat: TimeClaimRule::Ignore,
        jti: JtiRule::Ignore,
    }
}

/// The answer to an `id_token_hint` that breaks [`id_token_hint_rules`]: always
/// `invalid_request`.
pub fn id_token_hint_claim_error(e: ClaimError) -> OAuthError {
    invalid_id_token_hint(match e {
        ClaimError::Issuer => "it was not issued by this environment.",
        ClaimError::Audience => "it was not issued to this client.",
        ClaimError::MissingSubject | ClaimError::Subject => "it has no sub.",
        // Not checked by these rules (a token we signed has a numeric exp).
        ClaimError::MissingExp
        | ClaimError::InvalidExp
        | ClaimError::Expired
        | ClaimError::TooFarAhead
        | ClaimError::MissingNbf
        | ClaimError::InvalidNbf
        | ClaimError::NotYetValid
        | ClaimError::MissingIat
        | ClaimError::InvalidIat
        | ClaimError::IssuedInFuture
        | ClaimError::MissingJti
        | ClaimError::InvalidJti => "malformed token.",
    })
}

/// `invalid_request` for a `login_hint_token` that fails a check, saying which.
pub fn invalid_login_hint_token(why: &str) -> OAuthError {
    OAuthError::invalid_request(format!("The login_hint_token is not valid: {why}"))
}

/// A JWT made by the calling application `client_id` for this environment (`issuer`),
/// PingOne's profile: `iss` = client id, `aud` = issuer, `exp` required and at most
/// [`MAX_LOGIN_HINT_TOKEN_LIFETIME_SECS`] ahead, not used before its `nbf`. A token that
/// carries a `jti` is accepted once, until it expires (the caller records the `jti`).
pub fn login_hint_token_rules(client_id: &ApplicationId, issuer: &str) -> ClaimRules {
    ClaimRules {
        issuer: Some(client_id.to_string()),
        subject: SubjectRule::Required,
        audiences: Some(vec![issuer.to_owned()]),
        require_exp: true,
        allow_expired: false,
        max_lifetime_secs: Some(MAX_LOGIN_HINT_TOKEN_LIFETIME_SECS),
        nbf: TimeClaimRule::NotInFuture,
        iat: TimeClaimRule::Ignore,
        jti: JtiRule::Optional {
            max_len: MAX_JTI_LEN,
        },
    }
}

/// The answer to a `login_hint_token` that breaks [`login_hint_token_rules`]: expired →
/// `expired_login_hint_token`, anything else `invalid_request` (§3.2).
pub fn login_hint_token_claim_error(e: ClaimError) -> OAuthError {
    match e {
        ClaimError::Expired => OAuthError::new(
            OAuthErrorCode::ExpiredLoginHintToken,
            "The login_hint_token has expired.",
        ),
        ClaimError::Issuer => invalid_login_hint_token("iss must be the client id."),
        ClaimError::Audience => invalid_login_hint_token("aud must be the issuer."),
        ClaimError::MissingExp | ClaimError::InvalidExp => {
            invalid_login_hint_token("exp is required.")
        }
        ClaimError::TooFarAhead => invalid_login_hint_token("exp must be at most 24 hours ahead."),
        ClaimError::MissingNbf | ClaimError::InvalidNbf => {
            invalid_login_hint_token("nbf must be a number.")
        }
        ClaimError::NotYetValid => invalid_login_hint_token("it is not valid yet."),
        ClaimError::MissingIat | ClaimError::InvalidIat | ClaimError::IssuedInFuture => {
            invalid_login_hint_token("iat is in the future.")
        }
        ClaimError::MissingSubject | ClaimError::Subject => {
            invalid_login_hint_token("sub is required.")
        }
        ClaimError::MissingJti | ClaimError::InvalidJti => {
            invalid_login_hint_token("jti must be a non-empty string of at most 256 characters.")
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Map, Value, json};

    use super::*;
    use crate::time::Timestamp;

    fn user(id: &str, enabled: bool) -> User {
        User {
            id: id.into(),
            environment_id: "e".into(),
            username: id.into(),
            email: None,
            given_name: None,
            family_name: None,
            phone_number: None,
            password_hash: None,
            enabled,
            auto_decision: None,
            auto_decision_delay_ms: None,
            created_at: Timestamp(0),
            updated_at: Timestamp(0),
        }
    }

    fn claims(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => panic!("not an object"),
        }
    }

    #[test]
    fn exactly_one_hint() {
        assert_eq!(
            which_hint(Some("alice"), None, None),
            Ok(Hint::Login("alice".into()))
        );
        assert_eq!(
            which_hint(None, Some("a.b.c"), None),
            Ok(Hint::IdToken("a.b.c".into()))
        );
        assert_eq!(
            which_hint(None, None, Some("x.y.z")),
            Ok(Hint::LoginToken("x.y.z".into()))
        );
        let none = which_hint(None, None, None).unwrap_err();
        assert_eq!(none.code, OAuthErrorCode::InvalidRequest);
        assert_eq!(
            none.detail,
            "One of login_hint, id_token_hint or login_hint_token is required."
        );
        for two in [
            which_hint(Some("a"), Some("b"), None),
            which_hint(Some("a"), None, Some("c")),
            which_hint(None, Some("b"), Some("c")),
            which_hint(Some("a"), Some("b"), Some("c")),
        ] {
            let e = two.unwrap_err();
            assert_eq!(e.code, OAuthErrorCode::InvalidRequest);
            assert_eq!(
                e.detail,
                "Only one of login_hint, id_token_hint or login_hint_token may be sent."
            );
        }
    }

    #[test]
    fn a_disabled_or_missing_user_is_unknown() {
        assert_eq!(enabled_user(Some(user("u1", true))).unwrap().id, "u1");
        for nobody in [enabled_user(Some(user("u1", false))), enabled_user(None)] {
            assert_eq!(nobody.unwrap_err().code, OAuthErrorCode::UnknownUserId);
        }
    }

    #[test]
    fn an_unprefixed_hint_names_one_user_or_nobody() {
        assert_eq!(sole_user(Vec::new()), None);
        assert_eq!(sole_user([user("u1", true)]).unwrap().id, "u1");
        // Found by id and by username: still the one user.
        assert_eq!(
            sole_user([user("u1", true), user("u1", true)]).unwrap().id,
            "u1"
        );
        // A username shaped like someone else's email: nobody.
        assert_eq!(sole_user([user("u1", true), user("u2", true)]), None);
        assert_eq!(
            sole_user([user("u1", true), user("u2", true), user("u1", true)]),
            None
        );
    }

    #[test]
    fn an_id_token_hint_may_be_expired_but_must_be_ours_and_for_the_caller() {
        let now = Timestamp::from_secs(10_000);
        let rules = id_token_hint_rules("https://as/e/as", &"client".into());
        let ok = json!({"iss": "https://as/e/as", "aud": "client", "sub": "u1", "exp": 1});
        let checked = rules.check(&claims(ok.clone()), now).unwrap();
        assert_eq!(checked.subject.as_deref(), Some("u1"));

        let mut other_iss = ok.clone();
        other_iss["iss"] = json!("https://as/other/as");
        let e = id_token_hint_claim_error(rules.check(&claims(other_iss), now).unwrap_err());
        assert_eq!(e.code, OAuthErrorCode::InvalidRequest);
        assert_eq!(
            e.detail,
            "The id_token_hint is not valid: it was not issued by this environment."
        );

        let mut other_aud = ok.clone();
        other_aud["aud"] = json!("someone-else");
        let e = id_token_hint_claim_error(rules.check(&claims(other_aud), now).unwrap_err());
        assert_eq!(
            e.detail,
            "The id_token_hint is not valid: it was not issued to this client."
        );

        let mut no_sub = ok;
        no_sub.as_object_mut().unwrap().remove("sub");
        let e = id_token_hint_claim_error(rules.check(&claims(no_sub), now).unwrap_err());
        assert_eq!(e.detail, "The id_token_hint is not valid: it has no sub.");

        assert!(id_token_hint_typ_acceptable(None));
        assert!(id_token_hint_typ_acceptable(Some("jwt")));
        assert!(!id_token_hint_typ_acceptable(Some("at+jwt")));
    }

    #[test]
    fn a_login_hint_token_is_the_callers_unexpired_and_short_lived() {
        let now = Timestamp::from_secs(10_000);
        let rules = login_hint_token_rules(&"client".into(), "https://as/e/as");
        let t = now.secs();
        let ok = json!({"iss": "client", "aud": "https://as/e/as", "sub": "u1", "exp": t + 300});
        let checked = rules.check(&claims(ok.clone()), now).unwrap();
        assert_eq!(checked.subject.as_deref(), Some("u1"));
        assert_eq!(checked.jti, None);

        let refused =
            |v: Value| login_hint_token_claim_error(rules.check(&claims(v), now).unwrap_err());

        let mut expired = ok.clone();
        expired["exp"] = json!(t);
        let e = refused(expired);
        assert_eq!(e.code, OAuthErrorCode::ExpiredLoginHintToken);
        assert_eq!(e.detail, "The login_hint_token has expired.");

        let mut too_long = ok.clone();
        too_long["exp"] = json!(t + MAX_LOGIN_HINT_TOKEN_LIFETIME_SECS + 60);
        let e = refused(too_long);
        assert_eq!(e.code, OAuthErrorCode::InvalidRequest);
        assert_eq!(
            e.detail,
            "The login_hint_token is not valid: exp must be at most 24 hours ahead."
        );

        let mut no_exp = ok.clone();
        no_exp.as_object_mut().unwrap().remove("exp");
        assert_eq!(
            refused(no_exp).detail,
            "The login_hint_token is not valid: exp is required."
        );

        let mut wrong_iss = ok.clone();
        wrong_iss["iss"] = json!("other-client");
        assert_eq!(
            refused(wrong_iss).detail,
            "The login_hint_token is not valid: iss must be the client id."
        );

        let mut later = ok.clone();
        later["nbf"] = json!(t + 600);
        assert_eq!(
            refused(later).detail,
            "The login_hint_token is not valid: it is not valid yet."
        );

        let mut with_jti = ok;
        with_jti["jti"] = json!("j-1");
        let checked = rules.check(&claims(with_jti), now).unwrap();
        assert_eq!(checked.jti.as_deref(), Some("j-1"));
        assert_eq!(checked.expires_at, Some(Timestamp::from_secs(t + 300)));
    }
}
