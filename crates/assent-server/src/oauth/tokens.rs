//! Minting and checking the tokens Assent issues (§3.5): ID tokens (OIDC Core §2), JWT access
//! tokens (RFC 9068, `typ: at+jwt`) and opaque, rotating refresh tokens.

use assent_core::grant::Grant;
use assent_core::jwt::{ClaimError, ClaimRules, JtiRule, MAX_JTI_LEN, SubjectRule, TimeClaimRule};
use assent_core::{
    AccessTokenRecord, Application, EnvironmentId, IssuedTokens, OAuthError, OAuthErrorCode,
    RefreshTokenRecord, SigningAlgorithm, Timestamp, User,
};
use assent_crypto::SigningAlg;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::error::OAuthResponseError;
use crate::service::Deps;

/// ID tokens live 60 minutes (PingOne: not configurable).
pub const ID_TOKEN_LIFETIME_SECS: i64 = 3600;
/// Access tokens are signed with the environment's RS256 key (RFC 9068 §2.1).
pub const ACCESS_TOKEN_ALG: SigningAlgorithm = SigningAlgorithm::RS256;
pub const ACCESS_TOKEN_TYP: &str = "at+jwt";

/// The token endpoint's success body (§3.3): `{"access_token", "token_type": "Bearer",
/// "expires_in", "scope"[, "id_token"][, "refresh_token"]}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: i64,
    pub scope: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
}

/// A token response and the records to persist with it.
pub struct Minted {
    pub response: TokenResponse,
    pub tokens: IssuedTokens,
}

fn server_error(e: impl std::fmt::Display) -> OAuthResponseError {
    tracing::error!(error = %e, "token signing failed");
    OAuthResponseError::new(OAuthError::new(
        OAuthErrorCode::ServerError,
        "The service is temporarily unavailable.",
    ))
}

/// Claims about the user released by scope (OIDC Core §5.4), in ID tokens and at userinfo:
/// `profile` → `name` (given and family name, when either is set), `given_name`,
/// `family_name`, `preferred_username`; `email` → `email`; `phone` → `phone_number`. A claim
/// without a value is left out.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct UserClaims {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub given_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub family_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preferred_username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phone_number: Option<String>,
}

impl UserClaims {
    /// What `scopes` release about `user`.
    pub fn released(user: &User, scopes: &[String]) -> Self {
        let has = |s: &str| scopes.iter().any(|x| x == s);
        let mut claims = UserClaims::default();
        if has("profile") {
            let full = [user.given_name.as_deref(), user.family_name.as_deref()]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(" ");
            claims.name = (!full.is_empty()).then_some(full);
            claims.given_name = user.given_name.clone();
            claims.family_name = user.family_name.clone();
            claims.preferred_username = Some(user.username.clone());
        }
        if has("email") {
            claims.email = user.email.clone();
        }
        if has("phone") {
            claims.phone_number = user.phone_number.clone();
        }
        claims
    }
}

/// The claims of our JWT access tokens (RFC 9068 §2.2, §3.5). `aud` is the issuer: the
/// resource they are good for is this environment's userinfo and introspection.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AccessTokenClaims<'a> {
    pub iss: &'a str,
    pub sub: &'a str,
    pub aud: &'a str,
    pub client_id: &'a str,
    pub scope: &'a str,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
    pub jti: &'a str,
    pub env: &'a str,
    pub auth_time: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acr: Option<&'a str>,
}

/// The claims of our ID tokens (OIDC Core §2, §3.5): `acr` only as §3.2 says, `at_hash` of the
/// access token issued with it, and the user claims its scopes release.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct IdTokenClaims<'a> {
    pub iss: &'a str,
    pub sub: &'a str,
    pub aud: &'a str,
    pub iat: i64,
    pub exp: i64,
    pub auth_time: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acr: Option<&'a str>,
    pub amr: &'a [String],
    pub at_hash: String,
    pub env: &'a str,
    #[serde(flatten)]
    pub user: UserClaims,
}

/// Claims as the JSON object a signer signs.
fn claims_object(claims: &impl Serialize) -> Result<Value, OAuthResponseError> {
    serde_json::to_value(claims).map_err(server_error)
}

