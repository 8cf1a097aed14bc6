//! Token introspection (RFC 7662) and revocation (RFC 7009). A client only ever learns about,
//! or revokes, its own tokens.

use assent_core::transition::Transition;
use assent_core::{Application, OAuthError, Timestamp};
use serde_json::{Value, json};

use super::Deps;
use crate::error::OAuthResponseError;
use crate::form::OAuthForm;
use crate::oauth::tokens::{AccessTokenProblem, check_access_token};

/// The `token` parameter, required by both endpoints.
fn token_param(form: &OAuthForm) -> Result<String, OAuthResponseError> {
    Ok(form
        .get("token")
        .ok_or_else(|| OAuthError::invalid_request("The token parameter is required."))?
        .to_owned())
}

/// What a token is, when it is ours, live, and the caller's.
enum Live {
    Access(serde_json::Map<String, Value>),
    Refresh(Box<assent_core::RefreshTokenRecord>),
}

#[derive(Clone)]
pub struct IntrospectionService {
    state: Deps,
}

impl IntrospectionService {
    pub fn new(state: Deps) -> Self {
        IntrospectionService { state }
    }

    /// The RFC 7662 §2.2 body for the `token` of `form`: `{"active": false}` unless it is a
    /// live token of `app`.
    pub async fn introspect(
        &self,
        app: &Application,
        form: &OAuthForm,
        now: Timestamp,
    ) -> Result<Value, OAuthResponseError> {
        let state = &self.state;
        let token = token_param(form)?;
        Ok(match live_token(state, app, &token, now).await? {
            Some(Live::Access(c)) => json!({
                "active": true,
                "token_type": "Bearer",
                "scope": c.get("scope"),
                "client_id": c.get("client_id"),
                "sub": c.get("sub"),
                "aud": c.get("aud"),
                "iss": c.get("iss"),
                "exp": c.get("exp"),
                "iat": c.get("iat"),
                "nbf": c.get("nbf"),
                "jti": c.get("jti"),
                "env": c.get("env"),
            }),
            Some(Live::Refresh(r)) => json!({
                "active": true,
                "token_type": "refresh_token",
                "scope": r.scope,
                "client_id": r.application_id,
                "sub": r.user_id,
                "iss": state.issuer(&r.environment_id),
                "exp": r.expires_at.secs(),
                "iat": r.issued_at.secs(),
            }),
            None => json!({ "active": false }),
        })
    }

    /// Revokes the `token` of `form` if it is `app`'s. An invalid, unknown or foreign token is
    /// not an error (RFC 7009 §2.2).
    pub async fn revoke(
        &self,
        app: &Application,
        form: &OAuthForm,
        now: Timestamp,
    ) -> Result<(), OAuthResponseError> {
        let state = &self.state;
        let token = token_param(form)?;
        // A refresh token of the caller ends its whole grant, also when it has already been
        // rotated (presenting a rotated token is reuse, §3.5): its live descendants go with it.
        if token.matches('.').count() != 2 {
            let hash = assent_crypto::sha256_b64url(token.as_bytes());
            if let Some(r) = state
                .store
                .get_refresh_token(&app.environment_id, &hash)
                .await?
                .filter(|r| r.application_id == app.id)
            {
                state
                    .store
                    .apply(&assent_core::refresh::revoke_family(&r))
                    .await?;
            }
            return Ok(());
        }
        if let Some(Live::Access(c)) = live_token(state, app, &token, now).await?
            && let Some(jti) = c.get("jti").and_then(Value::as_str)
        {
            state
                .store
                .apply(&Transition::revoke_access_token(
                    app.environment_id.clone(),
                    jti,
                ))
                .await?;
        }
        Ok(())
    }
}

async fn live_token(
    state: &Deps,
    app: &Application,
    token: &str,
    now: Timestamp,
) -> Result<Option<Live>, OAuthResponseError> {
    let env_id = &app.environment_id;
    if token.matches('.').count() == 2 {
        return match check_access_token(state, env_id, token, now).await {
            Ok((claims, record)) if record.application_id == app.id => {
                Ok(Some(Live::Access(claims)))
            }
            Err(AccessTokenProblem::Unavailable) => Err(OAuthResponseError::new(OAuthError::new(
                assent_core::OAuthErrorCode::ServerError,
                "The service is temporarily unavailable.",
            ))),
            _ => Ok(None),
        };
    }
    let hash = assent_crypto::sha256_b64url(token.as_bytes());
    Ok(state
        .store
        .get_refresh_token(env_id, &hash)
        .await?
        .filter(|r| {
            r.application_id == app.id && !r.revoked && r.rotated_at.is_none() && r.expires_at > now
        })
        .map(|r| Live::Refresh(Box::new(r))))
}
