//! Minting and checking the tokens Assent issues (§3.5): ID tokens (OIDC Core §2), JWT access
//! tokens (RFC 9068, `typ: at+jwt`) and opaque, rotating refresh tokens.

use assent_core::grant::Grant;
use assent_core::jwt::{ClaimError, ClaimRules, JtiRule, MAX_JTI_LEN, SubjectRule, TimeClaimRule};
use assent_core::{
    AccessTokenRecord, Application, IssuedTokens, OAuthError, OAuthErrorCode, RefreshTokenRecord,
    SigningAlgorithm, Timestamp, User,
};
use assent_crypto::SigningAlg;
use serde::Serialize;
use serde_json::{Map, Value, json};

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

/// Claims about the user released by scope (OIDC Core §5.4).
pub fn user_claims(user: &User, scopes: &[String]) -> Map<String, Value> {
    let mut claims = Map::new();
    let has = |s: &str| scopes.iter().any(|x| x == s);
    if has("profile") {
        let full = [user.given_name.as_deref(), user.family_name.as_deref()]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" ");
        if !full.is_empty() {
            claims.insert("name".into(), json!(full));
        }
        if let Some(g) = &user.given_name {
            claims.insert("given_name".into(), json!(g));
        }
        if let Some(f) = &user.family_name {
            claims.insert("family_name".into(), json!(f));
        }
        claims.insert("preferred_username".into(), json!(user.username));
    }
    if has("email")
        && let Some(e) = &user.email
    {
        claims.insert("email".into(), json!(e));
    }
    if has("phone")
        && let Some(p) = &user.phone_number
    {
        claims.insert("phone_number".into(), json!(p));
    }
    claims
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

    let mut at_claims = json!({
        "iss": issuer,
        "sub": user.id,
        "aud": issuer,
        "client_id": app.id,
        "scope": scope,
        "iat": iat,
        "nbf": iat,
        "exp": at_exp,
        "jti": jti,
        "env": env_id,
        "auth_time": authn.auth_time.secs(),
    });
    if let Some(acr) = &authn.acr {
        at_claims["acr"] = json!(acr);
    }
    let at_signer = state
        .keys
        .signer(env_id, ACCESS_TOKEN_ALG, now)
        .await
        .map_err(server_error)?;
    let access_token = at_signer
        .sign(Some(ACCESS_TOKEN_TYP), &at_claims)
        .map_err(server_error)?;

    let id_alg = app.id_token_signing_algorithm;
    let mut id_claims = Map::new();
    id_claims.insert("iss".into(), json!(issuer));
    id_claims.insert("sub".into(), json!(user.id));
    id_claims.insert("aud".into(), json!(app.id));
    id_claims.insert("iat".into(), json!(iat));
    id_claims.insert("exp".into(), json!(iat + ID_TOKEN_LIFETIME_SECS));
    id_claims.insert("auth_time".into(), json!(authn.auth_time.secs()));
    if let Some(acr) = &authn.acr {
        id_claims.insert("acr".into(), json!(acr));
    }
    id_claims.insert("amr".into(), json!(authn.amr));
    id_claims.insert(
        "at_hash".into(),
        json!(assent_crypto::at_hash(
            &access_token,
            crate::keys::crypto_alg(id_alg)
        )),
    );
    id_claims.insert("env".into(), json!(env_id));
    id_claims.extend(user_claims(user, &granted));
    let id_signer = state
        .keys
        .signer(env_id, id_alg, now)
        .await
        .map_err(server_error)?;
    let id_token = id_signer
        .sign(Some("JWT"), &Value::Object(id_claims))
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
    env_id: &str,
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
        | ClaimError::InvalidNbf
        | ClaimError::NotYetValid
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