/// Signs an access token, an ID token and (when the grant asks) a refresh token for the
/// grant's user. `family_id` continues a refresh family; `None` starts a new one.
pub async fn mint(
    state: &Deps,
    app: &Application,
    grant: &Grant,
    family_id: Option<String>,
    now: Timestamp,
) -> Result<Minted, OAuthResponseError> {
    let Grant {
        user,
        scopes,
        authentication: authn,
        issue_refresh,
    } = grant;
    let issue_refresh = *issue_refresh;
    let env_id = &app.environment_id;
    let issuer = state.issuer(env_id);
    // offline_access is granted only when a refresh token is actually issued.
    let granted: Vec<String> = scopes
        .iter()
        .filter(|s| issue_refresh || s.as_str() != "offline_access")
        .cloned()
        .collect();
    let scope = granted.join(" ");
    let iat = now.secs();
    let at_exp = iat + app.access_token_duration_seconds;
    let jti = assent_crypto::random_token(24);

    let at_claims = AccessTokenClaims {
        iss: &issuer,
        sub: &user.id,
        aud: &issuer,
        client_id: &app.id,
        scope: &scope,
        iat,
        nbf: iat,
        exp: at_exp,
        jti: &jti,
        env: env_id,
        auth_time: authn.auth_time.secs(),
        acr: authn.acr.as_deref(),
    };
    let at_signer = state
        .keys
        .signer(env_id, ACCESS_TOKEN_ALG, now)
        .await
        .map_err(server_error)?;
    let access_token = at_signer
        .sign(Some(ACCESS_TOKEN_TYP), &claims_object(&at_claims)?)
        .map_err(server_error)?;

    let id_alg = app.id_token_signing_algorithm;
    let id_claims = IdTokenClaims {
        iss: &issuer,
        sub: &user.id,
        aud: &app.id,
        iat,
        exp: iat + ID_TOKEN_LIFETIME_SECS,
        auth_time: authn.auth_time.secs(),
        acr: authn.acr.as_deref(),
        amr: &authn.amr,
        at_hash: assent_crypto::at_hash(&access_token, crate::keys::crypto_alg(id_alg)),
        env: env_id,
        user: UserClaims::released(user, &granted),
    };
    let id_signer = state
        .keys
        .signer(env_id, id_alg, now)
        .await
        .map_err(server_error)?;
    let id_token = id_signer
        .sign(Some("JWT"), &claims_object(&id_claims)?)
        .map_err(server_error)?;

    let (refresh_token, refresh_record) = if issue_refresh {
        let token = assent_crypto::random_token(32);
        let record = RefreshTokenRecord {
            token_hash: assent_crypto::sha256_b64url(token.as_bytes()),
            family_id: family_id
                .clone()
                .unwrap_or_else(|| assent_crypto::random_token(16)),
            environment_id: env_id.clone(),
            application_id: app.id.clone(),
            user_id: user.id.clone(),
            scope: scope.clone(),
            auth_req_id: authn.auth_req_id.clone(),
            auth_time: authn.auth_time,
            acr: authn.acr.clone(),
            amr: authn.amr.clone(),
            issued_at: now,
            expires_at: now.plus_secs(app.refresh_token_duration_seconds),
            rotated_at: None,
            revoked: false,
        };
        (Some(token), Some(record))
    } else {
        (None, None)
    };

    let access_record = AccessTokenRecord {
        jti,
        environment_id: env_id.clone(),
        application_id: app.id.clone(),
        user_id: Some(user.id.clone()),
        scope: scope.clone(),
        auth_req_id: authn.auth_req_id.clone(),
        refresh_family_id: refresh_record.as_ref().map(|r| r.family_id.clone()),
        issued_at: now,
        expires_at: Timestamp::from_secs(at_exp),
        revoked: false,
    };

    let response = TokenResponse {
        access_token,
        token_type: "Bearer",
        expires_in: app.access_token_duration_seconds,
        scope,
        // An ID token only for a grant that still carries openid (a refresh may narrow it away).
        id_token: granted.iter().any(|s| s == "openid").then_some(id_token),
        refresh_token,
    };
    Ok(Minted {
        response,
        tokens: IssuedTokens {
            access_token: access_record,
            refresh_token: refresh_record,
        },
    })
}

/// Why an access token is not acceptable.
#[derive(Debug, PartialEq, Eq)]
pub enum AccessTokenProblem {
    /// Not a JWT we signed, or malformed.
    Invalid,
    Expired,
    /// Revoked, or its user or application has since been disabled or deleted.
    Revoked,
    /// The store could not be asked: the token's fate is unknown (503, not "invalid").
    Unavailable,
}

impl From<assent_store::StoreError> for AccessTokenProblem {
    fn from(e: assent_store::StoreError) -> Self {
        match e {
            assent_store::StoreError::NotFound => AccessTokenProblem::Revoked,
            other => {
                tracing::error!(error = %other, "store failure while checking an access token");
                AccessTokenProblem::Unavailable
            }
        }
    }
}

/// Verifies an access token of environment `env_id`: our signature, `typ: at+jwt`, our
/// issuer, unexpired, recorded and not revoked, and its user and application still enabled.
pub async fn check_access_token(
    state: &Deps,
    env_id: &EnvironmentId,
    token: &str,
    now: Timestamp,
) -> Result<(Map<String, Value>, AccessTokenRecord), AccessTokenProblem> {
    let header = assent_crypto::decode_header(token).map_err(|_| AccessTokenProblem::Invalid)?;
    if header.typ.as_deref() != Some(ACCESS_TOKEN_TYP) {
        return Err(AccessTokenProblem::Invalid);
    }
    let keys = state
        .keys
        .verification_set(env_id, now)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "could not load verification keys");
            AccessTokenProblem::Unavailable
        })?;
    let claims = assent_crypto::verify_jws(token, &keys, &[SigningAlg::RS256])
        .map_err(|_| AccessTokenProblem::Invalid)?;
    // Our own token: its signature already vouches for aud, lifetime and nbf; what can go
    // wrong is another environment's token (iss), the passing of time (exp), and revocation,
    // looked up by jti.
    let rules = ClaimRules {
        issuer: Some(state.issuer(env_id)),
        subject: SubjectRule::Ignore,
        audiences: None,
        require_exp: true,
        allow_expired: false,
        max_lifetime_secs: None,
        nbf: TimeClaimRule::Ignore,
        iat: TimeClaimRule::Ignore,
        jti: JtiRule::Required {
            max_len: MAX_JTI_LEN,
        },
    };
    let checked = rules.check(&claims, now).map_err(|e| match e {
        ClaimError::Expired => AccessTokenProblem::Expired,
        ClaimError::Issuer
        | ClaimError::MissingSubject
        | ClaimError::Subject
        | ClaimError::Audience
        | ClaimError::MissingExp
        | ClaimError::InvalidExp
        | ClaimError::TooFarAhead
        | ClaimError::MissingNbf
        | ClaimError::InvalidNbf
        | ClaimError::NotYetValid
        | ClaimError::MissingIat
        | ClaimError::InvalidIat
        | ClaimError::IssuedInFuture
        | ClaimError::MissingJti
        | ClaimError::InvalidJti => AccessTokenProblem::Invalid,
    })?;
    let jti = checked.jti.ok_or(AccessTokenProblem::Invalid)?;
    let record = state
        .store
        .get_access_token(env_id, &jti)
        .await?
        .ok_or(AccessTokenProblem::Invalid)?;
    if record.revoked {
        return Err(AccessTokenProblem::Revoked);
    }
    if !state
        .store
        .get_application(env_id, &record.application_id)
        .await?
        .enabled
    {
        return Err(AccessTokenProblem::Revoked);
    }
    if let Some(user_id) = &record.user_id
        && !state.store.get_user(env_id, user_id).await?.enabled
    {
        return Err(AccessTokenProblem::Revoked);
    }
    Ok((claims, record))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn alice() -> User {
        User {
            id: "u1".into(),
            environment_id: "e".into(),
            username: "alice".into(),
            email: Some("alice@example.com".into()),
            given_name: Some("Alice".into()),
            family_name: None,
            phone_number: Some("+15550100".into()),
            password_hash: None,
            enabled: true,
            auto_decision: None,
            auto_decision_delay_ms: None,
            created_at: Timestamp(0),
            updated_at: Timestamp(0),
        }
    }

    fn scopes(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn user_claims_are_released_by_scope_and_left_out_without_a_value() {
        let user = alice();
        let released = |s: &[&str]| serde_json::to_value(UserClaims::released(&user, &scopes(s)));
        assert_eq!(released(&["openid"]).unwrap(), json!({}));
        assert_eq!(
            released(&["openid", "profile"]).unwrap(),
            json!({"name": "Alice", "given_name": "Alice", "preferred_username": "alice"})
        );
        assert_eq!(
            released(&["openid", "email", "phone"]).unwrap(),
            json!({"email": "alice@example.com", "phone_number": "+15550100"})
        );
        let nameless = User {
            given_name: None,
            email: None,
            ..alice()
        };
        assert_eq!(
            serde_json::to_value(UserClaims::released(
                &nameless,
                &scopes(&["profile", "email"])
            ))
            .unwrap(),
            json!({"preferred_username": "alice"})
        );
    }

    #[test]
    fn access_token_claims_carry_acr_only_when_set() {
        let claims = AccessTokenClaims {
            iss: "https://as/e/as",
            sub: "u1",
            aud: "https://as/e/as",
            client_id: "app",
            scope: "openid",
            iat: 100,
            nbf: 100,
            exp: 3700,
            jti: "j",
            env: "e",
            auth_time: 90,
            acr: None,
        };
        assert_eq!(
            claims_object(&claims).unwrap(),
            json!({"iss": "https://as/e/as", "sub": "u1", "aud": "https://as/e/as",
                   "client_id": "app", "scope": "openid", "iat": 100, "nbf": 100, "exp": 3700,
                   "jti": "j", "env": "e", "auth_time": 90})
        );
        let with_acr = AccessTokenClaims {
            acr: Some("urn:assent:acr:hwk"),
            ..claims
        };
        assert_eq!(
            claims_object(&with_acr).unwrap()["acr"],
            json!("urn:assent:acr:hwk")
        );
    }

    #[test]
    fn id_token_claims_hold_the_user_claims_at_top_level() {
        let amr = scopes(&["mfa", "hwk"]);
        let claims = IdTokenClaims {
            iss: "https://as/e/as",
            sub: "u1",
            aud: "app",
            iat: 100,
            exp: 3700,
            auth_time: 90,
            acr: None,
            amr: &amr,
            at_hash: "h".into(),
            env: "e",
            user: UserClaims::released(&alice(), &scopes(&["openid", "email"])),
        };
        assert_eq!(
            claims_object(&claims).unwrap(),
            json!({"iss": "https://as/e/as", "sub": "u1", "aud": "app", "iat": 100,
                   "exp": 3700, "auth_time": 90, "amr": ["mfa", "hwk"], "at_hash": "h",
                   "env": "e", "email": "alice@example.com"})
        );
    }
}
